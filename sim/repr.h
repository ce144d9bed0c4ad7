/*
 * repr.h: JSON representations of payments: the public API's (GET and
 * create), the webhook resource's (a different shape and status
 * vocabulary), refunds and events. Event-loop thread; results are owned
 * by the caller (cJSON_Delete).
 */
#ifndef PAYHOOK_SIM_REPR_H
#define PAYHOOK_SIM_REPR_H

#include "sim/json.h"
#include "sim/sim.h"

/* "created", "started", ... as the public API names them. */
const char	*repr_status_name(enum pay_status);
/* The API state object {status, finished[, message, code]}. */
cJSON		*repr_state(enum pay_status, enum pay_reason);
/* PaymentWithAllLinks / CreatePaymentResult. */
cJSON		*repr_payment(const struct sim *, const struct payment *);
/* The webhook `resource` (§1.4), keys in Postgres JSONB order. */
cJSON		*repr_payment_webhook(const struct payment *);
cJSON		*repr_refund(const struct sim *, const struct payment *,
		    const struct refund *);
cJSON		*repr_refunds(const struct sim *, const struct payment *);
cJSON		*repr_events(const struct sim *, const struct payment *);
/* Reorder object keys recursively: shorter first, then bytewise. */
void		 repr_jsonb_sort(cJSON *);

#endif
