/*
 * tls.c — server contexts and client-certificate identity (tls.h).
 *
 * Files read (see tls.h): the site's certificate chain and key (PEM), and in
 * the vehicle CA directory CC.crt and CC.crl per trusted jurisdiction.
 *
 * Invariants:
 *  1. A context never accepts less than TLS 1.2, and under TLS 1.2 only the
 *     ECDHE AEAD suites of TLS12_CIPHERS.
 *  2. The MQTT context verifies every client certificate with CRL checking
 *     (X509_V_FLAG_CRL_CHECK, set on the store and on the context's
 *     parameters) against a store in which every CA has its CRL: a store is
 *     built whole or not at all.
 *  3. CC.crt is accepted only as a CA certificate whose subject C is CC, and
 *     CC.crl only when that CA signed it: the file name, the anchor's C and
 *     the vehicle certificate's C must all agree before a vehicle's home is
 *     believed (the last check is tls_peer_identity's).
 *  4. A reload replaces the verify store with SSL_CTX_set1_verify_cert_store,
 *     which is reference counted: a handshake in progress keeps the store it
 *     started with.
 *  5. Every OpenSSL object is freed on every path, and OpenSSL's error queue
 *     is left empty after a failure here.
 */
#include "crypto/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "crypto/pki.h"
#include "crypto/fail.h"
#include "util/err.h"
#include "util/vin.h"
#include "util/log.h"

#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                               \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
#define TLS13_SUITES "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
#define GROUPS "X25519:P-256:P-384"
/* Vehicle certificates are issued by their jurisdiction's CA directly: the
 * chain is the leaf and the anchor, nothing between. OpenSSL's depth counts
 * the untrusted CA certificates a chain may hold, so 0. */
#define VERIFY_DEPTH 0
#define SESSION_CONTEXT "domicile"
#define WHY_MAX 256

/* ---- the trust store --------------------------------------------------------------------- */

/* Opens dir/CC.ext for reading; the message says whose file it is. */
static FILE *open_trust_file(const char *dir, const char *code, const char *ext, char *path,
                             size_t path_len, int *status, char *err, size_t err_len)
{
	int n = snprintf(path, path_len, "%s/%s.%s", dir, code, ext);
	if (n < 0 || (size_t)n >= path_len) {
		*status =
		    crypto_fail(err, err_len, DM_ERR_INVALID, "%s/%s.%s: path too long", dir, code, ext);
		return NULL;
	}
	FILE *f = fopen(path, "r");
	if (f == NULL)
		*status = crypto_fail(err, err_len, errno == ENOENT ? DM_ERR_NOT_FOUND : DM_ERR_IO,
		               "%s: cannot open: %s (the %s of the vehicle CA of %s, a "
		               "jurisdiction this node trusts)",
		               path, strerror(errno),
		               strcmp(ext, "crt") == 0 ? "certificate" : "CRL", code);
	return f;
}

/* Reads dir/CC.crt and checks invariant 3 for it. */
static int load_ca(const char *dir, const char *code, X509 **out, char *err, size_t err_len)
{
	*out = NULL;
	char path[PATH_MAX];
	int status = DM_OK;
	FILE *f = open_trust_file(dir, code, "crt", path, sizeof path, &status, err, err_len);
	if (f == NULL)
		return status;
	X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (ca == NULL) {
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "%s: not a PEM certificate", path);
		return crypto_ssl_fail(err, err_len, DM_ERR_MALFORMED, what);
	}
	char country[3];
	if (X509_check_ca(ca) < 1) {
		status = crypto_fail(err, err_len, DM_ERR_INVALID, "%s: not a CA certificate", path);
	} else if (pki_x509_jurisdiction(ca, country) != DM_OK || strcmp(country, code) != 0) {
		status = crypto_fail(err, err_len, DM_ERR_INVALID,
		              "%s: the CA's subject C is '%s', not %s: a CA may vouch only for "
		              "its own jurisdiction's vehicles",
		              path, country, code);
	} else if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0) {
		dm_warn("tls: %s: the vehicle CA of %s has expired: its vehicles will be refused",
		        path, code);
	}
	ERR_clear_error();
	if (status != DM_OK) {
		X509_free(ca);
		return status;
	}
	*out = ca;
	return DM_OK;
}

/* Reads dir/CC.crl and checks that ca signed it. */
static int load_crl(const char *dir, const char *code, X509 *ca, X509_CRL **out, char *err,
                    size_t err_len)
{
	*out = NULL;
	char path[PATH_MAX];
	int status = DM_OK;
	FILE *f = open_trust_file(dir, code, "crl", path, sizeof path, &status, err, err_len);
	if (f == NULL)
		return status;
	X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (crl == NULL) {
		char what[PATH_MAX + 64];
		snprintf(what, sizeof what, "%s: not a PEM CRL", path);
		return crypto_ssl_fail(err, err_len, DM_ERR_MALFORMED, what);
	}
	EVP_PKEY *key = X509_get0_pubkey(ca);
	if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0 ||
	    key == NULL || X509_CRL_verify(crl, key) != 1) {
		ERR_clear_error();
		X509_CRL_free(crl);
		return crypto_fail(err, err_len, DM_ERR_INVALID, "%s: not signed by %s/%s.crt", path, dir,
		            code);
	}
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	int days = 0, secs = 0;
	if (next != NULL && X509_cmp_current_time(next) <= 0)
		dm_warn("tls: %s: past its nextUpdate: vehicles of %s will be refused until a "
		        "fresh CRL is installed (domicile pki crl issues one; then SIGHUP)",
		        path, code);
	else if (next != NULL && ASN1_TIME_diff(&days, &secs, NULL, next) == 1 && days < 2)
		dm_warn("tls: %s expires in %d h: issue a fresh one (domicile pki crl) and send "
		        "SIGHUP, or vehicles of %s will be refused",
		        path, days * 24 + secs / 3600, code);
	ERR_clear_error();
	*out = crl;
	return DM_OK;
}

/* Builds the store of invariant 2, whole or not at all. */
static int trust_load(const char *dir, const char *const *codes, size_t count, X509_STORE **out,
                      char *err, size_t err_len)
{
	*out = NULL;
	if (dir == NULL || codes == NULL || count == 0 || count > TLS_TRUST_MAX)
		return crypto_fail(err, err_len, DM_ERR_INVALID,
		            "a vehicle CA directory and 1..%d jurisdictions are needed",
		            TLS_TRUST_MAX);
	for (size_t i = 0; i < count; i++)
		if (!jurisdiction_code_valid(codes[i]))
			return crypto_fail(err, err_len, DM_ERR_INVALID,
			            "jurisdiction '%.8s' is not two upper-case letters",
			            codes[i] ? codes[i] : "(null)");
	X509_STORE *store = X509_STORE_new();
	if (store == NULL)
		return crypto_ssl_fail(err, err_len, DM_ERR_NOMEM, "trust store");
	int status = DM_OK;
	for (size_t i = 0; i < count && status == DM_OK; i++) {
		int seen = 0;
		for (size_t j = 0; j < i; j++)
			seen |= strcmp(codes[i], codes[j]) == 0;
		if (seen)
			continue;
		X509 *ca = NULL;
		X509_CRL *crl = NULL;
		status = load_ca(dir, codes[i], &ca, err, err_len);
		if (status == DM_OK)
			status = load_crl(dir, codes[i], ca, &crl, err, err_len);
		if (status == DM_OK &&
		    (X509_STORE_add_cert(store, ca) != 1 || X509_STORE_add_crl(store, crl) != 1))
			status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, dir);
		X509_CRL_free(crl);
		X509_free(ca);
	}
	if (status == DM_OK && (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK) != 1 ||
	                        X509_STORE_set_depth(store, VERIFY_DEPTH) != 1))
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "trust store");
	if (status != DM_OK) {
		X509_STORE_free(store);
		return status;
	}
	*out = store;
	return DM_OK;
}

/* ---- contexts ---------------------------------------------------------------------------- */

static int configure_protocol(SSL_CTX *ctx, char *err, size_t err_len)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, GROUPS) != 1 ||
	    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_CONTEXT,
	                                   sizeof SESSION_CONTEXT - 1) != 1)
		return crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "TLS parameters");
	return DM_OK;
}

static int load_identity(SSL_CTX *ctx, const char *cert_path, const char *key_path, char *err,
                         size_t err_len)
{
	char what[PATH_MAX + 64];
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		snprintf(what, sizeof what, "%s: cannot load the certificate chain", cert_path);
		return crypto_ssl_fail(err, err_len,
		                ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_SYS_LIB
		                    ? DM_ERR_NOT_FOUND
		                    : DM_ERR_MALFORMED,
		                what);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		snprintf(what, sizeof what, "%s: cannot load the private key", key_path);
		return crypto_ssl_fail(err, err_len,
		                ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_SYS_LIB
		                    ? DM_ERR_NOT_FOUND
		                    : DM_ERR_MALFORMED,
		                what);
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof what, "%s: does not match %s", key_path, cert_path);
		return crypto_ssl_fail(err, err_len, DM_ERR_INVALID, what);
	}
	return DM_OK;
}

/* Client certificates required and verified against store (invariant 2);
 * no resumption (tls.h says why). Takes a reference to store. */
static int require_client_certs(SSL_CTX *ctx, X509_STORE *store, char *err, size_t err_len)
{
	if (SSL_CTX_set1_verify_cert_store(ctx, store) != 1 ||
	    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK) != 1 ||
	    SSL_CTX_set_num_tickets(ctx, 0) != 1)
		return crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "client verification");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return DM_OK;
}

int tls_server_ctx_new(const char *cert_path, const char *key_path, const char *ca_dir,
                       const char *const *codes, size_t count, SSL_CTX **out, char *err,
                       size_t err_len)
{
	*out = NULL;
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (cert_path == NULL || key_path == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "a certificate and a key are needed");
	X509_STORE *store = NULL;
	int status = DM_OK;
	if (ca_dir != NULL && (status = trust_load(ca_dir, codes, count, &store, err, err_len)))
		return status;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		status = crypto_ssl_fail(err, err_len, DM_ERR_NOMEM, "TLS context");
	if (status == DM_OK)
		status = configure_protocol(ctx, err, err_len);
	if (status == DM_OK)
		status = load_identity(ctx, cert_path, key_path, err, err_len);
	if (status == DM_OK && store != NULL)
		status = require_client_certs(ctx, store, err, err_len);
	X509_STORE_free(store); /* the context holds its own reference */
	if (status != DM_OK) {
		SSL_CTX_free(ctx);
		return status;
	}
	*out = ctx;
	return DM_OK;
}

int tls_reload_trust(SSL_CTX *ctx, const char *ca_dir, const char *const *codes, size_t count,
                     char *err, size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (ctx == NULL)
		return crypto_fail(err, err_len, DM_ERR_INVALID, "no TLS context");
	X509_STORE *store = NULL;
	int status = trust_load(ca_dir, codes, count, &store, err, err_len);
	if (status != DM_OK)
		return status;
	if (SSL_CTX_set1_verify_cert_store(ctx, store) != 1)
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "trust store");
	X509_STORE_free(store);
	return status;
}

/* ---- identity ---------------------------------------------------------------------------- */

int tls_peer_identity(const SSL *ssl, struct tls_identity *out, char *err, size_t err_len)
{
	memset(out, 0, sizeof *out);
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	X509 *leaf = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	if (leaf == NULL)
		return crypto_fail(err, err_len, DM_ERR_AUTH, "no client certificate");
	long verified = SSL_get_verify_result(ssl);
	if (verified != X509_V_OK)
		return crypto_fail(err, err_len, DM_ERR_AUTH, "client certificate did not verify: %s",
		            X509_verify_cert_error_string(verified));
	STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
	int depth = chain != NULL ? sk_X509_num(chain) : 0;
	if (depth < 2)
		return crypto_fail(err, err_len, DM_ERR_AUTH, "client certificate has no verified chain");
	X509 *anchor = sk_X509_value(chain, depth - 1);
	char why[WHY_MAX];
	struct tls_identity found;
	int status = pki_x509_identity(leaf, found.vin, found.home, why, sizeof why);
	if (status != DM_OK)
		return crypto_fail(err, err_len, status, "client certificate: %s", why);
	char anchor_home[3];
	if (pki_x509_jurisdiction(anchor, anchor_home) != DM_OK ||
	    strcmp(anchor_home, found.home) != 0)
		return crypto_fail(err, err_len, DM_ERR_DENIED,
		            "client certificate names home %s but was issued by the CA of %s",
		            found.home, anchor_home[0] ? anchor_home : "no jurisdiction");
	*out = found;
	return DM_OK;
}

int tls_recheck_peer(SSL *ssl, char *err, size_t err_len)
{
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	X509 *leaf = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	if (leaf == NULL)
		return crypto_fail(err, err_len, DM_ERR_AUTH, "no client certificate");
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	X509_STORE *store = NULL;
	if (SSL_CTX_get0_verify_cert_store(ctx, &store) != 1 || store == NULL)
		return crypto_fail(err, err_len, DM_ERR_STATE, "the context has no vehicle trust store");
	X509_STORE_CTX *check = X509_STORE_CTX_new();
	/* The same rules as the handshake: the context's parameters (CRL check,
	 * depth) over the store now in force. On the server side the peer's
	 * chain holds only what it sent besides its own certificate. */
	int ok = check != NULL &&
	         X509_STORE_CTX_init(check, store, leaf, SSL_get_peer_cert_chain(ssl)) == 1 &&
	         X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(check), SSL_CTX_get0_param(ctx)) ==
	             1 &&
	         X509_STORE_CTX_set_purpose(check, X509_PURPOSE_SSL_CLIENT) == 1;
	int status = DM_OK;
	if (!ok)
		status = crypto_ssl_fail(err, err_len, DM_ERR_CRYPTO, "re-checking a client certificate");
	else if (X509_verify_cert(check) != 1)
		status = crypto_fail(err, err_len, DM_ERR_AUTH, "%s",
		              X509_verify_cert_error_string(X509_STORE_CTX_get_error(check)));
	X509_STORE_CTX_free(check);
	ERR_clear_error();
	return status;
}

const char *tls_failure_reason(const SSL *ssl, unsigned long openssl_error)
{
	/* The verification result is the more precise ("certificate revoked"
	 * rather than "certificate verify failed"). */
	long verified = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (verified != X509_V_OK)
		return X509_verify_cert_error_string(verified);
	if (openssl_error != 0) {
		const char *reason = ERR_reason_error_string(openssl_error);
		if (reason != NULL)
			return reason;
	}
	return "connection closed during the handshake";
}
