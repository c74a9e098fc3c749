/*
 * route.c — the simulated drive behind the agent's vehicles.
 *
 * The model advances in sub-steps of at most ROUTE_SUBSTEP_S. In each, it
 * picks one acceleration and one yaw rate, so speed is linear and the
 * distance driven is exactly (v0 + v1) / 2 * h; that distance moves the car
 * along the great circle of the sub-step's mean heading and is added, and
 * only it, to the odometer (route.h, invariants 1 and 2).
 *
 * Phases, and what moves the car from one to the next:
 *
 *   DRIVE --segment ends, turn--> TURN --angle done--> DRIVE (new segment)
 *   DRIVE --segment ends, stop--> BRAKE --speed 0--> STOPPED
 *   DRIVE --segment ends, go on--> DRIVE (new segment)
 *   STOPPED --dwell over--> DRIVE (new segment)
 *   STOPPED --battery or tank low on arrival--> SERVICE --full--> DRIVE
 *
 * A segment is a stretch of one road class (urban, arterial, expressway)
 * with a cruise speed, a length and what happens at its end. While driving,
 * the car brakes at a comfortable rate just early enough to reach the end
 * speed at the end, so speed never jumps. Far from its start the car turns
 * towards home, which keeps a long simulation inside the region it was placed
 * in (the demo puts cars in particular countries).
 */
#include "agent/route.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"
#include "util/err.h"

#define DEG (M_PI / 180.0)

#define ACCEL_MAX 2.0      /* m/s^2, brisk but ordinary */
#define DECEL_COMFORT 1.5  /* m/s^2, braking begins when this much is needed */
#define DECEL_MAX 4.0      /* m/s^2, never harder */
#define TURN_RADIUS_M 18.0 /* a city corner */
#define DRIFT_MAX_DEG_S 1.5
#define HOME_RADIUS_M 25000.0
#define BATTERY_KWH 75.0
#define TANK_PCT_PER_KM 0.05 /* a plug-in hybrid's small range extender */
#define TEMP_TAU_S 3600.0
#define TEMP_SIGMA 0.02 /* °C per sqrt(s): about 1 °C of wander */
#define CHARGE_PCT_S 0.03
#define REFUEL_PCT_S 0.4

enum phase { PHASE_DRIVE, PHASE_TURN, PHASE_BRAKE, PHASE_STOPPED, PHASE_SERVICE };

enum segment_end { END_TURN, END_STOP, END_CONTINUE };

struct route {
	struct route_config config;
	uint64_t rng;

	enum phase phase;
	double elapsed_s;
	double speed_ms;
	double lat_deg, lon_deg, heading_deg;
	double odometer_km;
	double driven_m; /* since the start: drives the altitude profile */
	double soc_pct, fuel_pct, air_temp_c;
	double alt_phase1, alt_phase2;

	double cruise_ms;      /* this segment's cruise speed */
	double segment_left_m; /* distance to the segment's end */
	enum segment_end end;
	double end_speed_ms;  /* the speed to reach at the segment's end */
	double turn_left_deg; /* signed: positive turns clockwise */
	double dwell_left_s;
	double drift_deg_s; /* slow heading drift of a road that is not straight */

	const char *dtc; /* appeared during the current route_step */
};

static const char *const dtc_codes[] = {
    "P0420", "P0171", "P0300", "P0128", "P0442",   "P0455",
    "C0035", "B1318", "U0100", "P0301", "P030113",
};

/* xorshift64* seeded through splitmix64: small, fast, and the same on every
 * platform, which is all determinism needs. */
static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t next_u64(uint64_t *rng)
{
	uint64_t x = *rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, 1). */
static double uniform(uint64_t *rng)
{
	return (double)(next_u64(rng) >> 11) * 0x1.0p-53;
}

static double between(uint64_t *rng, double lo, double hi)
{
	return lo + (hi - lo) * uniform(rng);
}

/* Standard normal, Box-Muller (one of the pair is enough here). */
static double gaussian(uint64_t *rng)
{
	double u = uniform(rng);
	double v = uniform(rng);
	return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

static double clamp(double x, double lo, double hi)
{
	return x < lo ? lo : (x > hi ? hi : x);
}

static double wrap_360(double deg)
{
	deg = fmod(deg, 360.0);
	if (deg < 0)
		deg += 360.0;
	/* fmod of a tiny negative number can round up to exactly 360. */
	return deg >= 360.0 ? 0.0 : deg;
}

static double wrap_180(double deg)
{
	/* Values already in range pass unchanged: adding and taking away 180
	 * would round them. */
	if (deg >= -180.0 && deg < 180.0)
		return deg;
	return wrap_360(deg + 180.0) - 180.0;
}

static uint64_t seed_state(uint64_t seed)
{
	uint64_t mix = seed;
	uint64_t state = splitmix(&mix);
	return state ? state : 0x853C49E6748FEA9Bull; /* xorshift must not start at 0 */
}

void route_config_default(struct route_config *config, uint64_t seed, double lat_deg,
                          double lon_deg)
{
	uint64_t rng = seed_state(seed ^ 0xC0FFEEull);
	*config = (struct route_config){
	    .seed = seed,
	    .lat_deg = lat_deg,
	    .lon_deg = lon_deg,
	    .altitude_m = 5.0,
	    .air_temp_c = 18.0,
	    .odometer_km = between(&rng, 5000.0, 80000.0),
	    .soc_pct = between(&rng, 40.0, 95.0),
	    .fuel_pct = between(&rng, 30.0, 100.0),
	    .dtc_per_hour = 2.0,
	};
}

static int config_valid(const struct route_config *c)
{
	return isfinite(c->lat_deg) && c->lat_deg >= -85.0 && c->lat_deg <= 85.0 &&
	       isfinite(c->lon_deg) && c->lon_deg >= -180.0 && c->lon_deg <= 180.0 &&
	       isfinite(c->altitude_m) && c->altitude_m >= -400.0 && c->altitude_m <= 5000.0 &&
	       isfinite(c->air_temp_c) && c->air_temp_c >= -40.0 && c->air_temp_c <= 45.0 &&
	       isfinite(c->odometer_km) && c->odometer_km >= 0.0 && c->odometer_km < 4.0e6 &&
	       isfinite(c->soc_pct) && c->soc_pct >= 0.0 && c->soc_pct <= 100.0 &&
	       isfinite(c->fuel_pct) && c->fuel_pct >= 0.0 && c->fuel_pct <= 100.0 &&
	       isfinite(c->dtc_per_hour) && c->dtc_per_hour >= 0.0 && c->dtc_per_hour <= 3600.0;
}

/* Great-circle distance (m) and initial bearing (degrees) from a to b. */
static void distance_bearing(double lat1, double lon1, double lat2, double lon2, double *dist_m,
                             double *bearing_deg)
{
	double p1 = lat1 * DEG, p2 = lat2 * DEG, dl = (lon2 - lon1) * DEG;
	double s1 = sin((p2 - p1) / 2), s2 = sin(dl / 2);
	double a = s1 * s1 + cos(p1) * cos(p2) * s2 * s2;
	*dist_m = 2.0 * ROUTE_EARTH_RADIUS_M * asin(sqrt(clamp(a, 0.0, 1.0)));
	double y = sin(dl) * cos(p2);
	double x = cos(p1) * sin(p2) - sin(p1) * cos(p2) * cos(dl);
	*bearing_deg = wrap_360(atan2(y, x) / DEG);
}

/* Moves (lat, lon) by dist_m along the great circle that leaves it at
 * bearing_deg. */
static void move(double *lat, double *lon, double bearing_deg, double dist_m)
{
	if (dist_m <= 0.0)
		return;
	double d = dist_m / ROUTE_EARTH_RADIUS_M, th = bearing_deg * DEG;
	double p1 = *lat * DEG, l1 = *lon * DEG;
	double sp2 = sin(p1) * cos(d) + cos(p1) * sin(d) * cos(th);
	double p2 = asin(clamp(sp2, -1.0, 1.0));
	double l2 = l1 + atan2(sin(th) * sin(d) * cos(p1), cos(d) - sin(p1) * sp2);
	*lat = p2 / DEG;
	*lon = wrap_180(l2 / DEG);
}

static void start_segment(struct route *r)
{
	double pick = uniform(&r->rng);
	double kmh, len_m;
	if (pick < 0.6) {
		kmh = between(&r->rng, 30.0, 60.0);
		len_m = between(&r->rng, 200.0, 800.0);
	} else if (pick < 0.9) {
		kmh = between(&r->rng, 50.0, 80.0);
		len_m = between(&r->rng, 500.0, 2000.0);
	} else {
		kmh = between(&r->rng, 90.0, 120.0);
		len_m = between(&r->rng, 2000.0, 10000.0);
	}
	r->cruise_ms = kmh / 3.6;
	r->segment_left_m = len_m;
	double end = uniform(&r->rng);
	if (end < 0.45) {
		r->end = END_TURN;
		r->end_speed_ms = between(&r->rng, 15.0, 25.0) / 3.6;
	} else if (end < 0.75) {
		r->end = END_STOP;
		r->end_speed_ms = 0.0;
	} else {
		r->end = END_CONTINUE;
		r->end_speed_ms = r->cruise_ms;
	}
	r->phase = PHASE_DRIVE;
}

/* The turn at a segment's end: a random side, except far from home, where
 * the car turns whichever way brings it closer to facing home. */
static void start_turn(struct route *r)
{
	double angle = between(&r->rng, 60.0, 110.0);
	double side = uniform(&r->rng) < 0.5 ? -1.0 : 1.0;
	double home_m, home_bearing;
	distance_bearing(r->lat_deg, r->lon_deg, r->config.lat_deg, r->config.lon_deg, &home_m,
	                 &home_bearing);
	if (home_m > HOME_RADIUS_M)
		side = wrap_180(home_bearing - r->heading_deg) >= 0.0 ? 1.0 : -1.0;
	r->turn_left_deg = side * angle;
	r->phase = PHASE_TURN;
}

static void arrive_stopped(struct route *r)
{
	r->speed_ms = 0.0;
	if (r->soc_pct < 15.0 || r->fuel_pct < 12.0) {
		r->phase = PHASE_SERVICE;
		return;
	}
	r->phase = PHASE_STOPPED;
	/* Mostly lights and junctions; now and then the car is parked a while. */
	r->dwell_left_s =
	    uniform(&r->rng) < 0.05 ? between(&r->rng, 60.0, 600.0) : between(&r->rng, 5.0, 45.0);
}

/* The acceleration while driving a segment. */
static double drive_accel(const struct route *r)
{
	double v = r->speed_ms;
	if (v > r->end_speed_ms) {
		double left = r->segment_left_m > 0.1 ? r->segment_left_m : 0.1;
		double need = (v * v - r->end_speed_ms * r->end_speed_ms) / (2.0 * left);
		if (need >= DECEL_COMFORT)
			return -(need < DECEL_MAX ? need : DECEL_MAX);
	}
	/* Approach the cruise speed with a two-second time constant. */
	return clamp((r->cruise_ms - v) / 2.0, -1.0, ACCEL_MAX);
}

static void substep(struct route *r, double h)
{
	double v0 = r->speed_ms;
	double accel = 0.0;

	switch (r->phase) {
	case PHASE_DRIVE:
		accel = drive_accel(r);
		break;
	case PHASE_TURN:
		accel = clamp((r->end_speed_ms - v0) / 1.0, -DECEL_COMFORT, ACCEL_MAX);
		break;
	case PHASE_BRAKE:
		accel = -DECEL_COMFORT;
		break;
	case PHASE_STOPPED:
	case PHASE_SERVICE:
		break;
	}

	double v1 = clamp(v0 + accel * h, 0.0, ROUTE_MAX_SPEED_KMH / 3.6);
	double dist = 0.5 * (v0 + v1) * h;
	double v_mean = dist / h;

	/* Heading: the road's slow drift, or the corner being turned. The drift
	 * fades out at walking pace so that a standing car does not rotate. */
	double yaw = 0.0;
	if (r->phase == PHASE_TURN) {
		double rate = v_mean / TURN_RADIUS_M / DEG;
		double step = rate * h;
		if (step >= fabs(r->turn_left_deg))
			step = fabs(r->turn_left_deg);
		yaw = r->turn_left_deg >= 0 ? step : -step;
		r->turn_left_deg -= yaw;
	} else if (v_mean > 0.0) {
		r->drift_deg_s += -r->drift_deg_s * h / 20.0 + 0.3 * sqrt(h) * gaussian(&r->rng);
		r->drift_deg_s = clamp(r->drift_deg_s, -DRIFT_MAX_DEG_S, DRIFT_MAX_DEG_S);
		yaw = r->drift_deg_s * h * clamp(v_mean / 5.0, 0.0, 1.0);
	}

	move(&r->lat_deg, &r->lon_deg, wrap_360(r->heading_deg + yaw / 2.0), dist);
	r->heading_deg = wrap_360(r->heading_deg + yaw);
	r->odometer_km += dist / 1000.0;
	r->driven_m += dist;
	r->speed_ms = v1;
	r->elapsed_s += h;

	double dist_km = dist / 1000.0, kmh = v_mean * 3.6;
	double kwh_per_km = 0.12 + 0.000008 * kmh * kmh;
	r->soc_pct = clamp(r->soc_pct - dist_km * kwh_per_km / BATTERY_KWH * 100.0, 0.0, 100.0);
	r->fuel_pct = clamp(r->fuel_pct - dist_km * TANK_PCT_PER_KM, 0.0, 100.0);

	double climate = r->config.air_temp_c;
	r->air_temp_c +=
	    (climate - r->air_temp_c) * h / TEMP_TAU_S + TEMP_SIGMA * sqrt(h) * gaussian(&r->rng);
	r->air_temp_c = clamp(r->air_temp_c, -45.0, 55.0);

	if (r->config.dtc_per_hour > 0.0 &&
	    uniform(&r->rng) < r->config.dtc_per_hour / 3600.0 * h) {
		size_t n = sizeof dtc_codes / sizeof dtc_codes[0];
		const char *code = dtc_codes[next_u64(&r->rng) % n];
		if (!r->dtc)
			r->dtc = code;
	}

	switch (r->phase) {
	case PHASE_DRIVE:
		r->segment_left_m -= dist;
		if (r->segment_left_m > 0.0)
			break;
		if (r->end == END_TURN)
			start_turn(r);
		else if (r->end == END_STOP && v1 > 0.0)
			r->phase = PHASE_BRAKE;
		else if (r->end == END_STOP)
			arrive_stopped(r);
		else
			start_segment(r);
		break;
	case PHASE_TURN:
		if (r->turn_left_deg == 0.0)
			start_segment(r);
		break;
	case PHASE_BRAKE:
		if (v1 == 0.0)
			arrive_stopped(r);
		break;
	case PHASE_STOPPED:
		r->dwell_left_s -= h;
		if (r->dwell_left_s <= 0.0)
			start_segment(r);
		break;
	case PHASE_SERVICE:
		r->soc_pct = clamp(r->soc_pct + CHARGE_PCT_S * h, 0.0, 100.0);
		r->fuel_pct = clamp(r->fuel_pct + REFUEL_PCT_S * h, 0.0, 100.0);
		if (r->soc_pct >= 90.0 && r->fuel_pct >= 100.0)
			start_segment(r);
		break;
	}
}

int route_new(const struct route_config *config, struct route **out)
{
	*out = NULL;
	if (!config_valid(config))
		return DM_ERR_INVALID;
	struct route *r = dm_calloc(1, sizeof *r);
	if (!r)
		return DM_ERR_NOMEM;
	r->config = *config;
	r->rng = seed_state(config->seed);
	r->lat_deg = config->lat_deg;
	r->lon_deg = wrap_180(config->lon_deg);
	r->heading_deg = between(&r->rng, 0.0, 360.0);
	r->odometer_km = config->odometer_km;
	r->soc_pct = config->soc_pct;
	r->fuel_pct = config->fuel_pct;
	r->air_temp_c = config->air_temp_c;
	r->alt_phase1 = between(&r->rng, 0.0, 2.0 * M_PI);
	r->alt_phase2 = between(&r->rng, 0.0, 2.0 * M_PI);
	/* Start as if just parked, so the first readings show a car pulling away. */
	r->phase = PHASE_STOPPED;
	r->dwell_left_s = between(&r->rng, 0.0, 5.0);
	*out = r;
	return DM_OK;
}

void route_free(struct route *route)
{
	dm_free(route);
}

void route_step(struct route *route, double dt_s)
{
	route->dtc = NULL;
	/* Whole sub-steps first, then the remainder, so a step of 1 s is ten
	 * sub-steps of exactly 0.1 s whatever the rounding of repeated sums. */
	double whole = floor(dt_s / ROUTE_SUBSTEP_S);
	for (long i = 0; i < (long)whole; i++)
		substep(route, ROUTE_SUBSTEP_S);
	double rest = dt_s - whole * ROUTE_SUBSTEP_S;
	if (rest > 1e-9)
		substep(route, rest);
}

void route_read(const struct route *route, struct route_reading *out)
{
	double d = route->driven_m;
	double alt = 20.0 + 12.0 * sin(2.0 * M_PI * d / 4700.0 + route->alt_phase1) +
	             6.0 * sin(2.0 * M_PI * d / 1300.0 + route->alt_phase2);
	*out = (struct route_reading){
	    .elapsed_s = route->elapsed_s,
	    .speed_kmh = route->speed_ms * 3.6,
	    .lat_deg = route->lat_deg,
	    .lon_deg = route->lon_deg,
	    .altitude_m = route->config.altitude_m + alt,
	    .heading_deg = route->heading_deg,
	    .odometer_km = route->odometer_km,
	    .soc_pct = route->soc_pct,
	    .fuel_pct = route->fuel_pct,
	    .air_temp_c = route->air_temp_c,
	    .dtc = route->dtc,
	};
}
