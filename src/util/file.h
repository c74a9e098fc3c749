/*
 * file.h — reading a small file (a config, a catalog, a topology) whole,
 * the "FILE:LINE: what is wrong" form of the messages about it, and reading
 * a secret (a key, a PIN) only from a file no one else may read.
 */
#ifndef DM_FILE_H
#define DM_FILE_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"

/* Appends the contents of path to out. DM_ERR_IO (cannot open or read),
 * DM_ERR_TOO_LARGE (more than max bytes) or DM_ERR_NOMEM, with
 * "PATH: what is wrong" in err; on failure out is as it was. The caller
 * frees out with dm_buf_free. */
int dm_read_file(const char *path, size_t max, struct dm_buf *out, char *err, size_t err_len);

/* The lines of a text file in memory, as config-like files are read: a
 * leading UTF-8 byte-order mark is skipped, and "\n" or "\r\n" ends a line.
 * Lines handed out point into text: borrowed, valid as long as text is. */
struct dm_lines {
	const char *text;
	size_t len;
	size_t pos;
};

void dm_lines_init(struct dm_lines *lines, const char *text, size_t len);
/* 1 and the next line (without its end), or 0 at the end of the text. */
int dm_lines_next(struct dm_lines *lines, const char **line, size_t *line_len);

/* Opens a file that holds a secret, for reading: not through a symlink, a
 * regular file, with no permission for group or others. `what` names it in
 * the messages ("the key file"). Returns DM_OK with the descriptor in *fd
 * (the caller closes it); DM_ERR_NOT_FOUND when there is no such file
 * (logged unless quiet_if_missing); DM_ERR_DENIED (a symlink, not a
 * regular file, a mode open to others); DM_ERR_IO. Refusals are logged with
 * the path. */
int dm_open_secret(const char *path, const char *what, int quiet_if_missing, int *fd);

/* Reads a secret of exactly len bytes from path, opened as dm_open_secret
 * does. DM_ERR_INVALID when the file is not exactly len bytes; otherwise
 * as dm_open_secret. On failure out[0..len) is wiped. */
int dm_read_secret(const char *path, const char *what, int quiet_if_missing, void *out,
		   size_t len);

/* Creates path holding bytes[0..len) as a secret: O_EXCL (never replaces a
 * file, never follows a symlink), mode 0600, written and fsynced; on any
 * failure the file is removed. The directory is not synced (dm_fsync_dir).
 * Returns DM_OK; DM_ERR_EXISTS (logged unless quiet_if_exists); DM_ERR_IO. */
int dm_write_secret(const char *path, const char *what, int quiet_if_exists, const void *bytes,
		    size_t len);

/* Writes all of bytes[0..len) to fd, through short writes and EINTR.
 * DM_OK, or DM_ERR_IO with errno set by the write that failed (EIO for a
 * write that wrote nothing). dm_write_all_with does it with write_fn in
 * the place of write(2) (a module's I/O table, for fault injection). */
int dm_write_all(int fd, const void *bytes, size_t len);
int dm_write_all_with(ssize_t (*write_fn)(int fd, const void *buf, size_t len), int fd,
		      const void *bytes, size_t len);

/* fsyncs a directory, so that a file created or renamed in it survives a
 * power loss. DM_OK or DM_ERR_IO (logged). */
int dm_fsync_dir(const char *dir);

/* The directory that holds path, as a new string the caller frees with
 * dm_free ("." for a bare name, "/" for a child of the root; trailing
 * slashes of path are ignored). NULL when memory ran out. */
char *dm_parent_dir(const char *path);

/* Writes a message into err, truncated to err_len; nothing when err is NULL
 * or err_len 0 (the callers' optional message buffers). */
void dm_format_err(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes "NAME:LINE: message" (or "NAME: message" when line is 0) into err,
 * truncated to err_len; err may be NULL when err_len is 0. */
void dm_vformat_at(char *err, size_t err_len, const char *name, size_t line, const char *fmt,
		   va_list ap);

#endif
