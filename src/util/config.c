/*
 * config.c — reads the node's configuration file (format: see config.h).
 *
 * The text is cut into lines at '\n' (a '\r' just before it belongs to the
 * line end); each line is checked for length and forbidden bytes before it
 * is split into at most two words, the key and the value, so a validator
 * only ever sees one bounded word of printable bytes.
 *
 * Invariants:
 *  1. Nothing is read outside [text, text + len): lines are (pointer, length)
 *     pairs and every scan is bounded by the line's length, never by a NUL.
 *  2. *config is node_config_defaults() on entry and again on any failure:
 *     a caller never sees half a file.
 *  3. seen[k] is the line that set key k (0: not set), so a repeated key can
 *     name the line of its first setting.
 *  4. Every message names the file, and the line when there is one; values
 *     quoted in messages are cut at EXCERPT_MAX bytes.
 */
#include "util/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#ifndef DM_DEFAULT_CATALOG
#define DM_DEFAULT_CATALOG "catalog/signals.catalog"
#endif

/* Longest key or value quoted back in a message; the rest becomes "...". */
#define EXCERPT_MAX 64
#define EXCERPT(s, n)                                                                              \
	(int)((n) > EXCERPT_MAX ? EXCERPT_MAX : (n)), (s), ((n) > EXCERPT_MAX ? "..." : "")

/* Unknown keys at most this long are compared with the known ones for a
 * "did you mean" hint; longer ones are not typos of a 21-byte key. */
#define SUGGEST_KEY_MAX 32

enum value_kind {
	VALUE_JURISDICTION,
	VALUE_SITE,
	VALUE_PATH,
	VALUE_LISTEN,
	VALUE_LOG_LEVEL,
	VALUE_KEYSTORE,
	VALUE_SWITCH,   /* on|off into an int field */
	VALUE_LABEL,    /* a PKCS#11 label: printable, one word */
	VALUE_SIZE,     /* size_t field */
	VALUE_U16,      /* uint16_t field */
	VALUE_UNSIGNED, /* unsigned field */
	VALUE_I64,      /* int64_t field */
};

struct key_spec {
	const char *name;
	enum value_kind kind;
	int required;
	size_t offset; /* of the field in struct node_config */
	size_t size;   /* of the field: string capacity including the NUL */
	uint64_t min, max;
};

#define FIELD(f) offsetof(struct node_config, f), sizeof(((struct node_config *)0)->f)

static const struct key_spec keys[] = {
	{"jurisdiction", VALUE_JURISDICTION, 1, FIELD(jurisdiction), 0, 0},
	{"site", VALUE_SITE, 1, FIELD(site), 0, 0},
	{"data_dir", VALUE_PATH, 1, FIELD(data_dir), 0, 0},
	{"mqtt_listen", VALUE_LISTEN, 0, FIELD(mqtt_listen), 0, 0},
	{"mqtt_tls_listen", VALUE_LISTEN, 0, FIELD(mqtt_tls_listen), 0, 0},
	{"api_listen", VALUE_LISTEN, 1, FIELD(api_listen), 0, 0},
	{"catalog", VALUE_PATH, 0, FIELD(catalog), 0, 0},
	{"topology", VALUE_PATH, 0, FIELD(topology), 0, 0},
	{"log_level", VALUE_LOG_LEVEL, 0, FIELD(log_level), 0, 0},
	{"mqtt_max_packet", VALUE_SIZE, 0, FIELD(mqtt_max_packet), 64, 268435455},
	{"mqtt_receive_maximum", VALUE_U16, 0, FIELD(mqtt_receive_maximum), 1, 65535},
	{"flush_interval_ms", VALUE_UNSIGNED, 0, FIELD(flush_interval_ms), 100, 3600000},
	{"max_samples_per_batch", VALUE_SIZE, 0, FIELD(max_samples_per_batch), 1, 1000000},
	{"max_future_ms", VALUE_I64, 0, FIELD(max_future_ms), 0, 86400000},
	{"tls_cert", VALUE_PATH, 0, FIELD(tls_cert), 0, 0},
	{"tls_key", VALUE_PATH, 0, FIELD(tls_key), 0, 0},
	{"vehicle_ca_dir", VALUE_PATH, 0, FIELD(vehicle_ca_dir), 0, 0},
	{"keystore", VALUE_KEYSTORE, 0, FIELD(keystore), 0, 0},
	{"pkcs11_module", VALUE_PATH, 0, FIELD(pkcs11_module), 0, 0},
	{"pkcs11_token", VALUE_LABEL, 0, FIELD(pkcs11_token), 0, 0},
	{"pkcs11_key", VALUE_LABEL, 0, FIELD(pkcs11_key), 0, 0},
	{"pkcs11_pin_file", VALUE_PATH, 0, FIELD(pkcs11_pin_file), 0, 0},
	{"store_encryption", VALUE_SWITCH, 0, FIELD(store_encryption), 0, 0},
	{"audit_checkpoint_entries", VALUE_SIZE, 0, FIELD(audit_checkpoint_entries), 1, 100000000},
	{"audit_checkpoint_seconds", VALUE_UNSIGNED, 0, FIELD(audit_checkpoint_seconds), 1, 86400},
	{"audit_refusal_burst", VALUE_UNSIGNED, 0, FIELD(audit_refusal_burst), 1, 100000},
	{"audit_refusal_window_seconds", VALUE_UNSIGNED, 0, FIELD(audit_refusal_window_seconds), 1,
	 3600},
};

#define KEY_COUNT (sizeof keys / sizeof keys[0])

struct parser {
	const char *name;
	size_t line_no;
	struct node_config *config;
	size_t seen[KEY_COUNT];
	char *err;
	size_t err_len;
};

void node_config_defaults(struct node_config *config)
{
	memset(config, 0, sizeof *config);
	snprintf(config->catalog, sizeof config->catalog, "%s", DM_DEFAULT_CATALOG);
	config->log_level = DM_LOG_INFO;
	config->mqtt_max_packet = 262144;
	config->mqtt_receive_maximum = 256;
	config->flush_interval_ms = 10000;
	config->max_samples_per_batch = 10000;
	config->max_future_ms = 300000;
	config->keystore = NODE_KEYSTORE_FILE;
	config->store_encryption = 1;
	config->audit_checkpoint_entries = 1000;
	config->audit_checkpoint_seconds = 60;
	config->audit_refusal_burst = 100;
	config->audit_refusal_window_seconds = 10;
}

/* Reports a problem of the current line; returns DM_ERR_INVALID so that
 * validators can `return fail(...)`. */
__attribute__((format(printf, 2, 3))) static int fail(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	dm_vformat_at(ps->err, ps->err_len, ps->name, ps->line_no, fmt, ap);
	va_end(ap);
	return DM_ERR_INVALID;
}

/* Reports a problem of the whole file, which has no line. */
__attribute__((format(printf, 4, 5))) static void fail_file(const char *name, char *err,
							   size_t err_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	dm_vformat_at(err, err_len, name, 0, fmt, ap);
	va_end(ap);
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }

/* Edit distance of two short words (both at most SUGGEST_KEY_MAX bytes). */
static size_t edit_distance(const char *a, size_t a_len, const char *b, size_t b_len)
{
	size_t row[SUGGEST_KEY_MAX + 1];
	for (size_t j = 0; j <= b_len; j++)
		row[j] = j;
	for (size_t i = 1; i <= a_len; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= b_len; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[b_len];
}

/* The known key within two edits of `key`, or NULL. */
static const char *suggest_key(const char *key, size_t len)
{
	const char *best = NULL;
	size_t best_distance = 3;
	if (len > SUGGEST_KEY_MAX)
		return NULL;
	for (size_t k = 0; k < KEY_COUNT; k++) {
		size_t distance = edit_distance(key, len, keys[k].name, strlen(keys[k].name));
		if (distance < best_distance) {
			best_distance = distance;
			best = keys[k].name;
		}
	}
	return best;
}

static int check_jurisdiction(struct parser *ps, const struct key_spec *spec, const char *value,
			      size_t len)
{
	if (len != 2 || !is_upper(value[0]) || !is_upper(value[1]))
		return fail(ps,
			    "jurisdiction must be two upper-case letters (ISO 3166 alpha-2), "
			    "got '%.*s%s'",
			    EXCERPT(value, len));
	return DM_OK;
}

static int check_site(struct parser *ps, const struct key_spec *spec, const char *value,
		      size_t len)
{
	if (len > spec->size - 1)
		return fail(ps, "site is %zu characters long, at most %zu are allowed", len,
			    spec->size - 1);
	int ok = value[0] != '-' && value[len - 1] != '-';
	for (size_t i = 0; i < len && ok; i++)
		ok = is_lower(value[i]) || is_digit(value[i]) || value[i] == '-';
	if (!ok)
		return fail(ps,
			    "site must be made of a-z, 0-9 and '-', not starting or ending "
			    "with '-', got '%.*s%s'",
			    EXCERPT(value, len));
	return DM_OK;
}

static int check_path(struct parser *ps, const struct key_spec *spec, const char *value,
		      size_t len)
{
	if (len > spec->size - 1)
		return fail(ps, "%s is too long (%zu bytes, at most %zu)", spec->name, len,
			    spec->size - 1);
	return DM_OK;
}

/* A host name per RFC 1123: dot-separated labels of 1..63 letters, digits
 * and '-', not starting or ending with '-', 253 bytes at most. */
static int is_host_name(const char *host, size_t len)
{
	if (len > 253)
		return 0;
	size_t label = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || host[i] == '.') {
			if (label == 0 || label > 63 || host[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		char c = host[i];
		if (!is_lower(c) && !is_upper(c) && !is_digit(c) && c != '-')
			return 0;
		if (label == 0 && c == '-')
			return 0;
		label++;
	}
	return 1;
}

static int check_listen(struct parser *ps, const struct key_spec *spec, const char *value,
			size_t len)
{
	const char *name = spec->name;
	if (len > spec->size - 1)
		return fail(ps, "%s is too long (%zu bytes, at most %zu)", name, len,
			    spec->size - 1);
	/* Shorter than the field, so it fits with its NUL for inet_pton. */
	char host[sizeof(((struct node_config *)0)->mqtt_listen)];
	const char *colon;
	if (value[0] == '[') {
		const char *close = memchr(value, ']', len);
		if (!close)
			return fail(ps, "%s has '[' without ']': '%.*s%s'", name,
				    EXCERPT(value, len));
		size_t host_len = (size_t)(close - value) - 1;
		memcpy(host, value + 1, host_len);
		host[host_len] = '\0';
		struct in6_addr addr6;
		if (inet_pton(AF_INET6, host, &addr6) != 1)
			return fail(ps, "%s: '%s' is not an IPv6 address", name, host);
		colon = close + 1;
		if (colon == value + len || *colon != ':')
			return fail(ps, "%s must be HOST:PORT, e.g. [::1]:8883, got '%.*s%s'",
				    name, EXCERPT(value, len));
	} else {
		colon = memrchr(value, ':', len);
		if (!colon)
			return fail(ps, "%s must be HOST:PORT, e.g. 0.0.0.0:8883, got '%.*s%s'",
				    name, EXCERPT(value, len));
		size_t host_len = (size_t)(colon - value);
		if (host_len == 0)
			return fail(ps,
				    "%s has no host before the port (use 0.0.0.0 or [::] for "
				    "every address)",
				    name);
		if (memchr(value, ':', host_len))
			return fail(ps, "%s: an IPv6 address needs brackets, e.g. [::1]:8883",
				    name);
		memcpy(host, value, host_len);
		host[host_len] = '\0';
		int numeric = 1;
		for (size_t i = 0; i < host_len; i++)
			numeric = numeric && (is_digit(host[i]) || host[i] == '.');
		struct in_addr addr4;
		/* No top-level domain is all digits, so "10.0.0.256" is a bad
		 * address, not a host name. */
		if (numeric && inet_pton(AF_INET, host, &addr4) != 1)
			return fail(ps, "%s: '%s' is not an IPv4 address", name, host);
		if (!numeric && !is_host_name(host, host_len))
			return fail(ps, "%s: '%s' is not a valid host name", name, host);
	}
	const char *port = colon + 1;
	size_t port_len = len - (size_t)(port - value);
	unsigned long number = 0;
	int ok = port_len >= 1 && port_len <= 5;
	for (size_t i = 0; i < port_len && ok; i++) {
		ok = is_digit(port[i]);
		number = number * 10 + (unsigned long)(port[i] - '0');
	}
	if (!ok || number > 65535)
		return fail(ps, "%s port must be a number from 0 to 65535, got '%.*s%s'", name,
			    EXCERPT(port, port_len));
	return DM_OK;
}

/* A value that must be one of names[0..n); its index's entry of values goes
 * to *out. */
static int check_choice(struct parser *ps, const struct key_spec *spec, const char *value,
			size_t len, const char *const *names, const int *values, size_t n, int *out)
{
	char list[128] = "";
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		if (strlen(names[i]) == len && memcmp(names[i], value, len) == 0) {
			*out = values[i];
			return DM_OK;
		}
		int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
		if (w > 0 && (size_t)w < sizeof list - used)
			used += (size_t)w;
	}
	return fail(ps, "%s must be one of %s, got '%.*s%s'", spec->name, list,
		    EXCERPT(value, len));
}

static int check_label(struct parser *ps, const struct key_spec *spec, const char *value,
		       size_t len)
{
	if (len > spec->size - 1)
		return fail(ps, "%s is too long (%zu bytes, at most %zu)", spec->name, len,
			    spec->size - 1);
	/* parse_line already refused control bytes and a value is one word. */
	return DM_OK;
}

static int check_number(struct parser *ps, const struct key_spec *spec, const char *value,
			size_t len, uint64_t *number)
{
	uint64_t n = 0;
	int ok = 1;
	for (size_t i = 0; i < len && ok; i++) {
		unsigned digit = (unsigned)(value[i] - '0');
		ok = is_digit(value[i]) && n <= (UINT64_MAX - digit) / 10;
		n = n * 10 + digit;
	}
	if (!ok || n < spec->min || n > spec->max)
		return fail(ps, "%s must be a whole number from %llu to %llu, got '%.*s%s'",
			    spec->name, (unsigned long long)spec->min,
			    (unsigned long long)spec->max, EXCERPT(value, len));
	*number = n;
	return DM_OK;
}

/* Checks value against spec and stores it in ps->config. */
static int set_value(struct parser *ps, const struct key_spec *spec, const char *value,
		     size_t len)
{
	char *field = (char *)ps->config + spec->offset;
	uint64_t number = 0;
	int rc;
	switch (spec->kind) {
	case VALUE_JURISDICTION:
		rc = check_jurisdiction(ps, spec, value, len);
		break;
	case VALUE_SITE:
		rc = check_site(ps, spec, value, len);
		break;
	case VALUE_PATH:
		rc = check_path(ps, spec, value, len);
		break;
	case VALUE_LISTEN:
		rc = check_listen(ps, spec, value, len);
		break;
	case VALUE_LOG_LEVEL: {
		static const char *const names[] = {"debug", "info", "warn", "error"};
		static const int levels[] = {DM_LOG_DEBUG, DM_LOG_INFO, DM_LOG_WARN,
					     DM_LOG_ERROR};
		return check_choice(ps, spec, value, len, names, levels, 4, (int *)(void *)field);
	}
	case VALUE_KEYSTORE: {
		static const char *const names[] = {"file", "pkcs11"};
		static const int kinds[] = {NODE_KEYSTORE_FILE, NODE_KEYSTORE_PKCS11};
		return check_choice(ps, spec, value, len, names, kinds, 2, (int *)(void *)field);
	}
	case VALUE_SWITCH: {
		static const char *const names[] = {"on", "off"};
		static const int states[] = {1, 0};
		return check_choice(ps, spec, value, len, names, states, 2, (int *)(void *)field);
	}
	case VALUE_LABEL:
		rc = check_label(ps, spec, value, len);
		break;
	default:
		rc = check_number(ps, spec, value, len, &number);
		if (rc)
			return rc;
		switch (spec->kind) {
		case VALUE_SIZE:
			*(size_t *)(void *)field = (size_t)number;
			break;
		case VALUE_U16:
			*(uint16_t *)(void *)field = (uint16_t)number;
			break;
		case VALUE_UNSIGNED:
			*(unsigned *)(void *)field = (unsigned)number;
			break;
		default:
			*(int64_t *)(void *)field = (int64_t)number;
			break;
		}
		return DM_OK;
	}
	if (rc)
		return rc;
	/* The checks above bounded len by spec->size - 1. */
	memcpy(field, value, len);
	field[len] = '\0';
	return DM_OK;
}

static int parse_line(struct parser *ps, const char *line, size_t len)
{
	if (len > NODE_CONFIG_LINE_MAX)
		return fail(ps, "line is too long (%zu bytes, at most %d)", len,
			    NODE_CONFIG_LINE_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == '\0')
			return fail(ps, "NUL byte at column %zu", i + 1);
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(ps, "control character 0x%02x at column %zu", c, i + 1);
	}

	size_t pos = 0;
	while (pos < len && is_blank(line[pos]))
		pos++;
	if (pos == len || line[pos] == '#')
		return DM_OK;
	const char *key = line + pos;
	while (pos < len && !is_blank(line[pos]))
		pos++;
	size_t key_len = (size_t)(line + pos - key);

	size_t k = 0;
	while (k < KEY_COUNT &&
	       (strlen(keys[k].name) != key_len || memcmp(keys[k].name, key, key_len) != 0))
		k++;
	if (k == KEY_COUNT) {
		const char *hint = suggest_key(key, key_len);
		if (hint)
			return fail(ps, "unknown key '%.*s%s' (did you mean '%s'?)",
				    EXCERPT(key, key_len), hint);
		return fail(ps, "unknown key '%.*s%s'", EXCERPT(key, key_len));
	}
	const struct key_spec *spec = &keys[k];
	if (ps->seen[k])
		return fail(ps, "repeated key '%s' (first set on line %zu)", spec->name,
			    ps->seen[k]);

	while (pos < len && is_blank(line[pos]))
		pos++;
	if (pos == len || line[pos] == '#')
		return fail(ps, "key '%s' has no value", spec->name);
	const char *value = line + pos;
	while (pos < len && !is_blank(line[pos]))
		pos++;
	size_t value_len = (size_t)(line + pos - value);

	while (pos < len && is_blank(line[pos]))
		pos++;
	if (pos < len && line[pos] != '#') {
		size_t rest = len - pos;
		while (rest > 0 && is_blank(line[pos + rest - 1]))
			rest--;
		return fail(ps,
			    "unexpected '%.*s%s' after the value of '%s' (a value is one word; "
			    "'#' starts a comment)",
			    EXCERPT(line + pos, rest), spec->name);
	}

	int rc = set_value(ps, spec, value, value_len);
	if (rc == DM_OK)
		ps->seen[k] = ps->line_no;
	return rc;
}

static int check_required(struct parser *ps)
{
	char missing[256] = "";
	size_t used = 0, count = 0;
	for (size_t k = 0; k < KEY_COUNT; k++) {
		if (!keys[k].required || ps->seen[k])
			continue;
		/* Five short names always fit. */
		int n = snprintf(missing + used, sizeof missing - used, "%s'%s'",
				 count ? ", " : "", keys[k].name);
		if (n > 0 && (size_t)n < sizeof missing - used)
			used += (size_t)n;
		count++;
	}
	if (count == 0)
		return DM_OK;
	fail_file(ps->name, ps->err, ps->err_len, "missing required key%s %s",
		  count > 1 ? "s" : "", missing);
	return DM_ERR_INVALID;
}

/* Whether a listen address (already checked) binds only the loopback
 * interface: 127.0.0.0/8, [::1] or localhost. */
static int listen_is_loopback(const char *address)
{
	if (strncmp(address, "[::1]:", 6) == 0 || strncmp(address, "localhost:", 10) == 0)
		return 1;
	struct in_addr addr4;
	char host[sizeof(((struct node_config *)0)->mqtt_listen)];
	const char *colon = strrchr(address, ':');
	size_t len = colon ? (size_t)(colon - address) : 0;
	if (!colon || len >= sizeof host)
		return 0;
	memcpy(host, address, len);
	host[len] = '\0';
	return inet_pton(AF_INET, host, &addr4) == 1 && (ntohl(addr4.s_addr) >> 24) == 127;
}

/* Rules that tie keys together; they belong to no single line. */
static int check_combinations(struct parser *ps)
{
	const struct node_config *c = ps->config;
	const char *problem = NULL;
	if (!c->mqtt_listen[0] && !c->mqtt_tls_listen[0])
		problem = "set mqtt_tls_listen (or, for development on loopback, mqtt_listen)";
	else if (!c->tls_cert[0] != !c->tls_key[0])
		problem = "tls_cert and tls_key go together";
	else if (c->mqtt_tls_listen[0] && (!c->tls_cert[0] || !c->vehicle_ca_dir[0]))
		problem = "mqtt_tls_listen needs tls_cert, tls_key and vehicle_ca_dir";
	else if (c->mqtt_listen[0] && !listen_is_loopback(c->mqtt_listen))
		problem = "mqtt_listen is plain TCP and may only bind loopback "
			  "(127.0.0.1, [::1], localhost); use mqtt_tls_listen";
	else if (!c->tls_cert[0] && !listen_is_loopback(c->api_listen))
		problem = "api_listen off loopback needs tls_cert and tls_key (the API is then "
			  "served over HTTPS)";
	else if (c->keystore == NODE_KEYSTORE_PKCS11 &&
		 (!c->pkcs11_module[0] || !c->pkcs11_token[0] || !c->pkcs11_key[0] ||
		  !c->pkcs11_pin_file[0]))
		problem = "keystore pkcs11 needs pkcs11_module, pkcs11_token, pkcs11_key and "
			  "pkcs11_pin_file";
	else if (c->keystore != NODE_KEYSTORE_PKCS11 &&
		 (c->pkcs11_module[0] || c->pkcs11_token[0] || c->pkcs11_key[0] ||
		  c->pkcs11_pin_file[0]))
		problem = "pkcs11_* settings need 'keystore pkcs11'";
	if (!problem)
		return DM_OK;
	fail_file(ps->name, ps->err, ps->err_len, "%s", problem);
	return DM_ERR_INVALID;
}

int node_config_parse(const char *name, const char *text, size_t len, struct node_config *config,
		      char *err, size_t err_len)
{
	struct parser ps = {.name = name, .config = config, .err = err, .err_len = err_len};
	if (err && err_len)
		err[0] = '\0';
	node_config_defaults(config);

	struct dm_lines lines;
	const char *line;
	size_t line_len;
	int rc = DM_OK;
	dm_lines_init(&lines, text, len);
	while (rc == DM_OK && dm_lines_next(&lines, &line, &line_len)) {
		ps.line_no++;
		rc = parse_line(&ps, line, line_len);
	}
	if (rc == DM_OK)
		rc = check_required(&ps);
	if (rc == DM_OK)
		rc = check_combinations(&ps);
	if (rc)
		node_config_defaults(config);
	return rc;
}

int node_config_load(const char *path, struct node_config *config, char *err, size_t err_len)
{
	struct dm_buf text = {0};
	node_config_defaults(config);
	if (err && err_len)
		err[0] = '\0';
	int rc = dm_read_file(path, NODE_CONFIG_FILE_MAX, &text, err, err_len);
	if (rc == DM_OK)
		rc = node_config_parse(path, (const char *)text.data, text.len, config, err,
				       err_len);
	dm_buf_free(&text);
	return rc;
}
