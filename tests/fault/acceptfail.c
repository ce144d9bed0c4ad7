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
#include <sys/prctl.h>
#include <sys/socket.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
acceptfail_now(void)
{
	const char *trigger = getenv("PAYHOOK_ACCEPTFAIL_TRIGGER");
	const char *thread = getenv("PAYHOOK_ACCEPTFAIL_THREAD");
	char name[17];

	if (trigger == NULL || access(trigger, F_OK) != 0)
		return 0;
	if (thread != NULL && *thread != '\0') {
		memset(name, 0, sizeof name);
		if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0 ||
		    strcmp(name, thread) != 0)
			return 0;
	}
	return 1;
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
