/* SPDX-License-Identifier: MIT */
#include "shared/random-util.h"
#include "test-util.h"

static void jitter_stays_within_half_to_one_and_a_half(void **state) {
        for (int i = 0; i < 10000; i++) {
                usec_t j = random_jitter(1000);
                assert_true(j >= 500 && j < 1500);
        }
        assert_int_equal(random_jitter(0), 0);
        assert_int_equal(random_jitter(1), 1);
}

static void backoff_doubles_and_caps(void **state) {
        for (int i = 0; i < 1000; i++) {
                assert_true(backoff_usec(100, 10000, 0) < 150);
                usec_t b3 = backoff_usec(100, 10000, 3); /* 800 +- 50% */
                assert_true(b3 >= 400 && b3 < 1200);
                usec_t capped = backoff_usec(100, 10000, 60); /* no overflow, capped */
                assert_true(capped >= 5000 && capped < 15000);
        }
}

static void values_vary(void **state) {
        uint64_t a = random_u64(), b = random_u64(), c = random_u64();
        assert_false(a == b && b == c);
}

TEST_MAIN(cmocka_unit_test(jitter_stays_within_half_to_one_and_a_half),
          cmocka_unit_test(backoff_doubles_and_caps),
          cmocka_unit_test(values_vary))
