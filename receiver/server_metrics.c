/*
 * server_metrics.c: the webhook endpoint's metrics, registered once at
 * start-up on the main thread. ph-http (statuses, results, signatures,
 * reply latency) and the main thread (commits, batches, busy retries) and
 * the syncer (fsync latency) update them; every counter and histogram is
 * atomic (common/metrics.h).
 */
#include <stddef.h>

#include "common/metrics.h"
#include "common/util.h"
#include "receiver/server_int.h"

/* Statuses counted by payhook_http_requests_total (anything else: other). */
static const int server_statuses[] = { 200, 400, 401, 404, 405, 413, 415,
    501, 503, 0 };
static const char *server_status_labels[] = { "status=\"200\"",
    "status=\"400\"", "status=\"401\"", "status=\"404\"", "status=\"405\"",
    "status=\"413\"", "status=\"415\"", "status=\"501\"",
    "status=\"503\"", "status=\"other\"" };
#define SERVER_NSTATUS UTIL_ARRAY_LEN(server_statuses)

_Static_assert(SERVER_NSTATUS == UTIL_ARRAY_LEN(((struct server *)0)->m_status),
    "m_status has a counter per status");

/* To 10 s: a stalling disk is what these two histograms are looked at for
 * (PayhookSlowReplies' runbook), and a top bucket of 1 s hid how long. */
static const double server_commit_bounds[] = { 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 5, 10 };
static const double server_batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128,
    256 };
/* GOV.UK Pay gives up on an attempt after 3 s (and retries 60 s later). */
static const double server_reply_bounds[] = { 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3 };

/* Every response head written on the public listener (listener.c). */
void
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

void
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
