/*
 * test_mqtt_server.c — the MQTT server over real TCP sockets.
 *
 * Each case starts a server on 127.0.0.1, port 0, and drives it with
 * blocking client sockets while pumping the event loop in this thread
 * (event_base_loop with EVLOOP_NONBLOCK) between reads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mqtt/codec.h"
#include "mqtt/server.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define WAIT_MS 2000

struct fixture {
	struct event_base *base;
	struct mqtt_server *server;
	int connects;
	int closes;
	int publishes;
	uint64_t last_session;
	void *last_close_data;
	uint16_t last_packet_id;
	uint8_t last_qos;
	char last_topic[128];
	char last_payload[256];
	int last_format;
	int subscribes;
	bool ack_inline;  /* on_publish acknowledges before returning */
	bool kick_inline; /* on_publish disconnects its own session */
};

static struct fixture fx;

/* ---- hooks: a small policy the cases can reason about ---- */

static void on_connect(void *arg, const struct mqtt_connect_info *info,
                       struct mqtt_connect_decision *decision)
{
	struct fixture *f = arg;
	f->connects++;
	f->last_session = info->session_id;
	if (info->username && info->username_len == 5 && memcmp(info->username, "moved", 5) == 0) {
		decision->reason = MQTT_RC_SERVER_MOVED;
		decision->server_reference = "mqtt.de.example:8883";
		return;
	}
	if (info->password && info->password_len == 6 && memcmp(info->password, "secret", 6) == 0) {
		decision->reason = MQTT_RC_SUCCESS;
		decision->session_data = f;
		return;
	}
	decision->reason = MQTT_RC_BAD_CREDENTIALS;
}

static uint8_t on_subscribe(void *arg, uint64_t session_id, void *session_data, const char *filter,
                            size_t filter_len)
{
	struct fixture *f = arg;
	f->subscribes++;
	if (filter_len >= 6 && memcmp(filter, "secret", 6) == 0)
		return MQTT_RC_NOT_AUTHORIZED;
	return MQTT_RC_SUCCESS;
}

static void on_publish(void *arg, const struct mqtt_publish_info *info)
{
	struct fixture *f = arg;
	assert_ptr_equal(info->session_data, f);
	f->publishes++;
	f->last_session = info->session_id;
	f->last_packet_id = info->packet_id;
	f->last_qos = info->qos;
	f->last_format = info->format_indicator;
	snprintf(f->last_topic, sizeof f->last_topic, "%.*s", (int)info->topic_len, info->topic);
	snprintf(f->last_payload, sizeof f->last_payload, "%.*s", (int)info->payload_len,
	         (const char *)info->payload);
	if (f->ack_inline && info->qos == 1)
		mqtt_server_puback(f->server, info->session_id, info->packet_id, 0, NULL);
	if (f->kick_inline)
		mqtt_server_disconnect(f->server, info->session_id, MQTT_RC_NOT_AUTHORIZED);
}

static void on_close(void *arg, uint64_t session_id, void *session_data)
{
	struct fixture *f = arg;
	f->closes++;
	f->last_close_data = session_data;
}

static int start_server(const struct mqtt_server_options *options)
{
	memset(&fx, 0, sizeof fx);
	fx.base = event_base_new();
	if (!fx.base)
		return -1;
	struct mqtt_server_hooks hooks = {
	    .arg = &fx,
	    .on_connect = on_connect,
	    .on_subscribe = on_subscribe,
	    .on_publish = on_publish,
	    .on_close = on_close,
	};
	if (mqtt_server_new(fx.base, options, &hooks, &fx.server) != DM_OK)
		return -1;
	if (mqtt_server_listen(fx.server, "127.0.0.1:0") != DM_OK)
		return -1;
	return 0;
}

static int setup(void **state)
{
	struct mqtt_server_options options = {.receive_maximum = 4, .max_packet_size = 4096};
	return start_server(&options);
}

static int teardown(void **state)
{
	mqtt_server_free(fx.server);
	event_base_free(fx.base);
	fx.server = NULL;
	fx.base = NULL;
	return 0;
}

static void pump(void)
{
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
}

/* Runs the loop until *counter reaches want or the wait ends. */
static void pump_until(const int *counter, int want)
{
	uint64_t deadline = dm_mono_ns() + (uint64_t)WAIT_MS * 1000000;
	while (*counter < want && dm_mono_ns() < deadline) {
		pump();
		usleep(500);
	}
}

/* ---- a tiny blocking client ---- */

struct client {
	int fd;
	uint8_t version;
	uint8_t in[70000];
	size_t in_len;
	uint8_t packet[70000]; /* the last packet received */
	struct mqtt_frame frame;
};

static struct client *client_open(uint8_t version)
{
	struct client *c = dm_calloc(1, sizeof *c);
	assert_non_null(c);
	c->version = version;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c->fd >= 0);
	struct sockaddr_in addr = {.sin_family = AF_INET};
	addr.sin_port = htons((uint16_t)mqtt_server_port(fx.server));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&addr, sizeof addr), 0);
	return c;
}

static void client_close(struct client *c)
{
	close(c->fd);
	dm_free(c);
}

static void client_send(struct client *c, const void *bytes, size_t len)
{
	assert_int_equal(send(c->fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void client_send_buf(struct client *c, struct dm_buf *buf)
{
	client_send(c, buf->data, buf->len);
	dm_buf_reset(buf);
}

/* Waits for one whole packet: 1 when it came (in c->frame), 0 on timeout,
 * -1 when the server closed the connection. */
static int client_recv(struct client *c, int wait_ms)
{
	uint64_t deadline = dm_mono_ns() + (uint64_t)wait_ms * 1000000;
	for (;;) {
		int rc = mqtt_frame(c->in, c->in_len, 0, &c->frame);
		if (rc > DM_NEED_MORE) {
			memcpy(c->packet, c->in, (size_t)rc);
			memmove(c->in, c->in + rc, c->in_len - (size_t)rc);
			c->in_len -= (size_t)rc;
			c->frame.body = c->packet + c->frame.header_len;
			return 1;
		}
		assert_int_equal(rc, DM_NEED_MORE);
		pump();
		ssize_t got =
		    recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
		if (got > 0) {
			c->in_len += (size_t)got;
			continue;
		}
		if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return -1;
		if (dm_mono_ns() > deadline)
			return 0;
		usleep(500);
	}
}

static void expect_closed(struct client *c)
{
	int rc;
	while ((rc = client_recv(c, WAIT_MS)) == 1)
		;
	assert_int_equal(rc, -1);
}

static void send_connect(struct client *c, const char *client_id, const char *username,
                         const char *password, uint16_t keep_alive)
{
	struct mqtt_connect msg = {
	    .protocol_version = c->version, .clean_start = true, .keep_alive = keep_alive};
	msg.client_id.ptr = client_id;
	msg.client_id.len = strlen(client_id);
	if (username) {
		msg.username.ptr = username;
		msg.username.len = strlen(username);
	}
	if (password) {
		msg.password.ptr = (const uint8_t *)password;
		msg.password.len = strlen(password);
	}
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_connect(&buf, &msg), DM_OK);
	client_send_buf(c, &buf);
	dm_buf_free(&buf);
}

static void expect_connack(struct client *c, uint8_t reason, struct mqtt_connack *out)
{
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	assert_int_equal(c->frame.type, MQTT_CONNACK);
	assert_int_equal(mqtt_decode_connack(&c->frame, c->version, out, NULL), DM_OK);
	assert_int_equal(out->reason, reason);
}

static struct client *connected_client(uint8_t version, const char *vin, uint16_t keep_alive)
{
	struct client *c = client_open(version);
	send_connect(c, vin, vin, "secret", keep_alive);
	struct mqtt_connack ack;
	expect_connack(c, 0, &ack);
	return c;
}

static void send_publish(struct client *c, const char *topic, const char *payload, uint8_t qos,
                         uint16_t packet_id)
{
	struct mqtt_publish msg = {.qos = qos, .packet_id = packet_id, .format_indicator = 1};
	msg.topic.ptr = topic;
	msg.topic.len = strlen(topic);
	msg.payload.ptr = (const uint8_t *)payload;
	msg.payload.len = strlen(payload);
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_publish(&buf, c->version, &msg), DM_OK);
	client_send_buf(c, &buf);
	dm_buf_free(&buf);
}

static void expect_disconnect(struct client *c, uint8_t reason)
{
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	assert_int_equal(c->frame.type, MQTT_DISCONNECT);
	struct mqtt_disconnect bye;
	assert_int_equal(mqtt_decode_disconnect(&c->frame, MQTT_V5, &bye, NULL), DM_OK);
	assert_int_equal(bye.reason, reason);
	expect_closed(c);
}

/* ---- cases ---- */

static void test_server_accepts_a_v5_connect_and_states_its_limits(void **state)
{
	struct client *c = client_open(MQTT_V5);
	send_connect(c, "VIN0001", "VIN0001", "secret", 60);
	struct mqtt_connack ack;
	expect_connack(c, MQTT_RC_SUCCESS, &ack);
	assert_int_equal(ack.receive_maximum, 4);
	assert_int_equal(ack.maximum_packet_size, 4096);
	assert_int_equal(ack.topic_alias_maximum, 0);
	assert_int_equal(ack.retain_available, 0);
	assert_int_equal(ack.wildcard_available, 0);
	assert_int_equal(ack.shared_available, 0);
	assert_int_equal(ack.maximum_qos, 1);
	assert_null(ack.assigned_client_id.ptr);
	assert_int_equal(fx.connects, 1);
	struct mqtt_server_stats stats;
	mqtt_server_stats(fx.server, &stats);
	assert_int_equal(stats.connections_open, 1);
	assert_int_equal(stats.connections_total, 1);
	assert_true(stats.bytes_in > 0);
	assert_true(stats.bytes_out > 0);
	client_close(c);
	pump_until(&fx.closes, 1);
	assert_int_equal(fx.closes, 1);
	assert_ptr_equal(fx.last_close_data, &fx);
}

static void test_server_assigns_an_id_to_a_v5_client_that_sent_none(void **state)
{
	struct client *c = client_open(MQTT_V5);
	send_connect(c, "", "x", "secret", 60);
	struct mqtt_connack ack;
	expect_connack(c, MQTT_RC_SUCCESS, &ack);
	assert_non_null(ack.assigned_client_id.ptr);
	assert_true(ack.assigned_client_id.len > 0);
	client_close(c);
}

static void test_server_refuses_bad_credentials_with_0x86_and_closes(void **state)
{
	struct client *c = client_open(MQTT_V5);
	send_connect(c, "VIN0002", "VIN0002", "wrong", 60);
	struct mqtt_connack ack;
	expect_connack(c, MQTT_RC_BAD_CREDENTIALS, &ack);
	expect_closed(c);
	client_close(c);

	c = client_open(MQTT_V311);
	send_connect(c, "VIN0002", "VIN0002", "wrong", 60);
	expect_connack(c, MQTT311_CONNACK_BAD_CREDENTIALS, &ack);
	expect_closed(c);
	client_close(c);

	struct mqtt_server_stats stats;
	mqtt_server_stats(fx.server, &stats);
	assert_int_equal(stats.connections_refused, 2);
	pump();
	assert_int_equal(fx.closes, 0); /* refused sessions never opened */
}

static void test_server_redirects_with_0x9d_and_a_server_reference(void **state)
{
	struct client *c = client_open(MQTT_V5);
	send_connect(c, "VIN0003", "moved", "secret", 60);
	struct mqtt_connack ack;
	expect_connack(c, MQTT_RC_SERVER_MOVED, &ack);
	assert_int_equal(ack.server_reference.len, strlen("mqtt.de.example:8883"));
	assert_memory_equal(ack.server_reference.ptr, "mqtt.de.example:8883",
	                    ack.server_reference.len);
	expect_closed(c);
	client_close(c);

	c = client_open(MQTT_V311);
	send_connect(c, "VIN0003", "moved", "secret", 60);
	expect_connack(c, MQTT311_CONNACK_NOT_AUTHORIZED, &ack);
	expect_closed(c);
	client_close(c);
}

static void test_server_reads_nothing_past_a_refused_connect(void **state)
{
	struct client *c = client_open(MQTT_V5);
	/* CONNECT and PUBLISH in one write: the PUBLISH must go unread. */
	struct mqtt_connect msg = {.protocol_version = MQTT_V5, .clean_start = true};
	msg.client_id.ptr = "VIN0004";
	msg.client_id.len = 7;
	struct mqtt_publish pub = {.qos = 0, .format_indicator = -1};
	pub.topic.ptr = "v/VIN0004/telemetry";
	pub.topic.len = strlen(pub.topic.ptr);
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_connect(&buf, &msg), DM_OK);
	assert_int_equal(mqtt_encode_publish(&buf, MQTT_V5, &pub), DM_OK);
	client_send_buf(c, &buf);
	dm_buf_free(&buf);
	struct mqtt_connack ack;
	expect_connack(c, MQTT_RC_BAD_CREDENTIALS, &ack);
	expect_closed(c);
	assert_int_equal(fx.publishes, 0);
	client_close(c);
}

static void test_server_acknowledges_qos1_only_when_the_node_says_so(void **state)
{
	for (uint8_t version = MQTT_V311; version <= MQTT_V5; version++) {
		struct client *c = connected_client(version, "VIN0005", 60);
		uint64_t session = fx.last_session;
		int before = fx.publishes;
		send_publish(c, "v/VIN0005/telemetry", "{\"speed\":12}", 1, 77);
		pump_until(&fx.publishes, before + 1);
		assert_int_equal(fx.publishes, before + 1);
		assert_string_equal(fx.last_topic, "v/VIN0005/telemetry");
		assert_string_equal(fx.last_payload, "{\"speed\":12}");
		assert_int_equal(fx.last_qos, 1);
		assert_int_equal(fx.last_packet_id, 77);
		assert_int_equal(fx.last_format, version == MQTT_V5 ? 1 : -1);
		/* Not acknowledged until the node calls back. */
		assert_int_equal(client_recv(c, 100), 0);
		mqtt_server_puback(fx.server, session, 77, MQTT_RC_SUCCESS, NULL);
		assert_int_equal(client_recv(c, WAIT_MS), 1);
		assert_int_equal(c->frame.type, MQTT_PUBACK);
		struct mqtt_puback ack;
		assert_int_equal(mqtt_decode_puback(&c->frame, version, &ack, NULL), DM_OK);
		assert_int_equal(ack.packet_id, 77);
		assert_int_equal(ack.reason, 0);
		/* A second acknowledgement of the same id sends nothing. */
		mqtt_server_puback(fx.server, session, 77, MQTT_RC_SUCCESS, NULL);
		assert_int_equal(client_recv(c, 100), 0);
		client_close(c);
		int closes = fx.closes;
		pump_until(&fx.closes, closes + 1);
		/* A late acknowledgement for a session that has gone is dropped. */
		mqtt_server_puback(fx.server, session, 78, MQTT_RC_SUCCESS, NULL);
	}
}

static void test_server_passes_a_refusal_reason_to_v5_and_hangs_up_on_3_1_1(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0006", 60);
	uint64_t session = fx.last_session;
	send_publish(c, "v/VIN0006/telemetry", "bad", 1, 5);
	pump_until(&fx.publishes, 1);
	mqtt_server_puback(fx.server, session, 5, MQTT_RC_PAYLOAD_FORMAT_INVALID, "not JSON");
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	struct mqtt_puback ack;
	assert_int_equal(mqtt_decode_puback(&c->frame, MQTT_V5, &ack, NULL), DM_OK);
	assert_int_equal(ack.reason, MQTT_RC_PAYLOAD_FORMAT_INVALID);
	assert_int_equal(ack.reason_string.len, 8);
	client_close(c);

	c = connected_client(MQTT_V311, "VIN0007", 60);
	session = fx.last_session;
	send_publish(c, "v/VIN0007/telemetry", "bad", 1, 6);
	pump_until(&fx.publishes, 2);
	mqtt_server_puback(fx.server, session, 6, MQTT_RC_PAYLOAD_FORMAT_INVALID, NULL);
	expect_closed(c);
	client_close(c);
}

static void test_server_closes_a_connection_on_garbage_while_another_keeps_working(void **state)
{
	struct client *good = connected_client(MQTT_V5, "VIN0008", 60);
	struct client *bad = connected_client(MQTT_V5, "VIN0009", 60);
	static const uint8_t garbage[] = {0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef};
	client_send(bad, garbage, sizeof garbage);
	expect_disconnect(bad, MQTT_RC_MALFORMED);
	client_close(bad);

	struct client *old = connected_client(MQTT_V311, "VIN0010", 60);
	client_send(old, garbage, sizeof garbage);
	expect_closed(old); /* 3.1.1: no DISCONNECT from a server */
	client_close(old);

	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_pingreq(&buf), DM_OK);
	client_send_buf(good, &buf);
	assert_int_equal(client_recv(good, WAIT_MS), 1);
	assert_int_equal(good->frame.type, MQTT_PINGRESP);
	send_publish(good, "v/VIN0008/telemetry", "{}", 0, 0);
	pump_until(&fx.publishes, 1);
	assert_int_equal(fx.publishes, 1);
	struct mqtt_server_stats stats;
	mqtt_server_stats(fx.server, &stats);
	assert_int_equal(stats.protocol_errors, 2);
	dm_buf_free(&buf);
	client_close(good);
}

static void test_server_closes_on_a_second_connect_with_protocol_error(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0011", 60);
	send_connect(c, "VIN0011", "VIN0011", "secret", 60);
	expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
	client_close(c);
	assert_int_equal(fx.connects, 1);
}

static void test_server_refuses_a_packet_above_the_maximum_size_with_0x95(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0012", 60);
	/* Only the fixed header of a 5000-byte PUBLISH: refused before the body. */
	static const uint8_t header[] = {0x30, 0x85, 0x27};
	client_send(c, header, sizeof header);
	expect_disconnect(c, MQTT_RC_PACKET_TOO_LARGE);
	client_close(c);
}

static void test_server_refuses_qos2_with_0x9b(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0013", 60);
	send_publish(c, "v/VIN0013/telemetry", "{}", 2, 1);
	expect_disconnect(c, MQTT_RC_QOS_NOT_SUPPORTED);
	client_close(c);
	assert_int_equal(fx.publishes, 0);
}

static void test_server_refuses_a_wildcard_topic_in_publish_with_0x90(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0014", 60);
	send_publish(c, "v/+/telemetry", "{}", 0, 0);
	expect_disconnect(c, MQTT_RC_TOPIC_NAME_INVALID);
	client_close(c);
}

static void test_server_disconnects_a_v5_client_beyond_receive_maximum(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0015", 60);
	for (uint16_t id = 1; id <= 5; id++)
		send_publish(c, "v/VIN0015/telemetry", "{}", 1, id);
	expect_disconnect(c, MQTT_RC_RECEIVE_MAX_EXCEEDED);
	assert_int_equal(fx.publishes, 4);
	client_close(c);
}

static void test_server_holds_back_a_3_1_1_client_at_receive_maximum(void **state)
{
	struct client *c = connected_client(MQTT_V311, "VIN0016", 60);
	uint64_t session = fx.last_session;
	for (uint16_t id = 1; id <= 6; id++)
		send_publish(c, "v/VIN0016/telemetry", "{}", 1, id);
	pump_until(&fx.publishes, 6);
	assert_int_equal(fx.publishes, 4);
	mqtt_server_puback(fx.server, session, 1, MQTT_RC_SUCCESS, NULL);
	mqtt_server_puback(fx.server, session, 2, MQTT_RC_SUCCESS, NULL);
	pump_until(&fx.publishes, 6);
	assert_int_equal(fx.publishes, 6);
	assert_int_equal(fx.last_packet_id, 6);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(client_recv(c, WAIT_MS), 1);
		assert_int_equal(c->frame.type, MQTT_PUBACK);
	}
	client_close(c);
}

static void test_server_expires_a_silent_client_after_one_and_a_half_keep_alives(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0017", 1);
	uint64_t start = dm_mono_ns();
	assert_int_equal(client_recv(c, 3000), 1);
	uint64_t elapsed_ms = (dm_mono_ns() - start) / 1000000;
	assert_int_equal(c->frame.type, MQTT_DISCONNECT);
	struct mqtt_disconnect bye;
	assert_int_equal(mqtt_decode_disconnect(&c->frame, MQTT_V5, &bye, NULL), DM_OK);
	assert_int_equal(bye.reason, MQTT_RC_KEEP_ALIVE_TIMEOUT);
	assert_true(elapsed_ms >= 1300);
	assert_true(elapsed_ms < 2500);
	expect_closed(c);
	client_close(c);
}

static void test_server_keeps_a_client_that_pings_in_time(void **state)
{
	struct client *c = connected_client(MQTT_V311, "VIN0018", 1);
	struct dm_buf buf = {0};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(client_recv(c, 900), 0);
		assert_int_equal(mqtt_encode_pingreq(&buf), DM_OK);
		client_send_buf(c, &buf);
		assert_int_equal(client_recv(c, WAIT_MS), 1);
		assert_int_equal(c->frame.type, MQTT_PINGRESP);
	}
	dm_buf_free(&buf);
	client_close(c);
}

static void test_server_drops_a_connection_that_never_sends_connect(void **state)
{
	teardown(state);
	struct mqtt_server_options options = {.connect_timeout_s = 1};
	assert_int_equal(start_server(&options), 0);
	struct client *c = client_open(MQTT_V5);
	uint64_t start = dm_mono_ns();
	expect_closed(c);
	assert_true((dm_mono_ns() - start) / 1000000 >= 900);
	client_close(c);
	assert_int_equal(fx.connects, 0);
}

/* A CONNECT of n bytes in all: the password pads it to size. */
static void send_connect_of_size(struct client *c, size_t total)
{
	static char password[9000];
	struct mqtt_connect msg = {.protocol_version = c->version, .clean_start = true};
	msg.client_id.ptr = "VIN0030";
	msg.client_id.len = 7;
	msg.username = msg.client_id;
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_connect(&buf, &msg), DM_OK);
	size_t bare = buf.len; /* without a password: grows by 2 + len, plus a length byte */
	dm_buf_free(&buf);
	size_t len = total - bare - 3;
	memset(password, 'p', len);
	msg.password.ptr = (const uint8_t *)password;
	msg.password.len = len;
	assert_int_equal(mqtt_encode_connect(&buf, &msg), DM_OK);
	assert_int_equal(buf.len, total);
	client_send_buf(c, &buf);
	dm_buf_free(&buf);
}

static void test_server_limits_what_a_peer_may_send_before_connect_to_8_kib(void **state)
{
	teardown(state);
	struct mqtt_server_options options = {.max_packet_size = 65536};
	assert_int_equal(start_server(&options), 0);
	/* At the limit the CONNECT is read and answered (here: refused, for
	 * its password); one byte more and it is not read at all. */
	struct client *c = client_open(MQTT_V311);
	send_connect_of_size(c, 8192);
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	assert_int_equal(c->frame.type, MQTT_CONNACK);
	client_close(c);
	c = client_open(MQTT_V311);
	send_connect_of_size(c, 8193);
	expect_closed(c);
	client_close(c);
}

static void test_server_closes_connections_beyond_its_maximum(void **state)
{
	teardown(state);
	struct mqtt_server_options options = {.max_connections = 2};
	assert_int_equal(start_server(&options), 0);
	struct client *a = connected_client(MQTT_V5, "VIN0031", 60);
	struct client *b = connected_client(MQTT_V5, "VIN0032", 60);
	struct client *c = client_open(MQTT_V5);
	expect_closed(c);
	client_close(c);
	client_close(a);
	pump_until(&fx.closes, 1);
	c = connected_client(MQTT_V5, "VIN0033", 60);
	client_close(b);
	client_close(c);
}

static void test_server_gives_a_v5_client_without_keep_alive_the_server_maximum(void **state)
{
	teardown(state);
	struct mqtt_server_options options = {.max_keep_alive = 1};
	assert_int_equal(start_server(&options), 0);
	struct client *c = client_open(MQTT_V5);
	send_connect(c, "VIN0034", "VIN0034", "secret", 0);
	struct mqtt_connack ack;
	expect_connack(c, MQTT_RC_SUCCESS, &ack);
	assert_int_equal(ack.server_keep_alive, 1);
	/* ... and holds it to it: silence ends the session. */
	assert_int_equal(client_recv(c, 3000), 1);
	assert_int_equal(c->frame.type, MQTT_DISCONNECT);
	client_close(c);
}

static void subscribe_one(struct client *c, uint16_t packet_id, const char *filter,
                          uint8_t expected)
{
	struct mqtt_str filters[] = {{filter, strlen(filter)}};
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_subscribe(&buf, c->version, packet_id, filters, NULL, 1),
	                 DM_OK);
	client_send_buf(c, &buf);
	dm_buf_free(&buf);
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	assert_int_equal(c->frame.type, MQTT_SUBACK);
	struct mqtt_ack_list ack;
	assert_int_equal(mqtt_decode_suback(&c->frame, c->version, &ack, NULL), DM_OK);
	assert_int_equal(ack.packet_id, packet_id);
	assert_int_equal(ack.count, 1);
	assert_int_equal(ack.codes[0], expected);
}

static void test_server_delivers_policy_messages_to_exact_subscribers(void **state)
{
	struct client *v5 = connected_client(MQTT_V5, "VIN0019", 60);
	struct client *v3 = connected_client(MQTT_V311, "VIN0020", 60);
	subscribe_one(v5, 1, "p/VIN0019/policy", 0);
	subscribe_one(v5, 2, "p/+/policy", MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED);
	subscribe_one(v5, 3, "$share/g/p/x", MQTT_RC_SHARED_SUB_NOT_SUPPORTED);
	subscribe_one(v5, 4, "secret/topic", MQTT_RC_NOT_AUTHORIZED);
	subscribe_one(v3, 1, "p/VIN0019/policy", 0);
	subscribe_one(v3, 2, "p/#", MQTT311_SUBACK_FAILURE);

	static const char policy[] = "{\"zones\":3}";
	assert_int_equal(mqtt_server_publish(fx.server, "p/VIN0019/policy", (const uint8_t *)policy,
	                                     strlen(policy)),
	                 DM_OK);
	struct client *both[] = {v5, v3};
	for (int i = 0; i < 2; i++) {
		struct client *c = both[i];
		assert_int_equal(client_recv(c, WAIT_MS), 1);
		assert_int_equal(c->frame.type, MQTT_PUBLISH);
		struct mqtt_publish msg;
		assert_int_equal(mqtt_decode_publish(&c->frame, c->version, &msg, NULL), DM_OK);
		assert_int_equal(msg.qos, 0);
		assert_int_equal(msg.topic.len, strlen("p/VIN0019/policy"));
		assert_int_equal(msg.payload.len, strlen(policy));
		assert_memory_equal(msg.payload.ptr, policy, strlen(policy));
	}
	/* Other topics reach nobody; wildcard topics are refused. */
	assert_int_equal(mqtt_server_publish(fx.server, "p/VIN9999/policy", NULL, 0), DM_OK);
	assert_int_equal(mqtt_server_publish(fx.server, "p/+/policy", NULL, 0), DM_ERR_INVALID);
	assert_int_equal(client_recv(v5, 100), 0);

	/* After UNSUBSCRIBE nothing more arrives. */
	struct mqtt_str filters[] = {{"p/VIN0019/policy", 16}, {"p/none", 6}};
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_unsubscribe(&buf, MQTT_V5, 9, filters, 2), DM_OK);
	client_send_buf(v5, &buf);
	assert_int_equal(client_recv(v5, WAIT_MS), 1);
	assert_int_equal(v5->frame.type, MQTT_UNSUBACK);
	struct mqtt_ack_list ack;
	assert_int_equal(mqtt_decode_suback(&v5->frame, MQTT_V5, &ack, NULL), DM_OK);
	assert_int_equal(ack.count, 2);
	assert_int_equal(ack.codes[0], 0);
	assert_int_equal(ack.codes[1], MQTT_RC_NO_SUBSCRIPTION_EXISTED);
	assert_int_equal(mqtt_server_publish(fx.server, "p/VIN0019/policy", (const uint8_t *)policy,
	                                     strlen(policy)),
	                 DM_OK);
	assert_int_equal(client_recv(v5, 100), 0);
	assert_int_equal(client_recv(v3, WAIT_MS), 1);
	dm_buf_free(&buf);
	client_close(v5);
	client_close(v3);
}

static void test_server_says_goodbye_with_0x8b_when_freed(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0021", 60);
	mqtt_server_free(fx.server);
	fx.server = NULL;
	assert_int_equal(fx.closes, 1);
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	assert_int_equal(c->frame.type, MQTT_DISCONNECT);
	struct mqtt_disconnect bye;
	assert_int_equal(mqtt_decode_disconnect(&c->frame, MQTT_V5, &bye, NULL), DM_OK);
	assert_int_equal(bye.reason, MQTT_RC_SERVER_SHUTTING_DOWN);
	client_close(c);
}

static void test_server_disconnect_call_closes_a_v5_session_with_its_reason(void **state)
{
	struct client *c = connected_client(MQTT_V5, "VIN0022", 60);
	mqtt_server_disconnect(fx.server, fx.last_session, MQTT_RC_NOT_AUTHORIZED);
	expect_disconnect(c, MQTT_RC_NOT_AUTHORIZED);
	client_close(c);
	pump_until(&fx.closes, 1);
	assert_int_equal(fx.closes, 1);
}

static void test_server_lets_hooks_acknowledge_and_disconnect_from_inside_on_publish(void **state)
{
	fx.ack_inline = true;
	struct client *c = connected_client(MQTT_V5, "VIN0023", 60);
	for (uint16_t id = 1; id <= 10; id++)
		send_publish(c, "v/VIN0023/telemetry", "{}", 1, id);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(client_recv(c, WAIT_MS), 1);
		assert_int_equal(c->frame.type, MQTT_PUBACK);
	}
	assert_int_equal(fx.publishes, 10);

	fx.kick_inline = true;
	/* Two PUBLISHes in one write: the second must not reach the hook. */
	struct mqtt_publish msg = {.qos = 1, .packet_id = 11, .format_indicator = -1};
	msg.topic.ptr = "v/VIN0023/telemetry";
	msg.topic.len = strlen(msg.topic.ptr);
	struct dm_buf buf = {0};
	assert_int_equal(mqtt_encode_publish(&buf, MQTT_V5, &msg), DM_OK);
	msg.packet_id = 12;
	assert_int_equal(mqtt_encode_publish(&buf, MQTT_V5, &msg), DM_OK);
	client_send_buf(c, &buf);
	dm_buf_free(&buf);
	assert_int_equal(client_recv(c, WAIT_MS), 1);
	assert_int_equal(c->frame.type, MQTT_PUBACK);
	expect_disconnect(c, MQTT_RC_NOT_AUTHORIZED);
	assert_int_equal(fx.publishes, 11);
	pump_until(&fx.closes, 1);
	assert_int_equal(fx.closes, 1);
	client_close(c);
}

int main(void)
{
	dm_log_set_level(DM_LOG_WARN);
#define CASE(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    CASE(test_server_accepts_a_v5_connect_and_states_its_limits),
	    CASE(test_server_assigns_an_id_to_a_v5_client_that_sent_none),
	    CASE(test_server_refuses_bad_credentials_with_0x86_and_closes),
	    CASE(test_server_redirects_with_0x9d_and_a_server_reference),
	    CASE(test_server_reads_nothing_past_a_refused_connect),
	    CASE(test_server_acknowledges_qos1_only_when_the_node_says_so),
	    CASE(test_server_passes_a_refusal_reason_to_v5_and_hangs_up_on_3_1_1),
	    CASE(test_server_closes_a_connection_on_garbage_while_another_keeps_working),
	    CASE(test_server_closes_on_a_second_connect_with_protocol_error),
	    CASE(test_server_refuses_a_packet_above_the_maximum_size_with_0x95),
	    CASE(test_server_refuses_qos2_with_0x9b),
	    CASE(test_server_refuses_a_wildcard_topic_in_publish_with_0x90),
	    CASE(test_server_disconnects_a_v5_client_beyond_receive_maximum),
	    CASE(test_server_holds_back_a_3_1_1_client_at_receive_maximum),
	    CASE(test_server_expires_a_silent_client_after_one_and_a_half_keep_alives),
	    CASE(test_server_keeps_a_client_that_pings_in_time),
	    CASE(test_server_drops_a_connection_that_never_sends_connect),
	    CASE(test_server_limits_what_a_peer_may_send_before_connect_to_8_kib),
	    CASE(test_server_closes_connections_beyond_its_maximum),
	    CASE(test_server_gives_a_v5_client_without_keep_alive_the_server_maximum),
	    CASE(test_server_delivers_policy_messages_to_exact_subscribers),
	    CASE(test_server_says_goodbye_with_0x8b_when_freed),
	    CASE(test_server_disconnect_call_closes_a_v5_session_with_its_reason),
	    CASE(test_server_lets_hooks_acknowledge_and_disconnect_from_inside_on_publish),
	};
#undef CASE
	return cmocka_run_group_tests(tests, NULL, NULL);
}
