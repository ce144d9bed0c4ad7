/*
 * sched.h: a min-heap of actions due at simulated times (expiry, capture
 * confirmation, refund success, webhook attempts), driven by one libevent
 * timer. Event-loop thread only.
 */
#ifndef PAYHOOK_SIM_SCHED_H
#define PAYHOOK_SIM_SCHED_H

#include <stddef.h>
#include <stdint.h>

struct sim;

enum sched_kind {
	SCHED_EXPIRE,		/* ptr = payment */
	SCHED_CAPTURE,		/* ptr = payment */
	SCHED_REFUND,		/* ptr = payment, arg = refund index */
	SCHED_WEBHOOK		/* ptr = webhook message, arg = 1 if duplicate */
};

/* Create the scheduler and its timer on sim->base; NULL on failure. */
struct sched	*sched_new(struct sim *);
void		 sched_free(struct sched *);
/* Run ptr's action when simulated time reaches due. */
void		 sched_add(struct sched *, int64_t due, enum sched_kind,
		     void *ptr, size_t arg);
/* Drop every entry of these kinds (a bit mask of 1 << kind). */
void		 sched_drop_kinds(struct sched *, unsigned mask);
/* Run everything now due and re-arm the timer (after a clock jump). */
void		 sched_run(struct sched *);
/* Number of queued entries. */
size_t		 sched_pending(const struct sched *);

#endif
