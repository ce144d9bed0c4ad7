/*
 * bus_int.h: the bus thread's state, shared by bus.c (sockets, feed, ZAP,
 * the loop) and bus_replay.c (replay requests). Not for use outside
 * dispatch/bus*.c. Bus thread only, except the fields marked otherwise.
 */
#ifndef PAYHOOK_BUS_INT_H
#define PAYHOOK_BUS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "dispatch/bus.h"

/* DRAFT in 4.3.4's zmq.h but handled by the stable library (ZEROMQ.md §3). */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN	93
#endif

#define BUS_ZAP_ENDPOINT	"inproc://zeromq.zap.01"
#define BUS_ZAP_DOMAIN		"payhook"
#define BUS_LINGER_MS		1000
#define BUS_FEED_HWM		1000	/* per subscriber; past it, drops */
#define BUS_REPLAY_HWM		64	/* replies queued per replay client */
#define BUS_PIPE_HWM		10000	/* events handed over, not yet sent */
#define BUS_MAXMSGSIZE		4096	/* largest inbound replay frame */
#define BUS_ZMTP_HB_IVL		5000
#define BUS_ZMTP_HB_TIMEOUT	15000
#define BUS_PIPE_BURST		2048	/* pipe messages per poll pass */
#define BUS_REPLAY_BURST	8	/* replay requests per poll pass */
#define BUS_ZAP_BURST		64
#define BUS_SUB_BURST		1024
#define BUS_REPLAY_BYTES_MAX	(16 * 1024 * 1024)
#define BUS_REQ_FRAMES		8	/* identity, delimiter, 4 + slack */
#define BUS_PREFIX_MAX		(JOURNAL_KEY_MAX - 1)

struct bus {
	void		*ctx;
	void		*pipe_main;		/* main thread's PAIR end */
	char		 pipe_ep[64];
	pthread_t	 thread;
	int		 started;

	char		*feed_cfg, *replay_cfg, *journal_dir;
	char		 curve_secret[BUS_Z85_KEY_LEN + 1];
	int		 curve;
	char	       **clients;
	size_t		 nclients;
	int		 heartbeat_ms;
	size_t		 batch_max;
	bus_sent_fn	 sent_cb;
	void		*cb_arg;
	struct bus_metrics *m;
	struct bus_metrics m_none;

	char		 feed_ep[256], replay_ep[256];
	pthread_mutex_t	 lock;			/* start-up handshake */
	pthread_cond_t	 cond;
	int		 state;			/* 0 starting, 1 up, -1 failed */
	char		*cause;
	atomic_int	 running;
	atomic_int	 stop;
	_Atomic int64_t	 sent_seq;
	int64_t		 durable_seq;		/* at start (bus_config) */

	/* Bus thread only. */
	void		*feed, *replay, *zap, *pipe;
	struct journal_reader *reader;
	int64_t		 next_hb;
};

int	bus_frame_is(zmq_msg_t *m, const char *s);
/* Answer one pending replay request; 0 when none was waiting. */
int	bus_handle_replay_one(struct bus *b);

#endif
