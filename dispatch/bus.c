/*
 * bus.c: the bus thread (DESIGN.md "Threads"). It owns every ZeroMQ socket:
 * the XPUB live feed, the ROUTER replay endpoint, the ZAP handler and the
 * bus end of the inproc PAIR from the main thread, and loops on zmq_poll.
 * Replay reads the journal through its own read-only connection. It must
 * never call libevent, never block on a peer (every send is DONTWAIT, every
 * socket has LINGER and SNDTIMEO set) and never do unbounded work per poll.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/bus.h"
#include "dispatch/bus_int.h"
#include "journal/journal.h"

static int
bus_setopt_int(void *s, int opt, int v, const char *name, char **cause)
{
	if (zmq_setsockopt(s, opt, &v, sizeof v) != 0) {
		*cause = xasprintf("zmq_setsockopt %s: %s", name,
		    zmq_strerror(errno));
		return -1;
	}
	return 0;
}

/* LINGER and SNDTIMEO on every socket; CURVE + ZAP before any bind. */
static int
bus_common_opts(struct bus *b, void *s, int curve, char **cause)
{
	if (bus_setopt_int(s, ZMQ_LINGER, BUS_LINGER_MS, "LINGER", cause) ||
	    bus_setopt_int(s, ZMQ_SNDTIMEO, 0, "SNDTIMEO", cause))
		return -1;
	if (!curve)
		return 0;
	if (bus_setopt_int(s, ZMQ_CURVE_SERVER, 1, "CURVE_SERVER", cause) ||
	    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, b->curve_secret,
	    BUS_Z85_KEY_LEN + 1) != 0 ||
	    zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, BUS_ZAP_DOMAIN,
	    strlen(BUS_ZAP_DOMAIN)) != 0 ||
	    bus_setopt_int(s, ZMQ_ZAP_ENFORCE_DOMAIN, 1, "ZAP_ENFORCE_DOMAIN",
	    cause)) {
		if (*cause == NULL)
			*cause = xasprintf("CURVE options: %s",
			    zmq_strerror(errno));
		return -1;
	}
	return 0;
}

static int
bus_bind(void *s, const char *ep, char *out, size_t outlen, const char *key,
    char **cause)
{
	size_t len = outlen;

	if (zmq_bind(s, ep) != 0) {
		*cause = xasprintf("config: %s = \"%s\": cannot bind: %s", key,
		    ep, zmq_strerror(errno));
		return -1;
	}
	if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, out, &len) != 0) {
		*cause = xasprintf("%s: ZMQ_LAST_ENDPOINT: %s", key,
		    zmq_strerror(errno));
		return -1;
	}
	out[outlen - 1] = '\0';
	return 0;
}

static int
bus_open_sockets(struct bus *b, char **cause)
{
	if ((b->pipe = zmq_socket(b->ctx, ZMQ_PAIR)) == NULL ||
	    bus_setopt_int(b->pipe, ZMQ_LINGER, 0, "LINGER", cause) ||
	    bus_setopt_int(b->pipe, ZMQ_RCVHWM, BUS_PIPE_HWM, "RCVHWM", cause) ||
	    zmq_connect(b->pipe, b->pipe_ep) != 0)
		goto zerr;
	if (b->curve) {
		/* The handler is bound before any CURVE socket (ZEROMQ.md §6). */
		if ((b->zap = zmq_socket(b->ctx, ZMQ_REP)) == NULL ||
		    bus_setopt_int(b->zap, ZMQ_LINGER, 0, "LINGER", cause) ||
		    bus_setopt_int(b->zap, ZMQ_SNDTIMEO, 0, "SNDTIMEO", cause) ||
		    zmq_bind(b->zap, BUS_ZAP_ENDPOINT) != 0)
			goto zerr;
	}
	if ((b->feed = zmq_socket(b->ctx, ZMQ_XPUB)) == NULL ||
	    bus_common_opts(b, b->feed, b->curve, cause) ||
	    bus_setopt_int(b->feed, ZMQ_SNDHWM, BUS_FEED_HWM, "SNDHWM", cause) ||
	    bus_setopt_int(b->feed, ZMQ_XPUB_NODROP, 0, "XPUB_NODROP", cause) ||
	    bus_setopt_int(b->feed, ZMQ_TCP_KEEPALIVE, 1, "KEEPALIVE", cause) ||
	    bus_setopt_int(b->feed, ZMQ_HEARTBEAT_IVL, BUS_ZMTP_HB_IVL, "HB",
	    cause) || bus_setopt_int(b->feed, ZMQ_HEARTBEAT_TIMEOUT,
	    BUS_ZMTP_HB_TIMEOUT, "HB_TIMEOUT", cause))
		goto zerr;
	if (bus_bind(b->feed, b->feed_cfg, b->feed_ep, sizeof b->feed_ep,
	    "publish_endpoint", cause) != 0)
		return -1;
	if ((b->replay = zmq_socket(b->ctx, ZMQ_ROUTER)) == NULL ||
	    bus_common_opts(b, b->replay, b->curve, cause) ||
	    bus_setopt_int(b->replay, ZMQ_ROUTER_MANDATORY, 0, "MANDATORY",
	    cause) ||
	    bus_setopt_int(b->replay, ZMQ_SNDHWM, BUS_REPLAY_HWM, "SNDHWM",
	    cause) ||
	    bus_setopt_int(b->replay, ZMQ_RCVHWM, BUS_REPLAY_HWM, "RCVHWM",
	    cause) ||
	    bus_setopt_int(b->replay, ZMQ_TCP_KEEPALIVE, 1, "KEEPALIVE",
	    cause) ||
	    bus_setopt_int(b->replay, ZMQ_HEARTBEAT_IVL, BUS_ZMTP_HB_IVL, "HB",
	    cause) || bus_setopt_int(b->replay, ZMQ_HEARTBEAT_TIMEOUT,
	    BUS_ZMTP_HB_TIMEOUT, "HB_TIMEOUT", cause))
		goto zerr;
	{
		int64_t max = BUS_MAXMSGSIZE;

		if (zmq_setsockopt(b->replay, ZMQ_MAXMSGSIZE, &max,
		    sizeof max) != 0)
			goto zerr;
	}
	return bus_bind(b->replay, b->replay_cfg, b->replay_ep,
	    sizeof b->replay_ep, "replay_endpoint", cause);
zerr:
	if (*cause == NULL)
		*cause = xasprintf("zmq: %s", zmq_strerror(errno));
	return -1;
}

static void
bus_close_sockets(struct bus *b)
{
	void **socks[] = { &b->feed, &b->replay, &b->zap, &b->pipe };
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(socks); i++) {
		if (*socks[i] != NULL && zmq_close(*socks[i]) != 0)
			log_warn("zmq_close_failed", "error=\"%s\"",
			    zmq_strerror(errno));
		*socks[i] = NULL;
	}
	journal_reader_free(b->reader);
	b->reader = NULL;
}

/* Receive the rest of a multipart message and throw it away. */
static void
bus_drain_more(void *s)
{
	zmq_msg_t m;
	int more;
	size_t len = sizeof more;

	for (;;) {
		if (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &len) != 0 || !more)
			return;
		if (zmq_msg_init(&m) != 0)
			return;
		if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			return;
		}
		zmq_msg_close(&m);
	}
}

static void
bus_count(struct bus *b, const char *topic, size_t len)
{
	if (len >= 8 && memcmp(topic, "payment.", 8) == 0)
		metric_inc(&b->m->published_payment);
	else if (len >= 6 && memcmp(topic, "alert.", 6) == 0)
		metric_inc(&b->m->published_alert);
	else
		metric_inc(&b->m->published_other);
}

/* Forward one handed-over event (topic, json) to the live feed. */
static void
bus_forward(struct bus *b, int64_t seq)
{
	zmq_msg_t topic, json;
	int ok = 0;

	if (zmq_msg_init(&topic) != 0)
		return;
	if (zmq_msg_init(&json) != 0) {
		zmq_msg_close(&topic);
		return;
	}
	if (zmq_msg_recv(&topic, b->pipe, ZMQ_DONTWAIT) >= 0 &&
	    zmq_msg_more(&topic) &&
	    zmq_msg_recv(&json, b->pipe, ZMQ_DONTWAIT) >= 0 &&
	    !zmq_msg_more(&json)) {
		bus_count(b, zmq_msg_data(&topic), zmq_msg_size(&topic));
		/* XPUB without NODROP never blocks: a full peer drops. */
		if (zmq_msg_send(&topic, b->feed, ZMQ_SNDMORE | ZMQ_DONTWAIT)
		    < 0 || zmq_msg_send(&json, b->feed, ZMQ_DONTWAIT) < 0)
			log_warn("feed_send_failed", "seq=%lld error=\"%s\"",
			    (long long)seq, zmq_strerror(errno));
		ok = 1;
	} else
		bus_drain_more(b->pipe);
	zmq_msg_close(&json);
	zmq_msg_close(&topic);
	if (ok && seq > atomic_load(&b->sent_seq))
		atomic_store(&b->sent_seq, seq);
}

/* Up to a burst of pipe messages; 1 when STOP arrived. */
static int
bus_handle_pipe(struct bus *b)
{
	zmq_msg_t head;
	unsigned char be[8];
	int64_t seq;
	size_t i, k;
	int stop = 0;

	for (i = 0; i < BUS_PIPE_BURST && !stop; i++) {
		if (zmq_msg_init(&head) != 0)
			break;
		if (zmq_msg_recv(&head, b->pipe, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&head);
			break;
		}
		if (zmq_msg_size(&head) == 8 && zmq_msg_more(&head)) {
			memcpy(be, zmq_msg_data(&head), 8);
			for (seq = 0, k = 0; k < 8; k++)
				seq = (int64_t)((uint64_t)seq << 8 | be[k]);
			zmq_msg_close(&head);
			bus_forward(b, seq);
			continue;
		}
		stop = zmq_msg_size(&head) == 4 &&
		    memcmp(zmq_msg_data(&head), "STOP", 4) == 0;
		zmq_msg_close(&head);
		bus_drain_more(b->pipe);
	}
	return stop;
}

static void
bus_heartbeat(struct bus *b)
{
	char json[96], now[40];
	static const char topic[] = "heartbeat";

	util_format_time_ms(util_now_ms(), now, sizeof now);
	xsnprintf(json, sizeof json, "{\"head_seq\":%lld,\"time\":\"%s\"}",
	    (long long)atomic_load(&b->sent_seq), now);
	if (zmq_send(b->feed, topic, sizeof topic - 1,
	    ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(b->feed, json, strlen(json), ZMQ_DONTWAIT) < 0)
		log_warn("heartbeat_failed", "error=\"%s\"",
		    zmq_strerror(errno));
}

/* Subscriptions arrive on the XPUB; drain them so they never pile up. */
static void
bus_handle_subs(struct bus *b)
{
	zmq_msg_t m;
	size_t i;

	for (i = 0; i < BUS_SUB_BURST; i++) {
		if (zmq_msg_init(&m) != 0)
			return;
		if (zmq_msg_recv(&m, b->feed, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			return;
		}
		if (zmq_msg_size(&m) > 0 && log_enabled(LOG_DEBUG))
			log_debug("feed_subscription", "subscribe=%d bytes=%zu",
			    ((unsigned char *)zmq_msg_data(&m))[0] == 1,
			    zmq_msg_size(&m) - 1);
		zmq_msg_close(&m);
	}
}

/* Receive one whole multipart message; frames past max are counted only.
 * Returns the number of frames kept (0: nothing to read). */
static int
bus_client_known(struct bus *b, const char *z85)
{
	size_t i;

	for (i = 0; i < b->nclients; i++) {
		if (strcmp(b->clients[i], z85) == 0)
			return 1;
	}
	return 0;
}

/* One ZAP request (RFC 27): admit listed CURVE client keys only. */
static int
bus_handle_zap_one(struct bus *b)
{
	zmq_msg_t f[BUS_REQ_FRAMES];
	char z85[BUS_Z85_KEY_LEN + 1] = "", addr[64] = "";
	const char *status = "400", *text = "No access", *user = "";
	size_t n, total, alen;
	int rc = 0;

	if ((n = bus_recv_frames(b->zap, f, BUS_REQ_FRAMES, &total)) == 0)
		return 0;
	if (n == total && n == 7 && bus_frame_is(&f[0], "1.0") &&
	    bus_frame_is(&f[2], BUS_ZAP_DOMAIN) &&
	    bus_frame_is(&f[5], "CURVE") && zmq_msg_size(&f[6]) == 32 &&
	    zmq_z85_encode(z85, zmq_msg_data(&f[6]), 32) != NULL &&
	    bus_client_known(b, z85)) {
		status = "200";
		text = "OK";
		user = z85;
	}
	if (n >= 4) {
		alen = zmq_msg_size(&f[3]) < sizeof addr - 1 ?
		    zmq_msg_size(&f[3]) : sizeof addr - 1;
		memcpy(addr, zmq_msg_data(&f[3]), alen);
		addr[alen] = '\0';
	}
	if (status[0] != '2') {
		metric_inc(&b->m->zap_denied);
		log_warn("zap_denied", "address=%s key=%.8s", addr,
		    z85[0] ? z85 : "-");
	} else
		log_debug("zap_admitted", "address=%s key=%.8s", addr, z85);
	/* REP must answer every request, even a malformed one. */
	if (zmq_send(b->zap, "1.0", 3, ZMQ_SNDMORE) < 0 ||
	    (n >= 2 ? zmq_send(b->zap, zmq_msg_data(&f[1]),
	    zmq_msg_size(&f[1]), ZMQ_SNDMORE) : zmq_send(b->zap, "", 0,
	    ZMQ_SNDMORE)) < 0 ||
	    zmq_send(b->zap, status, 3, ZMQ_SNDMORE) < 0 ||
	    zmq_send(b->zap, text, strlen(text), ZMQ_SNDMORE) < 0 ||
	    zmq_send(b->zap, user, strlen(user), ZMQ_SNDMORE) < 0 ||
	    zmq_send(b->zap, "", 0, 0) < 0)
		rc = -1;
	if (rc != 0)
		log_warn("zap_reply_failed", "error=\"%s\"",
		    zmq_strerror(errno));
	bus_close_frames(f, n);
	return 1;
}

static void
bus_loop(struct bus *b)
{
	zmq_pollitem_t items[4];
	int64_t now, last_sent = atomic_load(&b->sent_seq), sent;
	int i, n, rc, stop = 0;

	b->next_hb = util_mono_ms();
	while (!stop && !atomic_load(&b->stop)) {
		now = util_mono_ms();
		if (now >= b->next_hb) {
			bus_heartbeat(b);
			b->next_hb = now + b->heartbeat_ms;
		}
		memset(items, 0, sizeof items);
		items[0].socket = b->pipe;
		items[1].socket = b->feed;
		items[2].socket = b->replay;
		items[3].socket = b->zap;
		for (n = b->zap ? 4 : 3, i = 0; i < n; i++)
			items[i].events = ZMQ_POLLIN;
		rc = zmq_poll(items, n, (long)(b->next_hb - now));
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			log_error("bus_poll_failed", "error=\"%s\"",
			    zmq_strerror(errno));
			break;
		}
		/* ZAP first: handshakes wait on it. */
		for (i = 0; b->zap && (items[3].revents & ZMQ_POLLIN) &&
		    i < BUS_ZAP_BURST && bus_handle_zap_one(b); i++)
			;
		if (items[0].revents & ZMQ_POLLIN)
			stop = bus_handle_pipe(b);
		if (items[1].revents & ZMQ_POLLIN)
			bus_handle_subs(b);
		for (i = 0; (items[2].revents & ZMQ_POLLIN) &&
		    i < BUS_REPLAY_BURST && bus_handle_replay_one(b); i++)
			;
		sent = atomic_load(&b->sent_seq);
		if (sent > last_sent && b->sent_cb != NULL)
			b->sent_cb(b->cb_arg, sent);
		last_sent = sent;
	}
}

static void
bus_started(struct bus *b, int state, char *cause)
{
	pthread_mutex_lock(&b->lock);
	b->state = state;
	b->cause = cause;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void *
bus_main(void *arg)
{
	struct bus *b = arg;
	char *cause = NULL;

	util_thread_name("ph-bus");
	if (bus_open_sockets(b, &cause) != 0) {
		bus_close_sockets(b);
		bus_started(b, -1, cause);
		return NULL;
	}
	if ((b->reader = journal_reader_open(b->journal_dir, &cause)) == NULL) {
		/* Not fatal: replay answers ERROR and retries the open. */
		log_warn("replay_reader_open_failed", "error=\"%s\"", cause);
		free(cause);
	}
	atomic_store(&b->running, 1);
	bus_started(b, 1, NULL);
	bus_loop(b);
	atomic_store(&b->running, 0);
	bus_close_sockets(b);
	return NULL;
}

static void
bus_destroy(struct bus *b)
{
	size_t i;

	if (b->pipe_main != NULL)
		zmq_close(b->pipe_main);
	if (b->ctx != NULL && zmq_ctx_term(b->ctx) != 0)
		log_warn("zmq_ctx_term_failed", "error=\"%s\"",
		    zmq_strerror(errno));
	for (i = 0; i < b->nclients; i++)
		free(b->clients[i]);
	free(b->clients);
	free(b->feed_cfg);
	free(b->replay_cfg);
	free(b->journal_dir);
	free(b->cause);
	explicit_bzero(b->curve_secret, sizeof b->curve_secret);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b);
}

struct bus *
bus_new(const struct bus_config *bc, char **cause)
{
	struct bus *b = xcalloc(1, sizeof *b);
	size_t i;
	int linger = 0, hwm = BUS_PIPE_HWM;

	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->feed_cfg = xstrdup(bc->feed_endpoint);
	b->replay_cfg = xstrdup(bc->replay_endpoint);
	b->journal_dir = xstrdup(bc->journal_dir);
	if ((b->curve = bc->curve_secret != NULL))
		xsnprintf(b->curve_secret, sizeof b->curve_secret, "%s",
		    bc->curve_secret);
	b->clients = xcalloc(bc->ncurve_clients + 1, sizeof *b->clients);
	for (i = 0; i < bc->ncurve_clients; i++)
		b->clients[i] = xstrdup(bc->curve_clients[i]);
	b->nclients = bc->ncurve_clients;
	b->heartbeat_ms = bc->heartbeat_ms > 0 ? bc->heartbeat_ms :
	    BUS_HEARTBEAT_MS;
	b->batch_max = bc->replay_batch_max > 0 ? bc->replay_batch_max :
	    BUS_REPLAY_BATCH_MAX;
	b->sent_cb = bc->sent_cb;
	b->cb_arg = bc->cb_arg;
	b->m = bc->metrics != NULL ? bc->metrics : &b->m_none;
	atomic_store(&b->sent_seq, bc->head_seq);
	b->durable_seq = bc->durable_seq;
	xsnprintf(b->pipe_ep, sizeof b->pipe_ep, "inproc://payhook-bus-%p",
	    (void *)b);

	if ((b->ctx = zmq_ctx_new()) == NULL ||
	    (b->pipe_main = zmq_socket(b->ctx, ZMQ_PAIR)) == NULL ||
	    zmq_setsockopt(b->pipe_main, ZMQ_LINGER, &linger, sizeof linger) ||
	    zmq_setsockopt(b->pipe_main, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
	    zmq_bind(b->pipe_main, b->pipe_ep) != 0) {
		*cause = xasprintf("zmq: cannot set up the bus pipe: %s",
		    zmq_strerror(errno));
		bus_destroy(b);
		return NULL;
	}
	if (util_thread_start(&b->thread, bus_main, b) != 0) {
		*cause = xstrdup("cannot start the bus thread");
		bus_destroy(b);
		return NULL;
	}
	b->started = 1;
	pthread_mutex_lock(&b->lock);
	while (b->state == 0)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	if (b->state < 0) {
		pthread_join(b->thread, NULL);
		*cause = b->cause;
		b->cause = NULL;
		bus_destroy(b);
		return NULL;
	}
	log_debug("bus_started", "feed=%s replay=%s curve=%s", b->feed_ep,
	    b->replay_ep, b->curve ? "on" : "off");
	return b;
}

void
bus_free(struct bus *b)
{
	if (b == NULL)
		return;
	/* STOP goes behind every event already handed over; if the pipe is
	 * full the flag stops the loop within one heartbeat period. */
	if (zmq_send(b->pipe_main, "STOP", 4, ZMQ_DONTWAIT) < 0)
		atomic_store(&b->stop, 1);
	pthread_join(b->thread, NULL);
	bus_destroy(b);
}

int
bus_send(struct bus *b, int64_t seq, const char *topic, const char *json,
    size_t len)
{
	unsigned char be[8];
	int k;

	if (!atomic_load(&b->running))
		return -1;
	for (k = 7; k >= 0; k--) {
		be[k] = (unsigned char)(seq & 0xff);
		seq >>= 8;
	}
	if (zmq_send(b->pipe_main, be, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return errno == EAGAIN ? 1 : -1;
	/* Once the first frame is in, the rest of the message is too. */
	if (zmq_send(b->pipe_main, topic, strlen(topic), ZMQ_SNDMORE |
	    ZMQ_DONTWAIT) < 0 ||
	    zmq_send(b->pipe_main, json, len, ZMQ_DONTWAIT) < 0) {
		log_error("bus_send_failed", "error=\"%s\"",
		    zmq_strerror(errno));
		return -1;
	}
	return 0;
}

const char *
bus_feed_endpoint(const struct bus *b)
{
	return b->feed_ep;
}

const char *
bus_replay_endpoint(const struct bus *b)
{
	return b->replay_ep;
}

int
bus_running(const struct bus *b)
{
	return b != NULL && atomic_load(&((struct bus *)b)->running);
}

int64_t
bus_sent_seq(const struct bus *b)
{
	return atomic_load(&((struct bus *)b)->sent_seq);
}
