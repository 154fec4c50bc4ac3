/* SPDX-License-Identifier: MIT */
/* See http-diff.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http-diff.h"
#include "shared/macro.h"

void hd_resp_done(HdResp *r) {
        for (size_t i = 0; i < r->n_headers; i++) {
                free(r->names[i]);
                free(r->values[i]);
        }
        free(r->names);
        free(r->values);
        buf_done(&r->body);
        *r = (HdResp) { .body = BUF_INIT(0) };
}

const char *hd_resp_header(const HdResp *r, const char *name) {
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcasecmp(r->names[i], name) == 0)
                        return r->values[i];
        return NULL;
}

bool hd_resp_index(const HdResp *r, uint64_t *ret) {
        const char *v = hd_resp_header(r, "X-Etcd-Index");
        if (!v)
                return false;
        *ret = strtoull(v, NULL, 10);
        return true;
}

static void headers_clear(HdResp *r) {
        for (size_t i = 0; i < r->n_headers; i++) {
                free(r->names[i]);
                free(r->values[i]);
        }
        r->n_headers = 0;
}

static size_t on_header(char *p, size_t s, size_t n, void *u) {
        HdResp *r = u;
        size_t len = s * n, e = len;
        const char *colon;

        while (e > 0 && (p[e - 1] == '\r' || p[e - 1] == '\n'))
                e--;
        if (e >= 5 && strncmp(p, "HTTP/", 5) == 0) {
                /* A new status line (after a 100 Continue): only the final response counts. */
                headers_clear(r);
                return len;
        }
        colon = memchr(p, ':', e);
        if (!colon)
                return len;
        const char *v = colon + 1;
        while (v < p + e && (*v == ' ' || *v == '\t'))
                v++;
        r->names = realloc(r->names, sizeof(char *) * (r->n_headers + 1));
        r->values = realloc(r->values, sizeof(char *) * (r->n_headers + 1));
        if (!r->names || !r->values)
                return 0;
        r->names[r->n_headers] = strndup(p, (size_t) (colon - p));
        r->values[r->n_headers] = strndup(v, (size_t) (p + e - v));
        r->n_headers++;
        return len;
}

static size_t on_body(char *p, size_t s, size_t n, void *u) {
        HdResp *r = u;
        return buf_append(&r->body, p, s * n) < 0 ? 0 : s * n;
}

int hd_xfer_setup(HdXfer *x, const char *base, const char *method, const char *path_query, const char *body,
                  size_t body_len, const char *content_type, long timeout_ms) {
        _cleanup_free_ char *url = NULL, *ct = NULL;

        if (!x->easy)
                x->easy = curl_easy_init();
        if (!x->easy)
                return -ENOMEM;
        curl_slist_free_all(x->headers);
        x->headers = NULL;
        hd_resp_done(&x->resp);
        if (asprintf(&url, "%s%s", base, path_query) < 0)
                return -ENOMEM;
        curl_easy_reset(x->easy);
        curl_easy_setopt(x->easy, CURLOPT_URL, url);
        curl_easy_setopt(x->easy, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, &x->resp);
        curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, &x->resp);
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
        if (streq(method, "HEAD"))
                curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
        else
                curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
                curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
                curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, body);
        }
        if (content_type) {
                if (asprintf(&ct, "Content-Type: %s", content_type) < 0)
                        return -ENOMEM;
                x->headers = curl_slist_append(x->headers, ct);
        }
        if (x->headers)
                curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
        return 0;
}

void hd_xfer_done(HdXfer *x) {
        if (x->easy)
                curl_easy_cleanup(x->easy);
        curl_slist_free_all(x->headers);
        hd_resp_done(&x->resp);
        *x = (HdXfer) {};
}

static void collect(CURLM *m) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(m, &left)))
                if (msg->msg == CURLMSG_DONE) {
                        HdXfer *x = NULL;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &x);
                        x->resp.result = msg->data.result;
                        x->resp.done = true;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->resp.status);
                }
}

int hd_multi_step(CURLM *m, HdXfer **xs, size_t n, int wait_ms) {
        int running = 0;

        curl_multi_perform(m, &running);
        if (running > 0 && wait_ms > 0) {
                curl_multi_poll(m, NULL, 0, wait_ms, NULL);
                curl_multi_perform(m, &running);
        }
        collect(m);
        for (size_t i = 0; i < n; i++)
                if (!xs[i]->resp.done)
                        curl_easy_getinfo(xs[i]->easy, CURLINFO_RESPONSE_CODE, &xs[i]->resp.status);
        return running;
}

void hd_multi_run(CURLM *m, HdXfer **xs, size_t n) {
        for (size_t i = 0; i < n; i++) {
                xs[i]->resp.done = false;
                curl_multi_add_handle(m, xs[i]->easy);
        }
        while (hd_multi_step(m, xs, n, 100) > 0)
                ;
        for (size_t i = 0; i < n; i++)
                curl_multi_remove_handle(m, xs[i]->easy);
}
