/* SPDX-License-Identifier: MIT */
/* Logging to stderr (or a test sink) with syslog levels and negative-errno helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/parse-util.h"

static int log_max_level = LOG_INFO;
static int log_prefix_mode = -1;
static char log_ident[64] = "flotilla";
static LogSink log_sink;
static void *log_sink_userdata;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "error",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

void log_set_ident(const char *ident) {
        if (ident)
                (void) snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

void log_set_max_level(int level) {
        log_max_level = CLAMP(level, LOG_EMERG, LOG_DEBUG);
}

int log_get_max_level(void) {
        return log_max_level;
}

void log_set_sink(LogSink sink, void *userdata) {
        log_sink = sink;
        log_sink_userdata = userdata;
}

void log_set_prefix_mode(int mode) {
        log_prefix_mode = mode;
}

const char *log_level_to_string(int level) {
        if (level < 0 || level >= (int) ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

int log_level_from_string(const char *s, int *ret_level) {
        uint64_t n;

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i])) {
                        *ret_level = (int) i;
                        return 0;
                }
        if (streq(s, "err") || streq(s, "warn")) {
                *ret_level = streq(s, "err") ? LOG_ERR : LOG_WARNING;
                return 0;
        }
        if (safe_atou64(s, &n) >= 0 && n <= LOG_DEBUG) {
                *ret_level = (int) n;
                return 0;
        }
        return -EINVAL;
}

/* stderr is the journal when JOURNAL_STREAM names the device and inode of fd 2. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

int log_internalv(int level, int error, const char *file, int line, const char *func,
                  const char *format, va_list ap) {
        char msg[2048], out[2304];
        int saved = errno, e = ERRNO_VALUE(error);

        /* %m in the format names the error we were given, not whatever errno happens to be. */
        errno = e ?: saved;
        (void) vsnprintf(msg, sizeof(msg), format, ap);

        if (log_sink) {
                log_sink(level, msg, log_sink_userdata);
        } else {
                bool prefix = log_prefix_mode >= 0 ? log_prefix_mode : stderr_is_journal();
                if (prefix)
                        (void) snprintf(out, sizeof(out), "<%d>%s\n", level, msg);
                else {
                        struct timespec ts;
                        struct tm tm;
                        char when[32] = "";

                        (void) clock_gettime(CLOCK_REALTIME, &ts);
                        if (gmtime_r(&ts.tv_sec, &tm))
                                (void) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
                        (void) snprintf(out, sizeof(out), "%s.%03ldZ %s[%d]: %s: %s\n", when,
                                        ts.tv_nsec / 1000000, log_ident, (int) getpid(),
                                        strna(log_level_to_string(level)), msg);
                }
                /* One write per line keeps lines whole when several processes share stderr. */
                (void) !write(STDERR_FILENO, out, strlen(out));
        }
        if (log_max_level >= LOG_DEBUG && file && level <= LOG_ERR && !log_sink) {
                char where[512];
                int n = snprintf(where, sizeof(where), "  (at %s:%d %s)\n", file, line, func);
                if (n > 0)
                        (void) !write(STDERR_FILENO, where, MIN((size_t) n, sizeof(where) - 1));
        }
        errno = saved;
        return -e;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_internalv(level, error, file, line, func, format, ap);
        va_end(ap);
        return r;
}
