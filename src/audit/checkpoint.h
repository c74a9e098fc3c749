/*
 * checkpoint.h — the site's Ed25519 audit key and the signed checkpoints of
 * the audit log, in the signed-note format of transparency logs (C2SP
 * signed-note v1, with a C2SP tlog-checkpoint body).
 *
 * A signed checkpoint, byte for byte ("\n" is 0x0A; nothing else below
 * 0x20 may appear anywhere, and the whole text is valid UTF-8):
 *
 *   domicile-cn-shanghai-1/audit\n           origin: the log's name
 *   41\n                                     tree size, decimal, no leading
 *                                            zero ("0" for the empty tree), no '+'
 *   2x6a3b…Jc=\n                             root hash: standard base64 (RFC
 *                                            4648 section 4, padded) of 32 bytes
 *   time 1732400000123\n                     the one extension line: signing
 *                                            time, ms since the epoch, decimal
 *   \n                                       the blank line
 *   — domicile-cn-shanghai-1 AbCd…==\n       one line per signature: U+2014 EM
 *                                            DASH, space, key name, space,
 *                                            base64(4-byte key ID || signature)
 *
 * The four lines before the blank line are the note text (the "body"): at
 * most AUDIT_CHECKPOINT_BODY_MAX bytes, and exactly what each signature
 * covers. The body ends at the LAST blank line of the note. Signature lines
 * of keys other than the verifier's (another name, or the same name with
 * another key ID) are checked for form only and otherwise ignored, as the
 * spec requires (witness cosignatures, key rotation); every signature line
 * of the verifier's key must verify, and there must be at least one.
 *
 * Keys and their names: a key name is 1 to AUDIT_KEY_NAME_MAX bytes of
 * UTF-8 without Unicode spaces, '+' or control characters. The key ID is the
 * first four bytes (big-endian) of SHA-256(name || 0x0A || 0x01 || 32-byte
 * public key), and the verifier key string is
 *
 *   <name>+<key ID as 8 lowercase hex digits>+<base64(0x01 || public key)>
 *
 * The key file (audit_key_load_or_create) holds the raw 32-byte Ed25519
 * seed (RFC 8032 private key) and nothing else: a regular file, not a
 * symlink, mode 0600 or stricter, exactly 32 bytes; anything else is refused,
 * because a signing key another user can read is already lost.
 *
 * Ownership: struct audit_key is opaque; audit_key_free releases it (and
 * wipes the key). struct audit_verifier and struct audit_checkpoint are
 * plain values the caller owns. Text is appended to a caller's dm_buf.
 *
 * Errors: DM_ERR_MALFORMED (text that does not parse, non-canonical numbers
 * or base64, a name with a forbidden character), DM_ERR_TOO_LARGE (a body,
 * note or name over its limit), DM_ERR_CRYPTO (no signature of the key, one
 * that does not verify, a key hash that does not match its key, an OpenSSL
 * failure), DM_ERR_INVALID (arguments a caller should not pass), DM_ERR_NOMEM;
 * key files add DM_ERR_NOT_FOUND, DM_ERR_DENIED, DM_ERR_IO. Functions with an
 * err parameter write a one-line reason there on failure ("" on success).
 */
#ifndef DM_AUDIT_CHECKPOINT_H
#define DM_AUDIT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "audit/merkle.h"
#include "util/buf.h"

#define AUDIT_KEY_SEED_LEN 32
#define AUDIT_KEY_PUBLIC_LEN 32
#define AUDIT_SIGNATURE_LEN 64
#define AUDIT_KEY_NAME_MAX 255
/* The longest origin audit_checkpoint_sign writes (a key name and a path). */
#define AUDIT_ORIGIN_MAX 512
/* The signed-note signature type byte of Ed25519. */
#define AUDIT_SIG_TYPE_ED25519 0x01
/* The checkpoint text (origin, size, root, time lines) the key signs. */
#define AUDIT_CHECKPOINT_BODY_MAX 1024
/* A whole note: room for the spec's minimum of 16 signatures even when some
 * are post-quantum (up to ~5 kB each). */
#define AUDIT_NOTE_MAX (128 * 1024)
#define AUDIT_NOTE_SIGNATURES_MAX 100
/* Tree sizes and times are refused at 2^63 and above (RFC 9162 proofs here
 * are bounded for sizes below 2^63; times are int64 milliseconds). */
#define AUDIT_CHECKPOINT_SIZE_MAX INT64_MAX

struct audit_key;

/* A public key to check signatures with: parsed from a verifier key string
 * or taken from an audit_key. */
struct audit_verifier {
	char name[AUDIT_KEY_NAME_MAX + 1]; /* NUL-terminated */
	uint32_t key_id;
	uint8_t public_key[AUDIT_KEY_PUBLIC_LEN];
};

/* What a verified checkpoint says. */
struct audit_checkpoint {
	char origin[AUDIT_CHECKPOINT_BODY_MAX]; /* NUL-terminated */
	uint64_t size;
	uint8_t root[MERKLE_HASH_LEN];
	int64_t time_ms;
};

/* ---- keys ---- */

/* Loads the key at path, named name. DM_ERR_NOT_FOUND when there is no such
 * file; DM_ERR_DENIED (a symlink, not a regular file, mode open to group or
 * others); DM_ERR_INVALID (not 32 bytes, a bad name); DM_ERR_IO;
 * DM_ERR_CRYPTO; DM_ERR_NOMEM. The reason goes to the log with the path. On
 * success *out is the key; the caller frees it with audit_key_free. */
int audit_key_load(const char *path, const char *name, struct audit_key **out);

/* As audit_key_load, but when path does not exist, makes a new random key
 * there first: created with O_EXCL, mode 0600, fsynced, and its directory
 * fsynced, so a key whose signatures were handed out survives a crash. A
 * key file made concurrently by another process is loaded, not replaced. */
int audit_key_load_or_create(const char *path, const char *name, struct audit_key **out);

/* The key of a given seed (tests, known answers). Caller frees *out with
 * audit_key_free. */
int audit_key_from_seed(const uint8_t seed[AUDIT_KEY_SEED_LEN], const char *name,
                        struct audit_key **out);

/* Wipes and frees key; accepts NULL. */
void audit_key_free(struct audit_key *key);

/* The key's public half: borrowed, valid until audit_key_free(key). */
const struct audit_verifier *audit_key_verifier(const struct audit_key *key);

/* 1 when name is a valid key name (see the top of this file), else 0. */
int audit_key_name_valid(const char *name, size_t len);

/* The key ID of (name, Ed25519 public key) as the spec recommends. */
int audit_key_id(const char *name, size_t name_len, const uint8_t public_key[AUDIT_KEY_PUBLIC_LEN],
                 uint32_t *out);

/* ---- verifier key strings ---- */

/* Appends "<name>+<hex key ID>+<base64>" to out (with a NUL after it, not
 * counted in out->len). DM_OK or DM_ERR_NOMEM; out unchanged on failure. */
int audit_verifier_format(const struct audit_verifier *verifier, struct dm_buf *out);

/* Parses a verifier key string (exactly, with no surrounding whitespace or
 * newline). Refuses a bad name, a key ID that is not 8 lowercase hex digits
 * or does not match the name and key (DM_ERR_CRYPTO), a signature type other
 * than Ed25519 (DM_ERR_UNSUPPORTED), non-canonical base64. *out is zeroed on
 * failure. */
int audit_verifier_parse(const char *text, size_t len, struct audit_verifier *out, char *err,
                         size_t err_len);

/* ---- checkpoints ---- */

/* Appends the checkpoint (origin, size, root, time_ms) signed by key to out,
 * in the form at the top of this file. origin follows the key-name rules
 * (no spaces, '+' or control characters) with up to AUDIT_ORIGIN_MAX
 * bytes; size at most
 * AUDIT_CHECKPOINT_SIZE_MAX; time_ms >= 0. DM_ERR_INVALID for bad
 * arguments, DM_ERR_CRYPTO, DM_ERR_NOMEM; out unchanged on failure. A NUL
 * follows the text in out (not counted in out->len). */
int audit_checkpoint_sign(const struct audit_key *key, const char *origin, uint64_t size,
                          const uint8_t root[MERKLE_HASH_LEN], int64_t time_ms, struct dm_buf *out);

/* Verifies any signed note note[0..len) against verifier (the rules at the
 * top of this file, none about the text's content). On success *text_len
 * is the length of the signed text: note[0..*text_len), ending in '\n'. */
int audit_note_open(const char *note, size_t len, const struct audit_verifier *verifier,
                    size_t *text_len, char *err, size_t err_len);

/* Parses the signed checkpoint text[0..len) and verifies it against
 * verifier: every signature of that key must verify and there must be one;
 * then the body must be a checkpoint of this form. When expected_origin is
 * not NULL the origin must equal it (DM_ERR_INVALID otherwise). On success
 * *out holds what it says; on failure *out is zeroed and err says why. */
int audit_checkpoint_open(const char *text, size_t len, const struct audit_verifier *verifier,
                          const char *expected_origin, struct audit_checkpoint *out, char *err,
                          size_t err_len);

/* ---- base64 (standard alphabet, padded), shared by the audit parts ---- */

/* Appends the base64 of bytes[0..len) to out (NUL after, not counted).
 * DM_ERR_NOMEM or DM_ERR_TOO_LARGE (len > 1 GiB); out unchanged on failure. */
int audit_base64_encode(const void *bytes, size_t len, struct dm_buf *out);

/* Decodes text[0..len), which must be canonical base64: a multiple of 4
 * characters of the standard alphabet, padding '=' only at the end and only
 * as needed, unused bits zero (so each byte string has exactly one
 * accepted encoding). Writes at most cap bytes to out and their number to
 * *out_len. DM_ERR_MALFORMED, or DM_ERR_TOO_LARGE when the result does not
 * fit cap. */
int audit_base64_decode(const char *text, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* Parses a canonical unsigned decimal (no sign, no leading zero unless the
 * number is 0, at most max): DM_OK or DM_ERR_MALFORMED. */
int audit_parse_decimal(const char *text, size_t len, uint64_t max, uint64_t *out);

#endif
