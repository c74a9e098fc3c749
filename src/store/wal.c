/*
 * wal.c — the write-ahead log: segment files, group commit, replay.
 *
 * FORMAT
 *
 * The log is a directory of segment files named wal-<id>.log, <id> being 16
 * lowercase hex digits; ids increase strictly (with possible gaps). All
 * integers are big-endian.
 *
 * Segment header, WAL_SEGMENT_HEADER_SIZE (24) bytes at offset 0:
 *
 *	 0  8  magic "DMWALSEG"
 *	 8  4  format version, 1
 *	12  8  segment id, equal to the id in the file name
 *	20  4  CRC32C of bytes 0..19
 *
 * Then records, back to back, up to the end of the file:
 *
 *	 0  4  payload length L, 0 <= L <= WAL_MAX_RECORD
 *	 4  4  CRC32C of the length field (bytes 0..3) followed by the L payload bytes
 *	 8  L  payload (opaque to the log)
 *
 * The checksum covers the length so that a torn or zero-filled length is
 * caught before it is trusted (a zero-filled header has length 0 and checksum
 * 0, but the CRC32C of four zero bytes is 0x48674bc7).
 *
 * INVARIANTS
 *
 * 1. A record is reported durable (status DM_OK) only after the write that
 *    holds it and an fsync of its segment file have both returned success,
 *    and, for the first commit to a new segment, an fsync of the directory.
 * 2. Cookies are reported in append order, each exactly once: by the loop
 *    callback, or by wal_close when the loop may no longer run.
 * 3. The mutex is never held across write, fsync, open or close, so appends
 *    continue while a commit is in flight and the next commit takes all of
 *    them (that is what makes group commit batch).
 * 4. One commit writes records of one segment only: a record appended before
 *    wal_rotate goes to the old segment, one appended after to the new one.
 *    A commit writes at most max_batch_bytes (or one larger record).
 * 5. After a failed open, write or fsync the log is in its error state for
 *    good: the batch in flight and every queued record are reported
 *    DM_ERR_STATE, wal_append refuses, and no fsync is ever retried (the
 *    kernel may already have dropped the dirty pages and would report success
 *    for data that is gone).
 * 6. A segment file is written only by the process that created it (O_EXCL);
 *    after a reopen the next commit starts a new segment, so replay's cut of
 *    a torn tail is the only write to an old segment.
 * 7. Replay accepts a record only when its header is complete, its length is
 *    at most WAL_MAX_RECORD and within the file, and its checksum matches.
 *    The first bad record of the last segment ends the log (it was never
 *    acknowledged, invariant 1) and is cut off; a bad record or header in any
 *    other segment refuses the log.
 * 8. wal_release_before never deletes the newest segment known durable, so
 *    the directory always holds the highest id ever used and ids never go
 *    back after a restart.
 *
 * QUEUE
 *
 * One array of entries {cookie, segment, framed bytes, status} in append
 * order, cut by four indices (all under the mutex):
 *
 *	[head, done)   completed, waiting to be delivered on the loop thread
 *	[done, taken)  taken by the writer, their bytes in `writing`
 *	[taken, tail)  pending, their bytes in `pending`
 *
 * WRITER THREAD (writer_main): states and the transitions between them
 *
 *	IDLE ---- wal_append queued records ----> COMMIT
 *	     take all: swap pending/writing, taken = tail
 *	COMMIT -- a run of one segment remains --> COMMIT
 *	     plan_batch (<= max_batch_bytes), then commit_batch without the mutex:
 *	     create the segment (O_EXCL + header) if new, write_all, fsync, and
 *	     the directory's fsync if new; mark DM_OK; notify_loop (event_active)
 *	COMMIT -- everything taken is written ---> IDLE
 *	COMMIT -- open, write or fsync fails ----> FAILED
 *	     enter_error_state (logs errno once), fail_queued, notify_loop
 *	any ----- release's dir fsync fails -----> FAILED
 *	     (wal_release_before calls enter_error_state on the loop thread)
 *	FAILED -- records queued before the failure was seen --> FAILED
 *	     fail_queued reports them DM_ERR_STATE; wal_append refuses new ones
 *	IDLE, FAILED -- wal_close sets stopping, nothing queued --> STOPPED
 *	     the thread returns; wal_close joins it and delivers what is left
 */
#include "store/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "util/bytes.h"
#include "util/alloc.h"
#include "util/crc32c.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/cursor.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#define SEGMENT_MAGIC "DMWALSEG"
#define SEGMENT_VERSION 1u
#define DEFAULT_MAX_BATCH_BYTES (8u << 20)
/* Cookies delivered per durable call from a stack array: delivery never
 * allocates, so it cannot fail after the data is already durable. */
#define DELIVER_CHUNK 256
/* "wal-" + 16 hex digits + ".log" */
#define SEGMENT_NAME_LEN 24

struct entry {
	void *cookie;
	uint64_t segment;
	size_t bytes; /* framed: record header + payload */
	int status;
};

struct wal {
	char *dir;
	int dir_fd;
	const struct wal_io *io;
	size_t max_batch_bytes;

	/* Set by wal_open, used by wal_replay (loop thread only). */
	uint64_t *segments;
	size_t segment_count;
	int replayed;

	/* Loop thread only. */
	int started;
	struct event *deliver_ev;
	wal_durable_cb durable;
	void *durable_arg;

	/* Writer thread only (and wal_close after the join). */
	int file_fd;
	uint64_t file_segment;
	struct dm_buf writing;

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* Under lock. */
	struct entry *entries;
	size_t cap, head, done, taken, tail;
	struct dm_buf pending;
	uint64_t append_segment;  /* where the next append goes */
	uint64_t durable_segment; /* newest segment with a durable header, 0: none */
	int stopping;
	void (*observer)(void *arg, size_t records, size_t bytes, uint64_t fsync_ns);
	void *observer_arg;

	atomic_int failed;
	atomic_size_t pending_bytes;
};

/* ---- encoding ---------------------------------------------------------- */

void wal_encode_segment_header(uint64_t segment, uint8_t out[WAL_SEGMENT_HEADER_SIZE])
{
	memcpy(out, SEGMENT_MAGIC, 8);
	put_be32(out + 8, SEGMENT_VERSION);
	put_be32(out + 12, (uint32_t)(segment >> 32));
	put_be32(out + 16, (uint32_t)segment);
	put_be32(out + 20, crc32c(0, out, 20));
}

static uint32_t record_crc(const uint8_t length_field[4], const void *payload, size_t len)
{
	return crc32c(crc32c(0, length_field, 4), payload, len);
}

static void segment_name(char out[SEGMENT_NAME_LEN + 1], uint64_t segment)
{
	snprintf(out, SEGMENT_NAME_LEN + 1, "wal-%016" PRIx64 ".log", segment);
}

/* Parses a segment file name strictly; anything else in the directory is
 * not ours and is left alone. */
static int parse_segment_name(const char *name, uint64_t *segment)
{
	if (strlen(name) != SEGMENT_NAME_LEN || memcmp(name, "wal-", 4) != 0 ||
	    strcmp(name + 20, ".log") != 0)
		return 0;
	uint64_t id = 0;
	for (int i = 4; i < 20; i++) {
		char c = name[i];
		int digit;
		if (c >= '0' && c <= '9')
			digit = c - '0';
		else if (c >= 'a' && c <= 'f')
			digit = c - 'a' + 10;
		else
			return 0;
		id = id << 4 | (uint64_t)digit;
	}
	if (id == 0)
		return 0;
	*segment = id;
	return 1;
}

/* ---- the default I/O table --------------------------------------------- */

static int sys_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

static ssize_t sys_write(int fd, const void *buf, size_t len)
{
	return write(fd, buf, len);
}

/* fdatasync for segment files: their size is the only metadata a later read
 * needs. A directory's entries are its metadata, so it gets a full fsync. */
static int sys_fsync(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		return fsync(fd);
	return fdatasync(fd);
}

static int sys_close(int fd)
{
	return close(fd);
}

static const struct wal_io default_io = {sys_open, sys_write, sys_fsync, sys_close};

/* ---- helpers shared by both threads ------------------------------------ */

static int segment_path(const struct wal *wal, uint64_t segment, char *out, size_t size)
{
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(name, segment);
	int len = snprintf(out, size, "%s/%s", wal->dir, name);
	return len < 0 || (size_t)len >= size ? DM_ERR_TOO_LARGE : DM_OK;
}

/* Invariant 5: the first failure wins, is logged once, and is permanent. */
static void enter_error_state(struct wal *wal, const char *what, const char *file, int err)
{
	if (atomic_exchange(&wal->failed, 1) == 0)
		dm_error("wal %s: %s of %s failed: %s; the log refuses appends until reopened",
		         wal->dir, what, file, strerror(err));
}

static int sync_dir(struct wal *wal, const char *why)
{
	if (wal->io->fsync(wal->dir_fd) == 0)
		return DM_OK;
	enter_error_state(wal, why, "the directory", errno);
	return DM_ERR_IO;
}

/* A directory just created is durable only once its parent is synced;
 * otherwise power loss could take the whole log, acknowledged segments and
 * all, with it (invariant 1). */
static int sync_parent(const struct wal_io *io, const char *dir)
{
	char *parent = dm_parent_dir(dir);
	if (!parent)
		return DM_ERR_NOMEM;
	int rc = DM_OK;
	int fd = io->open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0 || io->fsync(fd) != 0) {
		dm_error("wal %s: cannot sync the parent directory %s: %s", dir, parent,
		         strerror(errno));
		rc = DM_ERR_IO;
	}
	if (fd >= 0)
		io->close(fd);
	dm_free(parent);
	return rc;
}

static int compare_ids(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Lists the segment ids in the directory, ascending. Caller frees *out. */
static int scan_segments(const char *dir, uint64_t **out, size_t *count)
{
	*out = NULL;
	*count = 0;
	DIR *listing = opendir(dir);
	if (!listing) {
		dm_error("wal %s: cannot list the directory: %s", dir, strerror(errno));
		return DM_ERR_IO;
	}
	uint64_t *ids = NULL;
	size_t len = 0, cap = 0;
	int rc = DM_OK;
	struct dirent *ent;
	errno = 0;
	while ((ent = readdir(listing)) != NULL) {
		uint64_t id;
		if (!parse_segment_name(ent->d_name, &id))
			continue;
		if (len == cap) {
			size_t want = cap ? cap * 2 : 16;
			uint64_t *grown = dm_realloc(ids, want * sizeof *ids);
			if (!grown) {
				rc = DM_ERR_NOMEM;
				break;
			}
			ids = grown;
			cap = want;
		}
		ids[len++] = id;
		errno = 0;
	}
	if (rc == DM_OK && errno != 0) {
		dm_error("wal %s: cannot list the directory: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
	}
	closedir(listing);
	if (rc != DM_OK) {
		dm_free(ids);
		return rc;
	}
	if (len > 1)
		qsort(ids, len, sizeof *ids, compare_ids);
	*out = ids;
	*count = len;
	return DM_OK;
}

/* ---- open -------------------------------------------------------------- */

int wal_open(const char *dir, const struct wal_options *options, struct wal **out)
{
	*out = NULL;
	struct wal *wal = dm_calloc(1, sizeof *wal);
	if (!wal)
		return DM_ERR_NOMEM;
	wal->dir_fd = -1;
	wal->file_fd = -1;
	wal->io = options && options->io ? options->io : &default_io;
	wal->max_batch_bytes = options && options->max_batch_bytes ? options->max_batch_bytes
	                                                           : DEFAULT_MAX_BATCH_BYTES;
	atomic_init(&wal->failed, 0);
	atomic_init(&wal->pending_bytes, 0);
	int rc = DM_ERR_NOMEM;
	if (pthread_mutex_init(&wal->lock, NULL) != 0) {
		dm_free(wal);
		return DM_ERR_NOMEM;
	}
	if (pthread_cond_init(&wal->wake, NULL) != 0) {
		pthread_mutex_destroy(&wal->lock);
		dm_free(wal);
		return DM_ERR_NOMEM;
	}
	wal->dir = dm_strdup(dir);
	if (!wal->dir)
		goto fail;

	/* 0700: the log holds vehicle data of one jurisdiction, readable by the
	 * node alone. */
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		dm_error("wal %s: cannot create the directory: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
		goto fail;
	}
	/* Every time, not only after mkdir: an earlier open may have created
	 * the directory and failed before syncing its parent. */
	rc = sync_parent(wal->io, dir);
	if (rc != DM_OK)
		goto fail;
	wal->dir_fd = wal->io->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (wal->dir_fd < 0) {
		dm_error("wal %s: cannot open the directory: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
		goto fail;
	}
	/* Two writers on one log would interleave segments and ids. */
	if (flock(wal->dir_fd, LOCK_EX | LOCK_NB) != 0) {
		dm_error("wal %s: the log is in use by another process (%s)", dir, strerror(errno));
		rc = errno == EWOULDBLOCK ? DM_ERR_STATE : DM_ERR_IO;
		goto fail;
	}
	rc = scan_segments(dir, &wal->segments, &wal->segment_count);
	if (rc != DM_OK)
		goto fail;
	if (wal->segment_count) {
		uint64_t newest = wal->segments[wal->segment_count - 1];
		if (newest == UINT64_MAX) {
			dm_error("wal %s: segment ids are exhausted", dir);
			rc = DM_ERR_INVALID;
			goto fail;
		}
		wal->append_segment = newest + 1;
	} else {
		wal->append_segment = 1;
	}
	*out = wal;
	return DM_OK;
fail:
	wal_close(wal);
	return rc;
}

/* ---- replay ------------------------------------------------------------ */

static int check_segment_header(struct dm_cursor *cur, uint64_t segment)
{
	const uint8_t *start;
	uint32_t version, stored_crc;
	uint64_t id;
	if (dm_cursor_take(cur, 8, &start) != DM_OK || memcmp(start, SEGMENT_MAGIC, 8) != 0)
		return DM_ERR_MALFORMED;
	if (dm_cursor_be32(cur, &version) != DM_OK || dm_cursor_be64(cur, &id) != DM_OK ||
	    dm_cursor_be32(cur, &stored_crc) != DM_OK)
		return DM_ERR_MALFORMED;
	if (stored_crc != crc32c(0, start, 20) || version != SEGMENT_VERSION || id != segment)
		return DM_ERR_MALFORMED;
	return DM_OK;
}

/* Reads the next record; on DM_ERR_MALFORMED the cursor is where the bad
 * record starts (invariant 7). */
static int next_record(struct dm_cursor *cur, const uint8_t **payload, size_t *len)
{
	size_t start = cur->pos;
	const uint8_t *length_field;
	uint32_t length, stored_crc;
	if (dm_cursor_take(cur, 4, &length_field) != DM_OK || dm_cursor_be32(cur, &stored_crc))
		goto bad;
	length = (uint32_t)length_field[0] << 24 | (uint32_t)length_field[1] << 16 |
	         (uint32_t)length_field[2] << 8 | length_field[3];
	if (length > WAL_MAX_RECORD || dm_cursor_take(cur, length, payload) != DM_OK)
		goto bad;
	if (record_crc(length_field, *payload, length) != stored_crc)
		goto bad;
	*len = length;
	return DM_OK;
bad:
	cur->pos = start;
	return DM_ERR_MALFORMED;
}

/* Cuts the last segment at `offset`: what follows was never acknowledged. */
static int cut_tail(struct wal *wal, const char *path, off_t offset, off_t size)
{
	dm_warn("wal %s: torn tail at offset %lld of the last segment (%lld bytes) cut off", path,
	        (long long)offset, (long long)(size - offset));
	int fd = wal->io->open(path, O_WRONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		dm_error("wal %s: cannot open to cut the torn tail: %s", path, strerror(errno));
		return DM_ERR_IO;
	}
	int rc = DM_OK;
	if (ftruncate(fd, offset) != 0 || wal->io->fsync(fd) != 0) {
		dm_error("wal %s: cannot cut the torn tail: %s", path, strerror(errno));
		rc = DM_ERR_IO;
	}
	wal->io->close(fd);
	return rc;
}

/* A last segment whose header is not intact holds nothing acknowledged: the
 * header is written and synced with the segment's first commit. */
static int drop_segment(struct wal *wal, const char *path, off_t size)
{
	dm_warn("wal %s: last segment has no intact header (%lld bytes); removed", path,
	        (long long)size);
	if (unlink(path) != 0) {
		dm_error("wal %s: cannot remove: %s", path, strerror(errno));
		return DM_ERR_IO;
	}
	if (wal->io->fsync(wal->dir_fd) != 0) {
		dm_error("wal %s: directory fsync failed: %s", wal->dir, strerror(errno));
		return DM_ERR_IO;
	}
	return DM_OK;
}

/* Replays one segment. Sets *dropped when the (last) segment was removed. */
static int replay_segment(struct wal *wal, uint64_t segment, int is_last,
                          int (*fn)(void *arg, const uint8_t *record, size_t len), void *arg,
                          int *dropped)
{
	char path[4096];
	int rc = segment_path(wal, segment, path, sizeof path);
	if (rc != DM_OK)
		return rc;
	int fd = wal->io->open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		dm_error("wal %s: cannot open: %s", path, strerror(errno));
		return DM_ERR_IO;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		dm_error("wal %s: cannot stat: %s", path, strerror(errno));
		wal->io->close(fd);
		return DM_ERR_IO;
	}
	/* One read-only mapping per segment: records are borrowed from it, no
	 * allocation per record. */
	const uint8_t *map = NULL;
	size_t size = (size_t)st.st_size;
	if (size > 0) {
		void *mapped = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (mapped == MAP_FAILED) {
			dm_error("wal %s: cannot map: %s", path, strerror(errno));
			wal->io->close(fd);
			return DM_ERR_IO;
		}
		map = mapped;
	}
	wal->io->close(fd);

	struct dm_cursor cur = dm_cursor_make(map, size);
	int bad = 0;
	if (check_segment_header(&cur, segment) != DM_OK) {
		if (is_last) {
			rc = drop_segment(wal, path, st.st_size);
			*dropped = rc == DM_OK;
		} else {
			dm_error("wal %s: bad segment header at offset 0", path);
			rc = DM_ERR_MALFORMED;
		}
		goto out;
	}
	while (dm_cursor_left(&cur) > 0) {
		const uint8_t *record;
		size_t len;
		if (next_record(&cur, &record, &len) != DM_OK) {
			bad = 1;
			break;
		}
		rc = fn(arg, record, len);
		if (rc != 0)
			goto out;
	}
	if (bad) {
		if (is_last) {
			rc = cut_tail(wal, path, (off_t)cur.pos, st.st_size);
		} else {
			dm_error(
			    "wal %s: corrupt record at offset %zu of a segment that is not the "
			    "last; refusing to open",
			    path, cur.pos);
			rc = DM_ERR_MALFORMED;
		}
	}
out:
	if (map)
		munmap((void *)map, size);
	return rc;
}

int wal_replay(struct wal *wal, int (*fn)(void *arg, const uint8_t *record, size_t len), void *arg)
{
	if (wal->started || wal->replayed)
		return DM_ERR_INVALID;
	for (size_t i = 0; i < wal->segment_count; i++) {
		int is_last = i + 1 == wal->segment_count;
		int dropped = 0;
		int rc = replay_segment(wal, wal->segments[i], is_last, fn, arg, &dropped);
		if (rc != 0)
			return rc;
		if (dropped)
			wal->segment_count--;
	}
	wal->replayed = 1;
	pthread_mutex_lock(&wal->lock);
	wal->durable_segment = wal->segment_count ? wal->segments[wal->segment_count - 1] : 0;
	pthread_mutex_unlock(&wal->lock);
	return DM_OK;
}

/* ---- the writer thread ------------------------------------------------- */

/* Writes and syncs one batch of records of `segment` (no mutex held,
 * invariant 3). On failure the log is in its error state. */
static int commit_batch(struct wal *wal, uint64_t segment, const uint8_t *data, size_t len,
                        uint64_t *fsync_ns)
{
	char path[4096];
	int new_file = 0;
	*fsync_ns = 0;
	if (segment_path(wal, segment, path, sizeof path) != DM_OK) {
		enter_error_state(wal, "naming", wal->dir, ENAMETOOLONG);
		return DM_ERR_IO;
	}
	if (segment != wal->file_segment) {
		/* Every commit to the old file was synced before it was reported. */
		if (wal->file_fd >= 0 && wal->io->close(wal->file_fd) != 0)
			dm_warn("wal %s: closing segment %016" PRIx64 ": %s", wal->dir,
			        wal->file_segment, strerror(errno));
		wal->file_fd = -1;
		wal->file_segment = 0;
		/* O_EXCL: never write into a file this process did not create
		 * (invariant 6). */
		int fd =
		    wal->io->open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0) {
			enter_error_state(wal, "creation", path, errno);
			return DM_ERR_IO;
		}
		wal->file_fd = fd;
		wal->file_segment = segment;
		new_file = 1;
		uint8_t header[WAL_SEGMENT_HEADER_SIZE];
		wal_encode_segment_header(segment, header);
		if (dm_write_all_with(wal->io->write, fd, header, sizeof header) != DM_OK) {
			enter_error_state(wal, "write", path, errno);
			return DM_ERR_IO;
		}
	}
	if (dm_write_all_with(wal->io->write, wal->file_fd, data, len) != DM_OK) {
		enter_error_state(wal, "write", path, errno);
		return DM_ERR_IO;
	}
	uint64_t start = dm_mono_ns();
	if (wal->io->fsync(wal->file_fd) != 0) {
		enter_error_state(wal, "fsync", path, errno);
		return DM_ERR_IO;
	}
	/* The file's directory entry must survive power loss too. */
	if (new_file && sync_dir(wal, "fsync") != DM_OK)
		return DM_ERR_IO;
	*fsync_ns = dm_mono_ns() - start;
	return DM_OK;
}

static void notify_loop(struct wal *wal)
{
	/* Thread-safe: the base was created after evthread_use_pthreads(). */
	event_active(wal->deliver_ev, EV_READ, 0);
}

/* Under lock: reports every taken and pending entry as failed. */
static void fail_queued(struct wal *wal)
{
	size_t bytes = 0;
	for (size_t i = wal->done; i < wal->tail; i++) {
		wal->entries[i].status = DM_ERR_STATE;
		bytes += wal->entries[i].bytes;
	}
	wal->done = wal->taken = wal->tail;
	dm_buf_reset(&wal->pending);
	atomic_fetch_sub(&wal->pending_bytes, bytes);
}

/* Under lock: the next commit is the longest run from `done` within `taken`
 * of one segment and at most max_batch_bytes (one record at least). */
static size_t plan_batch(const struct wal *wal, size_t *bytes, uint64_t *segment)
{
	size_t count = 0;
	*segment = wal->entries[wal->done].segment;
	*bytes = 0;
	for (size_t i = wal->done; i < wal->taken; i++) {
		const struct entry *ent = &wal->entries[i];
		if (ent->segment != *segment)
			break;
		if (count > 0 &&
		    (*bytes >= wal->max_batch_bytes || ent->bytes > wal->max_batch_bytes - *bytes))
			break;
		*bytes += ent->bytes;
		count++;
	}
	return count;
}

static void *writer_main(void *arg)
{
	struct wal *wal = arg;
	pthread_mutex_lock(&wal->lock);
	for (;;) {
		while (!wal->stopping && wal->taken == wal->tail)
			pthread_cond_wait(&wal->wake, &wal->lock);
		if (wal->taken == wal->tail)
			break; /* stopping and everything is reported */
		if (atomic_load(&wal->failed)) {
			fail_queued(wal);
			pthread_mutex_unlock(&wal->lock);
			notify_loop(wal);
			pthread_mutex_lock(&wal->lock);
			continue;
		}
		/* Take everything pending in O(1); appends go on into the
		 * emptied buffer while this is written. */
		struct dm_buf swap = wal->pending;
		wal->pending = wal->writing;
		wal->writing = swap;
		wal->taken = wal->tail;
		size_t offset = 0;
		while (wal->done < wal->taken) {
			size_t bytes;
			uint64_t segment;
			size_t count = plan_batch(wal, &bytes, &segment);
			void (*observer)(void *, size_t, size_t, uint64_t) = wal->observer;
			void *observer_arg = wal->observer_arg;
			int rc = atomic_load(&wal->failed) ? DM_ERR_STATE : DM_OK;
			uint64_t fsync_ns = 0;
			if (rc == DM_OK) {
				pthread_mutex_unlock(&wal->lock);
				rc = commit_batch(wal, segment, wal->writing.data + offset, bytes,
				                  &fsync_ns);
				pthread_mutex_lock(&wal->lock);
			}
			if (rc != DM_OK) {
				fail_queued(wal);
			} else {
				for (size_t i = wal->done; i < wal->done + count; i++)
					wal->entries[i].status = DM_OK;
				wal->done += count;
				wal->durable_segment = segment;
				atomic_fetch_sub(&wal->pending_bytes, bytes);
				offset += bytes;
			}
			pthread_mutex_unlock(&wal->lock);
			/* Metrics first, so they already count a commit when its
			 * callbacks run. */
			if (rc == DM_OK && observer)
				observer(observer_arg, count, bytes, fsync_ns);
			notify_loop(wal);
			pthread_mutex_lock(&wal->lock);
		}
		dm_buf_reset(&wal->writing);
		/* Do not keep a burst's buffer for ever. */
		if (wal->writing.cap > 4 * wal->max_batch_bytes)
			dm_buf_free(&wal->writing);
	}
	pthread_mutex_unlock(&wal->lock);
	return NULL;
}

/* ---- the loop thread --------------------------------------------------- */

/* Hands completed cookies to `durable` in append order (invariant 2), in
 * runs of one status, without holding the lock during the callback (which
 * may append). */
static void deliver(struct wal *wal)
{
	void *cookies[DELIVER_CHUNK];
	int statuses[DELIVER_CHUNK];
	for (;;) {
		pthread_mutex_lock(&wal->lock);
		size_t count = wal->done - wal->head;
		if (count > DELIVER_CHUNK)
			count = DELIVER_CHUNK;
		for (size_t i = 0; i < count; i++) {
			cookies[i] = wal->entries[wal->head + i].cookie;
			statuses[i] = wal->entries[wal->head + i].status;
		}
		wal->head += count;
		pthread_mutex_unlock(&wal->lock);
		if (count == 0)
			return;
		size_t run_start = 0;
		for (size_t i = 1; i <= count; i++) {
			if (i == count || statuses[i] != statuses[run_start]) {
				wal->durable(wal->durable_arg, cookies + run_start, i - run_start,
				             statuses[run_start]);
				run_start = i;
			}
		}
	}
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	deliver(arg);
}

int wal_start(struct wal *wal, struct event_base *base, wal_durable_cb durable, void *arg)
{
	if (wal->started || !base || !durable)
		return DM_ERR_INVALID;
	if (wal->segment_count > 0 && !wal->replayed) {
		dm_error("wal %s: wal_start before wal_replay checked the existing segments",
		         wal->dir);
		return DM_ERR_INVALID;
	}
	wal->deliver_ev = event_new(base, -1, 0, deliver_cb, wal);
	if (!wal->deliver_ev)
		return DM_ERR_NOMEM;
	wal->durable = durable;
	wal->durable_arg = arg;
	if (pthread_create(&wal->thread, NULL, writer_main, wal) != 0) {
		event_free(wal->deliver_ev);
		wal->deliver_ev = NULL;
		return DM_ERR_NOMEM;
	}
	wal->started = 1;
	return DM_OK;
}

/* Under lock: room for one more entry, compacting delivered ones away when
 * they fill half the array (so compaction stays amortised O(1)). */
static int reserve_entry(struct wal *wal)
{
	if (wal->tail < wal->cap)
		return DM_OK;
	if (wal->head > 0 && wal->head >= wal->cap / 2) {
		size_t shift = wal->head;
		memmove(wal->entries, wal->entries + shift,
		        (wal->tail - shift) * sizeof *wal->entries);
		wal->head = 0;
		wal->done -= shift;
		wal->taken -= shift;
		wal->tail -= shift;
		return DM_OK;
	}
	size_t want = wal->cap ? wal->cap * 2 : 64;
	struct entry *grown = dm_realloc(wal->entries, want * sizeof *grown);
	if (!grown)
		return DM_ERR_NOMEM;
	wal->entries = grown;
	wal->cap = want;
	return DM_OK;
}

int wal_append(struct wal *wal, const void *record, size_t len, void *cookie)
{
	if (atomic_load(&wal->failed))
		return DM_ERR_STATE;
	if (len > WAL_MAX_RECORD)
		return DM_ERR_TOO_LARGE;
	if (!wal->started)
		return DM_ERR_INVALID;
	uint8_t header[WAL_RECORD_HEADER_SIZE];
	put_be32(header, (uint32_t)len);
	/* The checksum is computed outside the lock (invariant 3). */
	put_be32(header + 4, record_crc(header, record, len));
	size_t framed = WAL_RECORD_HEADER_SIZE + len;

	pthread_mutex_lock(&wal->lock);
	int rc = DM_OK;
	if (atomic_load(&wal->failed)) {
		rc = DM_ERR_STATE;
	} else if (wal->stopping) {
		rc = DM_ERR_CLOSED; /* from a durable callback run by wal_close */
	} else if ((rc = reserve_entry(wal)) == DM_OK &&
	           (rc = dm_buf_reserve(&wal->pending, framed)) == DM_OK) {
		dm_buf_append(&wal->pending, header, sizeof header);
		dm_buf_append(&wal->pending, record, len);
		wal->entries[wal->tail++] = (struct entry){cookie, wal->append_segment, framed, 0};
		atomic_fetch_add(&wal->pending_bytes, framed);
		pthread_cond_signal(&wal->wake);
	}
	pthread_mutex_unlock(&wal->lock);
	return rc;
}

int wal_rotate(struct wal *wal, uint64_t *new_segment)
{
	*new_segment = 0;
	pthread_mutex_lock(&wal->lock);
	int rc = DM_OK;
	if (wal->append_segment == UINT64_MAX)
		rc = DM_ERR_INVALID;
	else
		*new_segment = ++wal->append_segment;
	pthread_mutex_unlock(&wal->lock);
	return rc;
}

int wal_release_before(struct wal *wal, uint64_t segment)
{
	pthread_mutex_lock(&wal->lock);
	/* Invariant 8; records of older segments still queued cannot exist,
	 * since segments are committed in order. */
	uint64_t limit = segment < wal->durable_segment ? segment : wal->durable_segment;
	pthread_mutex_unlock(&wal->lock);

	uint64_t *ids;
	size_t count;
	int rc = scan_segments(wal->dir, &ids, &count);
	if (rc != DM_OK)
		return rc;
	size_t removed = 0;
	for (size_t i = 0; i < count && ids[i] < limit; i++) {
		char path[4096];
		rc = segment_path(wal, ids[i], path, sizeof path);
		if (rc != DM_OK)
			break;
		if (unlink(path) != 0 && errno != ENOENT) {
			dm_error("wal %s: cannot remove: %s", path, strerror(errno));
			rc = DM_ERR_IO;
			break;
		}
		removed++;
	}
	dm_free(ids);
	if (removed > 0 && sync_dir(wal, "fsync after release") != DM_OK) {
		/* Wake the writer so it fails what is queued (invariant 5). */
		pthread_mutex_lock(&wal->lock);
		pthread_cond_signal(&wal->wake);
		pthread_mutex_unlock(&wal->lock);
		return DM_ERR_IO;
	}
	return rc;
}

size_t wal_pending_bytes(const struct wal *wal)
{
	return atomic_load(&wal->pending_bytes);
}

int wal_failed(const struct wal *wal)
{
	return atomic_load(&wal->failed) != 0;
}

void wal_set_commit_observer(struct wal *wal,
                             void (*observer)(void *arg, size_t records, size_t bytes,
                                              uint64_t fsync_ns),
                             void *arg)
{
	pthread_mutex_lock(&wal->lock);
	wal->observer = observer;
	wal->observer_arg = arg;
	pthread_mutex_unlock(&wal->lock);
}

void wal_close(struct wal *wal)
{
	if (!wal)
		return;
	if (wal->started) {
		pthread_mutex_lock(&wal->lock);
		wal->stopping = 1;
		pthread_cond_signal(&wal->wake);
		pthread_mutex_unlock(&wal->lock);
		pthread_join(wal->thread, NULL);
		/* The loop may no longer run: report what it has not. */
		deliver(wal);
		event_free(wal->deliver_ev);
		wal->started = 0;
	}
	if (wal->file_fd >= 0)
		wal->io->close(wal->file_fd);
	if (wal->dir_fd >= 0)
		wal->io->close(wal->dir_fd); /* also drops the flock */
	dm_buf_free(&wal->pending);
	dm_buf_free(&wal->writing);
	dm_free(wal->entries);
	dm_free(wal->segments);
	dm_free(wal->dir);
	pthread_cond_destroy(&wal->wake);
	pthread_mutex_destroy(&wal->lock);
	dm_free(wal);
}
