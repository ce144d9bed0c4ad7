/*
 * server.c: the webhook endpoint, on its own thread (ph-http) with its own
 * event_base. Each request is checked in the order path, method, content
 * type, signature, body; the signed webhooks read in one loop pass are
 * handed as a batch to the main thread, which stores them in the journal
 * (server_store.c), and answered here once that commit is durable. So the
 * HTTP work and the journal's run on two cores side by side. Never echoes
 * a body, signature or secret; never touches the journal's connection.
 */
#include <string.h>
#include <time.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/sha.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "receiver/json.h"
#include "receiver/listener.h"
#include "receiver/server.h"
#include "receiver/server_int.h"
#include "receiver/signature.h"
#include "receiver/webhook.h"

#define SERVER_RETRY_AFTER	"5"
#define SERVER_LEAVE_GRACE_MS	50	/* stopping: answers reach sockets */

/* Send a small static JSON body with code; extra header optional. */
static void
server_reply(struct server *s, struct evhttp_request *req, int code,
    const char *reason, const char *json, const char *hname,
    const char *hvalue)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (hname != NULL)
		evhttp_add_header(out, hname, hvalue);
	if (atomic_load(&s->shutting_down))
		evhttp_add_header(out, "Connection", "close");
	/* A HEAD answer has headers only (RFC 9110 9.3.2). */
	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
		evbuffer_add_reference(s->reply, json, strlen(json), NULL,
		    NULL);
	evhttp_send_reply(req, code, reason, s->reply);
	/* evhttp moves the body out, except for a request it detached (the
	 * client left) and frees at once: never let it join the next one. */
	evbuffer_drain(s->reply, evbuffer_get_length(s->reply));
}

static void
server_error(struct server *s, struct evhttp_request *req, int code,
    const char *reason, const char *json)
{
	server_reply(s, req, code, reason, json, NULL, NULL);
}

int
server_may_warn(struct server_warn *w)
{
	int64_t now = util_mono_ms();

	if (w->last_ms != 0 && now - w->last_ms < 1000) {
		w->suppressed++;
		return 0;
	}
	w->last_ms = now;
	return 1;
}

static void
server_reject_signature(struct server *s, struct evhttp_request *req,
    int kind, const char *why, const char *json)
{
	metric_inc(&s->m_sig_fail[kind]);
	if (server_may_warn(&s->http_warn)) {
		struct evhttp_connection *evcon;
		const char *peer = "?";
		ev_uint16_t port = 0;
		char *addr = NULL;

		if ((evcon = evhttp_request_get_connection(req)) != NULL) {
			evhttp_connection_get_peer(evcon, &addr, &port);
			if (addr != NULL)
				peer = addr;
		}
		log_warn("signature_rejected", "reason=%s peer=%s "
		    "suppressed=%llu", why, peer,
		    (unsigned long long)s->http_warn.suppressed);
		s->http_warn.suppressed = 0;
	}
	server_error(s, req, 401, "Unauthorized", json);
}

/* application/json, optionally with parameters; charset must be UTF-8. */
static int
server_is_json(const char *ct)
{
	const char *p;
	size_t n;

	if (ct == NULL)
		return 0;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n != strlen("application/json") ||
	    strncasecmp(ct, "application/json", n) != 0)
		return 0;
	if ((p = strcasestr(ct, "charset=")) != NULL) {
		p += strlen("charset=");
		if (*p == '"')
			p++;
		if (strncasecmp(p, "utf-8", 5) != 0 &&
		    strncasecmp(p, "utf8", 4) != 0)
			return 0;
	}
	return 1;
}

/* What the checks need from the request headers, in one pass. */
struct server_headers {
	int		 content_length;	/* how many */
	int		 transfer_encoding;
	int		 signatures;
	const char	*signature;		/* the last one */
	const char	*content_type;		/* the first one */
};

static void
server_scan_headers(struct evhttp_request *req, struct server_headers *h)
{
	struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;

	memset(h, 0, sizeof *h);
	TAILQ_FOREACH(kv, hdrs, next) {
		if (strcasecmp(kv->key, "Content-Length") == 0)
			h->content_length++;
		else if (strcasecmp(kv->key, "Transfer-Encoding") == 0)
			h->transfer_encoding++;
		else if (strcasecmp(kv->key, "Pay-Signature") == 0) {
			h->signature = kv->value;
			h->signatures++;
		} else if (strcasecmp(kv->key, "Content-Type") == 0 &&
		    h->content_type == NULL)
			h->content_type = kv->value;
	}
}

/*
 * Framing libevent 2.1 lets through but RFC 9112 6.3 forbids: two
 * Content-Length headers, or Content-Length with Transfer-Encoding. A
 * proxy in front could read such a request differently (smuggling).
 */
static int
server_ambiguous_framing(const struct server_headers *h)
{
	return h->content_length > 1 || h->transfer_encoding > 1 ||
	    (h->content_length > 0 && h->transfer_encoding > 0);
}

static struct server_pending *
server_batch_add(struct server *s, struct evhttp_request *req)
{
	struct server_batch *b;
	struct server_pending *p;
	struct json_tok *toks;
	size_t n, tokcap;

	if ((b = s->open) == NULL) {
		if ((b = TAILQ_FIRST(&s->spare)) != NULL)
			TAILQ_REMOVE(&s->spare, b, entry);
		else
			b = xcalloc(1, sizeof *b);
		b->n = 0;
		b->failed = 0;
		b->ticket = 0;
		s->open = b;
		/* Handed over after every callback already active. */
		event_active(s->pass_ev, EV_TIMEOUT, 0);
	}
	if (b->n == b->cap) {
		n = b->cap == 0 ? 64 : b->cap * 2;
		b->p = xreallocarray(b->p, n, sizeof *b->p);
		memset(b->p + b->cap, 0, (n - b->cap) * sizeof *b->p);
		b->cap = n;
	}
	p = &b->p[b->n++];
	toks = p->toks;
	tokcap = p->tokcap;
	memset(p, 0, sizeof *p);
	p->toks = toks;
	p->tokcap = tokcap;
	p->req = req;
	return p;
}

/* Keep a copy of the tokens webhook_parse() just made of p's body. */
static void
server_keep_tokens(struct server *s, struct server_pending *p)
{
	const struct json_tok *t;
	size_t n;

	if ((t = webhook_parser_tokens(s->parser, &n)) == NULL)
		return;
	if (n > p->tokcap) {
		p->toks = xreallocarray(p->toks, n, sizeof *p->toks);
		p->tokcap = n;
	}
	memcpy(p->toks, t, n * sizeof *t);
	p->ntoks = n;
}

static void
server_batch_free(struct server_batch *b)
{
	size_t i;

	for (i = 0; i < b->cap; i++)
		free(b->p[i].toks);
	free(b->p);
	free(b);
}

static void
server_quarantine_id(const void *body, size_t len, char *out, size_t outlen)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char hex[2 * SHA256_DIGEST_LENGTH + 1];

	SHA256(body, len, md);
	util_hex_encode(md, sizeof md, hex);
	xsnprintf(out, outlen, "q-%s", hex);
}

static void
server_webhook(struct server *s, struct evhttp_request *req, int secret,
    const unsigned char *body, size_t len)
{
	struct server_pending *p;
	struct webhook wh;

	p = server_batch_add(s, req);
	p->secret = secret;
	p->body = body;
	p->len = len;
	p->received_ms = util_now_ms();
	p->read_ns = util_mono_ns();
	if (webhook_parse(s->parser, (const char *)body, len, &wh,
	    p->reason) == 0) {
		memcpy(p->key, wh.message_id, sizeof wh.message_id);
		memcpy(p->payment_id, wh.resource_id, sizeof p->payment_id);
		memcpy(p->event_type, wh.event_type, sizeof p->event_type);
		p->occurred_ms = wh.created_ms;
		p->outcome = SERVER_ACCEPTED;	/* or duplicate, once stored */
		/* Only a fused event (cross_check = off) reads them. */
		if (!s->cfg->cross_check)
			server_keep_tokens(s, p);
	} else {
		server_quarantine_id(body, len, p->key, sizeof p->key);
		p->outcome = SERVER_QUARANTINED;
		p->quarantine = 1;
		log_warn("webhook_quarantined", "key=%.18s reason=\"%s\"",
		    p->key, p->reason);
	}
}

static void
server_request_cb(struct evhttp_request *req, void *arg)
{
	struct server *s = arg;
	const struct evhttp_uri *uri;
	struct server_headers h;
	const char *path;
	struct evbuffer *in;
	unsigned char *body;
	size_t len;
	int secret;

	listener_request_done(s->listener, req);
	server_scan_headers(req, &h);
	if (server_ambiguous_framing(&h)) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Connection", "close");
		server_error(s, req, 400, "Bad Request",
		    "{\"error\":\"ambiguous message framing (Content-Length "
		    "and Transfer-Encoding)\"}");
		return;
	}
	uri = evhttp_request_get_evhttp_uri(req);
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || strcmp(path, s->cfg->webhook_path) != 0) {
		server_error(s, req, 404, "Not Found",
		    "{\"error\":\"not found\"}");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		server_reply(s, req, 405, "Method Not Allowed",
		    "{\"error\":\"method not allowed; use POST\"}", "Allow",
		    "POST");
		return;
	}
	if (atomic_load(&s->shutting_down)) {
		server_reply(s, req, 503, "Service Unavailable",
		    "{\"error\":\"shutting down; retry later\"}", "Retry-After",
		    SERVER_RETRY_AFTER);
		return;
	}
	if (!server_is_json(h.content_type)) {
		server_error(s, req, 415, "Unsupported Media Type",
		    "{\"error\":\"unsupported content type; expected "
		    "application/json\"}");
		return;
	}
	if (h.signatures == 0) {
		server_reject_signature(s, req, 0, "missing",
		    "{\"error\":\"missing Pay-Signature header\"}");
		return;
	}
	if (h.signatures > 1) {
		server_reject_signature(s, req, 1, "repeated",
		    "{\"error\":\"more than one Pay-Signature header\"}");
		return;
	}
	in = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(in);
	body = evbuffer_pullup(in, -1);
	if (body == NULL)
		body = (unsigned char *)"";
	secret = signature_verify(s->sig, body, len, h.signature,
	    strlen(h.signature));
	if (secret == SIGNATURE_MALFORMED) {
		server_reject_signature(s, req, 1, "malformed",
		    "{\"error\":\"malformed Pay-Signature header; expected 64 "
		    "lower-case hex characters\"}");
		return;
	}
	if (secret == SIGNATURE_MISMATCH) {
		server_reject_signature(s, req, 2, "mismatch",
		    "{\"error\":\"signature does not match\"}");
		return;
	}
	metric_inc(&s->m_sig_ok[secret - 1]);
	server_webhook(s, req, secret, body, len);
}

static void
server_answer(struct server *s, const struct server_pending *p)
{
	static const char *names[] = { "accepted", "duplicate", "quarantined" };

	metric_observe(&s->m_reply, (uint64_t)(util_mono_ns() - p->read_ns));
	switch (p->outcome) {
	case SERVER_ACCEPTED:
		server_reply(s, p->req, 200, "OK", "{\"status\":\"accepted\"}",
		    NULL, NULL);
		break;
	case SERVER_DUPLICATE:
		server_reply(s, p->req, 200, "OK", "{\"status\":\"duplicate\"}",
		    NULL, NULL);
		break;
	case SERVER_QUARANTINED:
		server_reply(s, p->req, 200, "OK",
		    "{\"status\":\"quarantined\"}", NULL, NULL);
		break;
	case SERVER_FAILED:
		server_reply(s, p->req, 503, "Service Unavailable",
		    "{\"error\":\"journal unavailable; retry later\"}",
		    "Retry-After", SERVER_RETRY_AFTER);
		return;
	}
	metric_inc(&s->m_webhooks[p->outcome]);
	if (p->outcome != SERVER_QUARANTINED)
		log_debug("webhook", "result=%s event_id=%s payment_id=%s "
		    "event_type=%s secret=%d", names[p->outcome], p->key,
		    p->payment_id, p->event_type, p->secret);
}

/* Answer every webhook of b and recycle it; counts the new rows into
 * fresh[0] (accepted) and fresh[1] (quarantined). */
static void
server_finish_batch(struct server *s, struct server_batch *b, int fresh[2])
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		if (b->failed)
			b->p[i].outcome = SERVER_FAILED;
		if (b->p[i].outcome == SERVER_ACCEPTED)
			fresh[0]++;
		else if (b->p[i].outcome == SERVER_QUARANTINED)
			fresh[1]++;
		server_answer(s, &b->p[i]);
	}
	b->n = 0;
	TAILQ_INSERT_HEAD(&s->spare, b, entry);
}

void
server_release(struct server *s)
{
	struct server_batch *b;
	uint64_t synced, failed;
	int fresh[2] = { 0, 0 };

	if (s->journal == NULL)
		return;		/* never attached: nothing was stored */
	synced = journal_synced(s->journal, &failed);
	while ((b = TAILQ_FIRST(&s->waiting)) != NULL) {
		if (!b->failed && b->ticket > synced && b->ticket > failed)
			break;
		TAILQ_REMOVE(&s->waiting, b, entry);
		/* After a failed fsync Linux may drop the dirty pages and
		 * report the next fsync clean: never claim those rows. */
		if (!b->failed && b->ticket <= failed) {
			b->failed = 1;
			/* Once per group commit: its batches share a ticket. */
			if (b->ticket != s->failed_counted)
				metric_inc(&s->m_commit_failed);
			s->failed_counted = b->ticket;
		}
		/* Ready or not follows the last batch answered. */
		if (b->failed)
			atomic_store(&s->journal_ok, 0);
		else if (!atomic_exchange(&s->journal_ok, 1))
			log_info("journal_recovered", NULL);
		server_finish_batch(s, b, fresh);
	}
	if (fresh[0] + fresh[1] > 0) {
		atomic_fetch_add(&s->fresh_ok, (uint64_t)fresh[0]);
		atomic_fetch_add(&s->fresh_q, (uint64_t)fresh[1]);
		event_active(s->fresh_ev, EV_TIMEOUT, 0);
	}
}

void
server_hand_over(struct server *s)
{
	struct server_batch *b = s->open;

	if (b == NULL)
		return;
	s->open = NULL;
	pthread_mutex_lock(&s->lock);
	TAILQ_INSERT_TAIL(&s->to_store, b, entry);
	pthread_mutex_unlock(&s->lock);
	event_active(s->store_ev, EV_TIMEOUT, 0);
}

/* The end of a loop pass: what it read goes to the main thread to be
 * stored, while this loop goes on reading the next batch. */
static void
server_pass_cb(evutil_socket_t fd, short what, void *arg)
{
	server_hand_over(arg);
}

/* The main thread handed batches back, or a sync ended: answer what is
 * durable. */
static void
server_back_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	pthread_mutex_lock(&s->lock);
	TAILQ_CONCAT(&s->waiting, &s->stored, entry);
	pthread_mutex_unlock(&s->lock);
	server_release(s);
}

/*
 * server_shutdown: accept no more. server_free, in two steps: hand the
 * open batch over (later requests are answered 503), then, once the main
 * thread has stored and synced everything, answer it and leave the loop
 * after a moment for the answers to reach the sockets.
 */
static void
server_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct timeval grace = { 0, SERVER_LEAVE_GRACE_MS * 1000 };
	int quit;

	listener_close(s->listener);
	pthread_mutex_lock(&s->lock);
	quit = s->quit;
	pthread_mutex_unlock(&s->lock);
	switch (quit) {
	case SERVER_QUIT_HAND:
		server_hand_over(s);
		pthread_mutex_lock(&s->lock);
		s->handed_over = 1;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		break;
	case SERVER_QUIT_LEAVE:
		server_back_cb(-1, 0, s);
		event_base_loopexit(s->hbase, listener_connections(
		    s->listener) > 0 ? &grace : NULL);
		break;
	}
}

static void *
server_thread(void *arg)
{
	struct server *s = arg;

	util_thread_name("ph-http");
	if (event_base_loop(s->hbase, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
		log_error("event_loop_failed", "thread=ph-http");
	return NULL;
}

struct server *
server_new(struct event_base *base, const struct config *cfg,
    struct signature *sig, char **cause)
{
	struct listener_config lc;
	struct timeval tv = { cfg->request_timeout_ms / 1000,
	    (cfg->request_timeout_ms % 1000) * 1000 };
	struct server *s;

	s = xcalloc(1, sizeof *s);
	s->base = base;
	s->cfg = cfg;
	s->sig = sig;
	s->journal_ok = 1;
	s->parser = webhook_parser_new();
	TAILQ_INIT(&s->waiting);
	TAILQ_INIT(&s->spare);
	TAILQ_INIT(&s->to_store);
	TAILQ_INIT(&s->stored);
	if (pthread_mutex_init(&s->lock, NULL) != 0 ||
	    pthread_cond_init(&s->cond, NULL) != 0 ||
	    (s->hbase = listener_loop_new(2)) == NULL ||
	    server_store_init(s) != 0 ||
	    (s->reply = evbuffer_new()) == NULL ||
	    (s->http = evhttp_new(s->hbase)) == NULL ||
	    (s->pass_ev = event_new(s->hbase, -1, 0, server_pass_cb, s)) ==
	    NULL || (s->back_ev = event_new(s->hbase, -1, 0, server_back_cb,
	    s)) == NULL || (s->stop_ev = event_new(s->hbase, -1, 0,
	    server_stop_cb, s)) == NULL)
		abort();
	/* "Stored or synced" goes first: webhooks whose batch became durable
	 * are answered before the connections that became readable meanwhile
	 * are read (an fsync's end to the answers: about 430 to 150 µs under
	 * load). */
	event_priority_set(s->back_ev, 0);
	evhttp_set_max_body_size(s->http, cfg->max_body_bytes);
	evhttp_set_max_headers_size(s->http, cfg->max_header_bytes);
	evhttp_set_timeout_tv(s->http, &tv);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(s->http, server_request_cb, s);
	if (cfg->tls_cert_file != NULL && (s->tls = listener_tls_new(
	    cfg->tls_cert_file, cfg->tls_key_file, cause)) == NULL)
		goto fail;
	memset(&lc, 0, sizeof lc);
	lc.addr = cfg->listen;
	lc.tls = s->tls;
	lc.max_connections = (int)cfg->max_connections;
	lc.request_timeout_ms = cfg->request_timeout_ms;
	lc.metrics = 1;
	lc.status_fn = server_count_status;
	lc.status_arg = s;
	if ((s->listener = listener_new(s->hbase, s->http, &lc, cause)) == NULL)
		goto fail;
	server_register_metrics(s);
	return s;
fail:
	server_free(s);
	return NULL;
}

int
server_start(struct server *s, char **cause)
{
	int rc;

	/* Signals are the main loop's (faults excepted: util.h). */
	if ((rc = util_thread_start(&s->thread, server_thread, s)) != 0) {
		*cause = xasprintf("cannot start the listener thread: %s",
		    strerror(rc));
		return -1;
	}
	s->started = 1;
	return 0;
}

static void
server_tell(struct server *s, int step)
{
	pthread_mutex_lock(&s->lock);
	s->quit = step;
	pthread_mutex_unlock(&s->lock);
	event_active(s->stop_ev, EV_TIMEOUT, 0);
}

/*
 * Stop ph-http with nothing owed: it hands over its open batch, this
 * thread stores everything handed over and waits until it is durable,
 * then ph-http answers it all and leaves (the answers used to be written
 * after ph-http had stopped, into connections about to be freed, so
 * whatever was still in flight when the drain gave up went unanswered,
 * though stored: the sender's retry then got "duplicate").
 */
static void
server_stop_thread(struct server *s)
{
	if (!s->started)
		return;
	server_tell(s, SERVER_QUIT_HAND);
	pthread_mutex_lock(&s->lock);
	while (!s->handed_over)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	if (s->journal != NULL) {
		server_store_run(s);
		/* Every commit before it is durable (or failed) then too. */
		journal_sync_wait(s->journal, s->last_ticket);
	}
	server_tell(s, SERVER_QUIT_LEAVE);
	pthread_join(s->thread, NULL);
	s->started = 0;
}

void
server_free(struct server *s)
{
	struct server_batch *b;

	if (s == NULL)
		return;
	s->commit_cb = NULL;	/* the pipeline is stopping too */
	s->freeing = 1;
	atomic_store(&s->shutting_down, 1);	/* new requests: 503 */
	server_stop_thread(s);
	/* From here on this thread is the only one. */
	if (s->journal != NULL) {
		journal_sync_listen(s->journal, NULL, s);
		journal_lock_listen(s->journal, NULL, NULL);
		journal_sync_histogram(s->journal, NULL);
	}
	server_hand_over(s);
	if (s->journal != NULL) {
		server_store_run(s);
		TAILQ_CONCAT(&s->waiting, &s->stored, entry);
		/* Answer what is stored once it is durable: nothing owed. */
		TAILQ_FOREACH(b, &s->waiting, entry) {
			if (!b->failed)
				journal_sync_wait(s->journal, b->ticket);
		}
		server_release(s);
	}
	if (s->http != NULL)
		evhttp_free(s->http);
	listener_free(s->listener);
	listener_tls_free(s->tls);
	if (s->pass_ev != NULL)
		event_free(s->pass_ev);
	if (s->back_ev != NULL)
		event_free(s->back_ev);
	if (s->stop_ev != NULL)
		event_free(s->stop_ev);
	server_store_free(s);
	while ((b = TAILQ_FIRST(&s->spare)) != NULL) {
		TAILQ_REMOVE(&s->spare, b, entry);
		server_batch_free(b);
	}
	if (s->reply != NULL)
		evbuffer_free(s->reply);
	if (s->hbase != NULL)
		event_base_free(s->hbase);
	webhook_parser_free(s->parser);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const char *
server_address(const struct server *s)
{
	return listener_address(s->listener);
}

int
server_journal_ok(const struct server *s)
{
	return atomic_load(&((struct server *)s)->journal_ok);
}

int
server_shutdown(struct server *s)
{
	atomic_store(&s->shutting_down, 1);
	if (s->started)
		event_active(s->stop_ev, EV_TIMEOUT, 0);
	else
		listener_close(s->listener);
	return listener_connections(s->listener);
}

int
server_connections(const struct server *s)
{
	return listener_connections(s->listener);
}
