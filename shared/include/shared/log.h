/* SPDX-License-Identifier: MIT */
/* Logging: syslog levels, negative-errno helpers and journald-friendly stderr output.
 *
 * log_error_errno(r, "Failed to bind %s: %m", addr) logs with errno set from r (so %m names the
 * error) and evaluates to -ERRNO_VALUE(r), so `return log_error_errno(r, ...);` logs once and
 * propagates. Library code logs at debug level at most; the calling program logs failures once.
 *
 * When stderr is connected to the journal (JOURNAL_STREAM matches) or log_set_prefix_mode() asks
 * for it, each line carries a "<N>" priority prefix that journald parses. Otherwise lines read
 * "<ident>[<pid>]: <level>: <message>" for humans and container logs. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

#include "shared/macro.h"

/* Where log lines go. Tests install a sink to assert on messages. */
typedef void (*LogSink)(int level, const char *line, void *userdata);

void log_set_ident(const char *ident);        /* program name shown in each line; copied */
void log_set_max_level(int level);            /* LOG_ERR .. LOG_DEBUG; default LOG_INFO */
int log_get_max_level(void);
void log_set_sink(LogSink sink, void *userdata); /* NULL restores stderr */
/* Force "<N>" prefixes on (1) or off (0); -1 decides from JOURNAL_STREAM (the default). */
void log_set_prefix_mode(int mode);

/* Parses "err", "error", "warning", "notice", "info", "debug" or a number 0..7. */
int log_level_from_string(const char *s, int *ret_level);
const char *log_level_to_string(int level);

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);
int log_internalv(int level, int error, const char *file, int line, const char *func,
                  const char *format, va_list ap) _printf_(6, 0);

#define log_full_errno(level, error, ...)                                                      \
        ({                                                                                     \
                int _level_ = (level), _e_ = (error);                                          \
                _level_ <= log_get_max_level()                                                 \
                        ? log_internal(_level_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__) \
                        : -ERRNO_VALUE(_e_);                                                   \
        })
#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_notice_errno(e, ...)  log_full_errno(LOG_NOTICE, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_oom() log_full_errno(LOG_ERR, ENOMEM, "Out of memory.")
