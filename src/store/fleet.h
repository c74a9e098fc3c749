/*
 * fleet.h — the registered vehicles, in memory, for the event loop.
 *
 * Loaded from the database at start and extended by registrations, so that
 * the hot paths (an MQTT CONNECT, a PUBLISH) find a vehicle by VIN or id
 * without touching SQLite. Each vehicle carries its window of recently stored
 * batch sequence numbers, which recognises a retransmitted batch.
 *
 * Vehicles are owned by the fleet: borrowed, valid until fleet_free. Loop
 * thread only.
 */
#ifndef DM_FLEET_H
#define DM_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "store/db.h"

/* The last SEQWIN_BITS sequence numbers below and at `max`, one bit each
 * (the anti-replay window of IPsec). Older numbers are looked up in the
 * database. */
#define SEQWIN_BITS 1024

struct seqwin {
	uint64_t max;  /* highest seq stored; valid when any is set */
	int any;       /* 0 until the first seq is marked */
	uint64_t bits[SEQWIN_BITS / 64];
};

enum seqwin_answer { SEQWIN_NEW = 0, SEQWIN_SEEN = 1, SEQWIN_UNKNOWN = 2 };

enum seqwin_answer seqwin_test(const struct seqwin *win, uint64_t seq);
void seqwin_mark(struct seqwin *win, uint64_t seq);

struct fleet_vehicle {
	struct db_vehicle record;
	struct seqwin seen;
	uint64_t samples_accepted; /* since start */
	uint64_t session_id;       /* MQTT session connected as this vehicle, 0 if none */
};

struct fleet;

int fleet_new(struct fleet **out);
void fleet_free(struct fleet *fleet); /* accepts NULL */
/* Adds a copy of record; DM_ERR_EXISTS when its VIN or id is present. */
int fleet_add(struct fleet *fleet, const struct db_vehicle *record, struct fleet_vehicle **out);
struct fleet_vehicle *fleet_by_vin(const struct fleet *fleet, const char *vin, size_t len);
struct fleet_vehicle *fleet_by_id(const struct fleet *fleet, uint32_t id);
size_t fleet_count(const struct fleet *fleet);
/* Calls fn for every vehicle in id order; stops at a non-zero return. */
int fleet_each(const struct fleet *fleet, int (*fn)(void *arg, struct fleet_vehicle *v),
	       void *arg);

#endif
