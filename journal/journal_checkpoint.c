/*
 * journal_checkpoint.c: WAL checkpoints off the event loop. A thread owned
 * by the journal, with its own connection, runs a PASSIVE checkpoint every
 * checkpoint_ms when anything was committed and whenever the write
 * connection's WAL hook nudges it; past a size it forces a RESTART so the
 * WAL starts over. It never blocks the writer for longer than about
 * JOURNAL_RESTART_BUSY_MS plus a small copy, and never touches the write
 * connection. The WAL hook itself runs on the main thread. A failed fsync
 * of either file loses the journal, and the checkpointer stops for good
 * (journal_checkpoint_failed).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

#define JOURNAL_RESTART_BUSY_MS	10	/* never hold writers up for long */
#define JOURNAL_RESTART_POLL_US	100	/* its tries for the write lock */
#define JOURNAL_RESTART_CATCHUP	3	/* passes before a RESTART at most */
#define JOURNAL_RESTART_NEAR_FRAMES 64	/* few enough frames to RESTART */
#define JOURNAL_RESTART_BACKOFF_MS 1000	/* after a RESTART met a reader */

/*
 * A checkpoint step failed on the checkpointer's connection. Busy or
 * locked: try again later. A failed fsync loses the journal: the kernel
 * may have dropped what it could not write and will call the next fsync
 * clean, while SQLite already counts the copied frames as backfilled, so
 * its next reset of the WAL (a writer starting it over, a RESTART, the
 * final TRUNCATE) would throw away the only good copy. Nothing is
 * checkpointed after that; the next open copies the whole WAL again.
 * Anything else is logged and retried.
 */
static void
journal_checkpoint_failed(struct journal *j, const char *step)
{
	int rc = sqlite3_extended_errcode(j->ckpt_db);

	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return;
	if (journal_fsync_error(j->ckpt_db)) {
		log_error("journal_checkpoint_fsync_failed", "step=%s "
		    "error=\"%s\" code=%d action=stop", step,
		    sqlite3_errmsg(j->ckpt_db), rc);
		journal_lose(j, "fsync during a WAL checkpoint failed");
		return;
	}
	log_warn("journal_checkpoint_failed", "step=%s error=\"%s\" code=%d",
	    step, sqlite3_errmsg(j->ckpt_db), rc);
}

/*
 * Under a steady stream of commits a PASSIVE checkpoint never finds the WAL
 * fully copied at the moment a writer starts, so the WAL is never started
 * over and grows without bound (tens of GB in a soak). Past a size, a
 * RESTART checkpoint copies the little left after the PASSIVE pass while
 * holding writers off (at most about JOURNAL_RESTART_BUSY_MS plus the copy)
 * so the next commit starts the WAL from the beginning, overwriting it in
 * place (journal_size_limit only cuts back a WAL a reader let overshoot).
 * If readers keep it busy, the next round tries again.
 *
 * The first commit into a restarted WAL writes its new header and fsyncs
 * it before any frame (SQLite's guard against reordered writes). That
 * commit is made here, at once, rewriting user_version with its own value
 * (one page), so the fsync runs on this thread and not inside the event
 * loop's next group commit. If the loop gets the lock first, it pays it.
 */
static int
journal_checkpoint_take_header(struct journal *j)
{
	sqlite3_stmt *st = NULL;
	char sql[64];
	int version = -1;

	if (sqlite3_prepare_v2(j->ckpt_db, "PRAGMA user_version", -1, &st,
	    NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version < 0)
		return 0;
	xsnprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
	if (sqlite3_exec(j->ckpt_db, sql, NULL, NULL, NULL) == SQLITE_OK)
		return 1;
	journal_checkpoint_failed(j, "wal_header");
	return 0;
}

/*
 * The RESTART's busy handler. SQLite's own (sqlite3_busy_timeout) sleeps
 * 1, 2, 5, 10 ms between tries, and the event loop commits a batch every
 * millisecond or so under load, so every restart waited ms for the write
 * lock while more frames piled up for it to copy with writers held off.
 * Short sleeps take the lock between two batches instead. arg: the
 * monotonic deadline in ns (a sleep's slack would make a count of tries
 * last half as long again).
 */
static int
journal_checkpoint_busy(void *arg, int tries)
{
	const int64_t *deadline = arg;
	struct timespec ts = { 0, JOURNAL_RESTART_POLL_US * 1000L };

	(void)tries;
	if (util_mono_ns() >= *deadline)
		return 0;
	nanosleep(&ts, NULL);
	return 1;
}

static void
journal_checkpoint_restart(struct journal *j, int nlog)
{
	int64_t deadline;
	int rc, n = 0, copied = 0, header;

	deadline = util_mono_ns() +
	    (int64_t)JOURNAL_RESTART_BUSY_MS * 1000000;
	sqlite3_busy_handler(j->ckpt_db, journal_checkpoint_busy, &deadline);
	rc = sqlite3_wal_checkpoint_v2(j->ckpt_db, NULL,
	    SQLITE_CHECKPOINT_RESTART, &n, &copied);
	sqlite3_busy_handler(j->ckpt_db, NULL, NULL);
	if (rc == SQLITE_OK) {
		header = journal_lost(j) == NULL &&
		    journal_checkpoint_take_header(j);
		atomic_fetch_add(&j->restarts, 1);
		j->ckpt_synced = 0;
		j->restart_after_ms = 0;
		log_debug("journal_wal_restart", "wal_frames=%d header=%s", nlog,
		    header ? "synced_here" : "left_to_the_writer");
	} else {
		/*
		 * A reader still on old frames (an operator's sqlite3 shell,
		 * a backup): the RESTART held the write lock while it waited
		 * for it. Each try holds writers off that long, so not again
		 * for a while, however often the loop nudges.
		 */
		j->restart_after_ms = util_mono_ms() +
		    JOURNAL_RESTART_BACKOFF_MS;
		atomic_store(&j->wal_dirty, 1);
		journal_checkpoint_failed(j, "restart");
	}
	/* The write lock is free again: whoever met it may go on. */
	journal_lock_notify(j);
}

void
journal_lock_notify(struct journal *j)
{
	if (!j->sync_inited)
		return;
	pthread_mutex_lock(&j->lock);
	if (j->lock_fn != NULL)
		j->lock_fn(j->lock_arg);
	pthread_mutex_unlock(&j->lock);
}

void
journal_lock_listen(struct journal *j, journal_sync_fn fn, void *arg)
{
	pthread_mutex_lock(&j->lock);
	j->lock_fn = fn;
	j->lock_arg = arg;
	pthread_mutex_unlock(&j->lock);
}

/*
 * SQLite syncs the database file only when a checkpoint copies the WAL to
 * its very end. Under a steady stream of commits a PASSIVE pass never gets
 * there (frames arrive while it copies), so a whole lap of copied pages,
 * tens of MB, would stay dirty until the RESTART, and that RESTART would
 * write them out while holding every writer off (about 20 ms at 20,000
 * webhooks/s). Syncing after each pass instead spreads that work over the
 * lap, on this thread, with no lock held; the RESTART then finds almost
 * nothing to write. A skipped sync is harmless here (SQLite syncs again
 * before it ever lets the WAL start over), a failed one is not: SQLite's
 * own later sync may be told all is well while the pages are gone, so it
 * loses the journal. 0 or -1.
 */
static int
journal_checkpoint_sync_db(struct journal *j)
{
	sqlite3_file *f = NULL;
	int rc;

	if (sqlite3_file_control(j->ckpt_db, "main", SQLITE_FCNTL_FILE_POINTER,
	    &f) != SQLITE_OK || f == NULL || f->pMethods == NULL)
		return 0;
	if ((rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL)) == SQLITE_OK)
		return 0;
	log_error("journal_checkpoint_fsync_failed", "step=sync_db path=%s "
	    "code=%d action=stop", j->path, rc);
	journal_lose(j, "fsync of the journal's database file failed");
	return -1;
}

/* One PASSIVE pass and the sync after it; 0, or -1 to try again later. */
static int
journal_checkpoint_pass(struct journal *j, int *nlog, int *nckpt)
{
	int rc;

	if (journal_lost(j) != NULL)
		return -1;
	rc = sqlite3_wal_checkpoint_v2(j->ckpt_db, NULL,
	    SQLITE_CHECKPOINT_PASSIVE, nlog, nckpt);
	if (rc != SQLITE_OK) {
		atomic_store(&j->wal_dirty, 1);
		journal_checkpoint_failed(j, "passive");
		return -1;
	}
	atomic_fetch_add(&j->checkpoints, 1);
	if (*nckpt < j->ckpt_synced)	/* the WAL started over */
		j->ckpt_synced = 0;
	if (*nckpt > j->ckpt_synced) {
		if (journal_checkpoint_sync_db(j) != 0)
			return -1;
		j->ckpt_synced = *nckpt;
	}
	if (*nckpt < *nlog)	/* a reader pins old frames */
		atomic_store(&j->wal_dirty, 1);
	log_debug("journal_checkpoint", "wal_frames=%d copied=%d", *nlog,
	    *nckpt);
	return 0;
}

/*
 * A PASSIVE pass if anything was committed since the last one. Past the
 * restart size, more passes first catch up with what was committed during
 * the previous one and its sync (a few ms of frames), so the RESTART, which
 * holds writers off, has only a moment's frames to copy and write out.
 */
static void
journal_checkpoint_once(struct journal *j)
{
	int i, before, nlog = 0, nckpt = 0;

	if (!atomic_exchange(&j->wal_dirty, 0))
		return;
	if (journal_checkpoint_pass(j, &nlog, &nckpt) != 0 ||
	    nlog < j->restart_frames || util_mono_ms() < j->restart_after_ms)
		return;
	for (i = 0; i < JOURNAL_RESTART_CATCHUP; i++) {
		before = nlog;
		if (journal_checkpoint_pass(j, &nlog, &nckpt) != 0)
			return;
		if (nlog - before <= JOURNAL_RESTART_NEAR_FRAMES)
			break;
	}
	/* The writer did not restart it; nor was the journal lost since the
	 * last pass (by the syncer or a COMMIT). */
	if (nlog >= j->restart_frames && journal_lost(j) == NULL)
		journal_checkpoint_restart(j, nlog);
}

static void *
journal_checkpoint_main(void *arg)
{
	struct journal *j = arg;
	struct timespec ts;

	util_thread_name("ph-checkpoint");
	pthread_mutex_lock(&j->lock);
	while (!j->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += j->checkpoint_ms / 1000;
		ts.tv_nsec += (long)(j->checkpoint_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!j->stop && !j->nudged) {
			if (pthread_cond_timedwait(&j->cond, &j->lock,
			    &ts) == ETIMEDOUT)
				break;
		}
		if (j->stop)
			break;
		j->nudged = 0;
		pthread_mutex_unlock(&j->lock);
		journal_checkpoint_once(j);
		pthread_mutex_lock(&j->lock);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* Start the checkpointer with every signal blocked (the main thread's
 * event loop handles them). */
int
journal_start_checkpointer(struct journal *j, char **cause)
{
	pthread_condattr_t attr;
	int error;

	if ((error = pthread_condattr_init(&attr)) == 0) {
		if ((error = pthread_condattr_setclock(&attr,
		    CLOCK_MONOTONIC)) == 0)
			error = pthread_cond_init(&j->cond, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (error != 0) {
		*cause = xasprintf("checkpointer: %s", strerror(error));
		return -1;
	}
	if ((error = pthread_mutex_init(&j->lock, NULL)) != 0) {
		pthread_cond_destroy(&j->cond);
		*cause = xasprintf("checkpointer: %s", strerror(error));
		return -1;
	}
	j->sync_inited = 1;

	error = util_thread_start(&j->ckpt_thread, journal_checkpoint_main, j);
	if (error != 0) {
		*cause = xasprintf("checkpointer thread: %s", strerror(error));
		return -1;
	}
	j->ckpt_started = 1;
	return 0;
}

/* Runs on the main thread after every commit on the write connection; it
 * nudges the checkpointer each time the WAL has grown by nudge_frames. */
int
journal_wal_hook_cb(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct journal *j = arg;

	atomic_store(&j->wal_dirty, 1);
	if (frames < j->nudge_base)	/* the WAL was restarted */
		j->nudge_base = 0;
	if (frames - j->nudge_base >= j->nudge_frames) {
		j->nudge_base = frames;
		pthread_mutex_lock(&j->lock);
		j->nudged = 1;
		pthread_cond_signal(&j->cond);
		pthread_mutex_unlock(&j->lock);
	}
	return SQLITE_OK;
}

/* Configure the write connection: WAL, durability, no autocheckpoint,
 * size limit. */
