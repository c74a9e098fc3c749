#include "api/principals_command.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/client.h"
#include "util/config.h"
#include "util/err.h"

#define MAX_VINS 1000

static const char usage_text[] =
	"usage: domicile principals add NAME --role ROLE [--vin VIN]... CONNECTION\n"
	"       domicile principals list [--json] CONNECTION\n"
	"       domicile principals remove NAME CONNECTION\n"
	"\n"
	"  ROLE is operator, analyst, privacy_officer, auditor or owner (owners need\n"
	"  --vin for each of their vehicles). `add` prints the token, shown once.\n"
	"\n"
	"  CONNECTION:\n"
	"  -c NODE.CONF        the node's config: its api_listen and data_dir/admin.token\n"
	"  --api URL           the node's API, http[s]://HOST:PORT\n"
	"  --token-file FILE   a file holding the admin's bearer token\n"
	"  --cacert FILE       over https, the CA certificate to trust (default: the system's)\n";

struct args {
	const char *config, *api, *token_file, *cacert, *role;
	const char *vins[MAX_VINS];
	size_t vin_count;
	int json;
};

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

/* Options after the subcommand; positional arguments are left from optind. */
static int parse(int argc, char **argv, struct args *a)
{
	static const struct option options[] = {
		{"api", required_argument, NULL, 'a'},   {"token-file", required_argument, NULL, 't'},
		{"cacert", required_argument, NULL, 'C'}, {"role", required_argument, NULL, 'r'},
		{"vin", required_argument, NULL, 'v'},   {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': a->config = optarg; break;
		case 'a': a->api = optarg; break;
		case 't': a->token_file = optarg; break;
		case 'C': a->cacert = optarg; break;
		case 'r': a->role = optarg; break;
		case 'v':
			if (a->vin_count == MAX_VINS) {
				fprintf(stderr, "domicile principals: at most %d --vin\n", MAX_VINS);
				return 0;
			}
			a->vins[a->vin_count++] = optarg;
			break;
		case 'j': a->json = 1; break;
		default: return 0;
		}
	}
	/* Exactly one way to reach the node. */
	return !a->config != !(a->api && a->token_file) && !(a->config && (a->api || a->token_file));
}

static int connect_args(const struct args *a, struct api_client *client)
{
	static struct node_config config;
	char url[200], token_file[PATH_MAX + 16], err[PATH_MAX + 256];
	const char *api = a->api, *token_path = a->token_file;
	if (a->config) {
		if (node_config_load(a->config, &config, err, sizeof err) != DM_OK) {
			fprintf(stderr, "domicile principals: %s\n", err);
			return 2;
		}
		snprintf(url, sizeof url, "%s://%s", config.tls_cert[0] ? "https" : "http",
			 config.api_listen);
		snprintf(token_file, sizeof token_file, "%s/admin.token", config.data_dir);
		api = url;
		token_path = token_file;
	}
	int rc = api_client_init(client, api, token_path, a->cacert, err, sizeof err);
	if (rc) {
		fprintf(stderr, "domicile principals: %s\n", err);
		return 2;
	}
	return 0;
}

/* Calls the API; prints the error and returns NULL unless the status is
 * `expected`. The document is the caller's (json_decref). */
static json_t *call(const struct api_client *client, const char *method, const char *path,
		    const char *body, int expected)
{
	struct api_response response;
	char err[512];
	if (api_client_call(client, method, path, body, &response, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile principals: %s\n", err[0] ? err : "the request failed");
		return NULL;
	}
	json_t *doc = response.body.data ? json_loads((const char *)response.body.data, 0, NULL)
					 : NULL;
	if (response.status != expected || !doc) {
		char message[256];
		api_response_error(&response, message, sizeof message);
		fprintf(stderr, "domicile principals: HTTP %d: %s\n", response.status, message);
		json_decref(doc);
		doc = NULL;
	}
	api_response_free(&response);
	return doc;
}

static int add(const struct api_client *client, const char *name, const struct args *a)
{
	if (!a->role) {
		fprintf(stderr, "domicile principals add: --role is required\n");
		return 2;
	}
	json_t *vins = json_array();
	for (size_t i = 0; vins && i < a->vin_count; i++)
		json_array_append_new(vins, json_string(a->vins[i]));
	json_t *request = json_pack("{s:s, s:s}", "name", name, "role", a->role);
	if (request && a->vin_count)
		json_object_set(request, "vins", vins);
	json_decref(vins);
	char *body = request ? json_dumps(request, JSON_COMPACT) : NULL;
	json_decref(request);
	if (!body) {
		fprintf(stderr, "domicile principals: out of memory\n");
		return 1;
	}
	json_t *doc = call(client, "POST", "/v1/principals", body, 201);
	free(body);
	const char *token = json_string_value(json_object_get(doc, "token"));
	int status = 1;
	if (token) {
		printf("%s\n", token);
		fprintf(stderr, "principal %s (%s) added; the token above is shown only this once\n",
			name, a->role);
		status = 0;
	} else if (doc) {
		fprintf(stderr, "domicile principals: the answer holds no token\n");
	}
	json_decref(doc);
	return status;
}

static int list(const struct api_client *client, int json_out)
{
	json_t *doc = call(client, "GET", "/v1/principals", NULL, 200);
	if (!doc)
		return 1;
	json_t *items = json_object_get(doc, "principals");
	if (json_out) {
		char *text = json_dumps(doc, JSON_INDENT(2));
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(doc);
		return text ? 0 : 1;
	}
	printf("%-24s %-16s %-12s %-20s %s\n", "NAME", "ROLE", "CREATED_BY", "CREATED (UTC)", "VINS");
	size_t i;
	json_t *item;
	json_array_foreach(items, i, item) {
		char when[32] = "?";
		time_t secs = (time_t)(json_integer_value(json_object_get(item, "created_ms")) / 1000);
		struct tm tm;
		if (gmtime_r(&secs, &tm))
			strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
		printf("%-24s %-16s %-12s %-20s", json_string_value(json_object_get(item, "name")),
		       json_string_value(json_object_get(item, "role")),
		       json_string_value(json_object_get(item, "created_by")), when);
		size_t k;
		json_t *vin;
		json_array_foreach(json_object_get(item, "vins"), k, vin)
			printf("%s%s", k ? "," : " ", json_string_value(vin));
		printf("\n");
	}
	json_decref(doc);
	return 0;
}

static int remove_one(const struct api_client *client, const char *name)
{
	/* Names are [a-z0-9._-]: nothing in them needs escaping in a path. */
	char path[160];
	snprintf(path, sizeof path, "/v1/principals/%s", name);
	json_t *doc = call(client, "DELETE", path, NULL, 200);
	if (!doc)
		return 1;
	fprintf(stderr, "principal %s removed; its token no longer works\n", name);
	json_decref(doc);
	return 0;
}

static int name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != len) {
		fprintf(stderr, "domicile principals: a name is 1 to 64 of a-z, 0-9, '.', '_', '-'\n");
		return 0;
	}
	return 1;
}

int principals_main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *what = argv[1];
	if (strcmp(what, "--help") == 0 || strcmp(what, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	static struct args a;
	memset(&a, 0, sizeof a);
	if (!parse(argc - 1, argv + 1, &a))
		return usage();
	int positional = argc - 1 - optind;
	const char *name = positional >= 1 ? argv[1 + optind] : NULL;
	int want = strcmp(what, "list") == 0 ? 0 : 1;
	if ((strcmp(what, "add") && strcmp(what, "list") && strcmp(what, "remove")) ||
	    positional != want || (name && !name_ok(name)))
		return usage();
	if (strcmp(what, "add") && (a.role || a.vin_count)) {
		fprintf(stderr, "domicile principals %s: --role and --vin are for add\n", what);
		return 2;
	}
	struct api_client client;
	int rc = connect_args(&a, &client);
	if (rc)
		return rc;
	if (strcmp(what, "add") == 0)
		rc = add(&client, name, &a);
	else if (strcmp(what, "list") == 0)
		rc = list(&client, a.json);
	else
		rc = remove_one(&client, name);
	memset(client.token, 0, sizeof client.token);
	return rc;
}
