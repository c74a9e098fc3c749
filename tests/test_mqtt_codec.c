/*
 * test_mqtt_codec.c — framing, decoding and encoding of MQTT packets.
 *
 * Inputs under test are copied to just before a PROT_NONE page, so any read
 * past their end crashes the test instead of passing silently.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mqtt/codec.h"
#include "util/alloc.h"
#include "util/err.h"

/* ---- helpers ---- */

static uint8_t *guard_base;
static size_t guard_page;

/* A copy of bytes that ends exactly at a guard page. */
static const uint8_t *guarded(const void *bytes, size_t len)
{
	if (!guard_base) {
		guard_page = (size_t)sysconf(_SC_PAGESIZE);
		size_t span = 64 * guard_page;
		guard_base = mmap(NULL, span + guard_page, PROT_READ | PROT_WRITE,
		                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(guard_base != MAP_FAILED);
		assert_int_equal(mprotect(guard_base + span, guard_page, PROT_NONE), 0);
	}
	size_t span = 64 * guard_page;
	assert_true(len <= span);
	uint8_t *at = guard_base + span - len;
	memmove(at, bytes, len);
	return at;
}

/* Frames a whole packet, which must be exactly `len` bytes. */
static void frame_whole(const uint8_t *bytes, size_t len, struct mqtt_frame *frame)
{
	assert_int_equal(mqtt_frame(guarded(bytes, len), len, 0, frame), (int)len);
}

/* Appends a packet with the given first byte and body. */
static void raw_packet(struct dm_buf *out, uint8_t first, const void *body, size_t len)
{
	assert_int_equal(dm_buf_append_u8(out, first), DM_OK);
	size_t value = len;
	do {
		uint8_t byte = value & 0x7f;
		value >>= 7;
		assert_int_equal(dm_buf_append_u8(out, byte | (value ? 0x80 : 0)), DM_OK);
	} while (value);
	assert_int_equal(dm_buf_append(out, body, len), DM_OK);
}

static struct mqtt_str str(const char *s)
{
	struct mqtt_str value = {s, strlen(s)};
	return value;
}

static bool str_is(struct mqtt_str value, const char *expected)
{
	return value.ptr && value.len == strlen(expected) &&
	       memcmp(value.ptr, expected, value.len) == 0;
}

/* A CONNECT body: "MQTT", level, flags, keep alive 60, properties (v5),
 * then `rest` (client id etc.). */
static void connect_body(struct dm_buf *body, uint8_t level, uint8_t flags, const void *props,
                         size_t props_len, const void *rest, size_t rest_len)
{
	static const uint8_t head[] = {0, 4, 'M', 'Q', 'T', 'T'};
	dm_buf_append(body, head, sizeof head);
	dm_buf_append_u8(body, level);
	dm_buf_append_u8(body, flags);
	dm_buf_append_be16(body, 60);
	if (level == MQTT_V5) {
		dm_buf_append_u8(body, (uint8_t)props_len);
		dm_buf_append(body, props, props_len);
	}
	dm_buf_append(body, rest, rest_len);
}

static int decode_connect_raw(uint8_t level, uint8_t flags, const void *props, size_t props_len,
                              const void *rest, size_t rest_len, struct mqtt_connect *out,
                              uint8_t *reason)
{
	struct dm_buf body = {0}, packet = {0};
	connect_body(&body, level, flags, props, props_len, rest, rest_len);
	raw_packet(&packet, 0x10, body.data, body.len);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	int rc = mqtt_decode_connect(&frame, out, reason);
	dm_buf_free(&body);
	dm_buf_free(&packet);
	return rc;
}

static const uint8_t CLIENT_C1[] = {0, 2, 'c', '1'};

/* ---- framing ---- */

static void test_frame_needs_more_at_every_truncated_length_and_consumes_nothing(void **state)
{
	struct dm_buf packet = {0};
	struct mqtt_publish msg = {.qos = 1, .packet_id = 7, .format_indicator = -1};
	msg.topic = str("v/VIN1/telemetry");
	uint8_t payload[300];
	memset(payload, 'x', sizeof payload);
	msg.payload.ptr = payload;
	msg.payload.len = sizeof payload;
	assert_int_equal(mqtt_encode_publish(&packet, MQTT_V5, &msg), DM_OK);
	for (size_t len = 0; len < packet.len; len++) {
		struct mqtt_frame frame;
		const uint8_t *input = guarded(packet.data, len);
		assert_int_equal(mqtt_frame(input, len, 0, &frame), DM_NEED_MORE);
		assert_null(frame.body);
		assert_int_equal(frame.total_len, len >= 3 ? packet.len : 0);
		assert_memory_equal(input, packet.data, len); /* untouched */
	}
	struct mqtt_frame frame;
	assert_int_equal(mqtt_frame(guarded(packet.data, packet.len), packet.len, 0, &frame),
	                 (int)packet.len);
	assert_int_equal(frame.type, MQTT_PUBLISH);
	assert_int_equal(frame.header_len, 3);
	assert_int_equal(frame.body_len, packet.len - 3);
	dm_buf_free(&packet);
}

static void test_frame_refuses_a_remaining_length_longer_than_four_bytes(void **state)
{
	static const uint8_t overlong[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01};
	struct mqtt_frame frame;
	assert_int_equal(mqtt_frame(guarded(overlong, 5), 5, 0, &frame), DM_ERR_MALFORMED);
	assert_int_equal(mqtt_frame(guarded(overlong, 6), 6, 0, &frame), DM_ERR_MALFORMED);
	/* Four continuation-free bytes are still only a header in waiting. */
	assert_int_equal(mqtt_frame(guarded(overlong, 4), 4, 0, &frame), DM_NEED_MORE);
}

static void test_frame_refuses_a_remaining_length_not_minimally_encoded(void **state)
{
	static const uint8_t zero_in_two[] = {0xc0, 0x80, 0x00};
	static const uint8_t big_in_four[] = {0x30, 0xff, 0x80, 0x80, 0x00};
	struct mqtt_frame frame;
	assert_int_equal(mqtt_frame(guarded(zero_in_two, 3), 3, 0, &frame), DM_ERR_MALFORMED);
	assert_int_equal(mqtt_frame(guarded(big_in_four, 5), 5, 0, &frame), DM_ERR_MALFORMED);
}

static void test_frame_refuses_packet_type_zero(void **state)
{
	static const uint8_t reserved[] = {0x00, 0x00};
	struct mqtt_frame frame;
	assert_int_equal(mqtt_frame(guarded(reserved, 2), 2, 0, &frame), DM_ERR_MALFORMED);
}

static void test_frame_reports_the_largest_remaining_length_before_the_body(void **state)
{
	static const uint8_t largest[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
	struct mqtt_frame frame;
	assert_int_equal(mqtt_frame(guarded(largest, 5), 5, 0, &frame), DM_NEED_MORE);
	assert_int_equal(frame.total_len, 268435455u + 5);
	assert_int_equal(mqtt_frame(guarded(largest, 5), 5, 1000, &frame), DM_ERR_TOO_LARGE);
}

static void
test_frame_takes_max_packet_size_minus_one_and_exactly_and_refuses_one_more(void **state)
{
	const size_t limit = 1000;
	for (size_t total = limit - 1; total <= limit + 1; total++) {
		struct dm_buf packet = {0};
		uint8_t body[1000] = {0};
		raw_packet(&packet, 0x30, body, total - 3); /* 3-byte fixed header */
		assert_int_equal(packet.len, total);
		struct mqtt_frame frame;
		int expected = total <= limit ? (int)total : DM_ERR_TOO_LARGE;
		assert_int_equal(
		    mqtt_frame(guarded(packet.data, packet.len), packet.len, limit, &frame),
		    expected);
		/* Refused from the fixed header alone, before any body byte. */
		int header_only = total <= limit ? DM_NEED_MORE : DM_ERR_TOO_LARGE;
		assert_int_equal(mqtt_frame(guarded(packet.data, 3), 3, limit, &frame),
		                 header_only);
		dm_buf_free(&packet);
	}
}

/* ---- CONNECT ---- */

static void test_connect_round_trips_in_3_1_1(void **state)
{
	struct mqtt_connect in = {
	    .protocol_version = MQTT_V311, .clean_start = true, .keep_alive = 30};
	in.client_id = str("VIN123");
	in.username = str("VIN123");
	in.password.ptr = (const uint8_t *)"secret";
	in.password.len = 6;
	in.will = true;
	in.will_qos = 1;
	in.will_topic = str("v/VIN123/status");
	in.will_payload.ptr = (const uint8_t *)"gone";
	in.will_payload.len = 4;
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_connect(&packet, &in), DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_connect out;
	assert_int_equal(mqtt_decode_connect(&frame, &out, NULL), DM_OK);
	assert_int_equal(out.protocol_version, MQTT_V311);
	assert_true(out.clean_start);
	assert_int_equal(out.keep_alive, 30);
	assert_true(str_is(out.client_id, "VIN123"));
	assert_true(str_is(out.username, "VIN123"));
	assert_int_equal(out.password.len, 6);
	assert_memory_equal(out.password.ptr, "secret", 6);
	assert_true(out.will);
	assert_int_equal(out.will_qos, 1);
	assert_true(str_is(out.will_topic, "v/VIN123/status"));
	assert_int_equal(out.receive_maximum, 65535);
	dm_buf_free(&packet);
}

static void test_connect_round_trips_in_5_with_properties(void **state)
{
	struct mqtt_user_property props[2] = {
	    {"site", 4, "cn-1", 4},
	    {"fw", 2, "1.2.3", 5},
	};
	struct mqtt_connect in = {.protocol_version = MQTT_V5, .keep_alive = 60};
	in.client_id = str("VIN5");
	in.session_expiry = 3600;
	in.receive_maximum = 10;
	in.maximum_packet_size = 4096;
	memcpy(in.user_props, props, sizeof props);
	in.user_prop_count = 2;
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_connect(&packet, &in), DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_connect out;
	assert_int_equal(mqtt_decode_connect(&frame, &out, NULL), DM_OK);
	assert_int_equal(out.protocol_version, MQTT_V5);
	assert_false(out.clean_start);
	assert_int_equal(out.session_expiry, 3600);
	assert_int_equal(out.receive_maximum, 10);
	assert_int_equal(out.maximum_packet_size, 4096);
	assert_int_equal(out.user_prop_count, 2);
	assert_int_equal(out.user_props[1].value_len, 5);
	assert_memory_equal(out.user_props[1].value, "1.2.3", 5);
	assert_null(out.username.ptr);
	assert_null(out.password.ptr);
	assert_int_equal(out.request_problem_info, 1);
	dm_buf_free(&packet);
}

static void test_connect_truncated_at_every_body_length_is_malformed(void **state)
{
	for (uint8_t version = MQTT_V311; version <= MQTT_V5; version++) {
		struct mqtt_connect in = {.protocol_version = version, .keep_alive = 5};
		in.client_id = str("VIN");
		in.username = str("u");
		in.password.ptr = (const uint8_t *)"p";
		in.password.len = 1;
		in.will = true;
		in.will_topic = str("t");
		struct dm_buf packet = {0};
		assert_int_equal(mqtt_encode_connect(&packet, &in), DM_OK);
		struct mqtt_frame whole;
		frame_whole(packet.data, packet.len, &whole);
		for (size_t len = 0; len < whole.body_len; len++) {
			struct mqtt_frame cut = whole;
			cut.body = guarded(packet.data + whole.header_len, len);
			cut.body_len = len;
			struct mqtt_connect out;
			uint8_t reason = 0;
			int rc = mqtt_decode_connect(&cut, &out, &reason);
			assert_int_equal(rc, DM_ERR_MALFORMED);
			assert_int_equal(reason, MQTT_RC_MALFORMED);
		}
		dm_buf_free(&packet);
	}
}

static void test_connect_refuses_a_bad_protocol_name(void **state)
{
	struct dm_buf body = {0}, packet = {0};
	static const uint8_t head[] = {0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 60, 0, 1, 'c'};
	raw_packet(&packet, 0x10, head, sizeof head);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_connect out;
	assert_int_equal(mqtt_decode_connect(&frame, &out, NULL), DM_ERR_MALFORMED);
	dm_buf_free(&body);
	dm_buf_free(&packet);
}

static void test_connect_reports_an_unknown_level_as_unsupported(void **state)
{
	struct mqtt_connect out;
	uint8_t reason = 0;
	assert_int_equal(
	    decode_connect_raw(6, 2, NULL, 0, CLIENT_C1, sizeof CLIENT_C1, &out, &reason),
	    DM_ERR_UNSUPPORTED);
	assert_int_equal(reason, MQTT_RC_UNSUPPORTED_VERSION);
	assert_int_equal(out.protocol_version, 6);

	struct dm_buf packet = {0};
	static const uint8_t v31[] = {0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 60, 0, 1, 'c'};
	raw_packet(&packet, 0x10, v31, sizeof v31);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	assert_int_equal(mqtt_decode_connect(&frame, &out, NULL), DM_ERR_UNSUPPORTED);
	assert_int_equal(out.protocol_version, 3);
	dm_buf_free(&packet);
}

static void test_connect_refuses_the_reserved_flag_bit(void **state)
{
	struct mqtt_connect out;
	assert_int_equal(
	    decode_connect_raw(MQTT_V311, 0x03, NULL, 0, CLIENT_C1, sizeof CLIENT_C1, &out, NULL),
	    DM_ERR_MALFORMED);
	assert_int_equal(
	    decode_connect_raw(MQTT_V311, 0x02, NULL, 0, CLIENT_C1, sizeof CLIENT_C1, &out, NULL),
	    DM_OK);
}

static void test_connect_refuses_flags_in_the_fixed_header(void **state)
{
	struct dm_buf body = {0}, packet = {0};
	connect_body(&body, MQTT_V311, 2, NULL, 0, CLIENT_C1, sizeof CLIENT_C1);
	raw_packet(&packet, 0x11, body.data, body.len);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_connect out;
	assert_int_equal(mqtt_decode_connect(&frame, &out, NULL), DM_ERR_MALFORMED);
	dm_buf_free(&body);
	dm_buf_free(&packet);
}

static void test_connect_refuses_will_qos_or_retain_without_a_will(void **state)
{
	struct mqtt_connect out;
	/* will QoS 1 (0x08), will retain (0x20), will QoS 3 with will (0x1c) */
	static const uint8_t bad_flags[] = {0x0a, 0x22, 0x1e};
	for (size_t i = 0; i < sizeof bad_flags; i++)
		assert_int_equal(decode_connect_raw(MQTT_V311, bad_flags[i], NULL, 0, CLIENT_C1,
		                                    sizeof CLIENT_C1, &out, NULL),
		                 DM_ERR_MALFORMED);
}

static void test_connect_3_1_1_refuses_a_password_without_a_username(void **state)
{
	static const uint8_t rest[] = {0, 2, 'c', '1', 0, 1, 'p'};
	struct mqtt_connect out;
	assert_int_equal(
	    decode_connect_raw(MQTT_V311, 0x42, NULL, 0, rest, sizeof rest, &out, NULL),
	    DM_ERR_MALFORMED);
	assert_int_equal(decode_connect_raw(MQTT_V5, 0x42, NULL, 0, rest, sizeof rest, &out, NULL),
	                 DM_OK);
	assert_int_equal(out.password.len, 1);
}

static void test_connect_refuses_bad_utf8_in_the_client_id(void **state)
{
	static const uint8_t nul[] = {0, 3, 'a', 0, 'b'};
	static const uint8_t overlong[] = {0, 2, 0xc0, 0x80};
	static const uint8_t surrogate[] = {0, 3, 0xed, 0xa0, 0x80};
	static const uint8_t too_high[] = {0, 4, 0xf4, 0x90, 0x80, 0x80};
	static const uint8_t cut_short[] = {0, 2, 0xe2, 0x82};
	static const uint8_t stray[] = {0, 1, 0x80};
	const uint8_t *bad[] = {nul, overlong, surrogate, too_high, cut_short, stray};
	const size_t lens[] = {sizeof nul,      sizeof overlong,  sizeof surrogate,
	                       sizeof too_high, sizeof cut_short, sizeof stray};
	for (size_t i = 0; i < 6; i++) {
		struct mqtt_connect out;
		assert_int_equal(
		    decode_connect_raw(MQTT_V5, 0x02, NULL, 0, bad[i], lens[i], &out, NULL),
		    DM_ERR_MALFORMED);
	}
	static const uint8_t good[] = {0, 7, 'a', 0xc3, 0xa9, 0xf0, 0x9f, 0x9a, 0x97};
	struct mqtt_connect out;
	assert_int_equal(decode_connect_raw(MQTT_V5, 0x02, NULL, 0, good, sizeof good, &out, NULL),
	                 DM_OK);
}

static void test_connect_5_refuses_a_property_given_twice(void **state)
{
	static const uint8_t twice[] = {0x21, 0, 10, 0x21, 0, 20};
	struct mqtt_connect out;
	uint8_t reason = 0;
	assert_int_equal(decode_connect_raw(MQTT_V5, 0x02, twice, sizeof twice, CLIENT_C1,
	                                    sizeof CLIENT_C1, &out, &reason),
	                 DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_PROTOCOL_ERROR);
	/* User properties may repeat. */
	static const uint8_t users[] = {0x26, 0, 1, 'k', 0, 1, 'v', 0x26, 0, 1, 'k', 0, 1, 'w'};
	assert_int_equal(decode_connect_raw(MQTT_V5, 0x02, users, sizeof users, CLIENT_C1,
	                                    sizeof CLIENT_C1, &out, NULL),
	                 DM_OK);
	assert_int_equal(out.user_prop_count, 2);
}

static void test_connect_5_refuses_a_property_that_does_not_belong_in_connect(void **state)
{
	static const uint8_t alias[] = {0x23, 0, 1};
	static const uint8_t unknown[] = {0x7f, 0};
	struct mqtt_connect out;
	uint8_t reason = 0;
	assert_int_equal(decode_connect_raw(MQTT_V5, 0x02, alias, sizeof alias, CLIENT_C1,
	                                    sizeof CLIENT_C1, &out, &reason),
	                 DM_ERR_MALFORMED);
	assert_int_equal(reason, MQTT_RC_MALFORMED);
	assert_int_equal(decode_connect_raw(MQTT_V5, 0x02, unknown, sizeof unknown, CLIENT_C1,
	                                    sizeof CLIENT_C1, &out, NULL),
	                 DM_ERR_MALFORMED);
}

static void test_connect_5_refuses_zero_receive_maximum_and_zero_packet_size(void **state)
{
	static const uint8_t receive[] = {0x21, 0, 0};
	static const uint8_t size[] = {0x27, 0, 0, 0, 0};
	static const uint8_t problem[] = {0x17, 2};
	static const uint8_t data_only[] = {0x16, 0, 1, 'x'};
	const uint8_t *bad[] = {receive, size, problem, data_only};
	const size_t lens[] = {sizeof receive, sizeof size, sizeof problem, sizeof data_only};
	for (size_t i = 0; i < 4; i++) {
		struct mqtt_connect out;
		assert_int_equal(decode_connect_raw(MQTT_V5, 0x02, bad[i], lens[i], CLIENT_C1,
		                                    sizeof CLIENT_C1, &out, NULL),
		                 DM_ERR_INVALID);
	}
}

static void test_connect_keeps_32_user_properties_and_refuses_33(void **state)
{
	for (size_t count = MQTT_MAX_USER_PROPERTIES; count <= MQTT_MAX_USER_PROPERTIES + 1;
	     count++) {
		struct dm_buf props = {0};
		for (size_t i = 0; i < count; i++) {
			static const uint8_t pair[] = {0x26, 0, 1, 'k', 0, 1, 'v'};
			dm_buf_append(&props, pair, sizeof pair);
		}
		/* The properties length exceeds one byte: build the body by hand. */
		struct dm_buf body = {0}, packet = {0};
		static const uint8_t head[] = {0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60};
		dm_buf_append(&body, head, sizeof head);
		dm_buf_append_u8(&body, (uint8_t)(props.len & 0x7f) | 0x80);
		dm_buf_append_u8(&body, (uint8_t)(props.len >> 7));
		dm_buf_append(&body, props.data, props.len);
		dm_buf_append(&body, CLIENT_C1, sizeof CLIENT_C1);
		raw_packet(&packet, 0x10, body.data, body.len);
		struct mqtt_frame frame;
		frame_whole(packet.data, packet.len, &frame);
		struct mqtt_connect out;
		int rc = mqtt_decode_connect(&frame, &out, NULL);
		assert_int_equal(rc, count <= MQTT_MAX_USER_PROPERTIES ? DM_OK : DM_ERR_TOO_LARGE);
		dm_buf_free(&props);
		dm_buf_free(&body);
		dm_buf_free(&packet);
	}
}

static void test_connect_refuses_trailing_bytes(void **state)
{
	static const uint8_t rest[] = {0, 2, 'c', '1', 0xff};
	struct mqtt_connect out;
	assert_int_equal(
	    decode_connect_raw(MQTT_V311, 0x02, NULL, 0, rest, sizeof rest, &out, NULL),
	    DM_ERR_MALFORMED);
}

static void test_connect_refuses_a_wildcard_in_the_will_topic(void **state)
{
	static const uint8_t rest[] = {0, 2, 'c', '1', 0, 3, 'a', '/', '#', 0, 0};
	struct mqtt_connect out;
	uint8_t reason = 0;
	assert_int_equal(
	    decode_connect_raw(MQTT_V311, 0x06, NULL, 0, rest, sizeof rest, &out, &reason),
	    DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_TOPIC_NAME_INVALID);
}

/* ---- PUBLISH ---- */

static void test_publish_round_trips_at_qos_0_and_1_in_both_versions(void **state)
{
	for (uint8_t version = MQTT_V311; version <= MQTT_V5; version++) {
		for (uint8_t qos = 0; qos <= 1; qos++) {
			struct mqtt_publish in = {.qos = qos,
			                          .packet_id = qos ? 513 : 0,
			                          .retain = true,
			                          .format_indicator = 1};
			in.topic = str("v/VIN/telemetry");
			in.payload.ptr = (const uint8_t *)"{\"a\":1}";
			in.payload.len = 7;
			in.content_type = str("application/json");
			struct dm_buf packet = {0};
			assert_int_equal(mqtt_encode_publish(&packet, version, &in), DM_OK);
			struct mqtt_frame frame;
			frame_whole(packet.data, packet.len, &frame);
			struct mqtt_publish out;
			assert_int_equal(mqtt_decode_publish(&frame, version, &out, NULL), DM_OK);
			assert_int_equal(out.qos, qos);
			assert_int_equal(out.packet_id, in.packet_id);
			assert_true(out.retain);
			assert_true(str_is(out.topic, "v/VIN/telemetry"));
			assert_int_equal(out.payload.len, 7);
			assert_memory_equal(out.payload.ptr, "{\"a\":1}", 7);
			if (version == MQTT_V5) {
				assert_int_equal(out.format_indicator, 1);
				assert_true(str_is(out.content_type, "application/json"));
			} else {
				assert_int_equal(out.format_indicator, -1);
				assert_null(out.content_type.ptr);
			}
			dm_buf_free(&packet);
		}
	}
}

static void test_publish_truncated_at_every_body_length_is_refused(void **state)
{
	struct mqtt_publish in = {.qos = 1, .packet_id = 9, .format_indicator = 0};
	in.topic = str("a/b");
	in.content_type = str("x");
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_publish(&packet, MQTT_V5, &in), DM_OK);
	struct mqtt_frame whole;
	frame_whole(packet.data, packet.len, &whole);
	/* With an empty payload every proper prefix cuts a field. */
	for (size_t len = 0; len < whole.body_len; len++) {
		struct mqtt_frame cut = whole;
		cut.body = guarded(packet.data + whole.header_len, len);
		cut.body_len = len;
		struct mqtt_publish out;
		assert_int_equal(mqtt_decode_publish(&cut, MQTT_V5, &out, NULL), DM_ERR_MALFORMED);
	}
	dm_buf_free(&packet);
}

static int decode_publish_raw(uint8_t first, uint8_t version, const void *body, size_t len,
                              struct mqtt_publish *out, uint8_t *reason)
{
	struct dm_buf packet = {0};
	raw_packet(&packet, first, body, len);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	int rc = mqtt_decode_publish(&frame, version, out, reason);
	dm_buf_free(&packet);
	return rc;
}

static void test_publish_refuses_wildcards_in_the_topic(void **state)
{
	static const uint8_t plus[] = {0, 3, 'a', '/', '+', 'x'};
	static const uint8_t hash[] = {0, 3, 'a', '/', '#', 'x'};
	struct mqtt_publish out;
	uint8_t reason = 0;
	assert_int_equal(decode_publish_raw(0x30, MQTT_V311, plus, sizeof plus, &out, &reason),
	                 DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_TOPIC_NAME_INVALID);
	static const uint8_t hash5[] = {0, 3, 'a', '/', '#', 0, 'x'};
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, hash5, sizeof hash5, &out, &reason),
	                 DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_TOPIC_NAME_INVALID);
	assert_int_equal(decode_publish_raw(0x30, MQTT_V311, hash, sizeof hash, &out, NULL),
	                 DM_ERR_INVALID);
}

static void test_publish_refuses_an_empty_topic(void **state)
{
	static const uint8_t empty3[] = {0, 0, 'x'};
	static const uint8_t empty5[] = {0, 0, 0, 'x'};
	struct mqtt_publish out;
	assert_int_equal(decode_publish_raw(0x30, MQTT_V311, empty3, sizeof empty3, &out, NULL),
	                 DM_ERR_MALFORMED);
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, empty5, sizeof empty5, &out, NULL),
	                 DM_ERR_INVALID);
}

static void test_publish_refuses_a_topic_alias_because_none_were_offered(void **state)
{
	static const uint8_t body[] = {0, 1, 't', 3, 0x23, 0, 1, 'x'};
	struct mqtt_publish out;
	uint8_t reason = 0;
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, body, sizeof body, &out, &reason),
	                 DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_TOPIC_ALIAS_INVALID);
}

static void test_publish_refuses_bad_flags_and_packet_id_zero(void **state)
{
	static const uint8_t qos0[] = {0, 1, 't', 'x'};
	static const uint8_t qos1_id0[] = {0, 1, 't', 0, 0, 'x'};
	struct mqtt_publish out;
	assert_int_equal(decode_publish_raw(0x36, MQTT_V311, qos1_id0, sizeof qos1_id0, &out, NULL),
	                 DM_ERR_MALFORMED); /* QoS 3 */
	assert_int_equal(decode_publish_raw(0x38, MQTT_V311, qos0, sizeof qos0, &out, NULL),
	                 DM_ERR_MALFORMED); /* DUP at QoS 0 */
	assert_int_equal(decode_publish_raw(0x32, MQTT_V311, qos1_id0, sizeof qos1_id0, &out, NULL),
	                 DM_ERR_INVALID);
	/* QoS 2 decodes; refusing it is the server's business. */
	static const uint8_t qos2[] = {0, 1, 't', 0, 5, 'x'};
	assert_int_equal(decode_publish_raw(0x34, MQTT_V311, qos2, sizeof qos2, &out, NULL), DM_OK);
	assert_int_equal(out.qos, 2);
	assert_int_equal(out.packet_id, 5);
}

static void test_publish_5_refuses_repeated_or_out_of_range_properties(void **state)
{
	static const uint8_t twice[] = {0, 1, 't', 4, 0x01, 1, 0x01, 1, 'x'};
	static const uint8_t format2[] = {0, 1, 't', 2, 0x01, 2, 'x'};
	static const uint8_t sub_id[] = {0, 1, 't', 2, 0x0b, 1, 'x'};
	static const uint8_t connect_only[] = {0, 1, 't', 3, 0x21, 0, 1, 'x'};
	struct mqtt_publish out;
	uint8_t reason = 0;
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, twice, sizeof twice, &out, &reason),
	                 DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_PROTOCOL_ERROR);
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, format2, sizeof format2, &out, NULL),
	                 DM_ERR_INVALID);
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, sub_id, sizeof sub_id, &out, NULL),
	                 DM_ERR_INVALID);
	assert_int_equal(
	    decode_publish_raw(0x30, MQTT_V5, connect_only, sizeof connect_only, &out, &reason),
	    DM_ERR_MALFORMED);
	assert_int_equal(reason, MQTT_RC_MALFORMED);
}

static void test_publish_5_refuses_properties_longer_than_the_packet(void **state)
{
	static const uint8_t body[] = {0, 1, 't', 9, 0x01, 1};
	struct mqtt_publish out;
	assert_int_equal(decode_publish_raw(0x30, MQTT_V5, body, sizeof body, &out, NULL),
	                 DM_ERR_MALFORMED);
}

/* ---- PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT ---- */

static void test_puback_round_trips_with_a_reason_string_in_5(void **state)
{
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_puback(&packet, MQTT_V5, 42, MQTT_RC_QUOTA_EXCEEDED, "full"),
	                 DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_puback ack;
	assert_int_equal(mqtt_decode_puback(&frame, MQTT_V5, &ack, NULL), DM_OK);
	assert_int_equal(ack.packet_id, 42);
	assert_int_equal(ack.reason, MQTT_RC_QUOTA_EXCEEDED);
	assert_true(str_is(ack.reason_string, "full"));

	dm_buf_reset(&packet);
	assert_int_equal(mqtt_encode_puback(&packet, MQTT_V311, 42, 0, NULL), DM_OK);
	static const uint8_t plain[] = {0x40, 2, 0, 42};
	assert_int_equal(packet.len, sizeof plain);
	assert_memory_equal(packet.data, plain, sizeof plain);
	frame_whole(packet.data, packet.len, &frame);
	assert_int_equal(mqtt_decode_puback(&frame, MQTT_V311, &ack, NULL), DM_OK);
	/* A 3.1.1 PUBACK is exactly two bytes long. */
	static const uint8_t longer[] = {0x40, 3, 0, 42, 0};
	frame_whole(longer, sizeof longer, &frame);
	assert_int_equal(mqtt_decode_puback(&frame, MQTT_V311, &ack, NULL), DM_ERR_MALFORMED);
	assert_int_equal(mqtt_decode_puback(&frame, MQTT_V5, &ack, NULL), DM_OK);
	dm_buf_free(&packet);
}

static void test_subscribe_round_trips_and_lists_its_filters(void **state)
{
	for (uint8_t version = MQTT_V311; version <= MQTT_V5; version++) {
		struct mqtt_str filters[] = {str("p/VIN/policy"), str("p/all")};
		uint8_t options[] = {1, 0};
		struct dm_buf packet = {0};
		assert_int_equal(mqtt_encode_subscribe(&packet, version, 3, filters, options, 2),
		                 DM_OK);
		struct mqtt_frame frame;
		frame_whole(packet.data, packet.len, &frame);
		struct mqtt_subscribe sub;
		assert_int_equal(mqtt_decode_subscribe(&frame, version, &sub, NULL), DM_OK);
		assert_int_equal(sub.packet_id, 3);
		assert_int_equal(sub.filters.count, 2);
		size_t offset = 0;
		struct mqtt_str filter;
		uint8_t opts;
		assert_true(mqtt_topic_list_next(&sub.filters, &offset, &filter, &opts));
		assert_true(str_is(filter, "p/VIN/policy"));
		assert_int_equal(opts, 1);
		assert_true(mqtt_topic_list_next(&sub.filters, &offset, &filter, &opts));
		assert_true(str_is(filter, "p/all"));
		assert_false(mqtt_topic_list_next(&sub.filters, &offset, &filter, &opts));
		dm_buf_free(&packet);
	}
}

static int decode_subscribe_raw(uint8_t first, uint8_t version, const void *body, size_t len,
                                uint8_t *reason)
{
	struct dm_buf packet = {0};
	raw_packet(&packet, first, body, len);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_subscribe sub;
	int rc = mqtt_decode_subscribe(&frame, version, &sub, reason);
	dm_buf_free(&packet);
	return rc;
}

static void test_subscribe_refuses_bad_flags_options_and_an_empty_list(void **state)
{
	static const uint8_t good[] = {0, 1, 0, 1, 't', 0};
	static const uint8_t none[] = {0, 1};
	static const uint8_t qos3[] = {0, 1, 0, 1, 't', 3};
	static const uint8_t reserved311[] = {0, 1, 0, 1, 't', 0x04};
	static const uint8_t retain3[] = {0, 1, 0, 0, 1, 't', 0x30};
	static const uint8_t reserved5[] = {0, 1, 0, 0, 1, 't', 0x40};
	uint8_t reason = 0;
	assert_int_equal(decode_subscribe_raw(0x82, MQTT_V311, good, sizeof good, NULL), DM_OK);
	assert_int_equal(decode_subscribe_raw(0x80, MQTT_V311, good, sizeof good, NULL),
	                 DM_ERR_MALFORMED);
	assert_int_equal(decode_subscribe_raw(0x82, MQTT_V311, none, sizeof none, &reason),
	                 DM_ERR_INVALID);
	assert_int_equal(reason, MQTT_RC_PROTOCOL_ERROR);
	assert_int_equal(decode_subscribe_raw(0x82, MQTT_V311, qos3, sizeof qos3, NULL),
	                 DM_ERR_MALFORMED);
	assert_int_equal(
	    decode_subscribe_raw(0x82, MQTT_V311, reserved311, sizeof reserved311, NULL),
	    DM_ERR_MALFORMED);
	assert_int_equal(decode_subscribe_raw(0x82, MQTT_V5, retain3, sizeof retain3, NULL),
	                 DM_ERR_INVALID);
	assert_int_equal(decode_subscribe_raw(0x82, MQTT_V5, reserved5, sizeof reserved5, NULL),
	                 DM_ERR_MALFORMED);
}

static void test_unsubscribe_round_trips(void **state)
{
	struct mqtt_str filters[] = {str("p/VIN/policy")};
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_unsubscribe(&packet, MQTT_V5, 4, filters, 1), DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_unsubscribe unsub;
	assert_int_equal(mqtt_decode_unsubscribe(&frame, MQTT_V5, &unsub, NULL), DM_OK);
	assert_int_equal(unsub.packet_id, 4);
	assert_int_equal(unsub.filters.count, 1);
	size_t offset = 0;
	struct mqtt_str filter;
	assert_true(mqtt_topic_list_next(&unsub.filters, &offset, &filter, NULL));
	assert_true(str_is(filter, "p/VIN/policy"));
	dm_buf_free(&packet);
}

static void test_pingreq_must_be_empty(void **state)
{
	static const uint8_t ping[] = {0xc0, 0};
	static const uint8_t fat[] = {0xc0, 1, 0};
	static const uint8_t flagged[] = {0xc1, 0};
	struct mqtt_frame frame;
	frame_whole(ping, sizeof ping, &frame);
	assert_int_equal(mqtt_decode_pingreq(&frame, NULL), DM_OK);
	frame_whole(fat, sizeof fat, &frame);
	assert_int_equal(mqtt_decode_pingreq(&frame, NULL), DM_ERR_MALFORMED);
	frame_whole(flagged, sizeof flagged, &frame);
	assert_int_equal(mqtt_decode_pingreq(&frame, NULL), DM_ERR_MALFORMED);
}

static void test_disconnect_carries_a_reason_in_5_only(void **state)
{
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_disconnect(&packet, MQTT_V5, MQTT_RC_SERVER_MOVED,
	                                        "mqtt://de.example:8883"),
	                 DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_disconnect bye;
	assert_int_equal(mqtt_decode_disconnect(&frame, MQTT_V5, &bye, NULL), DM_OK);
	assert_int_equal(bye.reason, MQTT_RC_SERVER_MOVED);
	assert_true(str_is(bye.server_reference, "mqtt://de.example:8883"));
	assert_int_equal(mqtt_decode_disconnect(&frame, MQTT_V311, &bye, NULL), DM_ERR_MALFORMED);
	static const uint8_t plain[] = {0xe0, 0};
	frame_whole(plain, sizeof plain, &frame);
	assert_int_equal(mqtt_decode_disconnect(&frame, MQTT_V311, &bye, NULL), DM_OK);
	assert_int_equal(mqtt_decode_disconnect(&frame, MQTT_V5, &bye, NULL), DM_OK);
	assert_int_equal(bye.reason, 0);
	dm_buf_free(&packet);
}

/* ---- server-to-client packets ---- */

static void test_connack_5_states_what_the_server_does_not_offer(void **state)
{
	struct mqtt_connack_props props = {.receive_maximum = 256, .maximum_packet_size = 262144};
	props.assigned_client_id = str("dm-1");
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_connack(&packet, MQTT_V5, false, 0, &props), DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_connack ack;
	assert_int_equal(mqtt_decode_connack(&frame, MQTT_V5, &ack, NULL), DM_OK);
	assert_int_equal(ack.reason, 0);
	assert_int_equal(ack.receive_maximum, 256);
	assert_int_equal(ack.maximum_packet_size, 262144);
	assert_int_equal(ack.topic_alias_maximum, 0);
	assert_int_equal(ack.retain_available, 0);
	assert_int_equal(ack.wildcard_available, 0);
	assert_int_equal(ack.shared_available, 0);
	assert_int_equal(ack.maximum_qos, 1);
	assert_true(str_is(ack.assigned_client_id, "dm-1"));
	dm_buf_free(&packet);
}

static void test_connack_refusal_carries_the_server_reference(void **state)
{
	struct mqtt_connack_props props = {0};
	props.server_reference = str("mqtt.de.example:8883");
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_connack(&packet, MQTT_V5, false, MQTT_RC_SERVER_MOVED, &props),
	                 DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data, packet.len, &frame);
	struct mqtt_connack ack;
	assert_int_equal(mqtt_decode_connack(&frame, MQTT_V5, &ack, NULL), DM_OK);
	assert_int_equal(ack.reason, MQTT_RC_SERVER_MOVED);
	assert_true(str_is(ack.server_reference, "mqtt.de.example:8883"));
	assert_int_equal(ack.maximum_qos, -1);

	dm_buf_reset(&packet);
	assert_int_equal(
	    mqtt_encode_connack(&packet, MQTT_V311, false, MQTT311_CONNACK_NOT_AUTHORIZED, NULL),
	    DM_OK);
	static const uint8_t v311[] = {0x20, 2, 0, 5};
	assert_int_equal(packet.len, sizeof v311);
	assert_memory_equal(packet.data, v311, sizeof v311);
	dm_buf_free(&packet);
}

static void test_suback_and_unsuback_round_trip(void **state)
{
	static const uint8_t codes[] = {0, MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED};
	for (uint8_t version = MQTT_V311; version <= MQTT_V5; version++) {
		struct dm_buf packet = {0};
		assert_int_equal(mqtt_encode_suback(&packet, version, 9, codes, 2), DM_OK);
		struct mqtt_frame frame;
		frame_whole(packet.data, packet.len, &frame);
		struct mqtt_ack_list list;
		assert_int_equal(mqtt_decode_suback(&frame, version, &list, NULL), DM_OK);
		assert_int_equal(list.packet_id, 9);
		assert_int_equal(list.count, 2);
		assert_memory_equal(list.codes, codes, 2);
		dm_buf_reset(&packet);
		assert_int_equal(mqtt_encode_unsuback(&packet, version, 9, codes, 2), DM_OK);
		frame_whole(packet.data, packet.len, &frame);
		assert_int_equal(frame.type, MQTT_UNSUBACK);
		assert_int_equal(mqtt_decode_suback(&frame, version, &list, NULL), DM_OK);
		assert_int_equal(list.count, version == MQTT_V5 ? 2 : 0);
		dm_buf_free(&packet);
	}
}

static void test_pingresp_is_two_bytes(void **state)
{
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_pingresp(&packet), DM_OK);
	static const uint8_t pong[] = {0xd0, 0};
	assert_memory_equal(packet.data, pong, 2);
	assert_int_equal(packet.len, 2);
	dm_buf_free(&packet);
}

/* ---- encoders under pressure ---- */

static void test_encoders_leave_the_buffer_unchanged_when_allocation_fails(void **state)
{
	uint8_t big[5000];
	memset(big, 'z', sizeof big);
	struct mqtt_publish msg = {.qos = 1, .packet_id = 1, .format_indicator = 1};
	msg.topic = str("t");
	msg.payload.ptr = big;
	msg.payload.len = sizeof big;
	msg.content_type = str("c");
	struct dm_buf packet = {0};
	dm_buf_append(&packet, "keep", 4);
	int rc = DM_ERR_NOMEM;
	for (long budget = 0; rc == DM_ERR_NOMEM; budget++) {
		dm_alloc_fail_after(budget);
		rc = mqtt_encode_publish(&packet, MQTT_V5, &msg);
		dm_alloc_fail_after(-1);
		if (rc == DM_ERR_NOMEM) {
			assert_int_equal(packet.len, 4);
			assert_memory_equal(packet.data, "keep", 4);
		}
	}
	assert_int_equal(rc, DM_OK);
	struct mqtt_frame frame;
	frame_whole(packet.data + 4, packet.len - 4, &frame);
	dm_buf_free(&packet);
}

static void test_encoders_refuse_a_string_longer_than_65535_bytes(void **state)
{
	size_t len = 65536;
	char *topic = dm_malloc(len);
	memset(topic, 'a', len);
	struct mqtt_publish msg = {.format_indicator = -1};
	msg.topic.ptr = topic;
	msg.topic.len = len;
	struct dm_buf packet = {0};
	assert_int_equal(mqtt_encode_publish(&packet, MQTT_V311, &msg), DM_ERR_TOO_LARGE);
	assert_int_equal(packet.len, 0);
	msg.topic.len = 65535;
	assert_int_equal(mqtt_encode_publish(&packet, MQTT_V311, &msg), DM_OK);
	assert_int_equal(packet.len, 1 + 3 + 2 + 65535);
	dm_free(topic);
	dm_buf_free(&packet);
}

static void test_topic_filters_allow_wildcards_only_as_whole_levels(void **state)
{
	assert_true(mqtt_topic_filter_valid("a/b", 3));
	assert_true(mqtt_topic_filter_valid("a/+/c", 5));
	assert_true(mqtt_topic_filter_valid("#", 1));
	assert_true(mqtt_topic_filter_valid("a/#", 3));
	assert_true(mqtt_topic_filter_valid("+", 1));
	assert_false(mqtt_topic_filter_valid("a/b#", 4));
	assert_false(mqtt_topic_filter_valid("a/#/c", 5));
	assert_false(mqtt_topic_filter_valid("a+/c", 4));
	assert_false(mqtt_topic_filter_valid("", 0));
	assert_true(mqtt_topic_has_wildcards("a/+", 3));
	assert_false(mqtt_topic_has_wildcards("a/b", 3));
	assert_false(mqtt_topic_name_valid("", 0));
	assert_false(mqtt_topic_name_valid("a/#", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_needs_more_at_every_truncated_length_and_consumes_nothing),
	    cmocka_unit_test(test_frame_refuses_a_remaining_length_longer_than_four_bytes),
	    cmocka_unit_test(test_frame_refuses_a_remaining_length_not_minimally_encoded),
	    cmocka_unit_test(test_frame_refuses_packet_type_zero),
	    cmocka_unit_test(test_frame_reports_the_largest_remaining_length_before_the_body),
	    cmocka_unit_test(
	        test_frame_takes_max_packet_size_minus_one_and_exactly_and_refuses_one_more),
	    cmocka_unit_test(test_connect_round_trips_in_3_1_1),
	    cmocka_unit_test(test_connect_round_trips_in_5_with_properties),
	    cmocka_unit_test(test_connect_truncated_at_every_body_length_is_malformed),
	    cmocka_unit_test(test_connect_refuses_a_bad_protocol_name),
	    cmocka_unit_test(test_connect_reports_an_unknown_level_as_unsupported),
	    cmocka_unit_test(test_connect_refuses_the_reserved_flag_bit),
	    cmocka_unit_test(test_connect_refuses_flags_in_the_fixed_header),
	    cmocka_unit_test(test_connect_refuses_will_qos_or_retain_without_a_will),
	    cmocka_unit_test(test_connect_3_1_1_refuses_a_password_without_a_username),
	    cmocka_unit_test(test_connect_refuses_bad_utf8_in_the_client_id),
	    cmocka_unit_test(test_connect_5_refuses_a_property_given_twice),
	    cmocka_unit_test(test_connect_5_refuses_a_property_that_does_not_belong_in_connect),
	    cmocka_unit_test(test_connect_5_refuses_zero_receive_maximum_and_zero_packet_size),
	    cmocka_unit_test(test_connect_keeps_32_user_properties_and_refuses_33),
	    cmocka_unit_test(test_connect_refuses_trailing_bytes),
	    cmocka_unit_test(test_connect_refuses_a_wildcard_in_the_will_topic),
	    cmocka_unit_test(test_publish_round_trips_at_qos_0_and_1_in_both_versions),
	    cmocka_unit_test(test_publish_truncated_at_every_body_length_is_refused),
	    cmocka_unit_test(test_publish_refuses_wildcards_in_the_topic),
	    cmocka_unit_test(test_publish_refuses_an_empty_topic),
	    cmocka_unit_test(test_publish_refuses_a_topic_alias_because_none_were_offered),
	    cmocka_unit_test(test_publish_refuses_bad_flags_and_packet_id_zero),
	    cmocka_unit_test(test_publish_5_refuses_repeated_or_out_of_range_properties),
	    cmocka_unit_test(test_publish_5_refuses_properties_longer_than_the_packet),
	    cmocka_unit_test(test_puback_round_trips_with_a_reason_string_in_5),
	    cmocka_unit_test(test_subscribe_round_trips_and_lists_its_filters),
	    cmocka_unit_test(test_subscribe_refuses_bad_flags_options_and_an_empty_list),
	    cmocka_unit_test(test_unsubscribe_round_trips),
	    cmocka_unit_test(test_pingreq_must_be_empty),
	    cmocka_unit_test(test_disconnect_carries_a_reason_in_5_only),
	    cmocka_unit_test(test_connack_5_states_what_the_server_does_not_offer),
	    cmocka_unit_test(test_connack_refusal_carries_the_server_reference),
	    cmocka_unit_test(test_suback_and_unsuback_round_trip),
	    cmocka_unit_test(test_pingresp_is_two_bytes),
	    cmocka_unit_test(test_encoders_leave_the_buffer_unchanged_when_allocation_fails),
	    cmocka_unit_test(test_encoders_refuse_a_string_longer_than_65535_bytes),
	    cmocka_unit_test(test_topic_filters_allow_wildcards_only_as_whole_levels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
