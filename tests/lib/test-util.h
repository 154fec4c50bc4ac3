/* SPDX-License-Identifier: MIT */
/* Helpers for Flotilla's cmocka tests: a main() generator, temporary directories, free ports and
 * driving an sd-event loop until a condition holds (bounded, so a liveness bug fails instead of
 * hanging). */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <systemd/sd-event.h>

#include "shared/macro.h"
#include "shared/time-util.h"

/* Exit code ctest treats as "skipped" (SKIP_RETURN_CODE). */
#define TEST_EXIT_SKIP 77

#define TEST_MAIN(...)                                                           \
        int main(void) {                                                         \
                const struct CMUnitTest tests[] = { __VA_ARGS__ };               \
                test_init();                                                     \
                return cmocka_run_group_tests(tests, NULL, NULL);                \
        }

#define TEST_MAIN_GROUP(setup, teardown, ...)                            \
        int main(void) {                                                 \
                const struct CMUnitTest tests[] = { __VA_ARGS__ };       \
                test_init();                                             \
                return cmocka_run_group_tests(tests, setup, teardown);   \
        }

/* Common setup: log level from $FLOTILLA_TEST_LOG_LEVEL (default warning), ignore SIGPIPE, run
 * only the tests $FLOTILLA_TEST_FILTER matches (cmocka's wildcards) when it is set. */
void test_init(void);

/* Creates a fresh temporary directory (under $TMPDIR or /tmp); test_rm_rf removes it again. */
char *test_mkdtemp(void);
int test_rm_rf(const char *path);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int test_free_port(void);

/* Writes the whole file; returns 0 or -errno. */
int test_write_file(const char *path, const char *content);

/* Runs the loop until cond is true or timeout_usec passes; evaluates to cond. */
#define RUN_LOOP_UNTIL(e, cond, timeout_usec)                                              \
        ({                                                                                 \
                usec_t _deadline_ = now_usec(CLOCK_MONOTONIC) + (timeout_usec);            \
                while (!(cond) && now_usec(CLOCK_MONOTONIC) < _deadline_)                  \
                        assert_true(sd_event_run((e), 50 * USEC_PER_MSEC) >= 0);           \
                (cond);                                                                    \
        })

/* Runs the loop for the given time regardless of what happens. */
void test_loop_for(sd_event *e, usec_t usec);
