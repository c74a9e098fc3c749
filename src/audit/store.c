/*
 * store.c — the audit log's files: layout, recovery, appends and reads.
 *
 * FORMAT
 *
 * Two files in the store's directory. All integers are big-endian.
 *
 * entries.log: the entries as appended.
 *
 *	 0  8  magic "DMAUDLOG"
 *	 8  4  format version, 1
 *	12  4  CRC32C of bytes 0..11
 *	16     records, back to back:
 *	         0  4  length L, 0 <= L <= AUDIT_ENTRY_MAX
 *	         4  L  the entry's bytes
 *	       4+L  4  CRC32C of the length field and the L bytes
 *
 * entries.idx: per entry, its place in entries.log and its tree hashes.
 *
 *	 0  8  magic "DMAUDIDX"
 *	 8  4  format version, 1
 *	12  4  CRC32C of bytes 0..11
 *	16     one group per entry i = 0, 1, ..., back to back:
 *	         0   8  offset of record i in entries.log
 *	         8  32  leaf hash of entry i: SHA-256(0x00 || entry)
 *	        40  32  for each level l = 1..t, t = the number of trailing one
 *	                bits of i: the hash of the perfect subtree of 2^l
 *	                leaves that entry i completes, which covers leaves
 *	                [i + 1 - 2^l, i + 1)
 *
 * The idx is the tree stored in post-order: every hash appears once, right
 * after the last leaf it covers. Before group i come i offsets and
 * 2i - popcount(i) hashes (a forest of i leaves has that many nodes), so
 *
 *	group_start(i)      = 16 + 8 i + 32 (2 i - popcount(i))
 *	node_position(l, k) = group_start((k + 1) 2^l - 1) + 8 + 32 l
 *
 * for the perfect subtree of level l starting at leaf k 2^l: that is how a
 * struct merkle_source answers from one pread, and why a root or a proof
 * costs O(log n) reads (audit/merkle.c).
 *
 * One idx file, not one file per tree level: an append then writes two
 * files, not 2 + its number of completed levels, and syncs two.
 *
 * INVARIANTS
 *
 * 1. An append writes and fdatasyncs its record in entries.log before it
 *    writes its group to entries.idx, then fdatasyncs that; only then is
 *    it counted and reported. So after any crash, entries.idx vouches only
 *    for records that were durable: a group whose record is missing or
 *    damaged can only be damage, never a torn append.
 * 2. size, log_end and idx_end describe complete entries only: log_end is
 *    where record `size` goes, idx_end = group_start(size). Reads never
 *    look past them, so the bytes of a failed append are never read.
 * 3. frontier[l], for every set bit l of size, is the hash of the perfect
 *    subtree of level l that ends where the one of the next higher set bit
 *    starts (the right edge of the tree); an append needs nothing else to
 *    compute the hashes it completes, and reads nothing.
 * 4. After a failed write, fsync or truncate the store is in its error
 *    state for good (`failed`): appends refuse with DM_ERR_STATE and no
 *    fsync is retried. Reads of the first `size` entries go on.
 * 5. Open checks everything: every record's length and checksum, every
 *    group's offset and hashes recomputed from the records. The hashes
 *    that a checkpoint signs are never taken unchecked from disk.
 * 6. Recovery cuts entries.idx before entries.log, each cut synced before
 *    the next, so invariant 1 holds at every instant of recovery too.
 *
 * RECOVERY (recover): with c_log the records that parse and check from the
 * start of entries.log, and c_idx the complete groups of entries.idx (every
 * one of which must match its record):
 *
 *	c_idx > c_log              a record the index vouches for is bad or
 *	                           gone: refused (DM_ERR_MALFORMED, entries.log)
 *	c_log > c_idx + 1          the index lost groups: refused (entries.idx)
 *	c_log == c_idx + 1         torn append: record c_idx is cut (its group
 *	                           never became durable, so it was never
 *	                           reported)
 *	c_log == c_idx             size c_idx
 *
 * and any bytes after the last complete record or group (a torn record or
 * group, or garbage) are cut. A file shorter than its header (created but
 * never synced) counts as empty and gets its header again; a complete header
 * that is wrong is refused.
 *
 * STATES
 *
 *	(closed) --audit_store_open--> OPEN --a write/fsync fails--> FAILED
 *	OPEN --audit_store_append ok--> OPEN
 *	OPEN, FAILED --audit_store_close--> (closed)
 */
#include "audit/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bytes.h"
#include "util/alloc.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"

#define HASH MERKLE_HASH_LEN
#define HEADER_SIZE 16u
#define FORMAT_VERSION 1u
#define LOG_MAGIC "DMAUDLOG"
#define IDX_MAGIC "DMAUDIDX"
#define RECORD_OVERHEAD 8u /* length and CRC */
#define OFFSET_SIZE 8u
/* The largest group: an offset, the leaf hash and a hash per level. */
#define MAX_GROUP (OFFSET_SIZE + HASH * 65u)
#define MESSAGE_MAX 512

struct audit_store {
	char *dir;
	char *log_path;
	char *idx_path;
	const struct audit_io *io;
	int dir_fd, log_fd, idx_fd;
	uint64_t size; /* invariant 2 */
	uint64_t log_end;
	uint64_t idx_end;
	uint8_t frontier[64][HASH]; /* invariant 3 */
	int failed;                 /* invariant 4 */
	/* Scratch for one record, appended or read. */
	uint8_t record[RECORD_OVERHEAD + AUDIT_ENTRY_MAX];
};

/* ---- encoding ---------------------------------------------------------- */

static void encode_header(const char *magic, uint8_t out[HEADER_SIZE])
{
	memcpy(out, magic, 8);
	put_be32(out + 8, FORMAT_VERSION);
	put_be32(out + 12, crc32c(0, out, 12));
}

static uint64_t group_start(uint64_t index)
{
	return HEADER_SIZE + OFFSET_SIZE * index +
	       (uint64_t)HASH * (2 * index - (uint64_t)__builtin_popcountll(index));
}

static uint64_t node_position(unsigned level, uint64_t index)
{
	uint64_t last = ((index + 1) << level) - 1;
	return group_start(last) + OFFSET_SIZE + (uint64_t)HASH * level;
}

/* Entry `index`'s group (its record at `offset`) from the frontier of the
 * tree of `index` leaves: the offset, the leaf hash, then one node hash per
 * set low bit of index. *level is the level of the last hash, which becomes
 * frontier[*level] once the entry is counted. */
static int build_group(const uint8_t (*frontier)[HASH], uint64_t index, uint64_t offset,
                       const void *entry, size_t len, uint8_t group[MAX_GROUP], size_t *group_len,
                       unsigned *level)
{
	put_be64(group, offset);
	uint8_t *hash = group + OFFSET_SIZE;
	int rc = merkle_leaf_hash(entry, len, hash);
	unsigned l = 0;
	while (rc == DM_OK && ((index >> l) & 1)) {
		rc = merkle_node_hash(frontier[l], hash, hash + HASH);
		hash += HASH;
		l++;
	}
	*group_len = OFFSET_SIZE + HASH * ((size_t)l + 1);
	*level = l;
	return rc;
}

/* ---- the default I/O table --------------------------------------------- */

static int sys_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	return pwrite(fd, buf, len, offset);
}

static ssize_t sys_pread(int fd, void *buf, size_t len, off_t offset)
{
	return pread(fd, buf, len, offset);
}

/* A file's size is the only metadata a later read needs; a directory's
 * entries are its metadata, so it gets a full fsync. */
static int sys_fsync(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		return fsync(fd);
	return fdatasync(fd);
}

static int sys_ftruncate(int fd, off_t length)
{
	return ftruncate(fd, length);
}

static int sys_close(int fd)
{
	return close(fd);
}

static const struct audit_io default_io = {sys_open,  sys_pwrite,    sys_pread,
                                           sys_fsync, sys_ftruncate, sys_close};

/* ---- I/O helpers ------------------------------------------------------- */

static int write_all(const struct audit_io *io, int fd, const uint8_t *data, size_t len,
                     uint64_t offset)
{
	while (len > 0) {
		ssize_t n = io->pwrite(fd, data, len, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return DM_ERR_IO;
		}
		data += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return DM_OK;
}

/* DM_ERR_IO on a failed read, DM_ERR_MALFORMED when the file ends first. */
static int read_all(const struct audit_io *io, int fd, uint8_t *data, size_t len, uint64_t offset)
{
	while (len > 0) {
		ssize_t n = io->pread(fd, data, len, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return DM_ERR_IO;
		if (n == 0)
			return DM_ERR_MALFORMED;
		data += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return DM_OK;
}

/* Invariant 4: the first failure is logged and is permanent. */
static int enter_error_state(struct audit_store *store, const char *what, const char *path)
{
	if (!store->failed)
		dm_error("audit %s: %s failed: %s; the store refuses appends until reopened", path,
		         what, strerror(errno));
	store->failed = 1;
	return DM_ERR_IO;
}

/* A read after open found the files other than open checked them. */
static int changed_on_disk(const char *path, uint64_t index, const char *what)
{
	dm_error("audit %s: entry %" PRIu64 ": %s; the file changed after it was opened", path,
	         index, what);
	return DM_ERR_MALFORMED;
}

/* ---- open: messages ---------------------------------------------------- */

struct opening {
	struct audit_store *store;
	const struct audit_store_options *options;
};

/* "PATH: message", logged and handed to the caller; returns rc. */
__attribute__((format(printf, 4, 5))) static int report(const struct opening *op, int rc,
                                                        const char *path, const char *fmt, ...)
{
	char message[MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	dm_vformat_at(message, sizeof message, path, 0, fmt, ap);
	va_end(ap);
	dm_error("audit store: %s", message);
	if (op->options && op->options->err && op->options->err_len > 0)
		snprintf(op->options->err, op->options->err_len, "%s", message);
	return rc;
}

/* ---- open: files ------------------------------------------------------- */

static char *join_path(const char *dir, const char *name)
{
	size_t dir_len = strlen(dir), name_len = strlen(name);
	char *path = dm_malloc(dir_len + 1 + name_len + 1);
	if (!path)
		return NULL;
	memcpy(path, dir, dir_len);
	path[dir_len] = '/';
	memcpy(path + dir_len + 1, name, name_len + 1);
	return path;
}

/* A directory just created is durable only once its parent is synced.
 * Every time, not only after mkdir: an earlier open may have created it
 * and failed before the sync. */
static int sync_parent(const struct opening *op)
{
	const struct audit_io *io = op->store->io;
	char *parent = dm_parent_dir(op->store->dir);
	if (!parent)
		return DM_ERR_NOMEM;
	int rc = DM_OK;
	int fd = io->open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0 || io->fsync(fd) != 0)
		rc =
		    report(op, DM_ERR_IO, parent, "cannot sync the directory: %s", strerror(errno));
	if (fd >= 0)
		io->close(fd);
	dm_free(parent);
	return rc;
}

/* Opens an existing file read-write; *fd is -1 when it does not exist. */
static int open_existing(const struct opening *op, const char *path, int *fd)
{
	*fd = op->store->io->open(path, O_RDWR | O_CLOEXEC, 0);
	if (*fd >= 0 || errno == ENOENT)
		return DM_OK;
	return report(op, DM_ERR_IO, path, "cannot open: %s", strerror(errno));
}

struct mapped {
	const uint8_t *bytes; /* NULL when empty */
	uint64_t size;
};

static int map_file(const struct opening *op, int fd, const char *path, struct mapped *out)
{
	*out = (struct mapped){NULL, 0};
	if (fd < 0)
		return DM_OK;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return report(op, DM_ERR_IO, path, "cannot stat: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return report(op, DM_ERR_MALFORMED, path, "not a regular file");
	if (st.st_size == 0)
		return DM_OK;
	if ((uint64_t)st.st_size > SIZE_MAX)
		return report(op, DM_ERR_TOO_LARGE, path, "too large to map");
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return report(op, DM_ERR_IO, path, "cannot map: %s", strerror(errno));
	out->bytes = map;
	out->size = (uint64_t)st.st_size;
	return DM_OK;
}

static void unmap_file(struct mapped *m)
{
	if (m->bytes)
		munmap((void *)m->bytes, (size_t)m->size);
	*m = (struct mapped){NULL, 0};
}

/* 1: an intact header; 0: the file is shorter than a header (created, never
 * synced); DM_ERR_MALFORMED: a complete header that is not ours. */
static int check_header(const struct opening *op, const struct mapped *m, const char *magic,
                        const char *path)
{
	if (m->size < HEADER_SIZE)
		return 0;
	if (memcmp(m->bytes, magic, 8) != 0)
		return report(op, DM_ERR_MALFORMED, path,
		              "not an audit store file (magic is not %s)", magic);
	if (get_be32(m->bytes + 12) != crc32c(0, m->bytes, 12))
		return report(op, DM_ERR_MALFORMED, path, "header checksum mismatch");
	uint32_t version = get_be32(m->bytes + 8);
	if (version != FORMAT_VERSION)
		return report(op, DM_ERR_MALFORMED, path,
		              "format version %" PRIu32 ", this build reads %u", version,
		              FORMAT_VERSION);
	return 1;
}

/* The length of the record at pos when it is complete and checks, else 0
 * (a record is at least RECORD_OVERHEAD bytes). */
static uint64_t record_at(const struct mapped *log, uint64_t pos, const uint8_t **entry,
                          size_t *len)
{
	if (log->size - pos < RECORD_OVERHEAD)
		return 0;
	uint32_t length = get_be32(log->bytes + pos);
	if (length > AUDIT_ENTRY_MAX || length > log->size - pos - RECORD_OVERHEAD)
		return 0;
	if (crc32c(0, log->bytes + pos, 4 + (size_t)length) !=
	    get_be32(log->bytes + pos + 4 + length))
		return 0;
	*entry = log->bytes + pos + 4;
	*len = length;
	return RECORD_OVERHEAD + (uint64_t)length;
}

/* Brings fd (at path, -1: absent) to `keep` bytes, writing the header
 * anew when keep is 0, and syncs it. *created is set when the file had to
 * be created (the directory then needs a sync). */
static int cut_file(const struct opening *op, int *fd, const char *path, const char *magic,
                    uint64_t keep, int *created)
{
	const struct audit_io *io = op->store->io;
	if (*fd < 0) {
		*fd = io->open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (*fd < 0)
			return report(op, DM_ERR_IO, path, "cannot create: %s", strerror(errno));
		*created = 1;
	}
	if (io->ftruncate(*fd, (off_t)keep) != 0)
		return report(op, DM_ERR_IO, path, "cannot truncate: %s", strerror(errno));
	if (keep == 0) {
		uint8_t header[HEADER_SIZE];
		encode_header(magic, header);
		if (write_all(io, *fd, header, sizeof header, 0) != DM_OK)
			return report(op, DM_ERR_IO, path, "cannot write the header: %s",
			              strerror(errno));
	}
	if (io->fsync(*fd) != 0)
		return report(op, DM_ERR_IO, path, "cannot sync: %s", strerror(errno));
	return DM_OK;
}

/* The checks and cuts described under RECOVERY at the top. */
static int recover(const struct opening *op)
{
	struct audit_store *store = op->store;
	struct mapped log, idx = {NULL, 0};
	int rc = map_file(op, store->log_fd, store->log_path, &log);
	if (rc == DM_OK)
		rc = map_file(op, store->idx_fd, store->idx_path, &idx);
	int log_header = rc == DM_OK ? check_header(op, &log, LOG_MAGIC, store->log_path) : rc;
	int idx_header =
	    log_header >= 0 ? check_header(op, &idx, IDX_MAGIC, store->idx_path) : log_header;
	if (log_header < 0 || idx_header < 0) {
		rc = log_header < 0 ? log_header : idx_header;
		goto out;
	}

	/* Every record that checks, each against its group where the idx has
	 * one (invariant 5). */
	uint8_t frontier[64][HASH];
	uint64_t c_log = 0, pos = HEADER_SIZE, last_start = HEADER_SIZE;
	while (log_header && c_log < AUDIT_MAX_ENTRIES) {
		const uint8_t *entry;
		size_t len;
		uint64_t record_len = record_at(&log, pos, &entry, &len);
		if (record_len == 0)
			break;
		uint8_t group[MAX_GROUP];
		size_t group_len;
		unsigned level;
		rc = build_group((const uint8_t(*)[HASH])frontier, c_log, pos, entry, len, group,
		                 &group_len, &level);
		if (rc != DM_OK) {
			rc = report(op, rc, store->log_path, "cannot hash entry %" PRIu64, c_log);
			goto out;
		}
		uint64_t start = group_start(c_log);
		if (idx_header && start + group_len <= idx.size) {
			if (memcmp(idx.bytes + start, group, OFFSET_SIZE) != 0) {
				rc = report(op, DM_ERR_MALFORMED, store->idx_path,
				            "entry %" PRIu64 " (at offset %" PRIu64
				            "): its offset %" PRIu64
				            " does not match " AUDIT_LOG_FILE " (%" PRIu64 ")",
				            c_log, start, get_be64(idx.bytes + start), pos);
				goto out;
			}
			if (memcmp(idx.bytes + start + OFFSET_SIZE, group + OFFSET_SIZE,
			           group_len - OFFSET_SIZE) != 0) {
				rc = report(
				    op, DM_ERR_MALFORMED, store->idx_path,
				    "entry %" PRIu64 " (at offset %" PRIu64
				    "): its hashes do not match the entry in " AUDIT_LOG_FILE,
				    c_log, start);
				goto out;
			}
		}
		memcpy(frontier[level], group + group_len - HASH, HASH);
		last_start = pos;
		pos += record_len;
		c_log++;
	}
	uint64_t c_idx = 0;
	while (idx_header && c_idx < AUDIT_MAX_ENTRIES && group_start(c_idx + 1) <= idx.size)
		c_idx++;

	if (c_idx > c_log) {
		if (!log_header)
			rc = report(op, DM_ERR_MALFORMED, store->log_path,
			            "missing or shorter than its header, but " AUDIT_IDX_FILE
			            " holds %" PRIu64 " entries",
			            c_idx);
		else
			rc = report(op, DM_ERR_MALFORMED, store->log_path,
			            "entry %" PRIu64 " at offset %" PRIu64
			            " is damaged or missing, but " AUDIT_IDX_FILE " holds %" PRIu64
			            " entries",
			            c_log, pos, c_idx);
		goto out;
	}
	if (c_log > c_idx + 1) {
		rc = report(op, DM_ERR_MALFORMED, store->idx_path,
		            "holds %" PRIu64 " entries but " AUDIT_LOG_FILE " %" PRIu64
		            ": groups are missing",
		            c_idx, c_log);
		goto out;
	}
	uint64_t size = c_idx;
	uint64_t log_keep = log_header ? (c_log == size ? pos : last_start) : 0;
	uint64_t idx_keep = idx_header ? group_start(size) : 0;

	/* The frontier of the tree that stays (invariant 3), from the
	 * checked groups. */
	for (unsigned level = 0; level < 64; level++)
		if ((size >> level) & 1)
			memcpy(store->frontier[level],
			       idx.bytes + node_position(level, (size >> level) - 1), HASH);
	uint64_t log_size = log.size, idx_size = idx.size;
	unmap_file(&log);
	unmap_file(&idx);

	/* Invariant 6: the idx first. */
	int created = 0;
	if (idx_keep == 0 || idx_keep != idx_size) {
		if (idx_header && idx_size > idx_keep)
			dm_warn("audit %s: %" PRIu64 " bytes after entry %" PRIu64
			        " (a torn append) cut",
			        store->idx_path, idx_size - idx_keep, size);
		rc = cut_file(op, &store->idx_fd, store->idx_path, IDX_MAGIC, idx_keep, &created);
		if (rc != DM_OK)
			goto out;
	}
	if (log_keep == 0 || log_keep != log_size) {
		if (log_header && log_size > log_keep)
			dm_warn("audit %s: %" PRIu64 " bytes after entry %" PRIu64
			        " (a torn append) cut",
			        store->log_path, log_size - log_keep, size);
		rc = cut_file(op, &store->log_fd, store->log_path, LOG_MAGIC, log_keep, &created);
		if (rc != DM_OK)
			goto out;
	}
	if (created && store->io->fsync(store->dir_fd) != 0) {
		rc = report(op, DM_ERR_IO, store->dir, "cannot sync the directory: %s",
		            strerror(errno));
		goto out;
	}
	store->size = size;
	store->log_end = log_keep ? log_keep : HEADER_SIZE;
	store->idx_end = group_start(size);
	rc = DM_OK;
out:
	unmap_file(&log);
	unmap_file(&idx);
	return rc;
}

int audit_store_open(const char *dir, const struct audit_store_options *options,
                     struct audit_store **out)
{
	*out = NULL;
	if (options && options->err && options->err_len > 0)
		options->err[0] = '\0';
	struct audit_store *store = dm_calloc(1, sizeof *store);
	if (!store)
		return DM_ERR_NOMEM;
	store->dir_fd = store->log_fd = store->idx_fd = -1;
	store->io = options && options->io ? options->io : &default_io;
	struct opening op = {store, options};
	int rc = DM_ERR_NOMEM;
	store->dir = dm_strdup(dir);
	store->log_path = join_path(dir, AUDIT_LOG_FILE);
	store->idx_path = join_path(dir, AUDIT_IDX_FILE);
	if (!store->dir || !store->log_path || !store->idx_path)
		goto fail;

	/* 0700: who did what, readable by the node alone. */
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		rc =
		    report(&op, DM_ERR_IO, dir, "cannot create the directory: %s", strerror(errno));
		goto fail;
	}
	rc = sync_parent(&op);
	if (rc != DM_OK)
		goto fail;
	store->dir_fd = store->io->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (store->dir_fd < 0) {
		rc = report(&op, DM_ERR_IO, dir, "cannot open the directory: %s", strerror(errno));
		goto fail;
	}
	/* Two writers would interleave records. */
	if (flock(store->dir_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = report(&op, errno == EWOULDBLOCK ? DM_ERR_STATE : DM_ERR_IO, dir,
		            "the audit log is in use by another process (%s)", strerror(errno));
		goto fail;
	}
	rc = open_existing(&op, store->log_path, &store->log_fd);
	if (rc == DM_OK)
		rc = open_existing(&op, store->idx_path, &store->idx_fd);
	if (rc == DM_OK)
		rc = recover(&op);
	if (rc != DM_OK)
		goto fail;
	*out = store;
	return DM_OK;
fail:
	audit_store_close(store);
	return rc;
}

void audit_store_close(struct audit_store *store)
{
	if (!store)
		return;
	/* Every append was synced before it returned: nothing to flush. */
	if (store->log_fd >= 0)
		store->io->close(store->log_fd);
	if (store->idx_fd >= 0)
		store->io->close(store->idx_fd);
	if (store->dir_fd >= 0)
		store->io->close(store->dir_fd); /* releases the lock */
	dm_free(store->dir);
	dm_free(store->log_path);
	dm_free(store->idx_path);
	dm_free(store);
}

/* ---- appends ----------------------------------------------------------- */

int audit_store_append(struct audit_store *store, const void *entry, size_t len, uint64_t *index)
{
	if (index)
		*index = 0;
	if (store->failed)
		return DM_ERR_STATE;
	if (len > AUDIT_ENTRY_MAX || store->size >= AUDIT_MAX_ENTRIES)
		return DM_ERR_TOO_LARGE;
	if (!entry && len > 0)
		return DM_ERR_INVALID;
	uint8_t group[MAX_GROUP];
	size_t group_len;
	unsigned level;
	int rc = build_group((const uint8_t(*)[HASH])store->frontier, store->size, store->log_end,
	                     entry, len, group, &group_len, &level);
	if (rc != DM_OK)
		return rc;
	uint8_t *record = store->record;
	put_be32(record, (uint32_t)len);
	if (len > 0)
		memcpy(record + 4, entry, len);
	put_be32(record + 4 + len, crc32c(0, record, 4 + len));
	size_t record_len = RECORD_OVERHEAD + len;

	/* Invariant 1: the record is durable before its group is written. */
	if (write_all(store->io, store->log_fd, record, record_len, store->log_end) != DM_OK)
		return enter_error_state(store, "write", store->log_path);
	if (store->io->fsync(store->log_fd) != 0)
		return enter_error_state(store, "fsync", store->log_path);
	if (write_all(store->io, store->idx_fd, group, group_len, store->idx_end) != DM_OK)
		return enter_error_state(store, "write", store->idx_path);
	if (store->io->fsync(store->idx_fd) != 0)
		return enter_error_state(store, "fsync", store->idx_path);

	memcpy(store->frontier[level], group + group_len - HASH, HASH);
	store->log_end += record_len;
	store->idx_end += group_len;
	if (index)
		*index = store->size;
	store->size++;
	return DM_OK;
}

uint64_t audit_store_size(const struct audit_store *store)
{
	return store->size;
}

int audit_store_failed(const struct audit_store *store)
{
	return store->failed;
}

/* ---- reads ------------------------------------------------------------- */

int audit_store_entry(struct audit_store *store, uint64_t index, struct dm_buf *out)
{
	if (index >= store->size)
		return DM_ERR_NOT_FOUND;
	uint8_t field[OFFSET_SIZE];
	int rc = read_all(store->io, store->idx_fd, field, sizeof field, group_start(index));
	if (rc == DM_ERR_MALFORMED)
		return changed_on_disk(store->idx_path, index, "the index ends early");
	if (rc != DM_OK) {
		dm_error("audit %s: read failed: %s", store->idx_path, strerror(errno));
		return rc;
	}
	uint64_t offset = get_be64(field);
	if (offset < HEADER_SIZE || offset > store->log_end ||
	    store->log_end - offset < RECORD_OVERHEAD)
		return changed_on_disk(store->idx_path, index, "its offset is out of range");
	uint8_t *record = store->record;
	rc = read_all(store->io, store->log_fd, record, 4, offset);
	uint32_t len = rc == DM_OK ? get_be32(record) : 0;
	if (rc == DM_OK &&
	    (len > AUDIT_ENTRY_MAX || len > store->log_end - offset - RECORD_OVERHEAD))
		return changed_on_disk(store->log_path, index, "its length is out of range");
	if (rc == DM_OK)
		rc = read_all(store->io, store->log_fd, record + 4, (size_t)len + 4, offset + 4);
	if (rc == DM_ERR_MALFORMED)
		return changed_on_disk(store->log_path, index, "the log ends early");
	if (rc != DM_OK) {
		dm_error("audit %s: read failed: %s", store->log_path, strerror(errno));
		return rc;
	}
	if (crc32c(0, record, 4 + (size_t)len) != get_be32(record + 4 + len))
		return changed_on_disk(store->log_path, index, "checksum mismatch");
	return dm_buf_append(out, record + 4, len);
}

/* The merkle_source over entries.idx: one pread per perfect subtree. */
static int store_subtree(void *arg, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_LEN])
{
	struct audit_store *store = arg;
	if (level >= 64 || index >= (store->size >> level))
		return DM_ERR_NOT_FOUND;
	int rc = read_all(store->io, store->idx_fd, out, HASH, node_position(level, index));
	if (rc == DM_ERR_MALFORMED)
		return changed_on_disk(store->idx_path, ((index + 1) << level) - 1,
		                       "the index ends early");
	if (rc != DM_OK)
		dm_error("audit %s: read failed: %s", store->idx_path, strerror(errno));
	return rc;
}

static struct merkle_source store_source(struct audit_store *store)
{
	return (struct merkle_source){store_subtree, store};
}

int audit_store_root(struct audit_store *store, uint64_t size, uint8_t out[MERKLE_HASH_LEN])
{
	if (size > store->size)
		return DM_ERR_NOT_FOUND;
	struct merkle_source src = store_source(store);
	return merkle_root(&src, size, out);
}

int audit_store_inclusion(struct audit_store *store, uint64_t index, uint64_t size,
                          uint8_t proof[][MERKLE_HASH_LEN], size_t *count)
{
	*count = 0;
	if (size > store->size)
		return DM_ERR_NOT_FOUND;
	struct merkle_source src = store_source(store);
	return merkle_inclusion_proof(&src, index, size, proof, count);
}

int audit_store_consistency(struct audit_store *store, uint64_t old_size, uint64_t size,
                            uint8_t proof[][MERKLE_HASH_LEN], size_t *count)
{
	*count = 0;
	if (size > store->size)
		return DM_ERR_NOT_FOUND;
	struct merkle_source src = store_source(store);
	return merkle_consistency_proof(&src, old_size, size, proof, count);
}
