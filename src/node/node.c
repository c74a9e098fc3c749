/*
 * node.c — wiring: config → catalog → engine → MQTT server and HTTP API on
 * one event loop, and the MQTT hooks that decide who may connect, what a
 * vehicle may publish, and when a batch is acknowledged.
 *
 * A vehicle connects with client id = username = its VIN and password = the
 * secret issued at registration. It may publish only to v/{VIN}/telemetry
 * and subscribe only to v/{VIN}/policy. A second connection for the same
 * VIN takes the session over (the first is disconnected, reason 0x8E).
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

/* A vehicle not registered here: sent to its home site, or refused. Either
 * way it is named only by its pseudonym (promise 1: a foreign VIN is never
 * written here, not even to the log). */
static void send_away(struct node *node, const struct mqtt_connect_info *info,
		      struct mqtt_connect_decision *decision)
{
	char home_buf[3], vin[64], alias[PSEUDONYM_LEN];
	const char *home = claimed_home(info, home_buf);
	size_t vin_len = info->username_len < sizeof vin - 1 ? info->username_len : sizeof vin - 1;
	memcpy(vin, info->username, vin_len);
	vin[vin_len] = '\0';
	pseudonym_of(node->pseudonym_key, vin, vin_len, alias);
	const struct topology_site *site;
	if (residency_route(node->topology, node->config.site, home, vin, &site) ==
	    ROUTE_REDIRECT) {
		decision->reason = MQTT_RC_SERVER_MOVED;
		decision->server_reference = site->mqtt_url;
		foreign_tally_count(&node->foreign, home, 1);
		node_metrics_refused_connection(&node->metrics, "redirected_home");
		dm_info("mqtt: vehicle %s (home %s) sent to its home site %s", alias, home,
			site->id);
	} else {
		/* Not authorized (3.1.1: 0x05): whatever its secret, it may not
		 * send its data here. */
		decision->reason = MQTT_RC_NOT_AUTHORIZED;
		foreign_tally_count(&node->foreign, home, 0);
		node_metrics_refused_connection(&node->metrics, "unknown_vehicle");
		dm_info("mqtt: vehicle %s (home %s) is not registered here: refused", alias,
			home ? home : "not given");
	}
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
	if (!info->username || !info->password) {
		node_metrics_refused_connection(&node->metrics, "no_credentials");
		return;
	}
	struct fleet_vehicle *vehicle =
		fleet_by_vin(engine_fleet(node->engine), info->username, info->username_len);
	if (!vehicle) {
		send_away(node, info, decision);
		return;
	}
	if (secret_verify((const char *)info->password, info->password_len,
			  vehicle->record.secret_hash) != DM_OK) {
		dm_warn("mqtt: wrong secret for vehicle %s from %s", vehicle->record.vin, info->peer);
		node_metrics_refused_connection(&node->metrics, "bad_secret");
		return;
	}
	if (!bytes_equal(info->client_id, info->client_id_len, vehicle->record.vin)) {
		decision->reason = MQTT_RC_CLIENT_ID_INVALID;
		node_metrics_refused_connection(&node->metrics, "client_id_not_vin");
		return;
	}
	if (vehicle->session_id)
		mqtt_server_disconnect(node->mqtt, vehicle->session_id, MQTT_RC_SESSION_TAKEN_OVER);
	vehicle->session_id = info->session_id;
	decision->reason = MQTT_RC_SUCCESS;
	decision->session_data = vehicle;
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
	if (rc) {
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
		snprintf(mqtt_url, sizeof mqtt_url, "mqtt://127.0.0.1:%d", mqtt_server_port(node->mqtt));
		snprintf(api_url, sizeof api_url, "http://127.0.0.1:%d", api_port(node->api));
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

static int usage(void)
{
	fprintf(stderr, "usage: domicile node -c FILE\n");
	return 2;
}

static void node_stop(struct node *node)
{
	/* Order matters: the log's last acks go out while the MQTT server
	 * still exists, then the server closes every session. */
	api_free(node->api);
	engine_close(node->engine);
	node->engine = NULL;
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
	if (rc == DM_OK) {
		struct engine_options eo = {
			.jurisdiction = node.config.jurisdiction,
			.data_dir = node.config.data_dir,
			.catalog = node.catalog,
			.flush_interval_ms = node.config.flush_interval_ms,
			.on_ack = on_ack,
			.on_flush = on_flush,
			.on_block = on_block,
			.on_commit = on_commit,
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
		struct mqtt_server_hooks hooks = {&node, on_connect, on_subscribe, on_publish,
						  on_close};
		rc = mqtt_server_new(node.base, &mo, &hooks, &node.mqtt);
	}
	if (rc == DM_OK && node.config.mqtt_listen[0])
		rc = mqtt_server_listen(node.mqtt, node.config.mqtt_listen);
	if (rc == DM_OK) {
		struct api_options ao = {
			.engine = node.engine,
			.jurisdiction = node.config.jurisdiction,
			.site = node.config.site,
			.admin_token_hash = node.admin_hash,
			.render_metrics = render_metrics,
			.residency_report = residency_report,
			.home_site = home_site,
			.observe = observe_request,
			.arg = &node,
		};
		rc = api_new(node.base, &ao, &node.api);
	}
	if (rc == DM_OK)
		rc = api_listen(node.api, node.config.api_listen);
	if (rc == DM_OK && !node.topology && (rc = load_topology(&node, err, sizeof err)) != DM_OK)
		dm_error("%s", err);
	if (rc == DM_OK) {
		node.sigterm = evsignal_new(node.base, SIGTERM, on_signal, &node);
		node.sigint = evsignal_new(node.base, SIGINT, on_signal, &node);
		rc = node.sigterm && node.sigint ? DM_OK : DM_ERR_NOMEM;
	}
	if (rc == DM_OK) {
		event_add(node.sigterm, NULL);
		event_add(node.sigint, NULL);
		dm_info("node %s/%s ready: mqtt on port %d, api on port %d, %zu vehicles",
			node.config.jurisdiction, node.config.site, mqtt_server_port(node.mqtt),
			api_port(node.api), fleet_count(engine_fleet(node.engine)));
		event_base_dispatch(node.base);
	} else {
		dm_error("node failed to start: %s", dm_strerror(rc));
	}
	node_stop(&node);
	if (rc == DM_OK)
		dm_info("node stopped");
	return rc == DM_OK ? 0 : 1;
}
