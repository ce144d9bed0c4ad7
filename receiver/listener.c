/*
 * listener.c: our own evconnlistener in front of evhttp, because libevent
 * 2.1's evhttp has neither a connection cap nor a whole-request deadline.
 * evhttp asks us for each connection's bufferevent; right after, we hook
 * its close callback to learn when it is freed. (A filter bufferevent would
 * also tell us, but 2.1's filter stalls evhttp's replies.) Runs on the
 * thread of its event_base (the public listener's, or the main thread's for
 * the admin one); listener_connections may be read from any thread. Never
 * touches a connection after its close callback ran.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/xmalloc.h"
#include "receiver/listener.h"

struct listener_conn {
	struct listener		*l;
	struct bufferevent	*bev;		/* the one evhttp holds */
	struct event		*deadline;
	struct event		*init;
	struct evbuffer_cb_entry *input_cb;
	int			 got;		/* bytes since the deadline
						   started: a request begun */
};

struct listener {
	struct event_base	*base;
	struct evhttp		*http;
	struct evconnlistener	*evl;
	SSL_CTX			*tls;
	int			 max;
	struct timeval		 timeout;
	char			 address[300];

	/* Open connections by bufferevent pointer (linear probing). */
	struct listener_conn	**table;
	size_t			 cap;		/* power of two, > 2 * max */
	_Atomic int		 active;	/* read by any thread */
	int			 paused;
	int			 closed;
	int			 bound;		/* evl handed to evhttp */
	struct evhttp_bound_socket *sock;	/* evhttp's handle of evl */

	struct metric_counter	 m_accepted;
	struct metric_counter	 m_timed_out;
	struct metric_counter	 m_paused;
	struct metric_counter	 m_accept_errors;
	struct event		*backoff;
	void			(*status_fn)(void *, int);
	void			*status_arg;
};

/* Every listener, for listener_of() below (its comment says why). */
#define LISTENER_MAX	8
static pthread_mutex_t	 listener_all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct listener	*listener_all[LISTENER_MAX];

static size_t
listener_slot(const struct listener *l, const void *bev)
{
	uintptr_t h = (uintptr_t)bev;

	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ULL;
	return (size_t)(h >> 7) & (l->cap - 1);
}

static void
listener_table_put(struct listener *l, struct listener_conn *c)
{
	size_t i = listener_slot(l, c->bev);

	while (l->table[i] != NULL)
		i = (i + 1) & (l->cap - 1);
	l->table[i] = c;
}

static struct listener_conn *
listener_table_get(const struct listener *l, const void *bev)
{
	size_t i = listener_slot(l, bev);

	while (l->table[i] != NULL) {
		if (l->table[i]->bev == bev)
			return l->table[i];
		i = (i + 1) & (l->cap - 1);
	}
	return NULL;
}

/* Remove with backward-shift deletion, so lookups need no tombstones. */
static void
listener_table_del(struct listener *l, const struct listener_conn *c)
{
	size_t i = listener_slot(l, c->bev), j, k;

	while (l->table[i] != c) {
		if (l->table[i] == NULL)
			return;
		i = (i + 1) & (l->cap - 1);
	}
	l->table[i] = NULL;
	for (j = (i + 1) & (l->cap - 1); l->table[j] != NULL;
	    j = (j + 1) & (l->cap - 1)) {
		k = listener_slot(l, l->table[j]->bev);
		/* Move j back to the hole i unless k lies cyclically in (i, j]. */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			l->table[i] = l->table[j];
			l->table[j] = NULL;
			i = j;
		}
	}
}

/*
 * The deadline runs while payhook waits for a request: from the accept,
 * and again from each answer written, to the request read whole. It is
 * stopped while payhook works on a request (listener_request_done), so a
 * slow disk never cuts off an answer that is coming. When it fires, the
 * connection is closed; it counts as a deadline only if part of a request
 * had arrived (a slow client), not when the connection was idle.
 */
static void
listener_deadline_cb(evutil_socket_t unused, short what, void *arg)
{
	struct listener_conn *c = arg;
	evutil_socket_t fd;
	int partial;

	if ((partial = c->got) != 0)
		metric_inc(&c->l->m_timed_out);
	/* evhttp sees EOF/error and frees the connection the normal way. */
	if ((fd = bufferevent_getfd(c->bev)) >= 0) {
		log_debug("connection_deadline", "fd=%d partial=%d", (int)fd,
		    partial);
		shutdown(fd, SHUT_RDWR);
	}
}

/* evhttp is freeing the connection (its fd is still open): forget it. */
static void
listener_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct listener_conn *c = arg;
	struct listener *l = c->l;

	listener_table_del(l, c);
	evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
	event_free(c->deadline);
	event_free(c->init);
	free(c);
	l->active--;
	if (l->paused && !l->closed && l->evl != NULL && l->active < l->max) {
		l->paused = 0;
		evconnlistener_enable(l->evl);
	}
}

/* Bytes arrived on a connection (evhttp takes each whole line out of the
 * buffer at once, so its length cannot tell a request begun). */
static void
listener_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct listener_conn *c = arg;

	if (info->n_added > 0)
		c->got = 1;
}

/*
 * Runs in the same loop pass as the accept, after evhttp has wrapped the
 * bufferevent in its connection (the bufferevent's callback argument) and
 * before any I/O on it: install the close callback and start the deadline.
 */
static void
listener_init_cb(evutil_socket_t unused, short what, void *arg)
{
	struct listener_conn *c = arg;
	void *evcon = NULL;

	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	if (evcon == NULL)
		abort();	/* evhttp did not adopt the bufferevent */
	evhttp_connection_set_closecb(evcon, listener_close_cb, c);
	evtimer_add(c->deadline, &c->l->timeout);
}

/*
 * Copy len bytes at p out of buf. Not evbuffer_copyout_from: libevent 2.1
 * refuses it (-1) while the buffer's start is frozen, as a connection's
 * output is from its second response on, so only the first response of
 * each keep-alive connection used to be counted.
 */
static int
listener_peek(struct evbuffer *buf, struct evbuffer_ptr *p, char *out,
    size_t len)
{
	struct evbuffer_iovec v[4];
	size_t got = 0;
	int i, n;

	n = evbuffer_peek(buf, (ev_ssize_t)len, p, v, 4);
	for (i = 0; i < n && i < 4 && got < len; i++) {
		size_t k = v[i].iov_len < len - got ? v[i].iov_len : len - got;

		memcpy(out + got, v[i].iov_base, k);
		got += k;
	}
	return got == len ? 0 : -1;
}

/*
 * Data was added to a connection's output. evhttp writes each response's
 * status line with one add, so an add that starts "HTTP/1.x NNN " is a
 * response head: this sees every status, libevent's own errors included.
 */
static void
listener_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct listener *l = arg;
	struct evbuffer_ptr p;
	char head[13];
	int code;

	if (info->n_added < sizeof head ||
	    evbuffer_ptr_set(buf, &p, info->orig_size, EVBUFFER_PTR_SET) != 0 ||
	    listener_peek(buf, &p, head, sizeof head) != 0)
		return;
	if (memcmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ' ||
	    head[12] != ' ' || head[9] < '1' || head[9] > '5' ||
	    head[10] < '0' || head[10] > '9' || head[11] < '0' ||
	    head[11] > '9')
		return;
	code = (head[9] - '0') * 100 + (head[10] - '0') * 10 + head[11] - '0';
	if (code < 200)
		return;	/* 100 Continue comes before the request's answer */
	l->status_fn(l->status_arg, code);
}

/* evhttp asks for each accepted connection's bufferevent: count it here. */
static struct bufferevent *
listener_bev_cb(struct event_base *base, void *arg)
{
	struct listener *l = arg;
	struct listener_conn *c;
	struct bufferevent *bev;
	SSL *ssl;

	if (l->tls != NULL) {
		if ((ssl = SSL_new(l->tls)) == NULL)
			return NULL;
		bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL)
			return NULL;
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else if ((bev = bufferevent_socket_new(base, -1,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		return NULL;
	if (l->status_fn != NULL &&
	    evbuffer_add_cb(bufferevent_get_output(bev), listener_output_cb,
	    l) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->l = l;
	c->bev = bev;
	if ((c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev),
	    listener_input_cb, c)) == NULL)
		abort();
	if ((c->deadline = evtimer_new(base, listener_deadline_cb, c)) ==
	    NULL || (c->init = event_new(base, -1, 0, listener_init_cb, c)) ==
	    NULL)
		abort();
	event_active(c->init, EV_TIMEOUT, 0);
	listener_table_put(l, c);
	l->active++;
	metric_inc(&l->m_accepted);
	if (l->active >= l->max && !l->paused) {
		l->paused = 1;
		metric_inc(&l->m_paused);
		evconnlistener_disable(l->evl);
		log_warn("connections_at_cap", "listen=%s active=%d max=%d",
		    l->address, l->active, l->max);
	}
	return bev;
}

static void
listener_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	if (!l->closed && !l->paused)
		evconnlistener_enable(l->evl);
}

/*
 * The evconnlistener's callback argument is evhttp's once it is bound
 * (evhttp_bind_listener sets its own), so the error callback finds its
 * listener here instead of casting that argument (which crashed payhook at
 * the first accept(2) error, EMFILE say). Listeners are added and removed
 * at start-up and shutdown; the lock covers lookups from any loop's thread.
 */

static void
listener_register(struct listener *l, int add)
{
	size_t i;

	pthread_mutex_lock(&listener_all_lock);
	for (i = 0; i < LISTENER_MAX; i++) {
		if (add && listener_all[i] == NULL) {
			listener_all[i] = l;
			break;
		}
		if (!add && listener_all[i] == l)
			listener_all[i] = NULL;
	}
	pthread_mutex_unlock(&listener_all_lock);
	if (add && i == LISTENER_MAX)
		abort();	/* payhook has two; tests a few more */
}

static struct listener *
listener_of(const struct evconnlistener *evl)
{
	struct listener *l = NULL;
	size_t i;

	pthread_mutex_lock(&listener_all_lock);
	for (i = 0; i < LISTENER_MAX && l == NULL; i++) {
		if (listener_all[i] != NULL && listener_all[i]->evl == evl)
			l = listener_all[i];
	}
	pthread_mutex_unlock(&listener_all_lock);
	return l;
}

static void
listener_error_cb(struct evconnlistener *evl, void *unused)
{
	struct listener *l = listener_of(evl);
	struct timeval tv = { 0, 100 * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	if (l == NULL)
		abort();	/* a listener we never made */
	/* EMFILE and friends: back off for a moment instead of spinning. */
	metric_inc(&l->m_accept_errors);
	log_error("accept_failed", "listen=%s error=\"%s\"", l->address,
	    evutil_socket_error_to_string(err));
	evconnlistener_disable(evl);
	evtimer_add(l->backoff, &tv);
}

static int
listener_bind(struct listener *l, const char *addr, char **cause)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	char host[256], ip[INET6_ADDRSTRLEN];
	int port, len = (int)sizeof ss;

	if (config_split_addr(addr, host, sizeof host, &port) != 0) {
		*cause = xasprintf("bad address \"%s\"", addr);
		return -1;
	}
	if (strcmp(host, "localhost") == 0)
		xsnprintf(host, sizeof host, "127.0.0.1");
	if (strcmp(host, "*") == 0)
		xsnprintf(host, sizeof host, "0.0.0.0");
	memset(&ss, 0, sizeof ss);
	if (strchr(host, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			goto numeric;
		len = (int)sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			goto numeric;
		len = (int)sizeof *s4;
	}
	l->evl = evconnlistener_new_bind(l->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    1024, (struct sockaddr *)&ss, len);
	if (l->evl == NULL) {
		*cause = xasprintf("cannot listen on %s: %s", addr,
		    strerror(errno));
		return -1;
	}
	listener_register(l, 1);
	evconnlistener_set_error_cb(l->evl, listener_error_cb);
	if (getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&ss,
	    &sslen) != 0) {
		*cause = xasprintf("getsockname: %s", strerror(errno));
		return -1;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		xsnprintf(l->address, sizeof l->address, "[%s]:%d", ip,
		    ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		xsnprintf(l->address, sizeof l->address, "%s:%d", ip,
		    ntohs(s4->sin_port));
	}
	return 0;
numeric:
	*cause = xasprintf("%s: not a numeric IP address", addr);
	return -1;
}

static double
listener_active_gauge(void *arg)
{
	return ((struct listener *)arg)->active;
}

static void
listener_register_metrics(struct listener *l)
{
	metrics_counter("payhook_http_connections_total",
	    "Connections accepted on the public listener.", NULL,
	    &l->m_accepted);
	metrics_gauge("payhook_http_connections_active",
	    "Connections open on the public listener.", NULL,
	    listener_active_gauge, l);
	metrics_counter("payhook_http_connection_deadlines_total",
	    "Connections closed because a request had begun to arrive but "
	    "was not whole within request_timeout (slow clients; idle "
	    "connections are closed at the same limit, uncounted).", NULL,
	    &l->m_timed_out);
	metrics_counter("payhook_http_accept_paused_total",
	    "Times accepting paused at max_connections.", NULL, &l->m_paused);
	metrics_counter("payhook_http_accept_errors_total",
	    "accept(2) failures (e.g. out of file descriptors).", NULL,
	    &l->m_accept_errors);
}

/*
 * evhttp turns a connection's read and write interest on and off around
 * every request: with the changelist those changes reach epoll once per
 * loop pass, and a change undone in the same pass costs no epoll_ctl at all
 * (4 to 3 per webhook under load). No descriptor on payhook's loops is ever
 * dup()ed, the flag's one caveat.
 */
struct event_base *
listener_loop_new(int npriorities)
{
	struct event_config *ec;
	struct event_base *base;

	if ((ec = event_config_new()) == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base != NULL && npriorities > 1 &&
	    event_base_priority_init(base, npriorities) != 0) {
		event_base_free(base);
		return NULL;
	}
	return base;
}

struct listener *
listener_new(struct event_base *base, struct evhttp *http,
    const struct listener_config *lc, char **cause)
{
	struct listener *l;

	l = xcalloc(1, sizeof *l);
	l->base = base;
	l->http = http;
	l->tls = lc->tls;
	l->max = lc->max_connections;
	l->status_fn = lc->status_fn;
	l->status_arg = lc->status_arg;
	l->timeout.tv_sec = lc->request_timeout_ms / 1000;
	l->timeout.tv_usec = (lc->request_timeout_ms % 1000) * 1000;
	evhttp_set_bevcb(http, listener_bev_cb, l);
	if ((l->backoff = evtimer_new(base, listener_backoff_cb, l)) == NULL)
		abort();
	for (l->cap = 16; l->cap <= 2 * (size_t)l->max; l->cap *= 2)
		;
	l->table = xcalloc(l->cap, sizeof *l->table);
	if (listener_bind(l, lc->addr, cause) != 0) {
		listener_free(l);
		return NULL;
	}
	/* evhttp owns accepting (and the evconnlistener) from here on. */
	if ((l->sock = evhttp_bind_listener(http, l->evl)) == NULL) {
		*cause = xasprintf("cannot attach %s to evhttp", lc->addr);
		listener_free(l);
		return NULL;
	}
	l->bound = 1;
	if (lc->metrics)
		listener_register_metrics(l);
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	listener_register(l, 0);
	/* The evconnlistener belongs to evhttp once bound (evhttp_free). */
	if (l->evl != NULL && !l->bound)
		evconnlistener_free(l->evl);
	if (l->backoff != NULL)
		event_free(l->backoff);
	free(l->table);
	free(l);
}

static struct listener_conn *
listener_conn_of(struct listener *l, struct evhttp_request *req)
{
	struct evhttp_connection *evcon;
	struct bufferevent *bev;

	if ((evcon = evhttp_request_get_connection(req)) == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL)
		return NULL;	/* the client left: evhttp detached req */
	return listener_table_get(l, bev);
}

/* The answer is written: the connection waits for its next request. */
static void
listener_answered_cb(struct evhttp_request *req, void *arg)
{
	struct listener_conn *c = listener_conn_of(arg, req);

	if (c != NULL) {
		c->got = 0;
		evtimer_add(c->deadline, &c->l->timeout);
	}
}

void
listener_request_done(struct listener *l, struct evhttp_request *req)
{
	struct listener_conn *c;

	if ((c = listener_conn_of(l, req)) == NULL)
		return;
	evtimer_del(c->deadline);
	evhttp_request_set_on_complete_cb(req, listener_answered_cb, l);
}

void
listener_close(struct listener *l)
{
	if (l->closed)
		return;
	l->closed = 1;
	/* Close the socket itself: with accepting only disabled, the kernel
	 * went on completing handshakes into the backlog, and those clients
	 * hung until the exit reset them; now they are refused at once (a
	 * load balancer or GOV.UK Pay's retry moves on). */
	if (l->sock != NULL) {
		pthread_mutex_lock(&listener_all_lock);	/* listener_of reads */
		l->evl = NULL;
		pthread_mutex_unlock(&listener_all_lock);
		evhttp_del_accept_socket(l->http, l->sock);
		l->sock = NULL;
		l->bound = 0;
	} else
		evconnlistener_disable(l->evl);
}

int
listener_connections(const struct listener *l)
{
	return l->active;
}

const char *
listener_address(const struct listener *l)
{
	return l->address;
}

SSL_CTX *
listener_tls_new(const char *cert_file, const char *key_file, char **cause)
{
	unsigned long err;
	SSL_CTX *ctx;
	char buf[256];

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto fail;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		err = ERR_get_error();
		ERR_error_string_n(err, buf, sizeof buf);
		*cause = xasprintf("config: tls_cert_file = \"%s\": cannot "
		    "load a PEM certificate chain (%s)", cert_file, buf);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		err = ERR_get_error();
		ERR_error_string_n(err, buf, sizeof buf);
		*cause = xasprintf("config: tls_key_file = \"%s\": cannot load "
		    "a PEM private key matching tls_cert_file (%s)", key_file,
		    buf);
		goto out;
	}
	ERR_clear_error();
	return ctx;
fail:
	err = ERR_get_error();
	ERR_error_string_n(err, buf, sizeof buf);
	*cause = xasprintf("TLS set-up failed: %s", buf);
out:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

void
listener_tls_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}
