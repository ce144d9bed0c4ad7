/*
 * lossydisk.h: a SQLite VFS for the journal tests that models how Linux
 * loses writes when an fsync fails. It wraps the default VFS and follows
 * one file, the journal's database (".../journal.db"):
 * - what the disk holds of it is the content as of its last good sync;
 * - after lossy_fail_next_sync(), the next sync of it fails with EIO
 *   (SQLITE_IOERR_FSYNC) and what was written since the last good sync is
 *   dropped for good: the kernel marks those pages clean without writing
 *   them, so later syncs report success without ever writing them. Only
 *   a new write of the same bytes gets them to disk again;
 * - lossy_power_cut() puts the disk's content back into the file, as the
 *   machine would find it after a power cut (call it with every connection
 *   closed).
 * The WAL and everything else pass through untouched (the tests have the
 * journal's syncer fsync the WAL for real). Built on vfswrap.h: every main
 * database file opened is taken to be that one. Header-only: include it in
 * one test file.
 */
#ifndef PAYHOOK_TEST_LOSSYDISK_H
#define PAYHOOK_TEST_LOSSYDISK_H

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "vfswrap.h"

#define LOSSY_UNIT	512	/* bytes tracked as one (a sector) */

static struct {
	pthread_mutex_t	 lock;
	char		*path;
	unsigned char	*disk;		/* on disk, as of the last good sync */
	int64_t		 disk_len;
	int		 have_disk;
	unsigned char	*dirty;		/* per unit: written since that sync */
	unsigned char	*dropped;	/* per unit: lost by a failed sync */
	size_t		 nunits;
	int		 fail_next;
	int		 syncs_failed;
} lossy = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
lossy_grow(size_t units)
{
	if (units <= lossy.nunits)
		return;
	lossy.dirty = realloc(lossy.dirty, units);
	lossy.dropped = realloc(lossy.dropped, units);
	if (lossy.dirty == NULL || lossy.dropped == NULL)
		abort();
	memset(lossy.dirty + lossy.nunits, 0, units - lossy.nunits);
	memset(lossy.dropped + lossy.nunits, 0, units - lossy.nunits);
	lossy.nunits = units;
}

/* The file's whole content through the real file (lock held). */
static unsigned char *
lossy_read_all(sqlite3_file *real, int64_t *len)
{
	sqlite3_int64 size = 0;
	unsigned char *buf;

	if (real->pMethods->xFileSize(real, &size) != SQLITE_OK)
		abort();
	buf = calloc(1, size > 0 ? (size_t)size : 1);
	if (buf == NULL || (size > 0 && real->pMethods->xRead(real, buf,
	    (int)size, 0) != SQLITE_OK))
		abort();
	*len = size;
	return buf;
}

/* vfswrap's hook: what was written since the last good sync. */
static void
lossy_wrote(struct vfswrap_file *p, sqlite3_int64 off, int amt)
{
	size_t u, first, last;

	(void)p;
	if (amt <= 0)
		return;
	first = (size_t)(off / LOSSY_UNIT);
	last = (size_t)((off + amt - 1) / LOSSY_UNIT);
	pthread_mutex_lock(&lossy.lock);
	lossy_grow(last + 1);
	for (u = first; u <= last; u++) {
		lossy.dirty[u] = 1;
		lossy.dropped[u] = 0;	/* written again: it can reach disk */
	}
	pthread_mutex_unlock(&lossy.lock);
}

/* vfswrap's hook: the sync that fails once, and what a good one keeps. */
static int
lossy_sync(struct vfswrap_file *p, int flags)
{
	unsigned char *now;
	int64_t len, off, n;
	size_t u;
	int rc;

	pthread_mutex_lock(&lossy.lock);
	if (lossy.fail_next) {
		lossy.fail_next = 0;
		lossy.syncs_failed++;
		for (u = 0; u < lossy.nunits; u++) {
			if (lossy.dirty[u])
				lossy.dropped[u] = 1;
			lossy.dirty[u] = 0;
		}
		pthread_mutex_unlock(&lossy.lock);
		return SQLITE_IOERR_FSYNC;
	}
	if ((rc = p->real->pMethods->xSync(p->real, flags)) != SQLITE_OK) {
		pthread_mutex_unlock(&lossy.lock);
		return rc;
	}
	/* Everything reaches the disk but the dropped units. */
	now = lossy_read_all(p->real, &len);
	lossy_grow((size_t)((len + LOSSY_UNIT - 1) / LOSSY_UNIT));
	for (u = 0; u < lossy.nunits; u++) {
		off = (int64_t)u * LOSSY_UNIT;
		if (!lossy.dropped[u] || off >= len)
			continue;
		n = len - off < LOSSY_UNIT ? len - off : LOSSY_UNIT;
		if (off >= lossy.disk_len)
			memset(now + off, 0, (size_t)n);
		else {
			if (n > lossy.disk_len - off)
				n = lossy.disk_len - off;
			memcpy(now + off, lossy.disk + off, (size_t)n);
		}
	}
	free(lossy.disk);
	lossy.disk = now;
	lossy.disk_len = len;
	memset(lossy.dirty, 0, lossy.nunits);
	pthread_mutex_unlock(&lossy.lock);
	return SQLITE_OK;
}

/* vfswrap's hook: what is on disk when we start. */
static void
lossy_opened(struct vfswrap_file *p, const char *name)
{
	int64_t len;

	pthread_mutex_lock(&lossy.lock);
	if (!lossy.have_disk) {
		lossy.path = strdup(name);
		lossy.disk = lossy_read_all(p->real, &len);
		lossy.disk_len = len;
		lossy.have_disk = 1;
	}
	pthread_mutex_unlock(&lossy.lock);
}

/* Become SQLite's default VFS (before the journal is opened). */
static void
lossy_install(void)
{
	static const struct vfswrap_hooks hooks = {
		lossy_opened, lossy_wrote, lossy_sync,
	};

	if (vfswrap_install(&hooks) != SQLITE_OK)
		abort();
}

/* The next sync of the database file fails and drops what it owed. */
static void
lossy_fail_next_sync(void)
{
	pthread_mutex_lock(&lossy.lock);
	lossy.fail_next = 1;
	pthread_mutex_unlock(&lossy.lock);
}

static int
lossy_syncs_failed(void)
{
	int n;

	pthread_mutex_lock(&lossy.lock);
	n = lossy.syncs_failed;
	pthread_mutex_unlock(&lossy.lock);
	return n;
}

/* Leave the database file as the disk holds it and stop modelling it
 * (every connection must be closed). 0, or -1 if it could not. */
static int
lossy_power_cut(void)
{
	int fd, ok;

	vfswrap_uninstall();
	if (!lossy.have_disk)
		return -1;
	fd = open(lossy.path, O_WRONLY);
	ok = fd >= 0 && ftruncate(fd, lossy.disk_len) == 0 &&
	    (lossy.disk_len == 0 || pwrite(fd, lossy.disk,
	    (size_t)lossy.disk_len, 0) == lossy.disk_len) && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	free(lossy.path);
	free(lossy.disk);
	free(lossy.dirty);
	free(lossy.dropped);
	lossy.path = NULL;
	lossy.disk = NULL;
	lossy.dirty = lossy.dropped = NULL;
	lossy.nunits = 0;
	lossy.have_disk = 0;
	return ok ? 0 : -1;
}

#endif
