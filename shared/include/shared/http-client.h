/* SPDX-License-Identifier: MIT */
/* HTTP client: libcurl's multi interface driven by sd-event (after systemd's curl-util.c).
 * Every call has a timeout, a bound on the response it will collect, and finishes with one
 * on_done callback carrying a negative errno for transport failures (HTTP error statuses are
 * not transport failures: error 0, status 404). Bodies can be streamed through on_data instead
 * of collected, for watches.
 *
 * Lifetime: a call belongs to the client from http_call_start() until its on_done returns (the
 * call is freed right after) or http_call_cancel() (no callback at all). Cancelling from inside
 * a callback is allowed; freeing the client from inside a callback is not. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "shared/macro.h"
#include "shared/time-util.h"

typedef struct HttpClient HttpClient;
typedef struct HttpCall HttpCall;

/* error: 0 or -errno (-ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EPIPE, -E2BIG, -EHOSTUNREACH,
 * -EINVAL, -EPROTO, -ENOMEM, -EIO). status: HTTP status, 0 if none was received. body: the
 * collected body (NUL-terminated), empty when streamed. */
typedef void (*HttpCallDone)(HttpCall *call, int error, long status, const char *body, size_t len, void *userdata);
/* Streamed body data; returning < 0 aborts the call (on_done then gets that error). */
typedef int (*HttpCallData)(HttpCall *call, const void *data, size_t len, void *userdata);
/* Status line and headers are complete; body not yet read. */
typedef void (*HttpCallHeaders)(HttpCall *call, long status, void *userdata);

typedef struct HttpCallSpec {
        const char *method;          /* default "GET" */
        const char *url;             /* http:// or https:// */
        const void *body;            /* copied */
        size_t body_len;
        const char *content_type;
        char *const *headers;        /* extra "Name: value" lines, may be NULL */
        usec_t timeout_usec;         /* whole call; 0 = HTTP_CALL_TIMEOUT_DEFAULT */
        usec_t connect_timeout_usec; /* 0 = min(timeout, HTTP_CONNECT_TIMEOUT_DEFAULT) */
        size_t max_response_size;    /* collected body bound; 0 = HTTP_MAX_RESPONSE_DEFAULT */
        HttpCallHeaders on_headers;
        HttpCallData on_data;        /* set: stream the body instead of collecting it */
        HttpCallDone on_done;        /* required */
        void *userdata;
} HttpCallSpec;

#define HTTP_CALL_TIMEOUT_DEFAULT    (30 * USEC_PER_SEC)
#define HTTP_CONNECT_TIMEOUT_DEFAULT (5 * USEC_PER_SEC)
#define HTTP_MAX_RESPONSE_DEFAULT    (64U << 20)

int http_client_new(HttpClient **ret, sd_event *e);
/* Cancels every call (no callbacks) and frees the client. */
HttpClient *http_client_free(HttpClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpClient *, http_client_free)

int http_call_start(HttpClient *c, const HttpCallSpec *spec, HttpCall **ret);
void http_call_cancel(HttpCall *call);
/* A response header of the final response, valid during on_headers/on_data/on_done. */
const char *http_call_header(HttpCall *call, const char *name);
unsigned http_client_active(HttpClient *c);
/* Whether the request may have reached the server (curl began sending it). Valid during
 * on_done: a failure before that is always safe to retry elsewhere, even for writes. */
bool http_call_request_sent(HttpCall *call);
