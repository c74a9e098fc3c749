/*
 * memtable.c — series in memory, found through an open-addressing hash table
 * keyed by (vehicle id << 16 | signal id).
 *
 * Invariants:
 *  1. slots holds a power-of-two number of entries and is at most 3/4 full,
 *     so probing always ends at an empty slot.
 *  2. Every series in slots has count >= 1 and its arrays hold cap entries.
 *  3. memtable_append changes nothing when it fails: all growth is done
 *     first, the copy after.
 */
#include "store/memtable.h"

#include <string.h>

#include "util/alloc.h"
#include "util/err.h"

struct memtable {
	struct memtable_series **slots;
	size_t slot_count; /* power of two */
	size_t series_count;
	size_t samples;
	size_t bytes;
	/* Scratch for memtable_append, reused from batch to batch. */
	struct memtable_series **by_sample;
	struct memtable_series **touched;
	size_t scratch_cap;
};

static uint64_t series_key(uint32_t vehicle_id, uint16_t signal)
{
	return (uint64_t)vehicle_id << 16 | signal;
}

static size_t slot_of(uint64_t key, size_t slot_count)
{
	/* Fibonacci hashing spreads consecutive vehicle ids over the table. */
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (slot_count - 1);
}

int memtable_new(struct memtable **out)
{
	*out = NULL;
	struct memtable *table = dm_calloc(1, sizeof *table);
	if (!table)
		return DM_ERR_NOMEM;
	table->slot_count = 1024;
	table->slots = dm_calloc(table->slot_count, sizeof *table->slots);
	if (!table->slots) {
		dm_free(table);
		return DM_ERR_NOMEM;
	}
	*out = table;
	return DM_OK;
}

static void series_free(struct memtable_series *series)
{
	if (!series)
		return;
	dm_free(series->ts);
	dm_free(series->vals);
	dm_free(series->strings);
	dm_free(series);
}

void memtable_free(struct memtable *table)
{
	if (!table)
		return;
	for (size_t i = 0; i < table->slot_count; i++)
		series_free(table->slots[i]);
	dm_free(table->slots);
	dm_free(table->by_sample);
	dm_free(table->touched);
	dm_free(table);
}

static struct memtable_series **find_slot(const struct memtable *table, uint64_t key)
{
	size_t at = slot_of(key, table->slot_count);
	for (;;) {
		struct memtable_series *series = table->slots[at];
		if (!series || series_key(series->vehicle_id, series->signal) == key)
			return &table->slots[at];
		at = (at + 1) & (table->slot_count - 1);
	}
}

static int grow_slots(struct memtable *table)
{
	size_t count = table->slot_count * 2;
	struct memtable_series **slots = dm_calloc(count, sizeof *slots);
	if (!slots)
		return DM_ERR_NOMEM;
	struct memtable old = *table;
	table->slots = slots;
	table->slot_count = count;
	for (size_t i = 0; i < old.slot_count; i++) {
		struct memtable_series *series = old.slots[i];
		if (series)
			*find_slot(table, series_key(series->vehicle_id, series->signal)) = series;
	}
	dm_free(old.slots);
	return DM_OK;
}

/* Makes room for `more` samples and `more_strings` string bytes. */
static int series_reserve(struct memtable *table, struct memtable_series *series, size_t more,
			  size_t more_strings)
{
	if (series->count + more > series->cap) {
		size_t cap = series->cap ? series->cap : 16;
		while (cap < series->count + more)
			cap *= 2;
		int64_t *ts = dm_realloc(series->ts, cap * sizeof *ts);
		if (!ts)
			return DM_ERR_NOMEM;
		series->ts = ts;
		union block_num *vals = dm_realloc(series->vals, cap * sizeof *vals);
		if (!vals)
			return DM_ERR_NOMEM;
		series->vals = vals;
		table->bytes += (cap - series->cap) * (sizeof *ts + sizeof *vals);
		series->cap = cap;
	}
	if (series->strings_len + more_strings > series->strings_cap) {
		size_t cap = series->strings_cap ? series->strings_cap : 256;
		while (cap < series->strings_len + more_strings)
			cap *= 2;
		char *strings = dm_realloc(series->strings, cap);
		if (!strings)
			return DM_ERR_NOMEM;
		table->bytes += cap - series->strings_cap;
		series->strings = strings;
		series->strings_cap = cap;
	}
	return DM_OK;
}

/* The series for (vehicle, signal), created empty if missing. */
static int series_for(struct memtable *table, const struct catalog *catalog, uint32_t vehicle_id,
		      uint16_t signal, struct memtable_series **out)
{
	uint64_t key = series_key(vehicle_id, signal);
	struct memtable_series **slot = find_slot(table, key);
	if (!*slot) {
		if ((table->series_count + 1) * 4 > table->slot_count * 3) {
			if (grow_slots(table))
				return DM_ERR_NOMEM;
			slot = find_slot(table, key);
		}
		const struct catalog_signal *sig = catalog_get(catalog, signal);
		struct memtable_series *series = dm_calloc(1, sizeof *series);
		if (!series || !sig) {
			dm_free(series);
			return sig ? DM_ERR_NOMEM : DM_ERR_INVALID;
		}
		series->vehicle_id = vehicle_id;
		series->signal = signal;
		series->type = (uint8_t)sig->type;
		*slot = series;
		table->series_count++;
		table->bytes += sizeof *series;
	}
	*out = *slot;
	return DM_OK;
}

/* Makes sure the scratch arrays hold `count` entries. */
static int scratch_reserve(struct memtable *table, size_t count)
{
	if (count <= table->scratch_cap)
		return DM_OK;
	size_t cap = table->scratch_cap ? table->scratch_cap : 128;
	while (cap < count)
		cap *= 2;
	struct memtable_series **by_sample = dm_realloc(table->by_sample, cap * sizeof *by_sample);
	if (!by_sample)
		return DM_ERR_NOMEM;
	table->by_sample = by_sample;
	struct memtable_series **touched = dm_realloc(table->touched, cap * sizeof *touched);
	if (!touched)
		return DM_ERR_NOMEM;
	table->touched = touched;
	table->scratch_cap = cap;
	return DM_OK;
}

int memtable_append(struct memtable *table, const struct catalog *catalog, uint32_t vehicle_id,
		    const struct sample *samples, size_t count)
{
	int rc = scratch_reserve(table, count);
	if (rc)
		return rc;
	/* Pass 1: find each sample's series and add up what each will need. An
	 * empty series created here and left behind by a failure is harmless:
	 * it holds no samples and memtable_get does not return it. */
	size_t touched = 0;
	for (size_t i = 0; i < count && rc == DM_OK; i++) {
		struct memtable_series *series;
		rc = series_for(table, catalog, vehicle_id, samples[i].signal, &series);
		if (rc)
			break;
		if (series->pending == 0)
			table->touched[touched++] = series;
		series->pending++;
		if (series->type == SIG_STRING)
			series->pending_strings += samples[i].value.str_len + 1;
		table->by_sample[i] = series;
	}
	/* Pass 2: grow, so that pass 3 cannot fail (invariant 3). */
	for (size_t k = 0; k < touched && rc == DM_OK; k++)
		rc = series_reserve(table, table->touched[k], table->touched[k]->pending,
				    table->touched[k]->pending_strings);
	for (size_t k = 0; k < touched; k++)
		table->touched[k]->pending = table->touched[k]->pending_strings = 0;
	if (rc)
		return rc;
	/* Pass 3: copy. */
	for (size_t i = 0; i < count; i++) {
		const struct sample *sample = &samples[i];
		struct memtable_series *series = table->by_sample[i];
		size_t at = series->count++;
		series->ts[at] = sample->ts_ms;
		if (series->type == SIG_STRING) {
			series->vals[at].i = (int64_t)series->strings_len;
			memcpy(series->strings + series->strings_len, sample->value.str,
			       sample->value.str_len);
			series->strings_len += sample->value.str_len;
			series->strings[series->strings_len++] = '\0';
		} else {
			series->vals[at].i = sample->value.num.i;
		}
	}
	table->samples += count;
	return DM_OK;
}

const struct memtable_series *memtable_get(const struct memtable *table, uint32_t vehicle_id,
					   uint16_t signal)
{
	struct memtable_series *series = *find_slot(table, series_key(vehicle_id, signal));
	return series && series->count ? series : NULL;
}

int memtable_each(const struct memtable *table,
		  int (*fn)(void *arg, const struct memtable_series *series), void *arg)
{
	for (size_t i = 0; i < table->slot_count; i++) {
		const struct memtable_series *series = table->slots[i];
		if (series && series->count) {
			int rc = fn(arg, series);
			if (rc)
				return rc;
		}
	}
	return DM_OK;
}

size_t memtable_samples(const struct memtable *table) { return table->samples; }
size_t memtable_bytes(const struct memtable *table) { return table->bytes; }
