/*
 * aggregate.h — fleet aggregates for analysts: one numeric signal of many
 * vehicles, bucketed by time, reduced by avg, min, max or count.
 *
 * Buckets are [from + k*step, from + (k+1)*step) clipped to [from, to); at
 * most AGGREGATE_MAX_BUCKETS of them. Samples are fed vehicle by vehicle
 * (aggregate_vehicle, then aggregate_add for each of its samples), so the
 * caller never holds more than one vehicle's page of samples.
 *
 * Privacy: a bucket whose samples come from fewer than AGGREGATE_MIN_VEHICLES
 * distinct vehicles is left out of the answer — it would show one or two
 * cars' own values (with one car, its raw series). aggregate_value says so.
 *
 * Ownership: the buckets are the aggregate's; release with aggregate_free.
 * Nothing here reads the store.
 */
#ifndef DM_AGGREGATE_H
#define DM_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#define AGGREGATE_MAX_BUCKETS 10000
#define AGGREGATE_MIN_VEHICLES 3

enum aggregate_fn { AGGREGATE_AVG, AGGREGATE_MIN, AGGREGATE_MAX, AGGREGATE_COUNT };

/* DM_OK, or DM_ERR_INVALID when text is none of avg, min, max, count. */
int aggregate_fn_parse(const char *text, enum aggregate_fn *out);
const char *aggregate_fn_name(enum aggregate_fn fn);

struct aggregate_bucket {
	double sum, min, max;
	uint64_t count;
	uint32_t vehicles;     /* distinct vehicles with a sample here */
	uint32_t last_vehicle; /* the serial of the last vehicle counted */
};

struct aggregate {
	int64_t from, to, step;
	size_t bucket_count;
	struct aggregate_bucket *buckets;
	uint32_t vehicle_serial; /* 0 before the first aggregate_vehicle */
	uint32_t vehicles;       /* vehicles begun */
};

/* Sets up the buckets of [from, to) by step. DM_ERR_INVALID when from >= to
 * or step < 1; DM_ERR_TOO_LARGE when that is more than AGGREGATE_MAX_BUCKETS
 * buckets (nothing allocated); DM_ERR_NOMEM. */
int aggregate_init(struct aggregate *agg, int64_t from, int64_t to, int64_t step);
void aggregate_free(struct aggregate *agg); /* accepts a zeroed struct */

/* The samples that follow are another vehicle's. */
void aggregate_vehicle(struct aggregate *agg);
/* One sample of the current vehicle; outside [from, to) it is ignored. */
void aggregate_add(struct aggregate *agg, int64_t ts, double value);

/* Bucket k's start, and whether it may be shown: 1 with *value when it has
 * samples from at least min_vehicles vehicles, 0 when it is empty or left
 * out. */
int64_t aggregate_bucket_start(const struct aggregate *agg, size_t k);
int aggregate_value(const struct aggregate *agg, size_t k, enum aggregate_fn fn,
		    unsigned min_vehicles, double *value);

#endif
