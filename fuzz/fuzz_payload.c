/*
 * fuzz_payload.c — libFuzzer target for payload_decode.
 *
 * Every input is decoded in AUTO, JSON and PROTOBUF mode. Beyond "no crash,
 * no leak, no undefined behaviour", each accepted batch must hold what the
 * catalog promises, and must survive payload_encode and a second decode in
 * both forms unchanged: what the node accepts, the agent can send.
 *
 * The catalog is the real one when run from the repository root (as `make
 * fuzz` does); elsewhere a small built-in catalog with every type stands in.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/catalog.h"
#include "ingest/payload.h"
#include "util/buf.h"
#include "util/err.h"

#define NOW_MS INT64_C(1732400000000)

static const char fallback_catalog[] =
	"Vehicle.Speed float km/h -50 400 state\n"
	"Vehicle.CurrentLocation.Latitude float degrees -90 90 location\n"
	"Vehicle.Powertrain.FuelSystem.RelativeLevel int percent 0 100 state\n"
	"Vehicle.IsMoving bool - 0 1 state\n"
	"Vehicle.OBD.DTCList string - 0 16 diagnostics\n";

static struct catalog *catalog;
static struct payload_decoder *decoder;
static struct payload_decoder *checker;

static void init(void)
{
	if (catalog_load("catalog/signals.catalog", &catalog, NULL, 0) != DM_OK &&
	    catalog_parse("fallback", fallback_catalog, sizeof fallback_catalog - 1, &catalog, NULL,
			  0) != DM_OK)
		abort();
	/* Small limits so that the fuzzer reaches them. */
	struct payload_limits limits = {64, 300000};
	if (payload_decoder_new(catalog, &limits, &decoder) ||
	    payload_decoder_new(catalog, &limits, &checker))
		abort();
}

static int same_value(enum sig_type type, const struct sample_value *a,
		      const struct sample_value *b)
{
	switch (type) {
	case SIG_FLOAT: return a->num.f == b->num.f;
	case SIG_INT:
	case SIG_BOOL: return a->num.i == b->num.i;
	case SIG_STRING:
		return a->str_len == b->str_len &&
		       (a->str_len == 0 || memcmp(a->str, b->str, a->str_len) == 0);
	}
	return 0;
}

/* What an accepted batch promises, checked independently of the decoder. */
static void check_accepted(const struct payload_batch *batch)
{
	if (batch->count == 0 || batch->count > 64)
		abort();
	for (size_t k = 0; k < batch->count; k++) {
		const struct sample *sample = &batch->samples[k];
		const struct catalog_signal *sig = catalog_get(catalog, sample->signal);
		if (!sig || sample->ts_ms < INT64_C(946684800000) ||
		    sample->ts_ms > NOW_MS + 300000)
			abort();
		double value = 0;
		switch (sig->type) {
		case SIG_FLOAT:
			value = sample->value.num.f;
			if (!isfinite(value))
				abort();
			break;
		case SIG_INT: value = (double)sample->value.num.i; break;
		case SIG_BOOL:
			if (sample->value.num.i != 0 && sample->value.num.i != 1)
				abort();
			break;
		case SIG_STRING:
			value = sample->value.str_len;
			for (uint32_t i = 0; i < sample->value.str_len; i++)
				if (sample->value.str[i] < 0x20 || sample->value.str[i] > 0x7e)
					abort();
			break;
		}
		if (value < sig->min || value > sig->max)
			abort();
	}
}

/* Encodes the batch in `format` and decodes it with the checker: the
 * content must come back the same. */
static void check_round_trip(const struct payload_batch *batch, enum payload_format format)
{
	struct dm_buf buf = {0};
	int rc = payload_encode(catalog, batch, format, &buf);
	if (rc == DM_ERR_INVALID && format == PAYLOAD_JSON && batch->seq > INT64_MAX) {
		dm_buf_free(&buf);
		return; /* documented: JSON cannot carry such a seq */
	}
	if (rc)
		abort();
	struct payload_batch again;
	char reason[256];
	if (payload_decode(checker, buf.data, buf.len, format, NOW_MS, &again, reason,
			   sizeof reason))
		abort();
	if (again.seq != batch->seq || again.count != batch->count)
		abort();
	for (size_t k = 0; k < batch->count; k++) {
		const struct sample *a = &batch->samples[k], *b = &again.samples[k];
		const struct catalog_signal *sig = catalog_get(catalog, a->signal);
		if (a->ts_ms != b->ts_ms || a->signal != b->signal ||
		    !same_value(sig->type, &a->value, &b->value))
			abort();
	}
	dm_buf_free(&buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!catalog)
		init();
	const enum payload_format formats[] = {PAYLOAD_AUTO, PAYLOAD_JSON, PAYLOAD_PROTOBUF};
	for (size_t f = 0; f < 3; f++) {
		struct payload_batch batch;
		char reason[256];
		int rc = payload_decode(decoder, data, size, formats[f], NOW_MS, &batch, reason,
					sizeof reason);
		if (rc != DM_OK) {
			if (rc != DM_ERR_MALFORMED && rc != DM_ERR_INVALID &&
			    rc != DM_ERR_TOO_LARGE)
				abort();
			if (batch.count != 0 || batch.samples || reason[0] == '\0')
				abort();
			continue;
		}
		check_accepted(&batch);
		check_round_trip(&batch, PAYLOAD_JSON);
		check_round_trip(&batch, PAYLOAD_PROTOBUF);
	}
	return 0;
}
