/*
 * test_config.c — the node's configuration file: every key, every limit
 * (one below, at, one above), every message a person may read.
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

#include "util/alloc.h"
#include "util/config.h"
#include "util/err.h"
#include "util/log.h"

#define REQUIRED                                                                                   \
	"jurisdiction CN\n"                                                                        \
	"site cn-shanghai-1\n"                                                                     \
	"data_dir /var/lib/domicile\n"                                                             \
	"mqtt_listen 127.0.0.1:1883\n"                                                             \
	"api_listen 127.0.0.1:8080\n"

/* Parses exactly len bytes from a heap copy with nothing after it, so ASan
 * catches any read past the end (the parser must not look for a NUL). */
static int parse_bytes(const char *text, size_t len, struct node_config *config, char *err,
		       size_t err_len)
{
	char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, text, len);
	int rc = node_config_parse("node.conf", copy, len, config, err, err_len);
	free(copy);
	return rc;
}

static int parse(const char *text, struct node_config *config, char *err, size_t err_len)
{
	return parse_bytes(text, strlen(text), config, err, err_len);
}

/* REQUIRED followed by one more line (line 6). */
static int parse_extra(const char *extra, struct node_config *config, char *err, size_t err_len)
{
	size_t len = strlen(REQUIRED) + strlen(extra) + 2;
	char *text = malloc(len);
	assert_non_null(text);
	snprintf(text, len, "%s%s\n", REQUIRED, extra);
	int rc = parse(text, config, err, err_len);
	free(text);
	return rc;
}

/* Expects REQUIRED + extra to fail with exactly `message`. */
static void expect_error(const char *extra, const char *message)
{
	struct node_config config;
	char err[512];
	assert_int_equal(parse_extra(extra, &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, message);
}

static void expect_ok(const char *extra, struct node_config *config)
{
	char err[512];
	int rc = parse_extra(extra, config, err, sizeof err);
	if (rc != DM_OK)
		fail_msg("'%s' was refused: %s", extra, err);
	assert_string_equal(err, "");
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

static void test_config_defaults_are_the_documented_ones(void **state)
{
	struct node_config config;
	node_config_defaults(&config);
	assert_string_equal(config.jurisdiction, "");
	/* The build may point DM_DEFAULT_CATALOG anywhere; the file name stays. */
	size_t len = strlen(config.catalog);
	assert_true(len >= strlen("signals.catalog"));
	assert_string_equal(config.catalog + len - strlen("signals.catalog"), "signals.catalog");
	assert_int_equal(config.log_level, DM_LOG_INFO);
	assert_int_equal(config.mqtt_max_packet, 262144);
	assert_int_equal(config.mqtt_receive_maximum, 256);
	assert_int_equal(config.flush_interval_ms, 10000);
	assert_int_equal(config.max_samples_per_batch, 10000);
	assert_int_equal(config.max_future_ms, 300000);
}

static void test_config_with_only_required_keys_keeps_defaults(void **state)
{
	struct node_config config;
	char err[256] = "stale";
	assert_int_equal(parse(REQUIRED, &config, err, sizeof err), DM_OK);
	assert_string_equal(err, "");
	assert_string_equal(config.jurisdiction, "CN");
	assert_string_equal(config.site, "cn-shanghai-1");
	assert_string_equal(config.data_dir, "/var/lib/domicile");
	assert_string_equal(config.mqtt_listen, "127.0.0.1:1883");
	assert_string_equal(config.api_listen, "127.0.0.1:8080");
	assert_int_equal(config.mqtt_max_packet, 262144);
	assert_int_equal(config.keystore, NODE_KEYSTORE_FILE);
	assert_int_equal(config.store_encryption, 1);
	assert_string_equal(config.mqtt_tls_listen, "");
	assert_int_equal(config.max_future_ms, 300000);
}

static void test_config_reads_every_key_with_comments_tabs_and_crlf(void **state)
{
	const char *text = "\xef\xbb\xbf# domicile node, Shanghai\r\n"
			   "\r\n"
			   "jurisdiction\tCN   # China\r\n"
			   "   site cn-shanghai-2\r\n"
			   "data_dir /srv/dm#1\r\n"
			   "mqtt_listen [::1]:8883\r\n"
			   "api_listen localhost:0\r\n"
			   "catalog /etc/domicile/signals.catalog\r\n"
			   "log_level debug\r\n"
			   "mqtt_max_packet 1048576\r\n"
			   "mqtt_receive_maximum 1024\r\n"
			   "flush_interval_ms 5000\r\n"
			   "max_samples_per_batch 500\r\n"
			   "max_future_ms 0";
	struct node_config config;
	char err[256];
	assert_int_equal(parse(text, &config, err, sizeof err), DM_OK);
	assert_string_equal(config.jurisdiction, "CN");
	assert_string_equal(config.site, "cn-shanghai-2");
	assert_string_equal(config.data_dir, "/srv/dm#1");
	assert_string_equal(config.mqtt_listen, "[::1]:8883");
	assert_string_equal(config.api_listen, "localhost:0");
	assert_string_equal(config.catalog, "/etc/domicile/signals.catalog");
	assert_int_equal(config.log_level, DM_LOG_DEBUG);
	assert_int_equal(config.mqtt_max_packet, 1048576);
	assert_int_equal(config.mqtt_receive_maximum, 1024);
	assert_int_equal(config.flush_interval_ms, 5000);
	assert_int_equal(config.max_samples_per_batch, 500);
	assert_int_equal(config.max_future_ms, 0);
}

static void test_config_reports_an_unknown_key_with_a_suggestion(void **state)
{
	expect_error("mqtt_lisen 0.0.0.0:1", "node.conf:6: unknown key 'mqtt_lisen' (did you mean "
					     "'mqtt_listen'?)");
	expect_error("colour blue", "node.conf:6: unknown key 'colour'");
	expect_error("Site x", "node.conf:6: unknown key 'Site' (did you mean 'site'?)");
	expect_error("site=cn-1", "node.conf:6: unknown key 'site=cn-1'");
}

static void test_config_cuts_a_long_unknown_key_in_the_message(void **state)
{
	char *key = repeat('k', 100);
	char expected[128];
	snprintf(expected, sizeof expected, "node.conf:6: unknown key '%.64s...'", key);
	expect_error(key, expected);
	free(key);
}

static void test_config_reports_a_missing_required_key_without_a_line(void **state)
{
	struct node_config config;
	char err[256];
	const char *text = "jurisdiction CN\nsite cn-1\nmqtt_listen 0.0.0.0:1\napi_listen "
			   "0.0.0.0:2\n";
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf: missing required key 'data_dir'");
}

static void test_config_names_every_missing_required_key(void **state)
{
	struct node_config config;
	char err[256];
	assert_int_equal(parse("", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf: missing required keys 'jurisdiction', 'site', "
				 "'data_dir', 'api_listen'");
	assert_int_equal(parse("# only a comment\n\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(parse("site cn-1\njurisdiction DE\n", &config, err, sizeof err),
			 DM_ERR_INVALID);
	assert_string_equal(err, "node.conf: missing required keys 'data_dir', 'api_listen'");
}

static void test_config_refuses_a_repeated_key_naming_the_first_line(void **state)
{
	expect_error("site cn-2", "node.conf:6: repeated key 'site' (first set on line 2)");
	expect_error("site cn-shanghai-1",
		     "node.conf:6: repeated key 'site' (first set on line 2)");
}

static void test_config_refuses_a_key_without_a_value(void **state)
{
	expect_error("catalog", "node.conf:6: key 'catalog' has no value");
	expect_error("catalog   ", "node.conf:6: key 'catalog' has no value");
	expect_error("catalog # later", "node.conf:6: key 'catalog' has no value");
}

static void test_config_refuses_anything_after_the_value(void **state)
{
	expect_error("catalog /a b c  ", "node.conf:6: unexpected 'b c' after the value of "
					  "'catalog' (a value is one word; '#' starts a comment)");
	expect_ok("catalog /a\t# b c", &(struct node_config){0});
}

static void test_config_checks_the_jurisdiction(void **state)
{
	const char *text = "jurisdiction cn\n";
	struct node_config config;
	char err[256];
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: jurisdiction must be two upper-case letters "
				 "(ISO 3166 alpha-2), got 'cn'");
	assert_int_equal(parse("jurisdiction C\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(parse("jurisdiction CHN\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: jurisdiction must be two upper-case letters "
				 "(ISO 3166 alpha-2), got 'CHN'");
	assert_int_equal(parse("jurisdiction C1\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(parse("jurisdiction [Z\n", &config, err, sizeof err), DM_ERR_INVALID);
}

static void test_config_checks_the_site_name_and_its_length(void **state)
{
	struct node_config config;
	char err[256];
	char text[256];
	char *name = repeat('a', 63);
	snprintf(text, sizeof text, "jurisdiction CN\nsite %s\n", name);
	/* 63 characters pass (the error is then the missing keys), 64 do not. */
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "missing required keys 'data_dir'"));
	snprintf(text, sizeof text, "jurisdiction CN\nsite %sb\n", name);
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:2: site is 64 characters long, at most 63 are allowed");
	free(name);

	assert_int_equal(parse("site Cn-1\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: site must be made of a-z, 0-9 and '-', not "
				 "starting or ending with '-', got 'Cn-1'");
	assert_int_equal(parse("site -cn\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "site must be made of"));
	assert_int_equal(parse("site cn-\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(parse("site cn_1\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_int_equal(parse("site a\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "missing required keys"));
}

static void test_config_takes_a_path_of_path_max_minus_one_bytes_only(void **state)
{
	struct node_config config;
	char *path = repeat('d', PATH_MAX - 1);
	path[0] = '/';
	char line[PATH_MAX + 32];
	snprintf(line, sizeof line, "catalog %s", path);
	expect_ok(line, &config);
	assert_int_equal(strlen(config.catalog), PATH_MAX - 1);
	snprintf(line, sizeof line, "catalog %sd", path);
	char expected[128];
	snprintf(expected, sizeof expected,
		 "node.conf:6: catalog is too long (%d bytes, at most %d)", PATH_MAX, PATH_MAX - 1);
	expect_error(line, expected);
	free(path);
}

static void test_config_accepts_every_kind_of_listen_address(void **state)
{
	struct node_config config;
	const char *good[] = {
		"0.0.0.0:1883",   "255.255.255.255:65535", "[::]:0",   "[::1]:8883",
		"[fe80::1:2]:99", "localhost:1",           "a:1",      "node-1.example.com:443",
		"x1.y2:01",       "[::ffff:1.2.3.4]:5",    "123a.b:7",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		char text[512];
		snprintf(text, sizeof text,
			 "jurisdiction CN\nsite s\ndata_dir /d\nmqtt_listen 127.0.0.1:1\n"
			 "api_listen %s\ntls_cert /c\ntls_key /k\n",
			 good[i]);
		char err[256];
		if (parse(text, &config, err, sizeof err) != DM_OK)
			fail_msg("'%s' was refused: %s", good[i], err);
		assert_string_equal(config.api_listen, good[i]);
	}
}

static void listen_error(const char *address, const char *message)
{
	char text[512];
	snprintf(text, sizeof text, "mqtt_listen %s\n", address);
	struct node_config config;
	char err[512];
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	if (strcmp(err, message) != 0)
		fail_msg("for '%s' expected \"%s\", got \"%s\"", address, message, err);
}

static void test_config_refuses_bad_listen_addresses_with_the_reason(void **state)
{
	listen_error("0.0.0.0:65536",
		     "node.conf:1: mqtt_listen port must be a number from 0 to 65535, got '65536'");
	listen_error("0.0.0.0:",
		     "node.conf:1: mqtt_listen port must be a number from 0 to 65535, got ''");
	listen_error("0.0.0.0:123456",
		     "node.conf:1: mqtt_listen port must be a number from 0 to 65535, got "
		     "'123456'");
	listen_error("0.0.0.0:-1",
		     "node.conf:1: mqtt_listen port must be a number from 0 to 65535, got '-1'");
	listen_error("0.0.0.0:88a",
		     "node.conf:1: mqtt_listen port must be a number from 0 to 65535, got '88a'");
	listen_error("localhost",
		     "node.conf:1: mqtt_listen must be HOST:PORT, e.g. 0.0.0.0:8883, got "
		     "'localhost'");
	listen_error(":8883", "node.conf:1: mqtt_listen has no host before the port (use 0.0.0.0 "
			      "or [::] for every address)");
	listen_error("::1:8883",
		     "node.conf:1: mqtt_listen: an IPv6 address needs brackets, e.g. [::1]:8883");
	listen_error("10.0.0.256:1",
		     "node.conf:1: mqtt_listen: '10.0.0.256' is not an IPv4 address");
	listen_error("10.0.0:1", "node.conf:1: mqtt_listen: '10.0.0' is not an IPv4 address");
	listen_error("a_b:1", "node.conf:1: mqtt_listen: 'a_b' is not a valid host name");
	listen_error("-a.com:1", "node.conf:1: mqtt_listen: '-a.com' is not a valid host name");
	listen_error("a-.com:1", "node.conf:1: mqtt_listen: 'a-.com' is not a valid host name");
	listen_error("a..com:1", "node.conf:1: mqtt_listen: 'a..com' is not a valid host name");
	listen_error("a.com.:1", "node.conf:1: mqtt_listen: 'a.com.' is not a valid host name");
	listen_error("[::1]", "node.conf:1: mqtt_listen must be HOST:PORT, e.g. [::1]:8883, got "
			      "'[::1]'");
	listen_error("[::1]x1", "node.conf:1: mqtt_listen must be HOST:PORT, e.g. [::1]:8883, got "
				"'[::1]x1'");
	listen_error("[::1:1", "node.conf:1: mqtt_listen has '[' without ']': '[::1:1'");
	listen_error("[zz]:1", "node.conf:1: mqtt_listen: 'zz' is not an IPv6 address");
	listen_error("[1.2.3.4]:1", "node.conf:1: mqtt_listen: '1.2.3.4' is not an IPv6 address");
	listen_error("[]:1", "node.conf:1: mqtt_listen: '' is not an IPv6 address");
}

static void test_config_limits_host_name_labels_to_63_bytes(void **state)
{
	struct node_config config;
	char err[512];
	char text[512];
	char *label = repeat('h', 63);
	snprintf(text, sizeof text, "api_listen %s:1\n", label);
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "missing required keys"));
	snprintf(text, sizeof text, "api_listen %sh:1\n", label);
	assert_int_equal(parse(text, &config, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "is not a valid host name"));
	free(label);
}

static void test_config_limits_listen_addresses_to_127_bytes(void **state)
{
	struct node_config config;
	char err[512];
	char text[512];
	/* Host names of 2 x 61 + 1 bytes, then ":1": 123 + 2 = 125 bytes. */
	char *half = repeat('h', 61);
	for (size_t extra = 0; extra <= 3; extra++) {
		char *tail = repeat('t', extra);
		snprintf(text, sizeof text, "api_listen %s.%s%s:1\n", half, half, tail);
		size_t len = 61 * 2 + 1 + extra + 2;
		int rc = parse(text, &config, err, sizeof err);
		assert_int_equal(rc, DM_ERR_INVALID);
		if (len <= 127) {
			assert_non_null(strstr(err, "missing required keys"));
		} else {
			char expected[128];
			snprintf(expected, sizeof expected,
				 "node.conf:1: api_listen is too long (%zu bytes, at most 127)",
				 len);
			assert_string_equal(err, expected);
		}
		free(tail);
	}
	free(half);
}

static void test_config_checks_the_log_level(void **state)
{
	struct node_config config;
	expect_ok("log_level warn", &config);
	assert_int_equal(config.log_level, DM_LOG_WARN);
	expect_ok("log_level error", &config);
	assert_int_equal(config.log_level, DM_LOG_ERROR);
	expect_ok("log_level info", &config);
	assert_int_equal(config.log_level, DM_LOG_INFO);
	expect_error("log_level verbose",
		     "node.conf:6: log_level must be one of debug, info, warn, error, "
		     "got 'verbose'");
	expect_error("log_level INFO", "node.conf:6: log_level must be one of debug, info, warn, "
				       "error, got 'INFO'");
	expect_error("log_level inf", "node.conf:6: log_level must be one of debug, info, warn, "
				      "error, got 'inf'");
}

/* For a numeric key: min - 1 and max + 1 fail with the range in the message,
 * min and max pass and are stored. */
static void check_range(const char *key, unsigned long long min, unsigned long long max,
			unsigned long long (*get)(const struct node_config *))
{
	struct node_config config;
	char line[128], expected[256];
	unsigned long long good[] = {min, min + 1, max - 1, max};
	for (size_t i = 0; i < 4; i++) {
		snprintf(line, sizeof line, "%s %llu", key, good[i]);
		expect_ok(line, &config);
		assert_int_equal(get(&config), good[i]);
	}
	if (min > 0) {
		snprintf(line, sizeof line, "%s %llu", key, min - 1);
		snprintf(expected, sizeof expected,
			 "node.conf:6: %s must be a whole number from %llu to %llu, got '%llu'",
			 key, min, max, min - 1);
		expect_error(line, expected);
	}
	snprintf(line, sizeof line, "%s %llu", key, max + 1);
	snprintf(expected, sizeof expected,
		 "node.conf:6: %s must be a whole number from %llu to %llu, got '%llu'", key, min,
		 max, max + 1);
	expect_error(line, expected);
}

static unsigned long long get_max_packet(const struct node_config *c) { return c->mqtt_max_packet; }
static unsigned long long get_receive_max(const struct node_config *c)
{
	return c->mqtt_receive_maximum;
}
static unsigned long long get_flush(const struct node_config *c) { return c->flush_interval_ms; }
static unsigned long long get_batch(const struct node_config *c)
{
	return c->max_samples_per_batch;
}
static unsigned long long get_future(const struct node_config *c)
{
	return (unsigned long long)c->max_future_ms;
}

static void test_config_numbers_accept_their_range_and_refuse_one_beyond(void **state)
{
	check_range("mqtt_max_packet", 64, 268435455, get_max_packet);
	check_range("mqtt_receive_maximum", 1, 65535, get_receive_max);
	check_range("flush_interval_ms", 100, 3600000, get_flush);
	check_range("max_samples_per_batch", 1, 1000000, get_batch);
	check_range("max_future_ms", 0, 86400000, get_future);
}

static void test_config_numbers_refuse_signs_units_and_overflow(void **state)
{
	const char *range = "must be a whole number from 64 to 268435455";
	const char *bad[] = {"12k", "-1", "+100", "0x100", "1e6", "99999999999999999999999",
			     "18446744073709551616", "18446744073709551615"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char line[128], expected[256];
		snprintf(line, sizeof line, "mqtt_max_packet %s", bad[i]);
		snprintf(expected, sizeof expected, "node.conf:6: mqtt_max_packet %s, got '%s'",
			 range, bad[i]);
		expect_error(line, expected);
	}
	struct node_config config;
	expect_ok("mqtt_max_packet 000064", &config);
	assert_int_equal(config.mqtt_max_packet, 64);
}

/* A whole file from lines, for the rules that tie keys together. */
static int parse_lines(const char *lines, char *err, size_t err_len, struct node_config *config)
{
	char text[1024];
	snprintf(text, sizeof text, "jurisdiction CN\nsite s\ndata_dir /d\n%s", lines);
	return parse(text, config, err, err_len);
}

static void expect_file_error(const char *lines, const char *message)
{
	struct node_config config;
	char err[512];
	assert_int_equal(parse_lines(lines, err, sizeof err, &config), DM_ERR_INVALID);
	assert_string_equal(err, message);
}

static void test_config_allows_plain_listeners_only_on_loopback(void **state)
{
	struct node_config config;
	char err[512];
	const char *loopback[] = {"127.0.0.1:1", "127.9.8.7:1", "[::1]:1", "localhost:1"};
	for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++) {
		char lines[256];
		snprintf(lines, sizeof lines, "mqtt_listen %s\napi_listen %s\n", loopback[i],
			 loopback[i]);
		if (parse_lines(lines, err, sizeof err, &config) != DM_OK)
			fail_msg("'%s' was refused: %s", loopback[i], err);
	}
	expect_file_error("mqtt_listen 0.0.0.0:1883\napi_listen 127.0.0.1:1\n",
			  "node.conf: mqtt_listen is plain TCP and may only bind loopback "
			  "(127.0.0.1, [::1], localhost); use mqtt_tls_listen");
	expect_file_error("mqtt_listen 128.0.0.1:1883\napi_listen 127.0.0.1:1\n",
			  "node.conf: mqtt_listen is plain TCP and may only bind loopback "
			  "(127.0.0.1, [::1], localhost); use mqtt_tls_listen");
	expect_file_error("mqtt_listen localhost.example.com:1\napi_listen 127.0.0.1:1\n",
			  "node.conf: mqtt_listen is plain TCP and may only bind loopback "
			  "(127.0.0.1, [::1], localhost); use mqtt_tls_listen");
	expect_file_error("mqtt_listen 127.0.0.1:1\napi_listen [::]:1\n",
			  "node.conf: api_listen off loopback needs tls_cert and tls_key (the API "
			  "is then served over HTTPS)");
	expect_file_error("api_listen 127.0.0.1:1\n",
			  "node.conf: set mqtt_tls_listen (or, for development on loopback, "
			  "mqtt_listen)");
}

static void test_config_tls_listener_needs_its_certificates(void **state)
{
	struct node_config config;
	char err[512];
	assert_int_equal(parse_lines("mqtt_tls_listen 0.0.0.0:8883\napi_listen 0.0.0.0:8443\n"
				     "tls_cert /etc/d/site.crt\ntls_key /etc/d/site.key\n"
				     "vehicle_ca_dir /etc/d/ca\n",
				     err, sizeof err, &config),
			 DM_OK);
	assert_string_equal(config.mqtt_tls_listen, "0.0.0.0:8883");
	assert_string_equal(config.tls_cert, "/etc/d/site.crt");
	assert_string_equal(config.tls_key, "/etc/d/site.key");
	assert_string_equal(config.vehicle_ca_dir, "/etc/d/ca");
	assert_string_equal(config.mqtt_listen, "");
	expect_file_error("mqtt_tls_listen 0.0.0.0:8883\napi_listen 127.0.0.1:1\n"
			  "tls_cert /c\ntls_key /k\n",
			  "node.conf: mqtt_tls_listen needs tls_cert, tls_key and vehicle_ca_dir");
	expect_file_error("mqtt_listen 127.0.0.1:1\napi_listen 127.0.0.1:1\ntls_cert /c\n",
			  "node.conf: tls_cert and tls_key go together");
}

static void test_config_reads_the_key_store_and_encryption_switch(void **state)
{
	struct node_config config;
	char err[512];
	assert_int_equal(parse_lines("mqtt_listen 127.0.0.1:1\napi_listen 127.0.0.1:1\n"
				     "keystore pkcs11\npkcs11_module /usr/lib/softhsm/libsofthsm2.so\n"
				     "pkcs11_token cn-kek\npkcs11_key kek-1\n"
				     "pkcs11_pin_file /etc/d/pin\nstore_encryption off\n",
				     err, sizeof err, &config),
			 DM_OK);
	assert_int_equal(config.keystore, NODE_KEYSTORE_PKCS11);
	assert_string_equal(config.pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(config.pkcs11_token, "cn-kek");
	assert_string_equal(config.pkcs11_key, "kek-1");
	assert_string_equal(config.pkcs11_pin_file, "/etc/d/pin");
	assert_int_equal(config.store_encryption, 0);
	expect_error("keystore hsm", "node.conf:6: keystore must be one of file, pkcs11, got 'hsm'");
	expect_error("store_encryption no",
		     "node.conf:6: store_encryption must be one of on, off, got 'no'");
	expect_error("pkcs11_token 0123456789abcdef0123456789abcdef0",
		     "node.conf:6: pkcs11_token is too long (33 bytes, at most 32)");
	expect_file_error("mqtt_listen 127.0.0.1:1\napi_listen 127.0.0.1:1\nkeystore pkcs11\n"
			  "pkcs11_token t\n",
			  "node.conf: keystore pkcs11 needs pkcs11_module, pkcs11_token, "
			  "pkcs11_key and pkcs11_pin_file");
	expect_file_error("mqtt_listen 127.0.0.1:1\napi_listen 127.0.0.1:1\npkcs11_token t\n",
			  "node.conf: pkcs11_* settings need 'keystore pkcs11'");
}

static void test_config_line_length_limit_is_exact(void **state)
{
	struct node_config config;
	char err[256];
	for (size_t len = NODE_CONFIG_LINE_MAX - 1; len <= NODE_CONFIG_LINE_MAX + 1; len++) {
		char *comment = repeat('#', len);
		int rc = parse_extra(comment, &config, err, sizeof err);
		if (len <= NODE_CONFIG_LINE_MAX) {
			assert_int_equal(rc, DM_OK);
		} else {
			assert_int_equal(rc, DM_ERR_INVALID);
			assert_string_equal(
				err, "node.conf:6: line is too long (8193 bytes, at most 8192)");
		}
		/* A "\r\n" line end is not counted. */
		size_t text_len = strlen(REQUIRED) + len + 2;
		char *text = malloc(text_len + 1);
		assert_non_null(text);
		snprintf(text, text_len + 1, "%s%s\r\n", REQUIRED, comment);
		assert_int_equal(parse(text, &config, err, sizeof err),
				 len <= NODE_CONFIG_LINE_MAX ? DM_OK : DM_ERR_INVALID);
		free(text);
		free(comment);
	}
}

static void test_config_refuses_nul_and_control_bytes(void **state)
{
	struct node_config config;
	char err[256];
	const char text[] = "jurisdiction CN\nsite c\0n\n";
	assert_int_equal(parse_bytes(text, sizeof text - 1, &config, err, sizeof err),
			 DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:2: NUL byte at column 7");
	const char nul_in_comment[] = "# \0\n";
	assert_int_equal(parse_bytes(nul_in_comment, sizeof nul_in_comment - 1, &config, err,
				     sizeof err),
			 DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: NUL byte at column 3");
	assert_int_equal(parse("site \x1b[31m\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: control character 0x1b at column 6");
	assert_int_equal(parse("site a\rb\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: control character 0x0d at column 7");
	assert_int_equal(parse("site a\x7f\n", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:1: control character 0x7f at column 7");
}

static void test_config_failure_leaves_the_defaults(void **state)
{
	struct node_config config;
	char err[256];
	assert_int_equal(parse_extra("mqtt_max_packet 1", &config, err, sizeof err),
			 DM_ERR_INVALID);
	struct node_config defaults;
	node_config_defaults(&defaults);
	assert_memory_equal(&config, &defaults, sizeof config);
}

static void test_config_truncates_the_message_to_the_buffer(void **state)
{
	struct node_config config;
	char err[12];
	assert_int_equal(parse_extra("colour blue", &config, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "node.conf:6");
	char one[1] = {'x'};
	assert_int_equal(parse_extra("colour blue", &config, one, sizeof one), DM_ERR_INVALID);
	assert_int_equal(one[0], '\0');
	assert_int_equal(parse_extra("colour blue", &config, NULL, 0), DM_ERR_INVALID);
	assert_int_equal(node_config_parse("x", NULL, 0, &config, NULL, 0), DM_ERR_INVALID);
}

static char *write_temp(const char *text, size_t len)
{
	char *path = strdup("/tmp/test_config_XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);
		assert_true(n > 0);
		done += (size_t)n;
	}
	close(fd);
	return path;
}

static void test_config_loads_a_file(void **state)
{
	char *path = write_temp(REQUIRED "log_level warn\n", strlen(REQUIRED) + 15);
	struct node_config config;
	char err[256];
	assert_int_equal(node_config_load(path, &config, err, sizeof err), DM_OK);
	assert_string_equal(err, "");
	assert_string_equal(config.site, "cn-shanghai-1");
	assert_int_equal(config.log_level, DM_LOG_WARN);
	unlink(path);
	free(path);
}

static void test_config_load_names_the_path_in_messages(void **state)
{
	char *path = write_temp("jurisdiction cn\n", 16);
	struct node_config config;
	char err[512], expected[512];
	assert_int_equal(node_config_load(path, &config, err, sizeof err), DM_ERR_INVALID);
	snprintf(expected, sizeof expected,
		 "%s:1: jurisdiction must be two upper-case letters (ISO 3166 alpha-2), got 'cn'",
		 path);
	assert_string_equal(err, expected);
	unlink(path);
	free(path);
}

static void test_config_load_reports_a_missing_file_as_io(void **state)
{
	struct node_config config;
	char err[256];
	assert_int_equal(node_config_load("/nonexistent/node.conf", &config, err, sizeof err),
			 DM_ERR_IO);
	assert_string_equal(err, "/nonexistent/node.conf: cannot open: No such file or directory");
	assert_int_equal(node_config_load("/tmp", &config, err, sizeof err), DM_ERR_IO);
	assert_string_equal(err, "/tmp: cannot read: Is a directory");
}

static void test_config_load_file_size_limit_is_exact(void **state)
{
	struct node_config config;
	char err[256];
	size_t required = strlen(REQUIRED);
	for (size_t size = NODE_CONFIG_FILE_MAX - 1; size <= NODE_CONFIG_FILE_MAX + 1; size++) {
		/* REQUIRED, then lines of '#' up to `size` bytes. */
		char *text = malloc(size);
		assert_non_null(text);
		memcpy(text, REQUIRED, required);
		memset(text + required, '#', size - required);
		for (size_t at = required + 4000; at < size; at += 4000)
			text[at] = '\n';
		char *path = write_temp(text, size);
		int rc = node_config_load(path, &config, err, sizeof err);
		if (size <= NODE_CONFIG_FILE_MAX) {
			assert_int_equal(rc, DM_OK);
		} else {
			assert_int_equal(rc, DM_ERR_TOO_LARGE);
			char expected[512];
			snprintf(expected, sizeof expected, "%s: file is larger than 1048576 bytes",
				 path);
			assert_string_equal(err, expected);
		}
		unlink(path);
		free(path);
		free(text);
	}
}

static void test_config_load_survives_allocation_failure(void **state)
{
	char *path = write_temp(REQUIRED, strlen(REQUIRED));
	struct node_config config;
	char err[256];
	dm_alloc_fail_after(0);
	int rc = node_config_load(path, &config, err, sizeof err);
	dm_alloc_fail_after(-1);
	assert_int_equal(rc, DM_ERR_NOMEM);
	assert_non_null(strstr(err, "out of memory"));
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults_are_the_documented_ones),
		cmocka_unit_test(test_config_with_only_required_keys_keeps_defaults),
		cmocka_unit_test(test_config_reads_every_key_with_comments_tabs_and_crlf),
		cmocka_unit_test(test_config_reports_an_unknown_key_with_a_suggestion),
		cmocka_unit_test(test_config_cuts_a_long_unknown_key_in_the_message),
		cmocka_unit_test(test_config_reports_a_missing_required_key_without_a_line),
		cmocka_unit_test(test_config_names_every_missing_required_key),
		cmocka_unit_test(test_config_refuses_a_repeated_key_naming_the_first_line),
		cmocka_unit_test(test_config_refuses_a_key_without_a_value),
		cmocka_unit_test(test_config_refuses_anything_after_the_value),
		cmocka_unit_test(test_config_checks_the_jurisdiction),
		cmocka_unit_test(test_config_checks_the_site_name_and_its_length),
		cmocka_unit_test(test_config_takes_a_path_of_path_max_minus_one_bytes_only),
		cmocka_unit_test(test_config_accepts_every_kind_of_listen_address),
		cmocka_unit_test(test_config_refuses_bad_listen_addresses_with_the_reason),
		cmocka_unit_test(test_config_limits_host_name_labels_to_63_bytes),
		cmocka_unit_test(test_config_limits_listen_addresses_to_127_bytes),
		cmocka_unit_test(test_config_checks_the_log_level),
		cmocka_unit_test(test_config_numbers_accept_their_range_and_refuse_one_beyond),
		cmocka_unit_test(test_config_numbers_refuse_signs_units_and_overflow),
		cmocka_unit_test(test_config_line_length_limit_is_exact),
		cmocka_unit_test(test_config_allows_plain_listeners_only_on_loopback),
		cmocka_unit_test(test_config_tls_listener_needs_its_certificates),
		cmocka_unit_test(test_config_reads_the_key_store_and_encryption_switch),
		cmocka_unit_test(test_config_refuses_nul_and_control_bytes),
		cmocka_unit_test(test_config_failure_leaves_the_defaults),
		cmocka_unit_test(test_config_truncates_the_message_to_the_buffer),
		cmocka_unit_test(test_config_loads_a_file),
		cmocka_unit_test(test_config_load_names_the_path_in_messages),
		cmocka_unit_test(test_config_load_reports_a_missing_file_as_io),
		cmocka_unit_test(test_config_load_file_size_limit_is_exact),
		cmocka_unit_test(test_config_load_survives_allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
