/*
 * test_keystore_pkcs11.c — the PKCS#11 key store against a real SoftHSM2
 * token: making the KEK, wrapping inside the token, rotation and its
 * interrupted states, dropping, and every refusal at open.
 *
 * main() makes a temporary directory with its own softhsm2.conf (tokens in
 * DIR/tokens), points SOFTHSM2_CONF at it and initialises a token with
 * softhsm2-util; the directory is removed at exit, passed or failed. No
 * SoftHSM2 is a failure, not a skip: CI installs it (scripts/install-deps.sh).
 * DOMICILE_SOFTHSM2_MODULE overrides where the module is looked for.
 *
 * Each case uses its own key labels on the one token. Cases that need the
 * token in a state the API never makes (an extractable key, a rotation
 * stopped midway) make it with raw PKCS#11 calls (struct raw).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keystore.h"
#include "crypto/keystore_pkcs11.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"

#define TOKEN "domicile-test"
#define PIN "1234"
#define SO_PIN "5678"

static char dir[64];
static char module[512];
static char pin_file[128];

/* ---- setup ---- */

static const char *const module_candidates[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
};

static int find_module(void)
{
	const char *env = getenv("DOMICILE_SOFTHSM2_MODULE");
	if (env && env[0]) {
		snprintf(module, sizeof module, "%s", env);
		return access(module, R_OK) == 0;
	}
	for (size_t i = 0; i < sizeof module_candidates / sizeof module_candidates[0]; i++)
		if (access(module_candidates[i], R_OK) == 0) {
			snprintf(module, sizeof module, "%s", module_candidates[i]);
			return 1;
		}
	return 0;
}

static void remove_dir(void)
{
	if (!dir[0])
		return;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_keystore_pkcs11: could not remove %s\n", dir);
	dir[0] = '\0';
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Returns 0 when the token is ready, after printing why not otherwise. */
static int make_token(void)
{
	if (!find_module()) {
		fprintf(stderr, "test_keystore_pkcs11: FAIL: SoftHSM2's module libsofthsm2.so "
		                "was not found; install softhsm2 (scripts/install-deps.sh) or "
		                "set DOMICILE_SOFTHSM2_MODULE\n");
		return -1;
	}
	if (system("softhsm2-util --version >/dev/null 2>&1") != 0) {
		fprintf(stderr, "test_keystore_pkcs11: FAIL: softhsm2-util is not on PATH; "
		                "install softhsm2 (scripts/install-deps.sh)\n");
		return -1;
	}
	snprintf(dir, sizeof dir, "/tmp/domicile-test-p11.XXXXXX");
	if (!mkdtemp(dir)) {
		dir[0] = '\0';
		return -1;
	}
	atexit(remove_dir);
	char conf[128], tokens[128], text[512], cmd[1024];
	snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
	snprintf(tokens, sizeof tokens, "%s/tokens", dir);
	if (mkdir(tokens, 0700) != 0)
		return -1;
	snprintf(text, sizeof text,
	         "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
	         tokens);
	FILE *out = fopen(conf, "w");
	if (!out || fputs(text, out) < 0 || fclose(out) != 0)
		return -1;
	/* Before anything loads the module: SoftHSM2 reads it at C_Initialize. */
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(cmd, sizeof cmd,
	         "softhsm2-util --init-token --free --label %s --pin %s --so-pin %s >/dev/null",
	         TOKEN, PIN, SO_PIN);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_keystore_pkcs11: FAIL: %s\n", cmd);
		return -1;
	}
	snprintf(pin_file, sizeof pin_file, "%s/pin", dir);
	int fd = open(pin_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, PIN "\n", 5) != 5 || close(fd) != 0)
		return -1;
	return 0;
}

static struct keystore_pkcs11_options options(const char *key)
{
	return (struct keystore_pkcs11_options){
	    .module = module, .token = TOKEN, .key = key, .pin = NULL, .pin_file = pin_file};
}

static int is_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != 0)
			return 0;
	return 1;
}

/* ---- raw PKCS#11, for states the API never makes ---- */

struct raw {
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE s;
};

static void raw_open(struct raw *r)
{
	r->f = p11_kit_module_load(module, 0);
	assert_non_null(r->f);
	assert_int_equal(p11_kit_module_initialize(r->f), CKR_OK);
	CK_SLOT_ID slots[16];
	CK_ULONG count = 16;
	assert_int_equal(r->f->C_GetSlotList(CK_TRUE, slots, &count), CKR_OK);
	int found = 0;
	for (CK_ULONG i = 0; i < count && !found; i++) {
		CK_TOKEN_INFO info;
		assert_int_equal(r->f->C_GetTokenInfo(slots[i], &info), CKR_OK);
		if (p11_kit_space_strlen(info.label, sizeof info.label) == strlen(TOKEN) &&
		    memcmp(info.label, TOKEN, strlen(TOKEN)) == 0) {
			assert_int_equal(r->f->C_OpenSession(slots[i],
			                                     CKF_SERIAL_SESSION | CKF_RW_SESSION,
			                                     NULL, NULL, &r->s),
			                 CKR_OK);
			found = 1;
		}
	}
	assert_true(found);
	CK_RV rv = r->f->C_Login(r->s, CKU_USER, (CK_UTF8CHAR *)PIN, strlen(PIN));
	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

static void raw_close(struct raw *r)
{
	r->f->C_CloseSession(r->s);
	p11_kit_module_finalize(r->f);
	p11_kit_module_release(r->f);
}

/* Generates an AES key of len bytes with the given properties and id
 * (id_len bytes of id, big-endian). */
static CK_OBJECT_HANDLE raw_generate(struct raw *r, const char *label, uint64_t id, size_t id_len,
                                     CK_BBOOL extractable, CK_BBOOL sensitive, CK_ULONG len)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE;
	uint8_t id_bytes[8];
	for (size_t i = 0; i < id_len; i++)
		id_bytes[i] = (uint8_t)(id >> (8 * (id_len - 1 - i)));
	CK_ATTRIBUTE template[] = {
	    {CKA_CLASS, &cls, sizeof cls},
	    {CKA_KEY_TYPE, &type, sizeof type},
	    {CKA_VALUE_LEN, &len, sizeof len},
	    {CKA_TOKEN, &yes, sizeof yes},
	    {CKA_PRIVATE, &yes, sizeof yes},
	    {CKA_SENSITIVE, &sensitive, sizeof sensitive},
	    {CKA_EXTRACTABLE, &extractable, sizeof extractable},
	    {CKA_ENCRYPT, &yes, sizeof yes},
	    {CKA_DECRYPT, &yes, sizeof yes},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, id_bytes, id_len},
	};
	CK_MECHANISM mechanism = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	assert_int_equal(r->f->C_GenerateKey(r->s, &mechanism, template,
	                                     sizeof template / sizeof template[0], &key),
	                 CKR_OK);
	return key;
}

/* The secret keys labelled label: how many, and the first one's handle. */
static size_t raw_find(struct raw *r, const char *label, CK_OBJECT_HANDLE *first)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE template[] = {{CKA_CLASS, &cls, sizeof cls},
	                           {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE handles[16];
	CK_ULONG count = 0;
	assert_int_equal(r->f->C_FindObjectsInit(r->s, template, 2), CKR_OK);
	assert_int_equal(r->f->C_FindObjects(r->s, handles, 16, &count), CKR_OK);
	assert_int_equal(r->f->C_FindObjectsFinal(r->s), CKR_OK);
	if (count > 0 && first)
		*first = handles[0];
	return count;
}

static uint32_t raw_id(struct raw *r, CK_OBJECT_HANDLE key)
{
	uint8_t id[4];
	CK_ATTRIBUTE attr = {CKA_ID, id, sizeof id};
	assert_int_equal(r->f->C_GetAttributeValue(r->s, key, &attr, 1), CKR_OK);
	assert_int_equal(attr.ulValueLen, 4);
	return (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3];
}

static CK_BBOOL raw_bool(struct raw *r, CK_OBJECT_HANDLE key, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL value = 2;
	CK_ATTRIBUTE attr = {type, &value, sizeof value};
	assert_int_equal(r->f->C_GetAttributeValue(r->s, key, &attr, 1), CKR_OK);
	return value;
}

static void raw_relabel(struct raw *r, CK_OBJECT_HANDLE key, const char *label)
{
	CK_ATTRIBUTE attr = {CKA_LABEL, (void *)label, strlen(label)};
	assert_int_equal(r->f->C_SetAttributeValue(r->s, key, &attr, 1), CKR_OK);
}

/* ---- making and opening ---- */

static void test_init_makes_a_sensitive_non_extractable_key_that_open_finds(void **state)
{
	struct keystore_pkcs11_options o = options("kek-init");
	uint32_t id = 0;
	assert_int_equal(keystore_pkcs11_create_key(&o, &id), DM_OK);
	assert_int_not_equal(id, 0);

	struct raw r;
	raw_open(&r);
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	assert_int_equal(raw_find(&r, "kek-init", &key), 1);
	assert_int_equal(raw_id(&r, key), id);
	assert_int_equal(raw_bool(&r, key, CKA_EXTRACTABLE), CK_FALSE);
	assert_int_equal(raw_bool(&r, key, CKA_SENSITIVE), CK_TRUE);
	assert_int_equal(raw_bool(&r, key, CKA_NEVER_EXTRACTABLE), CK_TRUE);
	assert_int_equal(raw_bool(&r, key, CKA_TOKEN), CK_TRUE);
	/* Its value cannot be read: the KEK never leaves the token. */
	uint8_t value[32];
	CK_ATTRIBUTE attr = {CKA_VALUE, value, sizeof value};
	assert_int_equal(r.f->C_GetAttributeValue(r.s, key, &attr, 1), CKR_ATTRIBUTE_SENSITIVE);
	raw_close(&r);

	struct keystore *ks = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	assert_non_null(ks);
	assert_string_equal(ks->ops->name, "pkcs11");
	assert_int_equal(keystore_key_id(ks), id);
	keystore_free(ks);
	keystore_free(NULL);

	/* A second init never replaces the key. */
	uint32_t again = 1;
	assert_int_equal(keystore_pkcs11_create_key(&o, &again), DM_ERR_EXISTS);
	assert_int_equal(again, 0);
	raw_open(&r);
	assert_int_equal(raw_find(&r, "kek-init", NULL), 1);
	raw_close(&r);
}

static void test_open_refuses_an_extractable_or_readable_key(void **state)
{
	struct raw r;
	raw_open(&r);
	raw_generate(&r, "kek-extractable", 0x11111111, 4, CK_TRUE, CK_TRUE, 32);
	raw_generate(&r, "kek-readable", 0x22222222, 4, CK_FALSE, CK_FALSE, 32);
	raw_generate(&r, "kek-aes128", 0x33333333, 4, CK_FALSE, CK_TRUE, 16);
	raw_generate(&r, "kek-long-id", 0x4444444444ull, 5, CK_FALSE, CK_TRUE, 32);
	raw_generate(&r, "kek-zero-id", 0, 4, CK_FALSE, CK_TRUE, 32);
	raw_close(&r);

	struct keystore *ks = (struct keystore *)1;
	struct keystore_pkcs11_options o = options("kek-extractable");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_DENIED);
	assert_null(ks);
	o = options("kek-readable");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_DENIED);
	o = options("kek-aes128");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	o = options("kek-long-id");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	o = options("kek-zero-id");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	assert_null(ks);
}

static void test_open_refuses_a_wrong_pin_a_missing_token_module_or_key(void **state)
{
	struct keystore_pkcs11_options o = options("kek-refusals");
	assert_int_equal(keystore_pkcs11_create_key(&o, NULL), DM_OK);
	struct keystore *ks = (struct keystore *)1;

	/* No other session is open, so the PIN is checked. */
	o.pin = "0000";
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_AUTH);
	assert_null(ks);
	o.pin = NULL;

	o.token = "no-such-token";
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_NOT_FOUND);
	o = options("no-such-key");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_NOT_FOUND);
	o = options("kek-refusals");
	o.module = "/nonexistent/libsofthsm2.so";
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_NOT_FOUND);
	o.module = pin_file; /* exists, but is no module */
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	assert_null(ks);

	/* Labels: too long, or a rotation's own suffix. */
	o = options("kek-refusals");
	o.token = "a-token-label-longer-than-32-bytes";
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	o = options("kek.retired");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	o = options("kek.new");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	o = options("");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	assert_null(ks);

	/* And all is well with the right settings. */
	o = options("kek-refusals");
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	keystore_free(ks);
}

static void test_pin_file_must_be_private_and_hold_one_line(void **state)
{
	struct keystore_pkcs11_options o = options("kek-pin-file");
	assert_int_equal(keystore_pkcs11_create_key(&o, NULL), DM_OK);
	char path[128];
	snprintf(path, sizeof path, "%s/pin-test", dir);
	o.pin_file = path;
	struct keystore *ks = (struct keystore *)1;

	write_file(path, PIN "\n", 0644);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_DENIED);
	write_file(path, PIN "\n", 0620);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_DENIED);
	write_file(path, PIN "\n" PIN "\n", 0600);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	write_file(path, "\n", 0600);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	write_file(path, "", 0600);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	char long_pin[KEYSTORE_PKCS11_PIN_MAX + 2];
	memset(long_pin, '7', sizeof long_pin - 1);
	long_pin[sizeof long_pin - 1] = '\0';
	write_file(path, long_pin, 0600);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_INVALID);
	unlink(path);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_ERR_NOT_FOUND);
	assert_null(ks);

	/* One line, with or without its line end, "\r\n" too. */
	write_file(path, PIN, 0400);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	keystore_free(ks);
	write_file(path, PIN "\r\n", 0600);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	keystore_free(ks);
}

static void test_open_recovers_from_every_failed_allocation(void **state)
{
	struct keystore_pkcs11_options o = options("kek-nomem");
	assert_int_equal(keystore_pkcs11_create_key(&o, NULL), DM_OK);
	struct keystore *ks = NULL;
	int rc = DM_ERR_NOMEM;
	for (long budget = 0; rc == DM_ERR_NOMEM; budget++) {
		assert_true(budget < 100);
		dm_alloc_fail_after(budget);
		rc = keystore_pkcs11_open(&o, &ks);
		dm_alloc_fail_after(-1);
		if (rc == DM_ERR_NOMEM)
			assert_null(ks);
	}
	assert_int_equal(rc, DM_OK);
	keystore_free(ks);
}

/* ---- wrapping ---- */

static void test_wrapped_key_round_trips_through_the_token(void **state)
{
	struct keystore_pkcs11_options o = options("kek-wrap");
	uint32_t id = 0;
	assert_int_equal(keystore_pkcs11_create_key(&o, &id), DM_OK);
	struct keystore *ks = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN], blob2[KEYSTORE_WRAPPED_LEN];
	for (size_t i = 0; i < sizeof dek; i++)
		dek[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(keystore_wrap(ks, 42, dek, blob), DM_OK);
	/* The layout of keystore.h: version, big-endian kek id, then the rest. */
	assert_int_equal(blob[0], KEYSTORE_WRAP_VERSION);
	assert_int_equal(blob[1], (uint8_t)(id >> 24));
	assert_int_equal(blob[4], (uint8_t)id);
	assert_int_equal(keystore_blob_kek_id(blob), id);
	/* The DEK does not appear in clear. */
	assert_memory_not_equal(blob + KEYSTORE_BLOB_CIPHER, dek, 32);
	assert_int_equal(keystore_unwrap(ks, 42, blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	/* A fresh IV each time: wrapping twice gives two blobs, both good. */
	assert_int_equal(keystore_wrap(ks, 42, dek, blob2), DM_OK);
	assert_memory_not_equal(blob + KEYSTORE_BLOB_NONCE, blob2 + KEYSTORE_BLOB_NONCE, 12);
	assert_int_equal(keystore_unwrap(ks, 42, blob2, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	keystore_free(ks);

	/* Another keystore on the same key (a restart) reads it too. */
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	memset(back, 0, sizeof back);
	assert_int_equal(keystore_unwrap(ks, 42, blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	keystore_free(ks);
}

static void test_wrapped_key_does_not_unwrap_for_another_vehicle_or_damaged(void **state)
{
	struct keystore_pkcs11_options o = options("kek-tamper");
	assert_int_equal(keystore_pkcs11_create_key(&o, NULL), DM_OK);
	struct keystore *ks = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0xab, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 42, dek, blob), DM_OK);
	memset(back, 0xee, sizeof back);
	assert_int_equal(keystore_unwrap(ks, 43, blob, back), DM_ERR_CRYPTO);
	assert_true(is_zero(back, sizeof back));
	assert_int_equal(keystore_unwrap(ks, 42u | 1u << 24, blob, back), DM_ERR_CRYPTO);
	/* Every flipped bit after the kek id: nonce, ciphertext, tag. */
	for (size_t i = KEYSTORE_BLOB_NONCE; i < KEYSTORE_WRAPPED_LEN; i++) {
		blob[i] ^= 0x80;
		memset(back, 0xee, sizeof back);
		assert_int_equal(keystore_unwrap(ks, 42, blob, back), DM_ERR_CRYPTO);
		assert_true(is_zero(back, sizeof back));
		blob[i] ^= 0x80;
	}
	blob[0] = 2;
	assert_int_equal(keystore_unwrap(ks, 42, blob, back), DM_ERR_UNSUPPORTED);
	blob[0] = KEYSTORE_WRAP_VERSION;
	/* After all those failures the session still works. */
	assert_int_equal(keystore_unwrap(ks, 42, blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	keystore_free(ks);
}

static void test_blob_of_the_file_backend_is_an_unknown_kek(void **state)
{
	char file_dir[128];
	snprintf(file_dir, sizeof file_dir, "%s/file-store", dir);
	assert_int_equal(mkdir(file_dir, 0700), 0);
	struct keystore *file_ks = NULL, *token_ks = NULL;
	assert_int_equal(keystore_file_open(file_dir, &file_ks), DM_OK);
	struct keystore_pkcs11_options o = options("kek-cross");
	assert_int_equal(keystore_pkcs11_create_key(&o, NULL), DM_OK);
	assert_int_equal(keystore_pkcs11_open(&o, &token_ks), DM_OK);

	uint8_t dek[32], back[32], from_file[KEYSTORE_WRAPPED_LEN],
	    from_token[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0x5c, sizeof dek);
	assert_int_equal(keystore_wrap(file_ks, 5, dek, from_file), DM_OK);
	assert_int_equal(keystore_wrap(token_ks, 5, dek, from_token), DM_OK);
	memset(back, 0xee, sizeof back);
	assert_int_equal(keystore_unwrap(token_ks, 5, from_file, back), DM_ERR_NOT_FOUND);
	assert_true(is_zero(back, sizeof back));
	assert_int_equal(keystore_unwrap(file_ks, 5, from_token, back), DM_ERR_NOT_FOUND);
	/* An id of 0 is never a KEK's. */
	memset(from_file + KEYSTORE_BLOB_KEK_ID, 0, 4);
	assert_int_equal(keystore_unwrap(token_ks, 5, from_file, back), DM_ERR_NOT_FOUND);
	keystore_free(file_ks);
	keystore_free(token_ks);
}

/* ---- rotation ---- */

static void test_rotation_keeps_old_blobs_and_drop_forgets_them(void **state)
{
	struct keystore_pkcs11_options o = options("kek-rotate");
	uint32_t first = 0, second = 0;
	assert_int_equal(keystore_pkcs11_create_key(&o, &first), DM_OK);
	struct keystore *ks = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	uint8_t dek[32], back[32], old_blob[KEYSTORE_WRAPPED_LEN], new_blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0xcd, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 9, dek, old_blob), DM_OK);

	assert_int_equal(keystore_rotate(ks, &second), DM_OK);
	assert_int_not_equal(second, 0);
	assert_int_not_equal(second, first);
	assert_int_equal(keystore_key_id(ks), second);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	assert_int_equal(keystore_wrap(ks, 9, dek, new_blob), DM_OK);
	assert_int_equal(keystore_blob_kek_id(new_blob), second);

	/* The token: the new key is L, the old one L.retired, no L.new. */
	struct raw r;
	raw_open(&r);
	CK_OBJECT_HANDLE key;
	assert_int_equal(raw_find(&r, "kek-rotate", &key), 1);
	assert_int_equal(raw_id(&r, key), second);
	assert_int_equal(raw_bool(&r, key, CKA_EXTRACTABLE), CK_FALSE);
	assert_int_equal(raw_bool(&r, key, CKA_SENSITIVE), CK_TRUE);
	assert_int_equal(raw_find(&r, "kek-rotate.retired", &key), 1);
	assert_int_equal(raw_id(&r, key), first);
	assert_int_equal(raw_find(&r, "kek-rotate.new", NULL), 0);
	raw_close(&r);
	keystore_free(ks);

	/* After a restart both read, and the new KEK is current. */
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	assert_int_equal(keystore_key_id(ks), second);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 9, new_blob, back), DM_OK);

	/* Dropping: never the current one; the old one only when asked. */
	assert_int_equal(keystore_drop(ks, second), DM_ERR_INVALID);
	assert_int_equal(keystore_drop(ks, first ^ 0x5a5a5a5a), DM_ERR_NOT_FOUND);
	assert_int_equal(keystore_drop(ks, 0), DM_ERR_NOT_FOUND);
	assert_int_equal(keystore_drop(ks, first), DM_OK);
	assert_int_equal(keystore_drop(ks, first), DM_ERR_NOT_FOUND);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_ERR_NOT_FOUND);
	assert_int_equal(keystore_unwrap(ks, 9, new_blob, back), DM_OK);
	keystore_free(ks);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_ERR_NOT_FOUND);
	raw_open(&r);
	assert_int_equal(raw_find(&r, "kek-rotate.retired", NULL), 0);
	raw_close(&r);
	keystore_free(ks);
}

static void test_rotation_stopped_after_step_one_leaves_the_old_key_current(void **state)
{
	struct keystore_pkcs11_options o = options("kek-crash1");
	uint32_t first = 0;
	assert_int_equal(keystore_pkcs11_create_key(&o, &first), DM_OK);
	/* The state after step 1: a new key labelled L.new, nothing else. */
	struct raw r;
	raw_open(&r);
	raw_generate(&r, "kek-crash1.new", 0x0badcafe, 4, CK_FALSE, CK_TRUE, 32);
	raw_close(&r);

	struct keystore *ks = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	assert_int_equal(keystore_key_id(ks), first);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0x21, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 3, dek, blob), DM_OK);
	assert_int_equal(keystore_blob_kek_id(blob), first);

	/* The next rotation destroys the stale key and makes its own. */
	uint32_t second = 0;
	assert_int_equal(keystore_rotate(ks, &second), DM_OK);
	assert_int_not_equal(second, 0x0badcafe);
	assert_int_not_equal(second, first);
	assert_int_equal(keystore_unwrap(ks, 3, blob, back), DM_OK);
	raw_open(&r);
	CK_OBJECT_HANDLE key;
	assert_int_equal(raw_find(&r, "kek-crash1.new", NULL), 0);
	assert_int_equal(raw_find(&r, "kek-crash1", &key), 1);
	assert_int_equal(raw_id(&r, key), second);
	assert_int_equal(raw_find(&r, "kek-crash1.retired", &key), 1);
	assert_int_equal(raw_id(&r, key), first);
	raw_close(&r);
	keystore_free(ks);
}

static void test_rotation_stopped_after_step_two_makes_the_new_key_current(void **state)
{
	struct keystore_pkcs11_options o = options("kek-crash2");
	uint32_t first = 0;
	assert_int_equal(keystore_pkcs11_create_key(&o, &first), DM_OK);
	struct keystore *ks = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	uint8_t dek[32], back[32], old_blob[KEYSTORE_WRAPPED_LEN], mid_blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0x42, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 8, dek, old_blob), DM_OK);
	keystore_free(ks);

	/* The state after step 2: L.new made, L relabelled L.retired. */
	struct raw r;
	raw_open(&r);
	CK_OBJECT_HANDLE key;
	raw_generate(&r, "kek-crash2.new", 0x00c0ffee, 4, CK_FALSE, CK_TRUE, 32);
	assert_int_equal(raw_find(&r, "kek-crash2", &key), 1);
	raw_relabel(&r, key, "kek-crash2.retired");
	raw_close(&r);

	/* L.new is current, the old key still unwraps. */
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	assert_int_equal(keystore_key_id(ks), 0x00c0ffee);
	assert_int_equal(keystore_unwrap(ks, 8, old_blob, back), DM_OK);
	assert_int_equal(keystore_wrap(ks, 8, dek, mid_blob), DM_OK);
	assert_int_equal(keystore_blob_kek_id(mid_blob), 0x00c0ffee);

	/* The next rotation first finishes step 3, so the L.new that wrapped
	 * mid_blob is kept; then it rotates as usual. */
	uint32_t third = 0;
	assert_int_equal(keystore_rotate(ks, &third), DM_OK);
	assert_int_not_equal(third, 0x00c0ffee);
	assert_int_equal(keystore_unwrap(ks, 8, old_blob, back), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 8, mid_blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	keystore_free(ks);
	raw_open(&r);
	assert_int_equal(raw_find(&r, "kek-crash2", &key), 1);
	assert_int_equal(raw_id(&r, key), third);
	assert_int_equal(raw_find(&r, "kek-crash2.retired", NULL), 2);
	assert_int_equal(raw_find(&r, "kek-crash2.new", NULL), 0);
	raw_close(&r);
	assert_int_equal(keystore_pkcs11_open(&o, &ks), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 8, mid_blob, back), DM_OK);
	keystore_free(ks);
}

static void test_a_key_rotated_by_another_process_is_found_and_stops_our_rotation(void **state)
{
	struct keystore_pkcs11_options o = options("kek-two");
	assert_int_equal(keystore_pkcs11_create_key(&o, NULL), DM_OK);
	struct keystore *ours = NULL, *theirs = NULL;
	assert_int_equal(keystore_pkcs11_open(&o, &ours), DM_OK);
	assert_int_equal(keystore_pkcs11_open(&o, &theirs), DM_OK);
	uint32_t their_new = 0;
	assert_int_equal(keystore_rotate(theirs, &their_new), DM_OK);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0x77, sizeof dek);
	assert_int_equal(keystore_wrap(theirs, 1, dek, blob), DM_OK);
	/* A kek id ours never saw is looked up in the token. */
	assert_int_equal(keystore_unwrap(ours, 1, blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	/* Ours may not rotate from a key that is no longer current. */
	uint32_t id = 1;
	assert_int_equal(keystore_rotate(ours, &id), DM_ERR_STATE);
	assert_int_equal(id, 0);
	keystore_free(ours);
	keystore_free(theirs);
}

static void test_file_backend_rotates_and_drops_through_the_generic_calls(void **state)
{
	char file_dir[128];
	snprintf(file_dir, sizeof file_dir, "%s/file-rotate", dir);
	assert_int_equal(mkdir(file_dir, 0700), 0);
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(file_dir, &ks), DM_OK);
	uint32_t first = keystore_key_id(ks), second = 0;
	assert_int_equal(keystore_rotate(ks, &second), DM_OK);
	assert_int_not_equal(second, first);
	assert_int_equal(keystore_drop(ks, second), DM_ERR_INVALID);
	assert_int_equal(keystore_drop(ks, first), DM_OK);
	keystore_free(ks);
}

int main(void)
{
	/* The refusals log their reasons: those lines are expected output. */
	dm_log_set_level(DM_LOG_ERROR);
	if (make_token() != 0) {
		remove_dir();
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_makes_a_sensitive_non_extractable_key_that_open_finds),
	    cmocka_unit_test(test_open_refuses_an_extractable_or_readable_key),
	    cmocka_unit_test(test_open_refuses_a_wrong_pin_a_missing_token_module_or_key),
	    cmocka_unit_test(test_pin_file_must_be_private_and_hold_one_line),
	    cmocka_unit_test(test_open_recovers_from_every_failed_allocation),
	    cmocka_unit_test(test_wrapped_key_round_trips_through_the_token),
	    cmocka_unit_test(test_wrapped_key_does_not_unwrap_for_another_vehicle_or_damaged),
	    cmocka_unit_test(test_blob_of_the_file_backend_is_an_unknown_kek),
	    cmocka_unit_test(test_rotation_keeps_old_blobs_and_drop_forgets_them),
	    cmocka_unit_test(test_rotation_stopped_after_step_one_leaves_the_old_key_current),
	    cmocka_unit_test(test_rotation_stopped_after_step_two_makes_the_new_key_current),
	    cmocka_unit_test(test_a_key_rotated_by_another_process_is_found_and_stops_our_rotation),
	    cmocka_unit_test(test_file_backend_rotates_and_drops_through_the_generic_calls),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	remove_dir();
	return failed;
}
