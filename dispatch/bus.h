/*
 * bus.h: the bus thread. It owns every ZeroMQ socket of the service: the
 * XPUB live feed, the ROUTER replay endpoint (reading the journal through
 * its own read-only connection), the ZAP handler and the far end of the
 * inproc PAIR that the main thread hands events over. bus_new, bus_send
 * and bus_free are main-thread calls and never block on ZeroMQ; the sent
 * callback runs on the bus thread.
 */
#ifndef PAYHOOK_BUS_H
#define PAYHOOK_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "common/metrics.h"

#define BUS_HEARTBEAT_MS	1000	/* contract: at least every 2 s */
#define BUS_REPLAY_BATCH_MAX	1000	/* events per BATCH reply */
#define BUS_Z85_KEY_LEN		40	/* == PUBLISHER_Z85_KEY_LEN */

/* Bus thread: events up to seq are on the wire (coalesced, increasing). */
typedef void (*bus_sent_fn)(void *arg, int64_t upto_seq);

/* Counters the bus thread bumps (registered by the caller). */
struct bus_metrics {
	struct metric_counter	published_payment;
	struct metric_counter	published_alert;
	struct metric_counter	published_other;
	struct metric_counter	replay_ok;
	struct metric_counter	replay_error;
	struct metric_counter	zap_denied;
};

struct bus_config {
	const char	*feed_endpoint;		/* XPUB bind */
	const char	*replay_endpoint;	/* ROUTER bind */
	const char	*journal_dir;		/* replay reader */
	/* CURVE: the server's Z85 secret key and the admitted Z85 client
	 * public keys; curve_secret NULL means plain ZeroMQ. */
	const char	*curve_secret;
	char	       **curve_clients;
	size_t		 ncurve_clients;
	int64_t		 head_seq;		/* highest seq already sent */
	int64_t		 durable_seq;		/* seqs up to here are on disk:
						   replay serves them, and
						   later ones once sent */
	int		 heartbeat_ms;		/* 0: BUS_HEARTBEAT_MS */
	size_t		 replay_batch_max;	/* 0: BUS_REPLAY_BATCH_MAX */
	bus_sent_fn	 sent_cb;
	void		*cb_arg;
	struct bus_metrics *metrics;		/* may be NULL */
};

struct bus;

/* Start the thread, bind everything (ZAP first) and wait until it is bound.
 * NULL and *cause when a bind or option fails. Main thread. */
struct bus *bus_new(const struct bus_config *, char **cause);
/* Stop after everything already handed over is sent; join; free. */
void	bus_free(struct bus *);
/* Hand one event over (copied), never blocking: 0 queued, 1 the pipe is
 * full (try again after the next sent callback), -1 the bus is gone. */
int	bus_send(struct bus *, int64_t seq, const char *topic,
	    const char *json, size_t len);
/* The endpoints actually bound (ZMQ_LAST_ENDPOINT). */
const char *bus_feed_endpoint(const struct bus *);
const char *bus_replay_endpoint(const struct bus *);
/* 1 while the thread runs its loop. Any thread. */
int	bus_running(const struct bus *);
/* Highest seq sent on the live feed. Any thread. */
int64_t	bus_sent_seq(const struct bus *);

/* ZeroMQ helpers for any socket, on the thread that owns it (the bus and
 * the consumers' follower share them). Receive one multipart message that
 * has arrived into f, without waiting (at most max parts, the rest
 * drained); *total gets the real number of parts. Returns the parts kept. */
size_t	bus_recv_frames(void *s, zmq_msg_t *f, size_t max, size_t *total);
void	bus_close_frames(zmq_msg_t *f, size_t n);

#endif
