/*
 * test_wal.c — the write-ahead log: replay, group commit, durability order,
 * torn tails, corruption, the error state, rotation and limits.
 *
 * Each case runs in its own mkdtemp directory, removed afterwards. File I/O
 * goes through a test table (tio) that counts calls, delays fsync, cuts
 * writes short and fails the Nth write or fsync.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "store/wal.h"
#include "util/crc32c.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_COOKIES 4096
#define PUMP_TIMEOUT_NS (10ull * 1000 * 1000 * 1000)

/* ---- the fault-injecting I/O table ------------------------------------- */

static struct {
	atomic_int write_calls;
	atomic_int file_fsyncs;
	atomic_int dir_fsyncs;
	atomic_int fail_write_at;   /* 1-based write call that fails with EIO; 0: none */
	atomic_int fail_fsync_at;   /* 1-based file fsync that fails with EIO; 0: none */
	atomic_int fsync_delay_ms;  /* sleep inside every file fsync */
	atomic_int max_write_chunk; /* short writes of at most this many bytes; 0: whole */
	atomic_int eintr_every;     /* every Nth write call fails with EINTR first */
	atomic_int in_fsync;        /* a file fsync is in progress */
	atomic_size_t written;      /* bytes written to segment files */
	atomic_size_t synced;       /* `written` as of the last successful file fsync */
} tio;

static void tio_reset(void)
{
	atomic_store(&tio.write_calls, 0);
	atomic_store(&tio.file_fsyncs, 0);
	atomic_store(&tio.dir_fsyncs, 0);
	atomic_store(&tio.fail_write_at, 0);
	atomic_store(&tio.fail_fsync_at, 0);
	atomic_store(&tio.fsync_delay_ms, 0);
	atomic_store(&tio.max_write_chunk, 0);
	atomic_store(&tio.eintr_every, 0);
	atomic_store(&tio.in_fsync, 0);
	atomic_store(&tio.written, 0);
	atomic_store(&tio.synced, 0);
}

static int tio_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

static ssize_t tio_write(int fd, const void *buf, size_t len)
{
	int call = atomic_fetch_add(&tio.write_calls, 1) + 1;
	int eintr = atomic_load(&tio.eintr_every);
	if (eintr > 0 && call % eintr == 0) {
		errno = EINTR;
		return -1;
	}
	if (call == atomic_load(&tio.fail_write_at)) {
		errno = EIO;
		return -1;
	}
	int chunk = atomic_load(&tio.max_write_chunk);
	if (chunk > 0 && len > (size_t)chunk)
		len = (size_t)chunk;
	ssize_t n = write(fd, buf, len);
	if (n > 0)
		atomic_fetch_add(&tio.written, (size_t)n);
	return n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int tio_fsync(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		atomic_fetch_add(&tio.dir_fsyncs, 1);
		return fsync(fd);
	}
	int call = atomic_fetch_add(&tio.file_fsyncs, 1) + 1;
	size_t written = atomic_load(&tio.written);
	atomic_store(&tio.in_fsync, 1);
	int delay = atomic_load(&tio.fsync_delay_ms);
	if (delay > 0)
		sleep_ms(delay);
	int rc;
	if (call == atomic_load(&tio.fail_fsync_at)) {
		errno = EIO;
		rc = -1;
	} else {
		rc = fdatasync(fd);
		if (rc == 0)
			atomic_store(&tio.synced, written);
	}
	atomic_store(&tio.in_fsync, 0);
	return rc;
}

static int tio_close(int fd)
{
	return close(fd);
}

static const struct wal_io test_io = {tio_open, tio_write, tio_fsync, tio_close};

/* ---- records ----------------------------------------------------------- */

static void fill_record(uint8_t *out, uint32_t seed, size_t len)
{
	for (size_t k = 0; k < len; k++)
		out[k] = (uint8_t)(seed * 131u + k * 7u + (k >> 8));
}

static size_t framed(size_t len)
{
	return WAL_RECORD_HEADER_SIZE + len;
}

struct expect {
	uint32_t seed;
	size_t len;
};

struct replay_check {
	const struct expect *want;
	size_t want_count;
	size_t seen;
	int mismatch;
};

static int check_record(void *arg, const uint8_t *record, size_t len)
{
	struct replay_check *check = arg;
	if (check->seen >= check->want_count || check->want[check->seen].len != len) {
		check->mismatch = 1;
	} else {
		uint8_t *want = malloc(len ? len : 1);
		assert_non_null(want);
		fill_record(want, check->want[check->seen].seed, len);
		if (memcmp(want, record, len) != 0)
			check->mismatch = 1;
		free(want);
	}
	check->seen++;
	return 0;
}

/* ---- fixture: a directory, an event base, collected callbacks ---------- */

struct commit_stats {
	atomic_int commits;
	atomic_size_t max_records;
	atomic_size_t max_bytes;
	atomic_size_t records;
};

struct fixture {
	char dir[64];
	struct event_base *base;
	struct event *ticker;
	size_t count;
	size_t calls;
	uintptr_t cookies[MAX_COOKIES];
	int statuses[MAX_COOKIES];
	int out_of_order;
	int before_fsync;          /* a cookie was reported before its bytes were synced */
	const size_t *end_offsets; /* per cookie: segment offset where its record ends */
	struct wal *live;          /* closed by teardown when a case fails midway */
	struct commit_stats stats;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	strcpy(fx->dir, "/tmp/test_wal.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	fx->base = event_base_new();
	assert_non_null(fx->base);
	/* A ticking timer keeps EVLOOP_ONCE from returning at once when no
	 * other event is pending, so pumping sleeps instead of spinning. */
	fx->ticker = event_new(fx->base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval every = {0, 2000};
	event_add(fx->ticker, &every);
	tio_reset();
	*state = fx;
	return 0;
}

static void remove_files(const char *dir)
{
	DIR *listing = opendir(dir);
	if (!listing)
		return;
	struct dirent *ent;
	while ((ent = readdir(listing)) != NULL) {
		if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
			continue;
		unlinkat(dirfd(listing), ent->d_name, 0);
	}
	closedir(listing);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	/* After a failed assertion the writer may still run: stop it before
	 * the fixture it reports into goes away. */
	wal_close(fx->live);
	remove_files(fx->dir);
	rmdir(fx->dir);
	event_free(fx->ticker);
	event_base_free(fx->base);
	free(fx);
	return 0;
}

static void collect(void *arg, void *const *cookies, size_t count, int status)
{
	struct fixture *fx = arg;
	fx->calls++;
	for (size_t i = 0; i < count; i++) {
		uintptr_t cookie = (uintptr_t)cookies[i];
		if (cookie != fx->count)
			fx->out_of_order = 1;
		if (fx->end_offsets && status == DM_OK &&
		    atomic_load(&tio.synced) < fx->end_offsets[cookie])
			fx->before_fsync = 1;
		if (fx->count < MAX_COOKIES) {
			fx->cookies[fx->count] = cookie;
			fx->statuses[fx->count] = status;
		}
		fx->count++;
	}
}

static void pump_until(struct fixture *fx, size_t want)
{
	uint64_t deadline = dm_mono_ns() + PUMP_TIMEOUT_NS;
	while (fx->count < want) {
		if (dm_mono_ns() > deadline)
			fail_msg("timed out: %zu of %zu callbacks arrived", fx->count, want);
		event_base_loop(fx->base, EVLOOP_ONCE);
	}
}

/* Pumps for `ms` milliseconds (to see that nothing more arrives). */
static void pump_for(struct fixture *fx, int ms)
{
	uint64_t until = dm_mono_ns() + (uint64_t)ms * 1000000u;
	while (dm_mono_ns() < until)
		event_base_loop(fx->base, EVLOOP_ONCE);
}

static void wait_for_fsync_in_flight(void)
{
	uint64_t deadline = dm_mono_ns() + PUMP_TIMEOUT_NS;
	while (!atomic_load(&tio.in_fsync)) {
		if (dm_mono_ns() > deadline)
			fail_msg("no fsync started");
		sleep_ms(1);
	}
}

static struct wal *open_log(struct fixture *fx, const struct wal_io *io)
{
	struct wal_options options = {.io = io};
	struct wal *wal;
	assert_int_equal(wal_open(fx->dir, &options, &wal), DM_OK);
	fx->live = wal;
	return wal;
}

static void close_log(struct fixture *fx, struct wal *wal)
{
	if (fx->live == wal)
		fx->live = NULL;
	wal_close(wal);
}

static void expect_replay(struct fixture *fx, const struct expect *want, size_t count)
{
	struct wal *wal = open_log(fx, NULL);
	struct replay_check check = {want, count, 0, 0};
	assert_int_equal(wal_replay(wal, check_record, &check), DM_OK);
	assert_int_equal(check.seen, count);
	assert_false(check.mismatch);
	close_log(fx, wal);
}

/* Opens, replays (expecting `replayed` records) and starts the log. */
static struct wal *start_log(struct fixture *fx, const struct wal_io *io, size_t replayed)
{
	struct wal *wal = open_log(fx, io);
	struct replay_check check = {NULL, 0, 0, 0};
	assert_int_equal(wal_replay(wal, check_record, &check), DM_OK);
	assert_int_equal(check.seen, replayed);
	assert_int_equal(wal_start(wal, fx->base, collect, fx), DM_OK);
	return wal;
}

static int append_record(struct wal *wal, uint32_t seed, size_t len, uintptr_t cookie)
{
	uint8_t *bytes = malloc(len ? len : 1);
	assert_non_null(bytes);
	fill_record(bytes, seed, len);
	int rc = wal_append(wal, bytes, len, (void *)cookie);
	free(bytes);
	return rc;
}

static void segment_file(const struct fixture *fx, uint64_t segment, char *out, size_t size)
{
	snprintf(out, size, "%s/wal-%016llx.log", fx->dir, (unsigned long long)segment);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	FILE *file = fopen(path, "rb");
	assert_non_null(file);
	fseek(file, 0, SEEK_END);
	long size = ftell(file);
	fseek(file, 0, SEEK_SET);
	uint8_t *bytes = malloc((size_t)size + 1);
	assert_non_null(bytes);
	assert_int_equal(fread(bytes, 1, (size_t)size, file), (size_t)size);
	fclose(file);
	*len = (size_t)size;
	return bytes;
}

static void write_whole(const char *path, const uint8_t *bytes, size_t len)
{
	FILE *file = fopen(path, "wb");
	assert_non_null(file);
	assert_int_equal(fwrite(bytes, 1, len, file), len);
	fclose(file);
}

static off_t file_size(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	return st.st_size;
}

static size_t count_segments(const struct fixture *fx)
{
	size_t count = 0;
	DIR *listing = opendir(fx->dir);
	assert_non_null(listing);
	struct dirent *ent;
	while ((ent = readdir(listing)) != NULL)
		if (strncmp(ent->d_name, "wal-", 4) == 0)
			count++;
	closedir(listing);
	return count;
}

/* Writes segments by hand: header then records of the given lengths. */
static void build_segment(const struct fixture *fx, uint64_t segment, const struct expect *recs,
                          size_t count)
{
	char path[256];
	segment_file(fx, segment, path, sizeof path);
	FILE *file = fopen(path, "wb");
	assert_non_null(file);
	uint8_t header[WAL_SEGMENT_HEADER_SIZE];
	wal_encode_segment_header(segment, header);
	fwrite(header, 1, sizeof header, file);
	for (size_t i = 0; i < count; i++) {
		uint8_t *payload = malloc(recs[i].len ? recs[i].len : 1);
		assert_non_null(payload);
		fill_record(payload, recs[i].seed, recs[i].len);
		uint8_t rh[WAL_RECORD_HEADER_SIZE];
		uint32_t len = (uint32_t)recs[i].len;
		rh[0] = (uint8_t)(len >> 24);
		rh[1] = (uint8_t)(len >> 16);
		rh[2] = (uint8_t)(len >> 8);
		rh[3] = (uint8_t)len;
		uint32_t crc = crc32c(crc32c(0, rh, 4), payload, recs[i].len);
		rh[4] = (uint8_t)(crc >> 24);
		rh[5] = (uint8_t)(crc >> 16);
		rh[6] = (uint8_t)(crc >> 8);
		rh[7] = (uint8_t)crc;
		fwrite(rh, 1, sizeof rh, file);
		fwrite(payload, 1, recs[i].len, file);
		free(payload);
	}
	fclose(file);
}

/* ---- the cases --------------------------------------------------------- */

static void test_wal_crc32c_matches_the_known_check_values(void **state)
{
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
	uint8_t zeros[32] = {0}, ones[32];
	memset(ones, 0xff, sizeof ones);
	assert_int_equal(crc32c(0, zeros, sizeof zeros), 0x8a9136aau);
	assert_int_equal(crc32c(0, ones, sizeof ones), 0x62a8ab43u);
	assert_int_equal(crc32c(0, "", 0), 0);
	/* Split at every point and from unaligned starts: same result. */
	uint8_t data[100];
	fill_record(data, 5, sizeof data);
	uint32_t whole = crc32c(0, data, sizeof data);
	for (size_t cut = 0; cut <= sizeof data; cut++)
		assert_int_equal(
		    crc32c(crc32c(0, data, cut), data + cut, sizeof data - cut), whole);
	/* The processor's instruction (where used) and the tables agree, at
	 * every length and start. */
	assert_int_equal(crc32c_portable(0, "123456789", 9), 0xe3069283u);
	for (size_t start = 0; start < 8; start++)
		for (size_t len = 0; start + len <= sizeof data; len++)
			assert_int_equal(crc32c(7, data + start, len),
					 crc32c_portable(7, data + start, len));
}

static void test_wal_replays_appended_records_in_order_after_close_and_reopen(void **state)
{
	struct fixture *fx = *state;
	struct expect want[60];
	struct wal *wal = start_log(fx, NULL, 0);
	for (uint32_t i = 0; i < 50; i++) {
		want[i] = (struct expect){i, (i * 97) % 2001};
		assert_int_equal(append_record(wal, i, want[i].len, i), DM_OK);
	}
	pump_until(fx, 50);
	assert_false(fx->out_of_order);
	for (size_t i = 0; i < 50; i++)
		assert_int_equal(fx->statuses[i], DM_OK);
	assert_int_equal(wal_pending_bytes(wal), 0);
	close_log(fx, wal);
	expect_replay(fx, want, 50);

	/* A reopened log appends to a new segment after the old records. */
	wal = start_log(fx, NULL, 50);
	for (uint32_t i = 50; i < 60; i++) {
		want[i] = (struct expect){i, 10 + i};
		assert_int_equal(append_record(wal, i, want[i].len, i), DM_OK);
	}
	pump_until(fx, 60);
	close_log(fx, wal);
	assert_int_equal(count_segments(fx), 2);
	expect_replay(fx, want, 60);
}

static void test_wal_reports_durable_in_append_order_only_after_fsync(void **state)
{
	struct fixture *fx = *state;
	enum { RECORDS = 300 };
	static size_t ends[RECORDS];
	size_t offset = WAL_SEGMENT_HEADER_SIZE;
	for (size_t i = 0; i < RECORDS; i++) {
		offset += framed(i % 50 * 13);
		ends[i] = offset;
	}
	fx->end_offsets = ends;
	atomic_store(&tio.fsync_delay_ms, 2);
	struct wal *wal = start_log(fx, &test_io, 0);
	int dir_fsyncs_at_open = atomic_load(&tio.dir_fsyncs); /* the parent's */
	assert_int_equal(dir_fsyncs_at_open, 1);
	for (uint32_t i = 0; i < RECORDS; i++) {
		assert_int_equal(append_record(wal, i, i % 50 * 13, i), DM_OK);
		if (i % 37 == 0) /* let some commits happen between bursts */
			event_base_loop(fx->base, EVLOOP_NONBLOCK);
	}
	pump_until(fx, RECORDS);
	assert_false(fx->out_of_order);
	assert_false(fx->before_fsync);
	assert_true(atomic_load(&tio.file_fsyncs) >= 1);
	/* The new segment's directory entry was synced too. */
	assert_int_equal(atomic_load(&tio.dir_fsyncs), dir_fsyncs_at_open + 1);
	close_log(fx, wal);
	assert_int_equal(fx->count, RECORDS);
}

static void observe(void *arg, size_t records, size_t bytes, uint64_t fsync_ns)
{
	struct commit_stats *stats = arg;
	atomic_fetch_add(&stats->commits, 1);
	atomic_fetch_add(&stats->records, records);
	if (records > atomic_load(&stats->max_records))
		atomic_store(&stats->max_records, records);
	if (bytes > atomic_load(&stats->max_bytes))
		atomic_store(&stats->max_bytes, bytes);
}

static void test_wal_commits_many_appends_during_a_slow_fsync_together(void **state)
{
	struct fixture *fx = *state;
	struct commit_stats *stats = &fx->stats;
	atomic_store(&tio.fsync_delay_ms, 100);
	struct wal *wal = start_log(fx, &test_io, 0);
	wal_set_commit_observer(wal, observe, stats);
	assert_int_equal(append_record(wal, 0, 100, 0), DM_OK);
	wait_for_fsync_in_flight();
	for (uint32_t i = 1; i <= 200; i++)
		assert_int_equal(append_record(wal, i, 100, i), DM_OK);
	assert_true(wal_pending_bytes(wal) >= 200 * framed(100));
	pump_until(fx, 201);
	assert_false(fx->out_of_order);
	assert_true(atomic_load(&tio.file_fsyncs) <= 3);
	assert_int_equal(atomic_load(&stats->records), 201);
	assert_int_equal(atomic_load(&stats->max_records), 200);
	close_log(fx, wal);
}

static void test_wal_keeps_each_commit_within_max_batch_bytes(void **state)
{
	struct fixture *fx = *state;
	struct commit_stats *stats = &fx->stats;
	atomic_store(&tio.fsync_delay_ms, 20);
	struct wal_options options = {.io = &test_io, .max_batch_bytes = 1000};
	struct wal *wal;
	assert_int_equal(wal_open(fx->dir, &options, &wal), DM_OK);
	fx->live = wal;
	assert_int_equal(wal_start(wal, fx->base, collect, fx), DM_OK);
	wal_set_commit_observer(wal, observe, stats);
	assert_int_equal(append_record(wal, 0, 300, 0), DM_OK);
	wait_for_fsync_in_flight();
	for (uint32_t i = 1; i < 30; i++)
		assert_int_equal(append_record(wal, i, 300, i), DM_OK);
	/* A record above the bound goes alone. */
	assert_int_equal(append_record(wal, 30, 5000, 30), DM_OK);
	pump_until(fx, 31);
	assert_int_equal(atomic_load(&stats->max_records), 3); /* 3 * 308 <= 1000 */
	assert_int_equal(atomic_load(&stats->max_bytes), framed(5000));
	close_log(fx, wal);
	struct expect want[31];
	for (uint32_t i = 0; i < 31; i++)
		want[i] = (struct expect){i, i < 30 ? 300 : 5000};
	expect_replay(fx, want, 31);
}

static void test_wal_completes_short_and_interrupted_writes(void **state)
{
	struct fixture *fx = *state;
	atomic_store(&tio.max_write_chunk, 7);
	atomic_store(&tio.eintr_every, 5);
	struct wal *wal = start_log(fx, &test_io, 0);
	struct expect want[20];
	for (uint32_t i = 0; i < 20; i++) {
		want[i] = (struct expect){i, 40 + i};
		assert_int_equal(append_record(wal, i, want[i].len, i), DM_OK);
	}
	pump_until(fx, 20);
	for (size_t i = 0; i < 20; i++)
		assert_int_equal(fx->statuses[i], DM_OK);
	close_log(fx, wal);
	expect_replay(fx, want, 20);
}

static void test_wal_replays_the_records_before_a_torn_tail_and_then_accepts_appends(void **state)
{
	struct fixture *fx = *state;
	const struct expect first[] = {{0, 100}, {1, 200}, {2, 120}};
	struct wal *wal = start_log(fx, NULL, 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(append_record(wal, first[i].seed, first[i].len, i), DM_OK);
	pump_until(fx, 3);
	close_log(fx, wal);

	char path[256];
	segment_file(fx, 1, path, sizeof path);
	size_t len;
	uint8_t *original = read_whole(path, &len);
	size_t last_start = WAL_SEGMENT_HEADER_SIZE + framed(100) + framed(200);
	assert_int_equal(len, last_start + framed(120));

	for (size_t cut = last_start; cut < len; cut++) {
		remove_files(fx->dir);
		write_whole(path, original, cut);
		fx->count = 0;
		wal = start_log(fx, NULL, 2);
		assert_int_equal(file_size(path), (off_t)last_start);
		assert_int_equal(append_record(wal, 9, 33, 0), DM_OK);
		pump_until(fx, 1);
		assert_int_equal(fx->statuses[0], DM_OK);
		close_log(fx, wal);
		const struct expect after[] = {{0, 100}, {1, 200}, {9, 33}};
		expect_replay(fx, after, 3);
	}
	free(original);
}

static void test_wal_cuts_a_corrupt_last_record_of_the_last_segment(void **state)
{
	struct fixture *fx = *state;
	const struct expect recs[] = {{0, 64}, {1, 64}};
	build_segment(fx, 1, recs, 2);
	char path[256];
	segment_file(fx, 1, path, sizeof path);
	size_t len;
	uint8_t *original = read_whole(path, &len);
	size_t last_start = WAL_SEGMENT_HEADER_SIZE + framed(64);
	/* The length, the checksum and the payload of the last record. */
	const size_t flips[] = {0, 3, 4, 7, 8, 40, framed(64) - 1};
	for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
		uint8_t *copy = malloc(len);
		memcpy(copy, original, len);
		copy[last_start + flips[i]] ^= 0x20;
		write_whole(path, copy, len);
		free(copy);
		expect_replay(fx, recs, 1);
		assert_int_equal(file_size(path), (off_t)last_start);
	}
	free(original);
}

static void test_wal_removes_a_last_segment_whose_header_is_torn(void **state)
{
	struct fixture *fx = *state;
	const struct expect recs[] = {{0, 10}, {1, 20}};
	build_segment(fx, 1, recs, 2);
	build_segment(fx, 2, NULL, 0);
	char path[256];
	segment_file(fx, 2, path, sizeof path);
	for (size_t cut = 0; cut < WAL_SEGMENT_HEADER_SIZE; cut++) {
		size_t len;
		uint8_t *header = read_whole(path, &len);
		write_whole(path, header, cut);
		free(header);
		expect_replay(fx, recs, 2);
		assert_int_equal(file_size(path), -1);
		build_segment(fx, 2, NULL, 0);
	}
	/* Appends after the removal go to a segment of a higher id. */
	unlink(path);
	build_segment(fx, 2, NULL, 0);
	assert_int_equal(truncate(path, 5), 0);
	struct wal *wal = start_log(fx, NULL, 2);
	assert_int_equal(append_record(wal, 2, 30, 0), DM_OK);
	pump_until(fx, 1);
	close_log(fx, wal);
	segment_file(fx, 3, path, sizeof path);
	assert_true(file_size(path) > 0);
	const struct expect all[] = {{0, 10}, {1, 20}, {2, 30}};
	expect_replay(fx, all, 3);
}

static void test_wal_refuses_to_replay_a_flipped_byte_in_a_middle_segment(void **state)
{
	struct fixture *fx = *state;
	const struct expect one[] = {{1, 50}, {2, 60}}, two[] = {{3, 70}, {4, 80}},
	                    three[] = {{5, 90}};
	char path[256];
	segment_file(fx, 2, path, sizeof path);
	/* Offsets in segment 2: its header, a record header, a payload. */
	const size_t flips[] = {3, 21, WAL_SEGMENT_HEADER_SIZE + 2, WAL_SEGMENT_HEADER_SIZE + 5,
	                        WAL_SEGMENT_HEADER_SIZE + framed(70) + 40};
	for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
		remove_files(fx->dir);
		build_segment(fx, 1, one, 2);
		build_segment(fx, 2, two, 2);
		build_segment(fx, 3, three, 1);
		size_t len;
		uint8_t *bytes = read_whole(path, &len);
		bytes[flips[i]] ^= 0x01;
		write_whole(path, bytes, len);

		struct wal *wal = open_log(fx, NULL);
		struct replay_check check = {one, 2, 0, 0};
		assert_int_equal(wal_replay(wal, check_record, &check), DM_ERR_MALFORMED);
		assert_int_equal(wal_start(wal, fx->base, collect, fx), DM_ERR_INVALID);
		close_log(fx, wal);
		/* Nothing was cut from a segment that is not the last. */
		size_t after_len;
		uint8_t *after = read_whole(path, &after_len);
		assert_int_equal(after_len, len);
		assert_memory_equal(after, bytes, len);
		free(after);
		free(bytes);
	}
}

static void test_wal_refuses_a_record_longer_than_the_limit_even_with_a_valid_checksum(void **state)
{
	struct fixture *fx = *state;
	const struct expect small[] = {{1, 10}};
	const struct expect huge[] = {{1, 10}, {2, WAL_MAX_RECORD + 1}};
	char path[256];
	segment_file(fx, 1, path, sizeof path);

	/* At the end of the last segment: a torn tail, cut off. */
	build_segment(fx, 1, huge, 2);
	expect_replay(fx, small, 1);
	assert_int_equal(file_size(path), (off_t)(WAL_SEGMENT_HEADER_SIZE + framed(10)));

	/* In an earlier segment: corruption. */
	build_segment(fx, 1, huge, 2);
	build_segment(fx, 2, NULL, 0);
	struct wal *wal = open_log(fx, NULL);
	struct replay_check check = {small, 1, 0, 0};
	assert_int_equal(wal_replay(wal, check_record, &check), DM_ERR_MALFORMED);
	close_log(fx, wal);
}

static void test_wal_accepts_records_up_to_the_limit_and_refuses_one_byte_more(void **state)
{
	struct fixture *fx = *state;
	struct wal *wal = start_log(fx, NULL, 0);
	assert_int_equal(append_record(wal, 1, WAL_MAX_RECORD - 1, 0), DM_OK);
	assert_int_equal(append_record(wal, 2, WAL_MAX_RECORD, 1), DM_OK);
	assert_int_equal(append_record(wal, 3, (size_t)WAL_MAX_RECORD + 1, 2), DM_ERR_TOO_LARGE);
	assert_int_equal(append_record(wal, 4, 0, 2), DM_OK);
	pump_until(fx, 3);
	pump_for(fx, 20);
	assert_int_equal(fx->count, 3);
	close_log(fx, wal);
	const struct expect want[] = {{1, WAL_MAX_RECORD - 1}, {2, WAL_MAX_RECORD}, {4, 0}};
	expect_replay(fx, want, 3);
}

static void test_wal_enters_its_error_state_when_a_write_fails(void **state)
{
	struct fixture *fx = *state;
	/* Writes 1 and 2 are the segment header and record 0; write 3, of the
	 * batch queued during record 0's slow fsync, fails. */
	atomic_store(&tio.fail_write_at, 3);
	atomic_store(&tio.fsync_delay_ms, 50);
	atomic_store(&tio.max_write_chunk, 200); /* the failing batch is half written */
	struct wal *wal = start_log(fx, &test_io, 0);
	assert_int_equal(append_record(wal, 0, 100, 0), DM_OK);
	wait_for_fsync_in_flight();
	for (uint32_t i = 1; i <= 3; i++)
		assert_int_equal(append_record(wal, i, 100, i), DM_OK);
	pump_until(fx, 4);
	assert_false(fx->out_of_order);
	assert_int_equal(fx->statuses[0], DM_OK);
	for (size_t i = 1; i <= 3; i++)
		assert_int_equal(fx->statuses[i], DM_ERR_STATE);
	assert_true(wal_failed(wal));
	assert_int_equal(wal_pending_bytes(wal), 0);
	assert_int_equal(append_record(wal, 9, 100, 9), DM_ERR_STATE);
	pump_for(fx, 20);
	assert_int_equal(fx->count, 4);
	assert_int_equal(atomic_load(&tio.file_fsyncs), 1);
	close_log(fx, wal);
	assert_int_equal(atomic_load(&tio.file_fsyncs), 1);
	/* Only record 0 was acknowledged; the torn rest is cut on replay. */
	const struct expect want[] = {{0, 100}};
	expect_replay(fx, want, 1);
}

static void test_wal_enters_its_error_state_when_an_fsync_fails_and_never_retries_it(void **state)
{
	struct fixture *fx = *state;
	atomic_store(&tio.fail_fsync_at, 2);
	atomic_store(&tio.fsync_delay_ms, 50);
	struct wal *wal = start_log(fx, &test_io, 0);
	assert_int_equal(append_record(wal, 0, 100, 0), DM_OK);
	pump_until(fx, 1);
	assert_int_equal(fx->statuses[0], DM_OK);

	/* Record 1's fsync fails; 2..5 are queued behind it and fail too. */
	assert_int_equal(append_record(wal, 1, 100, 1), DM_OK);
	wait_for_fsync_in_flight();
	for (uint32_t i = 2; i <= 5; i++)
		assert_int_equal(append_record(wal, i, 100, i), DM_OK);
	pump_until(fx, 6);
	assert_false(fx->out_of_order);
	for (size_t i = 1; i <= 5; i++)
		assert_int_equal(fx->statuses[i], DM_ERR_STATE);
	assert_true(wal_failed(wal));
	assert_int_equal(append_record(wal, 6, 100, 6), DM_ERR_STATE);
	pump_for(fx, 100);
	assert_int_equal(atomic_load(&tio.file_fsyncs), 2);
	close_log(fx, wal);
	assert_int_equal(atomic_load(&tio.file_fsyncs), 2);
	assert_int_equal(fx->count, 6);
}

static void
test_wal_rotate_and_release_before_delete_old_segments_but_keep_the_current(void **state)
{
	struct fixture *fx = *state;
	atomic_store(&tio.fsync_delay_ms, 20);
	struct wal *wal = start_log(fx, &test_io, 0);
	uint64_t second, third;
	/* Records before the rotate go to segment 1 even while still queued. */
	assert_int_equal(append_record(wal, 0, 10, 0), DM_OK);
	wait_for_fsync_in_flight();
	assert_int_equal(append_record(wal, 1, 10, 1), DM_OK);
	assert_int_equal(wal_rotate(wal, &second), DM_OK);
	assert_int_equal(second, 2);
	assert_int_equal(append_record(wal, 2, 10, 2), DM_OK);
	pump_until(fx, 3);
	char path[256];
	segment_file(fx, 1, path, sizeof path);
	assert_int_equal(file_size(path), (off_t)(WAL_SEGMENT_HEADER_SIZE + 2 * framed(10)));
	segment_file(fx, 2, path, sizeof path);
	assert_int_equal(file_size(path), (off_t)(WAL_SEGMENT_HEADER_SIZE + framed(10)));

	assert_int_equal(wal_rotate(wal, &third), DM_OK);
	assert_int_equal(third, 3);
	assert_int_equal(append_record(wal, 3, 10, 3), DM_OK);
	assert_int_equal(append_record(wal, 4, 10, 4), DM_OK);
	pump_until(fx, 5);
	assert_int_equal(count_segments(fx), 3);
	assert_int_equal(wal_release_before(wal, third), DM_OK);
	assert_int_equal(count_segments(fx), 1);
	segment_file(fx, 3, path, sizeof path);
	assert_true(file_size(path) > 0);

	/* The newest durable segment stays even when released: it remembers
	 * the highest id. */
	uint64_t fourth;
	assert_int_equal(wal_rotate(wal, &fourth), DM_OK);
	assert_int_equal(wal_release_before(wal, fourth), DM_OK);
	assert_int_equal(count_segments(fx), 1);
	close_log(fx, wal);

	const struct expect want[] = {{3, 10}, {4, 10}};
	expect_replay(fx, want, 2);
	wal = start_log(fx, NULL, 2);
	assert_int_equal(append_record(wal, 5, 10, 5), DM_OK);
	pump_until(fx, 6);
	close_log(fx, wal);
	segment_file(fx, 4, path, sizeof path);
	assert_true(file_size(path) > 0);
}

static void test_wal_close_reports_queued_cookies(void **state)
{
	struct fixture *fx = *state;
	atomic_store(&tio.fsync_delay_ms, 30);
	struct wal *wal = start_log(fx, &test_io, 0);
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(append_record(wal, i, 100, i), DM_OK);
	/* No pumping: wal_close must sync and report everything itself. */
	close_log(fx, wal);
	assert_int_equal(fx->count, 10);
	assert_false(fx->out_of_order);
	for (size_t i = 0; i < 10; i++)
		assert_int_equal(fx->statuses[i], DM_OK);
	/* Nothing is left for the loop. */
	pump_for(fx, 10);
	assert_int_equal(fx->count, 10);
}

static void test_wal_close_accepts_null_and_a_log_that_never_started(void **state)
{
	struct fixture *fx = *state;
	wal_close(NULL);
	struct wal *wal = open_log(fx, NULL);
	assert_int_equal(append_record(wal, 0, 10, 0), DM_ERR_INVALID);
	close_log(fx, wal);
}

static void test_wal_refuses_a_second_opener_and_a_start_before_replay(void **state)
{
	struct fixture *fx = *state;
	struct wal *wal = open_log(fx, NULL), *other;
	assert_int_equal(wal_open(fx->dir, NULL, &other), DM_ERR_STATE);
	assert_null(other);
	close_log(fx, wal);

	const struct expect recs[] = {{0, 10}};
	build_segment(fx, 1, recs, 1);
	wal = open_log(fx, NULL);
	assert_int_equal(wal_start(wal, fx->base, collect, fx), DM_ERR_INVALID);
	struct replay_check check = {recs, 1, 0, 0};
	assert_int_equal(wal_replay(wal, check_record, &check), DM_OK);
	assert_int_equal(wal_replay(wal, check_record, &check), DM_ERR_INVALID);
	assert_int_equal(wal_start(wal, fx->base, collect, fx), DM_OK);
	close_log(fx, wal);
}

static int stop_at_second(void *arg, const uint8_t *record, size_t len)
{
	int *seen = arg;
	return ++*seen == 2 ? DM_ERR_INVALID : 0;
}

static void test_wal_replay_stops_at_a_non_zero_return_and_ignores_other_files(void **state)
{
	struct fixture *fx = *state;
	const struct expect recs[] = {{0, 10}, {1, 10}, {2, 10}};
	build_segment(fx, 1, recs, 3);
	const char *strangers[] = {"notes.txt", "wal-zz.log", "wal-0000000000000000.log",
	                           "wal-000000000000000G.log", "wal-00000000000000001.log"};
	for (size_t i = 0; i < sizeof strangers / sizeof strangers[0]; i++) {
		char path[256];
		snprintf(path, sizeof path, "%s/%s", fx->dir, strangers[i]);
		write_whole(path, (const uint8_t *)"junk", 4);
	}
	struct wal *wal = open_log(fx, NULL);
	int seen = 0;
	assert_int_equal(wal_replay(wal, stop_at_second, &seen), DM_ERR_INVALID);
	assert_int_equal(seen, 2);
	close_log(fx, wal);
	expect_replay(fx, recs, 3);
}

static void test_wal_survives_allocation_failures(void **state)
{
	struct fixture *fx = *state;
	struct wal *wal = NULL;
	int rc;
	for (long budget = 0;; budget++) {
		dm_alloc_fail_after(budget);
		rc = wal_open(fx->dir, NULL, &wal);
		dm_alloc_fail_after(-1);
		fx->live = wal;
		if (rc == DM_OK)
			break;
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_null(wal);
		assert_true(budget < 100);
	}
	assert_int_equal(wal_replay(wal, check_record, &(struct replay_check){0}), DM_OK);
	assert_int_equal(wal_start(wal, fx->base, collect, fx), DM_OK);
	dm_alloc_fail_after(0);
	rc = append_record(wal, 0, 10, 0);
	dm_alloc_fail_after(-1);
	assert_int_equal(rc, DM_ERR_NOMEM);
	assert_int_equal(append_record(wal, 1, 10, 0), DM_OK);
	pump_until(fx, 1);
	pump_for(fx, 10);
	assert_int_equal(fx->count, 1);
	close_log(fx, wal);
	const struct expect want[] = {{1, 10}};
	expect_replay(fx, want, 1);
}

int main(void)
{
	if (!getenv("WAL_TEST_LOG"))
		dm_log_set_level((enum dm_log_level)(DM_LOG_ERROR + 1));
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wal_crc32c_matches_the_known_check_values),
#define CASE(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    CASE(test_wal_replays_appended_records_in_order_after_close_and_reopen),
	    CASE(test_wal_reports_durable_in_append_order_only_after_fsync),
	    CASE(test_wal_commits_many_appends_during_a_slow_fsync_together),
	    CASE(test_wal_keeps_each_commit_within_max_batch_bytes),
	    CASE(test_wal_completes_short_and_interrupted_writes),
	    CASE(test_wal_replays_the_records_before_a_torn_tail_and_then_accepts_appends),
	    CASE(test_wal_cuts_a_corrupt_last_record_of_the_last_segment),
	    CASE(test_wal_removes_a_last_segment_whose_header_is_torn),
	    CASE(test_wal_refuses_to_replay_a_flipped_byte_in_a_middle_segment),
	    CASE(test_wal_refuses_a_record_longer_than_the_limit_even_with_a_valid_checksum),
	    CASE(test_wal_accepts_records_up_to_the_limit_and_refuses_one_byte_more),
	    CASE(test_wal_enters_its_error_state_when_a_write_fails),
	    CASE(test_wal_enters_its_error_state_when_an_fsync_fails_and_never_retries_it),
	    CASE(test_wal_rotate_and_release_before_delete_old_segments_but_keep_the_current),
	    CASE(test_wal_close_reports_queued_cookies),
	    CASE(test_wal_close_accepts_null_and_a_log_that_never_started),
	    CASE(test_wal_refuses_a_second_opener_and_a_start_before_replay),
	    CASE(test_wal_replay_stops_at_a_non_zero_return_and_ignores_other_files),
	    CASE(test_wal_survives_allocation_failures),
#undef CASE
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
