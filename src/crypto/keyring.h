/*
 * keyring.h — every vehicle's data key of one process, unwrapped once and
 * shared by the threads that seal and open with it.
 *
 * The store seals log records on the event loop and blocks on the flush
 * thread, both under the same vehicle's key; a key must be loaded once per
 * process so that its nonces come from one session (aead.h). The keyring is
 * that one place: it holds each vehicle's struct vehicle_key, hands out
 * nonces and seals and opens under a mutex, and destroys a key for good
 * when the vehicle is erased (promise 6 of DESIGN.md): from then on every
 * use of that vehicle's key returns DM_ERR_GONE.
 *
 * Keys are found by vehicle id (the vehicles table's rowid, dense from 1),
 * so the ring is an array indexed by id. Wrapping and unwrapping go through
 * the keystore given at creation, which the ring borrows; the keystore is
 * not thread-safe, so the functions that use it (keyring_create,
 * keyring_load, keyring_wrap) belong to one thread (the loop).
 *
 * Ownership: keyring_new hands out a ring freed with keyring_free (accepts
 * NULL), which wipes every key. Nothing else leaves the ring: callers name
 * a key by vehicle id and never see its bytes.
 */
#ifndef DM_KEYRING_H
#define DM_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/aead.h"
#include "crypto/keystore.h"

struct keyring;

/* A ring over ks (borrowed; it must outlive the ring). Returns DM_OK or
 * DM_ERR_NOMEM. */
int keyring_new(struct keystore *ks, struct keyring **out);
void keyring_free(struct keyring *ring);

/* A fresh key for a new vehicle, wrapped into blob for its row. Returns
 * DM_OK; DM_ERR_EXISTS when the ring holds a key for that id already, or
 * the id was erased (an erased id never gets a key again);
 * DM_ERR_INVALID for id 0; what vehicle_key_generate and keystore_wrap
 * return. On failure the ring is unchanged. */
int keyring_create(struct keyring *ring, uint32_t vehicle_id, uint8_t blob[KEYSTORE_WRAPPED_LEN]);

/* Unwraps a vehicle's stored blob into the ring. Returns DM_OK,
 * DM_ERR_EXISTS, DM_ERR_INVALID, or what keystore_unwrap returns. */
int keyring_load(struct keyring *ring, uint32_t vehicle_id,
		 const uint8_t blob[KEYSTORE_WRAPPED_LEN]);

/* Forgets a key that keyring_create installed for a registration that did
 * not commit, leaving the id unknown (not erased): SQLite may hand the id
 * out again. */
void keyring_discard(struct keyring *ring, uint32_t vehicle_id);

/* Marks a vehicle erased without ever loading its key (its row says so). */
int keyring_mark_erased(struct keyring *ring, uint32_t vehicle_id);

/* Wraps a held key again under the keystore's current KEK (after a KEK
 * rotation). Returns DM_OK, DM_ERR_NOT_FOUND, DM_ERR_GONE, or what
 * keystore_wrap returns. */
int keyring_wrap(struct keyring *ring, uint32_t vehicle_id, uint8_t blob[KEYSTORE_WRAPPED_LEN]);

/* Wipes a vehicle's key; every later use returns DM_ERR_GONE. Returns
 * DM_OK, or DM_ERR_GONE when it was destroyed before. Destroying a key the
 * ring never held marks the id erased all the same. */
int keyring_destroy(struct keyring *ring, uint32_t vehicle_id);

/* The next nonce of a vehicle's key session. Returns DM_OK,
 * DM_ERR_NOT_FOUND (no key held), DM_ERR_GONE (erased), DM_ERR_STATE
 * (nonce space exhausted: reload the key). */
int keyring_nonce(struct keyring *ring, uint32_t vehicle_id, uint8_t nonce[AEAD_NONCE_LEN]);

/* aead_seal and aead_open under a vehicle's key (same contracts, data
 * sealed or opened in place). Besides their results: DM_ERR_NOT_FOUND,
 * DM_ERR_GONE as keyring_nonce. Nonces for keyring_seal must come from
 * keyring_nonce of the same vehicle. */
int keyring_seal(struct keyring *ring, uint32_t vehicle_id, const uint8_t nonce[AEAD_NONCE_LEN],
		 const void *ad, size_t ad_len, uint8_t *data, size_t len,
		 uint8_t tag[AEAD_TAG_LEN]);
int keyring_open(struct keyring *ring, uint32_t vehicle_id, const uint8_t nonce[AEAD_NONCE_LEN],
		 const void *ad, size_t ad_len, uint8_t *data, size_t len,
		 const uint8_t tag[AEAD_TAG_LEN]);

#endif
