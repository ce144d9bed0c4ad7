/*
 * sign.c: `payhook sign --secret-file F`: read a body on stdin and print
 * its Pay-Signature (lower-case hex HMAC-SHA256 under the file's first
 * secret). For testing a receiver by hand; the secret is never printed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "common/xmalloc.h"
#include "receiver/signature.h"

#define SIGN_MAX_BODY (16 * 1024 * 1024)

static void
sign_usage(FILE *f)
{
	fprintf(f, "usage: payhook sign --secret-file FILE [--secret N] < body\n"
	    "Print the Pay-Signature header value for the body on stdin:\n"
	    "the lower-case hex HMAC-SHA256 of its exact bytes, keyed with the\n"
	    "secret on line N (default 1) of FILE.\n");
}

int
cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "secret-file", required_argument, NULL, 'f' },
		{ "secret", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char out[SIGNATURE_HEX_LEN + 1], *cause = NULL, *body;
	const char *file = NULL;
	struct signature *sig;
	size_t len = 0;
	ssize_t n;
	int ch, index = 1, ret = 1;

	while ((ch = getopt_long(argc, argv, "f:n:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			file = optarg;
			break;
		case 'n':
			if (strcmp(optarg, "1") != 0 && strcmp(optarg, "2") != 0) {
				fprintf(stderr, "payhook sign: --secret must be "
				    "1 or 2\n");
				return 2;
			}
			index = optarg[0] - '0';
			break;
		case 'h':
			sign_usage(stdout);
			return 0;
		default:
			sign_usage(stderr);
			return 2;
		}
	}
	if (file == NULL) {
		sign_usage(stderr);
		return 2;
	}
	sig = signature_new();
	if (signature_load_file(sig, file, &cause) != 0) {
		fprintf(stderr, "payhook sign: %s\n", cause);
		free(cause);
		signature_free(sig);
		return 2;
	}
	body = xmalloc(SIGN_MAX_BODY);
	while ((n = read(STDIN_FILENO, body + len, SIGN_MAX_BODY - len)) > 0)
		len += (size_t)n;
	if (n < 0 || len == SIGN_MAX_BODY) {
		fprintf(stderr, "payhook sign: cannot read the body (at most "
		    "%d bytes)\n", SIGN_MAX_BODY - 1);
		goto out;
	}
	if (signature_sign(sig, index, body, len, out) != 0) {
		fprintf(stderr, "payhook sign: %s has no secret on line %d\n",
		    file, index);
		goto out;
	}
	printf("%s\n", out);
	ret = 0;
out:
	free(body);
	signature_free(sig);
	return ret;
}
