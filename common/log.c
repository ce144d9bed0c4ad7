/*
 * log.c: key=value logging to stderr, plus libevent's log and fatal hooks
 * (as tmux log.c does). Any thread; the level is read atomically and each
 * line goes out in a single write(2) so threads never interleave.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"

static _Atomic int log_min = LOG_INFO;
static const char *log_program = "payhook";
static const char *log_names[] = { "debug", "info", "warn", "error" };

static void
log_event_cb(int severity, const char *msg)
{
	enum log_level level;

	switch (severity) {
	case EVENT_LOG_DEBUG:
		level = LOG_DEBUG;
		break;
	case EVENT_LOG_MSG:
		level = LOG_INFO;
		break;
	case EVENT_LOG_WARN:
		level = LOG_WARN;
		break;
	default:
		level = LOG_ERROR;
		break;
	}
	if (log_enabled(level))
		log_msg(level, "libevent", "msg=\"%s\"", msg);
}

static void
log_event_fatal_cb(int err)
{
	log_msg(LOG_ERROR, "libevent_fatal", "code=%d", err);
	abort();
}

void
log_init(enum log_level level, const char *program)
{
	atomic_store(&log_min, (int)level);
	if (program != NULL)
		log_program = program;
	event_set_log_callback(log_event_cb);
	event_set_fatal_callback(log_event_fatal_cb);
}

int
log_level_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof log_names / sizeof log_names[0]; i++) {
		if (strcmp(s, log_names[i]) == 0)
			return (int)i;
	}
	return -1;
}

int
log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_min);
}

void
log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	char line[2048], ts[32];
	va_list ap;
	size_t n;

	if (!log_enabled(level))
		return;
	util_format_time_ms(util_now_ms(), ts, sizeof ts);
	n = (size_t)xsnprintf(line, sizeof line, "ts=%s level=%s prog=%s event=%s",
	    ts, log_names[level], log_program, event);
	if (fmt != NULL && n < sizeof line - 2) {
		line[n++] = ' ';
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof line - n, fmt, ap);
		va_end(ap);
		n = strlen(line);
	}
	if (n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	/* A short write to stderr has nowhere better to be reported. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void
fatalx(int code, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", log_program, msg);
	free(msg);
	exit(code);
}
