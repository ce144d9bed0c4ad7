/*
 * demo.c: `payhook demo`: start payhook-sim, payhook serve and payhook tail
 * on loopback with a temporary state directory and generated secrets, drive
 * a realistic mix of payments through their lifecycle, show the normalised
 * events arriving, refuse a forged webhook, raise a lie as alert.mismatch,
 * summarise, then stop everything and remove the directory. One thread;
 * every wait is bounded; it never leaves a child process running.
 */
#include <sys/stat.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/rand.h>

#include "cmd/cmd.h"
#include "cmd/demo_util.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "receiver/signature.h"

#define DEMO_DEADLINE_MS	55000	/* the whole demo ends by then */
#define DEMO_MAX_EVENTS		512

struct demo {
	char		 dir[64];
	char		 self[PATH_MAX];
	char		 sim_bin[PATH_MAX];
	char		 secret[64];
	char		 auth[96];	/* "Authorization: Bearer api_test_..." */
	int		 sim_port, port, admin_port;
	char		 feed[128], replay[128];
	struct demo_child sim, serve, tail;
	int64_t		 start_ms;
	int		 expected;	/* events the payments will produce */
	int		 nevents;
	int64_t		 last_seq;
	int		 gaps;
	int64_t		 latency[DEMO_MAX_EVENTS];
	int		 verdicts[6];
	int		 topics_alert;
	char		 lie_payment[32];
	int		 lie_seen;
};

static const char *demo_verdicts[] = { "confirmed", "mismatch", "not_found",
    "skipped", "unverified", "other" };

static struct demo *demo_current;	/* for clean-up on a fatal error */

static void demo_cleanup(struct demo *);
static void demo_drain(struct demo *, int, int);

static void __attribute__((format(printf, 1, 2), noreturn))
demo_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\npayhook demo: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (demo_current != NULL) {
		fprintf(stderr, "payhook demo: logs were in %s (removed)\n",
		    demo_current->dir);
		demo_cleanup(demo_current);
	}
	exit(1);
}

static void
demo_token(char *out, size_t len, const char *prefix)
{
	static const char alphabet[] = "0123456789abcdefghijklmnopqrstuv";
	unsigned char raw[26];
	size_t i, n;

	if (RAND_bytes(raw, sizeof raw) != 1)
		abort();
	n = (size_t)xsnprintf(out, len, "%s", prefix);
	for (i = 0; i < sizeof raw && n + 1 < len; i++)
		out[n++] = alphabet[raw[i] & 31];
	out[n] = '\0';
}

static char *
demo_path(const struct demo *d, const char *name)
{
	static char buf[4][160];
	static int i;

	i = (i + 1) % 4;
	xsnprintf(buf[i], sizeof buf[i], "%s/%s", d->dir, name);
	return buf[i];
}

static void
demo_write(const struct demo *d, const char *name, const char *text)
{
	char *path = demo_path(d, name);
	FILE *f;

	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF ||
	    fclose(f) != 0)
		demo_fail("cannot write %s: %s", path, strerror(errno));
	chmod(path, 0600);
}

static int
demo_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
	return remove(path);
}

static void
demo_cleanup(struct demo *d)
{
	demo_stop(&d->tail);
	demo_stop(&d->serve);
	demo_stop(&d->sim);
	if (d->dir[0] != '\0')
		nftw(d->dir, demo_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	d->dir[0] = '\0';
	demo_current = NULL;
}

static void
demo_on_signal(int sig)
{
	if (demo_current != NULL)
		demo_cleanup(demo_current);
	_exit(130);
}

/* payhook-sim sits next to this binary in a build tree or an install. */
static void
demo_find_sim(struct demo *d)
{
	static const char *cands[] = { "/sim/payhook-sim", "/payhook-sim",
	    "/../sim/payhook-sim" };
	char dir[PATH_MAX], *slash;
	size_t i;

	xsnprintf(dir, sizeof dir, "%s", d->self);
	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	for (i = 0; i < UTIL_ARRAY_LEN(cands); i++) {
		xsnprintf(d->sim_bin, sizeof d->sim_bin, "%s%s", dir, cands[i]);
		if (access(d->sim_bin, X_OK) == 0)
			return;
	}
	demo_fail("payhook-sim not found next to %s (cmake --build build "
	    "--target payhook-sim)", d->self);
}

static int
demo_port_of(const char *s)
{
	const char *colon = s != NULL ? strrchr(s, ':') : NULL;
	int64_t port;
	char buf[8];

	if (colon == NULL)
		return -1;
	xsnprintf(buf, sizeof buf, "%.*s", (int)strspn(colon + 1,
	    "0123456789"), colon + 1);
	return util_parse_int64(buf, 1, 65535, &port) == 0 ? (int)port : -1;
}

/* Copy the value of "key=" from a log line. */
static void
demo_field(const char *line, const char *key, char *out, size_t len)
{
	const char *p = strstr(line, key);

	out[0] = '\0';
	if (p != NULL)
		xsnprintf(out, len, "%.*s", (int)strcspn(p + strlen(key),
		    " \n"), p + strlen(key));
}

static void
demo_setup(struct demo *d)
{
	char text[128], key[64];
	ssize_t n;

	if ((n = readlink("/proc/self/exe", d->self, sizeof d->self - 1)) <= 0)
		demo_fail("cannot find my own binary");
	d->self[n] = '\0';
	demo_find_sim(d);
	xsnprintf(d->dir, sizeof d->dir, "/tmp/payhook-demo-XXXXXX");
	if (mkdtemp(d->dir) == NULL)
		demo_fail("mkdtemp: %s", strerror(errno));
	demo_token(d->secret, sizeof d->secret, "webhook_test_");
	demo_token(key, sizeof key, "api_test_");
	xsnprintf(d->auth, sizeof d->auth, "Authorization: Bearer %s", key);
	xsnprintf(text, sizeof text, "%s\n", d->secret);
	demo_write(d, "signing-secret", text);
	xsnprintf(text, sizeof text, "%s\n", key);
	demo_write(d, "api-key", text);
	demo_write(d, "forged-secret", "webhook_test_forgedforgedforged\n");
}

static void
demo_start(struct demo *d)
{
	char url[96], conf[1024], line[2048];
	char *sim_argv[] = { d->sim_bin, "--listen", "127.0.0.1:0",
	    "--api-key-file", demo_path(d, "api-key"), "--webhook-url", url,
	    "--signing-secret-file", demo_path(d, "signing-secret"),
	    "--duplicate-rate", "0.15", "--capture-delay-ms", "300",
	    "--refund-delay-ms", "300", "--log-level", "warn", NULL };
	char *serve_argv[] = { d->self, "serve", "-c", NULL, NULL };

	/* payhook's port goes to the simulator first: pick a free one. */
	if ((d->port = demo_free_port()) < 0)
		demo_fail("no free port");
	xsnprintf(url, sizeof url, "http://127.0.0.1:%d/webhooks/govuk-pay",
	    d->port);
	sim_argv[4] = xstrdup(demo_path(d, "api-key"));
	sim_argv[8] = xstrdup(demo_path(d, "signing-secret"));
	if (demo_spawn(&d->sim, sim_argv, demo_path(d, "sim.out"),
	    demo_path(d, "sim.log")) != 0 ||
	    demo_file_line(demo_path(d, "sim.out"), "listening on", line,
	    sizeof line, 10000, &d->sim) != 0)
		demo_fail("payhook-sim did not start");
	free(sim_argv[4]);
	free(sim_argv[8]);
	d->sim_port = demo_port_of(line);

	xsnprintf(conf, sizeof conf,
	    "listen = 127.0.0.1:%d\nadmin_listen = 127.0.0.1:0\n"
	    "signing_secret_file = %s\nstate_dir = %s\n"
	    "api_base_url = http://127.0.0.1:%d\napi_key_file = %s\n"
	    "publish_endpoint = tcp://127.0.0.1:*\n"
	    "replay_endpoint = tcp://127.0.0.1:*\ndurability = full\n"
	    "api_rate_limit = 500\n",
	    d->port, demo_path(d, "signing-secret"), demo_path(d, "state"),
	    d->sim_port, demo_path(d, "api-key"));
	demo_write(d, "payhook.conf", conf);
	serve_argv[3] = xstrdup(demo_path(d, "payhook.conf"));
	if (demo_spawn(&d->serve, serve_argv, demo_path(d, "serve.out"),
	    demo_path(d, "serve.log")) != 0 ||
	    demo_file_line(demo_path(d, "serve.log"), "event=listening", line,
	    sizeof line, 10000, &d->serve) != 0)
		demo_fail("payhook serve did not start");
	free(serve_argv[3]);
	{
		char admin[128];

		demo_field(line, "admin=", admin, sizeof admin);
		d->admin_port = demo_port_of(admin);
	}
	demo_field(line, "feed=", d->feed, sizeof d->feed);
	demo_field(line, "replay=", d->replay, sizeof d->replay);
	if (d->feed[0] == '\0' || d->replay[0] == '\0')
		demo_fail("payhook serve did not report its ZeroMQ endpoints");
	{
		char *tail_argv[] = { d->self, "tail", "--feed", d->feed,
		    "--replay", d->replay, "--from", "1", NULL };

		if (demo_spawn(&d->tail, tail_argv, NULL,
		    demo_path(d, "tail.log")) != 0)
			demo_fail("cannot start payhook tail");
	}
}

/* Call the simulator; the parsed JSON answer (or NULL) and the status. */
static cJSON *
demo_sim(struct demo *d, const char *method, const char *path,
    const char *body, int *status)
{
	const char *hdrs[] = { d->auth, "Content-Type: application/json",
	    NULL };
	char *resp;
	size_t len;
	cJSON *j;

	*status = demo_http(d->sim_port, method, path, hdrs, body,
	    body ? strlen(body) : 0, &resp, &len, 5000);
	if (*status < 0)
		demo_fail("the simulator stopped answering (%s %s)", method,
		    path);
	j = resp != NULL ? cJSON_Parse(resp) : NULL;
	free(resp);
	return j;
}

/* Create a payment; its id into id (27 bytes). */
static void
demo_create(struct demo *d, int amount, const char *desc, int delayed,
    char *id)
{
	char body[512];
	cJSON *j;
	int status;

	xsnprintf(body, sizeof body, "{\"amount\":%d,\"reference\":\"DEMO-%d\","
	    "\"description\":\"%s\",\"return_url\":"
	    "\"https://service.example.gov.uk/done\",\"delayed_capture\":%s,"
	    "\"email\":\"citizen@example.org\"}", amount, amount, desc,
	    delayed ? "true" : "false");
	j = demo_sim(d, "POST", "/v1/payments", body, &status);
	if (status != 201 || j == NULL ||
	    !cJSON_IsString(cJSON_GetObjectItem(j, "payment_id")))
		demo_fail("create payment answered %d", status);
	xsnprintf(id, 27, "%s", cJSON_GetObjectItem(j, "payment_id")->valuestring);
	cJSON_Delete(j);
}

static void
demo_act(struct demo *d, const char *id, const char *action, const char *body,
    int want)
{
	char path[128];
	cJSON *j;
	int status;

	if (action[0] == '/')
		xsnprintf(path, sizeof path, "/v1/payments/%s%s", id, action);
	else
		xsnprintf(path, sizeof path, "/_sim/payments/%s/%s", id, action);
	j = demo_sim(d, "POST", path, body != NULL ? body : "{}", &status);
	cJSON_Delete(j);
	if (status != want)
		demo_fail("%s on %s answered %d, expected %d", action, id,
		    status, want);
	demo_drain(d, 0, 0);
}

static void
demo_print_event(struct demo *d, const char *line)
{
	cJSON *e = cJSON_Parse(line), *v, *p;
	const char *topic, *verdict = "", *pid = "";
	char money[24];
	int64_t seq, received = 0, amount = -1;
	size_t i;

	if (e == NULL || !cJSON_IsNumber(cJSON_GetObjectItem(e, "seq")))
		goto out;
	seq = (int64_t)cJSON_GetObjectItem(e, "seq")->valuedouble;
	topic = cJSON_GetStringValue(cJSON_GetObjectItem(e, "topic"));
	if (topic == NULL)
		goto out;
	if ((v = cJSON_GetObjectItem(e, "verification")) != NULL &&
	    cJSON_IsString(cJSON_GetObjectItem(v, "cross_check")))
		verdict = cJSON_GetObjectItem(v, "cross_check")->valuestring;
	if (cJSON_IsString(cJSON_GetObjectItem(e, "payment_id")))
		pid = cJSON_GetObjectItem(e, "payment_id")->valuestring;
	if ((p = cJSON_GetObjectItem(e, "payment")) != NULL &&
	    cJSON_IsNumber(cJSON_GetObjectItem(p, "amount")))
		amount = (int64_t)cJSON_GetObjectItem(p, "amount")->valuedouble;
	if (cJSON_IsString(cJSON_GetObjectItem(e, "received_at"))) {
		const char *r = cJSON_GetObjectItem(e, "received_at")->valuestring;

		util_parse_time_ms(r, strlen(r), &received);
	}
	if (d->last_seq != 0 && seq != d->last_seq + 1)
		d->gaps++;
	d->last_seq = seq;
	if (d->nevents < DEMO_MAX_EVENTS)
		d->latency[d->nevents] = received ? util_now_ms() - received : 0;
	d->nevents++;
	for (i = 0; i < UTIL_ARRAY_LEN(demo_verdicts) - 1; i++)
		if (strcmp(verdict, demo_verdicts[i]) == 0)
			break;
	d->verdicts[i]++;
	if (strncmp(topic, "alert.", 6) == 0)
		d->topics_alert++;
	if (strcmp(topic, "alert.mismatch") == 0 &&
	    strcmp(pid, d->lie_payment) == 0)
		d->lie_seen = 1;
	if (amount >= 0)
		xsnprintf(money, sizeof money, "%lld.%02lld",
		    (long long)(amount / 100), (long long)(amount % 100));
	else
		xsnprintf(money, sizeof money, "-");
	printf("  %4lld  %-19s %-27s %*s£%s", (long long)seq, topic, pid,
	    (int)(8 - strlen(money)), "", money);
	printf("  %-10s %4lld ms\n", verdict, (long long)(d->nevents <=
	    DEMO_MAX_EVENTS ? d->latency[d->nevents - 1] : 0));
	fflush(stdout);
out:
	cJSON_Delete(e);
}

/* Print events from the subscriber for up to ms (or until n arrived). */
static void
demo_drain(struct demo *d, int ms, int until)
{
	int64_t end = util_mono_ms() + ms;
	char line[16384];
	int r;

	do {
		if (util_mono_ms() - d->start_ms > DEMO_DEADLINE_MS)
			return;
		r = demo_pipe_line(&d->tail, line, sizeof line, ms > 0 ? 50 : 0);
		if (r < 0)
			demo_fail("the subscriber (payhook tail) stopped");
		if (r > 0)
			demo_print_event(d, line);
		else if (ms == 0)
			return;
	} while (util_mono_ms() < end && (until == 0 || d->nevents < until));
}

struct demo_payment {
	char	 id[27];
	int	 amount;
	const char *desc;
};

static void
demo_payments(struct demo *d)
{
	static const char *ok_cards[] = { "4444333322221111",
	    "4000056655665556", "5105105105105100", "371449635398431",
	    "4242424242424242", "5200828282828210" };
	struct demo_payment p[20];
	char body[128];
	size_t i;

	printf("\nPaying: 6 successes, 2 delayed captures, 2 declines, 1 "
	    "provider error,\n        2 user cancels, 2 service cancels, 2 "
	    "expiries, 2 refunds\n\n  %4s  %-19s %-27s %9s  %-10s %s\n",
	    "seq", "topic", "payment", " amount", "verdict", "latency");
	for (i = 0; i < 6; i++) {		/* succeeded + captured */
		demo_create(d, 14500 + (int)i * 1000, "Pay your council tax", 0,
		    p[i].id);
		xsnprintf(body, sizeof body, "{\"card_number\":\"%s\"}",
		    ok_cards[i]);
		demo_act(d, p[i].id, "card", body, 200);
		d->expected += 2;
		demo_drain(d, 30, 0);
	}
	for (i = 6; i < 8; i++) {		/* capturable, then captured */
		demo_create(d, 9900, "Parking permit", 1, p[i].id);
		demo_act(d, p[i].id, "card", "{\"outcome\":\"success\"}", 200);
		demo_act(d, p[i].id, "/capture", NULL, 204);
		d->expected += 2;
	}
	for (i = 8; i < 10; i++) {		/* declined: failed P0010 */
		demo_create(d, 3000, "Library fine", 0, p[i].id);
		demo_act(d, p[i].id, "card",
		    "{\"card_number\":\"4000000000000002\"}", 200);
		d->expected++;
	}
	demo_create(d, 5000, "Pest control", 0, p[10].id);	/* error P0050 */
	demo_act(d, p[10].id, "card", "{\"card_number\":\"4000000000000119\"}",
	    200);
	d->expected++;
	for (i = 11; i < 13; i++) {		/* the user presses Cancel */
		demo_create(d, 2500, "Bulky waste collection", 0, p[i].id);
		demo_act(d, p[i].id, "visit", NULL, 200);
		demo_act(d, p[i].id, "user-cancel", NULL, 200);
		d->expected++;
	}
	for (i = 13; i < 15; i++) {		/* the service cancels */
		demo_create(d, 7000, "Planning application", 0, p[i].id);
		demo_act(d, p[i].id, "/cancel", NULL, 204);
		d->expected++;
	}
	for (i = 15; i < 17; i++) {		/* abandoned: expire later */
		demo_create(d, 1200, "Garden waste", 0, p[i].id);
		demo_act(d, p[i].id, "abandon", NULL, 200);
		d->expected++;
	}
	demo_drain(d, 1500, 0);
	/* Refund two captured payments. */
	for (i = 0; i < 2; i++) {
		xsnprintf(body, sizeof body, "{\"amount\":%d}", 1000);
		demo_act(d, p[i].id, "/refunds", body, 202);
		d->expected++;
	}
	/* 91 minutes pass in the simulator: the abandoned ones expire. */
	{
		int status;
		cJSON *j = demo_sim(d, "POST", "/_sim/time/advance",
		    "{\"minutes\":91}", &status);

		cJSON_Delete(j);
		if (status != 200)
			demo_fail("time advance answered %d", status);
	}
	/* A lie: a webhook whose amount differs from what the API says. */
	xsnprintf(d->lie_payment, sizeof d->lie_payment, "%s", p[2].id);
	xsnprintf(body, sizeof body, "{\"payment_id\":\"%s\",\"event_type\":"
	    "\"card_payment_captured\",\"resource_overrides\":{\"amount\":1}}",
	    p[2].id);
	{
		int status;
		cJSON *j = demo_sim(d, "POST", "/_sim/webhooks/send", body,
		    &status);

		cJSON_Delete(j);
		if (status < 200 || status > 299)
			demo_fail("sending the lie answered %d", status);
	}
	d->expected++;
}

/* A webhook signed with the wrong secret: 401, nothing stored. */
static void
demo_forged(struct demo *d)
{
	const char *body = "{\"webhook_message_id\":\"forgedforgedforged00000000\","
	    "\"created_date\":\"2026-11-21T10:00:00.000Z\",\"resource_id\":"
	    "\"forgedforgedforged00000000\",\"api_version\":1,\"resource_type\":"
	    "\"PAYMENT\",\"event_type\":\"card_payment_succeeded\",\"resource\":"
	    "{\"payment_id\":\"forgedforgedforged00000000\",\"amount\":100000,"
	    "\"state\":{\"status\":\"success\",\"finished\":true},"
	    "\"description\":\"x\",\"reference\":\"x\"}}";
	char sig[SIGNATURE_HEX_LEN + 1], hdr[96], *resp;
	const char *hdrs[] = { "Content-Type: application/json", hdr, NULL };
	const char *key = "webhook_test_forgedforgedforged";
	size_t len;
	int status;

	signature_hmac_hex(key, strlen(key), body, strlen(body), sig);
	xsnprintf(hdr, sizeof hdr, "Pay-Signature: %s", sig);
	status = demo_http(d->port, "POST", "/webhooks/govuk-pay", hdrs, body,
	    strlen(body), &resp, &len, 5000);
	printf("\nA forged webhook (a £1,000 success signed with the wrong "
	    "secret):\n  payhook answered %d %s\n", status, resp ? resp : "");
	free(resp);
	if (status != 401)
		demo_fail("the forged webhook was not refused");
}

static double
demo_metric(const char *text, const char *sample)
{
	const char *p = strstr(text, sample);

	return p != NULL ? strtod(p + strlen(sample), NULL) : 0;
}

static int
demo_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void
demo_summary(struct demo *d)
{
	char *text = NULL;
	size_t len, i, n;
	int status;

	status = demo_http(d->admin_port, "GET", "/metrics", NULL, NULL, 0,
	    &text, &len, 5000);
	if (status != 200 || text == NULL)
		demo_fail("payhook /metrics answered %d", status);
	n = d->nevents < DEMO_MAX_EVENTS ? (size_t)d->nevents : DEMO_MAX_EVENTS;
	qsort(d->latency, n, sizeof d->latency[0], demo_cmp);
	printf("\nSummary\n");
	printf("  webhooks received    %.0f (%.0f accepted, %.0f duplicates "
	    "absorbed, %.0f quarantined)\n",
	    demo_metric(text, "payhook_webhooks_total{result=\"accepted\"} ") +
	    demo_metric(text, "payhook_webhooks_total{result=\"duplicate\"} ") +
	    demo_metric(text, "payhook_webhooks_total{result=\"quarantined\"} "),
	    demo_metric(text, "payhook_webhooks_total{result=\"accepted\"} "),
	    demo_metric(text, "payhook_webhooks_total{result=\"duplicate\"} "),
	    demo_metric(text, "payhook_webhooks_total{result=\"quarantined\"} "));
	printf("  forged, refused      %.0f\n", demo_metric(text,
	    "payhook_signature_failures_total{reason=\"mismatch\"} "));
	printf("  verdicts            ");
	for (i = 0; i < UTIL_ARRAY_LEN(demo_verdicts); i++)
		if (d->verdicts[i] > 0)
			printf(" %s %d", demo_verdicts[i], d->verdicts[i]);
	printf("\n  events published     %d (seq 1-%lld, %s)\n", d->nevents,
	    (long long)d->last_seq, d->gaps ? "GAPS" : "no gaps");
	if (n > 0)
		printf("  end-to-end latency   p50 %lld ms, p99 %lld ms "
		    "(webhook received -> subscriber printed it)\n",
		    (long long)d->latency[n / 2],
		    (long long)d->latency[(n * 99) / 100 < n ? (n * 99) / 100 :
		    n - 1]);
	printf("  the lie              %s\n", d->lie_seen ? "raised as "
	    "alert.mismatch" : "NOT raised");
	free(text);
}

static void
demo_usage(FILE *f)
{
	fprintf(f, "usage: payhook demo\n\nStart payhook-sim (a GOV.UK Pay "
	    "simulator), payhook serve and payhook tail on\nloopback with a "
	    "temporary state directory, drive a mix of payments through\ntheir "
	    "lifecycle and show the normalised events arriving. Ends by itself "
	    "in\nunder a minute and leaves nothing running or behind.\n");
}

int
cmd_demo(int argc, char **argv)
{
	struct demo d;
	int ok;

	if (argc > 1) {
		demo_usage(strcmp(argv[1], "--help") == 0 ? stdout : stderr);
		return strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	memset(&d, 0, sizeof d);
	d.start_ms = util_mono_ms();
	demo_current = &d;
	signal(SIGINT, demo_on_signal);
	signal(SIGTERM, demo_on_signal);
	signal(SIGPIPE, SIG_IGN);
	demo_setup(&d);
	demo_start(&d);
	printf("payhook demo: a GOV.UK Pay simulator, payhook and a subscriber "
	    "on loopback\n  simulator  http://127.0.0.1:%d   (payhook-sim)\n"
	    "  payhook    http://127.0.0.1:%d/webhooks/govuk-pay   admin "
	    "http://127.0.0.1:%d/metrics\n  feed       %s   replay %s\n"
	    "  state      %s (removed at the end)\n", d.sim_port, d.port,
	    d.admin_port, d.feed, d.replay, d.dir);
	demo_payments(&d);
	demo_drain(&d, DEMO_DEADLINE_MS, d.expected);
	demo_forged(&d);
	demo_drain(&d, 300, 0);
	demo_summary(&d);
	ok = d.nevents >= d.expected && d.gaps == 0 && d.lie_seen;
	printf("\npayhook demo: %s in %.1f s; everything stopped and "
	    "removed.\n", ok ? "done" : "INCOMPLETE",
	    (double)(util_mono_ms() - d.start_ms) / 1000);
	if (!ok)
		printf("  expected %d events, saw %d\n", d.expected, d.nevents);
	demo_cleanup(&d);
	return ok ? 0 : 1;
}
