/*
 * test_store.c — the store's own parts: the seq window, the fleet, the
 * memtable, and the engine end to end on a real SQLite file and a real
 * write-ahead log in a temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "crypto/keystore.h"
#include "ingest/catalog.h"
#include "ingest/payload.h"
#include "store/block.h"
#include "store/engine.h"
#include "store/fleet.h"
#include "store/memtable.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"

#define CATALOG_PATH "catalog/signals.catalog"
#define VIN "LSVAU218XN2183294"

static struct catalog *catalog;

static int load_catalog(void **state)
{
	char err[256];
	dm_log_set_level(DM_LOG_ERROR);
	return catalog_load(CATALOG_PATH, &catalog, err, sizeof err) == DM_OK ? 0 : -1;
}

static int free_catalog(void **state)
{
	catalog_free(catalog);
	return 0;
}

static uint16_t signal_id(const char *path)
{
	const struct catalog_signal *sig = catalog_find(catalog, path, strlen(path));
	assert_non_null(sig);
	return sig->id;
}

/* ---- seqwin ---- */

static void test_seqwin_knows_marked_and_unmarked_numbers(void **state)
{
	struct seqwin win = {0};
	assert_int_equal(seqwin_test(&win, 5), SEQWIN_NEW);
	seqwin_mark(&win, 5);
	seqwin_mark(&win, 3);
	assert_int_equal(seqwin_test(&win, 5), SEQWIN_SEEN);
	assert_int_equal(seqwin_test(&win, 3), SEQWIN_SEEN);
	assert_int_equal(seqwin_test(&win, 4), SEQWIN_NEW);
	assert_int_equal(seqwin_test(&win, 6), SEQWIN_NEW);
}

static void test_seqwin_window_edges_are_exact(void **state)
{
	struct seqwin win = {0};
	uint64_t top = 10000;
	seqwin_mark(&win, top - (SEQWIN_BITS - 1)); /* the oldest the window holds */
	seqwin_mark(&win, top);
	assert_int_equal(seqwin_test(&win, top - (SEQWIN_BITS - 1)), SEQWIN_SEEN);
	assert_int_equal(seqwin_test(&win, top - SEQWIN_BITS), SEQWIN_UNKNOWN);
	assert_int_equal(seqwin_test(&win, top - (SEQWIN_BITS - 2)), SEQWIN_NEW);
	/* Moving up by one pushes the oldest out of the window. */
	seqwin_mark(&win, top + 1);
	assert_int_equal(seqwin_test(&win, top - (SEQWIN_BITS - 1)), SEQWIN_UNKNOWN);
	assert_int_equal(seqwin_test(&win, top), SEQWIN_SEEN);
}

static void test_seqwin_shifts_by_every_amount(void **state)
{
	for (uint64_t shift = 1; shift <= SEQWIN_BITS + 1; shift += 7) {
		struct seqwin win = {0};
		seqwin_mark(&win, 100);
		seqwin_mark(&win, 100 + shift);
		enum seqwin_answer want = shift < SEQWIN_BITS ? SEQWIN_SEEN : SEQWIN_UNKNOWN;
		assert_int_equal(seqwin_test(&win, 100), want);
		if (shift > 1)
			assert_int_equal(seqwin_test(&win, 101), SEQWIN_NEW);
	}
}

/* ---- fleet ---- */

static void test_fleet_finds_vehicles_by_vin_and_id(void **state)
{
	struct fleet *fleet;
	assert_int_equal(fleet_new(&fleet), DM_OK);
	char vin[18];
	for (uint32_t id = 1; id <= 1000; id++) {
		struct db_vehicle record = {.id = id};
		snprintf(vin, sizeof vin, "LSVAU218X%08u", (unsigned)id);
		snprintf(record.vin, sizeof record.vin, "%s", vin);
		assert_int_equal(fleet_add(fleet, &record, NULL), DM_OK);
	}
	assert_int_equal(fleet_count(fleet), 1000);
	struct fleet_vehicle *v = fleet_by_vin(fleet, "LSVAU218X00000777", 17);
	assert_non_null(v);
	assert_int_equal(v->record.id, 777);
	assert_ptr_equal(fleet_by_id(fleet, 777), v);
	assert_null(fleet_by_vin(fleet, "LSVAU218X00001001", 17));
	assert_null(fleet_by_vin(fleet, "LSVAU218X0000077", 16));
	assert_null(fleet_by_id(fleet, 1001));
	struct db_vehicle again = {.id = 5000};
	snprintf(again.vin, sizeof again.vin, "%s", "LSVAU218X00000777");
	assert_int_equal(fleet_add(fleet, &again, NULL), DM_ERR_EXISTS);
	fleet_free(fleet);
}

/* ---- memtable ---- */

static void test_memtable_keeps_samples_per_series(void **state)
{
	struct memtable *table;
	assert_int_equal(memtable_new(&table), DM_OK);
	uint16_t speed = signal_id("Vehicle.Speed"), dtc = signal_id("Vehicle.OBD.DTCList");
	struct sample samples[3] = {
		{.ts_ms = 1000, .signal = speed, .value.num.f = 50.5},
		{.ts_ms = 1100, .signal = dtc, .value = {.str = "P0301", .str_len = 5}},
		{.ts_ms = 1200, .signal = speed, .value.num.f = 51.5},
	};
	assert_int_equal(memtable_append(table, catalog, 7, samples, 3), DM_OK);
	const struct memtable_series *s = memtable_get(table, 7, speed);
	assert_non_null(s);
	assert_int_equal(s->count, 2);
	assert_true(s->vals[1].f == 51.5);
	s = memtable_get(table, 7, dtc);
	assert_non_null(s);
	assert_string_equal(s->strings + s->vals[0].i, "P0301");
	assert_null(memtable_get(table, 8, speed));
	assert_int_equal(memtable_samples(table), 3);
	memtable_free(table);
}

static void test_memtable_append_is_all_or_nothing_when_memory_runs_out(void **state)
{
	uint16_t speed = signal_id("Vehicle.Speed"), soc = signal_id(
		"Vehicle.Powertrain.TractionBattery.StateOfCharge.Current");
	struct sample samples[200];
	for (int i = 0; i < 200; i++)
		samples[i] = (struct sample){.ts_ms = i, .signal = i % 2 ? speed : soc,
					     .value.num.f = i};
	/* Fail the Nth allocation for every N until the append succeeds; at
	 * each failure the table must hold nothing of the batch. */
	for (long n = 0;; n++) {
		struct memtable *table;
		assert_int_equal(memtable_new(&table), DM_OK);
		assert_int_equal(memtable_append(table, catalog, 1, samples, 10), DM_OK);
		dm_alloc_fail_after(n);
		int rc = memtable_append(table, catalog, 1, samples, 200);
		dm_alloc_fail_after(-1);
		if (rc == DM_OK) {
			assert_int_equal(memtable_samples(table), 210);
			memtable_free(table);
			break;
		}
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_int_equal(memtable_samples(table), 10);
		assert_int_equal(memtable_get(table, 1, speed)->count, 5);
		memtable_free(table);
		assert_true(n < 100);
	}
}

/* ---- engine ---- */

struct harness {
	char dir[64];
	struct event_base *base;
	struct engine *engine;
	struct keystore *keystore; /* the file KEK in dir; NULL when clear */
	int clear;                 /* open the store without encryption */
	int acks, ack_failures, duplicates;
	/* What on_compacted told: calls with DM_OK, failures, and the sums. */
	int compactions_ok, compactions_failed;
	uint64_t compacted_vehicles, compacted_blocks;
};

static void count_compaction(void *arg, int status, const struct db_stats *removed)
{
	struct harness *h = arg;
	if (status == DM_OK)
		h->compactions_ok++;
	else
		h->compactions_failed++;
	h->compacted_vehicles += removed->vehicles;
	h->compacted_blocks += removed->blocks;
}

static void count_ack(void *arg, const struct engine_ack *ack, int status)
{
	struct harness *h = arg;
	if (status == DM_OK)
		h->acks++;
	if (status == DM_OK && ack->duplicate)
		h->duplicates++;
	if (status != DM_OK)
		h->ack_failures++;
}

/* Opens the engine (and, unless h->clear, the key store) on h->dir;
 * returns what engine_open returns. */
static int harness_try_open(struct harness *h, unsigned flush_ms)
{
	if (!h->clear)
		assert_int_equal(keystore_file_open(h->dir, &h->keystore), DM_OK);
	struct engine_options options = {
		.jurisdiction = "CN",
		.data_dir = h->dir,
		.keystore = h->keystore,
		.catalog = catalog,
		.flush_interval_ms = flush_ms,
		.on_ack = count_ack,
		.on_compacted = count_compaction,
		.arg = h,
	};
	h->base = event_base_new();
	assert_non_null(h->base);
	return engine_open(h->base, &options, &h->engine);
}

static void harness_close(struct harness *h)
{
	engine_close(h->engine);
	event_base_free(h->base);
	keystore_free(h->keystore);
	h->engine = NULL;
	h->base = NULL;
	h->keystore = NULL;
}

static void harness_open(struct harness *h, unsigned flush_ms)
{
	assert_int_equal(harness_try_open(h, flush_ms), DM_OK);
}

/* Runs the loop until `acks` acks arrived, failing after ten seconds. */
static void pump_until_acks(struct harness *h, int acks)
{
	uint64_t deadline = dm_mono_ns() + 10000000000ull;
	while (h->acks + h->ack_failures < acks) {
		assert_true(dm_mono_ns() < deadline);
		struct timeval tick = {0, 10000};
		event_base_loopexit(h->base, &tick);
		event_base_dispatch(h->base);
	}
}

static int harness_setup(void **state)
{
	struct harness *h = calloc(1, sizeof *h);
	snprintf(h->dir, sizeof h->dir, "/tmp/domicile-test-store.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	*state = h;
	return 0;
}

static int harness_teardown(void **state)
{
	struct harness *h = *state;
	if (h->engine || h->base)
		harness_close(h);
	/* KEEP_TEST_DIR=1 keeps the store for a look after a failure. */
	char cmd[128];
	snprintf(cmd, sizeof cmd, getenv("KEEP_TEST_DIR") ? "true %s" : "rm -rf %s", h->dir);
	assert_int_equal(system(cmd), 0);
	free(h);
	return 0;
}

/* Ingests a JSON batch of `count` speed samples starting at ts. */
static int ingest_speeds(struct harness *h, struct fleet_vehicle *v, uint64_t seq, int64_t ts,
			 int count, uint16_t packet_id)
{
	struct sample samples[64];
	for (int i = 0; i < count; i++)
		samples[i] = (struct sample){.ts_ms = ts + i * 100,
					     .signal = signal_id("Vehicle.Speed"),
					     .value.num.f = 40 + i * 0.5};
	struct payload_batch batch = {seq, (size_t)count, samples};
	struct dm_buf payload = {0};
	assert_int_equal(payload_encode(catalog, &batch, PAYLOAD_JSON, &payload), DM_OK);
	struct engine_ack ack = {.session_id = 1, .packet_id = packet_id};
	int rc = engine_ingest(h->engine, v, payload.data, payload.len, PAYLOAD_JSON, &batch, &ack);
	dm_buf_free(&payload);
	return rc;
}

static struct fleet_vehicle *register_one(struct harness *h)
{
	char secret[64];
	struct fleet_vehicle *v;
	assert_int_equal(engine_register(h->engine, VIN, "CN", "cn-test-1", "test", secret, sizeof secret,
					 &v),
			 DM_OK);
	assert_true(strlen(secret) >= 40);
	assert_string_not_equal(v->record.secret_hash, secret);
	return v;
}

static void test_engine_acks_only_after_the_log_is_durable_and_reads_back(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	assert_int_equal(ingest_speeds(h, v, 1, t0, 10, 1), DM_OK);
	assert_int_equal(h->acks, 0); /* nothing before the loop ran the commit */
	pump_until_acks(h, 1);
	assert_int_equal(h->acks, 1);

	struct engine_series series;
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), t0 + 100, t0 + 500,
				      100, &series),
			 DM_OK);
	assert_int_equal(series.count, 5);
	assert_true(series.ts[0] == t0 + 100 && series.vals[0].f == 40.5);
	engine_series_free(&series);
}

static void test_engine_stores_a_repeated_seq_once(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	/* Two copies in flight at once: both are logged, one is applied. */
	assert_int_equal(ingest_speeds(h, v, 9, t0, 4, 1), DM_OK);
	assert_int_equal(ingest_speeds(h, v, 9, t0, 4, 2), DM_OK);
	pump_until_acks(h, 2);
	assert_int_equal(h->duplicates, 1);
	/* A third copy after it is durable is acknowledged in turn, as a
	 * duplicate, and stores nothing. */
	assert_int_equal(ingest_speeds(h, v, 9, t0, 4, 3), DM_OK);
	pump_until_acks(h, 3);
	assert_int_equal(h->duplicates, 2);
	struct engine_series series;
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 100,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 4);
	engine_series_free(&series);
}

static void test_engine_keeps_data_and_seqs_across_a_restart(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	for (int seq = 1; seq <= 5; seq++)
		assert_int_equal(ingest_speeds(h, v, (uint64_t)seq, t0 + seq * 10000, 10,
					       (uint16_t)seq),
				 DM_OK);
	pump_until_acks(h, 5);
	harness_close(h); /* flushes into blocks */

	harness_open(h, 3600000);
	v = fleet_by_vin(engine_fleet(h->engine), VIN, 17);
	assert_non_null(v);
	struct engine_series series;
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 1000,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 50);
	for (size_t i = 1; i < series.count; i++)
		assert_true(series.ts[i - 1] <= series.ts[i]);
	engine_series_free(&series);
	/* The window was seeded from the batches table. */
	h->acks = 0;
	assert_int_equal(ingest_speeds(h, v, 3, t0, 10, 9), DM_OK);
	pump_until_acks(h, 1);
	assert_int_equal(h->duplicates, 1);

	/* The limit truncates, oldest first. */
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 7,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 7);
	assert_true(series.truncated);
	assert_true(series.ts[0] == t0 + 10000);
	engine_series_free(&series);

	/* Latest merges blocks and memory. */
	assert_int_equal(ingest_speeds(h, v, 6, t0 + 900000, 1, 10), DM_OK);
	pump_until_acks(h, 2);
	assert_int_equal(engine_latest(h->engine, v, signal_id("Vehicle.Speed"), &series), DM_OK);
	assert_int_equal(series.count, 1);
	assert_true(series.ts[0] == t0 + 900000);
	engine_series_free(&series);
}

static void test_engine_flush_moves_samples_into_blocks_without_doubling(void **state)
{
	struct harness *h = *state;
	harness_open(h, 100);
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	assert_int_equal(ingest_speeds(h, v, 1, t0, 20, 1), DM_OK);
	pump_until_acks(h, 1);
	struct engine_stats stats;
	uint64_t deadline = dm_mono_ns() + 10000000000ull;
	do {
		struct timeval tick = {0, 20000};
		event_base_loopexit(h->base, &tick);
		event_base_dispatch(h->base);
		engine_stats(h->engine, &stats);
		assert_true(dm_mono_ns() < deadline);
	} while (stats.db.samples < 20 || stats.memtable_samples);
	assert_int_equal(stats.db.blocks, 1);
	struct engine_series series;
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 1000,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 20);
	engine_series_free(&series);
}

/* Counts the samples of Vehicle.Speed the engine returns. */
static size_t speed_count(struct harness *h, struct fleet_vehicle *v)
{
	struct engine_series series;
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX,
				      100000, &series),
			 DM_OK);
	size_t count = series.count;
	engine_series_free(&series);
	return count;
}

static void test_engine_knows_a_batch_older_than_the_window_that_is_only_in_memory(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	assert_int_equal(ingest_speeds(h, v, 1, t0, 2, 1), DM_OK);
	assert_int_equal(ingest_speeds(h, v, 1 + SEQWIN_BITS, t0 + 1000, 2, 2), DM_OK);
	pump_until_acks(h, 2);
	/* seq 1 is now below the window and not yet in the database. */
	assert_int_equal(seqwin_test(&v->seen, 1), SEQWIN_UNKNOWN);
	assert_int_equal(ingest_speeds(h, v, 1, t0, 2, 3), DM_OK);
	pump_until_acks(h, 3);
	assert_int_equal(h->duplicates, 1);
	assert_int_equal(speed_count(h, v), 4);
	/* And after a restart that replays the whole log, still once. */
	harness_close(h);
	harness_open(h, 3600000);
	v = fleet_by_vin(engine_fleet(h->engine), VIN, 17);
	assert_int_equal(speed_count(h, v), 4);
}

static void test_engine_flushes_each_generation_once_under_a_fast_timer(void **state)
{
	struct harness *h = *state;
	harness_open(h, 100); /* the smallest interval the config allows */
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	/* Many small generations while flushes overlap the timer. */
	for (int round = 0; round < 30; round++) {
		assert_int_equal(ingest_speeds(h, v, (uint64_t)round + 1, t0 + round * 10000, 5,
					       (uint16_t)(round + 1)),
				 DM_OK);
		pump_until_acks(h, round + 1);
		struct timeval tick = {0, 30000};
		event_base_loopexit(h->base, &tick);
		event_base_dispatch(h->base);
	}
	assert_int_equal(speed_count(h, v), 150);
	struct engine_stats stats;
	uint64_t deadline = dm_mono_ns() + 10000000000ull;
	do {
		struct timeval tick = {0, 20000};
		event_base_loopexit(h->base, &tick);
		event_base_dispatch(h->base);
		engine_stats(h->engine, &stats);
		assert_true(dm_mono_ns() < deadline);
	} while (stats.memtable_samples);
	assert_false(stats.flush_failing);
	assert_int_equal(stats.db.samples, 150);
	assert_int_equal(speed_count(h, v), 150);
}

static void test_engine_reads_only_the_blocks_a_limited_query_needs(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	int64_t t0 = 1732400000000;
	/* Three hours: three blocks once flushed at close. */
	for (int hour = 0; hour < 3; hour++)
		assert_int_equal(ingest_speeds(h, v, (uint64_t)hour + 1, t0 + hour * 3600000LL, 10,
					       (uint16_t)(hour + 1)),
				 DM_OK);
	pump_until_acks(h, 3);
	harness_close(h);
	harness_open(h, 3600000);
	v = fleet_by_vin(engine_fleet(h->engine), VIN, 17);
	struct engine_series series;
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 5,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 5);
	assert_true(series.truncated);
	assert_true(series.ts[0] == t0 && series.ts[4] == t0 + 400);
	engine_series_free(&series);
	/* A limit that takes exactly the first block's ten samples. */
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 10,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 10);
	assert_true(series.truncated);
	engine_series_free(&series);
	assert_int_equal(engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 30,
				      &series),
			 DM_OK);
	assert_int_equal(series.count, 30);
	assert_false(series.truncated);
	engine_series_free(&series);
}

/* ---- encryption at rest and erasure ---- */

/* Whether any file in dir (not below it) holds needle. */
static int dir_holds(const char *dir, const void *needle, size_t len)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "find %s -maxdepth 1 -type f", dir);
	FILE *list = popen(cmd, "r");
	assert_non_null(list);
	char path[512];
	int found = 0;
	while (!found && fgets(path, sizeof path, list)) {
		path[strcspn(path, "\n")] = '\0';
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		rewind(f);
		uint8_t *bytes = malloc(size > 0 ? (size_t)size : 1);
		assert_non_null(bytes);
		size_t got = fread(bytes, 1, (size_t)size, f);
		fclose(f);
		found = got >= len && memmem(bytes, got, needle, len) != NULL;
		if (found)
			print_message("the bytes are in %s\n", path);
		free(bytes);
	}
	pclose(list);
	return found;
}

/* Runs one SQL statement on the store's file while the engine is closed. */
static void store_sql(struct harness *h, const char *sql)
{
	char path[128];
	snprintf(path, sizeof path, "%s/store.db", h->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

/* The single number a query of the store's file answers. */
static int64_t store_count(struct harness *h, const char *sql)
{
	char path[128];
	snprintf(path, sizeof path, "%s/store.db", h->dir);
	sqlite3 *db;
	sqlite3_stmt *stmt;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return n;
}

/* The first block of a vehicle, copied into out; its length. */
static size_t block_of(struct harness *h, uint32_t vehicle_id, uint8_t *out, size_t cap)
{
	char path[128];
	snprintf(path, sizeof path, "%s/store.db", h->dir);
	sqlite3 *db;
	sqlite3_stmt *stmt;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT data FROM blocks WHERE vehicle_id = ? "
					    "ORDER BY t_min LIMIT 1",
					    -1, &stmt, NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(stmt, 1, vehicle_id);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	size_t len = (size_t)sqlite3_column_bytes(stmt, 0);
	assert_true(len <= cap);
	memcpy(out, sqlite3_column_blob(stmt, 0), len);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return len;
}

static void ingest_and_store(struct harness *h, struct fleet_vehicle *v, uint64_t seq)
{
	assert_int_equal(ingest_speeds(h, v, seq, 1732400000000 + (int64_t)seq * 10000, 10,
				       (uint16_t)seq),
			 DM_OK);
	pump_until_acks(h, h->acks + h->ack_failures + 1);
}

static void test_engine_seals_log_records_and_blocks(void **state)
{
	struct harness *h = *state;
	char wal[96];
	snprintf(wal, sizeof wal, "%s/wal", h->dir);
	static const char signal[] = "Vehicle.Speed"; /* in every JSON payload */
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	uint32_t id = v->record.id;
	ingest_and_store(h, v, 1);
	/* The log holds the record, sealed: the payload's text is not there. */
	assert_false(dir_holds(wal, signal, strlen(signal)));
	harness_close(h); /* flushes into a block */

	uint8_t block[4096];
	size_t len = block_of(h, id, block, sizeof block);
	struct block_info info;
	assert_int_equal(block_peek(block, len, &info), DM_OK);
	assert_int_equal(info.key_id, id);
	struct block_decoded decoded;
	assert_int_equal(block_decode(block, len, NULL, &decoded), DM_ERR_UNSUPPORTED);

	harness_open(h, 3600000);
	v = fleet_by_vin(engine_fleet(h->engine), VIN, 17);
	assert_int_equal(speed_count(h, v), 10);
}

static void test_engine_in_clear_keeps_the_payload_visible(void **state)
{
	/* The control for the test above: the same scan finds the text when
	 * the store is kept in clear, so the scan is known to see. */
	struct harness *h = *state;
	char wal[96];
	snprintf(wal, sizeof wal, "%s/wal", h->dir);
	static const char signal[] = "Vehicle.Speed";
	h->clear = 1;
	harness_open(h, 3600000);
	struct fleet_vehicle *v = register_one(h);
	ingest_and_store(h, v, 1);
	assert_true(dir_holds(wal, signal, strlen(signal)));
	harness_close(h);
	/* A store made in clear does not open with a key store, nor the reverse. */
	h->clear = 0;
	assert_int_equal(harness_try_open(h, 3600000), DM_ERR_INVALID);
	harness_close(h);
}

static void test_engine_refuses_a_sealed_store_opened_in_clear(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	register_one(h);
	harness_close(h);
	h->clear = 1;
	assert_int_equal(harness_try_open(h, 3600000), DM_ERR_INVALID);
}

/* Two vehicles with one block each; returns their ids through a and b. */
static void two_vehicles_with_blocks(struct harness *h, uint32_t *a, uint32_t *b)
{
	harness_open(h, 3600000);
	struct fleet_vehicle *first = register_one(h);
	char secret[64];
	struct fleet_vehicle *second;
	assert_int_equal(engine_register(h->engine, "LSVAU218XN2183295", "CN", "cn-test-1", "test",
					 secret, sizeof secret, &second),
			 DM_OK);
	ingest_and_store(h, first, 1);
	ingest_and_store(h, second, 1);
	*a = first->record.id;
	*b = second->record.id;
	harness_close(h);
}

static int query_speed(struct harness *h, const char *vin)
{
	struct fleet_vehicle *v = fleet_by_vin(engine_fleet(h->engine), vin, 17);
	assert_non_null(v);
	struct engine_series series;
	int rc = engine_query(h->engine, v, signal_id("Vehicle.Speed"), 0, INT64_MAX, 1000,
			      &series);
	if (rc == DM_OK)
		engine_series_free(&series);
	return rc;
}

static void test_engine_detects_a_block_moved_to_another_vehicle(void **state)
{
	struct harness *h = *state;
	uint32_t a, b;
	two_vehicles_with_blocks(h, &a, &b);
	/* Copy A's block onto B's row (as an attacker with the file could). */
	char sql[256];
	snprintf(sql, sizeof sql,
		 "UPDATE blocks SET data = (SELECT data FROM blocks WHERE vehicle_id = %u) "
		 "WHERE vehicle_id = %u",
		 (unsigned)a, (unsigned)b);
	store_sql(h, sql);
	harness_open(h, 3600000);
	assert_int_equal(query_speed(h, VIN), DM_OK);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_ERR_CRYPTO);
	harness_close(h);
	/* Moving the row itself (its vehicle_id) is caught the same way. */
	snprintf(sql, sizeof sql, "DELETE FROM blocks WHERE vehicle_id = %u; "
		 "UPDATE blocks SET vehicle_id = %u WHERE vehicle_id = %u",
		 (unsigned)b, (unsigned)b, (unsigned)a);
	store_sql(h, sql);
	harness_open(h, 3600000);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_ERR_CRYPTO);
	/* Shifting its time window too. */
	harness_close(h);
	store_sql(h, "UPDATE blocks SET t_min = t_min - 1");
	harness_open(h, 3600000);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_ERR_CRYPTO);
}

static void test_engine_detects_a_block_altered_by_one_byte(void **state)
{
	struct harness *h = *state;
	uint32_t a, b;
	two_vehicles_with_blocks(h, &a, &b);
	uint8_t block[4096];
	size_t len = block_of(h, a, block, sizeof block);
	/* One byte of the sealed body, with the trailing CRC made to fit. */
	block[BLOCK_HEADER_LEN + 3] ^= 0x01;
	put_be32(block + len - 4, crc32c(0, block, len - 4));
	char path[128];
	snprintf(path, sizeof path, "%s/store.db", h->dir);
	sqlite3 *db;
	sqlite3_stmt *stmt;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "UPDATE blocks SET data = ? WHERE vehicle_id = ?",
					    -1, &stmt, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(stmt, 1, block, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, a);
	assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	harness_open(h, 3600000);
	assert_int_equal(query_speed(h, VIN), DM_ERR_CRYPTO);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_OK);
	harness_close(h);
	/* Without the forged CRC the same change reads as damage. */
	store_sql(h, "UPDATE blocks SET data = CAST(data AS BLOB) || x'00'");
	harness_open(h, 3600000);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_ERR_MALFORMED);
}

static void test_engine_erasure_destroys_the_key_and_compaction_the_blocks(void **state)
{
	struct harness *h = *state;
	uint32_t a, b;
	two_vehicles_with_blocks(h, &a, &b);
	uint8_t block[4096];
	assert_true(block_of(h, a, block, sizeof block) > BLOCK_HEADER_LEN + 32);
	assert_true(dir_holds(h->dir, block + BLOCK_HEADER_LEN, 32));


	harness_open(h, 3600000);
	struct fleet_vehicle *v = fleet_by_vin(engine_fleet(h->engine), VIN, 17);
	uint8_t wrapped[KEYSTORE_WRAPPED_LEN];
	assert_true(v->record.has_key);
	memcpy(wrapped, v->record.wrapped_key, sizeof wrapped);
	assert_true(dir_holds(h->dir, wrapped, sizeof wrapped));
	ingest_and_store(h, v, 2); /* some of it still in memory and the log */
	assert_int_equal(engine_erase(h->engine, v, "officer-li"), DM_OK);
	assert_int_equal(engine_erase(h->engine, v, "officer-li"), DM_ERR_GONE);
	assert_int_equal(query_speed(h, VIN), DM_ERR_GONE);
	struct engine_series series;
	assert_int_equal(engine_latest(h->engine, v, signal_id("Vehicle.Speed"), &series),
			 DM_ERR_GONE);
	assert_int_equal(ingest_speeds(h, v, 3, 1732500000000, 2, 3), DM_ERR_GONE);
	assert_true(v->record.erased_ms > 0);
	assert_string_equal(v->record.erased_by, "officer-li");
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_OK);
	/* While the node runs on: once compaction is done, neither the wrapped
	 * key nor the blocks are in any file (no close needed to get there). */
	struct engine_stats stats;
	uint64_t deadline = dm_mono_ns() + 10000000000ull;
	do {
		struct timeval tick = {0, 20000};
		event_base_loopexit(h->base, &tick);
		event_base_dispatch(h->base);
		engine_stats(h->engine, &stats);
		assert_true(dm_mono_ns() < deadline);
	} while (stats.compaction_pending);
	assert_false(dir_holds(h->dir, wrapped, sizeof wrapped));
	assert_false(dir_holds(h->dir, block + BLOCK_HEADER_LEN, 32));
	/* The node heard of it (it records it in the audit log): one erasure
	 * completed, A's block removed, nothing failed. */
	for (int i = 0; i < 100 && !h->compactions_ok; i++) {
		struct timeval tick = {0, 20000};
		event_base_loopexit(h->base, &tick);
		event_base_dispatch(h->base);
	}
	assert_true(h->compactions_ok >= 1);
	assert_int_equal(h->compactions_failed, 0);
	assert_int_equal(h->compacted_vehicles, 1);
	assert_int_equal(h->compacted_blocks, 1);
	harness_close(h);

	/* After a restart: still erased, by whom, and the other vehicle intact. */
	harness_open(h, 3600000);
	v = fleet_by_vin(engine_fleet(h->engine), VIN, 17);
	assert_true(v->record.erased_ms > 0 && !v->record.has_key);
	assert_string_equal(v->record.erased_by, "officer-li");
	assert_int_equal(query_speed(h, VIN), DM_ERR_GONE);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_OK);
	harness_close(h);
	/* Compaction removed A's blocks, and no file of the store holds its
	 * ciphertext any more. */
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM blocks WHERE vehicle_id = %u", (unsigned)a);
	assert_int_equal(store_count(h, sql), 0);
	snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM blocks WHERE vehicle_id = %u", (unsigned)b);
	assert_int_equal(store_count(h, sql), 1);
	assert_false(dir_holds(h->dir, block + BLOCK_HEADER_LEN, 32));
}

/* Two erasures one after the other, while compactions may run: each is
 * reported completed exactly once, whether the loop or the close hears of
 * it. */
static void test_engine_reports_each_erasure_compacted_once(void **state)
{
	struct harness *h = *state;
	uint32_t a, b;
	two_vehicles_with_blocks(h, &a, &b);
	harness_open(h, 3600000);
	struct fleet *fleet = engine_fleet(h->engine);
	assert_int_equal(engine_erase(h->engine, fleet_by_vin(fleet, VIN, 17), "po"), DM_OK);
	assert_int_equal(engine_erase(h->engine, fleet_by_vin(fleet, "LSVAU218XN2183295", 17), "po"),
			 DM_OK);
	struct timeval tick = {0, 20000};
	event_base_loopexit(h->base, &tick);
	event_base_dispatch(h->base);
	harness_close(h); /* what is left is compacted and reported here */
	assert_int_equal(h->compacted_vehicles, 2);
	assert_int_equal(h->compacted_blocks, 2);
	assert_int_equal(h->compactions_failed, 0);
	assert_true(h->compactions_ok >= 1);
}

static void test_engine_refuses_a_store_of_another_schema_version(void **state)
{
	struct harness *h = *state;
	store_sql(h, "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
		     "INSERT INTO meta VALUES('schema_version', '1');");
	assert_int_equal(harness_try_open(h, 3600000), DM_ERR_UNSUPPORTED);
}

static void test_engine_kek_rotation_rewraps_without_rewriting_blocks(void **state)
{
	struct harness *h = *state;
	uint32_t a, b;
	two_vehicles_with_blocks(h, &a, &b);
	uint8_t before[4096], after[4096];
	size_t len = block_of(h, a, before, sizeof before);
	harness_open(h, 3600000);
	uint32_t old_id = keystore_key_id(h->keystore), new_id = 0;
	assert_int_equal(engine_rotate_kek(h->engine, &new_id), DM_OK);
	assert_int_not_equal(new_id, old_id);
	assert_int_equal(keystore_key_id(h->keystore), new_id);
	harness_close(h);
	/* The old KEK is gone from the directory; every key unwraps under the
	 * new one, and the blocks are byte for byte what they were. */
	char old_file[128];
	snprintf(old_file, sizeof old_file, "%s/kek-%08x.key", h->dir, (unsigned)old_id);
	assert_int_equal(access(old_file, F_OK), -1);
	assert_int_equal(block_of(h, a, after, sizeof after), len);
	assert_memory_equal(before, after, len);
	harness_open(h, 3600000);
	assert_int_equal(query_speed(h, VIN), DM_OK);
	assert_int_equal(query_speed(h, "LSVAU218XN2183295"), DM_OK);
}

static void test_engine_refuses_a_second_registration_of_a_vin(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	register_one(h);
	char secret[64];
	struct fleet_vehicle *v;
	assert_int_equal(engine_register(h->engine, VIN, "CN", "cn-test-1", "test", secret, sizeof secret,
					 &v),
			 DM_ERR_EXISTS);
}

static void test_engine_refuses_to_store_anything_of_a_foreign_vehicle(void **state)
{
	struct harness *h = *state;
	harness_open(h, 3600000);
	char secret[64];
	struct fleet_vehicle *v;
	/* Registration for another home is refused by the store itself. */
	assert_int_equal(engine_register(h->engine, VIN, "DE", "de-test-1", "test", secret,
					 sizeof secret, &v),
			 DM_ERR_DENIED);
	assert_null(fleet_by_vin(engine_fleet(h->engine), VIN, 17));
	/* A foreign vehicle that got into the fleet anyway (a bug above the
	 * store) still cannot have a batch written. */
	struct db_vehicle foreign = {.id = 999, .home = "DE"};
	snprintf(foreign.vin, sizeof foreign.vin, "%s", "WVWZZZ1J93W386752");
	assert_int_equal(fleet_add(engine_fleet(h->engine), &foreign, &v), DM_OK);
	assert_int_equal(ingest_speeds(h, v, 1, 1732400000000, 3, 1), DM_ERR_DENIED);
	harness_close(h);
	/* Nothing reached the log: a restart replays nothing. */
	harness_open(h, 3600000);
	struct engine_stats stats;
	engine_stats(h->engine, &stats);
	assert_int_equal(stats.memtable_samples, 0);
	assert_int_equal(stats.db.samples, 0);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seqwin_knows_marked_and_unmarked_numbers),
		cmocka_unit_test(test_seqwin_window_edges_are_exact),
		cmocka_unit_test(test_seqwin_shifts_by_every_amount),
		cmocka_unit_test(test_fleet_finds_vehicles_by_vin_and_id),
		cmocka_unit_test(test_memtable_keeps_samples_per_series),
		cmocka_unit_test(test_memtable_append_is_all_or_nothing_when_memory_runs_out),
		cmocka_unit_test_setup_teardown(
			test_engine_acks_only_after_the_log_is_durable_and_reads_back,
			harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_stores_a_repeated_seq_once,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_keeps_data_and_seqs_across_a_restart,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_flush_moves_samples_into_blocks_without_doubling,
			harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_refuses_a_second_registration_of_a_vin,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_seals_log_records_and_blocks,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_in_clear_keeps_the_payload_visible,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_refuses_a_sealed_store_opened_in_clear,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_detects_a_block_moved_to_another_vehicle,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_detects_a_block_altered_by_one_byte,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_erasure_destroys_the_key_and_compaction_the_blocks,
			harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_reports_each_erasure_compacted_once,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_kek_rotation_rewraps_without_rewriting_blocks, harness_setup,
			harness_teardown),
		cmocka_unit_test_setup_teardown(test_engine_refuses_a_store_of_another_schema_version,
						harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_knows_a_batch_older_than_the_window_that_is_only_in_memory,
			harness_setup, harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_flushes_each_generation_once_under_a_fast_timer, harness_setup,
			harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_reads_only_the_blocks_a_limited_query_needs, harness_setup,
			harness_teardown),
		cmocka_unit_test_setup_teardown(
			test_engine_refuses_to_store_anything_of_a_foreign_vehicle, harness_setup,
			harness_teardown),
	};
	return cmocka_run_group_tests(tests, load_catalog, free_catalog);
}
