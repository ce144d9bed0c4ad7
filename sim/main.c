/*
 * main.c: payhook-sim entry point: parses the option table, binds the
 * listener, wires store, scheduler, webhook sender, API and control
 * surface onto one event_base and runs it. Main thread only; it must do
 * nothing but wiring (the behaviour lives in the other files).
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "sim/api.h"
#include "sim/sched.h"
#include "sim/sim.h"
#include "sim/store.h"
#include "sim/webhook.h"

enum opt_type { OPT_STR, OPT_INT, OPT_DOUBLE };

struct opt {
	const char	*name;
	enum opt_type	 type;
	const char	*metavar;
	const char	*def;
	double		 min, max;
	size_t		 off;
	int		 required;
	const char	*help;
};

#define CFG(f) offsetof(struct sim_config, f)

static const struct opt opts[] = {
	{ "listen", OPT_STR, "HOST:PORT", NULL, 0, 0, CFG(listen), 1,
	  "address for the API and /_sim/ (port 0 picks a free port; the "
	  "bound address is printed as 'payhook-sim listening on HOST:PORT')" },
	{ "api-key-file", OPT_STR, "FILE", NULL, 0, 0, CFG(api_key_file), 1,
	  "accepted API keys, one per line; api_live_... keys act as the live "
	  "account, others as the test account" },
	{ "webhook-url", OPT_STR, "URL", NULL, 0, 0, CFG(webhook_url), 0,
	  "deliver webhooks here (http or https); without it none are sent" },
	{ "signing-secret-file", OPT_STR, "FILE", NULL, 0, 0,
	  CFG(signing_secret_file), 0,
	  "webhook signing secret (first line); required with --webhook-url" },
	{ "webhook-ca-file", OPT_STR, "FILE", NULL, 0, 0, CFG(webhook_ca_file),
	  0, "CA bundle to verify an https --webhook-url (default: system)" },
	{ "webhook-events", OPT_STR, "LIST", "", 0, 0, CFG(webhook_events), 0,
	  "comma-separated subscribed event types (default: succeeded, "
	  "captured, refunded, failed, expired)" },
	{ "time-scale", OPT_DOUBLE, "X", "1", 0.001, 1e7, CFG(time_scale), 0,
	  "simulated time runs X times faster than real time (expiry, "
	  "capture, refunds, webhook retry schedule)" },
	{ "public-url", OPT_STR, "URL", NULL, 0, 0, CFG(public_url), 0,
	  "base of the links in API responses (default http://<bound addr>)" },
	{ "webhook-timeout-ms", OPT_INT, "MS", "3000", 1, 600000,
	  CFG(webhook_timeout_ms), 0,
	  "per-attempt connect/response timeout, in real milliseconds" },
	{ "webhook-concurrency", OPT_INT, "N", "20", 1, 1000,
	  CFG(webhook_concurrency), 0, "deliveries in flight at once" },
	{ "webhook-jitter-ms", OPT_INT, "MS", "0", 0, 60000,
	  CFG(webhook_jitter_ms), 0,
	  "each delivery waits a random 0..MS real milliseconds before it is "
	  "sent, as GOV.UK Pay's sender threads pick messages up on their own "
	  "schedules (arrival order is not guaranteed); 0: sent at once" },
	{ "duplicate-rate", OPT_DOUBLE, "R", "0", 0, 1, CFG(duplicate_rate), 0,
	  "probability that a message is also delivered a second time" },
	{ "capture-delay-ms", OPT_INT, "MS", "1000", 0, 86400000,
	  CFG(capture_delay_ms), 0,
	  "simulated time from capture approval to card_payment_captured" },
	{ "refund-delay-ms", OPT_INT, "MS", "1000", 0, 86400000,
	  CFG(refund_delay_ms), 0,
	  "simulated time from refund request to card_payment_refunded" },
	{ "max-log", OPT_INT, "N", "100000", 1, 100000000, CFG(max_log), 0,
	  "webhook messages kept in the /_sim/webhooks log" },
	{ "reject-urls", OPT_INT, "0|1", "1", 0, 1, CFG(reject_urls), 0,
	  "reject reference/description containing URLs (documented rule; "
	  "publicapi's code does not enforce it)" },
	{ "seed", OPT_INT, "N", "0", 0, 9e18, CFG(seed), 0,
	  "seed for fault and duplicate randomness (0: from the clock)" },
	{ "log-level", OPT_STR, "LEVEL", "info", 0, 0, CFG(log_level), 0,
	  "debug, info, warn or error (logs go to stderr)" },
};

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: payhook-sim --listen HOST:PORT --api-key-file F "
	    "[--webhook-url URL --signing-secret-file F] [--time-scale X] "
	    "[options]\n\nA GOV.UK Pay simulator: the public API, a webhook "
	    "sender and a /_sim/ control surface.\nSee docs/simulator.md.\n\n");
	for (i = 0; i < UTIL_ARRAY_LEN(opts); i++) {
		fprintf(f, "  --%s %s\n      %s", opts[i].name, opts[i].metavar,
		    opts[i].help);
		if (opts[i].required)
			fprintf(f, " (required)");
		else if (opts[i].def != NULL && *opts[i].def != '\0')
			fprintf(f, " (default %s)", opts[i].def);
		fprintf(f, "\n");
	}
	fprintf(f, "  --help\n      print this help\n  --version\n      print "
	    "the version\n");
}

static int
opt_set(struct sim_config *cfg, const struct opt *o, const char *val)
{
	char *p = (char *)cfg + o->off, *end;
	int64_t iv;
	double dv;

	switch (o->type) {
	case OPT_STR:
		free(*(char **)p);
		*(char **)p = xstrdup(val);
		return 0;
	case OPT_INT:
		if (util_parse_int64(val, (int64_t)o->min, (int64_t)o->max,
		    &iv) != 0)
			return -1;
		*(int64_t *)p = iv;
		return 0;
	case OPT_DOUBLE:
		dv = strtod(val, &end);
		if (*val == '\0' || *end != '\0' || !(dv >= o->min) ||
		    dv > o->max)
			return -1;
		*(double *)p = dv;
		return 0;
	}
	return -1;
}

static void
parse_args(int argc, char **argv, struct sim_config *cfg)
{
	struct option lopts[UTIL_ARRAY_LEN(opts) + 3];
	size_t i, n = UTIL_ARRAY_LEN(opts);
	int c, idx;

	for (i = 0; i < n; i++) {
		lopts[i].name = opts[i].name;
		lopts[i].has_arg = required_argument;
		lopts[i].flag = NULL;
		lopts[i].val = 1000 + (int)i;
		if (opts[i].def != NULL && opt_set(cfg, &opts[i],
		    opts[i].def) != 0)
			fatalx(2, "bad default for --%s", opts[i].name);
	}
	lopts[n] = (struct option){ "help", no_argument, NULL, 'h' };
	lopts[n + 1] = (struct option){ "version", no_argument, NULL, 'V' };
	lopts[n + 2] = (struct option){ NULL, 0, NULL, 0 };
	while ((c = getopt_long(argc, argv, "hV", lopts, &idx)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == 'V') {
			printf("payhook-sim %s\n", PAYHOOK_VERSION);
			exit(0);
		}
		if (c < 1000 || c >= 1000 + (int)n) {
			usage(stderr);
			exit(2);
		}
		if (opt_set(cfg, &opts[c - 1000], optarg) != 0)
			fatalx(2, "--%s: invalid value '%s' (expected %s)",
			    opts[c - 1000].name, optarg, opts[c - 1000].metavar);
	}
	if (optind != argc)
		fatalx(2, "unexpected argument '%s'", argv[optind]);
	for (i = 0; i < n; i++) {
		if (opts[i].required &&
		    *(char **)((char *)cfg + opts[i].off) == NULL)
			fatalx(2, "--%s is required (see --help)", opts[i].name);
	}
}

static void
load_keys(struct sim *sim)
{
	char *buf, *p, *line, *cause = NULL;
	size_t len;

	if (util_read_file(sim->cfg.api_key_file, 1 << 20, &buf, &len,
	    &cause) != 0)
		fatalx(2, "--api-key-file: %s", cause);
	for (p = buf; (line = strsep(&p, "\n")) != NULL;) {
		line[strcspn(line, "\r \t")] = '\0';
		if (*line == '\0' || *line == '#')
			continue;
		sim->api_keys = xreallocarray(sim->api_keys,
		    sim->n_api_keys + 1, sizeof *sim->api_keys);
		sim->api_keys[sim->n_api_keys++] = xstrdup(line);
	}
	free(buf);
	if (sim->n_api_keys == 0)
		fatalx(2, "--api-key-file: %s holds no keys",
		    sim->cfg.api_key_file);
}

static void
bind_listener(struct sim *sim)
{
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[256], addr[INET6_ADDRSTRLEN], *colon;
	int64_t port;
	int v6;

	xsnprintf(host, sizeof host, "%s", sim->cfg.listen);
	if ((colon = strrchr(host, ':')) == NULL ||
	    util_parse_int64(colon + 1, 0, 65535, &port) != 0)
		fatalx(2, "--listen: expected HOST:PORT, got '%s'",
		    sim->cfg.listen);
	*colon = '\0';
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	bound = evhttp_bind_socket_with_handle(sim->http, host,
	    (unsigned short)port);
	if (bound == NULL)
		fatalx(2, "--listen: cannot bind %s", sim->cfg.listen);
	if (getsockname(evhttp_bound_socket_get_fd(bound),
	    (struct sockaddr *)&ss, &sl) != 0)
		fatalx(2, "--listen: getsockname failed");
	v6 = ss.ss_family == AF_INET6;
	if (v6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		    addr, sizeof addr);
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr,
		    addr, sizeof addr);
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	if (sim->cfg.public_url != NULL)
		xsnprintf(sim->base_url, sizeof sim->base_url, "%s",
		    sim->cfg.public_url);
	else
		xsnprintf(sim->base_url, sizeof sim->base_url, "http://%s%s%s:%d",
		    v6 ? "[" : "", addr, v6 ? "]" : "", (int)port);
	sim->base_url[strcspn(sim->base_url, "\r\n")] = '\0';
	if (strlen(sim->base_url) > 0 &&
	    sim->base_url[strlen(sim->base_url) - 1] == '/')
		sim->base_url[strlen(sim->base_url) - 1] = '\0';
	printf("payhook-sim listening on %s%s%s:%d\n", v6 ? "[" : "", addr,
	    v6 ? "]" : "", (int)port);
	fflush(stdout);
	log_info("listening", "addr=%s%s%s:%d base_url=%s", v6 ? "[" : "",
	    addr, v6 ? "]" : "", (int)port, sim->base_url);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct sim *sim = arg;

	log_info("shutdown", "signal=%d", (int)sig);
	event_base_loopexit(sim->base, NULL);
}

static void
teardown(struct sim *sim)
{
	size_t i;
	char **s;

	api_free(sim->api);
	webhook_free(sim->webhook);
	sched_free(sim->sched);
	store_free(sim->store);
	if (sim->http != NULL)
		evhttp_free(sim->http);
	for (i = 0; i < sim->n_api_keys; i++)
		free(sim->api_keys[i]);
	free(sim->api_keys);
	for (i = 0; i < UTIL_ARRAY_LEN(opts); i++) {
		if (opts[i].type == OPT_STR) {
			s = (char **)((char *)&sim->cfg + opts[i].off);
			free(*s);
		}
	}
}

int
main(int argc, char **argv)
{
	struct event *sigint, *sigterm;
	static struct sim sim;
	char *cause = NULL;
	int level;

	parse_args(argc, argv, &sim.cfg);
	if ((level = log_level_parse(sim.cfg.log_level)) < 0)
		fatalx(2, "--log-level: expected debug, info, warn or error");
	log_init((enum log_level)level, "payhook-sim");
	signal(SIGPIPE, SIG_IGN);
	load_keys(&sim);
	sim.rng = sim.cfg.seed ? (uint64_t)sim.cfg.seed :
	    (uint64_t)util_now_ms() ^ 0x9e3779b97f4a7c15ULL;
	sim.clock_wall0_ms = util_now_ms();
	sim.clock_mono0_us = util_mono_ms() * 1000;
	if ((sim.base = event_base_new()) == NULL ||
	    (sim.http = evhttp_new(sim.base)) == NULL)
		fatalx(1, "cannot create the event loop");
	evhttp_set_max_body_size(sim.http, 1 << 20);
	evhttp_set_allowed_methods(sim.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
	    EVHTTP_REQ_HEAD);
	evhttp_set_gencb(sim.http, api_route_cb, &sim);
	if ((sim.sched = sched_new(&sim)) == NULL)
		fatalx(1, "cannot create the scheduler timer");
	sim.store = store_new();
	sim.api = api_new(&sim);
	if ((sim.webhook = webhook_new(&sim, &cause)) == NULL)
		fatalx(2, "%s", cause);
	bind_listener(&sim);
	sigint = evsignal_new(sim.base, SIGINT, signal_cb, &sim);
	sigterm = evsignal_new(sim.base, SIGTERM, signal_cb, &sim);
	if (sigint == NULL || sigterm == NULL || event_add(sigint, NULL) != 0 ||
	    event_add(sigterm, NULL) != 0)
		fatalx(1, "cannot install signal handlers");
	if (event_base_dispatch(sim.base) < 0)
		log_error("event_loop_failed", NULL);
	event_free(sigint);
	event_free(sigterm);
	teardown(&sim);
	event_base_free(sim.base);
	return 0;
}
