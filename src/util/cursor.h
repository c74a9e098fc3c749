/*
 * cursor.h — a bounds-checked reader over bytes someone else owns.
 *
 * Every parser of network or disk input reads through a cursor: each read
 * checks `n > len - pos` before touching memory, and on failure returns
 * DM_ERR_MALFORMED and leaves pos unchanged. Pointers handed out by
 * dm_cursor_take point into the cursor's buffer: borrowed, valid as long as
 * that buffer is. Nested lengths get their own sub-cursor (dm_cursor_sub), so
 * an inner parser can never read past its own field.
 */
#ifndef DM_CURSOR_H
#define DM_CURSOR_H

#include <stddef.h>
#include <stdint.h>

struct dm_cursor {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

static inline struct dm_cursor dm_cursor_make(const void *bytes, size_t len)
{
	struct dm_cursor cur = {(const uint8_t *)bytes, len, 0};
	return cur;
}

static inline size_t dm_cursor_left(const struct dm_cursor *cur) { return cur->len - cur->pos; }

int dm_cursor_u8(struct dm_cursor *cur, uint8_t *out);
int dm_cursor_be16(struct dm_cursor *cur, uint16_t *out);
int dm_cursor_be32(struct dm_cursor *cur, uint32_t *out);
int dm_cursor_be64(struct dm_cursor *cur, uint64_t *out);
/* Hands out a pointer to the next n bytes and advances past them. */
int dm_cursor_take(struct dm_cursor *cur, size_t n, const uint8_t **out);
/* Splits the next n bytes off into *sub and advances past them. */
int dm_cursor_sub(struct dm_cursor *cur, size_t n, struct dm_cursor *sub);

#endif
