/* SPDX-License-Identifier: MIT */
/* etcd v2 keys API client: requests with endpoint failover, gap-free watches, and elections on
 * TTL keys. Everything runs on the caller's sd-event loop through the shared HTTP client. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/event-util.h"
#include "shared/http-client.h"
#include "shared/kv-client.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/parse-util.h"
#include "shared/random-util.h"

#define KV_MAX_NODE_DEPTH 512U

struct KvClient {
        sd_event *event;
        HttpClient *http;
        char **endpoints;          /* without trailing slash */
        unsigned n_endpoints;
        unsigned current;          /* sticky endpoint index */
        KvClientConfig cfg;
        KvOp *ops;
        KvWatch *watches;
        KvElection *elections;
};

struct KvOp {
        KvClient *client;
        const char *method;        /* static string */
        char *path_query;          /* "/v2/keys/a?recursive=true" */
        char *body;                /* form body for PUT/POST, or NULL */
        bool retry_after_send;     /* reads may be retried after they might have reached a server */
        KvCallback cb;
        void *userdata;
        HttpCall *call;
        sd_event_source *timer;    /* backoff between rounds */
        usec_t deadline;
        unsigned endpoint, tried, round;
        int last_error;
        long last_status;
        char last_message[256];
        bool completing;
        KvOp *prev, *next;
};

/* ---------------------------------------------------------------- parsing */

int kv_errno_from_code(int code) {
        switch (code) {
        case 100:
                return -ENOENT;
        case 101:
                return -ESTALE;
        case 102:
                return -EISDIR;
        case 104:
                return -ENOTDIR;
        case 105:
                return -EEXIST;
        case 107:
                return -EROFS;
        case 108:
                return -ENOTEMPTY;
        case 301:
                return -EAGAIN;
        case 401:
                return -ERANGE;
        default:
                if (code >= 200 && code < 300)
                        return -EINVAL;
                return -EIO;
        }
}

KvNode *kv_node_free(KvNode *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_nodes; i++)
                kv_node_free(n->nodes[i]);
        free(n->nodes);
        free(n->key);
        free(n->value);
        free(n->expiration);
        free(n);
        return NULL;
}

static int json_get_u64(json_t *o, const char *name, uint64_t *ret) {
        json_t *v = json_object_get(o, name);
        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int json_get_str(json_t *o, const char *name, char **ret) {
        json_t *v = json_object_get(o, name);
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return -EBADMSG;
        *ret = strndup(json_string_value(v), json_string_length(v));
        return *ret ? 0 : -ENOMEM;
}

static int parse_node(json_t *j, unsigned depth, KvNode **ret) {
        _cleanup_(kv_node_freep) KvNode *n = NULL;
        json_t *v, *nodes;
        int r;

        if (!json_is_object(j) || depth > KV_MAX_NODE_DEPTH)
                return -EBADMSG;
        n = new0(KvNode, 1);
        if (!n)
                return -ENOMEM;
        if ((r = json_get_str(j, "key", &n->key)) < 0 || (r = json_get_str(j, "value", &n->value)) < 0 ||
            (r = json_get_str(j, "expiration", &n->expiration)) < 0 ||
            (r = json_get_u64(j, "createdIndex", &n->created_index)) < 0 ||
            (r = json_get_u64(j, "modifiedIndex", &n->modified_index)) < 0)
                return r;
        v = json_object_get(j, "ttl");
        if (v) {
                if (!json_is_integer(v))
                        return -EBADMSG;
                n->ttl = json_integer_value(v);
        }
        v = json_object_get(j, "dir");
        if (v) {
                if (!json_is_boolean(v))
                        return -EBADMSG;
                n->dir = json_is_true(v);
        }
        nodes = json_object_get(j, "nodes");
        if (nodes) {
                size_t i;
                json_t *c;

                if (!json_is_array(nodes))
                        return -EBADMSG;
                n->nodes = new0(KvNode *, json_array_size(nodes) + 1);
                if (!n->nodes)
                        return -ENOMEM;
                json_array_foreach(nodes, i, c) {
                        r = parse_node(c, depth + 1, &n->nodes[n->n_nodes]);
                        if (r < 0)
                                return r;
                        n->n_nodes++;
                }
        }
        *ret = TAKE_PTR(n);
        return 0;
}

int kv_parse_response(const char *body, size_t len, char **ret_action, KvNode **ret_node, KvNode **ret_prev) {
        _cleanup_(kv_node_freep) KvNode *node = NULL, *prev = NULL;
        _cleanup_free_ char *action = NULL;
        json_t *j, *v;
        int r = 0;

        j = json_loadb(body, len, 0, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        if ((r = json_get_str(j, "action", &action)) < 0 || !action)
                r = r < 0 ? r : -EBADMSG;
        if (r >= 0 && (v = json_object_get(j, "node")))
                r = parse_node(v, 0, &node);
        if (r >= 0 && (v = json_object_get(j, "prevNode")))
                r = parse_node(v, 0, &prev);
        json_decref(j);
        if (r < 0)
                return r == -ENOMEM ? r : -EBADMSG;
        if (ret_action)
                *ret_action = TAKE_PTR(action);
        if (ret_node)
                *ret_node = TAKE_PTR(node);
        if (ret_prev)
                *ret_prev = TAKE_PTR(prev);
        return 0;
}

/* Everything a response turned into; owns what KvResult points to. */
typedef struct Parsed {
        KvResult res;
        char *action, *message, *cause;
        KvNode *node, *prev;
} Parsed;

static void parsed_done(Parsed *p) {
        free(p->action);
        free(p->message);
        free(p->cause);
        kv_node_free(p->node);
        kv_node_free(p->prev);
}

static uint64_t header_u64(HttpCall *call, const char *name) {
        const char *v = http_call_header(call, name);
        uint64_t u = 0;
        if (v)
                (void) safe_atou64(v, &u);
        return u;
}

/* Interprets one HTTP exchange. Returns true if the body was an etcd answer (success or etcd
 * error), false if the exchange failed below the etcd level. */
static bool parse_exchange(HttpCall *call, int error, long status, const char *body, size_t len, Parsed *p) {
        json_t *j;

        *p = (Parsed) { .res.http_status = status };
        if (error < 0) {
                p->res.error = error;
                (void) asprintf(&p->message, "%s", strerror(ERRNO_VALUE(error)));
                p->res.message = p->message;
                return false;
        }
        p->res.etcd_index = header_u64(call, "X-Etcd-Index");
        p->res.raft_index = header_u64(call, "X-Raft-Index");
        p->res.raft_term = header_u64(call, "X-Raft-Term");
        if (status >= 200 && status < 300) {
                if (kv_parse_response(body, len, &p->action, &p->node, &p->prev) < 0) {
                        p->res.error = -EBADMSG;
                        (void) asprintf(&p->message, "malformed response body (HTTP %ld)", status);
                        p->res.message = p->message;
                        return false;
                }
                p->res.action = p->action;
                p->res.node = p->node;
                p->res.prev_node = p->prev;
                return true;
        }
        j = json_loadb(body, len, 0, NULL);
        if (json_is_object(j) && json_is_integer(json_object_get(j, "errorCode"))) {
                uint64_t idx = 0;
                p->res.error_code = (int) json_integer_value(json_object_get(j, "errorCode"));
                p->res.error = kv_errno_from_code(p->res.error_code);
                (void) json_get_str(j, "message", &p->message);
                (void) json_get_str(j, "cause", &p->cause);
                if (json_get_u64(j, "index", &idx) >= 0 && idx > 0)
                        p->res.etcd_index = idx;
                json_decref(j);
                p->res.message = p->message;
                p->res.cause = p->cause;
                return true;
        }
        json_decref(j);
        p->res.error = status == 503 ? -EAGAIN : status >= 500 ? -EIO : status == 404 ? -ENOENT : -EPROTO;
        (void) asprintf(&p->message, "unexpected HTTP status %ld", status);
        p->res.message = p->message;
        return false;
}

/* ---------------------------------------------------------------- requests */

static int add_param(Buf *b, const char *name, const char *value) {
        _cleanup_free_ char *v = url_escape(value, false);
        if (!v)
                return -ENOMEM;
        return buf_printf(b, "%s%s=%s", b->len ? "&" : "", name, v);
}

static int key_path(const char *key, Buf *out) {
        _cleanup_free_ char *k = NULL;

        if (!key || strlen(key) > KV_MAX_KEY_LENGTH)
                return -EINVAL;
        k = url_escape(key, true);
        if (!k)
                return -ENOMEM;
        return buf_printf(out, "/v2/keys%s%s", key[0] == '/' ? "" : "/", k);
}

static int build_request(const KvRequest *q, char **ret_path_query, char **ret_body) {
        _cleanup_(buf_done) Buf path = BUF_INIT(0), params = BUF_INIT(0);
        char num[32];
        int r = 0;

        r = key_path(q->key, &path);
        if (r < 0)
                return r;
        if (q->value)
                r = add_param(&params, "value", q->value);
        if (r >= 0 && q->dir)
                r = add_param(&params, "dir", "true");
        if (r >= 0 && q->recursive)
                r = add_param(&params, "recursive", "true");
        if (r >= 0 && q->sorted)
                r = add_param(&params, "sorted", "true");
        if (r >= 0 && q->quorum)
                r = add_param(&params, "quorum", "true");
        if (r >= 0 && q->refresh)
                r = add_param(&params, "refresh", "true");
        if (r >= 0 && q->ttl_clear)
                r = add_param(&params, "ttl", "");
        else if (r >= 0 && q->ttl >= 0) {
                (void) snprintf(num, sizeof(num), "%lld", (long long) q->ttl);
                r = add_param(&params, "ttl", num);
        }
        if (r >= 0 && q->prev_exist >= 0)
                r = add_param(&params, "prevExist", q->prev_exist ? "true" : "false");
        if (r >= 0 && q->prev_index > 0) {
                (void) snprintf(num, sizeof(num), "%llu", (unsigned long long) q->prev_index);
                r = add_param(&params, "prevIndex", num);
        }
        if (r >= 0 && q->prev_value)
                r = add_param(&params, "prevValue", q->prev_value);
        if (r < 0)
                return r;

        /* As etcd's own client: GET and DELETE carry parameters in the query, PUT and POST in a
         * form body. */
        if (q->method == KV_PUT || q->method == KV_POST) {
                *ret_body = buf_steal(&params);
                if (!*ret_body)
                        return -ENOMEM;
        } else {
                if (params.len > 0 && buf_printf(&path, "?%s", params.data) < 0)
                        return -ENOMEM;
                *ret_body = NULL;
        }
        *ret_path_query = buf_steal(&path);
        if (!*ret_path_query) {
                free(*ret_body);
                return -ENOMEM;
        }
        return 0;
}

static void op_free(KvOp *op) {
        if (!op)
                return;
        LIST_REMOVE(op->client->ops, op);
        http_call_cancel(op->call);
        sd_event_source_disable_unref(op->timer);
        free(op->path_query);
        free(op->body);
        free(op);
}

void kv_op_cancel(KvOp *op) {
        if (!op || op->completing)
                return;
        op_free(op);
}

static void op_complete(KvOp *op, const KvResult *res) {
        op->completing = true;
        op->call = NULL;
        if (op->cb)
                op->cb(res, op->userdata);
        op_free(op);
}

static void op_attempt(KvOp *op);

static int on_op_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        op_attempt(userdata);
        return 0;
}

/* Moves on to the next endpoint, or to the next round after a backoff. Returns false when the
 * deadline has passed. */
static bool op_retry(KvOp *op) {
        KvClient *c = op->client;
        usec_t now = now_usec(CLOCK_MONOTONIC), delay;

        if (c->current == op->endpoint)
                c->current = (c->current + 1) % c->n_endpoints;
        if (now >= op->deadline)
                return false;
        if (++op->tried < c->n_endpoints) {
                op_attempt(op);
                return true;
        }
        op->tried = 0;
        delay = MIN(backoff_usec(c->cfg.backoff_min_usec, c->cfg.backoff_max_usec, op->round++), op->deadline - now);
        if (event_reset_time_relative(c->event, &op->timer, delay, on_op_timer, op) < 0)
                return false;
        log_debug("kv: all %u endpoints failed (%s); retrying in %llu ms.", c->n_endpoints, op->last_message,
                  (unsigned long long) (delay / USEC_PER_MSEC));
        return true;
}

static void op_fail(KvOp *op) {
        KvResult res = {
                .error = op->last_error ?: -ETIMEDOUT,
                .message = op->last_message[0] ? op->last_message : "request timed out",
                .http_status = op->last_status,
        };
        op_complete(op, &res);
}

static void on_op_http_done(HttpCall *call, int error, long status, const char *body, size_t len, void *userdata) {
        KvOp *op = userdata;
        bool sent = error < 0 ? http_call_request_sent(call) : true, etcd_answer, retry;
        Parsed p;

        op->call = NULL;
        etcd_answer = parse_exchange(call, error, status, body, len, &p);
        /* A failure that certainly never reached a server is retried for every request; one that
         * may have (timeouts, resets, 5xx) only for reads, where repeating is harmless. 503 without
         * an etcd body is an overloaded or stopping server that did not process the request. */
        if (error < 0)
                retry = !sent || op->retry_after_send;
        else if (status >= 500)
                retry = op->retry_after_send || (status == 503 && !etcd_answer) ||
                        (etcd_answer && p.res.error_code == 301);
        else
                retry = false;

        if (retry) {
                op->last_error = p.res.error;
                op->last_status = status;
                (void) snprintf(op->last_message, sizeof(op->last_message), "%s: %s",
                                op->client->endpoints[op->endpoint], strna(p.res.message));
                parsed_done(&p);
                if (!op_retry(op))
                        op_fail(op);
                return;
        }
        op_complete(op, &p.res);
        parsed_done(&p);
}

static void op_attempt(KvOp *op) {
        KvClient *c = op->client;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        _cleanup_free_ char *url = NULL;
        HttpCallSpec spec;
        int r;

        if (now >= op->deadline) {
                op_fail(op);
                return;
        }
        op->endpoint = c->current;
        if (asprintf(&url, "%s%s", c->endpoints[op->endpoint], op->path_query) < 0) {
                op->last_error = -ENOMEM;
                op_fail(op);
                return;
        }
        spec = (HttpCallSpec) {
                .method = op->method,
                .url = url,
                .body = op->body,
                .body_len = op->body ? strlen(op->body) : 0,
                .content_type = op->body ? "application/x-www-form-urlencoded" : NULL,
                .timeout_usec = MAX(MIN(c->cfg.request_timeout_usec, op->deadline - now), USEC_PER_MSEC),
                .max_response_size = c->cfg.max_response_size,
                .on_done = on_op_http_done,
                .userdata = op,
        };
        r = http_call_start(c->http, &spec, &op->call);
        if (r < 0) {
                op->last_error = r;
                op_fail(op);
        }
}

int kv_request(KvClient *c, const KvRequest *req, KvCallback cb, void *userdata, KvOp **ret_op) {
        static const char *const methods[] = { [KV_GET] = "GET", [KV_PUT] = "PUT", [KV_POST] = "POST", [KV_DELETE] = "DELETE" };
        KvOp *op;
        int r;

        if ((unsigned) req->method >= ELEMENTSOF(methods))
                return -EINVAL;
        op = new0(KvOp, 1);
        if (!op)
                return -ENOMEM;
        op->client = c;
        op->method = methods[req->method];
        op->retry_after_send = req->method == KV_GET;
        op->cb = cb;
        op->userdata = userdata;
        op->deadline = now_usec(CLOCK_MONOTONIC) + c->cfg.total_timeout_usec;
        r = build_request(req, &op->path_query, &op->body);
        if (r < 0) {
                free(op);
                return r;
        }
        LIST_PREPEND(c->ops, op);
        op_attempt(op); /* failures here are reported through the callback */
        if (ret_op)
                *ret_op = op;
        return 0;
}

int kv_get(KvClient *c, const char *key, unsigned flags, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_GET, key);
        q.recursive = flags & KV_RECURSIVE;
        q.sorted = flags & KV_SORTED;
        q.quorum = flags & KV_QUORUM;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_set(KvClient *c, const char *key, const char *value, int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, key);
        q.value = value;
        q.ttl = ttl;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_create(KvClient *c, const char *key, const char *value, int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, key);
        q.value = value;
        q.ttl = ttl;
        q.prev_exist = 0;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_update(KvClient *c, const char *key, const char *value, int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, key);
        q.value = value;
        q.ttl = ttl;
        q.prev_exist = 1;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_cas(KvClient *c, const char *key, const char *value, uint64_t prev_index, const char *prev_value,
           int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, key);
        if (prev_index == 0 && !prev_value)
                return -EINVAL;
        q.value = value;
        q.ttl = ttl;
        q.prev_index = prev_index;
        q.prev_value = prev_value;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_delete(KvClient *c, const char *key, unsigned flags, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_DELETE, key);
        q.recursive = flags & KV_RECURSIVE;
        q.dir = flags & KV_DIR;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_cad(KvClient *c, const char *key, uint64_t prev_index, const char *prev_value, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_DELETE, key);
        if (prev_index == 0 && !prev_value)
                return -EINVAL;
        q.prev_index = prev_index;
        q.prev_value = prev_value;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_refresh(KvClient *c, const char *key, int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, key);
        if (ttl < 0)
                return -EINVAL;
        q.refresh = true;
        q.ttl = ttl;
        q.prev_exist = 1;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_mkdir(KvClient *c, const char *key, int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, key);
        q.dir = true;
        q.ttl = ttl;
        q.prev_exist = 0;
        return kv_request(c, &q, cb, userdata, NULL);
}

int kv_post(KvClient *c, const char *dir, const char *value, int64_t ttl, KvCallback cb, void *userdata) {
        KvRequest q = KV_REQUEST_INIT(KV_POST, dir);
        q.value = value;
        q.ttl = ttl;
        return kv_request(c, &q, cb, userdata, NULL);
}

/* ---------------------------------------------------------------- watches */

struct KvWatch {
        KvClient *client;
        char *key;
        bool recursive;
        uint64_t next_index;       /* waitIndex of the next poll; 0 = a snapshot is needed */
        uint64_t delivered;        /* last index delivered */
        uint64_t poll_start;       /* X-Etcd-Index when the current poll started */
        unsigned snapshots;
        unsigned failures;         /* consecutive; drives failover and backoff */
        unsigned endpoint;
        KvWatchCallback cb;
        void *userdata;
        HttpCall *call;
        sd_event_source *timer;
        bool in_callback, dead;
        KvWatch *prev, *next;
};

static void watch_step(KvWatch *w);

static void watch_destroy(KvWatch *w) {
        LIST_REMOVE(w->client->watches, w);
        http_call_cancel(w->call);
        sd_event_source_disable_unref(w->timer);
        free(w->key);
        free(w);
}

KvWatch *kv_watch_free(KvWatch *w) {
        if (!w)
                return NULL;
        if (w->in_callback) {
                w->dead = true; /* freed when the callback returns */
                http_call_cancel(TAKE_PTR(w->call));
                return NULL;
        }
        watch_destroy(w);
        return NULL;
}

uint64_t kv_watch_index(KvWatch *w) {
        return w->delivered;
}

unsigned kv_watch_snapshots(KvWatch *w) {
        return w->snapshots;
}

/* Delivers one update. Returns false if the callback freed the watch. */
static bool watch_deliver(KvWatch *w, const KvWatchUpdate *u) {
        w->in_callback = true;
        w->cb(w, u, w->userdata);
        w->in_callback = false;
        if (w->dead) {
                watch_destroy(w);
                return false;
        }
        return true;
}

static int on_watch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        watch_step(userdata);
        return 0;
}

static void watch_schedule(KvWatch *w, usec_t delay) {
        int r = event_reset_time_relative(w->client->event, &w->timer, delay, on_watch_timer, w);
        if (r < 0)
                log_warning_errno(r, "kv: failed to schedule watch on %s: %m", w->key);
}

/* A failed poll or snapshot: report it, move to the next endpoint, back off once every endpoint
 * failed in a row. */
static void watch_failed(KvWatch *w, int error, const char *message) {
        KvClient *c = w->client;
        KvWatchUpdate u = { .type = KV_WATCH_ERROR, .error = error, .message = message, .index = w->delivered };

        if (c->current == w->endpoint)
                c->current = (c->current + 1) % c->n_endpoints;
        w->failures++;
        if (!watch_deliver(w, &u))
                return;
        if (w->failures % c->n_endpoints != 0)
                watch_schedule(w, 0);
        else
                watch_schedule(w, backoff_usec(c->cfg.backoff_min_usec, c->cfg.backoff_max_usec,
                                               w->failures / c->n_endpoints - 1));
}

static void on_watch_headers(HttpCall *call, long status, void *userdata) {
        KvWatch *w = userdata;
        w->poll_start = status == 200 ? header_u64(call, "X-Etcd-Index") : 0;
}

static void on_watch_done(HttpCall *call, int error, long status, const char *body, size_t len, void *userdata) {
        KvWatch *w = userdata;
        bool snapshot = w->next_index == 0;
        KvWatchUpdate u = {};
        Parsed p;

        w->call = NULL;
        /* A long poll that ended without an event proves nothing matched up to the index at
         * which it started: continue after it instead of re-reading old history (which may be
         * gone by now and would force a needless resync). */
        if (!snapshot && w->poll_start > 0 &&
            ((error == -ETIMEDOUT) || (error == 0 && status == 200 && len == 0))) {
                w->next_index = MAX(w->next_index, w->poll_start + 1);
                w->failures = 0;
                watch_schedule(w, 0);
                return;
        }
        (void) parse_exchange(call, error, status, body, len, &p);
        if (p.res.error == 0) {
                w->failures = 0;
                if (snapshot) {
                        u = (KvWatchUpdate) { .type = KV_WATCH_SNAPSHOT, .node = p.node, .index = p.res.etcd_index };
                        w->snapshots++;
                        w->next_index = p.res.etcd_index + 1;
                } else {
                        uint64_t idx = p.node ? p.node->modified_index : 0;
                        u = (KvWatchUpdate) { .type = KV_WATCH_CHANGE, .action = p.action, .node = p.node,
                                              .prev_node = p.prev, .index = idx };
                        w->next_index = MAX(w->next_index, idx + 1);
                }
                w->delivered = MAX(w->delivered, u.index);
                if (watch_deliver(w, &u))
                        watch_schedule(w, 0);
        } else if (snapshot && p.res.error_code == 100) {
                /* The key does not exist (yet): an empty snapshot, then changes after it. */
                w->failures = 0;
                u = (KvWatchUpdate) { .type = KV_WATCH_SNAPSHOT, .index = p.res.etcd_index };
                w->snapshots++;
                w->next_index = p.res.etcd_index + 1;
                w->delivered = MAX(w->delivered, u.index);
                if (watch_deliver(w, &u))
                        watch_schedule(w, 0);
        } else if (!snapshot && p.res.error_code == 401) {
                /* The history we needed is gone: re-list and start over from what is there. */
                log_debug("kv: watch on %s lost its history (%s); re-listing.", w->key, strna(p.res.cause));
                w->failures = 0;
                w->next_index = 0;
                watch_schedule(w, 0);
        } else
                watch_failed(w, p.res.error, p.res.message);
        parsed_done(&p);
}

static void watch_step(KvWatch *w) {
        KvClient *c = w->client;
        _cleanup_(buf_done) Buf url = BUF_INIT(0);
        HttpCallSpec spec;
        int r;

        w->endpoint = c->current;
        w->poll_start = 0;
        r = buf_append_str(&url, c->endpoints[w->endpoint]);
        if (r >= 0)
                r = key_path(w->key, &url);
        if (r >= 0 && w->next_index == 0)
                r = buf_printf(&url, "?quorum=true%s", w->recursive ? "&recursive=true" : "");
        else if (r >= 0)
                r = buf_printf(&url, "?wait=true&waitIndex=%llu%s", (unsigned long long) w->next_index,
                               w->recursive ? "&recursive=true" : "");
        if (r < 0) {
                watch_failed(w, r, "cannot build URL");
                return;
        }
        spec = (HttpCallSpec) {
                .url = url.data,
                .timeout_usec = w->next_index == 0 ? c->cfg.request_timeout_usec : c->cfg.watch_poll_usec,
                .max_response_size = c->cfg.max_response_size,
                .on_headers = on_watch_headers,
                .on_done = on_watch_done,
                .userdata = w,
        };
        r = http_call_start(c->http, &spec, &w->call);
        if (r < 0)
                watch_failed(w, r, "cannot start request");
}

int kv_watch_new(KvClient *c, const char *key, bool recursive, uint64_t after_index, KvWatchCallback cb,
                 void *userdata, KvWatch **ret) {
        KvWatch *w;

        if (!key || strlen(key) > KV_MAX_KEY_LENGTH || !cb)
                return -EINVAL;
        w = new0(KvWatch, 1);
        if (!w)
                return -ENOMEM;
        *w = (KvWatch) { .client = c, .key = strdup(key), .recursive = recursive,
                         .next_index = after_index > 0 ? after_index + 1 : 0, .delivered = after_index,
                         .cb = cb, .userdata = userdata };
        if (!w->key) {
                free(w);
                return -ENOMEM;
        }
        LIST_PREPEND(c->watches, w);
        watch_schedule(w, 0);
        if (ret)
                *ret = w;
        return 0;
}

/* ---------------------------------------------------------------- elections */

struct KvElection {
        KvClient *client;
        char *key, *value, *holder;
        int64_t ttl;
        bool leader;
        usec_t lease_until;        /* CLOCK_MONOTONIC: our own conservative view of the TTL */
        usec_t sent_at;            /* when the in-flight create/refresh was sent */
        unsigned failures;
        KvWatch *watch;            /* while following */
        KvOp *op;                  /* the in-flight create/refresh/delete */
        sd_event_source *timer;    /* next refresh or retry */
        sd_event_source *lease_timer; /* steps down when lease_until passes */
        KvElectionCallback cb;
        void *userdata;
        bool in_callback, dead, resigned;
        KvElection *prev, *next;
};

static void election_campaign(KvElection *e);
static void election_follow(KvElection *e);

static void election_destroy(KvElection *e) {
        LIST_REMOVE(e->client->elections, e);
        kv_op_cancel(e->op);
        kv_watch_free(e->watch);
        sd_event_source_disable_unref(e->timer);
        sd_event_source_disable_unref(e->lease_timer);
        free(e->key);
        free(e->value);
        free(e->holder);
        free(e);
}

KvElection *kv_election_free(KvElection *e) {
        if (!e)
                return NULL;
        if (e->in_callback) {
                e->dead = true;
                return NULL;
        }
        election_destroy(e);
        return NULL;
}

bool kv_election_is_leader(KvElection *e) {
        return e->leader;
}

/* Tells the owner about leadership or holder changes. Returns false if the owner freed us. */
static bool election_notify(KvElection *e, bool leader, const char *holder) {
        if (e->leader == leader && streq_ptr(e->holder, holder))
                return true;
        e->leader = leader;
        if (free_and_strdup(&e->holder, holder) < 0)
                log_oom();
        if (!e->leader)
                (void) sd_event_source_set_enabled(e->lease_timer, SD_EVENT_OFF);
        e->in_callback = true;
        e->cb(e, e->leader, e->holder, e->userdata);
        e->in_callback = false;
        if (e->dead) {
                election_destroy(e);
                return false;
        }
        return true;
}

static int on_election_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void election_schedule(KvElection *e, usec_t delay) {
        int r = event_reset_time_relative(e->client->event, &e->timer, delay, on_election_timer, e);
        if (r < 0)
                log_warning_errno(r, "kv: failed to schedule election on %s: %m", e->key);
}

static int on_lease_expired(sd_event_source *s, uint64_t usec, void *userdata) {
        KvElection *e = userdata;

        /* We could not refresh in time: the key may already have expired on the server and
         * someone else may hold it. Stop acting as leader before that can overlap. */
        log_warning("kv: could not refresh %s within its TTL; stepping down.", e->key);
        kv_op_cancel(TAKE_PTR(e->op));
        if (election_notify(e, false, NULL))
                election_campaign(e);
        return 0;
}

static void election_hold(KvElection *e) {
        int r;

        /* Our TTL started no earlier than when we sent the request; the server's no later. */
        e->lease_until = e->sent_at + (usec_t) e->ttl * USEC_PER_SEC;
        if (!e->lease_timer)
                r = sd_event_add_time(e->client->event, &e->lease_timer, CLOCK_MONOTONIC, e->lease_until, EVENT_ACCURACY_EXACT_USEC,
                                      on_lease_expired, e);
        else {
                r = sd_event_source_set_time(e->lease_timer, e->lease_until);
                if (r >= 0)
                        r = sd_event_source_set_enabled(e->lease_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_warning_errno(r, "kv: failed to arm the lease timer for %s: %m", e->key);
        e->failures = 0;
        e->watch = kv_watch_free(e->watch);
        if (election_notify(e, true, e->value))
                election_schedule(e, (usec_t) e->ttl * USEC_PER_SEC / 3);
}

static void on_refresh_done(const KvResult *res, void *userdata) {
        KvElection *e = userdata;

        e->op = NULL;
        if (res->error == 0) {
                election_hold(e);
                return;
        }
        if (res->error == -ESTALE || res->error == -ENOENT) {
                /* The key expired or somebody else holds it now. */
                log_info("kv: lost %s (%s).", e->key, strna(res->message));
                if (election_notify(e, false, NULL))
                        election_follow(e);
                return;
        }
        /* Transient: try again soon, the lease timer decides when it is too late. */
        e->failures++;
        election_schedule(e, MIN(backoff_usec(e->client->cfg.backoff_min_usec, e->client->cfg.backoff_max_usec, e->failures),
                                 (usec_t) e->ttl * USEC_PER_SEC / 6));
}

static void election_refresh(KvElection *e) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, e->key);
        int r;

        q.refresh = true;
        q.ttl = e->ttl;
        q.prev_exist = 1;
        q.prev_value = e->value; /* never extend someone else's key */
        e->sent_at = now_usec(CLOCK_MONOTONIC);
        r = kv_request(e->client, &q, on_refresh_done, e, &e->op);
        if (r < 0)
                election_schedule(e, e->client->cfg.backoff_max_usec);
}

static void on_create_done(const KvResult *res, void *userdata) {
        KvElection *e = userdata;

        e->op = NULL;
        if (res->error == 0) {
                election_hold(e);
                return;
        }
        if (res->error == -EEXIST) {
                e->failures = 0;
                election_follow(e);
                return;
        }
        e->failures++;
        election_schedule(e, backoff_usec(e->client->cfg.backoff_min_usec, e->client->cfg.backoff_max_usec, e->failures));
}

static void election_campaign(KvElection *e) {
        KvRequest q = KV_REQUEST_INIT(KV_PUT, e->key);
        int r;

        if (e->resigned)
                return;
        e->watch = kv_watch_free(e->watch);
        q.value = e->value;
        q.ttl = e->ttl;
        q.prev_exist = 0;
        e->sent_at = now_usec(CLOCK_MONOTONIC);
        r = kv_request(e->client, &q, on_create_done, e, &e->op);
        if (r < 0)
                election_schedule(e, e->client->cfg.backoff_max_usec);
}

static void on_election_watch(KvWatch *w, const KvWatchUpdate *u, void *userdata) {
        KvElection *e = userdata;
        const char *v = u->node ? u->node->value : NULL;

        if (u->type == KV_WATCH_ERROR)
                return;
        if (u->type == KV_WATCH_SNAPSHOT || streq(u->action, "set") || streq(u->action, "update") ||
            streq(u->action, "create") || streq(u->action, "compareAndSwap")) {
                if (!v) {
                        if (election_notify(e, false, NULL))
                                election_campaign(e);
                } else if (streq(v, e->value)) {
                        /* Our own key from before a restart: take it back if it is still ours. */
                        if (!e->op) {
                                e->watch = kv_watch_free(e->watch);
                                election_refresh(e);
                        }
                } else
                        (void) election_notify(e, false, v);
                return;
        }
        /* delete, expire, compareAndDelete: the seat is free. */
        if (election_notify(e, false, NULL))
                election_campaign(e);
}

static void election_follow(KvElection *e) {
        int r;

        if (e->resigned)
                return;
        e->watch = kv_watch_free(e->watch);
        r = kv_watch_new(e->client, e->key, false, 0, on_election_watch, e, &e->watch);
        if (r < 0)
                election_schedule(e, e->client->cfg.backoff_max_usec);
}

static int on_election_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        KvElection *e = userdata;

        if (e->op)
                return 0;
        if (e->leader)
                election_refresh(e);
        else if (!e->watch)
                election_campaign(e);
        return 0;
}

int kv_election_new(KvClient *c, const char *key, const char *value, int64_t ttl, KvElectionCallback cb,
                    void *userdata, KvElection **ret) {
        KvElection *e;

        if (!key || !value || ttl < 1 || !cb)
                return -EINVAL;
        e = new0(KvElection, 1);
        if (!e)
                return -ENOMEM;
        *e = (KvElection) { .client = c, .key = strdup(key), .value = strdup(value), .ttl = ttl, .cb = cb,
                            .userdata = userdata };
        if (!e->key || !e->value) {
                free(e->key);
                free(e->value);
                free(e);
                return -ENOMEM;
        }
        LIST_PREPEND(c->elections, e);
        election_campaign(e);
        *ret = e;
        return 0;
}

static void on_resign_done(const KvResult *res, void *userdata) {
        KvElection *e = userdata;
        e->op = NULL;
        if (res->error < 0)
                log_debug("kv: resigning %s: %s", e->key, strna(res->message));
}

int kv_election_resign(KvElection *e) {
        bool was_leader = e->leader;
        int r;

        e->resigned = true;
        kv_op_cancel(TAKE_PTR(e->op));
        e->watch = kv_watch_free(e->watch);
        (void) sd_event_source_set_enabled(e->timer, SD_EVENT_OFF);
        if (!was_leader)
                return 0;
        {
                KvRequest q = KV_REQUEST_INIT(KV_DELETE, e->key);
                q.prev_value = e->value;
                r = kv_request(e->client, &q, on_resign_done, e, &e->op);
        }
        (void) election_notify(e, false, NULL);
        return r;
}

/* ---------------------------------------------------------------- client */

const char *kv_client_endpoint(KvClient *c) {
        return c->endpoints[c->current];
}

int kv_client_new(KvClient **ret, sd_event *e, const KvClientConfig *cfg) {
        _cleanup_(kv_client_freep) KvClient *c = NULL;
        int r;

        if (!cfg || strv_length(cfg->endpoints) == 0)
                return -EINVAL;
        STRV_FOREACH(ep, cfg->endpoints)
                if (!startswith(*ep, "http://") && !startswith(*ep, "https://"))
                        return -EINVAL;
        c = new0(KvClient, 1);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->cfg = *cfg;
        c->cfg.endpoints = NULL;
#define DEFAULT(f, v) if (c->cfg.f == 0) c->cfg.f = (v)
        DEFAULT(request_timeout_usec, KV_REQUEST_TIMEOUT_DEFAULT);
        DEFAULT(total_timeout_usec, KV_TOTAL_TIMEOUT_DEFAULT);
        DEFAULT(watch_poll_usec, KV_WATCH_POLL_DEFAULT);
        DEFAULT(backoff_min_usec, KV_BACKOFF_MIN_DEFAULT);
        DEFAULT(backoff_max_usec, KV_BACKOFF_MAX_DEFAULT);
        DEFAULT(max_response_size, HTTP_MAX_RESPONSE_DEFAULT);
#undef DEFAULT
        c->endpoints = strv_copy(cfg->endpoints);
        if (!c->endpoints)
                return -ENOMEM;
        STRV_FOREACH(ep, c->endpoints) {
                size_t l = strlen(*ep);
                while (l > 0 && (*ep)[l - 1] == '/')
                        (*ep)[--l] = 0;
        }
        c->n_endpoints = (unsigned) strv_length(c->endpoints);
        r = http_client_new(&c->http, e);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

KvClient *kv_client_free(KvClient *c) {
        if (!c)
                return NULL;
        while (c->elections)
                election_destroy(c->elections);
        while (c->watches)
                watch_destroy(c->watches);
        while (c->ops)
                op_free(c->ops);
        http_client_free(c->http);
        strv_free(c->endpoints);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}
