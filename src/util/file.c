#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"

int dm_read_file(const char *path, size_t max, struct dm_buf *out, char *err, size_t err_len)
{
	size_t start = out->len;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
		return DM_ERR_IO;
	}
	int rc = DM_OK;
	for (;;) {
		/* Read one byte past the limit to tell "at the limit" from "over". */
		if (out->len - start > max) {
			snprintf(err, err_len, "%s: file is larger than %zu bytes", path, max);
			rc = DM_ERR_TOO_LARGE;
			break;
		}
		size_t want = max + 1 - (out->len - start);
		if (want > 65536)
			want = 65536;
		if (dm_buf_reserve(out, want) != DM_OK) {
			snprintf(err, err_len, "%s: out of memory reading the file", path);
			rc = DM_ERR_NOMEM;
			break;
		}
		ssize_t got = read(fd, out->data + out->len, want);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
			rc = DM_ERR_IO;
			break;
		}
		if (got == 0)
			break;
		out->len += (size_t)got;
	}
	close(fd);
	if (rc)
		out->len = start;
	return rc;
}

void dm_vformat_at(char *err, size_t err_len, const char *name, size_t line, const char *fmt,
		   va_list ap)
{
	if (!err || err_len == 0)
		return;
	int used = line ? snprintf(err, err_len, "%s:%zu: ", name, line)
			: snprintf(err, err_len, "%s: ", name);
	if (used >= 0 && (size_t)used < err_len)
		vsnprintf(err + used, err_len - (size_t)used, fmt, ap);
}

void dm_lines_init(struct dm_lines *lines, const char *text, size_t len)
{
	lines->text = text;
	lines->len = len;
	lines->pos = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
}

int dm_lines_next(struct dm_lines *lines, const char **line, size_t *line_len)
{
	if (lines->pos >= lines->len)
		return 0;
	const char *start = lines->text + lines->pos;
	const char *newline = memchr(start, '\n', lines->len - lines->pos);
	size_t n = newline ? (size_t)(newline - start) : lines->len - lines->pos;
	lines->pos += n + (newline != NULL);
	if (newline && n > 0 && start[n - 1] == '\r')
		n--;
	*line = start;
	*line_len = n;
	return 1;
}
