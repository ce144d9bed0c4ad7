/*
 * test_auditlog.c: criterion tests for dispatch/auditlog.c and
 * auditlog_writer.c: the canonical form against vectors computed outside
 * C, the strict line format, the chain checker on edited, removed,
 * reordered and torn lines, and the writer's resume, torn-tail repair,
 * rotation and refusal of seq gaps.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/auditlog.h"

#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"
/* sha256(ZERO64 "\nseq 1\n" "{\"seq\":1}"), by Python's hashlib */
#define EV1_HASH "749e6eb8f8280a2b1a09657176d4ffc729203cb09acfb7c214fc052e2a9c5275"
/* sha256(ZERO64 "\nfile 1 next_seq 1 opened 2026-11-21T10:00:00.000Z") */
#define HD1_HASH "705ec50348cfc15e8de84f9d820be8610245a9535613ddce5fea46e7b13f422c"

static char *
fmt_event(const unsigned char *prev, int64_t seq, const char *json,
    unsigned char *hash_out)
{
	struct auditlog_line l;
	size_t len;
	char *text;

	memset(&l, 0, sizeof l);
	l.kind = AUDITLOG_EVENT;
	l.seq = seq;
	l.event = json;
	l.event_len = strlen(json);
	memcpy(l.prev, prev, AUDITLOG_HASH_LEN);
	text = auditlog_format(&l, &len);
	if (hash_out != NULL)
		memcpy(hash_out, l.hash, AUDITLOG_HASH_LEN);
	text[len - 1] = '\0';		/* drop the newline */
	return text;
}

static char *
fmt_header(const unsigned char *prev, int64_t file_no, int64_t next_seq,
    unsigned char *hash_out)
{
	struct auditlog_line l;
	size_t len;
	char *text;

	memset(&l, 0, sizeof l);
	l.kind = AUDITLOG_HEADER;
	l.file_no = file_no;
	l.seq = next_seq;
	memcpy(l.opened, "2026-11-21T10:00:00.000Z", AUDITLOG_TIME_LEN + 1);
	memcpy(l.prev, prev, AUDITLOG_HASH_LEN);
	text = auditlog_format(&l, &len);
	memcpy(hash_out, l.hash, AUDITLOG_HASH_LEN);
	text[len - 1] = '\0';
	return text;
}

Test(auditlog, canonical_form_matches_vectors_computed_outside_c)
{
	static const unsigned char zero[AUDITLOG_HASH_LEN];
	unsigned char h[AUDITLOG_HASH_LEN];
	char hex[AUDITLOG_HEX_LEN + 1], *a, *b;

	a = fmt_event(zero, 1, "{\"seq\":1}", h);
	util_hex_encode(h, sizeof h, hex);
	cr_assert_str_eq(hex, EV1_HASH);
	cr_assert_str_eq(a, "{\"seq\":1,\"prev\":\"" ZERO64 "\",\"hash\":\""
	    EV1_HASH "\",\"event\":{\"seq\":1}}");
	b = fmt_header(zero, 1, 1, h);
	util_hex_encode(h, sizeof h, hex);
	cr_assert_str_eq(hex, HD1_HASH);
	cr_assert_str_eq(b, "{\"audit\":\"payhook.audit.v1\",\"file\":1,"
	    "\"next_seq\":1,\"opened\":\"2026-11-21T10:00:00.000Z\",\"prev\":\""
	    ZERO64 "\",\"hash\":\"" HD1_HASH "\"}");
	free(a);
	free(b);
}

Test(auditlog, parse_returns_the_event_bytes_exactly)
{
	static const unsigned char zero[AUDITLOG_HASH_LEN];
	const char *ev = "{\"seq\":7,\"a\":\"}\\\"{ x\",\"b\":[1, 2]}";
	struct auditlog_line l;
	unsigned char h[AUDITLOG_HASH_LEN], again[AUDITLOG_HASH_LEN];
	const char *why;
	char *text = fmt_event(zero, 7, ev, h);

	cr_assert_eq(auditlog_parse(text, strlen(text), &l, &why), 0);
	cr_assert_eq(l.kind, AUDITLOG_EVENT);
	cr_assert_eq(l.seq, 7);
	cr_assert_eq(l.event_len, strlen(ev));
	cr_assert_eq(memcmp(l.event, ev, l.event_len), 0);
	auditlog_hash(&l, again);
	cr_assert_eq(memcmp(again, h, sizeof h), 0);
	cr_assert_eq(memcmp(l.hash, h, sizeof h), 0);
	free(text);
}

Test(auditlog, parse_is_strict)
{
	static const char *bad[] = {
		"",
		"{}",
		"{\"seq\":01,\"prev\":\"" ZERO64 "\",\"hash\":\"" EV1_HASH
		    "\",\"event\":{\"seq\":1}}",
		"{\"seq\":1,\"prev\":\"" ZERO64 "\",\"hash\":\""
		    "749E6EB8F8280A2B1A09657176D4FFC729203CB09ACFB7C214FC052E2A9C5275"
		    "\",\"event\":{\"seq\":1}}",
		"{\"seq\":1, \"prev\":\"" ZERO64 "\",\"hash\":\"" EV1_HASH
		    "\",\"event\":{\"seq\":1}}",
		"{\"seq\":1,\"prev\":\"" ZERO64 "\",\"hash\":\"" EV1_HASH
		    "\",\"event\":{\"seq\":1}",
		"{\"seq\":1,\"prev\":\"" ZERO64 "\",\"hash\":\"" EV1_HASH
		    "\",\"event\":[1]}",
		"{\"seq\":1,\"prev\":\"" ZERO64 "\",\"hash\":\"" EV1_HASH "\"}",
		"{\"audit\":\"payhook.audit.v1\",\"file\":1,\"next_seq\":1,"
		    "\"opened\":\"2026-11-21T10:00:00Z\",\"prev\":\"" ZERO64
		    "\",\"hash\":\"" HD1_HASH "\"}",
		"{\"audit\":\"payhook.audit.v2\",\"file\":1,\"next_seq\":1,"
		    "\"opened\":\"2026-11-21T10:00:00.000Z\",\"prev\":\"" ZERO64
		    "\",\"hash\":\"" HD1_HASH "\"}",
		"{\"audit\":\"payhook.audit.v1\",\"file\":1,\"next_seq\":1,"
		    "\"opened\":\"2026-11-21T10:00:00.000Z\",\"prev\":\"" ZERO64
		    "\",\"hash\":\"" HD1_HASH "\"} ",
	};
	struct auditlog_line l;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(auditlog_parse(bad[i], strlen(bad[i]), &l, &why),
		    -1, "accepted bad[%zu]", i);
}

/* A small chain in memory: header + events 1..n (texts owned). */
struct mem {
	char		*text[16];
	int		 n;
};

static void
mem_build(struct mem *m, int events)
{
	static const unsigned char zero[AUDITLOG_HASH_LEN];
	unsigned char h[AUDITLOG_HASH_LEN];
	char json[64];
	int i;

	m->text[0] = fmt_header(zero, 1, 1, h);
	for (i = 1; i <= events; i++) {
		xsnprintf(json, sizeof json, "{\"seq\":%d,\"x\":\"%c\"}", i,
		    'a' + i);
		m->text[i] = fmt_event(h, i, json, h);
	}
	m->n = events + 1;
}

static void
mem_free(struct mem *m)
{
	int i;

	for (i = 0; i < m->n; i++)
		free(m->text[i]);
}

struct seen {
	int		 count;
	int64_t		 line[8], seq[8];
	char		 what[8][1024];
};

static void
seen_cb(void *arg, const struct auditlog_rec *r, int64_t seq, const char *what)
{
	struct seen *s = arg;

	if (s->count < 8) {
		s->line[s->count] = r->line_no;
		s->seq[s->count] = seq;
		xsnprintf(s->what[s->count], sizeof s->what[0], "%s", what);
	}
	s->count++;
}

/* Check lines in the given order (indexes into m; -1 ends). */
static struct auditlog_check
mem_check(struct mem *m, const int *order, struct seen *s)
{
	struct auditlog_check c;
	struct auditlog_rec rec;
	int i;

	memset(s, 0, sizeof *s);
	auditlog_check_init(&c, seen_cb, NULL, s);
	for (i = 0; order[i] >= 0; i++) {
		memset(&rec, 0, sizeof rec);
		rec.file = "audit-00000001.jsonl";
		rec.file_no = 1;
		rec.line_no = i + 1;
		rec.text = m->text[order[i]];
		rec.len = strlen(rec.text);
		auditlog_check_rec(&c, &rec);
	}
	return c;
}

Test(auditlog, check_accepts_an_intact_chain)
{
	struct mem m;
	struct seen s;
	static const int order[] = { 0, 1, 2, 3, 4, 5, -1 };
	struct auditlog_check c;

	mem_build(&m, 5);
	c = mem_check(&m, order, &s);
	cr_assert_eq(s.count, 0, "%s", s.what[0]);
	cr_assert_eq(c.events, 5);
	cr_assert_eq(c.first_seq, 1);
	cr_assert_eq(c.last_seq, 5);
	cr_assert_eq(c.next_seq, 6);
	mem_free(&m);
}

Test(auditlog, check_names_an_edited_line_once)
{
	struct mem m;
	struct seen s;
	static const int order[] = { 0, 1, 2, 3, 4, 5, -1 };

	mem_build(&m, 5);
	*strstr(m.text[3], "\"x\":\"d\"") = 'y';	/* "y":"d" */
	(void)mem_check(&m, order, &s);
	cr_assert_eq(s.count, 1);
	cr_assert_eq(s.line[0], 4);
	cr_assert_eq(s.seq[0], 3);
	cr_assert(strstr(s.what[0], "hash does not match") != NULL);
	mem_free(&m);
}

Test(auditlog, check_names_a_removed_line_and_its_seq)
{
	struct mem m;
	struct seen s;
	static const int order[] = { 0, 1, 2, 4, 5, -1 };

	mem_build(&m, 5);
	(void)mem_check(&m, order, &s);
	cr_assert_eq(s.count, 1);
	cr_assert_eq(s.line[0], 4);
	cr_assert_eq(s.seq[0], 4);
	cr_assert(strstr(s.what[0], "seqs 3..3 are missing") != NULL,
	    "%s", s.what[0]);
	cr_assert(strstr(s.what[0], "prev does not link") != NULL);
	mem_free(&m);
}

Test(auditlog, check_names_swapped_lines)
{
	struct mem m;
	struct seen s;
	static const int order[] = { 0, 1, 3, 2, 4, 5, -1 };

	mem_build(&m, 5);
	(void)mem_check(&m, order, &s);
	cr_assert_geq(s.count, 2);
	cr_assert_eq(s.line[0], 3);
	cr_assert_eq(s.seq[0], 3);
	cr_assert_eq(s.line[1], 4);
	cr_assert_eq(s.seq[1], 2);
	cr_assert(strstr(s.what[1], "out of order") != NULL);
	mem_free(&m);
}

Test(auditlog, check_reports_a_torn_line_without_taking_it)
{
	struct mem m;
	struct seen s;
	struct auditlog_check c;
	struct auditlog_rec rec;
	static const int order[] = { 0, 1, 2, -1 };

	mem_build(&m, 3);
	c = mem_check(&m, order, &s);
	memset(&rec, 0, sizeof rec);
	rec.file = "audit-00000001.jsonl";
	rec.file_no = 1;
	rec.line_no = 4;
	rec.text = m.text[3];
	rec.len = 40;
	rec.torn = 1;
	auditlog_check_rec(&c, &rec);
	cr_assert_eq(s.count, 1);
	cr_assert_eq(s.seq[0], 3);
	cr_assert(strstr(s.what[0], "torn") != NULL);
	cr_assert_eq(c.next_seq, 3);		/* resume at the torn seq */
	cr_assert_eq(c.file_lines, 3);
	mem_free(&m);
}

Test(auditlog, utc_day_boundaries)
{
	cr_assert_not(auditlog_other_day(0, 86399999));
	cr_assert(auditlog_other_day(86399999, 86400000));
	cr_assert(auditlog_other_day(1763719200000LL, 1763719200000LL +
	    86400000));
}

static char *
tmpdir(void)
{
	char *d = xstrdup("/tmp/payhook-auditlog-XXXXXX");

	cr_assert_not_null(mkdtemp(d));
	return d;
}

static void
rmdir_all(const char *d)
{
	char *cmd = xasprintf("rm -rf '%s'", d);

	cr_assert_eq(system(cmd), 0);
	free(cmd);
}

Test(auditlog, writer_resumes_repairs_a_torn_tail_and_rotates)
{
	struct auditlog_writer_config cfg;
	struct auditlog_writer *w;
	struct auditlog_head h;
	char *d = tmpdir(), *cause = NULL, json[64], *path;
	int64_t *nums, i;
	size_t n;
	FILE *f;

	memset(&cfg, 0, sizeof cfg);
	cfg.dir = d;
	cfg.rotate_bytes = 1000;
	cfg.fsync_batch = 4;
	cfg.fsync_ms = 100000;
	w = auditlog_writer_open(&cfg, &cause);
	cr_assert_not_null(w, "%s", cause);
	cr_assert_eq(auditlog_writer_next_seq(w), 1);
	for (i = 1; i <= 20; i++) {
		xsnprintf(json, sizeof json, "{\"seq\":%lld}", (long long)i);
		cr_assert_eq(auditlog_writer_append(w, i, json, strlen(json),
		    &cause), 0, "%s", cause);
	}
	auditlog_writer_head(w, &h);
	cr_assert_eq(h.seq, 20);		/* 20 = 5 full batches */
	cr_assert_eq(auditlog_writer_append(w, 22, "{\"seq\":22}", 10,
	    &cause), -1, "a gap is refused");
	free(cause);
	cause = NULL;
	cr_assert_null(auditlog_writer_open(&cfg, &cause), "locked");
	free(cause);
	cause = NULL;
	auditlog_writer_free(w);
	cr_assert_eq(auditlog_list(d, &nums, &n, &cause), 0);
	cr_assert_gt(n, 2, "rotated by size");
	path = xasprintf("%s/audit-%08lld.jsonl", d, (long long)nums[n - 1]);
	free(nums);
	f = fopen(path, "a");
	cr_assert_not_null(f);
	fputs("{\"seq\":21,\"prev\":\"00", f);	/* a torn write */
	fclose(f);
	w = auditlog_writer_open(&cfg, &cause);
	cr_assert_not_null(w, "%s", cause);
	cr_assert_eq(auditlog_writer_next_seq(w), 21);
	cr_assert_eq(auditlog_writer_append(w, 21, "{\"seq\":21}", 10,
	    &cause), 0);
	cr_assert_eq(auditlog_writer_sync(w, &cause), 0);
	auditlog_writer_free(w);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	{
		char buf[4096];
		size_t got = fread(buf, 1, sizeof buf - 1, f);

		buf[got] = '\0';
		cr_assert_null(strstr(buf, "\"prev\":\"00{"), "torn bytes kept");
		cr_assert_eq(buf[got - 1], '\n');
	}
	fclose(f);
	free(path);
	rmdir_all(d);
	free(d);
}
