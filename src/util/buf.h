/*
 * buf.h — a growable byte buffer for building output (packets, blocks, JSON).
 *
 * A zeroed struct dm_buf is an empty buffer. The buffer owns `data`; release
 * it with dm_buf_free (which accepts an empty buffer). Appends either succeed
 * whole or leave the buffer unchanged and return DM_ERR_NOMEM.
 */
#ifndef DM_BUF_H
#define DM_BUF_H

#include <stddef.h>
#include <stdint.h>

struct dm_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

int dm_buf_reserve(struct dm_buf *buf, size_t extra);
int dm_buf_append(struct dm_buf *buf, const void *bytes, size_t len);
int dm_buf_append_u8(struct dm_buf *buf, uint8_t value);
int dm_buf_append_be16(struct dm_buf *buf, uint16_t value);
int dm_buf_append_be32(struct dm_buf *buf, uint32_t value);
int dm_buf_append_be64(struct dm_buf *buf, uint64_t value);
/* printf-style append; the terminating NUL is written but not counted. */
int dm_buf_printf(struct dm_buf *buf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void dm_buf_reset(struct dm_buf *buf); /* len = 0, keeps the memory */
void dm_buf_free(struct dm_buf *buf);  /* releases the memory, buffer empty */

#endif
