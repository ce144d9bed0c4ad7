/*
 * test_verdict.c: criterion tests for dispatch/verdict.c: every event type
 * against every API state, every webhook-vs-API vocabulary difference, the
 * out-of-order cases and every mismatching field.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/verdict.h"

#include "reference.h"

#define PID "hu20sqlact5260q2nanm0q8u93"

/* API states (status, code) in the API vocabulary. */
static const struct {
	const char *status, *code;
} api_states[] = {
	{ "created", NULL },		/* 0 */
	{ "started", NULL },		/* 1 */
	{ "submitted", NULL },		/* 2 */
	{ "capturable", NULL },		/* 3 */
	{ "success", NULL },		/* 4 */
	{ "failed", "P0010" },		/* 5 rejected */
	{ "failed", "P0020" },		/* 6 expired */
	{ "failed", "P0030" },		/* 7 user cancel */
	{ "cancelled", "P0040" },	/* 8 service cancel */
	{ "error", "P0050" },		/* 9 */
	{ "failed", NULL },		/* 10 failed, no code */
	{ "bogus", NULL },		/* 11 unknown */
};
#define NSTATES (sizeof api_states / sizeof api_states[0])

/* 1 = legitimate for the event by the time we ask. */
static const struct {
	const char *event;
	int allowed[NSTATES];
} event_table[] = {
	{ "card_payment_started",   { 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 } },
	{ "card_payment_succeeded", { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 } },
	{ "card_payment_captured",  { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 } },
	{ "card_payment_refunded",  { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 } },
	{ "card_payment_settled",   { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 } },
	{ "card_payment_failed",    { 0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 0 } },
	{ "card_payment_expired",   { 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 } },
	{ "card_payment_disputed",  { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 } },
};

Test(verdict, every_event_type_against_every_api_state)
{
	size_t e, s;

	for (e = 0; e < sizeof event_table / sizeof event_table[0]; e++) {
		for (s = 0; s < NSTATES; s++) {
			cr_expect_eq(verdict_state_allowed(event_table[e].event,
			    api_states[s].status, api_states[s].code),
			    event_table[e].allowed[s], "%s vs %s/%s",
			    event_table[e].event, api_states[s].status,
			    api_states[s].code ? api_states[s].code : "-");
		}
	}
}

/* Webhook resource.state (Ledger v2 vocabulary) vs API state. */
static const struct {
	const char *wh_status, *wh_code;
	int consistent[NSTATES];
} vocab_table[] = {
	/* same words */
	{ "created", NULL,      { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 } },
	{ "started", NULL,      { 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 } },
	{ "submitted", NULL,    { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 } },
	{ "capturable", NULL,   { 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0 } },
	{ "success", NULL,      { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 } },
	/* the vocabulary differences (GOVUK-PAY.md 6.3) */
	{ "declined", "P0010",  { 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 } },
	{ "timedout", "P0020",  { 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 } },
	{ "cancelled", "P0030", { 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0 } },
	{ "cancelled", "P0040", { 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 } },
	{ "cancelled", NULL,    { 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0 } },
	{ "error", "P0050",     { 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0 } },
	/* the API's own vocabulary in a webhook (older status_version) */
	{ "failed", "P0010",    { 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 } },
	{ "failed", "P0020",    { 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 } },
	{ "failed", "P0030",    { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 } },
	{ "failed", NULL,       { 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0 } },
	/* unknown webhook words are not compared; the API must be known */
	{ "settling", NULL,     { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 } },
};

Test(verdict, webhook_vocabulary_against_every_api_state)
{
	size_t v, s;

	for (v = 0; v < sizeof vocab_table / sizeof vocab_table[0]; v++) {
		for (s = 0; s < NSTATES; s++) {
			cr_expect_eq(verdict_status_consistent(
			    vocab_table[v].wh_status, vocab_table[v].wh_code,
			    api_states[s].status, api_states[s].code),
			    vocab_table[v].consistent[s], "%s/%s vs %s/%s",
			    vocab_table[v].wh_status,
			    vocab_table[v].wh_code ? vocab_table[v].wh_code :
			    "-", api_states[s].status,
			    api_states[s].code ? api_states[s].code : "-");
		}
	}
}

/* ---- whole JSON bodies ------------------------------------------------ */

static char *
webhook_json(const char *event, const char *rid, const char *pid,
    const char *amount, const char *ref, const char *desc, const char *status,
    const char *code)
{
	char codebuf[64] = "";

	if (code != NULL)
		xsnprintf(codebuf, sizeof codebuf, ",\"code\":\"%s\"", code);
	return xasprintf("{\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qa\","
	    "\"created_date\":\"2021-10-19T10:06:13.371Z\",\"resource_id\":\"%s\","
	    "\"api_version\":1,\"resource_type\":\"PAYMENT\",\"event_type\":\"%s\","
	    "\"resource\":{\"fee\":25,\"moto\":false,\"email\":\"x@example.com\","
	    "\"state\":{\"status\":\"%s\",\"finished\":true%s},\"amount\":%s,"
	    "\"language\":\"en\",\"reference\":\"%s\",\"payment_id\":\"%s\","
	    "\"description\":\"%s\"}}", rid, event, status, codebuf, amount, ref,
	    pid, desc);
}

static char *
api_json(const char *pid, const char *amount, const char *ref,
    const char *desc, const char *status, const char *code, const char *extra)
{
	char codebuf[64] = "";

	if (code != NULL)
		xsnprintf(codebuf, sizeof codebuf, ",\"code\":\"%s\","
		    "\"message\":\"m\"", code);
	return xasprintf("{\"amount\":%s,\"description\":\"%s\","
	    "\"reference\":\"%s\",\"language\":\"en\",\"state\":{\"status\":"
	    "\"%s\",\"finished\":true%s},\"payment_id\":\"%s\","
	    "\"payment_provider\":\"sandbox\"%s,\"_links\":{\"self\":{\"href\":"
	    "\"http://x/v1/payments/%s\",\"method\":\"GET\"}}}", amount, desc,
	    ref, status, codebuf, pid, extra ? extra : "", pid);
}

/* Decide a (webhook, api) pair; returns the kind, fills fields JSON. */
static int
decide(const char *event, const char *wh_status, const char *wh_code,
    const char *api_status, const char *api_code, char *mm, size_t mmlen)
{
	struct verdict v;
	char *w, *a, which, reason[VERDICT_REASON_MAX];
	int rc;

	w = webhook_json(event, PID, PID, "5000", "12345", "Pay your tax",
	    wh_status, wh_code);
	a = api_json(PID, "5000", "12345", "Pay your tax", api_status,
	    api_code, NULL);
	rc = verdict_from_json(event, w, strlen(w), a, strlen(a), &v, &which,
	    reason);
	cr_assert_eq(rc, 0, "%s", reason);
	if (mm != NULL)
		xsnprintf(mm, mmlen, "%s", v.mismatches);
	free(w);
	free(a);
	return v.kind;
}

Test(verdict, real_lifecycles_confirm_across_vocabularies)
{
	/* succeeded/captured/refunded: API success */
	cr_expect_eq(decide("card_payment_succeeded", "success", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_captured", "success", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_refunded", "success", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	/* declined card: webhook declined, API failed P0010 */
	cr_expect_eq(decide("card_payment_failed", "declined", "P0010",
	    "failed", "P0010", NULL, 0), VERDICT_CONFIRMED);
	/* user cancel: webhook cancelled P0030, API failed P0030 */
	cr_expect_eq(decide("card_payment_failed", "cancelled", "P0030",
	    "failed", "P0030", NULL, 0), VERDICT_CONFIRMED);
	/* service cancel: webhook cancelled P0030 (sic), API cancelled P0040 */
	cr_expect_eq(decide("card_payment_failed", "cancelled", "P0030",
	    "cancelled", "P0040", NULL, 0), VERDICT_CONFIRMED);
	/* PSP error: error P0050 on both sides */
	cr_expect_eq(decide("card_payment_failed", "error", "P0050",
	    "error", "P0050", NULL, 0), VERDICT_CONFIRMED);
	/* expiry: webhook timedout P0020, API failed P0020 */
	cr_expect_eq(decide("card_payment_expired", "timedout", "P0020",
	    "failed", "P0020", NULL, 0), VERDICT_CONFIRMED);
}

Test(verdict, vocabulary_differences_that_do_not_match_are_mismatches)
{
	char mm[128];

	cr_expect_eq(decide("card_payment_failed", "declined", "P0010",
	    "failed", "P0030", mm, sizeof mm), VERDICT_MISMATCH);
	cr_expect_str_eq(mm, "[\"status\"]");
	cr_expect_eq(decide("card_payment_failed", "cancelled", "P0030",
	    "failed", "P0010", NULL, 0), VERDICT_MISMATCH);
	cr_expect_eq(decide("card_payment_expired", "timedout", "P0020",
	    "failed", "P0010", NULL, 0), VERDICT_MISMATCH);
	/* an expiry is not a card_payment_failed */
	cr_expect_eq(decide("card_payment_failed", "timedout", "P0020",
	    "failed", "P0020", NULL, 0), VERDICT_MISMATCH);
	/* a "success" claim the API calls failed */
	cr_expect_eq(decide("card_payment_succeeded", "success", NULL,
	    "failed", "P0010", NULL, 0), VERDICT_MISMATCH);
	/* the API still at an earlier state than the event claims */
	cr_expect_eq(decide("card_payment_succeeded", "success", NULL,
	    "submitted", NULL, NULL, 0), VERDICT_MISMATCH);
	cr_expect_eq(decide("card_payment_captured", "success", NULL,
	    "capturable", NULL, NULL, 0), VERDICT_MISMATCH);
	/* an API state nobody knows is never confirmed */
	cr_expect_eq(decide("card_payment_succeeded", "success", NULL,
	    "bogus", NULL, NULL, 0), VERDICT_MISMATCH);
}

Test(verdict, api_further_along_is_confirmed)
{
	char *w, *a, which, reason[VERDICT_REASON_MAX];
	struct verdict v;

	/* The resource snapshot lags (submitted) but the API says success. */
	cr_expect_eq(decide("card_payment_succeeded", "submitted", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_failed", "started", NULL,
	    "failed", "P0010", NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_expired", "created", NULL,
	    "failed", "P0020", NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_succeeded", "capturable", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	/* succeeded meets a refunded (and captured) view: still success */
	w = webhook_json("card_payment_succeeded", PID, PID, "5000", "12345",
	    "Pay your tax", "success", NULL);
	a = api_json(PID, "5000", "12345", "Pay your tax", "success", NULL,
	    ",\"refund_summary\":{\"status\":\"full\",\"amount_available\":0,"
	    "\"amount_submitted\":5000},\"settlement_summary\":{"
	    "\"captured_date\":\"2021-10-19\"}");
	cr_assert_eq(verdict_from_json("card_payment_succeeded", w, strlen(w),
	    a, strlen(a), &v, &which, reason), 0);
	cr_expect_eq(v.kind, VERDICT_CONFIRMED);
	cr_expect_str_eq(v.mismatches, "[]");
	free(w);
	free(a);
}

Test(verdict, out_of_order_events_each_confirm)
{
	/* captured arrives before succeeded; refunded before captured. The
	 * API shows success for all of them whatever the arrival order. */
	static const char *order[] = { "card_payment_refunded",
	    "card_payment_captured", "card_payment_succeeded" };
	size_t i;

	for (i = 0; i < 3; i++)
		cr_expect_eq(decide(order[i], "success", NULL, "success", NULL,
		    NULL, 0), VERDICT_CONFIRMED, "%s", order[i]);
}

Test(verdict, unknown_event_types_compare_fields_not_state)
{
	char mm[128];

	cr_expect_eq(decide("card_payment_disputed", "success", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_disputed", "created", NULL,
	    "success", NULL, NULL, 0), VERDICT_CONFIRMED);
	cr_expect_eq(decide("card_payment_disputed", "success", NULL,
	    "failed", "P0010", mm, sizeof mm), VERDICT_MISMATCH);
	cr_expect_str_eq(mm, "[\"status\"]");
	cr_expect_eq(decide("card_payment_disputed", "declined", "P0010",
	    "failed", "P0010", NULL, 0), VERDICT_CONFIRMED);
}

static struct verdict
decide_fields(const char *rid, const char *pid, const char *amount,
    const char *ref, const char *desc, const char *api_pid,
    const char *api_amount, const char *api_ref, const char *api_desc,
    const char *api_status)
{
	struct verdict v;
	char *w, *a, which, reason[VERDICT_REASON_MAX];

	w = webhook_json("card_payment_captured", rid, pid, amount, ref, desc,
	    "success", NULL);
	a = api_json(api_pid, api_amount, api_ref, api_desc, api_status, NULL,
	    NULL);
	cr_assert_eq(verdict_from_json("card_payment_captured", w, strlen(w),
	    a, strlen(a), &v, &which, reason), 0, "%s", reason);
	free(w);
	free(a);
	return v;
}

Test(verdict, every_field_mismatch_is_named)
{
	const char *o = "00000000000000000000000000";
	struct verdict v;

	v = decide_fields(PID, PID, "5000", "r", "d", PID, "5000", "r", "d",
	    "success");
	cr_expect_eq(v.kind, VERDICT_CONFIRMED);
	cr_expect_eq(v.nfields, 0);

	v = decide_fields(PID, PID, "5000", "r", "d", PID, "1", "r", "d",
	    "success");
	cr_expect_eq(v.kind, VERDICT_MISMATCH);
	cr_expect_str_eq(v.mismatches, "[\"amount\"]");

	v = decide_fields(PID, PID, "5000", "r", "d", PID, "5000", "R", "d",
	    "success");
	cr_expect_str_eq(v.mismatches, "[\"reference\"]");

	v = decide_fields(PID, PID, "5000", "r", "d", PID, "5000", "r", "D",
	    "success");
	cr_expect_str_eq(v.mismatches, "[\"description\"]");

	v = decide_fields(PID, PID, "5000", "r", "d", PID, "5000", "r", "d",
	    "error");
	cr_expect_str_eq(v.mismatches, "[\"status\"]");

	v = decide_fields(PID, PID, "5000", "r", "d", o, "5000", "r", "d",
	    "success");
	cr_expect_str_eq(v.mismatches, "[\"payment_id\"]");

	/* envelope resource_id and resource.payment_id disagree */
	v = decide_fields(o, PID, "5000", "r", "d", o, "5000", "r", "d",
	    "success");
	cr_expect_str_eq(v.mismatches, "[\"payment_id\"]");

	/* all at once, in the fixed order */
	v = decide_fields(PID, PID, "5000", "r", "d", o, "4999", "x", "y",
	    "failed");
	cr_expect_eq(v.nfields, 5);
	cr_expect_str_eq(v.mismatches, "[\"payment_id\",\"amount\","
	    "\"reference\",\"description\",\"status\"]");

	/* amount that is not an integer never matches */
	v = decide_fields(PID, PID, "5000.5", "r", "d", PID, "5000.5", "r",
	    "d", "success");
	cr_expect_str_eq(v.mismatches, "[\"amount\"]");
	v = decide_fields(PID, PID, "5000", "r", "d", PID, "\"5000\"", "r",
	    "d", "success");
	cr_expect_str_eq(v.mismatches, "[\"amount\"]");
}

Test(verdict, missing_fields_on_one_side_mismatch)
{
	struct verdict_payment wh = { PID, 1, 100, "r", "d", "success", NULL };
	struct verdict_payment api = wh;
	struct verdict v;

	api.reference = NULL;
	verdict_decide("card_payment_captured", &wh, &api, &v);
	cr_expect_str_eq(v.mismatches, "[\"reference\"]");
	api = wh;
	api.has_amount = 0;
	verdict_decide("card_payment_captured", &wh, &api, &v);
	cr_expect_str_eq(v.mismatches, "[\"amount\"]");
	api = wh;
	api.status = NULL;
	verdict_decide("card_payment_captured", &wh, &api, &v);
	cr_expect_str_eq(v.mismatches, "[\"status\"]");
}

Test(verdict, unusable_answers_are_errors_not_verdicts)
{
	struct verdict v;
	char *w, which, reason[VERDICT_REASON_MAX];
	static const char *bad[] = { "", "not json", "[1,2]", "\"x\"",
	    "{\"amount\":5000}", "{\"payment_id\":5}" };
	size_t i;

	w = webhook_json("card_payment_captured", PID, PID, "5000", "r", "d",
	    "success", NULL);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_expect_eq(verdict_from_json("card_payment_captured", w,
		    strlen(w), bad[i], strlen(bad[i]), &v, &which, reason), -1,
		    "%s", bad[i]);
		cr_expect_eq(which, 'a');
		cr_expect(strlen(reason) > 0);
	}
	cr_expect_eq(verdict_from_json("card_payment_captured", "{}", 2, w,
	    strlen(w), &v, &which, reason), -1);
	cr_expect_eq(which, 'w');
	free(w);
}

Test(verdict, reference_example_body_confirms_against_its_api_view)
{
	char *body, which;
	char reason[VERDICT_REASON_MAX];
	struct verdict v;
	size_t len;
	char *a;

	body = ref_example("constructed-card_payment_captured.body.json", &len);
	a = api_json(PID, "5000", "12345", "Pay your council tax", "success",
	    NULL, NULL);
	cr_assert_eq(verdict_from_json("card_payment_captured", body, len, a,
	    strlen(a), &v, &which, reason), 0);
	cr_expect_eq(v.kind, VERDICT_CONFIRMED, "%s", v.mismatches);
	free(a);
	free(body);
}
