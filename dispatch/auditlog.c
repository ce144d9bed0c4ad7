/*
 * auditlog.c: the audit log's canonical form and SHA-256 chain, its strict
 * line format, the reader over a directory of files and the chain checker
 * used by `payhook audit verify` and by the writer's recovery. Any thread
 * (no shared state). It never trusts a line it has not parsed strictly,
 * and never re-serialises an event: the bytes as published are hashed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/auditlog.h"

#define AUDITLOG_SEQ_DIGITS	18
#define AUDITLOG_WHAT_MAX	1024

static const unsigned char auditlog_zero[AUDITLOG_HASH_LEN];

/* prev as lower-case hex into out (AUDITLOG_HEX_LEN + 1). */
static void
auditlog_hex(const unsigned char *h, char *out)
{
	util_hex_encode(h, AUDITLOG_HASH_LEN, out);
}

void
auditlog_hash(const struct auditlog_line *l, unsigned char *out)
{
	char prev[AUDITLOG_HEX_LEN + 1], mid[128];
	EVP_MD_CTX *ctx;
	unsigned int n = 0;
	int ok;

	auditlog_hex(l->prev, prev);
	if (l->kind == AUDITLOG_EVENT)
		xsnprintf(mid, sizeof mid, "\nseq %lld\n", (long long)l->seq);
	else
		xsnprintf(mid, sizeof mid, "\nfile %lld next_seq %lld opened %s",
		    (long long)l->file_no, (long long)l->seq, l->opened);
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		fatalx(1, "EVP_MD_CTX_new failed");
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, prev, AUDITLOG_HEX_LEN) == 1 &&
	    EVP_DigestUpdate(ctx, mid, strlen(mid)) == 1 &&
	    (l->kind != AUDITLOG_EVENT || l->event_len == 0 ||
	    EVP_DigestUpdate(ctx, l->event, l->event_len) == 1) &&
	    EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == AUDITLOG_HASH_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		fatalx(1, "SHA-256 failed");
}

char *
auditlog_format(struct auditlog_line *l, size_t *len)
{
	char prev[AUDITLOG_HEX_LEN + 1], hash[AUDITLOG_HEX_LEN + 1], *out;

	auditlog_hash(l, l->hash);
	auditlog_hex(l->prev, prev);
	auditlog_hex(l->hash, hash);
	if (l->kind == AUDITLOG_EVENT)
		out = xasprintf("{\"seq\":%lld,\"prev\":\"%s\",\"hash\":\"%s\","
		    "\"event\":%.*s}\n", (long long)l->seq, prev, hash,
		    (int)l->event_len, l->event);
	else
		out = xasprintf("{\"audit\":\"%s\",\"file\":%lld,\"next_seq\":"
		    "%lld,\"opened\":\"%s\",\"prev\":\"%s\",\"hash\":\"%s\"}\n",
		    AUDITLOG_FORMAT, (long long)l->file_no, (long long)l->seq,
		    l->opened, prev, hash);
	*len = strlen(out);
	return out;
}

/* A cursor for the strict parser. */
struct auditlog_cur {
	const char	*p, *end;
};

static int
auditlog_lit(struct auditlog_cur *c, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
		return -1;
	c->p += n;
	return 0;
}

/* A positive decimal without leading zeros. */
static int
auditlog_num(struct auditlog_cur *c, int64_t *v)
{
	int64_t n = 0;
	int digits = 0;

	if (c->p < c->end && *c->p == '0')
		return -1;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (++digits > AUDITLOG_SEQ_DIGITS)
			return -1;
		n = n * 10 + (*c->p++ - '0');
	}
	if (digits == 0)
		return -1;
	*v = n;
	return 0;
}

static int
auditlog_hexfield(struct auditlog_cur *c, unsigned char *out)
{
	if (c->end - c->p < AUDITLOG_HEX_LEN ||
	    util_hex_decode_lower(c->p, AUDITLOG_HEX_LEN, out,
	    AUDITLOG_HASH_LEN) != 0)
		return -1;
	c->p += AUDITLOG_HEX_LEN;
	return 0;
}

static int
auditlog_parse_header(struct auditlog_cur *c, struct auditlog_line *l,
    const char **why)
{
	char again[AUDITLOG_TIME_LEN + 8];
	int64_t ms;

	l->kind = AUDITLOG_HEADER;
	if (auditlog_lit(c, "{\"audit\":\"" AUDITLOG_FORMAT "\",\"file\":") ||
	    auditlog_num(c, &l->file_no) ||
	    auditlog_lit(c, ",\"next_seq\":") || auditlog_num(c, &l->seq) ||
	    auditlog_lit(c, ",\"opened\":\"")) {
		*why = "not a well-formed header line";
		return -1;
	}
	if (c->end - c->p < AUDITLOG_TIME_LEN ||
	    util_parse_time_ms(c->p, AUDITLOG_TIME_LEN, &ms) != 0) {
		*why = "bad opened time in the header";
		return -1;
	}
	util_format_time_ms(ms, again, sizeof again);
	if (memcmp(again, c->p, AUDITLOG_TIME_LEN) != 0) {
		*why = "opened time not in canonical form";
		return -1;
	}
	memcpy(l->opened, c->p, AUDITLOG_TIME_LEN);
	l->opened[AUDITLOG_TIME_LEN] = '\0';
	c->p += AUDITLOG_TIME_LEN;
	if (auditlog_lit(c, "\",\"prev\":\"") || auditlog_hexfield(c, l->prev) ||
	    auditlog_lit(c, "\",\"hash\":\"") || auditlog_hexfield(c, l->hash) ||
	    auditlog_lit(c, "\"}") || c->p != c->end) {
		*why = "not a well-formed header line";
		return -1;
	}
	return 0;
}

int
auditlog_parse(const char *text, size_t len, struct auditlog_line *l,
    const char **why)
{
	struct auditlog_cur c = { text, text + len };

	memset(l, 0, sizeof *l);
	if (len > 9 && memcmp(text, "{\"audit\":", 9) == 0)
		return auditlog_parse_header(&c, l, why);
	l->kind = AUDITLOG_EVENT;
	if (auditlog_lit(&c, "{\"seq\":") || auditlog_num(&c, &l->seq) ||
	    auditlog_lit(&c, ",\"prev\":\"") || auditlog_hexfield(&c, l->prev) ||
	    auditlog_lit(&c, "\",\"hash\":\"") || auditlog_hexfield(&c, l->hash) ||
	    auditlog_lit(&c, "\",\"event\":")) {
		*why = "not a well-formed event line";
		return -1;
	}
	/* The rest is the event object and the line's closing brace. */
	if (c.end - c.p < 3 || c.p[0] != '{' || c.end[-1] != '}' ||
	    c.end[-2] != '}') {
		*why = "not a well-formed event line";
		return -1;
	}
	l->event = c.p;
	l->event_len = (size_t)(c.end - c.p) - 1;
	return 0;
}

void
auditlog_file_name(int64_t file_no, char *name)
{
	xsnprintf(name, AUDITLOG_NAME_MAX, "audit-%08lld.jsonl",
	    (long long)file_no);
}

/* The number in "audit-NNNNNNNN.jsonl"; -1 for any other name. */
static int64_t
auditlog_name_no(const char *name)
{
	char digits[9];
	int64_t v;

	if (strlen(name) != 20 || strncmp(name, "audit-", 6) != 0 ||
	    strcmp(name + 14, ".jsonl") != 0)
		return -1;
	memcpy(digits, name + 6, 8);
	digits[8] = '\0';
	if (strspn(digits, "0123456789") != 8 ||
	    util_parse_int64(digits[0] == '0' ? digits + strspn(digits, "0") :
	    digits, 1, 99999999, &v) != 0)
		return -1;
	return v;
}

static int
auditlog_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int
auditlog_list(const char *dir, int64_t **nums, size_t *n, char **cause)
{
	DIR *d;
	struct dirent *de;
	size_t cap = 0;
	int64_t v;

	*nums = NULL;
	*n = 0;
	if ((d = opendir(dir)) == NULL) {
		*cause = xasprintf("%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if ((v = auditlog_name_no(de->d_name)) < 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*nums = xreallocarray(*nums, cap, sizeof **nums);
		}
		(*nums)[(*n)++] = v;
	}
	closedir(d);
	if (*n > 0)
		qsort(*nums, *n, sizeof **nums, auditlog_cmp);
	return 0;
}

int
auditlog_other_day(int64_t a_ms, int64_t b_ms)
{
	const int64_t day = 86400000;

	return (a_ms >= 0 ? a_ms / day : -1) != (b_ms >= 0 ? b_ms / day : -1);
}

struct auditlog_reader {
	char		*dir;
	int64_t		*nums;
	size_t		 n, idx;
	FILE		*fp;
	char		 name[AUDITLOG_NAME_MAX];
	int64_t		 file_no, line_no, offset;
	int		 yielded;
	char		*buf;
	size_t		 cap;
};

struct auditlog_reader *
auditlog_reader_open(const char *dir, int64_t first_file, char **cause)
{
	struct auditlog_reader *r = xcalloc(1, sizeof *r);

	if (auditlog_list(dir, &r->nums, &r->n, cause) != 0) {
		free(r);
		return NULL;
	}
	r->dir = xstrdup(dir);
	while (r->idx < r->n && r->nums[r->idx] < first_file)
		r->idx++;
	return r;
}

static int
auditlog_reader_open_next(struct auditlog_reader *r, char **cause)
{
	char *path;

	r->file_no = r->nums[r->idx++];
	auditlog_file_name(r->file_no, r->name);
	path = xasprintf("%s/%s", r->dir, r->name);
	r->fp = fopen(path, "re");
	if (r->fp == NULL)
		*cause = xasprintf("%s: %s", path, strerror(errno));
	free(path);
	r->line_no = r->offset = 0;
	r->yielded = 0;
	return r->fp != NULL ? 0 : -1;
}

int
auditlog_reader_next(struct auditlog_reader *r, struct auditlog_rec *rec,
    char **cause)
{
	ssize_t got;

	for (;;) {
		if (r->fp == NULL) {
			if (r->idx >= r->n)
				return 0;
			if (auditlog_reader_open_next(r, cause) != 0)
				return -1;
		}
		memset(rec, 0, sizeof *rec);
		rec->file = r->name;
		rec->file_no = r->file_no;
		errno = 0;
		if ((got = getline(&r->buf, &r->cap, r->fp)) < 0) {
			if (ferror(r->fp)) {
				*cause = xasprintf("%s: %s", r->name,
				    strerror(errno ? errno : EIO));
				return -1;
			}
			fclose(r->fp);
			r->fp = NULL;
			if (r->yielded)
				continue;
			rec->line_no = 1;	/* an empty file */
			rec->text = "";
			rec->torn = 1;
			return 1;
		}
		r->yielded = 1;
		rec->line_no = ++r->line_no;
		rec->offset = r->offset;
		r->offset += got;
		rec->text = r->buf;
		rec->len = (size_t)got;
		if (r->buf[got - 1] == '\n')
			rec->len--;
		else
			rec->torn = 1;
		return 1;
	}
}

void
auditlog_reader_free(struct auditlog_reader *r)
{
	if (r == NULL)
		return;
	if (r->fp != NULL)
		fclose(r->fp);
	free(r->buf);
	free(r->nums);
	free(r->dir);
	free(r);
}

void
auditlog_check_init(struct auditlog_check *c, auditlog_problem_fn problem,
    auditlog_line_fn line, void *arg)
{
	memset(c, 0, sizeof *c);
	c->problem = problem;
	c->line = line;
	c->arg = arg;
}

/* Append "; "-separated text to what. */
static void __attribute__((format(printf, 2, 3)))
auditlog_add(char *what, const char *fmt, ...)
{
	size_t n = strlen(what);
	va_list ap;

	if (n + 3 >= AUDITLOG_WHAT_MAX)
		return;
	if (n > 0) {
		memcpy(what + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(what + n, AUDITLOG_WHAT_MAX - n, fmt, ap);
	va_end(ap);
}

/* The seq at the start of a damaged event line, else -1. */
static int64_t
auditlog_damaged_seq(const struct auditlog_rec *r)
{
	struct auditlog_cur c = { r->text, r->text + r->len };
	int64_t v;

	if (auditlog_lit(&c, "{\"seq\":") || auditlog_num(&c, &v) ||
	    c.p >= c.end || *c.p != ',')
		return -1;
	return v;
}

/* Is the event's own "seq" the line's? */
static int
auditlog_event_seq_ok(const struct auditlog_line *l, char *what)
{
	cJSON *root = cJSON_ParseWithLength(l->event, l->event_len);
	const cJSON *v;
	int ok = 0;

	v = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "seq") : NULL;
	if (!cJSON_IsNumber(v))
		auditlog_add(what, "the event is not a JSON object with a seq");
	else if (v->valuedouble != (double)l->seq)
		auditlog_add(what, "the event's own seq is %.0f", v->valuedouble);
	else
		ok = 1;
	cJSON_Delete(root);
	return ok;
}

static void
auditlog_check_seq(struct auditlog_check *c, int64_t seq, char *what)
{
	if (c->next_seq <= 0 || seq == c->next_seq)
		return;
	if (seq > c->next_seq)
		auditlog_add(what, "seq %lld where %lld was expected: seqs "
		    "%lld..%lld are missing here", (long long)seq,
		    (long long)c->next_seq, (long long)c->next_seq,
		    (long long)seq - 1);
	else
		auditlog_add(what, "seq %lld is repeated or out of order "
		    "(expected %lld)", (long long)seq, (long long)c->next_seq);
}

static void
auditlog_check_header(struct auditlog_check *c, const struct auditlog_rec *r,
    const struct auditlog_line *l, int64_t missing_lo, char *what)
{
	char a[AUDITLOG_NAME_MAX], b[AUDITLOG_NAME_MAX];
	int first = c->files == 1 && c->file_lines == 1;

	if (r->line_no != 1)
		auditlog_add(what, "a file header in the middle of a file");
	if (l->file_no != r->file_no)
		auditlog_add(what, "the header says file %lld",
		    (long long)l->file_no);
	if (r->line_no == 1 && missing_lo < r->file_no) {
		auditlog_file_name(missing_lo, a);
		auditlog_file_name(r->file_no - 1, b);
		auditlog_add(what, "%s%s%s %s missing", a,
		    missing_lo < r->file_no - 1 ? ".." : "",
		    missing_lo < r->file_no - 1 ? b : "",
		    missing_lo < r->file_no - 1 ? "are" : "is");
		if (c->next_seq > 0 && l->seq > c->next_seq)
			auditlog_add(what, "seqs %lld..%lld are missing",
			    (long long)c->next_seq, (long long)l->seq - 1);
		return;
	}
	if (l->file_no == 1 && r->file_no == 1) {
		if (memcmp(l->prev, auditlog_zero, AUDITLOG_HASH_LEN) != 0)
			auditlog_add(what, "file 1 does not start from the "
			    "zero hash");
	} else if (c->have_prev && !first &&
	    memcmp(l->prev, c->prev, AUDITLOG_HASH_LEN) != 0)
		auditlog_add(what, "prev does not match the last hash of %s "
		    "(line %lld): lines were removed from its end or a file "
		    "was replaced", c->prev_file, (long long)c->prev_line);
	if (c->next_seq > 0 && l->seq > c->next_seq)
		auditlog_add(what, "this file starts at seq %lld: seqs "
		    "%lld..%lld are missing", (long long)l->seq,
		    (long long)c->next_seq, (long long)l->seq - 1);
	else if (c->next_seq > 0 && l->seq < c->next_seq)
		auditlog_add(what, "this file starts at seq %lld, already "
		    "held (expected %lld)", (long long)l->seq,
		    (long long)c->next_seq);
}

static void
auditlog_check_event(struct auditlog_check *c, const struct auditlog_rec *r,
    const struct auditlog_line *l, char *what)
{
	if (r->line_no == 1)
		auditlog_add(what, "the first line is not a file header");
	if (c->have_prev && memcmp(l->prev, c->prev, AUDITLOG_HASH_LEN) != 0)
		auditlog_add(what, "prev does not link to the hash of %s line "
		    "%lld: a line before this one was removed, reordered or "
		    "edited", c->prev_file, (long long)c->prev_line);
	auditlog_check_seq(c, l->seq, what);
	(void)auditlog_event_seq_ok(l, what);
}

/* The walk's state after a complete line. */
static void
auditlog_anchor(struct auditlog_check *c, const struct auditlog_rec *r,
    const struct auditlog_line *l)
{
	memcpy(c->prev, l->hash, AUDITLOG_HASH_LEN);
	c->have_prev = 1;
	xsnprintf(c->prev_file, sizeof c->prev_file, "%s", r->file);
	c->prev_line = r->line_no;
	if (l->kind == AUDITLOG_HEADER) {
		c->next_seq = l->seq;
		memcpy(c->opened, l->opened, sizeof c->opened);
		return;
	}
	if (l->seq + 1 > c->next_seq)
		c->next_seq = l->seq + 1;
	c->events++;
	if (c->first_seq == 0 || l->seq < c->first_seq)
		c->first_seq = l->seq;
	if (l->seq > c->last_seq)
		c->last_seq = l->seq;
}

static void
auditlog_report(struct auditlog_check *c, const struct auditlog_rec *r,
    int64_t seq, const char *what)
{
	c->problems++;
	if (c->problem != NULL)
		c->problem(c->arg, r, seq, what);
}

void
auditlog_check_rec(struct auditlog_check *c, const struct auditlog_rec *r)
{
	struct auditlog_line l;
	unsigned char h[AUDITLOG_HASH_LEN];
	char what[AUDITLOG_WHAT_MAX] = "";
	const char *why = NULL;
	int64_t missing_lo = r->file_no, seq;

	if (r->file_no != c->file_no) {
		missing_lo = c->file_no > 0 ? c->file_no + 1 :
		    c->trust_start ? r->file_no : 1;
		c->file_no = r->file_no;
		c->files++;
		c->header_ok = 0;
		c->file_lines = 0;
		c->opened[0] = '\0';
	}
	if (r->torn) {
		/* Not part of the chain: the state stays at the line before. */
		seq = auditlog_damaged_seq(r);
		if (r->len == 0 && r->line_no == 1)
			auditlog_report(c, r, -1, "empty file: no header");
		else
			auditlog_report(c, r, seq, r->line_no == 1 ?
			    "torn header: the file ends before its first "
			    "newline" : "torn line: the file ends without a "
			    "newline (a write cut short, or the file was "
			    "truncated)");
		return;
	}
	c->file_lines++;
	if (auditlog_parse(r->text, r->len, &l, &why) != 0) {
		seq = auditlog_damaged_seq(r);
		if (seq < 0 && c->next_seq > 0 && r->line_no > 1)
			seq = c->next_seq;
		auditlog_add(what, "malformed line (%s)", why);
		auditlog_report(c, r, seq, what);
		c->have_prev = 0;	/* the next link cannot be checked */
		if (seq > 0 && seq + 1 > c->next_seq)
			c->next_seq = seq + 1;
		return;
	}
	auditlog_hash(&l, h);
	if (memcmp(h, l.hash, AUDITLOG_HASH_LEN) != 0)
		auditlog_add(what, "the hash does not match the line's content "
		    "(the line was edited)");
	if (l.kind == AUDITLOG_HEADER)
		auditlog_check_header(c, r, &l, missing_lo, what);
	else
		auditlog_check_event(c, r, &l, what);
	if (what[0] != '\0')
		auditlog_report(c, r, l.kind == AUDITLOG_EVENT ? l.seq : -1,
		    what);
	else if (l.kind == AUDITLOG_HEADER && r->line_no == 1)
		c->header_ok = 1;
	auditlog_anchor(c, r, &l);
	if (c->line != NULL)
		c->line(c->arg, r, &l);
}
