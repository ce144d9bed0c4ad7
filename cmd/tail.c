/*
 * tail.c: `payhook tail`, the reference consumer (docs/consumers.md). It
 * subscribes to the live feed, prints events as JSON lines in seq order,
 * detects gaps from seq and heartbeats and fills them from the replay
 * endpoint; --from starts with a replay and joins the live feed without a
 * gap or duplicate at the seam. Single-threaded; never prints an event
 * twice or out of order.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zmq.h>

#include "cmd/cmd.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "dispatch/publisher.h"


#define TAIL_BATCH		1000	/* events asked per REPLAY */
#define TAIL_REPLAY_TIMEOUT_MS	3000
#define TAIL_REPLAY_TRIES	5
#define TAIL_POLL_MS		200
#define TAIL_RCVHWM		100000
#define TAIL_FRAMES_MAX		(3 + 2 * TAIL_BATCH + 1)

struct tail {
	void		*ctx, *sub, *dealer;
	const char	*feed_ep, *replay_ep, *prefix;
	int		 curve;
	char		 server_pub[PUBLISHER_Z85_KEY_LEN + 1];
	char		 pub[PUBLISHER_Z85_KEY_LEN + 1], sec[PUBLISHER_Z85_KEY_LEN + 1];
	int64_t		 pos;		/* next seq needed; 0: not started */
	int64_t		 head;		/* highest head_seq heard */
	int64_t		 count;		/* --count: exit after this many */
	int64_t		 printed;
	int64_t		 idle_ms;	/* --idle-exit */
	int64_t		 last_ms;	/* last event printed or started */
	int		 status;	/* exit status if nothing worse */
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
	    "  --feed EP         live feed (default tcp://127.0.0.1:5556)\n"
	    "  --replay EP       replay endpoint (default "
	    "tcp://127.0.0.1:5557)\n"
	    "  --curve-server-key KEY      the server's Z85 public key\n"
	    "  --curve-secret-key-file F   our Z85 secret key (payhook "
	    "keygen)\n"
	    "  --count N         exit 0 after printing N events\n"
	    "  --idle-exit MS    exit 0 once caught up and idle for MS "
	    "milliseconds\n"
	    "Exit status: 0 done, 1 a gap could not be filled or replay "
	    "failed, 2 usage.\n");
}

static int
tail_setopt(void *s, int opt, int v)
{
	return zmq_setsockopt(s, opt, &v, sizeof v);
}

static int
tail_curve(struct tail *t, void *s)
{
	if (!t->curve)
		return 0;
	if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, t->server_pub, 41) != 0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, t->pub, 41) != 0 ||
	    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, t->sec, 41) != 0)
		return -1;
	return 0;
}

static int
tail_open_dealer(struct tail *t)
{
	if (t->dealer != NULL)
		zmq_close(t->dealer);
	if ((t->dealer = zmq_socket(t->ctx, ZMQ_DEALER)) == NULL ||
	    tail_setopt(t->dealer, ZMQ_LINGER, 0) != 0 ||
	    tail_setopt(t->dealer, ZMQ_SNDTIMEO, 1000) != 0 ||
	    tail_curve(t, t->dealer) != 0 ||
	    zmq_connect(t->dealer, t->replay_ep) != 0) {
		fprintf(stderr, "payhook tail: replay %s: %s\n", t->replay_ep,
		    zmq_strerror(errno));
		return -1;
	}
	return 0;
}

static int
tail_open(struct tail *t)
{
	if ((t->ctx = zmq_ctx_new()) == NULL ||
	    (t->sub = zmq_socket(t->ctx, ZMQ_SUB)) == NULL ||
	    tail_setopt(t->sub, ZMQ_LINGER, 0) != 0 ||
	    tail_setopt(t->sub, ZMQ_RCVHWM, TAIL_RCVHWM) != 0 ||
	    tail_curve(t, t->sub) != 0 ||
	    zmq_setsockopt(t->sub, ZMQ_SUBSCRIBE, "heartbeat", 9) != 0 ||
	    zmq_setsockopt(t->sub, ZMQ_SUBSCRIBE, t->prefix,
	    strlen(t->prefix)) != 0 ||
	    zmq_connect(t->sub, t->feed_ep) != 0) {
		fprintf(stderr, "payhook tail: feed %s: %s\n", t->feed_ep,
		    zmq_strerror(errno));
		return -1;
	}
	return tail_open_dealer(t);
}

/* The event's seq from its JSON; -1 when it has none. */
static int64_t
tail_seq_of(const char *json, size_t len, const char *key)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *v;
	int64_t seq = -1;

	if (root == NULL)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(root, key);
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 &&
	    v->valuedouble < 9007199254740992.0)
		seq = (int64_t)v->valuedouble;
	cJSON_Delete(root);
	return seq;
}

static void
tail_print(struct tail *t, const char *json, size_t len, int64_t seq)
{
	if (fwrite(json, 1, len, stdout) != len || putchar('\n') == EOF) {
		tail_stop = 1;		/* stdout closed: nobody listens */
		return;
	}
	t->pos = seq + 1;
	t->printed++;
	t->last_ms = util_mono_ms();
	if (t->count > 0 && t->printed >= t->count)
		tail_stop = 1;
}

/* One multipart message into f (at most max frames kept). */
static int
tail_recv(void *s, zmq_msg_t *f, int max, int timeout_ms)
{
	zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
	zmq_msg_t extra;
	int n = 0, more = 1;

	if (zmq_poll(&it, 1, timeout_ms) <= 0)
		return 0;
	while (more) {
		zmq_msg_t *m = n < max ? &f[n] : &extra;

		if (zmq_msg_init(m) != 0)
			break;
		if (zmq_msg_recv(m, s, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(m);
			break;
		}
		more = zmq_msg_more(m);
		if (m == &extra)
			zmq_msg_close(m);
		else
			n++;
	}
	return n;
}

static void
tail_close_all(zmq_msg_t *f, int n)
{
	while (n > 0)
		zmq_msg_close(&f[--n]);
}

static int64_t
tail_frame_int(zmq_msg_t *m)
{
	char buf[24];
	int64_t v;
	size_t len = zmq_msg_size(m);

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, zmq_msg_data(m), len);
	buf[len] = '\0';
	return util_parse_int64(buf, 0, INT64_MAX, &v) == 0 ? v : -1;
}

/* One REPLAY round trip from t->pos; the events are printed. Returns the
 * number of events in the batch, or -1 (no answer / ERROR). */
static int
tail_replay_once(struct tail *t, int64_t *head)
{
	static zmq_msg_t f[TAIL_FRAMES_MAX];
	char from[24], max[24];
	const char *req[5] = { "", "REPLAY", from, max, t->prefix };
	int i, n, nreq = t->prefix[0] ? 5 : 4, count, rc = -1;
	int64_t seq;

	xsnprintf(from, sizeof from, "%lld", (long long)t->pos);
	xsnprintf(max, sizeof max, "%d", TAIL_BATCH);
	for (i = 0; i < nreq; i++) {
		if (zmq_send(t->dealer, req[i], strlen(req[i]),
		    i + 1 < nreq ? ZMQ_SNDMORE : 0) < 0)
			return -1;
	}
	if ((n = tail_recv(t->dealer, f, TAIL_FRAMES_MAX,
	    TAIL_REPLAY_TIMEOUT_MS)) == 0)
		return -1;
	if (n >= 3 && zmq_msg_size(&f[1]) == 5 &&
	    memcmp(zmq_msg_data(&f[1]), "ERROR", 5) == 0) {
		fprintf(stderr, "payhook tail: replay refused: %.*s\n",
		    (int)zmq_msg_size(&f[2]), (char *)zmq_msg_data(&f[2]));
		goto out;
	}
	if (n < 4 || zmq_msg_size(&f[1]) != 5 ||
	    memcmp(zmq_msg_data(&f[1]), "BATCH", 5) != 0 ||
	    (*head = tail_frame_int(&f[2])) < 0 ||
	    (count = (int)tail_frame_int(&f[3])) < 0 || n != 4 + 2 * count) {
		fprintf(stderr, "payhook tail: malformed replay answer\n");
		goto out;
	}
	for (i = 0; i < count; i++) {
		zmq_msg_t *json = &f[5 + 2 * i];

		seq = tail_seq_of(zmq_msg_data(json), zmq_msg_size(json), "seq");
		if (seq < t->pos)
			continue;
		if (seq > t->pos && t->prefix[0] == '\0')
			fprintf(stderr, "payhook tail: seq %lld..%lld are no "
			    "longer in the journal\n", (long long)t->pos,
			    (long long)seq - 1);
		tail_print(t, zmq_msg_data(json), zmq_msg_size(json), seq);
	}
	rc = count;
out:
	tail_close_all(f, n);
	return rc;
}

/* Replay from t->pos until the journal has nothing more. */
static void
tail_catch_up(struct tail *t)
{
	int64_t head = 0;
	int got, tries = 0;

	while (!tail_stop) {
		if ((got = tail_replay_once(t, &head)) < 0) {
			if (++tries >= TAIL_REPLAY_TRIES) {
				fprintf(stderr, "payhook tail: replay from %lld "
				    "failed; continuing with a gap\n",
				    (long long)t->pos);
				t->status = 1;
				return;
			}
			if (tail_open_dealer(t) != 0)	/* drop late answers */
				return;
			continue;
		}
		tries = 0;
		if (got < TAIL_BATCH) {
			/* Everything (matching) up to head has been seen. */
			if (t->pos <= head)
				t->pos = head + 1;
			if (head > t->head)
				t->head = head;
			return;
		}
	}
}

static void
tail_on_message(struct tail *t, zmq_msg_t *f, int n)
{
	int64_t seq;

	if (n != 2)
		return;
	if (zmq_msg_size(&f[0]) == 9 &&
	    memcmp(zmq_msg_data(&f[0]), "heartbeat", 9) == 0) {
		seq = tail_seq_of(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]),
		    "head_seq");
		if (seq < 0)
			return;
		if (seq > t->head)
			t->head = seq;
		if (t->pos == 0)
			t->pos = seq + 1;	/* start at the live tail */
		else if (seq >= t->pos)
			tail_catch_up(t);	/* loss at the tail */
		return;
	}
	if ((seq = tail_seq_of(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]),
	    "seq")) < 1)
		return;
	if (t->pos == 0)
		t->pos = seq;
	if (seq > t->pos)
		tail_catch_up(t);	/* a gap: fill it first */
	if (seq >= t->pos && !tail_stop)
		tail_print(t, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), seq);
}

static void
tail_run(struct tail *t)
{
	zmq_msg_t f[2];
	int n;

	t->last_ms = util_mono_ms();
	if (t->pos > 0) {
		tail_catch_up(t);
		if (t->status != 0)
			return;		/* --from: the history is unreachable */
	}
	while (!tail_stop) {
		fflush(stdout);
		n = tail_recv(t->sub, f, 2, TAIL_POLL_MS);
		if (n > 0) {
			tail_on_message(t, f, n);
			tail_close_all(f, n);
		}
		if (t->idle_ms > 0 && t->pos > t->head && t->pos > 0 &&
		    util_mono_ms() - t->last_ms >= t->idle_ms)
			break;
	}
	fflush(stdout);
}

static int
tail_keys(struct tail *t, const char *server_key, const char *secret_file)
{
	char *cause = NULL;

	if (server_key == NULL && secret_file == NULL)
		return 0;
	if (server_key == NULL || secret_file == NULL) {
		fprintf(stderr, "payhook tail: --curve-server-key and "
		    "--curve-secret-key-file go together\n");
		return -1;
	}
	if (strlen(server_key) != PUBLISHER_Z85_KEY_LEN) {
		fprintf(stderr, "payhook tail: --curve-server-key is not a "
		    "40-character Z85 key\n");
		return -1;
	}
	memcpy(t->server_pub, server_key, sizeof t->server_pub);
	if (publisher_read_key_file(secret_file, t->sec, &cause) != 0 ||
	    zmq_curve_public(t->pub, t->sec) != 0) {
		fprintf(stderr, "payhook tail: --curve-secret-key-file %s: "
		    "%s\n", secret_file, cause ? cause : "bad key");
		free(cause);
		return -1;
	}
	t->curve = 1;
	return 0;
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
	const char *server_key = NULL, *secret_file = NULL;
	int64_t v;
	int ch;

	memset(&t, 0, sizeof t);
	t.feed_ep = "tcp://127.0.0.1:5556";
	t.replay_ep = "tcp://127.0.0.1:5557";
	t.prefix = "";
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
		case 'n':
		case 'i':
			if (util_parse_int64(optarg, 0, INT64_MAX / 2, &v) != 0) {
				fprintf(stderr, "payhook tail: %s needs a "
				    "non-negative number\n", ch == 'f' ?
				    "--from" : ch == 'n' ? "--count" :
				    "--idle-exit");
				return 2;
			}
			if (ch == 'f')
				t.pos = v > 0 ? v : 1;
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
			t.prefix = optarg;
			break;
		case 'F':
			t.feed_ep = optarg;
			break;
		case 'R':
			t.replay_ep = optarg;
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
	if (tail_keys(&t, server_key, secret_file) != 0)
		return 2;
	signal(SIGINT, tail_signal);
	signal(SIGTERM, tail_signal);
	signal(SIGPIPE, SIG_IGN);
	if (tail_open(&t) == 0)
		tail_run(&t);
	else
		t.status = 1;
	if (t.dealer != NULL)
		zmq_close(t.dealer);
	if (t.sub != NULL)
		zmq_close(t.sub);
	if (t.ctx != NULL)
		zmq_ctx_term(t.ctx);
	explicit_bzero(t.sec, sizeof t.sec);
	return t.status;
}
