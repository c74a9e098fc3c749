#include "residency/command.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "residency/report.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/config.h"
#include "util/err.h"

static const char usage_text[] =
	"usage: domicile residency report (-c NODE.CONF | --api HOST:PORT --token-file FILE) "
	"[--json]\n"
	"  -c NODE.CONF        the node's config: its api_listen and data_dir/admin.token\n"
	"  --api HOST:PORT     the node's API address\n"
	"  --token-file FILE   a file holding a bearer token\n"
	"  --json              print the report as JSON instead of a table\n";

struct fetch {
	int status;
	struct dm_buf body;
	struct event_base *base;
};

static void on_response(struct evhttp_request *req, void *arg)
{
	struct fetch *fetch = arg;
	if (req) {
		fetch->status = evhttp_request_get_response_code(req);
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);
		if (dm_buf_reserve(&fetch->body, len + 1) == DM_OK) {
			evbuffer_remove(in, fetch->body.data, len);
			fetch->body.len = len;
			fetch->body.data[len] = '\0';
		}
	}
	event_base_loopexit(fetch->base, NULL);
}

/* GETs path from host:port with the token; the body in fetch->body. */
static int http_get(const char *host, int port, const char *path, const char *token,
		    struct fetch *fetch)
{
	fetch->base = event_base_new();
	struct evhttp_connection *conn =
		fetch->base ? evhttp_connection_base_new(fetch->base, NULL, host, (uint16_t)port)
			    : NULL;
	struct evhttp_request *req = conn ? evhttp_request_new(on_response, fetch) : NULL;
	int rc = DM_ERR_NOMEM;
	if (req) {
		char auth[256];
		snprintf(auth, sizeof auth, "Bearer %s", token);
		evhttp_connection_set_timeout(conn, 30);
		struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
		evhttp_add_header(headers, "Host", host);
		evhttp_add_header(headers, "Authorization", auth);
		if (evhttp_make_request(conn, req, EVHTTP_REQ_GET, path) == 0) {
			event_base_dispatch(fetch->base);
			rc = fetch->status ? DM_OK : DM_ERR_IO;
		}
	}
	if (conn)
		evhttp_connection_free(conn);
	if (fetch->base)
		event_base_free(fetch->base);
	return rc;
}

static int read_token(const char *path, char *token, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f || !fgets(token, (int)len, f)) {
		if (f)
			fclose(f);
		fprintf(stderr, "domicile residency: cannot read a token from %s\n", path);
		return DM_ERR_IO;
	}
	fclose(f);
	token[strcspn(token, "\r\n")] = '\0';
	return DM_OK;
}

static int report(int argc, char **argv)
{
	static const struct option options[] = {
		{"api", required_argument, NULL, 'a'},
		{"token-file", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL, *api = NULL, *token_path = NULL;
	int json_out = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'a': api = optarg; break;
		case 't': token_path = optarg; break;
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
	char token_file[PATH_MAX + 16], err[512];
	if (config_path) {
		if (node_config_load(config_path, &config, err, sizeof err) != DM_OK) {
			fprintf(stderr, "domicile residency: %s\n", err);
			return 2;
		}
		api = config.api_listen;
		snprintf(token_file, sizeof token_file, "%s/admin.token", config.data_dir);
		token_path = token_file;
	}
	char host[128], token[128];
	int port;
	if (addr_split(api, host, sizeof host, &port) != DM_OK || port == 0) {
		fprintf(stderr, "domicile residency: '%s' is not an API address HOST:PORT\n", api);
		return 2;
	}
	/* A node listening on every address is reached on loopback. */
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		snprintf(host, sizeof host, "%s", strcmp(host, "::") ? "127.0.0.1" : "::1");
	if (read_token(token_path, token, sizeof token) != DM_OK)
		return 2;

	struct fetch fetch = {0};
	int rc = http_get(host, port, "/v1/residency/report", token, &fetch);
	json_t *doc = rc == DM_OK && fetch.body.data
			      ? json_loads((const char *)fetch.body.data, 0, NULL)
			      : NULL;
	int status = 2;
	if (rc != DM_OK) {
		fprintf(stderr, "domicile residency: no answer from %s:%d\n", host, port);
	} else if (fetch.status != 200 || !doc) {
		const char *message = json_string_value(json_object_get(doc, "error"));
		fprintf(stderr, "domicile residency: HTTP %d: %s\n", fetch.status,
			message ? message : "unexpected answer");
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
	dm_buf_free(&fetch.body);
	return status;
}

int residency_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "report") == 0)
		return report(argc - 1, argv + 1);
	fputs(usage_text, stderr);
	return 2;
}
