/*
 * admin.c: /healthz (the process runs), /readyz (every registered check
 * passes) and /metrics (Prometheus text format) on the admin listener.
 * Main thread only. Answers only GET/HEAD; never exposes secrets or PII.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "receiver/admin.h"
#include "receiver/listener.h"

#define ADMIN_MAX_CHECKS 8

struct admin_check {
	const char	*name;
	admin_check_fn	 fn;
	void		*arg;
};

struct admin {
	struct evhttp		*http;
	struct listener		*listener;
	struct admin_check	 checks[ADMIN_MAX_CHECKS];
	size_t			 nchecks;
};

static void
admin_send(struct evhttp_request *req, int code, const char *reason,
    const char *type, struct evbuffer *body)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", type);
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(body, evbuffer_get_length(body));
	evhttp_send_reply(req, code, reason, body);
}

static void
admin_readyz(struct admin *a, struct evhttp_request *req,
    struct evbuffer *body)
{
	const char *why;
	size_t i;
	int ready = 1, ok;

	evbuffer_add_printf(body, "{\"checks\":{");
	for (i = 0; i < a->nchecks; i++) {
		why = "ok";
		ok = a->checks[i].fn(a->checks[i].arg, &why);
		ready &= ok;
		evbuffer_add_printf(body, "%s\"%s\":\"%s\"", i ? "," : "",
		    a->checks[i].name, ok ? "ok" : why);
	}
	evbuffer_add_printf(body, "},\"ready\":%s}\n", ready ? "true" :
	    "false");
	admin_send(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
	    "application/json", body);
}

static void
admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *body;
	char *text;
	size_t len;

	listener_request_done(a->listener, req);
	if ((body = evbuffer_new()) == NULL)
		abort();
	if (path == NULL) {
		evbuffer_add_printf(body, "{\"error\":\"bad request\"}\n");
		admin_send(req, 400, "Bad Request", "application/json", body);
	} else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		evbuffer_add_printf(body, "{\"error\":\"method not allowed; "
		    "use GET\"}\n");
		admin_send(req, 405, "Method Not Allowed", "application/json",
		    body);
	} else if (strcmp(path, "/healthz") == 0) {
		evbuffer_add_printf(body, "{\"status\":\"ok\"}\n");
		admin_send(req, 200, "OK", "application/json", body);
	} else if (strcmp(path, "/readyz") == 0) {
		admin_readyz(a, req, body);
	} else if (strcmp(path, "/metrics") == 0) {
		text = metrics_render(&len);
		evbuffer_add(body, text, len);
		free(text);
		admin_send(req, 200, "OK", "text/plain; version=0.0.4; "
		    "charset=utf-8", body);
	} else {
		evbuffer_add_printf(body, "{\"error\":\"not found\"}\n");
		admin_send(req, 404, "Not Found", "application/json", body);
	}
	evbuffer_free(body);
}

struct admin *
admin_new(struct event_base *base, const char *addr, char **cause)
{
	struct listener_config lc;
	struct admin *a;

	a = xcalloc(1, sizeof *a);
	if ((a->http = evhttp_new(base)) == NULL)
		abort();
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_max_headers_size(a->http, 16384);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(a->http, admin_request_cb, a);
	memset(&lc, 0, sizeof lc);
	lc.addr = addr;
	lc.max_connections = 64;
	lc.request_timeout_ms = 10000;
	if ((a->listener = listener_new(base, a->http, &lc, cause)) == NULL) {
		admin_free(a);
		return NULL;
	}
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->http != NULL)
		evhttp_free(a->http);
	listener_free(a->listener);
	free(a);
}

void
admin_add_check(struct admin *a, const char *name, admin_check_fn fn,
    void *arg)
{
	if (a->nchecks == ADMIN_MAX_CHECKS)
		abort();
	a->checks[a->nchecks].name = name;
	a->checks[a->nchecks].fn = fn;
	a->checks[a->nchecks].arg = arg;
	a->nchecks++;
}

const char *
admin_address(const struct admin *a)
{
	return listener_address(a->listener);
}
