/*
 * webhook.c: validate a GOV.UK Pay webhook body against what the sender
 * (alphagov/pay-webhooks) emits and copy out the fields later stages need.
 * Any thread, one parser per thread (ph-http's, payhook journal's). Must never allocate per call and
 * never put body content (values or unknown keys) into a reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "receiver/json.h"
#include "receiver/webhook.h"

/*
 * Rules (schemas/govuk_pay_webhook.json states the same ones):
 * - Envelope: all seven keys required (the sender's record always has them).
 * - resource: payment_id, amount, state{status, finished}, description and
 *   reference are required: payhook needs them and the sender never omits
 *   them. Everything else the sender may leave out (@JsonInclude(NON_NULL))
 *   or payhook does not use (delayed_capture, moto, language are always
 *   sent today but not needed), so it is optional but must have its type.
 * - null is accepted only where the sender's records lack NON_NULL:
 *   card_details.*, card_details.billing_address(.*), refund_summary.status.
 * - Unknown keys are ignored everywhere (forward compatibility); metadata
 *   values are strings, numbers or booleans.
 */
#define WEBHOOK_TOKENS_MAX	2048	/* a real webhook has ~80 tokens */
#define WEBHOOK_AMOUNT_MAX	10000000	/* pence: GOV.UK Pay's maximum */
#define WEBHOOK_FIELDS_MAX	24	/* largest table below */
#define WEBHOOK_TIME_MAX	32	/* util_parse_time_ms takes <= 30 chars */
#define WEBHOOK_STATUS_MAX	23	/* struct webhook's status[24] */

_Static_assert(sizeof(((struct webhook *)NULL)->status) ==
    WEBHOOK_STATUS_MAX + 1, "status buffer and WEBHOOK_STATUS_MAX differ");

enum webhook_kind {
	WH_STRING,
	WH_STRING_NULL,
	WH_BOOL,
	WH_INT64,
	WH_AMOUNT,
	WH_PAY_ID,
	WH_TIME,
	WH_EVENT_TYPE,
	WH_RESOURCE_TYPE,
	WH_API_VERSION,
	WH_STATUS,
	WH_OBJECT,
	WH_OBJECT_NULL,
	WH_METADATA,
};

struct webhook_object;

struct webhook_field {
	const char			*name;
	size_t				 len;
	enum webhook_kind		 kind;
	int				 required;
	const struct webhook_object	*sub;	/* WH_OBJECT(_NULL) members */
};

struct webhook_object {
	const char			*path;	/* "" for the envelope */
	const struct webhook_field	*fields;
	size_t				 nfields;
};

struct webhook_parser {
	struct json_tok	*toks;
	size_t		 cap;
	size_t		 n;	/* tokens of the last good parse; 0 if none */
};

/* One validation pass over one body. */
struct webhook_ctx {
	const char		*js;
	const struct json_tok	*toks;
	char			*reason;
	int64_t			 time_ms;	/* the (only) WH_TIME field */
};

#define WH_FIELD(n, k, r, s)	{ n, sizeof(n) - 1, k, r, s }
#define WH_OBJ(p, f)		{ p, f, UTIL_ARRAY_LEN(f) }

static const struct webhook_field webhook_address_fields[] = {
	WH_FIELD("line1", WH_STRING_NULL, 0, NULL),
	WH_FIELD("line2", WH_STRING_NULL, 0, NULL),
	WH_FIELD("postcode", WH_STRING_NULL, 0, NULL),
	WH_FIELD("city", WH_STRING_NULL, 0, NULL),
	WH_FIELD("country", WH_STRING_NULL, 0, NULL),
};
static const struct webhook_object webhook_address =
    WH_OBJ("resource.card_details.billing_address", webhook_address_fields);

static const struct webhook_field webhook_card_fields[] = {
	WH_FIELD("last_digits_card_number", WH_STRING_NULL, 0, NULL),
	WH_FIELD("first_digits_card_number", WH_STRING_NULL, 0, NULL),
	WH_FIELD("cardholder_name", WH_STRING_NULL, 0, NULL),
	WH_FIELD("expiry_date", WH_STRING_NULL, 0, NULL),
	WH_FIELD("billing_address", WH_OBJECT_NULL, 0, &webhook_address),
	WH_FIELD("card_brand", WH_STRING_NULL, 0, NULL),
	WH_FIELD("card_type", WH_STRING_NULL, 0, NULL),
};
static const struct webhook_object webhook_card =
    WH_OBJ("resource.card_details", webhook_card_fields);

static const struct webhook_field webhook_state_fields[] = {
	WH_FIELD("status", WH_STATUS, 1, NULL),
	WH_FIELD("finished", WH_BOOL, 1, NULL),
	WH_FIELD("message", WH_STRING, 0, NULL),
	WH_FIELD("code", WH_STRING, 0, NULL),
};
static const struct webhook_object webhook_state =
    WH_OBJ("resource.state", webhook_state_fields);

static const struct webhook_field webhook_refund_fields[] = {
	WH_FIELD("status", WH_STRING_NULL, 0, NULL),
	WH_FIELD("amount_available", WH_INT64, 0, NULL),
	WH_FIELD("amount_submitted", WH_INT64, 0, NULL),
};
static const struct webhook_object webhook_refund =
    WH_OBJ("resource.refund_summary", webhook_refund_fields);

static const struct webhook_field webhook_settlement_fields[] = {
	WH_FIELD("capture_submit_time", WH_STRING, 0, NULL),
	WH_FIELD("captured_date", WH_STRING, 0, NULL),
};
static const struct webhook_object webhook_settlement =
    WH_OBJ("resource.settlement_summary", webhook_settlement_fields);

static const struct webhook_field webhook_3ds_fields[] = {
	WH_FIELD("required", WH_BOOL, 0, NULL),
};
static const struct webhook_object webhook_3ds =
    WH_OBJ("resource.authorisation_summary.three_d_secure",
    webhook_3ds_fields);

static const struct webhook_field webhook_auth_fields[] = {
	WH_FIELD("three_d_secure", WH_OBJECT, 0, &webhook_3ds),
};
static const struct webhook_object webhook_auth =
    WH_OBJ("resource.authorisation_summary", webhook_auth_fields);

enum { WH_RES_PAYMENT_ID, WH_RES_AMOUNT, WH_RES_STATE };
static const struct webhook_field webhook_resource_fields[] = {
	[WH_RES_PAYMENT_ID] = WH_FIELD("payment_id", WH_PAY_ID, 1, NULL),
	[WH_RES_AMOUNT] = WH_FIELD("amount", WH_AMOUNT, 1, NULL),
	[WH_RES_STATE] = WH_FIELD("state", WH_OBJECT, 1, &webhook_state),
	WH_FIELD("description", WH_STRING, 1, NULL),
	WH_FIELD("reference", WH_STRING, 1, NULL),
	WH_FIELD("return_url", WH_STRING, 0, NULL),
	WH_FIELD("email", WH_STRING, 0, NULL),
	WH_FIELD("payment_provider", WH_STRING, 0, NULL),
	WH_FIELD("created_date", WH_STRING, 0, NULL),
	WH_FIELD("language", WH_STRING, 0, NULL),
	WH_FIELD("delayed_capture", WH_BOOL, 0, NULL),
	WH_FIELD("moto", WH_BOOL, 0, NULL),
	WH_FIELD("refund_summary", WH_OBJECT, 0, &webhook_refund),
	WH_FIELD("settlement_summary", WH_OBJECT, 0, &webhook_settlement),
	WH_FIELD("card_details", WH_OBJECT, 0, &webhook_card),
	WH_FIELD("corporate_card_surcharge", WH_INT64, 0, NULL),
	WH_FIELD("total_amount", WH_INT64, 0, NULL),
	WH_FIELD("fee", WH_INT64, 0, NULL),
	WH_FIELD("net_amount", WH_INT64, 0, NULL),
	WH_FIELD("metadata", WH_METADATA, 0, NULL),
	WH_FIELD("authorisation_summary", WH_OBJECT, 0, &webhook_auth),
};
static const struct webhook_object webhook_resource =
    WH_OBJ("resource", webhook_resource_fields);

/* The envelope's resource is checked separately to keep its field indices. */
enum {
	WH_ENV_MESSAGE_ID, WH_ENV_CREATED, WH_ENV_RESOURCE_ID, WH_ENV_VERSION,
	WH_ENV_TYPE, WH_ENV_EVENT, WH_ENV_RESOURCE
};
static const struct webhook_field webhook_envelope_fields[] = {
	[WH_ENV_MESSAGE_ID] = WH_FIELD("webhook_message_id", WH_PAY_ID, 1, NULL),
	[WH_ENV_CREATED] = WH_FIELD("created_date", WH_TIME, 1, NULL),
	[WH_ENV_RESOURCE_ID] = WH_FIELD("resource_id", WH_PAY_ID, 1, NULL),
	[WH_ENV_VERSION] = WH_FIELD("api_version", WH_API_VERSION, 1, NULL),
	[WH_ENV_TYPE] = WH_FIELD("resource_type", WH_RESOURCE_TYPE, 1, NULL),
	[WH_ENV_EVENT] = WH_FIELD("event_type", WH_EVENT_TYPE, 1, NULL),
	[WH_ENV_RESOURCE] = WH_FIELD("resource", WH_OBJECT, 1, NULL),
};
static const struct webhook_object webhook_envelope =
    WH_OBJ("", webhook_envelope_fields);

static const struct {
	const char		*name;
	enum webhook_event	 event;
} webhook_events[] = {
	{ "card_payment_started", WEBHOOK_EVENT_STARTED },
	{ "card_payment_succeeded", WEBHOOK_EVENT_SUCCEEDED },
	{ "card_payment_captured", WEBHOOK_EVENT_CAPTURED },
	{ "card_payment_refunded", WEBHOOK_EVENT_REFUNDED },
	{ "card_payment_failed", WEBHOOK_EVENT_FAILED },
	{ "card_payment_expired", WEBHOOK_EVENT_EXPIRED },
	{ "card_payment_settled", WEBHOOK_EVENT_SETTLED },
};

static const char *const webhook_expected[] = {
	[WH_STRING] = "expected a string",
	[WH_STRING_NULL] = "expected a string or null",
	[WH_BOOL] = "expected a boolean",
	[WH_INT64] = "expected a 64-bit integer",
	[WH_AMOUNT] = "expected an integer 0..10000000",
	[WH_PAY_ID] = "expected 1..26 chars of [0-9a-v]",
	[WH_TIME] = "expected an RFC 3339 UTC timestamp",
	[WH_EVENT_TYPE] = "expected a lower-case event name [a-z][a-z0-9_]{0,63}",
	[WH_RESOURCE_TYPE] = "expected \"PAYMENT\" (any case)",
	[WH_API_VERSION] = "expected the integer 1",
	[WH_STATUS] = "expected a lower-case status [a-z][a-z0-9_]{0,22}",
	[WH_OBJECT] = "expected an object",
	[WH_OBJECT_NULL] = "expected an object or null",
	[WH_METADATA] = "expected an object of strings, numbers or booleans",
};

struct webhook_parser *
webhook_parser_new(void)
{
	struct webhook_parser *p;

	p = xcalloc(1, sizeof *p);
	p->cap = WEBHOOK_TOKENS_MAX;
	p->toks = xreallocarray(NULL, p->cap, sizeof *p->toks);
	return p;
}

void
webhook_parser_free(struct webhook_parser *p)
{
	if (p == NULL)
		return;
	free(p->toks);
	free(p);
}

enum webhook_event
webhook_event_from_name(const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(webhook_events); i++) {
		if (strcmp(name, webhook_events[i].name) == 0)
			return webhook_events[i].event;
	}
	return WEBHOOK_EVENT_OTHER;
}

static int
webhook_fail(struct webhook_ctx *c, const struct webhook_object *o,
    const char *name, const char *what)
{
	xsnprintf(c->reason, WEBHOOK_REASON_MAX, "%s%s%s: %s", o->path,
	    *o->path != '\0' ? "." : "", name, what);
	return -1;
}

/* True when s is [a-z][a-z0-9_]* (length is checked by the caller). */
static int
webhook_is_name(const char *s)
{
	if (*s < 'a' || *s > 'z')
		return 0;
	for (s++; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    *s == '_'))
			return 0;
	}
	return 1;
}

/* ASCII case-insensitive "payment" (strcasecmp would follow the locale). */
static int
webhook_is_payment(const char *s)
{
	static const char want[] = "payment";
	size_t i;

	for (i = 0; i < sizeof want; i++) {
		if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) != want[i])
			return 0;
	}
	return 1;
}

static int
webhook_check_metadata(struct webhook_ctx *c, size_t obj)
{
	const struct json_tok *t = c->toks;
	size_t i, v;

	if (t[obj].type != JSON_OBJECT)
		return -1;
	for (i = 0, v = obj + 2; i < t[obj].size; i++, v = t[v].next + 1) {
		if (t[v].type == JSON_OBJECT || t[v].type == JSON_ARRAY ||
		    t[v].type == JSON_NULL)
			return -1;
	}
	return 0;
}

/* Kinds that are strings with a syntax: unescape, then check. */
static int
webhook_check_string(struct webhook_ctx *c, enum webhook_kind kind,
    const struct json_tok *t)
{
	char buf[WEBHOOK_EVENT_TYPE_MAX + 1];
	size_t n;

	if (json_str_copy(c->js, t, buf, sizeof buf, &n) != 0)
		return -1;
	switch (kind) {
	case WH_PAY_ID:
		return util_is_pay_id(buf, n) ? 0 : -1;
	case WH_TIME:
		if (n >= WEBHOOK_TIME_MAX)
			return -1;
		return util_parse_time_ms(buf, n, &c->time_ms);
	case WH_EVENT_TYPE:
		return webhook_is_name(buf) ? 0 : -1;
	case WH_RESOURCE_TYPE:
		return webhook_is_payment(buf) ? 0 : -1;
	case WH_STATUS:
		return n <= WEBHOOK_STATUS_MAX && webhook_is_name(buf) ? 0 : -1;
	default:
		return -1;
	}
}

static int	webhook_check_object(struct webhook_ctx *,
		    const struct webhook_object *, size_t, uint32_t *);

/* 0 when toks[v] has the field's kind; -1 (reason not yet set) if not. */
static int
webhook_check_kind(struct webhook_ctx *c, const struct webhook_field *f,
    size_t v)
{
	uint32_t found[WEBHOOK_FIELDS_MAX];
	const struct json_tok *t = &c->toks[v];
	int64_t n;

	switch (f->kind) {
	case WH_STRING:
		return t->type == JSON_STRING ? 0 : -1;
	case WH_STRING_NULL:
		return t->type == JSON_STRING || t->type == JSON_NULL ? 0 : -1;
	case WH_BOOL:
		return t->type == JSON_TRUE || t->type == JSON_FALSE ? 0 : -1;
	case WH_INT64:
		return json_int64(c->js, t, &n);
	case WH_AMOUNT:
		if (json_int64(c->js, t, &n) != 0)
			return -1;
		return n >= 0 && n <= WEBHOOK_AMOUNT_MAX ? 0 : -1;
	case WH_API_VERSION:
		return json_int64(c->js, t, &n) == 0 && n == 1 ? 0 : -1;
	case WH_METADATA:
		return webhook_check_metadata(c, v);
	case WH_OBJECT_NULL:
		if (t->type == JSON_NULL)
			return 0;
		/* FALLTHROUGH */
	case WH_OBJECT:
		if (t->type != JSON_OBJECT)
			return -1;
		if (f->sub == NULL)
			return 0;
		return webhook_check_object(c, f->sub, v, found) == 0 ? 0 : 1;
	default:
		if (t->type != JSON_STRING)
			return -1;
		return webhook_check_string(c, f->kind, t);
	}
}

/*
 * Check object toks[obj] against table o. found[i] = index of field i's
 * value (0 when absent). Unknown keys are skipped without being named.
 */
static int
webhook_check_object(struct webhook_ctx *c, const struct webhook_object *o,
    size_t obj, uint32_t *found)
{
	const struct json_tok *t = c->toks;
	size_t i, k, f, klen;
	int r;

	memset(found, 0, o->nfields * sizeof *found);
	for (i = 0, k = obj + 1; i < t[obj].size; i++, k = t[k + 1].next) {
		klen = t[k].end - t[k].start;
		for (f = 0; f < o->nfields; f++) {
			if (!(t[k].flags & JSON_F_ESCAPED) &&
			    klen != o->fields[f].len)
				continue;	/* cheap reject; escaped keys vary */
			if (json_str_eq(c->js, &t[k], o->fields[f].name,
			    o->fields[f].len))
				break;
		}
		if (f == o->nfields)
			continue;
		found[f] = (uint32_t)(k + 1);
		if ((r = webhook_check_kind(c, &o->fields[f], k + 1)) < 0)
			return webhook_fail(c, o, o->fields[f].name,
			    webhook_expected[o->fields[f].kind]);
		if (r > 0)
			return -1;	/* a nested object set the reason */
	}
	for (f = 0; f < o->nfields; f++) {
		if (o->fields[f].required && found[f] == 0)
			return webhook_fail(c, o, o->fields[f].name,
			    "required field missing");
	}
	return 0;
}

static int
webhook_check_resource(struct webhook_ctx *c, size_t res, struct webhook *w)
{
	uint32_t found[WEBHOOK_FIELDS_MAX];
	char pid[WEBHOOK_ID_MAX + 1];
	size_t status;

	if (webhook_check_object(c, &webhook_resource, res, found) != 0)
		return -1;
	if (json_str_copy(c->js, &c->toks[found[WH_RES_PAYMENT_ID]], pid,
	    sizeof pid, NULL) != 0 || strcmp(pid, w->resource_id) != 0)
		return webhook_fail(c, &webhook_resource, "payment_id",
		    "expected to equal resource_id");
	if (json_int64(c->js, &c->toks[found[WH_RES_AMOUNT]], &w->amount) != 0)
		return webhook_fail(c, &webhook_resource, "amount",
		    webhook_expected[WH_AMOUNT]);
	status = json_obj_get(c->js, c->toks, found[WH_RES_STATE], "status");
	if (status == 0 || json_str_copy(c->js, &c->toks[status], w->status,
	    sizeof w->status, NULL) != 0)
		return webhook_fail(c, &webhook_state, "status",
		    webhook_expected[WH_STATUS]);
	return 0;
}

/* Envelope fields were validated by the table; copy them out. */
static int
webhook_copy_envelope(struct webhook_ctx *c, const uint32_t *found,
    struct webhook *w)
{
	const struct json_tok *t = c->toks;

	if (json_str_copy(c->js, &t[found[WH_ENV_MESSAGE_ID]], w->message_id,
	    sizeof w->message_id, NULL) != 0 ||
	    json_str_copy(c->js, &t[found[WH_ENV_RESOURCE_ID]], w->resource_id,
	    sizeof w->resource_id, NULL) != 0 ||
	    json_str_copy(c->js, &t[found[WH_ENV_EVENT]], w->event_type,
	    sizeof w->event_type, NULL) != 0) {
		xsnprintf(c->reason, WEBHOOK_REASON_MAX,
		    "body: internal error copying envelope");
		return -1;
	}
	w->event = webhook_event_from_name(w->event_type);
	w->created_ms = c->time_ms;
	return 0;
}

int
webhook_parse(struct webhook_parser *p, const char *body, size_t len,
    struct webhook *out, char reason[WEBHOOK_REASON_MAX])
{
	uint32_t found[WEBHOOK_FIELDS_MAX];
	struct webhook_ctx c;
	struct webhook w;
	enum json_error e;
	size_t n, off;

	p->n = 0;
	e = json_tokenize(body, len, p->toks, p->cap, &n, &off);
	if (e != JSON_OK) {
		xsnprintf(reason, WEBHOOK_REASON_MAX,
		    "body: invalid JSON: %s at byte %zu", json_error_str(e),
		    off);
		return -1;
	}
	if (p->toks[0].type != JSON_OBJECT) {
		xsnprintf(reason, WEBHOOK_REASON_MAX,
		    "body: expected a JSON object");
		return -1;
	}
	memset(&c, 0, sizeof c);
	c.js = body;
	c.toks = p->toks;
	c.reason = reason;
	memset(&w, 0, sizeof w);
	if (webhook_check_object(&c, &webhook_envelope, 0, found) != 0 ||
	    webhook_copy_envelope(&c, found, &w) != 0 ||
	    webhook_check_resource(&c, found[WH_ENV_RESOURCE], &w) != 0)
		return -1;
	*out = w;
	p->n = n;
	return 0;
}

const struct json_tok *
webhook_parser_tokens(const struct webhook_parser *p, size_t *n)
{
	*n = p->n;
	return p->n > 0 ? p->toks : NULL;
}
