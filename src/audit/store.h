/*
 * store.h — the audit log on disk: append-only entries and the hashes of
 * their Merkle tree (audit/merkle.h), so that roots and proofs for any past
 * tree size cost O(log n) reads.
 *
 * The log is a directory (the node uses data_dir/audit/) holding two files,
 * entries.log (the entries, each with a CRC32C) and entries.idx (per entry:
 * its offset in entries.log, its leaf hash and the hashes of the perfect
 * subtrees it completes). The byte layout, the invariants and the recovery
 * rules are at the top of store.c.
 *
 * Durability: audit_store_append returns DM_OK only after the entry and its
 * hashes are written and fdatasync'ed (entries.log first, then entries.idx).
 * A failed write or fsync puts the store in its error state: every later
 * append returns DM_ERR_STATE, nothing is retried (a retried fsync can report
 * success for data the kernel already dropped); reads of the entries before
 * the failure go on working. Reopen to recover. An append that failed was
 * never acknowledged, but may still be in the log after the reopen (when
 * both files were written and only a sync failed): the caller must treat
 * its action as not done, and the log may then record an attempt that did
 * not happen, never miss one that did.
 *
 * Recovery (audit_store_open): a torn last append (its entry written wholly
 * or in part, its hashes not or in part) is cut back to the last complete
 * entry; damage anywhere else (a bad checksum or header, a hash or offset
 * that does not match the entries, a missing or truncated file) refuses to
 * open with DM_ERR_MALFORMED and a message naming the file. Open reads and
 * checks every entry and hash (O(n), about 2 ms per 1000 entries of 200
 * bytes): the hashes a checkpoint signs are never trusted unchecked.
 *
 * Threads: a store is used by one thread at a time (the event loop); calls
 * block on disk I/O. A second process opening the same directory gets
 * DM_ERR_STATE.
 *
 * All file I/O goes through struct audit_io so tests can inject failures;
 * open reads the files through read-only mappings.
 */
#ifndef DM_AUDIT_STORE_H
#define DM_AUDIT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit/merkle.h"
#include "util/buf.h"

struct audit_store;

/* The largest entry, in bytes (an entry is a canonical description of one
 * action, never data). */
#define AUDIT_ENTRY_MAX (16u * 1024)
/* Appends past this many entries are refused (keeps every file offset far
 * from overflow). */
#define AUDIT_MAX_ENTRIES ((uint64_t)1 << 48)

/* File names inside the directory. */
#define AUDIT_LOG_FILE "entries.log"
#define AUDIT_IDX_FILE "entries.idx"

struct audit_io {
	int (*open)(const char *path, int flags, mode_t mode);
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t offset);
	ssize_t (*pread)(int fd, void *buf, size_t len, off_t offset);
	int (*fsync)(int fd); /* fdatasync for files, fsync for directories by default */
	int (*ftruncate)(int fd, off_t length);
	int (*close)(int fd);
};

struct audit_store_options {
	const struct audit_io *io; /* NULL: the real system calls */
	/* When not NULL, a failed open also writes "PATH: what is wrong" here
	 * (truncated to err_len); it is always logged. */
	char *err;
	size_t err_len;
};

/* Opens the log in dir, creating the directory (mode 0700) and its files
 * (0600) if missing, and recovers after a crash as described above.
 * options may be NULL. Release with audit_store_close.
 * Errors: DM_ERR_MALFORMED (damage that is not a torn last append; the
 * message names the file and the entry or offset), DM_ERR_IO, DM_ERR_STATE
 * (another process has the log open), DM_ERR_NOMEM, DM_ERR_CRYPTO. */
int audit_store_open(const char *dir, const struct audit_store_options *options,
                     struct audit_store **out);

/* Closes the files. Accepts NULL. */
void audit_store_close(struct audit_store *store);

/* Appends one entry (len bytes, copied; 0 <= len <= AUDIT_ENTRY_MAX) and
 * makes it durable before returning; *index (may be NULL) is its index,
 * i.e. the tree size before it. Errors: DM_ERR_STATE (error state),
 * DM_ERR_TOO_LARGE (len, or AUDIT_MAX_ENTRIES reached), DM_ERR_INVALID (NULL
 * entry with len > 0), DM_ERR_IO (the write or fsync failed: the store is now
 * in its error state), DM_ERR_CRYPTO (hashing failed; nothing was written).
 * On error *index is 0 and the store's size is unchanged. */
int audit_store_append(struct audit_store *store, const void *entry, size_t len, uint64_t *index);

/* The number of entries (the current tree size). */
uint64_t audit_store_size(const struct audit_store *store);

/* 1 when the store is in its error state. */
int audit_store_failed(const struct audit_store *store);

/* Appends the exact bytes of entry index to out; the caller frees out with
 * dm_buf_free. Errors: DM_ERR_NOT_FOUND (index >= size), DM_ERR_IO,
 * DM_ERR_MALFORMED (the file changed since open: the record's checksum or
 * offset no longer holds), DM_ERR_NOMEM. On error out is as it was. */
int audit_store_entry(struct audit_store *store, uint64_t index, struct dm_buf *out);

/* The root of the tree of the first size entries (size 0: the empty root).
 * Errors: DM_ERR_NOT_FOUND (size > audit_store_size), DM_ERR_IO, DM_ERR_CRYPTO. */
int audit_store_root(struct audit_store *store, uint64_t size, uint8_t out[MERKLE_HASH_LEN]);

/* The RFC 9162 inclusion proof of entry index in the tree of size entries:
 * *count hashes into proof, which has room for MERKLE_MAX_PROOF. Errors:
 * DM_ERR_NOT_FOUND (size > audit_store_size), DM_ERR_INVALID (index >=
 * size), DM_ERR_IO, DM_ERR_CRYPTO; *count is 0 on error. */
int audit_store_inclusion(struct audit_store *store, uint64_t index, uint64_t size,
                          uint8_t proof[][MERKLE_HASH_LEN], size_t *count);

/* The RFC 9162 consistency proof between tree sizes old_size and size
 * (0 < old_size <= size): *count hashes into proof (room for
 * MERKLE_MAX_PROOF), none when the sizes are equal. Errors as for
 * audit_store_inclusion (DM_ERR_INVALID: old_size 0 or above size). */
int audit_store_consistency(struct audit_store *store, uint64_t old_size, uint64_t size,
                            uint8_t proof[][MERKLE_HASH_LEN], size_t *count);

#endif
