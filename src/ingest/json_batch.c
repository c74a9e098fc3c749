/*
 * json_batch.c — reading a vehicle's JSON batch in one pass, in place.
 *
 * Grammar owned here (RFC 8259, the batch's places named):
 *
 *   document = ws ( top-object / array ) ws            ; nothing may follow
 *   top-object = "{" ws [ member *( ws "," ws member ) ] ws "}"
 *       member "seq": any value; "samples": array of items, or any value;
 *       any other key: any value, skipped
 *   item = "{" ... "}" with "ts", "signal", "value": any value each;
 *       other keys skipped; or any other value, recorded by its kind
 *   string = quote *( unescaped / escape ) quote
 *       unescaped: UTF-8 (no overlong forms, no U+D800..U+DFFF, nothing
 *       above U+10FFFF) except bytes 0x00..0x1F, '"' and '\'
 *       escape: \" \\ \/ \b \f \n \r \t \uXXXX; a \u for U+D800..U+DBFF is
 *       followed by one for U+DC00..U+DFFF, the pair naming one code point;
 *       \u0000 is refused (C strings downstream)
 *   number = [ "-" ] ( "0" / [1-9] *DIGIT ) [ "." 1*DIGIT ] [ ("e"/"E")
 *       [ "+"/"-" ] 1*DIGIT ]; without fraction and exponent it is an
 *       integer and must fit int64; otherwise a double, correctly rounded,
 *       that must be finite (underflow to 0 is fine)
 *   ws = *( SP / HTAB / LF / CR )
 *
 * These are jansson's rules too (its integers are long long, its reals
 * strtod), so the node accepts what it accepted before.
 *
 * Invariants:
 *  1. Every byte is read after checking pos < len (helpers peek/at_end);
 *     multi-byte reads check n <= len - pos first.
 *  2. No recursion: the shape is at most four values deep and parsed by
 *     straight-line code; anything else goes through skip_value, which keeps
 *     one bit per open container in a fixed array of JSON_BATCH_MAX_DEPTH
 *     bits.
 *  3. Nothing is allocated per value. Item records grow geometrically up to
 *     max_items and are reused; elements beyond max_items are checked and
 *     counted but not kept. Only strings with escapes (kept ones) and
 *     numbers longer than NUMBER_STACK bytes take memory from alloc.
 *  4. Duplicate keys are found in the document object and in items, by
 *     their decoded bytes; nowhere else (json_batch.h says why that is
 *     enough).
 */
#include "ingest/json_batch.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/cursor.h"
#include "util/err.h"

/* Longest number converted from a stack copy; longer ones use alloc. */
#define NUMBER_STACK 64
/* The longest key of the shape ("samples") is 7 bytes. */
#define KEY_MAX 8
#define FIRST_ITEMS 64

struct json_batch_reader {
	struct json_batch_item *items;
	size_t items_cap;
	size_t max_items;
	json_batch_alloc_fn *alloc;
	void *alloc_ctx;
};

/* State of one read. */
struct reader {
	struct dm_cursor cur;
	struct json_batch_reader *owner;
	struct json_batch_error *error;
};

int json_batch_reader_new(size_t max_items, json_batch_alloc_fn *alloc, void *alloc_ctx,
                          struct json_batch_reader **out)
{
	*out = NULL;
	if (max_items == 0 || !alloc)
		return DM_ERR_INVALID;
	struct json_batch_reader *reader = dm_calloc(1, sizeof *reader);
	if (!reader)
		return DM_ERR_NOMEM;
	reader->max_items = max_items;
	reader->alloc = alloc;
	reader->alloc_ctx = alloc_ctx;
	*out = reader;
	return DM_OK;
}

void json_batch_reader_free(struct json_batch_reader *reader)
{
	if (!reader)
		return;
	dm_free(reader->items);
	dm_free(reader);
}

/* ------------------------------------------------------------------------ */
/* Bytes */

static int at_end(const struct reader *r)
{
	return r->cur.pos >= r->cur.len;
}

/* The next byte, or -1 at the end. */
static int peek(const struct reader *r)
{
	return r->cur.pos < r->cur.len ? r->cur.p[r->cur.pos] : -1;
}

static void skip_ws(struct reader *r)
{
	const uint8_t *p = r->cur.p;
	size_t pos = r->cur.pos, len = r->cur.len;
	while (pos < len && (p[pos] == ' ' || p[pos] == '\n' || p[pos] == '\r' || p[pos] == '\t'))
		pos++;
	r->cur.pos = pos;
}

static int fail_at(struct reader *r, size_t offset, const char *problem, const char *expected)
{
	r->error->offset = offset;
	r->error->problem = problem;
	r->error->expected = expected;
	return DM_ERR_MALFORMED;
}

/* Length of the valid UTF-8 sequence at p (n bytes available), 0 if there is
 * none: overlong forms, surrogates and code points above U+10FFFF are not. */
static size_t utf8_sequence(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	uint8_t lo = 0x80, hi = 0xbf;
	size_t need;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0; /* below: overlong */
	else if (c == 0xed)
		hi = 0x9f; /* above: U+D800..U+DFFF */
	else if (c == 0xf0)
		lo = 0x90; /* below: overlong */
	else if (c == 0xf4)
		hi = 0x8f; /* above: beyond U+10FFFF */
	if (need > n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t k = 2; k < need; k++)
		if (p[k] < 0x80 || p[k] > 0xbf)
			return 0;
	return need;
}

/* Refuses at the current position: the end, a byte that is not UTF-8, or a
 * byte that is not what the grammar wants there. */
static int fail_expecting(struct reader *r, const char *expected)
{
	size_t pos = r->cur.pos;
	if (at_end(r))
		return fail_at(r, pos, "the input ends early", expected);
	if (utf8_sequence(r->cur.p + pos, r->cur.len - pos) == 0)
		return fail_at(r, pos, "invalid UTF-8", expected);
	if (r->cur.p[pos] == 0)
		return fail_at(r, pos, "a NUL character", expected);
	return fail_at(r, pos, "invalid syntax", expected);
}

static int expect_byte(struct reader *r, uint8_t byte, const char *expected)
{
	if (peek(r) != byte)
		return fail_expecting(r, expected);
	r->cur.pos++;
	return DM_OK;
}

/* ------------------------------------------------------------------------ */
/* Strings */

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads the four hex digits of a \u escape at pos (after "\u"). */
static int read_hex4(struct reader *r, unsigned *out)
{
	unsigned value = 0;
	for (int k = 0; k < 4; k++) {
		int digit = at_end(r) ? -1 : hex_value(r->cur.p[r->cur.pos]);
		if (digit < 0)
			return fail_expecting(r, "four hex digits");
		value = value << 4 | (unsigned)digit;
		r->cur.pos++;
	}
	*out = value;
	return DM_OK;
}

/* Checks one escape at pos (the byte after '\') and returns the code point. */
static int read_escape(struct reader *r, unsigned *code)
{
	static const char simple[] = "\"\\/bfnrt";
	static const unsigned meaning[] = {'"', '\\', '/', '\b', '\f', '\n', '\r', '\t'};
	int c = peek(r);
	if (c != 'u') {
		const char *hit = c > 0 ? memchr(simple, c, sizeof simple - 1) : NULL;
		if (!hit)
			return fail_expecting(r,
			                      "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
		r->cur.pos++;
		*code = meaning[hit - simple];
		return DM_OK;
	}
	size_t start = r->cur.pos - 1;
	r->cur.pos++;
	unsigned high;
	int rc = read_hex4(r, &high);
	if (rc)
		return rc;
	if (high == 0)
		return fail_at(r, start, "a NUL character", "a character other than U+0000");
	if (high >= 0xdc00 && high <= 0xdfff)
		return fail_at(r, start, "invalid syntax", "a high surrogate before a low one");
	if (high < 0xd800 || high > 0xdbff) {
		*code = high;
		return DM_OK;
	}
	if (r->cur.len - r->cur.pos < 2 || r->cur.p[r->cur.pos] != '\\' ||
	    r->cur.p[r->cur.pos + 1] != 'u')
		return fail_at(r, start, at_end(r) ? "the input ends early" : "invalid syntax",
		               "a low surrogate escape after a high one");
	r->cur.pos += 2;
	unsigned low;
	rc = read_hex4(r, &low);
	if (rc)
		return rc;
	if (low < 0xdc00 || low > 0xdfff)
		return fail_at(r, start, "invalid syntax",
		               "a low surrogate escape after a high one");
	*code = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
	return DM_OK;
}

static size_t put_utf8(unsigned code, uint8_t *out)
{
	if (code < 0x80) {
		out[0] = (uint8_t)code;
		return 1;
	}
	if (code < 0x800) {
		out[0] = (uint8_t)(0xc0 | code >> 6);
		out[1] = (uint8_t)(0x80 | (code & 0x3f));
		return 2;
	}
	if (code < 0x10000) {
		out[0] = (uint8_t)(0xe0 | code >> 12);
		out[1] = (uint8_t)(0x80 | (code >> 6 & 0x3f));
		out[2] = (uint8_t)(0x80 | (code & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | code >> 18);
	out[1] = (uint8_t)(0x80 | (code >> 12 & 0x3f));
	out[2] = (uint8_t)(0x80 | (code >> 6 & 0x3f));
	out[3] = (uint8_t)(0x80 | (code & 0x3f));
	return 4;
}

/*
 * Reads a string at pos (the opening quote) and checks all of it; *escaped
 * says whether it had escapes. With `dst`, the decoded bytes go there
 * (dst_cap bytes at most) and *len counts all of them, even past dst_cap.
 */
static int scan_string(struct reader *r, uint8_t *dst, size_t dst_cap, size_t *len, int *escaped)
{
	const uint8_t *p = r->cur.p;
	size_t end = r->cur.len;
	size_t pos = r->cur.pos + 1; /* past the quote the caller saw */
	size_t start = pos, out = 0;
	*escaped = 0;
	for (;;) {
		/* The common run: printable ASCII, no quote, no backslash. */
		while (pos < end && p[pos] >= 0x20 && p[pos] < 0x80 && p[pos] != '"' &&
		       p[pos] != '\\')
			pos++;
		if (dst && pos > start && out < dst_cap) {
			size_t run = pos - start;
			memcpy(dst + out, p + start, run < dst_cap - out ? run : dst_cap - out);
		}
		out += pos - start;
		r->cur.pos = pos;
		if (pos >= end)
			return fail_expecting(r, "'\"' to close the string");
		uint8_t c = p[pos];
		if (c == '"') {
			r->cur.pos = pos + 1;
			*len = out;
			return DM_OK;
		}
		if (c < 0x20)
			return fail_at(r, pos, c == 0 ? "a NUL character" : "invalid syntax",
			               "no control characters in a string");
		uint8_t bytes[4];
		size_t n;
		if (c >= 0x80) {
			n = utf8_sequence(p + pos, end - pos);
			if (n == 0)
				return fail_at(r, pos, "invalid UTF-8", "UTF-8 in a string");
			memcpy(bytes, p + pos, n);
			pos += n;
		} else {
			/* A backslash. */
			*escaped = 1;
			r->cur.pos = pos + 1;
			unsigned code = 0;
			int rc = read_escape(r, &code);
			if (rc)
				return rc;
			n = put_utf8(code, bytes);
			pos = r->cur.pos;
		}
		for (size_t k = 0; k < n; k++, out++)
			if (dst && out < dst_cap)
				dst[out] = bytes[k];
		start = pos;
	}
}

/*
 * Reads a string value. Unescaped, it is referenced in place; escaped and
 * kept, it is checked once, then decoded into memory from alloc (the decoded
 * form is never longer than the escaped one).
 */
static int read_string(struct reader *r, int keep, struct json_batch_scalar *out)
{
	size_t open = r->cur.pos;
	size_t len = 0;
	int escaped;
	int rc = scan_string(r, NULL, 0, &len, &escaped);
	if (rc)
		return rc;
	out->kind = JSON_BATCH_STRING;
	if (!escaped) {
		out->str = (const char *)r->cur.p + open + 1;
		out->len = r->cur.pos - open - 2;
		return DM_OK;
	}
	out->str = NULL;
	out->len = 0;
	if (!keep)
		return DM_OK;
	size_t cap = r->cur.pos - open - 2;
	uint8_t *dst = r->owner->alloc(r->owner->alloc_ctx, cap);
	if (!dst)
		return DM_ERR_NOMEM;
	size_t after = r->cur.pos;
	r->cur.pos = open;
	rc = scan_string(r, dst, cap, &len, &escaped);
	if (rc) /* NEVER: the first pass checked the same bytes */
		return rc;
	r->cur.pos = after;
	out->str = (const char *)dst;
	out->len = len;
	return DM_OK;
}

enum key { KEY_OTHER, KEY_SEQ, KEY_SAMPLES, KEY_TS, KEY_SIGNAL, KEY_VALUE };

static enum key key_of(const uint8_t *name, size_t len)
{
	switch (len) {
	case 2:
		return memcmp(name, "ts", 2) == 0 ? KEY_TS : KEY_OTHER;
	case 3:
		return memcmp(name, "seq", 3) == 0 ? KEY_SEQ : KEY_OTHER;
	case 5:
		return memcmp(name, "value", 5) == 0 ? KEY_VALUE : KEY_OTHER;
	case 6:
		return memcmp(name, "signal", 6) == 0 ? KEY_SIGNAL : KEY_OTHER;
	case 7:
		return memcmp(name, "samples", 7) == 0 ? KEY_SAMPLES : KEY_OTHER;
	default:
		return KEY_OTHER;
	}
}

/* Reads `"key" ws ":" ws` at pos; *start is where the key began. */
static int read_key(struct reader *r, enum key *which, size_t *start)
{
	*start = r->cur.pos;
	if (peek(r) != '"')
		return fail_expecting(r, "a string key");
	uint8_t decoded[KEY_MAX];
	size_t len = 0;
	int escaped;
	/* A decoded key longer than KEY_MAX is no key of ours: its length
	 * alone tells, so the bytes past KEY_MAX are not needed. */
	int rc = scan_string(r, decoded, sizeof decoded, &len, &escaped);
	if (rc)
		return rc;
	if (!escaped)
		*which = key_of(r->cur.p + *start + 1, r->cur.pos - *start - 2);
	else
		*which = len <= KEY_MAX ? key_of(decoded, len) : KEY_OTHER;
	skip_ws(r);
	rc = expect_byte(r, ':', "':' after the key");
	skip_ws(r);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Numbers and literals */

/* Powers of ten that are exact doubles. */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* strtod on a NUL-terminated copy of the number's n bytes at p; with a
 * locale whose decimal point is not '.', the copy says it that way. */
static int convert_slow(struct reader *r, const uint8_t *p, size_t n, double *out)
{
	char stack[NUMBER_STACK + 1];
	char *text = stack;
	if (n > NUMBER_STACK) {
		text = r->owner->alloc(r->owner->alloc_ctx, n + 1);
		if (!text)
			return DM_ERR_NOMEM;
	}
	memcpy(text, p, n);
	text[n] = '\0';
	const char *point = localeconv()->decimal_point;
	if (point && point[0] != '.' && point[0] && !point[1]) {
		char *dot = memchr(text, '.', n);
		if (dot)
			*dot = point[0];
	}
	*out = strtod(text, NULL);
	return DM_OK;
}

/*
 * Reads a number at pos. An integer must fit int64 (as strtoll would). A
 * real is converted exactly: with at most 19 significant digits forming a
 * mantissa up to 2^53 and a power of ten up to 22 either way, one IEEE
 * multiplication or division of two exact doubles is correctly rounded
 * (Clinger's fast path); anything else goes to strtod.
 */
static int read_number(struct reader *r, struct json_batch_scalar *out)
{
	const uint8_t *p = r->cur.p;
	size_t len = r->cur.len, start = r->cur.pos, pos = start;
	int negative = 0;
	if (p[pos] == '-') {
		negative = 1;
		pos++;
	}
	if (pos >= len || p[pos] < '0' || p[pos] > '9') {
		r->cur.pos = pos;
		return fail_expecting(r, "a digit");
	}
	uint64_t mantissa = 0;
	int digits = 0;   /* significant digits in mantissa */
	int dropped = 0;  /* digits that did not fit */
	int exponent = 0; /* of ten, applied to mantissa */
	if (p[pos] == '0') {
		pos++;
		if (pos < len && p[pos] >= '0' && p[pos] <= '9') {
			r->cur.pos = pos;
			return fail_at(r, pos, "invalid syntax", "no leading zeros");
		}
	} else {
		for (; pos < len && p[pos] >= '0' && p[pos] <= '9'; pos++) {
			if (digits < 19) {
				mantissa = mantissa * 10 + (uint64_t)(p[pos] - '0');
				digits++;
			} else {
				dropped = 1;
				exponent++;
			}
		}
	}
	int real = 0;
	if (pos < len && p[pos] == '.') {
		real = 1;
		pos++;
		if (pos >= len || p[pos] < '0' || p[pos] > '9') {
			r->cur.pos = pos;
			return fail_expecting(r, "a digit after '.'");
		}
		for (; pos < len && p[pos] >= '0' && p[pos] <= '9'; pos++) {
			if (mantissa == 0 && p[pos] == '0') {
				exponent--; /* leading zeros of the fraction */
			} else if (digits < 19) {
				mantissa = mantissa * 10 + (uint64_t)(p[pos] - '0');
				digits++;
				exponent--;
			} else {
				dropped = 1;
			}
		}
	}
	if (pos < len && (p[pos] == 'e' || p[pos] == 'E')) {
		real = 1;
		pos++;
		int exp_negative = 0;
		if (pos < len && (p[pos] == '+' || p[pos] == '-'))
			exp_negative = p[pos++] == '-';
		if (pos >= len || p[pos] < '0' || p[pos] > '9') {
			r->cur.pos = pos;
			return fail_expecting(r, "a digit in the exponent");
		}
		int explicit = 0;
		for (; pos < len && p[pos] >= '0' && p[pos] <= '9'; pos++)
			if (explicit < 100000) /* beyond, only strtod's answer counts */
				explicit = explicit * 10 + (p[pos] - '0');
		exponent += exp_negative ? -explicit : explicit;
	}
	r->cur.pos = pos;

	if (!real) {
		/* Exact int64 range: the magnitude may be 2^63 when negative. */
		uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
		uint64_t value = 0;
		for (size_t k = start + negative; k < pos; k++) {
			unsigned digit = (unsigned)(p[k] - '0');
			if (value > (limit - digit) / 10)
				return fail_at(r, start, "a number out of range",
				               "an integer within 64 bits");
			value = value * 10 + digit;
		}
		out->kind = JSON_BATCH_INT;
		out->i = negative ? (int64_t)(0 - value) : (int64_t)value;
		if (negative && value == (uint64_t)INT64_MAX + 1)
			out->i = INT64_MIN;
		return DM_OK;
	}

	double value;
	if (mantissa == 0) {
		value = 0.0;
	} else if (!dropped && mantissa <= (UINT64_C(1) << 53) && exponent >= -22 &&
	           exponent <= 22) {
		value = (double)mantissa;
		value =
		    exponent < 0 ? value / exact_pow10[-exponent] : value * exact_pow10[exponent];
	} else {
		int rc = convert_slow(r, p + start + negative, pos - start - negative, &value);
		if (rc)
			return rc;
	}
	if (!isfinite(value))
		return fail_at(r, start, "a number out of range", "a finite number");
	out->kind = JSON_BATCH_REAL;
	out->f = negative ? -value : value;
	return DM_OK;
}

static int read_literal(struct reader *r, const char *word, size_t n)
{
	if (n > r->cur.len - r->cur.pos || memcmp(r->cur.p + r->cur.pos, word, n) != 0)
		return fail_expecting(r, "a value");
	r->cur.pos += n;
	return DM_OK;
}

/* A string, number, true, false or null at pos. */
static int read_scalar(struct reader *r, int keep, struct json_batch_scalar *out)
{
	int rc;
	switch (peek(r)) {
	case '"':
		return read_string(r, keep, out);
	case '-':
		return read_number(r, out);
	case 't':
		rc = read_literal(r, "true", 4);
		*out = (struct json_batch_scalar){.kind = JSON_BATCH_BOOL, .i = 1};
		return rc;
	case 'f':
		rc = read_literal(r, "false", 5);
		*out = (struct json_batch_scalar){.kind = JSON_BATCH_BOOL, .i = 0};
		return rc;
	case 'n':
		rc = read_literal(r, "null", 4);
		*out = (struct json_batch_scalar){.kind = JSON_BATCH_NULL};
		return rc;
	default:
		if (peek(r) >= '0' && peek(r) <= '9')
			return read_number(r, out);
		return fail_expecting(r, "a value");
	}
}

/* ------------------------------------------------------------------------ */
/* Values outside the shape */

/*
 * Checks and skips the value at pos, which sits at `depth` (the document is
 * at 1). Containers are tracked by one bit each (1 = object), never by
 * recursion (invariant 2).
 */
static int skip_value(struct reader *r, unsigned depth)
{
	uint64_t is_object[JSON_BATCH_MAX_DEPTH / 64] = {0};
	unsigned open = 0; /* containers open inside the skipped value */
	struct json_batch_scalar ignored;
	size_t key_start;
	enum key which;
	int rc;
	for (;;) {
		/* A value starts here, at depth + open. */
		if (depth + open > JSON_BATCH_MAX_DEPTH)
			return fail_at(r, r->cur.pos, "nesting too deep", "fewer nested values");
		int c = peek(r);
		if (c == '{' || c == '[') {
			r->cur.pos++;
			if (c == '{')
				is_object[open / 64] |= UINT64_C(1) << (open % 64);
			else
				is_object[open / 64] &= ~(UINT64_C(1) << (open % 64));
			open++;
			skip_ws(r);
			if (peek(r) != (c == '{' ? '}' : ']')) {
				if (c == '{') {
					rc = read_key(r, &which, &key_start);
					if (rc)
						return rc;
				}
				continue;
			}
			r->cur.pos++;
			open--;
		} else {
			rc = read_scalar(r, 0, &ignored);
			if (rc)
				return rc;
		}
		/* A value ended: close what ends with it, or go on to the next. */
		for (;;) {
			if (open == 0)
				return DM_OK;
			int object = is_object[(open - 1) / 64] >> ((open - 1) % 64) & 1;
			skip_ws(r);
			c = peek(r);
			if (c == ',') {
				r->cur.pos++;
				skip_ws(r);
				if (object) {
					rc = read_key(r, &which, &key_start);
					if (rc)
						return rc;
				}
				break;
			}
			if (c != (object ? '}' : ']'))
				return fail_expecting(r, object ? "',' or '}'" : "',' or ']'");
			r->cur.pos++;
			open--;
		}
	}
}

/* A value in a place of the shape that wants a scalar: a container is
 * recorded by its kind and skipped. */
static int read_place(struct reader *r, unsigned depth, int keep, struct json_batch_scalar *out)
{
	int c = peek(r);
	if (c == '{' || c == '[') {
		*out = (struct json_batch_scalar){.kind = c == '{' ? JSON_BATCH_OBJECT
		                                                   : JSON_BATCH_ARRAY};
		return skip_value(r, depth);
	}
	return read_scalar(r, keep, out);
}

/* ------------------------------------------------------------------------ */
/* The shape */

static int duplicate(struct reader *r, size_t key_start)
{
	return fail_at(r, key_start, "a duplicate key", "each key once");
}

/* An object in samples, at depth 3; `keep` says whether its strings are
 * wanted (not for elements beyond max_items). */
static int read_item(struct reader *r, int keep, struct json_batch_item *item)
{
	*item = (struct json_batch_item){.kind = JSON_BATCH_OBJECT};
	r->cur.pos++; /* '{' */
	skip_ws(r);
	if (peek(r) == '}') {
		r->cur.pos++;
		return DM_OK;
	}
	for (;;) {
		enum key which;
		size_t key_start;
		int rc = read_key(r, &which, &key_start);
		if (rc)
			return rc;
		struct json_batch_scalar *place = NULL;
		switch (which) {
		case KEY_TS:
			place = &item->ts;
			break;
		case KEY_SIGNAL:
			place = &item->signal;
			break;
		case KEY_VALUE:
			place = &item->value;
			break;
		default:
			break;
		}
		if (place) {
			if (place->kind != JSON_BATCH_ABSENT)
				return duplicate(r, key_start);
			rc = read_place(r, 4, keep, place);
		} else {
			item->other_keys++;
			rc = skip_value(r, 4);
		}
		if (rc)
			return rc;
		skip_ws(r);
		int c = peek(r);
		if (c == '}') {
			r->cur.pos++;
			return DM_OK;
		}
		if (c != ',')
			return fail_expecting(r, "',' or '}'");
		r->cur.pos++;
		skip_ws(r);
	}
}

static int grow_items(struct json_batch_reader *owner)
{
	size_t cap = owner->items_cap ? owner->items_cap * 2 : FIRST_ITEMS;
	if (cap > owner->max_items)
		cap = owner->max_items;
	struct json_batch_item *items = dm_realloc(owner->items, cap * sizeof *items);
	if (!items)
		return DM_ERR_NOMEM;
	owner->items = items;
	owner->items_cap = cap;
	return DM_OK;
}

/* The samples array at pos, at depth 2. */
static int read_samples(struct reader *r, struct json_batch *out)
{
	struct json_batch_reader *owner = r->owner;
	r->cur.pos++; /* '[' */
	skip_ws(r);
	if (peek(r) == ']') {
		r->cur.pos++;
		return DM_OK;
	}
	for (;;) {
		/* Invariant 3: records only up to max_items. */
		struct json_batch_item spare;
		struct json_batch_item *item = &spare;
		int keep = out->count < owner->max_items;
		if (keep) {
			if (out->count == owner->items_cap && grow_items(owner))
				return DM_ERR_NOMEM;
			item = &owner->items[out->count];
		}
		int rc;
		if (peek(r) == '{') {
			rc = read_item(r, keep, item);
		} else {
			struct json_batch_scalar other;
			*item = (struct json_batch_item){.kind = JSON_BATCH_ABSENT};
			rc = read_place(r, 3, 0, &other);
			item->kind = other.kind;
		}
		if (rc)
			return rc;
		out->count++;
		skip_ws(r);
		int c = peek(r);
		if (c == ']') {
			r->cur.pos++;
			return DM_OK;
		}
		if (c != ',')
			return fail_expecting(r, "',' or ']'");
		r->cur.pos++;
		skip_ws(r);
	}
}

/* The document object at pos, at depth 1. */
static int read_document(struct reader *r, struct json_batch *out)
{
	r->cur.pos++; /* '{' */
	skip_ws(r);
	if (peek(r) == '}') {
		r->cur.pos++;
		return DM_OK;
	}
	for (;;) {
		enum key which;
		size_t key_start;
		int rc = read_key(r, &which, &key_start);
		if (rc)
			return rc;
		if (which == KEY_SEQ) {
			if (out->seq.kind != JSON_BATCH_ABSENT)
				return duplicate(r, key_start);
			rc = read_place(r, 2, 0, &out->seq);
		} else if (which == KEY_SAMPLES) {
			if (out->samples_kind != JSON_BATCH_ABSENT)
				return duplicate(r, key_start);
			if (peek(r) == '[') {
				out->samples_kind = JSON_BATCH_ARRAY;
				rc = read_samples(r, out);
			} else {
				struct json_batch_scalar other;
				rc = read_place(r, 2, 0, &other);
				out->samples_kind = other.kind;
			}
		} else {
			out->other_keys++;
			rc = skip_value(r, 2);
		}
		if (rc)
			return rc;
		skip_ws(r);
		int c = peek(r);
		if (c == '}') {
			r->cur.pos++;
			return DM_OK;
		}
		if (c != ',')
			return fail_expecting(r, "',' or '}'");
		r->cur.pos++;
		skip_ws(r);
	}
}

int json_batch_read(struct json_batch_reader *reader, const uint8_t *bytes, size_t len,
                    struct json_batch *out, struct json_batch_error *error)
{
	*out = (struct json_batch){0};
	*error = (struct json_batch_error){0};
	struct reader r = {dm_cursor_make(bytes, len), reader, error};
	skip_ws(&r);
	int rc;
	int c = peek(&r);
	if (c == '{') {
		out->kind = JSON_BATCH_OBJECT;
		rc = read_document(&r, out);
	} else if (c == '[') {
		out->kind = JSON_BATCH_ARRAY;
		rc = skip_value(&r, 1);
	} else {
		rc = fail_expecting(&r, "'{'");
	}
	if (rc == DM_OK) {
		skip_ws(&r);
		if (!at_end(&r))
			rc = fail_at(&r, r.cur.pos, "more data after the batch",
			             "the end of the input");
	}
	if (rc == DM_OK)
		out->items = reader->items;
	else
		*out = (struct json_batch){0};
	return rc;
}
