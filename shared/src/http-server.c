/* SPDX-License-Identifier: MIT */
/* HTTP server glue: libmicrohttpd driven by sd-event in external-epoll mode, with a route table,
 * request deadlines enforced per phase (headers, body, idle), and suspend/resume for requests
 * that wait. One MHD daemon per listening socket; all share the server's routes and limits. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "shared/http-server.h"
#include "shared/list.h"
#include "shared/event-util.h"
#include "shared/log.h"
#include "shared/net-util.h"
#include "shared/parse-util.h"

#define HTTP_MAX_LISTENERS   8
#define HTTP_SWEEP_USEC      (250 * USEC_PER_MSEC)
/* MHD allocates a block this size for every streamed response; watch events are small, and a
 * large one just takes more reader calls. */
#define HTTP_STREAM_BLOCK    (4U << 10)
#define HTTP_CONNECTION_SLACK 64U

typedef enum ConnPhase {
        CONN_HEADERS, /* waiting for the request line and headers */
        CONN_BODY,    /* headers done, body arriving */
        CONN_BUSY,    /* request complete; handler, suspension or response in progress */
        CONN_IDLE,    /* keep-alive between requests */
} ConnPhase;

typedef struct Listener {
        HttpServer *server;
        struct MHD_Daemon *mhd;
        sd_event_source *io, *timer;
        int port;
        bool kicked;   /* a connection was resumed: MHD_run() must happen soon */
} Listener;

/* Per TCP connection state (MHD's socket context). */
typedef struct HttpConn {
        HttpServer *server;
        int fd;
        ConnPhase phase;
        bool corked;              /* TCP_CORK set until the current response is complete */
        usec_t deadline;          /* CLOCK_MONOTONIC; USEC_INFINITY while busy */
        char bad_escape[4];       /* first invalid %-escape seen in the current request line */
        char *raw_uri;            /* the current request's target as received */
        struct HttpConn *prev, *next;
} HttpConn;

struct HttpRequest {
        HttpServer *server;
        Listener *listener;
        HttpConn *conn;
        struct MHD_Connection *connection;
        const HttpRoute *route;
        const char *method;       /* owned by MHD, valid for the request's lifetime */
        char *path;
        char *raw_uri;            /* taken from the connection */
        Buf body;
        char bad_escape[4];       /* first invalid escape of the path or query */
        char body_bad_escape[4];  /* first invalid escape of a form body */
        char **form;              /* name, value, name, value ... from a form body */
        bool form_parsed;
        Buf reply_headers;        /* "name\0value\0" pairs added to the response (one allocation) */
        char peer[INET6_ADDRSTRLEN + 8];
        usec_t start_usec;
        unsigned status;          /* status of the queued response, for metrics */

        bool body_too_large;
        bool in_handler;          /* inside the route handler: replies are queued directly */
        bool replied;             /* a response is queued or stashed */
        bool suspended;           /* MHD-level suspended */
        bool owned;               /* a suspend/stream owner holds it; on_close still due */
        bool closed;              /* client went away or the server is shutting down */
        bool streaming;
        bool stream_ended;
        struct MHD_Response *stashed; /* reply made while suspended, queued on resume */
        Buf stream;
        HttpCloseFn on_close;
        void *close_userdata;
        sd_event_source *hup;     /* watches for the client hanging up while suspended */
        struct HttpRequest *prev, *next; /* in server->owned while owned */
};

struct HttpServer {
        sd_event *event;
        HttpServerConfig cfg;
        const HttpRoute *routes;
        size_t n_routes;
        void *userdata;
        Listener listeners[HTTP_MAX_LISTENERS];
        unsigned n_listeners;
        HttpConn *conns;
        unsigned n_conns;
        HttpRequest *owned;
        unsigned n_owned;
        sd_event_source *sweep;
        MetricsRegistry *metrics;
        Metric *m_connections, *m_duration;
        /* http_requests_total series already looked up, by status and method: finding one by
         * its label text costs more than the rest of a small request's bookkeeping. */
        struct {
                unsigned status;
                const char *method; /* one of method_label()'s static strings */
                Metric *counter;
        } request_series[16];
        unsigned n_request_series;
        bool freeing;
};

static const struct {
        int error;
        unsigned status;
} errno_status[] = {
        { EINVAL, 400 },  { EBADMSG, 400 }, { EPROTO, 400 },    { ENOENT, 404 }, { EACCES, 403 },
        { EPERM, 403 },   { EEXIST, 409 },  { ESTALE, 412 },    { E2BIG, 413 },  { ENOBUFS, 413 },
        { EMSGSIZE, 413 }, { EOPNOTSUPP, 405 }, { EAGAIN, 503 }, { ENOTCONN, 503 }, { EBUSY, 503 },
        { ETIMEDOUT, 504 }, { ENOSYS, 501 },
};

unsigned http_status_from_errno(int error) {
        int e = ERRNO_VALUE(error);
        for (size_t i = 0; i < ELEMENTSOF(errno_status); i++)
                if (errno_status[i].error == e)
                        return errno_status[i].status;
        return 500;
}

json_t *http_default_error_formatter(unsigned status, const char *message) {
        return json_pack("{s:{s:i,s:s}}", "error", "code", (int) status, "message", message ?: "");
}

unsigned json_text_depth(const char *text, size_t len) {
        unsigned depth = 0, max = 0;
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char c = text[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        depth++;
                        max = MAX(max, depth);
                }
                else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return max;
}

/* ---------------------------------------------------------------- request accessors */

const char *http_request_method(HttpRequest *req) {
        return req->method;
}

const char *http_request_path(HttpRequest *req) {
        return req->path;
}

const char *http_request_header(HttpRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *http_request_query(HttpRequest *req, const char *name) {
        const char *v = NULL;
        size_t vl = 0;

        if (MHD_lookup_connection_value_n(req->connection, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &vl) != MHD_YES)
                return NULL;
        return v ?: "";
}

const char *http_request_raw_uri(HttpRequest *req) {
        return req->raw_uri ?: req->path;
}

static int parse_form(HttpRequest *req);

/* As Go's ParseForm reports it: the body's first invalid escape, else the URL's. */
const char *http_request_bad_escape(HttpRequest *req) {
        (void) parse_form(req);
        if (req->body_bad_escape[0])
                return req->body_bad_escape;
        return req->bad_escape[0] ? req->bad_escape : NULL;
}

const void *http_request_body(HttpRequest *req, size_t *ret_len) {
        if (ret_len)
                *ret_len = req->body.len;
        return req->body.data ?: "";
}

bool http_request_body_too_large(HttpRequest *req) {
        return req->body_too_large;
}

const char *http_request_peer(HttpRequest *req) {
        return req->peer;
}

void *http_request_server_userdata(HttpRequest *req) {
        return req->server->userdata;
}

static bool is_form_body(HttpRequest *req) {
        const char *ct = http_request_header(req, "Content-Type");
        size_t l = strlen("application/x-www-form-urlencoded");

        return ct && strncasecmp(ct, "application/x-www-form-urlencoded", l) == 0 &&
               (ct[l] == 0 || ct[l] == ';' || ct[l] == ' ');
}

/* Parses the form body once. Invalid escapes are recorded like the URL's (Go's ParseForm fails
 * on them); the pair is skipped. */
static int parse_form(HttpRequest *req) {
        const char *p, *end;

        if (req->form_parsed)
                return 0;
        req->form_parsed = true;
        if (!is_form_body(req) || req->body.len == 0)
                return 0;
        req->form = new0(char *, 1);
        if (!req->form)
                return -ENOMEM;
        p = req->body.data;
        end = p + req->body.len;
        while (p < end) {
                const char *amp = memchr(p, '&', (size_t) (end - p)) ?: end;
                const char *eq = memchr(p, '=', (size_t) (amp - p));
                const char *vstart = eq ? eq + 1 : amp;
                char *k = NULL, *v = NULL;
                size_t bad;
                int r;

                if (amp > p) {
                        const char *bad_at = NULL, *nul;

                        r = url_unescape(p, (size_t) ((eq ?: amp) - p), true, &k, &bad);
                        if (r == -EINVAL)
                                bad_at = p + bad;
                        if (r == 0) {
                                r = url_unescape(vstart, (size_t) (amp - vstart), true, &v, &bad);
                                if (r == -EINVAL)
                                        bad_at = vstart + bad;
                        }
                        /* A %00 would truncate the C string: refuse it like an invalid escape. */
                        if (r == 0 && (nul = memmem(p, (size_t) (amp - p), "%00", 3))) {
                                r = -EINVAL;
                                bad_at = nul;
                        }
                        if (r == -EINVAL && bad_at && !req->body_bad_escape[0])
                                (void) snprintf(req->body_bad_escape, sizeof(req->body_bad_escape), "%.*s",
                                                (int) MIN((size_t) 3, (size_t) (end - bad_at)), bad_at);
                        if (r < 0) {
                                free(k);
                                free(v);
                                if (r == -ENOMEM)
                                        return r;
                        } else if (strv_push(&req->form, k) < 0 || strv_push(&req->form, v) < 0)
                                return -ENOMEM;
                }
                p = amp + 1;
        }
        return 0;
}

const char *http_request_param(HttpRequest *req, const char *name) {
        if (parse_form(req) < 0)
                return NULL;
        for (char **f = req->form; f && f[0] && f[1]; f += 2)
                if (streq(f[0], name))
                        return f[1];
        return http_request_query(req, name);
}

int http_request_json(HttpRequest *req, unsigned max_depth, json_t **ret) {
        json_error_t err;
        json_t *j;

        if (req->body.len == 0) {
                (void) http_reply_error(req, 400, "request body is empty; expected JSON");
                return -EBADMSG;
        }
        if (json_text_depth(req->body.data, req->body.len) > (max_depth ?: HTTP_JSON_DEPTH_DEFAULT)) {
                (void) http_reply_error(req, 400, "JSON nested deeper than %u levels", max_depth ?: HTTP_JSON_DEPTH_DEFAULT);
                return -EBADMSG;
        }
        j = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &err);
        if (!j) {
                (void) http_reply_error(req, 400, "invalid JSON at line %d column %d: %s", err.line, err.column, err.text);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

/* ---------------------------------------------------------------- suspension */

static void owned_unlink(HttpRequest *req) {
        HttpServer *s = req->server;

        if (!req->owned)
                return;
        req->owned = false;
        LIST_REMOVE(s->owned, req);
        s->n_owned--;
}

/* Runs the owner's on_close once and forgets the owner. */
static void owner_release(HttpRequest *req) {
        HttpCloseFn cb = req->on_close;
        void *u = req->close_userdata;
        bool was_owned = req->owned;

        owned_unlink(req);
        req->on_close = NULL;
        if (was_owned && cb)
                cb(req, u);
}

/* MHD's documentation: after resuming in external-polling mode, the application must run
 * MHD_run() itself; its internal wakeup alone does not reliably reach our loop. */
static void listener_kick(Listener *l) {
        l->kicked = true;
        (void) sd_event_source_set_time_relative(l->timer, 0);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static void request_resume(HttpRequest *req) {
        req->hup = sd_event_source_disable_unref(req->hup);
        if (!req->suspended)
                return;
        req->suspended = false;
        MHD_resume_connection(req->connection);
        listener_kick(req->listener);
}

static int on_client_hangup(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpRequest *req = userdata;

        log_debug("Client %s hung up on a waiting request to %s.", req->peer, req->path);
        req->closed = true;
        owner_release(req);
        request_resume(req); /* MHD runs the request again, sees it closed, and drops it */
        return 0;
}

static void request_suspend(HttpRequest *req) {
        int r;

        if (req->suspended)
                return;
        MHD_suspend_connection(req->connection);
        req->suspended = true;
        /* MHD does not notice disconnects of suspended connections; we do. */
        r = sd_event_add_io(req->server->event, &req->hup, req->conn->fd, EPOLLRDHUP, on_client_hangup, req);
        if (r < 0)
                log_debug_errno(r, "Failed to watch %s for hangup, ignoring: %m", req->peer);
}

static void owned_link(HttpRequest *req, HttpCloseFn on_close, void *userdata) {
        HttpServer *s = req->server;

        req->on_close = on_close;
        req->close_userdata = userdata;
        if (req->owned)
                return;
        req->owned = true;
        LIST_PREPEND(s->owned, req);
        s->n_owned++;
}

int http_request_suspend(HttpRequest *req, HttpCloseFn on_close, void *userdata) {
        if (req->replied || req->closed)
                return -EALREADY;
        owned_link(req, on_close, userdata);
        /* The actual MHD suspension happens when the handler returns (see on_access). */
        return 0;
}

unsigned http_server_suspended(HttpServer *s) {
        return s->n_owned;
}

/* ---------------------------------------------------------------- replies */

int http_reply_header(HttpRequest *req, const char *name, const char *value) {
        /* One allocation for a typical reply's headers (an etcd reply has seven), not three. */
        if (req->reply_headers.alloc == 0)
                (void) buf_reserve(&req->reply_headers, 480);
        if (buf_append(&req->reply_headers, name, strlen(name) + 1) < 0 ||
            buf_append(&req->reply_headers, value, strlen(value) + 1) < 0)
                return -ENOMEM;
        return 0;
}

static int add_headers(HttpRequest *req, struct MHD_Response *resp, const char *content_type) {
        if (content_type && MHD_add_response_header(resp, "Content-Type", content_type) != MHD_YES)
                return -ENOMEM;
        if (req->server->cfg.server_header &&
            MHD_add_response_header(resp, "Server", req->server->cfg.server_header) != MHD_YES)
                return -ENOMEM;
        for (const char *h = req->reply_headers.data, *end = h + req->reply_headers.len; h && h < end;) {
                const char *v = h + strlen(h) + 1;
                if (MHD_add_response_header(resp, h, v) != MHD_YES)
                        return -EINVAL;
                h = v + strlen(v) + 1;
        }
        return 0;
}

/* Queues resp now (inside MHD's callback) or stashes it and resumes the connection. Consumes
 * resp in every case. */
static int respond(HttpRequest *req, unsigned status, struct MHD_Response *resp) {
        enum MHD_Result ok;

        if (req->replied || req->closed) {
                MHD_destroy_response(resp);
                return -EALREADY;
        }
        req->replied = true;
        req->status = status;
        owned_unlink(req); /* the owner is done with it; no on_close */
        req->on_close = NULL;
        if (req->in_handler || !req->suspended) {
                ok = MHD_queue_response(req->connection, status, resp);
                MHD_destroy_response(resp);
                return ok == MHD_YES ? 0 : -EIO;
        }
        req->stashed = resp;
        req->status = status;
        request_resume(req);
        return 0;
}

/* add_headers() and respond(); consumes resp in every case. */
static int respond_with_headers(HttpRequest *req, unsigned status, struct MHD_Response *resp, const char *content_type) {
        int r = add_headers(req, resp, content_type);

        if (r < 0) {
                MHD_destroy_response(resp);
                return r;
        }
        return respond(req, status, resp);
}

int http_reply_take(HttpRequest *req, unsigned status, const char *content_type, void *body, size_t len) {
        struct MHD_Response *resp;

        resp = MHD_create_response_from_buffer(len, body ?: (void *) "", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(body);
                return -ENOMEM;
        }
        return respond_with_headers(req, status, resp, content_type);
}

typedef struct ChunkedBody {
        char *data;
        size_t len;
} ChunkedBody;

static ssize_t chunked_body_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        ChunkedBody *c = cls;
        size_t n;

        if (pos >= c->len)
                return MHD_CONTENT_READER_END_OF_STREAM;
        n = MIN(max, c->len - (size_t) pos);
        memcpy(buf, c->data + pos, n);
        return (ssize_t) n;
}

static void chunked_body_free(void *cls) {
        ChunkedBody *c = cls;
        free(c->data);
        free(c);
}

int http_reply_take_chunked(HttpRequest *req, unsigned status, const char *content_type, void *body, size_t len) {
        struct MHD_Response *resp;
        ChunkedBody *c = new0(ChunkedBody, 1);

        if (!c) {
                free(body);
                return -ENOMEM;
        }
        *c = (ChunkedBody) { .data = body, .len = len };
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, chunked_body_reader, c,
                                                 chunked_body_free);
        if (!resp) {
                chunked_body_free(c);
                return -ENOMEM;
        }
        return respond_with_headers(req, status, resp, content_type);
}

int http_reply(HttpRequest *req, unsigned status, const char *content_type, const void *body, size_t len) {
        void *copy = malloc(len + 1);

        if (!copy)
                return -ENOMEM;
        if (len > 0)
                memcpy(copy, body, len);
        return http_reply_take(req, status, content_type, copy, len);
}

int http_reply_json(HttpRequest *req, unsigned status, const json_t *j) {
        char *text = json_dumps(j, JSON_COMPACT);

        if (!text)
                return -ENOMEM;
        return http_reply_take(req, status, "application/json", text, strlen(text));
}

static int reply_error_text(HttpRequest *req, unsigned status, const char *message) {
        HttpErrorFormatter f = req->server->cfg.error_formatter ?: http_default_error_formatter;
        /* Messages quote client input (paths, values), which need not be valid UTF-8. */
        _cleanup_free_ char *clean = utf8_sanitize(message ?: "", strlen(message ?: ""));
        json_t *j = clean ? f(status, clean) : NULL;
        int r;

        if (!j) {
                static const char oom[] = "{\"error\":{\"code\":500,\"message\":\"out of memory\"}}";
                return http_reply(req, status, "application/json", oom, sizeof(oom) - 1);
        }
        r = http_reply_json(req, status, j);
        json_decref(j);
        return r;
}

int http_reply_error(HttpRequest *req, unsigned status, const char *fmt, ...) {
        char message[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        return reply_error_text(req, status, message);
}

int http_reply_errno(HttpRequest *req, int error, const char *message) {
        unsigned status = http_status_from_errno(error);
        return reply_error_text(req, status, message ?: strerror(ERRNO_VALUE(error)));
}

int http_reply_metrics(HttpRequest *req, MetricsRegistry *m) {
        Buf b = BUF_INIT(0);
        int r = metrics_render(m, &b);

        if (r < 0) {
                buf_done(&b);
                return r;
        }
        return http_reply_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf_steal(&b), b.len);
}

int http_reply_health(HttpRequest *req, bool healthy, const char *reason) {
        json_t *j = json_pack("{s:s}", "health", healthy ? "true" : "false");
        int r;

        if (!j)
                return -ENOMEM;
        if (reason && json_object_set_new(j, "reason", json_string(reason)) < 0) {
                json_decref(j);
                return -ENOMEM;
        }
        r = http_reply_json(req, healthy ? 200 : 503, j);
        json_decref(j);
        return r;
}

/* ---------------------------------------------------------------- streaming */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        HttpRequest *req = cls;
        size_t n;

        if (req->stream.len > 0) {
                n = MIN(max, req->stream.len);
                memcpy(buf, req->stream.data, n);
                buf_consume(&req->stream, n);
                return (ssize_t) n;
        }
        if (req->closed)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        if (req->stream_ended)
                return MHD_CONTENT_READER_END_OF_STREAM;
        /* Nothing to send yet: park the connection until the owner writes or ends. */
        request_suspend(req);
        return 0;
}

int http_reply_stream(HttpRequest *req, unsigned status, const char *content_type, HttpCloseFn on_close,
                      void *userdata) {
        struct MHD_Response *resp;
        int r;

        if (req->replied || req->closed)
                return -EALREADY;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, stream_reader, req, NULL);
        if (!resp)
                return -ENOMEM;
        r = add_headers(req, resp, content_type);
        if (r < 0) {
                MHD_destroy_response(resp);
                return r;
        }
        req->stream = BUF_INIT(req->server->cfg.max_stream_buffer);
        r = respond(req, status, resp);
        if (r < 0)
                return r;
        req->streaming = true;
        owned_link(req, on_close, userdata);
        return 0;
}

int http_stream_write(HttpRequest *req, const void *data, size_t len) {
        int r;

        if (!req->streaming || req->stream_ended)
                return -EINVAL;
        if (req->closed)
                return -EPIPE;
        r = buf_append(&req->stream, data, len);
        if (r < 0)
                return r;
        if (!req->in_handler)
                request_resume(req);
        return 0;
}

/* libmicrohttpd 0.9.75 sends a chunked body's last chunk and its terminator ("0\r\n\r\n") with
 * two send()s. Corked, they leave as one segment: one wakeup and one read for the client instead
 * of two, which is most of a long poll's delivery. on_completed() uncorks. */
static void conn_cork(HttpConn *conn) {
        int one = 1;

        if (conn && conn->fd >= 0 && !conn->corked &&
            setsockopt(conn->fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) >= 0)
                conn->corked = true;
}

static void conn_uncork(HttpConn *conn) {
        int zero = 0;

        if (conn && conn->corked) {
                (void) setsockopt(conn->fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero));
                conn->corked = false;
        }
}

int http_stream_end(HttpRequest *req) {
        if (!req->streaming || req->stream_ended)
                return -EINVAL;
        if (!req->closed)
                conn_cork(req->conn);
        req->stream_ended = true;
        owned_unlink(req);
        req->on_close = NULL;
        if (!req->in_handler)
                request_resume(req);
        return 0;
}

static void conn_refuse(HttpConn *conn, unsigned status, const char *reason, const char *message);

/* ---------------------------------------------------------------- request lifecycle */

static HttpConn *conn_of(struct MHD_Connection *c) {
        const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return i ? i->socket_context : NULL;
}

static void conn_set_phase(HttpConn *c, ConnPhase phase) {
        const HttpServerConfig *cfg = &c->server->cfg;
        usec_t now = now_usec(CLOCK_MONOTONIC);

        c->phase = phase;
        switch (phase) {
        case CONN_HEADERS:
                c->deadline = usec_add(now, cfg->header_timeout_usec);
                break;
        case CONN_BODY:
                c->deadline = usec_add(now, cfg->body_timeout_usec);
                break;
        case CONN_IDLE:
                c->deadline = usec_add(now, cfg->idle_timeout_usec);
                break;
        case CONN_BUSY:
                c->deadline = USEC_INFINITY;
                break;
        }
}

static void format_peer(struct MHD_Connection *c, char *buf, size_t size) {
        const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";

        if (i && i->client_addr) {
                socklen_t l = i->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
                (void) getnameinfo(i->client_addr, l, host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
        }
        (void) snprintf(buf, size, "%s:%s", host, port);
}

static HttpRequest *request_new(Listener *l, struct MHD_Connection *c, const char *url, const char *method) {
        HttpRequest *req = new0(HttpRequest, 1);

        if (!req)
                return NULL;
        *req = (HttpRequest) {
                .server = l->server,
                .listener = l,
                .conn = conn_of(c),
                .connection = c,
                .method = method,
                .path = strdup(url),
                .body = BUF_INIT(l->server->cfg.max_body_size),
                .start_usec = now_usec(CLOCK_MONOTONIC),
        };
        if (!req->path || !req->conn) {
                free(req->path);
                free(req);
                return NULL;
        }
        memcpy(req->bad_escape, req->conn->bad_escape, sizeof(req->bad_escape));
        req->raw_uri = TAKE_PTR(req->conn->raw_uri);
        format_peer(c, req->peer, sizeof(req->peer));
        return req;
}

static void request_free(HttpRequest *req) {
        if (!req)
                return;
        req->closed = true;
        owner_release(req);
        req->hup = sd_event_source_disable_unref(req->hup);
        if (req->stashed)
                MHD_destroy_response(req->stashed);
        buf_done(&req->body);
        buf_done(&req->stream);
        strv_free(req->form);
        buf_done(&req->reply_headers);
        free(req->path);
        free(req->raw_uri);
        free(req);
}

static bool method_matches(const HttpRoute *r, const char *method) {
        return !r->method || streq(r->method, method) || (streq(r->method, "GET") && streq(method, "HEAD"));
}

static bool path_matches(const HttpRoute *r, const char *path) {
        const char *rest;

        if (!(r->flags & HTTP_ROUTE_PREFIX))
                return streq(r->path, path);
        rest = startswith(path, r->path);
        return rest && (*rest == 0 || *rest == '/' || endswith(r->path, "/"));
}

/* Finds the route; replies 404/405 itself when there is none. */
static const HttpRoute *route_find(HttpRequest *req) {
        HttpServer *s = req->server;
        char allow[128] = "";
        bool path_known = false;

        for (size_t i = 0; i < s->n_routes; i++) {
                const HttpRoute *r = &s->routes[i];
                if (!path_matches(r, req->path))
                        continue;
                if (method_matches(r, req->method))
                        return r;
                path_known = true;
                if (r->method && !strstr(allow, r->method) && strlen(allow) + strlen(r->method) + 3 < sizeof(allow)) {
                        if (allow[0])
                                strcat(allow, ", ");
                        strcat(allow, r->method);
                }
        }
        if (path_known) {
                (void) http_reply_header(req, "Allow", allow);
                (void) http_reply_error(req, 405, "method %s not allowed on %s", req->method, req->path);
        } else
                (void) http_reply_error(req, 404, "no such path: %s", req->path);
        return NULL;
}

/* First call for a request: headers are complete. Rejects what can be rejected before the body
 * is read; returns false if a reply was queued. */
static bool request_begin(HttpRequest *req) {
        const char *cl = http_request_header(req, "Content-Length");
        uint64_t n;

        conn_set_phase(req->conn, CONN_BODY);
        req->route = route_find(req);
        if (!req->route)
                return false;
        if (!req->server->cfg.deliver_oversized && cl && safe_atou64(cl, &n) == 0 && n > req->server->cfg.max_body_size) {
                (void) http_reply_error(req, 413, "request body of %llu bytes exceeds the limit of %zu bytes",
                                        (unsigned long long) n, req->server->cfg.max_body_size);
                return false;
        }
        return true;
}

static void request_dispatch(HttpRequest *req) {
        int r;

        conn_set_phase(req->conn, CONN_BUSY);
        if (req->body_too_large && !req->server->cfg.deliver_oversized) {
                (void) http_reply_error(req, 413, "request body exceeds the limit of %zu bytes", req->server->cfg.max_body_size);
                return;
        }
        req->in_handler = true;
        r = req->route->handler(req, req->server->userdata);
        req->in_handler = false;
        if (req->replied)
                return; /* a stream's reader parks the connection when it has nothing to send */
        if (req->owned && r >= 0) {
                request_suspend(req);
                return;
        }
        owned_unlink(req);
        if (r < 0)
                (void) http_reply_errno(req, r, NULL);
        else
                (void) http_reply_error(req, 500, "handler for %s did not reply", req->path);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **req_cls) {
        Listener *l = cls;
        HttpRequest *req = *req_cls;
        struct MHD_Response *stashed;
        enum MHD_Result ok;

        if (!req) {
                req = request_new(l, c, url, method);
                if (!req)
                        return MHD_NO;
                *req_cls = req;
                req->in_handler = true;
                (void) request_begin(req); /* may already have queued 404/405/413 */
                req->in_handler = false;
                return MHD_YES;
        }
        if (req->stashed) {
                /* Resumed with a reply made while suspended. */
                stashed = TAKE_PTR(req->stashed);
                ok = MHD_queue_response(c, req->status, stashed);
                MHD_destroy_response(stashed);
                return ok;
        }
        if (req->closed)
                return MHD_NO;
        if (req->replied) {
                /* Rejected before the body (404/413): discard what still arrives. */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (!req->body_too_large && buf_append(&req->body, upload_data, *upload_data_size) < 0) {
                        req->body_too_large = true;
                        buf_done(&req->body);
                }
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (!req->route)
                return MHD_NO; /* no route and no reply could be made: drop the connection */
        if (req->conn->phase != CONN_BUSY)
                request_dispatch(req);
        else if (req->owned && !req->suspended)
                request_suspend(req); /* spurious wakeup while still waiting */
        return MHD_YES;
}

/* Bounded label values: a client must not be able to mint new metric series. */
static const char *method_label(const char *m) {
        static const char *const known[] = { "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS" };
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (streq(known[i], m))
                        return known[i];
        return "other";
}

/* MHD watches connections edge-triggered and takes a short read as "drained": a FIN that came
 * with the request's last bytes produces no further edge, so a client that half-closed would
 * keep its connection until a timeout. The periodic sweep peeks for that EOF on connections that
 * are idle or still receiving a request (which can then never complete) and shuts them down,
 * which hands MHD the event it needs to close. Busy connections are left alone: their reply is
 * still due. */
static void conn_check_eof(HttpConn *conn) {
        char c;

        if (conn->fd >= 0 && conn->phase != CONN_BUSY &&
            recv(conn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
                (void) shutdown(conn->fd, SHUT_RDWR);
                conn->deadline = USEC_INFINITY;
        }
}

static Metric *request_counter(HttpServer *s, unsigned status, const char *method) {
        char labels[64];
        Metric *m;

        for (unsigned i = 0; i < s->n_request_series; i++)
                if (s->request_series[i].status == status && s->request_series[i].method == method)
                        return s->request_series[i].counter;
        (void) snprintf(labels, sizeof(labels), "code=\"%u\",method=\"%s\"", status, method);
        m = metrics_counter(s->metrics, "http_requests_total", labels, "HTTP requests by status and method.");
        if (m && s->n_request_series < ELEMENTSOF(s->request_series))
                s->request_series[s->n_request_series++] = (typeof(s->request_series[0])) { status, method, m };
        return m;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
        Listener *l = cls;
        HttpServer *s = l->server;
        HttpRequest *req = *req_cls;
        HttpConn *conn = conn_of(c);

        if (!req)
                return;
        *req_cls = NULL;
        if (s->metrics && req->status > 0) {
                metric_inc(request_counter(s, req->status, method_label(req->method)));
                metric_observe(s->m_duration, (double) (now_usec(CLOCK_MONOTONIC) - req->start_usec) / 1e6);
        }
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
                log_debug("Request %s %s from %s ended early (%d).", req->method, req->path, req->peer, (int) toe);
        request_free(req);
        conn_uncork(conn);
        /* A client that half-closed is found by the next sweep (within HTTP_SWEEP_USEC): a peek
         * here would cost every keep-alive request one more syscall. */
        if (conn)
                conn_set_phase(conn, CONN_IDLE);
}

static void on_uri(HttpConn *conn) {
        conn->bad_escape[0] = 0;
        /* The first request on a connection keeps the deadline that started at accept. */
        if (conn->phase == CONN_IDLE)
                conn_set_phase(conn, CONN_HEADERS);
}

static void *on_uri_log(void *cls, const char *uri, struct MHD_Connection *c) {
        HttpConn *conn = conn_of(c);
        if (conn) {
                on_uri(conn);
                (void) free_and_strdup(&conn->raw_uri, uri);
        }
        return NULL;
}

/* Decodes %XX in place. Invalid escapes stay as they are and the first is remembered, so
 * handlers can reject them (etcd's error 210) instead of silently getting a different key. */
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s) {
        HttpConn *conn = conn_of(c);
        char *o = s;

        for (char *p = s; *p; p++) {
                /* %00 would cut the C string short and silently change a key or value: it is
                 * refused like an invalid escape instead. */
                if (*p == '%' && isxdigit((unsigned char) p[1]) && isxdigit((unsigned char) p[2]) &&
                    !(p[1] == '0' && p[2] == '0')) {
                        char hex[3] = { p[1], p[2], 0 };
                        *o++ = (char) strtol(hex, NULL, 16);
                        p += 2;
                        continue;
                }
                if (*p == '%' && conn && !conn->bad_escape[0])
                        (void) snprintf(conn->bad_escape, sizeof(conn->bad_escape), "%.3s", p);
                *o++ = *p;
        }
        *o = 0;
        return (size_t) (o - s);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        Listener *l = cls;
        HttpServer *s = l->server;
        HttpConn *conn = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
                conn = new0(HttpConn, 1);
                if (!conn)
                        return; /* without context the connection just has no deadlines */
                conn->server = s;
                conn->fd = i ? i->connect_fd : -EBADF;
                conn_set_phase(conn, CONN_HEADERS);
                if (s->n_conns >= s->cfg.max_connections && conn->fd >= 0) {
                        log_debug("Refusing connection: %u connections open.", s->n_conns);
                        conn_refuse(conn, 503, "Service Unavailable", "too many connections");
                }
                LIST_PREPEND(s->conns, conn);
                s->n_conns++;
                *socket_context = conn;
                metric_set(s->m_connections, s->n_conns);
                if (!s->freeing)
                        (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ON);
                return;
        }
        if (!conn)
                return;
        LIST_REMOVE(s->conns, conn);
        s->n_conns--;
        metric_set(s->m_connections, s->n_conns);
        *socket_context = NULL;
        free(conn->raw_uri);
        free(conn);
        if (s->n_conns == 0)
                (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_OFF);
}

_printf_(2, 0) static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char msg[512];
        size_t n;

        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        n = strlen(msg);
        while (n > 0 && msg[n - 1] == '\n')
                msg[--n] = 0;
        log_debug("microhttpd: %s", msg);
}

/* ---------------------------------------------------------------- deadlines */

/* Writes a complete error response straight to the socket and shuts it down, for connections
 * MHD has not started a response on (a request that is incomplete, or not yet read at all). MHD
 * notices the shutdown on its next pass and closes the connection. */
static void conn_refuse(HttpConn *conn, unsigned status, const char *reason, const char *message) {
        HttpServer *s = conn->server;
        _cleanup_free_ char *body = NULL;
        char head[256];
        json_t *j;
        int n;

        j = (s->cfg.error_formatter ?: http_default_error_formatter)(status, message);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", status, reason, body ? strlen(body) : 0);
        (void) !send(conn->fd, head, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (body)
                (void) !send(conn->fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) shutdown(conn->fd, SHUT_RDWR);
        conn->deadline = USEC_INFINITY;
}

/* A request that did not arrive in time gets a 408; an idle keep-alive connection is just shut. */
static void conn_expire(HttpConn *conn) {
        if (conn->fd < 0)
                return;
        if (conn->phase == CONN_HEADERS || conn->phase == CONN_BODY) {
                log_debug("Closing connection (fd %d): request not received in time.", conn->fd);
                conn_refuse(conn, 408, "Request Timeout", conn->phase == CONN_HEADERS
                            ? "request headers not received in time" : "request body not received in time");
                return;
        }
        (void) shutdown(conn->fd, SHUT_RDWR);
        conn->deadline = USEC_INFINITY;
}

static int on_sweep(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;
        usec_t now = now_usec(CLOCK_MONOTONIC);

        for (HttpConn *c = s->conns; c; c = c->next) {
                if (c->deadline <= now)
                        conn_expire(c);
                else
                        conn_check_eof(c);
        }
        /* MHD can miss that a connection it was waiting on closed (at its own connection limit it
         * stops polling the listener); a periodic pass while connections exist fixes that. */
        for (unsigned i = 0; i < s->n_listeners; i++)
                listener_kick(&s->listeners[i]);
        return sd_event_source_set_time_relative(src, HTTP_SWEEP_USEC);
}

/* ---------------------------------------------------------------- MHD on sd-event */

static void listener_rearm(Listener *l) {
        MHD_UNSIGNED_LONG_LONG ms;

        /* MHD_get_timeout() is relative milliseconds; sd-event wants absolute or relative µs. */
        if (l->kicked) {
                l->kicked = false;
                (void) sd_event_source_set_time_relative(l->timer, 0);
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        } else if (MHD_get_timeout(l->mhd, &ms) == MHD_YES) {
                (void) sd_event_source_set_time_relative(l->timer, (usec_t) ms * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
}

static int on_mhd_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;
        bool resumed = l->kicked;

        l->kicked = false;
        if (MHD_run(l->mhd) != MHD_YES)
                log_debug("MHD_run() failed.");
        /* MHD advances each connection by one write per pass: after connections were resumed,
         * a chunked response's body goes out in the first pass and its terminating chunk only
         * in the next. Run that pass now rather than after whatever else the loop has to do,
         * so a long poll completes (and its client can ask again) without the extra wait. */
        if (resumed && MHD_run(l->mhd) != MHD_YES)
                log_debug("MHD_run() failed.");
        listener_rearm(l);
        return 0;
}

static int on_mhd_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        return on_mhd_io(NULL, -1, 0, userdata);
}

static int listen_socket(const char *address, int *ret_fd) {
        _cleanup_free_ char *host = NULL, *port = NULL;
        int r = net_split_host_port(address, &host, &port);

        if (r < 0)
                return r;
        r = net_listen(isempty(host) ? NULL : host, port, 1024);
        if (r < 0)
                return r;
        *ret_fd = r;
        return 0;
}

int http_server_listen_fd(HttpServer *s, int fd) {
        const union MHD_DaemonInfo *info;
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        Listener *l;
        unsigned idle_sec;
        int r;

        if (s->n_listeners >= HTTP_MAX_LISTENERS) {
                safe_close(fd);
                return -E2BIG;
        }
        l = &s->listeners[s->n_listeners];
        *l = (Listener) { .server = s, .port = -1 };
        if (getsockname(fd, (struct sockaddr *) &sa, &sl) == 0)
                l->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &sa)->sin6_port
                                                         : ((struct sockaddr_in *) &sa)->sin_port);
        idle_sec = (unsigned) MAX((usec_t) 1, s->cfg.idle_timeout_usec / USEC_PER_SEC);
        l->mhd = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_access, l,
                MHD_OPTION_LISTEN_SOCKET, fd,
                /* Our own limit (on_connection) answers 503; MHD's is only a backstop. */
                MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections + HTTP_CONNECTION_SLACK,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.max_connections_per_ip,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->cfg.connection_memory_limit,
                MHD_OPTION_CONNECTION_TIMEOUT, idle_sec,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
                MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                MHD_OPTION_URI_LOG_CALLBACK, on_uri_log, l,
                MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, l,
                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, l,
                MHD_OPTION_END);
        if (!l->mhd) {
                safe_close(fd);
                return -EIO;
        }
        info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) {
                r = -EIO;
                goto fail;
        }
        r = sd_event_add_io(s->event, &l->io, info->epoll_fd, EPOLLIN, on_mhd_io, l);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(s->event, &l->timer, CLOCK_MONOTONIC, 0, EVENT_ACCURACY_EXACT_USEC, on_mhd_timer, l);
        if (r < 0)
                goto fail;
        s->n_listeners++;
        listener_rearm(l);
        return 0;
fail:
        l->io = sd_event_source_disable_unref(l->io);
        MHD_stop_daemon(l->mhd); /* closes fd */
        l->mhd = NULL;
        return r;
}

int http_server_listen(HttpServer *s, const char *address) {
        int fd = -EBADF, r;

        r = listen_socket(address, &fd);
        if (r < 0)
                return r;
        return http_server_listen_fd(s, fd);
}

int http_server_port(HttpServer *s, unsigned i) {
        return i < s->n_listeners ? s->listeners[i].port : -ENOENT;
}

int http_server_set_metrics(HttpServer *s, MetricsRegistry *m) {
        s->metrics = m;
        s->m_connections = metrics_gauge(m, "http_connections", NULL, "Open HTTP connections.");
        s->m_duration = metrics_histogram(m, "http_request_duration_seconds", NULL,
                                          "Time from request headers to completion.", metrics_latency_buckets,
                                          metrics_latency_buckets_n);
        return s->m_connections && s->m_duration ? 0 : -ENOMEM;
}

int http_server_new(HttpServer **ret, sd_event *e, const HttpServerConfig *cfg, const HttpRoute *routes,
                    size_t n_routes, void *userdata) {
        HttpServer *s = new0(HttpServer, 1);
        int r;

        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        if (cfg)
                s->cfg = *cfg;
#define DEFAULT(f, v) if (s->cfg.f == 0) s->cfg.f = (v)
        DEFAULT(max_body_size, HTTP_MAX_BODY_DEFAULT);
        DEFAULT(max_connections, HTTP_MAX_CONNECTIONS_DEFAULT);
        DEFAULT(connection_memory_limit, HTTP_CONNECTION_MEMORY_DEFAULT);
        DEFAULT(max_stream_buffer, HTTP_MAX_STREAM_BUFFER_DEFAULT);
        DEFAULT(header_timeout_usec, HTTP_HEADER_TIMEOUT_DEFAULT);
        DEFAULT(body_timeout_usec, HTTP_BODY_TIMEOUT_DEFAULT);
        DEFAULT(idle_timeout_usec, HTTP_IDLE_TIMEOUT_DEFAULT);
#undef DEFAULT
        s->routes = routes;
        s->n_routes = n_routes;
        s->userdata = userdata;
        r = sd_event_add_time_relative(e, &s->sweep, CLOCK_MONOTONIC, HTTP_SWEEP_USEC, 50 * USEC_PER_MSEC, on_sweep, s);
        if (r < 0) {
                http_server_free(s);
                return r;
        }
        (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_OFF);
        *ret = s;
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        s->freeing = true;
        /* Owners hear about it first; then every parked connection is resumed, because MHD must
         * not be stopped with suspended connections. */
        while (s->owned) {
                HttpRequest *req = s->owned;
                req->closed = true;
                owner_release(req);
                request_resume(req);
        }
        for (unsigned i = 0; i < s->n_listeners; i++) {
                Listener *l = &s->listeners[i];
                (void) MHD_run(l->mhd);
                l->io = sd_event_source_disable_unref(l->io);
                l->timer = sd_event_source_disable_unref(l->timer);
                MHD_stop_daemon(l->mhd);
        }
        s->sweep = sd_event_source_disable_unref(s->sweep);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}
