/* SPDX-License-Identifier: MIT */
/* Snapshots: a round trip keeps the tree, the index, TTLs and the sibling order byte for byte;
 * every corruption (flipped bits, truncation, bad records with a valid checksum) is -EBADMSG
 * and leaves the store as it was. */
#include <stdio.h>

#include "kv-test-util.h"
#include "kv-varint.h"

static void fill(KvStore *s) {
        PUTV(s, "/a/b/c", "1");
        PUTV(s, "/a/_h", "hidden");
        PUTV(s, "/x", "\xff<&>");
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t", .value = "ttl", .has_value = true, .expiration_ns = T0 + 3000000000 }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/d", .dir = true, .expiration_ns = T0 + 2000000000 }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_POST, .path = "/q", .value = "in-order", .has_value = true }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/a/b", .recursive = true }, NULL, NULL);
}

static char *listing(KvStore *s) {
        return strdup(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/", .recursive = true }, NULL, NULL));
}

static void test_round_trip(void **state) {
        _cleanup_(kv_store_freep) KvStore *a = NULL, *b = NULL;
        Buf s1 = BUF_INIT(0), s2 = BUF_INIT(0);
        _cleanup_free_ char *la = NULL, *lb = NULL;
        int64_t next;

        assert_int_equal(kv_store_new(&a), 0);
        assert_int_equal(kv_store_new(&b), 0);
        fill(a);
        assert_int_equal(kv_store_save(a, &s1), 0);
        assert_int_equal(kv_store_load(b, s1.data, s1.len), 0);
        assert_int_equal(kv_store_index(b), kv_store_index(a));
        assert_int_equal(kv_store_count(b), kv_store_count(a));
        assert_int_equal(kv_store_save(b, &s2), 0);
        assert_int_equal(s1.len, s2.len);
        assert_memory_equal(s1.data, s2.data, s1.len);
        la = listing(a);
        lb = listing(b);
        assert_string_equal(la, lb);
        assert_int_equal(kv_store_next_expiration(b, &next), 0);
        assert_true(next == T0 + 2000000000);
        /* both expire the same way */
        kv_test_apply(a, (KvCommand) { .method = KV_METHOD_SYNC, .time_ns = T0 + 10000000000 }, NULL, NULL);
        kv_test_apply(b, (KvCommand) { .method = KV_METHOD_SYNC, .time_ns = T0 + 10000000000 }, NULL, NULL);
        buf_clear(&s1);
        buf_clear(&s2);
        assert_int_equal(kv_store_save(a, &s1), 0);
        assert_int_equal(kv_store_save(b, &s2), 0);
        assert_memory_equal(s1.data, s2.data, s1.len);
        buf_done(&s1);
        buf_done(&s2);
}

static void test_history_after_load(void **state) {
        _cleanup_(kv_store_freep) KvStore *a = NULL;
        KvStoreResult now = KV_STORE_RESULT_NULL;
        KvWatcher *w = NULL;
        Buf s1 = BUF_INIT(0);

        assert_int_equal(kv_store_new(&a), 0);
        fill(a);
        assert_int_equal(kv_store_save(a, &s1), 0);
        assert_int_equal(kv_store_load(a, s1.data, s1.len), 0);
        assert_int_equal(kv_store_watch(a, "/x", false, false, 2, (KvWatchFn) abort, NULL, &w, &now), 1);
        assert_int_equal(now.error_code, 401);
        kv_store_result_done(&now);
        buf_done(&s1);
}

static void test_corruption(void **state) {
        _cleanup_(kv_store_freep) KvStore *a = NULL, *b = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        Buf s1 = BUF_INIT(0);

        assert_int_equal(kv_store_new(&a), 0);
        assert_int_equal(kv_store_new(&b), 0);
        fill(a);
        PUTV(b, "/keep", "me");
        before = listing(b);
        assert_int_equal(kv_store_save(a, &s1), 0);
        for (size_t i = 0; i < s1.len; i++)
                for (int bit = 0; bit < 8; bit += 3) {
                        s1.data[i] ^= (char) (1 << bit);
                        assert_int_equal(kv_store_load(b, s1.data, s1.len), -EBADMSG);
                        s1.data[i] ^= (char) (1 << bit);
                }
        for (size_t n = 0; n < s1.len; n++)
                assert_int_equal(kv_store_load(b, s1.data, n), -EBADMSG);
        after = listing(b);
        assert_string_equal(before, after);
        buf_done(&s1);
}

/* Builds a snapshot with a valid checksum around hand-made records. */
static void craft(Buf *b, uint64_t index, uint64_t count, const void *records, size_t len) {
        uint32_t c = 0xFFFFFFFFU;
        buf_clear(b);
        buf_append(b, "FKVS\x01", 5);
        kv_put_u64(b, index);
        kv_put_u64(b, count);
        buf_append(b, records, len);
        for (size_t i = 0; i < b->len; i++) {
                c ^= (uint8_t) b->data[i];
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        }
        c ^= 0xFFFFFFFFU;
        buf_append(b, (uint8_t[]) { (uint8_t) c, (uint8_t) (c >> 8), (uint8_t) (c >> 16), (uint8_t) (c >> 24) }, 4);
}

static void test_invalid_records(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        Buf b = BUF_INIT(0);
        static const struct {
                const char *rec;
                size_t len;
                int want;
        } cases[] = {
#define R(x, w) { x, sizeof(x) - 1, w }
                R("\x00\x01\x01\x02/a\x01v", 0),             /* a valid file */
                R("\x00\x01\x01\x02/a\x01v\x00", -EBADMSG),  /* trailing byte */
                R("\x00\x01\x01\x04/a/b\x01v", -EBADMSG),    /* parent missing */
                R("\x00\x01\x01\x01/\x01v", -EBADMSG),       /* the root */
                R("\x00\x01\x01\x03/a/\x01v", -EBADMSG),     /* not clean */
                R("\x00\x01\x01\x04/../\x01v", -EBADMSG),
                R("\x00\x02\x01\x02/a\x01v", -EBADMSG),      /* created > modified */
                R("\x00\x09\x09\x02/a\x01v", -EBADMSG),      /* beyond the index */
                R("\x00\x00\x00\x02/a\x01v", -EBADMSG),      /* index 0 */
                R("\x08\x01\x01\x02/a\x01v", -EBADMSG),      /* unknown flag */
                R("\x00\x01\x01\x02/\x00\x01v", -EBADMSG),   /* NUL in path */
                R("\x00\x01\x01\x02/a\x05v", -EBADMSG),      /* value past the end */
                R("\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02/a\x01v", -EBADMSG), /* TTL 0 */
                R("\x00\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f/a", -EBADMSG),   /* huge length */
#undef R
        };

        assert_int_equal(kv_store_new(&s), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                craft(&b, 5, 1, cases[i].rec, cases[i].len);
                assert_int_equal(kv_store_load(s, b.data, b.len), cases[i].want);
        }
        /* duplicates and a file used as a directory */
        craft(&b, 5, 2, "\x00\x01\x01\x02/a\x01v\x00\x01\x01\x02/a\x01v", 16);
        assert_int_equal(kv_store_load(s, b.data, b.len), -EBADMSG);
        craft(&b, 5, 2, "\x00\x01\x01\x02/a\x01v\x00\x01\x01\x04/a/b\x01v", 18);
        assert_int_equal(kv_store_load(s, b.data, b.len), -EBADMSG);
        craft(&b, 5, 3, "\x00\x01\x01\x02/a\x01v", 8);   /* count larger than the records */
        assert_int_equal(kv_store_load(s, b.data, b.len), -EBADMSG);
        buf_done(&b);
}

TEST_MAIN(cmocka_unit_test(test_round_trip), cmocka_unit_test(test_history_after_load), cmocka_unit_test(test_corruption),
          cmocka_unit_test(test_invalid_records));
