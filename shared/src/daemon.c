/* SPDX-License-Identifier: MIT */
/* Daemon lifecycle: signals, readiness and status notification, watchdog, socket activation. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "shared/buf.h"
#include "shared/daemon.h"
#include "shared/event-util.h"
#include "shared/log.h"

struct Daemon {
        char *name;
        sd_event *event;
        sd_event_source *sigterm, *sigint, *sighup;
        sd_event_source *stop_timer;
        DaemonHook stop_hook, reload_hook;
        void *stop_userdata, *reload_userdata;
        usec_t stop_timeout_usec;
        bool stopping;
        int *listen_fds;       /* passed sockets; -EBADF once taken */
        char **listen_names;   /* parallel to listen_fds */
        unsigned n_listen_fds;
};

sd_event *daemon_event(Daemon *d) {
        return d->event;
}

const char *daemon_name(Daemon *d) {
        return d->name;
}

void daemon_on_stop(Daemon *d, DaemonHook hook, void *userdata) {
        d->stop_hook = hook;
        d->stop_userdata = userdata;
}

void daemon_on_reload(Daemon *d, DaemonHook hook, void *userdata) {
        d->reload_hook = hook;
        d->reload_userdata = userdata;
}

void daemon_set_stop_timeout(Daemon *d, usec_t timeout_usec) {
        d->stop_timeout_usec = timeout_usec;
}

bool daemon_stopping(Daemon *d) {
        return d->stopping;
}

int daemon_exit(Daemon *d, int code) {
        if (sd_event_get_state(d->event) == SD_EVENT_FINISHED)
                return 0;
        return sd_event_exit(d->event, code);
}

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        log_warning("Graceful stop did not finish within the stop timeout; exiting now.");
        return daemon_exit(d, -ETIMEDOUT);
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        int r;

        if (d->stopping) {
                log_notice("Received %s again, exiting immediately.", strsignal((int) si->ssi_signo));
                return daemon_exit(d, 0);
        }
        d->stopping = true;
        log_info("Received %s, stopping.", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");

        r = d->stop_hook ? d->stop_hook(d, d->stop_userdata) : 0;
        if (r <= 0)
                return daemon_exit(d, r < 0 ? r : 0);

        r = sd_event_add_time_relative(d->event, &d->stop_timer, CLOCK_MONOTONIC, d->stop_timeout_usec, EVENT_ACCURACY_EXACT_USEC,
                                       on_stop_timeout, d);
        if (r < 0)
                return daemon_exit(d, r);
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        int r = 0;

        if (!d->reload_hook) {
                log_info("Received SIGHUP; nothing to reload.");
                return 0;
        }
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading",
                          (unsigned long long) now_usec(CLOCK_MONOTONIC));
        r = d->reload_hook(d, d->reload_userdata);
        if (r < 0)
                log_warning_errno(r, "Reload failed, keeping the previous configuration: %m");
        else
                log_info("Reloaded.");
        (void) sd_notify(false, "READY=1\nSTATUS=Running");
        return 0;
}

static int collect_listen_fds(Daemon *d) {
        _cleanup_strv_free_ char **names = NULL;
        int n;

        n = sd_listen_fds_with_names(true, &names);
        if (n <= 0)
                return n;
        d->listen_fds = new0(int, (size_t) n);
        if (!d->listen_fds)
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                d->listen_fds[i] = SD_LISTEN_FDS_START + i;
        d->listen_names = TAKE_PTR(names);
        d->n_listen_fds = (unsigned) n;
        return n;
}

int daemon_new(Daemon **ret, const char *name) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        int r;

        d = new0(Daemon, 1);
        if (!d)
                return -ENOMEM;
        d->stop_timeout_usec = DAEMON_STOP_TIMEOUT_DEFAULT;
        d->name = strdup(name);
        if (!d->name)
                return -ENOMEM;
        log_set_ident(name);

        r = sd_event_new(&d->event);
        if (r < 0)
                return r;
        r = sd_event_add_signal(d->event, &d->sigterm, SIGTERM | SD_EVENT_SIGNAL_PROCMASK, on_stop_signal, d);
        if (r < 0)
                return r;
        r = sd_event_add_signal(d->event, &d->sigint, SIGINT | SD_EVENT_SIGNAL_PROCMASK, on_stop_signal, d);
        if (r < 0)
                return r;
        r = sd_event_add_signal(d->event, &d->sighup, SIGHUP | SD_EVENT_SIGNAL_PROCMASK, on_reload_signal, d);
        if (r < 0)
                return r;
        /* Pings WATCHDOG=1 from the loop when WATCHDOG_USEC is set: a stuck loop stops pinging. */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                log_debug_errno(r, "Failed to enable the watchdog, ignoring: %m");
        else if (r > 0)
                log_debug("Watchdog enabled.");
        r = collect_listen_fds(d);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(d);
        return 0;
}

Daemon *daemon_free(Daemon *d) {
        if (!d)
                return NULL;
        sd_event_source_disable_unref(d->sigterm);
        sd_event_source_disable_unref(d->sigint);
        sd_event_source_disable_unref(d->sighup);
        sd_event_source_disable_unref(d->stop_timer);
        sd_event_unref(d->event);
        for (unsigned i = 0; i < d->n_listen_fds; i++)
                safe_close(d->listen_fds[i]);
        free(d->listen_fds);
        strv_free(d->listen_names);
        free(d->name);
        free(d);
        return NULL;
}

int daemon_ready(Daemon *d) {
        (void) sd_notify(false, "READY=1\nSTATUS=Running");
        return 0;
}

int daemon_status(Daemon *d, const char *fmt, ...) {
        char text[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        /* A newline would start another notify assignment; keep STATUS one line. */
        for (char *c = text; *c; c++)
                if (*c == '\n')
                        *c = ' ';
        (void) sd_notifyf(false, "STATUS=%s", text);
        return 0;
}

int daemon_run(Daemon *d) {
        int r = sd_event_loop(d->event);
        return r;
}

int daemon_take_listen_fd(Daemon *d, const char *name) {
        for (unsigned i = 0; i < d->n_listen_fds; i++) {
                if (d->listen_fds[i] < 0)
                        continue;
                if (name && !streq_ptr(d->listen_names ? d->listen_names[i] : NULL, name))
                        continue;
                return TAKE_FD(d->listen_fds[i]);
        }
        return -ENOENT;
}

unsigned daemon_untaken_listen_fds(Daemon *d) {
        unsigned n = 0;
        for (unsigned i = 0; i < d->n_listen_fds; i++)
                n += d->listen_fds[i] >= 0;
        return n;
}

int daemon_main_result(int r) {
        if (r >= 0)
                return r > 255 ? EXIT_FAILURE : r == 0 ? EXIT_SUCCESS : r;
        (void) sd_notifyf(false, "STATUS=Failed: %s\nERRNO=%d", strerror(ERRNO_VALUE(r)), ERRNO_VALUE(r));
        return EXIT_FAILURE;
}
