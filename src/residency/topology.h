/*
 * topology.h — which sites exist, in which jurisdiction, at which endpoints.
 *
 * Every node of every jurisdiction reads the same topology file (format at
 * the top of topology.c, an annotated example in docs/topology.example):
 *   site CN cn-shanghai-1 mqtts://10.1.0.5:8883 https://10.1.0.5:8443
 * From it a node learns the sites of its own jurisdiction (where it may
 * replicate), the home site of a vehicle that registers, and where to
 * redirect a vehicle of another jurisdiction; a vehicle learns which
 * redirects it may follow (topology_endpoint_allowed): a redirect is only a
 * hint, and following one anywhere else would let a rogue server pull a
 * car's data out of its country.
 *
 * Ownership: a struct topology is created by topology_load, topology_parse or
 * topology_single and released with topology_free (which accepts NULL). It
 * holds copies of everything: nothing is borrowed from the file or the text.
 * Every struct topology_site pointer handed out is borrowed from the
 * topology, valid until topology_free. A topology is never changed after it
 * is built, so any number of threads may read it at once.
 *
 * Errors are those of util/err.h. Messages for a person read
 * "FILE:LINE: what is wrong", or "FILE: what is wrong" for a problem of the
 * whole file, e.g.
 *   topology:7: duplicate site id 'cn-shanghai-1' (first defined on line 3)
 */
#ifndef DM_TOPOLOGY_H
#define DM_TOPOLOGY_H

#include <stddef.h>
#include <stdint.h>

/* The longest line, without its line end: a site line with two URLs of
 * TOPOLOGY_URL_MAX bytes, the longest site id and a comment fits. */
#define TOPOLOGY_LINE_MAX 1024
/* The most sites in one file: far more data centres than any carmaker runs,
 * and small enough that the quadratic duplicate checks stay instant. */
#define TOPOLOGY_SITES_MAX 1024
/* The longest URL as written in the file (the fields below hold it). */
#define TOPOLOGY_URL_MAX 255
/* The largest file or text: TOPOLOGY_SITES_MAX full lines and as much again
 * of comments. Checked before the whole file is read. */
#define TOPOLOGY_FILE_MAX (2 * TOPOLOGY_SITES_MAX * (TOPOLOGY_LINE_MAX + 1))

struct topology;

/* One site. URLs and hosts are kept in their normal form: scheme and host
 * name in lower case, an IPv6 address as inet_ntop writes it (in brackets in
 * the URL, without them in the host), no trailing '/', the port in plain
 * decimal. "MQTTS://Broker.Example:8883/" becomes
 * "mqtts://broker.example:8883". */
struct topology_site {
	char jurisdiction[3];  /* ISO 3166 alpha-2, upper case: "CN" */
	char id[64];           /* [a-z0-9-], 1..63, unique in the file */
	char mqtt_url[256];    /* mqtt://HOST:PORT or mqtts://HOST:PORT */
	char api_url[256];     /* http://HOST:PORT or https://HOST:PORT */
	char mqtt_host[256];   /* HOST of mqtt_url, without brackets */
	int mqtt_port;         /* 1..65535 */
	int mqtt_tls;          /* 1 for mqtts */
	char api_host[256];    /* HOST of api_url, without brackets */
	int api_port;          /* 1..65535 */
	int api_tls;           /* 1 for https */
	unsigned line;         /* where the site is defined; 0 for topology_single */
};

/* Reads the topology file at `path`. *out is NULL on entry and on failure;
 * on success it is a topology the caller frees with topology_free. err (may
 * be NULL when err_len is 0) gets the message, truncated to err_len, and is
 * "" on success.
 * Returns DM_OK; DM_ERR_INVALID for a bad file; DM_ERR_IO when the file
 * cannot be read; DM_ERR_TOO_LARGE when it exceeds TOPOLOGY_FILE_MAX;
 * DM_ERR_NOMEM. */
int topology_load(const char *path, struct topology **out, char *err, size_t err_len);

/* The same from text in memory (len bytes, need not be NUL-terminated);
 * `name` stands for the file in messages. Returns DM_OK, DM_ERR_INVALID,
 * DM_ERR_TOO_LARGE (len > TOPOLOGY_FILE_MAX) or DM_ERR_NOMEM. */
int topology_parse(const char *name, const char *text, size_t len, struct topology **out,
		   char *err, size_t err_len);

/* A topology of one site, for a node that runs without a topology file; the
 * arguments are checked as a file's fields would be. *out is NULL on entry
 * and on failure, else the caller frees it with topology_free.
 * Returns DM_OK, DM_ERR_INVALID (a bad argument or NULL) or DM_ERR_NOMEM. */
int topology_single(const char *jurisdiction, const char *site_id, const char *mqtt_url,
		    const char *api_url, struct topology **out);

/* Releases topology and every site pointer it handed out; accepts NULL. */
void topology_free(struct topology *topology);

/* The number of sites, and site i (0 ≤ i < count, in file order; NULL
 * beyond). The site is borrowed, valid until topology_free. */
size_t topology_count(const struct topology *topology);
const struct topology_site *topology_get(const struct topology *topology, size_t i);

/* The site with this id, or NULL. Borrowed, valid until topology_free. */
const struct topology_site *topology_find_site(const struct topology *topology,
					       const char *site_id);

/* Returns how many sites `jurisdiction` has and puts the first `max` of them,
 * in file order, into out[] (out may be NULL when max is 0). The sites are
 * borrowed, valid until topology_free. */
size_t topology_sites_of(const struct topology *topology, const char *jurisdiction,
			 const struct topology_site **out, size_t max);

/* 1 when `jurisdiction` has at least one site, else 0. */
int topology_has_jurisdiction(const struct topology *topology, const char *jurisdiction);

/* The home site of a vehicle inside its jurisdiction, by rendezvous
 * (highest random weight) hashing: every site of the jurisdiction gets the
 * weight topology_rendezvous_weight(vin, site id) and the highest wins (on a
 * tie, the smaller id by strcmp, so file order never matters). Adding a site
 * moves only the vehicles that the new site wins; removing one moves only
 * the vehicles it had. Pass the VIN in its one stored spelling (util/vin.h):
 * the hash is over its bytes. NULL when the jurisdiction has no site; the
 * site is borrowed, valid until topology_free. The node stores the result in
 * the vehicle's record, so this is consulted only at registration. */
const struct topology_site *topology_home_site(const struct topology *topology,
					       const char *jurisdiction, const char *vin);

/* The fixed weight of (vin, site_id), part of the format: changing it would
 * move vehicles. FNV-1a 64 (offset basis 0xcbf29ce484222325, prime
 * 0x100000001b3) over the bytes of vin, one 0x00 byte and the bytes of
 * site_id, then the MurmurHash3 64-bit finaliser (x ^= x >> 33;
 * x *= 0xff51afd7ed558ccd; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53;
 * x ^= x >> 33), which spreads the last bytes (where VINs and site ids
 * differ) over the whole word. */
uint64_t topology_rendezvous_weight(const char *vin, const char *site_id);

/* 1 when mqtt_url is the MQTT endpoint of a site of `jurisdiction`, else 0
 * (also for NULL arguments). mqtt_url is parsed as strictly as the file's
 * MQTT_URL and compared in normal form: scheme and host name without regard
 * to case, IPv6 addresses by value, a trailing '/' ignored. Scheme, host and
 * port must all match: no user info, path, query or fragment, no other
 * spelling of an address (an IPv4 address as a number or in hex, an
 * IPv4-mapped IPv6 address) is accepted. */
int topology_endpoint_allowed(const struct topology *topology, const char *jurisdiction,
			      const char *mqtt_url);

#endif
