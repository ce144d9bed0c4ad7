/*
 * json.c: strict RFC 8259 tokenizer into a caller-owned flat token array,
 * plus helpers to compare, unescape and read tokens. Any thread; no
 * globals. Must never allocate, never read past len, never write past cap.
 */
#include <stdint.h>
#include <string.h>

#include "receiver/json.h"

#define JSON_DUP_LINEAR		16	/* objects up to this size: pairwise */
#define JSON_DUP_BUCKETS	256	/* bigger ones: hash (power of two) */

struct json_state {
	const unsigned char	*s;
	size_t			 len;
	size_t			 pos;
	struct json_tok		*toks;
	size_t			 cap;
	size_t			 n;
	uint32_t		 stack[JSON_DEPTH_MAX];
	size_t			 depth;
};

static const char *const json_error_names[] = {
	[JSON_OK] = "ok",
	[JSON_ERR_EMPTY] = "empty body",
	[JSON_ERR_SYNTAX] = "syntax error",
	[JSON_ERR_TRUNCATED] = "truncated",
	[JSON_ERR_TRAILING] = "trailing bytes after the value",
	[JSON_ERR_BOM] = "leading byte order mark",
	[JSON_ERR_UTF8] = "invalid UTF-8",
	[JSON_ERR_CONTROL] = "control character in a string",
	[JSON_ERR_ESCAPE] = "bad escape",
	[JSON_ERR_SURROGATE] = "unpaired surrogate escape",
	[JSON_ERR_NUMBER] = "malformed number",
	[JSON_ERR_DEPTH] = "nested too deeply",
	[JSON_ERR_TOKENS] = "too many tokens",
	[JSON_ERR_DUPKEY] = "duplicate object key",
	[JSON_ERR_TOOBIG] = "too large",
};

const char *
json_error_str(enum json_error e)
{
	if ((size_t)e >= sizeof json_error_names / sizeof json_error_names[0])
		return "unknown error";
	return json_error_names[e];
}

static inline void
json_skip_ws(struct json_state *st)
{
	unsigned char c;

	while (st->pos < st->len && (c = st->s[st->pos]) <= ' ' &&
	    (c == ' ' || c == '\t' || c == '\n' || c == '\r'))
		st->pos++;
}

static int
json_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at p (caller checked the length); -1 if not hex. */
static long
json_hex4(const unsigned char *p)
{
	long v = 0;
	int i, h;

	for (i = 0; i < 4; i++) {
		if ((h = json_hex(p[i])) < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

/* "\uXXXX" at p with avail bytes: its value, or why not. */
static enum json_error
json_scan_u(const unsigned char *p, size_t avail, long *cp)
{
	size_t i;

	for (i = 2; i < 6; i++) {
		if (i >= avail)
			return JSON_ERR_TRUNCATED;
		if (json_hex(p[i]) < 0)
			return JSON_ERR_ESCAPE;
	}
	*cp = json_hex4(p + 2);
	return JSON_OK;
}

/* New token of type at the current position; NULL when the buffer is full. */
static struct json_tok *
json_push(struct json_state *st, enum json_type type)
{
	struct json_tok *t;

	if (st->n == st->cap)
		return NULL;
	t = &st->toks[st->n];
	t->start = (uint32_t)st->pos;
	t->end = (uint32_t)st->pos;
	t->size = 0;
	t->next = (uint32_t)(st->n + 1);
	t->type = (uint8_t)type;
	t->flags = 0;
	st->n++;
	return t;
}

/* Length of the valid UTF-8 sequence at s[0..avail), or 0 if invalid. */
static size_t
json_utf8_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* UTF-16 surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* > U+10FFFF */
	} else
		return 0;		/* continuation, C0/C1, F5..FF */
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return n;
}

/* Backslash escape at st->pos; advances past it. */
static enum json_error
json_scan_escape(struct json_state *st)
{
	const unsigned char *p = st->s + st->pos;
	size_t avail = st->len - st->pos;
	enum json_error e;
	long cp, lo;

	if (avail < 2)
		return JSON_ERR_TRUNCATED;
	if (p[1] != 'u') {
		if (p[1] == '\0' || strchr("\"\\/bfnrt", p[1]) == NULL)
			return JSON_ERR_ESCAPE;
		st->pos += 2;
		return JSON_OK;
	}
	if ((e = json_scan_u(p, avail, &cp)) != JSON_OK)
		return e;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return JSON_ERR_SURROGATE;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (avail < 8 || p[6] != '\\' || p[7] != 'u')
			return JSON_ERR_SURROGATE;
		if ((e = json_scan_u(p + 6, avail - 6, &lo)) != JSON_OK)
			return e;
		if (lo < 0xdc00 || lo > 0xdfff)
			return JSON_ERR_SURROGATE;
		st->pos += 6;
	}
	st->pos += 6;
	return JSON_OK;
}

/* Bytes that end a run of plain string content. */
static inline int
json_str_stop(unsigned char c)
{
	return c < 0x20 || c >= 0x80 || c == '"' || c == '\\';
}

/* Does any byte of v need a closer look: '"', '\\', < 0x20 or >= 0x80? */
static inline uint64_t
json_swar_stop(uint64_t v)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t highs = 0x8080808080808080ULL;
	uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');

	return (((q - ones) & ~q) | ((b - ones) & ~b) | (v - ones * 0x20) |
	    v) & highs;
}

/* Skip plain string bytes, eight at a time while possible. */
static inline void
json_skip_plain(struct json_state *st)
{
	uint64_t v;

	while (st->len - st->pos >= 8) {
		memcpy(&v, st->s + st->pos, 8);
		if (json_swar_stop(v) != 0)
			break;
		st->pos += 8;
	}
	while (st->pos < st->len && !json_str_stop(st->s[st->pos]))
		st->pos++;
}

/* String starting at the opening quote at st->pos. */
static enum json_error
json_scan_string(struct json_state *st, uint8_t flags)
{
	struct json_tok *t;
	enum json_error e;
	unsigned char c;
	size_t n;

	if ((t = json_push(st, JSON_STRING)) == NULL)
		return JSON_ERR_TOKENS;
	t->flags = flags;
	t->start = (uint32_t)++st->pos;
	for (;;) {
		json_skip_plain(st);
		if (st->pos == st->len)
			return JSON_ERR_TRUNCATED;
		c = st->s[st->pos];
		if (c == '"')
			break;
		if (c == '\\') {
			t->flags |= JSON_F_ESCAPED;
			if ((e = json_scan_escape(st)) != JSON_OK)
				return e;
		} else if (c < 0x20)
			return JSON_ERR_CONTROL;
		else {
			n = json_utf8_len(st->s + st->pos, st->len - st->pos);
			if (n == 0)
				return JSON_ERR_UTF8;
			st->pos += n;
		}
	}
	t->end = (uint32_t)st->pos++;
	return JSON_OK;
}

static void
json_skip_digits(struct json_state *st)
{
	while (st->pos < st->len && st->s[st->pos] >= '0' &&
	    st->s[st->pos] <= '9')
		st->pos++;
}

/* Digits required at st->pos: 1-or-more, else a malformed number. */
static enum json_error
json_need_digits(struct json_state *st)
{
	if (st->pos == st->len || st->s[st->pos] < '0' || st->s[st->pos] > '9')
		return JSON_ERR_NUMBER;
	json_skip_digits(st);
	return JSON_OK;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static enum json_error
json_scan_number(struct json_state *st)
{
	struct json_tok *t;
	const unsigned char *s = st->s;

	if ((t = json_push(st, JSON_NUMBER)) == NULL)
		return JSON_ERR_TOKENS;
	if (s[st->pos] == '-')
		st->pos++;
	if (st->pos < st->len && s[st->pos] == '0') {
		st->pos++;
		if (st->pos < st->len && s[st->pos] >= '0' && s[st->pos] <= '9')
			return JSON_ERR_NUMBER;
	} else if (json_need_digits(st) != JSON_OK)
		return JSON_ERR_NUMBER;
	if (st->pos < st->len && s[st->pos] == '.') {
		st->pos++;
		t->flags |= JSON_F_FRAC;
		if (json_need_digits(st) != JSON_OK)
			return JSON_ERR_NUMBER;
	}
	if (st->pos < st->len && (s[st->pos] == 'e' || s[st->pos] == 'E')) {
		st->pos++;
		t->flags |= JSON_F_FRAC;
		if (st->pos < st->len && (s[st->pos] == '+' || s[st->pos] == '-'))
			st->pos++;
		if (json_need_digits(st) != JSON_OK)
			return JSON_ERR_NUMBER;
	}
	t->end = (uint32_t)st->pos;
	return JSON_OK;
}

static enum json_error
json_scan_literal(struct json_state *st, const char *word, enum json_type type)
{
	size_t n = strlen(word);
	struct json_tok *t;

	if (st->len - st->pos < n) {
		if (memcmp(st->s + st->pos, word, st->len - st->pos) == 0)
			return JSON_ERR_TRUNCATED;
		return JSON_ERR_SYNTAX;
	}
	if (memcmp(st->s + st->pos, word, n) != 0)
		return JSON_ERR_SYNTAX;
	if ((t = json_push(st, type)) == NULL)
		return JSON_ERR_TOKENS;
	st->pos += n;
	t->end = (uint32_t)st->pos;
	return JSON_OK;
}

/* A scalar value, or the opening of a container (pushed on the stack). */
static enum json_error
json_scan_value(struct json_state *st)
{
	struct json_tok *t;
	unsigned char c;

	if (st->depth > 0 && st->toks[st->stack[st->depth - 1]].type ==
	    JSON_ARRAY)
		st->toks[st->stack[st->depth - 1]].size++;
	c = st->s[st->pos];
	switch (c) {
	case '{':
	case '[':
		if (st->depth == JSON_DEPTH_MAX)
			return JSON_ERR_DEPTH;
		if ((t = json_push(st, c == '{' ? JSON_OBJECT : JSON_ARRAY)) ==
		    NULL)
			return JSON_ERR_TOKENS;
		st->stack[st->depth++] = (uint32_t)(st->n - 1);
		st->pos++;
		return JSON_OK;
	case '"':
		return json_scan_string(st, 0);
	case 't':
		return json_scan_literal(st, "true", JSON_TRUE);
	case 'f':
		return json_scan_literal(st, "false", JSON_FALSE);
	case 'n':
		return json_scan_literal(st, "null", JSON_NULL);
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return json_scan_number(st);
		return JSON_ERR_SYNTAX;
	}
}

/* Streaming decoder over a (validated) string token's unescaped bytes. */
struct json_dec {
	const unsigned char	*p;
	const unsigned char	*end;
	unsigned char		 pend[4];
	unsigned		 npend;
	unsigned		 ipend;
};

static void
json_dec_init(struct json_dec *d, const char *js, const struct json_tok *t)
{
	d->p = (const unsigned char *)js + t->start;
	d->end = (const unsigned char *)js + t->end;
	d->npend = d->ipend = 0;
}

static unsigned
json_utf8_encode(long cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

static int
json_dec_unicode(struct json_dec *d)
{
	long cp, lo;

	cp = json_hex4(d->p);
	d->p += 4;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		lo = json_hex4(d->p + 2);
		d->p += 6;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	d->npend = json_utf8_encode(cp, d->pend);
	d->ipend = 1;
	return d->pend[0];
}

/* Next unescaped byte, or -1 at the end. */
static int
json_dec_byte(struct json_dec *d)
{
	unsigned char c;

	if (d->ipend < d->npend)
		return d->pend[d->ipend++];
	if (d->p == d->end)
		return -1;
	if ((c = *d->p++) != '\\')
		return c;
	switch ((c = *d->p++)) {
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	case 'u':
		return json_dec_unicode(d);
	default:
		return c;
	}
}

static int
json_tok_eq(const char *js, const struct json_tok *a, const struct json_tok *b)
{
	struct json_dec da, db;
	int ca;

	if (!((a->flags | b->flags) & JSON_F_ESCAPED))
		return a->end - a->start == b->end - b->start &&
		    memcmp(js + a->start, js + b->start, a->end - a->start) == 0;
	json_dec_init(&da, js, a);
	json_dec_init(&db, js, b);
	do {
		if ((ca = json_dec_byte(&da)) != json_dec_byte(&db))
			return 0;
	} while (ca != -1);
	return 1;
}

/* FNV-1a over the unescaped bytes of a string token. */
static uint32_t
json_tok_hash(const char *js, const struct json_tok *t)
{
	const unsigned char *p = (const unsigned char *)js + t->start;
	uint32_t h = 2166136261u, i;
	struct json_dec d;
	int c;

	if (!(t->flags & JSON_F_ESCAPED)) {
		for (i = 0; i < t->end - t->start; i++)
			h = (h ^ p[i]) * 16777619u;
		return h;
	}
	json_dec_init(&d, js, t);
	while ((c = json_dec_byte(&d)) != -1)
		h = (h ^ (uint32_t)c) * 16777619u;
	return h;
}

static int
json_dup_linear(struct json_state *st, uint32_t obj)
{
	const char *js = (const char *)st->s;
	struct json_tok *toks = st->toks;
	uint32_t i, j, ki, kj;

	ki = obj + 1;
	for (i = 0; i < toks[obj].size; i++) {
		kj = toks[ki + 1].next;
		for (j = i + 1; j < toks[obj].size; j++) {
			if (json_tok_eq(js, &toks[ki], &toks[kj]))
				return -1;
			kj = toks[kj + 1].next;
		}
		ki = toks[ki + 1].next;
	}
	return 0;
}

/* Hash the keys; chains are threaded through the keys' unused size field. */
static int
json_dup_hashed(struct json_state *st, uint32_t obj)
{
	const char *js = (const char *)st->s;
	struct json_tok *toks = st->toks;
	uint32_t bucket[JSON_DUP_BUCKETS];
	uint32_t i, k, h, c, nb = 32;
	int dup = 0;

	while (nb < JSON_DUP_BUCKETS && nb < 2 * toks[obj].size)
		nb *= 2;
	memset(bucket, 0, nb * sizeof bucket[0]);
	k = obj + 1;
	for (i = 0; i < toks[obj].size && !dup; i++) {
		h = json_tok_hash(js, &toks[k]) & (nb - 1);
		for (c = bucket[h]; c != 0 && !dup; c = toks[c - 1].size)
			dup = json_tok_eq(js, &toks[c - 1], &toks[k]);
		toks[k].size = bucket[h];
		bucket[h] = k + 1;
		k = toks[k + 1].next;
	}
	k = obj + 1;
	while (i-- > 0) {
		toks[k].size = 0;
		k = toks[k + 1].next;
	}
	return dup ? -1 : 0;
}

/* Close the innermost container at st->pos (its closing bracket). */
static enum json_error
json_close(struct json_state *st)
{
	uint32_t idx = st->stack[--st->depth];
	struct json_tok *t = &st->toks[idx];
	int dup;

	st->pos++;
	t->end = (uint32_t)st->pos;
	t->next = (uint32_t)st->n;
	if (t->type != JSON_OBJECT || t->size < 2)
		return JSON_OK;
	if (t->size <= JSON_DUP_LINEAR)
		dup = json_dup_linear(st, idx);
	else
		dup = json_dup_hashed(st, idx);
	if (dup != 0) {
		st->pos = t->start;
		return JSON_ERR_DUPKEY;
	}
	return JSON_OK;
}

/* "key": inside an object; leaves st->pos on the value. */
static enum json_error
json_scan_key(struct json_state *st)
{
	enum json_error e;

	json_skip_ws(st);
	if (st->pos == st->len)
		return JSON_ERR_TRUNCATED;
	if (st->s[st->pos] != '"')
		return JSON_ERR_SYNTAX;
	if ((e = json_scan_string(st, JSON_F_KEY)) != JSON_OK)
		return e;
	st->toks[st->stack[st->depth - 1]].size++;
	json_skip_ws(st);
	if (st->pos == st->len)
		return JSON_ERR_TRUNCATED;
	if (st->s[st->pos] != ':')
		return JSON_ERR_SYNTAX;
	st->pos++;
	return JSON_OK;
}

/*
 * After a value: ',' or the closing bracket of the innermost container.
 * *want_key / *want_value say what the main loop reads next.
 */
static enum json_error
json_after_value(struct json_state *st, int *want_key, int *want_value)
{
	const struct json_tok *parent;
	enum json_error e;
	unsigned char c;

	*want_key = *want_value = 0;
	while (st->depth > 0) {
		json_skip_ws(st);
		if (st->pos == st->len)
			return JSON_ERR_TRUNCATED;
		c = st->s[st->pos];
		parent = &st->toks[st->stack[st->depth - 1]];
		if (c == ',') {
			st->pos++;
			*want_key = parent->type == JSON_OBJECT;
			*want_value = 1;
			return JSON_OK;
		}
		if (c != (parent->type == JSON_OBJECT ? '}' : ']'))
			return JSON_ERR_SYNTAX;
		if ((e = json_close(st)) != JSON_OK)
			return e;
	}
	return JSON_OK;
}

/* Just opened a container: read an immediate close, or say what follows. */
static enum json_error
json_after_open(struct json_state *st, int *want_key, int *closed)
{
	const struct json_tok *t = &st->toks[st->stack[st->depth - 1]];
	unsigned char close = t->type == JSON_OBJECT ? '}' : ']';

	*closed = 0;
	*want_key = t->type == JSON_OBJECT;
	json_skip_ws(st);
	if (st->pos == st->len)
		return JSON_ERR_TRUNCATED;
	if (st->s[st->pos] != close)
		return JSON_OK;
	*closed = 1;
	return json_close(st);
}

static enum json_error
json_run(struct json_state *st)
{
	int want_key = 0, want_value = 1, closed;
	enum json_error e;
	size_t opened;

	while (want_value) {
		if (want_key && (e = json_scan_key(st)) != JSON_OK)
			return e;
		json_skip_ws(st);
		if (st->pos == st->len)
			return st->n == 0 ? JSON_ERR_EMPTY : JSON_ERR_TRUNCATED;
		opened = st->depth;
		if ((e = json_scan_value(st)) != JSON_OK)
			return e;
		if (st->depth > opened) {
			if ((e = json_after_open(st, &want_key, &closed)) !=
			    JSON_OK)
				return e;
			if (!closed)
				continue;
		}
		if ((e = json_after_value(st, &want_key, &want_value)) !=
		    JSON_OK)
			return e;
	}
	json_skip_ws(st);
	return st->pos == st->len ? JSON_OK : JSON_ERR_TRAILING;
}

enum json_error
json_tokenize(const char *js, size_t len, struct json_tok *toks, size_t cap,
    size_t *ntoks, size_t *err_off)
{
	struct json_state st;
	enum json_error e;

	*ntoks = 0;
	*err_off = 0;
	if (len >= UINT32_MAX || cap >= UINT32_MAX)
		return JSON_ERR_TOOBIG;
	if (len >= 3 && memcmp(js, "\xef\xbb\xbf", 3) == 0)
		return JSON_ERR_BOM;
	memset(&st, 0, sizeof st);
	st.s = (const unsigned char *)js;
	st.len = len;
	st.toks = toks;
	st.cap = cap;
	if ((e = json_run(&st)) != JSON_OK) {
		*err_off = st.pos;
		return e;
	}
	*ntoks = st.n;
	return JSON_OK;
}

int
json_str_eq(const char *js, const struct json_tok *t, const char *s,
    size_t slen)
{
	struct json_dec d;
	size_t i;

	if (t->type != JSON_STRING)
		return 0;
	if (!(t->flags & JSON_F_ESCAPED))
		return t->end - t->start == slen &&
		    memcmp(js + t->start, s, slen) == 0;
	json_dec_init(&d, js, t);
	for (i = 0; i < slen; i++) {
		if (json_dec_byte(&d) != (unsigned char)s[i])
			return 0;
	}
	return json_dec_byte(&d) == -1;
}

int
json_str_copy(const char *js, const struct json_tok *t, char *buf, size_t size,
    size_t *outlen)
{
	struct json_dec d;
	size_t n = 0;
	int c;

	if (t->type != JSON_STRING || size == 0)
		return -1;
	if (!(t->flags & JSON_F_ESCAPED)) {
		n = t->end - t->start;
		if (n >= size)
			return -1;
		memcpy(buf, js + t->start, n);
	} else {
		json_dec_init(&d, js, t);
		while ((c = json_dec_byte(&d)) != -1) {
			if (c == 0 || n + 1 >= size)
				return -1;
			buf[n++] = (char)c;
		}
	}
	buf[n] = '\0';
	if (outlen != NULL)
		*outlen = n;
	return 0;
}

int
json_int64(const char *js, const struct json_tok *t, int64_t *out)
{
	const char *p = js + t->start, *end = js + t->end;
	uint64_t v = 0, lim = INT64_MAX;
	unsigned d;
	int neg = 0;

	if (t->type != JSON_NUMBER || (t->flags & JSON_F_FRAC))
		return -1;
	if (*p == '-') {
		neg = 1;
		lim = (uint64_t)INT64_MAX + 1;
		p++;
	}
	for (; p < end; p++) {
		d = (unsigned)(*p - '0');
		if (v > (lim - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (!neg)
		*out = (int64_t)v;
	else if (v == (uint64_t)INT64_MAX + 1)
		*out = INT64_MIN;
	else
		*out = -(int64_t)v;
	return 0;
}

size_t
json_obj_get(const char *js, const struct json_tok *toks, size_t obj,
    const char *key)
{
	size_t i, k, klen = strlen(key);

	if (toks[obj].type != JSON_OBJECT)
		return 0;
	k = obj + 1;
	for (i = 0; i < toks[obj].size; i++) {
		if (json_str_eq(js, &toks[k], key, klen))
			return k + 1;
		k = toks[k + 1].next;
	}
	return 0;
}
