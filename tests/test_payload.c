/*
 * test_payload.c — decoding and checking vehicle batches against the real
 * catalog (catalog/signals.catalog; run from the repository root): both
 * forms round trip through payload_encode, every kind of refusal says why
 * without quoting the value, limits hold at limit-1, limit and limit+1, and
 * truncated input never crashes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ingest/catalog.h"
#include "ingest/payload.h"
#include "proto/batch.pb-c.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/err.h"

#define CATALOG_PATH "catalog/signals.catalog"
/* A fixed "now" for the node's clock: 2024-11-23T22:13:20Z. */
#define NOW_MS INT64_C(1732400000000)
#define TS_2000 INT64_C(946684800000)
#define DEFAULT_FUTURE_MS INT64_C(300000)

static struct catalog *catalog;
/* Default limits; what it decodes stays valid until its next decode. */
static struct payload_decoder *shared;

static int setup_catalog(void **state)
{
	char err[256];
	if (catalog_load(CATALOG_PATH, &catalog, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return payload_decoder_new(catalog, NULL, &shared) ? -1 : 0;
}

static int teardown_catalog(void **state)
{
	payload_decoder_free(shared);
	catalog_free(catalog);
	return 0;
}

static uint16_t id_of(const char *path)
{
	const struct catalog_signal *sig = catalog_find(catalog, path, strlen(path));
	if (!sig)
		fail_msg("%s not in the catalog", path);
	return sig->id;
}

static struct payload_decoder *new_decoder(size_t max_samples, int64_t max_future_ms)
{
	struct payload_limits limits = {max_samples, max_future_ms};
	struct payload_decoder *decoder;
	assert_int_equal(payload_decoder_new(catalog, &limits, &decoder), DM_OK);
	return decoder;
}

static int decode(struct payload_decoder *decoder, const void *bytes, size_t len,
		  enum payload_format format, struct payload_batch *out, char *reason)
{
	return payload_decode(decoder, bytes, len, format, NOW_MS, out, reason, 256);
}

static int decode_text(const char *json, struct payload_batch *out, char *reason)
{
	return decode(shared, json, strlen(json), PAYLOAD_AUTO, out, reason);
}

static struct sample float_sample(const char *path, int64_t ts, double value)
{
	return (struct sample){.ts_ms = ts, .signal = id_of(path), .value.num.f = value};
}

static struct sample int_sample(const char *path, int64_t ts, int64_t value)
{
	return (struct sample){.ts_ms = ts, .signal = id_of(path), .value.num.i = value};
}

static struct sample string_sample(const char *path, int64_t ts, const char *value)
{
	return (struct sample){.ts_ms = ts,
			       .signal = id_of(path),
			       .value.str = value,
			       .value.str_len = (uint32_t)strlen(value)};
}

static void assert_same_batch(const struct payload_batch *want, const struct payload_batch *got)
{
	assert_int_equal(got->seq, want->seq);
	assert_int_equal(got->count, want->count);
	for (size_t k = 0; k < want->count; k++) {
		const struct sample *a = &want->samples[k], *b = &got->samples[k];
		assert_int_equal(b->ts_ms, a->ts_ms);
		assert_int_equal(b->signal, a->signal);
		switch (catalog_get(catalog, a->signal)->type) {
		case SIG_FLOAT:
			if (a->value.num.f != b->value.num.f)
				fail_msg("sample %zu: %.17g != %.17g", k, a->value.num.f,
					 b->value.num.f);
			break;
		case SIG_INT:
		case SIG_BOOL:
			assert_int_equal(b->value.num.i, a->value.num.i);
			break;
		case SIG_STRING:
			assert_int_equal(b->value.str_len, a->value.str_len);
			assert_memory_equal(b->value.str, a->value.str, a->value.str_len);
			break;
		}
	}
}

/* A batch with every type, awkward floats, an escaped string and an empty one. */
static struct sample mixed[16];

static struct payload_batch mixed_batch(void)
{
	int64_t ts = NOW_MS - 1000;
	size_t n = 0;
	mixed[n++] = float_sample("Vehicle.Speed", ts, 72.5);
	mixed[n++] = float_sample("Vehicle.CurrentLocation.Latitude", ts, 31.230416);
	mixed[n++] = float_sample("Vehicle.CurrentLocation.Longitude", ts, 121.473701);
	mixed[n++] = float_sample("Vehicle.CurrentLocation.Altitude", ts + 1, 0.1 + 0.2);
	mixed[n++] = float_sample("Vehicle.CurrentLocation.Heading", ts + 2, 359.99999999999994);
	mixed[n++] = float_sample("Vehicle.TraveledDistance", ts + 3, 123456.789);
	mixed[n++] =
		float_sample("Vehicle.Powertrain.TractionBattery.StateOfCharge.Current", ts, 80);
	mixed[n++] = float_sample("Vehicle.Exterior.AirTemperature", ts, -12.25);
	mixed[n++] = float_sample("Vehicle.Speed", ts + 4, 4.9406564584124654e-324);
	mixed[n++] = int_sample("Vehicle.Powertrain.FuelSystem.RelativeLevel", ts, 42);
	mixed[n++] = int_sample("Vehicle.Powertrain.FuelSystem.RelativeLevel", ts + 5, 0);
	mixed[n++] = int_sample("Vehicle.IsMoving", ts, 1);
	mixed[n++] = int_sample("Vehicle.Cabin.Door.Row1.DriverSide.IsOpen", ts, 0);
	mixed[n++] = string_sample("Vehicle.OBD.DTCList", ts, "P0301");
	mixed[n++] = string_sample("Vehicle.OBD.DTCList", ts + 6, "P0\"\\~ 1");
	mixed[n++] = string_sample("Vehicle.Cabin.Infotainment.Media.Played.Source", ts, "");
	return (struct payload_batch){.seq = 17, .count = n, .samples = mixed};
}

static void test_payload_round_trips_every_type_through_json_and_protobuf(void **state)
{
	struct payload_batch want = mixed_batch();
	struct payload_decoder *decoder = new_decoder(10000, DEFAULT_FUTURE_MS);
	const enum payload_format forms[] = {PAYLOAD_JSON, PAYLOAD_PROTOBUF};
	for (size_t f = 0; f < 2; f++) {
		struct dm_buf buf = {0};
		assert_int_equal(payload_encode(catalog, &want, forms[f], &buf), DM_OK);
		struct payload_batch got;
		char reason[256];
		int rc = decode(decoder, buf.data, buf.len, forms[f], &got, reason);
		if (rc)
			fail_msg("form %d: %s", forms[f], reason);
		assert_string_equal(reason, "");
		assert_same_batch(&want, &got);
		/* AUTO tells the forms apart by themselves. */
		assert_int_equal(payload_detect(buf.data, buf.len), forms[f]);
		assert_int_equal(decode(decoder, buf.data, buf.len, PAYLOAD_AUTO, &got, reason),
				 DM_OK);
		assert_same_batch(&want, &got);
		dm_buf_free(&buf);
	}
	payload_decoder_free(decoder);
}

static void test_payload_json_encoding_is_the_documented_form(void **state)
{
	struct sample one = float_sample("Vehicle.Speed", 1732400000123, 72.5);
	struct payload_batch batch = {.seq = 17, .count = 1, .samples = &one};
	struct dm_buf buf = {0};
	assert_int_equal(dm_buf_append(&buf, "x", 1), DM_OK);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_JSON, &buf), DM_OK);
	assert_int_equal(dm_buf_append_u8(&buf, 0), DM_OK);
	assert_string_equal((const char *)buf.data,
			    "x{\"seq\":17,\"samples\":[{\"ts\":1732400000123,\"signal\":"
			    "\"Vehicle.Speed\",\"value\":72.5}]}");
	dm_buf_free(&buf);
}

static void test_payload_round_trips_the_largest_seq_and_refuses_one_more(void **state)
{
	struct sample one = float_sample("Vehicle.Speed", NOW_MS, 1);
	struct payload_batch want = {.seq = INT64_MAX, .count = 1, .samples = &one};
	struct payload_decoder *decoder = new_decoder(10, DEFAULT_FUTURE_MS);
	struct payload_batch got;
	char reason[256];
	struct dm_buf buf = {0};
	for (int format = PAYLOAD_JSON; format <= PAYLOAD_PROTOBUF; format++) {
		dm_buf_reset(&buf);
		assert_int_equal(payload_encode(catalog, &want, format, &buf), DM_OK);
		assert_int_equal(decode(decoder, buf.data, buf.len, format, &got, reason), DM_OK);
		assert_same_batch(&want, &got);
	}
	/* One more: the encoder refuses, and a protobuf batch that carries it
	 * anyway (built by hand here) is refused by the decoder. */
	want.seq = (uint64_t)INT64_MAX + 1;
	size_t len = buf.len;
	assert_int_equal(payload_encode(catalog, &want, PAYLOAD_PROTOBUF, &buf), DM_ERR_INVALID);
	assert_int_equal(buf.len, len);
	assert_int_equal(payload_encode(catalog, &want, PAYLOAD_JSON, &buf), DM_ERR_INVALID);
	static const uint8_t big_seq[] = {
		0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, /* seq 2^63 */
		0x12, 0x12, 0x08, 0xE8, 0x07, 0x12, 0x0D, 'V', 'e', 'h', 'i', 'c', 'l', 'e',
		'.', 'S', 'p', 'e', 'e', 'd'};
	assert_int_equal(decode(decoder, big_seq, sizeof big_seq, PAYLOAD_PROTOBUF, &got, reason),
			 DM_ERR_MALFORMED);
	assert_non_null(strstr(reason, "seq must be below 2^63"));
	payload_decoder_free(decoder);
	dm_buf_free(&buf);
}

static void test_payload_encode_refuses_what_it_cannot_write(void **state)
{
	struct sample nan_speed = float_sample("Vehicle.Speed", NOW_MS, NAN);
	struct payload_batch batch = {.seq = 1, .count = 1, .samples = &nan_speed};
	struct dm_buf buf = {0};
	assert_int_equal(dm_buf_append(&buf, "keep", 4), DM_OK);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_JSON, &buf), DM_ERR_INVALID);
	assert_int_equal(buf.len, 4);
	struct sample unknown = {.ts_ms = NOW_MS, .signal = UINT16_MAX};
	batch.samples = &unknown;
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_JSON, &buf), DM_ERR_INVALID);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_PROTOBUF, &buf), DM_ERR_INVALID);
	struct sample nul = {.ts_ms = NOW_MS, .signal = id_of("Vehicle.OBD.DTCList")};
	nul.value.str = "P0\0301";
	nul.value.str_len = 6;
	batch.samples = &nul;
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_PROTOBUF, &buf), DM_ERR_INVALID);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_AUTO, &buf), DM_ERR_INVALID);
	assert_int_equal(buf.len, 4);
	dm_buf_free(&buf);
}

static void test_payload_detects_json_by_its_first_non_whitespace_byte(void **state)
{
	assert_int_equal(payload_detect((const uint8_t *)"{", 1), PAYLOAD_JSON);
	assert_int_equal(payload_detect((const uint8_t *)" \t\r\n{\"seq\"", 10), PAYLOAD_JSON);
	assert_int_equal(payload_detect((const uint8_t *)"\x08\x01", 2), PAYLOAD_PROTOBUF);
	assert_int_equal(payload_detect((const uint8_t *)"[1]", 3), PAYLOAD_PROTOBUF);
	assert_int_equal(payload_detect((const uint8_t *)" \x7b", 1), PAYLOAD_PROTOBUF);
	assert_int_equal(payload_detect((const uint8_t *)"", 0), PAYLOAD_PROTOBUF);
	assert_int_equal(payload_detect(NULL, 0), PAYLOAD_PROTOBUF);
	assert_int_equal(payload_detect((const uint8_t *)"  ", 2), PAYLOAD_PROTOBUF);
	/* A vertical tab is not JSON whitespace. */
	assert_int_equal(payload_detect((const uint8_t *)"\v{", 2), PAYLOAD_PROTOBUF);
}

static void test_payload_forced_format_overrides_detection(void **state)
{
	struct payload_batch batch = mixed_batch(), got;
	struct dm_buf buf = {0};
	char reason[256];
	struct payload_decoder *decoder = new_decoder(100, DEFAULT_FUTURE_MS);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_PROTOBUF, &buf), DM_OK);
	assert_int_equal(decode(decoder, buf.data, buf.len, PAYLOAD_JSON, &got, reason),
			 DM_ERR_MALFORMED);
	dm_buf_reset(&buf);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_JSON, &buf), DM_OK);
	assert_int_equal(decode(decoder, buf.data, buf.len, PAYLOAD_PROTOBUF, &got, reason),
			 DM_ERR_MALFORMED);
	assert_int_equal(decode(decoder, buf.data, buf.len, (enum payload_format)7, &got, reason),
			 DM_ERR_INVALID);
	payload_decoder_free(decoder);
	dm_buf_free(&buf);
}

/* One JSON sample in an otherwise good batch. */
#define ONE(ts, signal, value)                                                                   \
	"{\"seq\":1,\"samples\":[{\"ts\":" ts ",\"signal\":\"" signal "\",\"value\":" value "}]}"
#define GOOD_SAMPLE "{\"ts\":1732400000000,\"signal\":\"Vehicle.Speed\",\"value\":50}"
#define TS "1732400000000"

struct refusal {
	const char *json;
	int status;
	const char *reason;
};

static const struct refusal json_refusals[] = {
	{"", DM_ERR_MALFORMED, "not valid JSON"},
	{"{", DM_ERR_MALFORMED, "not valid JSON: the input ends early at line 1"},
	{"{\"seq\":1,", DM_ERR_MALFORMED, "ends early"},
	{"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "]} x", DM_ERR_MALFORMED,
	 "more data after the batch"},
	{"{\"seq\":1,\"seq\":2,\"samples\":[" GOOD_SAMPLE "]}", DM_ERR_MALFORMED,
	 "a duplicate key"},
	{"{\"seq\":1,\"samples\":[{\"ts\":1,\"ts\":2,\"signal\":\"Vehicle.Speed\",\"value\":1}]}",
	 DM_ERR_MALFORMED, "a duplicate key"},
	{"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "],\"x\":\"\xff\"}", DM_ERR_MALFORMED,
	 "invalid UTF-8"},
	{"{\"seq\":1e999}", DM_ERR_MALFORMED, "a number out of range"},
	{"{\"seq\":99999999999999999999}", DM_ERR_MALFORMED, "a number out of range"},
	{"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "],\"x\":\"a\\u0000b\"}", DM_ERR_MALFORMED,
	 "a NUL character"},
	{"{seq:1}", DM_ERR_MALFORMED, "invalid syntax"},
	{"[" GOOD_SAMPLE "]", DM_ERR_MALFORMED, "batch: expected an object with seq and samples"},
	{"{\"samples\":[" GOOD_SAMPLE "]}", DM_ERR_MALFORMED,
	 "batch: seq must be a non-negative integer"},
	{"{\"seq\":-1,\"samples\":[" GOOD_SAMPLE "]}", DM_ERR_MALFORMED,
	 "batch: seq must be a non-negative integer"},
	{"{\"seq\":1.5,\"samples\":[" GOOD_SAMPLE "]}", DM_ERR_MALFORMED, "batch: seq must be"},
	{"{\"seq\":\"1\",\"samples\":[" GOOD_SAMPLE "]}", DM_ERR_MALFORMED, "batch: seq must be"},
	{"{\"seq\":1}", DM_ERR_MALFORMED, "batch: samples must be an array"},
	{"{\"seq\":1,\"samples\":{}}", DM_ERR_MALFORMED, "batch: samples must be an array"},
	{"{\"seq\":1,\"samples\":[]}", DM_ERR_INVALID, "batch: no samples"},
	{"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "],\"vin\":\"x\"}", DM_ERR_MALFORMED,
	 "batch: expected only the keys seq and samples"},
	{"{\"seq\":1,\"samples\":[1]}", DM_ERR_MALFORMED,
	 "sample 0: expected an object with exactly ts, signal and value"},
	{"{\"seq\":1,\"samples\":[{\"ts\":" TS ",\"signal\":\"Vehicle.Speed\"}]}", DM_ERR_MALFORMED,
	 "sample 0: expected an object with exactly ts, signal and value"},
	{"{\"seq\":1,\"samples\":[{\"ts\":" TS
	 ",\"signal\":\"Vehicle.Speed\",\"value\":1,\"u\":1}]}",
	 DM_ERR_MALFORMED, "sample 0: expected an object with exactly ts, signal and value"},
	{"{\"seq\":1,\"samples\":[{\"ts\":" TS ",\"sig\":\"Vehicle.Speed\",\"value\":1}]}",
	 DM_ERR_MALFORMED, "sample 0: expected an object with exactly ts, signal and value"},
	{ONE(TS, "Vehicle.Speed", "1") ",", DM_ERR_MALFORMED, "more data after the batch"},
	{"{\"seq\":1,\"samples\":[{\"ts\":" TS ",\"signal\":5,\"value\":1}]}", DM_ERR_MALFORMED,
	 "sample 0: signal must be a string naming a VSS path"},
	{ONE(TS, "Vehicle.Nope", "1"), DM_ERR_INVALID, "sample 0: signal not in the catalog"},
	{ONE(TS, "vehicle.speed", "1"), DM_ERR_INVALID, "sample 0: signal not in the catalog"},
	{ONE("\"" TS "\"", "Vehicle.Speed", "1"), DM_ERR_MALFORMED,
	 "sample 0 (Vehicle.Speed): ts must be an integer"},
	{ONE("1732400000000.5", "Vehicle.Speed", "1"), DM_ERR_MALFORMED,
	 "sample 0 (Vehicle.Speed): ts must be an integer"},
	{ONE("0", "Vehicle.Speed", "1"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.Speed): timestamp before 2000-01-01"},
	{ONE("-1", "Vehicle.Speed", "1"), DM_ERR_INVALID, "timestamp before 2000-01-01"},
	{ONE("1732400300001", "Vehicle.Speed", "1"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.Speed): timestamp more than 300000 ms ahead of the node's clock"},
	{ONE(TS, "Vehicle.Speed", "\"fast\""), DM_ERR_INVALID,
	 "sample 0 (Vehicle.Speed): expected a number"},
	{ONE(TS, "Vehicle.Speed", "null"), DM_ERR_INVALID, "expected a number"},
	{ONE(TS, "Vehicle.Speed", "true"), DM_ERR_INVALID, "expected a number"},
	{ONE(TS, "Vehicle.Speed", "[1]"), DM_ERR_INVALID, "expected a number"},
	{ONE(TS, "Vehicle.Speed", "400.0000001"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.Speed): above the maximum 400 km/h"},
	{ONE(TS, "Vehicle.Speed", "-51"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.Speed): below the minimum -50 km/h"},
	{ONE(TS, "Vehicle.CurrentLocation.Latitude", "90.5"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.CurrentLocation.Latitude): above the maximum 90 degrees"},
	{ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "5.5"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.Powertrain.FuelSystem.RelativeLevel): expected an integer"},
	{ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "\"5\""), DM_ERR_INVALID,
	 "expected an integer"},
	{ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "1e300"), DM_ERR_INVALID,
	 "expected an integer"},
	{ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "101"), DM_ERR_INVALID,
	 "above the maximum 100 percent"},
	{ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "-9223372036854775808"),
	 DM_ERR_INVALID, "below the minimum 0 percent"},
	{ONE(TS, "Vehicle.IsMoving", "1"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.IsMoving): expected true or false"},
	{ONE(TS, "Vehicle.IsMoving", "\"true\""), DM_ERR_INVALID, "expected true or false"},
	{ONE(TS, "Vehicle.OBD.DTCList", "301"), DM_ERR_INVALID,
	 "sample 0 (Vehicle.OBD.DTCList): expected a string"},
	{ONE(TS, "Vehicle.OBD.DTCList", "\"P0301P0301P0301PX\""), DM_ERR_INVALID,
	 "sample 0 (Vehicle.OBD.DTCList): longer than 16 bytes"},
	{ONE(TS, "Vehicle.OBD.DTCList", "\"P03\\u00010\""), DM_ERR_INVALID,
	 "sample 0 (Vehicle.OBD.DTCList): expected printable ASCII"},
	{ONE(TS, "Vehicle.OBD.DTCList", "\"P03\\u00e90\""), DM_ERR_INVALID,
	 "expected printable ASCII"},
	{ONE(TS, "Vehicle.OBD.DTCList", "\"P03\\u007f0\""), DM_ERR_INVALID,
	 "expected printable ASCII"},
	{"{\"seq\":1,\"samples\":[" GOOD_SAMPLE ","
	 "{\"ts\":" TS ",\"signal\":\"Vehicle.Speed\",\"value\":401}]}",
	 DM_ERR_INVALID, "sample 1 (Vehicle.Speed): above the maximum 400 km/h"},
};

static void test_payload_refuses_every_kind_of_bad_json_with_a_reason(void **state)
{
	for (size_t k = 0; k < sizeof json_refusals / sizeof json_refusals[0]; k++) {
		const struct refusal *r = &json_refusals[k];
		struct payload_batch got = {.seq = 99, .count = 99};
		char reason[256];
		struct payload_decoder *decoder = new_decoder(10000, DEFAULT_FUTURE_MS);
		int rc = decode(decoder, r->json, strlen(r->json), PAYLOAD_JSON, &got, reason);
		payload_decoder_free(decoder);
		if (rc != r->status || !strstr(reason, r->reason))
			fail_msg("case %zu %s\n got %d \"%s\"\n want %d \"%s\"", k, r->json, rc,
				 reason, r->status, r->reason);
		/* A refused batch leaves nothing behind. */
		assert_int_equal(got.seq, 0);
		assert_int_equal(got.count, 0);
		assert_null(got.samples);
	}
}

static void test_payload_refuses_speed_above_catalog_maximum(void **state)
{
	struct sample fast = float_sample("Vehicle.Speed", NOW_MS, 400.5);
	struct payload_batch batch = {.seq = 3, .count = 1, .samples = &fast};
	const enum payload_format forms[] = {PAYLOAD_JSON, PAYLOAD_PROTOBUF};
	for (size_t f = 0; f < 2; f++) {
		struct dm_buf buf = {0};
		assert_int_equal(payload_encode(catalog, &batch, forms[f], &buf), DM_OK);
		struct payload_batch got;
		char reason[256];
		struct payload_decoder *decoder = new_decoder(10, DEFAULT_FUTURE_MS);
		assert_int_equal(decode(decoder, buf.data, buf.len, forms[f], &got, reason),
				 DM_ERR_INVALID);
		assert_string_equal(reason, "sample 0 (Vehicle.Speed): above the maximum 400 km/h");
		payload_decoder_free(decoder);
		dm_buf_free(&buf);
	}
}

static void test_payload_accepts_the_values_json_allows_for_each_type(void **state)
{
	struct payload_batch got;
	char reason[256];
	/* An integer literal for a float signal. */
	assert_int_equal(decode_text(ONE(TS, "Vehicle.Speed", "400"), &got, reason), DM_OK);
	assert_true(got.samples[0].value.num.f == 400.0);
	/* A number without a fraction for an int signal. */
	assert_int_equal(decode_text(ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "5.0"),
				     &got, reason),
			 DM_OK);
	assert_int_equal(got.samples[0].value.num.i, 5);
	assert_int_equal(decode_text(ONE(TS, "Vehicle.IsMoving", "false"), &got, reason), DM_OK);
	assert_int_equal(got.samples[0].value.num.i, 0);
	/* Exactly 16 bytes of DTC, escapes decoded; whitespace around it all. */
	const char *spaced =
		" \n" ONE(TS, "Vehicle.OBD.DTCList", "\"P0301P0301P0\\u0041BCD\"") "\r\n";
	assert_int_equal(decode_text(spaced, &got, reason), DM_OK);
	assert_int_equal(got.samples[0].value.str_len, 16);
	assert_memory_equal(got.samples[0].value.str, "P0301P0301P0ABCD", 16);
	/* Both ends of a range are inside it. */
	assert_int_equal(decode_text(ONE(TS, "Vehicle.Speed", "-50"), &got, reason), DM_OK);
	assert_int_equal(
		decode_text(ONE(TS, "Vehicle.CurrentLocation.Heading", "360.0"), &got, reason),
		DM_OK);
	/* Key order does not matter. */
	assert_int_equal(decode_text("{\"samples\":[{\"value\":1,\"signal\":\"Vehicle.Speed\","
				     "\"ts\":" TS "}],\"seq\":0}",
				     &got, reason),
			 DM_OK);
	assert_int_equal(got.seq, 0);
}

/* A protobuf batch built field by field, for what payload_encode cannot say. */
static void pack_samples(Domicile__V1__Sample *samples, size_t count, struct dm_buf *out)
{
	Domicile__V1__Sample *ptrs[8];
	assert_true(count <= 8);
	for (size_t k = 0; k < count; k++)
		ptrs[k] = &samples[k];
	Domicile__V1__Batch batch = DOMICILE__V1__BATCH__INIT;
	batch.seq = 5;
	batch.n_samples = count;
	batch.samples = ptrs;
	dm_buf_reset(out);
	assert_int_equal(dm_buf_reserve(out, domicile__v1__batch__get_packed_size(&batch)), DM_OK);
	out->len = domicile__v1__batch__pack(&batch, out->data);
}

static Domicile__V1__Sample pb_sample(const char *signal, int64_t ts)
{
	Domicile__V1__Sample sample = DOMICILE__V1__SAMPLE__INIT;
	sample.signal = (char *)signal;
	sample.ts = ts;
	return sample;
}

static void expect_pb(Domicile__V1__Sample *samples, size_t count, int status, const char *words)
{
	struct dm_buf buf = {0};
	pack_samples(samples, count, &buf);
	struct payload_decoder *decoder = new_decoder(10, DEFAULT_FUTURE_MS);
	struct payload_batch got;
	char reason[256];
	int rc = decode(decoder, buf.data, buf.len, PAYLOAD_AUTO, &got, reason);
	if (rc != status || !strstr(reason, words))
		fail_msg("got %d \"%s\", want %d \"%s\"", rc, reason, status, words);
	payload_decoder_free(decoder);
	dm_buf_free(&buf);
}

static void test_payload_refuses_every_kind_of_bad_protobuf_with_a_reason(void **state)
{
	Domicile__V1__Sample s = pb_sample("Vehicle.Speed", NOW_MS);
	s.value_case = DOMICILE__V1__SAMPLE__VALUE_F;
	s.f = NAN;
	expect_pb(&s, 1, DM_ERR_INVALID, "sample 0 (Vehicle.Speed): expected a finite number");
	s.f = -INFINITY;
	expect_pb(&s, 1, DM_ERR_INVALID, "sample 0 (Vehicle.Speed): expected a finite number");
	s.f = 50;
	expect_pb(&s, 1, DM_OK, "");
	s.value_case = DOMICILE__V1__SAMPLE__VALUE__NOT_SET;
	expect_pb(&s, 1, DM_ERR_INVALID, "sample 0 (Vehicle.Speed): expected a number");
	s.value_case = DOMICILE__V1__SAMPLE__VALUE_S;
	s.s = "50";
	expect_pb(&s, 1, DM_ERR_INVALID, "sample 0 (Vehicle.Speed): expected a number");
	s.value_case = DOMICILE__V1__SAMPLE__VALUE_B;
	s.b = 1;
	expect_pb(&s, 1, DM_ERR_INVALID, "expected a number");
	/* sint64 for a float signal is fine, as an integer literal is in JSON. */
	s.value_case = DOMICILE__V1__SAMPLE__VALUE_I;
	s.i = -50;
	expect_pb(&s, 1, DM_OK, "");
	s.i = -51;
	expect_pb(&s, 1, DM_ERR_INVALID, "below the minimum -50 km/h");

	Domicile__V1__Sample lvl = pb_sample("Vehicle.Powertrain.FuelSystem.RelativeLevel", NOW_MS);
	lvl.value_case = DOMICILE__V1__SAMPLE__VALUE_F;
	lvl.f = 5.5;
	expect_pb(&lvl, 1, DM_ERR_INVALID, "expected an integer");
	lvl.f = NAN;
	expect_pb(&lvl, 1, DM_ERR_INVALID, "expected an integer");
	lvl.f = 100;
	expect_pb(&lvl, 1, DM_OK, "");
	lvl.value_case = DOMICILE__V1__SAMPLE__VALUE_I;
	lvl.i = INT64_MAX;
	expect_pb(&lvl, 1, DM_ERR_INVALID, "above the maximum 100 percent");

	Domicile__V1__Sample moving = pb_sample("Vehicle.IsMoving", NOW_MS);
	moving.value_case = DOMICILE__V1__SAMPLE__VALUE_I;
	moving.i = 1;
	expect_pb(&moving, 1, DM_ERR_INVALID,
		  "sample 0 (Vehicle.IsMoving): expected true or false");

	Domicile__V1__Sample dtc[2] = {pb_sample("Vehicle.OBD.DTCList", NOW_MS),
				       pb_sample("Vehicle.OBD.DTCList", NOW_MS)};
	dtc[0].value_case = dtc[1].value_case = DOMICILE__V1__SAMPLE__VALUE_S;
	dtc[0].s = "P0301";
	dtc[1].s = "P0301\t";
	expect_pb(dtc, 2, DM_ERR_INVALID, "sample 1 (Vehicle.OBD.DTCList): expected printable");
	dtc[1].s = "P0301P0301P0301PX";
	expect_pb(dtc, 2, DM_ERR_INVALID, "sample 1 (Vehicle.OBD.DTCList): longer than 16 bytes");

	Domicile__V1__Sample unknown = pb_sample("Vehicle.Secret", NOW_MS);
	expect_pb(&unknown, 1, DM_ERR_INVALID, "sample 0: signal not in the catalog");
	Domicile__V1__Sample nameless = pb_sample("", NOW_MS);
	expect_pb(&nameless, 1, DM_ERR_INVALID, "sample 0: signal not in the catalog");

	Domicile__V1__Sample old = pb_sample("Vehicle.Speed", TS_2000 - 1);
	old.value_case = DOMICILE__V1__SAMPLE__VALUE_F;
	expect_pb(&old, 1, DM_ERR_INVALID, "timestamp before 2000-01-01");
	expect_pb(NULL, 0, DM_ERR_INVALID, "batch: no samples");
}

static void test_payload_refuses_bytes_that_are_not_protobuf(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{"\x12\x05\x08", 3},                  /* samples longer than the input */
		{"\x08", 1},                          /* varint cut off */
		{"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11}, /* varint over 64 bits */
		{"\x00\x01", 2},                      /* field 0 */
		{"\x0b\x0c", 2},                      /* a group */
		{"\x0e", 1},                          /* wire type 6 */
		{"\x12\x02\x10\x01", 4},              /* signal with the varint wire type */
		{"\x12\x03\x22\x01\x80", 5},          /* signal that is not valid in the sample */
		{"\x0a\x01\x00", 3},                  /* seq as length-delimited */
	};
	struct payload_decoder *decoder = new_decoder(10, DEFAULT_FUTURE_MS);
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		struct payload_batch got;
		char reason[256];
		int rc = decode(decoder, bad[k].bytes, bad[k].len, PAYLOAD_PROTOBUF, &got, reason);
		if (rc != DM_ERR_MALFORMED || strcmp(reason, "not a valid protobuf batch") != 0)
			fail_msg("case %zu: %d \"%s\"", k, rc, reason);
		assert_int_equal(got.count, 0);
	}
	payload_decoder_free(decoder);
}

/* A batch of `count` speed samples in the given form. */
static void speed_batch(size_t count, enum payload_format format, struct dm_buf *out)
{
	struct sample samples[16];
	assert_true(count <= 16);
	for (size_t k = 0; k < count; k++)
		samples[k] = float_sample("Vehicle.Speed", NOW_MS - 100 + (int64_t)k, (double)k);
	struct payload_batch batch = {.seq = 1, .count = count, .samples = samples};
	dm_buf_reset(out);
	assert_int_equal(payload_encode(catalog, &batch, format, out), DM_OK);
}

static void test_payload_max_samples_holds_one_below_at_and_one_above(void **state)
{
	const enum payload_format forms[] = {PAYLOAD_JSON, PAYLOAD_PROTOBUF};
	struct payload_decoder *decoder = new_decoder(5, DEFAULT_FUTURE_MS);
	struct dm_buf buf = {0};
	for (size_t f = 0; f < 2; f++) {
		struct payload_batch got;
		char reason[256];
		speed_batch(4, forms[f], &buf);
		assert_int_equal(decode(decoder, buf.data, buf.len, forms[f], &got, reason), DM_OK);
		assert_int_equal(got.count, 4);
		speed_batch(5, forms[f], &buf);
		assert_int_equal(decode(decoder, buf.data, buf.len, forms[f], &got, reason), DM_OK);
		assert_int_equal(got.count, 5);
		speed_batch(6, forms[f], &buf);
		assert_int_equal(decode(decoder, buf.data, buf.len, forms[f], &got, reason),
				 DM_ERR_TOO_LARGE);
		assert_string_equal(reason, "batch: 6 samples, at most 5 allowed");
		assert_int_equal(got.count, 0);
	}
	payload_decoder_free(decoder);
	dm_buf_free(&buf);
}

static void test_payload_timestamp_bounds_hold_one_below_at_and_one_above(void **state)
{
	const int64_t future = 60000;
	const struct {
		int64_t ts;
		int status;
	} cases[] = {
		{NOW_MS + future - 1, DM_OK},
		{NOW_MS + future, DM_OK},
		{NOW_MS + future + 1, DM_ERR_INVALID},
		{TS_2000 - 1, DM_ERR_INVALID},
		{TS_2000, DM_OK},
		{TS_2000 + 1, DM_OK},
		{INT64_MAX, DM_ERR_INVALID},
		{INT64_MIN, DM_ERR_INVALID},
	};
	const enum payload_format forms[] = {PAYLOAD_JSON, PAYLOAD_PROTOBUF};
	struct payload_decoder *decoder = new_decoder(10, future);
	struct dm_buf buf = {0};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		for (size_t f = 0; f < 2; f++) {
			struct sample one = float_sample("Vehicle.Speed", cases[k].ts, 1);
			struct payload_batch batch = {.seq = 1, .count = 1, .samples = &one}, got;
			char reason[256];
			dm_buf_reset(&buf);
			assert_int_equal(payload_encode(catalog, &batch, forms[f], &buf), DM_OK);
			int rc = decode(decoder, buf.data, buf.len, forms[f], &got, reason);
			if (rc != cases[k].status)
				fail_msg("case %zu form %d: %d %s", k, forms[f], rc, reason);
		}
	}
	/* A clock near the end of time does not overflow the bound. */
	struct payload_batch got;
	char reason[256];
	speed_batch(1, PAYLOAD_PROTOBUF, &buf);
	assert_int_equal(payload_decode(decoder, buf.data, buf.len, PAYLOAD_AUTO, INT64_MAX, &got,
					reason, sizeof reason),
			 DM_OK);
	payload_decoder_free(decoder);
	dm_buf_free(&buf);
}

static void test_payload_truncated_input_at_every_length_never_crashes(void **state)
{
	struct payload_batch full = mixed_batch();
	struct payload_decoder *decoder = new_decoder(100, DEFAULT_FUTURE_MS);
	struct dm_buf buf = {0};
	assert_int_equal(payload_encode(catalog, &full, PAYLOAD_PROTOBUF, &buf), DM_OK);
	for (size_t len = 0; len < buf.len; len++) {
		/* A copy of exactly len bytes, so ASan sees any read past it. */
		uint8_t *cut = dm_malloc(len);
		assert_non_null(cut);
		memcpy(cut, buf.data, len);
		struct payload_batch got;
		char reason[256];
		int rc = decode(decoder, cut, len, PAYLOAD_PROTOBUF, &got, reason);
		/* A cut at a sample boundary is a shorter, valid batch. */
		if (rc == DM_OK)
			assert_true(got.count < full.count);
		else
			assert_true(rc == DM_ERR_MALFORMED || rc == DM_ERR_INVALID);
		rc = decode(decoder, cut, len, PAYLOAD_AUTO, &got, reason);
		assert_true(rc == DM_OK || rc == DM_ERR_MALFORMED || rc == DM_ERR_INVALID);
		dm_free(cut);
	}
	dm_buf_reset(&buf);
	assert_int_equal(payload_encode(catalog, &full, PAYLOAD_JSON, &buf), DM_OK);
	for (size_t len = 0; len < buf.len; len++) {
		uint8_t *cut = dm_malloc(len);
		assert_non_null(cut);
		memcpy(cut, buf.data, len);
		struct payload_batch got;
		char reason[256];
		assert_int_equal(decode(decoder, cut, len, PAYLOAD_JSON, &got, reason),
				 DM_ERR_MALFORMED);
		dm_free(cut);
	}
	payload_decoder_free(decoder);
	dm_buf_free(&buf);
}

static void test_payload_reasons_never_contain_the_refused_value(void **state)
{
	static const char *const inputs[] = {
		ONE(TS, "Vehicle.Speed", "987654.25"),
		ONE(TS, "Vehicle.Speed", "-987654"),
		ONE(TS, "Vehicle.Speed", "\"987654\""),
		ONE(TS, "Vehicle.Powertrain.FuelSystem.RelativeLevel", "987654.5"),
		ONE(TS, "Vehicle.IsMoving", "987654"),
		ONE(TS, "Vehicle.OBD.DTCList", "\"Q987654Q987654Q987654\""),
		ONE(TS, "Vehicle.OBD.DTCList", "\"Q987654\\u0001\""),
		ONE(TS, "Vehicle.OBD.DTCList", "987654"),
		ONE(TS, "Vehicle.Secret987654", "1"),
		ONE("9876540000000000", "Vehicle.Speed", "1"),
		ONE(TS, "Vehicle.Speed", "987654x"),
		ONE(TS, "Vehicle.Speed", "\"987654\xff\""),
		"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "],\"987654\":1}",
		"{\"seq\":1,\"samples\":[{\"ts\":" TS
		",\"signal\":\"Vehicle.Speed\",\"987654\":1}]}",
		"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "]} 987654",
		"{\"seq\":1,\"samples\":[" GOOD_SAMPLE "],\"987654\":1,\"987654\":2}",
	};
	for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
		struct payload_batch got;
		char reason[256];
		int rc = decode_text(inputs[k], &got, reason);
		assert_true(rc < 0);
		if (strstr(reason, "987654") || strstr(reason, "Secret"))
			fail_msg("case %zu: reason \"%s\" quotes the input", k, reason);
		assert_true(strlen(reason) > 0);
	}
}

static void test_payload_warm_decoder_decodes_without_allocating(void **state)
{
	struct payload_batch batch = mixed_batch(), got;
	struct dm_buf json = {0}, pb = {0};
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_JSON, &json), DM_OK);
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_PROTOBUF, &pb), DM_OK);
	struct payload_decoder *decoder = new_decoder(100, DEFAULT_FUTURE_MS);
	char reason[256];
	assert_int_equal(decode(decoder, pb.data, pb.len, PAYLOAD_AUTO, &got, reason), DM_OK);
	assert_int_equal(decode(decoder, json.data, json.len, PAYLOAD_AUTO, &got, reason), DM_OK);
	/* From here every dm_* allocation fails; jansson's own tree uses malloc. */
	dm_alloc_fail_after(0);
	for (int round = 0; round < 3; round++) {
		int rc_pb = decode(decoder, pb.data, pb.len, PAYLOAD_AUTO, &got, reason);
		int rc_json = decode(decoder, json.data, json.len, PAYLOAD_AUTO, &got, reason);
		if (rc_pb || rc_json) {
			dm_alloc_fail_after(-1);
			fail_msg("round %d: %d %d %s", round, rc_pb, rc_json, reason);
		}
	}
	dm_alloc_fail_after(-1);
	assert_same_batch(&batch, &got);
	payload_decoder_free(decoder);
	dm_buf_free(&json);
	dm_buf_free(&pb);
}

static void test_payload_decoder_grows_for_a_larger_batch_and_stays_correct(void **state)
{
	/* 3000 samples with strings spill the arena into several chunks; the
	 * next batch must start from one chunk and still decode the same. */
	enum { COUNT = 3000 };
	static struct sample many[COUNT];
	for (size_t k = 0; k < COUNT; k++) {
		int64_t ts = NOW_MS - (int64_t)k;
		many[k] = k % 2 ? string_sample("Vehicle.OBD.DTCList", ts, "P0301P0301P0301P")
				: float_sample("Vehicle.Speed", ts, (double)k / 10);
	}
	struct payload_batch want = {.seq = 9, .count = COUNT, .samples = many}, got;
	struct payload_decoder *decoder = new_decoder(COUNT, DEFAULT_FUTURE_MS);
	const enum payload_format forms[] = {PAYLOAD_PROTOBUF, PAYLOAD_JSON};
	for (size_t f = 0; f < 2; f++) {
		struct dm_buf buf = {0};
		assert_int_equal(payload_encode(catalog, &want, forms[f], &buf), DM_OK);
		for (int round = 0; round < 3; round++) {
			char reason[256];
			assert_int_equal(decode(decoder, buf.data, buf.len, forms[f], &got, reason),
					 DM_OK);
			assert_same_batch(&want, &got);
		}
		dm_buf_free(&buf);
	}
	payload_decoder_free(decoder);
}

static void test_payload_survives_every_allocation_failure(void **state)
{
	struct payload_batch batch = mixed_batch();
	const enum payload_format forms[] = {PAYLOAD_JSON, PAYLOAD_PROTOBUF};
	for (size_t f = 0; f < 2; f++) {
		struct dm_buf buf = {0};
		assert_int_equal(payload_encode(catalog, &batch, forms[f], &buf), DM_OK);
		int rc = DM_ERR_NOMEM;
		for (long budget = 0; rc == DM_ERR_NOMEM; budget++) {
			assert_true(budget < 100);
			struct payload_decoder *decoder = NULL;
			struct payload_batch got = {0};
			char reason[256];
			dm_alloc_fail_after(budget);
			rc = payload_decoder_new(catalog, NULL, &decoder);
			if (rc == DM_OK)
				rc = decode(decoder, buf.data, buf.len, forms[f], &got, reason);
			dm_alloc_fail_after(-1);
			if (rc == DM_ERR_NOMEM)
				assert_int_equal(got.count, 0);
			payload_decoder_free(decoder);
		}
		assert_int_equal(rc, DM_OK);
		/* Encoding recovers too, and leaves the buffer as it was. */
		rc = DM_ERR_NOMEM;
		for (long budget = 0; rc == DM_ERR_NOMEM; budget++) {
			assert_true(budget < 100);
			struct dm_buf again = {0};
			dm_alloc_fail_after(budget);
			rc = payload_encode(catalog, &batch, forms[f], &again);
			dm_alloc_fail_after(-1);
			if (rc == DM_ERR_NOMEM)
				assert_int_equal(again.len, 0);
			else
				assert_memory_equal(again.data, buf.data, buf.len);
			dm_buf_free(&again);
		}
		dm_buf_free(&buf);
	}
}

static void test_payload_decoder_refuses_impossible_limits(void **state)
{
	struct payload_decoder *decoder = (struct payload_decoder *)1;
	struct payload_limits none = {0, 1000};
	assert_int_equal(payload_decoder_new(catalog, &none, &decoder), DM_ERR_INVALID);
	assert_null(decoder);
	struct payload_limits past = {10, -1};
	assert_int_equal(payload_decoder_new(catalog, &past, &decoder), DM_ERR_INVALID);
	assert_int_equal(payload_decoder_new(NULL, NULL, &decoder), DM_ERR_INVALID);
	payload_decoder_free(NULL);

	/* NULL limits are the documented defaults: 10000 samples, 5 minutes. */
	assert_int_equal(payload_decoder_new(catalog, NULL, &decoder), DM_OK);
	struct payload_batch got;
	char reason[256];
	const char *late = ONE("1732400300000", "Vehicle.Speed", "1");
	assert_int_equal(decode(decoder, late, strlen(late), PAYLOAD_AUTO, &got, reason), DM_OK);
	const char *later = ONE("1732400300001", "Vehicle.Speed", "1");
	assert_int_equal(decode(decoder, later, strlen(later), PAYLOAD_AUTO, &got, reason),
			 DM_ERR_INVALID);
	payload_decoder_free(decoder);
}

static void test_payload_reason_is_truncated_safely_or_skipped(void **state)
{
	struct payload_decoder *decoder = new_decoder(10, DEFAULT_FUTURE_MS);
	const char *json = ONE(TS, "Vehicle.Speed", "401");
	struct payload_batch got;
	char reason[10];
	memset(reason, 'x', sizeof reason);
	assert_int_equal(payload_decode(decoder, (const uint8_t *)json, strlen(json), PAYLOAD_AUTO,
					NOW_MS, &got, reason, sizeof reason),
			 DM_ERR_INVALID);
	assert_string_equal(reason, "sample 0 ");
	assert_int_equal(payload_decode(decoder, (const uint8_t *)json, strlen(json), PAYLOAD_AUTO,
					NOW_MS, &got, NULL, 0),
			 DM_ERR_INVALID);
	payload_decoder_free(decoder);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_round_trips_every_type_through_json_and_protobuf),
		cmocka_unit_test(test_payload_json_encoding_is_the_documented_form),
		cmocka_unit_test(test_payload_round_trips_the_largest_seq_and_refuses_one_more),
		cmocka_unit_test(test_payload_encode_refuses_what_it_cannot_write),
		cmocka_unit_test(test_payload_detects_json_by_its_first_non_whitespace_byte),
		cmocka_unit_test(test_payload_forced_format_overrides_detection),
		cmocka_unit_test(test_payload_refuses_every_kind_of_bad_json_with_a_reason),
		cmocka_unit_test(test_payload_refuses_speed_above_catalog_maximum),
		cmocka_unit_test(test_payload_accepts_the_values_json_allows_for_each_type),
		cmocka_unit_test(test_payload_refuses_every_kind_of_bad_protobuf_with_a_reason),
		cmocka_unit_test(test_payload_refuses_bytes_that_are_not_protobuf),
		cmocka_unit_test(test_payload_max_samples_holds_one_below_at_and_one_above),
		cmocka_unit_test(test_payload_timestamp_bounds_hold_one_below_at_and_one_above),
		cmocka_unit_test(test_payload_truncated_input_at_every_length_never_crashes),
		cmocka_unit_test(test_payload_reasons_never_contain_the_refused_value),
		cmocka_unit_test(test_payload_warm_decoder_decodes_without_allocating),
		cmocka_unit_test(test_payload_decoder_grows_for_a_larger_batch_and_stays_correct),
		cmocka_unit_test(test_payload_survives_every_allocation_failure),
		cmocka_unit_test(test_payload_decoder_refuses_impossible_limits),
		cmocka_unit_test(test_payload_reason_is_truncated_safely_or_skipped),
	};
	return cmocka_run_group_tests(tests, setup_catalog, teardown_catalog);
}
