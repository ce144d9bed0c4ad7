/*
 * test_signature.c: Pay-Signature known-answer tests from the shared
 * reference vectors (GOV.UK Pay's own first), rotation, and header rules.
 */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "receiver/signature.h"

#include "reference.h"

static char *
secret_file(const char *content)
{
	char *path = xstrdup("/tmp/payhook-sig-XXXXXX");
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, content, strlen(content)),
	    (ssize_t)strlen(content));
	close(fd);
	return path;
}

Test(signature, reference_vectors_match_including_govuk_pay_own)
{
	char *text, *body;
	char hex[SIGNATURE_HEX_LEN + 1];
	cJSON *root, *vectors, *v;
	size_t len, blen;
	int n = 0;

	text = ref_example("signature-test-vectors.json", &len);
	root = cJSON_Parse(text);
	cr_assert_not_null(root);
	vectors = cJSON_GetObjectItem(root, "vectors");
	cJSON_ArrayForEach(v, vectors) {
		const char *key = cJSON_GetStringValue(
		    cJSON_GetObjectItem(v, "key_utf8"));
		const char *want = cJSON_GetStringValue(
		    cJSON_GetObjectItem(v, "expected_pay_signature"));
		cJSON *bu = cJSON_GetObjectItem(v, "body_utf8");
		cJSON *bf = cJSON_GetObjectItem(v, "body_file");

		if (bu != NULL) {
			body = xstrdup(cJSON_GetStringValue(bu));
			blen = strlen(body);
		} else
			body = ref_example(cJSON_GetStringValue(bf), &blen);
		signature_hmac_hex(key, strlen(key), body, blen, hex);
		cr_expect_str_eq(hex, want, "vector %d", n);
		free(body);
		n++;
	}
	cr_assert_geq(n, 2);
	cJSON_Delete(root);
	free(text);
}

Test(signature, verify_accepts_the_constructed_webhook_under_its_secret)
{
	char *file = secret_file("webhook_test_9v3l0ak1mqkqf2b0j3n1ce4tdo\n");
	const char *hdr = "229cd12c09bd5c5d3ff91d7c11931960997f5c922c14d6f7c1"
	    "3aed5812b27b61";
	struct signature *sig = signature_new();
	char *cause = NULL, *body;
	size_t len;

	body = ref_example("constructed-card_payment_captured.body.json", &len);
	cr_assert_eq(signature_load_file(sig, file, &cause), 0);
	cr_expect_eq(signature_verify(sig, body, len, hdr, strlen(hdr)),
	    SIGNATURE_SECRET_1);
	/* One byte changed in the body: no match. */
	body[len - 2] ^= 1;
	cr_expect_eq(signature_verify(sig, body, len, hdr, strlen(hdr)),
	    SIGNATURE_MISMATCH);
	signature_free(sig);
	unlink(file);
	free(file);
	free(body);
}

Test(signature, second_secret_matches_during_rotation_and_is_reported)
{
	char *file = secret_file("  webhook_live_old0000000000000001 \r\n\n"
	    "webhook_live_new0000000000000002\n");
	struct signature *sig = signature_new(), *one = signature_new();
	char hex[SIGNATURE_HEX_LEN + 1], *cause = NULL;
	const char *body = "{\"x\":1}";
	char *f2 = secret_file("webhook_live_new0000000000000002\n");

	cr_assert_eq(signature_load_file(sig, file, &cause), 0);
	cr_expect_eq(signature_count(sig), 2);
	cr_assert_eq(signature_load_file(one, f2, &cause), 0);
	signature_sign(one, 1, body, strlen(body), hex);
	cr_expect_eq(signature_verify(sig, body, strlen(body), hex, 64),
	    SIGNATURE_SECRET_2);
	signature_hmac_hex("webhook_live_old0000000000000001", 32, body,
	    strlen(body), hex);
	cr_expect_eq(signature_verify(sig, body, strlen(body), hex, 64),
	    SIGNATURE_SECRET_1, "surrounding whitespace is not part of a key");
	signature_free(sig);
	signature_free(one);
	unlink(file);
	unlink(f2);
	free(file);
	free(f2);
}

Test(signature, malformed_headers_are_refused_before_any_mac)
{
	char *file = secret_file("webhook_test_abcdefghijklmnop\n");
	struct signature *sig = signature_new();
	char hex[SIGNATURE_HEX_LEN + 1], upper[SIGNATURE_HEX_LEN + 1];
	char *cause = NULL;
	size_t i;

	cr_assert_eq(signature_load_file(sig, file, &cause), 0);
	signature_sign(sig, 1, "b", 1, hex);
	cr_expect_eq(signature_verify(sig, "b", 1, hex, 64), SIGNATURE_SECRET_1);
	for (i = 0; i <= 64; i++)
		upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 32 :
		    hex[i]);
	cr_expect_eq(signature_verify(sig, "b", 1, upper, 64),
	    SIGNATURE_MALFORMED, "upper-case hex is not what GOV.UK Pay sends");
	cr_expect_eq(signature_verify(sig, "b", 1, hex, 63), SIGNATURE_MALFORMED);
	cr_expect_eq(signature_verify(sig, "b", 1, "", 0), SIGNATURE_MALFORMED);
	cr_expect_eq(signature_verify(sig, "b", 1, "zz", 2), SIGNATURE_MALFORMED);
	hex[10] = 'g';
	cr_expect_eq(signature_verify(sig, "b", 1, hex, 64), SIGNATURE_MALFORMED);
	signature_free(sig);
	unlink(file);
	free(file);
}

Test(signature, bad_secret_files_fail_without_quoting_the_secret)
{
	const char *bad[] = { "", "\n\n# only a comment\n", "short\n",
	    "webhook_test_a1\nwebhook_test_a2\nwebhook_test_a3\n" };
	struct signature *sig = signature_new();
	char *cause, *file;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		file = secret_file(bad[i]);
		cause = NULL;
		cr_expect_eq(signature_load_file(sig, file, &cause), -1,
		    "case %zu", i);
		cr_assert_not_null(cause);
		cr_expect_null(strstr(cause, "webhook_test_a"), "%s", cause);
		cr_expect_null(strstr(cause, "short"), "%s", cause);
		free(cause);
		unlink(file);
		free(file);
	}
	cause = NULL;
	cr_expect_eq(signature_load_file(sig, "/nonexistent/secret", &cause),
	    -1);
	free(cause);
	cr_expect_eq(signature_count(sig), 0, "failed loads keep what was held");
	signature_free(sig);
}
