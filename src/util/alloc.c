#include "util/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* -1: injection off. Otherwise the number of allocations still allowed. */
static atomic_long allowed = -1;

static int should_fail(void)
{
	long left = atomic_load(&allowed);
	if (left < 0)
		return 0;
	if (left == 0)
		return 1;
	atomic_fetch_sub(&allowed, 1);
	return 0;
}

void dm_alloc_fail_after(long count) { atomic_store(&allowed, count); }

void *dm_malloc(size_t size) { return should_fail() ? NULL : malloc(size ? size : 1); }

void *dm_calloc(size_t count, size_t size)
{
	return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *dm_realloc(void *ptr, size_t size)
{
	return should_fail() ? NULL : realloc(ptr, size ? size : 1);
}

void dm_free(void *ptr) { free(ptr); }

char *dm_strndup(const char *s, size_t len)
{
	char *copy = dm_malloc(len + 1);
	if (copy) {
		memcpy(copy, s, len);
		copy[len] = '\0';
	}
	return copy;
}

char *dm_strdup(const char *s) { return dm_strndup(s, strlen(s)); }
