/*
 * test_json_batch.c — the batch's JSON reader on its own: every escape,
 * surrogate pairs and lone surrogates, invalid UTF-8, numbers at their edges,
 * whitespace, duplicate keys, nesting at limit-1, limit and limit+1 (and far
 * beyond, which must not use the stack), trailing bytes, truncation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/json_batch.h"
#include "util/alloc.h"
#include "util/err.h"

/* Bump memory for decoded strings, reset per read. */
static max_align_t pool[1 << 14];
static size_t pool_used;

static void *pool_alloc(void *ctx, size_t size)
{
	size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t);
	if (size > sizeof pool / sizeof pool[0] - pool_used)
		return NULL;
	void *at = &pool[pool_used];
	pool_used += size;
	return at;
}

static struct json_batch_reader *reader;

static int setup(void **state)
{
	return json_batch_reader_new(4, pool_alloc, NULL, &reader);
}

static int teardown(void **state)
{
	json_batch_reader_free(reader);
	return 0;
}

static int read_len(const char *text, size_t len, struct json_batch *doc,
                    struct json_batch_error *error)
{
	pool_used = 0;
	return json_batch_read(reader, (const uint8_t *)text, len, doc, error);
}

static int read_text(const char *text, struct json_batch *doc, struct json_batch_error *error)
{
	return read_len(text, strlen(text), doc, error);
}

/* Reads {"seq":1,"samples":[{"ts":1,"signal":"s","value":VALUE}]} and
 * returns the value's place. */
static struct json_batch_scalar value_of(const char *value)
{
	char text[512];
	snprintf(text, sizeof text,
	         "{\"seq\":1,\"samples\":[{\"ts\":1,\"signal\":\"s\",\"value\":%s}]}", value);
	struct json_batch doc;
	struct json_batch_error error;
	int rc = read_text(text, &doc, &error);
	if (rc)
		fail_msg("%s: %s, expected %s", value, error.problem, error.expected);
	assert_int_equal(doc.count, 1);
	return doc.items[0].value;
}

/* The value is refused with `problem`. */
static void refused(const char *value, const char *problem)
{
	char text[512];
	snprintf(text, sizeof text,
	         "{\"seq\":1,\"samples\":[{\"ts\":1,\"signal\":\"s\",\"value\":%s}]}", value);
	struct json_batch doc;
	struct json_batch_error error;
	int rc = read_text(text, &doc, &error);
	if (rc != DM_ERR_MALFORMED || strcmp(error.problem, problem) != 0)
		fail_msg("%s: %d %s", value, rc, rc ? error.problem : "accepted");
	assert_int_equal(doc.count, 0);
	assert_null(doc.items);
}

static void string_is(const char *value, const char *want, size_t want_len)
{
	struct json_batch_scalar got = value_of(value);
	assert_int_equal(got.kind, JSON_BATCH_STRING);
	assert_int_equal(got.len, want_len);
	assert_memory_equal(got.str, want, want_len);
}

static void test_json_batch_decodes_every_escape(void **state)
{
	string_is("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8);
	string_is("\"a\\u0041\\u00e9\\u20AC\"", "aA\xc3\xa9\xe2\x82\xac", 7);
	string_is("\"\\u007f\\u0001\"", "\x7f\x01", 2);
	refused("\"\\x\"", "invalid syntax");
	refused("\"\\u12\"", "invalid syntax");
	refused("\"\\u12G4\"", "invalid syntax");
	refused("\"\\u0000\"", "a NUL character");
	refused("\"a\\", "invalid syntax"); /* the escape is the '}' after it */
}

static void test_json_batch_unescaped_strings_point_into_the_input(void **state)
{
	const char *text =
	    "{\"seq\":1,\"samples\":[{\"ts\":1,\"signal\":\"Vehicle.Speed\",\"value\":"
	    "\"P0301\"}]}";
	struct json_batch doc;
	struct json_batch_error error;
	assert_int_equal(read_text(text, &doc, &error), DM_OK);
	assert_ptr_equal(doc.items[0].signal.str, strstr(text, "Vehicle.Speed"));
	assert_ptr_equal(doc.items[0].value.str, strstr(text, "P0301"));
	assert_int_equal(pool_used, 0);
}

static void test_json_batch_joins_surrogate_pairs_and_refuses_lone_ones(void **state)
{
	string_is("\"\\uD83D\\uDE97\"", "\xf0\x9f\x9a\x97", 4); /* U+1F697 */
	string_is("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4); /* U+10FFFF */
	string_is("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4); /* U+10000 */
	refused("\"\\ud83d\"", "invalid syntax");               /* high alone */
	refused("\"\\ud83dx\"", "invalid syntax");              /* high, then text */
	refused("\"\\ud83d\\u0041\"", "invalid syntax");        /* high, then not low */
	refused("\"\\ud83d\\ud83d\"", "invalid syntax");        /* high, then high */
	refused("\"\\ude97\"", "invalid syntax");               /* low alone */
	refused("\"\\ude97\\ud83d\"", "invalid syntax");        /* reversed */
}

static void test_json_batch_refuses_invalid_utf8(void **state)
{
	string_is("\"\xc2\x80\xdf\xbf\"", "\xc2\x80\xdf\xbf", 4);
	string_is("\"\xe0\xa0\x80\xed\x9f\xbf\xef\xbf\xbf\"",
	          "\xe0\xa0\x80\xed\x9f\xbf\xef\xbf\xbf", 9);
	string_is("\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8);
	static const char *const bad[] = {
	    "\"\xc0\x80\"",         /* overlong NUL */
	    "\"\xc1\xbf\"",         /* overlong */
	    "\"\xe0\x9f\xbf\"",     /* overlong three bytes */
	    "\"\xf0\x8f\xbf\xbf\"", /* overlong four bytes */
	    "\"\xed\xa0\x80\"",     /* U+D800 encoded */
	    "\"\xed\xbf\xbf\"",     /* U+DFFF encoded */
	    "\"\xf4\x90\x80\x80\"", /* U+110000 */
	    "\"\xf5\x80\x80\x80\"", /* beyond any code point */
	    "\"\xff\"",
	    "\"\x80\"",         /* continuation alone */
	    "\"\xe2\x82\"",     /* cut short */
	    "\"\xe2\x28\xa1\"", /* bad continuation */
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
		refused(bad[k], "invalid UTF-8");
	/* Outside strings too. */
	refused("\xff", "invalid UTF-8");
}

static void test_json_batch_refuses_control_characters_in_strings(void **state)
{
	refused("\"a\nb\"", "invalid syntax");
	refused("\"a\tb\"", "invalid syntax");
	refused("\"a\x1f\"", "invalid syntax");
	struct json_batch doc;
	struct json_batch_error error;
	const char text[] = "{\"seq\":1,\"samples\":[{\"ts\":1,\"signal\":\"a\0b\",\"value\":1}]}";
	assert_int_equal(read_len(text, sizeof text - 1, &doc, &error), DM_ERR_MALFORMED);
	assert_string_equal(error.problem, "a NUL character");
	assert_int_equal(error.offset, strlen(text));
}

static void test_json_batch_reads_numbers_at_their_edges(void **state)
{
	struct json_batch_scalar v = value_of("-0");
	assert_int_equal(v.kind, JSON_BATCH_INT);
	assert_int_equal(v.i, 0);
	v = value_of("-0.0");
	assert_int_equal(v.kind, JSON_BATCH_REAL);
	assert_true(v.f == 0 && signbit(v.f));
	v = value_of("9223372036854775807");
	assert_true(v.kind == JSON_BATCH_INT && v.i == INT64_MAX);
	v = value_of("-9223372036854775808");
	assert_true(v.kind == JSON_BATCH_INT && v.i == INT64_MIN);
	refused("9223372036854775808", "a number out of range");
	refused("-9223372036854775809", "a number out of range");
	refused("99999999999999999999999", "a number out of range");
	v = value_of("1e308");
	assert_true(v.kind == JSON_BATCH_REAL && v.f == 1e308);
	v = value_of("1.7976931348623157e308");
	assert_true(v.f == 1.7976931348623157e308);
	refused("1e309", "a number out of range");
	refused("-1e309", "a number out of range");
	refused("1.8e308", "a number out of range");
	v = value_of("1e-400"); /* underflow is zero, as strtod has it */
	assert_true(v.kind == JSON_BATCH_REAL && v.f == 0);
	v = value_of("4.9406564584124654e-324");
	assert_true(v.f == 4.9406564584124654e-324);
	v = value_of("5.0");
	assert_true(v.kind == JSON_BATCH_REAL && v.f == 5.0);
	v = value_of("0e999999999999999999");
	assert_true(v.kind == JSON_BATCH_REAL && v.f == 0);
	v = value_of("1E+2");
	assert_true(v.kind == JSON_BATCH_REAL && v.f == 100);
	v = value_of("123456789012345678901234567890e-10"); /* past the fast path */
	assert_true(v.f == 123456789012345678901234567890e-10);
	static const char *const bad[] = {"01",   "-01",      "00",  "1.",  "-",    "-x",
	                                  ".5",   "+1",       "1e",  "1e+", "1.e5", "1x",
	                                  "0x10", "Infinity", "NaN", "--1"};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		char text[64];
		snprintf(text, sizeof text, "%s", bad[k]);
		struct json_batch doc;
		struct json_batch_error error;
		char whole[256];
		snprintf(whole, sizeof whole, "{\"seq\":%s,\"samples\":[]}", text);
		if (read_text(whole, &doc, &error) != DM_ERR_MALFORMED)
			fail_msg("%s was accepted", bad[k]);
	}
}

static void test_json_batch_rounds_reals_like_strtod(void **state)
{
	static const char *const texts[] = {
	    "0.1",
	    "72.5",
	    "31.230416",
	    "121.473701",
	    "0.30000000000000004",
	    "359.99999999999994",
	    "123456.789",
	    "9007199254740993",
	    "9007199254740993.0",
	    "2.2250738585072011e-308",
	    "2.2250738585072014e-308",
	    "1e23",
	    "8.98846567431158e307",
	    "0.000000000000000000000000000001234",
	    "1234567890123456789.5",
	    "1e22",
	    "1e-22",
	    "3.0000000000000004",
	    "-12.25",
	};
	for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
		char text[128];
		snprintf(text, sizeof text, "%s%s", texts[k], strpbrk(texts[k], ".eE") ? "" : "e0");
		struct json_batch_scalar v = value_of(text);
		double want = strtod(text, NULL);
		if (memcmp(&v.f, &want, sizeof want) != 0)
			fail_msg("%s: %.17g, strtod says %.17g", text, v.f, want);
	}
}

static void test_json_batch_allows_whitespace_wherever_json_does(void **state)
{
	const char *text =
	    " \t\r\n{ \"seq\" \n: 7 ,\r\"samples\"\t:\n[ { \"ts\" : 1 , \"signal\" : "
	    "\"s\" , \"value\" : true } , {\"ts\":2,\"signal\":\"t\",\"value\":null}"
	    " ] } \n\t\r ";
	struct json_batch doc;
	struct json_batch_error error;
	assert_int_equal(read_text(text, &doc, &error), DM_OK);
	assert_int_equal(doc.seq.i, 7);
	assert_int_equal(doc.count, 2);
	assert_int_equal(doc.items[0].value.kind, JSON_BATCH_BOOL);
	assert_int_equal(doc.items[0].value.i, 1);
	assert_int_equal(doc.items[1].value.kind, JSON_BATCH_NULL);
	/* Not JSON whitespace. */
	assert_int_equal(read_text("{\"seq\":1,\v\"samples\":[]}", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("{\"seq\":1,\f\"samples\":[]}", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("\xc2\xa0{\"seq\":1}", &doc, &error), DM_ERR_MALFORMED);
}

static void test_json_batch_refuses_duplicate_keys(void **state)
{
	static const char *const texts[] = {
	    "{\"seq\":1,\"seq\":1,\"samples\":[]}",
	    "{\"samples\":[],\"seq\":1,\"samples\":[]}",
	    "{\"seq\":1,\"s\\u0065q\":2}",
	    "{\"seq\":1,\"samples\":[{\"ts\":1,\"ts\":1}]}",
	    "{\"seq\":1,\"samples\":[{\"value\":1,\"signal\":\"a\",\"\\u0076alue\":2}]}",
	    "{\"seq\":1,\"samples\":[{\"signal\":{},\"signal\":\"a\"}]}",
	};
	for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
		struct json_batch doc;
		struct json_batch_error error;
		int rc = read_text(texts[k], &doc, &error);
		if (rc != DM_ERR_MALFORMED || strcmp(error.problem, "a duplicate key") != 0)
			fail_msg("case %zu: %d %s", k, rc, rc ? error.problem : "accepted");
	}
	/* Keys of our shape in another object are not ours. */
	struct json_batch doc;
	struct json_batch_error error;
	assert_int_equal(read_text("{\"seq\":1,\"x\":{\"seq\":2},\"samples\":[]}", &doc, &error),
	                 DM_OK);
	assert_int_equal(doc.other_keys, 1);
	assert_int_equal(doc.seq.i, 1);
}

static void test_json_batch_reports_misplaced_values_by_kind(void **state)
{
	struct json_batch doc;
	struct json_batch_error error;
	const char *text = "{\"seq\":[1],\"samples\":[1,[],{\"ts\":{\"a\":[1,{}]},\"signal\":"
	                   "\"x\",\"value\":[[]],\"u\":{}},\"s\",null],\"z\":1}";
	assert_int_equal(read_text(text, &doc, &error), DM_OK);
	assert_int_equal(doc.seq.kind, JSON_BATCH_ARRAY);
	assert_int_equal(doc.other_keys, 1);
	assert_int_equal(doc.count, 5);
	assert_int_equal(doc.items[0].kind, JSON_BATCH_INT);
	assert_int_equal(doc.items[1].kind, JSON_BATCH_ARRAY);
	assert_int_equal(doc.items[2].kind, JSON_BATCH_OBJECT);
	assert_int_equal(doc.items[2].ts.kind, JSON_BATCH_OBJECT);
	assert_int_equal(doc.items[2].value.kind, JSON_BATCH_ARRAY);
	assert_int_equal(doc.items[2].other_keys, 1);
	assert_int_equal(doc.items[3].kind, JSON_BATCH_STRING);
	/* Only max_items (4) are kept; the rest are counted. */
	assert_int_equal(read_text("{\"samples\":{}}", &doc, &error), DM_OK);
	assert_int_equal(doc.samples_kind, JSON_BATCH_OBJECT);
	assert_int_equal(doc.seq.kind, JSON_BATCH_ABSENT);
	assert_int_equal(read_text("[1,{\"a\":[]}]", &doc, &error), DM_OK);
	assert_int_equal(doc.kind, JSON_BATCH_ARRAY);
}

/* depth values nested: depth-1 arrays around a 1. */
static char *nested(size_t depth, size_t *len)
{
	const char head[] = "{\"seq\":1,\"x\":";
	size_t arrays = depth - 2; /* the document is 1, the value of "x" is 2 */
	char *text = malloc(sizeof head + 2 * arrays + 8);
	assert_non_null(text);
	size_t n = sizeof head - 1;
	memcpy(text, head, n);
	memset(text + n, '[', arrays);
	n += arrays;
	text[n++] = '1';
	memset(text + n, ']', arrays);
	n += arrays;
	text[n++] = '}';
	*len = n;
	return text;
}

static void test_json_batch_limits_nesting_without_using_the_stack(void **state)
{
	const size_t depths[] = {JSON_BATCH_MAX_DEPTH - 1, JSON_BATCH_MAX_DEPTH,
	                         JSON_BATCH_MAX_DEPTH + 1, 1000000};
	for (size_t k = 0; k < 4; k++) {
		size_t len;
		char *text = nested(depths[k], &len);
		struct json_batch doc;
		struct json_batch_error error;
		int rc = read_len(text, len, &doc, &error);
		if (depths[k] <= JSON_BATCH_MAX_DEPTH) {
			assert_int_equal(rc, DM_OK);
			assert_int_equal(doc.other_keys, 1);
		} else {
			assert_int_equal(rc, DM_ERR_MALFORMED);
			assert_string_equal(error.problem, "nesting too deep");
		}
		free(text);
	}
	/* A million open brackets, never closed: refused at the limit, long
	 * before the end, with a fixed amount of stack. */
	size_t len = 1000000;
	char *text = malloc(len);
	assert_non_null(text);
	memset(text, '[', len);
	struct json_batch doc;
	struct json_batch_error error;
	assert_int_equal(read_len(text, len, &doc, &error), DM_ERR_MALFORMED);
	assert_string_equal(error.problem, "nesting too deep");
	assert_int_equal(error.offset, JSON_BATCH_MAX_DEPTH);
	free(text);
}

static void test_json_batch_refuses_bytes_after_the_document(void **state)
{
	static const char *const texts[] = {"{} x", "{}{}",   "{},",
	                                    "[]]",  "{}\x00", "{} \xef\xbb\xbf"};
	for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
		struct json_batch doc;
		struct json_batch_error error;
		size_t len = k == 4 ? 3 : strlen(texts[k]);
		assert_int_equal(read_len(texts[k], len, &doc, &error), DM_ERR_MALFORMED);
		assert_string_equal(error.problem, "more data after the batch");
	}
	struct json_batch doc;
	struct json_batch_error error;
	/* Only an object or an array is a document, as for jansson. */
	assert_int_equal(read_text("1", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("\"seq\"", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("", &doc, &error), DM_ERR_MALFORMED);
	assert_string_equal(error.problem, "the input ends early");
	assert_int_equal(read_text("{\"seq\":1,}", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("{\"seq\":1,\"samples\":[1,]}", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("{\"seq\" 1}", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("{\"seq\":tru}", &doc, &error), DM_ERR_MALFORMED);
	assert_int_equal(read_text("{\"seq\":truex}", &doc, &error), DM_ERR_MALFORMED);
}

static void test_json_batch_truncated_input_at_every_length_is_refused(void **state)
{
	const char *full =
	    "{\"seq\":17,\"samples\":[{\"ts\":1732400000123,\"signal\":\"Vehicle.Speed\","
	    "\"value\":-72.5e-1},{\"ts\":1,\"signal\":\"\\u0041\\ud83d\\ude97\","
	    "\"value\":\"\xc3\xa9\\n\"},{\"x\":[{\"y\":null}],\"value\":false}]}";
	size_t len = strlen(full);
	struct json_batch doc;
	struct json_batch_error error;
	assert_int_equal(read_len(full, len, &doc, &error), DM_OK);
	for (size_t cut = 0; cut < len; cut++) {
		/* A copy of exactly cut bytes, so ASan sees any read past it. */
		char *copy = malloc(cut ? cut : 1);
		assert_non_null(copy);
		memcpy(copy, full, cut);
		int rc = read_len(copy, cut, &doc, &error);
		if (rc != DM_ERR_MALFORMED)
			fail_msg("cut at %zu: %d", cut, rc);
		assert_true(error.offset <= cut);
		free(copy);
	}
}

static void test_json_batch_reader_recovers_from_allocation_failure(void **state)
{
	struct json_batch_reader *fresh;
	assert_int_equal(json_batch_reader_new(0, pool_alloc, NULL, &fresh), DM_ERR_INVALID);
	assert_null(fresh);
	dm_alloc_fail_after(0);
	assert_int_equal(json_batch_reader_new(4, pool_alloc, NULL, &fresh), DM_ERR_NOMEM);
	dm_alloc_fail_after(-1);
	assert_int_equal(json_batch_reader_new(4, pool_alloc, NULL, &fresh), DM_OK);
	const char *text = "{\"seq\":1,\"samples\":[{}]}";
	struct json_batch doc;
	struct json_batch_error error;
	dm_alloc_fail_after(0);
	assert_int_equal(json_batch_read(fresh, (const uint8_t *)text, strlen(text), &doc, &error),
	                 DM_ERR_NOMEM);
	dm_alloc_fail_after(-1);
	assert_int_equal(doc.count, 0);
	assert_int_equal(json_batch_read(fresh, (const uint8_t *)text, strlen(text), &doc, &error),
	                 DM_OK);
	assert_int_equal(doc.count, 1);
	json_batch_reader_free(fresh);
	json_batch_reader_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_batch_decodes_every_escape),
	    cmocka_unit_test(test_json_batch_unescaped_strings_point_into_the_input),
	    cmocka_unit_test(test_json_batch_joins_surrogate_pairs_and_refuses_lone_ones),
	    cmocka_unit_test(test_json_batch_refuses_invalid_utf8),
	    cmocka_unit_test(test_json_batch_refuses_control_characters_in_strings),
	    cmocka_unit_test(test_json_batch_reads_numbers_at_their_edges),
	    cmocka_unit_test(test_json_batch_rounds_reals_like_strtod),
	    cmocka_unit_test(test_json_batch_allows_whitespace_wherever_json_does),
	    cmocka_unit_test(test_json_batch_refuses_duplicate_keys),
	    cmocka_unit_test(test_json_batch_reports_misplaced_values_by_kind),
	    cmocka_unit_test(test_json_batch_limits_nesting_without_using_the_stack),
	    cmocka_unit_test(test_json_batch_refuses_bytes_after_the_document),
	    cmocka_unit_test(test_json_batch_truncated_input_at_every_length_is_refused),
	    cmocka_unit_test(test_json_batch_reader_recovers_from_allocation_failure),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
