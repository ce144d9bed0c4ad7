/*
 * journal_pipeline.c: the journal after ingest: cross-check bookkeeping
 * (received -> checked), events with their seq (checked -> published), and
 * the read-only replay reader. Everything but the reader runs on the main
 * thread on the write connection; each write is its own transaction unless
 * the caller opened one with journal_begin() to batch several. The reader
 * has its own connection for the bus thread and never writes.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

#define JOURNAL_ROW_COLUMNS						\
	"id, state, message_id, event_type, resource_id, occurred_ms,"	\
	" received_ms, secret_index, body, quarantine_reason,"		\
	" check_attempts, next_check_ms, last_error, verdict, mismatches,"\
	" api_status, api_body, checked_ms, seq"

enum journal_pipe_stmt {
	PIPE_GET_ROW,
	PIPE_DUE,
	PIPE_NEXT_AT,
	PIPE_SET_VERDICT,
	PIPE_DEFER,
	PIPE_TO_PUBLISH,
	PIPE_LATER,
	PIPE_ADD_EVENT,
	PIPE_SET_SEQ,
	PIPE_UNSENT,
	PIPE_MARK_EVENTS,
	PIPE_HEAD,
	PIPE_HEAD_PUBLISHED,
	PIPE_PRUNE_EVENTS,
	PIPE_NSTMTS
};

static const char *journal_pipe_sql[PIPE_NSTMTS] = {
	[PIPE_GET_ROW] = "SELECT " JOURNAL_ROW_COLUMNS " FROM webhooks"
	    " WHERE id = ?1",
	[PIPE_DUE] = "SELECT " JOURNAL_ROW_COLUMNS " FROM webhooks"
	    " WHERE state = 'received' AND next_check_ms <= ?1"
	    " ORDER BY next_check_ms, id LIMIT ?2",
	[PIPE_NEXT_AT] = "SELECT min(next_check_ms) FROM webhooks"
	    " WHERE state = 'received'",
	[PIPE_SET_VERDICT] = "UPDATE webhooks SET state = 'checked',"
	    " verdict = ?2, mismatches = ?3, api_status = ?4, api_body = ?5,"
	    " checked_ms = ?6 WHERE id = ?1 AND state = 'received'",
	[PIPE_DEFER] = "UPDATE webhooks SET check_attempts ="
	    " check_attempts + 1, next_check_ms = ?2, last_error = ?3"
	    " WHERE id = ?1 AND state = 'received'",
	[PIPE_TO_PUBLISH] = "SELECT " JOURNAL_ROW_COLUMNS " FROM webhooks"
	    " WHERE seq IS NULL AND state IN ('checked','quarantined')"
	    " ORDER BY id LIMIT ?1",
	[PIPE_LATER] = "SELECT EXISTS (SELECT 1 FROM webhooks"
	    " WHERE resource_id = ?1 AND seq IS NOT NULL"
	    " AND occurred_ms > ?2)",
	[PIPE_ADD_EVENT] = "INSERT INTO events (row_id, topic, json,"
	    " created_ms) VALUES (?1, ?2, ?3, ?4)",
	/* One rewrite of the row: it is published once its event (seq) is
	 * durable; sending is tracked by the events_sent watermark, and a
	 * crash before the send resends the stored event under the same seq. */
	[PIPE_SET_SEQ] = "UPDATE webhooks SET seq = ?2, published_ms = ?3,"
	    " state = CASE state WHEN 'checked' THEN 'published'"
	    " ELSE state END WHERE id = ?1 AND seq IS NULL",
	/* Sent events are a prefix of seq order: events_sent.upto. */
	[PIPE_UNSENT] = "SELECT seq, row_id, topic, json FROM events"
	    " WHERE seq > max(?1, coalesce((SELECT upto FROM events_sent), 0))"
	    " ORDER BY seq LIMIT ?2",
	[PIPE_MARK_EVENTS] = "INSERT INTO events_sent (id, upto) VALUES (1, ?1)"
	    " ON CONFLICT (id) DO UPDATE SET upto = excluded.upto"
	    " WHERE upto < excluded.upto",
	[PIPE_HEAD] = "SELECT coalesce((SELECT seq FROM sqlite_sequence"
	    " WHERE name = 'events'), 0)",
	[PIPE_HEAD_PUBLISHED] = "SELECT coalesce((SELECT upto FROM"
	    " events_sent), 0)",
	[PIPE_PRUNE_EVENTS] = "DELETE FROM events WHERE seq IN (SELECT seq"
	    " FROM events WHERE created_ms < ?1"
	    " AND seq <= (SELECT upto FROM events_sent) ORDER BY seq LIMIT 1000)",
};

struct journal_pipe {
	sqlite3_stmt	*st[PIPE_NSTMTS];
};

static const char *journal_row_states[JOURNAL_NSTATES] = {
	"received", "checked", "published", "quarantined"
};

/* The prepared statement, prepared on first use. NULL and *cause. */
static sqlite3_stmt *
journal_stmt(struct journal *j, enum journal_pipe_stmt which, char **cause)
{
	if (j->pipe == NULL)
		j->pipe = xcalloc(1, sizeof *j->pipe);
	if (j->pipe->st[which] == NULL &&
	    journal_prepare(j, journal_pipe_sql[which], &j->pipe->st[which],
	    cause) != 0)
		return NULL;
	return j->pipe->st[which];
}

static void
journal_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

void
journal_pipeline_free(struct journal *j)
{
	int i;

	if (j->pipe == NULL)
		return;
	for (i = 0; i < PIPE_NSTMTS; i++)
		sqlite3_finalize(j->pipe->st[i]);
	free(j->pipe);
	j->pipe = NULL;
}

/* Own transaction unless the caller batches inside journal_begin(); nowait
 * as for journal_begin_immediate(). */
static int
journal_pipe_begin_mode(struct journal *j, int nowait, int *own, char **cause)
{
	*own = 0;
	if (j->in_txn) {
		if (j->txn_failed) {
			*cause = xasprintf("journal: the batch already failed; "
			    "roll it back");
			return -1;
		}
		return 0;
	}
	if (journal_begin_immediate(j, nowait, cause) != 0)
		return -1;
	*own = 1;
	return 0;
}

static int
journal_pipe_begin(struct journal *j, int *own, char **cause)
{
	return journal_pipe_begin_mode(j, 0, own, cause);
}

static int
journal_pipe_end(struct journal *j, int own, int ok, char **cause)
{
	if (!ok) {
		if (own) {
			journal_abort_txn(j->db, "pipeline");
			j->needs_sync = 0;
		} else
			j->txn_failed = 1;
		return -1;
	}
	if (!own)
		return 0;
	if (journal_run_commit(j, cause) != 0) {
		journal_abort_txn(j->db, "pipeline commit");
		j->needs_sync = 0;
		return -1;
	}
	return journal_sync_after_commit(j, cause);
}

static char *
journal_col_dup(sqlite3_stmt *st, int col, size_t *len)
{
	const void *p;
	size_t n;
	char *s;

	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	p = sqlite3_column_blob(st, col);
	n = (size_t)sqlite3_column_bytes(st, col);
	s = xmalloc(n + 1);
	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	if (len != NULL)
		*len = n;
	return s;
}

static void
journal_col_copy(sqlite3_stmt *st, int col, char *buf, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	xsnprintf(buf, len, "%s", t != NULL ? (const char *)t : "");
}

void
journal_load_row(sqlite3_stmt *st, struct journal_row *r, int lengths)
{
	char state[16];
	int i;

	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(st, 0);
	journal_col_copy(st, 1, state, sizeof state);
	for (i = 0; i < JOURNAL_NSTATES; i++) {
		if (strcmp(state, journal_row_states[i]) == 0)
			r->state = (enum journal_state)i;
	}
	journal_col_copy(st, 2, r->message_id, sizeof r->message_id);
	journal_col_copy(st, 3, r->event_type, sizeof r->event_type);
	journal_col_copy(st, 4, r->resource_id, sizeof r->resource_id);
	r->occurred_ms = sqlite3_column_int64(st, 5);
	r->received_ms = sqlite3_column_int64(st, 6);
	r->secret_index = sqlite3_column_int(st, 7);
	if (lengths)
		r->body_len = (size_t)sqlite3_column_int64(st, 8);
	else if ((r->body = journal_col_dup(st, 8, &r->body_len)) == NULL)
		r->body = xstrdup("");
	r->quarantine_reason = journal_col_dup(st, 9, NULL);
	r->check_attempts = sqlite3_column_int(st, 10);
	r->next_check_ms = sqlite3_column_int64(st, 11);
	r->last_error = journal_col_dup(st, 12, NULL);
	journal_col_copy(st, 13, r->verdict, sizeof r->verdict);
	r->mismatches = journal_col_dup(st, 14, NULL);
	r->api_status = sqlite3_column_int(st, 15);
	if (lengths)
		r->api_body_len = (size_t)sqlite3_column_int64(st, 16);
	else
		r->api_body = journal_col_dup(st, 16, &r->api_body_len);
	r->checked_ms = sqlite3_column_int64(st, 17);
	r->seq = sqlite3_column_int64(st, 18);
}

static void
journal_row_clear(struct journal_row *r)
{
	free(r->body);
	free(r->quarantine_reason);
	free(r->last_error);
	free(r->mismatches);
	free(r->api_body);
}

void
journal_rows_free(struct journal_row *rows, size_t n)
{
	size_t i;

	if (rows == NULL)
		return;
	for (i = 0; i < n; i++)
		journal_row_clear(&rows[i]);
	free(rows);
}

void
journal_events_free(struct journal_event *ev, size_t n)
{
	size_t i;

	if (ev == NULL)
		return;
	for (i = 0; i < n; i++)
		free(ev[i].json);
	free(ev);
}

/* Step a bound SELECT into a fresh array of rows. */
static int
journal_collect_rows(struct journal *j, sqlite3_stmt *st, size_t max,
    struct journal_row **rows, size_t *n, char **cause)
{
	struct journal_row *out = NULL;
	size_t have = 0, cap = 0;
	int rc = SQLITE_DONE;

	/* Grown as rows come: callers ask for hundreds and often get one. */
	while (have < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (have == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			out = xreallocarray(out, cap, sizeof *out);
		}
		journal_load_row(st, &out[have++], 0);
	}
	if (have < max && rc != SQLITE_DONE) {
		journal_cause(cause, j->db, "journal read rows");
		journal_done(st);
		journal_rows_free(out, have);
		return -1;
	}
	journal_done(st);
	*rows = out;
	*n = have;
	return 0;
}

int
journal_get_row(struct journal *j, int64_t id, struct journal_row *row,
    int *found, char **cause)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = journal_stmt(j, PIPE_GET_ROW, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	*found = rc == SQLITE_ROW;
	if (rc == SQLITE_ROW)
		journal_load_row(st, row, 0);
	else if (rc != SQLITE_DONE) {
		journal_cause(cause, j->db, "journal get row");
		journal_done(st);
		return -1;
	}
	journal_done(st);
	return 0;
}

int
journal_due_checks(struct journal *j, int64_t now_ms, size_t max,
    struct journal_row **rows, size_t *n, char **cause)
{
	sqlite3_stmt *st;

	if ((st = journal_stmt(j, PIPE_DUE, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, now_ms);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	return journal_collect_rows(j, st, max, rows, n, cause);
}

/* Run a one-value SELECT; NULL reads as dflt. */
static int
journal_scalar(struct journal *j, sqlite3_stmt *st, int64_t dflt,
    int64_t *out, char **cause)
{
	int rc = sqlite3_step(st);

	*out = dflt;
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*out = sqlite3_column_int64(st, 0);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		journal_cause(cause, j->db, "journal query");
		journal_done(st);
		return -1;
	}
	journal_done(st);
	return 0;
}

int
journal_next_check_at(struct journal *j, int64_t *ms, char **cause)
{
	sqlite3_stmt *st;

	if ((st = journal_stmt(j, PIPE_NEXT_AT, cause)) == NULL)
		return -1;
	return journal_scalar(j, st, -1, ms, cause);
}

/* Step a bound write that must change exactly one row. */
static int
journal_write_one(struct journal *j, sqlite3_stmt *st, const char *what,
    int64_t id, char **cause)
{
	int own, ok;

	if (journal_pipe_begin(j, &own, cause) != 0) {
		journal_done(st);
		return -1;
	}
	ok = sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		journal_cause(cause, j->db, what);
	else if (sqlite3_changes(j->db) != 1) {
		*cause = xasprintf("%s: row %lld is not in the expected state",
		    what, (long long)id);
		ok = 0;
	}
	journal_done(st);
	return journal_pipe_end(j, own, ok, cause);
}

static void
journal_bind_text(sqlite3_stmt *st, int col, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

int
journal_set_verdict(struct journal *j, int64_t id,
    const struct journal_verdict *v, int64_t now_ms, char **cause)
{
	sqlite3_stmt *st;

	if ((st = journal_stmt(j, PIPE_SET_VERDICT, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	journal_bind_text(st, 2, v->verdict);
	journal_bind_text(st, 3, v->mismatches);
	if (v->api_status > 0)
		sqlite3_bind_int(st, 4, v->api_status);
	if (v->api_body != NULL)
		sqlite3_bind_blob(st, 5, v->api_body, (int)v->api_body_len,
		    SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now_ms);
	return journal_write_one(j, st, "journal set verdict", id, cause);
}

int
journal_defer_check(struct journal *j, int64_t id, int64_t next_ms,
    const char *error, char **cause)
{
	sqlite3_stmt *st;

	if ((st = journal_stmt(j, PIPE_DEFER, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, next_ms);
	journal_bind_text(st, 3, error);
	return journal_write_one(j, st, "journal defer check", id, cause);
}

int
journal_rows_to_publish(struct journal *j, size_t max,
    struct journal_row **rows, size_t *n, char **cause)
{
	sqlite3_stmt *st;

	if ((st = journal_stmt(j, PIPE_TO_PUBLISH, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
	return journal_collect_rows(j, st, max, rows, n, cause);
}

int
journal_later_event_exists(struct journal *j, const char *resource_id,
    int64_t occurred_ms, int *yes, char **cause)
{
	sqlite3_stmt *st;
	int64_t v;

	if ((st = journal_stmt(j, PIPE_LATER, cause)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, resource_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, occurred_ms);
	if (journal_scalar(j, st, 0, &v, cause) != 0)
		return -1;
	*yes = v != 0;
	return 0;
}

/* The event row; *seq gets its seq. Inside the caller's transaction. */
static int
journal_insert_event(struct journal *j, int64_t row_id, const char *topic,
    const char *json, size_t len, int64_t now_ms, int64_t *seq, char **cause)
{
	sqlite3_stmt *ins;
	int ok;

	if ((ins = journal_stmt(j, PIPE_ADD_EVENT, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(ins, 1, row_id);
	sqlite3_bind_text(ins, 2, topic, -1, SQLITE_STATIC);
	sqlite3_bind_blob(ins, 3, json, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(ins, 4, now_ms);
	ok = sqlite3_step(ins) == SQLITE_DONE;
	journal_done(ins);
	if (!ok) {
		journal_cause(cause, j->db, "journal add event");
		return -1;
	}
	*seq = sqlite3_last_insert_rowid(j->db);
	/* A seq must be durable before anyone sees it: never reused. */
	j->needs_sync = 1;
	return 0;
}

int
journal_add_event(struct journal *j, int64_t row_id, const char *topic,
    const char *json, size_t len, int64_t now_ms, int64_t *seq, char **cause)
{
	sqlite3_stmt *set;
	int own, ok;

	if ((set = journal_stmt(j, PIPE_SET_SEQ, cause)) == NULL)
		return -1;
	if (journal_pipe_begin(j, &own, cause) != 0)
		return -1;
	if (journal_insert_event(j, row_id, topic, json, len, now_ms, seq,
	    cause) != 0)
		return journal_pipe_end(j, own, 0, cause);
	sqlite3_bind_int64(set, 1, row_id);
	sqlite3_bind_int64(set, 2, *seq);
	sqlite3_bind_int64(set, 3, now_ms);
	ok = sqlite3_step(set) == SQLITE_DONE;
	if (!ok)
		journal_cause(cause, j->db, "journal set seq");
	else if (sqlite3_changes(j->db) != 1) {
		*cause = xasprintf("journal add event: row %lld is gone or "
		    "already has a seq", (long long)row_id);
		ok = 0;
	}
	journal_done(set);
	return journal_pipe_end(j, own, ok, cause);
}

enum journal_put_result
journal_put_event(struct journal *j, const struct journal_entry *e,
    const char *topic, const char *json, size_t len, char **cause)
{
	enum journal_put_result r;
	int64_t seq = 0;

	if (e->seq <= 0) {
		*cause = xasprintf("journal put event: no seq");
		j->txn_failed = j->in_txn;
		return JOURNAL_PUT_ERROR;
	}
	if ((r = journal_put(j, e, cause)) != JOURNAL_PUT_NEW)
		return r;
	if (journal_insert_event(j, sqlite3_last_insert_rowid(j->db), topic,
	    json, len, e->published_ms, &seq, cause) != 0)
		goto fail;
	if (seq != e->seq) {
		/* The row and the JSON carry e->seq: never store it under
		 * another. The caller rolls back and reads the head again. */
		*cause = xasprintf("journal put event: seq %lld was assigned, "
		    "%lld expected", (long long)seq, (long long)e->seq);
		goto fail;
	}
	return JOURNAL_PUT_NEW;
fail:
	j->txn_failed = j->in_txn;
	return JOURNAL_PUT_ERROR;
}

int
journal_unsent_events(struct journal *j, int64_t after, size_t max,
    struct journal_event **events, size_t *n, char **cause)
{
	struct journal_event *out = NULL;
	sqlite3_stmt *st;
	size_t have = 0, cap = 0;
	int rc = SQLITE_DONE;

	if ((st = journal_stmt(j, PIPE_UNSENT, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	while (have < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (have == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			out = xreallocarray(out, cap, sizeof *out);
		}
		memset(&out[have], 0, sizeof out[have]);
		out[have].seq = sqlite3_column_int64(st, 0);
		out[have].row_id = sqlite3_column_int64(st, 1);
		journal_col_copy(st, 2, out[have].topic,
		    sizeof out[have].topic);
		out[have].json = journal_col_dup(st, 3, &out[have].len);
		if (out[have].json == NULL)
			out[have].json = xstrdup("");
		have++;
	}
	if (have < max && rc != SQLITE_DONE) {
		journal_cause(cause, j->db, "journal unsent events");
		journal_done(st);
		journal_events_free(out, have);
		return -1;
	}
	journal_done(st);
	*events = out;
	*n = have;
	return 0;
}

int
journal_mark_published(struct journal *j, int64_t upto_seq, char **cause)
{
	sqlite3_stmt *events;
	int own, ok;

	if ((events = journal_stmt(j, PIPE_MARK_EVENTS, cause)) == NULL)
		return -1;
	/* Never waits: marks are retried later (journal_was_busy). */
	if (journal_pipe_begin_mode(j, 1, &own, cause) != 0)
		return -1;
	sqlite3_bind_int64(events, 1, upto_seq);
	ok = sqlite3_step(events) == SQLITE_DONE;
	journal_done(events);
	if (!ok)
		journal_cause(cause, j->db, "journal mark published");
	return journal_pipe_end(j, own, ok, cause);
}

int
journal_head_seq(struct journal *j, int64_t *assigned, int64_t *published,
    char **cause)
{
	sqlite3_stmt *h, *p;

	if ((h = journal_stmt(j, PIPE_HEAD, cause)) == NULL ||
	    (p = journal_stmt(j, PIPE_HEAD_PUBLISHED, cause)) == NULL)
		return -1;
	if (journal_scalar(j, h, 0, assigned, cause) != 0)
		return -1;
	if (published != NULL && journal_scalar(j, p, 0, published, cause) != 0)
		return -1;
	return 0;
}

int
journal_prune_events(struct journal *j, int64_t cutoff_ms, char **cause)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = journal_stmt(j, PIPE_PRUNE_EVENTS, cause)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, cutoff_ms);
	rc = sqlite3_step(st);
	journal_done(st);
	if (rc != SQLITE_DONE) {
		journal_cause(cause, j->db, "journal prune events");
		return -1;
	}
	return 0;
}

/* ---- replay reader (bus thread) -------------------------------------- */

struct journal_reader {
	sqlite3		*db;
	sqlite3_stmt	*range;
	sqlite3_stmt	*head;
};

struct journal_reader *
journal_reader_open(const char *dir, char **cause)
{
	struct journal_reader *r;
	char *path;

	r = xcalloc(1, sizeof *r);
	path = xasprintf("%s/journal.db", dir);
	journal_sqlite_setup();
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
		journal_cause(cause, r->db, "replay reader open");
		goto fail;
	}
	if (sqlite3_busy_timeout(r->db, 1000) != SQLITE_OK ||
	    sqlite3_prepare_v3(r->db, "SELECT seq, topic, json FROM events"
	    " WHERE seq >= ?1 AND seq <= ?3 AND substr(topic, 1, length(?2)) = ?2"
	    " ORDER BY seq", -1, SQLITE_PREPARE_PERSISTENT, &r->range, NULL) !=
	    SQLITE_OK ||
	    sqlite3_prepare_v3(r->db, journal_pipe_sql[PIPE_HEAD], -1,
	    SQLITE_PREPARE_PERSISTENT, &r->head, NULL) != SQLITE_OK) {
		journal_cause(cause, r->db, "replay reader prepare");
		goto fail;
	}
	free(path);
	return r;
fail:
	free(path);
	journal_reader_free(r);
	return NULL;
}

void
journal_reader_free(struct journal_reader *r)
{
	if (r == NULL)
		return;
	sqlite3_finalize(r->range);
	sqlite3_finalize(r->head);
	sqlite3_close(r->db);
	free(r);
}

int
journal_reader_range(struct journal_reader *r, int64_t from, int64_t upto,
    size_t max, const char *prefix, journal_event_fn fn, void *arg,
    int64_t *head, char **cause)
{
	const unsigned char *topic;
	const void *json;
	size_t sent = 0;
	int rc, ret = -1;

	/* One read transaction: the head and the rows are one snapshot. */
	if (sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		journal_cause(cause, r->db, "replay begin");
		return -1;
	}
	rc = sqlite3_step(r->head);
	*head = rc == SQLITE_ROW ? sqlite3_column_int64(r->head, 0) : 0;
	sqlite3_reset(r->head);
	if (rc != SQLITE_ROW) {
		journal_cause(cause, r->db, "replay head");
		goto out;
	}
	if (*head > upto)
		*head = upto;
	sqlite3_bind_int64(r->range, 1, from);
	sqlite3_bind_int64(r->range, 3, upto);
	sqlite3_bind_text(r->range, 2, prefix != NULL ? prefix : "", -1,
	    SQLITE_STATIC);
	while (sent < max && (rc = sqlite3_step(r->range)) == SQLITE_ROW) {
		topic = sqlite3_column_text(r->range, 1);
		json = sqlite3_column_blob(r->range, 2);
		sent++;
		if (fn(arg, sqlite3_column_int64(r->range, 0),
		    topic != NULL ? (const char *)topic : "",
		    json != NULL ? json : "",
		    (size_t)sqlite3_column_bytes(r->range, 2)) != 0)
			break;
	}
	if (sent < max && rc != SQLITE_ROW && rc != SQLITE_DONE) {
		journal_cause(cause, r->db, "replay read");
		goto out;
	}
	ret = 0;
out:
	sqlite3_reset(r->range);
	sqlite3_clear_bindings(r->range);
	sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
	return ret;
}
