/*
 * webhook.c: builds, signs and delivers webhook messages over evhttp
 * client connections (plain or TLS) with pay-webhooks' retry schedule.
 * Event-loop thread only. The body bytes of a message never change after
 * it is built; only the signature is recomputed, with the current key.
 */
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "sim/repr.h"
#include "sim/sched.h"
#include "sim/webhook.h"

enum msg_state { MSG_PENDING, MSG_DELIVERED, MSG_FAILED };

static const char *const webhook_event_names[] = {
	"card_payment_succeeded", "card_payment_captured",
	"card_payment_refunded", "card_payment_failed", "card_payment_expired",
	"card_payment_started"
};

/* Delay after the 1st..5th failure (pay-webhooks SendAttempter). */
static const int64_t webhook_retry_ms[] = {
	60LL * 1000, 5LL * 60 * 1000, 3600LL * 1000, 86400LL * 1000,
	2 * 86400LL * 1000
};

struct wh_attempt {
	int64_t		 wall_ms, sim_ms;
	int		 status;
	int		 duration_ms;
	int		 duplicate;
	char		 outcome[32];
};

struct wh_msg {
	char		 id[SIM_ID_LEN + 1];
	char		 payment_id[SIM_ID_LEN + 1];
	char		 event_type[32];
	char		*body;
	size_t		 len;
	int64_t		 created_ms;
	int64_t		 next_due;
	enum msg_state	 state;
	int		 failures;
	int		 refs;
	int		 orphan;
	int		 lie;
	struct wh_attempt *att;
	size_t		 natt, attcap;
	struct wh_msg	*prev, *next;
};

struct wh_job {
	struct wh_msg	*msg;
	int		 dup;
	struct wh_job	*next;
};

struct wh_send {
	struct webhook	*wh;
	struct wh_msg	*msg;
	int		 dup;
	int64_t		 start_mono;
	struct event	*wait;		/* --webhook-jitter-ms */
	struct evhttp_connection *conn;
	struct wh_send	*prev, *next;
};

struct webhook {
	struct sim	*sim;
	int		 enabled;
	unsigned	 events;	/* bit i: webhook_event_names[i] */
	char		*host, *path, *hosthdr;
	int		 port, https;
	SSL_CTX		*ssl;
	char		*secret;
	double		 dup_rate;
	struct wh_msg	*head, *tail;
	size_t		 nmsgs;
	struct wh_job	*qhead, *qtail;
	struct wh_send	*sends;
	size_t		 inflight;
	struct evhttp_connection **dead;	/* freed by the reaper */
	size_t		 ndead, deadcap;
	struct event	*reaper;
	uint64_t	 emitted, attempts, delivered, failed, retries, dups;
};

static void	webhook_pump(struct webhook *);

static int
webhook_event_index(const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(webhook_event_names); i++) {
		if (strcmp(webhook_event_names[i], name) == 0)
			return (int)i;
	}
	return -1;
}

static int
webhook_parse_events(struct webhook *wh, const char *list, char **cause)
{
	char *copy, *p, *tok;
	int i, ret = 0;

	if (list == NULL || *list == '\0') {
		wh->events = 0x1f;	/* all but card_payment_started */
		return 0;
	}
	copy = xstrdup(list);
	for (p = copy; (tok = strsep(&p, ",")) != NULL;) {
		if (*tok == '\0')
			continue;
		if ((i = webhook_event_index(tok)) < 0) {
			*cause = xasprintf("--webhook-events: unknown event %s",
			    tok);
			ret = -1;
			break;
		}
		wh->events |= 1u << i;
	}
	free(copy);
	return ret;
}

static int
webhook_parse_url(struct webhook *wh, const char *url, char **cause)
{
	struct evhttp_uri *uri;
	const char *scheme, *host, *path, *query;
	int ret = -1;

	if ((uri = evhttp_uri_parse(url)) == NULL) {
		*cause = xasprintf("--webhook-url: cannot parse %s", url);
		return -1;
	}
	scheme = evhttp_uri_get_scheme(uri);
	host = evhttp_uri_get_host(uri);
	if (scheme == NULL || host == NULL || *host == '\0' ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		*cause = xasprintf("--webhook-url must be http(s)://host[:port]"
		    "/path");
		goto out;
	}
	wh->https = strcmp(scheme, "https") == 0;
	wh->host = xstrdup(host);
	wh->port = evhttp_uri_get_port(uri);
	if (wh->port < 0)
		wh->port = wh->https ? 443 : 80;
	path = evhttp_uri_get_path(uri);
	query = evhttp_uri_get_query(uri);
	wh->path = xasprintf("%s%s%s", path && *path ? path : "/",
	    query ? "?" : "", query ? query : "");
	if (wh->port == (wh->https ? 443 : 80))
		wh->hosthdr = xstrdup(host);
	else
		wh->hosthdr = xasprintf("%s:%d", host, wh->port);
	ret = 0;
out:
	evhttp_uri_free(uri);
	return ret;
}

static int
webhook_tls_init(struct webhook *wh, const char *ca_file, char **cause)
{
	if ((wh->ssl = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(wh->ssl, TLS1_2_VERSION) != 1) {
		*cause = xasprintf("cannot create TLS context");
		return -1;
	}
	SSL_CTX_set_verify(wh->ssl, SSL_VERIFY_PEER, NULL);
	if ((ca_file != NULL &&
	    SSL_CTX_load_verify_locations(wh->ssl, ca_file, NULL) != 1) ||
	    (ca_file == NULL && SSL_CTX_set_default_verify_paths(wh->ssl) != 1)) {
		*cause = xasprintf("cannot load CA certificates%s%s",
		    ca_file ? " from " : "", ca_file ? ca_file : "");
		return -1;
	}
	return 0;
}

static int
webhook_read_secret(struct webhook *wh, const char *file, char **cause)
{
	char *buf, *nl;
	size_t len;

	if (util_read_file(file, 65536, &buf, &len, cause) != 0)
		return -1;
	if ((nl = strpbrk(buf, "\r\n")) != NULL)
		*nl = '\0';
	if (*buf == '\0') {
		*cause = xasprintf("%s: first line is empty", file);
		free(buf);
		return -1;
	}
	wh->secret = buf;
	return 0;
}

static void
webhook_reap(struct webhook *wh)
{
	size_t i;

	for (i = 0; i < wh->ndead; i++)
		evhttp_connection_free(wh->dead[i]);
	wh->ndead = 0;
}

static void
webhook_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	webhook_reap(arg);
}

/* Free a finished connection outside libevent's callback for it. */
static void
webhook_bury(struct webhook *wh, struct evhttp_connection *conn)
{
	struct timeval tv = { 0, 0 };

	if (wh->ndead == wh->deadcap) {
		wh->deadcap = wh->deadcap ? wh->deadcap * 2 : 32;
		wh->dead = xreallocarray(wh->dead, wh->deadcap,
		    sizeof *wh->dead);
	}
	wh->dead[wh->ndead++] = conn;
	if (event_add(wh->reaper, &tv) != 0)
		log_error("webhook_reaper_failed", NULL);
}

struct webhook *
webhook_new(struct sim *sim, char **cause)
{
	const struct sim_config *cfg = &sim->cfg;
	struct webhook *wh;

	wh = xcalloc(1, sizeof *wh);
	wh->sim = sim;
	wh->dup_rate = cfg->duplicate_rate;
	if (cfg->webhook_url == NULL)
		return wh;
	if (cfg->signing_secret_file == NULL) {
		*cause = xasprintf("--webhook-url needs --signing-secret-file");
		goto fail;
	}
	if (webhook_parse_url(wh, cfg->webhook_url, cause) != 0 ||
	    webhook_parse_events(wh, cfg->webhook_events, cause) != 0 ||
	    webhook_read_secret(wh, cfg->signing_secret_file, cause) != 0)
		goto fail;
	if (wh->https && webhook_tls_init(wh, cfg->webhook_ca_file, cause) != 0)
		goto fail;
	if ((wh->reaper = evtimer_new(sim->base, webhook_reaper_cb, wh)) ==
	    NULL) {
		*cause = xasprintf("cannot create the webhook reaper timer");
		goto fail;
	}
	wh->enabled = 1;
	return wh;
fail:
	webhook_free(wh);
	return NULL;
}

static void
webhook_msg_free(struct wh_msg *m)
{
	free(m->body);
	free(m->att);
	free(m);
}

static void
webhook_unlink(struct webhook *wh, struct wh_msg *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		wh->head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	else
		wh->tail = m->prev;
	m->prev = m->next = NULL;
	wh->nmsgs--;
}

static void
webhook_clear_queue(struct webhook *wh)
{
	struct wh_job *j, *next;

	for (j = wh->qhead; j != NULL; j = next) {
		next = j->next;
		free(j);
	}
	wh->qhead = wh->qtail = NULL;
}

/* Take s off the deliveries in flight (the caller frees it). */
static void
webhook_unlink_send(struct webhook *wh, struct wh_send *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		wh->sends = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	wh->inflight--;
}

/* Deliveries still waiting out --webhook-jitter-ms were never sent: they
 * are forgotten with the queue (their messages by the caller). */
static void
webhook_drop_waiting(struct webhook *wh)
{
	struct wh_send *s, *next;

	for (s = wh->sends; s != NULL; s = next) {
		next = s->next;
		if (s->wait == NULL)
			continue;
		event_free(s->wait);
		webhook_unlink_send(wh, s);
		if (s->msg->orphan && --s->msg->refs == 0)
			webhook_msg_free(s->msg);
		free(s);
	}
}

void
webhook_reset(struct webhook *wh)
{
	struct wh_msg *m, *next;
	struct wh_send *s;

	sched_drop_kinds(wh->sim->sched, 1u << SCHED_WEBHOOK);
	webhook_clear_queue(wh);
	webhook_drop_waiting(wh);
	for (m = wh->head; m != NULL; m = m->next)
		m->refs = 0;
	for (s = wh->sends; s != NULL; s = s->next)
		s->msg->refs++;
	for (m = wh->head; m != NULL; m = next) {
		next = m->next;
		webhook_unlink(wh, m);
		if (m->refs == 0)
			webhook_msg_free(m);
		else
			m->orphan = 1;
	}
	wh->emitted = wh->attempts = wh->delivered = wh->failed = 0;
	wh->retries = wh->dups = 0;
}

void
webhook_free(struct webhook *wh)
{
	struct wh_send *s, *next;

	if (wh == NULL)
		return;
	for (s = wh->sends; s != NULL; s = next) {
		next = s->next;
		if (s->wait != NULL)
			event_free(s->wait);
		if (s->conn != NULL)
			evhttp_connection_free(s->conn);
		if (s->msg->orphan && --s->msg->refs == 0)
			webhook_msg_free(s->msg);
		free(s);
	}
	wh->sends = NULL;
	webhook_reap(wh);
	free(wh->dead);
	if (wh->reaper != NULL)
		event_free(wh->reaper);
	if (wh->sim->sched != NULL)
		webhook_reset(wh);
	SSL_CTX_free(wh->ssl);
	free(wh->host);
	free(wh->path);
	free(wh->hosthdr);
	free(wh->secret);
	free(wh);
}

int
webhook_enabled(const struct webhook *wh)
{
	return wh->enabled;
}

static void
webhook_evict(struct webhook *wh)
{
	struct wh_msg *m;

	while (wh->nmsgs > (size_t)wh->sim->cfg.max_log &&
	    (m = wh->head) != NULL && m->refs == 0 && m->state != MSG_PENDING) {
		webhook_unlink(wh, m);
		webhook_msg_free(m);
	}
}

static void
webhook_enqueue(struct webhook *wh, struct wh_msg *m, int dup)
{
	struct wh_job *j;

	j = xcalloc(1, sizeof *j);
	j->msg = m;
	j->dup = dup;
	if (wh->qtail != NULL)
		wh->qtail->next = j;
	else
		wh->qhead = j;
	wh->qtail = j;
	m->refs++;
	webhook_pump(wh);
}

static char *
webhook_build_body(const char *id, const char *event_type,
    const struct payment *p, int64_t event_ms, const cJSON *overrides)
{
	cJSON *env, *res, *c, *old;
	char ts[32], *body;

	res = repr_payment_webhook(p);
	if (overrides != NULL) {
		for (c = overrides->child; c != NULL; c = c->next) {
			old = cJSON_DetachItemFromObjectCaseSensitive(res,
			    c->string);
			cJSON_Delete(old);
			jadd_item(res, c->string, jdup(c));
		}
		repr_jsonb_sort(res);
	}
	util_format_time_ms(event_ms, ts, sizeof ts);
	env = jnew_obj();
	jadd_str(env, "webhook_message_id", id);
	jadd_str(env, "created_date", ts);
	jadd_str(env, "resource_id", p->id);
	jadd_int(env, "api_version", 1);
	jadd_str(env, "resource_type", "PAYMENT");
	jadd_str(env, "event_type", event_type);
	jadd_item(env, "resource", res);
	body = jprint(env);
	cJSON_Delete(env);
	return body;
}

const char *
webhook_emit(struct webhook *wh, const char *event_type,
    const struct payment *p, int64_t event_ms, const cJSON *overrides)
{
	struct wh_msg *m;
	char *body;
	int idx;

	if (!wh->enabled || (idx = webhook_event_index(event_type)) < 0 ||
	    !(wh->events & (1u << idx)))
		return NULL;
	m = xcalloc(1, sizeof *m);
	sim_random_id_unpadded(m->id);
	memcpy(m->payment_id, p->id, sizeof m->payment_id);
	xsnprintf(m->event_type, sizeof m->event_type, "%s", event_type);
	body = webhook_build_body(m->id, event_type, p, event_ms, overrides);
	m->len = strlen(body);
	m->body = xstrndup(body, m->len);
	cJSON_free(body);
	m->created_ms = event_ms;
	m->lie = overrides != NULL;
	m->prev = wh->tail;
	if (wh->tail != NULL)
		wh->tail->next = m;
	else
		wh->head = m;
	wh->tail = m;
	wh->nmsgs++;
	wh->emitted++;
	log_info("webhook_emit", "webhook_message_id=%s payment_id=%s "
	    "event_type=%s", m->id, p->id, event_type);
	webhook_enqueue(wh, m, 0);
	if (wh->dup_rate > 0 && sim_random(wh->sim) < wh->dup_rate) {
		m->refs++;
		sched_add(wh->sim->sched, sim_now(wh->sim) +
		    (int64_t)(sim_random(wh->sim) * 2000), SCHED_WEBHOOK, m, 1);
	}
	webhook_evict(wh);
	return m->id;
}

void
webhook_timer(struct webhook *wh, void *ptr, size_t dup)
{
	struct wh_msg *m = ptr;

	m->refs--;
	webhook_enqueue(wh, m, (int)dup);
}

static int
webhook_sign(const struct webhook *wh, const struct wh_msg *m, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (HMAC(EVP_sha256(), wh->secret, (int)strlen(wh->secret),
	    (const unsigned char *)m->body, m->len, md, &mdlen) == NULL ||
	    mdlen != 32)
		return -1;
	util_hex_encode(md, mdlen, hex);
	return 0;
}

static void
webhook_record(struct webhook *wh, struct wh_send *s, int status)
{
	struct wh_msg *m = s->msg;
	struct wh_attempt *a;
	int64_t now = sim_now(wh->sim);

	if (m->natt == m->attcap) {
		m->attcap = m->attcap ? m->attcap * 2 : 2;
		m->att = xreallocarray(m->att, m->attcap, sizeof *m->att);
	}
	a = &m->att[m->natt++];
	memset(a, 0, sizeof *a);
	a->wall_ms = util_now_ms();
	a->sim_ms = now;
	a->status = status;
	a->duplicate = s->dup;
	a->duration_ms = (int)(util_mono_ms() - s->start_mono);
	if (status >= 200 && status <= 299)
		xsnprintf(a->outcome, sizeof a->outcome, "delivered");
	else if (status > 0)
		xsnprintf(a->outcome, sizeof a->outcome, "http_%d", status);
	else if (a->duration_ms + 20 >= wh->sim->cfg.webhook_timeout_ms)
		/* libevent reports a refused connect as a timeout too */
		xsnprintf(a->outcome, sizeof a->outcome, "timeout");
	else
		xsnprintf(a->outcome, sizeof a->outcome, "connection_error");
	log_info("webhook_attempt", "webhook_message_id=%s payment_id=%s "
	    "attempt=%zu outcome=%s duplicate=%d", m->id, m->payment_id,
	    m->natt, a->outcome, s->dup);
	if (s->dup || m->orphan || m->state != MSG_PENDING)
		return;
	if (status >= 200 && status <= 299) {
		m->state = MSG_DELIVERED;
		wh->delivered++;
	} else if (++m->failures >= WEBHOOK_MAX_ATTEMPTS) {
		m->state = MSG_FAILED;
		wh->failed++;
		log_warn("webhook_gave_up", "webhook_message_id=%s", m->id);
	} else {
		m->next_due = now + webhook_retry_ms[m->failures - 1];
		m->refs++;
		wh->retries++;
		sched_add(wh->sim->sched, m->next_due, SCHED_WEBHOOK, m, 0);
	}
}

static void
webhook_send_done(struct wh_send *s, int status)
{
	struct webhook *wh = s->wh;

	webhook_record(wh, s, status);
	if (s->conn != NULL)
		webhook_bury(wh, s->conn);
	webhook_unlink_send(wh, s);
	if (--s->msg->refs == 0 && s->msg->orphan)
		webhook_msg_free(s->msg);
	free(s);
	webhook_evict(wh);
	webhook_pump(wh);
}

static void
webhook_done_cb(struct evhttp_request *req, void *arg)
{
	int status = 0;

	if (req != NULL)
		status = evhttp_request_get_response_code(req);
	webhook_send_done(arg, status);
}

static struct evhttp_connection *
webhook_connect(struct webhook *wh)
{
	struct event_base *base = wh->sim->base;
	struct bufferevent *bev;
	SSL *ssl;

	if (!wh->https)
		return evhttp_connection_base_new(base, NULL, wh->host,
		    (unsigned short)wh->port);
	if ((ssl = SSL_new(wh->ssl)) == NULL)
		return NULL;
	if (SSL_set_tlsext_host_name(ssl, wh->host) != 1 ||
	    SSL_set1_host(ssl, wh->host) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	return evhttp_connection_base_bufferevent_new(base, NULL, bev,
	    wh->host, (unsigned short)wh->port);
}

static int
webhook_request(struct webhook *wh, struct wh_send *s)
{
	struct evkeyvalq *hdrs;
	struct evhttp_request *req;
	struct timeval tv;
	char sig[65];

	if (webhook_sign(wh, s->msg, sig) != 0)
		return -1;
	if ((s->conn = webhook_connect(wh)) == NULL)
		return -1;
	tv.tv_sec = wh->sim->cfg.webhook_timeout_ms / 1000;
	tv.tv_usec = (wh->sim->cfg.webhook_timeout_ms % 1000) * 1000;
	evhttp_connection_set_timeout_tv(s->conn, &tv);
	if ((req = evhttp_request_new(webhook_done_cb, s)) == NULL)
		goto fail;
	hdrs = evhttp_request_get_output_headers(req);
	if (evhttp_add_header(hdrs, "Host", wh->hosthdr) != 0 ||
	    evhttp_add_header(hdrs, "Content-Type", "application/json") != 0 ||
	    evhttp_add_header(hdrs, "Pay-Signature", sig) != 0 ||
	    evhttp_add_header(hdrs, "User-Agent",
	    "Apache-HttpClient/5.4 (Java/21; payhook-sim)") != 0 ||
	    evbuffer_add(evhttp_request_get_output_buffer(req), s->msg->body,
	    s->msg->len) != 0) {
		evhttp_request_free(req);
		goto fail;
	}
	if (evhttp_make_request(s->conn, req, EVHTTP_REQ_POST, wh->path) != 0) {
		evhttp_request_free(req);
		goto fail;
	}
	return 0;
fail:
	evhttp_connection_free(s->conn);
	s->conn = NULL;
	return -1;
}

/* Send now; on failure the attempt is recorded, the queue pumped, -1. */
static int
webhook_start(struct wh_send *s)
{
	s->start_mono = util_mono_ms();
	if (webhook_request(s->wh, s) != 0) {
		log_error("webhook_request_failed", "webhook_message_id=%s",
		    s->msg->id);
		webhook_send_done(s, 0);
		return -1;
	}
	return 0;
}

static void
webhook_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct wh_send *s = arg;

	event_free(s->wait);
	s->wait = NULL;
	(void)webhook_start(s);
}

/*
 * A delivery in flight first waits a random 0..webhook_jitter_ms, as a
 * message in GOV.UK Pay waits for one of its 20 sender threads (each
 * polling on its own schedule) and those send independently: deliveries
 * emitted close together may arrive in any order.
 */
static int
webhook_delay(struct webhook *wh, struct wh_send *s)
{
	struct timeval tv;
	int64_t ms;

	if (wh->sim->cfg.webhook_jitter_ms <= 0)
		return 0;
	if ((s->wait = evtimer_new(wh->sim->base, webhook_wait_cb, s)) ==
	    NULL)
		return 0;
	ms = (int64_t)(sim_random(wh->sim) *
	    (double)(wh->sim->cfg.webhook_jitter_ms + 1));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (evtimer_add(s->wait, &tv) != 0) {
		event_free(s->wait);
		s->wait = NULL;
		return 0;
	}
	return 1;
}

static void
webhook_pump(struct webhook *wh)
{
	struct wh_send *s;
	struct wh_job *j;

	while (wh->qhead != NULL &&
	    wh->inflight < (size_t)wh->sim->cfg.webhook_concurrency) {
		j = wh->qhead;
		if ((wh->qhead = j->next) == NULL)
			wh->qtail = NULL;
		if (j->msg->orphan) {
			if (--j->msg->refs == 0)
				webhook_msg_free(j->msg);
			free(j);
			continue;
		}
		s = xcalloc(1, sizeof *s);
		s->wh = wh;
		s->msg = j->msg;
		s->dup = j->dup;
		free(j);
		s->next = wh->sends;
		if (wh->sends != NULL)
			wh->sends->prev = s;
		wh->sends = s;
		wh->inflight++;
		wh->attempts++;
		if (s->dup)
			wh->dups++;
		if (webhook_delay(wh, s))
			continue;
		if (webhook_start(s) != 0)
			return;	/* webhook_send_done pumped again */
	}
}

void
webhook_set_secret(struct webhook *wh, const char *secret)
{
	char id[SIM_ID_LEN + 1];

	free(wh->secret);
	if (secret != NULL)
		wh->secret = xstrdup(secret);
	else {
		sim_random_id_unpadded(id);
		wh->secret = xasprintf("webhook_test_%s", id);
	}
	log_info("webhook_signing_key_regenerated", NULL);
}

const char *
webhook_secret(const struct webhook *wh)
{
	return wh->secret;
}

void
webhook_set_duplicate_rate(struct webhook *wh, double rate)
{
	wh->dup_rate = rate;
}

double
webhook_duplicate_rate(const struct webhook *wh)
{
	return wh->dup_rate;
}

static void
webhook_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[32];

	util_format_time_ms(ms, buf, sizeof buf);
	jadd_str(o, key, buf);
}

static cJSON *
webhook_msg_json(const struct wh_msg *m)
{
	static const char *states[] = { "pending", "delivered", "failed" };
	cJSON *o, *arr, *a;
	size_t i;

	o = jnew_obj();
	jadd_str(o, "webhook_message_id", m->id);
	jadd_str(o, "resource_id", m->payment_id);
	jadd_str(o, "event_type", m->event_type);
	webhook_time(o, "created_date", m->created_ms);
	jadd_str(o, "status", states[m->state]);
	jadd_bool(o, "lie", m->lie);
	if (m->state == MSG_PENDING && m->failures > 0)
		webhook_time(o, "next_attempt_at", m->next_due);
	arr = jadd_arr(o, "attempts");
	for (i = 0; i < m->natt; i++) {
		a = jnew_obj();
		jadd_int(a, "attempt", (int64_t)i + 1);
		webhook_time(a, "time", m->att[i].wall_ms);
		webhook_time(a, "sim_time", m->att[i].sim_ms);
		if (m->att[i].status > 0)
			jadd_int(a, "status_code", m->att[i].status);
		else
			jadd_null(a, "status_code");
		jadd_str(a, "outcome", m->att[i].outcome);
		jadd_int(a, "duration_ms", m->att[i].duration_ms);
		jadd_bool(a, "duplicate", m->att[i].duplicate);
		jadd_item(arr, NULL, a);
	}
	jadd_str(o, "body", m->body);
	return o;
}

cJSON *
webhook_log_json(const struct webhook *wh, const char *payment_id,
    const char *event_type, size_t limit)
{
	const struct wh_msg *m, *start = wh->head;
	cJSON *o, *arr;
	size_t n = 0;

	/* With a limit and no filter, walk back to the last `limit` only. */
	if (limit > 0 && payment_id == NULL && event_type == NULL) {
		for (m = wh->tail; m != NULL && n < limit; m = m->prev) {
			start = m;
			n++;
		}
	}
	o = jnew_obj();
	arr = jadd_arr(o, "messages");
	for (m = start, n = 0; m != NULL; m = m->next) {
		if (payment_id != NULL && strcmp(m->payment_id, payment_id) != 0)
			continue;
		if (event_type != NULL && strcmp(m->event_type, event_type) != 0)
			continue;
		jadd_item(arr, NULL, webhook_msg_json(m));
		if (limit > 0 && ++n >= limit)
			break;
	}
	jadd_int(o, "count", cJSON_GetArraySize(arr));
	return o;
}

cJSON *
webhook_stats_json(const struct webhook *wh)
{
	cJSON *o;
	size_t q = 0;
	const struct wh_job *j;

	for (j = wh->qhead; j != NULL; j = j->next)
		q++;
	o = jnew_obj();
	jadd_bool(o, "enabled", wh->enabled);
	jadd_int(o, "emitted", (int64_t)wh->emitted);
	jadd_int(o, "attempts", (int64_t)wh->attempts);
	jadd_int(o, "delivered", (int64_t)wh->delivered);
	jadd_int(o, "failed", (int64_t)wh->failed);
	jadd_int(o, "retries_scheduled", (int64_t)wh->retries);
	jadd_int(o, "duplicates_sent", (int64_t)wh->dups);
	jadd_int(o, "in_flight", (int64_t)wh->inflight);
	jadd_int(o, "queued", (int64_t)q);
	jadd_int(o, "logged", (int64_t)wh->nmsgs);
	return o;
}
