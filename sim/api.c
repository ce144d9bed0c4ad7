/*
 * api.c: GOV.UK Pay's public API over evhttp: auth with Bearer keys,
 * create/get/cancel/capture/refunds/events with publicapi's error codes,
 * plus faults (latency, 429, 5xx, no answer, reset) injected before auth.
 * Event-loop thread. Never logs API keys or request bodies.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "sim/api.h"
#include "sim/control.h"
#include "sim/http.h"
#include "sim/lifecycle.h"
#include "sim/repr.h"
#include "sim/store.h"
#include "sim/validate.h"

struct api_faults {
	double	 latency_rate, rate_429, rate_5xx, rate_timeout, rate_reset;
	int64_t	 latency_ms;
	int64_t	 error_status;
};

struct api_hung {
	struct evhttp_request *req;
	struct api_hung *next;
};

struct api {
	struct sim	*sim;
	struct api_faults f;
	struct api_hung	*hung;
	uint64_t	 n_latency, n_429, n_5xx, n_timeout, n_reset;
};

#define API_401 "Credentials are required to access this resource."

enum api_route {
	R_NONE, R_CREATE, R_GET, R_CANCEL, R_CAPTURE, R_EVENTS, R_REFUNDS,
	R_REFUND_CREATE, R_REFUND_GET
};

/* The "Downstream system error" code of each endpoint (5xx faults). */
static const char *const api_downstream[] = {
	"P0999", "P0198", "P0298", "P0598", "P1098", "P0398", "P0898",
	"P0698", "P0798"
};

struct api *
api_new(struct sim *sim)
{
	struct api *api;

	api = xcalloc(1, sizeof *api);
	api->sim = sim;
	api->f.error_status = 500;
	return api;
}

void
api_free(struct api *api)
{
	struct api_hung *h, *next;

	if (api == NULL)
		return;
	for (h = api->hung; h != NULL; h = next) {
		next = h->next;
		evhttp_send_reply(h->req, 503, "Service Unavailable", NULL);
		free(h);
	}
	free(api);
}

static void
api_error(struct evhttp_request *req, const struct api_error *e)
{
	cJSON *o = jnew_obj();

	if (strncmp(e->field, "header:", 7) == 0)
		jadd_str(o, "header", e->field + 7);
	else if (e->field[0] != '\0')
		jadd_str(o, "field", e->field);
	jadd_str(o, "code", e->code);
	jadd_str(o, "description", e->description);
	http_reply_json(req, e->status, o);
}

/* Which account a Bearer key belongs to, or -1 (401). */
static int
api_auth(struct sim *sim, struct evhttp_request *req)
{
	const char *h;
	size_t i;

	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return -1;
	h += 7;
	for (i = 0; i < sim->n_api_keys; i++) {
		if (strcmp(sim->api_keys[i], h) == 0)
			return strncmp(h, "api_live_", 9) == 0 ?
			    SIM_ACCOUNT_LIVE : SIM_ACCOUNT_TEST;
	}
	return -1;
}

static void
api_create(struct sim *sim, struct evhttp_request *req, int account)
{
	struct create_req cr;
	struct api_error e;
	struct payment *p;
	char *body, loc[1024];
	const char *idem;
	size_t len;
	int rc;

	body = http_body(req, &len);
	idem = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Idempotency-Key");
	rc = validate_create(body, len, account, sim->cfg.reject_urls != 0,
	    idem, &cr, &e);
	free(body);
	if (rc != 0) {
		api_error(req, &e);
		return;
	}
	p = store_add(sim->store);
	p->account = account;
	p->amount = cr.amount;
	p->reference = cr.reference;
	p->description = cr.description;
	p->return_url = cr.return_url;
	p->email = cr.email;
	memcpy(p->language, cr.language, sizeof p->language);
	p->delayed_capture = cr.delayed_capture;
	p->moto = cr.moto;
	p->metadata = cr.metadata;
	p->prefill_name = cr.prefill_name;
	p->prefill_addr = cr.addr;
	p->has_prefill_addr = cr.has_addr;
	lifecycle_created(sim, p);
	sim->stats.created++;
	log_debug("payment_created", "payment_id=%s", p->id);
	xsnprintf(loc, sizeof loc, "%s/v1/payments/%s", sim->base_url, p->id);
	if (evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Location", loc) != 0)
		log_warn("http_header_failed", "header=Location");
	http_reply_json(req, 201, repr_payment(sim, p));
}

static void
api_refund_create(struct sim *sim, struct evhttp_request *req,
    struct payment *p)
{
	const char *tok, *st;
	int64_t amount, avail_given, avail;
	cJSON *root = NULL, *it;
	char *body = NULL, desc[160];
	size_t len, toklen, idx;

	body = http_body(req, &len);
	if ((root = jparse(body, len)) == NULL || !cJSON_IsObject(root)) {
		http_reply_error(req, 400, "P0697", NULL, "Unable to parse JSON");
		goto out;
	}
	it = cJSON_GetObjectItemCaseSensitive(root, "amount");
	if (it == NULL || cJSON_IsNull(it)) {
		http_reply_error(req, 400, "P0601", "amount",
		    "Missing mandatory attribute: amount");
		goto out;
	}
	if (!cJSON_IsNumber(it) ||
	    validate_raw_member(body, len, "amount", &tok, &toklen) != 0 ||
	    validate_int_token(tok, toklen, &amount) != 0 || amount < 1 ||
	    amount > 10000000) {
		http_reply_error(req, 400, "P0602", "amount",
		    "Invalid attribute value: amount. Must be a valid numeric "
		    "format between 1 and 10000000");
		goto out;
	}
	avail = p->status == PAY_SUCCESS ? p->amount - payment_refunded(p) : 0;
	it = cJSON_GetObjectItemCaseSensitive(root, "refund_amount_available");
	if (cJSON_IsNumber(it) && validate_raw_member(body, len,
	    "refund_amount_available", &tok, &toklen) == 0 &&
	    validate_int_token(tok, toklen, &avail_given) == 0 &&
	    avail_given != avail) {
		http_reply_error(req, 412, "P0604", NULL,
		    "Refund amount available mismatch.");
		goto out;
	}
	if (p->status != PAY_SUCCESS || avail <= 0 || amount > avail) {
		st = p->status == PAY_SUCCESS ? (avail <= 0 ? "full" :
		    "available") : p->status < PAY_SUCCESS ? "pending" :
		    "unavailable";
		xsnprintf(desc, sizeof desc, "The payment is not available for "
		    "refund. Payment refund status: %s", st);
		http_reply_error(req, 400, "P0603", NULL, desc);
		goto out;
	}
	idx = lifecycle_refund(sim, p, amount);
	http_reply_json(req, 202, repr_refund(sim, p, &p->refunds[idx]));
out:
	cJSON_Delete(root);
	free(body);
}

static const struct refund *
api_find_refund(const struct payment *p, const char *id)
{
	size_t i;

	for (i = 0; i < p->nrefunds; i++) {
		if (strcmp(p->refunds[i].id, id) == 0)
			return &p->refunds[i];
	}
	return NULL;
}

static void
api_not_found(struct evhttp_request *req, enum api_route r)
{
	static const char *const codes[] = { NULL, NULL, "P0200", "P0500",
	    "P1000", "P0300", "P0800", "P0600", "P0700" };

	http_reply_error(req, 404, codes[r], NULL, "Not found");
}

static void
api_payment_op(struct sim *sim, struct evhttp_request *req, enum api_route r,
    struct payment *p, const char *refund_id)
{
	const struct refund *rf;

	switch (r) {
	case R_GET:
		http_reply_json(req, 200, repr_payment(sim, p));
		break;
	case R_CANCEL:
		if (lifecycle_service_cancel(sim, p) != 0)
			http_reply_error(req, 400, "P0501", NULL,
			    "Cancellation of payment failed");
		else
			http_reply_empty(req, 204);
		break;
	case R_CAPTURE:
		if (lifecycle_capture(sim, p) != 0)
			http_reply_error(req, 400, "P1001", NULL,
			    "Capture of payment failed");
		else
			http_reply_empty(req, 204);
		break;
	case R_EVENTS:
		http_reply_json(req, 200, repr_events(sim, p));
		break;
	case R_REFUNDS:
		http_reply_json(req, 200, repr_refunds(sim, p));
		break;
	case R_REFUND_CREATE:
		api_refund_create(sim, req, p);
		break;
	case R_REFUND_GET:
		if ((rf = api_find_refund(p, refund_id)) == NULL)
			api_not_found(req, r);
		else
			http_reply_json(req, 200, repr_refund(sim, p, rf));
		break;
	default:
		http_reply_dropwizard(req, 404);
		break;
	}
}

/* Match the path; R_NONE with *bad_method set means 405. */
static enum api_route
api_match(int method, char **parts, int n, int *bad_method)
{
	int get = method == EVHTTP_REQ_GET, post = method == EVHTTP_REQ_POST;
	enum api_route r = R_NONE;
	int want_post = 0;

	*bad_method = 0;
	if (n < 2 || strcmp(parts[0], "v1") != 0 ||
	    strcmp(parts[1], "payments") != 0)
		return R_NONE;
	if (n == 2) {
		r = R_CREATE;
		want_post = 1;
	} else if (n == 3)
		r = R_GET;
	else if (n == 4 && strcmp(parts[3], "cancel") == 0) {
		r = R_CANCEL;
		want_post = 1;
	} else if (n == 4 && strcmp(parts[3], "capture") == 0) {
		r = R_CAPTURE;
		want_post = 1;
	} else if (n == 4 && strcmp(parts[3], "events") == 0)
		r = R_EVENTS;
	else if (n == 4 && strcmp(parts[3], "refunds") == 0)
		return post ? R_REFUND_CREATE : get ? R_REFUNDS :
		    (*bad_method = 1, R_NONE);
	else if (n == 5 && strcmp(parts[3], "refunds") == 0)
		r = R_REFUND_GET;
	if (r == R_NONE)
		return R_NONE;
	if ((want_post && !post) || (!want_post && !get)) {
		*bad_method = 1;
		return R_NONE;
	}
	return r;
}

static void
api_dispatch(struct sim *sim, struct evhttp_request *req)
{
	char buf[1024], *parts[HTTP_MAX_PARTS];
	enum api_route r;
	struct payment *p;
	int n, bad, account;

	n = http_path(req, buf, sizeof buf, parts);
	r = api_match(evhttp_request_get_command(req), parts, n, &bad);
	if ((account = api_auth(sim, req)) < 0) {
		http_reply_raw(req, 401, "text/plain", API_401,
		    sizeof API_401 - 1);
		return;
	}
	if (r == R_NONE) {
		http_reply_dropwizard(req, bad ? 405 : 404);
		return;
	}
	if (r == R_CREATE) {
		api_create(sim, req, account);
		return;
	}
	if ((p = store_by_id(sim->store, parts[2], account)) == NULL) {
		api_not_found(req, r);
		return;
	}
	api_payment_op(sim, req, r, p, n == 5 ? parts[4] : NULL);
}

struct api_deferred {
	struct sim		*sim;
	struct evhttp_request	*req;
};

static void
api_delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api_deferred *d = arg;

	/* If the client went away, replying just frees the request. */
	api_dispatch(d->sim, d->req);
	free(d);
}

static void
api_reset_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api_deferred *d = arg;
	struct evhttp_request *req = d->req;
	struct evhttp_connection *evcon;
	struct bufferevent *bev;
	struct linger lg = { 1, 0 };
	evutil_socket_t s;

	free(d);
	if ((evcon = evhttp_request_get_connection(req)) == NULL) {
		evhttp_send_reply(req, 500, "Internal Server Error", NULL);
		return;
	}
	bev = evhttp_connection_get_bufferevent(evcon);
	if (bev != NULL && (s = bufferevent_getfd(bev)) >= 0 &&
	    setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
		log_warn("fault_reset_linger_failed", NULL);
	evhttp_connection_free(evcon);	/* frees req too; RST on close */
}

static int
api_defer(struct sim *sim, struct evhttp_request *req, int64_t ms,
    event_callback_fn cb)
{
	struct api_deferred *d;
	struct timeval tv;

	d = xcalloc(1, sizeof *d);
	d->sim = sim;
	d->req = req;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_base_once(sim->base, -1, EV_TIMEOUT, cb, d, &tv) != 0) {
		log_error("event_base_once_failed", NULL);
		free(d);
		return -1;
	}
	return 0;
}

/* Apply one injected fault, or return 0 to serve the request normally. */
static int
api_fault(struct api *api, struct evhttp_request *req)
{
	struct sim *sim = api->sim;
	struct api_faults *f = &api->f;
	struct api_hung *h;
	char buf[1024], *parts[HTTP_MAX_PARTS];
	enum api_route r;
	int n, bad;

	if (f->rate_timeout > 0 && sim_random(sim) < f->rate_timeout) {
		api->n_timeout++;
		h = xcalloc(1, sizeof *h);
		h->req = req;
		h->next = api->hung;
		api->hung = h;
		return 1;
	}
	if (f->rate_reset > 0 && sim_random(sim) < f->rate_reset) {
		api->n_reset++;
		if (api_defer(sim, req, 0, api_reset_cb) != 0)
			evhttp_send_reply(req, 500, "Internal Server Error",
			    NULL);
		return 1;
	}
	if (f->rate_429 > 0 && sim_random(sim) < f->rate_429) {
		api->n_429++;
		http_reply_error(req, 429, "P0900", NULL, "Too many requests");
		return 1;
	}
	if (f->rate_5xx > 0 && sim_random(sim) < f->rate_5xx) {
		api->n_5xx++;
		n = http_path(req, buf, sizeof buf, parts);
		r = api_match(evhttp_request_get_command(req), parts, n, &bad);
		if (f->error_status == 500)
			http_reply_error(req, 500, api_downstream[r], NULL,
			    "Downstream system error");
		else
			http_reply_error(req, (int)f->error_status, "P0999",
			    NULL, "GOV.UK Pay is temporarily down");
		return 1;
	}
	if (f->latency_ms > 0 && f->latency_rate > 0 &&
	    sim_random(sim) < f->latency_rate) {
		api->n_latency++;
		if (api_defer(sim, req, f->latency_ms, api_delayed_cb) != 0)
			return 0;
		return 1;
	}
	return 0;
}

static void
api_secure(struct sim *sim, struct evhttp_request *req, char **parts, int n)
{
	char page[512], *body = NULL;
	const char *token = NULL, *cause;
	struct evkeyvalq form;
	struct payment *p;
	size_t len;

	TAILQ_INIT(&form);
	if (n == 2 && evhttp_request_get_command(req) == EVHTTP_REQ_GET)
		token = parts[1];
	else if (n == 1 && evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		body = http_body(req, &len);
		if (evhttp_parse_query_str(body, &form) == 0)
			token = evhttp_find_header(&form, "chargeTokenId");
	}
	if (token == NULL || (p = store_by_token(sim->store, token)) == NULL) {
		xsnprintf(page, sizeof page, "<!doctype html><title>Not found"
		    "</title><p>Page not found</p>\n");
		http_reply_raw(req, 404, "text/html; charset=utf-8", page,
		    strlen(page));
	} else if (lifecycle_visit(sim, p, &cause) != 0) {
		xsnprintf(page, sizeof page, "<!doctype html><title>Session "
		    "expired</title><p>Your payment session has expired</p>\n");
		http_reply_raw(req, 400, "text/html; charset=utf-8", page,
		    strlen(page));
	} else {
		xsnprintf(page, sizeof page, "<!doctype html><title>Enter card "
		    "details</title><p>payhook-sim payment page for %s. Pay "
		    "with POST /_sim/payments/%s/card</p>\n", p->id, p->id);
		http_reply_raw(req, 200, "text/html; charset=utf-8", page,
		    strlen(page));
	}
	evhttp_clear_headers(&form);
	free(body);
}

void
api_route_cb(struct evhttp_request *req, void *arg)
{
	struct sim *sim = arg;
	char buf[1024], *parts[HTTP_MAX_PARTS];
	int n;

	n = http_path(req, buf, sizeof buf, parts);
	if (n >= 1 && strcmp(parts[0], "_sim") == 0) {
		sim->stats.control_requests++;
		control_handle(sim, req, parts, n);
		return;
	}
	if (n >= 1 && strcmp(parts[0], "secure") == 0) {
		api_secure(sim, req, parts, n);
		return;
	}
	sim->stats.api_requests++;
	if (api_fault(sim->api, req)) {
		sim->stats.api_faults++;
		return;
	}
	api_dispatch(sim, req);
}

static int
api_rate(const cJSON *o, const char *key, double *out, const char **cause)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	if (it == NULL)
		return 0;
	if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1) {
		*cause = "rates must be numbers from 0 to 1";
		return -1;
	}
	*out = it->valuedouble;
	return 0;
}

int
api_set_faults(struct api *api, const cJSON *o, const char **cause)
{
	struct api_faults f = api->f;
	const cJSON *it;

	if (!cJSON_IsObject(o)) {
		*cause = "body must be a JSON object";
		return -1;
	}
	if (api_rate(o, "latency_rate", &f.latency_rate, cause) != 0 ||
	    api_rate(o, "rate_429", &f.rate_429, cause) != 0 ||
	    api_rate(o, "rate_5xx", &f.rate_5xx, cause) != 0 ||
	    api_rate(o, "rate_timeout", &f.rate_timeout, cause) != 0 ||
	    api_rate(o, "rate_reset", &f.rate_reset, cause) != 0)
		return -1;
	if ((it = cJSON_GetObjectItemCaseSensitive(o, "latency_ms")) != NULL) {
		if (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
		    it->valuedouble > 600000) {
			*cause = "latency_ms must be 0..600000";
			return -1;
		}
		f.latency_ms = (int64_t)it->valuedouble;
		if (cJSON_GetObjectItemCaseSensitive(o, "latency_rate") == NULL)
			f.latency_rate = f.latency_ms > 0 ? 1.0 : 0.0;
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(o, "error_status")) != NULL) {
		if (!cJSON_IsNumber(it) || it->valuedouble < 500 ||
		    it->valuedouble > 599) {
			*cause = "error_status must be 500..599";
			return -1;
		}
		f.error_status = (int64_t)it->valuedouble;
	}
	api->f = f;
	return 0;
}

void
api_clear_faults(struct api *api)
{
	memset(&api->f, 0, sizeof api->f);
	api->f.error_status = 500;
}

cJSON *
api_faults_json(const struct api *api)
{
	cJSON *o, *c;

	o = jnew_obj();
	jadd_int(o, "latency_ms", api->f.latency_ms);
	jadd_num(o, "latency_rate", api->f.latency_rate);
	jadd_num(o, "rate_429", api->f.rate_429);
	jadd_num(o, "rate_5xx", api->f.rate_5xx);
	jadd_num(o, "rate_timeout", api->f.rate_timeout);
	jadd_num(o, "rate_reset", api->f.rate_reset);
	jadd_int(o, "error_status", api->f.error_status);
	c = jadd_obj(o, "injected");
	jadd_int(c, "latency", (int64_t)api->n_latency);
	jadd_int(c, "429", (int64_t)api->n_429);
	jadd_int(c, "5xx", (int64_t)api->n_5xx);
	jadd_int(c, "timeout", (int64_t)api->n_timeout);
	jadd_int(c, "reset", (int64_t)api->n_reset);
	return o;
}
