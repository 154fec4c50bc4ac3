/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "shared/metrics.h"
#include "test-util.h"

static double read_seven(void *u) {
        return 7;
}

static void counters_and_gauges_render_in_text_format(void **state) {
        _cleanup_(metrics_freep) MetricsRegistry *m = NULL;
        _cleanup_(buf_done) Buf out = BUF_INIT(0);
        Metric *ok, *err, *g;

        assert_int_equal(metrics_new(&m), 0);
        ok = metrics_counter(m, "http_requests_total", "code=\"200\"", "Requests served.");
        err = metrics_counter(m, "http_requests_total", "code=\"500\"", "Requests served.");
        g = metrics_gauge(m, "open_connections", NULL, "Open connections.");
        assert_non_null(metrics_gauge_fn(m, "queue_length", NULL, "Queued items.", read_seven, NULL));
        assert_ptr_equal(metrics_counter(m, "http_requests_total", "code=\"200\"", NULL), ok);
        metric_inc(ok);
        metric_add(ok, 2);
        metric_add(ok, -5); /* counters never go down */
        metric_inc(err);
        metric_set(g, 12.5);
        metric_set(ok, 100); /* set is for gauges only */
        assert_int_equal(metrics_render(m, &out), 0);
        assert_string_equal(out.data,
                            "# HELP http_requests_total Requests served.\n"
                            "# TYPE http_requests_total counter\n"
                            "http_requests_total{code=\"200\"} 3\n"
                            "http_requests_total{code=\"500\"} 1\n"
                            "# HELP open_connections Open connections.\n"
                            "# TYPE open_connections gauge\n"
                            "open_connections 12.5\n"
                            "# HELP queue_length Queued items.\n"
                            "# TYPE queue_length gauge\n"
                            "queue_length 7\n");
}

static void histogram_buckets_are_cumulative(void **state) {
        _cleanup_(metrics_freep) MetricsRegistry *m = NULL;
        _cleanup_(buf_done) Buf out = BUF_INIT(0);
        const double b[] = { 0.1, 1 };
        Metric *h;

        assert_int_equal(metrics_new(&m), 0);
        h = metrics_histogram(m, "latency_seconds", "op=\"get\"", "Latency.", b, 2);
        assert_non_null(h);
        metric_observe(h, 0.05);
        metric_observe(h, 0.1); /* le is inclusive */
        metric_observe(h, 0.5);
        metric_observe(h, 3);
        assert_int_equal(metrics_render(m, &out), 0);
        assert_string_equal(out.data,
                            "# HELP latency_seconds Latency.\n"
                            "# TYPE latency_seconds histogram\n"
                            "latency_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
                            "latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
                            "latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
                            "latency_seconds_sum{op=\"get\"} 3.65\n"
                            "latency_seconds_count{op=\"get\"} 4\n");
}

static void invalid_names_and_type_clashes_refused(void **state) {
        _cleanup_(metrics_freep) MetricsRegistry *m = NULL;
        const double bad[] = { 1, 0.5 };
        char esc[64];

        assert_int_equal(metrics_new(&m), 0);
        assert_null(metrics_counter(m, "9lives", NULL, ""));
        assert_null(metrics_counter(m, "has space", NULL, ""));
        assert_null(metrics_counter(m, "", NULL, ""));
        assert_non_null(metrics_counter(m, "x_total", NULL, ""));
        assert_null(metrics_gauge(m, "x_total", NULL, ""));
        assert_null(metrics_histogram(m, "h", NULL, "", bad, 2));
        assert_true(isnan(metric_value(NULL)));
        metric_inc(NULL); /* tolerated: a failed registration must not crash the hot path */
        assert_string_equal(metrics_escape_label("a\"b\\c\nd", esc, sizeof(esc)), "a\\\"b\\\\c\\nd");
}

TEST_MAIN(cmocka_unit_test(counters_and_gauges_render_in_text_format),
          cmocka_unit_test(histogram_buckets_are_cumulative),
          cmocka_unit_test(invalid_names_and_type_clashes_refused))
