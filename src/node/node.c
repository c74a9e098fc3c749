/*
 * node.c — wiring: config → catalog → engine → MQTT server and HTTP API on
 * one event loop, and the MQTT hooks that decide who may connect, what a
 * vehicle may publish, and when a batch is acknowledged.
 *
 * A vehicle connects with client id = username = its VIN and password = the
 * secret issued at registration, or over TLS with the client certificate of
 * its jurisdiction's vehicle CA: then the certificate names the VIN (the
 * client id must be it) and the home, and no password is needed. It may
 * publish only to v/{VIN}/telemetry and subscribe only to v/{VIN}/policy. A
 * second connection for the same VIN takes the session over (the first is
 * disconnected, reason 0x8E). An erased vehicle is refused.
 */
#include "node/node.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/principals.h"
#include "audit/log.h"
#include "crypto/tls.h"
#include "crypto/keystore.h"
#include "crypto/keystore_pkcs11.h"
#include "ingest/catalog.h"
#include "ingest/payload.h"
#include "mqtt/server.h"
#include "node/node_metrics.h"
#include "residency/pseudonym.h"
#include "residency/report.h"
#include "residency/route.h"
#include "residency/topology.h"
#include "store/engine.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/err.h"
#include "util/log.h"
#include "util/secret.h"
#include "util/version.h"

#define MQTT_RC_SESSION_TAKEN_OVER 0x8E

struct node {
	struct node_config config;
	struct event_base *base;
	struct catalog *catalog;
	struct engine *engine;
	struct mqtt_server *mqtt;
	struct api *api;
	struct payload_decoder *decoder;
	struct node_metrics metrics;
	char admin_hash[128];
	struct event *sigterm, *sigint;
	struct foreign_tally foreign;
	struct topology *topology;
	unsigned char pseudonym_key[PSEUDONYM_KEY_LEN];
	SSL_CTX *mqtt_tls; /* MQTT over TLS, client certificates required; NULL: none */
	SSL_CTX *api_tls;  /* HTTPS for the API; NULL: plain HTTP on loopback */
	const char *trusted[TLS_TRUST_MAX]; /* jurisdictions whose vehicle CAs mqtt_tls trusts */
	size_t trusted_count;
	struct event *sighup;
	struct keystore *keystore; /* the jurisdiction's KEK; NULL with store_encryption off */
	struct principals *principals; /* the API's callers and their roles */
	struct audit_log *audit;       /* every access and change, signed checkpoints */
	int compaction_failing;        /* the last compaction failed (audited once) */
};

/* ---- MQTT hooks ---- */

static int bytes_equal(const void *a, size_t alen, const char *b)
{
	return alen == strlen(b) && memcmp(a, b, alen) == 0;
}

/* The home a vehicle claims in its MQTT 5 CONNECT (user property "home"),
 * copied into home[3]; NULL when it claims none that could be a code. */
static const char *claimed_home(const struct mqtt_connect_info *info, char home[3])
{
	for (size_t i = 0; i < info->user_prop_count; i++) {
		const struct mqtt_user_property *prop = &info->user_props[i];
		if (bytes_equal(prop->key, prop->key_len, "home") && prop->value_len == 2 &&
		    prop->value[0] >= 'A' && prop->value[0] <= 'Z' && prop->value[1] >= 'A' &&
		    prop->value[1] <= 'Z') {
			memcpy(home, prop->value, 2);
			home[2] = '\0';
			return home;
		}
	}
	return NULL;
}

/* Records e in the node's audit log with params (a JSON object, consumed;
 * NULL: none), through audit_log_append_bounded under `kind` unless kind
 * is NULL. A failed append is logged by the audit log. */
static int record(struct node *node, struct audit_entry e, json_t *params, const char *kind)
{
	int rc = DM_OK;
	e.params = params;
	if (node->audit)
		rc = kind ? audit_log_append_bounded(node->audit, kind, &e)
			  : audit_log_append(node->audit, &e);
	json_decref(params);
	return rc;
}

/* A connection refused or sent home: counted by reason, and recorded in
 * the audit log under the only name the node may keep (a VIN registered
 * here, a foreign vehicle's pseudonym, or none). Anyone who can reach the
 * listener can cause these at will, so each reason's entries are bounded
 * per time window and the rest counted (audit_log_append_bounded). A
 * failed audit append is logged by the audit log; the connection is
 * refused either way. */
static void connection_refused(struct node *node, const char *reason, const char *who,
			       const char *outcome, uint8_t code)
{
	node_metrics_refused_connection(&node->metrics, reason);
	char kind[48];
	snprintf(kind, sizeof kind, "mqtt.connect/%s", reason);
	record(node,
	       (struct audit_entry){.who_kind = "vehicle",
				    .who = who,
				    .action = "mqtt.connect",
				    .outcome = outcome,
				    .status = code},
	       json_pack("{s:s}", "reason", reason), kind);
}

/* A TLS client whose certificate did not verify: no identity can be
 * trusted, so the entry names none, only why (OpenSSL's reason, cut). */
static void on_tls_refused(void *arg, const char *peer, const char *reason)
{
	struct node *node = arg;
	node_metrics_refused_connection(&node->metrics, "certificate");
	char why[65];
	snprintf(why, sizeof why, "%s", reason);
	record(node,
	       (struct audit_entry){.who_kind = "vehicle", .action = "mqtt.connect",
				    .outcome = "refused"},
	       json_pack("{s:s, s:s}", "reason", "certificate", "tls", why),
	       "mqtt.connect/certificate");
}

/* A vehicle not registered here: sent to its home site, or refused. Either
 * way it is named only by its pseudonym (promise 1: a foreign VIN is never
 * written here, not even to the log). */
static void send_away(struct node *node, const char *home, const char *name, size_t name_len,
		      struct mqtt_connect_decision *decision)
{
	char vin[64], alias[PSEUDONYM_LEN];
	size_t vin_len = name_len < sizeof vin - 1 ? name_len : sizeof vin - 1;
	memcpy(vin, name, vin_len);
	vin[vin_len] = '\0';
	pseudonym_of(node->pseudonym_key, vin, vin_len, alias);
	const struct topology_site *site;
	if (residency_route(node->topology, node->config.site, home, vin, &site) ==
	    ROUTE_REDIRECT) {
		decision->reason = MQTT_RC_SERVER_MOVED;
		decision->server_reference = site->mqtt_url;
		foreign_tally_count(&node->foreign, home, 1);
		connection_refused(node, "redirected_home", alias, "redirected", decision->reason);
		dm_info("mqtt: vehicle %s (home %s) sent to its home site %s", alias, home,
			site->id);
	} else {
		/* Not authorized (3.1.1: 0x05): whatever its secret, it may not
		 * send its data here. */
		decision->reason = MQTT_RC_NOT_AUTHORIZED;
		foreign_tally_count(&node->foreign, home, 0);
		connection_refused(node, "unknown_vehicle", alias, "refused", decision->reason);
		dm_info("mqtt: vehicle %s (home %s) is not registered here: refused", alias,
			home ? home : "not given");
	}
}

/* The last step of every accepted CONNECT: an erased vehicle has no key to
 * store anything under and is refused; otherwise its session replaces any
 * earlier one. */
static void admit(struct node *node, struct fleet_vehicle *vehicle,
		  const struct mqtt_connect_info *info, struct mqtt_connect_decision *decision)
{
	if (vehicle->record.erased_ms) {
		decision->reason = MQTT_RC_NOT_AUTHORIZED;
		connection_refused(node, "erased", vehicle->record.vin, "refused", decision->reason);
		dm_info("mqtt: %s: vehicle %s was erased: refused", info->peer, vehicle->record.vin);
		return;
	}
	if (vehicle->session_id)
		mqtt_server_disconnect(node->mqtt, vehicle->session_id, MQTT_RC_SESSION_TAKEN_OVER);
	vehicle->session_id = info->session_id;
	decision->reason = MQTT_RC_SUCCESS;
	decision->session_data = vehicle;
}

/* A vehicle over TLS: its verified certificate (tls_peer_identity) names
 * its VIN and home, whatever the CONNECT claims. The client id must be that
 * VIN, and so must a user name if one is given; no password is asked for,
 * the certificate is the credential. A vehicle of another jurisdiction is
 * sent to its home site by its certificate's home (no "home" property
 * counts); one of ours must be registered here. */
static void on_connect_cert(struct node *node, const struct mqtt_connect_info *info,
			    struct mqtt_connect_decision *decision)
{
	const char *vin = info->cert_vin, *home = info->cert_home;
	size_t vin_len = strlen(vin);
	int ours = strcmp(home, node->config.jurisdiction) == 0;
	/* A foreign VIN never reaches the log (promise 1): its pseudonym does. */
	char alias[PSEUDONYM_LEN];
	pseudonym_of(node->pseudonym_key, vin, vin_len, alias);
	const char *name = ours ? vin : alias;
	if (!bytes_equal(info->client_id, info->client_id_len, vin)) {
		decision->reason = MQTT_RC_CLIENT_ID_INVALID;
		connection_refused(node, "client_id_not_vin", name, "refused", decision->reason);
		dm_info("mqtt: %s: client id is not the VIN of its certificate (vehicle %s, home "
			"%s): refused",
			info->peer, name, home);
		return;
	}
	if (info->username && !bytes_equal(info->username, info->username_len, vin)) {
		decision->reason = MQTT_RC_BAD_CREDENTIALS;
		connection_refused(node, "username_not_vin", name, "refused", decision->reason);
		dm_info("mqtt: %s: user name is not the VIN of its certificate (vehicle %s, home "
			"%s): refused",
			info->peer, name, home);
		return;
	}
	struct fleet_vehicle *vehicle =
		ours ? fleet_by_vin(engine_fleet(node->engine), vin, vin_len) : NULL;
	if (!vehicle) {
		send_away(node, home, vin, vin_len, decision);
		return;
	}
	admit(node, vehicle, info, decision);
}

static void on_connect(void *arg, const struct mqtt_connect_info *info,
		       struct mqtt_connect_decision *decision)
{
	struct node *node = arg;
	decision->reason = MQTT_RC_BAD_CREDENTIALS;
	if (!node->engine) {
		decision->reason = MQTT_RC_SERVER_UNAVAILABLE;
		return;
	}
	if (info->cert_vin && info->cert_home) {
		on_connect_cert(node, info, decision);
		return;
	}
	if (!info->username || !info->password) {
		connection_refused(node, "no_credentials", NULL, "refused", decision->reason);
		return;
	}
	struct fleet_vehicle *vehicle =
		fleet_by_vin(engine_fleet(node->engine), info->username, info->username_len);
	if (!vehicle) {
		char home[3];
		send_away(node, claimed_home(info, home), info->username, info->username_len,
			  decision);
		return;
	}
	if (secret_verify((const char *)info->password, info->password_len,
			  vehicle->record.secret_hash) != DM_OK) {
		dm_warn("mqtt: wrong secret for vehicle %s from %s", vehicle->record.vin, info->peer);
		connection_refused(node, "bad_secret", vehicle->record.vin, "refused",
				   decision->reason);
		return;
	}
	if (!bytes_equal(info->client_id, info->client_id_len, vehicle->record.vin)) {
		decision->reason = MQTT_RC_CLIENT_ID_INVALID;
		connection_refused(node, "client_id_not_vin", vehicle->record.vin, "refused",
				   decision->reason);
		return;
	}
	admit(node, vehicle, info, decision);
}

static uint8_t on_subscribe(void *arg, uint64_t session_id, void *session_data,
			    const char *filter, size_t filter_len)
{
	const struct fleet_vehicle *vehicle = session_data;
	char allowed[64];
	snprintf(allowed, sizeof allowed, "v/%s/policy", vehicle->record.vin);
	return bytes_equal(filter, filter_len, allowed) ? MQTT_RC_SUCCESS : MQTT_RC_NOT_AUTHORIZED;
}

/* The sender's word on the payload's form (MQTT 5), else detection. */
static enum payload_format publish_format(const struct mqtt_publish_info *info)
{
	if (info->content_type) {
		if (bytes_equal(info->content_type, info->content_type_len, "application/json"))
			return PAYLOAD_JSON;
		if (bytes_equal(info->content_type, info->content_type_len,
				"application/x-protobuf"))
			return PAYLOAD_PROTOBUF;
	}
	if (info->format_indicator == 1)
		return PAYLOAD_JSON;
	return payload_detect(info->payload, info->payload_len);
}

static void refuse_publish(struct node *node, const struct mqtt_publish_info *info,
			   uint8_t reason, const char *text)
{
	if (info->qos == 1)
		mqtt_server_puback(node->mqtt, info->session_id, info->packet_id, reason, text);
	else
		mqtt_server_disconnect(node->mqtt, info->session_id, reason);
}

static void on_publish(void *arg, const struct mqtt_publish_info *info)
{
	struct node *node = arg;
	struct fleet_vehicle *vehicle = info->session_data;
	uint64_t received = dm_mono_ns();
	if (!node->engine) {
		mqtt_server_disconnect(node->mqtt, info->session_id, MQTT_RC_SERVER_SHUTTING_DOWN);
		return;
	}
	char topic[64];
	snprintf(topic, sizeof topic, "v/%s/telemetry", vehicle->record.vin);
	if (!bytes_equal(info->topic, info->topic_len, topic)) {
		node_metrics_refused_batch(&node->metrics, "topic_not_allowed");
		refuse_publish(node, info, MQTT_RC_NOT_AUTHORIZED,
			       "a vehicle may publish only to v/{its VIN}/telemetry");
		return;
	}
	if (info->qos == 0) {
		/* A batch the node cannot acknowledge can promise nothing, and
		 * QoS 0 has no flow control: a vehicle could queue without bound. */
		node_metrics_refused_batch(&node->metrics, "qos0");
		refuse_publish(node, info, MQTT_RC_QOS_NOT_SUPPORTED,
			       "telemetry must be published with QoS 1");
		return;
	}
	enum payload_format format = publish_format(info);
	struct payload_batch batch;
	char reason[256];
	int rc = payload_decode(node->decoder, info->payload, info->payload_len, format,
				dm_now_ms(), &batch, reason, sizeof reason);
	if (rc) {
		node_metrics_refused_batch(&node->metrics,
					   rc == DM_ERR_MALFORMED ? "malformed"
					   : rc == DM_ERR_TOO_LARGE ? "too_many_samples"
								    : "invalid_sample");
		refuse_publish(node, info, MQTT_RC_PAYLOAD_FORMAT_INVALID, reason);
		return;
	}
	struct engine_ack ack = {
		.session_id = info->session_id,
		.packet_id = info->qos ? info->packet_id : 0,
		.received_ns = received,
		.samples = batch.count,
		.bytes = info->payload_len,
	};
	rc = engine_ingest(node->engine, vehicle, info->payload, info->payload_len,
			   format == PAYLOAD_AUTO ? payload_detect(info->payload, info->payload_len)
						  : format,
			   &batch, &ack);
	if (rc == DM_ERR_GONE) {
		/* Erased while connected: nothing of it is stored any more. */
		dm_info("mqtt: vehicle %s was erased: session closed", vehicle->record.vin);
		mqtt_server_disconnect(node->mqtt, info->session_id, MQTT_RC_NOT_AUTHORIZED);
	} else if (rc) {
		/* Not stored, so not acknowledged: the vehicle keeps the batch and
		 * sends it again later. */
		dm_error("mqtt: batch of %s not taken: %s", vehicle->record.vin, dm_strerror(rc));
		node_metrics_refused_batch(&node->metrics, "store_failed");
		mqtt_server_disconnect(node->mqtt, info->session_id, MQTT_RC_UNSPECIFIED);
	}
}

static void on_close(void *arg, uint64_t session_id, void *session_data)
{
	struct fleet_vehicle *vehicle = session_data;
	if (vehicle && vehicle->session_id == session_id)
		vehicle->session_id = 0;
}

/* ---- engine hooks ---- */

static void on_ack(void *arg, const struct engine_ack *ack, int status)
{
	struct node *node = arg;
	if (status == DM_OK) {
		if (ack->duplicate)
			node_metrics_duplicate_batch(&node->metrics);
		else
			node_metrics_accepted_batch(&node->metrics, ack->samples, ack->bytes);
		node_metrics_puback_latency(&node->metrics, dm_mono_ns() - ack->received_ns);
		if (ack->packet_id && node->mqtt)
			mqtt_server_puback(node->mqtt, ack->session_id, ack->packet_id,
					   MQTT_RC_SUCCESS, NULL);
	} else if (node->mqtt) {
		mqtt_server_disconnect(node->mqtt, ack->session_id, MQTT_RC_UNSPECIFIED);
	}
}

/* ---- start-up ---- */

/* At first start, creates the admin token, writes it to data_dir/admin.token
 * (mode 0600, never overwritten) and keeps only its hash in the store. */
static int admin_token(struct node *node)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/admin.token", node->config.data_dir);
	if (engine_setting_get(node->engine, "admin_token_hash", node->admin_hash,
			       sizeof node->admin_hash) == DM_OK) {
		dm_info("admin token: %s (created at first start)", path);
		return DM_OK;
	}
	char token[64];
	int rc = secret_generate(token, sizeof token);
	if (rc == DM_OK)
		rc = secret_hash(token, strlen(token), node->admin_hash, sizeof node->admin_hash);
	if (rc == DM_OK) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		size_t len = strlen(token);
		if (fd < 0 || write(fd, token, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
		    fsync(fd) != 0) {
			dm_error("cannot write %s: %s", path, strerror(errno));
			rc = DM_ERR_IO;
		}
		if (fd >= 0)
			close(fd);
	}
	if (rc == DM_OK)
		rc = engine_setting_set(node->engine, "admin_token_hash", node->admin_hash);
	OPENSSL_cleanse(token, sizeof token);
	if (rc == DM_OK)
		dm_info("admin token created: %s (mode 0600)", path);
	return rc;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct node *node = arg;
	dm_info("signal %d: shutting down", (int)sig);
	event_base_loopbreak(node->base);
}

static void render_metrics(void *arg, struct dm_buf *out)
{
	struct node *node = arg;
	struct mqtt_server_stats mqtt;
	struct engine_stats store;
	mqtt_server_stats(node->mqtt, &mqtt);
	engine_stats(node->engine, &store);
	node_metrics_render(&node->metrics, &mqtt, &store, out);
}

/* Registration happens only at a vehicle's home site (the API's home_site). */
static int home_site(void *arg, const char *home, const char *vin, char *site, size_t site_len,
		     char *message, size_t message_len)
{
	struct node *node = arg;
	const struct topology_site *target = topology_home_site(node->topology, home, vin);
	if (strcmp(home, node->config.jurisdiction) != 0) {
		if (target)
			snprintf(message, message_len,
				 "the vehicle's home is %s and this site serves %s: register it "
				 "at %s (site %s)",
				 home, node->config.jurisdiction, target->api_url, target->id);
		else
			snprintf(message, message_len,
				 "the vehicle's home is %s and this site serves %s; the topology "
				 "knows no site of %s",
				 home, node->config.jurisdiction, home);
		return DM_ERR_DENIED;
	}
	if (!target || strcmp(target->id, node->config.site) != 0) {
		snprintf(message, message_len,
			 "the vehicle's home site is %s: register it at %s",
			 target ? target->id : "unknown", target ? target->api_url : "that site");
		return DM_ERR_DENIED;
	}
	snprintf(site, site_len, "%s", target->id);
	return DM_OK;
}

/* Reads the topology file, or makes this site alone in its jurisdiction,
 * and checks that this node's site is in it. */
static int load_topology(struct node *node, char *err, size_t err_len)
{
	int rc;
	if (node->config.topology[0]) {
		rc = topology_load(node->config.topology, &node->topology, err, err_len);
	} else {
		char mqtt_url[300], api_url[300];
		if (node->mqtt_tls)
			snprintf(mqtt_url, sizeof mqtt_url, "mqtts://127.0.0.1:%d",
				 mqtt_server_tls_port(node->mqtt));
		else
			snprintf(mqtt_url, sizeof mqtt_url, "mqtt://127.0.0.1:%d",
				 mqtt_server_port(node->mqtt));
		snprintf(api_url, sizeof api_url, "%s://127.0.0.1:%d",
			 node->api_tls ? "https" : "http", api_port(node->api));
		rc = topology_single(node->config.jurisdiction, node->config.site, mqtt_url, api_url,
				     &node->topology);
		if (rc)
			snprintf(err, err_len, "cannot describe this site alone: %s",
				 dm_strerror(rc));
	}
	if (rc)
		return rc;
	const struct topology_site *self = topology_find_site(node->topology, node->config.site);
	if (!self || strcmp(self->jurisdiction, node->config.jurisdiction) != 0) {
		snprintf(err, err_len,
			 "%s: this node's site %s of %s is not in the topology; a node serves "
			 "only a site the topology lists for its jurisdiction",
			 node->config.topology, node->config.site, node->config.jurisdiction);
		return DM_ERR_INVALID;
	}
	return DM_OK;
}

static int residency_report(void *arg, json_t **out)
{
	struct node *node = arg;
	return residency_report_build(node->engine, node->config.jurisdiction, node->config.site,
				      &node->foreign, out);
}

static void observe_request(void *arg, const char *route, int status)
{
	struct node *node = arg;
	node_metrics_http_request(&node->metrics, route);
}

static void on_flush(void *arg, const struct engine_flush_report *report)
{
	struct node *node = arg;
	node_metrics_flush(&node->metrics, report);
}

static void on_block(void *arg, size_t samples, size_t bytes)
{
	struct node *node = arg;
	node_metrics_block(&node->metrics, samples, bytes);
}

static void on_commit(void *arg, size_t records, size_t bytes, uint64_t fsync_ns)
{
	struct node *node = arg;
	node_metrics_commit(&node->metrics, records, bytes, fsync_ns);
}

/* The last step of an erasure: the erased vehicles' blocks are gone from
 * the store's files. Recorded when it completed an erasure, removed
 * something or ended a run of failures, and when it fails (it is retried
 * every flush tick: only the first failure of a run is recorded). */
static void on_compacted(void *arg, int status, const struct db_stats *removed)
{
	struct node *node = arg;
	int failed_before = node->compaction_failing;
	node->compaction_failing = status != DM_OK;
	if ((status == DM_OK && !removed->vehicles && !removed->blocks && !failed_before) ||
	    (status != DM_OK && failed_before))
		return;
	record(node,
	       (struct audit_entry){.who_kind = "node", .action = "store.compact",
				    .outcome = status == DM_OK ? "ok" : "error"},
	       json_pack("{s:I, s:I, s:I}", "vehicles", (json_int_t)removed->vehicles, "blocks",
			 (json_int_t)removed->blocks, "samples", (json_int_t)removed->samples),
	       NULL);
}

/* ---- TLS ---- */

/* The jurisdictions whose vehicle CAs the MQTT listener trusts: ours and
 * every one of the topology (a vehicle of another one is verified before it
 * is sent home). Each points into the config or the topology. */
static void collect_trusted(struct node *node)
{
	node->trusted_count = 0;
	node->trusted[node->trusted_count++] = node->config.jurisdiction;
	size_t sites = node->topology ? topology_count(node->topology) : 0;
	for (size_t i = 0; i < sites; i++) {
		const char *code = topology_get(node->topology, i)->jurisdiction;
		int seen = 0;
		for (size_t j = 0; j < node->trusted_count; j++)
			seen |= strcmp(node->trusted[j], code) == 0;
		if (!seen && node->trusted_count < TLS_TRUST_MAX)
			node->trusted[node->trusted_count++] = code;
	}
}

/* Builds the TLS contexts the config asks for; err says what is wrong. */
static int tls_setup(struct node *node, char *err, size_t err_len)
{
	const struct node_config *c = &node->config;
	int rc = DM_OK;
	if (c->mqtt_tls_listen[0]) {
		collect_trusted(node);
		rc = tls_server_ctx_new(c->tls_cert, c->tls_key, c->vehicle_ca_dir, node->trusted,
					node->trusted_count, &node->mqtt_tls, err, err_len);
	}
	if (rc == DM_OK && c->tls_cert[0])
		rc = tls_server_ctx_new(c->tls_cert, c->tls_key, NULL, NULL, 0, &node->api_tls, err,
					err_len);
	return rc;
}

/* SIGHUP: the vehicle CAs and their CRLs are read again (a revocation takes
 * effect for the next handshakes); a failure keeps the trust in force. */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct node *node = arg;
	if (!node->mqtt_tls) {
		dm_info("SIGHUP: no TLS listener, nothing to reload");
		return;
	}
	char err[PATH_MAX + 512];
	int rc = tls_reload_trust(node->mqtt_tls, node->config.vehicle_ca_dir, node->trusted,
				  node->trusted_count, err, sizeof err);
	size_t closed = 0;
	if (rc == DM_OK) {
		closed = mqtt_server_recheck_tls(node->mqtt);
		dm_info("SIGHUP: vehicle CAs and CRLs of %zu jurisdictions reloaded from %s; %zu "
			"connected vehicles no longer verify and were disconnected",
			node->trusted_count, node->config.vehicle_ca_dir, closed);
	}
	else
		dm_error("SIGHUP: vehicle CAs and CRLs not reloaded, the previous ones stay in "
			 "force: %s",
			 err);
	record(node,
	       (struct audit_entry){.who_kind = "node", .action = "node.reload",
				    .outcome = rc == DM_OK ? "ok" : "error"},
	       json_pack("{s:s, s:I, s:I}", "what", "vehicle_trust", "jurisdictions",
			 (json_int_t)(rc == DM_OK ? node->trusted_count : 0), "disconnected",
			 (json_int_t)closed),
	       NULL);
}

/* A connected vehicle whose certificate no longer verifies after a reload
 * (revoked, or its CRL expired): disconnected, and recorded by VIN (only
 * vehicles registered here hold sessions). */
static void on_trust_lost(void *arg, uint64_t session_id, void *session_data, const char *reason)
{
	struct node *node = arg;
	const struct fleet_vehicle *vehicle = session_data;
	char why[65];
	snprintf(why, sizeof why, "%s", reason);
	record(node,
	       (struct audit_entry){.who_kind = "vehicle",
				    .who = vehicle ? vehicle->record.vin : NULL,
				    .action = "mqtt.disconnect",
				    .outcome = "refused",
				    .status = MQTT_RC_NOT_AUTHORIZED},
	       json_pack("{s:s, s:s}", "reason", "certificate", "tls", why), NULL);
}

static int usage(void)
{
	fprintf(stderr, "usage: domicile node -c FILE\n");
	return 2;
}

/* Opens the key store the config names; the node does not start without
 * it (a store that seals cannot be read without its KEK). */
static int open_keystore(struct node *node)
{
	const struct node_config *c = &node->config;
	if (!c->store_encryption)
		return DM_OK;
	if (c->keystore == NODE_KEYSTORE_PKCS11) {
		struct keystore_pkcs11_options o = {
			.module = c->pkcs11_module,
			.token = c->pkcs11_token,
			.key = c->pkcs11_key,
			.pin_file = c->pkcs11_pin_file,
		};
		int rc = keystore_pkcs11_open(&o, &node->keystore);
		if (rc)
			dm_error("key store: PKCS#11 token '%s', key '%s' is not usable: %s",
				 c->pkcs11_token, c->pkcs11_key, dm_strerror(rc));
		return rc;
	}
	if (mkdir(c->data_dir, 0700) != 0 && errno != EEXIST) {
		dm_error("cannot create %s: %s", c->data_dir, strerror(errno));
		return DM_ERR_IO;
	}
	return keystore_file_open(c->data_dir, &node->keystore);
}

/* The node's own start and stop, in the audit log. */
static int audit_node_event(struct node *node, const char *action)
{
	return record(node, (struct audit_entry){.who_kind = "node", .action = action, .outcome = "ok"},
		      json_pack("{s:s, s:s}", "jurisdiction", node->config.jurisdiction, "version",
				DM_VERSION),
		      NULL);
}

/* Stops and frees everything; `ran`: the node had started, and its stop is
 * recorded as the audit log's last entry. */
static void node_stop(struct node *node, int ran)
{
	/* Order matters: the log's last acks go out while the MQTT server
	 * still exists, then the server closes every session. */
	api_free(node->api);
	principals_free(node->principals);
	node->principals = NULL;
	engine_close(node->engine); /* may record a last compaction */
	node->engine = NULL;
	keystore_free(node->keystore);
	node->keystore = NULL;
	if (ran && node->audit) {
		audit_log_summarise(node->audit);
		audit_node_event(node, "node.stop");
	}
	audit_log_close(node->audit); /* a last checkpoint */
	node->audit = NULL;
	/* One pass of the loop writes those acks out; hooks see no engine now
	 * and refuse anything new. */
	if (node->base)
		event_base_loop(node->base, EVLOOP_NONBLOCK);
	mqtt_server_free(node->mqtt);
	node->mqtt = NULL;
	payload_decoder_free(node->decoder);
	catalog_free(node->catalog);
	topology_free(node->topology);
	OPENSSL_cleanse(node->pseudonym_key, sizeof node->pseudonym_key);
	if (node->sigterm)
		event_free(node->sigterm);
	if (node->sigint)
		event_free(node->sigint);
	if (node->sighup)
		event_free(node->sighup);
	SSL_CTX_free(node->mqtt_tls); /* after the server and the API, which hold their own */
	SSL_CTX_free(node->api_tls);
	node_metrics_free(&node->metrics);
	if (node->base)
		event_base_free(node->base);
}

int node_main(int argc, char **argv)
{
	const char *config_path = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt(argc, argv, "c:")) != -1) {
		if (opt != 'c')
			return usage();
		config_path = optarg;
	}
	if (!config_path || optind != argc)
		return usage();

	static struct node node; /* static: the loop's callbacks outlive no frame */
	memset(&node, 0, sizeof node);
	char err[PATH_MAX + 512];
	if (node_config_load(config_path, &node.config, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile: %s\n", err);
		return 1;
	}
	dm_log_set_level((enum dm_log_level)node.config.log_level);
	if (catalog_load(node.config.catalog, &node.catalog, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile: %s\n", err);
		return 1;
	}
	/* A topology file is checked before anything is opened; a site alone
	 * is described once its listeners have their ports. */
	if (node.config.topology[0] && load_topology(&node, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile: %s\n", err);
		catalog_free(node.catalog);
		topology_free(node.topology);
		return 1;
	}
	/* Certificates, keys, vehicle CAs and CRLs too: a node that could not
	 * check a vehicle's certificate, or its revocation, does not start. */
	if (tls_setup(&node, err, sizeof err) != DM_OK) {
		fprintf(stderr, "domicile: %s\n", err);
		SSL_CTX_free(node.mqtt_tls);
		catalog_free(node.catalog);
		topology_free(node.topology);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	int rc = evthread_use_pthreads() == 0 ? DM_OK : DM_ERR_NOMEM;
	struct payload_limits limits = {node.config.max_samples_per_batch,
					node.config.max_future_ms};
	if (rc == DM_OK)
		rc = node_metrics_init(&node.metrics);
	if (rc == DM_OK) {
		node.base = event_base_new();
		rc = node.base ? DM_OK : DM_ERR_NOMEM;
	}
	if (rc == DM_OK)
		rc = payload_decoder_new(node.catalog, &limits, &node.decoder);
	if (rc == DM_OK)
		rc = open_keystore(&node);
	if (rc == DM_OK) {
		struct engine_options eo = {
			.jurisdiction = node.config.jurisdiction,
			.data_dir = node.config.data_dir,
			.keystore = node.keystore,
			.catalog = node.catalog,
			.flush_interval_ms = node.config.flush_interval_ms,
			.on_ack = on_ack,
			.on_flush = on_flush,
			.on_block = on_block,
			.on_commit = on_commit,
			.on_compacted = on_compacted,
			.arg = &node,
		};
		rc = engine_open(node.base, &eo, &node.engine);
	}
	if (rc == DM_OK)
		rc = admin_token(&node);
	if (rc == DM_OK)
		rc = pseudonym_key_load(node.config.data_dir, node.pseudonym_key);
	if (rc == DM_OK) {
		struct mqtt_server_options mo = {
			.max_packet_size = node.config.mqtt_max_packet,
			.receive_maximum = node.config.mqtt_receive_maximum,
		};
		struct mqtt_server_hooks hooks = {&node,    on_connect, on_subscribe,
						  on_publish, on_close, on_tls_refused,
						  on_trust_lost};
		rc = mqtt_server_new(node.base, &mo, &hooks, &node.mqtt);
	}
	if (rc == DM_OK && node.config.mqtt_listen[0])
		rc = mqtt_server_listen(node.mqtt, node.config.mqtt_listen);
	if (rc == DM_OK && node.mqtt_tls)
		rc = mqtt_server_listen_tls(node.mqtt, node.config.mqtt_tls_listen, node.mqtt_tls);
	if (rc == DM_OK)
		rc = principals_open(engine_db(node.engine), node.admin_hash, &node.principals);
	if (rc == DM_OK) {
		struct audit_log_options lo = {
			.data_dir = node.config.data_dir,
			.site = node.config.site,
			.checkpoint_entries = node.config.audit_checkpoint_entries,
			.checkpoint_seconds = node.config.audit_checkpoint_seconds,
			.burst = node.config.audit_refusal_burst,
			.window_ms = node.config.audit_refusal_window_seconds * 1000,
		};
		rc = audit_log_open(node.base, &lo, &node.audit);
	}
	if (rc == DM_OK) {
		struct api_options ao = {
			.engine = node.engine,
			.jurisdiction = node.config.jurisdiction,
			.site = node.config.site,
			.admin_token_hash = node.admin_hash,
			.principals = node.principals,
			.audit = node.audit,
			.render_metrics = render_metrics,
			.residency_report = residency_report,
			.home_site = home_site,
			.observe = observe_request,
			.arg = &node,
		};
		rc = api_new(node.base, &ao, &node.api);
	}
	if (rc == DM_OK)
		rc = node.api_tls ? api_listen_tls(node.api, node.config.api_listen, node.api_tls)
				  : api_listen(node.api, node.config.api_listen);
	if (rc == DM_OK && !node.topology && (rc = load_topology(&node, err, sizeof err)) != DM_OK)
		dm_error("%s", err);
	if (rc == DM_OK) {
		node.sigterm = evsignal_new(node.base, SIGTERM, on_signal, &node);
		node.sigint = evsignal_new(node.base, SIGINT, on_signal, &node);
		node.sighup = evsignal_new(node.base, SIGHUP, on_sighup, &node);
		rc = node.sigterm && node.sigint && node.sighup ? DM_OK : DM_ERR_NOMEM;
	}
	if (rc == DM_OK) {
		event_add(node.sigterm, NULL);
		event_add(node.sigint, NULL);
		event_add(node.sighup, NULL);
		char mqtt_ports[64] = "", mqtts_ports[64] = "";
		if (node.config.mqtt_listen[0])
			snprintf(mqtt_ports, sizeof mqtt_ports, "mqtt on port %d, ",
				 mqtt_server_port(node.mqtt));
		if (node.mqtt_tls)
			snprintf(mqtts_ports, sizeof mqtts_ports, "mqtts on port %d, ",
				 mqtt_server_tls_port(node.mqtt));
		dm_info("node %s/%s ready: %s%sapi on port %d%s, %zu vehicles",
			node.config.jurisdiction, node.config.site, mqtt_ports, mqtts_ports,
			api_port(node.api), node.api_tls ? " (https)" : "",
			fleet_count(engine_fleet(node.engine)));
		rc = audit_node_event(&node, "node.start");
		if (rc == DM_OK)
			event_base_dispatch(node.base);
	}
	if (rc != DM_OK)
		dm_error("node failed to start: %s", dm_strerror(rc));
	node_stop(&node, rc == DM_OK);
	if (rc == DM_OK)
		dm_info("node stopped");
	return rc == DM_OK ? 0 : 1;
}
