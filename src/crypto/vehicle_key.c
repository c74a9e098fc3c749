/*
 * vehicle_key.c — per-vehicle data keys and block associated data
 * (vehicle_key.h has the user's view and the AD's byte layout).
 *
 * Invariants:
 *  1. A struct vehicle_key holds a usable key and an initialised nonce
 *     source, or is not handed out at all.
 *  2. Key bytes are wiped (OPENSSL_cleanse) before their memory is freed,
 *     and an unwrapped key never passes through an unwiped buffer.
 */
#include "crypto/vehicle_key.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "util/alloc.h"
#include "util/err.h"

#define BLOCK_AD_LABEL "domicile-blk-v1"
#define BLOCK_AD_LABEL_LEN (sizeof BLOCK_AD_LABEL - 1)

void vehicle_key_free(struct vehicle_key *key)
{
	if (!key)
		return;
	OPENSSL_cleanse(key, sizeof *key);
	dm_free(key);
}

/* A struct for vehicle_id with its nonce session started; the key is the
 * caller's to fill. */
static int new_key(uint32_t vehicle_id, struct vehicle_key **out)
{
	struct vehicle_key *key = dm_calloc(1, sizeof *key);
	if (!key)
		return DM_ERR_NOMEM;
	key->vehicle_id = vehicle_id;
	int rc = aead_nonce_source_init(&key->nonces);
	if (rc != DM_OK) {
		vehicle_key_free(key);
		return rc;
	}
	*out = key;
	return DM_OK;
}

int vehicle_key_generate(uint32_t vehicle_id, struct vehicle_key **out)
{
	*out = NULL;
	struct vehicle_key *key;
	int rc = new_key(vehicle_id, &key);
	if (rc != DM_OK)
		return rc;
	if (RAND_bytes(key->key, VEHICLE_KEY_LEN) != 1) {
		vehicle_key_free(key);
		return DM_ERR_CRYPTO;
	}
	*out = key;
	return DM_OK;
}

int vehicle_key_wrap(struct keystore *ks, const struct vehicle_key *key,
                     uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	return keystore_wrap(ks, key->vehicle_id, key->key, blob);
}

int vehicle_key_unwrap(struct keystore *ks, uint32_t vehicle_id,
                       const uint8_t blob[KEYSTORE_WRAPPED_LEN], struct vehicle_key **out)
{
	*out = NULL;
	struct vehicle_key *key;
	int rc = new_key(vehicle_id, &key);
	if (rc != DM_OK)
		return rc;
	/* Straight into the struct: no stack copy of the key to forget. */
	rc = keystore_unwrap(ks, vehicle_id, blob, key->key);
	if (rc != DM_OK) {
		vehicle_key_free(key);
		return rc;
	}
	*out = key;
	return DM_OK;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

size_t block_ad(uint8_t *out, size_t cap, uint32_t vehicle_id, const char *signal_path,
                int64_t t_min, int64_t t_max, uint8_t format_version)
{
	if (!signal_path)
		return 0;
	size_t path_len = strnlen(signal_path, BLOCK_AD_MAX_PATH + 1);
	if (path_len == 0 || path_len > BLOCK_AD_MAX_PATH)
		return 0;
	size_t total = BLOCK_AD_FIXED_LEN + path_len;
	if (!out || cap < total)
		return 0;
	uint8_t *p = out;
	memcpy(p, BLOCK_AD_LABEL, BLOCK_AD_LABEL_LEN);
	p += BLOCK_AD_LABEL_LEN;
	p = put_be(p, vehicle_id, 4);
	p = put_be(p, path_len, 2);
	memcpy(p, signal_path, path_len);
	p += path_len;
	/* Two's complement by conversion to unsigned, which C defines. */
	p = put_be(p, (uint64_t)t_min, 8);
	p = put_be(p, (uint64_t)t_max, 8);
	*p++ = format_version;
	return (size_t)(p - out);
}
