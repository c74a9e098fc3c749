/*
 * pseudonym.h — a keyed hash that names a vehicle without naming it.
 *
 * A node may never write a foreign vehicle's VIN (promise 1 of DESIGN.md),
 * yet an operator needs to tell "the same car tried again" from "many cars
 * tried once". A pseudonym is HMAC-SHA256(site key, VIN), cut to 64 bits
 * and written as "vh-" and 16 hex digits: stable at one site, meaningless
 * without its key, and not comparable across sites (each has its own key).
 * The key is 32 random bytes in data_dir/pseudonym.key (mode 0600), made at
 * first start.
 */
#ifndef DM_PSEUDONYM_H
#define DM_PSEUDONYM_H

#include <stddef.h>

#define PSEUDONYM_KEY_LEN 32
#define PSEUDONYM_LEN 20 /* "vh-" + 16 hex digits + NUL */

/* Reads data_dir/pseudonym.key, or creates it. DM_ERR_IO with a log line
 * when it can be neither read nor created, DM_ERR_INVALID when it exists
 * with the wrong size. */
int pseudonym_key_load(const char *data_dir, unsigned char key[PSEUDONYM_KEY_LEN]);

/* Writes the pseudonym of vin (vin_len bytes) into out. */
int pseudonym_of(const unsigned char key[PSEUDONYM_KEY_LEN], const char *vin, size_t vin_len,
		 char out[PSEUDONYM_LEN]);

#endif
