/*
 * store.c: payments in two chained hash tables (id, next_url token) plus
 * an all-payments list for reset. Event-loop thread only. Never scans the
 * table on a request path; only stats and reset walk the list.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "sim/store.h"

struct store {
	struct payment	**by_id;
	struct payment	**by_tok;
	size_t		  nbuckets;
	size_t		  count;
	struct payment	 *all;
};

static uint64_t
store_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static void
store_index(struct store *st, struct payment *p)
{
	size_t b;

	b = store_hash(p->id) % st->nbuckets;
	p->id_next = st->by_id[b];
	st->by_id[b] = p;
	b = store_hash(p->token) % st->nbuckets;
	p->tok_next = st->by_tok[b];
	st->by_tok[b] = p;
}

static void
store_grow(struct store *st)
{
	struct payment *p;

	free(st->by_id);
	free(st->by_tok);
	st->nbuckets = st->nbuckets ? st->nbuckets * 4 : 1024;
	st->by_id = xcalloc(st->nbuckets, sizeof *st->by_id);
	st->by_tok = xcalloc(st->nbuckets, sizeof *st->by_tok);
	for (p = st->all; p != NULL; p = p->all_next)
		store_index(st, p);
}

struct store *
store_new(void)
{
	struct store *st;

	st = xcalloc(1, sizeof *st);
	store_grow(st);
	return st;
}

void
address_clear(struct address *a)
{
	free(a->line1);
	free(a->line2);
	free(a->postcode);
	free(a->city);
	free(a->country);
	memset(a, 0, sizeof *a);
}

static void
payment_free(struct payment *p)
{
	free(p->reference);
	free(p->description);
	free(p->return_url);
	free(p->email);
	cJSON_Delete(p->metadata);
	free(p->prefill_name);
	address_clear(&p->prefill_addr);
	free(p->card.holder);
	address_clear(&p->card.addr);
	free(p->refunds);
	free(p->events);
	free(p);
}

void
store_clear(struct store *st)
{
	struct payment *p, *next;

	for (p = st->all; p != NULL; p = next) {
		next = p->all_next;
		payment_free(p);
	}
	st->all = NULL;
	st->count = 0;
	memset(st->by_id, 0, st->nbuckets * sizeof *st->by_id);
	memset(st->by_tok, 0, st->nbuckets * sizeof *st->by_tok);
}

void
store_free(struct store *st)
{
	if (st == NULL)
		return;
	store_clear(st);
	free(st->by_id);
	free(st->by_tok);
	free(st);
}

static void
store_uuid(char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[16];
	size_t i, o = 0;

	if (RAND_bytes(r, sizeof r) != 1)
		fatalx(1, "RAND_bytes failed");
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[r[i] >> 4];
		out[o++] = hex[r[i] & 15];
	}
	out[o] = '\0';
}

struct payment *
store_add(struct store *st)
{
	struct payment *p;

	p = xcalloc(1, sizeof *p);
	do
		sim_random_id(p->id);
	while (store_by_id_any(st, p->id) != NULL);
	store_uuid(p->token);
	p->all_next = st->all;
	st->all = p;
	st->count++;
	if (st->count > st->nbuckets)
		store_grow(st);
	else
		store_index(st, p);
	return p;
}

struct payment *
store_by_id_any(struct store *st, const char *id)
{
	struct payment *p;

	p = st->by_id[store_hash(id) % st->nbuckets];
	for (; p != NULL; p = p->id_next) {
		if (strcmp(p->id, id) == 0)
			return p;
	}
	return NULL;
}

struct payment *
store_by_id(struct store *st, const char *id, int account)
{
	struct payment *p;

	p = store_by_id_any(st, id);
	if (p == NULL || p->account != account)
		return NULL;
	return p;
}

struct payment *
store_by_token(struct store *st, const char *token)
{
	struct payment *p;

	p = st->by_tok[store_hash(token) % st->nbuckets];
	for (; p != NULL; p = p->tok_next) {
		if (strcmp(p->token, token) == 0)
			return p;
	}
	return NULL;
}

size_t
store_count(const struct store *st)
{
	return st->count;
}

void
store_count_status(const struct store *st, size_t *counts)
{
	const struct payment *p;

	memset(counts, 0, 8 * sizeof *counts);
	for (p = st->all; p != NULL; p = p->all_next)
		counts[p->status]++;
}

size_t
payment_add_refund(struct payment *p, const struct refund *r)
{
	if (p->nrefunds == p->refcap) {
		p->refcap = p->refcap ? p->refcap * 2 : 2;
		p->refunds = xreallocarray(p->refunds, p->refcap,
		    sizeof *p->refunds);
	}
	p->refunds[p->nrefunds] = *r;
	return p->nrefunds++;
}

void
payment_add_event(struct payment *p, int64_t at_ms)
{
	if (p->nevents == p->evcap) {
		p->evcap = p->evcap ? p->evcap * 2 : 4;
		p->events = xreallocarray(p->events, p->evcap,
		    sizeof *p->events);
	}
	p->events[p->nevents].status = p->status;
	p->events[p->nevents].reason = p->reason;
	p->events[p->nevents].at_ms = at_ms;
	p->nevents++;
}

int64_t
payment_refunded(const struct payment *p)
{
	int64_t sum = 0;
	size_t i;

	for (i = 0; i < p->nrefunds; i++) {
		if (p->refunds[i].status != REFUND_ERROR)
			sum += p->refunds[i].amount;
	}
	return sum;
}
