/*
 * normalise.h: turn one journal row (raw webhook + verdict + the API's
 * answer) into a payhook.payment_event.v1 JSON object and its topic
 * (schemas/payment_event.v1.json, docs/events.md). Pure: no I/O, any
 * thread. Never emits email, cardholder name or billing address unless
 * include_pii is set, and never card digits beyond the masked ones.
 */
#ifndef PAYHOOK_NORMALISE_H
#define PAYHOOK_NORMALISE_H

#include <stddef.h>
#include <stdint.h>

struct journal_row;
struct json_tok;

#define NORMALISE_SCHEMA	"payhook.payment_event.v1"
#define NORMALISE_TOPIC_MAX	48	/* == sizeof journal_event.topic */

/* What the event carries besides the row itself. */
struct normalise_opts {
	int64_t	 seq;		/* the seq the event will be stored under */
	int	 out_of_order;	/* a later event for the payment was sent */
	int	 include_pii;	/* config include_pii */
	/* The receiver's tokens of row->body (webhook_parser_tokens), or
	 * NULL to tokenize the body here. */
	const struct json_tok *body_toks;
	size_t	 body_ntoks;
};

/* The topic for a row ("payment.<kind>" or "alert.<kind>") into topic. */
void	normalise_topic(const struct journal_row *, char *topic, size_t len);
/* "payment.captured" -> "payment"; for metrics labels. Static strings. */
const char *normalise_family(const char *topic);

/*
 * Build the event: topic (NORMALISE_TOPIC_MAX bytes) and *json, compact,
 * NUL-terminated, malloc'd (the caller frees). 0, or -1 with *cause when
 * the row cannot be represented (never for a row the journal accepted).
 */
int	normalise_row(const struct journal_row *, const struct normalise_opts *,
	    char *topic, char **json, size_t *len, char **cause);

#endif
