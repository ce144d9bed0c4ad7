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
};

enum journal_put_result {
	JOURNAL_PUT_NEW,
	JOURNAL_PUT_DUPLICATE,
	JOURNAL_PUT_ERROR,
};

struct journal;

/* Open (create, migrate) dir/journal.db. NULL and *cause on failure. */
struct journal *journal_open(const struct journal_config *, char **cause);
/* Stop the checkpointer, checkpoint, close. NULL is a no-op. */
void	journal_free(struct journal *);
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
 * or journal_begin_deferred() without waiting and returns a ticket. The
 * journal's syncer thread fdatasyncs the WAL and then calls every listener
 * (on that thread: hop to the loop with event_active); journal_synced()
 * tells which tickets are durable. With durability = process a ticket is
 * durable at once. A plain journal_commit() of a transaction that stored
 * webhooks or assigned seqs waits for its sync instead. Main thread.
 */
struct metric_histogram;
typedef void (*journal_sync_fn)(void *arg);
/* Add (fn non-NULL) or remove (fn NULL, same arg) a sync listener. */
void	journal_sync_listen(struct journal *, journal_sync_fn, void *arg);
/* Record every WAL fdatasync's latency in h (may be NULL). */
void	journal_sync_histogram(struct journal *, struct metric_histogram *h);
int	journal_begin_deferred(struct journal *, char **cause);
int	journal_commit_deferred(struct journal *, uint64_t *ticket,
	    char **cause);
/* Highest durable ticket; *failed_upto gets the highest ticket whose sync
 * failed (its rows are stored but may not survive power loss). */
uint64_t journal_synced(struct journal *, uint64_t *failed_upto);
/* Block until ticket is durable or failed (shutdown only). */
void	journal_sync_wait(struct journal *, uint64_t ticket);

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
 * the webhook row's seq. */
int	journal_add_event(struct journal *, int64_t row_id, const char *topic,
	    const char *json, size_t len, int64_t now_ms, int64_t *seq,
	    char **cause);
/* Events assigned but not yet confirmed sent with seq > after, in order. */
int	journal_unsent_events(struct journal *, int64_t after, size_t max,
	    struct journal_event **events, size_t *n, char **cause);
/* Events up to seq were sent: mark them and their rows published
 * ('checked' rows become 'published'; quarantined rows stay). */
int	journal_mark_published(struct journal *, int64_t upto_seq,
	    int64_t now_ms, char **cause);
/* Highest seq assigned (0 if none); highest seq marked published. */
int	journal_head_seq(struct journal *, int64_t *assigned,
	    int64_t *published, char **cause);

/* Replay reader: its own read-only connection, for the bus thread. */
struct journal_reader;

typedef int (*journal_event_fn)(void *arg, int64_t seq, const char *topic,
	    const char *json, size_t len);
struct journal_reader *journal_reader_open(const char *dir, char **cause);
void	journal_reader_free(struct journal_reader *);
/*
 * Call fn for each event with seq >= from whose topic starts with prefix
 * (NULL or "": all), in seq order, at most max; fn returning non-zero stops.
 * *head gets the highest seq assigned. 0/-1 with *cause.
 */
int	journal_reader_range(struct journal_reader *, int64_t from, size_t max,
	    const char *prefix, journal_event_fn fn, void *arg, int64_t *head,
	    char **cause);

#endif
