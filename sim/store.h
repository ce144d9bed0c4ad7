/*
 * store.h: the in-memory payment store. Hash tables by payment id and by
 * next_url token give O(1) look-ups for the benchmark path. Event-loop
 * thread only; the store owns every payment it returns.
 */
#ifndef PAYHOOK_SIM_STORE_H
#define PAYHOOK_SIM_STORE_H

#include <stddef.h>

#include "sim/sim.h"

struct store	*store_new(void);
/* Free every payment, then the store; NULL is a no-op. */
void		 store_free(struct store *);
/* Free every payment and start empty (the /_sim/reset action). */
void		 store_clear(struct store *);
/* A new zeroed payment with fresh id and token, already indexed. */
struct payment	*store_add(struct store *);
/* Look-ups; NULL when absent. The account must match for by_id. */
struct payment	*store_by_id(struct store *, const char *id, int account);
struct payment	*store_by_id_any(struct store *, const char *id);
struct payment	*store_by_token(struct store *, const char *token);
size_t		 store_count(const struct store *);
/* Count payments by status into counts[8] (O(n); control surface only). */
void		 store_count_status(const struct store *, size_t *counts);

/* Append a refund or a state event to a payment; returns its index. */
size_t		 payment_add_refund(struct payment *, const struct refund *);
void		 payment_add_event(struct payment *, int64_t at_ms);
/* Sum of refunds that are submitted or succeeded. */
int64_t		 payment_refunded(const struct payment *);
/* Free the strings of an address (not the struct itself). */
void		 address_clear(struct address *);

#endif
