/*
 * normalise.c: journal row -> payhook.payment_event.v1 (topic + compact
 * JSON). Pure functions, any thread (the publisher calls them on the main
 * thread). Must never let email, cardholder name or billing address out
 * unless include_pii is on, and never card digits beyond the masked ones.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/normalise.h"
#include "journal/journal.h"
#include "receiver/json.h"

#define NORMALISE_STR_MAX	2048	/* longer strings are dropped */
#define NORMALISE_TOKENS	512	/* more: the body goes to cJSON */
#define NORMALISE_REASON_MAX	200
#define NORMALISE_MAX_SAFE_INT	9007199254740991.0	/* 2^53 - 1 */

static const struct {
	const char	*event_type;
	const char	*kind;
} normalise_kinds[] = {
	{ "card_payment_started", "started" },
	{ "card_payment_succeeded", "succeeded" },
	{ "card_payment_captured", "captured" },
	{ "card_payment_refunded", "refunded" },
	{ "card_payment_failed", "failed" },
	{ "card_payment_expired", "expired" },
	{ "card_payment_settled", "settled" },
};

static const char *normalise_verdicts[] = {
	"confirmed", "mismatch", "not_found", "skipped", "unverified",
};

/*
 * The event is written as compact JSON straight into a growing buffer, in
 * the order the schema lists its fields; cJSON only parses the inputs. The
 * output is what cJSON_PrintUnformatted printed for the same tree before:
 * strings escaped the same way, numbers printed the same way.
 */
struct normalise_out {
	char	*p;
	size_t	 len, cap;
	int	 n[16];		/* members written, per open object/array */
	int	 depth;
};

static void
normalise_put(struct normalise_out *w, const char *s, size_t n)
{
	if (w->cap - w->len < n + 1) {
		while (w->cap - w->len < n + 1)
			w->cap = w->cap ? w->cap * 2 : 2048;
		w->p = xrealloc(w->p, w->cap);
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

static void
normalise_putc(struct normalise_out *w, char c)
{
	normalise_put(w, &c, 1);
}

/* A JSON string as cJSON prints one: the six short escapes, \u00xx for
 * other control characters, everything else (UTF-8 included) as is. */
static void
normalise_put_str(struct normalise_out *w, const char *s)
{
	const char *run = s;
	char esc[8];

	normalise_putc(w, '"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		normalise_put(w, run, (size_t)(s - run));
		run = s + 1;
		switch (c) {
		case '"': normalise_put(w, "\\\"", 2); break;
		case '\\': normalise_put(w, "\\\\", 2); break;
		case '\b': normalise_put(w, "\\b", 2); break;
		case '\f': normalise_put(w, "\\f", 2); break;
		case '\n': normalise_put(w, "\\n", 2); break;
		case '\r': normalise_put(w, "\\r", 2); break;
		case '\t': normalise_put(w, "\\t", 2); break;
		default:
			xsnprintf(esc, sizeof esc, "\\u%04x", c);
			normalise_put(w, esc, 6);
		}
	}
	normalise_put(w, run, (size_t)(s - run));
	normalise_putc(w, '"');
}

/* Before a member: the comma, and the name unless in an array. */
static void
normalise_key(struct normalise_out *w, const char *name)
{
	if (w->n[w->depth]++ > 0)
		normalise_putc(w, ',');
	if (name != NULL) {
		normalise_put_str(w, name);
		normalise_putc(w, ':');
	}
}

static void
normalise_open(struct normalise_out *w, const char *name, char c)
{
	if (w->depth > 0)
		normalise_key(w, name);
	if (w->depth + 1 >= (int)UTIL_ARRAY_LEN(w->n)) {
		log_error("normalise_too_deep", NULL);
		abort();	/* the shapes below are fixed and shallow */
	}
	w->n[++w->depth] = 0;
	normalise_putc(w, c);
}

static void
normalise_close(struct normalise_out *w, char c)
{
	w->depth--;
	normalise_putc(w, c);
}

/* v in decimal into buf (at least 21 bytes); returns the length. */
static size_t
normalise_itoa(int64_t v, char *buf)
{
	char tmp[24];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, i = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		buf[i++] = '-';
	while (n > 0)
		buf[i++] = tmp[--n];
	return i;
}

static void
normalise_add_int(struct normalise_out *w, const char *name, int64_t v)
{
	char buf[24];

	normalise_key(w, name);
	normalise_put(w, buf, normalise_itoa(v, buf));
}

static void
normalise_add_str(struct normalise_out *w, const char *name, const char *s)
{
	normalise_key(w, name);
	if (s == NULL)
		normalise_put(w, "null", 4);
	else
		normalise_put_str(w, s);
}

static void
normalise_add_bool(struct normalise_out *w, const char *name, int v)
{
	normalise_key(w, name);
	normalise_put(w, v ? "true" : "false", v ? 4 : 5);
}

static void
normalise_add_time(struct normalise_out *w, const char *name, int64_t ms)
{
	char buf[40];

	if (ms <= 0) {
		normalise_add_str(w, name, NULL);
		return;
	}
	util_format_time_ms(ms, buf, sizeof buf);
	normalise_add_str(w, name, buf);
}

/* A number as cJSON prints it: %.15g, or %.17g when that does not read
 * back as the same double. An integer below 1e15 (not -0) prints as its
 * digits either way, without the printf and scanf round trip. */
static void
normalise_add_number(struct normalise_out *w, const char *name,
    const cJSON *v)
{
	double d = v->valuedouble, back = 0;
	char buf[40];
	int n;

	if (d > -1e15 && d < 1e15 && d == (double)(int64_t)d &&
	    !(d == 0 && signbit(d))) {
		normalise_add_int(w, name, (int64_t)d);
		return;
	}
	normalise_key(w, name);
	if (isnan(d) || isinf(d))
		n = xsnprintf(buf, sizeof buf, "null");
	else {
		n = xsnprintf(buf, sizeof buf, "%1.15g", d);
		if (sscanf(buf, "%lg", &back) != 1 || fabs(back - d) >
		    (fabs(back) > fabs(d) ? fabs(back) : fabs(d)) * DBL_EPSILON)
			n = xsnprintf(buf, sizeof buf, "%1.17g", d);
	}
	normalise_put(w, buf, (size_t)n);
}

/*
 * Member name of object o, or NULL: cJSON_GetObjectItemCaseSensitive (the
 * first of equal names) with the first byte compared before strcmp, since
 * a payment object has some 30 members and is looked up about 40 times.
 */
static const cJSON *
normalise_get(const cJSON *o, const char *name)
{
	const cJSON *c;

	if (o == NULL || !cJSON_IsObject(o))
		return NULL;
	for (c = o->child; c != NULL; c = c->next) {
		if (c->string != NULL && c->string[0] == name[0] &&
		    strcmp(c->string, name) == 0)
			return c;
	}
	return NULL;
}

/* An integral JSON number that a double holds exactly. */
static int
normalise_int_of(const cJSON *v, int64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (!(d >= -NORMALISE_MAX_SAFE_INT && d <= NORMALISE_MAX_SAFE_INT))
		return -1;
	if ((double)(int64_t)d != d)
		return -1;
	*out = (int64_t)d;
	return 0;
}

static const char *
normalise_str_of(const cJSON *v)
{
	if (!cJSON_IsString(v) || v->valuestring == NULL ||
	    strlen(v->valuestring) > NORMALISE_STR_MAX)
		return NULL;
	return v->valuestring;
}

/* Member name of o when it is a string of at most NORMALISE_STR_MAX. */
static const char *
normalise_get_str(const cJSON *o, const char *name)
{
	return normalise_str_of(normalise_get(o, name));
}

static void
normalise_copy_str(struct normalise_out *w, const cJSON *src,
    const char *name)
{
	const char *s = normalise_get_str(src, name);

	if (s != NULL)
		normalise_add_str(w, name, s);
}

static void
normalise_copy_int(struct normalise_out *w, const cJSON *src,
    const char *name)
{
	int64_t v;

	if (normalise_int_of(normalise_get(src, name),
	    &v) == 0)
		normalise_add_int(w, name, v);
}

static void
normalise_copy_bool(struct normalise_out *w, const cJSON *src,
    const char *name)
{
	const cJSON *v = normalise_get(src, name);

	if (cJSON_IsBool(v))
		normalise_add_bool(w, name, cJSON_IsTrue(v));
}

/* A timestamp re-written as RFC 3339 UTC with milliseconds. */
static void
normalise_copy_time(struct normalise_out *w, const cJSON *src,
    const char *name)
{
	const char *s = normalise_get_str(src, name);
	int64_t ms;

	if (s != NULL && util_parse_time_ms(s, strlen(s), &ms) == 0)
		normalise_add_time(w, name, ms);
}

/* A calendar date "YYYY-MM-DD". */
static void
normalise_copy_date(struct normalise_out *w, const cJSON *src,
    const char *name)
{
	const char *s = normalise_get_str(src, name);
	size_t i;

	if (s == NULL || strlen(s) != 10)
		return;
	for (i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (s[i] != '-')
				return;
		} else if (s[i] < '0' || s[i] > '9')
			return;
	}
	normalise_add_str(w, name, s);
}

/* Masked card digits: only short all-digit strings ever leave. */
static void
normalise_copy_digits(struct normalise_out *w, const cJSON *src,
    const char *name, size_t maxlen)
{
	const char *s = normalise_get_str(src, name);
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > maxlen)
		return;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return;
	}
	normalise_add_str(w, name, s);
}

static void
normalise_card(struct normalise_out *w, const cJSON *src, int pii)
{
	const cJSON *addr;
	static const char *addr_fields[] = {
		"line1", "line2", "postcode", "city", "country",
	};
	size_t i;

	if (!cJSON_IsObject(src))
		return;
	normalise_open(w, "card_details", '{');
	normalise_copy_str(w, src, "card_brand");
	normalise_copy_str(w, src, "card_type");
	normalise_copy_str(w, src, "wallet_type");
	normalise_copy_digits(w, src, "first_digits_card_number", 8);
	normalise_copy_digits(w, src, "last_digits_card_number", 4);
	if (pii) {
		normalise_copy_str(w, src, "cardholder_name");
		addr = normalise_get(src, "billing_address");
		if (cJSON_IsObject(addr)) {
			normalise_open(w, "billing_address", '{');
			for (i = 0; i < UTIL_ARRAY_LEN(addr_fields); i++)
				normalise_copy_str(w, addr, addr_fields[i]);
			normalise_close(w, '}');
		}
	}
	normalise_close(w, '}');
}

static void
normalise_summaries(struct normalise_out *w, const cJSON *src)
{
	const cJSON *v, *tds;

	v = normalise_get(src, "refund_summary");
	if (cJSON_IsObject(v)) {
		normalise_open(w, "refund_summary", '{');
		normalise_copy_str(w, v, "status");
		normalise_copy_int(w, v, "amount_available");
		normalise_copy_int(w, v, "amount_submitted");
		normalise_close(w, '}');
	}
	v = normalise_get(src, "settlement_summary");
	if (cJSON_IsObject(v)) {
		normalise_open(w, "settlement_summary", '{');
		normalise_copy_time(w, v, "capture_submit_time");
		normalise_copy_date(w, v, "captured_date");
		normalise_copy_date(w, v, "settled_date");
		normalise_close(w, '}');
	}
	v = normalise_get(src, "authorisation_summary");
	tds = normalise_get(v, "three_d_secure");
	if (cJSON_IsObject(tds) &&
	    cJSON_IsBool(normalise_get(tds, "required"))) {
		normalise_open(w, "authorisation_summary", '{');
		normalise_open(w, "three_d_secure", '{');
		normalise_copy_bool(w, tds, "required");
		normalise_close(w, '}');
		normalise_close(w, '}');
	}
}

/* The service's own metadata: string, number and boolean values only. */
static void
normalise_metadata(struct normalise_out *w, const cJSON *src)
{
	const cJSON *md = normalise_get(src, "metadata");
	const cJSON *v;

	if (!cJSON_IsObject(md))
		return;
	normalise_open(w, "metadata", '{');
	cJSON_ArrayForEach(v, md) {
		if (v->string == NULL || strlen(v->string) > 64)
			continue;
		if (normalise_str_of(v) != NULL)
			normalise_add_str(w, v->string, v->valuestring);
		else if (cJSON_IsBool(v))
			normalise_add_bool(w, v->string, cJSON_IsTrue(v));
		else if (cJSON_IsNumber(v) && v->valuedouble * 0 == 0)
			normalise_add_number(w, v->string, v);
	}
	normalise_close(w, '}');
}

/*
 * The payment as src (the API's answer, or the webhook's resource) shows
 * it, minimised, written into w as one object (w is empty before). 0, or
 * -1 with nothing written when src lacks what every event must carry.
 */
static int
normalise_payment(struct normalise_out *w, const cJSON *src, int pii)
{
	const cJSON *state, *status, *finished;
	const char *id;
	int64_t amount;
	static const char *strs[] = {
		"reference", "description", "language", "payment_provider",
		"provider_id", "return_url", "authorisation_mode",
		"agreement_id", "agreement_payment_type",
	};
	static const char *ints[] = {
		"total_amount", "corporate_card_surcharge", "fee", "net_amount",
	};
	size_t i;

	if (!cJSON_IsObject(src))
		return -1;
	id = normalise_get_str(src, "payment_id");
	state = normalise_get(src, "state");
	status = normalise_get(state, "status");
	finished = normalise_get(state, "finished");
	if (id == NULL || normalise_str_of(status) == NULL ||
	    !cJSON_IsBool(finished) || normalise_int_of(
	    normalise_get(src, "amount"), &amount) != 0)
		return -1;

	normalise_open(w, NULL, '{');
	normalise_add_str(w, "payment_id", id);
	normalise_add_str(w, "status", status->valuestring);
	normalise_add_bool(w, "finished", cJSON_IsTrue(finished));
	normalise_copy_str(w, state, "code");
	normalise_copy_str(w, state, "message");
	normalise_add_int(w, "amount", amount);
	for (i = 0; i < UTIL_ARRAY_LEN(ints); i++)
		normalise_copy_int(w, src, ints[i]);
	for (i = 0; i < UTIL_ARRAY_LEN(strs); i++)
		normalise_copy_str(w, src, strs[i]);
	normalise_copy_time(w, src, "created_date");
	normalise_copy_bool(w, src, "delayed_capture");
	normalise_copy_bool(w, src, "moto");
	normalise_summaries(w, src);
	normalise_card(w, normalise_get(src, "card_details"), pii);
	normalise_metadata(w, src);
	if (pii)
		normalise_copy_str(w, src, "email");
	normalise_close(w, '}');
	return 0;
}

static const char *
normalise_kind(const char *event_type)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(normalise_kinds); i++) {
		if (strcmp(event_type, normalise_kinds[i].event_type) == 0)
			return normalise_kinds[i].kind;
	}
	return "other";
}

/* The verdict as the contract spells it; anything else is unverified. */
static const char *
normalise_verdict(const struct journal_row *row)
{
	size_t i;

	if (row->state == JOURNAL_QUARANTINED)
		return "skipped";
	for (i = 0; i < UTIL_ARRAY_LEN(normalise_verdicts); i++) {
		if (strcmp(row->verdict, normalise_verdicts[i]) == 0)
			return normalise_verdicts[i];
	}
	return "unverified";
}

void
normalise_topic(const struct journal_row *row, char *topic, size_t len)
{
	const char *verdict = normalise_verdict(row);

	if (row->state == JOURNAL_QUARANTINED)
		xsnprintf(topic, len, "alert.quarantined");
	else if (strcmp(verdict, "mismatch") == 0 ||
	    strcmp(verdict, "not_found") == 0)
		xsnprintf(topic, len, "alert.%s", verdict);
	else
		xsnprintf(topic, len, "payment.%s",
		    normalise_kind(row->event_type));
}

const char *
normalise_family(const char *topic)
{
	if (strncmp(topic, "payment.", 8) == 0)
		return "payment";
	if (strncmp(topic, "alert.", 6) == 0)
		return "alert";
	return "other";
}

/* mismatches: the journal's JSON array of field names, strings only. */
static void
normalise_mismatches(struct normalise_out *w, const struct journal_row *row,
    char *names, size_t nameslen)
{
	cJSON *parsed, *v;
	size_t used = 0;

	names[0] = '\0';
	normalise_open(w, "mismatches", '[');
	if (row->mismatches != NULL &&
	    (parsed = cJSON_Parse(row->mismatches)) != NULL) {
		cJSON_ArrayForEach(v, parsed) {
			if (normalise_str_of(v) == NULL ||
			    strlen(v->valuestring) > 64)
				continue;
			normalise_add_str(w, NULL, v->valuestring);
			if (used < nameslen)
				used += (size_t)xsnprintf(names + used,
				    nameslen - used, "%s%s", used ? ", " : "",
				    v->valuestring);
		}
		cJSON_Delete(parsed);
	}
	normalise_close(w, ']');
}

static void
normalise_alert(struct normalise_out *w, const struct journal_row *row,
    const char *topic, const char *names,
    const struct normalise_out *webhook_payment)
{
	char reason[NORMALISE_REASON_MAX + 64];

	if (strncmp(topic, "alert.", 6) != 0)
		return;
	normalise_open(w, "alert", '{');
	normalise_add_str(w, "kind", topic + 6);
	if (row->state == JOURNAL_QUARANTINED) {
		xsnprintf(reason, sizeof reason, "%.*s", NORMALISE_REASON_MAX,
		    row->quarantine_reason ? row->quarantine_reason :
		    "not a valid webhook");
		normalise_add_str(w, "reason", reason);
		normalise_add_int(w, "body_bytes", (int64_t)row->body_len);
	} else if (strcmp(topic, "alert.mismatch") == 0) {
		xsnprintf(reason, sizeof reason, "the API disagrees with the "
		    "webhook on: %s", names[0] ? names : "(unnamed fields)");
		normalise_add_str(w, "reason", reason);
		if (webhook_payment != NULL) {
			normalise_key(w, "webhook_payment");
			normalise_put(w, webhook_payment->p,
			    webhook_payment->len);
		}
	} else {
		xsnprintf(reason, sizeof reason, "the API does not know this "
		    "payment (HTTP %d)", row->api_status);
		normalise_add_str(w, "reason", reason);
	}
	normalise_close(w, '}');
}

static cJSON	*normalise_parse(const char *, size_t);
static cJSON	*normalise_tree(const char *, size_t, const struct json_tok *);

/* The payment views: the API's (when it answered) and the webhook's, each
 * written as an object into its own buffer; len 0 when there is none. */
static void
normalise_views(const struct journal_row *row, const struct normalise_opts *o,
    struct normalise_out *api_view, struct normalise_out *hook_view)
{
	int pii = o->include_pii;
	cJSON *root;

	if (row->state == JOURNAL_QUARANTINED)
		return;
	if (row->api_status == 200 && row->api_body != NULL &&
	    (root = normalise_parse(row->api_body, row->api_body_len)) !=
	    NULL) {
		normalise_payment(api_view, root, pii);
		cJSON_Delete(root);
	}
	if (row->body == NULL)
		return;
	/* The receiver's tokens, within the limits normalise_parse keeps. */
	if (o->body_toks != NULL && o->body_ntoks > 0 &&
	    o->body_ntoks <= NORMALISE_TOKENS &&
	    o->body_toks[0].next == o->body_ntoks)
		root = normalise_tree(row->body, row->body_len, o->body_toks);
	else
		root = normalise_parse(row->body, row->body_len);
	if (root != NULL) {
		normalise_payment(hook_view, normalise_get(root, "resource"),
		    pii);
		cJSON_Delete(root);
	}
}

/*
 * cJSON allocates every node and string of the parsed inputs separately;
 * that was a third of the publisher's time in malloc and free. While
 * normalise_row() runs, cJSON's allocations on this thread come from a bump
 * arena that is reset afterwards (every cJSON tree is parsed and deleted
 * inside the call). Elsewhere, and on other threads, the hooks are plain
 * malloc and free.
 */
#define NORMALISE_ARENA_CHUNK	(64 * 1024)

struct normalise_arena {
	char	*first;		/* the thread's kept chunk */
	char	*base;		/* the chunk being filled */
	size_t	 size, used;
	char	*spill[32];	/* chunks past the first, freed at reset */
	int	 nspill;
};

static _Thread_local struct normalise_arena *normalise_cur;
static pthread_once_t normalise_hooks_once = PTHREAD_ONCE_INIT;

static int
normalise_in_arena(const struct normalise_arena *a, const void *p)
{
	const char *c = p;
	int i;

	if (c >= a->first && c < a->first + NORMALISE_ARENA_CHUNK)
		return 1;
	for (i = 0; i < a->nspill; i++) {
		if (c >= a->spill[i] && c < a->spill[i] + NORMALISE_ARENA_CHUNK)
			return 1;
	}
	return 0;
}

static void *
normalise_malloc(size_t n)
{
	struct normalise_arena *a = normalise_cur;
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (a == NULL || n > NORMALISE_ARENA_CHUNK / 4)
		return malloc(n);
	if (a->used + n > a->size) {
		if (a->nspill == (int)UTIL_ARRAY_LEN(a->spill))
			return malloc(n);
		/* The first chunk stays; further ones are kept for this call. */
		a->spill[a->nspill] = xmalloc(NORMALISE_ARENA_CHUNK);
		a->base = a->spill[a->nspill++];
		a->size = NORMALISE_ARENA_CHUNK;
		a->used = 0;
	}
	p = a->base + a->used;
	a->used += n;
	return p;
}

static void
normalise_free(void *p)
{
	if (p == NULL || (normalise_cur != NULL &&
	    normalise_in_arena(normalise_cur, p)))
		return;
	free(p);
}

static void
normalise_install_hooks(void)
{
	cJSON_Hooks hooks = { normalise_malloc, normalise_free };

	cJSON_InitHooks(&hooks);
}

static void
normalise_arena_begin(struct normalise_arena *a, char *first)
{
	pthread_once(&normalise_hooks_once, normalise_install_hooks);
	memset(a, 0, sizeof *a);
	a->first = a->base = first;
	a->size = NORMALISE_ARENA_CHUNK;
	normalise_cur = a;
}

static void
normalise_arena_end(struct normalise_arena *a)
{
	int i;

	normalise_cur = NULL;
	for (i = 0; i < a->nspill; i++)
		free(a->spill[i]);
}

/*
 * The stored bodies are parsed with payhook's strict tokenizer
 * (receiver/json.c) and the cJSON tree is built from its tokens in the
 * arena: cJSON's own parser compares "null", "false" and "true" with
 * strncmp before every value and copies every number, and was about 40 %
 * of normalising an event. What the strict tokenizer refuses (invalid
 * JSON, duplicate keys, U+0000, a byte order mark, nesting past
 * JSON_DEPTH_MAX, more than NORMALISE_TOKENS tokens) and numbers longer
 * than NORMALISE_NUMBER_MAX bytes (cJSON versions differ in how they read
 * those) go to cJSON_ParseWithLength as before, so the tree is always the
 * one cJSON builds. A differential run of 300,000 mutated bodies against
 * cJSON's parser gave byte-identical events. A fused event (normalised in
 * the group commit) reuses the tokens the receiver made of the body with
 * the same tokenizer, under the same NORMALISE_TOKENS limit.
 */
#define NORMALISE_NUMBER_MAX	63

/* Token t's string, unescaped, in the arena; NULL on U+0000. */
static char *
normalise_tok_string(const char *js, const struct json_tok *t)
{
	size_t size = t->end - t->start + 1;	/* unescaping never grows */
	char *s;

	if ((s = normalise_malloc(size)) == NULL)
		return NULL;
	if (json_str_copy(js, t, s, size, NULL) != 0) {
		normalise_free(s);
		return NULL;
	}
	return s;
}

/* Fill item from toks[*i] (and its subtree); 0, or -1 to fall back. The
 * tree stays linked as it grows, so cJSON_Delete() frees a partial one. */
static int
normalise_tok_fill(cJSON *item, const char *js, const struct json_tok *toks,
    size_t *i)
{
	const struct json_tok *t = &toks[(*i)++];
	char num[NORMALISE_NUMBER_MAX + 1];
	cJSON *child, *last = NULL;
	size_t len;
	uint32_t m;
	double d;

	switch (t->type) {
	case JSON_OBJECT:
	case JSON_ARRAY:
		item->type = t->type == JSON_OBJECT ? cJSON_Object :
		    cJSON_Array;
		for (m = 0; m < t->size; m++) {
			if ((child = normalise_malloc(sizeof *child)) == NULL)
				return -1;
			memset(child, 0, sizeof *child);
			if (last == NULL)
				item->child = child;
			else {
				last->next = child;
				child->prev = last;
			}
			item->child->prev = last = child;	/* as cJSON */
			if (t->type == JSON_OBJECT && (child->string =
			    normalise_tok_string(js, &toks[(*i)++])) == NULL)
				return -1;
			if (normalise_tok_fill(child, js, toks, i) != 0)
				return -1;
		}
		return 0;
	case JSON_STRING:
		item->type = cJSON_String;
		item->valuestring = normalise_tok_string(js, t);
		return item->valuestring != NULL ? 0 : -1;
	case JSON_NUMBER:
		if ((len = t->end - t->start) > NORMALISE_NUMBER_MAX)
			return -1;
		memcpy(num, js + t->start, len);
		num[len] = '\0';
		d = strtod(num, NULL);
		item->type = cJSON_Number;
		item->valuedouble = d;
		if (d >= INT_MAX)
			item->valueint = INT_MAX;
		else if (d <= (double)INT_MIN)
			item->valueint = INT_MIN;
		else
			item->valueint = (int)d;
		return 0;
	case JSON_TRUE:
		item->type = cJSON_True;
		item->valueint = 1;
		return 0;
	case JSON_FALSE:
		item->type = cJSON_False;
		return 0;
	default:
		item->type = cJSON_NULL;
		return 0;
	}
}

/* The tree of js[0..len) from its tokens toks (json_tokenize's, complete);
 * what the tokens cannot give as cJSON would goes to cJSON's parser. */
static cJSON *
normalise_tree(const char *js, size_t len, const struct json_tok *toks)
{
	size_t i = 0;
	cJSON *root;

	if ((root = normalise_malloc(sizeof *root)) == NULL)
		return cJSON_ParseWithLength(js, len);
	memset(root, 0, sizeof *root);
	if (normalise_tok_fill(root, js, toks, &i) != 0) {
		cJSON_Delete(root);
		return cJSON_ParseWithLength(js, len);
	}
	return root;
}

/* The body as cJSON parses it (NULL where cJSON fails). */
static cJSON *
normalise_parse(const char *js, size_t len)
{
	struct json_tok toks[NORMALISE_TOKENS];
	size_t n, off;

	if (json_tokenize(js, len, toks, NORMALISE_TOKENS, &n, &off) !=
	    JSON_OK)
		return cJSON_ParseWithLength(js, len);
	return normalise_tree(js, len, toks);
}

static int
normalise_row_json(const struct journal_row *row,
    const struct normalise_opts *o, char *topic, char **json, size_t *len,
    char **cause)
{
	struct normalise_out ev, api_view, hook_view, *payment;
	char names[512];
	int quarantined = row->state == JOURNAL_QUARANTINED;

	if (o->seq < 1) {
		*cause = xasprintf("seq %lld is not positive", (long long)o->seq);
		return -1;
	}
	memset(&ev, 0, sizeof ev);
	memset(&api_view, 0, sizeof api_view);
	memset(&hook_view, 0, sizeof hook_view);
	normalise_topic(row, topic, NORMALISE_TOPIC_MAX);
	normalise_views(row, o, &api_view, &hook_view);
	payment = api_view.len > 0 ? &api_view : hook_view.len > 0 ?
	    &hook_view : NULL;

	normalise_open(&ev, NULL, '{');
	normalise_add_str(&ev, "schema", NORMALISE_SCHEMA);
	normalise_add_int(&ev, "seq", o->seq);
	normalise_add_str(&ev, "topic", topic);
	normalise_add_str(&ev, "event_id", row->message_id);
	normalise_add_str(&ev, "event_type", quarantined ||
	    row->event_type[0] == '\0' ? NULL : row->event_type);
	normalise_add_str(&ev, "payment_id", quarantined ||
	    row->resource_id[0] == '\0' ? NULL : row->resource_id);
	normalise_add_time(&ev, "occurred_at", row->occurred_ms);
	normalise_add_time(&ev, "received_at", row->received_ms);
	normalise_add_bool(&ev, "out_of_order", !quarantined &&
	    o->out_of_order);
	normalise_open(&ev, "verification", '{');
	normalise_add_str(&ev, "signature", "valid");
	normalise_add_str(&ev, "cross_check", normalise_verdict(row));
	normalise_mismatches(&ev, row, names, sizeof names);
	normalise_close(&ev, '}');
	normalise_add_str(&ev, "payment_source", payment == NULL ? NULL :
	    payment == &api_view ? "api" : "webhook");
	normalise_key(&ev, "payment");
	if (payment != NULL)
		normalise_put(&ev, payment->p, payment->len);
	else
		normalise_put(&ev, "null", 4);
	normalise_alert(&ev, row, topic, names, payment == &api_view &&
	    hook_view.len > 0 ? &hook_view : NULL);
	normalise_close(&ev, '}');
	free(api_view.p);
	free(hook_view.p);
	*json = ev.p;
	*len = ev.len;
	return 0;
}

int
normalise_row(const struct journal_row *row, const struct normalise_opts *o,
    char *topic, char **json, size_t *len, char **cause)
{
	static _Thread_local char *first;
	struct normalise_arena a;
	int rc;

	if (first == NULL)
		first = xmalloc(NORMALISE_ARENA_CHUNK);	/* kept per thread */
	normalise_arena_begin(&a, first);
	rc = normalise_row_json(row, o, topic, json, len, cause);
	normalise_arena_end(&a);
	return rc;
}
