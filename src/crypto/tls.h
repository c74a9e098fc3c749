/*
 * tls.h — the node's TLS server contexts (OpenSSL 3) and the vehicle
 * identity read from a verified client certificate.
 *
 * Two kinds of context, both TLS 1.2 or 1.3 only, TLS 1.2 restricted to
 * ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), no
 * compression, no renegotiation:
 *   - for HTTPS (the API): the site's certificate, no client certificate;
 *   - for MQTT over TLS: the same, and a client certificate is required and
 *     verified against the vehicle CAs of a set of jurisdictions, with CRL
 *     checking. Expired, not yet valid, revoked and unknown-CA certificates
 *     fail the handshake. Session resumption is off on this context: a
 *     resumed session would skip the revocation check of a certificate
 *     revoked since, and would carry no verified chain to read the identity
 *     from.
 *
 * The trust of the MQTT context is a store built from a directory that
 * holds, for each trusted jurisdiction CC (ISO 3166 alpha-2), CC.crt (its
 * vehicle CA, a CA certificate whose subject C is CC) and CC.crl (that CA's
 * CRL, signed by it). Every file must be there: a missing certificate would
 * refuse that jurisdiction's vehicles, a missing CRL would let revoked ones
 * in. tls_reload_trust re-reads them (on SIGHUP) and swaps the store only
 * if everything loaded.
 *
 * Ownership: an SSL_CTX from tls_server_ctx_new is the caller's, released
 * with SSL_CTX_free (it is reference counted: a listener that keeps it takes
 * its own reference with SSL_CTX_up_ref). Contexts are used from the event
 * loop's thread only; tls_reload_trust must run there too.
 *
 * Errors: DM_OK or a negative DM_ERR_* with a message in err (truncated to
 * err_len; err may be NULL when err_len is 0) naming the file and, where
 * OpenSSL failed, OpenSSL's reason. Nothing is left half changed.
 */
#ifndef DM_TLS_H
#define DM_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* The most jurisdictions one trust store takes (the topology's). */
#define TLS_TRUST_MAX 256

/* A vehicle as its verified certificate names it. */
struct tls_identity {
	char vin[18]; /* subject CN, passes vin_check */
	char home[3]; /* subject C, equal to the C of the CA that verified it */
};

/* Builds a server context from cert_path (PEM, the site's certificate
 * followed by any intermediates) and key_path (PEM private key, checked
 * against the certificate). With ca_dir non-NULL, client certificates are
 * required and verified against the CAs of the count jurisdictions in codes
 * (two upper-case letters each; repeats are ignored; 1..TLS_TRUST_MAX), as
 * described at the top. *out is NULL on entry and on failure.
 * Returns DM_OK; DM_ERR_NOT_FOUND when a file is missing (named in err);
 * DM_ERR_MALFORMED when a file does not parse; DM_ERR_INVALID for a key
 * that does not match, a CA that is no CA or names another jurisdiction, a
 * CRL not signed by its CA, or bad arguments; DM_ERR_IO; DM_ERR_CRYPTO;
 * DM_ERR_NOMEM. */
int tls_server_ctx_new(const char *cert_path, const char *key_path, const char *ca_dir,
                       const char *const *codes, size_t count, SSL_CTX **out, char *err,
                       size_t err_len);

/* Re-reads the CAs and CRLs (arguments as for tls_server_ctx_new) into a
 * new store and makes it the one that verifies the next handshakes of ctx;
 * handshakes already done are not looked at again. On failure the old store
 * stays in force and err says why. Errors as tls_server_ctx_new. */
int tls_reload_trust(SSL_CTX *ctx, const char *ca_dir, const char *const *codes, size_t count,
                     char *err, size_t err_len);

/* The identity of the peer of ssl, a server session whose handshake is
 * complete: its certificate verified (SSL_get_verify_result X509_V_OK) up to
 * a trust anchor, its subject CN a VIN and its subject C the anchor's C (a
 * CA vouches only for its own jurisdiction's vehicles). *out is zeroed on
 * entry and on failure.
 * Returns DM_OK; DM_ERR_AUTH when there is no verified certificate;
 * DM_ERR_INVALID when its subject is not a vehicle's (no single CN that is
 * a VIN, no single C); DM_ERR_DENIED when its C is not its CA's. The message
 * names no VIN (it may be a foreign vehicle's). */
int tls_peer_identity(const SSL *ssl, struct tls_identity *out, char *err, size_t err_len);

/* A short description of why the TLS session ssl failed, for log lines: the
 * verification result when the peer's certificate did not verify, else the
 * reason of openssl_error (an ERR_get_error code, e.g. what
 * bufferevent_get_openssl_error returned; 0 for none). Static storage;
 * never NULL. */
const char *tls_failure_reason(const SSL *ssl, unsigned long openssl_error);

/* Verifies an established session's client certificate again, against the
 * trust store its context holds now (after tls_reload_trust), with the
 * handshake's rules. Returns DM_OK while it still verifies; DM_ERR_AUTH
 * with the reason in err once it does not (revoked since, CA withdrawn,
 * expired); DM_ERR_CRYPTO, DM_ERR_STATE. */
int tls_recheck_peer(SSL *ssl, char *err, size_t err_len);

#endif
