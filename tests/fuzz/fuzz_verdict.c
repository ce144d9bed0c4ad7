/*
 * fuzz_verdict.c: libFuzzer target for the API-answer side of the cross-
 * check (dispatch/verdict.h): verdict_from_json parses the webhook and the
 * GET /v1/payments/{id} answer and compares them. Input: either
 * [event byte][webhook body] NUL [API answer], or, with no NUL, the whole
 * input as the API answer to a fixed captured-payment webhook. Checks the
 * verdict is self-consistent, that a confirmed verdict really means the
 * same payment, and that both state predicates are total. Single-threaded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dispatch/verdict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static const char *const events[] = {
	"card_payment_started", "card_payment_succeeded",
	"card_payment_captured", "card_payment_refunded",
	"card_payment_failed", "card_payment_expired",
	"card_payment_settled", "card_payment_cancelled", "something_new", "",
};

static const char webhook_fixed[] =
    "{\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qa\","
    "\"created_date\":\"2021-10-19T10:06:13.371Z\","
    "\"resource_id\":\"hu20sqlact5260q2nanm0q8u93\",\"api_version\":1,"
    "\"resource_type\":\"PAYMENT\",\"event_type\":\"card_payment_captured\","
    "\"resource\":{\"amount\":5000,\"state\":{\"status\":\"success\","
    "\"finished\":true},\"reference\":\"12345\",\"payment_id\":"
    "\"hu20sqlact5260q2nanm0q8u93\",\"description\":\"Pay your council "
    "tax\"}}";

static const char *
str_at(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Confirmed: the same payment_id on both sides, present. */
static void
check_confirmed(const char *wbody, size_t wlen, const char *abody,
    size_t alen)
{
	cJSON *w = cJSON_ParseWithLength(wbody, wlen);
	cJSON *a = cJSON_ParseWithLength(abody, alen);
	const char *wp, *ap;

	CHECK(w != NULL && a != NULL);
	wp = str_at(cJSON_GetObjectItemCaseSensitive(w, "resource"),
	    "payment_id");
	ap = str_at(a, "payment_id");
	CHECK(wp != NULL && ap != NULL && strcmp(wp, ap) == 0);
	cJSON_Delete(w);
	cJSON_Delete(a);
}

static void
check_verdict(const struct verdict *v)
{
	cJSON *arr, *it;
	size_t i = 0;

	CHECK(v->nfields <= 5);
	CHECK((v->kind == VERDICT_CONFIRMED) == (v->nfields == 0));
	arr = cJSON_Parse(v->mismatches);
	CHECK(cJSON_IsArray(arr));
	cJSON_ArrayForEach(it, arr) {
		CHECK(i < v->nfields && cJSON_IsString(it));
		CHECK(strcmp(it->valuestring, v->fields[i]) == 0);
		i++;
	}
	CHECK(i == v->nfields);
	cJSON_Delete(arr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *wbody = webhook_fixed, *abody = (const char *)data, *ev;
	size_t wlen = sizeof webhook_fixed - 1, alen = size;
	const uint8_t *nul = memchr(data, '\0', size);
	char reason[VERDICT_REASON_MAX], which, *a, *w;
	struct verdict v;
	int rc;

	ev = "card_payment_captured";
	if (nul != NULL && size > 0 && nul != data) {
		ev = events[data[0] % (sizeof events / sizeof events[0])];
		wbody = (const char *)data + 1;
		wlen = (size_t)(nul - data) - 1;
		abody = (const char *)nul + 1;
		alen = size - (size_t)(nul - data) - 1;
	}
	/* Exact-size heap copies: ASan sees any read past a length. */
	w = malloc(wlen + 1);
	a = malloc(alen + 1);
	memcpy(w, wbody, wlen);
	memcpy(a, abody, alen);

	memset(&v, 0xa5, sizeof v);
	rc = verdict_from_json(ev, w, wlen, a, alen, &v, &which, reason);
	if (rc == 0) {
		check_verdict(&v);
		if (v.kind == VERDICT_CONFIRMED)
			check_confirmed(w, wlen, a, alen);
	} else {
		CHECK(rc == -1 && (which == 'w' || which == 'a'));
		CHECK(reason[0] != '\0' && strnlen(reason, sizeof reason) <
		    sizeof reason);
	}
	/* The predicates on whatever strings the API answer holds. */
	if (alen > 0 && memchr(a, '\0', alen) == NULL) {
		a[alen] = '\0';
		(void)verdict_state_allowed(ev, a, a + alen / 2);
		(void)verdict_status_consistent(a + alen / 3, NULL, a,
		    a + alen / 2);
	}
	free(a);
	free(w);
	return 0;
}
