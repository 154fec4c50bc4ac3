/* SPDX-License-Identifier: MIT */
/* Raw HTTP client helpers for tests; see test-http.h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "shared/macro.h"
#include "test-http.h"

#define TEST_HTTP_TIMEOUT (10 * USEC_PER_SEC)

void test_response_done(TestResponse *r) {
        free(r->head);
        free(r->body);
        *r = (TestResponse) {};
}

const char *test_response_header(const TestResponse *r, const char *name, char *buf, size_t size) {
        size_t nl = strlen(name);

        for (const char *l = r->head ? strstr(r->head, "\r\n") : NULL; l; l = strstr(l, "\r\n")) {
                l += 2;
                if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
                        const char *v = l + nl + 1, *e = strstr(v, "\r\n");
                        while (*v == ' ')
                                v++;
                        (void) snprintf(buf, size, "%.*s", (int) (e ? e - v : (long) strlen(v)), v);
                        return buf;
                }
        }
        return NULL;
}

int test_tcp_connect(int port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        (void) fcntl(fd, F_SETFL, O_NONBLOCK);
        return fd;
}

int test_send_all(sd_event *e, int fd, const void *data, size_t len, usec_t timeout_usec) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        const char *p = data;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n > 0) {
                        p += n;
                        len -= (size_t) n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN)
                        return -errno;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        return -ETIMEDOUT;
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        }
        return 0;
}

/* One non-blocking read; 1 = got data, 0 = EOF, -EAGAIN = nothing yet. */
static int recv_some(int fd, Buf *b) {
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

        if (n > 0)
                return buf_append(b, chunk, (size_t) n) < 0 ? -ENOMEM : 1;
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
                return 0;
        return -errno;
}

int test_recv_until(sd_event *e, int fd, Buf *b, const char *needle, usec_t timeout_usec) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;

        for (;;) {
                if (needle && b->data && memmem(b->data, b->len, needle, strlen(needle)))
                        return 1;
                int r = recv_some(fd, b);
                if (r == 0)
                        return needle && b->data && memmem(b->data, b->len, needle, strlen(needle)) ? 1 : 0;
                if (r == 1)
                        continue;
                if (r != -EAGAIN)
                        return r;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        return -ETIMEDOUT;
                (void) sd_event_run(e, 5 * USEC_PER_MSEC);
        }
}

/* Decodes a complete chunked body; returns 1 when complete, 0 when more is needed. */
static int dechunk(const char *p, size_t len, Buf *out) {
        size_t i = 0;

        buf_clear(out);
        for (;;) {
                const char *eol = memmem(p + i, len - i, "\r\n", 2);
                unsigned long n;
                if (!eol)
                        return 0;
                n = strtoul(p + i, NULL, 16);
                i = (size_t) (eol - p) + 2;
                if (n == 0)
                        return memmem(p + i, len - i, "\r\n", 2) ? 1 : 0;
                if (len - i < n + 2)
                        return 0;
                if (buf_append(out, p + i, n) < 0)
                        return -ENOMEM;
                i += n + 2;
        }
}

static int recv_response(sd_event *e, int fd, TestResponse *ret, usec_t timeout_usec, bool head_only) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        _cleanup_(buf_done) Buf b = BUF_INIT(0), body = BUF_INIT(0);
        bool eof = false;
        int r;

        r = test_recv_until(e, fd, &b, "\r\n\r\n", timeout_usec);
        if (r <= 0)
                return r == 0 ? -ECONNRESET : r;
        for (;;) {
                const char *end = memmem(b.data, b.len, "\r\n\r\n", 4);
                size_t hl = (size_t) (end - b.data) + 4;
                TestResponse t = { .head = strndup(b.data, hl - 2) };
                char v[64];
                bool done = false;

                if (!t.head)
                        return -ENOMEM;
                t.status = atoi(b.data + 9);
                if (head_only)
                        done = true;
                else if (test_response_header(&t, "Content-Length", v, sizeof(v))) {
                        size_t cl = strtoul(v, NULL, 10);
                        if (b.len - hl >= cl) {
                                done = true;
                                (void) buf_append(&body, b.data + hl, cl);
                        }
                } else if (test_response_header(&t, "Transfer-Encoding", v, sizeof(v))) {
                        done = dechunk(b.data + hl, b.len - hl, &body) == 1;
                } else if (eof || t.status == 204 || t.status == 304) {
                        done = true;
                        (void) buf_append(&body, b.data + hl, b.len - hl);
                }
                if (done || eof) {
                        if (!done) {
                                test_response_done(&t);
                                return -ECONNRESET;
                        }
                        /* Peek whether the server closes the connection right after. */
                        if (!eof && (test_response_header(&t, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0))
                                (void) test_recv_until(e, fd, &b, NULL, 500 * USEC_PER_MSEC), eof = true;
                        t.closed = eof;
                        t.body_len = body.len;
                        t.body = buf_steal(&body);
                        *ret = t;
                        return 0;
                }
                test_response_done(&t);
                r = recv_some(fd, &b);
                if (r == 0)
                        eof = true;
                else if (r == -EAGAIN) {
                        if (now_usec(CLOCK_MONOTONIC) > deadline)
                                return -ETIMEDOUT;
                        (void) sd_event_run(e, 5 * USEC_PER_MSEC);
                } else if (r < 0)
                        return r;
        }
}

int test_recv_response(sd_event *e, int fd, TestResponse *ret, usec_t timeout_usec) {
        return recv_response(e, fd, ret, timeout_usec, false);
}

int test_recv_head_response(sd_event *e, int fd, TestResponse *ret, usec_t timeout_usec) {
        return recv_response(e, fd, ret, timeout_usec, true);
}

int test_http(sd_event *e, int port, const char *raw, TestResponse *ret) {
        _cleanup_close_ int fd = test_tcp_connect(port);
        int r;

        if (fd < 0)
                return fd;
        r = test_send_all(e, fd, raw, strlen(raw), TEST_HTTP_TIMEOUT);
        if (r < 0)
                return r;
        return recv_response(e, fd, ret, TEST_HTTP_TIMEOUT, strncmp(raw, "HEAD ", 5) == 0);
}

int test_http_simple(sd_event *e, int port, const char *method, const char *path, const char *ctype,
                     const char *body, TestResponse *ret) {
        _cleanup_free_ char *raw = NULL;

        if (body) {
                if (asprintf(&raw, "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%s", method, path, ctype ?: "application/x-www-form-urlencoded",
                             strlen(body), body) < 0)
                        return -ENOMEM;
        } else if (asprintf(&raw, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", method, path) < 0)
                return -ENOMEM;
        return test_http(e, port, raw, ret);
}
