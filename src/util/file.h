/*
 * file.h — reading a small file (a config, a catalog, a topology) whole, and
 * the "FILE:LINE: what is wrong" form of the messages about it.
 */
#ifndef DM_FILE_H
#define DM_FILE_H

#include <stdarg.h>
#include <stddef.h>

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

/* Writes "NAME:LINE: message" (or "NAME: message" when line is 0) into err,
 * truncated to err_len; err may be NULL when err_len is 0. */
void dm_vformat_at(char *err, size_t err_len, const char *name, size_t line, const char *fmt,
		   va_list ap);

#endif
