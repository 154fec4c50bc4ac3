/* SPDX-License-Identifier: MIT */
/* Small language helpers used everywhere: cleanup attributes and ownership transfer (after
 * systemd's cleanup-fundamental.h), string comparisons and array sizes. Header only. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f)       __attribute__((cleanup(f)))
#define _unused_           __attribute__((unused))
#define _printf_(a, b)     __attribute__((format(printf, a, b)))
#define _warn_unused_      __attribute__((warn_unused_result))
#define _likely_(x)        (__builtin_expect(!!(x), 1))
#define _unlikely_(x)      (__builtin_expect(!!(x), 0))

#define ELEMENTSOF(a)      (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)          ((a) < (b) ? (a) : (b))
#define MAX(a, b)          ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi)   MIN(MAX((x), (lo)), (hi))

/* Return the pointer and reset the variable, so a _cleanup_ local no longer owns it. */
#define TAKE_PTR(p)                                 \
        ({                                          \
                __typeof__(p) _tp_ = (p);           \
                (p) = NULL;                         \
                _tp_;                               \
        })
/* Same for file descriptors, which use -EBADF as "none". */
#define TAKE_FD(fd)                                 \
        ({                                          \
                int _tf_ = (fd);                    \
                (fd) = -EBADF;                      \
                _tf_;                               \
        })

/* Generates `static inline void funcp(type *p)` calling func(*p) when *p is set. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)     \
        static inline void func##p(type *p) {       \
                if (*p)                             \
                        (void) func(*p);            \
        }
/* For destructors returning void (json_decref, curl_slist_free_all, ...). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(type, func, name) \
        static inline void name(type *p) {          \
                if (*p)                             \
                        func(*p);                   \
        }

/* free() that returns NULL, for `p = mfree(p);`. */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes fd if it is valid and returns -EBADF, so `fd = safe_close(fd);` is the idiom. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}
static inline void closep(int *fd) {
        (void) safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* libc's -1/errno convention converted to a negative errno at the call site. */
#define RET_NERRNO(expr)                            \
        ({                                          \
                __typeof__(expr) _r_ = (expr);      \
                _r_ < 0 ? -errno : _r_;             \
        })

/* Errors the code invents itself (not from a syscall). log_*_errno() strips the flag. */
#define SYNTHETIC_ERRNO(e) (1 << 30 | (e))
#define ERRNO_VALUE(e)     (abs(e) & ~(1 << 30))

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
static inline bool isempty(const char *s) {
        return !s || !*s;
}
/* Returns the rest of s after prefix, or NULL if s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}
static inline bool endswith(const char *s, const char *suffix) {
        size_t ls = strlen(s), lx = strlen(suffix);
        return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}
static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

/* strdup that treats NULL as "nothing to copy"; returns -ENOMEM or 0. */
static inline int free_and_strdup(char **p, const char *s) {
        char *t = NULL;
        if (s) {
                t = strdup(s);
                if (!t)
                        return -ENOMEM;
        }
        free(*p);
        *p = t;
        return 0;
}

#define new0(t, n) ((t *) calloc((n), sizeof(t)))
