/*
 * topology.c — reads the topology file and answers questions about it.
 *
 * Format. Text, one site per line, fields separated by spaces or tabs:
 *
 *   site JURISDICTION SITE_ID MQTT_URL API_URL
 *   site CN cn-shanghai-1 mqtt://10.1.0.5:1883 http://10.1.0.5:8080
 *
 *  - JURISDICTION: two upper-case letters (ISO 3166 alpha-2), the same rule
 *    as the node's `jurisdiction` key.
 *  - SITE_ID: 1..63 of [a-z0-9-], not starting or ending with '-' (the rule
 *    of the node's `site` key); unique in the whole file.
 *  - MQTT_URL: mqtt://HOST:PORT or mqtts://HOST:PORT; API_URL: http:// or
 *    https://HOST:PORT. HOST is an IPv4 address in dotted decimal, an IPv6
 *    address in brackets or a host name (RFC 1123 labels, at most 253
 *    bytes, the last label starting with a letter so that no spelling of a
 *    number passes as a name); PORT is 1..65535 in decimal without leading
 *    zeros. One trailing '/' is allowed; user info, a path, a query or a
 *    fragment are not. At most TOPOLOGY_URL_MAX bytes. The scheme and host
 *    name may be in any case; they are kept in lower case.
 *  - No two sites share an MQTT endpoint (host and port), nor an API
 *    endpoint: an endpoint belongs to one site, so to one jurisdiction.
 *
 * '#' starts a comment at the start of a line or after a blank; blank lines
 * are ignored; "\r\n" line ends and a leading UTF-8 byte-order mark are
 * accepted. A NUL or another control byte (tab aside), a line longer than
 * TOPOLOGY_LINE_MAX bytes, more than TOPOLOGY_SITES_MAX sites or a file
 * without any site is refused. A jurisdiction may have several sites.
 *
 * Invariants:
 *  1. Nothing is read outside [text, text + len): lines are (pointer, length)
 *     pairs, every scan is bounded by a length, never by a NUL, and a field
 *     is copied only after its length was checked against its destination.
 *  2. *out is NULL on entry and stays NULL on any failure; a caller never
 *     sees half a topology, and nothing is left allocated.
 *  3. Every site in a topology passed every check of the format above, so
 *     its URLs and hosts are in normal form (see topology.h) and two URLs
 *     name the same endpoint exactly when their normal forms are equal.
 *  4. Candidate URLs (topology_endpoint_allowed) go through the same parser
 *     as the file's; whatever it refuses is never allowed.
 *  5. Every message names the file, and the line when there is one; values
 *     quoted in messages are cut at EXCERPT_MAX bytes.
 */
#include "residency/topology.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/file.h"

/* Longest value quoted back in a message; the rest becomes "...". */
#define EXCERPT_MAX 64
#define EXCERPT(s, n)                                                                              \
	(int)((n) > EXCERPT_MAX ? EXCERPT_MAX : (n)), (s), ((n) > EXCERPT_MAX ? "..." : "")

#define FORMAT_HINT "a line is 'site JURISDICTION SITE_ID MQTT_URL API_URL'"
#define SITE_FIELDS 5 /* the directive and its four fields */
#define HOST_NAME_MAX_LEN 253
#define WHY_MAX 256

struct topology {
	size_t count;
	struct topology_site *sites; /* count of them, in file order */
};

/* What a URL field may be. */
struct url_kind {
	const char *field;  /* as the format names it */
	const char *plain;  /* scheme without TLS */
	const char *secure; /* scheme with TLS */
	const char *example;
};

static const struct url_kind mqtt_kind = {"MQTT_URL", "mqtt", "mqtts", "mqtt://10.1.0.5:1883"};
static const struct url_kind api_kind = {"API_URL", "http", "https", "http://10.1.0.5:8080"};

/* A URL in normal form (invariant 3). */
struct url {
	char text[TOPOLOGY_URL_MAX + 1];
	char host[HOST_NAME_MAX_LEN + 1];
	int port;
	int tls;
};

struct parser {
	const char *name;
	size_t line_no;
	struct topology_site *sites;
	size_t count, cap;
	char *err;
	size_t err_len;
};

static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_alpha(char c) { return is_lower(c) || is_upper(c); }
static char to_lower(char c) { return is_upper(c) ? (char)(c - 'A' + 'a') : c; }

/* Reports a problem of the current line (or of the file when line_no is 0);
 * returns DM_ERR_INVALID so that callers can `return fail(...)`. */
__attribute__((format(printf, 2, 3))) static int fail(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	dm_vformat_at(ps->err, ps->err_len, ps->name, ps->line_no, fmt, ap);
	va_end(ap);
	return DM_ERR_INVALID;
}

/* The validators below write what is wrong, without file and line, into
 * why[WHY_MAX] and return DM_ERR_INVALID, so that topology_single and
 * topology_endpoint_allowed can use them without a parser. */
__attribute__((format(printf, 2, 3))) static int refuse(char *why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, WHY_MAX, fmt, ap);
	va_end(ap);
	return DM_ERR_INVALID;
}

static int check_jurisdiction(const char *value, size_t len, char *why)
{
	if (len != 2 || !is_upper(value[0]) || !is_upper(value[1]))
		return refuse(why,
			      "jurisdiction must be two upper-case letters (ISO 3166 alpha-2), "
			      "got '%.*s%s'",
			      EXCERPT(value, len));
	return DM_OK;
}

static int check_site_id(const char *value, size_t len, char *why)
{
	size_t max = sizeof(((struct topology_site *)0)->id) - 1;
	if (len > max)
		return refuse(why, "site id is %zu characters long, at most %zu are allowed", len,
			      max);
	int ok = len > 0 && value[0] != '-' && value[len - 1] != '-';
	for (size_t i = 0; i < len && ok; i++)
		ok = is_lower(value[i]) || is_digit(value[i]) || value[i] == '-';
	if (!ok)
		return refuse(why,
			      "site id must be made of a-z, 0-9 and '-', not starting or ending "
			      "with '-', got '%.*s%s'",
			      EXCERPT(value, len));
	return DM_OK;
}

/* A host name per RFC 1123: dot-separated labels of 1..63 letters, digits
 * and '-', not starting or ending with '-', at most 253 bytes. The last
 * label must start with a letter (no top-level domain starts with a digit):
 * resolvers read "0x0a.1.0.5", "10.1.5" or "167837701" as IPv4 addresses,
 * and such a spelling must not pass as a name that merely differs from the
 * site's "10.1.0.5". */
static int is_host_name(const char *host, size_t len)
{
	if (len == 0 || len > HOST_NAME_MAX_LEN)
		return 0;
	size_t label = 0, last_start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || host[i] == '.') {
			if (label == 0 || label > 63 || host[i - 1] == '-')
				return 0;
			if (i < len)
				last_start = i + 1;
			label = 0;
			continue;
		}
		char c = host[i];
		if (!is_alpha(c) && !is_digit(c) && c != '-')
			return 0;
		if (label == 0 && c == '-')
			return 0;
		label++;
	}
	return is_alpha(host[last_start]);
}

/* Finds the first byte of s[0..len) that is in `set`, or NULL. */
static const char *find_any(const char *s, size_t len, const char *set)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != '\0' && strchr(set, s[i]))
			return s + i;
	return NULL;
}

/* Parses value[0..len) as a URL of `kind` into its normal form. */
static int parse_url(const struct url_kind *kind, const char *value, size_t len, struct url *url,
		     char *why)
{
	const char *field = kind->field;
	memset(url, 0, sizeof *url);
	if (len > TOPOLOGY_URL_MAX)
		return refuse(why, "%s is too long (%zu bytes, at most %d)", field, len,
			      TOPOLOGY_URL_MAX);

	const char *sep = NULL;
	for (size_t i = 0; i + 3 <= len && !sep; i++)
		if (memcmp(value + i, "://", 3) == 0)
			sep = value + i;
	if (!sep)
		return refuse(why,
			      "%s must be %s://HOST:PORT or %s://HOST:PORT, e.g. %s, got '%.*s%s'",
			      field, kind->plain, kind->secure, kind->example, EXCERPT(value, len));
	size_t scheme_len = (size_t)(sep - value);
	char scheme[8] = "";
	if (scheme_len < sizeof scheme) {
		for (size_t i = 0; i < scheme_len; i++)
			scheme[i] = to_lower(value[i]);
		scheme[scheme_len] = '\0';
	}
	if (strcmp(scheme, kind->plain) == 0)
		url->tls = 0;
	else if (strcmp(scheme, kind->secure) == 0)
		url->tls = 1;
	else
		return refuse(why, "%s scheme must be %s or %s, got '%.*s%s'", field, kind->plain,
			      kind->secure, EXCERPT(value, scheme_len));

	const char *auth = sep + 3;
	size_t auth_len = len - (size_t)(auth - value);
	if (auth_len > 0 && auth[auth_len - 1] == '/')
		auth_len--;
	if (find_any(auth, auth_len, "/?#\\"))
		return refuse(why,
			      "%s must not have a path, query or fragment (only %s), got '%.*s%s'",
			      field, kind->example, EXCERPT(value, len));
	/* "mqtt://10.1.0.5:1883@evil.example:1883" connects to evil.example. */
	if (memchr(auth, '@', auth_len))
		return refuse(why, "%s must not have user info ('@'), got '%.*s%s'", field,
			      EXCERPT(value, len));
	if (auth_len == 0)
		return refuse(why, "%s has no host, e.g. %s", field, kind->example);

	const char *colon;
	char host[HOST_NAME_MAX_LEN + 1];
	if (auth[0] == '[') {
		const char *close = memchr(auth, ']', auth_len);
		if (!close)
			return refuse(why, "%s has '[' without ']': '%.*s%s'", field,
				      EXCERPT(value, len));
		size_t host_len = (size_t)(close - auth) - 1;
		struct in6_addr addr6;
		/* INET6_ADDRSTRLEN bounds every valid spelling. */
		if (host_len >= INET6_ADDRSTRLEN)
			return refuse(why, "%s: '%.*s%s' is not an IPv6 address", field,
				      EXCERPT(auth + 1, host_len));
		memcpy(host, auth + 1, host_len);
		host[host_len] = '\0';
		if (inet_pton(AF_INET6, host, &addr6) != 1)
			return refuse(why, "%s: '%s' is not an IPv6 address", field, host);
		if (!inet_ntop(AF_INET6, &addr6, url->host, sizeof url->host))
			return refuse(why, "%s: '%s' is not an IPv6 address", field, host);
		colon = close + 1;
		if (colon == auth + auth_len || *colon != ':')
			return refuse(why, "%s needs a port after the address, e.g. %s://[::1]:%s",
				      field, kind->plain, strrchr(kind->example, ':') + 1);
	} else {
		colon = memrchr(auth, ':', auth_len);
		if (!colon)
			return refuse(why, "%s needs a port (HOST:PORT), e.g. %s, got '%.*s%s'",
				      field, kind->example, EXCERPT(value, len));
		size_t host_len = (size_t)(colon - auth);
		if (host_len == 0)
			return refuse(why, "%s has no host before the port, e.g. %s", field,
				      kind->example);
		if (memchr(auth, ':', host_len))
			return refuse(why, "%s: an IPv6 address needs brackets, e.g. %s://[::1]:%s",
				      field, kind->plain, strrchr(kind->example, ':') + 1);
		if (host_len > HOST_NAME_MAX_LEN)
			return refuse(why, "%s: host is too long (%zu bytes, at most %d)", field,
				      host_len, HOST_NAME_MAX_LEN);
		memcpy(host, auth, host_len);
		host[host_len] = '\0';
		int numeric = 1;
		for (size_t i = 0; i < host_len; i++)
			numeric = numeric && (is_digit(host[i]) || host[i] == '.');
		struct in_addr addr4;
		if (numeric) {
			/* inet_pton takes dotted decimal only, without leading zeros. */
			if (inet_pton(AF_INET, host, &addr4) != 1 ||
			    !inet_ntop(AF_INET, &addr4, url->host, sizeof url->host))
				return refuse(why, "%s: '%s' is not an IPv4 address", field, host);
		} else {
			if (!is_host_name(host, host_len))
				return refuse(why,
					      "%s: '%s' is not a valid host name (labels of "
					      "letters, digits and '-', the last starting with "
					      "a letter)",
					      field, host);
			for (size_t i = 0; i <= host_len; i++)
				url->host[i] = to_lower(host[i]);
		}
	}

	const char *port = colon + 1;
	size_t port_len = auth_len - (size_t)(port - auth);
	long number = 0;
	int ok = port_len >= 1 && port_len <= 5 && port[0] != '0';
	for (size_t i = 0; i < port_len && ok; i++) {
		ok = is_digit(port[i]);
		number = number * 10 + (port[i] - '0');
	}
	if (!ok || number > 65535)
		return refuse(why,
			      "%s port must be a number from 1 to 65535 without leading zeros, "
			      "got '%.*s%s'",
			      field, EXCERPT(port, port_len));
	url->port = (int)number;

	/* A host name keeps its length and an IPv6 address has at most 45
	 * characters, so the normal form of a URL that fit fits too. */
	int is_v6 = auth[0] == '[';
	int used = snprintf(url->text, sizeof url->text, "%s://%s%s%s:%d",
			    url->tls ? kind->secure : kind->plain, is_v6 ? "[" : "", url->host,
			    is_v6 ? "]" : "", url->port);
	if (used < 0 || (size_t)used >= sizeof url->text)
		return refuse(why, "%s is too long (at most %d bytes)", field, TOPOLOGY_URL_MAX);
	return DM_OK;
}

/* Fills site from its four fields, checking each. */
static int build_site(struct topology_site *site, const char *const field[4],
		      const size_t field_len[4], char *why)
{
	struct url mqtt, api;
	int rc = check_jurisdiction(field[0], field_len[0], why);
	if (rc == DM_OK)
		rc = check_site_id(field[1], field_len[1], why);
	if (rc == DM_OK)
		rc = parse_url(&mqtt_kind, field[2], field_len[2], &mqtt, why);
	if (rc == DM_OK)
		rc = parse_url(&api_kind, field[3], field_len[3], &api, why);
	if (rc)
		return rc;
	memset(site, 0, sizeof *site);
	memcpy(site->jurisdiction, field[0], 2);
	memcpy(site->id, field[1], field_len[1]);
	snprintf(site->mqtt_url, sizeof site->mqtt_url, "%s", mqtt.text);
	snprintf(site->mqtt_host, sizeof site->mqtt_host, "%s", mqtt.host);
	site->mqtt_port = mqtt.port;
	site->mqtt_tls = mqtt.tls;
	snprintf(site->api_url, sizeof site->api_url, "%s", api.text);
	snprintf(site->api_host, sizeof site->api_host, "%s", api.host);
	site->api_port = api.port;
	site->api_tls = api.tls;
	return DM_OK;
}

/* Refuses a site whose id or endpoints an earlier site already has. */
static int check_unique(struct parser *ps, const struct topology_site *site)
{
	for (size_t i = 0; i < ps->count; i++) {
		const struct topology_site *other = &ps->sites[i];
		if (strcmp(other->id, site->id) == 0)
			return fail(ps, "duplicate site id '%s' (first defined on line %u)",
				    site->id, other->line);
		if (other->mqtt_port == site->mqtt_port &&
		    strcmp(other->mqtt_host, site->mqtt_host) == 0)
			return fail(ps,
				    "MQTT_URL %s is the MQTT endpoint of site '%s' (line %u) "
				    "already",
				    site->mqtt_url, other->id, other->line);
		if (other->api_port == site->api_port &&
		    strcmp(other->api_host, site->api_host) == 0)
			return fail(ps,
				    "API_URL %s is the API endpoint of site '%s' (line %u) already",
				    site->api_url, other->id, other->line);
	}
	return DM_OK;
}

static int add_site(struct parser *ps, const char *const field[4], const size_t field_len[4])
{
	char why[WHY_MAX];
	struct topology_site site;
	if (build_site(&site, field, field_len, why))
		return fail(ps, "%s", why);
	site.line = (unsigned)ps->line_no;
	int rc = check_unique(ps, &site);
	if (rc)
		return rc;
	if (ps->count == TOPOLOGY_SITES_MAX)
		return fail(ps, "too many sites (at most %d)", TOPOLOGY_SITES_MAX);
	if (ps->count == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 8;
		if (cap > TOPOLOGY_SITES_MAX)
			cap = TOPOLOGY_SITES_MAX;
		struct topology_site *grown = dm_realloc(ps->sites, cap * sizeof *grown);
		if (!grown) {
			fail(ps, "out of memory");
			return DM_ERR_NOMEM;
		}
		ps->sites = grown;
		ps->cap = cap;
	}
	ps->sites[ps->count++] = site;
	return DM_OK;
}

static int parse_line(struct parser *ps, const char *line, size_t len)
{
	if (len > TOPOLOGY_LINE_MAX)
		return fail(ps, "line is too long (%zu bytes, at most %d)", len, TOPOLOGY_LINE_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == '\0')
			return fail(ps, "NUL byte at column %zu", i + 1);
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(ps, "control character 0x%02x at column %zu", c, i + 1);
	}

	/* Words up to the end or a comment; only the first SITE_FIELDS are kept. */
	const char *word[SITE_FIELDS];
	size_t word_len[SITE_FIELDS];
	size_t words = 0, pos = 0;
	for (;;) {
		while (pos < len && is_blank(line[pos]))
			pos++;
		if (pos == len || line[pos] == '#')
			break;
		size_t start = pos;
		while (pos < len && !is_blank(line[pos]))
			pos++;
		if (words < SITE_FIELDS) {
			word[words] = line + start;
			word_len[words] = pos - start;
		}
		words++;
	}
	if (words == 0)
		return DM_OK;
	if (word_len[0] != 4 || memcmp(word[0], "site", 4) != 0)
		return fail(ps, "unknown directive '%.*s%s' (%s)", EXCERPT(word[0], word_len[0]),
			    FORMAT_HINT);
	if (words != SITE_FIELDS)
		return fail(ps,
			    "'site' needs 4 fields (JURISDICTION SITE_ID MQTT_URL API_URL), "
			    "got %zu",
			    words - 1);
	return add_site(ps, word + 1, word_len + 1);
}

int topology_parse(const char *name, const char *text, size_t len, struct topology **out,
		   char *err, size_t err_len)
{
	struct parser ps = {.name = name, .err = err, .err_len = err_len};
	*out = NULL;
	if (err && err_len)
		err[0] = '\0';
	if (len > TOPOLOGY_FILE_MAX) {
		fail(&ps, "file is larger than %d bytes", TOPOLOGY_FILE_MAX);
		return DM_ERR_TOO_LARGE;
	}

	struct dm_lines lines;
	const char *line;
	size_t line_len;
	int rc = DM_OK;
	dm_lines_init(&lines, text, len);
	while (rc == DM_OK && dm_lines_next(&lines, &line, &line_len)) {
		ps.line_no++;
		rc = parse_line(&ps, line, line_len);
	}
	if (rc == DM_OK && ps.count == 0) {
		ps.line_no = 0;
		rc = fail(&ps, "no sites (%s)", FORMAT_HINT);
	}
	struct topology *topology = NULL;
	if (rc == DM_OK) {
		topology = dm_malloc(sizeof *topology);
		if (!topology) {
			ps.line_no = 0;
			fail(&ps, "out of memory");
			rc = DM_ERR_NOMEM;
		}
	}
	if (rc) {
		dm_free(ps.sites);
		return rc;
	}
	topology->count = ps.count;
	topology->sites = ps.sites;
	*out = topology;
	return DM_OK;
}

int topology_load(const char *path, struct topology **out, char *err, size_t err_len)
{
	struct dm_buf text = {0};
	*out = NULL;
	if (err && err_len)
		err[0] = '\0';
	int rc = dm_read_file(path, TOPOLOGY_FILE_MAX, &text, err, err_len);
	if (rc == DM_OK)
		rc = topology_parse(path, (const char *)text.data, text.len, out, err, err_len);
	dm_buf_free(&text);
	return rc;
}

int topology_single(const char *jurisdiction, const char *site_id, const char *mqtt_url,
		    const char *api_url, struct topology **out)
{
	*out = NULL;
	if (!jurisdiction || !site_id || !mqtt_url || !api_url)
		return DM_ERR_INVALID;
	const char *field[4] = {jurisdiction, site_id, mqtt_url, api_url};
	size_t field_len[4];
	for (size_t i = 0; i < 4; i++)
		field_len[i] = strlen(field[i]);
	char why[WHY_MAX];
	struct topology_site site;
	if (build_site(&site, field, field_len, why))
		return DM_ERR_INVALID;
	struct topology *topology = dm_malloc(sizeof *topology);
	struct topology_site *sites = dm_malloc(sizeof *sites);
	if (!topology || !sites) {
		dm_free(topology);
		dm_free(sites);
		return DM_ERR_NOMEM;
	}
	sites[0] = site;
	topology->count = 1;
	topology->sites = sites;
	*out = topology;
	return DM_OK;
}

void topology_free(struct topology *topology)
{
	if (!topology)
		return;
	dm_free(topology->sites);
	dm_free(topology);
}

size_t topology_count(const struct topology *topology) { return topology->count; }

const struct topology_site *topology_get(const struct topology *topology, size_t i)
{
	return i < topology->count ? &topology->sites[i] : NULL;
}

const struct topology_site *topology_find_site(const struct topology *topology,
					       const char *site_id)
{
	if (!site_id)
		return NULL;
	for (size_t i = 0; i < topology->count; i++)
		if (strcmp(topology->sites[i].id, site_id) == 0)
			return &topology->sites[i];
	return NULL;
}

size_t topology_sites_of(const struct topology *topology, const char *jurisdiction,
			 const struct topology_site **out, size_t max)
{
	size_t found = 0;
	if (!jurisdiction)
		return 0;
	for (size_t i = 0; i < topology->count; i++) {
		if (strcmp(topology->sites[i].jurisdiction, jurisdiction) != 0)
			continue;
		if (found < max)
			out[found] = &topology->sites[i];
		found++;
	}
	return found;
}

int topology_has_jurisdiction(const struct topology *topology, const char *jurisdiction)
{
	return topology_sites_of(topology, jurisdiction, NULL, 0) > 0;
}

#define FNV_OFFSET_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

uint64_t topology_rendezvous_weight(const char *vin, const char *site_id)
{
	uint64_t hash = FNV_OFFSET_BASIS;
	for (const char *c = vin; *c; c++) {
		hash ^= (uint8_t)*c;
		hash *= FNV_PRIME;
	}
	/* The 0x00 separator (its xor is a no-op), so that ("AB", "c") and
	 * ("A", "Bc") are different inputs. */
	hash *= FNV_PRIME;
	for (const char *c = site_id; *c; c++) {
		hash ^= (uint8_t)*c;
		hash *= FNV_PRIME;
	}
	hash ^= hash >> 33;
	hash *= 0xff51afd7ed558ccdULL;
	hash ^= hash >> 33;
	hash *= 0xc4ceb9fe1a85ec53ULL;
	hash ^= hash >> 33;
	return hash;
}

const struct topology_site *topology_home_site(const struct topology *topology,
					       const char *jurisdiction, const char *vin)
{
	const struct topology_site *best = NULL;
	uint64_t best_weight = 0;
	if (!jurisdiction || !vin)
		return NULL;
	for (size_t i = 0; i < topology->count; i++) {
		const struct topology_site *site = &topology->sites[i];
		if (strcmp(site->jurisdiction, jurisdiction) != 0)
			continue;
		uint64_t weight = topology_rendezvous_weight(vin, site->id);
		if (!best || weight > best_weight ||
		    (weight == best_weight && strcmp(site->id, best->id) < 0)) {
			best = site;
			best_weight = weight;
		}
	}
	return best;
}

int topology_endpoint_allowed(const struct topology *topology, const char *jurisdiction,
			      const char *mqtt_url)
{
	if (!topology || !jurisdiction || !mqtt_url)
		return 0;
	char why[WHY_MAX];
	struct url url;
	/* strnlen: a candidate longer than any URL is refused without scanning it all. */
	size_t len = strnlen(mqtt_url, TOPOLOGY_URL_MAX + 1);
	if (parse_url(&mqtt_kind, mqtt_url, len, &url, why))
		return 0;
	for (size_t i = 0; i < topology->count; i++) {
		const struct topology_site *site = &topology->sites[i];
		if (strcmp(site->jurisdiction, jurisdiction) == 0 &&
		    strcmp(site->mqtt_url, url.text) == 0)
			return 1;
	}
	return 0;
}
