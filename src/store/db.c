/*
 * db.c — SQLite schema and statements.
 *
 * Schema (version 1, in table meta under 'schema_version'):
 *   vehicles(id INTEGER PRIMARY KEY, vin TEXT UNIQUE, home TEXT, home_site TEXT,
 *            model TEXT, secret_hash TEXT, created_ms INTEGER)
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
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_VEHICLE_INSERT] = "INSERT INTO vehicles(vin, home, home_site, model, secret_hash, "
			      "created_ms) VALUES(?, ?, ?, ?, ?, ?)",
	[ST_VEHICLE_GET] = "SELECT id, vin, home, home_site, model, secret_hash, created_ms "
			   "FROM vehicles WHERE vin = ?",
	[ST_VEHICLE_ALL] = "SELECT id, vin, home, home_site, model, secret_hash, created_ms "
			   "FROM vehicles ORDER BY id",
	[ST_BLOCK_INSERT] = "INSERT INTO blocks(vehicle_id, signal, t_min, t_max, count, "
			    "flush_gen, data) VALUES(?, ?, ?, ?, ?, ?, ?)",
	/* Plain INSERT: a batch flushed twice is a bug, and must fail loudly. */
	[ST_BATCH_INSERT] = "INSERT INTO batches(vehicle_id, seq) VALUES(?, ?)",
	[ST_BATCH_EXISTS] = "SELECT 1 FROM batches WHERE vehicle_id = ? AND seq = ?",
	[ST_BATCH_RECENT] = "SELECT seq FROM batches WHERE vehicle_id = ? ORDER BY seq DESC "
			    "LIMIT ?",
	[ST_MAX_GEN] = "SELECT COALESCE(MAX(flush_gen), 0) FROM blocks",
	[ST_BLOCK_RANGE] = "SELECT data FROM blocks WHERE vehicle_id = ? AND signal = ? "
			   "AND t_max >= ? AND t_min <= ? AND flush_gen != ? ORDER BY t_min",
	[ST_BLOCK_NEWEST] = "SELECT data FROM blocks WHERE vehicle_id = ? AND signal = ? "
			    "AND flush_gen != ? ORDER BY t_max DESC LIMIT 1",
	[ST_META_GET] = "SELECT value FROM meta WHERE key = ?",
	[ST_META_SET] = "INSERT INTO meta(key, value) VALUES(?, ?) "
			"ON CONFLICT(key) DO UPDATE SET value = excluded.value",
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS vehicles(id INTEGER PRIMARY KEY, vin TEXT UNIQUE NOT NULL,"
	" home TEXT NOT NULL, home_site TEXT NOT NULL, model TEXT NOT NULL,"
	" secret_hash TEXT NOT NULL,"
	" created_ms INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS blocks(vehicle_id INTEGER NOT NULL, signal TEXT NOT NULL,"
	" t_min INTEGER NOT NULL, t_max INTEGER NOT NULL, count INTEGER NOT NULL,"
	" flush_gen INTEGER NOT NULL, data BLOB NOT NULL);"
	"CREATE INDEX IF NOT EXISTS blocks_by_series ON blocks(vehicle_id, signal, t_min);"
	"CREATE TABLE IF NOT EXISTS batches(vehicle_id INTEGER NOT NULL, seq INTEGER NOT NULL,"
	" PRIMARY KEY(vehicle_id, seq)) WITHOUT ROWID;"
	"INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1');";

struct db {
	sqlite3 *conn;
	sqlite3_stmt *stmt[ST_COUNT];
};

static int db_fail(struct db *db, const char *what)
{
	dm_error("sqlite: %s: %s", what, sqlite3_errmsg(db->conn));
	return DM_ERR_DB;
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
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
			 NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(db->conn, schema, NULL, NULL, &msg) != SQLITE_OK) {
		dm_error("sqlite: %s: %s", path, msg ? msg : "cannot set up schema");
		sqlite3_free(msg);
		db_close(db);
		return DM_ERR_DB;
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
		     int (*fn)(void *arg, const uint8_t *data, size_t len), void *arg)
{
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const uint8_t *data = sqlite3_column_blob(stmt, 0);
		size_t len = (size_t)sqlite3_column_bytes(stmt, 0);
		int status = fn(arg, data, len);
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
		   int (*fn)(void *arg, const uint8_t *data, size_t len), void *arg)
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
		    int (*fn)(void *arg, const uint8_t *data, size_t len), void *arg)
{
	sqlite3_stmt *stmt = use(db, ST_BLOCK_NEWEST);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	sqlite3_bind_text(stmt, 2, signal, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, (sqlite3_int64)skip_gen);
	return each_blob(db, stmt, fn, arg);
}

static int count_query(struct db *db, const char *sql, uint64_t *a, uint64_t *b)
{
	sqlite3_stmt *stmt;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &stmt, NULL) != SQLITE_OK)
		return db_fail(db, sql);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*a = (uint64_t)sqlite3_column_int64(stmt, 0);
		if (b)
			*b = (uint64_t)sqlite3_column_int64(stmt, 1);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW ? DM_OK : db_fail(db, sql);
}

int db_stats(struct db *db, struct db_stats *out)
{
	memset(out, 0, sizeof *out);
	int rc = count_query(db, "SELECT COUNT(*) FROM vehicles", &out->vehicles, NULL);
	if (rc == DM_OK)
		rc = count_query(db,
				 "SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM blocks",
				 &out->blocks, &out->block_bytes);
	if (rc == DM_OK)
		rc = count_query(db, "SELECT COALESCE(SUM(count), 0), 0 FROM blocks",
				 &out->samples, NULL);
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
			   orphan_blocks, NULL);
}
