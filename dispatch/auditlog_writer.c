/*
 * auditlog_writer.c: appends events to the audit log (docs/audit.md). On
 * open it locks the directory, re-checks the last file's chain, cuts a torn
 * last line away and resumes after the last complete line; appends are
 * fdatasync'd in batches and rotate by size or UTC day. Runs on the thread
 * that opened it. It never appends past a seq gap, and never reports as
 * held a line that has not been synced.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/auditlog.h"

struct auditlog_writer {
	struct auditlog_writer_config cfg;
	int		 dirfd, lockfd, fd;
	int64_t		 file_no, line_no, size, opened_ms;
	int64_t		 next_seq;
	unsigned char	 last[AUDITLOG_HASH_LEN];	/* hash of the last line */
	int64_t		 pending, first_pending_ms;
	struct auditlog_head synced;
};

/* Recovery's view of the last file. */
struct auditlog_tail {
	struct auditlog_check check;
	int64_t		 torn_offset;	/* -1: none */
	int64_t		 torn_line, torn_len;
	char		*broken;	/* first problem that is not a torn end */
};

static int
auditlog_write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, buf, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
auditlog_tail_problem_cb(void *arg, const struct auditlog_rec *r, int64_t seq,
    const char *what)
{
	struct auditlog_tail *t = arg;

	if (r->torn) {
		t->torn_offset = r->offset;
		t->torn_line = r->line_no;
		t->torn_len = (int64_t)r->len;
		return;
	}
	if (t->broken == NULL)
		t->broken = xasprintf("%s line %lld seq %lld: %s", r->file,
		    (long long)r->line_no, (long long)seq, what);
}

/* Walk file_no alone (its header is trusted to link back). */
static int
auditlog_scan_last(const char *dir, int64_t file_no, struct auditlog_tail *t,
    char **cause)
{
	struct auditlog_reader *r;
	struct auditlog_rec rec;
	int rc;

	memset(t, 0, sizeof *t);
	t->torn_offset = -1;
	auditlog_check_init(&t->check, auditlog_tail_problem_cb, NULL, t);
	t->check.trust_start = 1;
	if ((r = auditlog_reader_open(dir, file_no, cause)) == NULL)
		return -1;
	while ((rc = auditlog_reader_next(r, &rec, cause)) == 1 &&
	    rec.file_no == file_no)
		auditlog_check_rec(&t->check, &rec);
	auditlog_reader_free(r);
	return rc < 0 ? -1 : 0;
}

static char *
auditlog_path(const struct auditlog_writer *w, int64_t file_no)
{
	char name[AUDITLOG_NAME_MAX];

	auditlog_file_name(file_no, name);
	return xasprintf("%s/%s", w->cfg.dir, name);
}

/* Create file_no with its header linking to w->last. */
static int
auditlog_create(struct auditlog_writer *w, int64_t file_no, int64_t next_seq,
    char **cause)
{
	struct auditlog_line l;
	char *path = auditlog_path(w, file_no), *text = NULL;
	size_t len;
	int fd = -1, rc = -1;

	memset(&l, 0, sizeof l);
	l.kind = AUDITLOG_HEADER;
	l.file_no = file_no;
	l.seq = next_seq;
	w->opened_ms = util_now_ms();
	util_format_time_ms(w->opened_ms, l.opened, sizeof l.opened);
	memcpy(l.prev, w->last, AUDITLOG_HASH_LEN);
	text = auditlog_format(&l, &len);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
	    0600)) < 0 || auditlog_write_all(fd, text, len) != 0 ||
	    fdatasync(fd) != 0 || fsync(w->dirfd) != 0) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			(void)unlink(path);
		}
		goto out;
	}
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	w->file_no = file_no;
	w->line_no = 1;
	w->size = (int64_t)len;
	w->next_seq = next_seq;
	memcpy(w->last, l.hash, AUDITLOG_HASH_LEN);
	w->synced.file_no = file_no;
	w->synced.line_no = 1;
	util_hex_encode(l.hash, AUDITLOG_HASH_LEN, w->synced.hash);
	rc = 0;
out:
	free(text);
	free(path);
	return rc;
}

/* Cut the torn end of the last file away, or drop a file with no header. */
static int
auditlog_repair(struct auditlog_writer *w, int64_t file_no,
    const struct auditlog_tail *t, int *dropped, char **cause)
{
	char *path = auditlog_path(w, file_no);
	int fd = -1, rc = -1;

	*dropped = 0;
	if (t->torn_line == 1) {
		/* Created but its header never completed: a crash mid-rotate. */
		log_warn("audit_torn_file_removed", "file=audit-%08lld.jsonl "
		    "bytes=%lld", (long long)file_no, (long long)t->torn_len);
		if (unlink(path) != 0 || fsync(w->dirfd) != 0) {
			*cause = xasprintf("%s: %s", path, strerror(errno));
			goto out;
		}
		*dropped = 1;
		rc = 0;
		goto out;
	}
	log_warn("audit_torn_line_truncated", "file=audit-%08lld.jsonl line=%lld "
	    "bytes=%lld", (long long)file_no, (long long)t->torn_line,
	    (long long)t->torn_len);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 ||
	    ftruncate(fd, (off_t)t->torn_offset) != 0 || fsync(fd) != 0) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

/* Resume after the last complete line of file_no. */
static int
auditlog_resume(struct auditlog_writer *w, int64_t file_no,
    const struct auditlog_tail *t, char **cause)
{
	char *path = auditlog_path(w, file_no);
	struct stat st;
	int64_t ms;

	if ((w->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0 ||
	    fstat(w->fd, &st) != 0) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	w->file_no = file_no;
	w->line_no = t->check.file_lines;
	w->size = (int64_t)st.st_size;
	w->next_seq = t->check.next_seq;
	memcpy(w->last, t->check.prev, AUDITLOG_HASH_LEN);
	w->opened_ms = util_parse_time_ms(t->check.opened,
	    strlen(t->check.opened), &ms) == 0 ? ms : util_now_ms();
	w->synced.seq = t->check.last_seq;
	w->synced.file_no = file_no;
	w->synced.line_no = w->line_no;
	util_hex_encode(w->last, AUDITLOG_HASH_LEN, w->synced.hash);
	return 0;
}

/* Find the last file, check it, repair its torn end, resume. */
static int
auditlog_recover(struct auditlog_writer *w, char **cause)
{
	struct auditlog_tail t;
	int64_t *nums = NULL, last;
	size_t n;
	int dropped, rc = -1;

	for (;;) {
		free(nums);
		if (auditlog_list(w->cfg.dir, &nums, &n, cause) != 0)
			return -1;
		if (n == 0) {
			rc = auditlog_create(w, 1, w->cfg.from > 0 ?
			    w->cfg.from : 1, cause);
			break;
		}
		last = nums[n - 1];
		if (auditlog_scan_last(w->cfg.dir, last, &t, cause) != 0)
			break;
		if (t.broken != NULL) {
			*cause = xasprintf("the log is broken at %s; run "
			    "`payhook audit verify %s`", t.broken, w->cfg.dir);
			free(t.broken);
			break;
		}
		if (t.torn_offset >= 0) {
			if (auditlog_repair(w, last, &t, &dropped, cause) != 0)
				break;
			if (dropped)
				continue;
		}
		if (!t.check.header_ok) {
			*cause = xasprintf("audit-%08lld.jsonl has no valid "
			    "header", (long long)last);
			break;
		}
		rc = auditlog_resume(w, last, &t, cause);
		break;
	}
	free(nums);
	return rc;
}

struct auditlog_writer *
auditlog_writer_open(const struct auditlog_writer_config *cfg, char **cause)
{
	struct auditlog_writer *w = xcalloc(1, sizeof *w);
	char *lock;

	w->cfg = *cfg;
	w->cfg.dir = xstrdup(cfg->dir);
	w->dirfd = w->lockfd = w->fd = -1;
	if (w->cfg.fsync_batch < 1)
		w->cfg.fsync_batch = 1;
	if (util_mkdir_p(w->cfg.dir, cause) != 0)
		goto fail;
	if ((w->dirfd = open(w->cfg.dir, O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0) {
		*cause = xasprintf("%s: %s", w->cfg.dir, strerror(errno));
		goto fail;
	}
	lock = xasprintf("%s/.lock", w->cfg.dir);
	w->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lock);
	if (w->lockfd < 0 || flock(w->lockfd, LOCK_EX | LOCK_NB) != 0) {
		*cause = xasprintf("%s: %s", w->cfg.dir, errno == EWOULDBLOCK ?
		    "another payhook audit is writing this directory" :
		    strerror(errno));
		goto fail;
	}
	if (auditlog_recover(w, cause) != 0)
		goto fail;
	return w;
fail:
	auditlog_writer_free(w);
	return NULL;
}

int64_t
auditlog_writer_next_seq(const struct auditlog_writer *w)
{
	return w->next_seq;
}

int
auditlog_writer_sync(struct auditlog_writer *w, char **cause)
{
	if (w->pending == 0)
		return 0;
	if (fdatasync(w->fd) != 0) {
		*cause = xasprintf("fdatasync audit-%08lld.jsonl: %s",
		    (long long)w->file_no, strerror(errno));
		return -1;
	}
	w->synced.events += w->pending;
	w->synced.seq = w->next_seq - 1;
	w->synced.file_no = w->file_no;
	w->synced.line_no = w->line_no;
	util_hex_encode(w->last, AUDITLOG_HASH_LEN, w->synced.hash);
	w->pending = 0;
	return 0;
}

int
auditlog_writer_tick(struct auditlog_writer *w, char **cause)
{
	if (w->pending > 0 &&
	    util_mono_ms() - w->first_pending_ms >= w->cfg.fsync_ms)
		return auditlog_writer_sync(w, cause);
	return 0;
}

static int
auditlog_rotate_due(const struct auditlog_writer *w, size_t len)
{
	if (w->line_no < 2)
		return 0;		/* never rotate a file without events */
	if (w->cfg.rotate_bytes > 0 &&
	    w->size + (int64_t)len > w->cfg.rotate_bytes)
		return 1;
	return w->cfg.rotate_daily &&
	    auditlog_other_day(w->opened_ms, util_now_ms());
}

int
auditlog_writer_append(struct auditlog_writer *w, int64_t seq,
    const char *json, size_t len, char **cause)
{
	struct auditlog_line l;
	char *text;
	size_t tlen;
	int rc = -1;

	if (seq != w->next_seq) {
		*cause = xasprintf("seq %lld offered where %lld is next",
		    (long long)seq, (long long)w->next_seq);
		return -1;
	}
	if (len < 2 || json[0] != '{' || json[len - 1] != '}' ||
	    memchr(json, '\n', len) != NULL || len > INT32_MAX / 2) {
		*cause = xasprintf("seq %lld: not a one-line JSON object",
		    (long long)seq);
		return -1;
	}
	memset(&l, 0, sizeof l);
	l.kind = AUDITLOG_EVENT;
	l.seq = seq;
	l.event = json;
	l.event_len = len;
	memcpy(l.prev, w->last, AUDITLOG_HASH_LEN);
	text = auditlog_format(&l, &tlen);
	if (auditlog_rotate_due(w, tlen)) {
		if (auditlog_writer_sync(w, cause) != 0 ||
		    auditlog_create(w, w->file_no + 1, seq, cause) != 0)
			goto out;
		/* Same length; the line now links to the new header. */
		free(text);
		memcpy(l.prev, w->last, AUDITLOG_HASH_LEN);
		text = auditlog_format(&l, &tlen);
	}
	if (auditlog_write_all(w->fd, text, tlen) != 0) {
		*cause = xasprintf("write audit-%08lld.jsonl: %s",
		    (long long)w->file_no, strerror(errno));
		/* Leave no partial line behind (recovery would cut it too). */
		if (ftruncate(w->fd, (off_t)w->size) != 0)
			log_warn("audit_truncate_failed", "error=\"%s\"",
			    strerror(errno));
		goto out;
	}
	w->size += (int64_t)tlen;
	w->line_no++;
	w->next_seq = seq + 1;
	memcpy(w->last, l.hash, AUDITLOG_HASH_LEN);
	if (w->pending++ == 0)
		w->first_pending_ms = util_mono_ms();
	if (w->pending >= w->cfg.fsync_batch)
		rc = auditlog_writer_sync(w, cause);
	else
		rc = auditlog_writer_tick(w, cause);
out:
	free(text);
	return rc;
}

void
auditlog_writer_head(const struct auditlog_writer *w, struct auditlog_head *h)
{
	*h = w->synced;
}

void
auditlog_writer_free(struct auditlog_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->lockfd >= 0)
		close(w->lockfd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	free((char *)w->cfg.dir);
	free(w);
}
