#include "util/file.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/err.h"
#include "util/log.h"

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

int dm_open_secret(const char *path, const char *what, int quiet_if_missing, int *fd)
{
	*fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0) {
		int err = errno;
		if (err != ENOENT || !quiet_if_missing)
			dm_error("%s: cannot open %s: %s", path, what, strerror(err));
		return err == ENOENT ? DM_ERR_NOT_FOUND
		       : err == ELOOP || err == EACCES ? DM_ERR_DENIED
						       : DM_ERR_IO;
	}
	struct stat st;
	int rc = DM_OK;
	if (fstat(*fd, &st) != 0) {
		dm_error("%s: cannot stat %s: %s", path, what, strerror(errno));
		rc = DM_ERR_IO;
	} else if (!S_ISREG(st.st_mode)) {
		dm_error("%s: %s must be a regular file", path, what);
		rc = DM_ERR_DENIED;
	} else if ((st.st_mode & 077) != 0) {
		dm_error("%s: mode %04o is too open for %s; it must be 0600 (chmod 600)", path,
			 (unsigned)(st.st_mode & 07777), what);
		rc = DM_ERR_DENIED;
	}
	if (rc) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

int dm_read_secret(const char *path, const char *what, int quiet_if_missing, void *out,
		   size_t len)
{
	int fd;
	int rc = dm_open_secret(path, what, quiet_if_missing, &fd);
	if (rc)
		return rc;
	uint8_t extra;
	ssize_t got = read(fd, out, len);
	if (got < 0) {
		dm_error("%s: cannot read %s: %s", path, what, strerror(errno));
		rc = DM_ERR_IO;
	} else if ((size_t)got != len || read(fd, &extra, 1) != 0) {
		dm_error("%s: %s must be exactly %zu bytes", path, what, len);
		rc = DM_ERR_INVALID;
	}
	close(fd);
	if (rc)
		OPENSSL_cleanse(out, len);
	return rc;
}

char *dm_parent_dir(const char *path)
{
	char *parent = dm_strdup(path);
	if (!parent)
		return NULL;
	size_t len = strlen(parent);
	while (len > 1 && parent[len - 1] == '/')
		parent[--len] = '\0';
	char *slash = strrchr(parent, '/');
	if (!slash)
		strcpy(parent, ".");
	else if (slash == parent)
		parent[1] = '\0';
	else
		*slash = '\0';
	return parent;
}

int dm_write_secret(const char *path, const char *what, int quiet_if_exists, const void *bytes,
		    size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int err = errno;
		if (err != EEXIST || !quiet_if_exists)
			dm_error("%s: cannot create %s: %s", path, what, strerror(err));
		return err == EEXIST ? DM_ERR_EXISTS : DM_ERR_IO;
	}
	int rc = DM_OK;
	/* fchmod: the umask may have cleared bits of 0600, never added any, but
	 * a secret the node cannot read back is no use either. */
	if (fchmod(fd, 0600) != 0 || dm_write_all(fd, bytes, len) != DM_OK || fsync(fd) != 0) {
		dm_error("%s: cannot write %s: %s", path, what, strerror(errno));
		rc = DM_ERR_IO;
	}
	if (close(fd) != 0 && rc == DM_OK) {
		dm_error("%s: cannot write %s: %s", path, what, strerror(errno));
		rc = DM_ERR_IO;
	}
	if (rc != DM_OK)
		unlink(path);
	return rc;
}

int dm_write_all(int fd, const void *bytes, size_t len)
{
	return dm_write_all_with(write, fd, bytes, len);
}

int dm_write_all_with(ssize_t (*write_fn)(int fd, const void *buf, size_t len), int fd,
		      const void *bytes, size_t len)
{
	const char *p = bytes;
	while (len > 0) {
		ssize_t n = write_fn(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return DM_ERR_IO;
		}
		p += n;
		len -= (size_t)n;
	}
	return DM_OK;
}

int dm_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = DM_OK;
	if (fd < 0 || fsync(fd) != 0) {
		dm_error("%s: cannot fsync the directory: %s", dir, strerror(errno));
		rc = DM_ERR_IO;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

void dm_format_err(char *err, size_t err_len, const char *fmt, ...)
{
	if (!err || err_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}
