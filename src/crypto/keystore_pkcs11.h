/*
 * keystore_pkcs11.h — the key store backend that keeps the KEK inside a
 * PKCS#11 token (an HSM; SoftHSM2 in tests), reached through p11-kit.
 *
 * The KEK is an AES-256 secret key object in the token, sensitive and not
 * extractable: it never leaves the token (promise 3 of DESIGN.md). Wrapping
 * a DEK is C_Encrypt with CKM_AES_GCM in the token, unwrapping is C_Decrypt;
 * the blob is the one of keystore.h, byte for byte (12-byte IV drawn per
 * wrap, AD "domicile-dek-v1" || vehicle id, 128-bit tag), so blobs of both
 * backends live in the same column and a blob of the other backend is just
 * "a KEK this store does not hold" (DM_ERR_NOT_FOUND).
 *
 * The token's objects. With key label L (the options' key), the KEKs are
 * the secret keys (CKO_SECRET_KEY, CKK_AES, 32 bytes) labelled:
 *
 *   L            the current KEK: new wraps use it (at most one)
 *   L.retired    KEKs kept after rotations, for unwrapping only (any number)
 *   L.new        only while a rotation is in progress (at most one)
 *
 * A KEK's id (the kek id in the blob) is its CKA_ID: exactly 4 bytes,
 * big-endian, never 0, unique among the token's secret keys. Every KEK
 * must be CKA_SENSITIVE true and CKA_EXTRACTABLE false, and allow
 * CKA_DECRYPT (the current one CKA_ENCRYPT too); a key that does not is
 * refused and the store does not open.
 *
 * Which KEK is current: the one labelled L; when there is none, the one
 * labelled L.new (a rotation stopped between its steps 2 and 3 below).
 * Rotation, each step one atomic operation of the token:
 *
 *   1. C_GenerateKey, labelled L.new, fresh id  crash: L current; the L.new
 *                                               never wrapped anything and the
 *                                               next rotation destroys it
 *   2. relabel the current key L → L.retired    crash: no L, so L.new is current
 *   3. relabel the new key L.new → L            done
 *
 * A rotation that finds no L but an L.new first finishes step 3 for it (that
 * key may have wrapped blobs); one that finds both destroys the L.new (it
 * cannot have). So at every step one KEK is current and every KEK that
 * wrapped a blob is labelled L, L.new or L.retired.
 *
 * Sessions: one read-write session (read-only when the token is write
 * protected: then rotate and drop fail) logged in as the user, for the
 * keystore's lifetime. The login belongs to the process, not to the
 * keystore (PKCS#11 logs in every session of an application with a token):
 * a second keystore opened on the same token while one is open does not
 * check its PIN again, and closing one does not log the other out.
 * A keystore caches the handles of its KEKs; a kek id it does not know is
 * looked up in the token before unwrap says DM_ERR_NOT_FOUND, so blobs
 * wrapped after another process rotated still unwrap. Another process's
 * rotation does not change which KEK this keystore wraps with: rotate
 * through the process that wraps (the node), or reopen.
 *
 * Ownership: keystore_pkcs11_open hands out a keystore freed with
 * keystore_free (accepts NULL), which closes the session and unloads the
 * module. The options' strings are borrowed during the call only. Not
 * thread-safe, like every keystore.
 */
#ifndef DM_KEYSTORE_PKCS11_H
#define DM_KEYSTORE_PKCS11_H

#include <stdint.h>

#include "crypto/keystore.h"

#define KEYSTORE_PKCS11_TOKEN_LABEL_MAX 32 /* CK_TOKEN_INFO.label */
#define KEYSTORE_PKCS11_KEY_LABEL_MAX 64   /* our limit on L, without suffix */
#define KEYSTORE_PKCS11_PIN_MAX 256        /* bytes of a PIN */

struct keystore_pkcs11_options {
	const char *module;   /* path of the PKCS#11 module (.so) for p11-kit */
	const char *token;    /* the token's label, 1..32 bytes */
	const char *key;      /* L: the current KEK's CKA_LABEL, 1..64 bytes; may
	                         not end in ".new" or ".retired" */
	const char *pin;      /* the user PIN; NULL: read it from pin_file */
	const char *pin_file; /* the user PIN, one line (a final "\n" or "\r\n"
	                         is not part of it); a regular file, not readable
	                         or writable by group or others */
};

/* Loads the module, finds the token by label, opens a session, logs in as
 * the user, and finds and checks the KEKs (above). Returns DM_OK with *out
 * set, or, each refusal logged with the module, token or key it concerns:
 *   DM_ERR_INVALID    options missing or too long; a module file that is
 *                     not a PKCS#11 module; more than one token or
 *                     current KEK with the label; a PIN file that is empty
 *                     or has more than one line; a KEK that is not AES-256,
 *                     lacks CKA_ENCRYPT/CKA_DECRYPT, has a CKA_ID that is
 *                     not 4 bytes or is 0, or shares its id with another KEK
 *   DM_ERR_NOT_FOUND  the module file, the token, or the KEK (neither L nor
 *                     L.new) is absent; the PIN file is absent
 *   DM_ERR_DENIED     a KEK is extractable or not sensitive; the PIN file is
 *                     open to group or others or not a regular file; the
 *                     PIN is locked
 *   DM_ERR_AUTH       the PIN is wrong (or the user PIN not initialised)
 *   DM_ERR_IO         the PIN file cannot be read; the device failed
 *   DM_ERR_CRYPTO     the module failed to initialise (C_Initialize), or
 *                     another token error
 *   DM_ERR_NOMEM
 * On failure *out is NULL and nothing in the token changed. */
int keystore_pkcs11_open(const struct keystore_pkcs11_options *o, struct keystore **out);

/* Makes the first KEK: generates, inside the token, an AES-256 key labelled
 * L, with a fresh random id, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true and
 * CKA_EXTRACTABLE false, then reads its attributes back and checks them as
 * keystore_pkcs11_open does. Returns DM_OK with its id in *kek_id (when not
 * NULL; 0 on failure); DM_ERR_EXISTS when a secret key labelled L, L.new or
 * L.retired exists already (nothing is created); DM_ERR_DENIED when the
 * token is write-protected or refused the attributes; what
 * keystore_pkcs11_open returns for the module, token and PIN. */
int keystore_pkcs11_create_key(const struct keystore_pkcs11_options *o, uint32_t *kek_id);

/*
 * The backend's rotate and drop (called through keystore_rotate and
 * keystore_drop; the contracts of keystore.h hold).
 *
 * rotate runs the three steps above. Returns DM_OK with the new id;
 * DM_ERR_DENIED when the session is read-only or the token refuses to
 * create or relabel; DM_ERR_CRYPTO and the codes of keystore_pkcs11_open
 * for other token errors. After a failure in step 1 or 2 the old KEK is
 * still current. A failure of step 3 still returns DM_OK: the new KEK is
 * current by the rule above (it is the one labelled L.new), the failure is
 * logged, and the next rotation finishes the relabelling.
 *
 * drop destroys the key object labelled L.retired with that CKA_ID:
 * DM_ERR_INVALID for the current id, DM_ERR_NOT_FOUND when no retired KEK
 * has it, DM_ERR_DENIED when the token refuses to destroy it.
 */

#endif
