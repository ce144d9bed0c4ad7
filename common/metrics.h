/*
 * metrics.h: counters, gauges and histograms rendered in the Prometheus
 * text format. Register at start-up on the main thread; counters and
 * histograms may then be updated from any thread (relaxed atomics); gauge
 * callbacks run on the thread that renders (the main thread).
 */
#ifndef PAYHOOK_METRICS_H
#define PAYHOOK_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_BUCKETS 16

struct metric_counter {
	_Atomic uint64_t v;
};

struct metric_histogram {
	const double	*bounds;	/* upper bounds, ascending */
	size_t		 n;
	double		 scale;		/* units per 1.0 of value; 0 = 1e9 (ns) */
	_Atomic uint64_t buckets[METRICS_MAX_BUCKETS];	/* not cumulative */
	_Atomic uint64_t count;
	_Atomic uint64_t sum;		/* in units */
};

typedef double (*metrics_gauge_fn)(void *);

static inline void
metric_inc(struct metric_counter *c)
{
	atomic_fetch_add_explicit(&c->v, 1, memory_order_relaxed);
}

static inline void
metric_add(struct metric_counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

static inline uint64_t
metric_get(struct metric_counter *c)
{
	return atomic_load_explicit(&c->v, memory_order_relaxed);
}

/* Record one observation of units (nanoseconds unless scale says else). */
void	metric_observe(struct metric_histogram *, uint64_t units);

/*
 * Register a sample. name must match [a-z_:][a-z0-9_:]*; labels is NULL or
 * a Prometheus label list without braces ("status=\"200\""). Samples of one
 * family must be registered one after another; help and type come from the
 * first. The storage must outlive the registry.
 */
void	metrics_counter(const char *name, const char *help, const char *labels,
	    struct metric_counter *);
void	metrics_gauge(const char *name, const char *help, const char *labels,
	    metrics_gauge_fn, void *arg);
/* A counter whose value fn reads (as a gauge's) from a count kept
 * elsewhere; it must never go down. */
void	metrics_counter_fn(const char *name, const char *help,
	    const char *labels, metrics_gauge_fn, void *arg);
void	metrics_histogram(const char *name, const char *help,
	    struct metric_histogram *);
/* Render every registered sample; the caller frees the string. */
char	*metrics_render(size_t *len);
/* Forget all registrations (tests, shutdown). */
void	metrics_reset(void);

#endif
