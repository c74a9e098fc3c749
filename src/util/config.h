/*
 * config.h — the node's configuration file.
 *
 * One setting per line, `key value`, separated by spaces or tabs; a value is
 * one word (no quoting, no spaces). '#' starts a comment when it begins a
 * line or follows a blank, so `site cn-1  # Shanghai` is fine and a '#'
 * inside a value is kept. Blank lines are ignored; "\r\n" line ends and a
 * leading UTF-8 byte-order mark are accepted. A key may appear once.
 *
 * An unknown key, a repeated key, a key without a value, anything after the
 * value, a bad value, a line longer than NODE_CONFIG_LINE_MAX bytes, a NUL or
 * other control byte stops the node with "FILE:LINE: what is wrong", e.g.
 *   node.conf:7: unknown key 'mqtt_lisen' (did you mean 'mqtt_listen'?)
 * A missing required key belongs to no line, so it reads "FILE: what is
 * wrong", naming every missing key:
 *   node.conf: missing required key 'data_dir'
 * Required: jurisdiction, site, data_dir, api_listen, and mqtt_tls_listen or
 * mqtt_listen.
 *
 * Transport security: plain TCP (mqtt_listen, and api_listen without
 * tls_cert) may bind only loopback, for development. mqtt_tls_listen needs
 * tls_cert, tls_key (the site's server certificate) and vehicle_ca_dir, which
 * holds CC.crt and CC.crl for each jurisdiction's vehicle CA; with tls_cert
 * set, the API is served over HTTPS. Key store: "keystore file" (default:
 * data_dir/kek.key) or "keystore pkcs11" with pkcs11_module, pkcs11_token
 * (token label), pkcs11_key (key label) and pkcs11_pin_file.
 * store_encryption off (default on) stores samples in clear: for tests that
 * prove the encryption scan can see clear values, never for production.
 *
 * Values: jurisdiction is two upper-case letters; site is 1..63 of [a-z0-9-]
 * not starting or ending with '-' (it appears in host names); listen
 * addresses are HOST:PORT with HOST an IPv4 address, a bracketed IPv6
 * address or a host name, PORT 0..65535; numbers are plain decimal digits
 * within the range given below. Parsing has no side effect: data_dir is
 * created by the node, not here.
 *
 * The struct holds copies: nothing is borrowed from the file or the text.
 */
#ifndef DM_CONFIG_H
#define DM_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line, without its line end: a PATH_MAX path with its key and
 * a comment fits; anything longer is not a configuration file. */
#define NODE_CONFIG_LINE_MAX 8192
/* node_config_load refuses larger files before reading them whole. */
#define NODE_CONFIG_FILE_MAX (1024 * 1024)

struct node_config {
	char jurisdiction[3];     /* ISO 3166 alpha-2, upper case: "CN" */
	char site[64];            /* [a-z0-9-], 1..63: "cn-shanghai-1" */
	char data_dir[PATH_MAX];  /* created if missing (by the node) */
	char mqtt_listen[128];    /* "HOST:PORT" */
	char api_listen[128];     /* "HOST:PORT" */
	char catalog[PATH_MAX];   /* signal catalog; default: the one built in */
	char topology[PATH_MAX];  /* every site of every jurisdiction; "" = this site alone */
	int log_level;            /* enum dm_log_level; "debug|info|warn|error", default info */
	size_t mqtt_max_packet;   /* bytes, default 262144, 64..268435455 */
	uint16_t mqtt_receive_maximum; /* default 256, 1..65535 */
	unsigned flush_interval_ms;    /* memtable flush period, default 10000, 100..3600000 */
	size_t max_samples_per_batch;  /* default 10000, 1..1000000 */
	int64_t max_future_ms;         /* clock skew allowed, default 300000, 0..86400000 */

	char mqtt_tls_listen[128];    /* "HOST:PORT" of MQTT over TLS; "" = none */
	char tls_cert[PATH_MAX];      /* the site's server certificate chain, PEM */
	char tls_key[PATH_MAX];       /* its private key, PEM */
	char vehicle_ca_dir[PATH_MAX]; /* CC.crt + CC.crl per trusted jurisdiction */
	int keystore;                 /* enum node_keystore, default file */
	char pkcs11_module[PATH_MAX]; /* the PKCS#11 module (.so) p11-kit loads */
	char pkcs11_token[33];        /* token label (PKCS#11 labels are 32 bytes) */
	char pkcs11_key[65];          /* the KEK's CKA_LABEL */
	char pkcs11_pin_file[PATH_MAX]; /* the user PIN, one line */
	int store_encryption;         /* 1 (default): blocks and log records are sealed */
	size_t audit_checkpoint_entries;   /* sign a checkpoint every N entries, default 1000 */
	unsigned audit_checkpoint_seconds; /* or every T seconds, default 60 */
	/* Refused vehicle connections recorded one by one, per reason and
	 * window; the rest are counted (audit_log_append_bounded). */
	unsigned audit_refusal_burst;          /* default 100 */
	unsigned audit_refusal_window_seconds; /* default 10 */
};

enum node_keystore { NODE_KEYSTORE_FILE = 0, NODE_KEYSTORE_PKCS11 = 1 };

/* Fills every field with its default; the required strings become empty. */
void node_config_defaults(struct node_config *config);

/* Parses `path` over the defaults: *config is reset with
 * node_config_defaults on entry and holds the file's settings on success, the
 * defaults again on failure. err (may be NULL when err_len is 0) gets the
 * message, truncated to err_len, and is "" on success.
 * Returns DM_OK; DM_ERR_INVALID for a bad file; DM_ERR_IO when the file
 * cannot be read; DM_ERR_TOO_LARGE when it exceeds NODE_CONFIG_FILE_MAX;
 * DM_ERR_NOMEM when the buffer for its text cannot be allocated. */
int node_config_load(const char *path, struct node_config *config, char *err, size_t err_len);
/* The same from text in memory (len bytes, need not be NUL-terminated);
 * `name` stands for the file in messages. Returns DM_OK or DM_ERR_INVALID. */
int node_config_parse(const char *name, const char *text, size_t len, struct node_config *config,
		      char *err, size_t err_len);

#endif
