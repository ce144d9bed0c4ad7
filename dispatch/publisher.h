/*
 * publisher.h: the checked -> published stage. Normalises each checked (or
 * quarantined) row into a payhook.payment_event.v1, assigns its seq in the
 * journal and hands it to the bus thread, which owns every ZeroMQ socket
 * (live feed, replay, ZAP). Rows are marked published once the bus thread
 * has sent them. Main-thread API; the bus thread lives in bus.c.
 */
#ifndef PAYHOOK_PUBLISHER_H
#define PAYHOOK_PUBLISHER_H

#include <stddef.h>

#define PUBLISHER_Z85_KEY_LEN	40	/* CURVE keys in Z85 */

struct event_base;
struct config;
struct journal;
struct publisher;

/* Bind the endpoints (CURVE + ZAP when configured) and start the bus. */
struct publisher *publisher_new(struct event_base *, const struct config *,
	    struct journal *, char **cause);
/* Stop the bus thread (linger bounded) and free. NULL: no-op. */
void	publisher_free(struct publisher *);
/* Store hooks for the receiver's group commit (server.h): a webhook whose
 * verdict is known at the door gets its event in the same transaction. */
struct server_store_hooks;
void	publisher_store_hooks(struct publisher *, struct server_store_hooks *);
/* Rows became checked: publish what is ready. */
void	publisher_wake(struct publisher *);
/* For /readyz: 0 with a reason when the bus is not running. */
int	publisher_ready(void *publisher, const char **why);
/* The endpoints actually bound (after tcp://...:* resolution). */
const char *publisher_feed_endpoint(const struct publisher *);
const char *publisher_replay_endpoint(const struct publisher *);

/* CURVE key files (any thread; no state). A key file's first non-comment
 * line is a 40-char Z85 secret key (checked with zmq_curve_public). */
int	publisher_read_key_file(const char *path,
	    char key[PUBLISHER_Z85_KEY_LEN + 1], char **cause);
/* curve_clients_file: one Z85 public key per line, anything after
 * whitespace is a name, '#' comments. Caller frees each and the array. */
int	publisher_read_clients_file(const char *path, char ***keys, size_t *n,
	    char **cause);

#endif
