/*
 * journal_schema.c: the journal's schema, as the migrations that build it.
 *
 * PRAGMA user_version is the schema version: step i takes a journal from
 * version i to i + 1, and journal_migrate() runs the missing steps in one
 * transaction at open, all or none. A journal written by a newer build is
 * refused, and so is a database that is not a payhook journal
 * (PRAGMA application_id). Runs on the main thread, once, at open, on the
 * write connection, before the checkpointer and the syncer start. A step
 * must never rewrite every row of a large journal: the service is not
 * listening while it runs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "journal/journal_int.h"

/*
 * Schema migrations, applied in order inside one transaction at open.
 * Step i takes the database from user_version i to i + 1. Append only:
 * never edit a step that has shipped.
 */
static const char *journal_migrations[] = {
	/* 1: the webhooks table and its indexes. */
	"CREATE TABLE webhooks ("
	" id INTEGER PRIMARY KEY,"
	" message_id TEXT NOT NULL UNIQUE,"
	" state TEXT NOT NULL CHECK (state IN"
	"  ('received','checked','published','quarantined')),"
	" event_type TEXT,"
	" resource_id TEXT,"
	" occurred_ms INTEGER,"
	" received_ms INTEGER NOT NULL,"
	" secret_index INTEGER NOT NULL,"
	" body BLOB NOT NULL,"
	" quarantine_reason TEXT,"
	" seq INTEGER UNIQUE,"
	" published_ms INTEGER);"
	"CREATE INDEX webhooks_received_ms ON webhooks (received_ms);"
	"CREATE INDEX webhooks_unfinished ON webhooks (state)"
	" WHERE state IN ('received','checked');"
	"CREATE INDEX webhooks_quarantined ON webhooks (received_ms)"
	" WHERE state = 'quarantined';",
	/* 2: cross-check results and published events (seq). */
	"ALTER TABLE webhooks ADD COLUMN check_attempts INTEGER NOT NULL"
	" DEFAULT 0;"
	"ALTER TABLE webhooks ADD COLUMN next_check_ms INTEGER NOT NULL"
	" DEFAULT 0;"
	"ALTER TABLE webhooks ADD COLUMN last_error TEXT;"
	"ALTER TABLE webhooks ADD COLUMN verdict TEXT;"
	"ALTER TABLE webhooks ADD COLUMN mismatches TEXT;"
	"ALTER TABLE webhooks ADD COLUMN api_status INTEGER;"
	"ALTER TABLE webhooks ADD COLUMN api_body BLOB;"
	"ALTER TABLE webhooks ADD COLUMN checked_ms INTEGER;"
	/* AUTOINCREMENT: a seq is never reused, even after pruning. */
	"CREATE TABLE events ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" row_id INTEGER NOT NULL,"
	" topic TEXT NOT NULL,"
	" json BLOB NOT NULL,"
	" created_ms INTEGER NOT NULL,"
	" published_ms INTEGER);"
	"CREATE INDEX events_unsent ON events (seq) WHERE published_ms IS NULL;"
	"CREATE INDEX events_row ON events (row_id);"
	"CREATE INDEX webhooks_due ON webhooks (next_check_ms, id)"
	" WHERE state = 'received';"
	"CREATE INDEX webhooks_to_publish ON webhooks (id)"
	" WHERE seq IS NULL AND state IN ('checked','quarantined');"
	"CREATE INDEX webhooks_resource ON webhooks (resource_id, occurred_ms)"
	" WHERE seq IS NOT NULL;",
	/* 3: the state CHECK without IN (journal_migrate_state_check). */
	"",
	/*
	 * 4: events are sent in seq order, so what was sent is a prefix: one
	 * watermark row says how far, instead of an UPDATE of every event row
	 * sent (which wrote each event's pages to the WAL a second time) and
	 * the partial index that found the unsent ones. Starts just below the
	 * first event not yet marked (all of them if none is left).
	 */
	"CREATE TABLE events_sent (id INTEGER PRIMARY KEY CHECK (id = 1),"
	" upto INTEGER NOT NULL);"
	"INSERT INTO events_sent (id, upto) VALUES (1, coalesce("
	" (SELECT min(seq) - 1 FROM events WHERE published_ms IS NULL),"
	" (SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0));"
	"DROP INDEX IF EXISTS events_unsent;",
	/* 5: events_row indexed events by their webhook row, which no query
	 * asks: it cost every group commit a page or two of WAL. */
	"DROP INDEX IF EXISTS events_row;",
};

int
journal_schema_version(void)
{
	return (int)UTIL_ARRAY_LEN(journal_migrations);
}

/*
 * Migration 3. SQLite evaluates an IN list of more than two values by
 * building a temporary index, and for the CHECK on webhooks.state it did
 * so for every row written (about 4 % of the event loop's time under
 * load). The constraint is rewritten with = and OR: the same rule, so, as
 * SQLite documents for constraint changes every row already satisfies
 * (lang_altertable.html, "Making Other Kinds Of Table Schema Changes"),
 * only the schema text changes and schema_version is bumped; no row is
 * rewritten. A table whose CHECK is not the expected one is left alone.
 */
static int
journal_migrate_state_check(sqlite3 *db, char **cause)
{
	static const char head[] = "CHECK (state IN";
	static const char list[] =
	    "('received','checked','published','quarantined')";
	static const char check[] = "CHECK (state = 'received' OR state ="
	    " 'checked' OR state = 'published' OR state = 'quarantined')";
	char squeezed[sizeof list + 1], sql[64], *old = NULL, *text;
	const char *a, *b, *c;
	sqlite3_stmt *st = NULL;
	int64_t version;
	size_t n = 0;
	int ok, quoted = 0;

	if (sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE type ="
	    " 'table' AND name = 'webhooks'", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_text(st, 0) != NULL)
		old = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	st = NULL;
	if (old == NULL) {
		journal_cause(cause, db, "schema text");
		return -1;
	}
	b = NULL;
	if ((a = strstr(old, head)) != NULL && (b = strstr(a, "))")) != NULL) {
		for (c = a + sizeof head - 1; c <= b &&
		    n < sizeof squeezed - 1; c++) {
			if (*c == '\'')
				quoted = !quoted;
			if (*c != ' ' || quoted)	/* spaces between names */
				squeezed[n++] = *c;
		}
	}
	squeezed[n] = '\0';
	if (b == NULL || strcmp(squeezed, list) != 0) {
		log_warn("journal_migrate_skipped", "step=3 reason=\"the state "
		    "CHECK is not the expected one\"");
		free(old);
		return 0;
	}
	text = xasprintf("%.*s%s%s", (int)(a - old), old, check, b + 2);
	free(old);
	ok = journal_query(db, "PRAGMA schema_version", &version, NULL, 0,
	    cause) == 0 &&
	    journal_exec(db, "PRAGMA writable_schema = ON", "schema text",
	    cause) == 0;
	if (ok) {
		ok = sqlite3_prepare_v2(db, "UPDATE sqlite_schema SET sql = ?1"
		    " WHERE type = 'table' AND name = 'webhooks'", -1, &st,
		    NULL) == SQLITE_OK &&
		    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC) ==
		    SQLITE_OK && sqlite3_step(st) == SQLITE_DONE &&
		    sqlite3_changes(db) == 1;
		if (!ok)
			journal_cause(cause, db, "schema text");
		sqlite3_finalize(st);
		xsnprintf(sql, sizeof sql, "PRAGMA schema_version = %lld",
		    (long long)version + 1);
		ok = ok && journal_exec(db, sql, "schema version", cause) == 0;
		/* Off again whatever happened; then the new text must parse. */
		if (sqlite3_exec(db, "PRAGMA writable_schema = OFF", NULL, NULL,
		    NULL) != SQLITE_OK && ok) {
			journal_cause(cause, db, "schema text");
			ok = 0;
		}
		ok = ok && journal_exec(db, "SELECT 1 FROM webhooks LIMIT 0",
		    "schema text check", cause) == 0;
	}
	free(text);
	return ok ? 0 : -1;
}

/* Steps SQL alone cannot make, run after the step's SQL (index: step). */
static int (*const journal_migration_fns[])(sqlite3 *, char **) = {
	NULL, NULL, journal_migrate_state_check
};

/* Inside the migration transaction: check ownership and version, then run
 * the missing steps. *from gets the version found. */
static int
journal_migrate_steps(sqlite3 *db, int64_t *from, char **cause)
{
	int64_t app_id;
	int i, target = journal_schema_version();
	char sql[64], what[64];

	if (journal_query(db, "PRAGMA application_id", &app_id, NULL, 0,
	    cause) != 0 ||
	    journal_query(db, "PRAGMA user_version", from, NULL, 0, cause) != 0)
		return -1;
	if (app_id != 0 && app_id != JOURNAL_APP_ID) {
		*cause = xasprintf("not a payhook journal (application_id "
		    "0x%llx)", (unsigned long long)app_id);
		return -1;
	}
	if (*from > target || *from < 0) {
		*cause = xasprintf("journal schema version %lld is %s (this "
		    "build knows up to %d); refusing to open it (run a newer "
		    "payhook or restore a matching backup)", (long long)*from,
		    *from < 0 ? "invalid" : "newer than this build supports",
		    target);
		return -1;
	}
	for (i = (int)*from; i < target; i++) {
		xsnprintf(what, sizeof what, "schema migration to version %d",
		    i + 1);
		if (journal_exec(db, journal_migrations[i], what, cause) != 0)
			return -1;
		if ((size_t)i < UTIL_ARRAY_LEN(journal_migration_fns) &&
		    journal_migration_fns[i] != NULL &&
		    journal_migration_fns[i](db, cause) != 0)
			return -1;
	}
	if (*from == target && app_id == JOURNAL_APP_ID)
		return 0;
	xsnprintf(sql, sizeof sql, "PRAGMA user_version = %d", target);
	if (journal_exec(db, sql, "schema version", cause) != 0)
		return -1;
	xsnprintf(sql, sizeof sql, "PRAGMA application_id = %d",
	    JOURNAL_APP_ID);
	return journal_exec(db, sql, "application id", cause);
}

/* Bring the schema to journal_schema_version() in one transaction (all
 * steps or none), or refuse a database written by a newer build. */
int
journal_migrate(sqlite3 *db, char **cause)
{
	int64_t from = 0;

	if (journal_exec(db, "BEGIN IMMEDIATE", "schema migration", cause) != 0)
		return -1;
	if (journal_migrate_steps(db, &from, cause) != 0 ||
	    journal_exec(db, "COMMIT", "schema migration commit", cause) != 0) {
		journal_abort_txn(db, "migration");
		return -1;
	}
	if (from != journal_schema_version())
		log_info("journal_migrated", "from=%lld to=%d",
		    (long long)from, journal_schema_version());
	return 0;
}
