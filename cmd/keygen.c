/*
 * keygen.c: `payhook keygen --public FILE --secret FILE` writes a CURVE key
 * pair in Z85 (one line each): the secret file with mode 0600, the public
 * one 0644. Used for the server (curve_secret_key_file) and for each
 * consumer (its public key goes into curve_clients_file). Main thread;
 * never prints the secret key and never overwrites a file unless --force.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "cmd/cmd.h"
#include "common/xmalloc.h"


static void
keygen_usage(FILE *f)
{
	fprintf(f, "usage: payhook keygen --public FILE --secret FILE "
	    "[--force]\n\n"
	    "Write a ZeroMQ CURVE key pair (Z85, one line each). The secret "
	    "file gets mode\n0600. Give the public key to the other side: a "
	    "server's to consumers\n(payhook tail --curve-server-key), a "
	    "consumer's into curve_clients_file.\n"
	    "  --force   overwrite existing files\n");
}

/* Write line to path with mode, atomically enough: O_EXCL unless force. */
static int
keygen_write(const char *path, const char *key, mode_t mode, int force)
{
	char line[64];
	int fd, len, ok;

	len = xsnprintf(line, sizeof line, "%s\n", key);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
	    (force ? O_TRUNC : O_EXCL), mode);
	if (fd < 0) {
		fprintf(stderr, "payhook keygen: %s: %s%s\n", path,
		    strerror(errno), errno == EEXIST ? " (use --force)" : "");
		return -1;
	}
	ok = fchmod(fd, mode) == 0 && write(fd, line, (size_t)len) == len &&
	    fsync(fd) == 0;
	explicit_bzero(line, sizeof line);
	if (close(fd) != 0 || !ok) {
		fprintf(stderr, "payhook keygen: %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "public", required_argument, NULL, 'p' },
		{ "secret", required_argument, NULL, 's' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pub_path = NULL, *sec_path = NULL;
	char pub[41], sec[41];
	int ch, force = 0, rc = 1;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			pub_path = optarg;
			break;
		case 's':
			sec_path = optarg;
			break;
		case 'f':
			force = 1;
			break;
		case 'h':
			keygen_usage(stdout);
			return 0;
		default:
			keygen_usage(stderr);
			return 2;
		}
	}
	if (optind != argc || pub_path == NULL || sec_path == NULL ||
	    strcmp(pub_path, sec_path) == 0) {
		keygen_usage(stderr);
		return 2;
	}
	if (zmq_curve_keypair(pub, sec) != 0) {
		fprintf(stderr, "payhook keygen: %s\n", zmq_strerror(errno));
		return 1;
	}
	if (keygen_write(sec_path, sec, 0600, force) == 0 &&
	    keygen_write(pub_path, pub, 0644, force) == 0) {
		printf("public key: %s\n", pub);
		rc = 0;
	}
	explicit_bzero(sec, sizeof sec);
	return rc;
}
