/* SPDX-License-Identifier: MIT */
/* Peer transport: one dialled connection per peer for what we send, accepted connections for
 * what we receive, a versioned handshake, length-prefixed frames, bounded queues. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv-peer.h"
#include "shared/event-util.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/unaligned.h"
#include "shared/net-util.h"
#include "shared/parse-util.h"
#include "shared/random-util.h"

#define PEER_MAGIC          "FLKV"
#define PREAMBLE_SIZE       32    /* magic + 2 versions + cluster + from + to */
#define REPLY_SIZE          16    /* magic + version + status + id */
#define FRAME_HEADER        5     /* u32 length + u8 type */
#define FRAME_MESSAGE       1
#define FRAME_PING          2
#define FRAME_PONG          3
#define FRAME_MEMBERS       4
#define MEMBERS_MAX         (1U << 20)  /* a member table answer */
#define MAX_LISTENERS       4

enum {
        STATUS_OK = 0,
        STATUS_VERSION = 1,
        STATUS_CLUSTER = 2,
        STATUS_MEMBER = 3,
        STATUS_BUSY = 4,
        STATUS_REMOVED = 5,
};

typedef enum PeerState {
        PEER_DOWN,
        PEER_CONNECTING,
        PEER_HANDSHAKE,
        PEER_UP,
} PeerState;

/* A member we dial and send to. */
typedef struct Peer {
        KvPeerTransport *t;
        uint64_t id;
        char *host, *port;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;   /* reconnect backoff, or the handshake deadline */
        PeerState state;
        Buf out;                  /* whole frames only */
        size_t out_off;           /* bytes of out already written */
        Buf in;                   /* handshake reply and PONG frames */
        unsigned failures;
        bool reported_up;
        KvPeerStats stats;
        double rtt_sum, rtt_sumsq;
        struct Peer *prev, *next;
} Peer;

/* A member that dialled us. */
typedef struct Inbound {
        KvPeerTransport *t;
        int fd;
        sd_event_source *io, *timer;
        bool handshaken;
        bool query;               /* a joining member's membership query: answered, then closed */
        uint64_t from;
        Buf in;
        size_t in_off;
        Buf out;                  /* handshake reply and PONGs */
        size_t out_off;
        struct Inbound *prev, *next;
} Inbound;

struct KvPeerTransport {
        sd_event *event;
        KvPeerConfig cfg;
        Peer *peers;
        sd_event_source *flush;   /* defer: sends what this loop iteration queued */
        Inbound *inbound;
        unsigned n_inbound;
        int listen_fds[MAX_LISTENERS];
        sd_event_source *listen_io[MAX_LISTENERS];
        int listen_ports[MAX_LISTENERS];
        unsigned n_listeners;
};

/* Appends one frame to b, which is bounded by the caller's limit. */
static int frame_append(Buf *b, uint8_t type, const void *payload, size_t len) {
        uint8_t h[FRAME_HEADER];
        int r;

        if (len > UINT32_MAX - 1)
                return -E2BIG;
        r = buf_reserve(b, FRAME_HEADER + len);
        if (r < 0)
                return r;
        put_le32(h, (uint32_t) (len + 1));
        h[4] = type;
        (void) buf_append(b, h, sizeof(h));
        return buf_append(b, payload, len);
}

int kv_peer_parse_url(const char *url, char **ret_host, char **ret_port) {
        _cleanup_free_ char *host = NULL, *port = NULL;
        int r = net_split_host_port(url, &host, &port);

        if (r < 0)
                return r;
        if (isempty(host))
                return -EINVAL;
        *ret_host = TAKE_PTR(host);
        *ret_port = TAKE_PTR(port);
        return 0;
}

/* ---------------------------------------------------------------- dialling side */

static void peer_connect(Peer *p);

static void peer_report(Peer *p, bool up) {
        KvPeerTransport *t = p->t;

        if (p->reported_up == up)
                return;
        p->reported_up = up;
        p->stats.reachable = up;
        if (!up)
                p->stats.last_pong_usec = 0;
        if (t->cfg.on_status)
                t->cfg.on_status(p->id, up, t->cfg.userdata);
}

static int on_peer_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Drops the connection and whatever was queued on it (a half-written frame cannot continue on
 * a new connection; Raft retransmits), then schedules a reconnect. */
static void peer_fail(Peer *p, int error, const char *what) {
        KvPeerTransport *t = p->t;
        usec_t delay;

        if (p->state != PEER_DOWN)
                log_debug_errno(error, "peer %" PRIx64 ": %s: %m", p->id, what);
        p->io = sd_event_source_disable_unref(p->io);
        p->fd = safe_close(p->fd);
        p->state = PEER_DOWN;
        if (p->out.len > p->out_off)
                p->stats.messages_dropped++;
        buf_clear(&p->out);
        p->out_off = 0;
        buf_clear(&p->in);
        delay = backoff_usec(t->cfg.backoff_min_usec, t->cfg.backoff_max_usec, p->failures++);
        if (event_reset_time_relative(t->event, &p->timer, delay, on_peer_timer, p) < 0)
                log_debug("peer %" PRIx64 ": cannot schedule a reconnect", p->id);
        peer_report(p, false);
}

static void peer_update_events(Peer *p) {
        uint32_t ev = EPOLLIN;

        if (p->state == PEER_CONNECTING || (p->state == PEER_UP && p->out.len > p->out_off))
                ev |= EPOLLOUT;
        if (p->io)
                (void) sd_event_source_set_io_events(p->io, ev);
}

static int peer_flush(Peer *p) {
        while (p->out.len > p->out_off) {
                ssize_t n = send(p->fd, p->out.data + p->out_off, p->out.len - p->out_off, MSG_NOSIGNAL);
                if (n < 0)
                        return errno == EAGAIN ? 0 : -errno;
                p->out_off += (size_t) n;
                p->stats.bytes_sent += (uint64_t) n;
        }
        buf_clear(&p->out);
        p->out_off = 0;
        return 0;
}

static void peer_record_rtt(Peer *p, uint64_t sent_usec) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        double ms, n, mean;

        if (sent_usec > now)
                return;
        ms = (double) (now - sent_usec) / 1000.0;
        p->stats.pongs++;
        p->stats.last_pong_usec = now;
        n = (double) p->stats.pongs;
        p->rtt_sum += ms;
        p->rtt_sumsq += ms * ms;
        mean = p->rtt_sum / n;
        p->stats.rtt_last_ms = ms;
        p->stats.rtt_min_ms = p->stats.pongs == 1 ? ms : MIN(p->stats.rtt_min_ms, ms);
        p->stats.rtt_max_ms = MAX(p->stats.rtt_max_ms, ms);
        p->stats.rtt_avg_ms = mean;
        p->stats.rtt_stddev_ms = sqrt(MAX(0.0, p->rtt_sumsq / n - mean * mean));
}

/* Handles the handshake reply, then PONG frames. */
static int peer_read(Peer *p) {
        uint8_t chunk[4096];

        for (;;) {
                ssize_t n = recv(p->fd, chunk, sizeof(chunk), 0);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0)
                        return errno == EAGAIN ? 0 : -errno;
                if (buf_append(&p->in, chunk, (size_t) n) < 0)
                        return -ENOBUFS;

                const uint8_t *d = (const uint8_t *) p->in.data;
                size_t off = 0;
                if (p->state == PEER_HANDSHAKE) {
                        if (p->in.len < REPLY_SIZE)
                                continue;
                        if (memcmp(d, PEER_MAGIC, 4) != 0)
                                return -EPROTO;
                        uint16_t status = get_le16(d + 6);
                        if (status == STATUS_REMOVED) {
                                log_warning("peer %" PRIx64 " at %s:%s refused us: this member was removed from the cluster",
                                            p->id, p->host, p->port);
                                if (p->t->cfg.on_removed)
                                        p->t->cfg.on_removed(p->id, p->t->cfg.userdata);
                                return -ECONNREFUSED;
                        }
                        if (status != STATUS_OK) {
                                log_warning("peer %" PRIx64 " at %s:%s refused us: %s", p->id, p->host, p->port,
                                            status == STATUS_VERSION ? "no common protocol version"
                                            : status == STATUS_CLUSTER ? "it belongs to another cluster"
                                            : status == STATUS_MEMBER ? "it is another member than expected"
                                                                      : "busy");
                                return -ECONNREFUSED;
                        }
                        if (get_le64(d + 8) != p->id) {
                                log_warning("peer at %s:%s answered as %" PRIx64 ", expected %" PRIx64, p->host, p->port,
                                            get_le64(d + 8), p->id);
                                return -ECONNREFUSED;
                        }
                        p->state = PEER_UP;
                        p->failures = 0;
                        p->timer = sd_event_source_disable_unref(p->timer);
                        off = REPLY_SIZE;
                        peer_report(p, true);
                }
                while (p->in.len - off >= FRAME_HEADER) {
                        uint32_t len = get_le32(d + off);
                        if (len != 9 || d[off + 4] != FRAME_PONG)
                                return -EPROTO; /* the listener only ever sends PONGs */
                        if (p->in.len - off < 4 + (size_t) len)
                                break;
                        peer_record_rtt(p, get_le64(d + off + 5));
                        off += 4 + len;
                }
                buf_consume(&p->in, off);
        }
}

static int on_peer_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Peer *p = userdata;
        uint8_t pre[PREAMBLE_SIZE];
        int r = 0, err = 0;
        socklen_t l = sizeof(err);

        if (p->state == PEER_CONNECTING) {
                if (!(revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return 0;
                if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err != 0) {
                        peer_fail(p, err ? -err : -errno, "connect");
                        return 0;
                }
                memcpy(pre, PEER_MAGIC, 4);
                put_le16(pre + 4, KV_PEER_PROTOCOL_MIN);
                put_le16(pre + 6, KV_PEER_PROTOCOL_MAX);
                put_le64(pre + 8, p->t->cfg.cluster_id);
                put_le64(pre + 16, p->t->cfg.self_id);
                put_le64(pre + 24, p->id);
                /* 32 bytes always fit into a fresh socket's buffer. */
                if (send(p->fd, pre, sizeof(pre), MSG_NOSIGNAL) != (ssize_t) sizeof(pre)) {
                        peer_fail(p, -errno, "handshake");
                        return 0;
                }
                p->state = PEER_HANDSHAKE;
                peer_update_events(p);
                return 0;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                r = peer_read(p);
        if (r >= 0 && p->state == PEER_UP && (revents & EPOLLOUT))
                r = peer_flush(p);
        if (r < 0) {
                peer_fail(p, r, "connection lost");
                return 0;
        }
        peer_update_events(p);
        return 0;
}

static int on_peer_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Peer *p = userdata;

        if (p->state == PEER_DOWN)
                peer_connect(p);
        else if (p->state != PEER_UP)
                peer_fail(p, -ETIMEDOUT, "handshake timed out");
        return 0;
}

static void peer_connect(Peer *p) {
        KvPeerTransport *t = p->t;
        struct addrinfo *ai = NULL;
        int one = 1, r;

        /* Resolution blocks for names that need DNS; peer URLs are normally addresses. A name
         * may resolve to several addresses; the first that accepts a connect attempt is used. */
        r = net_resolve(p->host, p->port, 0, &ai);
        if (r < 0) {
                peer_fail(p, r, "resolve");
                return;
        }
        r = -EHOSTUNREACH;
        for (struct addrinfo *a = ai; a && r < 0; a = a->ai_next) {
                p->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (p->fd < 0) {
                        r = -errno;
                        continue;
                }
                (void) setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                (void) setsockopt(p->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
                r = connect(p->fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS ? -errno : 0;
                if (r < 0)
                        p->fd = safe_close(p->fd);
        }
        freeaddrinfo(ai);
        if (r < 0) {
                peer_fail(p, r, "connect");
                return;
        }
        p->state = PEER_CONNECTING;
        r = sd_event_add_io(t->event, &p->io, p->fd, EPOLLOUT | EPOLLIN, on_peer_io, p);
        if (r >= 0)
                r = sd_event_source_set_priority(p->io, KV_PEER_PRIORITY);
        if (r >= 0)
                r = event_reset_time_relative(t->event, &p->timer, t->cfg.handshake_timeout_usec, on_peer_timer, p);
        if (r < 0)
                peer_fail(p, r, "watch socket");
}

static Peer *peer_find(KvPeerTransport *t, uint64_t id) {
        for (Peer *p = t->peers; p; p = p->next)
                if (p->id == id)
                        return p;
        return NULL;
}

static void peer_free(Peer *p) {
        if (!p)
                return;
        LIST_REMOVE(p->t->peers, p);
        sd_event_source_disable_unref(p->io);
        sd_event_source_disable_unref(p->timer);
        safe_close(p->fd);
        buf_done(&p->out);
        buf_done(&p->in);
        free(p->host);
        free(p->port);
        free(p);
}

int kv_peer_add(KvPeerTransport *t, uint64_t id, const char *url) {
        _cleanup_free_ char *host = NULL, *port = NULL;
        Peer *p;
        int r;

        if (id == t->cfg.self_id || id == 0)
                return -EINVAL;
        r = kv_peer_parse_url(url, &host, &port);
        if (r < 0)
                return r;
        if (streq(port, "0"))
                return -EINVAL;
        p = peer_find(t, id);
        if (p) {
                if (streq(p->host, host) && streq(p->port, port))
                        return 0;
                /* The member moved: reconnect to the new address. */
                free(p->host);
                free(p->port);
                p->host = TAKE_PTR(host);
                p->port = TAKE_PTR(port);
                peer_fail(p, -ECONNABORTED, "address changed");
                return 0;
        }
        p = new0(Peer, 1);
        if (!p)
                return -ENOMEM;
        *p = (Peer) { .t = t, .id = id, .fd = -EBADF, .host = TAKE_PTR(host), .port = TAKE_PTR(port),
                      .out = BUF_INIT(t->cfg.max_queue), .in = BUF_INIT(64 * 1024) };
        LIST_PREPEND(t->peers, p);
        peer_connect(p);
        return 0;
}

static void inbound_free(Inbound *c);

int kv_peer_remove(KvPeerTransport *t, uint64_t id) {
        Peer *p = peer_find(t, id);

        /* Its connections to us go too: if it redials, the handshake tells it whether it was
         * removed (is_removed). */
        for (Inbound *c = t->inbound, *next; c; c = next) {
                next = c->next;
                if (c->handshaken && !c->query && c->from == id)
                        inbound_free(c);
        }
        if (!p)
                return -ENOENT;
        peer_free(p);
        return 0;
}

/* Frames queued while the loop dispatches one event (every message of a Raft Ready) go out
 * together once it is done, with one send() per peer and no epoll change: EPOLLOUT is only
 * watched for a peer whose socket buffer filled up. */
static int on_flush(sd_event_source *s, void *userdata) {
        KvPeerTransport *t = userdata;

        for (Peer *p = t->peers, *next; p; p = next) {
                int r;

                next = p->next; /* peer_fail() keeps p, but stay safe against list changes */
                if (p->state != PEER_UP || p->out.len <= p->out_off)
                        continue;
                r = peer_flush(p);
                if (r < 0) {
                        peer_fail(p, r, "connection lost");
                        continue;
                }
                peer_update_events(p);
        }
        return 0;
}

static void schedule_flush(KvPeerTransport *t) {
        if (t->flush)
                (void) sd_event_source_set_enabled(t->flush, SD_EVENT_ONESHOT);
}

int kv_peer_send(KvPeerTransport *t, uint64_t to, const void *msg, size_t len) {
        Peer *p = peer_find(t, to);
        int r;

        if (!p)
                return -ENOENT;
        if (len + 1 > t->cfg.max_frame)
                return -E2BIG;
        if (p->state == PEER_DOWN) {
                p->stats.messages_dropped++;
                return -ENOTCONN;
        }
        r = frame_append(&p->out, FRAME_MESSAGE, msg, len);
        if (r < 0) {
                p->stats.messages_dropped++;
                if (r == -ENOBUFS) {
                        log_debug("peer %" PRIx64 ": send queue full, dropping the connection", p->id);
                        peer_fail(p, r, "send queue full");
                }
                return r;
        }
        p->stats.messages_sent++;
        schedule_flush(t);
        return 0;
}

void kv_peer_ping_all(KvPeerTransport *t) {
        for (Peer *p = t->peers; p; p = p->next) {
                uint8_t nonce[8];
                if (p->state != PEER_UP)
                        continue;
                put_le64(nonce, now_usec(CLOCK_MONOTONIC));
                if (frame_append(&p->out, FRAME_PING, nonce, sizeof(nonce)) >= 0) {
                        p->stats.pings++;
                        schedule_flush(t);
                }
        }
}

int kv_peer_stats(KvPeerTransport *t, uint64_t id, KvPeerStats *ret) {
        Peer *p = peer_find(t, id);
        if (!p)
                return -ENOENT;
        *ret = p->stats;
        return 0;
}

/* ---------------------------------------------------------------- accepting side */

static void inbound_free(Inbound *c) {
        if (!c)
                return;
        LIST_REMOVE(c->t->inbound, c);
        c->t->n_inbound--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        buf_done(&c->in);
        buf_done(&c->out);
        free(c);
}

static int inbound_flush(Inbound *c) {
        while (c->out.len > c->out_off) {
                ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
                if (n < 0)
                        return errno == EAGAIN ? 0 : -errno;
                c->out_off += (size_t) n;
        }
        buf_clear(&c->out);
        c->out_off = 0;
        return 0;
}

/* Validates the dialler's preamble and queues our reply. Returns the status. */
static uint16_t inbound_handshake(Inbound *c, const uint8_t *d, uint16_t *ret_version) {
        KvPeerTransport *t = c->t;
        uint16_t min_v = get_le16(d + 4), max_v = get_le16(d + 6);

        *ret_version = 0;
        if (memcmp(d, PEER_MAGIC, 4) != 0 || min_v > max_v)
                return STATUS_VERSION;
        if (max_v < KV_PEER_PROTOCOL_MIN || min_v > KV_PEER_PROTOCOL_MAX)
                return STATUS_VERSION;
        *ret_version = MIN(max_v, (uint16_t) KV_PEER_PROTOCOL_MAX);
        if (get_le64(d + 8) == 0 && get_le64(d + 16) == 0 && get_le64(d + 24) == 0 && t->cfg.get_members) {
                c->query = true;
                return STATUS_OK;
        }
        if (get_le64(d + 8) != t->cfg.cluster_id)
                return STATUS_CLUSTER;
        if (get_le64(d + 24) != t->cfg.self_id)
                return STATUS_MEMBER;
        c->from = get_le64(d + 16);
        if (t->cfg.is_removed && t->cfg.is_removed(c->from, t->cfg.userdata))
                return STATUS_REMOVED;
        return STATUS_OK;
}

/* Parses what arrived. Returns 0 to keep the connection, < 0 to close it. */
static int inbound_parse(Inbound *c) {
        KvPeerTransport *t = c->t;

        for (;;) {
                const uint8_t *d = (const uint8_t *) c->in.data + c->in_off;
                size_t avail = c->in.len - c->in_off;

                if (!c->handshaken) {
                        uint8_t reply[REPLY_SIZE];
                        uint16_t version, status;

                        if (avail < PREAMBLE_SIZE)
                                return 0;
                        status = inbound_handshake(c, d, &version);
                        memcpy(reply, PEER_MAGIC, 4);
                        put_le16(reply + 4, version);
                        put_le16(reply + 6, status);
                        put_le64(reply + 8, t->cfg.self_id);
                        (void) buf_append(&c->out, reply, sizeof(reply));
                        (void) inbound_flush(c);
                        if (status != STATUS_OK) {
                                log_warning("Refused a peer connection: %s", status == STATUS_VERSION ? "no common protocol version"
                                            : status == STATUS_CLUSTER ? "wrong cluster id"
                                            : status == STATUS_REMOVED ? "from a removed member" : "addressed to another member");
                                return -EPROTO;
                        }
                        c->handshaken = true;
                        c->in_off += PREAMBLE_SIZE;
                        if (c->query) {
                                /* The answer, then nothing: the asker closes, or the handshake
                                 * timer (left running) does. */
                                _cleanup_(buf_done) Buf m = BUF_INIT(MEMBERS_MAX);
                                uint8_t ids[16];
                                put_le64(ids, t->cfg.cluster_id);
                                put_le64(ids + 8, t->cfg.self_id);
                                if (buf_append(&m, ids, sizeof(ids)) < 0 || t->cfg.get_members(&m, t->cfg.userdata) < 0 ||
                                    frame_append(&c->out, FRAME_MEMBERS, m.data, m.len) < 0)
                                        return -ENOBUFS;
                                log_debug("Answered a membership query.");
                                return 0;
                        }
                        c->timer = sd_event_source_disable_unref(c->timer);
                        continue;
                }
                if (c->query)
                        return avail > 0 ? -EPROTO : 0;
                if (avail < FRAME_HEADER)
                        break;
                uint32_t len = get_le32(d);
                uint8_t type = d[4];
                if (len == 0 || (size_t) len - 1 > t->cfg.max_frame)
                        return -EMSGSIZE;
                if (avail < 4 + (size_t) len)
                        break;
                if (type == FRAME_MESSAGE) {
                        if (t->cfg.on_receive)
                                t->cfg.on_receive(c->from, d + FRAME_HEADER, len - 1, t->cfg.userdata);
                } else if (type == FRAME_PING && len == 9) {
                        if (frame_append(&c->out, FRAME_PONG, d + FRAME_HEADER, 8) < 0)
                                return -ENOBUFS;
                } else
                        return -EPROTO;
                c->in_off += 4 + (size_t) len;
        }
        /* Keep the buffer small: drop what was consumed once it dominates. */
        if (c->in_off > 0 && c->in_off * 2 >= c->in.len) {
                buf_consume(&c->in, c->in_off);
                c->in_off = 0;
        }
        return 0;
}

static int on_inbound_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Inbound *c = userdata;
        uint8_t chunk[65536];
        int r = 0;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                /* A bounded number of reads per wakeup keeps one busy peer from starving others. */
                for (int i = 0; i < 16; i++) {
                        ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
                        if (n == 0) {
                                r = -ECONNRESET;
                                break;
                        }
                        if (n < 0) {
                                r = errno == EAGAIN ? 0 : -errno;
                                break;
                        }
                        r = buf_append(&c->in, chunk, (size_t) n);
                        if (r >= 0)
                                r = inbound_parse(c);
                        if (r < 0)
                                break;
                }
        }
        if (r >= 0)
                r = inbound_flush(c);
        if (r < 0) {
                log_debug_errno(r, "Peer connection from %" PRIx64 " closed: %m", c->from);
                inbound_free(c);
                return 0;
        }
        (void) sd_event_source_set_io_events(c->io, EPOLLIN | (c->out.len > c->out_off ? EPOLLOUT : 0));
        return 0;
}

static int on_inbound_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Inbound *c = userdata;
        log_debug("Peer connection did not complete its handshake in time.");
        inbound_free(c);
        return 0;
}

static int on_accept(sd_event_source *s, int lfd, uint32_t revents, void *userdata) {
        KvPeerTransport *t = userdata;

        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), one = 1;
                Inbound *c;

                if (fd < 0)
                        return 0;
                if (t->n_inbound >= t->cfg.max_inbound) {
                        log_warning("Refusing a peer connection: %u open already.", t->n_inbound);
                        safe_close(fd);
                        continue;
                }
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c = new0(Inbound, 1);
                if (!c) {
                        safe_close(fd);
                        continue;
                }
                /* A frame may be as large as max_frame; the buffer bound allows one plus headers. */
                *c = (Inbound) { .t = t, .fd = fd, .in = BUF_INIT(t->cfg.max_frame + 2 * FRAME_HEADER + PREAMBLE_SIZE + 65536),
                                 .out = BUF_INIT(1 << 20) };
                LIST_PREPEND(t->inbound, c);
                t->n_inbound++;
                if (sd_event_add_io(t->event, &c->io, fd, EPOLLIN, on_inbound_io, c) < 0 ||
                    sd_event_source_set_priority(c->io, KV_PEER_PRIORITY) < 0 ||
                    event_reset_time_relative(t->event, &c->timer, t->cfg.handshake_timeout_usec, on_inbound_timeout, c) < 0)
                        inbound_free(c);
        }
}

int kv_peer_listen_fd(KvPeerTransport *t, int fd) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        unsigned i = t->n_listeners;
        int r;

        if (i >= MAX_LISTENERS) {
                safe_close(fd);
                return -E2BIG;
        }
        r = sd_event_add_io(t->event, &t->listen_io[i], fd, EPOLLIN, on_accept, t);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        t->listen_fds[i] = fd;
        t->listen_ports[i] = -1;
        if (getsockname(fd, (struct sockaddr *) &sa, &sl) == 0)
                t->listen_ports[i] = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &sa)->sin6_port
                                                                    : ((struct sockaddr_in *) &sa)->sin_port);
        t->n_listeners++;
        return 0;
}

int kv_peer_listen(KvPeerTransport *t, const char *url) {
        _cleanup_free_ char *host = NULL, *port = NULL;
        int r;

        r = kv_peer_parse_url(url, &host, &port);
        if (r < 0)
                return r;
        r = net_listen(host, port, 128);
        if (r < 0)
                return r;
        return kv_peer_listen_fd(t, r);
}

int kv_peer_port(KvPeerTransport *t, unsigned i) {
        return i < t->n_listeners ? t->listen_ports[i] : -ENOENT;
}

int kv_peer_new(KvPeerTransport **ret, sd_event *e, const KvPeerConfig *cfg) {
        KvPeerTransport *t;

        if (!cfg || cfg->self_id == 0)
                return -EINVAL;
        t = new0(KvPeerTransport, 1);
        if (!t)
                return -ENOMEM;
        t->event = sd_event_ref(e);
        t->cfg = *cfg;
#define DEFAULT(f, v) if (t->cfg.f == 0) t->cfg.f = (v)
        DEFAULT(max_frame, 512U << 20);
        DEFAULT(max_queue, 256U << 20);
        DEFAULT(max_inbound, 64);
        DEFAULT(handshake_timeout_usec, 5 * USEC_PER_SEC);
        DEFAULT(backoff_min_usec, 100 * USEC_PER_MSEC);
        DEFAULT(backoff_max_usec, 2 * USEC_PER_SEC);
#undef DEFAULT
        /* Peer traffic goes before client requests, as the peers' own sockets do. */
        if (sd_event_add_defer(e, &t->flush, on_flush, t) < 0 ||
            sd_event_source_set_priority(t->flush, KV_PEER_PRIORITY) < 0 ||
            sd_event_source_set_enabled(t->flush, SD_EVENT_OFF) < 0) {
                kv_peer_free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

KvPeerTransport *kv_peer_free(KvPeerTransport *t) {
        if (!t)
                return NULL;
        while (t->peers)
                peer_free(t->peers);
        while (t->inbound)
                inbound_free(t->inbound);
        for (unsigned i = 0; i < t->n_listeners; i++) {
                sd_event_source_disable_unref(t->listen_io[i]);
                safe_close(t->listen_fds[i]);
        }
        sd_event_source_disable_unref(t->flush);
        sd_event_unref(t->event);
        free(t);
        return NULL;
}

/* ---------------------------------------------------------------- membership query (joining) */

static int read_full(int fd, void *buf, size_t len, usec_t deadline) {
        uint8_t *p = buf;

        while (len > 0) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (now >= deadline)
                        return -ETIMEDOUT;
                if (poll(&pfd, 1, (int) ((deadline - now + 999) / 1000)) < 0)
                        return -errno;
                n = recv(fd, p, len, MSG_DONTWAIT);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int kv_peer_query_members(const char *url, usec_t timeout_usec, uint64_t *ret_cluster_id, uint64_t *ret_member_id,
                          void **ret_data, size_t *ret_len) {
        _cleanup_free_ char *host = NULL, *port = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
        usec_t deadline = usec_add(now_usec(CLOCK_MONOTONIC), timeout_usec);
        uint8_t pre[PREAMBLE_SIZE] = {}, reply[REPLY_SIZE], h[FRAME_HEADER];
        _cleanup_free_ uint8_t *payload = NULL;
        uint32_t len;
        int r;

        r = kv_peer_parse_url(url, &host, &port);
        if (r < 0)
                return r;
        if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
                return -EHOSTUNREACH;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                freeaddrinfo(ai);
                return -errno;
        }
        r = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
        freeaddrinfo(ai);
        if (r == -EINPROGRESS) {
                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                int err = 0;
                socklen_t l = sizeof(err);
                usec_t now = now_usec(CLOCK_MONOTONIC);
                r = poll(&pfd, 1, now < deadline ? (int) ((deadline - now + 999) / 1000) : 0);
                if (r <= 0)
                        return r < 0 ? -errno : -ETIMEDOUT;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        return -errno;
                r = -err;
        }
        if (r < 0)
                return r;
        /* cluster, from and to all zero: a membership query (protocol version 1). */
        memcpy(pre, PEER_MAGIC, 4);
        put_le16(pre + 4, KV_PEER_PROTOCOL_MIN);
        put_le16(pre + 6, KV_PEER_PROTOCOL_MAX);
        if (send(fd, pre, sizeof(pre), MSG_NOSIGNAL) != (ssize_t) sizeof(pre))
                return -EIO;
        r = read_full(fd, reply, sizeof(reply), deadline);
        if (r < 0)
                return r;
        if (memcmp(reply, PEER_MAGIC, 4) != 0)
                return -EPROTO;
        if (get_le16(reply + 6) != STATUS_OK)
                return get_le16(reply + 6) == STATUS_VERSION ? -EPROTONOSUPPORT : -EPERM;
        r = read_full(fd, h, sizeof(h), deadline);
        if (r < 0)
                return r;
        len = get_le32(h);
        if (h[4] != FRAME_MEMBERS || len < 1 + 16 || len - 1 > MEMBERS_MAX)
                return -EBADMSG;
        payload = malloc(len - 1);
        if (!payload)
                return -ENOMEM;
        r = read_full(fd, payload, len - 1, deadline);
        if (r < 0)
                return r;
        *ret_cluster_id = get_le64(payload);
        *ret_member_id = get_le64(payload + 8);
        *ret_len = len - 1 - 16;
        memmove(payload, payload + 16, *ret_len);
        *ret_data = TAKE_PTR(payload);
        return 0;
}
