/*
 * journal_sync.c: durability without fsync on the event loop. The write
 * connection runs synchronous = NORMAL (COMMIT writes the WAL, no fsync);
 * with durability = full this file's syncer thread fdatasyncs the WAL and
 * publishes the highest durable ticket. Ingest group commits take a ticket
 * and are answered when it is durable, so the loop keeps reading while the
 * disk works and one fsync covers every batch before it. Commits that
 * assign event seqs wait for their sync (a seq must never be reused after
 * a power loss); cross-check verdicts and publish marks can be redone, so
 * they never wait. The syncer thread only calls fdatasync and the notify
 * function; it never touches SQLite. One failed fsync, here or anywhere
 * in the journal, loses the journal (journal_lose): every later ticket
 * fails and the WAL is kept for recovery at the next open.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

#define JOURNAL_SYNC_LISTENERS 4

struct journal_syncer {
	struct journal		*j;
	pthread_t		 thread;
	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;
	int			 stop;
	uint64_t		 requested;	/* under lock */
	_Atomic uint64_t	 synced;
	_Atomic uint64_t	 failed;
	char			*wal_path;
	int			 fd;
	struct {
		journal_sync_fn	 fn;
		void		*arg;
	}			 listeners[JOURNAL_SYNC_LISTENERS];
	struct metric_histogram	*latency;
	uint64_t		 issued;	/* main thread */
};

/* Our own descriptor of the WAL: fdatasync syncs the file whichever
 * descriptor asks. Reopen if SQLite ever replaced the file. */
static int
journal_sync_fd(struct journal_syncer *sy)
{
	struct stat a, b;

	if (sy->fd >= 0 && (fstat(sy->fd, &a) != 0 ||
	    stat(sy->wal_path, &b) != 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev)) {
		close(sy->fd);
		sy->fd = -1;
	}
	if (sy->fd < 0)
		sy->fd = open(sy->wal_path, O_RDONLY | O_CLOEXEC);
	return sy->fd;
}

/* Under the lock, so a listener removed is never called afterwards. */
static void
journal_sync_call_listeners(struct journal_syncer *sy)
{
	int i;

	for (i = 0; i < JOURNAL_SYNC_LISTENERS; i++) {
		if (sy->listeners[i].fn != NULL)
			sy->listeners[i].fn(sy->listeners[i].arg);
	}
}

static void *
journal_sync_main(void *arg)
{
	struct journal_syncer *sy = arg;
	uint64_t target, done;
	int64_t t0, took;
	int fd, ok;

	util_thread_name("ph-sync");
	pthread_mutex_lock(&sy->lock);
	for (;;) {
		done = atomic_load(&sy->synced);
		if (atomic_load(&sy->failed) > done)
			done = atomic_load(&sy->failed);
		while (!sy->stop && sy->requested == done)
			pthread_cond_wait(&sy->cond, &sy->lock);
		if (sy->requested == done)	/* stopping, nothing owed */
			break;
		target = sy->requested;
		pthread_mutex_unlock(&sy->lock);

		/*
		 * After a failed fsync the kernel may have dropped the dirty
		 * pages it could not write and will call the next fsync
		 * clean. That leaves a hole in the WAL on disk, and recovery
		 * stops at the first bad frame: a later commit's fsync
		 * succeeding would not make it durable. So once the journal
		 * is lost, by a failure here or any other fsync of its files,
		 * every request fails without trying, and one whose fsync
		 * was under way when it was lost fails too (fail-stop, as
		 * PostgreSQL does since 2018); the service restarts and
		 * recovers (journal_recover_wal).
		 */
		took = -1;
		if (journal_lost(sy->j) != NULL)
			atomic_store(&sy->failed, target);
		else {
			t0 = util_mono_ns();
			fd = journal_sync_fd(sy);
			ok = fd >= 0 && fdatasync(fd) == 0;
			took = util_mono_ns() - t0;
			if (!ok) {
				log_error("journal_fsync_failed", "path=%s "
				    "error=\"%s\"", sy->wal_path,
				    strerror(errno));
				journal_lose(sy->j,
				    "fsync of the journal's WAL failed");
			}
			if (ok && journal_lost(sy->j) == NULL)
				atomic_store(&sy->synced, target);
			else
				atomic_store(&sy->failed, target);
		}
		pthread_mutex_lock(&sy->lock);
		/* Under the lock: journal_sync_histogram(NULL) then means no
		 * later use of the histogram (its owner may free it). */
		if (took >= 0 && sy->latency != NULL)
			metric_observe(sy->latency, (uint64_t)took);
		pthread_cond_broadcast(&sy->cond);
		journal_sync_call_listeners(sy);
	}
	pthread_mutex_unlock(&sy->lock);
	return NULL;
}

int
journal_syncer_start(struct journal *j, char **cause)
{
	struct journal_syncer *sy;
	int error;

	sy = xcalloc(1, sizeof *sy);
	sy->j = j;
	sy->fd = -1;
	sy->wal_path = xstrdup(j->wal_path);
	if ((error = pthread_mutex_init(&sy->lock, NULL)) != 0 ||
	    (error = pthread_cond_init(&sy->cond, NULL)) != 0) {
		*cause = xasprintf("syncer: %s", strerror(error));
		free(sy->wal_path);
		free(sy);
		return -1;
	}
	if ((error = util_thread_start(&sy->thread, journal_sync_main, sy)) !=
	    0) {
		*cause = xasprintf("syncer thread: %s", strerror(error));
		pthread_cond_destroy(&sy->cond);
		pthread_mutex_destroy(&sy->lock);
		free(sy->wal_path);
		free(sy);
		return -1;
	}
	j->syncer = sy;
	return 0;
}

/* Finishes any sync owed, then joins: nothing acknowledged is left. */
void
journal_syncer_stop(struct journal *j)
{
	struct journal_syncer *sy = j->syncer;

	if (sy == NULL)
		return;
	pthread_mutex_lock(&sy->lock);
	sy->stop = 1;
	pthread_cond_broadcast(&sy->cond);
	pthread_mutex_unlock(&sy->lock);
	pthread_join(sy->thread, NULL);
	pthread_cond_destroy(&sy->cond);
	pthread_mutex_destroy(&sy->lock);
	if (sy->fd >= 0)
		close(sy->fd);
	free(sy->wal_path);
	free(sy);
	j->syncer = NULL;
}

void
journal_syncer_request(struct journal *j, uint64_t ticket)
{
	struct journal_syncer *sy = j->syncer;

	pthread_mutex_lock(&sy->lock);
	if (ticket > sy->requested)
		sy->requested = ticket;
	pthread_cond_broadcast(&sy->cond);
	pthread_mutex_unlock(&sy->lock);
}

void
journal_sync_listen(struct journal *j, journal_sync_fn fn, void *arg)
{
	struct journal_syncer *sy = j->syncer;
	int i;

	if (sy == NULL)
		return;
	pthread_mutex_lock(&sy->lock);
	for (i = 0; i < JOURNAL_SYNC_LISTENERS; i++) {
		if (fn == NULL && sy->listeners[i].arg == arg)
			sy->listeners[i].fn = NULL;
		else if (fn != NULL && sy->listeners[i].fn == NULL) {
			sy->listeners[i].fn = fn;
			sy->listeners[i].arg = arg;
			break;
		}
	}
	if (fn != NULL && i == JOURNAL_SYNC_LISTENERS)
		abort();	/* raise JOURNAL_SYNC_LISTENERS */
	pthread_mutex_unlock(&sy->lock);
}

void
journal_sync_histogram(struct journal *j, struct metric_histogram *h)
{
	if (j->syncer == NULL)
		return;
	pthread_mutex_lock(&j->syncer->lock);
	j->syncer->latency = h;
	pthread_mutex_unlock(&j->syncer->lock);
}

int
journal_commit_deferred(struct journal *j, uint64_t *ticket, char **cause)
{
	static uint64_t process_ticket;

	j->needs_sync = 0;	/* the caller waits for the ticket instead */
	if (journal_commit(j, cause) != 0)
		return -1;
	if (j->syncer == NULL) {
		*ticket = ++process_ticket;
		return 0;
	}
	*ticket = ++j->syncer->issued;
	journal_syncer_request(j, *ticket);
	return 0;
}

int
journal_sync_after_commit(struct journal *j, char **cause)
{
	uint64_t ticket;

	if (!j->needs_sync || j->syncer == NULL) {
		j->needs_sync = 0;
		return 0;
	}
	j->needs_sync = 0;
	ticket = ++j->syncer->issued;
	journal_syncer_request(j, ticket);
	journal_sync_wait(j, ticket);
	if (atomic_load(&j->syncer->synced) < ticket) {
		*cause = xasprintf("journal commit: %s", journal_lost(j) !=
		    NULL ? journal_lost(j) : "fsync of the WAL failed");
		return -1;
	}
	return 0;
}

uint64_t
journal_synced(struct journal *j, uint64_t *failed_upto)
{
	if (j->syncer == NULL) {
		*failed_upto = 0;
		return UINT64_MAX;
	}
	*failed_upto = atomic_load(&j->syncer->failed);
	return atomic_load(&j->syncer->synced);
}

const char *
journal_lost(struct journal *j)
{
	return atomic_load(&j->lost);
}

void
journal_lose(struct journal *j, const char *why)
{
	struct journal_syncer *sy = j->syncer;
	const char *none = NULL;

	if (!atomic_compare_exchange_strong(&j->lost, &none, why))
		return;
	journal_mark_lost(j, why);
	if (sy != NULL) {
		pthread_mutex_lock(&sy->lock);
		pthread_cond_broadcast(&sy->cond);
		journal_sync_call_listeners(sy);
		pthread_mutex_unlock(&sy->lock);
	}
	journal_lock_notify(j);
}

void
journal_sync_wait(struct journal *j, uint64_t ticket)
{
	struct journal_syncer *sy = j->syncer;

	if (sy == NULL)
		return;
	pthread_mutex_lock(&sy->lock);
	while (atomic_load(&sy->synced) < ticket &&
	    atomic_load(&sy->failed) < ticket)
		pthread_cond_wait(&sy->cond, &sy->lock);
	pthread_mutex_unlock(&sy->lock);
}
