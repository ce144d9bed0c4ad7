/*
 * crosscheck.c: the received -> checked stage. A timer-driven loop on the
 * main event_base takes due rows from the journal, asks GET
 * /v1/payments/{id} through apiclient (pool, rate limit), decides the
 * verdict (verdict.c) and records it, or defers the row with backoff.
 * Results are written in one journal transaction per loop pass.
 * Main thread only. Never runs on a webhook's request path, never drops a
 * row (auth failures wait for a fixed key), never logs the key or a body.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/apiclient.h"
#include "dispatch/crosscheck.h"
#include "dispatch/verdict.h"
#include "journal/journal.h"

#define CC_BACKOFF_BASE_MS	1000
#define CC_BACKOFF_CAP_MS	(5 * 60 * 1000)
#define CC_RECHECK_404_MS	3000	/* a payment can appear a moment late */
#define CC_429_DEFAULT_MS	1000	/* GOV.UK Pay: "retry after a second" */
#define CC_AUTH_PROBE_MIN_MS	1000
#define CC_AUTH_PROBE_MAX_MS	10000
#define CC_POLL_MS		1000
#define CC_IDLE_MAX_MS		60000
#define CC_SKIP_BATCH		512
#define CC_404_MARK		"api 404"

enum cc_verdict { CCV_CONFIRMED, CCV_MISMATCH, CCV_NOT_FOUND, CCV_SKIPPED,
	CCV_UNVERIFIED, CCV_N };
static const char *cc_verdict_names[CCV_N] = { "confirmed", "mismatch",
	"not_found", "skipped", "unverified" };

enum cc_outcome { CCO_200, CCO_404, CCO_429, CCO_5XX, CCO_TIMEOUT, CCO_ERROR,
	CCO_AUTH, CCO_N };
static const char *cc_outcome_labels[CCO_N] = { "outcome=\"200\"",
	"outcome=\"404\"", "outcome=\"429\"", "outcome=\"5xx\"",
	"outcome=\"timeout\"", "outcome=\"error\"", "outcome=\"auth\"" };
static const char *cc_verdict_labels[CCV_N] = { "verdict=\"confirmed\"",
	"verdict=\"mismatch\"", "verdict=\"not_found\"", "verdict=\"skipped\"",
	"verdict=\"unverified\"" };
static const double cc_latency_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10 };

/* One row being checked, then its result waiting to be written. */
struct cc_job {
	struct crosscheck *cc;
	struct cc_job	*next;
	int64_t		 id;
	char		 message_id[JOURNAL_KEY_MAX];
	char		 resource_id[27];
	char		 event_type[65];
	char		*body;
	size_t		 body_len;
	int64_t		 received_ms;
	int		 attempts;
	int		 after_404;	/* the last try was a 404 */
	/* result */
	int		 defer;		/* 1: stay received, retry at next_ms */
	enum cc_verdict	 verdict;
	char		 mismatches[128];
	int		 api_status;
	char		*api_body;
	size_t		 api_body_len;
	int64_t		 next_ms;
	char		 error[200];
};

struct crosscheck {
	struct event_base *base;
	const struct config *cfg;
	struct journal	*journal;
	crosscheck_checked_fn checked;
	void		*checked_arg;
	struct apiclient *api;		/* NULL: cross_check = off */
	struct event	*timer;		/* the pump */
	struct event	*flush;		/* write finished jobs */
	struct cc_job	*inflight;
	size_t		 ninflight;
	struct cc_job	*done, **done_tail;
	size_t		 ndone;
	int		 auth_failing;
	int64_t		 auth_probe_ms;
	int64_t		 auth_backoff_ms;
	int64_t		 pause_until_ms;	/* after a 429 */
	uint64_t	 rng;
	struct metric_counter m_results[CCV_N];
	struct metric_counter m_requests[CCO_N];
	struct metric_histogram m_latency;
};

static void cc_pump(struct crosscheck *);

static uint64_t
cc_rand(struct crosscheck *cc)
{
	/* xorshift64*: jitter only, not security */
	cc->rng ^= cc->rng >> 12;
	cc->rng ^= cc->rng << 25;
	cc->rng ^= cc->rng >> 27;
	return cc->rng * 2685821657736338717ULL;
}

static void
cc_arm(struct crosscheck *cc, int64_t ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (evtimer_add(cc->timer, &tv) != 0)
		log_error("crosscheck_timer_failed", NULL);
}

static void
cc_job_free(struct cc_job *job)
{
	free(job->body);
	free(job->api_body);
	free(job);
}

/* ---- deciding ------------------------------------------------------- */

static void
cc_set_verdict(struct cc_job *job, enum cc_verdict v, const char *mismatches,
    const struct apiclient_answer *a)
{
	job->defer = 0;
	job->verdict = v;
	xsnprintf(job->mismatches, sizeof job->mismatches, "%s",
	    mismatches != NULL ? mismatches : "");
	if (a != NULL && a->result == APICLIENT_ANSWER) {
		job->api_status = a->status;
		if (a->body_len > 0) {
			job->api_body = xmalloc(a->body_len);
			memcpy(job->api_body, a->body, a->body_len);
			job->api_body_len = a->body_len;
		}
	}
}

/* Backoff for the n-th failed attempt: base * 2^n, capped, half jitter. */
static int64_t
cc_backoff(struct crosscheck *cc, int attempts)
{
	int64_t d = CC_BACKOFF_BASE_MS;
	int i;

	for (i = 0; i < attempts && d < CC_BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > CC_BACKOFF_CAP_MS)
		d = CC_BACKOFF_CAP_MS;
	return d / 2 + (int64_t)(cc_rand(cc) % (uint64_t)(d / 2 + 1));
}

/* The API could not answer usefully: retry later, or give up. */
static void
cc_transient(struct crosscheck *cc, struct cc_job *job,
    const struct apiclient_answer *a, int64_t min_delay, const char *why)
{
	int64_t now = util_now_ms(), deadline, delay;

	deadline = job->received_ms + cc->cfg->cross_check_give_up_ms;
	xsnprintf(job->error, sizeof job->error, "%s", why);
	if (now >= deadline) {
		cc_set_verdict(job, CCV_UNVERIFIED, NULL, a);
		return;
	}
	delay = cc_backoff(cc, job->attempts);
	if (delay < min_delay)
		delay = min_delay;
	job->next_ms = now + delay;
	if (job->next_ms > deadline)	/* give up on time, not late */
		job->next_ms = deadline;
	job->defer = 1;
}

static void
cc_auth_failed(struct crosscheck *cc, struct cc_job *job, int status)
{
	int64_t now = util_now_ms();
	char *cause = NULL;

	if (!cc->auth_failing) {
		log_error("api_key_rejected", "status=%d key_file=%s "
		    "action=rows_wait_until_the_key_is_fixed", status,
		    cc->cfg->api_key_file);
		cc->auth_failing = 1;
		cc->auth_backoff_ms = CC_AUTH_PROBE_MIN_MS;
	} else if (cc->auth_probe_ms <= now) {
		cc->auth_backoff_ms *= 2;
		if (cc->auth_backoff_ms > CC_AUTH_PROBE_MAX_MS)
			cc->auth_backoff_ms = CC_AUTH_PROBE_MAX_MS;
	}
	cc->auth_probe_ms = now + cc->auth_backoff_ms;
	/* Fixing the key file is enough: read it again before the probe. */
	if (apiclient_reload_key(cc->api, &cause) != 0) {
		log_warn("api_key_reload_failed", "reason=\"%s\"", cause);
		free(cause);
	}
	job->defer = 1;
	job->next_ms = cc->auth_probe_ms;
	xsnprintf(job->error, sizeof job->error, "api %d: API key rejected",
	    status);
}

static void
cc_auth_ok(struct crosscheck *cc)
{
	if (!cc->auth_failing)
		return;
	cc->auth_failing = 0;
	log_info("api_key_accepted", "note=cross-checks_resume");
}

static void
cc_answer_200(struct crosscheck *cc, struct cc_job *job,
    const struct apiclient_answer *a)
{
	char which, reason[VERDICT_REASON_MAX], why[160];
	struct verdict v;

	if (verdict_from_json(job->event_type, job->body, job->body_len,
	    a->body, a->body_len, &v, &which, reason) == 0) {
		metric_inc(&cc->m_requests[CCO_200]);
		cc_auth_ok(cc);
		cc_set_verdict(job, v.kind == VERDICT_CONFIRMED ? CCV_CONFIRMED :
		    CCV_MISMATCH, v.mismatches, a);
		return;
	}
	if (which == 'w') {	/* cannot happen for a validated row */
		metric_inc(&cc->m_requests[CCO_200]);
		cc_auth_ok(cc);
		cc_set_verdict(job, CCV_MISMATCH, "[\"resource\"]", a);
		return;
	}
	/* A 200 whose body is no payment is a failed call, counted once
	 * (as error), so PayhookCrossCheckFailing sees it. */
	metric_inc(&cc->m_requests[CCO_ERROR]);
	xsnprintf(why, sizeof why, "api 200: %s", reason);
	cc_transient(cc, job, a, 0, why);
}

static void
cc_decide(struct crosscheck *cc, struct cc_job *job,
    const struct apiclient_answer *a)
{
	int64_t now = util_now_ms();
	char why[200];
	int st = a->status;

	if (a->result == APICLIENT_TIMEOUT) {
		metric_inc(&cc->m_requests[CCO_TIMEOUT]);
		cc_transient(cc, job, a, 0, a->error);
		return;
	}
	if (a->result == APICLIENT_ERROR) {
		metric_inc(&cc->m_requests[CCO_ERROR]);
		cc_transient(cc, job, a, 0, a->error);
		return;
	}
	/* A 200 proves the key only with a payment in it (cc_answer_200): a
	 * proxy's page must not end a rejected key's alarm. */
	if (st == 404)
		cc_auth_ok(cc);
	if (st == 200) {
		cc_answer_200(cc, job, a);
	} else if (st == 404) {
		metric_inc(&cc->m_requests[CCO_404]);
		if (job->after_404) {
			cc_set_verdict(job, CCV_NOT_FOUND, NULL, a);
			return;
		}
		job->defer = 1;
		job->next_ms = now + CC_RECHECK_404_MS;
		xsnprintf(job->error, sizeof job->error, CC_404_MARK
		    ": not found yet; one re-check");
	} else if (st == 401 || st == 403) {
		metric_inc(&cc->m_requests[CCO_AUTH]);
		cc_auth_failed(cc, job, st);
	} else if (st == 429) {
		metric_inc(&cc->m_requests[CCO_429]);
		if (a->retry_after_ms >= 0)
			cc->pause_until_ms = now + a->retry_after_ms;
		else
			cc->pause_until_ms = now + CC_429_DEFAULT_MS;
		xsnprintf(why, sizeof why, "api 429: rate limited "
		    "(retry_after_ms=%lld)", (long long)a->retry_after_ms);
		cc_transient(cc, job, a, cc->pause_until_ms - now, why);
	} else {
		metric_inc(&cc->m_requests[st >= 500 && st <= 599 ? CCO_5XX :
		    CCO_ERROR]);
		xsnprintf(why, sizeof why, "api %d: unexpected answer", st);
		cc_transient(cc, job, a, 0, why);
	}
}

/* ---- writing results ------------------------------------------------- */

static int
cc_apply(struct crosscheck *cc, struct cc_job *job, int64_t now,
    char **cause)
{
	struct journal_verdict jv;

	if (job->defer)
		return journal_defer_check(cc->journal, job->id, job->next_ms,
		    job->error, cause);
	memset(&jv, 0, sizeof jv);
	jv.verdict = cc_verdict_names[job->verdict];
	jv.mismatches = job->verdict == CCV_MISMATCH ? job->mismatches : NULL;
	jv.api_status = job->api_status;
	jv.api_body = job->api_body;
	jv.api_body_len = job->api_body_len;
	return journal_set_verdict(cc->journal, job->id, &jv, now, cause);
}

static void
cc_log_result(struct crosscheck *cc, const struct cc_job *job)
{
	if (job->defer) {
		log_info("crosscheck_retry", "event_id=%s payment_id=%s "
		    "attempt=%d next_in_ms=%lld reason=\"%s\"", job->message_id,
		    job->resource_id, job->attempts + 1,
		    (long long)(job->next_ms - util_now_ms()), job->error);
		return;
	}
	metric_inc(&cc->m_results[job->verdict]);
	if (job->verdict == CCV_CONFIRMED || job->verdict == CCV_SKIPPED)
		log_debug("crosscheck_verdict", "event_id=%s payment_id=%s "
		    "verdict=%s", job->message_id, job->resource_id,
		    cc_verdict_names[job->verdict]);
	else
		log_warn("crosscheck_verdict", "event_id=%s payment_id=%s "
		    "verdict=%s mismatches=%s api_status=%d%s%s%s",
		    job->message_id, job->resource_id,
		    cc_verdict_names[job->verdict],
		    job->mismatches[0] ? job->mismatches : "[]",
		    job->api_status, job->error[0] ? " last_error=\"" : "",
		    job->error, job->error[0] ? "\"" : "");
}

/* Write every finished job in one transaction (one by one on failure). */
static void
cc_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct crosscheck *cc = arg;
	struct cc_job *job, *next;
	int64_t now = util_now_ms();
	char *cause = NULL, *first = NULL;
	int ok = 1, checked = 0, failed = 0;
	struct timeval tv = { 0, 1000 };

	if (cc->done == NULL)
		return;
	if (journal_in_transaction(cc->journal)) {	/* a group commit */
		if (event_add(cc->flush, &tv) != 0)
			log_error("crosscheck_flush_failed", NULL);
		return;
	}
	if (journal_begin(cc->journal, &cause) != 0)
		ok = 0;
	for (job = cc->done; ok && job != NULL; job = job->next)
		ok = cc_apply(cc, job, now, &cause) == 0;
	if (ok && journal_commit(cc->journal, &cause) != 0)
		ok = 0;
	if (!ok) {
		log_warn("crosscheck_batch_failed", "reason=\"%s\" "
		    "action=one_by_one", cause != NULL ? cause : "?");
		free(cause);
		cause = NULL;
		if (journal_in_transaction(cc->journal))
			journal_rollback(cc->journal);
	}
	for (job = cc->done; job != NULL; job = next) {
		next = job->next;
		if (!ok && cc_apply(cc, job, now, &cause) != 0) {
			/* the row stays 'received' and is checked again */
			if (failed++ == 0)
				first = cause;
			else
				free(cause);
			cause = NULL;
		} else {
			cc_log_result(cc, job);
			checked += !job->defer;
		}
		cc_job_free(job);
	}
	cc->done = NULL;
	cc->done_tail = &cc->done;
	cc->ndone = 0;
	if (checked > 0 && cc->checked != NULL)
		cc->checked(cc->checked_arg);
	if (failed > 0) {
		/* The journal refuses writes (full, locked): back off instead
		 * of taking the same rows again at once. */
		log_error("crosscheck_write_failed", "rows=%d reason=\"%s\" "
		    "retry_in_ms=%d", failed, first, CC_POLL_MS);
		free(first);
		cc_arm(cc, CC_POLL_MS);
		return;
	}
	cc_pump(cc);
}

static void
cc_finish(struct crosscheck *cc, struct cc_job *job)
{
	job->next = NULL;
	*cc->done_tail = job;
	cc->done_tail = &job->next;
	cc->ndone++;
	event_active(cc->flush, EV_TIMEOUT, 1);
}

static void
cc_done_cb(void *arg, const struct apiclient_answer *a)
{
	struct cc_job *job = arg, **p;
	struct crosscheck *cc = job->cc;

	for (p = &cc->inflight; *p != NULL; p = &(*p)->next) {
		if (*p == job) {
			*p = job->next;
			cc->ninflight--;
			break;
		}
	}
	metric_observe(&cc->m_latency, a->elapsed_ns);
	cc_decide(cc, job, a);
	cc_finish(cc, job);
	cc_pump(cc);		/* reuse the free connection now */
}

/* ---- taking rows ----------------------------------------------------- */

/* 1 while the row has a request in flight or a result not yet written. */
static int
cc_is_busy(struct crosscheck *cc, int64_t id)
{
	struct cc_job *job;

	for (job = cc->inflight; job != NULL; job = job->next) {
		if (job->id == id)
			return 1;
	}
	for (job = cc->done; job != NULL; job = job->next) {
		if (job->id == id)
			return 1;
	}
	return 0;
}

static struct cc_job *
cc_job_new(struct crosscheck *cc, const struct journal_row *r)
{
	struct cc_job *job = xcalloc(1, sizeof *job);

	job->cc = cc;
	job->id = r->id;
	xsnprintf(job->message_id, sizeof job->message_id, "%s",
	    r->message_id);
	xsnprintf(job->resource_id, sizeof job->resource_id, "%s",
	    r->resource_id);
	xsnprintf(job->event_type, sizeof job->event_type, "%s",
	    r->event_type);
	job->body = xmalloc(r->body_len + 1);
	memcpy(job->body, r->body, r->body_len);
	job->body[r->body_len] = '\0';
	job->body_len = r->body_len;
	job->received_ms = r->received_ms;
	job->attempts = r->check_attempts;
	job->after_404 = r->last_error != NULL &&
	    strncmp(r->last_error, CC_404_MARK, strlen(CC_404_MARK)) == 0;
	return job;
}

/* Start one request; 0, or -1 when the client refused (no capacity). */
static int
cc_start(struct crosscheck *cc, const struct journal_row *r)
{
	struct cc_job *job = cc_job_new(cc, r);
	char *cause = NULL;

	if (!util_is_pay_id(job->resource_id, strlen(job->resource_id))) {
		/* never reaches a URL; a validated row always passes */
		cc_set_verdict(job, CCV_MISMATCH, "[\"payment_id\"]", NULL);
		cc_finish(cc, job);
		return 0;
	}
	if (apiclient_get_payment(cc->api, job->resource_id, cc_done_cb, job,
	    &cause) != 0) {
		log_debug("crosscheck_not_started", "reason=\"%s\"", cause);
		free(cause);
		cc_job_free(job);
		return -1;
	}
	job->next = cc->inflight;
	cc->inflight = job;
	cc->ninflight++;
	return 0;
}

/* cross_check = off: every due row gets "skipped", no HTTP. */
static void
cc_pump_skip(struct crosscheck *cc)
{
	struct journal_row *rows = NULL;
	struct cc_job *job;
	char *cause = NULL;
	size_t n = 0, i;
	int64_t next;

	if (journal_due_checks(cc->journal, util_now_ms(), CC_SKIP_BATCH,
	    &rows, &n, &cause) != 0) {
		log_error("crosscheck_journal_failed", "reason=\"%s\"", cause);
		free(cause);
		cc_arm(cc, CC_POLL_MS);
		return;
	}
	for (i = 0; i < n; i++) {
		job = xcalloc(1, sizeof *job);
		job->cc = cc;
		job->id = rows[i].id;
		xsnprintf(job->message_id, sizeof job->message_id, "%s",
		    rows[i].message_id);
		xsnprintf(job->resource_id, sizeof job->resource_id, "%s",
		    rows[i].resource_id);
		job->verdict = CCV_SKIPPED;
		cc_finish(cc, job);	/* the flush pumps again */
	}
	journal_rows_free(rows, n);
	if (n > 0)
		return;
	if (journal_next_check_at(cc->journal, &next, &cause) != 0) {
		free(cause);
		next = util_now_ms() + CC_POLL_MS;
	}
	if (next >= 0)
		cc_arm(cc, next - util_now_ms());
}

/* When to look again if nothing in flight will call us back. */
static void
cc_arm_idle(struct crosscheck *cc, int64_t now)
{
	char *cause = NULL;
	int64_t next;

	if (journal_next_check_at(cc->journal, &next, &cause) != 0) {
		log_error("crosscheck_journal_failed", "reason=\"%s\"", cause);
		free(cause);
		cc_arm(cc, CC_POLL_MS);
		return;
	}
	if (next < 0)
		return;			/* nothing waiting; wake() will come */
	if (next <= now)
		cc_arm(cc, CC_POLL_MS);	/* only rows in flight are due */
	else
		cc_arm(cc, next - now > CC_IDLE_MAX_MS ? CC_IDLE_MAX_MS :
		    next - now);
}

static void
cc_pump(struct crosscheck *cc)
{
	struct journal_row *rows = NULL;
	int64_t now = util_now_ms(), wait;
	size_t avail, n = 0, i, started = 0;
	char *cause = NULL;

	if (cc->api == NULL) {
		if (cc->done == NULL)	/* else the flush pumps again */
			cc_pump_skip(cc);
		return;
	}
	if (now < cc->pause_until_ms) {
		cc_arm(cc, cc->pause_until_ms - now);
		return;
	}
	if (cc->auth_failing && now < cc->auth_probe_ms) {
		cc_arm(cc, cc->auth_probe_ms - now);
		return;
	}
	avail = apiclient_available(cc->api, &wait);
	if (cc->auth_failing)	/* one probe at a time */
		avail = cc->ninflight == 0 && avail > 0 ? 1 : 0;
	if (avail == 0) {
		if (wait >= 0)
			cc_arm(cc, wait);
		return;			/* else a completion pumps again */
	}
	if (journal_due_checks(cc->journal, now, avail + cc->ninflight +
	    cc->ndone, &rows, &n, &cause) != 0) {
		log_error("crosscheck_journal_failed", "reason=\"%s\"", cause);
		free(cause);
		cc_arm(cc, CC_POLL_MS);
		return;
	}
	for (i = 0; i < n && started < avail; i++) {
		if (cc_is_busy(cc, rows[i].id))
			continue;
		if (cc_start(cc, &rows[i]) != 0)
			break;
		started++;
	}
	journal_rows_free(rows, n);
	if (started == avail && !cc->auth_failing) {
		/* maybe more due: go on when capacity returns */
		avail = apiclient_available(cc->api, &wait);
		if (avail > 0)
			cc_arm(cc, 0);
		else if (wait >= 0)
			cc_arm(cc, wait);
		return;
	}
	cc_arm_idle(cc, now);
}

static void
cc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	cc_pump(arg);
}

/* ---- life cycle ------------------------------------------------------ */

static double
cc_auth_gauge(void *arg)
{
	return ((struct crosscheck *)arg)->auth_failing;
}

static double
cc_pending_gauge(void *arg)
{
	struct crosscheck *cc = arg;
	int64_t counts[JOURNAL_NSTATES];
	char *cause = NULL;

	if (journal_count_states(cc->journal, counts, &cause) != 0) {
		free(cause);
		return 0;
	}
	return (double)counts[JOURNAL_RECEIVED];
}

static void
cc_register_metrics(struct crosscheck *cc)
{
	size_t i;

	for (i = 0; i < CCV_N; i++)
		metrics_counter("payhook_crosscheck_results_total",
		    "Cross-check verdicts recorded, by verdict.",
		    cc_verdict_labels[i], &cc->m_results[i]);
	for (i = 0; i < CCO_N; i++)
		metrics_counter("payhook_crosscheck_requests_total",
		    "GET /v1/payments/{id} requests by outcome (200: a payment "
		    "the verdict was taken from; auth: 401 or 403; error: no "
		    "answer, another status, or a 200 that is no payment).",
		    cc_outcome_labels[i], &cc->m_requests[i]);
	cc->m_latency.bounds = cc_latency_bounds;
	cc->m_latency.n = UTIL_ARRAY_LEN(cc_latency_bounds);
	metrics_histogram("payhook_crosscheck_seconds",
	    "Latency of one GET /v1/payments/{id} (answer, error or "
	    "timeout).", &cc->m_latency);
	metrics_gauge("payhook_crosscheck_pending",
	    "Journal rows waiting for a cross-check verdict (state received).",
	    NULL, cc_pending_gauge, cc);
	metrics_gauge("payhook_api_auth_failing",
	    "1 while GOV.UK Pay rejects the API key (401/403); rows wait.",
	    NULL, cc_auth_gauge, cc);
}

struct crosscheck *
crosscheck_new(struct event_base *base, const struct config *cfg,
    struct journal *journal, crosscheck_checked_fn checked, void *arg,
    char **cause)
{
	struct apiclient_config ac;
	struct crosscheck *cc;

	cc = xcalloc(1, sizeof *cc);
	cc->base = base;
	cc->cfg = cfg;
	cc->journal = journal;
	cc->checked = checked;
	cc->checked_arg = arg;
	cc->done_tail = &cc->done;
	cc->rng = (uint64_t)util_now_ms() * 0x9e3779b97f4a7c15ULL | 1;
	if (cfg->cross_check) {
		if (cfg->api_key_file == NULL) {
			*cause = xstrdup("cross_check = on needs api_key_file");
			goto fail;
		}
		memset(&ac, 0, sizeof ac);
		ac.base_url = cfg->api_base_url;
		ac.key_file = cfg->api_key_file;
		ac.ca_file = cfg->api_ca_file;
		ac.pool_size = (int)cfg->api_pool_size;
		ac.rate_limit = (int)cfg->api_rate_limit;
		ac.timeout_ms = cfg->api_timeout_ms;
		ac.connect_timeout_ms = cfg->api_connect_timeout_ms;
		if ((cc->api = apiclient_new(base, &ac, cause)) == NULL)
			goto fail;
	} else
		log_info("crosscheck_off", "note=events_published_with_"
		    "verdict_skipped");
	if ((cc->timer = evtimer_new(base, cc_timer_cb, cc)) == NULL ||
	    (cc->flush = evtimer_new(base, cc_flush_cb, cc)) == NULL) {
		*cause = xstrdup("crosscheck: evtimer_new failed");
		goto fail;
	}
	cc_register_metrics(cc);
	cc_arm(cc, 0);		/* resume what the journal holds */
	return cc;
fail:
	crosscheck_free(cc);
	return NULL;
}

void
crosscheck_free(struct crosscheck *cc)
{
	struct cc_job *job, *next;

	if (cc == NULL)
		return;
	apiclient_free(cc->api);	/* in-flight rows stay 'received' */
	for (job = cc->inflight; job != NULL; job = next) {
		next = job->next;
		cc_job_free(job);
	}
	cc->inflight = NULL;
	/* Keep answers already decided, unless a transaction is open. */
	if (cc->done != NULL && !journal_in_transaction(cc->journal)) {
		cc->checked = NULL;
		if (cc->timer != NULL)
			event_del(cc->timer);
		for (job = cc->done; job != NULL; job = next) {
			char *cause = NULL;

			next = job->next;
			if (cc_apply(cc, job, util_now_ms(), &cause) != 0)
				free(cause);
			cc_job_free(job);
		}
		cc->done = NULL;
	}
	for (job = cc->done; job != NULL; job = next) {
		next = job->next;
		cc_job_free(job);
	}
	if (cc->timer != NULL)
		event_free(cc->timer);
	if (cc->flush != NULL)
		event_free(cc->flush);
	free(cc);
}

void
crosscheck_wake(struct crosscheck *cc)
{
	if (cc != NULL)
		cc_arm(cc, 0);	/* the pump checks capacity and pauses */
}

void
crosscheck_count_skipped(struct crosscheck *cc, int n)
{
	if (cc != NULL && n > 0)
		metric_add(&cc->m_results[CCV_SKIPPED], (uint64_t)n);
}

int
crosscheck_ready(void *arg, const char **why)
{
	struct crosscheck *cc = arg;

	if (cc != NULL && cc->auth_failing) {
		*why = "api key rejected";
		return 0;
	}
	return 1;
}
