/*
 * aead.c — AES-256-GCM through OpenSSL's EVP interface (aead.h has the
 * user's view), and the nonce source.
 *
 * Nonce layout (owned here):
 *
 *   offset  size  field
 *        0     4  prefix: random, fixed for one source (one key-use session)
 *        4     8  counter, big-endian; +1 per nonce
 *
 * Invariants:
 *  1. A source hands out each counter value at most once and never
 *     UINT64_MAX; once it would wrap, it stays exhausted.
 *  2. aead_open writes plaintext to the caller only after the tag checked;
 *     on any failure the whole output is zeroed with OPENSSL_cleanse, so a
 *     caller that ignores the status still sees no unauthenticated bytes.
 *  3. The EVP context is freed on every path; it holds the expanded key.
 */
#include "crypto/aead.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#include "util/err.h"

static void wipe(uint8_t *buf, size_t len)
{
	if (buf && len > 0)
		OPENSSL_cleanse(buf, len);
}

static int check_args(const void *ad, size_t ad_len, const void *in, size_t len, const void *out)
{
	if (len > INT_MAX || ad_len > INT_MAX)
		return DM_ERR_INVALID;
	if ((ad_len > 0 && !ad) || (len > 0 && (!in || !out)))
		return DM_ERR_INVALID;
	return DM_OK;
}

/* Runs the GCM pass both directions share: key and nonce in, AD, then the
 * data. encrypt is 1 to seal, 0 to open. */
/* The cipher, fetched from the provider once per process: passing
 * EVP_aes_256_gcm() makes OpenSSL 3 look it up again at every init, which
 * costs more than sealing a log record. Never freed (one per process). */
static EVP_CIPHER *gcm_cipher;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;

static void gcm_fetch(void) { gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL); }

static int gcm_start(EVP_CIPHER_CTX *ctx, int encrypt, const uint8_t *key, const uint8_t *nonce,
                     const void *ad, size_t ad_len)
{
	pthread_once(&gcm_once, gcm_fetch);
	if (!gcm_cipher)
		return DM_ERR_CRYPTO;
	if (EVP_CipherInit_ex2(ctx, gcm_cipher, NULL, NULL, encrypt, NULL) != 1)
		return DM_ERR_CRYPTO;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, AEAD_NONCE_LEN, NULL) != 1)
		return DM_ERR_CRYPTO;
	if (EVP_CipherInit_ex2(ctx, NULL, key, nonce, encrypt, NULL) != 1)
		return DM_ERR_CRYPTO;
	int outl = 0;
	if (ad_len > 0 && EVP_CipherUpdate(ctx, NULL, &outl, ad, (int)ad_len) != 1)
		return DM_ERR_CRYPTO;
	return DM_OK;
}

int aead_seal(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN], const void *ad,
              size_t ad_len, const void *plain, size_t len, uint8_t *out, uint8_t tag[AEAD_TAG_LEN])
{
	int rc = check_args(ad, ad_len, plain, len, out);
	if (rc == DM_OK && (!key || !nonce || !tag))
		rc = DM_ERR_INVALID;
	if (rc != DM_OK) {
		if (len <= INT_MAX)
			wipe(out, len);
		wipe(tag, AEAD_TAG_LEN);
		return rc;
	}
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	rc = ctx ? gcm_start(ctx, 1, key, nonce, ad, ad_len) : DM_ERR_CRYPTO;
	int outl = 0, finl = 0;
	if (rc == DM_OK && len > 0 &&
	    (EVP_EncryptUpdate(ctx, out, &outl, plain, (int)len) != 1 || (size_t)outl != len))
		rc = DM_ERR_CRYPTO;
	/* GCM is a stream mode: Final writes nothing, but computes the tag. */
	if (rc == DM_OK && EVP_EncryptFinal_ex(ctx, out ? out + outl : NULL, &finl) != 1)
		rc = DM_ERR_CRYPTO;
	if (rc == DM_OK && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, AEAD_TAG_LEN, tag) != 1)
		rc = DM_ERR_CRYPTO;
	EVP_CIPHER_CTX_free(ctx);
	if (rc != DM_OK) {
		wipe(out, len);
		wipe(tag, AEAD_TAG_LEN);
	}
	return rc;
}

int aead_open(const uint8_t key[AEAD_KEY_LEN], const uint8_t nonce[AEAD_NONCE_LEN], const void *ad,
              size_t ad_len, const void *cipher, size_t len, const uint8_t tag[AEAD_TAG_LEN],
              uint8_t *out)
{
	int rc = check_args(ad, ad_len, cipher, len, out);
	if (rc == DM_OK && (!key || !nonce || !tag))
		rc = DM_ERR_INVALID;
	if (rc != DM_OK) {
		if (len <= INT_MAX)
			wipe(out, len);
		return rc;
	}
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	rc = ctx ? gcm_start(ctx, 0, key, nonce, ad, ad_len) : DM_ERR_CRYPTO;
	int outl = 0, finl = 0;
	if (rc == DM_OK && len > 0 &&
	    (EVP_DecryptUpdate(ctx, out, &outl, cipher, (int)len) != 1 || (size_t)outl != len))
		rc = DM_ERR_CRYPTO;
	/* OpenSSL's ctrl takes a non-const pointer but only reads the tag. */
	uint8_t expected[AEAD_TAG_LEN];
	memcpy(expected, tag, AEAD_TAG_LEN);
	if (rc == DM_OK &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG_LEN, expected) != 1)
		rc = DM_ERR_CRYPTO;
	/* The tag is compared here, in constant time, inside OpenSSL. */
	if (rc == DM_OK && EVP_DecryptFinal_ex(ctx, out ? out + outl : NULL, &finl) != 1)
		rc = DM_ERR_CRYPTO;
	EVP_CIPHER_CTX_free(ctx);
	if (rc != DM_OK)
		wipe(out, len);
	return rc;
}

int aead_nonce_source_init(struct aead_nonce_source *src)
{
	uint8_t seed[12];
	src->exhausted = 1;
	src->next = 0;
	memset(src->prefix, 0, sizeof src->prefix);
	if (RAND_bytes(seed, sizeof seed) != 1)
		return DM_ERR_CRYPTO;
	memcpy(src->prefix, seed, sizeof src->prefix);
	uint64_t start = 0;
	for (int i = 4; i < 12; i++)
		start = (start << 8) | seed[i];
	/* Top bit clear: at least 2^63 nonces before the source refuses. */
	src->next = start & (UINT64_MAX >> 1);
	src->exhausted = 0;
	OPENSSL_cleanse(seed, sizeof seed);
	return DM_OK;
}

int aead_nonce_next(struct aead_nonce_source *src, uint8_t nonce[AEAD_NONCE_LEN])
{
	if (src->exhausted || src->next == UINT64_MAX) {
		src->exhausted = 1;
		memset(nonce, 0, AEAD_NONCE_LEN);
		return DM_ERR_STATE;
	}
	uint64_t counter = src->next++;
	memcpy(nonce, src->prefix, sizeof src->prefix);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
	return DM_OK;
}

void aead_nonce_source_set_counter(struct aead_nonce_source *src, uint64_t next)
{
	src->next = next;
}
