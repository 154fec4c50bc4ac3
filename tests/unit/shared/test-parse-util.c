/* SPDX-License-Identifier: MIT */
#include "shared/parse-util.h"
#include "test-util.h"

static void numbers_accept_plain_digits(void **state) {
        uint64_t u;
        int64_t i;
        uint32_t u32;

        assert_int_equal(safe_atou64("0", &u), 0);
        assert_int_equal(u, 0);
        assert_int_equal(safe_atou64("18446744073709551615", &u), 0);
        assert_true(u == UINT64_MAX);
        assert_int_equal(safe_atoi64("-42", &i), 0);
        assert_int_equal(i, -42);
        assert_int_equal(safe_atou32("4294967295", &u32), 0);
        assert_int_equal(u32, UINT32_MAX);
}

static void numbers_reject_garbage_signs_and_overflow(void **state) {
        uint64_t u = 7;
        int64_t i = 7;
        uint32_t u32 = 7;

        assert_int_equal(safe_atou64("", &u), -EINVAL);
        assert_int_equal(safe_atou64(NULL, &u), -EINVAL);
        assert_int_equal(safe_atou64("-1", &u), -EINVAL);
        assert_int_equal(safe_atou64("+1", &u), -EINVAL);
        assert_int_equal(safe_atou64(" 1", &u), -EINVAL);
        assert_int_equal(safe_atou64("1 ", &u), -EINVAL);
        assert_int_equal(safe_atou64("12abc", &u), -EINVAL);
        assert_int_equal(safe_atou64("18446744073709551616", &u), -ERANGE);
        assert_int_equal(safe_atoi64("9223372036854775808", &i), -ERANGE);
        assert_int_equal(safe_atoi64("-", &i), -EINVAL);
        assert_int_equal(safe_atou32("4294967296", &u32), -ERANGE);
        /* Never clobber the result on failure. */
        assert_int_equal(u, 7);
        assert_int_equal(i, 7);
        assert_int_equal(u32, 7);
}

static void bools_accept_fleet_truthy_set(void **state) {
        const char *yes[] = { "1", "yes", "Y", "true", "T", "on", "TRUE" };
        const char *no[] = { "0", "no", "N", "false", "f", "OFF" };
        bool b;

        for (size_t k = 0; k < ELEMENTSOF(yes); k++) {
                b = false;
                assert_int_equal(parse_bool(yes[k], &b), 0);
                assert_true(b);
        }
        for (size_t k = 0; k < ELEMENTSOF(no); k++) {
                b = true;
                assert_int_equal(parse_bool(no[k], &b), 0);
                assert_false(b);
        }
        assert_int_equal(parse_bool("maybe", &b), -EINVAL);
        assert_int_equal(parse_bool("", &b), -EINVAL);
        assert_int_equal(parse_bool(NULL, &b), -EINVAL);
}

static void durations_combine_units(void **state) {
        usec_t u;

        assert_int_equal(parse_duration("1h30m", USEC_PER_SEC, &u), 0);
        assert_true(u == 90 * USEC_PER_MINUTE);
        assert_int_equal(parse_duration("500ms", USEC_PER_SEC, &u), 0);
        assert_true(u == 500 * USEC_PER_MSEC);
        assert_int_equal(parse_duration("2.5s", USEC_PER_SEC, &u), 0);
        assert_true(u == 2500 * USEC_PER_MSEC);
        assert_int_equal(parse_duration("3min", USEC_PER_SEC, &u), 0);
        assert_true(u == 3 * USEC_PER_MINUTE);
        assert_int_equal(parse_duration("1d", USEC_PER_SEC, &u), 0);
        assert_true(u == USEC_PER_DAY);
        assert_int_equal(parse_duration("250us", USEC_PER_SEC, &u), 0);
        assert_true(u == 250);
}

static void durations_bare_number_uses_default_unit(void **state) {
        usec_t u;

        assert_int_equal(parse_duration("100", USEC_PER_MSEC, &u), 0);
        assert_true(u == 100 * USEC_PER_MSEC);
        assert_int_equal(parse_duration("1.5", USEC_PER_SEC, &u), 0);
        assert_true(u == 1500 * USEC_PER_MSEC);
}

static void durations_reject_malformed(void **state) {
        usec_t u = 5;

        assert_int_equal(parse_duration("", USEC_PER_SEC, &u), -EINVAL);
        assert_int_equal(parse_duration("s", USEC_PER_SEC, &u), -EINVAL);
        assert_int_equal(parse_duration("-1s", USEC_PER_SEC, &u), -EINVAL);
        assert_int_equal(parse_duration("1h30", USEC_PER_SEC, &u), -EINVAL);
        assert_int_equal(parse_duration("10 parsecs", USEC_PER_SEC, &u), -EINVAL);
        assert_int_equal(parse_duration("5x", USEC_PER_SEC, &u), -EINVAL);
        assert_int_equal(parse_duration("99999999999999999999d", USEC_PER_SEC, &u), -ERANGE);
        assert_int_equal(parse_duration("999999999999d", USEC_PER_SEC, &u), -ERANGE);
        assert_int_equal(u, 5);
}

static void sizes_use_binary_multiples(void **state) {
        uint64_t s;

        assert_int_equal(parse_size("4096", &s), 0);
        assert_int_equal(s, 4096);
        assert_int_equal(parse_size("64K", &s), 0);
        assert_int_equal(s, 65536);
        assert_int_equal(parse_size("1MiB", &s), 0);
        assert_int_equal(s, 1 << 20);
        assert_int_equal(parse_size("2G", &s), 0);
        assert_true(s == 2ULL << 30);
        assert_int_equal(parse_size("1Q", &s), -EINVAL);
        assert_int_equal(parse_size("-1", &s), -EINVAL);
        assert_int_equal(parse_size("", &s), -EINVAL);
        assert_int_equal(parse_size("99999999999T", &s), -ERANGE);
}

static void durations_format_round_trip(void **state) {
        char buf[64];
        usec_t u;

        assert_string_equal(format_duration(buf, sizeof(buf), 90 * USEC_PER_MINUTE), "1h30m");
        assert_string_equal(format_duration(buf, sizeof(buf), 1500 * USEC_PER_MSEC), "1s500ms");
        assert_string_equal(format_duration(buf, sizeof(buf), 0), "0");
        assert_string_equal(format_duration(buf, sizeof(buf), USEC_INFINITY), "infinity");
        assert_int_equal(parse_duration(format_duration(buf, sizeof(buf), 93784005006ULL), 1, &u), 0);
        assert_true(u == 93784005006ULL);
}

TEST_MAIN(cmocka_unit_test(numbers_accept_plain_digits),
          cmocka_unit_test(numbers_reject_garbage_signs_and_overflow),
          cmocka_unit_test(bools_accept_fleet_truthy_set),
          cmocka_unit_test(durations_combine_units),
          cmocka_unit_test(durations_bare_number_uses_default_unit),
          cmocka_unit_test(durations_reject_malformed),
          cmocka_unit_test(sizes_use_binary_multiples),
          cmocka_unit_test(durations_format_round_trip))
