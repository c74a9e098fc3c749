/*
 * bench_payload.c — decode throughput of one core, in samples per second,
 * for JSON and protobuf batches of 100 samples like a car sends them
 * (location, speed, battery, temperatures, now and then a trouble code).
 *
 * The node's targets are 1,000,000 samples/s protobuf and 300,000 samples/s
 * JSON on two cores with everything else (MQTT, WAL, memtable) running, so
 * decoding alone has to be well above them. Reports; never fails the build:
 * it exits 0 unless it cannot run at all.
 *
 * Time is the thread's CPU time, not the wall clock, so that the figure means
 * "samples per second of one core" even on a machine busy with other work.
 *
 * Usage: bench_payload [seconds per form, default 1]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest/catalog.h"
#include "ingest/payload.h"
#include "util/buf.h"
#include "util/err.h"

#define BATCH_SAMPLES 100

/* Used when not run from the repository root. */
static const char fallback_catalog[] =
	"Vehicle.Speed float km/h -50 400 state\n"
	"Vehicle.CurrentLocation.Latitude float degrees -90 90 location\n"
	"Vehicle.CurrentLocation.Longitude float degrees -180 180 location\n"
	"Vehicle.CurrentLocation.Heading float degrees 0 360 location\n"
	"Vehicle.Powertrain.TractionBattery.StateOfCharge.Current float percent 0 100 state\n"
	"Vehicle.Exterior.AirTemperature float celsius -70 70 state\n"
	"Vehicle.Powertrain.FuelSystem.RelativeLevel int percent 0 100 state\n"
	"Vehicle.IsMoving bool - 0 1 state\n"
	"Vehicle.OBD.DTCList string - 0 16 diagnostics\n";

static const char *const mix[] = {
	"Vehicle.CurrentLocation.Latitude",
	"Vehicle.CurrentLocation.Longitude",
	"Vehicle.Speed",
	"Vehicle.CurrentLocation.Heading",
	"Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
	"Vehicle.Exterior.AirTemperature",
	"Vehicle.Powertrain.FuelSystem.RelativeLevel",
	"Vehicle.IsMoving",
	"Vehicle.Speed",
	"Vehicle.OBD.DTCList",
};

static void make_batch(const struct catalog *catalog, int64_t now_ms, struct sample *samples)
{
	for (size_t k = 0; k < BATCH_SAMPLES; k++) {
		const char *path = mix[k % (sizeof mix / sizeof mix[0])];
		const struct catalog_signal *sig = catalog_find(catalog, path, strlen(path));
		struct sample *s = &samples[k];
		*s = (struct sample){.ts_ms = now_ms - 10000 + (int64_t)k * 100, .signal = sig->id};
		switch (sig->type) {
		case SIG_FLOAT:
			s->value.num.f = sig->min + (sig->max - sig->min) * 0.37 + (double)k * 1e-6;
			break;
		case SIG_INT: s->value.num.i = (int64_t)(sig->min + k % 50); break;
		case SIG_BOOL: s->value.num.i = k & 1; break;
		case SIG_STRING:
			s->value.str = "P0301";
			s->value.str_len = 5;
			break;
		}
	}
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Decodes `bytes` over and over for about `seconds`; returns samples/s. */
static double run(struct payload_decoder *decoder, const struct dm_buf *bytes,
		  enum payload_format format, int64_t now_ms, double seconds)
{
	struct payload_batch batch;
	char reason[256];
	uint64_t start = cpu_ns(), elapsed = 0;
	uint64_t limit = (uint64_t)(seconds * 1e9);
	size_t batches = 0;
	while (elapsed < limit) {
		for (int k = 0; k < 100; k++) {
			if (payload_decode(decoder, bytes->data, bytes->len, format, now_ms, &batch,
					   reason, sizeof reason)) {
				fprintf(stderr, "bench_payload: decode refused: %s\n", reason);
				return 0;
			}
		}
		batches += 100;
		elapsed = cpu_ns() - start;
	}
	return (double)batches * BATCH_SAMPLES / ((double)elapsed / 1e9);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1.0;
	if (!(seconds > 0))
		seconds = 1.0;
	struct catalog *catalog;
	char err[256];
	if (catalog_load("catalog/signals.catalog", &catalog, err, sizeof err) != DM_OK &&
	    catalog_parse("built-in", fallback_catalog, sizeof fallback_catalog - 1, &catalog, err,
			  sizeof err) != DM_OK) {
		fprintf(stderr, "bench_payload: %s\n", err);
		return 1;
	}
	struct payload_decoder *decoder;
	if (payload_decoder_new(catalog, NULL, &decoder)) {
		fprintf(stderr, "bench_payload: out of memory\n");
		return 1;
	}
	int64_t now_ms = (int64_t)time(NULL) * 1000;
	static struct sample samples[BATCH_SAMPLES];
	make_batch(catalog, now_ms, samples);
	struct payload_batch batch = {.seq = 1, .count = BATCH_SAMPLES, .samples = samples};

	const struct {
		enum payload_format format;
		const char *name;
		double target;
	} forms[] = {{PAYLOAD_PROTOBUF, "protobuf", 1000000}, {PAYLOAD_JSON, "json", 300000}};
	printf("payload decode, per CPU-second of one core, batches of %d samples\n",
	       BATCH_SAMPLES);
	for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
		struct dm_buf bytes = {0};
		if (payload_encode(catalog, &batch, forms[f].format, &bytes)) {
			fprintf(stderr, "bench_payload: encode failed\n");
			return 1;
		}
		run(decoder, &bytes, forms[f].format, now_ms, seconds / 10); /* warm up */
		double rate = run(decoder, &bytes, forms[f].format, now_ms, seconds);
		printf("  %-8s %6zu bytes/batch %11.0f samples/s %7.1f MB/s"
		       "  (node target %.0f on 2 cores, all stages)\n",
		       forms[f].name, bytes.len, rate,
		       rate / BATCH_SAMPLES * (double)bytes.len / 1e6, forms[f].target);
		dm_buf_free(&bytes);
	}
	payload_decoder_free(decoder);
	catalog_free(catalog);
	return 0;
}
