/*
 * test_apiclient.c: criterion tests for dispatch/apiclient.c against an
 * in-process evhttp server on 127.0.0.1 port 0 (tests/unit/apitestsrv.h):
 * headers and path, keep-alive reuse, the pool as a concurrency limit, the
 * rate limit, timeouts, resets, refused connections, the body cap, no
 * redirects, key reload, and real TLS: right CA + host accepted, wrong CA
 * and wrong host name refused.
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>

#include "apitestsrv.h"
#include "common/log.h"
#include "dispatch/apiclient.h"

#define PID "hu20sqlact5260q2nanm0q8u93"
#define KEY "api_test_0123456789abcdefghijklmnopqrstuv0123456789ab"

static char tmpdir[64];
static char keyfile[128];
static struct event_base *base;

struct got {
	int n;
	struct apiclient_answer last;
	char body[2048];
	char error[160];
	int statuses[64];
};

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
	signal(SIGPIPE, SIG_IGN);	/* as payhook serve does */
	log_init(LOG_ERROR, "test_apiclient");
	xsnprintf(tmpdir, sizeof tmpdir, "/tmp/payhook-api-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	xsnprintf(keyfile, sizeof keyfile, "%s/key", tmpdir);
	write_key("  " KEY "\n\n");
	base = event_base_new();
}

static void
teardown(void)
{
	event_base_free(base);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(apiclient, .init = setup, .fini = teardown, .timeout = 60);

static void
done_cb(void *arg, const struct apiclient_answer *a)
{
	struct got *g = arg;

	g->last = *a;
	xsnprintf(g->body, sizeof g->body, "%s", a->body ? a->body : "");
	xsnprintf(g->error, sizeof g->error, "%s", a->error ? a->error : "");
	g->last.body = g->body;
	g->last.error = g->error;
	if (g->n < 64)
		g->statuses[g->n] = a->result == APICLIENT_ANSWER ? a->status :
		    -(int)a->result;
	g->n++;
}

static struct apiclient *
client(const char *url, int pool, int rate, const char *ca)
{
	struct apiclient_config cfg = { url, keyfile, ca, pool, rate, 2000,
	    1000, 0 };
	struct apiclient *c;
	char *cause = NULL;

	c = apiclient_new(base, &cfg, &cause);
	cr_assert_not_null(c, "%s", cause);
	return c;
}

static char *
url_for(int port, const char *scheme, const char *host)
{
	return xasprintf("%s://%s:%d", scheme, host, port);
}

static void
get(struct apiclient *c, const char *id, struct got *g)
{
	char *cause = NULL;
	int64_t wait, t0 = util_mono_ms();

	while (apiclient_available(c, &wait) == 0 && wait > 0 &&
	    util_mono_ms() - t0 < 2000)
		ts_run_until(base, NULL, 0, (int)wait);
	cr_assert_eq(apiclient_get_payment(c, id, done_cb, g, &cause), 0,
	    "%s", cause);
}

Test(apiclient, sends_bearer_key_accept_user_agent_and_the_path)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 2, 100, NULL);
	struct got g = { 0 };

	get(c, PID, &g);
	ts_run_until(base, &g.n, 1, 5000);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_ANSWER);
	cr_expect_eq(g.last.status, 200);
	cr_expect(strstr(g.body, PID) != NULL);
	cr_expect_str_eq(s->last_uri, "/v1/payments/" PID);
	cr_expect_str_eq(s->last_auth, "Bearer " KEY);
	cr_expect_str_eq(s->last_accept, "application/json");
	cr_expect(strncmp(s->last_ua, "payhook/", 8) == 0);
	cr_expect(strstr(s->last_host, "127.0.0.1:") == s->last_host);
	cr_expect_eq(g.last.retry_after_ms, -1);
	cr_expect(!apiclient_is_tls(c));
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, base_url_path_prefix_is_kept)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = xasprintf("http://127.0.0.1:%d/api/", s->port);
	struct apiclient *c = client(url, 1, 100, NULL);
	struct got g = { 0 };

	get(c, PID, &g);
	ts_run_until(base, &g.n, 1, 5000);
	cr_expect_str_eq(s->last_uri, "/api/v1/payments/" PID);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, only_valid_payment_ids_reach_a_path)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 2, 100, NULL);
	static const char *bad[] = { "", "../../v1/x", "ABC", "abc/def",
	    "abc?x=1", "abc%2f", "wxyz", "0123456789012345678901234567",
	    "a b" };
	struct got g = { 0 };
	char *cause;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		cr_expect_eq(apiclient_get_payment(c, bad[i], done_cb, &g,
		    &cause), -1, "%s", bad[i]);
		free(cause);
	}
	cr_expect_eq(apiclient_get_payment(c, NULL, done_cb, &g, &cause), -1);
	free(cause);
	ts_run_until(base, NULL, 0, 50);
	cr_expect_eq(s->requests, 0);
	cr_expect_eq(g.n, 0);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, statuses_and_retry_after_are_reported)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 1, 1000, NULL);
	static const int st[] = { 404, 429, 500, 503, 401, 403 };
	struct got g = { 0 };
	size_t i;

	for (i = 0; i < sizeof st / sizeof st[0]; i++) {
		s->mode = TS_STATUS;
		s->status = st[i];
		s->retry_after = st[i] == 429 ? "3" : NULL;
		get(c, PID, &g);
		ts_run_until(base, &g.n, (int)i + 1, 5000);
		cr_assert_eq(g.n, (int)i + 1);
		cr_expect_eq(g.last.result, APICLIENT_ANSWER);
		cr_expect_eq(g.last.status, st[i]);
		cr_expect_eq(g.last.retry_after_ms, st[i] == 429 ? 3000 : -1);
	}
	/* an HTTP-date Retry-After is treated as absent */
	s->status = 429;
	s->retry_after = "Wed, 21 Oct 2015 07:28:00 GMT";
	get(c, PID, &g);
	ts_run_until(base, &g.n, 7, 5000);
	cr_expect_eq(g.last.retry_after_ms, -1);
	/* all on one keep-alive connection */
	cr_expect_eq(s->connections, 1);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, keep_alive_reuses_one_connection_and_survives_close)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 4, 1000, NULL);
	struct got g = { 0 };
	int i;

	for (i = 0; i < 5; i++) {
		get(c, PID, &g);
		ts_run_until(base, &g.n, i + 1, 5000);
	}
	cr_expect_eq(g.n, 5);
	cr_expect_eq(s->connections, 1);
	s->mode = TS_CLOSE;	/* server says Connection: close */
	get(c, PID, &g);
	ts_run_until(base, &g.n, 6, 5000);
	s->mode = TS_OK;
	get(c, PID, &g);
	ts_run_until(base, &g.n, 7, 5000);
	cr_expect_eq(g.statuses[5], 200);
	cr_expect_eq(g.statuses[6], 200);
	cr_expect_eq(s->connections, 2);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, pool_size_limits_concurrency_and_requests_overlap)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 3, 10000, NULL);
	struct got g = { 0 };
	int64_t wait, elapsed;
	char *cause = NULL;
	int i;

	s->delay_ms = 300;
	ts_run_until(base, NULL, 0, 10);	/* let the bucket fill */
	cr_expect_eq(apiclient_available(c, &wait), 3);
	for (i = 0; i < 3; i++)
		get(c, PID, &g);
	cr_expect_eq(apiclient_in_flight(c), 3);
	cr_expect_eq(apiclient_available(c, &wait), 0);
	cr_expect_eq(wait, -1);
	cr_expect_eq(apiclient_get_payment(c, PID, done_cb, &g, &cause), -1);
	free(cause);
	elapsed = ts_run_until(base, &g.n, 3, 5000);
	cr_expect_eq(g.n, 3);
	cr_expect_eq(s->max_inflight, 3);
	cr_expect(elapsed < 800, "requests did not overlap: %lld ms",
	    (long long)elapsed);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, token_bucket_limits_the_rate)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 8, 10, NULL);
	struct got g = { 0 };
	int64_t wait, t0;
	int sent = 0;

	t0 = util_mono_ms();
	while (util_mono_ms() - t0 < 1000) {
		while (apiclient_available(c, &wait) > 0) {
			get(c, PID, &g);
			sent++;
		}
		ts_run_until(base, NULL, 0, 5);
	}
	while (apiclient_available(c, &wait) > 0) {
		get(c, PID, &g);
		sent++;
	}
	/* 10/s for one second plus the initial token: never much more */
	cr_expect(sent >= 9 && sent <= 12, "sent %d in 1 s at 10/s", sent);
	cr_expect_eq(apiclient_available(c, &wait), 0);
	cr_expect(wait > 0 && wait <= 101, "wait %lld", (long long)wait);
	ts_run_until(base, &g.n, sent, 5000);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, hung_answer_times_out)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient_config cfg = { url, keyfile, NULL, 2, 100, 300, 1000,
	    0 };
	struct apiclient *c;
	struct got g = { 0 };
	char *cause = NULL;
	int64_t elapsed;

	c = apiclient_new(base, &cfg, &cause);
	cr_assert_not_null(c);
	s->mode = TS_HANG;
	get(c, PID, &g);
	elapsed = ts_run_until(base, &g.n, 1, 5000);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_TIMEOUT, "%s", g.error);
	cr_expect(elapsed >= 250 && elapsed < 2000, "%lld", (long long)elapsed);
	/* the slot is free again and a fresh connection works */
	s->mode = TS_OK;
	get(c, PID, &g);
	ts_run_until(base, &g.n, 2, 5000);
	cr_expect_eq(g.statuses[1], 200);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, reset_and_refused_are_errors_never_synchronous)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	char *dead = url_for(ts_dead_port(), "http", "127.0.0.1");
	struct apiclient *c = client(url, 2, 100, NULL);
	struct apiclient *d = client(dead, 2, 100, NULL);
	struct got g = { 0 }, h = { 0 };

	s->mode = TS_RESET;
	get(c, PID, &g);
	ts_run_until(base, &g.n, 1, 5000);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_ERROR);
	cr_expect(strlen(g.error) > 0);

	get(d, PID, &h);
	cr_expect_eq(h.n, 0, "callback ran inside apiclient_get_payment");
	ts_run_until(base, &h.n, 1, 5000);
	cr_assert_eq(h.n, 1);
	cr_expect_eq(h.last.result, APICLIENT_ERROR);
	cr_expect_eq(apiclient_in_flight(d), 0);
	apiclient_free(c);
	apiclient_free(d);
	ts_free(s);
	free(url);
	free(dead);
}

Test(apiclient, oversized_answers_are_refused_and_redirects_not_followed)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient_config cfg = { url, keyfile, NULL, 1, 100, 2000, 1000,
	    4096 };
	struct apiclient *c;
	struct got g = { 0 };
	char *cause = NULL;

	c = apiclient_new(base, &cfg, &cause);
	cr_assert_not_null(c);
	s->mode = TS_BIG;
	s->big_len = 100000;
	get(c, PID, &g);
	ts_run_until(base, &g.n, 1, 5000);
	cr_expect_eq(g.last.result, APICLIENT_ERROR);
	s->mode = TS_REDIRECT;
	get(c, PID, &g);
	ts_run_until(base, &g.n, 2, 5000);
	cr_expect_eq(g.last.result, APICLIENT_ANSWER);
	cr_expect_eq(g.last.status, 302);
	ts_run_until(base, NULL, 0, 100);
	cr_expect_eq(s->requests, 2, "a redirect was followed");
	apiclient_free(c);
	ts_free(s);
	free(url);
}

Test(apiclient, key_is_reread_on_reload_and_empty_key_refused)
{
	struct ts_server *s = ts_start(base, NULL, NULL);
	char *url = url_for(s->port, "http", "127.0.0.1");
	struct apiclient *c = client(url, 1, 100, NULL);
	struct apiclient_config cfg = { url, keyfile, NULL, 1, 100, 2000, 1000,
	    0 };
	struct got g = { 0 };
	char *cause = NULL;

	write_key("api_test_newkey\n");
	cr_assert_eq(apiclient_reload_key(c, &cause), 0);
	get(c, PID, &g);
	ts_run_until(base, &g.n, 1, 5000);
	cr_expect_str_eq(s->last_auth, "Bearer api_test_newkey");
	write_key(" \n");
	cr_expect_eq(apiclient_reload_key(c, &cause), -1);
	cr_expect(strstr(cause, "no key") != NULL);
	free(cause);
	cause = NULL;
	cr_expect_null(apiclient_new(base, &cfg, &cause));
	free(cause);
	apiclient_free(c);
	ts_free(s);
	free(url);
}

/* ---- TLS ------------------------------------------------------------- */

static int
tls_get(const char *cert, const char *host, const char *ca, struct got *g,
    int *requests)
{
	char certp[160], keyp[160], cap[160];
	struct ts_server *s;
	struct apiclient *c;
	char *url;

	xsnprintf(certp, sizeof certp, "%s/%s.pem", tmpdir, cert);
	xsnprintf(keyp, sizeof keyp, "%s/%s.key", tmpdir, cert);
	xsnprintf(cap, sizeof cap, "%s/%s", tmpdir, ca);
	s = ts_start(base, certp, keyp);
	url = url_for(s->port, "https", host);
	c = client(url, 2, 100, *ca != '\0' ? cap : NULL);
	cr_expect(apiclient_is_tls(c));
	get(c, PID, g);
	ts_run_until(base, &g->n, 1, 5000);
	if (g->n == 1 && g->last.result == APICLIENT_ANSWER) {
		/* a second request on the same TLS connection */
		get(c, PID, g);
		ts_run_until(base, &g->n, 2, 5000);
		/* and one after the server closed it */
		s->mode = TS_CLOSE;
		get(c, PID, g);
		ts_run_until(base, &g->n, 3, 5000);
		s->mode = TS_OK;
		get(c, PID, g);
		ts_run_until(base, &g->n, 4, 5000);
	}
	*requests = s->requests;
	apiclient_free(c);
	ts_free(s);
	free(url);
	return g->n;
}

Test(apiclient, tls_with_right_ca_and_host_works_and_reconnects)
{
	struct got g = { 0 };
	int requests;

	cr_assert_eq(ts_make_pki(tmpdir), 0, "openssl CLI failed");
	tls_get("ok", "127.0.0.1", "ca.pem", &g, &requests);
	cr_assert_eq(g.n, 4, "%s", g.error);
	cr_expect_eq(g.statuses[0], 200, "%s", g.error);
	cr_expect_eq(g.statuses[1], 200);
	cr_expect_eq(g.statuses[2], 200);
	cr_expect_eq(g.statuses[3], 200, "no new TLS connection: %s", g.error);
	cr_expect_eq(requests, 4);
}

Test(apiclient, tls_by_host_name_works)
{
	struct got g = { 0 };
	int requests;

	cr_assert_eq(ts_make_pki(tmpdir), 0, "openssl CLI failed");
	tls_get("ok", "localhost", "ca.pem", &g, &requests);
	cr_expect_eq(g.statuses[0], 200, "%s", g.error);
}

Test(apiclient, tls_with_wrong_ca_is_refused)
{
	struct got g = { 0 };
	int requests;

	cr_assert_eq(ts_make_pki(tmpdir), 0, "openssl CLI failed");
	tls_get("wrongca", "127.0.0.1", "ca.pem", &g, &requests);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_ERROR);
	cr_expect(strstr(g.error, "certificate") != NULL, "%s", g.error);
	cr_expect_eq(requests, 0, "a request went over an unverified TLS");
}

Test(apiclient, tls_with_wrong_host_name_is_refused)
{
	struct got g = { 0 };
	int requests;

	cr_assert_eq(ts_make_pki(tmpdir), 0, "openssl CLI failed");
	tls_get("wronghost", "127.0.0.1", "ca.pem", &g, &requests);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_ERROR);
	cr_expect(strstr(g.error, "certificate") != NULL, "%s", g.error);
	cr_expect_eq(requests, 0);
	memset(&g, 0, sizeof g);
	tls_get("wronghost", "localhost", "ca.pem", &g, &requests);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_ERROR, "%s", g.error);
	cr_expect_eq(requests, 0);
}

Test(apiclient, tls_without_a_ca_uses_the_system_store_and_refuses)
{
	struct got g = { 0 };
	int requests;

	cr_assert_eq(ts_make_pki(tmpdir), 0, "openssl CLI failed");
	/* "" = no api_ca_file: our private CA is not in the system store */
	tls_get("ok", "127.0.0.1", "", &g, &requests);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.last.result, APICLIENT_ERROR);
	cr_expect_eq(requests, 0);
}

Test(apiclient, bad_base_urls_are_refused)
{
	static const char *bad[] = { "ftp://127.0.0.1", "https://",
	    "https://h/?q=1", "https://u:p@h", "nonsense" };
	struct apiclient_config cfg = { NULL, keyfile, NULL, 1, 1, 1000, 1000,
	    0 };
	char *cause;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		cfg.base_url = bad[i];
		cr_expect_null(apiclient_new(base, &cfg, &cause), "%s", bad[i]);
		free(cause);
	}
}
