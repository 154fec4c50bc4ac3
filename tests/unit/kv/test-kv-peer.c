/* SPDX-License-Identifier: MIT */
/* The peer transport over real loopback connections: delivery, order, size, batching, reconnects,
 * handshake refusals, hostile input and bounded queues. */
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include "kv-peer.h"
#include "test-http.h"
#include "test-util.h"

#define MAX_MSGS 4096

typedef struct Node {
        KvPeerTransport *t;
        uint64_t id;
        int port;
        char url[64];
        unsigned received;
        uint64_t last_from;
        uint32_t seq[MAX_MSGS];     /* first 4 bytes of each message, in arrival order */
        size_t last_len;
        uint8_t last_byte;
        int up_events, down_events;
        bool peer_up[8];
} Node;

static sd_event *event;
static Node nodes[3];

static void on_receive(uint64_t from, const void *msg, size_t len, void *userdata) {
        Node *n = userdata;
        uint32_t s = 0;

        if (len >= 4)
                memcpy(&s, msg, 4);
        if (n->received < MAX_MSGS)
                n->seq[n->received] = s;
        n->received++;
        n->last_from = from;
        n->last_len = len;
        n->last_byte = len ? ((const uint8_t *) msg)[len - 1] : 0;
}

static void on_status(uint64_t peer, bool up, void *userdata) {
        Node *n = userdata;
        if (up)
                n->up_events++;
        else
                n->down_events++;
        if (peer < 8)
                n->peer_up[peer] = up;
}

static void node_start(Node *n, uint64_t id, uint64_t cluster, int port) {
        KvPeerConfig cfg = { .cluster_id = cluster, .self_id = id, .on_receive = on_receive, .on_status = on_status,
                             .userdata = n, .backoff_min_usec = 20 * USEC_PER_MSEC, .backoff_max_usec = 100 * USEC_PER_MSEC,
                             .max_queue = 16 << 20, .max_frame = 32 << 20 };
        char url[64];

        *n = (Node) { .id = id };
        assert_int_equal(kv_peer_new(&n->t, event, &cfg), 0);
        (void) snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
        assert_int_equal(kv_peer_listen(n->t, url), 0);
        n->port = kv_peer_port(n->t, 0);
        (void) snprintf(n->url, sizeof(n->url), "http://127.0.0.1:%d", n->port);
}

static int setup(void **state) {
        assert_int_equal(sd_event_new(&event), 0);
        for (unsigned i = 0; i < 3; i++)
                node_start(&nodes[i], i + 1, 0xC1, 0);
        for (unsigned i = 0; i < 3; i++)
                for (unsigned j = 0; j < 3; j++)
                        if (i != j)
                                assert_int_equal(kv_peer_add(nodes[i].t, nodes[j].id, nodes[j].url), 0);
        return 0;
}

static int teardown(void **state) {
        for (unsigned i = 0; i < 3; i++)
                nodes[i].t = kv_peer_free(nodes[i].t);
        event = sd_event_unref(event);
        return 0;
}

static bool all_up(void) {
        for (unsigned i = 0; i < 3; i++)
                for (unsigned j = 1; j <= 3; j++)
                        if (j != nodes[i].id && !nodes[i].peer_up[j])
                                return false;
        return true;
}

static void messages_arrive_in_order_from_the_right_sender(void **state) {
        assert_true(RUN_LOOP_UNTIL(event, all_up(), 5 * USEC_PER_SEC));
        for (uint32_t s = 0; s < 1000; s++)
                assert_int_equal(kv_peer_send(nodes[0].t, 2, &s, sizeof(s)), 0);
        assert_true(RUN_LOOP_UNTIL(event, nodes[1].received == 1000, 5 * USEC_PER_SEC));
        for (uint32_t s = 0; s < 1000; s++)
                assert_int_equal(nodes[1].seq[s], s);
        assert_int_equal(nodes[1].last_from, 1);
        assert_int_equal(nodes[2].received, 0);

        KvPeerStats st;
        assert_int_equal(kv_peer_stats(nodes[0].t, 2, &st), 0);
        assert_true(st.reachable);
        assert_int_equal(st.messages_sent, 1000);
        assert_int_equal(kv_peer_stats(nodes[0].t, 9, &st), -ENOENT);
}

static void messages_queued_before_connect_are_delivered(void **state) {
        uint32_t s = 7;
        /* Right after kv_peer_add the connection is still being made. */
        assert_int_equal(kv_peer_send(nodes[2].t, 1, &s, sizeof(s)), 0);
        assert_true(RUN_LOOP_UNTIL(event, nodes[0].received == 1, 5 * USEC_PER_SEC));
        assert_int_equal(nodes[0].seq[0], 7);
        assert_int_equal(nodes[0].last_from, 3);
}

static void large_message_arrives_whole(void **state) {
        size_t len = 10 << 20;
        uint8_t *big = malloc(len);

        for (size_t i = 0; i < len; i++)
                big[i] = (uint8_t) (i * 7);
        assert_true(RUN_LOOP_UNTIL(event, all_up(), 5 * USEC_PER_SEC));
        assert_int_equal(kv_peer_send(nodes[0].t, 3, big, len), 0);
        assert_true(RUN_LOOP_UNTIL(event, nodes[2].received == 1, 10 * USEC_PER_SEC));
        assert_int_equal(nodes[2].last_len, len);
        assert_int_equal(nodes[2].last_byte, big[len - 1]);
        free(big);
        /* Over the frame limit is refused at once. */
        assert_int_equal(kv_peer_send(nodes[0].t, 3, "x", (32 << 20)), -E2BIG);
}

static void reconnects_after_peer_restart(void **state) {
        uint32_t s = 1;
        int port = nodes[1].port;

        assert_true(RUN_LOOP_UNTIL(event, all_up(), 5 * USEC_PER_SEC));
        nodes[1].t = kv_peer_free(nodes[1].t);
        assert_true(RUN_LOOP_UNTIL(event, !nodes[0].peer_up[2], 5 * USEC_PER_SEC));
        assert_true(nodes[0].down_events >= 1);
        /* While down, sends are dropped, not queued forever. */
        test_loop_for(event, 50 * USEC_PER_MSEC);
        (void) kv_peer_send(nodes[0].t, 2, &s, sizeof(s));

        node_start(&nodes[1], 2, 0xC1, port); /* same address, fresh process */
        assert_true(RUN_LOOP_UNTIL(event, nodes[0].peer_up[2], 5 * USEC_PER_SEC));
        s = 42;
        assert_int_equal(kv_peer_send(nodes[0].t, 2, &s, sizeof(s)), 0);
        assert_true(RUN_LOOP_UNTIL(event, nodes[1].received >= 1 && nodes[1].seq[nodes[1].received - 1] == 42,
                                   5 * USEC_PER_SEC));
}

static void wrong_cluster_is_refused(void **state) {
        Node stranger;
        uint32_t s = 5;

        node_start(&stranger, 9, 0xBAD, 0);
        assert_int_equal(kv_peer_add(stranger.t, 1, nodes[0].url), 0);
        (void) kv_peer_send(stranger.t, 1, &s, sizeof(s));
        test_loop_for(event, 300 * USEC_PER_MSEC);
        assert_int_equal(nodes[0].received, 0);
        assert_int_equal(stranger.up_events, 0);
        stranger.t = kv_peer_free(stranger.t);
}

static void wrong_member_at_address_is_refused(void **state) {
        Node confused;
        uint32_t s = 5;

        node_start(&confused, 9, 0xC1, 0);
        /* It believes member 2 lives where member 1 does. */
        assert_int_equal(kv_peer_add(confused.t, 2, nodes[0].url), 0);
        (void) kv_peer_send(confused.t, 2, &s, sizeof(s));
        test_loop_for(event, 300 * USEC_PER_MSEC);
        assert_int_equal(nodes[0].received, 0);
        assert_int_equal(confused.up_events, 0);
        confused.t = kv_peer_free(confused.t);
}

/* A dialler speaking only a future protocol version gets refused with status 1. */
static void unknown_protocol_version_is_refused(void **state) {
        _cleanup_close_ int fd = test_tcp_connect(nodes[0].port);
        uint8_t pre[32] = "FLKV";
        _cleanup_(buf_done) Buf b = BUF_INIT(0);

        pre[4] = 7, pre[6] = 9;       /* versions 7..9 */
        pre[8] = 0xC1;                /* right cluster */
        pre[16] = 5;                  /* from 5 */
        pre[24] = 1;                  /* to member 1 */
        assert_int_equal(test_send_all(event, fd, pre, sizeof(pre), USEC_PER_SEC), 0);
        assert_int_equal(test_recv_until(event, fd, &b, NULL, 2 * USEC_PER_SEC), 0);
        assert_int_equal(b.len, 16);
        assert_memory_equal(b.data, "FLKV", 4);
        assert_int_equal(b.data[6], 1);
}

static void hostile_bytes_close_the_connection(void **state) {
        static const char *const garbage[] = {
                "GET / HTTP/1.1\r\nHost: x\r\n\r\n                 ", /* HTTP on the peer port */
                "FLKV\x01\x00\x01\x00\xc1\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\xff\xff\xff\xff\x01", /* huge frame */
                "FLKV\x01\x00\x01\x00\xc1\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01\0\0\0\x63",        /* unknown type */
        };
        static const size_t lens[] = { 45, 37, 37 };

        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                _cleanup_close_ int fd = test_tcp_connect(nodes[0].port);
                _cleanup_(buf_done) Buf b = BUF_INIT(0);
                assert_int_equal(test_send_all(event, fd, garbage[i], lens[i], USEC_PER_SEC), 0);
                assert_int_equal(test_recv_until(event, fd, &b, NULL, 2 * USEC_PER_SEC), 0);
        }
        assert_int_equal(nodes[0].received, 0);
        /* The real peers still work. */
        uint32_t s = 3;
        assert_true(RUN_LOOP_UNTIL(event, all_up(), 5 * USEC_PER_SEC));
        assert_int_equal(kv_peer_send(nodes[1].t, 1, &s, sizeof(s)), 0);
        assert_true(RUN_LOOP_UNTIL(event, nodes[0].received == 1, 5 * USEC_PER_SEC));
}

/* A dialler that connects and says nothing is cut off after the handshake timeout. */
static void silent_dialler_times_out(void **state) {
        KvPeerConfig cfg = { .cluster_id = 1, .self_id = 1, .handshake_timeout_usec = 200 * USEC_PER_MSEC };
        _cleanup_(kv_peer_freep) KvPeerTransport *t = NULL;
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        int fd;

        assert_int_equal(kv_peer_new(&t, event, &cfg), 0);
        assert_int_equal(kv_peer_listen(t, "http://127.0.0.1:0"), 0);
        fd = test_tcp_connect(kv_peer_port(t, 0));
        assert_int_equal(test_recv_until(event, fd, &b, NULL, 3 * USEC_PER_SEC), 0);
        close(fd);
}

/* A peer that stops reading: our queue is bounded; past it we drop and report it unreachable. */
static void unread_queue_is_bounded(void **state) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        _cleanup_close_ int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), afd = -EBADF;
        char url[64];
        uint8_t reply[16] = "FLKV", pre[32];
        static uint8_t chunk[256 * 1024];
        int r = 0;

        assert_int_equal(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 4), 0);
        assert_int_equal(getsockname(lfd, (struct sockaddr *) &sa, &sl), 0);
        (void) snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
        assert_int_equal(kv_peer_add(nodes[0].t, 7, url), 0);
        test_loop_for(event, 50 * USEC_PER_MSEC);
        afd = accept(lfd, NULL, NULL);
        assert_true(afd >= 0);
        assert_int_equal(recv(afd, pre, sizeof(pre), MSG_WAITALL), 32);
        reply[4] = 1;                      /* version 1, status 0 */
        reply[8] = 7;                      /* I am member 7 */
        assert_int_equal(send(afd, reply, sizeof(reply), 0), 16);
        assert_true(RUN_LOOP_UNTIL(event, nodes[0].peer_up[7], 2 * USEC_PER_SEC));
        /* Now never read: the kernel buffers fill, then our 16 MiB queue. */
        for (int i = 0; i < 200 && r == 0; i++) {
                r = kv_peer_send(nodes[0].t, 7, chunk, sizeof(chunk));
                test_loop_for(event, 2 * USEC_PER_MSEC);
        }
        assert_int_equal(r, -ENOBUFS);
        assert_false(nodes[0].peer_up[7]);
        KvPeerStats st;
        assert_int_equal(kv_peer_stats(nodes[0].t, 7, &st), 0);
        assert_true(st.messages_dropped >= 1);
        assert_int_equal(kv_peer_remove(nodes[0].t, 7), 0);
        assert_int_equal(kv_peer_remove(nodes[0].t, 7), -ENOENT);
}

static void ping_measures_round_trips(void **state) {
        KvPeerStats st;

        assert_true(RUN_LOOP_UNTIL(event, all_up(), 5 * USEC_PER_SEC));
        for (int i = 0; i < 5; i++) {
                kv_peer_ping_all(nodes[0].t);
                test_loop_for(event, 20 * USEC_PER_MSEC);
        }
        assert_int_equal(kv_peer_stats(nodes[0].t, 2, &st), 0);
        assert_int_equal(st.pings, 5);
        assert_int_equal(st.pongs, 5);
        assert_true(st.rtt_min_ms <= st.rtt_avg_ms && st.rtt_avg_ms <= st.rtt_max_ms);
        assert_true(st.rtt_min_ms >= 0);
}

static void peer_urls_parsed_strictly(void **state) {
        char *h = NULL, *p = NULL;

        assert_int_equal(kv_peer_parse_url("http://10.0.0.1:2380", &h, &p), 0);
        assert_string_equal(h, "10.0.0.1");
        assert_string_equal(p, "2380");
        free(h);
        free(p);
        assert_int_equal(kv_peer_parse_url("http://[::1]:2380/", &h, &p), 0);
        assert_string_equal(h, "::1");
        free(h);
        free(p);
        assert_int_equal(kv_peer_parse_url("http://host", &h, &p), -EINVAL);
        assert_int_equal(kv_peer_add(nodes[0].t, 5, "http://host:0"), -EINVAL); /* fine to listen on, not to dial */
        assert_int_equal(kv_peer_parse_url("http://host:99999", &h, &p), -EINVAL);
        assert_int_equal(kv_peer_parse_url("http://:2380", &h, &p), -EINVAL);
        assert_int_equal(kv_peer_add(nodes[0].t, 1, "http://127.0.0.1:1"), -EINVAL); /* ourselves */
        assert_int_equal(kv_peer_add(nodes[0].t, 5, "nonsense"), -EINVAL);
        assert_int_equal(kv_peer_send(nodes[0].t, 5, "x", 1), -ENOENT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(messages_arrive_in_order_from_the_right_sender),
          T(messages_queued_before_connect_are_delivered),
          T(large_message_arrives_whole),
          T(reconnects_after_peer_restart),
          T(wrong_cluster_is_refused),
          T(wrong_member_at_address_is_refused),
          T(unknown_protocol_version_is_refused),
          T(hostile_bytes_close_the_connection),
          T(silent_dialler_times_out),
          T(unread_queue_is_bounded),
          T(ping_measures_round_trips),
          T(peer_urls_parsed_strictly))
