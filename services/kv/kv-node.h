/* SPDX-License-Identifier: MIT */
/* One flotilla-kv member: the Raft core driven by sd-event, its durable storage (WAL and snapshot
 * files), the etcd v2 state machine, the membership table and the peer transport.
 *
 * The driver loop (a defer source, so everything one loop iteration proposed shares one Ready):
 *   1. persist: snapshot file + WAL marker, then entries and hard state into the WAL, one
 *      fdatasync for the whole Ready (group commit), then the in-memory log;
 *   2. send the Ready's messages (only now: votes and acknowledgements promise durable state);
 *   3. apply: restore from a received snapshot, apply committed entries (KV commands, membership
 *      changes, published member attributes), answer the proposals and quorum reads waiting on
 *      them;
 *   4. advance; take a snapshot every snapshot-count entries and release the WAL behind it.
 *
 * A write proposed on any member is forwarded to the leader by Raft; the member that proposed it
 * recognises its own entry (origin id + sequence number) when applying and answers the client.
 * A quorum read asks Raft for a read index (ReadIndex: a heartbeat round confirms leadership)
 * and is served locally once that index is applied. Requests not answered within the request
 * timeout fail with etcd's "request timed out" (error 300). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kv-config.h"
#include "kv-members.h"
#include "kv-store.h"
#include "raft.h"
#include "shared/buf.h"
#include "shared/macro.h"

typedef struct KvNode KvNode;
typedef struct KvProposal KvProposal;

/* A write finished: res is the store's result (event or etcd error), error < 0 when the proposal
 * itself failed (-ETIMEDOUT: not committed in time; -ECANCELED: the member is stopping). */
typedef void (*KvApplyFn)(const KvStoreResult *res, int error, void *userdata);
/* A quorum read may now be served from the local store (error 0), or failed. */
typedef void (*KvReadFn)(int error, void *userdata);

typedef struct KvNodeStatus {
        uint64_t id, cluster_id, leader;
        RaftRole role;
        uint64_t term;
        uint64_t applied_index;       /* X-Raft-Index */
        uint64_t commit_index;
        uint64_t snapshot_index;
        size_t pending;               /* proposals and reads waiting */
        int64_t start_time_ns;        /* wall clock */
        int64_t leader_since_ns;      /* wall clock when the current leader was learned; 0 none */
} KvNodeStatus;

int kv_node_new(KvNode **ret, sd_event *e, const KvConfig *cfg);
/* Fails every waiting request with -ECANCELED and frees everything. */
KvNode *kv_node_free(KvNode *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvNode *, kv_node_free)

/* Proposes a command. cb runs exactly once unless the proposal is cancelled first. */
int kv_node_propose(KvNode *n, const KvCommand *c, KvApplyFn cb, void *userdata, KvProposal **ret);
int kv_node_read_index(KvNode *n, KvReadFn cb, void *userdata, KvProposal **ret);
/* The client went away: no callback. A write may still be applied. */
void kv_proposal_cancel(KvProposal *p);

KvStore *kv_node_store(KvNode *n);
const KvMembers *kv_node_members(KvNode *n);
void kv_node_status(KvNode *n, KvNodeStatus *ret);
/* True while this member knows a leader it heard from within the election timeout. */
bool kv_node_has_leader(KvNode *n);
/* True once this member's name and client URLs are committed to the member list. */
bool kv_node_published(KvNode *n);
/* /v2/stats/self and /v2/stats/leader as etcd renders them. stats_leader returns -EPERM on a
 * follower (etcd answers 403 "not current leader"). */
int kv_node_render_self_stats(KvNode *n, Buf *out);
int kv_node_render_leader_stats(KvNode *n, Buf *out);
/* Graceful stop: a leader hands leadership to its most up-to-date voter first, so clients do
 * not wait out an election. Returns 0 if done is already called (nothing to hand over), 1 if it
 * will be called once another member leads or after two election timeouts. */
int kv_node_stop(KvNode *n, void (*done)(void *userdata), void *userdata);

/* The wall clock in Unix nanoseconds: what TTLs are measured against. */
int64_t kv_node_now_ns(void);
/* Called once, the first time this member knows a leader and its own attributes (name, client
 * URLs) are committed: it can serve the API from then on (flotilla-kv tells systemd READY=1 at
 * that point, as etcd does after publishing itself). */
void kv_node_on_serving(KvNode *n, void (*cb)(void *userdata), void *userdata);
/* Membership changes, one at a time, each answered once its conf change is applied here (error
 * 0), or failed (-ETIMEDOUT when not applied within the request timeout, -ECANCELED when the
 * member stops). Returns -EBUSY while another change is waited for. */
typedef void (*KvMemberChangeFn)(int error, void *userdata);
/* Adds a member with these peer URLs as a learner (it is promoted to voter by the leader once it
 * has caught up); *ret_id is its new id. -EEXIST when a member has one of the URLs. */
int kv_node_add_member(KvNode *n, char *const *peer_urls, uint64_t *ret_id, KvMemberChangeFn cb, void *userdata);
/* -ENOENT for an unknown id; -EDEADLK when removing it would leave fewer members that this one
 * can reach than a quorum of the remaining voters (etcd's strict reconfiguration check). */
int kv_node_remove_member(KvNode *n, uint64_t id, KvMemberChangeFn cb, void *userdata);
/* Promotes a learner now. -ENOENT for an unknown id, -EINVAL for a voter, -EAGAIN while it has not
 * caught up with the leader (only the leader can tell; followers forward). */
int kv_node_promote_member(KvNode *n, uint64_t id, KvMemberChangeFn cb, void *userdata);
/* Replaces the peer URLs of a member. */
int kv_node_update_member(KvNode *n, uint64_t id, char *const *peer_urls, KvMemberChangeFn cb, void *userdata);
/* The client that waited went away: no callback (the change itself may still happen). */
void kv_node_member_change_cancel(KvNode *n);
/* Whether id is a learner (not yet a voter) in the applied configuration. */
bool kv_node_is_learner(KvNode *n, uint64_t id);
/* Peers connected and answering pings (as etcd_network_active_peers). */
unsigned kv_node_active_peers(KvNode *n);

/* Sets a callback for fatal storage errors (the member must stop). */
void kv_node_on_fatal(KvNode *n, void (*cb)(int error, void *userdata), void *userdata);
