/*
 * server.h — the node's MQTT server (3.1.1 and 5) on a libevent loop.
 *
 * The server owns the connections: it reads and frames packets, answers
 * CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT itself, expires
 * idle sessions (1.5 times the keep-alive), enforces the maximum packet size
 * and closes a connection on any malformed packet (MQTT 5: a DISCONNECT with
 * the matching reason code first). Decisions belong to the node, through
 * hooks: who may connect (and whether to redirect them), which filters a
 * session may subscribe to, and what a PUBLISH means. Nothing of a session is
 * read past CONNECT before on_connect accepted it.
 *
 * A QoS 1 PUBLISH is acknowledged only when the node calls
 * mqtt_server_puback, which may happen later (after the write-ahead log's
 * fsync). Sessions are named by a 64-bit id that is never reused, so a late
 * acknowledgement for a session that has gone is simply dropped.
 *
 * Strings in the hook structures point into the packet being handled:
 * borrowed, valid only during the hook call.
 */
#ifndef DM_MQTT_SERVER_H
#define DM_MQTT_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mqtt_server;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* MQTT 5 reason codes the node uses. */
enum mqtt_reason {
	MQTT_RC_SUCCESS = 0x00,
	MQTT_RC_UNSPECIFIED = 0x80,
	MQTT_RC_MALFORMED = 0x81,
	MQTT_RC_PROTOCOL_ERROR = 0x82,
	MQTT_RC_IMPL_SPECIFIC = 0x83,
	MQTT_RC_UNSUPPORTED_VERSION = 0x84,
	MQTT_RC_CLIENT_ID_INVALID = 0x85,
	MQTT_RC_BAD_CREDENTIALS = 0x86,
	MQTT_RC_NOT_AUTHORIZED = 0x87,
	MQTT_RC_SERVER_UNAVAILABLE = 0x88,
	MQTT_RC_SERVER_BUSY = 0x89,
	MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
	MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
	MQTT_RC_TOPIC_NAME_INVALID = 0x90,
	MQTT_RC_PACKET_TOO_LARGE = 0x95,
	MQTT_RC_QUOTA_EXCEEDED = 0x97,
	MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
	MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
	MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
	MQTT_RC_SERVER_MOVED = 0x9D,
};

struct mqtt_user_property {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
};

struct mqtt_connect_info {
	uint64_t session_id;
	uint8_t protocol_version; /* 4 = 3.1.1, 5 = 5.0 */
	const char *client_id;    /* may be empty (length 0) */
	size_t client_id_len;
	const char *username; /* NULL when absent */
	size_t username_len;
	const uint8_t *password; /* NULL when absent */
	size_t password_len;
	uint16_t keep_alive;
	const struct mqtt_user_property *user_props; /* MQTT 5 CONNECT user properties */
	size_t user_prop_count;
	const char *peer; /* "ip:port", for logs */
	/* A TLS connection's verified client certificate (crypto/tls.h,
	 * tls_peer_identity): the VIN (subject CN) and home jurisdiction
	 * (subject C, the same as its CA's). Both NULL on plain connections;
	 * a TLS connection whose certificate names no such identity never
	 * reaches on_connect. */
	const char *cert_vin;
	const char *cert_home;
};

/* What on_connect decides. reason MQTT_RC_SUCCESS accepts; any other refuses
 * (the server maps it to a 3.1.1 return code for old clients: bad
 * credentials 0x04, not authorized 0x05, server moved 0x05, unavailable
 * 0x03). server_reference (MQTT 5, with 0x9C/0x9D) is copied before the hook
 * returns. session_data is handed back to the later hooks. */
struct mqtt_connect_decision {
	uint8_t reason;
	const char *server_reference;
	void *session_data;
};

struct mqtt_publish_info {
	uint64_t session_id;
	void *session_data;
	uint8_t protocol_version;
	const char *topic;
	size_t topic_len;
	const uint8_t *payload;
	size_t payload_len;
	uint8_t qos; /* 0 or 1 */
	uint16_t packet_id;
	int format_indicator; /* MQTT 5: -1 absent, 0 bytes, 1 UTF-8 */
	const char *content_type; /* MQTT 5: NULL when absent */
	size_t content_type_len;
};

struct mqtt_server_hooks {
	void *arg;
	void (*on_connect)(void *arg, const struct mqtt_connect_info *info,
			   struct mqtt_connect_decision *decision);
	/* Return MQTT_RC_SUCCESS (granted QoS 0) ... or MQTT_RC_NOT_AUTHORIZED. */
	uint8_t (*on_subscribe)(void *arg, uint64_t session_id, void *session_data,
				const char *filter, size_t filter_len);
	/* For QoS 1 the node must later call mqtt_server_puback (or close). */
	void (*on_publish)(void *arg, const struct mqtt_publish_info *info);
	/* The session ended (any cause); its session_data may be released now. */
	void (*on_close)(void *arg, uint64_t session_id, void *session_data);
	/* A TLS client refused before on_connect because its certificate did
	 * not verify (revoked, expired, unknown CA) or names no valid vehicle;
	 * reason is OpenSSL's or ours. The certificate's claims are not to be
	 * trusted here, so no identity is handed over. May be NULL. */
	void (*on_refused)(void *arg, const char *peer, const char *reason);
	/* An open session closed by mqtt_server_recheck_tls because its
	 * certificate no longer verifies (reason: OpenSSL's); called before
	 * on_close. May be NULL. */
	void (*on_trust_lost)(void *arg, uint64_t session_id, void *session_data,
			      const char *reason);
};

struct mqtt_server_options {
	size_t max_packet_size;     /* default 262144 */
	uint16_t receive_maximum;   /* QoS 1 in flight per session; default 256 */
	uint16_t max_keep_alive;    /* seconds, for every session (a client's 0, "never",
				     * included); default 600 */
	unsigned connect_timeout_s; /* time allowed between accept and CONNECT; default 10 */
	size_t max_connections;     /* open at once, beyond which accept closes; default 100000 */
};

struct mqtt_server_stats {
	uint64_t connections_open;
	uint64_t connections_total;
	uint64_t connections_refused;
	uint64_t protocol_errors; /* closed for a malformed or forbidden packet */
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t tls_handshake_failures; /* TLS connections closed before their CONNECT:
					  * bad, revoked or no client certificate ... */
};

/* options may be NULL for the defaults. hooks is copied. */
int mqtt_server_new(struct event_base *base, const struct mqtt_server_options *options,
		    const struct mqtt_server_hooks *hooks, struct mqtt_server **out);
/* Listens on "HOST:PORT" (port 0 picks a free one; see mqtt_server_port). */
int mqtt_server_listen(struct mqtt_server *server, const char *address);
int mqtt_server_port(const struct mqtt_server *server);

/* Listens for MQTT over TLS on "HOST:PORT" (port 0 picks a free one; see
 * mqtt_server_tls_port), beside or instead of the plain listener. ctx is a
 * server context (crypto/tls.h); the server takes its own reference
 * (SSL_CTX_up_ref) and drops it in mqtt_server_free, so the caller may free
 * its own at any time; changes made to ctx later (a reloaded trust store)
 * apply to the next handshakes. The TLS handshake counts against
 * connect_timeout_s with the CONNECT. When ctx requires client
 * certificates, each CONNECT carries the certificate's identity (cert_vin,
 * cert_home); a verified certificate without a vehicle's identity is
 * refused with MQTT_RC_NOT_AUTHORIZED before on_connect. DM_ERR_EXISTS
 * when already listening for TLS, DM_ERR_INVALID for a bad address,
 * DM_ERR_IO when it cannot bind. */
int mqtt_server_listen_tls(struct mqtt_server *server, const char *address, struct ssl_ctx_st *ctx);
/* The TLS listener's port, or -1 when there is none. */
int mqtt_server_tls_port(const struct mqtt_server *server);

/* Acknowledges a QoS 1 PUBLISH. MQTT 5 sessions get the reason code and
 * reason_string (may be NULL); a 3.1.1 session gets a plain PUBACK when
 * reason < 0x80 and is closed otherwise (3.1.1 cannot refuse a PUBLISH).
 * A session that no longer exists is ignored. */
void mqtt_server_puback(struct mqtt_server *server, uint64_t session_id, uint16_t packet_id,
			uint8_t reason, const char *reason_string);
/* Closes a session (MQTT 5: DISCONNECT with reason first). */
void mqtt_server_disconnect(struct mqtt_server *server, uint64_t session_id, uint8_t reason);
/* Verifies the client certificate of every open TLS session again against
 * its context's trust store as it is now (tls_recheck_peer), and closes
 * (MQTT 5: DISCONNECT 0x87 first) every session whose certificate no longer
 * verifies: a revocation reaches the vehicles already connected, not only
 * the next handshakes. Returns how many were closed. */
size_t mqtt_server_recheck_tls(struct mqtt_server *server);
/* Sends a QoS 0 PUBLISH to every session subscribed to exactly `topic`. */
int mqtt_server_publish(struct mqtt_server *server, const char *topic, const uint8_t *payload,
			size_t len);

void mqtt_server_stats(const struct mqtt_server *server, struct mqtt_server_stats *out);

/* Stops accepting, sends MQTT 5 sessions DISCONNECT 0x8B, closes all
 * connections (on_close is called for each) and frees the server. Accepts
 * NULL. */
void mqtt_server_free(struct mqtt_server *server);

#endif
