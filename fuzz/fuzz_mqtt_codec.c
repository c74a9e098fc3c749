/*
 * fuzz_mqtt_codec.c — libFuzzer target for the MQTT codec.
 *
 * The first input byte picks the protocol version and a maximum packet
 * size; the rest is a byte stream framed packet by packet, each packet
 * handed to every decoder that applies. Whatever decodes is encoded again
 * where an encoder exists, and must decode to the same fields: the codec
 * must never read out of bounds, and what it writes it must read back.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"
#include "util/err.h"

static void check(int condition)
{
	if (!condition)
		abort();
}

static void touch(const void *bytes, size_t len)
{
	/* Read every byte a decoder handed out, so ASan sees any overrun. */
	volatile uint8_t sink = 0;
	const uint8_t *p = bytes;
	for (size_t i = 0; i < len; i++)
		sink ^= p[i];
	(void)sink;
}

static void reencode_publish(uint8_t version, const struct mqtt_publish *msg)
{
	struct dm_buf out = {0};
	if (mqtt_encode_publish(&out, version, msg) != DM_OK)
		return;
	struct mqtt_frame frame;
	check(mqtt_frame(out.data, out.len, 0, &frame) == (int)out.len);
	struct mqtt_publish again;
	check(mqtt_decode_publish(&frame, version, &again, NULL) == DM_OK);
	check(again.topic.len == msg->topic.len &&
	      memcmp(again.topic.ptr, msg->topic.ptr, msg->topic.len) == 0);
	check(again.payload.len == msg->payload.len);
	check(again.qos == msg->qos && again.packet_id == msg->packet_id);
	dm_buf_free(&out);
}

static void reencode_connect(const struct mqtt_connect *msg)
{
	struct dm_buf out = {0};
	if (mqtt_encode_connect(&out, msg) != DM_OK)
		return;
	struct mqtt_frame frame;
	check(mqtt_frame(out.data, out.len, 0, &frame) == (int)out.len);
	struct mqtt_connect again;
	check(mqtt_decode_connect(&frame, &again, NULL) == DM_OK);
	check(again.client_id.len == msg->client_id.len);
	check(again.keep_alive == msg->keep_alive);
	check(again.user_prop_count == msg->user_prop_count);
	dm_buf_free(&out);
}

static void decode_all(const struct mqtt_frame *frame, uint8_t version)
{
	uint8_t reason;
	struct mqtt_connect connect;
	if (mqtt_decode_connect(frame, &connect, &reason) == DM_OK) {
		touch(connect.client_id.ptr, connect.client_id.len);
		for (size_t i = 0; i < connect.user_prop_count; i++)
			touch(connect.user_props[i].value, connect.user_props[i].value_len);
		reencode_connect(&connect);
	}
	struct mqtt_publish publish;
	if (mqtt_decode_publish(frame, version, &publish, &reason) == DM_OK) {
		touch(publish.topic.ptr, publish.topic.len);
		touch(publish.payload.ptr, publish.payload.len);
		check(mqtt_topic_name_valid(publish.topic.ptr, publish.topic.len));
		reencode_publish(version, &publish);
	}
	struct mqtt_puback puback;
	if (mqtt_decode_puback(frame, version, &puback, &reason) == DM_OK)
		touch(puback.reason_string.ptr, puback.reason_string.len);
	struct mqtt_subscribe subscribe;
	if (mqtt_decode_subscribe(frame, version, &subscribe, &reason) == DM_OK) {
		size_t offset = 0, count = 0;
		struct mqtt_str filter;
		uint8_t options;
		while (mqtt_topic_list_next(&subscribe.filters, &offset, &filter, &options)) {
			touch(filter.ptr, filter.len);
			mqtt_topic_filter_valid(filter.ptr, filter.len);
			count++;
		}
		check(count == subscribe.filters.count);
	}
	struct mqtt_unsubscribe unsubscribe;
	if (mqtt_decode_unsubscribe(frame, version, &unsubscribe, &reason) == DM_OK) {
		size_t offset = 0, count = 0;
		struct mqtt_str filter;
		while (mqtt_topic_list_next(&unsubscribe.filters, &offset, &filter, NULL))
			count++;
		check(count == unsubscribe.filters.count);
	}
	mqtt_decode_pingreq(frame, &reason);
	struct mqtt_disconnect disconnect;
	if (mqtt_decode_disconnect(frame, version, &disconnect, &reason) == DM_OK)
		touch(disconnect.server_reference.ptr, disconnect.server_reference.len);
	struct mqtt_connack connack;
	mqtt_decode_connack(frame, version, &connack, &reason);
	struct mqtt_ack_list acks;
	if (mqtt_decode_suback(frame, version, &acks, &reason) == DM_OK)
		touch(acks.codes, acks.count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t version = (data[0] & 1) ? MQTT_V5 : MQTT_V311;
	size_t max_packet = (data[0] & 2) ? 0 : 64 + (size_t)(data[0] >> 2) * 16;
	data++;
	size--;
	/* A copy of exactly `size` bytes, so any over-read leaves the heap block. */
	uint8_t *stream = malloc(size ? size : 1);
	if (!stream)
		return 0;
	memcpy(stream, data, size);
	size_t pos = 0;
	while (pos < size) {
		struct mqtt_frame frame;
		int rc = mqtt_frame(stream + pos, size - pos, max_packet, &frame);
		if (rc == DM_NEED_MORE || rc < 0)
			break;
		check(rc >= 2 && (size_t)rc <= size - pos);
		check(frame.total_len == (size_t)rc);
		check(max_packet == 0 || frame.total_len <= max_packet);
		/* Each packet alone in a block of its own size: a decoder that
		 * strays past its packet hits the redzone, not the next packet. */
		uint8_t *packet = malloc((size_t)rc);
		if (!packet)
			break;
		memcpy(packet, stream + pos, (size_t)rc);
		check(mqtt_frame(packet, (size_t)rc, max_packet, &frame) == rc);
		decode_all(&frame, version);
		free(packet);
		pos += (size_t)rc;
	}
	free(stream);
	return 0;
}
