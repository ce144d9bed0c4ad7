/*
 * journal_int.h: the journal's insides, shared by journal.c (open, ingest),
 * journal_schema.c (migrations), journal_checkpoint.c, journal_sync.c,
 * journal_lost.c, journal_admin.c and journal_pipeline.c (cross-check,
 * events, replay). Not for use outside journal/. Main thread, except the
 * checkpointer's and the syncer's fields.
 */
#ifndef PAYHOOK_JOURNAL_INT_H
#define PAYHOOK_JOURNAL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <sqlite3.h>

struct journal_pipe;
struct journal_syncer;

#define JOURNAL_BUSY_MS		25	/* event loop: fail fast, never wait */
#define JOURNAL_APP_ID		0x70617968	/* PRAGMA application_id: "payh" */
#define JOURNAL_FILE		"journal.db"
/* Left by journal_lose beside the journal; journal_recover_lost removes
 * it once the WAL is safely in the database file. */
#define JOURNAL_LOST_SUFFIX	"-lost"
#define JOURNAL_LOST_FILE	JOURNAL_FILE JOURNAL_LOST_SUFFIX

struct journal {
	char		*path;
	char		*wal_path;	/* path + "-wal" */
	int64_t		 retention_ms;
	int		 checkpoint_ms;

	sqlite3		*db;		/* write connection, main thread */
	sqlite3_stmt	*insert;
	sqlite3_stmt	*count;
	sqlite3_stmt	*prune;
	sqlite3_stmt	*begin;		/* BEGIN IMMEDIATE, prepared once */
	sqlite3_stmt	*commit;	/* COMMIT, prepared once */
	int		 in_txn;	/* journal_begin() succeeded */
	int		 txn_failed;	/* a put failed: only rollback now */
	int		 busy;		/* the last begin met a lock */
	int		 nudge_frames;	/* WAL growth that triggers a nudge */
	int		 nudge_base;	/* WAL frames at the last nudge */
	int		 restart_frames; /* WAL size that forces a restart */

	sqlite3		*ckpt_db;	/* checkpointer thread's connection */
	pthread_t	 ckpt_thread;
	int		 ckpt_started;
	int		 ckpt_synced;	/* WAL frames copied and synced so far
					   (checkpointer thread only) */
	int64_t		 restart_after_ms; /* no RESTART before (same) */
	int		 sync_inited;
	pthread_mutex_t	 lock;		/* protects stop, nudged, lock_fn */
	pthread_cond_t	 cond;
	int		 stop;
	int		 nudged;
	void		(*lock_fn)(void *);	/* journal_lock_listen() */
	void		*lock_arg;
	atomic_int	 wal_dirty;	/* commits since the last checkpoint */
	_Atomic uint64_t checkpoints;
	_Atomic uint64_t restarts;	/* RESTART checkpoints that worked */

	struct journal_pipe *pipe;	/* journal_pipeline.c's statements */
	struct journal_syncer *syncer;	/* journal_sync.c; NULL: process */
	_Atomic(const char *) lost;	/* journal_lose(): why, or NULL */
	int		 needs_sync;	/* the open txn stored webhooks or
					   events: durable before COMMIT
					   returns (unless deferred) */
};

/* Process-wide SQLite settings; call before opening any connection. */
void	journal_sqlite_setup(void);
/* A read-write connection to the journal at path (extended result codes,
 * a start-up busy timeout); 0, or -1 and *cause. */
int	journal_connect(const char *path, sqlite3 **dbp, char **cause);
void	journal_cause(char **cause, sqlite3 *db, const char *what);
int	journal_begin_immediate(struct journal *, int nowait, char **cause);
int	journal_exec(sqlite3 *db, const char *sql, const char *what,
	    char **cause);
/* A statement's first column of its first row to *num (integer) or text
 * (copied, truncated to textlen); 0, or -1 and *cause. */
int	journal_query(sqlite3 *db, const char *sql, int64_t *num, char *text,
	    size_t textlen, char **cause);
/* Bring the schema to journal_schema_version() in one transaction, or
 * refuse a newer or foreign database (journal_schema.c); 0, or -1 and
 * *cause. */
int	journal_migrate(sqlite3 *db, char **cause);
void	journal_abort_txn(sqlite3 *db, const char *what);
/* Run a prepared statement that returns no rows (BEGIN, COMMIT) and reset
 * it; 0, or -1 and *cause. */
int	journal_run(sqlite3 *, sqlite3_stmt *, const char *what, char **cause);
int	journal_prepare(struct journal *j, const char *sql, sqlite3_stmt **st,
	    char **cause);
/* Delete published events created before cutoff_ms (bounded). */
int	journal_prune_events(struct journal *j, int64_t cutoff_ms,
	    char **cause);
/* The checkpointer thread (journal_checkpoint.c) and the write
 * connection's WAL hook that nudges it. */
int	journal_start_checkpointer(struct journal *j, char **cause);
int	journal_wal_hook_cb(void *arg, sqlite3 *db, const char *name,
	    int frames);
/* Start/stop the WAL syncer thread (durability = full). */
int	journal_syncer_start(struct journal *j, char **cause);
void	journal_syncer_stop(struct journal *j);
/* After a COMMIT: if the transaction needs_sync, block until the WAL is
 * synced (durability = full). 0, or -1 when the fsync failed. */
int	journal_sync_after_commit(struct journal *j, char **cause);
/*
 * A failed fsync: the journal can no longer vouch for what it stored (see
 * journal_sync.c). From now on no ticket is durable, the checkpointer
 * copies nothing more, and journal_free leaves the WAL for
 * journal_recover_wal at the next open. Wakes the sync and lock listeners
 * so the owner learns it (journal_lost). Any thread; the first why, a
 * static string, is kept.
 */
void	journal_lose(struct journal *, const char *why);
/* journal_lost.c: journal_lose's mark on disk (JOURNAL_LOST_FILE), why
 * and when; the first read of a connection to a lost journal, which
 * locking_mode = EXCLUSIVE makes read alone: 0, 1 when another connection
 * has it open, -1 and *why; and what to tell the operator then (the other
 * process's pid if the kernel names it; call with no connection of this
 * process open on the journal). */
void	journal_mark_lost(struct journal *, const char *why);
int	journal_lost_first_read(sqlite3 *db, char **why);
char	*journal_lost_busy_cause(const char *path);
/* 1 when db's last error was a failed fsync (of a file or a directory). */
int	journal_fsync_error(sqlite3 *db);
/* journal_lose(j, why) when the write connection's last error was a
 * failed fsync. */
void	journal_lose_on_fsync(struct journal *, const char *why);
/* COMMIT the write connection's transaction (a failed fsync in it loses
 * the journal); 0 or -1 and *cause. */
int	journal_run_commit(struct journal *, char **cause);
/* Call the lock listener (journal_lock_listen), if any. Any thread. */
void	journal_lock_notify(struct journal *);
/* Hand a committed ticket to the syncer. */
void	journal_syncer_request(struct journal *j, uint64_t ticket);
/* One row of JOURNAL_ROW_COLUMNS (journal_pipeline.c) into r; with
 * lengths, columns 8 and 16 hold length(body) and length(api_body) and the
 * bodies stay NULL (journal_admin.c lists rows without copying bodies). */
void	journal_load_row(sqlite3_stmt *st, struct journal_row *r, int lengths);
/* Finalise the pipeline's prepared statements (before sqlite3_close). */
void	journal_pipeline_free(struct journal *j);

#endif
