/*
 * apiclient.h: GOV.UK Pay API client for GET /v1/payments/{id} over
 * libevent's evhttp with OpenSSL bufferevents: certificate and host-name
 * verification, TLS 1.2+, SNI, a keep-alive pool (= the concurrency limit),
 * connect/answer timeouts, a token-bucket rate limit, a capped answer body,
 * no redirects. Main thread (the event_base's) only.
 */
#ifndef PAYHOOK_APICLIENT_H
#define PAYHOOK_APICLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct apiclient;

#define APICLIENT_MAX_BODY	(1024 * 1024)	/* answers larger fail */

struct apiclient_config {
	const char	*base_url;	/* https://host[:port][/prefix] */
	const char	*key_file;	/* the API key; never logged */
	const char	*ca_file;	/* NULL or "": the system store */
	int		 pool_size;	/* connections = requests in flight */
	int		 rate_limit;	/* requests per second */
	int64_t		 timeout_ms;	/* whole answer, after connecting */
	int64_t		 connect_timeout_ms; /* TCP + TLS handshake */
	size_t		 max_body;	/* 0: APICLIENT_MAX_BODY */
};

enum apiclient_result {
	APICLIENT_ANSWER,	/* an HTTP answer; see status */
	APICLIENT_TIMEOUT,	/* no (complete) answer in time */
	APICLIENT_ERROR,	/* refused, reset, TLS refused, bad answer */
};

/* Valid only during the callback. */
struct apiclient_answer {
	enum apiclient_result result;
	int		 status;	/* HTTP status when ANSWER */
	const char	*body;		/* NUL-terminated, body_len bytes */
	size_t		 body_len;
	int64_t		 retry_after_ms; /* Retry-After in ms, -1: none */
	uint64_t	 elapsed_ns;
	const char	*error;		/* short reason when not ANSWER */
};

typedef void (*apiclient_done_fn)(void *arg, const struct apiclient_answer *);

/* Parse the base URL, read the key, set up TLS. Logs one line saying how
 * the API is reached (and a warning for plain http). NULL and *cause. */
struct apiclient *apiclient_new(struct event_base *,
	    const struct apiclient_config *, char **cause);
/* Cancel requests in flight (their callbacks are not called). NULL: no-op. */
void	apiclient_free(struct apiclient *);
/* Re-read the key file (e.g. after the API rejected the key). 0 or -1. */
int	apiclient_reload_key(struct apiclient *, char **cause);
/* Requests that may start now (free connections and rate tokens). When 0
 * because of the rate limit, *wait_ms says when one may (else -1). */
size_t	apiclient_available(struct apiclient *, int64_t *wait_ms);
size_t	apiclient_in_flight(const struct apiclient *);
/* 1 when the base URL is https. */
int	apiclient_is_tls(const struct apiclient *);
/*
 * Start GET {base}/v1/payments/{payment_id}. payment_id must pass
 * util_is_pay_id. 0: done will be called exactly once, later (never from
 * inside this call); -1 and *cause: nothing started (bad id, no capacity).
 */
int	apiclient_get_payment(struct apiclient *, const char *payment_id,
	    apiclient_done_fn done, void *arg, char **cause);

#endif
