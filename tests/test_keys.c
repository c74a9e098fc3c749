/*
 * test_keys.c — AES-256-GCM, nonce sources, the KEK file store, key
 * wrapping and rotation, per-vehicle keys and block associated data.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/aead.h"
#include "crypto/keystore.h"
#include "crypto/vehicle_key.h"
#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"

/* ---- helpers ---- */

static int make_dir(void **state)
{
	static char dir[64];
	snprintf(dir, sizeof dir, "/tmp/domicile-test-keys.XXXXXX");
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

static void hex_to_bytes(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(strlen(hex), 2 * len);
	for (size_t i = 0; i < len; i++) {
		unsigned byte;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &byte), 1);
		out[i] = (uint8_t)byte;
	}
}

static int is_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != 0)
			return 0;
	return 1;
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

static void file_path(char *out, size_t cap, const char *dir, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

/* ---- AES-256-GCM ---- */

/* Expected values computed outside this project with Python's
 * `cryptography` (AESGCM), not with the code under test. */
static void test_aead_seal_matches_an_independently_computed_answer(void **state)
{
	uint8_t key[32], nonce[12], expect_ct[47], expect_tag[16];
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	hex_to_bytes("cafebabefacedbaddecaf888", nonce, 12);
	hex_to_bytes(
	    "dcc6c84fc9162a35157b38b81f20b1082315e03ab23602542fab24438ebb53d29c61ec74f48078"
	    "561c681c5202b37a",
	    expect_ct, sizeof expect_ct);
	hex_to_bytes("a2169fc08b05bf25724ccdb6bce835e5", expect_tag, 16);
	const char *plain = "Vehicle.Speed=87.5 km/h at 2026-11-25T14:34:00Z";
	const char *ad = "domicile-kat";
	assert_int_equal(strlen(plain), 47);

	uint8_t ct[47], tag[16], back[47];
	assert_int_equal(aead_seal(key, nonce, ad, strlen(ad), plain, 47, ct, tag), DM_OK);
	assert_memory_equal(ct, expect_ct, 47);
	assert_memory_equal(tag, expect_tag, 16);
	assert_int_equal(aead_open(key, nonce, ad, strlen(ad), ct, 47, tag, back), DM_OK);
	assert_memory_equal(back, plain, 47);
}

/* The published GCM test cases 13 and 14 (AES-256, zero key and nonce):
 * an empty plaintext, and one block of zeros. */
static void test_aead_seal_matches_the_gcm_spec_test_cases_13_and_14(void **state)
{
	uint8_t key[32] = {0}, nonce[12] = {0}, zeros[16] = {0}, tag[16], ct[16], expect[16];
	assert_int_equal(aead_seal(key, nonce, NULL, 0, NULL, 0, NULL, tag), DM_OK);
	hex_to_bytes("530f8afbc74536b9a963b4f1c4cb738b", expect, 16);
	assert_memory_equal(tag, expect, 16);
	assert_int_equal(aead_open(key, nonce, NULL, 0, NULL, 0, tag, NULL), DM_OK);

	assert_int_equal(aead_seal(key, nonce, NULL, 0, zeros, 16, ct, tag), DM_OK);
	hex_to_bytes("cea7403d4d606b6e074ec5d3baf39d18", expect, 16);
	assert_memory_equal(ct, expect, 16);
	hex_to_bytes("d0d1c8a799996bf0265b98b5d48ab919", expect, 16);
	assert_memory_equal(tag, expect, 16);
}

static void test_aead_seals_and_opens_in_place(void **state)
{
	uint8_t key[32], nonce[12] = {1}, buf[100], orig[100], tag[16];
	memset(key, 0x5a, sizeof key);
	for (int i = 0; i < 100; i++)
		orig[i] = buf[i] = (uint8_t)(i * 7);
	assert_int_equal(aead_seal(key, nonce, "x", 1, buf, 100, buf, tag), DM_OK);
	assert_memory_not_equal(buf, orig, 100);
	assert_int_equal(aead_open(key, nonce, "x", 1, buf, 100, tag, buf), DM_OK);
	assert_memory_equal(buf, orig, 100);
}

static void test_a_flipped_bit_in_ciphertext_tag_or_ad_fails_and_zeroes_the_output(void **state)
{
	uint8_t key[32], nonce[12], plain[40], ct[40], tag[16], out[40];
	uint8_t ad[12] = "vehicle-0042";
	memset(key, 0x11, sizeof key);
	memset(nonce, 0x22, sizeof nonce);
	memset(plain, 0x33, sizeof plain);
	assert_int_equal(aead_seal(key, nonce, ad, sizeof ad, plain, sizeof plain, ct, tag), DM_OK);

	for (size_t bit = 0; bit < 8 * sizeof ct; bit++) {
		ct[bit / 8] ^= (uint8_t)(1u << bit % 8);
		memset(out, 0xee, sizeof out);
		assert_int_equal(aead_open(key, nonce, ad, sizeof ad, ct, sizeof ct, tag, out),
		                 DM_ERR_CRYPTO);
		assert_true(is_zero(out, sizeof out));
		ct[bit / 8] ^= (uint8_t)(1u << bit % 8);
	}
	for (size_t bit = 0; bit < 8 * sizeof tag; bit++) {
		tag[bit / 8] ^= (uint8_t)(1u << bit % 8);
		memset(out, 0xee, sizeof out);
		assert_int_equal(aead_open(key, nonce, ad, sizeof ad, ct, sizeof ct, tag, out),
		                 DM_ERR_CRYPTO);
		assert_true(is_zero(out, sizeof out));
		tag[bit / 8] ^= (uint8_t)(1u << bit % 8);
	}
	for (size_t bit = 0; bit < 8 * sizeof ad; bit++) {
		ad[bit / 8] ^= (uint8_t)(1u << bit % 8);
		memset(out, 0xee, sizeof out);
		assert_int_equal(aead_open(key, nonce, ad, sizeof ad, ct, sizeof ct, tag, out),
		                 DM_ERR_CRYPTO);
		assert_true(is_zero(out, sizeof out));
		ad[bit / 8] ^= (uint8_t)(1u << bit % 8);
	}
	/* A shorter AD (a dropped byte) and a wrong nonce or key fail too. */
	assert_int_equal(aead_open(key, nonce, ad, sizeof ad - 1, ct, sizeof ct, tag, out),
	                 DM_ERR_CRYPTO);
	nonce[11] ^= 1;
	assert_int_equal(aead_open(key, nonce, ad, sizeof ad, ct, sizeof ct, tag, out),
	                 DM_ERR_CRYPTO);
	nonce[11] ^= 1;
	key[0] ^= 0x80;
	assert_int_equal(aead_open(key, nonce, ad, sizeof ad, ct, sizeof ct, tag, out),
	                 DM_ERR_CRYPTO);
	key[0] ^= 0x80;
	/* Everything restored: it opens again. */
	assert_int_equal(aead_open(key, nonce, ad, sizeof ad, ct, sizeof ct, tag, out), DM_OK);
	assert_memory_equal(out, plain, sizeof plain);
}

/* ---- nonce sources ---- */

static int compare_nonces(const void *a, const void *b)
{
	return memcmp(a, b, AEAD_NONCE_LEN);
}

static void test_nonce_source_never_repeats_over_a_million_draws(void **state)
{
	enum { DRAWS = 1000000 };
	uint8_t(*nonces)[AEAD_NONCE_LEN] = malloc((size_t)DRAWS * AEAD_NONCE_LEN);
	assert_non_null(nonces);
	struct aead_nonce_source src;
	assert_int_equal(aead_nonce_source_init(&src), DM_OK);
	for (int i = 0; i < DRAWS; i++)
		assert_int_equal(aead_nonce_next(&src, nonces[i]), DM_OK);
	/* Same prefix throughout: only the counter moves. */
	for (int i = 1; i < DRAWS; i++)
		assert_memory_equal(nonces[i], nonces[0], 4);
	qsort(nonces, DRAWS, AEAD_NONCE_LEN, compare_nonces);
	for (int i = 1; i < DRAWS; i++)
		assert_int_not_equal(memcmp(nonces[i - 1], nonces[i], AEAD_NONCE_LEN), 0);
	free(nonces);
}

static void test_two_nonce_sources_start_at_different_places(void **state)
{
	struct aead_nonce_source a, b;
	uint8_t na[12], nb[12];
	assert_int_equal(aead_nonce_source_init(&a), DM_OK);
	assert_int_equal(aead_nonce_source_init(&b), DM_OK);
	assert_int_equal(aead_nonce_next(&a, na), DM_OK);
	assert_int_equal(aead_nonce_next(&b, nb), DM_OK);
	assert_memory_not_equal(na, nb, 12);
	/* The starting counter leaves at least 2^63 draws. */
	assert_true((na[4] & 0x80) == 0);
}

static void test_nonce_source_refuses_when_the_counter_would_wrap(void **state)
{
	struct aead_nonce_source src;
	uint8_t nonce[12];
	assert_int_equal(aead_nonce_source_init(&src), DM_OK);
	aead_nonce_source_set_counter(&src, UINT64_MAX - 2);
	assert_int_equal(aead_nonce_next(&src, nonce), DM_OK);
	uint8_t expect[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd};
	assert_memory_equal(nonce + 4, expect, 8);
	assert_int_equal(aead_nonce_next(&src, nonce), DM_OK); /* UINT64_MAX - 1: the last */
	expect[7] = 0xfe;
	assert_memory_equal(nonce + 4, expect, 8);
	assert_int_equal(aead_nonce_next(&src, nonce), DM_ERR_STATE);
	assert_true(is_zero(nonce, 12));
	/* Refusal is for good, even if the counter were moved back. */
	aead_nonce_source_set_counter(&src, 0);
	assert_int_equal(aead_nonce_next(&src, nonce), DM_ERR_STATE);
}

/* ---- the KEK file ---- */

static void test_kek_file_is_created_with_mode_0600_and_reopened_with_the_same_id(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL, *again = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	char path[128];
	file_path(path, sizeof path, dir, "kek.key");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 32);
	assert_int_not_equal(keystore_key_id(ks), 0);
	assert_int_equal(keystore_file_open(dir, &again), DM_OK);
	assert_int_equal(keystore_key_id(again), keystore_key_id(ks));
	keystore_free(ks);
	keystore_free(again);
	keystore_free(NULL);
}

static void test_kek_file_that_others_can_read_is_refused(void **state)
{
	const char *dir = *state;
	uint8_t key[32];
	memset(key, 0x42, sizeof key);
	char path[128];
	file_path(path, sizeof path, dir, "kek.key");
	struct keystore *ks = (struct keystore *)1;
	write_file(path, key, sizeof key, 0644);
	assert_int_equal(keystore_file_open(dir, &ks), DM_ERR_DENIED);
	assert_null(ks);
	write_file(path, key, sizeof key, 0640);
	assert_int_equal(keystore_file_open(dir, &ks), DM_ERR_DENIED);
	write_file(path, key, sizeof key, 0602);
	assert_int_equal(keystore_file_open(dir, &ks), DM_ERR_DENIED);
	/* Stricter than 0600 is fine. */
	write_file(path, key, sizeof key, 0400);
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	keystore_free(ks);
	/* A symlink to a good key file is refused too. */
	char real[128];
	file_path(real, sizeof real, dir, "elsewhere.key");
	write_file(real, key, sizeof key, 0600);
	unlink(path);
	assert_int_equal(symlink(real, path), 0);
	assert_int_equal(keystore_file_open(dir, &ks), DM_ERR_DENIED);
}

static void test_kek_file_of_the_wrong_size_is_refused(void **state)
{
	const char *dir = *state;
	uint8_t key[33];
	memset(key, 0x42, sizeof key);
	char path[128];
	file_path(path, sizeof path, dir, "kek.key");
	struct keystore *ks = NULL;
	size_t sizes[] = {0, 31, 33};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		write_file(path, key, sizes[i], 0600);
		assert_int_equal(keystore_file_open(dir, &ks), DM_ERR_INVALID);
		assert_null(ks);
	}
	write_file(path, key, 32, 0600);
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	keystore_free(ks);
}

static void test_kek_file_named_for_another_id_is_refused(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	keystore_free(ks);
	uint8_t key[32];
	memset(key, 0x42, sizeof key);
	char path[128];
	file_path(path, sizeof path, dir, "kek-00000001.key");
	write_file(path, key, sizeof key, 0600);
	assert_int_equal(keystore_file_open(dir, &ks), DM_ERR_INVALID);
	assert_null(ks);
}

static void test_kek_file_open_recovers_from_every_failed_allocation(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK); /* create it */
	assert_int_equal(keystore_file_rotate(ks, NULL), DM_OK);
	uint32_t id = keystore_key_id(ks);
	keystore_free(ks);
	int rc = DM_ERR_NOMEM;
	for (long budget = 0; rc == DM_ERR_NOMEM; budget++) {
		assert_true(budget < 100);
		dm_alloc_fail_after(budget);
		rc = keystore_file_open(dir, &ks);
		dm_alloc_fail_after(-1);
		if (rc == DM_ERR_NOMEM)
			assert_null(ks);
	}
	assert_int_equal(rc, DM_OK);
	assert_int_equal(keystore_key_id(ks), id);
	keystore_free(ks);
}

/* ---- wrapping ---- */

static void test_wrapped_key_round_trips(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN], blob2[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0xab, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 42, dek, blob), DM_OK);
	assert_int_equal(blob[0], KEYSTORE_WRAP_VERSION);
	assert_int_equal(keystore_blob_kek_id(blob), keystore_key_id(ks));
	assert_int_equal(keystore_unwrap(ks, 42, blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	/* A fresh nonce each time: wrapping twice gives two blobs. */
	assert_int_equal(keystore_wrap(ks, 42, dek, blob2), DM_OK);
	assert_memory_not_equal(blob, blob2, KEYSTORE_WRAPPED_LEN);
	keystore_free(ks);
}

static void test_wrapped_key_does_not_unwrap_for_another_vehicle(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0xab, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 42, dek, blob), DM_OK);
	memset(back, 0xee, sizeof back);
	assert_int_equal(keystore_unwrap(ks, 43, blob, back), DM_ERR_CRYPTO);
	assert_true(is_zero(back, sizeof back));
	assert_int_equal(keystore_unwrap(ks, 42u | 1u << 24, blob, back), DM_ERR_CRYPTO);
	keystore_free(ks);
}

static void test_damaged_or_foreign_blob_does_not_unwrap(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	uint8_t dek[32], back[32], blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0xab, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 7, dek, blob), DM_OK);
	for (size_t i = 5; i < KEYSTORE_WRAPPED_LEN; i++) {
		blob[i] ^= 0x01;
		assert_int_equal(keystore_unwrap(ks, 7, blob, back), DM_ERR_CRYPTO);
		assert_true(is_zero(back, sizeof back));
		blob[i] ^= 0x01;
	}
	blob[0] = 2;
	assert_int_equal(keystore_unwrap(ks, 7, blob, back), DM_ERR_UNSUPPORTED);
	blob[0] = KEYSTORE_WRAP_VERSION;
	blob[1] ^= 0xff; /* a KEK this store never had */
	assert_int_equal(keystore_unwrap(ks, 7, blob, back), DM_ERR_NOT_FOUND);
	keystore_free(ks);
}

static void test_rotation_keeps_old_wraps_readable_and_new_wraps_use_the_new_id(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	uint32_t first = keystore_key_id(ks);
	uint8_t dek[32], back[32], old_blob[KEYSTORE_WRAPPED_LEN], new_blob[KEYSTORE_WRAPPED_LEN];
	memset(dek, 0xcd, sizeof dek);
	assert_int_equal(keystore_wrap(ks, 9, dek, old_blob), DM_OK);

	uint32_t second = 0;
	assert_int_equal(keystore_file_rotate(ks, &second), DM_OK);
	assert_int_not_equal(second, first);
	assert_int_equal(keystore_key_id(ks), second);
	char path[128], name[32];
	snprintf(name, sizeof name, "kek-%08x.key", (unsigned)first);
	file_path(path, sizeof path, dir, name);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	file_path(path, sizeof path, dir, "kek.key.new");
	assert_int_not_equal(stat(path, &st), 0);

	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_OK);
	assert_memory_equal(back, dek, 32);
	assert_int_equal(keystore_wrap(ks, 9, dek, new_blob), DM_OK);
	assert_int_equal(keystore_blob_kek_id(new_blob), second);
	keystore_free(ks);

	/* After a restart both still read, and the new KEK is current. */
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	assert_int_equal(keystore_key_id(ks), second);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 9, new_blob, back), DM_OK);

	/* Dropping: never the current one; the old one only when asked. */
	assert_int_equal(keystore_file_drop(ks, second), DM_ERR_INVALID);
	assert_int_equal(keystore_file_drop(ks, first ^ 0x5a5a5a5a), DM_ERR_NOT_FOUND);
	assert_int_equal(keystore_file_drop(ks, first), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_ERR_NOT_FOUND);
	assert_int_equal(keystore_unwrap(ks, 9, new_blob, back), DM_OK);
	keystore_free(ks);
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	assert_int_equal(keystore_unwrap(ks, 9, old_blob, back), DM_ERR_NOT_FOUND);
	keystore_free(ks);
}

static void test_rotation_after_a_crash_midway_reuses_the_kept_copy(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	uint32_t first = keystore_key_id(ks);
	keystore_free(ks);
	/* The state after "link" but before "rename": a stale .new and a copy
	 * of the current key under its id. */
	char cur[128], copy[128], stale[128], name[32];
	file_path(cur, sizeof cur, dir, "kek.key");
	snprintf(name, sizeof name, "kek-%08x.key", (unsigned)first);
	file_path(copy, sizeof copy, dir, name);
	file_path(stale, sizeof stale, dir, "kek.key.new");
	assert_int_equal(link(cur, copy), 0);
	uint8_t junk[32] = {1};
	write_file(stale, junk, sizeof junk, 0600);

	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	assert_int_equal(keystore_key_id(ks), first);
	uint32_t second = 0;
	assert_int_equal(keystore_file_rotate(ks, &second), DM_OK);
	assert_int_not_equal(second, first);
	keystore_free(ks);
}

/* ---- vehicle keys and block AD ---- */

static void test_vehicle_key_wraps_and_unwraps_with_a_fresh_nonce_session(void **state)
{
	const char *dir = *state;
	struct keystore *ks = NULL;
	assert_int_equal(keystore_file_open(dir, &ks), DM_OK);
	struct vehicle_key *key = NULL, *back = NULL, *other = NULL;
	assert_int_equal(vehicle_key_generate(1234, &key), DM_OK);
	assert_int_equal(vehicle_key_generate(1234, &other), DM_OK);
	assert_memory_not_equal(key->key, other->key, VEHICLE_KEY_LEN);
	uint8_t blob[KEYSTORE_WRAPPED_LEN];
	assert_int_equal(vehicle_key_wrap(ks, key, blob), DM_OK);
	assert_int_equal(vehicle_key_unwrap(ks, 1234, blob, &back), DM_OK);
	assert_int_equal(back->vehicle_id, 1234);
	assert_memory_equal(back->key, key->key, VEHICLE_KEY_LEN);
	uint8_t n1[12], n2[12];
	assert_int_equal(aead_nonce_next(&key->nonces, n1), DM_OK);
	assert_int_equal(aead_nonce_next(&back->nonces, n2), DM_OK);
	assert_memory_not_equal(n1, n2, 12);
	vehicle_key_free(back);
	back = (struct vehicle_key *)1;
	assert_int_equal(vehicle_key_unwrap(ks, 1235, blob, &back), DM_ERR_CRYPTO);
	assert_null(back);
	vehicle_key_free(key);
	vehicle_key_free(other);
	vehicle_key_free(NULL);
	keystore_free(ks);
}

static void test_block_ad_differs_when_any_field_differs(void **state)
{
	uint8_t base[BLOCK_AD_MAX], other[BLOCK_AD_MAX];
	size_t len = block_ad(base, sizeof base, 7, "Vehicle.Speed", 1000, 2000, 1);
	assert_int_equal(len, BLOCK_AD_FIXED_LEN + strlen("Vehicle.Speed"));
	assert_int_equal(block_ad(other, sizeof other, 7, "Vehicle.Speed", 1000, 2000, 1), len);
	assert_memory_equal(base, other, len);

	size_t n;
	n = block_ad(other, sizeof other, 8, "Vehicle.Speed", 1000, 2000, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Speee", 1000, 2000, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Spee", 1000, 2000, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Speed", 1001, 2000, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Speed", 1000, 2001, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Speed", 2000, 1000, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Speed", 1000, 2000, 2);
	assert_true(n != len || memcmp(base, other, len) != 0);
	n = block_ad(other, sizeof other, 7, "Vehicle.Speed", -1000, 2000, 1);
	assert_true(n != len || memcmp(base, other, len) != 0);
}

static void test_block_ad_is_refused_when_it_does_not_fit_or_the_path_is_bad(void **state)
{
	uint8_t out[BLOCK_AD_MAX + 1];
	size_t need = BLOCK_AD_FIXED_LEN + 1;
	assert_int_equal(block_ad(out, need - 1, 1, "V", 0, 0, 1), 0);
	assert_int_equal(block_ad(out, need, 1, "V", 0, 0, 1), need);
	assert_int_equal(block_ad(out, need + 1, 1, "V", 0, 0, 1), need);
	assert_int_equal(block_ad(out, sizeof out, 1, "", 0, 0, 1), 0);
	assert_int_equal(block_ad(out, sizeof out, 1, NULL, 0, 0, 1), 0);
	char path[BLOCK_AD_MAX_PATH + 2];
	memset(path, 'a', sizeof path);
	path[BLOCK_AD_MAX_PATH - 1] = '\0';
	assert_int_equal(block_ad(out, sizeof out, 1, path, 0, 0, 1), BLOCK_AD_MAX - 1);
	path[BLOCK_AD_MAX_PATH - 1] = 'a';
	path[BLOCK_AD_MAX_PATH] = '\0';
	assert_int_equal(block_ad(out, sizeof out, 1, path, 0, 0, 1), BLOCK_AD_MAX);
	path[BLOCK_AD_MAX_PATH] = 'a';
	path[BLOCK_AD_MAX_PATH + 1] = '\0';
	assert_int_equal(block_ad(out, sizeof out, 1, path, 0, 0, 1), 0);
}

/* A block sealed under one AD does not open under the AD of another row. */
static void test_block_sealed_for_one_row_fails_to_open_in_another(void **state)
{
	struct vehicle_key *key = NULL;
	assert_int_equal(vehicle_key_generate(7, &key), DM_OK);
	uint8_t ad[BLOCK_AD_MAX], nonce[12], body[64], sealed[64], tag[16];
	memset(body, 0x77, sizeof body);
	size_t ad_len = block_ad(ad, sizeof ad, 7, "Vehicle.Speed", 1000, 2000, 1);
	assert_int_equal(aead_nonce_next(&key->nonces, nonce), DM_OK);
	assert_int_equal(aead_seal(key->key, nonce, ad, ad_len, body, sizeof body, sealed, tag),
	                 DM_OK);
	size_t moved = block_ad(ad, sizeof ad, 7, "Vehicle.Cabin.Temp", 1000, 2000, 1);
	assert_int_equal(aead_open(key->key, nonce, ad, moved, sealed, sizeof sealed, tag, body),
	                 DM_ERR_CRYPTO);
	assert_true(is_zero(body, sizeof body));
	vehicle_key_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aead_seal_matches_an_independently_computed_answer),
	    cmocka_unit_test(test_aead_seal_matches_the_gcm_spec_test_cases_13_and_14),
	    cmocka_unit_test(test_aead_seals_and_opens_in_place),
	    cmocka_unit_test(
	        test_a_flipped_bit_in_ciphertext_tag_or_ad_fails_and_zeroes_the_output),
	    cmocka_unit_test(test_nonce_source_never_repeats_over_a_million_draws),
	    cmocka_unit_test(test_two_nonce_sources_start_at_different_places),
	    cmocka_unit_test(test_nonce_source_refuses_when_the_counter_would_wrap),
	    cmocka_unit_test_setup_teardown(
	        test_kek_file_is_created_with_mode_0600_and_reopened_with_the_same_id, make_dir,
	        remove_dir),
	    cmocka_unit_test_setup_teardown(test_kek_file_that_others_can_read_is_refused, make_dir,
	                                    remove_dir),
	    cmocka_unit_test_setup_teardown(test_kek_file_of_the_wrong_size_is_refused, make_dir,
	                                    remove_dir),
	    cmocka_unit_test_setup_teardown(test_kek_file_named_for_another_id_is_refused, make_dir,
	                                    remove_dir),
	    cmocka_unit_test_setup_teardown(
	        test_kek_file_open_recovers_from_every_failed_allocation, make_dir, remove_dir),
	    cmocka_unit_test_setup_teardown(test_wrapped_key_round_trips, make_dir, remove_dir),
	    cmocka_unit_test_setup_teardown(test_wrapped_key_does_not_unwrap_for_another_vehicle,
	                                    make_dir, remove_dir),
	    cmocka_unit_test_setup_teardown(test_damaged_or_foreign_blob_does_not_unwrap, make_dir,
	                                    remove_dir),
	    cmocka_unit_test_setup_teardown(
	        test_rotation_keeps_old_wraps_readable_and_new_wraps_use_the_new_id, make_dir,
	        remove_dir),
	    cmocka_unit_test_setup_teardown(test_rotation_after_a_crash_midway_reuses_the_kept_copy,
	                                    make_dir, remove_dir),
	    cmocka_unit_test_setup_teardown(
	        test_vehicle_key_wraps_and_unwraps_with_a_fresh_nonce_session, make_dir,
	        remove_dir),
	    cmocka_unit_test(test_block_ad_differs_when_any_field_differs),
	    cmocka_unit_test(test_block_ad_is_refused_when_it_does_not_fit_or_the_path_is_bad),
	    cmocka_unit_test(test_block_sealed_for_one_row_fails_to_open_in_another),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
