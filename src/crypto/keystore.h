/*
 * keystore.h — the jurisdiction's key-encryption key (KEK), behind an
 * interface, wrapping and unwrapping per-vehicle data keys (DEKs).
 *
 * The KEK never leaves its key store (promise 3 of DESIGN.md): callers hand
 * in a DEK and get back a wrapped blob to store beside the vehicle, or the
 * reverse. A backend is a table of functions (struct keystore_ops): the file
 * backend is here, the PKCS#11 backend (keystore_pkcs11.h) keeps the KEK
 * inside a token and wraps there. Both write the blob below, so the code
 * that stores blobs does not know which backend made them.
 *
 * Wrapped blob (KEYSTORE_WRAPPED_LEN = 65 bytes, the same for every backend
 * that uses AES-256-GCM):
 *
 *   offset  size  field
 *        0     1  version, KEYSTORE_WRAP_VERSION (1)
 *        1     4  kek id, big-endian: which KEK wrapped it (never 0)
 *        5    12  nonce, random per wrap
 *       17    32  the DEK, encrypted with AES-256-GCM under that KEK
 *       49    16  tag; AD = "domicile-dek-v1" || vehicle id (4 bytes, big-endian)
 *
 * The vehicle id in the AD means a blob copied to another vehicle's row does
 * not unwrap. Random nonces are right here: a KEK wraps one DEK per vehicle
 * per rotation, far below GCM's 2^32 limit for random nonces.
 *
 * Rotation (keystore_rotate) makes a new current KEK and keeps the old ones
 * for unwrapping until keystore_drop forgets them; the caller re-wraps every
 * stored blob in between (blocks are sealed by the DEKs, so no block is
 * rewritten). Each backend records which KEK is current so that a crash at
 * any step leaves the old or the new one current and every KEK that wrapped
 * a stored blob still held.
 *
 * Ownership: keystore_file_open and keystore_pkcs11_open hand out a keystore
 * the caller frees with keystore_free (accepts NULL), which wipes every key
 * (or closes every token session) it held. A keystore is not thread-safe;
 * callers serialise use of one instance.
 */
#ifndef DM_KEYSTORE_H
#define DM_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#define KEYSTORE_DEK_LEN 32
#define KEYSTORE_WRAP_VERSION 1
#define KEYSTORE_WRAPPED_LEN (1 + 4 + 12 + KEYSTORE_DEK_LEN + 16)
#define KEYSTORE_KEK_LEN 32
#define KEYSTORE_KEK_FILE "kek.key" /* the file backend's current KEK, in data_dir */

struct keystore;

/* What a backend implements. Every function receives the keystore it was
 * installed in; the contracts are those of the keystore_* wrappers below. */
struct keystore_ops {
	const char *name; /* "file", "pkcs11": for logs */
	int (*wrap)(struct keystore *ks, uint32_t vehicle_id, const uint8_t dek[KEYSTORE_DEK_LEN],
	            uint8_t blob[KEYSTORE_WRAPPED_LEN]);
	int (*unwrap)(struct keystore *ks, uint32_t vehicle_id,
	              const uint8_t blob[KEYSTORE_WRAPPED_LEN], uint8_t dek[KEYSTORE_DEK_LEN]);
	uint32_t (*key_id)(const struct keystore *ks);
	int (*rotate)(struct keystore *ks, uint32_t *new_id); /* NULL: cannot rotate */
	int (*drop)(struct keystore *ks, uint32_t kek_id);    /* NULL: cannot drop */
	void (*destroy)(struct keystore *ks);
};

/* A backend's state begins with this struct (so a pointer to either is a
 * pointer to both); ops is set by the backend's open function. */
struct keystore {
	const struct keystore_ops *ops;
};

/* Wraps dek for vehicle_id under the current KEK into blob. Returns DM_OK or
 * DM_ERR_CRYPTO; on failure blob is zeroed. */
int keystore_wrap(struct keystore *ks, uint32_t vehicle_id, const uint8_t dek[KEYSTORE_DEK_LEN],
                  uint8_t blob[KEYSTORE_WRAPPED_LEN]);

/* Unwraps blob, made for vehicle_id, with the KEK its id names (the current
 * one or one kept after a rotation). Returns DM_OK; DM_ERR_UNSUPPORTED for
 * another blob version; DM_ERR_NOT_FOUND when no KEK of that id is held
 * (dropped, or another jurisdiction's); DM_ERR_CRYPTO when the tag fails
 * (another vehicle, a damaged blob). On failure dek is zeroed. */
int keystore_unwrap(struct keystore *ks, uint32_t vehicle_id,
                    const uint8_t blob[KEYSTORE_WRAPPED_LEN], uint8_t dek[KEYSTORE_DEK_LEN]);

/* The id of the KEK new wraps use; never 0. A stored blob whose
 * keystore_blob_kek_id differs needs re-wrapping after a rotation. */
uint32_t keystore_key_id(const struct keystore *ks);

/* The kek id written in blob (bytes 1..4); no key needed. */
uint32_t keystore_blob_kek_id(const uint8_t blob[KEYSTORE_WRAPPED_LEN]);

/* Makes a new current KEK. Blobs wrapped before still unwrap; new wraps use
 * the new id. A crash at any point leaves either the old or the new KEK
 * current, and every KEK that wrapped a blob held. Returns DM_OK, with the
 * new id in *new_id when new_id is not NULL (*new_id is 0 on failure);
 * DM_ERR_UNSUPPORTED when the backend cannot rotate; otherwise what the
 * backend's rotate returns (keystore_file_rotate, keystore_pkcs11.h), after
 * which the current KEK is unchanged unless that backend says otherwise. */
int keystore_rotate(struct keystore *ks, uint32_t *new_id);

/* Forgets an old KEK for good (a file removed, a token object destroyed).
 * Call only after every blob it wrapped was re-wrapped: those that were not
 * can never be unwrapped again. Returns DM_OK; DM_ERR_INVALID for the
 * current KEK's id; DM_ERR_NOT_FOUND when no old KEK has that id;
 * DM_ERR_UNSUPPORTED when the backend cannot drop; otherwise what the
 * backend's drop returns. */
int keystore_drop(struct keystore *ks, uint32_t kek_id);

/* Destroys ks and wipes its keys. Accepts NULL. */
void keystore_free(struct keystore *ks);

/*
 * For backends: the blob's offsets and the associated data every backend
 * binds, so that all of them write the layout above byte for byte.
 */
#define KEYSTORE_BLOB_VERSION 0
#define KEYSTORE_BLOB_KEK_ID 1
#define KEYSTORE_BLOB_NONCE 5
#define KEYSTORE_BLOB_NONCE_LEN 12
#define KEYSTORE_BLOB_CIPHER 17
#define KEYSTORE_BLOB_TAG (KEYSTORE_BLOB_CIPHER + KEYSTORE_DEK_LEN)
#define KEYSTORE_BLOB_TAG_LEN 16
#define KEYSTORE_DEK_AD_LEN 19 /* "domicile-dek-v1" (15 bytes) || vehicle id (4) */

/* Writes the AD of a DEK wrapped for vehicle_id. */
void keystore_dek_ad(uint8_t ad[KEYSTORE_DEK_AD_LEN], uint32_t vehicle_id);

/* Writes the version and kek_id (big-endian) at the start of blob. */
void keystore_blob_begin(uint8_t blob[KEYSTORE_WRAPPED_LEN], uint32_t kek_id);

/*
 * The file backend. data_dir holds:
 *
 *   kek.key          the current KEK: exactly 32 random bytes, mode 0600
 *   kek-<id>.key     KEKs kept after rotations (id: 8 lower-case hex digits)
 *   kek.key.new      only while a rotation is in progress
 *
 * A KEK's id is the first 4 bytes (big-endian) of
 * SHA-256("domicile-kek-id" || KEK), so it needs no file of its own and a
 * renamed or swapped file is noticed.
 */

/* Opens the file backend: reads data_dir/kek.key, or creates it (O_EXCL,
 * mode 0600, fsynced, directory fsynced) when absent, and reads every
 * kek-<id>.key. Returns DM_OK with *out set; DM_ERR_DENIED when a key file
 * is not a regular file or is readable or writable by group or others;
 * DM_ERR_INVALID when a key file is not exactly 32 bytes or its name does
 * not match its id; DM_ERR_IO when a file can be neither read nor created;
 * DM_ERR_CRYPTO, DM_ERR_NOMEM. Every refusal is logged with the file's path.
 * On failure *out is NULL. */
int keystore_file_open(const char *data_dir, struct keystore **out);

/* The file backend's rotate (keystore_rotate calls it for a file keystore).
 * Makes a new current KEK: writes kek.key.new, keeps the current one as
 * kek-<old id>.key (a hard link), renames kek.key.new over kek.key and
 * fsyncs the directory. Blobs wrapped before still unwrap; new wraps use the
 * new id. A crash at any point leaves either the old or the new KEK current
 * and every KEK that wrapped a blob on disk. Returns DM_OK, with the new id
 * in *new_id when new_id is not NULL; DM_ERR_UNSUPPORTED when ks is not a
 * file keystore; DM_ERR_IO (logged), DM_ERR_EXISTS (a kek-<id>.key holding
 * another key), DM_ERR_CRYPTO, DM_ERR_NOMEM, after which the current KEK is
 * unchanged -- except for DM_ERR_IO from the final directory fsync: then the
 * new KEK is current (keystore_key_id tells) but the rename may not survive
 * a power loss, so the caller should wrap nothing more until it reopens. */
int keystore_file_rotate(struct keystore *ks, uint32_t *new_id);

/* The file backend's drop (keystore_drop calls it for a file keystore).
 * Forgets an old KEK: removes kek-<id>.key and wipes it from memory. Call
 * only after every blob it wrapped was re-wrapped: those that were not can
 * never be unwrapped again. Returns DM_OK; DM_ERR_INVALID for the current
 * KEK's id; DM_ERR_NOT_FOUND when no old KEK has that id;
 * DM_ERR_UNSUPPORTED when ks is not a file keystore; DM_ERR_IO (logged). */
int keystore_file_drop(struct keystore *ks, uint32_t kek_id);

#endif
