/*
 * webhook.h: parse and validate a GOV.UK Pay webhook body exactly as the
 * sender emits it (schemas/govuk_pay_webhook.json states the same rules).
 * Any thread, one parser per thread (ph-http's, payhook journal's). Never allocates per call: the parser
 * owns a reusable token buffer. Reasons never quote body content.
 */
#ifndef PAYHOOK_WEBHOOK_H
#define PAYHOOK_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_ID_MAX		26	/* [0-9a-v]{1,26} */
#define WEBHOOK_EVENT_TYPE_MAX	64
#define WEBHOOK_REASON_MAX	160

/* Event types GOV.UK Pay emits today; anything else is WEBHOOK_EVENT_OTHER. */
enum webhook_event {
	WEBHOOK_EVENT_OTHER = 0,
	WEBHOOK_EVENT_STARTED,
	WEBHOOK_EVENT_SUCCEEDED,
	WEBHOOK_EVENT_CAPTURED,
	WEBHOOK_EVENT_REFUNDED,
	WEBHOOK_EVENT_FAILED,
	WEBHOOK_EVENT_EXPIRED,
	WEBHOOK_EVENT_SETTLED,
};

/* The fields later stages need, copied out of the body (NUL-terminated). */
struct webhook {
	char		 message_id[WEBHOOK_ID_MAX + 1];
	char		 resource_id[WEBHOOK_ID_MAX + 1];
	char		 event_type[WEBHOOK_EVENT_TYPE_MAX + 1];
	enum webhook_event event;
	int64_t		 created_ms;	/* envelope created_date (event time) */
	int64_t		 amount;	/* resource.amount, pence */
	char		 status[24];	/* resource.state.status, webhook vocabulary */
};

struct json_tok;
struct webhook_parser;

struct webhook_parser *webhook_parser_new(void);
void	webhook_parser_free(struct webhook_parser *);
/*
 * Validate body[0..len) (not NUL-terminated). 0 and *out filled when it is
 * a valid webhook; -1 with a short reason ("resource.amount: expected an
 * integer") when not. Strict: UTF-8, RFC 8259 JSON, no duplicate keys,
 * bounded depth, ids in GOV.UK Pay's alphabet.
 */
int	webhook_parse(struct webhook_parser *, const char *body, size_t len,
	    struct webhook *out, char reason[WEBHOOK_REASON_MAX]);
/*
 * The tokens (receiver/json.h) of the body the last webhook_parse()
 * accepted, and their count in *n; NULL and 0 after a refusal. Valid until
 * the next webhook_parse() on the parser.
 */
const struct json_tok *webhook_parser_tokens(const struct webhook_parser *,
	    size_t *n);
/* "card_payment_succeeded" -> WEBHOOK_EVENT_SUCCEEDED; unknown -> OTHER. */
enum webhook_event webhook_event_from_name(const char *);

#endif
