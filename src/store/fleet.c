/*
 * fleet.c — vehicles by id (a dense array: ids are SQLite rowids, handed out
 * in order) and by VIN (open addressing over the same entries).
 *
 * Invariants:
 *  1. by_id[id] is the vehicle with that id or NULL; ids above id_cap are
 *     absent.
 *  2. by_vin holds a power-of-two number of slots, at most half full.
 *  3. In a seqwin, bit (max - seq) is set iff seq was stored, for
 *     max - seq < SEQWIN_BITS.
 */
#include "store/fleet.h"

#include <string.h>

#include "util/alloc.h"
#include "util/err.h"

enum seqwin_answer seqwin_test(const struct seqwin *win, uint64_t seq)
{
	if (!win->any || seq > win->max)
		return SEQWIN_NEW;
	uint64_t back = win->max - seq;
	if (back >= SEQWIN_BITS)
		return SEQWIN_UNKNOWN;
	return (win->bits[back / 64] >> (back % 64)) & 1 ? SEQWIN_SEEN : SEQWIN_NEW;
}

void seqwin_mark(struct seqwin *win, uint64_t seq)
{
	if (!win->any) {
		win->any = 1;
		win->max = seq;
		memset(win->bits, 0, sizeof win->bits);
	} else if (seq > win->max) {
		uint64_t shift = seq - win->max;
		win->max = seq;
		if (shift >= SEQWIN_BITS) {
			memset(win->bits, 0, sizeof win->bits);
		} else {
			/* Shift the whole bitmap up by `shift` bits (towards older). */
			size_t words = SEQWIN_BITS / 64, whole = shift / 64, part = shift % 64;
			for (size_t i = words; i-- > 0;) {
				uint64_t hi = i >= whole ? win->bits[i - whole] : 0;
				uint64_t lo = i >= whole + 1 ? win->bits[i - whole - 1] : 0;
				win->bits[i] = part ? hi << part | lo >> (64 - part) : hi;
			}
		}
	}
	uint64_t back = win->max - seq;
	if (back < SEQWIN_BITS)
		win->bits[back / 64] |= 1ull << (back % 64);
}

struct fleet {
	struct fleet_vehicle **by_id;
	size_t id_cap;
	struct fleet_vehicle **by_vin;
	size_t vin_slots;
	size_t count;
};

int fleet_new(struct fleet **out)
{
	*out = NULL;
	struct fleet *fleet = dm_calloc(1, sizeof *fleet);
	if (!fleet)
		return DM_ERR_NOMEM;
	fleet->vin_slots = 256;
	fleet->by_vin = dm_calloc(fleet->vin_slots, sizeof *fleet->by_vin);
	if (!fleet->by_vin) {
		dm_free(fleet);
		return DM_ERR_NOMEM;
	}
	*out = fleet;
	return DM_OK;
}

void fleet_free(struct fleet *fleet)
{
	if (!fleet)
		return;
	for (size_t i = 0; i < fleet->id_cap; i++)
		dm_free(fleet->by_id[i]);
	dm_free(fleet->by_id);
	dm_free(fleet->by_vin);
	dm_free(fleet);
}

static uint64_t hash_vin(const char *vin, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)vin[i]) * 1099511628211ull;
	return h;
}

static struct fleet_vehicle **vin_slot(struct fleet_vehicle **slots, size_t count, const char *vin,
				       size_t len)
{
	size_t at = (size_t)hash_vin(vin, len) & (count - 1);
	for (;;) {
		struct fleet_vehicle *v = slots[at];
		if (!v || (strlen(v->record.vin) == len && memcmp(v->record.vin, vin, len) == 0))
			return &slots[at];
		at = (at + 1) & (count - 1);
	}
}

static int grow_vin(struct fleet *fleet)
{
	size_t count = fleet->vin_slots * 2;
	struct fleet_vehicle **slots = dm_calloc(count, sizeof *slots);
	if (!slots)
		return DM_ERR_NOMEM;
	for (size_t i = 0; i < fleet->vin_slots; i++) {
		struct fleet_vehicle *v = fleet->by_vin[i];
		if (v)
			*vin_slot(slots, count, v->record.vin, strlen(v->record.vin)) = v;
	}
	dm_free(fleet->by_vin);
	fleet->by_vin = slots;
	fleet->vin_slots = count;
	return DM_OK;
}

static int grow_id(struct fleet *fleet, uint32_t id)
{
	size_t cap = fleet->id_cap ? fleet->id_cap : 64;
	while (cap <= id)
		cap *= 2;
	struct fleet_vehicle **by_id = dm_realloc(fleet->by_id, cap * sizeof *by_id);
	if (!by_id)
		return DM_ERR_NOMEM;
	memset(by_id + fleet->id_cap, 0, (cap - fleet->id_cap) * sizeof *by_id);
	fleet->by_id = by_id;
	fleet->id_cap = cap;
	return DM_OK;
}

int fleet_add(struct fleet *fleet, const struct db_vehicle *record, struct fleet_vehicle **out)
{
	if (out)
		*out = NULL;
	size_t len = strlen(record->vin);
	if (fleet_by_id(fleet, record->id) || fleet_by_vin(fleet, record->vin, len))
		return DM_ERR_EXISTS;
	if ((fleet->count + 1) * 2 > fleet->vin_slots && grow_vin(fleet))
		return DM_ERR_NOMEM;
	if (record->id >= fleet->id_cap && grow_id(fleet, record->id))
		return DM_ERR_NOMEM;
	struct fleet_vehicle *v = dm_calloc(1, sizeof *v);
	if (!v)
		return DM_ERR_NOMEM;
	v->record = *record;
	fleet->by_id[record->id] = v;
	*vin_slot(fleet->by_vin, fleet->vin_slots, record->vin, len) = v;
	fleet->count++;
	if (out)
		*out = v;
	return DM_OK;
}

struct fleet_vehicle *fleet_by_vin(const struct fleet *fleet, const char *vin, size_t len)
{
	return *vin_slot(fleet->by_vin, fleet->vin_slots, vin, len);
}

struct fleet_vehicle *fleet_by_id(const struct fleet *fleet, uint32_t id)
{
	return id < fleet->id_cap ? fleet->by_id[id] : NULL;
}

size_t fleet_count(const struct fleet *fleet) { return fleet->count; }

int fleet_each(const struct fleet *fleet, int (*fn)(void *arg, struct fleet_vehicle *v), void *arg)
{
	for (size_t i = 0; i < fleet->id_cap; i++) {
		if (fleet->by_id[i]) {
			int rc = fn(arg, fleet->by_id[i]);
			if (rc)
				return rc;
		}
	}
	return DM_OK;
}
