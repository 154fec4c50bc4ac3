/* SPDX-License-Identifier: MIT */
/* Rendering: Go's JSON escaping, RFC 3339 times, ttl rounding, error bodies and statistics. */
#include "kv-test-util.h"

static void test_escaping(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;

        assert_int_equal(kv_store_new(&s), 0);
        assert_string_equal(PUTV(s, "/e", "<a&b>\"\\\n\t\r\x01\x7f\xe2\x80\xa8\xff\xc3\xa9\xed\xa0\x80"),
                            "{\"action\":\"set\",\"node\":{\"key\":\"/e\",\"value\":\"\\u003ca\\u0026b\\u003e\\\"\\\\\\n\\t\\r\\u0001\x7f\\u2028\\ufffd\xc3\xa9"
                            "\\ufffd\\ufffd\\ufffd\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
}

static void test_times(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;

        assert_int_equal(kv_store_new(&s), 0);
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t", .expiration_ns = T0 + 1500000000 }, NULL, NULL),
                               "\"expiration\":\"2023-11-14T22:13:21.5Z\",\"ttl\":2,"));
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t", .expiration_ns = T0 + 123456789 }, NULL, NULL),
                               "\"expiration\":\"2023-11-14T22:13:20.123456789Z\",\"ttl\":1,"));
        /* an update may set a time before 2000 (a wrapped ttl): negative, saturated ttl */
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t", .prev_exist = KV_PREV_EXIST_TRUE,
                                                              .expiration_ns = INT64_MIN + 5 }, NULL, NULL),
                               "\"expiration\":\"1677-09-21T00:12:43.145224197Z\",\"ttl\":-9223372036,"));
}

static void test_error_and_stats(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        Buf b = BUF_INIT(0);

        assert_int_equal(kv_store_render_error(202, "invalid value for \"ttl\"", 0, &b), 0);
        assert_string_equal(b.data, "{\"errorCode\":202,\"message\":\"The given TTL in POST form is not a number\",\"cause\":\"invalid value for \\\"ttl\\\"\",\"index\":0}\n");
        assert_int_equal(kv_error_http_status(100), 404);
        assert_int_equal(kv_error_http_status(105), 412);
        assert_int_equal(kv_error_http_status(108), 403);
        assert_int_equal(kv_error_http_status(401), 400);
        assert_int_equal(kv_error_http_status(300), 500);
        buf_clear(&b);
        assert_int_equal(kv_store_new(&s), 0);
        PUTV(s, "/a", "1");
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/nope" }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/", .prev_exist = KV_PREV_EXIST_TRUE }, NULL, NULL);
        assert_int_equal(kv_store_render_stats(s, &b), 0);
        assert_string_equal(b.data, "{\"getsSuccess\":0,\"getsFail\":1,\"setsSuccess\":1,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,"
                                    "\"updateSuccess\":1,\"updateFail\":0,\"createSuccess\":0,\"createFail\":0,\"compareAndSwapSuccess\":0,"
                                    "\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}");
        buf_done(&b);
}

static void test_no_value(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        KvStoreResult res = KV_STORE_RESULT_NULL;
        Buf b = BUF_INIT(0);

        assert_int_equal(kv_store_new(&s), 0);
        assert_int_equal(kv_store_apply(s, &(KvCommand) { .method = KV_METHOD_PUT, .path = "/a" }, &res), 0);
        assert_int_equal(kv_event_render_ex(res.event, T0, true, &b), 0);
        assert_string_equal(b.data, "{\"action\":\"set\"}\n");
        assert_int_equal(kv_event_http_status(res.event), 201);
        kv_store_result_done(&res);
        buf_done(&b);
}

TEST_MAIN(cmocka_unit_test(test_escaping), cmocka_unit_test(test_times), cmocka_unit_test(test_error_and_stats),
          cmocka_unit_test(test_no_value));
