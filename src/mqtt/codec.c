/*
 * codec.c — MQTT 3.1.1 (level 4) and 5 (level 5) packets on the wire.
 *
 * Format (all integers big-endian):
 *
 *   fixed header   byte 0: packet type (high nibble), flags (low nibble)
 *                  bytes 1..4: remaining length, a variable byte integer
 *   varint         7 bits a byte, least significant group first, bit 7 set
 *                  on every byte but the last; 1..4 bytes; minimally encoded
 *                  (a last byte of 0x00 after a continuation is refused)
 *   string         u16 length, then that many bytes of UTF-8 (no U+0000)
 *   binary         u16 length, then that many bytes
 *   properties     (MQTT 5 only) varint length, then (varint id, value)*;
 *                  the value's type is fixed by the id (byte, u16, u32,
 *                  varint, string, binary, string pair)
 *
 *   CONNECT     flags 0000 | string "MQTT" | u8 level (4, 5) | u8 flags:
 *               7 username, 6 password, 5 will retain, 4-3 will QoS,
 *               2 will, 1 clean start, 0 reserved (must be 0)
 *               | u16 keep alive | [5: properties] | string client id
 *               | [will: [5: will properties] string topic, binary payload]
 *               | [username: string] | [password: binary]
 *   CONNACK     u8 ack flags (bit 0 session present) | u8 reason | [5: props]
 *   PUBLISH     flags: 3 dup, 2-1 QoS, 0 retain | string topic
 *               | [QoS > 0: u16 packet id] | [5: props] | payload (the rest)
 *   PUBACK      u16 packet id | [5: u8 reason | props] (each optional when
 *               the remaining length ends before it)
 *   SUBSCRIBE   flags 0010 | u16 packet id | [5: props]
 *               | (string filter, u8 options)+
 *   SUBACK      u16 packet id | [5: props] | u8 reason+
 *   UNSUBSCRIBE flags 0010 | u16 packet id | [5: props] | string filter+
 *   UNSUBACK    u16 packet id | [5: props | u8 reason+]
 *   PINGREQ, PINGRESP: empty
 *   DISCONNECT  [5: u8 reason | props] (3.1.1: empty)
 *
 * Invariants:
 *   1. Every read goes through a struct dm_cursor; nested lengths
 *      (properties, strings) get a sub-cursor or a checked take, so a field
 *      can never be read past its own end or the packet's.
 *   2. mqtt_frame decides DM_ERR_TOO_LARGE from the fixed header alone:
 *      a caller never needs to buffer an oversized body to refuse it.
 *   3. Decoders read only [body, body + body_len) and consume the whole of
 *      it: trailing bytes are malformed.
 *   4. Decoded strings are valid UTF-8 without U+0000 and point into the
 *      caller's buffer; nothing is copied or allocated.
 *   5. A property that may appear once and appears twice is a protocol
 *      error; one not allowed in the packet (or unknown) is malformed.
 *   6. Encoders write into the buffer's tail and, on any failure, cut the
 *      buffer back to its length on entry.
 */
#include "mqtt/codec.h"

#include <string.h>

#include "util/cursor.h"
#include "util/err.h"

/* ---- variable byte integers ---- */

static int read_varint(struct dm_cursor *cur, uint32_t *out)
{
	size_t start = cur->pos;
	uint32_t value = 0;
	for (unsigned i = 0; i < 4; i++) {
		uint8_t byte;
		if (dm_cursor_u8(cur, &byte) != DM_OK)
			break;
		value |= (uint32_t)(byte & 0x7f) << (7 * i);
		if (!(byte & 0x80)) {
			if (i > 0 && byte == 0)
				break; /* not minimally encoded */
			*out = value;
			return DM_OK;
		}
	}
	cur->pos = start;
	return DM_ERR_MALFORMED;
}

static size_t encode_varint(uint32_t value, uint8_t out[4])
{
	size_t n = 0;
	do {
		uint8_t byte = value & 0x7f;
		value >>= 7;
		if (value)
			byte |= 0x80;
		out[n++] = byte;
	} while (value && n < 4);
	return n;
}

int mqtt_frame(const uint8_t *data, size_t len, size_t max_packet_size, struct mqtt_frame *out)
{
	memset(out, 0, sizeof *out);
	struct dm_cursor cur = dm_cursor_make(data, len);
	uint8_t first;
	if (dm_cursor_u8(&cur, &first) != DM_OK)
		return DM_NEED_MORE;
	if (first >> 4 == 0)
		return DM_ERR_MALFORMED;
	uint32_t remaining = 0;
	for (unsigned i = 0;; i++) {
		uint8_t byte;
		if (i == 4)
			return DM_ERR_MALFORMED;
		if (dm_cursor_u8(&cur, &byte) != DM_OK)
			return DM_NEED_MORE;
		remaining |= (uint32_t)(byte & 0x7f) << (7 * i);
		if (!(byte & 0x80)) {
			if (i > 0 && byte == 0)
				return DM_ERR_MALFORMED;
			break;
		}
	}
	size_t header_len = cur.pos;
	size_t total = header_len + remaining;
	if (max_packet_size && total > max_packet_size)
		return DM_ERR_TOO_LARGE;
	out->total_len = total;
	if (dm_cursor_left(&cur) < remaining)
		return DM_NEED_MORE;
	out->type = first >> 4;
	out->flags = first & 0x0f;
	out->header_len = header_len;
	out->body = data + header_len;
	out->body_len = remaining;
	return (int)total;
}

/* ---- UTF-8, topics ---- */

bool mqtt_utf8_valid(const void *bytes, size_t len)
{
	const uint8_t *s = bytes;
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (need > len - i - 1)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

bool mqtt_topic_has_wildcards(const char *topic, size_t len)
{
	return memchr(topic, '+', len) || memchr(topic, '#', len);
}

bool mqtt_topic_name_valid(const char *topic, size_t len)
{
	return len > 0 && mqtt_utf8_valid(topic, len) && !mqtt_topic_has_wildcards(topic, len);
}

bool mqtt_topic_filter_valid(const char *filter, size_t len)
{
	if (len == 0 || !mqtt_utf8_valid(filter, len))
		return false;
	for (size_t i = 0; i < len; i++) {
		bool level_start = i == 0 || filter[i - 1] == '/';
		bool level_end = i + 1 == len || filter[i + 1] == '/';
		if (filter[i] == '+' && !(level_start && level_end))
			return false;
		if (filter[i] == '#' && !(level_start && i + 1 == len))
			return false;
	}
	return true;
}

/* ---- strings and properties ---- */

static int read_binary(struct dm_cursor *cur, struct mqtt_bin *out)
{
	size_t start = cur->pos;
	uint16_t len;
	const uint8_t *bytes;
	if (dm_cursor_be16(cur, &len) != DM_OK || dm_cursor_take(cur, len, &bytes) != DM_OK) {
		cur->pos = start;
		return DM_ERR_MALFORMED;
	}
	out->ptr = bytes;
	out->len = len;
	return DM_OK;
}

static int read_string(struct dm_cursor *cur, struct mqtt_str *out)
{
	size_t start = cur->pos;
	struct mqtt_bin raw;
	if (read_binary(cur, &raw) != DM_OK || !mqtt_utf8_valid(raw.ptr, raw.len)) {
		cur->pos = start;
		return DM_ERR_MALFORMED;
	}
	out->ptr = (const char *)raw.ptr;
	out->len = raw.len;
	return DM_OK;
}

enum prop_type { PT_BYTE = 1, PT_U16, PT_U32, PT_VARINT, PT_STR, PT_BIN, PT_PAIR };

enum prop_id {
	PROP_PAYLOAD_FORMAT = 0x01,
	PROP_MESSAGE_EXPIRY = 0x02,
	PROP_CONTENT_TYPE = 0x03,
	PROP_RESPONSE_TOPIC = 0x08,
	PROP_CORRELATION_DATA = 0x09,
	PROP_SUBSCRIPTION_ID = 0x0B,
	PROP_SESSION_EXPIRY = 0x11,
	PROP_ASSIGNED_CLIENT_ID = 0x12,
	PROP_SERVER_KEEP_ALIVE = 0x13,
	PROP_AUTH_METHOD = 0x15,
	PROP_AUTH_DATA = 0x16,
	PROP_REQUEST_PROBLEM_INFO = 0x17,
	PROP_WILL_DELAY = 0x18,
	PROP_REQUEST_RESPONSE_INFO = 0x19,
	PROP_RESPONSE_INFO = 0x1A,
	PROP_SERVER_REFERENCE = 0x1C,
	PROP_REASON_STRING = 0x1F,
	PROP_RECEIVE_MAXIMUM = 0x21,
	PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
	PROP_TOPIC_ALIAS = 0x23,
	PROP_MAXIMUM_QOS = 0x24,
	PROP_RETAIN_AVAILABLE = 0x25,
	PROP_USER = 0x26,
	PROP_MAXIMUM_PACKET_SIZE = 0x27,
	PROP_WILDCARD_AVAILABLE = 0x28,
	PROP_SUB_ID_AVAILABLE = 0x29,
	PROP_SHARED_AVAILABLE = 0x2A,
	PROP_COUNT = 0x2B,
};

/* Where a property may appear: a bit per packet type, and bit 0 (packet
 * type 0 is reserved) for the will properties inside CONNECT. */
#define IN(type) (1u << (type))
#define IN_WILL 1u

static const struct {
	uint8_t type;
	uint16_t where;
} prop_specs[PROP_COUNT] = {
    [PROP_PAYLOAD_FORMAT] = {PT_BYTE, IN(MQTT_PUBLISH) | IN_WILL},
    [PROP_MESSAGE_EXPIRY] = {PT_U32, IN(MQTT_PUBLISH) | IN_WILL},
    [PROP_CONTENT_TYPE] = {PT_STR, IN(MQTT_PUBLISH) | IN_WILL},
    [PROP_RESPONSE_TOPIC] = {PT_STR, IN(MQTT_PUBLISH) | IN_WILL},
    [PROP_CORRELATION_DATA] = {PT_BIN, IN(MQTT_PUBLISH) | IN_WILL},
    [PROP_SUBSCRIPTION_ID] = {PT_VARINT, IN(MQTT_PUBLISH) | IN(MQTT_SUBSCRIBE)},
    [PROP_SESSION_EXPIRY] = {PT_U32, IN(MQTT_CONNECT) | IN(MQTT_CONNACK) | IN(MQTT_DISCONNECT)},
    [PROP_ASSIGNED_CLIENT_ID] = {PT_STR, IN(MQTT_CONNACK)},
    [PROP_SERVER_KEEP_ALIVE] = {PT_U16, IN(MQTT_CONNACK)},
    [PROP_AUTH_METHOD] = {PT_STR, IN(MQTT_CONNECT) | IN(MQTT_CONNACK) | IN(MQTT_AUTH)},
    [PROP_AUTH_DATA] = {PT_BIN, IN(MQTT_CONNECT) | IN(MQTT_CONNACK) | IN(MQTT_AUTH)},
    [PROP_REQUEST_PROBLEM_INFO] = {PT_BYTE, IN(MQTT_CONNECT)},
    [PROP_WILL_DELAY] = {PT_U32, IN_WILL},
    [PROP_REQUEST_RESPONSE_INFO] = {PT_BYTE, IN(MQTT_CONNECT)},
    [PROP_RESPONSE_INFO] = {PT_STR, IN(MQTT_CONNACK)},
    [PROP_SERVER_REFERENCE] = {PT_STR, IN(MQTT_CONNACK) | IN(MQTT_DISCONNECT)},
    [PROP_REASON_STRING] = {PT_STR, IN(MQTT_CONNACK) | IN(MQTT_PUBACK) | IN(MQTT_PUBREC) |
                                        IN(MQTT_PUBREL) | IN(MQTT_PUBCOMP) | IN(MQTT_SUBACK) |
                                        IN(MQTT_UNSUBACK) | IN(MQTT_DISCONNECT) | IN(MQTT_AUTH)},
    [PROP_RECEIVE_MAXIMUM] = {PT_U16, IN(MQTT_CONNECT) | IN(MQTT_CONNACK)},
    [PROP_TOPIC_ALIAS_MAXIMUM] = {PT_U16, IN(MQTT_CONNECT) | IN(MQTT_CONNACK)},
    [PROP_TOPIC_ALIAS] = {PT_U16, IN(MQTT_PUBLISH)},
    [PROP_MAXIMUM_QOS] = {PT_BYTE, IN(MQTT_CONNACK)},
    [PROP_RETAIN_AVAILABLE] = {PT_BYTE, IN(MQTT_CONNACK)},
    [PROP_USER] = {PT_PAIR, 0xffff},
    [PROP_MAXIMUM_PACKET_SIZE] = {PT_U32, IN(MQTT_CONNECT) | IN(MQTT_CONNACK)},
    [PROP_WILDCARD_AVAILABLE] = {PT_BYTE, IN(MQTT_CONNACK)},
    [PROP_SUB_ID_AVAILABLE] = {PT_BYTE, IN(MQTT_CONNACK)},
    [PROP_SHARED_AVAILABLE] = {PT_BYTE, IN(MQTT_CONNACK)},
};

/* One properties section, parsed: numbers in num[], strings and binaries in
 * data[], by id; `seen` has bit id set for each present property. */
struct props {
	uint64_t seen;
	uint32_t num[PROP_COUNT];
	struct mqtt_bin data[PROP_COUNT];
	struct mqtt_user_property *users; /* may be NULL: user properties only counted */
	size_t users_cap;
	size_t user_count;
};

static bool has(const struct props *props, unsigned id)
{
	return props->seen >> id & 1;
}

static int fail(uint8_t *reason, uint8_t code, int status)
{
	if (reason)
		*reason = code;
	return status;
}

#define MALFORMED(reason) fail(reason, MQTT_RC_MALFORMED, DM_ERR_MALFORMED)
#define PROTOCOL_ERROR(reason) fail(reason, MQTT_RC_PROTOCOL_ERROR, DM_ERR_INVALID)

static int read_props(struct dm_cursor *cur, unsigned where, struct props *props, uint8_t *reason)
{
	struct mqtt_user_property *users = props->users;
	size_t users_cap = props->users_cap;
	memset(props, 0, sizeof *props);
	props->users = users;
	props->users_cap = users_cap;

	uint32_t len;
	struct dm_cursor sub;
	if (read_varint(cur, &len) != DM_OK || dm_cursor_sub(cur, len, &sub) != DM_OK)
		return MALFORMED(reason);
	while (dm_cursor_left(&sub) > 0) {
		uint32_t id;
		if (read_varint(&sub, &id) != DM_OK)
			return MALFORMED(reason);
		if (id >= PROP_COUNT || !(prop_specs[id].where & where))
			return MALFORMED(reason);
		if (id != PROP_USER && has(props, id))
			return PROTOCOL_ERROR(reason);
		props->seen |= (uint64_t)1 << id;
		int rc = DM_OK;
		uint8_t u8 = 0;
		uint16_t u16 = 0;
		struct mqtt_str key = {0}, value = {0};
		switch (prop_specs[id].type) {
		case PT_BYTE:
			rc = dm_cursor_u8(&sub, &u8);
			props->num[id] = u8;
			break;
		case PT_U16:
			rc = dm_cursor_be16(&sub, &u16);
			props->num[id] = u16;
			break;
		case PT_U32:
			rc = dm_cursor_be32(&sub, &props->num[id]);
			break;
		case PT_VARINT:
			rc = read_varint(&sub, &props->num[id]);
			break;
		case PT_STR:
			rc = read_string(&sub, &key);
			props->data[id].ptr = (const uint8_t *)key.ptr;
			props->data[id].len = key.len;
			break;
		case PT_BIN:
			rc = read_binary(&sub, &props->data[id]);
			break;
		case PT_PAIR:
			rc = read_string(&sub, &key);
			if (rc == DM_OK)
				rc = read_string(&sub, &value);
			if (rc != DM_OK)
				break;
			if (props->users) {
				if (props->user_count == props->users_cap)
					return fail(reason, MQTT_RC_IMPL_SPECIFIC,
					            DM_ERR_TOO_LARGE);
				struct mqtt_user_property *slot = &props->users[props->user_count];
				slot->key = key.ptr;
				slot->key_len = key.len;
				slot->value = value.ptr;
				slot->value_len = value.len;
			}
			props->user_count++;
			break;
		}
		if (rc != DM_OK)
			return MALFORMED(reason);
	}
	return DM_OK;
}

static struct mqtt_str prop_str(const struct props *props, unsigned id)
{
	struct mqtt_str s = {(const char *)props->data[id].ptr, props->data[id].len};
	return s;
}

/* The checks shared by PUBLISH and the will properties. */
static int check_message_props(const struct props *props, uint8_t *reason)
{
	if (has(props, PROP_PAYLOAD_FORMAT) && props->num[PROP_PAYLOAD_FORMAT] > 1)
		return PROTOCOL_ERROR(reason);
	if (has(props, PROP_RESPONSE_TOPIC)) {
		struct mqtt_str topic = prop_str(props, PROP_RESPONSE_TOPIC);
		if (!mqtt_topic_name_valid(topic.ptr, topic.len))
			return PROTOCOL_ERROR(reason);
	}
	return DM_OK;
}

/* ---- decoders ---- */

static int check_end(const struct dm_cursor *cur, uint8_t *reason)
{
	return dm_cursor_left(cur) == 0 ? DM_OK : MALFORMED(reason);
}

int mqtt_decode_connect(const struct mqtt_frame *frame, struct mqtt_connect *out, uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	out->receive_maximum = 65535;
	out->request_problem_info = 1;
	if (frame->type != MQTT_CONNECT || frame->flags != 0)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);

	struct mqtt_bin name;
	uint8_t level;
	if (read_binary(&cur, &name) != DM_OK || dm_cursor_u8(&cur, &level) != DM_OK)
		return MALFORMED(reason);
	out->protocol_version = level;
	if (name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0 && level == 3)
		return fail(reason, MQTT_RC_UNSUPPORTED_VERSION, DM_ERR_UNSUPPORTED);
	if (name.len != 4 || memcmp(name.ptr, "MQTT", 4) != 0)
		return MALFORMED(reason);
	if (level != MQTT_V311 && level != MQTT_V5)
		return fail(reason, MQTT_RC_UNSUPPORTED_VERSION, DM_ERR_UNSUPPORTED);

	uint8_t flags;
	if (dm_cursor_u8(&cur, &flags) != DM_OK || dm_cursor_be16(&cur, &out->keep_alive) != DM_OK)
		return MALFORMED(reason);
	bool has_username = flags & 0x80;
	bool has_password = flags & 0x40;
	out->will_retain = flags & 0x20;
	out->will_qos = flags >> 3 & 3;
	out->will = flags & 0x04;
	out->clean_start = flags & 0x02;
	if (flags & 0x01)
		return MALFORMED(reason);
	if (out->will_qos == 3)
		return MALFORMED(reason);
	if (!out->will && (out->will_qos || out->will_retain))
		return MALFORMED(reason);
	if (level == MQTT_V311 && has_password && !has_username)
		return MALFORMED(reason);

	if (level == MQTT_V5) {
		struct props props = {.users = out->user_props,
		                      .users_cap = MQTT_MAX_USER_PROPERTIES};
		int rc = read_props(&cur, IN(MQTT_CONNECT), &props, reason);
		if (rc != DM_OK)
			return rc;
		out->user_prop_count = props.user_count;
		out->session_expiry = props.num[PROP_SESSION_EXPIRY];
		if (has(&props, PROP_RECEIVE_MAXIMUM)) {
			if (props.num[PROP_RECEIVE_MAXIMUM] == 0)
				return PROTOCOL_ERROR(reason);
			out->receive_maximum = (uint16_t)props.num[PROP_RECEIVE_MAXIMUM];
		}
		if (has(&props, PROP_MAXIMUM_PACKET_SIZE)) {
			if (props.num[PROP_MAXIMUM_PACKET_SIZE] == 0)
				return PROTOCOL_ERROR(reason);
			out->maximum_packet_size = props.num[PROP_MAXIMUM_PACKET_SIZE];
		}
		out->topic_alias_maximum = (uint16_t)props.num[PROP_TOPIC_ALIAS_MAXIMUM];
		if (has(&props, PROP_REQUEST_RESPONSE_INFO)) {
			if (props.num[PROP_REQUEST_RESPONSE_INFO] > 1)
				return PROTOCOL_ERROR(reason);
			out->request_response_info = (uint8_t)props.num[PROP_REQUEST_RESPONSE_INFO];
		}
		if (has(&props, PROP_REQUEST_PROBLEM_INFO)) {
			if (props.num[PROP_REQUEST_PROBLEM_INFO] > 1)
				return PROTOCOL_ERROR(reason);
			out->request_problem_info = (uint8_t)props.num[PROP_REQUEST_PROBLEM_INFO];
		}
		if (has(&props, PROP_AUTH_DATA) && !has(&props, PROP_AUTH_METHOD))
			return PROTOCOL_ERROR(reason);
		out->auth_method = prop_str(&props, PROP_AUTH_METHOD);
		out->auth_data = props.data[PROP_AUTH_DATA];
	}

	if (read_string(&cur, &out->client_id) != DM_OK)
		return MALFORMED(reason);
	if (out->will) {
		if (level == MQTT_V5) {
			struct props props = {0};
			int rc = read_props(&cur, IN_WILL, &props, reason);
			if (rc == DM_OK)
				rc = check_message_props(&props, reason);
			if (rc != DM_OK)
				return rc;
		}
		if (read_string(&cur, &out->will_topic) != DM_OK ||
		    read_binary(&cur, &out->will_payload) != DM_OK)
			return MALFORMED(reason);
		if (!mqtt_topic_name_valid(out->will_topic.ptr, out->will_topic.len))
			return fail(reason, MQTT_RC_TOPIC_NAME_INVALID, DM_ERR_INVALID);
	}
	if (has_username && read_string(&cur, &out->username) != DM_OK)
		return MALFORMED(reason);
	if (has_password && read_binary(&cur, &out->password) != DM_OK)
		return MALFORMED(reason);
	return check_end(&cur, reason);
}

int mqtt_decode_publish(const struct mqtt_frame *frame, uint8_t version, struct mqtt_publish *out,
                        uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	out->format_indicator = -1;
	if (frame->type != MQTT_PUBLISH)
		return MALFORMED(reason);
	out->dup = frame->flags & 0x08;
	out->qos = frame->flags >> 1 & 3;
	out->retain = frame->flags & 0x01;
	if (out->qos == 3)
		return MALFORMED(reason);
	if (out->qos == 0 && out->dup)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	if (read_string(&cur, &out->topic) != DM_OK)
		return MALFORMED(reason);
	if (out->qos > 0) {
		if (dm_cursor_be16(&cur, &out->packet_id) != DM_OK)
			return MALFORMED(reason);
		if (out->packet_id == 0)
			return PROTOCOL_ERROR(reason);
	}
	if (version == MQTT_V5) {
		struct props props = {0};
		int rc = read_props(&cur, IN(MQTT_PUBLISH), &props, reason);
		if (rc == DM_OK)
			rc = check_message_props(&props, reason);
		if (rc != DM_OK)
			return rc;
		/* We advertise a topic alias maximum of 0: any alias is invalid. */
		if (has(&props, PROP_TOPIC_ALIAS))
			return fail(reason, MQTT_RC_TOPIC_ALIAS_INVALID, DM_ERR_INVALID);
		/* Subscription identifiers travel only from server to client. */
		if (has(&props, PROP_SUBSCRIPTION_ID))
			return PROTOCOL_ERROR(reason);
		if (has(&props, PROP_PAYLOAD_FORMAT))
			out->format_indicator = (int)props.num[PROP_PAYLOAD_FORMAT];
		out->has_message_expiry = has(&props, PROP_MESSAGE_EXPIRY);
		out->message_expiry = props.num[PROP_MESSAGE_EXPIRY];
		out->content_type = prop_str(&props, PROP_CONTENT_TYPE);
		out->response_topic = prop_str(&props, PROP_RESPONSE_TOPIC);
		out->correlation_data = props.data[PROP_CORRELATION_DATA];
		out->user_prop_count = props.user_count;
	}
	if (out->topic.len == 0)
		return version == MQTT_V5 ? PROTOCOL_ERROR(reason) : MALFORMED(reason);
	if (mqtt_topic_has_wildcards(out->topic.ptr, out->topic.len))
		return fail(reason, MQTT_RC_TOPIC_NAME_INVALID, DM_ERR_INVALID);
	size_t left = dm_cursor_left(&cur);
	const uint8_t *payload;
	dm_cursor_take(&cur, left, &payload);
	out->payload.ptr = payload;
	out->payload.len = left;
	return DM_OK;
}

int mqtt_decode_puback(const struct mqtt_frame *frame, uint8_t version, struct mqtt_puback *out,
                       uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	if (frame->type < MQTT_PUBACK || frame->type > MQTT_PUBCOMP)
		return MALFORMED(reason);
	if (frame->flags != (frame->type == MQTT_PUBREL ? 0x2 : 0x0))
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	if (dm_cursor_be16(&cur, &out->packet_id) != DM_OK)
		return MALFORMED(reason);
	if (out->packet_id == 0)
		return PROTOCOL_ERROR(reason);
	if (version == MQTT_V5 && dm_cursor_left(&cur) > 0) {
		if (dm_cursor_u8(&cur, &out->reason) != DM_OK)
			return MALFORMED(reason);
		if (dm_cursor_left(&cur) > 0) {
			struct props props = {0};
			int rc = read_props(&cur, IN(frame->type), &props, reason);
			if (rc != DM_OK)
				return rc;
			out->reason_string = prop_str(&props, PROP_REASON_STRING);
			out->user_prop_count = props.user_count;
		}
	}
	return check_end(&cur, reason);
}

/* Reads a SUBSCRIBE's or UNSUBSCRIBE's filter list to the end of cur,
 * validating each entry, and records where it lies. */
static int read_topic_list(struct dm_cursor *cur, uint8_t version, bool with_options,
                           struct mqtt_topic_list *list, uint8_t *reason)
{
	list->bytes = cur->p + cur->pos;
	list->len = dm_cursor_left(cur);
	list->with_options = with_options;
	list->count = 0;
	while (dm_cursor_left(cur) > 0) {
		struct mqtt_str filter;
		if (read_string(cur, &filter) != DM_OK)
			return MALFORMED(reason);
		if (with_options) {
			uint8_t options;
			if (dm_cursor_u8(cur, &options) != DM_OK)
				return MALFORMED(reason);
			if ((options & MQTT_SUBOPT_QOS_MASK) == 3)
				return MALFORMED(reason);
			if (version == MQTT_V5) {
				if (options & 0xc0)
					return MALFORMED(reason);
				if (options >> MQTT_SUBOPT_RETAIN_HANDLING_SHIFT == 3)
					return PROTOCOL_ERROR(reason);
			} else if (options & 0xfc) {
				return MALFORMED(reason);
			}
		}
		list->count++;
	}
	/* A SUBSCRIBE or UNSUBSCRIBE without a filter is a protocol error. */
	return list->count ? DM_OK : PROTOCOL_ERROR(reason);
}

bool mqtt_topic_list_next(const struct mqtt_topic_list *list, size_t *offset,
                          struct mqtt_str *filter, uint8_t *options)
{
	struct dm_cursor cur = dm_cursor_make(list->bytes, list->len);
	if (*offset >= list->len)
		return false;
	cur.pos = *offset;
	uint8_t opts = 0;
	if (read_string(&cur, filter) != DM_OK)
		return false;
	if (list->with_options && dm_cursor_u8(&cur, &opts) != DM_OK)
		return false;
	if (options)
		*options = opts;
	*offset = cur.pos;
	return true;
}

static int read_packet_id(struct dm_cursor *cur, uint16_t *out, uint8_t *reason)
{
	if (dm_cursor_be16(cur, out) != DM_OK)
		return MALFORMED(reason);
	return *out ? DM_OK : PROTOCOL_ERROR(reason);
}

int mqtt_decode_subscribe(const struct mqtt_frame *frame, uint8_t version,
                          struct mqtt_subscribe *out, uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	if (frame->type != MQTT_SUBSCRIBE || frame->flags != 0x2)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	int rc = read_packet_id(&cur, &out->packet_id, reason);
	if (rc != DM_OK)
		return rc;
	if (version == MQTT_V5) {
		struct props props = {0};
		rc = read_props(&cur, IN(MQTT_SUBSCRIBE), &props, reason);
		if (rc != DM_OK)
			return rc;
		if (has(&props, PROP_SUBSCRIPTION_ID) && props.num[PROP_SUBSCRIPTION_ID] == 0)
			return PROTOCOL_ERROR(reason);
		out->subscription_id = props.num[PROP_SUBSCRIPTION_ID];
		out->user_prop_count = props.user_count;
	}
	return read_topic_list(&cur, version, true, &out->filters, reason);
}

int mqtt_decode_unsubscribe(const struct mqtt_frame *frame, uint8_t version,
                            struct mqtt_unsubscribe *out, uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	if (frame->type != MQTT_UNSUBSCRIBE || frame->flags != 0x2)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	int rc = read_packet_id(&cur, &out->packet_id, reason);
	if (rc != DM_OK)
		return rc;
	if (version == MQTT_V5) {
		struct props props = {0};
		rc = read_props(&cur, IN(MQTT_UNSUBSCRIBE), &props, reason);
		if (rc != DM_OK)
			return rc;
		out->user_prop_count = props.user_count;
	}
	return read_topic_list(&cur, version, false, &out->filters, reason);
}

int mqtt_decode_pingreq(const struct mqtt_frame *frame, uint8_t *reason)
{
	if (frame->type != MQTT_PINGREQ || frame->flags != 0 || frame->body_len != 0)
		return MALFORMED(reason);
	return DM_OK;
}

int mqtt_decode_disconnect(const struct mqtt_frame *frame, uint8_t version,
                           struct mqtt_disconnect *out, uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	if (frame->type != MQTT_DISCONNECT || frame->flags != 0)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	if (version == MQTT_V5 && dm_cursor_left(&cur) > 0) {
		if (dm_cursor_u8(&cur, &out->reason) != DM_OK)
			return MALFORMED(reason);
		if (dm_cursor_left(&cur) > 0) {
			struct props props = {0};
			int rc = read_props(&cur, IN(MQTT_DISCONNECT), &props, reason);
			if (rc != DM_OK)
				return rc;
			out->has_session_expiry = has(&props, PROP_SESSION_EXPIRY);
			out->session_expiry = props.num[PROP_SESSION_EXPIRY];
			out->reason_string = prop_str(&props, PROP_REASON_STRING);
			out->server_reference = prop_str(&props, PROP_SERVER_REFERENCE);
			out->user_prop_count = props.user_count;
		}
	}
	return check_end(&cur, reason);
}

static int optional_byte(const struct props *props, unsigned id)
{
	return has(props, id) ? (int)props->num[id] : -1;
}

int mqtt_decode_connack(const struct mqtt_frame *frame, uint8_t version, struct mqtt_connack *out,
                        uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	out->receive_maximum = 65535;
	out->topic_alias_maximum = out->maximum_qos = out->retain_available = -1;
	out->wildcard_available = out->shared_available = -1;
	if (frame->type != MQTT_CONNACK || frame->flags != 0)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	uint8_t ack_flags;
	if (dm_cursor_u8(&cur, &ack_flags) != DM_OK || dm_cursor_u8(&cur, &out->reason) != DM_OK)
		return MALFORMED(reason);
	if (ack_flags & 0xfe)
		return MALFORMED(reason);
	out->session_present = ack_flags & 1;
	if (version == MQTT_V5) {
		struct props props = {0};
		int rc = read_props(&cur, IN(MQTT_CONNACK), &props, reason);
		if (rc != DM_OK)
			return rc;
		if (has(&props, PROP_RECEIVE_MAXIMUM))
			out->receive_maximum = (uint16_t)props.num[PROP_RECEIVE_MAXIMUM];
		out->maximum_packet_size = props.num[PROP_MAXIMUM_PACKET_SIZE];
		out->topic_alias_maximum = optional_byte(&props, PROP_TOPIC_ALIAS_MAXIMUM);
		out->maximum_qos = optional_byte(&props, PROP_MAXIMUM_QOS);
		out->retain_available = optional_byte(&props, PROP_RETAIN_AVAILABLE);
		out->wildcard_available = optional_byte(&props, PROP_WILDCARD_AVAILABLE);
		out->shared_available = optional_byte(&props, PROP_SHARED_AVAILABLE);
		out->server_keep_alive = (uint16_t)props.num[PROP_SERVER_KEEP_ALIVE];
		out->assigned_client_id = prop_str(&props, PROP_ASSIGNED_CLIENT_ID);
		out->server_reference = prop_str(&props, PROP_SERVER_REFERENCE);
		out->reason_string = prop_str(&props, PROP_REASON_STRING);
	}
	return check_end(&cur, reason);
}

int mqtt_decode_suback(const struct mqtt_frame *frame, uint8_t version, struct mqtt_ack_list *out,
                       uint8_t *reason)
{
	memset(out, 0, sizeof *out);
	if ((frame->type != MQTT_SUBACK && frame->type != MQTT_UNSUBACK) || frame->flags != 0)
		return MALFORMED(reason);
	struct dm_cursor cur = dm_cursor_make(frame->body, frame->body_len);
	if (dm_cursor_be16(&cur, &out->packet_id) != DM_OK)
		return MALFORMED(reason);
	if (version == MQTT_V5) {
		struct props props = {0};
		int rc = read_props(&cur, IN(frame->type), &props, reason);
		if (rc != DM_OK)
			return rc;
		out->reason_string = prop_str(&props, PROP_REASON_STRING);
	}
	out->count = dm_cursor_left(&cur);
	dm_cursor_take(&cur, out->count, &out->codes);
	if (out->count == 0 && (frame->type == MQTT_SUBACK || version == MQTT_V5))
		return MALFORMED(reason);
	return DM_OK;
}

/* ---- encoders ---- */

/* Appends through a sticky status: after the first failure nothing more is
 * written, and finish() cuts the buffer back to where the packet began. */
struct writer {
	struct dm_buf *out;
	size_t start;
	int rc;
};

static struct writer writer_make(struct dm_buf *out)
{
	struct writer w = {out, out->len, DM_OK};
	return w;
}

static int finish(struct writer *w)
{
	if (w->rc != DM_OK)
		w->out->len = w->start;
	return w->rc;
}

static void put(struct writer *w, const void *bytes, size_t len)
{
	if (w->rc == DM_OK)
		w->rc = dm_buf_append(w->out, bytes, len);
}

static void put_u8(struct writer *w, uint8_t value)
{
	put(w, &value, 1);
}

static void put_u16(struct writer *w, uint16_t value)
{
	uint8_t b[2] = {(uint8_t)(value >> 8), (uint8_t)value};
	put(w, b, sizeof b);
}

static void put_u32(struct writer *w, uint32_t value)
{
	uint8_t b[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8),
	                (uint8_t)value};
	put(w, b, sizeof b);
}

static void put_binary(struct writer *w, const void *bytes, size_t len)
{
	if (w->rc == DM_OK && len > 0xffff)
		w->rc = DM_ERR_TOO_LARGE;
	put_u16(w, (uint16_t)len);
	put(w, bytes, len);
}

static void put_cstr(struct writer *w, const char *s)
{
	put_binary(w, s, strlen(s));
}

/* A length-prefixed region (remaining length, properties): four bytes are
 * held for the varint, and when the region is closed its contents move down
 * so that the length is minimally encoded. */
static size_t open_region(struct writer *w)
{
	static const uint8_t hold[4];
	size_t mark = w->out->len;
	put(w, hold, sizeof hold);
	return mark;
}

static void close_region(struct writer *w, size_t mark)
{
	if (w->rc != DM_OK)
		return;
	size_t len = w->out->len - mark - 4;
	if (len > MQTT_MAX_REMAINING) {
		w->rc = DM_ERR_TOO_LARGE;
		return;
	}
	uint8_t varint[4];
	size_t n = encode_varint((uint32_t)len, varint);
	memcpy(w->out->data + mark, varint, n);
	memmove(w->out->data + mark + n, w->out->data + mark + 4, len);
	w->out->len = mark + n + len;
}

static void put_prop_u8(struct writer *w, uint8_t id, uint8_t value)
{
	put_u8(w, id);
	put_u8(w, value);
}

static void put_prop_u16(struct writer *w, uint8_t id, uint16_t value)
{
	put_u8(w, id);
	put_u16(w, value);
}

static void put_prop_u32(struct writer *w, uint8_t id, uint32_t value)
{
	put_u8(w, id);
	put_u32(w, value);
}

static void put_prop_str(struct writer *w, uint8_t id, struct mqtt_str value)
{
	if (!value.ptr)
		return;
	put_u8(w, id);
	put_binary(w, value.ptr, value.len);
}

static struct mqtt_str cstr(const char *s)
{
	struct mqtt_str value = {s, s ? strlen(s) : 0};
	return value;
}

int mqtt_encode_connack(struct dm_buf *out, uint8_t version, bool session_present, uint8_t reason,
                        const struct mqtt_connack_props *props)
{
	struct writer w = writer_make(out);
	put_u8(&w, MQTT_CONNACK << 4);
	size_t packet = open_region(&w);
	put_u8(&w, session_present ? 1 : 0);
	put_u8(&w, reason);
	if (version == MQTT_V5) {
		size_t section = open_region(&w);
		if (reason == MQTT_RC_SUCCESS) {
			if (props && props->receive_maximum)
				put_prop_u16(&w, PROP_RECEIVE_MAXIMUM, props->receive_maximum);
			if (props && props->maximum_packet_size)
				put_prop_u32(&w, PROP_MAXIMUM_PACKET_SIZE,
				             props->maximum_packet_size);
			if (props && props->server_keep_alive)
				put_prop_u16(&w, PROP_SERVER_KEEP_ALIVE, props->server_keep_alive);
			put_prop_u16(&w, PROP_TOPIC_ALIAS_MAXIMUM, 0);
			put_prop_u8(&w, PROP_MAXIMUM_QOS, 1);
			put_prop_u8(&w, PROP_RETAIN_AVAILABLE, 0);
			put_prop_u8(&w, PROP_WILDCARD_AVAILABLE, 0);
			put_prop_u8(&w, PROP_SUB_ID_AVAILABLE, 0);
			put_prop_u8(&w, PROP_SHARED_AVAILABLE, 0);
			if (props)
				put_prop_str(&w, PROP_ASSIGNED_CLIENT_ID,
				             props->assigned_client_id);
		}
		if (props) {
			put_prop_str(&w, PROP_SERVER_REFERENCE, props->server_reference);
			put_prop_str(&w, PROP_REASON_STRING, props->reason_string);
		}
		close_region(&w, section);
	}
	close_region(&w, packet);
	return finish(&w);
}

int mqtt_encode_puback(struct dm_buf *out, uint8_t version, uint16_t packet_id, uint8_t reason,
                       const char *reason_string)
{
	struct writer w = writer_make(out);
	put_u8(&w, MQTT_PUBACK << 4);
	size_t packet = open_region(&w);
	put_u16(&w, packet_id);
	if (version == MQTT_V5 && (reason != MQTT_RC_SUCCESS || reason_string)) {
		put_u8(&w, reason);
		if (reason_string) {
			size_t section = open_region(&w);
			put_prop_str(&w, PROP_REASON_STRING, cstr(reason_string));
			close_region(&w, section);
		}
	}
	close_region(&w, packet);
	return finish(&w);
}

static int encode_ack_list(struct dm_buf *out, uint8_t type, uint8_t version, uint16_t packet_id,
                           const uint8_t *codes, size_t count)
{
	struct writer w = writer_make(out);
	put_u8(&w, (uint8_t)(type << 4));
	size_t packet = open_region(&w);
	put_u16(&w, packet_id);
	if (version == MQTT_V5)
		put_u8(&w, 0); /* no properties */
	if (type == MQTT_SUBACK || version == MQTT_V5)
		put(&w, codes, count);
	close_region(&w, packet);
	return finish(&w);
}

int mqtt_encode_suback(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                       const uint8_t *codes, size_t count)
{
	return encode_ack_list(out, MQTT_SUBACK, version, packet_id, codes, count);
}

int mqtt_encode_unsuback(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                         const uint8_t *codes, size_t count)
{
	return encode_ack_list(out, MQTT_UNSUBACK, version, packet_id, codes, count);
}

static int encode_empty(struct dm_buf *out, uint8_t type)
{
	uint8_t packet[2] = {(uint8_t)(type << 4), 0};
	return dm_buf_append(out, packet, sizeof packet);
}

int mqtt_encode_pingresp(struct dm_buf *out)
{
	return encode_empty(out, MQTT_PINGRESP);
}

int mqtt_encode_pingreq(struct dm_buf *out)
{
	return encode_empty(out, MQTT_PINGREQ);
}

int mqtt_encode_disconnect(struct dm_buf *out, uint8_t version, uint8_t reason,
                           const char *server_reference)
{
	if (version != MQTT_V5 || (reason == MQTT_RC_SUCCESS && !server_reference))
		return encode_empty(out, MQTT_DISCONNECT);
	struct writer w = writer_make(out);
	put_u8(&w, MQTT_DISCONNECT << 4);
	size_t packet = open_region(&w);
	put_u8(&w, reason);
	size_t section = open_region(&w);
	put_prop_str(&w, PROP_SERVER_REFERENCE, cstr(server_reference));
	close_region(&w, section);
	close_region(&w, packet);
	return finish(&w);
}

int mqtt_encode_publish(struct dm_buf *out, uint8_t version, const struct mqtt_publish *msg)
{
	if (msg->qos > 2)
		return DM_ERR_INVALID;
	struct writer w = writer_make(out);
	put_u8(&w, (uint8_t)(MQTT_PUBLISH << 4 | (msg->dup ? 0x08 : 0) | msg->qos << 1 |
	                     (msg->retain ? 0x01 : 0)));
	size_t packet = open_region(&w);
	put_binary(&w, msg->topic.ptr, msg->topic.len);
	if (msg->qos > 0)
		put_u16(&w, msg->packet_id);
	if (version == MQTT_V5) {
		size_t section = open_region(&w);
		if (msg->format_indicator >= 0)
			put_prop_u8(&w, PROP_PAYLOAD_FORMAT, (uint8_t)msg->format_indicator);
		if (msg->has_message_expiry)
			put_prop_u32(&w, PROP_MESSAGE_EXPIRY, msg->message_expiry);
		put_prop_str(&w, PROP_CONTENT_TYPE, msg->content_type);
		put_prop_str(&w, PROP_RESPONSE_TOPIC, msg->response_topic);
		if (msg->correlation_data.ptr) {
			put_u8(&w, PROP_CORRELATION_DATA);
			put_binary(&w, msg->correlation_data.ptr, msg->correlation_data.len);
		}
		close_region(&w, section);
	}
	put(&w, msg->payload.ptr, msg->payload.len);
	close_region(&w, packet);
	return finish(&w);
}

int mqtt_encode_connect(struct dm_buf *out, const struct mqtt_connect *msg)
{
	uint8_t version = msg->protocol_version;
	if (version != MQTT_V311 && version != MQTT_V5)
		return DM_ERR_INVALID;
	uint8_t flags = (msg->username.ptr ? 0x80 : 0) | (msg->password.ptr ? 0x40 : 0) |
	                (msg->clean_start ? 0x02 : 0);
	if (msg->will)
		flags |= (uint8_t)(0x04 | (msg->will_qos & 3) << 3 | (msg->will_retain ? 0x20 : 0));
	struct writer w = writer_make(out);
	put_u8(&w, MQTT_CONNECT << 4);
	size_t packet = open_region(&w);
	put_cstr(&w, "MQTT");
	put_u8(&w, version);
	put_u8(&w, flags);
	put_u16(&w, msg->keep_alive);
	if (version == MQTT_V5) {
		size_t section = open_region(&w);
		if (msg->session_expiry)
			put_prop_u32(&w, PROP_SESSION_EXPIRY, msg->session_expiry);
		if (msg->receive_maximum && msg->receive_maximum != 65535)
			put_prop_u16(&w, PROP_RECEIVE_MAXIMUM, msg->receive_maximum);
		if (msg->maximum_packet_size)
			put_prop_u32(&w, PROP_MAXIMUM_PACKET_SIZE, msg->maximum_packet_size);
		for (size_t i = 0; i < msg->user_prop_count && i < MQTT_MAX_USER_PROPERTIES; i++) {
			const struct mqtt_user_property *prop = &msg->user_props[i];
			put_u8(&w, PROP_USER);
			put_binary(&w, prop->key, prop->key_len);
			put_binary(&w, prop->value, prop->value_len);
		}
		close_region(&w, section);
	}
	put_binary(&w, msg->client_id.ptr, msg->client_id.len);
	if (msg->will) {
		if (version == MQTT_V5)
			put_u8(&w, 0); /* no will properties */
		put_binary(&w, msg->will_topic.ptr, msg->will_topic.len);
		put_binary(&w, msg->will_payload.ptr, msg->will_payload.len);
	}
	if (msg->username.ptr)
		put_binary(&w, msg->username.ptr, msg->username.len);
	if (msg->password.ptr)
		put_binary(&w, msg->password.ptr, msg->password.len);
	close_region(&w, packet);
	return finish(&w);
}

static int encode_topic_list(struct dm_buf *out, uint8_t type, uint8_t version, uint16_t packet_id,
                             const struct mqtt_str *filters, const uint8_t *options, size_t count)
{
	struct writer w = writer_make(out);
	put_u8(&w, (uint8_t)(type << 4 | 0x2));
	size_t packet = open_region(&w);
	put_u16(&w, packet_id);
	if (version == MQTT_V5)
		put_u8(&w, 0); /* no properties */
	for (size_t i = 0; i < count; i++) {
		put_binary(&w, filters[i].ptr, filters[i].len);
		/* SUBSCRIBE without options asks for QoS 0 throughout. */
		if (type == MQTT_SUBSCRIBE)
			put_u8(&w, options ? options[i] : 0);
	}
	close_region(&w, packet);
	return finish(&w);
}

int mqtt_encode_subscribe(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                          const struct mqtt_str *filters, const uint8_t *options, size_t count)
{
	return encode_topic_list(out, MQTT_SUBSCRIBE, version, packet_id, filters, options, count);
}

int mqtt_encode_unsubscribe(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                            const struct mqtt_str *filters, size_t count)
{
	return encode_topic_list(out, MQTT_UNSUBSCRIBE, version, packet_id, filters, NULL, count);
}
