/* SPDX-License-Identifier: MIT */
/* The etcd v2 HTTP API on the shared HTTP server: request parsing is kv-request.c's (etcd's
 * rules), this file turns its verdict into proposals, reads and watches, and answers with etcd's
 * headers and bodies. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "kv-api.h"
#include "kv-node.h"
#include "kv-request.h"
#include "kv-store.h"
#include "shared/event-util.h"
#include "shared/http-server.h"
#include "shared/log.h"
#include "shared/metrics.h"

#define KV_API_VERSION_BODY "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}"
/* Go's ParseForm reads at most this much of a form body ("http: POST too large" beyond), and
 * etcd applies --max-request-bytes only to v3 requests: this is the v2 API's body limit. */
#define KV_API_MAX_FORM_SIZE (10U << 20)
/* etcd's /health waits this long for its quorum read. */
#define KV_API_HEALTH_TIMEOUT_USEC USEC_PER_SEC

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

/* A watch being served. watcher is NULL for a stream answered from the history, which etcd
 * keeps open without ever sending more. */
typedef struct Watch {
        KvApi *api;
        HttpRequest *req;
        KvWatcher *watcher;
        bool stream;
} Watch;

/* A /health request waiting for its quorum read. */
typedef struct Health {
        KvApi *api;
        HttpRequest *req;
        KvProposal *proposal;
        sd_event_source *timer;
} Health;

/* ---------------------------------------------------------------- replies */

static void add_cors(HttpRequest *req) {
        (void) http_reply_header(req, "Access-Control-Allow-Headers", "accept, content-type, authorization");
        (void) http_reply_header(req, "Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE");
        (void) http_reply_header(req, "Access-Control-Allow-Origin", "*");
}

static void add_index_headers(KvApi *a, HttpRequest *req, uint64_t etcd_index, bool raft) {
        char v[FORMAT_U64_MAX];

        (void) http_reply_header(req, "X-Etcd-Cluster-Id", a->cluster_id);
        (void) http_reply_header(req, "X-Etcd-Index", format_u64(v, etcd_index));
        if (raft) {
                KvNodeStatus st;
                kv_node_status(a->node, &st);
                (void) http_reply_header(req, "X-Raft-Index", format_u64(v, st.applied_index));
                (void) http_reply_header(req, "X-Raft-Term", format_u64(v, st.term));
        }
}

/* Go's net/http buffers 2048 bytes of a handler's output: a body that fits goes out with a
 * Content-Length, a longer one chunked. (To HEAD, Go sends neither header when the body is empty
 * or longer; libmicrohttpd cannot, so HEAD answers always carry a Content-Length.) */
#define KV_API_GO_CHUNKING_SIZE 2048U

static int reply_buf(HttpRequest *req, unsigned status, const char *ctype, Buf *b) {
        bool head = streq(http_request_method(req), "HEAD");
        size_t len = b->len;
        char *data = buf_steal(b);

        if (!data)
                return -ENOMEM;
        if (len > KV_API_GO_CHUNKING_SIZE && !head)
                return http_reply_take_chunked(req, status, ctype, data, len);
        return http_reply_take(req, status, ctype, data, len);
}

static int reply_text(HttpRequest *req, unsigned status, const char *text) {
        return http_reply(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* Go's http.Error: text/plain, nosniff, the text and a newline. */
static int reply_go_error(HttpRequest *req, unsigned status, const char *text) {
        _cleanup_free_ char *body = NULL;

        if (asprintf(&body, "%s\n", text) < 0)
                return -ENOMEM;
        (void) http_reply_header(req, "X-Content-Type-Options", "nosniff");
        return reply_text(req, status, body);
}

/* Go's http.NotFound. */
static int reply_not_found(HttpRequest *req) {
        return reply_go_error(req, 404, "404 page not found");
}

/* etcd's allowMethod: the allowed methods joined by ",", then http.Error. */
static int method_not_allowed(HttpRequest *req, const char *allow) {
        (void) http_reply_header(req, "Allow", allow);
        return reply_go_error(req, 405, "Method Not Allowed");
}

static bool method_in(HttpRequest *req, const char *const *methods) {
        for (; *methods; methods++)
                if (streq(http_request_method(req), *methods))
                        return true;
        return false;
}

/* Go's encoding/json string: HTML-safe, \u2028/\u2029 escaped, invalid UTF-8 as U+FFFD. */
static int put_go_json_string(Buf *b, const char *s) {
        _cleanup_free_ char *u = utf8_sanitize(s, strlen(s));
        int r;

        if (!u)
                return -ENOMEM;
        r = buf_append(b, "\"", 1);
        for (const unsigned char *p = (const unsigned char *) u; *p && r >= 0; p++) {
                if (*p == '"' || *p == '\\')
                        r = buf_printf(b, "\\%c", *p);
                else if (*p == '\n')
                        r = buf_append_str(b, "\\n");
                else if (*p == '\r')
                        r = buf_append_str(b, "\\r");
                else if (*p == '\t')
                        r = buf_append_str(b, "\\t");
                else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
                        r = buf_printf(b, "\\u%04x", *p);
                else if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)) {
                        r = buf_printf(b, "\\u202%c", p[2] == 0xA8 ? '8' : '9');
                        p += 2;
                } else
                        r = buf_append(b, p, 1);
        }
        return r < 0 ? r : buf_append(b, "\"", 1);
}

/* etcd's httptypes.HTTPError: {"message":"..."} as application/json, without a newline. */
static int reply_http_error(HttpRequest *req, unsigned status, const char *message) {
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int r = buf_append_str(&b, "{\"message\":");

        if (r >= 0)
                r = put_go_json_string(&b, message);
        if (r >= 0)
                r = buf_append_str(&b, "}");
        if (r < 0)
                return r;
        return reply_buf(req, status, "application/json", &b);
}

/* Go's url.URL.EscapedPath for a path that no longer matches the raw one. */
static int put_go_escaped_path(Buf *b, const char *path) {
        int r = 0;

        for (const unsigned char *p = (const unsigned char *) path; *p && r >= 0; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-_.~$&+,/:;=@", *p))
                        r = buf_append(b, p, 1);
                else
                        r = buf_printf(b, "%%%02X", *p);
        return r;
}

/* Go's html.EscapeString subset that http.Redirect uses. */
static int put_html_escaped(Buf *b, const char *s) {
        int r = 0;

        for (; *s && r >= 0; s++)
                switch (*s) {
                case '&': r = buf_append_str(b, "&amp;"); break;
                case '<': r = buf_append_str(b, "&lt;"); break;
                case '>': r = buf_append_str(b, "&gt;"); break;
                case '"': r = buf_append_str(b, "&#34;"); break;
                case '\'': r = buf_append_str(b, "&#39;"); break;
                default: r = buf_append(b, s, 1);
                }
        return r;
}

/* Go's ServeMux redirect to the clean path: http.Redirect(url.String(), 301) of a URL made of the
 * clean path and the raw query (a bare "?" is dropped). The HTML body is sent for GET only, its
 * Content-Type for GET and HEAD. */
static int reply_redirect(HttpRequest *req, const char *clean_path) {
        const char *q = strchr(http_request_raw_uri(req), '?'), *m = http_request_method(req);
        _cleanup_(buf_done) Buf loc = BUF_INIT(0), body = BUF_INIT(0);
        int r;

        r = put_go_escaped_path(&loc, clean_path);
        if (r >= 0 && q && q[1])
                r = buf_append_str(&loc, q);
        if (r >= 0 && streq(m, "GET")) {
                r = buf_append_str(&body, "<a href=\"");
                if (r >= 0)
                        r = put_html_escaped(&body, loc.data);
                if (r >= 0)
                        r = buf_append_str(&body, "\">Moved Permanently</a>.\n\n");
        }
        if (r < 0)
                return r;
        (void) http_reply_header(req, "Location", loc.data);
        return reply_buf(req, 301, streq(m, "GET") || streq(m, "HEAD") ? "text/html; charset=utf-8" : NULL, &body);
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
        if (r == 1 && kv_store_result_is_error(&now)) {
                /* 401: the history was cleared. */
                free(w);
                r = reply_result(a, req, &now, false);
                kv_store_result_done(&now);
                return r;
        }
        a->n_watches++;
        /* etcd sends status and headers at once, always 200; the body follows with the event. */
        add_index_headers(a, req, r == 1 ? now.index : kv_watcher_start_index(w->watcher), true);
        r = http_reply_stream(req, 200, "application/json", on_watch_close, w);
        if (r < 0) {
                watch_free(w);
                kv_store_result_done(&now);
                return r;
        }
        if (now.event) {
                /* Answered from the history, chunked like a live event. A stream stays open and
                 * never hears more (etcd did not register the watcher either). */
                _cleanup_(buf_done) Buf b = BUF_INIT(0);
                r = kv_event_render(now.event, kv_node_now_ns(), &b);
                if (r >= 0)
                        r = http_stream_write(req, b.data, b.len);
                if (r < 0 || !w->stream) {
                        (void) http_stream_end(req);
                        watch_free(w);
                }
                kv_store_result_done(&now);
        }
        return 0;
}

/* ---------------------------------------------------------------- /v2/keys */

/* Go's parsePostForm reads a form body of PUT, POST and PATCH only. */
static bool has_body_form(HttpRequest *req) {
        const char *m = http_request_method(req);
        return streq(m, "PUT") || streq(m, "POST") || streq(m, "PATCH");
}

/* Go's FormValue: the form body (only for the methods whose body Go parses), then the query. */
static const char *param(void *userdata, const char *name) {
        HttpRequest *req = userdata;
        return has_body_form(req) ? http_request_param(req, name) : http_request_query(req, name);
}

/* The first invalid escape of one URL component, as Go's url.unescape reports it. */
static bool first_bad_escape(const char *s, size_t len, char ret[static 4]) {
        for (size_t i = 0; i < len; i++)
                if (s[i] == '%' && (len - i < 3 || !isxdigit((unsigned char) s[i + 1]) || !isxdigit((unsigned char) s[i + 2]) ||
                                    (s[i + 1] == '0' && s[i + 2] == '0'))) {
                        /* %00 too: it would cut a C string short (see the HTTP server). */
                        (void) snprintf(ret, 4, "%.*s", (int) MIN(len - i, (size_t) 3), s + i);
                        return true;
                }
        return false;
}

/* For a request whose body Go does not parse: the first bad escape of the path, else of the
 * query's names and values in order. */
static const char *url_bad_escape(HttpRequest *req, char buf[static 4]) {
        const char *raw = http_request_raw_uri(req), *q = strchr(raw, '?');

        if (first_bad_escape(raw, q ? (size_t) (q - raw) : strlen(raw), buf))
                return buf;
        for (const char *p = q ? q + 1 : NULL; p && *p;) {
                const char *amp = strchr(p, '&') ?: p + strlen(p), *eq = memchr(p, '=', (size_t) (amp - p));
                if (!memchr(p, ';', (size_t) (amp - p)) &&
                    (first_bad_escape(p, (size_t) ((eq ?: amp) - p), buf) ||
                     (eq && first_bad_escape(eq + 1, (size_t) (amp - eq - 1), buf))))
                        return buf;
                p = *amp ? amp + 1 : amp;
        }
        return NULL;
}

static bool has_form_body(HttpRequest *req) {
        const char *ct = http_request_header(req, "Content-Type");
        size_t l = strlen("application/x-www-form-urlencoded");

        return has_body_form(req) && ct && strncasecmp(ct, "application/x-www-form-urlencoded", l) == 0 &&
               (ct[l] == 0 || ct[l] == ';' || ct[l] == ' ');
}

static int h_keys(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        const char *raw = http_request_raw_uri(req), *q = strchr(raw, '?');
        char bad[4];
        size_t body_len = 0;
        bool too_large;
        KvStoreResult res = KV_STORE_RESULT_NULL;
        KvRequest kr = {};
        int r;

        (void) http_request_body(req, &body_len);
        /* Go's ParseForm fails on the body first, and then never looks at the query. */
        too_large = has_form_body(req) && (http_request_body_too_large(req) || body_len > KV_API_MAX_FORM_SIZE);
        KvRequestInput in = {
                .method = http_request_method(req),
                .path = http_request_path(req),
                .bad_escape = too_large            ? NULL
                              : has_body_form(req) ? http_request_bad_escape(req)
                                                   : url_bad_escape(req, bad),
                .form_error = too_large                 ? "http: POST too large"
                              : q && strchr(q, ';') ? "invalid semicolon separator in query"
                                                    : NULL,
                .param = param,
                .userdata = req,
                .now_ns = kv_node_now_ns(),
        };

        add_cors(req);
        r = kv_request_parse(&in, &kr);
        if (r < 0)
                return r;
        /* etcd checks whether v2 auth is enabled for every request that parsed, which its store
         * counts as a failed get. */
        if (kr.kind == KV_REQUEST_COMMAND || kr.kind == KV_REQUEST_READ || kr.kind == KV_REQUEST_WATCH)
                kv_store_count_auth_check(kv_node_store(a->node));
        switch (kr.kind) {
        case KV_REQUEST_ERROR:
                r = reply_etcd_error(a, req, kr.error_code, kr.error_cause, 0);
                break;
        case KV_REQUEST_REDIRECT:
                r = reply_redirect(req, kr.location);
                break;
        case KV_REQUEST_NOT_FOUND:
                r = reply_not_found(req);
                break;
        case KV_REQUEST_METHOD_NOT_ALLOWED:
                r = method_not_allowed(req, "HEAD,GET,PUT,POST,DELETE");
                break;
        case KV_REQUEST_OPTIONS:
                r = http_reply(req, 200, NULL, "", 0);
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

/* ---------------------------------------------------------------- /v2/members */

/* The part after /v2/members and one slash (etcd's trimPrefix). */
static const char *members_rest(HttpRequest *req) {
        const char *rest = startswith(http_request_path(req), "/v2/members") ?: "";
        return rest[0] == '/' ? rest + 1 : rest;
}

static int render_member(const KvMember *m, Buf *out) {
        KvMembers one = { .members = (KvMember *) m, .n = 1 };
        _cleanup_(buf_done) Buf all = BUF_INIT(0);
        const size_t pre = strlen("{\"members\":["), post = strlen("]}\n");
        int r = kv_members_render(&one, &all);

        if (r < 0)
                return r;
        assert(all.len > pre + post);
        r = buf_append(out, all.data + pre, all.len - pre - post);
        return r < 0 ? r : buf_append_str(out, "\n");
}

/* Go's "invalid character 'c' ..." quoting of one byte (quoteChar). */
static char *go_quote_char(unsigned char c) {
        char *s = NULL;
        if (c == '\'')
                return strdup("'\\''");
        if (c == '"')
                return strdup("'\"'");
        if (c >= 0x20 && c < 0x7f)
                (void) asprintf(&s, "'%c'", c);
        else
                (void) asprintf(&s, "'\\x%02x'", c);
        return s;
}

/* etcd's types.NewURLs for one URL: the checks that do not need a full URL parser. */
static int check_peer_url(const char *raw, char **ret_error) {
        _cleanup_free_ char *in = NULL, *scheme = NULL;
        const char *p, *colon, *host_end, *at, *path_end;
        size_t n;
        int r;

        while (*raw == ' ' || (*raw >= '\t' && *raw <= '\r'))
                raw++;
        in = strdup(raw);
        if (!in)
                return -ENOMEM;
        for (n = strlen(in); n > 0 && (in[n - 1] == ' ' || (in[n - 1] >= '\t' && in[n - 1] <= '\r')); n--)
                in[n - 1] = 0;
        colon = strchr(in, ':');
        if (colon && colon > in && ((in[0] | 0x20) >= 'a' && (in[0] | 0x20) <= 'z') &&
            strspn(in, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") == (size_t) (colon - in)) {
                scheme = strndup(in, (size_t) (colon - in));
                if (!scheme)
                        return -ENOMEM;
                for (char *c = scheme; *c; c++)
                        *c = (char) (*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                p = colon + 1;
        } else
                p = in;
        if (!scheme || (!streq(scheme, "http") && !streq(scheme, "https") && !streq(scheme, "unix") && !streq(scheme, "unixs")))
                r = asprintf(ret_error, "URL scheme must be http, https, unix, or unixs: %s", in);
        else {
                const char *h = NULL;
                size_t hl = 0;
                if (startswith(p, "//")) {
                        p += 2;
                        host_end = p + strcspn(p, "/?#");
                        at = memrchr(p, '@', (size_t) (host_end - p));
                        h = at ? at + 1 : p;
                        hl = (size_t) (host_end - h);
                        p = host_end;
                }
                path_end = p + strcspn(p, "?#");
                /* net.SplitHostPort: one port after the last colon, brackets for IPv6. */
                const char *last = h ? memrchr(h, ':', hl) : NULL;
                bool bad = !last || (h[0] == '[' ? last[-1] != ']' || memchr(h + 1, '[', hl - 1) : memchr(h, ':', (size_t) (last - h)) != NULL);
                if (bad)
                        r = asprintf(ret_error, "URL address does not have the form \"host:port\": %s", in);
                else if (path_end > p)
                        r = asprintf(ret_error, "URL must not contain a path: %s", in);
                else {
                        *ret_error = NULL;
                        return 0;
                }
        }
        return r < 0 ? -ENOMEM : 1;
}

/* etcd's unmarshalRequest for MemberCreateRequest / MemberUpdateRequest. Returns 0 with the peer
 * URLs, 1 after replying with the error etcd gives, or < 0. */
static int member_request_parse(HttpRequest *req, char ***ret_urls) {
        _cleanup_free_ char *ctype = strdup(http_request_header(req, "Content-Type") ?: ""), *msg = NULL;
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_strv_free_ char **urls = NULL;
        const char *body, *semi;
        json_error_t err;
        size_t len, i;
        json_t *v = NULL, *x;
        int r;

        if (!ctype)
                return -ENOMEM;
        semi = strchr(ctype, ';');
        if (semi) {
                /* Lowered and trimmed only when there are parameters, as etcd does. */
                char *s = ctype, *e = ctype + (semi - ctype);
                *e = 0;
                while (*s == ' ' || *s == '\t')
                        s++;
                while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                        *--e = 0;
                for (char *c = s; *c; c++)
                        *c = (char) (*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                memmove(ctype, s, strlen(s) + 1);
        }
        if (!streq(ctype, "application/json")) {
                if (asprintf(&msg, "Bad Content-Type %s, accept application/json", ctype) < 0)
                        return -ENOMEM;
                return reply_http_error(req, 415, msg) ?: 1;
        }
        body = http_request_body(req, &len);
        j = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!j) {
                i = strspn(body, " \t\r\n");
                if (i >= len || err.position >= (int) len || strstr(err.text, "end of file"))
                        return reply_http_error(req, 400, "unexpected end of JSON input") ?: 1;
                if (!strchr("{[\"-0123456789tfn", body[i])) {
                        _cleanup_free_ char *c = go_quote_char((unsigned char) body[i]);
                        if (!c || asprintf(&msg, "invalid character %s looking for beginning of value", c) < 0)
                                return -ENOMEM;
                        return reply_http_error(req, 400, msg) ?: 1;
                }
                /* Go words its other syntax errors differently: the status is what matters. */
                return reply_http_error(req, 400, err.text) ?: 1;
        }
        if (json_is_array(j) || json_is_string(j) || json_is_number(j) || json_is_boolean(j)) {
                if (asprintf(&msg, "json: cannot unmarshal %s into Go value of type struct { PeerURLs []string "
                                   "\"json:\\\"peerURLs\\\"\" }",
                             json_is_array(j) ? "array" : json_is_string(j) ? "string" : json_is_number(j) ? "number" : "bool") < 0)
                        return -ENOMEM;
                return reply_http_error(req, 400, msg) ?: 1;
        }
        if (json_is_object(j)) {
                const char *k;
                /* Go matches field names without regard to case; the last match wins. */
                json_object_foreach(j, k, x)
                        if (strcasecmp(k, "peerURLs") == 0)
                                v = x;
        }
        if (v && !json_is_null(v)) {
                if (!json_is_array(v)) {
                        if (asprintf(&msg, "json: cannot unmarshal %s into Go struct field .peerURLs of type []string",
                                     json_is_object(v) ? "object" : json_is_string(v) ? "string" : json_is_number(v) ? "number" : "bool") < 0)
                                return -ENOMEM;
                        return reply_http_error(req, 400, msg) ?: 1;
                }
                json_array_foreach(v, i, x) {
                        if (!json_is_string(x)) {
                                if (json_is_null(x)) {
                                        r = strv_extend(&urls, "");
                                        if (r < 0)
                                                return r;
                                        continue;
                                }
                                if (asprintf(&msg, "json: cannot unmarshal %s into Go struct field .peerURLs of type string",
                                             json_is_object(x) ? "object" : json_is_array(x) ? "array" : json_is_number(x) ? "number" : "bool") < 0)
                                        return -ENOMEM;
                                return reply_http_error(req, 400, msg) ?: 1;
                        }
                        r = strv_extend(&urls, json_string_value(x));
                        if (r < 0)
                                return r;
                }
        }
        if (strv_length(urls) == 0)
                return reply_http_error(req, 400, "no valid URLs given") ?: 1;
        STRV_FOREACH(u, urls) {
                r = check_peer_url(*u, &msg);
                if (r < 0)
                        return r;
                if (r > 0)
                        return reply_http_error(req, 400, msg) ?: 1;
        }
        *ret_urls = TAKE_PTR(urls);
        return 0;
}

/* etcd's getID: the member id after /v2/members/, in hex. Returns 0, or 1 after replying. */
static int member_id_parse(HttpRequest *req, uint64_t *ret) {
        const char *s = members_rest(req);
        _cleanup_free_ char *msg = NULL;
        char *end;

        if (isempty(s))
                return reply_go_error(req, 405, "Method Not Allowed") ?: 1;
        /* strconv.ParseUint(s, 16, 64): hex digits only, no prefix or sign. */
        errno = 0;
        *ret = strtoull(s, &end, 16);
        if (errno != 0 || *end || strspn(s, "0123456789abcdefABCDEF") != strlen(s)) {
                if (asprintf(&msg, "No such member: %s", s) < 0)
                        return -ENOMEM;
                return reply_http_error(req, 404, msg) ?: 1;
        }
        return 0;
}

typedef enum ChangeKind { CHANGE_ADD, CHANGE_REMOVE, CHANGE_UPDATE, CHANGE_PROMOTE } ChangeKind;

/* A client waiting for its membership change to be applied. */
typedef struct MemberChange {
        KvApi *api;
        HttpRequest *req;
        ChangeKind kind;
        KvMember member;          /* what POST and promote answer with */
} MemberChange;

static void member_change_free(MemberChange *c) {
        kv_member_done(&c->member);
        free(c);
}

static void on_member_change_close(HttpRequest *req, void *userdata) {
        MemberChange *c = userdata;
        kv_node_member_change_cancel(c->api->node);
        member_change_free(c);
}

static void on_member_changed(int error, void *userdata) {
        MemberChange *c = userdata;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);

        if (error < 0)
                /* etcd answers a change that did not happen in time with its generic 500. */
                (void) reply_http_error(c->req, 500, error == -ETIMEDOUT ? "etcdserver: request timed out"
                                                                        : "etcdserver: server stopped");
        else if (c->kind == CHANGE_ADD || c->kind == CHANGE_PROMOTE) {
                if (render_member(&c->member, &b) < 0)
                        (void) http_reply_errno(c->req, -ENOMEM, NULL);
                else
                        (void) reply_buf(c->req, c->kind == CHANGE_ADD ? 201 : 200, "application/json", &b);
        } else
                (void) http_reply(c->req, 204, NULL, NULL, 0);
        member_change_free(c);
}

/* Proposes the change and parks the request until it is applied (or fails). */
static int member_change(KvApi *a, HttpRequest *req, ChangeKind kind, uint64_t id, char **urls) {
        _cleanup_free_ char *msg = NULL;
        MemberChange *c = new0(MemberChange, 1);
        const KvMember *old;
        int r;

        if (!c)
                return -ENOMEM;
        *c = (MemberChange) { .api = a, .req = req, .kind = kind };
        switch (kind) {
        case CHANGE_ADD:
                r = kv_node_add_member(a->node, urls, &id, on_member_changed, c);
                c->member = (KvMember) { .id = id, .peer_urls = strv_copy(urls), .client_urls = strv_copy((char *[]) { NULL }) };
                if (r >= 0 && (!c->member.peer_urls || !c->member.client_urls))
                        r = -ENOMEM; /* the change is under way; the client gets a 500 */
                break;
        case CHANGE_REMOVE:
                r = kv_node_remove_member(a->node, id, on_member_changed, c);
                break;
        case CHANGE_UPDATE:
                r = kv_node_update_member(a->node, id, urls, on_member_changed, c);
                break;
        case CHANGE_PROMOTE:
                old = kv_members_find(kv_node_members(a->node), id);
                r = old ? kv_node_promote_member(a->node, id, on_member_changed, c) : -ENOENT;
                if (r >= 0) {
                        c->member = (KvMember) { .id = id, .name = old->name ? strdup(old->name) : NULL,
                                                 .peer_urls = strv_copy(old->peer_urls ?: (char *[]) { NULL }),
                                                 .client_urls = strv_copy(old->client_urls ?: (char *[]) { NULL }) };
                        if (!c->member.peer_urls || !c->member.client_urls)
                                r = -ENOMEM;
                }
                break;
        default:
                r = -EINVAL;
        }
        if (r == -ENOMEM && c->member.id && kind != CHANGE_REMOVE) {
                kv_node_member_change_cancel(a->node);
                member_change_free(c);
                return -ENOMEM;
        }
        if (r >= 0)
                return http_request_suspend(req, on_member_change_close, c);
        member_change_free(c);
        switch (r) {
        case -EBUSY:
                return reply_http_error(req, 409, "membership: another change is in progress, try again");
        case -EEXIST:
                return reply_http_error(req, 409, "membership: peerURL exists");
        case -ENOENT:
                if (asprintf(&msg, "No such member: %" PRIx64, id) < 0)
                        return -ENOMEM;
                return reply_http_error(req, 404, msg);
        case -EDEADLK:
                /* etcd's --strict-reconfig-check (on by default since 3.3). */
                return reply_http_error(req, 412, "etcdserver: re-configuration failed due to not enough started members");
        case -EINVAL:
                return reply_http_error(req, 412, "membership: member is not a learner");
        case -EAGAIN:
                return reply_http_error(req, 412, "etcdserver: can only promote a learner member which is in sync with leader");
        default:
                return reply_http_error(req, 500, "Internal Server Error");
        }
}

/* POST /v2/members/ID/promote: a flotilla-kv extension (etcd has it in v3 only). Learners are
 * promoted automatically once caught up; this asks for it now. */
static int member_promote(KvApi *a, HttpRequest *req, const char *rest) {
        _cleanup_free_ char *hex = strndup(rest, strlen(rest) - strlen("/promote"));
        _cleanup_free_ char *msg = NULL;
        char *end;
        uint64_t id;

        if (!hex)
                return -ENOMEM;
        errno = 0;
        id = strtoull(hex, &end, 16);
        if (isempty(hex) || errno != 0 || *end || strspn(hex, "0123456789abcdefABCDEF") != strlen(hex)) {
                if (asprintf(&msg, "No such member: %s", hex) < 0)
                        return -ENOMEM;
                return reply_http_error(req, 404, msg);
        }
        return member_change(a, req, CHANGE_PROMOTE, id, NULL);
}

static int h_members(HttpRequest *req, void *userdata) {
        static const char *const allowed[] = { "GET", "POST", "DELETE", "PUT", NULL };
        KvApi *a = userdata;
        const KvMembers *ms = kv_node_members(a->node);
        const char *m = http_request_method(req), *rest = members_rest(req);
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        _cleanup_strv_free_ char **urls = NULL;
        _cleanup_free_ char *msg = NULL;
        const KvMember *member;
        uint64_t id = 0;
        int r;

        add_cors(req);
        if (!method_in(req, allowed))
                return method_not_allowed(req, "GET,POST,DELETE,PUT");
        /* hasWriteRootAccess: writes check whether auth is on, a failed get in the store. */
        if (!streq(m, "GET"))
                kv_store_count_auth_check(kv_node_store(a->node));
        (void) http_reply_header(req, "X-Etcd-Cluster-Id", a->cluster_id);

        if (streq(m, "GET")) {
                if (isempty(rest))
                        r = kv_members_render(ms, &b);
                else if (streq(rest, "leader")) {
                        KvNodeStatus st;
                        kv_node_status(a->node, &st);
                        member = st.leader != 0 ? kv_members_find(ms, st.leader) : NULL;
                        if (!member)
                                return reply_http_error(req, 503, "During election");
                        r = render_member(member, &b);
                } else
                        return reply_http_error(req, 404, "Not found");
                if (r < 0)
                        return r;
                return reply_buf(req, 200, "application/json", &b);
        }
        if (streq(m, "POST") && endswith(rest, "/promote"))
                return member_promote(a, req, rest);
        if (!streq(m, "POST")) {
                r = member_id_parse(req, &id);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        if (!streq(m, "DELETE")) {
                r = member_request_parse(req, &urls);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        /* etcd validates a membership change when applying it, reading the members (a get) and
         * the removed members (a failed get) from its store. */
        {
                KvStoreResult res = KV_STORE_RESULT_NULL;
                r = kv_store_get(kv_node_store(a->node), "/", false, false, &res);
                kv_store_result_done(&res);
                if (r < 0)
                        return r;
                kv_store_count_auth_check(kv_node_store(a->node));
        }
        member = streq(m, "POST") ? NULL : kv_members_find(ms, id);
        if (!streq(m, "POST") && !member) {
                if (asprintf(&msg, "No such member: %" PRIx64, id) < 0)
                        return -ENOMEM;
                return reply_http_error(req, 404, msg);
        }
        return member_change(a, req, streq(m, "POST") ? CHANGE_ADD : streq(m, "PUT") ? CHANGE_UPDATE : CHANGE_REMOVE, id,
                             urls);
}

/* ---------------------------------------------------------------- everything else */

static int h_machines(HttpRequest *req, void *userdata) {
        static const char *const allowed[] = { "GET", "HEAD", NULL };
        KvApi *a = userdata;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int r;

        add_cors(req);
        if (!method_in(req, allowed))
                return method_not_allowed(req, "GET,HEAD");
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
        if (!streq(which, "self") && !streq(which, "store") && !streq(which, "leader"))
                return reply_not_found(req);
        if (!streq(http_request_method(req), "GET"))
                return method_not_allowed(req, "GET");
        if (streq(which, "self"))
                r = kv_node_render_self_stats(a->node, &b);
        else if (streq(which, "store"))
                r = kv_store_render_stats(kv_node_store(a->node), &b);
        else {
                r = kv_node_render_leader_stats(a->node, &b);
                if (r == -EPERM)
                        return reply_http_error(req, 403, "not current leader");
        }
        if (r < 0)
                return r;
        return reply_buf(req, 200, "application/json", &b);
}

static int h_version(HttpRequest *req, void *userdata) {
        add_cors(req);
        if (!streq(http_request_method(req), "GET"))
                return method_not_allowed(req, "GET");
        return http_reply(req, 200, "application/json", KV_API_VERSION_BODY, strlen(KV_API_VERSION_BODY));
}

static void health_free(Health *h) {
        kv_proposal_cancel(h->proposal);
        sd_event_source_disable_unref(h->timer);
        free(h);
}

/* etcd's /health: healthy when a leader is known and a quorum read (QGET of the store's root,
 * which its store counts as a get) succeeds within a second. Unhealthy is Go's http.Error. */
static void health_reply(Health *h, bool ok) {
        KvApi *a = h->api;

        if (ok) {
                KvStoreResult res = KV_STORE_RESULT_NULL;
                if (kv_store_get(kv_node_store(a->node), "/", false, false, &res) < 0)
                        ok = false;
                kv_store_result_done(&res);
        }
        if (ok)
                (void) reply_text(h->req, 200, "{\"health\":\"true\"}");
        else
                (void) reply_go_error(h->req, 503, "{\"health\":\"false\"}");
        health_free(h);
}

static void on_health_read(int error, void *userdata) {
        Health *h = userdata;
        h->proposal = NULL;
        health_reply(h, error >= 0);
}

static int on_health_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        health_reply(userdata, false);
        return 0;
}

static void on_health_close(HttpRequest *req, void *userdata) {
        health_free(userdata);
}

static int h_health(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        Health *h;
        int r;

        add_cors(req);
        if (!streq(http_request_method(req), "GET"))
                return method_not_allowed(req, "GET");
        if (!kv_node_has_leader(a->node) || !kv_node_published(a->node))
                return reply_go_error(req, 503, "{\"health\":\"false\"}");
        h = new0(Health, 1);
        if (!h)
                return -ENOMEM;
        *h = (Health) { .api = a, .req = req };
        r = event_reset_time_relative(a->event, &h->timer, KV_API_HEALTH_TIMEOUT_USEC, on_health_timeout, h);
        if (r >= 0)
                r = kv_node_read_index(a->node, on_health_read, h, &h->proposal);
        if (r < 0) {
                health_free(h);
                return reply_go_error(req, 503, "{\"health\":\"false\"}");
        }
        return http_request_suspend(req, on_health_close, h);
}

static int h_metrics(HttpRequest *req, void *userdata) {
        KvApi *a = userdata;
        add_cors(req);
        return http_reply_metrics(req, a->metrics);
}

static int h_not_found(HttpRequest *req, void *userdata) {
        add_cors(req);
        return reply_not_found(req);
}

/* Go's net/http drains at most 256 KiB of a body the handler left unread; with more left it
 * closes the connection and says so. etcd reads a form body of a key request (up to Go's form
 * limit) and the JSON of a membership change, nothing else. */
#define KV_API_GO_MAX_POST_HANDLER_READ (256U << 10)

static void add_connection_close(HttpRequest *req, HttpHandler h) {
        const char *cl = http_request_header(req, "Content-Length"), *m = http_request_method(req);
        const char *ct = http_request_header(req, "Content-Type");
        uint64_t total = cl ? strtoull(cl, NULL, 10) : 0, read = 0;

        if (h == h_keys && has_form_body(req))
                read = MIN(total, (uint64_t) KV_API_MAX_FORM_SIZE + 1);
        else if (h == h_members && (streq(m, "POST") || streq(m, "PUT")) && ct && strncasecmp(ct, "application/json", 16) == 0)
                read = total;
        if (total - read >= KV_API_GO_MAX_POST_HANDLER_READ)
                (void) http_reply_header(req, "Connection", "close");
}

/* etcd's CORS wrapper answers OPTIONS on any path with its headers alone; then Go's ServeMux
 * redirects a path that is not clean, before any handler sees it. */
static int with_options(HttpRequest *req, void *userdata, HttpHandler h) {
        KvRequestInput in = { .method = "GET", .path = http_request_path(req) };
        KvRequest kr = {};
        int r;

        add_connection_close(req, h);
        if (streq(http_request_method(req), "OPTIONS")) {
                add_cors(req);
                return http_reply(req, 200, NULL, "", 0);
        }
        if (h != h_keys) {
                r = kv_request_parse(&in, &kr);
                if (r < 0)
                        return r;
                if (kr.kind == KV_REQUEST_REDIRECT) {
                        add_cors(req);
                        r = reply_redirect(req, kr.location);
                        kv_request_done(&kr);
                        return r;
                }
                kv_request_done(&kr);
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
ROUTE(h_metrics)
ROUTE(h_not_found)

static const HttpRoute routes[] = {
        { NULL, "/v2/keys", h_keys_route, HTTP_ROUTE_PREFIX },
        { NULL, "/v2/members", h_members_route, HTTP_ROUTE_PREFIX },
        { NULL, "/v2/machines", h_machines_route },
        { NULL, "/v2/stats/", h_stats_route, HTTP_ROUTE_PREFIX },
        { NULL, "/version", h_version_route },
        { NULL, "/health", h_health_route },
        { NULL, "/metrics", h_metrics_route },
        { NULL, "/", h_not_found_route, HTTP_ROUTE_PREFIX },
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

static double g_active_peers(void *userdata) {
        return (double) kv_node_active_peers(((KvApi *) userdata)->node);
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
            !metrics_gauge_fn(m, "flotilla_kv_watches", NULL, "Watches being served.", g_watches, a) ||
            !metrics_gauge_fn(m, "flotilla_kv_active_peers", NULL, "Peers connected and answering pings.", g_active_peers, a))
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
                /* Go's form limit and one byte; a longer body is dropped, and a form that long
                 * gets etcd's 210 (any other body is ignored, as etcd ignores it). */
                .max_body_size = MAX(cfg->max_request_bytes, (uint64_t) KV_API_MAX_FORM_SIZE + 1),
                .deliver_oversized = true,
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
