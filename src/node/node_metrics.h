/*
 * node_metrics.h — what the node counts and how GET /metrics shows it.
 *
 * The node's own counters and histograms (batches and samples accepted and
 * refused by reason, connections refused by reason, HTTP requests by route,
 * fsync, PUBACK and flush latency, blocks written) are registered here at
 * start; gauges that other parts already know (open connections, what the
 * store holds) are read from them at render time. Updates may come from the
 * loop, the log writer and the flush thread (util/metrics is lock-free).
 * Reasons and routes are fixed lists: an unknown one is counted as "other".
 */
#ifndef DM_NODE_METRICS_H
#define DM_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt/server.h"
#include "store/engine.h"
#include "util/buf.h"

#define NODE_METRICS_MAX_LABELS 16

struct metrics;
struct metrics_counter;
struct metrics_gauge;
struct metrics_histogram;

/* A labeled counter family whose label values are all known at start. */
struct node_metrics_family {
	const char *const *values; /* NULL-terminated, the last is "other" */
	struct metrics_counter *counters[NODE_METRICS_MAX_LABELS];
};

struct node_metrics {
	struct metrics *registry;
	struct metrics_counter *batches_accepted, *samples_accepted, *batches_duplicate;
	struct metrics_counter *bytes_accepted;
	struct node_metrics_family batches_refused, connections_refused, http_requests;
	struct metrics_counter *wal_commits, *wal_records, *wal_bytes;
	struct metrics_counter *flushes, *flush_failures, *blocks_written, *block_bytes_written;
	struct metrics_histogram *fsync_seconds, *puback_seconds, *flush_seconds;
	struct metrics_histogram *batch_records_per_commit;
	struct metrics_histogram *block_bytes_hist, *block_samples_hist;
	struct metrics_gauge *connections_open, *connections_total, *mqtt_bytes_in,
		*mqtt_bytes_out, *protocol_errors, *tls_handshake_failures, *vehicles, *blocks, *block_bytes,
		*stored_samples, *memtable_samples, *wal_pending_bytes, *wal_failed,
		*compaction_pending;
};

int node_metrics_init(struct node_metrics *m);
void node_metrics_free(struct node_metrics *m);

void node_metrics_refused_connection(struct node_metrics *m, const char *reason);
void node_metrics_refused_batch(struct node_metrics *m, const char *reason);
void node_metrics_duplicate_batch(struct node_metrics *m);
void node_metrics_accepted_batch(struct node_metrics *m, size_t samples, size_t bytes);
void node_metrics_puback_latency(struct node_metrics *m, uint64_t ns);
void node_metrics_commit(struct node_metrics *m, size_t records, size_t bytes, uint64_t fsync_ns);
void node_metrics_flush(struct node_metrics *m, const struct engine_flush_report *report);
void node_metrics_block(struct node_metrics *m, size_t samples, size_t bytes);
void node_metrics_http_request(struct node_metrics *m, const char *route);

/* The Prometheus text of everything, appended to out. */
void node_metrics_render(struct node_metrics *m, const struct mqtt_server_stats *mqtt,
			 const struct engine_stats *store, struct dm_buf *out);

#endif
