/*
 * payload.c — a vehicle's batch, JSON or protobuf, into checked samples.
 *
 * Forms owned here (payload.h says how they are told apart):
 *
 *   JSON   one object with exactly two keys, no duplicates:
 *            {"seq": N, "samples": [S, ...]}
 *          N an integer 0 .. 2^63-1 (an int64, as JSON is read in
 *          json_batch.c, whose grammar this is); samples an
 *          array of 1 .. max_samples objects, each with exactly three keys:
 *            {"ts": MS, "signal": "PATH", "value": V}
 *          MS an integer; V a number for float signals (an integer literal is
 *          fine), an integer for int signals (a number with a fraction is
 *          refused; 5.0 is taken as 5), true or false for bool signals, a
 *          string for string signals.
 *
 *   protobuf  domicile.v1.Batch of proto/batch.proto: seq = 1 (varint),
 *          samples = 2 (length-delimited Sample, repeated); in Sample ts = 1,
 *          signal = 2, and one of f = 3 (double), i = 4 (sint64), b = 5,
 *          s = 6. Unknown fields are skipped, as protobuf intends. proto3 has
 *          no presence, so a missing seq reads as 0. Value kinds follow the
 *          JSON rules: i is fine for a float signal, an integral f for an int.
 *
 * Both forms end in the same checks (check_sample): signal in the catalog,
 * ts in [2000-01-01, now + max_future_ms], value of the catalog's type,
 * finite, within [min, max], strings no longer than max and printable ASCII.
 *
 * Invariants:
 *  1. Memory handed out by payload_decode (samples, string values) lives in
 *     the decoder: samples[] and the arena. Both are reused: the arena is
 *     reset, and samples[] overwritten, at the start of the next decode.
 *  2. Once warm, decoding allocates nothing: samples[] only grows
 *     (geometrically, never past max_samples entries), and the arena, after a
 *     batch that needed more than one chunk, starts the next batch with one
 *     chunk as large as all of them together. protobuf-c allocates only from
 *     the arena; the JSON reader (json_batch.c) keeps item records that grow
 *     like samples[], and takes only escaped strings and very long numbers
 *     from the arena.
 *  3. The number of samples is checked before anything is allocated for
 *     them: for protobuf by a scan of the top-level fields before unpacking,
 *     for JSON on the array size before samples[] grows (the reader keeps
 *     records of at most max_samples elements and only counts the rest).
 *  4. On failure *out is empty and the reason names the sample index, the
 *     catalog's path and what was expected, never the value sent, nor a path
 *     that is not in the catalog (both come from the vehicle).
 */
#include "ingest/payload.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/json_batch.h"
#include "proto/batch.pb-c.h"
#include "util/alloc.h"
#include "util/cursor.h"
#include "util/err.h"

#define DEFAULT_MAX_SAMPLES 10000
#define DEFAULT_MAX_FUTURE_MS 300000
/* 2000-01-01T00:00:00Z: older timestamps are a vehicle clock that never set. */
#define TS_MIN_MS INT64_C(946684800000)
/* Integers beyond 2^53 are not exact as doubles. */
#define MAX_EXACT_INT 9007199254740992.0

/* ------------------------------------------------------------------------ */
/* Arena: bump allocation for protobuf-c and copied strings, reset per batch. */

#define ARENA_ALIGN _Alignof(max_align_t)
#define ARENA_FIRST (64u << 10)
/* A batch that needed more than this (only possible with a very large MQTT
 * packet limit) does not keep it: the next batch starts small again. */
#define ARENA_RETAIN (16u << 20)

struct arena_chunk {
	struct arena_chunk *next;
	size_t cap; /* usable bytes after the header */
	size_t used;
};

#define CHUNK_HEADER ((sizeof(struct arena_chunk) + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1))

struct arena {
	struct arena_chunk *head; /* the chunk being filled; older ones follow */
	size_t first;             /* size of the chunk a batch starts with */
	int failed;               /* an allocation failed since the last reset */
};

static void *arena_alloc(struct arena *arena, size_t size)
{
	if (size > SIZE_MAX / 4) {
		arena->failed = 1;
		return NULL;
	}
	size = (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
	struct arena_chunk *chunk = arena->head;
	if (!chunk || size > chunk->cap - chunk->used) {
		size_t cap = chunk ? chunk->cap * 2 : arena->first;
		if (cap < size)
			cap = size;
		chunk = dm_malloc(CHUNK_HEADER + cap);
		if (!chunk) {
			arena->failed = 1;
			return NULL;
		}
		chunk->next = arena->head;
		chunk->cap = cap;
		chunk->used = 0;
		arena->head = chunk;
	}
	void *at = (char *)chunk + CHUNK_HEADER + chunk->used;
	chunk->used += size;
	return at;
}

static void arena_free_all(struct arena *arena)
{
	while (arena->head) {
		struct arena_chunk *next = arena->head->next;
		dm_free(arena->head);
		arena->head = next;
	}
}

static void arena_reset(struct arena *arena)
{
	arena->failed = 0;
	struct arena_chunk *head = arena->head;
	if (!head)
		return;
	if (!head->next && head->cap <= ARENA_RETAIN) {
		head->used = 0;
		return;
	}
	/* Several chunks: replace them by one as large as all together, made
	 * on the next allocation, so the next batch of this size needs one. */
	size_t total = 0;
	for (struct arena_chunk *chunk = head; chunk; chunk = chunk->next)
		total += chunk->cap;
	arena_free_all(arena);
	arena->first = total <= ARENA_RETAIN ? total : ARENA_FIRST;
}

static void *pb_alloc(void *data, size_t size) { return arena_alloc(data, size); }

/* Arena memory goes all at once in arena_reset. */
static void pb_free(void *data, void *pointer) {}

/* ------------------------------------------------------------------------ */

struct payload_decoder {
	const struct catalog *catalog;
	struct payload_limits limits;
	struct sample *samples; /* samples_cap entries (invariant 2) */
	size_t samples_cap;
	struct arena arena;
	ProtobufCAllocator pb_allocator;
	struct json_batch_reader *json; /* its item records: max_samples at most */
};

int payload_decoder_new(const struct catalog *catalog, const struct payload_limits *limits,
			struct payload_decoder **out)
{
	*out = NULL;
	struct payload_limits use = {DEFAULT_MAX_SAMPLES, DEFAULT_MAX_FUTURE_MS};
	if (limits)
		use = *limits;
	if (!catalog || use.max_samples == 0 || use.max_future_ms < 0)
		return DM_ERR_INVALID;
	struct payload_decoder *decoder = dm_calloc(1, sizeof *decoder);
	if (!decoder)
		return DM_ERR_NOMEM;
	decoder->catalog = catalog;
	decoder->limits = use;
	decoder->arena.first = ARENA_FIRST;
	decoder->pb_allocator.alloc = pb_alloc;
	decoder->pb_allocator.free = pb_free;
	decoder->pb_allocator.allocator_data = &decoder->arena;
	int rc = json_batch_reader_new(use.max_samples, pb_alloc, &decoder->arena, &decoder->json);
	if (rc) {
		dm_free(decoder);
		return rc;
	}
	*out = decoder;
	return DM_OK;
}

void payload_decoder_free(struct payload_decoder *decoder)
{
	if (!decoder)
		return;
	arena_free_all(&decoder->arena);
	json_batch_reader_free(decoder->json);
	dm_free(decoder->samples);
	dm_free(decoder);
}

static int reserve_samples(struct payload_decoder *decoder, size_t count)
{
	if (count <= decoder->samples_cap)
		return DM_OK;
	size_t cap = decoder->samples_cap ? decoder->samples_cap : 64;
	while (cap < count)
		cap *= 2;
	if (cap > decoder->limits.max_samples)
		cap = decoder->limits.max_samples;
	struct sample *samples = dm_realloc(decoder->samples, cap * sizeof *samples);
	if (!samples)
		return DM_ERR_NOMEM;
	decoder->samples = samples;
	decoder->samples_cap = cap;
	return DM_OK;
}

enum payload_format payload_detect(const uint8_t *bytes, size_t len)
{
	for (size_t k = 0; k < len; k++) {
		uint8_t c = bytes[k];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		return c == '{' ? PAYLOAD_JSON : PAYLOAD_PROTOBUF;
	}
	return PAYLOAD_PROTOBUF;
}

/* Writes the reason and returns status, so refusals read `return refuse(...)`. */
static int refuse(char *reason, size_t reason_len, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(char *reason, size_t reason_len, int status, const char *fmt, ...)
{
	if (reason && reason_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(reason, reason_len, fmt, ap);
		va_end(ap);
	}
	return status;
}

/* ------------------------------------------------------------------------ */
/* The checks both forms share. */

enum raw_kind { RAW_NONE, RAW_INT, RAW_REAL, RAW_BOOL, RAW_STRING };

/* A value as the sender typed it, before the catalog says what it must be. */
struct raw_value {
	enum raw_kind kind;
	int64_t i; /* RAW_INT; RAW_BOOL as 0 or 1 */
	double f;  /* RAW_REAL */
	const char *str;
	size_t len; /* RAW_STRING */
};

/* What one sample is checked against. */
struct sample_rules {
	int64_t ts_max;
	int64_t max_future_ms;
	char *reason;
	size_t reason_len;
};

static const char *unit_sep(const struct catalog_signal *sig) { return sig->unit[0] ? " " : ""; }

static int check_range(const struct sample_rules *rules, size_t index,
		       const struct catalog_signal *sig, double value)
{
	if (value < sig->min)
		return refuse(rules->reason, rules->reason_len, DM_ERR_INVALID,
			      "sample %zu (%s): below the minimum %.15g%s%s", index, sig->path,
			      sig->min, unit_sep(sig), sig->unit);
	if (value > sig->max)
		return refuse(rules->reason, rules->reason_len, DM_ERR_INVALID,
			      "sample %zu (%s): above the maximum %.15g%s%s", index, sig->path,
			      sig->max, unit_sep(sig), sig->unit);
	return DM_OK;
}

static int printable_ascii(const char *str, size_t len)
{
	for (size_t k = 0; k < len; k++)
		if ((uint8_t)str[k] < 0x20 || (uint8_t)str[k] > 0x7e)
			return 0;
	return 1;
}

/* Checks one sample whose signal was found in the catalog and fills *out.
 * A string value is left pointing at the sender's bytes. */
static int check_sample(const struct sample_rules *rules, size_t index,
			const struct catalog_signal *sig, int64_t ts, const struct raw_value *raw,
			struct sample *out)
{
	char *reason = rules->reason;
	size_t reason_len = rules->reason_len;
	if (ts < TS_MIN_MS)
		return refuse(reason, reason_len, DM_ERR_INVALID,
			      "sample %zu (%s): timestamp before 2000-01-01", index, sig->path);
	if (ts > rules->ts_max)
		return refuse(reason, reason_len, DM_ERR_INVALID,
			      "sample %zu (%s): timestamp more than %" PRId64
			      " ms ahead of the node's clock",
			      index, sig->path, rules->max_future_ms);

	*out = (struct sample){.ts_ms = ts, .signal = sig->id};
	switch (sig->type) {
	case SIG_FLOAT:
		if (raw->kind == RAW_INT)
			out->value.num.f = (double)raw->i;
		else if (raw->kind == RAW_REAL)
			out->value.num.f = raw->f;
		else
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): expected a number", index, sig->path);
		if (!isfinite(out->value.num.f))
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): expected a finite number", index,
				      sig->path);
		return check_range(rules, index, sig, out->value.num.f);
	case SIG_INT:
		if (raw->kind == RAW_INT)
			out->value.num.i = raw->i;
		else if (raw->kind == RAW_REAL && raw->f == trunc(raw->f) &&
			 fabs(raw->f) <= MAX_EXACT_INT)
			out->value.num.i = (int64_t)raw->f;
		else
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): expected an integer", index, sig->path);
		/* The bounds are exact integers (catalog.c), so comparing as
		 * doubles gives the same answer as comparing as integers. */
		return check_range(rules, index, sig, (double)out->value.num.i);
	case SIG_BOOL:
		if (raw->kind != RAW_BOOL)
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): expected true or false", index, sig->path);
		out->value.num.i = raw->i;
		return DM_OK;
	case SIG_STRING:
		if (raw->kind != RAW_STRING)
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): expected a string", index, sig->path);
		if ((double)raw->len > sig->max)
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): longer than %.15g bytes", index, sig->path,
				      sig->max);
		if (!printable_ascii(raw->str, raw->len))
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu (%s): expected printable ASCII", index,
				      sig->path);
		out->value.str = raw->str;
		out->value.str_len = (uint32_t)raw->len;
		return DM_OK;
	}
	return refuse(reason, reason_len, DM_ERR_INVALID, "sample %zu (%s): unknown signal type",
		      index, sig->path);
}

/* ------------------------------------------------------------------------ */
/* JSON */

static void json_raw(const struct json_batch_scalar *value, struct raw_value *raw)
{
	*raw = (struct raw_value){.kind = RAW_NONE};
	switch (value->kind) {
	case JSON_BATCH_INT:
		raw->kind = RAW_INT;
		raw->i = value->i;
		break;
	case JSON_BATCH_REAL:
		raw->kind = RAW_REAL;
		raw->f = value->f;
		break;
	case JSON_BATCH_BOOL:
		raw->kind = RAW_BOOL;
		raw->i = value->i;
		break;
	case JSON_BATCH_STRING:
		raw->kind = RAW_STRING;
		raw->str = value->str;
		raw->len = value->len;
		break;
	default:
		break;
	}
}

static int json_sample(struct payload_decoder *decoder, const struct sample_rules *rules,
		       size_t index, const struct json_batch_item *item, struct sample *out)
{
	char *reason = rules->reason;
	size_t reason_len = rules->reason_len;
	if (item->kind != JSON_BATCH_OBJECT || item->other_keys ||
	    item->ts.kind == JSON_BATCH_ABSENT || item->signal.kind == JSON_BATCH_ABSENT ||
	    item->value.kind == JSON_BATCH_ABSENT)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "sample %zu: expected an object with exactly ts, signal and value",
			      index);
	if (item->signal.kind != JSON_BATCH_STRING)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "sample %zu: signal must be a string naming a VSS path", index);
	const struct catalog_signal *sig =
		catalog_find(decoder->catalog, item->signal.str, item->signal.len);
	if (!sig)
		return refuse(reason, reason_len, DM_ERR_INVALID,
			      "sample %zu: signal not in the catalog", index);
	if (item->ts.kind != JSON_BATCH_INT)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "sample %zu (%s): ts must be an integer (ms since 1970, UTC)", index,
			      sig->path);
	struct raw_value raw;
	json_raw(&item->value, &raw);
	int rc = check_sample(rules, index, sig, item->ts.i, &raw, out);
	if (rc == DM_OK && sig->type == SIG_STRING) {
		/* An unescaped string points into the caller's bytes: it moves
		 * to the arena, where it lives until the next decode as
		 * payload.h promises (invariant 1). At most the catalog's
		 * maximum length, so the copy is small. */
		char *copy = arena_alloc(&decoder->arena, raw.len);
		if (!copy)
			return refuse(reason, reason_len, DM_ERR_NOMEM, "out of memory");
		if (raw.len)
			memcpy(copy, raw.str, raw.len);
		out->value.str = copy;
	}
	return rc;
}

/* Line and column (both from 1, the column in bytes) of an offset. */
static void line_column(const uint8_t *bytes, size_t offset, size_t *line, size_t *column)
{
	size_t line_start = 0;
	*line = 1;
	for (size_t k = 0; k < offset; k++) {
		if (bytes[k] == '\n') {
			(*line)++;
			line_start = k + 1;
		}
	}
	*column = offset - line_start + 1;
}

static int decode_json(struct payload_decoder *decoder, const struct sample_rules *rules,
		       const uint8_t *bytes, size_t len, struct payload_batch *out)
{
	char *reason = rules->reason;
	size_t reason_len = rules->reason_len;
	struct json_batch doc;
	struct json_batch_error error;
	int rc = json_batch_read(decoder->json, bytes, len, &doc, &error);
	if (rc == DM_ERR_NOMEM)
		return refuse(reason, reason_len, DM_ERR_NOMEM, "out of memory");
	if (rc) {
		/* Position and what the grammar wanted only, never the bytes
		 * found: they may be a value (invariant 4). */
		size_t line, column;
		line_column(bytes, error.offset, &line, &column);
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "not valid JSON: %s at line %zu, column %zu (byte %zu): expected %s",
			      error.problem, line, column, error.offset, error.expected);
	}
	/* The checks, and their order, are those of the batch as a whole
	 * first, then of each sample in turn. */
	if (doc.kind != JSON_BATCH_OBJECT)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "batch: expected an object with seq and samples");
	if (doc.seq.kind != JSON_BATCH_INT || doc.seq.i < 0)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "batch: seq must be a non-negative integer");
	if (doc.samples_kind != JSON_BATCH_ARRAY)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "batch: samples must be an array");
	if (doc.other_keys)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "batch: expected only the keys seq and samples");
	size_t count = doc.count;
	if (count > decoder->limits.max_samples)
		return refuse(reason, reason_len, DM_ERR_TOO_LARGE,
			      "batch: %zu samples, at most %zu allowed", count,
			      decoder->limits.max_samples);
	if (count == 0)
		return refuse(reason, reason_len, DM_ERR_INVALID, "batch: no samples");
	if (reserve_samples(decoder, count))
		return refuse(reason, reason_len, DM_ERR_NOMEM, "out of memory");
	for (size_t k = 0; k < count; k++) {
		rc = json_sample(decoder, rules, k, &doc.items[k], &decoder->samples[k]);
		if (rc)
			return rc;
	}
	out->seq = (uint64_t)doc.seq.i;
	out->count = count;
	out->samples = decoder->samples;
	return DM_OK;
}

/* ------------------------------------------------------------------------ */
/* protobuf */

static int read_varint(struct dm_cursor *cur, uint64_t *out)
{
	uint64_t value = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t byte;
		if (dm_cursor_u8(cur, &byte))
			return DM_ERR_MALFORMED;
		/* The tenth byte holds only bit 63: anything more overflows. */
		if (shift == 63 && byte > 1)
			return DM_ERR_MALFORMED;
		value |= (uint64_t)(byte & 0x7f) << shift;
		if (!(byte & 0x80)) {
			*out = value;
			return DM_OK;
		}
	}
	return DM_ERR_MALFORMED;
}

/* Counts the samples (field 2) of a Batch by walking its top-level fields,
 * so that the limit is checked before protobuf-c allocates (invariant 3). */
static int count_pb_samples(const uint8_t *bytes, size_t len, size_t *count)
{
	struct dm_cursor cur = dm_cursor_make(bytes, len);
	const uint8_t *skipped;
	*count = 0;
	while (dm_cursor_left(&cur)) {
		uint64_t tag, value;
		if (read_varint(&cur, &tag) || tag >> 3 == 0)
			return DM_ERR_MALFORMED;
		switch (tag & 7) {
		case 0:
			if (read_varint(&cur, &value))
				return DM_ERR_MALFORMED;
			break;
		case 1:
			if (dm_cursor_take(&cur, 8, &skipped))
				return DM_ERR_MALFORMED;
			break;
		case 2:
			if (read_varint(&cur, &value) || value > dm_cursor_left(&cur) ||
			    dm_cursor_take(&cur, (size_t)value, &skipped))
				return DM_ERR_MALFORMED;
			if (tag >> 3 == 2)
				(*count)++;
			break;
		case 5:
			if (dm_cursor_take(&cur, 4, &skipped))
				return DM_ERR_MALFORMED;
			break;
		default: /* groups (3, 4) are not in our schema; 6, 7 do not exist */
			return DM_ERR_MALFORMED;
		}
	}
	return DM_OK;
}

static void pb_raw(const Domicile__V1__Sample *msg, struct raw_value *raw)
{
	*raw = (struct raw_value){.kind = RAW_NONE};
	switch (msg->value_case) {
	case DOMICILE__V1__SAMPLE__VALUE_F:
		raw->kind = RAW_REAL;
		raw->f = msg->f;
		break;
	case DOMICILE__V1__SAMPLE__VALUE_I:
		raw->kind = RAW_INT;
		raw->i = msg->i;
		break;
	case DOMICILE__V1__SAMPLE__VALUE_B:
		raw->kind = RAW_BOOL;
		raw->i = msg->b ? 1 : 0;
		break;
	case DOMICILE__V1__SAMPLE__VALUE_S:
		raw->kind = RAW_STRING;
		raw->str = msg->s;
		/* protobuf-c hands strings out NUL-terminated without their
		 * length; one with a NUL inside reads as cut short there. */
		raw->len = strlen(msg->s);
		break;
	default:
		break;
	}
}

static int decode_pb(struct payload_decoder *decoder, const struct sample_rules *rules,
		     const uint8_t *bytes, size_t len, struct payload_batch *out)
{
	char *reason = rules->reason;
	size_t reason_len = rules->reason_len;
	size_t count;
	if (count_pb_samples(bytes, len, &count))
		return refuse(reason, reason_len, DM_ERR_MALFORMED, "not a valid protobuf batch");
	if (count > decoder->limits.max_samples)
		return refuse(reason, reason_len, DM_ERR_TOO_LARGE,
			      "batch: %zu samples, at most %zu allowed", count,
			      decoder->limits.max_samples);
	if (reserve_samples(decoder, count))
		return refuse(reason, reason_len, DM_ERR_NOMEM, "out of memory");

	/* Everything protobuf-c allocates is in the arena; nothing to free. */
	Domicile__V1__Batch *msg = domicile__v1__batch__unpack(&decoder->pb_allocator, len, bytes);
	if (!msg) {
		if (decoder->arena.failed)
			return refuse(reason, reason_len, DM_ERR_NOMEM, "out of memory");
		return refuse(reason, reason_len, DM_ERR_MALFORMED, "not a valid protobuf batch");
	}
	if (msg->n_samples != count) /* ALWAYS: the scan saw what protobuf-c saw */
		return refuse(reason, reason_len, DM_ERR_MALFORMED, "not a valid protobuf batch");
	/* The JSON form cannot carry more, and the store keeps seqs as int64. */
	if (msg->seq > INT64_MAX)
		return refuse(reason, reason_len, DM_ERR_MALFORMED,
			      "batch: seq must be below 2^63");
	if (count == 0)
		return refuse(reason, reason_len, DM_ERR_INVALID, "batch: no samples");
	for (size_t k = 0; k < count; k++) {
		const Domicile__V1__Sample *item = msg->samples[k];
		const struct catalog_signal *sig =
			catalog_find(decoder->catalog, item->signal, strlen(item->signal));
		if (!sig)
			return refuse(reason, reason_len, DM_ERR_INVALID,
				      "sample %zu: signal not in the catalog", k);
		struct raw_value raw;
		pb_raw(item, &raw);
		int rc = check_sample(rules, k, sig, item->ts, &raw, &decoder->samples[k]);
		if (rc)
			return rc;
	}
	out->seq = msg->seq;
	out->count = count;
	out->samples = decoder->samples;
	return DM_OK;
}

/* ------------------------------------------------------------------------ */

int payload_decode(struct payload_decoder *decoder, const uint8_t *bytes, size_t len,
		   enum payload_format format, int64_t now_ms, struct payload_batch *out,
		   char *reason, size_t reason_len)
{
	*out = (struct payload_batch){0};
	if (reason && reason_len)
		reason[0] = '\0';
	arena_reset(&decoder->arena);

	int64_t future = decoder->limits.max_future_ms;
	struct sample_rules rules = {
		.ts_max = now_ms > INT64_MAX - future ? INT64_MAX : now_ms + future,
		.max_future_ms = future,
		.reason = reason,
		.reason_len = reason_len,
	};
	if (format == PAYLOAD_AUTO)
		format = payload_detect(bytes, len);
	int rc;
	if (format == PAYLOAD_JSON)
		rc = decode_json(decoder, &rules, bytes, len, out);
	else if (format == PAYLOAD_PROTOBUF)
		rc = decode_pb(decoder, &rules, bytes, len, out);
	else
		rc = refuse(reason, reason_len, DM_ERR_INVALID, "unknown payload format");
	if (rc)
		*out = (struct payload_batch){0};
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Encoding */

static int put(struct dm_buf *out, const char *text, size_t len)
{
	return dm_buf_append(out, text, len);
}

#define PUT_LITERAL(out, text) put((out), (text), sizeof(text) - 1)

static int put_json_string(struct dm_buf *out, const char *str, size_t len)
{
	int rc = dm_buf_reserve(out, len + 2);
	if (rc)
		return rc;
	rc = PUT_LITERAL(out, "\"");
	size_t run = 0; /* bytes that need no escape, written in one go */
	for (size_t k = 0; k < len && rc == DM_OK; k++) {
		uint8_t c = (uint8_t)str[k];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		rc = put(out, str + run, k - run);
		char esc[8];
		int n = c == '"' || c == '\\' ? snprintf(esc, sizeof esc, "\\%c", c)
					      : snprintf(esc, sizeof esc, "\\u%04x", c);
		if (rc == DM_OK)
			rc = put(out, esc, (size_t)n);
		run = k + 1;
	}
	if (rc == DM_OK)
		rc = put(out, str + run, len - run);
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, "\"");
	return rc;
}

/* A double as the shortest of %.15g, %.16g, %.17g that reads back as the same
 * double (%.17g always does): "31.2304", not "31.230399999999999". The node
 * never calls setlocale, but a ',' decimal point from a caller who did is
 * turned back into JSON's '.'. */
static int put_json_double(struct dm_buf *out, double value)
{
	char text[40];
	int n = 0;
	for (int digits = 15; digits <= 17; digits++) {
		n = snprintf(text, sizeof text, "%.*g", digits, value);
		if (digits == 17 || strtod(text, NULL) == value)
			break;
	}
	for (int k = 0; k < n; k++)
		if (text[k] == ',')
			text[k] = '.';
	return put(out, text, (size_t)n);
}

static int encode_json_sample(const struct catalog *catalog, const struct sample *sample,
			      struct dm_buf *out)
{
	const struct catalog_signal *sig = catalog_get(catalog, sample->signal);
	if (!sig)
		return DM_ERR_INVALID;
	if (sig->type == SIG_FLOAT && !isfinite(sample->value.num.f))
		return DM_ERR_INVALID; /* JSON has no NaN or infinity */
	char num[32];
	int n = snprintf(num, sizeof num, "%" PRId64, sample->ts_ms);
	int rc = PUT_LITERAL(out, "{\"ts\":");
	if (rc == DM_OK)
		rc = put(out, num, (size_t)n);
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, ",\"signal\":");
	if (rc == DM_OK)
		rc = put_json_string(out, sig->path, strlen(sig->path));
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, ",\"value\":");
	if (rc)
		return rc;
	switch (sig->type) {
	case SIG_FLOAT:
		rc = put_json_double(out, sample->value.num.f);
		break;
	case SIG_INT:
		n = snprintf(num, sizeof num, "%" PRId64, sample->value.num.i);
		rc = put(out, num, (size_t)n);
		break;
	case SIG_BOOL:
		rc = sample->value.num.i ? PUT_LITERAL(out, "true") : PUT_LITERAL(out, "false");
		break;
	case SIG_STRING:
		rc = put_json_string(out, sample->value.str ? sample->value.str : "",
				     sample->value.str_len);
		break;
	}
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, "}");
	return rc;
}

static int encode_json(const struct catalog *catalog, const struct payload_batch *batch,
		       struct dm_buf *out)
{
	/* A sample is about 70 bytes; one reservation saves most regrowth. */
	int rc = dm_buf_reserve(out, 32 + batch->count * 72);
	char num[32];
	int n = snprintf(num, sizeof num, "%" PRIu64, batch->seq);
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, "{\"seq\":");
	if (rc == DM_OK)
		rc = put(out, num, (size_t)n);
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, ",\"samples\":[");
	for (size_t k = 0; k < batch->count && rc == DM_OK; k++) {
		if (k > 0)
			rc = PUT_LITERAL(out, ",");
		if (rc == DM_OK)
			rc = encode_json_sample(catalog, &batch->samples[k], out);
	}
	if (rc == DM_OK)
		rc = PUT_LITERAL(out, "]}");
	return rc;
}

static int encode_pb(const struct catalog *catalog, const struct payload_batch *batch,
		     struct dm_buf *out)
{
	size_t count = batch->count;
	size_t strings_len = 0;
	for (size_t k = 0; k < count; k++) {
		const struct catalog_signal *sig = catalog_get(catalog, batch->samples[k].signal);
		if (!sig)
			return DM_ERR_INVALID;
		if (sig->type == SIG_STRING) {
			const struct sample_value *value = &batch->samples[k].value;
			/* protobuf-c takes C strings: a NUL inside would cut it. */
			if (value->str_len && memchr(value->str, '\0', value->str_len))
				return DM_ERR_INVALID;
			strings_len += value->str_len + 1;
		}
	}
	Domicile__V1__Sample *msgs = dm_calloc(count, sizeof *msgs);
	Domicile__V1__Sample **ptrs = dm_calloc(count, sizeof *ptrs);
	char *strings = dm_malloc(strings_len);
	int rc = msgs && ptrs && strings ? DM_OK : DM_ERR_NOMEM;
	char *next_string = strings;
	for (size_t k = 0; k < count && rc == DM_OK; k++) {
		const struct sample *sample = &batch->samples[k];
		const struct catalog_signal *sig = catalog_get(catalog, sample->signal);
		Domicile__V1__Sample *msg = &msgs[k];
		domicile__v1__sample__init(msg);
		msg->ts = sample->ts_ms;
		/* protobuf-c's field is not const, but packing only reads it. */
		msg->signal = (char *)sig->path;
		switch (sig->type) {
		case SIG_FLOAT:
			msg->value_case = DOMICILE__V1__SAMPLE__VALUE_F;
			msg->f = sample->value.num.f;
			break;
		case SIG_INT:
			msg->value_case = DOMICILE__V1__SAMPLE__VALUE_I;
			msg->i = sample->value.num.i;
			break;
		case SIG_BOOL:
			msg->value_case = DOMICILE__V1__SAMPLE__VALUE_B;
			msg->b = sample->value.num.i != 0;
			break;
		case SIG_STRING:
			msg->value_case = DOMICILE__V1__SAMPLE__VALUE_S;
			if (sample->value.str_len)
				memcpy(next_string, sample->value.str, sample->value.str_len);
			next_string[sample->value.str_len] = '\0';
			msg->s = next_string;
			next_string += sample->value.str_len + 1;
			break;
		}
		ptrs[k] = msg;
	}
	if (rc == DM_OK) {
		Domicile__V1__Batch msg = DOMICILE__V1__BATCH__INIT;
		msg.seq = batch->seq;
		msg.n_samples = count;
		msg.samples = ptrs;
		size_t size = domicile__v1__batch__get_packed_size(&msg);
		rc = dm_buf_reserve(out, size);
		if (rc == DM_OK)
			out->len += domicile__v1__batch__pack(&msg, out->data + out->len);
	}
	dm_free(strings);
	dm_free(ptrs);
	dm_free(msgs);
	return rc;
}

int payload_encode(const struct catalog *catalog, const struct payload_batch *batch,
		   enum payload_format format, struct dm_buf *out)
{
	size_t start = out->len;
	int rc;
	/* Seqs are int64 in both forms' decoders and in the store. */
	if (batch->seq > INT64_MAX)
		rc = DM_ERR_INVALID;
	else if (format == PAYLOAD_JSON)
		rc = encode_json(catalog, batch, out);
	else if (format == PAYLOAD_PROTOBUF)
		rc = encode_pb(catalog, batch, out);
	else
		rc = DM_ERR_INVALID;
	if (rc)
		out->len = start; /* all or nothing */
	return rc;
}
