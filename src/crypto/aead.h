/*
 * aead.h — AES-256-GCM sealing and opening, and nonces that never repeat.
 *
 * Everything at rest is sealed with AES-256-GCM: a 32-byte key, a 12-byte
 * nonce, associated data (bound by the tag but not encrypted) and a 16-byte
 * tag. GCM's one fatal misuse is a nonce used twice under one key, which
 * leaks the XOR of two plaintexts and lets anyone forge tags; a nonce source
 * (below) is the only way nonces for long-lived keys should be made.
 *
 * Nothing here allocates; every output goes to a buffer of the caller's.
 * Ciphertext has exactly the length of the plaintext.
 */
#ifndef DM_AEAD_H
#define DM_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_LEN 32
#define AEAD_NONCE_LEN 12
#define AEAD_TAG_LEN 16

/* Encrypts plain[0..len) into out[0..len) under key and nonce, binding
 * ad[0..ad_len) (ad may be NULL when ad_len is 0), and writes the tag.
 * out may equal plain (in place), but may not overlap it otherwise.
 * Returns DM_OK; DM_ERR_INVALID when len or ad_len exceed INT_MAX or a
 * pointer is NULL where bytes are due; DM_ERR_CRYPTO when OpenSSL fails.
 * On failure out[0..len) and tag are zeroed. */
int aead_seal(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN], const void *ad,
              size_t ad_len, const void *plain, size_t len, uint8_t *out,
              uint8_t tag[AEAD_TAG_LEN]);

/* Checks tag and decrypts cipher[0..len) into out[0..len); the same rules on
 * ad and in-place use as aead_seal. Returns DM_OK; DM_ERR_CRYPTO when the tag
 * does not match (wrong key, nonce, AD, or any flipped bit) or OpenSSL
 * fails; DM_ERR_INVALID as for aead_seal. On failure out[0..len) is zeroed:
 * unauthenticated plaintext never reaches the caller. */
int aead_open(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN], const void *ad,
              size_t ad_len, const void *cipher, size_t len, const uint8_t tag[AEAD_TAG_LEN],
              uint8_t *out);

/*
 * A nonce source: nonce = prefix (4 bytes) || counter (8 bytes, big-endian).
 *
 * Why not 96 random bits per message: that is safe only while one key seals
 * fewer than about 2^32 messages (NIST SP 800-38D, 8.3), and a per-vehicle
 * key lives for years. Why not a bare counter: the counter would have to be
 * made durable before every seal, or a crash would reuse it.
 *
 * So one source serves one key-use session (one process holding the key):
 *  1. Within a session the counter only increases, so no nonce repeats; the
 *     source refuses (DM_ERR_STATE, for good) rather than wrap.
 *  2. Across sessions, the prefix is 32 random bits and the counter starts at
 *     a random 63-bit value. Two sessions collide only if their prefixes are
 *     equal (2^-32) and their counter ranges overlap (about (a + b) / 2^63 for
 *     sessions of a and b messages): under 2^-70 per pair of sessions of a
 *     billion messages each. (Starting every counter at 0 would leave only
 *     the prefix: a 2^-32 chance per pair, too much for a key reloaded at
 *     every restart of every node for years.)
 *  3. The top bit of the starting counter is clear, so a session has at
 *     least 2^63 nonces before it refuses.
 *
 * Fields are the source's own; use only the functions below. A source lives
 * wherever its owner puts it and needs no freeing. Two sources over one key
 * are two sessions (2. above), so load each key once per process anyway.
 */
struct aead_nonce_source {
	uint8_t prefix[4];
	uint64_t next; /* the counter of the next nonce */
	int exhausted; /* the counter reached its end; the source refuses */
};

/* Starts a session: a fresh random prefix and starting counter. Returns DM_OK
 * or DM_ERR_CRYPTO (random generator failed; *src is then exhausted). */
int aead_nonce_source_init(struct aead_nonce_source *src);

/* Writes the next nonce. Returns DM_OK, or DM_ERR_STATE (nonce zeroed) once
 * the counter would wrap: the caller needs a new session, which for a
 * stored key means a new source. The counter value UINT64_MAX is never used. */
int aead_nonce_next(struct aead_nonce_source *src, uint8_t nonce[AEAD_NONCE_LEN]);

/* Tests only: sets the counter of the next nonce, so wrap-around can be
 * reached without 2^63 draws. */
void aead_nonce_source_set_counter(struct aead_nonce_source *src, uint64_t next);

#endif
