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

#include "crypto/keystore.h"

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
	int has_key;         /* wrapped_key holds the data key wrapped by the KEK */
	uint8_t wrapped_key[KEYSTORE_WRAPPED_LEN];
};

struct db_stats {
	uint64_t vehicles;
	uint64_t blocks;
	uint64_t block_bytes;
	uint64_t samples;
};

int db_open(const char *path, struct db **out);
void db_close(struct db *db); /* accepts NULL */

/* Inserts v (vin, home, home_site, model, secret_hash, created_ms, and
 * wrapped_key when has_key), sets v->id. DM_ERR_EXISTS when the VIN is
 * registered already. */
int db_vehicle_insert(struct db *db, struct db_vehicle *v);
int db_vehicle_get(struct db *db, const char *vin, struct db_vehicle *out);
int db_vehicle_each(struct db *db, int (*fn)(void *arg, const struct db_vehicle *v), void *arg);
/* Replaces a vehicle's wrapped key (after a KEK rotation). DM_ERR_NOT_FOUND
 * when no vehicle of that id holds one. */
int db_vehicle_set_key(struct db *db, uint32_t id, const uint8_t blob[KEYSTORE_WRAPPED_LEN]);
/* Drops a vehicle's wrapped key and marks it erased, durably. DM_ERR_GONE
 * when it was erased before. */
int db_vehicle_erase(struct db *db, uint32_t id, int64_t erased_ms, const char *by);
/* Compaction after erasure: deletes every block and batch row of erased
 * vehicles in one transaction (overwritten in place: secure_delete), then
 * truncates SQLite's write-ahead log. *removed counts the blocks, their
 * bytes and samples deleted (its vehicles field stays 0). DM_ERR_STATE
 * when a reader kept the log from being truncated (the rows are gone; call
 * again later). */
struct db_stats;
int db_compact_erased(struct db *db, struct db_stats *removed);

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

/* A block row as a read hands it out: the block and the row's window. */
struct db_block_row {
	const uint8_t *data;
	size_t len;
	int64_t t_min, t_max;
};
/* Blocks of (vehicle, signal) overlapping [from, to], in time order; blocks
 * of flush generation skip_gen are left out (0: none is). */
int db_block_range(struct db *db, uint32_t vehicle_id, const char *signal, int64_t from,
		   int64_t to, uint64_t skip_gen,
		   int (*fn)(void *arg, const struct db_block_row *row), void *arg);
/* The block of (vehicle, signal) with the newest t_max, if any. */
int db_block_newest(struct db *db, uint32_t vehicle_id, const char *signal, uint64_t skip_gen,
		    int (*fn)(void *arg, const struct db_block_row *row), void *arg);

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

/* ==== Principals and erasure requests (issue 5: roles, erasure) ==== */

/*
 * The API's own tables, made by db_roles_init (idempotent, on the loop's
 * connection at start):
 *
 *   principals(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, role TEXT,
 *              token_hash TEXT, created_ms, created_by, deleted_ms, deleted_by)
 *   principal_vins(principal_id, vin) primary key: an owner's vehicles
 *   erasure_requests(id INTEGER PRIMARY KEY AUTOINCREMENT, vin, requested_by,
 *              requested_ms, status, decided_by, decided_ms)
 *
 * Invariants:
 *  1. Ids are never reused (AUTOINCREMENT): a token names its principal's id,
 *     so a token of a deleted principal can never match a later one.
 *  2. A deleted principal's row stays, with its token hash wiped, so its name
 *     is never given again and every name in a record means one principal.
 *  3. An erasure request moves once, from "pending" to "approved" or
 *     "rejected"; decided requests are not changed again.
 */

#define DB_NAME_SIZE 65 /* a principal's name, 1..64 bytes, and its NUL */

struct db_principal {
	int64_t id;
	char name[DB_NAME_SIZE];
	char role[32];
	char token_hash[128];
	int64_t created_ms;
	char created_by[DB_NAME_SIZE];
};

int db_roles_init(struct db *db);
/* Inserts p (all but id) and its owner's vins in one transaction and sets
 * p->id. DM_ERR_EXISTS when the name was ever used, deleted or not. */
int db_principal_insert(struct db *db, struct db_principal *p, const char *const *vins,
			size_t vin_count);
/* Marks the live principal `name` deleted and wipes its token hash.
 * DM_ERR_NOT_FOUND when no live principal has that name. */
int db_principal_delete(struct db *db, const char *name, const char *by, int64_t now_ms);
/* Every live principal, in id order. */
int db_principal_each(struct db *db, int (*fn)(void *arg, const struct db_principal *p),
		      void *arg);
/* Every (principal id, vin) of live principals, in id order. */
int db_principal_vin_each(struct db *db,
			  int (*fn)(void *arg, int64_t principal_id, const char *vin), void *arg);

struct db_erasure_request {
	int64_t id;
	char vin[18];
	char requested_by[DB_NAME_SIZE];
	int64_t requested_ms;
	char status[16]; /* "pending", "approved" or "rejected" */
	char decided_by[DB_NAME_SIZE];
	int64_t decided_ms; /* 0 while pending */
};

/* Inserts r (vin, requested_by, requested_ms) as pending; sets r->id and
 * r->status. */
int db_erasure_request_insert(struct db *db, struct db_erasure_request *r);
/* DM_ERR_NOT_FOUND when there is no such request. */
int db_erasure_request_get(struct db *db, int64_t id, struct db_erasure_request *out);
/* The oldest pending request for vin; DM_ERR_NOT_FOUND when none is. */
int db_erasure_request_pending(struct db *db, const char *vin, struct db_erasure_request *out);
/* Decides a pending request: status "approved" or "rejected". DM_ERR_NOT_FOUND
 * when there is no such request, DM_ERR_STATE when it was decided already. */
int db_erasure_request_decide(struct db *db, int64_t id, const char *status, const char *by,
			      int64_t now_ms);
/* Approves every pending request for vin (the vehicle was erased directly). */
int db_erasure_request_close(struct db *db, const char *vin, const char *by, int64_t now_ms);
/* Requests newest first, at most limit; status NULL for every status. */
int db_erasure_request_each(struct db *db, const char *status, unsigned limit,
			    int (*fn)(void *arg, const struct db_erasure_request *r), void *arg);

/* ==== end of principals and erasure requests ==== */

#endif
