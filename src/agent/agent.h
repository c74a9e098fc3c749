/*
 * agent.h — `domicile agent`: simulated vehicles that publish telemetry.
 *
 * One process, one thread, any number of vehicles. Each vehicle is a
 * libmosquitto client (client id and user name = its VIN, password = its
 * secret; or, with TLS, its client certificate instead of the password:
 * DIR/<VIN>.crt and DIR/<VIN>.key as `domicile pki vehicle` issues them,
 * the brokers verified against one CA file, TLS 1.2 or later) driven from a
 * single poll() loop; each drives a simulated route (agent/route.h), samples
 * its signals, groups the samples into batches with increasing sequence
 * numbers and publishes them QoS 1 on v/{VIN}/telemetry, JSON or protobuf
 * (ingest/payload.h), with at most a fixed number of batches waiting for
 * their PUBACK. A batch whose connection drops before its PUBACK
 * is published again with the same sequence number after reconnecting (the
 * node stores it once).
 *
 * Two modes:
 *   rate   real time: every vehicle samples each signal `rate_hz` times a
 *          second for `duration_s` seconds, then its last partial batch.
 *   flood  benchmark: every vehicle publishes freshly generated batches as
 *          fast as its in-flight window allows for `duration_s` seconds.
 *          Samples are `1000 / rate_hz` ms apart (rate_hz 0 means 1000 Hz)
 *          and start 24 hours before the run, so the node never sees a
 *          timestamp in the future.
 *   idle   benchmark: every vehicle connects and stays connected for
 *          `duration_s` seconds without publishing.
 * After the run the agent waits up to `drain_s` for outstanding PUBACKs and
 * disconnects cleanly.
 *
 * Residency: a vehicle with a home jurisdiction names it in every MQTT 5
 * CONNECT as the user property `home` (MQTT 3.1.1 has no properties, so
 * nothing is sent). A node of another jurisdiction answers CONNACK 0x9D
 * Server moved (or 0x9C Use another server) with a Server Reference. The
 * vehicle follows it, at once and for the rest of the run, only when the
 * agent's own topology lists that endpoint for the vehicle's home, the
 * scheme is the agent's transport (mqtts:// with TLS, mqtt:// without: a
 * redirect never downgrades a vehicle to plain TCP) and fewer than
 * `max_redirects` redirects were
 * followed; otherwise the vehicle stops and the refusal is counted by
 * reason. A redirect is a hint: following one anywhere else would let a
 * rogue server pull a car's data out of its country.
 *
 * Ownership: agent_run borrows its config (and everything the config points
 * to) for the length of the call and fills a caller-owned result; nothing it
 * hands out needs freeing.
 */
#ifndef DM_AGENT_H
#define DM_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/catalog.h"
#include "ingest/payload.h"

struct topology;

#define AGENT_DEFAULT_PORT 1883
#define AGENT_DEFAULT_INFLIGHT 16
#define AGENT_MAX_INFLIGHT 65535 /* MQTT packet identifiers are 16 bits */
#define AGENT_DEFAULT_MAX_REDIRECTS 3
/* Each followed redirect is a reconnect and an info line: a bound keeps a
 * pair of servers that redirect to each other from spinning a vehicle. */
#define AGENT_MAX_REDIRECTS_LIMIT 100
/* Distinct endpoints counted in agent_result.by_endpoint; a fleet ends up
 * at its start broker or at sites of its topology, rarely more than a few. */
#define AGENT_ENDPOINTS_MAX 32
#define AGENT_ENDPOINT_LEN 264 /* "[HOST]:PORT" with a 255-byte host */

struct agent_vehicle {
	const char *vin;    /* 1..64 of [A-Za-z0-9._-]: also the client id and user name */
	const char *secret; /* the MQTT password */
	int has_position;   /* 0: placed near the config's origin, scattered by VIN */
	double lat_deg, lon_deg;
	char home[3]; /* ISO 3166 alpha-2 ("CN"), or "": the config's home */
};

struct agent_config {
	const char *host;
	int port;
	const struct agent_vehicle *vehicles;
	size_t vehicle_count;
	const struct catalog *catalog;
	double rate_hz;    /* samples per signal per second; 0: 1 (rate) or 1000 (flood) */
	size_t batch;      /* samples per batch, >= 1 */
	double duration_s; /* > 0 */
	double drain_s;    /* how long to wait for outstanding PUBACKs at the end */
	enum payload_format format;
	int inflight; /* batches awaiting PUBACK per vehicle, 1..AGENT_MAX_INFLIGHT */
	int flood;
	int idle; /* with flood: connect and publish nothing (memory benchmarks) */
	int protocol; /* 5 or 4 (MQTT 3.1.1) */
	uint64_t seq_start;
	uint64_t seed; /* mixed with each VIN to seed its route */
	double origin_lat_deg, origin_lon_deg;
	int progress;     /* a live progress line on stderr */
	const char *home; /* ISO 3166 alpha-2 for vehicles without their own; NULL: none */
	const struct topology *topology; /* where redirects may lead; NULL: never followed */
	int max_redirects; /* followed by a vehicle in one run, 0..AGENT_MAX_REDIRECTS_LIMIT */
	/* TLS: both set, or both NULL for plain TCP. */
	const char *tls_ca;   /* PEM CA certificate(s) that verify every broker */
	const char *cert_dir; /* <VIN>.crt and <VIN>.key of each vehicle */
};

/* Fills config with the defaults of the command line (no vehicles, no
 * catalog). */
void agent_config_default(struct agent_config *config);

/* Why a vehicle did not follow a redirect (CONNACK 0x9C/0x9D); the names
 * are the keys of "redirects_refused" in the summary. */
enum agent_redirect_refusal {
	AGENT_REDIRECT_NOT_IN_TOPOLOGY,    /* "redirect_not_in_topology" */
	AGENT_REDIRECT_TOO_MANY,           /* "too_many_redirects" */
	AGENT_REDIRECT_NO_REFERENCE,       /* "redirect_without_reference" */
	AGENT_REDIRECT_UNSUPPORTED_SCHEME, /* "redirect_unsupported_scheme": not the agent's
					    * transport (mqtts without TLS, mqtt with) */
	AGENT_REDIRECT_NO_HOME,            /* "redirect_without_home": nothing to check against */
	AGENT_REDIRECT_NO_TOPOLOGY,        /* "redirect_without_topology": no --topology */
	AGENT_REDIRECT_REFUSAL_COUNT
};

/* The name of a refusal reason; static storage. */
const char *agent_redirect_refusal_name(enum agent_redirect_refusal reason);

struct agent_endpoint_count {
	char endpoint[AGENT_ENDPOINT_LEN]; /* "HOST:PORT", an IPv6 host in brackets */
	size_t vehicles;
};

struct agent_result {
	size_t vehicles;
	size_t connected;         /* vehicles that got a successful CONNACK at least once */
	uint64_t batches_made;    /* batches built (rate mode: also while disconnected) */
	uint64_t batches_sent;    /* batches published at least once */
	uint64_t batches_acked;   /* PUBACK reason < 0x80 */
	uint64_t batches_refused; /* PUBACK reason >= 0x80 */
	uint64_t batches_dropped; /* rate mode: the backlog overflowed while disconnected */
	uint64_t republished;     /* publishes of a batch again after a reconnect */
	uint64_t samples_acked;
	double duration_s; /* start to the end of the run or the last PUBACK, if later */
	double puback_p50_ms, puback_p99_ms, puback_max_ms; /* publish to PUBACK */
	uint64_t refused_by_reason[256];                    /* by PUBACK reason code */
	uint64_t connect_refused_by_reason[256];            /* by CONNACK reason code */
	uint64_t connect_errors; /* no CONNACK: socket or protocol failures */
	uint64_t redirects_followed;
	uint64_t redirects_refused[AGENT_REDIRECT_REFUSAL_COUNT]; /* each stopped a vehicle */
	/* Where the vehicles that ever connected were last connected, by
	 * endpoint; beyond AGENT_ENDPOINTS_MAX endpoints, in endpoints_other. */
	struct agent_endpoint_count by_endpoint[AGENT_ENDPOINTS_MAX];
	size_t endpoint_count;
	size_t endpoints_other;
};

/*
 * Runs the fleet to the end (or until SIGINT/SIGTERM, which end the run
 * early and still drain). Returns DM_OK with *out filled, whatever the
 * broker did; DM_ERR_INVALID for a config out of range, DM_ERR_NOMEM, or
 * DM_ERR_IO when the event loop itself fails. Calls mosquitto_lib_init and
 * mosquitto_lib_cleanup.
 */
int agent_run(const struct agent_config *config, struct agent_result *out);

/*
 * Splits a Server Reference (or any MQTT endpoint URL) of the form
 * mqtt://HOST:PORT or mqtts://HOST:PORT, with an optional trailing '/'.
 * The scheme is matched without regard to case; HOST is a name of
 * [A-Za-z0-9.-] (returned in lower case), an IPv4 address, or an IPv6
 * address in brackets (returned without them); PORT is 1..65535 in plain
 * decimal. User info, paths, queries and fragments are refused. On entry
 * host becomes "" (when host_len > 0), *port 0 and *tls 0; on success they
 * hold the endpoint, *tls 1 for mqtts.
 * Returns DM_OK, or DM_ERR_INVALID for anything else (also when the host
 * does not fit host_len with its NUL).
 */
int agent_parse_mqtt_url(const char *url, char *host, size_t host_len, int *port, int *tls);

/*
 * The `domicile agent` command; argv[0] is "agent". Exits (returns) 0 when
 * every vehicle connected and every batch built was acknowledged, 1
 * otherwise, 2 for a usage error. Run with --help for the options.
 */
int agent_main(int argc, char **argv);

#endif
