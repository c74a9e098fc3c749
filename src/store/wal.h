/*
 * wal.h — the write-ahead log: records are durable (written and fdatasync'ed)
 * before anyone is told they are; that is what makes a PUBACK a promise.
 *
 * Records are opaque bytes to the log (the engine decides what they hold).
 * wal_append queues a record and returns at once; a writer thread takes
 * everything queued, writes it in one go and fsyncs once (group commit), then
 * reports the batch of cookies as durable through the `durable` callback,
 * which runs on the event loop thread of `base` (libevent must have been set
 * up with evthread_use_pthreads() before `base` was created).
 *
 * The log is a directory of segment files (wal-<16 hex digits>.log). The
 * engine rotates to a new segment when it freezes its memtable and, once the
 * frozen data is safely in the store, releases the segments before it.
 * Replay reads every segment in order; a torn or corrupt record at the end of
 * the last segment is taken as the end of the log (it was never
 * acknowledged) and cut off; corruption anywhere else refuses to open.
 *
 * A failed write or fsync puts the log in its error state: every pending and
 * later append is reported with DM_ERR_STATE and never retried (a retried
 * fsync can report success for data the kernel already dropped).
 *
 * All file I/O goes through struct wal_io so tests can inject failures.
 */
#ifndef DM_WAL_H
#define DM_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct wal;

#define WAL_MAX_RECORD (16u << 20)

/* On-disk framing (byte layout in wal.c): a segment starts with a header of
 * WAL_SEGMENT_HEADER_SIZE bytes; every record is WAL_RECORD_HEADER_SIZE bytes
 * of length and CRC32C followed by its payload. */
#define WAL_SEGMENT_HEADER_SIZE 24u
#define WAL_RECORD_HEADER_SIZE 8u

struct wal_io {
	int (*open)(const char *path, int flags, mode_t mode);
	ssize_t (*write)(int fd, const void *buf, size_t len);
	int (*fsync)(int fd); /* fdatasync by default */
	int (*close)(int fd);
};

/* Called on the loop thread with the cookies that became durable (status
 * DM_OK) or that failed (DM_ERR_STATE), in append order. The array is
 * borrowed for the duration of the call. */
typedef void (*wal_durable_cb)(void *arg, void *const *cookies, size_t count, int status);

struct wal_options {
	const struct wal_io *io; /* NULL: the real system calls */
	size_t max_batch_bytes;  /* bytes written per group commit at most; default 8 MiB */
};

/* Opens (creating if needed, mode 0700) the log in `dir` and locks it
 * against a second opener. Does not replay: call wal_replay first, then
 * wal_start. Errors: DM_ERR_IO (see the log), DM_ERR_STATE (another process
 * holds the log), DM_ERR_NOMEM. Release with wal_close. */
int wal_open(const char *dir, const struct wal_options *options, struct wal **out);

/* Calls fn for every intact record, in order, before any append. fn's
 * record bytes are borrowed for the call. A non-zero return from fn stops the
 * replay and is returned. Cuts a torn tail off the last segment (and deletes a
 * last segment whose header never became durable). Errors: DM_ERR_MALFORMED
 * (corruption before the last segment's tail; the log names file and offset),
 * DM_ERR_IO, DM_ERR_INVALID (called twice or after wal_start). */
int wal_replay(struct wal *wal, int (*fn)(void *arg, const uint8_t *record, size_t len),
	       void *arg);

/* Starts the writer thread; durable callbacks run on base's loop. Refuses
 * (DM_ERR_INVALID) when the directory held segments and wal_replay has not
 * run to completion: appending after an unchecked torn tail would turn that
 * tail into corruption in the middle of the log. */
int wal_start(struct wal *wal, struct event_base *base, wal_durable_cb durable, void *arg);

/* Queues a record (copied). Loop thread only. Returns DM_ERR_STATE when the
 * log is in its error state, DM_ERR_TOO_LARGE above WAL_MAX_RECORD,
 * DM_ERR_NOMEM, DM_ERR_INVALID before wal_start, DM_ERR_CLOSED from a durable
 * callback run by wal_close. A cookie whose append
 * returned an error is never reported; every accepted cookie is reported
 * exactly once. */
int wal_append(struct wal *wal, const void *record, size_t len, void *cookie);

/* Starts a new segment for the appends that follow and returns the id of
 * the new segment. Loop thread only. Ids increase strictly but may have gaps
 * (the file is created by the first commit that writes to it). */
int wal_rotate(struct wal *wal, uint64_t *new_segment);
/* Deletes every segment older than `segment` (their records are in the store).
 * Never deletes the newest segment known to be durable, so the directory
 * always remembers the highest id; such segments go on a later call. Does
 * blocking I/O (unlink, directory fsync) on the calling thread. A failed
 * directory fsync puts the log in its error state. Errors: DM_ERR_IO. */
int wal_release_before(struct wal *wal, uint64_t segment);

/* Bytes queued but not yet durable, for back-pressure and metrics. */
size_t wal_pending_bytes(const struct wal *wal);
/* 1 when in the error state. */
int wal_failed(const struct wal *wal);

/* Stops the writer after it has written and synced everything queued, then
 * closes the files. Cookies that were queued but not yet reported are
 * reported (with their real status) by calling `durable` directly from
 * wal_close, since the loop may no longer run. Accepts NULL. Must not be
 * called from inside the durable callback. */
void wal_close(struct wal *wal);

/* fsync/commit latency observer for metrics: called on the writer thread
 * after each group commit with its size (records, framed bytes) and the time
 * spent in fsync (the file's, plus the directory's for a new segment). May be
 * NULL. */
void wal_set_commit_observer(struct wal *wal,
			     void (*observer)(void *arg, size_t records, size_t bytes,
					      uint64_t fsync_ns),
			     void *arg);


/* Writes the header of segment `segment` into out (for tests and fuzzers
 * that build segment files by hand). */
void wal_encode_segment_header(uint64_t segment, uint8_t out[WAL_SEGMENT_HEADER_SIZE]);

#endif
