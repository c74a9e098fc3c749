/*
 * bench_audit.c — the audit log (audit/store) on the real disk.
 *
 * Two parts:
 *
 * 1. Durable appends: entries of ENTRY_BYTES (about one canonical audit
 *    entry) appended one after another for RUN_SECONDS, each written and
 *    fdatasync'ed (two files, two syncs) before the next: appends/s and the
 *    p50/p99 of one append, i.e. what an audited API call waits for.
 * 2. Reads at PROOF_ENTRIES entries: the store is filled without fsync (an
 *    I/O table whose fsync does nothing; the files are the same), then
 *    reopened, which checks every entry and hash, and timed: the open,
 *    roots, inclusion and consistency proofs at random indexes and sizes,
 *    and their verification.
 *
 * The store lives in a temporary directory under $BENCH_TMPDIR (default
 * /var/tmp, which is disk-backed where /tmp may be tmpfs), removed at exit.
 * Prints figures, never fails on them.
 * Usage: bench_audit [seconds [entries]]
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/merkle.h"
#include "audit/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

#define ENTRY_BYTES 200
#define RUN_SECONDS 2.0
#define PROOF_ENTRIES 100000
#define PROOF_ROUNDS 20000

static int fast_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}
static ssize_t fast_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	return pwrite(fd, buf, len, offset);
}
static ssize_t fast_pread(int fd, void *buf, size_t len, off_t offset)
{
	return pread(fd, buf, len, offset);
}
static int fast_fsync(int fd)
{
	return 0;
}
static int fast_ftruncate(int fd, off_t length)
{
	return ftruncate(fd, length);
}
static int fast_close(int fd)
{
	return close(fd);
}
static const struct audit_io fast_io = {fast_open,  fast_pwrite,    fast_pread,
                                        fast_fsync, fast_ftruncate, fast_close};

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

static void make_entry(uint8_t *entry, uint64_t seq)
{
	for (size_t i = 0; i < ENTRY_BYTES; i++)
		entry[i] = (uint8_t)(i * 151u + (i >> 3));
	memcpy(entry, &seq, sizeof seq);
}

/* xorshift: reproducible indexes without libc's rand. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

static int durable_appends(const char *dir, double seconds)
{
	struct audit_store *store;
	int rc = audit_store_open(dir, NULL, &store);
	if (rc != DM_OK)
		return rc;
	size_t cap = 1u << 16, count = 0;
	uint64_t *latency = malloc(cap * sizeof *latency);
	if (!latency) {
		audit_store_close(store);
		return DM_ERR_NOMEM;
	}
	uint8_t entry[ENTRY_BYTES];
	uint64_t start = dm_mono_ns(), stop = start + (uint64_t)(seconds * 1e9), now = start;
	while (now < stop) {
		make_entry(entry, count);
		uint64_t before = dm_mono_ns();
		rc = audit_store_append(store, entry, sizeof entry, NULL);
		now = dm_mono_ns();
		if (rc != DM_OK)
			break;
		if (count == cap) {
			uint64_t *grown = realloc(latency, 2 * cap * sizeof *latency);
			if (!grown) {
				rc = DM_ERR_NOMEM;
				break;
			}
			latency = grown;
			cap *= 2;
		}
		latency[count++] = now - before;
	}
	double elapsed = (double)(now - start) / 1e9;
	qsort(latency, count, sizeof *latency, compare_u64);
	printf("  durable appends/s      %12.0f   (%zu in %.2f s)\n", (double)count / elapsed,
	       count, elapsed);
	if (count)
		printf("  one append             p50 %.0f us, p99 %.0f us\n",
		       (double)latency[count / 2] / 1e3, (double)latency[count * 99 / 100] / 1e3);
	free(latency);
	audit_store_close(store);
	return rc;
}

static int proofs(const char *dir, uint64_t entries)
{
	struct audit_store_options options = {.io = &fast_io};
	struct audit_store *store;
	int rc = audit_store_open(dir, &options, &store);
	if (rc != DM_OK)
		return rc;
	uint8_t entry[ENTRY_BYTES];
	uint64_t start = dm_mono_ns();
	for (uint64_t i = 0; i < entries && rc == DM_OK; i++) {
		make_entry(entry, i);
		rc = audit_store_append(store, entry, sizeof entry, NULL);
	}
	double fill = (double)(dm_mono_ns() - start) / 1e9;
	audit_store_close(store);
	if (rc != DM_OK)
		return rc;
	printf("  appends without fsync  %12.0f /s (filling %" PRIu64 " entries)\n",
	       (double)entries / fill, entries);

	start = dm_mono_ns();
	rc = audit_store_open(dir, NULL, &store);
	if (rc != DM_OK)
		return rc;
	printf("  open, every entry and hash checked  %.1f ms\n",
	       (double)(dm_mono_ns() - start) / 1e6);

	uint64_t seed = 0x9e3779b97f4a7c15u;
	uint8_t proof[MERKLE_MAX_PROOF][MERKLE_HASH_LEN], root[MERKLE_HASH_LEN],
	    old_root[MERKLE_HASH_LEN], leaf[MERKLE_HASH_LEN];
	size_t count = 0;
	uint64_t root_ns = 0, inclusion_ns = 0, consistency_ns = 0, verify_ns = 0, entry_ns = 0;
	int bad = 0;
	struct dm_buf bytes = {0};
	for (int round = 0; round < PROOF_ROUNDS && rc == DM_OK; round++) {
		uint64_t size = entries - next_random(&seed) % (entries / 10);
		uint64_t index = next_random(&seed) % size;
		uint64_t old_size = 1 + next_random(&seed) % size;

		uint64_t t0 = dm_mono_ns();
		rc = audit_store_root(store, size, root);
		uint64_t t1 = dm_mono_ns();
		if (rc == DM_OK)
			rc = audit_store_inclusion(store, index, size, proof, &count);
		uint64_t t2 = dm_mono_ns();
		dm_buf_reset(&bytes);
		if (rc == DM_OK)
			rc = audit_store_entry(store, index, &bytes);
		uint64_t t3 = dm_mono_ns();
		if (rc == DM_OK && (merkle_leaf_hash(bytes.data, bytes.len, leaf) != DM_OK ||
		                    merkle_verify_inclusion(
		                        index, size, leaf, (const uint8_t(*)[MERKLE_HASH_LEN])proof,
		                        count, root) != DM_OK))
			bad++;
		uint64_t t4 = dm_mono_ns();
		if (rc == DM_OK)
			rc = audit_store_root(store, old_size, old_root);
		uint64_t t5 = dm_mono_ns();
		if (rc == DM_OK)
			rc = audit_store_consistency(store, old_size, size, proof, &count);
		uint64_t t6 = dm_mono_ns();
		if (rc == DM_OK && merkle_verify_consistency(
		                       old_size, size, old_root, root,
		                       (const uint8_t(*)[MERKLE_HASH_LEN])proof, count) != DM_OK)
			bad++;
		uint64_t t7 = dm_mono_ns();
		root_ns += (t1 - t0) + (t5 - t4);
		inclusion_ns += t2 - t1;
		entry_ns += t3 - t2;
		verify_ns += (t4 - t3) + (t7 - t6);
		consistency_ns += t6 - t5;
	}
	dm_buf_free(&bytes);
	audit_store_close(store);
	if (rc != DM_OK)
		return rc;
	double rounds = PROOF_ROUNDS;
	printf("  at %" PRIu64 " entries, mean of %d random sizes and indexes:%s\n", entries,
	       PROOF_ROUNDS, bad ? " (SOME PROOFS DID NOT VERIFY)" : "");
	printf("    root                 %8.2f us\n", (double)root_ns / 2 / rounds / 1e3);
	printf("    inclusion proof      %8.2f us\n", (double)inclusion_ns / rounds / 1e3);
	printf("    consistency proof    %8.2f us\n", (double)consistency_ns / rounds / 1e3);
	printf("    entry read           %8.2f us\n", (double)entry_ns / rounds / 1e3);
	printf("    verify (both proofs) %8.2f us\n", (double)verify_ns / rounds / 1e3);
	return DM_OK;
}

int main(int argc, char **argv)
{
	const char *parent = getenv("BENCH_TMPDIR") ? getenv("BENCH_TMPDIR") : "/var/tmp";
	double seconds = argc > 1 ? atof(argv[1]) : RUN_SECONDS;
	long entries = argc > 2 ? atol(argv[2]) : PROOF_ENTRIES;
	if (seconds <= 0 || entries < 10) {
		fprintf(stderr, "usage: bench_audit [seconds [entries >= 10]]\n");
		return 2;
	}
	char dir[512];
	snprintf(dir, sizeof dir, "%s/bench_audit.XXXXXX", parent);
	if (!mkdtemp(dir)) {
		perror("bench_audit: mkdtemp");
		return 1;
	}
	char durable_dir[600], proof_dir[600];
	snprintf(durable_dir, sizeof durable_dir, "%s/durable", dir);
	snprintf(proof_dir, sizeof proof_dir, "%s/proofs", dir);
	printf("bench_audit: %d-byte entries into %s\n", ENTRY_BYTES, parent);
	int rc = durable_appends(durable_dir, seconds);
	if (rc == DM_OK)
		rc = proofs(proof_dir, (uint64_t)entries);
	if (rc != DM_OK)
		fprintf(stderr, "bench_audit: %s\n", dm_strerror(rc));
	remove_dir(durable_dir);
	remove_dir(proof_dir);
	rmdir(dir);
	return rc == DM_OK ? 0 : 1;
}
