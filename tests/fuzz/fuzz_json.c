/*
 * fuzz_json.c: libFuzzer target for the strict JSON tokenizer
 * (receiver/json.h) and its token helpers. Input: raw bytes. Checks the
 * token array invariants the webhook validator relies on, that small token
 * buffers fail cleanly, and that whatever this tokenizer accepts cJSON
 * accepts too. Single-threaded; touches no files.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "receiver/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define FZ_TOKS	2048

static struct json_tok toks[FZ_TOKS];

/* Every token inside the input, subtrees nested, sizes consistent. */
static void
check_tokens(const char *js, size_t len, size_t n, int *long_number)
{
	char small[8], *big = malloc(len + 1);
	size_t i, j, k, outlen;
	int64_t v;

	*long_number = 0;
	for (i = 0; i < n; i++) {
		const struct json_tok *t = &toks[i];

		CHECK(t->type >= JSON_OBJECT && t->type <= JSON_NULL);
		CHECK(t->start <= t->end && t->end <= len);
		CHECK(t->next > i && t->next <= n);
		if (t->type == JSON_OBJECT || t->type == JSON_ARRAY) {
			/* children: size of them (objects: key + value) */
			size_t want = t->type == JSON_OBJECT ? 2 * t->size :
			    t->size, got = 0;

			for (j = i + 1; j < t->next; j = toks[j].next, got++)
				CHECK(toks[j].next <= t->next);
			CHECK(j == t->next && got == want);
		} else
			CHECK(t->next == i + 1 && t->size == 0);
		if (t->type == JSON_STRING) {
			/* the unescaped text fits in the raw length */
			if (json_str_copy(js, t, big, len + 1, &outlen) == 0) {
				CHECK(outlen <= t->end - t->start);
				CHECK(strlen(big) == outlen);
				CHECK(json_str_eq(js, t, big, outlen));
			}
			if (json_str_copy(js, t, small, sizeof small,
			    &outlen) == 0)
				CHECK(outlen < sizeof small);
		}
		if (t->type == JSON_NUMBER) {
			if (t->end - t->start > 40)
				*long_number = 1;
			if (json_int64(js, t, &v) == 0)
				CHECK(!(t->flags & JSON_F_FRAC));
		}
		if (t->type == JSON_OBJECT && t->size > 0) {
			/* first key looks itself up; a missing key is 0 */
			k = json_obj_get(js, toks, i, "amount");
			CHECK(k == 0 || (k > i && k < t->next));
			if (json_str_copy(js, &toks[i + 1], big, len + 1,
			    NULL) == 0) {
				k = json_obj_get(js, toks, i, big);
				CHECK(k == i + 2);
			}
		}
	}
	free(big);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *js = (const char *)data;
	size_t n = 0, off = 0, n2 = 0, cap2;
	enum json_error e, e2;
	int long_number;
	cJSON *c;

	e = json_tokenize(js, size, toks, FZ_TOKS, &n, &off);
	CHECK(json_error_str(e) != NULL);
	if (e != JSON_OK) {
		CHECK(off <= size);
		return 0;
	}
	CHECK(n >= 1 && n <= FZ_TOKS && toks[0].next == n);
	check_tokens(js, size, n, &long_number);

	/* A smaller buffer: the same answer or "too many tokens". */
	cap2 = 1 + size % 13;
	e2 = json_tokenize(js, size, toks, cap2, &n2, &off);
	CHECK(e2 == JSON_OK ? n2 == n : (e2 == JSON_ERR_TOKENS && n > cap2));

	/* Strict accepts => lenient accepts (cJSON truncates numbers longer
	 * than 63 characters, so those are left out). */
	if (!long_number) {
		c = cJSON_ParseWithLength(js, size);
		CHECK(c != NULL);
		cJSON_Delete(c);
	}
	return 0;
}
