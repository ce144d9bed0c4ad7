/*
 * tail.c: `payhook tail`, the reference consumer (docs/consumers.md). It
 * prints events as JSON lines in seq order; the follower (dispatch/follow.c,
 * shared with `payhook audit`) subscribes, detects gaps from seq and
 * heartbeats and fills them from replay, and with --from joins the live
 * feed without a gap or duplicate at the seam. Single-threaded; never
 * prints an event twice or out of order.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/util.h"
#include "dispatch/follow.h"

#define TAIL_POLL_MS		200

struct tail {
	int64_t		 count;		/* --count: exit after this many */
	int64_t		 printed;
	int64_t		 idle_ms;	/* --idle-exit */
};

static volatile sig_atomic_t tail_stop;

static void
tail_signal(int sig)
{
	tail_stop = 1;
}

static void
tail_usage(FILE *f)
{
	fprintf(f, "usage: payhook tail [--from SEQ] [--topic PREFIX] "
	    "[--feed ENDPOINT] [--replay ENDPOINT]\n"
	    "                    [--curve-server-key KEY "
	    "--curve-secret-key-file FILE] [--count N] [--idle-exit MS]\n\n"
	    "Print payhook's normalised events as JSON lines on stdout, in "
	    "seq order,\nfilling gaps from the replay endpoint.\n"
	    "  --from SEQ        start with the journal from SEQ, then follow "
	    "the live feed\n"
	    "  --topic PREFIX    only topics starting with PREFIX "
	    "(e.g. payment. or alert.)\n"
	    "  --feed EP         live feed (default " FOLLOW_FEED_DEFAULT ")\n"
	    "  --replay EP       replay endpoint (default "
	    FOLLOW_REPLAY_DEFAULT ")\n"
	    "  --curve-server-key KEY      the server's Z85 public key\n"
	    "  --curve-secret-key-file F   our Z85 secret key (payhook "
	    "keygen)\n"
	    "  --count N         exit 0 after printing N events\n"
	    "  --idle-exit MS    exit 0 once caught up and idle for MS "
	    "milliseconds\n"
	    "Exit status: 0 done, 1 a gap could not be filled or replay "
	    "failed, 2 usage.\n");
}

/* follow_event_cb: print one event. */
static int
tail_print_cb(void *arg, int64_t seq, const char *json, size_t len)
{
	struct tail *t = arg;

	if (fwrite(json, 1, len, stdout) != len || putchar('\n') == EOF)
		return -1;		/* stdout closed: nobody listens */
	t->printed++;
	return t->count > 0 && t->printed >= t->count ? 1 : 0;
}

static int
tail_run(struct tail *t, struct follow *f, int64_t from)
{
	if (from > 0 && follow_catch_up(f) != 0 && follow_status(f) != 0)
		return 1;		/* --from: the history is unreachable */
	while (!follow_stopped(f)) {
		fflush(stdout);
		(void)follow_poll(f, TAIL_POLL_MS);
		if (t->idle_ms > 0 && follow_caught_up(f) &&
		    util_mono_ms() - follow_last_event_ms(f) >= t->idle_ms)
			break;
	}
	fflush(stdout);
	return follow_status(f);
}

int
cmd_tail(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "topic", required_argument, NULL, 't' },
		{ "feed", required_argument, NULL, 'F' },
		{ "replay", required_argument, NULL, 'R' },
		{ "curve-server-key", required_argument, NULL, 'k' },
		{ "curve-secret-key-file", required_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'n' },
		{ "idle-exit", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tail t;
	struct follow_config fc;
	struct follow_curve curve;
	struct follow *f;
	const char *server_key = NULL, *secret_file = NULL;
	char *cause = NULL;
	int64_t v;
	int ch, rc;

	memset(&t, 0, sizeof t);
	memset(&fc, 0, sizeof fc);
	fc.name = "payhook tail";
	fc.feed_ep = FOLLOW_FEED_DEFAULT;
	fc.replay_ep = FOLLOW_REPLAY_DEFAULT;
	fc.prefix = "";
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
		case 'n':
		case 'i':
			if (follow_int_opt("payhook tail", ch == 'f' ? "from" :
			    ch == 'n' ? "count" : "idle-exit", optarg, &v) != 0)
				return 2;
			if (ch == 'f')
				fc.from = v > 0 ? v : 1;
			else if (ch == 'n')
				t.count = v;
			else
				t.idle_ms = v;
			break;
		case 't':
			if (strlen(optarg) >= 48) {
				fprintf(stderr, "payhook tail: --topic is too "
				    "long\n");
				return 2;
			}
			fc.prefix = optarg;
			break;
		case 'F':
			fc.feed_ep = optarg;
			break;
		case 'R':
			fc.replay_ep = optarg;
			break;
		case 'k':
			server_key = optarg;
			break;
		case 's':
			secret_file = optarg;
			break;
		case 'h':
			tail_usage(stdout);
			return 0;
		default:
			tail_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		tail_usage(stderr);
		return 2;
	}
	if ((rc = follow_curve_load(&curve, server_key, secret_file,
	    &cause)) < 0) {
		fprintf(stderr, "payhook tail: %s\n", cause);
		free(cause);
		return 2;
	}
	fc.curve = rc == 0 ? &curve : NULL;
	fc.stop = &tail_stop;
	fc.cb = tail_print_cb;
	fc.arg = &t;
	signal(SIGINT, tail_signal);
	signal(SIGTERM, tail_signal);
	signal(SIGPIPE, SIG_IGN);
	f = follow_new(&fc, &cause);
	explicit_bzero(&curve, sizeof curve);
	if (f == NULL) {
		fprintf(stderr, "payhook tail: %s\n", cause);
		free(cause);
		return 1;
	}
	rc = tail_run(&t, f, fc.from);
	follow_free(f);
	return rc;
}
