/*
 * catalog.c — reading the signal catalog and finding signals by path.
 *
 * Format (owned here; catalog.h has the user's view): UTF-8 text, lines
 * separated by '\n' ('\r' counts as a blank, so CRLF files read the same).
 * '#' starts a comment that runs to the end of the line. A line that is not
 * blank after removing the comment holds exactly six fields separated by
 * spaces or tabs:
 *
 *   PATH  TYPE  UNIT  MIN  MAX  CATEGORY
 *
 *   PATH      a VSS path: segments of [A-Za-z0-9_] joined by '.', at most
 *             CATALOG_MAX_PATH bytes; each path appears once
 *   TYPE      float | int | bool | string
 *   UNIT      a VSS unit name (km/h, percent, celsius, ...) or "-" for none
 *   MIN, MAX  numbers as strtod reads them, finite, MIN <= MAX; for int both
 *             are integers within +-2^53 (so that comparing an int64 sample
 *             against them as doubles is exact); for bool exactly 0 and 1; for
 *             string MIN is 0 and MAX the maximum length in bytes, an integer
 *             in 1..CATALOG_MAX_STRING
 *   CATEGORY  state | location | media | identity | diagnostics
 *
 * Invariants:
 *  1. entries[k].sig.id == k and the order is the file's: ids are stable as
 *     long as lines are only appended to the catalog.
 *  2. slots has CATALOG_SLOTS entries (a power of two, at least twice
 *     CATALOG_MAX_SIGNALS), so it is never more than half full and every
 *     probe ends at an empty slot. A slot holds 0 (empty) or id + 1.
 *  3. Every path and unit points into `text`, the catalog's own copy of the
 *     file, tokenised in place: lookups and the strings handed out never
 *     allocate.
 *  4. Once catalog_parse returns, nothing changes: concurrent readers need no
 *     lock.
 */
#include "ingest/catalog.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/err.h"
#include "util/file.h"

/* A VSS path longer than this is a mistake, not a signal: the deepest paths
 * of VSS 4 are under 100 bytes. */
#define CATALOG_MAX_PATH 255
/* A sample is one reading. A string longer than this is not a reading (media
 * travels by reference), and the bound keeps lengths well inside uint32_t. */
#define CATALOG_MAX_STRING 65535
/* Integers beyond 2^53 cannot be held exactly in a double bound. */
#define CATALOG_MAX_EXACT 9007199254740992.0
/* The file is read whole; 4096 signals at a generous 256 bytes a line plus
 * comments come nowhere near this. It stops `catalog_load("/dev/zero")`. */
#define CATALOG_MAX_FILE (16u << 20)
#define CATALOG_SLOTS 8192u

struct catalog_entry {
	struct catalog_signal sig;
	size_t path_len;
	unsigned line;
};

struct catalog {
	char *text; /* the file's bytes, tokenised in place (invariant 3) */
	struct catalog_entry *entries;
	size_t count;
	size_t cap;
	uint16_t *slots; /* CATALOG_SLOTS entries (invariant 2) */
};

static const char *const type_names[] = {
	[SIG_FLOAT] = "float",
	[SIG_INT] = "int",
	[SIG_BOOL] = "bool",
	[SIG_STRING] = "string",
};

static const char *const category_names[] = {
	[CAT_STATE] = "state",
	[CAT_LOCATION] = "location",
	[CAT_MEDIA] = "media",
	[CAT_IDENTITY] = "identity",
	[CAT_DIAGNOSTICS] = "diagnostics",
};

const char *sig_type_name(enum sig_type type)
{
	if (type < SIG_FLOAT || type > SIG_STRING)
		return "unknown";
	return type_names[type];
}

const char *sig_category_name(enum sig_category category)
{
	if ((unsigned)category > CAT_DIAGNOSTICS)
		return "unknown";
	return category_names[category];
}

static void say(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(char *err, size_t err_len, const char *fmt, ...)
{
	if (!err || err_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* Eight bytes per step: byte-at-a-time FNV-1a was a tenth of protobuf
 * decoding, one multiply per byte of a 40-byte path. Each word is mixed in
 * with a multiply and the result folded so that the low bits (the slot)
 * depend on every byte. */
static uint64_t hash_path(const char *path, size_t len)
{
	const uint64_t mul = 0x9E3779B97F4A7C15ull;
	uint64_t hash = len * mul;
	while (len >= 8) {
		uint64_t word;
		memcpy(&word, path, 8);
		hash = (hash ^ word) * mul;
		hash ^= hash >> 29;
		path += 8;
		len -= 8;
	}
	uint64_t tail = 0;
	if (len)
		memcpy(&tail, path, len);
	hash = (hash ^ tail) * mul;
	return hash ^ hash >> 32;
}

/* The slot holding `path`, or the empty slot where it would go. */
static uint16_t *find_slot(const struct catalog *catalog, const char *path, size_t len)
{
	size_t at = (size_t)hash_path(path, len) & (CATALOG_SLOTS - 1);
	for (;;) {
		uint16_t *slot = &catalog->slots[at];
		if (*slot == 0)
			return slot;
		const struct catalog_entry *entry = &catalog->entries[*slot - 1];
		if (entry->path_len == len && memcmp(entry->sig.path, path, len) == 0)
			return slot;
		at = (at + 1) & (CATALOG_SLOTS - 1);
	}
}

const struct catalog_signal *catalog_find(const struct catalog *catalog, const char *path,
					  size_t path_len)
{
	uint16_t slot = *find_slot(catalog, path, path_len);
	return slot ? &catalog->entries[slot - 1].sig : NULL;
}

const struct catalog_signal *catalog_get(const struct catalog *catalog, uint16_t id)
{
	return id < catalog->count ? &catalog->entries[id].sig : NULL;
}

size_t catalog_count(const struct catalog *catalog) { return catalog->count; }

void catalog_free(struct catalog *catalog)
{
	if (!catalog)
		return;
	dm_free(catalog->text);
	dm_free(catalog->entries);
	dm_free(catalog->slots);
	dm_free(catalog);
}

static int valid_path(const char *path)
{
	size_t len = strlen(path);
	if (len == 0 || len > CATALOG_MAX_PATH || path[0] == '.' || path[len - 1] == '.')
		return 0;
	for (size_t k = 0; k < len; k++) {
		char c = path[k];
		if (c == '.') {
			if (path[k + 1] == '.')
				return 0;
		} else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '_')) {
			return 0;
		}
	}
	return 1;
}

static int parse_type(const char *word, enum sig_type *out)
{
	for (int t = SIG_FLOAT; t <= SIG_STRING; t++) {
		if (strcmp(word, type_names[t]) == 0) {
			*out = (enum sig_type)t;
			return 0;
		}
	}
	return -1;
}

static int parse_category(const char *word, enum sig_category *out)
{
	for (int c = CAT_STATE; c <= CAT_DIAGNOSTICS; c++) {
		if (strcmp(word, category_names[c]) == 0) {
			*out = (enum sig_category)c;
			return 0;
		}
	}
	return -1;
}

/* A whole token as a finite double; "12abc", "", "nan", "inf" and overflow
 * are refused with a message saying which. */
static const char *parse_number(const char *word, double *out)
{
	char *end;
	errno = 0;
	double value = strtod(word, &end);
	if (end == word || *end != '\0')
		return "is not a number";
	if (errno == ERANGE && fabs(value) > 1.0)
		return "is out of range";
	if (!isfinite(value))
		return "is not a finite number";
	*out = value;
	return NULL;
}

static int is_exact_integer(double value)
{
	return value == trunc(value) && fabs(value) <= CATALOG_MAX_EXACT;
}

/* Checks MIN and MAX against the type; NULL when they fit, else why not. */
static const char *check_bounds(enum sig_type type, double min, double max)
{
	switch (type) {
	case SIG_FLOAT:
		break;
	case SIG_INT:
		if (!is_exact_integer(min) || !is_exact_integer(max))
			return "int signals take integer MIN and MAX within +-2^53";
		break;
	case SIG_BOOL:
		if (min != 0 || max != 1)
			return "bool signals take MIN 0 and MAX 1";
		break;
	case SIG_STRING:
		if (min != 0)
			return "string signals take MIN 0";
		if (max != trunc(max) || max < 1 || max > CATALOG_MAX_STRING)
			return "string signals take a MAX length in bytes from 1 to 65535";
		break;
	}
	if (min > max)
		return "MIN is greater than MAX";
	return NULL;
}

/* '\r' counts as blank so that files with CRLF line ends read the same. */
static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Splits line (NUL-terminated, comment and line end already cut) into at most
 * `max` fields, writing NULs after each. Returns the number of fields found,
 * which may exceed max (the extra ones are counted, not stored). */
static int split_fields(char *line, char **fields, int max)
{
	int found = 0;
	char *p = line;
	for (;;) {
		while (is_blank(*p))
			p++;
		if (*p == '\0')
			return found;
		if (found < max)
			fields[found] = p;
		found++;
		while (*p != '\0' && !is_blank(*p))
			p++;
		if (*p == '\0')
			return found;
		*p++ = '\0';
	}
}

static int grow_entries(struct catalog *catalog)
{
	if (catalog->count < catalog->cap)
		return DM_OK;
	size_t cap = catalog->cap ? catalog->cap * 2 : 64;
	struct catalog_entry *entries = dm_realloc(catalog->entries, cap * sizeof *entries);
	if (!entries)
		return DM_ERR_NOMEM;
	catalog->entries = entries;
	catalog->cap = cap;
	return DM_OK;
}

/* Parses one line (NUL-terminated, comment cut). Blank lines are skipped. */
static int parse_line(struct catalog *catalog, const char *name, unsigned line_no, char *line,
		      char *err, size_t err_len)
{
	char *fields[6];
	int found = split_fields(line, fields, 6);
	if (found == 0)
		return DM_OK;
	if (found != 6) {
		say(err, err_len,
		    "%s:%u: expected 6 fields (PATH TYPE UNIT MIN MAX CATEGORY), found %d", name,
		    line_no, found);
		return DM_ERR_INVALID;
	}
	if (catalog->count == CATALOG_MAX_SIGNALS) {
		say(err, err_len, "%s:%u: more than %d signals", name, line_no,
		    CATALOG_MAX_SIGNALS);
		return DM_ERR_TOO_LARGE;
	}

	struct catalog_signal sig = {.id = (uint16_t)catalog->count, .path = fields[0]};
	if (!valid_path(fields[0])) {
		say(err, err_len,
		    "%s:%u: '%.64s' is not a VSS path (segments of A-Z a-z 0-9 _ joined by '.', at "
		    "most %d bytes)",
		    name, line_no, fields[0], CATALOG_MAX_PATH);
		return DM_ERR_INVALID;
	}
	if (parse_type(fields[1], &sig.type)) {
		say(err, err_len,
		    "%s:%u: unknown type '%.32s' (expected float, int, bool or string)", name,
		    line_no, fields[1]);
		return DM_ERR_INVALID;
	}
	sig.unit = strcmp(fields[2], "-") == 0 ? "" : fields[2];
	const char *why = parse_number(fields[3], &sig.min);
	if (why) {
		say(err, err_len, "%s:%u: MIN '%.32s' %s", name, line_no, fields[3], why);
		return DM_ERR_INVALID;
	}
	why = parse_number(fields[4], &sig.max);
	if (why) {
		say(err, err_len, "%s:%u: MAX '%.32s' %s", name, line_no, fields[4], why);
		return DM_ERR_INVALID;
	}
	why = check_bounds(sig.type, sig.min, sig.max);
	if (why) {
		say(err, err_len, "%s:%u: %s", name, line_no, why);
		return DM_ERR_INVALID;
	}
	if (parse_category(fields[5], &sig.category)) {
		say(err, err_len,
		    "%s:%u: unknown category '%.32s' (expected state, location, media, identity or "
		    "diagnostics)",
		    name, line_no, fields[5]);
		return DM_ERR_INVALID;
	}

	size_t path_len = strlen(sig.path);
	uint16_t *slot = find_slot(catalog, sig.path, path_len);
	if (*slot) {
		say(err, err_len, "%s:%u: duplicate signal %s (first on line %u)", name, line_no,
		    sig.path, catalog->entries[*slot - 1].line);
		return DM_ERR_INVALID;
	}
	if (grow_entries(catalog)) {
		say(err, err_len, "%s: out of memory", name);
		return DM_ERR_NOMEM;
	}
	catalog->entries[catalog->count] =
		(struct catalog_entry){.sig = sig, .path_len = path_len, .line = line_no};
	catalog->count++;
	*slot = (uint16_t)catalog->count;
	return DM_OK;
}

int catalog_parse(const char *name, const char *text, size_t len, struct catalog **out, char *err,
		  size_t err_len)
{
	*out = NULL;
	say(err, err_len, "%s", "");
	if (len > CATALOG_MAX_FILE) {
		say(err, err_len, "%s: larger than %u bytes", name, CATALOG_MAX_FILE);
		return DM_ERR_TOO_LARGE;
	}
	struct catalog *catalog = dm_calloc(1, sizeof *catalog);
	if (!catalog || !(catalog->slots = dm_calloc(CATALOG_SLOTS, sizeof *catalog->slots)) ||
	    !(catalog->text = dm_malloc(len + 1))) {
		catalog_free(catalog);
		say(err, err_len, "%s: out of memory", name);
		return DM_ERR_NOMEM;
	}
	memcpy(catalog->text, text, len);
	catalog->text[len] = '\0';

	int rc = DM_OK;
	unsigned line_no = 0;
	char *line = catalog->text;
	char *text_end = catalog->text + len;
	while (rc == DM_OK && line < text_end) {
		line_no++;
		char *nl = memchr(line, '\n', (size_t)(text_end - line));
		char *line_end = nl ? nl : text_end;
		char *next = nl ? nl + 1 : text_end;
		/* A NUL inside the text would silently cut the line short. */
		if (memchr(line, '\0', (size_t)(line_end - line))) {
			say(err, err_len, "%s:%u: contains a NUL byte", name, line_no);
			rc = DM_ERR_INVALID;
			break;
		}
		*line_end = '\0';
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		rc = parse_line(catalog, name, line_no, line, err, err_len);
		line = next;
	}
	if (rc == DM_OK && catalog->count == 0) {
		say(err, err_len, "%s:%u: no signals defined", name, line_no);
		rc = DM_ERR_INVALID;
	}
	if (rc) {
		catalog_free(catalog);
		return rc;
	}
	*out = catalog;
	return DM_OK;
}

int catalog_load(const char *path, struct catalog **out, char *err, size_t err_len)
{
	*out = NULL;
	struct dm_buf text = {0};
	int rc = dm_read_file(path, CATALOG_MAX_FILE, &text, err, err_len);
	if (rc == DM_OK)
		rc = catalog_parse(path, text.data ? (const char *)text.data : "", text.len, out,
				   err, err_len);
	dm_buf_free(&text);
	return rc;
}
