/*
 * demo_util.h: what `payhook demo` needs to run other programs and talk to
 * them: child processes with output to files or a pipe, a blocking HTTP/1.1
 * client with timeouts (loopback only), free ports. One thread.
 */
#ifndef PAYHOOK_DEMO_UTIL_H
#define PAYHOOK_DEMO_UTIL_H

#include <stddef.h>
#include <sys/types.h>

struct demo_child {
	pid_t	 pid;
	int	 out;		/* read end of stdout when piped, else -1 */
	char	 buf[8192];	/* partial line from out */
	size_t	 have;
};

/* Start argv with stdout to out_file (NULL: a pipe) and stderr to err_file. */
int	demo_spawn(struct demo_child *, char *const argv[], const char *out_file,
	    const char *err_file);
/* Next whole line from the pipe within timeout_ms: 1 line, 0 none, -1 EOF. */
int	demo_pipe_line(struct demo_child *, char *line, size_t len,
	    int timeout_ms);
/* Wait until file holds a line containing needle; copy it. 0 or -1. */
int	demo_file_line(const char *file, const char *needle, char *line,
	    size_t len, int timeout_ms, const struct demo_child *alive);
/* SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status. */
int	demo_stop(struct demo_child *);
/* A currently free loopback port. */
int	demo_free_port(void);
/* POST/GET to 127.0.0.1:port; *body is malloc'd. Status or -1. */
int	demo_http(int port, const char *method, const char *path,
	    const char *const headers[], const char *body, size_t bodylen,
	    char **resp, size_t *resplen, int timeout_ms);

#endif
