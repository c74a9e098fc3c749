/*
 * test_audit_log.c — the node's audit log above its store: entries chained
 * by "prev", checkpoints every N entries and at close, and the bounded
 * appends that keep a flood of refusals from filling the disk: a burst per
 * kind and window, then one "audit.suppressing" entry that says counting
 * began, then one "audit.suppressed" entry with the count, made when the
 * kind's window has ended or at close.
 *
 * Each case opens a log in its own mkdtemp directory; the windows are short
 * (two seconds) and the cases wait past them, asserting on entries,
 * never on how long anything took.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/log.h"
#include "audit/store.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

/* Long enough for the appends a case makes inside one window even on a
 * slow disk; LONG_WINDOW_MS never ends within a case. */
#define WINDOW_MS 2000
#define LONG_WINDOW_MS 600000

struct fixture {
	char dir[64];
	struct event_base *base;
	struct audit_log *log;
};

static void open_log(struct fixture *f, unsigned burst, unsigned window_ms)
{
	struct audit_log_options options = {
		.data_dir = f->dir,
		.site = "cn-test-1",
		.checkpoint_entries = 1000,
		.checkpoint_seconds = 3600,
		.burst = burst,
		.window_ms = window_ms,
	};
	assert_int_equal(audit_log_open(f->base, &options, &f->log), DM_OK);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/domicile-test-audit-log.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->base = event_base_new();
	*state = f;
	return f->base ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	audit_log_close(f->log);
	event_base_free(f->base);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) != 0)
		;
}

/* A refused connection of this reason, named by a distinct pseudonym. */
static int refuse(struct audit_log *log, const char *reason, int n)
{
	char who[32], kind[48];
	snprintf(who, sizeof who, "vh-%s-%d", reason, n);
	snprintf(kind, sizeof kind, "mqtt.connect/%s", reason);
	json_t *params = json_pack("{s:s}", "reason", reason);
	struct audit_entry e = {
		.who_kind = "vehicle",
		.who = who,
		.action = "mqtt.connect",
		.params = params,
		.outcome = "refused",
		.status = 0x87,
	};
	int rc = audit_log_append_bounded(log, kind, &e);
	json_decref(params);
	return rc;
}

/* Entry i of the log, parsed (the caller decrefs). */
static json_t *entry_at(struct audit_log *log, uint64_t i)
{
	struct dm_buf bytes = {0};
	assert_int_equal(audit_store_entry(audit_log_store(log), i, &bytes), DM_OK);
	json_t *doc = json_loadb((const char *)bytes.data, bytes.len, 0, NULL);
	dm_buf_free(&bytes);
	assert_non_null(doc);
	return doc;
}

static const char *str(json_t *doc, const char *key)
{
	return json_string_value(json_object_get(doc, key));
}

static json_int_t param(json_t *doc, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(doc, "params"), key));
}

static uint64_t size_of(struct audit_log *log)
{
	return audit_store_size(audit_log_store(log));
}

/* Within one window: `burst` entries of a kind are appended, then one
 * entry says counting began, the rest are only counted; another kind has
 * its own burst. */
static void test_burst_then_counted(void **state)
{
	struct fixture *f = *state;
	open_log(f, 3, LONG_WINDOW_MS);
	for (int i = 0; i < 10; i++)
		assert_int_equal(refuse(f->log, "unknown_vehicle", i), DM_OK);
	for (int i = 0; i < 2; i++)
		assert_int_equal(refuse(f->log, "bad_secret", i), DM_OK);
	assert_int_equal(size_of(f->log), 6);
	json_t *third = entry_at(f->log, 2);
	assert_string_equal(json_string_value(json_object_get(json_object_get(third, "who"), "name")),
			    "vh-unknown_vehicle-2");
	json_decref(third);
	json_t *begins = entry_at(f->log, 3);
	assert_string_equal(str(begins, "action"), "audit.suppressing");
	assert_string_equal(str(begins, "object"), "mqtt.connect/unknown_vehicle");
	assert_int_equal(param(begins, "burst"), 3);
	assert_int_equal(param(begins, "window_ms"), LONG_WINDOW_MS);
	json_decref(begins);
	json_t *other = entry_at(f->log, 4);
	assert_string_equal(str(other, "action"), "mqtt.connect");
	json_decref(other);
}

/* The next entry of a kind after its window ended first records what the
 * window suppressed, then is appended itself. */
static void test_summary_when_window_ends(void **state)
{
	struct fixture *f = *state;
	open_log(f, 3, WINDOW_MS);
	for (int i = 0; i < 10; i++)
		refuse(f->log, "unknown_vehicle", i);
	assert_int_equal(size_of(f->log), 4);
	sleep_ms(WINDOW_MS + 100);
	assert_int_equal(refuse(f->log, "unknown_vehicle", 10), DM_OK);
	assert_int_equal(size_of(f->log), 6);
	json_t *summary = entry_at(f->log, 4);
	assert_string_equal(str(summary, "action"), "audit.suppressed");
	assert_string_equal(str(summary, "object"), "mqtt.connect/unknown_vehicle");
	assert_string_equal(json_string_value(json_object_get(json_object_get(summary, "who"), "kind")),
			    "node");
	assert_int_equal(param(summary, "count"), 7);
	assert_true(param(summary, "from") <= param(summary, "to"));
	assert_true(param(summary, "from") > 0);
	json_decref(summary);
	json_t *next = entry_at(f->log, 5);
	assert_string_equal(str(next, "action"), "mqtt.connect");
	json_decref(next);
	/* A window with nothing suppressed leaves no summary. */
	sleep_ms(WINDOW_MS + 100);
	refuse(f->log, "unknown_vehicle", 11);
	assert_int_equal(size_of(f->log), 7);
}

/* A timer of the window's length summarises ended windows even when no
 * entry of the kind comes again (checkpoints here are an hour apart). */
static void test_summary_from_timer(void **state)
{
	struct fixture *f = *state;
	struct audit_log_options options = {
		.data_dir = f->dir, .site = "cn-test-1", .checkpoint_seconds = 3600,
		.burst = 1, .window_ms = WINDOW_MS,
	};
	assert_int_equal(audit_log_open(f->base, &options, &f->log), DM_OK);
	for (int i = 0; i < 4; i++)
		refuse(f->log, "erased", i);
	assert_int_equal(size_of(f->log), 2);
	/* The loop runs until the timer made the summary (bounded: 10 s). */
	for (int waited = 0; size_of(f->log) < 3 && waited < 100; waited++) {
		struct timeval tick = {0, 100000};
		event_base_loopexit(f->base, &tick);
		event_base_dispatch(f->base);
	}
	assert_int_equal(size_of(f->log), 3);
	json_t *summary = entry_at(f->log, 2);
	assert_string_equal(str(summary, "action"), "audit.suppressed");
	assert_int_equal(param(summary, "count"), 3);
	json_decref(summary);
}

/* Close records every count still open, then signs a checkpoint that
 * covers it. */
static void test_summary_at_close(void **state)
{
	struct fixture *f = *state;
	open_log(f, 2, LONG_WINDOW_MS);
	for (int i = 0; i < 5; i++)
		refuse(f->log, "bad_secret", i);
	audit_log_close(f->log);
	f->log = NULL;
	open_log(f, 2, LONG_WINDOW_MS);
	assert_int_equal(size_of(f->log), 4);
	json_t *summary = entry_at(f->log, 3);
	assert_string_equal(str(summary, "action"), "audit.suppressed");
	assert_string_equal(str(summary, "object"), "mqtt.connect/bad_secret");
	assert_int_equal(param(summary, "count"), 3);
	/* It is chained like any other entry. */
	assert_non_null(str(summary, "prev"));
	json_decref(summary);
}

/* Past 15 kinds, the rest share one count, "other". */
static void test_kinds_overflow(void **state)
{
	struct fixture *f = *state;
	open_log(f, 1, LONG_WINDOW_MS);
	char reason[64];
	for (int k = 0; k < 20; k++) {
		snprintf(reason, sizeof reason, "reason_%02d", k);
		refuse(f->log, reason, 0);
		refuse(f->log, reason, 1);
	}
	/* 15 kinds of their own, one entry and one "suppressing" each;
	 * kinds 16 to 20 share one burst of 1, and one "suppressing". */
	assert_int_equal(size_of(f->log), 32);
	uint64_t before = size_of(f->log);
	for (int i = 0; i < 5; i++)
		refuse(f->log, "yet_another_reason", i);
	assert_int_equal(size_of(f->log), before); /* "other" spent its burst */
	audit_log_close(f->log);
	f->log = NULL;
	open_log(f, 1, LONG_WINDOW_MS);
	json_t *last = entry_at(f->log, size_of(f->log) - 1);
	assert_string_equal(str(last, "action"), "audit.suppressed");
	assert_string_equal(str(last, "object"), "other");
	assert_int_equal(param(last, "count"), 5 + 4 + 5);
	json_decref(last);
}

/* A kind name longer than the table holds is cut, and the cut name is one
 * kind: two names that differ only past the cut share one burst. */
static void test_long_kind_names_are_one_kind(void **state)
{
	struct fixture *f = *state;
	open_log(f, 1, LONG_WINDOW_MS);
	refuse(f->log, "a_reason_whose_name_is_longer_than_any_kind_can_hold_1", 0);
	refuse(f->log, "a_reason_whose_name_is_longer_than_any_kind_can_hold_2", 0);
	assert_int_equal(size_of(f->log), 2);
	json_t *begins = entry_at(f->log, 1);
	assert_string_equal(str(begins, "action"), "audit.suppressing");
	assert_int_equal(strlen(str(begins, "object")), 47);
	json_decref(begins);
}

int main(void)
{
	dm_log_set_level(DM_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_burst_then_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_summary_when_window_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_summary_from_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_summary_at_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kinds_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_kind_names_are_one_kind, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
