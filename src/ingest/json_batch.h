/*
 * json_batch.h — a strict, zero-copy reader for the one JSON document a
 * vehicle sends: {"seq": N, "samples": [{"ts": MS, "signal": "P", "value": V},
 * ...]}.
 *
 * It checks the whole input against RFC 8259 (numbers, escapes, UTF-8,
 * whitespace, nothing after the document) and reports what sits where the
 * batch's keys are, without judging it: payload.c decides whether a seq that
 * is a string, a missing key or an extra key refuses the batch, so that its
 * reasons and their order stay its own. Anything that is not part of the
 * shape (the value of an unknown key, an array where a number belongs) is
 * checked and skipped without recursion.
 *
 * Memory: the reader keeps one array of item records, grown to at most
 * max_items entries and reused from read to read, so a warm reader allocates
 * nothing. Strings without escapes are handed out as pointers into the input:
 * borrowed, valid as long as the input is. Strings with escapes, and numbers
 * too long for the stack, are written into memory from the caller's `alloc`
 * (the decoder's arena): valid as long as that memory is. A reader is used by
 * one thread at a time.
 */
#ifndef DM_JSON_BATCH_H
#define DM_JSON_BATCH_H

#include <stddef.h>
#include <stdint.h>

/* What sits in a place of the shape. ABSENT: the key was not there. */
enum json_batch_kind {
	JSON_BATCH_ABSENT = 0,
	JSON_BATCH_NULL,
	JSON_BATCH_BOOL,
	JSON_BATCH_INT,    /* no fraction, no exponent, within int64 */
	JSON_BATCH_REAL,   /* any other number; finite */
	JSON_BATCH_STRING, /* valid UTF-8 without NUL, escapes decoded */
	JSON_BATCH_ARRAY,
	JSON_BATCH_OBJECT,
};

struct json_batch_scalar {
	enum json_batch_kind kind;
	int64_t i;       /* INT; BOOL as 0 or 1 */
	double f;        /* REAL */
	const char *str; /* STRING (not NUL-terminated); NULL for an item not kept */
	size_t len;      /* STRING */
};

/* One element of "samples". Unless kind is OBJECT, the rest is empty. */
struct json_batch_item {
	enum json_batch_kind kind;
	size_t other_keys; /* keys other than ts, signal and value */
	struct json_batch_scalar ts, signal, value;
};

struct json_batch {
	enum json_batch_kind kind; /* of the document: OBJECT or ARRAY */
	size_t other_keys;         /* keys other than seq and samples */
	struct json_batch_scalar seq;
	enum json_batch_kind samples_kind;
	size_t count; /* elements of samples, all of them */
	/* The first min(count, max_items) elements, in order: owned by the
	 * reader, valid until its next read or json_batch_reader_free. */
	const struct json_batch_item *items;
};

/* Where reading stopped and why; all strings static. */
struct json_batch_error {
	size_t offset;        /* bytes from the start of the input */
	const char *problem;  /* e.g. "invalid syntax", "a duplicate key" */
	const char *expected; /* e.g. "',' or '}'" */
};

/* Memory for decoded strings; NULL means out of memory. */
typedef void *json_batch_alloc_fn(void *ctx, size_t size);

struct json_batch_reader;

/* max_items > 0. Returns DM_OK, DM_ERR_INVALID or DM_ERR_NOMEM. The caller
 * frees the reader with json_batch_reader_free. */
int json_batch_reader_new(size_t max_items, json_batch_alloc_fn *alloc, void *alloc_ctx,
                          struct json_batch_reader **out);
void json_batch_reader_free(struct json_batch_reader *reader);

/*
 * Reads one document. Returns DM_OK and fills *out; DM_ERR_MALFORMED with
 * *error filled when the bytes are not one JSON object or array (invalid
 * syntax or UTF-8, a NUL, a number out of range, a duplicate key in the
 * document or in an element of samples, nesting beyond JSON_BATCH_MAX_DEPTH,
 * bytes after the document); DM_ERR_NOMEM when alloc or the item array
 * failed. On failure *out is empty.
 *
 * Keys are not looked at inside values that are skipped (the value of an
 * unknown key, an object where a scalar belongs): duplicates there are not
 * refused here. Whoever uses the result refuses the batch for the unknown key
 * or the misplaced object anyway.
 */
int json_batch_read(struct json_batch_reader *reader, const uint8_t *bytes, size_t len,
                    struct json_batch *out, struct json_batch_error *error);

/* The deepest value nesting allowed, the document itself being at depth 1;
 * the same limit as jansson's, so both refuse the same inputs. */
#define JSON_BATCH_MAX_DEPTH 2048

#endif
