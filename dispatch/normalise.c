/*
 * normalise.c: journal row -> payhook.payment_event.v1 (topic + compact
 * JSON). Pure functions, any thread (the publisher calls them on the main
 * thread). Must never let email, cardholder name or billing address out
 * unless include_pii is on, and never card digits beyond the masked ones.
 */
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/normalise.h"
#include "journal/journal.h"

#define NORMALISE_STR_MAX	2048	/* longer strings are dropped */
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

/* cJSON only fails here on allocation failure: abort like xmalloc. */
static cJSON *
normalise_nz(cJSON *item)
{
	if (item == NULL) {
		log_error("normalise_out_of_memory", NULL);
		abort();
	}
	return item;
}

static void
normalise_attach(cJSON *obj, const char *name, cJSON *item)
{
	if (!(name == NULL ? cJSON_AddItemToArray(obj, item) :
	    cJSON_AddItemToObject(obj, name, item))) {
		log_error("normalise_attach_failed", NULL);
		abort();
	}
}

static void
normalise_add_int(cJSON *obj, const char *name, int64_t v)
{
	char buf[32];

	xsnprintf(buf, sizeof buf, "%lld", (long long)v);
	normalise_nz(cJSON_AddRawToObject(obj, name, buf));
}

static void
normalise_add_str(cJSON *obj, const char *name, const char *s)
{
	normalise_nz(s == NULL ? cJSON_AddNullToObject(obj, name) :
	    cJSON_AddStringToObject(obj, name, s));
}

static void
normalise_add_time(cJSON *obj, const char *name, int64_t ms)
{
	char buf[40];

	if (ms <= 0) {
		normalise_nz(cJSON_AddNullToObject(obj, name));
		return;
	}
	util_format_time_ms(ms, buf, sizeof buf);
	normalise_add_str(obj, name, buf);
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

static void
normalise_copy_str(cJSON *dst, const cJSON *src, const char *name)
{
	const char *s = normalise_str_of(cJSON_GetObjectItemCaseSensitive(src,
	    name));

	if (s != NULL)
		normalise_add_str(dst, name, s);
}

static void
normalise_copy_int(cJSON *dst, const cJSON *src, const char *name)
{
	int64_t v;

	if (normalise_int_of(cJSON_GetObjectItemCaseSensitive(src, name),
	    &v) == 0)
		normalise_add_int(dst, name, v);
}

static void
normalise_copy_bool(cJSON *dst, const cJSON *src, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, name);

	if (cJSON_IsBool(v))
		normalise_nz(cJSON_AddBoolToObject(dst, name, cJSON_IsTrue(v)));
}

/* A timestamp re-written as RFC 3339 UTC with milliseconds. */
static void
normalise_copy_time(cJSON *dst, const cJSON *src, const char *name)
{
	const char *s = normalise_str_of(cJSON_GetObjectItemCaseSensitive(src,
	    name));
	int64_t ms;

	if (s != NULL && util_parse_time_ms(s, strlen(s), &ms) == 0)
		normalise_add_time(dst, name, ms);
}

/* A calendar date "YYYY-MM-DD". */
static void
normalise_copy_date(cJSON *dst, const cJSON *src, const char *name)
{
	const char *s = normalise_str_of(cJSON_GetObjectItemCaseSensitive(src,
	    name));
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
	normalise_add_str(dst, name, s);
}

/* Masked card digits: only short all-digit strings ever leave. */
static void
normalise_copy_digits(cJSON *dst, const cJSON *src, const char *name,
    size_t maxlen)
{
	const char *s = normalise_str_of(cJSON_GetObjectItemCaseSensitive(src,
	    name));
	size_t i, n;

	if (s == NULL || (n = strlen(s)) == 0 || n > maxlen)
		return;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return;
	}
	normalise_add_str(dst, name, s);
}

static void
normalise_card(cJSON *dst, const cJSON *src, int pii)
{
	const cJSON *addr;
	cJSON *card, *out;
	static const char *addr_fields[] = {
		"line1", "line2", "postcode", "city", "country",
	};
	size_t i;

	if (!cJSON_IsObject(src))
		return;
	card = normalise_nz(cJSON_CreateObject());
	normalise_copy_str(card, src, "card_brand");
	normalise_copy_str(card, src, "card_type");
	normalise_copy_str(card, src, "wallet_type");
	normalise_copy_digits(card, src, "first_digits_card_number", 8);
	normalise_copy_digits(card, src, "last_digits_card_number", 4);
	if (pii) {
		normalise_copy_str(card, src, "cardholder_name");
		addr = cJSON_GetObjectItemCaseSensitive(src, "billing_address");
		if (cJSON_IsObject(addr)) {
			out = normalise_nz(cJSON_AddObjectToObject(card,
			    "billing_address"));
			for (i = 0; i < UTIL_ARRAY_LEN(addr_fields); i++)
				normalise_copy_str(out, addr, addr_fields[i]);
		}
	}
	normalise_attach(dst, "card_details", card);
}

static void
normalise_summaries(cJSON *dst, const cJSON *src)
{
	const cJSON *v, *tds;
	cJSON *out;

	v = cJSON_GetObjectItemCaseSensitive(src, "refund_summary");
	if (cJSON_IsObject(v)) {
		out = normalise_nz(cJSON_AddObjectToObject(dst,
		    "refund_summary"));
		normalise_copy_str(out, v, "status");
		normalise_copy_int(out, v, "amount_available");
		normalise_copy_int(out, v, "amount_submitted");
	}
	v = cJSON_GetObjectItemCaseSensitive(src, "settlement_summary");
	if (cJSON_IsObject(v)) {
		out = normalise_nz(cJSON_AddObjectToObject(dst,
		    "settlement_summary"));
		normalise_copy_time(out, v, "capture_submit_time");
		normalise_copy_date(out, v, "captured_date");
		normalise_copy_date(out, v, "settled_date");
	}
	v = cJSON_GetObjectItemCaseSensitive(src, "authorisation_summary");
	tds = cJSON_GetObjectItemCaseSensitive(v, "three_d_secure");
	if (cJSON_IsObject(tds) && cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(
	    tds, "required"))) {
		out = normalise_nz(cJSON_AddObjectToObject(dst,
		    "authorisation_summary"));
		out = normalise_nz(cJSON_AddObjectToObject(out,
		    "three_d_secure"));
		normalise_copy_bool(out, tds, "required");
	}
}

/* The service's own metadata: string, number and boolean values only. */
static void
normalise_metadata(cJSON *dst, const cJSON *src)
{
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(src, "metadata");
	const cJSON *v;
	cJSON *out;

	if (!cJSON_IsObject(md))
		return;
	out = normalise_nz(cJSON_AddObjectToObject(dst, "metadata"));
	cJSON_ArrayForEach(v, md) {
		if (v->string == NULL || strlen(v->string) > 64)
			continue;
		if (normalise_str_of(v) != NULL || cJSON_IsBool(v) ||
		    (cJSON_IsNumber(v) && v->valuedouble * 0 == 0))
			normalise_attach(out, v->string,
			    normalise_nz(cJSON_Duplicate(v, 0)));
	}
}

/*
 * The payment as src (the API's answer, or the webhook's resource) shows
 * it, minimised. NULL when src lacks what every event must carry.
 */
static cJSON *
normalise_payment(const cJSON *src, int pii)
{
	const cJSON *state, *status, *finished;
	const char *id;
	cJSON *p;
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
		return NULL;
	id = normalise_str_of(cJSON_GetObjectItemCaseSensitive(src,
	    "payment_id"));
	state = cJSON_GetObjectItemCaseSensitive(src, "state");
	status = cJSON_GetObjectItemCaseSensitive(state, "status");
	finished = cJSON_GetObjectItemCaseSensitive(state, "finished");
	if (id == NULL || normalise_str_of(status) == NULL ||
	    !cJSON_IsBool(finished) || normalise_int_of(
	    cJSON_GetObjectItemCaseSensitive(src, "amount"), &amount) != 0)
		return NULL;

	p = normalise_nz(cJSON_CreateObject());
	normalise_add_str(p, "payment_id", id);
	normalise_add_str(p, "status", status->valuestring);
	normalise_nz(cJSON_AddBoolToObject(p, "finished",
	    cJSON_IsTrue(finished)));
	normalise_copy_str(p, state, "code");
	normalise_copy_str(p, state, "message");
	normalise_add_int(p, "amount", amount);
	for (i = 0; i < UTIL_ARRAY_LEN(ints); i++)
		normalise_copy_int(p, src, ints[i]);
	for (i = 0; i < UTIL_ARRAY_LEN(strs); i++)
		normalise_copy_str(p, src, strs[i]);
	normalise_copy_time(p, src, "created_date");
	normalise_copy_bool(p, src, "delayed_capture");
	normalise_copy_bool(p, src, "moto");
	normalise_summaries(p, src);
	normalise_card(p, cJSON_GetObjectItemCaseSensitive(src,
	    "card_details"), pii);
	normalise_metadata(p, src);
	if (pii)
		normalise_copy_str(p, src, "email");
	return p;
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
static cJSON *
normalise_mismatches(const struct journal_row *row, char *names,
    size_t nameslen)
{
	cJSON *arr, *parsed, *v;
	size_t used = 0;

	arr = normalise_nz(cJSON_CreateArray());
	names[0] = '\0';
	if (row->mismatches == NULL ||
	    (parsed = cJSON_Parse(row->mismatches)) == NULL)
		return arr;
	cJSON_ArrayForEach(v, parsed) {
		if (normalise_str_of(v) == NULL || strlen(v->valuestring) > 64)
			continue;
		normalise_attach(arr, NULL, normalise_nz(cJSON_CreateString(
		    v->valuestring)));
		if (used < nameslen)
			used += (size_t)xsnprintf(names + used, nameslen - used,
			    "%s%s", used ? ", " : "", v->valuestring);
	}
	cJSON_Delete(parsed);
	return arr;
}

static void
normalise_alert(cJSON *ev, const struct journal_row *row, const char *topic,
    const char *names, const cJSON *webhook_payment)
{
	cJSON *alert;
	char reason[NORMALISE_REASON_MAX + 64];

	if (strncmp(topic, "alert.", 6) != 0)
		return;
	alert = normalise_nz(cJSON_AddObjectToObject(ev, "alert"));
	normalise_add_str(alert, "kind", topic + 6);
	if (row->state == JOURNAL_QUARANTINED) {
		xsnprintf(reason, sizeof reason, "%.*s", NORMALISE_REASON_MAX,
		    row->quarantine_reason ? row->quarantine_reason :
		    "not a valid webhook");
		normalise_add_str(alert, "reason", reason);
		normalise_add_int(alert, "body_bytes", (int64_t)row->body_len);
	} else if (strcmp(topic, "alert.mismatch") == 0) {
		xsnprintf(reason, sizeof reason, "the API disagrees with the "
		    "webhook on: %s", names[0] ? names : "(unnamed fields)");
		normalise_add_str(alert, "reason", reason);
		if (webhook_payment != NULL)
			normalise_attach(alert, "webhook_payment",
			    normalise_nz(cJSON_Duplicate(webhook_payment, 1)));
	} else {
		xsnprintf(reason, sizeof reason, "the API does not know this "
		    "payment (HTTP %d)", row->api_status);
		normalise_add_str(alert, "reason", reason);
	}
}

/* The event's payment: the API's view when it answered, else the webhook's. */
static void
normalise_views(const struct journal_row *row, int pii, cJSON **api_view,
    cJSON **hook_view)
{
	cJSON *root;

	*api_view = *hook_view = NULL;
	if (row->state == JOURNAL_QUARANTINED)
		return;
	if (row->api_status == 200 && row->api_body != NULL &&
	    (root = cJSON_ParseWithLength(row->api_body,
	    row->api_body_len)) != NULL) {
		*api_view = normalise_payment(root, pii);
		cJSON_Delete(root);
	}
	if (row->body != NULL && (root = cJSON_ParseWithLength(row->body,
	    row->body_len)) != NULL) {
		*hook_view = normalise_payment(cJSON_GetObjectItemCaseSensitive(
		    root, "resource"), pii);
		cJSON_Delete(root);
	}
}

/*
 * cJSON allocates every node and string separately; for the hundreds of
 * nodes of one event that was a third of the publisher's time in malloc and
 * free. While normalise_row() runs, cJSON's allocations on this thread come
 * from a bump arena that is reset afterwards (every cJSON object is created
 * and deleted inside the call). Elsewhere, and on other threads, the hooks
 * are plain malloc and free.
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

static int
normalise_row_json(const struct journal_row *row,
    const struct normalise_opts *o, char *topic, char **json, size_t *len,
    char **cause)
{
	cJSON *ev, *ver, *api_view, *hook_view, *payment;
	char names[512], *out;
	int quarantined = row->state == JOURNAL_QUARANTINED;

	if (o->seq < 1) {
		*cause = xasprintf("seq %lld is not positive", (long long)o->seq);
		return -1;
	}
	normalise_topic(row, topic, NORMALISE_TOPIC_MAX);
	normalise_views(row, o->include_pii, &api_view, &hook_view);
	payment = api_view != NULL ? api_view : hook_view;

	ev = normalise_nz(cJSON_CreateObject());
	normalise_add_str(ev, "schema", NORMALISE_SCHEMA);
	normalise_add_int(ev, "seq", o->seq);
	normalise_add_str(ev, "topic", topic);
	normalise_add_str(ev, "event_id", row->message_id);
	normalise_add_str(ev, "event_type", quarantined ||
	    row->event_type[0] == '\0' ? NULL : row->event_type);
	normalise_add_str(ev, "payment_id", quarantined ||
	    row->resource_id[0] == '\0' ? NULL : row->resource_id);
	normalise_add_time(ev, "occurred_at", row->occurred_ms);
	normalise_add_time(ev, "received_at", row->received_ms);
	normalise_nz(cJSON_AddBoolToObject(ev, "out_of_order",
	    !quarantined && o->out_of_order));
	ver = normalise_nz(cJSON_AddObjectToObject(ev, "verification"));
	normalise_add_str(ver, "signature", "valid");
	normalise_add_str(ver, "cross_check", normalise_verdict(row));
	normalise_attach(ver, "mismatches", normalise_mismatches(row, names,
	    sizeof names));
	normalise_add_str(ev, "payment_source", payment == NULL ? NULL :
	    payment == api_view ? "api" : "webhook");
	if (payment != NULL)
		normalise_attach(ev, "payment", payment);
	else
		normalise_nz(cJSON_AddNullToObject(ev, "payment"));
	normalise_alert(ev, row, topic, names, payment == api_view ? hook_view :
	    NULL);
	if (payment != hook_view)
		cJSON_Delete(hook_view);

	out = cJSON_PrintUnformatted(ev);
	cJSON_Delete(ev);
	if (out == NULL) {
		*cause = xstrdup("cannot print the event");
		return -1;
	}
	*len = strlen(out);
	*json = xstrndup(out, *len);
	cJSON_free(out);
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
