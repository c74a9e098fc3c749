/*
 * vehicle_key.h — per-vehicle data keys (DEKs) and the associated data that
 * binds an encrypted block to its place.
 *
 * Each vehicle's samples are sealed with its own 32-byte AES-256-GCM key, so
 * erasing a vehicle is destroying its key (promise 6 of DESIGN.md). The key
 * is stored only wrapped by the jurisdiction's KEK (keystore.h); in memory it
 * lives in a struct vehicle_key, together with the nonce source of this
 * key-use session (aead.h), and is wiped when the struct is freed.
 *
 * Ownership: vehicle_key_generate and vehicle_key_unwrap hand out a key the
 * caller frees with vehicle_key_free (accepts NULL). Load each vehicle's key
 * once per process and share it: each struct is its own nonce session.
 */
#ifndef DM_VEHICLE_KEY_H
#define DM_VEHICLE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/aead.h"
#include "crypto/keystore.h"

#define VEHICLE_KEY_LEN 32

struct vehicle_key {
	uint32_t vehicle_id;
	uint8_t key[VEHICLE_KEY_LEN]; /* secret: never log, never copy out */
	struct aead_nonce_source nonces;
};

/* A fresh random key for vehicle_id. Returns DM_OK with *out set;
 * DM_ERR_CRYPTO (random generator), DM_ERR_NOMEM; on failure *out is NULL. */
int vehicle_key_generate(uint32_t vehicle_id, struct vehicle_key **out);

/* Wraps key under ks's current KEK into blob (to store in the vehicle's
 * row). Returns what keystore_wrap returns. */
int vehicle_key_wrap(struct keystore *ks, const struct vehicle_key *key,
                     uint8_t blob[KEYSTORE_WRAPPED_LEN]);

/* Unwraps blob, stored for vehicle_id, into a key with a fresh nonce
 * session. Returns DM_OK with *out set; what keystore_unwrap returns;
 * DM_ERR_NOMEM; on failure *out is NULL. */
int vehicle_key_unwrap(struct keystore *ks, uint32_t vehicle_id,
                       const uint8_t blob[KEYSTORE_WRAPPED_LEN], struct vehicle_key **out);

/* Wipes key and frees it. Accepts NULL. */
void vehicle_key_free(struct vehicle_key *key);

/*
 * Associated data of an encrypted block: everything that says where the
 * block belongs, so a block moved to another vehicle's or signal's row, or
 * swapped with another time window, fails to open.
 *
 *   offset  size  field
 *        0    15  "domicile-blk-v1"
 *       15     4  vehicle id, big-endian
 *       19     2  signal path length L, big-endian, 1..BLOCK_AD_MAX_PATH
 *       21     L  signal path (VSS, e.g. "Vehicle.Speed"), no NUL
 *     21+L     8  t_min, big-endian two's complement
 *     29+L     8  t_max, likewise
 *     37+L     1  block format version
 *
 * The length prefix keeps the encoding unambiguous (no two field tuples give
 * the same bytes). When the store seals a block it should pass this followed
 * by the block header (block.c), which binds count and value type as well.
 */
#define BLOCK_AD_FIXED_LEN 38
#define BLOCK_AD_MAX_PATH 1024
#define BLOCK_AD_MAX (BLOCK_AD_FIXED_LEN + BLOCK_AD_MAX_PATH)

/* Writes the AD above to out[0..cap). Returns its length
 * (BLOCK_AD_FIXED_LEN + strlen(signal_path)); 0, writing nothing, when
 * signal_path is NULL, empty or longer than BLOCK_AD_MAX_PATH, or the AD
 * does not fit in cap. */
size_t block_ad(uint8_t *out, size_t cap, uint32_t vehicle_id, const char *signal_path,
                int64_t t_min, int64_t t_max, uint8_t format_version);

#endif
