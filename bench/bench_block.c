/*
 * bench_block.c — size and speed of blocks for representative vehicle data.
 *
 * For each series (10 Hz timestamps with occasional jitter; speed, position,
 * odometer and state of charge as a car reports them, plus an int counter, a
 * bool and float32-derived values that take the XOR path) it prints the
 * bytes a sample takes in blocks of 1,000 and 10,000 samples, and encode and
 * decode throughput in samples per second for blocks of 10,000, in clear
 * and sealed with a vehicle key side by side. It reports;
 * it never fails on a number.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/keyring.h"
#include "crypto/keystore.h"
#include "ingest/catalog.h"
#include "store/block.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_COUNT 10000
#define MIN_BENCH_NS 200000000ull /* run each measurement at least 0.2 s */

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng_next(void)
{
	/* splitmix64: the same data on every run */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double rng_unit(void)
{
	return (double)(rng_next() >> 11) / 9007199254740992.0;
}

enum kind { SPEED, LATITUDE, LONGITUDE, ODOMETER, SOC, ODOMETER_M, BRAKE, SPEED_F32, KINDS };

static const struct {
	const char *name;
	uint8_t type;
} kinds[] = {
    {"speed km/h, 1 decimal", SIG_FLOAT},    {"latitude, 7 decimals", SIG_FLOAT},
    {"longitude, 7 decimals", SIG_FLOAT},    {"odometer km, 1 decimal", SIG_FLOAT},
    {"battery SoC %, 1 decimal", SIG_FLOAT}, {"odometer m (int)", SIG_INT},
    {"brake pedal (bool)", SIG_BOOL},        {"speed as float32 (XOR)", SIG_FLOAT},
};

static double round_to(double v, double scale)
{
	return round(v * scale) / scale;
}

/* Timestamps every 100 ms, one in twenty off by up to 5 ms; a car whose
 * speed varies smoothly, whose heading slowly turns, whose position carries
 * a few centimetres of receiver noise. */
static void fill(enum kind kind, int64_t *ts, union block_num *vals, size_t count)
{
	double speed = 50, target = 50, accel = 0, heading = 0.3;
	double lat = 31.2304567, lon = 121.4737021, odo = 12345.6, soc = 80.0;
	for (size_t k = 0; k < count; k++) {
		/* The driver picks a new cruising speed every 30 s and eases
		 * towards it; acceleration itself is noisy. */
		if (k % 300 == 0)
			target = 20 + rng_unit() * 90;
		int64_t jitter = rng_next() % 20 == 0 ? (int64_t)(rng_next() % 11) - 5 : 0;
		ts[k] = 1700000000000 + (int64_t)k * 100 + jitter;
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
		case SOC:
			vals[k].f = round_to(soc, 10);
			break;
		case ODOMETER_M:
			vals[k].i = (int64_t)(odo * 1000);
			break;
		case BRAKE:
			vals[k].i = accel < -1.5;
			break;
		default:
			vals[k].f = (double)(float)round_to(speed, 10);
			break;
		}
	}
}

static double seconds(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* Samples per second encoding and decoding column as one block, sealed when
 * seal is given. Returns non-zero when a round trip fails. */
static int rates(const struct block_column *column, const struct block_seal *seal,
		 struct dm_buf *block, double *encode, double *decode)
{
	uint64_t runs = 0, start = dm_mono_ns(), took;
	do {
		dm_buf_reset(block);
		if (block_encode(column, seal, block) != DM_OK)
			return -1;
		runs++;
	} while ((took = dm_mono_ns() - start) < MIN_BENCH_NS);
	*encode = (double)(runs * column->count) / seconds(took);
	runs = 0;
	start = dm_mono_ns();
	do {
		struct block_decoded decoded;
		if (block_decode(block->data, block->len, seal, &decoded) != DM_OK)
			return -1;
		block_decoded_free(&decoded);
		runs++;
	} while ((took = dm_mono_ns() - start) < MIN_BENCH_NS);
	*decode = (double)(runs * column->count) / seconds(took);
	return 0;
}

int main(void)
{
	/* One vehicle key, under a file KEK in a directory of its own. */
	char dir[] = "/tmp/domicile-bench-block.XXXXXX";
	struct keystore *ks = NULL;
	struct keyring *ring = NULL;
	uint8_t blob[KEYSTORE_WRAPPED_LEN];
	dm_log_set_level(DM_LOG_WARN);
	if (!mkdtemp(dir) || keystore_file_open(dir, &ks) || keyring_new(ks, &ring) ||
	    keyring_create(ring, 1, blob)) {
		printf("cannot set up a vehicle key in %s\n", dir);
		return 1;
	}
	static int64_t ts[MAX_COUNT];
	static union block_num vals[MAX_COUNT];
	struct dm_buf block = {0};
	uint64_t all_samples = 0, all_bytes = 0;

	printf("block format: bytes per sample (whole block: header, checksums, zstd body)\n");
	printf("%-26s %10s %10s %10s %10s %10s %10s\n", "", "bytes/", "sample", "in clear",
	       "", "sealed", "");
	printf("%-26s %10s %10s %10s %10s %10s %10s\n", "series", "1,000", "10,000", "encode/s",
	       "decode/s", "encode/s", "decode/s");
	for (int kind = 0; kind < KINDS; kind++) {
		double per_sample[2];
		static const size_t counts[] = {1000, MAX_COUNT};
		for (int c = 0; c < 2; c++) {
			fill(kind, ts, vals, counts[c]);
			struct block_column column = {
			    kinds[kind].type, counts[c], ts, vals, NULL, 0};
			dm_buf_reset(&block);
			if (block_encode(&column, NULL, &block) != DM_OK) {
				printf("%s: encode failed\n", kinds[kind].name);
				return 0;
			}
			per_sample[c] = (double)block.len / (double)counts[c];
			if (c == 1) {
				all_samples += counts[c];
				all_bytes += block.len;
			}
		}
		/* Throughput on 10,000-sample blocks, in clear and sealed. */
		struct block_column column = {kinds[kind].type, MAX_COUNT, ts, vals, NULL, 0};
		double clear_enc, clear_dec, sealed_enc, sealed_dec;
		struct block_seal seal = {ring, 1, "Vehicle.Speed", ts[0], ts[MAX_COUNT - 1]};
		if (rates(&column, NULL, &block, &clear_enc, &clear_dec) ||
		    rates(&column, &seal, &block, &sealed_enc, &sealed_dec)) {
			printf("%s: decode failed\n", kinds[kind].name);
			return 0;
		}
		printf("%-26s %10.3f %10.3f %9.1fM %9.1fM %9.1fM %9.1fM\n", kinds[kind].name,
		       per_sample[0], per_sample[1], clear_enc / 1e6, clear_dec / 1e6,
		       sealed_enc / 1e6, sealed_dec / 1e6);
	}
	printf("all series, blocks of 10,000: %.3f bytes/sample\n",
	       (double)all_bytes / (double)all_samples);
	dm_buf_free(&block);
	keyring_free(ring);
	keystore_free(ks);
	char kek[64];
	snprintf(kek, sizeof kek, "%s/kek.key", dir);
	unlink(kek);
	rmdir(dir);
	return 0;
}
