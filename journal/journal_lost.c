/*
 * journal_lost.c: the mark a lost journal leaves, and its recovery.
 *
 * A failed fsync loses the journal (journal_lose, journal_sync.c): the WAL
 * is kept whole because it holds the only good copy of pages the disk may
 * have dropped. The next start normally rebuilds SQLite's WAL index from
 * the WAL's first frame and copies all of it (journal_recover_wal). But
 * another program that had the journal open when it was lost (an sqlite3
 * shell, a backup, payhook journal) keeps the shared index alive, and its
 * backfill mark says the frames before it are in the database file, which
 * on disk they may not be. Opened the usual way beside such a program, the
 * journal would share that index: the recovery would copy only the frames
 * past the mark and then reset the WAL. So the loss leaves a mark, and
 * while it is there the journal is recovered (and read) alone.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

/* SQLite's unix VFS: a connection that has the database open in WAL mode
 * holds a read lock on these bytes of the database file (os_unix.c). */
#define JOURNAL_SHARED_FIRST	(0x40000000 + 2)
#define JOURNAL_SHARED_SIZE	510

/*
 * Written once, by the thread that loses the journal. Not synced: it has
 * to outlive only another program that has the journal open, and a crash
 * of the machine ends that program too (the next opener then rebuilds the
 * WAL index from the WAL itself). A failure is logged; the loss stands.
 */
void
journal_mark_lost(struct journal *j, const char *why)
{
	char *path, *text, when[32];
	ssize_t n = -1;
	size_t len;
	int fd, error = 0;

	path = xasprintf("%s%s", j->path, JOURNAL_LOST_SUFFIX);
	util_format_time_ms(util_now_ms(), when, sizeof when);
	text = xasprintf("lost_at=%s reason=\"%s\"\n"
	    "The WAL beside this journal holds data the database file may "
	    "not.\nStart payhook serve on a working disk to recover it; keep "
	    "other programs off\nthe journal until then (docs/journal.md).\n",
	    when, why);
	len = strlen(text);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd != -1) {
		n = write(fd, text, len);
		if (n == -1)
			error = errno;
		close(fd);
	} else
		error = errno;
	if (n != (ssize_t)len)
		log_error("journal_lost_mark_failed", "path=%s error=\"%s\"",
		    path, error != 0 ? strerror(error) : "short write");
	free(text);
	free(path);
}

int
journal_lost_marked(const char *dir)
{
	struct stat st;
	char *path;
	int marked;

	path = xasprintf("%s/%s", dir, JOURNAL_LOST_FILE);
	marked = lstat(path, &st) == 0;
	free(path);
	return marked;
}

/* Another process's lock on the journal, if the kernel names one. Only
 * after this process closed its own connections to the file: closing the
 * descriptor opened here drops every lock the process holds on it. */
static pid_t
journal_lost_holder(const char *path)
{
	struct flock fl;
	pid_t pid = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return 0;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = JOURNAL_SHARED_FIRST;
	fl.l_len = JOURNAL_SHARED_SIZE;
	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
		pid = fl.l_pid;
	close(fd);
	return pid;
}

char *
journal_lost_busy_cause(const char *path)
{
	pid_t pid = journal_lost_holder(path);
	char who[32] = "";

	if (pid > 0)
		xsnprintf(who, sizeof who, " (pid %ld)", (long)pid);
	return xasprintf("another program%s has the journal open: kill it "
	    "(a normal exit would checkpoint the lost journal with its old "
	    "WAL index and delete the WAL); `fuser -v %s` names it", who,
	    path);
}

/* The first read of a connection in exclusive locking mode: 0, 1 when
 * another connection has the journal open (after the busy timeout), or -1
 * and *why. */
int
journal_lost_first_read(sqlite3 *db, char **why)
{
	int rc;

	rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL,
	    NULL);
	if ((rc & 0xff) == SQLITE_BUSY)
		return 1;
	if (rc != SQLITE_OK) {
		journal_cause(why, db, "first read");
		return -1;
	}
	return 0;
}

/*
 * With locking_mode = EXCLUSIVE set before the first read, SQLite keeps
 * the WAL index in this connection's own memory, built from the WAL's
 * first frame (backfill mark 0), and holds the database file's exclusive
 * lock, which it cannot take while any other connection has the journal
 * open (it waits out the 2 s busy timeout). The TRUNCATE checkpoint then
 * copies every frame, syncs the file (synchronous = FULL) and empties the
 * WAL. Whatever fails, the connection closes without a checkpoint and the
 * WAL stays whole. A mark without a WAL is refused: no payhook path loses
 * a journal whose WAL is empty, so another program checkpointed it with
 * the old index and deleted the WAL.
 */
int
journal_recover_lost(const char *dir, char **cause)
{
	char *path, *mark, *wal, *why = NULL;
	struct stat st;
	sqlite3 *db = NULL;
	long long wal_bytes = 0;
	int rc, busy = 0, ret = -1;

	if (!journal_lost_marked(dir))
		return 0;
	path = xasprintf("%s/%s", dir, JOURNAL_FILE);
	mark = xasprintf("%s/%s", dir, JOURNAL_LOST_FILE);
	wal = xasprintf("%s-wal", path);
	if (stat(wal, &st) == 0)
		wal_bytes = (long long)st.st_size;
	log_warn("journal_lost_found", "mark=%s wal_bytes=%lld "
	    "action=recover_alone", mark, wal_bytes);
	if (wal_bytes == 0) {
		why = xasprintf("its WAL is gone: another program checkpointed "
		    "it with an old WAL index, so pages the disk dropped may be "
		    "missing from %s (docs/journal.md, \"If the WAL of a lost "
		    "journal is gone\")", path);
		goto out;
	}
	if (journal_connect(path, &db, &why) != 0 ||
	    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL) !=
	    SQLITE_OK ||
	    journal_exec(db, "PRAGMA locking_mode = EXCLUSIVE",
	    "exclusive locking", &why) != 0)
		goto out;
	if ((rc = journal_lost_first_read(db, &why)) != 0) {
		busy = rc == 1;
		goto out;
	}
	if (journal_exec(db, "PRAGMA synchronous = FULL", "synchronous",
	    &why) != 0)
		goto out;
	if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
	    NULL, NULL) != SQLITE_OK) {
		if (journal_fsync_error(db))
			why = xasprintf("fsync failed again: %s",
			    sqlite3_errmsg(db));
		else
			journal_cause(&why, db, "WAL checkpoint");
		goto out;
	}
	/* Done: the WAL is in the database file, synced, and empty. */
	if (unlink(mark) != 0 && errno != ENOENT) {
		why = xasprintf("the WAL is recovered, but the mark cannot be "
		    "removed (%s): remove it by hand", strerror(errno));
		goto out;
	}
	log_warn("journal_lost_recovered", "wal_bytes=%lld result=synced",
	    wal_bytes);
	ret = 0;
out:
	if (db != NULL && sqlite3_close(db) != SQLITE_OK)
		log_error("journal_close_failed", "connection=recovery "
		    "error=\"%s\"", sqlite3_errmsg(db));
	if (busy)	/* our connection closed: see journal_lost_holder */
		why = journal_lost_busy_cause(path);
	if (ret != 0) {
		*cause = xasprintf("journal %s was lost by an earlier run (%s): "
		    "%s", path, mark, why != NULL ? why : "unknown error");
		free(why);
	}
	free(wal);
	free(mark);
	free(path);
	return ret;
}
