/*
 * test_residency.c — the residency decision at CONNECT (residency/route)
 * and the foreign-connection tally of the report.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "residency/report.h"
#include "residency/route.h"
#include "residency/topology.h"
#include "util/err.h"

static const char topology_text[] =
	"site CN cn-shanghai-1 mqtt://10.1.0.5:1883 http://10.1.0.5:8080\n"
	"site CN cn-beijing-1 mqtt://10.1.0.6:1883 http://10.1.0.6:8080\n"
	"site DE de-frankfurt-1 mqtt://10.2.0.5:1883 http://10.2.0.5:8080\n";

static struct topology *topology;

static int load(void **state)
{
	char err[256];
	return topology_parse("test", topology_text, sizeof topology_text - 1, &topology, err,
			      sizeof err);
}

static int unload(void **state)
{
	topology_free(topology);
	return 0;
}

static void test_route_sends_a_foreign_vehicle_to_its_home_site(void **state)
{
	const struct topology_site *site;
	assert_int_equal(residency_route(topology, "de-frankfurt-1", "CN", "LSVAU218XN2183294",
					 &site),
			 ROUTE_REDIRECT);
	assert_string_equal(site->jurisdiction, "CN");
	assert_ptr_equal(site, topology_home_site(topology, "CN", "LSVAU218XN2183294"));
}

static void test_route_sends_a_vehicle_to_the_other_site_of_its_jurisdiction(void **state)
{
	/* Find VINs whose home is each CN site; asked at the other, redirect. */
	char vin[32];
	int redirected = 0, refused = 0;
	for (int i = 0; i < 50; i++) {
		snprintf(vin, sizeof vin, "LSVAU218X%08d", i);
		const struct topology_site *home = topology_home_site(topology, "CN", vin), *site;
		enum residency_route here =
			residency_route(topology, home->id, "CN", vin, &site);
		const char *other = strcmp(home->id, "cn-shanghai-1") ? "cn-shanghai-1"
								    : "cn-beijing-1";
		enum residency_route there = residency_route(topology, other, "CN", vin, &site);
		assert_int_equal(here, ROUTE_REFUSE); /* its home: it should be registered */
		assert_int_equal(there, ROUTE_REDIRECT);
		assert_ptr_equal(site, home);
		refused += here == ROUTE_REFUSE;
		redirected += there == ROUTE_REDIRECT;
	}
	assert_int_equal(refused, 50);
	assert_int_equal(redirected, 50);
}

static void test_route_refuses_a_vehicle_that_names_no_known_home(void **state)
{
	const struct topology_site *site;
	assert_int_equal(residency_route(topology, "de-frankfurt-1", NULL, "LSVAU218XN2183294",
					 &site),
			 ROUTE_REFUSE);
	assert_null(site);
	assert_int_equal(residency_route(topology, "de-frankfurt-1", "US", "1M8GDM9AXKP042788",
					 &site),
			 ROUTE_REFUSE);
	assert_null(site);
}

static void test_tally_counts_by_home_and_lumps_the_rest_when_full(void **state)
{
	struct foreign_tally tally = {0};
	foreign_tally_count(&tally, "CN", 1);
	foreign_tally_count(&tally, "CN", 0);
	foreign_tally_count(&tally, NULL, 0);
	assert_int_equal(tally.redirected, 1);
	assert_int_equal(tally.refused, 2);
	assert_int_equal(tally.homes, 2);
	assert_string_equal(tally.by_home[1].home, "??");
	char code[3] = "AA";
	for (int i = 0; i < FOREIGN_MAX_HOMES + 5; i++) {
		code[0] = (char)('A' + i / 26);
		code[1] = (char)('A' + i % 26);
		foreign_tally_count(&tally, code, 1);
	}
	assert_int_equal(tally.homes, FOREIGN_MAX_HOMES);
	assert_int_equal(tally.redirected, 1 + FOREIGN_MAX_HOMES + 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_sends_a_foreign_vehicle_to_its_home_site),
		cmocka_unit_test(test_route_sends_a_vehicle_to_the_other_site_of_its_jurisdiction),
		cmocka_unit_test(test_route_refuses_a_vehicle_that_names_no_known_home),
		cmocka_unit_test(test_tally_counts_by_home_and_lumps_the_rest_when_full),
	};
	return cmocka_run_group_tests(tests, load, unload);
}
