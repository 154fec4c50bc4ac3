/* SPDX-License-Identifier: MIT */
/* Log replication: the leader's MsgApp pipeline with flow control (probe/replicate states and an
 * in-flight window), fast backtracking on rejections, heartbeats, and the leader's and follower's
 * step functions (Raft paper §5.3, etcd's raft.go). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "raft-internal.h"

/* Sends a MsgApp (or a snapshot when the entries are compacted) to 'to' if its progress allows.
 * Returns whether a message was sent. */
bool raft_replication_maybe_send_append(Raft *r, uint64_t to, bool send_if_empty) {
        Progress *pr = raft_tracker_get(&r->trk, to);
        EntryVec *ents = &r->log.scratch;
        uint64_t term;
        int et, ee;

        if (!pr || raft_progress_is_paused(pr))
                return false;
        et = raft_log_term_checked(&r->log, pr->next - 1, &term);
        ee = raft_log_slice(&r->log, pr->next, raft_log_last_index(&r->log) + 1,
                       r->max_msg_size ?: 1, ents);
        if (ee == -ENOMEM)
                return false;
        if (et < 0 || ee < 0)
                return raft_snapshot_maybe_send(r, pr);
        if (ents->n == 0 && !send_if_empty)
                return false;

        RaftMessage m = {
                .type = RAFT_MSG_APP,
                .to = to,
                .index = pr->next - 1,
                .log_term = term,
                .entries = ents->e,
                .n_entries = ents->n,
                .commit = r->log.committed,
        };
        if (ents->n > 0) {
                uint64_t last = ents->e[ents->n - 1].index;

                switch (pr->state) {
                case RAFT_PROGRESS_REPLICATE:
                        /* Pipelining: assume delivery and send the next batch right away. */
                        pr->next = last + 1;
                        raft_inflights_add(&pr->inflights, last);
                        break;
                case RAFT_PROGRESS_PROBE:
                        pr->probe_sent = true;
                        break;
                default:
                        raft_assert(!"sending append in snapshot state");
                }
        }
        raft_send(r, &m);
        return true;
}

void raft_replication_send_append(Raft *r, uint64_t to) {
        (void) raft_replication_maybe_send_append(r, to, true);
}

void raft_replication_bcast_append(Raft *r) {
        for (size_t i = 0; i < r->trk.n; i++)
                if (r->trk.prs[i].id != r->id)
                        raft_replication_send_append(r, r->trk.prs[i].id);
}

static void send_heartbeat(Raft *r, uint64_t to, const void *ctx, size_t ctx_len) {
        Progress *pr = raft_tracker_get(&r->trk, to);

        /* The follower may not have the leader's log up to 'committed' yet; never make it commit
         * beyond what it is known to hold. */
        raft_send(r, &(RaftMessage) {
                .type = RAFT_MSG_HEARTBEAT,
                .to = to,
                .commit = RAFT_MIN(pr->match, r->log.committed),
                .context = ctx,
                .context_len = ctx_len,
        });
}

void raft_replication_bcast_heartbeat(Raft *r, const void *ctx, size_t ctx_len) {
        for (size_t i = 0; i < r->trk.n; i++)
                if (r->trk.prs[i].id != r->id)
                        send_heartbeat(r, r->trk.prs[i].id, ctx, ctx_len);
}

void raft_replication_send_timeout_now(Raft *r, uint64_t to) {
        raft_send(r, &(RaftMessage) { .type = RAFT_MSG_TIMEOUT_NOW, .to = to });
}

void raft_replication_handle_append(Raft *r, const RaftMessage *m) {
        uint64_t last, hint_index, hint_term;
        int k;

        if (m->index < r->log.committed) {
                raft_send(r, &(RaftMessage) { .type = RAFT_MSG_APP_RESP, .to = m->from,
                                              .index = r->log.committed });
                return;
        }
        k = raft_log_maybe_append(&r->log, m->index, m->log_term, m->commit, m->entries, m->n_entries, &last);
        if (k < 0)
                return;         /* out of memory: as if the message was lost */
        if (k > 0) {
                raft_send(r, &(RaftMessage) { .type = RAFT_MSG_APP_RESP, .to = m->from, .index = last });
                return;
        }
        /* Mismatch. Hint the leader at the last index that may match, skipping whole terms
         * (fast backtracking, thesis §5.3): our largest index <= m->index whose term is <=
         * m->log_term. */
        hint_index = RAFT_MIN(m->index, raft_log_last_index(&r->log));
        hint_index = raft_log_find_conflict_by_term(&r->log, hint_index, m->log_term, &hint_term);
        raft_send(r, &(RaftMessage) {
                .type = RAFT_MSG_APP_RESP,
                .to = m->from,
                .index = m->index,
                .reject = true,
                .reject_hint = hint_index,
                .log_term = hint_term,
        });
}

void raft_replication_handle_heartbeat(Raft *r, const RaftMessage *m) {
        /* A leader never sends a commit index beyond what we acknowledged; a message that does
         * is corrupt and must not make us commit entries we do not have. */
        if (m->commit > raft_log_last_index(&r->log))
                raft_tracef(r, "ignoring commit %" PRIu64 " beyond last index %" PRIu64 " from %" PRIu64,
                            m->commit, raft_log_last_index(&r->log), m->from);
        else
                raft_log_commit_to(&r->log, m->commit);
        raft_send(r, &(RaftMessage) { .type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from,
                                      .context = m->context, .context_len = m->context_len });
}

static int step_leader_propose(Raft *r, const RaftMessage *m) {
        RaftEntry es[64];
        size_t n = m->n_entries;
        int k;

        raft_assert(n > 0);
        if (n > sizeof(es) / sizeof(es[0]))
                return -EINVAL;
        if (!raft_tracker_get(&r->trk, r->id))
                return -EPERM;          /* we were removed and are about to step down */
        if (r->lead_transferee != RAFT_NONE)
                return -EBUSY;
        memcpy(es, m->entries, n * sizeof(RaftEntry));
        for (size_t i = 0; i < n; i++)
                if (es[i].type == RAFT_ENTRY_CONF_CHANGE) {
                        k = raft_confchange_check_proposal(r, &es[i], m->from == r->id);
                        if (k < 0)
                                return k;
                        if (es[i].type == RAFT_ENTRY_CONF_CHANGE)
                                r->pending_conf_index = raft_log_last_index(&r->log) + i + 1;
                }
        k = raft_append_entries_local(r, es, n);
        if (k < 0)
                return k;
        /* Broadcast lazily when the next Ready is built, so that many proposals share one MsgApp
         * per follower (batching for group commit). */
        r->pending_bcast = true;
        return 0;
}

static void step_leader_app_resp(Raft *r, Progress *pr, const RaftMessage *m) {
        pr->recent_active = true;
        if (m->reject) {
                uint64_t next_probe = m->reject_hint, t;

                /* The follower told us the term at its hint: skip our entries of later terms too. */
                if (m->log_term > 0)
                        next_probe = raft_log_find_conflict_by_term(&r->log, m->reject_hint, m->log_term, &t);
                if (raft_progress_maybe_decr_to(pr, m->index, next_probe)) {
                        if (pr->state == RAFT_PROGRESS_REPLICATE)
                                raft_progress_become_probe(pr);
                        raft_replication_send_append(r, m->from);
                }
                return;
        }
        bool old_paused = raft_progress_is_paused(pr);
        /* An acknowledgement beyond our log cannot come from a correct follower. */
        if (m->index > raft_log_last_index(&r->log))
                return;
        if (!raft_progress_maybe_update(pr, m->index))
                return;
        switch (pr->state) {
        case RAFT_PROGRESS_PROBE:
                raft_progress_become_replicate(pr);
                break;
        case RAFT_PROGRESS_SNAPSHOT:
                if (pr->match >= pr->pending_snapshot) {
                        raft_progress_become_probe(pr);
                        raft_progress_become_replicate(pr);
                }
                break;
        case RAFT_PROGRESS_REPLICATE:
                raft_inflights_free_le(&pr->inflights, m->index);
                break;
        default:
                break;
        }
        if (raft_maybe_commit(r)) {
                raft_readindex_release_pending(r);
                raft_replication_bcast_append(r);
        } else if (old_paused) {
                /* The follower was paused and may now have room: refill it. */
                raft_replication_send_append(r, m->from);
        }
        /* Send as much as flow control allows. */
        while (raft_replication_maybe_send_append(r, m->from, false))
                ;
        if (m->from == r->lead_transferee && pr->match == raft_log_last_index(&r->log)) {
                raft_tracef(r, "sent MsgTimeoutNow to %" PRIu64 " after it caught up", m->from);
                raft_replication_send_timeout_now(r, m->from);
        }
}

static void step_leader_transfer(Raft *r, Progress *pr, const RaftMessage *m) {
        uint64_t transferee = m->from;

        if (pr->is_learner)
                return;
        if (r->lead_transferee != RAFT_NONE) {
                if (r->lead_transferee == transferee)
                        return;
                raft_abort_leader_transfer(r);
        }
        if (transferee == r->id)
                return;
        /* Transfer must finish within one election timeout. */
        r->election_elapsed = 0;
        r->lead_transferee = transferee;
        if (pr->match == raft_log_last_index(&r->log))
                raft_replication_send_timeout_now(r, transferee);
        else
                raft_replication_send_append(r, transferee);
}

int raft_replication_step_leader(Raft *r, const RaftMessage *m) {
        Progress *pr;

        switch (m->type) {
        case RAFT_MSG_BEAT:
                raft_replication_bcast_heartbeat(r, NULL, 0);
                return 0;
        case RAFT_MSG_CHECK_QUORUM:
                pr = raft_tracker_get(&r->trk, r->id);
                if (pr)
                        pr->recent_active = true;
                if (!raft_tracker_quorum_active(&r->trk)) {
                        raft_tracef(r, "stepped down at term %" PRIu64 ": quorum not active", r->term);
                        raft_become_follower(r, r->term, RAFT_NONE);
                }
                for (size_t i = 0; i < r->trk.n; i++)
                        if (r->trk.prs[i].id != r->id)
                                r->trk.prs[i].recent_active = false;
                return 0;
        case RAFT_MSG_PROP:
                return step_leader_propose(r, m);
        case RAFT_MSG_READ_INDEX:
                return raft_readindex_step_leader(r, m);
        default:
                break;
        }
        pr = raft_tracker_get(&r->trk, m->from);
        if (!pr)
                return 0;
        switch (m->type) {
        case RAFT_MSG_APP_RESP:
                step_leader_app_resp(r, pr, m);
                break;
        case RAFT_MSG_HEARTBEAT_RESP:
                pr->recent_active = true;
                pr->probe_sent = false;
                /* Free one slot so a stalled pipeline can make progress after losses. */
                if (pr->state == RAFT_PROGRESS_REPLICATE && raft_inflights_full(&pr->inflights))
                        raft_inflights_free_first_one(&pr->inflights);
                if (pr->match < raft_log_last_index(&r->log))
                        raft_replication_send_append(r, m->from);
                raft_readindex_handle_heartbeat_resp(r, m);
                break;
        case RAFT_MSG_SNAP_STATUS:
                if (pr->state != RAFT_PROGRESS_SNAPSHOT)
                        break;
                if (m->reject)
                        pr->pending_snapshot = 0;
                raft_progress_become_probe(pr);
                /* Wait for the follower's MsgAppResp (or a heartbeat response) before probing. */
                pr->probe_sent = true;
                break;
        case RAFT_MSG_UNREACHABLE:
                /* Optimistic sends are probably lost: fall back to probing. */
                if (pr->state == RAFT_PROGRESS_REPLICATE)
                        raft_progress_become_probe(pr);
                break;
        case RAFT_MSG_TRANSFER_LEADER:
                step_leader_transfer(r, pr, m);
                break;
        default:
                break;
        }
        return 0;
}

int raft_replication_step_follower(Raft *r, const RaftMessage *m) {
        RaftMessage f;

        switch (m->type) {
        case RAFT_MSG_PROP:
                if (r->lead == RAFT_NONE || r->disable_proposal_forwarding)
                        return -ENOTCONN;
                f = *m;
                f.to = r->lead;
                f.term = 0;
                raft_send(r, &f);
                return 0;
        case RAFT_MSG_APP:
                r->election_elapsed = 0;
                r->lead = m->from;
                raft_replication_handle_append(r, m);
                return 0;
        case RAFT_MSG_HEARTBEAT:
                r->election_elapsed = 0;
                r->lead = m->from;
                raft_replication_handle_heartbeat(r, m);
                return 0;
        case RAFT_MSG_SNAP:
                r->election_elapsed = 0;
                r->lead = m->from;
                raft_snapshot_handle(r, m);
                return 0;
        case RAFT_MSG_TRANSFER_LEADER:
        case RAFT_MSG_READ_INDEX:
                if (r->lead == RAFT_NONE)
                        return -ENOTCONN;
                f = *m;
                f.to = r->lead;
                f.term = 0;
                raft_send(r, &f);
                return 0;
        case RAFT_MSG_TIMEOUT_NOW:
                /* The leader asked us to take over: campaign at once, without pre-vote, and tell
                 * voters to ignore their leader lease. */
                raft_election_hup(r, CAMPAIGN_TRANSFER);
                return 0;
        case RAFT_MSG_READ_INDEX_RESP:
                raft_readindex_add_read_state(r, m->index, m->context, m->context_len);
                return 0;
        default:
                return 0;
        }
}
