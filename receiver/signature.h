/*
 * signature.h: GOV.UK Pay's Pay-Signature, the lower-case hex HMAC-SHA256
 * of the raw body keyed with the signing secret's UTF-8 bytes. Holds one or
 * two secrets (rotation). Any thread (a reload swaps the secrets under a
 * lock); the secrets never leave this module.
 */
#ifndef PAYHOOK_SIGNATURE_H
#define PAYHOOK_SIGNATURE_H

#include <stddef.h>

#define SIGNATURE_HEX_LEN	64
#define SIGNATURE_MAX_SECRETS	2

enum signature_result {
	SIGNATURE_MISMATCH = 0,		/* well-formed, matches no secret */
	SIGNATURE_SECRET_1 = 1,		/* matched the first line's secret */
	SIGNATURE_SECRET_2 = 2,		/* matched the second line's secret */
	SIGNATURE_MALFORMED = -1,	/* not 64 lower-case hex characters */
};

struct signature;

struct signature *signature_new(void);
void	signature_free(struct signature *);
/*
 * Load one or two secrets, one per line, from path (replacing any held).
 * Fails without touching the held secrets; *cause never quotes a secret.
 */
int	signature_load_file(struct signature *, const char *path, char **cause);
/* Number of secrets held (1 or 2; 0 before a successful load). */
int	signature_count(const struct signature *);
/* Check header value hdr[0..hdrlen) against body in constant time. */
enum signature_result signature_verify(struct signature *, const void *body,
	    size_t len, const char *hdr, size_t hdrlen);
/* Sign body with the held secret index (1 or 2) into out (65 bytes). */
int	signature_sign(struct signature *, int index, const void *body,
	    size_t len, char out[SIGNATURE_HEX_LEN + 1]);
/* One-shot: hex HMAC-SHA256 of body under key (for tools and tests). */
void	signature_hmac_hex(const void *key, size_t keylen, const void *body,
	    size_t len, char out[SIGNATURE_HEX_LEN + 1]);

#endif
