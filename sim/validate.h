/*
 * validate.h: the create-payment rules of POST /v1/payments (GOVUK-PAY.md
 * §8), in publicapi's order, with its codes, statuses and descriptions.
 * Any thread; pure apart from allocation.
 */
#ifndef PAYHOOK_SIM_VALIDATE_H
#define PAYHOOK_SIM_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "sim/sim.h"

struct create_req {
	int64_t		 amount;
	char		*reference, *description, *return_url, *email;
	char		 language[3];
	bool		 delayed_capture, moto;
	struct cJSON	*metadata;
	char		*prefill_name;
	struct address	 addr;
	bool		 has_addr;
};

struct api_error {
	int		 status;
	const char	*code;
	char		 field[64];
	char		 description[256];
};

/*
 * Parse and check a create body for an account (SIM_ACCOUNT_*). On
 * success fills out (release with create_req_clear) and returns 0; else
 * fills err and returns -1. idempotency_key is the header or NULL.
 */
int	validate_create(const char *body, size_t len, int account,
	    bool reject_urls, const char *idempotency_key,
	    struct create_req *out, struct api_error *err);
void	create_req_clear(struct create_req *);
/*
 * The raw text of a top-level member's value (e.g. to tell 10 from 10.0,
 * which cJSON cannot). Returns 0 and sets *val, *vlen, or -1 if absent.
 */
int	validate_raw_member(const char *body, size_t len, const char *key,
	    const char **val, size_t *vlen);
/* A JSON integer token within [INT32_MIN, INT32_MAX] (Jackson isInt). */
int	validate_int_token(const char *tok, size_t len, int64_t *out);

#endif
