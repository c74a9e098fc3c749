/*
 * batchset.c — open addressing with linear probing.
 *
 * Invariants:
 *  1. slot_count is 0 or a power of two, and count * 2 <= slot_count, so a
 *     probe always reaches an empty slot.
 *  2. A slot is empty iff its vehicle_id is 0 (SQLite rowids start at 1).
 */
#include "store/batchset.h"

#include "util/alloc.h"
#include "util/err.h"

static size_t slot_of(uint32_t vehicle_id, uint64_t seq, size_t slot_count)
{
	uint64_t h = (seq ^ (uint64_t)vehicle_id << 40) * 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 20) & (slot_count - 1);
}

static struct batch_ref *probe(struct batch_ref *slots, size_t slot_count, uint32_t vehicle_id,
			       uint64_t seq)
{
	size_t at = slot_of(vehicle_id, seq, slot_count);
	while (slots[at].vehicle_id &&
	       !(slots[at].vehicle_id == vehicle_id && slots[at].seq == seq))
		at = (at + 1) & (slot_count - 1);
	return &slots[at];
}

static int grow(struct batchset *set)
{
	size_t count = set->slot_count ? set->slot_count * 2 : 256;
	struct batch_ref *slots = dm_calloc(count, sizeof *slots);
	if (!slots)
		return DM_ERR_NOMEM;
	for (size_t i = 0; i < set->slot_count; i++)
		if (set->slots[i].vehicle_id)
			*probe(slots, count, set->slots[i].vehicle_id, set->slots[i].seq) =
				set->slots[i];
	dm_free(set->slots);
	set->slots = slots;
	set->slot_count = count;
	return DM_OK;
}

int batchset_add(struct batchset *set, uint32_t vehicle_id, uint64_t seq)
{
	if ((set->count + 1) * 2 > set->slot_count && grow(set))
		return DM_ERR_NOMEM;
	struct batch_ref *slot = probe(set->slots, set->slot_count, vehicle_id, seq);
	if (!slot->vehicle_id) {
		slot->vehicle_id = vehicle_id;
		slot->seq = seq;
		set->count++;
	}
	return DM_OK;
}

int batchset_has(const struct batchset *set, uint32_t vehicle_id, uint64_t seq)
{
	return set->slot_count && probe(set->slots, set->slot_count, vehicle_id, seq)->vehicle_id;
}

int batchset_each(const struct batchset *set, int (*fn)(void *arg, const struct batch_ref *ref),
		  void *arg)
{
	for (size_t i = 0; i < set->slot_count; i++) {
		if (set->slots[i].vehicle_id) {
			int rc = fn(arg, &set->slots[i]);
			if (rc)
				return rc;
		}
	}
	return DM_OK;
}

void batchset_free(struct batchset *set)
{
	dm_free(set->slots);
	set->slots = NULL;
	set->slot_count = set->count = 0;
}
