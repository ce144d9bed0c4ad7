/* test_metrics.c: Prometheus text rendering of counters, gauges, histograms. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"

static double
gauge_seven(void *arg)
{
	return 7;
}

Test(metrics, renders_families_once_with_help_and_type)
{
	static struct metric_counter a, b;
	static const double bounds[] = { 0.001, 0.01 };
	static struct metric_histogram h = { .bounds = bounds, .n = 2 };
	char *text;
	size_t len;

	metrics_reset();
	metrics_counter("t_requests_total", "Requests.", "status=\"200\"", &a);
	metrics_counter("t_requests_total", "Requests.", "status=\"401\"", &b);
	metrics_gauge("t_rows", "Rows.", NULL, gauge_seven, NULL);
	metrics_counter_fn("t_restarts_total", "Restarts.", NULL, gauge_seven,
	    NULL);
	metrics_histogram("t_latency_seconds", "Latency.", &h);
	metric_add(&a, 3);
	metric_inc(&b);
	metric_observe(&h, 500000);	/* 0.5 ms */
	metric_observe(&h, 5000000);	/* 5 ms */
	metric_observe(&h, 50000000);	/* 50 ms */
	text = metrics_render(&len);
	cr_assert_eq(strlen(text), len);
	cr_expect_not_null(strstr(text, "# HELP t_requests_total Requests.\n"
	    "# TYPE t_requests_total counter\n"
	    "t_requests_total{status=\"200\"} 3\n"
	    "t_requests_total{status=\"401\"} 1\n"), "%s", text);
	cr_expect_not_null(strstr(text, "# TYPE t_rows gauge\nt_rows 7\n"));
	cr_expect_not_null(strstr(text, "# TYPE t_restarts_total counter\n"
	    "t_restarts_total 7\n"), "%s", text);
	cr_expect_not_null(strstr(text,
	    "t_latency_seconds_bucket{le=\"0.001\"} 1\n"
	    "t_latency_seconds_bucket{le=\"0.01\"} 2\n"
	    "t_latency_seconds_bucket{le=\"+Inf\"} 3\n"
	    "t_latency_seconds_sum 0.0555\n"
	    "t_latency_seconds_count 3\n"), "%s", text);
	free(text);
	metrics_reset();
}

Test(metrics, histogram_scale_counts_plain_units)
{
	static const double bounds[] = { 1, 8 };
	static struct metric_histogram h = { .bounds = bounds, .n = 2,
	    .scale = 1 };
	char *text;
	size_t len;

	metrics_reset();
	metrics_histogram("t_batch", "Batch.", &h);
	metric_observe(&h, 1);
	metric_observe(&h, 5);
	metric_observe(&h, 64);
	text = metrics_render(&len);
	cr_expect_not_null(strstr(text, "t_batch_bucket{le=\"1\"} 1\n"
	    "t_batch_bucket{le=\"8\"} 2\nt_batch_bucket{le=\"+Inf\"} 3\n"
	    "t_batch_sum 70\n"), "%s", text);
	free(text);
	metrics_reset();
}
