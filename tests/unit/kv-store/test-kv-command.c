/* SPDX-License-Identifier: MIT */
/* The command codec: round trips of every field, strict rejection of malformed input. */
#include "kv-command.h"
#include "test-util.h"

static void test_round_trip(void **state) {
        KvCommand c = {
                .method = KV_METHOD_PUT, .path = "/a/b", .value = "v\xff", .has_value = true, .dir = true, .recursive = true,
                .sorted = true, .refresh = true, .prev_value = "pv", .has_prev_value = true, .prev_index = UINT64_MAX,
                .prev_exist = KV_PREV_EXIST_FALSE, .expiration_ns = INT64_MIN, .time_ns = -5,
        }, d;
        Buf b = BUF_INIT(0);

        assert_int_equal(kv_command_encode(&c, &b), 0);
        assert_int_equal(kv_command_decode(b.data, b.len, &d), 0);
        assert_int_equal(d.method, c.method);
        assert_string_equal(d.path, c.path);
        assert_string_equal(d.value, c.value);
        assert_string_equal(d.prev_value, c.prev_value);
        assert_true(d.has_value && d.has_prev_value && d.dir && d.recursive && d.sorted && d.refresh);
        assert_true(d.prev_index == UINT64_MAX && d.prev_exist == KV_PREV_EXIST_FALSE);
        assert_true(d.expiration_ns == INT64_MIN && d.time_ns == -5);
        /* every truncation fails */
        for (size_t n = 0; n < b.len; n++)
                assert_int_equal(kv_command_decode(b.data, n, &d), -EBADMSG);
        buf_clear(&b);
        c = (KvCommand) { .method = KV_METHOD_SYNC, .time_ns = 123 };
        assert_int_equal(kv_command_encode(&c, &b), 0);
        assert_int_equal(kv_command_decode(b.data, b.len, &d), 0);
        assert_int_equal(d.method, KV_METHOD_SYNC);
        assert_true(d.time_ns == 123);
        assert_false(d.has_value);
        buf_done(&b);
}

static void test_rejects(void **state) {
        Buf b = BUF_INIT(0);
        KvCommand d;
        char *big = malloc(KV_MAX_KEY_SIZE + 2);

        memset(big, 'a', KV_MAX_KEY_SIZE + 1);
        big[0] = '/';
        big[KV_MAX_KEY_SIZE + 1] = 0;
        assert_int_equal(kv_command_encode(&(KvCommand) { .method = KV_METHOD_PUT, .path = big }, &b), -EINVAL);
        assert_int_equal(kv_command_encode(&(KvCommand) { .method = 99, .path = "/" }, &b), -EINVAL);
        assert_int_equal(kv_command_encode(&(KvCommand) { .method = KV_METHOD_PUT }, &b), -EINVAL);
        assert_int_equal(b.len, 0);
        static const char *const bad[] = {
                "",                                  /* empty */
                "\x02\x00\x00\x00\x00\x00\x00\x01/\x00",     /* version */
                "\x01\x09\x00\x00\x00\x00\x00\x01/\x00",     /* method */
                "\x01\x00\x40\x00\x00\x00\x00\x01/\x00",     /* flags */
                "\x01\x00\x00\x03\x00\x00\x00\x01/\x00",     /* prevExist */
                "\x01\x00\x00\x00\x00\x00\x00\x01/\x01",     /* missing NUL */
                "\x01\x00\x00\x00\x80\x00\x00\x00\x01/\x00", /* overlong varint */
                "\x01\x00\x00\x00\x00\x00\x00\x02/\x00\x00", /* NUL inside */
                "\x01\x00\x10\x00\x00\x00\x00\x01/\x00",     /* value flag, no value */
        };
        static const size_t lens[] = { 0, 10, 10, 10, 10, 10, 11, 11, 10 };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(kv_command_decode(bad[i], lens[i], &d), -EBADMSG);
        assert_int_equal(kv_command_decode("\x01\x00\x00\x00\x00\x00\x00\x01/\x00", 10, &d), 0);
        assert_int_equal(kv_command_decode("\x01\x00\x00\x00\x00\x00\x00\x01/\x00X", 11, &d), -EBADMSG);
        free(big);
        buf_done(&b);
}

TEST_MAIN(cmocka_unit_test(test_round_trip), cmocka_unit_test(test_rejects));
