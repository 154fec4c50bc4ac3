/* SPDX-License-Identifier: MIT */
/* Bounded growable buffers, string vectors and URL escaping. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"

static size_t buf_limit(const Buf *b) {
        return b->limit ? b->limit : SIZE_MAX - 1;
}

int buf_reserve(Buf *b, size_t extra) {
        size_t need, a;
        char *p;

        if (extra > buf_limit(b) - b->len)
                return -ENOBUFS;
        need = b->len + extra + 1;
        if (need <= b->alloc)
                return 0;
        a = MAX(need, MAX(b->alloc * 2, (size_t) 64));
        p = realloc(b->data, a);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->alloc = a;
        return 0;
}

int buf_append(Buf *b, const void *p, size_t n) {
        int r = buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n > 0)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int buf_append_str(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

char *format_u64(char buf[static FORMAT_U64_MAX], uint64_t v) {
        char tmp[FORMAT_U64_MAX];
        size_t n = 0;

        do
                tmp[n++] = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        for (size_t i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        buf[n] = '\0';
        return buf;
}

int buf_append_u64(Buf *b, uint64_t v) {
        char t[FORMAT_U64_MAX];
        return buf_append_str(b, format_u64(t, v));
}

int buf_vprintf(Buf *b, const char *fmt, va_list ap) {
        va_list aq;
        int n, r;

        va_copy(aq, ap);
        n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                return -EINVAL;
        r = buf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        (void) vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        b->len += (size_t) n;
        return 0;
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = buf_vprintf(b, fmt, ap);
        va_end(ap);
        return r;
}

void buf_clear(Buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

void buf_consume(Buf *b, size_t n) {
        n = MIN(n, b->len);
        if (n == 0)
                return;
        memmove(b->data, b->data + n, b->len - n + 1);
        b->len -= n;
}

void buf_done(Buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->alloc = 0;
}

char *buf_steal(Buf *b) {
        char *p;

        if (!b->data && buf_reserve(b, 0) < 0)
                return NULL;
        if (!b->data)
                return NULL;
        b->data[b->len] = 0;
        p = b->data;
        b->data = NULL;
        b->len = b->alloc = 0;
        return p;
}

char **strv_free(char **l) {
        STRV_FOREACH(i, l)
                free(*i);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        STRV_FOREACH(i, l)
                n++;
        return n;
}

int strv_push(char ***l, char *s) {
        size_t n = strv_length(*l);
        char **t;

        if (!s)
                return -EINVAL;
        t = realloc(*l, sizeof(char *) * (n + 2));
        if (!t) {
                free(s);
                return -ENOMEM;
        }
        t[n] = s;
        t[n + 1] = NULL;
        *l = t;
        return 0;
}

int strv_extend(char ***l, const char *s) {
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        return strv_push(l, c);
}

char **strv_copy(char *const *l) {
        char **c = new0(char *, 1);
        if (!c)
                return NULL;
        STRV_FOREACH(i, l)
                if (strv_extend(&c, *i) < 0)
                        return strv_free(c);
        return c;
}

int strv_split(const char *s, const char *separators, char ***ret) {
        _cleanup_strv_free_ char **l = new0(char *, 1);
        const char *p = s;

        if (!l)
                return -ENOMEM;
        while (p && *p) {
                size_t n = strcspn(p, separators);
                const char *b = p, *e = p + n;
                int r;

                while (b < e && isspace((unsigned char) *b))
                        b++;
                while (e > b && isspace((unsigned char) e[-1]))
                        e--;
                if (e > b) {
                        r = strv_push(&l, strndup(b, (size_t) (e - b)));
                        if (r < 0)
                                return -ENOMEM;
                }
                p += n;
                if (*p)
                        p++;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

char *strv_join(char *const *l, const char *separator) {
        Buf b = BUF_INIT(0);
        bool first = true;

        if (buf_reserve(&b, 0) < 0)
                return NULL;
        STRV_FOREACH(i, l) {
                if ((!first && buf_append_str(&b, separator) < 0) || buf_append_str(&b, *i) < 0) {
                        buf_done(&b);
                        return NULL;
                }
                first = false;
        }
        return buf_steal(&b);
}

char *url_escape(const char *s, int keep_slash) {
        static const char hex[] = "0123456789ABCDEF";
        Buf b = BUF_INIT(0);

        if (buf_reserve(&b, strlen(s)) < 0)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
                int r;

                if (isalnum(*p) || strchr("-._~", *p) || (keep_slash && *p == '/'))
                        r = buf_append(&b, p, 1);
                else
                        r = buf_append(&b, e, 3);
                if (r < 0) {
                        buf_done(&b);
                        return NULL;
                }
        }
        return buf_steal(&b);
}

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int url_unescape(const char *s, size_t len, int form, char **ret, size_t *ret_bad_offset) {
        _cleanup_free_ char *out = malloc(len + 1);
        size_t o = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        /* Needs two hex digits after the '%', inside the input. */
                        if (len - i < 3 || unhex(s[i + 1]) < 0 || unhex(s[i + 2]) < 0) {
                                if (ret_bad_offset)
                                        *ret_bad_offset = i;
                                return -EINVAL;
                        }
                        out[o++] = (char) (unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
                        i += 2;
                } else if (form && s[i] == '+')
                        out[o++] = ' ';
                else
                        out[o++] = s[i];
        }
        out[o] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 if it is invalid. Rejects
 * overlong forms, surrogates and code points past U+10FFFF, as RFC 3629 requires. */
size_t utf8_decode(const void *s, size_t n, uint32_t *ret_cp) {
        const unsigned char *p = s;
        unsigned char c;
        size_t len;
        uint32_t cp;

        if (n == 0)
                return 0;
        c = p[0];
        if (c < 0x80) {
                len = 1;
                cp = c;
        } else if (c >= 0xC2 && c <= 0xDF) {
                len = 2;
                cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
                len = 3;
                cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4;
                cp = c & 0x07;
        } else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xC0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
                return 0;
        if (ret_cp)
                *ret_cp = cp;
        return len;
}

bool utf8_valid(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < len;) {
                size_t l = utf8_decode(p + i, len - i, NULL);
                if (l == 0)
                        return false;
                i += l;
        }
        return true;
}

char *utf8_sanitize(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *) s;
        Buf b = BUF_INIT(0);

        if (buf_reserve(&b, len) < 0)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t l = utf8_decode(p + i, len - i, NULL);
                int r = l ? buf_append(&b, p + i, l) : buf_append(&b, "\xEF\xBF\xBD", 3);
                if (r < 0) {
                        buf_done(&b);
                        return NULL;
                }
                i += l ? l : 1;
        }
        return buf_steal(&b);
}
