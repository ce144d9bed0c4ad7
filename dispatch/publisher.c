/*
 * publisher.c: the checked -> published stage, on the main (libevent)
 * thread. Takes rows needing an event from the journal, normalises them,
 * assigns each seq with journal_add_event (the stored JSON is exactly what
 * is sent) and hands (seq, topic, json) to the bus thread with DONTWAIT.
 * The bus reports "sent up to seq N" through an eventfd, and events are
 * then marked published (gathered, every PUBLISHER_MARK_MS). A webhook
 * whose verdict is known at the door gets its event inside the receiver's
 * group commit instead (publisher_store_hooks). Also reads the CURVE key
 * files at start-up. It must never block on ZeroMQ.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.h>

#include <event2/event.h>

#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/bus.h"
#include "dispatch/normalise.h"
#include "dispatch/publisher.h"
#include "journal/journal.h"
#include "receiver/server.h"

#define PUBLISHER_BATCH		128	/* rows or events per journal read */
#define PUBLISHER_PUMP_MAX	128	/* rows per callback, then yield: the
				   loop must go on reading webhooks */
#define PUBLISHER_TICK_MS	1000	/* safety-net pass */
#define PUBLISHER_RETRY_MS	5	/* journal busy with a group commit */
#define PUBLISHER_TICKETS	8	/* batches waiting for their fsync */
#define PUBLISHER_MARK_MS	25	/* sent events marked published after */
#define PUBLISHER_KEEP_MAX	4096	/* fused events kept for the hand-off */

/* An event assigned in the open batch, handed over after COMMIT. */
struct publisher_pending {
	int64_t		 seq;
	char		 topic[NORMALISE_TOPIC_MAX];
	char		*json;
	size_t		 len;
};

struct publisher {
	struct event_base	*base;
	struct journal		*journal;
	struct bus		*bus;
	int			 include_pii;
	int			 efd;		/* bus -> main: sent up to */
	struct event		*ev_sent;
	struct event		*ev_pump;
	struct event		*ev_tick;
	struct event		*ev_retry;
	struct event		*ev_mark;
	_Atomic int64_t		 sent_upto;	/* written by the bus thread */
	int64_t			 assigned;	/* highest seq in the journal */
	int64_t			 handed;	/* highest seq given to the bus */
	int64_t			 confirmed;	/* highest seq marked published */
	int64_t			 durable;	/* highest seq surely on disk */
	struct {
		uint64_t	 ticket;	/* journal sync ticket */
		int64_t		 upto;		/* seqs it makes durable */
	}			 tickets[PUBLISHER_TICKETS];
	int			 ntickets;
	int			 listening;	/* a journal sync listener */
	int			 blocked;	/* pipe full until next sent */
	int			 broken;	/* seq invariant broken: stop */
	int			 fusing;	/* in a group commit (store hooks) */
	int64_t			 fuse_next;	/* the seq its next event gets */
	/* Fused events as stored, oldest first, until handed over: the
	 * hand-off then need not read them back from the journal. */
	struct publisher_pending *kept;
	size_t			 nkept, capkept;
	size_t			 fuse_first;	/* kept[] index the batch began */
	struct bus_metrics	 m;
};

/* Bus thread: remember the highest seq sent and poke the main loop. */
static void
publisher_sent_cb(void *arg, int64_t upto)
{
	struct publisher *p = arg;
	uint64_t one = 1;

	atomic_store(&p->sent_upto, upto);
	if (write(p->efd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_warn("publisher_notify_failed", "error=\"%s\"",
		    strerror(errno));
}

static void
publisher_schedule_retry(struct publisher *p)
{
	struct timeval tv = { 0, PUBLISHER_RETRY_MS * 1000 };

	if (!evtimer_pending(p->ev_retry, NULL))
		evtimer_add(p->ev_retry, &tv);
}

/* Hand one event to the bus: 0 handed, 1 pipe full, -1 bus gone. */
static int
publisher_hand(struct publisher *p, int64_t seq, const char *topic,
    const char *json, size_t len)
{
	int rc = bus_send(p->bus, seq, topic, json, len);

	if (rc == 0)
		p->handed = seq;
	else if (rc > 0)
		p->blocked = 1;
	return rc;
}

/*
 * A seq may be sent only once it is on disk: after a power loss a seq the
 * journal forgot would be assigned again to another event. Batches commit
 * without waiting (journal_commit_deferred) and are handed over when the
 * syncer thread reports their ticket durable.
 */
static void
publisher_note_ticket(struct publisher *p, uint64_t ticket, int64_t upto)
{
	if (p->ntickets == PUBLISHER_TICKETS) {
		/* Merge into the newest: later, never earlier. */
		p->tickets[PUBLISHER_TICKETS - 1].ticket = ticket;
		p->tickets[PUBLISHER_TICKETS - 1].upto = upto;
		return;
	}
	p->tickets[p->ntickets].ticket = ticket;
	p->tickets[p->ntickets].upto = upto;
	p->ntickets++;
}

static void
publisher_update_durable(struct publisher *p)
{
	uint64_t synced, failed;
	int i = 0;

	synced = journal_synced(p->journal, &failed);
	for (; i < p->ntickets; i++) {
		if (p->tickets[i].ticket <= failed) {
			/* The fsync failed: these seqs are stored but not
			 * surely durable (a later fsync that works does not
			 * bring back pages the kernel dropped). Sending them,
			 * or anything after them, would risk a reused seq. */
			log_error("publisher_fsync_failed", "upto=%lld "
			    "action=stopped", (long long)p->tickets[i].upto);
			p->broken = 1;
			break;
		}
		if (p->tickets[i].ticket > synced)
			break;
		if (p->tickets[i].upto > p->durable)
			p->durable = p->tickets[i].upto;
	}
	memmove(p->tickets, p->tickets + i, (size_t)(p->ntickets - i) *
	    sizeof p->tickets[0]);
	p->ntickets -= i;
}

/* The syncer thread finished an fsync: pump on the loop thread. */
static void
publisher_sync_notify(void *arg)
{
	struct publisher *p = arg;

	event_active(p->ev_pump, EV_TIMEOUT, 0);
}

/* Drop the kept events at index from and after. */
static void
publisher_drop_kept(struct publisher *p, size_t from)
{
	while (p->nkept > from)
		free(p->kept[--p->nkept].json);
}

/*
 * Hand over the kept (fused) events that are next in seq order and
 * durable; those already handed are dropped. 0, 1 pipe full, -1 bus gone.
 */
static int
publisher_hand_kept(struct publisher *p)
{
	struct publisher_pending *k;
	size_t i = 0;
	int rc = 0;

	for (; i < p->nkept && rc == 0; i++) {
		k = &p->kept[i];
		if (k->seq > p->handed + 1 || k->seq > p->durable)
			break;		/* a gap (the journal has it), or later */
		if (k->seq == p->handed + 1 &&
		    (rc = publisher_hand(p, k->seq, k->topic, k->json,
		    k->len)) != 0)
			break;
		free(k->json);
	}
	if (i > 0) {
		memmove(p->kept, p->kept + i, (p->nkept - i) *
		    sizeof *p->kept);
		p->nkept -= i;
	}
	return rc;
}

/* Events assigned (perhaps before a crash) but not yet handed over: from
 * memory when they were fused and kept, else read back from the journal. */
static int
publisher_backlog(struct publisher *p)
{
	struct journal_event *ev = NULL;
	char *cause = NULL;
	size_t n, i;
	int rc = 0;

	while (rc == 0 && p->handed < p->assigned && p->handed < p->durable) {
		if ((rc = publisher_hand_kept(p)) != 0 ||
		    p->handed >= p->assigned || p->handed >= p->durable)
			break;
		if (journal_unsent_events(p->journal, p->handed,
		    PUBLISHER_BATCH, &ev, &n, &cause) != 0) {
			log_warn("publisher_backlog_failed", "error=\"%s\"",
			    cause);
			free(cause);
			return -1;
		}
		if (n == 0) {
			journal_events_free(ev, n);
			p->handed = p->assigned;
			break;
		}
		for (i = 0; i < n && rc == 0; i++) {
			if (ev[i].seq <= p->handed)
				continue;
			if (ev[i].seq > p->durable) {
				rc = 1;	/* the rest after its fsync */
				break;
			}
			rc = publisher_hand(p, ev[i].seq, ev[i].topic,
			    ev[i].json, ev[i].len);
		}
		journal_events_free(ev, n);
	}
	return rc;
}

/*
 * The event of row as it will be stored under seq: the out_of_order lookup
 * (a later event for the payment already has a seq), then the normaliser
 * (from the receiver's tokens of the body when e, the entry being stored,
 * carries them).
 * 0; -1 with *cause when the lookup failed (the journal), 1 with *cause
 * when the row cannot be normalised.
 */
static int
publisher_event_json(struct publisher *p, const struct journal_row *row,
    const struct journal_entry *e, int64_t seq, char *topic, char **json,
    size_t *len, char **cause)
{
	struct normalise_opts o;
	int later = 0;

	if (row->state != JOURNAL_QUARANTINED && row->resource_id[0] != '\0' &&
	    row->occurred_ms > 0 && journal_later_event_exists(p->journal,
	    row->resource_id, row->occurred_ms, &later, cause) != 0)
		return -1;
	memset(&o, 0, sizeof o);
	o.seq = seq;
	o.include_pii = p->include_pii;
	o.out_of_order = later;
	if (e != NULL) {
		o.body_toks = e->body_toks;
		o.body_ntoks = e->body_ntoks;
	}
	return normalise_row(row, &o, topic, json, len, cause) != 0 ? 1 : 0;
}

/* Normalise one row and assign its seq inside the open transaction. */
static int
publisher_row(struct publisher *p, const struct journal_row *row,
    struct publisher_pending *pe)
{
	char *cause = NULL;
	int64_t seq, want = p->assigned + 1;

	if (publisher_event_json(p, row, NULL, want, pe->topic, &pe->json,
	    &pe->len, &cause) != 0)
		goto fail;
	if (journal_add_event(p->journal, row->id, pe->topic, pe->json,
	    pe->len, util_now_ms(), &seq, &cause) != 0)
		goto fail;
	if (seq != want) {
		/* The JSON carries want: never send it under another seq. */
		log_error("publisher_seq_invariant", "expected=%lld got=%lld "
		    "event_id=%s", (long long)want, (long long)seq,
		    row->message_id);
		return -1;	/* rolled back; the head is read again */
	}
	pe->seq = seq;
	p->assigned = seq;
	return 0;
fail:
	log_warn("publisher_row_failed", "row=%lld event_id=%s error=\"%s\"",
	    (long long)row->id, row->message_id, cause);
	free(cause);
	return -1;
}

/* After COMMIT: hand the batch over in order (the backlog path resends
 * whatever does not fit now). */
static void
publisher_hand_batch(struct publisher *p, struct publisher_pending *pe,
    size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!p->blocked && p->handed == pe[i].seq - 1)
			publisher_hand(p, pe[i].seq, pe[i].topic, pe[i].json,
			    pe[i].len);
		log_debug("event_assigned", "seq=%lld topic=%s",
		    (long long)pe[i].seq, pe[i].topic);
	}
}

/* One transaction: up to PUBLISHER_BATCH rows get their events; only
 * committed events are handed to the bus. *n gets the rows read. */
static int
publisher_batch(struct publisher *p, size_t want, size_t *nread)
{
	struct journal_row *rows = NULL;
	struct publisher_pending *pe;
	char *cause = NULL;
	size_t n, i, k = 0;
	int64_t before = p->assigned, published;
	uint64_t ticket = 0;
	int rc = 0;

	*nread = 0;
	if (journal_rows_to_publish(p->journal, want, &rows, &n, &cause) != 0) {
		log_warn("publisher_rows_failed", "error=\"%s\"", cause);
		free(cause);
		return -1;
	}
	if (n == 0) {
		journal_rows_free(rows, n);
		return 0;
	}
	pe = xcalloc(n, sizeof *pe);
	if (journal_begin_nowait(p->journal, &cause) != 0) {
		rc = -1;
		if (journal_was_busy(p->journal)) {
			/* A checkpoint holds the lock a moment: soon again. */
			free(cause);
			cause = NULL;
			publisher_schedule_retry(p);
		}
	}
	for (i = 0; rc == 0 && i < n; i++) {
		if (rows[i].seq != 0)
			continue;	/* already has its event */
		if ((rc = publisher_row(p, &rows[i], &pe[k])) == 0)
			k++;
	}
	if (rc == 0 && journal_commit_deferred(p->journal, &ticket,
	    &cause) != 0)
		rc = -1;
	if (rc != 0) {
		if (cause != NULL) {
			log_warn("publisher_batch_failed", "error=\"%s\"",
			    cause);
			free(cause);
		}
		if (journal_in_transaction(p->journal))
			journal_rollback(p->journal);
		/* Nothing of the batch is stored: seqs go back too. */
		p->assigned = before;
		if (journal_head_seq(p->journal, &p->assigned, &published,
		    &cause) != 0) {
			free(cause);
			p->assigned = before;
		}
		k = 0;
	}
	if (k > 0) {
		publisher_note_ticket(p, ticket, p->assigned);
		publisher_update_durable(p);
		if (p->durable >= p->assigned)
			publisher_hand_batch(p, pe, k);
	}
	for (i = 0; i < n; i++)
		free(pe[i].json);
	free(pe);
	journal_rows_free(rows, n);
	*nread = rc == 0 && k > 0 ? n : 0;
	return rc;
}

/* New rows, at most budget; -1 on an error (the tick retries). */
static int
publisher_new_rows(struct publisher *p, size_t *budget)
{
	size_t n, want;

	while (*budget > 0 && !p->broken) {
		want = *budget < PUBLISHER_BATCH ? *budget : PUBLISHER_BATCH;
		if (publisher_batch(p, want, &n) != 0)
			return -1;
		if (n == 0)
			break;
		*budget -= n < *budget ? n : *budget;
	}
	return 0;
}

static void
publisher_pump(struct publisher *p)
{
	size_t budget = PUBLISHER_PUMP_MAX;

	if (p->broken || !bus_running(p->bus))
		return;
	if (journal_in_transaction(p->journal)) {
		publisher_schedule_retry(p);	/* after the group commit */
		return;
	}
	p->blocked = 0;
	publisher_update_durable(p);
	if (publisher_backlog(p) != 0 || p->blocked)
		return;		/* the next sent or sync notification resumes */
	if (publisher_new_rows(p, &budget) == 0 && budget == 0)
		event_active(p->ev_pump, EV_TIMEOUT, 0);	/* yield */
}

static void
publisher_mark(struct publisher *p, int64_t upto)
{
	char *cause = NULL;

	if (upto <= p->confirmed)
		return;
	if (journal_mark_published(p->journal, upto, &cause) != 0) {
		if (journal_was_busy(p->journal))	/* a checkpoint, briefly */
			log_debug("publisher_mark_busy", "upto=%lld",
			    (long long)upto);
		else
			log_warn("publisher_mark_failed", "upto=%lld "
			    "error=\"%s\"", (long long)upto, cause);
		free(cause);
		publisher_schedule_retry(p);
		return;
	}
	p->confirmed = upto;
}

static void
publisher_sent_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publisher *p = arg;
	uint64_t v;

	if (read(p->efd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("publisher_eventfd_failed", "error=\"%s\"",
		    strerror(errno));
	/*
	 * Marks are gathered: one small transaction per PUBLISHER_MARK_MS
	 * rather than one per notification (hundreds a second under load).
	 * A crash resends at most those few ms of events, under their seqs.
	 */
	if (!evtimer_pending(p->ev_mark, NULL)) {
		struct timeval tv = { 0, PUBLISHER_MARK_MS * 1000 };

		evtimer_add(p->ev_mark, &tv);
	}
	if (!p->blocked && p->handed >= p->assigned)
		return;
	if (journal_in_transaction(p->journal))
		publisher_schedule_retry(p);
	else
		publisher_pump(p);
}

static void
publisher_mark_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publisher *p = arg;

	if (journal_in_transaction(p->journal)) {
		publisher_schedule_retry(p);
		return;
	}
	publisher_mark(p, atomic_load(&p->sent_upto));
}

static void
publisher_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	publisher_pump(arg);
}

static void
publisher_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct publisher *p = arg;

	if (journal_in_transaction(p->journal)) {
		publisher_schedule_retry(p);
		return;
	}
	publisher_mark(p, atomic_load(&p->sent_upto));
	publisher_pump(p);
}

static double
publisher_gauge_head(void *arg)
{
	return (double)((struct publisher *)arg)->assigned;
}

static double
publisher_gauge_queue(void *arg)
{
	struct publisher *p = arg;

	return (double)(p->assigned - p->confirmed);
}

static double
publisher_gauge_up(void *arg)
{
	return bus_running(((struct publisher *)arg)->bus) ? 1 : 0;
}

static void
publisher_metrics(struct publisher *p)
{
	static const char pub[] = "Events sent on the live feed, by topic "
	    "family.";
	static const char rep[] = "Replay requests answered, by result.";

	metrics_counter("payhook_events_published_total", pub,
	    "family=\"payment\"", &p->m.published_payment);
	metrics_counter("payhook_events_published_total", pub,
	    "family=\"alert\"", &p->m.published_alert);
	metrics_counter("payhook_replay_requests_total", rep,
	    "result=\"ok\"", &p->m.replay_ok);
	metrics_counter("payhook_replay_requests_total", rep,
	    "result=\"error\"", &p->m.replay_error);
	metrics_counter("payhook_zap_denied_total", "ZeroMQ clients refused "
	    "by the ZAP handler (CURVE).", NULL, &p->m.zap_denied);
	metrics_gauge("payhook_head_seq", "Highest event seq assigned in the "
	    "journal.", NULL, publisher_gauge_head, p);
	metrics_gauge("payhook_publish_queue", "Events assigned a seq but not "
	    "yet confirmed sent.", NULL, publisher_gauge_queue, p);
	metrics_gauge("payhook_bus_up", "1 while the ZeroMQ bus thread runs.",
	    NULL, publisher_gauge_up, p);
}

/* Both CURVE files or neither; keys validated here, at start-up. */
static int
publisher_curve(const struct config *cfg, struct bus_config *bc,
    char *secret, char **cause)
{
	char *why = NULL;

	if ((cfg->curve_secret_key_file == NULL) !=
	    (cfg->curve_clients_file == NULL)) {
		*cause = xasprintf("config: %s is set but %s is not: CURVE "
		    "needs both", cfg->curve_secret_key_file ?
		    "curve_secret_key_file" : "curve_clients_file",
		    cfg->curve_secret_key_file ? "curve_clients_file" :
		    "curve_secret_key_file");
		return -1;
	}
	if (cfg->curve_secret_key_file == NULL)
		return 0;
	if (publisher_read_key_file(cfg->curve_secret_key_file, secret, &why) != 0) {
		*cause = xasprintf("config: curve_secret_key_file = \"%s\": %s",
		    cfg->curve_secret_key_file, why);
		free(why);
		return -1;
	}
	if (publisher_read_clients_file(cfg->curve_clients_file, &bc->curve_clients,
	    &bc->ncurve_clients, &why) != 0) {
		*cause = xasprintf("config: curve_clients_file = \"%s\": %s",
		    cfg->curve_clients_file, why);
		free(why);
		return -1;
	}
	bc->curve_secret = secret;
	return 0;
}

static void
publisher_free_clients(struct bus_config *bc)
{
	size_t i;

	for (i = 0; i < bc->ncurve_clients; i++)
		free(bc->curve_clients[i]);
	free(bc->curve_clients);
}

struct publisher *
publisher_new(struct event_base *base, const struct config *cfg,
    struct journal *journal, char **cause)
{
	struct publisher *p = xcalloc(1, sizeof *p);
	struct bus_config bc;
	struct timeval tick = { PUBLISHER_TICK_MS / 1000, 0 };
	char secret[BUS_Z85_KEY_LEN + 1] = "";
	int64_t published = 0;

	p->base = base;
	p->journal = journal;
	p->include_pii = cfg->include_pii;
	p->efd = -1;
	memset(&bc, 0, sizeof bc);
	if (publisher_curve(cfg, &bc, secret, cause) != 0)
		goto fail;
	if (journal_head_seq(journal, &p->assigned, &published, cause) != 0)
		goto fail;
	p->handed = p->confirmed = published;
	p->durable = p->assigned;	/* what survived the restart is on disk */
	atomic_store(&p->sent_upto, published);
	if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		*cause = xasprintf("eventfd: %s", strerror(errno));
		goto fail;
	}
	bc.feed_endpoint = cfg->publish_endpoint;
	bc.replay_endpoint = cfg->replay_endpoint;
	bc.journal_dir = cfg->state_dir;
	bc.head_seq = published;
	bc.durable_seq = p->assigned;	/* what survived the restart */
	bc.sent_cb = publisher_sent_cb;
	bc.cb_arg = p;
	bc.metrics = &p->m;
	if ((p->bus = bus_new(&bc, cause)) == NULL)
		goto fail;
	p->ev_sent = event_new(base, p->efd, EV_READ | EV_PERSIST,
	    publisher_sent_ev_cb, p);
	p->ev_pump = event_new(base, -1, 0, publisher_pump_cb, p);
	p->ev_tick = event_new(base, -1, EV_PERSIST, publisher_pump_cb, p);
	p->ev_retry = evtimer_new(base, publisher_retry_cb, p);
	p->ev_mark = evtimer_new(base, publisher_mark_cb, p);
	if (p->ev_sent == NULL || p->ev_pump == NULL || p->ev_tick == NULL ||
	    p->ev_retry == NULL || p->ev_mark == NULL ||
	    event_add(p->ev_sent, NULL) != 0 ||
	    event_add(p->ev_tick, &tick) != 0) {
		*cause = xstrdup("cannot add the publisher's events");
		goto fail;
	}
	publisher_metrics(p);
	journal_sync_listen(journal, publisher_sync_notify, p);
	p->listening = 1;
	publisher_free_clients(&bc);
	explicit_bzero(secret, sizeof secret);
	log_info("publisher_started", "feed=%s replay=%s curve=%s "
	    "head_seq=%lld unsent=%lld", bus_feed_endpoint(p->bus),
	    bus_replay_endpoint(p->bus), bc.curve_secret ? "on" : "off",
	    (long long)p->assigned, (long long)(p->assigned - published));
	/* Resend what a crash left assigned but unconfirmed, then new rows. */
	event_active(p->ev_pump, EV_TIMEOUT, 0);
	return p;
fail:
	publisher_free_clients(&bc);
	explicit_bzero(secret, sizeof secret);
	publisher_free(p);
	return NULL;
}

void
publisher_free(struct publisher *p)
{
	int i;

	if (p == NULL)
		return;
	if (p->listening)
		journal_sync_listen(p->journal, NULL, p);
	if (p->bus != NULL) {
		bus_free(p->bus);	/* sends what was handed over */
		p->bus = NULL;
		/* The last marks: a checkpoint may hold the lock a moment
		 * (marks never wait on their own); else all is resent. */
		for (i = 0; i < 100 && !journal_in_transaction(p->journal) &&
		    p->confirmed < atomic_load(&p->sent_upto); i++) {
			if (i > 0)
				usleep(5000);
			publisher_mark(p, atomic_load(&p->sent_upto));
		}
	}
	if (p->ev_sent) event_free(p->ev_sent);
	if (p->ev_pump) event_free(p->ev_pump);
	if (p->ev_tick) event_free(p->ev_tick);
	if (p->ev_retry) event_free(p->ev_retry);
	if (p->ev_mark) event_free(p->ev_mark);
	if (p->efd >= 0)
		close(p->efd);
	publisher_drop_kept(p, 0);
	free(p->kept);
	free(p);
}

void
publisher_wake(struct publisher *p)
{
	if (p != NULL)
		event_active(p->ev_pump, EV_TIMEOUT, 0);
}

int
publisher_ready(void *arg, const char **why)
{
	struct publisher *p = arg;

	if (p->broken) {
		*why = "publishing stopped: seq invariant broken";
		return 0;
	}
	*why = "bus thread not running";
	return p->bus != NULL && bus_running(p->bus);
}

const char *
publisher_feed_endpoint(const struct publisher *p)
{
	return bus_feed_endpoint(p->bus);
}

const char *
publisher_replay_endpoint(const struct publisher *p)
{
	return bus_replay_endpoint(p->bus);
}

/* ---- events decided at the door --------------------------------------- */

/*
 * A webhook quarantined at the door, or stored with cross_check = off, has
 * its verdict already: its event is normalised and stored with it in the
 * receiver's group commit (server_store_hooks) instead of in a later
 * transaction of its own. The row is then written once and never read
 * back, and the event shares the batch's fsync; it is handed to the bus
 * once that is durable, like any other (publisher_backlog), from the copy
 * kept in memory (kept[]) rather than read back from the journal.
 */
static int
publisher_store_begin(void *arg, char **cause)
{
	struct publisher *p = arg;
	int64_t head;

	p->fusing = 0;
	if (p->broken)
		return 0;	/* rows wait as 'checked', as before */
	p->fuse_first = p->nkept;
	/* Inside the batch's write transaction: nobody else can assign. */
	if (journal_head_seq(p->journal, &head, NULL, cause) != 0)
		return -1;
	p->fuse_next = head + 1;
	p->fusing = 1;
	return 0;
}

/* A journal_row view of an entry, for the normaliser. */
static void
publisher_entry_row(const struct journal_entry *e, struct journal_row *row)
{
	memset(row, 0, sizeof *row);
	row->state = e->quarantine_reason != NULL ? JOURNAL_QUARANTINED :
	    JOURNAL_PUBLISHED;
	xsnprintf(row->message_id, sizeof row->message_id, "%s",
	    e->message_id);
	if (e->event_type != NULL)
		xsnprintf(row->event_type, sizeof row->event_type, "%s",
		    e->event_type);
	if (e->resource_id != NULL)
		xsnprintf(row->resource_id, sizeof row->resource_id, "%s",
		    e->resource_id);
	row->occurred_ms = e->occurred_ms;
	row->received_ms = e->received_ms;
	row->secret_index = e->secret_index;
	row->body = (char *)(uintptr_t)e->body;
	row->body_len = e->body_len;
	row->quarantine_reason = (char *)(uintptr_t)e->quarantine_reason;
	if (e->verdict != NULL)
		xsnprintf(row->verdict, sizeof row->verdict, "%s", e->verdict);
	row->checked_ms = e->verdict != NULL ? e->received_ms : 0;
}

static int
publisher_store_put(void *arg, const struct journal_entry *e, char **cause)
{
	struct publisher *p = arg;
	struct journal_entry fe;
	struct journal_row row;
	char topic[NORMALISE_TOPIC_MAX], *json = NULL, *why = NULL;
	size_t len;
	int r;

	if (!p->fusing || (e->verdict == NULL && e->quarantine_reason == NULL))
		return (int)journal_put(p->journal, e, cause);
	publisher_entry_row(e, &row);
	r = publisher_event_json(p, &row, e, p->fuse_next, topic, &json, &len,
	    &why);
	if (r < 0) {
		*cause = why;
		return JOURNAL_PUT_ERROR;
	}
	if (r > 0) {
		/* Stored plainly: the publish stage tries (and reports) it. */
		log_warn("publisher_fuse_failed", "event_id=%s error=\"%s\"",
		    row.message_id, why);
		free(why);
		return (int)journal_put(p->journal, e, cause);
	}
	fe = *e;
	fe.seq = p->fuse_next;
	fe.published_ms = util_now_ms();
	r = (int)journal_put_event(p->journal, &fe, topic, json, len, cause);
	if (r != JOURNAL_PUT_NEW || p->nkept == PUBLISHER_KEEP_MAX) {
		free(json);	/* a full list: the journal has it */
		json = NULL;
	}
	if (r != JOURNAL_PUT_NEW)
		return r;
	if (json != NULL) {
		if (p->nkept == p->capkept) {
			p->capkept = p->capkept ? p->capkept * 2 : 64;
			p->kept = xreallocarray(p->kept, p->capkept,
			    sizeof *p->kept);
		}
		p->kept[p->nkept].seq = fe.seq;
		xsnprintf(p->kept[p->nkept].topic, sizeof p->kept[0].topic,
		    "%s", topic);
		p->kept[p->nkept].json = json;
		p->kept[p->nkept++].len = len;
	}
	p->fuse_next++;
	log_debug("event_assigned", "seq=%lld topic=%s", (long long)fe.seq,
	    topic);
	return r;
}

static void
publisher_store_end(void *arg, int committed, uint64_t ticket)
{
	struct publisher *p = arg;

	if (!p->fusing)
		return;
	p->fusing = 0;
	if (!committed) {
		/* Rolled back: its seqs are assigned again to other events. */
		publisher_drop_kept(p, p->fuse_first);
		return;
	}
	if (p->fuse_next - 1 <= p->assigned)
		return;		/* nothing was fused */
	p->assigned = p->fuse_next - 1;
	publisher_note_ticket(p, ticket, p->assigned);
}

void
publisher_store_hooks(struct publisher *p, struct server_store_hooks *h)
{
	memset(h, 0, sizeof *h);
	h->begin = publisher_store_begin;
	h->put = publisher_store_put;
	h->end = publisher_store_end;
	h->arg = p;
}

/* ---- CURVE key files (main thread, at start-up) ---------------------- */

static int
publisher_z85_ok(const char *s, size_t len)
{
	static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
	uint8_t raw[32];
	char buf[PUBLISHER_Z85_KEY_LEN + 1];
	size_t i;

	if (len != PUBLISHER_Z85_KEY_LEN)
		return 0;
	for (i = 0; i < len; i++) {
		if (strchr(alphabet, s[i]) == NULL || s[i] == '\0')
			return 0;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	return zmq_z85_decode(raw, buf) != NULL;
}

/* Next key line: skips blanks and '#' comments; the key is the first
 * whitespace-delimited token. Returns 0 at the end. */
static int
publisher_next_key(char **p, const char **key, size_t *len, int *lineno)
{
	char *line, *nl;

	while (**p != '\0') {
		line = *p;
		(*lineno)++;
		if ((nl = strchr(line, '\n')) != NULL) {
			*nl = '\0';
			*p = nl + 1;
		} else
			*p = line + strlen(line);
		line += strspn(line, " \t\r");
		if (*line == '\0' || *line == '#')
			continue;
		*key = line;
		*len = strcspn(line, " \t\r");
		return 1;
	}
	return 0;
}

int
publisher_read_key_file(const char *path, char key[PUBLISHER_Z85_KEY_LEN + 1],
    char **cause)
{
	char *buf = NULL, *p, pub[PUBLISHER_Z85_KEY_LEN + 1];
	const char *k;
	size_t len, klen;
	int lineno = 0, rc = -1;

	if (util_read_file(path, 65536, &buf, &len, cause) != 0)
		return -1;
	p = buf;
	if (!publisher_next_key(&p, &k, &klen, &lineno))
		*cause = xstrdup("no key in the file");
	else if (!publisher_z85_ok(k, klen))
		*cause = xasprintf("line %d is not a 40-character Z85 key",
		    lineno);
	else {
		memcpy(key, k, PUBLISHER_Z85_KEY_LEN);
		key[PUBLISHER_Z85_KEY_LEN] = '\0';
		if (zmq_curve_public(pub, key) != 0) {
			*cause = xasprintf("not a CURVE secret key: %s",
			    zmq_strerror(errno));
			explicit_bzero(key, PUBLISHER_Z85_KEY_LEN + 1);
		} else
			rc = 0;
	}
	explicit_bzero(buf, len);
	free(buf);
	return rc;
}

int
publisher_read_clients_file(const char *path, char ***keys, size_t *n,
    char **cause)
{
	char *buf = NULL, *p;
	const char *k;
	size_t len, klen;
	int lineno = 0;

	*keys = NULL;
	*n = 0;
	if (util_read_file(path, 1024 * 1024, &buf, &len, cause) != 0)
		return -1;
	for (p = buf; publisher_next_key(&p, &k, &klen, &lineno);) {
		if (!publisher_z85_ok(k, klen)) {
			*cause = xasprintf("line %d is not a 40-character Z85 "
			    "public key", lineno);
			while (*n > 0)
				free((*keys)[--(*n)]);
			free(*keys);
			*keys = NULL;
			free(buf);
			return -1;
		}
		*keys = xreallocarray(*keys, *n + 1, sizeof **keys);
		(*keys)[(*n)++] = xstrndup(k, klen);
	}
	free(buf);
	return 0;
}
