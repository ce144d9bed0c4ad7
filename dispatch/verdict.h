/*
 * verdict.h: decide whether GOV.UK Pay's GET /v1/payments/{id} answer
 * confirms a webhook. Pure functions: no I/O, no clocks, no globals; any
 * thread. The rules (event type -> states the API may show, the webhook vs
 * API status vocabulary) are documented in docs/crosscheck.md.
 */
#ifndef PAYHOOK_VERDICT_H
#define PAYHOOK_VERDICT_H

#include <stddef.h>
#include <stdint.h>

#define VERDICT_MAX_FIELDS	8
#define VERDICT_REASON_MAX	96

enum verdict_kind {
	VERDICT_CONFIRMED,
	VERDICT_MISMATCH,
};

/* The compared fields of one payment view (strings borrowed; NULL: absent). */
struct verdict_payment {
	const char	*payment_id;
	int		 has_amount;
	int64_t		 amount;
	const char	*reference;
	const char	*description;
	const char	*status;	/* state.status */
	const char	*code;		/* state.code, e.g. "P0010" */
};

struct verdict {
	enum verdict_kind kind;
	/* Names of the disagreeing fields (static strings), in the fixed
	 * order payment_id, amount, reference, description, status. */
	const char	*fields[VERDICT_MAX_FIELDS];
	size_t		 nfields;
	/* The same names as a JSON array, e.g. ["amount","status"]. */
	char		 mismatches[128];
};

/*
 * Compare the webhook's resource with the API's view of the same payment
 * for a webhook of event_type ("card_payment_succeeded", ...; unknown types
 * compare the fields but not the state against the event).
 */
void	verdict_decide(const char *event_type, const struct verdict_payment *wh,
	    const struct verdict_payment *api, struct verdict *out);

/*
 * The same from raw JSON: webhook_body is the whole webhook as received,
 * api_body the 200 answer of GET /v1/payments/{id}. 0 and *out filled; -1
 * with a reason (never quoting body content) when the API answer is not a
 * payment object (the caller retries) or the webhook cannot be read.
 * *which is set to 'w' when the webhook was unreadable, 'a' for the API.
 */
int	verdict_from_json(const char *event_type, const char *webhook_body,
	    size_t webhook_len, const char *api_body, size_t api_len,
	    struct verdict *out, char *which, char reason[VERDICT_REASON_MAX]);

/* 1 when the API state (status, code) may legitimately be seen by the time
 * a webhook of event_type is checked; unknown event types: always 1. */
int	verdict_state_allowed(const char *event_type, const char *api_status,
	    const char *api_code);
/* 1 when the webhook's resource.state (webhook vocabulary) agrees with the
 * API's state (API vocabulary), or the API is legitimately further along. */
int	verdict_status_consistent(const char *wh_status, const char *wh_code,
	    const char *api_status, const char *api_code);

#endif
