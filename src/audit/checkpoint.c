/*
 * checkpoint.c — the audit key file and signed checkpoints (the formats are
 * at the top of checkpoint.h).
 *
 * Invariants:
 *  1. Only a body this file wrote is ever signed: audit_checkpoint_sign
 *     formats it from typed values, so every signed checkpoint parses back
 *     to the same values (round trip), and no caller text reaches the
 *     signature without passing the name rules.
 *  2. A note's text is read only after a signature of the verifier's key
 *     over it has verified (the spec: unsigned text MUST be ignored). Its
 *     form (UTF-8, no control characters, line ends, signature lines) is
 *     checked first, because that only decides where the text ends.
 *  3. Each accepted value has exactly one accepted spelling: decimals are
 *     canonical, base64 is canonical (padding and unused bits), the key ID
 *     is 8 lowercase hex digits, there is exactly one time line. A checkpoint
 *     that verifies is thus byte-for-byte the one the key signed.
 *  4. Every parser reads through explicit (pointer, length) bounds; limits
 *     (note, body, name, signature count) are checked before any work that
 *     grows with the input. Nothing here allocates while parsing.
 *  5. The seed is wiped (OPENSSL_cleanse) from every buffer that held it
 *     before that memory is released; only the EVP_PKEY keeps the key.
 */
#include "audit/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bytes.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

struct audit_key {
	EVP_PKEY *pkey;
	struct audit_verifier verifier;
};

/* U+2014 EM DASH then a space: how every signature line starts. */
static const char SIG_PREFIX[] = "\xE2\x80\x94 ";
#define SIG_PREFIX_LEN (sizeof SIG_PREFIX - 1)
/* base64 of a 4-byte key ID and a 64-byte Ed25519 signature. */
#define SIG_B64_LEN 92
/* The longest signature blob of another key that we still parse. */
#define FOREIGN_SIG_MAX 8192
/* "0x01 || public key" in a verifier key string: 33 bytes, 44 characters. */
#define VKEY_B64_LEN 44
#define ROOT_B64_LEN 44
/* The longest base64 this file encodes (roots, signatures, entries). */
#define B64_INPUT_MAX (1024u * 1024 * 1024)

/* ---- text rules ---- */

/* Decodes one UTF-8 sequence at p[0..len): its length, or 0 when it is not
 * well-formed (overlong forms, surrogates and values past U+10FFFF are
 * not). */
static size_t utf8_next(const uint8_t *p, size_t len, uint32_t *cp)
{
	uint8_t b = p[0];
	size_t n;
	uint32_t v, min;
	if (b < 0x80) {
		*cp = b;
		return 1;
	} else if ((b & 0xE0) == 0xC0) {
		n = 2, v = b & 0x1F, min = 0x80;
	} else if ((b & 0xF0) == 0xE0) {
		n = 3, v = b & 0x0F, min = 0x800;
	} else if ((b & 0xF8) == 0xF0) {
		n = 4, v = b & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return n;
}

/* Unicode White_Space (what Go's unicode.IsSpace answers), which the spec
 * forbids in key names. */
static int is_unicode_space(uint32_t cp)
{
	return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 ||
	       cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
	       cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* The key-name rules for len up to max bytes. */
static int name_valid(const char *name, size_t len, size_t max)
{
	if (!name || len == 0 || len > max)
		return 0;
	const uint8_t *p = (const uint8_t *)name;
	size_t pos = 0;
	while (pos < len) {
		uint32_t cp;
		size_t n = utf8_next(p + pos, len - pos, &cp);
		if (n == 0 || cp < 0x20 || cp == 0x7F || cp == '+' || is_unicode_space(cp))
			return 0;
		pos += n;
	}
	return 1;
}

int audit_key_name_valid(const char *name, size_t len)
{
	return name_valid(name, len, AUDIT_KEY_NAME_MAX);
}

/* The note rule: valid UTF-8, no control character but newline. Returns the
 * offset of the first offending byte, or len when there is none. */
static size_t first_bad_char(const uint8_t *p, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		uint32_t cp;
		size_t n = utf8_next(p + pos, len - pos, &cp);
		if (n == 0 || (cp < 0x20 && cp != '\n'))
			return pos;
		pos += n;
	}
	return len;
}

int audit_parse_decimal(const char *text, size_t len, uint64_t max, uint64_t *out)
{
	*out = 0;
	/* 20 digits hold any uint64; a longer run is refused before overflow. */
	if (len == 0 || len > 20 || (len > 1 && text[0] == '0'))
		return DM_ERR_MALFORMED;
	uint64_t value = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return DM_ERR_MALFORMED;
		unsigned digit = (unsigned)(text[i] - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return DM_ERR_MALFORMED;
		value = value * 10 + digit;
	}
	if (value > max)
		return DM_ERR_MALFORMED;
	*out = value;
	return DM_OK;
}

/* ---- base64 ---- */

static int is_b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int audit_base64_encode(const void *bytes, size_t len, struct dm_buf *out)
{
	if (len > B64_INPUT_MAX)
		return DM_ERR_TOO_LARGE;
	size_t chars = (len + 2) / 3 * 4;
	if (dm_buf_reserve(out, chars + 1) != DM_OK)
		return DM_ERR_NOMEM;
	/* EVP_EncodeBlock writes the padded encoding and a NUL, no newlines. */
	int n = EVP_EncodeBlock(out->data + out->len, bytes, (int)len);
	if (n < 0 || (size_t)n != chars)
		return DM_ERR_CRYPTO;
	out->len += chars;
	return DM_OK;
}

int audit_base64_decode(const char *text, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	if (len % 4 != 0 || len > B64_INPUT_MAX)
		return DM_ERR_MALFORMED;
	if (len == 0)
		return DM_OK;
	size_t pad = text[len - 1] == '=' ? (text[len - 2] == '=' ? 2 : 1) : 0;
	/* EVP_DecodeBlock skips surrounding whitespace and decodes '=' as
	 * zero bits wherever it stands: check the alphabet ourselves first. */
	for (size_t i = 0; i < len - pad; i++)
		if (!is_b64_char(text[i]))
			return DM_ERR_MALFORMED;
	size_t full = len / 4 - 1; /* quanta before the last one */
	size_t result = full * 3 + 3 - pad;
	if (result > cap)
		return DM_ERR_TOO_LARGE;
	if (full > 0 &&
	    EVP_DecodeBlock(out, (const unsigned char *)text, (int)(full * 4)) != (int)(full * 3))
		return DM_ERR_MALFORMED;
	/* The last quantum goes through scratch buffers, its padding read as
	 * zero bits: EVP_DecodeBlock writes 3 bytes whatever the padding says
	 * (and how it treats '=' is not ours to rely on). */
	const char *tail = text + full * 4;
	unsigned char quantum[4];
	memcpy(quantum, tail, 4);
	for (size_t i = 4 - pad; i < 4; i++)
		quantum[i] = 'A';
	uint8_t last[4];
	if (EVP_DecodeBlock(last, quantum, 4) != 3)
		return DM_ERR_MALFORMED;
	/* Canonical: the real bytes must encode back to these 4 characters
	 * (this refuses non-zero unused bits). */
	unsigned char again[5];
	if (EVP_EncodeBlock(again, last, (int)(3 - pad)) != 4 || memcmp(again, tail, 4) != 0)
		return DM_ERR_MALFORMED;
	memcpy(out + full * 3, last, 3 - pad);
	*out_len = result;
	return DM_OK;
}

/* ---- keys ---- */

int audit_key_id(const char *name, size_t name_len, const uint8_t public_key[AUDIT_KEY_PUBLIC_LEN],
                 uint32_t *out)
{
	*out = 0;
	uint8_t sep[2] = {'\n', AUDIT_SIG_TYPE_ED25519};
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned digest_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	         EVP_DigestUpdate(ctx, name, name_len) == 1 &&
	         EVP_DigestUpdate(ctx, sep, sizeof sep) == 1 &&
	         EVP_DigestUpdate(ctx, public_key, AUDIT_KEY_PUBLIC_LEN) == 1 &&
	         EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1 && digest_len == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return DM_ERR_CRYPTO;
	*out = get_be32(digest);
	return DM_OK;
}

int audit_key_from_seed(const uint8_t seed[AUDIT_KEY_SEED_LEN], const char *name,
                        struct audit_key **out)
{
	*out = NULL;
	if (!name || !audit_key_name_valid(name, strlen(name)))
		return DM_ERR_INVALID;
	struct audit_key *key = dm_calloc(1, sizeof *key);
	if (!key)
		return DM_ERR_NOMEM;
	size_t pub_len = AUDIT_KEY_PUBLIC_LEN;
	key->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, AUDIT_KEY_SEED_LEN);
	int rc = key->pkey &&
	                 EVP_PKEY_get_raw_public_key(key->pkey, key->verifier.public_key,
	                                             &pub_len) == 1 &&
	                 pub_len == AUDIT_KEY_PUBLIC_LEN
	             ? DM_OK
	             : DM_ERR_CRYPTO;
	if (rc == DM_OK) {
		memcpy(key->verifier.name, name, strlen(name) + 1);
		rc = audit_key_id(name, strlen(name), key->verifier.public_key,
		                  &key->verifier.key_id);
	}
	if (rc != DM_OK) {
		audit_key_free(key);
		return rc;
	}
	*out = key;
	return DM_OK;
}

void audit_key_free(struct audit_key *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey); /* OpenSSL clears the private key it frees */
	OPENSSL_cleanse(key, sizeof *key);
	dm_free(key);
}

const struct audit_verifier *audit_key_verifier(const struct audit_key *key)
{
	return &key->verifier;
}

static int read_seed(const char *path, uint8_t seed[AUDIT_KEY_SEED_LEN])
{
	/* Missing is an answer (the caller may create it), not an error. */
	return dm_read_secret(path, "the audit key file", 1, seed, AUDIT_KEY_SEED_LEN);
}

/* Creates path holding seed, mode 0600, durable (its directory synced too:
 * a key whose signatures were handed out must survive a crash). Never
 * replaces a file. */
static int write_seed(const char *path, const uint8_t seed[AUDIT_KEY_SEED_LEN])
{
	int rc = dm_write_secret(path, "the audit key file", 1, seed, AUDIT_KEY_SEED_LEN);
	char *dir = rc == DM_OK ? dm_parent_dir(path) : NULL;
	if (rc == DM_OK)
		rc = dir ? dm_fsync_dir(dir) : DM_ERR_NOMEM;
	dm_free(dir);
	if (rc != DM_OK && rc != DM_ERR_EXISTS)
		unlink(path);
	return rc;
}

int audit_key_load(const char *path, const char *name, struct audit_key **out)
{
	*out = NULL;
	if (!name || !audit_key_name_valid(name, strlen(name))) {
		dm_error("audit key name '%s' is not a valid signed-note key name (no spaces, "
		         "no '+', 1 to %d bytes)",
		         name ? name : "", AUDIT_KEY_NAME_MAX);
		return DM_ERR_INVALID;
	}
	uint8_t seed[AUDIT_KEY_SEED_LEN];
	int rc = read_seed(path, seed);
	if (rc == DM_OK)
		rc = audit_key_from_seed(seed, name, out);
	OPENSSL_cleanse(seed, sizeof seed);
	return rc;
}

int audit_key_load_or_create(const char *path, const char *name, struct audit_key **out)
{
	int rc = audit_key_load(path, name, out);
	if (rc != DM_ERR_NOT_FOUND)
		return rc;
	uint8_t seed[AUDIT_KEY_SEED_LEN];
	if (RAND_priv_bytes(seed, sizeof seed) != 1)
		return DM_ERR_CRYPTO;
	rc = write_seed(path, seed);
	OPENSSL_cleanse(seed, sizeof seed);
	if (rc == DM_OK)
		dm_info("%s: created the audit signing key", path);
	if (rc == DM_OK || rc == DM_ERR_EXISTS) /* EXISTS: another process won the race */
		rc = audit_key_load(path, name, out);
	return rc;
}

/* ---- verifier key strings ---- */

int audit_verifier_format(const struct audit_verifier *verifier, struct dm_buf *out)
{
	size_t start = out->len;
	uint8_t typed[1 + AUDIT_KEY_PUBLIC_LEN];
	typed[0] = AUDIT_SIG_TYPE_ED25519;
	memcpy(typed + 1, verifier->public_key, AUDIT_KEY_PUBLIC_LEN);
	int rc = dm_buf_printf(out, "%s+%08" PRIx32 "+", verifier->name, verifier->key_id);
	if (rc == DM_OK)
		rc = audit_base64_encode(typed, sizeof typed, out);
	if (rc != DM_OK)
		out->len = start;
	return rc;
}

int audit_verifier_parse(const char *text, size_t len, struct audit_verifier *out, char *err,
                         size_t err_len)
{
	memset(out, 0, sizeof *out);
	dm_format_err(err, err_len, "%s", "");
	const char *plus1 = memchr(text, '+', len);
	const char *plus2 = plus1 ? memchr(plus1 + 1, '+', len - (size_t)(plus1 + 1 - text)) : NULL;
	if (!plus2) {
		dm_format_err(err, err_len, "a verifier key is NAME+KEYID+KEY: no two '+' found");
		return DM_ERR_MALFORMED;
	}
	size_t name_len = (size_t)(plus1 - text);
	const char *hex = plus1 + 1;
	size_t hex_len = (size_t)(plus2 - hex);
	const char *b64 = plus2 + 1;
	size_t b64_len = len - (size_t)(b64 - text);
	if (!audit_key_name_valid(text, name_len)) {
		dm_format_err(err, err_len, "the verifier key's name is not a valid key name");
		return DM_ERR_MALFORMED;
	}
	uint32_t key_id = 0;
	if (hex_len != 8) {
		dm_format_err(err, err_len, "the verifier key's ID is not 8 hex digits");
		return DM_ERR_MALFORMED;
	}
	for (size_t i = 0; i < 8; i++) {
		char c = hex[i];
		unsigned digit;
		if (c >= '0' && c <= '9')
			digit = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			digit = (unsigned)(c - 'a' + 10);
		else {
			dm_format_err(err, err_len,
			        "the verifier key's ID is not 8 lowercase hex digits");
			return DM_ERR_MALFORMED;
		}
		key_id = key_id << 4 | digit;
	}
	uint8_t typed[1 + AUDIT_KEY_PUBLIC_LEN + 1];
	size_t typed_len = 0;
	int rc = audit_base64_decode(b64, b64_len, typed, sizeof typed, &typed_len);
	if (rc != DM_OK || typed_len == 0) {
		dm_format_err(err, err_len, "the verifier key's public key is not canonical base64");
		return DM_ERR_MALFORMED;
	}
	if (typed[0] != AUDIT_SIG_TYPE_ED25519) {
		dm_format_err(err, err_len,
		        "the verifier key has signature type 0x%02x; only Ed25519 "
		        "(0x01) is supported",
		        typed[0]);
		return DM_ERR_UNSUPPORTED;
	}
	if (typed_len != 1 + AUDIT_KEY_PUBLIC_LEN) {
		dm_format_err(err, err_len, "the verifier key's Ed25519 public key is not 32 bytes");
		return DM_ERR_MALFORMED;
	}
	uint32_t expected = 0;
	rc = audit_key_id(text, name_len, typed + 1, &expected);
	if (rc != DM_OK)
		return rc;
	if (expected != key_id) {
		dm_format_err(err, err_len,
		        "the verifier key's ID %08" PRIx32 " does not match its name and key "
		        "(%08" PRIx32 ")",
		        key_id, expected);
		return DM_ERR_CRYPTO;
	}
	memcpy(out->name, text, name_len);
	out->name[name_len] = '\0';
	out->key_id = key_id;
	memcpy(out->public_key, typed + 1, AUDIT_KEY_PUBLIC_LEN);
	return DM_OK;
}

/* ---- signing and verifying ---- */

static int ed25519_sign(EVP_PKEY *pkey, const void *msg, size_t len,
                        uint8_t sig[AUDIT_SIGNATURE_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t sig_len = AUDIT_SIGNATURE_LEN;
	/* Ed25519 hashes internally: no digest (NULL) and one-shot only. */
	int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
	         EVP_DigestSign(ctx, sig, &sig_len, msg, len) == 1 &&
	         sig_len == AUDIT_SIGNATURE_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? DM_OK : DM_ERR_CRYPTO;
}

/* DM_OK when sig is verifier's signature of msg, DM_ERR_CRYPTO otherwise. */
static int ed25519_verify(const struct audit_verifier *verifier, const void *msg, size_t len,
                          const uint8_t sig[AUDIT_SIGNATURE_LEN])
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, verifier->public_key,
	                                             AUDIT_KEY_PUBLIC_LEN);
	EVP_MD_CTX *ctx = pkey ? EVP_MD_CTX_new() : NULL;
	int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
	         EVP_DigestVerify(ctx, sig, AUDIT_SIGNATURE_LEN, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok ? DM_OK : DM_ERR_CRYPTO;
}

int audit_checkpoint_sign(const struct audit_key *key, const char *origin, uint64_t size,
                          const uint8_t root[MERKLE_HASH_LEN], int64_t time_ms, struct dm_buf *out)
{
	if (!key || !origin || !name_valid(origin, strlen(origin), AUDIT_ORIGIN_MAX) ||
	    size > AUDIT_CHECKPOINT_SIZE_MAX || time_ms < 0)
		return DM_ERR_INVALID;
	size_t start = out->len;
	int rc = dm_buf_printf(out, "%s\n%" PRIu64 "\n", origin, size);
	if (rc == DM_OK)
		rc = audit_base64_encode(root, MERKLE_HASH_LEN, out);
	if (rc == DM_OK)
		rc = dm_buf_printf(out, "\ntime %" PRId64 "\n", time_ms);
	/* The origin is at most AUDIT_ORIGIN_MAX bytes, so the body stays below
	 * its limit; checked anyway so that sign and open agree by construction. */
	if (rc == DM_OK && out->len - start > AUDIT_CHECKPOINT_BODY_MAX)
		rc = DM_ERR_INVALID;
	uint8_t blob[4 + AUDIT_SIGNATURE_LEN];
	put_be32(blob, key->verifier.key_id);
	if (rc == DM_OK)
		rc = ed25519_sign(key->pkey, out->data + start, out->len - start, blob + 4);
	if (rc == DM_OK)
		rc = dm_buf_printf(out, "\n%s%s ", SIG_PREFIX, key->verifier.name);
	if (rc == DM_OK)
		rc = audit_base64_encode(blob, sizeof blob, out);
	if (rc == DM_OK)
		rc = dm_buf_printf(out, "\n"); /* and a NUL after it, not counted */
	if (rc != DM_OK)
		out->len = start;
	return rc;
}

/* Checks the signature lines sigs[0..len) (each ending in '\n') against
 * the verifier over body. */
static int check_signatures(const char *sigs, size_t len, const char *body, size_t body_len,
                            const struct audit_verifier *verifier, char *err, size_t err_len)
{
	size_t pos = 0, lines = 0, ours = 0;
	size_t verifier_name_len = strlen(verifier->name);
	while (pos < len) {
		const char *line = sigs + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = (size_t)(nl - line); /* sigs ends in '\n': nl is set */
		pos += line_len + 1;
		lines++;
		if (lines > AUDIT_NOTE_SIGNATURES_MAX) {
			dm_format_err(err, err_len, "more than %d signature lines",
			        AUDIT_NOTE_SIGNATURES_MAX);
			return DM_ERR_TOO_LARGE;
		}
		if (line_len < SIG_PREFIX_LEN || memcmp(line, SIG_PREFIX, SIG_PREFIX_LEN) != 0) {
			dm_format_err(err, err_len,
			        "signature line %zu does not start with an em dash and a space",
			        lines);
			return DM_ERR_MALFORMED;
		}
		const char *name = line + SIG_PREFIX_LEN;
		size_t rest = line_len - SIG_PREFIX_LEN;
		const char *space = memchr(name, ' ', rest);
		if (!space) {
			dm_format_err(err, err_len, "signature line %zu has no space after the key name",
			        lines);
			return DM_ERR_MALFORMED;
		}
		size_t name_len = (size_t)(space - name);
		const char *b64 = space + 1;
		size_t b64_len = rest - name_len - 1;
		if (!audit_key_name_valid(name, name_len)) {
			dm_format_err(err, err_len, "signature line %zu: not a valid key name", lines);
			return DM_ERR_MALFORMED;
		}
		if (b64_len > (FOREIGN_SIG_MAX + 2) / 3 * 4) {
			dm_format_err(err, err_len, "signature line %zu: signature too long", lines);
			return DM_ERR_TOO_LARGE;
		}
		uint8_t blob[FOREIGN_SIG_MAX];
		size_t blob_len = 0;
		if (audit_base64_decode(b64, b64_len, blob, sizeof blob, &blob_len) != DM_OK ||
		    blob_len < 5) {
			dm_format_err(
			    err, err_len,
			    "signature line %zu: the signature is not canonical base64 of a key "
			    "ID and a signature",
			    lines);
			return DM_ERR_MALFORMED;
		}
		/* Ours only when both the name and the key ID match (the spec:
		 * another key may share either one). */
		if (name_len != verifier_name_len || memcmp(name, verifier->name, name_len) != 0 ||
		    get_be32(blob) != verifier->key_id)
			continue;
		if (blob_len != 4 + AUDIT_SIGNATURE_LEN ||
		    ed25519_verify(verifier, body, body_len, blob + 4) != DM_OK) {
			dm_format_err(err, err_len,
			        "signature line %zu: the signature of %s (key ID %08" PRIx32
			        ") does not verify",
			        lines, verifier->name, verifier->key_id);
			return DM_ERR_CRYPTO;
		}
		ours++;
	}
	if (ours == 0) {
		dm_format_err(err, err_len, "no signature of %s (key ID %08" PRIx32 ")", verifier->name,
		        verifier->key_id);
		return DM_ERR_CRYPTO;
	}
	return DM_OK;
}

/* The next line of text[*pos..len), which ends in '\n' (the body does). */
static void next_line(const char *text, size_t len, size_t *pos, const char **line,
                      size_t *line_len)
{
	*line = text + *pos;
	const char *nl = memchr(*line, '\n', len - *pos);
	*line_len = (size_t)(nl - *line);
	*pos += *line_len + 1;
}

static int parse_body(const char *body, size_t len, const char *expected_origin,
                      struct audit_checkpoint *out, char *err, size_t err_len)
{
	size_t pos = 0;
	const char *line;
	size_t line_len;
	if (pos >= len) {
		dm_format_err(err, err_len, "the checkpoint has no origin line");
		return DM_ERR_MALFORMED;
	}
	next_line(body, len, &pos, &line, &line_len);
	if (line_len == 0) {
		dm_format_err(err, err_len, "the checkpoint's origin line is empty");
		return DM_ERR_MALFORMED;
	}
	/* line_len < AUDIT_CHECKPOINT_BODY_MAX: the body is within its limit. */
	memcpy(out->origin, line, line_len);
	out->origin[line_len] = '\0';
	if (expected_origin && strcmp(out->origin, expected_origin) != 0) {
		dm_format_err(err, err_len, "the checkpoint's origin is not %s", expected_origin);
		return DM_ERR_INVALID;
	}
	if (pos >= len) {
		dm_format_err(err, err_len, "the checkpoint has no tree size line");
		return DM_ERR_MALFORMED;
	}
	next_line(body, len, &pos, &line, &line_len);
	if (audit_parse_decimal(line, line_len, AUDIT_CHECKPOINT_SIZE_MAX, &out->size) != DM_OK) {
		dm_format_err(err, err_len,
		        "the checkpoint's tree size is not a canonical decimal below 2^63");
		return DM_ERR_MALFORMED;
	}
	if (pos >= len) {
		dm_format_err(err, err_len, "the checkpoint has no root hash line");
		return DM_ERR_MALFORMED;
	}
	next_line(body, len, &pos, &line, &line_len);
	size_t root_len = 0;
	if (line_len != ROOT_B64_LEN ||
	    audit_base64_decode(line, line_len, out->root, sizeof out->root, &root_len) != DM_OK ||
	    root_len != MERKLE_HASH_LEN) {
		dm_format_err(err, err_len,
		        "the checkpoint's root hash is not canonical base64 of 32 "
		        "bytes");
		return DM_ERR_MALFORMED;
	}
	if (pos >= len) {
		dm_format_err(err, err_len, "the checkpoint has no time line");
		return DM_ERR_MALFORMED;
	}
	next_line(body, len, &pos, &line, &line_len);
	uint64_t time_ms = 0;
	if (line_len < 5 || memcmp(line, "time ", 5) != 0 ||
	    audit_parse_decimal(line + 5, line_len - 5, INT64_MAX, &time_ms) != DM_OK) {
		dm_format_err(err, err_len,
		        "the checkpoint's fourth line is not 'time <ms>' with a "
		        "canonical decimal");
		return DM_ERR_MALFORMED;
	}
	out->time_ms = (int64_t)time_ms;
	if (pos < len) {
		dm_format_err(err, err_len, "the checkpoint has a line after its time line");
		return DM_ERR_MALFORMED;
	}
	return DM_OK;
}

int audit_note_open(const char *note, size_t len, const struct audit_verifier *verifier,
                    size_t *text_len, char *err, size_t err_len)
{
	*text_len = 0;
	dm_format_err(err, err_len, "%s", "");
	if (len > AUDIT_NOTE_MAX) {
		dm_format_err(err, err_len, "the note is %zu bytes, more than %d", len, AUDIT_NOTE_MAX);
		return DM_ERR_TOO_LARGE;
	}
	if (len == 0 || note[len - 1] != '\n') {
		dm_format_err(err, err_len, "the note does not end in a newline");
		return DM_ERR_MALFORMED;
	}
	size_t bad = first_bad_char((const uint8_t *)note, len);
	if (bad < len) {
		dm_format_err(err, err_len,
		        "byte %zu of the note is a control character or not valid UTF-8", bad);
		return DM_ERR_MALFORMED;
	}
	/* The text ends at the last blank line: the signature lines cannot
	 * hold one, the text may. */
	size_t split = len;
	for (size_t i = len - 1; i > 0; i--) {
		if (note[i] == '\n' && note[i - 1] == '\n') {
			split = i - 1;
			break;
		}
	}
	if (split == len) {
		dm_format_err(err, err_len, "no blank line between the text and the signatures");
		return DM_ERR_MALFORMED;
	}
	if (split == 0) {
		dm_format_err(err, err_len, "the note's text is empty");
		return DM_ERR_MALFORMED;
	}
	size_t body_len = split + 1; /* the text includes its final newline */
	size_t sigs = split + 2;
	if (sigs >= len) {
		dm_format_err(err, err_len, "no signature lines after the blank line");
		return DM_ERR_MALFORMED;
	}
	int rc = check_signatures(note + sigs, len - sigs, note, body_len, verifier, err, err_len);
	if (rc == DM_OK)
		*text_len = body_len;
	return rc;
}

int audit_checkpoint_open(const char *text, size_t len, const struct audit_verifier *verifier,
                          const char *expected_origin, struct audit_checkpoint *out, char *err,
                          size_t err_len)
{
	memset(out, 0, sizeof *out);
	size_t body_len = 0;
	int rc = audit_note_open(text, len, verifier, &body_len, err, err_len);
	if (rc == DM_OK && body_len > AUDIT_CHECKPOINT_BODY_MAX) {
		dm_format_err(err, err_len, "the checkpoint text is %zu bytes, more than %d", body_len,
		        AUDIT_CHECKPOINT_BODY_MAX);
		rc = DM_ERR_TOO_LARGE;
	}
	if (rc == DM_OK)
		rc = parse_body(text, body_len, expected_origin, out, err, err_len);
	if (rc != DM_OK)
		memset(out, 0, sizeof *out);
	return rc;
}
