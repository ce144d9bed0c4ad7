/*
 * webhook.h: the webhook sender, as alphagov/pay-webhooks behaves: one
 * signed message per subscribed event, up to N deliveries in flight, a
 * 3 s timeout, retries after 60 s, 5 min, 1 h, 1 d, 2 d (simulated time),
 * and a log of every attempt. Event-loop thread only.
 */
#ifndef PAYHOOK_SIM_WEBHOOK_H
#define PAYHOOK_SIM_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "sim/json.h"
#include "sim/sim.h"

#define WEBHOOK_MAX_ATTEMPTS	6

/*
 * Start the sender from sim->cfg. Without --webhook-url it is disabled
 * (emits nothing) but still answers log queries. NULL + *cause on error.
 */
struct webhook	*webhook_new(struct sim *, char **cause);
/* Abort in-flight deliveries and free everything; NULL is a no-op. */
void		 webhook_free(struct webhook *);
int		 webhook_enabled(const struct webhook *);
/*
 * Queue event_type for p, the resource being p's webhook representation
 * with overrides' keys replaced (the "lie" used by demos). Returns the new
 * webhook_message_id (owned by the sender) or NULL when not subscribed.
 */
const char	*webhook_emit(struct webhook *, const char *event_type,
		    const struct payment *p, int64_t event_ms,
		    const cJSON *overrides);
/* Scheduler callback: a retry (dup 0) or a duplicate delivery is due. */
void		 webhook_timer(struct webhook *, void *msg, size_t dup);
/* Replace the signing key (NULL: generate one); applies to next attempt. */
void		 webhook_set_secret(struct webhook *, const char *secret);
const char	*webhook_secret(const struct webhook *);
void		 webhook_set_duplicate_rate(struct webhook *, double);
double		 webhook_duplicate_rate(const struct webhook *);
/* The delivery log, newest last; filters may be NULL; limit 0 = all. */
cJSON		*webhook_log_json(const struct webhook *, const char *payment_id,
		    const char *event_type, size_t limit);
cJSON		*webhook_stats_json(const struct webhook *);
/* Forget queued messages and the log (in-flight ones finish quietly). */
void		 webhook_reset(struct webhook *);

#endif
