/*
 * client.h — a small blocking client of a node's API, for the commands that
 * manage a running node (domicile principals ...), so that their changes
 * pass the same authentication and authorization as any other call.
 *
 * A base URL is "http://HOST:PORT", "https://HOST:PORT" or "HOST:PORT"
 * (http). Plain http is for a loopback HOST only, as the node's own plain
 * listeners are: a bearer token never crosses a network in clear. Over
 * https the server's certificate is verified against client->cacert (a PEM
 * file; NULL: the system's trust store) and must name HOST. Each call makes
 * one connection on its own event base and waits for the whole answer at
 * most deadline_s seconds; an answer whose body is larger than max_body
 * bytes is dropped unread. A node is a peer, not an authority: what it
 * answers is bounded, and its error texts are made printable before they
 * reach a terminal (api_response_error).
 *
 * Ownership: a response's body is the caller's, released with
 * api_response_free. The client holds no heap memory.
 */
#ifndef DM_API_CLIENT_H
#define DM_API_CLIENT_H

#include <stddef.h>

#include "util/buf.h"

/* Defaults of struct api_client's limits. */
#define API_CLIENT_MAX_BODY ((size_t)1 << 20)
#define API_CLIENT_DEADLINE_S 30

struct api_client {
	int https;
	char host[128];
	int port;
	char token[128];
	const char *cacert; /* borrowed; https only */
	size_t max_body;    /* set by init to API_CLIENT_MAX_BODY; a caller may change it */
	unsigned deadline_s; /* set by init to API_CLIENT_DEADLINE_S */
};

/* Parses url and reads the bearer token from the first line of token_file.
 * DM_ERR_INVALID (bad URL, or http to a host that is not loopback) or
 * DM_ERR_IO (token file), with a message in err. */
int api_client_init(struct api_client *client, const char *url, const char *token_file,
		    const char *cacert, char *err, size_t err_len);

struct api_response {
	int status;           /* the HTTP status */
	struct dm_buf body;   /* NUL-terminated (not counted in len) */
};

/* Sends method ("GET", "POST", "DELETE") path with the token and, when body
 * is non-NULL, that JSON body. DM_OK when an answer came, whatever its
 * status; DM_ERR_IO when none did (connection refused, TLS failure, no
 * whole answer within the deadline: the reason in err); DM_ERR_TOO_LARGE
 * (the answer was larger than max_body); DM_ERR_NOMEM; DM_ERR_CRYPTO. */
int api_client_call(const struct api_client *client, const char *method, const char *path,
		    const char *body, struct api_response *out, char *err, size_t err_len);
void api_response_free(struct api_response *response);

/* The answer's {"error": "..."} text into out (or "unexpected answer"),
 * printable ASCII only (other bytes as '?') and cut to fit out_len. */
void api_response_error(const struct api_response *response, char *out, size_t out_len);

#endif
