/*
 * journal.h: the SQLite journal (WAL), the single source of truth. Every
 * stage of the pipeline is a state transition of one row:
 *   received -> checked -> published, or quarantined.
 * Main thread owns the write connection; the journal runs WAL checkpoints
 * on its own thread so they never stall the event loop.
 */
#ifndef PAYHOOK_JOURNAL_H
#define PAYHOOK_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

struct json_tok;

enum journal_durability {
	JOURNAL_DURABILITY_FULL,	/* fsync WAL at each COMMIT */
	JOURNAL_DURABILITY_PROCESS,	/* survives a process crash only */
};

enum journal_state {
	JOURNAL_RECEIVED = 0,
	JOURNAL_CHECKED,
	JOURNAL_PUBLISHED,
	JOURNAL_QUARANTINED,
	JOURNAL_NSTATES
};

struct journal_config {
	const char	*dir;		/* state_dir; journal.db lives here */
	enum journal_durability durability;
	int64_t		 retention_ms;	/* keep rows at least this long */
	int64_t		 max_bytes;	/* 0: unlimited; else SQLITE_FULL past it */
	int		 checkpoint_ms;	/* checkpointer period */
	int64_t		 wal_restart_bytes; /* force a WAL reset past this;
					   0: 64 MB */
};

/* One webhook to store. For a quarantined body, message_id is a synthetic
 * key ("q-" + sha256 hex of the body) so redeliveries still deduplicate. */
struct journal_entry {
	const char	*message_id;
	const char	*event_type;	/* NULL when quarantined */
	const char	*resource_id;	/* NULL when quarantined */
	int64_t		 occurred_ms;	/* envelope created_date; 0 if unknown */
	int64_t		 received_ms;
	int		 secret_index;	/* 1 or 2: which signing secret matched */
	const void	*body;		/* raw bytes, stored byte for byte */
	size_t		 body_len;
	const char	*quarantine_reason; /* non-NULL: state quarantined */
	const char	*verdict;	/* non-NULL: stored already 'checked'
					   with this verdict (cross_check off) */
	int64_t		 seq;		/* non-zero: its event is stored in the
					   same transaction under this seq
					   (journal_put_event); the row is
					   then already 'published' (or stays
					   'quarantined') */
	int64_t		 published_ms;	/* with seq: when it was assigned */
	/* The receiver's tokens of body (receiver/json.h), or NULL: the
	 * store hooks normalise from them instead of tokenizing body again.
	 * The journal itself never reads them. */
	const struct json_tok *body_toks;
	size_t		 body_ntoks;
};

enum journal_put_result {
	JOURNAL_PUT_NEW,
	JOURNAL_PUT_DUPLICATE,
	JOURNAL_PUT_ERROR,
};

struct journal;

/* Open (create, migrate) dir/journal.db. NULL and *cause on failure. */
struct journal *journal_open(const struct journal_config *, char **cause);
/* Stop the checkpointer, checkpoint, close. NULL is a no-op. Returns
 * journal_lost()'s reason if the journal was lost at any time up to and
 * including the final checkpoint (its WAL is then left for the next open
 * to recover), or NULL. */
const char *journal_free(struct journal *);
const char *journal_path(const struct journal *);
/* Schema version this build writes (PRAGMA user_version). */
int	journal_schema_version(void);

/*
 * Group commit, main thread only: journal_begin() opens a transaction,
 * journal_put() adds rows to it, journal_commit() makes them durable (per
 * the durability setting) or fails leaving nothing stored; after any
 * failure call journal_rollback(). All return 0/-1 with *cause.
 */
int	journal_begin(struct journal *, char **cause);
enum journal_put_result journal_put(struct journal *,
	    const struct journal_entry *, char **cause);
int	journal_commit(struct journal *, char **cause);
void	journal_rollback(struct journal *);
/*
 * Deferred durability, so the event loop never waits for the disk:
 * journal_commit_deferred() commits the transaction opened by journal_begin()
 * without waiting and returns a ticket. The journal's syncer thread
 * fdatasyncs the WAL and then calls every listener
 * (on that thread: hop to the loop with event_active); journal_synced()
 * tells which tickets are durable. With durability = process a ticket is
 * durable at once. A plain journal_commit() of a transaction that stored
 * webhooks or assigned seqs waits for its sync instead. Main thread.
 */
struct metric_histogram;
typedef void (*journal_sync_fn)(void *arg);
/* Add (fn non-NULL) or remove (fn NULL, same arg) a sync listener. */
void	journal_sync_listen(struct journal *, journal_sync_fn, void *arg);
/* Call fn (NULL: no one) on the checkpointer thread each time it lets go
 * of the write lock it held to start the WAL over: a group commit that met
 * that lock can go again at once rather than after its retry timer. */
void	journal_lock_listen(struct journal *, journal_sync_fn, void *arg);
/* Record every WAL fdatasync's latency in h (may be NULL); once it returns,
 * the histogram given before is no longer touched. */
void	journal_sync_histogram(struct journal *, struct metric_histogram *h);
int	journal_commit_deferred(struct journal *, uint64_t *ticket,
	    char **cause);
/* Highest durable ticket; *failed_upto gets the highest ticket whose sync
 * failed (its rows are stored but may not survive power loss). After one
 * failure every later ticket fails too and the durable one stays where it
 * was: the journal must be closed and opened again (payhook serve exits 3
 * and is restarted). */
uint64_t journal_synced(struct journal *, uint64_t *failed_upto);
/*
 * Why the journal can no longer vouch for what it stores, or NULL while it
 * can. Any failed fsync loses it: the WAL's (the syncer's, or a COMMIT's),
 * or the database file's during a checkpoint, in either durability. The
 * sync and lock listeners are called when it happens. Any thread.
 */
const char *journal_lost(struct journal *);
/*
 * Move whatever the WAL holds into the database file, synced, and reset
 * it: run once after journal_open, before anything is answered (see
 * journal.c). 0, or -1 and *cause when it could not (payhook serve then
 * exits 3 to be restarted).
 */
int	journal_recover_wal(struct journal *, char **cause);
/*
 * Before journal_open, when an earlier run lost the journal (dir holds
 * its mark, see journal_lost.c): copy the whole WAL into the database
 * file, synced, on a connection that shares the journal with no other
 * program, then remove the mark. 0 (also when there was no mark), or -1
 * and *cause: another program has the journal open, the disk still
 * fails, or the WAL is gone (payhook serve exits 3).
 */
int	journal_recover_lost(const char *dir, char **cause);
/* 1 when dir's journal was lost and is not recovered yet (the mark). */
int	journal_lost_marked(const char *dir);
/* Block until ticket is durable or failed (shutdown only). */
void	journal_sync_wait(struct journal *, uint64_t ticket);

/* journal_begin() that fails at once (busy) instead of waiting for a lock
 * held by another connection: for the event loop's group commit. */
int	journal_begin_nowait(struct journal *, char **cause);
/* 1 when the last journal_begin() (or journal_mark_published()) failed only
 * because another connection (a checkpoint, an operator's tool) held the
 * lock: worth retrying soon. */
int	journal_was_busy(const struct journal *);
/* 1 while a transaction is open. */
int	journal_in_transaction(const struct journal *);

/* Row counts by state (for /metrics and /readyz). Main thread. */
int	journal_count_states(struct journal *, int64_t counts[JOURNAL_NSTATES],
	    char **cause);
/* Delete published (and alerted-quarantined) rows older than retention;
 * never deletes anything unpublished. *deleted gets the count. Main thread. */
int	journal_prune(struct journal *, int64_t now_ms, int64_t *deleted,
	    char **cause);
/* Number of checkpoints the background thread has run (for tests/metrics). */
uint64_t journal_checkpoints(const struct journal *);
/* Number of times it forced the WAL to start over (a steady load never lets
 * a PASSIVE checkpoint do that). */
uint64_t journal_wal_restarts(const struct journal *);
const char *journal_state_name(enum journal_state);

/* ------------------------------------------------------------------------
 * The pipeline after ingest (journal/journal_pipeline.c). Main thread.
 * Rows and events returned own their heap fields: free them with
 * journal_rows_free() / journal_events_free().
 */

#define JOURNAL_KEY_MAX		80	/* message_id or "q-" + sha256 hex */

struct journal_row {
	int64_t		 id;
	enum journal_state state;
	char		 message_id[JOURNAL_KEY_MAX];
	char		 event_type[65];	/* "" when quarantined */
	char		 resource_id[27];	/* "" when quarantined */
	int64_t		 occurred_ms;		/* 0 if unknown */
	int64_t		 received_ms;
	int		 secret_index;
	char		*body;			/* raw webhook, NUL-terminated */
	size_t		 body_len;
	char		*quarantine_reason;	/* NULL unless quarantined */
	int		 check_attempts;
	int64_t		 next_check_ms;
	char		*last_error;		/* last cross-check failure */
	char		 verdict[16];		/* "" until checked */
	char		*mismatches;		/* JSON array text, or NULL */
	int		 api_status;		/* 0: no API answer kept */
	char		*api_body;		/* the API's answer, or NULL */
	size_t		 api_body_len;
	int64_t		 checked_ms;
	int64_t		 seq;			/* 0: no event yet */
};

/* What the cross-check decided for a row (strings are borrowed). */
struct journal_verdict {
	const char	*verdict;	/* confirmed mismatch not_found skipped
					   unverified */
	const char	*mismatches;	/* JSON array of field names, or NULL */
	int		 api_status;	/* HTTP status of the answer, 0: none */
	const void	*api_body;	/* the answer compared, or NULL */
	size_t		 api_body_len;
};

/* A published (or assigned, not yet sent) event. */
struct journal_event {
	int64_t		 seq;
	int64_t		 row_id;
	char		 topic[48];
	char		*json;		/* NUL-terminated */
	size_t		 len;
};

void	journal_rows_free(struct journal_row *, size_t n);
void	journal_events_free(struct journal_event *, size_t n);
/* One row by id (*found 0 if gone). */
int	journal_get_row(struct journal *, int64_t id, struct journal_row *,
	    int *found, char **cause);

/* Cross-check stage: rows 'received' with next_check_ms <= now, oldest
 * first, at most max. */
int	journal_due_checks(struct journal *, int64_t now_ms, size_t max,
	    struct journal_row **rows, size_t *n, char **cause);
/* Earliest next_check_ms of any 'received' row; *ms = -1 when none. */
int	journal_next_check_at(struct journal *, int64_t *ms, char **cause);
/* received -> checked, keeping the verdict and the API's answer. */
int	journal_set_verdict(struct journal *, int64_t id,
	    const struct journal_verdict *, int64_t now_ms, char **cause);
/* Stay 'received': attempts + 1, next try at next_ms, remember error. */
int	journal_defer_check(struct journal *, int64_t id, int64_t next_ms,
	    const char *error, char **cause);

/* Publish stage: rows that need an event ('checked', or 'quarantined'
 * with no seq yet), by id, at most max. */
int	journal_rows_to_publish(struct journal *, size_t max,
	    struct journal_row **rows, size_t *n, char **cause);
/* *yes = 1 when resource_id already has an event for a webhook that
 * occurred after occurred_ms (the new one arrives out of order). */
int	journal_later_event_exists(struct journal *, const char *resource_id,
	    int64_t occurred_ms, int *yes, char **cause);
/* In one transaction: the next seq (previous + 1, never reused, even after
 * pruning), the event row (topic + JSON, exactly what will be sent) and
 * the webhook row's seq; a 'checked' row becomes 'published' (quarantined
 * rows stay). Once durable, the event is handed to the bus; a crash before
 * the send resends it under the same seq (journal_unsent_events). */
int	journal_add_event(struct journal *, int64_t row_id, const char *topic,
	    const char *json, size_t len, int64_t now_ms, int64_t *seq,
	    char **cause);
/*
 * journal_put() of an entry whose event is already decided (e->seq set, the
 * next seq): the webhook row is stored with its seq, and the event row
 * (topic + JSON, which must carry that seq) beside it, in the caller's
 * transaction. A duplicate stores nothing. A seq other than e->seq fails
 * (JOURNAL_PUT_ERROR): roll back. Main thread.
 */
enum journal_put_result journal_put_event(struct journal *,
	    const struct journal_entry *, const char *topic, const char *json,
	    size_t len, char **cause);
/* Events assigned but not yet confirmed sent with seq > after, in order. */
int	journal_unsent_events(struct journal *, int64_t after, size_t max,
	    struct journal_event **events, size_t *n, char **cause);
/* Events up to seq were sent on the live feed: move the events_sent
 * watermark there (never back). Never waits for another connection's lock
 * (then -1 with journal_was_busy()). */
int	journal_mark_published(struct journal *, int64_t upto_seq,
	    char **cause);
/* Highest seq assigned (0 if none); the sent watermark. */
int	journal_head_seq(struct journal *, int64_t *assigned,
	    int64_t *published, char **cause);

/* Replay reader: its own read-only connection, for the bus thread. */
struct journal_reader;

typedef int (*journal_event_fn)(void *arg, int64_t seq, const char *topic,
	    const char *json, size_t len);
struct journal_reader *journal_reader_open(const char *dir, char **cause);
void	journal_reader_free(struct journal_reader *);
/*
 * Call fn for each event with from <= seq <= upto whose topic starts with
 * prefix (NULL or "": all), in seq order, at most max; fn returning
 * non-zero stops. *head gets the highest seq assigned, at most upto. upto
 * is the highest seq known durable (committed seqs may not be yet: one
 * lost in a power cut would be given again to another event). 0/-1 with
 * *cause.
 */
int	journal_reader_range(struct journal_reader *, int64_t from,
	    int64_t upto, size_t max, const char *prefix, journal_event_fn fn,
	    void *arg, int64_t *head, char **cause);

/* ------------------------------------------------------------------------
 * Operator access (journal/journal_admin.c), for `payhook journal`: its own
 * connection beside a running service (SQLite does the locking); every write
 * is one short transaction. Single-threaded command use only.
 */
struct journal_admin;

enum journal_admin_list {
	JOURNAL_LIST_PENDING,		/* received or checked, oldest first */
	JOURNAL_LIST_QUARANTINED,	/* newest first */
	JOURNAL_LIST_ERRORS,		/* received with a cross-check error */
};

struct journal_status {
	int64_t		 counts[JOURNAL_NSTATES];
	int64_t		 head_seq;		/* highest seq assigned */
	int64_t		 published_seq;		/* highest seq sent */
	int64_t		 unsent_events;
	int64_t		 oldest_pending_ms;	/* received_ms; 0: none */
	int64_t		 quarantined_unalerted;	/* no alert event yet */
	int64_t		 check_errors;		/* received, last_error set */
	int		 schema_version;
	int64_t		 db_bytes, wal_bytes;
};

enum journal_redrive_result {
	JOURNAL_REDRIVE_OK,
	JOURNAL_REDRIVE_REFUSED,	/* *why says why; nothing changed */
	JOURNAL_REDRIVE_DUPLICATE,	/* the real message id is stored */
	JOURNAL_REDRIVE_ERROR,		/* *cause */
};

struct journal_backup_info {
	int64_t		 rows;		/* webhook rows in the copy */
	int64_t		 head_seq;
	int64_t		 bytes;
	int		 pages;
};

/* Open dir/journal.db (never creates one) of exactly this build's schema;
 * writable 0 sets query_only. A lost journal not yet recovered
 * (journal_lost_marked) is read alone and refused for writing. NULL and
 * *cause on failure. */
struct journal_admin *journal_admin_open(const char *dir, int writable,
	    char **cause);
void	journal_admin_free(struct journal_admin *);	/* NULL: no-op */
const char *journal_admin_path(const struct journal_admin *);
/* 1 when the journal was lost and is not recovered yet. */
int	journal_admin_lost(const struct journal_admin *);
/* Counts, head seq, oldest pending row, in one read transaction. */
int	journal_admin_status(struct journal_admin *, struct journal_status *,
	    char **cause);
/* At most max rows of a listing, without bodies (body NULL, body_len and
 * api_body_len set). Free with journal_rows_free(). */
int	journal_admin_list(struct journal_admin *, enum journal_admin_list,
	    size_t max, struct journal_row **rows, size_t *n, char **cause);
/* One row by message_id, or by row id when key is all digits; with
 * bodies, body and api_body are loaded too. *found 0 when none. */
int	journal_admin_get(struct journal_admin *, const char *key, int bodies,
	    struct journal_row *, int *found, char **cause);
/* Quarantined row id (still keyed old_key, its alert already sent) ->
 * 'received' under e's message_id, event_type, resource_id, occurred_ms,
 * ready to be cross-checked and published; refuses when that message id
 * is already stored. The caller validated the body. Durable on return. */
enum journal_redrive_result journal_admin_redrive(struct journal_admin *,
	    int64_t id, const char *old_key, const struct journal_entry *e,
	    int64_t now_ms, char *why, size_t whylen, char **cause);
/* Online backup (SQLite backup API, one consistent snapshot) into dest,
 * which must not exist: written 0600 beside it, integrity_check'ed,
 * fsynced, then linked into place. */
int	journal_admin_backup(struct journal_admin *, const char *dest,
	    struct journal_backup_info *, char **cause);

/* One published (or assigned) event with its row's ids and verdict, for the
 * admin status page: no body, no personal data. */
struct journal_recent {
	int64_t		 seq;
	char		 topic[48];
	char		 event_id[JOURNAL_KEY_MAX];
	char		 event_type[65];
	char		 payment_id[27];
	char		 verdict[16];
	int64_t		 received_ms;
	int		 published;	/* sent on the live feed */
};
/* The newest max events (newest first) into out; *n gets the count. A read
 * on the service's own connection: main thread; none inside a batch. */
int	journal_recent_events(struct journal *, size_t max,
	    struct journal_recent *out, size_t *n, char **cause);

#endif
