/*
 * fsyncfail.c: fault injection for the black-box tests, loaded into the
 * real payhook with LD_PRELOAD. While the file named by
 * PAYHOOK_FSYNCFAIL_TRIGGER exists, fdatasync() and fsync() of a file
 * whose name ends in PAYHOOK_FSYNCFAIL_SUFFIX ("-wal" if unset: the WAL;
 * "journal.db" for the database file) fail with EIO without syncing, as a
 * disk that lost the write would make them fail. With
 * PAYHOOK_FSYNCFAIL_THREAD set, only the calls made by the thread of that
 * name fail (payhook names its threads: "ph-sync" is the WAL syncer), so a
 * test can choose which of payhook's fsyncs sees the failure first. Linux
 * keeps 15 characters of a thread's name: a longer value never matches.
 * With PAYHOOK_FSYNCFAIL_DELAY_MS set the same calls do not fail: they
 * take that much longer, as on a stalling disk, and then sync. Everything
 * else is passed through.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"

static int
fsyncfail_now(int fd)
{
	const char *suffix = getenv("PAYHOOK_FSYNCFAIL_SUFFIX");
	char link[64], path[4096];
	size_t len;
	ssize_t n;

	if (!fault_on("PAYHOOK_FSYNCFAIL_TRIGGER", "PAYHOOK_FSYNCFAIL_THREAD"))
		return 0;
	if (suffix == NULL || *suffix == '\0')
		suffix = "-wal";
	len = strlen(suffix);
	if (snprintf(link, sizeof link, "/proc/self/fd/%d", fd) < 0)
		return 0;
	n = readlink(link, path, sizeof path - 1);
	if (n < 0 || (size_t)n < len)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - len, suffix) == 0;
}

/* The call through to libc's own name, unless it must fail now. */
static int
fsyncfail_call(int fd, const char *name, int (**real)(int))
{
	const char *delay = getenv("PAYHOOK_FSYNCFAIL_DELAY_MS");

	if (fsyncfail_now(fd)) {
		if (delay == NULL || *delay == '\0') {
			errno = EIO;
			return -1;
		}
		unsigned long ms = strtoul(delay, NULL, 10);
		struct timespec ts = { (time_t)(ms / 1000),
		    (long)(ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	if (*real == NULL)
		*(void **)real = dlsym(RTLD_NEXT, name);
	return (*real)(fd);
}

int
fdatasync(int fd)
{
	static int (*real)(int);

	return fsyncfail_call(fd, "fdatasync", &real);
}

int
fsync(int fd)
{
	static int (*real)(int);

	return fsyncfail_call(fd, "fsync", &real);
}
