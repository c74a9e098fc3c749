/*
 * test_vin.c — VIN alphabet and check digit. Expected check digits are
 * worked out by hand in the comments, not by the code under test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/vin.h"

static int check(const char *vin, char *err, size_t err_len)
{
	return vin_check(vin, strlen(vin), err, err_len);
}

static void expect_valid(const char *vin, const char *market)
{
	char err[256];
	int rc = vin_check_for_market(vin, strlen(vin), market, err, sizeof err);
	if (rc != DM_OK)
		fail_msg("%s (market %s) refused: %s", vin, market ? market : "none", err);
	assert_string_equal(err, "");
}

static void expect_invalid(const char *vin, const char *market, const char *message)
{
	char err[256];
	assert_int_equal(vin_check_for_market(vin, strlen(vin), market, err, sizeof err),
			 DM_ERR_INVALID);
	if (message && strcmp(err, message) != 0)
		fail_msg("%s: expected \"%s\", got \"%s\"", vin, message, err);
}

static void test_vin_accepts_the_well_known_example(void **state)
{
	/* 1 M 8 G D M 9 A | X | K P 0 4 2 7 8 8
	 * 1*8 + 4*7 + 8*6 + 7*5 + 4*4 + 4*3 + 9*2 + 1*10 = 175
	 * + 2*9 + 7*8 + 0*7 + 4*6 + 2*5 + 7*4 + 8*3 + 8*2 = 176
	 * 351 = 31 * 11 + 10, so the digit is 'X'. */
	expect_valid("1M8GDM9AXKP042788", NULL);
	expect_invalid("1M8GDM9A0KP042788", NULL,
		       "VIN check digit (position 9) is '0' but should be 'X'");
}

static void test_vin_accepts_all_ones(void **state)
{
	/* The weights sum to 89 = 8 * 11 + 1, so seventeen 1s check. */
	expect_valid("11111111111111111", NULL);
	expect_invalid("11111111211111111", NULL,
		       "VIN check digit (position 9) is '2' but should be '1'");
}

static void test_vin_checks_north_american_vins(void **state)
{
	/* 2 H G F C 2 F 5 . L H 5 1 2 3 4 5 (Canada):
	 * 16 + 56 + 42 + 30 + 12 + 6 + 12 + 50 + 27 + 64 + 35 + 6 + 10 + 12 + 12 + 10 = 400
	 * = 36 * 11 + 4. */
	expect_valid("2HGFC2F54LH512345", NULL);
	expect_invalid("2HGFC2F55LH512345", NULL,
		       "VIN check digit (position 9) is '5' but should be '4'");
	/* 3 V W 2 B 7 A J . H M 3 1 2 3 4 5 (Mexico): 321 = 29 * 11 + 2. */
	expect_valid("3VW2B7AJ2HM312345", NULL);
	/* 5 Y J 3 E 1 E A . K F 1 2 3 4 5 6 (United States): 303 = 27 * 11 + 6. */
	expect_valid("5YJ3E1EA6KF123456", NULL);
	expect_invalid("5YJ3E1EAXKF123456", NULL,
		       "VIN check digit (position 9) is 'X' but should be '6'");
	/* A letter where a check digit belongs can never be right. */
	expect_invalid("5YJ3E1EAAKF123456", NULL,
		       "VIN check digit (position 9) is 'A' but should be '6'");
}

static void test_vin_checks_chinese_vins(void **state)
{
	/* L S V A U 2 1 8 . N 2 1 8 3 2 9 4 (GB 16735):
	 * 3*8 + 2*7 + 5*6 + 1*5 + 4*4 + 2*3 + 1*2 + 8*10 = 177
	 * + 5*9 + 2*8 + 1*7 + 8*6 + 3*5 + 2*4 + 9*3 + 4*2 = 174
	 * 351 = 31 * 11 + 10: 'X'. */
	expect_valid("LSVAU218XN2183294", NULL);
	expect_invalid("LSVAU2180N2183294", NULL,
		       "VIN check digit (position 9) is '0' but should be 'X'");
	/* L G B H 5 2 E 0 . K Y 0 1 2 3 4 5: 293 = 26 * 11 + 7. */
	expect_valid("LGBH52E07KY012345", NULL);
	expect_invalid("LGBH52E08KY012345", "CN", NULL);
}

static void test_vin_leaves_position_9_free_outside_the_checked_regions(void **state)
{
	/* A European VIN: position 9 is 'Z', part of the descriptor. */
	expect_valid("WVWZZZ1JZ3W386752", NULL);
	expect_valid("WVWZZZ1JZ3W386752", "DE");
	/* Japan, Korea and Australia: not enforced by region. */
	expect_valid("JTDKB20U193512345", NULL);
	expect_valid("KMHD341CBHU123456", NULL);
	expect_valid("6T1BF3EK0AX123456", NULL);
}

static void test_vin_region_boundaries_are_exact(void **state)
{
	/* Position 9 is 'A', which no check digit can be: the VIN passes
	 * exactly when its region is not checked. */
	const struct {
		char first;
		int checked;
	} cases[] = {
		{'0', 0}, {'1', 1}, {'2', 1}, {'4', 1}, {'5', 1}, {'6', 0},
		{'K', 0}, {'L', 1}, {'M', 0}, {'9', 0}, {'A', 0}, {'Z', 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char vin[] = "?0000000A00000000";
		vin[0] = cases[i].first;
		int rc = check(vin, NULL, 0);
		if (rc != (cases[i].checked ? DM_ERR_INVALID : DM_OK))
			fail_msg("region '%c': got %d", cases[i].first, rc);
	}
}

static void test_vin_market_requires_the_check_digit_for_imports(void **state)
{
	/* A German-built car: W B A 3 A 5 C 5 . C F 2 5 6 9 8 5
	 * 6*8 + 2*7 + 1*6 + 3*5 + 1*4 + 5*3 + 3*2 + 5*10 = 158
	 * + 3*9 + 6*8 + 2*7 + 5*6 + 6*5 + 9*4 + 8*3 + 5*2 = 219
	 * 377 = 34 * 11 + 3. */
	expect_valid("WBA3A5C53CF256985", "US");
	expect_valid("WBA3A5C53CF256985", "CN");
	expect_invalid("WBA3A5C50CF256985", "US",
		       "VIN check digit (position 9) is '0' but should be '3'");
	expect_invalid("WBA3A5C50CF256985", "CA", NULL);
	expect_invalid("WVWZZZ1JZ3W386752", "CN",
		       "VIN check digit (position 9) is 'Z' but should be '9'");
	/* Markets without the rule, and no market, leave it alone. */
	expect_valid("WBA3A5C50CF256985", "DE");
	expect_valid("WBA3A5C50CF256985", "MX");
	expect_valid("WBA3A5C50CF256985", "JP");
	expect_valid("WBA3A5C50CF256985", NULL);
	/* Markets are upper-case codes; "cn" is not CN. */
	expect_valid("WBA3A5C50CF256985", "cn");
}

static void test_vin_length_must_be_exactly_17(void **state)
{
	char err[128];
	const char *vin = "1M8GDM9AXKP042788X";
	assert_int_equal(vin_check(vin, 16, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "VIN must be 17 characters, got 16");
	assert_int_equal(vin_check(vin, 17, err, sizeof err), DM_OK);
	assert_int_equal(vin_check(vin, 18, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "VIN must be 17 characters, got 18");
	assert_int_equal(vin_check("", 0, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "VIN must be 17 characters, got 0");
}

static void test_vin_refuses_i_o_and_q_with_the_reason(void **state)
{
	expect_invalid("WVWZZZ1JZ3W38675I", NULL,
		       "VIN position 17 is 'I', a letter VINs never use (I, O and Q read as 1 "
		       "and 0)");
	expect_invalid("OVWZZZ1JZ3W386752", NULL,
		       "VIN position 1 is 'O', a letter VINs never use (I, O and Q read as 1 "
		       "and 0)");
	expect_invalid("WVWZZZ1JZ3Q386752", NULL, NULL);
}

static void test_vin_refuses_lower_case_and_other_characters(void **state)
{
	expect_invalid("1m8GDM9AXKP042788", NULL,
		       "VIN position 2 is 'm': VINs are written in upper case");
	expect_invalid("1M8GDM9AXKP04278-", NULL,
		       "VIN position 17 is '-': VINs use digits and capital letters except I, O "
		       "and Q");
	expect_invalid("1M8GDM9AXKP0427 8", NULL,
		       "VIN position 16 is byte 0x20: VINs use digits and capital letters except "
		       "I, O and Q");
	expect_invalid("1M8GDM9AXKP04278\xc3", NULL,
		       "VIN position 17 is byte 0xc3: VINs use digits and capital letters except "
		       "I, O and Q");
	/* The characters next to the alphabet's ends. */
	expect_invalid("/M8GDM9AXKP042788", NULL, NULL);
	expect_invalid(":M8GDM9AXKP042788", NULL, NULL);
	expect_invalid("@M8GDM9AXKP042788", NULL, NULL);
	expect_invalid("[M8GDM9AXKP042788", NULL, NULL);
}

static void test_vin_refuses_a_nul_inside_the_length(void **state)
{
	char err[128];
	const char vin[VIN_LEN] = "1M8GDM9AXKP04278"; /* the 17th byte is NUL */
	assert_int_equal(vin_check(vin, VIN_LEN, err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "VIN position 17 is byte 0x00: VINs use digits and capital "
				 "letters except I, O and Q");
}

static void test_vin_transliterates_every_character_as_the_standard_lists(void **state)
{
	/* The values as the standard lists them. */
	const char *alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
	const int values[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7,
			      8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9};
	for (size_t i = 0; i < strlen(alphabet); i++) {
		/* "1" + c + fifteen '0': 1*8 + value(c)*7, modulo 11. */
		char vin[] = "1?0000000000000000";
		vin[1] = alphabet[i];
		vin[VIN_LEN] = '\0';
		int rest = (8 + values[i] * 7) % 11;
		vin[8] = rest == 10 ? 'X' : (char)('0' + rest);
		char err[128];
		if (vin_check(vin, VIN_LEN, err, sizeof err) != DM_OK)
			fail_msg("'%c': %s", alphabet[i], err);
		char digit;
		assert_int_equal(vin_compute_check_digit(vin, VIN_LEN, &digit), DM_OK);
		assert_int_equal(digit, vin[8]);
	}
}

static void test_vin_compute_check_digit_ignores_position_9(void **state)
{
	char digit = '?';
	assert_int_equal(vin_compute_check_digit("1M8GDM9A0KP042788", VIN_LEN, &digit), DM_OK);
	assert_int_equal(digit, 'X');
	assert_int_equal(vin_compute_check_digit("1M8GDM9AZKP042788", VIN_LEN, &digit), DM_OK);
	assert_int_equal(digit, 'X');
	assert_int_equal(vin_compute_check_digit("1M8GDM9AOKP042788", VIN_LEN, &digit),
			 DM_ERR_INVALID);
	assert_int_equal(digit, '\0');
	assert_int_equal(vin_compute_check_digit("1M8GDM9A0KP04278", 16, &digit), DM_ERR_INVALID);
}

static void test_vin_message_is_truncated_to_the_buffer(void **state)
{
	char err[8];
	assert_int_equal(check("1M8GDM9A0KP042788", err, sizeof err), DM_ERR_INVALID);
	assert_string_equal(err, "VIN che");
	assert_int_equal(check("1M8GDM9A0KP042788", NULL, 0), DM_ERR_INVALID);
	char stale[16] = "stale";
	assert_int_equal(check("1M8GDM9AXKP042788", stale, sizeof stale), DM_OK);
	assert_string_equal(stale, "");
}

static void test_jurisdiction_codes_are_two_capitals_and_nothing_else(void **state)
{
	assert_true(jurisdiction_code_valid("CN"));
	assert_true(jurisdiction_code_valid("DE"));
	assert_false(jurisdiction_code_valid(NULL));
	assert_false(jurisdiction_code_valid(""));
	assert_false(jurisdiction_code_valid("C"));
	assert_false(jurisdiction_code_valid("cn"));
	assert_false(jurisdiction_code_valid("CNN"));
	assert_false(jurisdiction_code_valid("C1"));
	assert_false(jurisdiction_code_valid("C@"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vin_accepts_the_well_known_example),
		cmocka_unit_test(test_vin_accepts_all_ones),
		cmocka_unit_test(test_vin_checks_north_american_vins),
		cmocka_unit_test(test_vin_checks_chinese_vins),
		cmocka_unit_test(test_vin_leaves_position_9_free_outside_the_checked_regions),
		cmocka_unit_test(test_vin_region_boundaries_are_exact),
		cmocka_unit_test(test_vin_market_requires_the_check_digit_for_imports),
		cmocka_unit_test(test_vin_length_must_be_exactly_17),
		cmocka_unit_test(test_vin_refuses_i_o_and_q_with_the_reason),
		cmocka_unit_test(test_vin_refuses_lower_case_and_other_characters),
		cmocka_unit_test(test_vin_refuses_a_nul_inside_the_length),
		cmocka_unit_test(test_vin_transliterates_every_character_as_the_standard_lists),
		cmocka_unit_test(test_vin_compute_check_digit_ignores_position_9),
		cmocka_unit_test(test_vin_message_is_truncated_to_the_buffer),
		cmocka_unit_test(test_jurisdiction_codes_are_two_capitals_and_nothing_else),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
