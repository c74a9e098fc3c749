/*
 * api.c — routing, authentication, authorization and the handlers of the
 * /v1 API.
 *
 * Authorization: every route in `routes` (under "routing") names the roles
 * that may call it (api/principals.h). A request is checked in this order,
 * and the first check that fails answers:
 *   1. a route that needs a token and gets none, or one no principal holds:
 *      401;
 *   2. a principal whose role the route does not name: 403;
 *   3. an owner on a {vin} route, for a VIN not theirs: 404, worded exactly
 *      as for a VIN not registered here, so owners cannot probe which VINs
 *      exist.
 * Only then does the handler run. An erased vehicle's samples answer 410
 * Gone, with when and by whom it was erased.
 *
 * Audit (promise 4): every authenticated call of a route with an audit
 * action is recorded in the audit log before its answer leaves, and the
 * answer is a 503 instead when it cannot be. A call that changes something
 * (POST, DELETE) is also recorded as "started" before its handler runs, and
 * not run when that fails; the two entries share the request id, which the
 * answer carries as X-Request-Id.
 *
 * Limits: request bodies of at most 64 KiB, headers of at most 8 KiB, and a
 * 30 s timeout per connection, so a slow or oversized client cannot hold the
 * loop or its memory. Query parameters are parsed strictly: an unknown
 * parameter, a repeated one or a number with trailing characters is a 400.
 */
#include "api/api.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/aggregate.h"
#include "audit/checkpoint.h"
#include "audit/log.h"
#include "api/principals.h"
#include "ingest/catalog.h"
#include "store/db.h"
#include "store/engine.h"
#include "util/addr.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/secret.h"
#include "util/vin.h"

#define MAX_BODY 65536
#define MAX_HEADERS 8192
#define TIMEOUT_S 30
#define DEFAULT_QUERY_SAMPLES 100000

struct api {
	struct api_options opt;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	SSL_CTX *tls; /* our reference; NULL: plain HTTP */
};

/* One request being handled: what the handlers need, in one place. */
struct call {
	struct api *api;
	struct evhttp_request *req;
	const char *route; /* for metrics: the route's pattern, never the VIN */
	char path[256];
	struct evkeyvalq query;
	int have_query;
	/* Who calls, once authorize() passed (copies: a handler may change the
	 * principals). "" on open routes. */
	char who_name[PRINCIPAL_NAME_MAX + 1];
	/* The audit entry of the call (audit/entry.h): the route's action
	 * (NULL: the call is not audited), who, the object (the path's
	 * parameter, or what a handler names) and a request id. */
	const char *action;
	const char *who_kind;
	const char *who_role;
	char object[128];
	/* The vehicle a handler acted on when the path does not name it (an
	 * erasure request's id names no VIN): recorded as params "vin". */
	char subject_vin[VIN_LEN + 1];
	char request_id[17];
};

/* ---- replies ---- */

/* The call's query parameters as a JSON object of strings (NULL if none). */
/* The query parameters an audit entry may hold: the routes' own, never
 * anything else a caller adds (it could be a secret, a foreign VIN or text
 * meant to sit in the log for ever). Values are cut to AUDIT_VALUE_MAX
 * bytes and must be UTF-8. */
#define AUDIT_VALUE_MAX 64
static const char *const audited_params[] = {"signal", "from", "to", "limit", "fn",
					     "step", "status", NULL};

static json_t *query_params(struct call *call)
{
	json_t *params = NULL;
	for (struct evkeyval *kv = call->query.tqh_first; kv; kv = kv->next.tqe_next) {
		int known = 0;
		for (const char *const *name = audited_params; *name && !known; name++)
			known = strcmp(kv->key, *name) == 0;
		if (!known || strlen(kv->value) > AUDIT_VALUE_MAX)
			continue;
		json_t *value = json_string(kv->value); /* NULL: not UTF-8, left out */
		if (value && !params)
			params = json_object();
		if (value && params)
			json_object_set_new(params, kv->key, value);
		else
			json_decref(value);
	}
	return params;
}

/* Appends the call's audit entry with this outcome and status (0: none);
 * returns 0 when it could not be recorded. A call without a valid token is
 * not recorded: it did nothing, and recording it would let anyone fill the
 * log (and its disk) for free. */
static int record_call(struct call *call, const char *outcome, int status)
{
	struct audit_log *log = call->api->opt.audit;
	if (!log || !call->action || !call->who_kind)
		return 1;
	json_t *params = query_params(call);
	if (call->subject_vin[0]) {
		if (!params)
			params = json_object();
		if (params)
			json_object_set_new(params, "vin", json_string(call->subject_vin));
	}
	json_t *object = call->object[0] ? json_string(call->object) : NULL;
	struct audit_entry e = {
		.request = call->request_id,
		.who_kind = call->who_kind,
		.who = call->who_name[0] ? call->who_name : NULL,
		.role = call->who_role,
		.action = call->action,
		.object = object ? call->object : call->object[0] ? "(not UTF-8)" : NULL,
		.params = params,
		.outcome = outcome,
		.status = status,
	};
	int rc = audit_log_append(log, &e);
	json_decref(params);
	json_decref(object);
	return rc == DM_OK;
}

/* Records the call's outcome before its answer leaves (promise 4): returns
 * 0 when it could not be recorded, and the answer must not go. */
static int audited(struct call *call, int status)
{
	return record_call(call,
			   status < 300		       ? "ok"
			   : status == 401 || status == 403 ? "denied"
			   : status == 410		       ? "gone"
			   : status < 500		       ? "refused"
						       : "error",
			   status);
}

static void reply_json(struct call *call, int status, json_t *body)
{
	if (!audited(call, status)) {
		json_decref(body);
		status = 503;
		/* A change already made cannot be taken back: say so, and where
		 * its trace is, rather than let the caller think nothing
		 * happened. */
		int changing = evhttp_request_get_command(call->req) != EVHTTP_REQ_GET;
		body = json_pack("{s:s}", "error",
				 changing ? "the audit log cannot record this call's outcome: the "
					    "change may have been made; its \"started\" entry is in "
					    "the log under this X-Request-Id"
					  : "the audit log cannot record this call, so it is not "
					    "answered");
	}
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "X-Request-Id",
			  call->request_id);
	struct evbuffer *out = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (!out || !text) {
		if (out)
			evbuffer_free(out);
		free(text);
		json_decref(body);
		evhttp_send_error(call->req, 500, "out of memory");
		status = 500;
	} else {
		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Content-Type",
				  "application/json");
		evhttp_send_reply(call->req, status, NULL, out);
		evbuffer_free(out);
		free(text);
		json_decref(body);
	}
	if (call->api->opt.observe)
		call->api->opt.observe(call->api->opt.arg, call->route, status);
}

static void reply_error(struct call *call, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply_error(struct call *call, int status, const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	reply_json(call, status, json_pack("{s:s}", "error", message));
}

/* ---- request parsing ---- */

/* The principal behind the request's bearer token, or NULL. Borrowed:
 * valid until the principals change. */
static const struct principal *authenticate(struct call *call)
{
	const char *header =
		evhttp_find_header(evhttp_request_get_input_headers(call->req), "Authorization");
	static const char scheme[] = "Bearer ";
	if (!header || strncmp(header, scheme, sizeof scheme - 1) != 0)
		return NULL;
	const char *token = header + sizeof scheme - 1;
	size_t len = strlen(token);
	const struct principal *who = NULL;
	if (call->api->opt.principals) {
		principals_authenticate(call->api->opt.principals, token, len, &who);
		return who;
	}
	/* Without principals, the admin's token is the only one. */
	static const struct principal admin = {.name = "admin", .role = ROLE_ADMIN};
	return secret_verify(token, len, call->api->opt.admin_token_hash) == DM_OK ? &admin
										   : NULL;
}

/* Checks that the query has only the allowed parameters, each once. */
static int query_check(struct call *call, const char *const *allowed)
{
	for (struct evkeyval *kv = call->query.tqh_first; kv; kv = kv->next.tqe_next) {
		int known = 0;
		for (const char *const *name = allowed; *name; name++)
			known |= strcmp(kv->key, *name) == 0;
		if (!known) {
			reply_error(call, 400, "unknown query parameter '%.64s'", kv->key);
			return 0;
		}
		for (struct evkeyval *other = kv->next.tqe_next; other; other = other->next.tqe_next) {
			if (strcmp(kv->key, other->key) == 0) {
				reply_error(call, 400, "query parameter '%.64s' given twice",
					    kv->key);
				return 0;
			}
		}
	}
	return 1;
}

/* An integer parameter; absent gives fallback. Replies 400 and returns 0
 * when present but not a whole number in [min, max]. */
static int query_int(struct call *call, const char *name, int64_t fallback, int64_t min,
		     int64_t max, int64_t *out)
{
	const char *text = evhttp_find_header(&call->query, name);
	*out = fallback;
	if (!text)
		return 1;
	char *end;
	errno = 0;
	long long value = strtoll(text, &end, 10);
	if (*text == '\0' || *end != '\0' || errno || value < min || value > max) {
		reply_error(call, 400, "'%s' must be an integer from %" PRId64 " to %" PRId64,
			    name, min, max);
		return 0;
	}
	*out = value;
	return 1;
}

/* The VIN in /v1/vehicles/{vin}..., checked, and its registered vehicle. */
static struct fleet_vehicle *path_vehicle(struct call *call, const char *vin, size_t len)
{
	char err[128];
	if (vin_check(vin, len, err, sizeof err) != DM_OK) {
		reply_error(call, 400, "%s", err);
		return NULL;
	}
	struct fleet_vehicle *vehicle = fleet_by_vin(engine_fleet(call->api->opt.engine), vin, len);
	if (!vehicle)
		reply_error(call, 404, "no vehicle %.*s is registered at this site", (int)len, vin);
	return vehicle;
}

/* ---- JSON of stored things ---- */

/* A vehicle's registration: never its samples. An erased vehicle shows
 * when and by whom. */
static json_t *vehicle_json(const struct fleet_vehicle *vehicle)
{
	json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "vin", vehicle->record.vin,
				"home", vehicle->record.home, "home_site",
				vehicle->record.home_site, "model", vehicle->record.model,
				"registered_ms", (json_int_t)vehicle->record.created_ms, "erased",
				vehicle->record.erased_ms != 0);
	if (out && vehicle->record.erased_ms) {
		json_object_set_new(out, "erased_ms", json_integer(vehicle->record.erased_ms));
		json_object_set_new(out, "erased_by", json_string(vehicle->record.erased_by));
	}
	return out;
}

/* 410 for an erased vehicle: when and by whom, nothing of its data. */
static void reply_gone(struct call *call, const struct fleet_vehicle *vehicle)
{
	char message[160];
	snprintf(message, sizeof message, "vehicle %s was erased; its data is gone",
		 vehicle->record.vin);
	reply_json(call, 410,
		   json_pack("{s:s, s:s, s:I, s:s}", "error", message, "vin", vehicle->record.vin,
			     "erased_ms", (json_int_t)vehicle->record.erased_ms, "erased_by",
			     vehicle->record.erased_by));
}

static json_t *value_json(const struct engine_series *series, size_t i)
{
	switch (series->type) {
	case SIG_FLOAT:
		return json_real(series->vals[i].f);
	case SIG_INT:
		return json_integer(series->vals[i].i);
	case SIG_BOOL:
		return json_boolean(series->vals[i].i);
	case SIG_STRING:
		return json_string((const char *)series->strings.data + series->vals[i].i);
	}
	return json_null();
}

/* ---- handlers ---- */

static void get_health(struct call *call)
{
	struct engine_stats stats;
	engine_stats(call->api->opt.engine, &stats);
	struct audit_log *log = call->api->opt.audit;
	int audit_failed = log && audit_store_failed(audit_log_store(log));
	int healthy = !stats.wal_failed && !stats.flush_failing && !audit_failed;
	reply_json(call, healthy ? 200 : 503,
		   json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "status", healthy ? "ok" : "failing",
			     "jurisdiction", call->api->opt.jurisdiction, "site",
			     call->api->opt.site, "wal", stats.wal_failed ? "failed" : "ok", "flush",
			     stats.flush_failing ? "failing" : "ok", "audit",
			     audit_failed ? "failed" : "ok"));
}

static void get_metrics(struct call *call)
{
	struct dm_buf text = {0};
	call->api->opt.render_metrics(call->api->opt.arg, &text);
	struct evbuffer *out = evbuffer_new();
	if (out && text.data) {
		evbuffer_add(out, text.data, text.len);
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Content-Type",
				  "text/plain; version=0.0.4");
		evhttp_send_reply(call->req, 200, NULL, out);
	} else {
		evhttp_send_error(call->req, 500, "out of memory");
	}
	if (out)
		evbuffer_free(out);
	dm_buf_free(&text);
	if (call->api->opt.observe)
		call->api->opt.observe(call->api->opt.arg, call->route, 200);
}

static void post_vehicle(struct call *call)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
	size_t len = evbuffer_get_length(in);
	const char *body = (const char *)evbuffer_pullup(in, (ssize_t)len);
	json_error_t jerr;
	json_t *doc = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!doc) {
		reply_error(call, 400, "the body is not JSON: %s", body ? jerr.text : "empty");
		return;
	}
	const char *vin = NULL, *home = NULL, *model = NULL;
	char site[64], where[512];
	if (json_unpack_ex(doc, &jerr, JSON_STRICT, "{s:s, s:s, s:s}", "vin", &vin, "home", &home,
			   "model", &model) != 0) {
		reply_error(call, 400, "expected {\"vin\", \"home\", \"model\"} as strings: %s",
			    jerr.text);
		json_decref(doc);
		return;
	}
	char err[128];
	if (vin_check(vin, strlen(vin), err, sizeof err) != DM_OK) {
		reply_error(call, 400, "%s", err);
	} else if (!jurisdiction_code_valid(home)) {
		reply_error(call, 400, "'home' must be an ISO 3166 alpha-2 code such as \"CN\"");
	} else if (strlen(model) == 0 || strlen(model) > 64) {
		reply_error(call, 400, "'model' must be 1 to 64 bytes");
	} else if (call->api->opt.home_site(call->api->opt.arg, home, vin, site, sizeof site,
					    where, sizeof where) != DM_OK) {
		reply_error(call, 409, "%s", where);
	} else {
		char secret[64];
		struct fleet_vehicle *vehicle;
		int rc = engine_register(call->api->opt.engine, vin, home, site, model, secret,
					 sizeof secret, &vehicle);
		/* Only a vehicle of this site is named in the audit entry: a
		 * VIN refused above may be another jurisdiction's. */
		snprintf(call->object, sizeof call->object, "%s", vin);
		if (rc == DM_ERR_EXISTS) {
			reply_error(call, 409, "vehicle %s is already registered", vin);
		} else if (rc) {
			reply_error(call, 500, "registration failed: %s", dm_strerror(rc));
		} else {
			json_t *out = vehicle_json(vehicle);
			json_object_set_new(out, "mqtt_secret", json_string(secret));
			reply_json(call, 201, out);
			dm_info("vehicle %s registered (home %s)", vin, home);
		}
		OPENSSL_cleanse(secret, sizeof secret);
	}
	json_decref(doc);
}

static void get_vehicle(struct call *call, const char *vin, size_t len)
{
	struct fleet_vehicle *vehicle = path_vehicle(call, vin, len);
	if (vehicle)
		reply_json(call, 200, vehicle_json(vehicle));
}

/* A read of stored samples that failed for another reason than erasure. */
static void reply_read_failed(struct call *call, int rc)
{
	if (rc == DM_ERR_CRYPTO)
		reply_error(call, 500,
			    "a stored block of this vehicle failed its integrity check: it was "
			    "altered, or moved from another vehicle's or time's place (the node's "
			    "log names the block)");
	else
		reply_error(call, 500, "reading samples failed: %s", dm_strerror(rc));
}

static void get_samples(struct call *call, const char *vin, size_t len)
{
	static const char *const allowed[] = {"signal", "from", "to", "limit", NULL};
	struct fleet_vehicle *vehicle = path_vehicle(call, vin, len);
	if (vehicle && vehicle->record.erased_ms) {
		reply_gone(call, vehicle);
		return;
	}
	if (!vehicle || !query_check(call, allowed))
		return;
	const char *signal = evhttp_find_header(&call->query, "signal");
	const struct catalog *catalog = engine_catalog(call->api->opt.engine);
	const struct catalog_signal *sig = signal ? catalog_find(catalog, signal, strlen(signal))
						  : NULL;
	if (!signal) {
		reply_error(call, 400, "the query needs 'signal', a VSS path from the catalog");
		return;
	}
	if (!sig) {
		reply_error(call, 400, "unknown signal '%.128s'", signal);
		return;
	}
	size_t max = call->api->opt.max_query_samples;
	int64_t from, to, limit;
	if (!query_int(call, "from", INT64_MIN, INT64_MIN, INT64_MAX, &from) ||
	    !query_int(call, "to", INT64_MAX, INT64_MIN, INT64_MAX, &to) ||
	    !query_int(call, "limit", (int64_t)max, 1, (int64_t)max, &limit))
		return;
	if (from > to) {
		reply_error(call, 400, "'from' must not be after 'to'");
		return;
	}
	struct engine_series series;
	int rc = engine_query(call->api->opt.engine, vehicle, sig->id, from, to, (size_t)limit,
			      &series);
	if (rc == DM_ERR_GONE) {
		reply_gone(call, vehicle);
		return;
	}
	if (rc) {
		reply_read_failed(call, rc);
		return;
	}
	json_t *rows = json_array();
	for (size_t i = 0; rows && i < series.count; i++)
		json_array_append_new(rows, json_pack("[I, o]", (json_int_t)series.ts[i],
						      value_json(&series, i)));
	json_t *out = json_pack("{s:s, s:s, s:s, s:o, s:b}", "vin", vehicle->record.vin, "signal",
				sig->path, "unit", sig->unit, "samples", rows, "truncated",
				series.truncated);
	engine_series_free(&series);
	reply_json(call, 200, out);
}

static void get_latest(struct call *call, const char *vin, size_t len)
{
	struct fleet_vehicle *vehicle = path_vehicle(call, vin, len);
	if (!vehicle)
		return;
	if (vehicle->record.erased_ms) {
		reply_gone(call, vehicle);
		return;
	}
	const struct catalog *catalog = engine_catalog(call->api->opt.engine);
	json_t *signals = json_object();
	for (size_t id = 0; id < catalog_count(catalog); id++) {
		const struct catalog_signal *sig = catalog_get(catalog, (uint16_t)id);
		struct engine_series series;
		int rc = engine_latest(call->api->opt.engine, vehicle, sig->id, &series);
		if (rc) {
			json_decref(signals);
			if (rc == DM_ERR_GONE)
				reply_gone(call, vehicle);
			else
				reply_read_failed(call, rc);
			return;
		}
		if (series.count)
			json_object_set_new(signals, sig->path,
					    json_pack("{s:I, s:o, s:s}", "ts",
						      (json_int_t)series.ts[0], "value",
						      value_json(&series, 0), "unit", sig->unit));
		engine_series_free(&series);
	}
	reply_json(call, 200, json_pack("{s:s, s:o}", "vin", vehicle->record.vin, "signals", signals));
}

static void get_residency_report(struct call *call, const char *vin, size_t len)
{
	json_t *report = NULL;
	int rc = call->api->opt.residency_report(call->api->opt.arg, &report);
	if (rc)
		reply_error(call, 500, "the residency report failed: %s", dm_strerror(rc));
	else
		reply_json(call, 200, report);
}

/* POST /v1/keys/rotate: a new KEK, and every vehicle's data key re-wrapped
 * under it (engine_rotate_kek); the blocks stay as they are. */
static void post_kek_rotation(struct call *call, const char *vin, size_t len)
{
	uint32_t kek_id = 0;
	int rc = engine_rotate_kek(call->api->opt.engine, &kek_id);
	if (rc == DM_ERR_UNSUPPORTED) {
		reply_error(call, 409, "this store keeps its samples in clear: it has no KEK");
		return;
	}
	if (rc == DM_ERR_STATE) {
		reply_error(call, 503, "an earlier KEK rotation did not finish: restart the node "
				       "before rotating again");
		return;
	}
	if (rc) {
		reply_error(call, 500, "the KEK rotation failed: %s (the node's log says whether "
				       "the previous KEK stays current)",
			    dm_strerror(rc));
		return;
	}
	char id[9];
	snprintf(id, sizeof id, "%08x", (unsigned)kek_id);
	dm_info("KEK rotated to %s by %s", id, call->who_name);
	reply_json(call, 200, json_pack("{s:s}", "kek_id", id));
}

/* ---- principals (admin) ---- */

/* The request's body as a JSON object (a new reference), or NULL after
 * replying 400. */
static json_t *body_object(struct call *call)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
	size_t len = evbuffer_get_length(in);
	const char *body = len ? (const char *)evbuffer_pullup(in, (ssize_t)len) : NULL;
	json_error_t jerr;
	json_t *doc = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!doc) {
		reply_error(call, 400, "the body is not JSON: %s", body ? jerr.text : "empty");
		return NULL;
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		reply_error(call, 400, "the body must be a JSON object");
		return NULL;
	}
	return doc;
}

/* What anyone listing principals sees: never a token, nor its hash. */
static json_t *principal_json(const struct principal *p)
{
	json_t *out = json_pack("{s:s, s:s, s:I, s:s}", "name", p->name, "role", role_name(p->role),
				"created_ms", (json_int_t)p->created_ms, "created_by",
				p->created_by);
	if (out && p->role == ROLE_OWNER) {
		json_t *vins = json_array();
		for (size_t i = 0; vins && i < p->vin_count; i++)
			json_array_append_new(vins, json_string(p->vins[i]));
		json_object_set_new(out, "vins", vins);
	}
	return out;
}

static void post_principal(struct call *call, const char *param, size_t param_len)
{
	struct principals *set = call->api->opt.principals;
	if (!set) {
		reply_error(call, 501, "this node keeps no principals");
		return;
	}
	json_t *doc = body_object(call);
	if (!doc)
		return;
	const char *name = NULL, *role_text = NULL;
	json_t *vins = NULL;
	json_error_t jerr;
	if (json_unpack_ex(doc, &jerr, JSON_STRICT, "{s:s, s:s, s?o}", "name", &name, "role",
			   &role_text, "vins", &vins) != 0) {
		reply_error(call, 400,
			    "expected {\"name\": string, \"role\": string[, \"vins\": [VIN, ...]]}: "
			    "%s",
			    jerr.text);
		json_decref(doc);
		return;
	}
	snprintf(call->object, sizeof call->object, "%s", name);
	enum role role;
	size_t vin_count = vins ? json_array_size(vins) : 0;
	const char *list[PRINCIPAL_MAX_VINS];
	int ok = 1;
	if (role_parse(role_text, &role) != DM_OK || role == ROLE_ADMIN) {
		reply_error(call, 400,
			    "'role' must be operator, analyst, privacy_officer, auditor or owner");
		ok = 0;
	} else if (vins && role != ROLE_OWNER) {
		reply_error(call, 400, "only owners have 'vins'");
		ok = 0;
	} else if (vins && (!json_is_array(vins) || vin_count > PRINCIPAL_MAX_VINS)) {
		reply_error(call, 400, "'vins' must be an array of at most %d VINs",
			    PRINCIPAL_MAX_VINS);
		ok = 0;
	}
	for (size_t i = 0; ok && i < vin_count; i++) {
		list[i] = json_string_value(json_array_get(vins, i));
		if (!list[i]) {
			reply_error(call, 400, "vins[%zu] is not a string", i);
			ok = 0;
		} else if (vin_check(list[i], strlen(list[i]), NULL, 0) == DM_OK &&
			   !fleet_by_vin(engine_fleet(call->api->opt.engine), list[i],
					 strlen(list[i]))) {
			/* An owner of a vehicle this site does not keep would see nothing:
			 * more likely a typo than an intention. */
			reply_error(call, 400, "vins[%zu]: no vehicle %s is registered at this site",
				    i, list[i]);
			ok = 0;
		}
	}
	if (!ok) {
		json_decref(doc);
		return;
	}
	char token[PRINCIPAL_TOKEN_BUF_SIZE], err[256];
	const struct principal *added;
	int rc = principals_add(set, name, role, list, vin_count, call->who_name, dm_now_ms(),
				token, sizeof token, &added, err, sizeof err);
	if (rc == DM_ERR_INVALID) {
		reply_error(call, 400, "%s", err);
	} else if (rc == DM_ERR_EXISTS) {
		reply_error(call, 409, "%s", err);
	} else if (rc) {
		reply_error(call, 500, "adding the principal failed: %s", dm_strerror(rc));
	} else {
		json_t *out = principal_json(added);
		json_object_set_new(out, "token", json_string(token));
		/* The token is in this answer and nowhere else: keep it out of caches. */
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Cache-Control",
				  "no-store");
		reply_json(call, 201, out);
		dm_info("principal %s (%s) added by %s", added->name, role_name(added->role),
			call->who_name);
	}
	OPENSSL_cleanse(token, sizeof token);
	json_decref(doc);
}

static void get_principals(struct call *call, const char *param, size_t param_len)
{
	const struct principals *set = call->api->opt.principals;
	json_t *items = json_array();
	for (size_t i = 0; set && items && i < principals_count(set); i++)
		json_array_append_new(items, principal_json(principals_at(set, i)));
	reply_json(call, 200, json_pack("{s:o}", "principals", items));
}

static void delete_principal(struct call *call, const char *param, size_t param_len)
{
	struct principals *set = call->api->opt.principals;
	char name[PRINCIPAL_NAME_MAX + 1];
	if (!set || param_len >= sizeof name) {
		reply_error(call, 404, "no such principal");
		return;
	}
	memcpy(name, param, param_len);
	name[param_len] = '\0';
	int rc = principals_remove(set, name, call->who_name, dm_now_ms());
	if (rc == DM_ERR_NOT_FOUND) {
		reply_error(call, 404, "no such principal");
	} else if (rc == DM_ERR_DENIED) {
		reply_error(call, 400, "the admin is the bootstrap token and cannot be removed");
	} else if (rc) {
		reply_error(call, 500, "removing the principal failed: %s", dm_strerror(rc));
	} else {
		reply_json(call, 200, json_pack("{s:s, s:b}", "name", name, "removed", 1));
		dm_info("principal %s removed by %s", name, call->who_name);
	}
}

/* ---- fleet aggregates (analyst) ---- */

/* The most samples one aggregate may read, over all vehicles: the loop
 * reads them, so this bounds how long one request can hold it. */
#define AGGREGATE_MAX_SAMPLES 5000000

struct fleet_walk {
	struct engine *engine;
	struct aggregate *agg;
	uint16_t signal;
	size_t page;    /* samples per engine_query */
	size_t scanned; /* samples read so far */
	int status;
};

/* Feeds one vehicle's samples in [from, to) to the aggregate, a page at a
 * time. Pages continue from the last timestamp of the one before, skipping
 * the samples at that instant it already held. */
static int aggregate_one(void *arg, struct fleet_vehicle *vehicle)
{
	struct fleet_walk *walk = arg;
	if (vehicle->record.erased_ms)
		return DM_OK;
	struct aggregate *agg = walk->agg;
	aggregate_vehicle(agg);
	int64_t from = agg->from;
	size_t skip = 0;
	for (;;) {
		struct engine_series series;
		int rc = engine_query(walk->engine, vehicle, walk->signal, from, agg->to - 1,
				      walk->page, &series);
		if (rc == DM_ERR_GONE)
			return DM_OK; /* erased: nothing of it counts */
		if (rc)
			return walk->status = rc;
		size_t i = 0;
		while (i < series.count && i < skip && series.ts[i] == from)
			i++;
		for (; i < series.count; i++) {
			double value = series.type == SIG_FLOAT ? series.vals[i].f
								: (double)series.vals[i].i;
			aggregate_add(agg, series.ts[i], value);
		}
		walk->scanned += series.count;
		int more = series.truncated && series.count > 0;
		int64_t last = series.count ? series.ts[series.count - 1] : from;
		size_t at_last = 0;
		for (size_t k = series.count; k > 0 && series.ts[k - 1] == last; k--)
			at_last++;
		int stuck = more && series.ts[0] == last; /* a whole page at one instant */
		engine_series_free(&series);
		if (walk->scanned > AGGREGATE_MAX_SAMPLES || stuck)
			return walk->status = DM_ERR_TOO_LARGE;
		if (!more)
			return DM_OK;
		from = last;
		skip = at_last;
	}
}

static void get_fleet_aggregate(struct call *call, const char *param, size_t param_len)
{
	static const char *const allowed[] = {"signal", "from", "to", "fn", "step", NULL};
	if (!query_check(call, allowed))
		return;
	const char *signal = evhttp_find_header(&call->query, "signal");
	const char *fn_text = evhttp_find_header(&call->query, "fn");
	if (!signal || !fn_text || !evhttp_find_header(&call->query, "from") ||
	    !evhttp_find_header(&call->query, "to") || !evhttp_find_header(&call->query, "step")) {
		reply_error(call, 400, "the query needs signal, from, to, fn and step");
		return;
	}
	const struct catalog_signal *sig =
		catalog_find(engine_catalog(call->api->opt.engine), signal, strlen(signal));
	enum aggregate_fn fn;
	if (!sig) {
		reply_error(call, 400, "unknown signal '%.128s'", signal);
		return;
	}
	if (aggregate_fn_parse(fn_text, &fn) != DM_OK) {
		reply_error(call, 400, "'fn' must be avg, min, max or count");
		return;
	}
	if (sig->type == SIG_STRING) {
		reply_error(call, 400, "%s is a string signal: it has no avg, min or max",
			    sig->path);
		return;
	}
	if (sig->category != CAT_STATE && sig->category != CAT_DIAGNOSTICS) {
		/* Even averaged over three cars, a position or a camera's state is
		 * where those cars were: analysts get none of it. */
		reply_error(call, 403, "%s is %s data: fleet aggregates cover state and diagnostics "
				       "only", sig->path, sig_category_name(sig->category));
		return;
	}
	int64_t from, to, step;
	if (!query_int(call, "from", 0, 0, INT64_MAX, &from) ||
	    !query_int(call, "to", 0, 0, INT64_MAX, &to) ||
	    !query_int(call, "step", 1, 1, INT64_MAX, &step))
		return;
	struct aggregate agg;
	int rc = aggregate_init(&agg, from, to, step);
	if (rc == DM_ERR_INVALID) {
		reply_error(call, 400, "'from' must be before 'to'");
		return;
	}
	if (rc == DM_ERR_TOO_LARGE) {
		reply_error(call, 400, "(to - from) / step is more than %d buckets",
			    AGGREGATE_MAX_BUCKETS);
		return;
	}
	if (rc) {
		reply_error(call, 500, "aggregate: %s", dm_strerror(rc));
		return;
	}
	struct fleet_walk walk = {
		.engine = call->api->opt.engine,
		.agg = &agg,
		.signal = sig->id,
		.page = call->api->opt.max_query_samples,
	};
	fleet_each(engine_fleet(call->api->opt.engine), aggregate_one, &walk);
	if (walk.status == DM_ERR_TOO_LARGE) {
		reply_error(call, 400, "the range holds more than %d samples of the fleet: narrow it",
			    AGGREGATE_MAX_SAMPLES);
	} else if (walk.status) {
		reply_error(call, 500, "reading samples failed: %s", dm_strerror(walk.status));
	} else {
		json_t *points = json_array();
		size_t suppressed = 0;
		for (size_t k = 0; points && k < agg.bucket_count; k++) {
			double value;
			if (!aggregate_value(&agg, k, fn, AGGREGATE_MIN_VEHICLES, &value)) {
				suppressed += agg.buckets[k].count > 0;
				continue;
			}
			json_t *v = fn == AGGREGATE_COUNT ? json_integer((json_int_t)value)
							  : json_real(value);
			json_array_append_new(points,
					      json_pack("[I, o]",
							(json_int_t)aggregate_bucket_start(&agg, k),
							v));
		}
		reply_json(call, 200,
			   json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:I, s:o}", "signal",
				     sig->path, "unit", sig->unit, "fn", aggregate_fn_name(fn), "from",
				     (json_int_t)from, "to", (json_int_t)to, "step", (json_int_t)step,
				     "min_vehicles", AGGREGATE_MIN_VEHICLES, "suppressed_buckets",
				     (json_int_t)suppressed, "points", points));
	}
	aggregate_free(&agg);
}

/* ---- erasure (privacy officer, owner) ---- */

static void reply_erase_failed(struct call *call, int rc)
{
	if (rc == DM_ERR_UNSUPPORTED)
		reply_error(call, 501, "this node cannot erase vehicles yet; nothing was erased");
	else
		reply_error(call, 500, "the erasure failed (%s); nothing was erased",
			    dm_strerror(rc));
}

static json_t *erasure_request_json(const struct db_erasure_request *r)
{
	json_t *out = json_pack("{s:I, s:s, s:s, s:I, s:s}", "id", (json_int_t)r->id, "vin",
				r->vin, "requested_by", r->requested_by, "requested_ms",
				(json_int_t)r->requested_ms, "status", r->status);
	if (out && r->decided_ms) {
		json_object_set_new(out, "decided_by", json_string(r->decided_by));
		json_object_set_new(out, "decided_ms", json_integer(r->decided_ms));
	}
	return out;
}

/* DELETE /v1/vehicles/{vin}: a privacy officer erases a vehicle alone. */
static void delete_vehicle(struct call *call, const char *vin, size_t len)
{
	struct fleet_vehicle *vehicle = path_vehicle(call, vin, len);
	if (!vehicle)
		return;
	if (vehicle->record.erased_ms) {
		reply_gone(call, vehicle);
		return;
	}
	int rc = engine_erase(call->api->opt.engine, vehicle, call->who_name);
	if (rc == DM_ERR_GONE) {
		reply_gone(call, vehicle);
		return;
	}
	if (rc) {
		reply_erase_failed(call, rc);
		return;
	}
	/* Requests the owner made are answered by this erasure. */
	if (db_erasure_request_close(engine_db(call->api->opt.engine), vehicle->record.vin,
				     call->who_name, vehicle->record.erased_ms) != DM_OK)
		dm_warn("vehicle %s erased, but its pending erasure requests stay pending",
			vehicle->record.vin);
	dm_info("vehicle %s erased by %s", vehicle->record.vin, call->who_name);
	reply_json(call, 200, vehicle_json(vehicle));
}

/* POST /v1/vehicles/{vin}/erasure-requests: an owner asks. The body is
 * empty or {}. */
static void post_erasure_request(struct call *call, const char *vin, size_t len)
{
	struct fleet_vehicle *vehicle = path_vehicle(call, vin, len);
	if (!vehicle)
		return;
	struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
	if (evbuffer_get_length(in)) {
		json_t *doc = body_object(call);
		if (!doc)
			return;
		size_t members = json_object_size(doc);
		json_decref(doc);
		if (members) {
			reply_error(call, 400, "an erasure request takes no fields");
			return;
		}
	}
	if (vehicle->record.erased_ms) {
		reply_gone(call, vehicle);
		return;
	}
	struct db *db = engine_db(call->api->opt.engine);
	struct db_erasure_request r;
	int rc = db_erasure_request_pending(db, vehicle->record.vin, &r);
	if (rc == DM_OK) {
		reply_json(call, 409,
			   json_pack("{s:s, s:I}", "error",
				     "an erasure request for this vehicle is pending", "id",
				     (json_int_t)r.id));
		return;
	}
	if (rc != DM_ERR_NOT_FOUND) {
		reply_error(call, 500, "reading erasure requests failed: %s", dm_strerror(rc));
		return;
	}
	memset(&r, 0, sizeof r);
	snprintf(r.vin, sizeof r.vin, "%s", vehicle->record.vin);
	snprintf(r.requested_by, sizeof r.requested_by, "%s", call->who_name);
	r.requested_ms = dm_now_ms();
	rc = db_erasure_request_insert(db, &r);
	if (rc) {
		reply_error(call, 500, "recording the request failed: %s", dm_strerror(rc));
		return;
	}
	dm_info("erasure of vehicle %s asked for by %s (request %lld)", r.vin, r.requested_by,
		(long long)r.id);
	reply_json(call, 202, erasure_request_json(&r));
}

static int add_request(void *arg, const struct db_erasure_request *r)
{
	return json_array_append_new(arg, erasure_request_json(r)) == 0 ? DM_OK : DM_ERR_NOMEM;
}

static void get_erasure_requests(struct call *call, const char *param, size_t param_len)
{
	static const char *const allowed[] = {"status", "limit", NULL};
	if (!query_check(call, allowed))
		return;
	const char *status = evhttp_find_header(&call->query, "status");
	if (status && strcmp(status, "pending") && strcmp(status, "approved") &&
	    strcmp(status, "rejected")) {
		reply_error(call, 400, "'status' must be pending, approved or rejected");
		return;
	}
	int64_t limit;
	if (!query_int(call, "limit", 100, 1, 1000, &limit))
		return;
	json_t *items = json_array();
	int rc = items ? db_erasure_request_each(engine_db(call->api->opt.engine), status,
						 (unsigned)limit, add_request, items)
		       : DM_ERR_NOMEM;
	if (rc) {
		json_decref(items);
		reply_error(call, 500, "reading erasure requests failed: %s", dm_strerror(rc));
		return;
	}
	reply_json(call, 200, json_pack("{s:o}", "requests", items));
}

/* The {id} of /v1/erasure-requests/{id}/...: a positive decimal. */
static int parse_request_id(const char *text, size_t len, int64_t *out)
{
	*out = 0;
	if (len == 0 || len > 18 || text[0] == '0')
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return 0;
		*out = *out * 10 + (text[i] - '0');
	}
	return 1;
}

/* Approves (erases the vehicle, then records the decision) or rejects.
 * When the erasure fails the request stays pending; when the decision
 * cannot be recorded after the erasure, approving again finds the vehicle
 * erased (DM_ERR_GONE) and records it then. */
static void decide_request(struct call *call, const char *param, size_t len, int approve)
{
	int64_t id;
	struct db *db = engine_db(call->api->opt.engine);
	struct db_erasure_request r;
	int rc = parse_request_id(param, len, &id) ? db_erasure_request_get(db, id, &r)
						   : DM_ERR_NOT_FOUND;
	if (rc == DM_ERR_NOT_FOUND) {
		reply_error(call, 404, "no such erasure request");
		return;
	}
	if (rc) {
		reply_error(call, 500, "reading the erasure request failed: %s", dm_strerror(rc));
		return;
	}
	snprintf(call->subject_vin, sizeof call->subject_vin, "%s", r.vin);
	if (strcmp(r.status, "pending") != 0) {
		reply_error(call, 409, "erasure request %lld was %s by %s already", (long long)id,
			    r.status, r.decided_by);
		return;
	}
	struct fleet_vehicle *vehicle = NULL;
	if (approve) {
		vehicle = fleet_by_vin(engine_fleet(call->api->opt.engine), r.vin, strlen(r.vin));
		rc = vehicle ? engine_erase(call->api->opt.engine, vehicle, call->who_name)
			     : DM_ERR_NOT_FOUND;
		if (rc && rc != DM_ERR_GONE) {
			reply_erase_failed(call, rc);
			return;
		}
	}
	rc = db_erasure_request_decide(db, id, approve ? "approved" : "rejected", call->who_name,
				       dm_now_ms());
	if (rc == DM_OK)
		rc = db_erasure_request_get(db, id, &r);
	if (rc) {
		reply_error(call, 500, "%s, but recording the decision failed: %s",
			    approve ? "the vehicle is erased" : "nothing was erased",
			    dm_strerror(rc));
		return;
	}
	json_t *out = erasure_request_json(&r);
	if (vehicle) {
		json_object_set_new(out, "erased_ms", json_integer(vehicle->record.erased_ms));
		json_object_set_new(out, "erased_by", json_string(vehicle->record.erased_by));
		dm_info("erasure request %lld approved by %s: vehicle %s erased", (long long)id,
			call->who_name, r.vin);
	} else {
		dm_info("erasure request %lld rejected by %s", (long long)id, call->who_name);
	}
	reply_json(call, 200, out);
}

static void approve_request(struct call *call, const char *param, size_t len)
{
	decide_request(call, param, len, 1);
}

static void reject_request(struct call *call, const char *param, size_t len)
{
	decide_request(call, param, len, 0);
}

/* ---- the audit log (auditor) ---- */

static void reply_text(struct call *call, int status, const struct dm_buf *text)
{
	struct evbuffer *out = evbuffer_new();
	if (!out) {
		evhttp_send_error(call->req, 500, "out of memory");
		return;
	}
	evbuffer_add(out, text->data, text->len);
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "Content-Type",
			  "text/plain; charset=utf-8");
	evhttp_send_reply(call->req, status, NULL, out);
	evbuffer_free(out);
	if (call->api->opt.observe)
		call->api->opt.observe(call->api->opt.arg, call->route, status);
}

/* The audit log, or NULL after replying 404 on a node without one. */
static struct audit_log *audit_of(struct call *call)
{
	if (!call->api->opt.audit)
		reply_error(call, 404, "this node keeps no audit log");
	return call->api->opt.audit;
}

static void get_audit_checkpoint(struct call *call, const char *param, size_t len)
{
	struct audit_log *log = audit_of(call);
	struct dm_buf text = {0};
	if (!log)
		return;
	if (audit_log_checkpoint(log, &text) != DM_OK)
		reply_error(call, 500, "no signed checkpoint could be made");
	else
		reply_text(call, 200, &text);
	dm_buf_free(&text);
}

static void get_audit_key(struct call *call, const char *param, size_t len)
{
	struct audit_log *log = audit_of(call);
	struct dm_buf text = {0};
	if (!log)
		return;
	if (audit_log_verifier_key(log, &text) != DM_OK || dm_buf_append(&text, "\n", 1) != DM_OK)
		reply_error(call, 500, "out of memory");
	else
		reply_text(call, 200, &text);
	dm_buf_free(&text);
}

/* Base64 of each hash, as a JSON array. */
static json_t *hashes_json(const uint8_t hashes[][MERKLE_HASH_LEN], size_t count)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < count; i++) {
		struct dm_buf b64 = {0};
		if (audit_base64_encode(hashes[i], MERKLE_HASH_LEN, &b64) != DM_OK ||
		    json_array_append_new(list, json_string((const char *)b64.data)) != 0) {
			json_decref(list);
			list = NULL;
		}
		dm_buf_free(&b64);
	}
	return list;
}

/* {"<a>": av, "<b>": bv, "hashes": [...]} for a proof made with status rc. */
static void reply_proof(struct call *call, int rc, const char *a, int64_t av, const char *b,
			int64_t bv, const uint8_t proof[][MERKLE_HASH_LEN], size_t count)
{
	json_t *hashes = rc == DM_OK ? hashes_json(proof, count) : NULL;
	if (!hashes) {
		reply_error(call, 500, "no proof: %s", dm_strerror(rc ? rc : DM_ERR_NOMEM));
		return;
	}
	reply_json(call, 200, json_pack("{s:I, s:I, s:o}", a, (json_int_t)av, b, (json_int_t)bv,
					"hashes", hashes));
}

static void get_audit_entries(struct call *call, const char *param, size_t len)
{
	static const char *const allowed[] = {"start", "end", NULL};
	struct audit_log *log = audit_of(call);
	if (!log || !query_check(call, allowed))
		return;
	struct audit_store *store = audit_log_store(log);
	int64_t size = (int64_t)audit_store_size(store), start, end;
	if (!query_int(call, "start", 0, 0, size, &start))
		return;
	/* Without an end, a page up to the size the latest checkpoint signs. */
	int64_t signed_size = (int64_t)audit_log_checkpoint_size(log);
	int64_t fallback = signed_size > start ? signed_size : start;
	if (fallback - start > API_AUDIT_PAGE_MAX)
		fallback = start + API_AUDIT_PAGE_MAX;
	if (!query_int(call, "end", fallback, start, size, &end))
		return;
	if (end - start > API_AUDIT_PAGE_MAX) {
		reply_error(call, 400, "at most %d entries at a time", API_AUDIT_PAGE_MAX);
		return;
	}
	json_t *list = json_array();
	struct dm_buf entry = {0}, b64 = {0};
	int rc = list ? DM_OK : DM_ERR_NOMEM;
	for (int64_t i = start; rc == DM_OK && i < end; i++) {
		dm_buf_reset(&entry);
		dm_buf_reset(&b64);
		rc = audit_store_entry(store, (uint64_t)i, &entry);
		if (rc == DM_OK)
			rc = audit_base64_encode(entry.data, entry.len, &b64);
		if (rc == DM_OK &&
		    json_array_append_new(list, json_string((const char *)b64.data)) != 0)
			rc = DM_ERR_NOMEM;
	}
	dm_buf_free(&entry);
	dm_buf_free(&b64);
	if (rc) {
		json_decref(list);
		reply_error(call, 500, "reading the audit log failed: %s", dm_strerror(rc));
		return;
	}
	reply_json(call, 200, json_pack("{s:I, s:I, s:o}", "start", (json_int_t)start, "end",
					(json_int_t)end, "entries", list));
}

static void get_inclusion_proof(struct call *call, const char *param, size_t len)
{
	static const char *const allowed[] = {"index", "size", NULL};
	struct audit_log *log = audit_of(call);
	if (!log || !query_check(call, allowed))
		return;
	struct audit_store *store = audit_log_store(log);
	int64_t size = (int64_t)audit_store_size(store), index, tree;
	if (!query_int(call, "size", (int64_t)audit_log_checkpoint_size(log), 1, size, &tree) ||
	    !query_int(call, "index", -1, 0, tree - 1, &index))
		return;
	if (index < 0 || tree < 1) {
		reply_error(call, 400, "'index' is needed, and a tree 'size' of at least 1");
		return;
	}
	uint8_t proof[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
	size_t count = 0;
	int rc = audit_store_inclusion(store, (uint64_t)index, (uint64_t)tree, proof, &count);
	reply_proof(call, rc, "index", index, "size", tree, proof, count);
}

static void get_consistency_proof(struct call *call, const char *param, size_t len)
{
	static const char *const allowed[] = {"from", "to", NULL};
	struct audit_log *log = audit_of(call);
	if (!log || !query_check(call, allowed))
		return;
	struct audit_store *store = audit_log_store(log);
	int64_t size = (int64_t)audit_store_size(store), from, to;
	if (!query_int(call, "to", (int64_t)audit_log_checkpoint_size(log), 1, size, &to) ||
	    !query_int(call, "from", 0, 1, to, &from))
		return;
	if (from == 0 || to < 1) {
		reply_error(call, 400, "'from' is needed, and a 'to' of at least 1");
		return;
	}
	uint8_t proof[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
	size_t count = 0;
	int rc = audit_store_consistency(store, (uint64_t)from, (uint64_t)to, proof, &count);
	reply_proof(call, rc, "from", from, "to", to, proof, count);
}

/* ---- routing ---- */

/* Every route, in one table: its pattern (a "{...}" segment matches one
 * path segment, handed to the handler), its method, the roles that may call
 * it (ROUTE_OPEN: anyone, no token asked), its handler and its audit
 * action. An owner on a route whose parameter is {vin} is held to their own
 * vehicles (see the top of this file). GET /v1/routes shows the table, and
 * the end-to-end role test (tests/e2e/test_roles.sh) walks every route in
 * it with every role. */
struct route {
	const char *pattern;
	enum evhttp_cmd_type method;
	unsigned roles;
	void (*handler)(struct call *call, const char *param, size_t param_len);
	const char *action; /* the audit entry's action; NULL: not audited */
};

static void route_health(struct call *call, const char *param, size_t len) { get_health(call); }
static void route_metrics(struct call *call, const char *param, size_t len) { get_metrics(call); }
static void route_register(struct call *call, const char *param, size_t len) { post_vehicle(call); }
static void get_routes(struct call *call, const char *param, size_t len);

#define ROUTE_OPEN 0u
#define ADMIN ROLE_BIT(ROLE_ADMIN)
#define OPERATOR ROLE_BIT(ROLE_OPERATOR)
#define ANALYST ROLE_BIT(ROLE_ANALYST)
#define OFFICER ROLE_BIT(ROLE_PRIVACY_OFFICER)
#define AUDITOR ROLE_BIT(ROLE_AUDITOR)
#define OWNER ROLE_BIT(ROLE_OWNER)

/* Why each route admits whom:
 *  - vehicle data (samples, latest) goes to its owner only; exports, with
 *    their approval and anonymisation, are the way out for anyone else;
 *  - a vehicle's registration record (no samples) is for those who manage
 *    the fleet, its owner, and the privacy officer, who must see what an
 *    erasure is about and that it happened;
 *  - the residency report holds counts and pseudonyms, no vehicle data:
 *    for operators, privacy officers and auditors;
 *  - principals are managed by the admin alone: an operator who could mint
 *    a privacy officer could approve their own erasures and exports;
 *  - the route table itself is for the admin and the auditor, who checks
 *    who may do what. */
static const struct route routes[] = {
	{"/v1/health", EVHTTP_REQ_GET, ROUTE_OPEN, route_health, NULL},
	{"/metrics", EVHTTP_REQ_GET, ADMIN | OPERATOR, route_metrics, NULL},
	{"/v1/routes", EVHTTP_REQ_GET, ADMIN | AUDITOR, get_routes, NULL},
	{"/v1/vehicles", EVHTTP_REQ_POST, ADMIN | OPERATOR, route_register, "vehicle.register"},
	{"/v1/vehicles/{vin}", EVHTTP_REQ_GET, ADMIN | OPERATOR | OFFICER | OWNER, get_vehicle,
	 "vehicle.get"},
	{"/v1/vehicles/{vin}", EVHTTP_REQ_DELETE, OFFICER, delete_vehicle, "vehicle.erase"},
	{"/v1/vehicles/{vin}/samples", EVHTTP_REQ_GET, OWNER, get_samples, "vehicle.samples"},
	{"/v1/vehicles/{vin}/latest", EVHTTP_REQ_GET, OWNER, get_latest, "vehicle.latest"},
	{"/v1/vehicles/{vin}/erasure-requests", EVHTTP_REQ_POST, OWNER, post_erasure_request,
	 "erasure.request"},
	{"/v1/erasure-requests", EVHTTP_REQ_GET, OFFICER, get_erasure_requests, "erasure.list"},
	{"/v1/erasure-requests/{id}/approve", EVHTTP_REQ_POST, OFFICER, approve_request,
	 "erasure.approve"},
	{"/v1/erasure-requests/{id}/reject", EVHTTP_REQ_POST, OFFICER, reject_request,
	 "erasure.reject"},
	{"/v1/fleet/aggregate", EVHTTP_REQ_GET, ANALYST, get_fleet_aggregate, "fleet.aggregate"},
	{"/v1/residency/report", EVHTTP_REQ_GET, ADMIN | OPERATOR | OFFICER | AUDITOR,
	 get_residency_report, "residency.report"},
	{"/v1/keys/rotate", EVHTTP_REQ_POST, ADMIN | OPERATOR, post_kek_rotation, "keys.rotate"},
	{"/v1/principals", EVHTTP_REQ_POST, ADMIN, post_principal, "principal.add"},
	{"/v1/principals", EVHTTP_REQ_GET, ADMIN, get_principals, "principal.list"},
	{"/v1/principals/{name}", EVHTTP_REQ_DELETE, ADMIN, delete_principal, "principal.remove"},
	/* The audit log's own reads are not audited: an auditor paging through
	 * it would otherwise make it grow under their feet. */
	{"/v1/audit/checkpoint", EVHTTP_REQ_GET, AUDITOR, get_audit_checkpoint, NULL},
	{"/v1/audit/key", EVHTTP_REQ_GET, AUDITOR, get_audit_key, NULL},
	{"/v1/audit/entries", EVHTTP_REQ_GET, AUDITOR, get_audit_entries, NULL},
	{"/v1/audit/proof/inclusion", EVHTTP_REQ_GET, AUDITOR, get_inclusion_proof, NULL},
	{"/v1/audit/proof/consistency", EVHTTP_REQ_GET, AUDITOR, get_consistency_proof, NULL},
};

#undef ADMIN
#undef OPERATOR
#undef ANALYST
#undef OFFICER
#undef AUDITOR
#undef OWNER

static const char *method_name(enum evhttp_cmd_type method)
{
	return method == EVHTTP_REQ_POST ? "POST" : method == EVHTTP_REQ_DELETE ? "DELETE" : "GET";
}

static int owner_scoped(const struct route *route)
{
	return (route->roles & ROLE_BIT(ROLE_OWNER)) && strstr(route->pattern, "{vin}");
}

static void get_routes(struct call *call, const char *param, size_t len)
{
	json_t *items = json_array();
	for (size_t i = 0; items && i < sizeof routes / sizeof *routes; i++) {
		json_t *roles = json_array();
		for (int r = 0; roles && r < ROLE_COUNT; r++)
			if (routes[i].roles & ROLE_BIT(r))
				json_array_append_new(roles, json_string(role_name((enum role)r)));
		json_array_append_new(items,
				      json_pack("{s:s, s:s, s:b, s:o, s:b, s:s?}", "method",
						method_name(routes[i].method), "path",
						routes[i].pattern, "open",
						routes[i].roles == ROUTE_OPEN, "roles", roles,
						"owner_scoped", owner_scoped(&routes[i]),
						"audit_action", routes[i].action));
	}
	reply_json(call, 200, json_pack("{s:o}", "routes", items));
}

/* Whether path matches pattern; the "{...}" segment, if any, is handed back. */
static int route_match(const char *pattern, const char *path, const char **param,
		       size_t *param_len)
{
	while (*pattern) {
		if (*pattern == '{') {
			const char *close = strchr(pattern, '}');
			size_t len = strcspn(path, "/");
			if (!close || len == 0)
				return 0;
			*param = path;
			*param_len = len;
			path += len;
			pattern = close + 1;
		} else if (*pattern++ != *path++) {
			return 0;
		}
	}
	return *path == '\0';
}

/* The checks in the order given at the top: replies and returns 0 at the
 * first that fails. */
static int authorize(struct call *call, const struct route *route, const char *param,
		     size_t param_len)
{
	const struct principal *who = authenticate(call);
	if (!who) {
		call->route = "unauthorized";
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "WWW-Authenticate",
				  "Bearer");
		reply_error(call, 401, "a valid 'Authorization: Bearer TOKEN' is needed");
		return 0;
	}
	snprintf(call->who_name, sizeof call->who_name, "%s", who->name);
	call->who_kind = "principal";
	call->who_role = role_name(who->role);
	if (!(route->roles & ROLE_BIT(who->role))) {
		call->route = "forbidden";
		reply_error(call, 403, "the role %s may not %s %s", role_name(who->role),
			    method_name(route->method), route->pattern);
		return 0;
	}
	if (who->role == ROLE_OWNER && owner_scoped(route) &&
	    !principal_owns(who, param, param_len)) {
		char err[128];
		if (vin_check(param, param_len, err, sizeof err) != DM_OK)
			reply_error(call, 400, "%s", err);
		else /* word for word what an unregistered VIN gets */
			reply_error(call, 404, "no vehicle %.*s is registered at this site",
				    (int)param_len, param);
		return 0;
	}
	return 1;
}

static void dispatch(struct call *call)
{
	enum evhttp_cmd_type method = evhttp_request_get_command(call->req);
	const char *path_pattern = NULL;
	char allow[32] = "";
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
		const char *param = NULL;
		size_t param_len = 0;
		if (!route_match(routes[i].pattern, call->path, &param, &param_len))
			continue;
		if (routes[i].method != method) {
			path_pattern = routes[i].pattern;
			size_t used = strlen(allow);
			snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "",
				 method_name(routes[i].method));
			continue;
		}
		call->route = routes[i].pattern;
		call->action = routes[i].action;
		/* A VIN is named in the audit entry only when it is registered
		 * here: whoever probes another jurisdiction's VIN must not make
		 * this site write it down (promise 1). */
		if (param && (!strstr(routes[i].pattern, "{vin}") ||
			      fleet_by_vin(engine_fleet(call->api->opt.engine), param, param_len)))
			snprintf(call->object, sizeof call->object, "%.*s", (int)param_len, param);
		if (routes[i].roles != ROUTE_OPEN &&
		    !authorize(call, &routes[i], param, param_len))
			return;
		/* An action the audit log could not record must not happen:
		 * once the log has failed, audited routes are refused before
		 * their handler runs. */
		if (routes[i].action && call->api->opt.audit &&
		    audit_store_failed(audit_log_store(call->api->opt.audit))) {
			call->action = NULL;
			reply_error(call, 503, "the audit log has failed: nothing is done until the "
					       "node is restarted");
			return;
		}
		/* A call that changes something is recorded as started before
		 * its handler runs: should the log fail to record the outcome
		 * after the change is made, the change still left its trace.
		 * Reads need no such entry: their data leaves only after the
		 * outcome is recorded. */
		if (routes[i].method != EVHTTP_REQ_GET && !record_call(call, "started", 0)) {
			call->action = NULL;
			reply_error(call, 503, "the audit log cannot record this call, so nothing "
					       "was done");
			return;
		}
		routes[i].handler(call, param, param_len);
		return;
	}
	if (path_pattern) {
		call->route = path_pattern;
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Allow", allow);
		reply_error(call, 405, "use %s", allow);
		return;
	}
	call->route = "unknown";
	reply_error(call, 404, "no such route");
}

/* A random 64-bit request id in hex: it ties an answer (X-Request-Id) to
 * its audit entry. */
static void request_id(char out[17])
{
	uint8_t bytes[8] = {0};
	if (RAND_bytes(bytes, sizeof bytes) != 1)
		ERR_clear_error(); /* zeros: the id is a label, not a secret */
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct call call = {.api = arg, .req = req, .route = "unknown"};
	request_id(call.request_id);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *raw_query = uri ? evhttp_uri_get_query(uri) : NULL;
	call.query.tqh_first = NULL;
	call.query.tqh_last = &call.query.tqh_first;
	char *decoded = raw_path ? evhttp_uridecode(raw_path, 0, NULL) : NULL;
	if (!decoded || strlen(decoded) >= sizeof call.path) {
		reply_error(&call, 400, "bad request path");
	} else if (raw_query && evhttp_parse_query_str(raw_query, &call.query) != 0) {
		reply_error(&call, 400, "bad query string");
	} else {
		snprintf(call.path, sizeof call.path, "%s", decoded);
		dispatch(&call);
	}
	free(decoded);
	evhttp_clear_headers(&call.query);
}

int api_new(struct event_base *base, const struct api_options *options, struct api **out)
{
	*out = NULL;
	struct api *api = dm_calloc(1, sizeof *api);
	if (!api)
		return DM_ERR_NOMEM;
	api->opt = *options;
	if (!api->opt.max_query_samples)
		api->opt.max_query_samples = DEFAULT_QUERY_SAMPLES;
	api->http = evhttp_new(base);
	if (!api->http) {
		dm_free(api);
		return DM_ERR_NOMEM;
	}
	evhttp_set_max_body_size(api->http, MAX_BODY);
	evhttp_set_max_headers_size(api->http, MAX_HEADERS);
	evhttp_set_timeout(api->http, TIMEOUT_S);
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
	evhttp_set_gencb(api->http, on_request, api);
	*out = api;
	return DM_OK;
}

int api_listen(struct api *api, const char *address)
{
	char host[128];
	int port;
	if (addr_split(address, host, sizeof host, &port))
		return DM_ERR_INVALID;
	api->bound = evhttp_bind_socket_with_handle(api->http, host, (ev_uint16_t)port);
	if (!api->bound) {
		dm_error("api: cannot listen on %s", address);
		return DM_ERR_IO;
	}
	return DM_OK;
}

/* evhttp's bufferevent for each HTTPS connection: TLS, server side. The
 * SSL object goes with the bufferevent (BEV_OPT_CLOSE_ON_FREE). */
static struct bufferevent *tls_bufferevent(struct event_base *base, void *arg)
{
	struct api *api = arg;
	SSL *ssl = SSL_new(api->tls);
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	/* A client that hangs up without close_notify has finished, not failed. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

int api_listen_tls(struct api *api, const char *address, SSL_CTX *ctx)
{
	if (!ctx || api->tls)
		return DM_ERR_INVALID;
	SSL_CTX_up_ref(ctx);
	api->tls = ctx;
	evhttp_set_bevcb(api->http, tls_bufferevent, api);
	int rc = api_listen(api, address);
	if (rc == DM_OK)
		dm_info("api: HTTPS on %s", address);
	return rc;
}

int api_port(const struct api *api)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	evutil_socket_t fd = evhttp_bound_socket_get_fd(api->bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void api_free(struct api *api)
{
	if (!api)
		return;
	evhttp_free(api->http);
	SSL_CTX_free(api->tls);
	dm_free(api);
}
