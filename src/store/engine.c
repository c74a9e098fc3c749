/*
 * engine.c — write-ahead log, memtable and flush, tied together.
 *
 * Log record (what engine_ingest appends; all integers big-endian):
 *   offset size  field
 *   0      1     record version: 2 sealed, 1 in clear (store_encryption off)
 *   1      1     payload format (enum payload_format: 1 JSON, 2 protobuf)
 *   2      4     vehicle id (the vehicles table's rowid)
 *   6      8     batch seq
 *   14     8     arrival time, ms since the epoch (replay validates against it)
 *   version 1:
 *   22     n     the payload exactly as the vehicle sent it
 *   version 2:
 *   22    12     nonce, from the vehicle's key session (crypto/keyring)
 *   34     n     the payload, sealed with AES-256-GCM under the vehicle's key,
 *                associated data "domicile-log-v2" || bytes 0..21
 *   34+n  16     tag
 *
 * Encryption at rest (promise 3): with a key store, every vehicle has a data
 * key wrapped by the KEK in its row, unwrapped once into the keyring at open.
 * Log records and blocks are sealed under it; the store records at creation
 * whether it seals (meta 'encryption') and refuses to open the other way, so
 * a record or block in clear is never accepted in a sealed store.
 *
 * Erasure (promise 6): engine_erase first makes the row say erased and
 * drops its wrapped key (durable before anything else), then wipes the key
 * from the keyring; from then on reads answer DM_ERR_GONE and the flush
 * drops what memory still holds of the vehicle (its seal fails with
 * DM_ERR_GONE). Compaction, on the flush thread, deletes the vehicle's
 * blocks (overwritten: secure_delete) and truncates SQLite's log, where old
 * page images with the wrapped key and the blocks could remain; it is
 * retried every flush tick until it succeeds. The next flush releases the
 * log segments that held the vehicle's records.
 *
 * A record whose payload is empty (format 0) is an acknowledgement barrier:
 * a retransmission of a batch already stored, logged only so that its
 * PUBACK leaves in order behind those still waiting for their fsync.
 *
 * Generations. The live memtable belongs to generation G. A flush freezes
 * it, rotates the log to a new segment, and a thread writes G's blocks and
 * its (vehicle, seq) rows in one transaction.
 *
 * Invariants:
 *  1. A batch's samples enter a memtable only after its log record is
 *     durable, and the vehicle's seqwin and the generation's batch set mark
 *     it at the same moment; so a batch known as seen is always durable.
 *  2. A batch is seen iff its seq is in the vehicle's window, or in the
 *     batch set of the live or frozen generation, or in the batches table.
 *     Each (vehicle, seq) is applied once: it enters one generation only.
 *  3. A log segment is deleted only when no record in it can still be
 *     needed: every record below the released segment is in a generation
 *     that is in the database. Records may become durable late (after the
 *     generation they were appended under froze), so the release point is
 *     the lowest segment among records in flight and records in the live
 *     generation, never a guess about how late they can be.
 *  4. Replay re-applies every record left in the log; records whose batch
 *     is seen (invariant 2) are skipped, so nothing is stored twice.
 *  5. While the frozen generation exists, queries read it and skip blocks
 *     of its flush_gen, so a query between the flush's commit and its
 *     completion on the loop does not count samples twice.
 *
 * Flush states (flush_busy is the loop's view, to_flush the thread's):
 *   IDLE --start_flush: freeze, to_flush = G, flush_busy--> RUNNING
 *   RUNNING --flush_thread: commit or rollback, to_flush = NULL,
 *             event_active--> FINISHED
 *   FINISHED --on_flush_done (loop): free G and release the log (success)
 *             or keep G for the next tick (failure), flush_busy = 0--> IDLE
 * The timer starts nothing until the loop has reaped a finished flush.
 */
#include "store/engine.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keyring.h"
#include "store/batchset.h"
#include "store/db.h"
#include "store/memtable.h"
#include "store/wal.h"
#include "util/alloc.h"
#include "util/bytes.h"
#include "util/clock.h"
#include "util/cursor.h"
#include "util/err.h"
#include "util/log.h"
#include "util/secret.h"

#define RECORD_VERSION_CLEAR 1
#define RECORD_VERSION_SEALED 2
#define RECORD_HEADER 22
#define RECORD_AD_LABEL "domicile-log-v2"
#define RECORD_AD_LEN (sizeof RECORD_AD_LABEL - 1 + RECORD_HEADER)
#define DEFAULT_BLOCK_SAMPLES 65536
#define BLOCK_WINDOW_MS 3600000 /* a block never spans two UTC hours */

struct generation {
	uint64_t gen;
	struct memtable *table;
	struct batchset batches;
	uint64_t min_segment; /* lowest log segment of a record applied here */
	struct engine_flush_report flushed; /* set by the flush thread */
};

/* A batch between engine_ingest and its durable callback: one allocation
 * holding the samples and their strings. */
struct pending {
	struct engine_ack ack;
	uint32_t vehicle_id;
	uint64_t seq;
	uint64_t segment; /* where its record went (0: not known, lowest) */
	int barrier;      /* a retransmission: acknowledge, apply nothing */
	size_t count;
	struct sample samples[];
};

/* Records in flight by segment, oldest first: appends go to the newest
 * segment and become durable in order, so runs of equal segments suffice. */
struct inflight_run {
	uint64_t segment;
	uint64_t count;
};

/* What compactions did since the last report to on_compacted: the flush
 * thread may finish several before the loop reports. */
struct compaction_news {
	int succeeded;           /* at least one succeeded */
	int failed;              /* at least one failed, the latest with `failure` */
	int failure;
	int latest_failed;       /* the latest attempt of those failed */
	struct db_stats removed; /* by all of them; vehicles: the erasures completed */
};

struct engine {
	struct event_base *base;
	struct engine_options opt;
	const struct catalog *catalog;
	struct db *db;       /* loop thread */
	struct db *flush_db; /* flush thread */
	struct wal *wal;
	struct fleet *fleet;
	struct payload_decoder *replay_decoder;
	struct dm_buf record;
	struct keyring *ring; /* NULL: the store keeps samples in clear */

	struct generation *active;
	struct generation *frozen;
	uint64_t last_gen;
	uint64_t current_segment; /* where appends go now (0: not known yet) */
	struct dm_buf inflight;   /* struct inflight_run[], from inflight_head */
	size_t inflight_head;
	int flush_busy;           /* loop: a flush was handed over and not reaped */
	struct db_stats stored;   /* counted once at open, then kept up to date */
	int flush_failing;        /* the last flush failed (it is retried) */
	struct event *flush_timer;
	struct event *flush_done;

	pthread_t thread;
	int thread_started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct generation *to_flush; /* guarded by lock */
	int flush_status;            /* guarded by lock */
	int flush_finished;          /* guarded by lock */
	int stopping;                /* guarded by lock */
	int compact_now;             /* guarded by lock: an erasure asks for compaction */
	int compact_pending;         /* guarded by lock: erased blocks may remain */
	struct db_stats compacted;   /* guarded by lock: what compaction removed */
	uint64_t erased_waiting;     /* guarded by lock: erasures no compaction completed */
	struct compaction_news news; /* guarded by lock: not yet reported */
	struct event *compaction_done;
	int kek_unsettled;           /* a KEK rotation did not finish: wrap nothing */
};

/* ---- generations ---- */

static struct generation *generation_new(uint64_t gen)
{
	struct generation *g = dm_calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->gen = gen;
	g->min_segment = UINT64_MAX;
	if (memtable_new(&g->table)) {
		dm_free(g);
		return NULL;
	}
	return g;
}

static void generation_free(struct generation *g)
{
	if (!g)
		return;
	memtable_free(g->table);
	batchset_free(&g->batches);
	dm_free(g);
}

/* ---- applying a durable batch ---- */

/* Whether (vehicle, seq) is seen (invariant 2). */
static int batch_seen(struct engine *engine, struct fleet_vehicle *vehicle, uint64_t seq)
{
	switch (seqwin_test(&vehicle->seen, seq)) {
	case SEQWIN_SEEN:
		return 1;
	case SEQWIN_NEW:
		return 0;
	case SEQWIN_UNKNOWN:
		break;
	}
	uint32_t id = vehicle->record.id;
	if (batchset_has(&engine->active->batches, id, seq) ||
	    (engine->frozen && batchset_has(&engine->frozen->batches, id, seq)))
		return 1;
	return db_batch_exists(engine->db, id, seq) == DM_OK;
}

/* Puts a durable batch's samples into the live memtable (invariant 1).
 * *applied says whether it was new. */
static int apply_batch(struct engine *engine, struct fleet_vehicle *vehicle, uint64_t seq,
		       uint64_t segment, const struct sample *samples, size_t count, int *applied)
{
	*applied = 0;
	if (batch_seen(engine, vehicle, seq))
		return DM_OK;
	struct generation *g = engine->active;
	int rc = batchset_add(&g->batches, vehicle->record.id, seq);
	if (rc == DM_OK)
		rc = memtable_append(g->table, engine->catalog, vehicle->record.id, samples, count);
	if (rc)
		return rc; /* a set entry without samples only makes a repeat look seen */
	if (segment < g->min_segment)
		g->min_segment = segment;
	seqwin_mark(&vehicle->seen, seq);
	vehicle->samples_accepted += count;
	*applied = 1;
	return DM_OK;
}

/* ---- records in flight, by segment (invariant 3) ---- */

static int inflight_add(struct engine *engine, uint64_t segment)
{
	struct inflight_run *runs = (struct inflight_run *)engine->inflight.data;
	size_t n = engine->inflight.len / sizeof *runs;
	if (n > engine->inflight_head && runs[n - 1].segment == segment) {
		runs[n - 1].count++;
		return DM_OK;
	}
	if (engine->inflight_head == n) { /* empty: start the array over */
		engine->inflight.len = 0;
		engine->inflight_head = 0;
	}
	struct inflight_run run = {segment, 1};
	return dm_buf_append(&engine->inflight, &run, sizeof run);
}

static void inflight_done(struct engine *engine)
{
	struct inflight_run *runs = (struct inflight_run *)engine->inflight.data;
	if (--runs[engine->inflight_head].count == 0)
		engine->inflight_head++;
}

/* The lowest segment a record still needed may sit in. */
static uint64_t needed_from(const struct engine *engine)
{
	uint64_t lowest = engine->current_segment;
	const struct inflight_run *runs = (const struct inflight_run *)engine->inflight.data;
	if (engine->inflight_head < engine->inflight.len / sizeof *runs &&
	    runs[engine->inflight_head].segment < lowest)
		lowest = runs[engine->inflight_head].segment;
	if (engine->active->min_segment < lowest)
		lowest = engine->active->min_segment;
	return lowest;
}

static void on_durable(void *arg, void *const *cookies, size_t count, int status)
{
	struct engine *engine = arg;
	for (size_t i = 0; i < count; i++) {
		struct pending *p = cookies[i];
		int rc = status, applied = 0;
		inflight_done(engine);
		if (rc == DM_OK && !p->barrier) {
			struct fleet_vehicle *vehicle = fleet_by_id(engine->fleet, p->vehicle_id);
			if (!vehicle)
				rc = DM_ERR_NOT_FOUND;
			else if (vehicle->record.erased_ms) /* erased while in flight */
				rc = DM_ERR_GONE;
			else
				rc = apply_batch(engine, vehicle, p->seq, p->segment, p->samples,
						 p->count, &applied);
			if (rc && rc != DM_ERR_GONE)
				dm_error("engine: batch of vehicle %u not applied: %s",
					 (unsigned)p->vehicle_id, dm_strerror(rc));
		}
		p->ack.duplicate = rc == DM_OK && !applied;
		if (engine->opt.on_ack)
			engine->opt.on_ack(engine->opt.arg, &p->ack, rc);
		dm_free(p);
	}
}

/* The associated data of a sealed log record: a label and its clear header. */
static void record_ad(const uint8_t *header, uint8_t ad[RECORD_AD_LEN])
{
	memcpy(ad, RECORD_AD_LABEL, sizeof RECORD_AD_LABEL - 1);
	memcpy(ad + sizeof RECORD_AD_LABEL - 1, header, RECORD_HEADER);
}

/* Appends nonce, sealed payload and tag to rec, which holds the header and
 * has room reserved for the rest. */
static int seal_record(struct engine *engine, struct dm_buf *rec, const uint8_t *payload,
		       size_t len)
{
	uint32_t vehicle_id = get_be32(rec->data + 2);
	uint8_t ad[RECORD_AD_LEN];
	record_ad(rec->data, ad);
	uint8_t *nonce = rec->data + RECORD_HEADER;
	uint8_t *body = nonce + AEAD_NONCE_LEN;
	int rc = keyring_nonce(engine->ring, vehicle_id, nonce);
	if (rc)
		return rc;
	memcpy(body, payload, len);
	rc = keyring_seal(engine->ring, vehicle_id, nonce, ad, sizeof ad, body, len, body + len);
	if (rc == DM_OK)
		rec->len = RECORD_HEADER + AEAD_NONCE_LEN + len + AEAD_TAG_LEN;
	return rc;
}

/* Residency's last line of defence: nothing of a vehicle whose home is
 * another jurisdiction is written, whatever the caller checked. */
static int home_here(const struct engine *engine, const char *home)
{
	if (strcmp(home, engine->opt.jurisdiction) == 0)
		return 1;
	dm_error("store: refused to write data of a vehicle whose home is %s (this site "
		 "serves %s)",
		 home, engine->opt.jurisdiction);
	return 0;
}

int engine_ingest(struct engine *engine, struct fleet_vehicle *vehicle, const uint8_t *payload,
		  size_t payload_len, enum payload_format format, const struct payload_batch *batch,
		  const struct engine_ack *ack)
{
	if (!home_here(engine, vehicle->record.home))
		return DM_ERR_DENIED;
	if (vehicle->record.erased_ms)
		return DM_ERR_GONE;
	/* A retransmission of a stored batch is logged as a barrier: nothing
	 * of it is kept, but its PUBACK waits its turn (MQTT acks in order). */
	int barrier = batch_seen(engine, vehicle, batch->seq);
	size_t count = barrier ? 0 : batch->count, strings = 0;
	for (size_t i = 0; i < count; i++)
		strings += batch->samples[i].value.str_len;
	struct pending *p = dm_malloc(sizeof *p + count * sizeof(struct sample) + strings);
	if (!p)
		return DM_ERR_NOMEM;
	p->ack = *ack;
	p->vehicle_id = vehicle->record.id;
	p->seq = batch->seq;
	p->segment = engine->current_segment;
	p->barrier = barrier;
	p->count = count;
	if (barrier) {
		format = 0;
		payload_len = 0;
	}
	char *pool = (char *)(p->samples + count);
	for (size_t i = 0; i < count; i++) {
		p->samples[i] = batch->samples[i];
		if (batch->samples[i].value.str_len) {
			memcpy(pool, batch->samples[i].value.str, batch->samples[i].value.str_len);
			p->samples[i].value.str = pool;
			pool += batch->samples[i].value.str_len;
		}
	}

	struct dm_buf *rec = &engine->record;
	dm_buf_reset(rec);
	int sealed = engine->ring && payload_len > 0;
	int rc = dm_buf_reserve(rec, RECORD_HEADER + AEAD_NONCE_LEN + payload_len + AEAD_TAG_LEN);
	if (rc == DM_OK) {
		dm_buf_append_u8(rec, sealed ? RECORD_VERSION_SEALED : RECORD_VERSION_CLEAR);
		dm_buf_append_u8(rec, (uint8_t)format);
		dm_buf_append_be32(rec, vehicle->record.id);
		dm_buf_append_be64(rec, batch->seq);
		dm_buf_append_be64(rec, (uint64_t)dm_now_ms());
		if (sealed)
			rc = seal_record(engine, rec, payload, payload_len);
		else
			dm_buf_append(rec, payload, payload_len);
	}
	if (rc == DM_OK)
		rc = inflight_add(engine, p->segment);
	if (rc == DM_OK) {
		rc = wal_append(engine->wal, rec->data, rec->len, p);
		if (rc) /* a refused append is never reported: undo its count */
			inflight_done(engine);
	}
	if (rc)
		dm_free(p);
	return rc;
}

/* ---- replay ---- */

/* A logged batch was valid under the limits of its day; replay applies the
 * widest limits a config may set, so that lowering one does not turn
 * acknowledged batches away. (Timestamps are checked against each record's
 * own arrival time.) */
static const struct payload_limits replay_limits = {1000000, 86400000};

/* Appends a record that replay cannot apply to data_dir/quarantine.log
 * (a 4-byte big-endian length, then the record), fsynced. */
static int quarantine(struct engine *engine, const uint8_t *record, size_t len)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/quarantine.log", engine->opt.data_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	uint8_t header[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			     (uint8_t)len};
	int ok = fd >= 0 && write(fd, header, 4) == 4 && write(fd, record, len) == (ssize_t)len &&
		 fsync(fd) == 0;
	if (!ok)
		dm_error("cannot keep a record in %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return ok ? DM_OK : DM_ERR_IO;
}

static int replay_record(void *arg, const uint8_t *record, size_t len)
{
	struct engine *engine = arg;
	struct dm_cursor cur = dm_cursor_make(record, len);
	uint8_t version, format;
	uint32_t vehicle_id;
	uint64_t seq, received;
	if (dm_cursor_u8(&cur, &version) || dm_cursor_u8(&cur, &format) ||
	    dm_cursor_be32(&cur, &vehicle_id) || dm_cursor_be64(&cur, &seq) ||
	    dm_cursor_be64(&cur, &received) ||
	    (version != RECORD_VERSION_CLEAR && version != RECORD_VERSION_SEALED)) {
		dm_error("replay: a log record has an unknown layout; refusing to guess");
		return DM_ERR_MALFORMED;
	}
	if (format == 0 && dm_cursor_left(&cur) == 0)
		return DM_OK; /* an acknowledgement barrier: nothing to apply */
	struct fleet_vehicle *vehicle = fleet_by_id(engine->fleet, vehicle_id);
	if (!vehicle) {
		dm_warn("replay: skipping a batch of unknown vehicle id %u", (unsigned)vehicle_id);
		return DM_OK;
	}
	if (vehicle->record.erased_ms)
		return DM_OK; /* erased: its key is gone, and so is the record's use */
	if ((version == RECORD_VERSION_SEALED) != (engine->ring != NULL)) {
		dm_error("replay: batch %llu of vehicle %s is %s in a store that %s; kept in "
			 "%s/quarantine.log",
			 (unsigned long long)seq, vehicle->record.vin,
			 engine->ring ? "in clear" : "sealed",
			 engine->ring ? "seals every record" : "keeps records in clear",
			 engine->opt.data_dir);
		return quarantine(engine, record, len);
	}
	const uint8_t *payload = cur.p + cur.pos;
	size_t payload_len = dm_cursor_left(&cur);
	uint8_t *opened = NULL;
	if (engine->ring) {
		if (payload_len < AEAD_NONCE_LEN + AEAD_TAG_LEN) {
			dm_error("replay: a sealed log record is too short");
			return quarantine(engine, record, len);
		}
		payload_len -= AEAD_NONCE_LEN + AEAD_TAG_LEN;
		uint8_t ad[RECORD_AD_LEN];
		record_ad(record, ad);
		opened = dm_malloc(payload_len ? payload_len : 1);
		if (!opened)
			return DM_ERR_NOMEM;
		memcpy(opened, payload + AEAD_NONCE_LEN, payload_len);
		int rc = keyring_open(engine->ring, vehicle_id, payload, ad, sizeof ad, opened,
				      payload_len, payload + AEAD_NONCE_LEN + payload_len);
		if (rc) {
			dm_free(opened);
			dm_error("replay: batch %llu of vehicle %s does not open under its key (%s): "
				 "altered or moved; kept in %s/quarantine.log",
				 (unsigned long long)seq, vehicle->record.vin, dm_strerror(rc),
				 engine->opt.data_dir);
			return quarantine(engine, record, len);
		}
		payload = opened;
	}
	struct payload_batch batch;
	char reason[256];
	int rc = payload_decode(engine->replay_decoder, payload, payload_len,
				(enum payload_format)format, (int64_t)received, &batch, reason,
				sizeof reason);
	if (rc) {
		/* It was valid when acknowledged, so the catalog changed since.
		 * Refusing to start would leave the operator only the choice of
		 * deleting the log; keep the record aside instead, loudly. */
		dm_error("replay: batch %llu of vehicle %s no longer validates (%s); is the "
			 "catalog the one it was accepted with? Kept in %s/quarantine.log",
			 (unsigned long long)seq, vehicle->record.vin, reason, engine->opt.data_dir);
		dm_free(opened);
		return quarantine(engine, record, len);
	}
	int applied;
	/* Segment 0: replayed records pin the log until their generation is in
	 * the database (invariant 3). The batch's strings point into the
	 * payload, which apply_batch copies into the memtable. */
	rc = apply_batch(engine, vehicle, seq, 0, batch.samples, batch.count, &applied);
	dm_free(opened);
	return rc;
}

/* ---- time order ---- */

static __thread const int64_t *order_ts; /* qsort has no argument for it */

static int by_time(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	if (order_ts[ia] != order_ts[ib])
		return order_ts[ia] < order_ts[ib] ? -1 : 1;
	return ia < ib ? -1 : ia > ib; /* arrival order among equal times */
}

/* Fills order with the permutation that puts ts in time order, stably. The
 * samples themselves are not moved: a frozen memtable is shared with
 * readers on the loop. */
static void order_by_time(const int64_t *ts, size_t count, size_t *order)
{
	for (size_t i = 0; i < count; i++)
		order[i] = i;
	order_ts = ts;
	qsort(order, count, sizeof *order, by_time);
}

/* ---- flush ---- */

struct flush_job {
	struct engine *engine;
	struct generation *g;
	struct dm_buf block;
	int64_t *ts;
	union block_num *vals;
	size_t *order;
	size_t cap;
	const struct memtable_series *series; /* for the sort comparator */
	struct engine_flush_report report;
};

static int64_t window_of(int64_t ts)
{
	int64_t w = ts / BLOCK_WINDOW_MS;
	return ts < 0 && ts % BLOCK_WINDOW_MS ? w - 1 : w;
}

static int flush_series(void *arg, const struct memtable_series *series)
{
	struct flush_job *job = arg;
	if (series->count > job->cap) {
		size_t cap = series->count;
		int64_t *ts = dm_realloc(job->ts, cap * sizeof *ts);
		if (ts)
			job->ts = ts;
		union block_num *vals = dm_realloc(job->vals, cap * sizeof *vals);
		if (vals)
			job->vals = vals;
		size_t *order = dm_realloc(job->order, cap * sizeof *order);
		if (order)
			job->order = order;
		if (!ts || !vals || !order)
			return DM_ERR_NOMEM;
		job->cap = cap;
	}
	order_by_time(series->ts, series->count, job->order);
	for (size_t i = 0; i < series->count; i++) {
		job->ts[i] = series->ts[job->order[i]];
		job->vals[i] = series->vals[job->order[i]];
	}
	const struct catalog_signal *sig = catalog_get(job->engine->catalog, series->signal);
	size_t max = job->engine->opt.block_max_samples;
	for (size_t start = 0; start < series->count;) {
		size_t end = start + 1;
		while (end < series->count && end - start < max &&
		       window_of(job->ts[end]) == window_of(job->ts[start]))
			end++;
		struct block_column column = {
			.type = series->type,
			.count = end - start,
			.ts = job->ts + start,
			.vals = job->vals + start,
			.strings = series->strings,
			.strings_len = series->strings_len,
		};
		struct block_seal seal = {job->engine->ring, series->vehicle_id, sig->path, 0, 0};
		dm_buf_reset(&job->block);
		int rc = block_encode(&column, job->engine->ring ? &seal : NULL, &job->block);
		if (rc == DM_ERR_GONE)
			return DM_OK; /* erased since it arrived: its samples go nowhere */
		if (rc == DM_OK)
			rc = db_block_insert(job->engine->flush_db, series->vehicle_id, sig->path,
					     job->ts[start], job->ts[end - 1],
					     (uint32_t)(end - start), job->g->gen, job->block.data,
					     job->block.len);
		if (rc)
			return rc;
		job->report.blocks++;
		job->report.block_bytes += job->block.len;
		if (job->engine->opt.on_block)
			job->engine->opt.on_block(job->engine->opt.arg, end - start, job->block.len);
		job->report.samples += end - start;
		start = end;
	}
	return DM_OK;
}

static int insert_batch(void *arg, const struct batch_ref *ref)
{
	struct engine *engine = arg;
	return db_batch_insert(engine->flush_db, ref->vehicle_id, ref->seq);
}

/* Writes generation g into the database in one transaction. Any thread
 * that owns engine->flush_db. */
static int flush_generation(struct engine *engine, struct generation *g)
{
	struct flush_job job = {.engine = engine, .g = g};
	uint64_t started = dm_mono_ns();
	int rc = db_begin(engine->flush_db);
	if (rc == DM_OK)
		rc = memtable_each(g->table, flush_series, &job);
	if (rc == DM_OK)
		rc = batchset_each(&g->batches, insert_batch, engine);
	if (rc == DM_OK)
		rc = db_commit(engine->flush_db);
	if (rc) {
		db_rollback(engine->flush_db);
		dm_error("flush of generation %llu failed: %s; its data stays in the log",
			 (unsigned long long)g->gen, dm_strerror(rc));
	}
	job.report.status = rc;
	job.report.duration_ns = dm_mono_ns() - started;
	g->flushed = job.report;
	if (engine->opt.on_flush)
		engine->opt.on_flush(engine->opt.arg, &job.report);
	dm_buf_free(&job.block);
	dm_free(job.ts);
	dm_free(job.vals);
	dm_free(job.order);
	return rc;
}

/* Deletes the blocks of erased vehicles. Flush thread (or close). */
static void compact(struct engine *engine)
{
	/* The erasures committed before this compaction starts are the ones
	 * it completes; one committed while it runs waits for the next. */
	pthread_mutex_lock(&engine->lock);
	uint64_t erasures = engine->erased_waiting;
	pthread_mutex_unlock(&engine->lock);
	struct db_stats removed;
	int rc = db_compact_erased(engine->flush_db, &removed);
	if (removed.blocks)
		dm_info("compaction removed %llu blocks of erased vehicles",
			(unsigned long long)removed.blocks);
	if (rc && rc != DM_ERR_STATE)
		dm_error("compaction after erasure failed: %s; retried after the next flush",
			 dm_strerror(rc));
	pthread_mutex_lock(&engine->lock);
	engine->compact_pending = rc != DM_OK;
	engine->compacted.blocks += removed.blocks;
	engine->compacted.block_bytes += removed.block_bytes;
	engine->compacted.samples += removed.samples;
	/* A busy reader (DM_ERR_STATE) is no failure: the next tick tries
	 * again, and the blocks it removed are counted with the next news. */
	struct compaction_news *news = &engine->news;
	news->removed.blocks += removed.blocks;
	news->removed.block_bytes += removed.block_bytes;
	news->removed.samples += removed.samples;
	if (rc == DM_OK) {
		news->succeeded = 1;
		news->removed.vehicles += erasures;
		engine->erased_waiting -= erasures;
	} else if (rc != DM_ERR_STATE) {
		news->failed = 1;
		news->failure = rc;
	}
	if (rc != DM_ERR_STATE)
		news->latest_failed = rc != DM_OK;
	pthread_mutex_unlock(&engine->lock);
}

/* Hands the compactions' news to on_compacted (loop, or close), in the
 * order that ends with the latest outcome: a success and a failure since
 * the last report are both told, what they removed with the success. */
static void report_compaction(struct engine *engine)
{
	pthread_mutex_lock(&engine->lock);
	struct compaction_news news = engine->news;
	memset(&engine->news, 0, sizeof engine->news);
	pthread_mutex_unlock(&engine->lock);
	if (!engine->opt.on_compacted)
		return;
	static const struct db_stats nothing;
	if (news.failed && !news.latest_failed)
		engine->opt.on_compacted(engine->opt.arg, news.failure, &nothing);
	if (news.succeeded)
		engine->opt.on_compacted(engine->opt.arg, DM_OK, &news.removed);
	if (news.failed && news.latest_failed)
		engine->opt.on_compacted(engine->opt.arg, news.failure,
					 news.succeeded ? &nothing : &news.removed);
}

static void on_compaction_done(evutil_socket_t fd, short what, void *arg)
{
	report_compaction(arg);
}

static void *flush_thread(void *arg)
{
	struct engine *engine = arg;
	pthread_mutex_lock(&engine->lock);
	for (;;) {
		while (!engine->to_flush && !engine->compact_now && !engine->stopping)
			pthread_cond_wait(&engine->wake, &engine->lock);
		if (!engine->to_flush && !engine->compact_now)
			break;
		struct generation *g = engine->to_flush;
		int compacting = engine->compact_now || engine->compact_pending;
		engine->compact_now = 0;
		pthread_mutex_unlock(&engine->lock);
		int rc = g ? flush_generation(engine, g) : DM_OK;
		if (compacting) {
			compact(engine);
			event_active(engine->compaction_done, 0, 0);
		}
		pthread_mutex_lock(&engine->lock);
		if (g) {
			engine->to_flush = NULL;
			engine->flush_status = rc;
			engine->flush_finished = 1;
			event_active(engine->flush_done, 0, 0);
		}
	}
	pthread_mutex_unlock(&engine->lock);
	return NULL;
}

/* The frozen generation is in the database: drop it and the log that no
 * record still needed sits in (invariant 3). */
static void frozen_flushed(struct engine *engine)
{
	uint64_t release = needed_from(engine);
	if (release)
		wal_release_before(engine->wal, release);
	engine->stored.blocks += engine->frozen->flushed.blocks;
	engine->stored.block_bytes += engine->frozen->flushed.block_bytes;
	engine->stored.samples += engine->frozen->flushed.samples;
	generation_free(engine->frozen);
	engine->frozen = NULL;
}

static void on_flush_done(evutil_socket_t fd, short what, void *arg)
{
	struct engine *engine = arg;
	pthread_mutex_lock(&engine->lock);
	int finished = engine->flush_finished, status = engine->flush_status;
	engine->flush_finished = 0;
	pthread_mutex_unlock(&engine->lock);
	if (!finished)
		return;
	engine->flush_busy = 0;
	engine->flush_failing = status != DM_OK;
	if (status == DM_OK && engine->frozen)
		frozen_flushed(engine);
}

/* Freezes the live generation and hands it to the flush thread; a frozen
 * generation whose flush failed is handed over again instead. */
static void start_flush(struct engine *engine)
{
	if (!engine->frozen) {
		if (memtable_samples(engine->active->table) == 0)
			return;
		struct generation *next = generation_new(engine->last_gen + 1);
		if (!next)
			return;
		uint64_t segment;
		if (wal_rotate(engine->wal, &segment)) {
			generation_free(next);
			return;
		}
		engine->current_segment = segment;
		engine->last_gen++;
		engine->frozen = engine->active;
		engine->active = next;
	}
	engine->flush_busy = 1;
	pthread_mutex_lock(&engine->lock);
	engine->to_flush = engine->frozen;
	pthread_cond_signal(&engine->wake);
	pthread_mutex_unlock(&engine->lock);
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
	struct engine *engine = arg;
	/* Until on_flush_done has reaped the last flush, the frozen generation
	 * may still be in the thread's hands (see the flush states above). */
	if (!engine->flush_busy)
		start_flush(engine);
	/* A compaction that could not finish (a reader kept SQLite's log from
	 * being truncated) is retried every tick, samples or not: until it
	 * succeeds, old pages with an erased vehicle's key may remain. */
	pthread_mutex_lock(&engine->lock);
	if (engine->compact_pending && !engine->compact_now) {
		engine->compact_now = 1;
		pthread_cond_signal(&engine->wake);
	}
	pthread_mutex_unlock(&engine->lock);
}

/* ---- open and close ---- */

static void seed_seq(void *arg, uint64_t seq)
{
	struct fleet_vehicle *vehicle = arg;
	seqwin_mark(&vehicle->seen, seq);
}

static int load_vehicle(void *arg, const struct db_vehicle *record)
{
	struct engine *engine = arg;
	struct fleet_vehicle *vehicle;
	int rc = DM_OK;
	if (engine->ring && record->erased_ms) {
		rc = keyring_mark_erased(engine->ring, record->id);
		engine->compact_pending = 1; /* in case a crash came before compaction */
	} else if (engine->ring && !record->has_key) {
		dm_error("store: vehicle %s has no data key in a store that seals its data",
			 record->vin);
		rc = DM_ERR_CRYPTO;
	} else if (engine->ring) {
		rc = keyring_load(engine->ring, record->id, record->wrapped_key);
		if (rc)
			dm_error("store: the data key of vehicle %s does not unwrap with the key "
				 "store's KEK: %s",
				 record->vin, dm_strerror(rc));
	}
	if (rc == DM_OK)
		rc = fleet_add(engine->fleet, record, &vehicle);
	/* Seed the window, so retransmissions of flushed batches are known
	 * without a database lookup. */
	if (rc == DM_OK)
		rc = db_batch_recent(engine->db, record->id, SEQWIN_BITS, seed_seq, vehicle);
	return rc;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return DM_OK;
	dm_error("cannot create %s: %s", path, strerror(errno));
	return DM_ERR_IO;
}

/* The store records whether it seals (meta 'encryption') when it is
 * created, and refuses to be opened the other way. */
static int check_encryption_mode(struct engine *engine)
{
	const char *want = engine->ring ? "aes-256-gcm" : "off";
	char have[32];
	int rc = db_meta_get(engine->db, "encryption", have, sizeof have);
	if (rc == DM_ERR_NOT_FOUND)
		return db_meta_set(engine->db, "encryption", want);
	if (rc)
		return rc;
	if (strcmp(have, want) == 0)
		return DM_OK;
	dm_error("store: %s was created with encryption '%s' and cannot be opened with '%s'",
		 engine->opt.data_dir, have, want);
	return DM_ERR_INVALID;
}

int engine_open(struct event_base *base, const struct engine_options *options,
		struct engine **out)
{
	*out = NULL;
	struct engine *engine = dm_calloc(1, sizeof *engine);
	if (!engine)
		return DM_ERR_NOMEM;
	engine->base = base;
	engine->opt = *options;
	engine->catalog = options->catalog;
	if (!engine->opt.block_max_samples)
		engine->opt.block_max_samples = DEFAULT_BLOCK_SAMPLES;
	pthread_mutex_init(&engine->lock, NULL);
	pthread_cond_init(&engine->wake, NULL);

	char path[PATH_MAX];
	int rc = make_dir(options->data_dir);
	if (rc == DM_OK) {
		snprintf(path, sizeof path, "%s/store.db", options->data_dir);
		rc = db_open(path, &engine->db);
	}
	if (rc == DM_OK)
		rc = db_open(path, &engine->flush_db);
	if (rc == DM_OK && options->keystore)
		rc = keyring_new(options->keystore, &engine->ring);
	if (rc == DM_OK)
		rc = check_encryption_mode(engine);
	if (rc == DM_OK && !engine->ring)
		dm_warn("store: encryption is OFF: samples are kept in clear in %s (for tests "
			"only)",
			options->data_dir);
	if (rc == DM_OK)
		rc = db_max_flush_gen(engine->db, &engine->last_gen);
	if (rc == DM_OK)
		rc = db_stats(engine->db, &engine->stored);
	if (rc == DM_OK)
		rc = fleet_new(&engine->fleet);
	if (rc == DM_OK)
		rc = db_vehicle_each(engine->db, load_vehicle, engine);
	if (rc == DM_OK)
		rc = payload_decoder_new(engine->catalog, &replay_limits, &engine->replay_decoder);
	if (rc == DM_OK) {
		engine->active = generation_new(++engine->last_gen);
		rc = engine->active ? DM_OK : DM_ERR_NOMEM;
	}
	if (rc == DM_OK) {
		snprintf(path, sizeof path, "%s/wal", options->data_dir);
		rc = make_dir(path);
	}
	if (rc == DM_OK)
		rc = wal_open(path, NULL, &engine->wal);
	if (rc == DM_OK) {
		rc = wal_replay(engine->wal, replay_record, engine);
		if (rc == DM_OK && memtable_samples(engine->active->table))
			dm_info("replayed %zu samples from the write-ahead log",
				memtable_samples(engine->active->table));
	}
	if (rc == DM_OK) {
		engine->flush_timer = event_new(base, -1, EV_PERSIST, on_flush_timer, engine);
		engine->flush_done = event_new(base, -1, 0, on_flush_done, engine);
		engine->compaction_done = event_new(base, -1, 0, on_compaction_done, engine);
		if (!engine->flush_timer || !engine->flush_done || !engine->compaction_done)
			rc = DM_ERR_NOMEM;
	}
	if (rc == DM_OK) {
		struct timeval every = {options->flush_interval_ms / 1000,
					(options->flush_interval_ms % 1000) * 1000};
		event_add(engine->flush_timer, &every);
		if (options->on_commit)
			wal_set_commit_observer(engine->wal, options->on_commit, options->arg);
		rc = wal_start(engine->wal, base, on_durable, engine);
	}
	if (rc == DM_OK) {
		engine->compact_now = engine->compact_pending;
		if (pthread_create(&engine->thread, NULL, flush_thread, engine) == 0)
			engine->thread_started = 1;
		else
			rc = DM_ERR_NOMEM;
	}
	if (rc) {
		engine_close(engine);
		return rc;
	}
	*out = engine;
	return DM_OK;
}

void engine_close(struct engine *engine)
{
	if (!engine)
		return;
	/* 1. The log syncs what it holds; those batches are applied and acked. */
	wal_close(engine->wal);
	engine->wal = NULL;
	/* 2. The flush thread finishes what it is doing and stops. */
	if (engine->thread_started) {
		pthread_mutex_lock(&engine->lock);
		engine->stopping = 1;
		pthread_cond_signal(&engine->wake);
		pthread_mutex_unlock(&engine->lock);
		pthread_join(engine->thread, NULL);
		if (engine->flush_finished && engine->flush_status == DM_OK && engine->frozen) {
			generation_free(engine->frozen);
			engine->frozen = NULL;
		}
	}
	/* 3. Whatever is still in memory goes into blocks now, so the next
	 * start has little to do. The log is left as it is: replaying it skips
	 * every batch already stored (invariant 3), and if this flush fails the
	 * log still has everything. */
	if (engine->flush_db) {
		int rc = DM_OK;
		if (engine->frozen)
			rc = flush_generation(engine, engine->frozen);
		if (rc == DM_OK && engine->active && memtable_samples(engine->active->table))
			flush_generation(engine, engine->active);
		if (engine->compact_pending || engine->compact_now)
			compact(engine);
		report_compaction(engine);
	}
	if (engine->flush_timer)
		event_free(engine->flush_timer);
	if (engine->flush_done)
		event_free(engine->flush_done);
	if (engine->compaction_done)
		event_free(engine->compaction_done);
	generation_free(engine->frozen);
	generation_free(engine->active);
	payload_decoder_free(engine->replay_decoder);
	fleet_free(engine->fleet);
	db_close(engine->flush_db);
	db_close(engine->db);
	keyring_free(engine->ring);
	dm_buf_free(&engine->record);
	dm_buf_free(&engine->inflight);
	pthread_mutex_destroy(&engine->lock);
	pthread_cond_destroy(&engine->wake);
	dm_free(engine);
}

/* ---- reads ---- */

static int series_reserve(struct engine_series *out, size_t more)
{
	if (out->count + more <= out->cap)
		return DM_OK;
	size_t cap = out->cap ? out->cap : 64;
	while (cap < out->count + more)
		cap *= 2;
	int64_t *ts = dm_realloc(out->ts, cap * sizeof *ts);
	if (!ts)
		return DM_ERR_NOMEM;
	out->ts = ts;
	union block_num *vals = dm_realloc(out->vals, cap * sizeof *vals);
	if (!vals)
		return DM_ERR_NOMEM;
	out->vals = vals;
	out->cap = cap;
	return DM_OK;
}

/* Appends the samples of column within [from, to]. */
static int take_column(struct engine_series *out, const struct block_column *column,
		       int64_t from, int64_t to)
{
	int rc = series_reserve(out, column->count);
	for (size_t i = 0; i < column->count && rc == DM_OK; i++) {
		if (column->ts[i] < from || column->ts[i] > to)
			continue;
		union block_num val = column->vals[i];
		if (column->type == SIG_STRING) {
			const char *str = column->strings + column->vals[i].i;
			val.i = (int64_t)out->strings.len;
			rc = dm_buf_append(&out->strings, str, strlen(str) + 1);
		}
		out->ts[out->count] = column->ts[i];
		out->vals[out->count++] = val;
	}
	return rc;
}

static int take_memtable(struct engine_series *out, const struct memtable *table,
			 const struct fleet_vehicle *vehicle, uint16_t signal, int64_t from,
			 int64_t to)
{
	const struct memtable_series *series = memtable_get(table, vehicle->record.id, signal);
	if (!series)
		return DM_OK;
	struct block_column column = {series->type, series->count, series->ts, series->vals,
				      series->strings, series->strings_len};
	return take_column(out, &column, from, to);
}

struct block_reader {
	struct engine_series *out;
	int64_t from, to;
	uint8_t type;
	size_t limit;    /* samples wanted, the oldest first */
	int64_t newest;  /* the newest timestamp taken so far */
	struct keyring *ring; /* and where the blocks belong, to open them */
	uint32_t vehicle_id;
	const char *signal_path;
};

static int take_block(void *arg, const struct db_block_row *row)
{
	struct block_reader *reader = arg;
	const uint8_t *data = row->data;
	size_t len = row->len;
	struct block_info info;
	/* Blocks come in t_min order. With `limit` samples no newer than
	 * `newest` in hand, a block that starts later cannot add to the
	 * oldest `limit`: stop reading, rather than decode years of data. */
	if (reader->out->count >= reader->limit && block_peek(data, len, &info) == DM_OK &&
	    info.t_min > reader->newest)
		return DM_STOP;
	struct block_decoded block;
	struct block_seal seal = {reader->ring, reader->vehicle_id, reader->signal_path, row->t_min,
				  row->t_max};
	int rc = block_decode(data, len, reader->ring ? &seal : NULL, &block);
	if (rc == DM_ERR_CRYPTO) {
		dm_error("store: the block of vehicle %u, %s, [%lld, %lld] fails its "
			 "authentication: it was altered, or moved from another row",
			 (unsigned)reader->vehicle_id, reader->signal_path, (long long)row->t_min,
			 (long long)row->t_max);
		return rc;
	}
	if (rc) {
		if (rc != DM_ERR_GONE)
			dm_error("a stored block does not decode: %s", dm_strerror(rc));
		return rc;
	}
	if (block.info.type == reader->type)
		rc = take_column(reader->out, &block.column, reader->from, reader->to);
	else
		rc = DM_ERR_MALFORMED;
	for (size_t i = 0; i < block.column.count && rc == DM_OK; i++)
		if (block.column.ts[i] >= reader->from && block.column.ts[i] <= reader->to &&
		    block.column.ts[i] > reader->newest)
			reader->newest = block.column.ts[i];
	block_decoded_free(&block);
	return rc;
}

/* Puts out in time order (stable: blocks, then frozen, then live). */
static int sort_series_out(struct engine_series *out)
{
	if (out->count < 2)
		return DM_OK;
	size_t *order = dm_malloc(out->count * sizeof *order);
	int64_t *ts = dm_malloc(out->count * sizeof *ts);
	union block_num *vals = dm_malloc(out->count * sizeof *vals);
	if (!order || !ts || !vals) {
		dm_free(order);
		dm_free(ts);
		dm_free(vals);
		return DM_ERR_NOMEM;
	}
	order_by_time(out->ts, out->count, order);
	for (size_t i = 0; i < out->count; i++) {
		ts[i] = out->ts[order[i]];
		vals[i] = out->vals[order[i]];
	}
	dm_free(order);
	dm_free(out->ts);
	dm_free(out->vals);
	out->ts = ts;
	out->vals = vals;
	out->cap = out->count;
	return DM_OK;
}

static int series_start(struct engine *engine, const struct fleet_vehicle *vehicle,
			uint16_t signal, struct engine_series *out,
			const struct catalog_signal **sig)
{
	memset(out, 0, sizeof *out);
	if (vehicle->record.erased_ms)
		return DM_ERR_GONE;
	*sig = catalog_get(engine->catalog, signal);
	if (!*sig)
		return DM_ERR_NOT_FOUND;
	out->type = (uint8_t)(*sig)->type;
	return DM_OK;
}

int engine_query(struct engine *engine, const struct fleet_vehicle *vehicle, uint16_t signal,
		 int64_t from, int64_t to, size_t limit, struct engine_series *out)
{
	const struct catalog_signal *sig;
	int rc = series_start(engine, vehicle, signal, out, &sig);
	if (rc)
		return rc;
	struct block_reader reader = {
		.out = out, .from = from, .to = to, .type = out->type, .limit = limit,
		.newest = INT64_MIN, .ring = engine->ring, .vehicle_id = vehicle->record.id,
		.signal_path = sig->path,
	};
	uint64_t skip = engine->frozen ? engine->frozen->gen : 0; /* invariant 5 */
	rc = db_block_range(engine->db, vehicle->record.id, sig->path, from, to, skip, take_block,
			    &reader);
	int stopped = rc == DM_STOP; /* samples were left unread: more exist */
	if (stopped)
		rc = DM_OK;
	if (rc == DM_OK && engine->frozen)
		rc = take_memtable(out, engine->frozen->table, vehicle, signal, from, to);
	if (rc == DM_OK)
		rc = take_memtable(out, engine->active->table, vehicle, signal, from, to);
	if (rc == DM_OK)
		rc = sort_series_out(out);
	if (rc == DM_OK && (out->count > limit || stopped)) {
		out->count = out->count < limit ? out->count : limit;
		out->truncated = 1;
	}
	if (rc)
		engine_series_free(out);
	return rc;
}

int engine_latest(struct engine *engine, const struct fleet_vehicle *vehicle, uint16_t signal,
		  struct engine_series *out)
{
	const struct catalog_signal *sig;
	int rc = series_start(engine, vehicle, signal, out, &sig);
	if (rc)
		return rc;
	struct block_reader reader = {
		.out = out, .from = INT64_MIN, .to = INT64_MAX, .type = out->type,
		.limit = SIZE_MAX, .newest = INT64_MIN, .ring = engine->ring,
		.vehicle_id = vehicle->record.id, .signal_path = sig->path,
	};
	uint64_t skip = engine->frozen ? engine->frozen->gen : 0;
	rc = db_block_newest(engine->db, vehicle->record.id, sig->path, skip, take_block, &reader);
	if (rc == DM_OK && engine->frozen)
		rc = take_memtable(out, engine->frozen->table, vehicle, signal, INT64_MIN,
				   INT64_MAX);
	if (rc == DM_OK)
		rc = take_memtable(out, engine->active->table, vehicle, signal, INT64_MIN,
				   INT64_MAX);
	if (rc == DM_OK)
		rc = sort_series_out(out);
	if (rc == DM_OK && out->count > 1) {
		/* Keep the newest (the last after a stable sort: the latest arrival
		 * among equal times). */
		out->ts[0] = out->ts[out->count - 1];
		out->vals[0] = out->vals[out->count - 1];
		out->count = 1;
	}
	if (rc)
		engine_series_free(out);
	return rc;
}

void engine_series_free(struct engine_series *series)
{
	dm_free(series->ts);
	dm_free(series->vals);
	dm_buf_free(&series->strings);
	memset(series, 0, sizeof *series);
}

/* ---- registration and accessors ---- */

/* Inserts the row and, in a sealing store, the vehicle's new data key in
 * the same transaction: its wrapping binds the row's id, known only once
 * the row is in. Nothing of a registration that fails stays behind. */
static int insert_vehicle(struct engine *engine, struct db_vehicle *record)
{
	if (!engine->ring)
		return db_vehicle_insert(engine->db, record);
	if (engine->kek_unsettled)
		return DM_ERR_STATE; /* see engine_rotate_kek */
	int rc = db_begin(engine->db);
	if (rc)
		return rc;
	int installed = 0;
	rc = db_vehicle_insert(engine->db, record);
	if (rc == DM_OK) {
		rc = keyring_create(engine->ring, record->id, record->wrapped_key);
		installed = rc == DM_OK;
	}
	if (rc == DM_OK)
		rc = db_vehicle_set_key(engine->db, record->id, record->wrapped_key);
	if (rc == DM_OK)
		rc = db_commit(engine->db);
	if (rc) {
		db_rollback(engine->db);
		if (installed)
			keyring_discard(engine->ring, record->id);
		return rc;
	}
	record->has_key = 1;
	return DM_OK;
}

int engine_register(struct engine *engine, const char *vin, const char *home,
		    const char *home_site, const char *model, char *secret, size_t secret_len,
		    struct fleet_vehicle **out)
{
	*out = NULL;
	if (!home_here(engine, home))
		return DM_ERR_DENIED;
	if (fleet_by_vin(engine->fleet, vin, strlen(vin)))
		return DM_ERR_EXISTS;
	struct db_vehicle record = {0};
	snprintf(record.vin, sizeof record.vin, "%s", vin);
	snprintf(record.home, sizeof record.home, "%s", home);
	snprintf(record.home_site, sizeof record.home_site, "%s", home_site);
	snprintf(record.model, sizeof record.model, "%s", model);
	record.created_ms = dm_now_ms();
	int rc = secret_generate(secret, secret_len);
	if (rc == DM_OK)
		rc = secret_hash(secret, strlen(secret), record.secret_hash,
				 sizeof record.secret_hash);
	if (rc == DM_OK)
		rc = insert_vehicle(engine, &record);
	if (rc == DM_OK)
		rc = fleet_add(engine->fleet, &record, out);
	if (rc == DM_OK)
		engine->stored.vehicles++;
	if (rc && rc != DM_ERR_EXISTS)
		dm_error("registering a vehicle failed: %s", dm_strerror(rc));
	return rc;
}

struct fleet *engine_fleet(struct engine *engine) { return engine->fleet; }

const struct catalog *engine_catalog(const struct engine *engine) { return engine->catalog; }

int engine_residency_scan(struct engine *engine,
			  int (*fn)(void *arg, const struct db_home_totals *totals), void *arg,
			  uint64_t *orphan_blocks)
{
	return db_residency_scan(engine->db, fn, arg, orphan_blocks);
}

int engine_setting_get(struct engine *engine, const char *key, char *out, size_t out_len)
{
	return db_meta_get(engine->db, key, out, out_len);
}

int engine_setting_set(struct engine *engine, const char *key, const char *value)
{
	return db_meta_set(engine->db, key, value);
}

void engine_stats(struct engine *engine, struct engine_stats *out)
{
	memset(out, 0, sizeof *out);
	out->memtable_samples = memtable_samples(engine->active->table);
	out->memtable_bytes = memtable_bytes(engine->active->table);
	if (engine->frozen) {
		out->memtable_samples += memtable_samples(engine->frozen->table);
		out->memtable_bytes += memtable_bytes(engine->frozen->table);
	}
	out->wal_pending_bytes = wal_pending_bytes(engine->wal);
	out->wal_failed = wal_failed(engine->wal);
	out->flush_failing = engine->flush_failing;
	out->db = engine->stored;
	pthread_mutex_lock(&engine->lock);
	out->db.blocks -= engine->compacted.blocks;
	out->db.block_bytes -= engine->compacted.block_bytes;
	out->db.samples -= engine->compacted.samples;
	out->compaction_pending = engine->compact_pending;
	pthread_mutex_unlock(&engine->lock);
}

int engine_erase(struct engine *engine, struct fleet_vehicle *vehicle, const char *by)
{
	if (vehicle->record.erased_ms)
		return DM_ERR_GONE;
	int64_t now = dm_now_ms();
	/* Durable first: if the process dies after this, the row says erased
	 * and the next start never loads the key. */
	int rc = db_vehicle_erase(engine->db, vehicle->record.id, now, by);
	if (rc) {
		dm_error("erasing vehicle %s failed: %s", vehicle->record.vin, dm_strerror(rc));
		return rc;
	}
	if (engine->ring)
		keyring_destroy(engine->ring, vehicle->record.id);
	vehicle->record.erased_ms = now;
	snprintf(vehicle->record.erased_by, sizeof vehicle->record.erased_by, "%s", by);
	vehicle->record.has_key = 0;
	OPENSSL_cleanse(vehicle->record.wrapped_key, sizeof vehicle->record.wrapped_key);
	dm_info("vehicle %s erased by %s; compaction follows", vehicle->record.vin, by);
	/* Compaction on the flush thread, and a flush now, so the memtable and
	 * the log segments let go of the vehicle's data without waiting. */
	pthread_mutex_lock(&engine->lock);
	engine->compact_now = 1;
	engine->compact_pending = 1;
	engine->erased_waiting++;
	pthread_cond_signal(&engine->wake);
	pthread_mutex_unlock(&engine->lock);
	if (!engine->flush_busy)
		start_flush(engine);
	return DM_OK;
}

/* One vehicle's key wrapped under the new KEK, kept until the commit. */
struct rewrapped {
	struct fleet_vehicle *vehicle;
	uint8_t blob[KEYSTORE_WRAPPED_LEN];
};

struct rewrap {
	struct engine *engine;
	struct dm_buf done; /* struct rewrapped[] */
};

static int rewrap_vehicle(void *arg, struct fleet_vehicle *vehicle)
{
	struct rewrap *rewrap = arg;
	if (vehicle->record.erased_ms)
		return DM_OK;
	struct rewrapped one = {vehicle, {0}};
	int rc = keyring_wrap(rewrap->engine->ring, vehicle->record.id, one.blob);
	if (rc == DM_OK)
		rc = db_vehicle_set_key(rewrap->engine->db, vehicle->record.id, one.blob);
	if (rc == DM_OK)
		rc = dm_buf_append(&rewrap->done, &one, sizeof one);
	return rc;
}

int engine_rotate_kek(struct engine *engine, uint32_t *new_id)
{
	if (!engine->ring)
		return DM_ERR_UNSUPPORTED;
	if (engine->kek_unsettled)
		return DM_ERR_STATE;
	uint32_t old_id = keystore_key_id(engine->opt.keystore);
	int rc = keystore_rotate(engine->opt.keystore, new_id);
	if (rc) {
		if (keystore_key_id(engine->opt.keystore) != old_id) {
			/* The new KEK is current but may not survive a power loss
			 * (keystore.h): a key wrapped under it now could be lost
			 * with it. Nothing more is wrapped until a restart. */
			engine->kek_unsettled = 1;
			dm_error("KEK rotation did not finish (%s): no vehicle can be registered "
				 "until the node restarts",
				 dm_strerror(rc));
		} else {
			dm_error("KEK rotation failed: %s; the current KEK stays", dm_strerror(rc));
		}
		return rc;
	}
	struct rewrap rewrap = {engine, {0}};
	rc = db_begin(engine->db);
	if (rc == DM_OK)
		rc = fleet_each(engine->fleet, rewrap_vehicle, &rewrap);
	if (rc == DM_OK)
		rc = db_commit(engine->db);
	size_t count = rewrap.done.len / sizeof(struct rewrapped);
	if (rc) {
		/* The old KEK is kept, so every key still unwraps; a later
		 * rotation re-wraps them all. */
		db_rollback(engine->db);
		dm_error("re-wrapping data keys under KEK %08x failed: %s; the previous KEK "
			 "still unwraps every data key",
			 (unsigned)*new_id, dm_strerror(rc));
	} else {
		const struct rewrapped *done = (const struct rewrapped *)rewrap.done.data;
		for (size_t i = 0; i < count; i++)
			memcpy(done[i].vehicle->record.wrapped_key, done[i].blob,
			       KEYSTORE_WRAPPED_LEN);
		int dropped = keystore_drop(engine->opt.keystore, old_id);
		if (dropped && dropped != DM_ERR_NOT_FOUND)
			dm_warn("the old KEK %08x could not be dropped: %s", (unsigned)old_id,
				dm_strerror(dropped));
		dm_info("KEK rotated from %08x to %08x; %zu data keys re-wrapped", (unsigned)old_id,
			(unsigned)*new_id, count);
	}
	OPENSSL_cleanse(rewrap.done.data, rewrap.done.cap);
	dm_buf_free(&rewrap.done);
	return rc;
}

/* ==== The loop's database connection, for the API's tables (issue 5: roles) ==== */

struct db *engine_db(struct engine *engine) { return engine->db; }

/* ==== end of the API's tables ==== */
