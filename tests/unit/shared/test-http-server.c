/* SPDX-License-Identifier: MIT */
/* The HTTP server over real loopback sockets: routing, parameters, limits, malformed and slow
 * clients, suspended and streamed replies, metrics. */
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "shared/http-server.h"
#include "shared/log.h"
#include "test-http.h"
#include "test-util.h"

typedef struct Fixture {
        sd_event *event;
        HttpServer *server;
        MetricsRegistry *metrics;
        int port;
        HttpRequest *waiting;     /* a suspended or streaming request */
        int closes;               /* on_close calls */
        char seen[256];           /* what the echo handler saw */
        char raw[256];
} Fixture;

static Fixture F;

static int h_hello(HttpRequest *req, void *u) {
        json_t *j = json_pack("{s:s}", "hello", "world");
        int r = http_reply_json(req, 200, j);
        json_decref(j);
        return r;
}

static int h_echo(HttpRequest *req, void *u) {
        const char *v = http_request_param(req, "value"), *q = http_request_query(req, "q");
        (void) snprintf(F.seen, sizeof(F.seen), "path=%s value=%s q=%s bad=%s%s%s", http_request_path(req), strna(v),
                        strna(q), strna(http_request_bad_escape(req)), http_request_query(req, "flag") ? " flag=" : "",
                        http_request_query(req, "flag") ?: "");
        (void) snprintf(F.raw, sizeof(F.raw), "%s", http_request_raw_uri(req));
        return http_reply(req, 200, "text/plain", F.seen, strlen(F.seen));
}

static int h_json(HttpRequest *req, void *u) {
        json_t *j = NULL;
        int r = http_request_json(req, 4, &j);
        if (r < 0)
                return r;
        r = http_reply_json(req, 200, j);
        json_decref(j);
        return r;
}

static int h_enoent(HttpRequest *req, void *u) {
        return -ENOENT;
}

static int h_forgets(HttpRequest *req, void *u) {
        return 0;
}

static void on_close(HttpRequest *req, void *u) {
        assert_ptr_equal(req, F.waiting);
        F.waiting = NULL;
        F.closes++;
}

static int h_wait(HttpRequest *req, void *u) {
        F.waiting = req;
        return http_request_suspend(req, on_close, NULL);
}

static int h_stream(HttpRequest *req, void *u) {
        int r = http_reply_stream(req, 200, "application/json", on_close, NULL);
        if (r < 0)
                return r;
        F.waiting = req;
        return http_stream_write(req, "first\n", 6);
}

static int h_metrics(HttpRequest *req, void *u) {
        return http_reply_metrics(req, F.metrics);
}

static int h_health(HttpRequest *req, void *u) {
        return http_reply_health(req, !http_request_query(req, "sick"), http_request_query(req, "sick"));
}

static const HttpRoute routes[] = {
        { "GET", "/hello", h_hello },
        { "DELETE", "/hello", h_hello },
        { NULL, "/v2/keys", h_echo, HTTP_ROUTE_PREFIX },
        { "POST", "/json", h_json },
        { "GET", "/enoent", h_enoent },
        { "GET", "/forgets", h_forgets },
        { "GET", "/wait", h_wait },
        { "GET", "/stream", h_stream },
        { "GET", "/metrics", h_metrics },
        { "GET", "/health", h_health },
};

static int setup_with(const HttpServerConfig *cfg) {
        F = (Fixture) {};
        assert_int_equal(sd_event_new(&F.event), 0);
        assert_int_equal(metrics_new(&F.metrics), 0);
        assert_int_equal(http_server_new(&F.server, F.event, cfg, routes, ELEMENTSOF(routes), NULL), 0);
        assert_int_equal(http_server_set_metrics(F.server, F.metrics), 0);
        assert_int_equal(http_server_listen(F.server, "127.0.0.1:0"), 0);
        F.port = http_server_port(F.server, 0);
        assert_true(F.port > 0);
        return 0;
}

static int setup(void **state) {
        HttpServerConfig cfg = { .max_body_size = 1024 };
        return setup_with(&cfg);
}

static int setup_fast_timeouts(void **state) {
        HttpServerConfig cfg = { .max_body_size = 1024,
                                 .header_timeout_usec = 300 * USEC_PER_MSEC,
                                 .body_timeout_usec = 400 * USEC_PER_MSEC,
                                 .idle_timeout_usec = 500 * USEC_PER_MSEC };
        return setup_with(&cfg);
}

static int setup_limited(void **state) {
        HttpServerConfig cfg = { .max_connections = 4 };
        return setup_with(&cfg);
}

static int teardown(void **state) {
        F.server = http_server_free(F.server);
        F.metrics = metrics_free(F.metrics);
        F.event = sd_event_unref(F.event);
        return 0;
}

static void json_error_is(const TestResponse *r, int code, const char *message_part) {
        json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "error"), "code")), code);
        assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")), message_part));
        json_decref(j);
}

static void routes_match_exact_prefix_and_method(void **state) {
        TestResponse r = {};
        char v[64];

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"hello\":\"world\"}");
        assert_string_equal(test_response_header(&r, "Content-Type", v, sizeof(v)), "application/json");
        test_response_done(&r);

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/nope", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 404);
        json_error_is(&r, 404, "no such path: /nope");
        test_response_done(&r);

        assert_int_equal(test_http_simple(F.event, F.port, "PUT", "/hello", NULL, "x=1", &r), 0);
        assert_int_equal(r.status, 405);
        assert_string_equal(test_response_header(&r, "Allow", v, sizeof(v)), "GET, DELETE");
        test_response_done(&r);

        /* HEAD follows GET routes and carries no body. */
        assert_int_equal(test_http_simple(F.event, F.port, "HEAD", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, 0);
        test_response_done(&r);

        /* A prefix matches itself and below, not /v2/keysX. */
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/v2/keys/a/b", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/v2/keysX", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 404);
        test_response_done(&r);
}

static void params_form_body_wins_over_query(void **state) {
        TestResponse r = {};

        assert_int_equal(test_http_simple(F.event, F.port, "PUT", "/v2/keys/a?value=fromquery&q=a+b%21", NULL,
                                          "value=from+form%26more&other=1", &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(F.seen, "path=/v2/keys/a value=from form&more q=a b! bad=n/a");
        test_response_done(&r);

        /* Without a form body the query value is used; JSON bodies are not forms. */
        assert_int_equal(test_http_simple(F.event, F.port, "PUT", "/v2/keys/a?value=fromquery", "application/json",
                                          "{\"value\":\"x\"}", &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/a value=fromquery q=n/a bad=n/a");
        test_response_done(&r);
}

static void valueless_query_args_and_raw_uri(void **state) {
        TestResponse r = {};

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/v2/keys/a?flag&q=%41", NULL, NULL, &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/a value=n/a q=A bad=n/a flag=");
        assert_string_equal(F.raw, "/v2/keys/a?flag&q=%41");
        test_response_done(&r);
}

static void path_escapes_decode_and_bad_ones_are_reported(void **state) {
        TestResponse r = {};

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/v2/keys/a%2Fb%20c", NULL, NULL, &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/a/b c value=n/a q=n/a bad=n/a");
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/v2/keys/a%zz", NULL, NULL, &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/a%zz value=n/a q=n/a bad=%zz");
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "PUT", "/v2/keys/k", NULL, "value=%g1", &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/k value=n/a q=n/a bad=%g1");
        test_response_done(&r);
        /* %00 would truncate the key or value: it is reported, never decoded. */
        assert_int_equal(test_http_simple(F.event, F.port, "PUT", "/v2/keys/k", NULL, "value=a%00b", &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/k value=n/a q=n/a bad=%00");
        test_response_done(&r);
        /* The body's bad escape wins over the query's, as in Go. */
        assert_int_equal(test_http_simple(F.event, F.port, "PUT", "/v2/keys/k?x=%zz", NULL, "value=%g1", &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/k value=n/a q=n/a bad=%g1");
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/v2/keys/a%00b?q=x%00y", NULL, NULL, &r), 0);
        assert_string_equal(F.seen, "path=/v2/keys/a%00b value=n/a q=x%00y bad=%00");
        test_response_done(&r);
}

static void announced_oversized_body_refused_before_it_is_sent(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *head = "PUT /v2/keys/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                           "Content-Length: 10000000\r\n\r\n";
        TestResponse r = {};

        assert_true(fd >= 0);
        /* Only the headers: the 413 must come without the server waiting for 10 MB. */
        assert_int_equal(test_send_all(F.event, fd, head, strlen(head), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_response(F.event, fd, &r, 2 * USEC_PER_SEC), 0);
        assert_int_equal(r.status, 413);
        json_error_is(&r, 413, "exceeds the limit of 1024 bytes");
        test_response_done(&r);
        assert_string_equal(F.seen, "");
}

static void chunked_oversized_body_refused(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        char chunk[600];
        Buf req = BUF_INIT(0);
        TestResponse r = {};

        memset(chunk, 'a', sizeof(chunk));
        assert_true(fd >= 0);
        assert_int_equal(buf_printf(&req, "PUT /v2/keys/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(buf_printf(&req, "%zx\r\n", sizeof(chunk)), 0);
                assert_int_equal(buf_append(&req, chunk, sizeof(chunk)), 0);
                assert_int_equal(buf_append_str(&req, "\r\n"), 0);
        }
        assert_int_equal(buf_append_str(&req, "0\r\n\r\n"), 0);
        assert_int_equal(test_send_all(F.event, fd, req.data, req.len, USEC_PER_SEC), 0);
        assert_int_equal(test_recv_response(F.event, fd, &r, 2 * USEC_PER_SEC), 0);
        assert_int_equal(r.status, 413);
        assert_string_equal(F.seen, "");
        test_response_done(&r);
        buf_done(&req);
}

static void bad_and_too_deep_json_get_400(void **state) {
        TestResponse r = {};

        assert_int_equal(test_http_simple(F.event, F.port, "POST", "/json", "application/json", "{\"a\": [1, 2,}", &r), 0);
        assert_int_equal(r.status, 400);
        json_error_is(&r, 400, "invalid JSON at line 1 column");
        test_response_done(&r);

        assert_int_equal(test_http_simple(F.event, F.port, "POST", "/json", "application/json", "[[[[[1]]]]]", &r), 0);
        assert_int_equal(r.status, 400);
        json_error_is(&r, 400, "nested deeper than 4 levels");
        test_response_done(&r);

        assert_int_equal(test_http_simple(F.event, F.port, "POST", "/json", "application/json", "{\"a\":1,\"a\":2}", &r), 0);
        assert_int_equal(r.status, 400);
        test_response_done(&r);

        /* Brackets inside strings do not count as depth. */
        assert_int_equal(test_http_simple(F.event, F.port, "POST", "/json", "application/json", "{\"a\":\"[[[[[[\\\"[\"}", &r), 0);
        assert_int_equal(r.status, 200);
        test_response_done(&r);
}

static void garbage_and_oversized_headers_get_4xx(void **state) {
        TestResponse r = {};
        Buf big = BUF_INIT(0);

        assert_int_equal(test_http(F.event, F.port, "THIS IS NOT HTTP\r\n\r\n", &r), 0);
        assert_true(r.status >= 400 && r.status < 500);
        test_response_done(&r);

        assert_int_equal(buf_append_str(&big, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: "), 0);
        for (int i = 0; i < 40000; i++)
                assert_int_equal(buf_append_str(&big, "a"), 0);
        assert_int_equal(buf_append_str(&big, "\r\n\r\n"), 0);
        assert_int_equal(test_http(F.event, F.port, big.data, &r), 0);
        assert_true(r.status == 431 || r.status == 413);
        test_response_done(&r);
        buf_done(&big);

        /* The server still works afterwards. */
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        test_response_done(&r);
}

/* Client bytes that are not UTF-8 end up in error messages; the body must still be valid JSON. */
static void invalid_utf8_in_path_gets_json_404(void **state) {
        TestResponse r = {};

        assert_int_equal(test_http(F.event, F.port, "GET /v2/ke\x87\xcf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r), 0);
        assert_int_equal(r.status, 404);
        json_error_is(&r, 404, "no such path: /v2/ke\xef\xbf\xbd\xef\xbf\xbd");
        test_response_done(&r);
}

static void handler_errors_map_to_status(void **state) {
        TestResponse r = {};

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/enoent", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 404);
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/forgets", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 500);
        json_error_is(&r, 500, "did not reply");
        test_response_done(&r);
        assert_int_equal(http_status_from_errno(-EAGAIN), 503);
        assert_int_equal(http_status_from_errno(-ESTALE), 412);
        assert_int_equal(http_status_from_errno(SYNTHETIC_ERRNO(E2BIG)), 413);
        assert_int_equal(http_status_from_errno(-EIO), 500);
}

static int reply_later(sd_event_source *s, uint64_t usec, void *u) {
        HttpRequest *req = F.waiting;
        F.waiting = NULL;
        assert_int_equal(http_reply_header(req, "X-Later", "yes"), 0);
        return http_reply(req, 202, "text/plain", "done", 4);
}

static void suspended_request_replied_from_the_loop(void **state) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *t = NULL;
        TestResponse r = {};
        char v[16];

        assert_int_equal(sd_event_add_time_relative(F.event, &t, CLOCK_MONOTONIC, 200 * USEC_PER_MSEC, 0, reply_later, NULL), 0);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/wait", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 202);
        assert_string_equal(r.body, "done");
        assert_string_equal(test_response_header(&r, "X-Later", v, sizeof(v)), "yes");
        assert_int_equal(F.closes, 0);
        assert_int_equal(http_server_suspended(F.server), 0);
        test_response_done(&r);
}

static void client_hangup_while_suspended_calls_on_close(void **state) {
        int fd = test_tcp_connect(F.port);
        const char *req = "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n";
        TestResponse r = {};

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.waiting != NULL, 2 * USEC_PER_SEC));
        assert_int_equal(http_server_suspended(F.server), 1);
        close(fd);
        assert_true(RUN_LOOP_UNTIL(F.event, F.closes == 1, 2 * USEC_PER_SEC));
        assert_null(F.waiting);
        assert_int_equal(http_server_suspended(F.server), 0);
        /* Still serving. */
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        test_response_done(&r);
}

static void server_free_releases_suspended_requests(void **state) {
        int fd = test_tcp_connect(F.port);
        const char *req = "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n";

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.waiting != NULL, 2 * USEC_PER_SEC));
        F.server = http_server_free(F.server);
        assert_int_equal(F.closes, 1);
        close(fd);
}

static void stream_sends_headers_at_once_then_chunks(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        HttpRequest *s;

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "first\n", 2 * USEC_PER_SEC), 1);
        assert_non_null(strstr(b.data, "HTTP/1.1 200"));
        assert_non_null(strstr(b.data, "Transfer-Encoding: chunked"));
        /* Nothing more until we write. */
        test_loop_for(F.event, 100 * USEC_PER_MSEC);
        assert_null(strstr(b.data, "second"));
        s = F.waiting;
        assert_non_null(s);
        assert_int_equal(http_stream_write(s, "second\n", 7), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "second\n", 2 * USEC_PER_SEC), 1);
        assert_int_equal(http_stream_end(s), 0);
        F.waiting = NULL;
        assert_int_equal(test_recv_until(F.event, fd, &b, "0\r\n\r\n", 2 * USEC_PER_SEC), 1);
        assert_int_equal(F.closes, 0);
}

static uint32_t data_segments_in(int fd) {
        struct tcp_info ti = {};
        socklen_t l = sizeof(ti);

        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l), 0);
        return ti.tcpi_data_segs_in;
}

/* A long poll answered from the loop: its last chunk and the terminating chunk arrive in one TCP
 * segment (libmicrohttpd sends them separately; the server corks the socket around them), and
 * the keep-alive connection serves the next request. */
static void stream_end_arrives_in_one_segment(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", *next = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        uint32_t before;

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "first\n", 2 * USEC_PER_SEC), 1);
        before = data_segments_in(fd);
        assert_int_equal(http_stream_write(F.waiting, "last\n", 5), 0);
        assert_int_equal(http_stream_end(F.waiting), 0);
        F.waiting = NULL;
        assert_int_equal(test_recv_until(F.event, fd, &b, "last\n\r\n0\r\n\r\n", 2 * USEC_PER_SEC), 1);
        assert_int_equal(data_segments_in(fd) - before, 1);

        assert_int_equal(test_send_all(F.event, fd, next, strlen(next), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "\"world\"", 2 * USEC_PER_SEC), 1);
}

static void stream_client_disconnect_calls_on_close(void **state) {
        int fd = test_tcp_connect(F.port);
        const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "first\n", 2 * USEC_PER_SEC), 1);
        close(fd);
        assert_true(RUN_LOOP_UNTIL(F.event, F.closes == 1, 2 * USEC_PER_SEC));
        assert_int_equal(http_server_suspended(F.server), 0);
}

static void stream_buffer_is_bounded(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        static char block[64 * 1024];
        int r = 0;

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "first\n", 2 * USEC_PER_SEC), 1);
        /* The client never reads: the kernel buffers fill, then our 1 MiB limit refuses. */
        for (int i = 0; i < 200 && r == 0; i++) {
                r = http_stream_write(F.waiting, block, sizeof(block));
                test_loop_for(F.event, 5 * USEC_PER_MSEC);
        }
        assert_int_equal(r, -ENOBUFS);
        assert_int_equal(http_stream_end(F.waiting), 0);
        F.waiting = NULL;
}

static void slowloris_headers_get_408_while_others_are_served(void **state) {
        _cleanup_close_ int slow = test_tcp_connect(F.port);
        const char *partial = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        TestResponse r = {};
        int got = 0;

        assert_int_equal(test_send_all(F.event, slow, partial, strlen(partial), USEC_PER_SEC), 0);
        /* One byte every 50 ms keeps MHD's idle timer happy, but not our header deadline. */
        for (int i = 0; i < 30 && got == 0; i++) {
                (void) !send(slow, "a", 1, MSG_NOSIGNAL);
                got = test_recv_until(F.event, slow, &b, "\r\n\r\n", 50 * USEC_PER_MSEC) == 1;
                if (i == 2) {
                        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
                        assert_int_equal(r.status, 200);
                        test_response_done(&r);
                }
        }
        assert_true(got);
        assert_non_null(strstr(b.data, "HTTP/1.1 408 Request Timeout"));
        assert_int_equal(test_recv_until(F.event, slow, &b, "not received in time\"}}", USEC_PER_SEC), 1);
        /* And the connection is closed. */
        assert_int_equal(test_recv_until(F.event, slow, &b, NULL, USEC_PER_SEC), 0);
}

static void slow_body_gets_408(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *head = "PUT /v2/keys/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nvalue=";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);

        assert_int_equal(test_send_all(F.event, fd, head, strlen(head), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, "body not received in time", 3 * USEC_PER_SEC), 1);
        assert_non_null(strstr(b.data, "408"));
}

static void idle_keepalive_connection_closed(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
        TestResponse r = {};
        _cleanup_(buf_done) Buf b = BUF_INIT(0);

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_response(F.event, fd, &r, USEC_PER_SEC), 0);
        assert_int_equal(r.status, 200);
        assert_false(r.closed);
        test_response_done(&r);
        /* A second request on the same connection works, then idleness closes it without 408. */
        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_response(F.event, fd, &r, USEC_PER_SEC), 0);
        assert_int_equal(r.status, 200);
        test_response_done(&r);
        assert_int_equal(test_recv_until(F.event, fd, &b, NULL, 3 * USEC_PER_SEC), 0);
        assert_int_equal(b.len, 0);
}

/* Past the limit a new connection gets an immediate 503 (so a client can try another endpoint);
 * once a slot frees, connections are served again. */
static void connection_limit_refuses_extra_connections(void **state) {
        int fds[4];
        TestResponse r = {};

        for (int i = 0; i < 4; i++) {
                fds[i] = test_tcp_connect(F.port);
                assert_true(fds[i] >= 0);
        }
        test_loop_for(F.event, 100 * USEC_PER_MSEC);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 503);
        json_error_is(&r, 503, "too many connections");
        assert_true(r.closed);
        test_response_done(&r);
        close(fds[0]);
        test_loop_for(F.event, 100 * USEC_PER_MSEC);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        test_response_done(&r);
        for (int i = 1; i < 4; i++)
                close(fds[i]);
}

/* A client that half-closes after its request gets the response and then the connection closed,
 * not held until the (60 s) idle timeout. */
static void half_closed_client_connection_is_closed_after_reply(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(F.port);
        const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);

        assert_int_equal(test_send_all(F.event, fd, req, strlen(req), USEC_PER_SEC), 0);
        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        assert_int_equal(test_recv_until(F.event, fd, &b, NULL, 3 * USEC_PER_SEC), 0);
        assert_non_null(strstr(b.data, "HTTP/1.1 200"));
        assert_non_null(strstr(b.data, "{\"hello\":\"world\"}"));
}

static void metrics_and_health_helpers(void **state) {
        TestResponse r = {};
        char v[128];

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/hello", NULL, NULL, &r), 0);
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/nope", NULL, NULL, &r), 0);
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "BREW", "/hello", NULL, NULL, &r), 0);
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/metrics", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(test_response_header(&r, "Content-Type", v, sizeof(v)), "version=0.0.4"));
        assert_non_null(strstr(r.body, "http_requests_total{code=\"200\",method=\"GET\"} 1\n"));
        assert_non_null(strstr(r.body, "http_requests_total{code=\"404\",method=\"GET\"} 1\n"));
        assert_non_null(strstr(r.body, "http_requests_total{code=\"405\",method=\"other\"} 1\n"));
        assert_non_null(strstr(r.body, "http_request_duration_seconds_count 3\n"));
        assert_non_null(strstr(r.body, "http_connections 1\n"));
        test_response_done(&r);

        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/health", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"health\":\"true\"}");
        test_response_done(&r);
        assert_int_equal(test_http_simple(F.event, F.port, "GET", "/health?sick=no+quorum", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 503);
        assert_string_equal(r.body, "{\"health\":\"false\",\"reason\":\"no quorum\"}");
        test_response_done(&r);
}

static void listen_addresses_validated(void **state) {
        char addr[64];

        assert_int_equal(http_server_listen(F.server, "nonsense"), -EINVAL);
        assert_int_equal(http_server_listen(F.server, "127.0.0.1:99999"), -EINVAL);
        assert_int_equal(http_server_listen(F.server, "[::1"), -EINVAL);
        (void) snprintf(addr, sizeof(addr), "127.0.0.1:%d", F.port);
        assert_int_equal(http_server_listen(F.server, addr), -EADDRINUSE);
        assert_int_equal(http_server_listen(F.server, "http://127.0.0.1:0/"), 0);
        assert_true(http_server_port(F.server, 1) > 0);
        assert_int_equal(http_server_port(F.server, 7), -ENOENT);
}

static void json_depth_counts_outside_strings(void **state) {
        assert_int_equal(json_text_depth("{}", 2), 1);
        assert_int_equal(json_text_depth("[{\"a\":[1]}]", 11), 3);
        assert_int_equal(json_text_depth("\"[[[\"", 5), 0);
        assert_int_equal(json_text_depth("\"\\\"[[\"", 6), 0);
        assert_int_equal(json_text_depth("]]]{", 4), 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define TF(f) cmocka_unit_test_setup_teardown(f, setup_fast_timeouts, teardown)
TEST_MAIN(T(routes_match_exact_prefix_and_method),
          T(params_form_body_wins_over_query),
          T(path_escapes_decode_and_bad_ones_are_reported),
          T(valueless_query_args_and_raw_uri),
          T(announced_oversized_body_refused_before_it_is_sent),
          T(chunked_oversized_body_refused),
          T(bad_and_too_deep_json_get_400),
          T(garbage_and_oversized_headers_get_4xx),
          T(invalid_utf8_in_path_gets_json_404),
          T(handler_errors_map_to_status),
          T(suspended_request_replied_from_the_loop),
          T(client_hangup_while_suspended_calls_on_close),
          T(server_free_releases_suspended_requests),
          T(stream_sends_headers_at_once_then_chunks),
          T(stream_end_arrives_in_one_segment),
          T(stream_client_disconnect_calls_on_close),
          T(stream_buffer_is_bounded),
          TF(slowloris_headers_get_408_while_others_are_served),
          TF(slow_body_gets_408),
          TF(idle_keepalive_connection_closed),
          cmocka_unit_test_setup_teardown(connection_limit_refuses_extra_connections, setup_limited, teardown),
          T(half_closed_client_connection_is_closed_after_reply),
          T(metrics_and_health_helpers),
          T(listen_addresses_validated),
          cmocka_unit_test(json_depth_counts_outside_strings))
