/* SPDX-License-Identifier: MIT */
#include "shared/hashmap.h"
#include "test-util.h"

static void put_get_replace_remove(void **state) {
        U64Map m = U64MAP_INIT;
        int a, b;

        assert_null(u64map_get(&m, 1));
        assert_null(u64map_remove(&m, 1));
        assert_int_equal(u64map_put(&m, 1, &a), 0);
        assert_ptr_equal(u64map_get(&m, 1), &a);
        assert_int_equal(u64map_put(&m, 1, &b), 0);
        assert_ptr_equal(u64map_get(&m, 1), &b);
        assert_int_equal(u64map_size(&m), 1);
        assert_ptr_equal(u64map_remove(&m, 1), &b);
        assert_int_equal(u64map_size(&m), 0);
        assert_int_equal(u64map_put(&m, 2, NULL), -EINVAL);
        u64map_done(&m);
}

/* Against a plain array as the model, with many collisions and removals in between. */
static void matches_a_model_under_churn(void **state) {
        enum { N = 20000 };
        static int present[N];
        static int token;
        U64Map m = U64MAP_INIT;
        uint64_t x = 12345;

        memset(present, 0, sizeof(present));
        for (int step = 0; step < 200000; step++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                uint64_t k = (x >> 33) % N;
                if ((x >> 20) & 1) {
                        assert_int_equal(u64map_put(&m, k * 1024, &token), 0); /* stride keys */
                        present[k] = 1;
                } else {
                        void *v = u64map_remove(&m, k * 1024);
                        assert_true(present[k] ? v == &token : v == NULL);
                        present[k] = 0;
                }
        }
        size_t count = 0;
        for (int k = 0; k < N; k++) {
                assert_true(present[k] ? u64map_get(&m, (uint64_t) k * 1024) == &token : u64map_get(&m, (uint64_t) k * 1024) == NULL);
                count += (size_t) present[k];
        }
        assert_int_equal(u64map_size(&m), count);
        size_t seen = 0;
        uint64_t key;
        for (size_t i = 0; u64map_next(&m, &i, &key, NULL);) {
                assert_true(present[key / 1024]);
                seen++;
        }
        assert_int_equal(seen, count);
        u64map_done(&m);
}

TEST_MAIN(cmocka_unit_test(put_get_replace_remove), cmocka_unit_test(matches_a_model_under_churn))
