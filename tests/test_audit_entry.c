/*
 * test_audit_entry.c — the canonical encoding of audit entries: fixed
 * bytes for a fixed entry, whatever order it was built in, and refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "audit/entry.h"
#include "util/err.h"

static void expect_bytes(const struct audit_entry *e, const char *want)
{
	struct dm_buf out = {0};
	assert_int_equal(audit_entry_encode(e, &out), DM_OK);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	dm_buf_free(&out);
}

static void test_entry_encodes_to_fixed_bytes_in_key_order(void **state)
{
	json_t *params = json_pack("{s:s, s:s, s:I}", "to", "2000", "signal", "Vehicle.Speed",
				   "limit", (json_int_t)10);
	struct audit_entry e = {
		.index = 41,
		.time_ms = 1732400000123,
		.site = "cn-shanghai-1",
		.request = "9f1c",
		.who_kind = "principal",
		.who = "li",
		.role = "owner",
		.action = "vehicle.samples",
		.object = "LSVAU218XN2183294",
		.params = params,
		.outcome = "ok",
		.status = 200,
		.prev = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	};
	expect_bytes(&e, "{\"action\":\"vehicle.samples\",\"index\":41,\"object\":"
			 "\"LSVAU218XN2183294\",\"outcome\":\"ok\",\"params\":{\"limit\":10,"
			 "\"signal\":\"Vehicle.Speed\",\"to\":\"2000\"},"
			 "\"prev\":\"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"request\":\"9f1c\","
			 "\"site\":\"cn-shanghai-1\",\"status\":200,\"time\":1732400000123,\"v\":1,"
			 "\"who\":{\"kind\":\"principal\",\"name\":\"li\",\"role\":\"owner\"}}");
	/* The same parameters added in another order give the same bytes. */
	json_t *again = json_object();
	json_object_set_new(again, "limit", json_integer(10));
	json_object_set_new(again, "signal", json_string("Vehicle.Speed"));
	json_object_set_new(again, "to", json_string("2000"));
	struct dm_buf a = {0}, b = {0};
	assert_int_equal(audit_entry_encode(&e, &a), DM_OK);
	e.params = again;
	assert_int_equal(audit_entry_encode(&e, &b), DM_OK);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	dm_buf_free(&a);
	dm_buf_free(&b);
	json_decref(params);
	json_decref(again);
}

static void test_entry_leaves_out_what_is_not_set_and_escapes_non_ascii(void **state)
{
	struct audit_entry e = {
		.index = 0,
		.time_ms = 5,
		.who_kind = "node",
		.action = "node.start",
		.object = "caf\xc3\xa9",
		.outcome = "ok",
	};
	expect_bytes(&e, "{\"action\":\"node.start\",\"index\":0,\"object\":\"caf\\u00E9\","
			 "\"outcome\":\"ok\",\"time\":5,\"v\":1,\"who\":{\"kind\":\"node\"}}");
}

static void test_entry_refuses_what_has_no_single_spelling_or_is_incomplete(void **state)
{
	struct dm_buf out = {0};
	struct audit_entry e = {.who_kind = "node", .action = "node.start", .outcome = "ok"};
	json_t *floats = json_pack("{s:f}", "speed", 72.5);
	e.params = floats;
	assert_int_equal(audit_entry_encode(&e, &out), DM_ERR_INVALID);
	json_t *nested = json_pack("{s:{s:s}}", "a", "b", "c");
	e.params = nested;
	assert_int_equal(audit_entry_encode(&e, &out), DM_ERR_INVALID);
	e.params = NULL;
	e.object = "\xff\xfe";
	assert_int_equal(audit_entry_encode(&e, &out), DM_ERR_INVALID);
	e.object = NULL;
	e.prev = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; /* the first entry has none */
	assert_int_equal(audit_entry_encode(&e, &out), DM_ERR_INVALID);
	e.index = 1;
	assert_int_equal(audit_entry_encode(&e, &out), DM_OK);
	dm_buf_free(&out);
	e.prev = NULL;
	e.action = NULL;
	assert_int_equal(audit_entry_encode(&e, &out), DM_ERR_INVALID);
	assert_int_equal(out.len, 0);
	json_decref(floats);
	json_decref(nested);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_encodes_to_fixed_bytes_in_key_order),
		cmocka_unit_test(test_entry_leaves_out_what_is_not_set_and_escapes_non_ascii),
		cmocka_unit_test(test_entry_refuses_what_has_no_single_spelling_or_is_incomplete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
