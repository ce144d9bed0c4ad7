/*
 * apitestsrv.h: a scripted in-process stand-in for the GOV.UK Pay API for
 * test_apiclient.c and test_crosscheck.c: evhttp on 127.0.0.1 port 0,
 * plain or TLS, answering with scripted statuses, delays, hangs, resets,
 * oversized bodies, and recording what it was asked. Test code only; runs
 * on the test's event_base (one thread).
 */
#ifndef PAYHOOK_APITESTSRV_H
#define PAYHOOK_APITESTSRV_H

#include <sys/socket.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

#include "common/util.h"
#include "common/xmalloc.h"

#define TS_UNUSED __attribute__((unused))

enum ts_mode {
	TS_OK,		/* 200 with a payment built from the path */
	TS_STATUS,	/* status with a GOV.UK Pay error body */
	TS_HANG,	/* never answer */
	TS_RESET,	/* drop the connection without answering */
	TS_BIG,		/* 200 with big_len bytes */
	TS_REDIRECT,	/* 302 to another path */
	TS_CLOSE,	/* 200 with Connection: close */
	TS_BODY,	/* 200 with body */
};

struct ts_server {
	struct event_base	*base;
	struct evhttp		*http;
	SSL_CTX			*ssl;
	int			 port;
	/* script */
	enum ts_mode		 mode;
	int			 status;
	const char		*retry_after;
	int			 delay_ms;
	size_t			 big_len;
	const char		*body;
	const char		*want_auth;	/* else 401 */
	/* per-payment overrides: status for ids listed, else mode */
	char			 amount[32];
	char			 api_status[32];
	/* record */
	int			 requests;
	int			 connections;
	int			 inflight, max_inflight;
	char			 last_uri[256];
	char			 last_auth[256];
	char			 last_accept[64];
	char			 last_ua[128];
	char			 last_host[128];
	struct evhttp_request	*hung[64];
	int			 nhung;
};

struct ts_delayed {
	struct ts_server	*s;
	struct evhttp_request	*req;
	struct event		*ev;
};

static TS_UNUSED void
ts_copy_hdr(struct evhttp_request *req, const char *name, char *out,
    size_t len)
{
	const char *v;

	v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
	xsnprintf(out, len, "%s", v != NULL ? v : "");
}

static TS_UNUSED void
ts_answer(struct ts_server *s, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	const char *uri = evhttp_request_get_uri(req);
	const char *id = strrchr(uri, '/');
	char *big;

	id = id != NULL ? id + 1 : "";
	evhttp_add_header(oh, "Content-Type", "application/json");
	s->inflight--;
	switch (s->mode) {
	case TS_OK:
	case TS_CLOSE:
		if (s->mode == TS_CLOSE)
			evhttp_add_header(oh, "Connection", "close");
		evbuffer_add_printf(b, "{\"amount\":%s,\"description\":\"d\","
		    "\"reference\":\"r\",\"state\":{\"status\":\"%s\","
		    "\"finished\":true},\"payment_id\":\"%s\"}",
		    s->amount[0] ? s->amount : "5000",
		    s->api_status[0] ? s->api_status : "success", id);
		evhttp_send_reply(req, 200, "OK", b);
		break;
	case TS_BODY:
		evbuffer_add(b, s->body, strlen(s->body));
		evhttp_send_reply(req, 200, "OK", b);
		break;
	case TS_STATUS:
		if (s->retry_after != NULL)
			evhttp_add_header(oh, "Retry-After", s->retry_after);
		evbuffer_add_printf(b, "{\"code\":\"P0%d\",\"description\":"
		    "\"scripted\"}", s->status);
		evhttp_send_reply(req, s->status, "Scripted", b);
		break;
	case TS_BIG:
		big = xmalloc(s->big_len);
		memset(big, ' ', s->big_len);
		evbuffer_add(b, big, s->big_len);
		free(big);
		evhttp_send_reply(req, 200, "OK", b);
		break;
	case TS_REDIRECT:
		evhttp_add_header(oh, "Location", "/v1/payments/elsewhere");
		evhttp_send_reply(req, 302, "Found", b);
		break;
	default:
		break;
	}
	evbuffer_free(b);
}

static TS_UNUSED void
ts_reset_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ts_delayed *d = arg;

	evhttp_connection_free(evhttp_request_get_connection(d->req));
	event_free(d->ev);
	free(d);
}

static TS_UNUSED void
ts_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ts_delayed *d = arg;

	ts_answer(d->s, d->req);
	event_free(d->ev);
	free(d);
}

static TS_UNUSED void
ts_handler(struct evhttp_request *req, void *arg)
{
	struct ts_server *s = arg;
	struct ts_delayed *d;
	struct timeval tv = { 0, 0 };

	s->requests++;
	if (++s->inflight > s->max_inflight)
		s->max_inflight = s->inflight;
	xsnprintf(s->last_uri, sizeof s->last_uri, "%s",
	    evhttp_request_get_uri(req));
	ts_copy_hdr(req, "Authorization", s->last_auth, sizeof s->last_auth);
	ts_copy_hdr(req, "Accept", s->last_accept, sizeof s->last_accept);
	ts_copy_hdr(req, "User-Agent", s->last_ua, sizeof s->last_ua);
	ts_copy_hdr(req, "Host", s->last_host, sizeof s->last_host);
	if (s->want_auth != NULL && strcmp(s->last_auth, s->want_auth) != 0) {
		struct evbuffer *b = evbuffer_new();

		s->inflight--;
		evbuffer_add_printf(b, "Unauthorized");
		evhttp_send_reply(req, 401, "Unauthorized", b);
		evbuffer_free(b);
		return;
	}
	if (s->mode == TS_HANG) {
		if (s->nhung < 64)
			s->hung[s->nhung++] = req;
		return;
	}
	if (s->mode == TS_RESET || s->delay_ms > 0) {
		d = xcalloc(1, sizeof *d);
		d->s = s;
		d->req = req;
		if (s->mode == TS_RESET) {
			s->inflight--;
			d->ev = evtimer_new(s->base, ts_reset_cb, d);
		} else {
			d->ev = evtimer_new(s->base, ts_delay_cb, d);
			tv.tv_sec = s->delay_ms / 1000;
			tv.tv_usec = (s->delay_ms % 1000) * 1000;
		}
		evtimer_add(d->ev, &tv);
		return;
	}
	ts_answer(s, req);
}

static TS_UNUSED struct bufferevent *
ts_bevcb(struct event_base *base, void *arg)
{
	struct ts_server *s = arg;

	s->connections++;
	if (s->ssl != NULL)
		return bufferevent_openssl_socket_new(base, -1,
		    SSL_new(s->ssl), BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE);
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

/* Start a server; cert/key non-NULL for TLS. */
static TS_UNUSED struct ts_server *
ts_start(struct event_base *base, const char *cert, const char *key)
{
	struct ts_server *s = xcalloc(1, sizeof *s);
	struct evhttp_bound_socket *h;
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;

	s->base = base;
	s->mode = TS_OK;
	s->http = evhttp_new(base);
	if (cert != NULL) {
		s->ssl = SSL_CTX_new(TLS_server_method());
		if (SSL_CTX_use_certificate_chain_file(s->ssl, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(s->ssl, key,
		    SSL_FILETYPE_PEM) != 1)
			abort();
	}
	evhttp_set_bevcb(s->http, ts_bevcb, s);
	evhttp_set_gencb(s->http, ts_handler, s);
	h = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
	if (h == NULL)
		abort();
	if (getsockname(evhttp_bound_socket_get_fd(h),
	    (struct sockaddr *)&sin, &len) != 0)
		abort();
	s->port = ntohs(sin.sin_port);
	return s;
}

static TS_UNUSED void
ts_free(struct ts_server *s)
{
	evhttp_free(s->http);
	if (s->ssl != NULL)
		SSL_CTX_free(s->ssl);
	free(s);
}

/* A free port nobody listens on (bound then closed). */
static TS_UNUSED int
ts_dead_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		abort();
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static TS_UNUSED void
ts_tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* Run the loop until *flag >= want or ms pass; returns elapsed ms. */
static TS_UNUSED int64_t
ts_run_until(struct event_base *base, const int *flag, int want, int ms)
{
	struct timeval tv = { 0, 5000 };
	struct event *tick;
	int64_t t0 = util_mono_ms();

	tick = event_new(base, -1, EV_PERSIST, ts_tick_cb, NULL);
	event_add(tick, &tv);
	while ((flag == NULL || *flag < want) &&
	    util_mono_ms() - t0 < ms)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
	return util_mono_ms() - t0;
}

/*
 * Make a CA, a server certificate for 127.0.0.1/localhost signed by it, a
 * certificate for the wrong host signed by it, and one signed by a second
 * CA, with the openssl CLI in dir. 0 or -1.
 */
static TS_UNUSED int
ts_make_pki(const char *dir)
{
	char *cmd;
	int rc;

	cmd = xasprintf("(cd %s && "
	    "G='openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes -days 2'; "
	    "S='openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes'; "
	    "$G -keyout ca.key -out ca.pem -subj /CN=payhook-test-ca && "
	    "$G -keyout ca2.key -out ca2.pem -subj /CN=payhook-other-ca && "
	    "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ok.ext && "
	    "printf 'subjectAltName=IP:127.0.0.2,DNS:wrong.example\\n' "
	    "> bad.ext && "
	    "$S -keyout ok.key -out ok.csr -subj /CN=localhost && "
	    "openssl x509 -req -in ok.csr -CA ca.pem -CAkey ca.key "
	    "-CAcreateserial -days 2 -extfile ok.ext -out ok.pem && "
	    "$S -keyout wronghost.key -out wronghost.csr -subj /CN=wrong && "
	    "openssl x509 -req -in wronghost.csr -CA ca.pem -CAkey ca.key "
	    "-CAcreateserial -days 2 -extfile bad.ext -out wronghost.pem && "
	    "$S -keyout wrongca.key -out wrongca.csr -subj /CN=localhost && "
	    "openssl x509 -req -in wrongca.csr -CA ca2.pem -CAkey ca2.key "
	    "-CAcreateserial -days 2 -extfile ok.ext -out wrongca.pem"
	    ") >/dev/null 2>&1", dir);
	rc = system(cmd);
	free(cmd);
	return rc == 0 ? 0 : -1;
}

#endif
