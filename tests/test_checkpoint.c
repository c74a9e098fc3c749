/*
 * test_checkpoint.c — the audit signing key, verifier key strings, and
 * signed checkpoints (C2SP signed-note + tlog-checkpoint).
 *
 * The known answers were computed outside this code with the OpenSSL 3.0
 * command line, from the seed 00 01 .. 1f and the key name "domicile.test":
 *
 *   printf 302e020100300506032b657004220420 | xxd -r -p > key.der
 *   python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(32)))' >> key.der
 *   openssl pkey -inform DER -in key.der -out key.pem
 *   openssl pkey -in key.pem -pubout -outform DER | tail -c 32 > pub.bin
 *   (printf 'domicile.test\n\001'; cat pub.bin) | openssl dgst -sha256 -binary \
 *       | head -c 4 > id.bin                                  # 9c74a595
 *   (printf '\001'; cat pub.bin) | openssl base64 -A           # verifier key
 *   python3 -c '...bytes(range(32, 64))' | openssl base64 -A > root.b64
 *   printf 'domicile.cn-shanghai-1/audit\n41\n%s\ntime 1732400000123\n' \
 *       "$(cat root.b64)" > body.txt
 *   openssl pkeyutl -sign -inkey key.pem -rawin -in body.txt > sig.bin
 *   cat id.bin sig.bin | openssl base64 -A                     # signature line
 *
 * Ed25519 is deterministic, so the same seed and text give the same bytes.
 * The interoperability note (example.com/foo) is the example of the Go
 * sumdb/note tests as quoted by independent implementations; it was checked
 * with `openssl pkeyutl -verify` before being written here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/checkpoint.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

#define KAT_VKEY "domicile.test+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
#define KAT_ORIGIN "domicile.cn-shanghai-1/audit"
#define KAT_BODY                                                                                   \
	"domicile.cn-shanghai-1/audit\n"                                                           \
	"41\n"                                                                                     \
	"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n"                                           \
	"time 1732400000123\n"
#define KAT_SIG_LINE                                                                               \
	"\xE2\x80\x94 domicile.test "                                                              \
	"nHSllbCHevhYrS4SZfu/4htu/WWoNeRy4PTTwRf19AKSAqqqW5gtG2N0GxzDbIF6O7npECmAdjgiSNkglTh9Nwo"  \
	"IwAQ=\n"

#define FOO_VKEY "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
#define FOO_NOTE                                                                                   \
	"This is an example message.\n\n\xE2\x80\x94 example.com/foo "                             \
	"Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72Ine"  \
	"yaQM=\n"

#define DASH "\xE2\x80\x94 "

/* ---- helpers ---- */

static void kat_seed(uint8_t seed[32], uint8_t first)
{
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(first + i);
}

static struct audit_key *make_key(uint8_t first, const char *name)
{
	uint8_t seed[32];
	kat_seed(seed, first);
	struct audit_key *key = NULL;
	assert_int_equal(audit_key_from_seed(seed, name, &key), DM_OK);
	return key;
}

static void kat_root(uint8_t root[32])
{
	for (int i = 0; i < 32; i++)
		root[i] = (uint8_t)(32 + i);
}

/* Signs any text with the seed starting at first, independently of
 * audit_checkpoint_sign: the note is built by hand, so that bodies the
 * signer would never produce can reach the body parser. */
static void sign_raw(struct dm_buf *out, uint8_t first, const char *name, const char *body)
{
	uint8_t seed[32];
	kat_seed(seed, first);
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	assert_non_null(pkey);
	uint8_t pub[32];
	size_t pub_len = 32;
	assert_int_equal(EVP_PKEY_get_raw_public_key(pkey, pub, &pub_len), 1);
	uint32_t id;
	assert_int_equal(audit_key_id(name, strlen(name), pub, &id), DM_OK);
	uint8_t blob[68] = {(uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
	                    (uint8_t)id};
	size_t sig_len = 64;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey), 1);
	assert_int_equal(
	    EVP_DigestSign(ctx, blob + 4, &sig_len, (const uint8_t *)body, strlen(body)), 1);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	out->len = 0;
	assert_int_equal(dm_buf_printf(out, "%s\n" DASH "%s ", body, name), DM_OK);
	assert_int_equal(audit_base64_encode(blob, sizeof blob, out), DM_OK);
	assert_int_equal(dm_buf_append(out, "\n", 1), DM_OK);
}

static int open_text(const char *text, size_t len, const struct audit_verifier *v,
                     struct audit_checkpoint *cp)
{
	char err[256];
	int rc = audit_checkpoint_open(text, len, v, NULL, cp, err, sizeof err);
	/* Every refusal says why; an acceptance leaves no message. */
	if (rc == DM_OK)
		assert_string_equal(err, "");
	else
		assert_true(err[0] != '\0');
	return rc;
}

static int open_buf(const struct dm_buf *buf, const struct audit_verifier *v)
{
	struct audit_checkpoint cp;
	return open_text((const char *)buf->data, buf->len, v, &cp);
}

static int make_dir(void **state)
{
	static char dir[64];
	snprintf(dir, sizeof dir, "/tmp/domicile-test-checkpoint.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	dm_log_set_level(DM_LOG_ERROR);
	*state = dir;
	return 0;
}

static int remove_dir(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", (char *)*state);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* ---- known answers ---- */

static void test_a_fixed_seed_gives_the_independently_computed_verifier_key(void **state)
{
	struct audit_key *key = make_key(0, "domicile.test");
	struct dm_buf out = {0};
	assert_int_equal(audit_verifier_format(audit_key_verifier(key), &out), DM_OK);
	assert_int_equal(out.len, strlen(KAT_VKEY));
	assert_memory_equal(out.data, KAT_VKEY, out.len);
	assert_int_equal(audit_key_verifier(key)->key_id, 0x9c74a595);
	dm_buf_free(&out);
	audit_key_free(key);
}

static void test_a_fixed_checkpoint_gives_the_independently_computed_signature(void **state)
{
	struct audit_key *key = make_key(0, "domicile.test");
	uint8_t root[32];
	kat_root(root);
	struct dm_buf out = {0};
	assert_int_equal(dm_buf_append(&out, "kept", 4), DM_OK);
	assert_int_equal(audit_checkpoint_sign(key, KAT_ORIGIN, 41, root, 1732400000123, &out),
	                 DM_OK);
	const char *expect = KAT_BODY "\n" KAT_SIG_LINE;
	assert_int_equal(out.len, 4 + strlen(expect));
	assert_memory_equal(out.data, "kept", 4);
	assert_memory_equal(out.data + 4, expect, strlen(expect));
	dm_buf_free(&out);
	audit_key_free(key);
}

static void test_the_known_checkpoint_opens_with_the_parsed_verifier_key(void **state)
{
	struct audit_verifier v;
	char err[256];
	assert_int_equal(audit_verifier_parse(KAT_VKEY, strlen(KAT_VKEY), &v, err, sizeof err),
	                 DM_OK);
	assert_string_equal(v.name, "domicile.test");
	const char *note = KAT_BODY "\n" KAT_SIG_LINE;
	struct audit_checkpoint cp;
	assert_int_equal(
	    audit_checkpoint_open(note, strlen(note), &v, KAT_ORIGIN, &cp, err, sizeof err), DM_OK);
	uint8_t root[32];
	kat_root(root);
	assert_string_equal(cp.origin, KAT_ORIGIN);
	assert_int_equal(cp.size, 41);
	assert_memory_equal(cp.root, root, 32);
	assert_int_equal(cp.time_ms, 1732400000123);
}

static void test_a_note_signed_by_another_implementation_verifies(void **state)
{
	struct audit_verifier v;
	char err[256];
	assert_int_equal(audit_verifier_parse(FOO_VKEY, strlen(FOO_VKEY), &v, err, sizeof err),
	                 DM_OK);
	size_t text_len = 0;
	assert_int_equal(
	    audit_note_open(FOO_NOTE, strlen(FOO_NOTE), &v, &text_len, err, sizeof err), DM_OK);
	assert_int_equal(text_len, strlen("This is an example message.\n"));
	/* It is a note, not a checkpoint: its text is refused as one, but only
	 * after its signature verified. */
	struct audit_checkpoint cp;
	assert_int_equal(
	    audit_checkpoint_open(FOO_NOTE, strlen(FOO_NOTE), &v, NULL, &cp, err, sizeof err),
	    DM_ERR_MALFORMED);
}

/* ---- round trips ---- */

static void test_checkpoints_round_trip_at_the_size_and_time_limits(void **state)
{
	struct audit_key *key = make_key(7, "domicile.cn-shanghai-1");
	const struct audit_verifier *v = audit_key_verifier(key);
	struct {
		uint64_t size;
		int64_t time_ms;
	} cases[] = {
	    {0, 0}, {1, 1}, {9, 1732400000123}, {10, 99}, {AUDIT_CHECKPOINT_SIZE_MAX, INT64_MAX}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t root[32];
		memset(root, (int)(0x11 * i), sizeof root);
		struct dm_buf out = {0};
		assert_int_equal(audit_checkpoint_sign(key, "domicile.cn-shanghai-1/audit",
		                                       cases[i].size, root, cases[i].time_ms, &out),
		                 DM_OK);
		struct audit_checkpoint cp;
		assert_int_equal(open_text((const char *)out.data, out.len, v, &cp), DM_OK);
		assert_string_equal(cp.origin, "domicile.cn-shanghai-1/audit");
		assert_int_equal(cp.size, cases[i].size);
		assert_memory_equal(cp.root, root, 32);
		assert_int_equal(cp.time_ms, cases[i].time_ms);
		dm_buf_free(&out);
	}
	audit_key_free(key);
}

static void test_sign_refuses_bad_arguments_and_leaves_the_buffer(void **state)
{
	struct audit_key *key = make_key(7, "k");
	uint8_t root[32] = {0};
	struct dm_buf out = {0};
	assert_int_equal(audit_checkpoint_sign(key, "", 1, root, 1, &out), DM_ERR_INVALID);
	assert_int_equal(audit_checkpoint_sign(key, "a b", 1, root, 1, &out), DM_ERR_INVALID);
	assert_int_equal(audit_checkpoint_sign(key, "a\nb", 1, root, 1, &out), DM_ERR_INVALID);
	assert_int_equal(audit_checkpoint_sign(key, "o", (uint64_t)INT64_MAX + 1, root, 1, &out),
	                 DM_ERR_INVALID);
	assert_int_equal(audit_checkpoint_sign(key, "o", 1, root, -1, &out), DM_ERR_INVALID);
	assert_int_equal(out.len, 0);
	/* The origin: up to AUDIT_ORIGIN_MAX bytes. */
	char origin[AUDIT_ORIGIN_MAX + 2];
	memset(origin, 'o', sizeof origin);
	origin[AUDIT_ORIGIN_MAX + 1] = '\0';
	assert_int_equal(audit_checkpoint_sign(key, origin, 1, root, 1, &out), DM_ERR_INVALID);
	assert_int_equal(out.len, 0);
	origin[AUDIT_ORIGIN_MAX] = '\0';
	assert_int_equal(audit_checkpoint_sign(key, origin, 1, root, 1, &out), DM_OK);
	struct audit_checkpoint cp;
	assert_int_equal(open_text((const char *)out.data, out.len, audit_key_verifier(key), &cp),
	                 DM_OK);
	assert_int_equal(strlen(cp.origin), AUDIT_ORIGIN_MAX);
	dm_buf_free(&out);
	audit_key_free(key);
}

static void test_sign_recovers_from_every_allocation_failure(void **state)
{
	struct audit_key *key = make_key(3, "k");
	uint8_t root[32] = {1};
	for (long fail = 0;; fail++) {
		struct dm_buf out = {0};
		assert_int_equal(dm_buf_append(&out, "x", 1), DM_OK);
		dm_alloc_fail_after(fail);
		int rc = audit_checkpoint_sign(key, "o", 5, root, 6, &out);
		dm_alloc_fail_after(-1);
		if (rc == DM_OK) {
			assert_int_equal(open_text((const char *)out.data + 1, out.len - 1,
			                           audit_key_verifier(key),
			                           &(struct audit_checkpoint){0}),
			                 DM_OK);
			dm_buf_free(&out);
			break;
		}
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_int_equal(out.len, 1);
		dm_buf_free(&out);
		assert_true(fail < 100);
	}
	audit_key_free(key);
}

/* ---- tampering ---- */

static void test_every_single_byte_change_of_a_signed_checkpoint_fails(void **state)
{
	struct audit_key *key = make_key(0, "domicile.test");
	const struct audit_verifier *v = audit_key_verifier(key);
	uint8_t root[32];
	kat_root(root);
	struct dm_buf good = {0}, bad = {0};
	assert_int_equal(audit_checkpoint_sign(key, KAT_ORIGIN, 41, root, 1732400000123, &good),
	                 DM_OK);
	assert_int_equal(open_buf(&good, v), DM_OK);
	for (size_t pos = 0; pos < good.len; pos++) {
		/* Every other value of this byte. */
		for (int value = 0; value < 256; value++) {
			if (value == good.data[pos])
				continue;
			bad.len = 0;
			assert_int_equal(dm_buf_append(&bad, good.data, good.len), DM_OK);
			bad.data[pos] = (uint8_t)value;
			if (open_buf(&bad, v) == DM_OK)
				fail_msg("byte %zu set to 0x%02x still verifies", pos, value);
		}
		/* The byte deleted, and a byte inserted before it. */
		bad.len = 0;
		assert_int_equal(dm_buf_append(&bad, good.data, pos), DM_OK);
		assert_int_equal(dm_buf_append(&bad, good.data + pos + 1, good.len - pos - 1),
		                 DM_OK);
		assert_int_not_equal(open_buf(&bad, v), DM_OK);
		for (const char *ins = "0 \n=A"; *ins; ins++) {
			bad.len = 0;
			assert_int_equal(dm_buf_append(&bad, good.data, pos), DM_OK);
			assert_int_equal(dm_buf_append(&bad, ins, 1), DM_OK);
			assert_int_equal(dm_buf_append(&bad, good.data + pos, good.len - pos),
			                 DM_OK);
			assert_int_not_equal(open_buf(&bad, v), DM_OK);
		}
	}
	dm_buf_free(&good);
	dm_buf_free(&bad);
	audit_key_free(key);
}

static void test_a_signature_by_another_key_fails(void **state)
{
	struct audit_key *ours = make_key(0, "domicile.test");
	struct audit_key *other = make_key(100, "domicile.other");
	struct audit_key *same_name = make_key(200, "domicile.test");
	uint8_t root[32] = {0};
	struct dm_buf out = {0};
	char err[256];
	struct audit_checkpoint cp;

	assert_int_equal(audit_checkpoint_sign(other, KAT_ORIGIN, 3, root, 1, &out), DM_OK);
	assert_int_equal(audit_checkpoint_open((const char *)out.data, out.len,
	                                       audit_key_verifier(ours), NULL, &cp, err,
	                                       sizeof err),
	                 DM_ERR_CRYPTO);
	assert_non_null(strstr(err, "no signature of domicile.test"));
	assert_int_equal(cp.size, 0);

	/* Same name, another key: another key ID, so not ours either. */
	out.len = 0;
	assert_int_equal(audit_checkpoint_sign(same_name, KAT_ORIGIN, 3, root, 1, &out), DM_OK);
	assert_int_equal(open_buf(&out, audit_key_verifier(ours)), DM_ERR_CRYPTO);

	/* Our name and key ID, another key's signature: must verify, does not. */
	out.len = 0;
	assert_int_equal(audit_checkpoint_sign(same_name, KAT_ORIGIN, 3, root, 1, &out), DM_OK);
	struct dm_buf forged = {0};
	const char *sig = strstr((const char *)out.data, DASH);
	assert_non_null(sig);
	assert_int_equal(dm_buf_append(&forged, out.data, (size_t)(sig - (char *)out.data)), DM_OK);
	uint8_t blob[68];
	size_t blob_len;
	const char *b64 = sig + strlen(DASH "domicile.test ");
	assert_int_equal(audit_base64_decode(b64, 92, blob, sizeof blob, &blob_len), DM_OK);
	uint32_t id = audit_key_verifier(ours)->key_id;
	blob[0] = (uint8_t)(id >> 24), blob[1] = (uint8_t)(id >> 16);
	blob[2] = (uint8_t)(id >> 8), blob[3] = (uint8_t)id;
	assert_int_equal(dm_buf_printf(&forged, DASH "domicile.test "), DM_OK);
	assert_int_equal(audit_base64_encode(blob, sizeof blob, &forged), DM_OK);
	assert_int_equal(dm_buf_append(&forged, "\n", 1), DM_OK);
	assert_int_equal(audit_checkpoint_open((const char *)forged.data, forged.len,
	                                       audit_key_verifier(ours), NULL, &cp, err,
	                                       sizeof err),
	                 DM_ERR_CRYPTO);
	assert_non_null(strstr(err, "does not verify"));

	dm_buf_free(&forged);
	dm_buf_free(&out);
	audit_key_free(ours);
	audit_key_free(other);
	audit_key_free(same_name);
}

static void test_cosignatures_of_other_keys_are_ignored_but_ours_must_all_verify(void **state)
{
	struct audit_key *ours = make_key(0, "domicile.test");
	struct audit_key *witness = make_key(50, "witness.example/w1");
	uint8_t root[32] = {9};
	struct dm_buf note = {0}, other = {0};
	assert_int_equal(audit_checkpoint_sign(ours, KAT_ORIGIN, 8, root, 5, &note), DM_OK);
	assert_int_equal(audit_checkpoint_sign(witness, KAT_ORIGIN, 8, root, 5, &other), DM_OK);
	/* A witness's cosignature line added before ours and an unknown type
	 * after it: both are ignored, ours verifies. */
	const char *wline = strstr((const char *)other.data, DASH);
	const char *oline = strstr((const char *)note.data, DASH);
	struct dm_buf both = {0};
	size_t body = (size_t)(oline - (const char *)note.data);
	assert_int_equal(dm_buf_append(&both, note.data, body), DM_OK);
	assert_int_equal(dm_buf_append(&both, wline, strlen(wline)), DM_OK);
	assert_int_equal(dm_buf_append(&both, oline, note.len - body), DM_OK);
	assert_int_equal(dm_buf_printf(&both, DASH "pq.example/x //////8=\n"), DM_OK);
	assert_int_equal(open_buf(&both, audit_key_verifier(ours)), DM_OK);
	assert_int_equal(open_buf(&both, audit_key_verifier(witness)), DM_OK);

	/* A second line of our key that does not verify rejects the note. */
	struct dm_buf twice = {0};
	assert_int_equal(dm_buf_append(&twice, both.data, both.len), DM_OK);
	assert_int_equal(dm_buf_append(&twice, oline, note.len - body), DM_OK);
	assert_int_equal(open_buf(&twice, audit_key_verifier(ours)), DM_OK);
	twice.data[twice.len - 3] ^= 1; /* inside the last signature */
	assert_int_not_equal(open_buf(&twice, audit_key_verifier(ours)), DM_OK);

	dm_buf_free(&twice);
	dm_buf_free(&both);
	dm_buf_free(&note);
	dm_buf_free(&other);
	audit_key_free(ours);
	audit_key_free(witness);
}

/* ---- malformed notes ---- */

static void test_malformed_bodies_are_refused_even_when_signed(void **state)
{
	struct audit_key *key = make_key(0, "domicile.test");
	const struct audit_verifier *v = audit_key_verifier(key);
#define ROOT "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	struct {
		const char *body;
		int rc;
	} cases[] = {
	    {"o\n41\n" ROOT "\ntime 5\n", DM_OK},
	    {"o\n0\n" ROOT "\ntime 0\n", DM_OK},
	    {"o\n041\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n00\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n+41\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n-1\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n4 1\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n9223372036854775807\n" ROOT "\ntime 5\n", DM_OK},
	    {"o\n9223372036854775808\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n99999999999999999999999\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime 05\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime +5\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime -5\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime 9223372036854775807\n", DM_OK},
	    {"o\n41\n" ROOT "\ntime 9223372036854775808\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime  5\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\nTime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\n", DM_ERR_MALFORMED},
	    {"o\n41\n" ROOT "\ntime 5\nmore\n", DM_ERR_MALFORMED},
	    {"o\n41\n", DM_ERR_MALFORMED},
	    {"o\n", DM_ERR_MALFORMED},
	    {"o\n41\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj4=\ntime 5\n", DM_OK},
	    /* unused bits set: the same 32 bytes, a second spelling */
	    {"o\n41\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9=\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pg==\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8A\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\n ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\ntime 5\n", DM_ERR_MALFORMED},
	    {"o\n41\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8-\ntime 5\n", DM_ERR_MALFORMED},
	    {"\n41\n" ROOT "\ntime 5\n", DM_ERR_MALFORMED},
	};
	struct dm_buf note = {0};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sign_raw(&note, 0, "domicile.test", cases[i].body);
		if (open_buf(&note, v) != cases[i].rc)
			fail_msg("case %zu (%s): expected %d", i, cases[i].body, cases[i].rc);
	}
	/* An origin other than the expected one. */
	sign_raw(&note, 0, "domicile.test", "other\n1\n" ROOT "\ntime 5\n");
	struct audit_checkpoint cp;
	char err[256];
	assert_int_equal(
	    audit_checkpoint_open((const char *)note.data, note.len, v, "o", &cp, err, sizeof err),
	    DM_ERR_INVALID);
	assert_int_equal(audit_checkpoint_open((const char *)note.data, note.len, v, "other", &cp,
	                                       err, sizeof err),
	                 DM_OK);
#undef ROOT
	dm_buf_free(&note);
	audit_key_free(key);
}

static void test_a_body_of_1024_bytes_is_read_and_1025_is_refused(void **state)
{
	struct audit_key *key = make_key(0, "domicile.test");
	const char *rest = "\n1\nICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\ntime 5\n";
	struct dm_buf note = {0};
	for (size_t body_len = 1023; body_len <= 1025; body_len++) {
		char body[1100];
		size_t origin_len = body_len - strlen(rest);
		memset(body, 'o', origin_len);
		memcpy(body + origin_len, rest, strlen(rest) + 1);
		assert_int_equal(strlen(body), body_len);
		sign_raw(&note, 0, "domicile.test", body);
		assert_int_equal(open_buf(&note, audit_key_verifier(key)),
		                 body_len <= 1024 ? DM_OK : DM_ERR_TOO_LARGE);
	}
	dm_buf_free(&note);
	audit_key_free(key);
}

static void test_malformed_notes_are_refused(void **state)
{
	struct audit_key *key = make_key(0, "domicile.test");
	const struct audit_verifier *v = audit_key_verifier(key);
	const char *good = KAT_BODY "\n" KAT_SIG_LINE;
	struct dm_buf note = {0};
	struct {
		const char *text;
		int rc;
	} cases[] = {
	    {KAT_BODY "\n" KAT_SIG_LINE, DM_OK},
	    {KAT_BODY KAT_SIG_LINE, DM_ERR_MALFORMED},           /* no blank line */
	    {KAT_BODY "\n", DM_ERR_MALFORMED},                   /* no signatures */
	    {KAT_BODY "\n" KAT_SIG_LINE "\n", DM_ERR_MALFORMED}, /* blank line at the end */
	    {"", DM_ERR_MALFORMED},
	    {"\n\n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {KAT_BODY "\n- domicile.test x\n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {KAT_BODY "\n" DASH "domicile.test\n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {KAT_BODY "\n" DASH " AAAAAAA=\n" KAT_SIG_LINE, DM_ERR_MALFORMED}, /* empty name */
	    {KAT_BODY "\n" DASH "a+b AAAAAAA=\n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {KAT_BODY "\n" DASH "x AAAA\n" KAT_SIG_LINE, DM_ERR_MALFORMED},     /* 3 bytes */
	    {KAT_BODY "\n" DASH "x AAAAAA==\n" KAT_SIG_LINE, DM_ERR_MALFORMED}, /* 4 bytes */
	    {KAT_BODY "\n" DASH "x AAAAAAA=\n" KAT_SIG_LINE, DM_OK},            /* 5 bytes */
	    {KAT_BODY "\n" DASH "x AAAAAAA= \n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {KAT_BODY "\n" DASH "x AAAAAAA=\r\n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {"a\tb\n" KAT_BODY "\n" KAT_SIG_LINE, DM_ERR_MALFORMED},
	    {"\xC0\xAF\n" KAT_BODY "\n" KAT_SIG_LINE, DM_ERR_MALFORMED},     /* overlong '/' */
	    {"\xED\xA0\x80\n" KAT_BODY "\n" KAT_SIG_LINE, DM_ERR_MALFORMED}, /* surrogate */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct audit_checkpoint cp;
		if (open_text(cases[i].text, strlen(cases[i].text), v, &cp) != cases[i].rc)
			fail_msg("case %zu: expected %d", i, cases[i].rc);
	}
	/* Without the final newline, and with CRLF line ends. */
	struct audit_checkpoint cp;
	assert_int_equal(open_text(good, strlen(good) - 1, v, &cp), DM_ERR_MALFORMED);
	for (const char *c = good; *c; c++) {
		if (*c == '\n')
			assert_int_equal(dm_buf_append(&note, "\r", 1), DM_OK);
		assert_int_equal(dm_buf_append(&note, c, 1), DM_OK);
	}
	assert_int_equal(open_buf(&note, v), DM_ERR_MALFORMED);

	/* 100 signature lines are read, 101 are too many. */
	for (int lines = 99; lines <= 100; lines++) {
		note.len = 0;
		assert_int_equal(dm_buf_printf(&note, "%s\n", KAT_BODY), DM_OK);
		for (int i = 0; i < lines; i++)
			assert_int_equal(dm_buf_printf(&note, DASH "w%d AAAAAAA=\n", i), DM_OK);
		assert_int_equal(dm_buf_printf(&note, "%s", KAT_SIG_LINE), DM_OK);
		assert_int_equal(open_buf(&note, v), lines < 100 ? DM_OK : DM_ERR_TOO_LARGE);
	}
	/* A note over the limit is refused before it is read. */
	note.len = 0;
	assert_int_equal(dm_buf_reserve(&note, AUDIT_NOTE_MAX + 1), DM_OK);
	memset(note.data, 'a', AUDIT_NOTE_MAX + 1);
	note.len = AUDIT_NOTE_MAX + 1;
	assert_int_equal(open_buf(&note, v), DM_ERR_TOO_LARGE);
	dm_buf_free(&note);
	audit_key_free(key);
}

/* ---- verifier key strings ---- */

static void test_verifier_keys_that_are_not_exact_are_refused(void **state)
{
	struct {
		const char *text;
		int rc;
	} cases[] = {
	    {KAT_VKEY, DM_OK},
	    {KAT_VKEY "\n", DM_ERR_MALFORMED},
	    {" " KAT_VKEY, DM_ERR_MALFORMED},
	    {"domicile.test+9C74A595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
	     DM_ERR_MALFORMED},
	    {"domicile.test+9c74a596+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", DM_ERR_CRYPTO},
	    {"domicile.tesT+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", DM_ERR_CRYPTO},
	    {"domicile.test+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG5", DM_ERR_CRYPTO},
	    {"domicile.test+9c74a59+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
	     DM_ERR_MALFORMED},
	    {"domicile.test+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVT", DM_ERR_MALFORMED},
	    {"domicile.test+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4AAAA",
	     DM_ERR_MALFORMED},
	    {"domicile.test+9c74a595+AgOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
	     DM_ERR_UNSUPPORTED},
	    {"domicile test+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
	     DM_ERR_MALFORMED},
	    {"+9c74a595+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", DM_ERR_MALFORMED},
	    {"domicile.test+9c74a595", DM_ERR_MALFORMED},
	    {"", DM_ERR_MALFORMED},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct audit_verifier v;
		char err[256] = "";
		int rc =
		    audit_verifier_parse(cases[i].text, strlen(cases[i].text), &v, err, sizeof err);
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): %d, expected %d", i, cases[i].text, rc,
			         cases[i].rc);
		if (rc != DM_OK) {
			assert_true(err[0] != '\0');
			assert_int_equal(v.key_id, 0);
			assert_string_equal(v.name, "");
		}
	}
}

static void test_key_names_follow_the_signed_note_rules(void **state)
{
	char long_name[AUDIT_KEY_NAME_MAX + 2];
	memset(long_name, 'n', sizeof long_name);
	assert_true(audit_key_name_valid(long_name, AUDIT_KEY_NAME_MAX));
	assert_false(audit_key_name_valid(long_name, AUDIT_KEY_NAME_MAX + 1));
	assert_true(audit_key_name_valid("domicile.cn-shanghai-1", 22));
	assert_true(audit_key_name_valid("caf\xC3\xA9", 5));
	assert_false(audit_key_name_valid("", 0));
	assert_false(audit_key_name_valid("a b", 3));
	assert_false(audit_key_name_valid("a+b", 3));
	assert_false(audit_key_name_valid("a\tb", 3));
	assert_false(audit_key_name_valid("a\xC2\xA0"
	                                  "b",
	                                  4)); /* no-break space */
	assert_false(audit_key_name_valid("a\xE3\x80\x80"
	                                  "b",
	                                  5));          /* ideographic space */
	assert_false(audit_key_name_valid("a\xC3", 2)); /* truncated UTF-8 */
	struct audit_key *key = NULL;
	uint8_t seed[32] = {0};
	assert_int_equal(audit_key_from_seed(seed, "a b", &key), DM_ERR_INVALID);
	assert_null(key);
}

/* ---- base64 and decimals ---- */

static void test_base64_accepts_only_the_canonical_spelling(void **state)
{
	uint8_t out[8];
	size_t n;
	assert_int_equal(audit_base64_decode("", 0, out, sizeof out, &n), DM_OK);
	assert_int_equal(n, 0);
	assert_int_equal(audit_base64_decode("AA==", 4, out, sizeof out, &n), DM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], 0);
	assert_int_equal(audit_base64_decode("/+8=", 4, out, sizeof out, &n), DM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(out[0], 0xff);
	assert_int_equal(out[1], 0xef);
	assert_int_equal(audit_base64_decode("Zm9vYmFy", 8, out, sizeof out, &n), DM_OK);
	assert_int_equal(n, 6);
	assert_memory_equal(out, "foobar", 6);
	assert_int_equal(audit_base64_decode("Zm9vYmFy", 8, out, 5, &n), DM_ERR_TOO_LARGE);
	assert_int_equal(audit_base64_decode("Zm9vYg==", 8, out, 4, &n), DM_OK);
	const char *bad[] = {"AB==", "AAB=",  "A===", "====",     "AAA",  "AA=A",  " AAA",
	                     "AAA ", "AA\nA", "AA-_", "AA==AA==", "=AAA", "AAAA\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (audit_base64_decode(bad[i], strlen(bad[i]), out, sizeof out, &n) !=
		    DM_ERR_MALFORMED)
			fail_msg("'%s' was accepted", bad[i]);
	/* Every length round-trips. */
	uint8_t bytes[7] = {0xfb, 0xff, 0x00, 0x10, 0x83, 0xef, 0x7f};
	for (size_t len = 0; len <= sizeof bytes; len++) {
		struct dm_buf enc = {0};
		assert_int_equal(audit_base64_encode(bytes, len, &enc), DM_OK);
		assert_int_equal(enc.len, (len + 2) / 3 * 4);
		uint8_t back[8];
		assert_int_equal(
		    audit_base64_decode((char *)enc.data, enc.len, back, sizeof back, &n), DM_OK);
		assert_int_equal(n, len);
		assert_memory_equal(back, bytes, len);
		dm_buf_free(&enc);
	}
}

static void test_decimals_are_canonical_and_bounded(void **state)
{
	uint64_t v;
	assert_int_equal(audit_parse_decimal("0", 1, 10, &v), DM_OK);
	assert_int_equal(v, 0);
	assert_int_equal(audit_parse_decimal("10", 2, 10, &v), DM_OK);
	assert_int_equal(audit_parse_decimal("11", 2, 10, &v), DM_ERR_MALFORMED);
	assert_int_equal(audit_parse_decimal("18446744073709551615", 20, UINT64_MAX, &v), DM_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(audit_parse_decimal("18446744073709551616", 20, UINT64_MAX, &v),
	                 DM_ERR_MALFORMED);
	assert_int_equal(v, 0);
	const char *bad[] = {"", "00", "01", "+1", "-1", " 1", "1 ", "0x1", "1e3"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(audit_parse_decimal(bad[i], strlen(bad[i]), UINT64_MAX, &v),
		                 DM_ERR_MALFORMED);
}

/* ---- key files ---- */

static void test_the_key_file_is_created_once_with_mode_0600_and_reloaded(void **state)
{
	char path[128];
	snprintf(path, sizeof path, "%s/audit.key", (char *)*state);
	struct audit_key *key = NULL, *again = NULL;
	assert_int_equal(audit_key_load(path, "domicile.x", &key), DM_ERR_NOT_FOUND);
	assert_int_equal(audit_key_load_or_create(path, "domicile.x", &key), DM_OK);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 32);
	assert_int_equal(audit_key_load_or_create(path, "domicile.x", &again), DM_OK);
	assert_memory_equal(audit_key_verifier(key), audit_key_verifier(again),
	                    sizeof(struct audit_verifier));
	audit_key_free(again);
	/* A checkpoint signed before a restart verifies after it. */
	struct dm_buf note = {0};
	uint8_t root[32] = {0};
	assert_int_equal(audit_checkpoint_sign(key, "domicile.x/audit", 1, root, 1, &note), DM_OK);
	assert_int_equal(audit_key_load(path, "domicile.x", &again), DM_OK);
	assert_int_equal(open_buf(&note, audit_key_verifier(again)), DM_OK);
	audit_key_free(again);
	audit_key_free(key);
	dm_buf_free(&note);
	/* Another name, the same seed: another key ID. */
	assert_int_equal(audit_key_load(path, "domicile.y", &again), DM_OK);
	assert_string_equal(audit_key_verifier(again)->name, "domicile.y");
	audit_key_free(again);
	assert_int_equal(audit_key_load(path, "bad name", &again), DM_ERR_INVALID);
	assert_null(again);
}

static void test_the_key_file_is_refused_when_others_can_read_it_or_it_is_odd(void **state)
{
	const char *dir = *state;
	char path[128], link_path[128];
	snprintf(path, sizeof path, "%s/k.key", dir);
	snprintf(link_path, sizeof link_path, "%s/link.key", dir);
	uint8_t seed[33] = {1};
	struct audit_key *key = NULL;
	mode_t open_modes[] = {0640, 0604, 0660, 0644, 0601, 0610};
	for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
		write_file(path, seed, 32, open_modes[i]);
		assert_int_equal(audit_key_load_or_create(path, "k", &key), DM_ERR_DENIED);
		assert_null(key);
	}
	write_file(path, seed, 32, 0400);
	assert_int_equal(audit_key_load(path, "k", &key), DM_OK);
	audit_key_free(key);
	write_file(path, seed, 31, 0600);
	assert_int_equal(audit_key_load_or_create(path, "k", &key), DM_ERR_INVALID);
	write_file(path, seed, 33, 0600);
	assert_int_equal(audit_key_load_or_create(path, "k", &key), DM_ERR_INVALID);
	/* Still 33 bytes: a bad key file is never replaced by a new key. */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 33);
	write_file(path, seed, 32, 0600);
	assert_int_equal(symlink(path, link_path), 0);
	assert_int_equal(audit_key_load_or_create(link_path, "k", &key), DM_ERR_DENIED);
	assert_int_equal(audit_key_load_or_create(dir, "k", &key), DM_ERR_DENIED);
	assert_null(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_fixed_seed_gives_the_independently_computed_verifier_key),
	    cmocka_unit_test(test_a_fixed_checkpoint_gives_the_independently_computed_signature),
	    cmocka_unit_test(test_the_known_checkpoint_opens_with_the_parsed_verifier_key),
	    cmocka_unit_test(test_a_note_signed_by_another_implementation_verifies),
	    cmocka_unit_test(test_checkpoints_round_trip_at_the_size_and_time_limits),
	    cmocka_unit_test(test_sign_refuses_bad_arguments_and_leaves_the_buffer),
	    cmocka_unit_test(test_sign_recovers_from_every_allocation_failure),
	    cmocka_unit_test(test_every_single_byte_change_of_a_signed_checkpoint_fails),
	    cmocka_unit_test(test_a_signature_by_another_key_fails),
	    cmocka_unit_test(test_cosignatures_of_other_keys_are_ignored_but_ours_must_all_verify),
	    cmocka_unit_test(test_malformed_bodies_are_refused_even_when_signed),
	    cmocka_unit_test(test_a_body_of_1024_bytes_is_read_and_1025_is_refused),
	    cmocka_unit_test(test_malformed_notes_are_refused),
	    cmocka_unit_test(test_verifier_keys_that_are_not_exact_are_refused),
	    cmocka_unit_test(test_key_names_follow_the_signed_note_rules),
	    cmocka_unit_test(test_base64_accepts_only_the_canonical_spelling),
	    cmocka_unit_test(test_decimals_are_canonical_and_bounded),
	    cmocka_unit_test_setup_teardown(
	        test_the_key_file_is_created_once_with_mode_0600_and_reloaded, make_dir,
	        remove_dir),
	    cmocka_unit_test_setup_teardown(
	        test_the_key_file_is_refused_when_others_can_read_it_or_it_is_odd, make_dir,
	        remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
