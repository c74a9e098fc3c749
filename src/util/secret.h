/*
 * secret.h — the shared secrets of vehicles and API tokens: made here,
 * stored only as salted hashes, checked in constant time.
 *
 * A secret is 256 bits from OpenSSL's random generator, written as
 * base64url without padding: 43 characters of [A-Za-z0-9_-], safe in MQTT
 * passwords, HTTP headers and URLs. The node hands it out once and keeps
 * only secret_hash's string:
 *
 *     sha256$<salt>$<hash>      e.g. sha256$AAECAwQFBgcICQoLDA0ODw$mC7A...StN0
 *
 * where salt is 128 random bits and hash is SHA-256(salt || secret), both
 * base64url without padding (22 and 43 characters; 73 in all). The tag
 * names the scheme so a later one can live beside it.
 *
 * Why a salted SHA-256 and not a slow KDF (scrypt, Argon2): slow KDFs exist
 * to make guessing human-chosen passwords expensive. These secrets are
 * chosen by the node, uniformly from 2^256 values; no amount of guessing
 * finds one, fast hash or not, so a slow KDF would add no security. It would
 * add cost where it hurts: after a node restart, 10,000 vehicles reconnect
 * at once, and at ~100 ms of CPU per check that is minutes of CPU before
 * the fleet is back. The salt still keeps equal secrets from having equal
 * hashes and rules out precomputed tables over a leaked table of hashes.
 *
 * Nothing here allocates; every output goes to a buffer of the caller's.
 */
#ifndef DM_SECRET_H
#define DM_SECRET_H

#include <stddef.h>

#define SECRET_LEN 43                      /* characters of a secret */
#define SECRET_BUF_SIZE (SECRET_LEN + 1)   /* with its NUL */
#define SECRET_HASH_LEN 73                 /* characters of a stored hash */
#define SECRET_HASH_BUF_SIZE (SECRET_HASH_LEN + 1)

/* Writes a new secret and its NUL to out. Returns DM_OK; DM_ERR_INVALID when
 * out_len < SECRET_BUF_SIZE; DM_ERR_CRYPTO when the random generator fails.
 * On failure out is "" (when out_len > 0). */
int secret_generate(char *out, size_t out_len);

/* Writes the stored form of secret[0..len) (any bytes, len >= 1) and its NUL
 * to out, with a fresh salt. Returns DM_OK; DM_ERR_INVALID when len is 0 or
 * out_len < SECRET_HASH_BUF_SIZE; DM_ERR_CRYPTO when OpenSSL fails. On
 * failure out is "" (when out_len > 0). */
int secret_hash(const char *secret, size_t len, char *out, size_t out_len);

/* Checks secret[0..len) against `stored` (a NUL-terminated secret_hash
 * string). The digests are compared in constant time. Returns DM_OK when it
 * matches; DM_ERR_AUTH when it does not (an empty secret never does);
 * DM_ERR_MALFORMED when stored is not a hash in the form above; DM_ERR_CRYPTO
 * when OpenSSL fails. Callers refuse on every non-zero result. */
int secret_verify(const char *secret, size_t len, const char *stored);

#endif
