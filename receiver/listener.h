/*
 * listener.h: accepts connections for an evhttp server and owns their
 * limits: a cap on concurrent connections (accepting pauses at the cap),
 * a per-request deadline (slowloris), and optional TLS 1.2/1.3 through
 * libevent's OpenSSL bufferevents. The thread of its event_base only, but
 * listener_connections (any thread).
 */
#ifndef PAYHOOK_LISTENER_H
#define PAYHOOK_LISTENER_H

#include <stdint.h>

struct event_base;
struct evhttp;
struct evhttp_request;
struct listener;
typedef struct ssl_ctx_st SSL_CTX;

struct listener_config {
	const char	*addr;		/* host:port; port 0 = any */
	SSL_CTX		*tls;		/* NULL: plain HTTP (borrowed) */
	int		 max_connections;
	int64_t		 request_timeout_ms;
	int		 metrics;	/* register payhook_http_* metrics */
	/* Called with the status of every response written on a connection,
	 * including the ones libevent answers itself (400, 413, 501). */
	void		(*status_fn)(void *arg, int status);
	void		*status_arg;
};

/* An event_base for a loop that runs an evhttp server, with npriorities
 * priorities (1: none); NULL if libevent cannot make one. */
struct event_base *listener_loop_new(int npriorities);
/* Bind addr and feed accepted connections to http. */
struct listener *listener_new(struct event_base *, struct evhttp *,
	    const struct listener_config *, char **cause);
void	listener_free(struct listener *);
/* A whole request arrived on req's connection: stop its deadline until
 * the answer is written (then it restarts for the next request). */
void	listener_request_done(struct listener *, struct evhttp_request *);
/* Stop accepting for good (shutdown). */
void	listener_close(struct listener *);
/* Open connections; any thread. */
int	listener_connections(const struct listener *);
/* "host:port" actually bound. */
const char *listener_address(const struct listener *);

/* A server TLS context (TLS 1.2 and 1.3 only) from PEM files. */
SSL_CTX	*listener_tls_new(const char *cert_file, const char *key_file,
	    char **cause);
void	listener_tls_free(SSL_CTX *);

#endif
