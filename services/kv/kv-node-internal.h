/* SPDX-License-Identifier: MIT */
/* Private to kv-node*.c: the member's state and the helpers its files share. */
#pragma once

#include <sys/types.h>

#include "kv-node.h"
#include "kv-peer.h"
#include "kv-snap.h"
#include "kv-wal.h"
#include "shared/hashmap.h"
#include "shared/time-util.h"

/* Payload kinds of normal log entries. Every entry starts with a 17-byte envelope:
 * u8 kind, u64 origin member id, u64 sequence number (little endian). */
enum {
        KV_ENTRY_COMMAND = 1,     /* a KvCommand (kv-command.h) */
        KV_ENTRY_ATTRIBUTES = 2,  /* a member publishing its name and client URLs (kv_member_encode) */
        KV_ENTRY_PEER_URLS = 3,   /* a member's new peer URLs (kv_member_encode: id and peer URLs) */
};
#define KV_ENTRY_ENVELOPE 17

/* Snapshot data: "FKVS", u32 version, u32 members length, members, then the store's bytes. */
#define KV_SNAP_MAGIC   "FKVS"
#define KV_SNAP_VERSION 1
/* WAL metadata: "FKVM", u32 version, u64 member id, u64 cluster id. */
#define KV_META_MAGIC   "FKVM"
#define KV_META_VERSION 1
#define KV_META_SIZE    24

#define KV_REMOVED_MAX  64

typedef enum ProposalState {
        PROPOSAL_WAITING,         /* not handed to Raft yet: no leader known (or flow control) */
        PROPOSAL_PROPOSED,        /* handed to Raft; waiting to be applied or to get a read index */
        PROPOSAL_READ_READY,      /* a read whose index is known; waiting for apply to reach it */
} ProposalState;

struct KvProposal {
        KvNode *node;
        uint64_t seq;
        bool is_read;
        ProposalState state;
        uint8_t *data;            /* the entry (envelope + command) until it is handed to Raft */
        size_t len;
        uint64_t read_index;
        usec_t deadline;          /* CLOCK_MONOTONIC */
        KvApplyFn apply_cb;
        KvReadFn read_cb;
        void *userdata;
        KvProposal *prev, *next;  /* all pending proposals, oldest (earliest deadline) first */
};

struct KvNode {
        sd_event *event;
        const KvConfig *cfg;
        char *wal_dir, *snap_dir;
        uint64_t id, cluster_id;

        Raft *raft;
        RaftMemoryStorage *ms;
        KvWal *wal;
        KvStore *store;
        KvMembers members;
        RaftConfState conf_state;         /* configuration as of applied_index */
        KvPeerTransport *peers;

        sd_event_source *tick, *ready;
        uint64_t applied_index, applied_term, snapshot_index;
        uint64_t seq;                     /* last request sequence number used */
        U64Map pending;                   /* seq -> KvProposal */
        KvProposal *fifo, *fifo_tail;     /* pending, in deadline order */
        usec_t request_timeout_usec;
        Buf scratch;                      /* message encoding */
        uint64_t *snap_sent;              /* peers we sent a MsgSnap to in the current Ready */
        size_t n_snap_sent;

        RaftSoftState soft;
        usec_t leader_heard_usec;         /* CLOCK_MONOTONIC when a leader was last known */
        int64_t start_time_ns, leader_since_ns;
        usec_t next_sync_usec, next_publish_usec, next_ping_usec;
        bool published;
        uint64_t recv_append, send_append;

        void (*stop_cb)(void *userdata);  /* graceful stop: leadership handed over (or gave up) */
        void *stop_userdata;
        usec_t stop_deadline_usec;
        uint64_t stop_transferee;         /* who is to take over, while handing over */
        bool stopping;                    /* never take leadership once stopping */

        void (*on_serving)(void *userdata);  /* once, when a leader is first known */
        void *serving_userdata;

        pid_t snap_pid;                   /* a child writing a snapshot (kv-node-storage.c), or 0 */
        uint64_t snap_job_index, snap_job_term;
        RaftConfState snap_job_conf;
        usec_t snap_job_start, snap_retry_usec;

        struct {                          /* the one membership change a client waits for */
                KvMemberChangeFn cb;
                void *userdata;
                int type;                 /* RaftConfChangeType, or KV_CHANGE_UPDATE */
                uint64_t node_id;
                usec_t deadline;
        } change;
        usec_t next_promote_usec;
        uint64_t removed[KV_REMOVED_MAX]; /* members removed while this one ran, newest last */
        size_t n_removed;

        void (*on_fatal)(int error, void *userdata);
        void *fatal_userdata;
        bool failed;
};

/* kv-node-storage.c */
int kv_node_storage_open(KvNode *n);      /* bootstrap or recover; fills raft inputs */
int kv_node_persist_snapshot(KvNode *n, const RaftSnapshot *snap);
int kv_node_restore_snapshot(KvNode *n, const RaftSnapshot *snap);
/* Starts writing a snapshot in a child process when snapshot_count entries were applied since
 * the last one; kv_node_snapshot_poll() records it once the child has succeeded. */
int kv_node_maybe_snapshot(KvNode *n);
int kv_node_snapshot_poll(KvNode *n);
void kv_node_snapshot_abandon(KvNode *n);     /* kills a running writer (stopping) */
#define KV_SNAPSHOT_RETRY_USEC (10 * USEC_PER_SEC)
int kv_node_load_snapshot(void *userdata, const RaftSnapshotMeta *meta, void **ret_data, size_t *ret_len);
int kv_conf_state_encode(const RaftConfState *cs, Buf *out);
int kv_conf_state_decode(const void *data, size_t len, RaftConfState *ret);
/* Splits snapshot data (magic, version, members, store) and decodes the members; the store's
 * bytes are returned in place for kv_store_load(). */
int kv_snapshot_data_parse(const void *data, size_t len, KvMembers *ret_members, const void **ret_store,
                           size_t *ret_store_len);

/* kv-node.c */
void kv_node_fail(KvNode *n, int error, const char *what);
