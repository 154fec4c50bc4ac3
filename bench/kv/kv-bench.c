/* SPDX-License-Identifier: MIT */
/* Load generator for etcd-v2-compatible servers (flotilla-kv and etcd alike): N keep-alive
 * HTTP/1.1 connections, one request in flight on each, spread over the endpoints, for a fixed
 * time. Reports throughput and latency percentiles as one JSON line. Single-threaded epoll with
 * hand-written request/response handling, so the client costs far less CPU than the server.
 *
 *   kv-bench --endpoints URL,URL --mode write|read|qread|watch [--clients N] [--seconds S]
 *            [--value-size B] [--keys K] [--watchers W] [--events E] [--interval-ms MS]
 *
 * watch: W connections long-poll one key; a writer sets it E times, MS (20) ms apart, with its send
 * time in the value; each watcher's delivery latency is recorded, up to the kernel's receive
 * timestamp of the bytes that completed the response.
 * fill: writes keys bench/k0 .. bench/k<K-1> once each (for memory and restart measurements). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENDPOINTS 8
#define RBUF 65536

typedef enum Mode { MODE_WRITE, MODE_READ, MODE_QREAD, MODE_WATCH, MODE_FILL } Mode;

typedef struct Conn {
        int fd;
        int endpoint;
        bool watcher;
        bool out_armed;                 /* EPOLLOUT registered */
        uint64_t sent_usec;
        uint64_t rx_real_usec;          /* kernel receive time of the last bytes read (watchers) */
        uint64_t wait_index;
        char rbuf[RBUF];
        size_t rlen;
        char wbuf[8192];
        size_t wlen, woff;
} Conn;

static struct {
        Mode mode;
        int n_endpoints;
        struct sockaddr_in addr[MAX_ENDPOINTS];
        char hostport[MAX_ENDPOINTS][64];
        int clients, watchers, events, keys, value_size, interval_ms;
        double seconds;
        char *value;
        uint64_t *lat;                  /* microseconds */
        size_t n_lat, cap_lat;
        uint64_t errors, requests;
        int epfd;
        uint64_t seq;
        uint64_t start_index;
} B;

static uint64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* The writer stamps each change with this clock because the kernel's receive timestamps
 * (SO_TIMESTAMPNS) that watchers compare it with are CLOCK_REALTIME. */
static uint64_t real_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void record(uint64_t us) {
        if (B.n_lat == B.cap_lat) {
                B.cap_lat = B.cap_lat ? B.cap_lat * 2 : 1 << 16;
                B.lat = realloc(B.lat, B.cap_lat * sizeof(uint64_t));
                if (!B.lat)
                        abort();
        }
        B.lat[B.n_lat++] = us;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(double p) {
        if (B.n_lat == 0)
                return 0;
        size_t i = (size_t) (p * (double) (B.n_lat - 1) + 0.5);
        return (double) B.lat[i] / 1000.0;
}

static int conn_open(Conn *c) {
        int one = 1;

        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Watch deliveries are timed when the kernel received them, not when this one thread got
         * round to them: with 1000 watchers the client's own queue would otherwise be measured. */
        if (B.mode == MODE_WATCH && setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0) {
                int r = -errno;
                close(c->fd);
                return r;
        }
        if (connect(c->fd, (struct sockaddr *) &B.addr[c->endpoint], sizeof(B.addr[0])) < 0) {
                int r = -errno;
                close(c->fd);
                return r;
        }
        (void) fcntl(c->fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        return epoll_ctl(B.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0 ? -errno : 0;
}

static void conn_flush(Conn *c) {
        while (c->woff < c->wlen) {
                ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
                if (n <= 0)
                        break;
                c->woff += (size_t) n;
        }
        bool want_out = c->woff < c->wlen;
        if (want_out != c->out_armed) { /* an epoll_ctl per request would be most of this client's cost */
                struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };
                (void) epoll_ctl(B.epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->out_armed = want_out;
        }
}

static void conn_request(Conn *c) {
        unsigned k;

        if (B.mode == MODE_FILL && !c->watcher) {
                if (B.seq >= (uint64_t) B.keys)
                        return; /* this connection is done */
                B.mode = MODE_WRITE;
                conn_request(c);
                B.mode = MODE_FILL;
                return;
        }
        k = (unsigned) (B.seq++ % (uint64_t) B.keys);
        const char *h = B.hostport[c->endpoint];
        int n;

        if (c->watcher)
                n = snprintf(c->wbuf, sizeof(c->wbuf),
                             "GET /v2/keys/bench-fanout?wait=true&waitIndex=%llu HTTP/1.1\r\nHost: %s\r\n\r\n",
                             (unsigned long long) c->wait_index, h);
        else if (B.mode == MODE_WRITE)
                n = snprintf(c->wbuf, sizeof(c->wbuf),
                             "PUT /v2/keys/bench/k%u HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                             "Content-Length: %d\r\n\r\nvalue=%s", k, h, B.value_size + 6, B.value);
        else if (B.mode == MODE_WATCH) /* the writer */
                n = snprintf(c->wbuf, sizeof(c->wbuf),
                             "PUT /v2/keys/bench-fanout HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                             "Content-Length: 26\r\n\r\nvalue=t%019llu", h, (unsigned long long) real_us());
        else
                n = snprintf(c->wbuf, sizeof(c->wbuf), "GET /v2/keys/bench/k%u%s HTTP/1.1\r\nHost: %s\r\n\r\n", k,
                             B.mode == MODE_QREAD ? "?quorum=true" : "", h);
        c->wlen = (size_t) n;
        c->woff = 0;
        c->sent_usec = now_us();
        conn_flush(c);
}

/* Returns the length of one complete response at the start of buf, or 0 if incomplete. */
static size_t response_length(const char *buf, size_t len, int *ret_status, const char **ret_body, size_t *ret_blen) {
        const char *end = memmem(buf, len, "\r\n\r\n", 4), *cl, *te;
        size_t hl;

        if (!end)
                return 0;
        hl = (size_t) (end - buf) + 4;
        *ret_status = atoi(buf + 9);
        cl = memmem(buf, hl, "Content-Length:", 15);
        te = memmem(buf, hl, "Transfer-Encoding: chunked", 26);
        if (cl && !te) {
                size_t n = strtoul(cl + 15, NULL, 10);
                if (len < hl + n)
                        return 0;
                *ret_body = buf + hl;
                *ret_blen = n;
                return hl + n;
        }
        if (te) {
                /* Responses here are one chunk plus the terminator. */
                const char *term = memmem(buf + hl, len - hl, "\r\n0\r\n\r\n", 7);
                if (!term)
                        return 0;
                *ret_body = buf + hl;
                *ret_blen = (size_t) (term - (buf + hl));
                return (size_t) (term - buf) + 7;
        }
        *ret_body = buf + hl;
        *ret_blen = 0;
        return hl;
}

static void on_response(Conn *c, int status, const char *body, size_t blen) {
        uint64_t now = now_us();

        if (c->watcher) {
                const char *t = memmem(body, blen, "\"value\":\"t", 10), *mi = memmem(body, blen, "\"modifiedIndex\":", 16);
                if (status == 200 && t && mi) {
                        uint64_t sent = strtoull(t + 10, NULL, 10);
                        record(c->rx_real_usec > sent ? c->rx_real_usec - sent : 0);
                        c->wait_index = strtoull(mi + 16, NULL, 10) + 1;
                } else if (blen > 0)
                        B.errors++;
                conn_request(c);
                return;
        }
        B.requests++;
        if (status / 100 != 2 && !(status == 404 && B.mode != MODE_WRITE && B.mode != MODE_FILL))
                B.errors++;
        if (B.mode != MODE_WATCH) /* in watch mode only deliveries are samples, not the writer's requests */
                record(now - c->sent_usec);
        if (B.mode != MODE_WATCH)
                conn_request(c);
}

static ssize_t conn_recv(Conn *c) {
        union {
                char buf[CMSG_SPACE(sizeof(struct timespec))];
                struct cmsghdr align;
        } control;
        struct iovec iov = { .iov_base = c->rbuf + c->rlen, .iov_len = sizeof(c->rbuf) - c->rlen };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (!c->watcher)
                return recv(c->fd, iov.iov_base, iov.iov_len, 0);
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);
        n = recvmsg(c->fd, &mh, 0);
        if (n <= 0)
                return n;
        c->rx_real_usec = real_us(); /* no timestamp came: as late as it can be */
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec ts;
                        memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
                        c->rx_real_usec = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
                }
        return n;
}

static void conn_read(Conn *c) {
        for (;;) {
                ssize_t n = conn_recv(c);
                if (n <= 0) {
                        if (n < 0 && errno == EAGAIN)
                                break;
                        fprintf(stderr, "kv-bench: connection closed by server\n");
                        exit(EXIT_FAILURE);
                }
                c->rlen += (size_t) n;
                for (;;) {
                        int status;
                        const char *body;
                        size_t blen, used = response_length(c->rbuf, c->rlen, &status, &body, &blen);
                        if (used == 0)
                                break;
                        on_response(c, status, body, blen);
                        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
                        c->rlen -= used;
                }
                if (c->rlen == sizeof(c->rbuf)) {
                        fprintf(stderr, "kv-bench: response too large\n");
                        exit(EXIT_FAILURE);
                }
        }
}

static int parse_endpoints(const char *s) {
        char *copy = strdup(s), *save = NULL;

        for (char *e = strtok_r(copy, ",", &save); e && B.n_endpoints < MAX_ENDPOINTS; e = strtok_r(NULL, ",", &save)) {
                const char *hp = strncmp(e, "http://", 7) == 0 ? e + 7 : e, *colon = strrchr(hp, ':');
                if (!colon)
                        return -EINVAL;
                B.addr[B.n_endpoints] = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(colon + 1)),
                                                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                (void) snprintf(B.hostport[B.n_endpoints], sizeof(B.hostport[0]), "%s", hp);
                B.n_endpoints++;
        }
        free(copy);
        return B.n_endpoints > 0 ? 0 : -EINVAL;
}

static void run_loop(Conn *conns, int n, uint64_t until_us, int *writer_events_left, Conn *writer) {
        struct epoll_event evs[256];
        uint64_t next_write = now_us();

        while (now_us() < until_us) {
                if (B.mode == MODE_FILL && B.requests >= (uint64_t) B.keys)
                        break;
                int timeout = 10;
                if (writer && *writer_events_left > 0 && now_us() >= next_write && writer->woff >= writer->wlen) {
                        conn_request(writer);
                        (*writer_events_left)--;
                        next_write = now_us() + (uint64_t) B.interval_ms * 1000;
                }
                if (writer && *writer_events_left == 0 && B.n_lat >= (size_t) B.watchers * (size_t) B.events)
                        break;
                int k = epoll_wait(B.epfd, evs, 256, timeout);
                for (int i = 0; i < k; i++) {
                        Conn *c = evs[i].data.ptr;
                        if (evs[i].events & EPOLLOUT)
                                conn_flush(c);
                        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                conn_read(c);
                }
        }
        (void) conns;
        (void) n;
}

int main(int argc, char **argv) {
        const char *endpoints = "http://127.0.0.1:2379", *mode = "write";
        struct rlimit rl;
        Conn *conns;
        int total;

        B.clients = 16;
        B.seconds = 10;
        B.value_size = 256;
        B.keys = 10000;
        B.watchers = 1000;
        B.events = 50;
        B.interval_ms = 20;
        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--endpoints"))
                        endpoints = argv[i + 1];
                else if (!strcmp(argv[i], "--mode"))
                        mode = argv[i + 1];
                else if (!strcmp(argv[i], "--clients"))
                        B.clients = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--seconds"))
                        B.seconds = atof(argv[i + 1]);
                else if (!strcmp(argv[i], "--value-size"))
                        B.value_size = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--keys"))
                        B.keys = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--watchers"))
                        B.watchers = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--events"))
                        B.events = atoi(argv[i + 1]);
                else if (!strcmp(argv[i], "--interval-ms"))
                        B.interval_ms = atoi(argv[i + 1]);
                else {
                        fprintf(stderr, "kv-bench: unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        B.mode = !strcmp(mode, "write") ? MODE_WRITE : !strcmp(mode, "read") ? MODE_READ
                 : !strcmp(mode, "qread") ? MODE_QREAD : !strcmp(mode, "watch") ? MODE_WATCH
                 : !strcmp(mode, "fill") ? MODE_FILL : -1;
        if ((int) B.mode < 0 || parse_endpoints(endpoints) < 0 || B.clients < 1 || B.value_size < 1 ||
            B.value_size > 4000 || B.keys < 1) {
                fprintf(stderr, "kv-bench: bad arguments\n");
                return 2;
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        B.value = malloc((size_t) B.value_size + 1);
        memset(B.value, 'v', (size_t) B.value_size);
        B.value[B.value_size] = 0;
        B.epfd = epoll_create1(EPOLL_CLOEXEC);
        total = B.mode == MODE_WATCH ? B.watchers + 1 : B.clients;
        conns = calloc((size_t) total, sizeof(Conn));
        for (int i = 0; i < total; i++) {
                conns[i].endpoint = i % B.n_endpoints;
                if (conn_open(&conns[i]) < 0) {
                        fprintf(stderr, "kv-bench: cannot connect to %s\n", B.hostport[conns[i].endpoint]);
                        return 1;
                }
        }

        uint64_t t0 = now_us(), t1;
        if (B.mode == MODE_WATCH) {
                /* Learn the current index with a first write, then register every watcher after it. */
                int left = 1;
                Conn *w = &conns[B.watchers];
                run_loop(conns, total, now_us(), &left, w);
                conn_request(w);
                while (B.requests == 0)
                        run_loop(conns, total, now_us() + 10000, &left, NULL);
                B.n_lat = 0;
                B.requests = 0;
                for (int i = 0; i < B.watchers; i++) {
                        conns[i].watcher = true;
                        conns[i].wait_index = 0; /* from now */
                        conn_request(&conns[i]);
                }
                run_loop(conns, total, now_us() + 1000000, &left, NULL); /* let every watch register */
                left = B.events;
                t0 = now_us();
                run_loop(conns, total, t0 + (uint64_t) (B.seconds * 1e6), &left, w);
        } else {
                for (int i = 0; i < total; i++)
                        conn_request(&conns[i]);
                run_loop(conns, total, t0 + (uint64_t) (B.seconds * 1e6), NULL, NULL);
        }
        t1 = now_us();
        qsort(B.lat, B.n_lat, sizeof(uint64_t), cmp_u64);
        printf("{\"mode\":\"%s\",\"clients\":%d,\"requests\":%llu,\"errors\":%llu,\"seconds\":%.2f,"
               "\"throughput\":%.1f,\"samples\":%zu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
               mode, B.mode == MODE_WATCH ? B.watchers : B.clients, (unsigned long long) B.requests,
               (unsigned long long) B.errors, (double) (t1 - t0) / 1e6, (double) B.requests / ((double) (t1 - t0) / 1e6),
               B.n_lat, pct(0.5), pct(0.9), pct(0.99), B.n_lat ? (double) B.lat[B.n_lat - 1] / 1000.0 : 0);
        return B.errors > B.requests / 100 ? 1 : 0;
}
