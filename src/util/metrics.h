/*
 * metrics.h — the node's Prometheus metrics: counters (optionally with one
 * label), gauges and histograms with fixed buckets, rendered in the text
 * exposition format 0.0.4 for the API's /metrics.
 *
 * Threads: registration (metrics_counter, metrics_gauge, ...) happens at
 * start-up, on one thread, before any other thread sees the registry; it is
 * not synchronised. After that, updates are lock-free (C11 atomics, relaxed:
 * each value is exact, the values of one scrape are not a snapshot) and may
 * come from any thread — the event loop, the writer, the flush thread —
 * while metrics_render runs on another.
 *
 * Ownership: the registry owns every metric and copies every string it is
 * given. Handles are borrowed, valid until metrics_free. Update functions
 * accept a NULL handle and do nothing, so a part can run without metrics
 * (in unit tests, say).
 */
#ifndef DM_METRICS_H
#define DM_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct dm_buf;
struct metrics;
struct metrics_counter;
struct metrics_gauge;
struct metrics_histogram;

/* Bucket bounds for latencies in seconds, 0.5 ms to 10 s. */
#define METRICS_SECONDS_BUCKET_COUNT 14
extern const double metrics_seconds_buckets[METRICS_SECONDS_BUCKET_COUNT];

/* An empty registry; free it with metrics_free. DM_OK or DM_ERR_NOMEM. */
int metrics_new(struct metrics **out);
/* Frees the registry and every metric in it; accepts NULL. */
void metrics_free(struct metrics *metrics);

/*
 * Registration. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and help must not
 * be empty. *out is NULL on failure, which leaves the registry unchanged.
 * Metrics render in the order they were registered.
 * Returns DM_OK; DM_ERR_INVALID for a bad name, label or bounds;
 * DM_ERR_EXISTS when the name (or, for a labeled counter, the name and label
 * value) is taken; DM_ERR_NOMEM.
 */
int metrics_counter(struct metrics *metrics, const char *name, const char *help,
		    struct metrics_counter **out);
/* One counter of the family `name` with label="value". The first call
 * creates the family; later calls add values and must repeat the same help
 * and label name (label matches [a-zA-Z_][a-zA-Z0-9_]*, not starting "__").
 * value may be any string; it is escaped when rendered. */
int metrics_counter_labeled(struct metrics *metrics, const char *name, const char *help,
			    const char *label, const char *value, struct metrics_counter **out);
int metrics_gauge(struct metrics *metrics, const char *name, const char *help,
		  struct metrics_gauge **out);
/* bounds: bound_count >= 1 finite upper bounds, strictly increasing,
 * copied; the +Inf bucket is added. A bucket counts the observations less
 * than or equal to its bound. */
int metrics_histogram(struct metrics *metrics, const char *name, const char *help,
		      const double *bounds, size_t bound_count, struct metrics_histogram **out);

/* Updates: lock-free, any thread, NULL handle ignored. */
void metrics_counter_inc(struct metrics_counter *counter);
void metrics_counter_add(struct metrics_counter *counter, uint64_t amount);
void metrics_gauge_set(struct metrics_gauge *gauge, int64_t value);
void metrics_gauge_add(struct metrics_gauge *gauge, int64_t delta); /* delta may be negative */
/* NaN is ignored: it would turn the sum into NaN for the life of the node. */
void metrics_histogram_observe(struct metrics_histogram *histogram, double value);
/* Observes a duration measured with dm_mono_ns, in seconds. */
void metrics_histogram_observe_ns(struct metrics_histogram *histogram, uint64_t ns);

/* Current values, for tests and for parts that act on their own metrics. */
uint64_t metrics_counter_value(const struct metrics_counter *counter);
int64_t metrics_gauge_value(const struct metrics_gauge *gauge);

/* Appends the text exposition format 0.0.4 of every metric to out (served
 * as "text/plain; version=0.0.4"). A histogram's _count always equals its
 * +Inf bucket. Returns DM_OK, or DM_ERR_NOMEM with out as it was. */
int metrics_render(struct metrics *metrics, struct dm_buf *out);

#endif
