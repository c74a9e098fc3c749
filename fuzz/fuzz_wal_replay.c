/*
 * fuzz_wal_replay.c — libFuzzer target for wal_replay.
 *
 * Each input is replayed as the only segment of a log three ways: raw (so
 * the segment header itself is fuzzed), after a valid segment header, and
 * after a valid header with the checksum of every record that fits fixed up
 * (so the fuzzer reaches records that pass their checksum: lengths, limits,
 * many records, the cut). Then once more as the first of two segments,
 * where any damage must be refused rather than cut.
 *
 * Checked: no crash, no leak; every record handed out is exactly the bytes
 * of the file at the next record position and lies within the file; after a
 * successful replay the file ends right after the last record handed out (or
 * is gone when its header was bad); a damaged earlier segment is refused.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/wal.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"

static char dir[64];

/* fsync is not what is fuzzed, and a real one costs milliseconds per run. */
static int fuzz_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}
static ssize_t fuzz_write(int fd, const void *buf, size_t len)
{
	return write(fd, buf, len);
}
static int fuzz_fsync(int fd)
{
	return 0;
}
static int fuzz_close(int fd)
{
	return close(fd);
}
static const struct wal_io fuzz_io = {fuzz_open, fuzz_write, fuzz_fsync, fuzz_close};
static const struct wal_options fuzz_options = {.io = &fuzz_io};

struct expectation {
	const uint8_t *file; /* what was written */
	size_t size;
	size_t pos; /* where the next record must start */
	size_t records;
};

static void remove_segments(void)
{
	char path[128];
	for (uint64_t id = 1; id <= 2; id++) {
		snprintf(path, sizeof path, "%s/wal-%016llx.log", dir, (unsigned long long)id);
		unlink(path);
	}
}

static void cleanup(void)
{
	remove_segments();
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* tmpfs when there is one: the fuzzer creates files by the thousand. */
	struct stat st;
	strcpy(dir, stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0
	                ? "/dev/shm/fuzz_wal.XXXXXX"
	                : "/tmp/fuzz_wal.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	atexit(cleanup);
	dm_log_set_level((enum dm_log_level)(DM_LOG_ERROR + 1));
	return 0;
}

static int check_record(void *arg, const uint8_t *record, size_t len)
{
	struct expectation *want = arg;
	if (want->pos < WAL_SEGMENT_HEADER_SIZE)
		want->pos = WAL_SEGMENT_HEADER_SIZE;
	if (len > WAL_MAX_RECORD || want->pos + WAL_RECORD_HEADER_SIZE > want->size ||
	    len > want->size - want->pos - WAL_RECORD_HEADER_SIZE)
		abort(); /* a record beyond the file */
	if (memcmp(record, want->file + want->pos + WAL_RECORD_HEADER_SIZE, len) != 0)
		abort(); /* not the bytes at the record's position */
	want->pos += WAL_RECORD_HEADER_SIZE + len;
	want->records++;
	return 0;
}

static void write_segment(uint64_t id, const uint8_t *bytes, size_t len)
{
	char path[128];
	snprintf(path, sizeof path, "%s/wal-%016llx.log", dir, (unsigned long long)id);
	FILE *file = fopen(path, "wb");
	if (!file || (len && fwrite(bytes, 1, len, file) != len))
		abort();
	fclose(file);
}

static long segment_size(uint64_t id)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof path, "%s/wal-%016llx.log", dir, (unsigned long long)id);
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Replays `file` as the only segment and checks what came out. */
static void replay_single(const uint8_t *file, size_t size)
{
	remove_segments();
	write_segment(1, file, size);
	struct wal *wal;
	if (wal_open(dir, &fuzz_options, &wal) != DM_OK)
		abort();
	struct expectation want = {file, size, 0, 0};
	int rc = wal_replay(wal, check_record, &want);
	wal_close(wal);
	if (rc != DM_OK)
		abort(); /* damage in the last segment is a torn tail, never an error */
	long after = segment_size(1);
	if (after >= 0 && (size_t)after != (want.records ? want.pos : WAL_SEGMENT_HEADER_SIZE))
		abort(); /* the cut is not right after the last good record */
}

/* `file` as segment 1 followed by an intact, empty segment 2: segment 1 is
 * replayed whole or refused. */
static void replay_first_of_two(const uint8_t *file, size_t size)
{
	remove_segments();
	write_segment(1, file, size);
	uint8_t header[WAL_SEGMENT_HEADER_SIZE];
	wal_encode_segment_header(2, header);
	write_segment(2, header, sizeof header);
	struct wal *wal;
	if (wal_open(dir, &fuzz_options, &wal) != DM_OK)
		abort();
	struct expectation want = {file, size, 0, 0};
	int rc = wal_replay(wal, check_record, &want);
	wal_close(wal);
	if (rc == DM_OK && want.pos != size && !(size == WAL_SEGMENT_HEADER_SIZE && !want.records))
		abort(); /* an earlier segment was accepted only in part */
	if (rc != DM_OK && rc != DM_ERR_MALFORMED)
		abort();
	if (segment_size(1) != (long)size)
		abort(); /* an earlier segment was modified */
}

static void put_be32(uint8_t *out, uint32_t value)
{
	out[0] = (uint8_t)(value >> 24);
	out[1] = (uint8_t)(value >> 16);
	out[2] = (uint8_t)(value >> 8);
	out[3] = (uint8_t)value;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	replay_single(data, size);

	uint8_t *file = malloc(WAL_SEGMENT_HEADER_SIZE + size + 1);
	if (!file)
		abort();
	wal_encode_segment_header(1, file);
	memcpy(file + WAL_SEGMENT_HEADER_SIZE, data, size);
	size_t total = WAL_SEGMENT_HEADER_SIZE + size;
	replay_single(file, total);

	/* Fix the checksum of every record whose length fits in what is left. */
	size_t pos = WAL_SEGMENT_HEADER_SIZE;
	while (total - pos >= WAL_RECORD_HEADER_SIZE) {
		uint8_t *head = file + pos;
		uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
		               (uint32_t)head[2] << 8 | head[3];
		if (len > total - pos - WAL_RECORD_HEADER_SIZE)
			break;
		put_be32(head + 4, crc32c(crc32c(0, head, 4), head + 8, len));
		pos += WAL_RECORD_HEADER_SIZE + len;
	}
	replay_single(file, total);
	replay_first_of_two(file, total);
	free(file);
	return 0;
}
