/*
 * fuzz_config.c: libFuzzer target for config_load (common/config.h). Each
 * input is written to payhook.conf in a private temp dir and loaded with a
 * fixed environment. config_load only stat()s and access()es the paths it
 * is given; while it runs, this file's own stat/access confine them to the
 * temp dir (relative names resolve inside it; anything else, or "..",
 * does not exist), so no input can make it look at a real file. Seeds name
 * the files made here: secret, key, cert, ca, curve, clients, dir state/.
 * Single-threaded.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define FZ_SECRET	"webhook_test_fuzzsecretcontent0123456789"

static char tmpdir[200], confpath[224];
static int dirfd_tmp = -1;
static int confined;
static FILE *devnull;
static char *const envp[] = { "PAYHOOK_LOG_LEVEL=warn", "PAYHOOK_BIN=/x",
	"HOME=/nonexistent", NULL };

/* The temp-dir-relative name for path, or NULL: outside the sandbox. */
static const char *
confine(const char *path)
{
	size_t n = strlen(tmpdir);
	const char *p;

	if (path[0] == '/') {
		if (strncmp(path, tmpdir, n) != 0 || path[n] != '/')
			return NULL;
		path += n + 1;
	}
	for (p = path; (p = strstr(p, "..")) != NULL; p += 2)
		if ((p == path || p[-1] == '/') && (p[2] == '\0' ||
		    p[2] == '/'))
			return NULL;
	return *path == '\0' ? "." : path;
}

int
stat(const char *restrict path, struct stat *restrict st)
{
	const char *rel;

	if (!confined)
		return fstatat(AT_FDCWD, path, st, 0);
	if ((rel = confine(path)) == NULL) {
		errno = ENOENT;
		return -1;
	}
	return fstatat(dirfd_tmp, rel, st, 0);
}

int
access(const char *path, int mode)
{
	const char *rel;

	if (!confined)
		return faccessat(AT_FDCWD, path, mode, 0);
	if ((rel = confine(path)) == NULL) {
		errno = ENOENT;
		return -1;
	}
	return faccessat(dirfd_tmp, rel, mode, 0);
}

static void
put_file(const char *name, const char *text, mode_t mode)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void
cleanup(void)
{
	static const char *const names[] = { "secret", "key", "cert", "ca",
		"curve", "clients", "unreadable", "payhook.conf" };
	char path[256];
	size_t i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	snprintf(path, sizeof path, "%s/state", tmpdir);
	rmdir(path);
	rmdir(tmpdir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *t;
	char path[256];

	t = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/payhook-fuzz-config-XXXXXX",
	    t != NULL && *t != '\0' && strlen(t) < 160 ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(confpath, sizeof confpath, "%s/payhook.conf", tmpdir);
	put_file("secret", FZ_SECRET "\n", 0600);
	put_file("key", "api_test_fuzz\n", 0600);
	put_file("cert", "-----BEGIN CERTIFICATE-----\n", 0644);
	put_file("ca", "-----BEGIN CERTIFICATE-----\n", 0644);
	put_file("curve", "curve secret\n", 0600);
	put_file("clients", "clients\n", 0644);
	put_file("unreadable", "x\n", 0000);
	snprintf(path, sizeof path, "%s/state", tmpdir);
	if (mkdir(path, 0700) != 0)
		abort();
	if ((dirfd_tmp = open(tmpdir, O_RDONLY | O_DIRECTORY)) < 0)
		abort();
	if ((devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg;
	char *cause = NULL, host[257];
	int fd, port;

	if ((fd = open(confpath, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	confined = 1;
	cfg = config_load(confpath, envp, &cause);
	confined = 0;
	if (cfg == NULL) {
		/* one line naming the problem, never a secret file's text */
		CHECK(cause != NULL && cause[0] != '\0');
		CHECK(strchr(cause, '\n') == NULL);
		if (memmem(data, size, "fuzzsecret", 10) == NULL)
			CHECK(strstr(cause, "fuzzsecret") == NULL);
		free(cause);
		return 0;
	}
	CHECK(cause == NULL);
	CHECK(cfg->listen != NULL && cfg->admin_listen != NULL &&
	    cfg->webhook_path != NULL && cfg->state_dir != NULL &&
	    cfg->api_base_url != NULL && cfg->publish_endpoint != NULL &&
	    cfg->replay_endpoint != NULL && cfg->signing_secret_file != NULL);
	CHECK(config_split_addr(cfg->listen, host, sizeof host, &port) == 0);
	CHECK(config_split_addr(cfg->admin_listen, host, sizeof host,
	    &port) == 0);
	CHECK(cfg->webhook_path[0] == '/');
	CHECK((cfg->tls_cert_file == NULL) == (cfg->tls_key_file == NULL));
	CHECK(!cfg->cross_check || cfg->api_key_file != NULL);
	config_print_effective(cfg, devnull);
	config_free(cfg);
	return 0;
}
