/* SPDX-License-Identifier: MIT */
/* Metrics registry and Prometheus text rendering. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/metrics.h"

struct Metric {
        struct Family *family;
        char *labels;          /* NULL or `k="v",...` */
        double value;          /* counter/gauge value; histogram sum */
        uint64_t count;        /* histogram observations */
        uint64_t *bucket_counts; /* histogram: per bucket (not cumulative) */
        MetricReadFn read;
        void *read_userdata;
        struct Metric *next;
};

typedef struct Family {
        char *name, *help;
        MetricType type;
        double *buckets;
        size_t n_buckets;
        Metric *metrics, **tail;
        struct Family *next;
} Family;

struct MetricsRegistry {
        Family *families, **tail;
};

const double metrics_latency_buckets[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                           0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10 };
const size_t metrics_latency_buckets_n = ELEMENTSOF(metrics_latency_buckets);

int metrics_new(MetricsRegistry **ret) {
        MetricsRegistry *m = new0(MetricsRegistry, 1);
        if (!m)
                return -ENOMEM;
        m->tail = &m->families;
        *ret = m;
        return 0;
}

MetricsRegistry *metrics_free(MetricsRegistry *m) {
        if (!m)
                return NULL;
        for (Family *f = m->families, *fn; f; f = fn) {
                fn = f->next;
                for (Metric *x = f->metrics, *xn; x; x = xn) {
                        xn = x->next;
                        free(x->labels);
                        free(x->bucket_counts);
                        free(x);
                }
                free(f->name);
                free(f->help);
                free(f->buckets);
                free(f);
        }
        free(m);
        return NULL;
}

static bool name_valid(const char *n) {
        if (isempty(n) || !(isalpha((unsigned char) n[0]) || n[0] == '_' || n[0] == ':'))
                return false;
        for (const char *c = n; *c; c++)
                if (!(isalnum((unsigned char) *c) || *c == '_' || *c == ':'))
                        return false;
        return true;
}

static Family *family_get(MetricsRegistry *m, const char *name, const char *help, MetricType type,
                          const double *buckets, size_t n_buckets) {
        Family *f;

        for (f = m->families; f; f = f->next)
                if (streq(f->name, name))
                        return f->type == type ? f : NULL;
        if (!name_valid(name))
                return NULL;
        f = new0(Family, 1);
        if (!f)
                return NULL;
        f->name = strdup(name);
        f->help = strdup(help ?: "");
        f->type = type;
        f->tail = &f->metrics;
        if (n_buckets > 0) {
                f->buckets = new0(double, n_buckets);
                if (f->buckets)
                        memcpy(f->buckets, buckets, n_buckets * sizeof(double));
                f->n_buckets = n_buckets;
        }
        if (!f->name || !f->help || (n_buckets > 0 && !f->buckets)) {
                free(f->name);
                free(f->help);
                free(f->buckets);
                free(f);
                return NULL;
        }
        *m->tail = f;
        m->tail = &f->next;
        return f;
}

static Metric *metric_get(MetricsRegistry *m, const char *name, const char *labels, const char *help,
                          MetricType type, const double *buckets, size_t n_buckets) {
        Family *f = family_get(m, name, help, type, buckets, n_buckets);
        Metric *x;

        if (!f)
                return NULL;
        for (x = f->metrics; x; x = x->next)
                if (streq_ptr(x->labels, isempty(labels) ? NULL : labels))
                        return x;
        x = new0(Metric, 1);
        if (!x)
                return NULL;
        x->family = f;
        if (!isempty(labels) && !(x->labels = strdup(labels))) {
                free(x);
                return NULL;
        }
        if (type == METRIC_HISTOGRAM && !(x->bucket_counts = new0(uint64_t, f->n_buckets + 1))) {
                free(x->labels);
                free(x);
                return NULL;
        }
        *f->tail = x;
        f->tail = &x->next;
        return x;
}

Metric *metrics_counter(MetricsRegistry *m, const char *name, const char *labels, const char *help) {
        return metric_get(m, name, labels, help, METRIC_COUNTER, NULL, 0);
}

Metric *metrics_gauge(MetricsRegistry *m, const char *name, const char *labels, const char *help) {
        return metric_get(m, name, labels, help, METRIC_GAUGE, NULL, 0);
}

Metric *metrics_gauge_fn(MetricsRegistry *m, const char *name, const char *labels, const char *help,
                         MetricReadFn fn, void *userdata) {
        Metric *x = metrics_gauge(m, name, labels, help);
        if (x) {
                x->read = fn;
                x->read_userdata = userdata;
        }
        return x;
}

Metric *metrics_histogram(MetricsRegistry *m, const char *name, const char *labels, const char *help,
                          const double *buckets, size_t n_buckets) {
        for (size_t i = 1; i < n_buckets; i++)
                if (!(buckets[i] > buckets[i - 1]))
                        return NULL;
        return metric_get(m, name, labels, help, METRIC_HISTOGRAM, buckets, n_buckets);
}

void metric_inc(Metric *x) {
        metric_add(x, 1);
}

void metric_add(Metric *x, double v) {
        if (x && (x->family->type != METRIC_COUNTER || v >= 0))
                x->value += v;
}

void metric_set(Metric *x, double v) {
        if (x && x->family->type == METRIC_GAUGE)
                x->value = v;
}

void metric_observe(Metric *x, double v) {
        size_t i;

        if (!x || x->family->type != METRIC_HISTOGRAM)
                return;
        for (i = 0; i < x->family->n_buckets && v > x->family->buckets[i]; i++)
                ;
        x->bucket_counts[i]++;
        x->count++;
        x->value += v;
}

double metric_value(const Metric *x) {
        if (!x)
                return NAN;
        return x->read ? x->read(x->read_userdata) : x->value;
}

char *metrics_escape_label(const char *value, char *buf, size_t size) {
        size_t o = 0;

        for (const char *c = value; *c && o + 3 < size; c++) {
                if (*c == '\\' || *c == '"') {
                        buf[o++] = '\\';
                        buf[o++] = *c;
                } else if (*c == '\n') {
                        buf[o++] = '\\';
                        buf[o++] = 'n';
                } else
                        buf[o++] = *c;
        }
        buf[o] = 0;
        return buf;
}

/* The shortest of %.15g and %.17g that reads back as the same double; integers print without an
 * exponent up to 2^53. */
static int put_value(Buf *out, double v) {
        char s[64];

        if (isnan(v))
                return buf_append_str(out, "NaN");
        if (isinf(v))
                return buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
        if (v == floor(v) && fabs(v) < 9007199254740992.0)
                return buf_printf(out, "%.0f", v);
        (void) snprintf(s, sizeof(s), "%.15g", v);
        if (strtod(s, NULL) != v)
                (void) snprintf(s, sizeof(s), "%.17g", v);
        return buf_append_str(out, s);
}

static int render_histogram(Buf *out, const Family *f, const Metric *x) {
        uint64_t cumulative = 0;
        const char *sep = x->labels ? "," : "";
        int r = 0;

        for (size_t i = 0; i <= f->n_buckets && r >= 0; i++) {
                cumulative += x->bucket_counts[i];
                r = buf_printf(out, "%s_bucket{%s%sle=\"", f->name, x->labels ?: "", sep);
                if (r >= 0)
                        r = i < f->n_buckets ? put_value(out, f->buckets[i]) : buf_append_str(out, "+Inf");
                if (r >= 0)
                        r = buf_printf(out, "\"} %llu\n", (unsigned long long) cumulative);
        }
        if (r >= 0)
                r = buf_printf(out, "%s_sum%s%s%s ", f->name, x->labels ? "{" : "", x->labels ?: "", x->labels ? "}" : "");
        if (r >= 0)
                r = put_value(out, x->value);
        if (r >= 0)
                r = buf_printf(out, "\n%s_count%s%s%s %llu\n", f->name, x->labels ? "{" : "", x->labels ?: "",
                               x->labels ? "}" : "", (unsigned long long) x->count);
        return r;
}

int metrics_render(MetricsRegistry *m, Buf *out) {
        static const char *const types[] = { "counter", "gauge", "histogram" };
        int r = 0;

        for (Family *f = m->families; f && r >= 0; f = f->next) {
                r = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->type]);
                for (Metric *x = f->metrics; x && r >= 0; x = x->next) {
                        if (f->type == METRIC_HISTOGRAM) {
                                r = render_histogram(out, f, x);
                                continue;
                        }
                        r = buf_printf(out, "%s%s%s%s ", f->name, x->labels ? "{" : "", x->labels ?: "", x->labels ? "}" : "");
                        if (r >= 0)
                                r = put_value(out, metric_value(x));
                        if (r >= 0)
                                r = buf_append_str(out, "\n");
                }
        }
        return r;
}
