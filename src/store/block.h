/*
 * block.h — the stored form of samples: one vehicle, one signal, one time
 * window, columnar and compressed.
 *
 * A block holds `count` samples in time order: a timestamp column (delta of
 * delta, zigzag varints) and a value column whose encoding follows the
 * signal's type (floats: decimal values as scaled integers, delta or delta of
 * delta, and anything else XOR with the previous value, byte-aligned; ints:
 * zigzag delta or delta-of-delta varints; bools: zigzag delta varints;
 * strings: length-prefixed bytes), the two then compressed together with
 * zstd. The header is stored in clear; the body is sealed with the
 * vehicle's data key (AES-256-GCM through crypto/keyring) when a struct
 * block_seal is given, and its associated data binds the vehicle, the
 * signal, the row's time window, the format version and the whole header,
 * so a block copied onto another row, or altered, does not open. The byte
 * layout is documented at the top of block.c.
 *
 * Which vehicle and signal a block belongs to is the store's business (the
 * row it sits in); the block itself carries its type, count and time range
 * so that it can be checked against that row when read.
 */
#ifndef DM_BLOCK_H
#define DM_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct keyring;

#define BLOCK_VERSION 1
#define BLOCK_NONCE_LEN 12
#define BLOCK_MAX_SAMPLES (1u << 20)
#define BLOCK_HEADER_LEN 52        /* the clear header; block_peek needs only these bytes */
#define BLOCK_TAG_LEN 16           /* AEAD tag after the body when key_id != 0 */
#define BLOCK_MAX_STRING_LEN 65535 /* bytes of one string value (the catalog's maximum) */
#define BLOCK_MAX_BODY (64u << 20) /* bytes of a decompressed body */

/* A column of samples, as the memtable keeps them and a decoded block
 * returns them. For SIG_STRING, vals[k].i is the byte offset in `strings` of
 * value k, which is NUL-terminated there (so strings_len counts the NULs). */
struct block_column {
	uint8_t type; /* enum sig_type */
	size_t count;
	const int64_t *ts;
	const union block_num {
		double f;
		int64_t i;
	} *vals;
	const char *strings;
	size_t strings_len;
};

struct block_info {
	uint8_t version;
	uint8_t type;
	uint32_t count;
	int64_t t_min, t_max;
	uint32_t key_id;
	uint8_t nonce[BLOCK_NONCE_LEN];
};

/* Where a block belongs and whose key seals it. Its fields (but for the
 * window on encode) become the associated data of the seal. */
struct block_seal {
	struct keyring *ring;    /* borrowed */
	uint32_t vehicle_id;     /* the key (the header's key_id) and the row's vehicle */
	const char *signal_path; /* the row's signal (VSS path) */
	int64_t t_min, t_max;    /* decode: the row's window; encode: ignored (the
				  * column's first and last timestamps are the row's) */
};

/* Encodes column (count >= 1, ts ascending) and appends the block to out,
 * sealed under seal's vehicle key, or in clear when seal is NULL.
 * The column is borrowed for the call only. On failure out is unchanged.
 * Errors: DM_ERR_INVALID (unknown type, count 0, timestamps out of order, a
 * bool not 0 or 1, a string offset outside `strings` or without its NUL),
 * DM_ERR_TOO_LARGE (count > BLOCK_MAX_SAMPLES, a string longer than
 * BLOCK_MAX_STRING_LEN, a body over BLOCK_MAX_BODY), DM_ERR_NOMEM, and what
 * keyring_nonce and keyring_seal return (DM_ERR_GONE: the vehicle was
 * erased). */
int block_encode(const struct block_column *column, const struct block_seal *seal,
		 struct dm_buf *out);

/* Reads only the header (for listing and checks): needs the first
 * BLOCK_HEADER_LEN bytes, checks their own CRC and fields, not the body.
 * DM_ERR_MALFORMED on a bad header; *out is zeroed on failure. */
int block_peek(const uint8_t *bytes, size_t len, struct block_info *out);

/* A decoded block; its arrays are owned by it, freed with block_decoded_free. */
struct block_decoded {
	struct block_info info;
	struct block_column column; /* points into the arrays below */
	int64_t *ts;
	union block_num *vals;
	char *strings;
};

/* Decodes a whole block (len must be its exact length), opening it with
 * seal: a store that seals must pass one for every block, and then a block
 * in clear is refused. DM_ERR_MALFORMED for any inconsistency (bad magic or
 * checksum, counts that disagree, truncated columns, a zstd error,
 * timestamps not in order); DM_ERR_CRYPTO when the block does not open
 * under seal (another row's block, a changed byte, another key, a block in
 * clear); DM_ERR_GONE when the vehicle's key was destroyed;
 * DM_ERR_UNSUPPORTED for a sealed block and no seal; DM_ERR_NOMEM. On
 * failure *out is zeroed and nothing needs freeing. The result does not
 * borrow from bytes. */
int block_decode(const uint8_t *bytes, size_t len, const struct block_seal *seal,
		 struct block_decoded *out);
/* Frees the arrays and zeroes *decoded; accepts NULL and a zeroed struct. */
void block_decoded_free(struct block_decoded *decoded);


#endif
