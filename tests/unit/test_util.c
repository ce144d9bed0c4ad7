/* test_util.c: time formatting and parsing, hex, GOV.UK Pay ids, ints. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/util.h"

Test(util, formats_rfc3339_utc_with_milliseconds)
{
	char buf[32];

	util_format_time_ms(0, buf, sizeof buf);
	cr_expect_str_eq(buf, "1970-01-01T00:00:00.000Z");
	util_format_time_ms(1634637973371LL, buf, sizeof buf);
	cr_expect_str_eq(buf, "2021-10-19T10:06:13.371Z");
}

Test(util, parses_what_it_formats_and_rejects_near_misses)
{
	const char *bad[] = { "2021-10-19 10:06:13.371Z",
	    "2021-10-19T10:06:13.371", "2021-13-19T10:06:13Z",
	    "2021-02-30T10:06:13Z", "2021-10-19T24:00:00Z", "2021-10-19T10:06:13.Z",
	    "2021-10-19T10:06:13.37aZ", "", "2021-10-19T10:06:13+01:00" };
	int64_t ms;
	size_t i;

	cr_assert_eq(util_parse_time_ms("2021-10-19T10:06:13.371Z", 24, &ms), 0);
	cr_expect_eq(ms, 1634637973371LL);
	cr_assert_eq(util_parse_time_ms("2019-07-11T10:36:26Z", 20, &ms), 0);
	cr_expect_eq(ms, 1562841386000LL);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_expect_eq(util_parse_time_ms(bad[i], strlen(bad[i]), &ms), -1,
		    "%s", bad[i]);
}

/* The calendar is computed, not asked of gmtime/timegm: pin the corners
 * (leap days, centuries, before 1970, the last millisecond of a day). */
Test(util, calendar_corners_round_trip)
{
	static const struct {
		int64_t		 ms;
		const char	*s;
	} cases[] = {
		{ -1, "1969-12-31T23:59:59.999Z" },
		{ -1000, "1969-12-31T23:59:59.000Z" },
		{ 951782400000LL, "2000-02-29T00:00:00.000Z" },
		{ 4107542400000LL, "2100-03-01T00:00:00.000Z" },
		{ 1709251199999LL, "2024-02-29T23:59:59.999Z" },
		{ -2208988800000LL, "1900-01-01T00:00:00.000Z" },
		{ -62167219200000LL, "0000-01-01T00:00:00.000Z" },
		{ 253402300799999LL, "9999-12-31T23:59:59.999Z" },
	};
	char buf[32], small[11];
	int64_t ms;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		util_format_time_ms(cases[i].ms, buf, sizeof buf);
		cr_expect_str_eq(buf, cases[i].s);
		cr_assert_eq(util_parse_time_ms(cases[i].s, strlen(cases[i].s),
		    &ms), 0, "%s", cases[i].s);
		cr_expect_eq(ms, cases[i].ms, "%s", cases[i].s);
	}
	/* A leap second and 2025-02-29 carry over, as timegm does. */
	cr_assert_eq(util_parse_time_ms("2024-02-29T23:59:60Z", 20, &ms), 0);
	cr_expect_eq(ms, 1709251200000LL);
	cr_expect_eq(util_parse_time_ms("2025-02-29T00:00:00Z", 20, &ms), 0);
	cr_expect_eq(ms, 1740787200000LL);
	/* Past year 9999: still one bounded line; a short buffer is cut. */
	util_format_time_ms(253402300800000LL, buf, sizeof buf);
	cr_expect_str_eq(buf, "10000-01-01T00:00:00.000Z");
	util_format_time_ms(0, small, sizeof small);
	cr_expect_str_eq(small, "1970-01-01");
}

Test(util, pay_ids_are_1_to_26_chars_of_0_9_a_v)
{
	cr_expect(util_is_pay_id("hu20sqlact5260q2nanm0q8u93", 26));
	cr_expect(util_is_pay_id("123abc", 6));
	cr_expect(!util_is_pay_id("hu20sqlact5260q2nanm0q8u93x", 27));
	cr_expect(!util_is_pay_id("", 0));
	cr_expect(!util_is_pay_id("../etc", 6));
	cr_expect(!util_is_pay_id("abcw", 4));
	cr_expect(!util_is_pay_id("ABC", 3));
	cr_expect(!util_is_pay_id("a%2Fb", 5));
}

Test(util, hex_round_trips_and_decode_is_strictly_lower_case)
{
	unsigned char in[3] = { 0x00, 0xab, 0xff }, out[3];
	char hex[7];

	util_hex_encode(in, 3, hex);
	cr_expect_str_eq(hex, "00abff");
	cr_expect_eq(util_hex_decode_lower(hex, 6, out, 3), 0);
	cr_expect_eq(memcmp(in, out, 3), 0);
	cr_expect_eq(util_hex_decode_lower("00ABFF", 6, out, 3), -1);
	cr_expect_eq(util_hex_decode_lower("00abf", 5, out, 3), -1);
}

Test(util, int64_parse_is_strict)
{
	int64_t v;

	cr_expect_eq(util_parse_int64("42", 0, 100, &v), 0);
	cr_expect_eq(v, 42);
	cr_expect_eq(util_parse_int64("101", 0, 100, &v), -1);
	cr_expect_eq(util_parse_int64("4x", 0, 100, &v), -1);
	cr_expect_eq(util_parse_int64(" 4", 0, 100, &v), -1);
	cr_expect_eq(util_parse_int64("", 0, 100, &v), -1);
	cr_expect_eq(util_parse_int64("99999999999999999999", 0, INT64_MAX, &v),
	    -1);
}
