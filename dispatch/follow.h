/*
 * follow.h: a reliable consumer of payhook's ZeroMQ endpoints
 * (docs/consumers.md), shared by `payhook tail` and `payhook audit`. It
 * subscribes first, replays from a seq, merges with the live feed with no
 * gap and no duplicate at the seam, detects loss from seq jumps and
 * heartbeats and fills it from replay. Events reach the owner through a
 * callback, strictly in seq order. One thread: the one that created it.
 */
#ifndef PAYHOOK_FOLLOW_H
#define PAYHOOK_FOLLOW_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define FOLLOW_Z85_LEN		40	/* CURVE keys in Z85 */

/* CURVE client keys; zero them (explicit_bzero) when done. */
struct follow_curve {
	char		 server_pub[FOLLOW_Z85_LEN + 1];
	char		 pub[FOLLOW_Z85_LEN + 1];
	char		 sec[FOLLOW_Z85_LEN + 1];
};

/* Called with each event (its exact JSON bytes) in seq order. Return 0 to
 * take it, 1 to take it and stop, -1 to refuse it and stop (the event is
 * not counted as taken: follow_next_seq() stays at seq). */
typedef int (*follow_event_cb)(void *arg, int64_t seq, const char *json,
	    size_t len);

struct follow_config {
	const char	*name;		/* prefix of messages: "payhook tail" */
	const char	*feed_ep;	/* live feed; NULL: replay only */
	const char	*replay_ep;
	const char	*prefix;	/* topic prefix; NULL or "": all */
	const struct follow_curve *curve;	/* NULL: plain */
	int64_t		 from;		/* first seq wanted; 0: the live tail */
	/* 0: a gap replay cannot fill is reported (follow_status() 1) and
	 * skipped, as `tail` does. 1: never deliver past a gap; retry on the
	 * next heartbeat or event instead (`audit`). */
	int		 strict;
	volatile sig_atomic_t *stop;	/* set by a signal handler; may be NULL */
	follow_event_cb	 cb;
	void		*arg;
};

/* What tail and audit connect to unless told otherwise: the defaults of
 * payhook serve's publish_endpoint and replay_endpoint. */
#define FOLLOW_FEED_DEFAULT	"tcp://127.0.0.1:5556"
#define FOLLOW_REPLAY_DEFAULT	"tcp://127.0.0.1:5557"

/* A command's non-negative number option (tail, audit): 0, or -1 after
 * printing "PROG: --NAME needs a non-negative number" on stderr
 * (NAME: the long option without its dashes). */
int	follow_int_opt(const char *prog, const char *name, const char *arg,
	    int64_t *out);

/* Fill *c from a Z85 server key and our secret key file. Returns 1 when
 * neither is given (plain), 0 when loaded, -1 + cause when wrong. */
int	follow_curve_load(struct follow_curve *c, const char *server_key,
	    const char *secret_file, char **cause);

/* Connect (SUB subscribed first, then DEALER). The config's strings must
 * outlive the follower. NULL + cause when a socket cannot be set up. */
struct follow *follow_new(const struct follow_config *, char **cause);
/* Close the sockets and the context. NULL: no-op. */
void	follow_free(struct follow *);

/* Replay from the next seq until the journal has nothing more. 0 caught
 * up; -1 replay failed (or the callback/stop flag stopped it). */
int	follow_catch_up(struct follow *);
/* Wait up to timeout_ms for one feed message and handle it (filling a gap
 * first). 1 handled one, 0 nothing came, -1 stopped. */
int	follow_poll(struct follow *, int timeout_ms);

/* Next seq the callback will be offered; 0 before the live tail is known. */
int64_t	follow_next_seq(const struct follow *);
/* Highest head_seq heard from heartbeats or replay. */
int64_t	follow_head(const struct follow *);
/* True when everything the service has announced has been offered. */
int	follow_caught_up(const struct follow *);
/* True once the callback or the stop flag asked to stop. */
int	follow_stopped(const struct follow *);
/* 1 when a gap could not be filled (non-strict mode), else 0. */
int	follow_status(const struct follow *);
/* Monotonic ms of the last event offered (or of follow_new). */
int64_t	follow_last_event_ms(const struct follow *);

#endif
