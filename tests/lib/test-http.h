/* SPDX-License-Identifier: MIT */
/* Raw HTTP over loopback sockets for tests that must send exactly what they want (malformed,
 * oversized, slow) while the server under test runs on the same sd-event loop. Every helper
 * drives the loop while it waits, and every wait is bounded. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "shared/buf.h"
#include "shared/time-util.h"

typedef struct TestResponse {
        int status;
        char *head;   /* status line + headers */
        char *body;   /* de-chunked */
        size_t body_len;
        bool closed;  /* the server closed the connection after the response */
} TestResponse;

void test_response_done(TestResponse *r);
/* Value of a header in r->head (case-insensitive name), copied into buf; NULL if absent. */
const char *test_response_header(const TestResponse *r, const char *name, char *buf, size_t size);

int test_tcp_connect(int port);
int test_send_all(sd_event *e, int fd, const void *data, size_t len, usec_t timeout_usec);
/* Reads into b until it contains needle (returns 1), EOF (0), or the timeout (-ETIMEDOUT). */
int test_recv_until(sd_event *e, int fd, Buf *b, const char *needle, usec_t timeout_usec);
/* Reads one whole response (Content-Length, chunked, or until close). */
int test_recv_response(sd_event *e, int fd, TestResponse *ret, usec_t timeout_usec);
/* The same for a response to HEAD, which has headers only. */
int test_recv_head_response(sd_event *e, int fd, TestResponse *ret, usec_t timeout_usec);
/* connect + send + receive; closes the socket. */
int test_http(sd_event *e, int port, const char *raw, TestResponse *ret);
/* Builds and runs "METHOD path HTTP/1.1" with optional body (form-encoded when ctype NULL). */
int test_http_simple(sd_event *e, int port, const char *method, const char *path, const char *ctype,
                     const char *body, TestResponse *ret);
