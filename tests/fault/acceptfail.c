/*
 * acceptfail.c: fault injection for the black-box tests, loaded into the
 * real payhook with LD_PRELOAD. While the file named by
 * PAYHOOK_ACCEPTFAIL_TRIGGER exists, accept() and accept4() called by the
 * thread named PAYHOOK_ACCEPTFAIL_THREAD (every thread when unset) fail
 * with EMFILE, as they do once a process is out of descriptors; the
 * connection stays in the kernel's queue. Everything else is passed
 * through.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/socket.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"

static int
acceptfail_now(void)
{
	return fault_on("PAYHOOK_ACCEPTFAIL_TRIGGER",
	    "PAYHOOK_ACCEPTFAIL_THREAD");
}

int
accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);

	if (acceptfail_now()) {
		errno = EMFILE;
		return -1;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "accept4");
	return real(fd, sa, len, flags);
}

int
accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);

	if (acceptfail_now()) {
		errno = EMFILE;
		return -1;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "accept");
	return real(fd, sa, len);
}
