/*
 * vin.h — checks a Vehicle Identification Number before the node trusts it.
 *
 * A VIN is 17 characters of the ISO 3779 alphabet: digits and upper-case
 * letters except I, O and Q (they read as 1 and 0). Lower case is refused,
 * not folded: the VIN is the vehicle's identity and must be stored in one
 * spelling only.
 *
 * Position 9 may be a check digit: each character is given a value (digits
 * their own; A-H 1-8, J-N 1-5, P 7, R 9, S-Z 2-9), the values are weighted
 * 8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2, and the sum modulo 11 is the digit
 * ('X' for 10). ISO 3779 leaves position 9 free, so where the check applies
 * is a rule of the market, not of the alphabet:
 *
 *  - vin_check enforces it when the world manufacturer identifier says where
 *    the vehicle was built for: first character 1-5 (North America: 49 CFR
 *    565 makes it mandatory, Canada's CMVSS 115 and Mexican production
 *    follow it) or L (mainland China: GB 16735 makes it mandatory). Other
 *    regions (most of Europe, Japan's domestic market) may put any character
 *    there, so nothing is enforced for them.
 *  - vin_check_for_market also enforces it when the vehicle's home market
 *    is US, CA or CN, whatever its first character: every vehicle sold there
 *    carries a check digit, imports included (a BMW WBA... or a Toyota
 *    JT... sold in China or the US has one). Other markets are left alone
 *    on purpose: refusing a genuine vehicle is worse than missing a typo.
 *
 * Nothing here allocates. Messages name positions and characters, never the
 * whole VIN, so they may be logged (promise 3 of DESIGN.md).
 */
#ifndef DM_VIN_H
#define DM_VIN_H

#include <stddef.h>

#define VIN_LEN 17

/* Checks vin[0..len) as described above. Returns DM_OK, or DM_ERR_INVALID
 * with a message in err (truncated to err_len; err may be NULL when err_len
 * is 0), e.g. "VIN check digit (position 9) is '3' but should be 'X'". */
int vin_check(const char *vin, size_t len, char *err, size_t err_len);

/* vin_check, with the check digit also required when market (the vehicle's
 * home jurisdiction, ISO 3166 alpha-2; NULL for unknown) is US, CA or CN. */
int vin_check_for_market(const char *vin, size_t len, const char *market, char *err,
			 size_t err_len);

/* The check digit ('0'..'9' or 'X') that position 9 of vin[0..len) should
 * hold, whatever it holds now; for making test and demo VINs. Returns DM_OK,
 * or DM_ERR_INVALID (and *out = '\0') when the length or alphabet is wrong. */
int vin_compute_check_digit(const char *vin, size_t len, char *out);

/* Whether s is a home jurisdiction as domicile spells it: an ISO 3166
 * alpha-2 code, two upper-case letters and nothing else ("CN", "DE"). */
int jurisdiction_code_valid(const char *s);

#endif
