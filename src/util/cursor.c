#include "util/cursor.h"

#include "util/err.h"

int dm_cursor_take(struct dm_cursor *cur, size_t n, const uint8_t **out)
{
	if (n > cur->len - cur->pos)
		return DM_ERR_MALFORMED;
	*out = cur->p + cur->pos;
	cur->pos += n;
	return DM_OK;
}

int dm_cursor_sub(struct dm_cursor *cur, size_t n, struct dm_cursor *sub)
{
	const uint8_t *start;
	int rc = dm_cursor_take(cur, n, &start);
	if (rc == DM_OK)
		*sub = dm_cursor_make(start, n);
	return rc;
}

int dm_cursor_u8(struct dm_cursor *cur, uint8_t *out)
{
	const uint8_t *b;
	int rc = dm_cursor_take(cur, 1, &b);
	if (rc == DM_OK)
		*out = b[0];
	return rc;
}

int dm_cursor_be16(struct dm_cursor *cur, uint16_t *out)
{
	const uint8_t *b;
	int rc = dm_cursor_take(cur, 2, &b);
	if (rc == DM_OK)
		*out = (uint16_t)(b[0] << 8 | b[1]);
	return rc;
}

int dm_cursor_be32(struct dm_cursor *cur, uint32_t *out)
{
	const uint8_t *b;
	int rc = dm_cursor_take(cur, 4, &b);
	if (rc == DM_OK)
		*out = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return rc;
}

int dm_cursor_be64(struct dm_cursor *cur, uint64_t *out)
{
	if (8 > dm_cursor_left(cur))
		return DM_ERR_MALFORMED;
	uint32_t hi, lo;
	dm_cursor_be32(cur, &hi);
	dm_cursor_be32(cur, &lo);
	*out = (uint64_t)hi << 32 | lo;
	return DM_OK;
}
