/*
 * server_store.c: the webhook group commit, on the main thread (which owns
 * the journal's write connection, as the cross-check and the publisher
 * do). Every batch ph-http handed over since the last commit goes into one
 * transaction; the batches then go back to ph-http, which answers them
 * once the syncer says the commit is durable. Never touches a request,
 * never blocks on the journal's lock (a busy lock is retried on a timer).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "receiver/server_int.h"

#define SERVER_BUSY_RETRY_MS	2	/* journal locked: try again after */
#define SERVER_BUSY_GIVE_UP_MS	500	/* then 503 (the sender waits 3 s) */

/* The journal entry of one pending webhook. */
static void
server_entry(const struct server *s, const struct server_pending *p,
    struct journal_entry *e)
{
	memset(e, 0, sizeof *e);
	e->message_id = p->key;
	e->received_ms = p->received_ms;
	e->secret_index = p->secret;
	e->body = p->body;
	e->body_len = p->len;
	if (p->quarantine) {
		e->quarantine_reason = p->reason;
		return;
	}
	e->event_type = p->event_type;
	e->resource_id = p->payment_id;
	e->occurred_ms = p->occurred_ms;
	e->body_toks = p->ntoks > 0 ? p->toks : NULL;
	e->body_ntoks = p->ntoks;
	/* cross_check = off: nothing to wait for. */
	if (!s->cfg->cross_check)
		e->verdict = "skipped";
}

/* Store every pending batch in one transaction; 0 with *ticket and *rows,
 * or -1 and *cause (nothing stored). */
static int
server_store_pending(struct server *s, uint64_t *ticket, size_t *rows,
    char **cause)
{
	const struct server_store_hooks *h = &s->hooks;
	struct server_batch *b;
	struct server_pending *p;
	struct journal_entry e;
	size_t i;
	int r;

	*rows = 0;
	if (journal_begin_nowait(s->journal, cause) != 0)
		return -1;
	if (h->begin != NULL && h->begin(h->arg, cause) != 0)
		goto fail;
	TAILQ_FOREACH(b, &s->pending, entry) {
		for (i = 0; i < b->n; i++) {
			p = &b->p[i];
			server_entry(s, p, &e);
			r = h->put != NULL ? h->put(h->arg, &e, cause) :
			    (int)journal_put(s->journal, &e, cause);
			if (r != JOURNAL_PUT_NEW && r != JOURNAL_PUT_DUPLICATE)
				goto fail;
			p->outcome = r == JOURNAL_PUT_DUPLICATE ?
			    SERVER_DUPLICATE : p->quarantine ?
			    SERVER_QUARANTINED : SERVER_ACCEPTED;
		}
		*rows += b->n;
	}
	if (journal_commit_deferred(s->journal, ticket, cause) != 0)
		goto fail;
	if (h->end != NULL)
		h->end(h->arg, 1, *ticket);
	return 0;
fail:
	journal_rollback(s->journal);
	if (h->end != NULL)
		h->end(h->arg, 0, 0);
	return -1;
}

/* Give the pending batches back to ph-http to be answered. */
static void
server_hand_back(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	TAILQ_CONCAT(&s->stored, &s->pending, entry);
	pthread_mutex_unlock(&s->lock);
	event_active(s->back_ev, EV_TIMEOUT, 0);
}

void
server_store_run(struct server *s)
{
	struct server_batch *b;
	char *cause = NULL;
	uint64_t ticket = 0;
	size_t rows;
	int64_t t0;
	int rc;

	s->busy_wait = 0;
	pthread_mutex_lock(&s->lock);
	TAILQ_CONCAT(&s->pending, &s->to_store, entry);
	pthread_mutex_unlock(&s->lock);
	if ((b = TAILQ_FIRST(&s->pending)) == NULL || s->journal == NULL)
		return;
	t0 = util_mono_ns();
	rc = server_store_pending(s, &ticket, &rows, &cause);
	/* The budget runs from the first busy try, not from when ph-http
	 * opened the batch: a main loop busy for a while (an hourly prune)
	 * must not turn the next busy lock into an immediate 503. */
	if (rc != 0 && journal_was_busy(s->journal) && s->busy_since_ms == 0)
		s->busy_since_ms = util_mono_ms();
	if (rc != 0 && journal_was_busy(s->journal) && !s->freeing &&
	    util_mono_ms() - s->busy_since_ms < SERVER_BUSY_GIVE_UP_MS) {
		/* Another connection (a WAL checkpoint) holds the lock for a
		 * moment: batches handed over meanwhile join these, and all
		 * go shortly (or when the checkpointer says it let go). */
		struct timeval tv = { 0, SERVER_BUSY_RETRY_MS * 1000 };

		free(cause);
		metric_inc(&s->m_busy_retries);
		evtimer_add(s->retry_ev, &tv);
		s->busy_wait = 1;
		return;
	}
	s->busy_since_ms = 0;
	if (rc != 0) {
		rows = 0;
		TAILQ_FOREACH(b, &s->pending, entry) {
			b->failed = 1;
			rows += b->n;
		}
		metric_inc(&s->m_commit_failed);
		if (atomic_load(&s->journal_ok) ||
		    server_may_warn(&s->store_warn))
			log_error("journal_commit_failed", "rows=%zu "
			    "error=\"%s\"", rows, cause ? cause : "unknown");
		free(cause);
	} else {
		metric_observe(&s->m_commit, (uint64_t)(util_mono_ns() - t0));
		metric_observe(&s->m_batch, (uint64_t)rows);
		TAILQ_FOREACH(b, &s->pending, entry)
			b->ticket = ticket;
		s->last_ticket = ticket;
	}
	server_hand_back(s);
}

/* ph-http handed batches over. While a retry is due they wait for it. */
static void
server_store_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;

	if (!s->busy_wait)
		server_store_run(s);
}

static void
server_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	server_store_run(arg);
}

/* The checkpointer let go of the write lock, or the journal was lost (the
 * lock listener, on another thread, activated this). A lost journal is
 * seen here in either durability. */
static void
server_lock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	const char *lost;

	if ((lost = journal_lost(s->journal)) != NULL && !s->lost &&
	    s->fatal_cb != NULL) {
		s->lost = 1;
		s->fatal_cb(s->fatal_arg, lost);
	}
	if (!s->busy_wait)
		return;
	event_del(s->retry_ev);
	server_store_run(s);
}

/* New rows became durable (counted by ph-http): wake the pipeline. */
static void
server_fresh_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	uint64_t ok = atomic_exchange(&s->fresh_ok, 0);
	uint64_t q = atomic_exchange(&s->fresh_q, 0);

	if (ok + q > 0 && s->commit_cb != NULL)
		s->commit_cb(s->commit_arg, ok > INT32_MAX ? INT32_MAX :
		    (int)ok, q > INT32_MAX ? INT32_MAX : (int)q);
}

int
server_store_init(struct server *s)
{
	TAILQ_INIT(&s->pending);
	s->store_ev = event_new(s->base, -1, 0, server_store_cb, s);
	s->retry_ev = evtimer_new(s->base, server_retry_cb, s);
	s->lock_ev = event_new(s->base, -1, 0, server_lock_cb, s);
	s->fresh_ev = event_new(s->base, -1, 0, server_fresh_cb, s);
	if (s->store_ev == NULL || s->retry_ev == NULL || s->lock_ev == NULL ||
	    s->fresh_ev == NULL)
		return -1;
	return 0;
}

void
server_store_free(struct server *s)
{
	if (s->store_ev != NULL)
		event_free(s->store_ev);
	if (s->retry_ev != NULL)
		event_free(s->retry_ev);
	if (s->lock_ev != NULL)
		event_free(s->lock_ev);
	if (s->fresh_ev != NULL)
		event_free(s->fresh_ev);
}

/* The syncer finished an fsync (on its thread): ph-http answers. */
static void
server_sync_notify(void *arg)
{
	struct server *s = arg;

	event_active(s->back_ev, EV_TIMEOUT, 0);
}

/* The checkpointer let go of the lock, or the journal was lost (on
 * another thread): hop to the main thread. */
static void
server_lock_notify(void *arg)
{
	struct server *s = arg;

	event_active(s->lock_ev, EV_TIMEOUT, 0);
}

void
server_attach_journal(struct server *s, struct journal *journal)
{
	s->journal = journal;
	journal_lock_listen(journal, server_lock_notify, s);
	journal_sync_listen(journal, server_sync_notify, s);
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
