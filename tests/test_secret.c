/*
 * test_secret.c — secret generation, the stored hash format and checking.
 * The known vectors were computed outside this code (Python hashlib and
 * base64.urlsafe_b64encode), so they check the format, not just round trips.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/secret.h"

/* SHA-256 of 16 zero bytes followed by "abc". */
#define ZERO_SALT_ABC "sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4"
/* Salt 00 01 .. 0f, secret 43 times 'q'. */
#define COUNTING_SALT_Q "sha256$AAECAwQFBgcICQoLDA0ODw$mC7AVNlHs2NbaOuxvXBmQjywJ8gB86mVBZ7eOxWStN0"

static int is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static int verify(const char *secret, const char *stored)
{
	return secret_verify(secret, strlen(secret), stored);
}

static void test_secret_is_43_base64url_characters(void **state)
{
	for (int round = 0; round < 200; round++) {
		char secret[SECRET_BUF_SIZE];
		assert_int_equal(secret_generate(secret, sizeof secret), DM_OK);
		assert_int_equal(strlen(secret), SECRET_LEN);
		for (size_t i = 0; i < SECRET_LEN; i++)
			assert_true(is_b64url(secret[i]));
		/* 256 bits in 43 characters leave the last one's low 2 bits 0. */
		assert_non_null(strchr("AEIMQUYcgkosw048", secret[SECRET_LEN - 1]));
	}
}

static void test_secrets_differ_each_time(void **state)
{
	char a[SECRET_BUF_SIZE], b[SECRET_BUF_SIZE];
	assert_int_equal(secret_generate(a, sizeof a), DM_OK);
	assert_int_equal(secret_generate(b, sizeof b), DM_OK);
	assert_string_not_equal(a, b);
}

static void test_secret_generate_needs_room_for_the_nul(void **state)
{
	char out[SECRET_BUF_SIZE + 1];
	memset(out, 'x', sizeof out);
	assert_int_equal(secret_generate(out, SECRET_BUF_SIZE - 1), DM_ERR_INVALID);
	assert_string_equal(out, "");
	assert_int_equal(secret_generate(out, SECRET_BUF_SIZE), DM_OK);
	assert_int_equal(strlen(out), SECRET_LEN);
	assert_int_equal(secret_generate(out, SECRET_BUF_SIZE + 1), DM_OK);
	assert_int_equal(secret_generate(NULL, 0), DM_ERR_INVALID);
}

static void test_secret_hash_has_the_documented_shape(void **state)
{
	char stored[SECRET_HASH_BUF_SIZE];
	assert_int_equal(secret_hash("abc", 3, stored, sizeof stored), DM_OK);
	assert_int_equal(strlen(stored), SECRET_HASH_LEN);
	assert_memory_equal(stored, "sha256$", 7);
	assert_int_equal(stored[7 + 22], '$');
	for (size_t i = 7; i < SECRET_HASH_LEN; i++)
		assert_true(i == 7 + 22 || is_b64url(stored[i]));
}

static void test_secret_hash_salts_each_hash(void **state)
{
	char a[SECRET_HASH_BUF_SIZE], b[SECRET_HASH_BUF_SIZE];
	assert_int_equal(secret_hash("same", 4, a, sizeof a), DM_OK);
	assert_int_equal(secret_hash("same", 4, b, sizeof b), DM_OK);
	assert_string_not_equal(a, b);
	assert_int_equal(verify("same", a), DM_OK);
	assert_int_equal(verify("same", b), DM_OK);
}

static void test_secret_hash_needs_room_and_a_secret(void **state)
{
	char out[SECRET_HASH_BUF_SIZE + 1];
	memset(out, 'x', sizeof out);
	assert_int_equal(secret_hash("abc", 3, out, SECRET_HASH_BUF_SIZE - 1), DM_ERR_INVALID);
	assert_string_equal(out, "");
	assert_int_equal(secret_hash("abc", 3, out, SECRET_HASH_BUF_SIZE), DM_OK);
	assert_int_equal(secret_hash("abc", 3, out, SECRET_HASH_BUF_SIZE + 1), DM_OK);
	assert_int_equal(secret_hash("", 0, out, sizeof out), DM_ERR_INVALID);
	assert_string_equal(out, "");
}

static void test_secret_verify_matches_independently_computed_hashes(void **state)
{
	assert_int_equal(verify("abc", ZERO_SALT_ABC), DM_OK);
	char q[SECRET_LEN + 1];
	memset(q, 'q', SECRET_LEN);
	q[SECRET_LEN] = '\0';
	assert_int_equal(verify(q, COUNTING_SALT_Q), DM_OK);
}

static void test_secret_verify_refuses_a_wrong_secret(void **state)
{
	char secret[SECRET_BUF_SIZE], stored[SECRET_HASH_BUF_SIZE];
	assert_int_equal(secret_generate(secret, sizeof secret), DM_OK);
	assert_int_equal(secret_hash(secret, SECRET_LEN, stored, sizeof stored), DM_OK);
	assert_int_equal(secret_verify(secret, SECRET_LEN, stored), DM_OK);
	/* One byte shorter, one byte longer, one byte different, empty. */
	assert_int_equal(secret_verify(secret, SECRET_LEN - 1, stored), DM_ERR_AUTH);
	char longer[SECRET_BUF_SIZE + 1];
	memcpy(longer, secret, SECRET_LEN);
	longer[SECRET_LEN] = 'A';
	assert_int_equal(secret_verify(longer, SECRET_LEN + 1, stored), DM_ERR_AUTH);
	secret[SECRET_LEN - 1] = secret[SECRET_LEN - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(secret_verify(secret, SECRET_LEN, stored), DM_ERR_AUTH);
	assert_int_equal(secret_verify("", 0, stored), DM_ERR_AUTH);
	assert_int_equal(verify("abd", ZERO_SALT_ABC), DM_ERR_AUTH);
}

static void test_secret_verify_hashes_every_byte_including_nul(void **state)
{
	char stored[SECRET_HASH_BUF_SIZE];
	assert_int_equal(secret_hash("ab\0c", 4, stored, sizeof stored), DM_OK);
	assert_int_equal(secret_verify("ab\0c", 4, stored), DM_OK);
	assert_int_equal(secret_verify("ab\0d", 4, stored), DM_ERR_AUTH);
	assert_int_equal(secret_verify("ab", 2, stored), DM_ERR_AUTH);
}

static void test_secret_verify_refuses_a_tampered_hash_or_salt(void **state)
{
	char stored[] = ZERO_SALT_ABC;
	stored[SECRET_HASH_LEN - 2] = 'w'; /* 'v' -> 'w': still well-formed */
	assert_int_equal(verify("abc", stored), DM_ERR_AUTH);
	char salted[] = ZERO_SALT_ABC;
	salted[7] = 'B';
	assert_int_equal(verify("abc", salted), DM_ERR_AUTH);
}

static void test_secret_verify_calls_a_foreign_string_malformed(void **state)
{
	const char *bad[] = {
		"",
		"sha256$",
		/* one character short, one too many */
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v",
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4A",
		/* another tag, another separator, the separator moved */
		"sha512$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4",
		"sha256:AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4",
		"sha256$AAAAAAAAAAAAAAAAAAAAA$AJ35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4",
		/* standard base64 characters and padding are not base64url */
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35/9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4",
		"sha256$AAAAAAAAAAAAAAAAAAAA+A$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4",
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v=",
		/* unused low bits set in the last character of salt, of hash */
		"sha256$AAAAAAAAAAAAAAAAAAAAAB$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v4",
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v5",
		/* the separator where the hash should be */
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_$4",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = verify("abc", bad[i]);
		if (rc != DM_ERR_MALFORMED)
			fail_msg("\"%s\": %d", bad[i], rc);
	}
}

static void test_secret_verify_of_the_last_canonical_characters(void **state)
{
	/* The digest's last character carries 4 bits of it and 2 unused bits
	 * that must be 0: '3' and '5', next to the right '4', set them; '0' and
	 * '8' are well-formed but spell another digest. */
	const char *prefix =
		"sha256$AAAAAAAAAAAAAAAAAAAAAA$J35_9tIyuXY_Smbo0F0hDaMtrJxtvOECatTMmKy1_v";
	const struct {
		char last;
		int rc;
	} cases[] = {{'0', DM_ERR_AUTH},
		     {'3', DM_ERR_MALFORMED},
		     {'4', DM_OK},
		     {'5', DM_ERR_MALFORMED},
		     {'8', DM_ERR_AUTH}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char stored[SECRET_HASH_BUF_SIZE];
		snprintf(stored, sizeof stored, "%s%c", prefix, cases[i].last);
		int rc = verify("abc", stored);
		if (rc != cases[i].rc)
			fail_msg("last '%c': %d, expected %d", cases[i].last, rc, cases[i].rc);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_is_43_base64url_characters),
		cmocka_unit_test(test_secrets_differ_each_time),
		cmocka_unit_test(test_secret_generate_needs_room_for_the_nul),
		cmocka_unit_test(test_secret_hash_has_the_documented_shape),
		cmocka_unit_test(test_secret_hash_salts_each_hash),
		cmocka_unit_test(test_secret_hash_needs_room_and_a_secret),
		cmocka_unit_test(test_secret_verify_matches_independently_computed_hashes),
		cmocka_unit_test(test_secret_verify_refuses_a_wrong_secret),
		cmocka_unit_test(test_secret_verify_hashes_every_byte_including_nul),
		cmocka_unit_test(test_secret_verify_refuses_a_tampered_hash_or_salt),
		cmocka_unit_test(test_secret_verify_calls_a_foreign_string_malformed),
		cmocka_unit_test(test_secret_verify_of_the_last_canonical_characters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
