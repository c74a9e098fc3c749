/*
 * batchset.h — a set of (vehicle id, batch seq): the batches a generation
 * of the memtable holds. The flush writes them to the batches table with
 * the blocks; until then this set is how a retransmission of a batch that
 * is in memory, but older than the vehicle's seq window, is recognised.
 *
 * One thread at a time; a frozen generation's set is only read. Memory is
 * owned by the set (batchset_free).
 */
#ifndef DM_BATCHSET_H
#define DM_BATCHSET_H

#include <stddef.h>
#include <stdint.h>

struct batch_ref {
	uint32_t vehicle_id;
	uint64_t seq;
};

struct batchset {
	struct batch_ref *slots; /* vehicle_id 0 marks an empty slot (ids start at 1) */
	size_t slot_count;       /* 0 or a power of two */
	size_t count;
};

/* DM_OK (also when already present) or DM_ERR_NOMEM, the set unchanged. */
int batchset_add(struct batchset *set, uint32_t vehicle_id, uint64_t seq);
int batchset_has(const struct batchset *set, uint32_t vehicle_id, uint64_t seq);
/* Calls fn for each member, in no particular order; stops at a non-zero return. */
int batchset_each(const struct batchset *set, int (*fn)(void *arg, const struct batch_ref *ref),
		  void *arg);
void batchset_free(struct batchset *set);

#endif
