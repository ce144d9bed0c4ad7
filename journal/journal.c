/*
 * journal.c: the SQLite journal (WAL mode): open it (the schema and its
 * migrations are in journal_schema.c), group commit of received webhooks,
 * counts, retention pruning. The write connection belongs to the main
 * thread; WAL checkpoints run on a thread of their own
 * (journal_checkpoint.c), fsyncs on another (journal_sync.c). Nothing here
 * may block the event loop for long: no checkpoints on the write
 * connection, a 25 ms busy timeout, bounded prune batches.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

#define JOURNAL_OPEN_BUSY_MS	2000	/* start-up may wait a little */
#define JOURNAL_CHECKPOINT_MS	1000	/* default checkpointer period */
#define JOURNAL_RECOVER_MS	10000	/* journal_recover_wal: lock wait */
/* Checkpoint early, every 1 MB of WAL: each pass then syncs a small slice
 * of the database file, and the WAL's fdatasync never queues behind a
 * burst of several MB (4 MB: 0.45-0.6 % of fsyncs over 2.5 ms, 1 MB:
 * 0.05-0.3 %). */
#define JOURNAL_WAL_NUDGE_BYTES	(1 * 1024 * 1024)
#define JOURNAL_WAL_RESTART_BYTES (64 * 1024 * 1024) /* force a WAL reset */
#define JOURNAL_MIN_PAGES	16	/* smallest accepted max_bytes */
#define JOURNAL_PAGE		8192	/* page size of a new journal */
#define JOURNAL_SMALL_PAGE	4096	/* ... under a cap below: */
#define JOURNAL_SMALL_CAP	((int64_t)16 * 1024 * 1024)
#define JOURNAL_PRUNE_BATCH	1000	/* rows per DELETE statement */
#define JOURNAL_PRUNE_BUDGET_MS	20	/* per journal_prune() call */

static const char *journal_state_names[JOURNAL_NSTATES] = {
	"received", "checked", "published", "quarantined"
};

/* ON CONFLICT names the column: OR IGNORE would also swallow NOT NULL and
 * CHECK failures and report them as duplicates. */
static const char journal_insert_sql[] =
	"INSERT INTO webhooks (message_id, state, event_type, resource_id,"
	" occurred_ms, received_ms, secret_index, body, quarantine_reason,"
	" verdict, checked_ms, seq, published_ms)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
	" ON CONFLICT (message_id) DO NOTHING";

/* Repeating the partial indexes' WHERE lets the planner use them; the total
 * is a count over the narrow received_ms index; published is the rest. */
static const char journal_count_sql[] =
	"SELECT (SELECT count(*) FROM webhooks),"
	" (SELECT count(*) FROM webhooks WHERE state IN ('received','checked')"
	"  AND state = 'received'),"
	" (SELECT count(*) FROM webhooks WHERE state IN ('received','checked')"
	"  AND state = 'checked'),"
	" (SELECT count(*) FROM webhooks WHERE state = 'quarantined')";

static const char journal_prune_sql[] =
	"DELETE FROM webhooks WHERE id IN (SELECT id FROM webhooks"
	" WHERE received_ms < ?1 AND (state = 'published'"
	"  OR (state = 'quarantined' AND seq IS NOT NULL))"
	" LIMIT ?2)";


void
journal_cause(char **cause, sqlite3 *db, const char *what)
{
	*cause = xasprintf("%s: %s (sqlite code %d)", what, sqlite3_errmsg(db),
	    sqlite3_extended_errcode(db));
}

/* Run a statement that returns at most one interesting row; the first
 * column goes to *num (integer) or text (copied, truncated). */
int
journal_query(sqlite3 *db, const char *sql, int64_t *num, char *text,
    size_t textlen, char **cause)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *s;
	int rc, ret = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		journal_cause(cause, db, sql);
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (num != NULL)
			*num = sqlite3_column_int64(st, 0);
		if (text != NULL) {
			s = sqlite3_column_text(st, 0);
			xsnprintf(text, textlen, "%s",
			    s != NULL ? (const char *)s : "");
		}
	}
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		journal_cause(cause, db, sql);
		goto out;
	}
	ret = 0;
out:
	sqlite3_finalize(st);	/* repeats the step's error, handled above */
	return ret;
}

int
journal_exec(sqlite3 *db, const char *sql, const char *what, char **cause)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		journal_cause(cause, db, what);
		return -1;
	}
	return 0;
}

/* A prepared statement that returns no rows (BEGIN, COMMIT), run and reset:
 * the group commit's two would otherwise be parsed again every batch. */
int
journal_run(sqlite3 *db, sqlite3_stmt *st, const char *what, char **cause)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		journal_cause(cause, db, what);
	sqlite3_reset(st);	/* repeats the step's error, handled above */
	return rc == SQLITE_DONE ? 0 : -1;
}

int
journal_fsync_error(sqlite3 *db)
{
	int rc = sqlite3_extended_errcode(db);

	return rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_DIR_FSYNC;
}

void
journal_lose_on_fsync(struct journal *j, const char *why)
{
	if (journal_fsync_error(j->db))
		journal_lose(j, why);
}

/* COMMIT on the write connection. It fsyncs only the header of a WAL that
 * starts over (when the checkpointer did not write it first); if that
 * fails, the header on disk may be the old one, whose salt disowns every
 * frame after it: the journal is lost. */
int
journal_run_commit(struct journal *j, char **cause)
{
	if (journal_run(j->db, j->commit, "journal commit", cause) == 0)
		return 0;
	journal_lose_on_fsync(j, "fsync of the journal's WAL failed");
	return -1;
}

/* ROLLBACK if SQLite still has a transaction open (it may have rolled back
 * by itself after SQLITE_FULL or an I/O error). */
void
journal_abort_txn(sqlite3 *db, const char *what)
{
	if (sqlite3_get_autocommit(db))
		return;
	if (sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
		log_error("journal_rollback_failed", "during=%s error=\"%s\"",
		    what, sqlite3_errmsg(db));
}

const char *
journal_state_name(enum journal_state state)
{
	if ((int)state < 0 || state >= JOURNAL_NSTATES)
		return "unknown";
	return journal_state_names[state];
}

const char *
journal_path(const struct journal *j)
{
	return j->path;
}

uint64_t
journal_checkpoints(const struct journal *j)
{
	return atomic_load(&j->checkpoints);
}

uint64_t
journal_wal_restarts(const struct journal *j)
{
	return atomic_load(&j->restarts);
}

int
journal_in_transaction(const struct journal *j)
{
	return j->in_txn;
}

/*
 * Create the database file ourselves so it is 0600 (SQLite gives the -wal
 * and -shm files the main file's mode) and never a symlink. A new file's
 * directory entry is made durable before anything is written to it.
 */
static int
journal_create_file(const char *dir, const char *path, char **cause)
{
	struct stat sb;
	int fd, dfd, created = 1, ret = -1;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1 && errno == EEXIST) {
		created = 0;
		fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd == -1) {
		*cause = xasprintf("cannot open: %s", strerror(errno));
		goto out;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		*cause = xasprintf("not a regular file");
		goto out;
	}
	if ((sb.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) {
		*cause = xasprintf("cannot chmod: %s", strerror(errno));
		goto out;
	}
	if (created) {
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd == -1 || fsync(dfd) != 0) {
			*cause = xasprintf("cannot sync directory: %s",
			    strerror(errno));
			if (dfd != -1)
				close(dfd);
			goto out;
		}
		close(dfd);
	}
	ret = 0;
out:
	if (fd != -1)
		close(fd);
	return ret;
}

static pthread_once_t journal_sqlite_once = PTHREAD_ONCE_INIT;

/*
 * SQLite's allocation statistics take a process-wide mutex around every
 * malloc and free (on by default); nothing here reads them, and under load
 * that lock was a visible share of every INSERT, contended by the
 * checkpointer and replay readers. Must run before the first connection.
 */
static void
journal_sqlite_config(void)
{
	if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
		log_debug("journal_sqlite_config", "memstatus=kept");
}

void
journal_sqlite_setup(void)
{
	pthread_once(&journal_sqlite_once, journal_sqlite_config);
}

int
journal_connect(const char *path, sqlite3 **dbp, char **cause)
{
	int flags, rc;

	journal_sqlite_setup();
	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
	rc = sqlite3_open_v2(path, dbp, flags, NULL);
	if (rc != SQLITE_OK) {
		*cause = xasprintf("cannot open: %s", *dbp != NULL ?
		    sqlite3_errmsg(*dbp) : sqlite3_errstr(rc));
		sqlite3_close(*dbp);
		*dbp = NULL;
		return -1;
	}
	if (sqlite3_extended_result_codes(*dbp, 1) != SQLITE_OK ||
	    sqlite3_busy_timeout(*dbp, JOURNAL_OPEN_BUSY_MS) != SQLITE_OK) {
		journal_cause(cause, *dbp, "journal connection setup");
		return -1;
	}
	return 0;
}

static int
journal_setup_writer(struct journal *j, const struct journal_config *cfg,
    char **cause)
{
	char mode[16], sql[96];
	int64_t page_size, pages, got, restart, nudge;
	const char *sync;

	/*
	 * A new journal gets 8 KB pages: a webhook row (~1.7 KB) and its
	 * event (~1.5 KB) fill them with less slack and fewer frames and
	 * b-tree pages per commit than 4 KB (ingest under load: +5-8 %
	 * webhooks/s, less time storing each batch). Under a small size cap
	 * it keeps 4 KB pages: the schema alone takes a page per table and
	 * index, which would leave a 128 KB journal almost no room. It must
	 * come before the first write (WAL mode writes the header); on an
	 * existing journal SQLite ignores it and the page size stays.
	 */
	xsnprintf(sql, sizeof sql, "PRAGMA page_size = %d",
	    cfg->max_bytes > 0 && cfg->max_bytes < JOURNAL_SMALL_CAP ?
	    JOURNAL_SMALL_PAGE : JOURNAL_PAGE);
	if (journal_exec(j->db, sql, "page size", cause) != 0 ||
	    journal_query(j->db, "PRAGMA journal_mode = WAL", NULL, mode,
	    sizeof mode, cause) != 0)
		return -1;
	if (strcmp(mode, "wal") != 0) {
		*cause = xasprintf("cannot enable WAL mode (mode is %s)", mode);
		return -1;
	}
	/*
	 * No commit syncs inline: with durability = full the syncer thread
	 * (journal_sync.c) fdatasyncs the WAL for the commits that need it.
	 * NORMAL (not OFF) keeps SQLite's sync of a new WAL header before the
	 * first frames after a restart: without it a reordered write could
	 * let an old header validate a prefix of old frames at recovery, and
	 * stale pages would shadow the database (ticket ff5be73dee). The
	 * checkpointer takes that sync on its own thread right after each
	 * RESTART (journal_checkpoint.c), so the loop seldom pays it.
	 */
	sync = "NORMAL";
	xsnprintf(sql, sizeof sql, "PRAGMA synchronous = %s", sync);
	if (journal_exec(j->db, sql, "synchronous", cause) != 0)
		return -1;
	if (journal_query(j->db, "PRAGMA wal_autocheckpoint = 0", NULL, NULL,
	    0, cause) != 0 ||
	    journal_query(j->db, "PRAGMA page_size", &page_size, NULL, 0,
	    cause) != 0)
		return -1;
	if (page_size <= 0) {
		*cause = xasprintf("bad page size %lld", (long long)page_size);
		return -1;
	}
	/* With a size cap the WAL must stay small too: it is on the same
	 * disk. Restart it at a quarter of the cap, checkpoint every sixteenth. */
	restart = cfg->wal_restart_bytes > 0 ? cfg->wal_restart_bytes :
	    JOURNAL_WAL_RESTART_BYTES;
	if (cfg->max_bytes > 0 && cfg->wal_restart_bytes <= 0 &&
	    cfg->max_bytes / 4 < restart)
		restart = cfg->max_bytes / 4 > 256 * 1024 ? cfg->max_bytes / 4 :
		    256 * 1024;
	nudge = restart / 16 < JOURNAL_WAL_NUDGE_BYTES ? restart / 16 :
	    JOURNAL_WAL_NUDGE_BYTES;
	j->restart_frames = (int)(restart / page_size);
	/*
	 * When the WAL starts over it is overwritten in place, not cut back:
	 * truncating it frees its blocks (a synchronous discard on a disk
	 * mounted with -o discard, tens of ms inside COMMIT on the loop
	 * thread), and the next lap must allocate them again (ext4 block
	 * allocation under the inode lock the syncer's fdatasync holds) and
	 * change the file size (metadata for every fdatasync). A WAL that
	 * overshot the restart size (a reader pinned it) is cut back to a
	 * quarter above it.
	 */
	xsnprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %lld",
	    (long long)(restart + restart / 4));
	if (journal_query(j->db, sql, NULL, NULL, 0, cause) != 0)
		return -1;
	j->nudge_frames = (int)(nudge / page_size) > 0 ?
	    (int)(nudge / page_size) : 1;
	if (cfg->max_bytes > 0) {
		pages = cfg->max_bytes / page_size;
		if (pages < JOURNAL_MIN_PAGES) {
			*cause = xasprintf("journal max_bytes %lld is too small "
			    "(minimum %lld)", (long long)cfg->max_bytes,
			    (long long)(JOURNAL_MIN_PAGES * page_size));
			return -1;
		}
		xsnprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld",
		    (long long)pages);
		if (journal_query(j->db, sql, &got, NULL, 0, cause) != 0)
			return -1;
		if (got > pages)
			log_warn("journal_over_max_bytes", "path=%s bytes=%lld "
			    "max_bytes=%lld", j->path,
			    (long long)(got * page_size),
			    (long long)cfg->max_bytes);
	}
	return 0;
}

int
journal_prepare(struct journal *j, const char *sql, sqlite3_stmt **st,
    char **cause)
{
	if (sqlite3_prepare_v3(j->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
	    NULL) != SQLITE_OK) {
		journal_cause(cause, j->db, "prepare");
		return -1;
	}
	return 0;
}


/* Copy the whole WAL into the database file and reset it (TRUNCATE on the
 * write connection, whose sync level syncs both files); 0 or -1 and
 * *cause. */
static int
journal_checkpoint_truncate(struct journal *j, char **cause)
{
	if (sqlite3_wal_checkpoint_v2(j->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
	    NULL, NULL) != SQLITE_OK) {
		journal_cause(cause, j->db, "WAL checkpoint");
		return -1;
	}
	atomic_fetch_add(&j->checkpoints, 1);
	return 0;
}

/*
 * Whatever the WAL holds at start goes into the database file, synced.
 * After a failed fsync (payhook serve exits 3) the recovered frames may
 * live only in the page cache: pages the kernel could not write and then
 * called clean, which no later fsync of the WAL writes. Copying them makes
 * every row the journal shows durable before a retry of it is answered
 * "duplicate", and before the publisher trusts the seqs it finds. Waits up
 * to JOURNAL_RECOVER_MS for other connections (a backup, an operator's
 * shell). After a clean stop the WAL is gone and this costs nothing.
 */
int
journal_recover_wal(struct journal *j, char **cause)
{
	struct stat st;
	int rc;

	if (stat(j->wal_path, &st) != 0 || st.st_size == 0)
		return 0;
	sqlite3_busy_timeout(j->db, JOURNAL_RECOVER_MS);
	rc = journal_checkpoint_truncate(j, cause);
	sqlite3_busy_timeout(j->db, JOURNAL_BUSY_MS);
	if (rc != 0) {
		journal_lose_on_fsync(j, "fsync while recovering the WAL "
		    "failed");
		return -1;
	}
	log_info("journal_wal_recovered", "wal_bytes=%lld result=synced",
	    (long long)st.st_size);
	return 0;
}

struct journal *
journal_open(const struct journal_config *cfg, char **cause)
{
	struct journal *j;
	char *why = NULL;

	j = xcalloc(1, sizeof *j);
	j->retention_ms = cfg->retention_ms;
	j->checkpoint_ms = cfg->checkpoint_ms > 0 ? cfg->checkpoint_ms :
	    JOURNAL_CHECKPOINT_MS;
	j->path = xasprintf("%s/%s", cfg->dir, JOURNAL_FILE);
	j->wal_path = xasprintf("%s-wal", j->path);

	if (util_mkdir_p(cfg->dir, &why) != 0 ||
	    journal_create_file(cfg->dir, j->path, &why) != 0 ||
	    journal_connect(j->path, &j->db, &why) != 0 ||
	    journal_setup_writer(j, cfg, &why) != 0 ||
	    journal_migrate(j->db, &why) != 0 ||
	    journal_prepare(j, journal_insert_sql, &j->insert, &why) != 0 ||
	    journal_prepare(j, journal_count_sql, &j->count, &why) != 0 ||
	    journal_prepare(j, journal_prune_sql, &j->prune, &why) != 0 ||
	    journal_prepare(j, "BEGIN IMMEDIATE", &j->begin, &why) != 0 ||
	    journal_prepare(j, "COMMIT", &j->commit, &why) != 0)
		goto fail;
	if (sqlite3_busy_timeout(j->db, JOURNAL_BUSY_MS) != SQLITE_OK) {
		journal_cause(&why, j->db, "busy timeout");
		goto fail;
	}

	if (journal_connect(j->path, &j->ckpt_db, &why) != 0)
		goto fail;
	/* PASSIVE never waits; the sync level sets the checkpoint's fsyncs. */
	if (journal_exec(j->ckpt_db, cfg->durability ==
	    JOURNAL_DURABILITY_FULL ? "PRAGMA synchronous = FULL" :
	    "PRAGMA synchronous = NORMAL", "checkpointer setup", &why) != 0)
		goto fail;
	if (sqlite3_busy_timeout(j->ckpt_db, 0) != SQLITE_OK) {
		journal_cause(&why, j->ckpt_db, "checkpointer busy timeout");
		goto fail;
	}
	atomic_store(&j->wal_dirty, 1);
	/* The syncer first: the checkpointer may read j->syncer at once
	 * (journal_lose). */
	if (cfg->durability == JOURNAL_DURABILITY_FULL &&
	    journal_syncer_start(j, &why) != 0)
		goto fail;
	if (journal_start_checkpointer(j, &why) != 0)
		goto fail;
	/* Replaces SQLite's autocheckpoint hook (already off above). */
	sqlite3_wal_hook(j->db, journal_wal_hook_cb, j);
	return j;
fail:
	*cause = xasprintf("journal %s: %s", j->path,
	    why != NULL ? why : "unknown error");
	free(why);
	journal_free(j);
	return NULL;
}

/*
 * A lost journal's WAL holds the only copy known good of everything since
 * the last good sync: closing must not checkpoint it (SQLite's last close
 * would copy only the frames past the backfill mark, not those whose copy
 * the disk may have dropped, and then delete the WAL). The next open that
 * finds no other process on the journal rebuilds the WAL index, which
 * starts the backfill from the first frame again, and journal_recover_wal
 * copies it all.
 */
static void
journal_keep_wal(struct journal *j)
{
	if (j->ckpt_db != NULL)
		sqlite3_db_config(j->ckpt_db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
		    1, NULL);
	if (j->db != NULL)
		sqlite3_db_config(j->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
		    NULL);
	log_error("journal_wal_kept", "path=%s reason=\"%s\" "
	    "action=recover_at_next_open", j->wal_path, journal_lost(j));
}

const char *
journal_free(struct journal *j)
{
	const char *lost;
	char *why = NULL;

	if (j == NULL)
		return NULL;
	if (j->db != NULL && j->in_txn)
		journal_rollback(j);
	/* The checkpointer first: it may lose the journal, which wakes the
	 * syncer's listeners. */
	if (j->ckpt_started) {
		pthread_mutex_lock(&j->lock);
		j->stop = 1;
		pthread_cond_signal(&j->cond);
		pthread_mutex_unlock(&j->lock);
		pthread_join(j->ckpt_thread, NULL);
	}
	journal_syncer_stop(j);
	if (j->db != NULL && j->ckpt_started && journal_lost(j) == NULL &&
	    journal_checkpoint_truncate(j, &why) != 0) {
		journal_lose_on_fsync(j, "fsync at the final WAL checkpoint "
		    "failed");
		log_warn("journal_final_checkpoint", "error=\"%s\"", why);
		free(why);
	}
	if ((lost = journal_lost(j)) != NULL)
		journal_keep_wal(j);
	if (j->ckpt_db != NULL && sqlite3_close(j->ckpt_db) != SQLITE_OK)
		log_error("journal_close_failed", "connection=checkpointer "
		    "error=\"%s\"", sqlite3_errmsg(j->ckpt_db));
	if (j->db != NULL) {
		journal_pipeline_free(j);
		sqlite3_finalize(j->insert);
		sqlite3_finalize(j->count);
		sqlite3_finalize(j->prune);
		sqlite3_finalize(j->begin);
		sqlite3_finalize(j->commit);
		if (sqlite3_close(j->db) != SQLITE_OK)
			log_error("journal_close_failed", "connection=writer "
			    "error=\"%s\"", sqlite3_errmsg(j->db));
	}
	if (j->sync_inited) {
		pthread_cond_destroy(&j->cond);
		pthread_mutex_destroy(&j->lock);
	}
	free(j->path);
	free(j->wal_path);
	free(j);
	return lost;
}

/*
 * BEGIN IMMEDIATE on the write connection: it takes the write lock now, so
 * contention fails here, before any row is bound, instead of part-way
 * through a batch. j->busy says whether only another connection's lock
 * stopped it; nowait fails at once then instead of waiting up to
 * JOURNAL_BUSY_MS.
 */
int
journal_begin_immediate(struct journal *j, int nowait, char **cause)
{
	int rc, code;

	if (nowait)
		sqlite3_busy_timeout(j->db, 0);
	rc = journal_run(j->db, j->begin, "journal begin", cause);
	code = sqlite3_extended_errcode(j->db) & 0xff;
	if (nowait)
		sqlite3_busy_timeout(j->db, JOURNAL_BUSY_MS);
	j->busy = rc != 0 && (code == SQLITE_BUSY || code == SQLITE_LOCKED);
	return rc;
}

static int
journal_begin_mode(struct journal *j, int nowait, char **cause)
{
	if (j->in_txn) {
		*cause = xasprintf("journal begin: a transaction is already "
		    "open");
		return -1;
	}
	if (journal_begin_immediate(j, nowait, cause) != 0)
		return -1;
	j->in_txn = 1;
	j->txn_failed = 0;
	return 0;
}

int
journal_begin(struct journal *j, char **cause)
{
	return journal_begin_mode(j, 0, cause);
}

/*
 * The group commit's BEGIN never waits: while the checkpointer's RESTART
 * holds the write lock (a few ms, its fsync included) the receiver retries
 * on a timer and the loop goes on reading and answering.
 */
int
journal_begin_nowait(struct journal *j, char **cause)
{
	return journal_begin_mode(j, 1, cause);
}

int
journal_was_busy(const struct journal *j)
{
	return j->busy;
}

static int
journal_bind_entry(sqlite3_stmt *st, const struct journal_entry *e)
{
	const char *state;
	int rc;

	state = e->quarantine_reason != NULL ? "quarantined" :
	    e->verdict != NULL && e->seq != 0 ? "published" :
	    e->verdict != NULL ? "checked" : "received";
	if (sqlite3_bind_text(st, 1, e->message_id, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 3, e->event_type, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 4, e->resource_id, -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 6, e->received_ms) ||
	    sqlite3_bind_int(st, 7, e->secret_index) ||
	    sqlite3_bind_text(st, 9, e->quarantine_reason, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 10, e->verdict, -1, SQLITE_STATIC))
		return -1;
	if (e->verdict != NULL &&
	    sqlite3_bind_int64(st, 11, e->received_ms) != SQLITE_OK)
		return -1;
	if (e->seq != 0 && (sqlite3_bind_int64(st, 12, e->seq) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 13, e->published_ms) != SQLITE_OK))
		return -1;
	if (e->occurred_ms != 0)
		rc = sqlite3_bind_int64(st, 5, e->occurred_ms);
	else
		rc = sqlite3_bind_null(st, 5);
	if (rc != SQLITE_OK)
		return -1;
	if (e->body_len == 0)	/* an empty BLOB, never NULL */
		rc = sqlite3_bind_zeroblob(st, 8, 0);
	else
		rc = sqlite3_bind_blob64(st, 8, e->body, e->body_len,
		    SQLITE_STATIC);
	return rc == SQLITE_OK ? 0 : -1;
}

enum journal_put_result
journal_put(struct journal *j, const struct journal_entry *e, char **cause)
{
	enum journal_put_result ret = JOURNAL_PUT_ERROR;
	int rc;

	if (!j->in_txn || j->txn_failed || sqlite3_get_autocommit(j->db)) {
		*cause = xasprintf("journal insert: no usable transaction "
		    "(call journal_begin, or journal_rollback after a failure)");
		goto out;
	}
	if (e->message_id == NULL || *e->message_id == '\0' ||
	    (e->body == NULL && e->body_len != 0)) {
		*cause = xasprintf("journal insert: entry without message_id "
		    "or body");
		goto out;
	}
	if (journal_bind_entry(j->insert, e) != 0) {
		journal_cause(cause, j->db, "journal insert bind");
		goto out;
	}
	rc = sqlite3_step(j->insert);
	if (rc != SQLITE_DONE) {
		journal_cause(cause, j->db, "journal insert");
		goto out;
	}
	ret = sqlite3_changes(j->db) == 1 ? JOURNAL_PUT_NEW :
	    JOURNAL_PUT_DUPLICATE;
	j->needs_sync = 1;
out:
	if (ret == JOURNAL_PUT_ERROR)
		j->txn_failed = j->in_txn;
	sqlite3_reset(j->insert);	/* repeats the step's error; seen */
	sqlite3_clear_bindings(j->insert);	/* always SQLITE_OK */
	return ret;
}

int
journal_commit(struct journal *j, char **cause)
{
	if (!j->in_txn || j->txn_failed || sqlite3_get_autocommit(j->db)) {
		*cause = xasprintf("journal commit: no usable transaction");
		return -1;
	}
	if (journal_run_commit(j, cause) != 0) {
		j->txn_failed = 1;
		return -1;
	}
	j->in_txn = 0;
	return journal_sync_after_commit(j, cause);
}

void
journal_rollback(struct journal *j)
{
	journal_abort_txn(j->db, "batch");
	j->in_txn = 0;
	j->txn_failed = 0;
	j->needs_sync = 0;
}

int
journal_count_states(struct journal *j, int64_t counts[JOURNAL_NSTATES],
    char **cause)
{
	int64_t total;
	int rc, ret = -1;

	rc = sqlite3_step(j->count);
	if (rc != SQLITE_ROW) {
		journal_cause(cause, j->db, "journal count");
		goto out;
	}
	total = sqlite3_column_int64(j->count, 0);
	counts[JOURNAL_RECEIVED] = sqlite3_column_int64(j->count, 1);
	counts[JOURNAL_CHECKED] = sqlite3_column_int64(j->count, 2);
	counts[JOURNAL_QUARANTINED] = sqlite3_column_int64(j->count, 3);
	counts[JOURNAL_PUBLISHED] = total - counts[JOURNAL_RECEIVED] -
	    counts[JOURNAL_CHECKED] - counts[JOURNAL_QUARANTINED];
	ret = 0;
out:
	sqlite3_reset(j->count);
	return ret;
}

/*
 * Deletes in statements of JOURNAL_PRUNE_BATCH rows, each its own small
 * transaction, and stops after JOURNAL_PRUNE_BUDGET_MS; the caller's timer
 * calls again for the rest. retention_ms <= 0 keeps everything.
 */
int
journal_prune(struct journal *j, int64_t now_ms, int64_t *deleted,
    char **cause)
{
	int64_t start, n;
	int rc, ret = -1;

	*deleted = 0;
	if (j->in_txn) {
		*cause = xasprintf("journal prune: a batch is open");
		return -1;
	}
	if (j->retention_ms <= 0)
		return 0;
	start = util_mono_ms();
	for (;;) {
		if (sqlite3_bind_int64(j->prune, 1, now_ms - j->retention_ms) ||
		    sqlite3_bind_int(j->prune, 2, JOURNAL_PRUNE_BATCH)) {
			journal_cause(cause, j->db, "journal prune bind");
			goto out;
		}
		rc = sqlite3_step(j->prune);
		if (rc != SQLITE_DONE) {
			journal_cause(cause, j->db, "journal prune");
			goto out;
		}
		n = sqlite3_changes(j->db);
		*deleted += n;
		sqlite3_reset(j->prune);
		if (n < JOURNAL_PRUNE_BATCH ||
		    util_mono_ms() - start >= JOURNAL_PRUNE_BUDGET_MS)
			break;
	}
	if (journal_prune_events(j, now_ms - j->retention_ms, cause) != 0)
		goto out;
	ret = 0;
out:
	/* Each DELETE commits by itself: the first one into a WAL started
	 * over fsyncs its header, like a batch's COMMIT. */
	if (ret != 0)
		journal_lose_on_fsync(j, "fsync of the journal's WAL failed");
	sqlite3_reset(j->prune);
	return ret;
}
