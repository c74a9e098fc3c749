/*
 * api.h — the node's HTTP API (JSON over evhttp), versioned under /v1.
 *
 * Every route but GET /v1/health needs `Authorization: Bearer TOKEN`; for
 * now the one principal is the admin, whose token the node creates at first
 * start (the security issue adds roles). Errors are {"error": "..."} with
 * the matching status. Handlers run on the event loop thread and read the
 * store through the engine.
 */
#ifndef DM_API_H
#define DM_API_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"

struct event_base;
struct engine;
struct api;

struct api_options {
	struct engine *engine;       /* borrowed */
	const char *jurisdiction;    /* borrowed, outlives the api */
	const char *site;
	const char *admin_token_hash; /* secret_hash() form */
	size_t max_query_samples;    /* default 100000 */
	/* Where a vehicle to be registered belongs: DM_OK with this site's id in
	 * site, or DM_ERR_DENIED with a message for the caller saying where to
	 * register it instead (its home jurisdiction, or another site of ours). */
	int (*home_site)(void *arg, const char *home, const char *vin, char *site,
			 size_t site_len, char *message, size_t message_len);
	/* Builds the residency report for GET /v1/residency/report (a new
	 * reference the API releases). */
	int (*residency_report)(void *arg, json_t **out);
	/* Writes the Prometheus text for GET /metrics. */
	void (*render_metrics)(void *arg, struct dm_buf *out);
	/* Counts each request by route and status. May be NULL. */
	void (*observe)(void *arg, const char *route, int status);
	void *arg;
};

int api_new(struct event_base *base, const struct api_options *options, struct api **out);
/* Listens on "HOST:PORT"; port 0 picks a free one (see api_port). */
int api_listen(struct api *api, const char *address);
int api_port(const struct api *api);
void api_free(struct api *api); /* accepts NULL */

#endif
