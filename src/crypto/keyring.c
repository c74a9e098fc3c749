/*
 * keyring.c — the vehicle keys of one process (keyring.h has the user's
 * view).
 *
 * Invariants:
 *  1. slots[id] describes vehicle id: NULL key and not erased = unknown,
 *     a key = usable, erased = destroyed (its key wiped and freed).
 *  2. Every access to slots, and every use of a key's bytes or nonce
 *     source, happens under lock; so a key is never wiped while a seal on
 *     another thread is using it, and no two threads draw the same nonce.
 *  3. An erased slot never holds a key again.
 */
#include "crypto/keyring.h"

#include <pthread.h>
#include <string.h>

#include "crypto/vehicle_key.h"
#include "util/alloc.h"
#include "util/err.h"

/* Vehicle ids are the rowids of a table filled one registration at a time;
 * an id beyond this is not one the store handed out. */
#define KEYRING_MAX_ID (1u << 26)

struct slot {
	struct vehicle_key *key;
	int erased;
};

struct keyring {
	struct keystore *ks;
	pthread_mutex_t lock;
	struct slot *slots; /* indexed by vehicle id */
	size_t cap;
};

int keyring_new(struct keystore *ks, struct keyring **out)
{
	*out = NULL;
	struct keyring *ring = dm_calloc(1, sizeof *ring);
	if (!ring)
		return DM_ERR_NOMEM;
	ring->ks = ks;
	pthread_mutex_init(&ring->lock, NULL);
	*out = ring;
	return DM_OK;
}

void keyring_free(struct keyring *ring)
{
	if (!ring)
		return;
	for (size_t i = 0; i < ring->cap; i++)
		vehicle_key_free(ring->slots[i].key);
	dm_free(ring->slots);
	pthread_mutex_destroy(&ring->lock);
	dm_free(ring);
}

/* The slot of id, growing the array when asked to; NULL when id is out of
 * range or memory ran out. Under lock. */
static struct slot *slot_of(struct keyring *ring, uint32_t id, int grow)
{
	if (id == 0 || id >= KEYRING_MAX_ID)
		return NULL;
	if (id < ring->cap)
		return &ring->slots[id];
	if (!grow)
		return NULL;
	size_t cap = ring->cap ? ring->cap : 64;
	while (cap <= id)
		cap *= 2;
	struct slot *slots = dm_realloc(ring->slots, cap * sizeof *slots);
	if (!slots)
		return NULL;
	memset(slots + ring->cap, 0, (cap - ring->cap) * sizeof *slots);
	ring->slots = slots;
	ring->cap = cap;
	return &ring->slots[id];
}

/* Puts key into id's slot, which must be unknown. Takes key in every case. */
static int install(struct keyring *ring, uint32_t id, struct vehicle_key *key)
{
	pthread_mutex_lock(&ring->lock);
	struct slot *slot = slot_of(ring, id, 1);
	int rc = DM_OK;
	if (!slot)
		rc = id == 0 || id >= KEYRING_MAX_ID ? DM_ERR_INVALID : DM_ERR_NOMEM;
	else if (slot->key || slot->erased)
		rc = DM_ERR_EXISTS;
	else
		slot->key = key;
	pthread_mutex_unlock(&ring->lock);
	if (rc)
		vehicle_key_free(key);
	return rc;
}

int keyring_create(struct keyring *ring, uint32_t vehicle_id, uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	struct vehicle_key *key;
	int rc = vehicle_key_generate(vehicle_id, &key);
	if (rc)
		return rc;
	rc = vehicle_key_wrap(ring->ks, key, blob);
	if (rc) {
		vehicle_key_free(key);
		return rc;
	}
	return install(ring, vehicle_id, key);
}

int keyring_load(struct keyring *ring, uint32_t vehicle_id,
		 const uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	struct vehicle_key *key;
	int rc = vehicle_key_unwrap(ring->ks, vehicle_id, blob, &key);
	return rc ? rc : install(ring, vehicle_id, key);
}

void keyring_discard(struct keyring *ring, uint32_t vehicle_id)
{
	pthread_mutex_lock(&ring->lock);
	struct slot *slot = slot_of(ring, vehicle_id, 0);
	if (slot && !slot->erased) {
		vehicle_key_free(slot->key);
		slot->key = NULL;
	}
	pthread_mutex_unlock(&ring->lock);
}

int keyring_mark_erased(struct keyring *ring, uint32_t vehicle_id)
{
	int rc = keyring_destroy(ring, vehicle_id);
	return rc == DM_ERR_GONE ? DM_OK : rc;
}

int keyring_destroy(struct keyring *ring, uint32_t vehicle_id)
{
	pthread_mutex_lock(&ring->lock);
	struct slot *slot = slot_of(ring, vehicle_id, 1);
	int rc = DM_OK;
	if (!slot) {
		rc = vehicle_id == 0 || vehicle_id >= KEYRING_MAX_ID ? DM_ERR_INVALID
								     : DM_ERR_NOMEM;
	} else if (slot->erased) {
		rc = DM_ERR_GONE;
	} else {
		vehicle_key_free(slot->key); /* wipes it */
		slot->key = NULL;
		slot->erased = 1;
	}
	pthread_mutex_unlock(&ring->lock);
	return rc;
}

/* The usable key of id, or the reason there is none. Under lock. */
static int held_key(struct keyring *ring, uint32_t id, struct vehicle_key **key)
{
	struct slot *slot = slot_of(ring, id, 0);
	if (slot && slot->erased)
		return DM_ERR_GONE;
	if (!slot || !slot->key)
		return DM_ERR_NOT_FOUND;
	*key = slot->key;
	return DM_OK;
}

int keyring_wrap(struct keyring *ring, uint32_t vehicle_id, uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	pthread_mutex_lock(&ring->lock);
	struct vehicle_key *key;
	int rc = held_key(ring, vehicle_id, &key);
	if (rc == DM_OK)
		rc = vehicle_key_wrap(ring->ks, key, blob);
	pthread_mutex_unlock(&ring->lock);
	return rc;
}

int keyring_nonce(struct keyring *ring, uint32_t vehicle_id, uint8_t nonce[AEAD_NONCE_LEN])
{
	pthread_mutex_lock(&ring->lock);
	struct vehicle_key *key;
	int rc = held_key(ring, vehicle_id, &key);
	if (rc == DM_OK)
		rc = aead_nonce_next(&key->nonces, nonce);
	pthread_mutex_unlock(&ring->lock);
	return rc;
}

int keyring_seal(struct keyring *ring, uint32_t vehicle_id, const uint8_t nonce[AEAD_NONCE_LEN],
		 const void *ad, size_t ad_len, uint8_t *data, size_t len,
		 uint8_t tag[AEAD_TAG_LEN])
{
	pthread_mutex_lock(&ring->lock);
	struct vehicle_key *key;
	int rc = held_key(ring, vehicle_id, &key);
	if (rc == DM_OK)
		rc = aead_seal(key->key, nonce, ad, ad_len, data, len, data, tag);
	pthread_mutex_unlock(&ring->lock);
	return rc;
}

int keyring_open(struct keyring *ring, uint32_t vehicle_id, const uint8_t nonce[AEAD_NONCE_LEN],
		 const void *ad, size_t ad_len, uint8_t *data, size_t len,
		 const uint8_t tag[AEAD_TAG_LEN])
{
	pthread_mutex_lock(&ring->lock);
	struct vehicle_key *key;
	int rc = held_key(ring, vehicle_id, &key);
	if (rc == DM_OK)
		rc = aead_open(key->key, nonce, ad, ad_len, data, len, tag, data);
	pthread_mutex_unlock(&ring->lock);
	return rc;
}
