/*
 * config.c: the configuration table and everything driven by it: defaults,
 * the key = value file, PAYHOOK_* environment overrides, validation with a
 * one-line reason (the generated help and docs are in config_doc.c).
 * Main thread at start-up. Never reads or prints a secret file's content:
 * secret files are checked for existence here and parsed by their owners.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/config_int.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"

static const char *const config_durability_choices[] = { "full", "process",
    NULL };
static const char *const config_level_choices[] = { "debug", "info", "warn",
    "error", NULL };

#define OFF(f) offsetof(struct config, f)
#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define SEC ((int64_t)1000)
#define DAY (86400 * SEC)

const struct config_entry config_table[] = {
	{ "listen", CONFIG_ADDR, "127.0.0.1:8080", 0, 0, NULL, 0, OFF(listen),
	  "Public webhook listener, host:port (port 0 picks a free port)." },
	{ "webhook_path", CONFIG_URLPATH, "/webhooks/govuk-pay", 0, 0, NULL, 0,
	  OFF(webhook_path),
	  "The one path that accepts webhooks; every other path is 404." },
	{ "tls_cert_file", CONFIG_FILE, "", 0, 0, NULL, CONFIG_UNSET_OK,
	  OFF(tls_cert_file),
	  "PEM certificate chain; with tls_key_file the public listener "
	  "speaks TLS 1.2/1.3 only." },
	{ "tls_key_file", CONFIG_FILE, "", 0, 0, NULL,
	  CONFIG_UNSET_OK | CONFIG_SECRET, OFF(tls_key_file),
	  "PEM private key for tls_cert_file." },
	{ "signing_secret_file", CONFIG_FILE, "", 0, 0, NULL,
	  CONFIG_REQUIRED | CONFIG_SECRET, OFF(signing_secret_file),
	  "File with the webhook signing secret, one per line; two lines "
	  "while rotating (both accepted). Re-read on SIGHUP." },
	{ "max_body_bytes", CONFIG_SIZE, "65536", KIB, 16 * MIB, NULL, 0,
	  OFF(max_body_bytes),
	  "Largest webhook body accepted; larger bodies (also chunked) get "
	  "413 before being buffered." },
	{ "max_header_bytes", CONFIG_SIZE, "8192", KIB, MIB, NULL, 0,
	  OFF(max_header_bytes),
	  "Largest request line plus headers accepted." },
	{ "max_connections", CONFIG_INT, "1024", 1, 65536, NULL, 0,
	  OFF(max_connections),
	  "Concurrent connections on the public listener; further clients "
	  "wait in the kernel's accept queue. Needs that many open files and "
	  "256 more: at start-up the soft limit is raised towards the hard "
	  "one, and when that is not enough the cap is lowered, with a "
	  "warning (max_connections_lowered)." },
	{ "request_timeout", CONFIG_DURATION, "10s", SEC, 300 * SEC, NULL, 0,
	  OFF(request_timeout_ms),
	  "Time a client has to send a whole request (and the idle limit of "
	  "a kept-alive connection): slow clients cannot hold connections." },
	{ "admin_listen", CONFIG_ADDR, "127.0.0.1:9090", 0, 0, NULL, 0,
	  OFF(admin_listen),
	  "Admin listener for /healthz, /readyz and /metrics, host:port." },
	{ "state_dir", CONFIG_DIR, "./payhook-state", 0, 0, NULL, 0,
	  OFF(state_dir),
	  "Directory holding the journal (journal.db); created if missing." },
	{ "durability", CONFIG_ENUM, "full", 0, 0, config_durability_choices, 0,
	  OFF(durability),
	  "full: fsync before every 2xx (survives power loss); process: "
	  "survives a crash of the process only." },
	{ "journal_max_bytes", CONFIG_SIZE, "0", 0, (int64_t)1 << 50, NULL, 0,
	  OFF(journal_max_bytes),
	  "Cap on the journal's size (0: no cap, else at least 64k, and "
	  "128k for a journal created without a cap, which has 8 KB pages); "
	  "past it webhooks get 503 (GOV.UK Pay retries) instead of filling "
	  "the disk." },
	{ "retention", CONFIG_DURATION, "7d", 4 * DAY, 3650 * DAY, NULL, 0,
	  OFF(retention_ms),
	  "Keep published rows at least this long; must outlast GOV.UK Pay's "
	  "3.1-day retry window so duplicates are still recognised." },
	{ "api_base_url", CONFIG_URL, "https://publicapi.payments.service.gov.uk",
	  0, 0, NULL, 0, OFF(api_base_url),
	  "GOV.UK Pay API base URL; plain http only for loopback hosts." },
	{ "api_key_file", CONFIG_FILE, "", 0, 0, NULL,
	  CONFIG_UNSET_OK | CONFIG_SECRET, OFF(api_key_file),
	  "File with the GOV.UK Pay API key (api_live_... or api_test_...); "
	  "required unless cross_check = off." },
	{ "api_ca_file", CONFIG_FILE, "", 0, 0, NULL, CONFIG_UNSET_OK,
	  OFF(api_ca_file),
	  "CA bundle for the API's certificate; unset: the system store." },
	{ "cross_check", CONFIG_BOOL, "on", 0, 0, NULL, 0, OFF(cross_check),
	  "Confirm every webhook with GET /v1/payments/{id}; off publishes "
	  "with verdict skipped." },
	{ "cross_check_give_up", CONFIG_DURATION, "24h", 60 * SEC, 30 * DAY,
	  NULL, 0, OFF(cross_check_give_up_ms),
	  "After failing to reach the API for this long, publish the event "
	  "with verdict unverified instead of waiting longer." },
	{ "api_pool_size", CONFIG_INT, "8", 1, 64, NULL, 0, OFF(api_pool_size),
	  "Keep-alive connections to the API, and so the most requests in "
	  "flight at once." },
	{ "api_rate_limit", CONFIG_INT, "20", 1, 10000, NULL, 0,
	  OFF(api_rate_limit),
	  "Most API requests per second (token bucket); GOV.UK Pay "
	  "rate-limits per account." },
	{ "api_timeout", CONFIG_DURATION, "10s", SEC, 120 * SEC, NULL, 0,
	  OFF(api_timeout_ms),
	  "Time allowed for one API answer before it is retried." },
	{ "api_connect_timeout", CONFIG_DURATION, "5s", SEC / 10, 60 * SEC, NULL,
	  0, OFF(api_connect_timeout_ms),
	  "Time allowed to connect (TCP and TLS) to the API." },
	{ "publish_endpoint", CONFIG_ZMQ, "tcp://127.0.0.1:5556", 0, 0, NULL, 0,
	  OFF(publish_endpoint), "ZeroMQ live feed (bound, XPUB)." },
	{ "replay_endpoint", CONFIG_ZMQ, "tcp://127.0.0.1:5557", 0, 0, NULL, 0,
	  OFF(replay_endpoint), "ZeroMQ replay endpoint (bound, ROUTER)." },
	{ "curve_secret_key_file", CONFIG_FILE, "", 0, 0, NULL,
	  CONFIG_UNSET_OK | CONFIG_SECRET, OFF(curve_secret_key_file),
	  "Server CURVE secret key (payhook keygen); with curve_clients_file "
	  "both ZeroMQ endpoints require CURVE." },
	{ "curve_clients_file", CONFIG_FILE, "", 0, 0, NULL, CONFIG_UNSET_OK,
	  OFF(curve_clients_file),
	  "Client CURVE public keys admitted, one Z85 key per line." },
	{ "include_pii", CONFIG_BOOL, "off", 0, 0, NULL, 0, OFF(include_pii),
	  "on: events carry email, cardholder name and billing address." },
	{ "log_level", CONFIG_ENUM, "info", 0, 0, config_level_choices, 0,
	  OFF(log_level), "debug, info, warn or error." },
};

#define CONFIG_N UTIL_ARRAY_LEN(config_table)

const size_t config_table_len = CONFIG_N;

/* Where each value came from, for error messages. */
struct config_origin {
	char	 where[300];
	int	 set;		/* set by file or env (not a default) */
};

static const struct config_entry *
config_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < CONFIG_N; i++) {
		if (strlen(config_table[i].name) == len &&
		    strncmp(config_table[i].name, name, len) == 0)
			return &config_table[i];
	}
	return NULL;
}

const char *
config_type_expect(const struct config_entry *e, char *buf, size_t len)
{
	size_t i, n;

	switch (e->type) {
	case CONFIG_STRING:
		return "a string";
	case CONFIG_FILE:
		return "a readable regular file";
	case CONFIG_DIR:
		return "a directory path";
	case CONFIG_ADDR:
		return "host:port with a numeric IP such as 127.0.0.1:8080 "
		    "(IPv6 as [::1]:8080), port 0 to 65535 (0 picks a free "
		    "port)";
	case CONFIG_URLPATH:
		return "an absolute path such as /webhooks/govuk-pay "
		    "(letters, digits, / - _ . ~)";
	case CONFIG_URL:
		return "an http:// or https:// URL with a host";
	case CONFIG_ZMQ:
		return "a ZeroMQ endpoint tcp://host:port or ipc:///path";
	case CONFIG_BOOL:
		return "on or off";
	case CONFIG_INT:
		xsnprintf(buf, len, "an integer from %lld to %lld",
		    (long long)e->min, (long long)e->max);
		return buf;
	case CONFIG_SIZE:
		xsnprintf(buf, len, "a size from %lld to %lld bytes "
		    "(suffixes k, m, g)", (long long)e->min, (long long)e->max);
		return buf;
	case CONFIG_DURATION:
		xsnprintf(buf, len, "a duration from %llds to %llds "
		    "(suffixes ms, s, m, h, d)", (long long)(e->min / 1000),
		    (long long)(e->max / 1000));
		return buf;
	case CONFIG_ENUM:
		n = (size_t)xsnprintf(buf, len, "one of");
		for (i = 0; e->choices[i] != NULL && n < len; i++)
			n += (size_t)xsnprintf(buf + n, len - n, "%s %s",
			    i == 0 ? "" : ",", e->choices[i]);
		return buf;
	}
	return "a valid value";
}

static int
config_parse_scaled(const char *v, const char *const units[],
    const int64_t scale[], int64_t *out)
{
	char num[32];
	size_t i, n;
	int64_t x;

	for (n = 0; v[n] >= '0' && v[n] <= '9'; n++)
		;
	if (n == 0 || n >= sizeof num)
		return -1;
	memcpy(num, v, n);
	num[n] = '\0';
	if (util_parse_int64(num, 0, INT64_MAX, &x) != 0)
		return -1;
	for (i = 0; units[i] != NULL; i++) {
		if (strcasecmp(v + n, units[i]) == 0) {
			if (x > INT64_MAX / scale[i])
				return -1;
			*out = x * scale[i];
			return 0;
		}
	}
	return -1;
}

static int
config_valid_host(const char *h)
{
	size_t i;

	if (*h == '\0' || strlen(h) > 253)
		return 0;
	for (i = 0; h[i] != '\0'; i++) {
		if (!isalnum((unsigned char)h[i]) && h[i] != '.' &&
		    h[i] != '-' && h[i] != ':' && h[i] != '*')
			return 0;
	}
	return 1;
}

int
config_split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
	const char *colon, *hs, *he;
	int64_t p;

	if (addr[0] == '[') {
		if ((he = strchr(addr, ']')) == NULL || he[1] != ':')
			return -1;
		hs = addr + 1;
		colon = he + 1;
	} else {
		if ((colon = strrchr(addr, ':')) == NULL ||
		    memchr(addr, ':', (size_t)(colon - addr)) != NULL)
			return -1;
		hs = addr;
		he = colon;
	}
	if (he == hs || (size_t)(he - hs) >= hostlen)
		return -1;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (!config_valid_host(host))
		return -1;
	if (util_parse_int64(colon + 1, 0, 65535, &p) != 0)
		return -1;
	*port = (int)p;
	return 0;
}

static int
config_valid_urlpath(const char *v)
{
	size_t i;

	if (v[0] != '/' || strlen(v) > 200 || strstr(v, "//") != NULL ||
	    strstr(v, "/../") != NULL || strstr(v, "/./") != NULL)
		return 0;
	for (i = 0; v[i] != '\0'; i++) {
		if (!isalnum((unsigned char)v[i]) && strchr("/-_.~", v[i]) ==
		    NULL)
			return 0;
	}
	return 1;
}

static int
config_valid_url(const char *v)
{
	const char *p, *end;
	char hostport[300];
	size_t n;

	if (strncmp(v, "https://", 8) == 0)
		p = v + 8;
	else if (strncmp(v, "http://", 7) == 0)
		p = v + 7;
	else
		return 0;
	end = p + strcspn(p, "/?#");
	if (*end == '?' || *end == '#' || strchr(v, ' ') != NULL ||
	    strchr(p, '@') != NULL)
		return 0;
	n = (size_t)(end - p);
	if (n == 0 || n >= sizeof hostport)
		return 0;
	memcpy(hostport, p, n);
	hostport[n] = '\0';
	if (strchr(hostport, ':') == NULL || hostport[0] == '[') {
		if (hostport[0] == '[')
			return strchr(hostport, ']') != NULL;
		return config_valid_host(hostport);
	}
	{
		char host[256];
		int port;

		return config_split_addr(hostport, host, sizeof host, &port) ==
		    0 && port > 0;
	}
}

static int
config_valid_zmq(const char *v)
{
	char host[256];
	int port;

	if (strncmp(v, "tcp://", 6) == 0) {
		if (strcmp(v + strlen(v) - 2, ":*") == 0)
			return 1;
		return config_split_addr(v + 6, host, sizeof host, &port) == 0;
	}
	if (strncmp(v, "ipc://", 6) == 0)
		return v[6] == '/' && strlen(v) < 100;
	return 0;
}

/* Parse one value into the struct; 0 or -1 (the caller words the error). */
static int
config_set(struct config *cfg, const struct config_entry *e, const char *v)
{
	static const char *const size_units[] = { "", "k", "kb", "kib", "m",
	    "mb", "mib", "g", "gb", "gib", NULL };
	static const int64_t size_scale[] = { 1, KIB, KIB, KIB, MIB, MIB, MIB,
	    1024 * MIB, 1024 * MIB, 1024 * MIB };
	static const char *const dur_units[] = { "", "ms", "s", "m", "h", "d",
	    NULL };
	static const int64_t dur_scale[] = { SEC, 1, SEC, 60 * SEC,
	    3600 * SEC, DAY };
	char *field = (char *)cfg + e->offset;
	struct stat st;
	int64_t x;
	size_t i;

	if (*v == '\0' && (e->flags & (CONFIG_UNSET_OK | CONFIG_REQUIRED))) {
		free(*(char **)field);
		*(char **)field = NULL;
		return 0;
	}
	switch (e->type) {
	case CONFIG_FILE:
		if (stat(v, &st) != 0 || !S_ISREG(st.st_mode) ||
		    access(v, R_OK) != 0)
			return -1;
		break;
	case CONFIG_DIR:
		if (*v == '\0' || (stat(v, &st) == 0 && !S_ISDIR(st.st_mode)))
			return -1;
		break;
	case CONFIG_ADDR: {
		unsigned char ip[16];
		char host[256];
		int port;

		/* Listeners take numeric addresses only: no DNS at start-up. */
		if (config_split_addr(v, host, sizeof host, &port) != 0 ||
		    (strcmp(host, "localhost") != 0 && strcmp(host, "*") != 0 &&
		    inet_pton(AF_INET, host, ip) != 1 &&
		    inet_pton(AF_INET6, host, ip) != 1))
			return -1;
		break;
	}
	case CONFIG_URLPATH:
		if (!config_valid_urlpath(v))
			return -1;
		break;
	case CONFIG_URL:
		if (!config_valid_url(v))
			return -1;
		break;
	case CONFIG_ZMQ:
		if (!config_valid_zmq(v))
			return -1;
		break;
	case CONFIG_STRING:
		break;
	case CONFIG_BOOL:
		if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 ||
		    strcmp(v, "yes") == 0 || strcmp(v, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 ||
		    strcmp(v, "no") == 0 || strcmp(v, "0") == 0)
			*(int *)field = 0;
		else
			return -1;
		return 0;
	case CONFIG_INT:
		if (util_parse_int64(v, e->min, e->max, &x) != 0)
			return -1;
		*(int64_t *)field = x;
		return 0;
	case CONFIG_SIZE:
	case CONFIG_DURATION:
		if (config_parse_scaled(v, e->type == CONFIG_SIZE ? size_units :
		    dur_units, e->type == CONFIG_SIZE ? size_scale : dur_scale,
		    &x) != 0 || x < e->min || x > e->max)
			return -1;
		*(int64_t *)field = x;
		return 0;
	case CONFIG_ENUM:
		for (i = 0; e->choices[i] != NULL; i++) {
			if (strcmp(v, e->choices[i]) == 0) {
				*(int *)field = (int)i;
				return 0;
			}
		}
		return -1;
	}
	free(*(char **)field);
	*(char **)field = xstrdup(v);
	return 0;
}

/* The value as it may appear in an error: secret files are paths, safe. */
static char *
config_quote(const char *v)
{
	char buf[128];
	size_t i, n = 0;

	for (i = 0; v[i] != '\0' && n < sizeof buf - 4; i++) {
		unsigned char c = (unsigned char)v[i];

		buf[n++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (v[i] != '\0') {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return xstrdup(buf);
}

static int
config_apply(struct config *cfg, const struct config_entry *e, const char *v,
    const char *where, struct config_origin *origin, char **cause)
{
	char expect[160], *q;

	if (config_set(cfg, e, v) != 0) {
		q = config_quote(v);
		*cause = xasprintf("config: %s = \"%s\" (%s): expected %s",
		    e->name, q, where, config_type_expect(e, expect,
		    sizeof expect));
		free(q);
		return -1;
	}
	xsnprintf(origin->where, sizeof origin->where, "%s", where);
	origin->set = 1;
	return 0;
}

static char *
config_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	    e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static int
config_read_file(struct config *cfg, const char *path,
    struct config_origin *origins, char **cause)
{
	char *buf, *line, *next, *eq, *key, *val, where[300];
	const struct config_entry *e;
	size_t len, idx;
	int lineno = 0, ret = -1;

	if (util_read_file(path, 1024 * 1024, &buf, &len, cause) != 0) {
		char *inner = *cause;

		*cause = xasprintf("config: %s", inner);
		free(inner);
		return -1;
	}
	if (memchr(buf, '\0', len) != NULL) {
		*cause = xasprintf("config: %s: contains a NUL byte", path);
		goto out;
	}
	for (line = buf; line != NULL; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		key = config_trim(line);
		if (*key == '\0' || *key == '#')
			continue;
		if ((eq = strchr(key, '=')) == NULL) {
			*cause = xasprintf("config: %s line %d: expected "
			    "key = value", path, lineno);
			goto out;
		}
		*eq = '\0';
		key = config_trim(key);
		val = config_trim(eq + 1);
		len = strlen(val);
		if (len >= 2 && val[0] == '"' && val[len - 1] == '"') {
			val[len - 1] = '\0';
			val++;
		}
		if ((e = config_find(key, strlen(key))) == NULL) {
			char *q = config_quote(key);

			*cause = xasprintf("config: %s line %d: unknown key "
			    "\"%s\" (payhook serve --help lists the keys)",
			    path, lineno, q);
			free(q);
			goto out;
		}
		idx = (size_t)(e - config_table);
		if (origins[idx].set) {
			*cause = xasprintf("config: %s line %d: %s is already "
			    "set (%s)", path, lineno, e->name,
			    origins[idx].where);
			goto out;
		}
		xsnprintf(where, sizeof where, "%s line %d", path, lineno);
		if (config_apply(cfg, e, val, where, &origins[idx], cause) != 0)
			goto out;
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

static int
config_read_env(struct config *cfg, char *const *envp,
    struct config_origin *origins, char **cause)
{
	const struct config_entry *e;
	char name[64], where[96];
	const char *eq;
	size_t i, n;

	for (; envp != NULL && *envp != NULL; envp++) {
		if (strncmp(*envp, "PAYHOOK_", 8) != 0 ||
		    (eq = strchr(*envp, '=')) == NULL)
			continue;
		n = (size_t)(eq - (*envp + 8));
		if (n == 0 || n >= sizeof name)
			continue;
		for (i = 0; i < n; i++)
			name[i] = (char)tolower((unsigned char)(*envp)[8 + i]);
		name[n] = '\0';
		if ((e = config_find(name, n)) == NULL)
			continue;	/* PAYHOOK_BIN and friends are not keys */
		xsnprintf(where, sizeof where, "environment PAYHOOK_%.*s",
		    (int)n, *envp + 8);
		origins[e - config_table].set = 0;
		if (config_apply(cfg, e, eq + 1, where,
		    &origins[e - config_table], cause) != 0)
			return -1;
	}
	return 0;
}

/* The URL's host is exactly localhost, ::1 or an IPv4 address in 127/8. */
static int
config_is_loopback_url(const char *url)
{
	const char *h = url + strlen("http://");
	char host[256];
	struct in_addr a;
	size_t n;

	if (strncmp(h, "[::1]", 5) == 0)
		return h[5] == '\0' || h[5] == ':' || h[5] == '/';
	n = strcspn(h, ":/");
	if (n == 0 || n >= sizeof host)
		return 0;
	memcpy(host, h, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		return 1;
	return inet_pton(AF_INET, host, &a) == 1 &&
	    (ntohl(a.s_addr) >> 24) == 127;
}

static int
config_check_rules(const struct config *cfg,
    const struct config_origin *origins, char **cause)
{
	size_t i;

	for (i = 0; i < CONFIG_N; i++) {
		const struct config_entry *e = &config_table[i];
		char *const *field = (char *const *)((const char *)cfg +
		    e->offset);

		if ((e->flags & CONFIG_REQUIRED) && *field == NULL) {
			*cause = xasprintf("config: %s is required: %s",
			    e->name, e->help);
			return -1;
		}
	}
	if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
		*cause = xasprintf("config: tls_cert_file and tls_key_file "
		    "must be set together (%s is missing)",
		    cfg->tls_cert_file == NULL ? "tls_cert_file" :
		    "tls_key_file");
		return -1;
	}
	if ((cfg->curve_secret_key_file == NULL) !=
	    (cfg->curve_clients_file == NULL)) {
		*cause = xasprintf("config: curve_secret_key_file and "
		    "curve_clients_file must be set together (%s is missing)",
		    cfg->curve_clients_file == NULL ? "curve_clients_file" :
		    "curve_secret_key_file");
		return -1;
	}
	if (cfg->journal_max_bytes > 0 && cfg->journal_max_bytes < 64 * KIB) {
		*cause = xasprintf("config: journal_max_bytes = %lld: expected "
		    "0 (no cap) or at least 65536 bytes",
		    (long long)cfg->journal_max_bytes);
		return -1;
	}
	if (cfg->cross_check && cfg->api_key_file == NULL) {
		*cause = xasprintf("config: api_key_file is required while "
		    "cross_check = on (set cross_check = off to publish "
		    "events with verdict skipped)");
		return -1;
	}
	if (strncmp(cfg->api_base_url, "http://", 7) == 0 &&
	    !config_is_loopback_url(cfg->api_base_url)) {
		*cause = xasprintf("config: api_base_url = \"%s\": plain http "
		    "is only allowed for a loopback host; expected https://",
		    cfg->api_base_url);
		return -1;
	}
	if (strcmp(cfg->listen, cfg->admin_listen) == 0 &&
	    strcmp(cfg->listen + strlen(cfg->listen) - 2, ":0") != 0) {
		*cause = xasprintf("config: admin_listen = \"%s\": must differ "
		    "from listen", cfg->admin_listen);
		return -1;
	}
	if (strcmp(cfg->publish_endpoint, cfg->replay_endpoint) == 0 &&
	    strcmp(cfg->publish_endpoint + strlen(cfg->publish_endpoint) - 2,
	    ":*") != 0) {
		*cause = xasprintf("config: replay_endpoint = \"%s\": must "
		    "differ from publish_endpoint", cfg->replay_endpoint);
		return -1;
	}
	(void)origins;
	return 0;
}

struct config *
config_load(const char *path, char *const *envp, char **cause)
{
	struct config_origin origins[CONFIG_N];
	struct config *cfg;
	size_t i;

	memset(origins, 0, sizeof origins);
	cfg = xcalloc(1, sizeof *cfg);
	for (i = 0; i < CONFIG_N; i++) {
		if (config_set(cfg, &config_table[i], config_table[i].def) != 0)
			abort();	/* a bad default is a build bug */
		xsnprintf(origins[i].where, sizeof origins[i].where, "default");
	}
	if (path != NULL && config_read_file(cfg, path, origins, cause) != 0)
		goto fail;
	if (config_read_env(cfg, envp, origins, cause) != 0)
		goto fail;
	if (config_check_rules(cfg, origins, cause) != 0)
		goto fail;
	return cfg;
fail:
	config_free(cfg);
	return NULL;
}

void
config_free(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < CONFIG_N; i++) {
		switch (config_table[i].type) {
		case CONFIG_BOOL:
		case CONFIG_INT:
		case CONFIG_SIZE:
		case CONFIG_DURATION:
		case CONFIG_ENUM:
			break;
		default:
			free(*(char **)((char *)cfg + config_table[i].offset));
			break;
		}
	}
	free(cfg);
}
