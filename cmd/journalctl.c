/*
 * journalctl.c: `payhook journal`: the operator's view of the journal
 * beside a running service: counts and head seq, pending and quarantined
 * rows, the last cross-check errors, one row, re-driving a quarantined row
 * after a fix, and an online backup. Single-threaded command. Prints ids,
 * states and reasons only: a body (personal data) only with `show --body`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/config.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "receiver/webhook.h"

extern char **environ;

#define JC_DEFAULT_LIMIT	20
#define JC_MAX_LIMIT		100000
#define JC_STATUS_ERRORS	5

struct jc_opts {
	const char	*config;
	const char	*state_dir;
	int64_t		 limit;
	int		 body;
};

static void
jc_usage(FILE *f)
{
	fprintf(f, "usage: payhook journal (-c FILE | --state-dir DIR) "
	    "COMMAND [ARGS]\n\n"
	    "Inspect the journal beside a running `payhook serve` (SQLite "
	    "does the locking).\n"
	    "  status              counts by state, head seq, oldest pending "
	    "row, last\n"
	    "                      cross-check errors\n"
	    "  pending [--limit N] rows not yet published (received, "
	    "checked), oldest first\n"
	    "  quarantined [--limit N]\n"
	    "                      quarantined rows, newest first: id, "
	    "received time, reason\n"
	    "  errors [--limit N]  rows waiting for a cross-check, with the "
	    "last error\n"
	    "  show ID [--body]    one row (ID: row id or event id); the "
	    "body only with --body\n"
	    "  redrive ID          re-validate a quarantined row's stored body "
	    "and, if it is a\n"
	    "                      valid webhook now, queue it for cross-check "
	    "and publishing\n"
	    "  backup FILE         online backup (SQLite backup API), checked "
	    "with integrity_check\n\n"
	    "  -c, --config FILE   take state_dir from this config (and "
	    "PAYHOOK_* variables)\n"
	    "  --state-dir DIR     the directory holding journal.db\n"
	    "  --limit N           rows to list (default %d)\n"
	    "Exit status: 0 done, 1 refused or failed (one line says why), "
	    "2 usage or config.\n", JC_DEFAULT_LIMIT);
}

/* Print s with anything that is not printable ASCII as '?': reasons are
 * ours, but a terminal must never get control sequences from a journal. */
static void
jc_puts_safe(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		putchar(*s >= 0x20 && *s < 0x7f ? *s : '?');
}

static void
jc_time(int64_t ms, char *buf, size_t len)
{
	if (ms <= 0)
		xsnprintf(buf, len, "-");
	else
		util_format_time_ms(ms, buf, len);
}

static void
jc_age(int64_t ms, char *buf, size_t len)
{
	int64_t s = ms / 1000;

	if (s < 120)
		xsnprintf(buf, len, "%llds", (long long)s);
	else if (s < 2 * 3600)
		xsnprintf(buf, len, "%lldm", (long long)(s / 60));
	else if (s < 2 * 86400)
		xsnprintf(buf, len, "%lldh", (long long)(s / 3600));
	else
		xsnprintf(buf, len, "%lldd", (long long)(s / 86400));
}

static void
jc_print_error_rows(const struct journal_row *r, size_t n)
{
	char next[32];
	size_t i;

	for (i = 0; i < n; i++) {
		jc_time(r[i].next_check_ms, next, sizeof next);
		printf("  row %lld event %s payment %s attempts %d next %s "
		    "error \"", (long long)r[i].id, r[i].message_id,
		    r[i].resource_id, r[i].check_attempts, next);
		jc_puts_safe(r[i].last_error);
		printf("\"\n");
	}
}

static int
jc_status(struct journal_admin *ja)
{
	struct journal_status s;
	struct journal_row *rows = NULL;
	char *cause = NULL, when[32], age[16];
	size_t n = 0;

	if (journal_admin_status(ja, &s, &cause) != 0 ||
	    journal_admin_list(ja, JOURNAL_LIST_ERRORS, JC_STATUS_ERRORS,
	    &rows, &n, &cause) != 0) {
		fprintf(stderr, "payhook journal: %s\n", cause);
		free(cause);
		return 1;
	}
	printf("journal: %s (schema %d, %lld bytes, wal %lld bytes)\n",
	    journal_admin_path(ja), s.schema_version, (long long)s.db_bytes,
	    (long long)s.wal_bytes);
	printf("rows: received=%lld checked=%lld published=%lld "
	    "quarantined=%lld\n", (long long)s.counts[JOURNAL_RECEIVED],
	    (long long)s.counts[JOURNAL_CHECKED],
	    (long long)s.counts[JOURNAL_PUBLISHED],
	    (long long)s.counts[JOURNAL_QUARANTINED]);
	printf("head_seq: %lld (published up to %lld, unsent %lld)\n",
	    (long long)s.head_seq, (long long)s.published_seq,
	    (long long)s.unsent_events);
	if (s.oldest_pending_ms > 0) {
		jc_time(s.oldest_pending_ms, when, sizeof when);
		jc_age(util_now_ms() - s.oldest_pending_ms, age, sizeof age);
		printf("pending: %lld, oldest received %s (%s ago)\n",
		    (long long)(s.counts[JOURNAL_RECEIVED] +
		    s.counts[JOURNAL_CHECKED]), when, age);
	} else
		printf("pending: 0\n");
	printf("quarantined_without_alert: %lld\n",
	    (long long)s.quarantined_unalerted);
	printf("cross_check_errors: %lld row(s) waiting with an error%s\n",
	    (long long)s.check_errors, n > 0 ? "; the latest:" : "");
	jc_print_error_rows(rows, n);
	journal_rows_free(rows, n);
	return 0;
}

static int
jc_list(struct journal_admin *ja, enum journal_admin_list which,
    int64_t limit)
{
	struct journal_row *r = NULL;
	char *cause = NULL, when[32], next[32];
	size_t n = 0, i;

	if (journal_admin_list(ja, which, (size_t)limit, &r, &n, &cause) != 0) {
		fprintf(stderr, "payhook journal: %s\n", cause);
		free(cause);
		return 1;
	}
	for (i = 0; i < n; i++) {
		jc_time(r[i].received_ms, when, sizeof when);
		jc_time(r[i].next_check_ms, next, sizeof next);
		if (which == JOURNAL_LIST_QUARANTINED) {
			printf("row %lld received %s key %.18s bytes %zu "
			    "alert_seq %lld reason \"", (long long)r[i].id,
			    when, r[i].message_id, r[i].body_len,
			    (long long)r[i].seq);
			jc_puts_safe(r[i].quarantine_reason);
			printf("\"\n");
		} else if (which == JOURNAL_LIST_ERRORS) {
			jc_print_error_rows(&r[i], 1);
		} else {
			printf("row %lld %s event %s type %s payment %s "
			    "received %s attempts %d", (long long)r[i].id,
			    journal_state_name(r[i].state), r[i].message_id,
			    r[i].event_type, r[i].resource_id, when,
			    r[i].check_attempts);
			if (r[i].state == JOURNAL_CHECKED)
				printf(" verdict %s", r[i].verdict);
			else
				printf(" next_check %s", next);
			if (r[i].last_error != NULL) {
				printf(" last_error \"");
				jc_puts_safe(r[i].last_error);
				printf("\"");
			}
			printf("\n");
		}
	}
	printf("(%zu row%s)\n", n, n == 1 ? "" : "s");
	journal_rows_free(r, n);
	return 0;
}

static void
jc_show_row(const struct journal_row *r)
{
	char t[32];

	printf("row:          %lld\n", (long long)r->id);
	printf("state:        %s\n", journal_state_name(r->state));
	printf("event_id:     %s\n", r->message_id);
	printf("event_type:   %s\n", r->event_type[0] ? r->event_type : "-");
	printf("payment_id:   %s\n", r->resource_id[0] ? r->resource_id : "-");
	jc_time(r->occurred_ms, t, sizeof t);
	printf("occurred_at:  %s\n", t);
	jc_time(r->received_ms, t, sizeof t);
	printf("received_at:  %s (signing secret %d)\n", t, r->secret_index);
	printf("body:         %zu bytes%s\n", r->body_len, r->body == NULL ?
	    " (not shown; --body prints it)" : "");
	if (r->quarantine_reason != NULL) {
		printf("quarantine:   ");
		jc_puts_safe(r->quarantine_reason);
		printf("\n");
	}
	jc_time(r->next_check_ms, t, sizeof t);
	printf("cross_check:  attempts %d, next %s\n", r->check_attempts, t);
	if (r->last_error != NULL) {
		printf("last_error:   ");
		jc_puts_safe(r->last_error);
		printf("\n");
	}
	jc_time(r->checked_ms, t, sizeof t);
	printf("verdict:      %s (checked %s, api status %d, answer %zu "
	    "bytes)\n", r->verdict[0] ? r->verdict : "-", t, r->api_status,
	    r->api_body_len);
	printf("mismatches:   ");
	jc_puts_safe(r->mismatches != NULL ? r->mismatches : "-");
	printf("\n");
	if (r->seq > 0)
		printf("seq:          %lld\n", (long long)r->seq);
	else
		printf("seq:          - (no event yet)\n");
}

/* Free a row's heap fields (journal_rows_free() would free the row too). */
static void
jc_row_clear(struct journal_row *r)
{
	free(r->body);
	free(r->quarantine_reason);
	free(r->last_error);
	free(r->mismatches);
	free(r->api_body);
	memset(r, 0, sizeof *r);
}

static int
jc_show(struct journal_admin *ja, const char *key, int body)
{
	struct journal_row r;
	char *cause = NULL;
	int found;

	memset(&r, 0, sizeof r);
	if (journal_admin_get(ja, key, body, &r, &found, &cause) != 0) {
		fprintf(stderr, "payhook journal: %s\n", cause);
		free(cause);
		return 1;
	}
	if (!found) {
		fprintf(stderr, "payhook journal: no row with id or event id "
		    "\"%.80s\"\n", key);
		return 1;
	}
	jc_show_row(&r);
	if (body) {
		fprintf(stderr, "payhook journal: WARNING: the body and the "
		    "API's answer hold personal data (email, names, "
		    "addresses); do not paste them into tickets or chat\n");
		printf("--- body ---\n");
		fwrite(r.body != NULL ? r.body : "", 1, r.body_len, stdout);
		printf("\n--- api answer ---\n");
		if (r.api_body != NULL)
			fwrite(r.api_body, 1, r.api_body_len, stdout);
		printf("\n");
	}
	jc_row_clear(&r);
	return 0;
}

/* Validate the stored body with this build's validator, then move the row
 * under its real webhook_message_id. */
static int
jc_redrive(struct journal_admin *ja, const char *key)
{
	struct webhook_parser *parser = NULL;
	struct journal_entry e;
	struct journal_row r;
	struct webhook wh;
	enum journal_redrive_result res;
	char *cause = NULL, reason[WEBHOOK_REASON_MAX], why[256];
	int found = 0, ret = 1;

	memset(&r, 0, sizeof r);
	if (journal_admin_get(ja, key, 1, &r, &found, &cause) != 0) {
		fprintf(stderr, "payhook journal: %s\n", cause);
		free(cause);
		return 1;
	}
	if (!found) {
		fprintf(stderr, "payhook journal: redrive refused: no row with "
		    "id or event id \"%.80s\"\n", key);
		return 1;
	}
	if (r.state != JOURNAL_QUARANTINED) {
		fprintf(stderr, "payhook journal: redrive refused: row %lld is "
		    "%s, not quarantined\n", (long long)r.id,
		    journal_state_name(r.state));
		goto out;
	}
	parser = webhook_parser_new();
	if (webhook_parse(parser, r.body, r.body_len, &wh, reason) != 0) {
		fprintf(stderr, "payhook journal: redrive refused: row %lld's "
		    "body is still not a valid webhook: %s\n", (long long)r.id,
		    reason);
		goto out;
	}
	memset(&e, 0, sizeof e);
	e.message_id = wh.message_id;
	e.event_type = wh.event_type;
	e.resource_id = wh.resource_id;
	e.occurred_ms = wh.created_ms;
	res = journal_admin_redrive(ja, r.id, r.message_id, &e, util_now_ms(),
	    why, sizeof why, &cause);
	if (res == JOURNAL_REDRIVE_ERROR) {
		fprintf(stderr, "payhook journal: redrive failed: %s\n", cause);
		free(cause);
		goto out;
	}
	if (res != JOURNAL_REDRIVE_OK) {
		fprintf(stderr, "payhook journal: redrive refused: %s\n", why);
		goto out;
	}
	printf("re-driven: row %lld (was %.18s) is now received as event %s "
	    "(%s, payment %s)\n", (long long)r.id, r.message_id, wh.message_id,
	    wh.event_type, wh.resource_id);
	printf("the running service cross-checks and publishes it at its next "
	    "pass; to start that now: kill -HUP <payhook pid> (or systemctl "
	    "reload payhook)\n");
	ret = 0;
out:
	webhook_parser_free(parser);
	jc_row_clear(&r);
	return ret;
}

static int
jc_backup(struct journal_admin *ja, const char *dest)
{
	struct journal_backup_info info;
	char *cause = NULL;

	if (journal_admin_backup(ja, dest, &info, &cause) != 0) {
		fprintf(stderr, "payhook journal: backup failed: %s\n", cause);
		free(cause);
		return 1;
	}
	printf("backup: %s (%lld bytes, %d pages, %lld rows, head_seq %lld, "
	    "integrity_check ok)\n", dest, (long long)info.bytes, info.pages,
	    (long long)info.rows, (long long)info.head_seq);
	return 0;
}

/* Options anywhere; *sub and *arg get the positional words. */
static int
jc_parse(int argc, char **argv, struct jc_opts *o, const char **sub,
    const char **arg)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "limit", required_argument, NULL, 'n' },
		{ "body", no_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof *o);
	o->limit = JC_DEFAULT_LIMIT;
	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'd':
			o->state_dir = optarg;
			break;
		case 'n':
			if (util_parse_int64(optarg, 1, JC_MAX_LIMIT,
			    &o->limit) != 0) {
				fprintf(stderr, "payhook journal: --limit wants "
				    "1..%d\n", JC_MAX_LIMIT);
				return 2;
			}
			break;
		case 'b':
			o->body = 1;
			break;
		case 'h':
			jc_usage(stdout);
			return 0;
		default:
			jc_usage(stderr);
			return 2;
		}
	}
	*sub = optind < argc ? argv[optind] : NULL;
	*arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (*sub == NULL || optind + 2 < argc ||
	    (o->config == NULL) == (o->state_dir == NULL)) {
		jc_usage(stderr);
		return 2;
	}
	return -1;
}

/* The subcommand's argument count, or -1 if unknown. */
static int
jc_nargs(const char *sub)
{
	static const struct {
		const char	*name;
		int		 nargs;
	} subs[] = {
		{ "status", 0 }, { "pending", 0 }, { "quarantined", 0 },
		{ "errors", 0 }, { "show", 1 }, { "redrive", 1 },
		{ "backup", 1 },
	};
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(subs); i++) {
		if (strcmp(sub, subs[i].name) == 0)
			return subs[i].nargs;
	}
	return -1;
}

static int
jc_run(struct journal_admin *ja, const struct jc_opts *o, const char *sub,
    const char *arg)
{
	if (strcmp(sub, "status") == 0)
		return jc_status(ja);
	if (strcmp(sub, "pending") == 0)
		return jc_list(ja, JOURNAL_LIST_PENDING, o->limit);
	if (strcmp(sub, "quarantined") == 0)
		return jc_list(ja, JOURNAL_LIST_QUARANTINED, o->limit);
	if (strcmp(sub, "errors") == 0)
		return jc_list(ja, JOURNAL_LIST_ERRORS, o->limit);
	if (strcmp(sub, "show") == 0)
		return jc_show(ja, arg, o->body);
	if (strcmp(sub, "redrive") == 0)
		return jc_redrive(ja, arg);
	return jc_backup(ja, arg);
}

int
cmd_journal(int argc, char **argv)
{
	struct journal_admin *ja;
	struct config *cfg = NULL;
	struct jc_opts o;
	const char *sub, *arg, *dir;
	char *cause = NULL;
	int ret, n;

	if ((ret = jc_parse(argc, argv, &o, &sub, &arg)) >= 0)
		return ret;
	if ((n = jc_nargs(sub)) < 0 || (n == 1) != (arg != NULL)) {
		fprintf(stderr, "payhook journal: %s \"%.40s\"%s\n", n < 0 ?
		    "unknown command" : "wrong arguments for", sub,
		    n == 1 ? " (it takes one argument)" : "");
		jc_usage(stderr);
		return 2;
	}
	dir = o.state_dir;
	if (o.config != NULL) {
		if ((cfg = config_load(o.config, environ, &cause)) == NULL) {
			fprintf(stderr, "payhook journal: %s\n", cause);
			free(cause);
			return 2;
		}
		dir = cfg->state_dir;
	}
	ja = journal_admin_open(dir, strcmp(sub, "redrive") == 0, &cause);
	if (ja == NULL) {
		fprintf(stderr, "payhook journal: %s\n", cause);
		free(cause);
		config_free(cfg);
		return 1;
	}
	if (journal_admin_lost(ja))
		fprintf(stderr, "payhook journal: warning: %s was lost by "
		    "payhook serve and is not recovered yet (start payhook serve "
		    "on a working disk); read alone, with nothing moved\n",
		    journal_admin_path(ja));
	ret = jc_run(ja, &o, sub, arg);
	journal_admin_free(ja);
	config_free(cfg);
	return ret;
}
