/*
 * api.h — the node's HTTP API (JSON over evhttp), versioned under /v1.
 *
 * Every route but GET /v1/health needs `Authorization: Bearer TOKEN`: the
 * admin's (made at first start) or a principal's (api/principals.h), and
 * each route admits some roles only (the table is in api.c and at GET
 * /v1/routes): 401 without a valid token, 403 for a role the route does not
 * admit, 404 for an owner on a vehicle not theirs. Errors are
 * {"error": "..."} with the matching status. Handlers run on the event loop
 * thread and read the store through the engine.
 *
 * Principals (admin): POST /v1/principals {"name", "role", "vins"} answers
 * 201 with {"token"} — shown this once, stored only as a hash; GET
 * /v1/principals never shows tokens; DELETE /v1/principals/{name} revokes.
 *
 * Fleet aggregates (analyst): GET /v1/fleet/aggregate?signal=S&from=MS&to=MS
 * &fn=avg|min|max|count&step=MS answers {"signal", "fn", "min_vehicles",
 * "points": [[bucket_start, value], ...]} over every vehicle of the site
 * not erased, for state and diagnostics signals only. A bucket with samples
 * of fewer than min_vehicles (3) vehicles is left out: it would be one or
 * two cars' own data. At most 10,000 buckets and 5,000,000 samples read.
 *
 * Erasure: an owner asks (POST /v1/vehicles/{vin}/erasure-requests, 202),
 * a privacy officer approves or rejects (GET /v1/erasure-requests, POST
 * /v1/erasure-requests/{id}/approve|reject) or erases alone (DELETE
 * /v1/vehicles/{vin}). From then on the vehicle's samples answer 410 Gone
 * and GET /v1/vehicles/{vin} shows erased_ms and erased_by.
 *
 * Audit log (auditor): GET /v1/audit/checkpoint (text), /v1/audit/key
 * (text), /v1/audit/entries?start=I&end=J ({"entries": [base64, ...]}, at
 * most API_AUDIT_PAGE_MAX per call), /v1/audit/proof/inclusion?index&size
 * and /v1/audit/proof/consistency?from&to ({"hashes": [...]}).
 */
#ifndef DM_API_H
#define DM_API_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"

/* The most audit entries one GET /v1/audit/entries answers. */
#define API_AUDIT_PAGE_MAX 1000

struct event_base;
struct engine;
struct audit_log;
struct api;
struct principals;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

struct api_options {
	struct engine *engine;       /* borrowed */
	const char *jurisdiction;    /* borrowed, outlives the api */
	const char *site;
	const char *admin_token_hash; /* secret_hash() form */
	/* The principals and their tokens, borrowed, outlive the api. NULL: the
	 * admin's token is the only one. */
	struct principals *principals;
	/* The audit log (borrowed): every audited route's call is recorded
	 * before its answer leaves, and a call that cannot be recorded is
	 * answered 503 instead. NULL: no audit (tests of other parts). */
	struct audit_log *audit;
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
/* Listens on "HOST:PORT" for HTTPS only, with ctx (crypto/tls.h: a server
 * context, no client certificate; callers authenticate with their bearer
 * token). The api takes its own reference to ctx (SSL_CTX_up_ref) and drops
 * it in api_free. DM_ERR_INVALID without ctx or when called twice, else as
 * api_listen. */
int api_listen_tls(struct api *api, const char *address, struct ssl_ctx_st *ctx);
int api_port(const struct api *api);
void api_free(struct api *api); /* accepts NULL */

#endif
