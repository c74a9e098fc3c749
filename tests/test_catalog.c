/*
 * test_catalog.c — the signal catalog: the real catalog/signals.catalog loads
 * and says what the rest of domicile relies on, and every kind of bad line is
 * refused with "FILE:LINE: what is wrong". Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/catalog.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"

#define CATALOG_PATH "catalog/signals.catalog"

static const char *const GOOD_LINE = "Vehicle.Speed float km/h -50 400 state\n";

/* Parses text as file "t.catalog"; returns the status and leaves the message
 * in err. The catalog, if any, is freed. */
static int parse(const char *text, char *err, size_t err_len)
{
	struct catalog *catalog = (struct catalog *)1;
	int rc = catalog_parse("t.catalog", text, strlen(text), &catalog, err, err_len);
	if (rc)
		assert_null(catalog);
	catalog_free(catalog);
	return rc;
}

/* Expects `text` to be refused with an error that starts with `prefix` and
 * contains `words`. */
static void expect_refused(const char *text, int status, const char *prefix, const char *words)
{
	char err[256];
	int rc = parse(text, err, sizeof err);
	if (rc != status || strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, words))
		fail_msg("for %s\n got %d \"%s\", expected %d \"%s...%s...\"", text, rc, err,
			 status, prefix, words);
}

static void test_catalog_loads_the_real_catalog(void **state)
{
	struct catalog *catalog;
	char err[256];
	int rc = catalog_load(CATALOG_PATH, &catalog, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(err[0], '\0');
	assert_true(catalog_count(catalog) >= 10);

	const struct {
		const char *path;
		enum sig_type type;
		const char *unit;
		enum sig_category category;
	} want[] = {
		{"Vehicle.Speed", SIG_FLOAT, "km/h", CAT_STATE},
		{"Vehicle.CurrentLocation.Latitude", SIG_FLOAT, "degrees", CAT_LOCATION},
		{"Vehicle.CurrentLocation.Longitude", SIG_FLOAT, "degrees", CAT_LOCATION},
		{"Vehicle.CurrentLocation.Altitude", SIG_FLOAT, "m", CAT_LOCATION},
		{"Vehicle.CurrentLocation.Heading", SIG_FLOAT, "degrees", CAT_LOCATION},
		{"Vehicle.TraveledDistance", SIG_FLOAT, "km", CAT_STATE},
		{"Vehicle.Powertrain.TractionBattery.StateOfCharge.Current", SIG_FLOAT, "percent",
		 CAT_STATE},
		{"Vehicle.Powertrain.FuelSystem.RelativeLevel", SIG_INT, "percent", CAT_STATE},
		{"Vehicle.Exterior.AirTemperature", SIG_FLOAT, "celsius", CAT_STATE},
		{"Vehicle.OBD.DTCList", SIG_STRING, "", CAT_DIAGNOSTICS},
	};
	for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
		const struct catalog_signal *sig =
			catalog_find(catalog, want[k].path, strlen(want[k].path));
		if (!sig)
			fail_msg("%s is missing", want[k].path);
		assert_string_equal(sig->path, want[k].path);
		assert_int_equal(sig->type, want[k].type);
		assert_string_equal(sig->unit, want[k].unit);
		assert_int_equal(sig->category, want[k].category);
		assert_true(sig->min <= sig->max);
		assert_ptr_equal(catalog_get(catalog, sig->id), sig);
	}
	const struct catalog_signal *lat =
		catalog_find(catalog, "Vehicle.CurrentLocation.Latitude", 32);
	assert_true(lat->min == -90 && lat->max == 90);
	const struct catalog_signal *dtc = catalog_find(catalog, "Vehicle.OBD.DTCList", 19);
	assert_true(dtc->min == 0 && dtc->max >= 5);
	catalog_free(catalog);
}

static void test_catalog_ids_follow_file_order(void **state)
{
	struct catalog *catalog;
	const char *text = "# two signals\n\nVehicle.A float - 0 1 state\n"
			   "  Vehicle.B\tint - 0 10 diagnostics # trailing comment\n";
	assert_int_equal(catalog_parse("t", text, strlen(text), &catalog, NULL, 0), DM_OK);
	assert_int_equal(catalog_count(catalog), 2);
	assert_string_equal(catalog_get(catalog, 0)->path, "Vehicle.A");
	assert_string_equal(catalog_get(catalog, 1)->path, "Vehicle.B");
	assert_int_equal(catalog_get(catalog, 1)->id, 1);
	assert_int_equal(catalog_get(catalog, 1)->category, CAT_DIAGNOSTICS);
	assert_null(catalog_get(catalog, 2));
	assert_null(catalog_get(catalog, UINT16_MAX));
	catalog_free(catalog);
}

static void test_catalog_finds_paths_that_are_not_nul_terminated(void **state)
{
	struct catalog *catalog;
	assert_int_equal(catalog_load(CATALOG_PATH, &catalog, NULL, 0), DM_OK);
	const char *text = "Vehicle.SpeedAndMore";
	const struct catalog_signal *sig = catalog_find(catalog, text, strlen("Vehicle.Speed"));
	assert_non_null(sig);
	assert_string_equal(sig->path, "Vehicle.Speed");
	assert_null(catalog_find(catalog, text, strlen(text)));
	assert_null(catalog_find(catalog, "Vehicle.Spee", 12));
	assert_null(catalog_find(catalog, "", 0));
	assert_null(catalog_find(catalog, "Vehicle.Speed\0", 14));
	catalog_free(catalog);
}

static void test_catalog_reads_crlf_lines_and_a_missing_final_newline(void **state)
{
	struct catalog *catalog;
	const char *text = "Vehicle.A float km 0 1 state\r\nVehicle.B bool - 0 1 state";
	assert_int_equal(catalog_parse("t", text, strlen(text), &catalog, NULL, 0), DM_OK);
	assert_int_equal(catalog_count(catalog), 2);
	assert_string_equal(catalog_get(catalog, 0)->unit, "km");
	assert_string_equal(catalog_get(catalog, 1)->path, "Vehicle.B");
	catalog_free(catalog);
}

static void test_catalog_names_types_and_categories(void **state)
{
	assert_string_equal(sig_type_name(SIG_FLOAT), "float");
	assert_string_equal(sig_type_name(SIG_INT), "int");
	assert_string_equal(sig_type_name(SIG_BOOL), "bool");
	assert_string_equal(sig_type_name(SIG_STRING), "string");
	assert_string_equal(sig_type_name((enum sig_type)0), "unknown");
	assert_string_equal(sig_category_name(CAT_STATE), "state");
	assert_string_equal(sig_category_name(CAT_LOCATION), "location");
	assert_string_equal(sig_category_name(CAT_MEDIA), "media");
	assert_string_equal(sig_category_name(CAT_IDENTITY), "identity");
	assert_string_equal(sig_category_name(CAT_DIAGNOSTICS), "diagnostics");
	assert_string_equal(sig_category_name((enum sig_category)99), "unknown");
}

static void test_catalog_refuses_an_unknown_type_with_file_and_line(void **state)
{
	expect_refused("# c\nVehicle.A double - 0 1 state\n", DM_ERR_INVALID, "t.catalog:2: ",
		       "unknown type 'double'");
}

static void test_catalog_refuses_an_unknown_category_with_file_and_line(void **state)
{
	expect_refused("Vehicle.A float - 0 1 secret\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "unknown category 'secret'");
}

static void test_catalog_refuses_min_above_max(void **state)
{
	expect_refused("Vehicle.A float - 2 1 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MIN is greater than MAX");
	/* MIN == MAX is a constant, which is allowed. */
	assert_int_equal(parse("Vehicle.A float - 1 1 state\n", NULL, 0), DM_OK);
}

static void test_catalog_refuses_a_duplicate_path_naming_the_first_line(void **state)
{
	char text[512];
	snprintf(text, sizeof text, "%s\n%s%s", GOOD_LINE, "Vehicle.B int - 0 1 state\n",
		 GOOD_LINE);
	expect_refused(text, DM_ERR_INVALID, "t.catalog:4: ",
		       "duplicate signal Vehicle.Speed (first on line 1)");
}

static void test_catalog_refuses_numbers_that_strtod_does_not_consume_whole(void **state)
{
	expect_refused("Vehicle.A float - 1.5x 2 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MIN '1.5x' is not a number");
	expect_refused("Vehicle.A float - 0 abc state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MAX 'abc' is not a number");
	expect_refused("Vehicle.A float - nan 2 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MIN 'nan' is not a finite number");
	expect_refused("Vehicle.A float - 0 inf state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MAX 'inf' is not a finite number");
	expect_refused("Vehicle.A float - 0 1e999 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MAX '1e999' is out of range");
	/* What strtod reads whole is fine, exponents included. */
	assert_int_equal(parse("Vehicle.A float - -1.5e2 +2.5E3 state\n", NULL, 0), DM_OK);
}

static void test_catalog_refuses_more_than_the_maximum_number_of_signals(void **state)
{
	struct dm_buf text = {0};
	for (int k = 0; k < CATALOG_MAX_SIGNALS; k++)
		assert_int_equal(dm_buf_printf(&text, "Vehicle.S%d int - 0 1 state\n", k), DM_OK);
	/* limit: exactly CATALOG_MAX_SIGNALS loads, and every one is found. */
	struct catalog *catalog;
	assert_int_equal(catalog_parse("t.catalog", (const char *)text.data, text.len, &catalog,
				       NULL, 0),
			 DM_OK);
	assert_int_equal(catalog_count(catalog), CATALOG_MAX_SIGNALS);
	for (int k = 0; k < CATALOG_MAX_SIGNALS; k++) {
		char path[32];
		int n = snprintf(path, sizeof path, "Vehicle.S%d", k);
		const struct catalog_signal *sig = catalog_find(catalog, path, (size_t)n);
		assert_non_null(sig);
		assert_int_equal(sig->id, k);
	}
	catalog_free(catalog);
	/* limit + 1 */
	assert_int_equal(dm_buf_printf(&text, "Vehicle.Extra int - 0 1 state\n"), DM_OK);
	char err[256];
	assert_int_equal(catalog_parse("t.catalog", (const char *)text.data, text.len, &catalog,
				       err, sizeof err),
			 DM_ERR_TOO_LARGE);
	assert_null(catalog);
	assert_string_equal(err, "t.catalog:4097: more than 4096 signals");
	dm_buf_free(&text);
}

static void test_catalog_refuses_a_line_with_the_wrong_number_of_fields(void **state)
{
	expect_refused("Vehicle.A float - 0 1\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "expected 6 fields (PATH TYPE UNIT MIN MAX CATEGORY), found 5");
	expect_refused("Vehicle.A float - 0 1 state extra\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "found 7");
}

static void test_catalog_refuses_bounds_that_do_not_fit_the_type(void **state)
{
	expect_refused("Vehicle.A bool - 0 2 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "bool signals take MIN 0 and MAX 1");
	expect_refused("Vehicle.A int - 0 1.5 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "int signals take integer MIN and MAX");
	expect_refused("Vehicle.A int - 0 1e300 state\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "int signals take integer MIN and MAX");
	expect_refused("Vehicle.A string - 1 16 diagnostics\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "string signals take MIN 0");
	expect_refused("Vehicle.A string - 0 0 diagnostics\n", DM_ERR_INVALID, "t.catalog:1: ",
		       "MAX length in bytes from 1 to 65535");
	expect_refused("Vehicle.A string - 0 65536 diagnostics\n", DM_ERR_INVALID,
		       "t.catalog:1: ", "MAX length in bytes from 1 to 65535");
	assert_int_equal(parse("Vehicle.A string - 0 65535 diagnostics\n", NULL, 0), DM_OK);
}

static void test_catalog_refuses_paths_that_are_not_vss_paths(void **state)
{
	const char *bad[] = {".Vehicle float - 0 1 state\n", "Vehicle. float - 0 1 state\n",
			     "Vehicle..A float - 0 1 state\n", "Vehicle.A-B float - 0 1 state\n",
			     "Vehicle/A float - 0 1 state\n"};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
		expect_refused(bad[k], DM_ERR_INVALID, "t.catalog:1: ", "is not a VSS path");
}

static void test_catalog_refuses_text_with_a_nul_byte(void **state)
{
	const char text[] = "Vehicle.A float - 0 1 state\nVehicle.B\0 float - 0 1 state\n";
	struct catalog *catalog;
	char err[128];
	assert_int_equal(catalog_parse("t.catalog", text, sizeof text - 1, &catalog, err,
				       sizeof err),
			 DM_ERR_INVALID);
	assert_string_equal(err, "t.catalog:2: contains a NUL byte");
}

static void test_catalog_refuses_a_catalog_without_signals(void **state)
{
	expect_refused("", DM_ERR_INVALID, "t.catalog:0: ", "no signals defined");
	expect_refused("# only a comment\n\n", DM_ERR_INVALID, "t.catalog:2: ",
		       "no signals defined");
}

static void test_catalog_reports_a_missing_file_as_io_error(void **state)
{
	struct catalog *catalog = (struct catalog *)1;
	char err[256];
	assert_int_equal(catalog_load("/nonexistent/dir/x.catalog", &catalog, err, sizeof err),
			 DM_ERR_IO);
	assert_null(catalog);
	assert_non_null(strstr(err, "/nonexistent/dir/x.catalog: cannot open"));
}

static void test_catalog_error_is_always_nul_terminated_in_a_small_buffer(void **state)
{
	char err[8];
	memset(err, 'x', sizeof err);
	assert_int_equal(parse("Vehicle.A float - 2 1 state\n", err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "t.catal");
	/* No buffer at all is allowed. */
	assert_int_equal(parse("Vehicle.A float - 2 1 state\n", NULL, 0), DM_ERR_INVALID);
}

static void test_catalog_survives_every_allocation_failure(void **state)
{
	struct catalog *catalog = NULL;
	int rc = DM_ERR_NOMEM;
	for (long budget = 0; rc == DM_ERR_NOMEM; budget++) {
		char err[128];
		dm_alloc_fail_after(budget);
		rc = catalog_load(CATALOG_PATH, &catalog, err, sizeof err);
		dm_alloc_fail_after(-1);
		if (rc == DM_ERR_NOMEM) {
			assert_null(catalog);
			assert_non_null(strstr(err, "out of memory"));
		}
		assert_true(budget < 1000);
	}
	assert_int_equal(rc, DM_OK);
	catalog_free(catalog);
	catalog_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catalog_loads_the_real_catalog),
		cmocka_unit_test(test_catalog_ids_follow_file_order),
		cmocka_unit_test(test_catalog_finds_paths_that_are_not_nul_terminated),
		cmocka_unit_test(test_catalog_reads_crlf_lines_and_a_missing_final_newline),
		cmocka_unit_test(test_catalog_names_types_and_categories),
		cmocka_unit_test(test_catalog_refuses_an_unknown_type_with_file_and_line),
		cmocka_unit_test(test_catalog_refuses_an_unknown_category_with_file_and_line),
		cmocka_unit_test(test_catalog_refuses_min_above_max),
		cmocka_unit_test(test_catalog_refuses_a_duplicate_path_naming_the_first_line),
		cmocka_unit_test(test_catalog_refuses_numbers_that_strtod_does_not_consume_whole),
		cmocka_unit_test(test_catalog_refuses_more_than_the_maximum_number_of_signals),
		cmocka_unit_test(test_catalog_refuses_a_line_with_the_wrong_number_of_fields),
		cmocka_unit_test(test_catalog_refuses_bounds_that_do_not_fit_the_type),
		cmocka_unit_test(test_catalog_refuses_paths_that_are_not_vss_paths),
		cmocka_unit_test(test_catalog_refuses_text_with_a_nul_byte),
		cmocka_unit_test(test_catalog_refuses_a_catalog_without_signals),
		cmocka_unit_test(test_catalog_reports_a_missing_file_as_io_error),
		cmocka_unit_test(test_catalog_error_is_always_nul_terminated_in_a_small_buffer),
		cmocka_unit_test(test_catalog_survives_every_allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
