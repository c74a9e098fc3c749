/*
 * server.c — the node's MQTT server: connections, sessions, subscriptions.
 *
 * One libevent loop; every function here runs on its thread (the hooks too).
 * The wire format lives in codec.c; this file owns what happens between
 * packets.
 *
 * Connection states (struct conn.state):
 *
 *   accept ──► AWAIT_CONNECT ──CONNECT accepted (handle_connect)──► OPEN
 *                  │   │                                             │
 *   connect_timer, │   └─CONNECT refused or bad: CONNACK queued──┐   │ DISCONNECT (ours
 *   EOF, error     │     (close_after_flush)                     ▼   │ or the client's),
 *                  │                                          CLOSING ◄┘ malformed packet,
 *                  ▼                                             │     keep-alive expiry
 *                DEAD ◄──output flushed (on_write) or timeout────┘
 *                  │
 *                  └─ freed by release() once no callback of the connection is
 *                     on the stack (busy == 0); on_close runs there, for
 *                     sessions that on_connect accepted.
 *
 * Invariants:
 *   1. Input is read only in AWAIT_CONNECT and OPEN, and packets are framed
 *      and handled one at a time, in order; a connection leaves those states
 *      only through close_after_flush or release, after which no further
 *      packet of it is looked at.
 *   2. Nothing but CONNECT is handled in AWAIT_CONNECT, and the hooks other
 *      than on_connect see only OPEN sessions.
 *   3. A struct conn is freed only when busy == 0: hooks may call any
 *      mqtt_server_* function (except mqtt_server_free), including on the
 *      connection whose packet they are handling.
 *   4. inflight_ids holds the packet ids of the session's QoS 1 PUBLISHes
 *      handed to on_publish and not yet acknowledged; its length never
 *      exceeds receive_maximum. A PUBACK is sent only for an id removed from
 *      it, so a double or late mqtt_server_puback sends nothing.
 *   5. Reading is enabled exactly when the state reads input, fewer than
 *      receive_maximum PUBLISHes are in flight (3.1.1 clients, which cannot
 *      be told the limit, are paused instead of refused) and the output
 *      buffer is below OUTPUT_PAUSE bytes.
 *   6. Session ids come from a 64-bit counter and are never reused.
 *   7. A TLS connection (conn.ssl set) is in AWAIT_CONNECT during its
 *      handshake, which connect_timer bounds with the CONNECT. Its CONNECT
 *      is looked at only after the handshake completed (the bufferevent
 *      hands over no application data before), and on_connect sees the
 *      identity of its verified certificate or is not called at all.
 *   8. A TLS connection is ended with a close_notify (SSL_shutdown) only
 *      when its handshake completed and no error or EOF was seen on it;
 *      the SSL object is freed with its bufferevent (BEV_OPT_CLOSE_ON_FREE).
 */
#include "mqtt/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "crypto/tls.h"
#include "mqtt/codec.h"
#include "util/addr.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"

#define DEFAULT_MAX_PACKET 262144
#define DEFAULT_RECEIVE_MAXIMUM 256
#define DEFAULT_CONNECT_TIMEOUT_S 10
#define DEFAULT_MAX_KEEP_ALIVE 600
#define DEFAULT_MAX_CONNECTIONS 100000
/* A CONNECT carries a client id, a VIN and a secret: a few hundred bytes.
 * Before authentication a peer may make the server buffer no more. */
#define MAX_CONNECT_PACKET 8192
/* Output queued to one client beyond which we stop reading from it ... */
#define OUTPUT_PAUSE (1u << 20)
/* ... and beyond which QoS 0 messages for it are dropped. */
#define OUTPUT_DROP (8u << 20)
/* How long a closing connection may take to drain its last packets. */
#define CLOSE_FLUSH_TIMEOUT_S 5
/* Exact-topic subscriptions one session may hold. */
#define MAX_SUBSCRIPTIONS 64
/* Accept failures (EMFILE) pause the listener this long. */
#define ACCEPT_BACKOFF_MS 100

enum conn_state { AWAIT_CONNECT, OPEN, CLOSING, DEAD };

struct topic;

/* One session's subscription to one topic: on the topic's list and on the
 * session's. */
struct sub {
	struct topic *topic;
	struct conn *conn;
	struct sub *topic_prev, *topic_next;
	struct sub *conn_next;
};

struct topic {
	struct topic *hash_next;
	struct sub *subs;
	uint64_t hash;
	size_t len;
	char name[];
};

struct conn {
	struct mqtt_server *server;
	struct bufferevent *bev;
	struct event *connect_timer; /* only in AWAIT_CONNECT */
	struct conn *prev, *next;    /* all connections */
	struct conn *hash_next;      /* sessions by id */
	struct sub *subs;
	void *session_data;
	uint16_t *inflight_ids;
	uint64_t session_id;
	uint32_t peer_max_packet; /* MQTT 5 client's maximum packet size; 0: none */
	size_t input_seen;        /* input bytes already counted in bytes_in */
	uint16_t inflight_count;
	uint16_t inflight_cap;
	uint16_t sub_count;
	uint16_t keep_alive;
	uint8_t version;
	uint8_t state;
	uint8_t busy;
	bool accepted; /* on_connect said yes: on_close is owed */
	bool paused_inflight;
	bool paused_output;
	bool problem_info; /* MQTT 5: the client accepts reason strings */
	bool tls_broken;   /* TLS: an error or EOF was seen; no close_notify (invariant 8) */
	SSL *ssl;          /* TLS: owned by bev; NULL on plain connections */
	char peer[56];
};

struct mqtt_server {
	struct event_base *base;
	struct mqtt_server_options options;
	struct mqtt_server_hooks hooks;
	struct evconnlistener *listener;
	struct evconnlistener *tls_listener;
	SSL_CTX *tls_ctx; /* our reference, for tls_listener */
	struct event *accept_backoff;
	int port;
	int tls_port;
	uint64_t next_session_id;
	struct conn *conns;
	struct conn **sessions; /* hash buckets, power of two */
	size_t session_buckets;
	size_t session_count;
	struct topic **topics; /* hash buckets, power of two */
	size_t topic_buckets;
	size_t topic_count;
	struct dm_buf scratch; /* one packet being encoded */
	struct mqtt_server_stats stats;
};

/* ---- session table ---- */

static size_t session_slot(const struct mqtt_server *server, uint64_t id)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (server->session_buckets - 1);
}

static int sessions_grow(struct mqtt_server *server)
{
	size_t buckets = server->session_buckets ? server->session_buckets * 2 : 64;
	struct conn **table = dm_calloc(buckets, sizeof *table);
	if (!table)
		return DM_ERR_NOMEM;
	struct conn **old = server->sessions;
	size_t old_buckets = server->session_buckets;
	server->sessions = table;
	server->session_buckets = buckets;
	for (size_t i = 0; i < old_buckets; i++) {
		while (old[i]) {
			struct conn *conn = old[i];
			old[i] = conn->hash_next;
			size_t slot = session_slot(server, conn->session_id);
			conn->hash_next = table[slot];
			table[slot] = conn;
		}
	}
	dm_free(old);
	return DM_OK;
}

static int sessions_add(struct mqtt_server *server, struct conn *conn)
{
	if (server->session_count >= server->session_buckets) {
		int rc = sessions_grow(server);
		if (rc != DM_OK)
			return rc;
	}
	size_t slot = session_slot(server, conn->session_id);
	conn->hash_next = server->sessions[slot];
	server->sessions[slot] = conn;
	server->session_count++;
	return DM_OK;
}

static void sessions_remove(struct mqtt_server *server, struct conn *conn)
{
	struct conn **link = &server->sessions[session_slot(server, conn->session_id)];
	for (; *link; link = &(*link)->hash_next) {
		if (*link == conn) {
			*link = conn->hash_next;
			server->session_count--;
			return;
		}
	}
}

/* The OPEN session with this id, or NULL. */
static struct conn *session_find(const struct mqtt_server *server, uint64_t id)
{
	if (!server->session_buckets)
		return NULL;
	struct conn *conn = server->sessions[session_slot(server, id)];
	for (; conn; conn = conn->hash_next)
		if (conn->session_id == id)
			return conn->state == OPEN ? conn : NULL;
	return NULL;
}

/* ---- topics and subscriptions ---- */

static uint64_t topic_hash(const char *name, size_t len)
{
	uint64_t hash = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		hash = (hash ^ (uint8_t)name[i]) * 0x100000001b3ull;
	return hash;
}

static struct topic *topic_find(const struct mqtt_server *server, const char *name, size_t len)
{
	if (!server->topic_buckets)
		return NULL;
	uint64_t hash = topic_hash(name, len);
	struct topic *topic = server->topics[hash & (server->topic_buckets - 1)];
	for (; topic; topic = topic->hash_next)
		if (topic->hash == hash && topic->len == len && memcmp(topic->name, name, len) == 0)
			return topic;
	return NULL;
}

static int topics_grow(struct mqtt_server *server)
{
	size_t buckets = server->topic_buckets ? server->topic_buckets * 2 : 64;
	struct topic **table = dm_calloc(buckets, sizeof *table);
	if (!table)
		return DM_ERR_NOMEM;
	for (size_t i = 0; i < server->topic_buckets; i++) {
		while (server->topics[i]) {
			struct topic *topic = server->topics[i];
			server->topics[i] = topic->hash_next;
			topic->hash_next = table[topic->hash & (buckets - 1)];
			table[topic->hash & (buckets - 1)] = topic;
		}
	}
	dm_free(server->topics);
	server->topics = table;
	server->topic_buckets = buckets;
	return DM_OK;
}

static int topic_get(struct mqtt_server *server, const char *name, size_t len, struct topic **out)
{
	*out = topic_find(server, name, len);
	if (*out)
		return DM_OK;
	if (server->topic_count >= server->topic_buckets) {
		int rc = topics_grow(server);
		if (rc != DM_OK)
			return rc;
	}
	struct topic *topic = dm_malloc(sizeof *topic + len + 1);
	if (!topic)
		return DM_ERR_NOMEM;
	topic->hash = topic_hash(name, len);
	topic->len = len;
	topic->subs = NULL;
	memcpy(topic->name, name, len);
	topic->name[len] = '\0';
	size_t slot = topic->hash & (server->topic_buckets - 1);
	topic->hash_next = server->topics[slot];
	server->topics[slot] = topic;
	server->topic_count++;
	*out = topic;
	return DM_OK;
}

static void topic_drop_if_unused(struct mqtt_server *server, struct topic *topic)
{
	if (topic->subs)
		return;
	struct topic **link = &server->topics[topic->hash & (server->topic_buckets - 1)];
	for (; *link; link = &(*link)->hash_next) {
		if (*link == topic) {
			*link = topic->hash_next;
			server->topic_count--;
			dm_free(topic);
			return;
		}
	}
}

static struct sub **conn_sub_link(struct conn *conn, const char *name, size_t len)
{
	struct sub **link = &conn->subs;
	for (; *link; link = &(*link)->conn_next) {
		const struct topic *topic = (*link)->topic;
		if (topic->len == len && memcmp(topic->name, name, len) == 0)
			return link;
	}
	return NULL;
}

/* Subscribes conn to the exact topic `name`; subscribing twice is fine. */
static int subscribe(struct conn *conn, const char *name, size_t len)
{
	if (conn_sub_link(conn, name, len))
		return DM_OK;
	if (conn->sub_count >= MAX_SUBSCRIPTIONS)
		return DM_ERR_TOO_LARGE;
	struct sub *sub = dm_calloc(1, sizeof *sub);
	if (!sub)
		return DM_ERR_NOMEM;
	struct topic *topic;
	int rc = topic_get(conn->server, name, len, &topic);
	if (rc != DM_OK) {
		dm_free(sub);
		return rc;
	}
	sub->topic = topic;
	sub->conn = conn;
	sub->topic_next = topic->subs;
	if (topic->subs)
		topic->subs->topic_prev = sub;
	topic->subs = sub;
	sub->conn_next = conn->subs;
	conn->subs = sub;
	conn->sub_count++;
	return DM_OK;
}

static void unlink_sub(struct conn *conn, struct sub **link)
{
	struct sub *sub = *link;
	*link = sub->conn_next;
	if (sub->topic_prev)
		sub->topic_prev->topic_next = sub->topic_next;
	else
		sub->topic->subs = sub->topic_next;
	if (sub->topic_next)
		sub->topic_next->topic_prev = sub->topic_prev;
	topic_drop_if_unused(conn->server, sub->topic);
	conn->sub_count--;
	dm_free(sub);
}

/* ---- connection lifetime ---- */

static void update_reading(struct conn *conn)
{
	bool want = (conn->state == AWAIT_CONNECT || conn->state == OPEN) &&
	            !conn->paused_inflight && !conn->paused_output;
	if (want)
		bufferevent_enable(conn->bev, EV_READ);
	else
		bufferevent_disable(conn->bev, EV_READ);
}

static void destroy(struct conn *conn)
{
	struct mqtt_server *server = conn->server;
	sessions_remove(server, conn);
	while (conn->subs)
		unlink_sub(conn, &conn->subs);
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		server->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	server->stats.connections_open--;
	if (conn->connect_timer)
		event_free(conn->connect_timer);
	if (conn->ssl && !conn->tls_broken && SSL_is_init_finished(conn->ssl)) {
		/* close_notify, as far as the socket takes it now: the peer
		 * learns the end was ours and not a truncation. */
		SSL_shutdown(conn->ssl);
		ERR_clear_error();
	}
	bufferevent_free(conn->bev);
	if (conn->accepted && server->hooks.on_close)
		server->hooks.on_close(server->hooks.arg, conn->session_id, conn->session_data);
	dm_free(conn->inflight_ids);
	dm_free(conn);
}

/* Ends the connection now, or as soon as no callback of it is running. */
static void release(struct conn *conn)
{
	conn->state = DEAD;
	if (conn->busy == 0)
		destroy(conn);
}

/* Stops reading and ends the connection once what is queued for the client
 * (a CONNACK or DISCONNECT saying why) has been written. */
static void close_after_flush(struct conn *conn)
{
	if (conn->state == CLOSING || conn->state == DEAD)
		return;
	conn->state = CLOSING;
	update_reading(conn);
	if (conn->connect_timer) {
		event_free(conn->connect_timer);
		conn->connect_timer = NULL;
	}
	if (evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0) {
		release(conn);
		return;
	}
	struct timeval flush = {CLOSE_FLUSH_TIMEOUT_S, 0};
	bufferevent_set_timeouts(conn->bev, NULL, &flush);
	bufferevent_setwatermark(conn->bev, EV_WRITE, 0, 0);
}

/* Queues the packet in server->scratch for the client and empties scratch. */
static int send_scratch(struct conn *conn)
{
	struct mqtt_server *server = conn->server;
	int rc = DM_OK;
	if (bufferevent_write(conn->bev, server->scratch.data, server->scratch.len) != 0)
		rc = DM_ERR_NOMEM;
	else
		server->stats.bytes_out += server->scratch.len;
	dm_buf_reset(&server->scratch);
	if (rc != DM_OK) {
		release(conn);
		return rc;
	}
	if (!conn->paused_output &&
	    evbuffer_get_length(bufferevent_get_output(conn->bev)) > OUTPUT_PAUSE) {
		/* A client that does not read its acknowledgements does not get
		 * to send more: on_write resumes at half the mark. */
		conn->paused_output = true;
		bufferevent_setwatermark(conn->bev, EV_WRITE, OUTPUT_PAUSE / 2, 0);
		update_reading(conn);
	}
	return DM_OK;
}

/* Sends an encoded packet, or ends the connection if encoding failed. */
static int send_encoded(struct conn *conn, int encode_rc)
{
	if (encode_rc != DM_OK) {
		dm_buf_reset(&conn->server->scratch);
		dm_warn("mqtt: %s: cannot encode a reply (%s); closing", conn->peer,
		        dm_strerror(encode_rc));
		release(conn);
		return encode_rc;
	}
	return send_scratch(conn);
}

/* A packet broke the protocol: MQTT 5 clients hear why, then the
 * connection closes. */
static void protocol_failure(struct conn *conn, uint8_t reason)
{
	struct mqtt_server *server = conn->server;
	server->stats.protocol_errors++;
	dm_info("mqtt: %s: closing for a bad packet (reason 0x%02x)", conn->peer, reason);
	if (conn->state == OPEN && conn->version == MQTT_V5) {
		int rc = mqtt_encode_disconnect(&server->scratch, MQTT_V5, reason, NULL);
		if (send_encoded(conn, rc) != DM_OK)
			return;
	}
	close_after_flush(conn);
}

/* ---- CONNECT ---- */

static uint8_t v311_connack_code(uint8_t reason)
{
	switch (reason) {
	case MQTT_RC_SUCCESS:
		return 0;
	case MQTT_RC_UNSUPPORTED_VERSION:
		return MQTT311_CONNACK_BAD_VERSION;
	case MQTT_RC_CLIENT_ID_INVALID:
		return MQTT311_CONNACK_ID_REJECTED;
	case MQTT_RC_BAD_CREDENTIALS:
		return MQTT311_CONNACK_BAD_CREDENTIALS;
	case MQTT_RC_SERVER_UNAVAILABLE:
	case MQTT_RC_SERVER_BUSY:
	case MQTT_RC_SERVER_SHUTTING_DOWN:
		return MQTT311_CONNACK_UNAVAILABLE;
	default: /* not authorized, server moved, use another server, ... */
		return MQTT311_CONNACK_NOT_AUTHORIZED;
	}
}

/* Answers a CONNECT with a refusal and closes after it is written. */
static void refuse(struct conn *conn, uint8_t version, uint8_t reason, const char *server_reference)
{
	struct mqtt_server *server = conn->server;
	server->stats.connections_refused++;
	int rc;
	if (version == MQTT_V5) {
		struct mqtt_connack_props props = {0};
		props.server_reference.ptr = server_reference;
		props.server_reference.len = server_reference ? strlen(server_reference) : 0;
		rc = mqtt_encode_connack(&server->scratch, MQTT_V5, false, reason, &props);
	} else {
		rc = mqtt_encode_connack(&server->scratch, MQTT_V311, false,
		                         v311_connack_code(reason), NULL);
	}
	if (send_encoded(conn, rc) == DM_OK)
		close_after_flush(conn);
}

static void handle_connect(struct conn *conn, const struct mqtt_frame *frame)
{
	struct mqtt_server *server = conn->server;
	struct mqtt_connect connect;
	uint8_t reason = MQTT_RC_MALFORMED;
	int rc = mqtt_decode_connect(frame, &connect, &reason);
	if (rc == DM_ERR_UNSUPPORTED) {
		/* Answer an unknown level in the 3.1.1 layout, which every
		 * version's client can read. */
		dm_info("mqtt: %s: refused protocol level %u", conn->peer,
		        connect.protocol_version);
		refuse(conn, MQTT_V311, MQTT_RC_UNSUPPORTED_VERSION, NULL);
		return;
	}
	if (rc != DM_OK) {
		server->stats.protocol_errors++;
		dm_info("mqtt: %s: bad CONNECT (reason 0x%02x)", conn->peer, reason);
		if (connect.protocol_version == MQTT_V5)
			refuse(conn, MQTT_V5, reason, NULL);
		else
			close_after_flush(conn);
		return;
	}
	conn->version = connect.protocol_version;
	if (connect.client_id.len == 0 && !connect.clean_start && conn->version == MQTT_V311) {
		refuse(conn, MQTT_V311, MQTT_RC_CLIENT_ID_INVALID, NULL);
		return;
	}

	uint16_t keep_alive = connect.keep_alive;
	bool keep_alive_changed = false;
	/* No session may idle for ever: an MQTT 5 client is told the server's
	 * maximum; a 3.1.1 client cannot be told, and is closed after it. */
	if (keep_alive == 0 || keep_alive > server->options.max_keep_alive) {
		keep_alive = server->options.max_keep_alive;
		keep_alive_changed = conn->version == MQTT_V5;
	}

	/* The certificate, not a claim, names a TLS vehicle (invariant 7). */
	struct tls_identity identity;
	if (conn->ssl) {
		char why[256];
		if (tls_peer_identity(conn->ssl, &identity, why, sizeof why) != DM_OK) {
			dm_info("mqtt: %s: refused: %s", conn->peer, why);
			if (server->hooks.on_refused)
				server->hooks.on_refused(server->hooks.arg, conn->peer, why);
			refuse(conn, conn->version, MQTT_RC_NOT_AUTHORIZED, NULL);
			return;
		}
	}
	struct mqtt_connect_info info = {
	    .session_id = conn->session_id,
	    .protocol_version = conn->version,
	    .client_id = connect.client_id.ptr,
	    .client_id_len = connect.client_id.len,
	    .username = connect.username.ptr,
	    .username_len = connect.username.len,
	    .password = connect.password.ptr,
	    .password_len = connect.password.len,
	    .keep_alive = keep_alive,
	    .user_props = connect.user_props,
	    .user_prop_count = connect.user_prop_count,
	    .peer = conn->peer,
	    .cert_vin = conn->ssl ? identity.vin : NULL,
	    .cert_home = conn->ssl ? identity.home : NULL,
	};
	/* A hook that forgets to decide refuses: this door fails closed. */
	struct mqtt_connect_decision decision = {
	    .reason = server->hooks.on_connect ? MQTT_RC_NOT_AUTHORIZED : MQTT_RC_SUCCESS,
	};
	if (server->hooks.on_connect)
		server->hooks.on_connect(server->hooks.arg, &info, &decision);
	if (conn->state != AWAIT_CONNECT)
		return; /* the hook closed it */
	if (decision.reason != MQTT_RC_SUCCESS) {
		dm_info("mqtt: %s: connection refused (reason 0x%02x)", conn->peer,
		        decision.reason);
		refuse(conn, conn->version, decision.reason, decision.server_reference);
		return;
	}

	conn->accepted = true;
	conn->session_data = decision.session_data;
	conn->state = OPEN;
	conn->keep_alive = keep_alive;
	conn->peer_max_packet = connect.maximum_packet_size;
	conn->problem_info = connect.request_problem_info;
	event_free(conn->connect_timer);
	conn->connect_timer = NULL;
	/* Keep-alive: the client must send something within 1.5 times it. */
	if (keep_alive) {
		uint64_t ms = (uint64_t)keep_alive * 1500;
		struct timeval expiry = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
		bufferevent_set_timeouts(conn->bev, &expiry, NULL);
	}

	char assigned[32];
	struct mqtt_connack_props props = {
	    .receive_maximum = server->options.receive_maximum,
	    .maximum_packet_size = (uint32_t)server->options.max_packet_size,
	    .server_keep_alive = keep_alive_changed ? keep_alive : 0,
	};
	if (conn->version == MQTT_V5 && connect.client_id.len == 0) {
		int n = snprintf(assigned, sizeof assigned, "dm-%016llx",
		                 (unsigned long long)conn->session_id);
		props.assigned_client_id.ptr = assigned;
		props.assigned_client_id.len = (size_t)n;
	}
	rc = mqtt_encode_connack(&server->scratch, conn->version, false, MQTT_RC_SUCCESS, &props);
	send_encoded(conn, rc);
}

/* ---- PUBLISH and its acknowledgement ---- */

static bool inflight_has(const struct conn *conn, uint16_t packet_id)
{
	for (uint16_t i = 0; i < conn->inflight_count; i++)
		if (conn->inflight_ids[i] == packet_id)
			return true;
	return false;
}

static int inflight_add(struct conn *conn, uint16_t packet_id)
{
	if (conn->inflight_count == conn->inflight_cap) {
		uint32_t cap = conn->inflight_cap ? conn->inflight_cap * 2u : 4u;
		if (cap > conn->server->options.receive_maximum)
			cap = conn->server->options.receive_maximum;
		uint16_t *ids = dm_realloc(conn->inflight_ids, cap * sizeof *ids);
		if (!ids)
			return DM_ERR_NOMEM;
		conn->inflight_ids = ids;
		conn->inflight_cap = (uint16_t)cap;
	}
	conn->inflight_ids[conn->inflight_count++] = packet_id;
	return DM_OK;
}

static bool inflight_remove(struct conn *conn, uint16_t packet_id)
{
	for (uint16_t i = 0; i < conn->inflight_count; i++) {
		if (conn->inflight_ids[i] == packet_id) {
			conn->inflight_ids[i] = conn->inflight_ids[--conn->inflight_count];
			return true;
		}
	}
	return false;
}

static void handle_publish(struct conn *conn, const struct mqtt_frame *frame)
{
	struct mqtt_server *server = conn->server;
	struct mqtt_publish publish;
	uint8_t reason = MQTT_RC_MALFORMED;
	int rc = mqtt_decode_publish(frame, conn->version, &publish, &reason);
	if (rc != DM_OK) {
		protocol_failure(conn, reason);
		return;
	}
	if (publish.qos == 2) {
		/* CONNACK told MQTT 5 clients that QoS 1 is the most we take. */
		protocol_failure(conn, MQTT_RC_QOS_NOT_SUPPORTED);
		return;
	}
	if (publish.qos == 1) {
		if (inflight_has(conn, publish.packet_id))
			return; /* a resend of one the node has not acknowledged yet */
		if (conn->inflight_count >= server->options.receive_maximum) {
			protocol_failure(conn, MQTT_RC_RECEIVE_MAX_EXCEEDED);
			return;
		}
		if (inflight_add(conn, publish.packet_id) != DM_OK) {
			release(conn);
			return;
		}
	}
	if (!server->hooks.on_publish) {
		if (publish.qos == 1)
			mqtt_server_puback(server, conn->session_id, publish.packet_id,
			                   MQTT_RC_SUCCESS, NULL);
		return;
	}
	struct mqtt_publish_info info = {
	    .session_id = conn->session_id,
	    .session_data = conn->session_data,
	    .protocol_version = conn->version,
	    .topic = publish.topic.ptr,
	    .topic_len = publish.topic.len,
	    .payload = publish.payload.ptr,
	    .payload_len = publish.payload.len,
	    .qos = publish.qos,
	    .packet_id = publish.packet_id,
	    .format_indicator = publish.format_indicator,
	    .content_type = publish.content_type.ptr,
	    .content_type_len = publish.content_type.len,
	};
	server->hooks.on_publish(server->hooks.arg, &info);
}

void mqtt_server_puback(struct mqtt_server *server, uint64_t session_id, uint16_t packet_id,
                        uint8_t reason, const char *reason_string)
{
	struct conn *conn = session_find(server, session_id);
	if (!conn || !inflight_remove(conn, packet_id))
		return;
	if (conn->version == MQTT_V311 && reason >= 0x80) {
		/* 3.1.1 has no way to refuse a PUBLISH but to hang up. */
		close_after_flush(conn);
		return;
	}
	if (!conn->problem_info)
		reason_string = NULL;
	int rc =
	    mqtt_encode_puback(&server->scratch, conn->version, packet_id, reason, reason_string);
	if (rc == DM_OK && conn->peer_max_packet && server->scratch.len > conn->peer_max_packet) {
		/* The reason string is what may be left out to fit. */
		dm_buf_reset(&server->scratch);
		rc = mqtt_encode_puback(&server->scratch, conn->version, packet_id, reason, NULL);
	}
	if (send_encoded(conn, rc) != DM_OK)
		return;
	if (conn->paused_inflight && conn->inflight_count < server->options.receive_maximum) {
		conn->paused_inflight = false;
		update_reading(conn);
		/* Packets may already wait in the input buffer: look at them
		 * from the loop, not from inside whatever called us. */
		bufferevent_trigger(conn->bev, EV_READ,
		                    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ---- */

static uint8_t subscribe_one(struct conn *conn, struct mqtt_str filter)
{
	struct mqtt_server *server = conn->server;
	bool v5 = conn->version == MQTT_V5;
	if (!mqtt_topic_filter_valid(filter.ptr, filter.len))
		return v5 ? 0x8F /* topic filter invalid */ : MQTT311_SUBACK_FAILURE;
	if (mqtt_topic_has_wildcards(filter.ptr, filter.len))
		return v5 ? MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED : MQTT311_SUBACK_FAILURE;
	if (v5 && filter.len >= 7 && memcmp(filter.ptr, "$share/", 7) == 0)
		return MQTT_RC_SHARED_SUB_NOT_SUPPORTED;
	uint8_t code = MQTT_RC_SUCCESS;
	if (server->hooks.on_subscribe)
		code = server->hooks.on_subscribe(server->hooks.arg, conn->session_id,
		                                  conn->session_data, filter.ptr, filter.len);
	if (code >= 0x80)
		return v5 ? code : MQTT311_SUBACK_FAILURE;
	if (conn->state != OPEN)
		return MQTT311_SUBACK_FAILURE;
	int rc = subscribe(conn, filter.ptr, filter.len);
	if (rc != DM_OK)
		return v5 ? MQTT_RC_QUOTA_EXCEEDED : MQTT311_SUBACK_FAILURE;
	return 0; /* granted QoS 0: the server sends only QoS 0 */
}

static void handle_subscribe(struct conn *conn, const struct mqtt_frame *frame)
{
	struct mqtt_server *server = conn->server;
	struct mqtt_subscribe request;
	uint8_t reason = MQTT_RC_MALFORMED;
	int rc = mqtt_decode_subscribe(frame, conn->version, &request, &reason);
	if (rc != DM_OK) {
		protocol_failure(conn, reason);
		return;
	}
	if (request.subscription_id) {
		/* CONNACK said subscription identifiers are not available. */
		protocol_failure(conn, 0xA1);
		return;
	}
	uint8_t *codes = dm_malloc(request.filters.count);
	if (!codes) {
		release(conn);
		return;
	}
	size_t offset = 0, count = 0;
	struct mqtt_str filter;
	while (mqtt_topic_list_next(&request.filters, &offset, &filter, NULL)) {
		codes[count++] = subscribe_one(conn, filter);
		if (conn->state != OPEN)
			break; /* a hook closed the session */
	}
	if (conn->state == OPEN) {
		rc = mqtt_encode_suback(&server->scratch, conn->version, request.packet_id, codes,
		                        count);
		send_encoded(conn, rc);
	}
	dm_free(codes);
}

static void handle_unsubscribe(struct conn *conn, const struct mqtt_frame *frame)
{
	struct mqtt_server *server = conn->server;
	struct mqtt_unsubscribe request;
	uint8_t reason = MQTT_RC_MALFORMED;
	int rc = mqtt_decode_unsubscribe(frame, conn->version, &request, &reason);
	if (rc != DM_OK) {
		protocol_failure(conn, reason);
		return;
	}
	uint8_t *codes = dm_malloc(request.filters.count);
	if (!codes) {
		release(conn);
		return;
	}
	size_t offset = 0, count = 0;
	struct mqtt_str filter;
	while (mqtt_topic_list_next(&request.filters, &offset, &filter, NULL)) {
		struct sub **link = conn_sub_link(conn, filter.ptr, filter.len);
		codes[count++] = link ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
		if (link)
			unlink_sub(conn, link);
	}
	rc = mqtt_encode_unsuback(&server->scratch, conn->version, request.packet_id, codes, count);
	send_encoded(conn, rc);
	dm_free(codes);
}

/* ---- input ---- */

static void handle_packet(struct conn *conn, const struct mqtt_frame *frame)
{
	struct mqtt_server *server = conn->server;
	uint8_t reason = MQTT_RC_MALFORMED;
	if (conn->state == AWAIT_CONNECT) {
		if (frame->type == MQTT_CONNECT) {
			handle_connect(conn, frame);
		} else {
			server->stats.protocol_errors++;
			close_after_flush(conn);
		}
		return;
	}
	switch (frame->type) {
	case MQTT_PUBLISH:
		handle_publish(conn, frame);
		break;
	case MQTT_PUBACK: {
		/* The server sends only QoS 0: there is nothing to settle. */
		struct mqtt_puback ack;
		if (mqtt_decode_puback(frame, conn->version, &ack, &reason) != DM_OK)
			protocol_failure(conn, reason);
		break;
	}
	case MQTT_SUBSCRIBE:
		handle_subscribe(conn, frame);
		break;
	case MQTT_UNSUBSCRIBE:
		handle_unsubscribe(conn, frame);
		break;
	case MQTT_PINGREQ:
		if (mqtt_decode_pingreq(frame, &reason) != DM_OK)
			protocol_failure(conn, reason);
		else
			send_encoded(conn, mqtt_encode_pingresp(&server->scratch));
		break;
	case MQTT_DISCONNECT: {
		struct mqtt_disconnect bye;
		if (mqtt_decode_disconnect(frame, conn->version, &bye, &reason) != DM_OK)
			protocol_failure(conn, reason);
		else
			close_after_flush(conn);
		break;
	}
	default: /* a second CONNECT, QoS 2 flow, server-to-client packets, AUTH */
		protocol_failure(conn, MQTT_RC_PROTOCOL_ERROR);
		break;
	}
}

static void process_input(struct conn *conn)
{
	struct mqtt_server *server = conn->server;
	struct evbuffer *input = bufferevent_get_input(conn->bev);
	size_t avail = evbuffer_get_length(input);
	server->stats.bytes_in += avail - conn->input_seen;
	bufferevent_setwatermark(conn->bev, EV_READ, 0, 0);

	while (conn->state == AWAIT_CONNECT || conn->state == OPEN) {
		if (conn->inflight_count >= server->options.receive_maximum &&
		    conn->version == MQTT_V311) {
			conn->paused_inflight = true;
			update_reading(conn);
			break;
		}
		avail = evbuffer_get_length(input);
		if (avail == 0)
			break;
		/* Before CONNECT, one byte tells: anything but a CONNECT header
		 * (0x10) is refused at once, rather than after waiting for the
		 * rest of a length that garbage happens to claim. */
		if (conn->state == AWAIT_CONNECT &&
		    *evbuffer_pullup(input, 1) != (MQTT_CONNECT << 4)) {
			server->stats.protocol_errors++;
			close_after_flush(conn);
			break;
		}
		struct mqtt_frame frame;
		size_t head = avail < 5 ? avail : 5;
		size_t limit = conn->state == AWAIT_CONNECT &&
		                       server->options.max_packet_size > MAX_CONNECT_PACKET
		                   ? MAX_CONNECT_PACKET
		                   : server->options.max_packet_size;
		int rc = mqtt_frame(evbuffer_pullup(input, (ev_ssize_t)head), head, limit, &frame);
		if (rc == DM_NEED_MORE && frame.total_len && frame.total_len <= avail) {
			size_t total = frame.total_len;
			rc = mqtt_frame(evbuffer_pullup(input, (ev_ssize_t)total), total, limit,
			                &frame);
		}
		if (rc == DM_NEED_MORE) {
			/* Wake up only when the whole packet can be there. */
			if (frame.total_len)
				bufferevent_setwatermark(conn->bev, EV_READ, frame.total_len, 0);
			break;
		}
		if (rc < 0) {
			protocol_failure(conn, rc == DM_ERR_TOO_LARGE ? MQTT_RC_PACKET_TOO_LARGE
			                                              : MQTT_RC_MALFORMED);
			break;
		}
		handle_packet(conn, &frame);
		evbuffer_drain(input, frame.total_len);
	}
	conn->input_seen = evbuffer_get_length(input);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	conn->busy++;
	process_input(conn);
	conn->busy--;
	if (conn->state == DEAD && conn->busy == 0)
		destroy(conn);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *conn = arg;
	size_t queued = evbuffer_get_length(bufferevent_get_output(bev));
	if (conn->state == CLOSING) {
		if (queued == 0)
			release(conn);
		return;
	}
	if (conn->paused_output && queued <= OUTPUT_PAUSE / 2) {
		conn->paused_output = false;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		update_reading(conn);
		bufferevent_trigger(bev, EV_READ,
		                    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
	struct conn *conn = arg;
	struct mqtt_server *server = conn->server;
	if (events & BEV_EVENT_CONNECTED)
		return; /* a TLS handshake completed; the CONNECT follows */
	if ((events & BEV_EVENT_TIMEOUT) && (events & BEV_EVENT_READING) && conn->state == OPEN) {
		dm_info("mqtt: %s: keep-alive expired", conn->peer);
		if (conn->version == MQTT_V5) {
			int rc = mqtt_encode_disconnect(&server->scratch, MQTT_V5,
			                                MQTT_RC_KEEP_ALIVE_TIMEOUT, NULL);
			if (send_encoded(conn, rc) != DM_OK)
				return;
		}
		close_after_flush(conn);
		return;
	}
	/* EOF, a socket error, or a closing connection that would not drain. */
	if (conn->ssl) {
		conn->tls_broken = true;
		unsigned long code = bufferevent_get_openssl_error(bev);
		if (!SSL_is_init_finished(conn->ssl)) {
			server->stats.tls_handshake_failures++;
			const char *reason = tls_failure_reason(conn->ssl, code);
			dm_info("mqtt: %s: TLS handshake failed: %s", conn->peer, reason);
			/* A certificate that did not verify is a refused vehicle;
			 * a client that merely went away is not. */
			if (SSL_get_verify_result(conn->ssl) != X509_V_OK && server->hooks.on_refused)
				server->hooks.on_refused(server->hooks.arg, conn->peer, reason);
		}
		while (bufferevent_get_openssl_error(bev) != 0)
			; /* the rest of this connection's errors, unread */
	}
	release(conn);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *conn = arg;
	if (conn->ssl && !SSL_is_init_finished(conn->ssl)) {
		conn->server->stats.tls_handshake_failures++;
		dm_info("mqtt: %s: TLS handshake not completed in time", conn->peer);
	} else {
		dm_info("mqtt: %s: no CONNECT in time", conn->peer);
	}
	release(conn);
}

/* ---- listener ---- */

static void format_peer(const struct sockaddr *addr, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(out, len, "%s:%u", host, port);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(out, len, "[%s]:%u", host, port);
	} else {
		snprintf(out, len, "?");
	}
}

/* A new connection on fd; over TLS when ctx is not NULL. */
static void accept_conn(struct mqtt_server *server, evutil_socket_t fd, struct sockaddr *addr,
                        SSL_CTX *ctx)
{
	if (server->stats.connections_open >= server->options.max_connections) {
		server->stats.connections_refused++;
		evutil_closesocket(fd);
		return;
	}
	struct conn *conn = dm_calloc(1, sizeof *conn);
	if (!conn) {
		evutil_closesocket(fd);
		return;
	}
	conn->server = server;
	conn->session_id = server->next_session_id++;
	conn->state = AWAIT_CONNECT;
	format_peer(addr, conn->peer, sizeof conn->peer);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (ctx) {
		/* Deferred callbacks: an SSL write may fail inside
		 * bufferevent_write, and its event callback must not free the
		 * connection under the caller's feet. */
		SSL *ssl = SSL_new(ctx);
		conn->bev = ssl ? bufferevent_openssl_socket_new(
		                      server->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                      BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
		                : NULL;
		if (conn->bev) {
			conn->ssl = ssl;
			/* A peer that hangs up without close_notify has only
			 * ended its session: an EOF, not an error. */
			bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
		} else {
			SSL_free(ssl);
			ERR_clear_error();
		}
	} else {
		conn->bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	conn->connect_timer = evtimer_new(server->base, on_connect_timeout, conn);
	if (!conn->bev || !conn->connect_timer || sessions_add(server, conn) != DM_OK) {
		if (conn->bev)
			bufferevent_free(conn->bev);
		else
			evutil_closesocket(fd);
		if (conn->connect_timer)
			event_free(conn->connect_timer);
		dm_free(conn);
		return;
	}
	conn->next = server->conns;
	if (server->conns)
		server->conns->prev = conn;
	server->conns = conn;
	server->stats.connections_open++;
	server->stats.connections_total++;
	struct timeval timeout = {(time_t)server->options.connect_timeout_s, 0};
	evtimer_add(conn->connect_timer, &timeout);
	bufferevent_setcb(conn->bev, on_read, on_write, on_event, conn);
	update_reading(conn);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
                      int addr_len, void *arg)
{
	accept_conn(arg, fd, addr, NULL);
}

static void on_accept_tls(struct evconnlistener *listener, evutil_socket_t fd,
                          struct sockaddr *addr, int addr_len, void *arg)
{
	struct mqtt_server *server = arg;
	accept_conn(server, fd, addr, server->tls_ctx);
}

static void on_accept_backoff(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt_server *server = arg;
	if (server->listener)
		evconnlistener_enable(server->listener);
	if (server->tls_listener)
		evconnlistener_enable(server->tls_listener);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct mqtt_server *server = arg;
	int err = EVUTIL_SOCKET_ERROR();
	dm_warn("mqtt: accept failed: %s", evutil_socket_error_to_string(err));
	/* Out of descriptors: retrying at once would spin. */
	evconnlistener_disable(listener);
	struct timeval backoff = {0, ACCEPT_BACKOFF_MS * 1000};
	evtimer_add(server->accept_backoff, &backoff);
}

/* ---- public ---- */

int mqtt_server_new(struct event_base *base, const struct mqtt_server_options *options,
                    const struct mqtt_server_hooks *hooks, struct mqtt_server **out)
{
	*out = NULL;
	struct mqtt_server *server = dm_calloc(1, sizeof *server);
	if (!server)
		return DM_ERR_NOMEM;
	server->base = base;
	if (options)
		server->options = *options;
	if (!server->options.max_packet_size)
		server->options.max_packet_size = DEFAULT_MAX_PACKET;
	if (server->options.max_packet_size > MQTT_MAX_REMAINING + 5)
		server->options.max_packet_size = MQTT_MAX_REMAINING + 5;
	if (!server->options.receive_maximum)
		server->options.receive_maximum = DEFAULT_RECEIVE_MAXIMUM;
	if (!server->options.connect_timeout_s)
		server->options.connect_timeout_s = DEFAULT_CONNECT_TIMEOUT_S;
	if (!server->options.max_keep_alive)
		server->options.max_keep_alive = DEFAULT_MAX_KEEP_ALIVE;
	if (!server->options.max_connections)
		server->options.max_connections = DEFAULT_MAX_CONNECTIONS;
	if (hooks)
		server->hooks = *hooks;
	server->next_session_id = 1;
	server->port = -1;
	server->tls_port = -1;
	server->accept_backoff = evtimer_new(base, on_accept_backoff, server);
	if (!server->accept_backoff) {
		dm_free(server);
		return DM_ERR_NOMEM;
	}
	*out = server;
	return DM_OK;
}

/* Resolves "HOST:PORT" or "[V6]:PORT" for listening; port 0 asks the
 * kernel for a free one. */
static int resolve_listen_address(const char *address, struct sockaddr_storage *out,
                                  socklen_t *out_len)
{
	char host[256], port_text[8];
	int port;
	if (addr_split(address, host, sizeof host, &port) != DM_OK)
		return DM_ERR_INVALID;
	snprintf(port_text, sizeof port_text, "%d", port);
	struct evutil_addrinfo hints = {0}, *found = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
	if (evutil_getaddrinfo(host, port_text, &hints, &found) != 0 || !found)
		return DM_ERR_INVALID;
	memcpy(out, found->ai_addr, found->ai_addrlen);
	*out_len = (socklen_t)found->ai_addrlen;
	evutil_freeaddrinfo(found);
	return DM_OK;
}

/* Binds address and accepts on it with cb; sets *listener and *port. */
static int bind_listener(struct mqtt_server *server, const char *address, evconnlistener_cb cb,
                         const char *what, struct evconnlistener **listener, int *port)
{
	struct sockaddr_storage addr;
	socklen_t addr_len = 0;
	memset(&addr, 0, sizeof addr);
	if (resolve_listen_address(address, &addr, &addr_len) != DM_OK) {
		dm_error("mqtt: cannot parse listen address \"%s\" (expected HOST:PORT)", address);
		return DM_ERR_INVALID;
	}
	*listener = evconnlistener_new_bind(server->base, cb, server,
	                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
	                                    (struct sockaddr *)&addr, (int)addr_len);
	if (!*listener) {
		dm_error("mqtt: cannot listen on %s: %s", address, strerror(errno));
		return DM_ERR_IO;
	}
	evconnlistener_set_error_cb(*listener, on_accept_error);
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof bound;
	if (getsockname(evconnlistener_get_fd(*listener), (struct sockaddr *)&bound, &bound_len) ==
	    0) {
		if (bound.ss_family == AF_INET)
			*port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
		else if (bound.ss_family == AF_INET6)
			*port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
	}
	dm_info("mqtt: listening%s on %s (port %d)", what, address, *port);
	return DM_OK;
}

int mqtt_server_listen(struct mqtt_server *server, const char *address)
{
	if (server->listener)
		return DM_ERR_EXISTS;
	return bind_listener(server, address, on_accept, "", &server->listener, &server->port);
}

int mqtt_server_listen_tls(struct mqtt_server *server, const char *address, SSL_CTX *ctx)
{
	if (server->tls_listener)
		return DM_ERR_EXISTS;
	if (!ctx)
		return DM_ERR_INVALID;
	int rc = bind_listener(server, address, on_accept_tls, " for TLS", &server->tls_listener,
	                       &server->tls_port);
	if (rc == DM_OK) {
		SSL_CTX_up_ref(ctx);
		server->tls_ctx = ctx;
	}
	return rc;
}

int mqtt_server_tls_port(const struct mqtt_server *server)
{
	return server->tls_port;
}

int mqtt_server_port(const struct mqtt_server *server)
{
	return server->port;
}

void mqtt_server_disconnect(struct mqtt_server *server, uint64_t session_id, uint8_t reason)
{
	struct conn *conn = session_find(server, session_id);
	if (!conn)
		return;
	if (conn->version == MQTT_V5) {
		int rc = mqtt_encode_disconnect(&server->scratch, MQTT_V5, reason, NULL);
		if (send_encoded(conn, rc) != DM_OK)
			return;
	}
	close_after_flush(conn);
}

size_t mqtt_server_recheck_tls(struct mqtt_server *server)
{
	size_t closed = 0;
	struct conn *next;
	/* next is taken first: ending a connection may free it at once. */
	for (struct conn *conn = server->conns; conn; conn = next) {
		next = conn->next;
		if (!conn->ssl || !conn->accepted || conn->state != OPEN)
			continue;
		char why[256];
		if (tls_recheck_peer(conn->ssl, why, sizeof why) == DM_OK)
			continue;
		dm_info("mqtt: %s: its client certificate no longer verifies (%s): disconnected",
		        conn->peer, why);
		closed++;
		if (server->hooks.on_trust_lost)
			server->hooks.on_trust_lost(server->hooks.arg, conn->session_id,
			                            conn->session_data, why);
		if (conn->version == MQTT_V5 &&
		    send_encoded(conn, mqtt_encode_disconnect(&server->scratch, MQTT_V5,
		                                              MQTT_RC_NOT_AUTHORIZED, NULL)) != DM_OK)
			continue; /* the send failure ended it already */
		close_after_flush(conn);
	}
	return closed;
}

int mqtt_server_publish(struct mqtt_server *server, const char *topic, const uint8_t *payload,
                        size_t len)
{
	size_t topic_len = strlen(topic);
	if (!mqtt_topic_name_valid(topic, topic_len))
		return DM_ERR_INVALID;
	struct topic *entry = topic_find(server, topic, topic_len);
	if (!entry)
		return DM_OK;
	struct mqtt_publish msg = {
	    .topic = {topic, topic_len},
	    .payload = {payload, len},
	    .format_indicator = -1,
	};
	/* Encoded once per protocol version, not once per subscriber. */
	struct dm_buf packets[2] = {{0}};
	int rc = mqtt_encode_publish(&packets[0], MQTT_V311, &msg);
	if (rc == DM_OK)
		rc = mqtt_encode_publish(&packets[1], MQTT_V5, &msg);
	struct sub *next;
	for (struct sub *sub = entry->subs; sub && rc == DM_OK; sub = next) {
		/* Sending may end the subscriber's connection (and, with it,
		 * this subscription and even the topic). */
		next = sub->topic_next;
		struct conn *conn = sub->conn;
		const struct dm_buf *packet = &packets[conn->version == MQTT_V5];
		if (conn->state != OPEN)
			continue;
		if (conn->peer_max_packet && packet->len > conn->peer_max_packet)
			continue;
		if (evbuffer_get_length(bufferevent_get_output(conn->bev)) > OUTPUT_DROP)
			continue; /* QoS 0 to a client that does not read: dropped */
		rc = dm_buf_append(&server->scratch, packet->data, packet->len);
		if (rc == DM_OK)
			send_scratch(conn);
	}
	dm_buf_free(&packets[0]);
	dm_buf_free(&packets[1]);
	return rc;
}

void mqtt_server_stats(const struct mqtt_server *server, struct mqtt_server_stats *out)
{
	*out = server->stats;
}

void mqtt_server_free(struct mqtt_server *server)
{
	if (!server)
		return;
	if (server->listener)
		evconnlistener_free(server->listener);
	server->listener = NULL;
	if (server->tls_listener)
		evconnlistener_free(server->tls_listener);
	server->tls_listener = NULL;
	event_free(server->accept_backoff);
	while (server->conns) {
		struct conn *conn = server->conns;
		if (conn->state == OPEN && conn->version == MQTT_V5 &&
		    mqtt_encode_disconnect(&server->scratch, MQTT_V5, MQTT_RC_SERVER_SHUTTING_DOWN,
		                           NULL) == DM_OK) {
			bufferevent_write(conn->bev, server->scratch.data, server->scratch.len);
			dm_buf_reset(&server->scratch);
		}
		/* The loop will not run again for it: push what is queued now,
		 * as far as the socket takes it without blocking. */
		struct evbuffer *output = bufferevent_get_output(conn->bev);
		size_t queued = evbuffer_get_length(output);
		if (queued) {
			/* bufferevent keeps the head of its output frozen: copy,
			 * do not drain. */
			const uint8_t *bytes = evbuffer_pullup(output, (ev_ssize_t)queued);
			int len = queued > INT32_MAX ? INT32_MAX : (int)queued;
			if (bytes && conn->ssl) {
				/* Encrypted, on an established session only; the
				 * socket is non-blocking, so this never waits. */
				if (!conn->tls_broken && SSL_is_init_finished(conn->ssl) &&
				    SSL_write(conn->ssl, bytes, len) <= 0)
					dm_debug("mqtt: %s: goodbye not sent", conn->peer);
				ERR_clear_error();
			} else if (bytes && send(bufferevent_getfd(conn->bev), bytes, queued,
			                         MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
				dm_debug("mqtt: %s: goodbye not sent: %s", conn->peer,
				         strerror(errno));
			}
		}
		destroy(conn);
	}
	for (size_t i = 0; i < server->topic_buckets; i++)
		if (server->topics[i])
			dm_warn("mqtt: topic table not empty at shutdown");
	dm_free(server->topics);
	dm_free(server->sessions);
	dm_buf_free(&server->scratch);
	SSL_CTX_free(server->tls_ctx);
	dm_free(server);
}
