/* SPDX-License-Identifier: MIT */
/* Types of the Raft core (services/kv/raft): configuration, storage callbacks, log entries, wire
 * messages and the Ready structure handed to the driver. Types only; functions are in raft.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard limits. Configurations are small on purpose (etcd recommends 3-7 voters); keeping them in
 * fixed arrays means a ConfState is a plain value that needs no allocation. */
#define RAFT_MAX_VOTERS        16
#define RAFT_MAX_LEARNERS      16
#define RAFT_NONE              UINT64_C(0)         /* "no node": no leader, no vote */
#define RAFT_NO_LIMIT          UINT64_MAX

/* Bytes an entry counts for in size limits besides its payload (term, index, type, length). */
#define RAFT_ENTRY_OVERHEAD    24

typedef struct Raft Raft;

typedef enum RaftRole {
        RAFT_FOLLOWER,
        RAFT_CANDIDATE,
        RAFT_LEADER,
        RAFT_PRE_CANDIDATE,
        _RAFT_ROLE_MAX,
        _RAFT_ROLE_INVALID = -1,
} RaftRole;

typedef enum RaftEntryType {
        RAFT_ENTRY_NORMAL,
        RAFT_ENTRY_CONF_CHANGE,         /* data is an encoded RaftConfChange (raft_conf_change_decode) */
        _RAFT_ENTRY_TYPE_MAX,
        _RAFT_ENTRY_TYPE_INVALID = -1,
} RaftEntryType;

typedef enum RaftMessageType {
        RAFT_MSG_HUP,                   /* local: start an election */
        RAFT_MSG_BEAT,                  /* local: leader sends heartbeats */
        RAFT_MSG_PROP,                  /* proposal; followers forward it to the leader */
        RAFT_MSG_APP,
        RAFT_MSG_APP_RESP,
        RAFT_MSG_VOTE,
        RAFT_MSG_VOTE_RESP,
        RAFT_MSG_SNAP,
        RAFT_MSG_HEARTBEAT,
        RAFT_MSG_HEARTBEAT_RESP,
        RAFT_MSG_UNREACHABLE,           /* local: raft_report_unreachable() */
        RAFT_MSG_SNAP_STATUS,           /* local: raft_report_snapshot() */
        RAFT_MSG_CHECK_QUORUM,          /* local: leader checks it still hears from a quorum */
        RAFT_MSG_TRANSFER_LEADER,       /* "from" is the transferee */
        RAFT_MSG_TIMEOUT_NOW,
        RAFT_MSG_READ_INDEX,
        RAFT_MSG_READ_INDEX_RESP,
        RAFT_MSG_PRE_VOTE,
        RAFT_MSG_PRE_VOTE_RESP,
        _RAFT_MSG_MAX,
        _RAFT_MSG_INVALID = -1,
} RaftMessageType;

typedef struct RaftEntry {
        uint64_t term;
        uint64_t index;
        RaftEntryType type;
        const void *data;               /* owner depends on where the entry lives; see RaftReady */
        size_t len;
} RaftEntry;

typedef struct RaftHardState {
        uint64_t term;
        uint64_t vote;                  /* RAFT_NONE or the node voted for in 'term' */
        uint64_t commit;
} RaftHardState;

typedef struct RaftSoftState {
        uint64_t lead;                  /* RAFT_NONE when unknown */
        RaftRole role;
} RaftSoftState;

typedef struct RaftConfState {
        uint64_t voters[RAFT_MAX_VOTERS];       /* sorted ascending, no duplicates */
        uint32_t n_voters;
        uint64_t learners[RAFT_MAX_LEARNERS];   /* sorted, disjoint from voters */
        uint32_t n_learners;
} RaftConfState;

typedef struct RaftSnapshotMeta {
        uint64_t index;                 /* last entry the snapshot covers */
        uint64_t term;                  /* term of that entry */
        RaftConfState conf_state;       /* configuration as of 'index' */
} RaftSnapshotMeta;

typedef struct RaftSnapshot {
        RaftSnapshotMeta metadata;
        const void *data;               /* opaque application state */
        size_t len;
} RaftSnapshot;

/* One wire message. Pointers are borrowed: raft_step() copies what it keeps, and messages in a
 * Ready point into memory the core owns until raft_advance(). */
typedef struct RaftMessage {
        RaftMessageType type;
        uint64_t to;
        uint64_t from;
        uint64_t term;                  /* 0 for local messages and for MsgProp/MsgReadIndex */
        uint64_t log_term;              /* MsgApp: term of 'index'; MsgVote: last log term;
                                         * rejected MsgAppResp: term hint */
        uint64_t index;
        uint64_t commit;
        uint64_t reject_hint;
        bool reject;
        const RaftEntry *entries;
        size_t n_entries;
        const RaftSnapshot *snapshot;   /* MsgSnap only, else NULL */
        const void *context;            /* vote: transfer marker; heartbeat/read index: request ctx */
        size_t context_len;
} RaftMessage;

typedef enum RaftConfChangeType {
        RAFT_CONF_ADD_VOTER,            /* adds a voter or promotes a learner */
        RAFT_CONF_REMOVE_NODE,
        RAFT_CONF_ADD_LEARNER,          /* adds a learner or demotes a voter */
        _RAFT_CONF_CHANGE_TYPE_MAX,
        _RAFT_CONF_CHANGE_TYPE_INVALID = -1,
} RaftConfChangeType;

typedef struct RaftConfChange {
        RaftConfChangeType type;
        uint64_t node_id;
        const void *context;            /* opaque to Raft (e.g. the member's peer URL) */
        size_t context_len;
} RaftConfChange;

/* A linearizable read point: once the application has applied 'index', it may serve the read
 * identified by ctx (the bytes given to raft_read_index()). */
typedef struct RaftReadState {
        uint64_t index;
        const void *ctx;
        size_t ctx_len;
} RaftReadState;

/* Everything the driver must do, in this order (see docs/raft.md, "The Ready contract"). All
 * pointers stay valid until raft_advance(). Until then the node accepts only raft_advance(),
 * raft_apply_conf_change() (while applying) and the read-only calls (raft_status(),
 * raft_soft_state(), raft_get_hard_state(), raft_term_at(), raft_has_ready()); inputs return
 * -EBUSY. */
typedef struct RaftReady {
        /* Volatile state, for information only (leader changes); never needs persisting. */
        bool has_soft_state;
        RaftSoftState soft_state;

        /* Must be saved to stable storage BEFORE messages are sent. */
        bool has_hard_state;
        RaftHardState hard_state;

        /* Entries to append to stable storage BEFORE messages are sent. They may overwrite
         * (truncate) entries with the same or higher index that were appended earlier. */
        const RaftEntry *entries;
        size_t n_entries;

        /* Snapshot to save to stable storage (and to restore the state machine from), or NULL.
         * Save it BEFORE the entries above, which follow it. */
        const RaftSnapshot *snapshot;

        /* Entries to apply to the state machine, in order. They have been committed; apply them
         * AFTER the entries and hard state above are persisted. RAFT_ENTRY_CONF_CHANGE entries are
         * decoded and passed to raft_apply_conf_change() as they are applied. An empty
         * RAFT_ENTRY_NORMAL entry (len 0) is a no-op written by a new leader: skip it. */
        const RaftEntry *committed_entries;
        size_t n_committed_entries;

        /* Messages to send AFTER entries, hard state and snapshot are durable (fsync'd if
         * must_sync). A MsgSnap's delivery outcome must be reported with raft_report_snapshot(). */
        const RaftMessage *messages;
        size_t n_messages;

        /* Reads that may be served once the state machine has applied read_states[i].index. */
        const RaftReadState *read_states;
        size_t n_read_states;

        /* Whether the hard state and entries must be fsync'd before messages are sent. False
         * when only the commit index changed (losing it in a crash is harmless). */
        bool must_sync;
} RaftReady;

/* Read-only view of the durable log; the application writes to it while handling a Ready.
 * Errors: -ENOENT (or -ESTALE) when the index was compacted away, -EAGAIN when it is not
 * available yet. Any other error makes the node fail: every later call returns that error. */
typedef struct RaftStorage {
        void *userdata;
        int (*initial_state)(void *userdata, RaftHardState *ret_hs, RaftConfState *ret_cs);
        /* Entries [lo, hi), at least one if any, stopping before max_size bytes are exceeded.
         * The array and the data are borrowed until the application next changes the storage. */
        int (*entries)(void *userdata, uint64_t lo, uint64_t hi, uint64_t max_size,
                       const RaftEntry **ret_entries, size_t *ret_n);
        int (*term)(void *userdata, uint64_t index, uint64_t *ret_term);
        int (*first_index)(void *userdata, uint64_t *ret_index);
        int (*last_index)(void *userdata, uint64_t *ret_index);
        /* The latest snapshot, borrowed like entries. -EAGAIN if temporarily unavailable. */
        int (*snapshot)(void *userdata, const RaftSnapshot **ret_snapshot);
} RaftStorage;

/* Injectable allocator. NULL fields fall back to libc. Used for every allocation of the core. */
typedef struct RaftAllocator {
        void *(*malloc)(void *userdata, size_t size);
        void *(*realloc)(void *userdata, void *p, size_t size);
        void (*free)(void *userdata, void *p);
        void *userdata;
} RaftAllocator;

typedef struct RaftConfig {
        uint64_t id;                            /* this node, != RAFT_NONE */
        unsigned election_tick;                 /* ticks without leader contact before campaigning;
                                                 * randomized in [election_tick, 2*election_tick) */
        unsigned heartbeat_tick;                /* ticks between leader heartbeats, < election_tick */
        uint64_t applied;                       /* last applied index when restarting (0: none) */
        uint64_t max_size_per_msg;              /* bytes of entries per MsgApp (0: one entry) */
        uint64_t max_committed_size_per_ready;  /* bytes of committed entries per Ready (0: no limit) */
        size_t max_inflight_msgs;               /* MsgApps in flight per follower, > 0 */
        uint64_t max_uncommitted_entries_size;  /* leader refuses proposals beyond this (0: no limit) */
        bool pre_vote;
        bool check_quorum;
        bool disable_proposal_forwarding;       /* followers drop proposals instead of forwarding */
        uint64_t seed;                          /* seeds the built-in PRNG when random is NULL */
        uint64_t (*random)(void *userdata);     /* optional source of randomness */
        void *random_userdata;
        const RaftAllocator *allocator;         /* NULL: libc; copied by raft_new() */
        /* Optional debug trace: one line per state change, without trailing newline. */
        void (*trace)(void *userdata, uint64_t id, const char *line);
        void *trace_userdata;
} RaftConfig;

typedef enum RaftProgressState {
        RAFT_PROGRESS_PROBE,
        RAFT_PROGRESS_REPLICATE,
        RAFT_PROGRESS_SNAPSHOT,
        _RAFT_PROGRESS_STATE_MAX,
} RaftProgressState;

typedef struct RaftPeerStatus {
        uint64_t id;
        uint64_t match;
        uint64_t next;
        RaftProgressState state;
        bool is_learner;
        bool recent_active;
} RaftPeerStatus;

typedef struct RaftStatus {
        uint64_t id;
        RaftHardState hard_state;
        RaftSoftState soft_state;
        uint64_t applied;
        uint64_t first_index;
        uint64_t last_index;
        uint64_t lead_transferee;
        RaftConfState conf_state;
        RaftPeerStatus peers[RAFT_MAX_VOTERS + RAFT_MAX_LEARNERS];  /* leader only */
        size_t n_peers;
} RaftStatus;

/* In-memory implementation of RaftStorage (memstorage.c), after etcd's MemoryStorage. */
typedef struct RaftMemoryStorage RaftMemoryStorage;

/* Wire codec limits: decoding refuses anything larger (-EBADMSG). */
#define RAFT_CODEC_VERSION             1
#define RAFT_CODEC_MAX_ENTRIES         (UINT32_C(1) << 20)
#define RAFT_CODEC_MAX_CONTEXT         (UINT32_C(1) << 16)
