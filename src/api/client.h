/*
 * client.h — a small blocking client of a node's API, for the commands that
 * manage a running node (domicile principals ...), so that their changes
 * pass the same authentication and authorization as any other call.
 *
 * A base URL is "http://HOST:PORT", "https://HOST:PORT" or "HOST:PORT"
 * (http). Over https the server's certificate is verified against
 * client->cacert (a PEM file; NULL: the system's trust store) and must name
 * HOST. Each call makes one connection on its own event base and waits for
 * the answer (30 s at most).
 *
 * Ownership: a response's body is the caller's, released with
 * api_response_free. The client holds no heap memory.
 */
#ifndef DM_API_CLIENT_H
#define DM_API_CLIENT_H

#include <stddef.h>

#include "util/buf.h"

struct api_client {
	int https;
	char host[128];
	int port;
	char token[128];
	const char *cacert; /* borrowed; https only */
};

/* Parses url and reads the bearer token from the first line of token_file.
 * DM_ERR_INVALID (bad URL) or DM_ERR_IO (token file), with a message in err. */
int api_client_init(struct api_client *client, const char *url, const char *token_file,
		    const char *cacert, char *err, size_t err_len);

struct api_response {
	int status;           /* the HTTP status */
	struct dm_buf body;   /* NUL-terminated (not counted in len) */
};

/* Sends method ("GET", "POST", "DELETE") path with the token and, when body
 * is non-NULL, that JSON body. DM_OK when an answer came, whatever its
 * status; DM_ERR_IO when none did (connection refused, timeout, TLS
 * failure: the reason in err); DM_ERR_NOMEM; DM_ERR_CRYPTO. */
int api_client_call(const struct api_client *client, const char *method, const char *path,
		    const char *body, struct api_response *out, char *err, size_t err_len);
void api_response_free(struct api_response *response);

#endif
