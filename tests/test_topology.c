/*
 * test_topology.c — the topology file: every message a person may read,
 * every limit (one below, at, one above), home sites that stay put, and the
 * redirect check a vehicle relies on to keep its data in its country.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "residency/topology.h"
#include "util/alloc.h"
#include "util/err.h"

#define CN_1 "site CN cn-shanghai-1 mqtt://10.1.0.5:1883 http://10.1.0.5:8080\n"
#define CN_2 "site CN cn-beijing-1 mqtts://mqtt.bj.example.cn:8883 https://api.bj.example.cn:443\n"
#define CN_3 "site CN cn-guangzhou-1 mqtt://[2001:db8::5]:1883 http://[2001:db8::5]:8080\n"
#define DE_1 "site DE de-frankfurt-1 mqtts://10.2.0.7:8883 https://10.2.0.7:8443\n"

/* Parses exactly len bytes from a heap copy with nothing after it, so ASan
 * catches any read past the end (the parser must not look for a NUL). */
static int parse_bytes(const char *text, size_t len, struct topology **out, char *err,
		       size_t err_len)
{
	char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, text, len);
	int rc = topology_parse("topology", copy, len, out, err, err_len);
	free(copy);
	return rc;
}

static int parse(const char *text, struct topology **out, char *err, size_t err_len)
{
	return parse_bytes(text, strlen(text), out, err, err_len);
}

static struct topology *parse_ok(const char *text)
{
	struct topology *topology = (struct topology *)&topology; /* must be replaced */
	char err[512] = "stale";
	int rc = parse(text, &topology, err, sizeof err);
	if (rc != DM_OK)
		fail_msg("refused: %s", err);
	assert_string_equal(err, "");
	assert_non_null(topology);
	return topology;
}

/* Expects `text` to fail with exactly `message`, leaving *out NULL. */
static void expect_error(const char *text, const char *message)
{
	struct topology *topology = (struct topology *)&topology;
	char err[512];
	assert_int_equal(parse(text, &topology, err, sizeof err), DM_ERR_INVALID);
	assert_null(topology);
	assert_string_equal(err, message);
}

/* Expects CN_1 followed by `line` (line 2) to fail with `message` after
 * "topology:2: ". */
static void expect_line_error(const char *line, const char *message)
{
	char text[2048], expected[1024];
	snprintf(text, sizeof text, "%s%s\n", CN_1, line);
	snprintf(expected, sizeof expected, "topology:2: %s", message);
	expect_error(text, expected);
}

/* A site line with the given URLs, for URL checks (line 2 after CN_1). */
static void expect_url_error(const char *mqtt_url, const char *api_url, const char *message)
{
	char line[1024];
	snprintf(line, sizeof line, "site DE de-1 %s %s", mqtt_url, api_url);
	expect_line_error(line, message);
}

static void expect_url_ok(const char *mqtt_url, const char *api_url, const char *mqtt_normal,
			  const char *api_normal)
{
	char text[2048];
	snprintf(text, sizeof text, "site DE de-1 %s %s\n", mqtt_url, api_url);
	struct topology *topology = parse_ok(text);
	const struct topology_site *site = topology_get(topology, 0);
	assert_string_equal(site->mqtt_url, mqtt_normal);
	assert_string_equal(site->api_url, api_normal);
	topology_free(topology);
}

/* A string of `len` copies of c, which the caller frees. */
static char *repeat(char c, size_t len)
{
	char *s = malloc(len + 1);
	assert_non_null(s);
	memset(s, c, len);
	s[len] = '\0';
	return s;
}

/* `count` distinct site lines of jurisdiction CN, which the caller frees. */
static char *many_sites(size_t count)
{
	size_t cap = count * 80 + 1, used = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	text[0] = '\0';
	for (size_t i = 0; i < count; i++)
		used += (size_t)snprintf(text + used, cap - used,
					 "site CN cn-%zu mqtt://10.0.%zu.%zu:1883 "
					 "http://10.0.%zu.%zu:8080\n",
					 i, i / 256, i % 256, i / 256, i % 256);
	return text;
}

static void vin_of(size_t serial, char vin[18])
{
	snprintf(vin, 18, "LSVAB2BJ5M%07zu", serial);
}

static void test_topology_reads_sites_in_order_with_comments_tabs_and_crlf(void **state)
{
	const char *text = "\xef\xbb\xbf# domicile topology\r\n"
			   "\r\n"
			   "  site\tCN  cn-shanghai-1\tmqtt://10.1.0.5:1883 "
			   "http://10.1.0.5:8080 # SH\r\n"
			   "\t# Frankfurt\r\n"
			   "site DE de-frankfurt-1 mqtts://10.2.0.7:8883 https://10.2.0.7:8443";
	struct topology *topology = parse_ok(text);
	assert_int_equal(topology_count(topology), 2);

	const struct topology_site *site = topology_get(topology, 0);
	assert_string_equal(site->jurisdiction, "CN");
	assert_string_equal(site->id, "cn-shanghai-1");
	assert_string_equal(site->mqtt_url, "mqtt://10.1.0.5:1883");
	assert_string_equal(site->mqtt_host, "10.1.0.5");
	assert_int_equal(site->mqtt_port, 1883);
	assert_int_equal(site->mqtt_tls, 0);
	assert_string_equal(site->api_url, "http://10.1.0.5:8080");
	assert_string_equal(site->api_host, "10.1.0.5");
	assert_int_equal(site->api_port, 8080);
	assert_int_equal(site->api_tls, 0);
	assert_int_equal(site->line, 3);

	site = topology_get(topology, 1);
	assert_string_equal(site->jurisdiction, "DE");
	assert_string_equal(site->id, "de-frankfurt-1");
	assert_int_equal(site->mqtt_tls, 1);
	assert_int_equal(site->mqtt_port, 8883);
	assert_int_equal(site->api_tls, 1);
	assert_int_equal(site->api_port, 8443);
	assert_int_equal(site->line, 5);

	assert_null(topology_get(topology, 2));
	topology_free(topology);
	topology_free(NULL);
}

static void test_topology_keeps_urls_in_normal_form(void **state)
{
	expect_url_ok("MQTT://Broker.Example.CN:1883/", "HTTPS://API.example.cn:443/",
		      "mqtt://broker.example.cn:1883", "https://api.example.cn:443");
	expect_url_ok("mqtts://[2001:DB8:0:0:0:0:0:5]:8883", "http://[::FFFF:10.1.0.5]:80",
		      "mqtts://[2001:db8::5]:8883", "http://[::ffff:10.1.0.5]:80");
	expect_url_ok("mqtt://localhost:1", "http://localhost:65535", "mqtt://localhost:1",
		      "http://localhost:65535");

	struct topology *topology = parse_ok(CN_3);
	const struct topology_site *site = topology_get(topology, 0);
	assert_string_equal(site->mqtt_host, "2001:db8::5");
	assert_string_equal(site->api_host, "2001:db8::5");
	topology_free(topology);
}

static void test_topology_finds_several_sites_per_jurisdiction_in_file_order(void **state)
{
	struct topology *topology = parse_ok(CN_1 DE_1 CN_2 CN_3);
	assert_int_equal(topology_count(topology), 4);

	const struct topology_site *sites[4];
	assert_int_equal(topology_sites_of(topology, "CN", sites, 4), 3);
	assert_string_equal(sites[0]->id, "cn-shanghai-1");
	assert_string_equal(sites[1]->id, "cn-beijing-1");
	assert_string_equal(sites[2]->id, "cn-guangzhou-1");
	/* The count is the whole jurisdiction even when out[] is smaller. */
	sites[1] = NULL;
	assert_int_equal(topology_sites_of(topology, "CN", sites, 1), 3);
	assert_null(sites[1]);
	assert_int_equal(topology_sites_of(topology, "CN", NULL, 0), 3);
	assert_int_equal(topology_sites_of(topology, "DE", sites, 4), 1);
	assert_string_equal(sites[0]->id, "de-frankfurt-1");
	assert_int_equal(topology_sites_of(topology, "US", sites, 4), 0);
	assert_int_equal(topology_sites_of(topology, "cn", sites, 4), 0);

	assert_true(topology_has_jurisdiction(topology, "CN"));
	assert_true(topology_has_jurisdiction(topology, "DE"));
	assert_false(topology_has_jurisdiction(topology, "US"));
	assert_false(topology_has_jurisdiction(topology, ""));

	assert_ptr_equal(topology_find_site(topology, "cn-beijing-1"), topology_get(topology, 2));
	assert_ptr_equal(topology_find_site(topology, "de-frankfurt-1"), topology_get(topology, 1));
	assert_null(topology_find_site(topology, "cn-beijing"));
	assert_null(topology_find_site(topology, "CN-BEIJING-1"));
	assert_null(topology_find_site(topology, NULL));
	topology_free(topology);
}

static void test_topology_refuses_an_unknown_directive(void **state)
{
	expect_line_error("sites CN cn-2 mqtt://a.example:1 http://a.example:2",
			  "unknown directive 'sites' (a line is 'site JURISDICTION SITE_ID "
			  "MQTT_URL API_URL')");
	expect_line_error("Site CN cn-2 mqtt://a.example:1 http://a.example:2",
			  "unknown directive 'Site' (a line is 'site JURISDICTION SITE_ID "
			  "MQTT_URL API_URL')");
	expect_error("jurisdiction CN\n", "topology:1: unknown directive 'jurisdiction' (a line "
					  "is 'site JURISDICTION SITE_ID MQTT_URL API_URL')");
}

static void test_topology_refuses_a_wrong_field_count(void **state)
{
	expect_line_error("site", "'site' needs 4 fields (JURISDICTION SITE_ID MQTT_URL "
				  "API_URL), got 0");
	expect_line_error("site CN cn-2 mqtt://a.example:1",
			  "'site' needs 4 fields (JURISDICTION SITE_ID MQTT_URL API_URL), got 3");
	expect_line_error("site CN cn-2 mqtt://a.example:1 http://a.example:2 extra more",
			  "'site' needs 4 fields (JURISDICTION SITE_ID MQTT_URL API_URL), got 6");
	/* A comment needs a blank before it; "#" inside a word is part of it. */
	expect_line_error("site CN cn-2 mqtt://a.example:1 # http://a.example:2",
			  "'site' needs 4 fields (JURISDICTION SITE_ID MQTT_URL API_URL), got 3");
}

static void test_topology_checks_the_jurisdiction(void **state)
{
	const char *message = "jurisdiction must be two upper-case letters (ISO 3166 "
			      "alpha-2), got '%s'";
	const char *bad[] = {"cn", "Cn", "C", "CHN", "C1", "--"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char line[256], expected[256];
		snprintf(line, sizeof line, "site %s cn-2 mqtt://a.example:1 http://a.example:2",
			 bad[i]);
		snprintf(expected, sizeof expected, message, bad[i]);
		expect_line_error(line, expected);
	}
}

static void test_topology_checks_the_site_id_and_its_length(void **state)
{
	const char *message = "site id must be made of a-z, 0-9 and '-', not starting or "
			      "ending with '-', got '%s'";
	const char *bad[] = {"-cn", "cn-", "cn_1", "CN-1", "cn.1", "cn/1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char line[256], expected[256];
		snprintf(line, sizeof line, "site CN %s mqtt://a.example:1 http://a.example:2",
			 bad[i]);
		snprintf(expected, sizeof expected, message, bad[i]);
		expect_line_error(line, expected);
	}

	for (size_t len = 62; len <= 64; len++) {
		char *id = repeat('a', len);
		char text[512];
		snprintf(text, sizeof text, "site CN %s mqtt://a.example:1 http://a.example:2\n",
			 id);
		if (len <= 63) {
			struct topology *topology = parse_ok(text);
			assert_string_equal(topology_get(topology, 0)->id, id);
			topology_free(topology);
		} else {
			expect_error(text, "topology:1: site id is 64 characters long, at most 63 "
					   "are allowed");
		}
		free(id);
	}
}

static void test_topology_refuses_a_duplicate_site_id_naming_the_earlier_line(void **state)
{
	expect_error("# two sites\n" CN_1 DE_1
		     "site CN cn-shanghai-1 mqtt://10.1.0.6:1883 http://10.1.0.6:8080\n",
		     "topology:4: duplicate site id 'cn-shanghai-1' (first defined on line 2)");
	/* Across jurisdictions too: a site id is unique in the whole file. */
	expect_error(CN_1 "site DE cn-shanghai-1 mqtt://10.2.0.6:1883 http://10.2.0.6:8080\n",
		     "topology:2: duplicate site id 'cn-shanghai-1' (first defined on line 1)");
}

static void test_topology_refuses_an_endpoint_of_two_sites(void **state)
{
	/* The same broker in two jurisdictions would let a redirect to it pass
	 * for either; in any spelling, whatever the scheme. */
	expect_line_error("site DE de-1 MQTTS://10.1.0.5:1883/ https://10.2.0.5:443",
			  "MQTT_URL mqtts://10.1.0.5:1883 is the MQTT endpoint of site "
			  "'cn-shanghai-1' (line 1) already");
	expect_line_error("site DE de-1 mqtt://10.2.0.5:1883 https://10.1.0.5:8080",
			  "API_URL https://10.1.0.5:8080 is the API endpoint of site "
			  "'cn-shanghai-1' (line 1) already");
	/* Another port of the same host is another endpoint. */
	struct topology *topology =
		parse_ok(CN_1 "site CN cn-shanghai-2 mqtt://10.1.0.5:1884 http://10.1.0.5:8081\n");
	assert_int_equal(topology_count(topology), 2);
	topology_free(topology);
}

static void test_topology_refuses_bad_urls_saying_what_was_expected(void **state)
{
	const char *api = "http://10.2.0.5:8080";
	const char *mqtt = "mqtt://10.2.0.5:1883";
	expect_url_error("10.2.0.5:1883", api,
			 "MQTT_URL must be mqtt://HOST:PORT or mqtts://HOST:PORT, e.g. "
			 "mqtt://10.1.0.5:1883, got '10.2.0.5:1883'");
	expect_url_error(mqtt, "10.2.0.5:8080",
			 "API_URL must be http://HOST:PORT or https://HOST:PORT, e.g. "
			 "http://10.1.0.5:8080, got '10.2.0.5:8080'");
	expect_url_error("http://10.2.0.5:1883", api,
			 "MQTT_URL scheme must be mqtt or mqtts, got 'http'");
	expect_url_error("ws://10.2.0.5:1883", api,
			 "MQTT_URL scheme must be mqtt or mqtts, got 'ws'");
	expect_url_error(mqtt, "mqtt://10.2.0.5:8080",
			 "API_URL scheme must be http or https, got 'mqtt'");
	expect_url_error("mqtt://10.2.0.5:1883/topic", api,
			 "MQTT_URL must not have a path, query or fragment (only "
			 "mqtt://10.1.0.5:1883), got 'mqtt://10.2.0.5:1883/topic'");
	expect_url_error(mqtt, "http://10.2.0.5:8080/v1",
			 "API_URL must not have a path, query or fragment (only "
			 "http://10.1.0.5:8080), got 'http://10.2.0.5:8080/v1'");
	expect_url_error("mqtt://10.2.0.5:1883//", api,
			 "MQTT_URL must not have a path, query or fragment (only "
			 "mqtt://10.1.0.5:1883), got 'mqtt://10.2.0.5:1883//'");
	expect_url_error("mqtt://10.2.0.5:1883?x=1", api,
			 "MQTT_URL must not have a path, query or fragment (only "
			 "mqtt://10.1.0.5:1883), got 'mqtt://10.2.0.5:1883?x=1'");
	expect_url_error("mqtt://10.2.0.5:1883#f", api,
			 "MQTT_URL must not have a path, query or fragment (only "
			 "mqtt://10.1.0.5:1883), got 'mqtt://10.2.0.5:1883#f'");
	expect_url_error("mqtt://user:pw@10.2.0.5:1883", api,
			 "MQTT_URL must not have user info ('@'), got "
			 "'mqtt://user:pw@10.2.0.5:1883'");
	expect_url_error("mqtt://", api, "MQTT_URL has no host, e.g. mqtt://10.1.0.5:1883");
	expect_url_error("mqtt://10.2.0.5", api,
			 "MQTT_URL needs a port (HOST:PORT), e.g. mqtt://10.1.0.5:1883, got "
			 "'mqtt://10.2.0.5'");
	expect_url_error("mqtt://:1883", api,
			 "MQTT_URL has no host before the port, e.g. mqtt://10.1.0.5:1883");
	expect_url_error("mqtt://2001:db8::1:1883", api,
			 "MQTT_URL: an IPv6 address needs brackets, e.g. mqtt://[::1]:1883");
	expect_url_error("mqtt://[2001:db8::1]", api,
			 "MQTT_URL needs a port after the address, e.g. mqtt://[::1]:1883");
	expect_url_error("mqtt://[2001:db8::1", api,
			 "MQTT_URL has '[' without ']': 'mqtt://[2001:db8::1'");
	expect_url_error("mqtt://[2001:db8::g]:1883", api,
			 "MQTT_URL: '2001:db8::g' is not an IPv6 address");
	expect_url_error("mqtt://[fe80::1%eth0]:1883", api,
			 "MQTT_URL: 'fe80::1%eth0' is not an IPv6 address");
	expect_url_error("mqtt://10.2.0.256:1883", api,
			 "MQTT_URL: '10.2.0.256' is not an IPv4 address");
	expect_url_error("mqtt://10.2.0.05:1883", api,
			 "MQTT_URL: '10.2.0.05' is not an IPv4 address");
	expect_url_error("mqtt://10.2.5:1883", api, "MQTT_URL: '10.2.5' is not an IPv4 address");
	expect_url_error("mqtt://0x0a.2.0.5:1883", api,
			 "MQTT_URL: '0x0a.2.0.5' is not a valid host name (labels of letters, "
			 "digits and '-', the last starting with a letter)");
	expect_url_error("mqtt://broker_1.example:1883", api,
			 "MQTT_URL: 'broker_1.example' is not a valid host name (labels of "
			 "letters, digits and '-', the last starting with a letter)");
	expect_url_error("mqtt://broker.example.:1883", api,
			 "MQTT_URL: 'broker.example.' is not a valid host name (labels of "
			 "letters, digits and '-', the last starting with a letter)");
	expect_url_error("mqtt://-broker.example:1883", api,
			 "MQTT_URL: '-broker.example' is not a valid host name (labels of "
			 "letters, digits and '-', the last starting with a letter)");
	const char *port_message = "MQTT_URL port must be a number from 1 to 65535 without "
				   "leading zeros, got '%s'";
	const char *bad_ports[] = {"0", "65536", "01883", "18a3", "", "-1", "999999"};
	for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
		char url[64], expected[256];
		snprintf(url, sizeof url, "mqtt://10.2.0.5:%s", bad_ports[i]);
		snprintf(expected, sizeof expected, port_message, bad_ports[i]);
		expect_url_error(url, api, expected);
	}
}

static void test_topology_limits_urls_to_255_bytes_and_labels_to_63(void **state)
{
	/* mqtt:// (7) + host + :1883 (5); labels of 63 and a short last one. */
	for (size_t len = 254; len <= 256; len++) {
		size_t host_len = len - 12;
		char *host = repeat('a', host_len);
		for (size_t i = 63; i < host_len; i += 64)
			host[i] = '.';
		host[host_len - 2] = '.'; /* the last label starts with a letter */
		char url[300], text[700];
		snprintf(url, sizeof url, "mqtt://%s:1883", host);
		snprintf(text, sizeof text, "site CN cn-1 %s http://10.1.0.5:8080\n", url);
		if (len <= 255) {
			struct topology *topology = parse_ok(text);
			assert_string_equal(topology_get(topology, 0)->mqtt_url, url);
			topology_free(topology);
		} else {
			expect_error(text, "topology:1: MQTT_URL is too long (256 bytes, at most "
					   "255)");
		}
		free(host);
	}
	char *label = repeat('a', 64);
	char text[256];
	snprintf(text, sizeof text, "site CN cn-1 mqtt://%s.cn:1883 http://10.1.0.5:8080\n",
		 label);
	struct topology *topology = (struct topology *)&topology;
	char err[512];
	assert_int_equal(parse(text, &topology, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "is not a valid host name"));
	label[63] = '\0';
	snprintf(text, sizeof text, "site CN cn-1 mqtt://%s.cn:1883 http://10.1.0.5:8080\n",
		 label);
	topology = parse_ok(text);
	topology_free(topology);
	free(label);
}

static void test_topology_refuses_a_file_without_sites(void **state)
{
	const char *message = "topology: no sites (a line is 'site JURISDICTION SITE_ID "
			      "MQTT_URL API_URL')";
	expect_error("", message);
	expect_error("# only comments\n\n   \t\n# site CN cn-1 mqtt://a:1 http://a:2\n", message);
	expect_error("\xef\xbb\xbf", message);
}

static void test_topology_refuses_nul_and_control_bytes(void **state)
{
	struct topology *topology = (struct topology *)&topology;
	char err[256];
	const char text[] = CN_1 "site DE de\0-1 mqtt://a.example:1 http://a.example:2\n";
	assert_int_equal(parse_bytes(text, sizeof text - 1, &topology, err, sizeof err),
			 DM_ERR_INVALID);
	assert_null(topology);
	assert_string_equal(err, "topology:2: NUL byte at column 11");

	expect_line_error("site DE de-1 mqtt://a.example:1\r http://a.example:2",
			  "control character 0x0d at column 32");
	expect_line_error("site DE de-1\x1b mqtt://a.example:1 http://a.example:2",
			  "control character 0x1b at column 13");
	expect_line_error("# a comment is checked too \x7f", "control character 0x7f at column 28");
}

static void test_topology_line_length_limit_is_exact(void **state)
{
	const char *site = "site CN cn-1 mqtt://10.1.0.5:1883 http://10.1.0.5:8080 #";
	for (size_t len = TOPOLOGY_LINE_MAX - 1; len <= TOPOLOGY_LINE_MAX + 1; len++) {
		char *line = repeat('x', len);
		memcpy(line, site, strlen(site));
		char *text = malloc(len + 3);
		assert_non_null(text);
		for (int crlf = 0; crlf <= 1; crlf++) {
			/* The line end is not counted. */
			snprintf(text, len + 3, "%s%s", line, crlf ? "\r\n" : "\n");
			struct topology *topology = (struct topology *)&topology;
			char err[256];
			int rc = parse(text, &topology, err, sizeof err);
			if (len <= TOPOLOGY_LINE_MAX) {
				assert_int_equal(rc, DM_OK);
				assert_int_equal(topology_count(topology), 1);
				topology_free(topology);
			} else {
				assert_int_equal(rc, DM_ERR_INVALID);
				assert_null(topology);
				assert_string_equal(err, "topology:1: line is too long (1025 "
							 "bytes, at most 1024)");
			}
		}
		free(text);
		free(line);
	}
}

static void test_topology_site_count_limit_is_exact(void **state)
{
	for (size_t count = TOPOLOGY_SITES_MAX - 1; count <= TOPOLOGY_SITES_MAX + 1; count++) {
		char *text = many_sites(count);
		struct topology *topology = (struct topology *)&topology;
		char err[256];
		int rc = parse(text, &topology, err, sizeof err);
		if (count <= TOPOLOGY_SITES_MAX) {
			assert_int_equal(rc, DM_OK);
			assert_int_equal(topology_count(topology), count);
			assert_int_equal(topology_sites_of(topology, "CN", NULL, 0), count);
			assert_string_equal(topology_get(topology, count - 1)->id,
					    count == TOPOLOGY_SITES_MAX ? "cn-1023" : "cn-1022");
			topology_free(topology);
		} else {
			assert_int_equal(rc, DM_ERR_INVALID);
			assert_null(topology);
			assert_string_equal(err, "topology:1025: too many sites (at most 1024)");
		}
		free(text);
	}
}

static void test_topology_text_size_limit_is_exact(void **state)
{
	/* One site, then comment lines up to the size. */
	for (size_t len = TOPOLOGY_FILE_MAX - 1; len <= TOPOLOGY_FILE_MAX + 1; len++) {
		char *text = repeat('#', len);
		for (size_t i = 999; i < len; i += 1000)
			text[i] = '\n';
		memcpy(text, CN_1, strlen(CN_1));
		struct topology *topology = (struct topology *)&topology;
		char err[256];
		int rc = parse_bytes(text, len, &topology, err, sizeof err);
		if (len <= TOPOLOGY_FILE_MAX) {
			assert_int_equal(rc, DM_OK);
			topology_free(topology);
		} else {
			assert_int_equal(rc, DM_ERR_TOO_LARGE);
			assert_null(topology);
			assert_string_equal(err, "topology: file is larger than 2099200 bytes");
		}
		free(text);
	}
}

static void test_topology_truncates_the_message_to_the_buffer(void **state)
{
	struct topology *topology;
	char err[16];
	assert_int_equal(parse("bogus\n", &topology, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "topology:1: unk");
	assert_int_equal(parse("bogus\n", &topology, NULL, 0), DM_ERR_INVALID);
	assert_null(topology);
}

/* Writes text to a new temporary file; the caller unlinks and frees the path. */
static char *write_temp(const char *text, size_t len)
{
	char *path = strdup("/tmp/test_topology_XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_topology_loads_a_file_and_names_it_in_messages(void **state)
{
	char *path = write_temp(CN_1 CN_2 DE_1, strlen(CN_1 CN_2 DE_1));
	struct topology *topology = NULL;
	char err[512] = "stale";
	assert_int_equal(topology_load(path, &topology, err, sizeof err), DM_OK);
	assert_string_equal(err, "");
	assert_int_equal(topology_count(topology), 3);
	topology_free(topology);
	unlink(path);
	free(path);

	path = write_temp(CN_1 CN_1, strlen(CN_1 CN_1));
	char expected[512];
	snprintf(expected, sizeof expected,
		 "%s:2: duplicate site id 'cn-shanghai-1' (first defined on line 1)", path);
	assert_int_equal(topology_load(path, &topology, err, sizeof err), DM_ERR_INVALID);
	assert_null(topology);
	assert_string_equal(err, expected);
	unlink(path);
	free(path);
}

static void test_topology_load_reports_a_missing_file_as_io(void **state)
{
	struct topology *topology = (struct topology *)&topology;
	char err[256];
	assert_int_equal(topology_load("/nonexistent/topology", &topology, err, sizeof err),
			 DM_ERR_IO);
	assert_null(topology);
	assert_string_equal(err, "/nonexistent/topology: cannot open: No such file or directory");
}

static void test_topology_load_file_size_limit_is_exact(void **state)
{
	for (size_t len = TOPOLOGY_FILE_MAX; len <= TOPOLOGY_FILE_MAX + 1; len++) {
		char *text = repeat('#', len);
		for (size_t i = 999; i < len; i += 1000)
			text[i] = '\n';
		memcpy(text, CN_1, strlen(CN_1));
		char *path = write_temp(text, len);
		struct topology *topology = (struct topology *)&topology;
		char err[512];
		int rc = topology_load(path, &topology, err, sizeof err);
		if (len == TOPOLOGY_FILE_MAX) {
			assert_int_equal(rc, DM_OK);
			topology_free(topology);
		} else {
			char expected[512];
			snprintf(expected, sizeof expected, "%s: file is larger than 2099200 bytes",
				 path);
			assert_int_equal(rc, DM_ERR_TOO_LARGE);
			assert_null(topology);
			assert_string_equal(err, expected);
		}
		unlink(path);
		free(path);
		free(text);
	}
}

static void test_topology_survives_allocation_failure_at_every_step(void **state)
{
	char *text = many_sites(40);
	char *path = write_temp(text, strlen(text));
	/* Fail the 1st, 2nd, ... allocation until loading needs no more. */
	for (long fail_after = 0;; fail_after++) {
		struct topology *topology = (struct topology *)&topology;
		char err[512];
		dm_alloc_fail_after(fail_after);
		int rc = topology_load(path, &topology, err, sizeof err);
		dm_alloc_fail_after(-1);
		if (rc == DM_OK) {
			assert_int_equal(topology_count(topology), 40);
			topology_free(topology);
			assert_true(fail_after > 2);
			break;
		}
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_null(topology);
		assert_non_null(strstr(err, "out of memory"));
	}
	for (long fail_after = 0;; fail_after++) {
		struct topology *topology = (struct topology *)&topology;
		dm_alloc_fail_after(fail_after);
		int rc = topology_single("CN", "cn-1", "mqtt://a.example:1", "http://a.example:2",
					 &topology);
		dm_alloc_fail_after(-1);
		if (rc == DM_OK) {
			topology_free(topology);
			break;
		}
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_null(topology);
	}
	unlink(path);
	free(path);
	free(text);
}

static void test_topology_single_builds_one_site_and_checks_its_fields(void **state)
{
	struct topology *topology = NULL;
	assert_int_equal(topology_single("CN", "cn-shanghai-1", "MQTTS://Node.Example:8883/",
					 "https://node.example:8443", &topology),
			 DM_OK);
	assert_int_equal(topology_count(topology), 1);
	const struct topology_site *site = topology_get(topology, 0);
	assert_string_equal(site->jurisdiction, "CN");
	assert_string_equal(site->id, "cn-shanghai-1");
	assert_string_equal(site->mqtt_url, "mqtts://node.example:8883");
	assert_int_equal(site->mqtt_tls, 1);
	assert_int_equal(site->line, 0);
	assert_ptr_equal(topology_find_site(topology, "cn-shanghai-1"), site);
	assert_ptr_equal(topology_home_site(topology, "CN", "LSVAB2BJ5M0000001"), site);
	assert_true(topology_endpoint_allowed(topology, "CN", "mqtts://node.example:8883"));
	topology_free(topology);

	const char *bad[][4] = {
		{"cn", "cn-1", "mqtt://a.example:1", "http://a.example:2"},
		{"CN", "cn_1", "mqtt://a.example:1", "http://a.example:2"},
		{"CN", "", "mqtt://a.example:1", "http://a.example:2"},
		{"CN", "cn-1", "http://a.example:1", "http://a.example:2"},
		{"CN", "cn-1", "mqtt://a.example:1", "mqtt://a.example:2"},
		{"CN", "cn-1", "mqtt://a.example", "http://a.example:2"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		topology = (struct topology *)&topology;
		assert_int_equal(topology_single(bad[i][0], bad[i][1], bad[i][2], bad[i][3],
						 &topology),
				 DM_ERR_INVALID);
		assert_null(topology);
	}
	assert_int_equal(topology_single("CN", NULL, "mqtt://a.example:1", "http://a.example:2",
					 &topology),
			 DM_ERR_INVALID);
	assert_null(topology);
}

static void test_topology_rendezvous_weight_is_the_documented_hash(void **state)
{
	/* Known answers from an independent implementation of topology.h's
	 * definition: a change here moves vehicles. */
	assert_int_equal(topology_rendezvous_weight("LSVAB2BJ5M2000001", "cn-shanghai-1"),
			 0x29701e13b935075dULL);
	assert_int_equal(topology_rendezvous_weight("LSVAB2BJ5M2000001", "cn-beijing-1"),
			 0x60f4a4af014a7f97ULL);
	assert_int_equal(topology_rendezvous_weight("WBA8E9C50GK000002", "de-frankfurt-1"),
			 0x5a292640a2010266ULL);
	assert_int_equal(topology_rendezvous_weight("", ""), 0xb9034ad37056f5fbULL);
	/* The separator keeps the two parts apart. */
	assert_true(topology_rendezvous_weight("AB", "c") != topology_rendezvous_weight("A", "Bc"));
}

static void test_topology_home_site_is_stable_and_inside_the_jurisdiction(void **state)
{
	struct topology *topology = parse_ok(CN_1 DE_1 CN_2 CN_3);
	/* Known answers (same independent implementation). */
	const char *expected[] = {"cn-guangzhou-1", "cn-beijing-1", "cn-guangzhou-1",
				  "cn-guangzhou-1", "cn-guangzhou-1"};
	for (size_t i = 0; i < 5; i++) {
		char vin[18];
		vin_of(i + 1, vin);
		const struct topology_site *site = topology_home_site(topology, "CN", vin);
		assert_non_null(site);
		assert_string_equal(site->id, expected[i]);
	}

	size_t per_site[3] = {0};
	const struct topology_site *cn[3];
	assert_int_equal(topology_sites_of(topology, "CN", cn, 3), 3);
	for (size_t i = 0; i < 3000; i++) {
		char vin[18];
		vin_of(i, vin);
		const struct topology_site *site = topology_home_site(topology, "CN", vin);
		assert_ptr_equal(topology_home_site(topology, "CN", vin), site);
		assert_string_equal(site->jurisdiction, "CN");
		for (size_t s = 0; s < 3; s++)
			per_site[s] += site == cn[s];
		assert_string_equal(topology_home_site(topology, "DE", vin)->id, "de-frankfurt-1");
	}
	/* About a third each (expected 1000, standard deviation about 26). */
	for (size_t s = 0; s < 3; s++)
		assert_in_range(per_site[s], 850, 1150);

	assert_null(topology_home_site(topology, "US", "LSVAB2BJ5M0000001"));
	assert_null(topology_home_site(topology, "CN", NULL));
	topology_free(topology);
}

static void test_topology_home_site_does_not_depend_on_file_order(void **state)
{
	struct topology *forward = parse_ok(CN_1 CN_2 CN_3);
	struct topology *backward = parse_ok(CN_3 DE_1 CN_2 CN_1);
	for (size_t i = 0; i < 1000; i++) {
		char vin[18];
		vin_of(i, vin);
		assert_string_equal(topology_home_site(forward, "CN", vin)->id,
				    topology_home_site(backward, "CN", vin)->id);
	}
	topology_free(forward);
	topology_free(backward);
}

static void test_topology_adding_a_fourth_site_moves_a_quarter_and_only_to_it(void **state)
{
	struct topology *three = parse_ok(CN_1 CN_2 CN_3 DE_1);
	struct topology *four = parse_ok(
		CN_1 CN_2 CN_3 DE_1
		"site CN cn-chengdu-1 mqtt://10.4.0.5:1883 http://10.4.0.5:8080\n");
	size_t moved = 0;
	for (size_t i = 0; i < 10000; i++) {
		char vin[18];
		vin_of(i, vin);
		const struct topology_site *before = topology_home_site(three, "CN", vin);
		const struct topology_site *after = topology_home_site(four, "CN", vin);
		if (strcmp(before->id, after->id) == 0)
			continue;
		assert_string_equal(after->id, "cn-chengdu-1");
		moved++;
	}
	/* Expected 2500, standard deviation about 43. */
	assert_in_range(moved, 2200, 2800);

	/* Removing it again moves exactly those vehicles back. */
	for (size_t i = 0; i < 10000; i++) {
		char vin[18];
		vin_of(i, vin);
		const struct topology_site *after = topology_home_site(four, "CN", vin);
		if (strcmp(after->id, "cn-chengdu-1") != 0)
			assert_string_equal(topology_home_site(three, "CN", vin)->id, after->id);
	}
	topology_free(three);
	topology_free(four);
}

static void test_topology_endpoint_allowed_accepts_the_jurisdictions_own_urls(void **state)
{
	struct topology *topology = parse_ok(CN_1 CN_2 CN_3 DE_1);
	const char *good[] = {
		"mqtt://10.1.0.5:1883",
		"mqtt://10.1.0.5:1883/",
		"MQTT://10.1.0.5:1883",
		"Mqtt://10.1.0.5:1883/",
		"mqtts://mqtt.bj.example.cn:8883",
		"MQTTS://MQTT.BJ.Example.CN:8883/",
		"mqtt://[2001:db8::5]:1883",
		"mqtt://[2001:DB8:0::5]:1883/",
		"mqtt://[2001:db8:0:0:0:0:0:5]:1883",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (!topology_endpoint_allowed(topology, "CN", good[i]))
			fail_msg("'%s' was refused", good[i]);
	assert_true(topology_endpoint_allowed(topology, "DE", "mqtts://10.2.0.7:8883"));
	assert_true(topology_endpoint_allowed(topology, "DE", topology_get(topology, 3)->mqtt_url));
	topology_free(topology);
}

static void test_topology_endpoint_allowed_refuses_everything_else(void **state)
{
	struct topology *topology = parse_ok(CN_1 CN_2 CN_3 DE_1);
	const char *bad[] = {
		/* another jurisdiction's broker */
		"mqtts://10.2.0.7:8883",
		/* lookalike hosts */
		"mqtts://mqtt.bj.example.cn.evil.example:8883",
		"mqtts://mqtt.bj.example.co:8883",
		"mqtts://mqtt-bj.example.cn:8883",
		"mqtts://mqtt.bj.example.cn.:8883",
		"mqtt://10.1.0.50:1883",
		"mqtt://10.1.0.5.evil.example:1883",
		/* other spellings of the same address a resolver might accept */
		"mqtt://010.1.0.5:1883",
		"mqtt://0x0a.1.0.5:1883",
		"mqtt://167837701:1883",
		"mqtt://10.1.5:1883",
		"mqtt://[::ffff:10.1.0.5]:1883",
		/* another port, another scheme, no port */
		"mqtt://10.1.0.5:1884",
		"mqtt://10.1.0.5:01883",
		"mqtts://10.1.0.5:1883",
		"mqtt://mqtt.bj.example.cn:8883",
		"ws://10.1.0.5:1883",
		"http://10.1.0.5:8080",
		"mqtt://10.1.0.5",
		"10.1.0.5:1883",
		/* user info, paths and other tricks */
		"mqtt://10.1.0.5:1883@evil.example:1883",
		"mqtt://evil.example:1883@10.1.0.5:1883",
		"mqtt://user@10.1.0.5:1883",
		"mqtt://10.1.0.5:1883/evil",
		"mqtt://10.1.0.5:1883//",
		"mqtt://10.1.0.5:1883#@evil.example",
		"mqtt://10.1.0.5:1883?@evil.example",
		"mqtt://10.1.0.5:1883\\@evil.example",
		"mqtt://10.1.0.5:1883 ",
		" mqtt://10.1.0.5:1883",
		"mqtt://10.1.0.5:1883\n",
		"mqtt://10.1.0.5\t:1883",
		"mqtt://[2001:db8::5%eth0]:1883",
		"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (topology_endpoint_allowed(topology, "CN", bad[i]))
			fail_msg("'%s' was allowed", bad[i]);
	/* Each jurisdiction's own URLs, asked for the other. */
	assert_false(topology_endpoint_allowed(topology, "DE", "mqtt://10.1.0.5:1883"));
	assert_false(topology_endpoint_allowed(topology, "US", "mqtt://10.1.0.5:1883"));
	assert_false(topology_endpoint_allowed(topology, "cn", "mqtt://10.1.0.5:1883"));
	assert_false(topology_endpoint_allowed(topology, NULL, "mqtt://10.1.0.5:1883"));
	assert_false(topology_endpoint_allowed(topology, "CN", NULL));
	assert_false(topology_endpoint_allowed(NULL, "CN", "mqtt://10.1.0.5:1883"));

	/* A very long candidate is refused without trouble. */
	char *host = repeat('a', 100000);
	char *url = malloc(100020);
	assert_non_null(url);
	snprintf(url, 100020, "mqtt://%s:1883", host);
	assert_false(topology_endpoint_allowed(topology, "CN", url));
	free(url);
	free(host);
	topology_free(topology);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topology_reads_sites_in_order_with_comments_tabs_and_crlf),
		cmocka_unit_test(test_topology_keeps_urls_in_normal_form),
		cmocka_unit_test(test_topology_finds_several_sites_per_jurisdiction_in_file_order),
		cmocka_unit_test(test_topology_refuses_an_unknown_directive),
		cmocka_unit_test(test_topology_refuses_a_wrong_field_count),
		cmocka_unit_test(test_topology_checks_the_jurisdiction),
		cmocka_unit_test(test_topology_checks_the_site_id_and_its_length),
		cmocka_unit_test(test_topology_refuses_a_duplicate_site_id_naming_the_earlier_line),
		cmocka_unit_test(test_topology_refuses_an_endpoint_of_two_sites),
		cmocka_unit_test(test_topology_refuses_bad_urls_saying_what_was_expected),
		cmocka_unit_test(test_topology_limits_urls_to_255_bytes_and_labels_to_63),
		cmocka_unit_test(test_topology_refuses_a_file_without_sites),
		cmocka_unit_test(test_topology_refuses_nul_and_control_bytes),
		cmocka_unit_test(test_topology_line_length_limit_is_exact),
		cmocka_unit_test(test_topology_site_count_limit_is_exact),
		cmocka_unit_test(test_topology_text_size_limit_is_exact),
		cmocka_unit_test(test_topology_truncates_the_message_to_the_buffer),
		cmocka_unit_test(test_topology_loads_a_file_and_names_it_in_messages),
		cmocka_unit_test(test_topology_load_reports_a_missing_file_as_io),
		cmocka_unit_test(test_topology_load_file_size_limit_is_exact),
		cmocka_unit_test(test_topology_survives_allocation_failure_at_every_step),
		cmocka_unit_test(test_topology_single_builds_one_site_and_checks_its_fields),
		cmocka_unit_test(test_topology_rendezvous_weight_is_the_documented_hash),
		cmocka_unit_test(test_topology_home_site_is_stable_and_inside_the_jurisdiction),
		cmocka_unit_test(test_topology_home_site_does_not_depend_on_file_order),
		cmocka_unit_test(test_topology_adding_a_fourth_site_moves_a_quarter_and_only_to_it),
		cmocka_unit_test(test_topology_endpoint_allowed_accepts_the_jurisdictions_own_urls),
		cmocka_unit_test(test_topology_endpoint_allowed_refuses_everything_else),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
