/* SPDX-License-Identifier: MIT */
/* HTTP server: libmicrohttpd in external-epoll mode driven by sd-event (no threads), a route
 * table, JSON replies, hard limits on everything a client controls, and suspend/resume for
 * requests that wait (Raft commits, long-poll watches, streams).
 *
 * Limits and what a client sees when it crosses them:
 *   body larger than max_body_size           -> 413, before the body is read when announced
 *                                               (or, with deliver_oversized, the body is read
 *                                               and dropped and the handler is told so)
 *   headers larger than connection_memory    -> 431 (from libmicrohttpd)
 *   request line + headers slower than
 *     header_timeout (slowloris)             -> 408, connection closed
 *   body slower than body_timeout            -> 408, connection closed
 *   keep-alive connection idle past
 *     idle_timeout                           -> closed
 *   more than max_connections                -> new connections closed at once
 *   JSON bodies: invalid or deeper than the
 *     handler's max depth                    -> 400 with the parser's message
 * Error bodies come from the configured formatter (default {"error":{"code":N,"message":"..."}}).
 *
 * Request lifetime: a handler either replies (http_reply*) before returning, or suspends the
 * request (http_request_suspend / http_reply_stream) and finishes it later from the loop. A
 * suspended or streaming request's on_close callback runs exactly once if the request goes away
 * before the owner finished it (client disconnect, server shutdown); after on_close, or after
 * the owner's final reply / http_stream_end(), the HttpRequest pointer is no longer the owner's. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "shared/buf.h"
#include "shared/macro.h"
#include "shared/metrics.h"
#include "shared/time-util.h"

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;

typedef int (*HttpHandler)(HttpRequest *req, void *userdata);
typedef void (*HttpCloseFn)(HttpRequest *req, void *userdata);
/* Builds an error body for status + message. Returns a new JSON value (or NULL for OOM). */
typedef json_t *(*HttpErrorFormatter)(unsigned status, const char *message);

enum {
        HTTP_ROUTE_PREFIX = 1 << 0, /* path matches itself and everything below it */
};

typedef struct HttpRoute {
        const char *method;  /* "GET", "PUT", ...; NULL matches every method */
        const char *path;    /* exact path, or a prefix with HTTP_ROUTE_PREFIX */
        HttpHandler handler;
        unsigned flags;
} HttpRoute;

typedef struct HttpServerConfig {
        size_t max_body_size;             /* bytes; default 1 MiB */
        unsigned max_connections;         /* default 1024 */
        unsigned max_connections_per_ip;  /* 0 = no per-address limit (default) */
        size_t connection_memory_limit;   /* per-connection header buffer; default 32 KiB */
        size_t max_stream_buffer;         /* unsent streamed bytes per request; default 1 MiB */
        usec_t header_timeout_usec;       /* default 10 s */
        usec_t body_timeout_usec;         /* default 60 s */
        usec_t idle_timeout_usec;         /* default 60 s */
        HttpErrorFormatter error_formatter; /* default: {"error":{"code":N,"message":"..."}} */
        const char *server_header;        /* value of the Server header; default none */
        bool deliver_oversized;           /* a body over max_body_size is read and dropped, and the
                                           * request still reaches its handler, which sees
                                           * http_request_body_too_large(), instead of 413 */
} HttpServerConfig;

#define HTTP_MAX_BODY_DEFAULT          (1U << 20)
#define HTTP_MAX_CONNECTIONS_DEFAULT   1024U
#define HTTP_CONNECTION_MEMORY_DEFAULT (32U << 10)
#define HTTP_MAX_STREAM_BUFFER_DEFAULT (1U << 20)
#define HTTP_HEADER_TIMEOUT_DEFAULT    (10 * USEC_PER_SEC)
#define HTTP_BODY_TIMEOUT_DEFAULT      (60 * USEC_PER_SEC)
#define HTTP_IDLE_TIMEOUT_DEFAULT      (60 * USEC_PER_SEC)
#define HTTP_JSON_DEPTH_DEFAULT        32U

/* cfg may be NULL for defaults; zero fields take their defaults. routes is not copied and must
 * outlive the server. userdata is passed to every handler. */
int http_server_new(HttpServer **ret, sd_event *e, const HttpServerConfig *cfg, const HttpRoute *routes,
                    size_t n_routes, void *userdata);
/* Resumes and closes every request (on_close runs), then frees. */
HttpServer *http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free)

/* address: "host:port", "[v6]:port", ":port" or an http:// URL. Port 0 picks a free port. */
int http_server_listen(HttpServer *s, const char *address);
/* Serves an already listening socket (socket activation); takes ownership of fd. */
int http_server_listen_fd(HttpServer *s, int fd);
/* The TCP port of listener i (useful after binding port 0), or -ENOENT. */
int http_server_port(HttpServer *s, unsigned i);
/* Registers http_requests_total{code,method}, http_request_duration_seconds and
 * http_connections in m. */
int http_server_set_metrics(HttpServer *s, MetricsRegistry *m);
/* Number of requests currently suspended or streaming. */
unsigned http_server_suspended(HttpServer *s);

/* --- the request --- */
const char *http_request_method(HttpRequest *req);
const char *http_request_path(HttpRequest *req);  /* percent-decoded */
const char *http_request_header(HttpRequest *req, const char *name);
/* A query argument; "" for one given without a value ("?wait"), NULL if absent. */
const char *http_request_query(HttpRequest *req, const char *name);
/* The request target as received, before any decoding ("/v2/keys/a%2Fb?x=1"). */
const char *http_request_raw_uri(HttpRequest *req);
/* A value from the form body (application/x-www-form-urlencoded) or, if absent there, the
 * query string, as Go's Request.FormValue. NULL if given in neither. */
const char *http_request_param(HttpRequest *req, const char *name);
/* The first invalid percent-escape in the path or query ("%zz"), or NULL. */
const char *http_request_bad_escape(HttpRequest *req);
const void *http_request_body(HttpRequest *req, size_t *ret_len);
/* The body exceeded max_body_size and was dropped (only with deliver_oversized). */
bool http_request_body_too_large(HttpRequest *req);
/* Parses the body as JSON no deeper than max_depth. On failure it replies 400 itself (naming
 * line, column and reason) and returns -EBADMSG; the handler just returns the error. */
int http_request_json(HttpRequest *req, unsigned max_depth, json_t **ret);
const char *http_request_peer(HttpRequest *req); /* "127.0.0.1:53412" */
void *http_request_server_userdata(HttpRequest *req);

/* --- replies --- */
int http_reply_header(HttpRequest *req, const char *name, const char *value);
int http_reply(HttpRequest *req, unsigned status, const char *content_type, const void *body, size_t len);
/* Takes ownership of body (malloc'ed) instead of copying it. */
int http_reply_take(HttpRequest *req, unsigned status, const char *content_type, void *body, size_t len);
/* The same, sent with chunked transfer encoding instead of a Content-Length (for servers that
 * must frame bodies as another implementation does). */
int http_reply_take_chunked(HttpRequest *req, unsigned status, const char *content_type, void *body, size_t len);
int http_reply_json(HttpRequest *req, unsigned status, const json_t *j);
int http_reply_error(HttpRequest *req, unsigned status, const char *fmt, ...) _printf_(3, 4);
/* Maps a negative errno to a status (table in http-server.c) and replies with message. */
int http_reply_errno(HttpRequest *req, int error, const char *message);
unsigned http_status_from_errno(int error);

/* Defers the reply: the handler returns 0 and replies later from the loop. */
int http_request_suspend(HttpRequest *req, HttpCloseFn on_close, void *userdata);
/* Sends status and headers at once, then a chunked body written with http_stream_write().
 * -ENOBUFS from write means the client reads slower than max_stream_buffer allows. */
int http_reply_stream(HttpRequest *req, unsigned status, const char *content_type, HttpCloseFn on_close,
                      void *userdata);
int http_stream_write(HttpRequest *req, const void *data, size_t len);
int http_stream_end(HttpRequest *req);

/* Ready-made handlers' bodies for /health and /metrics. */
int http_reply_metrics(HttpRequest *req, MetricsRegistry *m);
int http_reply_health(HttpRequest *req, bool healthy, const char *reason);

/* Returns the default error body {"error":{"code":status,"message":message}}. */
json_t *http_default_error_formatter(unsigned status, const char *message);
/* Nesting depth of a JSON text ({ and [ outside strings), without parsing it. */
unsigned json_text_depth(const char *text, size_t len);
