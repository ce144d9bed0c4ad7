/*
 * test_bus.c: criterion tests for dispatch/bus.c and dispatch/publisher.c
 * over real loopback sockets (tcp://127.0.0.1:*, read back): live feed
 * framing, heartbeats, replay batches, filters and errors, CURVE + ZAP
 * (listed key admitted, unlisted and plain clients get nothing), and the
 * publisher's journal round trip including resend after a crash.
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <zmq.h>

#include "common/config.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/bus.h"
#include "dispatch/publisher.h"
#include "receiver/server.h"
#include "journal/journal.h"

#define MAXF	64

static char tmpdir[64];
static char statedir[128];
static void *ctx;
static _Atomic int64_t sent_upto;

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
setup(void)
{
	xsnprintf(tmpdir, sizeof tmpdir, "/tmp/payhook-bus-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	xsnprintf(statedir, sizeof statedir, "%s/state", tmpdir);
	ctx = zmq_ctx_new();
	atomic_store(&sent_upto, 0);
}

static void
teardown(void)
{
	zmq_ctx_term(ctx);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	metrics_reset();
}

TestSuite(bus, .init = setup, .fini = teardown, .timeout = 60);

static void
sent_cb(void *arg, int64_t upto)
{
	atomic_store(&sent_upto, upto);
}

static struct journal *
open_journal(void)
{
	struct journal_config jc = { .dir = statedir,
	    .durability = JOURNAL_DURABILITY_PROCESS, .retention_ms = 86400000,
	    .checkpoint_ms = 1000 };
	char *cause = NULL;
	struct journal *j = journal_open(&jc, &cause);

	cr_assert_not_null(j, "%s", cause ? cause : "");
	return j;
}

/* n quarantined rows, each with an event: topics alternate. */
static void
fill_journal(struct journal *j, int n, int events)
{
	struct journal_entry e;
	struct journal_row *rows;
	char id[32], json[128], *cause = NULL;
	size_t nrows, i;
	int64_t seq;
	int k;

	cr_assert_eq(journal_begin(j, &cause), 0);
	for (k = 0; k < n; k++) {
		memset(&e, 0, sizeof e);
		xsnprintf(id, sizeof id, "q-%d", k);
		e.message_id = id;
		e.received_ms = util_now_ms();
		e.secret_index = 1;
		e.body = "{}";
		e.body_len = 2;
		e.quarantine_reason = "test";
		cr_assert_eq(journal_put(j, &e, &cause), JOURNAL_PUT_NEW);
	}
	cr_assert_eq(journal_commit(j, &cause), 0, "%s", cause);
	if (!events)
		return;
	cr_assert_eq(journal_rows_to_publish(j, (size_t)n, &rows, &nrows,
	    &cause), 0);
	for (i = 0; i < nrows; i++) {
		xsnprintf(json, sizeof json, "{\"seq\":%zu,\"n\":%zu}", i + 1,
		    i);
		cr_assert_eq(journal_add_event(j, rows[i].id, i % 2 ?
		    "alert.quarantined" : "payment.captured", json,
		    strlen(json), util_now_ms(), &seq, &cause), 0, "%s", cause);
		cr_assert_eq(seq, (int64_t)i + 1);
	}
	journal_rows_free(rows, nrows);
}

static struct bus *
start_bus(const char *secret, char **clients, size_t nclients, size_t batch)
{
	struct bus_config bc;
	char *cause = NULL;
	struct bus *b;

	memset(&bc, 0, sizeof bc);
	bc.feed_endpoint = "tcp://127.0.0.1:*";
	bc.replay_endpoint = "tcp://127.0.0.1:*";
	bc.journal_dir = statedir;
	bc.curve_secret = secret;
	bc.curve_clients = clients;
	bc.ncurve_clients = nclients;
	bc.heartbeat_ms = 200;
	bc.replay_batch_max = batch;
	bc.durable_seq = INT64_MAX;	/* the tests' events are committed */
	bc.sent_cb = sent_cb;
	b = bus_new(&bc, &cause);
	cr_assert_not_null(b, "%s", cause ? cause : "");
	return b;
}

static void
set_int(void *s, int opt, int v)
{
	cr_assert_eq(zmq_setsockopt(s, opt, &v, sizeof v), 0);
}

/* Client CURVE keys: server public key plus our own pair. */
static void
set_curve(void *s, const char *server_pub, const char *pub, const char *sec)
{
	cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 41), 0);
	cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 41), 0);
	cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 41), 0);
}

static void *
client(int type, const char *ep, const char *spub, const char *pub,
    const char *sec)
{
	void *s = zmq_socket(ctx, type);

	cr_assert_not_null(s);
	set_int(s, ZMQ_LINGER, 0);
	if (spub != NULL)
		set_curve(s, spub, pub, sec);
	if (type == ZMQ_SUB)
		cr_assert_eq(zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0), 0);
	cr_assert_eq(zmq_connect(s, ep), 0);
	return s;
}

/* One multipart message as NUL-terminated strings; 0 on timeout. */
static int
recv_parts(void *s, char **f, int max, int timeout_ms)
{
	zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
	zmq_msg_t m;
	int n = 0, more = 1;

	if (zmq_poll(&it, 1, timeout_ms) <= 0)
		return 0;
	while (more) {
		zmq_msg_init(&m);
		cr_assert(zmq_msg_recv(&m, s, 0) >= 0);
		more = zmq_msg_more(&m);
		if (n < max)
			f[n++] = xstrndup(zmq_msg_data(&m), zmq_msg_size(&m));
		zmq_msg_close(&m);
	}
	return n;
}

static void
free_parts(char **f, int n)
{
	while (n > 0)
		free(f[--n]);
}

/* Skip heartbeats until a real event (or timeout). */
static int
recv_event(void *sub, char **f, int timeout_ms)
{
	int64_t end = util_mono_ms() + timeout_ms;
	int n;

	while (util_mono_ms() < end) {
		n = recv_parts(sub, f, 2, (int)(end - util_mono_ms()));
		if (n == 0)
			return 0;
		if (strcmp(f[0], "heartbeat") != 0)
			return n;
		free_parts(f, n);
	}
	return 0;
}

static void
wait_heartbeat(void *sub)
{
	char *f[2];
	int n = recv_parts(sub, f, 2, 3000);

	cr_assert_eq(n, 2, "no heartbeat within 3 s");
	free_parts(f, n);
}

static void
send_parts(void *s, const char **parts, int n)
{
	int i;

	for (i = 0; i < n; i++)
		cr_assert(zmq_send(s, parts[i], strlen(parts[i]),
		    i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

/* DEALER request with the empty delimiter, reply without it. */
static int
replay(void *d, const char **req, int nreq, char **f, int max)
{
	const char *parts[8];
	int i, n;

	parts[0] = "";
	for (i = 0; i < nreq; i++)
		parts[i + 1] = req[i];
	send_parts(d, parts, nreq + 1);
	n = recv_parts(d, f, max, 3000);
	cr_assert(n >= 1, "no replay answer");
	cr_assert_str_eq(f[0], "");
	free(f[0]);
	memmove(f, f + 1, (size_t)(n - 1) * sizeof *f);
	return n - 1;
}

Test(bus, endpoints_with_star_ports_are_resolved)
{
	struct bus *b = start_bus(NULL, NULL, 0, 0);

	cr_assert_eq(strncmp(bus_feed_endpoint(b), "tcp://127.0.0.1:", 16), 0);
	cr_assert_null(strchr(bus_feed_endpoint(b), '*'));
	cr_assert_null(strchr(bus_replay_endpoint(b), '*'));
	cr_assert_str_neq(bus_feed_endpoint(b), bus_replay_endpoint(b));
	cr_assert(bus_running(b));
	bus_free(b);
}

Test(bus, bind_failure_is_reported)
{
	struct bus_config bc;
	char *cause = NULL;

	memset(&bc, 0, sizeof bc);
	bc.feed_endpoint = "tcp://127.0.0.1:*";
	bc.replay_endpoint = "bogus://nowhere";
	bc.journal_dir = statedir;
	cr_assert_null(bus_new(&bc, &cause));
	cr_assert_not_null(strstr(cause, "replay_endpoint"), "%s", cause);
	free(cause);
}

Test(bus, live_feed_is_two_frames_in_order_with_heartbeats)
{
	struct bus *b = start_bus(NULL, NULL, 0, 0);
	void *sub = client(ZMQ_SUB, bus_feed_endpoint(b), NULL, NULL, NULL);
	char *f[2], json[64];
	cJSON *hb;
	int i, n;

	wait_heartbeat(sub);
	for (i = 1; i <= 50; i++) {
		xsnprintf(json, sizeof json, "{\"seq\":%d}", i);
		cr_assert_eq(bus_send(b, i, "payment.captured", json,
		    strlen(json)), 0);
	}
	for (i = 1; i <= 50; i++) {
		n = recv_event(sub, f, 3000);
		cr_assert_eq(n, 2);
		cr_assert_str_eq(f[0], "payment.captured");
		xsnprintf(json, sizeof json, "{\"seq\":%d}", i);
		cr_assert_str_eq(f[1], json);
		free_parts(f, n);
	}
	/* The next heartbeat carries the head. */
	n = recv_parts(sub, f, 2, 3000);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(f[0], "heartbeat");
	hb = cJSON_Parse(f[1]);
	cr_assert_not_null(hb);
	cr_assert_eq(cJSON_GetObjectItem(hb, "head_seq")->valuedouble, 50);
	cr_assert_eq(strlen(cJSON_GetObjectItem(hb, "time")->valuestring), 24);
	cJSON_Delete(hb);
	free_parts(f, n);
	cr_assert_eq(atomic_load(&sent_upto), 50);
	cr_assert_eq(bus_sent_seq(b), 50);
	zmq_close(sub);
	bus_free(b);
}

Test(bus, replay_serves_batches_filters_and_caps)
{
	struct journal *j = open_journal();
	struct bus *b;
	void *d;
	char *f[MAXF];
	int n;

	fill_journal(j, 7, 1);
	b = start_bus(NULL, NULL, 0, 3);
	d = client(ZMQ_DEALER, bus_replay_endpoint(b), NULL, NULL, NULL);
	{
		const char *req[] = { "REPLAY", "2", "10" };

		n = replay(d, req, 3, f, MAXF);
		cr_assert_eq(n, 3 + 2 * 3);	/* capped at 3 */
		cr_assert_str_eq(f[0], "BATCH");
		cr_assert_str_eq(f[1], "7");
		cr_assert_str_eq(f[2], "3");
		cr_assert_str_eq(f[3], "alert.quarantined");
		cr_assert_str_eq(f[4], "{\"seq\":2,\"n\":1}");
		cr_assert_str_eq(f[8], "{\"seq\":4,\"n\":3}");
		free_parts(f, n);
	}
	{
		const char *req[] = { "REPLAY", "1", "10", "alert." };

		n = replay(d, req, 4, f, MAXF);
		cr_assert_eq(n, 3 + 2 * 3);
		cr_assert_str_eq(f[2], "3");
		cr_assert_str_eq(f[4], "{\"seq\":2,\"n\":1}");
		cr_assert_str_eq(f[6], "{\"seq\":4,\"n\":3}");
		cr_assert_str_eq(f[8], "{\"seq\":6,\"n\":5}");
		free_parts(f, n);
	}
	{
		const char *req[] = { "REPLAY", "8", "10" };

		n = replay(d, req, 3, f, MAXF);
		cr_assert_eq(n, 3);
		cr_assert_str_eq(f[0], "BATCH");
		cr_assert_str_eq(f[1], "7");
		cr_assert_str_eq(f[2], "0");
		free_parts(f, n);
	}
	zmq_close(d);
	bus_free(b);
	journal_free(j);
}

/* Replay serves only seqs known durable: those on disk at start, and what
 * the live feed has carried since (committed seqs may not be synced yet). */
Test(bus, replay_serves_only_durable_seqs)
{
	struct journal *j = open_journal();
	struct bus_config bc;
	struct bus *b;
	char *cause = NULL, *f[MAXF];
	const char *req[] = { "REPLAY", "1", "10" };
	const char *seq4 = "{\"seq\":4,\"n\":3}";
	int64_t deadline;
	void *d;
	int n;

	fill_journal(j, 7, 1);
	memset(&bc, 0, sizeof bc);
	bc.feed_endpoint = "tcp://127.0.0.1:*";
	bc.replay_endpoint = "tcp://127.0.0.1:*";
	bc.journal_dir = statedir;
	bc.head_seq = 3;
	bc.durable_seq = 3;
	bc.sent_cb = sent_cb;
	b = bus_new(&bc, &cause);
	cr_assert_not_null(b, "%s", cause ? cause : "");
	d = client(ZMQ_DEALER, bus_replay_endpoint(b), NULL, NULL, NULL);
	n = replay(d, req, 3, f, MAXF);
	cr_assert_eq(n, 3 + 2 * 3, "only seqs 1-3");
	cr_assert_str_eq(f[1], "3", "the head it admits to");
	cr_assert_str_eq(f[8], "{\"seq\":3,\"n\":2}");
	free_parts(f, n);
	/* Seq 4 goes out on the feed: from then on replay serves it too. */
	cr_assert_eq(bus_send(b, 4, "payment.captured", seq4, strlen(seq4)),
	    0);
	deadline = util_mono_ms() + 5000;
	do {
		n = replay(d, req, 3, f, MAXF);
		if (n == 3 + 2 * 4 || util_mono_ms() > deadline)
			break;
		free_parts(f, n);
		usleep(10000);
	} while (1);
	cr_assert_eq(n, 3 + 2 * 4, "seq 4 once sent");
	cr_assert_str_eq(f[1], "4");
	free_parts(f, n);
	zmq_close(d);
	bus_free(b);
	journal_free(j);
}

Test(bus, req_clients_work_and_malformed_requests_get_error)
{
	struct journal *j = open_journal();
	struct bus *b;
	void *r, *d;
	char *f[MAXF];
	int n, i;
	static const char *bad[][5] = {
		{ "FETCH", "1", "2", NULL },
		{ "REPLAY", "x", "2", NULL },
		{ "REPLAY", "1", "-2", NULL },
		{ "REPLAY", "1", NULL },
		{ "REPLAY", "1", "2", "payment.", "extra" },
		{ "REPLAY", "99999999999999999999", "2", NULL },
		{ "", NULL },
	};

	fill_journal(j, 2, 1);
	b = start_bus(NULL, NULL, 0, 0);
	d = client(ZMQ_DEALER, bus_replay_endpoint(b), NULL, NULL, NULL);
	for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
		int k = 0;

		while (k < 5 && bad[i][k] != NULL)
			k++;
		n = replay(d, bad[i], k, f, MAXF);
		cr_assert_eq(n, 2, "case %d", i);
		cr_assert_str_eq(f[0], "ERROR");
		cr_assert(strlen(f[1]) > 0);
		free_parts(f, n);
	}
	/* A DEALER without the delimiter gets an answer without one. */
	{
		const char *req[] = { "REPLAY", "1", "1" };

		send_parts(d, req, 3);
		n = recv_parts(d, f, MAXF, 3000);
		cr_assert_eq(n, 5);
		cr_assert_str_eq(f[0], "BATCH");
		free_parts(f, n);
	}
	/* ...and a REQ client still gets served afterwards. */
	r = client(ZMQ_REQ, bus_replay_endpoint(b), NULL, NULL, NULL);
	{
		const char *req[] = { "REPLAY", "0", "5", "payment." };

		send_parts(r, req, 4);
		n = recv_parts(r, f, MAXF, 3000);
		cr_assert_eq(n, 5);
		cr_assert_str_eq(f[0], "BATCH");
		cr_assert_str_eq(f[1], "2");
		cr_assert_str_eq(f[2], "1");
		cr_assert_str_eq(f[3], "payment.captured");
		free_parts(f, n);
	}
	zmq_close(r);
	zmq_close(d);
	bus_free(b);
	journal_free(j);
}

Test(bus, vanished_replay_clients_do_not_stall_the_feed)
{
	struct journal *j = open_journal();
	struct bus *b;
	void *sub, *d;
	char *f[2];
	int i, n;
	const char *req[] = { "", "REPLAY", "1", "1000" };

	fill_journal(j, 300, 1);
	b = start_bus(NULL, NULL, 0, 0);
	sub = client(ZMQ_SUB, bus_feed_endpoint(b), NULL, NULL, NULL);
	wait_heartbeat(sub);
	/* Ask for a lot and never read the answers, then vanish. */
	d = client(ZMQ_DEALER, bus_replay_endpoint(b), NULL, NULL, NULL);
	for (i = 0; i < 200; i++)
		send_parts(d, req, 4);
	for (i = 1; i <= 20; i++)
		cr_assert_eq(bus_send(b, 300 + i, "payment.failed", "{}", 2), 0);
	for (i = 1; i <= 20; i++) {
		n = recv_event(sub, f, 5000);
		cr_assert_eq(n, 2, "live event %d stalled", i);
		free_parts(f, n);
	}
	zmq_close(d);
	zmq_close(sub);
	bus_free(b);
	journal_free(j);
}

struct keys {
	char	spub[41], ssec[41], cpub[41], csec[41], xpub[41], xsec[41];
};

static void
make_keys(struct keys *k)
{
	cr_assert_eq(zmq_curve_keypair(k->spub, k->ssec), 0);
	cr_assert_eq(zmq_curve_keypair(k->cpub, k->csec), 0);
	cr_assert_eq(zmq_curve_keypair(k->xpub, k->xsec), 0);
}

Test(bus, curve_admits_only_listed_keys)
{
	struct journal *j = open_journal();
	struct keys k;
	struct bus *b;
	char *clients[1], *f[MAXF];
	void *good, *unlisted, *plain, *gd, *ud, *pd;
	const char *req[] = { "", "REPLAY", "1", "10" };
	int n;

	fill_journal(j, 2, 1);
	make_keys(&k);
	clients[0] = k.cpub;
	b = start_bus(k.ssec, clients, 1, 0);
	good = client(ZMQ_SUB, bus_feed_endpoint(b), k.spub, k.cpub, k.csec);
	unlisted = client(ZMQ_SUB, bus_feed_endpoint(b), k.spub, k.xpub,
	    k.xsec);
	plain = client(ZMQ_SUB, bus_feed_endpoint(b), NULL, NULL, NULL);
	wait_heartbeat(good);
	cr_assert_eq(recv_parts(unlisted, f, 2, 1500), 0, "unlisted got data");
	cr_assert_eq(recv_parts(plain, f, 2, 500), 0, "plain got data");

	gd = client(ZMQ_DEALER, bus_replay_endpoint(b), k.spub, k.cpub, k.csec);
	ud = client(ZMQ_DEALER, bus_replay_endpoint(b), k.spub, k.xpub, k.xsec);
	pd = client(ZMQ_DEALER, bus_replay_endpoint(b), NULL, NULL, NULL);
	send_parts(ud, req, 4);
	send_parts(pd, req, 4);
	n = replay(gd, req + 1, 3, f, MAXF);
	cr_assert_eq(n, 7);
	cr_assert_str_eq(f[0], "BATCH");
	free_parts(f, n);
	cr_assert_eq(recv_parts(ud, f, MAXF, 1000), 0, "unlisted replayed");
	cr_assert_eq(recv_parts(pd, f, MAXF, 300), 0, "plain replayed");
	zmq_close(gd);
	zmq_close(ud);
	zmq_close(pd);
	zmq_close(good);
	zmq_close(unlisted);
	zmq_close(plain);
	bus_free(b);
	journal_free(j);
}

static void
write_file(const char *name, const char *text, char *path, size_t len)
{
	FILE *fp;

	xsnprintf(path, len, "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
}

Test(bus, key_files_are_parsed_strictly)
{
	struct keys k;
	char path[256], text[512], key[41], **list, *cause = NULL;
	size_t n;

	make_keys(&k);
	xsnprintf(text, sizeof text, "# server\n\n  %s\n", k.ssec);
	write_file("secret", text, path, sizeof path);
	cr_assert_eq(publisher_read_key_file(path, key, &cause), 0, "%s", cause);
	cr_assert_str_eq(key, k.ssec);
	write_file("short", "abc\n", path, sizeof path);
	cr_assert_eq(publisher_read_key_file(path, key, &cause), -1);
	cr_assert_null(strstr(cause, "abc"));	/* never echo key material */
	free(cause);
	cause = NULL;

	xsnprintf(text, sizeof text, "# clients\n%s alice\n\n%s\tbob\n",
	    k.cpub, k.xpub);
	write_file("clients", text, path, sizeof path);
	cr_assert_eq(publisher_read_clients_file(path, &list, &n, &cause), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(list[0], k.cpub);
	cr_assert_str_eq(list[1], k.xpub);
	free(list[0]);
	free(list[1]);
	free(list);
	xsnprintf(text, sizeof text, "%s\nnot-a-key\n", k.cpub);
	write_file("clients2", text, path, sizeof path);
	cr_assert_eq(publisher_read_clients_file(path, &list, &n, &cause), -1);
	cr_assert_not_null(strstr(cause, "line 2"), "%s", cause);
	free(cause);
}

/* ---- publisher: journal -> bus -> journal ---------------------------- */

static struct config *
load_config(void)
{
	char sd[160], sf[160], path[256], *cause = NULL;
	char *env[] = { sd, sf,
	    "PAYHOOK_CROSS_CHECK=off",
	    "PAYHOOK_PUBLISH_ENDPOINT=tcp://127.0.0.1:*",
	    "PAYHOOK_REPLAY_ENDPOINT=tcp://127.0.0.1:*", NULL };
	struct config *cfg;

	write_file("signing-secret", "webhook_test_abc\n", path, sizeof path);
	xsnprintf(sf, sizeof sf, "PAYHOOK_SIGNING_SECRET_FILE=%s", path);
	xsnprintf(sd, sizeof sd, "PAYHOOK_STATE_DIR=%s", statedir);
	cfg = config_load(NULL, env, &cause);
	cr_assert_not_null(cfg, "%s", cause ? cause : "");
	return cfg;
}

/* Run the loop until the subscriber holds want events (seq checked, and
 * each event_id when ids is not NULL). */
static void
pump_until_ids(struct event_base *base, void *sub, int64_t first, int want,
    const char *const *ids)
{
	int64_t end = util_mono_ms() + 10000, seq = first;
	char *f[2];
	cJSON *ev;
	int got = 0, n;

	while (got < want && util_mono_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = recv_parts(sub, f, 2, 10);
		if (n == 0 || strcmp(f[0], "heartbeat") == 0) {
			free_parts(f, n);
			continue;
		}
		ev = cJSON_Parse(f[1]);
		cr_assert_not_null(ev);
		cr_assert_eq((int64_t)cJSON_GetObjectItem(ev, "seq")->valuedouble,
		    seq, "expected seq %lld", (long long)seq);
		cr_assert_str_eq(cJSON_GetObjectItem(ev, "topic")->valuestring,
		    f[0]);
		if (ids != NULL)
			cr_assert_str_eq(cJSON_GetObjectItem(ev,
			    "event_id")->valuestring, ids[got]);
		cJSON_Delete(ev);
		free_parts(f, n);
		seq++;
		got++;
	}
	cr_assert_eq(got, want);
}

static void
pump_until(struct event_base *base, void *sub, int64_t first, int want)
{
	pump_until_ids(base, sub, first, want, NULL);
}

Test(bus, publisher_assigns_sends_and_marks_published)
{
	struct config *cfg = load_config();
	struct journal *j = open_journal();
	struct event_base *base;
	struct publisher *p;
	struct journal_event *ev;
	int64_t counts[JOURNAL_NSTATES], assigned, published, end;
	char *cause = NULL;
	void *sub;
	size_t n;

	cr_assert_eq(evthread_use_pthreads(), 0);
	base = event_base_new();
	fill_journal(j, 40, 0);
	p = publisher_new(base, cfg, j, &cause);
	cr_assert_not_null(p, "%s", cause ? cause : "");
	sub = client(ZMQ_SUB, publisher_feed_endpoint(p), NULL, NULL, NULL);
	wait_heartbeat(sub);
	publisher_wake(p);
	pump_until(base, sub, 1, 40);

	/* Until the bus confirms, events stay unsent; then marked. */
	end = util_mono_ms() + 5000;
	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		cr_assert_eq(journal_head_seq(j, &assigned, &published,
		    &cause), 0);
	} while (published < 40 && util_mono_ms() < end);
	cr_assert_eq(assigned, 40);
	cr_assert_eq(published, 40);

	/* A "crash" leaves 3 assigned but unsent: the next start resends. */
	zmq_close(sub);
	publisher_free(p);
	{
		struct journal_entry e;
		struct journal_row *rows;
		size_t nr, i;
		int64_t seq;
		char id[16];

		cr_assert_eq(journal_begin(j, &cause), 0);
		for (i = 0; i < 3; i++) {
			memset(&e, 0, sizeof e);
			xsnprintf(id, sizeof id, "crash-%zu", i);
			e.message_id = id;
			e.received_ms = util_now_ms();
			e.secret_index = 1;
			e.body = "{}";
			e.body_len = 2;
			e.quarantine_reason = "crash";
			cr_assert_eq(journal_put(j, &e, &cause),
			    JOURNAL_PUT_NEW);
		}
		cr_assert_eq(journal_commit(j, &cause), 0);
		cr_assert_eq(journal_rows_to_publish(j, 3, &rows, &nr,
		    &cause), 0);
		for (i = 0; i < nr; i++) {
			char json[64];

			xsnprintf(json, sizeof json, "{\"seq\":%zu,\"topic\":"
			    "\"alert.quarantined\"}", 41 + i);
			cr_assert_eq(journal_add_event(j, rows[i].id,
			    "alert.quarantined", json, strlen(json), 1, &seq,
			    &cause), 0);
		}
		journal_rows_free(rows, nr);
	}
	cr_assert_eq(journal_unsent_events(j, 0, 10, &ev, &n, &cause), 0);
	cr_assert_eq(n, 3);
	journal_events_free(ev, n);
	metrics_reset();
	p = publisher_new(base, cfg, j, &cause);
	cr_assert_not_null(p, "%s", cause ? cause : "");
	sub = client(ZMQ_SUB, publisher_feed_endpoint(p), NULL, NULL, NULL);
	wait_heartbeat(sub);	/* the loop has not run: nothing sent yet */
	{
		/* New rows continue at 44 after the resent 41..43. */
		struct journal_entry e;

		memset(&e, 0, sizeof e);
		e.message_id = "after-crash";
		e.received_ms = util_now_ms();
		e.secret_index = 1;
		e.body = "{}";
		e.body_len = 2;
		e.quarantine_reason = "after";
		cr_assert_eq(journal_begin(j, &cause), 0);
		cr_assert_eq(journal_put(j, &e, &cause), JOURNAL_PUT_NEW);
		cr_assert_eq(journal_commit(j, &cause), 0);
	}
	publisher_wake(p);
	pump_until(base, sub, 41, 4);	/* resent 41..43, then the new 44 */
	end = util_mono_ms() + 5000;
	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		cr_assert_eq(journal_head_seq(j, &assigned, &published,
		    &cause), 0);
	} while (published < 44 && util_mono_ms() < end);
	cr_assert_eq(published, 44);
	cr_assert_eq(journal_count_states(j, counts, &cause), 0);
	cr_assert_eq(counts[JOURNAL_RECEIVED] + counts[JOURNAL_CHECKED], 0);
	zmq_close(sub);
	publisher_free(p);
	journal_free(j);
	event_base_free(base);
	config_free(cfg);
}

/* One webhook of a group commit, its verdict known at the door. */
static int
store_one(const struct server_store_hooks *h, const char *id,
    const char *quarantine)
{
	struct journal_entry e;
	char *cause = NULL;
	int r;

	memset(&e, 0, sizeof e);
	e.message_id = id;
	e.received_ms = util_now_ms();
	e.secret_index = 1;
	e.body = "{}";
	e.body_len = 2;
	if (quarantine != NULL)
		e.quarantine_reason = quarantine;
	else {
		e.event_type = "card_payment_captured";
		e.resource_id = "hu20sqlact5260q2nanm0q8u93";
		e.occurred_ms = util_now_ms();
		e.verdict = "skipped";
	}
	r = h->put(h->arg, &e, &cause);
	cr_assert_neq(r, JOURNAL_PUT_ERROR, "%s", cause ? cause : "");
	return r;
}

/* The receiver's store hooks: events stored with their webhooks; a batch
 * rolled back leaves no seq used; the next batch's events go out in order
 * once durable, and no row is left for the publish stage. */
Test(bus, store_hooks_fuse_roll_back_and_hand_over)
{
	static const char *const ids[] = { "kept-1", "kept-2", "kept-3" };
	struct config *cfg = load_config();
	struct journal *j = open_journal();
	struct server_store_hooks h;
	struct journal_row *rows;
	struct event_base *base;
	struct publisher *p;
	int64_t counts[JOURNAL_NSTATES], assigned, published;
	uint64_t ticket;
	char *cause = NULL;
	void *sub;
	size_t n;

	cr_assert_eq(evthread_use_pthreads(), 0);
	base = event_base_new();
	p = publisher_new(base, cfg, j, &cause);
	cr_assert_not_null(p, "%s", cause ? cause : "");
	sub = client(ZMQ_SUB, publisher_feed_endpoint(p), NULL, NULL, NULL);
	wait_heartbeat(sub);
	publisher_store_hooks(p, &h);

	/* A batch that fails after its puts: nothing stays, no seq used. */
	cr_assert_eq(journal_begin(j, &cause), 0);
	cr_assert_eq(h.begin(h.arg, &cause), 0);
	cr_assert_eq(store_one(&h, "gone-1", NULL), JOURNAL_PUT_NEW);
	cr_assert_eq(store_one(&h, "gone-2", "body: invalid JSON"),
	    JOURNAL_PUT_NEW);
	journal_rollback(j);
	h.end(h.arg, 0, 0);
	cr_assert_eq(journal_head_seq(j, &assigned, &published, &cause), 0);
	cr_assert_eq(assigned, 0);

	/* The next batch starts again at seq 1; a duplicate takes none. */
	cr_assert_eq(journal_begin(j, &cause), 0);
	cr_assert_eq(h.begin(h.arg, &cause), 0);
	cr_assert_eq(store_one(&h, "kept-1", NULL), JOURNAL_PUT_NEW);
	cr_assert_eq(store_one(&h, "kept-1", NULL), JOURNAL_PUT_DUPLICATE);
	cr_assert_eq(store_one(&h, "kept-2", "body: invalid JSON"),
	    JOURNAL_PUT_NEW);
	cr_assert_eq(store_one(&h, "kept-3", NULL), JOURNAL_PUT_NEW);
	cr_assert_eq(journal_commit_deferred(j, &ticket, &cause), 0);
	h.end(h.arg, 1, ticket);
	cr_assert_eq(journal_head_seq(j, &assigned, &published, &cause), 0);
	cr_assert_eq(assigned, 3);
	cr_assert_eq(journal_rows_to_publish(j, 10, &rows, &n, &cause), 0);
	cr_expect_eq(n, 0, "every row already has its event");
	journal_rows_free(rows, n);
	cr_assert_eq(journal_count_states(j, counts, &cause), 0);
	cr_expect_eq(counts[JOURNAL_RECEIVED] + counts[JOURNAL_CHECKED], 0);
	cr_expect_eq(counts[JOURNAL_QUARANTINED], 1);

	publisher_wake(p);
	/* 1..3 as stored now: never the rolled-back batch's events, which
	 * had the same seqs and topics. */
	pump_until_ids(base, sub, 1, 3, ids);
	zmq_close(sub);
	publisher_free(p);
	journal_free(j);
	event_base_free(base);
	config_free(cfg);
}
