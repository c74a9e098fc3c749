#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/err.h"

int dm_buf_reserve(struct dm_buf *buf, size_t extra)
{
	if (extra <= buf->cap - buf->len)
		return DM_OK;
	if (extra > SIZE_MAX / 2 - buf->len)
		return DM_ERR_NOMEM;
	size_t want = buf->len + extra;
	size_t cap = buf->cap ? buf->cap : 64;
	while (cap < want)
		cap *= 2;
	uint8_t *data = dm_realloc(buf->data, cap);
	if (!data)
		return DM_ERR_NOMEM;
	buf->data = data;
	buf->cap = cap;
	return DM_OK;
}

int dm_buf_append(struct dm_buf *buf, const void *bytes, size_t len)
{
	if (len == 0)
		return DM_OK;
	int rc = dm_buf_reserve(buf, len);
	if (rc)
		return rc;
	memcpy(buf->data + buf->len, bytes, len);
	buf->len += len;
	return DM_OK;
}

int dm_buf_append_u8(struct dm_buf *buf, uint8_t value) { return dm_buf_append(buf, &value, 1); }

int dm_buf_append_be16(struct dm_buf *buf, uint16_t value)
{
	uint8_t b[2] = {(uint8_t)(value >> 8), (uint8_t)value};
	return dm_buf_append(buf, b, sizeof b);
}

int dm_buf_append_be32(struct dm_buf *buf, uint32_t value)
{
	uint8_t b[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8),
			(uint8_t)value};
	return dm_buf_append(buf, b, sizeof b);
}

int dm_buf_append_be64(struct dm_buf *buf, uint64_t value)
{
	int rc = dm_buf_append_be32(buf, (uint32_t)(value >> 32));
	if (rc == DM_OK && (rc = dm_buf_append_be32(buf, (uint32_t)value)) != DM_OK)
		buf->len -= 4;
	return rc;
}

int dm_buf_printf(struct dm_buf *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int need = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (need < 0)
		return DM_ERR_INVALID;
	int rc = dm_buf_reserve(buf, (size_t)need + 1);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf((char *)buf->data + buf->len, (size_t)need + 1, fmt, ap);
	va_end(ap);
	buf->len += (size_t)need;
	return DM_OK;
}

void dm_buf_reset(struct dm_buf *buf) { buf->len = 0; }

void dm_buf_free(struct dm_buf *buf)
{
	dm_free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}
