/*
 * test_webhook.c: webhook_parse accepts what GOV.UK Pay's sender emits
 * (the reference examples in $PAYHOOK_REF/webhook-examples) and rejects
 * mutations of it with a reason that names the field and never the value.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "receiver/json.h"
#include "receiver/webhook.h"

#include "reference.h"

#define CONSTRUCTED	"constructed-card_payment_captured.body.json"
#define TECH_DOCS	"tech-docs-webhook-message-example.json"
#define BODY_TEST	"pay-webhooks-WebhookMessageBodyTest-expectedJson.json"
#define API_REPR	"pay-webhooks-PaymentApiRepresentationTest-expectedJson-resource.json"
#define SIG_VECTORS	"signature-test-vectors.json"

/* One edit of the constructed body: replace the first "from" with "to". */
struct mutation {
	const char	*name;
	const char	*from;
	const char	*to;
	int		 valid;
	const char	*reason;	/* expected substring when invalid */
};

static struct webhook_parser *parser;
static char *constructed;

static void
setup(void)
{
	parser = webhook_parser_new();
	constructed = ref_example(CONSTRUCTED, NULL);
}

static void
teardown(void)
{
	webhook_parser_free(parser);
	free(constructed);
}

TestSuite(webhook, .init = setup, .fini = teardown);

static int
parse_str(const char *body, struct webhook *w, char *reason)
{
	return webhook_parse(parser, body, strlen(body), w, reason);
}

/* body with the first occurrence of from replaced by to (caller frees). */
static char *
mutate(const char *body, const char *from, const char *to)
{
	const char *at = strstr(body, from);
	size_t head, flen = strlen(from), tlen = strlen(to);
	char *out;

	cr_assert_not_null(at, "mutation source <%s> not in the body", from);
	head = (size_t)(at - body);
	out = xmalloc(strlen(body) - flen + tlen + 1);
	memcpy(out, body, head);
	memcpy(out + head, to, tlen);
	memcpy(out + head + tlen, at + flen, strlen(at + flen) + 1);
	return out;
}

/* The reason must not quote the body: no value we put in, no PII. */
static void
expect_reason_quotes_nothing(const char *reason, const char *injected)
{
	static const char *const pii[] = {
		"sherlock", "Sherlock", "Holmes", "4242", "Baker", "NW1",
		"council", "12345", "hu20sqlact", "2c7fqamtqk",
	};
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(pii); i++)
		cr_expect_null(strstr(reason, pii[i]), "reason <%s> quotes body",
		    reason);
	if (injected != NULL && strlen(injected) >= 4 &&
	    strspn(injected, "\":,{}[] ") < strlen(injected))
		cr_expect_null(strstr(reason, injected),
		    "reason <%s> quotes the value", reason);
}

static void
run_mutations(const struct mutation *m, size_t n)
{
	char reason[WEBHOOK_REASON_MAX];
	struct webhook w;
	size_t i;
	char *body;
	int rc;

	for (i = 0; i < n; i++) {
		body = mutate(constructed, m[i].from, m[i].to);
		reason[0] = '\0';
		rc = parse_str(body, &w, reason);
		if (m[i].valid)
			cr_expect_eq(rc, 0, "%s: rejected: %s", m[i].name, reason);
		else {
			cr_expect_eq(rc, -1, "%s: accepted", m[i].name);
			if (rc == -1 && m[i].reason != NULL)
				cr_expect_not_null(strstr(reason, m[i].reason),
				    "%s: reason <%s> lacks <%s>", m[i].name,
				    reason, m[i].reason);
			expect_reason_quotes_nothing(reason, m[i].to);
		}
		free(body);
	}
}

#define RUN(table) run_mutations(table, UTIL_ARRAY_LEN(table))

#define MSG_ID	"\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qa\""
#define RES_ID	"\"resource_id\":\"hu20sqlact5260q2nanm0q8u93\""
#define PAY_ID	"\"payment_id\":\"hu20sqlact5260q2nanm0q8u93\""
#define CREATED	"\"created_date\":\"2021-10-19T10:06:13.371Z\""
#define EVENT	"\"event_type\":\"card_payment_captured\""
#define STATE	"\"state\":{\"status\":\"success\",\"finished\":true}"

Test(webhook, constructed_captured_body_is_valid_and_copied_out)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	int64_t when;

	cr_assert_eq(parse_str(constructed, &w, reason), 0, "%s", reason);
	cr_expect_str_eq(w.message_id, "2c7fqamtqk0g4sbhnm4f4ce6qa");
	cr_expect_str_eq(w.resource_id, "hu20sqlact5260q2nanm0q8u93");
	cr_expect_str_eq(w.event_type, "card_payment_captured");
	cr_expect_eq(w.event, WEBHOOK_EVENT_CAPTURED);
	cr_assert_eq(util_parse_time_ms("2021-10-19T10:06:13.371Z", 24, &when), 0);
	cr_expect_eq(w.created_ms, when);
	cr_expect_eq(w.amount, 5000);
	cr_expect_str_eq(w.status, "success");
}

/* The tokens of an accepted body stay readable (the server keeps them for
 * the fused event); a refused body leaves none. */
Test(webhook, the_tokens_of_the_last_accepted_body_are_kept)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct json_tok toks[512];
	const struct json_tok *t;
	struct webhook w;
	size_t n, want, off, i;

	cr_assert_eq(parse_str(constructed, &w, reason), 0, "%s", reason);
	t = webhook_parser_tokens(parser, &n);
	cr_assert_not_null(t);
	cr_assert_eq(json_tokenize(constructed, strlen(constructed), toks, 512,
	    &want, &off), JSON_OK);
	cr_assert_eq(n, want);
	for (i = 0; i < n; i++) {
		cr_expect(t[i].start == toks[i].start && t[i].end ==
		    toks[i].end && t[i].size == toks[i].size && t[i].next ==
		    toks[i].next && t[i].type == toks[i].type && t[i].flags ==
		    toks[i].flags, "token %zu", i);
	}
	cr_expect_eq(t[0].type, JSON_OBJECT);

	cr_assert_neq(parse_str("{\"webhook_message_id\":1}", &w, reason), 0);
	cr_expect_null(webhook_parser_tokens(parser, &n));
	cr_expect_eq(n, 0);
	cr_assert_neq(parse_str("{", &w, reason), 0);
	cr_expect_null(webhook_parser_tokens(parser, &n));
}

Test(webhook, tech_docs_example_is_valid_despite_lower_case_type_and_provider_id)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	size_t len;
	char *body = ref_example(TECH_DOCS, &len);

	cr_expect_eq(webhook_parse(parser, body, len, &w, reason), 0, "%s",
	    reason);
	cr_expect_str_eq(w.message_id, "123abc");
	cr_expect_eq(w.event, WEBHOOK_EVENT_CAPTURED);
	free(body);
}

Test(webhook, sender_unit_test_body_is_invalid_for_its_ids_and_dummy_resource)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	size_t len;
	char *body = ref_example(BODY_TEST, &len), *fixed, *fixed2;

	cr_expect_eq(webhook_parse(parser, body, len, &w, reason), -1);
	cr_expect_not_null(strstr(reason, "webhook_message_id:"), "%s", reason);
	expect_reason_quotes_nothing(reason, "externalId");
	/* With valid ids, the dummy resource is what fails. */
	fixed = mutate(body, "\"externalId\"", "\"abc\"");
	fixed2 = mutate(fixed, "\"resource-external-id\"", "\"def\"");
	cr_expect_eq(parse_str(fixed2, &w, reason), -1);
	cr_expect_not_null(strstr(reason, "resource."), "%s", reason);
	expect_reason_quotes_nothing(reason, "argonauts");
	free(fixed);
	free(fixed2);
	free(body);
}

Test(webhook, files_that_are_not_webhook_bodies_are_invalid)
{
	static const char *const names[] = { API_REPR, SIG_VECTORS };
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	size_t i, len;
	char *body;

	for (i = 0; i < UTIL_ARRAY_LEN(names); i++) {
		body = ref_example(names[i], &len);
		cr_expect_eq(webhook_parse(parser, body, len, &w, reason), -1,
		    "%s accepted", names[i]);
		cr_expect_str_eq(reason,
		    "webhook_message_id: required field missing");
		free(body);
	}
}

static char *
wrap_resource(const char *resource_id, const char *event, const char *resource)
{
	return xasprintf("{\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qa\","
	    "\"created_date\":\"2018-09-22T10:13:16.067Z\",\"resource_id\":\"%s\","
	    "\"api_version\":1,\"resource_type\":\"PAYMENT\",\"event_type\":\"%s\","
	    "\"resource\":%s}", resource_id, event, resource);
}

Test(webhook, payment_api_representation_resource_is_valid_in_an_envelope)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *res = ref_example(API_REPR, NULL), *body, *bad;

	body = wrap_resource("3rke415aam1pl1u3hvaljbcll3", "card_payment_started",
	    res);
	cr_expect_eq(parse_str(body, &w, reason), 0, "%s", reason);
	cr_expect_eq(w.amount, 1000);
	cr_expect_str_eq(w.status, "created");
	cr_expect_eq(w.event, WEBHOOK_EVENT_STARTED);
	free(body);
	body = wrap_resource("3rke415aam1pl1u3hvaljbcll4", "card_payment_started",
	    res);
	cr_expect_eq(parse_str(body, &w, reason), -1);
	cr_expect_str_eq(reason,
	    "resource.payment_id: expected to equal resource_id");
	free(body);
	bad = mutate(res, "\"amount\": 1000", "\"amount\": \"1000\"");
	body = wrap_resource("3rke415aam1pl1u3hvaljbcll3", "card_payment_started",
	    bad);
	cr_expect_eq(parse_str(body, &w, reason), -1);
	cr_expect_str_eq(reason, "resource.amount: expected an integer 0..10000000");
	free(body);
	free(bad);
	free(res);
}

Test(webhook, refunded_event_carries_the_parent_payment_as_resource)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *body = mutate(constructed, "card_payment_captured",
	    "card_payment_refunded");

	cr_expect_eq(parse_str(body, &w, reason), 0, "%s", reason);
	cr_expect_eq(w.event, WEBHOOK_EVENT_REFUNDED);
	cr_expect_str_eq(w.resource_id, "hu20sqlact5260q2nanm0q8u93");
	free(body);
}

Test(webhook, ids_outside_the_pay_alphabet_are_rejected)
{
	static const struct mutation m[] = {
		{ "msg id dot-dot", MSG_ID, "\"webhook_message_id\":\"../etc/passwd\"", 0, "webhook_message_id: expected 1..26" },
		{ "msg id %2F", MSG_ID, "\"webhook_message_id\":\"abc%2Fdef\"", 0, "webhook_message_id:" },
		{ "msg id upper", MSG_ID, "\"webhook_message_id\":\"2C7FQAMTQK0G4SBHNM4F4CE6QA\"", 0, "webhook_message_id:" },
		{ "msg id w", MSG_ID, "\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qw\"", 0, "webhook_message_id:" },
		{ "msg id 27", MSG_ID, "\"webhook_message_id\":\"2c7fqamtqk0g4sbhnm4f4ce6qa0\"", 0, "webhook_message_id:" },
		{ "msg id empty", MSG_ID, "\"webhook_message_id\":\"\"", 0, "webhook_message_id:" },
		{ "msg id number", MSG_ID, "\"webhook_message_id\":12345678", 0, "webhook_message_id:" },
		{ "msg id null", MSG_ID, "\"webhook_message_id\":null", 0, "webhook_message_id:" },
		{ "msg id trailing newline", MSG_ID, "\"webhook_message_id\":\"2c7fqamtqk\\n\"", 0, "webhook_message_id:" },
		{ "msg id NUL escape", MSG_ID, "\"webhook_message_id\":\"2c7f\\u0000\"", 0, "webhook_message_id:" },
		{ "msg id space", MSG_ID, "\"webhook_message_id\":\"2c7f qamtqk\"", 0, "webhook_message_id:" },
		{ "res id slash", RES_ID, "\"resource_id\":\"hu20/../x\"", 0, "resource_id:" },
		{ "res id 27", RES_ID, "\"resource_id\":\"hu20sqlact5260q2nanm0q8u930\"", 0, "resource_id:" },
		{ "pay id upper", PAY_ID, "\"payment_id\":\"HU20SQLACT5260Q2NANM0Q8U93\"", 0, "resource.payment_id: expected 1..26" },
		{ "pay id %2F", PAY_ID, "\"payment_id\":\"%2F\"", 0, "resource.payment_id:" },
	};

	RUN(m);
}

Test(webhook, ids_at_the_length_and_alphabet_boundaries_are_accepted)
{
	static const struct mutation m[] = {
		{ "msg id 1 char", MSG_ID, "\"webhook_message_id\":\"0\"", 1, NULL },
		{ "msg id all of alphabet", MSG_ID, "\"webhook_message_id\":\"0123456789abcdefghijklmnov\"", 1, NULL },
		{ "msg id escaped", MSG_ID, "\"webhook_message_id\":\"\\u0032c7fqamtqk0g4sbhnm4f4ce6qa\"", 1, NULL },
	};

	RUN(m);
}

Test(webhook, one_char_ids_are_accepted_when_they_match)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *b1 = mutate(constructed, RES_ID, "\"resource_id\":\"v\"");
	char *b2 = mutate(b1, PAY_ID, "\"payment_id\":\"v\"");

	cr_expect_eq(parse_str(b2, &w, reason), 0, "%s", reason);
	cr_expect_str_eq(w.resource_id, "v");
	free(b1);
	free(b2);
}

Test(webhook, payment_id_must_equal_resource_id)
{
	static const struct mutation m[] = {
		{ "other payment", PAY_ID, "\"payment_id\":\"hu20sqlact5260q2nanm0q8u94\"", 0, "resource.payment_id: expected to equal resource_id" },
		{ "prefix", PAY_ID, "\"payment_id\":\"hu20sqlact5260q2nanm0q8u9\"", 0, "resource.payment_id: expected to equal resource_id" },
		{ "escaped but equal", PAY_ID, "\"payment_id\":\"\\u0068u20sqlact5260q2nanm0q8u93\"", 1, NULL },
	};

	RUN(m);
}

Test(webhook, envelope_fields_are_type_and_value_checked)
{
	static const struct mutation m[] = {
		{ "api_version 2", "\"api_version\":1", "\"api_version\":2", 0, "api_version: expected the integer 1" },
		{ "api_version string", "\"api_version\":1", "\"api_version\":\"1\"", 0, "api_version:" },
		{ "api_version 1.0", "\"api_version\":1", "\"api_version\":1.0", 0, "api_version:" },
		{ "api_version 1e0", "\"api_version\":1", "\"api_version\":1e0", 0, "api_version:" },
		{ "api_version true", "\"api_version\":1", "\"api_version\":true", 0, "api_version:" },
		{ "api_version huge", "\"api_version\":1", "\"api_version\":100000000000000000000001", 0, "api_version:" },
		{ "type payment", "\"PAYMENT\"", "\"payment\"", 1, NULL },
		{ "type Payment", "\"PAYMENT\"", "\"Payment\"", 1, NULL },
		{ "type escaped", "\"PAYMENT\"", "\"\\u0050AYMENT\"", 1, NULL },
		{ "type REFUND", "\"PAYMENT\"", "\"REFUND\"", 0, "resource_type: expected \"PAYMENT\"" },
		{ "type PAYMENTS", "\"PAYMENT\"", "\"PAYMENTS\"", 0, "resource_type:" },
		{ "type empty", "\"PAYMENT\"", "\"\"", 0, "resource_type:" },
		{ "type number", "\"PAYMENT\"", "1", 0, "resource_type:" },
		{ "created no millis", CREATED, "\"created_date\":\"2021-10-19T10:06:13Z\"", 1, NULL },
		{ "created micros", CREATED, "\"created_date\":\"2021-10-19T10:06:13.371123Z\"", 1, NULL },
		{ "created offset", CREATED, "\"created_date\":\"2021-10-19T10:06:13.371+01:00\"", 0, "created_date: expected an RFC 3339" },
		{ "created lower z", CREATED, "\"created_date\":\"2021-10-19T10:06:13.371z\"", 0, "created_date:" },
		{ "created space", CREATED, "\"created_date\":\"2021-10-19 10:06:13.371Z\"", 0, "created_date:" },
		{ "created month 13", CREATED, "\"created_date\":\"2021-13-19T10:06:13.371Z\"", 0, "created_date:" },
		{ "created day 32", CREATED, "\"created_date\":\"2021-10-32T10:06:13.371Z\"", 0, "created_date:" },
		{ "created hour 24", CREATED, "\"created_date\":\"2021-10-19T24:06:13.371Z\"", 0, "created_date:" },
		{ "created date only", CREATED, "\"created_date\":\"2021-10-19\"", 0, "created_date:" },
		{ "created epoch ms", CREATED, "\"created_date\":1634637973371", 0, "created_date:" },
		{ "created too long", CREATED, "\"created_date\":\"2021-10-19T10:06:13.3711111111111111111111111111111111111111111111111111111111111111111Z\"", 0, "created_date:" },
	};

	RUN(m);
}

Test(webhook, unknown_event_types_are_accepted_as_other)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *body = mutate(constructed, EVENT,
	    "\"event_type\":\"card_payment_disputed\"");

	cr_expect_eq(parse_str(body, &w, reason), 0, "%s", reason);
	cr_expect_eq(w.event, WEBHOOK_EVENT_OTHER);
	cr_expect_str_eq(w.event_type, "card_payment_disputed");
	free(body);
}

Test(webhook, event_type_must_be_a_lower_case_name_of_at_most_64_chars)
{
	static const struct mutation m[] = {
		{ "one letter", EVENT, "\"event_type\":\"x\"", 1, NULL },
		{ "64 chars", EVENT, "\"event_type\":\"a123456789012345678901234567890123456789012345678901234567890123\"", 1, NULL },
		{ "65 chars", EVENT, "\"event_type\":\"a1234567890123456789012345678901234567890123456789012345678901234\"", 0, "event_type: expected a lower-case event name" },
		{ "upper", EVENT, "\"event_type\":\"CARD_PAYMENT_CAPTURED\"", 0, "event_type:" },
		{ "dash", EVENT, "\"event_type\":\"card-payment\"", 0, "event_type:" },
		{ "leading digit", EVENT, "\"event_type\":\"1card\"", 0, "event_type:" },
		{ "leading underscore", EVENT, "\"event_type\":\"_card\"", 0, "event_type:" },
		{ "empty", EVENT, "\"event_type\":\"\"", 0, "event_type:" },
		{ "dot-dot", EVENT, "\"event_type\":\"../x\"", 0, "event_type:" },
		{ "null", EVENT, "\"event_type\":null", 0, "event_type:" },
	};

	RUN(m);
}

Test(webhook, every_envelope_field_is_required)
{
	static const struct mutation m[] = {
		{ "no message id", MSG_ID ",", "", 0, "webhook_message_id: required field missing" },
		{ "no created", CREATED ",\"resource_id\"", "\"resource_id\"", 0, "created_date: required field missing" },
		{ "no resource id", RES_ID ",", "", 0, "resource_id: required field missing" },
		{ "no api version", "\"api_version\":1,", "", 0, "api_version: required field missing" },
		{ "no resource type", "\"resource_type\":\"PAYMENT\",", "", 0, "resource_type: required field missing" },
		{ "no event type", EVENT ",", "", 0, "event_type: required field missing" },
		{ "no resource", ",\"resource\":{", ",\"other\":{", 0, "resource: required field missing" },
		{ "resource array", "\"resource\":{\"fee\":25,", "\"resource\":[{\"fee\":25,", 0, NULL },
		{ "resource null", "\"resource\":{", "\"resource\":null,\"x\":{", 0, "resource: expected an object" },
	};

	RUN(m);
}

Test(webhook, required_resource_fields_must_be_present)
{
	static const struct mutation m[] = {
		{ "no payment_id", PAY_ID ",", "", 0, "resource.payment_id: required field missing" },
		{ "no amount", "\"amount\":5000,", "", 0, "resource.amount: required field missing" },
		{ "no state", STATE ",", "", 0, "resource.state: required field missing" },
		{ "no status", "\"status\":\"success\",", "", 0, "resource.state.status: required field missing" },
		{ "no finished", ",\"finished\":true", "", 0, "resource.state.finished: required field missing" },
		{ "no description", "\"description\":\"Pay your council tax\",", "", 0, "resource.description: required field missing" },
		{ "no reference", "\"reference\":\"12345\",", "", 0, "resource.reference: required field missing" },
		{ "no optional fields", "\"fee\":25,\"moto\":false,\"email\":\"sherlock.holmes@example.com\",", "", 1, NULL },
	};

	RUN(m);
}

Test(webhook, amount_must_be_an_integer_in_range)
{
	static const struct mutation m[] = {
		{ "zero", "\"amount\":5000", "\"amount\":0", 1, NULL },
		{ "max", "\"amount\":5000", "\"amount\":10000000", 1, NULL },
		{ "max+1", "\"amount\":5000", "\"amount\":10000001", 0, "resource.amount: expected an integer 0..10000000" },
		{ "negative", "\"amount\":5000", "\"amount\":-1", 0, "resource.amount:" },
		{ "string", "\"amount\":5000", "\"amount\":\"5000\"", 0, "resource.amount:" },
		{ "fraction", "\"amount\":5000", "\"amount\":5000.0", 0, "resource.amount:" },
		{ "exponent", "\"amount\":5000", "\"amount\":5e3", 0, "resource.amount:" },
		{ "huge", "\"amount\":5000", "\"amount\":99999999999999999999999999999999", 0, "resource.amount:" },
		{ "int64 max", "\"amount\":5000", "\"amount\":9223372036854775807", 0, "resource.amount:" },
		{ "null", "\"amount\":5000", "\"amount\":null", 0, "resource.amount:" },
		{ "leading zero", "\"amount\":5000", "\"amount\":05000", 0, "invalid JSON: malformed number" },
	};

	RUN(m);
}

Test(webhook, state_is_checked_but_unknown_statuses_are_accepted)
{
	static const struct mutation m[] = {
		{ "declined", "\"status\":\"success\"", "\"status\":\"declined\"", 1, NULL },
		{ "timedout+code", STATE, "\"state\":{\"status\":\"timedout\",\"finished\":true,\"message\":\"Payment expired\",\"code\":\"P0020\"}", 1, NULL },
		{ "23 chars", "\"status\":\"success\"", "\"status\":\"abcdefghijklmnopqrstuvw\"", 1, NULL },
		{ "24 chars", "\"status\":\"success\"", "\"status\":\"abcdefghijklmnopqrstuvwx\"", 0, "resource.state.status: expected a lower-case status" },
		{ "upper", "\"status\":\"success\"", "\"status\":\"SUCCESS\"", 0, "resource.state.status:" },
		{ "empty", "\"status\":\"success\"", "\"status\":\"\"", 0, "resource.state.status:" },
		{ "number", "\"status\":\"success\"", "\"status\":1", 0, "resource.state.status:" },
		{ "finished string", "\"finished\":true", "\"finished\":\"true\"", 0, "resource.state.finished: expected a boolean" },
		{ "finished 1", "\"finished\":true", "\"finished\":1", 0, "resource.state.finished:" },
		{ "code number", "\"finished\":true", "\"finished\":true,\"code\":20", 0, "resource.state.code: expected a string" },
		{ "message null", "\"finished\":true", "\"finished\":true,\"message\":null", 0, "resource.state.message: expected a string" },
		{ "can_retry ignored", "\"finished\":true", "\"finished\":true,\"can_retry\":false", 1, NULL },
		{ "state string", STATE, "\"state\":\"success\"", 0, "resource.state: expected an object" },
	};

	RUN(m);
}

Test(webhook, optional_resource_fields_must_have_their_types)
{
	static const struct mutation m[] = {
		{ "description null", "\"description\":\"Pay your council tax\"", "\"description\":null", 0, "resource.description: expected a string" },
		{ "reference number", "\"reference\":\"12345\"", "\"reference\":12345", 0, "resource.reference: expected a string" },
		{ "email null", "\"email\":\"sherlock.holmes@example.com\"", "\"email\":null", 0, "resource.email: expected a string" },
		{ "return_url object", "\"return_url\":\"https://your.service.gov.uk/completed\"", "\"return_url\":{}", 0, "resource.return_url:" },
		{ "language number", "\"language\":\"en\"", "\"language\":1", 0, "resource.language:" },
		{ "provider bool", "\"payment_provider\":\"stripe\"", "\"payment_provider\":true", 0, "resource.payment_provider:" },
		{ "provider unknown", "\"payment_provider\":\"stripe\"", "\"payment_provider\":\"newpsp\"", 1, NULL },
		{ "created number", "\"created_date\":\"2021-10-19T10:05:45.454Z\"", "\"created_date\":0", 0, "resource.created_date: expected a string" },
		{ "moto string", "\"moto\":false", "\"moto\":\"false\"", 0, "resource.moto: expected a boolean" },
		{ "delayed null", "\"delayed_capture\":false", "\"delayed_capture\":null", 0, "resource.delayed_capture:" },
		{ "fee fraction", "\"fee\":25", "\"fee\":25.5", 0, "resource.fee: expected a 64-bit integer" },
		{ "fee negative", "\"fee\":25", "\"fee\":-25", 1, NULL },
		{ "net huge", "\"net_amount\":4975", "\"net_amount\":9223372036854775808", 0, "resource.net_amount:" },
		{ "net int64 max", "\"net_amount\":4975", "\"net_amount\":9223372036854775807", 1, NULL },
		{ "total string", "\"fee\":25", "\"fee\":25,\"total_amount\":\"5000\"", 0, "resource.total_amount:" },
		{ "surcharge ok", "\"fee\":25", "\"fee\":25,\"corporate_card_surcharge\":250,\"total_amount\":5250", 1, NULL },
		{ "surcharge null", "\"fee\":25", "\"fee\":25,\"corporate_card_surcharge\":null", 0, "resource.corporate_card_surcharge:" },
		{ "extra provider_id", "\"fee\":25", "\"fee\":25,\"provider_id\":\"10987654321\"", 1, NULL },
		{ "extra unknown object", "\"fee\":25", "\"fee\":25,\"future\":{\"a\":[1,{\"b\":null}]}", 1, NULL },
		{ "extra envelope key", "\"api_version\":1", "\"api_version\":1,\"api_minor\":{}", 1, NULL },
	};

	RUN(m);
}

Test(webhook, card_details_sub_fields_may_be_null)
{
	static const struct mutation m[] = {
		{ "card_type null", "\"card_type\":\"debit\"", "\"card_type\":null", 1, NULL },
		{ "all null", "\"card_details\":{\"card_type\":\"debit\",\"card_brand\":\"Visa\",\"expiry_date\":\"04/27\"", "\"card_details\":{\"card_type\":null,\"card_brand\":null,\"expiry_date\":null", 1, NULL },
		{ "billing null", "\"billing_address\":{\"city\":\"London\",\"line1\":\"221 Baker Street\",\"line2\":\"Flat b\",\"country\":\"GB\",\"postcode\":\"NW1 6XE\"}", "\"billing_address\":null", 1, NULL },
		{ "line2 null", "\"line2\":\"Flat b\"", "\"line2\":null", 1, NULL },
		{ "wallet ignored", "\"card_type\":\"debit\"", "\"card_type\":\"debit\",\"wallet_type\":\"APPLE_PAY\"", 1, NULL },
		{ "card_details null", "\"card_details\":{\"card_type\":\"debit\",", "\"card_details\":null,\"x\":{\"card_type\":\"debit\",", 0, "resource.card_details: expected an object" },
		{ "card_brand number", "\"card_brand\":\"Visa\"", "\"card_brand\":4", 0, "resource.card_details.card_brand: expected a string or null" },
		{ "last digits number", "\"last_digits_card_number\":\"4242\"", "\"last_digits_card_number\":4242", 0, "resource.card_details.last_digits_card_number:" },
		{ "billing string", "\"billing_address\":{", "\"billing_address\":\"x\",\"y\":{", 0, "resource.card_details.billing_address: expected an object or null" },
		{ "city bool", "\"city\":\"London\"", "\"city\":true", 0, "resource.card_details.billing_address.city:" },
	};

	RUN(m);
}

Test(webhook, summaries_and_metadata_are_type_checked)
{
	static const struct mutation m[] = {
		{ "refund status null", "\"status\":\"available\"", "\"status\":null", 1, NULL },
		{ "refund amount string", "\"amount_available\":5000", "\"amount_available\":\"5000\"", 0, "resource.refund_summary.amount_available:" },
		{ "refund array", "\"refund_summary\":{", "\"refund_summary\":[],\"x\":{", 0, "resource.refund_summary: expected an object" },
		{ "settlement empty", "\"settlement_summary\":{\"captured_date\":\"2021-10-19\",\"capture_submit_time\":\"2021-10-19T10:06:12.105Z\"}", "\"settlement_summary\":{}", 1, NULL },
		{ "captured_date null", "\"captured_date\":\"2021-10-19\"", "\"captured_date\":null", 0, "resource.settlement_summary.captured_date: expected a string" },
		{ "3ds required string", "\"required\":true", "\"required\":\"yes\"", 0, "resource.authorisation_summary.three_d_secure.required: expected a boolean" },
		{ "3ds null", "\"three_d_secure\":{\"required\":true}", "\"three_d_secure\":null", 0, "resource.authorisation_summary.three_d_secure: expected an object" },
		{ "metadata float", "\"internal_reference_number\":200", "\"internal_reference_number\":2.5e1", 1, NULL },
		{ "metadata bool", "\"internal_reference_number\":200", "\"internal_reference_number\":false", 1, NULL },
		{ "metadata empty", "\"metadata\":{\"ledger_code\":\"AB100\",\"internal_reference_number\":200}", "\"metadata\":{}", 1, NULL },
		{ "metadata null value", "\"internal_reference_number\":200", "\"internal_reference_number\":null", 0, "resource.metadata: expected an object of strings" },
		{ "metadata nested", "\"internal_reference_number\":200", "\"internal_reference_number\":{\"a\":1}", 0, "resource.metadata:" },
		{ "metadata array", "\"internal_reference_number\":200", "\"internal_reference_number\":[1]", 0, "resource.metadata:" },
		{ "metadata not object", "\"metadata\":{\"ledger_code\":\"AB100\",\"internal_reference_number\":200}", "\"metadata\":\"AB100\"", 0, "resource.metadata:" },
	};

	RUN(m);
}

Test(webhook, strict_json_errors_are_rejected_with_a_body_reason)
{
	static const struct mutation m[] = {
		{ "duplicate resource key", "\"fee\":25", "\"fee\":25,\"amount\":1", 0, "body: invalid JSON: duplicate object key" },
		{ "duplicate escaped key", "\"api_version\":1", "\"api_version\":1,\"api_\\u0076ersion\":1", 0, "duplicate object key" },
		{ "duplicate metadata key", "\"ledger_code\":\"AB100\"", "\"ledger_code\":\"AB100\",\"ledger_code\":\"x\"", 0, "duplicate object key" },
		{ "bad utf8", "Sherlock Holmes", "Sherlock \xc0\xafHolmes", 0, "body: invalid JSON: invalid UTF-8" },
		{ "surrogate in utf8", "Sherlock Holmes", "Sherlock \xed\xa0\x80Holmes", 0, "invalid UTF-8" },
		{ "lone surrogate", "Sherlock Holmes", "Sherlock \\ud800Holmes", 0, "unpaired surrogate" },
		{ "raw tab", "Sherlock Holmes", "Sherlock\tHolmes", 0, "control character" },
		{ "NaN", "\"fee\":25", "\"fee\":NaN", 0, "body: invalid JSON: syntax error" },
		{ "trailing comma", "\"fee\":25,", "\"fee\":25,,", 0, "syntax error" },
		{ "non-ascii accepted", "Sherlock Holmes", "Sh\xc3\xa9rlock \xf0\x9f\x94\x91 Holmes", 1, NULL },
	};

	RUN(m);
}

static void
expect_invalid_str(const char *body, const char *want)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;

	cr_expect_eq(parse_str(body, &w, reason), -1);
	cr_expect_not_null(strstr(reason, want), "reason <%s> lacks <%s>", reason,
	    want);
}

Test(webhook, non_object_bodies_bom_and_trailing_bytes_are_rejected)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *bom = xasprintf("\xef\xbb\xbf%s", constructed);
	char *trail = xasprintf("%s}", constructed);
	char *nl = xasprintf("%s\n", constructed);

	expect_invalid_str("[]", "body: expected a JSON object");
	expect_invalid_str("\"x\"", "body: expected a JSON object");
	expect_invalid_str("", "body: invalid JSON: empty body");
	expect_invalid_str("{}", "webhook_message_id: required field missing");
	expect_invalid_str(bom, "byte order mark");
	expect_invalid_str(trail, "trailing bytes");
	cr_expect_eq(parse_str(nl, &w, reason), 0, "trailing whitespace is JSON");
	free(bom);
	free(trail);
	free(nl);
}

/* Wrap depth levels of {"x": ...} around 1 as an unknown resource field. */
static char *
deep_extra(size_t depth)
{
	size_t i, n = 0;
	char *v = xmalloc(depth * 6 + 2), *body;

	for (i = 0; i < depth; i++) {
		memcpy(v + n, "{\"x\":", 5);
		n += 5;
	}
	v[n++] = '1';
	for (i = 0; i < depth; i++)
		v[n++] = '}';
	v[n] = '\0';
	body = xasprintf("\"fee\":25,\"deep\":%s", v);
	free(v);
	return body;
}

Test(webhook, deep_nesting_is_rejected_past_the_depth_limit)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *ok = deep_extra(30), *bad = deep_extra(31), *b1, *b2;

	/* envelope + resource + 30 = 32 levels: the limit; 33 is too deep. */
	b1 = mutate(constructed, "\"fee\":25", ok);
	b2 = mutate(constructed, "\"fee\":25", bad);
	cr_expect_eq(parse_str(b1, &w, reason), 0, "%s", reason);
	expect_invalid_str(b2, "body: invalid JSON: nested too deeply");
	free(ok);
	free(bad);
	free(b1);
	free(b2);
}

Test(webhook, too_many_tokens_is_rejected_and_the_parser_stays_usable)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	size_t i, n = 5000, used;
	char *arr = xmalloc(2 * n + 32), *body;

	used = (size_t)xsnprintf(arr, 32, "\"fee\":25,\"big\":[");
	for (i = 0; i < n; i++) {
		arr[used++] = '0';
		arr[used++] = i + 1 < n ? ',' : ']';
	}
	arr[used] = '\0';
	body = mutate(constructed, "\"fee\":25", arr);
	expect_invalid_str(body, "body: invalid JSON: too many tokens");
	cr_expect_eq(parse_str(constructed, &w, reason), 0, "%s", reason);
	cr_expect_str_eq(w.status, "success");
	free(arr);
	free(body);
}

Test(webhook, truncated_bodies_are_rejected_at_every_length)
{
	char reason[WEBHOOK_REASON_MAX];
	struct webhook w;
	size_t len = strlen(constructed), i;
	char *copy;

	for (i = 0; i < len; i++) {
		copy = xmalloc(i + 1);
		memcpy(copy, constructed, i);
		cr_expect_eq(webhook_parse(parser, copy, i, &w, reason), -1,
		    "prefix of %zu bytes accepted", i);
		expect_reason_quotes_nothing(reason, NULL);
		free(copy);
	}
}

Test(webhook, output_is_not_written_when_invalid)
{
	char reason[WEBHOOK_REASON_MAX] = "";
	struct webhook w;
	char *body = mutate(constructed, "\"amount\":5000", "\"amount\":-5");

	memset(&w, 0x5a, sizeof w);
	cr_expect_eq(parse_str(body, &w, reason), -1);
	cr_expect_eq(w.message_id[0], 0x5a);
	cr_expect_eq((unsigned char)w.status[0], 0x5a);
	free(body);
}

Test(webhook, reasons_are_short_and_terminated)
{
	char reason[WEBHOOK_REASON_MAX];
	struct webhook w;
	char *body = mutate(constructed, "\"city\":\"London\"", "\"city\":[]");

	memset(reason, 'x', sizeof reason);
	cr_expect_eq(parse_str(body, &w, reason), -1);
	cr_expect_lt(strlen(reason), (size_t)WEBHOOK_REASON_MAX);
	cr_expect_str_eq(reason,
	    "resource.card_details.billing_address.city: expected a string or null");
	free(body);
}

Test(webhook, event_names_map_to_events)
{
	cr_expect_eq(webhook_event_from_name("card_payment_started"), WEBHOOK_EVENT_STARTED);
	cr_expect_eq(webhook_event_from_name("card_payment_succeeded"), WEBHOOK_EVENT_SUCCEEDED);
	cr_expect_eq(webhook_event_from_name("card_payment_captured"), WEBHOOK_EVENT_CAPTURED);
	cr_expect_eq(webhook_event_from_name("card_payment_refunded"), WEBHOOK_EVENT_REFUNDED);
	cr_expect_eq(webhook_event_from_name("card_payment_failed"), WEBHOOK_EVENT_FAILED);
	cr_expect_eq(webhook_event_from_name("card_payment_expired"), WEBHOOK_EVENT_EXPIRED);
	cr_expect_eq(webhook_event_from_name("card_payment_settled"), WEBHOOK_EVENT_SETTLED);
	cr_expect_eq(webhook_event_from_name("card_payment_disputed"), WEBHOOK_EVENT_OTHER);
	cr_expect_eq(webhook_event_from_name(""), WEBHOOK_EVENT_OTHER);
	cr_expect_eq(webhook_event_from_name("CARD_PAYMENT_STARTED"), WEBHOOK_EVENT_OTHER);
}

Test(webhook, free_of_null_is_a_no_op)
{
	webhook_parser_free(NULL);
}

/* Deterministic xorshift so failures reproduce. */
static uint32_t
next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

Test(webhook, random_byte_edits_never_crash_and_give_a_verdict)
{
	char reason[WEBHOOK_REASON_MAX];
	size_t len = strlen(constructed), i, j, edits;
	uint32_t seed = 0x9e3779b9u;
	struct webhook w;
	char *copy = xmalloc(len);
	int rc, valid = 0;

	for (i = 0; i < 20000; i++) {
		memcpy(copy, constructed, len);
		edits = 1 + next_rand(&seed) % 3;
		for (j = 0; j < edits; j++)
			copy[next_rand(&seed) % len] = (char)(next_rand(&seed) & 0xff);
		reason[0] = '\0';
		rc = webhook_parse(parser, copy, len, &w, reason);
		cr_assert(rc == 0 || rc == -1);
		if (rc == 0)
			valid++;
		else
			cr_assert(reason[0] != '\0' && strlen(reason) <
			    WEBHOOK_REASON_MAX, "iteration %zu: no reason", i);
	}
	cr_expect_gt(valid, 0, "some edits (inside strings) keep it valid");
	cr_expect_lt(valid, 20000);
	free(copy);
}
