/*
 * server_int.h: what the public listener's thread (server.c, ph-http) and
 * the main thread's group commit (server_store.c) share. A batch belongs
 * to one thread at a time: ph-http fills it, hands it over (to_store), the
 * main thread stores it in the journal and hands it back (stored), and
 * ph-http answers its webhooks once the journal says it is durable. The two
 * lists are the only state both threads touch, under s->lock; the rest is
 * atomic or owned by one side as marked.
 */
#ifndef PAYHOOK_SERVER_INT_H
#define PAYHOOK_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/util.h>

#include "common/metrics.h"
#include "journal/journal.h"
#include "receiver/server.h"
#include "receiver/signature.h"
#include "receiver/webhook.h"

typedef struct ssl_ctx_st SSL_CTX;

/* What a request turned into, and so what it will be answered. */
enum server_outcome {
	SERVER_ACCEPTED,
	SERVER_DUPLICATE,
	SERVER_QUARANTINED,
	SERVER_FAILED,		/* the batch could not be stored: 503 */
};

/* A verified webhook waiting for the group commit. The body stays in the
 * request's input buffer, which evhttp leaves alone until the reply (even
 * when the client goes away meanwhile: the request is then detached, not
 * freed). */
struct server_pending {
	struct evhttp_request	*req;		/* ph-http only */
	enum server_outcome	 outcome;
	int			 quarantine;	/* not a valid webhook */
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

/* Webhooks read in one pass of ph-http's loop; the main thread stores
 * every batch handed over since its last commit in one transaction. */
struct server_batch {
	struct server_pending	*p;
	size_t			 n, cap;
	uint64_t		 ticket;	/* journal sync ticket */
	int			 failed;	/* not stored: answer 503 */
	TAILQ_ENTRY(server_batch) entry;
};
TAILQ_HEAD(server_batches, server_batch);

/* At most one warning line a second, with a count; one per thread. */
struct server_warn {
	int64_t		 last_ms;
	uint64_t	 suppressed;
};

struct server {
	const struct config	*cfg;

	/* The main thread: the journal and the group commit. */
	struct event_base	*base;
	struct journal		*journal;
	struct event		*store_ev;	/* batches were handed over */
	struct event		*retry_ev;	/* the lock was busy: again */
	struct event		*lock_ev;	/* checkpointer let go, or lost */
	struct event		*fresh_ev;	/* new rows became durable */
	struct server_batches	 pending;	/* taken over, not yet stored */
	int			 busy_wait;	/* pending waits on retry_ev */
	int64_t			 busy_since_ms;	/* first busy try of pending */
	uint64_t		 last_ticket;	/* of the last commit */
	int			 freeing;	/* server_free: no more retries */
	int			 lost;		/* fatal_cb ran */
	server_commit_fn	 commit_cb;
	void			*commit_arg;
	server_fatal_fn		 fatal_cb;
	void			*fatal_arg;
	struct server_store_hooks hooks;	/* put NULL: journal_put */
	struct server_warn	 store_warn;

	/* ph-http: HTTP, the checks, batching and answering. */
	pthread_t		 thread;
	int			 started;	/* main: thread running */
	struct event_base	*hbase;
	struct signature	*sig;
	struct webhook_parser	*parser;
	struct evhttp		*http;
	struct listener		*listener;
	SSL_CTX			*tls;
	struct event		*pass_ev;	/* end of a loop pass */
	struct event		*back_ev;	/* stored, or a sync ended */
	struct event		*stop_ev;	/* shut down, or quit */
	struct evbuffer		*reply;
	struct server_batch	*open;		/* filling in this loop pass */
	struct server_batches	 waiting;	/* stored, not yet durable */
	struct server_batches	 spare;
	struct server_warn	 http_warn;
	uint64_t		 failed_counted; /* last failed ticket counted */

	/* Between the two threads, under lock. */
	pthread_mutex_t		 lock;
	struct server_batches	 to_store;	/* ph-http -> main */
	struct server_batches	 stored;	/* main -> ph-http */
	pthread_cond_t		 cond;		/* stopping: handed_over */
	int			 quit;		/* stopping: SERVER_QUIT_* */
	int			 handed_over;	/* ph-http did SERVER_QUIT_HAND */

	/* Either thread. */
	_Atomic int		 shutting_down;
	_Atomic int		 journal_ok;	/* the last batch answered */
	_Atomic uint64_t	 fresh_ok;	/* durable new rows, untold: */
	_Atomic uint64_t	 fresh_q;	/* accepted, quarantined */

	struct metric_counter	 m_status[10];
	struct metric_counter	 m_webhooks[3];
	struct metric_counter	 m_sig_fail[3];
	struct metric_counter	 m_sig_ok[SIGNATURE_MAX_SECRETS];
	struct metric_counter	 m_commit_failed;
	struct metric_counter	 m_busy_retries;
	struct metric_histogram	 m_commit;
	struct metric_histogram	 m_batch;
	struct metric_histogram	 m_fsync;
	struct metric_histogram	 m_reply;
};

/* server_metrics.c: count a status written on the public listener (its
 * listener's status_fn); register every metric (main thread, start-up). */
void	server_count_status(void *arg, int code);
void	server_register_metrics(struct server *);

/* 1 when a warning may be logged now (else it is counted). */
int	server_may_warn(struct server_warn *);

/* server_store.c, main thread. */
/* Create the main thread's events; -1 when libevent cannot. */
int	server_store_init(struct server *);
void	server_store_free(struct server *);
/* Take every batch handed over and store them in one transaction (or
 * schedule a retry while another connection holds the lock), then hand
 * them back to ph-http to be answered. */
void	server_store_run(struct server *);

/* server_free's steps for ph-http (s->quit, set under lock). */
#define SERVER_QUIT_HAND	1	/* hand the open batch over, then 503 */
#define SERVER_QUIT_LEAVE	2	/* answer what is durable, then leave */

/* server.c, ph-http (the main thread once ph-http has stopped). */
/* Hand the open batch, if any, to the main thread. */
void	server_hand_over(struct server *);
/* Answer the batches handed back whose sync completed, oldest first. */
void	server_release(struct server *);

#endif
