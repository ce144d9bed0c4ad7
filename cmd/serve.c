/*
 * serve.c: `payhook serve`: load the configuration, open the journal, bind
 * the listeners and run the event loop until SIGTERM/SIGINT, then stop
 * accepting, finish in-flight commits and replies, and exit 0. SIGHUP
 * re-reads the signing secrets and wakes the pipeline stages (for rows an
 * operator re-drove). Main thread. Configuration errors exit 2; a failed
 * fsync of the journal drains the same way and exits 3 (restart it).
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "cmd/cmd.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/crosscheck.h"
#include "dispatch/publisher.h"
#include "journal/journal.h"
#include "receiver/admin.h"
#include "receiver/listener.h"
#include "receiver/server.h"
#include "receiver/signature.h"

extern char **environ;

#define SERVE_PRUNE_MS		(60 * 60 * 1000)
#define SERVE_DRAIN_MS		2000
#define SERVE_EXIT_JOURNAL_LOST	3	/* a failed fsync: restart to recover */
#define SERVE_FD_RESERVE	256	/* descriptors kept for all but the
					   public listener's connections */

struct serve {
	struct config		*cfg;
	struct event_base	*base;
	struct journal		*journal;
	struct signature	*sig;
	struct server		*server;
	struct admin		*admin;
	struct crosscheck	*crosscheck;
	struct publisher	*publisher;
	struct event		*ev_term, *ev_int, *ev_hup, *prune, *drain;
	int64_t			 drain_deadline;
	int64_t			 counts[JOURNAL_NSTATES];
	int64_t			 counts_ms;
	int			 stopping;	/* signals seen */
	int			 draining;	/* serve_drain ran */
	int			 running;	/* in event_base_dispatch */
	int			 status;	/* exit status */
};

static void
serve_usage(FILE *f)
{
	fprintf(f, "usage: payhook serve [-c FILE] [--check-config] "
	    "[--print-config]\n\n"
	    "Run the webhook service in the foreground, logging to stderr.\n"
	    "  -c FILE          read key = value settings from FILE\n"
	    "  --check-config   validate the configuration (and secret files) "
	    "and exit\n"
	    "  --print-config   print the effective configuration and exit\n"
	    "Exit status 2 means a configuration error (one line says which "
	    "key and why);\n3 that an fsync of the journal failed (restart it: "
	    "the journal is recovered at start).\n\n");
	config_print_help(f);
}

static void
serve_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct serve *sv = arg;
	struct timeval tv = { 0, 50 * 1000 };

	if (server_connections(sv->server) == 0 ||
	    util_mono_ms() >= sv->drain_deadline) {
		event_base_loopexit(sv->base, NULL);
		return;
	}
	evtimer_add(sv->drain, &tv);
}

/* Stop accepting, answer what is in flight, then leave the loop. */
static void
serve_drain(struct serve *sv)
{
	struct timeval tv = { 0, 0 };

	if (sv->draining++)
		return;
	sv->drain_deadline = util_mono_ms() + SERVE_DRAIN_MS;
	/* The current pass's commits run first; replies then drain. */
	evtimer_add(sv->drain, &tv);
}

static void
serve_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct serve *sv = arg;

	if (sv->stopping++) {
		log_warn("shutdown_forced", "signal=%d", (int)sig);
		event_base_loopbreak(sv->base);
		return;
	}
	log_info("shutdown", "signal=%d connections=%d", (int)sig,
	    server_shutdown(sv->server));
	serve_drain(sv);
}

/*
 * The journal can make nothing durable any more (journal_lost): every
 * webhook from now on would be answered 503 while GOV.UK Pay's retries
 * pile up. Exit SERVE_EXIT_JOURNAL_LOST after draining, so the service
 * manager restarts payhook and the journal is opened (and recovered) anew;
 * a disk that keeps failing keeps it down, which /readyz and the restarts
 * show.
 */
static void
serve_fatal_cb(void *arg, const char *why)
{
	struct serve *sv = arg;

	sv->status = SERVE_EXIT_JOURNAL_LOST;
	log_error("journal_lost", "error=\"%s\" action=exit status=%d", why,
	    SERVE_EXIT_JOURNAL_LOST);
	/* Also called from server_free() at the end, when there is no loop
	 * left to drain: the exit status is all that changes then. */
	if (!sv->running || sv->draining)
		return;
	server_shutdown(sv->server);
	serve_drain(sv);
}

static void
serve_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct serve *sv = arg;
	char *cause = NULL;

	if (signature_load_file(sv->sig, sv->cfg->signing_secret_file,
	    &cause) != 0) {
		log_error("secrets_reload_failed", "key=signing_secret_file "
		    "error=\"%s\" kept=%d", cause, signature_count(sv->sig));
		free(cause);
		return;
	}
	log_info("secrets_reloaded", "key=signing_secret_file secrets=%d",
	    signature_count(sv->sig));
	/* An operator may have re-driven rows (payhook journal redrive). */
	crosscheck_wake(sv->crosscheck);
	publisher_wake(sv->publisher);
}

static void
serve_prune_cb(evutil_socket_t fd, short what, void *arg)
{
	struct serve *sv = arg;
	struct timeval tv = { SERVE_PRUNE_MS / 1000, 0 };
	char *cause = NULL;
	int64_t deleted = 0;

	if (journal_prune(sv->journal, util_now_ms(), &deleted, &cause) != 0) {
		log_warn("journal_prune_failed", "error=\"%s\"", cause);
		free(cause);
	} else if (deleted > 0)
		log_info("journal_pruned", "rows=%lld", (long long)deleted);
	evtimer_add(sv->prune, &tv);
}

/* Webhooks were committed: new rows to check, quarantined ones to alert.
 * With cross_check = off the accepted ones were stored with verdict
 * skipped at the door: they count as such verdicts. */
static void
serve_committed_cb(void *arg, int accepted, int quarantined)
{
	struct serve *sv = arg;

	if (!sv->cfg->cross_check)
		crosscheck_count_skipped(sv->crosscheck, accepted);
	crosscheck_wake(sv->crosscheck);
	publisher_wake(sv->publisher);
}

/* Rows became checked: publish them. */
static void
serve_checked_cb(void *arg)
{
	struct serve *sv = arg;

	publisher_wake(sv->publisher);
}

static int
serve_check_journal(void *arg, const char **why)
{
	struct serve *sv = arg;

	*why = "last commit failed";
	return server_journal_ok(sv->server) && !sv->stopping;
}

static int
serve_check_secrets(void *arg, const char **why)
{
	struct serve *sv = arg;

	*why = "no signing secret";
	return signature_count(sv->sig) > 0;
}

static struct serve *serve_gauge_sv;

static double
serve_state_rows(enum journal_state st)
{
	struct serve *sv = serve_gauge_sv;
	char *cause = NULL;
	int64_t now = util_mono_ms();

	if (now - sv->counts_ms > 500) {
		if (journal_count_states(sv->journal, sv->counts, &cause) != 0) {
			free(cause);
			return -1;
		}
		sv->counts_ms = now;
	}
	return (double)sv->counts[st];
}

static double
serve_gauge_received(void *arg)
{
	return serve_state_rows(JOURNAL_RECEIVED);
}

static double
serve_gauge_checked(void *arg)
{
	return serve_state_rows(JOURNAL_CHECKED);
}

static double
serve_gauge_published(void *arg)
{
	return serve_state_rows(JOURNAL_PUBLISHED);
}

static double
serve_gauge_quarantined(void *arg)
{
	return serve_state_rows(JOURNAL_QUARANTINED);
}

static double
serve_gauge_wal_bytes(void *arg)
{
	struct serve *sv = arg;
	char path[4096];
	struct stat st;

	xsnprintf(path, sizeof path, "%s-wal", journal_path(sv->journal));
	return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

static double
serve_gauge_wal_restarts(void *arg)
{
	return (double)journal_wal_restarts(((struct serve *)arg)->journal);
}

static double
serve_gauge_secrets(void *arg)
{
	return signature_count(((struct serve *)arg)->sig);
}

static void
serve_register_metrics(struct serve *sv)
{
	serve_gauge_sv = sv;
	metrics_gauge("payhook_journal_rows", "Journal rows by state.",
	    "state=\"received\"", serve_gauge_received, NULL);
	metrics_gauge("payhook_journal_rows", "Journal rows by state.",
	    "state=\"checked\"", serve_gauge_checked, NULL);
	metrics_gauge("payhook_journal_rows", "Journal rows by state.",
	    "state=\"published\"", serve_gauge_published, NULL);
	metrics_gauge("payhook_journal_rows", "Journal rows by state.",
	    "state=\"quarantined\"", serve_gauge_quarantined, NULL);
	metrics_gauge("payhook_signing_secrets", "Signing secrets loaded "
	    "(2 during a rotation).", NULL, serve_gauge_secrets, sv);
	metrics_gauge("payhook_journal_wal_bytes", "Size of the journal's "
	    "write-ahead log file (kept bounded by forced restarts).", NULL,
	    serve_gauge_wal_bytes, sv);
	metrics_counter_fn("payhook_journal_wal_restarts_total", "Times the "
	    "WAL was forced to start over under a steady load.", NULL,
	    serve_gauge_wal_restarts, sv);
}

/* Everything a configuration needs that config_load cannot see. */
static void
serve_check_files(struct serve *sv)
{
	char *cause = NULL, *buf = NULL;
	SSL_CTX *tls;
	size_t len;

	sv->sig = signature_new();
	if (signature_load_file(sv->sig, sv->cfg->signing_secret_file,
	    &cause) != 0)
		fatalx(2, "config: signing_secret_file = \"%s\": %s",
		    sv->cfg->signing_secret_file, cause);
	if (sv->cfg->tls_cert_file != NULL) {
		if ((tls = listener_tls_new(sv->cfg->tls_cert_file,
		    sv->cfg->tls_key_file, &cause)) == NULL)
			fatalx(2, "%s", cause);
		listener_tls_free(tls);
	}
	if (sv->cfg->api_key_file != NULL) {
		if (util_read_file(sv->cfg->api_key_file, 4096, &buf, &len,
		    &cause) != 0)
			fatalx(2, "config: api_key_file = \"%s\": %s",
			    sv->cfg->api_key_file, cause);
		free(buf);
	}
}

/*
 * Every connection takes a descriptor, and so do the journal's connections,
 * its WAL and index, ZeroMQ, the API client and the admin listener. Out of
 * descriptors, accept(2) fails, and so could the journal's next open. So
 * the soft open-files limit is raised as far as max_connections needs (up
 * to the hard limit, as redis and nginx do); when it cannot go that far,
 * the connection cap comes down to what the limit leaves after the rest
 * (accepting then pauses at the cap and clients wait in the kernel's
 * queue), with a warning naming both numbers.
 */
static void
serve_fd_budget(struct config *cfg)
{
	struct rlimit rl, nl;
	rlim_t want = (rlim_t)cfg->max_connections + SERVE_FD_RESERVE;
	int64_t cap;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= want)
		return;
	nl = rl;
	nl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ?
	    want : rl.rlim_max;
	if (nl.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &nl) == 0) {
		log_info("nofile_raised", "from=%llu to=%llu",
		    (unsigned long long)rl.rlim_cur,
		    (unsigned long long)nl.rlim_cur);
		rl = nl;
	}
	if (rl.rlim_cur >= want)
		return;
	cap = rl.rlim_cur > 2 * SERVE_FD_RESERVE ?
	    (int64_t)rl.rlim_cur - SERVE_FD_RESERVE : (int64_t)rl.rlim_cur / 2;
	if (cap < 1)
		cap = 1;
	log_warn("max_connections_lowered", "max_connections=%lld "
	    "effective=%lld nofile=%llu hard=%llu note=\"raise the open-files "
	    "limit (LimitNOFILE, ulimit -n) to at least %llu\"",
	    (long long)cfg->max_connections, (long long)cap,
	    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
	    (unsigned long long)want);
	cfg->max_connections = cap;
}

static void
serve_start(struct serve *sv)
{
	struct journal_config jc;
	struct server_store_hooks hooks;
	char *cause = NULL;
	struct timeval tv = { 60, 0 };

	/* The main loop: the journal's writes (the webhooks' group commit,
	 * cross-check verdicts, events), the admin listener and the API
	 * client; the public listener has its own (server.c). */
	if (evthread_use_pthreads() != 0 ||
	    (sv->base = listener_loop_new(1)) == NULL)
		fatalx(1, "cannot create the event loop");
	serve_fd_budget(sv->cfg);
	/* Bind first: a port in use is reported before anything else. */
	if ((sv->server = server_new(sv->base, sv->cfg, sv->sig, &cause)) ==
	    NULL)
		fatalx(2, "config: listen = \"%s\": %s", sv->cfg->listen,
		    cause);
	if ((sv->admin = admin_new(sv->base, sv->cfg->admin_listen, &cause)) ==
	    NULL)
		fatalx(2, "config: admin_listen = \"%s\": %s",
		    sv->cfg->admin_listen, cause);
	memset(&jc, 0, sizeof jc);
	jc.dir = sv->cfg->state_dir;
	jc.durability = sv->cfg->durability == CONFIG_DURABILITY_FULL ?
	    JOURNAL_DURABILITY_FULL : JOURNAL_DURABILITY_PROCESS;
	jc.retention_ms = sv->cfg->retention_ms;
	jc.max_bytes = sv->cfg->journal_max_bytes;
	/* Before anything opens the journal the usual way. */
	if (journal_recover_lost(jc.dir, &cause) != 0)
		fatalx(SERVE_EXIT_JOURNAL_LOST, "%s", cause);
	if ((sv->journal = journal_open(&jc, &cause)) == NULL)
		fatalx(2, "config: state_dir = \"%s\": cannot open the "
		    "journal: %s", sv->cfg->state_dir, cause);
	if (journal_recover_wal(sv->journal, &cause) != 0)
		fatalx(SERVE_EXIT_JOURNAL_LOST, "journal %s: cannot move the "
		    "WAL into the database file: %s", journal_path(sv->journal),
		    cause);
	server_attach_journal(sv->server, sv->journal);
	admin_set_journal(sv->admin, sv->journal);
	if ((sv->publisher = publisher_new(sv->base, sv->cfg, sv->journal,
	    &cause)) == NULL)
		fatalx(2, "config: publish_endpoint = \"%s\", replay_endpoint "
		    "= \"%s\": %s", sv->cfg->publish_endpoint,
		    sv->cfg->replay_endpoint, cause);
	if ((sv->crosscheck = crosscheck_new(sv->base, sv->cfg, sv->journal,
	    serve_checked_cb, sv, &cause)) == NULL)
		fatalx(2, "config: api_base_url = \"%s\": %s",
		    sv->cfg->api_base_url, cause);
	server_set_commit_cb(sv->server, serve_committed_cb, sv);
	server_set_fatal_cb(sv->server, serve_fatal_cb, sv);
	publisher_store_hooks(sv->publisher, &hooks);
	server_set_store_hooks(sv->server, &hooks);
	admin_add_check(sv->admin, "journal", serve_check_journal, sv);
	admin_add_check(sv->admin, "signing_secret", serve_check_secrets, sv);
	admin_add_check(sv->admin, "bus", publisher_ready, sv->publisher);
	if (sv->cfg->cross_check)
		admin_add_check(sv->admin, "api", crosscheck_ready,
		    sv->crosscheck);
	serve_register_metrics(sv);

	sv->ev_term = evsignal_new(sv->base, SIGTERM, serve_stop_cb, sv);
	sv->ev_int = evsignal_new(sv->base, SIGINT, serve_stop_cb, sv);
	sv->ev_hup = evsignal_new(sv->base, SIGHUP, serve_hup_cb, sv);
	sv->prune = evtimer_new(sv->base, serve_prune_cb, sv);
	sv->drain = evtimer_new(sv->base, serve_drain_cb, sv);
	if (sv->ev_term == NULL || sv->ev_int == NULL || sv->ev_hup == NULL ||
	    sv->prune == NULL || sv->drain == NULL ||
	    evsignal_add(sv->ev_term, NULL) != 0 ||
	    evsignal_add(sv->ev_int, NULL) != 0 ||
	    evsignal_add(sv->ev_hup, NULL) != 0 ||
	    evtimer_add(sv->prune, &tv) != 0)
		fatalx(1, "cannot install signal handlers");
	signal(SIGPIPE, SIG_IGN);
	/* Last: requests are read from now on, on ph-http. */
	if (server_start(sv->server, &cause) != 0)
		fatalx(1, "%s", cause);
}

static void
serve_stop(struct serve *sv)
{
	const char *lost;

	/* Ingest first (its last batches become durable), then the stages. */
	server_free(sv->server);
	crosscheck_free(sv->crosscheck);
	publisher_free(sv->publisher);
	admin_free(sv->admin);
	if (sv->ev_term) event_free(sv->ev_term);
	if (sv->ev_int) event_free(sv->ev_int);
	if (sv->ev_hup) event_free(sv->ev_hup);
	if (sv->prune) event_free(sv->prune);
	if (sv->drain) event_free(sv->drain);
	/* A failed fsync found only by the final checkpoint counts too. */
	if ((lost = journal_free(sv->journal)) != NULL &&
	    sv->status != SERVE_EXIT_JOURNAL_LOST)
		serve_fatal_cb(sv, lost);
	signature_free(sv->sig);
	metrics_reset();
	event_base_free(sv->base);
	config_free(sv->cfg);
	libevent_global_shutdown();
}

int
cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct serve sv;
	const char *path = NULL;
	char *cause = NULL;
	int ch, check = 0, print = 0;

	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = 1;
			break;
		case 'P':
			print = 1;
			break;
		case 'h':
			serve_usage(stdout);
			return 0;
		default:
			serve_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "payhook serve: unexpected argument \"%.40s\"\n",
		    argv[optind]);
		return 2;
	}
	memset(&sv, 0, sizeof sv);
	if ((sv.cfg = config_load(path, environ, &cause)) == NULL)
		fatalx(2, "%s", cause);
	log_init((enum log_level)sv.cfg->log_level, "payhook");
	if (print) {
		config_print_effective(sv.cfg, stdout);
		config_free(sv.cfg);
		return 0;
	}
	serve_check_files(&sv);
	if (check) {
		printf("payhook: configuration ok (%d signing secret%s)\n",
		    signature_count(sv.sig), signature_count(sv.sig) == 1 ? "" :
		    "s");
		signature_free(sv.sig);
		config_free(sv.cfg);
		return 0;
	}
	serve_start(&sv);
	log_info("listening", "webhooks=%s path=%s tls=%s admin=%s "
	    "feed=%s replay=%s cross_check=%s durability=%s journal=%s "
	    "version=%s", server_address(sv.server), sv.cfg->webhook_path,
	    sv.cfg->tls_cert_file ? "on" : "off", admin_address(sv.admin),
	    publisher_feed_endpoint(sv.publisher),
	    publisher_replay_endpoint(sv.publisher),
	    sv.cfg->cross_check ? "on" : "off",
	    sv.cfg->durability == CONFIG_DURABILITY_FULL ? "full" : "process",
	    journal_path(sv.journal), PAYHOOK_VERSION);
	sv.running = 1;
	if (event_base_dispatch(sv.base) < 0)
		log_error("event_loop_failed", NULL);
	sv.running = 0;
	log_info("stopped", "connections=%d status=%d",
	    server_connections(sv.server), sv.status);
	serve_stop(&sv);
	return sv.status;
}

int
cmd_config(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "example") == 0) {
		config_print_example(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "markdown") == 0) {
		config_print_markdown(stdout);
		return 0;
	}
	fprintf(argc == 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr,
	    "usage: payhook config example|markdown\n"
	    "  example   print deploy/payhook.conf.example (every key, "
	    "commented)\n"
	    "  markdown  print docs/configuration.md\n");
	return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
