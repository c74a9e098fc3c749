/*
 * fuzz_json_batch.c — differential libFuzzer target: json_batch_read against
 * jansson.
 *
 * For every input both read it. Whenever jansson parses it, the reader must
 * too, and whenever jansson refuses it, the reader must refuse it, except for
 * the one documented difference: a duplicate key inside a value the shape has
 * no place for, which jansson refuses and the reader leaves to the shape check
 * (which then must refuse the batch). Inputs with a NUL byte are not compared
 * (jansson skips a NUL after a number); the reader must refuse them. Where both parse, a shape
 * check written once over jansson's tree and once over the reader's records must give the same
 * verdict, and for accepted batches the same seq and the same samples, bit for bit. payload_decode
 * also runs on every input, for crashes only.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/catalog.h"
#include "ingest/json_batch.h"
#include "ingest/payload.h"
#include "util/err.h"

#define NOW_MS INT64_C(1732400000000)
#define MAX_ITEMS 16

static const char catalog_text[] = "Vehicle.Speed float km/h -50 400 state\n"
                                   "Vehicle.Powertrain.FuelSystem.RelativeLevel int percent 0 100 "
                                   "state\n"
                                   "Vehicle.IsMoving bool - 0 1 state\n"
                                   "Vehicle.OBD.DTCList string - 0 16 diagnostics\n";

/* Blocks from the reader's alloc, freed after each input. */
struct block {
	struct block *next;
	max_align_t data[];
};

static struct block *blocks;
static struct catalog *catalog;
static struct payload_decoder *decoder;
static struct json_batch_reader *reader;

static void *block_alloc(void *ctx, size_t size)
{
	struct block *block = malloc(sizeof *block + size + 1);
	if (!block)
		abort();
	block->next = blocks;
	blocks = block;
	return block->data;
}

static void free_blocks(void)
{
	while (blocks) {
		struct block *next = blocks->next;
		free(blocks);
		blocks = next;
	}
}

/* One accepted sample, as either side saw it. */
struct flat {
	int64_t ts;
	const char *signal;
	size_t signal_len;
	int kind; /* 1 int, 2 real, 3 bool, 4 string */
	int64_t i;
	double f;
	const char *str;
	size_t len;
};

struct verdict {
	int ok;
	uint64_t seq;
	size_t count;
	struct flat samples[MAX_ITEMS];
};

/* The shape over jansson's tree: an object of exactly seq (integer >= 0)
 * and samples (1 .. MAX_ITEMS objects of exactly ts (integer), signal
 * (string) and value (number, bool or string)). */
static void shape_jansson(const json_t *root, struct verdict *out)
{
	memset(out, 0, sizeof *out);
	const json_t *seq = json_object_get(root, "seq");
	const json_t *samples = json_object_get(root, "samples");
	if (!json_is_object(root) || json_object_size(root) != 2 || !json_is_integer(seq) ||
	    json_integer_value(seq) < 0 || !json_is_array(samples))
		return;
	size_t count = json_array_size(samples);
	if (count == 0 || count > MAX_ITEMS)
		return;
	for (size_t k = 0; k < count; k++) {
		const json_t *item = json_array_get(samples, k);
		const json_t *ts = json_object_get(item, "ts");
		const json_t *signal = json_object_get(item, "signal");
		const json_t *value = json_object_get(item, "value");
		if (json_object_size(item) != 3 || !json_is_integer(ts) ||
		    !json_is_string(signal) || !value)
			return;
		struct flat *flat = &out->samples[k];
		flat->ts = json_integer_value(ts);
		flat->signal = json_string_value(signal);
		flat->signal_len = json_string_length(signal);
		if (json_is_integer(value)) {
			flat->kind = 1;
			flat->i = json_integer_value(value);
		} else if (json_is_real(value)) {
			flat->kind = 2;
			flat->f = json_real_value(value);
		} else if (json_is_boolean(value)) {
			flat->kind = 3;
			flat->i = json_is_true(value);
		} else if (json_is_string(value)) {
			flat->kind = 4;
			flat->str = json_string_value(value);
			flat->len = json_string_length(value);
		} else {
			return;
		}
	}
	out->ok = 1;
	out->seq = (uint64_t)json_integer_value(seq);
	out->count = count;
}

/* The same shape over the reader's records. */
static void shape_reader(const struct json_batch *doc, struct verdict *out)
{
	memset(out, 0, sizeof *out);
	if (doc->kind != JSON_BATCH_OBJECT || doc->other_keys || doc->seq.kind != JSON_BATCH_INT ||
	    doc->seq.i < 0 || doc->samples_kind != JSON_BATCH_ARRAY)
		return;
	if (doc->count == 0 || doc->count > MAX_ITEMS)
		return;
	for (size_t k = 0; k < doc->count; k++) {
		const struct json_batch_item *item = &doc->items[k];
		if (item->kind != JSON_BATCH_OBJECT || item->other_keys ||
		    item->ts.kind != JSON_BATCH_INT || item->signal.kind != JSON_BATCH_STRING)
			return;
		struct flat *flat = &out->samples[k];
		flat->ts = item->ts.i;
		flat->signal = item->signal.str;
		flat->signal_len = item->signal.len;
		switch (item->value.kind) {
		case JSON_BATCH_INT:
			flat->kind = 1;
			flat->i = item->value.i;
			break;
		case JSON_BATCH_REAL:
			flat->kind = 2;
			flat->f = item->value.f;
			break;
		case JSON_BATCH_BOOL:
			flat->kind = 3;
			flat->i = item->value.i;
			break;
		case JSON_BATCH_STRING:
			flat->kind = 4;
			flat->str = item->value.str;
			flat->len = item->value.len;
			break;
		default:
			return;
		}
	}
	out->ok = 1;
	out->seq = (uint64_t)doc->seq.i;
	out->count = doc->count;
}

static int same_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
	return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static void compare(const struct verdict *want, const struct verdict *got)
{
	if (want->ok != got->ok)
		abort();
	if (!want->ok)
		return;
	if (want->seq != got->seq || want->count != got->count)
		abort();
	for (size_t k = 0; k < want->count; k++) {
		const struct flat *a = &want->samples[k], *b = &got->samples[k];
		if (a->ts != b->ts || a->kind != b->kind ||
		    !same_bytes(a->signal, a->signal_len, b->signal, b->signal_len))
			abort();
		switch (a->kind) {
		case 1:
		case 3:
			if (a->i != b->i)
				abort();
			break;
		case 2: /* bit for bit: -0.0 is not 0.0 */
			if (memcmp(&a->f, &b->f, sizeof a->f) != 0)
				abort();
			break;
		case 4:
			if (!same_bytes(a->str, a->len, b->str, b->len))
				abort();
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!catalog) {
		if (catalog_parse("fuzz", catalog_text, sizeof catalog_text - 1, &catalog, NULL,
		                  0) ||
		    payload_decoder_new(catalog, &(struct payload_limits){MAX_ITEMS, 300000},
		                        &decoder) ||
		    json_batch_reader_new(MAX_ITEMS, block_alloc, NULL, &reader))
			abort();
	}
	struct payload_batch batch;
	char reason[256];
	int rc = payload_decode(decoder, data, size, PAYLOAD_JSON, NOW_MS, &batch, reason,
	                        sizeof reason);
	if (rc != DM_OK && rc != DM_ERR_MALFORMED && rc != DM_ERR_INVALID && rc != DM_ERR_TOO_LARGE)
		abort();

	struct json_batch doc;
	struct json_batch_error error;
	rc = json_batch_read(reader, data, size, &doc, &error);
	if (rc != DM_OK && rc != DM_ERR_MALFORMED)
		abort();
	if (rc == DM_ERR_MALFORMED && (error.offset > size || !error.problem || !error.expected))
		abort();

	/* A NUL byte is never valid JSON text. jansson loses one that follows
	 * a number (its stream uses NUL as "buffer empty"), so it is no
	 * reference here. */
	if (memchr(data, 0, size)) {
		if (rc != DM_ERR_MALFORMED)
			abort();
		free_blocks();
		return 0;
	}
	json_error_t jerror;
	json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerror);
	static struct verdict want, got;
	if (!root) {
		if (rc == DM_OK) {
			/* Only a duplicate in a place outside the shape, and
			 * then the shape must refuse. */
			if (json_error_code(&jerror) != json_error_duplicate_key)
				abort();
			shape_reader(&doc, &got);
			if (got.ok)
				abort();
		}
	} else {
		if (rc != DM_OK)
			abort();
		shape_jansson(root, &want);
		shape_reader(&doc, &got);
		compare(&want, &got);
		json_decref(root);
	}
	free_blocks();
	return 0;
}
