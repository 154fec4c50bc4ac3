/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shared/buf.h"
#include "test-util.h"

static void append_grows_and_terminates(void **state) {
        Buf b = BUF_INIT(0);

        for (int i = 0; i < 1000; i++)
                assert_int_equal(buf_append_str(&b, "abc"), 0);
        assert_int_equal(b.len, 3000);
        assert_int_equal(b.data[b.len], 0);
        assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
        assert_string_equal(b.data + 3000, "42-x");
        buf_done(&b);
}

static void u64_prints_as_printf_does(void **state) {
        static const uint64_t values[] = { 0, 1, 9, 10, 99, 100, 4294967295ULL, 4294967296ULL,
                                           10000000000000000000ULL, UINT64_MAX };
        Buf b = BUF_INIT(0);
        char f[FORMAT_U64_MAX], want[32];

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                (void) snprintf(want, sizeof(want), "%" PRIu64, values[i]);
                assert_string_equal(format_u64(f, values[i]), want);
                buf_clear(&b);
                assert_int_equal(buf_append_u64(&b, values[i]), 0);
                assert_string_equal(b.data, want);
        }
        assert_int_equal(strlen(format_u64(f, UINT64_MAX)), FORMAT_U64_MAX - 1);
        buf_done(&b);
        b = (Buf) BUF_INIT(2);
        assert_int_equal(buf_append_u64(&b, 123), -ENOBUFS);
        assert_int_equal(b.len, 0);
        buf_done(&b);
}

static void limit_refuses_and_leaves_buffer_unchanged(void **state) {
        Buf b = BUF_INIT(8);

        assert_int_equal(buf_append(&b, "12345678", 8), 0);
        assert_int_equal(buf_append(&b, "9", 1), -ENOBUFS);
        assert_int_equal(buf_printf(&b, "%s", "x"), -ENOBUFS);
        assert_int_equal(b.len, 8);
        assert_memory_equal(b.data, "12345678", 8);
        buf_clear(&b);
        assert_int_equal(buf_append(&b, "9", 1), 0);
        assert_string_equal(b.data, "9");
        buf_done(&b);
}

static void consume_and_steal(void **state) {
        Buf b = BUF_INIT(0);
        char *s;

        assert_int_equal(buf_append_str(&b, "hello world"), 0);
        buf_consume(&b, 6);
        assert_string_equal(b.data, "world");
        buf_consume(&b, 100);
        assert_int_equal(b.len, 0);
        s = buf_steal(&b);
        assert_non_null(s);
        assert_string_equal(s, "");
        assert_null(b.data);
        free(s);
}

static void strv_split_trims_and_drops_empty(void **state) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *j = NULL;

        assert_int_equal(strv_split(" http://a:1 ,,http://b:2,  ", ",", &l), 0);
        assert_int_equal(strv_length(l), 2);
        assert_string_equal(l[0], "http://a:1");
        assert_string_equal(l[1], "http://b:2");
        j = strv_join(l, ", ");
        assert_string_equal(j, "http://a:1, http://b:2");
}

static void strv_split_empty_gives_empty_vector(void **state) {
        _cleanup_strv_free_ char **l = NULL, **c = NULL;

        assert_int_equal(strv_split("", ",", &l), 0);
        assert_non_null(l);
        assert_int_equal(strv_length(l), 0);
        c = strv_copy(l);
        assert_non_null(c);
        assert_int_equal(strv_length(c), 0);
}

static void url_escape_keeps_unreserved(void **state) {
        _cleanup_free_ char *a = url_escape("/a b/c&d=é", 1), *b = url_escape("/a", 0);

        assert_string_equal(a, "/a%20b/c%26d%3D%C3%A9");
        assert_string_equal(b, "%2Fa");
}

static void url_unescape_decodes_and_reports_bad_escapes(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        char *c = NULL;
        size_t off = 0;

        assert_int_equal(url_unescape("a%2Fb+c", 7, 0, &a, NULL), 0);
        assert_string_equal(a, "a/b+c");
        assert_int_equal(url_unescape("a%2fb+c", 7, 1, &b, NULL), 0);
        assert_string_equal(b, "a/b c");
        assert_int_equal(url_unescape("ab%zz", 5, 0, &c, &off), -EINVAL);
        assert_int_equal(off, 2);
        assert_int_equal(url_unescape("ab%4", 4, 0, &c, &off), -EINVAL);
        assert_int_equal(url_unescape("%", 1, 0, &c, &off), -EINVAL);
        assert_int_equal(off, 0);
        assert_null(c);
}

static void utf8_validation_and_sanitizing(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        assert_true(utf8_valid("plain", 5));
        assert_true(utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
        assert_false(utf8_valid("\x87", 1));              /* stray continuation */
        assert_false(utf8_valid("\xc0\xaf", 2));          /* overlong '/' */
        assert_false(utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
        assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
        assert_false(utf8_valid("\xe2\x82", 2));          /* truncated */
        a = utf8_sanitize("/v2/ke\x87\xcf x", 10);
        assert_string_equal(a, "/v2/ke\xef\xbf\xbd\xef\xbf\xbd x");
        b = utf8_sanitize("ok \xc3\xa9", 5);
        assert_string_equal(b, "ok \xc3\xa9");
        c = utf8_sanitize("", 0);
        assert_string_equal(c, "");
}

static void utf8_decode_gives_code_points(void **state) {
        uint32_t cp = 0;

        assert_int_equal(utf8_decode("A", 1, &cp), 1);
        assert_int_equal(cp, 0x41);
        assert_int_equal(utf8_decode("\xc3\xa9x", 3, &cp), 2);
        assert_int_equal(cp, 0xE9);
        assert_int_equal(utf8_decode("\xe2\x80\xa8", 3, &cp), 3);
        assert_int_equal(cp, 0x2028);
        assert_int_equal(utf8_decode("\xf4\x8f\xbf\xbf", 4, &cp), 4);
        assert_int_equal(cp, 0x10FFFF);
        assert_int_equal(utf8_decode("\xf0\x9f\x98\x80", 4, NULL), 4);
        cp = 7;
        assert_int_equal(utf8_decode("\xe0\x80\xaf", 3, &cp), 0); /* overlong */
        assert_int_equal(utf8_decode("\xc3", 1, &cp), 0);          /* truncated */
        assert_int_equal(utf8_decode("", 0, &cp), 0);
        assert_int_equal(cp, 7); /* untouched on failure */
}

TEST_MAIN(cmocka_unit_test(append_grows_and_terminates),
          cmocka_unit_test(u64_prints_as_printf_does),
          cmocka_unit_test(utf8_decode_gives_code_points),
          cmocka_unit_test(limit_refuses_and_leaves_buffer_unchanged),
          cmocka_unit_test(consume_and_steal),
          cmocka_unit_test(strv_split_trims_and_drops_empty),
          cmocka_unit_test(strv_split_empty_gives_empty_vector),
          cmocka_unit_test(url_escape_keeps_unreserved),
          cmocka_unit_test(url_unescape_decodes_and_reports_bad_escapes),
          cmocka_unit_test(utf8_validation_and_sanitizing))
