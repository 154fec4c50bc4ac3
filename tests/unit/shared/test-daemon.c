/* SPDX-License-Identifier: MIT */
/* The lifecycle against a real notify socket, real signals and a real passed socket. */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "shared/daemon.h"
#include "shared/log.h"
#include "test-util.h"

static char *tmpdir;
static int notify_fd = -EBADF;

static int setup(void **state) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        tmpdir = test_mkdtemp();
        assert_non_null(tmpdir);
        (void) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", tmpdir);
        notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(notify_fd >= 0);
        assert_int_equal(bind(notify_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        setenv("NOTIFY_SOCKET", sa.sun_path, 1);
        return 0;
}

static int teardown(void **state) {
        notify_fd = safe_close(notify_fd);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        test_rm_rf(tmpdir);
        free(tmpdir);
        return 0;
}

/* Concatenates every notify message received so far, separated by '|'. */
static const char *drain_notify(void) {
        static char all[4096];
        char msg[512];
        ssize_t n;

        all[0] = 0;
        while ((n = recv(notify_fd, msg, sizeof(msg) - 1, 0)) > 0) {
                msg[n] = 0;
                for (char *c = msg; *c; c++)
                        if (*c == '\n')
                                *c = ';';
                strncat(all, msg, sizeof(all) - strlen(all) - 2);
                strcat(all, "|");
        }
        return all;
}

static int stop_calls, reload_calls;
static int stop_immediately(Daemon *d, void *u) {
        stop_calls++;
        return 0;
}

static void sigterm_sends_stopping_and_ends_loop(void **state) {
        _cleanup_(daemon_freep) Daemon *d = NULL;

        stop_calls = 0;
        assert_int_equal(daemon_new(&d, "test-daemon"), 0);
        daemon_on_stop(d, stop_immediately, NULL);
        daemon_ready(d);
        daemon_status(d, "serving %d\nclients", 3);
        assert_int_equal(raise(SIGTERM), 0); /* blocked, so it waits in the signalfd */
        assert_int_equal(daemon_run(d), 0);
        assert_int_equal(stop_calls, 1);
        assert_true(daemon_stopping(d));
        assert_string_equal(drain_notify(), "READY=1;STATUS=Running|STATUS=serving 3 clients|STOPPING=1;STATUS=Stopping|");
}

static int reload_hook(Daemon *d, void *u) {
        reload_calls++;
        return reload_calls == 1 ? 0 : -EINVAL;
}

static void sighup_calls_reload_and_reports_ready_again(void **state) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        const char *n;

        reload_calls = 0;
        assert_int_equal(daemon_new(&d, "test-daemon"), 0);
        daemon_on_reload(d, reload_hook, NULL);
        assert_int_equal(raise(SIGHUP), 0);
        assert_true(RUN_LOOP_UNTIL(daemon_event(d), reload_calls == 1, 2 * USEC_PER_SEC));
        n = drain_notify();
        assert_non_null(strstr(n, "RELOADING=1;MONOTONIC_USEC="));
        assert_non_null(strstr(n, "|READY=1;STATUS=Running|"));
        /* A failing reload keeps running and still reports ready. */
        assert_int_equal(raise(SIGHUP), 0);
        assert_true(RUN_LOOP_UNTIL(daemon_event(d), reload_calls == 2, 2 * USEC_PER_SEC));
        assert_false(daemon_stopping(d));
}

static int drain_then_exit_later(Daemon *d, void *u) {
        stop_calls++;
        return 1; /* draining: the test calls daemon_exit() itself */
}

static int finish_drain(sd_event_source *s, uint64_t usec, void *userdata) {
        return daemon_exit(userdata, 3);
}

static void graceful_stop_waits_for_drain(void **state) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *t = NULL;

        stop_calls = 0;
        assert_int_equal(daemon_new(&d, "test-daemon"), 0);
        daemon_on_stop(d, drain_then_exit_later, NULL);
        assert_int_equal(sd_event_add_time_relative(daemon_event(d), &t, CLOCK_MONOTONIC, 200 * USEC_PER_MSEC, 0,
                                                     finish_drain, d), 0);
        assert_int_equal(raise(SIGINT), 0);
        assert_int_equal(daemon_run(d), 3);
        assert_int_equal(stop_calls, 1);
}

static void stuck_drain_ends_after_stop_timeout(void **state) {
        _cleanup_(daemon_freep) Daemon *d = NULL;

        assert_int_equal(daemon_new(&d, "test-daemon"), 0);
        daemon_on_stop(d, drain_then_exit_later, NULL);
        daemon_set_stop_timeout(d, 100 * USEC_PER_MSEC);
        assert_int_equal(raise(SIGTERM), 0);
        assert_int_equal(daemon_run(d), -ETIMEDOUT);
}

static void second_signal_exits_immediately(void **state) {
        _cleanup_(daemon_freep) Daemon *d = NULL;

        assert_int_equal(daemon_new(&d, "test-daemon"), 0);
        daemon_on_stop(d, drain_then_exit_later, NULL);
        assert_int_equal(raise(SIGTERM), 0);
        assert_true(RUN_LOOP_UNTIL(daemon_event(d), daemon_stopping(d), USEC_PER_SEC));
        assert_int_equal(raise(SIGTERM), 0);
        assert_int_equal(daemon_run(d), 0);
}

static void watchdog_pings_from_the_loop(void **state) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        char pid[32];

        (void) snprintf(pid, sizeof(pid), "%d", (int) getpid());
        setenv("WATCHDOG_USEC", "100000", 1);
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(daemon_new(&d, "test-daemon"), 0);
        test_loop_for(daemon_event(d), 400 * USEC_PER_MSEC);
        assert_non_null(strstr(drain_notify(), "WATCHDOG=1"));
}

static void failure_result_reports_errno(void **state) {
        assert_int_equal(daemon_main_result(0), 0);
        assert_int_equal(daemon_main_result(-EADDRINUSE), 1);
        assert_string_equal(drain_notify(), "STATUS=Failed: Address already in use;ERRNO=98|");
}

/* Socket activation runs in a child: the passed socket must sit at fd 3. */
static int child_takes_listen_fds(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        _cleanup_(daemon_freep) Daemon *d = NULL;
        int s1 = socket(AF_INET, SOCK_STREAM, 0), s2 = socket(AF_INET, SOCK_STREAM, 0), fd, acc;
        socklen_t l = sizeof(acc);
        char pid[32];

        if (s1 < 0 || s2 < 0 || bind(s1, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(s1, 8) < 0)
                return 10;
        if (dup2(s1, 3) < 0 || dup2(s2, 4) < 0)
                return 11;
        (void) snprintf(pid, sizeof(pid), "%d", (int) getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "2", 1);
        setenv("LISTEN_FDNAMES", "client:peer", 1);
        if (daemon_new(&d, "child") < 0)
                return 12;
        if (getenv("LISTEN_FDS"))
                return 13; /* must not leak to our own children */
        if (daemon_take_listen_fd(d, "nope") != -ENOENT)
                return 14;
        fd = daemon_take_listen_fd(d, "client");
        if (fd != 3 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc)
                return 15;
        if (daemon_take_listen_fd(d, "client") != -ENOENT)
                return 16;
        if (daemon_untaken_listen_fds(d) != 1)
                return 17;
        if (daemon_take_listen_fd(d, NULL) != 4)
                return 18;
        close(3);
        close(4);
        return 0;
}

static void socket_activation_hands_out_fds_by_name(void **state) {
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0)
                _exit(child_takes_listen_fds());
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(sigterm_sends_stopping_and_ends_loop),
          T(sighup_calls_reload_and_reports_ready_again),
          T(graceful_stop_waits_for_drain),
          T(stuck_drain_ends_after_stop_timeout),
          T(second_signal_exits_immediately),
          T(watchdog_pings_from_the_loop),
          T(failure_result_reports_errno),
          T(socket_activation_hands_out_fds_by_name))
