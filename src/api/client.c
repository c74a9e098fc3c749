/*
 * client.c — one blocking HTTP(S) request over libevent's evhttp client.
 *
 * Over https the connection is a bufferevent_openssl whose SSL verifies the
 * peer (SSL_VERIFY_PEER against the cacert or the default paths) and its
 * name (SSL_set1_host), with SNI; a failed handshake ends the request with
 * no answer, reported as DM_ERR_IO.
 */
#include "api/client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/addr.h"
#include "util/err.h"

#define MAX_HEADERS 16384

/* 127.0.0.0/8, ::1 or "localhost". */
static int is_loopback(const char *host)
{
	unsigned char ip[16];
	if (inet_pton(AF_INET, host, ip) == 1)
		return ip[0] == 127;
	if (inet_pton(AF_INET6, host, ip) == 1)
		return memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
	return strcmp(host, "localhost") == 0;
}

int api_client_init(struct api_client *client, const char *url, const char *token_file,
		    const char *cacert, char *err, size_t err_len)
{
	memset(client, 0, sizeof *client);
	client->cacert = cacert;
	const char *address = url;
	if (strncmp(url, "https://", 8) == 0) {
		client->https = 1;
		address = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		address = url + 7;
	}
	char copy[160];
	if (strlen(address) >= sizeof copy) {
		snprintf(err, err_len, "'%.64s...' is too long for an API address", url);
		return DM_ERR_INVALID;
	}
	snprintf(copy, sizeof copy, "%s", address);
	size_t len = strlen(copy);
	if (len && copy[len - 1] == '/')
		copy[len - 1] = '\0';
	if (strchr(copy, '/') || addr_split(copy, client->host, sizeof client->host,
					    &client->port) != DM_OK ||
	    client->port == 0) {
		snprintf(err, err_len, "'%s' is not an API address (http[s]://HOST:PORT)", url);
		return DM_ERR_INVALID;
	}
	/* A node listening on every address is reached on loopback. */
	if (strcmp(client->host, "0.0.0.0") == 0)
		snprintf(client->host, sizeof client->host, "127.0.0.1");
	else if (strcmp(client->host, "::") == 0)
		snprintf(client->host, sizeof client->host, "::1");
	if (!client->https && !is_loopback(client->host)) {
		snprintf(err, err_len,
			 "'%s': plain http only to a loopback address; the token would cross "
			 "the network in clear (use https)",
			 url);
		return DM_ERR_INVALID;
	}
	client->max_body = API_CLIENT_MAX_BODY;
	client->deadline_s = API_CLIENT_DEADLINE_S;
	FILE *f = fopen(token_file, "r");
	if (!f || !fgets(client->token, sizeof client->token, f)) {
		if (f)
			fclose(f);
		snprintf(err, err_len, "cannot read a token from %s", token_file);
		return DM_ERR_IO;
	}
	int whole = strchr(client->token, '\n') || feof(f) || fgetc(f) == EOF;
	fclose(f);
	if (!whole) {
		OPENSSL_cleanse(client->token, sizeof client->token);
		snprintf(err, err_len, "%s: the token is longer than %zu bytes", token_file,
			 sizeof client->token - 2);
		return DM_ERR_IO;
	}
	client->token[strcspn(client->token, "\r\n")] = '\0';
	if (client->token[0] == '\0') {
		snprintf(err, err_len, "%s holds no token", token_file);
		return DM_ERR_IO;
	}
	return DM_OK;
}

struct exchange {
	struct event_base *base;
	struct evhttp_request *req; /* until it completes */
	struct api_response *out;
	int answered;
	int nomem;
	int too_large;
	int late;
};

static void on_request_error(enum evhttp_request_error error, void *arg)
{
	struct exchange *ex = arg;
	if (error == EVREQ_HTTP_DATA_TOO_LONG)
		ex->too_large = 1;
}

/* The deadline passed: the request is given up. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *ex = arg;
	ex->late = 1;
	if (ex->req)
		evhttp_cancel_request(ex->req);
	ex->req = NULL;
	event_base_loopexit(ex->base, NULL);
}

static void on_response(struct evhttp_request *req, void *arg)
{
	struct exchange *ex = arg;
	ex->req = NULL; /* evhttp frees it after this */
	if (req && !ex->too_large && evhttp_request_get_response_code(req) > 0) {
		ex->answered = 1;
		ex->out->status = evhttp_request_get_response_code(req);
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);
		if (dm_buf_reserve(&ex->out->body, len + 1) == DM_OK) {
			evbuffer_remove(in, ex->out->body.data, len);
			ex->out->body.len = len;
			ex->out->body.data[len] = '\0';
		} else {
			ex->nomem = 1;
		}
	}
	event_base_loopexit(ex->base, NULL);
}

/* A TLS context that verifies the server against cacert (or the system's
 * trust store), TLS 1.2 at least. */
static SSL_CTX *tls_context(const struct api_client *client, char *err, size_t err_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, err_len, "cannot make a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int loaded = client->cacert ? SSL_CTX_load_verify_locations(ctx, client->cacert, NULL)
				    : SSL_CTX_set_default_verify_paths(ctx);
	if (loaded != 1) {
		snprintf(err, err_len, "cannot load the CA certificates %s",
			 client->cacert ? client->cacert : "of the system");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The connection: plain, or TLS that verifies the server and its name. */
static struct evhttp_connection *connect_to(const struct api_client *client,
					    struct event_base *base, SSL_CTX *ctx)
{
	if (!client->https)
		return evhttp_connection_base_new(base, NULL, client->host,
						  (unsigned short)client->port);
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	/* SNI carries names only (RFC 6066); SSL_set1_host takes either and
	 * checks the certificate's DNS or IP subjectAltName. */
	unsigned char ip[16];
	if (inet_pton(AF_INET, client->host, ip) != 1 && inet_pton(AF_INET6, client->host, ip) != 1)
		SSL_set_tlsext_host_name(ssl, client->host);
	if (SSL_set1_host(ssl, client->host) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	/* The bufferevent owns ssl from here (BEV_OPT_CLOSE_ON_FREE). */
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
		BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev)
		return NULL;
	struct evhttp_connection *conn = evhttp_connection_base_bufferevent_new(
		base, NULL, bev, client->host, (unsigned short)client->port);
	if (!conn)
		bufferevent_free(bev);
	return conn;
}

static enum evhttp_cmd_type method_of(const char *method)
{
	if (strcmp(method, "POST") == 0)
		return EVHTTP_REQ_POST;
	if (strcmp(method, "DELETE") == 0)
		return EVHTTP_REQ_DELETE;
	return EVHTTP_REQ_GET;
}

int api_client_call(const struct api_client *client, const char *method, const char *path,
		    const char *body, struct api_response *out, char *err, size_t err_len)
{
	memset(out, 0, sizeof *out);
	if (err_len)
		err[0] = '\0';
	struct exchange ex = {.out = out};
	SSL_CTX *ctx = NULL;
	struct evhttp_connection *conn = NULL;
	int rc = DM_ERR_NOMEM;
	ex.base = event_base_new();
	if (ex.base && client->https) {
		ctx = tls_context(client, err, err_len);
		if (!ctx)
			rc = DM_ERR_CRYPTO;
	}
	if (ex.base && (!client->https || ctx))
		conn = connect_to(client, ex.base, ctx);
	struct evhttp_request *req = conn ? evhttp_request_new(on_response, &ex) : NULL;
	struct event *deadline = req ? evtimer_new(ex.base, on_deadline, &ex) : NULL;
	if (req && !deadline) {
		evhttp_request_free(req);
		req = NULL;
	}
	if (req) {
		char auth[160];
		snprintf(auth, sizeof auth, "Bearer %s", client->token);
		unsigned seconds = client->deadline_s ? client->deadline_s : API_CLIENT_DEADLINE_S;
		evhttp_connection_set_timeout(conn, (int)seconds);
		evhttp_connection_set_max_body_size(
			conn, (ev_ssize_t)(client->max_body ? client->max_body : API_CLIENT_MAX_BODY));
		evhttp_connection_set_max_headers_size(conn, MAX_HEADERS);
		evhttp_request_set_error_cb(req, on_request_error);
		struct timeval limit = {(time_t)seconds, 0};
		evtimer_add(deadline, &limit);
		ex.req = req;
		struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
		evhttp_add_header(headers, "Host", client->host);
		evhttp_add_header(headers, "Authorization", auth);
		OPENSSL_cleanse(auth, sizeof auth);
		if (body) {
			evhttp_add_header(headers, "Content-Type", "application/json");
			evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
		}
		/* evhttp_make_request owns req from here, failed or not. */
		if (evhttp_make_request(conn, req, method_of(method), path) == 0) {
			event_base_dispatch(ex.base);
			rc = ex.nomem		? DM_ERR_NOMEM
			     : ex.answered	? DM_OK
			     : ex.too_large ? DM_ERR_TOO_LARGE
					    : DM_ERR_IO;
			if (rc == DM_ERR_TOO_LARGE)
				snprintf(err, err_len,
					 "%s:%d answered %s with more than %zu bytes: dropped",
					 client->host, client->port, path,
					 client->max_body ? client->max_body : API_CLIENT_MAX_BODY);
			else if (rc == DM_ERR_IO && ex.late)
				snprintf(err, err_len, "no whole answer from %s:%d within %u s",
					 client->host, client->port, seconds);
			else if (rc == DM_ERR_IO)
				snprintf(err, err_len, "no answer from %s%s:%d%s",
					 client->https ? "https://" : "http://", client->host,
					 client->port,
					 client->https ? " (or its certificate was not trusted)" : "");
		} else {
			ex.req = NULL;
			rc = DM_ERR_IO;
			snprintf(err, err_len, "cannot send a request to %s:%d", client->host,
				 client->port);
		}
	}
	if (deadline)
		event_free(deadline);
	if (conn)
		evhttp_connection_free(conn);
	SSL_CTX_free(ctx);
	if (ex.base)
		event_base_free(ex.base);
	if (rc)
		api_response_free(out);
	return rc;
}

void api_response_error(const struct api_response *response, char *out, size_t out_len)
{
	if (out_len == 0)
		return;
	json_t *doc = response->body.data
			      ? json_loadb((const char *)response->body.data, response->body.len, 0,
					   NULL)
			      : NULL;
	const char *message = json_string_value(json_object_get(doc, "error"));
	snprintf(out, out_len, "%s", message ? message : "unexpected answer");
	for (char *c = out; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
	json_decref(doc);
}

void api_response_free(struct api_response *response)
{
	if (!response)
		return;
	dm_buf_free(&response->body);
	response->status = 0;
}
