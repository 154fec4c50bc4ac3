/* SPDX-License-Identifier: MIT */
/* Request parsing: etcd's check order, error codes and causes, the dispatch between commands,
 * reads and watches, and ttl arithmetic. */
#include <stdio.h>

#include "kv-request.h"
#include "kv-store.h"
#include "test-util.h"

typedef struct Params {
        const char *kv[16];   /* name, value pairs */
} Params;

static const char *lookup(void *userdata, const char *name) {
        Params *p = userdata;
        for (size_t i = 0; p->kv[i]; i += 2)
                if (streq(p->kv[i], name))
                        return p->kv[i + 1];
        return NULL;
}

static KvRequest parse(const char *method, const char *path, Params p) {
        KvRequest r;
        KvRequestInput in = { .method = method, .path = path, .param = lookup, .userdata = &p, .now_ns = 1000 };
        assert_int_equal(kv_request_parse(&in, &r), 0);
        return r;
}

static void expect_error(const char *method, const char *path, Params p, int code, const char *cause) {
        KvRequest r = parse(method, path, p);
        assert_int_equal(r.kind, KV_REQUEST_ERROR);
        assert_int_equal(r.error_code, code);
        assert_string_equal(r.error_cause, cause);
        kv_request_done(&r);
}

static void test_errors(void **state) {
        expect_error("GET", "/v2/keys/a", (Params) { { "prevIndex", "x" } }, 203, "invalid value for \"prevIndex\"");
        expect_error("GET", "/v2/keys/a", (Params) { { "prevIndex", "" } }, 203, "invalid value for \"prevIndex\"");
        expect_error("GET", "/v2/keys/a", (Params) { { "waitIndex", "-1" } }, 203, "invalid value for \"waitIndex\"");
        expect_error("GET", "/v2/keys/a", (Params) { { "recursive", "yes" } }, 209, "invalid value for \"recursive\"");
        expect_error("PUT", "/v2/keys/a", (Params) { { "wait", "true" } }, 209, "\"wait\" can only be used with GET requests");
        expect_error("PUT", "/v2/keys/a", (Params) { { "prevValue", "" } }, 201, "\"prevValue\" cannot be empty");
        expect_error("PUT", "/v2/keys/a", (Params) { { "ttl", "1.5" } }, 202, "invalid value for \"ttl\"");
        expect_error("PUT", "/v2/keys/a", (Params) { { "prevExist", "maybe" } }, 209, "invalid value for prevExist");
        expect_error("PUT", "/v2/keys/a", (Params) { { "refresh", "true", "value", "v", "ttl", "5" } }, 211, "A value was provided on a refresh");
        expect_error("PUT", "/v2/keys/a", (Params) { { "refresh", "true", "ttl", "" } }, 212, "No TTL value set");
        /* the first failing check wins: prevIndex before ttl */
        expect_error("PUT", "/v2/keys/a", (Params) { { "ttl", "x", "prevIndex", "y" } }, 203, "invalid value for \"prevIndex\"");
        {
                KvRequest r;
                Params p = {};
                KvRequestInput in = { .method = "PUT", .path = "/v2/keys/a", .bad_escape = "%zz", .param = lookup, .userdata = &p };
                assert_int_equal(kv_request_parse(&in, &r), 0);
                assert_int_equal(r.error_code, 210);
                assert_string_equal(r.error_cause, "invalid URL escape \"%zz\"");
                kv_request_done(&r);
                in.bad_escape = "%\xff";
                assert_int_equal(kv_request_parse(&in, &r), 0);
                assert_string_equal(r.error_cause, "invalid URL escape \"%\\xff\"");
                kv_request_done(&r);
        }
}

static void test_kinds(void **state) {
        KvRequest r;

        r = parse("GET", "/v2/keys/a//b", (Params) {});
        assert_int_equal(r.kind, KV_REQUEST_REDIRECT);
        assert_string_equal(r.location, "/v2/keys/a/b");
        kv_request_done(&r);
        r = parse("PATCH", "/v2/keys/a", (Params) {});
        assert_int_equal(r.kind, KV_REQUEST_METHOD_NOT_ALLOWED);
        kv_request_done(&r);
        r = parse("GET", "/v2/keysx", (Params) {});
        assert_int_equal(r.kind, KV_REQUEST_NOT_FOUND);
        kv_request_done(&r);
        r = parse("GET", "/v2/keys/a/", (Params) { { "recursive", "true", "sorted", "1" } });
        assert_int_equal(r.kind, KV_REQUEST_READ);
        assert_string_equal(r.read.path, "/a");
        assert_true(r.read.recursive && r.read.sorted);
        kv_request_done(&r);
        r = parse("GET", "/v2/keys/a", (Params) { { "wait", "true", "waitIndex", "7", "stream", "true" } });
        assert_int_equal(r.kind, KV_REQUEST_WATCH);
        assert_true(r.read.wait_index == 7 && r.read.stream);
        kv_request_done(&r);
        r = parse("GET", "/v2/keys/a", (Params) { { "wait", "true", "quorum", "true" } });
        assert_int_equal(r.kind, KV_REQUEST_COMMAND);
        assert_int_equal(r.command.method, KV_METHOD_QGET);
        kv_request_done(&r);
        r = parse("PUT", "/v2/keys", (Params) { { "value", "v", "prevIndex", "0", "prevExist", "False", "ttl", "18446744073709551615" } });
        assert_int_equal(r.kind, KV_REQUEST_COMMAND);
        assert_string_equal(r.command.path, "/");
        assert_string_equal(r.command.value, "v");
        assert_true(r.command.prev_index == 0 && r.command.prev_exist == KV_PREV_EXIST_FALSE);
        /* Go's wrapping arithmetic: (2^64-1) s == -1 s */
        assert_true(r.command.expiration_ns == 1000 - 1000000000);
        kv_request_done(&r);
        r = parse("DELETE", "/v2/keys/a", (Params) { { "noValueOnSuccess", "true" } });
        assert_int_equal(r.command.method, KV_METHOD_DELETE);
        assert_true(r.no_value_on_success);
        kv_request_done(&r);
        r = parse("OPTIONS", "/v2/keys//x", (Params) {});
        assert_int_equal(r.kind, KV_REQUEST_OPTIONS);
        kv_request_done(&r);
}

TEST_MAIN(cmocka_unit_test(test_errors), cmocka_unit_test(test_kinds));
