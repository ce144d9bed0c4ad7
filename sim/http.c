/*
 * http.c: evhttp reply helpers. Event-loop thread. Never logs bodies or
 * headers (they may hold API keys or card data).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "sim/http.h"

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

static void
http_headers(struct evhttp_request *req, const char *ctype)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if ((ctype != NULL &&
	    evhttp_add_header(h, "Content-Type", ctype) != 0) ||
	    evhttp_add_header(h, "Cache-Control", "no-store") != 0 ||
	    evhttp_add_header(h, "Pragma", "no-cache") != 0)
		log_warn("http_header_failed", NULL);
}

void
http_reply_raw(struct evhttp_request *req, int status, const char *ctype,
    const char *body, size_t len)
{
	struct evbuffer *buf;

	http_headers(req, ctype);
	if ((buf = evbuffer_new()) == NULL || evbuffer_add(buf, body, len) != 0) {
		log_error("http_reply_failed", "status=%d", status);
		if (buf != NULL)
			evbuffer_free(buf);
		evhttp_send_reply(req, 500, "Internal Server Error", NULL);
		return;
	}
	evhttp_send_reply(req, status, http_reason(status), buf);
	evbuffer_free(buf);
}

void
http_reply_json(struct evhttp_request *req, int status, cJSON *body)
{
	char *text;

	text = jprint(body);
	cJSON_Delete(body);
	http_reply_raw(req, status, "application/json", text, strlen(text));
	cJSON_free(text);
}

void
http_reply_empty(struct evhttp_request *req, int status)
{
	http_headers(req, NULL);
	evhttp_send_reply(req, status, http_reason(status), NULL);
}

void
http_reply_error(struct evhttp_request *req, int status, const char *code,
    const char *field, const char *description)
{
	cJSON *o = jnew_obj();

	jadd_str(o, "field", field);
	jadd_str(o, "code", code);
	jadd_str(o, "description", description);
	http_reply_json(req, status, o);
}

void
http_reply_dropwizard(struct evhttp_request *req, int status)
{
	char msg[64];
	cJSON *o = jnew_obj();

	jadd_int(o, "code", status);
	xsnprintf(msg, sizeof msg, "HTTP %d %s", status, http_reason(status));
	jadd_str(o, "message", msg);
	http_reply_json(req, status, o);
}

char *
http_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *body;

	body = xmalloc(n + 1);
	if (n > 0 && evbuffer_copyout(in, body, n) != (ev_ssize_t)n)
		n = 0;
	body[n] = '\0';
	*len = n;
	return body;
}

int
http_path(struct evhttp_request *req, char *buf, size_t len, char **parts)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path;
	char *p, *tok;
	int n = 0;

	path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || strlen(path) >= len)
		return -1;
	memcpy(buf, path, strlen(path) + 1);
	for (p = buf; (tok = strsep(&p, "/")) != NULL;) {
		if (*tok == '\0')
			continue;
		if (n == HTTP_MAX_PARTS)
			return -1;
		parts[n++] = tok;
	}
	return n;
}

const char *
http_query(struct evhttp_request *req, const char *key, char *buf, size_t len)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct evkeyvalq q;
	const char *query, *v;
	const char *ret = NULL;

	query = uri ? evhttp_uri_get_query(uri) : NULL;
	if (query == NULL || evhttp_parse_query_str(query, &q) != 0)
		return NULL;
	if ((v = evhttp_find_header(&q, key)) != NULL) {
		xsnprintf(buf, len, "%s", v);
		ret = buf;
	}
	evhttp_clear_headers(&q);
	return ret;
}
