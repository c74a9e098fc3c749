#include "node/node_metrics.h"

#include <string.h>

#include "util/err.h"
#include "util/metrics.h"

static const char *const refusal_reasons[] = {
	"malformed", "invalid_sample", "too_many_samples", "topic_not_allowed", "qos0",
	"store_failed", "other", NULL};
static const char *const connection_reasons[] = {
	"no_credentials", "unknown_vehicle", "redirected_home", "bad_secret",
	"client_id_not_vin", "username_not_vin", "erased", "certificate", "shutting_down", "other",
	NULL};
/* Every pattern of the route table in api/api.c, and the dispatcher's own
 * labels for requests that reach no handler. */
static const char *const routes[] = {
	"/v1/health", "/metrics", "/v1/routes", "/v1/vehicles", "/v1/vehicles/{vin}",
	"/v1/vehicles/{vin}/samples", "/v1/vehicles/{vin}/latest",
	"/v1/vehicles/{vin}/erasure-requests", "/v1/erasure-requests",
	"/v1/erasure-requests/{id}/approve", "/v1/erasure-requests/{id}/reject",
	"/v1/fleet/aggregate", "/v1/residency/report", "/v1/keys/rotate", "/v1/principals",
	"/v1/principals/{name}", "unauthorized", "forbidden", "unknown",
	"other", NULL};

/* PUBACK latency in seconds: fine around the 20 ms that a vehicle's
 * acknowledgement should stay under. */
static const double puback_buckets[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02,
					0.03,   0.05,  0.1,   0.25,  0.5,  1,     2.5,  10};

/* Sizes of blocks, in bytes and in samples: powers of four. */
static const double size_buckets[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};

/* Records per group commit: 1 to 4096, in powers of two. */
static const double commit_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

static int family(struct metrics *registry, const char *name, const char *help,
		  const char *label, const char *const *values, struct node_metrics_family *out)
{
	out->values = values;
	for (size_t i = 0; values[i]; i++) {
		int rc = metrics_counter_labeled(registry, name, help, label, values[i],
						 &out->counters[i]);
		if (rc)
			return rc;
	}
	return DM_OK;
}

static void family_inc(struct node_metrics_family *f, const char *value)
{
	size_t i = 0;
	while (f->values[i + 1] && strcmp(f->values[i], value) != 0)
		i++;
	metrics_counter_inc(f->counters[i]); /* the last entry is "other" */
}

int node_metrics_init(struct node_metrics *m)
{
	memset(m, 0, sizeof *m);
	int rc = metrics_new(&m->registry);
	struct metrics *r = m->registry;
#define COUNTER(field, name, help)                                                                 \
	if (rc == DM_OK)                                                                           \
	rc = metrics_counter(r, name, help, &m->field)
#define GAUGE(field, name, help)                                                                   \
	if (rc == DM_OK)                                                                           \
	rc = metrics_gauge(r, name, help, &m->field)
#define SECONDS(field, name, help)                                                                 \
	if (rc == DM_OK)                                                                           \
	rc = metrics_histogram(r, name, help, metrics_seconds_buckets,                            \
			       METRICS_SECONDS_BUCKET_COUNT, &m->field)
	COUNTER(batches_accepted, "domicile_batches_accepted_total",
		"Batches stored and acknowledged.");
	COUNTER(samples_accepted, "domicile_samples_accepted_total",
		"Samples in the batches stored and acknowledged.");
	COUNTER(bytes_accepted, "domicile_payload_bytes_accepted_total",
		"Payload bytes of the batches stored.");
	COUNTER(batches_duplicate, "domicile_batches_duplicate_total",
		"Batches acknowledged without storing: their (vehicle, seq) was stored before.");
	if (rc == DM_OK)
		rc = family(r, "domicile_batches_refused_total", "Batches refused, by reason.",
			    "reason", refusal_reasons, &m->batches_refused);
	if (rc == DM_OK)
		rc = family(r, "domicile_connections_refused_total",
			    "MQTT connections refused at CONNECT, by reason.", "reason",
			    connection_reasons, &m->connections_refused);
	if (rc == DM_OK)
		rc = family(r, "domicile_http_requests_total", "API requests, by route.", "route",
			    routes, &m->http_requests);
	COUNTER(wal_commits, "domicile_wal_commits_total", "Group commits (one fsync each).");
	COUNTER(wal_records, "domicile_wal_records_total", "Records made durable.");
	COUNTER(wal_bytes, "domicile_wal_bytes_total", "Bytes made durable in the log.");
	COUNTER(flushes, "domicile_flushes_total", "Memtable flushes into blocks.");
	COUNTER(flush_failures, "domicile_flush_failures_total", "Flushes that failed (retried).");
	COUNTER(blocks_written, "domicile_blocks_written_total", "Blocks written by flushes.");
	COUNTER(block_bytes_written, "domicile_block_bytes_written_total",
		"Bytes of the blocks written by flushes.");
	SECONDS(fsync_seconds, "domicile_wal_fsync_seconds", "Duration of the log's fsyncs.");
	if (rc == DM_OK)
		rc = metrics_histogram(r, "domicile_puback_latency_seconds",
				       "From a PUBLISH's arrival to its PUBACK.", puback_buckets,
				       sizeof puback_buckets / sizeof *puback_buckets,
				       &m->puback_seconds);
	SECONDS(flush_seconds, "domicile_flush_seconds", "Duration of a flush.");
	if (rc == DM_OK)
		rc = metrics_histogram(r, "domicile_wal_records_per_commit",
				       "Records made durable by one fsync.", commit_buckets,
				       sizeof commit_buckets / sizeof *commit_buckets,
				       &m->batch_records_per_commit);
	if (rc == DM_OK)
		rc = metrics_histogram(r, "domicile_block_bytes", "Size of each block written.",
				       size_buckets, sizeof size_buckets / sizeof *size_buckets,
				       &m->block_bytes_hist);
	if (rc == DM_OK)
		rc = metrics_histogram(r, "domicile_block_samples", "Samples in each block written.",
				       size_buckets, sizeof size_buckets / sizeof *size_buckets,
				       &m->block_samples_hist);
	GAUGE(connections_open, "domicile_mqtt_connections_open", "MQTT connections open now.");
	GAUGE(connections_total, "domicile_mqtt_connections_accepted",
	      "MQTT connections accepted since start.");
	GAUGE(protocol_errors, "domicile_mqtt_protocol_errors",
	      "Connections closed for a malformed or forbidden packet since start.");
	GAUGE(tls_handshake_failures, "domicile_mqtt_tls_handshake_failures",
	      "TLS connections closed before their CONNECT since start (certificate refused, "
	      "no certificate, not TLS, too slow).");
	GAUGE(mqtt_bytes_in, "domicile_mqtt_bytes_received", "Bytes received from vehicles.");
	GAUGE(mqtt_bytes_out, "domicile_mqtt_bytes_sent", "Bytes sent to vehicles.");
	GAUGE(vehicles, "domicile_vehicles", "Vehicles registered at this site.");
	GAUGE(blocks, "domicile_store_blocks", "Blocks in the store.");
	GAUGE(block_bytes, "domicile_store_block_bytes", "Bytes of the blocks in the store.");
	GAUGE(stored_samples, "domicile_store_samples", "Samples in the store's blocks.");
	GAUGE(memtable_samples, "domicile_memtable_samples",
	      "Acknowledged samples not yet in blocks.");
	GAUGE(wal_pending_bytes, "domicile_wal_pending_bytes", "Bytes queued for the next commit.");
	GAUGE(wal_failed, "domicile_wal_failed",
	      "1 when the log is in its error state and the node no longer acknowledges.");
	GAUGE(compaction_pending, "domicile_store_compaction_pending",
	      "1 while blocks of an erased vehicle may still be in the store.");
#undef COUNTER
#undef GAUGE
#undef SECONDS
	if (rc)
		node_metrics_free(m);
	return rc;
}

void node_metrics_free(struct node_metrics *m)
{
	metrics_free(m->registry);
	memset(m, 0, sizeof *m);
}

void node_metrics_refused_connection(struct node_metrics *m, const char *reason)
{
	family_inc(&m->connections_refused, reason);
}

void node_metrics_refused_batch(struct node_metrics *m, const char *reason)
{
	family_inc(&m->batches_refused, reason);
}

void node_metrics_duplicate_batch(struct node_metrics *m)
{
	metrics_counter_inc(m->batches_duplicate);
}

void node_metrics_accepted_batch(struct node_metrics *m, size_t samples, size_t bytes)
{
	metrics_counter_inc(m->batches_accepted);
	metrics_counter_add(m->samples_accepted, samples);
	metrics_counter_add(m->bytes_accepted, bytes);
}

void node_metrics_puback_latency(struct node_metrics *m, uint64_t ns)
{
	metrics_histogram_observe_ns(m->puback_seconds, ns);
}

void node_metrics_commit(struct node_metrics *m, size_t records, size_t bytes, uint64_t fsync_ns)
{
	metrics_counter_inc(m->wal_commits);
	metrics_counter_add(m->wal_records, records);
	metrics_counter_add(m->wal_bytes, bytes);
	metrics_histogram_observe_ns(m->fsync_seconds, fsync_ns);
	metrics_histogram_observe(m->batch_records_per_commit, (double)records);
}

void node_metrics_flush(struct node_metrics *m, const struct engine_flush_report *report)
{
	if (report->status != DM_OK) {
		metrics_counter_inc(m->flush_failures);
		return;
	}
	metrics_counter_inc(m->flushes);
	metrics_counter_add(m->blocks_written, report->blocks);
	metrics_counter_add(m->block_bytes_written, report->block_bytes);
	metrics_histogram_observe_ns(m->flush_seconds, report->duration_ns);
}

void node_metrics_block(struct node_metrics *m, size_t samples, size_t bytes)
{
	metrics_histogram_observe(m->block_bytes_hist, (double)bytes);
	metrics_histogram_observe(m->block_samples_hist, (double)samples);
}

void node_metrics_http_request(struct node_metrics *m, const char *route)
{
	family_inc(&m->http_requests, route);
}

void node_metrics_render(struct node_metrics *m, const struct mqtt_server_stats *mqtt,
			 const struct engine_stats *store, struct dm_buf *out)
{
	metrics_gauge_set(m->connections_open, (int64_t)mqtt->connections_open);
	metrics_gauge_set(m->connections_total, (int64_t)mqtt->connections_total);
	metrics_gauge_set(m->protocol_errors, (int64_t)mqtt->protocol_errors);
	metrics_gauge_set(m->tls_handshake_failures, (int64_t)mqtt->tls_handshake_failures);
	metrics_gauge_set(m->mqtt_bytes_in, (int64_t)mqtt->bytes_in);
	metrics_gauge_set(m->mqtt_bytes_out, (int64_t)mqtt->bytes_out);
	metrics_gauge_set(m->vehicles, (int64_t)store->db.vehicles);
	metrics_gauge_set(m->blocks, (int64_t)store->db.blocks);
	metrics_gauge_set(m->block_bytes, (int64_t)store->db.block_bytes);
	metrics_gauge_set(m->stored_samples, (int64_t)store->db.samples);
	metrics_gauge_set(m->memtable_samples, (int64_t)store->memtable_samples);
	metrics_gauge_set(m->wal_pending_bytes, (int64_t)store->wal_pending_bytes);
	metrics_gauge_set(m->wal_failed, store->wal_failed);
	metrics_gauge_set(m->compaction_pending, store->compaction_pending);
	metrics_render(m->registry, out);
}
