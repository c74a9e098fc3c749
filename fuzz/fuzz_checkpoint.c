/*
 * fuzz_checkpoint.c — libFuzzer target for the audit log's signed notes and
 * the offline verifier's input parsers (audit/checkpoint, audit/verify).
 *
 * The first input byte picks how the rest is used:
 *
 *   0  a signed note, opened as a checkpoint with a fixed key (seed 00..1f,
 *      name "domicile.test", the key of tests/test_checkpoint.c)
 *   1  a checkpoint body: the target signs it with the fixed key (directly
 *      through OpenSSL, not with audit_checkpoint_sign) and opens the note,
 *      so the body parser sees the fuzzer's bytes behind a valid signature
 *   2  "VERIFIER-KEY\nNOTE": the key string is parsed and, if accepted, the
 *      note is opened with it
 *   3  an entries export ({"entries": [...]}), then every entry's "index"
 *   4  inclusion proofs ({"index", "size", "hashes"}), one checked against a
 *      fixed checkpoint
 *   5  base64 and decimals
 *
 * Whatever is accepted must hold up: a note that opens carries a signature
 * line of the verifier's key that OpenSSL verifies on its own over exactly
 * the text before the blank line; an accepted checkpoint signs back to the
 * same text (one spelling per value); an accepted key string formats back to
 * itself; decoded base64 and decimals encode back to their input. Any
 * refusal must say why. Leaks are caught by libFuzzer's leak checker.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/checkpoint.h"
#include "audit/verify.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"

#define NAME "domicile.test"
#define DASH "\xE2\x80\x94 "

static struct audit_key *fixed_key;
static EVP_PKEY *fixed_pkey;

static void init(void)
{
	if (fixed_key)
		return;
	uint8_t seed[32];
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)i;
	if (audit_key_from_seed(seed, NAME, &fixed_key) != DM_OK)
		abort();
	fixed_pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	if (!fixed_pkey)
		abort();
}

/* Lenient base64 for the independent check: OpenSSL's decoder, padding
 * subtracted. Returns the length, or -1. */
static int loose_b64(const char *text, size_t len, uint8_t *out, size_t cap)
{
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap || len > 4096)
		return -1;
	int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
	if (n < 0)
		return -1;
	if (text[len - 1] == '=')
		n--;
	if (text[len - 2] == '=')
		n--;
	return n;
}

/* 1 when some signature line after the body is verifier's and verifies
 * over note[0..body_len) with OpenSSL directly. */
static int independently_signed(const char *note, size_t len, size_t body_len,
                                const struct audit_verifier *v)
{
	EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, v->public_key, 32);
	if (!pub)
		abort();
	char prefix[AUDIT_KEY_NAME_MAX + 8];
	int prefix_len = snprintf(prefix, sizeof prefix, DASH "%s ", v->name);
	int ok = 0;
	size_t pos = body_len + 1; /* past the blank line */
	while (!ok && pos < len) {
		const char *line = note + pos;
		const char *nl = memchr(line, '\n', len - pos);
		if (!nl)
			break;
		size_t line_len = (size_t)(nl - line);
		pos += line_len + 1;
		if (line_len <= (size_t)prefix_len || memcmp(line, prefix, (size_t)prefix_len) != 0)
			continue;
		uint8_t blob[4096];
		int n =
		    loose_b64(line + prefix_len, line_len - (size_t)prefix_len, blob, sizeof blob);
		if (n != 68)
			continue;
		uint32_t id = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 |
		              (uint32_t)blob[2] << 8 | blob[3];
		if (id != v->key_id)
			continue;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
		     EVP_DigestVerify(ctx, blob + 4, 64, (const uint8_t *)note, body_len) == 1;
		EVP_MD_CTX_free(ctx);
	}
	EVP_PKEY_free(pub);
	return ok;
}

/* Opens note with v and checks whatever is accepted. */
static void open_note(const char *note, size_t len, const struct audit_verifier *v, int ours)
{
	char err[512];
	size_t body_len = 99;
	int rc = audit_note_open(note, len, v, &body_len, err, sizeof err);
	if (rc != DM_OK) {
		if (body_len != 0 || err[0] == '\0')
			abort();
	} else {
		if (err[0] != '\0' || body_len == 0 || body_len >= len ||
		    note[body_len - 1] != '\n' || note[body_len] != '\n')
			abort();
		if (!independently_signed(note, len, body_len, v))
			abort();
	}
	struct audit_checkpoint cp;
	int rc2 = audit_checkpoint_open(note, len, v, NULL, &cp, err, sizeof err);
	if (rc2 != DM_OK) {
		if (err[0] == '\0' || cp.size != 0 || cp.origin[0] != '\0')
			abort();
		return;
	}
	if (rc != DM_OK)
		abort(); /* a checkpoint is a note first */
	/* One spelling: with our key, signing the values again gives the same
	 * text (Ed25519 is deterministic, so even the same signature). */
	if (ours) {
		struct dm_buf again = {0};
		if (audit_checkpoint_sign(fixed_key, cp.origin, cp.size, cp.root, cp.time_ms,
		                          &again) == DM_OK) {
			if (again.len < body_len || memcmp(again.data, note, body_len) != 0)
				abort();
		} else if (audit_key_name_valid(cp.origin, strlen(cp.origin))) {
			/* sign refuses only origins against the key-name rules
			 * (spaces, '+'), which a checkpoint may carry: the spec
			 * tells clients not to assume its form */
			abort();
		}
		dm_buf_free(&again);
	}
}

static void sign_and_open(const uint8_t *body, size_t len)
{
	if (len > 4096)
		return;
	uint8_t sig[64];
	size_t sig_len = sizeof sig;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, fixed_pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &sig_len, body, len) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	const struct audit_verifier *v = audit_key_verifier(fixed_key);
	uint8_t blob[68] = {(uint8_t)(v->key_id >> 24), (uint8_t)(v->key_id >> 16),
	                    (uint8_t)(v->key_id >> 8), (uint8_t)v->key_id};
	memcpy(blob + 4, sig, 64);
	struct dm_buf note = {0};
	if (dm_buf_append(&note, body, len) != DM_OK ||
	    dm_buf_printf(&note, "\n" DASH NAME " ") != DM_OK ||
	    audit_base64_encode(blob, sizeof blob, &note) != DM_OK ||
	    dm_buf_append(&note, "\n", 1) != DM_OK)
		abort();
	open_note((const char *)note.data, note.len, v, 1);
	dm_buf_free(&note);
}

static void key_and_note(const char *text, size_t len)
{
	const char *nl = memchr(text, '\n', len);
	size_t key_len = nl ? (size_t)(nl - text) : len;
	struct audit_verifier v;
	char err[256];
	if (audit_verifier_parse(text, key_len, &v, err, sizeof err) != DM_OK) {
		if (err[0] == '\0' || v.key_id != 0 || v.name[0] != '\0')
			abort();
		return;
	}
	/* Accepted: it formats back to itself and its ID is its own. */
	struct dm_buf again = {0};
	uint32_t id;
	if (audit_verifier_format(&v, &again) != DM_OK || again.len != key_len ||
	    memcmp(again.data, text, key_len) != 0 ||
	    audit_key_id(v.name, strlen(v.name), v.public_key, &id) != DM_OK || id != v.key_id)
		abort();
	dm_buf_free(&again);
	if (nl)
		open_note(nl + 1, len - key_len - 1, &v, 0);
}

static void export(const char *text, size_t len)
{
	struct audit_entries entries = {0};
	char err[512];
	if (audit_entries_add_export(&entries, text, len, "fuzz.json", err, sizeof err) != DM_OK) {
		if (entries.count != 0 || strncmp(err, "fuzz.json: ", 11) != 0)
			abort();
	}
	for (uint64_t i = 0; i < entries.count; i++) {
		const uint8_t *entry;
		size_t entry_len;
		uint64_t index;
		audit_entries_get(&entries, i, &entry, &entry_len);
		if (entry_len > AUDIT_ENTRY_MAX)
			abort();
		(void)audit_entry_index(entry, entry_len, &index, err, sizeof err);
	}
	audit_entries_free(&entries);
}

static void proofs(const char *text, size_t len)
{
	struct audit_inclusion_proof *list;
	size_t count;
	char err[512];
	if (audit_inclusion_proofs_parse(text, len, "fuzz.json", &list, &count, err, sizeof err) !=
	    DM_OK) {
		if (list || count || strncmp(err, "fuzz.json: ", 11) != 0)
			abort();
		return;
	}
	/* A fixed checkpoint of size 3 over three known entries. */
	static const char *entries[3] = {"{\"index\":0}", "{\"index\":1}", "{\"index\":2}"};
	uint8_t leaves[3][32], root[32], l01[32];
	for (int i = 0; i < 3; i++)
		if (merkle_leaf_hash(entries[i], strlen(entries[i]), leaves[i]) != DM_OK)
			abort();
	if (merkle_node_hash(leaves[0], leaves[1], l01) != DM_OK ||
	    merkle_node_hash(l01, leaves[2], root) != DM_OK)
		abort();
	struct dm_buf cp = {0};
	if (audit_checkpoint_sign(fixed_key, "fuzz/audit", 3, root, 1, &cp) != DM_OK)
		abort();
	for (size_t i = 0; i < count; i++) {
		if (list[i].index >= list[i].size || list[i].count > MERKLE_MAX_PROOF)
			abort();
		uint64_t at = list[i].index < 3 ? list[i].index : 0;
		char reason[512];
		int rc = audit_verify_inclusion(
		    audit_key_verifier(fixed_key), "fuzz/audit", (const char *)cp.data, cp.len,
		    &list[i], entries[at], strlen(entries[at]), NULL, reason, sizeof reason);
		if (rc == DM_OK) {
			/* Only the true audit path verifies. */
			const uint8_t *want[2] = {leaves[1], leaves[2]};
			if (at == 1)
				want[0] = leaves[0];
			else if (at == 2)
				want[0] = l01;
			size_t n = at == 2 ? 1 : 2;
			if (list[i].size != 3 || list[i].index != at || list[i].count != n)
				abort();
			if (memcmp(list[i].hashes[0], want[0], 32) != 0 ||
			    (n == 2 && memcmp(list[i].hashes[1], want[1], 32) != 0))
				abort();
		} else if (reason[0] == '\0') {
			abort();
		}
	}
	dm_buf_free(&cp);
	dm_free(list);
}

static void base64_and_decimals(const char *text, size_t len)
{
	uint8_t out[1024];
	size_t n;
	if (audit_base64_decode(text, len, out, sizeof out, &n) == DM_OK) {
		struct dm_buf again = {0};
		if (audit_base64_encode(out, n, &again) != DM_OK || again.len != len ||
		    (len && memcmp(again.data, text, len) != 0))
			abort();
		dm_buf_free(&again);
	}
	uint64_t value;
	if (audit_parse_decimal(text, len, UINT64_MAX, &value) == DM_OK) {
		char again[32];
		int used = snprintf(again, sizeof again, "%" PRIu64, value);
		if ((size_t)used != len || memcmp(again, text, len) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	if (size == 0)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 6) {
	case 0:
		open_note(text, len, audit_key_verifier(fixed_key), 1);
		break;
	case 1:
		sign_and_open(data + 1, len);
		break;
	case 2:
		key_and_note(text, len);
		break;
	case 3:
		export(text, len);
		break;
	case 4:
		proofs(text, len);
		break;
	default:
		base64_and_decimals(text, len);
		break;
	}
	return 0;
}
