/* SPDX-License-Identifier: MIT */
/* The HTTP client against our HTTP server over real loopback sockets, on one loop. */
#include <stdio.h>

#include "shared/http-client.h"
#include "shared/http-server.h"
#include "test-util.h"

typedef struct Result {
        bool done;
        int error;
        long status;
        char body[256];
        size_t len;
        char header[64];
        long headers_status;
        int chunks;
        char streamed[256];
} Result;

static struct {
        sd_event *event;
        HttpServer *server;
        HttpClient *client;
        int port;
        HttpRequest *waiting;
        int closes;
        char url[128];
} F;

static int h_echo(HttpRequest *req, void *u) {
        size_t len;
        const char *body = http_request_body(req, &len);
        char out[512];

        (void) snprintf(out, sizeof(out), "%s %s ct=%s x=%s%s body=%.*s", http_request_method(req), http_request_path(req),
                        strna(http_request_header(req, "Content-Type")), strna(http_request_header(req, "X-Test")),
                        http_request_header(req, "Expect") ? " expect" : "", (int) len > 40 ? 40 : (int) len, body);
        (void) http_reply_header(req, "X-Echo", "yes");
        return http_reply(req, 200, "text/plain", out, strlen(out));
}

static int h_missing(HttpRequest *req, void *u) {
        return http_reply_error(req, 404, "gone");
}

static void on_close(HttpRequest *req, void *u) {
        F.waiting = NULL;
        F.closes++;
}

static int h_hang(HttpRequest *req, void *u) {
        F.waiting = req;
        return http_request_suspend(req, on_close, NULL);
}

static int h_big(HttpRequest *req, void *u) {
        size_t n = 200000;
        char *b = malloc(n);
        memset(b, 'x', n);
        return http_reply_take(req, 200, "text/plain", b, n);
}

static int h_stream(HttpRequest *req, void *u) {
        int r = http_reply_stream(req, 200, "application/json", on_close, NULL);
        if (r >= 0)
                F.waiting = req;
        return r;
}

static const HttpRoute routes[] = {
        { NULL, "/echo", h_echo, HTTP_ROUTE_PREFIX },
        { "GET", "/missing", h_missing },
        { "GET", "/hang", h_hang },
        { "GET", "/big", h_big },
        { "GET", "/stream", h_stream },
};

static int setup(void **state) {
        memset(&F, 0, sizeof(F));
        assert_int_equal(sd_event_new(&F.event), 0);
        assert_int_equal(http_server_new(&F.server, F.event, NULL, routes, ELEMENTSOF(routes), NULL), 0);
        assert_int_equal(http_server_listen(F.server, "127.0.0.1:0"), 0);
        F.port = http_server_port(F.server, 0);
        assert_int_equal(http_client_new(&F.client, F.event), 0);
        return 0;
}

static int teardown(void **state) {
        F.client = http_client_free(F.client);
        F.server = http_server_free(F.server);
        F.event = sd_event_unref(F.event);
        return 0;
}

static const char *url(const char *path) {
        (void) snprintf(F.url, sizeof(F.url), "http://127.0.0.1:%d%s", F.port, path);
        return F.url;
}

static void on_done(HttpCall *call, int error, long status, const char *body, size_t len, void *userdata) {
        Result *r = userdata;
        const char *h = http_call_header(call, "X-Echo");

        r->done = true;
        r->error = error;
        r->status = status;
        r->len = len;
        (void) snprintf(r->body, sizeof(r->body), "%.*s", (int) MIN(len, sizeof(r->body) - 1), body);
        (void) snprintf(r->header, sizeof(r->header), "%s", strna(h));
}

static void on_headers(HttpCall *call, long status, void *userdata) {
        Result *r = userdata;
        r->headers_status = status;
}

static int on_data(HttpCall *call, const void *data, size_t len, void *userdata) {
        Result *r = userdata;
        r->chunks++;
        strncat(r->streamed, data, MIN(len, sizeof(r->streamed) - strlen(r->streamed) - 1));
        return 0;
}

static void get_collects_body_status_and_headers(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/echo/a?b=c"), .on_done = on_done, .on_headers = on_headers, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.headers_status, 200);
        assert_string_equal(r.body, "GET /echo/a ct=n/a x=n/a body=");
        assert_string_equal(r.header, "yes");
        assert_int_equal(http_client_active(F.client), 0);
}

static void put_sends_body_content_type_and_headers(void **state) {
        Result r = {};
        char *hdrs[] = { (char *) "X-Test: 42", NULL };
        HttpCallSpec s = { .method = "PUT", .url = url("/echo/k"), .body = "value=1", .body_len = 7,
                           .content_type = "application/x-www-form-urlencoded", .headers = hdrs,
                           .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, 0);
        assert_string_equal(r.body, "PUT /echo/k ct=application/x-www-form-urlencoded x=42 body=value=1");
}

static void large_request_body_sent_without_expect(void **state) {
        static char big[8000];
        Result r = {};
        HttpCallSpec s = { .method = "POST", .url = url("/echo"), .body = big, .body_len = sizeof(big) - 1,
                           .on_done = on_done, .userdata = &r };

        memset(big, 'z', sizeof(big) - 1);
        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.status, 200);
        /* curl would send "Expect: 100-continue" for bodies over 1 KiB and wait up to 1 s. */
        assert_null(strstr(r.body, "expect"));
        assert_non_null(strstr(r.body, "POST /echo ct=application/x-www-form-urlencoded x=n/a body=zzzz"));
}

static void http_error_status_is_not_a_transport_error(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/missing"), .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, 0);
        assert_int_equal(r.status, 404);
        assert_string_equal(r.body, "{\"error\":{\"code\":404,\"message\":\"gone\"}}");
}

static void refused_connection_is_econnrefused(void **state) {
        Result r = {};
        char u[64];
        HttpCallSpec s = { .url = u, .on_done = on_done, .userdata = &r };

        (void) snprintf(u, sizeof(u), "http://127.0.0.1:%d/", test_free_port());
        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, -ECONNREFUSED);
        assert_int_equal(r.status, 0);
}

static void unanswered_request_times_out(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/hang"), .timeout_usec = 300 * USEC_PER_MSEC, .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, -ETIMEDOUT);
        /* The server notices the client went away. */
        assert_true(RUN_LOOP_UNTIL(F.event, F.closes == 1, 2 * USEC_PER_SEC));
}

static void oversized_response_is_e2big(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/big"), .max_response_size = 100000, .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, -E2BIG);
}

static void streamed_body_arrives_chunk_by_chunk(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/stream"), .on_headers = on_headers, .on_data = on_data, .on_done = on_done,
                           .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.headers_status == 200, 5 * USEC_PER_SEC));
        assert_int_equal(r.chunks, 0);
        assert_non_null(F.waiting);
        assert_int_equal(http_stream_write(F.waiting, "one\n", 4), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.chunks == 1, 5 * USEC_PER_SEC));
        assert_string_equal(r.streamed, "one\n");
        assert_int_equal(http_stream_write(F.waiting, "two\n", 4), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.chunks == 2, 5 * USEC_PER_SEC));
        assert_int_equal(http_stream_end(F.waiting), 0);
        F.waiting = NULL;
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, 0);
        assert_string_equal(r.streamed, "one\ntwo\n");
        assert_int_equal(r.len, 0);
}

static int abort_on_data(HttpCall *call, const void *data, size_t len, void *userdata) {
        return -ECANCELED;
}

static void stream_callback_can_abort(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/stream"), .on_data = abort_on_data, .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.waiting != NULL, 5 * USEC_PER_SEC));
        assert_int_equal(http_stream_write(F.waiting, "x", 1), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.done, 5 * USEC_PER_SEC));
        assert_int_equal(r.error, -ECANCELED);
}

static HttpCall *self_call;
static int cancel_self(HttpCall *call, const void *data, size_t len, void *userdata) {
        Result *r = userdata;
        r->chunks++;
        http_call_cancel(call);
        return 0;
}

static void cancel_from_inside_a_callback(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/stream"), .on_data = cancel_self, .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, &self_call), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.waiting != NULL, 5 * USEC_PER_SEC));
        assert_int_equal(http_stream_write(F.waiting, "x", 1), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, r.chunks == 1 && F.closes == 1, 5 * USEC_PER_SEC));
        test_loop_for(F.event, 50 * USEC_PER_MSEC);
        assert_false(r.done); /* cancelled calls never call on_done */
        assert_int_equal(http_client_active(F.client), 0);
}

static void cancel_pending_call_has_no_callback(void **state) {
        Result r = {};
        HttpCall *call;
        HttpCallSpec s = { .url = url("/hang"), .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, &call), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.waiting != NULL, 5 * USEC_PER_SEC));
        http_call_cancel(call);
        assert_true(RUN_LOOP_UNTIL(F.event, F.closes == 1, 2 * USEC_PER_SEC));
        assert_false(r.done);
}

static void many_concurrent_calls_all_complete(void **state) {
        static Result rs[200];
        int done = 0;

        memset(rs, 0, sizeof(rs));
        for (int i = 0; i < 200; i++) {
                HttpCallSpec s = { .url = url("/echo/n"), .on_done = on_done, .userdata = &rs[i] };
                assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        }
        assert_int_equal(http_client_active(F.client), 200);
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 20 * USEC_PER_SEC; done < 200 && now_usec(CLOCK_MONOTONIC) < end;) {
                assert_true(sd_event_run(F.event, 50 * USEC_PER_MSEC) >= 0);
                done = 0;
                for (int i = 0; i < 200; i++)
                        done += rs[i].done && rs[i].status == 200;
        }
        assert_int_equal(done, 200);
}

static void invalid_urls_refused_up_front(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = "ftp://example/x", .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), -EINVAL);
        s.url = NULL;
        assert_int_equal(http_call_start(F.client, &s, NULL), -EINVAL);
        s.url = url("/echo");
        s.on_done = NULL;
        assert_int_equal(http_call_start(F.client, &s, NULL), -EINVAL);
}

static void free_with_calls_in_flight(void **state) {
        Result r = {};
        HttpCallSpec s = { .url = url("/hang"), .on_done = on_done, .userdata = &r };

        assert_int_equal(http_call_start(F.client, &s, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.waiting != NULL, 5 * USEC_PER_SEC));
        F.client = http_client_free(F.client);
        assert_false(r.done);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(get_collects_body_status_and_headers),
          T(put_sends_body_content_type_and_headers),
          T(large_request_body_sent_without_expect),
          T(http_error_status_is_not_a_transport_error),
          T(refused_connection_is_econnrefused),
          T(unanswered_request_times_out),
          T(oversized_response_is_e2big),
          T(streamed_body_arrives_chunk_by_chunk),
          T(stream_callback_can_abort),
          T(cancel_from_inside_a_callback),
          T(cancel_pending_call_has_no_callback),
          T(many_concurrent_calls_all_complete),
          T(invalid_urls_refused_up_front),
          T(free_with_calls_in_flight))
