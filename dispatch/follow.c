/*
 * follow.c: the reliable consumer behind `payhook tail` and `payhook audit`
 * (docs/consumers.md, "The algorithm"): SUB subscribed before anything
 * else, DEALER for replay, events offered to the owner's callback strictly
 * in seq order. Runs on the thread that created it (it owns its ZeroMQ
 * context and sockets); it never offers a seq twice or out of order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zmq.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/bus.h"
#include "dispatch/follow.h"
#include "dispatch/publisher.h"

#define FOLLOW_BATCH		1000	/* events asked per REPLAY */
#define FOLLOW_REPLAY_TIMEOUT_MS 3000
#define FOLLOW_REPLAY_TRIES	5
#define FOLLOW_RCVHWM		100000
#define FOLLOW_FRAMES_MAX	(4 + 2 * FOLLOW_BATCH)

struct follow {
	struct follow_config cfg;
	struct follow_curve curve;
	int		 use_curve;
	void		*ctx, *sub, *dealer;
	int64_t		 pos;		/* next seq wanted; 0: not started */
	int64_t		 head;		/* highest head_seq heard */
	int		 heard;		/* the service answered at least once */
	int		 stopped;
	int		 status;
	int64_t		 last_ms;
	zmq_msg_t	 frames[FOLLOW_FRAMES_MAX];
};

int
follow_int_opt(const char *prog, const char *name, const char *arg,
    int64_t *out)
{
	if (util_parse_int64(arg, 0, INT64_MAX / 2, out) != 0) {
		fprintf(stderr, "%s: --%s needs a non-negative number\n", prog,
		    name);
		return -1;
	}
	return 0;
}

int
follow_curve_load(struct follow_curve *c, const char *server_key,
    const char *secret_file, char **cause)
{
	char *why = NULL;

	memset(c, 0, sizeof *c);
	if (server_key == NULL && secret_file == NULL)
		return 1;
	if (server_key == NULL || secret_file == NULL) {
		*cause = xstrdup("--curve-server-key and "
		    "--curve-secret-key-file go together");
		return -1;
	}
	if (strlen(server_key) != FOLLOW_Z85_LEN) {
		*cause = xstrdup("--curve-server-key is not a 40-character "
		    "Z85 key");
		return -1;
	}
	memcpy(c->server_pub, server_key, FOLLOW_Z85_LEN + 1);
	if (publisher_read_key_file(secret_file, c->sec, &why) != 0 ||
	    zmq_curve_public(c->pub, c->sec) != 0) {
		*cause = xasprintf("--curve-secret-key-file %s: %s",
		    secret_file, why != NULL ? why : "bad key");
		free(why);
		explicit_bzero(c, sizeof *c);
		return -1;
	}
	return 0;
}

static int
follow_setopt(void *s, int opt, int v)
{
	return zmq_setsockopt(s, opt, &v, sizeof v);
}

static int
follow_sock_curve(struct follow *f, void *s)
{
	if (!f->use_curve)
		return 0;
	if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, f->curve.server_pub,
	    FOLLOW_Z85_LEN + 1) != 0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, f->curve.pub,
	    FOLLOW_Z85_LEN + 1) != 0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, f->curve.sec,
	    FOLLOW_Z85_LEN + 1) != 0)
		return -1;
	return 0;
}

/* (Re)open the DEALER: a fresh socket discards any late answer. */
static int
follow_open_dealer(struct follow *f, char **cause)
{
	if (f->dealer != NULL)
		zmq_close(f->dealer);
	if ((f->dealer = zmq_socket(f->ctx, ZMQ_DEALER)) == NULL ||
	    follow_setopt(f->dealer, ZMQ_LINGER, 0) != 0 ||
	    follow_setopt(f->dealer, ZMQ_SNDTIMEO, 1000) != 0 ||
	    follow_sock_curve(f, f->dealer) != 0 ||
	    zmq_connect(f->dealer, f->cfg.replay_ep) != 0) {
		*cause = xasprintf("replay %s: %s", f->cfg.replay_ep,
		    zmq_strerror(errno));
		return -1;
	}
	return 0;
}

static int
follow_open_sub(struct follow *f)
{
	const char *prefix = f->cfg.prefix;

	if ((f->sub = zmq_socket(f->ctx, ZMQ_SUB)) == NULL ||
	    follow_setopt(f->sub, ZMQ_LINGER, 0) != 0 ||
	    follow_setopt(f->sub, ZMQ_RCVHWM, FOLLOW_RCVHWM) != 0 ||
	    follow_sock_curve(f, f->sub) != 0 ||
	    zmq_setsockopt(f->sub, ZMQ_SUBSCRIBE, "heartbeat", 9) != 0 ||
	    zmq_setsockopt(f->sub, ZMQ_SUBSCRIBE, prefix, strlen(prefix)) != 0 ||
	    zmq_connect(f->sub, f->cfg.feed_ep) != 0)
		return -1;
	return 0;
}

struct follow *
follow_new(const struct follow_config *cfg, char **cause)
{
	struct follow *f = xcalloc(1, sizeof *f);

	f->cfg = *cfg;
	if (f->cfg.prefix == NULL)
		f->cfg.prefix = "";
	if (f->cfg.name == NULL)
		f->cfg.name = "payhook";
	if (cfg->curve != NULL) {
		f->curve = *cfg->curve;
		f->use_curve = 1;
	}
	f->cfg.curve = NULL;
	f->pos = cfg->from;
	f->last_ms = util_mono_ms();
	if ((f->ctx = zmq_ctx_new()) == NULL) {
		*cause = xasprintf("zmq_ctx_new: %s", zmq_strerror(errno));
		goto fail;
	}
	if (f->cfg.feed_ep != NULL && follow_open_sub(f) != 0) {
		*cause = xasprintf("feed %s: %s", f->cfg.feed_ep,
		    zmq_strerror(errno));
		goto fail;
	}
	if (follow_open_dealer(f, cause) != 0)
		goto fail;
	return f;
fail:
	follow_free(f);
	return NULL;
}

void
follow_free(struct follow *f)
{
	if (f == NULL)
		return;
	if (f->dealer != NULL)
		zmq_close(f->dealer);
	if (f->sub != NULL)
		zmq_close(f->sub);
	if (f->ctx != NULL)
		zmq_ctx_term(f->ctx);
	explicit_bzero(&f->curve, sizeof f->curve);
	free(f);
}

static int
follow_should_stop(const struct follow *f)
{
	return f->stopped || (f->cfg.stop != NULL && *f->cfg.stop);
}

/* The number under key in a JSON object; -1 when absent or not one. */
static int64_t
follow_int_of(const char *json, size_t len, const char *key)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *v;
	int64_t n = -1;

	if (root == NULL)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(root, key);
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 &&
	    v->valuedouble < 9007199254740992.0)
		n = (int64_t)v->valuedouble;
	cJSON_Delete(root);
	return n;
}

/* Offer one event to the owner. */
static void
follow_deliver(struct follow *f, int64_t seq, const char *json, size_t len)
{
	int rc = f->cfg.cb(f->cfg.arg, seq, json, len);

	if (rc >= 0) {
		f->pos = seq + 1;
		f->last_ms = util_mono_ms();
	}
	if (rc != 0)
		f->stopped = 1;
}

/* One multipart message into fr (at most max frames kept), waiting up to
 * timeout_ms for it. */
static int
follow_recv(void *s, zmq_msg_t *fr, int max, int timeout_ms)
{
	zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
	size_t total;

	if (zmq_poll(&it, 1, timeout_ms) <= 0)
		return 0;
	return (int)bus_recv_frames(s, fr, (size_t)max, &total);
}

static int64_t
follow_frame_int(zmq_msg_t *m)
{
	char buf[24];
	int64_t v;
	size_t len = zmq_msg_size(m);

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, zmq_msg_data(m), len);
	buf[len] = '\0';
	return util_parse_int64(buf, 0, INT64_MAX, &v) == 0 ? v : -1;
}

static int
follow_frame_is(zmq_msg_t *m, const char *s)
{
	size_t len = strlen(s);

	return zmq_msg_size(m) == len && memcmp(zmq_msg_data(m), s, len) == 0;
}

/* Offer the events of one BATCH (frames fr[4..n)). */
static void
follow_batch(struct follow *f, zmq_msg_t *fr, int count)
{
	int i;
	int64_t seq;

	for (i = 0; i < count && !follow_should_stop(f); i++) {
		zmq_msg_t *json = &fr[5 + 2 * i];

		seq = follow_int_of(zmq_msg_data(json), zmq_msg_size(json),
		    "seq");
		if (seq < f->pos)
			continue;
		if (seq > f->pos && f->cfg.prefix[0] == '\0' && !f->cfg.strict)
			fprintf(stderr, "%s: seq %lld..%lld are no longer in "
			    "the journal\n", f->cfg.name, (long long)f->pos,
			    (long long)seq - 1);
		follow_deliver(f, seq, zmq_msg_data(json), zmq_msg_size(json));
	}
}

/* One REPLAY round trip from f->pos; the events are offered. Returns the
 * number of events in the batch, or -1 (no answer / ERROR). */
static int
follow_replay_once(struct follow *f, int64_t *head)
{
	zmq_msg_t *fr = f->frames;
	char from[24], max[24];
	const char *req[5] = { "", "REPLAY", from, max, f->cfg.prefix };
	int i, n, nreq = f->cfg.prefix[0] ? 5 : 4, count, rc = -1;

	xsnprintf(from, sizeof from, "%lld", (long long)(f->pos > 0 ?
	    f->pos : 1));
	xsnprintf(max, sizeof max, "%d", FOLLOW_BATCH);
	for (i = 0; i < nreq; i++) {
		if (zmq_send(f->dealer, req[i], strlen(req[i]),
		    i + 1 < nreq ? ZMQ_SNDMORE : 0) < 0)
			return -1;
	}
	if ((n = follow_recv(f->dealer, fr, FOLLOW_FRAMES_MAX,
	    FOLLOW_REPLAY_TIMEOUT_MS)) == 0)
		return -1;
	if (n >= 3 && follow_frame_is(&fr[1], "ERROR")) {
		fprintf(stderr, "%s: replay refused: %.*s\n", f->cfg.name,
		    (int)zmq_msg_size(&fr[2]), (char *)zmq_msg_data(&fr[2]));
		goto out;
	}
	if (n < 4 || !follow_frame_is(&fr[1], "BATCH") ||
	    (*head = follow_frame_int(&fr[2])) < 0 ||
	    (count = (int)follow_frame_int(&fr[3])) < 0 ||
	    n != 4 + 2 * count) {
		fprintf(stderr, "%s: malformed replay answer\n", f->cfg.name);
		goto out;
	}
	f->heard = 1;
	if (*head > f->head)
		f->head = *head;
	follow_batch(f, fr, count);
	rc = count;
out:
	bus_close_frames(fr, (size_t)n);
	return rc;
}

int
follow_catch_up(struct follow *f)
{
	char *cause = NULL;
	int64_t head = 0;
	int got, tries = 0;

	if (f->pos == 0)
		f->pos = 1;
	while (!follow_should_stop(f)) {
		if ((got = follow_replay_once(f, &head)) < 0) {
			if (++tries >= FOLLOW_REPLAY_TRIES) {
				fprintf(stderr, "%s: replay from %lld failed%s\n",
				    f->cfg.name, (long long)f->pos,
				    f->cfg.strict ? "; will retry" :
				    "; continuing with a gap");
				if (!f->cfg.strict)
					f->status = 1;
				return -1;
			}
			if (follow_open_dealer(f, &cause) != 0) {
				fprintf(stderr, "%s: %s\n", f->cfg.name, cause);
				free(cause);
				return -1;	/* cannot even reconnect */
			}	/* a fresh DEALER drops late answers */
			continue;
		}
		tries = 0;
		/* Without a prefix the batch is complete once it reaches the
		 * head (a batch may also be cut short by a byte cap); with
		 * one, only an empty batch says nothing matching is left. */
		if (got > 0 && (f->cfg.prefix[0] != '\0' || f->pos <= head))
			continue;
		if (f->pos <= head && !f->cfg.strict)
			f->pos = head + 1;
		return follow_should_stop(f) ? -1 : 0;
	}
	return -1;
}

static void
follow_on_message(struct follow *f, zmq_msg_t *fr, int n)
{
	int64_t seq;

	if (n != 2)
		return;
	if (follow_frame_is(&fr[0], "heartbeat")) {
		seq = follow_int_of(zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]),
		    "head_seq");
		if (seq < 0)
			return;
		f->heard = 1;
		if (seq > f->head)
			f->head = seq;
		if (f->pos == 0)
			f->pos = seq + 1;	/* start at the live tail */
		else if (seq >= f->pos)
			(void)follow_catch_up(f);	/* loss at the tail */
		return;
	}
	if ((seq = follow_int_of(zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]),
	    "seq")) < 1)
		return;
	f->heard = 1;
	if (f->pos == 0)
		f->pos = seq;
	if (seq > f->pos)
		(void)follow_catch_up(f);	/* a gap: fill it first */
	if (follow_should_stop(f))
		return;
	/* Strict: past a gap that is still open, wait for replay. */
	if (seq == f->pos || (seq > f->pos && !f->cfg.strict))
		follow_deliver(f, seq, zmq_msg_data(&fr[1]),
		    zmq_msg_size(&fr[1]));
}

int
follow_poll(struct follow *f, int timeout_ms)
{
	zmq_msg_t fr[2];
	int n;

	if (follow_should_stop(f))
		return -1;
	if (f->sub == NULL)
		return 0;
	if ((n = follow_recv(f->sub, fr, 2, timeout_ms)) == 0)
		return follow_should_stop(f) ? -1 : 0;
	follow_on_message(f, fr, n);
	bus_close_frames(fr, (size_t)n);
	return follow_should_stop(f) ? -1 : 1;
}

int64_t
follow_next_seq(const struct follow *f)
{
	return f->pos;
}

int64_t
follow_head(const struct follow *f)
{
	return f->head;
}

int
follow_caught_up(const struct follow *f)
{
	return f->heard && f->pos > 0 && f->pos > f->head;
}

int
follow_stopped(const struct follow *f)
{
	return follow_should_stop(f);
}

int
follow_status(const struct follow *f)
{
	return f->status;
}

int64_t
follow_last_event_ms(const struct follow *f)
{
	return f->last_ms;
}
