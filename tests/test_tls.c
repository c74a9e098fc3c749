/*
 * test_tls.c — the node's TLS contexts: which client certificates pass the
 * handshake and what identity they yield, the trust directory's rules, the
 * reload, the protocol floor, and the MQTT server's TLS listener.
 *
 * Each case runs real handshakes in memory (an OpenSSL BIO pair between a
 * client SSL and a server SSL from tls_server_ctx_new), so what passes here
 * is what a vehicle's TLS stack meets. Each case gets its own mkdtemp
 * directory with a CN and a DE vehicle CA (made by pki.c), a second "CN" CA
 * that nobody trusts, the trust directory the node reads (CN.crt, CN.crl,
 * DE.crt, DE.crl) and the site's server certificate; certificates pki.c
 * would never issue (expired, a wrong C, a CN that is no VIN) are made
 * here with OpenSSL's API.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <event2/event.h>

#include "crypto/pki.h"
#include "crypto/tls.h"
#include "mqtt/server.h"
#include "util/err.h"
#include "util/log.h"

#define VIN_CN "LSVAU218XN2183294" /* valid, with its check digit */
#define VIN_CN2 "LFV3A28KXL3007531"
#define VIN_DE "WVWZZZ1JZXW000001" /* Europe: no check digit required */
#define DAYS 30

static const char *const TRUSTED[] = {"CN", "DE"};

struct fixture {
	char root[64];
	char cn[PATH_MAX]; /* CA dirs */
	char de[PATH_MAX];
	char rogue[PATH_MAX]; /* a CN CA no node trusts */
	char trust[PATH_MAX]; /* vehicle_ca_dir */
	char out[PATH_MAX];   /* issued certificates */
	char server_crt[PATH_MAX], server_key[PATH_MAX];
};

/* ---- files ---- */

static void join(char *out, const char *dir, const char *name)
{
	int len = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	assert_true(len > 0 && len < PATH_MAX);
}

static void copy_file(const char *from_dir, const char *from, const char *to_dir, const char *to)
{
	char src[PATH_MAX], dst[PATH_MAX];
	join(src, from_dir, from);
	join(dst, to_dir, to);
	FILE *in = fopen(src, "rb");
	assert_non_null(in);
	FILE *out = fopen(dst, "wb");
	assert_non_null(out);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

static void remove_in(const char *dir, const char *name)
{
	char path[PATH_MAX];
	join(path, dir, name);
	assert_int_equal(unlink(path), 0);
}

static void make_dir(char *out, const char *root, const char *name)
{
	join(out, root, name);
	assert_int_equal(mkdir(out, 0700), 0);
}

static void issue_vehicle(const struct fixture *f, const char *ca_dir, const char *vin)
{
	char err[256];
	int rc = pki_issue_vehicle(ca_dir, vin, f->out, DAYS, err, sizeof err);
	if (rc != DM_OK)
		print_error("%s\n", err);
	assert_int_equal(rc, DM_OK);
}

/* Publishes ca_dir's current CRL as trust/CODE.crl. */
static void publish_crl(const struct fixture *f, const char *ca_dir, const char *code)
{
	char name[8];
	snprintf(name, sizeof name, "%s.crl", code);
	copy_file(ca_dir, "ca.crl", f->trust, name);
}

static int setup(void **state)
{
	dm_log_set_level(DM_LOG_ERROR);
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	strcpy(f->root, "/tmp/test_tls.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	make_dir(f->cn, f->root, "ca-cn");
	make_dir(f->de, f->root, "ca-de");
	make_dir(f->rogue, f->root, "ca-rogue");
	make_dir(f->trust, f->root, "trust");
	make_dir(f->out, f->root, "out");
	char err[256];
	assert_int_equal(pki_ca_create(f->cn, "CN", DAYS, err, sizeof err), DM_OK);
	assert_int_equal(pki_ca_create(f->de, "DE", DAYS, err, sizeof err), DM_OK);
	assert_int_equal(pki_ca_create(f->rogue, "CN", DAYS, err, sizeof err), DM_OK);
	copy_file(f->cn, "ca.crt", f->trust, "CN.crt");
	copy_file(f->de, "ca.crt", f->trust, "DE.crt");
	publish_crl(f, f->cn, "CN");
	publish_crl(f, f->de, "DE");
	assert_int_equal(
	    pki_issue_server(f->cn, "cn-test-1", "127.0.0.1", f->out, DAYS, err, sizeof err),
	    DM_OK);
	join(f->server_crt, f->out, "cn-test-1.crt");
	join(f->server_key, f->out, "cn-test-1.key");
	*state = f;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return rc;
}

/* ---- certificates pki.c would not issue ---- */

struct forged {
	const char *cn;
	const char *c;
	long not_before_days; /* from now */
	long not_after_days;
};

/* Writes NAME.crt and NAME.key into f->out: a client certificate with the
 * subject and validity of spec, signed by the CA in ca_dir. */
static void forge(const struct fixture *f, const char *ca_dir, const char *name,
                  const struct forged *spec)
{
	char path[PATH_MAX];
	join(path, ca_dir, "ca.crt");
	FILE *in = fopen(path, "r");
	assert_non_null(in);
	X509 *ca = PEM_read_X509(in, NULL, NULL, NULL);
	fclose(in);
	join(path, ca_dir, "ca.key");
	in = fopen(path, "r");
	assert_non_null(in);
	EVP_PKEY *ca_key = PEM_read_PrivateKey(in, NULL, NULL, NULL);
	fclose(in);
	assert_non_null(ca);
	assert_non_null(ca_key);

	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	assert_non_null(key);
	assert_non_null(cert);
	assert_int_equal(X509_set_version(cert, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), 4242), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), spec->not_before_days * 86400));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), spec->not_after_days * 86400));
	X509_NAME *subject = X509_get_subject_name(cert);
	assert_int_equal(X509_NAME_add_entry_by_txt(subject, "C", MBSTRING_ASC,
	                                            (const unsigned char *)spec->c, -1, -1, 0),
	                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)spec->cn, -1, -1, 0),
	                 1);
	assert_int_equal(X509_set_issuer_name(cert, X509_get_subject_name(ca)), 1);
	assert_int_equal(X509_set_pubkey(cert, key), 1);
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, ca, cert, NULL, NULL, 0);
	const struct {
		int nid;
		const char *value;
	} exts[] = {
	    {NID_basic_constraints, "critical,CA:FALSE"},
	    {NID_key_usage, "critical,digitalSignature"},
	    {NID_ext_key_usage, "clientAuth"},
	    {NID_authority_key_identifier, "keyid:always"},
	};
	for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
		X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
		assert_non_null(ext);
		assert_int_equal(X509_add_ext(cert, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(cert, ca_key, EVP_sha256()) > 0);

	char file[PATH_MAX], base[64];
	snprintf(base, sizeof base, "%s.crt", name);
	join(file, f->out, base);
	FILE *out = fopen(file, "w");
	assert_non_null(out);
	assert_int_equal(PEM_write_X509(out, cert), 1);
	fclose(out);
	snprintf(base, sizeof base, "%s.key", name);
	join(file, f->out, base);
	out = fopen(file, "w");
	assert_non_null(out);
	assert_int_equal(PEM_write_PrivateKey(out, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(out);
	X509_free(cert);
	EVP_PKEY_free(key);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
}

/* ---- handshakes ---- */

struct client_opts {
	const char *name;        /* certificate NAME.crt/.key in f->out; NULL: none */
	int max_version;         /* 0: any */
	const char *cipher_list; /* TLS 1.2 ciphers; NULL: OpenSSL's defaults */
	int verify_server;       /* check the server's certificate against the CN CA */
};

struct session {
	SSL_CTX *client_ctx;
	SSL *client, *server;
	int server_ok; /* the server completed its handshake */
};

static SSL_CTX *server_ctx(const struct fixture *f)
{
	SSL_CTX *ctx = NULL;
	char err[512];
	int rc = tls_server_ctx_new(f->server_crt, f->server_key, f->trust, TRUSTED, 2, &ctx, err,
	                            sizeof err);
	if (rc != DM_OK)
		print_error("%s\n", err);
	assert_int_equal(rc, DM_OK);
	assert_non_null(ctx);
	return ctx;
}

/* Runs a handshake between a client built from opts and a server SSL of
 * ctx, through a BIO pair, until both are done or one fails. */
static void handshake(const struct fixture *f, SSL_CTX *ctx, const struct client_opts *opts,
                      struct session *s)
{
	memset(s, 0, sizeof *s);
	s->client_ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(s->client_ctx);
	SSL_CTX_set_min_proto_version(s->client_ctx, TLS1_VERSION);
	if (opts->max_version) {
		/* Old protocols need the lowest security level to be offered. */
		SSL_CTX_set_security_level(s->client_ctx, 0);
		assert_int_equal(SSL_CTX_set_max_proto_version(s->client_ctx, opts->max_version),
		                 1);
	}
	if (opts->cipher_list)
		assert_int_equal(SSL_CTX_set_cipher_list(s->client_ctx, opts->cipher_list), 1);
	if (opts->name) {
		char crt[PATH_MAX], key[PATH_MAX], base[64];
		snprintf(base, sizeof base, "%s.crt", opts->name);
		join(crt, f->out, base);
		snprintf(base, sizeof base, "%s.key", opts->name);
		join(key, f->out, base);
		assert_int_equal(SSL_CTX_use_certificate_file(s->client_ctx, crt, SSL_FILETYPE_PEM),
		                 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(s->client_ctx, key, SSL_FILETYPE_PEM),
		                 1);
	}
	if (opts->verify_server) {
		char ca[PATH_MAX];
		join(ca, f->cn, "ca.crt");
		assert_int_equal(SSL_CTX_load_verify_locations(s->client_ctx, ca, NULL), 1);
		SSL_CTX_set_verify(s->client_ctx, SSL_VERIFY_PEER, NULL);
	}
	s->client = SSL_new(s->client_ctx);
	s->server = SSL_new(ctx);
	assert_non_null(s->client);
	assert_non_null(s->server);
	if (opts->verify_server)
		assert_int_equal(SSL_set1_host(s->client, "127.0.0.1"), 1);
	BIO *client_bio = NULL, *server_bio = NULL;
	assert_int_equal(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
	SSL_set_bio(s->client, client_bio, client_bio);
	SSL_set_bio(s->server, server_bio, server_bio);
	SSL_set_connect_state(s->client);
	SSL_set_accept_state(s->server);

	int client_done = 0, client_failed = 0, server_failed = 0;
	for (int round = 0; round < 50 && !server_failed && !(client_done && s->server_ok);
	     round++) {
		if (!client_done && !client_failed) {
			int rc = SSL_do_handshake(s->client);
			if (rc == 1)
				client_done = 1;
			else if (SSL_get_error(s->client, rc) != SSL_ERROR_WANT_READ)
				client_failed = 1;
		}
		if (!s->server_ok) {
			int rc = SSL_do_handshake(s->server);
			if (rc == 1)
				s->server_ok = 1;
			else if (SSL_get_error(s->server, rc) != SSL_ERROR_WANT_READ)
				server_failed = 1;
		}
		if (client_failed && !s->server_ok)
			break;
	}
	ERR_clear_error();
}

static void session_end(struct session *s)
{
	SSL_free(s->client);
	SSL_free(s->server);
	SSL_CTX_free(s->client_ctx);
}

/* The handshake with the client certificate NAME: 1 when the server
 * completed it. */
static int accepts(const struct fixture *f, SSL_CTX *ctx, const char *name)
{
	struct client_opts opts = {.name = name};
	struct session s;
	handshake(f, ctx, &opts, &s);
	int ok = s.server_ok;
	session_end(&s);
	return ok;
}

/* The verification result the server saw for the client certificate. */
static long verify_result(const struct fixture *f, SSL_CTX *ctx, const char *name)
{
	struct client_opts opts = {.name = name};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_false(s.server_ok);
	long result = SSL_get_verify_result(s.server);
	session_end(&s);
	return result;
}

/* ---- identity ---- */

static void test_vehicle_certificate_yields_its_vin_and_home(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = VIN_CN, .verify_server = 1};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_true(s.server_ok);
	struct tls_identity id;
	char err[256];
	assert_int_equal(tls_peer_identity(s.server, &id, err, sizeof err), DM_OK);
	assert_string_equal(id.vin, VIN_CN);
	assert_string_equal(id.home, "CN");
	/* TLS 1.3 by default, and never less than 1.2. */
	assert_int_equal(SSL_version(s.server), TLS1_3_VERSION);
	session_end(&s);
	SSL_CTX_free(ctx);
}

static void test_foreign_vehicle_certificate_yields_its_own_home(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->de, VIN_DE);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = VIN_DE};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_true(s.server_ok);
	struct tls_identity id;
	assert_int_equal(tls_peer_identity(s.server, &id, NULL, 0), DM_OK);
	assert_string_equal(id.vin, VIN_DE);
	assert_string_equal(id.home, "DE");
	session_end(&s);
	SSL_CTX_free(ctx);
}

static void test_certificate_whose_c_is_not_its_cas_yields_no_identity(void **state)
{
	struct fixture *f = *state;
	/* The DE CA vouching for a "CN" car: the chain verifies, the claim
	 * does not stand. */
	struct forged spec = {VIN_CN, "CN", -1, DAYS};
	forge(f, f->de, "mismatch", &spec);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = "mismatch"};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_true(s.server_ok);
	struct tls_identity id;
	char err[256];
	assert_int_equal(tls_peer_identity(s.server, &id, err, sizeof err), DM_ERR_DENIED);
	assert_string_equal(id.vin, "");
	assert_string_equal(id.home, "");
	assert_non_null(strstr(err, "names home CN but was issued by the CA of DE"));
	assert_null(strstr(err, VIN_CN));
	session_end(&s);
	SSL_CTX_free(ctx);
}

static void test_certificate_whose_cn_is_not_a_vin_yields_no_identity(void **state)
{
	struct fixture *f = *state;
	struct forged spec = {"LSVAU218XN2183295" /* wrong check digit */, "CN", -1, DAYS};
	forge(f, f->cn, "badvin", &spec);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = "badvin"};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_true(s.server_ok);
	struct tls_identity id;
	char err[256];
	assert_int_equal(tls_peer_identity(s.server, &id, err, sizeof err), DM_ERR_INVALID);
	assert_non_null(strstr(err, "not a valid VIN"));
	session_end(&s);
	SSL_CTX_free(ctx);
}

static void test_identity_of_a_session_without_certificate_is_refused(void **state)
{
	struct fixture *f = *state;
	SSL_CTX *ctx = NULL;
	assert_int_equal(
	    tls_server_ctx_new(f->server_crt, f->server_key, NULL, NULL, 0, &ctx, NULL, 0), DM_OK);
	struct client_opts opts = {0};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_true(s.server_ok); /* the API's context asks for no certificate */
	struct tls_identity id;
	assert_int_equal(tls_peer_identity(s.server, &id, NULL, 0), DM_ERR_AUTH);
	session_end(&s);
	SSL_CTX_free(ctx);
}

/* ---- certificates that fail the handshake ---- */

static void test_no_client_certificate_fails_the_handshake(void **state)
{
	struct fixture *f = *state;
	SSL_CTX *ctx = server_ctx(f);
	assert_false(accepts(f, ctx, NULL));
	SSL_CTX_free(ctx);
}

static void test_certificate_of_an_untrusted_ca_fails_the_handshake(void **state)
{
	struct fixture *f = *state;
	/* Same name, same C as the CN CA: only the key tells them apart. */
	issue_vehicle(f, f->rogue, VIN_CN);
	SSL_CTX *ctx = server_ctx(f);
	long result = verify_result(f, ctx, VIN_CN);
	assert_true(result == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	            result == X509_V_ERR_CERT_SIGNATURE_FAILURE);
	SSL_CTX_free(ctx);
}

static void test_expired_certificate_fails_the_handshake(void **state)
{
	struct fixture *f = *state;
	struct forged spec = {VIN_CN, "CN", -10, -1};
	forge(f, f->cn, "expired", &spec);
	SSL_CTX *ctx = server_ctx(f);
	assert_int_equal(verify_result(f, ctx, "expired"), X509_V_ERR_CERT_HAS_EXPIRED);
	SSL_CTX_free(ctx);
}

static void test_not_yet_valid_certificate_fails_the_handshake(void **state)
{
	struct fixture *f = *state;
	struct forged spec = {VIN_CN, "CN", 1, 10};
	forge(f, f->cn, "future", &spec);
	SSL_CTX *ctx = server_ctx(f);
	assert_int_equal(verify_result(f, ctx, "future"), X509_V_ERR_CERT_NOT_YET_VALID);
	SSL_CTX_free(ctx);
}

static void test_site_certificate_cannot_pose_as_a_vehicle(void **state)
{
	struct fixture *f = *state;
	SSL_CTX *ctx = server_ctx(f);
	/* serverAuth only: not for a client. */
	assert_int_equal(verify_result(f, ctx, "cn-test-1"), X509_V_ERR_INVALID_PURPOSE);
	SSL_CTX_free(ctx);
}

static void test_revocation_takes_effect_at_reload_and_not_before(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	issue_vehicle(f, f->cn, VIN_CN2);
	SSL_CTX *ctx = server_ctx(f);
	assert_true(accepts(f, ctx, VIN_CN));

	char err[512], path[PATH_MAX];
	join(path, f->out, VIN_CN ".crt");
	assert_int_equal(pki_revoke(f->cn, path, err, sizeof err), DM_OK);
	publish_crl(f, f->cn, "CN");
	/* The context reads its CRLs when built or reloaded, not per handshake. */
	assert_true(accepts(f, ctx, VIN_CN));
	assert_int_equal(tls_reload_trust(ctx, f->trust, TRUSTED, 2, err, sizeof err), DM_OK);
	assert_int_equal(verify_result(f, ctx, VIN_CN), X509_V_ERR_CERT_REVOKED);
	assert_true(accepts(f, ctx, VIN_CN2));
	SSL_CTX_free(ctx);

	/* A context built afresh sees the revocation too. */
	ctx = server_ctx(f);
	assert_int_equal(verify_result(f, ctx, VIN_CN), X509_V_ERR_CERT_REVOKED);
	SSL_CTX_free(ctx);
}

static void test_failed_reload_keeps_the_trust_in_force(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	SSL_CTX *ctx = server_ctx(f);
	char err[512], path[PATH_MAX];
	join(path, f->out, VIN_CN ".crt");
	assert_int_equal(pki_revoke(f->cn, path, err, sizeof err), DM_OK);
	assert_int_equal(tls_reload_trust(ctx, f->trust, TRUSTED, 2, err, sizeof err), DM_OK);
	assert_true(accepts(f, ctx, VIN_CN)); /* the new CRL was not published yet */

	publish_crl(f, f->cn, "CN");
	remove_in(f->trust, "DE.crl");
	assert_int_equal(tls_reload_trust(ctx, f->trust, TRUSTED, 2, err, sizeof err),
	                 DM_ERR_NOT_FOUND);
	assert_non_null(strstr(err, "DE.crl"));
	/* Nothing of the failed reload applies, not even CN's new CRL. */
	assert_true(accepts(f, ctx, VIN_CN));
	SSL_CTX_free(ctx);
}

/* ---- the trust directory ---- */

static void expect_ctx_error(const struct fixture *f, int status, const char *needle)
{
	SSL_CTX *ctx = (SSL_CTX *)1;
	char err[512] = "";
	assert_int_equal(tls_server_ctx_new(f->server_crt, f->server_key, f->trust, TRUSTED, 2,
	                                    &ctx, err, sizeof err),
	                 status);
	assert_null(ctx);
	if (!strstr(err, needle))
		print_error("'%s' not in '%s'\n", needle, err);
	assert_non_null(strstr(err, needle));
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_missing_ca_certificate_of_a_trusted_jurisdiction_stops_start_up(void **state)
{
	struct fixture *f = *state;
	remove_in(f->trust, "DE.crt");
	expect_ctx_error(f, DM_ERR_NOT_FOUND, "/DE.crt: cannot open");
}

static void test_missing_crl_stops_start_up(void **state)
{
	struct fixture *f = *state;
	remove_in(f->trust, "CN.crl");
	expect_ctx_error(f, DM_ERR_NOT_FOUND, "/CN.crl: cannot open");
}

static void test_ca_file_of_another_jurisdiction_stops_start_up(void **state)
{
	struct fixture *f = *state;
	copy_file(f->de, "ca.crt", f->trust, "CN.crt");
	copy_file(f->de, "ca.crl", f->trust, "CN.crl");
	expect_ctx_error(f, DM_ERR_INVALID, "subject C is 'DE', not CN");
}

static void test_crl_of_another_ca_stops_start_up(void **state)
{
	struct fixture *f = *state;
	copy_file(f->rogue, "ca.crl", f->trust, "CN.crl");
	expect_ctx_error(f, DM_ERR_INVALID, "CN.crl: not signed by");
}

static void test_vehicle_certificate_as_ca_file_stops_start_up(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	copy_file(f->out, VIN_CN ".crt", f->trust, "CN.crt");
	expect_ctx_error(f, DM_ERR_INVALID, "not a CA certificate");
}

static void test_key_that_does_not_match_the_certificate_stops_start_up(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	char key[PATH_MAX], err[512];
	join(key, f->out, VIN_CN ".key");
	SSL_CTX *ctx = NULL;
	int rc = tls_server_ctx_new(f->server_crt, key, NULL, NULL, 0, &ctx, err, sizeof err);
	assert_true(rc == DM_ERR_INVALID || rc == DM_ERR_MALFORMED);
	assert_null(ctx);
	assert_non_null(strstr(err, VIN_CN ".key"));
}

static void test_bad_jurisdiction_codes_are_refused(void **state)
{
	struct fixture *f = *state;
	const char *const bad[] = {"cn"};
	SSL_CTX *ctx = NULL;
	assert_int_equal(
	    tls_server_ctx_new(f->server_crt, f->server_key, f->trust, bad, 1, &ctx, NULL, 0),
	    DM_ERR_INVALID);
	assert_int_equal(
	    tls_server_ctx_new(f->server_crt, f->server_key, f->trust, TRUSTED, 0, &ctx, NULL, 0),
	    DM_ERR_INVALID);
	assert_null(ctx);
	/* Repeats are fine: a topology lists a jurisdiction once per site. */
	const char *const repeated[] = {"CN", "DE", "CN"};
	assert_int_equal(
	    tls_server_ctx_new(f->server_crt, f->server_key, f->trust, repeated, 3, &ctx, NULL, 0),
	    DM_OK);
	SSL_CTX_free(ctx);
}

static void test_jurisdiction_not_trusted_is_refused_even_with_its_files_present(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->de, VIN_DE);
	const char *const only_cn[] = {"CN"};
	SSL_CTX *ctx = NULL;
	assert_int_equal(
	    tls_server_ctx_new(f->server_crt, f->server_key, f->trust, only_cn, 1, &ctx, NULL, 0),
	    DM_OK);
	assert_int_equal(verify_result(f, ctx, VIN_DE),
	                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	SSL_CTX_free(ctx);
}

/* ---- protocol ---- */

static void test_tls_1_1_is_refused(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = VIN_CN, .max_version = TLS1_1_VERSION};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_false(s.server_ok);
	session_end(&s);
	SSL_CTX_free(ctx);
}

static void test_tls_1_2_takes_ecdhe_aead_only(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = VIN_CN,
	                           .max_version = TLS1_2_VERSION,
	                           .cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256"};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_true(s.server_ok);
	assert_int_equal(SSL_version(s.server), TLS1_2_VERSION);
	struct tls_identity id;
	assert_int_equal(tls_peer_identity(s.server, &id, NULL, 0), DM_OK);
	assert_string_equal(id.vin, VIN_CN);
	session_end(&s);

	const char *refused[] = {"ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA",
	                         "AES128-GCM-SHA256"};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		opts.cipher_list = refused[i];
		handshake(f, ctx, &opts, &s);
		assert_false(s.server_ok);
		session_end(&s);
	}
	SSL_CTX_free(ctx);
}

static void test_no_session_is_resumable_on_the_vehicle_context(void **state)
{
	struct fixture *f = *state;
	SSL_CTX *ctx = server_ctx(f);
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
	assert_int_equal(SSL_CTX_get_num_tickets(ctx), 0);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	SSL_CTX_free(ctx);
}

static void test_failure_reason_names_the_verification_error(void **state)
{
	struct fixture *f = *state;
	struct forged spec = {VIN_CN, "CN", -10, -1};
	forge(f, f->cn, "expired", &spec);
	SSL_CTX *ctx = server_ctx(f);
	struct client_opts opts = {.name = "expired"};
	struct session s;
	handshake(f, ctx, &opts, &s);
	assert_string_equal(tls_failure_reason(s.server, 0), "certificate has expired");
	session_end(&s);
	assert_non_null(tls_failure_reason(NULL, 0));
	SSL_CTX_free(ctx);
}

/* ---- MQTT over TLS: the server's listener ----
 *
 * A real mqtt_server on 127.0.0.1 with a TLS listener (and a plain one),
 * driven by a client in its own thread with blocking sockets, while this
 * thread runs the event loop. */

struct hook_log {
	atomic_int connects;
	char cert_vin[18];
	char cert_home[3];
	int saw_plain; /* a CONNECT without certificate identity */
};

static void hook_connect(void *arg, const struct mqtt_connect_info *info,
                         struct mqtt_connect_decision *decision)
{
	struct hook_log *log = arg;
	atomic_fetch_add(&log->connects, 1);
	if (info->cert_vin) {
		snprintf(log->cert_vin, sizeof log->cert_vin, "%s", info->cert_vin);
		snprintf(log->cert_home, sizeof log->cert_home, "%s", info->cert_home);
	} else {
		log->saw_plain = 1;
	}
	decision->reason = MQTT_RC_SUCCESS;
}

struct client_run {
	const struct fixture *f;
	int port;
	int tls;
	const char *cert; /* NULL: none */
	int silent;       /* connect and send nothing */
	int wait_for_end; /* after the CONNACK, read until the server ends it */
	/* results */
	unsigned char connack[4];
	int connack_len;
	int clean_end;         /* the server's close_notify arrived */
	double seconds_to_end; /* silent: until the server closed */
	atomic_int connacked;
	atomic_int done;
};

/* A blocking socket to 127.0.0.1:port, or -1. (No cmocka asserts in the
 * client's thread: they jump out of the test's own stack.) */
static int tcp_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
		close(fd);
		return -1;
	}
	struct timeval limit = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
	return fd;
}

/* An MQTT 3.1.1 CONNECT, client id VIN_CN, clean session, keep-alive 60. */
static const unsigned char CONNECT_PACKET[] = {
    0x10, 12 + 17, 0,   4,   'M', 'Q', 'T', 'T', 4,   0x02, 0,   60,  0,   17,  'L', 'S',
    'V',  'A',     'U', '2', '1', '8', 'X', 'N', '2', '1',  '8', '3', '2', '9', '4'};

static void *client_main(void *arg)
{
	struct client_run *run = arg;
	int fd = tcp_connect(run->port);
	if (fd < 0) {
		atomic_store(&run->connacked, 1);
		atomic_store(&run->done, 1);
		return NULL;
	}
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (run->silent) {
		char byte;
		while (read(fd, &byte, 1) > 0)
			;
		clock_gettime(CLOCK_MONOTONIC, &end);
		run->seconds_to_end =
		    (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
	} else if (!run->tls) {
		if (write(fd, CONNECT_PACKET, sizeof CONNECT_PACKET) ==
		    (ssize_t)sizeof CONNECT_PACKET) {
			ssize_t n = read(fd, run->connack, sizeof run->connack);
			run->connack_len = n > 0 ? (int)n : 0;
		}
	} else {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		if (run->cert) {
			char crt[PATH_MAX], key[PATH_MAX], base[64];
			snprintf(base, sizeof base, "%s.crt", run->cert);
			join(crt, run->f->out, base);
			snprintf(base, sizeof base, "%s.key", run->cert);
			join(key, run->f->out, base);
			SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM);
			SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
		}
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) == 1 &&
		    SSL_write(ssl, CONNECT_PACKET, sizeof CONNECT_PACKET) ==
		        (int)sizeof CONNECT_PACKET) {
			int n = SSL_read(ssl, run->connack, sizeof run->connack);
			run->connack_len = n > 0 ? n : 0;
		}
		atomic_store(&run->connacked, 1);
		if (run->connack_len > 0 && run->wait_for_end) {
			unsigned char more[64];
			int n = SSL_read(ssl, more, sizeof more);
			run->clean_end = n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
		}
		SSL_free(ssl);
		SSL_CTX_free(ctx);
		ERR_clear_error();
	}
	atomic_store(&run->connacked, 1);
	close(fd);
	atomic_store(&run->done, 1);
	return NULL;
}

/* Runs the loop in slices until *flag is set (or 10 s pass). */
static void pump_until(struct event_base *base, atomic_int *flag)
{
	for (int i = 0; i < 1000 && !atomic_load(flag); i++) {
		struct timeval slice = {0, 10000};
		event_base_loopexit(base, &slice);
		event_base_dispatch(base);
	}
	assert_true(atomic_load(flag));
}

static void run_client(struct event_base *base, struct client_run *run)
{
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, client_main, run), 0);
	pump_until(base, &run->done);
	pthread_join(thread, NULL);
}

struct mqtt_rig {
	struct event_base *base;
	struct mqtt_server *server;
	SSL_CTX *ctx;
	struct hook_log log;
};

static void rig_start(struct fixture *f, struct mqtt_rig *rig, unsigned connect_timeout_s)
{
	memset(rig, 0, sizeof *rig);
	rig->base = event_base_new();
	assert_non_null(rig->base);
	struct mqtt_server_options options = {.connect_timeout_s = connect_timeout_s};
	struct mqtt_server_hooks hooks = {.arg = &rig->log, .on_connect = hook_connect};
	assert_int_equal(mqtt_server_new(rig->base, &options, &hooks, &rig->server), DM_OK);
	rig->ctx = server_ctx(f);
	assert_int_equal(mqtt_server_listen_tls(rig->server, "127.0.0.1:0", rig->ctx), DM_OK);
	assert_int_equal(mqtt_server_listen(rig->server, "127.0.0.1:0"), DM_OK);
	/* The server keeps its own reference: ours may go at once. */
	SSL_CTX_free(rig->ctx);
	assert_true(mqtt_server_tls_port(rig->server) > 0);
	assert_true(mqtt_server_port(rig->server) != mqtt_server_tls_port(rig->server));
}

static void rig_stop(struct mqtt_rig *rig)
{
	mqtt_server_free(rig->server);
	event_base_free(rig->base);
}

static void test_mqtt_over_tls_hands_the_certificate_identity_to_on_connect(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	struct mqtt_rig rig;
	rig_start(f, &rig, 0);
	struct client_run run = {
	    .f = f, .port = mqtt_server_tls_port(rig.server), .tls = 1, .cert = VIN_CN};
	run_client(rig.base, &run);
	assert_int_equal(run.connack_len, 4);
	assert_memory_equal(run.connack, "\x20\x02\x00\x00", 4);
	assert_int_equal(atomic_load(&rig.log.connects), 1);
	assert_string_equal(rig.log.cert_vin, VIN_CN);
	assert_string_equal(rig.log.cert_home, "CN");
	assert_false(rig.log.saw_plain);

	/* The plain listener beside it: no certificate, no identity. */
	struct client_run plain = {.f = f, .port = mqtt_server_port(rig.server)};
	run_client(rig.base, &plain);
	assert_int_equal(plain.connack_len, 4);
	assert_true(rig.log.saw_plain);
	rig_stop(&rig);
}

static void test_mqtt_over_tls_refuses_a_revoked_certificate_before_on_connect(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	char err[512], path[PATH_MAX];
	join(path, f->out, VIN_CN ".crt");
	assert_int_equal(pki_revoke(f->cn, path, err, sizeof err), DM_OK);
	publish_crl(f, f->cn, "CN");
	struct mqtt_rig rig;
	rig_start(f, &rig, 0);
	struct client_run run = {
	    .f = f, .port = mqtt_server_tls_port(rig.server), .tls = 1, .cert = VIN_CN};
	run_client(rig.base, &run);
	assert_int_equal(run.connack_len, 0);
	assert_int_equal(atomic_load(&rig.log.connects), 0);
	struct mqtt_server_stats stats;
	/* The server may see the failure after the client gave up: pump a little. */
	for (int i = 0; i < 100; i++) {
		mqtt_server_stats(rig.server, &stats);
		if (stats.tls_handshake_failures == 1 && stats.connections_open == 0)
			break;
		struct timeval slice = {0, 10000};
		event_base_loopexit(rig.base, &slice);
		event_base_dispatch(rig.base);
	}
	assert_int_equal(stats.tls_handshake_failures, 1);
	assert_int_equal(stats.connections_open, 0);
	rig_stop(&rig);
}

static void test_mqtt_tls_handshake_is_bounded_by_the_connect_timeout(void **state)
{
	struct fixture *f = *state;
	struct mqtt_rig rig;
	rig_start(f, &rig, 1);
	struct client_run run = {.f = f, .port = mqtt_server_tls_port(rig.server), .silent = 1};
	run_client(rig.base, &run);
	assert_true(run.seconds_to_end >= 0.9);
	assert_true(run.seconds_to_end < 4.0);
	struct mqtt_server_stats stats;
	mqtt_server_stats(rig.server, &stats);
	assert_int_equal(stats.tls_handshake_failures, 1);
	assert_int_equal(stats.connections_open, 0);
	rig_stop(&rig);
}

static void test_mqtt_tls_session_ends_with_close_notify_at_shutdown(void **state)
{
	struct fixture *f = *state;
	issue_vehicle(f, f->cn, VIN_CN);
	struct mqtt_rig rig;
	rig_start(f, &rig, 0);
	struct client_run run = {.f = f,
	                         .port = mqtt_server_tls_port(rig.server),
	                         .tls = 1,
	                         .cert = VIN_CN,
	                         .wait_for_end = 1};
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, client_main, &run), 0);
	pump_until(rig.base, &run.connacked);
	/* Let the CONNACK's bytes leave before the end. */
	struct timeval slice = {0, 50000};
	event_base_loopexit(rig.base, &slice);
	event_base_dispatch(rig.base);
	mqtt_server_free(rig.server);
	pthread_join(thread, NULL);
	assert_int_equal(run.connack_len, 4);
	assert_true(run.clean_end);
	event_base_free(rig.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define CASE(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    CASE(test_vehicle_certificate_yields_its_vin_and_home),
	    CASE(test_foreign_vehicle_certificate_yields_its_own_home),
	    CASE(test_certificate_whose_c_is_not_its_cas_yields_no_identity),
	    CASE(test_certificate_whose_cn_is_not_a_vin_yields_no_identity),
	    CASE(test_identity_of_a_session_without_certificate_is_refused),
	    CASE(test_no_client_certificate_fails_the_handshake),
	    CASE(test_certificate_of_an_untrusted_ca_fails_the_handshake),
	    CASE(test_expired_certificate_fails_the_handshake),
	    CASE(test_not_yet_valid_certificate_fails_the_handshake),
	    CASE(test_site_certificate_cannot_pose_as_a_vehicle),
	    CASE(test_revocation_takes_effect_at_reload_and_not_before),
	    CASE(test_failed_reload_keeps_the_trust_in_force),
	    CASE(test_missing_ca_certificate_of_a_trusted_jurisdiction_stops_start_up),
	    CASE(test_missing_crl_stops_start_up),
	    CASE(test_ca_file_of_another_jurisdiction_stops_start_up),
	    CASE(test_crl_of_another_ca_stops_start_up),
	    CASE(test_vehicle_certificate_as_ca_file_stops_start_up),
	    CASE(test_key_that_does_not_match_the_certificate_stops_start_up),
	    CASE(test_bad_jurisdiction_codes_are_refused),
	    CASE(test_jurisdiction_not_trusted_is_refused_even_with_its_files_present),
	    CASE(test_tls_1_1_is_refused),
	    CASE(test_tls_1_2_takes_ecdhe_aead_only),
	    CASE(test_no_session_is_resumable_on_the_vehicle_context),
	    CASE(test_failure_reason_names_the_verification_error),
	    CASE(test_mqtt_over_tls_hands_the_certificate_identity_to_on_connect),
	    CASE(test_mqtt_over_tls_refuses_a_revoked_certificate_before_on_connect),
	    CASE(test_mqtt_tls_handshake_is_bounded_by_the_connect_timeout),
	    CASE(test_mqtt_tls_session_ends_with_close_notify_at_shutdown),
#undef CASE
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
