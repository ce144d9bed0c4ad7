/*
 * test_normalise.c: criterion tests for dispatch/normalise.c: topics, the
 * API-vs-webhook view, verdicts and alerts, timestamps, integer amounts and
 * PII minimisation. Rows are built in memory; no journal is opened.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/normalise.h"
#include "journal/journal.h"
#include "receiver/json.h"

#include "reference.h"

/* The constructed example from GOVUK-PAY.md §1.3 (webhook resource). */
static const char hook_body[] =
	"{\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qa\","
	"\"created_date\":\"2021-10-19T10:06:13.371Z\","
	"\"resource_id\":\"hu20sqlact5260q2nanm0q8u93\",\"api_version\":1,"
	"\"resource_type\":\"PAYMENT\",\"event_type\":\"card_payment_captured\","
	"\"resource\":{\"fee\":25,\"moto\":false,"
	"\"email\":\"sherlock.holmes@example.com\","
	"\"state\":{\"status\":\"success\",\"finished\":true},\"amount\":5000,"
	"\"language\":\"en\",\"metadata\":{\"ledger_code\":\"AB100\","
	"\"internal_reference_number\":200},\"reference\":\"12345\","
	"\"net_amount\":4975,\"payment_id\":\"hu20sqlact5260q2nanm0q8u93\","
	"\"return_url\":\"https://your.service.gov.uk/completed\","
	"\"description\":\"Pay your council tax\",\"card_details\":{"
	"\"card_type\":\"debit\",\"card_brand\":\"Visa\",\"expiry_date\":\"04/27\","
	"\"billing_address\":{\"city\":\"London\",\"line1\":\"221 Baker Street\","
	"\"line2\":\"Flat b\",\"country\":\"GB\",\"postcode\":\"NW1 6XE\"},"
	"\"cardholder_name\":\"Sherlock Holmes\",\"last_digits_card_number\":"
	"\"4242\",\"first_digits_card_number\":\"424242\"},"
	"\"created_date\":\"2021-10-19T10:05:45.454Z\",\"refund_summary\":{"
	"\"status\":\"available\",\"amount_available\":5000,"
	"\"amount_submitted\":0},\"delayed_capture\":false,"
	"\"payment_provider\":\"stripe\",\"settlement_summary\":{"
	"\"captured_date\":\"2021-10-19\",\"capture_submit_time\":"
	"\"2021-10-19T10:06:12.105Z\"},\"authorisation_summary\":{"
	"\"three_d_secure\":{\"required\":true}}}}";

/* What GET /v1/payments/{id} might answer: amount differs, no millis. */
static const char api_body[] =
	"{\"amount\":5001,\"description\":\"Pay your council tax\","
	"\"reference\":\"12345\",\"language\":\"en\",\"email\":"
	"\"sherlock.holmes@example.com\",\"state\":{\"status\":\"success\","
	"\"finished\":true},\"payment_id\":\"hu20sqlact5260q2nanm0q8u93\","
	"\"payment_provider\":\"stripe\",\"provider_id\":\"pi_123\","
	"\"created_date\":\"2021-10-19T10:05:45Z\",\"card_brand\":\"Visa\","
	"\"card_details\":{\"last_digits_card_number\":\"4242\","
	"\"first_digits_card_number\":\"4242424242424242\",\"cardholder_name\":"
	"\"Sherlock Holmes\",\"expiry_date\":\"04/27\",\"billing_address\":"
	"{\"line1\":\"221 Baker Street\",\"postcode\":\"NW1 6XE\"},"
	"\"card_brand\":\"Visa\",\"card_type\":\"debit\",\"wallet_type\":null},"
	"\"settlement_summary\":{\"settled_date\":\"2021-10-20\"},"
	"\"delayed_capture\":false,\"moto\":false,\"_links\":{\"self\":"
	"{\"href\":\"https://x/v1/payments/hu20\",\"method\":\"GET\"}}}";

static struct journal_row row;
static char *json;
static cJSON *ev;

static void
make_row(const char *verdict, const char *api, int api_status)
{
	memset(&row, 0, sizeof row);
	row.id = 7;
	row.state = JOURNAL_CHECKED;
	xsnprintf(row.message_id, sizeof row.message_id,
	    "2c7fqamtqk0g4sbhnm4f4ce6qa");
	xsnprintf(row.event_type, sizeof row.event_type,
	    "card_payment_captured");
	xsnprintf(row.resource_id, sizeof row.resource_id,
	    "hu20sqlact5260q2nanm0q8u93");
	row.occurred_ms = 1634637973371LL;
	row.received_ms = 1634637973783LL;
	row.secret_index = 1;
	row.body = (char *)hook_body;
	row.body_len = strlen(hook_body);
	xsnprintf(row.verdict, sizeof row.verdict, "%s", verdict);
	row.api_status = api_status;
	row.api_body = (char *)api;
	row.api_body_len = api ? strlen(api) : 0;
}

static void
build(int64_t seq, int ooo, int pii, char *topic)
{
	struct normalise_opts o = { .seq = seq, .out_of_order = ooo,
	    .include_pii = pii };
	char *cause = NULL;
	size_t len;

	free(json);
	cJSON_Delete(ev);
	json = NULL;
	cr_assert_eq(normalise_row(&row, &o, topic, &json, &len, &cause), 0,
	    "%s", cause ? cause : "");
	cr_assert_eq(strlen(json), len);
	ev = cJSON_Parse(json);
	cr_assert_not_null(ev, "not JSON: %s", json);
}

static void
cleanup(void)
{
	free(json);
	cJSON_Delete(ev);
	json = NULL;
	ev = NULL;
}

TestSuite(normalise, .fini = cleanup, .timeout = 30);

static const cJSON *
path(const cJSON *o, const char *a, const char *b)
{
	o = cJSON_GetObjectItemCaseSensitive(o, a);
	return b ? cJSON_GetObjectItemCaseSensitive(o, b) : o;
}

static const char *
str(const cJSON *o, const char *a, const char *b)
{
	const cJSON *v = path(o, a, b);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

Test(normalise, confirmed_event_uses_the_api_view_on_its_kind_topic)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("confirmed", api_body, 200);
	build(42, 0, 0, topic);
	cr_assert_str_eq(topic, "payment.captured");
	cr_assert_str_eq(str(ev, "schema", NULL), "payhook.payment_event.v1");
	cr_assert_str_eq(str(ev, "topic", NULL), "payment.captured");
	cr_assert_eq(path(ev, "seq", NULL)->valuedouble, 42);
	cr_assert_str_eq(str(ev, "event_id", NULL), "2c7fqamtqk0g4sbhnm4f4ce6qa");
	cr_assert_str_eq(str(ev, "payment_id", NULL),
	    "hu20sqlact5260q2nanm0q8u93");
	cr_assert_str_eq(str(ev, "occurred_at", NULL),
	    "2021-10-19T10:06:13.371Z");
	cr_assert_str_eq(str(ev, "received_at", NULL),
	    "2021-10-19T10:06:13.783Z");
	cr_assert_str_eq(str(ev, "verification", "signature"), "valid");
	cr_assert_str_eq(str(ev, "verification", "cross_check"), "confirmed");
	cr_assert_eq(cJSON_GetArraySize(path(ev, "verification",
	    "mismatches")), 0);
	cr_assert_str_eq(str(ev, "payment_source", NULL), "api");
	cr_assert_eq(path(ev, "payment", "amount")->valuedouble, 5001);
	cr_assert_str_eq(str(ev, "payment", "provider_id"), "pi_123");
	/* Millisecond RFC 3339 even when the API sent whole seconds. */
	cr_assert_str_eq(str(ev, "payment", "created_date"),
	    "2021-10-19T10:05:45.000Z");
	cr_assert(cJSON_IsFalse(path(ev, "out_of_order", NULL)));
	cr_assert_null(path(ev, "alert", NULL));
	cr_assert_null(path(ev, "payment", "_links"));
}

Test(normalise, pii_never_leaves_by_default)
{
	char topic[NORMALISE_TOPIC_MAX];
	const cJSON *card;

	make_row("confirmed", api_body, 200);
	build(1, 0, 0, topic);
	cr_assert_null(strstr(json, "sherlock"));
	cr_assert_null(strstr(json, "Sherlock"));
	cr_assert_null(strstr(json, "Baker"));
	cr_assert_null(strstr(json, "NW1"));
	cr_assert_null(strstr(json, "@"));
	cr_assert_null(strstr(json, "04/27"));
	card = path(ev, "payment", "card_details");
	cr_assert_str_eq(str(card, "card_brand", NULL), "Visa");
	cr_assert_str_eq(str(card, "card_type", NULL), "debit");
	cr_assert_str_eq(str(card, "last_digits_card_number", NULL), "4242");
	/* A full card number where masked digits belong is dropped. */
	cr_assert_null(path(card, "first_digits_card_number", NULL));
	cr_assert_null(strstr(json, "4242424242424242"));
}

Test(normalise, pii_is_included_only_when_configured)
{
	char topic[NORMALISE_TOPIC_MAX];
	const cJSON *card;

	make_row("skipped", NULL, 0);
	build(1, 0, 1, topic);
	cr_assert_str_eq(str(ev, "payment", "email"),
	    "sherlock.holmes@example.com");
	card = path(ev, "payment", "card_details");
	cr_assert_str_eq(str(card, "cardholder_name", NULL), "Sherlock Holmes");
	cr_assert_str_eq(str(card, "billing_address", "line1"),
	    "221 Baker Street");
	cr_assert_str_eq(str(card, "first_digits_card_number", NULL), "424242");
	cr_assert_null(strstr(json, "04/27"));	/* expiry is never sent */
}

Test(normalise, skipped_uses_the_webhook_view)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("skipped", NULL, 0);
	build(3, 0, 0, topic);
	cr_assert_str_eq(topic, "payment.captured");
	cr_assert_str_eq(str(ev, "verification", "cross_check"), "skipped");
	cr_assert_str_eq(str(ev, "payment_source", NULL), "webhook");
	cr_assert_eq(path(ev, "payment", "amount")->valuedouble, 5000);
	cr_assert_eq(path(ev, "payment", "net_amount")->valuedouble, 4975);
	cr_assert_str_eq(str(ev, "payment", "status"), "success");
	cr_assert(cJSON_IsTrue(path(ev, "payment", "finished")));
	cr_assert_str_eq(str(path(ev, "payment", NULL), "settlement_summary",
	    "captured_date"), "2021-10-19");
	cr_assert_str_eq(str(path(ev, "payment", NULL), "metadata",
	    "ledger_code"), "AB100");
}

Test(normalise, mismatch_is_an_alert_with_both_views)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("mismatch", api_body, 200);
	row.mismatches = "[\"amount\",\"state.status\"]";
	build(9, 0, 0, topic);
	cr_assert_str_eq(topic, "alert.mismatch");
	cr_assert_str_eq(str(ev, "verification", "cross_check"), "mismatch");
	cr_assert_eq(cJSON_GetArraySize(path(ev, "verification",
	    "mismatches")), 2);
	cr_assert_str_eq(str(ev, "alert", "kind"), "mismatch");
	cr_assert_not_null(strstr(str(ev, "alert", "reason"), "amount"));
	cr_assert_eq(path(ev, "payment", "amount")->valuedouble, 5001);
	cr_assert_eq(cJSON_GetObjectItem(path(ev, "alert", "webhook_payment"),
	    "amount")->valuedouble, 5000);
	cr_assert_null(strstr(json, "Sherlock"));
}

Test(normalise, not_found_is_an_alert_with_the_webhook_view)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("not_found", "{\"code\":\"P0200\"}", 404);
	build(10, 0, 0, topic);
	cr_assert_str_eq(topic, "alert.not_found");
	cr_assert_str_eq(str(ev, "payment_source", NULL), "webhook");
	cr_assert_str_eq(str(ev, "alert", "kind"), "not_found");
}

Test(normalise, quarantined_is_an_alert_without_payment)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("", NULL, 0);
	row.state = JOURNAL_QUARANTINED;
	xsnprintf(row.message_id, sizeof row.message_id, "q-%064d", 0);
	row.event_type[0] = row.resource_id[0] = '\0';
	row.occurred_ms = 0;
	row.body = "{\"nope\":true,\"email\":\"x@example.com\"}";
	row.body_len = strlen(row.body);
	row.quarantine_reason = "resource.amount: expected an integer";
	build(11, 1, 1, topic);
	cr_assert_str_eq(topic, "alert.quarantined");
	cr_assert(cJSON_IsNull(path(ev, "payment", NULL)));
	cr_assert(cJSON_IsNull(path(ev, "payment_source", NULL)));
	cr_assert(cJSON_IsNull(path(ev, "event_type", NULL)));
	cr_assert(cJSON_IsNull(path(ev, "payment_id", NULL)));
	cr_assert(cJSON_IsNull(path(ev, "occurred_at", NULL)));
	cr_assert(cJSON_IsFalse(path(ev, "out_of_order", NULL)));
	cr_assert_str_eq(str(ev, "alert", "reason"),
	    "resource.amount: expected an integer");
	cr_assert_eq(path(ev, "alert", "body_bytes")->valuedouble,
	    (double)row.body_len);
	cr_assert_null(strstr(json, "x@example.com"));	/* body never sent */
}

Test(normalise, topics_follow_the_event_type)
{
	static const char *in[][2] = {
		{ "card_payment_started", "payment.started" },
		{ "card_payment_succeeded", "payment.succeeded" },
		{ "card_payment_refunded", "payment.refunded" },
		{ "card_payment_failed", "payment.failed" },
		{ "card_payment_expired", "payment.expired" },
		{ "card_payment_settled", "payment.settled" },
		{ "card_payment_disputed", "payment.other" },
	};
	char topic[NORMALISE_TOPIC_MAX];
	size_t i;

	for (i = 0; i < sizeof in / sizeof in[0]; i++) {
		make_row("unverified", NULL, 0);
		xsnprintf(row.event_type, sizeof row.event_type, "%s", in[i][0]);
		normalise_topic(&row, topic, sizeof topic);
		cr_assert_str_eq(topic, in[i][1]);
	}
	cr_assert_str_eq(normalise_family("payment.failed"), "payment");
	cr_assert_str_eq(normalise_family("alert.mismatch"), "alert");
}

Test(normalise, out_of_order_is_marked)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("skipped", NULL, 0);
	build(5, 1, 0, topic);
	cr_assert(cJSON_IsTrue(path(ev, "out_of_order", NULL)));
}

Test(normalise, unusable_api_answer_falls_back_to_the_webhook)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("confirmed", "{\"payment_id\":\"x\",\"amount\":50.5,"
	    "\"state\":{\"status\":\"success\",\"finished\":true}}", 200);
	build(6, 0, 0, topic);
	cr_assert_str_eq(str(ev, "payment_source", NULL), "webhook");
	cr_assert_eq(path(ev, "payment", "amount")->valuedouble, 5000);
	make_row("confirmed", "not json", 200);
	build(6, 0, 0, topic);
	cr_assert_str_eq(str(ev, "payment_source", NULL), "webhook");
}

Test(normalise, large_integers_are_printed_exactly)
{
	char topic[NORMALISE_TOPIC_MAX];

	make_row("skipped", NULL, 0);
	build(1099511627776LL, 0, 0, topic);
	cr_assert_not_null(strstr(json, "\"seq\":1099511627776,"));
	cr_assert_not_null(strstr(json, "\"amount\":5000,"));
}

Test(normalise, unknown_verdict_is_unverified_and_seq_must_be_positive)
{
	struct normalise_opts o = { .seq = 0 };
	char topic[NORMALISE_TOPIC_MAX], *out = NULL, *cause = NULL;
	size_t len;

	make_row("bogus", NULL, 0);
	build(2, 0, 0, topic);
	cr_assert_str_eq(str(ev, "verification", "cross_check"), "unverified");
	cr_assert_eq(normalise_row(&row, &o, topic, &out, &len, &cause), -1);
	cr_assert_not_null(cause);
	free(cause);
	cr_assert_null(out);
}

/* The event is written directly, not printed by cJSON: strings are escaped
 * (control characters as \u00xx, UTF-8 kept) and metadata numbers printed
 * as cJSON printed them (%.15g, %.17g when that reads back differently:
 * past 2^53 a double is approximate anyway; integers below 1e15 take a
 * shortcut that must print the same), and the whole is JSON. */
Test(normalise, strings_and_numbers_are_written_as_json)
{
	static const char body[] =
	    "{\"webhook_message_id\":\"aaaa\",\"event_type\":"
	    "\"card_payment_captured\",\"resource\":{\"payment_id\":\"bbbb\","
	    "\"amount\":5,\"state\":{\"status\":\"success\",\"finished\":true},"
	    "\"description\":\"tab\\there \\\"quoted\\\" back\\\\slash \\u0001"
	    " nl\\n \\u00e9\\u20ac\",\"metadata\":{\"a\\\"b\":\"x\\u001fy\","
	    "\"f\":1.5,\"tenth\":0.1,\"big\":9007199254740993,\"neg0\":-0.0,"
	    "\"tiny\":1e-7,\"huge\":1e300,\"pi\":3.141592653589793,"
	    "\"n\":-42,\"zero\":0,\"edge\":999999999999999,\"e15\":1e15,"
	    "\"yes\":true,\"obj\":{},\"nul\":null}}}";
	char topic[NORMALISE_TOPIC_MAX];

	make_row("skipped", NULL, 0);
	row.body = (char *)body;
	row.body_len = strlen(body);
	build(3, 0, 0, topic);
	cr_expect(strstr(json, "\"description\":\"tab\\there \\\"quoted\\\" "
	    "back\\\\slash \\u0001 nl\\n \xc3\xa9\xe2\x82\xac\"") != NULL, "%s",
	    json);
	cr_expect(strstr(json, "\"metadata\":{\"a\\\"b\":\"x\\u001fy\","
	    "\"f\":1.5,\"tenth\":0.1,\"big\":9.00719925474099e+15,\"neg0\":-0,"
	    "\"tiny\":1e-07,\"huge\":1e+300,\"pi\":3.1415926535897931,"
	    "\"n\":-42,\"zero\":0,\"edge\":999999999999999,\"e15\":1e+15,"
	    "\"yes\":true}") != NULL, "%s", json);
	cr_expect_str_eq(str(ev, "payment", "description"), "tab\there "
	    "\"quoted\" back\\slash \001 nl\n \xc3\xa9\xe2\x82\xac");
}

/* The cJSON arena: an event far bigger than one arena chunk (spills), and
 * cJSON used outside normalise_row afterwards (plain malloc again). */
Test(normalise, large_events_spill_the_arena_and_cjson_still_works_after)
{
	struct journal_row big;
	struct normalise_opts o = { .seq = 1 };
	char topic[NORMALISE_TOPIC_MAX], *out = NULL, *cause = NULL, *body;
	size_t len, i, n = 0, cap = 400000;
	cJSON *j;

	body = xmalloc(cap);
	n += (size_t)xsnprintf(body + n, cap - n, "{\"webhook_message_id\":"
	    "\"aaaa\",\"created_date\":\"2021-10-19T10:06:13.371Z\","
	    "\"resource_id\":\"bbbb\",\"api_version\":1,\"resource_type\":"
	    "\"PAYMENT\",\"event_type\":\"card_payment_captured\",\"resource\":"
	    "{\"payment_id\":\"bbbb\",\"amount\":5,\"state\":{\"status\":"
	    "\"success\",\"finished\":true},\"description\":\"d\","
	    "\"reference\":\"r\",\"metadata\":{");
	for (i = 0; i < 5000; i++)
		n += (size_t)xsnprintf(body + n, cap - n, "%s\"k%zu\":\"v%zu\"",
		    i ? "," : "", i, i);
	n += (size_t)xsnprintf(body + n, cap - n, "}}}");
	memset(&big, 0, sizeof big);
	big.id = 1;
	big.state = JOURNAL_CHECKED;
	xsnprintf(big.message_id, sizeof big.message_id, "aaaa");
	xsnprintf(big.event_type, sizeof big.event_type,
	    "card_payment_captured");
	xsnprintf(big.resource_id, sizeof big.resource_id, "bbbb");
	xsnprintf(big.verdict, sizeof big.verdict, "skipped");
	big.body = body;
	big.body_len = n;
	for (i = 0; i < 3; i++) {
		cr_assert_eq(normalise_row(&big, &o, topic, &out, &len,
		    &cause), 0, "%s", cause ? cause : "");
		cr_expect_str_eq(topic, "payment.captured");
		free(out);
	}
	j = cJSON_Parse("{\"after\":[1,2,3]}");
	cr_assert_not_null(j);
	cJSON_Delete(j);
	free(body);
}

/* The normaliser reads bodies with payhook's strict tokenizer and hands
 * anything it refuses to cJSON: every body is read as cJSON reads it. */
#define RES_HEAD "{\"resource\":{\"payment_id\":\"p\",\"state\":{\"status\":" \
	"\"success\",\"finished\":true},"

static void
build_body(const char *body, char *topic)
{
	make_row("skipped", NULL, 0);
	row.body = (char *)body;
	row.body_len = strlen(body);
	build(1, 0, 0, topic);
}

Test(normalise, bodies_are_read_as_cjson_reads_them)
{
	char topic[NORMALISE_TOPIC_MAX], body[512], digits[70];
	const cJSON *v;
	cJSON *direct;

	/* A duplicate member (strict tokenizer: refused): the first wins. */
	build_body(RES_HEAD "\"amount\":1,\"amount\":2}}", topic);
	v = path(ev, "payment", "amount");
	cr_assert(cJSON_IsNumber(v), "%s", json);
	cr_expect_eq(v->valuedouble, 1.0, "%s", json);

	/* U+0000 (refused by the tokenizer): cJSON's string stops there. */
	build_body(RES_HEAD "\"amount\":1,\"description\":\"ab\\u0000cd\"}}",
	    topic);
	cr_expect_str_eq(str(ev, "payment", "description"), "ab", "%s", json);

	/* A leading byte order mark: cJSON skips it. */
	build_body("\xef\xbb\xbf" RES_HEAD "\"amount\":3}}", topic);
	v = path(ev, "payment", "amount");
	cr_expect(cJSON_IsNumber(v) && v->valuedouble == 3.0, "%s", json);

	/* Numbers of up to 63 bytes through the tokenizer; longer ones are
	 * left to cJSON (how it reads them depends on its version): the
	 * event shows whatever cJSON itself makes of the body. */
	memset(digits, '7', 63);
	digits[63] = '\0';
	xsnprintf(body, sizeof body, RES_HEAD "\"amount\":1,\"metadata\":"
	    "{\"long\":%s}}}", digits);
	build_body(body, topic);
	cr_expect(strstr(json, "\"long\":7.7777777777777782e+62") != NULL,
	    "%s", json);
	memset(digits, '7', 64);
	digits[64] = '\0';
	xsnprintf(body, sizeof body, RES_HEAD "\"amount\":1,\"metadata\":"
	    "{\"long\":%s}}}", digits);
	build_body(body, topic);
	direct = cJSON_Parse(body);
	if (direct == NULL)
		cr_expect(cJSON_IsNull(path(ev, "payment", NULL)), "%s", json);
	else {
		v = path(path(ev, "payment", "metadata"), "long", NULL);
		cr_expect(cJSON_IsNumber(v) && v->valuedouble == path(path(
		    direct, "resource", "metadata"), "long", NULL)->valuedouble,
		    "%s", json);
		cJSON_Delete(direct);
	}

	/* Escapes, nesting and every literal, through the tokenizer. */
	build_body("{\"resource\":{\"payment_id\":\"p\\u00e9\\ud83d\\ude00\","
	    "\"amount\":4,\"state\":{\"status\":\"success\",\"finished\":"
	    "false},\"metadata\":{\"l\":[1,\"x\",false,null],\"t\":true,"
	    "\"n\":null}}}", topic);
	cr_expect_str_eq(str(ev, "payment", "payment_id"),
	    "p\xc3\xa9\xf0\x9f\x98\x80", "%s", json);
	cr_expect(strstr(json, "\"finished\":false") != NULL, "%s", json);
	cr_expect(strstr(json, "\"t\":true") != NULL, "%s", json);
}

/*
 * A fused event is normalised from the receiver's tokens of the body
 * (normalise_opts.body_toks) instead of a second tokenizing: the event must
 * be byte for byte the one made from the body alone, for every reference
 * webhook and the bodies above, with and without PII.
 */
static char *
event_of(const char *body, size_t len, const struct json_tok *toks,
    size_t ntoks, int pii)
{
	struct normalise_opts o = { .seq = 9, .include_pii = pii,
	    .body_toks = toks, .body_ntoks = ntoks };
	char topic[NORMALISE_TOPIC_MAX], *out = NULL, *cause = NULL;
	size_t outlen;

	make_row("skipped", NULL, 0);
	row.body = (char *)body;
	row.body_len = len;
	cr_assert_eq(normalise_row(&row, &o, topic, &out, &outlen, &cause), 0,
	    "%s", cause ? cause : "");
	return out;
}

static void
same_event_from_tokens(const char *what, const char *body, size_t len)
{
	struct json_tok toks[512];
	size_t n, off;
	char *plain, *fused;
	int pii;

	cr_assert_eq(json_tokenize(body, len, toks, 512, &n, &off), JSON_OK,
	    "%s", what);
	for (pii = 0; pii <= 1; pii++) {
		plain = event_of(body, len, NULL, 0, pii);
		fused = event_of(body, len, toks, n, pii);
		cr_expect_str_eq(fused, plain, "%s (pii %d)", what, pii);
		free(plain);
		free(fused);
	}
}

Test(normalise, events_from_the_receivers_tokens_are_the_same_bytes)
{
	static const char *files[] = {
		"constructed-card_payment_captured.body.json",
		"pay-webhooks-WebhookMessageBodyTest-expectedJson.json",
		"pay-webhooks-PaymentApiRepresentationTest-expectedJson-"
		    "resource.json",
		"tech-docs-webhook-message-example.json",
	};
	static const char escapes[] = "{\"resource\":{\"payment_id\":"
	    "\"p\\u00e9\\ud83d\\ude00\",\"amount\":4,\"state\":{\"status\":"
	    "\"success\",\"finished\":false},\"description\":\"a\\\"b\\n\","
	    "\"metadata\":{\"l\":[1,\"x\"],\"t\":true,\"f\":1.5e3}}}";
	char *buf;
	size_t i, len;

	for (i = 0; i < UTIL_ARRAY_LEN(files); i++) {
		buf = ref_example(files[i], &len);
		same_event_from_tokens(files[i], buf, len);
		free(buf);
	}
	same_event_from_tokens("hook_body", hook_body, strlen(hook_body));
	same_event_from_tokens("escapes", escapes, strlen(escapes));
}

/* The tokens given are the ones read: no second tokenizing behind them. */
Test(normalise, the_given_tokens_are_what_is_read)
{
	struct json_tok toks[512];
	size_t n, off, i;
	char *fused;

	cr_assert_eq(json_tokenize(hook_body, strlen(hook_body), toks, 512, &n,
	    &off), JSON_OK);
	/* Turn resource.description's value into a null: a normaliser that
	 * tokenized the body again would still print the string. */
	for (i = 0; i + 1 < n; i++) {
		if ((toks[i].flags & JSON_F_KEY) && json_str_eq(hook_body,
		    &toks[i], "description", 11))
			break;
	}
	cr_assert_lt(i + 1, n);
	cr_assert_eq(toks[i + 1].type, JSON_STRING);
	toks[i + 1].type = JSON_NULL;
	fused = event_of(hook_body, strlen(hook_body), toks, n, 0);
	cr_expect_null(strstr(fused, "Pay your council tax"), "%s", fused);
	cr_expect_not_null(strstr(fused, "\"reference\":\"12345\""), "%s",
	    fused);
	free(fused);
}
