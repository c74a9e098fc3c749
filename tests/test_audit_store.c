/*
 * test_audit_store.c — the audit log on disk: appends, roots and proofs
 * against the in-memory tree, reopening, crash recovery at every byte of the
 * last append, damage refused, the error state after a failed write or
 * fsync, limits, a second opener, allocation failures.
 *
 * Each case runs in its own mkdtemp directory; the store lives in its
 * subdirectory "audit", which the first open creates. File I/O goes
 * through a test table (tio) that counts calls, cuts writes short,
 * interrupts them, and fails the Nth pwrite, fsync or ftruncate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/merkle.h"
#include "audit/store.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"

#define HASH MERKLE_HASH_LEN
#define MAX_ENTRIES 80
#define HEADER 16u

/* ---- the fault-injecting I/O table ------------------------------------- */

static struct {
	int pwrites;
	int file_fsyncs;
	int ftruncates;
	int fail_pwrite_at;    /* 1-based pwrite that fails with EIO; 0: none */
	int fail_fsync_at;     /* 1-based file fsync that fails with EIO; 0: none */
	int fail_ftruncate_at; /* 1-based ftruncate that fails with EIO; 0: none */
	int max_chunk;         /* short writes of at most this many bytes; 0: whole */
	int eintr_every;       /* every Nth pwrite fails with EINTR first; 0: never */
	int fail_preads;       /* every pread fails with EIO */
} tio;

static int tio_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

static ssize_t tio_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	int call = ++tio.pwrites;
	if (tio.eintr_every > 0 && call % tio.eintr_every == 0) {
		errno = EINTR;
		return -1;
	}
	if (call == tio.fail_pwrite_at) {
		errno = EIO;
		return -1;
	}
	if (tio.max_chunk > 0 && len > (size_t)tio.max_chunk)
		len = (size_t)tio.max_chunk;
	return pwrite(fd, buf, len, offset);
}

static ssize_t tio_pread(int fd, void *buf, size_t len, off_t offset)
{
	if (tio.fail_preads) {
		errno = EIO;
		return -1;
	}
	return pread(fd, buf, len, offset);
}

/* fsync is counted but not done: these tests are about the order and the
 * failures, not the disk. */
static int tio_fsync(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (++tio.file_fsyncs == tio.fail_fsync_at) {
		errno = EIO;
		return -1;
	}
	return 0;
}

static int tio_ftruncate(int fd, off_t length)
{
	if (++tio.ftruncates == tio.fail_ftruncate_at) {
		errno = EIO;
		return -1;
	}
	return ftruncate(fd, length);
}

static int tio_close(int fd)
{
	return close(fd);
}

static const struct audit_io test_io = {tio_open,  tio_pwrite,    tio_pread,
                                        tio_fsync, tio_ftruncate, tio_close};

/* ---- entries and the tree they should make ----------------------------- */

/* Entry i: lengths vary, with an empty one and one of the maximum size. */
static size_t entry_len(size_t i)
{
	if (i == 3)
		return 0;
	if (i == 5)
		return AUDIT_ENTRY_MAX;
	return (i * 37) % 300 + 1;
}

static void fill_entry(size_t i, uint8_t *out)
{
	size_t len = entry_len(i);
	for (size_t k = 0; k < len; k++)
		out[k] = (uint8_t)(i * 131u + k * 7u + (k >> 8));
}

struct model {
	uint8_t leaves[MAX_ENTRIES][HASH];
	struct merkle_memory mem;
	struct merkle_source src;
	size_t count;
};

static struct model *model_new(size_t count)
{
	struct model *m = calloc(1, sizeof *m);
	assert_non_null(m);
	assert_true(count <= MAX_ENTRIES);
	static uint8_t entry[AUDIT_ENTRY_MAX];
	for (size_t i = 0; i < count; i++) {
		fill_entry(i, entry);
		assert_int_equal(merkle_leaf_hash(entry, entry_len(i), m->leaves[i]), DM_OK);
	}
	m->count = count;
	m->mem.leaves = (const uint8_t(*)[HASH])m->leaves;
	m->mem.count = count;
	merkle_memory_source(&m->mem, &m->src);
	return m;
}

/* ---- fixture ----------------------------------------------------------- */

struct fixture {
	char root[64];
	char dir[80];
	char log_path[128];
	char idx_path[128];
	struct audit_store *live; /* closed by teardown when a case fails midway */
	char err[512];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	assert_non_null(fx);
	strcpy(fx->root, "/tmp/test_audit_store.XXXXXX");
	assert_non_null(mkdtemp(fx->root));
	snprintf(fx->dir, sizeof fx->dir, "%s/audit", fx->root);
	snprintf(fx->log_path, sizeof fx->log_path, "%s/" AUDIT_LOG_FILE, fx->dir);
	snprintf(fx->idx_path, sizeof fx->idx_path, "%s/" AUDIT_IDX_FILE, fx->dir);
	memset(&tio, 0, sizeof tio);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	audit_store_close(fx->live);
	unlink(fx->log_path);
	unlink(fx->idx_path);
	rmdir(fx->dir);
	rmdir(fx->root);
	free(fx);
	return 0;
}

static int try_open(struct fixture *fx, const struct audit_io *io, struct audit_store **out)
{
	struct audit_store_options options = {.io = io, .err = fx->err, .err_len = sizeof fx->err};
	int rc = audit_store_open(fx->dir, &options, out);
	if (rc == DM_OK)
		fx->live = *out;
	else
		assert_null(*out);
	return rc;
}

static struct audit_store *open_store(struct fixture *fx, const struct audit_io *io)
{
	struct audit_store *store = NULL;
	int rc = try_open(fx, io, &store);
	if (rc != DM_OK)
		fail_msg("open: %s (%s)", dm_strerror(rc), fx->err);
	return store;
}

static void close_store(struct fixture *fx, struct audit_store *store)
{
	if (fx->live == store)
		fx->live = NULL;
	audit_store_close(store);
}

static void append_entries(struct audit_store *store, size_t from, size_t to)
{
	static uint8_t entry[AUDIT_ENTRY_MAX];
	for (size_t i = from; i < to; i++) {
		fill_entry(i, entry);
		uint64_t index = 99;
		assert_int_equal(audit_store_append(store, entry, entry_len(i), &index), DM_OK);
		assert_int_equal(index, i);
	}
	assert_int_equal(audit_store_size(store), to);
}

/* The store holds exactly entries 0..size-1 with the model's roots and
 * proofs; `full` checks every proof, else a sample. */
static void check_store(struct audit_store *store, const struct model *m, uint64_t size, int full)
{
	static uint8_t want[AUDIT_ENTRY_MAX];
	assert_int_equal(audit_store_size(store), size);
	for (uint64_t i = 0; i < size; i++) {
		struct dm_buf got = {0};
		assert_int_equal(audit_store_entry(store, i, &got), DM_OK);
		fill_entry(i, want);
		assert_int_equal(got.len, entry_len(i));
		if (got.len)
			assert_memory_equal(got.data, want, got.len);
		dm_buf_free(&got);
	}
	uint8_t root[HASH], want_root[HASH];
	for (uint64_t s = 0; s <= size; s++) {
		assert_int_equal(audit_store_root(store, s, root), DM_OK);
		assert_int_equal(merkle_root(&m->src, s, want_root), DM_OK);
		assert_memory_equal(root, want_root, HASH);
	}
	uint8_t roots[MAX_ENTRIES + 1][HASH];
	for (uint64_t s = 1; s <= size; s++)
		assert_int_equal(audit_store_root(store, s, roots[s]), DM_OK);
	for (uint64_t s = 1; s <= size; s++) {
		for (uint64_t i = 0; i < s; i++) {
			if (!full && i != 0 && i != s - 1 && i != s / 2)
				continue;
			uint8_t proof[MERKLE_MAX_PROOF][HASH], expect[MERKLE_MAX_PROOF][HASH];
			size_t count, expect_count;
			assert_int_equal(audit_store_inclusion(store, i, s, proof, &count), DM_OK);
			assert_int_equal(
			    merkle_inclusion_proof(&m->src, i, s, expect, &expect_count), DM_OK);
			assert_int_equal(count, expect_count);
			assert_memory_equal(proof, expect, count * HASH);
			assert_int_equal(merkle_verify_inclusion(i, s, m->leaves[i],
			                                         (const uint8_t(*)[HASH])proof,
			                                         count, roots[s]),
			                 DM_OK);
			uint64_t old = i + 1;
			assert_int_equal(audit_store_consistency(store, old, s, proof, &count),
			                 DM_OK);
			assert_int_equal(
			    merkle_consistency_proof(&m->src, old, s, expect, &expect_count),
			    DM_OK);
			assert_int_equal(count, expect_count);
			assert_memory_equal(proof, expect, count * HASH);
			assert_int_equal(merkle_verify_consistency(old, s, roots[old], roots[s],
			                                           (const uint8_t(*)[HASH])proof,
			                                           count),
			                 DM_OK);
		}
	}
}

/* ---- files ------------------------------------------------------------- */

struct file_copy {
	uint8_t *bytes;
	size_t size;
};

static struct file_copy read_whole(const char *path)
{
	struct file_copy copy = {NULL, 0};
	FILE *file = fopen(path, "rb");
	assert_non_null(file);
	assert_int_equal(fseek(file, 0, SEEK_END), 0);
	long size = ftell(file);
	assert_true(size >= 0);
	rewind(file);
	copy.size = (size_t)size;
	copy.bytes = malloc(copy.size ? copy.size : 1);
	assert_non_null(copy.bytes);
	assert_int_equal(fread(copy.bytes, 1, copy.size, file), copy.size);
	fclose(file);
	return copy;
}

static void write_whole(const char *path, const uint8_t *bytes, size_t size)
{
	FILE *file = fopen(path, "wb");
	assert_non_null(file);
	if (size)
		assert_int_equal(fwrite(bytes, 1, size, file), size);
	assert_int_equal(fclose(file), 0);
}

static void assert_file_equals(const char *path, const struct file_copy *want)
{
	struct file_copy got = read_whole(path);
	assert_int_equal(got.size, want->size);
	if (got.size)
		assert_memory_equal(got.bytes, want->bytes, got.size);
	free(got.bytes);
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ---- cases ------------------------------------------------------------- */

static void test_audit_store_creates_its_directory_and_files_private_and_empty(void **state)
{
	struct fixture *fx = *state;
	struct audit_store *store = open_store(fx, NULL);
	struct stat st;
	assert_int_equal(stat(fx->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(fx->log_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, HEADER);
	assert_int_equal(stat(fx->idx_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, HEADER);
	assert_int_equal(audit_store_size(store), 0);
	assert_false(audit_store_failed(store));
	uint8_t root[HASH], empty[HASH];
	assert_int_equal(audit_store_root(store, 0, root), DM_OK);
	merkle_empty_root(empty);
	assert_memory_equal(root, empty, HASH);
	close_store(fx, store);
	/* Opening again changes nothing. */
	struct file_copy log = read_whole(fx->log_path), idx = read_whole(fx->idx_path);
	store = open_store(fx, NULL);
	assert_int_equal(audit_store_size(store), 0);
	close_store(fx, store);
	assert_file_equals(fx->log_path, &log);
	assert_file_equals(fx->idx_path, &idx);
	free(log.bytes);
	free(idx.bytes);
	audit_store_close(NULL);
}

static void test_audit_store_roots_and_proofs_match_the_memory_tree_for_every_size(void **state)
{
	struct fixture *fx = *state;
	struct model *m = model_new(MAX_ENTRIES);
	struct audit_store *store = open_store(fx, NULL);
	for (size_t n = 1; n <= MAX_ENTRIES; n++) {
		append_entries(store, n - 1, n);
		uint8_t root[HASH], want[HASH];
		assert_int_equal(audit_store_root(store, n, root), DM_OK);
		assert_int_equal(merkle_root(&m->src, n, want), DM_OK);
		assert_memory_equal(root, want, HASH);
	}
	check_store(store, m, MAX_ENTRIES, 1);
	/* The idx holds the tree in post-order: 2n - popcount(n) hashes. */
	uint64_t n = MAX_ENTRIES;
	assert_int_equal(
	    file_size(fx->idx_path),
	    (long)(HEADER + 8 * n + HASH * (2 * n - (uint64_t)__builtin_popcountll(n))));
	close_store(fx, store);
	free(m);
}

static void test_audit_store_reopens_with_the_same_entries_and_extends_the_same_tree(void **state)
{
	struct fixture *fx = *state;
	struct model *m = model_new(40);
	struct audit_store *store = open_store(fx, NULL);
	append_entries(store, 0, 13);
	uint8_t old_root[HASH];
	assert_int_equal(audit_store_root(store, 13, old_root), DM_OK);
	close_store(fx, store);

	store = open_store(fx, NULL);
	check_store(store, m, 13, 1);
	append_entries(store, 13, 40);
	close_store(fx, store);
	store = open_store(fx, NULL);
	check_store(store, m, 40, 0);
	/* An old checkpoint's root is still that of size 13, and today's tree
	 * extends it. */
	uint8_t root[HASH], proof[MERKLE_MAX_PROOF][HASH];
	size_t count;
	assert_int_equal(audit_store_root(store, 13, root), DM_OK);
	assert_memory_equal(root, old_root, HASH);
	assert_int_equal(audit_store_root(store, 40, root), DM_OK);
	assert_int_equal(audit_store_consistency(store, 13, 40, proof, &count), DM_OK);
	assert_int_equal(
	    merkle_verify_consistency(13, 40, old_root, root, (const uint8_t(*)[HASH])proof, count),
	    DM_OK);
	close_store(fx, store);
	free(m);
}

/* Opens (with the real I/O), expects `size` entries, appends one more and
 * checks again after a reopen: a recovered store takes appends. */
static void expect_recovered(struct fixture *fx, const struct model *m, uint64_t size)
{
	struct audit_store *store = open_store(fx, NULL);
	check_store(store, m, size, 0);
	append_entries(store, size, size + 1);
	close_store(fx, store);
	store = open_store(fx, NULL);
	check_store(store, m, size + 1, 0);
	close_store(fx, store);
}

static void test_audit_store_cuts_a_torn_last_append_at_every_byte(void **state)
{
	struct fixture *fx = *state;
	/* Entry 7 completes levels 1, 2 and 3: the longest group so far. */
	const size_t n = 8;
	struct model *m = model_new(n + 1);
	struct audit_store *store = open_store(fx, NULL);
	append_entries(store, 0, n - 1);
	close_store(fx, store);
	struct file_copy log_before = read_whole(fx->log_path);
	struct file_copy idx_before = read_whole(fx->idx_path);
	store = open_store(fx, NULL);
	append_entries(store, n - 1, n);
	close_store(fx, store);
	struct file_copy log_after = read_whole(fx->log_path);
	struct file_copy idx_after = read_whole(fx->idx_path);
	assert_int_equal(idx_after.size - idx_before.size, 8 + 4 * HASH);

	/* The entry written in part or whole, its hashes not at all. */
	for (size_t cut = log_before.size; cut <= log_after.size; cut++) {
		write_whole(fx->log_path, log_after.bytes, cut);
		write_whole(fx->idx_path, idx_before.bytes, idx_before.size);
		struct audit_store *s = open_store(fx, NULL);
		assert_int_equal(audit_store_size(s), n - 1);
		close_store(fx, s);
		assert_file_equals(fx->log_path, &log_before);
		assert_file_equals(fx->idx_path, &idx_before);
	}
	/* The entry written, its hashes in part. */
	for (size_t cut = idx_before.size; cut < idx_after.size; cut++) {
		write_whole(fx->log_path, log_after.bytes, log_after.size);
		write_whole(fx->idx_path, idx_after.bytes, cut);
		struct audit_store *s = open_store(fx, NULL);
		assert_int_equal(audit_store_size(s), n - 1);
		close_store(fx, s);
		assert_file_equals(fx->log_path, &log_before);
		assert_file_equals(fx->idx_path, &idx_before);
	}
	/* Garbage or zeros after the last complete append (the next record
	 * torn, or blocks allocated but never written). */
	const size_t garbage_sizes[] = {1, 3, 4, 7, 8, 9, 100, 4096};
	uint8_t garbage[4096 + 8];
	for (size_t g = 0; g < sizeof garbage_sizes / sizeof garbage_sizes[0]; g++) {
		for (int zeros = 0; zeros <= 1; zeros++) {
			size_t extra = garbage_sizes[g];
			uint8_t *bytes = malloc(log_after.size + extra);
			assert_non_null(bytes);
			memcpy(bytes, log_after.bytes, log_after.size);
			for (size_t k = 0; k < extra; k++)
				garbage[k] = zeros ? 0 : (uint8_t)(k * 29 + 3);
			memcpy(bytes + log_after.size, garbage, extra);
			write_whole(fx->log_path, bytes, log_after.size + extra);
			write_whole(fx->idx_path, idx_after.bytes, idx_after.size);
			struct audit_store *s = open_store(fx, NULL);
			assert_int_equal(audit_store_size(s), n);
			close_store(fx, s);
			assert_file_equals(fx->log_path, &log_after);
			free(bytes);
			/* On the idx: less than the next group (40 bytes for
			 * entry 8) with no record for it. */
			if (extra < 40) {
				bytes = malloc(idx_after.size + extra);
				assert_non_null(bytes);
				memcpy(bytes, idx_after.bytes, idx_after.size);
				memcpy(bytes + idx_after.size, garbage, extra);
				write_whole(fx->log_path, log_after.bytes, log_after.size);
				write_whole(fx->idx_path, bytes, idx_after.size + extra);
				s = open_store(fx, NULL);
				assert_int_equal(audit_store_size(s), n);
				close_store(fx, s);
				assert_file_equals(fx->idx_path, &idx_after);
				free(bytes);
			}
		}
	}
	/* A recovered store takes appends, and they survive a reopen. */
	write_whole(fx->log_path, log_after.bytes, log_after.size - 3);
	write_whole(fx->idx_path, idx_before.bytes, idx_before.size);
	expect_recovered(fx, m, n - 1);
	write_whole(fx->log_path, log_after.bytes, log_after.size);
	write_whole(fx->idx_path, idx_after.bytes, idx_after.size - 1);
	expect_recovered(fx, m, n - 1);
	free(log_before.bytes);
	free(idx_before.bytes);
	free(log_after.bytes);
	free(idx_after.bytes);
	free(m);
}

/* A store of entries 0..count-1 (small ones: entry 5 is the large one) and
 * copies of its two files. */
static void make_small_store(struct fixture *fx, size_t count, struct file_copy *log,
                             struct file_copy *idx)
{
	assert_true(count <= 5);
	struct audit_store *store = open_store(fx, NULL);
	append_entries(store, 0, count);
	close_store(fx, store);
	*log = read_whole(fx->log_path);
	*idx = read_whole(fx->idx_path);
}

/* Opens with the files as given; expects DM_ERR_MALFORMED with a message
 * "PATH: ..." for the file `name`, and both files as they were (a refused
 * open changes nothing). */
static void expect_refused(struct fixture *fx, const char *name)
{
	struct file_copy log = read_whole(fx->log_path), idx = read_whole(fx->idx_path);
	struct audit_store *store = NULL;
	int rc = try_open(fx, NULL, &store);
	if (rc != DM_ERR_MALFORMED)
		fail_msg("expected DM_ERR_MALFORMED, got %s", dm_strerror(rc));
	char prefix[160];
	snprintf(prefix, sizeof prefix, "%s/%s: ", fx->dir, name);
	if (strncmp(fx->err, prefix, strlen(prefix)) != 0)
		fail_msg("the message does not start with %s: %s", prefix, fx->err);
	assert_file_equals(fx->log_path, &log);
	assert_file_equals(fx->idx_path, &idx);
	free(log.bytes);
	free(idx.bytes);
}

static void test_audit_store_refuses_any_flipped_byte_in_either_file(void **state)
{
	struct fixture *fx = *state;
	struct file_copy log, idx;
	make_small_store(fx, 5, &log, &idx);
	for (size_t pos = 0; pos < log.size; pos++) {
		log.bytes[pos] ^= 0x5a;
		write_whole(fx->log_path, log.bytes, log.size);
		write_whole(fx->idx_path, idx.bytes, idx.size);
		expect_refused(fx, AUDIT_LOG_FILE);
		log.bytes[pos] ^= 0x5a;
	}
	for (size_t pos = 0; pos < idx.size; pos++) {
		idx.bytes[pos] ^= 0x01;
		write_whole(fx->log_path, log.bytes, log.size);
		write_whole(fx->idx_path, idx.bytes, idx.size);
		expect_refused(fx, AUDIT_IDX_FILE);
		idx.bytes[pos] ^= 0x01;
	}
	write_whole(fx->log_path, log.bytes, log.size);
	write_whole(fx->idx_path, idx.bytes, idx.size);
	struct model *m = model_new(6);
	expect_recovered(fx, m, 5);
	free(m);
	free(log.bytes);
	free(idx.bytes);
}

static void test_audit_store_refuses_truncated_missing_and_foreign_files(void **state)
{
	struct fixture *fx = *state;
	struct file_copy log, idx;
	make_small_store(fx, 5, &log, &idx);

	/* Any cut of entries.log that reaches into an entry the idx has. */
	for (size_t cut = 0; cut < log.size; cut++) {
		write_whole(fx->log_path, log.bytes, cut);
		write_whole(fx->idx_path, idx.bytes, idx.size);
		expect_refused(fx, AUDIT_LOG_FILE);
	}
	/* The idx cut by more than the last group. */
	const uint64_t last_group = 16 + 8 * 4 + HASH * (2 * 4 - 1);
	for (size_t cut = 0; cut < last_group; cut++) {
		write_whole(fx->log_path, log.bytes, log.size);
		write_whole(fx->idx_path, idx.bytes, cut);
		expect_refused(fx, AUDIT_IDX_FILE);
	}
	/* A file gone: refused, and not created again. */
	write_whole(fx->idx_path, idx.bytes, idx.size);
	assert_int_equal(unlink(fx->log_path), 0);
	struct audit_store *store = NULL;
	assert_int_equal(try_open(fx, NULL, &store), DM_ERR_MALFORMED);
	assert_non_null(strstr(fx->err, AUDIT_LOG_FILE));
	assert_int_equal(file_size(fx->log_path), -1);
	write_whole(fx->log_path, log.bytes, log.size);
	assert_int_equal(unlink(fx->idx_path), 0);
	assert_int_equal(try_open(fx, NULL, &store), DM_ERR_MALFORMED);
	assert_non_null(strstr(fx->err, AUDIT_IDX_FILE));
	assert_int_equal(file_size(fx->idx_path), -1);

	/* A header of another version, with a valid checksum. */
	write_whole(fx->idx_path, idx.bytes, idx.size);
	uint8_t header[HEADER];
	memcpy(header, log.bytes, HEADER);
	header[11] = 2;
	uint32_t crc = crc32c(0, header, 12);
	header[12] = (uint8_t)(crc >> 24);
	header[13] = (uint8_t)(crc >> 16);
	header[14] = (uint8_t)(crc >> 8);
	header[15] = (uint8_t)crc;
	write_whole(fx->log_path, header, HEADER);
	expect_refused(fx, AUDIT_LOG_FILE);
	assert_non_null(strstr(fx->err, "version 2"));
	/* The two files swapped. */
	write_whole(fx->log_path, idx.bytes, idx.size);
	write_whole(fx->idx_path, log.bytes, log.size);
	expect_refused(fx, AUDIT_LOG_FILE);

	/* Files shorter than their headers (created, never synced) and no
	 * entries: a new store. */
	write_whole(fx->log_path, log.bytes, 5);
	write_whole(fx->idx_path, idx.bytes, 0);
	store = open_store(fx, NULL);
	assert_int_equal(audit_store_size(store), 0);
	close_store(fx, store);
	assert_int_equal(file_size(fx->log_path), HEADER);
	assert_int_equal(file_size(fx->idx_path), HEADER);
	/* One torn first append over a torn idx header. */
	write_whole(fx->log_path, log.bytes, HEADER + 8 + entry_len(0));
	write_whole(fx->idx_path, idx.bytes, 7);
	struct model *m = model_new(2);
	expect_recovered(fx, m, 0);
	free(m);

	/* The directory is a file. */
	assert_int_equal(unlink(fx->log_path), 0);
	assert_int_equal(unlink(fx->idx_path), 0);
	assert_int_equal(rmdir(fx->dir), 0);
	write_whole(fx->dir, log.bytes, 3);
	assert_int_equal(try_open(fx, NULL, &store), DM_ERR_IO);
	assert_non_null(strstr(fx->err, fx->dir));
	assert_int_equal(unlink(fx->dir), 0);
	free(log.bytes);
	free(idx.bytes);
}

/* Appends entry `index` expecting failure; then the error state. */
static void expect_error_state(struct audit_store *store, size_t index)
{
	static uint8_t entry[AUDIT_ENTRY_MAX];
	fill_entry(index, entry);
	uint64_t got = 77;
	assert_int_equal(audit_store_append(store, entry, entry_len(index), &got), DM_ERR_IO);
	assert_int_equal(got, 0);
	assert_true(audit_store_failed(store));
	assert_int_equal(audit_store_size(store), index);
	/* Never retried, whatever comes next. */
	memset(&tio, 0, sizeof tio);
	assert_int_equal(audit_store_append(store, entry, entry_len(index), &got), DM_ERR_STATE);
	assert_int_equal(audit_store_append(store, "x", 1, NULL), DM_ERR_STATE);
	assert_int_equal(tio.pwrites, 0);
	assert_int_equal(tio.file_fsyncs, 0);
}

static void test_audit_store_enters_its_error_state_when_a_write_or_fsync_fails(void **state)
{
	struct fixture *fx = *state;
	struct model *m = model_new(8);
	/* The calls of one append, in order: write the record, sync the log,
	 * write the group, sync the idx. A failure at each; after the
	 * reopen, the entry is there only when both files were written. */
	struct {
		int write_at, fsync_at;
		uint64_t size_after_reopen;
	} points[] = {{1, 0, 3}, {0, 1, 3}, {2, 0, 3}, {0, 2, 4}};
	for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
		unlink(fx->log_path);
		unlink(fx->idx_path);
		struct audit_store *store = open_store(fx, &test_io);
		append_entries(store, 0, 3);
		memset(&tio, 0, sizeof tio);
		tio.fail_pwrite_at = points[p].write_at;
		tio.fail_fsync_at = points[p].fsync_at;
		expect_error_state(store, 3);
		/* What was durable before the failure is still served. */
		check_store(store, m, 3, 1);
		close_store(fx, store);
		store = open_store(fx, NULL);
		assert_int_equal(audit_store_size(store), points[p].size_after_reopen);
		check_store(store, m, points[p].size_after_reopen, 1);
		close_store(fx, store);
		expect_recovered(fx, m, points[p].size_after_reopen);
	}
	free(m);
}

static void test_audit_store_syncs_the_entry_before_writing_its_hashes(void **state)
{
	struct fixture *fx = *state;
	struct model *m = model_new(30);
	struct audit_store *store = open_store(fx, &test_io);
	for (size_t i = 0; i < 8; i++) {
		memset(&tio, 0, sizeof tio);
		/* Fail the second write: the first one (the record) must
		 * already have been synced. */
		tio.fail_pwrite_at = 2;
		static uint8_t entry[AUDIT_ENTRY_MAX];
		fill_entry(i, entry);
		assert_int_equal(audit_store_append(store, entry, entry_len(i), NULL), DM_ERR_IO);
		assert_int_equal(tio.file_fsyncs, 1);
		close_store(fx, store);
		store = open_store(fx, &test_io);
		assert_int_equal(audit_store_size(store), i);
		memset(&tio, 0, sizeof tio);
		append_entries(store, i, i + 1);
		assert_int_equal(tio.pwrites, 2);
		assert_int_equal(tio.file_fsyncs, 2);
	}
	/* Short and interrupted writes are completed. */
	memset(&tio, 0, sizeof tio);
	tio.max_chunk = 7;
	tio.eintr_every = 3;
	append_entries(store, 8, 30);
	close_store(fx, store);
	store = open_store(fx, NULL);
	check_store(store, m, 30, 0);
	close_store(fx, store);
	free(m);
}

static void test_audit_store_open_fails_cleanly_when_recovery_cannot_cut(void **state)
{
	struct fixture *fx = *state;
	struct model *m = model_new(4);
	struct audit_store *store = open_store(fx, NULL);
	append_entries(store, 0, 3);
	close_store(fx, store);
	struct file_copy log = read_whole(fx->log_path);
	uint8_t garbage[5] = {1, 2, 3, 4, 5};
	int fd = open(fx->log_path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, garbage, sizeof garbage), (ssize_t)sizeof garbage);
	close(fd);
	tio.fail_ftruncate_at = 1;
	assert_int_equal(try_open(fx, &test_io, &store), DM_ERR_IO);
	assert_non_null(strstr(fx->err, AUDIT_LOG_FILE));
	memset(&tio, 0, sizeof tio);
	tio.fail_fsync_at = 1;
	assert_int_equal(try_open(fx, &test_io, &store), DM_ERR_IO);
	expect_recovered(fx, m, 3);
	free(log.bytes);
	free(m);
}

static void test_audit_store_takes_entries_up_to_the_limit_and_refuses_one_byte_more(void **state)
{
	struct fixture *fx = *state;
	struct audit_store *store = open_store(fx, NULL);
	static uint8_t big[AUDIT_ENTRY_MAX + 1];
	memset(big, 0xab, sizeof big);
	uint64_t index = 5;
	assert_int_equal(audit_store_append(store, big, AUDIT_ENTRY_MAX + 1, &index),
	                 DM_ERR_TOO_LARGE);
	assert_int_equal(index, 0);
	assert_int_equal(audit_store_append(store, NULL, 1, &index), DM_ERR_INVALID);
	assert_int_equal(audit_store_size(store), 0);
	assert_false(audit_store_failed(store));
	assert_int_equal(audit_store_append(store, big, AUDIT_ENTRY_MAX, &index), DM_OK);
	assert_int_equal(index, 0);
	assert_int_equal(audit_store_append(store, big, AUDIT_ENTRY_MAX - 1, &index), DM_OK);
	assert_int_equal(audit_store_append(store, NULL, 0, &index), DM_OK);
	assert_int_equal(index, 2);
	close_store(fx, store);
	store = open_store(fx, NULL);
	struct dm_buf got = {0};
	assert_int_equal(audit_store_entry(store, 0, &got), DM_OK);
	assert_int_equal(got.len, AUDIT_ENTRY_MAX);
	assert_memory_equal(got.data, big, AUDIT_ENTRY_MAX);
	/* Appends to what out already holds. */
	assert_int_equal(audit_store_entry(store, 2, &got), DM_OK);
	assert_int_equal(got.len, AUDIT_ENTRY_MAX);
	assert_int_equal(audit_store_entry(store, 1, &got), DM_OK);
	assert_int_equal(got.len, 2 * AUDIT_ENTRY_MAX - 1);
	dm_buf_free(&got);
	close_store(fx, store);
}

static void test_audit_store_reads_refuse_what_does_not_exist(void **state)
{
	struct fixture *fx = *state;
	struct audit_store *store = open_store(fx, NULL);
	append_entries(store, 0, 4);
	struct dm_buf got = {0};
	uint8_t root[HASH], proof[MERKLE_MAX_PROOF][HASH];
	size_t count = 9;
	assert_int_equal(audit_store_entry(store, 4, &got), DM_ERR_NOT_FOUND);
	assert_int_equal(audit_store_entry(store, UINT64_MAX, &got), DM_ERR_NOT_FOUND);
	assert_int_equal(got.len, 0);
	assert_int_equal(audit_store_root(store, 5, root), DM_ERR_NOT_FOUND);
	assert_int_equal(audit_store_inclusion(store, 4, 4, proof, &count), DM_ERR_INVALID);
	assert_int_equal(count, 0);
	assert_int_equal(audit_store_inclusion(store, 0, 5, proof, &count), DM_ERR_NOT_FOUND);
	assert_int_equal(audit_store_inclusion(store, 0, 0, proof, &count), DM_ERR_INVALID);
	assert_int_equal(audit_store_consistency(store, 0, 4, proof, &count), DM_ERR_INVALID);
	assert_int_equal(audit_store_consistency(store, 4, 5, proof, &count), DM_ERR_NOT_FOUND);
	assert_int_equal(audit_store_consistency(store, 5, 4, proof, &count), DM_ERR_INVALID);
	assert_int_equal(audit_store_consistency(store, 4, 4, proof, &count), DM_OK);
	assert_int_equal(count, 0);
	/* Failing reads are reported, not taken for data. */
	tio.fail_preads = 1;
	close_store(fx, store);
	store = open_store(fx, &test_io);
	assert_int_equal(audit_store_entry(store, 1, &got), DM_ERR_IO);
	assert_int_equal(audit_store_root(store, 3, root), DM_ERR_IO);
	assert_int_equal(audit_store_inclusion(store, 1, 3, proof, &count), DM_ERR_IO);
	assert_int_equal(count, 0);
	assert_int_equal(got.len, 0);
	close_store(fx, store);
}

static void test_audit_store_reads_notice_files_changed_after_open(void **state)
{
	struct fixture *fx = *state;
	struct audit_store *store = open_store(fx, NULL);
	append_entries(store, 0, 5);
	/* Entry 2's record starts after entries 0 and 1. */
	uint64_t offset = HEADER + 8 + entry_len(0) + 8 + entry_len(1);
	int fd = open(fx->log_path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t byte;
	assert_int_equal(pread(fd, &byte, 1, (off_t)offset + 6), 1);
	byte ^= 0xff;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)offset + 6), 1);
	/* A length beyond the log. */
	uint8_t huge[4] = {0, 0, 0x3f, 0xff};
	assert_int_equal(pwrite(fd, huge, 4, (off_t)HEADER), 4);
	close(fd);
	struct dm_buf got = {0};
	assert_int_equal(audit_store_entry(store, 2, &got), DM_ERR_MALFORMED);
	assert_int_equal(audit_store_entry(store, 0, &got), DM_ERR_MALFORMED);
	assert_int_equal(got.len, 0);
	assert_int_equal(audit_store_entry(store, 1, &got), DM_OK);
	assert_int_equal(got.len, entry_len(1));
	dm_buf_free(&got);
	/* The idx cut short under the store. */
	assert_int_equal(truncate(fx->idx_path, HEADER + 10), 0);
	uint8_t root[HASH];
	assert_int_equal(audit_store_root(store, 5, root), DM_ERR_MALFORMED);
	assert_int_equal(audit_store_entry(store, 3, &got), DM_ERR_MALFORMED);
	close_store(fx, store);
}

static void test_audit_store_refuses_a_second_opener(void **state)
{
	struct fixture *fx = *state;
	struct audit_store *first = open_store(fx, NULL);
	struct audit_store *second = NULL;
	struct audit_store_options options = {.err = fx->err, .err_len = sizeof fx->err};
	assert_int_equal(audit_store_open(fx->dir, &options, &second), DM_ERR_STATE);
	assert_null(second);
	assert_non_null(strstr(fx->err, "in use"));
	close_store(fx, first);
	assert_int_equal(audit_store_open(fx->dir, NULL, &second), DM_OK);
	audit_store_close(second);
}

static void test_audit_store_survives_allocation_failures(void **state)
{
	struct fixture *fx = *state;
	struct model *m = model_new(6);
	for (int with_entries = 0; with_entries <= 1; with_entries++) {
		struct audit_store *store = NULL;
		int rc;
		for (long budget = 0;; budget++) {
			dm_alloc_fail_after(budget);
			rc = audit_store_open(fx->dir, NULL, &store);
			dm_alloc_fail_after(-1);
			if (rc == DM_OK)
				break;
			assert_int_equal(rc, DM_ERR_NOMEM);
			assert_null(store);
			assert_true(budget < 100);
		}
		fx->live = store;
		if (!with_entries)
			append_entries(store, 0, 5);
		/* Reading into a buffer that cannot grow leaves it as it was. */
		struct dm_buf got = {0};
		dm_alloc_fail_after(0);
		rc = audit_store_entry(store, 4, &got);
		dm_alloc_fail_after(-1);
		assert_int_equal(rc, DM_ERR_NOMEM);
		assert_int_equal(got.len, 0);
		assert_null(got.data);
		/* Appends do not allocate. */
		dm_alloc_fail_after(0);
		uint8_t entry[AUDIT_ENTRY_MAX];
		fill_entry(5, entry);
		rc = audit_store_append(store, entry, entry_len(5), NULL);
		dm_alloc_fail_after(-1);
		assert_int_equal(rc, DM_OK);
		check_store(store, m, 6, 0);
		close_store(fx, store);
		if (!with_entries) {
			/* Back to five for the second round. */
			struct file_copy log = read_whole(fx->log_path);
			struct file_copy idx = read_whole(fx->idx_path);
			write_whole(fx->log_path, log.bytes, log.size - 8 - entry_len(5));
			write_whole(fx->idx_path, idx.bytes, idx.size - 8 - 2 * HASH);
			free(log.bytes);
			free(idx.bytes);
		}
	}
	free(m);
}

int main(void)
{
	if (!getenv("AUDIT_TEST_LOG"))
		dm_log_set_level((enum dm_log_level)(DM_LOG_ERROR + 1));
	const struct CMUnitTest tests[] = {
#define CASE(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    CASE(test_audit_store_creates_its_directory_and_files_private_and_empty),
	    CASE(test_audit_store_roots_and_proofs_match_the_memory_tree_for_every_size),
	    CASE(test_audit_store_reopens_with_the_same_entries_and_extends_the_same_tree),
	    CASE(test_audit_store_cuts_a_torn_last_append_at_every_byte),
	    CASE(test_audit_store_refuses_any_flipped_byte_in_either_file),
	    CASE(test_audit_store_refuses_truncated_missing_and_foreign_files),
	    CASE(test_audit_store_enters_its_error_state_when_a_write_or_fsync_fails),
	    CASE(test_audit_store_syncs_the_entry_before_writing_its_hashes),
	    CASE(test_audit_store_open_fails_cleanly_when_recovery_cannot_cut),
	    CASE(test_audit_store_takes_entries_up_to_the_limit_and_refuses_one_byte_more),
	    CASE(test_audit_store_reads_refuse_what_does_not_exist),
	    CASE(test_audit_store_reads_notice_files_changed_after_open),
	    CASE(test_audit_store_refuses_a_second_opener),
	    CASE(test_audit_store_survives_allocation_failures),
#undef CASE
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
