/*
 * fault.h: what the LD_PRELOAD shims in tests/fault share: whether a fault
 * is on now, for the calling thread. Header-only, each shim its own copy.
 */
#ifndef PAYHOOK_FAULT_H
#define PAYHOOK_FAULT_H

#include <sys/prctl.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 while the file named by the trigger_env variable exists and, when the
 * thread_env variable is set, the calling thread has that name (Linux
 * keeps 15 characters of it: a longer value never matches). */
static inline int
fault_on(const char *trigger_env, const char *thread_env)
{
	const char *trigger = getenv(trigger_env);
	const char *thread = getenv(thread_env);
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

#endif
