/*
 * verdict.c: the cross-check verdict. Maps an event type to the API states
 * that may legitimately be seen by the time we ask (the API may be further
 * along), translates the webhook's status vocabulary (Ledger v2: declined,
 * timedout, cancelled P0030 for a service cancel) to the API's (failed with
 * P0010/P0020/P0030, cancelled P0040), and compares the fields.
 * Pure: any thread; never does I/O, never logs, never quotes body content.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/verdict.h"

/* Payment outcomes in one vocabulary (bits, so sets are masks). */
enum outcome {
	O_CREATED = 1 << 0,
	O_STARTED = 1 << 1,
	O_SUBMITTED = 1 << 2,
	O_CAPTURABLE = 1 << 3,
	O_SUCCESS = 1 << 4,
	O_DECLINED = 1 << 5,		/* API failed P0010 */
	O_EXPIRED = 1 << 6,		/* API failed P0020 */
	O_USER_CANCEL = 1 << 7,		/* API failed P0030 */
	O_SERVICE_CANCEL = 1 << 8,	/* API cancelled P0040 */
	O_ERROR = 1 << 9,		/* API error P0050 */
	O_FAILED_OTHER = 1 << 10,	/* API failed, other or no code */
};

#define O_FAILED_ANY	(O_DECLINED | O_EXPIRED | O_USER_CANCEL | \
			 O_FAILED_OTHER)
#define O_TERMINAL	(O_SUCCESS | O_FAILED_ANY | O_SERVICE_CANCEL | O_ERROR)
#define O_ALL		(O_CREATED | O_STARTED | O_SUBMITTED | O_CAPTURABLE | \
			 O_TERMINAL)

/* The states the API may show by the time a webhook of this type is
 * checked. Captures and refunds do not change the API status (success). */
static const struct {
	const char	*event_type;
	unsigned	 allowed;
} verdict_events[] = {
	{ "card_payment_started", O_ALL & ~O_CREATED },
	{ "card_payment_succeeded", O_SUCCESS },
	{ "card_payment_captured", O_SUCCESS },
	{ "card_payment_refunded", O_SUCCESS },
	{ "card_payment_settled", O_SUCCESS },
	{ "card_payment_failed", O_DECLINED | O_USER_CANCEL | O_SERVICE_CANCEL |
	    O_ERROR | O_FAILED_OTHER },
	{ "card_payment_expired", O_EXPIRED },
};

static int
verdict_streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* An API state as one outcome; 0 if the status is unknown. */
static unsigned
verdict_api_outcome(const char *status, const char *code)
{
	static const struct {
		const char	*status;
		unsigned	 o;
	} plain[] = {
		{ "created", O_CREATED }, { "started", O_STARTED },
		{ "submitted", O_SUBMITTED }, { "capturable", O_CAPTURABLE },
		{ "success", O_SUCCESS }, { "cancelled", O_SERVICE_CANCEL },
		{ "error", O_ERROR },
	};
	size_t i;

	if (status == NULL)
		return 0;
	if (strcmp(status, "failed") == 0) {
		if (verdict_streq(code, "P0010"))
			return O_DECLINED;
		if (verdict_streq(code, "P0020"))
			return O_EXPIRED;
		if (verdict_streq(code, "P0030"))
			return O_USER_CANCEL;
		return O_FAILED_OTHER;
	}
	for (i = 0; i < UTIL_ARRAY_LEN(plain); i++) {
		if (strcmp(status, plain[i].status) == 0)
			return plain[i].o;
	}
	return 0;
}

/*
 * The API outcomes a webhook resource.state may stand for; 0 when the
 * webhook status is unknown (not compared). Ledger's v2 vocabulary says
 * "cancelled" P0030 for both a user cancel (API failed P0030) and a service
 * cancel (API cancelled P0040).
 */
static unsigned
verdict_webhook_outcomes(const char *status, const char *code)
{
	if (status == NULL)
		return 0;
	if (strcmp(status, "declined") == 0)
		return O_DECLINED;
	if (strcmp(status, "timedout") == 0)
		return O_EXPIRED;
	if (strcmp(status, "cancelled") == 0) {
		if (verdict_streq(code, "P0040"))
			return O_SERVICE_CANCEL;
		return O_USER_CANCEL | O_SERVICE_CANCEL;
	}
	if (strcmp(status, "failed") == 0) {	/* the API's own vocabulary */
		if (code == NULL)
			return O_FAILED_ANY;
		return verdict_api_outcome(status, code);
	}
	return verdict_api_outcome(status, code);
}

/* Outcomes at or after a non-terminal one (the API may be further along). */
static unsigned
verdict_at_or_after(unsigned o)
{
	switch (o) {
	case O_CREATED:
		return O_ALL;
	case O_STARTED:
		return O_ALL & ~O_CREATED;
	case O_SUBMITTED:
		return O_ALL & ~(O_CREATED | O_STARTED);
	case O_CAPTURABLE:
		return O_CAPTURABLE | O_TERMINAL;
	default:
		return o;
	}
}

int
verdict_state_allowed(const char *event_type, const char *api_status,
    const char *api_code)
{
	unsigned api = verdict_api_outcome(api_status, api_code);
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(verdict_events); i++) {
		if (verdict_streq(event_type, verdict_events[i].event_type))
			return (verdict_events[i].allowed & api) != 0;
	}
	return 1;
}

int
verdict_status_consistent(const char *wh_status, const char *wh_code,
    const char *api_status, const char *api_code)
{
	unsigned api = verdict_api_outcome(api_status, api_code);
	unsigned wh = verdict_webhook_outcomes(wh_status, wh_code);

	if (api == 0)
		return 0;	/* the authority must show a known state */
	if (wh == 0)
		return 1;	/* unknown webhook vocabulary: not compared */
	if ((wh & api) != 0)
		return 1;
	/* A single non-terminal webhook state may be behind the API. */
	return (verdict_at_or_after(wh) & api) != 0;
}

static int
verdict_str_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
verdict_add(struct verdict *out, const char *field)
{
	if (out->nfields < VERDICT_MAX_FIELDS)
		out->fields[out->nfields++] = field;
}

void
verdict_decide(const char *event_type, const struct verdict_payment *wh,
    const struct verdict_payment *api, struct verdict *out)
{
	size_t i, off;

	memset(out, 0, sizeof *out);
	if (!verdict_str_same(wh->payment_id, api->payment_id) ||
	    wh->payment_id == NULL)
		verdict_add(out, "payment_id");
	if (wh->has_amount != api->has_amount || wh->has_amount < 0 ||
	    (wh->has_amount && wh->amount != api->amount))
		verdict_add(out, "amount");
	if (!verdict_str_same(wh->reference, api->reference))
		verdict_add(out, "reference");
	if (!verdict_str_same(wh->description, api->description))
		verdict_add(out, "description");
	if (!verdict_state_allowed(event_type, api->status, api->code) ||
	    !verdict_status_consistent(wh->status, wh->code, api->status,
	    api->code))
		verdict_add(out, "status");
	out->kind = out->nfields == 0 ? VERDICT_CONFIRMED : VERDICT_MISMATCH;
	off = (size_t)xsnprintf(out->mismatches, sizeof out->mismatches, "[");
	for (i = 0; i < out->nfields; i++) {
		off += (size_t)xsnprintf(out->mismatches + off,
		    sizeof out->mismatches - off, "%s\"%s\"", i ? "," : "",
		    out->fields[i]);
	}
	xsnprintf(out->mismatches + off, sizeof out->mismatches - off, "]");
}

static const char *
verdict_json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Fill a view from a payment object (webhook resource or API answer). */
static void
verdict_view(const cJSON *p, struct verdict_payment *v)
{
	const cJSON *amount, *state;

	memset(v, 0, sizeof *v);
	v->payment_id = verdict_json_str(p, "payment_id");
	v->reference = verdict_json_str(p, "reference");
	v->description = verdict_json_str(p, "description");
	amount = cJSON_GetObjectItemCaseSensitive(p, "amount");
	if (cJSON_IsNumber(amount)) {
		double d = amount->valuedouble;

		if (d > -9007199254740992.0 && d < 9007199254740992.0 &&
		    (double)(int64_t)d == d) {
			v->has_amount = 1;
			v->amount = (int64_t)d;
		} else
			v->has_amount = -1;	/* never equal to anything */
	} else if (amount != NULL)
		v->has_amount = -1;
	state = cJSON_GetObjectItemCaseSensitive(p, "state");
	if (cJSON_IsObject(state)) {
		v->status = verdict_json_str(state, "status");
		v->code = verdict_json_str(state, "code");
	}
}

int
verdict_from_json(const char *event_type, const char *webhook_body,
    size_t webhook_len, const char *api_body, size_t api_len,
    struct verdict *out, char *which, char reason[VERDICT_REASON_MAX])
{
	struct verdict_payment wh, api;
	cJSON *w = NULL, *a = NULL;
	const cJSON *res;
	const char *rid;
	int rc = -1;

	*which = 0;
	reason[0] = '\0';
	w = cJSON_ParseWithLength(webhook_body, webhook_len);
	res = cJSON_GetObjectItemCaseSensitive(w, "resource");
	if (!cJSON_IsObject(w) || !cJSON_IsObject(res)) {
		*which = 'w';
		xsnprintf(reason, VERDICT_REASON_MAX,
		    "webhook body has no resource object");
		goto out;
	}
	a = cJSON_ParseWithLength(api_body, api_len);
	if (!cJSON_IsObject(a)) {
		*which = 'a';
		xsnprintf(reason, VERDICT_REASON_MAX,
		    "API answer is not a JSON object");
		goto out;
	}
	if (verdict_json_str(a, "payment_id") == NULL) {
		*which = 'a';
		xsnprintf(reason, VERDICT_REASON_MAX,
		    "API answer has no payment_id");
		goto out;
	}
	verdict_view(res, &wh);
	verdict_view(a, &api);
	/* The id we asked about is the envelope's; both must agree. */
	rid = verdict_json_str(w, "resource_id");
	if (rid != NULL && !verdict_str_same(rid, wh.payment_id))
		wh.payment_id = NULL;
	verdict_decide(event_type, &wh, &api, out);
	rc = 0;
out:
	cJSON_Delete(a);
	cJSON_Delete(w);
	return rc;
}
