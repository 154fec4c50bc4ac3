/* SPDX-License-Identifier: MIT */
/* See diff-util.h. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "diff-util.h"
#include "shared/buf.h"
#include "shared/macro.h"

void diff_resp_done(DiffResp *r) {
        free(r->body);
        *r = (DiffResp) {};
}

static size_t on_body(char *p, size_t s, size_t n, void *u) {
        return buf_append(u, p, s * n) < 0 ? 0 : s * n;
}

static size_t on_header(char *p, size_t s, size_t n, void *u) {
        DiffResp *r = u;
        size_t len = s * n;
        if (len > 14 && strncasecmp(p, "X-Etcd-Index:", 13) == 0) {
                r->has_index = true;
                r->index = strtoull(p + 13, NULL, 10);
        }
        return len;
}

int diff_http(const char *base, const char *method, const char *path_query, const char *form, long timeout_ms,
              DiffResp *ret) {
        static CURL *easy;
        _cleanup_free_ char *url = NULL;
        Buf b = BUF_INIT(0);
        DiffResp r = {};
        CURLcode cc;

        if (!easy)
                easy = curl_easy_init();
        if (asprintf(&url, "%s%s", base, path_query) < 0)
                return -ENOMEM;
        curl_easy_reset(easy);
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, &r);
        if (streq(method, "HEAD"))
                curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        else
                curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
        if (form)
                curl_easy_setopt(easy, CURLOPT_POSTFIELDS, form);
        cc = curl_easy_perform(easy);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
        r.body = buf_steal(&b);
        r.timed_out = cc == CURLE_OPERATION_TIMEDOUT;
        if (cc != CURLE_OK && !(r.timed_out && r.status > 0)) {
                diff_resp_done(&r);
                return -EIO;
        }
        *ret = r;
        return 0;
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

/* Go's url.unescape; on error *bad gets the escape text Go quotes. */
static char *go_unescape(const char *s, size_t len, bool form, char **bad) {
        char *out = malloc(len + 1);
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        if (len - i < 3 || unhex(s[i + 1]) < 0 || unhex(s[i + 2]) < 0) {
                                if (bad && !*bad)
                                        *bad = strndup(s + i, MIN(len - i, (size_t) 3));
                                free(out);
                                return NULL;
                        }
                        out[o++] = (char) (unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
                        i += 2;
                } else
                        out[o++] = form && s[i] == '+' ? ' ' : s[i];
        }
        out[o] = 0;
        return out;
}

char *diff_path_unescape(const char *s, size_t len) {
        char *bad = NULL, *r = go_unescape(s, len, false, &bad);
        free(bad);
        return r;
}

/* Go's url.parseQuery. */
static void parse_query(DiffForm *f, const char *q) {
        while (q && *q) {
                const char *amp = strchr(q, '&'), *end = amp ?: q + strlen(q), *eq;
                char *k, *v;

                if (memchr(q, ';', (size_t) (end - q))) {
                        if (!f->form_error && !f->bad_escape)
                                f->form_error = strdup("invalid semicolon separator in query");
                } else if (end > q) {
                        eq = memchr(q, '=', (size_t) (end - q));
                        k = go_unescape(q, (size_t) ((eq ?: end) - q), true, f->form_error ? NULL : &f->bad_escape);
                        v = k ? go_unescape(eq ? eq + 1 : end, eq ? (size_t) (end - eq - 1) : 0, true,
                                            f->form_error ? NULL : &f->bad_escape)
                              : NULL;
                        if (k && v) {
                                f->keys = realloc(f->keys, sizeof(char *) * (f->n + 1));
                                f->values = realloc(f->values, sizeof(char *) * (f->n + 1));
                                f->keys[f->n] = k;
                                f->values[f->n++] = v;
                        } else
                                free(k);
                }
                q = amp ? amp + 1 : NULL;
        }
}

int diff_form_parse(DiffForm *f, const char *body, const char *query) {
        *f = (DiffForm) {};
        parse_query(f, body);
        /* Go keeps the first error: a body error wins over a query error. */
        if (f->bad_escape || f->form_error) {
                DiffForm q = {};
                parse_query(&q, query);
                for (size_t i = 0; i < q.n; i++) {
                        f->keys = realloc(f->keys, sizeof(char *) * (f->n + 1));
                        f->values = realloc(f->values, sizeof(char *) * (f->n + 1));
                        f->keys[f->n] = q.keys[i];
                        f->values[f->n++] = q.values[i];
                }
                free(q.keys);
                free(q.values);
                free(q.bad_escape);
                free(q.form_error);
        } else
                parse_query(f, query);
        return 0;
}

void diff_form_done(DiffForm *f) {
        for (size_t i = 0; i < f->n; i++) {
                free(f->keys[i]);
                free(f->values[i]);
        }
        free(f->keys);
        free(f->values);
        free(f->bad_escape);
        free(f->form_error);
        *f = (DiffForm) {};
}

const char *diff_form_value(void *userdata, const char *name) {
        DiffForm *f = userdata;
        for (size_t i = 0; i < f->n; i++)
                if (streq(f->keys[i], name))
                        return f->values[i];
        return NULL;
}

/* End of the JSON value starting at p (an object, array, string or scalar). */
static const char *skip_value(const char *p) {
        int depth = 0;
        bool str = false;

        for (; *p; p++) {
                if (str) {
                        if (*p == '\\')
                                p++;
                        else if (*p == '"')
                                str = false;
                        if (!str && depth == 0)
                                return p + 1;
                        continue;
                }
                if (*p == '"')
                        str = true;
                else if (*p == '{' || *p == '[')
                        depth++;
                else if (*p == '}' || *p == ']') {
                        if (--depth == 0)
                                return p + 1;
                        if (depth < 0)
                                return p;
                } else if (depth == 0 && (*p == ',' || *p == '}' || *p == ']'))
                        return p;
        }
        return p;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void normalize_into(Buf *o, const char *p, const char *end, bool keep_order, int64_t *ttls, size_t *n_ttls,
                           size_t max_ttls) {
        while (p < end) {
                if (strncmp(p, "\"expiration\":\"", 14) == 0) {
                        const char *q = strchr(p + 14, '"');
                        buf_append_str(o, "\"expiration\":\"*\"");
                        p = q ? q + 1 : end;
                } else if (strncmp(p, "\"ttl\":", 6) == 0) {
                        char *q;
                        long long t = strtoll(p + 6, &q, 10);
                        if (*n_ttls < max_ttls)
                                ttls[(*n_ttls)++] = t;
                        buf_append_str(o, "\"ttl\":*");
                        p = q;
                } else if (strncmp(p, "\"nodes\":[", 9) == 0) {
                        char **items = NULL;
                        size_t n = 0;
                        p += 9;
                        buf_append_str(o, "\"nodes\":[");
                        while (p < end && *p != ']') {
                                const char *e = skip_value(p);
                                Buf item = BUF_INIT(0);
                                normalize_into(&item, p, e, keep_order, ttls, n_ttls, max_ttls);
                                items = realloc(items, sizeof(char *) * (n + 1));
                                items[n++] = buf_steal(&item);
                                p = *e == ',' ? e + 1 : e;
                        }
                        if (!keep_order)
                                qsort(items, n, sizeof(char *), cmp_str);
                        for (size_t i = 0; i < n; i++) {
                                if (i)
                                        buf_append_str(o, ",");
                                buf_append_str(o, items[i]);
                                free(items[i]);
                        }
                        free(items);
                } else if (*p == '"') {
                        const char *e = skip_value(p);
                        buf_append(o, p, (size_t) (e - p));
                        p = e;
                } else
                        buf_append(o, p++, 1);
        }
}

char *diff_normalize(const char *body, bool keep_order, int64_t *ttls, size_t *n_ttls, size_t max_ttls) {
        Buf o = BUF_INIT(0);
        buf_append(&o, "", 0); /* terminated even when nothing follows */
        normalize_into(&o, body, body + strlen(body), keep_order, ttls, n_ttls, max_ttls);
        return buf_steal(&o);
}
