/*
 * secret.c — secret generation, salted hashing and constant-time checking
 * (the stored format is in secret.h).
 *
 * Invariants:
 *  1. Random bytes, salts and digests are wiped from the stack before
 *     returning, so no copy of key material outlives the call.
 *  2. Decoding a stored hash is strict: the tag, both lengths, the alphabet
 *     and the unused low bits of the last character are all checked, so one
 *     hash has exactly one spelling.
 *  3. The only comparison involving the presented secret is CRYPTO_memcmp
 *     over two full digests.
 */
#include "util/secret.h"

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/err.h"

#define SECRET_BYTES 32
#define SALT_BYTES 16
#define DIGEST_BYTES 32
#define TAG "sha256$"
#define TAG_LEN (sizeof TAG - 1)
#define SALT_CHARS 22   /* base64url of SALT_BYTES */
#define DIGEST_CHARS 43 /* base64url of DIGEST_BYTES */

_Static_assert(TAG_LEN + SALT_CHARS + 1 + DIGEST_CHARS == SECRET_HASH_LEN, "stored hash length");
_Static_assert(DIGEST_CHARS == SECRET_LEN, "a secret is as long as a digest");

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Writes the unpadded base64url of bytes[0..len) to out (4 * len / 3
 * rounded up characters), without a NUL. */
static size_t b64url_encode(const uint8_t *bytes, size_t len, char *out)
{
	size_t used = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t group = (uint32_t)bytes[i] << 16;
		if (i + 1 < len)
			group |= (uint32_t)bytes[i + 1] << 8;
		if (i + 2 < len)
			group |= bytes[i + 2];
		size_t chars = len - i >= 3 ? 4 : len - i + 1;
		for (size_t k = 0; k < chars; k++)
			out[used++] = alphabet[(group >> (18 - 6 * k)) & 63];
	}
	return used;
}

static int b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decodes exactly `chars` characters into out[0..len), where chars is the
 * encoded length of len bytes. Fails on a character outside the alphabet or
 * set bits past the last byte. */
static int b64url_decode(const char *text, size_t chars, uint8_t *out, size_t len)
{
	uint32_t bits = 0;
	unsigned bit_count = 0;
	size_t used = 0;
	for (size_t i = 0; i < chars; i++) {
		int value = b64url_value(text[i]);
		if (value < 0)
			return DM_ERR_MALFORMED;
		bits = (bits << 6 | (uint32_t)value) & 0xffffff;
		bit_count += 6;
		if (bit_count >= 8) {
			bit_count -= 8;
			if (used == len)
				return DM_ERR_MALFORMED;
			out[used++] = (uint8_t)(bits >> bit_count);
		}
	}
	if (used != len || (bits & ((1u << bit_count) - 1)) != 0)
		return DM_ERR_MALFORMED;
	return DM_OK;
}

static int digest(const uint8_t salt[SALT_BYTES], const char *secret, size_t len,
		  uint8_t out[DIGEST_BYTES])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned out_len = 0;
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(ctx, salt, SALT_BYTES) == 1 &&
		 EVP_DigestUpdate(ctx, secret, len) == 1 &&
		 EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == DIGEST_BYTES;
	EVP_MD_CTX_free(ctx); /* accepts NULL; cleanses the context */
	return ok ? DM_OK : DM_ERR_CRYPTO;
}

int secret_generate(char *out, size_t out_len)
{
	if (out_len > 0)
		out[0] = '\0';
	if (out_len < SECRET_BUF_SIZE)
		return DM_ERR_INVALID;
	uint8_t raw[SECRET_BYTES];
	if (RAND_bytes(raw, sizeof raw) != 1) {
		OPENSSL_cleanse(raw, sizeof raw);
		return DM_ERR_CRYPTO;
	}
	size_t used = b64url_encode(raw, sizeof raw, out);
	out[used] = '\0';
	OPENSSL_cleanse(raw, sizeof raw);
	return DM_OK;
}

int secret_hash(const char *secret, size_t len, char *out, size_t out_len)
{
	if (out_len > 0)
		out[0] = '\0';
	if (len == 0 || out_len < SECRET_HASH_BUF_SIZE)
		return DM_ERR_INVALID;
	uint8_t salt[SALT_BYTES], hash[DIGEST_BYTES];
	int rc = RAND_bytes(salt, sizeof salt) == 1 ? DM_OK : DM_ERR_CRYPTO;
	if (rc == DM_OK)
		rc = digest(salt, secret, len, hash);
	if (rc == DM_OK) {
		size_t used = TAG_LEN;
		memcpy(out, TAG, TAG_LEN);
		used += b64url_encode(salt, sizeof salt, out + used);
		out[used++] = '$';
		used += b64url_encode(hash, sizeof hash, out + used);
		out[used] = '\0';
	}
	OPENSSL_cleanse(salt, sizeof salt);
	OPENSSL_cleanse(hash, sizeof hash);
	return rc;
}

int secret_verify(const char *secret, size_t len, const char *stored)
{
	uint8_t salt[SALT_BYTES], want[DIGEST_BYTES], got[DIGEST_BYTES];
	/* Bounded: a stored string far too long is not scanned to its end. */
	if (strnlen(stored, SECRET_HASH_LEN + 1) != SECRET_HASH_LEN ||
	    memcmp(stored, TAG, TAG_LEN) != 0 || stored[TAG_LEN + SALT_CHARS] != '$')
		return DM_ERR_MALFORMED;
	int rc = b64url_decode(stored + TAG_LEN, SALT_CHARS, salt, sizeof salt);
	if (rc == DM_OK)
		rc = b64url_decode(stored + TAG_LEN + SALT_CHARS + 1, DIGEST_CHARS, want,
				   sizeof want);
	if (rc == DM_OK && len == 0)
		rc = DM_ERR_AUTH;
	if (rc == DM_OK)
		rc = digest(salt, secret, len, got);
	if (rc == DM_OK && CRYPTO_memcmp(got, want, sizeof got) != 0)
		rc = DM_ERR_AUTH;
	OPENSSL_cleanse(salt, sizeof salt);
	OPENSSL_cleanse(want, sizeof want);
	OPENSSL_cleanse(got, sizeof got);
	return rc;
}
