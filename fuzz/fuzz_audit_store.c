/*
 * fuzz_audit_store.c — libFuzzer target for opening the audit log
 * (audit_store_open's recovery) over arbitrary files.
 *
 * The first byte picks how the rest becomes entries.log and entries.idx:
 *
 *   0  raw: two bytes of split point, then the bytes of both files (so the
 *      headers themselves are fuzzed);
 *   1  the same after a valid header on each file;
 *   2  entries: a valid log is built with audit_store_append from
 *      [length byte][bytes]... after a 4-byte damage description (what to do,
 *      where, how much), which is then applied: cut either file, flip a
 *      byte in either, append garbage to either;
 *   3  a log part whose record checksums are fixed up (so records parse),
 *      with an index computed for those records by this harness, cut where
 *      two bytes say and followed by the rest of the input.
 *
 * Checked: no crash, no leak; a refused open returns DM_ERR_MALFORMED and
 * leaves both files as they were; an open that succeeds serves every entry,
 * every inclusion proof (for the tree of all entries) verifies against the
 * root computed from the entries' own bytes, consistency proofs verify, a
 * second open changes nothing, and an append after it survives a reopen.
 * With built entries (mode 2) the entries served are the ones appended, and
 * an undamaged log opens whole.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/merkle.h"
#include "audit/store.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"

#define HASH MERKLE_HASH_LEN
#define HEADER 16u
#define MAX_LEAVES 4096

static char dir[64];
static char log_path[128];
static char idx_path[128];

/* fsync is not what is fuzzed, and a real one costs milliseconds per run. */
static int fz_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}
static ssize_t fz_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	return pwrite(fd, buf, len, offset);
}
static ssize_t fz_pread(int fd, void *buf, size_t len, off_t offset)
{
	return pread(fd, buf, len, offset);
}
static int fz_fsync(int fd)
{
	return 0;
}
static int fz_ftruncate(int fd, off_t length)
{
	return ftruncate(fd, length);
}
static int fz_close(int fd)
{
	return close(fd);
}
static const struct audit_io fuzz_io = {fz_open,  fz_pwrite,    fz_pread,
                                        fz_fsync, fz_ftruncate, fz_close};
static const struct audit_store_options fuzz_options = {.io = &fuzz_io};

static void cleanup(void)
{
	unlink(log_path);
	unlink(idx_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* tmpfs when there is one: the fuzzer writes files by the thousand. */
	struct stat st;
	strcpy(dir, stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0
	                ? "/dev/shm/fuzz_audit.XXXXXX"
	                : "/tmp/fuzz_audit.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(log_path, sizeof log_path, "%s/" AUDIT_LOG_FILE, dir);
	snprintf(idx_path, sizeof idx_path, "%s/" AUDIT_IDX_FILE, dir);
	atexit(cleanup);
	dm_log_set_level((enum dm_log_level)(DM_LOG_ERROR + 1));
	return 0;
}

/* ---- files ------------------------------------------------------------- */

static void write_file(const char *path, const uint8_t *bytes, size_t len)
{
	FILE *file = fopen(path, "wb");
	if (!file || (len && fwrite(bytes, 1, len, file) != len) || fclose(file) != 0)
		abort();
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	*len = 0;
	if (stat(path, &st) != 0)
		return NULL;
	uint8_t *bytes = malloc((size_t)st.st_size + 1);
	FILE *file = fopen(path, "rb");
	if (!bytes || !file || fread(bytes, 1, (size_t)st.st_size, file) != (size_t)st.st_size)
		abort();
	fclose(file);
	*len = (size_t)st.st_size;
	return bytes;
}

static int same_file(const char *path, const uint8_t *bytes, size_t len)
{
	size_t got_len;
	uint8_t *got = read_file(path, &got_len);
	int same = got && got_len == len && (len == 0 || memcmp(got, bytes, len) == 0);
	free(got);
	return same;
}

static void put_be32(uint8_t *out, uint32_t value)
{
	for (int i = 3; i >= 0; i--, value >>= 8)
		out[i] = (uint8_t)value;
}

static void put_be64(uint8_t *out, uint64_t value)
{
	for (int i = 7; i >= 0; i--, value >>= 8)
		out[i] = (uint8_t)value;
}

static void header(const char *magic, uint8_t out[HEADER])
{
	memcpy(out, magic, 8);
	put_be32(out + 8, 1);
	put_be32(out + 12, crc32c(0, out, 12));
}

/* ---- what an opened store must satisfy --------------------------------- */

struct expected {
	const uint8_t *const *entries; /* mode 2: what was appended */
	const size_t *lens;
	size_t count;
	int intact; /* nothing was damaged: the store must open whole */
};

static uint8_t leaves[MAX_LEAVES][HASH];

static void check_opened(struct audit_store *store, const struct expected *want)
{
	uint64_t size = audit_store_size(store);
	if (size > MAX_LEAVES)
		abort(); /* more entries than the input could hold */
	if (want && (size > want->count || (want->intact && size != want->count)))
		abort();
	struct dm_buf bytes = {0};
	for (uint64_t i = 0; i < size; i++) {
		dm_buf_reset(&bytes);
		if (audit_store_entry(store, i, &bytes) != DM_OK || bytes.len > AUDIT_ENTRY_MAX)
			abort();
		if (want && (bytes.len != want->lens[i] ||
		             (bytes.len && memcmp(bytes.data, want->entries[i], bytes.len) != 0)))
			abort(); /* not the entry that was appended */
		if (merkle_leaf_hash(bytes.data, bytes.len, leaves[i]) != DM_OK)
			abort();
	}
	dm_buf_free(&bytes);

	struct merkle_memory mem = {(const uint8_t(*)[HASH])leaves, size};
	struct merkle_source src;
	merkle_memory_source(&mem, &src);
	uint8_t root[HASH], want_root[HASH];
	if (audit_store_root(store, size, root) != DM_OK ||
	    merkle_root(&src, size, want_root) != DM_OK || memcmp(root, want_root, HASH) != 0)
		abort(); /* the stored hashes are not those of the entries */
	uint8_t proof[MERKLE_MAX_PROOF][HASH];
	size_t count;
	for (uint64_t i = 0; i < size; i++) {
		if (audit_store_inclusion(store, i, size, proof, &count) != DM_OK ||
		    merkle_verify_inclusion(i, size, leaves[i], (const uint8_t(*)[HASH])proof,
		                            count, root) != DM_OK)
			abort();
	}
	for (uint64_t old = 1; old <= size; old = old < 64 ? old + 1 : old * 2 + 1) {
		uint8_t old_root[HASH], want_old[HASH];
		if (audit_store_root(store, old, old_root) != DM_OK ||
		    merkle_root(&src, old, want_old) != DM_OK ||
		    memcmp(old_root, want_old, HASH) != 0)
			abort();
		if (audit_store_consistency(store, old, size, proof, &count) != DM_OK ||
		    merkle_verify_consistency(old, size, old_root, root,
		                              (const uint8_t(*)[HASH])proof, count) != DM_OK)
			abort();
	}
}

/* Opens the files as they are now and checks everything the header of
 * this file promises. */
static void open_and_check(const struct expected *want)
{
	size_t log_len, idx_len;
	uint8_t *log_before = read_file(log_path, &log_len);
	uint8_t *idx_before = read_file(idx_path, &idx_len);
	struct audit_store *store;
	int rc = audit_store_open(dir, &fuzz_options, &store);
	if (rc != DM_OK) {
		if (rc != DM_ERR_MALFORMED || (want && want->intact))
			abort();
		/* Refused: nothing was changed, no file created. */
		if ((log_before ? !same_file(log_path, log_before, log_len)
		                : access(log_path, F_OK) == 0) ||
		    (idx_before ? !same_file(idx_path, idx_before, idx_len)
		                : access(idx_path, F_OK) == 0))
			abort();
		free(log_before);
		free(idx_before);
		return;
	}
	free(log_before);
	free(idx_before);
	check_opened(store, want);
	uint64_t size = audit_store_size(store);
	audit_store_close(store);

	/* Recovery is done once: a second open finds nothing to cut. */
	uint8_t *log_after = read_file(log_path, &log_len);
	uint8_t *idx_after = read_file(idx_path, &idx_len);
	if (audit_store_open(dir, &fuzz_options, &store) != DM_OK ||
	    audit_store_size(store) != size)
		abort();
	if (!same_file(log_path, log_after, log_len) || !same_file(idx_path, idx_after, idx_len))
		abort();
	free(log_after);
	free(idx_after);
	/* And the recovered store takes an append that survives a reopen. */
	if (audit_store_append(store, "after", 5, NULL) != DM_OK)
		abort();
	audit_store_close(store);
	if (audit_store_open(dir, &fuzz_options, &store) != DM_OK ||
	    audit_store_size(store) != size + 1)
		abort();
	audit_store_close(store);
}

/* ---- the four modes ---------------------------------------------------- */

static void raw_files(const uint8_t *data, size_t size, int with_headers)
{
	if (size < 2)
		return;
	size_t split = ((size_t)data[0] << 8 | data[1]) % (size - 1);
	data += 2;
	size -= 2;
	uint8_t *log = malloc(HEADER + split + 1), *idx = malloc(HEADER + size - split + 1);
	if (!log || !idx)
		abort();
	size_t at = with_headers ? HEADER : 0;
	if (with_headers) {
		header("DMAUDLOG", log);
		header("DMAUDIDX", idx);
	}
	memcpy(log + at, data, split);
	memcpy(idx + at, data + split, size - split);
	write_file(log_path, log, at + split);
	write_file(idx_path, idx, at + size - split);
	free(log);
	free(idx);
	open_and_check(NULL);
}

/* Cuts, flips or extends a file per the damage description. */
static void damage(const char *path, int what, size_t where, uint8_t how)
{
	size_t len;
	uint8_t *bytes = read_file(path, &len);
	if (!bytes)
		abort();
	if (what == 0 && len > 0) {
		write_file(path, bytes, where % (len + 1));
	} else if (what == 1 && len > 0) {
		bytes[where % len] ^= how ? how : 1;
		write_file(path, bytes, len);
	} else if (what == 2) {
		uint8_t *longer = malloc(len + how + 1);
		if (!longer)
			abort();
		memcpy(longer, bytes, len);
		for (size_t i = 0; i < how; i++)
			longer[len + i] = (uint8_t)(where >> (8 * (i % 2)));
		write_file(path, longer, len + how);
		free(longer);
	}
	free(bytes);
}

static void built_entries(const uint8_t *data, size_t size)
{
	if (size < 4)
		return;
	uint8_t op = data[0], how = data[3];
	size_t where = (size_t)data[1] << 8 | data[2];
	data += 4;
	size -= 4;
	const uint8_t *entries[MAX_LEAVES];
	size_t lens[MAX_LEAVES], count = 0;
	while (size > 0 && count < MAX_LEAVES) {
		size_t len = data[0] < size ? data[0] : size - 1;
		entries[count] = data + 1;
		lens[count++] = len;
		data += 1 + len;
		size -= 1 + len;
	}
	struct audit_store *store;
	if (audit_store_open(dir, &fuzz_options, &store) != DM_OK)
		abort();
	for (size_t i = 0; i < count; i++)
		if (audit_store_append(store, entries[i], lens[i], NULL) != DM_OK)
			abort();
	audit_store_close(store);
	/* op: 0..2 on the log, 3..5 on the idx, anything else: no damage. */
	int target = op % 8;
	if (target < 6)
		damage(target < 3 ? log_path : idx_path, target % 3, where, how);
	struct expected want = {entries, lens, count, target >= 6};
	open_and_check(&want);
}

static void fixed_records(const uint8_t *data, size_t size)
{
	if (size < 4)
		return;
	size_t log_part = ((size_t)data[0] << 8 | data[1]) % (size - 3);
	size_t idx_cut = (size_t)data[2] << 8 | data[3];
	data += 4;
	size -= 4;
	size_t log_len = HEADER + log_part;
	uint8_t *log = malloc(log_len + 1);
	size_t idx_cap = HEADER + (log_part / 8 + 1) * (8 + HASH * 14) + size - log_part;
	uint8_t *idx = malloc(idx_cap);
	if (!log || !idx)
		abort();
	header("DMAUDLOG", log);
	memcpy(log + HEADER, data, log_part);
	header("DMAUDIDX", idx);
	size_t idx_len = HEADER;
	/* Fix every record's checksum and give it its group. */
	uint8_t frontier[64][HASH];
	uint64_t index = 0;
	size_t pos = HEADER;
	while (log_len - pos >= 8 && index < MAX_LEAVES) {
		uint8_t *rec = log + pos;
		uint32_t len = (uint32_t)rec[0] << 24 | (uint32_t)rec[1] << 16 |
		               (uint32_t)rec[2] << 8 | rec[3];
		if (len > AUDIT_ENTRY_MAX || len > log_len - pos - 8)
			break;
		put_be32(rec + 4 + len, crc32c(0, rec, 4 + (size_t)len));
		put_be64(idx + idx_len, pos);
		uint8_t *hash = idx + idx_len + 8;
		if (merkle_leaf_hash(rec + 4, len, hash) != DM_OK)
			abort();
		unsigned level = 0;
		while ((index >> level) & 1) {
			if (merkle_node_hash(frontier[level], hash, hash + HASH) != DM_OK)
				abort();
			hash += HASH;
			level++;
		}
		memcpy(frontier[level], hash, HASH);
		idx_len = (size_t)(hash + HASH - idx);
		pos += 8 + len;
		index++;
	}
	if (idx_cut < idx_len)
		idx_len = idx_cut;
	memcpy(idx + idx_len, data + log_part, size - log_part);
	write_file(log_path, log, log_len);
	write_file(idx_path, idx, idx_len + size - log_part);
	free(log);
	free(idx);
	open_and_check(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 16))
		return 0;
	unlink(log_path);
	unlink(idx_path);
	switch (data[0] % 4) {
	case 0:
		raw_files(data + 1, size - 1, 0);
		break;
	case 1:
		raw_files(data + 1, size - 1, 1);
		break;
	case 2:
		built_entries(data + 1, size - 1);
		break;
	default:
		fixed_records(data + 1, size - 1);
		break;
	}
	return 0;
}
