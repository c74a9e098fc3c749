/*
 * test_pseudonym.c — keyed pseudonyms of VINs and their key file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "residency/pseudonym.h"
#include "util/err.h"
#include "util/log.h"

#define VIN "LSVAU218XN2183294"

static int make_dir(void **state)
{
	static char dir[64];
	snprintf(dir, sizeof dir, "/tmp/domicile-test-pseudonym.XXXXXX");
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

static void test_pseudonym_key_is_created_once_with_mode_0600(void **state)
{
	const char *dir = *state;
	unsigned char first[PSEUDONYM_KEY_LEN], again[PSEUDONYM_KEY_LEN];
	assert_int_equal(pseudonym_key_load(dir, first), DM_OK);
	assert_int_equal(pseudonym_key_load(dir, again), DM_OK);
	assert_memory_equal(first, again, PSEUDONYM_KEY_LEN);
	char path[128];
	snprintf(path, sizeof path, "%s/pseudonym.key", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, PSEUDONYM_KEY_LEN);
}

static void test_pseudonym_key_of_the_wrong_size_is_refused(void **state)
{
	const char *dir = *state;
	char path[128];
	snprintf(path, sizeof path, "%s/pseudonym.key", dir);
	for (int size = PSEUDONYM_KEY_LEN - 1; size <= PSEUDONYM_KEY_LEN + 1; size += 2) {
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		for (int i = 0; i < size; i++)
			fputc(i, f);
		fclose(f);
		unsigned char key[PSEUDONYM_KEY_LEN];
		assert_int_equal(pseudonym_key_load(dir, key), DM_ERR_INVALID);
	}
}

static void test_pseudonym_is_stable_per_key_and_hides_the_vin(void **state)
{
	unsigned char key_a[PSEUDONYM_KEY_LEN] = {1}, key_b[PSEUDONYM_KEY_LEN] = {2};
	char a1[PSEUDONYM_LEN], a2[PSEUDONYM_LEN], b[PSEUDONYM_LEN], other[PSEUDONYM_LEN];
	assert_int_equal(pseudonym_of(key_a, VIN, 17, a1), DM_OK);
	assert_int_equal(pseudonym_of(key_a, VIN, 17, a2), DM_OK);
	assert_int_equal(pseudonym_of(key_b, VIN, 17, b), DM_OK);
	assert_int_equal(pseudonym_of(key_a, "LFV3A28KXL3007531", 17, other), DM_OK);
	assert_string_equal(a1, a2);
	assert_string_not_equal(a1, b);
	assert_string_not_equal(a1, other);
	assert_int_equal(strlen(a1), PSEUDONYM_LEN - 1);
	assert_memory_equal(a1, "vh-", 3);
	assert_null(strstr(a1, "LSVAU"));
	assert_int_equal(strspn(a1 + 3, "0123456789abcdef"), 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pseudonym_key_is_created_once_with_mode_0600,
						make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_pseudonym_key_of_the_wrong_size_is_refused,
						make_dir, remove_dir),
		cmocka_unit_test(test_pseudonym_is_stable_per_key_and_hides_the_vin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
