/*
 * test_block.c — the block format: round trips, every corruption detected,
 * limits refused before allocating, and compression of representative data.
 *
 * Hand-made blocks (make_block) follow the layout documented at the top of
 * src/store/block.c, so that the decoder's checks behind the checksums are
 * reached with bodies the encoder would never write.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "crypto/keyring.h"
#include "crypto/keystore.h"
#include "ingest/catalog.h"
#include "store/block.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/alloc.h"
#include "util/err.h"

/* ---- helpers ---- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng_next(void)
{
	/* splitmix64: deterministic, so every run tests the same data */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double rng_unit(void)
{
	return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static uint64_t bits_of(double v)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	return bits;
}

static void assert_same_column(const struct block_column *want, const struct block_column *got)
{
	assert_int_equal(want->type, got->type);
	assert_int_equal(want->count, got->count);
	for (size_t k = 0; k < want->count; k++) {
		assert_true(want->ts[k] == got->ts[k]);
		switch (want->type) {
		case SIG_FLOAT:
			assert_true(bits_of(want->vals[k].f) == bits_of(got->vals[k].f));
			break;
		case SIG_STRING:
			assert_string_equal(want->strings + want->vals[k].i,
			                    got->strings + got->vals[k].i);
			break;
		default:
			assert_true(want->vals[k].i == got->vals[k].i);
			break;
		}
	}
}

/* Encodes, peeks, decodes and compares; returns the block's size. */
static size_t round_trip(const struct block_column *column)
{
	struct dm_buf out = {0};
	assert_int_equal(block_encode(column, NULL, &out), DM_OK);
	struct block_info info;
	assert_int_equal(block_peek(out.data, out.len, &info), DM_OK);
	assert_int_equal(info.version, BLOCK_VERSION);
	assert_int_equal(info.type, column->type);
	assert_int_equal(info.count, column->count);
	assert_true(info.t_min == column->ts[0]);
	assert_true(info.t_max == column->ts[column->count - 1]);
	assert_int_equal(info.key_id, 0);
	struct block_decoded decoded;
	assert_int_equal(block_decode(out.data, out.len, NULL, &decoded), DM_OK);
	assert_same_column(column, &decoded.column);
	block_decoded_free(&decoded);
	size_t len = out.len;
	dm_buf_free(&out);
	return len;
}

struct series {
	int64_t *ts;
	union block_num *vals;
	struct block_column column;
};

static void series_alloc(struct series *s, uint8_t type, size_t count)
{
	s->ts = calloc(count, sizeof *s->ts);
	s->vals = calloc(count, sizeof *s->vals);
	assert_non_null(s->ts);
	assert_non_null(s->vals);
	s->column = (struct block_column){type, count, s->ts, s->vals, NULL, 0};
}

static void series_free(struct series *s)
{
	free(s->ts);
	free(s->vals);
}

/* Timestamps every 100 ms; one sample in twenty off by up to 5 ms. */
static void fill_vehicle_ts(int64_t *ts, size_t count)
{
	for (size_t k = 0; k < count; k++) {
		int64_t jitter = rng_next() % 20 == 0 ? (int64_t)(rng_next() % 11) - 5 : 0;
		ts[k] = 1700000000000 + (int64_t)k * 100 + jitter;
	}
}

static double round_to(double v, double scale)
{
	return round(v * scale) / scale;
}

enum realistic { SPEED, LATITUDE, LONGITUDE, ODOMETER, SOC, REALISTIC_KINDS };
static const char *const realistic_names[] = {"speed", "latitude", "longitude", "odometer", "soc"};

/* A car driving: speed (km/h, one decimal) varies smoothly, position (7
 * decimals, a few cm of receiver noise) follows speed and a slowly turning
 * heading, the odometer (km, one decimal) grows, the battery's state of
 * charge (percent, one decimal) slowly falls. */
static void fill_realistic(enum realistic kind, union block_num *vals, size_t count)
{
	double speed = 50, target = 50, accel = 0, heading = 0.3;
	double lat = 31.2304567, lon = 121.4737021, odo = 12345.6, soc = 80.0;
	for (size_t k = 0; k < count; k++) {
		/* The driver picks a new cruising speed every 30 s and eases
		 * towards it; acceleration itself is noisy. */
		if (k % 300 == 0)
			target = 20 + rng_unit() * 90;
		accel += ((target - speed) / 3.6 * 0.2 - accel) * 0.1 + (rng_unit() - 0.5) * 0.3;
		accel = fmax(-3, fmin(3, accel));      /* m/s^2 */
		speed = fmax(0, speed + accel * 0.36); /* km/h, 100 ms later */
		heading += (rng_unit() - 0.5) * 0.02;
		double metres = speed / 3.6 * 0.1;
		lat += metres * cos(heading) / 111320.0;
		lon += metres * sin(heading) / (111320.0 * cos(lat * M_PI / 180));
		odo += metres / 1000;
		soc -= metres / 1000 * 0.15;
		double noise = ((double)(rng_next() % 7) - 3) * 1e-7;
		switch (kind) {
		case SPEED:
			vals[k].f = round_to(speed, 10);
			break;
		case LATITUDE:
			vals[k].f = round_to(lat + noise, 1e7);
			break;
		case LONGITUDE:
			vals[k].f = round_to(lon + noise, 1e7);
			break;
		case ODOMETER:
			vals[k].f = round_to(odo, 10);
			break;
		default:
			vals[k].f = round_to(soc, 10);
			break;
		}
	}
}

/* ---- hand-made blocks ---- */

struct raw {
	uint8_t b[1 << 16];
	size_t len;
};

static void raw_u8(struct raw *r, uint8_t v)
{
	r->b[r->len++] = v;
}

static void raw_be32(struct raw *r, uint32_t v)
{
	for (int k = 3; k >= 0; k--)
		raw_u8(r, (uint8_t)(v >> (8 * k)));
}

static void raw_varint(struct raw *r, uint64_t v)
{
	while (v >= 0x80) {
		raw_u8(r, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	raw_u8(r, (uint8_t)v);
}

static uint64_t zz(int64_t v)
{
	return (uint64_t)v << 1 ^ (v < 0 ? UINT64_MAX : 0);
}

/* Recomputes both checksums of a block in place, as an attacker or a bug
 * writing a consistent block would. */
static void reseal(uint8_t *block, size_t len)
{
	put_be32(block + 48, crc32c(0, block, 48));
	put_be32(block + len - 4, crc32c(0, block, len - 4));
}

struct fields {
	uint8_t type;
	uint32_t count;
	int64_t t_min, t_max;
	uint32_t key_id;
	uint8_t nonce_byte;
};

/* A sealed block with the given header fields around an already compressed
 * (or otherwise stored) body; returns its length. */
static size_t make_block_stored(uint8_t *block, const struct fields *f, const void *body,
                                size_t body_len)
{
	memcpy(block, "DMB1", 4);
	block[4] = BLOCK_VERSION;
	block[5] = f->type;
	block[6] = block[7] = 0;
	put_be32(block + 8, f->count);
	put_be64(block + 12, (uint64_t)f->t_min);
	put_be64(block + 20, (uint64_t)f->t_max);
	put_be32(block + 28, f->key_id);
	memset(block + 32, f->nonce_byte, BLOCK_NONCE_LEN);
	put_be32(block + 44, (uint32_t)body_len);
	memcpy(block + BLOCK_HEADER_LEN, body, body_len);
	size_t len = BLOCK_HEADER_LEN + body_len + (f->key_id ? BLOCK_TAG_LEN : 0) + 4;
	memset(block + BLOCK_HEADER_LEN + body_len, 0xA5, len - 4 - BLOCK_HEADER_LEN - body_len);
	reseal(block, len);
	return len;
}

static uint8_t scratch_frame[1 << 17];
static uint8_t scratch_block[1 << 17];

/* A sealed block whose body is raw, compressed as the encoder would. */
static size_t make_block(const struct fields *f, const struct raw *raw)
{
	size_t frame = ZSTD_compress(scratch_frame, sizeof scratch_frame, raw->b, raw->len, 1);
	assert_false(ZSTD_isError(frame));
	return make_block_stored(scratch_block, f, scratch_frame, frame);
}

/* A body of two columns: timestamps t_min, then t_min + 10 for the rest, and
 * the given value column. */
static void raw_columns(struct raw *r, size_t count, const struct raw *vals)
{
	r->len = 0;
	raw_be32(r, (uint32_t)count); /* deltas of delta 0, +10, -10, 0...: a byte each */
	for (size_t k = 0; k < count; k++)
		raw_varint(r, zz(k == 1 ? 10 : k == 2 ? -10 : 0));
	raw_be32(r, (uint32_t)vals->len);
	memcpy(r->b + r->len, vals->b, vals->len);
	r->len += vals->len;
}

/* What block_decode says of a block, opened with seal (NULL: in clear). */
static int open_status(const uint8_t *block, size_t len, const struct block_seal *seal)
{
	struct block_decoded decoded;
	int rc = block_decode(block, len, seal, &decoded);
	block_decoded_free(&decoded);
	return rc;
}

static int decode_status(const uint8_t *block, size_t len)
{
	return open_status(block, len, NULL);
}

/* Three ints 1, 2, 3 with delta encoding: the baseline every case mutates. */
static void int_values(struct raw *vals)
{
	vals->len = 0;
	raw_u8(vals, 1); /* delta */
	for (int k = 0; k < 3; k++)
		raw_varint(vals, zz(1));
}

static const struct fields INT3 = {SIG_INT, 3, 1000, 1010, 0, 0};

/* ---- round trips ---- */

static void test_float_column_round_trips_with_extremes(void **state)
{
	static const double values[] = {
	    0.0,           -0.0,      DBL_MAX,  -DBL_MAX,
	    DBL_MIN,       -DBL_MIN,  4.9e-324, INFINITY,
	    -INFINITY,     1.0 / 3.0, M_PI,     1e300,
	    -1e-300,       0.1,       0.2,      0.30000000000000004,
	    123456789.123, 1.5,       1.5,      1.5,
	};
	size_t count = sizeof values / sizeof values[0];
	struct series s;
	series_alloc(&s, SIG_FLOAT, count);
	for (size_t k = 0; k < count; k++) {
		s.ts[k] = (int64_t)k * 7;
		s.vals[k].f = values[k];
	}
	round_trip(&s.column);
	series_free(&s);
}

static void test_float_column_keeps_nan_payloads_bit_for_bit(void **state)
{
	struct series s;
	series_alloc(&s, SIG_FLOAT, 4);
	uint64_t payloads[] = {0x7FF8000000000000ull, 0xFFF8000000000001ull, 0x7FF0000000000001ull,
	                       0x3FF0000000000000ull};
	for (size_t k = 0; k < 4; k++) {
		s.ts[k] = (int64_t)k;
		memcpy(&s.vals[k].f, &payloads[k], sizeof(double));
	}
	round_trip(&s.column);
	series_free(&s);
}

static void test_decimal_floats_round_trip_including_negatives_and_many_digits(void **state)
{
	static const double values[] = {-12.5,       0.001, 99999.999, -0.000000001, 31.2304567,
	                                121.4737021, 0.0,   1e-18,     -7.0};
	size_t count = sizeof values / sizeof values[0];
	struct series s;
	series_alloc(&s, SIG_FLOAT, count);
	for (size_t k = 0; k < count; k++) {
		s.ts[k] = 5 + (int64_t)k;
		s.vals[k].f = values[k];
	}
	round_trip(&s.column);
	series_free(&s);
}

static void test_float32_sensor_values_round_trip_through_xor(void **state)
{
	struct series s;
	series_alloc(&s, SIG_FLOAT, 1000);
	fill_vehicle_ts(s.ts, 1000);
	fill_realistic(SPEED, s.vals, 1000);
	for (size_t k = 0; k < 1000; k++)
		s.vals[k].f = (double)(float)s.vals[k].f;
	size_t len = round_trip(&s.column);
	/* Not decimals, so XOR: with 29 zero bits at the end of each, still
	 * under 2 bytes a sample. */
	assert_true(len < 1000 * 2);
	series_free(&s);
}

static void test_int_column_round_trips_negatives_and_int64_extremes(void **state)
{
	static const int64_t values[] = {0,         -1,        1,         INT64_MIN,    INT64_MAX,
	                                 INT64_MIN, INT64_MAX, -42,       INT64_MAX,    INT64_MAX,
	                                 -1000000,  0,         INT64_MIN, INT64_MIN + 1};
	size_t count = sizeof values / sizeof values[0];
	struct series s;
	series_alloc(&s, SIG_INT, count);
	for (size_t k = 0; k < count; k++) {
		s.ts[k] = -500 + (int64_t)k * 3;
		s.vals[k].i = values[k];
	}
	round_trip(&s.column);
	series_free(&s);
}

static void test_int_column_of_a_steady_counter_takes_under_a_byte_a_sample(void **state)
{
	struct series s;
	series_alloc(&s, SIG_INT, 10000);
	fill_vehicle_ts(s.ts, 10000);
	for (size_t k = 0; k < 10000; k++)
		s.vals[k].i = 1234567890 + (int64_t)k * 14 + (int64_t)(rng_next() % 3);
	size_t len = round_trip(&s.column);
	assert_true(len < 10000);
	series_free(&s);
}

static void test_bool_column_round_trips(void **state)
{
	struct series s;
	series_alloc(&s, SIG_BOOL, 300);
	for (size_t k = 0; k < 300; k++) {
		s.ts[k] = (int64_t)k * 1000;
		s.vals[k].i = (k / 7) % 2;
	}
	round_trip(&s.column);
	series_free(&s);
}

static void test_string_column_round_trips_empty_shared_and_longest_strings(void **state)
{
	size_t pool_len = 32 + BLOCK_MAX_STRING_LEN + 1;
	char *pool = calloc(1, pool_len);
	assert_non_null(pool);
	memcpy(pool, "\0gear P\0gear D\0\xe4\xb8\xad\xe6\x96\x87", 20);
	memset(pool + 32, 'x', BLOCK_MAX_STRING_LEN);
	int64_t offsets[] = {0, 1, 8, 8, 15, 32, 1, 7};
	struct series s;
	series_alloc(&s, SIG_STRING, 8);
	for (size_t k = 0; k < 8; k++) {
		s.ts[k] = 100 + (int64_t)k;
		s.vals[k].i = offsets[k];
	}
	s.column.strings = pool;
	s.column.strings_len = pool_len;
	round_trip(&s.column);

	/* One byte longer than a string may be. */
	char *longer = calloc(1, BLOCK_MAX_STRING_LEN + 2);
	assert_non_null(longer);
	memset(longer, 'y', BLOCK_MAX_STRING_LEN + 1);
	s.column.count = 1;
	s.vals[0].i = 0;
	s.column.strings = longer;
	s.column.strings_len = BLOCK_MAX_STRING_LEN + 2;
	struct dm_buf out = {0};
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_TOO_LARGE);
	assert_int_equal(out.len, 0);
	free(longer);
	free(pool);
	series_free(&s);
}

static void test_a_single_sample_round_trips_for_every_type(void **state)
{
	char pool[] = "one";
	for (uint8_t type = SIG_FLOAT; type <= SIG_STRING; type++) {
		struct series s;
		series_alloc(&s, type, 1);
		s.ts[0] = -1;
		if (type == SIG_FLOAT)
			s.vals[0].f = -273.15;
		else if (type == SIG_INT)
			s.vals[0].i = INT64_MIN;
		else if (type == SIG_BOOL)
			s.vals[0].i = 1;
		s.column.strings = pool;
		s.column.strings_len = sizeof pool;
		round_trip(&s.column);
		series_free(&s);
	}
}

static void test_identical_timestamps_round_trip(void **state)
{
	struct series s;
	series_alloc(&s, SIG_INT, 50);
	for (size_t k = 0; k < 50; k++) {
		s.ts[k] = 1700000000000 + (int64_t)(k / 10) * 100; /* runs of ten equal times */
		s.vals[k].i = (int64_t)k;
	}
	round_trip(&s.column);
	for (size_t k = 0; k < 50; k++)
		s.ts[k] = 42;
	round_trip(&s.column);
	series_free(&s);
}

static void test_timestamps_spanning_the_whole_int64_range_round_trip(void **state)
{
	struct series s;
	series_alloc(&s, SIG_BOOL, 4);
	int64_t ts[] = {INT64_MIN, -1, 0, INT64_MAX};
	memcpy(s.ts, ts, sizeof ts);
	round_trip(&s.column);
	series_free(&s);
}

static void test_the_largest_block_round_trips_and_one_more_sample_is_refused(void **state)
{
	size_t count = BLOCK_MAX_SAMPLES + 1;
	struct series s;
	series_alloc(&s, SIG_FLOAT, count);
	fill_vehicle_ts(s.ts, count);
	fill_realistic(LATITUDE, s.vals, count);
	struct dm_buf out = {0};
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_TOO_LARGE);
	assert_int_equal(out.len, 0);
	s.column.count = BLOCK_MAX_SAMPLES;
	round_trip(&s.column);
	series_free(&s);
}

static void test_encode_refuses_bad_columns_and_leaves_the_buffer_unchanged(void **state)
{
	struct dm_buf out = {0};
	assert_int_equal(dm_buf_append(&out, "keep", 4), DM_OK);
	struct series s;
	series_alloc(&s, SIG_BOOL, 3);
	int64_t ts[] = {10, 20, 30};
	memcpy(s.ts, ts, sizeof ts);

	s.column.count = 0;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.column.count = 3;
	s.column.type = 0;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.column.type = 5;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.column.type = SIG_BOOL;
	s.vals[1].i = 2;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.vals[1].i = 1;
	s.ts[2] = 19;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.ts[2] = 30;

	char pool[4] = {'a', 'b', 'c', 'd'}; /* no NUL */
	s.column.type = SIG_STRING;
	s.column.strings = pool;
	s.column.strings_len = sizeof pool;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	pool[3] = '\0';
	s.vals[2].i = 4; /* just past the pool */
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.vals[2].i = -1;
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_ERR_INVALID);
	s.vals[2].i = 3; /* the last byte, an empty string */
	assert_int_equal(out.len, 4);
	assert_memory_equal(out.data, "keep", 4);

	/* And a good column appends after what was there. */
	assert_int_equal(block_encode(&s.column, NULL, &out), DM_OK);
	assert_memory_equal(out.data, "keep", 4);
	struct block_decoded decoded;
	assert_int_equal(block_decode(out.data + 4, out.len - 4, NULL, &decoded), DM_OK);
	assert_string_equal(decoded.column.strings + decoded.vals[0].i, "abc");
	assert_string_equal(decoded.column.strings + decoded.vals[2].i, "");
	block_decoded_free(&decoded);
	dm_buf_free(&out);
	series_free(&s);
}

/* ---- corruption ---- */

static void small_block(uint8_t type, struct dm_buf *out)
{
	static char pool[] = "idle\0drive";
	struct series s;
	series_alloc(&s, type, 20);
	fill_vehicle_ts(s.ts, 20);
	fill_realistic(SPEED, s.vals, 20);
	if (type == SIG_STRING) {
		for (size_t k = 0; k < 20; k++)
			s.vals[k].i = k % 3 ? 0 : 5;
		s.column.strings = pool;
		s.column.strings_len = sizeof pool;
	} else if (type != SIG_FLOAT) {
		for (size_t k = 0; k < 20; k++)
			s.vals[k].i = (int64_t)(k % 2);
	}
	assert_int_equal(block_encode(&s.column, NULL, out), DM_OK);
	series_free(&s);
}

static void test_a_flipped_byte_anywhere_is_detected(void **state)
{
	static const uint8_t masks[] = {0x01, 0x80, 0xFF};
	for (uint8_t type = SIG_FLOAT; type <= SIG_STRING; type++) {
		struct dm_buf out = {0};
		small_block(type, &out);
		for (size_t at = 0; at < out.len; at++) {
			for (size_t m = 0; m < sizeof masks; m++) {
				out.data[at] ^= masks[m];
				assert_int_equal(decode_status(out.data, out.len),
				                 DM_ERR_MALFORMED);
				if (at < BLOCK_HEADER_LEN) {
					struct block_info info;
					assert_int_equal(block_peek(out.data, out.len, &info),
					                 DM_ERR_MALFORMED);
				}
				out.data[at] ^= masks[m];
			}
		}
		assert_int_equal(decode_status(out.data, out.len), DM_OK);
		dm_buf_free(&out);
	}
}

static void test_truncation_at_every_length_is_detected(void **state)
{
	struct dm_buf out = {0};
	small_block(SIG_FLOAT, &out);
	for (size_t len = 0; len < out.len; len++) {
		/* A copy of exactly len bytes, so ASan sees any read past it. */
		uint8_t *cut = malloc(len ? len : 1);
		assert_non_null(cut);
		memcpy(cut, out.data, len);
		assert_int_equal(decode_status(cut, len), DM_ERR_MALFORMED);
		struct block_info info;
		assert_int_equal(block_peek(cut, len, &info),
		                 len < BLOCK_HEADER_LEN ? DM_ERR_MALFORMED : DM_OK);
		free(cut);
	}
	/* One byte too many is as wrong as one too few. */
	assert_int_equal(dm_buf_append_u8(&out, 0), DM_OK);
	assert_int_equal(decode_status(out.data, out.len), DM_ERR_MALFORMED);
	assert_int_equal(decode_status(out.data, out.len - 1), DM_OK);
	dm_buf_free(&out);
}

static void test_a_header_claiming_a_huge_count_is_refused_before_allocating(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	static const uint32_t counts[] = {BLOCK_MAX_SAMPLES + 1, UINT32_MAX, 0};
	for (size_t k = 0; k < 3; k++) {
		struct fields f = INT3;
		f.count = counts[k];
		size_t len = make_block(&f, &body);
		dm_alloc_fail_after(0);
		assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
		dm_alloc_fail_after(-1);
		struct block_info info;
		assert_int_equal(block_peek(scratch_block, len, &info), DM_ERR_MALFORMED);
		assert_int_equal(info.count, 0);
	}
	/* The limit itself passes the header checks; the body then disagrees. */
	struct fields f = INT3;
	f.count = BLOCK_MAX_SAMPLES;
	size_t len = make_block(&f, &body);
	struct block_info info;
	assert_int_equal(block_peek(scratch_block, len, &info), DM_OK);
	assert_int_equal(info.count, BLOCK_MAX_SAMPLES);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
}

static void test_a_body_larger_than_its_count_allows_is_refused_before_allocating(void **state)
{
	/* A megabyte of zeros compresses to a few bytes: a decompression bomb
	 * for a block that claims three samples. */
	size_t big = 1 << 20;
	uint8_t *zeros = calloc(1, big);
	assert_non_null(zeros);
	size_t frame = ZSTD_compress(scratch_frame, sizeof scratch_frame, zeros, big, 3);
	assert_false(ZSTD_isError(frame));
	free(zeros);
	size_t len = make_block_stored(scratch_block, &INT3, scratch_frame, frame);
	dm_alloc_fail_after(0);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
	dm_alloc_fail_after(-1);
}

static void test_a_frame_without_its_content_size_is_refused(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	assert_non_null(cctx);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
	ZSTD_outBuffer zout = {scratch_frame, sizeof scratch_frame, 0};
	ZSTD_inBuffer zin = {body.b, body.len, 0};
	/* Streaming without a pledged size leaves the size out of the frame. */
	size_t left = ZSTD_compressStream2(cctx, &zout, &zin, ZSTD_e_end);
	assert_int_equal(left, 0);
	ZSTD_freeCCtx(cctx);
	size_t len = make_block_stored(scratch_block, &INT3, scratch_frame, zout.pos);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
}

static void test_two_frames_or_garbage_after_the_frame_are_refused(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	size_t frame = ZSTD_compress(scratch_frame, sizeof scratch_frame, body.b, body.len, 1);
	assert_false(ZSTD_isError(frame));
	size_t len = make_block_stored(scratch_block, &INT3, scratch_frame, frame);
	assert_int_equal(decode_status(scratch_block, len), DM_OK);
	memcpy(scratch_frame + frame, scratch_frame, frame);
	len = make_block_stored(scratch_block, &INT3, scratch_frame, 2 * frame);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
	len = make_block_stored(scratch_block, &INT3, scratch_frame, frame + 1);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
	len = make_block_stored(scratch_block, &INT3, "not zstd", 8);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);
}

static void test_a_hand_made_block_decodes_so_the_cases_below_test_one_thing(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	size_t len = make_block(&INT3, &body);
	struct block_decoded decoded;
	assert_int_equal(block_decode(scratch_block, len, NULL, &decoded), DM_OK);
	assert_true(decoded.ts[0] == 1000 && decoded.ts[1] == 1010 && decoded.ts[2] == 1010);
	assert_true(decoded.vals[0].i == 1 && decoded.vals[1].i == 2 && decoded.vals[2].i == 3);
	assert_null(decoded.column.strings);
	block_decoded_free(&decoded);
	block_decoded_free(&decoded); /* freeing twice is harmless: it was zeroed */
	block_decoded_free(NULL);
}

static void test_timestamps_that_disagree_with_the_header_are_refused(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	struct fields f = INT3;
	f.t_max = 1011; /* last is 1010 */
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	f.t_max = 1009;
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	f = INT3;
	f.t_min = 1010; /* timestamps count from t_min: these end at 1020 */
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	f = INT3;
	f.t_min = 1020; /* t_min > t_max */
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);

	/* First delta of delta not 0: the first sample is not at t_min. */
	body.b[4] = (uint8_t)zz(1);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_ERR_MALFORMED);
	/* Time going backwards: +10 then -20. */
	raw_columns(&body, 3, &vals);
	body.b[6] = (uint8_t)zz(-20);
	f = INT3;
	f.t_max = 1000;
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
}

static void test_columns_that_are_not_consumed_exactly_are_refused(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	/* A fourth timestamp in a three-sample timestamp column. */
	raw_columns(&body, 3, &vals);
	struct raw longer = {.len = 0};
	raw_be32(&longer, 4);
	memcpy(longer.b + 4, body.b + 4, 3);
	longer.len = 7;
	raw_u8(&longer, 0);
	memcpy(longer.b + longer.len, body.b + 7, body.len - 7);
	longer.len += body.len - 7;
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &longer)),
	                 DM_ERR_MALFORMED);
	/* A value column with a byte to spare. */
	raw_u8(&vals, 0);
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_ERR_MALFORMED);
	/* A value column one value short. */
	vals.len -= 2;
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_ERR_MALFORMED);
	/* Bytes after the two columns. */
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	raw_u8(&body, 0);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_ERR_MALFORMED);
	/* A column length past the end of the body. */
	raw_columns(&body, 3, &vals);
	put_be32(body.b + 7, 1000);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_ERR_MALFORMED);
}

static void test_varints_that_are_overlong_or_not_minimal_are_refused(void **state)
{
	struct raw vals, body;
	vals.len = 0;
	raw_u8(&vals, 1);
	raw_varint(&vals, zz(1));
	raw_varint(&vals, zz(1));
	/* 0x82 0x00: the value 2 in two bytes. */
	raw_u8(&vals, 0x82);
	raw_u8(&vals, 0x00);
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_ERR_MALFORMED);
	/* Eleven bytes, and ten whose last carries bits beyond 64. */
	for (size_t bytes = 10; bytes <= 11; bytes++) {
		vals.len = 0;
		raw_u8(&vals, 1);
		raw_varint(&vals, zz(1));
		raw_varint(&vals, zz(1));
		for (size_t k = 0; k + 1 < bytes; k++)
			raw_u8(&vals, 0xFF);
		raw_u8(&vals, bytes == 10 ? 0x02 : 0x01);
		raw_columns(&body, 3, &vals);
		assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)),
		                 DM_ERR_MALFORMED);
	}
	/* The largest ten-byte varint is fine: zigzag of INT64_MIN's delta. */
	vals.len = 0;
	raw_u8(&vals, 1);
	raw_varint(&vals, zz(1));
	raw_varint(&vals, zz(1));
	raw_varint(&vals, UINT64_MAX);
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)), DM_OK);
}

static void test_values_impossible_for_their_type_are_refused(void **state)
{
	struct raw vals, body;
	/* An encoding that belongs to another type. */
	static const uint8_t wrong_for_int[] = {0, 3, 4, 5, 6, 0xFF};
	for (size_t k = 0; k < sizeof wrong_for_int; k++) {
		int_values(&vals);
		vals.b[0] = wrong_for_int[k];
		raw_columns(&body, 3, &vals);
		assert_int_equal(decode_status(scratch_block, make_block(&INT3, &body)),
		                 DM_ERR_MALFORMED);
	}
	/* A bool of 2. */
	struct fields f = INT3;
	f.type = SIG_BOOL;
	vals.len = 0;
	raw_u8(&vals, 1);
	raw_varint(&vals, zz(1));
	raw_varint(&vals, zz(0));
	raw_varint(&vals, zz(1));
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	vals.b[3] = (uint8_t)zz(-1); /* 1, 1, 0 */
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_OK);
	/* A string holding a NUL, and one longer than the column. */
	f.type = SIG_STRING;
	vals.len = 0;
	raw_u8(&vals, 5);
	raw_varint(&vals, 2);
	raw_u8(&vals, 'o');
	raw_u8(&vals, 'k');
	raw_varint(&vals, 0);
	raw_varint(&vals, 2);
	raw_u8(&vals, 'a');
	raw_u8(&vals, 0);
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	vals.b[vals.len - 1] = 'b';
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_OK);
	vals.b[vals.len - 3] = 3;
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	/* Decimal floats: e 18 is the most, 19 too many; orders 1 and 2 only. */
	f.type = SIG_FLOAT;
	static const uint8_t heads[][2] = {{18, 1}, {19, 1}, {2, 2}, {2, 0}, {2, 3}};
	static const int ok[] = {DM_OK, DM_ERR_MALFORMED, DM_OK, DM_ERR_MALFORMED,
	                         DM_ERR_MALFORMED};
	for (size_t k = 0; k < 5; k++) {
		vals.len = 0;
		raw_u8(&vals, 3);
		raw_u8(&vals, heads[k][0]);
		raw_u8(&vals, heads[k][1]);
		for (int j = 0; j < 3; j++)
			raw_varint(&vals, zz(5));
		raw_columns(&body, 3, &vals);
		assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), ok[k]);
	}
	/* A decimal mantissa of 2^53 cannot be exact. */
	vals.len = 0;
	raw_u8(&vals, 3);
	raw_u8(&vals, 0);
	raw_u8(&vals, 1);
	raw_varint(&vals, zz(1));
	raw_varint(&vals, zz(0));
	raw_varint(&vals, zz((int64_t)1 << 53));
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
}

static void test_xor_values_that_break_the_control_byte_rules_are_refused(void **state)
{
	struct fields f = INT3;
	f.type = SIG_FLOAT;
	struct raw vals, body;
	/* 1.0 (0x3FF0000000000000: no leading, six trailing zero bytes), then
	 * equal twice. */
	vals.len = 0;
	raw_u8(&vals, 4);
	raw_u8(&vals, 0x06);
	raw_u8(&vals, 0x3F);
	raw_u8(&vals, 0xF0);
	raw_u8(&vals, 0x80);
	raw_u8(&vals, 0x80);
	raw_columns(&body, 3, &vals);
	size_t len = make_block(&f, &body);
	struct block_decoded decoded;
	assert_int_equal(block_decode(scratch_block, len, NULL, &decoded), DM_OK);
	assert_true(decoded.vals[0].f == 1.0 && decoded.vals[2].f == 1.0);
	block_decoded_free(&decoded);
	/* Zero bytes left in the middle: the same value spelt otherwise. */
	struct raw spelt = vals;
	spelt.len = 1;
	raw_u8(&spelt, 0x05);
	raw_u8(&spelt, 0x3F);
	raw_u8(&spelt, 0xF0);
	raw_u8(&spelt, 0x00);
	raw_u8(&spelt, 0x80);
	raw_u8(&spelt, 0x80);
	raw_columns(&body, 3, &spelt);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	spelt.len = 1; /* one byte between one leading and six trailing, and it is zero */
	raw_u8(&spelt, 0x16);
	raw_u8(&spelt, 0x00);
	raw_u8(&spelt, 0x80);
	raw_u8(&spelt, 0x80);
	raw_columns(&body, 3, &spelt);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	/* Leading and trailing zero bytes that add up to 8 or more. */
	static const uint8_t too_many[] = {0x08, 0x44, 0x71, 0xFF, 0x17};
	for (size_t k = 0; k < sizeof too_many; k++) {
		spelt.len = 1;
		raw_u8(&spelt, too_many[k]);
		raw_u8(&spelt, 0x80);
		raw_u8(&spelt, 0x80);
		raw_columns(&body, 3, &spelt);
		assert_int_equal(decode_status(scratch_block, make_block(&f, &body)),
		                 DM_ERR_MALFORMED);
	}
	/* A value cut short, and a byte after the last value. */
	vals.len = 3;
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
	vals.len = 6;
	raw_u8(&vals, 0x80);
	raw_columns(&body, 3, &vals);
	assert_int_equal(decode_status(scratch_block, make_block(&f, &body)), DM_ERR_MALFORMED);
}

static void test_nonce_without_key_is_refused_and_encrypted_blocks_are_not_decoded(void **state)
{
	struct raw vals, body;
	int_values(&vals);
	raw_columns(&body, 3, &vals);
	struct fields f = INT3;
	f.nonce_byte = 7;
	size_t len = make_block(&f, &body);
	struct block_info info;
	assert_int_equal(block_peek(scratch_block, len, &info), DM_ERR_MALFORMED);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_MALFORMED);

	/* An encrypted block: the header reads, the body waits for its key. */
	f.key_id = 9;
	len = make_block(&f, &body);
	assert_int_equal(block_peek(scratch_block, len, &info), DM_OK);
	assert_int_equal(info.key_id, 9);
	assert_int_equal(info.nonce[11], 7);
	assert_int_equal(decode_status(scratch_block, len), DM_ERR_UNSUPPORTED);
	/* Without its tag it is malformed. */
	reseal(scratch_block, len - BLOCK_TAG_LEN);
	assert_int_equal(decode_status(scratch_block, len - BLOCK_TAG_LEN), DM_ERR_MALFORMED);
}

static void test_unknown_version_flags_and_types_are_refused(void **state)
{
	struct dm_buf out = {0};
	small_block(SIG_INT, &out);
	static const size_t at[] = {4, 4, 5, 5, 6, 7};
	static const uint8_t value[] = {0, 2, 0, 5, 1, 1};
	for (size_t k = 0; k < 6; k++) {
		uint8_t saved = out.data[at[k]];
		out.data[at[k]] = value[k];
		reseal(out.data, out.len);
		struct block_info info;
		assert_int_equal(block_peek(out.data, out.len, &info), DM_ERR_MALFORMED);
		assert_int_equal(decode_status(out.data, out.len), DM_ERR_MALFORMED);
		out.data[at[k]] = saved;
	}
	/* Another type with the same body: the encoding byte no longer fits. */
	out.data[5] = SIG_FLOAT;
	reseal(out.data, out.len);
	assert_int_equal(decode_status(out.data, out.len), DM_ERR_MALFORMED);
	dm_buf_free(&out);
}

static void test_encode_and_decode_recover_from_every_failed_allocation(void **state)
{
	struct series s;
	series_alloc(&s, SIG_FLOAT, 500);
	fill_vehicle_ts(s.ts, 500);
	fill_realistic(LONGITUDE, s.vals, 500);
	struct dm_buf out = {0};
	int rc = DM_ERR_NOMEM;
	for (long n = 0; rc == DM_ERR_NOMEM; n++) {
		dm_alloc_fail_after(n);
		rc = block_encode(&s.column, NULL, &out);
		dm_alloc_fail_after(-1);
		if (rc == DM_ERR_NOMEM)
			assert_int_equal(out.len, 0);
		assert_true(n < 1000);
	}
	assert_int_equal(rc, DM_OK);
	rc = DM_ERR_NOMEM;
	for (long n = 0; rc == DM_ERR_NOMEM; n++) {
		struct block_decoded decoded;
		dm_alloc_fail_after(n);
		rc = block_decode(out.data, out.len, NULL, &decoded);
		dm_alloc_fail_after(-1);
		if (rc == DM_OK) {
			assert_same_column(&s.column, &decoded.column);
		} else {
			assert_int_equal(rc, DM_ERR_NOMEM);
			assert_null(decoded.ts);
			assert_null(decoded.vals);
		}
		block_decoded_free(&decoded);
		assert_true(n < 1000);
	}
	dm_buf_free(&out);
	series_free(&s);
}

/* ---- compression of representative data ---- */

static void test_realistic_vehicle_series_take_under_two_bytes_a_sample(void **state)
{
	static const size_t counts[] = {1000, 10000};
	for (size_t c = 0; c < 2; c++) {
		for (int kind = 0; kind < REALISTIC_KINDS; kind++) {
			struct series s;
			series_alloc(&s, SIG_FLOAT, counts[c]);
			fill_vehicle_ts(s.ts, counts[c]);
			fill_realistic(kind, s.vals, counts[c]);
			size_t len = round_trip(&s.column);
			double per_sample = (double)len / (double)counts[c];
			print_message("%-9s %5zu samples: %zu bytes, %.3f bytes/sample\n",
			              realistic_names[kind], counts[c], len, per_sample);
			assert_true(per_sample < 2.0);
			series_free(&s);
		}
	}
}

/* ---- sealed blocks ---- */

/* A keyring with keys for vehicles 1 and 2, under a file KEK in dir. */
struct sealing {
	char dir[64];
	struct keystore *ks;
	struct keyring *ring;
};

static void sealing_open(struct sealing *k)
{
	snprintf(k->dir, sizeof k->dir, "/tmp/domicile-test-block.XXXXXX");
	assert_non_null(mkdtemp(k->dir));
	assert_int_equal(keystore_file_open(k->dir, &k->ks), DM_OK);
	assert_int_equal(keyring_new(k->ks, &k->ring), DM_OK);
	uint8_t blob[KEYSTORE_WRAPPED_LEN];
	assert_int_equal(keyring_create(k->ring, 1, blob), DM_OK);
	assert_int_equal(keyring_create(k->ring, 2, blob), DM_OK);
}

static void sealing_close(struct sealing *k)
{
	keyring_free(k->ring);
	keystore_free(k->ks);
	char path[96];
	snprintf(path, sizeof path, "%s/kek.key", k->dir);
	unlink(path);
	rmdir(k->dir);
}

static void test_sealed_block_opens_only_in_its_own_row(void **state)
{
	struct sealing k;
	sealing_open(&k);
	int64_t ts[3] = {1000, 2000, 3000};
	union block_num vals[3] = {{.f = 12.5}, {.f = 13.5}, {.f = 14.0}};
	struct block_column column = {SIG_FLOAT, 3, ts, vals, NULL, 0};
	struct block_seal seal = {k.ring, 1, "Vehicle.Speed", 1000, 3000};
	struct dm_buf block = {0};
	assert_int_equal(block_encode(&column, &seal, &block), DM_OK);
	struct block_info info;
	assert_int_equal(block_peek(block.data, block.len, &info), DM_OK);
	assert_int_equal(info.key_id, 1);

	struct block_decoded decoded;
	assert_int_equal(block_decode(block.data, block.len, &seal, &decoded), DM_OK);
	assert_same_column(&column, &decoded.column);
	block_decoded_free(&decoded);

	/* Another vehicle's row, another signal, another window: each fails. */
	struct block_seal other = seal;
	other.vehicle_id = 2;
	assert_int_equal(open_status(block.data, block.len, &other), DM_ERR_CRYPTO);
	other = seal;
	other.signal_path = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current";
	assert_int_equal(open_status(block.data, block.len, &other), DM_ERR_CRYPTO);
	other = seal;
	other.t_max = 3001;
	assert_int_equal(open_status(block.data, block.len, &other), DM_ERR_CRYPTO);
	/* No key to open it with. */
	assert_int_equal(open_status(block.data, block.len, NULL), DM_ERR_UNSUPPORTED);

	/* Every byte of header and body, flipped with the checksums made to
	 * fit (as an attacker would), fails; the trailing CRC alone catches a
	 * flip that is not hidden. */
	for (size_t i = 0; i + 4 < block.len; i++) {
		struct dm_buf forged = {0};
		assert_int_equal(dm_buf_append(&forged, block.data, block.len), DM_OK);
		forged.data[i] ^= 0x40;
		assert_int_not_equal(open_status(forged.data, forged.len, &seal), DM_OK);
		if (i < 48 || i >= 52) /* bytes 48..51 are the header CRC itself */
			reseal(forged.data, forged.len);
		int rc = open_status(forged.data, forged.len, &seal);
		if (rc != DM_ERR_CRYPTO && rc != DM_ERR_MALFORMED)
			fail_msg("byte %zu flipped: %s", i, dm_strerror(rc));
		if (i >= BLOCK_HEADER_LEN)
			assert_int_equal(rc, DM_ERR_CRYPTO);
		dm_buf_free(&forged);
	}

	/* A block in clear where a sealed one is due is refused. */
	struct dm_buf clear = {0};
	assert_int_equal(block_encode(&column, NULL, &clear), DM_OK);
	assert_int_equal(open_status(clear.data, clear.len, &seal), DM_ERR_CRYPTO);

	/* Once the key is destroyed, nothing opens or seals any more. */
	assert_int_equal(keyring_destroy(k.ring, 1), DM_OK);
	assert_int_equal(open_status(block.data, block.len, &seal), DM_ERR_GONE);
	size_t before = clear.len;
	assert_int_equal(block_encode(&column, &seal, &clear), DM_ERR_GONE);
	assert_int_equal(clear.len, before);
	dm_buf_free(&clear);
	dm_buf_free(&block);
	sealing_close(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_float_column_round_trips_with_extremes),
	    cmocka_unit_test(test_sealed_block_opens_only_in_its_own_row),
	    cmocka_unit_test(test_float_column_keeps_nan_payloads_bit_for_bit),
	    cmocka_unit_test(test_decimal_floats_round_trip_including_negatives_and_many_digits),
	    cmocka_unit_test(test_float32_sensor_values_round_trip_through_xor),
	    cmocka_unit_test(test_int_column_round_trips_negatives_and_int64_extremes),
	    cmocka_unit_test(test_int_column_of_a_steady_counter_takes_under_a_byte_a_sample),
	    cmocka_unit_test(test_bool_column_round_trips),
	    cmocka_unit_test(test_string_column_round_trips_empty_shared_and_longest_strings),
	    cmocka_unit_test(test_a_single_sample_round_trips_for_every_type),
	    cmocka_unit_test(test_identical_timestamps_round_trip),
	    cmocka_unit_test(test_timestamps_spanning_the_whole_int64_range_round_trip),
	    cmocka_unit_test(test_the_largest_block_round_trips_and_one_more_sample_is_refused),
	    cmocka_unit_test(test_encode_refuses_bad_columns_and_leaves_the_buffer_unchanged),
	    cmocka_unit_test(test_a_flipped_byte_anywhere_is_detected),
	    cmocka_unit_test(test_truncation_at_every_length_is_detected),
	    cmocka_unit_test(test_a_header_claiming_a_huge_count_is_refused_before_allocating),
	    cmocka_unit_test(test_a_body_larger_than_its_count_allows_is_refused_before_allocating),
	    cmocka_unit_test(test_a_frame_without_its_content_size_is_refused),
	    cmocka_unit_test(test_two_frames_or_garbage_after_the_frame_are_refused),
	    cmocka_unit_test(test_a_hand_made_block_decodes_so_the_cases_below_test_one_thing),
	    cmocka_unit_test(test_timestamps_that_disagree_with_the_header_are_refused),
	    cmocka_unit_test(test_columns_that_are_not_consumed_exactly_are_refused),
	    cmocka_unit_test(test_varints_that_are_overlong_or_not_minimal_are_refused),
	    cmocka_unit_test(test_values_impossible_for_their_type_are_refused),
	    cmocka_unit_test(test_xor_values_that_break_the_control_byte_rules_are_refused),
	    cmocka_unit_test(
	        test_nonce_without_key_is_refused_and_encrypted_blocks_are_not_decoded),
	    cmocka_unit_test(test_unknown_version_flags_and_types_are_refused),
	    cmocka_unit_test(test_encode_and_decode_recover_from_every_failed_allocation),
	    cmocka_unit_test(test_realistic_vehicle_series_take_under_two_bytes_a_sample),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
