/* SPDX-License-Identifier: MIT */
/* The etcd v2 HTTP API on the shared HTTP server: request parsing is kv-request.c's (etcd's
 * rules), this file turns its verdict into proposals, reads and watches, and answers with etcd's
 * headers and bodies. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-api.h"
#include "kv-node.h"
#include "kv-request.h"
#include "kv-store.h"
#include "shared/http-server.h"
#include "shared/log.h"
#include "shared/metrics.h"

#define KV_API_VERSION_BODY "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}"

struct KvApi {
        sd_event *event;
        KvNode *node;
        const KvConfig *cfg;
        HttpServer *http;
        MetricsRegistry *metrics;
        Metric *m_writes_ok, *m_writes_failed, *m_watches_total, *m_quorum_reads;
        size_t n_watches;
        char cluster_id[24];
};

/* A write or quorum read waiting for the node. */
typedef struct Waiting {
        KvApi *api;
        HttpRequest *req;
        KvProposal *proposal;
        KvRequest kr;
} Waiting;

/* A watch being served. */
typedef struct Watch {
        KvApi *api;
        HttpRequest *req;
        KvWatcher *watcher;
        bool stream;
} Watch;

/* ---------------------------------------------------------------- replies */

static void add_cors(HttpRequest *req) {
        (void) http_reply_header(req, "Access-Control-Allow-Headers", "accept, content-type, authorization");
        (void) http_reply_header(req, "Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE");
        (void) http_reply_header(req, "Access-Control-Allow-Origin", "*");
}

static void add_index_headers(KvApi *a, HttpRequest *req, uint64_t etcd_index, bool raft) {
        char v[32];

        (void) http_reply_header(req, "X-Etcd-Cluster-Id", a->cluster_id);
        (void) snprintf(v, sizeof(v), "%" PRIu64, etcd_index);
        (void) http_reply_header(req, "X-Etcd-Index", v);
        if (raft) {
                KvNodeStatus st;
                kv_node_status(a->node, &st);
                (void) snprintf(v, sizeof(v), "%" PRIu64, st.applied_index);
                (void) http_reply_header(req, "X-Raft-Index", v);
                (void) snprintf(v, sizeof(v), "%" PRIu64, st.term);
                (void) http_reply_header(req, "X-Raft-Term", v);
        }
}

static int reply_buf(HttpRequest *req, unsigned status, const char *ctype, Buf *b) {
        size_t len = b->len;
        char *data = buf_steal(b);
        if (!data)
                return -ENOMEM;
        return http_reply_take(req, status, ctype, data, len);
}

static int reply_text(HttpRequest *req, unsigned status, const char *text) {
        return http_reply(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* An etcd error: body and X-Etcd-Index (errors carry no Raft headers). */
static int reply_etcd_error(KvApi *a, HttpRequest *req, int code, const char *cause, uint64_t index) {
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int r = kv_store_render_error(code, cause, index, &b);

        if (r < 0)
                return r;
        add_index_headers(a, req, index, false);
        return reply_buf(req, (unsigned) kv_error_http_status(code), "application/json", &b);
}

static int reply_result(KvApi *a, HttpRequest *req, const KvStoreResult *res, bool no_value) {
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int status = 200, r;

        if (kv_store_result_is_error(res))
                return reply_etcd_error(a, req, res->error_code, res->error_cause, res->index);
        if (no_value) {
                r = kv_event_render_ex(res->event, kv_node_now_ns(), true, &b);
                status = kv_event_http_status(res->event);
        } else
                r = kv_store_result_render(res, kv_node_now_ns(), &b, &status);
        if (r < 0)
                return r;
        add_index_headers(a, req, res->index, true);
        return reply_buf(req, (unsigned) status, "application/json", &b);
}

static int reply_timeout(KvApi *a, HttpRequest *req) {
        return reply_etcd_error(a, req, KV_ECODE_RAFT_INTERNAL, "etcdserver: request timed out", 0);
}

/* ---------------------------------------------------------------- writes and quorum reads */

static void waiting_free(Waiting *w) {
        kv_request_done(&w->kr);
        free(w);
}

static void on_waiting_close(HttpRequest *req, void *userdata) {
        Waiting *w = userdata;
        /* The client left: the write may still be applied, nobody hears about it. */
        kv_proposal_cancel(w->proposal);
        waiting_free(w);
}

static void on_applied(const KvStoreResult *res, int error, void *userdata) {
        Waiting *w = userdata;
        KvApi *a = w->api;

        w->proposal = NULL;
        if (error < 0) {
                metric_inc(a->m_writes_failed);
                (void) reply_timeout(a, w->req);
        } else {
                metric_inc(a->m_writes_ok);
                (void) reply_result(a, w->req, res, w->kr.no_value_on_success);
        }
        waiting_free(w);
}

static void on_read_index(int error, void *userdata) {
        Waiting *w = userdata;
        KvApi *a = w->api;
        KvStoreResult res = KV_STORE_RESULT_NULL;

        w->proposal = NULL;
        if (error < 0)
                (void) reply_timeout(a, w->req);
        else if (kv_store_get(kv_node_store(a->node), w->kr.read.path, w->kr.read.recursive, w->kr.read.sorted, &res) < 0)
                (void) http_reply_errno(w->req, -ENOMEM, NULL);
        else
                (void) reply_result(a, w->req, &res, false);
        kv_store_result_done(&res);
        waiting_free(w);
}

static int start_waiting(KvApi *a, HttpRequest *req, KvRequest *kr) {
        Waiting *w = new0(Waiting, 1);
        int r;

        if (!w)
                return -ENOMEM;
        *w = (Waiting) { .api = a, .req = req, .kr = *kr };
        *kr = (KvRequest) {};
        if (w->kr.kind == KV_REQUEST_COMMAND)
                r = kv_node_propose(a->node, &w->kr.command, on_applied, w, &w->proposal);
        else {
                metric_inc(a->m_quorum_reads);
                r = kv_node_read_index(a->node, on_read_index, w, &w->proposal);
        }
        if (r < 0) {
                waiting_free(w);
                return r == -E2BIG ? reply_etcd_error(a, req, KV_ECODE_INVALID_FORM, "request too large", 0) : r;
        }
        return http_request_suspend(req, on_waiting_close, w);
}

/* ---------------------------------------------------------------- watches */

static void watch_free(Watch *w) {
        w->api->n_watches--;
        kv_watcher_free(w->watcher);
        free(w);
}

static void on_watch_close(HttpRequest *req, void *userdata) {
        watch_free(userdata);
}

static void on_watch_event(KvWatcher *kw, const KvEvent *e, void *userdata) {
        Watch *w = userdata;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int r;

        r = kv_event_render(e, kv_node_now_ns(), &b);
        if (r >= 0)
                r = http_stream_write(w->req, b.data, b.len);
        if (r < 0 || !w->stream) {
                /* One event per long poll; a stream that cannot keep up is ended too. */
                (void) http_stream_end(w->req);
                watch_free(w);
        }
}

static int start_watch(KvApi *a, HttpRequest *req, const KvRequest *kr) {
        KvStore *store = kv_node_store(a->node);
        KvStoreResult now = KV_STORE_RESULT_NULL;
        Watch *w;
        int r;

        if (kv_store_watcher_count(store) >= a->cfg->max_watchers)
                return reply_etcd_error(a, req, KV_ECODE_RAFT_INTERNAL, "too many watchers", kv_store_index(store));
        w = new0(Watch, 1);
        if (!w)
                return -ENOMEM;
        *w = (Watch) { .api = a, .req = req, .stream = kr->read.stream };
        r = kv_store_watch(store, kr->read.path, kr->read.recursive, kr->read.stream, kr->read.wait_index, on_watch_event, w,
                           &w->watcher, &now);
        if (r < 0) {
                free(w);
                return r;
        }
        metric_inc(a->m_watches_total);
        if (r == 1) {
                /* Answered from the history (or 401): no need to wait. */
                free(w);
                r = reply_result(a, req, &now, false);
                kv_store_result_done(&now);
                return r;
        }
        a->n_watches++;
        /* etcd sends status and headers at once; the body follows with the event. */
        add_index_headers(a, req, kv_watcher_start_index(w->watcher), true);
        r = http_reply_stream(req, 200, "application/json", on_watch_close, w);
        if (r < 0)
                watch_free(w);
        return r;
}

/* ---------------------------------------------------------------- /v2/keys */

static const char *param(void *userdata, const char *name) {
        return http_request_param(userdata, name);
}

static int h_keys(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        const char *raw = http_request_raw_uri(req), *q = strchr(raw, '?');
        KvRequestInput in = {
                .method = http_request_method(req),
                .path = http_request_path(req),
                .bad_escape = http_request_bad_escape(req),
                .form_error = q && strchr(q, ';') ? "invalid semicolon separator in query" : NULL,
                .param = param,
                .userdata = req,
                .now_ns = kv_node_now_ns(),
        };
        KvStoreResult res = KV_STORE_RESULT_NULL;
        KvRequest kr = {};
        int r;

        add_cors(req);
        r = kv_request_parse(&in, &kr);
        if (r < 0)
                return r;
        switch (kr.kind) {
        case KV_REQUEST_ERROR:
                r = reply_etcd_error(a, req, kr.error_code, kr.error_cause, 0);
                break;
        case KV_REQUEST_REDIRECT: {
                _cleanup_free_ char *loc = NULL, *body = NULL;
                if (asprintf(&loc, "%s%s", kr.location, q ?: "") < 0 ||
                    asprintf(&body, "<a href=\"%s\">Moved Permanently</a>.\n\n", loc) < 0) {
                        r = -ENOMEM;
                        break;
                }
                (void) http_reply_header(req, "Location", loc);
                r = http_reply(req, 301, "text/html; charset=utf-8", body, strlen(body));
                break;
        }
        case KV_REQUEST_NOT_FOUND:
                r = reply_text(req, 404, "404 page not found\n");
                break;
        case KV_REQUEST_METHOD_NOT_ALLOWED:
                (void) http_reply_header(req, "Allow", "HEAD,GET,PUT,POST,DELETE");
                (void) http_reply_header(req, "X-Content-Type-Options", "nosniff");
                r = reply_text(req, 405, "Method Not Allowed\n");
                break;
        case KV_REQUEST_COMMAND:
                r = start_waiting(a, req, &kr);
                break;
        case KV_REQUEST_READ:
                if (kr.read.quorum) {
                        r = start_waiting(a, req, &kr);
                        break;
                }
                r = kv_store_get(kv_node_store(a->node), kr.read.path, kr.read.recursive, kr.read.sorted, &res);
                if (r >= 0)
                        r = reply_result(a, req, &res, false);
                kv_store_result_done(&res);
                break;
        case KV_REQUEST_WATCH:
                r = start_watch(a, req, &kr);
                break;
        default:
                r = -EINVAL;
        }
        kv_request_done(&kr);
        return r;
}

/* ---------------------------------------------------------------- everything else */

static bool method_is(HttpRequest *req, const char *m) {
        return streq(http_request_method(req), m) || (streq(m, "GET") && streq(http_request_method(req), "HEAD"));
}

static int method_not_allowed(HttpRequest *req, const char *allow) {
        (void) http_reply_header(req, "Allow", allow);
        (void) http_reply_header(req, "X-Content-Type-Options", "nosniff");
        return reply_text(req, 405, "Method Not Allowed\n");
}

static int h_members(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int r;

        add_cors(req);
        if (!method_is(req, "GET"))
                return method_not_allowed(req, "GET");
        if (!streq(http_request_path(req), "/v2/members") && !streq(http_request_path(req), "/v2/members/"))
                return reply_text(req, 404, "404 page not found\n");
        r = kv_members_render(kv_node_members(a->node), &b);
        if (r < 0)
                return r;
        (void) http_reply_header(req, "X-Etcd-Cluster-Id", a->cluster_id);
        return reply_buf(req, 200, "application/json", &b);
}

static int h_machines(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int r;

        add_cors(req);
        if (!method_is(req, "GET"))
                return method_not_allowed(req, "GET, HEAD");
        r = kv_members_render_machines(kv_node_members(a->node), &b);
        if (r < 0)
                return r;
        return reply_buf(req, 200, "text/plain; charset=utf-8", &b);
}

static int h_stats(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        const char *which = http_request_path(req) + strlen("/v2/stats/");
        int r;

        add_cors(req);
        if (!method_is(req, "GET"))
                return method_not_allowed(req, "GET");
        if (streq(which, "self"))
                r = kv_node_render_self_stats(a->node, &b);
        else if (streq(which, "store"))
                r = kv_store_render_stats(kv_node_store(a->node), &b);
        else if (streq(which, "leader")) {
                r = kv_node_render_leader_stats(a->node, &b);
                if (r == -EPERM)
                        return http_reply(req, 403, "application/json", "{\"message\":\"not current leader\"}", 32);
        } else
                return reply_text(req, 404, "404 page not found\n");
        if (r < 0)
                return r;
        return reply_buf(req, 200, "application/json", &b);
}

static int h_version(HttpRequest *req, void *userdata) {
        add_cors(req);
        if (!method_is(req, "GET"))
                return method_not_allowed(req, "GET");
        return http_reply(req, 200, "application/json", KV_API_VERSION_BODY, strlen(KV_API_VERSION_BODY));
}

static int h_health(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        bool ok = kv_node_has_leader(a->node);

        add_cors(req);
        if (!method_is(req, "GET"))
                return method_not_allowed(req, "GET");
        return reply_text(req, ok ? 200 : 503, ok ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}");
}

static int h_metrics(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        return http_reply_metrics(req, a->metrics);
}

static int h_options_or_404(HttpRequest *req, void *userdata) {
        add_cors(req);
        if (streq(http_request_method(req), "OPTIONS"))
                return http_reply(req, 200, NULL, "", 0);
        return reply_text(req, 404, "404 page not found\n");
}

/* OPTIONS on a known path is answered with the CORS headers alone, as etcd does. */
static int with_options(HttpRequest *req, void *userdata, HttpHandler h) {
        if (streq(http_request_method(req), "OPTIONS")) {
                add_cors(req);
                return http_reply(req, 200, NULL, "", 0);
        }
        return h(req, userdata);
}

#define ROUTE(fn) static int fn##_route(HttpRequest *req, void *u) { return with_options(req, u, fn); }
ROUTE(h_keys)
ROUTE(h_members)
ROUTE(h_machines)
ROUTE(h_stats)
ROUTE(h_version)
ROUTE(h_health)

static const HttpRoute routes[] = {
        { NULL, "/v2/keys", h_keys_route, HTTP_ROUTE_PREFIX },
        { NULL, "/v2/members", h_members_route, HTTP_ROUTE_PREFIX },
        { NULL, "/v2/machines", h_machines_route },
        { NULL, "/v2/stats/", h_stats_route, HTTP_ROUTE_PREFIX },
        { NULL, "/version", h_version_route },
        { NULL, "/health", h_health_route },
        { "GET", "/metrics", h_metrics },
        { NULL, "/", h_options_or_404, HTTP_ROUTE_PREFIX },
};

/* ---------------------------------------------------------------- metrics */

#define NODE_GAUGE(fname, field)                                 \
        static double fname(void *userdata) {                    \
                KvNodeStatus st;                                 \
                kv_node_status(((KvApi *) userdata)->node, &st); \
                return (double) (field);                         \
        }
NODE_GAUGE(g_term, st.term)
NODE_GAUGE(g_applied, st.applied_index)
NODE_GAUGE(g_commit, st.commit_index)
NODE_GAUGE(g_leader, st.role == RAFT_LEADER)
NODE_GAUGE(g_pending, st.pending)
NODE_GAUGE(g_snapshot, st.snapshot_index)

static double g_has_leader(void *userdata) {
        return kv_node_has_leader(((KvApi *) userdata)->node);
}

static double g_keys(void *userdata) {
        return (double) kv_store_count(kv_node_store(((KvApi *) userdata)->node));
}

static double g_watches(void *userdata) {
        return (double) ((KvApi *) userdata)->n_watches;
}

static int register_metrics(KvApi *a) {
        MetricsRegistry *m = a->metrics;

        if (!metrics_gauge_fn(m, "flotilla_kv_raft_term", NULL, "Current Raft term.", g_term, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_raft_applied_index", NULL, "Last applied log index.", g_applied, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_raft_commit_index", NULL, "Commit index.", g_commit, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_raft_snapshot_index", NULL, "Index of the last snapshot.", g_snapshot, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_is_leader", NULL, "1 if this member leads.", g_leader, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_has_leader", NULL, "1 if a leader is known.", g_has_leader, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_pending_requests", NULL, "Writes and quorum reads waiting.", g_pending, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_store_nodes", NULL, "Keys and directories stored.", g_keys, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_watches", NULL, "Watches being served.", g_watches, a))
                return -ENOMEM;
        a->m_writes_ok = metrics_counter(m, "flotilla_kv_writes_total", "result=\"applied\"", "Writes by outcome.");
        a->m_writes_failed = metrics_counter(m, "flotilla_kv_writes_total", "result=\"failed\"", "Writes by outcome.");
        a->m_watches_total = metrics_counter(m, "flotilla_kv_watches_total", NULL, "Watches started.");
        a->m_quorum_reads = metrics_counter(m, "flotilla_kv_quorum_reads_total", NULL, "Quorum reads started.");
        return a->m_writes_ok && a->m_writes_failed && a->m_watches_total && a->m_quorum_reads ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- life cycle */

int kv_api_new(KvApi **ret, sd_event *e, KvNode *node, const KvConfig *cfg, int *listen_fds, size_t n_listen_fds) {
        _cleanup_(kv_api_freep) KvApi *a = NULL;
        HttpServerConfig hc = {
                .max_body_size = cfg->max_request_bytes,
                /* MHD clears its per-connection pool on every request: keep it to what etcd
                 * clients need (their headers are small), so long polls stay cheap. */
                .connection_memory_limit = 16U << 10,
                .max_connections = (unsigned) cfg->max_connections,
                .server_header = "flotilla-kv/" FLOTILLA_VERSION,
        };
        KvNodeStatus st;
        int r;

        a = new0(KvApi, 1);
        if (!a)
                return log_oom();
        a->event = sd_event_ref(e);
        a->node = node;
        a->cfg = cfg;
        kv_node_status(node, &st);
        (void) snprintf(a->cluster_id, sizeof(a->cluster_id), "%" PRIx64, st.cluster_id);
        r = metrics_new(&a->metrics);
        if (r >= 0)
                r = register_metrics(a);
        if (r >= 0)
                r = http_server_new(&a->http, e, &hc, routes, ELEMENTSOF(routes), a);
        if (r >= 0)
                r = http_server_set_metrics(a->http, a->metrics);
        if (r < 0)
                return log_oom();
        for (size_t i = 0; i < n_listen_fds; i++) {
                r = http_server_listen_fd(a->http, listen_fds[i]);
                listen_fds[i] = -EBADF;
                if (r < 0)
                        return log_error_errno(r, "Failed to serve a passed socket: %m");
        }
        if (n_listen_fds == 0)
                STRV_FOREACH(u, cfg->listen_client_urls) {
                        r = http_server_listen(a->http, *u);
                        if (r < 0)
                                return log_error_errno(r, "Failed to listen for clients on %s: %m", *u);
                }
        *ret = TAKE_PTR(a);
        return 0;
}

KvApi *kv_api_free(KvApi *a) {
        if (!a)
                return NULL;
        http_server_free(a->http); /* ends waiting requests and watches through their on_close */
        metrics_free(a->metrics);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

size_t kv_api_watchers(KvApi *a) {
        return a->n_watches;
}
