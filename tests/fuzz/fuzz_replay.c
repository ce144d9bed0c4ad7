/*
 * fuzz_replay.c: libFuzzer target for the replay request parser, which is
 * static in dispatch/bus_replay.c (bus_parse_replay); rather than expose it,
 * this goes through the smallest public seam: a real bus (bus_new) on
 * loopback over a small journal in a temp dir, and a DEALER that sends the
 * input as one multipart request (frames split on '\n'; a leading empty
 * frame is a REQ-style delimiter). Every request must get exactly one reply:
 * ERROR with a reason, or BATCH head count then topic/json pairs that match
 * the request (seq >= from, topic starts with the prefix, at most max, in
 * order). Main thread plus the bus thread.
 */
#include <sys/stat.h>

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "common/log.h"
#include "common/util.h"
#include "dispatch/bus.h"
#include "journal/journal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define FZ_EVENTS	7
#define FZ_BATCH	4	/* replay_batch_max: smaller than FZ_EVENTS */
#define FZ_FRAMES	12
#define FZ_REPLY_MS	10000

static const char *const topics[] = { "payment.captured", "alert.quarantined",
	"payment.refunded", "payment.succeeded" };

static char tmpdir[200];
static struct journal *journal;
static struct bus *bus;
static void *ctx, *dealer;

static int
rm_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static void
cleanup(void)
{
	zmq_close(dealer);
	zmq_ctx_term(ctx);
	bus_free(bus);
	journal_free(journal);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void
fill_journal(void)
{
	struct journal_config jc = { .dir = tmpdir,
	    .durability = JOURNAL_DURABILITY_PROCESS, .retention_ms = 86400000,
	    .checkpoint_ms = 1000 };
	struct journal_entry e;
	struct journal_row *rows;
	char id[32], json[128], *cause = NULL;
	size_t nrows, i;
	int64_t seq;

	if ((journal = journal_open(&jc, &cause)) == NULL ||
	    journal_begin(journal, &cause) != 0)
		goto fail;
	for (i = 0; i < FZ_EVENTS; i++) {
		memset(&e, 0, sizeof e);
		snprintf(id, sizeof id, "q-%zu", i);
		e.message_id = id;
		e.received_ms = 1700000000000 + (int64_t)i;
		e.secret_index = 1;
		e.body = "{}";
		e.body_len = 2;
		e.quarantine_reason = "fuzz";
		if (journal_put(journal, &e, &cause) != JOURNAL_PUT_NEW)
			goto fail;
	}
	if (journal_commit(journal, &cause) != 0 ||
	    journal_rows_to_publish(journal, FZ_EVENTS, &rows, &nrows,
	    &cause) != 0 || nrows != FZ_EVENTS)
		goto fail;
	for (i = 0; i < nrows; i++) {
		snprintf(json, sizeof json, "{\"seq\":%zu}", i + 1);
		if (journal_add_event(journal, rows[i].id, topics[i % 4], json,
		    strlen(json), 1700000000000, &seq, &cause) != 0 ||
		    seq != (int64_t)i + 1)
			goto fail;
	}
	journal_rows_free(rows, nrows);
	return;
fail:
	fprintf(stderr, "fuzz_replay: journal: %s\n", cause ? cause : "?");
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct bus_config bc;
	const char *t;
	char *cause = NULL;
	int zero = 0;

	log_init(LOG_ERROR, "fuzz_replay");
	t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/payhook-fuzz-replay-XXXXXX",
	    t != NULL && *t != '\0' && strlen(t) < 160 ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		abort();
	fill_journal();
	memset(&bc, 0, sizeof bc);
	bc.feed_endpoint = "tcp://127.0.0.1:*";
	bc.replay_endpoint = "tcp://127.0.0.1:*";
	bc.journal_dir = tmpdir;
	bc.head_seq = FZ_EVENTS;
	bc.durable_seq = FZ_EVENTS;
	bc.replay_batch_max = FZ_BATCH;
	if ((bus = bus_new(&bc, &cause)) == NULL) {
		fprintf(stderr, "fuzz_replay: bus: %s\n", cause);
		abort();
	}
	ctx = zmq_ctx_new();
	dealer = zmq_socket(ctx, ZMQ_DEALER);
	if (dealer == NULL ||
	    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
	    zmq_connect(dealer, bus_replay_endpoint(bus)) != 0)
		abort();
	atexit(cleanup);
	return 0;
}

/*
 * A decimal in [0, INT64_MAX], as the contract states: 0 and *out; -1 when
 * not one; 1 when it is one but longer than a number frame may be (23
 * bytes: leading zeros), which the server may refuse.
 */
static int
strict_int(const uint8_t *p, size_t n, int64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v > (uint64_t)INT64_MAX / 10)
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
		if (v > INT64_MAX)
			return -1;
	}
	*out = (int64_t)v;
	return n > 23 ? 1 : 0;
}

static int
frame_is(const zmq_msg_t *m, const char *s)
{
	return zmq_msg_size(m) == strlen(s) &&
	    memcmp(zmq_msg_data((zmq_msg_t *)m), s, strlen(s)) == 0;
}

/* Receive the whole reply into r[0..*n). */
static void
recv_reply(zmq_msg_t *r, size_t max, size_t *n)
{
	zmq_pollitem_t it = { dealer, 0, ZMQ_POLLIN, 0 };
	int64_t deadline = util_now_ms() + FZ_REPLY_MS, left;
	int more = 1, rc;

	/*
	 * libFuzzer's -timeout runs a SIGALRM timer, so a wait may be
	 * interrupted (EINTR): wait again for what is left of the deadline.
	 */
	do {
		left = deadline - util_now_ms();
		rc = zmq_poll(&it, 1, left > 0 ? (long)left : 0);
	} while (rc < 0 && errno == EINTR);
	CHECK(rc == 1);		/* no reply within FZ_REPLY_MS: a bug */
	*n = 0;
	while (more) {
		CHECK(*n < max);
		zmq_msg_init(&r[*n]);
		while ((rc = zmq_msg_recv(&r[*n], dealer, 0)) < 0 &&
		    errno == EINTR)
			;
		CHECK(rc >= 0);
		more = zmq_msg_more(&r[*n]);
		(*n)++;
	}
}

static void
check_batch(zmq_msg_t *r, size_t n, const uint8_t **f, const size_t *flen,
    size_t nf)
{
	int64_t from, max, head, count, seq;
	const uint8_t *prefix = nf == 4 ? f[3] : (const uint8_t *)"";
	size_t plen = nf == 4 ? flen[3] : 0, i, want = 0;
	char num[24];

	/* Accepted: the request was well-formed. */
	CHECK(nf == 3 || nf == 4);
	CHECK(flen[0] == 6 && memcmp(f[0], "REPLAY", 6) == 0);
	CHECK(strict_int(f[1], flen[1], &from) == 0);
	CHECK(strict_int(f[2], flen[2], &max) == 0);
	CHECK(memchr(prefix, '\0', plen) == NULL);
	CHECK(n >= 3);
	CHECK(zmq_msg_size(&r[1]) < sizeof num && zmq_msg_size(&r[2]) <
	    sizeof num);
	memcpy(num, zmq_msg_data(&r[1]), zmq_msg_size(&r[1]));
	num[zmq_msg_size(&r[1])] = '\0';
	head = strtoll(num, NULL, 10);
	memcpy(num, zmq_msg_data(&r[2]), zmq_msg_size(&r[2]));
	num[zmq_msg_size(&r[2])] = '\0';
	count = strtoll(num, NULL, 10);
	CHECK(head == FZ_EVENTS);
	CHECK(n == 3 + 2 * (size_t)count);
	/* What the journal holds that matches, capped. */
	for (i = 0; i < FZ_EVENTS; i++)
		if ((int64_t)i + 1 >= from && plen <= strlen(topics[i % 4]) &&
		    memcmp(topics[i % 4], prefix, plen) == 0)
			want++;
	if ((int64_t)want > max)
		want = (size_t)max;
	if (want > FZ_BATCH)
		want = FZ_BATCH;
	CHECK((size_t)count == want);
	for (i = 0, seq = 0; i < (size_t)count; i++) {
		zmq_msg_t *t = &r[3 + 2 * i], *j = &r[4 + 2 * i];
		int64_t s;

		CHECK(zmq_msg_size(t) >= plen &&
		    memcmp(zmq_msg_data(t), prefix, plen) == 0);
		CHECK(zmq_msg_size(j) > 7 && zmq_msg_size(j) < sizeof num);
		memcpy(num, (char *)zmq_msg_data(j) + 7, zmq_msg_size(j) - 7);
		num[zmq_msg_size(j) - 7] = '\0';
		s = strtoll(num, NULL, 10);
		CHECK(s > seq && s >= from);
		CHECK(frame_is(t, topics[(s - 1) % 4]));
		seq = s;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *f[FZ_FRAMES], *p = data, *end = data + size, *nl;
	size_t flen[FZ_FRAMES], nf = 0, i, n, skip;
	zmq_msg_t r[3 + 2 * FZ_BATCH + 4];

	if (size > 4000)	/* ZMQ_MAXMSGSIZE drops bigger frames */
		return 0;
	for (;;) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nf == FZ_FRAMES)
			return 0;
		f[nf] = p;
		flen[nf++] = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	for (i = 0; i < nf; i++) {
		int rc;

		while ((rc = zmq_send(dealer, f[i], flen[i], i + 1 < nf ?
		    ZMQ_SNDMORE : 0)) < 0 && errno == EINTR)
			;
		CHECK(rc >= 0);
	}
	recv_reply(r, sizeof r / sizeof r[0], &n);

	/* A leading empty frame is a delimiter and comes back. */
	skip = flen[0] == 0 ? 1 : 0;
	if (skip)
		CHECK(n > 1 && zmq_msg_size(&r[0]) == 0);
	CHECK(n >= skip + 2);
	if (frame_is(&r[skip], "ERROR")) {
		int64_t x;

		CHECK(n == skip + 2 && zmq_msg_size(&r[skip + 1]) > 0);
		/* A strictly well-formed request is never refused. */
		CHECK(!(nf - skip >= 3 && nf - skip <= 4 &&
		    flen[skip] == 6 && memcmp(f[skip], "REPLAY", 6) == 0 &&
		    strict_int(f[skip + 1], flen[skip + 1], &x) == 0 &&
		    strict_int(f[skip + 2], flen[skip + 2], &x) == 0 &&
		    (nf - skip == 3 || (flen[skip + 3] < 64 &&
		    memchr(f[skip + 3], '\0', flen[skip + 3]) == NULL))));
	} else {
		CHECK(frame_is(&r[skip], "BATCH"));
		check_batch(r + skip, n - skip, f + skip, flen + skip,
		    nf - skip);
	}
	for (i = 0; i < n; i++)
		zmq_msg_close(&r[i]);
	return 0;
}
