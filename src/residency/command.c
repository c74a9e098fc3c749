/*
 * command.c — `domicile residency report`: the residency report of a
 * running node, fetched through its API (api/client) and printed as a
 * table (residency/report) or as JSON. Exits 0 when the report's
 * self-check passed, 1 when it did not, 2 when there is no report.
 */
#include "residency/command.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "api/client.h"
#include "residency/report.h"
#include "util/buf.h"
#include "util/config.h"
#include "util/err.h"

static const char usage_text[] =
	"usage: domicile residency report (-c NODE.CONF | --api URL --token-file FILE) "
	"[--cacert FILE] [--json]\n"
	"  -c NODE.CONF        the node's config: its api_listen and data_dir/admin.token\n"
	"  --api URL           the node's API, http[s]://HOST:PORT (http: loopback only)\n"
	"  --token-file FILE   a file holding a bearer token\n"
	"  --cacert FILE       over https, the CA certificate to trust (default: the system's)\n"
	"  --json              print the report as JSON instead of a table\n";

static int report(int argc, char **argv)
{
	static const struct option options[] = {
		{"api", required_argument, NULL, 'a'},
		{"token-file", required_argument, NULL, 't'},
		{"cacert", required_argument, NULL, 'C'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL, *api = NULL, *token_path = NULL, *cacert = NULL;
	int json_out = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'a': api = optarg; break;
		case 't': token_path = optarg; break;
		case 'C': cacert = optarg; break;
		case 'j': json_out = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind != argc || !config_path == !(api && token_path)) {
		fputs(usage_text, stderr);
		return 2;
	}
	static struct node_config config;
	char url[300], token_file[PATH_MAX + 16], err[PATH_MAX + 256];
	if (config_path) {
		if (node_config_load(config_path, &config, err, sizeof err) != DM_OK) {
			fprintf(stderr, "domicile residency: %s\n", err);
			return 2;
		}
		snprintf(url, sizeof url, "%s://%s", config.tls_cert[0] ? "https" : "http",
			 config.api_listen);
		api = url;
		snprintf(token_file, sizeof token_file, "%s/admin.token", config.data_dir);
		token_path = token_file;
	}
	struct api_client client;
	if (api_client_init(&client, api, token_path, cacert, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile residency: %s\n", err);
		return 2;
	}
	struct api_response response;
	int rc = api_client_call(&client, "GET", "/v1/residency/report", NULL, &response, err,
				 sizeof err);
	json_t *doc = rc == DM_OK && response.body.data
			      ? json_loadb((const char *)response.body.data, response.body.len, 0, NULL)
			      : NULL;
	int status = 2;
	if (rc != DM_OK) {
		fprintf(stderr, "domicile residency: %s\n", err);
	} else if (response.status != 200 || !doc) {
		char message[256];
		api_response_error(&response, message, sizeof message);
		fprintf(stderr, "domicile residency: HTTP %d: %s\n", response.status, message);
	} else {
		if (json_out)
			json_dumpf(doc, stdout, JSON_INDENT(2));
		else
			residency_report_print(doc, stdout);
		if (json_out)
			putchar('\n');
		status = json_is_true(json_object_get(json_object_get(doc, "self_check"), "passed"))
				 ? 0
				 : 1;
	}
	json_decref(doc);
	if (rc == DM_OK)
		api_response_free(&response);
	return status;
}

int residency_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "report") == 0)
		return report(argc - 1, argv + 1);
	fputs(usage_text, stderr);
	return 2;
}
