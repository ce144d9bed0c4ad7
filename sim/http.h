/*
 * http.h: evhttp reply helpers shared by the API and the control surface:
 * JSON replies with the public API's headers, GOV.UK Pay error bodies,
 * body and path helpers. Event-loop thread; each reply is sent once.
 */
#ifndef PAYHOOK_SIM_HTTP_H
#define PAYHOOK_SIM_HTTP_H

#include <stddef.h>

#include "sim/json.h"

struct evhttp_request;

#define HTTP_MAX_PARTS 8

/* Send body (consumed) as application/json with no-store headers. */
void	http_reply_json(struct evhttp_request *, int status, cJSON *body);
/* Send an empty reply (204 and friends). */
void	http_reply_empty(struct evhttp_request *, int status);
/* Send raw bytes with the given content type. */
void	http_reply_raw(struct evhttp_request *, int status, const char *ctype,
	    const char *body, size_t len);
/* A GOV.UK Pay RequestError {field?, header?, code, description}. */
void	http_reply_error(struct evhttp_request *, int status, const char *code,
	    const char *field, const char *description);
/* Dropwizard's own {"code":N,"message":"HTTP N ..."} for routing errors. */
void	http_reply_dropwizard(struct evhttp_request *, int status);
/* The request body, NUL-terminated; caller frees. */
char	*http_body(struct evhttp_request *, size_t *len);
/* Split the request path on '/' into parts; returns the count or -1. */
int	 http_path(struct evhttp_request *, char *buf, size_t len,
	    char **parts);
/* A query parameter, copied into buf; NULL when absent. */
const char *http_query(struct evhttp_request *, const char *key, char *buf,
	    size_t len);
const char *http_reason(int status);

#endif
