/*
 * db.h — the SQLite backend: vehicles, blocks and the batches already stored.
 *
 * One struct db is one SQLite connection, used by one thread: the event loop
 * has one (registrations and reads), the flush thread another (block
 * writes). The database runs in WAL mode with synchronous=FULL, because the
 * engine deletes write-ahead-log segments once a flush commits: a commit
 * must be on disk when it returns.
 *
 * Strings and blobs handed to callbacks are SQLite's: borrowed, valid only
 * during the callback.
 */
#ifndef DM_DB_H
#define DM_DB_H

#include <stddef.h>
#include <stdint.h>

struct db;

struct db_vehicle {
	uint32_t id;
	char vin[18];
	char home[3];
	char home_site[64]; /* the site of its home jurisdiction that keeps its data */
	char model[65];
	char secret_hash[128];
	int64_t created_ms;
	int64_t erased_ms;   /* 0 while the vehicle's data exists; when it was erased */
	char erased_by[65];  /* the principal who erased it; "" while not erased */
};

struct db_stats {
	uint64_t vehicles;
	uint64_t blocks;
	uint64_t block_bytes;
	uint64_t samples;
};

int db_open(const char *path, struct db **out);
void db_close(struct db *db); /* accepts NULL */

/* Inserts v (vin, home, home_site, model, secret_hash, created_ms), sets v->id.
 * DM_ERR_EXISTS when the VIN is registered already. */
int db_vehicle_insert(struct db *db, struct db_vehicle *v);
int db_vehicle_get(struct db *db, const char *vin, struct db_vehicle *out);
int db_vehicle_each(struct db *db, int (*fn)(void *arg, const struct db_vehicle *v), void *arg);

/* Transactions for the flush: begin, any number of inserts, commit. */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);
int db_block_insert(struct db *db, uint32_t vehicle_id, const char *signal, int64_t t_min,
		    int64_t t_max, uint32_t count, uint64_t flush_gen, const uint8_t *data,
		    size_t len);
int db_batch_insert(struct db *db, uint32_t vehicle_id, uint64_t seq);

/* DM_OK when (vehicle, seq) is stored, DM_ERR_NOT_FOUND when not. */
int db_batch_exists(struct db *db, uint32_t vehicle_id, uint64_t seq);
/* The newest `limit` seqs stored for a vehicle, newest first, through fn. */
int db_batch_recent(struct db *db, uint32_t vehicle_id, unsigned limit,
		    void (*fn)(void *arg, uint64_t seq), void *arg);
/* The highest flush generation stored (0 for an empty store). */
int db_max_flush_gen(struct db *db, uint64_t *out);

/* Blocks of (vehicle, signal) overlapping [from, to], in time order; blocks
 * of flush generation skip_gen are left out (0: none is). */
int db_block_range(struct db *db, uint32_t vehicle_id, const char *signal, int64_t from,
		   int64_t to, uint64_t skip_gen,
		   int (*fn)(void *arg, const uint8_t *data, size_t len), void *arg);
/* The block of (vehicle, signal) with the newest t_max, if any. */
int db_block_newest(struct db *db, uint32_t vehicle_id, const char *signal, uint64_t skip_gen,
		    int (*fn)(void *arg, const uint8_t *data, size_t len), void *arg);

int db_stats(struct db *db, struct db_stats *out);

/* What the store holds per home jurisdiction, for the residency report's
 * self-check: a full scan of vehicles and blocks, so call it rarely. */
struct db_home_totals {
	char home[3];
	uint64_t vehicles, blocks, samples, bytes;
};
/* Calls fn once per home found in the vehicles table; *orphan_blocks is the
 * number of blocks whose vehicle is not in the vehicles table. */
int db_residency_scan(struct db *db, int (*fn)(void *arg, const struct db_home_totals *totals),
		      void *arg, uint64_t *orphan_blocks);

/* Small settings (the admin token's hash): get copies into out. */
int db_meta_get(struct db *db, const char *key, char *out, size_t out_len);
int db_meta_set(struct db *db, const char *key, const char *value);

#endif
