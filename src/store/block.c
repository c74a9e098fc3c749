/*
 * block.c — encoding and decoding blocks (block.h has the user's view).
 *
 * Format (owned here). All integers in the header and trailer are big-endian;
 * signed ones are two's complement.
 *
 *   offset  size  field
 *        0     4  magic "DMB1"
 *        4     1  version, BLOCK_VERSION (1)
 *        5     1  value type: enum sig_type, 1..4
 *        6     2  flags: zero in version 1; a reader refuses any other value
 *        8     4  count: samples in the block, 1..BLOCK_MAX_SAMPLES
 *       12     8  t_min: timestamp of the first sample (ms since the epoch)
 *       20     8  t_max: timestamp of the last sample
 *       28     4  key_id: the vehicle key that encrypts the body; 0 = plaintext
 *       32    12  nonce: AES-256-GCM nonce; all zero when key_id is 0
 *       44     4  body_len: bytes of the stored body that follows the header
 *       48     4  header_crc: CRC32C of bytes 0..47
 *       52     B  body: one zstd frame (body_len bytes), or its ciphertext
 *     52+B     T  tag: the AEAD tag, BLOCK_TAG_LEN bytes when key_id != 0, else absent
 *   52+B+T     4  crc: CRC32C of every byte before it (header, body, tag)
 *
 * A block is exactly BLOCK_HEADER_LEN + body_len + T + 4 bytes long.
 *
 * Encryption: the body is the zstd frame encrypted with AES-256-GCM under
 * the data key of vehicle key_id (crypto/keyring) and the nonce in the
 * header; the tag follows the body. The associated data is
 *   block_ad(vehicle, signal, row t_min, row t_max, version)  (vehicle_key.h)
 *   || the 52 header bytes (header_crc included)
 * so neither the type, count, time range nor key id can be changed, and the
 * block cannot be moved to another vehicle's, signal's or window's row,
 * without the tag failing. The trailing CRC still covers everything so that
 * a flipped bit on disk reads as DM_ERR_MALFORMED, not as a forged block.
 *
 * The body, once decompressed, holds two columns:
 *
 *   4   ts_len, then ts_len bytes: the timestamp column
 *   4   vals_len, then vals_len bytes: the value column
 *
 * Timestamp column: count zigzag varints (LEB128, at most 10 bytes, minimal
 * length), each the delta of delta of one timestamp, starting from prev =
 * t_min and delta = 0, so the first one is 0. Samples at a regular interval
 * give runs of 0, one byte each before zstd.
 *
 * Value column: one encoding byte, then the values:
 *
 *   1 DELTA     SIG_INT, SIG_BOOL: count zigzag varints, each value minus
 *               the previous one (the one before the first is 0)
 *   2 DOD       SIG_INT: count zigzag varints, delta of delta
 *   3 DECIMAL   SIG_FLOAT: a byte e (0..MAX_DECIMALS) and a byte order (1 for
 *               delta, 2 for delta of delta), then count zigzag varints of the
 *               integers m with value = (double)m / 10^e, |m| < 2^53
 *   4 XOR       SIG_FLOAT: per value, the bits of the double XOR those of
 *               the previous one (the one before the first is 0.0), written
 *               as a control byte, high nibble L = leading zero bytes, low
 *               nibble T = trailing zero bytes, then the 8 - L - T bytes
 *               between, most significant first, the first and last of them
 *               non-zero. An equal value (XOR 0) is the single byte 0x80;
 *               otherwise L + T < 8.
 *   5 STRINGS   SIG_STRING: count times a varint length (at most
 *               BLOCK_MAX_STRING_LEN) and that many bytes, none of them NUL
 *
 * Why these: values from vehicles are almost always decimals written with a
 * few digits (speed 53.4, latitude 31.2304567). XORing their doubles leaves
 * 40-odd meaningful bits, 5 bytes a sample even after zstd; the same values
 * as scaled integers differ by a few units from sample to sample and take a
 * byte or less. So DECIMAL is used whenever every value of the block is
 * exactly m / 10^e for one e, and XOR covers the rest (floats from float32
 * sensors, computed values, NaN, -0.0). The encoder picks delta or delta of
 * delta, whichever gives fewer varint bytes. Measured on 10,000 samples of a
 * simulated car, value column after zstd level 3, bytes per sample:
 *
 *                     Gorilla bits   XOR bytes   XOR + control byte   DECIMAL
 *   speed, 1 decimal         1.499       1.102                0.980     0.309
 *   latitude, 7 dec.         5.267       5.242                5.151     0.565
 *   speed as float32         1.109       1.006                0.765         -
 *   speed, raw double        6.799       6.777                6.536         -
 *
 * zstd finds byte-aligned repeats that a bit stream hides, so the byte
 * scheme with a control byte beats Gorilla's bit packing on every series and
 * is simpler: it is the XOR encoding. zstd level 3 against 1: about 2%
 * smaller, at similar speed for blocks of this size (bench/bench_block.c).

 * Invariants:
 *  1. header_crc matches bytes 0..47 and crc matches every byte before it;
 *     block_peek checks the first, block_decode both before reading the body.
 *  2. 1 <= count <= BLOCK_MAX_SAMPLES and t_min <= t_max, checked before
 *     anything is allocated.
 *  3. The decompressed body is at most body_bound(type, count) bytes (and at
 *     most BLOCK_MAX_BODY): zstd's declared content size is checked against
 *     it before the buffer for it is allocated, and the frame must declare it.
 *  4. The body is one zstd frame, exactly body_len bytes, and decompresses to
 *     exactly its declared size.
 *  5. Each column is read through its own sub-cursor and must be consumed
 *     exactly, and the two columns fill the body exactly.
 *  6. Decoded timestamps are non-decreasing, the first equals t_min and the
 *     last equals t_max.
 *  7. Decoded bools are 0 or 1; decoded strings hold no NUL byte; varints
 *     are minimal and XOR control bytes count every zero byte, so a number
 *     has one spelling (the choice of encoding, e and order is the writer's).
 *  8. block_encode writes only blocks block_decode accepts and that decode
 *     to the same column (values compared bit for bit), and changes nothing
 *     in `out` when it fails.
 */
#include "store/block.h"

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_customMem: zstd allocates through dm_malloc */
#include <zstd.h>
#include <zstd_errors.h>

#include <assert.h>
#include <math.h>
#include <string.h>

#include "crypto/keyring.h"
#include "crypto/vehicle_key.h"
#include "ingest/catalog.h"
#include "util/bytes.h"
#include "util/alloc.h"
#include "util/cursor.h"
#include "util/crc32c.h"
#include "util/err.h"

#define BLOCK_MAGIC "DMB1"
#define HEADER_CRC_AT 48
#define TRAILER_LEN 4
#ifndef BLOCK_ZSTD_LEVEL
#define BLOCK_ZSTD_LEVEL 3 /* measured against 1 and 2: see bench/bench_block.c */
#endif
#define MAX_VARINT 10
#define MAX_DECIMALS 18 /* 10^18 is exact in a double; beyond, |m| < 2^53 rarely holds */
#define MANTISSA_LIMIT 9007199254740992.0 /* 2^53: every integer below is exact */
#define XOR_EQUAL 0x80 /* the control byte of a value equal to the previous one */

enum vals_encoding {
	VALS_DELTA = 1,
	VALS_DOD = 2,
	VALS_DECIMAL = 3,
	VALS_XOR = 4,
	VALS_STRINGS = 5,
};

/* ---- small helpers ---- */

/* Two's complement without relying on implementation-defined conversions. */
static int64_t to_i64(uint64_t u)
{
	return u <= INT64_MAX ? (int64_t)u : (int64_t)(u - (uint64_t)INT64_MAX - 1) + INT64_MIN;
}

static uint64_t zigzag(uint64_t u)
{
	return u << 1 ^ (0 - (u >> 63));
}
static uint64_t unzigzag(uint64_t z)
{
	return z >> 1 ^ (0 - (z & 1));
}

static size_t varint_len(uint64_t v)
{
	return 1 + (size_t)(63 - __builtin_clzll(v | 1)) / 7;
}

static uint64_t double_bits(double v)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	return bits;
}

static double bits_double(uint64_t bits)
{
	double v;
	memcpy(&v, &bits, sizeof v);
	return v;
}

static const double POW10[MAX_DECIMALS + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
};

/* Whether v is exactly (double)m / 10^e for an integer |m| < 2^53. The
 * decoder computes the same correctly rounded division, so a value that
 * passes here decodes to the same bits. */
static int decimal_of(double v, unsigned e, int64_t *m)
{
	double scaled = v * POW10[e];
	if (!(scaled > -MANTISSA_LIMIT && scaled < MANTISSA_LIMIT))
		return 0; /* also NaN and the infinities */
	int64_t cand = llround(scaled);
	if (double_bits((double)cand / POW10[e]) != double_bits(v))
		return 0;
	*m = cand;
	return 1;
}

/* Upper bound of a valid decompressed body: 4 + 10 per timestamp, 4 + 3
 * bytes of column heading, and per value the most its encoding can take. */
static size_t body_bound(uint8_t type, size_t count)
{
	size_t per_value;
	switch (type) {
	case SIG_BOOL:
		per_value = 1; /* zigzag of -1, 0 or 1 */
		break;
	case SIG_STRING:
		per_value = 3 + BLOCK_MAX_STRING_LEN;
		break;
	default:
		per_value = MAX_VARINT; /* a varint, or 9 bytes of XOR */
		break;
	}
	size_t bound = 4 + count * MAX_VARINT + 4 + 3 + count * per_value;
	return bound < BLOCK_MAX_BODY ? bound : BLOCK_MAX_BODY;
}

static void *zstd_alloc(void *opaque, size_t size)
{
	return dm_malloc(size);
}
static void zstd_free(void *opaque, void *ptr)
{
	dm_free(ptr);
}
static const ZSTD_customMem ZSTD_MEM = {zstd_alloc, zstd_free, NULL};

/* ---- writing ---- */

/* Output into memory sized by the caller from a bound: overrunning it is a
 * bug in the bound, not bad input. */
struct writer {
	uint8_t *p;
	size_t pos, cap;
};

static void put_u8(struct writer *w, uint8_t v)
{
	assert(w->pos < w->cap);
	w->p[w->pos++] = v;
}

static void put_varint(struct writer *w, uint64_t v)
{
	assert(w->cap - w->pos >= MAX_VARINT);
	while (v >= 0x80) {
		w->p[w->pos++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	w->p[w->pos++] = (uint8_t)v;
}

/* Delta (order 1) or delta of delta (order 2) in modular arithmetic, so the
 * whole int64 range round-trips. */
struct seq {
	uint64_t prev, delta;
	unsigned order;
};

static uint64_t seq_step(struct seq *s, uint64_t x)
{
	uint64_t delta = x - s->prev;
	uint64_t residue = s->order == 2 ? delta - s->delta : delta;
	s->prev = x;
	s->delta = delta;
	return zigzag(residue);
}

/* Varint bytes of x[] under order 1 and order 2. */
static void seq_sizes(const int64_t *x, size_t count, size_t *order1, size_t *order2)
{
	struct seq s1 = {0, 0, 1}, s2 = {0, 0, 2};
	*order1 = *order2 = 0;
	for (size_t k = 0; k < count; k++) {
		*order1 += varint_len(seq_step(&s1, (uint64_t)x[k]));
		*order2 += varint_len(seq_step(&s2, (uint64_t)x[k]));
	}
}

static void put_seq(struct writer *w, const int64_t *x, size_t count, unsigned order)
{
	struct seq s = {0, 0, order};
	for (size_t k = 0; k < count; k++)
		put_varint(w, seq_step(&s, (uint64_t)x[k]));
}

static void put_xor_floats(struct writer *w, const union block_num *vals, size_t count)
{
	uint64_t prev = 0;
	for (size_t k = 0; k < count; k++) {
		uint64_t bits = double_bits(vals[k].f);
		uint64_t x = bits ^ prev;
		prev = bits;
		if (!x) {
			put_u8(w, XOR_EQUAL);
			continue;
		}
		unsigned lead = (unsigned)__builtin_clzll(x) / 8,
		         trail = (unsigned)__builtin_ctzll(x) / 8;
		put_u8(w, (uint8_t)(lead << 4 | trail));
		for (unsigned byte = 8 - lead; byte-- > trail;)
			put_u8(w, (uint8_t)(x >> (8 * byte)));
	}
}

/* Writes the value column's encoding byte and values. scratch holds count
 * int64s for the integers actually stored. */
static void put_values(struct writer *w, const struct block_column *column, int64_t *scratch)
{
	size_t count = column->count, order1, order2;
	switch (column->type) {
	case SIG_INT:
	case SIG_BOOL:
		for (size_t k = 0; k < count; k++)
			scratch[k] = column->vals[k].i;
		seq_sizes(scratch, count, &order1, &order2);
		if (column->type == SIG_INT && order2 < order1) {
			put_u8(w, VALS_DOD);
			put_seq(w, scratch, count, 2);
		} else {
			put_u8(w, VALS_DELTA);
			put_seq(w, scratch, count, 1);
		}
		return;
	case SIG_FLOAT: {
		unsigned e = 0;
		int decimal = 1;
		for (size_t k = 0; decimal && k < count; k++) {
			/* Raise e until this value fits; earlier values should keep
			 * fitting (more digits of the same decimal): checked below. */
			while (e <= MAX_DECIMALS && !decimal_of(column->vals[k].f, e, &scratch[k]))
				e++;
			decimal = e <= MAX_DECIMALS;
		}
		for (size_t k = 0; decimal && k < count; k++)
			decimal = decimal_of(column->vals[k].f, e, &scratch[k]);
		if (!decimal) {
			put_u8(w, VALS_XOR);
			put_xor_floats(w, column->vals, count);
			return;
		}
		seq_sizes(scratch, count, &order1, &order2);
		unsigned order = order2 < order1 ? 2 : 1;
		put_u8(w, VALS_DECIMAL);
		put_u8(w, (uint8_t)e);
		put_u8(w, (uint8_t)order);
		put_seq(w, scratch, count, order);
		return;
	}
	case SIG_STRING:
		put_u8(w, VALS_STRINGS);
		for (size_t k = 0; k < count; k++) {
			const char *s = column->strings + column->vals[k].i;
			size_t len = strlen(s); /* bounded: checked by check_column */
			put_varint(w, len);
			assert(w->cap - w->pos >= len);
			memcpy(w->p + w->pos, s, len);
			w->pos += len;
		}
		return;
	}
	assert(0 && "type checked by check_column");
}

/* Refuses columns block_decode would not give back; on success *raw_bound
 * is an upper bound of the body this column encodes to. */
static int check_column(const struct block_column *column, size_t *raw_bound)
{
	if (column->type < SIG_FLOAT || column->type > SIG_STRING || column->count == 0)
		return DM_ERR_INVALID;
	if (column->count > BLOCK_MAX_SAMPLES)
		return DM_ERR_TOO_LARGE;
	for (size_t k = 1; k < column->count; k++)
		if (column->ts[k] < column->ts[k - 1])
			return DM_ERR_INVALID;
	size_t count = column->count;
	if (column->type == SIG_BOOL) {
		for (size_t k = 0; k < count; k++)
			if (column->vals[k].i != 0 && column->vals[k].i != 1)
				return DM_ERR_INVALID;
	}
	if (column->type != SIG_STRING) {
		*raw_bound = body_bound(column->type, count);
		return DM_OK;
	}
	size_t bound = 4 + count * MAX_VARINT + 4 + 1, string_bytes = 0;
	for (size_t k = 0; k < count; k++) {
		int64_t at = column->vals[k].i;
		if (!column->strings || at < 0 || (uint64_t)at >= column->strings_len)
			return DM_ERR_INVALID;
		const char *s = column->strings + at;
		const char *end = memchr(s, '\0', column->strings_len - (size_t)at);
		if (!end)
			return DM_ERR_INVALID;
		size_t len = (size_t)(end - s);
		if (len > BLOCK_MAX_STRING_LEN)
			return DM_ERR_TOO_LARGE;
		/* The exact body size is checked once written (block_encode); this
		 * only keeps the bound from overflowing. */
		string_bytes += varint_len(len) + len;
		if (string_bytes > BLOCK_MAX_BODY)
			return DM_ERR_TOO_LARGE;
	}
	*raw_bound = bound + string_bytes;
	return DM_OK;
}

/* Writes the two columns into raw (raw_bound bytes); returns the length. */
static size_t put_body(const struct block_column *column, uint8_t *raw, size_t raw_bound,
                       int64_t *scratch)
{
	struct writer w = {raw, 4, raw_bound};
	/* Timestamps start from t_min, so the first delta of delta is 0. */
	struct seq s = {(uint64_t)column->ts[0], 0, 2};
	for (size_t k = 0; k < column->count; k++)
		put_varint(&w, seq_step(&s, (uint64_t)column->ts[k]));
	put_be32(raw, (uint32_t)(w.pos - 4));
	size_t vals_at = w.pos;
	w.pos += 4;
	put_values(&w, column, scratch);
	put_be32(raw + vals_at, (uint32_t)(w.pos - vals_at - 4));
	return w.pos;
}

static int zstd_status(size_t code)
{
	return ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation ? DM_ERR_NOMEM
	                                                               : DM_ERR_MALFORMED;
}

/* The associated data of a sealed block (see the top of this file) into ad;
 * its length, or 0 when the signal path does not fit. */
static size_t seal_ad(const struct block_seal *seal, int64_t t_min, int64_t t_max,
		      const uint8_t *header, uint8_t ad[BLOCK_AD_MAX + BLOCK_HEADER_LEN])
{
	size_t len = block_ad(ad, BLOCK_AD_MAX, seal->vehicle_id, seal->signal_path, t_min, t_max,
			      BLOCK_VERSION);
	if (len)
		memcpy(ad + len, header, BLOCK_HEADER_LEN);
	return len ? len + BLOCK_HEADER_LEN : 0;
}

int block_encode(const struct block_column *column, const struct block_seal *seal,
		 struct dm_buf *out)
{
	size_t raw_bound = 0;
	int rc = check_column(column, &raw_bound);
	if (rc)
		return rc;
	uint8_t *raw = dm_malloc(raw_bound);
	int64_t *scratch = NULL;
	if (column->type != SIG_STRING)
		scratch = dm_malloc(column->count * sizeof *scratch);
	ZSTD_CCtx *cctx = ZSTD_createCCtx_advanced(ZSTD_MEM);
	if (!raw || (column->type != SIG_STRING && !scratch) || !cctx) {
		rc = DM_ERR_NOMEM;
		goto done;
	}
	size_t raw_len = put_body(column, raw, raw_bound, scratch);
	if (raw_len > BLOCK_MAX_BODY) {
		rc = DM_ERR_TOO_LARGE; /* block_decode would refuse it (invariant 3) */
		goto done;
	}
	size_t frame_bound = ZSTD_compressBound(raw_len);
	rc = dm_buf_reserve(out, BLOCK_HEADER_LEN + frame_bound + BLOCK_TAG_LEN + TRAILER_LEN);
	if (rc)
		goto done;
	uint8_t *block = out->data + out->len;
	size_t body_len = ZSTD_compressCCtx(cctx, block + BLOCK_HEADER_LEN, frame_bound, raw,
	                                    raw_len, BLOCK_ZSTD_LEVEL);
	if (ZSTD_isError(body_len)) {
		rc = zstd_status(body_len) == DM_ERR_NOMEM ? DM_ERR_NOMEM : DM_ERR_INVALID;
		goto done;
	}
	memcpy(block, BLOCK_MAGIC, 4);
	block[4] = BLOCK_VERSION;
	block[5] = column->type;
	block[6] = block[7] = 0;
	put_be32(block + 8, (uint32_t)column->count);
	put_be64(block + 12, (uint64_t)column->ts[0]);
	put_be64(block + 20, (uint64_t)column->ts[column->count - 1]);
	put_be32(block + 28, seal ? seal->vehicle_id : 0);
	memset(block + 32, 0, BLOCK_NONCE_LEN);
	if (seal && (rc = keyring_nonce(seal->ring, seal->vehicle_id, block + 32)) != DM_OK)
		goto done;
	put_be32(block + 44, (uint32_t)body_len);
	put_be32(block + HEADER_CRC_AT, crc32c(0, block, HEADER_CRC_AT));
	size_t tag_len = 0;
	if (seal) {
		uint8_t ad[BLOCK_AD_MAX + BLOCK_HEADER_LEN];
		size_t ad_len = seal_ad(seal, column->ts[0], column->ts[column->count - 1], block,
					ad);
		rc = ad_len ? keyring_seal(seal->ring, seal->vehicle_id, block + 32, ad, ad_len,
					   block + BLOCK_HEADER_LEN, body_len,
					   block + BLOCK_HEADER_LEN + body_len)
			    : DM_ERR_INVALID;
		if (rc)
			goto done;
		tag_len = BLOCK_TAG_LEN;
	}
	size_t crc_at = BLOCK_HEADER_LEN + body_len + tag_len;
	put_be32(block + crc_at, crc32c(0, block, crc_at));
	out->len += crc_at + TRAILER_LEN;
done:
	ZSTD_freeCCtx(cctx);
	dm_free(scratch);
	dm_free(raw);
	return rc;
}

/* ---- reading ---- */

static int get_varint(struct dm_cursor *cur, uint64_t *out)
{
	const uint8_t *p = cur->p + cur->pos;
	size_t left = dm_cursor_left(cur);
	uint64_t v = 0;
	for (size_t k = 0; k < left && k < MAX_VARINT; k++) {
		uint8_t byte = p[k];
		if (k == MAX_VARINT - 1 && byte > 1)
			return DM_ERR_MALFORMED; /* more than 64 bits */
		v |= (uint64_t)(byte & 0x7f) << (7 * k);
		if (!(byte & 0x80)) {
			if (byte == 0 && k > 0)
				return DM_ERR_MALFORMED; /* not minimal: one value, one encoding */
			cur->pos += k + 1;
			*out = v;
			return DM_OK;
		}
	}
	return DM_ERR_MALFORMED;
}

static int seq_next(struct seq *s, struct dm_cursor *cur, uint64_t *out)
{
	uint64_t z;
	int rc = get_varint(cur, &z);
	if (rc)
		return rc;
	uint64_t residue = unzigzag(z);
	if (s->order == 2) {
		s->delta += residue;
		s->prev += s->delta;
	} else {
		s->prev += residue;
	}
	*out = s->prev;
	return DM_OK;
}

static int get_xor_floats(struct dm_cursor *col, union block_num *vals, size_t count)
{
	uint64_t prev = 0;
	for (size_t k = 0; k < count; k++) {
		uint8_t control;
		if (dm_cursor_u8(col, &control))
			return DM_ERR_MALFORMED;
		if (control != XOR_EQUAL) {
			unsigned lead = control >> 4, trail = control & 15;
			const uint8_t *middle;
			if (lead + trail >= 8 || dm_cursor_take(col, 8 - lead - trail, &middle))
				return DM_ERR_MALFORMED;
			size_t width = 8 - lead - trail;
			/* Canonical: the zero bytes are all counted in the control byte. */
			if (middle[0] == 0 || middle[width - 1] == 0)
				return DM_ERR_MALFORMED;
			uint64_t x = 0;
			for (size_t j = 0; j < width; j++)
				x = x << 8 | middle[j];
			prev ^= x << (8 * trail);
		}
		vals[k].f = bits_double(prev);
	}
	return DM_OK;
}

static int get_ints(struct dm_cursor *col, union block_num *vals, size_t count, unsigned order,
                    uint8_t type)
{
	struct seq s = {0, 0, order};
	for (size_t k = 0; k < count; k++) {
		uint64_t x;
		if (seq_next(&s, col, &x))
			return DM_ERR_MALFORMED;
		vals[k].i = to_i64(x);
		if (type == SIG_BOOL && x > 1)
			return DM_ERR_MALFORMED;
	}
	return DM_OK;
}

static int get_decimals(struct dm_cursor *col, union block_num *vals, size_t count)
{
	uint8_t e, order;
	if (dm_cursor_u8(col, &e) || dm_cursor_u8(col, &order))
		return DM_ERR_MALFORMED;
	if (e > MAX_DECIMALS || (order != 1 && order != 2))
		return DM_ERR_MALFORMED;
	struct seq s = {0, 0, order};
	for (size_t k = 0; k < count; k++) {
		uint64_t x;
		if (seq_next(&s, col, &x))
			return DM_ERR_MALFORMED;
		int64_t m = to_i64(x);
		if (m <= -(int64_t)MANTISSA_LIMIT || m >= (int64_t)MANTISSA_LIMIT)
			return DM_ERR_MALFORMED;
		vals[k].f = (double)m / POW10[e];
	}
	return DM_OK;
}

/* The pool needs at most one byte per column byte plus a NUL per value. */
static int get_strings(struct dm_cursor *col, struct block_decoded *out, size_t count)
{
	out->strings = dm_malloc(dm_cursor_left(col) + count);
	if (!out->strings)
		return DM_ERR_NOMEM;
	size_t used = 0;
	for (size_t k = 0; k < count; k++) {
		uint64_t len;
		const uint8_t *bytes;
		if (get_varint(col, &len) || len > BLOCK_MAX_STRING_LEN ||
		    dm_cursor_take(col, (size_t)len, &bytes))
			return DM_ERR_MALFORMED;
		if (memchr(bytes, '\0', (size_t)len))
			return DM_ERR_MALFORMED;
		out->vals[k].i = (int64_t)used;
		memcpy(out->strings + used, bytes, (size_t)len);
		used += (size_t)len;
		out->strings[used++] = '\0';
	}
	out->column.strings = out->strings;
	out->column.strings_len = used;
	return DM_OK;
}

static int get_timestamps(struct dm_cursor *col, const struct block_info *info, int64_t *ts)
{
	struct seq s = {(uint64_t)info->t_min, 0, 2};
	for (size_t k = 0; k < info->count; k++) {
		uint64_t x;
		if (seq_next(&s, col, &x))
			return DM_ERR_MALFORMED;
		ts[k] = to_i64(x);
		if (k == 0 ? ts[k] != info->t_min : ts[k] < ts[k - 1])
			return DM_ERR_MALFORMED;
	}
	if (ts[info->count - 1] != info->t_max)
		return DM_ERR_MALFORMED;
	return dm_cursor_left(col) ? DM_ERR_MALFORMED : DM_OK;
}

static int get_values(struct dm_cursor *col, struct block_decoded *out)
{
	uint8_t encoding, type = out->info.type;
	size_t count = out->info.count;
	if (dm_cursor_u8(col, &encoding))
		return DM_ERR_MALFORMED;
	int rc;
	if (encoding == VALS_DELTA && (type == SIG_INT || type == SIG_BOOL))
		rc = get_ints(col, out->vals, count, 1, type);
	else if (encoding == VALS_DOD && type == SIG_INT)
		rc = get_ints(col, out->vals, count, 2, type);
	else if (encoding == VALS_DECIMAL && type == SIG_FLOAT)
		rc = get_decimals(col, out->vals, count);
	else if (encoding == VALS_XOR && type == SIG_FLOAT)
		rc = get_xor_floats(col, out->vals, count);
	else if (encoding == VALS_STRINGS && type == SIG_STRING)
		rc = get_strings(col, out, count);
	else
		rc = DM_ERR_MALFORMED;
	if (rc == DM_OK && dm_cursor_left(col))
		rc = DM_ERR_MALFORMED;
	return rc;
}

/* Checks the header alone (invariants 1 and 2, header part). */
static int read_header(const uint8_t *bytes, size_t len, struct block_info *info,
                       uint32_t *body_len)
{
	if (len < BLOCK_HEADER_LEN || memcmp(bytes, BLOCK_MAGIC, 4) != 0)
		return DM_ERR_MALFORMED;
	if (crc32c(0, bytes, HEADER_CRC_AT) != get_be32(bytes + HEADER_CRC_AT))
		return DM_ERR_MALFORMED;
	struct dm_cursor cur = dm_cursor_make(bytes + 4, HEADER_CRC_AT - 4);
	uint16_t flags;
	uint64_t t_min, t_max;
	const uint8_t *nonce;
	/* Cannot fail: the cursor holds exactly these fields. */
	dm_cursor_u8(&cur, &info->version);
	dm_cursor_u8(&cur, &info->type);
	dm_cursor_be16(&cur, &flags);
	dm_cursor_be32(&cur, &info->count);
	dm_cursor_be64(&cur, &t_min);
	dm_cursor_be64(&cur, &t_max);
	dm_cursor_be32(&cur, &info->key_id);
	dm_cursor_take(&cur, BLOCK_NONCE_LEN, &nonce);
	dm_cursor_be32(&cur, body_len);
	info->t_min = to_i64(t_min);
	info->t_max = to_i64(t_max);
	memcpy(info->nonce, nonce, BLOCK_NONCE_LEN);
	if (info->version != BLOCK_VERSION || flags != 0)
		return DM_ERR_MALFORMED;
	if (info->type < SIG_FLOAT || info->type > SIG_STRING)
		return DM_ERR_MALFORMED;
	if (info->count == 0 || info->count > BLOCK_MAX_SAMPLES)
		return DM_ERR_MALFORMED;
	if (info->t_min > info->t_max || (info->count == 1 && info->t_min != info->t_max))
		return DM_ERR_MALFORMED;
	if (info->key_id == 0) {
		static const uint8_t zero[BLOCK_NONCE_LEN];
		if (memcmp(info->nonce, zero, BLOCK_NONCE_LEN) != 0)
			return DM_ERR_MALFORMED;
	}
	if (*body_len == 0 || *body_len > ZSTD_compressBound(BLOCK_MAX_BODY))
		return DM_ERR_MALFORMED;
	return DM_OK;
}

int block_peek(const uint8_t *bytes, size_t len, struct block_info *out)
{
	struct block_info info;
	uint32_t body_len;
	memset(out, 0, sizeof *out);
	int rc = read_header(bytes, len, &info, &body_len);
	if (rc == DM_OK)
		*out = info;
	return rc;
}

/* Decompresses the body (invariants 3 and 4) into *raw, which the caller frees. */
static int inflate_body(const uint8_t *body, size_t body_len, const struct block_info *info,
                        uint8_t **raw, size_t *raw_len)
{
	*raw = NULL;
	size_t frame_len = ZSTD_findFrameCompressedSize(body, body_len);
	if (ZSTD_isError(frame_len) || frame_len != body_len)
		return DM_ERR_MALFORMED;
	unsigned long long declared = ZSTD_getFrameContentSize(body, body_len);
	if (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR)
		return DM_ERR_MALFORMED;
	if (declared < 8 || declared > body_bound(info->type, info->count))
		return DM_ERR_MALFORMED;
	ZSTD_DCtx *dctx = ZSTD_createDCtx_advanced(ZSTD_MEM);
	uint8_t *buf = dm_malloc((size_t)declared);
	int rc = DM_OK;
	if (!dctx || !buf) {
		rc = DM_ERR_NOMEM;
	} else {
		size_t got = ZSTD_decompressDCtx(dctx, buf, (size_t)declared, body, body_len);
		if (ZSTD_isError(got))
			rc = zstd_status(got);
		else if (got != declared)
			rc = DM_ERR_MALFORMED;
	}
	ZSTD_freeDCtx(dctx);
	if (rc) {
		dm_free(buf);
		return rc;
	}
	*raw = buf;
	*raw_len = (size_t)declared;
	return DM_OK;
}

void block_decoded_free(struct block_decoded *decoded)
{
	if (!decoded)
		return;
	dm_free(decoded->ts);
	dm_free(decoded->vals);
	dm_free(decoded->strings);
	memset(decoded, 0, sizeof *decoded);
}

/* Opens the sealed body of a block into a copy in *body, which the caller
 * frees. */
static int open_body(const uint8_t *bytes, size_t body_len, const struct block_seal *seal,
		     const struct block_info *info, uint8_t **body)
{
	*body = NULL;
	if (info->key_id == 0 || info->key_id != seal->vehicle_id)
		return DM_ERR_CRYPTO; /* in clear, or sealed for someone else */
	uint8_t ad[BLOCK_AD_MAX + BLOCK_HEADER_LEN];
	size_t ad_len = seal_ad(seal, seal->t_min, seal->t_max, bytes, ad);
	if (!ad_len)
		return DM_ERR_INVALID;
	uint8_t *copy = dm_malloc(body_len);
	if (!copy)
		return DM_ERR_NOMEM;
	memcpy(copy, bytes + BLOCK_HEADER_LEN, body_len);
	int rc = keyring_open(seal->ring, seal->vehicle_id, info->nonce, ad, ad_len, copy, body_len,
			      bytes + BLOCK_HEADER_LEN + body_len);
	if (rc) {
		dm_free(copy);
		return rc;
	}
	*body = copy;
	return DM_OK;
}

int block_decode(const uint8_t *bytes, size_t len, const struct block_seal *seal,
		 struct block_decoded *out)
{
	uint8_t *opened = NULL;
	memset(out, 0, sizeof *out);
	uint32_t body_len;
	int rc = read_header(bytes, len, &out->info, &body_len);
	if (rc)
		goto fail;
	size_t tag_len = out->info.key_id ? BLOCK_TAG_LEN : 0;
	size_t crc_at = BLOCK_HEADER_LEN + (size_t)body_len + tag_len;
	if (len != crc_at + TRAILER_LEN ||
	    crc32c(0, bytes, crc_at) != get_be32(bytes + crc_at)) {
		rc = DM_ERR_MALFORMED;
		goto fail;
	}
	const uint8_t *body = bytes + BLOCK_HEADER_LEN;
	if (seal) {
		rc = open_body(bytes, body_len, seal, &out->info, &opened);
		if (rc)
			goto fail;
		body = opened;
	} else if (out->info.key_id) {
		rc = DM_ERR_UNSUPPORTED; /* sealed, and no key to open it with */
		goto fail;
	}
	uint8_t *raw;
	size_t raw_len;
	rc = inflate_body(body, body_len, &out->info, &raw, &raw_len);
	if (rc)
		goto fail;
	size_t count = out->info.count;
	out->ts = dm_malloc(count * sizeof *out->ts);
	out->vals = dm_malloc(count * sizeof *out->vals);
	if (!out->ts || !out->vals) {
		rc = DM_ERR_NOMEM;
	} else {
		out->column.type = out->info.type;
		out->column.count = count;
		out->column.ts = out->ts;
		out->column.vals = out->vals;
		struct dm_cursor columns = dm_cursor_make(raw, raw_len), ts_col, vals_col;
		uint32_t ts_len, vals_len;
		if (dm_cursor_be32(&columns, &ts_len) || dm_cursor_sub(&columns, ts_len, &ts_col) ||
		    dm_cursor_be32(&columns, &vals_len) || dm_cursor_sub(&columns, vals_len, &vals_col) ||
		    dm_cursor_left(&columns))
			rc = DM_ERR_MALFORMED;
		if (rc == DM_OK)
			rc = get_timestamps(&ts_col, &out->info, out->ts);
		if (rc == DM_OK)
			rc = get_values(&vals_col, out);
	}
	dm_free(raw);
	if (rc == DM_OK) {
		dm_free(opened);
		return DM_OK;
	}
fail:
	dm_free(opened);
	block_decoded_free(out);
	return rc;
}
