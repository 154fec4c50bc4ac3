/* SPDX-License-Identifier: MIT */
/* Helpers of the HTTP differential test: one request sent to two servers at once over libcurl,
 * with every response header kept, and the comparison of the two answers as a v2 client sees
 * them (status, headers, body). */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/buf.h"

typedef struct HdResp {
        long status;
        char **names, **values;   /* response headers in order; names as received */
        size_t n_headers;
        Buf body;                 /* de-chunked, NUL-terminated */
        CURLcode result;
        bool done;
} HdResp;

void hd_resp_done(HdResp *r);
/* The first header of that name (case-insensitive), or NULL. */
const char *hd_resp_header(const HdResp *r, const char *name);
/* X-Etcd-Index as a number; false if absent. */
bool hd_resp_index(const HdResp *r, uint64_t *ret);
/* True if the transfer ended by the client's timeout (a watch that never fired). */
static inline bool hd_resp_timed_out(const HdResp *r) {
        return r->result == CURLE_OPERATION_TIMEDOUT;
}

/* A transfer to one server. */
typedef struct HdXfer {
        CURL *easy;
        struct curl_slist *headers;
        HdResp resp;
} HdXfer;

/* Prepares x for METHOD base+path_query with an optional body (content_type NULL: curl's default
 * for a body, application/x-www-form-urlencoded). */
int hd_xfer_setup(HdXfer *x, const char *base, const char *method, const char *path_query, const char *body,
                  size_t body_len, const char *content_type, long timeout_ms);
void hd_xfer_done(HdXfer *x);

/* Runs transfers on m until every one has finished. */
void hd_multi_run(CURLM *m, HdXfer **xs, size_t n);
/* One step of m: reads what arrived, waits up to wait_ms. Returns the number still running. */
int hd_multi_step(CURLM *m, HdXfer **xs, size_t n, int wait_ms);
