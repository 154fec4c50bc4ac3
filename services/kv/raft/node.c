/* SPDX-License-Identifier: MIT */
/* The public API in the shape of etcd's RawNode: inputs (tick, step, propose, ...), then the
 * Ready/Advance handshake that hands persistence, messages and application to the driver. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

static bool is_local_msg(RaftMessageType t) {
        return t == RAFT_MSG_HUP || t == RAFT_MSG_BEAT || t == RAFT_MSG_UNREACHABLE ||
               t == RAFT_MSG_SNAP_STATUS || t == RAFT_MSG_CHECK_QUORUM;
}

static bool is_response_msg(RaftMessageType t) {
        return t == RAFT_MSG_APP_RESP || t == RAFT_MSG_VOTE_RESP || t == RAFT_MSG_HEARTBEAT_RESP ||
               t == RAFT_MSG_UNREACHABLE || t == RAFT_MSG_PRE_VOTE_RESP;
}

/* Structural checks of a message from the network, so that a corrupted (but decodable) message
 * is refused instead of tripping an assertion: only proposals and read requests travel without a
 * term, and a MsgApp's entries must continue its index with terms between its log term and its
 * term. */
static int validate_message(const RaftMessage *m) {
        uint64_t prev;

        if (m->term == 0 && m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_READ_INDEX)
                return -EBADMSG;
        if (m->type == RAFT_MSG_APP) {
                prev = m->log_term;
                for (size_t i = 0; i < m->n_entries; i++) {
                        const RaftEntry *e = &m->entries[i];

                        if (e->index != m->index + 1 + i || e->term < prev || e->term > m->term ||
                            e->type < 0 || e->type >= _RAFT_ENTRY_TYPE_MAX || (e->len > 0 && !e->data))
                                return -EBADMSG;
                        prev = e->term;
                }
                if (m->log_term > m->term)
                        return -EBADMSG;
        }
        if (m->type == RAFT_MSG_SNAP &&
            (m->snapshot->metadata.index == 0 || m->snapshot->metadata.term > m->term ||
             raft_conf_state_validate(&m->snapshot->metadata.conf_state) < 0))
                return -EBADMSG;
        return 0;
}

/* Common entry checks: a failed node stays failed; inputs wait until the Ready is advanced. */
static int enter(Raft *r) {
        if (!r)
                return -EINVAL;
        if (r->error < 0)
                return r->error;
        if (r->log.error < 0)
                return r->error = r->log.error;
        if (r->ready_outstanding)
                return -EBUSY;
        return 0;
}

static int leave(Raft *r, int k) {
        if (r->log.error < 0) {
                r->error = r->log.error;
                return r->error;
        }
        /* Commit never passes the last index. */
        raft_assert(r->log.committed <= raft_log_last_index(&r->log));
        raft_assert(r->log.applied <= r->log.committed);
        return k;
}

int raft_tick(Raft *r) {
        int k = enter(r);

        if (k < 0)
                return k;
        r->tick(r);
        return leave(r, 0);
}

int raft_step(Raft *r, const RaftMessage *m) {
        int k = enter(r);

        if (k < 0)
                return k;
        if (!m || m->type < 0 || m->type >= _RAFT_MSG_MAX || is_local_msg(m->type))
                return -EINVAL;
        if ((m->n_entries > 0 && !m->entries) || (m->context_len > 0 && !m->context))
                return -EINVAL;
        if (m->type == RAFT_MSG_SNAP && !m->snapshot)
                return -EINVAL;
        k = validate_message(m);
        if (k < 0)
                return k;
        if (is_response_msg(m->type) && !raft_tracker_get(&r->trk, m->from))
                return -ENOENT;
        k = raft_step_internal(r, m);
        return leave(r, k);
}

static int propose_entry(Raft *r, RaftEntryType type, const void *data, size_t len) {
        RaftEntry e = { .type = type, .data = data, .len = len };
        int k = enter(r);

        if (k < 0)
                return k;
        if (len > 0 && !data)
                return -EINVAL;
        k = raft_step_internal(r, &(RaftMessage) { .type = RAFT_MSG_PROP, .from = r->id,
                                                   .entries = &e, .n_entries = 1 });
        return leave(r, k);
}

int raft_propose(Raft *r, const void *data, size_t len) {
        return propose_entry(r, RAFT_ENTRY_NORMAL, data, len);
}

int raft_propose_conf_change(Raft *r, const RaftConfChange *cc) {
        uint8_t small[64], *buf = small;
        size_t n;
        int k;

        if (!r || !cc)
                return -EINVAL;
        n = raft_conf_change_encoded_size(cc);
        if (n > sizeof(small)) {
                buf = raft_malloc(&r->alloc, n);
                if (!buf)
                        return -ENOMEM;
        }
        k = raft_conf_change_encode(cc, buf, n);
        if (k >= 0)
                k = propose_entry(r, RAFT_ENTRY_CONF_CHANGE, buf, n);
        if (buf != small)
                raft_mfree(&r->alloc, buf);
        return k;
}

static int step_local(Raft *r, const RaftMessage *m) {
        int k = enter(r);

        if (k < 0)
                return k;
        k = raft_step_internal(r, m);
        return leave(r, k);
}

int raft_campaign(Raft *r) {
        return step_local(r, &(RaftMessage) { .type = RAFT_MSG_HUP, .from = r ? r->id : 0 });
}

int raft_transfer_leader(Raft *r, uint64_t to) {
        if (!r || to == RAFT_NONE)
                return -EINVAL;
        /* A follower forwards the request as its own (like etcd), so it can only name itself. */
        if (r->state != RAFT_LEADER && to != r->id)
                return -EINVAL;
        return step_local(r, &(RaftMessage) { .type = RAFT_MSG_TRANSFER_LEADER, .from = to });
}

int raft_read_index(Raft *r, const void *ctx, size_t len) {
        if (!r || !ctx || len == 0 || len > RAFT_CODEC_MAX_CONTEXT)
                return -EINVAL;
        return step_local(r, &(RaftMessage) { .type = RAFT_MSG_READ_INDEX, .from = r->id,
                                              .context = ctx, .context_len = len });
}

int raft_report_unreachable(Raft *r, uint64_t id) {
        return step_local(r, &(RaftMessage) { .type = RAFT_MSG_UNREACHABLE, .from = id });
}

int raft_report_snapshot(Raft *r, uint64_t id, bool ok) {
        return step_local(r, &(RaftMessage) { .type = RAFT_MSG_SNAP_STATUS, .from = id,
                                              .reject = !ok });
}

static void flush_pending_bcast(Raft *r) {
        if (!r->pending_bcast)
                return;
        r->pending_bcast = false;
        if (r->state == RAFT_LEADER)
                raft_replication_bcast_append(r);
}

static bool hard_state_equal(const RaftHardState *a, const RaftHardState *b) {
        return a->term == b->term && a->vote == b->vote && a->commit == b->commit;
}

bool raft_has_ready(Raft *r) {
        RaftHardState hs;
        Outbox *o;

        if (!r || r->ready_outstanding || r->error < 0)
                return false;
        flush_pending_bcast(r);
        o = &r->outbox[r->cur];
        hs = raft_hard_state(r);
        return r->lead != r->prev_soft.lead || r->state != r->prev_soft.role ||
               !hard_state_equal(&hs, &r->prev_hard) ||
               raft_log_has_pending_snapshot(&r->log) ||
               o->n_msgs > 0 || o->n_read_states > 0 ||
               r->log.unstable.n > 0 ||
               raft_log_has_next_ents(&r->log);
}

int raft_ready(Raft *r, RaftReady *ret) {
        RaftHardState hs;
        RaftReady rd = {};
        Outbox *o;
        int k = enter(r);

        if (k < 0)
                return k;
        if (!ret)
                return -EINVAL;
        flush_pending_bcast(r);
        k = raft_log_next_ents(&r->log, &r->ready_committed);
        if (k < 0)
                return leave(r, k);

        rd.soft_state = (RaftSoftState) { .lead = r->lead, .role = r->state };
        rd.has_soft_state = rd.soft_state.lead != r->prev_soft.lead ||
                            rd.soft_state.role != r->prev_soft.role;
        hs = raft_hard_state(r);
        rd.has_hard_state = !hard_state_equal(&hs, &r->prev_hard);
        rd.hard_state = hs;
        rd.entries = r->log.unstable.entries;
        rd.n_entries = r->log.unstable.n;
        rd.snapshot = r->log.unstable.snapshot;
        rd.committed_entries = r->ready_committed.e;
        rd.n_committed_entries = r->ready_committed.n;
        o = &r->outbox[r->cur];
        rd.messages = o->msgs;
        rd.n_messages = o->n_msgs;
        rd.read_states = o->read_states;
        rd.n_read_states = o->n_read_states;
        /* Term and vote must be durable before we answer anyone in this term (one vote per
         * term, across crashes); entries before we acknowledge them. The commit index alone
         * can be recovered from the others. */
        rd.must_sync = hs.term != r->prev_hard.term || hs.vote != r->prev_hard.vote ||
                       rd.n_entries > 0 || rd.snapshot;
#ifdef RAFT_TESTING_BUG_NO_VOTE_PERSIST
        /* Planted bug for the simulator: the vote never reaches stable storage. */
        rd.hard_state.vote = RAFT_NONE;
        rd.must_sync = hs.term != r->prev_hard.term || rd.n_entries > 0 || rd.snapshot;
#endif

        r->cur ^= 1;
        r->prev_soft = rd.soft_state;
        r->prev_hard = hs;
        r->ready_outstanding = true;
        *ret = rd;
        return 0;
}

int raft_advance(Raft *r, const RaftReady *rd) {
        Outbox *o;
        uint64_t applied = 0;

        if (!r || !rd)
                return -EINVAL;
        if (!r->ready_outstanding)
                return -EINVAL;
        if (r->state == RAFT_LEADER)
                r->uncommitted_size -= RAFT_MIN(r->uncommitted_size,
                                                raft_payload_size(rd->committed_entries,
                                                                  rd->n_committed_entries));
        if (rd->n_committed_entries > 0)
                applied = rd->committed_entries[rd->n_committed_entries - 1].index;
        else if (rd->snapshot)
                applied = rd->snapshot->metadata.index;
        if (applied > r->log.applied)
                raft_log_applied_to(&r->log, applied);
        if (rd->n_entries > 0) {
                const RaftEntry *e = &rd->entries[rd->n_entries - 1];
                raft_log_stable_to(&r->log, e->index, e->term);
        }
        if (rd->snapshot)
                raft_log_stable_snap_to(&r->log, rd->snapshot->metadata.index);
        o = &r->outbox[r->cur ^ 1];
        o->n_msgs = 0;
        o->n_read_states = 0;
        raft_arena_reset(&o->arena, &r->alloc);
        r->ready_committed.n = 0;
        r->ready_outstanding = false;
        return leave(r, 0);
}

int raft_apply_conf_change(Raft *r, const RaftConfChange *cc, RaftConfState *ret_cs) {
        int k;

        /* Allowed while a Ready is outstanding: conf changes are applied while applying it. */
        if (!r || !cc)
                return -EINVAL;
        if (r->error < 0)
                return r->error;
        k = raft_confchange_apply(r, cc, ret_cs);
        return k < 0 ? k : leave(r, k);
}

void raft_status(Raft *r, RaftStatus *ret) {
        RaftStatus s = {
                .id = r->id,
                .hard_state = raft_hard_state(r),
                .soft_state = { .lead = r->lead, .role = r->state },
                .applied = r->log.applied,
                .first_index = raft_log_first_index(&r->log),
                .last_index = raft_log_last_index(&r->log),
                .lead_transferee = r->lead_transferee,
                .conf_state = r->trk.conf,
        };

        if (r->state == RAFT_LEADER)
                for (size_t i = 0; i < r->trk.n && s.n_peers < RAFT_MAX_VOTERS + RAFT_MAX_LEARNERS; i++) {
                        const Progress *pr = &r->trk.prs[i];

                        s.peers[s.n_peers++] = (RaftPeerStatus) {
                                .id = pr->id,
                                .match = pr->match,
                                .next = pr->next,
                                .state = pr->state,
                                .is_learner = pr->is_learner,
                                .recent_active = pr->recent_active,
                        };
                }
        *ret = s;
}

RaftSoftState raft_soft_state(Raft *r) {
        return (RaftSoftState) { .lead = r->lead, .role = r->state };
}

RaftHardState raft_get_hard_state(Raft *r) {
        return raft_hard_state(r);
}

int raft_term_at(Raft *r, uint64_t i, uint64_t *ret_term) {
        return raft_log_term_checked(&r->log, i, ret_term);
}
