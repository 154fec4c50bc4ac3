/* SPDX-License-Identifier: MIT */
/* A small metrics registry rendered in the Prometheus text exposition format (0.0.4).
 * Metrics are looked up (or created) by name plus a label string such as `code="200"`; the
 * returned pointer stays valid until the registry is freed, so hot paths keep it and update it
 * without a lookup. Families are rendered in registration order with one HELP and TYPE line. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "shared/buf.h"

typedef struct MetricsRegistry MetricsRegistry;
typedef struct Metric Metric;

typedef enum MetricType {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
} MetricType;

/* Called while rendering so gauges that mirror state (queue length, RSS) need no bookkeeping. */
typedef double (*MetricReadFn)(void *userdata);

int metrics_new(MetricsRegistry **ret);
MetricsRegistry *metrics_free(MetricsRegistry *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(MetricsRegistry *, metrics_free)

/* name must match [a-zA-Z_:][a-zA-Z0-9_:]*; labels is NULL or `k="v",k2="v2"` with values
 * already escaped (see metrics_escape_label). Returns NULL on OOM, on an invalid name, or when
 * the name is already registered with another type. */
Metric *metrics_counter(MetricsRegistry *m, const char *name, const char *labels, const char *help);
Metric *metrics_gauge(MetricsRegistry *m, const char *name, const char *labels, const char *help);
Metric *metrics_gauge_fn(MetricsRegistry *m, const char *name, const char *labels, const char *help,
                         MetricReadFn fn, void *userdata);
/* buckets: ascending upper bounds, without +Inf (added automatically); copied. */
Metric *metrics_histogram(MetricsRegistry *m, const char *name, const char *labels, const char *help,
                          const double *buckets, size_t n_buckets);

void metric_inc(Metric *x);
void metric_add(Metric *x, double v);
void metric_set(Metric *x, double v);
void metric_observe(Metric *x, double v);
double metric_value(const Metric *x);

int metrics_render(MetricsRegistry *m, Buf *out);

/* Escapes a label value (backslash, quote, newline) into buf; returns buf. */
char *metrics_escape_label(const char *value, char *buf, size_t size);

/* Latency buckets in seconds, 100us .. 10s, for request durations. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_n;
