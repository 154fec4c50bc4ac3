/* SPDX-License-Identifier: MIT */
/* Peer transport between flotilla-kv members: persistent TCP connections carrying a compact,
 * versioned, length-prefixed binary protocol (not HTTP/JSON as etcd does).
 *
 * Each member dials every other member and sends its messages on that connection; it receives
 * the others' messages on the connections they dialled. One connection per direction means no
 * dial races and no ordering surprises: messages to one peer arrive in the order they were sent.
 *
 * Wire format (little endian):
 *   dialler -> listener, once:  "FLKV" u16 min_version u16 max_version u64 cluster_id
 *                               u64 from_id u64 to_id
 *   listener -> dialler, once:  "FLKV" u16 version u16 status u64 listener_id (16 bytes)
 *       status 0 = accepted (version = the highest both speak), otherwise the connection is
 *       closed: 1 unsupported version, 2 wrong cluster, 3 wrong member, 4 busy, 5 the dialler
 *       was removed from the cluster (it stops, as an etcd member does on HTTP 410)
 *   then frames both ways:      u32 length (type + payload) u8 type payload
 *       type 1 MESSAGE  payload = one opaque message (a Raft message), dialler -> listener
 *       type 2 PING     payload = u64 nonce, dialler -> listener
 *       type 3 PONG     payload = the PING's u64 nonce, listener -> dialler
 *       type 4 MEMBERS  payload = u64 cluster_id u64 listener_id member table, listener ->
 *                       dialler, the one answer to a membership query: a preamble whose
 *                       cluster_id, from_id and to_id are all 0 (a member joining with
 *                       --initial-cluster-state existing learns who it is and who the others
 *                       are). Nothing else is accepted on such a connection.
 *
 * Messages queued in one loop iteration leave in one write (batching). A peer that cannot keep
 * up, or is unreachable, has its queue bounded: past the limit messages are dropped (Raft
 * retransmits) and the peer is reported unreachable. Reconnects back off exponentially. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "shared/buf.h"
#include "shared/macro.h"
#include "shared/time-util.h"

/* Peer traffic runs before client traffic on the loop: a member busy answering clients must
 * still acknowledge replication promptly, or every commit waits behind client work. */
#define KV_PEER_PRIORITY SD_EVENT_PRIORITY_IMPORTANT

#define KV_PEER_PROTOCOL_MIN 1
#define KV_PEER_PROTOCOL_MAX 1

typedef struct KvPeerTransport KvPeerTransport;

/* Callbacks run from the loop; they may send, but must not add or remove peers or free the
 * transport. */
typedef void (*KvPeerReceiveFn)(uint64_t from, const void *msg, size_t len, void *userdata);
/* A peer became reachable (handshake done) or unreachable (connection lost, queue overflowed). */
typedef void (*KvPeerStatusFn)(uint64_t peer, bool reachable, void *userdata);

typedef struct KvPeerConfig {
        uint64_t cluster_id;
        uint64_t self_id;
        size_t max_frame;          /* bytes; default 512 MiB (snapshots travel as one message) */
        size_t max_queue;          /* unsent bytes per peer; default 256 MiB */
        unsigned max_inbound;      /* connections; default 64 */
        usec_t handshake_timeout_usec; /* default 5 s */
        usec_t backoff_min_usec;   /* default 100 ms */
        usec_t backoff_max_usec;   /* default 2 s */
        KvPeerReceiveFn on_receive;
        KvPeerStatusFn on_status;
        /* Answers a joining member's membership query (a handshake with cluster, from and to
         * all zero): appends the member table to out. NULL: such queries are refused. */
        int (*get_members)(Buf *out, void *userdata);
        /* Whether a dialler is a member removed from the cluster (refused with status 5), and
         * what to do when a peer refuses us for that reason. */
        bool (*is_removed)(uint64_t id, void *userdata);
        void (*on_removed)(uint64_t by, void *userdata);
        void *userdata;
} KvPeerConfig;

typedef struct KvPeerStats {
        bool reachable;
        usec_t last_pong_usec;    /* CLOCK_MONOTONIC, 0 before the first PONG on this connection */
        uint64_t messages_sent, messages_dropped, bytes_sent;
        uint64_t pings, pongs;
        double rtt_last_ms, rtt_min_ms, rtt_max_ms, rtt_avg_ms, rtt_stddev_ms;
} KvPeerStats;

int kv_peer_new(KvPeerTransport **ret, sd_event *e, const KvPeerConfig *cfg);
KvPeerTransport *kv_peer_free(KvPeerTransport *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvPeerTransport *, kv_peer_free)

/* Listens on a URL ("http://127.0.0.1:2380") or takes an already listening socket. */
int kv_peer_listen(KvPeerTransport *t, const char *url);
int kv_peer_listen_fd(KvPeerTransport *t, int fd);
int kv_peer_port(KvPeerTransport *t, unsigned i);

/* Adds or updates a peer (its first peer URL); removes one (and closes its connections to us). */
int kv_peer_add(KvPeerTransport *t, uint64_t id, const char *url);
int kv_peer_remove(KvPeerTransport *t, uint64_t id);

/* Queues a message; it leaves when the loop next polls. -ENOENT for an unknown peer, -E2BIG for
 * a message over max_frame, -ENOBUFS when it was dropped because the peer's queue is full. */
int kv_peer_send(KvPeerTransport *t, uint64_t to, const void *msg, size_t len);
/* Sends a PING to every connected peer (round-trip statistics). */
void kv_peer_ping_all(KvPeerTransport *t);
int kv_peer_stats(KvPeerTransport *t, uint64_t id, KvPeerStats *ret);

/* Asks the member at a peer URL, blocking for at most timeout_usec, for its cluster id, its own
 * id and its member table (returned as get_members() wrote it, caller frees). -EPERM when the
 * peer refuses membership queries (a member that predates them), -EBADMSG for a malformed
 * answer. A joining member calls it once at start, before it has an event loop to speak of. */
int kv_peer_query_members(const char *url, usec_t timeout_usec, uint64_t *ret_cluster_id, uint64_t *ret_member_id,
                          void **ret_data, size_t *ret_len);

/* Parses "http://host:port[/...]" into host and port strings (caller frees). */
int kv_peer_parse_url(const char *url, char **ret_host, char **ret_port);
