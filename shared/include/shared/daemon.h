/* SPDX-License-Identifier: MIT */
/* Daemon lifecycle on one sd_event loop: SIGTERM/SIGINT start a graceful stop, SIGHUP calls a
 * reload hook, sd_notify reports READY/RELOADING/STOPPING/STATUS, the watchdog is pinged by the
 * loop itself, and sockets passed by systemd (socket activation) are handed out by name.
 *
 * Stop sequence: the first SIGTERM/SIGINT sends STOPPING=1 and calls the stop hook. A hook that
 * returns 0 ends the loop at once; a hook that returns > 0 is draining (closing listeners,
 * finishing requests) and calls daemon_exit() when done. If it has not after stop_timeout, the
 * loop ends anyway with -ETIMEDOUT. A second signal ends it at once. */
#pragma once

#include <systemd/sd-event.h>

#include "shared/macro.h"
#include "shared/time-util.h"

typedef struct Daemon Daemon;
typedef int (*DaemonHook)(Daemon *d, void *userdata);

#define DAEMON_STOP_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)

int daemon_new(Daemon **ret, const char *name);
Daemon *daemon_free(Daemon *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Daemon *, daemon_free)

sd_event *daemon_event(Daemon *d);
const char *daemon_name(Daemon *d);
void daemon_on_stop(Daemon *d, DaemonHook hook, void *userdata);
void daemon_on_reload(Daemon *d, DaemonHook hook, void *userdata);
void daemon_set_stop_timeout(Daemon *d, usec_t timeout_usec);
bool daemon_stopping(Daemon *d);

/* Tells the service manager we are up; call once listeners are bound and state is loaded. */
int daemon_ready(Daemon *d);
int daemon_status(Daemon *d, const char *fmt, ...) _printf_(2, 3);
/* Ends the loop with this exit code (0 = success, negative errno = failure). */
int daemon_exit(Daemon *d, int code);
/* Runs the loop until exit; returns the exit code. */
int daemon_run(Daemon *d);

/* Takes a socket passed by the service manager. name matches FileDescriptorName=; NULL takes
 * the first one not yet taken. Returns the fd (caller owns it) or -ENOENT. */
int daemon_take_listen_fd(Daemon *d, const char *name);
/* Number of passed sockets nobody took (a unit/socket mismatch worth logging). */
unsigned daemon_untaken_listen_fds(Daemon *d);

/* Maps run()'s result to an exit status and, on failure, tells the service manager why
 * (ERRNO=, STATUS=) so `systemctl status` shows it. */
int daemon_main_result(int r);

#define DEFINE_MAIN_FUNCTION(impl)                                  \
        int main(int argc, char *argv[]) {                          \
                return daemon_main_result(impl(argc, argv));        \
        }
