/*
 * signature.c: verify Pay-Signature with EVP_MAC (HMAC-SHA256). One keyed
 * context per secret is re-initialised per request, which is about twice as
 * fast as one-shot HMAC(). Any thread: the public listener's thread
 * verifies while the main thread reloads on SIGHUP, so the contexts are
 * used and swapped under one mutex (uncontended but for a reload). Never
 * log, print or copy a secret out of this file, and compare MACs only with
 * CRYPTO_memcmp.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "receiver/signature.h"

#define SIGNATURE_MAC_LEN	32
#define SIGNATURE_FILE_MAX	4096
#define SIGNATURE_SECRET_MIN	8
#define SIGNATURE_SECRET_MAX	512

struct signature {
	EVP_MAC		*mac;
	pthread_mutex_t	 lock;		/* ctx[] and its use */
	EVP_MAC_CTX	*ctx[SIGNATURE_MAX_SECRETS];
	_Atomic int	 n;		/* written under lock */
};

struct signature *
signature_new(void)
{
	struct signature *sig;

	sig = xcalloc(1, sizeof *sig);
	sig->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (sig->mac == NULL)
		abort();	/* OpenSSL without HMAC: a broken install */
	if (pthread_mutex_init(&sig->lock, NULL) != 0)
		abort();
	return sig;
}

static void
signature_clear(EVP_MAC_CTX **ctx, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		EVP_MAC_CTX_free(ctx[i]);
		ctx[i] = NULL;
	}
}

void
signature_free(struct signature *sig)
{
	if (sig == NULL)
		return;
	signature_clear(sig->ctx, sig->n);
	EVP_MAC_free(sig->mac);
	pthread_mutex_destroy(&sig->lock);
	free(sig);
}

static EVP_MAC_CTX *
signature_keyed_ctx(EVP_MAC *mac, const void *key, size_t keylen)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;

	if ((ctx = EVP_MAC_CTX_new(mac)) == NULL)
		abort();
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, key, keylen, params))
		abort();
	return ctx;
}

/* Split the file into at most two trimmed, non-empty lines. */
static int
signature_parse_lines(char *buf, size_t len, char *line[],
    size_t linelen[], int *count, char **cause)
{
	char *p = buf, *end = buf + len, *nl, *s, *e;
	int n = 0, lineno = 0;

	while (p < end) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		s = p;
		e = nl;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		p = nl + 1;
		if (s == e || *s == '#')
			continue;
		if (n == SIGNATURE_MAX_SECRETS) {
			*cause = xasprintf("more than %d secrets (line %d); "
			    "expected one, or two during a rotation",
			    SIGNATURE_MAX_SECRETS, lineno);
			return -1;
		}
		if ((size_t)(e - s) < SIGNATURE_SECRET_MIN ||
		    (size_t)(e - s) > SIGNATURE_SECRET_MAX) {
			*cause = xasprintf("secret on line %d has %zu bytes; "
			    "expected %d to %d", lineno, (size_t)(e - s),
			    SIGNATURE_SECRET_MIN, SIGNATURE_SECRET_MAX);
			return -1;
		}
		if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
			*cause = xasprintf("secret on line %d contains a NUL "
			    "byte", lineno);
			return -1;
		}
		line[n] = s;
		linelen[n] = (size_t)(e - s);
		n++;
	}
	if (n == 0) {
		*cause = xasprintf("no secret in the file; expected one line "
		    "such as webhook_live_...");
		return -1;
	}
	*count = n;
	return 0;
}

int
signature_load_file(struct signature *sig, const char *path, char **cause)
{
	EVP_MAC_CTX *ctx[SIGNATURE_MAX_SECRETS] = { NULL };
	char *buf = NULL, *line[SIGNATURE_MAX_SECRETS];
	size_t len, linelen[SIGNATURE_MAX_SECRETS];
	int i, n, ret = -1;

	if (util_read_file(path, SIGNATURE_FILE_MAX, &buf, &len, cause) != 0)
		return -1;
	if (signature_parse_lines(buf, len, line, linelen, &n, cause) != 0)
		goto out;
	for (i = 0; i < n; i++)
		ctx[i] = signature_keyed_ctx(sig->mac, line[i], linelen[i]);
	/* Swap, then free the old contexts outside the lock. */
	pthread_mutex_lock(&sig->lock);
	for (i = 0; i < SIGNATURE_MAX_SECRETS; i++) {
		EVP_MAC_CTX *old = sig->ctx[i];

		sig->ctx[i] = ctx[i];
		ctx[i] = old;
	}
	i = sig->n;
	sig->n = n;
	pthread_mutex_unlock(&sig->lock);
	signature_clear(ctx, i);
	ret = 0;
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	return ret;
}

int
signature_count(const struct signature *sig)
{
	return sig->n;
}

static void
signature_mac(EVP_MAC_CTX *ctx, const void *body, size_t len,
    unsigned char out[SIGNATURE_MAC_LEN])
{
	size_t outlen = 0;

	/* A NULL key re-initialises with the key already set. */
	if (!EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, body, len) ||
	    !EVP_MAC_final(ctx, out, &outlen, SIGNATURE_MAC_LEN) ||
	    outlen != SIGNATURE_MAC_LEN)
		abort();
}

enum signature_result
signature_verify(struct signature *sig, const void *body, size_t len,
    const char *hdr, size_t hdrlen)
{
	unsigned char want[SIGNATURE_MAC_LEN], got[SIGNATURE_MAC_LEN];
	enum signature_result r = SIGNATURE_MISMATCH;
	int i;

	if (util_hex_decode_lower(hdr, hdrlen, want, sizeof want) != 0)
		return SIGNATURE_MALFORMED;
	pthread_mutex_lock(&sig->lock);
	for (i = 0; i < sig->n; i++) {
		signature_mac(sig->ctx[i], body, len, got);
		if (CRYPTO_memcmp(got, want, sizeof got) == 0) {
			r = (enum signature_result)(i + 1);
			break;
		}
	}
	pthread_mutex_unlock(&sig->lock);
	return r;
}

int
signature_sign(struct signature *sig, int index, const void *body, size_t len,
    char out[SIGNATURE_HEX_LEN + 1])
{
	unsigned char mac[SIGNATURE_MAC_LEN];

	pthread_mutex_lock(&sig->lock);
	if (index < 1 || index > sig->n) {
		pthread_mutex_unlock(&sig->lock);
		return -1;
	}
	signature_mac(sig->ctx[index - 1], body, len, mac);
	pthread_mutex_unlock(&sig->lock);
	util_hex_encode(mac, sizeof mac, out);
	return 0;
}

void
signature_hmac_hex(const void *key, size_t keylen, const void *body,
    size_t len, char out[SIGNATURE_HEX_LEN + 1])
{
	unsigned char mac[SIGNATURE_MAC_LEN];
	EVP_MAC_CTX *ctx;
	EVP_MAC *m;

	if ((m = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		abort();
	ctx = signature_keyed_ctx(m, key, keylen);
	signature_mac(ctx, body, len, mac);
	util_hex_encode(mac, sizeof mac, out);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
}
