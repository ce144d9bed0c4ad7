/*
 * lifecycle.h: the payment state machine: every transition records an
 * event and emits the webhook that pay-webhooks maps it to (§3.1).
 * Event-loop thread only. Functions return 0, or -1 with *cause set to a
 * static string when the payment is not in a state that allows the move.
 */
#ifndef PAYHOOK_SIM_LIFECYCLE_H
#define PAYHOOK_SIM_LIFECYCLE_H

#include "sim/sched.h"
#include "sim/sim.h"

#define LIFECYCLE_EXPIRY_MS		(90LL * 60 * 1000)
#define LIFECYCLE_CAPTURABLE_EXPIRY_MS	(120LL * 3600 * 1000)

/* A just-created payment: record the event, schedule its expiry. */
void	lifecycle_created(struct sim *, struct payment *);
/* The paying user opens next_url (consumes the single-use token). */
int	lifecycle_visit(struct sim *, struct payment *, const char **cause);
/*
 * The user enters a card (number, or outcome "success"/"declined"/
 * "error"); with confirm the confirmation page is submitted too.
 */
int	lifecycle_enter_card(struct sim *, struct payment *,
	    const char *number, const char *outcome, const char *holder,
	    int confirm, const char **cause);
int	lifecycle_confirm(struct sim *, struct payment *, const char **cause);
int	lifecycle_user_cancel(struct sim *, struct payment *,
	    const char **cause);
/* API cancel: 0, or -1 when finished (cancel not allowed). */
int	lifecycle_service_cancel(struct sim *, struct payment *);
/* API capture of a capturable (delayed-capture) payment. */
int	lifecycle_capture(struct sim *, struct payment *);
/* Expire now, whatever the clock says (control surface). */
int	lifecycle_expire(struct sim *, struct payment *, const char **cause);
/* Record a submitted refund; it succeeds after --refund-delay-ms. */
size_t	lifecycle_refund(struct sim *, struct payment *, int64_t amount);
/* Scheduler callback for SCHED_EXPIRE / SCHED_CAPTURE / SCHED_REFUND. */
void	lifecycle_timer(struct sim *, enum sched_kind, void *ptr, size_t arg);

#endif
