/*
 * bench_dispatch.c: the dispatch benchmark (issue 5). Fills a fresh journal
 * with N checked rows (a ~1.5 KB card_payment_captured webhook each, verdict
 * skipped), starts the real publisher (normalise, seq assignment in the
 * journal, bus thread, XPUB) on an event loop, and measures how fast K SUB
 * subscribers (threads of this process, tcp loopback) receive the N events;
 * then how fast a DEALER replays all N from the journal in 1000-event
 * batches. Main thread runs libevent; each subscriber is its own thread.
 *
 * usage: bench_dispatch EVENTS SUBSCRIBERS STATE_DIR BODY_FILE
 */
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <zmq.h>

#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/publisher.h"
#include "journal/journal.h"

struct sub {
	pthread_t	 thread;
	void		*ctx;
	const char	*ep;
	int64_t		 want;
	int64_t		 got, gaps, last;
	int64_t		 first_ms, last_ms;
	atomic_int	 ready, done;
};

static void *
sub_main(void *arg)
{
	struct sub *s = arg;
	void *sock = zmq_socket(s->ctx, ZMQ_SUB);
	zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
	char topic[64], buf[8192], *p;
	int64_t seq, deadline;
	int n, hwm = 0, linger = 0;

	zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
	zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
	zmq_connect(sock, s->ep);
	deadline = util_mono_ms() + 120000;
	while (util_mono_ms() < deadline && s->last < s->want) {
		if (zmq_poll(&it, 1, 100) <= 0)
			continue;
		if ((n = zmq_recv(sock, topic, sizeof topic - 1, 0)) < 0)
			continue;
		topic[n < (int)sizeof topic - 1 ? n : (int)sizeof topic - 1] = 0;
		if ((n = zmq_recv(sock, buf, sizeof buf - 1, 0)) < 0)
			continue;
		buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = 0;
		if (strcmp(topic, "heartbeat") == 0) {
			atomic_store(&s->ready, 1);
			continue;
		}
		if ((p = strstr(buf, "\"seq\":")) == NULL)
			continue;
		seq = strtoll(p + 6, NULL, 10);
		if (s->got == 0)
			s->first_ms = util_mono_ms();
		if (seq != s->last + 1)
			s->gaps++;
		s->last = seq;
		s->got++;
		s->last_ms = util_mono_ms();
	}
	zmq_close(sock);
	atomic_store(&s->done, 1);
	return NULL;
}

static void
fill(struct journal *j, int64_t n, const char *body, size_t len)
{
	struct journal_entry e;
	char id[32], *cause = NULL;
	int64_t i, k;

	for (i = 0; i < n; i += 1000) {
		if (journal_begin(j, &cause) != 0)
			fatalx(1, "%s", cause);
		for (k = i; k < n && k < i + 1000; k++) {
			memset(&e, 0, sizeof e);
			xsnprintf(id, sizeof id, "b%025lld", (long long)k);
			e.message_id = id;
			e.event_type = "card_payment_captured";
			e.resource_id = "hu20sqlact5260q2nanm0q8u93";
			e.occurred_ms = 1634637973371LL + k;
			e.received_ms = util_now_ms();
			e.secret_index = 1;
			e.body = body;
			e.body_len = len;
			if (journal_put(j, &e, &cause) != JOURNAL_PUT_NEW)
				fatalx(1, "put: %s", cause ? cause : "dup");
		}
		if (journal_commit(j, &cause) != 0)
			fatalx(1, "%s", cause);
	}
}

/* received -> checked for all rows, in one transaction. */
static void
check_all(struct journal *j, int64_t n)
{
	struct journal_verdict v = { "skipped", NULL, 0, NULL, 0 };
	char *cause = NULL;
	int64_t i;

	if (journal_begin(j, &cause) != 0)
		fatalx(1, "%s", cause);
	for (i = 1; i <= n; i++) {
		if (journal_set_verdict(j, i, &v, util_now_ms(), &cause) != 0)
			fatalx(1, "%s", cause);
	}
	if (journal_commit(j, &cause) != 0)
		fatalx(1, "%s", cause);
}

/* REPLAY everything in batches; returns events/s, *mb gets MB/s. */
static double
replay_all(void *ctx, const char *ep, int64_t n, double *mbs)
{
	void *d = zmq_socket(ctx, ZMQ_DEALER);
	zmq_msg_t m;
	char from[24];
	int64_t got = 0, bytes = 0, t0, t1;
	int more, linger = 0;

	zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
	zmq_connect(d, ep);
	t0 = util_mono_ms();
	while (got < n) {
		xsnprintf(from, sizeof from, "%lld", (long long)got + 1);
		zmq_send(d, "", 0, ZMQ_SNDMORE);
		zmq_send(d, "REPLAY", 6, ZMQ_SNDMORE);
		zmq_send(d, from, strlen(from), ZMQ_SNDMORE);
		zmq_send(d, "1000", 4, 0);
		int frames = 0;
		do {
			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, d, 0) < 0)
				fatalx(1, "replay recv failed");
			more = zmq_msg_more(&m);
			if (frames >= 4 && (frames - 4) % 2 == 1) {
				got++;
				bytes += (int64_t)zmq_msg_size(&m);
			}
			frames++;
			zmq_msg_close(&m);
		} while (more);
		if (frames <= 4)
			break;
	}
	t1 = util_mono_ms();
	zmq_close(d);
	*mbs = (double)bytes / 1e6 / ((double)(t1 - t0) / 1000.0);
	return (double)got / ((double)(t1 - t0) / 1000.0);
}

int
main(int argc, char **argv)
{
	struct journal_config jc;
	struct event_base *base;
	struct journal *j;
	struct publisher *p;
	struct config *cfg;
	struct sub *subs;
	char *cause = NULL, *body, env_sd[512], env_sf[512], sfile[512];
	char *env[6];
	size_t blen;
	int64_t n, t0, t_fill, last_ms = 0, minrecv;
	int k, i, alldone;
	double mbs, rps;
	FILE *f;
	void *ctx;

	if (argc != 5)
		fatalx(2, "usage: bench_dispatch EVENTS SUBSCRIBERS STATE_DIR "
		    "BODY_FILE");
	n = strtoll(argv[1], NULL, 10);
	k = (int)strtol(argv[2], NULL, 10);
	log_init(LOG_WARN, "bench_dispatch");
	if (util_read_file(argv[4], 65536, &body, &blen, &cause) != 0)
		fatalx(1, "%s", cause);
	xsnprintf(sfile, sizeof sfile, "%s.secret", argv[3]);
	if ((f = fopen(sfile, "w")) == NULL)
		fatalx(1, "cannot write %s", sfile);
	fputs("webhook_test_bench\n", f);
	fclose(f);
	xsnprintf(env_sd, sizeof env_sd, "PAYHOOK_STATE_DIR=%s", argv[3]);
	xsnprintf(env_sf, sizeof env_sf, "PAYHOOK_SIGNING_SECRET_FILE=%s",
	    sfile);
	env[0] = env_sd;
	env[1] = env_sf;
	env[2] = "PAYHOOK_CROSS_CHECK=off";
	env[3] = "PAYHOOK_PUBLISH_ENDPOINT=tcp://127.0.0.1:*";
	env[4] = "PAYHOOK_REPLAY_ENDPOINT=tcp://127.0.0.1:*";
	env[5] = NULL;
	if ((cfg = config_load(NULL, env, &cause)) == NULL)
		fatalx(1, "%s", cause);
	memset(&jc, 0, sizeof jc);
	jc.dir = argv[3];
	jc.durability = JOURNAL_DURABILITY_FULL;
	jc.retention_ms = 86400000LL * 7;
	jc.checkpoint_ms = 1000;
	if ((j = journal_open(&jc, &cause)) == NULL)
		fatalx(1, "%s", cause);
	t0 = util_mono_ms();
	fill(j, n, body, blen);
	t_fill = util_mono_ms() - t0;

	evthread_use_pthreads();
	base = event_base_new();
	ctx = zmq_ctx_new();
	if ((p = publisher_new(base, cfg, j, &cause)) == NULL)
		fatalx(1, "%s", cause);
	subs = xcalloc((size_t)k, sizeof *subs);
	for (i = 0; i < k; i++) {
		subs[i].ctx = ctx;
		subs[i].ep = publisher_feed_endpoint(p);
		subs[i].want = n;
		pthread_create(&subs[i].thread, NULL, sub_main, &subs[i]);
	}
	/* Wait until every subscriber is connected (has a heartbeat). */
	for (i = 0; i < k; i++) {
		while (!atomic_load(&subs[i].ready))
			event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	}
	/* Rows become publishable only now: time from here. */
	check_all(j, n);
	t0 = util_mono_ms();
	publisher_wake(p);
	do {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		for (alldone = 1, i = 0; i < k; i++)
			alldone &= atomic_load(&subs[i].done);
	} while (!alldone);
	minrecv = n;
	for (i = 0; i < k; i++) {
		pthread_join(subs[i].thread, NULL);
		if (subs[i].last_ms > last_ms)
			last_ms = subs[i].last_ms;
		if (subs[i].got < minrecv)
			minrecv = subs[i].got;
	}
	printf("fill: %lld rows in %lld ms\n", (long long)n,
	    (long long)t_fill);
	printf("publish: events=%lld subscribers=%d seconds=%.3f "
	    "events_per_s=%.0f min_received=%lld", (long long)n, k,
	    (double)(last_ms - t0) / 1000.0,
	    (double)n / ((double)(last_ms - t0) / 1000.0),
	    (long long)minrecv);
	for (i = 0; i < k; i++)
		printf(" sub%d=%lld/gaps%lld", i, (long long)subs[i].got,
		    (long long)subs[i].gaps);
	printf("\n");
	rps = replay_all(ctx, publisher_replay_endpoint(p), n, &mbs);
	printf("replay: events=%lld events_per_s=%.0f MB_per_s=%.1f\n",
	    (long long)n, rps, mbs);
	publisher_free(p);
	zmq_ctx_term(ctx);
	journal_free(j);
	event_base_free(base);
	config_free(cfg);
	free(subs);
	free(body);
	return 0;
}
