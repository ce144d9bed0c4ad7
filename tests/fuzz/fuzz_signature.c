/*
 * fuzz_signature.c: libFuzzer target for Pay-Signature handling
 * (receiver/signature.h: signature_verify) with two fixed secrets loaded
 * from a temporary file (rotation). Input: [mode][hlen][hdr: hlen bytes]
 * [body]; mode 1/2 replace the header with the right signature for secret
 * 1/2, mode 3 with secret 1's signature overwritten by the header bytes.
 * The verdict must equal a reference computed here: MALFORMED unless 64
 * lower-case hex characters, else which secret's HMAC it is, else MISMATCH.
 * Single-threaded; the only file is the secret file in a fresh temp dir.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "receiver/signature.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static const char *const secrets[2] = {
	"webhook_test_9v3l0ak1mqkqf2b0j3n1ce4tdo",
	"webhook_live_0a1b2c3d4e5f6g7h8i9j0k1l2m",
};
static struct signature *sig;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t = getenv("TMPDIR");
	char dir[200], path[224], *cause = NULL;
	FILE *f;

	snprintf(dir, sizeof dir, "%s/payhook-fuzz-sig-XXXXXX",
	    t != NULL && *t != '\0' && strlen(t) < 160 ? t : "/tmp");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof path, "%s/secret", dir);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fprintf(f, "%s\n%s\n", secrets[0], secrets[1]);
	fclose(f);
	sig = signature_new();
	if (signature_load_file(sig, path, &cause) != 0) {
		fprintf(stderr, "fuzz_signature: %s\n", cause);
		abort();
	}
	unlink(path);
	rmdir(dir);
	CHECK(signature_count(sig) == 2);
	return 0;
}

static int
is_lower_hex(const char *h, size_t n)
{
	size_t i;

	if (n != SIGNATURE_HEX_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if (!((h[i] >= '0' && h[i] <= '9') ||
		    (h[i] >= 'a' && h[i] <= 'f')))
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char want[2][SIGNATURE_HEX_LEN + 1], signed_hdr[SIGNATURE_HEX_LEN + 1];
	const uint8_t *body;
	const char *hdr;
	size_t hlen, blen, i;
	enum signature_result got, expect;
	char *copy;
	int mode;

	if (size < 2)
		return 0;
	mode = data[0] & 3;
	hlen = data[1];
	if (hlen > size - 2)
		hlen = size - 2;
	hdr = (const char *)data + 2;
	body = data + 2 + hlen;
	blen = size - 2 - hlen;

	for (i = 0; i < 2; i++) {
		signature_hmac_hex(secrets[i], strlen(secrets[i]), body, blen,
		    want[i]);
		CHECK(signature_sign(sig, (int)i + 1, body, blen,
		    signed_hdr) == 0 && strcmp(signed_hdr, want[i]) == 0);
	}
	if (mode != 0) {
		memcpy(signed_hdr, want[mode == 2], sizeof signed_hdr);
		if (mode == 3)
			memcpy(signed_hdr, hdr, hlen < SIGNATURE_HEX_LEN ?
			    hlen : SIGNATURE_HEX_LEN);
		hdr = signed_hdr;
		hlen = SIGNATURE_HEX_LEN;
	}
	/* An exact-size heap copy so ASan sees any read past hdrlen. */
	copy = malloc(hlen ? hlen : 1);
	memcpy(copy, hdr, hlen);

	if (!is_lower_hex(copy, hlen))
		expect = SIGNATURE_MALFORMED;
	else if (memcmp(copy, want[0], SIGNATURE_HEX_LEN) == 0)
		expect = SIGNATURE_SECRET_1;
	else if (memcmp(copy, want[1], SIGNATURE_HEX_LEN) == 0)
		expect = SIGNATURE_SECRET_2;
	else
		expect = SIGNATURE_MISMATCH;
	got = signature_verify(sig, body, blen, copy, hlen);
	free(copy);
	CHECK(got == expect);
	return 0;
}
