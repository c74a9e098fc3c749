/*
 * db.c — SQLite schema and statements.
 *
 * Schema (version 2, in table meta under 'schema_version'):
 *   vehicles(id INTEGER PRIMARY KEY, vin TEXT UNIQUE, home TEXT, home_site TEXT,
 *            model TEXT, secret_hash TEXT, created_ms INTEGER,
 *            wrapped_key BLOB (the data key wrapped by the KEK; NULL in a
 *            store kept in clear, and once erased), erased_ms, erased_by)
 *   blocks(vehicle_id, signal TEXT, t_min, t_max, count, flush_gen, data BLOB)
 *            indexed by (vehicle_id, signal, t_min)
 *   batches(vehicle_id, seq) primary key: every batch whose samples are in
 *            blocks, so a retransmission is recognised after a restart
 *   meta(key TEXT PRIMARY KEY, value TEXT)
 *
 * Invariants:
 *  1. A batch's row in `batches` and its samples' blocks are written in the
 *     same transaction: a batch is either stored whole and known, or neither.
 *  2. Blocks carry the signal's path, not the catalog id, so a catalog that
 *     gains or reorders signals still reads old blocks.
 *  3. An erased vehicle's row keeps no key (wrapped_key NULL); every
 *     connection runs with secure_delete, so the blocks compaction deletes
 *     are overwritten in the file, and compaction truncates SQLite's own
 *     write-ahead log so no copy of their pages stays there.
 */
#include "store/db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"

enum stmt_id {
	ST_VEHICLE_INSERT,
	ST_VEHICLE_GET,
	ST_VEHICLE_ALL,
	ST_BLOCK_INSERT,
	ST_BATCH_INSERT,
	ST_BATCH_EXISTS,
	ST_BATCH_RECENT,
	ST_MAX_GEN,
	ST_BLOCK_RANGE,
	ST_BLOCK_NEWEST,
	ST_META_GET,
	ST_META_SET,
	ST_VEHICLE_SET_KEY,
	ST_VEHICLE_ERASE,
	ST_COUNT
};

#define VEHICLE_COLUMNS                                                                            \
	"id, vin, home, home_site, model, secret_hash, created_ms, wrapped_key, erased_ms, "       \
	"erased_by"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_VEHICLE_INSERT] = "INSERT INTO vehicles(vin, home, home_site, model, secret_hash, "
			      "created_ms, wrapped_key) VALUES(?, ?, ?, ?, ?, ?, ?)",
	[ST_VEHICLE_GET] = "SELECT " VEHICLE_COLUMNS " FROM vehicles WHERE vin = ?",
	[ST_VEHICLE_ALL] = "SELECT " VEHICLE_COLUMNS " FROM vehicles ORDER BY id",
	[ST_VEHICLE_SET_KEY] = "UPDATE vehicles SET wrapped_key = ? WHERE id = ? AND erased_ms = 0",
	[ST_VEHICLE_ERASE] = "UPDATE vehicles SET wrapped_key = NULL, erased_ms = ?, erased_by = ? "
			     "WHERE id = ? AND erased_ms = 0",
	[ST_BLOCK_INSERT] = "INSERT INTO blocks(vehicle_id, signal, t_min, t_max, count, "
			    "flush_gen, data) VALUES(?, ?, ?, ?, ?, ?, ?)",
	/* Plain INSERT: a batch flushed twice is a bug, and must fail loudly. */
	[ST_BATCH_INSERT] = "INSERT INTO batches(vehicle_id, seq) VALUES(?, ?)",
	[ST_BATCH_EXISTS] = "SELECT 1 FROM batches WHERE vehicle_id = ? AND seq = ?",
	[ST_BATCH_RECENT] = "SELECT seq FROM batches WHERE vehicle_id = ? ORDER BY seq DESC "
			    "LIMIT ?",
	[ST_MAX_GEN] = "SELECT COALESCE(MAX(flush_gen), 0) FROM blocks",
	[ST_BLOCK_RANGE] = "SELECT data, t_min, t_max FROM blocks WHERE vehicle_id = ? "
			   "AND signal = ? AND t_max >= ? AND t_min <= ? AND flush_gen != ? "
			   "ORDER BY t_min",
	[ST_BLOCK_NEWEST] = "SELECT data, t_min, t_max FROM blocks WHERE vehicle_id = ? "
			    "AND signal = ? AND flush_gen != ? ORDER BY t_max DESC LIMIT 1",
	[ST_META_GET] = "SELECT value FROM meta WHERE key = ?",
	[ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?, ?) "
			"ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

#define SCHEMA_VERSION "2"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS vehicles(id INTEGER PRIMARY KEY, vin TEXT UNIQUE NOT NULL,"
	" home TEXT NOT NULL, home_site TEXT NOT NULL, model TEXT NOT NULL,"
	" secret_hash TEXT NOT NULL,"
	" created_ms INTEGER NOT NULL,"
	" wrapped_key BLOB,"                          /* NULL: store in clear, or erased */
	" erased_ms INTEGER NOT NULL DEFAULT 0,"
	" erased_by TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS blocks(vehicle_id INTEGER NOT NULL, signal TEXT NOT NULL,"
	" t_min INTEGER NOT NULL, t_max INTEGER NOT NULL, count INTEGER NOT NULL,"
	" flush_gen INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE INDEX IF NOT EXISTS blocks_by_series ON blocks(vehicle_id, signal, t_min);"
	"CREATE TABLE IF NOT EXISTS batches(vehicle_id INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" PRIMARY KEY(vehicle_id, seq)) WITHOUT ROWID;"
	"INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '" SCHEMA_VERSION "');";

struct db {
	sqlite3 *conn;
	sqlite3_stmt *stmt[ST_COUNT];
};

static int db_fail(struct db *db, const char *what)
{
	dm_error("sqlite: %s: %s", what, sqlite3_errmsg(db->conn));
	return DM_ERR_DB;
}

/* A store made by another version of the schema is refused by name, not
 * with whatever statement first meets a missing column. */
static int check_schema_version(struct db *db, const char *path)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(db->conn, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
			       &stmt, NULL) != SQLITE_OK)
		return db_fail(db, path);
	char version[16] = "";
	if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
		snprintf(version, sizeof version, "%s", (const char *)sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	if (strcmp(version, SCHEMA_VERSION) == 0)
		return DM_OK;
	dm_error("%s has schema version '%s'; this build reads version %s and has no migration "
		 "from it",
		 path, version, SCHEMA_VERSION);
	return DM_ERR_UNSUPPORTED;
}

int db_open(const char *path, struct db **out)
{
	*out = NULL;
	struct db *db = dm_calloc(1, sizeof *db);
	if (!db)
		return DM_ERR_NOMEM;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &db->conn, flags, NULL) != SQLITE_OK) {
		int rc = db->conn ? db_fail(db, path) : DM_ERR_NOMEM;
		db_close(db);
		return rc;
	}
	sqlite3_busy_timeout(db->conn, 10000);
	char *msg = NULL;
	if (sqlite3_exec(db->conn,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
			 /* Deleted rows (an erased vehicle's blocks) are overwritten,
			  * not left in free pages. */
			 " PRAGMA secure_delete=ON;",
			 NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(db->conn, schema, NULL, NULL, &msg) != SQLITE_OK) {
		dm_error("sqlite: %s: %s", path, msg ? msg : "cannot set up schema");
		sqlite3_free(msg);
		db_close(db);
		return DM_ERR_DB;
	}
	if (check_schema_version(db, path) != DM_OK) {
		db_close(db);
		return DM_ERR_UNSUPPORTED;
	}
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(db->conn, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &db->stmt[i], NULL) != SQLITE_OK) {
			int rc = db_fail(db, stmt_sql[i]);
			db_close(db);
			return rc;
		}
	}
	*out = db;
	return DM_OK;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(db->stmt[i]);
	sqlite3_close(db->conn);
	dm_free(db);
}

/* Every statement use starts from a clean slate and ends reset, so a failed
 * step never leaves a read transaction open. */
static sqlite3_stmt *use(struct db *db, enum stmt_id id)
{
	sqlite3_stmt *stmt = db->stmt[id];
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return stmt;
}

static int step_done(struct db *db, sqlite3_stmt *stmt, const char *what)
{
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc == SQLITE_DONE)
		return DM_OK;
	if (rc == SQLITE_CONSTRAINT)
		return DM_ERR_EXISTS;
	return db_fail(db, what);
}

static void copy_text(char *out, size_t out_len, const unsigned char *text)
{
	snprintf(out, out_len, "%s", text ? (const char *)text : "");
}

static void read_vehicle(sqlite3_stmt *stmt, struct db_vehicle *v)
{
	memset(v, 0, sizeof *v);
	v->id = (uint32_t)sqlite3_column_int64(stmt, 0);
	copy_text(v->vin, sizeof v->vin, sqlite3_column_text(stmt, 1));
	copy_text(v->home, sizeof v->home, sqlite3_column_text(stmt, 2));
	copy_text(v->home_site, sizeof v->home_site, sqlite3_column_text(stmt, 3));
	copy_text(v->model, sizeof v->model, sqlite3_column_text(stmt, 4));
	copy_text(v->secret_hash, sizeof v->secret_hash, sqlite3_column_text(stmt, 5));
	v->created_ms = sqlite3_column_int64(stmt, 6);
	if (sqlite3_column_bytes(stmt, 7) == KEYSTORE_WRAPPED_LEN) {
		memcpy(v->wrapped_key, sqlite3_column_blob(stmt, 7), KEYSTORE_WRAPPED_LEN);
		v->has_key = 1;
	}
	v->erased_ms = sqlite3_column_int64(stmt, 8);
	copy_text(v->erased_by, sizeof v->erased_by, sqlite3_column_text(stmt, 9));
}

int db_vehicle_insert(struct db *db, struct db_vehicle *v)
{
	sqlite3_stmt *stmt = use(db, ST_VEHICLE_INSERT);
	sqlite3_bind_text(stmt, 1, v->vin, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, v->home, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, v->home_site, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, v->model, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, v->secret_hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 6, v->created_ms);
	if (v->has_key)
		sqlite3_bind_blob(stmt, 7, v->wrapped_key, KEYSTORE_WRAPPED_LEN, SQLITE_STATIC);
	int rc = step_done(db, stmt, "insert vehicle");
	if (rc == DM_OK)
		v->id = (uint32_t)sqlite3_last_insert_rowid(db->conn);
	return rc;
}

int db_vehicle_get(struct db *db, const char *vin, struct db_vehicle *out)
{
	sqlite3_stmt *stmt = use(db, ST_VEHICLE_GET);
	sqlite3_bind_text(stmt, 1, vin, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		read_vehicle(stmt, out);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return DM_OK;
	return rc == SQLITE_DONE ? DM_ERR_NOT_FOUND : db_fail(db, "get vehicle");
}

int db_vehicle_each(struct db *db, int (*fn)(void *arg, const struct db_vehicle *v), void *arg)
{
	sqlite3_stmt *stmt = use(db, ST_VEHICLE_ALL);
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct db_vehicle v;
		read_vehicle(stmt, &v);
		int status = fn(arg, &v);
		if (status) {
			sqlite3_reset(stmt);
			return status;
		}
	}
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? DM_OK : db_fail(db, "list vehicles");
}

int db_vehicle_set_key(struct db *db, uint32_t id, const uint8_t blob[KEYSTORE_WRAPPED_LEN])
{
	sqlite3_stmt *stmt = use(db, ST_VEHICLE_SET_KEY);
	sqlite3_bind_blob(stmt, 1, blob, KEYSTORE_WRAPPED_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, id);
	int rc = step_done(db, stmt, "store a vehicle's key");
	if (rc == DM_OK && sqlite3_changes(db->conn) != 1)
		rc = DM_ERR_NOT_FOUND;
	return rc;
}

int db_vehicle_erase(struct db *db, uint32_t id, int64_t erased_ms, const char *by)
{
	sqlite3_stmt *stmt = use(db, ST_VEHICLE_ERASE);
	sqlite3_bind_int64(stmt, 1, erased_ms);
	sqlite3_bind_text(stmt, 2, by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, id);
	int rc = step_done(db, stmt, "erase a vehicle");
	if (rc == DM_OK && sqlite3_changes(db->conn) != 1)
		rc = DM_ERR_GONE;
	return rc;
}

static int exec(struct db *db, const char *sql)
{
	return sqlite3_exec(db->conn, sql, NULL, NULL, NULL) == SQLITE_OK ? DM_OK
									  : db_fail(db, sql);
}

int db_begin(struct db *db) { return exec(db, "BEGIN IMMEDIATE"); }
int db_commit(struct db *db) { return exec(db, "COMMIT"); }

void db_rollback(struct db *db)
{
	if (!sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
}

int db_block_insert(struct db *db, uint32_t vehicle_id, const char *signal, int64_t t_min,
		    int64_t t_max, uint32_t count, uint64_t flush_gen, const uint8_t *data,
		    size_t len)
{
	sqlite3_stmt *stmt = use(db, ST_BLOCK_INSERT);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_text(stmt, 2, signal, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, t_min);
	sqlite3_bind_int64(stmt, 4, t_max);
	sqlite3_bind_int64(stmt, 5, count);
	sqlite3_bind_int64(stmt, 6, (sqlite3_int64)flush_gen);
	sqlite3_bind_blob64(stmt, 7, data, len, SQLITE_STATIC);
	return step_done(db, stmt, "insert block");
}

int db_batch_insert(struct db *db, uint32_t vehicle_id, uint64_t seq)
{
	sqlite3_stmt *stmt = use(db, ST_BATCH_INSERT);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64)seq);
	return step_done(db, stmt, "insert batch");
}

int db_batch_exists(struct db *db, uint32_t vehicle_id, uint64_t seq)
{
	sqlite3_stmt *stmt = use(db, ST_BATCH_EXISTS);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64)seq);
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return DM_OK;
	return rc == SQLITE_DONE ? DM_ERR_NOT_FOUND : db_fail(db, "look up batch");
}

int db_batch_recent(struct db *db, uint32_t vehicle_id, unsigned limit,
		    void (*fn)(void *arg, uint64_t seq), void *arg)
{
	sqlite3_stmt *stmt = use(db, ST_BATCH_RECENT);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_int64(stmt, 2, limit);
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		fn(arg, (uint64_t)sqlite3_column_int64(stmt, 0));
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? DM_OK : db_fail(db, "recent batches");
}

int db_max_flush_gen(struct db *db, uint64_t *out)
{
	sqlite3_stmt *stmt = use(db, ST_MAX_GEN);
	int rc = sqlite3_step(stmt);
	*out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW ? DM_OK : db_fail(db, "max flush generation");
}

static int each_blob(struct db *db, sqlite3_stmt *stmt,
		     int (*fn)(void *arg, const struct db_block_row *row), void *arg)
{
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct db_block_row row = {
			.data = sqlite3_column_blob(stmt, 0),
			.len = (size_t)sqlite3_column_bytes(stmt, 0),
			.t_min = sqlite3_column_int64(stmt, 1),
			.t_max = sqlite3_column_int64(stmt, 2),
		};
		int status = fn(arg, &row);
		if (status) {
			sqlite3_reset(stmt);
			return status;
		}
	}
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? DM_OK : db_fail(db, "read blocks");
}

int db_block_range(struct db *db, uint32_t vehicle_id, const char *signal, int64_t from,
		   int64_t to, uint64_t skip_gen,
		   int (*fn)(void *arg, const struct db_block_row *row), void *arg)
{
	sqlite3_stmt *stmt = use(db, ST_BLOCK_RANGE);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_text(stmt, 2, signal, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, from);
	sqlite3_bind_int64(stmt, 4, to);
	sqlite3_bind_int64(stmt, 5, (sqlite3_int64)skip_gen);
	return each_blob(db, stmt, fn, arg);
}

int db_block_newest(struct db *db, uint32_t vehicle_id, const char *signal, uint64_t skip_gen,
		    int (*fn)(void *arg, const struct db_block_row *row), void *arg)
{
	sqlite3_stmt *stmt = use(db, ST_BLOCK_NEWEST);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_text(stmt, 2, signal, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, (sqlite3_int64)skip_gen);
	return each_blob(db, stmt, fn, arg);
}

/* Runs a query of one row and copies its first columns into a, b and c
 * (b and c may be NULL when the query has fewer). */
static int count_query(struct db *db, const char *sql, uint64_t *a, uint64_t *b, uint64_t *c)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &stmt, NULL) != SQLITE_OK)
		return db_fail(db, sql);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*a = (uint64_t)sqlite3_column_int64(stmt, 0);
		if (b)
			*b = (uint64_t)sqlite3_column_int64(stmt, 1);
		if (c)
			*c = (uint64_t)sqlite3_column_int64(stmt, 2);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW ? DM_OK : db_fail(db, sql);
}

int db_compact_erased(struct db *db, struct db_stats *removed)
{
	memset(removed, 0, sizeof *removed);
	static const char erased[] = "(SELECT id FROM vehicles WHERE erased_ms != 0)";
	char sql[256];
	int rc = db_begin(db);
	if (rc == DM_OK) {
		snprintf(sql, sizeof sql,
			 "SELECT COUNT(*), COALESCE(SUM(length(data)), 0), COALESCE(SUM(count), 0) "
			 "FROM blocks WHERE vehicle_id IN %s",
			 erased);
		rc = count_query(db, sql, &removed->blocks, &removed->block_bytes,
				 &removed->samples);
	}
	if (rc == DM_OK && removed->blocks) {
		snprintf(sql, sizeof sql, "DELETE FROM blocks WHERE vehicle_id IN %s", erased);
		rc = exec(db, sql);
	}
	if (rc == DM_OK) {
		snprintf(sql, sizeof sql, "DELETE FROM batches WHERE vehicle_id IN %s", erased);
		rc = exec(db, sql);
	}
	if (rc == DM_OK)
		rc = db_commit(db);
	if (rc) {
		db_rollback(db);
		memset(removed, 0, sizeof *removed);
		return rc;
	}
	/* The deleted pages were overwritten in SQLite's WAL; copy them home
	 * and empty the WAL, or the old page images stay in store.db-wal. */
	int log_frames = 0, moved = 0;
	if (sqlite3_wal_checkpoint_v2(db->conn, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
				      &moved) != SQLITE_OK) {
		int code = sqlite3_errcode(db->conn);
		if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
			return DM_ERR_STATE; /* a reader holds an old snapshot: try again */
		return db_fail(db, "checkpoint");
	}
	return DM_OK;
}

int db_stats(struct db *db, struct db_stats *out)
{
	memset(out, 0, sizeof *out);
	int rc = count_query(db, "SELECT COUNT(*) FROM vehicles", &out->vehicles, NULL, NULL);
	if (rc == DM_OK)
		rc = count_query(db,
				 "SELECT COUNT(*), COALESCE(SUM(length(data)), 0), "
				 "COALESCE(SUM(count), 0) FROM blocks",
				 &out->blocks, &out->block_bytes, &out->samples);
	return rc;
}

int db_meta_get(struct db *db, const char *key, char *out, size_t out_len)
{
	sqlite3_stmt *stmt = use(db, ST_META_GET);
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		copy_text(out, out_len, sqlite3_column_text(stmt, 0));
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return DM_OK;
	return rc == SQLITE_DONE ? DM_ERR_NOT_FOUND : db_fail(db, "read setting");
}

int db_meta_set(struct db *db, const char *key, const char *value)
{
	sqlite3_stmt *stmt = use(db, ST_META_SET);
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
	return step_done(db, stmt, "write setting");
}

int db_residency_scan(struct db *db, int (*fn)(void *arg, const struct db_home_totals *totals),
		      void *arg, uint64_t *orphan_blocks)
{
	static const char by_home[] =
		"SELECT v.home, COUNT(DISTINCT v.id), COUNT(b.vehicle_id), "
		"COALESCE(SUM(b.count), 0), COALESCE(SUM(length(b.data)), 0) "
		"FROM vehicles v LEFT JOIN blocks b ON b.vehicle_id = v.id GROUP BY v.home";
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(db->conn, by_home, -1, &stmt, NULL) != SQLITE_OK)
		return db_fail(db, "residency scan");
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct db_home_totals totals = {0};
		copy_text(totals.home, sizeof totals.home, sqlite3_column_text(stmt, 0));
		totals.vehicles = (uint64_t)sqlite3_column_int64(stmt, 1);
		totals.blocks = (uint64_t)sqlite3_column_int64(stmt, 2);
		totals.samples = (uint64_t)sqlite3_column_int64(stmt, 3);
		totals.bytes = (uint64_t)sqlite3_column_int64(stmt, 4);
		int status = fn(arg, &totals);
		if (status) {
			sqlite3_finalize(stmt);
			return status;
		}
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		return db_fail(db, "residency scan");
	return count_query(db,
			   "SELECT COUNT(*), 0 FROM blocks WHERE vehicle_id NOT IN "
			   "(SELECT id FROM vehicles)",
			   orphan_blocks, NULL, NULL);
}

/* ==== Principals and erasure requests (issue 5: roles, erasure) ====
 *
 * The tables and their invariants are described in db.h. These statements
 * run rarely (a principal added or removed, an erasure asked for or
 * decided), so each is prepared when used rather than kept. */

static const char roles_schema[] =
	"CREATE TABLE IF NOT EXISTS principals(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT UNIQUE NOT NULL, role TEXT NOT NULL, token_hash TEXT NOT NULL,"
	" created_ms INTEGER NOT NULL, created_by TEXT NOT NULL,"
	" deleted_ms INTEGER NOT NULL DEFAULT 0, deleted_by TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS principal_vins(principal_id INTEGER NOT NULL"
	" REFERENCES principals(id), vin TEXT NOT NULL,"
	" PRIMARY KEY(principal_id, vin)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS erasure_requests(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" vin TEXT NOT NULL, requested_by TEXT NOT NULL, requested_ms INTEGER NOT NULL,"
	" status TEXT NOT NULL, decided_by TEXT NOT NULL DEFAULT '',"
	" decided_ms INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS erasure_requests_by_vin ON erasure_requests(vin, status);";

int db_roles_init(struct db *db)
{
	char *msg = NULL;
	if (sqlite3_exec(db->conn, roles_schema, NULL, NULL, &msg) != SQLITE_OK) {
		dm_error("sqlite: principals and erasure tables: %s",
			 msg ? msg : "cannot set up schema");
		sqlite3_free(msg);
		return DM_ERR_DB;
	}
	return DM_OK;
}

/* A statement for one use; NULL (logged) when it does not prepare. */
static sqlite3_stmt *roles_prepare(struct db *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &stmt, NULL) != SQLITE_OK) {
		db_fail(db, sql);
		sqlite3_finalize(stmt);
		return NULL;
	}
	return stmt;
}

/* Steps a statement that returns no rows and finalizes it. */
static int roles_step_done(struct db *db, sqlite3_stmt *stmt, const char *what)
{
	int rc = sqlite3_step(stmt);
	int status = rc == SQLITE_DONE ? DM_OK
		     : (rc & 0xff) == SQLITE_CONSTRAINT ? DM_ERR_EXISTS
		     : db_fail(db, what);
	sqlite3_finalize(stmt);
	return status;
}

int db_principal_insert(struct db *db, struct db_principal *p, const char *const *vins,
			size_t vin_count)
{
	int rc = db_begin(db);
	if (rc)
		return rc;
	sqlite3_stmt *stmt = roles_prepare(
		db, "INSERT INTO principals(name, role, token_hash, created_ms, created_by) "
		    "VALUES(?, ?, ?, ?, ?)");
	rc = stmt ? DM_OK : DM_ERR_DB;
	if (rc == DM_OK) {
		sqlite3_bind_text(stmt, 1, p->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, p->role, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, p->token_hash, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, p->created_ms);
		sqlite3_bind_text(stmt, 5, p->created_by, -1, SQLITE_STATIC);
		rc = roles_step_done(db, stmt, "insert principal");
	}
	int64_t id = rc == DM_OK ? sqlite3_last_insert_rowid(db->conn) : 0;
	for (size_t i = 0; rc == DM_OK && i < vin_count; i++) {
		stmt = roles_prepare(db, "INSERT INTO principal_vins(principal_id, vin) VALUES(?, ?)");
		if (!stmt) {
			rc = DM_ERR_DB;
			break;
		}
		sqlite3_bind_int64(stmt, 1, id);
		sqlite3_bind_text(stmt, 2, vins[i], -1, SQLITE_STATIC);
		rc = roles_step_done(db, stmt, "insert principal vin");
		/* The caller refused repeated VINs; a constraint here is a bug. */
		if (rc == DM_ERR_EXISTS)
			rc = DM_ERR_DB;
	}
	if (rc == DM_OK)
		rc = db_commit(db);
	if (rc) {
		db_rollback(db);
		return rc;
	}
	p->id = id;
	return DM_OK;
}

int db_principal_delete(struct db *db, const char *name, const char *by, int64_t now_ms)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "UPDATE principals SET token_hash = '', deleted_ms = ?, deleted_by = ? "
		    "WHERE name = ? AND deleted_ms = 0");
	if (!stmt)
		return DM_ERR_DB;
	sqlite3_bind_int64(stmt, 1, now_ms > 0 ? now_ms : 1);
	sqlite3_bind_text(stmt, 2, by, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, name, -1, SQLITE_STATIC);
	int rc = roles_step_done(db, stmt, "delete principal");
	if (rc == DM_OK && sqlite3_changes(db->conn) == 0)
		rc = DM_ERR_NOT_FOUND;
	return rc;
}

int db_principal_each(struct db *db, int (*fn)(void *arg, const struct db_principal *p),
		      void *arg)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "SELECT id, name, role, token_hash, created_ms, created_by FROM principals "
		    "WHERE deleted_ms = 0 ORDER BY id");
	if (!stmt)
		return DM_ERR_DB;
	int rc, status = DM_OK;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct db_principal p;
		memset(&p, 0, sizeof p);
		p.id = sqlite3_column_int64(stmt, 0);
		copy_text(p.name, sizeof p.name, sqlite3_column_text(stmt, 1));
		copy_text(p.role, sizeof p.role, sqlite3_column_text(stmt, 2));
		copy_text(p.token_hash, sizeof p.token_hash, sqlite3_column_text(stmt, 3));
		p.created_ms = sqlite3_column_int64(stmt, 4);
		copy_text(p.created_by, sizeof p.created_by, sqlite3_column_text(stmt, 5));
		if ((status = fn(arg, &p)) != DM_OK)
			break;
	}
	if (status == DM_OK && rc != SQLITE_DONE)
		status = db_fail(db, "read principals");
	sqlite3_finalize(stmt);
	return status;
}

int db_principal_vin_each(struct db *db,
			  int (*fn)(void *arg, int64_t principal_id, const char *vin), void *arg)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "SELECT v.principal_id, v.vin FROM principal_vins v JOIN principals p "
		    "ON p.id = v.principal_id WHERE p.deleted_ms = 0 ORDER BY v.principal_id, v.vin");
	if (!stmt)
		return DM_ERR_DB;
	int rc, status = DM_OK;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const unsigned char *vin = sqlite3_column_text(stmt, 1);
		if ((status = fn(arg, sqlite3_column_int64(stmt, 0), vin ? (const char *)vin : "")) !=
		    DM_OK)
			break;
	}
	if (status == DM_OK && rc != SQLITE_DONE)
		status = db_fail(db, "read principal vins");
	sqlite3_finalize(stmt);
	return status;
}

#define ERASURE_COLUMNS "id, vin, requested_by, requested_ms, status, decided_by, decided_ms"

static void read_erasure_request(sqlite3_stmt *stmt, struct db_erasure_request *r)
{
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(stmt, 0);
	copy_text(r->vin, sizeof r->vin, sqlite3_column_text(stmt, 1));
	copy_text(r->requested_by, sizeof r->requested_by, sqlite3_column_text(stmt, 2));
	r->requested_ms = sqlite3_column_int64(stmt, 3);
	copy_text(r->status, sizeof r->status, sqlite3_column_text(stmt, 4));
	copy_text(r->decided_by, sizeof r->decided_by, sqlite3_column_text(stmt, 5));
	r->decided_ms = sqlite3_column_int64(stmt, 6);
}

int db_erasure_request_insert(struct db *db, struct db_erasure_request *r)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "INSERT INTO erasure_requests(vin, requested_by, requested_ms, status) "
		    "VALUES(?, ?, ?, 'pending')");
	if (!stmt)
		return DM_ERR_DB;
	sqlite3_bind_text(stmt, 1, r->vin, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, r->requested_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, r->requested_ms);
	int rc = roles_step_done(db, stmt, "insert erasure request");
	if (rc == DM_OK) {
		r->id = sqlite3_last_insert_rowid(db->conn);
		snprintf(r->status, sizeof r->status, "pending");
		r->decided_by[0] = '\0';
		r->decided_ms = 0;
	}
	return rc == DM_ERR_EXISTS ? DM_ERR_DB : rc;
}

/* Runs stmt (bound) for at most one row into out, and finalizes it. */
static int erasure_request_one(struct db *db, sqlite3_stmt *stmt,
			       struct db_erasure_request *out)
{
	int rc = sqlite3_step(stmt);
	int status = DM_OK;
	if (rc == SQLITE_ROW)
		read_erasure_request(stmt, out);
	else
		status = rc == SQLITE_DONE ? DM_ERR_NOT_FOUND : db_fail(db, "read erasure request");
	sqlite3_finalize(stmt);
	return status;
}

int db_erasure_request_get(struct db *db, int64_t id, struct db_erasure_request *out)
{
	sqlite3_stmt *stmt =
		roles_prepare(db, "SELECT " ERASURE_COLUMNS " FROM erasure_requests WHERE id = ?");
	if (!stmt)
		return DM_ERR_DB;
	sqlite3_bind_int64(stmt, 1, id);
	return erasure_request_one(db, stmt, out);
}

int db_erasure_request_pending(struct db *db, const char *vin, struct db_erasure_request *out)
{
	sqlite3_stmt *stmt = roles_prepare(db, "SELECT " ERASURE_COLUMNS " FROM erasure_requests "
					       "WHERE vin = ? AND status = 'pending' ORDER BY id "
					       "LIMIT 1");
	if (!stmt)
		return DM_ERR_DB;
	sqlite3_bind_text(stmt, 1, vin, -1, SQLITE_STATIC);
	return erasure_request_one(db, stmt, out);
}

int db_erasure_request_decide(struct db *db, int64_t id, const char *status, const char *by,
			      int64_t now_ms)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "UPDATE erasure_requests SET status = ?, decided_by = ?, decided_ms = ? "
		    "WHERE id = ? AND status = 'pending'");
	if (!stmt)
		return DM_ERR_DB;
	sqlite3_bind_text(stmt, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, now_ms);
	sqlite3_bind_int64(stmt, 4, id);
	int rc = roles_step_done(db, stmt, "decide erasure request");
	if (rc == DM_OK && sqlite3_changes(db->conn) == 0) {
		struct db_erasure_request r;
		rc = db_erasure_request_get(db, id, &r);
		if (rc == DM_OK)
			rc = DM_ERR_STATE;
	}
	return rc;
}

int db_erasure_request_close(struct db *db, const char *vin, const char *by, int64_t now_ms)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "UPDATE erasure_requests SET status = 'approved', decided_by = ?, "
		    "decided_ms = ? WHERE vin = ? AND status = 'pending'");
	if (!stmt)
		return DM_ERR_DB;
	sqlite3_bind_text(stmt, 1, by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, now_ms);
	sqlite3_bind_text(stmt, 3, vin, -1, SQLITE_STATIC);
	return roles_step_done(db, stmt, "close erasure requests");
}

int db_erasure_request_each(struct db *db, const char *status, unsigned limit,
			    int (*fn)(void *arg, const struct db_erasure_request *r), void *arg)
{
	sqlite3_stmt *stmt = roles_prepare(
		db, "SELECT " ERASURE_COLUMNS " FROM erasure_requests "
		    "WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2");
	if (!stmt)
		return DM_ERR_DB;
	if (status)
		sqlite3_bind_text(stmt, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, limit);
	int rc, result = DM_OK;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct db_erasure_request r;
		read_erasure_request(stmt, &r);
		if ((result = fn(arg, &r)) != DM_OK)
			break;
	}
	if (result == DM_OK && rc != SQLITE_DONE)
		result = db_fail(db, "read erasure requests");
	sqlite3_finalize(stmt);
	return result;
}

/* ==== end of principals and erasure requests ==== */
