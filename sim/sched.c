/*
 * sched.c: the simulated clock and a binary min-heap of due actions. The
 * event-loop thread runs it; a single timer is re-armed for the earliest
 * entry, so nothing here scans all payments. Never blocks.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "sim/lifecycle.h"
#include "sim/sched.h"
#include "sim/sim.h"
#include "sim/webhook.h"

struct sched_item {
	int64_t		 due;
	uint64_t	 seq;
	enum sched_kind	 kind;
	void		*ptr;
	size_t		 arg;
};

struct sched {
	struct sim	 *sim;
	struct event	 *timer;
	struct sched_item *heap;
	size_t		  n, cap;
	uint64_t	  seq;
	int		  running;
};

static int64_t
sched_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
sim_now(const struct sim *sim)
{
	double elapsed_ms;

	elapsed_ms = (double)(sched_mono_us() - sim->clock_mono0_us) / 1000.0;
	return sim->clock_wall0_ms + (int64_t)(elapsed_ms * sim->cfg.time_scale) +
	    sim->clock_offset_ms;
}

int64_t
sim_real_delay_ms(const struct sim *sim, int64_t due)
{
	int64_t now = sim_now(sim);

	if (due <= now)
		return 0;
	return (int64_t)((double)(due - now) / sim->cfg.time_scale) + 1;
}

double
sim_random(struct sim *sim)
{
	uint64_t x = sim->rng;

	/* xorshift64*: reproducible with --seed, not for secrets. */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	sim->rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

void
sim_random_id(char *out)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
	unsigned char raw[SIM_ID_LEN];
	size_t i;

	if (RAND_bytes(raw, sizeof raw) != 1)
		fatalx(1, "RAND_bytes failed");
	for (i = 0; i < SIM_ID_LEN; i++)
		out[i] = digits[raw[i] & 31];
	out[SIM_ID_LEN] = '\0';
}

void
sim_random_id_unpadded(char *out)
{
	char id[SIM_ID_LEN + 1];
	size_t i = 0;

	sim_random_id(id);
	while (i < SIM_ID_LEN - 1 && id[i] == '0')
		i++;
	memcpy(out, id + i, SIM_ID_LEN + 1 - i);
}

static int
sched_less(const struct sched_item *a, const struct sched_item *b)
{
	if (a->due != b->due)
		return a->due < b->due;
	return a->seq < b->seq;
}

static void
sched_swap(struct sched *s, size_t i, size_t j)
{
	struct sched_item t = s->heap[i];

	s->heap[i] = s->heap[j];
	s->heap[j] = t;
}

static void
sched_up(struct sched *s, size_t i)
{
	while (i > 0 && sched_less(&s->heap[i], &s->heap[(i - 1) / 2])) {
		sched_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
sched_down(struct sched *s, size_t i)
{
	size_t l, r, m;

	for (;;) {
		l = 2 * i + 1;
		r = l + 1;
		m = i;
		if (l < s->n && sched_less(&s->heap[l], &s->heap[m]))
			m = l;
		if (r < s->n && sched_less(&s->heap[r], &s->heap[m]))
			m = r;
		if (m == i)
			return;
		sched_swap(s, i, m);
		i = m;
	}
}

static void
sched_arm(struct sched *s)
{
	struct timeval tv;
	int64_t ms;

	if (s->n == 0) {
		event_del(s->timer);
		return;
	}
	ms = sim_real_delay_ms(s->sim, s->heap[0].due);
	if (ms > 1000)
		ms = 1000;	/* re-check: the clock may be advanced */
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_add(s->timer, &tv) != 0)
		log_error("sched_arm_failed", NULL);
}

static void
sched_fire(struct sched *s, struct sched_item *it)
{
	switch (it->kind) {
	case SCHED_EXPIRE:
	case SCHED_CAPTURE:
	case SCHED_REFUND:
		lifecycle_timer(s->sim, it->kind, it->ptr, it->arg);
		break;
	case SCHED_WEBHOOK:
		webhook_timer(s->sim->webhook, it->ptr, it->arg);
		break;
	}
}

void
sched_run(struct sched *s)
{
	struct sched_item it;
	int64_t now;

	if (s->running)
		return;
	s->running = 1;
	now = sim_now(s->sim);
	while (s->n > 0 && s->heap[0].due <= now) {
		it = s->heap[0];
		s->heap[0] = s->heap[--s->n];
		sched_down(s, 0);
		sched_fire(s, &it);
	}
	s->running = 0;
	sched_arm(s);
}

static void
sched_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_run(arg);
}

struct sched *
sched_new(struct sim *sim)
{
	struct sched *s;

	s = xcalloc(1, sizeof *s);
	s->sim = sim;
	s->timer = evtimer_new(sim->base, sched_timer_cb, s);
	if (s->timer == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	event_free(s->timer);
	free(s->heap);
	free(s);
}

void
sched_add(struct sched *s, int64_t due, enum sched_kind kind, void *ptr,
    size_t arg)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->heap = xreallocarray(s->heap, s->cap, sizeof *s->heap);
	}
	s->heap[s->n].due = due;
	s->heap[s->n].seq = s->seq++;
	s->heap[s->n].kind = kind;
	s->heap[s->n].ptr = ptr;
	s->heap[s->n].arg = arg;
	sched_up(s, s->n);
	s->n++;
	if (!s->running && s->heap[0].seq == s->seq - 1)
		sched_arm(s);
}

void
sched_drop_kinds(struct sched *s, unsigned mask)
{
	size_t i, j = 0;

	for (i = 0; i < s->n; i++) {
		if (!(mask & (1u << s->heap[i].kind)))
			s->heap[j++] = s->heap[i];
	}
	s->n = j;
	for (i = s->n / 2 + 1; i-- > 0;)
		sched_down(s, i);
	if (!s->running)
		sched_arm(s);
}

size_t
sched_pending(const struct sched *s)
{
	return s->n;
}
