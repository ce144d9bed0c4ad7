/*
 * repr.c: builds the API and webhook representations of a payment. Event-
 * loop thread. Must never put GET-only fields (provider_id, _links,
 * can_retry, wallet_type, settled_date) into the webhook resource.
 */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "sim/repr.h"
#include "sim/store.h"

static const char *status_names[] = {
	"created", "started", "submitted", "capturable", "success", "failed",
	"cancelled", "error"
};

const char *
repr_status_name(enum pay_status st)
{
	return status_names[st];
}

static void
repr_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[32];

	util_format_time_ms(ms, buf, sizeof buf);
	jadd_str(o, key, buf);
}

static void
repr_date(cJSON *o, const char *key, int64_t ms)
{
	char buf[32];

	util_format_time_ms(ms, buf, sizeof buf);
	buf[10] = '\0';
	jadd_str(o, key, buf);
}

static void
repr_reason(enum pay_reason r, const char **code, const char **msg)
{
	switch (r) {
	case REASON_REJECTED:
		*code = "P0010";
		*msg = "Payment method rejected";
		break;
	case REASON_EXPIRED:
		*code = "P0020";
		*msg = "Payment expired";
		break;
	case REASON_USER_CANCELLED:
		*code = "P0030";
		*msg = "Payment was cancelled by the user";
		break;
	case REASON_SERVICE_CANCELLED:
		*code = "P0040";
		*msg = "Payment was cancelled by the service";
		break;
	case REASON_ERROR:
		*code = "P0050";
		*msg = "Payment provider returned an error";
		break;
	default:
		*code = *msg = NULL;
		break;
	}
}

cJSON *
repr_state(enum pay_status st, enum pay_reason r)
{
	const char *code, *msg;
	cJSON *o;

	o = jnew_obj();
	jadd_str(o, "status", status_names[st]);
	jadd_bool(o, "finished", st >= PAY_SUCCESS);
	repr_reason(r, &code, &msg);
	jadd_str(o, "message", msg);
	jadd_str(o, "code", code);
	return o;
}

/*
 * Ledger status_version 2 as pay-webhooks maps it (§6.3): rejected is
 * "declined", expired "timedout", and both cancellations "cancelled" with
 * the user-cancel code P0030 (the first enum entry matching "cancelled").
 */
static cJSON *
repr_state_webhook(enum pay_status st, enum pay_reason r)
{
	const char *status = status_names[st], *code = NULL, *msg = NULL;
	cJSON *o;

	switch (r) {
	case REASON_REJECTED:
		status = "declined";
		break;
	case REASON_EXPIRED:
		status = "timedout";
		break;
	case REASON_USER_CANCELLED:
	case REASON_SERVICE_CANCELLED:
		status = "cancelled";
		r = REASON_USER_CANCELLED;
		break;
	case REASON_ERROR:
		status = "error";
		break;
	default:
		break;
	}
	o = jnew_obj();
	jadd_str(o, "status", status);
	jadd_bool(o, "finished", st >= PAY_SUCCESS);
	repr_reason(r, &code, &msg);
	jadd_str(o, "message", msg);
	jadd_str(o, "code", code);
	return o;
}

/* The webhook's records keep nulls; the API omits absent lines. */
static void
repr_address(cJSON *o, const char *key, const struct address *a, int nulls)
{
	cJSON *ad = jadd_obj(o, key);

#define ADDR_FIELD(f) do {						\
	if (a->f != NULL)						\
		jadd_str(ad, #f, a->f);					\
	else if (nulls)							\
		jadd_null(ad, #f);					\
} while (0)
	ADDR_FIELD(line1);
	ADDR_FIELD(line2);
	ADDR_FIELD(postcode);
	ADDR_FIELD(city);
	ADDR_FIELD(country);
#undef ADDR_FIELD
}

static void
repr_card(cJSON *o, const struct card *c, int webhook)
{
	cJSON *cd = jadd_obj(o, "card_details");

	jadd_str(cd, "last_digits_card_number", c->last4);
	jadd_str(cd, "first_digits_card_number", c->first6);
	if (c->holder != NULL)
		jadd_str(cd, "cardholder_name", c->holder);
	else
		jadd_null(cd, "cardholder_name");
	jadd_str(cd, "expiry_date", c->expiry);
	repr_address(cd, "billing_address", &c->addr, webhook);
	jadd_str(cd, "card_brand", c->brand);
	jadd_str(cd, "card_type", c->type);
	if (!webhook)
		jadd_null(cd, "wallet_type");	/* @JsonInclude(ALWAYS) */
}

static const char *
repr_refund_status(const struct payment *p)
{
	if (p->status == PAY_SUCCESS)
		return payment_refunded(p) >= p->amount ? "full" : "available";
	if (p->status >= PAY_SUCCESS)
		return "unavailable";
	return "pending";
}

static void
repr_refund_summary(cJSON *o, const struct payment *p)
{
	cJSON *rs = jadd_obj(o, "refund_summary");
	int64_t done = payment_refunded(p);

	jadd_str(rs, "status", repr_refund_status(p));
	jadd_int(rs, "amount_available",
	    p->status == PAY_SUCCESS ? p->amount - done : 0);
	jadd_int(rs, "amount_submitted", done);
}

static void
repr_settlement(cJSON *o, const struct payment *p)
{
	cJSON *ss = jadd_obj(o, "settlement_summary");

	if (p->capture_submitted)
		repr_time(ss, "capture_submit_time", p->capture_submit_ms);
	if (p->captured)
		repr_date(ss, "captured_date", p->captured_ms);
}

static const char *
repr_provider(const struct payment *p)
{
	return p->account == SIM_ACCOUNT_LIVE ? "worldpay" : "sandbox";
}

static void
repr_link(cJSON *links, const char *name, const char *href,
    const char *method)
{
	cJSON *l = jadd_obj(links, name);

	jadd_str(l, "href", href);
	jadd_str(l, "method", method);
}

static void
repr_links(cJSON *o, const struct sim *sim, const struct payment *p)
{
	cJSON *links, *post, *params;
	char href[1024];

	links = jadd_obj(o, "_links");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s", sim->base_url, p->id);
	repr_link(links, "self", href, "GET");
	if (p->status == PAY_CREATED && !p->token_used) {
		xsnprintf(href, sizeof href, "%s/secure/%s", sim->base_url,
		    p->token);
		repr_link(links, "next_url", href, "GET");
		post = jadd_obj(links, "next_url_post");
		jadd_str(post, "type", "application/x-www-form-urlencoded");
		params = jadd_obj(post, "params");
		jadd_str(params, "chargeTokenId", p->token);
		xsnprintf(href, sizeof href, "%s/secure", sim->base_url);
		jadd_str(post, "href", href);
		jadd_str(post, "method", "POST");
	}
	xsnprintf(href, sizeof href, "%s/v1/payments/%s/events", sim->base_url,
	    p->id);
	repr_link(links, "events", href, "GET");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s/refunds", sim->base_url,
	    p->id);
	repr_link(links, "refunds", href, "GET");
	if (p->status < PAY_SUCCESS) {
		xsnprintf(href, sizeof href, "%s/v1/payments/%s/cancel",
		    sim->base_url, p->id);
		repr_link(links, "cancel", href, "POST");
	}
	if (p->status == PAY_CAPTURABLE) {
		xsnprintf(href, sizeof href, "%s/v1/payments/%s/capture",
		    sim->base_url, p->id);
		repr_link(links, "capture", href, "POST");
	}
}

cJSON *
repr_payment(const struct sim *sim, const struct payment *p)
{
	cJSON *o;

	o = jnew_obj();
	jadd_int(o, "amount", p->amount);
	jadd_str(o, "description", p->description);
	jadd_str(o, "reference", p->reference);
	jadd_str(o, "language", p->language);
	if (p->email != NULL && *p->email != '\0')
		jadd_str(o, "email", p->email);
	jadd_item(o, "state", repr_state(p->status, p->reason));
	jadd_str(o, "payment_id", p->id);
	jadd_str(o, "payment_provider", repr_provider(p));
	if (p->provider_id[0] != '\0')
		jadd_str(o, "provider_id", p->provider_id);
	repr_time(o, "created_date", p->created_ms);
	if (p->return_url != NULL && *p->return_url != '\0')
		jadd_str(o, "return_url", p->return_url);
	repr_refund_summary(o, p);
	repr_settlement(o, p);
	if (p->has_card) {
		repr_card(o, &p->card, 0);
		jadd_str(o, "card_brand", p->card.brand);
	}
	jadd_bool(o, "delayed_capture", p->delayed_capture);
	jadd_bool(o, "moto", p->moto);
	if (p->metadata != NULL && cJSON_GetArraySize(p->metadata) > 0)
		jadd_item(o, "metadata", jdup(p->metadata));
	jadd_str(o, "authorisation_mode", "web");
	repr_links(o, sim, p);
	return o;
}

cJSON *
repr_payment_webhook(const struct payment *p)
{
	cJSON *o;

	o = jnew_obj();
	jadd_str(o, "payment_id", p->id);
	jadd_int(o, "amount", p->amount);
	jadd_item(o, "state", repr_state_webhook(p->status, p->reason));
	jadd_str(o, "return_url", p->return_url);
	jadd_str(o, "description", p->description);
	jadd_str(o, "reference", p->reference);
	jadd_str(o, "email", p->email);
	jadd_str(o, "payment_provider", repr_provider(p));
	repr_time(o, "created_date", p->created_ms);
	jadd_str(o, "language", p->language);
	jadd_bool(o, "delayed_capture", p->delayed_capture);
	jadd_bool(o, "moto", p->moto);
	repr_refund_summary(o, p);
	repr_settlement(o, p);
	if (p->has_card)
		repr_card(o, &p->card, 1);
	if (p->metadata != NULL && cJSON_GetArraySize(p->metadata) > 0)
		jadd_item(o, "metadata", jdup(p->metadata));
	repr_jsonb_sort(o);
	return o;
}

cJSON *
repr_refund(const struct sim *sim, const struct payment *p,
    const struct refund *r)
{
	static const char *names[] = { "submitted", "success", "error" };
	cJSON *o, *links;
	char href[1024];

	o = jnew_obj();
	jadd_str(o, "refund_id", r->id);
	repr_time(o, "created_date", r->created_ms);
	jadd_int(o, "amount", r->amount);
	links = jadd_obj(o, "_links");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s/refunds/%s",
	    sim->base_url, p->id, r->id);
	repr_link(links, "self", href, "GET");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s", sim->base_url, p->id);
	repr_link(links, "payment", href, "GET");
	jadd_str(o, "status", names[r->status]);
	jadd_obj(o, "settlement_summary");
	jadd_str(o, "payment_id", p->id);
	return o;
}

cJSON *
repr_refunds(const struct sim *sim, const struct payment *p)
{
	cJSON *o, *links, *arr;
	char href[1024];
	size_t i;

	o = jnew_obj();
	jadd_str(o, "payment_id", p->id);
	links = jadd_obj(o, "_links");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s/refunds",
	    sim->base_url, p->id);
	repr_link(links, "self", href, "GET");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s", sim->base_url, p->id);
	repr_link(links, "payment", href, "GET");
	arr = jadd_arr(jadd_obj(o, "_embedded"), "refunds");
	for (i = 0; i < p->nrefunds; i++)
		jadd_item(arr, NULL, repr_refund(sim, p, &p->refunds[i]));
	return o;
}

cJSON *
repr_events(const struct sim *sim, const struct payment *p)
{
	cJSON *o, *arr, *ev, *links;
	char href[1024];
	size_t i;

	o = jnew_obj();
	jadd_str(o, "payment_id", p->id);
	arr = jadd_arr(o, "events");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s", sim->base_url, p->id);
	for (i = 0; i < p->nevents; i++) {
		ev = jnew_obj();
		jadd_str(ev, "payment_id", p->id);
		jadd_item(ev, "state", repr_state(p->events[i].status,
		    p->events[i].reason));
		repr_time(ev, "updated", p->events[i].at_ms);
		links = jadd_obj(ev, "_links");
		repr_link(links, "payment_url", href, "GET");
		jadd_item(arr, NULL, ev);
	}
	links = jadd_obj(o, "_links");
	xsnprintf(href, sizeof href, "%s/v1/payments/%s/events", sim->base_url,
	    p->id);
	repr_link(links, "self", href, "GET");
	return o;
}

static int
repr_key_cmp(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
	size_t lx = strlen(x->string), ly = strlen(y->string);

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x->string, y->string, lx);
}

void
repr_jsonb_sort(cJSON *o)
{
	cJSON **items, *c;
	size_t n = 0, i;

	for (c = o->child; c != NULL; c = c->next) {
		if (cJSON_IsObject(c) || cJSON_IsArray(c))
			repr_jsonb_sort(c);
		n++;
	}
	if (!cJSON_IsObject(o) || n < 2)
		return;
	items = xreallocarray(NULL, n, sizeof *items);
	for (i = 0, c = o->child; c != NULL; c = c->next)
		items[i++] = c;
	qsort(items, n, sizeof *items, repr_key_cmp);
	for (i = 0; i < n; i++) {
		items[i]->prev = i == 0 ? items[n - 1] : items[i - 1];
		items[i]->next = i + 1 < n ? items[i + 1] : NULL;
	}
	o->child = items[0];
	free(items);
}
