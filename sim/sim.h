/*
 * sim.h: the GOV.UK Pay simulator's shared state: configuration, the
 * simulated clock, payments and refunds. Everything runs on the one
 * event_base thread; nothing here is safe to touch from another thread.
 */
#ifndef PAYHOOK_SIM_H
#define PAYHOOK_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct event_base;
struct evhttp;
struct store;
struct sched;
struct webhook;
struct api;

/* Filled from the option table in main.c; strings are owned by sim. */
struct sim_config {
	char	*listen;
	char	*api_key_file;
	char	*webhook_url;
	char	*signing_secret_file;
	char	*webhook_ca_file;
	char	*webhook_events;
	char	*public_url;
	char	*log_level;
	double	 time_scale;
	double	 duplicate_rate;
	int64_t	 webhook_timeout_ms;
	int64_t	 webhook_concurrency;
	int64_t	 webhook_jitter_ms;
	int64_t	 capture_delay_ms;
	int64_t	 refund_delay_ms;
	int64_t	 max_log;
	int64_t	 seed;
	int64_t	 reject_urls;
};

/* Lifecycle statuses of the public API (status_version 1). */
enum pay_status {
	PAY_CREATED, PAY_STARTED, PAY_SUBMITTED, PAY_CAPTURABLE, PAY_SUCCESS,
	PAY_FAILED, PAY_CANCELLED, PAY_ERROR
};

/* Why a payment finished unsuccessfully (selects code and message). */
enum pay_reason {
	REASON_NONE, REASON_REJECTED, REASON_EXPIRED, REASON_USER_CANCELLED,
	REASON_SERVICE_CANCELLED, REASON_ERROR
};

enum refund_status { REFUND_SUBMITTED, REFUND_SUCCESS, REFUND_ERROR };

#define SIM_ID_LEN	26
#define SIM_ACCOUNT_TEST 0
#define SIM_ACCOUNT_LIVE 1

struct address {
	char	*line1, *line2, *postcode, *city, *country;
};

struct card {
	char	 first6[7], last4[5], brand[24], type[8], expiry[6];
	char	*holder;
	struct address addr;
};

struct refund {
	char	 id[SIM_ID_LEN + 1];
	int64_t	 amount;
	int64_t	 created_ms;
	enum refund_status status;
};

struct pay_event {
	enum pay_status status;
	enum pay_reason reason;
	int64_t	 at_ms;
};

struct payment {
	char	 id[SIM_ID_LEN + 1];
	int	 account;
	int64_t	 amount;
	char	*reference, *description, *return_url, *email;
	char	 language[3];
	bool	 delayed_capture, moto;
	struct cJSON *metadata;		/* owned; NULL when not given */
	char	*prefill_name;
	struct address prefill_addr;
	bool	 has_prefill_addr;

	enum pay_status status;
	enum pay_reason reason;
	int64_t	 created_ms;
	char	 token[37];
	bool	 token_used;

	bool	 has_card;
	struct card card;
	char	 provider_id[40];
	bool	 capture_submitted, captured;
	int64_t	 capture_submit_ms, captured_ms;

	struct refund *refunds;
	size_t	 nrefunds, refcap;
	struct pay_event *events;
	size_t	 nevents, evcap;

	struct payment *id_next, *tok_next, *all_next;
};

struct sim_stats {
	uint64_t api_requests, api_faults, created, control_requests;
};

struct sim {
	struct event_base *base;
	struct evhttp	*http;
	struct sim_config cfg;
	char		 base_url[512];
	char		**api_keys;
	size_t		 n_api_keys;
	struct store	*store;
	struct sched	*sched;
	struct webhook	*webhook;
	struct api	*api;
	struct sim_stats stats;
	uint64_t	 rng;
	/* simulated clock: wall0 + (mono - mono0) * scale + offset */
	int64_t		 clock_wall0_ms;
	int64_t		 clock_mono0_us;
	int64_t		 clock_offset_ms;
};

/* Simulated wall-clock milliseconds since the epoch. */
int64_t	sim_now(const struct sim *);
/* Real milliseconds until simulated time reaches due (0 if passed). */
int64_t	sim_real_delay_ms(const struct sim *, int64_t due);
/* Uniform random double in [0, 1) from the seeded fault PRNG. */
double	sim_random(struct sim *);
/* 26 random chars of [0-9a-v] (130 bits), NUL-terminated (27 bytes). */
void	sim_random_id(char *out);
/* The same id as BigInteger.toString(32): leading zeros stripped. */
void	sim_random_id_unpadded(char *out);

#endif
