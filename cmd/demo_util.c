/*
 * demo_util.c: child processes and a small blocking HTTP/1.1 client for
 * `payhook demo`. One thread; every wait has a timeout; only 127.0.0.1.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/demo_util.h"
#include "common/util.h"
#include "common/xmalloc.h"

int
demo_spawn(struct demo_child *c, char *const argv[], const char *out_file,
    const char *err_file)
{
	int fds[2] = { -1, -1 }, fd;

	memset(c, 0, sizeof *c);
	c->out = -1;
	if (out_file == NULL && pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	if ((c->pid = fork()) < 0)
		return -1;
	if (c->pid == 0) {
		if (out_file != NULL)
			fd = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		else
			fd = fds[1];
		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(127);
		fd = open(err_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
			_exit(127);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	if (out_file == NULL) {
		close(fds[1]);
		c->out = fds[0];
	}
	return 0;
}

int
demo_pipe_line(struct demo_child *c, char *line, size_t len, int timeout_ms)
{
	struct pollfd pfd;
	char *nl;
	size_t n;
	ssize_t r;

	for (;;) {
		if ((nl = memchr(c->buf, '\n', c->have)) != NULL) {
			n = (size_t)(nl - c->buf);
			xsnprintf(line, len, "%.*s", (int)n, c->buf);
			memmove(c->buf, nl + 1, c->have - n - 1);
			c->have -= n + 1;
			return 1;
		}
		if (c->have == sizeof c->buf)
			c->have = 0;	/* an absurd line: drop it */
		if (c->out < 0)
			return -1;
		pfd.fd = c->out;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return 0;
		r = read(c->out, c->buf + c->have, sizeof c->buf - c->have);
		if (r <= 0) {
			close(c->out);
			c->out = -1;
			return -1;
		}
		c->have += (size_t)r;
		timeout_ms = 0;
	}
}

int
demo_file_line(const char *file, const char *needle, char *line, size_t len,
    int timeout_ms, const struct demo_child *alive)
{
	int64_t end = util_mono_ms() + timeout_ms;
	char buf[4096];
	FILE *f;

	while (util_mono_ms() < end) {
		if ((f = fopen(file, "r")) != NULL) {
			while (fgets(buf, sizeof buf, f) != NULL) {
				if (strstr(buf, needle) != NULL) {
					buf[strcspn(buf, "\n")] = '\0';
					xsnprintf(line, len, "%s", buf);
					fclose(f);
					return 0;
				}
			}
			fclose(f);
		}
		if (alive != NULL && waitpid(alive->pid, NULL, WNOHANG) != 0)
			return -1;
		usleep(20 * 1000);
	}
	return -1;
}

int
demo_stop(struct demo_child *c)
{
	int status = 0, i;

	if (c->pid <= 0)
		return 0;
	kill(c->pid, SIGTERM);
	for (i = 0; i < 250; i++) {
		if (waitpid(c->pid, &status, WNOHANG) == c->pid)
			goto done;
		usleep(20 * 1000);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &status, 0);
done:
	if (c->out >= 0)
		close(c->out);
	c->out = -1;
	c->pid = 0;
	return status;
}

int
demo_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int fd, port = -1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int
demo_connect(int port, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct sockaddr_in sa;
	int fd;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
demo_send_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = send(fd, p, len, MSG_NOSIGNAL)) <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
demo_http(int port, const char *method, const char *path,
    const char *const headers[], const char *body, size_t bodylen,
    char **resp, size_t *resplen, int timeout_ms)
{
	char *head, *buf = NULL, *sep;
	size_t have = 0, cap = 0, i;
	int fd, status = -1;
	ssize_t n;

	*resp = NULL;
	*resplen = 0;
	if ((fd = demo_connect(port, timeout_ms)) < 0)
		return -1;
	head = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Connection: close\r\nContent-Length: %zu\r\n", method, path, port,
	    bodylen);
	for (i = 0; headers != NULL && headers[i] != NULL; i++) {
		char *h = xasprintf("%s%s\r\n", head, headers[i]);

		free(head);
		head = h;
	}
	{
		char *h = xasprintf("%s\r\n", head);

		free(head);
		head = h;
	}
	if (demo_send_all(fd, head, strlen(head)) != 0 ||
	    (bodylen > 0 && demo_send_all(fd, body, bodylen) != 0))
		goto out;
	for (;;) {
		if (have + 4096 + 1 > cap) {
			cap = cap == 0 ? 8192 : cap * 2;
			buf = xrealloc(buf, cap);
		}
		if ((n = recv(fd, buf + have, cap - have - 1, 0)) < 0)
			goto out;
		if (n == 0)
			break;
		have += (size_t)n;
	}
	buf[have] = '\0';
	if (have < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
		goto out;
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	if ((sep = strstr(buf, "\r\n\r\n")) != NULL) {
		*resplen = have - (size_t)(sep + 4 - buf);
		*resp = xmalloc(*resplen + 1);
		memcpy(*resp, sep + 4, *resplen);
		(*resp)[*resplen] = '\0';
	}
out:
	free(head);
	free(buf);
	close(fd);
	return status;
}
