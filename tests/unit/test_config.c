/*
 * test_config.c: the configuration table: defaults, file and environment
 * precedence, every type's validation, one-line reasons that name the key
 * and never a secret, and the cross-key rules.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/xmalloc.h"

static char *secret_path;

static void
setup(void)
{
	FILE *f;

	secret_path = xstrdup("/tmp/payhook-cfg-secret-XXXXXX");
	close(mkstemp(secret_path));
	f = fopen(secret_path, "w");
	fputs("webhook_test_TOPSECRETVALUE123\n", f);
	fclose(f);
}

static void
teardown(void)
{
	unlink(secret_path);
	free(secret_path);
}

/* Write a config file: the secret line plus extra lines. */
static char *
conf(const char *extra)
{
	char *path = xstrdup("/tmp/payhook-cfg-XXXXXX");
	FILE *f;

	close(mkstemp(path));
	f = fopen(path, "w");
	fprintf(f, "# test\nsigning_secret_file = %s\ncross_check = off\n%s",
	    secret_path, extra);
	fclose(f);
	return path;
}

static struct config *
load(const char *extra, char *const *envp, char **cause)
{
	char *path = conf(extra);
	struct config *cfg;

	*cause = NULL;
	cfg = config_load(path, envp, cause);
	unlink(path);
	free(path);
	return cfg;
}

/* Expect a failure whose reason mentions every needle. */
static void
expect_fail(const char *extra, char *const *envp, const char *n1,
    const char *n2)
{
	char *cause;
	struct config *cfg = load(extra, envp, &cause);

	cr_expect_null(cfg, "accepted: %s", extra);
	config_free(cfg);
	if (cause == NULL)
		return;
	cr_expect_not_null(strstr(cause, n1), "[%s] lacks %s", cause, n1);
	if (n2 != NULL)
		cr_expect_not_null(strstr(cause, n2), "[%s] lacks %s", cause, n2);
	cr_expect_null(strchr(cause, '\n'), "one line: %s", cause);
	cr_expect_null(strstr(cause, "TOPSECRET"), "secret leaked: %s", cause);
	free(cause);
}

TestSuite(config, .init = setup, .fini = teardown);

Test(config, defaults_match_the_contract)
{
	char *cause;
	struct config *cfg = load("", NULL, &cause);

	cr_assert_not_null(cfg, "%s", cause);
	cr_expect_str_eq(cfg->listen, "127.0.0.1:8080");
	cr_expect_str_eq(cfg->webhook_path, "/webhooks/govuk-pay");
	cr_expect_eq(cfg->max_body_bytes, 65536);
	cr_expect_str_eq(cfg->admin_listen, "127.0.0.1:9090");
	cr_expect_str_eq(cfg->state_dir, "./payhook-state");
	cr_expect_eq(cfg->durability, CONFIG_DURABILITY_FULL);
	cr_expect_str_eq(cfg->api_base_url,
	    "https://publicapi.payments.service.gov.uk");
	cr_expect_str_eq(cfg->publish_endpoint, "tcp://127.0.0.1:5556");
	cr_expect_str_eq(cfg->replay_endpoint, "tcp://127.0.0.1:5557");
	cr_expect_eq(cfg->include_pii, 0);
	cr_expect_null(cfg->tls_cert_file);
	cr_expect_eq(cfg->retention_ms, 7LL * 86400 * 1000);
	config_free(cfg);
}

Test(config, sizes_and_durations_take_suffixes)
{
	char *cause;
	struct config *cfg = load("max_body_bytes = 128k\n"
	    "request_timeout = 1500ms\nretention = 10d\n"
	    "journal_max_bytes = \"2g\"\n", NULL, &cause);

	cr_assert_not_null(cfg, "%s", cause);
	cr_expect_eq(cfg->max_body_bytes, 128 * 1024);
	cr_expect_eq(cfg->request_timeout_ms, 1500);
	cr_expect_eq(cfg->retention_ms, 10LL * 86400 * 1000);
	cr_expect_eq(cfg->journal_max_bytes, 2LL << 30);
	config_free(cfg);
}

Test(config, environment_overrides_the_file)
{
	char *env[] = { "PAYHOOK_MAX_BODY_BYTES=2048", "PAYHOOK_BIN=/x",
	    "PAYHOOK_DURABILITY=process", "OTHER=1", NULL };
	char *cause;
	struct config *cfg = load("max_body_bytes = 4096\n", env, &cause);

	cr_assert_not_null(cfg, "%s", cause);
	cr_expect_eq(cfg->max_body_bytes, 2048);
	cr_expect_eq(cfg->durability, CONFIG_DURABILITY_PROCESS);
	config_free(cfg);
}

Test(config, bad_environment_value_names_the_variable)
{
	char *env[] = { "PAYHOOK_MAX_BODY_BYTES=lots", NULL };

	expect_fail("", env, "max_body_bytes", "PAYHOOK_MAX_BODY_BYTES");
}

Test(config, every_type_rejects_bad_values_naming_key_and_expectation)
{
	expect_fail("listen = nope\n", NULL, "listen", "host:port");
	expect_fail("listen = 127.0.0.1:70000\n", NULL, "listen", "65535");
	expect_fail("admin_listen = :80\n", NULL, "admin_listen", NULL);
	expect_fail("max_body_bytes = abc\n", NULL, "max_body_bytes", "size");
	expect_fail("max_body_bytes = 0\n", NULL, "max_body_bytes", "1024");
	expect_fail("max_body_bytes = 99999999999999999999\n", NULL,
	    "max_body_bytes", NULL);
	expect_fail("max_connections = 0\n", NULL, "max_connections", "1 to");
	expect_fail("request_timeout = -1\n", NULL, "request_timeout",
	    "duration");
	expect_fail("request_timeout = 5 fortnights\n", NULL, "request_timeout",
	    NULL);
	expect_fail("durability = sometimes\n", NULL, "durability",
	    "full, process");
	expect_fail("include_pii = maybe\n", NULL, "include_pii", "on or off");
	expect_fail("webhook_path = no-slash\n", NULL, "webhook_path", NULL);
	expect_fail("webhook_path = /a/../b\n", NULL, "webhook_path", NULL);
	expect_fail("api_base_url = ftp://x\n", NULL, "api_base_url", "URL");
	expect_fail("publish_endpoint = udp://x\n", NULL, "publish_endpoint",
	    "tcp://");
	expect_fail("retention = 1d\n", NULL, "retention", NULL);
	expect_fail("tls_cert_file = /nonexistent.pem\n", NULL,
	    "tls_cert_file", "readable");
	expect_fail("log_level = loud\n", NULL, "log_level", NULL);
}

Test(config, file_syntax_errors_name_the_line)
{
	expect_fail("this line has no equals\n", NULL, "line 4", "key = value");
	expect_fail("colour = blue\n", NULL, "unknown key", "colour");
	expect_fail("max_body_bytes = 2048\nmax_body_bytes = 4096\n", NULL,
	    "max_body_bytes", "already set");
}

Test(config, cross_key_rules)
{
	char *env_on[] = { "PAYHOOK_CROSS_CHECK=on", NULL };

	expect_fail("tls_cert_file = /etc/hostname\n", NULL, "tls_key_file",
	    "together");
	expect_fail("", env_on, "api_key_file", "cross_check");
	expect_fail("api_base_url = http://example.com\n", NULL, "api_base_url",
	    "loopback");
	expect_fail("api_base_url = http://127.evil.com:80\n", NULL,
	    "api_base_url", "loopback");
	expect_fail("api_base_url = http://localhost.evil.com\n", NULL,
	    "api_base_url", "loopback");
	expect_fail("listen = example.invalid:0\n", NULL, "listen", "numeric");
	expect_fail("curve_clients_file = /etc/hostname\n", NULL,
	    "curve_secret_key_file", "together");
	expect_fail("listen = 127.0.0.1:9000\nadmin_listen = 127.0.0.1:9000\n",
	    NULL, "admin_listen", "differ");
}

Test(config, loopback_http_api_is_allowed)
{
	const char *ok[] = { "api_base_url = http://127.0.0.1:8081\n",
	    "api_base_url = http://127.5.6.7/pay\n",
	    "api_base_url = http://localhost:9\n",
	    "api_base_url = http://[::1]:8081\n" };
	struct config *cfg;
	char *cause;
	size_t i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		cfg = load(ok[i], NULL, &cause);
		cr_expect_not_null(cfg, "%s: %s", ok[i], cause ? cause : "");
		free(cause);
		config_free(cfg);
	}
}

Test(config, secret_file_is_required)
{
	char *path = xstrdup("/tmp/payhook-cfg-XXXXXX"), *cause = NULL;
	struct config *cfg;
	FILE *f;

	close(mkstemp(path));
	f = fopen(path, "w");
	fputs("cross_check = off\n", f);
	fclose(f);
	cfg = config_load(path, NULL, &cause);
	cr_expect_null(cfg);
	cr_assert_not_null(cause);
	cr_expect_not_null(strstr(cause, "signing_secret_file"), "%s", cause);
	free(cause);
	unlink(path);
	free(path);
}

Test(config, split_addr_handles_ipv4_ipv6_and_rejects_junk)
{
	char host[256];
	int port;

	cr_expect_eq(config_split_addr("127.0.0.1:8080", host, sizeof host,
	    &port), 0);
	cr_expect_str_eq(host, "127.0.0.1");
	cr_expect_eq(port, 8080);
	cr_expect_eq(config_split_addr("[::1]:0", host, sizeof host, &port), 0);
	cr_expect_str_eq(host, "::1");
	cr_expect_eq(config_split_addr("::1:80", host, sizeof host, &port), -1);
	cr_expect_eq(config_split_addr("host", host, sizeof host, &port), -1);
	cr_expect_eq(config_split_addr("h:x", host, sizeof host, &port), -1);
	cr_expect_eq(config_split_addr("a b:1", host, sizeof host, &port), -1);
}
