/*
 * vin.c — VIN alphabet and check digit (rules: see vin.h).
 */
#include "util/vin.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

/* Position 9 (index 8) holds the check digit; its weight is 0 so the digit
 * does not check itself. */
#define CHECK_INDEX 8

static const unsigned weights[VIN_LEN] = {8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2};

/* The transliteration value of c, or -1 when c is not in the VIN alphabet. */
static int char_value(char c)
{
	/* A..Z; 0 marks I, O and Q, which VINs never use. */
	static const unsigned char letters[26] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4,
						  5, 0, 7, 0, 9, 2, 3, 4, 5, 6, 7, 8, 9};
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'Z' && letters[c - 'A'])
		return letters[c - 'A'];
	return -1;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t err_len, const char *fmt,
						      ...)
{
	if (err && err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return DM_ERR_INVALID;
}

static int check_alphabet(const char *vin, size_t len, char *err, size_t err_len)
{
	if (len != VIN_LEN)
		return fail(err, err_len, "VIN must be %d characters, got %zu", VIN_LEN, len);
	for (size_t i = 0; i < VIN_LEN; i++) {
		char c = vin[i];
		if (char_value(c) >= 0)
			continue;
		if (c == 'I' || c == 'O' || c == 'Q')
			return fail(err, err_len,
				    "VIN position %zu is '%c', a letter VINs never use (I, O and "
				    "Q read as 1 and 0)",
				    i + 1, c);
		if (c >= 'a' && c <= 'z')
			return fail(err, err_len,
				    "VIN position %zu is '%c': VINs are written in upper case",
				    i + 1, c);
		if (c > 0x20 && c < 0x7f)
			return fail(err, err_len,
				    "VIN position %zu is '%c': VINs use digits and capital letters "
				    "except I, O and Q",
				    i + 1, c);
		return fail(err, err_len,
			    "VIN position %zu is byte 0x%02x: VINs use digits and capital letters "
			    "except I, O and Q",
			    i + 1, (unsigned char)c);
	}
	return DM_OK;
}

/* Only called on a VIN that passed check_alphabet. */
static char expected_digit(const char *vin)
{
	unsigned sum = 0;
	for (size_t i = 0; i < VIN_LEN; i++)
		sum += weights[i] * (unsigned)char_value(vin[i]);
	unsigned rest = sum % 11;
	return rest == 10 ? 'X' : (char)('0' + rest);
}

int vin_compute_check_digit(const char *vin, size_t len, char *out)
{
	*out = '\0';
	int rc = check_alphabet(vin, len, NULL, 0);
	if (rc == DM_OK)
		*out = expected_digit(vin);
	return rc;
}

static int check(const char *vin, size_t len, int market_requires, char *err, size_t err_len)
{
	if (err && err_len)
		err[0] = '\0';
	int rc = check_alphabet(vin, len, err, err_len);
	if (rc)
		return rc;
	char region = vin[0];
	int required = market_requires || (region >= '1' && region <= '5') || region == 'L';
	char want = expected_digit(vin);
	if (required && vin[CHECK_INDEX] != want)
		return fail(err, err_len, "VIN check digit (position 9) is '%c' but should be '%c'",
			    vin[CHECK_INDEX], want);
	return DM_OK;
}

int vin_check(const char *vin, size_t len, char *err, size_t err_len)
{
	return check(vin, len, 0, err, err_len);
}

int vin_check_for_market(const char *vin, size_t len, const char *market, char *err,
			 size_t err_len)
{
	int market_requires = market && (strcmp(market, "US") == 0 || strcmp(market, "CA") == 0 ||
					 strcmp(market, "CN") == 0);
	return check(vin, len, market_requires, err, err_len);
}

int jurisdiction_code_valid(const char *s)
{
	return s != NULL && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
	       s[2] == '\0';
}
