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
 * journal's syncer fsync the WAL for real). Header-only: include it in one
 * test file.
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

#define LOSSY_UNIT	512	/* bytes tracked as one (a sector) */
#define LOSSY_SUFFIX	"/journal.db"

struct lossy_file {
	sqlite3_file	 base;
	sqlite3_file	*real;		/* follows this struct */
	int		 followed;	/* the modelled database file */
};

static struct {
	sqlite3_vfs	 vfs;
	sqlite3_vfs	*real;
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
	int		 syncs_good;
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

static int
lossy_close(sqlite3_file *f)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xClose(p->real);
}

static int
lossy_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xRead(p->real, buf, amt, off);
}

static int
lossy_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct lossy_file *p = (struct lossy_file *)f;
	size_t u, first, last;
	int rc;

	rc = p->real->pMethods->xWrite(p->real, buf, amt, off);
	if (rc != SQLITE_OK || !p->followed || amt <= 0)
		return rc;
	first = (size_t)(off / LOSSY_UNIT);
	last = (size_t)((off + amt - 1) / LOSSY_UNIT);
	pthread_mutex_lock(&lossy.lock);
	lossy_grow(last + 1);
	for (u = first; u <= last; u++) {
		lossy.dirty[u] = 1;
		lossy.dropped[u] = 0;	/* written again: it can reach disk */
	}
	pthread_mutex_unlock(&lossy.lock);
	return rc;
}

static int
lossy_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xTruncate(p->real, size);
}

static int
lossy_sync(sqlite3_file *f, int flags)
{
	struct lossy_file *p = (struct lossy_file *)f;
	unsigned char *now;
	int64_t len, off, n;
	size_t u;
	int rc;

	if (!p->followed)
		return p->real->pMethods->xSync(p->real, flags);
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
	lossy.syncs_good++;
	pthread_mutex_unlock(&lossy.lock);
	return SQLITE_OK;
}

static int
lossy_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xFileSize(p->real, size);
}

static int
lossy_lock(sqlite3_file *f, int level)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xLock(p->real, level);
}

static int
lossy_unlock(sqlite3_file *f, int level)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xUnlock(p->real, level);
}

static int
lossy_check_reserved(sqlite3_file *f, int *out)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xCheckReservedLock(p->real, out);
}

static int
lossy_file_control(sqlite3_file *f, int op, void *arg)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xFileControl(p->real, op, arg);
}

static int
lossy_sector_size(sqlite3_file *f)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xSectorSize(p->real);
}

static int
lossy_device(sqlite3_file *f)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xDeviceCharacteristics(p->real);
}

static int
lossy_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
    void volatile **pp)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xShmMap(p->real, pg, pgsz, extend, pp);
}

static int
lossy_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xShmLock(p->real, offset, n, flags);
}

static void
lossy_shm_barrier(sqlite3_file *f)
{
	struct lossy_file *p = (struct lossy_file *)f;

	p->real->pMethods->xShmBarrier(p->real);
}

static int
lossy_shm_unmap(sqlite3_file *f, int del)
{
	struct lossy_file *p = (struct lossy_file *)f;

	return p->real->pMethods->xShmUnmap(p->real, del);
}

/* No memory-mapped reads: every read goes through xRead. */
static int
lossy_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	*pp = NULL;
	return SQLITE_OK;
}

static int
lossy_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page)
{
	return SQLITE_OK;
}

static const sqlite3_io_methods lossy_methods = {
	3, lossy_close, lossy_read, lossy_write, lossy_truncate, lossy_sync,
	lossy_file_size, lossy_lock, lossy_unlock, lossy_check_reserved,
	lossy_file_control, lossy_sector_size, lossy_device, lossy_shm_map,
	lossy_shm_lock, lossy_shm_barrier, lossy_shm_unmap, lossy_fetch,
	lossy_unfetch,
};

static int
lossy_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *out)
{
	struct lossy_file *p = (struct lossy_file *)f;
	size_t nlen, slen = strlen(LOSSY_SUFFIX);
	int64_t len;
	int rc;

	(void)vfs;
	p->real = (sqlite3_file *)(p + 1);
	rc = lossy.real->xOpen(lossy.real, name, p->real, flags, out);
	if (rc != SQLITE_OK) {
		p->base.pMethods = NULL;
		return rc;
	}
	p->base.pMethods = &lossy_methods;
	nlen = name != NULL ? strlen(name) : 0;
	p->followed = (flags & SQLITE_OPEN_MAIN_DB) && nlen > slen &&
	    strcmp(name + nlen - slen, LOSSY_SUFFIX) == 0;
	if (!p->followed)
		return SQLITE_OK;
	pthread_mutex_lock(&lossy.lock);
	if (!lossy.have_disk) {	/* what is on disk when we start */
		lossy.path = strdup(name);
		lossy.disk = lossy_read_all(p->real, &len);
		lossy.disk_len = len;
		lossy.have_disk = 1;
	}
	pthread_mutex_unlock(&lossy.lock);
	return SQLITE_OK;
}

/* Become SQLite's default VFS (before the journal is opened). */
static void
lossy_install(void)
{
	lossy.real = sqlite3_vfs_find(NULL);
	if (lossy.real == NULL)
		abort();
	lossy.vfs = *lossy.real;
	lossy.vfs.zName = "payhook-lossy";
	lossy.vfs.szOsFile = (int)sizeof(struct lossy_file) +
	    lossy.real->szOsFile;
	lossy.vfs.xOpen = lossy_open;
	lossy.vfs.pNext = NULL;
	if (sqlite3_vfs_register(&lossy.vfs, 1) != SQLITE_OK)
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

	sqlite3_vfs_unregister(&lossy.vfs);
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
