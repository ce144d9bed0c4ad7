/*
 * fuzz_webhook.c: libFuzzer target for webhook_parse (receiver/webhook.h),
 * the validator every signed body goes through. Input: the raw body. Checks
 * what a caller relies on: a reason on every rejection, well-formed ids on
 * every acceptance, and that an accepted body is also valid JSON to cJSON
 * with the same ids and amount. Single-threaded; touches no files.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "receiver/json.h"
#include "receiver/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct webhook_parser *parser;

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static void
check_id(const char *id)
{
	size_t n = strnlen(id, WEBHOOK_ID_MAX + 1);

	CHECK(n >= 1 && n <= WEBHOOK_ID_MAX);
	for (; *id != '\0'; id++)
		CHECK((*id >= '0' && *id <= '9') || (*id >= 'a' && *id <= 'v'));
}

static const char *
cjson_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An accepted body seen by a second, independent parser. */
static void
check_with_cjson(const uint8_t *data, size_t size, const struct webhook *w)
{
	const cJSON *res, *amount;
	const char *s;
	cJSON *root;

	root = cJSON_ParseWithLength((const char *)data, size);
	CHECK(cJSON_IsObject(root));
	s = cjson_str(root, "webhook_message_id");
	CHECK(s != NULL && strcmp(s, w->message_id) == 0);
	s = cjson_str(root, "resource_id");
	CHECK(s != NULL && strcmp(s, w->resource_id) == 0);
	s = cjson_str(root, "event_type");
	CHECK(s != NULL && strcmp(s, w->event_type) == 0);
	res = cJSON_GetObjectItemCaseSensitive(root, "resource");
	CHECK(cJSON_IsObject(res));
	amount = cJSON_GetObjectItemCaseSensitive(res, "amount");
	if (cJSON_IsNumber(amount) && w->amount > -(1LL << 52) &&
	    w->amount < (1LL << 52))
		CHECK((double)w->amount == amount->valuedouble);
	cJSON_Delete(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char reason[WEBHOOK_REASON_MAX];
	struct webhook w;

	if (parser == NULL)
		parser = webhook_parser_new();
	memset(&w, 0xa5, sizeof w);
	memset(reason, 0xa5, sizeof reason);
	if (webhook_parse(parser, (const char *)data, size, &w, reason) != 0) {
		size_t n = strnlen(reason, sizeof reason);

		CHECK(n > 0 && n < sizeof reason);
		return 0;
	}
	check_id(w.message_id);
	check_id(w.resource_id);
	CHECK(strnlen(w.event_type, sizeof w.event_type) < sizeof w.event_type);
	CHECK(strnlen(w.status, sizeof w.status) < sizeof w.status);
	CHECK(w.event == webhook_event_from_name(w.event_type));
	check_with_cjson(data, size, &w);
	return 0;
}
