/*
 * engine.h — the storage engine: the write path from an accepted batch to a
 * durable acknowledgement, and the read path from blocks and memory.
 *
 * Write path (loop thread): engine_ingest appends the batch, as it arrived,
 * to the write-ahead log; once the log's group commit has fsynced it, the
 * batch's samples go into the memtable and the caller's ack callback runs.
 * A batch whose (vehicle, seq) is already stored is not stored again.
 * Every flush_interval_ms the memtable is frozen and a flush thread turns it
 * into blocks in SQLite; the log segments it covered are then deleted.
 *
 * Read path (loop thread): samples come from blocks, the frozen memtable and
 * the live one, merged in time order.
 *
 * Vehicles are registered through the engine (it owns the database
 * connection and the fleet). Registration is durable when engine_register
 * returns.
 */
#ifndef DM_ENGINE_H
#define DM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "ingest/payload.h"
#include "store/block.h"
#include "store/fleet.h"
#include "util/buf.h"

struct event_base;
struct engine;

/* What the caller needs back when a batch is durable: opaque to the engine. */
struct engine_ack {
	uint64_t session_id;
	uint16_t packet_id;
	uint64_t received_ns; /* dm_mono_ns() at arrival, for latency */
	size_t samples, bytes; /* for metrics */
	int duplicate;         /* set by the engine: the batch was stored before */
};

/* status DM_OK: the batch is durable (or was stored before); otherwise the
 * log failed and the batch must not be acknowledged. Runs on the loop. */
typedef void (*engine_ack_cb)(void *arg, const struct engine_ack *ack, int status);

/* Called on the flush thread after each flush, for metrics. */
struct engine_flush_report {
	size_t blocks;
	size_t block_bytes;
	size_t samples;
	uint64_t duration_ns;
	int status;
};

struct keystore;

struct engine_options {
	const char *jurisdiction; /* the node's: the only home the store accepts */
	const char *data_dir;
	/* The jurisdiction's KEK (borrowed, must outlive the engine): every
	 * vehicle's data key is wrapped by it, and log records and blocks are
	 * sealed. NULL keeps samples in clear, for tests only; a store is
	 * created one way and refuses to be opened the other. */
	struct keystore *keystore;
	const struct catalog *catalog;        /* borrowed, must outlive the engine */
	unsigned flush_interval_ms;
	size_t block_max_samples;             /* 0: 65536 */
	engine_ack_cb on_ack;
	void (*on_flush)(void *arg, const struct engine_flush_report *report);
	/* Called on the flush thread for every block written, for metrics. */
	void (*on_block)(void *arg, size_t samples, size_t bytes);
	void (*on_commit)(void *arg, size_t records, size_t bytes, uint64_t fsync_ns);
	/* Called on the loop (or in engine_close) after compactions of erased
	 * vehicles' data: once with DM_OK when one or more succeeded since the
	 * last call, with what every attempt since removed, removed->vehicles
	 * counting the erasures of this process they completed (those
	 * committed before each began; erasures left from before a restart
	 * are not counted, their blocks are); and once with the status of a
	 * failure, if any, ordered so that the last call tells the latest
	 * outcome. A failed compaction is retried at every flush tick (and
	 * reported again); an attempt that found SQLite's log busy is retried
	 * too, and not reported. May be NULL. */
	void (*on_compacted)(void *arg, int status, const struct db_stats *removed);
	void *arg;
};

/* Opens the database and the log under data_dir, loads the fleet, replays
 * the log into the memtable and starts the log writer and flush thread. */
int engine_open(struct event_base *base, const struct engine_options *options,
		struct engine **out);

/* Stops taking batches, waits for the log to sync what it holds (acks for
 * it are delivered through on_ack), flushes memory into blocks, and frees
 * everything. Accepts NULL. */
void engine_close(struct engine *engine);

/*
 * Takes a decoded, validated batch of `vehicle`. `payload` is the batch as
 * it arrived (it is what the log keeps). A batch whose (vehicle, seq) is
 * already stored is not stored again, but its ack still comes through
 * on_ack (with ack->duplicate set), in order behind the acks before it.
 * Returns:
 *   DM_OK          the ack will come through on_ack once durable;
 *   DM_ERR_STATE   the log is in its error state: do not acknowledge;
 *   DM_ERR_DENIED  the vehicle's home is not the node's jurisdiction;
 *   other errors   nothing was queued.
 */
int engine_ingest(struct engine *engine, struct fleet_vehicle *vehicle, const uint8_t *payload,
		  size_t payload_len, enum payload_format format, const struct payload_batch *batch,
		  const struct engine_ack *ack);

/* Registers a vehicle. On success *out is the fleet's entry and secret (at
 * least 44 bytes) holds the MQTT secret, which is stored only as a hash.
 * DM_ERR_EXISTS when the VIN is registered; DM_ERR_DENIED when home is not
 * the node's jurisdiction: the store's own last line of defence for
 * residency, whatever the caller above it checked. */
int engine_register(struct engine *engine, const char *vin, const char *home,
		    const char *home_site, const char *model, char *secret, size_t secret_len,
		    struct fleet_vehicle **out);

/*
 * Erases a vehicle (promise 6 of DESIGN.md): its data key is destroyed at
 * once, so from the moment this returns no read of its samples succeeds
 * (engine_query and engine_latest return DM_ERR_GONE) and what remains on
 * disk is ciphertext nobody can open. Compaction then removes its blocks,
 * its samples still in memory and the log segments that held its records.
 * The vehicle's row stays, marked erased (vehicle->record.erased_ms and
 * erased_by = `by`, the principal's name), so the store can show when and by
 * whom. Returns DM_OK; DM_ERR_GONE when it was erased already; DM_ERR_DB,
 * DM_ERR_IO when the erasure could not be made durable (nothing changed).
 */
int engine_erase(struct engine *engine, struct fleet_vehicle *vehicle, const char *by);

/* Rotates the KEK (keystore_rotate) and re-wraps every vehicle's data key
 * under the new one in one transaction; blocks are not rewritten (they are
 * sealed with the data keys, which do not change). The old KEK is dropped
 * once the transaction commits; if it does not, the old KEK stays and every
 * key still unwraps. A rotation that failed after making its KEK current
 * (not known to be durable) stops the engine from wrapping any new key
 * until it is reopened: registrations and rotations return DM_ERR_STATE.
 * Loop thread; it holds a write transaction while it wraps every key.
 * Returns DM_OK with the new KEK id in *new_id; DM_ERR_UNSUPPORTED in a
 * store kept in clear; DM_ERR_STATE as said; what keystore_rotate and the
 * database return. */
int engine_rotate_kek(struct engine *engine, uint32_t *new_id);

struct fleet *engine_fleet(struct engine *engine);

/* The residency self-check's scan of the store (see db_residency_scan). */
int engine_residency_scan(struct engine *engine,
			  int (*fn)(void *arg, const struct db_home_totals *totals), void *arg,
			  uint64_t *orphan_blocks);

/* Small durable settings (the admin token's hash), copied into out. */
int engine_setting_get(struct engine *engine, const char *key, char *out, size_t out_len);
int engine_setting_set(struct engine *engine, const char *key, const char *value);
const struct catalog *engine_catalog(const struct engine *engine);

/* Samples of one series in [from, to], time order. The arrays are owned by
 * the struct: free with engine_series_free. strings holds string values
 * (vals[k].i is an offset, NUL-terminated). At most `limit` samples, the
 * oldest first; truncated is set when more existed. */
struct engine_series {
	uint8_t type;
	size_t count, cap;
	int64_t *ts;
	union block_num *vals;
	struct dm_buf strings;
	int truncated;
};

/* Both return DM_ERR_GONE for an erased vehicle. */
int engine_query(struct engine *engine, const struct fleet_vehicle *vehicle, uint16_t signal,
		 int64_t from, int64_t to, size_t limit, struct engine_series *out);
/* The newest sample of a series: out->count is 0 or 1. */
int engine_latest(struct engine *engine, const struct fleet_vehicle *vehicle, uint16_t signal,
		  struct engine_series *out);
void engine_series_free(struct engine_series *series);

/* What the engine holds. Cheap: nothing here reads the database (the
 * store's totals are counted at open and kept up to date by flushes). */
struct engine_stats {
	uint64_t memtable_samples;
	uint64_t memtable_bytes;
	uint64_t wal_pending_bytes;
	int wal_failed;    /* the log is in its error state: nothing is acknowledged */
	int flush_failing; /* the last flush into the database failed (retried) */
	int compaction_pending; /* an erased vehicle's blocks may still be stored */
	struct db_stats db;
};
void engine_stats(struct engine *engine, struct engine_stats *out);

/* ==== The loop's database connection, for the API's tables (issue 5: roles) ==== */

/* The connection the engine uses on the loop thread, for the tables the
 * engine does not own (principals, erasure requests: see db.h). Borrowed,
 * valid until engine_close; loop thread only. */
struct db *engine_db(struct engine *engine);

/* ==== end of the API's tables ==== */

#endif
