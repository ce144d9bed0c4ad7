/*
 * server.c: the webhook endpoint. Each request is checked in the order
 * path, method, content type, signature, body; a signed request is then
 * added to the open journal transaction and answered only after the group
 * COMMIT of everything read in the same loop pass. Main thread only. Never
 * echoes a body, signature or secret, and never blocks except in COMMIT.
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
#include "receiver/signature.h"
#include "receiver/webhook.h"

#define SERVER_RETRY_AFTER	"5"
#define SERVER_BUSY_RETRY_MS	2	/* journal locked: try again after */
#define SERVER_BUSY_GIVE_UP_MS	500	/* then 503 (the sender waits 3 s) */

/* What a request turned into, and so what it will be answered. */
enum server_outcome {
	SERVER_ACCEPTED,
	SERVER_DUPLICATE,
	SERVER_QUARANTINED,
	SERVER_FAILED,		/* the batch could not be stored: 503 */
};

/* A verified webhook waiting for the group commit. The body stays in the
 * request's input buffer (untouched until the reply). */
struct server_pending {
	struct evhttp_request	*req;
	enum server_outcome	 outcome;
	int			 secret;
	const unsigned char	*body;
	size_t			 len;
	int64_t			 received_ms;
	int64_t			 read_ns;	/* monotonic: reply latency */
	int64_t			 occurred_ms;
	char			 key[JOURNAL_KEY_MAX];	/* message id or q- */
	char			 payment_id[WEBHOOK_ID_MAX + 1];
	char			 event_type[WEBHOOK_EVENT_TYPE_MAX + 1];
	char			 reason[WEBHOOK_REASON_MAX];
	/* The parser's tokens of body, copied: normalising the fused event
	 * reuses them. The buffer stays with the slot when batches recycle. */
	struct json_tok		*toks;
	size_t			 ntoks, tokcap;
};

/* Webhooks read in one loop pass: stored in one transaction, answered
 * together once that transaction is durable. */
struct server_batch {
	struct server_pending	*p;
	size_t			 n, cap;
	int64_t			 first_ms;	/* first store attempt */
	uint64_t		 ticket;	/* journal sync ticket */
	TAILQ_ENTRY(server_batch) entry;
};
TAILQ_HEAD(server_batches, server_batch);

/* Statuses counted by payhook_http_requests_total (anything else: other). */
static const int server_statuses[] = { 200, 400, 401, 404, 405, 413, 415,
    501, 503, 0 };
static const char *server_status_labels[] = { "status=\"200\"",
    "status=\"400\"", "status=\"401\"", "status=\"404\"", "status=\"405\"",
    "status=\"413\"", "status=\"415\"", "status=\"501\"",
    "status=\"503\"", "status=\"other\"" };
#define SERVER_NSTATUS UTIL_ARRAY_LEN(server_statuses)

struct server {
	struct event_base	*base;
	const struct config	*cfg;
	struct journal		*journal;
	struct signature	*sig;
	struct webhook_parser	*parser;
	struct evhttp		*http;
	struct listener		*listener;
	SSL_CTX			*tls;
	struct event		*commit_ev;
	struct evbuffer		*reply;
	int			 shutting_down;
	int			 freeing;	/* server_free: no more retries */
	int			 journal_ok;
	server_commit_fn	 commit_cb;
	server_fatal_fn		 fatal_cb;
	void			*fatal_arg;
	int			 lost;		/* fatal_cb ran */
	void			*commit_arg;
	struct server_store_hooks hooks;	/* put NULL: journal_put */

	struct event		*sync_ev;
	struct event		*lock_ev;	/* checkpointer let go */
	int			 busy_wait;	/* open waits on its retry timer */
	struct server_batch	*open;		/* filling in this loop pass */
	struct server_batches	 waiting;	/* stored, not yet durable */
	struct server_batches	 spare;

	struct metric_counter	 m_status[SERVER_NSTATUS];
	struct metric_counter	 m_webhooks[3];
	struct metric_counter	 m_sig_fail[3];
	struct metric_counter	 m_sig_ok[SIGNATURE_MAX_SECRETS];
	struct metric_counter	 m_commit_failed;
	struct metric_counter	 m_busy_retries;
	struct metric_histogram	 m_commit;
	struct metric_histogram	 m_batch;
	struct metric_histogram	 m_fsync;
	struct metric_histogram	 m_reply;
	int64_t			 last_warn_ms;
	uint64_t		 warn_suppressed;
};

static const double server_commit_bounds[] = { 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1 };
static const double server_batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128,
    256 };
/* GOV.UK Pay gives up on an attempt after 3 s (and retries 60 s later). */
static const double server_reply_bounds[] = { 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3 };

/* Every response head written on the public listener (listener.c). */
static void
server_count_status(void *arg, int code)
{
	struct server *s = arg;
	size_t i;

	for (i = 0; i < SERVER_NSTATUS - 1; i++) {
		if (server_statuses[i] == code)
			break;
	}
	metric_inc(&s->m_status[i]);	/* the last one is "other" */
}

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
	if (s->shutting_down)
		evhttp_add_header(out, "Connection", "close");
	/* A HEAD answer has headers only (RFC 9110 9.3.2). */
	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
		evbuffer_add_reference(s->reply, json, strlen(json), NULL,
		    NULL);
	evhttp_send_reply(req, code, reason, s->reply);
}

static void
server_error(struct server *s, struct evhttp_request *req, int code,
    const char *reason, const char *json)
{
	server_reply(s, req, code, reason, json, NULL, NULL);
}

/* Rate-limited warning: at most one line a second, with a count. */
static int
server_may_warn(struct server *s)
{
	int64_t now = util_mono_ms();

	if (now - s->last_warn_ms < 1000) {
		s->warn_suppressed++;
		return 0;
	}
	s->last_warn_ms = now;
	return 1;
}

static void
server_reject_signature(struct server *s, struct evhttp_request *req,
    int kind, const char *why, const char *json)
{
	metric_inc(&s->m_sig_fail[kind]);
	if (server_may_warn(s)) {
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
		    (unsigned long long)s->warn_suppressed);
		s->warn_suppressed = 0;
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
		b->first_ms = util_mono_ms();
		s->open = b;
		/* The commit runs after every callback already active. */
		event_active(s->commit_ev, EV_TIMEOUT, 0);
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
		p->outcome = SERVER_ACCEPTED;
		/* Only a fused event (cross_check = off) reads them. */
		if (!s->cfg->cross_check)
			server_keep_tokens(s, p);
	} else {
		server_quarantine_id(body, len, p->key, sizeof p->key);
		p->outcome = SERVER_QUARANTINED;
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
	if (s->shutting_down) {
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

/* Store the whole batch in one transaction; 0, or -1 and *cause. */
static int
server_store_batch(struct server *s, struct server_batch *b, char **cause)
{
	const struct server_store_hooks *h = &s->hooks;
	struct server_pending *p;
	struct journal_entry e;
	size_t i;
	int r;

	if (journal_begin_nowait(s->journal, cause) != 0)
		return -1;
	if (h->begin != NULL && h->begin(h->arg, cause) != 0)
		goto fail;
	for (i = 0; i < b->n; i++) {
		p = &b->p[i];
		memset(&e, 0, sizeof e);
		e.message_id = p->key;
		e.received_ms = p->received_ms;
		e.secret_index = p->secret;
		e.body = p->body;
		e.body_len = p->len;
		if (p->outcome == SERVER_QUARANTINED)
			e.quarantine_reason = p->reason;
		else {
			e.event_type = p->event_type;
			e.resource_id = p->payment_id;
			e.occurred_ms = p->occurred_ms;
			e.body_toks = p->ntoks > 0 ? p->toks : NULL;
			e.body_ntoks = p->ntoks;
			/* cross_check = off: nothing to wait for. */
			if (!s->cfg->cross_check)
				e.verdict = "skipped";
		}
		r = h->put != NULL ? h->put(h->arg, &e, cause) :
		    (int)journal_put(s->journal, &e, cause);
		switch (r) {
		case JOURNAL_PUT_NEW:
			break;
		case JOURNAL_PUT_DUPLICATE:
			p->outcome = SERVER_DUPLICATE;
			break;
		default:
			goto fail;
		}
	}
	if (journal_commit_deferred(s->journal, &b->ticket, cause) != 0)
		goto fail;
	if (h->end != NULL)
		h->end(h->arg, 1, b->ticket);
	return 0;
fail:
	journal_rollback(s->journal);
	if (h->end != NULL)
		h->end(h->arg, 0, 0);
	return -1;
}

/* Answer every webhook of b and recycle it; returns the new rows. */
static int
server_finish_batch(struct server *s, struct server_batch *b, int failed)
{
	size_t i;
	int fresh = 0;

	for (i = 0; i < b->n; i++) {
		if (failed)
			b->p[i].outcome = SERVER_FAILED;
		if (b->p[i].outcome == SERVER_ACCEPTED ||
		    b->p[i].outcome == SERVER_QUARANTINED)
			fresh++;
		server_answer(s, &b->p[i]);
	}
	b->n = 0;
	TAILQ_INSERT_HEAD(&s->spare, b, entry);
	return fresh;
}

/* Answer the stored batches whose sync completed, oldest first. */
static void
server_release(struct server *s)
{
	struct server_batch *b;
	uint64_t synced, failed;
	const char *lost;
	int fresh = 0, sync_failed = 0;

	synced = journal_synced(s->journal, &failed);
	while ((b = TAILQ_FIRST(&s->waiting)) != NULL) {
		if (b->ticket > synced && b->ticket > failed)
			break;
		TAILQ_REMOVE(&s->waiting, b, entry);
		/* After a failed fsync Linux may drop the dirty pages and
		 * report the next fsync clean: never claim those rows. */
		if (b->ticket <= failed)
			sync_failed = 1;
		fresh += server_finish_batch(s, b, b->ticket <= failed);
	}
	/* Any failed fsync, a webhook batch's, another writer's (the
	 * publisher's seqs) or a checkpoint's: the journal claims nothing
	 * durable any more. */
	if ((lost = journal_lost(s->journal)) != NULL && !s->lost &&
	    s->fatal_cb != NULL) {
		s->lost = 1;
		s->fatal_cb(s->fatal_arg, lost);
	}
	if (sync_failed) {
		metric_inc(&s->m_commit_failed);
		s->journal_ok = 0;
	} else if (synced > 0 && synced >= failed && !s->journal_ok &&
	    TAILQ_EMPTY(&s->waiting)) {
		log_info("journal_recovered", NULL);
		s->journal_ok = 1;
	}
	if (fresh > 0 && s->commit_cb != NULL)
		s->commit_cb(s->commit_arg, fresh);
}

/* The syncer thread finished an fsync: hop to the loop thread. */
static void
server_sync_notify(void *arg)
{
	struct server *s = arg;

	event_active(s->sync_ev, EV_TIMEOUT, 0);
}

/* The checkpointer let go of the write lock, or the journal was lost (on
 * another thread): hop to the loop thread. */
static void
server_lock_notify(void *arg)
{
	struct server *s = arg;

	event_active(s->lock_ev, EV_TIMEOUT, 0);
}

static void server_commit_cb(evutil_socket_t, short, void *);

/* A batch waiting out SERVER_BUSY_RETRY_MS tries again now. (Its own
 * event: activating commit_ev from the checkpointer could be undone by the
 * event_add of the retry timer, if the two met.) A lost journal is seen
 * here too when no syncer calls (durability = process). */
static void
server_lock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	server_release(s);
	if (!s->busy_wait)
		return;
	event_del(s->commit_ev);
	server_commit_cb(-1, 0, s);
}

static void
server_sync_cb(evutil_socket_t fd, short what, void *arg)
{
	server_release(arg);
}

/*
 * The group commit: everything read in this loop pass goes into one
 * transaction, opened and closed here so no other callback ever runs with
 * it open. Its webhooks are answered once the transaction is durable
 * (server_release); meanwhile the loop goes on reading the next batch.
 */
static void
server_commit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	struct server_batch *b = s->open;
	char *cause = NULL;
	int64_t t0, t1;
	int rc;

	s->busy_wait = 0;
	if (b == NULL)
		return;
	s->open = NULL;
	t0 = util_mono_ns();
	rc = server_store_batch(s, b, &cause);
	if (rc != 0 && journal_was_busy(s->journal) && !s->freeing &&
	    util_mono_ms() - b->first_ms < SERVER_BUSY_GIVE_UP_MS) {
		/* Another connection (a WAL checkpoint) holds the lock for a
		 * moment: keep reading and try again shortly, rather than 503. */
		struct timeval tv = { 0, SERVER_BUSY_RETRY_MS * 1000 };

		free(cause);
		metric_inc(&s->m_busy_retries);
		s->open = b;	/* requests read meanwhile join the batch */
		event_add(s->commit_ev, &tv);
		s->busy_wait = 1;
		return;
	}
	if (rc != 0) {
		metric_inc(&s->m_commit_failed);
		if (s->journal_ok || server_may_warn(s))
			log_error("journal_commit_failed", "rows=%zu "
			    "error=\"%s\"", b->n, cause ? cause : "unknown");
		free(cause);
		s->journal_ok = 0;
		server_finish_batch(s, b, 1);
		return;
	}
	t1 = util_mono_ns();
	metric_observe(&s->m_commit, (uint64_t)(t1 - t0));
	metric_observe(&s->m_batch, (uint64_t)b->n);
	TAILQ_INSERT_TAIL(&s->waiting, b, entry);
	server_release(s);
}

static void
server_register_metrics(struct server *s)
{
	static const char *sig_fail[] = { "reason=\"missing\"",
	    "reason=\"malformed\"", "reason=\"mismatch\"" };
	static const char *results[] = { "result=\"accepted\"",
	    "result=\"duplicate\"", "result=\"quarantined\"" };
	static const char *secrets[] = { "secret=\"1\"", "secret=\"2\"" };
	size_t i;

	for (i = 0; i < SERVER_NSTATUS; i++)
		metrics_counter("payhook_http_requests_total",
		    "Requests on the public listener by status.",
		    server_status_labels[i], &s->m_status[i]);
	for (i = 0; i < 3; i++)
		metrics_counter("payhook_webhooks_total",
		    "Signed webhooks answered 200, by result.", results[i],
		    &s->m_webhooks[i]);
	for (i = 0; i < 3; i++)
		metrics_counter("payhook_signature_failures_total",
		    "Requests refused with 401, by reason.", sig_fail[i],
		    &s->m_sig_fail[i]);
	for (i = 0; i < SIGNATURE_MAX_SECRETS; i++)
		metrics_counter("payhook_signature_valid_total",
		    "Valid signatures by the secret that matched (1: first "
		    "line of signing_secret_file, 2: second).", secrets[i],
		    &s->m_sig_ok[i]);
	metrics_counter("payhook_journal_commit_failures_total",
	    "Group commits that failed (their webhooks got 503).", NULL,
	    &s->m_commit_failed);
	metrics_counter("payhook_journal_busy_retries_total",
	    "Group commits retried because another connection held the "
	    "journal's lock for a moment (e.g. a WAL checkpoint).", NULL,
	    &s->m_busy_retries);
	s->m_commit.bounds = server_commit_bounds;
	s->m_commit.n = UTIL_ARRAY_LEN(server_commit_bounds);
	metrics_histogram("payhook_journal_commit_seconds",
	    "Time to store one group commit (the fsync, with durability = "
	    "full, runs on the syncer thread: see _fsync_seconds).",
	    &s->m_commit);
	s->m_fsync.bounds = server_commit_bounds;
	s->m_fsync.n = UTIL_ARRAY_LEN(server_commit_bounds);
	metrics_histogram("payhook_journal_fsync_seconds",
	    "Latency of one WAL fdatasync (durability = full); each covers "
	    "every batch stored before it.", &s->m_fsync);
	s->m_batch.bounds = server_batch_bounds;
	s->m_batch.n = UTIL_ARRAY_LEN(server_batch_bounds);
	s->m_batch.scale = 1;
	metrics_histogram("payhook_journal_commit_batch_size",
	    "Webhooks per group commit (the _sum is in rows).", &s->m_batch);
	s->m_reply.bounds = server_reply_bounds;
	s->m_reply.n = UTIL_ARRAY_LEN(server_reply_bounds);
	metrics_histogram("payhook_webhook_reply_seconds",
	    "From a signed webhook's request read to its answer (200, or 503 "
	    "when it could not be stored): batching, storing and the fsync. "
	    "GOV.UK Pay gives up on an attempt after 3 s.", &s->m_reply);
}

struct server *
server_new(struct event_base *base, const struct config *cfg,
    struct signature *sig, char **cause)
{
	struct listener_config lc;
	struct server *s;

	s = xcalloc(1, sizeof *s);
	s->base = base;
	s->cfg = cfg;
	s->sig = sig;
	s->journal_ok = 1;
	s->parser = webhook_parser_new();
	if ((s->reply = evbuffer_new()) == NULL ||
	    (s->http = evhttp_new(base)) == NULL ||
	    (s->commit_ev = event_new(base, -1, 0, server_commit_cb, s)) ==
	    NULL || (s->sync_ev = event_new(base, -1, 0, server_sync_cb, s)) ==
	    NULL || (s->lock_ev = event_new(base, -1, 0, server_lock_cb, s)) ==
	    NULL)
		abort();
	/* Answering what is durable goes before reading more: on a loop with
	 * priorities (payhook serve) it runs first in the next pass, instead
	 * of behind every connection that became readable meanwhile. */
	event_priority_set(s->sync_ev, 0);
	TAILQ_INIT(&s->waiting);
	TAILQ_INIT(&s->spare);
	evhttp_set_max_body_size(s->http, cfg->max_body_bytes);
	evhttp_set_max_headers_size(s->http, cfg->max_header_bytes);
	{
		struct timeval tv = { cfg->request_timeout_ms / 1000,
		    (cfg->request_timeout_ms % 1000) * 1000 };

		evhttp_set_timeout_tv(s->http, &tv);
	}
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
	if ((s->listener = listener_new(base, s->http, &lc, cause)) == NULL)
		goto fail;
	server_register_metrics(s);
	return s;
fail:
	server_free(s);
	return NULL;
}

void
server_free(struct server *s)
{
	struct server_batch *b;

	if (s == NULL)
		return;
	s->commit_cb = NULL;	/* the pipeline is stopping too */
	s->freeing = 1;
	if (s->journal != NULL) {
		journal_sync_listen(s->journal, NULL, s);
		journal_lock_listen(s->journal, NULL, NULL);
		journal_sync_histogram(s->journal, NULL);
		server_commit_cb(-1, 0, s);
		/* Answer what is stored once it is durable: nothing owed. */
		TAILQ_FOREACH(b, &s->waiting, entry)
			journal_sync_wait(s->journal, b->ticket);
		server_release(s);
	}
	if (s->http != NULL)
		evhttp_free(s->http);
	listener_free(s->listener);
	listener_tls_free(s->tls);
	if (s->commit_ev != NULL)
		event_free(s->commit_ev);
	if (s->sync_ev != NULL)
		event_free(s->sync_ev);
	if (s->lock_ev != NULL)
		event_free(s->lock_ev);
	while ((b = TAILQ_FIRST(&s->spare)) != NULL) {
		TAILQ_REMOVE(&s->spare, b, entry);
		server_batch_free(b);
	}
	if (s->reply != NULL)
		evbuffer_free(s->reply);
	webhook_parser_free(s->parser);
	free(s);
}

void
server_attach_journal(struct server *s, struct journal *journal)
{
	s->journal = journal;
	journal_sync_listen(journal, server_sync_notify, s);
	journal_lock_listen(journal, server_lock_notify, s);
	journal_sync_histogram(journal, &s->m_fsync);
	if (journal_lost(journal) != NULL)	/* before anyone listened */
		event_active(s->lock_ev, EV_TIMEOUT, 0);
}

void
server_set_commit_cb(struct server *s, server_commit_fn fn, void *arg)
{
	s->commit_cb = fn;
	s->commit_arg = arg;
}

void
server_set_fatal_cb(struct server *s, server_fatal_fn fn, void *arg)
{
	s->fatal_cb = fn;
	s->fatal_arg = arg;
}

void
server_set_store_hooks(struct server *s, const struct server_store_hooks *h)
{
	if (h != NULL)
		s->hooks = *h;
	else
		memset(&s->hooks, 0, sizeof s->hooks);
}

const char *
server_address(const struct server *s)
{
	return listener_address(s->listener);
}

int
server_journal_ok(const struct server *s)
{
	return s->journal_ok;
}

int
server_shutdown(struct server *s)
{
	s->shutting_down = 1;
	listener_close(s->listener);
	return listener_connections(s->listener);
}

int
server_connections(const struct server *s)
{
	return listener_connections(s->listener);
}
