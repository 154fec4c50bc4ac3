/* SPDX-License-Identifier: MIT */
/* A growable byte buffer with a hard size limit, and NULL-terminated string vectors. The limit is
 * how outside input stays bounded: appending past it fails with -ENOBUFS and leaves the buffer
 * unchanged. The data is always followed by a NUL byte (not counted in len), so text can be used
 * as a C string directly. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/macro.h"

typedef struct Buf {
        char *data;     /* owned; NUL-terminated when non-NULL */
        size_t len;     /* bytes used, excluding the terminating NUL */
        size_t alloc;   /* bytes allocated */
        size_t limit;   /* maximum len; 0 means SIZE_MAX */
} Buf;

#define BUF_INIT(lim) ((Buf) { .limit = (lim) })

int buf_reserve(Buf *b, size_t extra);
int buf_append(Buf *b, const void *p, size_t n);
int buf_append_str(Buf *b, const char *s);
/* Decimal, as "%" PRIu64 prints it, without printf's cost on hot paths. */
int buf_append_u64(Buf *b, uint64_t v);
/* Writes v in decimal into buf (NUL-terminated) and returns buf. */
#define FORMAT_U64_MAX 21
char *format_u64(char buf[static FORMAT_U64_MAX], uint64_t v);
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
int buf_vprintf(Buf *b, const char *fmt, va_list ap) _printf_(2, 0);
void buf_clear(Buf *b);                   /* len = 0, keeps memory */
void buf_consume(Buf *b, size_t n);       /* drops the first n bytes */
void buf_done(Buf *b);                    /* frees memory; the Buf may be reused */
char *buf_steal(Buf *b);                  /* returns data (never NULL unless OOM) and resets */

/* String vectors: NULL-terminated arrays of owned strings. */
char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free)
#define _cleanup_strv_free_ _cleanup_(strv_freep)
size_t strv_length(char *const *l);
int strv_push(char ***l, char *s);         /* takes ownership of s, even on failure */
int strv_extend(char ***l, const char *s); /* copies s */
char **strv_copy(char *const *l);
/* Splits s at any of the separator chars, trimming whitespace, dropping empty items. */
int strv_split(const char *s, const char *separators, char ***ret);
char *strv_join(char *const *l, const char *separator);
#define STRV_FOREACH(it, l) for (char *const *it = (l); it && *it; it++)

/* UTF-8 validation. utf8_sanitize returns a copy where every invalid sequence is replaced by
 * U+FFFD, as Go's encoding/json does (and so etcd), or NULL on OOM. */
bool utf8_valid(const char *s, size_t len);
/* Length of the valid UTF-8 sequence at s (n bytes left) and its code point in *ret_cp (may be
 * NULL), or 0 if invalid: overlong forms, surrogates and code points past U+10FFFF are invalid,
 * as in Go's unicode/utf8. */
size_t utf8_decode(const void *s, size_t n, uint32_t *ret_cp);
char *utf8_sanitize(const char *s, size_t len);

/* Percent-encoding for URL path segments and form values (RFC 3986 unreserved kept; '/' kept
 * when keep_slash). Returns a new string or NULL on OOM. */
char *url_escape(const char *s, int keep_slash);
/* Decodes %XX (and '+' as space when form). -EINVAL on a malformed escape; *ret_bad_offset (if
 * not NULL) is set to the byte offset of the bad escape. */
int url_unescape(const char *s, size_t len, int form, char **ret, size_t *ret_bad_offset);
