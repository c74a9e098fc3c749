/*
 * catalog.h — the signal catalog: which VSS signals a vehicle may send, with
 * their type, unit, valid range and category.
 *
 * Signals are interned to small ids (0 .. count-1, in file order) so that the
 * hot path and the store carry a uint16_t, never a string. The catalog is
 * read once at start and immutable afterwards, so it may be shared by threads.
 * Strings and signals it hands out are owned by the catalog: borrowed, valid
 * until catalog_free.
 *
 * File format (catalog/signals.catalog): one signal per line,
 *   PATH TYPE UNIT MIN MAX CATEGORY
 * TYPE is float, int, bool or string; for string, MAX is the maximum length in
 * bytes and MIN must be 0; for bool, MIN and MAX are 0 and 1; UNIT is "-"
 * where there is none. CATEGORY is state, location, media, identity or
 * diagnostics. '#' starts a comment; blank lines are ignored.
 */
#ifndef DM_CATALOG_H
#define DM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

enum sig_type { SIG_FLOAT = 1, SIG_INT = 2, SIG_BOOL = 3, SIG_STRING = 4 };

enum sig_category { CAT_STATE, CAT_LOCATION, CAT_MEDIA, CAT_IDENTITY, CAT_DIAGNOSTICS };

#define CATALOG_MAX_SIGNALS 4096

struct catalog_signal {
	uint16_t id;
	const char *path;
	enum sig_type type;
	const char *unit; /* "" where the file says "-" */
	double min; /* inclusive; for strings 0 */
	double max; /* inclusive; for strings the maximum length in bytes */
	enum sig_category category;
};

struct catalog;

/* Reads a catalog file. On error returns a negative status and writes
 * "FILE:LINE: what is wrong" into err (err_len bytes, always NUL-terminated). */
int catalog_load(const char *path, struct catalog **out, char *err, size_t err_len);
/* The same from text in memory; `name` stands for the file name in errors. */
int catalog_parse(const char *name, const char *text, size_t len, struct catalog **out, char *err,
		  size_t err_len);
void catalog_free(struct catalog *catalog);

/* NULL when the path is not in the catalog. The path need not be NUL-terminated. */
const struct catalog_signal *catalog_find(const struct catalog *catalog, const char *path,
					  size_t path_len);
/* NULL when id >= catalog_count. */
const struct catalog_signal *catalog_get(const struct catalog *catalog, uint16_t id);
size_t catalog_count(const struct catalog *catalog);

const char *sig_type_name(enum sig_type type);
const char *sig_category_name(enum sig_category category);

#endif
