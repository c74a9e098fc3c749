/*
 * fuzz_block.c — libFuzzer target for block_peek and block_decode.
 *
 * The first input byte picks how the rest is used, so the fuzzer gets past
 * the checksums and zstd instead of stopping at them:
 *
 *   0  the bytes are a block, as read from disk
 *   1  the same, with both checksums made right first
 *   2  the first BLOCK_HEADER_LEN bytes are a header and the rest a body
 *      before compression: the target compresses it, fixes body_len and the
 *      checksums, so the column parsers see the fuzzer's bytes directly
 *   3  the bytes describe a column (type, samples, values): it must encode,
 *      and decode to itself
 *   4  as 3, then one byte of the decompressed body is changed (position
 *      and XOR mask from the input) and the body recompressed and resealed:
 *      nearly valid columns, to reach every check behind the checksums
 *
 * Whenever a block decodes, its column is encoded again and that block must
 * decode to the same column (values compared bit for bit), in clear and
 * sealed under a vehicle key; and the fuzzer's own bytes, opened as a
 * sealed block of that vehicle, must never open (they carry no valid tag).
 */
#include <stdint.h>
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
#include "util/err.h"
#include "util/log.h"

static void reseal(uint8_t *block, size_t len)
{
	put_be32(block + 48, crc32c(0, block, 48));
	put_be32(block + len - 4, crc32c(0, block, len - 4));
}

static void check_same(const struct block_column *a, const struct block_column *b)
{
	if (a->type != b->type || a->count != b->count)
		abort();
	for (size_t k = 0; k < a->count; k++) {
		if (a->ts[k] != b->ts[k])
			abort();
		if (a->type == SIG_STRING) {
			if (strcmp(a->strings + a->vals[k].i, b->strings + b->vals[k].i) != 0)
				abort();
		} else if (memcmp(&a->vals[k], &b->vals[k], sizeof a->vals[k]) != 0) {
			abort(); /* bit for bit: NaN payloads and -0.0 included */
		}
	}
}

/* Vehicle 1's key, under a file KEK in a directory made once per process
 * and removed at exit. */
static char key_dir[] = "/tmp/domicile-fuzz-block.XXXXXX";

static void remove_key_dir(void)
{
	char path[sizeof key_dir + 16];
	snprintf(path, sizeof path, "%s/kek.key", key_dir);
	unlink(path);
	rmdir(key_dir);
}

static struct keyring *vehicle_ring(void)
{
	static struct keyring *ring;
	static struct keystore *ks;
	if (ring)
		return ring;
	uint8_t blob[KEYSTORE_WRAPPED_LEN];
	if (!mkdtemp(key_dir))
		abort();
	atexit(remove_key_dir);
	dm_log_set_level(DM_LOG_WARN);
	if (keystore_file_open(key_dir, &ks) || keyring_new(ks, &ring) ||
	    keyring_create(ring, 1, blob))
		abort();
	return ring;
}

/* Seals column as vehicle 1's block and checks it opens to itself. */
static void sealed_round_trip(const struct block_column *column)
{
	struct block_seal seal = {vehicle_ring(), 1, "Vehicle.Speed", column->ts[0],
				  column->ts[column->count - 1]};
	struct dm_buf sealed = {0};
	if (block_encode(column, &seal, &sealed) != DM_OK)
		abort();
	struct block_decoded opened;
	if (block_decode(sealed.data, sealed.len, &seal, &opened) != DM_OK)
		abort();
	check_same(column, &opened.column);
	block_decoded_free(&opened);
	dm_buf_free(&sealed);
}

static void decode_and_reencode(const uint8_t *bytes, size_t len)
{
	struct block_info info;
	int peeked = block_peek(bytes, len, &info);
	struct block_seal as_sealed = {vehicle_ring(), 1, "Vehicle.Speed", info.t_min, info.t_max};
	struct block_decoded forged;
	if (block_decode(bytes, len, &as_sealed, &forged) == DM_OK)
		abort(); /* opened without the key's tag */
	struct block_decoded first;
	int rc = block_decode(bytes, len, NULL, &first);
	if (rc != DM_OK) {
		if (first.ts || first.vals || first.strings || first.column.count)
			abort(); /* a failed decode leaves *out zeroed */
		return;
	}
	if (peeked != DM_OK || info.count != first.column.count || info.type != first.column.type)
		abort();
	struct dm_buf again = {0};
	if (block_encode(&first.column, NULL, &again) != DM_OK)
		abort(); /* whatever decodes must encode */
	struct block_decoded second;
	if (block_decode(again.data, again.len, NULL, &second) != DM_OK)
		abort();
	check_same(&first.column, &second.column);
	sealed_round_trip(&first.column);
	block_decoded_free(&second);
	dm_buf_free(&again);
	block_decoded_free(&first);
}

/* Reads the fuzzer's bytes as numbers; zeros once they run out. */
struct input {
	const uint8_t *p;
	size_t len, pos;
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < bytes; k++)
		v = v << 8 | (in->pos < in->len ? in->p[in->pos++] : 0);
	return v;
}

#define MAX_FUZZ_SAMPLES 256
#define MAX_FUZZ_STRING 20

struct made {
	int64_t ts[MAX_FUZZ_SAMPLES];
	union block_num vals[MAX_FUZZ_SAMPLES];
	char pool[MAX_FUZZ_SAMPLES * (MAX_FUZZ_STRING + 1)];
	struct block_column column;
};

/* A valid column from the input: mostly small steps, sometimes anything. */
static void make_column(struct input *in, struct made *m)
{
	static const double scale[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7};
	uint8_t type = (uint8_t)(take(in, 1) % 4 + 1);
	size_t count = (size_t)take(in, 1) % MAX_FUZZ_SAMPLES + 1, pool_len = 0;
	int64_t t = (int64_t)take(in, 8);
	for (size_t k = 0; k < count; k++) {
		uint8_t step = (uint8_t)take(in, 1);
		if (k && t <= INT64_MAX - step)
			t += step;
		m->ts[k] = t;
		uint8_t how = (uint8_t)take(in, 1);
		switch (type) {
		case SIG_FLOAT:
			if (how & 1) {
				uint64_t bits = take(in, 8);
				memcpy(&m->vals[k].f, &bits, sizeof bits);
			} else {
				m->vals[k].f = (double)(int32_t)take(in, 4) / scale[how >> 1 & 7];
			}
			break;
		case SIG_INT:
			m->vals[k].i = how & 1 ? (int64_t)take(in, 8) : (int8_t)take(in, 1);
			break;
		case SIG_BOOL:
			m->vals[k].i = how & 1;
			break;
		default: {
			size_t len = how % (MAX_FUZZ_STRING + 1);
			m->vals[k].i = (int64_t)pool_len;
			for (size_t j = 0; j < len; j++) {
				char c = (char)take(in, 1);
				m->pool[pool_len++] = c ? c : 'z';
			}
			m->pool[pool_len++] = '\0';
			break;
		}
		}
	}
	m->column = (struct block_column){type, count, m->ts, m->vals, NULL, 0};
	if (type == SIG_STRING) {
		m->column.strings = m->pool;
		m->column.strings_len = pool_len;
	}
}

static void round_trip_column(struct input *in, int mutate)
{
	static struct made m;
	make_column(in, &m);
	struct dm_buf block = {0};
	if (block_encode(&m.column, NULL, &block) != DM_OK)
		abort(); /* every column make_column builds is valid */
	struct block_decoded decoded;
	if (block_decode(block.data, block.len, NULL, &decoded) != DM_OK)
		abort();
	check_same(&m.column, &decoded.column);
	block_decoded_free(&decoded);
	if (mutate) {
		/* Decompress, change one byte, recompress, reseal. */
		const uint8_t *frame = block.data + BLOCK_HEADER_LEN;
		size_t frame_len = block.len - BLOCK_HEADER_LEN - 4;
		unsigned long long raw_len = ZSTD_getFrameContentSize(frame, frame_len);
		uint8_t *raw = malloc(raw_len);
		size_t cap = ZSTD_compressBound(raw_len);
		uint8_t *out = malloc(BLOCK_HEADER_LEN + cap + 4);
		if (raw && out && ZSTD_decompress(raw, raw_len, frame, frame_len) == raw_len) {
			size_t at = (size_t)take(in, 2) % raw_len;
			raw[at] ^= (uint8_t)(take(in, 1) | 1);
			size_t len = ZSTD_compress(out + BLOCK_HEADER_LEN, cap, raw, raw_len, 1);
			if (!ZSTD_isError(len)) {
				memcpy(out, block.data, BLOCK_HEADER_LEN);
				put_be32(out + 44, (uint32_t)len);
				reseal(out, BLOCK_HEADER_LEN + len + 4);
				decode_and_reencode(out, BLOCK_HEADER_LEN + len + 4);
			}
		}
		free(out);
		free(raw);
	}
	dm_buf_free(&block);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 5;
	data++;
	size--;
	if (mode >= 3) {
		struct input in = {data, size, 0};
		round_trip_column(&in, mode == 4);
		return 0;
	}
	if (mode == 0) {
		decode_and_reencode(data, size);
		return 0;
	}
	if (mode == 1) {
		if (size < BLOCK_HEADER_LEN + 4)
			return 0;
		uint8_t *copy = malloc(size);
		if (!copy)
			return 0;
		memcpy(copy, data, size);
		reseal(copy, size);
		decode_and_reencode(copy, size);
		free(copy);
		return 0;
	}
	if (size < BLOCK_HEADER_LEN)
		return 0;
	size_t raw_len = size - BLOCK_HEADER_LEN;
	size_t frame_cap = ZSTD_compressBound(raw_len);
	size_t cap = BLOCK_HEADER_LEN + frame_cap + 4;
	uint8_t *block = malloc(cap);
	if (!block)
		return 0;
	memcpy(block, data, BLOCK_HEADER_LEN);
	size_t frame =
	    ZSTD_compress(block + BLOCK_HEADER_LEN, frame_cap, data + BLOCK_HEADER_LEN, raw_len, 1);
	if (!ZSTD_isError(frame)) {
		memcpy(block, "DMB1", 4);
		block[4] = BLOCK_VERSION;
		block[6] = block[7] = 0;
		memset(block + 28, 0, 4 + BLOCK_NONCE_LEN); /* plaintext: key 0, nonce 0 */
		put_be32(block + 44, (uint32_t)frame);
		size_t len = BLOCK_HEADER_LEN + frame + 4;
		reseal(block, len);
		decode_and_reencode(block, len);
	}
	free(block);
	return 0;
}
