/*
 * bench_wal.c — group commit of the write-ahead log on the real disk.
 *
 * The loop appends records of RECORD_BYTES (about a protobuf batch of 100
 * samples) as fast as the log takes them, keeping at most a window of bytes
 * queued (the back-pressure a node applies through wal_pending_bytes). By
 * default three windows run for a third of RUN_SECONDS each, showing how
 * group commit trades latency for throughput. Each run prints records/s,
 * MB/s, fsyncs/s, records per fsync, the mean fsync time and the p50/p99 of
 * append-to-durable latency.
 *
 * The log lives in a temporary directory under $BENCH_TMPDIR (default
 * /var/tmp, which is disk-backed where /tmp may be tmpfs), removed at exit.
 * Usage: bench_wal [seconds [window_kib]] (one run; window default 4096 KiB)
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "store/wal.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/err.h"

#define RECORD_BYTES 1500
#define RUN_SECONDS 3.0
#define DEFAULT_WINDOW (4u << 20)

struct bench {
	struct wal *wal;
	struct event_base *base;
	struct event *produce_ev;
	struct event *ticker;
	uint8_t record[RECORD_BYTES];
	uint64_t stop_at_ns;
	size_t window_bytes;
	int producing;
	int failed;

	uint64_t *started_ns; /* by sequence number */
	uint64_t *latency_ns; /* in completion order */
	size_t appended, completed, cap;

	atomic_ulong commits;
	atomic_ulong committed_records;
	atomic_ulong fsync_ns;
};

static int grow(struct bench *bench)
{
	size_t want = bench->cap ? bench->cap * 2 : 1u << 16;
	uint64_t *started = dm_realloc(bench->started_ns, want * sizeof *started);
	if (!started)
		return DM_ERR_NOMEM;
	bench->started_ns = started;
	uint64_t *latency = dm_realloc(bench->latency_ns, want * sizeof *latency);
	if (!latency)
		return DM_ERR_NOMEM;
	bench->latency_ns = latency;
	bench->cap = want;
	return DM_OK;
}

static void produce_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *bench = arg;
	while (bench->producing && wal_pending_bytes(bench->wal) < bench->window_bytes) {
		if (dm_mono_ns() >= bench->stop_at_ns) {
			bench->producing = 0;
			break;
		}
		if (bench->appended == bench->cap && grow(bench) != DM_OK) {
			bench->producing = 0;
			bench->failed = 1;
			break;
		}
		/* Vary the bytes a little, as real batches do. */
		memcpy(bench->record, &bench->appended, sizeof bench->appended);
		bench->started_ns[bench->appended] = dm_mono_ns();
		int rc = wal_append(bench->wal, bench->record, sizeof bench->record,
		                    (void *)(uintptr_t)bench->appended);
		if (rc != DM_OK) {
			fprintf(stderr, "bench_wal: append: %s\n", dm_strerror(rc));
			bench->producing = 0;
			bench->failed = 1;
			break;
		}
		bench->appended++;
	}
	if (!bench->producing && bench->completed == bench->appended)
		event_base_loopbreak(bench->base);
}

static void durable_cb(void *arg, void *const *cookies, size_t count, int status)
{
	struct bench *bench = arg;
	uint64_t now = dm_mono_ns();
	if (status != DM_OK)
		bench->failed = 1;
	for (size_t i = 0; i < count; i++) {
		uintptr_t seq = (uintptr_t)cookies[i];
		bench->latency_ns[bench->completed++] = now - bench->started_ns[seq];
	}
	if (bench->producing)
		event_active(bench->produce_ev, EV_READ, 0);
	else if (bench->completed == bench->appended)
		event_base_loopbreak(bench->base);
}

static void observe(void *arg, size_t records, size_t bytes, uint64_t fsync_ns)
{
	struct bench *bench = arg;
	atomic_fetch_add(&bench->commits, 1);
	atomic_fetch_add(&bench->committed_records, records);
	atomic_fetch_add(&bench->fsync_ns, fsync_ns);
}

static int skip_record(void *arg, const uint8_t *record, size_t len)
{
	return 0;
}

/* Keeps the loop alive (and blocking) while it waits for the writer. */
static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void remove_dir(const char *dir)
{
	DIR *listing = opendir(dir);
	if (listing) {
		struct dirent *ent;
		while ((ent = readdir(listing)) != NULL)
			if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
				unlinkat(dirfd(listing), ent->d_name, 0);
		closedir(listing);
	}
	rmdir(dir);
}

/* One measured run in its own temporary directory under `parent`. */
static int run(const char *parent, double seconds, size_t window)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/bench_wal.XXXXXX", parent);
	if (!mkdtemp(dir)) {
		perror("bench_wal: mkdtemp");
		return DM_ERR_IO;
	}
	static struct bench bench;
	memset(&bench, 0, sizeof bench);
	bench.window_bytes = window;
	for (size_t i = 0; i < RECORD_BYTES; i++)
		bench.record[i] = (uint8_t)(i * 151u + (i >> 3));
	int rc = DM_ERR_NOMEM;
	bench.base = event_base_new();
	if (!bench.base)
		goto out;
	bench.produce_ev = event_new(bench.base, -1, 0, produce_cb, &bench);
	bench.ticker = event_new(bench.base, -1, EV_PERSIST, tick_cb, NULL);
	if (!bench.produce_ev || !bench.ticker)
		goto out;
	struct timeval every = {0, 100000};
	event_add(bench.ticker, &every);
	if ((rc = wal_open(dir, NULL, &bench.wal)) != DM_OK ||
	    (rc = wal_replay(bench.wal, skip_record, NULL)) != DM_OK ||
	    (rc = wal_start(bench.wal, bench.base, durable_cb, &bench)) != DM_OK)
		goto out;
	wal_set_commit_observer(bench.wal, observe, &bench);

	uint64_t start = dm_mono_ns();
	bench.stop_at_ns = start + (uint64_t)(seconds * 1e9);
	bench.producing = 1;
	event_active(bench.produce_ev, EV_READ, 0);
	event_base_dispatch(bench.base);
	double elapsed = (double)(dm_mono_ns() - start) / 1e9;
	wal_close(bench.wal);
	bench.wal = NULL;

	unsigned long commits = atomic_load(&bench.commits);
	size_t count = bench.completed;
	qsort(bench.latency_ns, count, sizeof *bench.latency_ns, compare_u64);
	double p50 = count ? (double)bench.latency_ns[count / 2] / 1e3 : 0;
	double p99 = count ? (double)bench.latency_ns[count * 99 / 100] / 1e3 : 0;
	printf("bench_wal: window %zu KiB in flight, %.2f s%s\n", window / 1024, elapsed,
	       bench.failed ? " (FAILED: log error)" : "");
	printf("  records/s          %12.0f\n", (double)count / elapsed);
	printf("  MB/s               %12.1f\n",
	       (double)count * (RECORD_BYTES + WAL_RECORD_HEADER_SIZE) / elapsed / 1e6);
	printf("  fsyncs/s           %12.1f\n", (double)commits / elapsed);
	printf("  records per fsync  %12.1f\n",
	       commits ? (double)atomic_load(&bench.committed_records) / (double)commits : 0.0);
	printf("  mean fsync         %12.3f ms\n",
	       commits ? (double)atomic_load(&bench.fsync_ns) / (double)commits / 1e6 : 0.0);
	printf("  append->durable    p50 %.0f us, p99 %.0f us\n", p50, p99);
	rc = bench.failed ? DM_ERR_IO : DM_OK;
out:
	if (rc != DM_OK)
		fprintf(stderr, "bench_wal: %s\n", dm_strerror(rc));
	wal_close(bench.wal);
	if (bench.produce_ev)
		event_free(bench.produce_ev);
	if (bench.ticker)
		event_free(bench.ticker);
	if (bench.base)
		event_base_free(bench.base);
	dm_free(bench.started_ns);
	dm_free(bench.latency_ns);
	remove_dir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	const char *parent = getenv("BENCH_TMPDIR") ? getenv("BENCH_TMPDIR") : "/var/tmp";
	evthread_use_pthreads();
	printf("bench_wal: %d-byte records appended from the loop into %s\n", RECORD_BYTES, parent);
	if (argc > 1) {
		double seconds = atof(argv[1]);
		size_t window = argc > 2 ? (size_t)atol(argv[2]) * 1024 : DEFAULT_WINDOW;
		if (seconds <= 0 || window == 0) {
			fprintf(stderr, "usage: bench_wal [seconds [window_kib]]\n");
			return 2;
		}
		return run(parent, seconds, window) == DM_OK ? 0 : 1;
	}
	/* A few vehicles waiting for their PUBACK, a few hundred, a few thousand. */
	static const size_t windows[] = {16u << 10, 256u << 10, 4u << 20};
	for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++)
		if (run(parent, RUN_SECONDS / 3, windows[i]) != DM_OK)
			return 1;
	return 0;
}
