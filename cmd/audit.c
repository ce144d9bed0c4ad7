/*
 * audit.c: `payhook audit` (docs/audit.md). Follows the live feed and the
 * replay endpoint through dispatch/follow.c (as `tail` does) and appends
 * every event to a hash-chained log (dispatch/auditlog.h), printing the
 * synced head hash for anchoring; `payhook audit verify` checks a log and
 * optionally compares it with the service's replay. Single-threaded; it
 * never appends past a gap and never reports an unsynced line as held.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/auditlog.h"
#include "dispatch/follow.h"

#define AUDIT_POLL_MS		100
#define AUDIT_ROTATE_BYTES	(64 * 1024 * 1024)
#define AUDIT_FSYNC_BATCH	256
#define AUDIT_FSYNC_MS		200
#define AUDIT_ANCHOR_MS		60000
#define AUDIT_ANCHORS_MAX	16
#define AUDIT_PRINT_MAX		50	/* problems printed by verify */

struct audit {
	struct auditlog_writer *w;
	struct follow	*f;
	int64_t		 count;		/* --count: exit after this many */
	int64_t		 appended;
	int64_t		 idle_ms, anchor_ms, last_anchor_ms;
	struct auditlog_head anchored;	/* last head printed */
	int		 status;
};

static volatile sig_atomic_t audit_stop;

static void
audit_signal(int sig)
{
	audit_stop = 1;
}

static void
audit_usage(FILE *f)
{
	fprintf(f, "usage: payhook audit --out DIR [--feed EP] [--replay EP] "
	    "[--curve-server-key KEY\n"
	    "                     --curve-secret-key-file FILE] [--from SEQ] "
	    "[--rotate-bytes N]\n"
	    "                     [--rotate-daily] [--fsync-batch N] "
	    "[--fsync-ms MS] [--anchor-ms MS]\n"
	    "                     [--count N] [--idle-exit MS]\n"
	    "       payhook audit verify DIR [--replay EP [--curve-server-key "
	    "KEY\n"
	    "                     --curve-secret-key-file FILE]] "
	    "[--anchor HASH]...\n\n"
	    "Keep a tamper-evident, hash-chained log of every event in DIR "
	    "(docs/audit.md).\n"
	    "  --out DIR         the log directory (created 0700)\n"
	    "  --feed EP         live feed (default " FOLLOW_FEED_DEFAULT ")\n"
	    "  --replay EP       replay endpoint (default "
	    FOLLOW_REPLAY_DEFAULT ")\n"
	    "  --curve-server-key KEY      the server's Z85 public key\n"
	    "  --curve-secret-key-file F   our Z85 secret key (payhook "
	    "keygen)\n"
	    "  --from SEQ        first seq of a new log (default 1)\n"
	    "  --rotate-bytes N  start a new file past N bytes (default "
	    "%d; 0 never)\n"
	    "  --rotate-daily    start a new file each UTC day\n"
	    "  --fsync-batch N   fdatasync after N lines (default %d)\n"
	    "  --fsync-ms MS     or once the oldest unsynced line is MS old "
	    "(default %d)\n"
	    "  --anchor-ms MS    log the synced head hash every MS (default "
	    "%d)\n"
	    "  --count N         exit 0 once N more events are synced\n"
	    "  --idle-exit MS    exit 0 once caught up, synced and idle for "
	    "MS\n"
	    "verify: checks every link and that seqs run without a gap; with "
	    "--replay, that\nthe log holds every event the service published, "
	    "byte for byte; --anchor, that\na head hash recorded earlier is "
	    "still in the chain.\n"
	    "Exit status: 0 done / intact, 1 broken, gap or I/O error, 2 "
	    "usage or unreachable.\n", AUDIT_ROTATE_BYTES, AUDIT_FSYNC_BATCH,
	    AUDIT_FSYNC_MS, AUDIT_ANCHOR_MS);
}

/* Log the synced head when it moved (or always when force). */
static void
audit_anchor(struct audit *a, int force)
{
	struct auditlog_head h;

	auditlog_writer_head(a->w, &h);
	a->last_anchor_ms = util_mono_ms();
	if (!force && h.file_no == a->anchored.file_no &&
	    h.line_no == a->anchored.line_no)
		return;
	a->anchored = h;
	log_info("audit_anchor", "file=audit-%08lld.jsonl line=%lld seq=%lld "
	    "head=%s", (long long)h.file_no, (long long)h.line_no,
	    (long long)h.seq, h.hash);
}

/* follow_event_cb: append one event. */
static int
audit_event_cb(void *arg, int64_t seq, const char *json, size_t len)
{
	struct audit *a = arg;
	int64_t want = auditlog_writer_next_seq(a->w);
	int64_t file = 0;
	struct auditlog_head h;
	char *cause = NULL;

	if (seq > want) {
		log_error("audit_gap", "missing=%lld..%lld reason=\"no longer "
		    "in the service's journal; this log cannot hold them\"",
		    (long long)want, (long long)seq - 1);
		a->status = 1;
		return -1;
	}
	auditlog_writer_head(a->w, &h);
	file = h.file_no;
	if (auditlog_writer_append(a->w, seq, json, len, &cause) != 0) {
		log_error("audit_append_failed", "seq=%lld error=\"%s\"",
		    (long long)seq, cause);
		free(cause);
		a->status = 1;
		return -1;
	}
	auditlog_writer_head(a->w, &h);
	if (h.file_no != file)
		audit_anchor(a, 1);	/* a new file: anchor its start */
	a->appended++;
	return a->count > 0 && a->appended >= a->count ? 1 : 0;
}

static int
audit_idle_done(const struct audit *a)
{
	return a->idle_ms > 0 && follow_caught_up(a->f) &&
	    util_mono_ms() - follow_last_event_ms(a->f) >= a->idle_ms;
}

static void
audit_loop(struct audit *a)
{
	char *cause = NULL;
	int warned = 0;

	(void)follow_catch_up(a->f);	/* strict: a failure retries later */
	while (!follow_stopped(a->f)) {
		(void)follow_poll(a->f, AUDIT_POLL_MS);
		if (!warned && follow_caught_up(a->f) && follow_head(a->f) + 1 <
		    auditlog_writer_next_seq(a->w)) {
			log_warn("audit_service_behind", "head_seq=%lld "
			    "next_seq=%lld reason=\"the service has fewer "
			    "events than this log: another service, or its "
			    "journal was reset\"", (long long)follow_head(a->f),
			    (long long)auditlog_writer_next_seq(a->w));
			warned = 1;
		}
		if (auditlog_writer_tick(a->w, &cause) != 0)
			break;
		if (util_mono_ms() - a->last_anchor_ms >= a->anchor_ms)
			audit_anchor(a, 0);
		if (audit_idle_done(a))
			break;
	}
	if (cause == NULL)
		(void)auditlog_writer_sync(a->w, &cause);
	if (cause != NULL) {
		log_error("audit_sync_failed", "error=\"%s\"", cause);
		free(cause);
		a->status = 1;
	}
	audit_anchor(a, 1);
}

static int
audit_run(struct audit *a, const struct auditlog_writer_config *wc,
    struct follow_config *fc)
{
	struct auditlog_head h;
	char *cause = NULL;

	if ((a->w = auditlog_writer_open(wc, &cause)) == NULL) {
		log_error("audit_open_failed", "dir=%s error=\"%s\"", wc->dir,
		    cause);
		free(cause);
		return 1;
	}
	auditlog_writer_head(a->w, &h);
	a->anchored = h;
	a->last_anchor_ms = util_mono_ms();
	log_info("audit_resumed", "dir=%s file=audit-%08lld.jsonl line=%lld "
	    "seq=%lld next_seq=%lld head=%s", wc->dir, (long long)h.file_no,
	    (long long)h.line_no, (long long)h.seq,
	    (long long)auditlog_writer_next_seq(a->w), h.hash);
	fc->from = auditlog_writer_next_seq(a->w);
	if ((a->f = follow_new(fc, &cause)) == NULL) {
		log_error("audit_connect_failed", "error=\"%s\"", cause);
		free(cause);
		auditlog_writer_free(a->w);
		return 1;
	}
	audit_loop(a);
	follow_free(a->f);
	auditlog_writer_free(a->w);
	return a->status;
}

/* --- audit verify ------------------------------------------------------ */

struct audit_anchor_want {
	char		 hex[AUDITLOG_HEX_LEN + 1];
	int		 found;
	char		 file[AUDITLOG_NAME_MAX];
	int64_t		 line, seq;
};

struct audit_verify {
	int64_t		 problems, printed;
	struct audit_anchor_want anchors[AUDIT_ANCHORS_MAX];
	int		 nanchors;
	char		 first[AUDITLOG_NAME_MAX + 48];	/* first problem */
	/* the last complete line, and the last event seen */
	char		 head_file[AUDITLOG_NAME_MAX];
	int64_t		 head_line, head_seq;
	char		 head_hash[AUDITLOG_HEX_LEN + 1];
};

/* One problem: "FILE:LINE: seq S: what" (seq "-" when unknown). */
static void
audit_verify_print(struct audit_verify *v, const char *file, int64_t line,
    const char *seq, const char *what)
{
	if (v->problems++ == 0)
		xsnprintf(v->first, sizeof v->first, "%s:%lld seq %s", file,
		    (long long)line, seq);
	if (v->printed >= AUDIT_PRINT_MAX)
		return;
	v->printed++;
	printf("%s:%lld: seq %s: %s\n", file, (long long)line, seq, what);
}

static void
audit_verify_problem_cb(void *arg, const struct auditlog_rec *r, int64_t seq,
    const char *what)
{
	char s[24] = "-";

	if (seq > 0)
		xsnprintf(s, sizeof s, "%lld", (long long)seq);
	audit_verify_print(arg, r->file, r->line_no, s, what);
}

static void
audit_verify_line_cb(void *arg, const struct auditlog_rec *r,
    const struct auditlog_line *l)
{
	struct audit_verify *v = arg;
	char hex[AUDITLOG_HEX_LEN + 1];
	int i;

	util_hex_encode(l->hash, AUDITLOG_HASH_LEN, hex);
	xsnprintf(v->head_file, sizeof v->head_file, "%s", r->file);
	v->head_line = r->line_no;
	memcpy(v->head_hash, hex, sizeof hex);
	if (l->kind == AUDITLOG_EVENT)
		v->head_seq = l->seq;
	for (i = 0; i < v->nanchors; i++) {
		if (v->anchors[i].found || strcmp(v->anchors[i].hex, hex) != 0)
			continue;
		v->anchors[i].found = 1;
		xsnprintf(v->anchors[i].file, sizeof v->anchors[i].file, "%s",
		    r->file);
		v->anchors[i].line = r->line_no;
		v->anchors[i].seq = v->head_seq;
	}
}

/* Walk the whole log with the chain checker. -1 on an I/O error. */
static int
audit_verify_chain(const char *dir, struct audit_verify *v,
    struct auditlog_check *c)
{
	struct auditlog_reader *r;
	struct auditlog_rec rec;
	char *cause = NULL;
	int rc;

	auditlog_check_init(c, audit_verify_problem_cb, audit_verify_line_cb,
	    v);
	if ((r = auditlog_reader_open(dir, 0, &cause)) == NULL) {
		fprintf(stderr, "payhook audit verify: %s\n", cause);
		free(cause);
		return -1;
	}
	while ((rc = auditlog_reader_next(r, &rec, &cause)) == 1)
		auditlog_check_rec(c, &rec);
	auditlog_reader_free(r);
	if (rc < 0) {
		fprintf(stderr, "payhook audit verify: %s\n", cause);
		free(cause);
		return -1;
	}
	return 0;
}

/* The comparison with the service's replay: both streams in seq order. */
struct audit_cmp {
	struct audit_verify *v;
	struct auditlog_reader *r;
	struct auditlog_rec rec;
	struct auditlog_line line;
	int		 have;		/* rec/line hold the next log event */
	int		 started;	/* the service has sent an event */
	int64_t		 compared;
	int64_t		 last;		/* the last seq the service sent */
	int64_t		 miss_lo, miss_hi;	/* published, not in the log */
	char		 miss_file[AUDITLOG_NAME_MAX];
	int64_t		 miss_line;
	int64_t		 gone_lo, gone_hi;	/* no longer in the journal */
	char		 end_file[AUDITLOG_NAME_MAX];
	int64_t		 end_line;
};

static void
audit_cmp_next(struct audit_cmp *c)
{
	const char *why;
	char *cause = NULL;

	c->have = 0;
	while (auditlog_reader_next(c->r, &c->rec, &cause) == 1) {
		xsnprintf(c->end_file, sizeof c->end_file, "%s", c->rec.file);
		c->end_line = c->rec.line_no + 1;
		if (!c->rec.torn && auditlog_parse(c->rec.text, c->rec.len,
		    &c->line, &why) == 0 && c->line.kind == AUDITLOG_EVENT) {
			c->have = 1;
			return;
		}
	}
	free(cause);		/* already reported by the chain walk */
}

static void
audit_cmp_flush(struct audit_cmp *c)
{
	char seqs[48];

	if (c->miss_lo == 0)
		return;
	xsnprintf(seqs, sizeof seqs, "%lld..%lld", (long long)c->miss_lo,
	    (long long)c->miss_hi);
	audit_verify_print(c->v, c->miss_file, c->miss_line, seqs,
	    "published by the service, not in the log here");
	c->miss_lo = 0;
}

/* follow_event_cb: one event from the service's replay. */
static int
audit_cmp_cb(void *arg, int64_t seq, const char *json, size_t len)
{
	struct audit_cmp *c = arg;
	char s[24];

	for (; c->have && c->line.seq < seq; audit_cmp_next(c)) {
		if (!c->started) {
			if (c->gone_lo == 0)
				c->gone_lo = c->line.seq;
			c->gone_hi = c->line.seq;
			continue;
		}
		xsnprintf(s, sizeof s, "%lld", (long long)c->line.seq);
		audit_verify_print(c->v, c->rec.file, c->rec.line_no, s,
		    c->line.seq < c->last ? "out of seq order (or repeated) "
		    "in the log" : "in the log but the service's journal does "
		    "not have it");
	}
	c->started = 1;
	c->last = seq;
	if (c->have && c->line.seq == seq) {
		audit_cmp_flush(c);
		xsnprintf(s, sizeof s, "%lld", (long long)seq);
		if (len != c->line.event_len ||
		    memcmp(json, c->line.event, len) != 0)
			audit_verify_print(c->v, c->rec.file, c->rec.line_no,
			    s, "differs from the event the service published");
		else
			c->compared++;
		audit_cmp_next(c);
		return 0;
	}
	if (c->miss_lo == 0) {
		c->miss_lo = seq;
		xsnprintf(c->miss_file, sizeof c->miss_file, "%s",
		    c->have ? c->rec.file : c->end_file);
		c->miss_line = c->have ? c->rec.line_no : c->end_line;
	}
	c->miss_hi = seq;
	return 0;
}

/* Compare the log from first_seq with the replay endpoint; -1 when the
 * service could not be asked. */
static int
audit_verify_replay(const char *dir, struct audit_verify *v,
    struct follow_config *fc, int64_t first_seq)
{
	struct audit_cmp c;
	struct follow *f;
	char *cause = NULL, s[24];
	int rc = -1;

	memset(&c, 0, sizeof c);
	c.v = v;
	if ((c.r = auditlog_reader_open(dir, 0, &cause)) == NULL)
		goto out;
	audit_cmp_next(&c);
	fc->from = first_seq;
	fc->cb = audit_cmp_cb;
	fc->arg = &c;
	if ((f = follow_new(fc, &cause)) == NULL)
		goto out;
	if (follow_catch_up(f) != 0) {
		cause = xasprintf("replay %s did not answer", fc->replay_ep);
		follow_free(f);
		goto out;
	}
	audit_cmp_flush(&c);
	for (; c.have; audit_cmp_next(&c)) {
		xsnprintf(s, sizeof s, "%lld", (long long)c.line.seq);
		audit_verify_print(v, c.rec.file, c.rec.line_no, s, "in the "
		    "log but the service's journal does not have it");
	}
	if (c.gone_lo > 0)
		printf("note: seqs %lld..%lld are no longer in the service's "
		    "journal; not compared\n", (long long)c.gone_lo,
		    (long long)c.gone_hi);
	printf("payhook audit verify: %lld events compared with the service "
	    "(its head is seq %lld)\n", (long long)c.compared,
	    (long long)follow_head(f));
	follow_free(f);
	rc = 0;
out:
	if (cause != NULL) {
		fprintf(stderr, "payhook audit verify: %s\n", cause);
		free(cause);
	}
	auditlog_reader_free(c.r);
	return rc;
}

static void
audit_verify_anchors(struct audit_verify *v)
{
	int i;

	for (i = 0; i < v->nanchors; i++) {
		if (v->anchors[i].found) {
			printf("anchor %s: %s:%lld seq %lld\n", v->anchors[i].hex,
			    v->anchors[i].file, (long long)v->anchors[i].line,
			    (long long)v->anchors[i].seq);
			continue;
		}
		v->problems++;
		if (v->first[0] == '\0')
			xsnprintf(v->first, sizeof v->first, "anchor %.16s...",
			    v->anchors[i].hex);
		printf("anchor %s: not in the log: the chain was rewritten or "
		    "cut before it\n", v->anchors[i].hex);
	}
}

static int
audit_verify_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "replay", required_argument, NULL, 'R' },
		{ "curve-server-key", required_argument, NULL, 'k' },
		{ "curve-secret-key-file", required_argument, NULL, 's' },
		{ "anchor", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct audit_verify v;
	struct auditlog_check c;
	struct follow_config fc;
	struct follow_curve curve;
	const char *server_key = NULL, *secret_file = NULL, *dir;
	char *cause = NULL;
	int ch, rc;

	memset(&v, 0, sizeof v);
	memset(&fc, 0, sizeof fc);
	fc.name = "payhook audit verify";
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'R':
			fc.replay_ep = optarg;
			break;
		case 'k':
			server_key = optarg;
			break;
		case 's':
			secret_file = optarg;
			break;
		case 'a':
			if (v.nanchors == AUDIT_ANCHORS_MAX ||
			    strlen(optarg) != AUDITLOG_HEX_LEN ||
			    strspn(optarg, "0123456789abcdef") !=
			    AUDITLOG_HEX_LEN) {
				fprintf(stderr, "payhook audit verify: --anchor "
				    "takes a 64-char lower-case hex hash (at "
				    "most %d)\n", AUDIT_ANCHORS_MAX);
				return 2;
			}
			memcpy(v.anchors[v.nanchors++].hex, optarg,
			    AUDITLOG_HEX_LEN + 1);
			break;
		case 'h':
			audit_usage(stdout);
			return 0;
		default:
			audit_usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		audit_usage(stderr);
		return 2;
	}
	dir = argv[optind];
	if ((rc = follow_curve_load(&curve, server_key, secret_file,
	    &cause)) < 0) {
		fprintf(stderr, "payhook audit verify: %s\n", cause);
		free(cause);
		return 2;
	}
	fc.curve = rc == 0 ? &curve : NULL;
	fc.strict = 1;
	fc.stop = &audit_stop;
	signal(SIGPIPE, SIG_IGN);
	rc = 0;
	if (audit_verify_chain(dir, &v, &c) != 0)
		rc = 2;
	else if (c.files == 0) {
		printf("payhook audit verify: no audit files in %s\n", dir);
		rc = 1;
	} else if (fc.replay_ep != NULL && audit_verify_replay(dir, &v, &fc,
	    c.first_seq > 0 ? c.first_seq : c.next_seq > 0 ? c.next_seq :
	    1) != 0)
		rc = 2;
	explicit_bzero(&curve, sizeof curve);
	if (rc == 0) {
		audit_verify_anchors(&v);
		if (v.printed < v.problems)
			printf("... and %lld more\n",
			    (long long)(v.problems - v.printed));
	}
	if (rc == 0 && v.problems > 0) {
		printf("payhook audit verify: BROKEN: %lld problem%s; the "
		    "first at %s\n", (long long)v.problems,
		    v.problems == 1 ? "" : "s", v.first);
		rc = 1;
	} else if (rc == 0)
		printf("payhook audit verify: intact: %lld file%s, %lld "
		    "events, seqs %lld..%lld; head %s:%lld seq %lld hash %s\n",
		    (long long)c.files, c.files == 1 ? "" : "s",
		    (long long)c.events, (long long)c.first_seq,
		    (long long)c.last_seq, v.head_file, (long long)v.head_line,
		    (long long)v.head_seq, v.head_hash);
	return rc;
}

int
cmd_audit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "feed", required_argument, NULL, 'F' },
		{ "replay", required_argument, NULL, 'R' },
		{ "curve-server-key", required_argument, NULL, 'k' },
		{ "curve-secret-key-file", required_argument, NULL, 's' },
		{ "from", required_argument, NULL, 'f' },
		{ "rotate-bytes", required_argument, NULL, 'b' },
		{ "rotate-daily", no_argument, NULL, 'd' },
		{ "fsync-batch", required_argument, NULL, 'B' },
		{ "fsync-ms", required_argument, NULL, 'M' },
		{ "anchor-ms", required_argument, NULL, 'a' },
		{ "count", required_argument, NULL, 'n' },
		{ "idle-exit", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct auditlog_writer_config wc;
	struct follow_config fc;
	struct follow_curve curve;
	struct audit a;
	const char *server_key = NULL, *secret_file = NULL;
	char *cause = NULL;
	int ch, rc, li = 0;
	int64_t *target;

	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return audit_verify_cmd(argc - 1, argv + 1);
	memset(&a, 0, sizeof a);
	memset(&wc, 0, sizeof wc);
	memset(&fc, 0, sizeof fc);
	wc.rotate_bytes = AUDIT_ROTATE_BYTES;
	wc.fsync_batch = AUDIT_FSYNC_BATCH;
	wc.fsync_ms = AUDIT_FSYNC_MS;
	a.anchor_ms = AUDIT_ANCHOR_MS;
	fc.name = "payhook audit";
	fc.feed_ep = FOLLOW_FEED_DEFAULT;
	fc.replay_ep = FOLLOW_REPLAY_DEFAULT;
	while ((ch = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		target = NULL;
		switch (ch) {
		case 'o':
			wc.dir = optarg;
			break;
		case 'F':
			fc.feed_ep = optarg;
			break;
		case 'R':
			fc.replay_ep = optarg;
			break;
		case 'k':
			server_key = optarg;
			break;
		case 's':
			secret_file = optarg;
			break;
		case 'd':
			wc.rotate_daily = 1;
			break;
		case 'f':
			target = &wc.from;
			break;
		case 'b':
			target = &wc.rotate_bytes;
			break;
		case 'B':
			target = &wc.fsync_batch;
			break;
		case 'M':
			target = &wc.fsync_ms;
			break;
		case 'a':
			target = &a.anchor_ms;
			break;
		case 'n':
			target = &a.count;
			break;
		case 'i':
			target = &a.idle_ms;
			break;
		case 'h':
			audit_usage(stdout);
			return 0;
		default:
			audit_usage(stderr);
			return 2;
		}
		if (target != NULL &&
		    follow_int_opt("payhook audit", opts[li].name, optarg,
		    target) != 0)
			return 2;
	}
	if (optind != argc || wc.dir == NULL) {
		if (wc.dir == NULL)
			fprintf(stderr, "payhook audit: --out DIR is "
			    "required\n");
		audit_usage(stderr);
		return 2;
	}
	if (wc.fsync_batch < 1 || a.anchor_ms < 1) {
		fprintf(stderr, "payhook audit: --fsync-batch and --anchor-ms "
		    "must be at least 1\n");
		return 2;
	}
	if ((rc = follow_curve_load(&curve, server_key, secret_file,
	    &cause)) < 0) {
		fprintf(stderr, "payhook audit: %s\n", cause);
		free(cause);
		return 2;
	}
	fc.curve = rc == 0 ? &curve : NULL;
	fc.strict = 1;
	fc.stop = &audit_stop;
	fc.cb = audit_event_cb;
	fc.arg = &a;
	log_init(LOG_INFO, "payhook-audit");
	signal(SIGINT, audit_signal);
	signal(SIGTERM, audit_signal);
	signal(SIGPIPE, SIG_IGN);
	rc = audit_run(&a, &wc, &fc);
	explicit_bzero(&curve, sizeof curve);
	return rc;
}
