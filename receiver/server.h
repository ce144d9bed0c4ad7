/*
 * server.h: the public webhook listener (evhttp). Enforces the request
 * limits, checks Pay-Signature, validates the body and group-commits it to
 * the journal, answering each webhook only after its COMMIT is durable.
 * HTTP runs on its own thread (ph-http, started by server_start) with its
 * own event_base; the journal writes run on the main thread's loop (the
 * one given to server_new), beside the rest of the pipeline. Every function
 * here is for the main thread; the callbacks are called on it.
 */
#ifndef PAYHOOK_SERVER_H
#define PAYHOOK_SERVER_H

#include <stdint.h>

struct event_base;
struct config;
struct journal;
struct signature;
struct server;

/* Called once new rows are durable (the pipeline's wake-up): accepted
 * webhooks and quarantined bodies. */
typedef void (*server_commit_fn)(void *arg, int accepted, int quarantined);
/* The journal can no longer make anything durable (a failed fsync): the
 * process must stop and be restarted. Called once, on the loop. */
typedef void (*server_fatal_fn)(void *arg, const char *why);

/*
 * How a group commit stores its webhooks, when something other than a
 * plain journal_put() should (the publisher stores the event of a webhook
 * whose verdict is known at the door in the same transaction). begin runs
 * after BEGIN, put instead of journal_put() for each webhook, end after
 * the COMMIT (committed, with its sync ticket) or the rollback.
 */
struct journal_entry;
struct server_store_hooks {
	int	(*begin)(void *arg, char **cause);
	int	(*put)(void *arg, const struct journal_entry *, char **cause);
	void	(*end)(void *arg, int committed, uint64_t ticket);
	void	*arg;
};

/* Bind cfg->listen (TLS when configured) and register metrics; base is the
 * main thread's loop, where the journal is written. sig is borrowed (and
 * used from ph-http). Nothing is served before server_start(). */
struct server *server_new(struct event_base *base, const struct config *,
	    struct signature *sig, char **cause);
void	server_attach_journal(struct server *, struct journal *);
/* Start ph-http: from now on requests are read and answered. 0, or -1
 * and *cause. */
int	server_start(struct server *, char **cause);
/* Stop ph-http (the open batch is stored, everything stored is answered
 * once durable), then free. Call after the main loop has left. */
void	server_free(struct server *);
void	server_set_commit_cb(struct server *, server_commit_fn, void *arg);
void	server_set_fatal_cb(struct server *, server_fatal_fn, void *arg);
/* hooks is copied; NULL: plain journal_put(). */
void	server_set_store_hooks(struct server *,
	    const struct server_store_hooks *hooks);
/* The bound address as "host:port" (port resolved when 0 was asked). */
const char *server_address(const struct server *);
/* 1 unless the last batch answered could not be stored or synced. */
int	server_journal_ok(const struct server *);
/* Stop accepting; further requests get 503. Returns open connections. */
int	server_shutdown(struct server *);
int	server_connections(const struct server *);

#endif
