/*
 * test_crosscheck.c: criterion tests for dispatch/crosscheck.c with a real
 * journal in a temp dir and the scripted API of tests/unit/apitestsrv.h on
 * 127.0.0.1 port 0: every verdict, 404 re-check, retries with backoff on
 * 5xx/timeouts, 429 + Retry-After pausing everything, a rejected key that
 * is fixed in its file, give-up, cross_check = off, and a restart with
 * requests in flight.
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>

#include "apitestsrv.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "dispatch/crosscheck.h"
#include "journal/journal.h"

#define KEY "api_test_0123456789abcdefghijklmnopqrstuv0123456789ab"

static char tmpdir[64];
static char keyfile[128];
static char statedir[128];
static struct event_base *base;
static struct journal *jn;
static struct config cfg;
static int checked_calls;

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
write_key(const char *text)
{
	FILE *f = fopen(keyfile, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static void
setup(void)
{
	struct journal_config jc;
	char *cause = NULL;

	signal(SIGPIPE, SIG_IGN);
	log_init(LOG_ERROR, "test_crosscheck");
	metrics_reset();
	xsnprintf(tmpdir, sizeof tmpdir, "/tmp/payhook-cc-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	xsnprintf(keyfile, sizeof keyfile, "%s/key", tmpdir);
	xsnprintf(statedir, sizeof statedir, "%s/state", tmpdir);
	write_key(KEY "\n");
	base = event_base_new();
	memset(&jc, 0, sizeof jc);
	jc.dir = statedir;
	jc.durability = JOURNAL_DURABILITY_PROCESS;
	jc.retention_ms = 7 * 86400000LL;
	jc.checkpoint_ms = 1000;
	jn = journal_open(&jc, &cause);
	cr_assert_not_null(jn, "%s", cause);
	memset(&cfg, 0, sizeof cfg);
	cfg.cross_check = 1;
	cfg.cross_check_give_up_ms = 86400000LL;
	cfg.api_key_file = keyfile;
	cfg.api_pool_size = 4;
	cfg.api_rate_limit = 1000;
	cfg.api_timeout_ms = 2000;
	cfg.api_connect_timeout_ms = 1000;
	checked_calls = 0;
}

static void
teardown(void)
{
	journal_free(jn);
	event_base_free(base);
	free(cfg.api_base_url);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(crosscheck, .init = setup, .fini = teardown, .timeout = 60);

static void
checked_cb(void *arg)
{
	checked_calls++;
}

static void
use_server(struct ts_server *s)
{
	free(cfg.api_base_url);
	cfg.api_base_url = xasprintf("http://127.0.0.1:%d", s->port);
}

static struct crosscheck *
start(void)
{
	struct crosscheck *cc;
	char *cause = NULL;

	cc = crosscheck_new(base, &cfg, jn, checked_cb, NULL, &cause);
	cr_assert_not_null(cc, "%s", cause);
	return cc;
}

static char *
body_for(const char *mid, const char *pid, const char *event, int amount)
{
	return xasprintf("{\"webhook_message_id\":\"%s\",\"created_date\":"
	    "\"2021-10-19T10:06:13.371Z\",\"resource_id\":\"%s\",\"api_version\""
	    ":1,\"resource_type\":\"PAYMENT\",\"event_type\":\"%s\",\"resource\""
	    ":{\"amount\":%d,\"state\":{\"status\":\"success\",\"finished\":true}"
	    ",\"reference\":\"r\",\"payment_id\":\"%s\",\"description\":\"d\"}}",
	    mid, pid, event, amount, pid);
}

/* Journal n webhooks; ids of payments are "p<i>" padded to 26 chars. */
static void
put_rows(int first, int n, int amount)
{
	struct journal_entry e;
	char mid[32], pid[32], *body, *cause = NULL;
	int i;

	cr_assert_eq(journal_begin(jn, &cause), 0, "%s", cause);
	for (i = first; i < first + n; i++) {
		xsnprintf(mid, sizeof mid, "m%025d", i);
		xsnprintf(pid, sizeof pid, "p%025d", i);
		body = body_for(mid, pid, "card_payment_captured", amount);
		memset(&e, 0, sizeof e);
		e.message_id = mid;
		e.event_type = "card_payment_captured";
		e.resource_id = pid;
		e.occurred_ms = 1634637973371LL;
		e.received_ms = util_now_ms();
		e.secret_index = 1;
		e.body = body;
		e.body_len = strlen(body);
		cr_assert_eq(journal_put(jn, &e, &cause), JOURNAL_PUT_NEW);
		free(body);
	}
	cr_assert_eq(journal_commit(jn, &cause), 0, "%s", cause);
}

static struct journal_row *
row(int64_t id)
{
	struct journal_row *r = xcalloc(1, sizeof *r);
	char *cause = NULL;
	int found;

	cr_assert_eq(journal_get_row(jn, id, r, &found, &cause), 0);
	cr_assert(found);
	return r;
}

static int64_t
count_state(enum journal_state s)
{
	int64_t counts[JOURNAL_NSTATES];
	char *cause = NULL;

	cr_assert_eq(journal_count_states(jn, counts, &cause), 0);
	return counts[s];
}

/* Run until no row is 'received' (or ms pass). */
static void
run_until_checked(int ms)
{
	int64_t t0 = util_mono_ms();

	while (count_state(JOURNAL_RECEIVED) > 0 && util_mono_ms() - t0 < ms)
		ts_run_until(base, NULL, 0, 20);
}

Test(crosscheck, agreeing_api_confirms_and_keeps_the_answer)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;
	const char *why = NULL;

	use_server(s);
	put_rows(1, 1, 5000);
	cc = start();
	run_until_checked(5000);
	r = row(1);
	cr_expect_eq(r->state, JOURNAL_CHECKED);
	cr_expect_str_eq(r->verdict, "confirmed");
	cr_expect_eq(r->api_status, 200);
	cr_expect(r->api_body != NULL && strstr(r->api_body,
	    "p0000000000000000000000001") != NULL);
	cr_expect_null(r->mismatches);
	cr_expect_eq(checked_calls, 1);
	cr_expect_eq(crosscheck_ready(cc, &why), 1);
	cr_expect_str_eq(s->last_uri, "/v1/payments/p0000000000000000000000001");
	journal_rows_free(r, 1);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, disagreeing_api_is_a_mismatch_naming_fields)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;
	char *text;
	size_t len;

	use_server(s);
	xsnprintf(s->amount, sizeof s->amount, "1");
	put_rows(1, 1, 5000);
	cc = start();
	run_until_checked(5000);
	r = row(1);
	cr_expect_str_eq(r->verdict, "mismatch");
	cr_expect_str_eq(r->mismatches, "[\"amount\"]");
	cr_expect_eq(r->api_status, 200);
	journal_rows_free(r, 1);
	text = metrics_render(&len);
	cr_expect(strstr(text, "payhook_crosscheck_results_total{verdict="
	    "\"mismatch\"} 1") != NULL, "%s", text);
	cr_expect(strstr(text, "payhook_crosscheck_requests_total{outcome="
	    "\"200\"} 1") != NULL);
	cr_expect(strstr(text, "payhook_crosscheck_seconds_count 1") != NULL);
	free(text);
	crosscheck_free(cc);
	ts_free(s);
}

/* A 200 that is no payment (an HTML error page from a proxy, say) is a
 * failed call: counted once, as error, never also as 200, so the share of
 * failing calls that PayhookCrossCheckFailing watches reaches 1. */
Test(crosscheck, a_200_that_is_no_payment_counts_once_as_error)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;
	char *text, want[128];
	size_t len;

	use_server(s);
	s->mode = TS_BODY;
	s->body = "<html><body>Service Unavailable</body></html>";
	put_rows(1, 1, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 2, 5000);
	ts_run_until(base, NULL, 0, 300);	/* the answer is taken in */
	r = row(1);
	cr_expect_eq(r->state, JOURNAL_RECEIVED, "no verdict from such a 200");
	cr_expect(r->check_attempts >= 2, "%d", r->check_attempts);
	cr_expect(r->last_error != NULL && strstr(r->last_error, "api 200")
	    != NULL, "%s", r->last_error ? r->last_error : "(none)");
	text = metrics_render(&len);
	xsnprintf(want, sizeof want, "payhook_crosscheck_requests_total{"
	    "outcome=\"error\"} %d\n", r->check_attempts);
	journal_rows_free(r, 1);
	cr_expect(strstr(text, want) != NULL, "want %s in %s", want, text);
	cr_expect(strstr(text, "payhook_crosscheck_requests_total{outcome="
	    "\"200\"} 0\n") != NULL, "%s", text);
	free(text);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, not_found_only_after_one_recheck)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;

	use_server(s);
	s->mode = TS_STATUS;
	s->status = 404;
	put_rows(1, 1, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 1, 3000);
	ts_run_until(base, NULL, 0, 200);
	r = row(1);
	cr_expect_eq(r->state, JOURNAL_RECEIVED, "no re-check before not_found");
	cr_expect_eq(r->check_attempts, 1);
	journal_rows_free(r, 1);
	run_until_checked(8000);
	r = row(1);
	cr_expect_str_eq(r->verdict, "not_found");
	cr_expect_eq(r->api_status, 404);
	cr_expect_eq(s->requests, 2);
	journal_rows_free(r, 1);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, late_payment_found_on_recheck_is_confirmed)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;

	use_server(s);
	s->mode = TS_STATUS;
	s->status = 404;
	put_rows(1, 1, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 1, 3000);
	s->mode = TS_OK;
	run_until_checked(8000);
	r = row(1);
	cr_expect_str_eq(r->verdict, "confirmed");
	journal_rows_free(r, 1);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, api_down_then_back_confirms_every_row)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;
	int i;

	use_server(s);
	s->mode = TS_STATUS;
	s->status = 503;
	put_rows(1, 10, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 10, 3000);
	ts_run_until(base, NULL, 0, 300);
	cr_expect_eq(count_state(JOURNAL_RECEIVED), 10);
	s->mode = TS_OK;
	run_until_checked(10000);
	for (i = 1; i <= 10; i++) {
		r = row(i);
		cr_expect_str_eq(r->verdict, "confirmed", "row %d", i);
		cr_expect(r->check_attempts >= 1);
		journal_rows_free(r, 1);
	}
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, rate_limited_429_pauses_all_requests_for_retry_after)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	int at429;

	use_server(s);
	cfg.api_pool_size = 1;
	s->mode = TS_STATUS;
	s->status = 429;
	s->retry_after = "2";
	put_rows(1, 5, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 1, 3000);
	at429 = s->requests;
	s->mode = TS_OK;
	ts_run_until(base, NULL, 0, 1500);
	cr_expect_eq(s->requests, at429, "requests sent during Retry-After");
	run_until_checked(8000);
	cr_expect_eq(count_state(JOURNAL_CHECKED), 5);
	crosscheck_free(cc);
	ts_free(s);
}

/* A crosscheck over n rows whose API rejects the key it was given, once
 * the first answer (401) is in. */
static struct crosscheck *
start_with_a_rejected_key(struct ts_server *s, int n)
{
	struct crosscheck *cc;

	use_server(s);
	s->want_auth = "Bearer api_test_the_right_one";
	put_rows(1, n, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 1, 3000);
	ts_run_until(base, NULL, 0, 300);
	return cc;
}

Test(crosscheck, rejected_key_waits_and_resumes_once_the_file_is_fixed)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	const char *why = NULL;
	char *text;
	size_t len;

	cc = start_with_a_rejected_key(s, 3);
	cr_expect_eq(crosscheck_ready(cc, &why), 0);
	cr_expect_str_eq(why, "api key rejected");
	text = metrics_render(&len);
	cr_expect(strstr(text, "payhook_api_auth_failing 1") != NULL, "%s",
	    text);
	free(text);
	/* rows are not burnt: still received, one probe at a time */
	ts_run_until(base, NULL, 0, 1500);
	cr_expect_eq(count_state(JOURNAL_RECEIVED), 3);
	cr_expect(s->requests <= 6, "%d requests while failing", s->requests);
	write_key("api_test_the_right_one\n");
	run_until_checked(15000);
	cr_expect_eq(count_state(JOURNAL_CHECKED), 3);
	cr_expect_eq(crosscheck_ready(cc, &why), 1);
	crosscheck_free(cc);
	ts_free(s);
}

/* While the key is rejected, a probe answered 200 with something that is
 * no payment (a proxy's page) does not end the alarm: only a payment or a
 * 404 from the API proves the key. */
Test(crosscheck, a_200_that_is_no_payment_does_not_clear_a_rejected_key)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	const char *why = NULL;
	int seen;

	cc = start_with_a_rejected_key(s, 1);
	cr_assert_eq(crosscheck_ready(cc, &why), 0);
	s->want_auth = NULL;
	s->mode = TS_BODY;
	s->body = "<html><body>Service Unavailable</body></html>";
	seen = s->requests;
	ts_run_until(base, &s->requests, seen + 1, 5000);
	ts_run_until(base, NULL, 0, 300);
	cr_expect_gt(s->requests, seen, "no probe was made");
	cr_expect_eq(crosscheck_ready(cc, &why), 0, "a proxy's 200 ended the "
	    "rejected-key alarm");
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, gives_up_as_unverified_after_cross_check_give_up)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;

	use_server(s);
	cfg.cross_check_give_up_ms = 1500;
	s->mode = TS_STATUS;
	s->status = 500;
	put_rows(1, 1, 5000);
	cc = start();
	run_until_checked(8000);
	r = row(1);
	cr_expect_str_eq(r->verdict, "unverified");
	cr_expect_eq(r->api_status, 500);
	cr_expect(r->checked_ms - r->received_ms >= 1500);
	cr_expect(r->checked_ms - r->received_ms < 4000);
	journal_rows_free(r, 1);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, timeouts_are_retried)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	struct journal_row *r;

	use_server(s);
	cfg.api_timeout_ms = 300;
	s->mode = TS_HANG;
	put_rows(1, 1, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 1, 3000);
	ts_run_until(base, NULL, 0, 600);
	r = row(1);
	cr_expect_eq(r->state, JOURNAL_RECEIVED);
	cr_expect_eq(r->check_attempts, 1);
	cr_expect(r->last_error != NULL && strstr(r->last_error, "api_timeout"),
	    "%s", r->last_error);
	journal_rows_free(r, 1);
	s->mode = TS_OK;
	run_until_checked(8000);
	r = row(1);
	cr_expect_str_eq(r->verdict, "confirmed");
	journal_rows_free(r, 1);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, off_gives_skipped_without_http)
{
	struct crosscheck *cc;
	struct journal_row *r;

	cfg.cross_check = 0;
	cfg.api_base_url = xstrdup("http://127.0.0.1:1");
	put_rows(1, 600, 5000);
	cc = start();
	run_until_checked(5000);
	cr_expect_eq(count_state(JOURNAL_CHECKED), 600);
	r = row(600);
	cr_expect_str_eq(r->verdict, "skipped");
	cr_expect_eq(r->api_status, 0);
	journal_rows_free(r, 1);
	cr_expect(checked_calls >= 2);
	crosscheck_free(cc);
}

Test(crosscheck, restart_with_requests_in_flight_resumes_from_journal)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;

	use_server(s);
	s->mode = TS_HANG;
	put_rows(1, 4, 5000);
	cc = start();
	ts_run_until(base, &s->requests, 4, 3000);
	crosscheck_free(cc);		/* shutdown with 4 in flight */
	cr_expect_eq(count_state(JOURNAL_RECEIVED), 4);
	metrics_reset();
	s->mode = TS_OK;
	cc = start();
	run_until_checked(5000);
	cr_expect_eq(count_state(JOURNAL_CHECKED), 4);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, pool_bounds_concurrency_and_requests_overlap)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	struct crosscheck *cc;
	int64_t t0, took;

	use_server(s);
	s->delay_ms = 100;
	put_rows(1, 40, 5000);
	t0 = util_mono_ms();
	cc = start();
	run_until_checked(10000);
	took = util_mono_ms() - t0;
	cr_expect_eq(count_state(JOURNAL_CHECKED), 40);
	cr_expect_eq(s->max_inflight, 4);
	/* 40 rows / 4 connections * 100 ms = 1 s; serial would be 4 s */
	cr_expect(took < 2000, "took %lld ms", (long long)took);
	cr_expect_eq(s->connections, 4);
	crosscheck_free(cc);
	ts_free(s);
}

Test(crosscheck, start_refuses_an_empty_key_file)
{
	char *cause = NULL;

	cfg.api_base_url = xstrdup("http://127.0.0.1:1");
	write_key("\n");
	cr_expect_null(crosscheck_new(base, &cfg, jn, checked_cb, NULL,
	    &cause));
	cr_expect(cause != NULL && strstr(cause, "no key") != NULL);
	cr_expect(strstr(cause, KEY) == NULL);
	free(cause);
}
