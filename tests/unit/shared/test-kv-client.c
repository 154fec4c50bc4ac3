/* SPDX-License-Identifier: MIT */
/* The KV client's wire encoding, response parsing and handling of faults real etcd does not
 * produce (garbage bodies, HTML errors), against a scripted peer built on our HTTP server. The
 * behaviour against real etcd is covered by tests/integration/test-kv-client.c. */
#include <stdio.h>

#include "shared/http-server.h"
#include "shared/kv-client.h"
#include "test-util.h"

static struct {
        sd_event *event;
        HttpServer *server;
        int port;
        char url[64];
        char *eps[3];
        /* what the peer saw */
        char method[16], path[256], query[512], body[512];
        unsigned requests;
        /* what it answers */
        unsigned status;
        const char *reply;
        const char *etcd_index;
} F;

static int h_any(HttpRequest *req, void *u) {
        size_t len;
        const char *b = http_request_body(req, &len);
        const char *wi = http_request_query(req, "waitIndex");

        F.requests++;
        (void) snprintf(F.method, sizeof(F.method), "%s", http_request_method(req));
        (void) snprintf(F.path, sizeof(F.path), "%s", http_request_path(req));
        (void) snprintf(F.body, sizeof(F.body), "%.*s", (int) len, b);
        (void) snprintf(F.query, sizeof(F.query), "wait=%s waitIndex=%s recursive=%s quorum=%s sorted=%s",
                        strna(http_request_query(req, "wait")), strna(wi), strna(http_request_query(req, "recursive")),
                        strna(http_request_query(req, "quorum")), strna(http_request_query(req, "sorted")));
        if (F.etcd_index)
                (void) http_reply_header(req, "X-Etcd-Index", F.etcd_index);
        return http_reply(req, F.status, "application/json", F.reply, strlen(F.reply));
}

static const HttpRoute routes[] = { { NULL, "/v2/keys", h_any, HTTP_ROUTE_PREFIX } };

static int setup(void **state) {
        memset(&F, 0, sizeof(F));
        assert_int_equal(sd_event_new(&F.event), 0);
        assert_int_equal(http_server_new(&F.server, F.event, NULL, routes, 1, NULL), 0);
        assert_int_equal(http_server_listen(F.server, "127.0.0.1:0"), 0);
        F.port = http_server_port(F.server, 0);
        (void) snprintf(F.url, sizeof(F.url), "http://127.0.0.1:%d/", F.port);
        F.eps[0] = F.url;
        F.status = 200;
        F.reply = "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"value\":\"v\",\"modifiedIndex\":7,\"createdIndex\":7}}\n";
        return 0;
}

static int teardown(void **state) {
        F.server = http_server_free(F.server);
        F.event = sd_event_unref(F.event);
        return 0;
}

static KvClient *client(void) {
        KvClient *c = NULL;
        KvClientConfig cfg = { .endpoints = F.eps, .total_timeout_usec = 500 * USEC_PER_MSEC,
                               .backoff_min_usec = 10 * USEC_PER_MSEC, .backoff_max_usec = 50 * USEC_PER_MSEC,
                               .watch_poll_usec = 200 * USEC_PER_MSEC };
        assert_int_equal(kv_client_new(&c, F.event, &cfg), 0);
        return c;
}

typedef struct Res {
        bool done;
        int error, code;
        char message[256];
        uint64_t index;
        char value[64];
} Res;

static void capture(const KvResult *r, void *u) {
        Res *x = u;
        x->done = true;
        x->error = r->error;
        x->code = r->error_code;
        x->index = r->etcd_index;
        (void) snprintf(x->message, sizeof(x->message), "%s", strna(r->message));
        (void) snprintf(x->value, sizeof(x->value), "%s", r->node ? strna(r->node->value) : "-");
}

#define WAIT(x) assert_true(RUN_LOOP_UNTIL(F.event, (x).done, 5 * USEC_PER_SEC))

static void requests_encode_like_etcd_client(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Res r = {};

        assert_int_equal(kv_cas(c, "a b/c", "x&y=z", 12, "old val", 30, capture, &r), 0);
        WAIT(r);
        assert_string_equal(F.method, "PUT");
        assert_string_equal(F.path, "/v2/keys/a b/c"); /* escaped on the wire, decoded by the server */
        assert_string_equal(F.body, "value=x%26y%3Dz&ttl=30&prevIndex=12&prevValue=old%20val");

        r = (Res) {};
        assert_int_equal(kv_get(c, "/d", KV_RECURSIVE | KV_SORTED | KV_QUORUM, capture, &r), 0);
        WAIT(r);
        assert_string_equal(F.method, "GET");
        assert_string_equal(F.query, "wait=n/a waitIndex=n/a recursive=true quorum=true sorted=true");
        assert_string_equal(F.body, "");

        r = (Res) {};
        assert_int_equal(kv_cad(c, "/d", 5, NULL, capture, &r), 0);
        WAIT(r);
        assert_string_equal(F.method, "DELETE");
        assert_string_equal(F.body, "");

        KvRequest q = KV_REQUEST_INIT(KV_PUT, "/t");
        q.ttl_clear = true;
        q.prev_exist = 1;
        q.value = "";
        r = (Res) {};
        assert_int_equal(kv_request(c, &q, capture, &r, NULL), 0);
        WAIT(r);
        assert_string_equal(F.body, "value=&ttl=&prevExist=true");

        r = (Res) {};
        assert_int_equal(kv_mkdir(c, "/dir", KV_TTL_NONE, capture, &r), 0);
        WAIT(r);
        assert_string_equal(F.body, "dir=true&prevExist=false");
        r = (Res) {};
        assert_int_equal(kv_post(c, "/queue", "job", KV_TTL_NONE, capture, &r), 0);
        WAIT(r);
        assert_string_equal(F.method, "POST");
        assert_string_equal(F.body, "value=job");
}

static void invalid_requests_refused_up_front(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        char *longkey = malloc(KV_MAX_KEY_LENGTH + 2);
        KvRequest q = KV_REQUEST_INIT(KV_GET, NULL);

        memset(longkey, 'k', KV_MAX_KEY_LENGTH + 1);
        longkey[KV_MAX_KEY_LENGTH + 1] = 0;
        assert_int_equal(kv_get(c, longkey, 0, capture, NULL), -EINVAL);
        assert_int_equal(kv_request(c, &q, capture, NULL, NULL), -EINVAL);
        q.key = "/a";
        q.method = 42;
        assert_int_equal(kv_request(c, &q, capture, NULL, NULL), -EINVAL);
        assert_int_equal(kv_cad(c, "/a", 0, NULL, capture, NULL), -EINVAL);
        assert_int_equal(kv_watch_new(c, longkey, false, 0, NULL, NULL, NULL), -EINVAL);
        free(longkey);

        KvClient *bad = NULL;
        char *none[] = { NULL }, *ftp[] = { (char *) "ftp://x", NULL };
        KvClientConfig cfg = { .endpoints = none };
        assert_int_equal(kv_client_new(&bad, F.event, &cfg), -EINVAL);
        cfg.endpoints = ftp;
        assert_int_equal(kv_client_new(&bad, F.event, &cfg), -EINVAL);
        assert_int_equal(kv_client_new(&bad, F.event, NULL), -EINVAL);
}

static void etcd_error_bodies_map_to_errno(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Res r = {};

        F.status = 412;
        F.reply = "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[a != b]\",\"index\":9}\n";
        assert_int_equal(kv_cas(c, "/a", "x", 0, "a", KV_TTL_NONE, capture, &r), 0);
        WAIT(r);
        assert_int_equal(r.error, -ESTALE);
        assert_int_equal(r.code, 101);
        assert_int_equal(r.index, 9);
        assert_string_equal(r.message, "Compare failed");
        assert_int_equal(kv_errno_from_code(100), -ENOENT);
        assert_int_equal(kv_errno_from_code(209), -EINVAL);
        assert_int_equal(kv_errno_from_code(401), -ERANGE);
        assert_int_equal(kv_errno_from_code(999), -EIO);
}

static void garbage_success_body_is_ebadmsg(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Res r = {};

        F.reply = "<html>proxy says hi</html>";
        assert_int_equal(kv_set(c, "/a", "x", KV_TTL_NONE, capture, &r), 0);
        WAIT(r);
        assert_int_equal(r.error, -EBADMSG);
        assert_int_equal(F.requests, 1); /* a write is not repeated */
}

static void server_errors_retry_reads_until_deadline(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Res r = {};

        F.status = 500;
        F.reply = "<html>internal</html>";
        assert_int_equal(kv_get(c, "/a", 0, capture, &r), 0);
        WAIT(r);
        assert_int_equal(r.error, -EIO);
        assert_true(F.requests >= 3);
        assert_non_null(strstr(r.message, "unexpected HTTP status 500"));

        /* A write is answered once: it may have been applied. */
        r = (Res) {};
        F.requests = 0;
        assert_int_equal(kv_set(c, "/a", "x", KV_TTL_NONE, capture, &r), 0);
        WAIT(r);
        assert_int_equal(F.requests, 1);
        assert_int_equal(r.error, -EIO);
}

static void overloaded_server_is_retried_for_writes(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Res r = {};

        /* 503 without an etcd body: the server did not process it (overload, shutting down). */
        F.status = 503;
        F.reply = "{\"error\":{\"code\":503,\"message\":\"too many connections\"}}";
        assert_int_equal(kv_set(c, "/a", "x", KV_TTL_NONE, capture, &r), 0);
        WAIT(r);
        assert_int_equal(r.error, -EAGAIN);
        assert_true(F.requests >= 2);
}

static void malformed_responses_rejected_by_parser(void **state) {
        static const char *bad[] = {
                "",
                "[]",
                "{}",
                "{\"action\":1}",
                "{\"action\":\"get\",\"node\":[]}",
                "{\"action\":\"get\",\"node\":{\"key\":5}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":-1}}",
                "{\"action\":\"get\",\"node\":{\"dir\":\"yes\"}}",
                "{\"action\":\"get\",\"node\":{\"nodes\":{}}}",
                "{\"action\":\"get\",\"node\":{\"ttl\":\"5\"}}",
                "{\"action\":\"get\",\"node\":{\"nodes\":[1]}}",
                "{\"action\":\"get\"",
        };
        char *action = NULL;
        KvNode *node = NULL;
        Buf deep = BUF_INIT(0);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(kv_parse_response(bad[i], strlen(bad[i]), &action, &node, NULL), -EBADMSG);
        assert_null(action);
        assert_null(node);

        /* Nesting past the node depth limit. */
        assert_int_equal(buf_append_str(&deep, "{\"action\":\"get\",\"node\":"), 0);
        for (int i = 0; i < 600; i++)
                assert_int_equal(buf_append_str(&deep, "{\"nodes\":["), 0);
        for (int i = 0; i < 600; i++)
                assert_int_equal(buf_append_str(&deep, "]}"), 0);
        assert_int_equal(buf_append_str(&deep, "}"), 0);
        assert_int_equal(kv_parse_response(deep.data, deep.len, &action, &node, NULL), -EBADMSG);
        buf_done(&deep);
}

static void well_formed_response_parsed_fully(void **state) {
        const char *j = "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/d\",\"dir\":true,\"expiration\":\"2026-01-01T00:00:00Z\","
                        "\"ttl\":5,\"nodes\":[{\"key\":\"/d/a\",\"value\":\"1\",\"modifiedIndex\":3,\"createdIndex\":2}],"
                        "\"modifiedIndex\":4,\"createdIndex\":1},\"prevNode\":{\"key\":\"/d\",\"dir\":true}}";
        _cleanup_free_ char *action = NULL;
        _cleanup_(kv_node_freep) KvNode *node = NULL, *prev = NULL;

        assert_int_equal(kv_parse_response(j, strlen(j), &action, &node, &prev), 0);
        assert_string_equal(action, "compareAndSwap");
        assert_true(node->dir);
        assert_int_equal(node->ttl, 5);
        assert_string_equal(node->expiration, "2026-01-01T00:00:00Z");
        assert_int_equal(node->n_nodes, 1);
        assert_string_equal(node->nodes[0]->value, "1");
        assert_int_equal(node->nodes[0]->modified_index, 3);
        assert_int_equal(node->nodes[0]->created_index, 2);
        assert_null(node->value);
        assert_true(prev->dir);
}

typedef struct Seen {
        unsigned snapshots, changes, errors;
        uint64_t index;
} Seen;

static void on_watch(KvWatch *w, const KvWatchUpdate *u, void *userdata) {
        Seen *s = userdata;
        s->snapshots += u->type == KV_WATCH_SNAPSHOT;
        s->changes += u->type == KV_WATCH_CHANGE;
        s->errors += u->type == KV_WATCH_ERROR;
        s->index = u->index;
}

/* An empty long-poll answer proves there was nothing up to the index the poll started at: the
 * next poll continues after it. */
static void empty_poll_advances_wait_index(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Seen s = {};
        KvWatch *w;

        F.etcd_index = "500";
        F.reply = "";
        assert_int_equal(kv_watch_new(c, "/q", true, 10, on_watch, &s, &w), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, F.requests >= 2, 5 * USEC_PER_SEC));
        assert_string_equal(F.query, "wait=true waitIndex=501 recursive=true quorum=n/a sorted=n/a");
        assert_int_equal(s.changes + s.snapshots + s.errors, 0);
        kv_watch_free(w);
}

/* Garbage from the server is an error the watch reports and retries, never a crash or a
 * silently skipped event. */
static void garbage_event_reported_and_retried(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Seen s = {};
        KvWatch *w;

        F.reply = "{not json";
        assert_int_equal(kv_watch_new(c, "/q", false, 10, on_watch, &s, &w), 0);
        assert_true(RUN_LOOP_UNTIL(F.event, s.errors >= 2, 5 * USEC_PER_SEC));
        assert_string_equal(F.query, "wait=true waitIndex=11 recursive=n/a quorum=n/a sorted=n/a");
        assert_int_equal(s.changes, 0);
        kv_watch_free(w);
}

static void cancelled_request_has_no_callback(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client();
        Res r = {};
        KvOp *op;
        KvRequest q = KV_REQUEST_INIT(KV_GET, "/a");

        assert_int_equal(kv_request(c, &q, capture, &r, &op), 0);
        kv_op_cancel(op);
        test_loop_for(F.event, 100 * USEC_PER_MSEC);
        assert_false(r.done);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(requests_encode_like_etcd_client),
          T(invalid_requests_refused_up_front),
          T(etcd_error_bodies_map_to_errno),
          T(garbage_success_body_is_ebadmsg),
          T(server_errors_retry_reads_until_deadline),
          T(overloaded_server_is_retried_for_writes),
          cmocka_unit_test(malformed_responses_rejected_by_parser),
          cmocka_unit_test(well_formed_response_parsed_fully),
          T(empty_poll_advances_wait_index),
          T(garbage_event_reported_and_retried),
          T(cancelled_request_has_no_callback))
