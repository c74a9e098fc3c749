/*
 * failsync.c — a fault for the end-to-end tests, loaded into a real node
 * with LD_PRELOAD: fdatasync of a file whose path ends in $FAILSYNC_SUFFIX
 * fails with EIO, as a full or dying disk makes it fail, once the file
 * $FAILSYNC_FILE exists. The file holds a number: that many more calls are
 * let through first (each one lowers it), then every call fails. Without
 * the file, or for any other path, fdatasync is the real one.
 *
 * Test code only: never part of the node.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 when fd is the file the fault is for. */
static int targeted(int fd)
{
	const char *suffix = getenv("FAILSYNC_SUFFIX");
	char link[64], path[PATH_MAX];
	if (!suffix || !*suffix)
		return 0;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	size_t len = (size_t)n, suffix_len = strlen(suffix);
	return len >= suffix_len && strcmp(path + len - suffix_len, suffix) == 0;
}

/* 1 when this call must fail; lowers the allowance in the file. */
static int must_fail(void)
{
	const char *name = getenv("FAILSYNC_FILE");
	FILE *f = name ? fopen(name, "r+") : NULL;
	if (!f)
		return 0;
	long allowed = 0;
	if (fscanf(f, "%ld", &allowed) != 1)
		allowed = 0;
	int fail = allowed <= 0;
	if (!fail) {
		rewind(f);
		fprintf(f, "%ld\n", allowed - 1);
	}
	fclose(f);
	return fail;
}

int fdatasync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (targeted(fd) && must_fail()) {
		errno = EIO;
		return -1;
	}
	return real ? real(fd) : -1;
}
