/*
 * test_json.c: the strict tokenizer accepts RFC 8259 JSON and rejects
 * everything else, without writing past its token buffer; the string and
 * integer helpers unescape and range-check correctly.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "receiver/json.h"

#define TOKS_MAX 512

static struct json_tok toks[TOKS_MAX];
static size_t ntoks;
static size_t err_off;

/* Tokenize exactly len bytes from a heap copy (no NUL after it: ASan sees overreads). */
static enum json_error
tokn(const char *s, size_t len)
{
	enum json_error e;
	char *copy;

	copy = xmalloc(len);
	memcpy(copy, s, len);
	e = json_tokenize(copy, len, toks, TOKS_MAX, &ntoks, &err_off);
	free(copy);
	return e;
}

static enum json_error
tok(const char *s)
{
	return tokn(s, strlen(s));
}

static void
expect_all(const char *const *cases, size_t n, enum json_error want)
{
	size_t i;

	for (i = 0; i < n; i++) {
		cr_expect_eq(tok(cases[i]), want, "case %zu <%s>: got %s", i,
		    cases[i], json_error_str(tok(cases[i])));
	}
}

#define EXPECT_ALL(cases, want) expect_all(cases, sizeof cases / sizeof cases[0], want)

/* Nesting of depth levels: "[[[...]]]" or {"a":{"a":...}}. */
static char *
nested(size_t depth, int objects)
{
	size_t i, n = 0;
	char *s = xmalloc(depth * 6 + 2);

	for (i = 0; i < depth; i++) {
		if (objects) {
			memcpy(s + n, "{\"a\":", 5);
			n += 5;
		} else
			s[n++] = '[';
	}
	s[n++] = '1';
	for (i = 0; i < depth; i++)
		s[n++] = objects ? '}' : ']';
	s[n] = '\0';
	return s;
}

/* {"k0":0,"k1":1,...} with n members; extra appended before the brace. */
static char *
wide_object(size_t n, const char *extra)
{
	size_t i, used = 0, cap = n * 16 + strlen(extra) + 4;
	char *s = xmalloc(cap);

	s[used++] = '{';
	for (i = 0; i < n; i++)
		used += (size_t)xsnprintf(s + used, cap - used, "%s\"k%zu\":%zu",
		    i ? "," : "", i, i);
	used += (size_t)xsnprintf(s + used, cap - used, "%s}", extra);
	return s;
}

Test(json, tokenizes_object_with_spans_sizes_and_next)
{
	const char *s = "{\"a\":[1,{\"b\":null}],\"c\":\"x\"}";

	cr_assert_eq(tok(s), JSON_OK);
	cr_assert_eq(ntoks, 9);
	cr_expect_eq(toks[0].type, JSON_OBJECT);
	cr_expect_eq(toks[0].size, 2);
	cr_expect_eq(toks[0].start, 0);
	cr_expect_eq(toks[0].end, strlen(s));
	cr_expect_eq(toks[0].next, 9);
	cr_expect_eq(toks[1].type, JSON_STRING);
	cr_expect(toks[1].flags & JSON_F_KEY);
	cr_expect_eq(toks[1].start, 2);
	cr_expect_eq(toks[1].end, 3);
	cr_expect_eq(toks[2].type, JSON_ARRAY);
	cr_expect_eq(toks[2].size, 2);
	cr_expect_eq(toks[2].next, 7, "next skips the array's subtree");
	cr_expect_eq(toks[3].type, JSON_NUMBER);
	cr_expect_eq(toks[4].type, JSON_OBJECT);
	cr_expect_eq(toks[4].size, 1);
	cr_expect_eq(toks[6].type, JSON_NULL);
	cr_expect_eq(toks[7].type, JSON_STRING);
	cr_expect_eq(toks[8].type, JSON_STRING);
	cr_expect_eq(toks[8].end - toks[8].start, 1);
}

Test(json, accepts_any_value_at_top_level_with_surrounding_whitespace)
{
	static const char *const ok[] = {
		"0", "-0", "\"\"", "true", "false", "null", "[]", "{}",
		" \t\r\n{ } \t\r\n", "[ 1 , [ ] , { } ]", "{ \"a\" : 1 }",
	};

	EXPECT_ALL(ok, JSON_OK);
}

Test(json, rejects_empty_and_whitespace_only_input)
{
	cr_expect_eq(tokn("", 0), JSON_ERR_EMPTY);
	cr_expect_eq(tok(" \n\t\r"), JSON_ERR_EMPTY);
}

Test(json, rejects_trailing_garbage)
{
	static const char *const bad[] = {
		"{} x", "{}{}", "1 2", "[] ,", "{}\x01", "null\"",
	};

	EXPECT_ALL(bad, JSON_ERR_TRAILING);
	cr_expect_eq(tokn("{}\0", 3), JSON_ERR_TRAILING);
}

Test(json, rejects_leading_bom)
{
	cr_expect_eq(tok("\xef\xbb\xbf{}"), JSON_ERR_BOM);
}

Test(json, rejects_invalid_utf8_in_strings)
{
	static const char *const bad[] = {
		"\"\x80\"",			/* lone continuation */
		"\"\xc0\xaf\"",			/* overlong '/' */
		"\"\xc1\xbf\"",			/* overlong */
		"\"\xe0\x80\xaf\"",		/* overlong 3-byte */
		"\"\xf0\x80\x80\xaf\"",		/* overlong 4-byte */
		"\"\xed\xa0\x80\"",		/* U+D800 encoded */
		"\"\xed\xbf\xbf\"",		/* U+DFFF encoded */
		"\"\xf4\x90\x80\x80\"",		/* U+110000 */
		"\"\xf5\x80\x80\x80\"",		/* F5 lead */
		"\"\xff\"",
		"\"\xc3\"",			/* truncated before quote */
		"\"\xe2\x82\"",
		"\"\xc3\x28\"",			/* bad continuation */
		"\"\xe2\x28\xa1\"",
		"\"\xf0\x9f\x98\x28\"",
	};

	EXPECT_ALL(bad, JSON_ERR_UTF8);
	cr_expect_eq(tokn("\"\xe2\x82", 3), JSON_ERR_UTF8,
	    "sequence cut by the end of input");
}

Test(json, accepts_valid_utf8_boundaries)
{
	static const char *const ok[] = {
		"\"\xc2\x80\"",			/* U+0080 */
		"\"\xc2\xa3 \xe2\x82\xac\"",	/* £ € */
		"\"\xed\x9f\xbf\"",		/* U+D7FF */
		"\"\xee\x80\x80\"",		/* U+E000 */
		"\"\xef\xbf\xbf\"",		/* U+FFFF */
		"\"\xf0\x90\x80\x80\"",		/* U+10000 */
		"\"\xf4\x8f\xbf\xbf\"",		/* U+10FFFF */
		"\"\x7f\"",			/* DEL is not a control char */
	};

	EXPECT_ALL(ok, JSON_OK);
}

Test(json, rejects_non_ascii_outside_strings)
{
	cr_expect_eq(tok("[\xc2\xa0]"), JSON_ERR_SYNTAX, "NBSP is not whitespace");
	cr_expect_eq(tok("{\"a\":1}\xc2\xa0"), JSON_ERR_TRAILING);
}

Test(json, rejects_raw_control_characters_in_strings)
{
	static const char *const bad[] = {
		"\"\x01\"", "\"a\nb\"", "\"\t\"", "\"\x1f\"", "{\"a\rb\":1}",
	};

	EXPECT_ALL(bad, JSON_ERR_CONTROL);
	cr_expect_eq(tokn("\"a\0b\"", 5), JSON_ERR_CONTROL, "raw NUL");
}

Test(json, rejects_bad_escapes)
{
	static const char *const bad[] = {
		"\"\\x41\"", "\"\\'\"", "\"\\U0041\"", "\"\\u12g4\"",
		"\"\\a\"", "\"\\ \"", "\"\\0\"", "\"\\ud800\\uzzzz\"",
	};

	EXPECT_ALL(bad, JSON_ERR_ESCAPE);
	cr_expect_eq(tokn("\"\\\0\"", 4), JSON_ERR_ESCAPE, "backslash NUL");
	cr_expect_eq(tok("\"\\u12\""), JSON_ERR_ESCAPE);
}

Test(json, rejects_escapes_cut_by_end_of_input)
{
	cr_expect_eq(tok("\"\\"), JSON_ERR_TRUNCATED);
	cr_expect_eq(tok("\"\\u00"), JSON_ERR_TRUNCATED);
}

Test(json, accepts_every_simple_escape_and_decodes_it)
{
	char buf[32];
	size_t n;

	cr_assert_eq(tok("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), JSON_OK);
	cr_expect(toks[0].flags & JSON_F_ESCAPED);
	cr_assert_eq(json_str_copy("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", &toks[0],
	    buf, sizeof buf, &n), 0);
	cr_expect_eq(n, 8);
	cr_expect_str_eq(buf, "\"\\/\b\f\n\r\t");
}

Test(json, rejects_unpaired_surrogate_escapes)
{
	static const char *const bad[] = {
		"\"\\ud800\"", "\"\\udbff\"", "\"\\udc00\"", "\"\\uDFFF\"",
		"\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\\ud800\\n\"",
		"\"\\ud800\\ud800\"", "\"a\\udc00\\ud800\"",
	};

	EXPECT_ALL(bad, JSON_ERR_SURROGATE);
}

Test(json, decodes_surrogate_pairs_and_bmp_escapes_to_utf8)
{
	const char *s = "\"\\ud834\\udd1e\\u00e9\\u20AC\\u0041\"";
	char buf[32];
	size_t n;

	cr_assert_eq(tok(s), JSON_OK);
	cr_assert_eq(json_str_copy(s, &toks[0], buf, sizeof buf, &n), 0);
	cr_expect_eq(n, 4 + 2 + 3 + 1);
	cr_expect_str_eq(buf, "\xf0\x9d\x84\x9e\xc3\xa9\xe2\x82\xac" "A");
}

Test(json, rejects_leading_zeros)
{
	static const char *const bad[] = { "01", "-01", "00", "[007]", "00.5" };

	EXPECT_ALL(bad, JSON_ERR_NUMBER);
}

Test(json, rejects_incomplete_numbers)
{
	static const char *const bad[] = {
		"-", "-a", "1.", "1.e5", "1e", "1e+", "1E-", "[1.]", "-.5",
		"[-]", "0.x",
	};

	EXPECT_ALL(bad, JSON_ERR_NUMBER);
}

Test(json, rejects_nan_infinity_and_other_number_forms)
{
	static const char *const bad[] = {
		"NaN", "Infinity", "[NaN]", ".5", "+1", "[0x10]", "[1,,2]",
	};

	EXPECT_ALL(bad, JSON_ERR_SYNTAX);
	cr_expect_eq(tok("-Infinity"), JSON_ERR_NUMBER);
	cr_expect_eq(tok("1.5.2"), JSON_ERR_TRAILING);
}

Test(json, accepts_valid_number_forms_and_flags_fractions)
{
	static const char *const ok[] = {
		"0", "-0", "10", "0.5", "-0.0", "1e5", "1E+5", "1.5e-3",
		"123456789012345678901234567890", "1e400",
	};

	EXPECT_ALL(ok, JSON_OK);
	cr_assert_eq(tok("12"), JSON_OK);
	cr_expect_eq(toks[0].flags & JSON_F_FRAC, 0);
	cr_assert_eq(tok("1e2"), JSON_OK);
	cr_expect(toks[0].flags & JSON_F_FRAC);
}

Test(json, rejects_misspelt_or_truncated_literals)
{
	static const char *const bad[] = {
		"True", "nul", "nulls", "fals", "[tru]", "undefined", "nil",
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_expect_neq(tok(bad[i]), JSON_OK, "<%s>", bad[i]);
	cr_expect_eq(tok("tru"), JSON_ERR_TRUNCATED);
	cr_expect_eq(tok("nulls"), JSON_ERR_TRAILING);
}

Test(json, rejects_structural_errors)
{
	static const char *const bad[] = {
		"{\"a\":1,}", "[1,]", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "[1 2]",
		"{a:1}", "{'a':1}", "{1:1}", "[}", "{]", "{\"a\":1]", "]",
		"{,}", "[,]", "{\"a\"::1}", "{:1}",
	};

	EXPECT_ALL(bad, JSON_ERR_SYNTAX);
}

Test(json, rejects_unclosed_values)
{
	static const char *const bad[] = {
		"{", "[", "{\"a\"", "{\"a\":", "{\"a\":1", "[1,", "\"abc",
		"{\"a\":[1,2]", "[{}",
	};

	EXPECT_ALL(bad, JSON_ERR_TRUNCATED);
}

Test(json, reports_the_byte_offset_of_the_error)
{
	cr_assert_eq(tok("{\"a\":01}"), JSON_ERR_NUMBER);
	cr_expect_eq(err_off, 6);
	cr_assert_eq(tok("[1, x]"), JSON_ERR_SYNTAX);
	cr_expect_eq(err_off, 4);
}

Test(json, accepts_nesting_up_to_the_depth_limit)
{
	char *a = nested(JSON_DEPTH_MAX, 0), *o = nested(JSON_DEPTH_MAX, 1);

	cr_expect_eq(tok(a), JSON_OK);
	cr_expect_eq(tok(o), JSON_OK);
	free(a);
	free(o);
}

Test(json, rejects_nesting_deeper_than_the_limit)
{
	char *a = nested(JSON_DEPTH_MAX + 1, 0), *o = nested(JSON_DEPTH_MAX + 1, 1);
	char *huge = nested(5000, 0);

	cr_expect_eq(tok(a), JSON_ERR_DEPTH);
	cr_expect_eq(tok(o), JSON_ERR_DEPTH);
	cr_expect_eq(tok(huge), JSON_ERR_DEPTH);
	free(a);
	free(o);
	free(huge);
}

Test(json, fills_a_buffer_of_exactly_the_needed_size)
{
	const char *s = "{\"a\":[1,2,3],\"b\":{\"c\":true}}";	/* 10 tokens */
	struct json_tok small[10];
	size_t n, off;

	cr_assert_eq(json_tokenize(s, strlen(s), small, 10, &n, &off), JSON_OK);
	cr_expect_eq(n, 10);
}

Test(json, fails_cleanly_when_tokens_exceed_the_buffer)
{
	const char *s = "{\"a\":[1,2,3],\"b\":{\"c\":true}}";
	struct json_tok buf[16];
	size_t cap, i, n, off;
	unsigned char *raw;

	for (cap = 0; cap < 10; cap++) {
		memset(buf, 0xa5, sizeof buf);
		cr_expect_eq(json_tokenize(s, strlen(s), buf, cap, &n, &off),
		    JSON_ERR_TOKENS, "cap %zu", cap);
		cr_expect_eq(n, 0);
		raw = (unsigned char *)&buf[cap];
		for (i = 0; i < (16 - cap) * sizeof buf[0]; i++)
			cr_assert_eq(raw[i], 0xa5, "cap %zu: wrote past the buffer",
			    cap);
	}
}

Test(json, token_exhaustion_on_a_long_array_is_reported_not_overflowed)
{
	size_t i, n = 3 * TOKS_MAX;
	char *s = xmalloc(2 * n + 2);

	s[0] = '[';
	for (i = 0; i < n; i++) {
		s[1 + 2 * i] = '0';
		s[2 + 2 * i] = i + 1 < n ? ',' : ']';
	}
	s[2 * n + 1] = '\0';
	cr_expect_eq(tok(s), JSON_ERR_TOKENS);
	free(s);
}

Test(json, rejects_duplicate_keys)
{
	static const char *const bad[] = {
		"{\"a\":1,\"a\":2}",
		"{\"a\":1,\"b\":2,\"a\":3}",
		"{\"x\":{\"a\":1,\"a\":1}}",
		"[{\"a\":1,\"a\":{}}]",
		"{\"\":1,\"\":2}",
	};

	EXPECT_ALL(bad, JSON_ERR_DUPKEY);
}

Test(json, compares_keys_after_unescaping_for_duplicates)
{
	static const char *const bad[] = {
		"{\"a\":1,\"\\u0061\":2}",
		"{\"\\u0061\":1,\"a\":2}",
		"{\"\\/\":1,\"/\":2}",
		"{\"\\u00e9\":1,\"\xc3\xa9\":2}",
		"{\"\\ud834\\udd1e\":1,\"\xf0\x9d\x84\x9e\":2}",
		"{\"\\u0041b\":1,\"\\u0041\\u0062\":2}",
	};

	EXPECT_ALL(bad, JSON_ERR_DUPKEY);
}

Test(json, accepts_distinct_keys_that_look_alike)
{
	static const char *const ok[] = {
		"{\"a\":1,\"A\":2}",
		"{\"a\":1,\"a \":2}",
		"{\"ab\":1,\"a\":2,\"abc\":3}",
		"{\"a\\\\b\":1,\"a\\\"b\":2}",
		"{\"\\u0061b\":1,\"\\u0061\":2}",
		"{\"x\":{\"a\":1},\"y\":{\"a\":1},\"a\":1}",
	};

	EXPECT_ALL(ok, JSON_OK);
}

Test(json, detects_duplicates_in_large_objects)
{
	char *ok = wide_object(200, ""), *dup = wide_object(200, ",\"k17\":1");
	char *esc = wide_object(200, ",\"k\\u0031\\u0039\\u0039\":1");
	char *last = wide_object(200, ",\"k199 \":1");

	cr_expect_eq(tok(ok), JSON_OK);
	cr_expect_eq(toks[0].size, 200);
	cr_expect_eq(toks[1].size, 0, "hash chains are cleared from keys");
	cr_expect_eq(toks[toks[2].next].size, 0);
	cr_expect_eq(tok(dup), JSON_ERR_DUPKEY);
	cr_expect_eq(tok(esc), JSON_ERR_DUPKEY);
	cr_expect_eq(tok(last), JSON_OK);
	free(ok);
	free(dup);
	free(esc);
	free(last);
}

Test(json, detects_duplicates_at_the_linear_and_hashed_size_boundary)
{
	size_t n;
	char *ok, *dup;

	for (n = 14; n <= 19; n++) {
		ok = wide_object(n, "");
		dup = wide_object(n, ",\"k0\":0");
		cr_expect_eq(tok(ok), JSON_OK, "%zu keys", n);
		cr_expect_eq(tok(dup), JSON_ERR_DUPKEY, "%zu keys + dup", n);
		free(ok);
		free(dup);
	}
}

Test(json, str_eq_compares_unescaped_content)
{
	const char *s = "[\"abc\",\"a\\u0062c\",\"a\\nb\",1]";

	cr_assert_eq(tok(s), JSON_OK);
	cr_expect(json_str_eq(s, &toks[1], "abc", 3));
	cr_expect(!json_str_eq(s, &toks[1], "ab", 2));
	cr_expect(!json_str_eq(s, &toks[1], "abcd", 4));
	cr_expect(json_str_eq(s, &toks[2], "abc", 3));
	cr_expect(!json_str_eq(s, &toks[2], "ab", 2));
	cr_expect(!json_str_eq(s, &toks[2], "abcd", 4));
	cr_expect(!json_str_eq(s, &toks[2], "abd", 3));
	cr_expect(json_str_eq(s, &toks[3], "a\nb", 3));
	cr_expect(!json_str_eq(s, &toks[4], "1", 1), "numbers are not strings");
}

Test(json, str_copy_respects_the_buffer_size)
{
	const char *s = "[\"abcd\",\"a\\u0062cd\",\"x\\u0000y\"]";
	char buf[5];
	size_t n;

	cr_assert_eq(tok(s), JSON_OK);
	cr_expect_eq(json_str_copy(s, &toks[1], buf, 5, &n), 0);
	cr_expect_str_eq(buf, "abcd");
	cr_expect_eq(n, 4);
	cr_expect_eq(json_str_copy(s, &toks[1], buf, 4, &n), -1);
	cr_expect_eq(json_str_copy(s, &toks[2], buf, 5, NULL), 0);
	cr_expect_str_eq(buf, "abcd");
	cr_expect_eq(json_str_copy(s, &toks[2], buf, 4, NULL), -1);
	cr_expect_eq(json_str_copy(s, &toks[2], buf, 0, NULL), -1);
	cr_expect_eq(json_str_copy(s, &toks[3], buf, 5, NULL), -1,
	    "embedded U+0000 cannot be a C string");
	cr_expect_eq(json_str_copy(s, &toks[0], buf, 5, NULL), -1);
}

Test(json, int64_reads_integers_and_detects_overflow)
{
	const char *s = "[0,-0,42,-42,9223372036854775807,-9223372036854775808,"
	    "9223372036854775808,-9223372036854775809,"
	    "99999999999999999999999,1.0,1e3,\"1\",true]";
	int64_t v;

	cr_assert_eq(tok(s), JSON_OK);
	cr_expect_eq(json_int64(s, &toks[1], &v), 0);
	cr_expect_eq(v, 0);
	cr_expect_eq(json_int64(s, &toks[2], &v), 0);
	cr_expect_eq(v, 0);
	cr_expect_eq(json_int64(s, &toks[3], &v), 0);
	cr_expect_eq(v, 42);
	cr_expect_eq(json_int64(s, &toks[4], &v), 0);
	cr_expect_eq(v, -42);
	cr_expect_eq(json_int64(s, &toks[5], &v), 0);
	cr_expect_eq(v, INT64_MAX);
	cr_expect_eq(json_int64(s, &toks[6], &v), 0);
	cr_expect_eq(v, INT64_MIN);
	cr_expect_eq(json_int64(s, &toks[7], &v), -1, "INT64_MAX + 1");
	cr_expect_eq(json_int64(s, &toks[8], &v), -1, "INT64_MIN - 1");
	cr_expect_eq(json_int64(s, &toks[9], &v), -1);
	cr_expect_eq(json_int64(s, &toks[10], &v), -1, "fraction");
	cr_expect_eq(json_int64(s, &toks[11], &v), -1, "exponent");
	cr_expect_eq(json_int64(s, &toks[12], &v), -1, "string");
	cr_expect_eq(json_int64(s, &toks[13], &v), -1, "boolean");
}

Test(json, obj_get_finds_members_by_unescaped_name)
{
	const char *s = "{\"a\":{\"x\":1},\"\\u0062\":2,\"c\":[3]}";

	cr_assert_eq(tok(s), JSON_OK);
	cr_expect_eq(json_obj_get(s, toks, 0, "a"), 2);
	cr_expect_eq(json_obj_get(s, toks, 0, "b"), 6);
	cr_expect_eq(json_obj_get(s, toks, 0, "c"), 8);
	cr_expect_eq(json_obj_get(s, toks, 0, "x"), 0, "not a member of the root");
	cr_expect_eq(json_obj_get(s, toks, 2, "x"), 4);
	cr_expect_eq(json_obj_get(s, toks, 8, "c"), 0, "arrays have no members");
}

Test(json, error_strings_are_defined_for_every_code)
{
	int e;

	for (e = JSON_OK; e <= JSON_ERR_TOOBIG; e++)
		cr_expect_str_neq(json_error_str((enum json_error)e),
		    "unknown error");
	cr_expect_str_eq(json_error_str(JSON_ERR_DUPKEY), "duplicate object key");
}

Test(json, finds_special_bytes_at_every_offset_of_long_strings)
{
	static const struct {
		const char	*ins;
		enum json_error	 want;
	} cases[] = {
		{ "\x01", JSON_ERR_CONTROL },
		{ "\x1f", JSON_ERR_CONTROL },
		{ "\x80", JSON_ERR_UTF8 },
		{ "\xed\xa0\x80", JSON_ERR_UTF8 },
		{ "\\q", JSON_ERR_ESCAPE },
		{ "\\ud800", JSON_ERR_SURROGATE },
		{ "\xc3\xa9", JSON_OK },
		{ "\\n", JSON_OK },
		{ "\x7f", JSON_OK },
		{ " ", JSON_OK },
	};
	char buf[64];
	size_t c, i, n;

	for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		for (i = 0; i < 24; i++) {
			n = (size_t)xsnprintf(buf, sizeof buf, "\"%.*s%s%.*s\"",
			    (int)i, "abcdefghijklmnopqrstuvwxyz", cases[c].ins,
			    (int)(24 - i), "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
			cr_expect_eq(tokn(buf, n), cases[c].want,
			    "case %zu at offset %zu: %s", c, i,
			    json_error_str(tokn(buf, n)));
		}
	}
}

Test(json, finds_the_closing_quote_at_every_offset)
{
	char buf[64];
	size_t i;

	for (i = 0; i < 40; i++) {
		memset(buf, 'a', sizeof buf);
		buf[0] = '"';
		buf[i + 1] = '"';
		cr_assert_eq(tokn(buf, i + 2), JSON_OK, "length %zu", i);
		cr_expect_eq(toks[0].end - toks[0].start, i);
		cr_expect_eq(tokn(buf, i + 1), JSON_ERR_TRUNCATED, "unterminated %zu", i);
	}
}
