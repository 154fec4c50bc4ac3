/* SPDX-License-Identifier: MIT */
/* Arbitrary bytes on flotilla-kv's peer port: the handshake and frame parser must refuse or
 * deliver, never crash, leak or over-read. Seeds start with a valid handshake so the fuzzer
 * reaches the frame parser. */
#include "fuzz.h"
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv-peer.h"
#include "shared/log.h"

static sd_event *event;
static KvPeerTransport *transport;
static int port;
static size_t delivered;

static void on_receive(uint64_t from, const void *msg, size_t len, void *userdata) {
        delivered += len;
}

static void init(void) {
        KvPeerConfig cfg = { .cluster_id = 0xC1, .self_id = 1, .max_frame = 1 << 20, .on_receive = on_receive,
                             .handshake_timeout_usec = 100 * USEC_PER_MSEC };
        log_set_max_level(LOG_CRIT);
        if (sd_event_new(&event) < 0 || kv_peer_new(&transport, event, &cfg) < 0 ||
            kv_peer_listen(transport, "http://127.0.0.1:0") < 0)
                abort();
        port = kv_peer_port(transport, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char buf[256];
        size_t off = 0;
        int fd;

        if (!transport)
                init();
        if (size > 256 * 1024)
                return 0;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return 0;
        if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0 && errno != EINPROGRESS) {
                close(fd);
                return 0;
        }
        for (int i = 0; i < 20; i++) {
                if (off < size) {
                        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
                        if (n > 0)
                                off += (size_t) n;
                }
                (void) sd_event_run(event, i < 10 ? 0 : 100);
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n == 0 || (n < 0 && errno != EAGAIN))
                        break;
        }
        close(fd);
        for (int i = 0; i < 3; i++)
                (void) sd_event_run(event, 0);
        return 0;
}
