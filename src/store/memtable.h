/*
 * memtable.h — acknowledged samples held in memory until the next flush
 * turns them into blocks.
 *
 * One series per (vehicle id, signal id): parallel arrays of timestamps and
 * values, plus a string pool for string signals, in arrival order (a flush
 * sorts them by time). Appending grows arrays geometrically, so a batch costs
 * a few allocations at most, never one per sample. A memtable is used by one
 * thread at a time; once frozen for a flush it is only read, so the loop may
 * read it while the flush thread encodes it.
 *
 * Series handed out are owned by the memtable: borrowed, valid until the
 * next append or memtable_free.
 */
#ifndef DM_MEMTABLE_H
#define DM_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/payload.h"
#include "store/block.h"

struct memtable;

struct memtable_series {
	uint32_t vehicle_id;
	uint16_t signal;
	uint8_t type; /* enum sig_type */
	size_t count;
	size_t cap;
	int64_t *ts;
	union block_num *vals;
	char *strings; /* SIG_STRING: vals[k].i is an offset here */
	size_t strings_len, strings_cap;
	size_t pending, pending_strings; /* memtable_append's own bookkeeping */
};

int memtable_new(struct memtable **out);
void memtable_free(struct memtable *table);

/* Appends a batch's samples for one vehicle; types come from the catalog.
 * All or nothing: on DM_ERR_NOMEM the table is unchanged. */
int memtable_append(struct memtable *table, const struct catalog *catalog, uint32_t vehicle_id,
		    const struct sample *samples, size_t count);

/* NULL when the table has no samples of this series. */
const struct memtable_series *memtable_get(const struct memtable *table, uint32_t vehicle_id,
					   uint16_t signal);

/* Calls fn for each series (in no particular order); stops at a non-zero return. */
int memtable_each(const struct memtable *table,
		  int (*fn)(void *arg, const struct memtable_series *series), void *arg);

size_t memtable_samples(const struct memtable *table);
size_t memtable_bytes(const struct memtable *table); /* memory held, roughly */

#endif
