/*
 * apiclient.c: GET /v1/payments/{id} over evhttp client connections, plain
 * (loopback only) or TLS through OpenSSL bufferevents. A fixed pool of
 * keep-alive connections, one request each at a time; a connection that
 * closed or failed is replaced (an SSL object is never reused).
 * Main thread only. Never logs the API key, follows a redirect, or puts
 * anything but a validated payment id into a path.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/apiclient.h"

#define APICLIENT_KEY_MAX	4096
#define APICLIENT_RETRY_AFTER_MAX_MS	(3600 * 1000LL)

struct api_req;

struct api_slot {
	struct apiclient	*c;
	struct evhttp_connection *conn;		/* NULL: none yet */
	int			 closed;	/* replace before next use */
	struct api_req		*req;		/* in flight, or NULL */
};

struct api_req {
	struct api_slot		*slot;
	struct evhttp_request	*hreq;		/* evhttp's, while in flight */
	struct event		*timer;		/* deadlines, then delivery */
	apiclient_done_fn	 done;
	void			*arg;
	uint64_t		 start_ns;
	int			 new_conn;
	int			 phase;		/* 0: connect deadline armed */
	int			 finished;
	enum evhttp_request_error herr;
	int			 have_herr;
	struct apiclient_answer	 ans;
	char			*body;
	char			 error[160];
};

struct apiclient {
	struct event_base	*base;
	struct evdns_base	*dns;
	SSL_CTX			*ssl;
	int			 tls;
	char			*host;		/* as in the URL, no brackets */
	char			*hosthdr;	/* Host: header */
	int			 host_is_ip;
	int			 port;
	char			*prefix;	/* path before /v1, no trailing / */
	char			*key_file;
	char			*auth;		/* "Bearer <key>" */
	struct apiclient_config	 cfg;
	struct api_slot		*slots;
	size_t			 nslots;
	size_t			 inflight;
	double			 tokens;
	uint64_t		 refill_ns;
	struct evhttp_connection **dead;	/* freed by the reaper */
	size_t			 ndead, deadcap;
	struct event		*reaper;
};

static void
api_clear_key(struct apiclient *c)
{
	if (c->auth != NULL) {
		OPENSSL_cleanse(c->auth, strlen(c->auth));
		free(c->auth);
		c->auth = NULL;
	}
}

int
apiclient_reload_key(struct apiclient *c, char **cause)
{
	char *buf, *s, *e;
	size_t len;

	if (util_read_file(c->key_file, APICLIENT_KEY_MAX, &buf, &len,
	    cause) != 0)
		return -1;
	for (s = buf; *s != '\0' && isspace((unsigned char)*s); s++)
		;
	for (e = s; *e != '\0' && !isspace((unsigned char)*e); e++)
		;
	*e = '\0';
	if (*s == '\0') {
		OPENSSL_cleanse(buf, len);
		free(buf);
		*cause = xasprintf("api_key_file %s: no key in the file",
		    c->key_file);
		return -1;
	}
	api_clear_key(c);
	c->auth = xasprintf("Bearer %s", s);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return 0;
}

static int
api_is_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static int
api_parse_url(struct apiclient *c, const char *url, char **cause)
{
	struct evhttp_uri *uri;
	const char *scheme, *host, *path;
	int rc = -1, defport;
	size_t plen;

	if ((uri = evhttp_uri_parse_with_flags(url, 0)) == NULL) {
		*cause = xasprintf("api_base_url: cannot parse \"%s\"", url);
		return -1;
	}
	scheme = evhttp_uri_get_scheme(uri);
	host = evhttp_uri_get_host(uri);
	path = evhttp_uri_get_path(uri);
	if (scheme == NULL || host == NULL || *host == '\0' ||
	    (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) ||
	    evhttp_uri_get_query(uri) != NULL ||
	    evhttp_uri_get_userinfo(uri) != NULL) {
		*cause = xasprintf("api_base_url: expected "
		    "https://host[:port][/path], got \"%s\"", url);
		goto out;
	}
	c->tls = strcmp(scheme, "https") == 0;
	defport = c->tls ? 443 : 80;
	c->port = evhttp_uri_get_port(uri);
	if (c->port <= 0)
		c->port = defport;
	c->host = xstrdup(host);
	if (c->host[0] == '[') {	/* libevent keeps IPv6 brackets */
		memmove(c->host, c->host + 1, strlen(c->host));
		c->host[strcspn(c->host, "]")] = '\0';
	}
	c->host_is_ip = api_is_ip(c->host);
	if (strchr(c->host, ':') != NULL)
		c->hosthdr = c->port == defport ? xasprintf("[%s]", c->host) :
		    xasprintf("[%s]:%d", c->host, c->port);
	else
		c->hosthdr = c->port == defport ? xstrdup(c->host) :
		    xasprintf("%s:%d", c->host, c->port);
	c->prefix = xstrdup(path != NULL ? path : "");
	plen = strlen(c->prefix);
	while (plen > 0 && c->prefix[plen - 1] == '/')
		c->prefix[--plen] = '\0';
	rc = 0;
out:
	evhttp_uri_free(uri);
	return rc;
}

static int
api_tls_init(struct apiclient *c, char **cause)
{
	const char *ca = c->cfg.ca_file;
	unsigned long e;

	if ((c->ssl = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) != 1)
		goto fail;
	SSL_CTX_set_options(c->ssl, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	if (ca != NULL && *ca != '\0') {
		if (SSL_CTX_load_verify_locations(c->ssl, ca, NULL) != 1) {
			e = ERR_get_error();
			*cause = xasprintf("api_ca_file %s: %s", ca,
			    e != 0 ? ERR_reason_error_string(e) :
			    "cannot load");
			ERR_clear_error();
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(c->ssl) != 1)
		goto fail;
	return 0;
fail:
	e = ERR_get_error();
	*cause = xasprintf("api TLS set-up failed: %s",
	    e != 0 ? ERR_reason_error_string(e) : "unknown error");
	ERR_clear_error();
	return -1;
}

static void
api_reap(struct apiclient *c)
{
	size_t i;

	for (i = 0; i < c->ndead; i++)
		evhttp_connection_free(c->dead[i]);
	c->ndead = 0;
}

static void
api_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	api_reap(arg);
}

/* Free a connection later, outside any libevent callback for it. */
static void
api_bury(struct apiclient *c, struct evhttp_connection *conn)
{
	if (c->ndead == c->deadcap) {
		c->deadcap = c->deadcap ? c->deadcap * 2 : 16;
		c->dead = xreallocarray(c->dead, c->deadcap, sizeof *c->dead);
	}
	c->dead[c->ndead++] = conn;
	event_active(c->reaper, EV_TIMEOUT, 1);
}

static void
api_close_cb(struct evhttp_connection *conn, void *arg)
{
	struct api_slot *s = arg;

	if (s->conn == conn)
		s->closed = 1;
}

static struct evhttp_connection *
api_connect(struct apiclient *c, struct api_slot *s)
{
	struct evhttp_connection *conn;
	struct bufferevent *bev;
	struct timeval tv;
	SSL *ssl;

	if (!c->tls)
		conn = evhttp_connection_base_new(c->base, c->dns, c->host,
		    (unsigned short)c->port);
	else {
		if ((ssl = SSL_new(c->ssl)) == NULL)
			return NULL;
		if (c->host_is_ip ?
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    c->host) != 1 :
		    (SSL_set_tlsext_host_name(ssl, c->host) != 1 ||
		    SSL_set1_host(ssl, c->host) != 1)) {
			SSL_free(ssl);
			return NULL;
		}
		bev = bufferevent_openssl_socket_new(c->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (bev == NULL) {
			SSL_free(ssl);
			return NULL;
		}
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
		conn = evhttp_connection_base_bufferevent_new(c->base, c->dns,
		    bev, c->host, (unsigned short)c->port);
		if (conn == NULL)
			bufferevent_free(bev);
	}
	if (conn == NULL)
		return NULL;
	tv.tv_sec = c->cfg.timeout_ms / 1000;
	tv.tv_usec = (c->cfg.timeout_ms % 1000) * 1000;
	evhttp_connection_set_timeout_tv(conn, &tv);
	evhttp_connection_set_retries(conn, 0);
	evhttp_connection_set_max_body_size(conn,
	    (ev_ssize_t)c->cfg.max_body);
	evhttp_connection_set_max_headers_size(conn, 64 * 1024);
	evhttp_connection_set_closecb(conn, api_close_cb, s);
	return conn;
}

/* 1 once TCP (and TLS) are up on the slot's connection. */
static int
api_established(struct apiclient *c, struct api_slot *s)
{
	struct bufferevent *bev;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	evutil_socket_t fd;
	SSL *ssl;

	if (s->conn == NULL ||
	    (bev = evhttp_connection_get_bufferevent(s->conn)) == NULL)
		return 0;
	if (c->tls) {
		ssl = bufferevent_openssl_get_ssl(bev);
		return ssl != NULL && SSL_is_init_finished(ssl);
	}
	fd = bufferevent_getfd(bev);
	return fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
}

static void
api_deliver(struct api_req *r)
{
	struct apiclient *c = r->slot->c;

	r->ans.elapsed_ns = (uint64_t)util_mono_ns() - r->start_ns;
	r->slot->req = NULL;
	c->inflight--;
	event_free(r->timer);
	r->done(r->arg, &r->ans);
	free(r->body);
	free(r);
}

/* Give up on a request in flight (deadline passed). */
static void
api_abort(struct api_req *r, enum apiclient_result res, const char *why)
{
	struct evhttp_request *h = r->hreq;

	r->hreq = NULL;
	r->slot->closed = 1;
	if (h != NULL)
		evhttp_cancel_request(h);	/* no callback but error_cb */
	r->ans.result = res;
	xsnprintf(r->error, sizeof r->error, "%s", why);
	r->ans.error = r->error;
	api_deliver(r);
}

static void
api_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api_req *r = arg;
	struct apiclient *c = r->slot->c;
	struct timeval tv;

	if (r->finished) {
		api_deliver(r);
		return;
	}
	if (r->phase == 0) {
		if (!api_established(c, r->slot)) {
			api_abort(r, APICLIENT_TIMEOUT,
			    "connect: no connection within api_connect_timeout");
			return;
		}
		r->phase = 1;
		tv.tv_sec = c->cfg.timeout_ms / 1000;
		tv.tv_usec = (c->cfg.timeout_ms % 1000) * 1000;
		if (evtimer_add(r->timer, &tv) != 0)
			api_abort(r, APICLIENT_ERROR, "event_add failed");
		return;
	}
	api_abort(r, APICLIENT_TIMEOUT, "no answer within api_timeout");
}

static void
api_error_cb(enum evhttp_request_error err, void *arg)
{
	struct api_req *r = arg;

	r->herr = err;
	r->have_herr = 1;
}

/* Why a request failed without an answer (never quotes the key). */
static void
api_failure_reason(struct api_req *r)
{
	struct apiclient *c = r->slot->c;
	struct bufferevent *bev = NULL;
	unsigned long e = 0;
	long v;
	SSL *ssl;

	if (r->slot->conn != NULL)
		bev = evhttp_connection_get_bufferevent(r->slot->conn);
	if (c->tls && bev != NULL &&
	    (ssl = bufferevent_openssl_get_ssl(bev)) != NULL &&
	    (v = SSL_get_verify_result(ssl)) != X509_V_OK) {
		xsnprintf(r->error, sizeof r->error,
		    "tls: certificate refused: %s",
		    X509_verify_cert_error_string(v));
		return;
	}
	if (c->tls && bev != NULL)
		e = bufferevent_get_openssl_error(bev);
	if (e != 0) {
		xsnprintf(r->error, sizeof r->error, "tls: %s",
		    ERR_reason_error_string(e) != NULL ?
		    ERR_reason_error_string(e) : "handshake failed");
		return;
	}
	if (r->have_herr && r->herr == EVREQ_HTTP_TIMEOUT)
		xsnprintf(r->error, sizeof r->error, "no answer within "
		    "api_timeout");
	else if (r->have_herr && r->herr == EVREQ_HTTP_DATA_TOO_LONG)
		xsnprintf(r->error, sizeof r->error, "answer larger than "
		    "%zu bytes", c->cfg.max_body);
	else if (r->have_herr && r->herr == EVREQ_HTTP_INVALID_HEADER)
		xsnprintf(r->error, sizeof r->error, "malformed answer");
	else if (r->have_herr && r->herr == EVREQ_HTTP_EOF)
		xsnprintf(r->error, sizeof r->error, "connection closed or "
		    "reset before an answer");
	else
		xsnprintf(r->error, sizeof r->error, "connection failed "
		    "(refused, reset or TLS handshake)");
}

static int64_t
api_retry_after(struct evhttp_request *h)
{
	const char *v;
	int64_t secs;

	v = evhttp_find_header(evhttp_request_get_input_headers(h),
	    "Retry-After");
	if (v == NULL || util_parse_int64(v, 0, 86400, &secs) != 0)
		return -1;	/* absent, or an HTTP date: treated as absent */
	secs *= 1000;
	return secs > APICLIENT_RETRY_AFTER_MAX_MS ?
	    APICLIENT_RETRY_AFTER_MAX_MS : secs;
}

static void
api_done_cb(struct evhttp_request *h, void *arg)
{
	struct api_req *r = arg;
	struct evbuffer *in;
	size_t len;
	int code;

	if (r->finished || r->hreq == NULL)
		return;		/* already given up on */
	r->hreq = NULL;
	code = h != NULL ? evhttp_request_get_response_code(h) : 0;
	r->ans.retry_after_ms = -1;
	if (code > 0) {
		in = evhttp_request_get_input_buffer(h);
		len = evbuffer_get_length(in);
		if (len > r->slot->c->cfg.max_body)
			len = r->slot->c->cfg.max_body;
		r->body = xmalloc(len + 1);
		if (len > 0 && evbuffer_copyout(in, r->body, len) !=
		    (ev_ssize_t)len)
			len = 0;
		r->body[len] = '\0';
		r->ans.result = APICLIENT_ANSWER;
		r->ans.status = code;
		r->ans.body = r->body;
		r->ans.body_len = len;
		r->ans.retry_after_ms = api_retry_after(h);
	} else {
		r->slot->closed = 1;
		api_failure_reason(r);
		r->ans.result = r->have_herr && r->herr == EVREQ_HTTP_TIMEOUT ?
		    APICLIENT_TIMEOUT : APICLIENT_ERROR;
		r->ans.error = r->error;
	}
	r->finished = 1;
	event_active(r->timer, EV_TIMEOUT, 1);	/* deliver from the loop */
}

size_t
apiclient_available(struct apiclient *c, int64_t *wait_ms)
{
	double rate = (double)c->cfg.rate_limit, cap;
	uint64_t now = (uint64_t)util_mono_ns();
	size_t freeslots, n;

	cap = rate < (double)c->nslots ? rate : (double)c->nslots;
	if (cap < 1.0)
		cap = 1.0;
	c->tokens += (double)(now - c->refill_ns) / 1e9 * rate;
	if (c->tokens > cap)
		c->tokens = cap;
	c->refill_ns = now;
	*wait_ms = -1;
	freeslots = c->nslots - c->inflight;
	if (freeslots == 0)
		return 0;
	if (c->tokens < 1.0) {
		*wait_ms = (int64_t)((1.0 - c->tokens) * 1000.0 / rate) + 1;
		return 0;
	}
	n = (size_t)c->tokens;
	return n < freeslots ? n : freeslots;
}

size_t
apiclient_in_flight(const struct apiclient *c)
{
	return c->inflight;
}

int
apiclient_is_tls(const struct apiclient *c)
{
	return c->tls;
}

static struct api_slot *
api_pick_slot(struct apiclient *c)
{
	struct api_slot *idle = NULL;
	size_t i;

	for (i = 0; i < c->nslots; i++) {
		if (c->slots[i].req != NULL)
			continue;
		if (c->slots[i].conn != NULL && !c->slots[i].closed)
			return &c->slots[i];	/* warm keep-alive first */
		if (idle == NULL)
			idle = &c->slots[i];
	}
	return idle;
}

static int
api_add_headers(struct apiclient *c, struct evhttp_request *h)
{
	struct evkeyvalq *hd = evhttp_request_get_output_headers(h);

	return evhttp_add_header(hd, "Host", c->hosthdr) != 0 ||
	    evhttp_add_header(hd, "Authorization", c->auth) != 0 ||
	    evhttp_add_header(hd, "Accept", "application/json") != 0 ||
	    evhttp_add_header(hd, "User-Agent", "payhook/" PAYHOOK_VERSION
	    " (GOV.UK Pay webhook receiver)") != 0 ? -1 : 0;
}

int
apiclient_get_payment(struct apiclient *c, const char *payment_id,
    apiclient_done_fn done, void *arg, char **cause)
{
	struct api_slot *s;
	struct api_req *r;
	struct timeval tv;
	int64_t wait, ms;
	char *path;

	if (payment_id == NULL ||
	    !util_is_pay_id(payment_id, strlen(payment_id))) {
		*cause = xstrdup("payment_id is not a GOV.UK Pay id");
		return -1;
	}
	if (apiclient_available(c, &wait) == 0 ||
	    (s = api_pick_slot(c)) == NULL) {
		*cause = xstrdup("no free connection or rate token");
		return -1;
	}
	r = xcalloc(1, sizeof *r);
	r->slot = s;
	r->done = done;
	r->arg = arg;
	r->start_ns = (uint64_t)util_mono_ns();
	if (s->conn != NULL && s->closed) {
		api_bury(c, s->conn);
		s->conn = NULL;
	}
	if (s->conn == NULL) {
		if ((s->conn = api_connect(c, s)) == NULL) {
			free(r);
			*cause = xstrdup("cannot create a connection");
			return -1;
		}
		s->closed = 0;
		r->new_conn = 1;
	}
	if ((r->timer = evtimer_new(c->base, api_timer_cb, r)) == NULL ||
	    (r->hreq = evhttp_request_new(api_done_cb, r)) == NULL ||
	    api_add_headers(c, r->hreq) != 0) {
		if (r->hreq != NULL)
			evhttp_request_free(r->hreq);
		if (r->timer != NULL)
			event_free(r->timer);
		free(r);
		*cause = xstrdup("cannot build the request");
		return -1;
	}
	evhttp_request_set_error_cb(r->hreq, api_error_cb);
	c->tokens -= 1.0;
	s->req = r;
	c->inflight++;
	ms = r->new_conn ? c->cfg.connect_timeout_ms : c->cfg.timeout_ms;
	r->phase = r->new_conn ? 0 : 1;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (evtimer_add(r->timer, &tv) != 0)
		log_error("api_timer_failed", NULL);
	path = xasprintf("%s/v1/payments/%s", c->prefix, payment_id);
	if (evhttp_make_request(s->conn, r->hreq, EVHTTP_REQ_GET, path) != 0) {
		/* Not queued and not freed by evhttp: report it later. */
		evhttp_request_free(r->hreq);
		r->hreq = NULL;
		s->closed = 1;
		r->finished = 1;
		r->ans.result = APICLIENT_ERROR;
		xsnprintf(r->error, sizeof r->error, "cannot start the request");
		r->ans.error = r->error;
		event_active(r->timer, EV_TIMEOUT, 1);
	}
	free(path);
	return 0;
}

struct apiclient *
apiclient_new(struct event_base *base, const struct apiclient_config *cfg,
    char **cause)
{
	struct apiclient *c;
	size_t i;

	c = xcalloc(1, sizeof *c);
	c->base = base;
	c->cfg = *cfg;
	c->cfg.base_url = NULL;
	c->cfg.key_file = NULL;
	c->cfg.ca_file = cfg->ca_file != NULL && *cfg->ca_file != '\0' ?
	    xstrdup(cfg->ca_file) : NULL;
	if (c->cfg.max_body == 0)
		c->cfg.max_body = APICLIENT_MAX_BODY;
	if (c->cfg.pool_size < 1)
		c->cfg.pool_size = 1;
	if (c->cfg.rate_limit < 1)
		c->cfg.rate_limit = 1;
	c->key_file = xstrdup(cfg->key_file != NULL ? cfg->key_file : "");
	if (api_parse_url(c, cfg->base_url, cause) != 0 ||
	    apiclient_reload_key(c, cause) != 0 ||
	    (c->tls && api_tls_init(c, cause) != 0))
		goto fail;
	if ((c->reaper = event_new(base, -1, 0, api_reaper_cb, c)) == NULL) {
		*cause = xstrdup("api client: event_new failed");
		goto fail;
	}
	if (!c->host_is_ip)
		c->dns = evdns_base_new(base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);	/* NULL: getaddrinfo */
	c->nslots = (size_t)c->cfg.pool_size;
	c->slots = xcalloc(c->nslots, sizeof *c->slots);
	for (i = 0; i < c->nslots; i++)
		c->slots[i].c = c;
	c->tokens = 1.0;
	c->refill_ns = (uint64_t)util_mono_ns();
	if (c->tls)
		log_info("api_client", "base_url=%s tls=on verify=%s pool=%d "
		    "rate_limit=%d", cfg->base_url, c->cfg.ca_file != NULL ?
		    "api_ca_file" : "system_store", c->cfg.pool_size,
		    c->cfg.rate_limit);
	else
		log_warn("api_client", "base_url=%s tls=off pool=%d "
		    "rate_limit=%d note=plain_http_allowed_only_for_loopback",
		    cfg->base_url, c->cfg.pool_size, c->cfg.rate_limit);
	return c;
fail:
	apiclient_free(c);
	return NULL;
}

void
apiclient_free(struct apiclient *c)
{
	struct api_req *r;
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nslots; i++) {
		if ((r = c->slots[i].req) != NULL) {
			if (r->hreq != NULL) {
				struct evhttp_request *h = r->hreq;

				r->hreq = NULL;
				evhttp_cancel_request(h);
			}
			event_free(r->timer);
			free(r->body);
			free(r);
		}
		if (c->slots[i].conn != NULL)
			evhttp_connection_free(c->slots[i].conn);
	}
	api_reap(c);
	if (c->reaper != NULL)
		event_free(c->reaper);
	if (c->dns != NULL)
		evdns_base_free(c->dns, 0);
	if (c->ssl != NULL)
		SSL_CTX_free(c->ssl);
	api_clear_key(c);
	free(c->dead);
	free(c->slots);
	free(c->host);
	free(c->hosthdr);
	free(c->prefix);
	free(c->key_file);
	free((char *)c->cfg.ca_file);
	free(c);
}
