/*
 * lifecycle.c: created -> started -> submitted -> (capturable ->) success,
 * or failed / cancelled / error, with the webhooks GOV.UK Pay emits for
 * each internal transition (a delayed-capture payment reaching capturable
 * emits nothing; card_payment_started is never sent). Event-loop thread.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "sim/lifecycle.h"
#include "sim/store.h"
#include "sim/webhook.h"

enum card_result { CARD_OK, CARD_DECLINED, CARD_ERROR };

struct test_card {
	const char	*number;
	const char	*brand;
	const char	*type;
	enum card_result result;
};

/* GOV.UK Pay sandbox-style test cards (docs: "Test your integration"). */
static const struct test_card test_cards[] = {
	{ "4444333322221111", "Visa", "credit", CARD_OK },
	{ "4242424242424242", "Visa", "credit", CARD_OK },
	{ "4000056655665556", "Visa", "debit", CARD_OK },
	{ "5105105105105100", "Mastercard", "credit", CARD_OK },
	{ "5200828282828210", "Mastercard", "debit", CARD_OK },
	{ "371449635398431", "American Express", "credit", CARD_OK },
	{ "3528000700000000", "JCB", "credit", CARD_OK },
	{ "6011000990139424", "Discover", "credit", CARD_OK },
	{ "36148900647913", "Diners Club", "credit", CARD_OK },
	{ "4000000000000002", "Visa", "credit", CARD_DECLINED },
	{ "4000000000000069", "Visa", "credit", CARD_DECLINED },
	{ "4000000000000127", "Visa", "credit", CARD_DECLINED },
	{ "4000000000000119", "Visa", "credit", CARD_ERROR },
};

static void
lifecycle_set(struct sim *sim, struct payment *p, enum pay_status st,
    enum pay_reason r, const char *event_type)
{
	int64_t now = sim_now(sim);

	p->status = st;
	p->reason = r;
	payment_add_event(p, now);
	if (event_type != NULL)
		webhook_emit(sim->webhook, event_type, p, now, NULL);
}

void
lifecycle_created(struct sim *sim, struct payment *p)
{
	p->created_ms = sim_now(sim);
	lifecycle_set(sim, p, PAY_CREATED, REASON_NONE, NULL);
	sched_add(sim->sched, p->created_ms + LIFECYCLE_EXPIRY_MS,
	    SCHED_EXPIRE, p, 0);
}

int
lifecycle_visit(struct sim *sim, struct payment *p, const char **cause)
{
	if (p->token_used || p->status != PAY_CREATED) {
		*cause = "next_url already used or payment no longer "
		    "in progress";
		return -1;
	}
	p->token_used = true;
	lifecycle_set(sim, p, PAY_STARTED, REASON_NONE, NULL);
	return 0;
}

static int
lifecycle_luhn(const char *n)
{
	size_t len = strlen(n), i;
	int sum = 0, d, dbl = 0;

	if (len < 12 || len > 19)
		return 0;
	for (i = len; i-- > 0;) {
		if (!isdigit((unsigned char)n[i]))
			return 0;
		d = n[i] - '0';
		if (dbl && (d *= 2) > 9)
			d -= 9;
		sum += d;
		dbl = !dbl;
	}
	return sum % 10 == 0;
}

static int
lifecycle_card_lookup(const char *number, struct card *c,
    enum card_result *res, const char **cause)
{
	const struct test_card *tc = NULL;
	size_t i, len;

	for (i = 0; i < sizeof test_cards / sizeof test_cards[0]; i++) {
		if (strcmp(test_cards[i].number, number) == 0)
			tc = &test_cards[i];
	}
	if (tc == NULL && !lifecycle_luhn(number)) {
		*cause = "card_number is not a valid card number";
		return -1;
	}
	len = strlen(number);
	memcpy(c->first6, number, 6);
	c->first6[6] = '\0';
	memcpy(c->last4, number + len - 4, 5);
	xsnprintf(c->brand, sizeof c->brand, "%s", tc ? tc->brand :
	    number[0] == '5' ? "Mastercard" : "Visa");
	xsnprintf(c->type, sizeof c->type, "%s", tc ? tc->type : "credit");
	*res = tc ? tc->result : CARD_OK;
	return 0;
}

static char *
lifecycle_dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
lifecycle_fill_card(struct payment *p, const char *holder)
{
	const struct address *pa = &p->prefill_addr;
	struct card *c = &p->card;

	xsnprintf(c->expiry, sizeof c->expiry, "12/30");
	free(c->holder);
	c->holder = xstrdup(holder ? holder : p->prefill_name ?
	    p->prefill_name : "Sim Paying User");
	address_clear(&c->addr);
	if (p->has_prefill_addr) {
		c->addr.line1 = lifecycle_dup(pa->line1);
		c->addr.line2 = lifecycle_dup(pa->line2);
		c->addr.postcode = lifecycle_dup(pa->postcode);
		c->addr.city = lifecycle_dup(pa->city);
		c->addr.country = lifecycle_dup(pa->country);
	} else {
		c->addr.line1 = xstrdup("1 Simulated Street");
		c->addr.postcode = xstrdup("SW1A 1AA");
		c->addr.city = xstrdup("London");
		c->addr.country = xstrdup("GB");
	}
	p->has_card = true;
}

static void
lifecycle_approve(struct sim *sim, struct payment *p)
{
	int64_t now = sim_now(sim);

	/* CAPTURE_APPROVED: API "success", webhook card_payment_succeeded. */
	p->capture_submitted = true;
	p->capture_submit_ms = now;
	lifecycle_set(sim, p, PAY_SUCCESS, REASON_NONE,
	    "card_payment_succeeded");
	sched_add(sim->sched, now + sim->cfg.capture_delay_ms, SCHED_CAPTURE,
	    p, 0);
}

int
lifecycle_enter_card(struct sim *sim, struct payment *p, const char *number,
    const char *outcome, const char *holder, int confirm, const char **cause)
{
	enum card_result res;
	struct card c;

	if (p->status == PAY_CREATED && lifecycle_visit(sim, p, cause) != 0)
		return -1;
	if (p->status != PAY_STARTED) {
		*cause = "card details can only be entered on a started payment";
		return -1;
	}
	memset(&c, 0, sizeof c);
	if (number == NULL) {
		if (outcome == NULL || strcmp(outcome, "success") == 0)
			number = "4444333322221111";
		else if (strcmp(outcome, "declined") == 0)
			number = "4000000000000002";
		else if (strcmp(outcome, "error") == 0)
			number = "4000000000000119";
		else {
			*cause = "outcome must be success, declined or error";
			return -1;
		}
	}
	if (lifecycle_card_lookup(number, &c, &res, cause) != 0)
		return -1;
	memcpy(p->card.first6, c.first6, sizeof c.first6);
	memcpy(p->card.last4, c.last4, sizeof c.last4);
	memcpy(p->card.brand, c.brand, sizeof c.brand);
	memcpy(p->card.type, c.type, sizeof c.type);
	lifecycle_fill_card(p, holder);
	xsnprintf(p->provider_id, sizeof p->provider_id, "%s", p->token);
	if (res == CARD_DECLINED) {
		lifecycle_set(sim, p, PAY_FAILED, REASON_REJECTED,
		    "card_payment_failed");
		return 0;
	}
	if (res == CARD_ERROR) {
		lifecycle_set(sim, p, PAY_ERROR, REASON_ERROR,
		    "card_payment_failed");
		return 0;
	}
	lifecycle_set(sim, p, PAY_SUBMITTED, REASON_NONE, NULL);
	return confirm ? lifecycle_confirm(sim, p, cause) : 0;
}

int
lifecycle_confirm(struct sim *sim, struct payment *p, const char **cause)
{
	if (p->status != PAY_SUBMITTED) {
		*cause = "only a submitted payment can be confirmed";
		return -1;
	}
	if (p->delayed_capture)
		lifecycle_set(sim, p, PAY_CAPTURABLE, REASON_NONE, NULL);
	else
		lifecycle_approve(sim, p);
	return 0;
}

int
lifecycle_user_cancel(struct sim *sim, struct payment *p, const char **cause)
{
	if (p->status > PAY_SUBMITTED) {
		*cause = "the user can only cancel before confirming";
		return -1;
	}
	p->token_used = true;
	lifecycle_set(sim, p, PAY_FAILED, REASON_USER_CANCELLED,
	    "card_payment_failed");
	return 0;
}

int
lifecycle_service_cancel(struct sim *sim, struct payment *p)
{
	if (p->status >= PAY_SUCCESS)
		return -1;
	p->token_used = true;
	lifecycle_set(sim, p, PAY_CANCELLED, REASON_SERVICE_CANCELLED,
	    "card_payment_failed");
	return 0;
}

int
lifecycle_capture(struct sim *sim, struct payment *p)
{
	if (p->status != PAY_CAPTURABLE)
		return -1;
	lifecycle_approve(sim, p);
	return 0;
}

int
lifecycle_expire(struct sim *sim, struct payment *p, const char **cause)
{
	if (p->status >= PAY_SUCCESS) {
		*cause = "payment already finished";
		return -1;
	}
	p->token_used = true;
	lifecycle_set(sim, p, PAY_FAILED, REASON_EXPIRED,
	    "card_payment_expired");
	return 0;
}

size_t
lifecycle_refund(struct sim *sim, struct payment *p, int64_t amount)
{
	struct refund r;
	size_t idx;

	memset(&r, 0, sizeof r);
	sim_random_id(r.id);
	r.amount = amount;
	r.created_ms = sim_now(sim);
	r.status = REFUND_SUBMITTED;
	idx = payment_add_refund(p, &r);
	sched_add(sim->sched, r.created_ms + sim->cfg.refund_delay_ms,
	    SCHED_REFUND, p, idx);
	return idx;
}

void
lifecycle_timer(struct sim *sim, enum sched_kind kind, void *ptr, size_t arg)
{
	struct payment *p = ptr;
	const char *cause;
	int64_t now = sim_now(sim);

	switch (kind) {
	case SCHED_EXPIRE:
		if (p->status == PAY_CAPTURABLE &&
		    now < p->created_ms + LIFECYCLE_CAPTURABLE_EXPIRY_MS) {
			sched_add(sim->sched, p->created_ms +
			    LIFECYCLE_CAPTURABLE_EXPIRY_MS, SCHED_EXPIRE, p, 0);
			break;
		}
		if (p->status < PAY_SUCCESS)
			(void)lifecycle_expire(sim, p, &cause);
		break;
	case SCHED_CAPTURE:
		if (p->status != PAY_SUCCESS || p->captured)
			break;
		p->captured = true;
		p->captured_ms = now;
		webhook_emit(sim->webhook, "card_payment_captured", p, now,
		    NULL);
		break;
	case SCHED_REFUND:
		if (arg >= p->nrefunds ||
		    p->refunds[arg].status != REFUND_SUBMITTED)
			break;
		p->refunds[arg].status = REFUND_SUCCESS;
		webhook_emit(sim->webhook, "card_payment_refunded", p, now,
		    NULL);
		break;
	default:
		break;
	}
}
