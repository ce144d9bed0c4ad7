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

#endif
