/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "shared/log.h"
#include "test-util.h"

static char last_line[512];
static int last_level = -1, lines;

static void sink(int level, const char *line, void *userdata) {
        (void) snprintf(last_line, sizeof(last_line), "%s", line);
        last_level = level;
        lines++;
}

static int setup(void **state) {
        log_set_sink(sink, NULL);
        log_set_max_level(LOG_INFO);
        lines = 0;
        last_line[0] = 0;
        return 0;
}

static int teardown(void **state) {
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_WARNING);
        return 0;
}

static void errno_helpers_return_negative_and_format_percent_m(void **state) {
        int r = log_error_errno(ENOENT, "open %s: %m", "x");
        assert_int_equal(r, -ENOENT);
        assert_string_equal(last_line, "open x: No such file or directory");
        assert_int_equal(last_level, LOG_ERR);

        /* A negative input gives the same result; synthetic errors lose their flag. */
        assert_int_equal(log_warning_errno(-EINVAL, "bad"), -EINVAL);
        assert_int_equal(log_error_errno(SYNTHETIC_ERRNO(EPROTO), "proto: %m"), -EPROTO);
        assert_string_equal(last_line, "proto: Protocol error");
}

static void levels_above_max_are_dropped_but_still_return(void **state) {
        assert_int_equal(log_debug_errno(EIO, "quiet"), -EIO);
        assert_int_equal(lines, 0);
        log_info("shown %d", 1);
        assert_int_equal(lines, 1);
        log_set_max_level(LOG_DEBUG);
        log_debug("now shown");
        assert_int_equal(lines, 2);
        assert_int_equal(last_level, LOG_DEBUG);
}

static void errno_preserved_across_logging(void **state) {
        errno = EAGAIN;
        log_error_errno(ENOSPC, "x");
        assert_int_equal(errno, EAGAIN);
}

static void level_names_round_trip(void **state) {
        int l;

        assert_int_equal(log_level_from_string("debug", &l), 0);
        assert_int_equal(l, LOG_DEBUG);
        assert_int_equal(log_level_from_string("warn", &l), 0);
        assert_int_equal(l, LOG_WARNING);
        assert_int_equal(log_level_from_string("3", &l), 0);
        assert_int_equal(l, LOG_ERR);
        assert_int_equal(log_level_from_string("8", &l), -EINVAL);
        assert_int_equal(log_level_from_string("loud", &l), -EINVAL);
        assert_string_equal(log_level_to_string(LOG_NOTICE), "notice");
        assert_null(log_level_to_string(9));
}

/* Redirect stderr into a file and check the two output formats. */
static char *capture_stderr(int prefix_mode, const char *journal_stream) {
        char path[] = "/tmp/flotilla-log-XXXXXX";
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        static char out[1024];
        ssize_t n;

        assert_true(fd >= 0 && saved >= 0);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        if (journal_stream) {
                struct stat st;
                char v[64];
                assert_int_equal(fstat(STDERR_FILENO, &st), 0);
                (void) snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev,
                                (unsigned long long) st.st_ino);
                setenv("JOURNAL_STREAM", v, 1);
        }
        log_set_sink(NULL, NULL);
        log_set_prefix_mode(prefix_mode);
        log_set_ident("unit");
        log_notice("hello %s", "journal");
        (void) dup2(saved, STDERR_FILENO);
        close(saved);
        unsetenv("JOURNAL_STREAM");
        log_set_prefix_mode(-1);
        n = pread(fd, out, sizeof(out) - 1, 0);
        assert_true(n > 0);
        out[n] = 0;
        close(fd);
        unlink(path);
        return out;
}

static void journal_stream_gets_priority_prefix(void **state) {
        assert_string_equal(capture_stderr(-1, "yes"), "<5>hello journal\n");
}

static void terminal_gets_ident_and_level(void **state) {
        const char *out = capture_stderr(-1, NULL);
        assert_non_null(strstr(out, "Z unit["));
        assert_non_null(strstr(out, "]: notice: hello journal\n"));
        assert_string_equal(capture_stderr(1, NULL), "<5>hello journal\n");
}

TEST_MAIN(cmocka_unit_test_setup_teardown(errno_helpers_return_negative_and_format_percent_m, setup, teardown),
          cmocka_unit_test_setup_teardown(levels_above_max_are_dropped_but_still_return, setup, teardown),
          cmocka_unit_test_setup_teardown(errno_preserved_across_logging, setup, teardown),
          cmocka_unit_test(level_names_round_trip),
          cmocka_unit_test_setup_teardown(journal_stream_gets_priority_prefix, setup, teardown),
          cmocka_unit_test_setup_teardown(terminal_gets_ident_and_level, setup, teardown))
