/* SPDX-License-Identifier: MIT */
/* The Raft core: a deterministic state machine in the shape of etcd's RawNode. Inputs are ticks,
 * received messages and proposals; the output is a RaftReady. No clocks, no I/O, no globals.
 * Every function returning int returns 0 (or a documented count) on success, -errno on failure. */
#pragma once

#include "raft-t.h"

/* Creates a node. The callbacks in *s are copied; what s->userdata points to must outlive the
 * node. -EINVAL for a bad config, -ENOMEM, or a storage error. The hard state and configuration
 * come from storage (RaftStorage.initial_state). */
int raft_new(Raft **ret, const RaftConfig *c, const RaftStorage *s);
Raft *raft_free(Raft *r);

/* Advances the logical clock by one tick. */
int raft_tick(Raft *r);
/* Feeds a message received from a peer. -EINVAL for local message types, -ENOENT for a response
 * from a node that is not a member, -EBADMSG for a structurally invalid message. Messages for
 * another term are handled as Raft says. */
int raft_step(Raft *r, const RaftMessage *m);
/* Proposes data to be appended to the log (copied). -ENOTCONN when there is no known leader (or
 * this node is a candidate), -EBUSY when the leader refuses it (flow control, or a leadership
 * transfer in progress), -EPERM when this leader has been removed, -EINVAL, -ENOMEM. A proposal
 * that returned 0 may still be lost; the application learns of success when it is applied. */
int raft_propose(Raft *r, const void *data, size_t len);
/* Proposes a membership change. Additionally -EBUSY when a change is still pending (only one at a
 * time) or when a learner to be promoted has not caught up with the leader's commit index. */
int raft_propose_conf_change(Raft *r, const RaftConfChange *cc);
/* Starts an election now (no-op on a leader or a non-voter). */
int raft_campaign(Raft *r);
/* Asks the leader to hand leadership to 'to'. On a follower only to == own id is accepted (the
 * request is forwarded under the follower's id, as etcd does); -EINVAL otherwise. */
int raft_transfer_leader(Raft *r, uint64_t to);
/* Requests a linearizable read point; ctx (copied, 1..RAFT_CODEC_MAX_CONTEXT bytes) should be
 * unique and comes back in a RaftReadState. Forwarded to the leader by followers. */
int raft_read_index(Raft *r, const void *ctx, size_t len);
/* Reports that the last message to 'id' could not be delivered (leader slows down to probing). */
int raft_report_unreachable(Raft *r, uint64_t id);
/* Reports the outcome of sending a snapshot to 'id'; must be called for every MsgSnap sent. */
int raft_report_snapshot(Raft *r, uint64_t id, bool ok);

bool raft_has_ready(Raft *r);
/* Fills *ret. Nothing in it may be used after raft_advance(r, ret). -EBUSY if the previous Ready
 * was not advanced yet. */
int raft_ready(Raft *r, RaftReady *ret);
/* Tells the core the Ready was handled: entries and hard state persisted, messages sent,
 * committed entries applied. */
int raft_advance(Raft *r, const RaftReady *rd);
/* Applies a committed conf change (call it while applying the entry) and returns the new
 * configuration, which the application stores with its next snapshot. */
int raft_apply_conf_change(Raft *r, const RaftConfChange *cc, RaftConfState *ret_cs);
void raft_status(Raft *r, RaftStatus *ret);
/* Cheap introspection for drivers and checkers: role, leader and term without copying a status. */
RaftSoftState raft_soft_state(Raft *r);
RaftHardState raft_get_hard_state(Raft *r);
/* Term of entry i in this node's log (stable or not). -ENOENT if compacted, -EAGAIN if beyond
 * the last index. */
int raft_term_at(Raft *r, uint64_t i, uint64_t *ret_term);

/* Names for traces and tests. */
const char *raft_role_to_string(RaftRole role);
const char *raft_message_type_to_string(RaftMessageType t);
const char *raft_conf_change_type_to_string(RaftConfChangeType t);
bool raft_conf_state_has(const RaftConfState *cs, uint64_t id, bool *ret_is_learner);
/* 0 when ids are non-zero, strictly ascending within each set, and no learner is a voter; else -EINVAL. */
int raft_conf_state_validate(const RaftConfState *cs);
/* The size an entry counts for in limits: len + RAFT_ENTRY_OVERHEAD. */
static inline uint64_t raft_entry_size(const RaftEntry *e) {
        return (uint64_t) e->len + RAFT_ENTRY_OVERHEAD;
}

/* Wire codec (codec.c): compact little-endian, leading version byte. Decoding validates every
 * length against the buffer and the RAFT_CODEC_MAX_* limits and returns -EBADMSG on malformed
 * input. raft_message_decode() copies everything into one allocation released by
 * raft_message_free_contents() with the same allocator (NULL: libc). */
size_t raft_message_encoded_size(const RaftMessage *m);
int raft_message_encode(const RaftMessage *m, uint8_t *buf, size_t size);
int raft_message_decode(const uint8_t *buf, size_t size, const RaftAllocator *a, RaftMessage *ret);
void raft_message_free_contents(RaftMessage *m, const RaftAllocator *a);

size_t raft_conf_change_encoded_size(const RaftConfChange *cc);
int raft_conf_change_encode(const RaftConfChange *cc, uint8_t *buf, size_t size);
/* ret->context points into buf. */
int raft_conf_change_decode(const uint8_t *buf, size_t size, RaftConfChange *ret);

/* One entry, e.g. for a WAL record. Decode returns the bytes consumed; ret->data points into buf. */
size_t raft_entry_encoded_size(const RaftEntry *e);
int raft_entry_encode(const RaftEntry *e, uint8_t *buf, size_t size);
int raft_entry_decode(const uint8_t *buf, size_t size, RaftEntry *ret);

/* RaftMemoryStorage (memstorage.c): the log kept in memory, with a dummy entry at the snapshot
 * index like etcd's MemoryStorage. Everything given to it is copied (snapshot data: unless a
 * loader is set, below). */
int raft_memory_storage_new(RaftMemoryStorage **ret, const RaftAllocator *a);
RaftMemoryStorage *raft_memory_storage_free(RaftMemoryStorage *ms);
/* The RaftStorage callbacks reading from ms. */
void raft_memory_storage_get(RaftMemoryStorage *ms, RaftStorage *ret);
int raft_memory_storage_set_hard_state(RaftMemoryStorage *ms, const RaftHardState *hs);
void raft_memory_storage_hard_state(RaftMemoryStorage *ms, RaftHardState *ret);
/* Appends entries, dropping any existing ones from entries[0].index on. -EINVAL on a gap. */
int raft_memory_storage_append(RaftMemoryStorage *ms, const RaftEntry *entries, size_t n);
/* Replaces the whole log with a snapshot. -ESTALE if it is older than the current one. */
int raft_memory_storage_apply_snapshot(RaftMemoryStorage *ms, const RaftSnapshot *snap);
/* Makes a snapshot at 'index' (<= last index) with conf state and data. -ESTALE if older. */
int raft_memory_storage_create_snapshot(RaftMemoryStorage *ms, uint64_t index,
                                        const RaftConfState *cs, const void *data, size_t len);
/* Snapshot data kept outside the storage (on disk): with a loader set, create and apply keep only
 * the metadata, and the storage's snapshot callback loads the data through fn when Raft needs it
 * (to send a snapshot to a follower). fn returns the data allocated with the storage's allocator
 * (libc when none was given), or a negative errno, which Raft sees as -EAGAIN (try later). Loaded
 * data stays, and the snapshot Raft borrowed stays valid, until release_snapshot_data(). */
typedef int (*RaftSnapshotLoadFn)(void *userdata, const RaftSnapshotMeta *meta, void **ret_data, size_t *ret_len);
void raft_memory_storage_set_snapshot_loader(RaftMemoryStorage *ms, RaftSnapshotLoadFn fn, void *userdata);
void raft_memory_storage_release_snapshot_data(RaftMemoryStorage *ms);
/* Discards entries before 'index' (which becomes the dummy entry). -ESTALE if already compacted. */
int raft_memory_storage_compact(RaftMemoryStorage *ms, uint64_t index);
uint64_t raft_memory_storage_first_index(RaftMemoryStorage *ms);
uint64_t raft_memory_storage_last_index(RaftMemoryStorage *ms);
