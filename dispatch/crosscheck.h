/*
 * crosscheck.h: the received -> checked stage. Takes due rows from the
 * journal, asks GET /v1/payments/{id} (keep-alive pool, rate limit, retries
 * with backoff), decides a verdict and records it with the API's answer in
 * the journal. With cross_check = off every row gets verdict "skipped".
 * Main thread only; never runs on the request path of a webhook.
 */
#ifndef PAYHOOK_CROSSCHECK_H
#define PAYHOOK_CROSSCHECK_H

struct event_base;
struct config;
struct journal;
struct crosscheck;

/* Called (main thread) after one or more rows became 'checked'. */
typedef void (*crosscheck_checked_fn)(void *arg);

struct crosscheck *crosscheck_new(struct event_base *, const struct config *,
	    struct journal *, crosscheck_checked_fn, void *arg, char **cause);
/* Cancel requests in flight (their rows stay 'received'). NULL: no-op. */
void	crosscheck_free(struct crosscheck *);
/* New rows were committed: look for due work now. */
void	crosscheck_wake(struct crosscheck *);
/* n webhooks were stored with verdict skipped at the door (cross_check =
 * off): count them in payhook_crosscheck_results_total. Main thread. */
void	crosscheck_count_skipped(struct crosscheck *, int n);
/* For /readyz: 0 with a reason while the API key is being rejected. */
int	crosscheck_ready(void *crosscheck, const char **why);

#endif
