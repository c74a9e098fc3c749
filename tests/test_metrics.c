/*
 * test_metrics.c — the metrics registry: exact exposition text, escaping,
 * bucket edges, registration errors, allocation failure, and concurrent
 * updates that must all be counted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/metrics.h"

/* Renders into a fresh buffer and returns it NUL-terminated; the caller
 * frees it with dm_buf_free. */
static struct dm_buf render(struct metrics *metrics)
{
	struct dm_buf out = {0};
	assert_int_equal(metrics_render(metrics, &out), DM_OK);
	assert_int_equal(dm_buf_append_u8(&out, 0), DM_OK);
	return out;
}

static void expect_render(struct metrics *metrics, const char *expected)
{
	struct dm_buf out = render(metrics);
	assert_string_equal((const char *)out.data, expected);
	dm_buf_free(&out);
}

static void test_metrics_renders_a_small_registry_exactly(void **state)
{
	struct metrics *metrics;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	struct metrics_counter *batches, *zone, *future;
	struct metrics_gauge *sessions;
	struct metrics_histogram *fsync;
	const double bounds[] = {0.005, 0.5, 1};
	assert_int_equal(metrics_counter(metrics, "domicile_batches_total", "Batches stored.",
					 &batches),
			 DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "domicile_samples_dropped_total",
						 "Samples dropped, by reason.", "reason", "zone",
						 &zone),
			 DM_OK);
	assert_int_equal(metrics_gauge(metrics, "domicile_sessions", "Open MQTT sessions.",
				       &sessions),
			 DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "domicile_samples_dropped_total",
						 "Samples dropped, by reason.", "reason", "future",
						 &future),
			 DM_OK);
	assert_int_equal(metrics_histogram(metrics, "domicile_wal_fsync_seconds",
					   "Time of one WAL fsync.", bounds, 3, &fsync),
			 DM_OK);

	metrics_counter_add(batches, 41);
	metrics_counter_inc(batches);
	metrics_counter_add(zone, 7);
	metrics_gauge_set(sessions, 5);
	metrics_gauge_add(sessions, -8);
	metrics_histogram_observe(fsync, 0.001);
	metrics_histogram_observe(fsync, 0.005); /* on a bound: counted in it */
	metrics_histogram_observe(fsync, 0.25);
	metrics_histogram_observe(fsync, 3);

	expect_render(metrics, "# HELP domicile_batches_total Batches stored.\n"
			       "# TYPE domicile_batches_total counter\n"
			       "domicile_batches_total 42\n"
			       "# HELP domicile_samples_dropped_total Samples dropped, by reason.\n"
			       "# TYPE domicile_samples_dropped_total counter\n"
			       "domicile_samples_dropped_total{reason=\"zone\"} 7\n"
			       "domicile_samples_dropped_total{reason=\"future\"} 0\n"
			       "# HELP domicile_sessions Open MQTT sessions.\n"
			       "# TYPE domicile_sessions gauge\n"
			       "domicile_sessions -3\n"
			       "# HELP domicile_wal_fsync_seconds Time of one WAL fsync.\n"
			       "# TYPE domicile_wal_fsync_seconds histogram\n"
			       "domicile_wal_fsync_seconds_bucket{le=\"0.005\"} 2\n"
			       "domicile_wal_fsync_seconds_bucket{le=\"0.5\"} 3\n"
			       "domicile_wal_fsync_seconds_bucket{le=\"1\"} 3\n"
			       "domicile_wal_fsync_seconds_bucket{le=\"+Inf\"} 4\n"
			       /* 0.001 + 0.005 + 0.25 + 3 in doubles, shortest form */
			       "domicile_wal_fsync_seconds_sum 3.2560000000000002\n"
			       "domicile_wal_fsync_seconds_count 4\n");
	assert_int_equal(metrics_counter_value(batches), 42);
	assert_int_equal(metrics_gauge_value(sessions), -3);
	metrics_free(metrics);
}

static void test_metrics_empty_registry_renders_nothing(void **state)
{
	struct metrics *metrics;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	struct dm_buf out = {0};
	assert_int_equal(metrics_render(metrics, &out), DM_OK);
	assert_int_equal(out.len, 0);
	dm_buf_free(&out);
	metrics_free(metrics);
	metrics_free(NULL);
}

static void test_metrics_render_appends_to_what_is_there(void **state)
{
	struct metrics *metrics;
	struct metrics_gauge *gauge;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_gauge(metrics, "g", "G.", &gauge), DM_OK);
	struct dm_buf out = {0};
	assert_int_equal(dm_buf_append(&out, "x\n", 2), DM_OK);
	assert_int_equal(metrics_render(metrics, &out), DM_OK);
	assert_int_equal(dm_buf_append_u8(&out, 0), DM_OK);
	assert_string_equal((const char *)out.data, "x\n# HELP g G.\n# TYPE g gauge\ng 0\n");
	dm_buf_free(&out);
	metrics_free(metrics);
}

static void test_metrics_escapes_help_and_label_values(void **state)
{
	struct metrics *metrics;
	struct metrics_counter *counter;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "c_total", "Line one\nback\\slash \"q\"",
						 "path", "C:\\dir\n\"quoted\"", &counter),
			 DM_OK);
	expect_render(metrics, "# HELP c_total Line one\\nback\\\\slash \"q\"\n"
			       "# TYPE c_total counter\n"
			       "c_total{path=\"C:\\\\dir\\n\\\"quoted\\\"\"} 0\n");
	metrics_free(metrics);
}

static void test_metrics_label_value_may_be_empty_or_utf8(void **state)
{
	struct metrics *metrics;
	struct metrics_counter *empty, *utf8;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "c", "C.", "site", "", &empty), DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "c", "C.", "site", "上海", &utf8),
			 DM_OK);
	expect_render(metrics,
		      "# HELP c C.\n# TYPE c counter\nc{site=\"\"} 0\nc{site=\"上海\"} 0\n");
	metrics_free(metrics);
}

static void test_metrics_histogram_bucket_edges(void **state)
{
	struct metrics *metrics;
	struct metrics_histogram *histogram;
	const double bounds[] = {1, 2};
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", bounds, 2, &histogram), DM_OK);
	/* Just below, on and just above each bound; -Inf; +Inf; NaN ignored. */
	metrics_histogram_observe(histogram, nextafter(1, 0));
	metrics_histogram_observe(histogram, 1);
	metrics_histogram_observe(histogram, nextafter(1, 2));
	metrics_histogram_observe(histogram, 2);
	metrics_histogram_observe(histogram, nextafter(2, 3));
	metrics_histogram_observe(histogram, -INFINITY);
	metrics_histogram_observe(histogram, NAN);
	expect_render(metrics, "# HELP h H.\n# TYPE h histogram\n"
			       "h_bucket{le=\"1\"} 3\n"
			       "h_bucket{le=\"2\"} 5\n"
			       "h_bucket{le=\"+Inf\"} 6\n"
			       "h_sum -Inf\n"
			       "h_count 6\n");
	metrics_histogram_observe(histogram, INFINITY); /* -Inf + Inf */
	struct dm_buf out = render(metrics);
	assert_non_null(strstr((const char *)out.data, "h_sum NaN\nh_count 7\n"));
	dm_buf_free(&out);
	metrics_free(metrics);
}

static void test_metrics_seconds_buckets_render_in_shortest_form(void **state)
{
	struct metrics *metrics;
	struct metrics_histogram *histogram;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_histogram(metrics, "latency_seconds", "Latency.",
					   metrics_seconds_buckets, METRICS_SECONDS_BUCKET_COUNT,
					   &histogram),
			 DM_OK);
	metrics_histogram_observe_ns(histogram, 1500000);  /* 1.5 ms */
	metrics_histogram_observe_ns(histogram, 100000000); /* 100 ms, on a bound */
	expect_render(metrics, "# HELP latency_seconds Latency.\n"
			       "# TYPE latency_seconds histogram\n"
			       "latency_seconds_bucket{le=\"0.0005\"} 0\n"
			       "latency_seconds_bucket{le=\"0.001\"} 0\n"
			       "latency_seconds_bucket{le=\"0.0025\"} 1\n"
			       "latency_seconds_bucket{le=\"0.005\"} 1\n"
			       "latency_seconds_bucket{le=\"0.01\"} 1\n"
			       "latency_seconds_bucket{le=\"0.025\"} 1\n"
			       "latency_seconds_bucket{le=\"0.05\"} 1\n"
			       "latency_seconds_bucket{le=\"0.1\"} 2\n"
			       "latency_seconds_bucket{le=\"0.25\"} 2\n"
			       "latency_seconds_bucket{le=\"0.5\"} 2\n"
			       "latency_seconds_bucket{le=\"1\"} 2\n"
			       "latency_seconds_bucket{le=\"2.5\"} 2\n"
			       "latency_seconds_bucket{le=\"5\"} 2\n"
			       "latency_seconds_bucket{le=\"10\"} 2\n"
			       "latency_seconds_bucket{le=\"+Inf\"} 2\n"
			       "latency_seconds_sum 0.1015\n"
			       "latency_seconds_count 2\n");
	metrics_free(metrics);
}

static void test_metrics_histogram_with_one_bound(void **state)
{
	struct metrics *metrics;
	struct metrics_histogram *histogram;
	const double bound = 1e-05;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", &bound, 1, &histogram), DM_OK);
	expect_render(metrics, "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1e-05\"} 0\n"
			       "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	metrics_free(metrics);
}

static void test_metrics_writes_numbers_as_prometheus_clients_do(void **state)
{
	struct metrics *metrics;
	struct metrics_histogram *histogram;
	/* Exponent -5 and 6 switch to exponent form, -4 and 5 do not. */
	const double bounds[] = {-2.5, 0, 1e-05, 0.0001, 0.1 + 0.2, 123456, 1e6, 1.5e300};
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", bounds, 8, &histogram), DM_OK);
	metrics_histogram_observe(histogram, -0.5);
	expect_render(metrics, "# HELP h H.\n# TYPE h histogram\n"
			       "h_bucket{le=\"-2.5\"} 0\n"
			       "h_bucket{le=\"0\"} 1\n"
			       "h_bucket{le=\"1e-05\"} 1\n"
			       "h_bucket{le=\"0.0001\"} 1\n"
			       "h_bucket{le=\"0.30000000000000004\"} 1\n"
			       "h_bucket{le=\"123456\"} 1\n"
			       "h_bucket{le=\"1e+06\"} 1\n"
			       "h_bucket{le=\"1.5e+300\"} 1\n"
			       "h_bucket{le=\"+Inf\"} 1\n"
			       "h_sum -0.5\n"
			       "h_count 1\n");
	metrics_free(metrics);
}

static void test_metrics_refuses_bad_histogram_bounds(void **state)
{
	struct metrics *metrics;
	struct metrics_histogram *histogram = (void *)1;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	const double equal[] = {1, 1};
	const double falling[] = {2, 1};
	const double with_nan[] = {1, NAN};
	const double with_inf[] = {1, INFINITY};
	const double rising[] = {-1, 0, nextafter(0, 1)};
	assert_int_equal(metrics_histogram(metrics, "h", "H.", equal, 0, &histogram),
			 DM_ERR_INVALID);
	assert_null(histogram);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", NULL, 1, &histogram),
			 DM_ERR_INVALID);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", equal, 2, &histogram),
			 DM_ERR_INVALID);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", falling, 2, &histogram),
			 DM_ERR_INVALID);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", with_nan, 2, &histogram),
			 DM_ERR_INVALID);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", with_inf, 2, &histogram),
			 DM_ERR_INVALID);
	assert_int_equal(metrics_histogram(metrics, "h", "H.", rising, 3, &histogram), DM_OK);
	metrics_free(metrics);
}

static void test_metrics_checks_names_and_labels(void **state)
{
	struct metrics *metrics;
	struct metrics_counter *counter = (void *)1;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	const char *bad_names[] = {"", "1abc", "a-b", "a b", "a.b", "é", NULL};
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		assert_int_equal(metrics_counter(metrics, bad_names[i], "H.", &counter),
				 DM_ERR_INVALID);
		assert_null(counter);
	}
	const char *good_names[] = {"a", "_", ":", "A:b_9", "ns:sub_total"};
	for (size_t i = 0; i < sizeof good_names / sizeof good_names[0]; i++)
		assert_int_equal(metrics_counter(metrics, good_names[i], "H.", &counter), DM_OK);
	assert_int_equal(metrics_counter(metrics, "no_help", "", &counter), DM_ERR_INVALID);
	assert_int_equal(metrics_counter(metrics, "no_help", NULL, &counter), DM_ERR_INVALID);

	const char *bad_labels[] = {"", "__x", "1x", "a:b", "a-b", NULL};
	for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++)
		assert_int_equal(metrics_counter_labeled(metrics, "l", "L.", bad_labels[i], "v",
							 &counter),
				 DM_ERR_INVALID);
	assert_int_equal(metrics_counter_labeled(metrics, "l", "L.", "_x", "v", &counter), DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "l2", "L.", "x", NULL, &counter),
			 DM_ERR_INVALID);
	metrics_free(metrics);
}

static void test_metrics_refuses_taken_names(void **state)
{
	struct metrics *metrics;
	struct metrics_counter *counter;
	struct metrics_gauge *gauge;
	struct metrics_histogram *histogram;
	const double bound = 1;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_counter(metrics, "c", "C.", &counter), DM_OK);
	assert_int_equal(metrics_counter(metrics, "c", "C.", &counter), DM_ERR_EXISTS);
	assert_null(counter);
	assert_int_equal(metrics_gauge(metrics, "c", "C.", &gauge), DM_ERR_EXISTS);
	assert_int_equal(metrics_histogram(metrics, "c", "C.", &bound, 1, &histogram),
			 DM_ERR_EXISTS);
	assert_int_equal(metrics_counter_labeled(metrics, "c", "C.", "x", "1", &counter),
			 DM_ERR_EXISTS);

	assert_int_equal(metrics_counter_labeled(metrics, "l", "L.", "x", "1", &counter), DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "l", "L.", "x", "1", &counter),
			 DM_ERR_EXISTS);
	assert_int_equal(metrics_counter_labeled(metrics, "l", "L.", "y", "2", &counter),
			 DM_ERR_EXISTS);
	assert_int_equal(metrics_counter_labeled(metrics, "l", "Other.", "x", "2", &counter),
			 DM_ERR_INVALID);
	assert_int_equal(metrics_counter(metrics, "l", "L.", &counter), DM_ERR_EXISTS);
	assert_int_equal(metrics_gauge(metrics, "g", "G.", &gauge), DM_OK);
	assert_int_equal(metrics_counter_labeled(metrics, "g", "G.", "x", "1", &counter),
			 DM_ERR_EXISTS);
	/* The refusals left nothing behind. */
	expect_render(metrics, "# HELP c C.\n# TYPE c counter\nc 0\n"
			       "# HELP l L.\n# TYPE l counter\nl{x=\"1\"} 0\n"
			       "# HELP g G.\n# TYPE g gauge\ng 0\n");
	metrics_free(metrics);
}

static void test_metrics_updates_through_null_handles_do_nothing(void **state)
{
	metrics_counter_inc(NULL);
	metrics_counter_add(NULL, 5);
	metrics_gauge_set(NULL, 1);
	metrics_gauge_add(NULL, 1);
	metrics_histogram_observe(NULL, 1);
	metrics_histogram_observe_ns(NULL, 1);
	assert_int_equal(metrics_counter_value(NULL), 0);
	assert_int_equal(metrics_gauge_value(NULL), 0);
}

static void test_metrics_counter_wraps_at_2_to_the_64(void **state)
{
	struct metrics *metrics;
	struct metrics_counter *counter;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(metrics_counter(metrics, "c", "C.", &counter), DM_OK);
	metrics_counter_add(counter, UINT64_MAX - 1);
	expect_render(metrics, "# HELP c C.\n# TYPE c counter\nc 18446744073709551614\n");
	metrics_counter_inc(counter);
	assert_int_equal(metrics_counter_value(counter), UINT64_MAX);
	metrics_counter_inc(counter);
	assert_int_equal(metrics_counter_value(counter), 0);
	metrics_free(metrics);
}

/* Registers one of each kind; returns the first failure. */
static int register_all(struct metrics *metrics)
{
	struct metrics_counter *counter;
	struct metrics_gauge *gauge;
	struct metrics_histogram *histogram;
	int rc = metrics_counter(metrics, "c", "C.", &counter);
	if (rc == DM_OK)
		rc = metrics_counter_labeled(metrics, "l", "L.", "x", "1", &counter);
	if (rc == DM_OK)
		rc = metrics_counter_labeled(metrics, "l", "L.", "x", "2", &counter);
	if (rc == DM_OK)
		rc = metrics_gauge(metrics, "g", "G.", &gauge);
	if (rc == DM_OK)
		rc = metrics_histogram(metrics, "h", "H.", metrics_seconds_buckets,
				       METRICS_SECONDS_BUCKET_COUNT, &histogram);
	return rc;
}

static void test_metrics_registration_survives_every_allocation_failure(void **state)
{
	/* Raise the allocation budget one at a time until everything registers;
	 * every shorter budget must fail cleanly (LeakSanitizer checks that
	 * nothing is lost) and leave a registry that still renders. */
	for (long budget = 0;; budget++) {
		struct metrics *metrics = NULL;
		dm_alloc_fail_after(budget);
		int rc = metrics_new(&metrics);
		if (rc == DM_OK)
			rc = register_all(metrics);
		dm_alloc_fail_after(-1);
		if (metrics) {
			struct dm_buf out = render(metrics);
			dm_buf_free(&out);
		}
		metrics_free(metrics);
		if (rc == DM_OK)
			break;
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_true(budget < 100);
	}
}

static void test_metrics_render_failure_leaves_the_buffer_as_it_was(void **state)
{
	struct metrics *metrics;
	assert_int_equal(metrics_new(&metrics), DM_OK);
	assert_int_equal(register_all(metrics), DM_OK);
	struct dm_buf out = {0};
	assert_int_equal(dm_buf_append(&out, "keep", 4), DM_OK);
	dm_alloc_fail_after(0);
	int rc = metrics_render(metrics, &out);
	dm_alloc_fail_after(-1);
	assert_int_equal(rc, DM_ERR_NOMEM);
	assert_int_equal(out.len, 4);
	assert_memory_equal(out.data, "keep", 4);
	dm_buf_free(&out);
	metrics_free(metrics);
}

#define THREADS 8
#define ROUNDS 100000

struct shared {
	struct metrics *metrics;
	struct metrics_counter *counter, *labeled;
	struct metrics_gauge *gauge;
	struct metrics_histogram *histogram;
	atomic_int running;
	atomic_int scrapes, bad_scrapes;
};

static void *hammer(void *arg)
{
	struct shared *shared = arg;
	for (int i = 0; i < ROUNDS; i++) {
		metrics_counter_inc(shared->counter);
		metrics_counter_add(shared->labeled, 2);
		metrics_gauge_add(shared->gauge, i % 2 ? -1 : 3);
		/* 0.25 and 4 are exact in binary, so the sum must be exact too. */
		metrics_histogram_observe(shared->histogram, i % 2 ? 0.25 : 4);
	}
	return NULL;
}

/* Scrapes while the others update: _count must equal +Inf every time.
 * cmocka's asserts must not run off the main thread, so mismatches are
 * counted and checked after the join. */
static void *scrape(void *arg)
{
	struct shared *shared = arg;
	const char *inf_key = "h_bucket{le=\"+Inf\"} ";
	while (atomic_load(&shared->running)) {
		struct dm_buf out = {0};
		if (metrics_render(shared->metrics, &out) != DM_OK ||
		    dm_buf_append_u8(&out, 0) != DM_OK) {
			atomic_fetch_add(&shared->bad_scrapes, 1);
			dm_buf_free(&out);
			continue;
		}
		const char *text = (const char *)out.data;
		const char *inf = strstr(text, inf_key);
		const char *count = strstr(text, "h_count ");
		if (!inf || !count ||
		    strtoull(inf + strlen(inf_key), NULL, 10) !=
			    strtoull(count + strlen("h_count "), NULL, 10))
			atomic_fetch_add(&shared->bad_scrapes, 1);
		atomic_fetch_add(&shared->scrapes, 1);
		dm_buf_free(&out);
	}
	return NULL;
}

static void test_metrics_concurrent_updates_from_several_threads_all_count(void **state)
{
	struct shared shared = {0};
	const double bounds[] = {0.5, 1};
	assert_int_equal(metrics_new(&shared.metrics), DM_OK);
	assert_int_equal(metrics_counter(shared.metrics, "c", "C.", &shared.counter), DM_OK);
	assert_int_equal(metrics_counter_labeled(shared.metrics, "l", "L.", "x", "1",
						 &shared.labeled),
			 DM_OK);
	assert_int_equal(metrics_gauge(shared.metrics, "g", "G.", &shared.gauge), DM_OK);
	assert_int_equal(metrics_histogram(shared.metrics, "h", "H.", bounds, 2, &shared.histogram),
			 DM_OK);
	atomic_store(&shared.running, 1);
	pthread_t scraper, workers[THREADS];
	assert_int_equal(pthread_create(&scraper, NULL, scrape, &shared), 0);
	for (int t = 0; t < THREADS; t++)
		assert_int_equal(pthread_create(&workers[t], NULL, hammer, &shared), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(workers[t], NULL);
	atomic_store(&shared.running, 0);
	pthread_join(scraper, NULL);
	assert_true(atomic_load(&shared.scrapes) > 0);
	assert_int_equal(atomic_load(&shared.bad_scrapes), 0);

	assert_int_equal(metrics_counter_value(shared.counter), THREADS * ROUNDS);
	assert_int_equal(metrics_counter_value(shared.labeled), 2 * THREADS * ROUNDS);
	assert_int_equal(metrics_gauge_value(shared.gauge), THREADS * ROUNDS);
	/* Half the observations are 0.25 (le 0.5), half 4 (+Inf):
	 * sum = 8 * 50000 * 4.25 = 1700000, written 1.7e+06 as Go writes it. */
	expect_render(shared.metrics,
		      "# HELP c C.\n# TYPE c counter\nc 800000\n"
		      "# HELP l L.\n# TYPE l counter\nl{x=\"1\"} 1600000\n"
		      "# HELP g G.\n# TYPE g gauge\ng 800000\n"
		      "# HELP h H.\n# TYPE h histogram\n"
		      "h_bucket{le=\"0.5\"} 400000\nh_bucket{le=\"1\"} 400000\n"
		      "h_bucket{le=\"+Inf\"} 800000\nh_sum 1.7e+06\nh_count 800000\n");
	metrics_free(shared.metrics);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_renders_a_small_registry_exactly),
		cmocka_unit_test(test_metrics_empty_registry_renders_nothing),
		cmocka_unit_test(test_metrics_render_appends_to_what_is_there),
		cmocka_unit_test(test_metrics_escapes_help_and_label_values),
		cmocka_unit_test(test_metrics_label_value_may_be_empty_or_utf8),
		cmocka_unit_test(test_metrics_histogram_bucket_edges),
		cmocka_unit_test(test_metrics_seconds_buckets_render_in_shortest_form),
		cmocka_unit_test(test_metrics_histogram_with_one_bound),
		cmocka_unit_test(test_metrics_writes_numbers_as_prometheus_clients_do),
		cmocka_unit_test(test_metrics_refuses_bad_histogram_bounds),
		cmocka_unit_test(test_metrics_checks_names_and_labels),
		cmocka_unit_test(test_metrics_refuses_taken_names),
		cmocka_unit_test(test_metrics_updates_through_null_handles_do_nothing),
		cmocka_unit_test(test_metrics_counter_wraps_at_2_to_the_64),
		cmocka_unit_test(test_metrics_registration_survives_every_allocation_failure),
		cmocka_unit_test(test_metrics_render_failure_leaves_the_buffer_as_it_was),
		cmocka_unit_test(test_metrics_concurrent_updates_from_several_threads_all_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
