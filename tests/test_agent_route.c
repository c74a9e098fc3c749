/*
 * test_agent_route.c — the simulated drive: values in range, a car whose
 * odometer, speed and positions agree, and the same drive from the same seed;
 * and how the agent reads the endpoint of a redirect (agent_parse_mqtt_url).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/route.h"
#include "ingest/catalog.h"
#include "util/alloc.h"
#include "util/err.h"

#ifndef DM_DEFAULT_CATALOG
#define DM_DEFAULT_CATALOG "catalog/signals.catalog"
#endif

#define DEG (M_PI / 180.0)

static double haversine_m(double lat1, double lon1, double lat2, double lon2)
{
	double p1 = lat1 * DEG, p2 = lat2 * DEG;
	double s1 = sin((p2 - p1) / 2), s2 = sin((lon2 - lon1) * DEG / 2);
	double a = s1 * s1 + cos(p1) * cos(p2) * s2 * s2;
	return 2.0 * ROUTE_EARTH_RADIUS_M * asin(sqrt(a));
}

static struct route *shanghai_route(uint64_t seed)
{
	struct route_config config;
	route_config_default(&config, seed, 31.23, 121.47);
	struct route *route = NULL;
	assert_int_equal(route_new(&config, &route), DM_OK);
	assert_non_null(route);
	return route;
}

static void assert_reading_in_range(const struct route_reading *r, double ground_m)
{
	assert_true(r->speed_kmh >= 0.0 && r->speed_kmh <= ROUTE_MAX_SPEED_KMH);
	assert_true(r->lat_deg >= -90.0 && r->lat_deg <= 90.0);
	assert_true(r->lon_deg >= -180.0 && r->lon_deg < 180.0);
	assert_true(r->heading_deg >= 0.0 && r->heading_deg < 360.0);
	assert_true(r->altitude_m >= ground_m && r->altitude_m <= ground_m + 40.0);
	assert_true(r->soc_pct >= 0.0 && r->soc_pct <= 100.0);
	assert_true(r->fuel_pct >= 0.0 && r->fuel_pct <= 100.0);
	assert_true(r->air_temp_c >= -45.0 && r->air_temp_c <= 55.0);
	if (r->dtc) {
		size_t len = strlen(r->dtc);
		assert_true(len >= 5 && len <= ROUTE_DTC_MAX_LEN);
	}
}

static void test_route_values_stay_in_their_ranges_for_a_day(void **state)
{
	for (uint64_t seed = 1; seed <= 4; seed++) {
		struct route *route = shanghai_route(seed);
		struct route_reading r;
		for (int s = 0; s < 24 * 3600; s++) {
			route_step(route, 1.0);
			route_read(route, &r);
			assert_reading_in_range(&r, 5.0);
		}
		/* A day of driving stays in the region it started in. */
		assert_true(haversine_m(31.23, 121.47, r.lat_deg, r.lon_deg) < 60000.0);
		route_free(route);
	}
}

static void test_route_values_lie_within_the_signal_catalog(void **state)
{
	struct catalog *catalog = NULL;
	char err[256];
	if (catalog_load(DM_DEFAULT_CATALOG, &catalog, err, sizeof err) != DM_OK)
		skip();
	static const char *const paths[] = {
	    "Vehicle.Speed",
	    "Vehicle.CurrentLocation.Latitude",
	    "Vehicle.CurrentLocation.Longitude",
	    "Vehicle.CurrentLocation.Altitude",
	    "Vehicle.CurrentLocation.Heading",
	    "Vehicle.TraveledDistance",
	    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
	    "Vehicle.Powertrain.FuelSystem.RelativeLevel",
	    "Vehicle.Exterior.AirTemperature",
	    "Vehicle.OBD.DTCList",
	};
	const struct catalog_signal *sig[10];
	for (size_t i = 0; i < 10; i++) {
		sig[i] = catalog_find(catalog, paths[i], strlen(paths[i]));
		assert_non_null(sig[i]);
	}
	struct route_config config;
	route_config_default(&config, 7, 31.23, 121.47);
	config.dtc_per_hour = 600.0;
	struct route *route = NULL;
	assert_int_equal(route_new(&config, &route), DM_OK);
	int dtcs = 0;
	for (int s = 0; s < 4 * 3600; s++) {
		route_step(route, 1.0);
		struct route_reading r;
		route_read(route, &r);
		double v[9] = {r.speed_kmh,   r.lat_deg, r.lon_deg,  r.altitude_m, r.heading_deg,
		               r.odometer_km, r.soc_pct, r.fuel_pct, r.air_temp_c};
		for (size_t i = 0; i < 9; i++)
			assert_true(v[i] >= sig[i]->min && v[i] <= sig[i]->max);
		if (r.dtc) {
			assert_true(strlen(r.dtc) <= sig[9]->max);
			dtcs++;
		}
	}
	assert_true(dtcs > 100);
	route_free(route);
	catalog_free(catalog);
}

/* The odometer grows by the integral of speed over time and by the distance
 * between consecutive positions: three views of one drive that must agree. */
static void test_route_odometer_agrees_with_speed_and_positions(void **state)
{
	for (uint64_t seed = 11; seed <= 13; seed++) {
		struct route *route = shanghai_route(seed);
		struct route_reading prev, cur;
		route_read(route, &prev);
		double start_km = prev.odometer_km;
		double integral_km = 0.0, path_km = 0.0;
		int stopped = 0, moving = 0;
		for (int s = 0; s < 2 * 3600; s++) {
			route_step(route, 1.0);
			route_read(route, &cur);
			double step_km = cur.odometer_km - prev.odometer_km;
			double hop_km =
			    haversine_m(prev.lat_deg, prev.lon_deg, cur.lat_deg, cur.lon_deg) /
			    1000.0;
			/* A chord is never longer than the arc driven. */
			assert_true(step_km >= 0.0);
			assert_true(hop_km <= step_km + 1e-9);
			/* Speed changes no faster than the model's braking limit. */
			assert_true(fabs(cur.speed_kmh - prev.speed_kmh) <= 4.0 * 3.6 + 1e-9);
			integral_km += (prev.speed_kmh + cur.speed_kmh) / 2.0 / 3600.0;
			path_km += hop_km;
			stopped += cur.speed_kmh == 0.0;
			moving += cur.speed_kmh > 20.0;
			prev = cur;
		}
		double odo_km = cur.odometer_km - start_km;
		assert_true(odo_km > 20.0);
		assert_true(fabs(integral_km - odo_km) <= 0.005 * odo_km);
		assert_true(fabs(path_km - odo_km) <= 0.005 * odo_km);
		/* A plausible drive both stops and moves. */
		assert_true(stopped > 60);
		assert_true(moving > 600);
		route_free(route);
	}
}

static void test_route_battery_drains_with_distance_only(void **state)
{
	struct route *route = shanghai_route(5);
	struct route_reading prev, cur;
	route_read(route, &prev);
	for (int s = 0; s < 3600; s++) {
		route_step(route, 1.0);
		route_read(route, &cur);
		if (cur.odometer_km == prev.odometer_km)
			assert_true(cur.soc_pct >= prev.soc_pct);
		else
			assert_true(cur.soc_pct < prev.soc_pct || cur.soc_pct == 0.0);
		prev = cur;
	}
	route_free(route);
}

static void test_route_heading_changes_smoothly(void **state)
{
	struct route *route = shanghai_route(21);
	struct route_reading prev, cur;
	route_read(route, &prev);
	double turned = 0.0;
	for (int s = 0; s < 3600; s++) {
		route_step(route, 1.0);
		route_read(route, &cur);
		double d = fabs(cur.heading_deg - prev.heading_deg);
		if (d > 180.0)
			d = 360.0 - d;
		/* At most a city corner's yaw rate at turning speed. */
		assert_true(d <= 30.0);
		turned += d;
		prev = cur;
	}
	assert_true(turned > 360.0);
	route_free(route);
}

static void test_route_is_deterministic_by_seed(void **state)
{
	struct route *a = shanghai_route(42), *b = shanghai_route(42), *c = shanghai_route(43);
	int differs = 0;
	for (int s = 0; s < 2000; s++) {
		route_step(a, 0.5);
		route_step(b, 0.5);
		route_step(c, 0.5);
		struct route_reading ra, rb, rc;
		route_read(a, &ra);
		route_read(b, &rb);
		route_read(c, &rc);
		assert_memory_equal(&ra, &rb, sizeof ra);
		differs += ra.lat_deg != rc.lat_deg || ra.speed_kmh != rc.speed_kmh;
	}
	assert_true(differs > 1000);
	route_free(a);
	route_free(b);
	route_free(c);
}

static void test_route_starts_where_it_is_placed(void **state)
{
	struct route_config config;
	route_config_default(&config, 3, 52.52, 13.40); /* Berlin */
	config.altitude_m = 34.0;
	config.air_temp_c = 4.0;
	struct route *route = NULL;
	assert_int_equal(route_new(&config, &route), DM_OK);
	struct route_reading r;
	route_read(route, &r);
	assert_true(r.lat_deg == 52.52 && r.lon_deg == 13.40);
	assert_true(r.odometer_km == config.odometer_km);
	for (int s = 0; s < 1800; s++)
		route_step(route, 1.0);
	route_read(route, &r);
	assert_reading_in_range(&r, 34.0);
	assert_true(haversine_m(52.52, 13.40, r.lat_deg, r.lon_deg) < 40000.0);
	assert_true(fabs(r.air_temp_c - 4.0) < 10.0);
	route_free(route);
}

static void test_route_refuses_configs_out_of_range(void **state)
{
	struct route_config good, bad;
	route_config_default(&good, 1, 31.23, 121.47);
	struct route *route = (struct route *)&good;

	bad = good;
	bad.lat_deg = 85.0001;
	assert_int_equal(route_new(&bad, &route), DM_ERR_INVALID);
	assert_null(route);
	bad = good;
	bad.lat_deg = 85.0;
	assert_int_equal(route_new(&bad, &route), DM_OK);
	route_free(route);
	bad = good;
	bad.soc_pct = 100.5;
	assert_int_equal(route_new(&bad, &route), DM_ERR_INVALID);
	bad = good;
	bad.lon_deg = NAN;
	assert_int_equal(route_new(&bad, &route), DM_ERR_INVALID);
	bad = good;
	bad.dtc_per_hour = -1.0;
	assert_int_equal(route_new(&bad, &route), DM_ERR_INVALID);
	route_free(NULL);
}

static void test_route_reports_nomem(void **state)
{
	struct route_config config;
	route_config_default(&config, 1, 31.23, 121.47);
	struct route *route = (struct route *)&config;
	dm_alloc_fail_after(0);
	int rc = route_new(&config, &route);
	dm_alloc_fail_after(-1);
	assert_int_equal(rc, DM_ERR_NOMEM);
	assert_null(route);
}

/* Sub-step lengths do not matter to the odometer's agreement: a drive
 * sampled at 10 Hz and one at 0.3 Hz both integrate their own speed. */
static void test_route_odd_step_lengths_keep_the_odometer_exact(void **state)
{
	struct route *route = shanghai_route(77);
	struct route_reading prev, cur;
	route_read(route, &prev);
	double start_km = prev.odometer_km, path_km = 0.0;
	double steps[] = {0.1, 0.25, 3.3, 0.05, 1.0};
	for (int s = 0; s < 5000; s++) {
		route_step(route, steps[s % 5]);
		route_read(route, &cur);
		path_km +=
		    haversine_m(prev.lat_deg, prev.lon_deg, cur.lat_deg, cur.lon_deg) / 1000.0;
		prev = cur;
	}
	double odo_km = cur.odometer_km - start_km;
	assert_true(odo_km > 5.0);
	assert_true(fabs(path_km - odo_km) <= 0.01 * odo_km);
	route_free(route);
}

/* ---- agent_parse_mqtt_url ---- */

struct parsed {
	int rc;
	char host[256];
	int port;
	int tls;
};

static struct parsed parse(const char *url)
{
	struct parsed p;
	memset(p.host, 'x', sizeof p.host);
	p.port = -1;
	p.tls = -1;
	p.rc = agent_parse_mqtt_url(url, p.host, sizeof p.host, &p.port, &p.tls);
	return p;
}

static void assert_refused(const char *url)
{
	struct parsed p = parse(url);
	assert_int_equal(p.rc, DM_ERR_INVALID);
	/* Outputs are reset on entry, whatever went wrong after. */
	assert_string_equal(p.host, "");
	assert_int_equal(p.port, 0);
	assert_int_equal(p.tls, 0);
}

static void assert_parsed(const char *url, const char *host, int port, int tls)
{
	struct parsed p = parse(url);
	assert_int_equal(p.rc, DM_OK);
	assert_string_equal(p.host, host);
	assert_int_equal(p.port, port);
	assert_int_equal(p.tls, tls);
}

static void test_agent_url_reads_plain_and_tls_endpoints(void **state)
{
	assert_parsed("mqtt://127.0.0.1:41234", "127.0.0.1", 41234, 0);
	assert_parsed("mqtts://10.1.0.5:8883", "10.1.0.5", 8883, 1);
	assert_parsed("mqtt://broker.cn-shanghai-1.example:1883", "broker.cn-shanghai-1.example",
	              1883, 0);
	/* Scheme and host name are compared without regard to case. */
	assert_parsed("MQTTS://Broker.Example:8883", "broker.example", 8883, 1);
	assert_parsed("Mqtt://h:1", "h", 1, 0);
}

static void test_agent_url_refuses_empty_and_schemeless_text(void **state)
{
	assert_refused("");
	assert_refused("127.0.0.1:1883");
	assert_refused("//127.0.0.1:1883");
	assert_refused("mqtt:/127.0.0.1:1883");
	assert_refused("mqtt:127.0.0.1:1883");
	assert_refused("tcp://127.0.0.1:1883");
	assert_refused("http://127.0.0.1:1883");
	assert_refused("mqttss://127.0.0.1:1883");
	assert_refused("mqtt://");
	assert_refused("mqtt:///");
	assert_refused(" mqtt://h:1");
	int port = 7, tls = 7;
	char host[8] = "x";
	assert_int_equal(agent_parse_mqtt_url(NULL, host, sizeof host, &port, &tls),
	                 DM_ERR_INVALID);
	assert_string_equal(host, "");
	assert_int_equal(port, 0);
}

static void test_agent_url_refuses_userinfo_path_query_and_fragment(void **state)
{
	assert_refused("mqtt://user@127.0.0.1:1883");
	assert_refused("mqtt://user:pass@127.0.0.1:1883");
	assert_refused("mqtt://@127.0.0.1:1883");
	assert_refused("mqtt://127.0.0.1:1883/path");
	assert_refused("mqtt://127.0.0.1:1883?x=1");
	assert_refused("mqtt://127.0.0.1:1883#f");
	assert_refused("mqtt://127.0.0.1:1883 ");
	assert_refused("mqtt://exa mple:1883");
	assert_refused("mqtt://ex_ample:1883");
	assert_refused("mqtt://%31.0.0.1:1883");
}

static void test_agent_url_takes_one_trailing_slash_only(void **state)
{
	assert_parsed("mqtt://127.0.0.1:1883/", "127.0.0.1", 1883, 0);
	assert_parsed("mqtt://[::1]:1883/", "::1", 1883, 0);
	assert_refused("mqtt://127.0.0.1:1883//");
	assert_refused("mqtt://127.0.0.1/");
	assert_refused("mqtt://127.0.0.1:/");
}

static void test_agent_url_port_is_1_to_65535_in_plain_decimal(void **state)
{
	assert_parsed("mqtt://h:1", "h", 1, 0);
	assert_parsed("mqtt://h:65535", "h", 65535, 0);
	assert_refused("mqtt://h:0");
	assert_refused("mqtt://h:65536");
	assert_refused("mqtt://h:99999");
	assert_refused("mqtt://h:100000");
	assert_refused("mqtt://h");
	assert_refused("mqtt://h:");
	assert_refused("mqtt://h:01883");
	assert_refused("mqtt://h:+1883");
	assert_refused("mqtt://h:-1");
	assert_refused("mqtt://h:18a3");
	assert_refused("mqtt://h:0x50");
	assert_refused("mqtt://h:1883:1883");
	assert_refused("mqtt://:1883");
}

static void test_agent_url_reads_ipv6_in_brackets_in_one_spelling(void **state)
{
	assert_parsed("mqtt://[::1]:1883", "::1", 1883, 0);
	assert_parsed("mqtts://[2001:DB8:0:0:0:0:0:1]:8883", "2001:db8::1", 8883, 1);
	assert_parsed("mqtt://[::ffff:127.0.0.1]:1883", "::ffff:127.0.0.1", 1883, 0);
	assert_refused("mqtt://::1:1883");
	assert_refused("mqtt://[::1]1883");
	assert_refused("mqtt://[::1]:");
	assert_refused("mqtt://[::1");
	assert_refused("mqtt://[]:1883");
	assert_refused("mqtt://[127.0.0.1]:1883");
	assert_refused("mqtt://[fe80::1%eth0]:1883");
	assert_refused("mqtt://[::g]:1883");
	assert_refused("mqtt://[::1]x:1883");
}

static void test_agent_url_host_must_fit_the_buffer(void **state)
{
	char url[300], host[16];
	int port, tls;
	/* 15 bytes and the NUL fit in 16; 16 do not. */
	snprintf(url, sizeof url, "mqtt://%s:1883", "abcdefghijklmno");
	assert_int_equal(agent_parse_mqtt_url(url, host, sizeof host, &port, &tls), DM_OK);
	assert_string_equal(host, "abcdefghijklmno");
	snprintf(url, sizeof url, "mqtt://%s:1883", "abcdefghijklmnop");
	assert_int_equal(agent_parse_mqtt_url(url, host, sizeof host, &port, &tls), DM_ERR_INVALID);
	assert_string_equal(host, "");
	/* A name longer than any DNS name is refused whatever the buffer. */
	memcpy(url, "mqtt://", 7);
	memset(url + 7, 'a', 280);
	memcpy(url + 287, ":1", 3);
	struct parsed p = parse(url);
	assert_int_equal(p.rc, DM_ERR_INVALID);
}

static void test_agent_redirect_refusals_have_their_summary_names(void **state)
{
	assert_string_equal(agent_redirect_refusal_name(AGENT_REDIRECT_NOT_IN_TOPOLOGY),
	                    "redirect_not_in_topology");
	assert_string_equal(agent_redirect_refusal_name(AGENT_REDIRECT_TOO_MANY),
	                    "too_many_redirects");
	assert_string_equal(agent_redirect_refusal_name(AGENT_REDIRECT_NO_REFERENCE),
	                    "redirect_without_reference");
	assert_string_equal(agent_redirect_refusal_name(AGENT_REDIRECT_UNSUPPORTED_SCHEME),
	                    "redirect_unsupported_scheme");
	assert_string_equal(agent_redirect_refusal_name(AGENT_REDIRECT_REFUSAL_COUNT), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_route_values_stay_in_their_ranges_for_a_day),
	    cmocka_unit_test(test_route_values_lie_within_the_signal_catalog),
	    cmocka_unit_test(test_route_odometer_agrees_with_speed_and_positions),
	    cmocka_unit_test(test_route_battery_drains_with_distance_only),
	    cmocka_unit_test(test_route_heading_changes_smoothly),
	    cmocka_unit_test(test_route_is_deterministic_by_seed),
	    cmocka_unit_test(test_route_starts_where_it_is_placed),
	    cmocka_unit_test(test_route_refuses_configs_out_of_range),
	    cmocka_unit_test(test_route_reports_nomem),
	    cmocka_unit_test(test_route_odd_step_lengths_keep_the_odometer_exact),
	    cmocka_unit_test(test_agent_url_reads_plain_and_tls_endpoints),
	    cmocka_unit_test(test_agent_url_refuses_empty_and_schemeless_text),
	    cmocka_unit_test(test_agent_url_refuses_userinfo_path_query_and_fragment),
	    cmocka_unit_test(test_agent_url_takes_one_trailing_slash_only),
	    cmocka_unit_test(test_agent_url_port_is_1_to_65535_in_plain_decimal),
	    cmocka_unit_test(test_agent_url_reads_ipv6_in_brackets_in_one_spelling),
	    cmocka_unit_test(test_agent_url_host_must_fit_the_buffer),
	    cmocka_unit_test(test_agent_redirect_refusals_have_their_summary_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
