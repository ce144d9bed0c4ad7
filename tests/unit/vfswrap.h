/*
 * vfswrap.h: a SQLite VFS over the default one, for the journal tests. It
 * passes every call through and lets a test watch the main database files
 * (not the WAL): it hears of each write to one and may take over its sync.
 * Header-only; one wrapper per test program at a time (vfswrap_install
 * makes it SQLite's default, vfswrap_uninstall undoes that).
 */
#ifndef PAYHOOK_TEST_VFSWRAP_H
#define PAYHOOK_TEST_VFSWRAP_H

#include <string.h>

#include <sqlite3.h>

struct vfswrap_file {
	sqlite3_file	 base;
	sqlite3_file	*real;		/* follows this struct */
	int		 main_db;	/* a main database file: watched */
};

/* Each may be NULL; they are called for main database files only. */
struct vfswrap_hooks {
	/* After one was opened (name as SQLite gave it). */
	void	(*opened)(struct vfswrap_file *, const char *name);
	/* After a write to one succeeded. */
	void	(*wrote)(struct vfswrap_file *, sqlite3_int64 off, int amt);
	/* Instead of its xSync: sync f->real to really sync it. */
	int	(*sync)(struct vfswrap_file *, int flags);
};

static struct {
	sqlite3_vfs		 vfs;
	sqlite3_vfs		*base;
	struct vfswrap_hooks	 hooks;
} vfswrap;

#define VFSWRAP_REAL(f)	(((struct vfswrap_file *)(f))->real)

static int
vfswrap_close(sqlite3_file *f)
{
	return VFSWRAP_REAL(f)->pMethods->xClose(VFSWRAP_REAL(f));
}

static int
vfswrap_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	return VFSWRAP_REAL(f)->pMethods->xRead(VFSWRAP_REAL(f), buf, amt,
	    off);
}

static int
vfswrap_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct vfswrap_file *p = (struct vfswrap_file *)f;
	int rc;

	rc = p->real->pMethods->xWrite(p->real, buf, amt, off);
	if (rc == SQLITE_OK && p->main_db && vfswrap.hooks.wrote != NULL)
		vfswrap.hooks.wrote(p, off, amt);
	return rc;
}

static int
vfswrap_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return VFSWRAP_REAL(f)->pMethods->xTruncate(VFSWRAP_REAL(f), size);
}

static int
vfswrap_sync(sqlite3_file *f, int flags)
{
	struct vfswrap_file *p = (struct vfswrap_file *)f;

	if (p->main_db && vfswrap.hooks.sync != NULL)
		return vfswrap.hooks.sync(p, flags);
	return p->real->pMethods->xSync(p->real, flags);
}

static int
vfswrap_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return VFSWRAP_REAL(f)->pMethods->xFileSize(VFSWRAP_REAL(f), size);
}

static int
vfswrap_lock(sqlite3_file *f, int level)
{
	return VFSWRAP_REAL(f)->pMethods->xLock(VFSWRAP_REAL(f), level);
}

static int
vfswrap_unlock(sqlite3_file *f, int level)
{
	return VFSWRAP_REAL(f)->pMethods->xUnlock(VFSWRAP_REAL(f), level);
}

static int
vfswrap_check_reserved(sqlite3_file *f, int *out)
{
	return VFSWRAP_REAL(f)->pMethods->xCheckReservedLock(VFSWRAP_REAL(f),
	    out);
}

static int
vfswrap_file_control(sqlite3_file *f, int op, void *arg)
{
	return VFSWRAP_REAL(f)->pMethods->xFileControl(VFSWRAP_REAL(f), op,
	    arg);
}

static int
vfswrap_sector_size(sqlite3_file *f)
{
	return VFSWRAP_REAL(f)->pMethods->xSectorSize(VFSWRAP_REAL(f));
}

static int
vfswrap_device(sqlite3_file *f)
{
	return VFSWRAP_REAL(f)->pMethods->xDeviceCharacteristics(
	    VFSWRAP_REAL(f));
}

static int
vfswrap_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
    void volatile **pp)
{
	return VFSWRAP_REAL(f)->pMethods->xShmMap(VFSWRAP_REAL(f), pg, pgsz,
	    extend, pp);
}

static int
vfswrap_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return VFSWRAP_REAL(f)->pMethods->xShmLock(VFSWRAP_REAL(f), offset, n,
	    flags);
}

static void
vfswrap_shm_barrier(sqlite3_file *f)
{
	VFSWRAP_REAL(f)->pMethods->xShmBarrier(VFSWRAP_REAL(f));
}

static int
vfswrap_shm_unmap(sqlite3_file *f, int del)
{
	return VFSWRAP_REAL(f)->pMethods->xShmUnmap(VFSWRAP_REAL(f), del);
}

static int
vfswrap_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	return VFSWRAP_REAL(f)->pMethods->xFetch(VFSWRAP_REAL(f), off, amt,
	    pp);
}

static int
vfswrap_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page)
{
	return VFSWRAP_REAL(f)->pMethods->xUnfetch(VFSWRAP_REAL(f), off,
	    page);
}

static const sqlite3_io_methods vfswrap_methods = {
	3, vfswrap_close, vfswrap_read, vfswrap_write, vfswrap_truncate,
	vfswrap_sync, vfswrap_file_size, vfswrap_lock, vfswrap_unlock,
	vfswrap_check_reserved, vfswrap_file_control, vfswrap_sector_size,
	vfswrap_device, vfswrap_shm_map, vfswrap_shm_lock, vfswrap_shm_barrier,
	vfswrap_shm_unmap, vfswrap_fetch, vfswrap_unfetch,
};

static int
vfswrap_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *out)
{
	struct vfswrap_file *p = (struct vfswrap_file *)f;
	int rc;

	(void)vfs;
	p->real = (sqlite3_file *)(p + 1);
	p->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
	rc = vfswrap.base->xOpen(vfswrap.base, name, p->real, flags, out);
	/* No methods: SQLite calls no xClose after a failed open. */
	p->base.pMethods = rc == SQLITE_OK ? &vfswrap_methods : NULL;
	if (rc == SQLITE_OK && p->main_db && vfswrap.hooks.opened != NULL)
		vfswrap.hooks.opened(p, name);
	return rc;
}

/* Become SQLite's default VFS with these hooks; SQLITE_OK or an error. */
static int
vfswrap_install(const struct vfswrap_hooks *hooks)
{
	if ((vfswrap.base = sqlite3_vfs_find(NULL)) == NULL)
		return SQLITE_ERROR;
	vfswrap.hooks = *hooks;
	vfswrap.vfs = *vfswrap.base;
	vfswrap.vfs.zName = "payhook-test-wrap";
	vfswrap.vfs.szOsFile = (int)sizeof(struct vfswrap_file) +
	    vfswrap.base->szOsFile;
	vfswrap.vfs.xOpen = vfswrap_open;
	vfswrap.vfs.pNext = NULL;
	return sqlite3_vfs_register(&vfswrap.vfs, 1);
}

static int
vfswrap_uninstall(void)
{
	return sqlite3_vfs_unregister(&vfswrap.vfs);
}

#endif
