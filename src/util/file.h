/*
 * file.h — reading a small file (a config, a catalog, a topology) whole.
 */
#ifndef DM_FILE_H
#define DM_FILE_H

#include <stddef.h>

#include "util/buf.h"

/* Appends the contents of path to out. DM_ERR_IO (cannot open or read),
 * DM_ERR_TOO_LARGE (more than max bytes) or DM_ERR_NOMEM, with
 * "PATH: what is wrong" in err; on failure out is as it was. The caller
 * frees out with dm_buf_free. */
int dm_read_file(const char *path, size_t max, struct dm_buf *out, char *err, size_t err_len);

#endif
