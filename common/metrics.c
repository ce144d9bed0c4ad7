/*
 * metrics.c: a fixed-size registry of samples and the Prometheus text
 * renderer. Registration and rendering on the main thread; updates through
 * the inline helpers in metrics.h from any thread. Never blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "common/xmalloc.h"

#define METRICS_MAX 192

enum metrics_kind { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM,
    METRICS_COUNTER_FN };

struct metrics_entry {
	const char		*name;
	const char		*help;
	const char		*labels;
	enum metrics_kind	 kind;
	struct metric_counter	*counter;
	struct metric_histogram	*histogram;
	metrics_gauge_fn	 fn;
	void			*arg;
};

static struct metrics_entry metrics_entries[METRICS_MAX];
static size_t metrics_n;

static double
metrics_scale(const struct metric_histogram *h)
{
	return h->scale > 0 ? h->scale : 1e9;
}

void
metric_observe(struct metric_histogram *h, uint64_t units)
{
	double v = (double)units / metrics_scale(h);
	size_t i;

	for (i = 0; i < h->n; i++) {
		if (v <= h->bounds[i])
			break;
	}
	if (i < h->n)
		atomic_fetch_add_explicit(&h->buckets[i], 1,
		    memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, units, memory_order_relaxed);
}

static struct metrics_entry *
metrics_add(const char *name, const char *help, const char *labels,
    enum metrics_kind kind)
{
	struct metrics_entry *e;

	if (metrics_n == METRICS_MAX)
		abort();	/* raise METRICS_MAX: a build-time bug */
	e = &metrics_entries[metrics_n++];
	memset(e, 0, sizeof *e);
	e->name = name;
	e->help = help;
	e->labels = labels;
	e->kind = kind;
	return e;
}

void
metrics_counter(const char *name, const char *help, const char *labels,
    struct metric_counter *c)
{
	metrics_add(name, help, labels, METRICS_COUNTER)->counter = c;
}

void
metrics_gauge(const char *name, const char *help, const char *labels,
    metrics_gauge_fn fn, void *arg)
{
	struct metrics_entry *e;

	e = metrics_add(name, help, labels, METRICS_GAUGE);
	e->fn = fn;
	e->arg = arg;
}

void
metrics_counter_fn(const char *name, const char *help, const char *labels,
    metrics_gauge_fn fn, void *arg)
{
	struct metrics_entry *e;

	e = metrics_add(name, help, labels, METRICS_COUNTER_FN);
	e->fn = fn;
	e->arg = arg;
}

void
metrics_histogram(const char *name, const char *help,
    struct metric_histogram *h)
{
	if (h->n > METRICS_MAX_BUCKETS)
		abort();
	metrics_add(name, help, NULL, METRICS_HISTOGRAM)->histogram = h;
}

void
metrics_reset(void)
{
	metrics_n = 0;
}

static void
metrics_render_histogram(FILE *f, const struct metrics_entry *e)
{
	struct metric_histogram *h = e->histogram;
	uint64_t cum = 0, count;
	size_t i;

	for (i = 0; i < h->n; i++) {
		cum += atomic_load_explicit(&h->buckets[i],
		    memory_order_relaxed);
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", e->name, h->bounds[i],
		    (unsigned long long)cum);
	}
	count = atomic_load_explicit(&h->count, memory_order_relaxed);
	if (count < cum)
		count = cum;
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", e->name,
	    (unsigned long long)count);
	fprintf(f, "%s_sum %.9g\n", e->name,
	    (double)atomic_load_explicit(&h->sum, memory_order_relaxed) /
	    metrics_scale(h));
	fprintf(f, "%s_count %llu\n", e->name, (unsigned long long)count);
}

char *
metrics_render(size_t *len)
{
	static const char *types[] = { "counter", "gauge", "histogram",
	    "counter" };
	const struct metrics_entry *e;
	char *buf = NULL;
	size_t i, size = 0;
	FILE *f;

	if ((f = open_memstream(&buf, &size)) == NULL)
		abort();
	for (i = 0; i < metrics_n; i++) {
		e = &metrics_entries[i];
		if (i == 0 || strcmp(e->name, metrics_entries[i - 1].name) != 0)
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", e->name,
			    e->help, e->name, types[e->kind]);
		switch (e->kind) {
		case METRICS_COUNTER:
			fprintf(f, "%s%s%s%s %llu\n", e->name,
			    e->labels ? "{" : "", e->labels ? e->labels : "",
			    e->labels ? "}" : "",
			    (unsigned long long)metric_get(e->counter));
			break;
		case METRICS_GAUGE:
		case METRICS_COUNTER_FN:
			fprintf(f, "%s%s%s%s %.17g\n", e->name,
			    e->labels ? "{" : "", e->labels ? e->labels : "",
			    e->labels ? "}" : "", e->fn(e->arg));
			break;
		case METRICS_HISTOGRAM:
			metrics_render_histogram(f, e);
			break;
		}
	}
	if (fclose(f) != 0)
		abort();
	*len = size;
	return buf;
}
