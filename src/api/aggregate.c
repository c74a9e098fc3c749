/*
 * aggregate.c — time buckets over many vehicles' samples.
 *
 * Invariants:
 *  1. 1 <= bucket_count <= AGGREGATE_MAX_BUCKETS, and bucket k covers
 *     [from + k*step, min(from + (k+1)*step, to)); no arithmetic here
 *     overflows, because from < to is checked and (to - from) is computed in
 *     unsigned 64 bits.
 *  2. A bucket's `vehicles` counts each vehicle once: vehicles are fed one
 *     after another, each with a new serial, and a bucket counts a serial
 *     only when it differs from the last one it counted.
 */
#include "api/aggregate.h"

#include <string.h>

#include "util/alloc.h"
#include "util/err.h"

static const char *const fn_names[] = {
	[AGGREGATE_AVG] = "avg",
	[AGGREGATE_MIN] = "min",
	[AGGREGATE_MAX] = "max",
	[AGGREGATE_COUNT] = "count",
};

int aggregate_fn_parse(const char *text, enum aggregate_fn *out)
{
	for (size_t i = 0; i < sizeof fn_names / sizeof *fn_names; i++) {
		if (strcmp(text, fn_names[i]) == 0) {
			*out = (enum aggregate_fn)i;
			return DM_OK;
		}
	}
	return DM_ERR_INVALID;
}

const char *aggregate_fn_name(enum aggregate_fn fn)
{
	return (unsigned)fn < sizeof fn_names / sizeof *fn_names ? fn_names[fn] : "?";
}

int aggregate_init(struct aggregate *agg, int64_t from, int64_t to, int64_t step)
{
	memset(agg, 0, sizeof *agg);
	if (from >= to || step < 1)
		return DM_ERR_INVALID;
	uint64_t span = (uint64_t)to - (uint64_t)from;
	uint64_t count = (span - 1) / (uint64_t)step + 1;
	if (count > AGGREGATE_MAX_BUCKETS)
		return DM_ERR_TOO_LARGE;
	agg->buckets = dm_calloc((size_t)count, sizeof *agg->buckets);
	if (!agg->buckets)
		return DM_ERR_NOMEM;
	agg->from = from;
	agg->to = to;
	agg->step = step;
	agg->bucket_count = (size_t)count;
	return DM_OK;
}

void aggregate_free(struct aggregate *agg)
{
	dm_free(agg->buckets);
	memset(agg, 0, sizeof *agg);
}

void aggregate_vehicle(struct aggregate *agg)
{
	agg->vehicle_serial++;
	agg->vehicles++;
}

void aggregate_add(struct aggregate *agg, int64_t ts, double value)
{
	if (ts < agg->from || ts >= agg->to || agg->vehicle_serial == 0)
		return;
	size_t k = (size_t)(((uint64_t)ts - (uint64_t)agg->from) / (uint64_t)agg->step);
	struct aggregate_bucket *b = &agg->buckets[k];
	if (b->count == 0) {
		b->min = value;
		b->max = value;
	} else {
		if (value < b->min)
			b->min = value;
		if (value > b->max)
			b->max = value;
	}
	b->sum += value;
	b->count++;
	if (b->last_vehicle != agg->vehicle_serial) {
		b->last_vehicle = agg->vehicle_serial;
		b->vehicles++;
	}
}

int64_t aggregate_bucket_start(const struct aggregate *agg, size_t k)
{
	return (int64_t)((uint64_t)agg->from + (uint64_t)k * (uint64_t)agg->step);
}

int aggregate_value(const struct aggregate *agg, size_t k, enum aggregate_fn fn,
		    unsigned min_vehicles, double *value)
{
	*value = 0;
	if (k >= agg->bucket_count)
		return 0;
	const struct aggregate_bucket *b = &agg->buckets[k];
	if (b->count == 0 || b->vehicles < min_vehicles)
		return 0;
	switch (fn) {
	case AGGREGATE_AVG: *value = b->sum / (double)b->count; break;
	case AGGREGATE_MIN: *value = b->min; break;
	case AGGREGATE_MAX: *value = b->max; break;
	case AGGREGATE_COUNT: *value = (double)b->count; break;
	}
	return 1;
}
