/*
 * journal_admin.c: operator access to the journal for `payhook journal`:
 * counts, listings, one row, re-driving a quarantined row and an online
 * backup (SQLite backup API), on its own connection beside a running
 * `payhook serve` (the command's only thread); and the status page's read
 * of the newest events (the service's main thread). Every write is one
 * short transaction that never fsyncs while it holds the write lock (the
 * service's commits wait only 25 ms for it); nothing here prints a body.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

#define JA_BUSY_MS		5000	/* an operator may wait a little */

/* journal_pipeline.c's JOURNAL_ROW_COLUMNS with the bodies' lengths, not
 * the bodies: journal_load_row(..., 1) reads them. */
#define JA_ROW_COLUMNS							\
	"id, state, message_id, event_type, resource_id, occurred_ms,"	\
	" received_ms, secret_index, length(body), quarantine_reason,"	\
	" check_attempts, next_check_ms, last_error, verdict, mismatches,"\
	" api_status, length(api_body), checked_ms, seq"

struct journal_admin {
	sqlite3		*db;
	char		*path;
	char		*dir;
	int		 lost;		/* lost, not recovered: read alone */
};

static void
ja_cause(char **cause, sqlite3 *db, const char *what)
{
	*cause = xasprintf("%s: %s", what, sqlite3_errmsg(db));
}

/* One integer from a one-row query; NULL (or no row) reads as dflt. */
static int
ja_int(sqlite3 *db, const char *sql, int64_t dflt, int64_t *out,
    char **cause)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*out = dflt;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		ja_cause(cause, db, sql);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*out = sqlite3_column_int64(st, 0);
	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		ja_cause(cause, db, sql);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

static int
ja_exec(sqlite3 *db, const char *sql, char **cause)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		ja_cause(cause, db, sql);
		return -1;
	}
	return 0;
}

/* A payhook journal of exactly the schema this build writes. */
static int
ja_check_schema(sqlite3 *db, const char *path, char **cause)
{
	int64_t app_id, version;

	if (ja_int(db, "PRAGMA application_id", 0, &app_id, cause) != 0 ||
	    ja_int(db, "PRAGMA user_version", 0, &version, cause) != 0)
		return -1;
	if (app_id != JOURNAL_APP_ID) {
		*cause = xasprintf("%s is not a payhook journal", path);
		return -1;
	}
	if (version > journal_schema_version()) {
		*cause = xasprintf("%s has schema version %lld, newer than this "
		    "payhook knows (%d): use the payhook that wrote it", path,
		    (long long)version, journal_schema_version());
		return -1;
	}
	if (version < journal_schema_version()) {
		*cause = xasprintf("%s has schema version %lld; this payhook "
		    "writes %d: start `payhook serve` once to migrate it",
		    path, (long long)version, journal_schema_version());
		return -1;
	}
	return 0;
}

/*
 * A lost journal not yet recovered (journal_recover_lost): read it alone,
 * with a WAL index of this connection's own built from the WAL's first
 * frame (exclusive locking set before the first read). Changes wait for
 * payhook serve's recovery.
 */
static int
ja_open_lost(struct journal_admin *ja, int writable, char **cause)
{
	int rc;

	if (writable) {
		*cause = xasprintf("%s was lost by payhook serve (%s/%s is "
		    "there): start payhook serve on a working disk to recover "
		    "it first", ja->path, ja->dir, JOURNAL_LOST_FILE);
		return -1;
	}
	if (ja_exec(ja->db, "PRAGMA locking_mode = EXCLUSIVE", cause) != 0)
		return -1;
	if ((rc = journal_lost_first_read(ja->db, cause)) == 1) {
		sqlite3_close(ja->db);	/* first: see journal_lost_holder */
		ja->db = NULL;
		*cause = journal_lost_busy_cause(ja->path);
	}
	if (rc != 0)
		return -1;
	ja->lost = 1;
	return 0;
}

struct journal_admin *
journal_admin_open(const char *dir, int writable, char **cause)
{
	struct journal_admin *ja;
	struct stat sb;
	int flags;

	ja = xcalloc(1, sizeof *ja);
	ja->dir = xstrdup(dir);
	ja->path = xasprintf("%s/%s", dir, JOURNAL_FILE);
	/* Never create a journal: a typo in the path must not look empty. */
	if (stat(ja->path, &sb) != 0) {
		*cause = xasprintf("no journal at %s: %s", ja->path,
		    strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		*cause = xasprintf("%s is not a regular file", ja->path);
		goto fail;
	}
	/* Read-write even to read: a WAL reader needs the -shm file, and
	 * SQLite run as root gives files it creates the database's owner. */
	journal_sqlite_setup();
	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
	if (sqlite3_open_v2(ja->path, &ja->db, flags, NULL) != SQLITE_OK) {
		*cause = xasprintf("cannot open %s: %s", ja->path,
		    ja->db != NULL ? sqlite3_errmsg(ja->db) : "out of memory");
		goto fail;
	}
	/* payhook serve does every checkpoint: a tool that had the journal
	 * open when serve lost it must not copy part of it at close (see
	 * journal_lost.c), nor one that closes last move the WAL at all. */
	if (sqlite3_busy_timeout(ja->db, JA_BUSY_MS) != SQLITE_OK ||
	    sqlite3_db_config(ja->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
	    NULL) != SQLITE_OK) {
		ja_cause(cause, ja->db, "connection setup");
		goto fail;
	}
	if (journal_lost_marked(dir) && ja_open_lost(ja, writable, cause) != 0)
		goto fail;
	if (ja_check_schema(ja->db, ja->path, cause) != 0)
		goto fail;
	if (!writable && ja_exec(ja->db, "PRAGMA query_only = 1", cause) != 0)
		goto fail;
	return ja;
fail:
	journal_admin_free(ja);
	return NULL;
}

void
journal_admin_free(struct journal_admin *ja)
{
	if (ja == NULL)
		return;
	if (ja->db != NULL)
		sqlite3_close(ja->db);	/* nothing prepared is left open */
	free(ja->path);
	free(ja->dir);
	free(ja);
}

const char *
journal_admin_path(const struct journal_admin *ja)
{
	return ja->path;
}

int
journal_admin_lost(const struct journal_admin *ja)
{
	return ja->lost;
}

static int64_t
ja_file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* The counts in one read transaction, so they add up. */
static int
ja_status_read(struct journal_admin *ja, struct journal_status *s,
    char **cause)
{
	static const char *count_sql[JOURNAL_NSTATES] = {
		"SELECT count(*) FROM webhooks WHERE state IN"
		" ('received','checked') AND state = 'received'",
		"SELECT count(*) FROM webhooks WHERE state IN"
		" ('received','checked') AND state = 'checked'",
		"SELECT count(*) FROM webhooks WHERE state = 'published'",
		"SELECT count(*) FROM webhooks WHERE state = 'quarantined'",
	};
	int i;

	for (i = 0; i < JOURNAL_NSTATES; i++) {
		if (ja_int(ja->db, count_sql[i], 0, &s->counts[i], cause) != 0)
			return -1;
	}
	return ja_int(ja->db, "SELECT coalesce((SELECT seq FROM"
	    " sqlite_sequence WHERE name = 'events'), 0)", 0, &s->head_seq,
	    cause) != 0 ||
	    ja_int(ja->db, "SELECT upto FROM events_sent", 0,
	    &s->published_seq, cause) != 0 ||
	    ja_int(ja->db, "SELECT count(*) FROM events WHERE seq > coalesce("
	    "(SELECT upto FROM events_sent), 0)", 0, &s->unsent_events,
	    cause) != 0 ||
	    ja_int(ja->db, "SELECT min(received_ms) FROM webhooks WHERE state"
	    " IN ('received','checked')", 0, &s->oldest_pending_ms,
	    cause) != 0 ||
	    ja_int(ja->db, "SELECT count(*) FROM webhooks WHERE state ="
	    " 'quarantined' AND seq IS NULL", 0, &s->quarantined_unalerted,
	    cause) != 0 ||
	    ja_int(ja->db, "SELECT count(*) FROM webhooks WHERE state ="
	    " 'received' AND last_error IS NOT NULL", 0, &s->check_errors,
	    cause) != 0 ? -1 : 0;
}

int
journal_admin_status(struct journal_admin *ja, struct journal_status *s,
    char **cause)
{
	char *wal;
	int ret;

	memset(s, 0, sizeof *s);
	s->schema_version = journal_schema_version();
	s->db_bytes = ja_file_size(ja->path);
	wal = xasprintf("%s-wal", ja->path);
	s->wal_bytes = ja_file_size(wal);
	free(wal);
	if (ja_exec(ja->db, "BEGIN", cause) != 0)
		return -1;
	ret = ja_status_read(ja, s, cause);
	if (sqlite3_exec(ja->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK &&
	    ret == 0) {
		ja_cause(cause, ja->db, "status commit");
		ret = -1;
	}
	return ret;
}

static void
ja_col_copy(sqlite3_stmt *st, int col, char *buf, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	xsnprintf(buf, len, "%s", t != NULL ? (const char *)t : "");
}

int
journal_admin_list(struct journal_admin *ja, enum journal_admin_list which,
    size_t max, struct journal_row **rows, size_t *n, char **cause)
{
	static const char *sql[] = {
		[JOURNAL_LIST_PENDING] = "SELECT " JA_ROW_COLUMNS " FROM"
		    " webhooks WHERE state IN ('received','checked')"
		    " ORDER BY id LIMIT ?1",
		[JOURNAL_LIST_QUARANTINED] = "SELECT " JA_ROW_COLUMNS " FROM"
		    " webhooks WHERE state = 'quarantined'"
		    " ORDER BY received_ms DESC, id DESC LIMIT ?1",
		[JOURNAL_LIST_ERRORS] = "SELECT " JA_ROW_COLUMNS " FROM"
		    " webhooks WHERE state = 'received' AND last_error IS NOT"
		    " NULL ORDER BY next_check_ms DESC, id DESC LIMIT ?1",
	};
	struct journal_row *out = NULL;
	sqlite3_stmt *st = NULL;
	size_t have = 0;
	int rc = SQLITE_DONE;

	*rows = NULL;
	*n = 0;
	if ((int)which < 0 || (size_t)which >= UTIL_ARRAY_LEN(sql)) {
		*cause = xstrdup("unknown listing");
		return -1;
	}
	if (sqlite3_prepare_v2(ja->db, sql[which], -1, &st, NULL) !=
	    SQLITE_OK || sqlite3_bind_int64(st, 1, (sqlite3_int64)max) !=
	    SQLITE_OK) {
		ja_cause(cause, ja->db, "list rows");
		sqlite3_finalize(st);
		return -1;
	}
	if (max > 0)
		out = xcalloc(max, sizeof *out);
	while (have < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
		journal_load_row(st, &out[have++], 1);
	if (have < max && rc != SQLITE_DONE) {
		ja_cause(cause, ja->db, "list rows");
		sqlite3_finalize(st);
		journal_rows_free(out, have);
		return -1;
	}
	sqlite3_finalize(st);
	*rows = out;
	*n = have;
	return 0;
}

/* Copy a BLOB column, NUL-terminated, into *out (NULL when SQL NULL). */
static void
ja_blob_dup(sqlite3_stmt *st, int col, char **out, size_t *len)
{
	const void *p;
	size_t n;

	*out = NULL;
	*len = 0;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return;
	p = sqlite3_column_blob(st, col);
	n = (size_t)sqlite3_column_bytes(st, col);
	*out = xmalloc(n + 1);
	if (n > 0)
		memcpy(*out, p, n);
	(*out)[n] = '\0';
	*len = n;
}

int
journal_admin_get(struct journal_admin *ja, const char *key, int bodies,
    struct journal_row *row, int *found, char **cause)
{
	sqlite3_stmt *st = NULL;
	int64_t id = -1;
	int rc;

	*found = 0;
	/* A message id first; all digits may also be a row id. */
	if (util_parse_int64(key, 1, INT64_MAX, &id) != 0)
		id = -1;
	if (sqlite3_prepare_v2(ja->db, "SELECT " JA_ROW_COLUMNS ", body,"
	    " api_body FROM webhooks WHERE message_id = ?1 OR id = ?2"
	    " ORDER BY message_id = ?1 DESC LIMIT 1", -1, &st, NULL) !=
	    SQLITE_OK ||
	    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, id) != SQLITE_OK) {
		ja_cause(cause, ja->db, "get row");
		sqlite3_finalize(st);
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*found = 1;
		journal_load_row(st, row, 1);
		if (bodies) {
			ja_blob_dup(st, 19, &row->body, &row->body_len);
			ja_blob_dup(st, 20, &row->api_body, &row->api_body_len);
		}
	} else if (rc != SQLITE_DONE) {
		ja_cause(cause, ja->db, "get row");
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

/* ---- re-drive -------------------------------------------------------- */

/* What the row looks like inside the write transaction. */
static enum journal_redrive_result
ja_redrive_check(struct journal_admin *ja, int64_t id, const char *old_key,
    const char *new_key, char *why, size_t whylen, char **cause)
{
	sqlite3_stmt *st = NULL;
	enum journal_redrive_result ret = JOURNAL_REDRIVE_ERROR;
	int rc;

	if (sqlite3_prepare_v2(ja->db, "SELECT state, message_id, seq"
	    " FROM webhooks WHERE id = ?1", -1, &st, NULL) !=
	    SQLITE_OK || sqlite3_bind_int64(st, 1, id) != SQLITE_OK)
		goto sqlerr;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		xsnprintf(why, whylen, "row %lld is not in the journal (pruned?)",
		    (long long)id);
		ret = JOURNAL_REDRIVE_REFUSED;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto sqlerr;
	if (strcmp((const char *)sqlite3_column_text(st, 0),
	    "quarantined") != 0 ||
	    strcmp((const char *)sqlite3_column_text(st, 1), old_key) != 0) {
		xsnprintf(why, whylen, "row %lld is no longer the quarantined "
		    "row read (state %s)", (long long)id,
		    (const char *)sqlite3_column_text(st, 0));
		ret = JOURNAL_REDRIVE_REFUSED;
		goto out;
	}
	/* Until its alert.quarantined has a seq, the publisher may be
	 * normalising the row to give it one (and would set that seq on the
	 * re-driven row): wait for the alert. */
	if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
		xsnprintf(why, whylen, "row %lld's alert.quarantined event is "
		    "not stored yet; try again when the service has published "
		    "it", (long long)id);
		ret = JOURNAL_REDRIVE_REFUSED;
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(ja->db, "SELECT id, state FROM webhooks"
	    " WHERE message_id = ?1", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, new_key, -1, SQLITE_STATIC) != SQLITE_OK)
		goto sqlerr;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		xsnprintf(why, whylen, "webhook_message_id %s is already in "
		    "the journal (row %lld, %s): GOV.UK Pay redelivered it "
		    "and it was accepted; nothing to re-drive", new_key,
		    (long long)sqlite3_column_int64(st, 0),
		    (const char *)sqlite3_column_text(st, 1));
		ret = JOURNAL_REDRIVE_DUPLICATE;
		goto out;
	}
	if (rc != SQLITE_DONE)
		goto sqlerr;
	ret = JOURNAL_REDRIVE_OK;
	goto out;
sqlerr:
	ja_cause(cause, ja->db, "re-drive check");
out:
	sqlite3_finalize(st);
	return ret;
}

static int
ja_redrive_update(struct journal_admin *ja, int64_t id,
    const struct journal_entry *e, const char *old_key, int64_t now_ms,
    char **cause)
{
	sqlite3_stmt *st = NULL;
	char when[32];
	char *note;
	int ok;

	util_format_time_ms(now_ms, when, sizeof when);
	note = xasprintf("re-driven at %s (was %.18s)", when, old_key);
	ok = sqlite3_prepare_v2(ja->db, "UPDATE webhooks SET"
	    " state = 'received', message_id = ?2, event_type = ?3,"
	    " resource_id = ?4, occurred_ms = ?5,"
	    " quarantine_reason = ?6 || ': ' || coalesce(quarantine_reason,"
	    " ''), seq = NULL, published_ms = NULL, check_attempts = 0,"
	    " next_check_ms = 0, last_error = NULL, verdict = NULL,"
	    " mismatches = NULL, api_status = NULL, api_body = NULL,"
	    " checked_ms = NULL WHERE id = ?1 AND state = 'quarantined'", -1,
	    &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_int64(st, 1, id) == SQLITE_OK &&
	    sqlite3_bind_text(st, 2, e->message_id, -1, SQLITE_STATIC) ==
	    SQLITE_OK &&
	    sqlite3_bind_text(st, 3, e->event_type, -1, SQLITE_STATIC) ==
	    SQLITE_OK &&
	    sqlite3_bind_text(st, 4, e->resource_id, -1, SQLITE_STATIC) ==
	    SQLITE_OK &&
	    (e->occurred_ms != 0 ? sqlite3_bind_int64(st, 5, e->occurred_ms) :
	    sqlite3_bind_null(st, 5)) == SQLITE_OK &&
	    sqlite3_bind_text(st, 6, note, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		ja_cause(cause, ja->db, "re-drive update");
	else if (sqlite3_changes(ja->db) != 1) {
		*cause = xasprintf("re-drive update: row %lld changed",
		    (long long)id);
		ok = 0;
	}
	sqlite3_finalize(st);
	free(note);
	return ok ? 0 : -1;
}

/* Make the commit durable outside the write lock, as the service's syncer
 * does: fdatasync the WAL (synchronous = NORMAL skipped it). */
static int
ja_sync_wal(struct journal_admin *ja, char **cause)
{
	char *wal = xasprintf("%s-wal", ja->path);
	int fd, ret = -1;

	fd = open(wal, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT)	/* checkpointed and reset */
		ret = 0;
	else if (fd == -1 || fdatasync(fd) != 0)
		*cause = xasprintf("fdatasync %s: %s", wal, strerror(errno));
	else
		ret = 0;
	if (fd != -1)
		close(fd);
	free(wal);
	return ret;
}

enum journal_redrive_result
journal_admin_redrive(struct journal_admin *ja, int64_t id,
    const char *old_key, const struct journal_entry *e, int64_t now_ms,
    char *why, size_t whylen, char **cause)
{
	enum journal_redrive_result ret;

	*why = '\0';
	if (ja_exec(ja->db, "PRAGMA synchronous = NORMAL", cause) != 0 ||
	    ja_exec(ja->db, "BEGIN IMMEDIATE", cause) != 0)
		return JOURNAL_REDRIVE_ERROR;
	ret = ja_redrive_check(ja, id, old_key, e->message_id, why, whylen,
	    cause);
	if (ret == JOURNAL_REDRIVE_OK &&
	    ja_redrive_update(ja, id, e, old_key, now_ms, cause) != 0)
		ret = JOURNAL_REDRIVE_ERROR;
	if (ret != JOURNAL_REDRIVE_OK) {
		journal_abort_txn(ja->db, "re-drive");
		return ret;
	}
	if (ja_exec(ja->db, "COMMIT", cause) != 0) {
		journal_abort_txn(ja->db, "re-drive commit");
		return JOURNAL_REDRIVE_ERROR;
	}
	if (ja_sync_wal(ja, cause) != 0)
		return JOURNAL_REDRIVE_ERROR;
	return JOURNAL_REDRIVE_OK;
}

/* ---- backup ---------------------------------------------------------- */

/* Check and describe a finished copy (its own connection). */
static int
ja_backup_verify(sqlite3 *db, struct journal_backup_info *info, char **cause)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *t;
	int rc, ret = -1;

	/* A single self-contained file: no -wal beside it. */
	if (ja_exec(db, "PRAGMA journal_mode = DELETE", cause) != 0)
		return -1;
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
	    SQLITE_OK) {
		ja_cause(cause, db, "integrity_check");
		return -1;
	}
	rc = sqlite3_step(st);
	t = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
	if (t == NULL || strcmp((const char *)t, "ok") != 0) {
		*cause = xasprintf("integrity_check of the copy: %s",
		    t != NULL ? (const char *)t : sqlite3_errmsg(db));
		goto out;
	}
	if (ja_check_schema(db, "the copy", cause) != 0 ||
	    ja_int(db, "SELECT count(*) FROM webhooks", 0, &info->rows,
	    cause) != 0 ||
	    ja_int(db, "SELECT coalesce((SELECT seq FROM sqlite_sequence"
	    " WHERE name = 'events'), 0)", 0, &info->head_seq, cause) != 0)
		goto out;
	ret = 0;
out:
	sqlite3_finalize(st);
	return ret;
}

/* Copy the journal into tmp (an empty 0600 file) in one backup step: one
 * read transaction, so the copy is one consistent snapshot however busy
 * the service is (WAL readers never block its writes). */
static int
ja_backup_copy(struct journal_admin *ja, const char *tmp,
    struct journal_backup_info *info, char **cause)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int rc, ret = -1;

	if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		*cause = xasprintf("cannot open %s: %s", tmp, dst != NULL ?
		    sqlite3_errmsg(dst) : "out of memory");
		goto out;
	}
	if ((b = sqlite3_backup_init(dst, "main", ja->db, "main")) == NULL) {
		ja_cause(cause, dst, "backup init");
		goto out;
	}
	rc = sqlite3_backup_step(b, -1);
	info->pages = sqlite3_backup_pagecount(b);
	if (sqlite3_backup_finish(b) != SQLITE_OK || rc != SQLITE_DONE) {
		*cause = xasprintf("backup: %s", rc != SQLITE_DONE ?
		    sqlite3_errstr(rc) : sqlite3_errmsg(dst));
		goto out;
	}
	if (ja_backup_verify(dst, info, cause) != 0)
		goto out;
	ret = 0;
out:
	if (dst != NULL && sqlite3_close(dst) != SQLITE_OK && ret == 0) {
		*cause = xasprintf("close %s: %s", tmp, sqlite3_errmsg(dst));
		ret = -1;
	}
	return ret;
}

/* fsync path (a file, or a directory). */
static int
ja_fsync_path(const char *path, int dir, char **cause)
{
	int fd, ret = 0;

	fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
	if (fd == -1 || fsync(fd) != 0) {
		*cause = xasprintf("fsync %s: %s", path, strerror(errno));
		ret = -1;
	}
	if (fd != -1)
		close(fd);
	return ret;
}

int
journal_admin_backup(struct journal_admin *ja, const char *dest,
    struct journal_backup_info *info, char **cause)
{
	char *tmp, *slash, *dir;
	int fd, ret = -1;

	memset(info, 0, sizeof *info);
	if (access(dest, F_OK) == 0) {
		*cause = xasprintf("%s already exists; choose a new name", dest);
		return -1;
	}
	tmp = xasprintf("%s.tmp-%ld", dest, (long)getpid());
	dir = xstrdup(dest);
	if ((slash = strrchr(dir, '/')) == NULL) {
		free(dir);
		dir = xstrdup(".");
	} else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	/* 0600: the copy holds the webhook bodies (personal data). */
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1) {
		*cause = xasprintf("cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	close(fd);
	if (ja_backup_copy(ja, tmp, info, cause) != 0 ||
	    ja_fsync_path(tmp, 0, cause) != 0)
		goto out;
	if (link(tmp, dest) != 0) {	/* never replaces an existing file */
		*cause = xasprintf("cannot create %s: %s", dest,
		    strerror(errno));
		goto out;
	}
	if (ja_fsync_path(dir, 1, cause) != 0)
		goto out;
	info->bytes = ja_file_size(dest);
	ret = 0;
out:
	unlink(tmp);
	free(tmp);
	free(dir);
	return ret;
}

/* ---- the service's status page (main thread, write connection) ------- */

int
journal_recent_events(struct journal *j, size_t max,
    struct journal_recent *out, size_t *n, char **cause)
{
	sqlite3_stmt *st = NULL;
	struct journal_recent *e;
	int rc = SQLITE_DONE;

	*n = 0;
	if (j->in_txn || max == 0)	/* a batch is open: skip this once */
		return 0;
	if (sqlite3_prepare_v2(j->db, "SELECT e.seq, e.topic, w.message_id,"
	    " w.event_type, w.resource_id, w.verdict, w.received_ms,"
	    " e.seq <= (SELECT upto FROM events_sent) FROM events e"
	    " LEFT JOIN webhooks w"
	    " ON w.id = e.row_id ORDER BY e.seq DESC LIMIT ?1", -1, &st,
	    NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, (sqlite3_int64)max) != SQLITE_OK) {
		ja_cause(cause, j->db, "recent events");
		sqlite3_finalize(st);
		return -1;
	}
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		e = &out[(*n)++];
		memset(e, 0, sizeof *e);
		e->seq = sqlite3_column_int64(st, 0);
		ja_col_copy(st, 1, e->topic, sizeof e->topic);
		ja_col_copy(st, 2, e->event_id, sizeof e->event_id);
		ja_col_copy(st, 3, e->event_type, sizeof e->event_type);
		ja_col_copy(st, 4, e->payment_id, sizeof e->payment_id);
		ja_col_copy(st, 5, e->verdict, sizeof e->verdict);
		e->received_ms = sqlite3_column_int64(st, 6);
		e->published = sqlite3_column_int(st, 7);
	}
	if (*n < max && rc != SQLITE_DONE) {
		ja_cause(cause, j->db, "recent events");
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}
