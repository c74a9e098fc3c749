/*
 * codec.h — MQTT 3.1.1 and 5 packets: framing, decoding, encoding.
 *
 * Incremental and zero-copy. mqtt_frame looks at the bytes received so far
 * and says whether a whole packet is there; the decoders then read that one
 * packet through a bounds-checked cursor and fill structs whose strings and
 * byte runs are (pointer, length) pairs into the caller's buffer: borrowed,
 * valid as long as that buffer is unchanged. Nothing here allocates except
 * the encoders, which append to a struct dm_buf (all or nothing).
 *
 * Decoders return 0, or a negative status and, through `reason` (may be
 * NULL), the MQTT 5 reason code the peer should hear:
 *   DM_ERR_MALFORMED   0x81 malformed packet
 *   DM_ERR_INVALID     0x82 protocol error, 0x90 topic name invalid,
 *                      0x94 topic alias invalid
 *   DM_ERR_UNSUPPORTED 0x84 unsupported protocol version (CONNECT only)
 *   DM_ERR_TOO_LARGE   0x83 more user properties than a CONNECT can hold
 * On failure the output struct is unspecified, except as noted.
 */
#ifndef DM_MQTT_CODEC_H
#define DM_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/server.h" /* enum mqtt_reason, struct mqtt_user_property */
#include "util/buf.h"

#define MQTT_V311 4
#define MQTT_V5 5
/* The largest remaining length a four-byte variable integer can carry. */
#define MQTT_MAX_REMAINING 268435455u
/* A CONNECT's user properties are kept (the node's hooks see them); this
 * many at most. Other packets' user properties are validated and counted. */
#define MQTT_MAX_USER_PROPERTIES 32

enum mqtt_packet_type {
	MQTT_CONNECT = 1,
	MQTT_CONNACK = 2,
	MQTT_PUBLISH = 3,
	MQTT_PUBACK = 4,
	MQTT_PUBREC = 5,
	MQTT_PUBREL = 6,
	MQTT_PUBCOMP = 7,
	MQTT_SUBSCRIBE = 8,
	MQTT_SUBACK = 9,
	MQTT_UNSUBSCRIBE = 10,
	MQTT_UNSUBACK = 11,
	MQTT_PINGREQ = 12,
	MQTT_PINGRESP = 13,
	MQTT_DISCONNECT = 14,
	MQTT_AUTH = 15,
};

/* Reason codes used in SUBACK, UNSUBACK and v5 CONNACK beyond server.h's. */
enum {
	MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
	MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
	MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
	MQTT_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
	MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
	/* MQTT 3.1.1 CONNACK return codes and SUBACK failure. */
	MQTT311_CONNACK_BAD_VERSION = 0x01,
	MQTT311_CONNACK_ID_REJECTED = 0x02,
	MQTT311_CONNACK_UNAVAILABLE = 0x03,
	MQTT311_CONNACK_BAD_CREDENTIALS = 0x04,
	MQTT311_CONNACK_NOT_AUTHORIZED = 0x05,
	MQTT311_SUBACK_FAILURE = 0x80,
};

/* A UTF-8 string or a byte run inside a packet; ptr is NULL when absent. */
struct mqtt_str {
	const char *ptr;
	size_t len;
};

struct mqtt_bin {
	const uint8_t *ptr;
	size_t len;
};

/* One packet's place in the input. body points into the caller's bytes. */
struct mqtt_frame {
	uint8_t type;      /* enum mqtt_packet_type (0 is refused) */
	uint8_t flags;     /* low nibble of the first byte */
	size_t header_len; /* 2..5 */
	size_t total_len;  /* header_len + body_len */
	const uint8_t *body;
	size_t body_len;
};

/*
 * Frames the packet at the start of data[0..len).
 * Returns the packet's total length (>= 2, so test for DM_NEED_MORE, which
 * is 1, before taking a positive result as a length) when it is all there;
 * DM_NEED_MORE when it is not (out->total_len is then the total length if
 * the fixed header was complete, else 0); DM_ERR_MALFORMED for packet type 0
 * or a bad remaining length (longer than 4 bytes or not minimally encoded);
 * DM_ERR_TOO_LARGE when the total length exceeds max_packet_size (0: only
 * the protocol's limit), decided as soon as the fixed header is complete, so
 * an oversized body is never buffered. Consumes nothing: the caller drops the
 * returned number of bytes once done with the packet.
 */
int mqtt_frame(const uint8_t *data, size_t len, size_t max_packet_size, struct mqtt_frame *out);

struct mqtt_connect {
	/* On failure this still holds the level read (0 if not reached), so
	 * the server can answer in the client's dialect. */
	uint8_t protocol_version;
	bool clean_start;
	uint16_t keep_alive;
	struct mqtt_str client_id; /* present, may be empty */
	struct mqtt_str username;
	struct mqtt_bin password;
	bool will;
	uint8_t will_qos;
	bool will_retain;
	struct mqtt_str will_topic;
	struct mqtt_bin will_payload;
	/* MQTT 5 properties (defaults when absent or 3.1.1). */
	uint32_t session_expiry;       /* 0 */
	uint16_t receive_maximum;      /* 65535 */
	uint32_t maximum_packet_size;  /* 0: no limit but the protocol's */
	uint16_t topic_alias_maximum;  /* 0 */
	uint8_t request_response_info; /* 0 */
	uint8_t request_problem_info;  /* 1 */
	struct mqtt_str auth_method;
	struct mqtt_bin auth_data;
	struct mqtt_user_property user_props[MQTT_MAX_USER_PROPERTIES];
	size_t user_prop_count;
};

struct mqtt_publish {
	bool dup;
	bool retain;
	uint8_t qos;        /* 0, 1 or 2 (the server refuses 2) */
	uint16_t packet_id; /* 0 for QoS 0 */
	struct mqtt_str topic;
	struct mqtt_bin payload;
	/* MQTT 5 properties. */
	int format_indicator; /* -1 absent, 0 bytes, 1 UTF-8 */
	bool has_message_expiry;
	uint32_t message_expiry;
	struct mqtt_str content_type;
	struct mqtt_str response_topic;
	struct mqtt_bin correlation_data;
	size_t user_prop_count;
};

/* PUBACK (and, by layout, PUBREC/PUBREL/PUBCOMP). */
struct mqtt_puback {
	uint16_t packet_id;
	uint8_t reason; /* 0 when the v5 packet left it out, or 3.1.1 */
	struct mqtt_str reason_string;
	size_t user_prop_count;
};

/* The topic filters of a SUBSCRIBE or UNSUBSCRIBE, validated, for
 * mqtt_topic_list_next. */
struct mqtt_topic_list {
	const uint8_t *bytes;
	size_t len;
	size_t count;
	bool with_options; /* SUBSCRIBE: each filter is followed by an options byte */
};

struct mqtt_subscribe {
	uint16_t packet_id;
	uint32_t subscription_id; /* MQTT 5; 0 when absent */
	size_t user_prop_count;
	struct mqtt_topic_list filters;
};

struct mqtt_unsubscribe {
	uint16_t packet_id;
	size_t user_prop_count;
	struct mqtt_topic_list filters;
};

struct mqtt_disconnect {
	uint8_t reason; /* 0 when left out */
	bool has_session_expiry;
	uint32_t session_expiry;
	struct mqtt_str reason_string;
	struct mqtt_str server_reference;
	size_t user_prop_count;
};

/* Subscription option bits (MQTT 5; 3.1.1 uses only the QoS). */
#define MQTT_SUBOPT_QOS_MASK 0x03
#define MQTT_SUBOPT_NO_LOCAL 0x04
#define MQTT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define MQTT_SUBOPT_RETAIN_HANDLING_SHIFT 4

int mqtt_decode_connect(const struct mqtt_frame *frame, struct mqtt_connect *out, uint8_t *reason);
int mqtt_decode_publish(const struct mqtt_frame *frame, uint8_t version, struct mqtt_publish *out,
                        uint8_t *reason);
int mqtt_decode_puback(const struct mqtt_frame *frame, uint8_t version, struct mqtt_puback *out,
                       uint8_t *reason);
int mqtt_decode_subscribe(const struct mqtt_frame *frame, uint8_t version,
                          struct mqtt_subscribe *out, uint8_t *reason);
int mqtt_decode_unsubscribe(const struct mqtt_frame *frame, uint8_t version,
                            struct mqtt_unsubscribe *out, uint8_t *reason);
int mqtt_decode_pingreq(const struct mqtt_frame *frame, uint8_t *reason);
int mqtt_decode_disconnect(const struct mqtt_frame *frame, uint8_t version,
                           struct mqtt_disconnect *out, uint8_t *reason);

/* Client-side decoders, for tests and the benchmark client. */
struct mqtt_connack {
	bool session_present;
	uint8_t reason;
	uint16_t receive_maximum;     /* 65535 when absent */
	uint32_t maximum_packet_size; /* 0 when absent */
	int topic_alias_maximum;      /* -1 when absent */
	int maximum_qos;              /* -1 when absent */
	int retain_available;         /* -1 when absent */
	int wildcard_available;       /* -1 when absent */
	int shared_available;         /* -1 when absent */
	uint16_t server_keep_alive;   /* 0 when absent */
	struct mqtt_str assigned_client_id;
	struct mqtt_str server_reference;
	struct mqtt_str reason_string;
};

/* SUBACK and UNSUBACK: the reason codes (3.1.1 UNSUBACK has none). */
struct mqtt_ack_list {
	uint16_t packet_id;
	const uint8_t *codes;
	size_t count;
	struct mqtt_str reason_string;
};

int mqtt_decode_connack(const struct mqtt_frame *frame, uint8_t version, struct mqtt_connack *out,
                        uint8_t *reason);
int mqtt_decode_suback(const struct mqtt_frame *frame, uint8_t version, struct mqtt_ack_list *out,
                       uint8_t *reason);

/*
 * Hands out the next filter (and, for SUBSCRIBE, its options byte) of a
 * list a decoder validated. *offset starts at 0. Returns true while it
 * produced one, false at the end.
 */
bool mqtt_topic_list_next(const struct mqtt_topic_list *list, size_t *offset,
                          struct mqtt_str *filter, uint8_t *options);

/* Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF) without U+0000, as MQTT requires of every string. */
bool mqtt_utf8_valid(const void *bytes, size_t len);
/* A valid topic name: non-empty, valid UTF-8, no '+' or '#'. */
bool mqtt_topic_name_valid(const char *topic, size_t len);
/* A valid topic filter: non-empty, valid UTF-8, '+' alone in its level,
 * '#' alone in the last level. */
bool mqtt_topic_filter_valid(const char *filter, size_t len);
bool mqtt_topic_has_wildcards(const char *topic, size_t len);

/*
 * Encoders. Each appends one whole packet to out, or leaves out unchanged
 * and returns DM_ERR_NOMEM, or DM_ERR_TOO_LARGE when a string exceeds 65535
 * bytes or the packet the protocol's limit. Optional strings are left out
 * when their ptr is NULL.
 */

/* What the server tells a client in CONNACK. Only MQTT 5 uses the
 * properties; the server always states that it has no topic aliases, no
 * retained messages, no wildcard, shared or identified subscriptions and
 * QoS 1 at most. */
struct mqtt_connack_props {
	uint16_t receive_maximum;     /* 0: left out */
	uint32_t maximum_packet_size; /* 0: left out */
	uint16_t server_keep_alive;   /* 0: left out */
	struct mqtt_str assigned_client_id;
	struct mqtt_str server_reference;
	struct mqtt_str reason_string;
};

int mqtt_encode_connack(struct dm_buf *out, uint8_t version, bool session_present, uint8_t reason,
                        const struct mqtt_connack_props *props);
int mqtt_encode_puback(struct dm_buf *out, uint8_t version, uint16_t packet_id, uint8_t reason,
                       const char *reason_string);
int mqtt_encode_suback(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                       const uint8_t *codes, size_t count);
/* 3.1.1 UNSUBACK carries no codes: count is ignored. */
int mqtt_encode_unsuback(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                         const uint8_t *codes, size_t count);
int mqtt_encode_pingresp(struct dm_buf *out);
/* 3.1.1: the two-byte DISCONNECT (clients only). MQTT 5: reason and an
 * optional server reference. */
int mqtt_encode_disconnect(struct dm_buf *out, uint8_t version, uint8_t reason,
                           const char *server_reference);
/* PUBLISH at QoS msg->qos (0 or 1) with msg's dup, retain, packet id and
 * MQTT 5 payload format indicator and content type. */
int mqtt_encode_publish(struct dm_buf *out, uint8_t version, const struct mqtt_publish *msg);

/* Client side (tests, benchmark). options may be NULL (QoS 0 for all). CONNECT encodes
 * protocol_version, flags, keep alive, client id, will, username, password and, for MQTT 5, session
 * expiry, receive maximum and maximum packet size when not the defaults,
 * and the user properties. */
int mqtt_encode_connect(struct dm_buf *out, const struct mqtt_connect *msg);
int mqtt_encode_subscribe(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                          const struct mqtt_str *filters, const uint8_t *options, size_t count);
int mqtt_encode_unsubscribe(struct dm_buf *out, uint8_t version, uint16_t packet_id,
                            const struct mqtt_str *filters, size_t count);
int mqtt_encode_pingreq(struct dm_buf *out);

#endif
