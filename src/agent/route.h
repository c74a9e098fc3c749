/*
 * route.h — a simulated drive: what the agent's vehicles report.
 *
 * A route is a small, deterministic vehicle model. From a seed and a start
 * position it drives road segments: it accelerates to the segment's speed,
 * cruises with gently drifting heading, brakes for a turn or a stop, turns at
 * a plausible yaw rate, waits at lights, and pulls over to recharge and refuel
 * when low. Everything else follows from the distance driven: the odometer
 * grows by exactly that distance, the position moves along a great circle by
 * it, the battery and the tank drain with it, and the altitude is a smooth
 * function of it. The air temperature drifts slowly around the start's
 * climate, and a diagnostic trouble code appears now and then.
 *
 * Invariants the tests hold the model to:
 *   1. Within one route_step, speed is piecewise linear in time (sub-steps of
 *      at most ROUTE_SUBSTEP_S) and the distance driven is its exact
 *      integral; the odometer grows by that distance and nothing else.
 *   2. The position moves along the great circle of the current heading by
 *      the same distance on a sphere of radius ROUTE_EARTH_RADIUS_M, so the
 *      haversine distance between consecutive readings is at most the
 *      odometer's growth (equal while the heading does not change).
 *   3. Every value stays within the ranges documented on struct
 *      route_reading, which lie inside catalog/signals.catalog's ranges.
 *   4. The same config and the same sequence of route_step durations give
 *      bit-identical readings (no clocks, no global state).
 *
 * A route is owned by its creator: route_new hands one out, the caller frees
 * it with route_free (which accepts NULL). A route is used by one thread at a
 * time.
 */
#ifndef DM_ROUTE_H
#define DM_ROUTE_H

#include <stdint.h>

#define ROUTE_EARTH_RADIUS_M 6371008.8 /* mean Earth radius (IUGG) */
#define ROUTE_SUBSTEP_S 0.1            /* the model's integration step */
#define ROUTE_MAX_SPEED_KMH 130.0      /* expressway cruise plus margin */
#define ROUTE_DTC_MAX_LEN 7            /* "P0301" or with a failure byte "P030113" */

struct route_config {
	uint64_t seed;
	double lat_deg;      /* start position, [-85, 85] */
	double lon_deg;      /* start position, [-180, 180] */
	double altitude_m;   /* ground level around the start, [-400, 5000] */
	double air_temp_c;   /* the climate the temperature drifts around, [-40, 45] */
	double odometer_km;  /* the odometer at the start, >= 0 */
	double soc_pct;      /* battery state of charge at the start, [0, 100] */
	double fuel_pct;     /* fuel level at the start, [0, 100] */
	double dtc_per_hour; /* mean rate of new trouble codes, [0, 3600]; 0 for none */
};

struct route_reading {
	double elapsed_s;   /* simulated seconds since route_new */
	double speed_kmh;   /* [0, ROUTE_MAX_SPEED_KMH] */
	double lat_deg;     /* [-90, 90] */
	double lon_deg;     /* [-180, 180) */
	double altitude_m;  /* [config altitude, config altitude + 40] */
	double heading_deg; /* [0, 360), clockwise from true north */
	double odometer_km; /* never decreases */
	double soc_pct;     /* [0, 100] */
	double fuel_pct;    /* [0, 100] */
	double air_temp_c;  /* [-45, 55] */
	/* A trouble code that appeared during the last route_step, else NULL.
	 * Static storage: valid for the life of the program. */
	const char *dtc;
};

struct route;

/* Fills config with plausible defaults for a car starting at (lat, lon):
 * sea-level ground, 18 °C, an odometer, charge and fuel drawn from the seed,
 * two trouble codes an hour. */
void route_config_default(struct route_config *config, uint64_t seed, double lat_deg,
                          double lon_deg);

/* Returns DM_OK and a new route in *out, DM_ERR_INVALID when a config field
 * is outside its range (nothing allocated), or DM_ERR_NOMEM. */
int route_new(const struct route_config *config, struct route **out);
void route_free(struct route *route);

/* Advances the simulation by dt_s seconds (> 0; any length, it is cut into
 * sub-steps internally). */
void route_step(struct route *route, double dt_s);

/* Copies the current state into *out. */
void route_read(const struct route *route, struct route_reading *out);

#endif
