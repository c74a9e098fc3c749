/*
 * alloc.h — the one allocation wrapper.
 *
 * All heap memory of domicile goes through these so that tests can make the
 * Nth allocation fail (dm_alloc_fail_after) and check that every caller
 * recovers. Memory from dm_malloc/dm_calloc/dm_realloc is freed with dm_free,
 * which accepts NULL. dm_strdup/dm_strndup return NUL-terminated copies the
 * caller frees with dm_free.
 */
#ifndef DM_ALLOC_H
#define DM_ALLOC_H

#include <stddef.h>

void *dm_malloc(size_t size);
void *dm_calloc(size_t count, size_t size);
void *dm_realloc(void *ptr, size_t size);
void dm_free(void *ptr);
char *dm_strdup(const char *s);
char *dm_strndup(const char *s, size_t len);

/* Tests only: the allocation after `count` more succeed fails, and every one
 * after it, until dm_alloc_fail_after(-1) turns failure injection off. */
void dm_alloc_fail_after(long count);

#endif
