/* SPDX-License-Identifier: MIT */
/* The node: construction, role transitions, the outbox and Step's term handling common to all
 * roles (etcd's raft.go Step); role-specific steps live in election.c and replication.c. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "raft-internal.h"

void raft_tracef(Raft *r, const char *fmt, ...) {
        char line[512];
        va_list ap;

        if (!r->trace)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        r->trace(r->trace_userdata, r->id, line);
}

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t raft_random(Raft *r) {
        if (r->random)
                return r->random(r->random_userdata);
        return splitmix64(&r->rng);
}

static void reset_randomized_election_timeout(Raft *r) {
        r->randomized_election_timeout =
                r->election_timeout + (unsigned) (raft_random(r) % r->election_timeout);
}

static const char *const role_names[_RAFT_ROLE_MAX] = {
        [RAFT_FOLLOWER] = "follower",
        [RAFT_CANDIDATE] = "candidate",
        [RAFT_LEADER] = "leader",
        [RAFT_PRE_CANDIDATE] = "pre-candidate",
};

const char *raft_role_to_string(RaftRole role) {
        return role >= 0 && role < _RAFT_ROLE_MAX ? role_names[role] : "invalid";
}

static const char *const msg_names[_RAFT_MSG_MAX] = {
        [RAFT_MSG_HUP] = "MsgHup",
        [RAFT_MSG_BEAT] = "MsgBeat",
        [RAFT_MSG_PROP] = "MsgProp",
        [RAFT_MSG_APP] = "MsgApp",
        [RAFT_MSG_APP_RESP] = "MsgAppResp",
        [RAFT_MSG_VOTE] = "MsgVote",
        [RAFT_MSG_VOTE_RESP] = "MsgVoteResp",
        [RAFT_MSG_SNAP] = "MsgSnap",
        [RAFT_MSG_HEARTBEAT] = "MsgHeartbeat",
        [RAFT_MSG_HEARTBEAT_RESP] = "MsgHeartbeatResp",
        [RAFT_MSG_UNREACHABLE] = "MsgUnreachable",
        [RAFT_MSG_SNAP_STATUS] = "MsgSnapStatus",
        [RAFT_MSG_CHECK_QUORUM] = "MsgCheckQuorum",
        [RAFT_MSG_TRANSFER_LEADER] = "MsgTransferLeader",
        [RAFT_MSG_TIMEOUT_NOW] = "MsgTimeoutNow",
        [RAFT_MSG_READ_INDEX] = "MsgReadIndex",
        [RAFT_MSG_READ_INDEX_RESP] = "MsgReadIndexResp",
        [RAFT_MSG_PRE_VOTE] = "MsgPreVote",
        [RAFT_MSG_PRE_VOTE_RESP] = "MsgPreVoteResp",
};

const char *raft_message_type_to_string(RaftMessageType t) {
        return t >= 0 && t < _RAFT_MSG_MAX ? msg_names[t] : "MsgInvalid";
}

RaftHardState raft_hard_state(Raft *r) {
        return (RaftHardState) { .term = r->term, .vote = r->vote, .commit = r->log.committed };
}

/* ---- outbox ---- */

static RaftEntry *outbox_copy_entries(Outbox *o, const RaftAllocator *a, const RaftEntry *es, size_t n) {
        RaftEntry *c;

        if (n == 0)
                return NULL;
        c = raft_arena_alloc(&o->arena, a, n * sizeof(RaftEntry));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = es[i];
                if (es[i].len > 0) {
                        c[i].data = raft_arena_dup(&o->arena, a, es[i].data, es[i].len);
                        if (!c[i].data)
                                return NULL;
                }
        }
        return c;
}

/* Queues a copy of m. Running out of memory drops the message, which Raft tolerates like any
 * network loss. */
static void outbox_push(Raft *r, const RaftMessage *m) {
        Outbox *o = &r->outbox[r->cur];
        RaftMessage c = *m;

        if (raft_grow(&r->alloc, (void **) &o->msgs, &o->cap_msgs, o->n_msgs + 1, sizeof(RaftMessage)) < 0)
                goto oom;
        if (m->n_entries > 0) {
                c.entries = outbox_copy_entries(o, &r->alloc, m->entries, m->n_entries);
                if (!c.entries)
                        goto oom;
        }
        if (m->snapshot) {
                RaftSnapshot *s = raft_arena_alloc(&o->arena, &r->alloc, sizeof(RaftSnapshot));

                if (!s)
                        goto oom;
                *s = *m->snapshot;
                if (s->len > 0) {
                        s->data = raft_arena_dup(&o->arena, &r->alloc, m->snapshot->data, s->len);
                        if (!s->data)
                                goto oom;
                }
                c.snapshot = s;
        }
        if (m->context_len > 0) {
                c.context = raft_arena_dup(&o->arena, &r->alloc, m->context, m->context_len);
                if (!c.context)
                        goto oom;
        }
        o->msgs[o->n_msgs++] = c;
        return;
oom:
        raft_tracef(r, "out of memory, dropping %s to %" PRIu64, raft_message_type_to_string(m->type), m->to);
}

void raft_send(Raft *r, RaftMessage *m) {
        m->from = r->id;
        if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_VOTE_RESP ||
            m->type == RAFT_MSG_PRE_VOTE || m->type == RAFT_MSG_PRE_VOTE_RESP) {
                /* Campaign messages carry their term explicitly: pre-votes use a future term and
                 * vote responses the term of the request. */
                raft_assert(m->term != 0);
        } else {
                raft_assert(m->term == 0);
                /* Proposals and read requests are forwarded as local messages with term 0. */
                if (m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_READ_INDEX)
                        m->term = r->term;
        }
        outbox_push(r, m);
}

void raft_readindex_add_read_state(Raft *r, uint64_t index, const void *ctx, size_t len) {
        Outbox *o = &r->outbox[r->cur];
        RaftReadState *rs;

        if (raft_grow(&r->alloc, (void **) &o->read_states, &o->cap_read_states,
                      o->n_read_states + 1, sizeof(RaftReadState)) < 0)
                return;
        rs = &o->read_states[o->n_read_states];
        *rs = (RaftReadState) { .index = index, .ctx_len = len };
        if (len > 0) {
                rs->ctx = raft_arena_dup(&o->arena, &r->alloc, ctx, len);
                if (!rs->ctx)
                        return;
        }
        o->n_read_states++;
}

/* ---- role transitions ---- */

static void raft_reset(Raft *r, uint64_t term) {
        uint64_t last = raft_log_last_index(&r->log);

        if (r->term != term) {
                /* Term never decreases. */
                raft_assert(term > r->term);
                r->term = term;
                r->vote = RAFT_NONE;
        }
        r->lead = RAFT_NONE;
        r->election_elapsed = 0;
        r->heartbeat_elapsed = 0;
        reset_randomized_election_timeout(r);
        raft_abort_leader_transfer(r);
        raft_tracker_reset_votes(&r->trk);
        for (size_t i = 0; i < r->trk.n; i++) {
                Progress *pr = &r->trk.prs[i];

                pr->match = pr->id == r->id ? last : 0;
                pr->next = last + 1;
                pr->recent_active = false;
                raft_progress_reset_state(pr, RAFT_PROGRESS_PROBE);
        }
        r->pending_conf_index = 0;
        r->uncommitted_size = 0;
        r->pending_bcast = false;
        raft_readindex_reset(r);
}

void raft_become_follower(Raft *r, uint64_t term, uint64_t lead) {
        r->step = raft_replication_step_follower;
        raft_reset(r, term);
        r->tick = raft_election_tick;
        r->lead = lead;
        r->state = RAFT_FOLLOWER;
        raft_tracef(r, "became follower at term %" PRIu64, r->term);
}

void raft_become_candidate(Raft *r) {
        raft_assert(r->state != RAFT_LEADER);
        r->step = raft_election_step_candidate;
        raft_reset(r, r->term + 1);
        r->tick = raft_election_tick;
        r->vote = r->id;
        r->state = RAFT_CANDIDATE;
        raft_tracef(r, "became candidate at term %" PRIu64, r->term);
}

void raft_become_pre_candidate(Raft *r) {
        raft_assert(r->state != RAFT_LEADER);
        /* Pre-candidates do not change term or vote: a lost pre-election disturbs nobody. */
        r->step = raft_election_step_candidate;
        raft_tracker_reset_votes(&r->trk);
        r->tick = raft_election_tick;
        r->lead = RAFT_NONE;
        r->state = RAFT_PRE_CANDIDATE;
        raft_tracef(r, "became pre-candidate at term %" PRIu64, r->term);
}

void raft_become_leader(Raft *r) {
        RaftEntry empty = { .type = RAFT_ENTRY_NORMAL };
        Progress *pr;

        raft_assert(r->state != RAFT_FOLLOWER);
        r->step = raft_replication_step_leader;
        raft_reset(r, r->term);
        r->tick = raft_election_tick_heartbeat;
        r->lead = r->id;
        r->state = RAFT_LEADER;
        pr = raft_tracker_get(&r->trk, r->id);
        raft_assert(pr);
        raft_progress_become_replicate(pr);
        /* Conf changes proposed before this point may be uncommitted; do not allow a new one
         * until everything up to here is applied. */
        r->pending_conf_index = raft_log_last_index(&r->log);
        /* The empty entry lets the leader commit (and learn the commit index of) earlier terms. */
        if (raft_append_entries_local(r, &empty, 1) < 0) {
                raft_become_follower(r, r->term, RAFT_NONE);
                return;
        }
        raft_tracef(r, "became leader at term %" PRIu64, r->term);
}

bool raft_promotable(Raft *r) {
        Progress *pr = raft_tracker_get(&r->trk, r->id);

        return pr && !pr->is_learner && !raft_log_has_pending_snapshot(&r->log);
}

bool raft_past_election_timeout(Raft *r) {
        return r->election_elapsed >= r->randomized_election_timeout;
}

void raft_abort_leader_transfer(Raft *r) {
        r->lead_transferee = RAFT_NONE;
}

uint64_t raft_payload_size(const RaftEntry *es, size_t n) {
        uint64_t s = 0;

        for (size_t i = 0; i < n; i++)
                s += es[i].len;
        return s;
}

bool raft_maybe_commit(Raft *r) {
        return raft_log_maybe_commit(&r->log, raft_tracker_committed(&r->trk), r->term);
}

/* The leader appends entries of its own term. -EBUSY when the uncommitted size limit refuses
 * them (a lone entry is always accepted, so an oversized proposal cannot block forever). */
int raft_append_entries_local(Raft *r, RaftEntry *es, size_t n) {
        uint64_t li = raft_log_last_index(&r->log), s = raft_payload_size(es, n);
        Progress *pr;
        int k;

        for (size_t i = 0; i < n; i++) {
                es[i].term = r->term;
                es[i].index = li + 1 + i;
        }
        if (r->uncommitted_size > 0 && s > 0 && r->uncommitted_size + s > r->max_uncommitted_size)
                return -EBUSY;
        k = raft_log_append(&r->log, es, n, &li);
        if (k < 0)
                return k;
        r->uncommitted_size += s;
        pr = raft_tracker_get(&r->trk, r->id);
        if (pr)
                (void) raft_progress_maybe_update(pr, li);
        (void) raft_maybe_commit(r);
        return 0;
}

/* etcd's Step: term handling common to every role, then the role's step function. */
int raft_step_internal(Raft *r, const RaftMessage *m) {
        if (m->term == 0) {
                /* Local message. */
        } else if (m->term > r->term) {
                if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
                        bool force = m->context_len == strlen(RAFT_CAMPAIGN_TRANSFER_CTX) &&
                                     memcmp(m->context, RAFT_CAMPAIGN_TRANSFER_CTX, m->context_len) == 0;
                        bool in_lease = r->check_quorum && r->lead != RAFT_NONE &&
                                        r->election_elapsed < r->election_timeout;

                        /* We heard from a leader within the minimum election timeout: ignore
                         * disruptive candidates (Raft thesis §4.2.3). */
                        if (!force && in_lease)
                                return 0;
                }
                if (m->type == RAFT_MSG_PRE_VOTE) {
                        /* Never change our term in response to a pre-vote. */
                } else if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
                        /* A granted pre-vote carries our future term; we advance when we win. */
                } else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
                           m->type == RAFT_MSG_SNAP) {
                        raft_become_follower(r, m->term, m->from);
                } else {
                        raft_become_follower(r, m->term, RAFT_NONE);
                }
        } else if (m->term < r->term) {
                if ((r->check_quorum || r->pre_vote) &&
                    (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP)) {
                        /* A stale leader, possibly cut off by a partition that kept it from
                         * learning our term: tell it, so that it steps down. */
                        raft_send(r, &(RaftMessage) { .to = m->from, .type = RAFT_MSG_APP_RESP });
                } else if (m->type == RAFT_MSG_PRE_VOTE) {
                        raft_send(r, &(RaftMessage) { .to = m->from, .term = r->term,
                                                      .type = RAFT_MSG_PRE_VOTE_RESP, .reject = true });
                }
                return 0;
        }

        switch (m->type) {
        case RAFT_MSG_HUP:
                raft_election_hup(r, r->pre_vote ? CAMPAIGN_PRE_ELECTION : CAMPAIGN_ELECTION);
                return 0;
        case RAFT_MSG_VOTE:
        case RAFT_MSG_PRE_VOTE:
                raft_election_handle_vote_request(r, m);
                return 0;
        default:
                return r->step(r, m);
        }
}

/* ---- construction ---- */

static int config_validate(const RaftConfig *c, const RaftStorage *s) {
        if (!c || !s)
                return -EINVAL;
        if (c->id == RAFT_NONE)
                return -EINVAL;
        if (c->heartbeat_tick == 0 || c->election_tick <= c->heartbeat_tick)
                return -EINVAL;
        if (c->max_inflight_msgs == 0 || c->max_inflight_msgs > (1u << 16))
                return -EINVAL;
        if (!s->initial_state || !s->entries || !s->term || !s->first_index || !s->last_index ||
            !s->snapshot)
                return -EINVAL;
        if (c->allocator && (!c->allocator->malloc != !c->allocator->free ||
                             !c->allocator->malloc != !c->allocator->realloc))
                return -EINVAL;
        return 0;
}

void raft_load_state(Raft *r, const RaftHardState *hs) {
        r->log.committed = hs->commit;
        r->term = hs->term;
        r->vote = hs->vote;
}

int raft_new(Raft **ret, const RaftConfig *c, const RaftStorage *s) {
        RaftAllocator alloc = {};
        RaftHardState hs = {};
        RaftConfState cs = {};
        Raft *r;
        int k;

        k = config_validate(c, s);
        if (k < 0)
                return k;
        if (c->allocator)
                alloc = *c->allocator;
        r = raft_malloc(&alloc, sizeof(Raft));
        if (!r)
                return -ENOMEM;
        *r = (Raft) {
                .id = c->id,
                .alloc = alloc,
                .election_timeout = c->election_tick,
                .heartbeat_timeout = c->heartbeat_tick,
                .check_quorum = c->check_quorum,
                .pre_vote = c->pre_vote,
                .disable_proposal_forwarding = c->disable_proposal_forwarding,
                .max_msg_size = c->max_size_per_msg,
                .max_uncommitted_size = c->max_uncommitted_entries_size ?: RAFT_NO_LIMIT,
                .random = c->random,
                .random_userdata = c->random_userdata,
                .rng = c->seed ^ (c->id * UINT64_C(0x9e3779b97f4a7c15)),
                .trace = c->trace,
                .trace_userdata = c->trace_userdata,
                .state = RAFT_FOLLOWER,
                .storage = *s,
        };
        r->trk.max_inflight = c->max_inflight_msgs;
        k = raft_log_init(&r->log, &r->storage, &r->alloc,
                     c->max_committed_size_per_ready ?: RAFT_NO_LIMIT);
        if (k < 0)
                goto fail;
        k = s->initial_state(s->userdata, &hs, &cs);
        if (k < 0)
                goto fail;
        k = raft_tracker_set_conf(&r->trk, &r->alloc, &cs, raft_log_last_index(&r->log) + 1);
        if (k < 0)
                goto fail;
        if (hs.term != 0 || hs.vote != 0 || hs.commit != 0) {
                /* A snapshot proves its index committed even if the commit index written with
                 * the hard state is older (commit-only changes need no fsync). */
                hs.commit = RAFT_MAX(hs.commit, r->log.committed);
                if (hs.commit > raft_log_last_index(&r->log)) {
                        k = -EINVAL;
                        goto fail;
                }
                raft_load_state(r, &hs);
        }
        /* A node's term is never below the term of its last entry. Storage can say otherwise
         * after a torn write (entries durable, the hard state written with them not) or a
         * bootstrap that only wrote a snapshot. No vote was sent in the newer term (votes are
         * sent only once durable), so adopting it without a vote is safe; the next Ready
         * persists it. */
        if (r->term < raft_log_last_term(&r->log)) {
                r->term = raft_log_last_term(&r->log);
                r->vote = RAFT_NONE;
        }
        if (c->applied > 0) {
                if (c->applied > r->log.committed || c->applied < r->log.applied) {
                        k = -EINVAL;
                        goto fail;
                }
                raft_log_applied_to(&r->log, c->applied);
        }
        {
                Progress *pr = raft_tracker_get(&r->trk, r->id);
                r->is_learner = pr && pr->is_learner;
        }
        raft_become_follower(r, r->term, RAFT_NONE);
        r->prev_hard = hs;
        r->prev_soft = (RaftSoftState) { .lead = r->lead, .role = r->state };
        if (r->log.error < 0) {
                k = r->log.error;
                goto fail;
        }
        raft_tracef(r, "newraft term=%" PRIu64 " commit=%" PRIu64 " applied=%" PRIu64
                    " lastindex=%" PRIu64, r->term, r->log.committed, r->log.applied,
                    raft_log_last_index(&r->log));
        *ret = r;
        return 0;
fail:
        (void) raft_free(r);
        return k;
}

Raft *raft_free(Raft *r) {
        if (!r)
                return NULL;
        raft_log_done(&r->log);
        raft_tracker_done(&r->trk, &r->alloc);
        raft_readindex_done(r);
        for (unsigned i = 0; i < 2; i++) {
                raft_mfree(&r->alloc, r->outbox[i].msgs);
                raft_mfree(&r->alloc, r->outbox[i].read_states);
                raft_arena_done(&r->outbox[i].arena, &r->alloc);
        }
        raft_entry_vec_done(&r->ready_committed, &r->alloc);
        raft_mfree(&r->alloc, r);
        return NULL;
}
