/*
 * api.c — routing, authentication and the handlers of the /v1 API.
 *
 * Limits: request bodies of at most 64 KiB, headers of at most 8 KiB, and a
 * 30 s timeout per connection, so a slow or oversized client cannot hold the
 * loop or its memory. Query parameters are parsed strictly: an unknown
 * parameter, a repeated one or a number with trailing characters is a 400.
 */
#include "api/api.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/catalog.h"
#include "store/engine.h"
#include "util/addr.h"
#include "util/alloc.h"
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
};

/* One request being handled: what the handlers need, in one place. */
struct call {
	struct api *api;
	struct evhttp_request *req;
	const char *route; /* for metrics: the route's pattern, never the VIN */
	char path[256];
	struct evkeyvalq query;
	int have_query;
};

/* ---- replies ---- */

static void reply_json(struct call *call, int status, json_t *body)
{
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

static int authorized(struct call *call)
{
	const char *header =
		evhttp_find_header(evhttp_request_get_input_headers(call->req), "Authorization");
	static const char scheme[] = "Bearer ";
	if (!header || strncmp(header, scheme, sizeof scheme - 1) != 0)
		return 0;
	const char *token = header + sizeof scheme - 1;
	return secret_verify(token, strlen(token), call->api->opt.admin_token_hash) == DM_OK;
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

static json_t *vehicle_json(const struct fleet_vehicle *vehicle)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:I}", "vin", vehicle->record.vin, "home",
			 vehicle->record.home, "home_site", vehicle->record.home_site, "model",
			 vehicle->record.model, "registered_ms",
			 (json_int_t)vehicle->record.created_ms);
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
	int healthy = !stats.wal_failed && !stats.flush_failing;
	reply_json(call, healthy ? 200 : 503,
		   json_pack("{s:s, s:s, s:s, s:s, s:s}", "status", healthy ? "ok" : "failing",
			     "jurisdiction", call->api->opt.jurisdiction, "site",
			     call->api->opt.site, "wal", stats.wal_failed ? "failed" : "ok", "flush",
			     stats.flush_failing ? "failing" : "ok"));
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

static int iso_code(const char *text)
{
	return text && strlen(text) == 2 && text[0] >= 'A' && text[0] <= 'Z' && text[1] >= 'A' &&
	       text[1] <= 'Z';
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
	} else if (!iso_code(home)) {
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

static void get_samples(struct call *call, const char *vin, size_t len)
{
	static const char *const allowed[] = {"signal", "from", "to", "limit", NULL};
	struct fleet_vehicle *vehicle = path_vehicle(call, vin, len);
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
	if (rc) {
		reply_error(call, 500, "reading samples failed: %s", dm_strerror(rc));
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
	const struct catalog *catalog = engine_catalog(call->api->opt.engine);
	json_t *signals = json_object();
	for (size_t id = 0; id < catalog_count(catalog); id++) {
		const struct catalog_signal *sig = catalog_get(catalog, (uint16_t)id);
		struct engine_series series;
		int rc = engine_latest(call->api->opt.engine, vehicle, sig->id, &series);
		if (rc) {
			json_decref(signals);
			reply_error(call, 500, "reading samples failed: %s", dm_strerror(rc));
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

/* ---- routing ---- */

/* Every route, in one table: its pattern ("{vin}" matches one path segment),
 * its method, and whether it needs the bearer token. The security issue
 * will add the roles each route admits here. */
struct route {
	const char *pattern;
	enum evhttp_cmd_type method;
	int needs_token;
	void (*handler)(struct call *call, const char *vin, size_t vin_len);
};

static void route_health(struct call *call, const char *vin, size_t len) { get_health(call); }
static void route_metrics(struct call *call, const char *vin, size_t len) { get_metrics(call); }
static void route_register(struct call *call, const char *vin, size_t len) { post_vehicle(call); }

static const struct route routes[] = {
	{"/v1/health", EVHTTP_REQ_GET, 0, route_health},
	{"/metrics", EVHTTP_REQ_GET, 1, route_metrics},
	{"/v1/vehicles", EVHTTP_REQ_POST, 1, route_register},
	{"/v1/vehicles/{vin}", EVHTTP_REQ_GET, 1, get_vehicle},
	{"/v1/vehicles/{vin}/samples", EVHTTP_REQ_GET, 1, get_samples},
	{"/v1/vehicles/{vin}/latest", EVHTTP_REQ_GET, 1, get_latest},
	{"/v1/residency/report", EVHTTP_REQ_GET, 1, get_residency_report},
};

/* Whether path matches pattern; a "{vin}" segment is handed back. */
static int route_match(const char *pattern, const char *path, const char **vin, size_t *vin_len)
{
	static const char param[] = "{vin}";
	while (*pattern) {
		if (strncmp(pattern, param, sizeof param - 1) == 0) {
			size_t len = strcspn(path, "/");
			if (len == 0)
				return 0;
			*vin = path;
			*vin_len = len;
			path += len;
			pattern += sizeof param - 1;
		} else if (*pattern++ != *path++) {
			return 0;
		}
	}
	return *path == '\0';
}

static const char *method_name(enum evhttp_cmd_type method)
{
	return method == EVHTTP_REQ_POST ? "POST" : method == EVHTTP_REQ_DELETE ? "DELETE" : "GET";
}

static void dispatch(struct call *call)
{
	enum evhttp_cmd_type method = evhttp_request_get_command(call->req);
	const struct route *path_match = NULL;
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
		const char *vin = NULL;
		size_t vin_len = 0;
		if (!route_match(routes[i].pattern, call->path, &vin, &vin_len))
			continue;
		path_match = &routes[i];
		if (routes[i].method != method)
			continue;
		call->route = routes[i].pattern;
		if (routes[i].needs_token && !authorized(call)) {
			call->route = "unauthorized";
			evhttp_add_header(evhttp_request_get_output_headers(call->req),
					  "WWW-Authenticate", "Bearer");
			reply_error(call, 401, "a valid 'Authorization: Bearer TOKEN' is needed");
			return;
		}
		routes[i].handler(call, vin, vin_len);
		return;
	}
	if (path_match) {
		call->route = path_match->pattern;
		reply_error(call, 405, "use %s", method_name(path_match->method));
		return;
	}
	call->route = "unknown";
	reply_error(call, 404, "no such route");
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct call call = {.api = arg, .req = req, .route = "unknown"};
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
	dm_free(api);
}
