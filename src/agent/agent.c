/*
 * agent.c — simulated vehicles publishing telemetry over MQTT (agent.h).
 *
 * Contents
 *   1. signals: which catalog signals a route reading fills
 *   2. latency histogram
 *   3. a vehicle: sampling, batches, the in-flight window
 *   4. a vehicle's connection: libmosquitto callbacks, redirects, reconnects
 *   5. the loop: one poll() over every vehicle's socket
 *   6. the command line
 *
 * A vehicle's connection, and what moves it:
 *
 *   IDLE --retry time reached, vehicle_connect--> CONNECTING
 *   CONNECTING --CONNACK success (on_connect)--> CONNECTED
 *   CONNECTING --CONNACK refusal (on_connect), for good--> FAILED
 *   CONNECTING --CONNACK 0x9C/0x9D, redirect followed (connack_redirect)--> IDLE,
 *              retry at once, at the new endpoint
 *   CONNECTING, CONNECTED --socket lost (vehicle_lost)--> IDLE, after a backoff
 *
 * A CONNACK refusal is "for good" when retrying cannot help (bad credentials,
 * not authorised, unsupported protocol, banned, and a redirect the vehicle
 * does not follow). A redirect (0x9D Server moved, 0x9C Use another server)
 * is followed only as agent.h says: to an endpoint that the agent's own
 * topology lists for the vehicle's home, by the agent's own transport
 * (mqtts:// with TLS, mqtt:// without), at most
 * max_redirects times in a run.
 *
 * Invariants:
 *   1. A batch's sequence number is fixed when it is built; every publish of
 *      it, first or after a reconnect, carries the same bytes.
 *   2. A vehicle has at most `inflight` batches in its window (slots). A slot
 *      is freed only by a PUBACK for the message id of its latest publish;
 *      a lost connection marks every used slot for publishing again.
 *   3. The libmosquitto client of a connection is destroyed when the
 *      connection is lost and a new one made for the next attempt, so no
 *      message queued inside libmosquitto outlives its connection: only our
 *      slots decide what is sent again, and no old message id is ever
 *      matched against a new PUBACK.
 *   4. libmosquitto objects are destroyed only from the loop, never inside
 *      one of their callbacks.
 *   5. A vehicle connects only to the broker it was given or to an endpoint
 *      that the topology lists for its home jurisdiction; once redirected it
 *      stays there for the rest of the run (reconnects after drops included).
 *      Endpoints live in one table of the agent (entry 0 the broker) and a
 *      vehicle holds indexes into it, so a fleet costs no host copies.
 */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "agent/route.h"
#include "residency/topology.h"
#include "util/addr.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#ifndef DM_DEFAULT_CATALOG
#define DM_DEFAULT_CATALOG "catalog/signals.catalog"
#endif

#define KEEPALIVE_S 60
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define BACKLOG_MAX 4096         /* rate mode: batches held while disconnected */
#define PROGRESS_NS 250000000ull /* at most four progress lines a second */
#define MISC_NS 1000000000ull    /* keepalive bookkeeping once a second */
#define FLOOD_BACKDATE_MS (24ll * 3600 * 1000)
#define VIN_MAX 64
/* A DNS name of 253 bytes, or an IPv6 address as text, and a NUL. */
#define HOST_MAX 256
/* What of a refused Server Reference reaches the log. */
#define LOG_REFERENCE_MAX 128
#define NS_PER_S 1000000000ull

static volatile sig_atomic_t stop_requested;

/* ---- 1. signals ------------------------------------------------------------------------ */

enum channel {
	CH_SPEED,
	CH_LAT,
	CH_LON,
	CH_ALT,
	CH_HEADING,
	CH_ODOMETER,
	CH_SOC,
	CH_FUEL,
	CH_AIR_TEMP,
	CH_DTC, /* the only string channel; it must stay last */
	CH_COUNT
};

static const char *const channel_paths[CH_COUNT] = {
    [CH_SPEED] = "Vehicle.Speed",
    [CH_LAT] = "Vehicle.CurrentLocation.Latitude",
    [CH_LON] = "Vehicle.CurrentLocation.Longitude",
    [CH_ALT] = "Vehicle.CurrentLocation.Altitude",
    [CH_HEADING] = "Vehicle.CurrentLocation.Heading",
    [CH_ODOMETER] = "Vehicle.TraveledDistance",
    [CH_SOC] = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
    [CH_FUEL] = "Vehicle.Powertrain.FuelSystem.RelativeLevel",
    [CH_AIR_TEMP] = "Vehicle.Exterior.AirTemperature",
    [CH_DTC] = "Vehicle.OBD.DTCList",
};

/* ---- 2. latency histogram ------------------------------------------------------------ */

/*
 * Log-linear buckets of microseconds: values below 64 exactly, above that 64
 * buckets per power of two, so a percentile is within 1.6 % of the truth and
 * the histogram is a fixed 30 KB however many PUBACKs arrive.
 */
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB * 59)

struct latency {
	uint64_t counts[HIST_BUCKETS];
	uint64_t total;
	uint64_t max_us;
};

static size_t hist_index(uint64_t us)
{
	if (us < HIST_SUB)
		return (size_t)us;
	int top = 63 - __builtin_clzll(us); /* >= 6 */
	return (size_t)(top - 5) * HIST_SUB + (size_t)((us >> (top - 6)) - HIST_SUB);
}

/* The largest value that falls in bucket `index`. */
static uint64_t hist_upper(size_t index)
{
	if (index < HIST_SUB)
		return index;
	int top = (int)(index / HIST_SUB) + 5;
	uint64_t mantissa = index % HIST_SUB + HIST_SUB;
	return ((mantissa + 1) << (top - 6)) - 1;
}

static void hist_add(struct latency *h, uint64_t us)
{
	h->counts[hist_index(us)]++;
	h->total++;
	if (us > h->max_us)
		h->max_us = us;
}

static double hist_percentile_ms(const struct latency *h, double fraction)
{
	if (h->total == 0)
		return 0.0;
	uint64_t want = (uint64_t)ceil(fraction * (double)h->total);
	if (want == 0)
		want = 1;
	uint64_t seen = 0;
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= want) {
			uint64_t us = hist_upper(i);
			return (double)(us < h->max_us ? us : h->max_us) / 1000.0;
		}
	}
	return (double)h->max_us / 1000.0;
}

/* ---- 3. a vehicle ---------------------------------------------------------------------- */

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_CONNECTED, CONN_FAILED };

struct slot {
	bool used;
	bool needs_send; /* built or connection lost: publish (again) when connected */
	bool ever_sent;
	int mid; /* message id of the latest publish */
	uint64_t seq;
	size_t samples;
	uint64_t sent_ns;
	struct dm_buf payload;
};

struct held_batch {
	uint64_t seq;
	size_t samples;
	struct dm_buf payload;
};

struct agent;

struct vehicle {
	struct agent *agent;
	const struct agent_vehicle *spec;
	char topic[VIN_MAX + 16];
	struct route *route;
	uint64_t rng; /* backoff jitter */

	struct mosquitto *mosq; /* NULL while IDLE or FAILED */
	enum conn_state state;
	bool lost;        /* set by callbacks, acted on by the loop */
	bool got_connack; /* during this attempt */
	bool refused_for_good;
	bool warned;
	bool ever_connected;
	bool refusal_warned;
	bool redirected;     /* a redirect was followed: the loop reconnects at once */
	const char *home;    /* ISO 3166 alpha-2 (the spec's or the config's), or NULL */
	size_t target;       /* agent.endpoints index where the next attempt goes */
	size_t connected_at; /* agent.endpoints index of the last successful CONNACK */
	int redirects;       /* followed in this run */
	uint64_t retry_at_ns;
	uint32_t backoff_ms;

	uint64_t next_tick_ns; /* rate mode */
	size_t next_batch;     /* rate mode: samples that make the next batch */
	uint64_t ticks;
	struct sample *pending; /* samples not yet in a batch */
	size_t pending_count;
	uint64_t next_seq;

	struct slot *slots;
	int in_flight; /* used slots */

	struct held_batch *backlog; /* ring, rate mode */
	size_t backlog_cap, backlog_head, backlog_count;
};

enum run_phase { PHASE_RUN, PHASE_DRAIN };

/* Where vehicles connect: the broker of the command line, and each
 * endpoint a followed redirect led to (invariant 5). */
struct endpoint {
	char host[HOST_MAX];
	int port;
};

struct agent {
	const struct agent_config *config;
	struct agent_result *result;
	struct vehicle *vehicles;
	size_t count;
	const struct catalog_signal *signals[CH_COUNT];
	mosquitto_property *publish_props;
	struct endpoint *endpoints;
	size_t endpoint_count, endpoint_cap;
	double rate_hz;
	uint64_t period_ns;
	enum run_phase phase;
	uint64_t start_ns, run_end_ns, drain_end_ns, stopped_ns, last_ack_ns;
	int64_t start_wall_ms;
	size_t connected_now;
	int fatal; /* a failure inside a callback that ends the run */
	struct latency latency;
	uint64_t next_progress_ns, progress_samples, progress_ns;
	bool progress_shown;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xCBF29CE484222325ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
	return h;
}

static double unit_random(uint64_t *rng)
{
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	return (double)(*rng >> 11) * 0x1.0p-53;
}

static void add_number(struct vehicle *v, const struct catalog_signal *sig, int64_t ts_ms,
                       double value)
{
	/* The route keeps inside the catalog's ranges; clamping only guards
	 * against a catalog narrower than the one the route was written for,
	 * so a batch is never refused for our own values. */
	if (value < sig->min)
		value = sig->min;
	if (value > sig->max)
		value = sig->max;
	struct sample *s = &v->pending[v->pending_count++];
	*s = (struct sample){.ts_ms = ts_ms, .signal = sig->id};
	if (sig->type == SIG_FLOAT)
		s->value.num.f = value;
	else if (sig->type == SIG_INT)
		s->value.num.i = llround(value);
	else
		s->value.num.i = value != 0.0;
}

/* One sampling instant: step the route and take one sample of every signal
 * (and a trouble code if one appeared). Adds at most CH_COUNT samples. */
static void sample_tick(struct agent *a, struct vehicle *v, int64_t ts_ms)
{
	route_step(v->route, 1.0 / a->rate_hz);
	struct route_reading r;
	route_read(v->route, &r);
	const double values[CH_DTC] = {
	    [CH_SPEED] = r.speed_kmh, [CH_LAT] = r.lat_deg,         [CH_LON] = r.lon_deg,
	    [CH_ALT] = r.altitude_m,  [CH_HEADING] = r.heading_deg, [CH_ODOMETER] = r.odometer_km,
	    [CH_SOC] = r.soc_pct,     [CH_FUEL] = r.fuel_pct,       [CH_AIR_TEMP] = r.air_temp_c,
	};
	/* Sensors report at a fixed resolution; sending the simulation's full
	 * doubles would be neither realistic nor compressible. Dividing by a
	 * power of ten gives the double nearest the decimal (12.3, not
	 * 12.300000000000001). */
	static const double scale[CH_DTC] = {
	    [CH_SPEED] = 10,    [CH_LAT] = 1e7,     [CH_LON] = 1e7,
	    [CH_ALT] = 10,      [CH_HEADING] = 10,  [CH_ODOMETER] = 10,
	    [CH_SOC] = 10,      [CH_FUEL] = 1,      [CH_AIR_TEMP] = 10,
	};
	for (int ch = 0; ch < CH_DTC; ch++)
		if (a->signals[ch])
			add_number(v, a->signals[ch], ts_ms, round(values[ch] * scale[ch]) / scale[ch]);
	const struct catalog_signal *dtc = a->signals[CH_DTC];
	if (r.dtc && dtc && dtc->type == SIG_STRING && strlen(r.dtc) <= dtc->max) {
		struct sample *s = &v->pending[v->pending_count++];
		*s = (struct sample){.ts_ms = ts_ms, .signal = dtc->id};
		s->value.str = r.dtc; /* static storage in route.c */
		s->value.str_len = (uint32_t)strlen(r.dtc);
	}
	v->ticks++;
}

/* Encodes the first `count` pending samples as the vehicle's next batch into
 * `out` (reset first) and drops them from pending. */
static int cut_batch(struct agent *a, struct vehicle *v, size_t count, struct dm_buf *out,
                     uint64_t *seq)
{
	struct payload_batch batch = {.seq = v->next_seq, .count = count, .samples = v->pending};
	dm_buf_reset(out);
	int rc = payload_encode(a->config->catalog, &batch, a->config->format, out);
	if (rc != DM_OK)
		return rc;
	*seq = v->next_seq++;
	v->pending_count -= count;
	memmove(v->pending, v->pending + count, v->pending_count * sizeof *v->pending);
	a->result->batches_made++;
	return DM_OK;
}

static int backlog_push(struct agent *a, struct vehicle *v, size_t count)
{
	if (v->backlog_count == v->backlog_cap && v->backlog_cap < BACKLOG_MAX) {
		size_t cap = v->backlog_cap ? v->backlog_cap * 2 : 8;
		struct held_batch *ring = dm_calloc(cap, sizeof *ring);
		if (!ring)
			return DM_ERR_NOMEM;
		for (size_t i = 0; i < v->backlog_count; i++)
			ring[i] = v->backlog[(v->backlog_head + i) % v->backlog_cap];
		dm_free(v->backlog);
		v->backlog = ring;
		v->backlog_cap = cap;
		v->backlog_head = 0;
	}
	if (v->backlog_count == v->backlog_cap) {
		/* Full after a long outage: the oldest batch goes, as a spool
		 * that keeps the newest data would. Its buffer is reused. */
		v->backlog_head = (v->backlog_head + 1) % v->backlog_cap;
		v->backlog_count--;
		a->result->batches_dropped++;
	}
	struct held_batch *held =
	    &v->backlog[(v->backlog_head + v->backlog_count) % v->backlog_cap];
	int rc = cut_batch(a, v, count, &held->payload, &held->seq);
	if (rc != DM_OK)
		return rc;
	held->samples = count;
	v->backlog_count++;
	return DM_OK;
}

/* Rate mode: every sampling instant that is due, then the full batches. */
static int rate_ticks(struct agent *a, struct vehicle *v, uint64_t now)
{
	size_t batch = a->config->batch;
	while (v->next_tick_ns <= now && v->next_tick_ns < a->run_end_ns) {
		int64_t ts =
		    a->start_wall_ms + (int64_t)((v->next_tick_ns - a->start_ns) / 1000000);
		sample_tick(a, v, ts);
		v->next_tick_ns += a->period_ns;
		while (v->pending_count >= v->next_batch) {
			int rc = backlog_push(a, v, v->next_batch);
			if (rc != DM_OK)
				return rc;
			v->next_batch = batch;
		}
	}
	return DM_OK;
}

static struct slot *free_slot(struct agent *a, struct vehicle *v)
{
	for (int i = 0; i < a->config->inflight; i++)
		if (!v->slots[i].used)
			return &v->slots[i];
	return NULL;
}

static void slot_release(struct vehicle *v, struct slot *s)
{
	s->used = false;
	s->needs_send = false;
	v->in_flight--;
}

static int publish_slot(struct agent *a, struct vehicle *v, struct slot *s)
{
	int mid = 0;
	int rc = mosquitto_publish_v5(v->mosq, &mid, v->topic, (int)s->payload.len, s->payload.data,
	                              1, false, a->publish_props);
	if (rc == MOSQ_ERR_NOMEM)
		return DM_ERR_NOMEM;
	if (rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_OVERSIZE_PACKET) {
		/* Larger than the broker accepts: it can never go, so it counts
		 * as refused with the reason the broker would give. */
		a->result->batches_refused++;
		a->result->refused_by_reason[MQTT_RC_PACKET_TOO_LARGE]++;
		slot_release(v, s);
		return DM_OK;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		v->lost = true;
		return DM_OK;
	}
	s->mid = mid;
	s->needs_send = false;
	s->sent_ns = dm_mono_ns();
	if (s->ever_sent) {
		a->result->republished++;
	} else {
		s->ever_sent = true;
		a->result->batches_sent++;
	}
	return DM_OK;
}

/* Fills the vehicle's window: batches to publish again first, then the
 * backlog (rate) or freshly generated batches (flood, while running). */
static int vehicle_pump(struct agent *a, struct vehicle *v)
{
	int rc;
	for (int i = 0; i < a->config->inflight && !v->lost; i++) {
		struct slot *s = &v->slots[i];
		if (s->used && s->needs_send && (rc = publish_slot(a, v, s)) != DM_OK)
			return rc;
	}
	while (!v->lost && v->in_flight < a->config->inflight) {
		struct slot *s = free_slot(a, v);
		if (a->config->flood) {
			if (a->phase != PHASE_RUN || a->config->idle)
				break;
			while (v->pending_count < a->config->batch) {
				int64_t ts = a->start_wall_ms - FLOOD_BACKDATE_MS +
				             (int64_t)((double)v->ticks * 1000.0 / a->rate_hz);
				sample_tick(a, v, ts);
			}
			rc = cut_batch(a, v, a->config->batch, &s->payload, &s->seq);
			if (rc != DM_OK)
				return rc;
			s->samples = a->config->batch;
		} else {
			if (v->backlog_count == 0)
				break;
			struct held_batch *held = &v->backlog[v->backlog_head];
			/* Swap buffers so both keep their memory for reuse. */
			struct dm_buf spare = s->payload;
			s->payload = held->payload;
			held->payload = spare;
			s->seq = held->seq;
			s->samples = held->samples;
			v->backlog_head = (v->backlog_head + 1) % v->backlog_cap;
			v->backlog_count--;
		}
		s->used = true;
		s->needs_send = true;
		s->ever_sent = false;
		v->in_flight++;
		if ((rc = publish_slot(a, v, s)) != DM_OK)
			return rc;
	}
	return DM_OK;
}

/* Nothing left to deliver. Pending samples do not count: rate mode batches
 * them when the run ends, and flood mode's remainder was never a batch. */
static bool vehicle_done(const struct vehicle *v)
{
	return v->state == CONN_FAILED || (v->in_flight == 0 && v->backlog_count == 0);
}

/* ---- 4. a vehicle's connection ----------------------------------------------------------- */

/* Whether retrying the same server with the same credentials cannot help. */
static bool refusal_is_final(int reason)
{
	switch (reason) {
	case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
	case MQTT_RC_CLIENTID_NOT_VALID:
	case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
	case MQTT_RC_NOT_AUTHORIZED:
	case MQTT_RC_BANNED:
	case MQTT_RC_BAD_AUTHENTICATION_METHOD:
	case MQTT_RC_USE_ANOTHER_SERVER:
	case MQTT_RC_SERVER_MOVED:
		return true;
	}
	return false;
}

/* MQTT 3.1.1 CONNACK return codes 1..5 in MQTT 5 terms, so that the
 * decision above covers both. */
static int v311_as_v5(int code)
{
	switch (code) {
	case 1:
		return MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION;
	case 2:
		return MQTT_RC_CLIENTID_NOT_VALID;
	case 3:
		return MQTT_RC_SERVER_UNAVAILABLE;
	case 4:
		return MQTT_RC_BAD_USERNAME_OR_PASSWORD;
	case 5:
		return MQTT_RC_NOT_AUTHORIZED;
	}
	return MQTT_RC_UNSPECIFIED;
}

static const char *const redirect_refusal_names[AGENT_REDIRECT_REFUSAL_COUNT] = {
    [AGENT_REDIRECT_NOT_IN_TOPOLOGY] = "redirect_not_in_topology",
    [AGENT_REDIRECT_TOO_MANY] = "too_many_redirects",
    [AGENT_REDIRECT_NO_REFERENCE] = "redirect_without_reference",
    [AGENT_REDIRECT_UNSUPPORTED_SCHEME] = "redirect_unsupported_scheme",
    [AGENT_REDIRECT_NO_HOME] = "redirect_without_home",
    [AGENT_REDIRECT_NO_TOPOLOGY] = "redirect_without_topology",
};

const char *agent_redirect_refusal_name(enum agent_redirect_refusal reason)
{
	if ((unsigned)reason >= AGENT_REDIRECT_REFUSAL_COUNT)
		return "unknown";
	return redirect_refusal_names[reason];
}

static bool prefix_nocase(const char *text, const char *lower_prefix)
{
	for (; *lower_prefix; text++, lower_prefix++) {
		char c = *text >= 'A' && *text <= 'Z' ? (char)(*text - 'A' + 'a') : *text;
		if (c != *lower_prefix)
			return false;
	}
	return true;
}

int agent_parse_mqtt_url(const char *url, char *host, size_t host_len, int *port, int *tls)
{
	if (host && host_len > 0)
		host[0] = '\0';
	if (port)
		*port = 0;
	if (tls)
		*tls = 0;
	if (!url || !host || !port || !tls)
		return DM_ERR_INVALID;
	int secure;
	const char *rest;
	if (prefix_nocase(url, "mqtt://")) {
		secure = 0;
		rest = url + strlen("mqtt://");
	} else if (prefix_nocase(url, "mqtts://")) {
		secure = 1;
		rest = url + strlen("mqtts://");
	} else {
		return DM_ERR_INVALID;
	}
	/* What follows the scheme is HOST:PORT and at most one '/': no user
	 * info, path, query or fragment, each of which could make two
	 * spellings of one endpoint or hide where the vehicle really goes. */
	size_t len = strlen(rest);
	if (len > 0 && rest[len - 1] == '/')
		len--;
	const char *end = rest + len, *host_start = rest, *host_end, *colon;
	bool bracketed = len > 0 && rest[0] == '[';
	if (bracketed) {
		host_start = rest + 1;
		host_end = memchr(host_start, ']', len - 1);
		if (!host_end)
			return DM_ERR_INVALID;
		colon = host_end + 1;
	} else {
		host_end = memchr(rest, ':', len);
		if (!host_end)
			return DM_ERR_INVALID;
		colon = host_end;
	}
	size_t name_len = (size_t)(host_end - host_start);
	if (name_len == 0 || name_len >= HOST_MAX || colon >= end || *colon != ':')
		return DM_ERR_INVALID;
	const char *digits = colon + 1;
	size_t digit_count = (size_t)(end - digits);
	/* Plain decimal, as the topology writes ports: no sign, no leading zero. */
	if (digit_count == 0 || digit_count > 5 || digits[0] == '0')
		return DM_ERR_INVALID;
	long value = 0;
	for (size_t i = 0; i < digit_count; i++) {
		if (digits[i] < '0' || digits[i] > '9')
			return DM_ERR_INVALID;
		value = value * 10 + (digits[i] - '0');
	}
	if (value > 65535)
		return DM_ERR_INVALID;
	char name[HOST_MAX];
	memcpy(name, host_start, name_len);
	name[name_len] = '\0';
	if (bracketed) {
		/* The one spelling inet_ntop gives, so that the endpoint table
		 * holds one entry per address. */
		struct in6_addr addr;
		if (inet_pton(AF_INET6, name, &addr) != 1 ||
		    !inet_ntop(AF_INET6, &addr, name, sizeof name))
			return DM_ERR_INVALID;
	} else {
		for (char *c = name; *c; c++) {
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
			else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
			           *c == '.' || *c == '-'))
				return DM_ERR_INVALID;
		}
	}
	size_t out_len = strlen(name);
	if (out_len >= host_len)
		return DM_ERR_INVALID;
	memcpy(host, name, out_len + 1);
	*port = (int)value;
	*tls = secure;
	return DM_OK;
}

/* "HOST:PORT" with an IPv6 host in brackets, as the summary names endpoints. */
static void endpoint_text(const struct endpoint *e, char *out, size_t out_len)
{
	if (strchr(e->host, ':'))
		snprintf(out, out_len, "[%s]:%d", e->host, e->port);
	else
		snprintf(out, out_len, "%s:%d", e->host, e->port);
}

/* The index of endpoint (host, port) in the agent's table, added if new.
 * The table only grows by redirects that passed the topology, so it stays
 * as small as the topology. */
static int endpoint_intern(struct agent *a, const char *host, int port, size_t *index)
{
	for (size_t i = 0; i < a->endpoint_count; i++) {
		if (a->endpoints[i].port == port && strcmp(a->endpoints[i].host, host) == 0) {
			*index = i;
			return DM_OK;
		}
	}
	if (strlen(host) >= HOST_MAX)
		return DM_ERR_INVALID;
	if (a->endpoint_count == a->endpoint_cap) {
		size_t cap = a->endpoint_cap ? a->endpoint_cap * 2 : 4;
		struct endpoint *grown = dm_realloc(a->endpoints, cap * sizeof *grown);
		if (!grown)
			return DM_ERR_NOMEM;
		a->endpoints = grown;
		a->endpoint_cap = cap;
	}
	struct endpoint *e = &a->endpoints[a->endpoint_count];
	snprintf(e->host, sizeof e->host, "%s", host);
	e->port = port;
	*index = a->endpoint_count++;
	return DM_OK;
}

/* A Server Reference comes from whoever answered: only printable ASCII of it,
 * and not much, reaches the log. */
static void printable(const char *text, char *out, size_t out_len)
{
	size_t n = 0;
	for (; text && *text && n + 1 < out_len; text++)
		out[n++] = *text >= 0x20 && *text < 0x7F ? *text : '?';
	out[n] = '\0';
}

/* Whether the vehicle may follow `reference` (agent.h, Residency): -1 when
 * it may, with host and port set to the endpoint, else the refusal. The
 * topology is asked before anything of the reference is used, so a
 * reference it does not list is never even parsed for connecting. */
static int redirect_verdict(const struct agent *a, const struct vehicle *v, const char *reference,
                            char *host, size_t host_len, int *port)
{
	const struct agent_config *c = a->config;
	if (!reference || !*reference)
		return AGENT_REDIRECT_NO_REFERENCE;
	if (!v->home)
		return AGENT_REDIRECT_NO_HOME;
	if (!c->topology)
		return AGENT_REDIRECT_NO_TOPOLOGY;
	if (topology_endpoint_allowed(c->topology, v->home, reference) != 1)
		return AGENT_REDIRECT_NOT_IN_TOPOLOGY;
	int tls = 0;
	if (agent_parse_mqtt_url(reference, host, host_len, port, &tls) != DM_OK ||
	    tls != (c->tls_ca != NULL))
		return AGENT_REDIRECT_UNSUPPORTED_SCHEME;
	if (v->redirects >= c->max_redirects)
		return AGENT_REDIRECT_TOO_MANY;
	return -1;
}

/* A CONNACK 0x9C/0x9D (MQTT 5). Either points the vehicle at the Server
 * Reference and marks it `redirected` (the loop reconnects it at once), or
 * counts why not and stops the vehicle for good. */
static void connack_redirect(struct agent *a, struct vehicle *v, int reason,
                             const mosquitto_property *props)
{
	char *reference = NULL;
	mosquitto_property_read_string(props, MQTT_PROP_SERVER_REFERENCE, &reference, false);
	char host[HOST_MAX], from[AGENT_ENDPOINT_LEN];
	int port = 0;
	endpoint_text(&a->endpoints[v->target], from, sizeof from);
	int verdict = redirect_verdict(a, v, reference, host, sizeof host, &port);
	size_t index = 0;
	if (verdict < 0) {
		int rc = endpoint_intern(a, host, port, &index);
		if (rc == DM_ERR_NOMEM)
			a->fatal = rc;
		else if (rc != DM_OK)
			verdict = AGENT_REDIRECT_UNSUPPORTED_SCHEME;
	}
	if (verdict < 0 && !a->fatal) {
		v->target = index;
		v->redirects++;
		v->redirected = true;
		v->refused_for_good = false;
		a->result->redirects_followed++;
		dm_info("agent: vehicle %s redirected by %s to %s", v->spec->vin, from, reference);
	} else if (verdict >= 0) {
		char shown[LOG_REFERENCE_MAX];
		printable(reference, shown, sizeof shown);
		a->result->connect_refused_by_reason[reason & 0xFF]++;
		a->result->redirects_refused[verdict]++;
		v->refused_for_good = true;
		dm_warn("agent: vehicle %s: redirect by %s (reason 0x%02x) to '%s' refused: %s, "
		        "not retrying",
		        v->spec->vin, from, reason, shown, redirect_refusal_names[verdict]);
		v->warned = true;
	}
	free(reference); /* libmosquitto allocates it with malloc */
}

/* A refused CONNACK. Counted by the code the broker sent; a redirect
 * (connack_redirect) only when it is not followed. */
static void connack_refused(struct agent *a, struct vehicle *v, int reason,
                            const mosquitto_property *props)
{
	if (a->config->protocol == 5 &&
	    (reason == MQTT_RC_SERVER_MOVED || reason == MQTT_RC_USE_ANOTHER_SERVER)) {
		connack_redirect(a, v, reason, props);
		return;
	}
	a->result->connect_refused_by_reason[reason & 0xFF]++;
	int as_v5 = a->config->protocol == 5 ? reason : v311_as_v5(reason);
	v->refused_for_good = refusal_is_final(as_v5);
	const char *why = a->config->protocol == 5 ? mosquitto_reason_string(reason)
	                                           : mosquitto_connack_string(reason);
	if (!v->warned || v->refused_for_good)
		dm_warn("agent: vehicle %s: connection refused, reason 0x%02x (%s)%s", v->spec->vin,
		        reason, why, v->refused_for_good ? ", not retrying" : "");
	v->warned = true;
}

static void on_connect(struct mosquitto *mosq, void *obj, int reason, int flags,
                       const mosquitto_property *props)
{
	struct vehicle *v = obj;
	struct agent *a = v->agent;
	v->got_connack = true;
	if (reason != 0) {
		connack_refused(a, v, reason, props);
		v->lost = true;
		return;
	}
	v->state = CONN_CONNECTED;
	v->ever_connected = true;
	v->connected_at = v->target;
	v->backoff_ms = 0;
	a->connected_now++;
	dm_debug("agent: vehicle %s connected", v->spec->vin);
	/* What was in the window before the connection dropped goes again,
	 * same bytes, same seq (invariant 1); the pump publishes it. */
	for (int i = 0; i < a->config->inflight; i++)
		if (v->slots[i].used)
			v->slots[i].needs_send = true;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	struct vehicle *v = obj;
	v->lost = true;
}

/* The first refused batch of each vehicle is logged with the server's
 * Reason String, which says which sample broke which rule; later ones are
 * only counted. */
static void warn_refusal(struct vehicle *v, uint64_t seq, int reason,
                         const mosquitto_property *props)
{
	if (v->refusal_warned)
		return;
	v->refusal_warned = true;
	char *why = NULL;
	mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &why, false);
	dm_warn("agent: vehicle %s: batch %" PRIu64 " refused, reason 0x%02x (%s)%s%s",
	        v->spec->vin, seq, reason, mosquitto_reason_string(reason), why ? ": " : "",
	        why ? why : "");
	free(why); /* libmosquitto allocates it with malloc */
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
	struct vehicle *v = obj;
	struct agent *a = v->agent;
	for (int i = 0; i < a->config->inflight; i++) {
		struct slot *s = &v->slots[i];
		if (!s->used || s->needs_send || s->mid != mid)
			continue;
		uint64_t now = dm_mono_ns();
		hist_add(&a->latency, (now - s->sent_ns) / 1000);
		a->last_ack_ns = now;
		if (reason < 0x80) {
			a->result->batches_acked++;
			a->result->samples_acked += s->samples;
		} else {
			a->result->batches_refused++;
			a->result->refused_by_reason[reason & 0xFF]++;
			warn_refusal(v, s->seq, reason, props);
		}
		slot_release(v, s);
		return;
	}
}

static int vehicle_connect(struct agent *a, struct vehicle *v)
{
	const struct agent_config *c = a->config;
	struct mosquitto *m = mosquitto_new(v->spec->vin, true, v);
	if (!m)
		return errno == ENOMEM ? DM_ERR_NOMEM : DM_ERR_INVALID;
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION,
	                     c->protocol == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	/* Small PUBLISH packets waiting on their PUBACK: Nagle would only add
	 * latency. */
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_max_inflight_messages_set(m, (unsigned)c->inflight);
	/* Over TLS the certificate is the credential: no password is sent. */
	if (mosquitto_username_pw_set(m, v->spec->vin, c->tls_ca ? NULL : v->spec->secret) !=
	    MOSQ_ERR_SUCCESS) {
		mosquitto_destroy(m);
		return DM_ERR_NOMEM;
	}
	if (c->tls_ca) {
		char cert[PATH_MAX], key[PATH_MAX];
		snprintf(cert, sizeof cert, "%s/%s.crt", c->cert_dir, v->spec->vin);
		snprintf(key, sizeof key, "%s/%s.key", c->cert_dir, v->spec->vin);
		int tls_rc = mosquitto_tls_set(m, c->tls_ca, NULL, cert, key, NULL);
		if (tls_rc == MOSQ_ERR_SUCCESS)
			tls_rc =
			    mosquitto_tls_opts_set(m, 1 /* verify the broker */, "tlsv1.2", NULL);
		if (tls_rc != MOSQ_ERR_SUCCESS) {
			if (!v->warned)
				dm_warn("agent: vehicle %s: TLS setup with %s failed: %s",
				        v->spec->vin, cert, mosquitto_strerror(tls_rc));
			v->warned = true;
			mosquitto_destroy(m);
			return tls_rc == MOSQ_ERR_NOMEM ? DM_ERR_NOMEM : DM_ERR_INVALID;
		}
	}
	mosquitto_connect_v5_callback_set(m, on_connect);
	mosquitto_disconnect_v5_callback_set(m, on_disconnect);
	mosquitto_publish_v5_callback_set(m, on_publish);
	v->mosq = m;
	v->state = CONN_CONNECTING;
	v->got_connack = false;
	v->lost = false;
	const struct endpoint *at = &a->endpoints[v->target];
	int rc;
	if (c->protocol == 5 && v->home) {
		/* libmosquitto 2.0 sends CONNECT properties only through
		 * mosquitto_connect_bind_v5, whose TCP connect blocks (there is no
		 * asynchronous variant with properties): the loop waits for the
		 * handshake, at once on a reachable host, up to the kernel's SYN
		 * timeout on an unreachable one. The CONNACK still arrives
		 * through the loop. */
		mosquitto_property *props = NULL;
		rc = mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "home",
		                                        v->home);
		if (rc == MOSQ_ERR_SUCCESS)
			rc = mosquitto_connect_bind_v5(m, at->host, at->port, KEEPALIVE_S, NULL,
			                               props);
		mosquitto_property_free_all(&props);
	} else {
		rc = mosquitto_connect_bind_async(m, at->host, at->port, KEEPALIVE_S, NULL);
	}
	if (rc == MOSQ_ERR_NOMEM)
		return DM_ERR_NOMEM;
	if (rc != MOSQ_ERR_SUCCESS) {
		char where[AGENT_ENDPOINT_LEN];
		endpoint_text(at, where, sizeof where);
		if (!v->warned)
			dm_warn("agent: vehicle %s: cannot connect to %s: %s", v->spec->vin, where,
			        rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		v->warned = true;
		v->lost = true;
	}
	return DM_OK;
}

/* The connection is gone (or never came): drop the client (invariant 3),
 * mark the window for publishing again, and retry after a backoff. */
static void vehicle_lost(struct agent *a, struct vehicle *v, uint64_t now)
{
	if (v->mosq) {
		mosquitto_destroy(v->mosq);
		v->mosq = NULL;
	}
	if (v->state == CONN_CONNECTED) {
		a->connected_now--;
		if (v->warned)
			dm_debug("agent: vehicle %s: connection lost, reconnecting", v->spec->vin);
		else
			dm_warn("agent: vehicle %s: connection lost, reconnecting", v->spec->vin);
		v->warned = true;
	} else if (!v->got_connack) {
		a->result->connect_errors++;
	}
	v->lost = false;
	for (int i = 0; i < a->config->inflight; i++)
		if (v->slots[i].used)
			v->slots[i].needs_send = true;
	if (v->redirected) {
		/* Not a failure of the new endpoint: go there now. */
		v->redirected = false;
		v->state = CONN_IDLE;
		v->backoff_ms = 0;
		v->retry_at_ns = now;
		return;
	}
	if (v->refused_for_good) {
		v->state = CONN_FAILED;
		return;
	}
	v->state = CONN_IDLE;
	v->backoff_ms = v->backoff_ms ? v->backoff_ms * 2 : BACKOFF_FIRST_MS;
	if (v->backoff_ms > BACKOFF_MAX_MS)
		v->backoff_ms = BACKOFF_MAX_MS;
	/* ±25 % jitter so a fleet that lost its broker does not return in step. */
	double wait_ms = v->backoff_ms * (0.75 + 0.5 * unit_random(&v->rng));
	v->retry_at_ns = now + (uint64_t)(wait_ms * 1e6);
}

/* ---- 5. the loop -------------------------------------------------------------------------- */

static void on_stop_signal(int sig)
{
	stop_requested = 1;
}

static void progress_line(struct agent *a, uint64_t now, bool final)
{
	if (!a->config->progress)
		return;
	if (!final && now < a->next_progress_ns)
		return;
	double span = (double)(now - a->progress_ns) / 1e9;
	double rate =
	    span > 0 ? (double)(a->result->samples_acked - a->progress_samples) / span : 0;
	fprintf(stderr,
	        "\ragent: %zu/%zu connected  batches acked %" PRIu64 " refused %" PRIu64
	        "  %.0f samples/s   ",
	        a->connected_now, a->count, a->result->batches_acked, a->result->batches_refused,
	        rate);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
	a->progress_shown = true;
	a->progress_samples = a->result->samples_acked;
	a->progress_ns = now;
	a->next_progress_ns = now + PROGRESS_NS;
}

static void enter_drain(struct agent *a, uint64_t now)
{
	a->phase = PHASE_DRAIN;
	a->stopped_ns = now;
	a->drain_end_ns = now + (uint64_t)(a->config->drain_s * 1e9);
	if (a->config->flood)
		return;
	/* Rate mode: the last, partial batch of every vehicle. */
	for (size_t i = 0; i < a->count && !a->fatal; i++) {
		struct vehicle *v = &a->vehicles[i];
		if (v->pending_count > 0) {
			int rc = backlog_push(a, v, v->pending_count);
			if (rc != DM_OK)
				a->fatal = rc;
		}
	}
}

static int poll_timeout_ms(const struct agent *a, uint64_t now)
{
	uint64_t wake = now + PROGRESS_NS;
	uint64_t end = a->phase == PHASE_RUN ? a->run_end_ns : a->drain_end_ns;
	if (end < wake)
		wake = end;
	for (size_t i = 0; i < a->count; i++) {
		const struct vehicle *v = &a->vehicles[i];
		if (v->state == CONN_IDLE && v->retry_at_ns < wake)
			wake = v->retry_at_ns;
		if (!a->config->flood && a->phase == PHASE_RUN && v->next_tick_ns < wake)
			wake = v->next_tick_ns;
	}
	if (wake <= now)
		return 0;
	return (int)((wake - now + 999999) / 1000000);
}

static int run_loop(struct agent *a)
{
	struct pollfd *fds = dm_calloc(a->count, sizeof *fds);
	struct vehicle **owners = dm_calloc(a->count, sizeof *owners);
	if (!fds || !owners) {
		dm_free(fds);
		dm_free(owners);
		return DM_ERR_NOMEM;
	}
	int status = DM_OK;
	uint64_t next_misc = a->start_ns + MISC_NS;

	for (;;) {
		uint64_t now = dm_mono_ns();
		if (a->phase == PHASE_RUN && (now >= a->run_end_ns || stop_requested))
			enter_drain(a, now);
		if (a->fatal) {
			status = a->fatal;
			break;
		}
		if (a->phase == PHASE_DRAIN) {
			bool all_done = true;
			for (size_t i = 0; i < a->count && all_done; i++)
				all_done = vehicle_done(&a->vehicles[i]);
			if (all_done || now >= a->drain_end_ns)
				break;
		}

		nfds_t nfds = 0;
		for (size_t i = 0; i < a->count; i++) {
			struct vehicle *v = &a->vehicles[i];
			if (v->lost)
				vehicle_lost(a, v, now);
			if (v->state == CONN_IDLE && now >= v->retry_at_ns &&
			    (status = vehicle_connect(a, v)) != DM_OK)
				goto out;
			if (!a->config->flood && a->phase == PHASE_RUN &&
			    (status = rate_ticks(a, v, now)) != DM_OK)
				goto out;
			if (v->state == CONN_CONNECTED && !v->lost &&
			    (status = vehicle_pump(a, v)) != DM_OK)
				goto out;
			int sock = v->mosq && !v->lost ? mosquitto_socket(v->mosq) : -1;
			if (sock < 0)
				continue;
			fds[nfds] = (struct pollfd){.fd = sock, .events = POLLIN};
			if (mosquitto_want_write(v->mosq))
				fds[nfds].events |= POLLOUT;
			owners[nfds++] = v;
		}

		int ready = poll(fds, nfds, poll_timeout_ms(a, now));
		if (ready < 0 && errno != EINTR) {
			dm_error("agent: poll: %s", strerror(errno));
			status = DM_ERR_IO;
			break;
		}
		for (nfds_t i = 0; ready > 0 && i < nfds; i++) {
			struct vehicle *v = owners[i];
			short revents = fds[i].revents;
			if (!revents)
				continue;
			if (revents & (POLLIN | POLLERR | POLLHUP))
				mosquitto_loop_read(v->mosq, 1);
			if (!v->lost && mosquitto_socket(v->mosq) >= 0 && (revents & POLLOUT))
				mosquitto_loop_write(v->mosq, 1);
			if (mosquitto_socket(v->mosq) < 0)
				v->lost = true;
		}

		now = dm_mono_ns();
		if (now >= next_misc) {
			/* Keepalive PINGREQs and their timeouts. */
			for (size_t i = 0; i < a->count; i++) {
				struct vehicle *v = &a->vehicles[i];
				if (v->mosq && !v->lost &&
				    mosquitto_loop_misc(v->mosq) != MOSQ_ERR_SUCCESS)
					v->lost = true;
			}
			next_misc = now + MISC_NS;
		}
		progress_line(a, now, false);
	}
out:
	dm_free(fds);
	dm_free(owners);
	return status;
}

/* Says goodbye to the broker: DISCONNECT (normal) on every live connection. */
static void disconnect_all(struct agent *a)
{
	for (size_t i = 0; i < a->count; i++) {
		struct vehicle *v = &a->vehicles[i];
		if (!v->mosq)
			continue;
		if (v->state == CONN_CONNECTED && !v->lost) {
			mosquitto_disconnect_v5(v->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
			if (mosquitto_socket(v->mosq) >= 0 && mosquitto_want_write(v->mosq))
				mosquitto_loop_write(v->mosq, 1);
			a->connected_now--;
		}
		mosquitto_destroy(v->mosq);
		v->mosq = NULL;
	}
}

static void vehicle_free(struct agent *a, struct vehicle *v)
{
	route_free(v->route);
	dm_free(v->pending);
	if (v->slots)
		for (int i = 0; i < a->config->inflight; i++)
			dm_buf_free(&v->slots[i].payload);
	dm_free(v->slots);
	for (size_t i = 0; i < v->backlog_cap; i++)
		dm_buf_free(&v->backlog[i].payload);
	dm_free(v->backlog);
}

static int vehicle_init(struct agent *a, struct vehicle *v, const struct agent_vehicle *spec,
                        size_t index)
{
	const struct agent_config *c = a->config;
	v->agent = a;
	v->spec = spec;
	v->home = spec->home[0] ? spec->home : c->home;
	v->target = 0; /* the broker */
	snprintf(v->topic, sizeof v->topic, "v/%s/telemetry", spec->vin);
	uint64_t seed = fnv1a(spec->vin) ^ (c->seed * 0x9E3779B97F4A7C15ull);
	v->rng = seed | 1;
	double lat = spec->lat_deg, lon = spec->lon_deg;
	if (!spec->has_position) {
		/* Scattered over about 10 km around the origin, by VIN. */
		lat = c->origin_lat_deg + (unit_random(&v->rng) - 0.5) * 0.1;
		lon = c->origin_lon_deg +
		      (unit_random(&v->rng) - 0.5) * 0.1 / cos(c->origin_lat_deg * M_PI / 180.0);
		lat = lat > 85.0 ? 85.0 : (lat < -85.0 ? -85.0 : lat);
		lon = lon >= 180.0 ? lon - 360.0 : (lon < -180.0 ? lon + 360.0 : lon);
	}
	struct route_config rc;
	route_config_default(&rc, seed, lat, lon);
	int status = route_new(&rc, &v->route);
	if (status != DM_OK)
		return status;
	v->pending = dm_calloc(c->batch + CH_COUNT, sizeof *v->pending);
	v->slots = dm_calloc((size_t)c->inflight, sizeof *v->slots);
	if (!v->pending || !v->slots)
		return DM_ERR_NOMEM;
	v->next_seq = c->seq_start;
	v->state = CONN_IDLE;
	/* Spread the vehicles' sampling instants over one period, so a large
	 * fleet does not sample, batch and publish in lockstep. */
	v->next_tick_ns = a->start_ns + a->period_ns * index / a->count;
	/* Spread the batches too: the first batch of each vehicle is shorter by
	 * a different amount, or all would fill up in the same period. */
	v->next_batch = 1 + (c->batch - 1) * (index + 1) / a->count;
	v->retry_at_ns = a->start_ns;
	return DM_OK;
}

void agent_config_default(struct agent_config *config)
{
	*config = (struct agent_config){
	    .host = "127.0.0.1",
	    .port = AGENT_DEFAULT_PORT,
	    .rate_hz = 0,
	    .batch = 100,
	    .duration_s = 10,
	    .drain_s = 5,
	    .format = PAYLOAD_PROTOBUF,
	    .inflight = AGENT_DEFAULT_INFLIGHT,
	    .protocol = 5,
	    .seq_start = 1,
	    .seed = 1,
	    .origin_lat_deg = 31.23,
	    .origin_lon_deg = 121.47,
	    .max_redirects = AGENT_DEFAULT_MAX_REDIRECTS,
	};
}

/* ISO 3166 alpha-2 as the topology writes it: two capital letters. */
static bool jurisdiction_valid(const char *code)
{
	return code && code[0] >= 'A' && code[0] <= 'Z' && code[1] >= 'A' && code[1] <= 'Z' &&
	       code[2] == '\0';
}

static bool vehicle_homes_valid(const struct agent_config *c)
{
	for (size_t i = 0; i < c->vehicle_count; i++)
		if (c->vehicles[i].home[0] && !jurisdiction_valid(c->vehicles[i].home))
			return false;
	return true;
}

static bool config_valid(const struct agent_config *c)
{
	return c->host && c->port > 0 && c->port < 65536 && c->vehicles && c->vehicle_count > 0 &&
	       c->catalog && c->rate_hz >= 0 && c->rate_hz <= 1000 && c->batch >= 1 &&
	       c->batch <= 1000000 && c->duration_s > 0 && c->drain_s >= 0 && c->inflight >= 1 &&
	       c->inflight <= AGENT_MAX_INFLIGHT && (c->protocol == 5 || c->protocol == 4) &&
	       (c->format == PAYLOAD_JSON || c->format == PAYLOAD_PROTOBUF) &&
	       c->origin_lat_deg >= -85 && c->origin_lat_deg <= 85 && c->origin_lon_deg >= -180 &&
	       c->origin_lon_deg <= 180 && strlen(c->host) < HOST_MAX &&
	       (!c->home || jurisdiction_valid(c->home)) && c->max_redirects >= 0 &&
	       c->max_redirects <= AGENT_MAX_REDIRECTS_LIMIT && vehicle_homes_valid(c);
}

/* Counts where the vehicles that ever connected were last connected. */
static void count_endpoints(const struct agent *a, struct agent_result *out)
{
	for (size_t i = 0; i < a->count; i++) {
		const struct vehicle *v = &a->vehicles[i];
		if (!v->ever_connected)
			continue;
		char text[AGENT_ENDPOINT_LEN];
		endpoint_text(&a->endpoints[v->connected_at], text, sizeof text);
		size_t k = 0;
		while (k < out->endpoint_count && strcmp(out->by_endpoint[k].endpoint, text) != 0)
			k++;
		if (k == out->endpoint_count) {
			if (k == AGENT_ENDPOINTS_MAX) {
				out->endpoints_other++;
				continue;
			}
			memcpy(out->by_endpoint[k].endpoint, text, sizeof text);
			out->endpoint_count++;
		}
		out->by_endpoint[k].vehicles++;
	}
}

/* A fleet needs three descriptors per vehicle (libmosquitto keeps a socket
 * pair besides the connection): raise the soft limit as far as allowed. */
static void raise_fd_limit(size_t vehicles)
{
	struct rlimit lim;
	if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
		return;
	rlim_t want = (rlim_t)vehicles * 3 + 64;
	if (lim.rlim_cur >= want)
		return;
	lim.rlim_cur = lim.rlim_max == RLIM_INFINITY || lim.rlim_max > want ? want : lim.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur < want)
		dm_warn("agent: %zu vehicles need %llu file descriptors, the limit is %llu",
		        vehicles, (unsigned long long)want, (unsigned long long)lim.rlim_cur);
}

int agent_run(const struct agent_config *config, struct agent_result *out)
{
	memset(out, 0, sizeof *out);
	if (!config_valid(config))
		return DM_ERR_INVALID;
	struct agent *a = dm_calloc(1, sizeof *a);
	if (!a)
		return DM_ERR_NOMEM;
	a->config = config;
	a->result = out;
	a->count = config->vehicle_count;
	out->vehicles = a->count;
	a->rate_hz = config->rate_hz > 0 ? config->rate_hz : (config->flood ? 1000.0 : 1.0);
	a->period_ns = (uint64_t)(1e9 / a->rate_hz);
	int bound = 0;
	for (int ch = 0; ch < CH_COUNT; ch++) {
		const char *path = channel_paths[ch];
		a->signals[ch] = catalog_find(config->catalog, path, strlen(path));
		if (a->signals[ch])
			bound++;
		else
			dm_warn("agent: signal %s is not in the catalog; not sent", path);
	}
	int status = DM_OK;
	if (bound == 0) {
		dm_error("agent: the catalog has none of the signals the simulation produces");
		status = DM_ERR_INVALID;
		goto done;
	}

	mosquitto_lib_init();
	if (config->protocol == 5) {
		const char *type =
		    config->format == PAYLOAD_JSON ? "application/json" : "application/x-protobuf";
		if (mosquitto_property_add_string(&a->publish_props, MQTT_PROP_CONTENT_TYPE,
		                                  type) != MOSQ_ERR_SUCCESS) {
			status = DM_ERR_NOMEM;
			goto cleanup;
		}
	}
	raise_fd_limit(a->count);
	size_t broker = 0;
	if ((status = endpoint_intern(a, config->host, config->port, &broker)) != DM_OK)
		goto cleanup;

	a->start_ns = dm_mono_ns();
	a->start_wall_ms = dm_now_ms();
	a->run_end_ns = a->start_ns + (uint64_t)(config->duration_s * 1e9);
	a->progress_ns = a->start_ns;
	a->vehicles = dm_calloc(a->count, sizeof *a->vehicles);
	if (!a->vehicles) {
		status = DM_ERR_NOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < a->count && status == DM_OK; i++)
		status = vehicle_init(a, &a->vehicles[i], &config->vehicles[i], i);
	if (status == DM_OK)
		status = run_loop(a);
	if (a->phase == PHASE_RUN)
		a->stopped_ns = dm_mono_ns();
	progress_line(a, dm_mono_ns(), true);
	disconnect_all(a);

	for (size_t i = 0; i < a->count; i++)
		out->connected += a->vehicles[i].ever_connected;
	count_endpoints(a, out);
	uint64_t end = a->last_ack_ns > a->stopped_ns ? a->last_ack_ns : a->stopped_ns;
	out->duration_s = (double)(end - a->start_ns) / 1e9;
	out->puback_p50_ms = hist_percentile_ms(&a->latency, 0.50);
	out->puback_p99_ms = hist_percentile_ms(&a->latency, 0.99);
	out->puback_max_ms = (double)a->latency.max_us / 1000.0;

cleanup:
	if (a->vehicles)
		for (size_t i = 0; i < a->count; i++)
			vehicle_free(a, &a->vehicles[i]);
	dm_free(a->vehicles);
	mosquitto_property_free_all(&a->publish_props);
	dm_free(a->endpoints);
	mosquitto_lib_cleanup();
done:
	dm_free(a);
	return status;
}

/* ---- 6. the command line --------------------------------------------------------------------- */

static const char usage_text[] =
    "usage: domicile agent [options] (--vin VIN --secret SECRET | --fleet FILE)\n"
    "\n"
    "Simulated vehicles publishing telemetry batches (QoS 1) on v/{VIN}/telemetry.\n"
    "\n"
    "  --broker HOST:PORT    the MQTT server (default 127.0.0.1:1883)\n"
    "  --vin VIN             one vehicle: its VIN (client id and user name)...\n"
    "  --secret SECRET       ...and its password\n"
    "  --fleet FILE          many vehicles: lines \"VIN SECRET [LAT LON] [home=CC]\", '#'\n"
    "                        comments; home=CC overrides --home for that vehicle\n"
    "  --origin LAT,LON      where vehicles without a position start (default 31.23,121.47)\n"
    "  --catalog PATH        the signal catalog (default " DM_DEFAULT_CATALOG ")\n"
    "  --rate HZ             samples per signal per second (default 1); with --flood, the\n"
    "                        spacing of sample timestamps (default 1000: 1 ms), which start\n"
    "                        24 hours back and must not pass the present\n"
    "  --batch N             samples per batch (default 100)\n"
    "  --duration SECONDS    how long to run (default 10)\n"
    "  --drain SECONDS       how long to wait for outstanding PUBACKs at the end (default 5)\n"
    "  --format FORMAT       json or protobuf (default protobuf)\n"
    "  --inflight K          batches awaiting PUBACK per vehicle (default 16)\n"
    "  --flood               publish as fast as the in-flight window allows (benchmarks)\n"
    "  --idle                connect and stay connected, publishing nothing (benchmarks)\n"
    "  --protocol VERSION    5 or 311 (default 5)\n"
    "  --seq-start N         the first batch's sequence number (default 1)\n"
    "  --seed N              varies every vehicle's simulated drive (default 1)\n"
    "  --progress            a live progress line on stderr\n"
    "  --summary-json        one JSON object with the results on stdout at the end\n"
    "  --verbose             log every connection\n"
    "\n"
    "Residency:\n"
    "  --home CC             the vehicles' home jurisdiction (ISO 3166 alpha-2, e.g. CN),\n"
    "                        sent as the MQTT 5 CONNECT user property \"home\" (default:\n"
    "                        none, nothing sent; MQTT 3.1.1 never sends it)\n"
    "  --topology FILE       the sites of every jurisdiction (\"site CC ID MQTT_URL API_URL\"):\n"
    "                        a redirect (CONNACK 0x9C/0x9D) is followed only to an MQTT_URL\n"
    "                        of a site of the vehicle's home; without it, redirects are\n"
    "                        refused and counted\n"
    "  --max-redirects N     redirects a vehicle follows in one run (default 3, at most 100)\n"
    "\n"
    "TLS (MQTT over TLS 1.2+, mqtts:// redirects only):\n"
    "  --tls-ca FILE         the CA certificate that verifies the brokers\n"
    "  --cert-dir DIR        each vehicle's DIR/VIN.crt and DIR/VIN.key (domicile pki\n"
    "                        vehicle): the certificate replaces the password, so --secret\n"
    "                        may be left out and a fleet file's SECRET may be '-'\n"
    "\n"
    "Exit status: 0 when every vehicle connected and every batch was acknowledged,\n"
    "1 otherwise, 2 for a usage error.\n";

struct fleet_list {
	struct agent_vehicle *items;
	size_t count, cap;
};

static void fleet_list_free(struct fleet_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		dm_free((char *)list->items[i].vin);
		dm_free((char *)list->items[i].secret);
	}
	dm_free(list->items);
	*list = (struct fleet_list){0};
}

static int fleet_list_add(struct fleet_list *list, const char *vin, const char *secret,
                          int has_position, double lat, double lon, const char *home)
{
	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		struct agent_vehicle *items = dm_realloc(list->items, cap * sizeof *items);
		if (!items)
			return DM_ERR_NOMEM;
		list->items = items;
		list->cap = cap;
	}
	char *vin_copy = dm_strdup(vin), *secret_copy = dm_strdup(secret);
	if (!vin_copy || !secret_copy) {
		dm_free(vin_copy);
		dm_free(secret_copy);
		return DM_ERR_NOMEM;
	}
	struct agent_vehicle *item = &list->items[list->count++];
	*item = (struct agent_vehicle){
	    .vin = vin_copy,
	    .secret = secret_copy,
	    .has_position = has_position,
	    .lat_deg = lat,
	    .lon_deg = lon,
	};
	if (home)
		snprintf(item->home, sizeof item->home, "%s", home);
	return DM_OK;
}

/* A VIN becomes a topic level and a client id: no MQTT wildcards, no
 * separators, nothing that needs quoting. */
static bool vin_valid(const char *vin)
{
	size_t len = strlen(vin);
	if (len == 0 || len > VIN_MAX)
		return false;
	for (const char *c = vin; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
			return false;
	return true;
}

static bool parse_double(const char *text, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double value = strtod(text, &end);
	if (errno || end == text || *end || !isfinite(value) || value < lo || value > hi)
		return false;
	*out = value;
	return true;
}

static bool parse_u64(const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*text == '-' || *text == '+')
		return false;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || end == text || *end || value < lo || value > hi)
		return false;
	*out = value;
	return true;
}

static bool parse_lat_lon(const char *text, double *lat, double *lon)
{
	const char *comma = strchr(text, ',');
	if (!comma)
		return false;
	char lat_text[64];
	size_t len = (size_t)(comma - text);
	if (len >= sizeof lat_text)
		return false;
	memcpy(lat_text, text, len);
	lat_text[len] = '\0';
	return parse_double(lat_text, -85, 85, lat) && parse_double(comma + 1, -180, 180, lon);
}

/* Reads a fleet file. On error prints "FILE:LINE: what" and returns 2. */
static int load_fleet(const char *path, struct fleet_list *list)
{
	FILE *file = fopen(path, "r");
	if (!file) {
		fprintf(stderr, "domicile agent: %s: %s\n", path, strerror(errno));
		return 2;
	}
	char *line = NULL;
	size_t line_cap = 0;
	int lineno = 0, status = 0;
	while (getline(&line, &line_cap, file) >= 0) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		/* One field more than a line may have, so that a surplus one is
		 * seen rather than silently dropped. */
		char *fields[6], *save = NULL;
		int n = 0;
		for (char *tok = strtok_r(line, " \t\r\n", &save); tok && n < 6;
		     tok = strtok_r(NULL, " \t\r\n", &save))
			fields[n++] = tok;
		if (n == 0)
			continue;
		const char *home = NULL;
		if (n >= 3 && strncmp(fields[n - 1], "home=", 5) == 0)
			home = fields[--n] + 5;
		double lat = 0, lon = 0;
		const char *what = NULL;
		if (n != 2 && n != 4)
			what = "expected VIN SECRET [LAT LON] [home=CC]";
		else if (home && !jurisdiction_valid(home))
			what = "home= takes an ISO 3166 alpha-2 code in capitals, e.g. home=CN";
		else if (!vin_valid(fields[0]))
			what = "a VIN is 1 to 64 of A-Z a-z 0-9 . _ -";
		else if (n == 4 && !parse_double(fields[2], -85, 85, &lat))
			what = "latitude must be a number in [-85, 85]";
		else if (n == 4 && !parse_double(fields[3], -180, 180, &lon))
			what = "longitude must be a number in [-180, 180]";
		if (what) {
			fprintf(stderr, "domicile agent: %s:%d: %s\n", path, lineno, what);
			status = 2;
			break;
		}
		if (fleet_list_add(list, fields[0], fields[1], n == 4, lat, lon, home) != DM_OK) {
			fprintf(stderr, "domicile agent: out of memory reading %s\n", path);
			status = 2;
			break;
		}
	}
	if (status == 0 && ferror(file)) {
		fprintf(stderr, "domicile agent: %s: %s\n", path, strerror(errno));
		status = 2;
	}
	if (status == 0 && list->count == 0) {
		fprintf(stderr, "domicile agent: %s: no vehicles\n", path);
		status = 2;
	}
	free(line); /* getline's buffer comes from malloc */
	fclose(file);
	return status;
}

static json_t *reasons_json(const uint64_t counts[256], uint64_t other, const char *other_key)
{
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	for (int code = 0; code < 256; code++) {
		if (!counts[code])
			continue;
		char key[8];
		snprintf(key, sizeof key, "0x%02x", code);
		json_object_set_new(obj, key, json_integer((json_int_t)counts[code]));
	}
	if (other)
		json_object_set_new(obj, other_key, json_integer((json_int_t)other));
	return obj;
}

static json_t *redirects_refused_json(const struct agent_result *r)
{
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	/* Every reason, zeros too: a check can read any key without a default. */
	for (int reason = 0; reason < AGENT_REDIRECT_REFUSAL_COUNT; reason++)
		json_object_set_new(obj, redirect_refusal_names[reason],
		                    json_integer((json_int_t)r->redirects_refused[reason]));
	return obj;
}

static json_t *endpoints_json(const struct agent_result *r)
{
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	for (size_t i = 0; i < r->endpoint_count; i++)
		json_object_set_new(obj, r->by_endpoint[i].endpoint,
		                    json_integer((json_int_t)r->by_endpoint[i].vehicles));
	if (r->endpoints_other)
		json_object_set_new(obj, "other", json_integer((json_int_t)r->endpoints_other));
	return obj;
}

static int print_summary_json(const struct agent_result *r)
{
	double per_s = r->duration_s > 0 ? (double)r->samples_acked / r->duration_s : 0.0;
	double batches_per_s = r->duration_s > 0 ? (double)r->batches_acked / r->duration_s : 0.0;
	json_t *obj = json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, "
	    "s:o, s:o, s:I, s:o, s:o}",
	    "vehicles", (json_int_t)r->vehicles, "connected", (json_int_t)r->connected,
	    "batches_made", (json_int_t)r->batches_made, "batches_sent",
	    (json_int_t)r->batches_sent, "batches_acked", (json_int_t)r->batches_acked,
	    "batches_refused", (json_int_t)r->batches_refused, "batches_dropped",
	    (json_int_t)r->batches_dropped, "batches_republished", (json_int_t)r->republished,
	    "samples_acked", (json_int_t)r->samples_acked, "connect_errors",
	    (json_int_t)r->connect_errors, "duration_s", r->duration_s, "samples_per_s", per_s,
	    "batches_per_s", batches_per_s, "puback_p50_ms", r->puback_p50_ms, "puback_p99_ms",
	    r->puback_p99_ms, "puback_max_ms", r->puback_max_ms, "refused_by_reason",
	    reasons_json(r->refused_by_reason, 0, NULL), "connect_failures_by_reason",
	    reasons_json(r->connect_refused_by_reason, r->connect_errors, "no_connack"),
	    "redirects_followed", (json_int_t)r->redirects_followed, "redirects_refused",
	    redirects_refused_json(r), "vehicles_by_endpoint", endpoints_json(r));
	if (!obj)
		return DM_ERR_NOMEM;
	char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(obj);
	if (!text)
		return DM_ERR_NOMEM;
	printf("%s\n", text);
	fflush(stdout);
	free(text); /* jansson allocates with malloc by default */
	return DM_OK;
}

enum option_id {
	OPT_BROKER = 256,
	OPT_VIN,
	OPT_SECRET,
	OPT_FLEET,
	OPT_ORIGIN,
	OPT_CATALOG,
	OPT_RATE,
	OPT_BATCH,
	OPT_DURATION,
	OPT_DRAIN,
	OPT_FORMAT,
	OPT_INFLIGHT,
	OPT_FLOOD,
	OPT_IDLE,
	OPT_PROTOCOL,
	OPT_SEQ_START,
	OPT_SEED,
	OPT_PROGRESS,
	OPT_SUMMARY_JSON,
	OPT_VERBOSE,
	OPT_HOME,
	OPT_TOPOLOGY,
	OPT_MAX_REDIRECTS,
	OPT_TLS_CA,
	OPT_CERT_DIR,
	OPT_HELP,
};

static const struct option long_options[] = {
    {"broker", required_argument, NULL, OPT_BROKER},
    {"vin", required_argument, NULL, OPT_VIN},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"fleet", required_argument, NULL, OPT_FLEET},
    {"origin", required_argument, NULL, OPT_ORIGIN},
    {"catalog", required_argument, NULL, OPT_CATALOG},
    {"rate", required_argument, NULL, OPT_RATE},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"flood", no_argument, NULL, OPT_FLOOD},
    {"idle", no_argument, NULL, OPT_IDLE},
    {"protocol", required_argument, NULL, OPT_PROTOCOL},
    {"seq-start", required_argument, NULL, OPT_SEQ_START},
    {"seed", required_argument, NULL, OPT_SEED},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"summary-json", no_argument, NULL, OPT_SUMMARY_JSON},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"home", required_argument, NULL, OPT_HOME},
    {"topology", required_argument, NULL, OPT_TOPOLOGY},
    {"max-redirects", required_argument, NULL, OPT_MAX_REDIRECTS},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"cert-dir", required_argument, NULL, OPT_CERT_DIR},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, const char *arg)
{
	fputs("domicile agent: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\n(see domicile agent --help)\n", stderr);
	return 2;
}

/* With TLS, every file a vehicle will need is readable before the run
 * starts: a missing certificate is a usage error naming it, not a vehicle
 * that retries for ever. Returns 0, or 2 after printing the problem. */
static int check_tls_files(const struct agent_config *config, const struct fleet_list *list)
{
	if (access(config->tls_ca, R_OK) != 0) {
		fprintf(stderr, "domicile agent: --tls-ca %s: %s\n", config->tls_ca,
		        strerror(errno));
		return 2;
	}
	for (size_t i = 0; i < list->count; i++) {
		static const char *const ext[] = {"crt", "key"};
		for (size_t e = 0; e < 2; e++) {
			char path[PATH_MAX];
			int n = snprintf(path, sizeof path, "%s/%s.%s", config->cert_dir,
			                 list->items[i].vin, ext[e]);
			if (n < 0 || (size_t)n >= sizeof path || access(path, R_OK) != 0) {
				fprintf(stderr, "domicile agent: %s: %s\n", path,
				        n < 0 || (size_t)n >= sizeof path ? "path too long"
				                                          : strerror(errno));
				return 2;
			}
		}
	}
	return 0;
}

int agent_main(int argc, char **argv)
{
	struct agent_config config;
	agent_config_default(&config);
	char host[256];
	const char *vin = NULL, *secret = NULL, *fleet = NULL, *catalog_path = DM_DEFAULT_CATALOG;
	const char *topology_path = NULL;
	bool summary_json = false;
	uint64_t number;

	snprintf(host, sizeof host, "%s", config.host);
	optind = 0; /* GNU: start afresh whatever parsed argv before us */
	opterr = 0;
	for (;;) {
		int opt = getopt_long(argc, argv, ":", long_options, NULL);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_BROKER:
			if (addr_split(optarg, host, sizeof host, &config.port) != DM_OK ||
			    config.port == 0)
				return usage_error("--broker: expected HOST:PORT, got '%s'",
				                   optarg);
			break;
		case OPT_VIN:
			if (!vin_valid(optarg))
				return usage_error(
				    "--vin: '%s' is not 1 to 64 of A-Z a-z 0-9 . _ -", optarg);
			vin = optarg;
			break;
		case OPT_SECRET:
			secret = optarg;
			break;
		case OPT_FLEET:
			fleet = optarg;
			break;
		case OPT_ORIGIN:
			if (!parse_lat_lon(optarg, &config.origin_lat_deg, &config.origin_lon_deg))
				return usage_error(
				    "--origin: expected LAT,LON within [-85, 85] and "
				    "[-180, 180], got '%s'",
				    optarg);
			break;
		case OPT_CATALOG:
			catalog_path = optarg;
			break;
		case OPT_RATE:
			if (!parse_double(optarg, 0.001, 1000, &config.rate_hz))
				return usage_error(
				    "--rate: expected a number of Hz in [0.001, 1000], "
				    "got '%s'",
				    optarg);
			break;
		case OPT_BATCH:
			if (!parse_u64(optarg, 1, 100000, &number))
				return usage_error(
				    "--batch: expected 1 to 100000 samples, got '%s'", optarg);
			config.batch = (size_t)number;
			break;
		case OPT_DURATION:
			if (!parse_double(optarg, 0.001, 366.0 * 86400, &config.duration_s))
				return usage_error("--duration: expected a positive number of "
				                   "seconds, got '%s'",
				                   optarg);
			break;
		case OPT_DRAIN:
			if (!parse_double(optarg, 0, 3600, &config.drain_s))
				return usage_error("--drain: expected 0 to 3600 seconds, got '%s'",
				                   optarg);
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "json") == 0)
				config.format = PAYLOAD_JSON;
			else if (strcmp(optarg, "protobuf") == 0)
				config.format = PAYLOAD_PROTOBUF;
			else
				return usage_error("--format: expected json or protobuf, got '%s'",
				                   optarg);
			break;
		case OPT_INFLIGHT:
			if (!parse_u64(optarg, 1, AGENT_MAX_INFLIGHT, &number))
				return usage_error("--inflight: expected 1 to 65535, got '%s'",
				                   optarg);
			config.inflight = (int)number;
			break;
		case OPT_FLOOD:
			config.flood = 1;
			break;
		case OPT_IDLE:
			config.flood = 1; /* no sampling clock ... */
			config.idle = 1;  /* ... and no batches either */
			break;
		case OPT_PROTOCOL:
			if (strcmp(optarg, "5") == 0)
				config.protocol = 5;
			else if (strcmp(optarg, "311") == 0 || strcmp(optarg, "3.1.1") == 0)
				config.protocol = 4;
			else
				return usage_error("--protocol: expected 5 or 311, got '%s'",
				                   optarg);
			break;
		case OPT_SEQ_START:
			if (!parse_u64(optarg, 0, UINT64_MAX / 2, &config.seq_start))
				return usage_error(
				    "--seq-start: expected a sequence number, got '%s'", optarg);
			break;
		case OPT_SEED:
			if (!parse_u64(optarg, 0, UINT64_MAX, &config.seed))
				return usage_error("--seed: expected a whole number, got '%s'",
				                   optarg);
			break;
		case OPT_PROGRESS:
			config.progress = 1;
			break;
		case OPT_SUMMARY_JSON:
			summary_json = true;
			break;
		case OPT_VERBOSE:
			dm_log_set_level(DM_LOG_DEBUG);
			break;
		case OPT_HOME:
			if (!jurisdiction_valid(optarg))
				return usage_error("--home: expected an ISO 3166 alpha-2 code in "
				                   "capitals (e.g. CN), got '%s'",
				                   optarg);
			config.home = optarg;
			break;
		case OPT_TOPOLOGY:
			topology_path = optarg;
			break;
		case OPT_MAX_REDIRECTS:
			if (!parse_u64(optarg, 0, AGENT_MAX_REDIRECTS_LIMIT, &number))
				return usage_error("--max-redirects: expected 0 to 100, got '%s'",
				                   optarg);
			config.max_redirects = (int)number;
			break;
		case OPT_TLS_CA:
			config.tls_ca = optarg;
			break;
		case OPT_CERT_DIR:
			config.cert_dir = optarg;
			break;
		case OPT_HELP:
			fputs(usage_text, stdout);
			return 0;
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!config.tls_ca != !config.cert_dir)
		return usage_error("%s", "--tls-ca and --cert-dir go together");
	if (fleet && (vin || secret))
		return usage_error("%s", "give either --vin and --secret, or --fleet, not both");
	if (!fleet && (!vin || (!secret && !config.cert_dir)))
		return usage_error("%s", "give --vin VIN and --secret SECRET (or --cert-dir), or "
		                         "--fleet FILE");
	if (!secret)
		secret = "-"; /* over TLS: never sent */

	struct fleet_list list = {0};
	int status;
	if (fleet) {
		if ((status = load_fleet(fleet, &list)) != 0) {
			fleet_list_free(&list);
			return status;
		}
	} else if (fleet_list_add(&list, vin, secret, 0, 0, 0, NULL) != DM_OK) {
		fputs("domicile agent: out of memory\n", stderr);
		return 1;
	}

	if (config.tls_ca && (status = check_tls_files(&config, &list)) != 0) {
		fleet_list_free(&list);
		return status;
	}

	struct catalog *catalog = NULL;
	char err[512];
	if ((status = catalog_load(catalog_path, &catalog, err, sizeof err)) != DM_OK) {
		fprintf(stderr, "domicile agent: %s\n", err);
		fleet_list_free(&list);
		return 2;
	}
	struct topology *topology = NULL;
	if (topology_path && topology_load(topology_path, &topology, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile agent: %s\n", err);
		catalog_free(catalog);
		fleet_list_free(&list);
		return 2;
	}
	config.topology = topology;

	config.host = host;
	config.vehicles = list.items;
	config.vehicle_count = list.count;
	config.catalog = catalog;

	struct sigaction stop = {.sa_handler = on_stop_signal}, old_int, old_term, old_pipe;
	struct sigaction ignore = {.sa_handler = SIG_IGN};
	sigemptyset(&stop.sa_mask);
	sigemptyset(&ignore.sa_mask);
	stop_requested = 0;
	sigaction(SIGINT, &stop, &old_int);
	sigaction(SIGTERM, &stop, &old_term);
	sigaction(SIGPIPE, &ignore, &old_pipe);

	struct agent_result *result = dm_calloc(1, sizeof *result);
	status = result ? agent_run(&config, result) : DM_ERR_NOMEM;

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);

	int exit_code = 1;
	if (status != DM_OK) {
		fprintf(stderr, "domicile agent: %s\n", dm_strerror(status));
	} else {
		double per_s =
		    result->duration_s > 0 ? (double)result->samples_acked / result->duration_s : 0;
		dm_info("agent: %zu/%zu vehicles connected; batches made %" PRIu64 ", sent %" PRIu64
		        ", acked %" PRIu64 ", refused %" PRIu64 "; %.0f samples/s over %.1f s; "
		        "PUBACK p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		        result->connected, result->vehicles, result->batches_made,
		        result->batches_sent, result->batches_acked, result->batches_refused, per_s,
		        result->duration_s, result->puback_p50_ms, result->puback_p99_ms,
		        result->puback_max_ms);
		uint64_t refused_redirects = 0;
		for (int reason = 0; reason < AGENT_REDIRECT_REFUSAL_COUNT; reason++)
			refused_redirects += result->redirects_refused[reason];
		if (result->redirects_followed || refused_redirects)
			dm_info("agent: redirects followed %" PRIu64 ", refused %" PRIu64,
			        result->redirects_followed, refused_redirects);
		if (summary_json && print_summary_json(result) != DM_OK)
			fputs("domicile agent: out of memory writing the summary\n", stderr);
		if (result->connected == result->vehicles &&
		    result->batches_acked == result->batches_made)
			exit_code = 0;
	}
	dm_free(result);
	topology_free(topology);
	catalog_free(catalog);
	fleet_list_free(&list);
	return exit_code;
}
