/*
 * fuzz_normalise.c: libFuzzer target for the normaliser (dispatch/
 * normalise.h) on arbitrary stored bodies. The first byte picks the row's
 * state, verdict and PII option; the rest is the webhook body. The
 * normaliser reads bodies with payhook's tokenizer and falls back to cJSON
 * for what that refuses, so the event must show what cJSON itself makes of
 * the body: the webhook view's payment_id and amount are checked against
 * cJSON_ParseWithLength, and the event is always one JSON object with the
 * row's seq. Single-threaded.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/normalise.h"
#include "journal/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static const cJSON *
get(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* A string normalise_payment() takes (it drops longer ones). */
static int
short_string(const cJSON *v)
{
	return cJSON_IsString(v) && strlen(v->valuestring) <= 2048;
}

/* What normalise_payment() needs of cJSON's tree to write a view. */
static int
view_possible(const cJSON *res)
{
	const cJSON *state = get(res, "state"), *amount = get(res, "amount");

	return cJSON_IsObject(res) && short_string(get(res, "payment_id")) &&
	    short_string(get(state, "status")) &&
	    cJSON_IsBool(get(state, "finished")) && cJSON_IsNumber(amount) &&
	    amount->valuedouble == floor(amount->valuedouble) &&
	    fabs(amount->valuedouble) <= 9007199254740991.0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct normalise_opts o;
	struct journal_row row;
	char topic[NORMALISE_TOPIC_MAX], *json = NULL, *cause = NULL;
	const cJSON *pay, *res, *v;
	cJSON *ev, *ref;
	size_t len;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	memset(&row, 0, sizeof row);
	row.id = 1;
	row.state = mode & 1 ? JOURNAL_QUARANTINED : JOURNAL_CHECKED;
	if (row.state == JOURNAL_QUARANTINED)
		row.quarantine_reason = (char *)"fuzz";
	xsnprintf(row.message_id, sizeof row.message_id, "fuzz");
	xsnprintf(row.event_type, sizeof row.event_type,
	    "card_payment_captured");
	xsnprintf(row.resource_id, sizeof row.resource_id, "p");
	xsnprintf(row.verdict, sizeof row.verdict, "%s",
	    mode & 2 ? "skipped" : "not_found");
	row.api_status = 404;
	row.occurred_ms = 1634637973371LL;
	row.received_ms = row.occurred_ms + 1;
	row.body = (char *)(uintptr_t)(data + 1);
	row.body_len = size - 1;
	memset(&o, 0, sizeof o);
	o.seq = 42;
	o.include_pii = (mode & 4) != 0;

	CHECK(normalise_row(&row, &o, topic, &json, &len, &cause) == 0);
	CHECK(strlen(json) == len);
	ev = cJSON_ParseWithLength(json, len);
	CHECK(cJSON_IsObject(ev));
	v = get(ev, "seq");
	CHECK(cJSON_IsNumber(v) && v->valuedouble == 42);
	pay = get(ev, "payment");

	ref = cJSON_ParseWithLength(row.body, row.body_len);
	res = get(ref, "resource");
	/* The webhook view is there exactly when cJSON's tree has one. */
	if (row.state == JOURNAL_QUARANTINED || !view_possible(res))
		CHECK(!cJSON_IsObject(pay));
	else {
		CHECK(cJSON_IsObject(pay));
		CHECK(strcmp(get(pay, "payment_id")->valuestring,
		    get(res, "payment_id")->valuestring) == 0);
		v = get(pay, "amount");
		CHECK(cJSON_IsNumber(v) &&
		    v->valuedouble == get(res, "amount")->valuedouble);
	}
	cJSON_Delete(ref);
	cJSON_Delete(ev);
	free(json);
	free(cause);
	return 0;
}
