/* SPDX-License-Identifier: MIT */
/* Private to the Raft core: the Raft struct and the functions its files share. Only the core and
 * its unit tests (tests/unit/raft/) include this; the simulator and the KV use raft.h. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "raft.h"

/* Always on, independent of NDEBUG: a broken invariant means corrupted consensus state, and
 * continuing could acknowledge lost writes. */
#define raft_assert(expr)                                                               \
        do {                                                                            \
                if (__builtin_expect(!(expr), 0))                                       \
                        raft_assert_failed(#expr, __FILE__, __LINE__, __func__);        \
        } while (0)

_Noreturn void raft_assert_failed(const char *expr, const char *file, int line, const char *func);

/* Entries per append whose bookkeeping lives on the stack instead of the heap. */
#define RAFT_STACK_BATCH 16

#define RAFT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RAFT_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- util.c: allocation, randomness, trace ---- */
void *raft_malloc(const RaftAllocator *a, size_t size);
void *raft_realloc(const RaftAllocator *a, void *p, size_t size);
void raft_mfree(const RaftAllocator *a, const void *p);
void *raft_memdup(const RaftAllocator *a, const void *p, size_t size);
/* Grows *array (of elem bytes each) to hold at least 'need' elements. */
int raft_grow(const RaftAllocator *a, void **array, size_t *cap, size_t need, size_t elem);

/* A bump allocator whose chunks are kept across resets: outgoing messages and read states are
 * built here, so sending does not malloc once the arena is warm. */
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
        ArenaChunk *chunks;     /* first chunk is the current one */
} Arena;
void *raft_arena_alloc(Arena *a, const RaftAllocator *al, size_t size);
void *raft_arena_dup(Arena *a, const RaftAllocator *al, const void *p, size_t size);
void raft_arena_reset(Arena *a, const RaftAllocator *al);
void raft_arena_done(Arena *a, const RaftAllocator *al);

/* ---- entry vectors ---- */
typedef struct EntryVec {
        RaftEntry *e;
        size_t n, cap;
} EntryVec;
int raft_entry_vec_reserve(EntryVec *v, const RaftAllocator *a, size_t need);
void raft_entry_vec_done(EntryVec *v, const RaftAllocator *a);

/* ---- log.c: the log, split into stable (RaftStorage) and unstable parts, like etcd ---- */
typedef struct Unstable {
        RaftSnapshot *snapshot;         /* owned, incoming snapshot not yet persisted */
        RaftEntry *entries;             /* owned, data owned */
        size_t n, cap;
        uint64_t offset;                /* index of entries[0] */
} Unstable;

typedef struct RaftLog {
        const RaftStorage *storage;
        const RaftAllocator *alloc;
        Unstable unstable;
        uint64_t committed;
        uint64_t applied;
        uint64_t max_next_ents_size;
        int error;                      /* sticky storage failure */
        EntryVec scratch;               /* reused by raft_log_slice() callers that don't keep results */
} RaftLog;

int raft_log_init(RaftLog *l, const RaftStorage *s, const RaftAllocator *a, uint64_t max_next_ents_size);
void raft_log_done(RaftLog *l);
uint64_t raft_log_first_index(RaftLog *l);
uint64_t raft_log_last_index(RaftLog *l);
/* 0 when the index is out of range or compacted (etcd's zeroTermOnErrCompacted). */
uint64_t raft_log_term(RaftLog *l, uint64_t i);
/* Like raft_log_term but -ENOENT for compacted, -EAGAIN for unavailable. */
int raft_log_term_checked(RaftLog *l, uint64_t i, uint64_t *ret);
uint64_t raft_log_last_term(RaftLog *l);
bool raft_log_match_term(RaftLog *l, uint64_t i, uint64_t term);
bool raft_log_is_up_to_date(RaftLog *l, uint64_t lasti, uint64_t term);
/* Copies the structs of entries [lo, hi) (data borrowed) into out, limited by max_size.
 * -ENOENT when lo is compacted. */
int raft_log_slice(RaftLog *l, uint64_t lo, uint64_t hi, uint64_t max_size, EntryVec *out);
/* Appends (copying data); returns the new last index or -ENOMEM. */
int raft_log_append(RaftLog *l, const RaftEntry *ents, size_t n, uint64_t *ret_last);
/* etcd's maybeAppend: returns 1 and *ret_last on a match, 0 on mismatch, <0 on error. */
int raft_log_maybe_append(RaftLog *l, uint64_t index, uint64_t log_term_, uint64_t committed,
                     const RaftEntry *ents, size_t n, uint64_t *ret_last);
uint64_t raft_log_find_conflict_by_term(RaftLog *l, uint64_t index, uint64_t term, uint64_t *ret_term);
void raft_log_commit_to(RaftLog *l, uint64_t tocommit);
bool raft_log_maybe_commit(RaftLog *l, uint64_t max_index, uint64_t term);
void raft_log_applied_to(RaftLog *l, uint64_t i);
void raft_log_stable_to(RaftLog *l, uint64_t i, uint64_t t);
void raft_log_stable_snap_to(RaftLog *l, uint64_t i);
int raft_log_restore(RaftLog *l, const RaftSnapshot *s);
bool raft_log_has_next_ents(RaftLog *l);
int raft_log_next_ents(RaftLog *l, EntryVec *out);
bool raft_log_has_pending_snapshot(RaftLog *l);
/* -EAGAIN when temporarily unavailable. */
int raft_log_snapshot(RaftLog *l, const RaftSnapshot **ret);

/* ---- progress.c: per-peer replication state and quorum arithmetic ---- */
typedef struct Inflights {
        uint64_t *buffer;               /* ring of last indexes of MsgApps in flight */
        size_t start, count, size;
} Inflights;

typedef struct Progress {
        uint64_t id;
        uint64_t match, next;
        RaftProgressState state;
        uint64_t pending_snapshot;
        bool recent_active;
        bool probe_sent;
        bool is_learner;
        int vote;                       /* 0: none, 1: granted, -1: rejected */
        Inflights inflights;
} Progress;

typedef enum VoteResult { VOTE_PENDING, VOTE_LOST, VOTE_WON } VoteResult;

typedef struct Tracker {
        Progress *prs;                  /* voters and learners, sorted by id */
        size_t n;
        RaftConfState conf;
        size_t max_inflight;
} Tracker;

void raft_progress_reset_state(Progress *pr, RaftProgressState state);
void raft_progress_become_probe(Progress *pr);
void raft_progress_become_replicate(Progress *pr);
void raft_progress_become_snapshot(Progress *pr, uint64_t snapshot_index);
bool raft_progress_maybe_update(Progress *pr, uint64_t n);
bool raft_progress_maybe_decr_to(Progress *pr, uint64_t rejected, uint64_t match_hint);
bool raft_progress_is_paused(const Progress *pr);
void raft_inflights_add(Inflights *in, uint64_t index);
void raft_inflights_free_le(Inflights *in, uint64_t to);
void raft_inflights_free_first_one(Inflights *in);
bool raft_inflights_full(const Inflights *in);
void raft_inflights_reset(Inflights *in);

Progress *raft_tracker_get(Tracker *t, uint64_t id);
bool raft_tracker_is_voter(const Tracker *t, uint64_t id);
uint64_t raft_tracker_committed(Tracker *t);
bool raft_tracker_quorum_active(Tracker *t);
void raft_tracker_reset_votes(Tracker *t);
VoteResult raft_tracker_record_vote(Tracker *t, uint64_t id, bool granted, size_t *ret_granted,
                               size_t *ret_rejected);
VoteResult raft_tracker_vote_result(Tracker *t);
/* Builds a tracker for conf, reusing progress of old members. Allocates (never on hot paths). */
int raft_tracker_set_conf(Tracker *t, const RaftAllocator *a, const RaftConfState *conf, uint64_t next);
void raft_tracker_done(Tracker *t, const RaftAllocator *a);

/* ---- readindex.c ---- */
typedef struct ReadIndexStatus {
        uint64_t index;
        uint64_t from;                  /* requester; RAFT_NONE or self for local requests */
        void *ctx;                      /* owned */
        size_t ctx_len;
        uint64_t acks[RAFT_MAX_VOTERS];
        size_t n_acks;
} ReadIndexStatus;

typedef struct ReadOnly {
        ReadIndexStatus *queue;
        size_t n, cap;
} ReadOnly;

/* ---- the node ---- */
typedef int (*StepFunc)(Raft *r, const RaftMessage *m);
typedef void (*TickFunc)(Raft *r);

typedef struct Outbox {
        RaftMessage *msgs;
        size_t n_msgs, cap_msgs;
        RaftReadState *read_states;
        size_t n_read_states, cap_read_states;
        Arena arena;                    /* entries, data, snapshots and contexts of the above */
} Outbox;

/* Pending ReadIndex requests waiting for the leader to commit an entry in its term. */
typedef struct PendingRead {
        uint64_t from;
        void *ctx;
        size_t ctx_len;
} PendingRead;

struct Raft {
        uint64_t id;
        uint64_t term;
        uint64_t vote;
        RaftRole state;
        uint64_t lead;
        uint64_t lead_transferee;
        uint64_t pending_conf_index;
        uint64_t uncommitted_size;
        bool is_learner;

        RaftStorage storage;            /* copy of the callbacks given to raft_new() */
        RaftLog log;
        Tracker trk;
        ReadOnly read_only;
        PendingRead *pending_reads;
        size_t n_pending_reads, cap_pending_reads;

        unsigned election_elapsed;
        unsigned heartbeat_elapsed;
        unsigned election_timeout;
        unsigned heartbeat_timeout;
        unsigned randomized_election_timeout;
        bool check_quorum;
        bool pre_vote;
        bool disable_proposal_forwarding;
        uint64_t max_msg_size;
        uint64_t max_uncommitted_size;

        StepFunc step;
        TickFunc tick;

        uint64_t rng;                   /* xorshift state when no callback */
        uint64_t (*random)(void *userdata);
        void *random_userdata;
        RaftAllocator alloc;
        void (*trace)(void *userdata, uint64_t id, const char *line);
        void *trace_userdata;

        Outbox outbox[2];               /* [cur] collects; the other is handed out in a Ready */
        unsigned cur;
        bool pending_bcast;             /* proposals appended, MsgApps not yet sent */

        /* RawNode bookkeeping. */
        RaftSoftState prev_soft;
        RaftHardState prev_hard;
        bool ready_outstanding;
        EntryVec ready_committed;
        int error;                      /* sticky failure (storage) */
};

/* raft.c */
void raft_tracef(Raft *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void raft_send(Raft *r, RaftMessage *m);
void raft_become_follower(Raft *r, uint64_t term, uint64_t lead);
void raft_become_candidate(Raft *r);
void raft_become_pre_candidate(Raft *r);
void raft_become_leader(Raft *r);
bool raft_promotable(Raft *r);
bool raft_past_election_timeout(Raft *r);
void raft_abort_leader_transfer(Raft *r);
int raft_step_internal(Raft *r, const RaftMessage *m);
RaftHardState raft_hard_state(Raft *r);
void raft_load_state(Raft *r, const RaftHardState *hs);
int raft_append_entries_local(Raft *r, RaftEntry *es, size_t n);
bool raft_maybe_commit(Raft *r);
uint64_t raft_payload_size(const RaftEntry *es, size_t n);

/* election.c */
typedef enum CampaignType { CAMPAIGN_PRE_ELECTION, CAMPAIGN_ELECTION, CAMPAIGN_TRANSFER } CampaignType;
void raft_election_hup(Raft *r, CampaignType t);
void raft_election_campaign(Raft *r, CampaignType t);
void raft_election_handle_vote_request(Raft *r, const RaftMessage *m);
int raft_election_step_candidate(Raft *r, const RaftMessage *m);
void raft_election_tick(Raft *r);
void raft_election_tick_heartbeat(Raft *r);
#define RAFT_CAMPAIGN_TRANSFER_CTX "CampaignTransfer"

/* replication.c */
bool raft_replication_maybe_send_append(Raft *r, uint64_t to, bool send_if_empty);
void raft_replication_send_append(Raft *r, uint64_t to);
void raft_replication_bcast_append(Raft *r);
void raft_replication_bcast_heartbeat(Raft *r, const void *ctx, size_t ctx_len);
void raft_replication_handle_append(Raft *r, const RaftMessage *m);
void raft_replication_handle_heartbeat(Raft *r, const RaftMessage *m);
int raft_replication_step_leader(Raft *r, const RaftMessage *m);
int raft_replication_step_follower(Raft *r, const RaftMessage *m);
void raft_replication_send_timeout_now(Raft *r, uint64_t to);

/* snapshot.c */
void raft_snapshot_handle(Raft *r, const RaftMessage *m);
bool raft_snapshot_restore(Raft *r, const RaftSnapshot *s);
bool raft_snapshot_maybe_send(Raft *r, Progress *pr);

/* confchange.c */
int raft_confchange_apply(Raft *r, const RaftConfChange *cc, RaftConfState *ret_cs);
/* Called after the tracker changed: updates is_learner, steps down when removed, commits. */
void raft_confchange_switch_to_config(Raft *r);
int raft_confchange_check_proposal(Raft *r, RaftEntry *e, bool local);

/* readindex.c */
void raft_readindex_reset(Raft *r);
void raft_readindex_done(Raft *r);
int raft_readindex_step_leader(Raft *r, const RaftMessage *m);
void raft_readindex_handle_heartbeat_resp(Raft *r, const RaftMessage *m);
void raft_readindex_release_pending(Raft *r);
bool raft_readindex_committed_entry_in_current_term(Raft *r);
void raft_readindex_add_read_state(Raft *r, uint64_t index, const void *ctx, size_t len);
