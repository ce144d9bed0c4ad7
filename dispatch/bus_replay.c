/*
 * bus_replay.c: the replay endpoint (ROUTER): parse REPLAY requests, read
 * the range from the journal through the bus's read-only connection and
 * answer BATCH or ERROR, exactly as CONTRACT.md frames them. Bus thread.
 * Every send is DONTWAIT and bounded in bytes, so a slow or vanished client
 * cannot stall the live feed; a malformed request never stops the server.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/bus.h"
#include "dispatch/bus_int.h"
#include "journal/journal.h"

/* One replay reply being built. */
struct bus_batch {
	zmq_msg_t	*msgs;			/* topic, json, topic, json... */
	size_t		 n, cap, bytes, max;
};

size_t
bus_recv_frames(void *s, zmq_msg_t *f, size_t max, size_t *total)
{
	zmq_msg_t extra;
	size_t n = 0;
	int more = 1;

	*total = 0;
	while (more) {
		zmq_msg_t *m = n < max ? &f[n] : &extra;

		if (zmq_msg_init(m) != 0)
			break;
		/* A multipart message arrives whole: DONTWAIT never splits. */
		if (zmq_msg_recv(m, s, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(m);
			break;
		}
		more = zmq_msg_more(m);
		(*total)++;
		if (m == &extra)
			zmq_msg_close(m);
		else
			n++;
	}
	return n;
}

void
bus_close_frames(zmq_msg_t *f, size_t n)
{
	while (n > 0)
		zmq_msg_close(&f[--n]);
}

int
bus_frame_is(zmq_msg_t *m, const char *s)
{
	return zmq_msg_size(m) == strlen(s) &&
	    memcmp(zmq_msg_data(m), s, strlen(s)) == 0;
}

/* A decimal frame into [0, INT64_MAX]. */
static int
bus_frame_int(zmq_msg_t *m, int64_t *out)
{
	char buf[24];
	size_t len = zmq_msg_size(m);

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, zmq_msg_data(m), len);
	buf[len] = '\0';
	/* Every byte a digit: "1\0x" must not read as 1 (found by fuzzing). */
	if (buf[0] < '0' || buf[0] > '9' || memchr(buf, '\0', len) != NULL)
		return -1;
	return util_parse_int64(buf, 0, INT64_MAX, out);
}

static int
bus_batch_add(void *arg, int64_t seq, const char *topic, const char *json,
    size_t len)
{
	struct bus_batch *bt = arg;
	size_t tlen = strlen(topic);

	if (bt->n + 2 > bt->cap) {
		bt->cap = bt->cap ? bt->cap * 2 : 64;
		bt->msgs = xreallocarray(bt->msgs, bt->cap, sizeof *bt->msgs);
	}
	if (zmq_msg_init_size(&bt->msgs[bt->n], tlen) != 0)
		return -1;
	if (zmq_msg_init_size(&bt->msgs[bt->n + 1], len) != 0) {
		zmq_msg_close(&bt->msgs[bt->n]);
		return -1;
	}
	memcpy(zmq_msg_data(&bt->msgs[bt->n]), topic, tlen);
	memcpy(zmq_msg_data(&bt->msgs[bt->n + 1]), json, len);
	bt->n += 2;
	bt->bytes += tlen + len;
	return bt->bytes >= bt->max;	/* a batch cap in bytes too */
}

/* Send route frames (identity [, empty]) then the given short frames. */
static int
bus_send_route(struct bus *b, zmq_msg_t *route, size_t nroute,
    const char **parts, size_t nparts, int more_after)
{
	zmq_msg_t copy;
	size_t i;
	int rc = 0;

	/* Every frame is sent even after a failure, so a half-sent message
	 * never swallows the next one. */
	for (i = 0; i < nroute; i++) {
		if (zmq_msg_init(&copy) != 0)
			return -1;
		if (zmq_msg_copy(&copy, &route[i]) != 0 ||
		    zmq_msg_send(&copy, b->replay, ZMQ_SNDMORE |
		    ZMQ_DONTWAIT) < 0)
			rc = -1;
		zmq_msg_close(&copy);
	}
	for (i = 0; i < nparts; i++) {
		if (zmq_send(b->replay, parts[i], strlen(parts[i]),
		    ZMQ_DONTWAIT | (i + 1 < nparts || more_after ?
		    ZMQ_SNDMORE : 0)) < 0)
			rc = -1;
	}
	return rc;
}

static void
bus_replay_error(struct bus *b, zmq_msg_t *route, size_t nroute,
    const char *reason)
{
	const char *parts[] = { "ERROR", reason };

	metric_inc(&b->m->replay_error);
	log_debug("replay_error", "reason=\"%s\"", reason);
	if (bus_send_route(b, route, nroute, parts, 2, 0) != 0)
		log_debug("replay_reply_dropped", "error=\"%s\"",
		    zmq_strerror(errno));
}

/* Validate a REPLAY request; NULL when good, else the ERROR reason. */
static const char *
bus_parse_replay(zmq_msg_t *body, size_t n, size_t total, int64_t *from,
    int64_t *max, char *prefix)
{
	size_t plen;

	prefix[0] = '\0';
	if (n == 0 || !bus_frame_is(&body[0], "REPLAY"))
		return "unknown command (expected REPLAY)";
	if (total > n || n < 3 || n > 4)
		return "expected REPLAY, from_seq, max_count[, topic prefix]";
	if (bus_frame_int(&body[1], from) != 0)
		return "from_seq is not a decimal number";
	if (bus_frame_int(&body[2], max) != 0)
		return "max_count is not a decimal number";
	if (n == 4) {
		plen = zmq_msg_size(&body[3]);
		if (plen > BUS_PREFIX_MAX ||
		    memchr(zmq_msg_data(&body[3]), '\0', plen) != NULL)
			return "topic prefix too long or not text";
		memcpy(prefix, zmq_msg_data(&body[3]), plen);
		prefix[plen] = '\0';
	}
	return NULL;
}

static void
bus_replay_answer(struct bus *b, zmq_msg_t *route, size_t nroute,
    int64_t from, int64_t max, const char *prefix)
{
	struct bus_batch bt;
	char *cause = NULL, head_s[24], count_s[24];
	const char *parts[3];
	int64_t head = 0, upto;
	size_t i, want = max > (int64_t)b->batch_max ? b->batch_max :
	    (size_t)max;
	int rc = 0;

	memset(&bt, 0, sizeof bt);
	bt.max = BUS_REPLAY_BYTES_MAX;
	if (b->reader == NULL &&
	    (b->reader = journal_reader_open(b->journal_dir, &cause)) == NULL) {
		log_warn("replay_reader_open_failed", "error=\"%s\"", cause);
		free(cause);
		bus_replay_error(b, route, nroute, "journal unavailable");
		return;
	}
	/* Only seqs known durable: what was on disk at start and what the
	 * live feed has carried since (the publisher hands over nothing
	 * before its fsync). A committed seq not yet synced could be lost in
	 * a power cut and given again to another event. */
	upto = atomic_load(&b->sent_seq);
	if (upto < b->durable_seq)
		upto = b->durable_seq;
	if (journal_reader_range(b->reader, from < 1 ? 1 : from, upto, want,
	    prefix, bus_batch_add, &bt, &head, &cause) != 0) {
		log_warn("replay_read_failed", "error=\"%s\"", cause);
		free(cause);
		journal_reader_free(b->reader);
		b->reader = NULL;
		bus_close_frames(bt.msgs, bt.n);
		free(bt.msgs);
		bus_replay_error(b, route, nroute, "journal unavailable");
		return;
	}
	xsnprintf(head_s, sizeof head_s, "%lld", (long long)head);
	xsnprintf(count_s, sizeof count_s, "%zu", bt.n / 2);
	parts[0] = "BATCH";
	parts[1] = head_s;
	parts[2] = count_s;
	metric_inc(&b->m->replay_ok);
	/* A full or vanished peer drops the reply (ROUTER_MANDATORY off). */
	rc = bus_send_route(b, route, nroute, parts, 3, bt.n > 0);
	for (i = 0; i < bt.n; i++) {
		if (zmq_msg_send(&bt.msgs[i], b->replay,
		    ZMQ_DONTWAIT | (i + 1 < bt.n ? ZMQ_SNDMORE : 0)) < 0)
			rc = -1;
		zmq_msg_close(&bt.msgs[i]);
	}
	free(bt.msgs);
	if (rc != 0)
		log_debug("replay_reply_dropped", "error=\"%s\"",
		    zmq_strerror(errno));
}

/* One request: identity, optional empty delimiter (REQ), then the body. */
int
bus_handle_replay_one(struct bus *b)
{
	zmq_msg_t f[BUS_REQ_FRAMES];
	char prefix[BUS_PREFIX_MAX + 1];
	const char *why;
	size_t n, total, nroute;
	int64_t from, max;

	if ((n = bus_recv_frames(b->replay, f, BUS_REQ_FRAMES, &total)) == 0)
		return 0;
	nroute = n > 1 && zmq_msg_size(&f[1]) == 0 ? 2 : 1;
	why = bus_parse_replay(f + nroute, n - nroute, total - nroute, &from,
	    &max, prefix);
	if (why != NULL)
		bus_replay_error(b, f, nroute, why);
	else
		bus_replay_answer(b, f, nroute, from, max, prefix);
	bus_close_frames(f, n);
	return 1;
}

