/* SPDX-License-Identifier: MIT */
/* Leader election: election timers, pre-vote and vote campaigns, answering vote requests and the
 * candidate's step function (Raft paper §5.2, thesis §9.6 for pre-vote, §3.10 for transfers). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "raft-internal.h"

static RaftMessageType vote_resp_type(RaftMessageType t) {
        return t == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PRE_VOTE_RESP;
}

/* Committed but unapplied conf changes make a campaign unsafe: the new leader would not know the
 * configuration it must use. */
static bool has_unapplied_conf_change(Raft *r) {
        EntryVec *v = &r->log.scratch;

        if (r->log.committed <= r->log.applied)
                return false;
        if (raft_log_slice(&r->log, r->log.applied + 1, r->log.committed + 1, RAFT_NO_LIMIT, v) < 0)
                return true;    /* cannot tell: be conservative */
        for (size_t i = 0; i < v->n; i++)
                if (v->e[i].type == RAFT_ENTRY_CONF_CHANGE)
                        return true;
        return false;
}

void raft_election_hup(Raft *r, CampaignType t) {
        if (r->state == RAFT_LEADER)
                return;
        if (!raft_promotable(r))
                return;
        if (has_unapplied_conf_change(r)) {
                raft_tracef(r, "cannot campaign at term %" PRIu64 ": unapplied conf change", r->term);
                return;
        }
        raft_election_campaign(r, t);
}

void raft_election_campaign(Raft *r, CampaignType t) {
        RaftMessageType vote_msg;
        uint64_t term;

        if (!raft_promotable(r))
                return;
        if (t == CAMPAIGN_PRE_ELECTION) {
                raft_become_pre_candidate(r);
                vote_msg = RAFT_MSG_PRE_VOTE;
                /* Pre-votes ask for the term we would use, without moving to it. */
                term = r->term + 1;
        } else {
                raft_become_candidate(r);
                vote_msg = RAFT_MSG_VOTE;
                term = r->term;
        }
        /* Vote for ourselves; a single-voter cluster wins at once. */
        if (raft_tracker_record_vote(&r->trk, r->id, true, NULL, NULL) == VOTE_WON) {
                if (t == CAMPAIGN_PRE_ELECTION)
                        raft_election_campaign(r, CAMPAIGN_ELECTION);
                else
                        raft_become_leader(r);
                return;
        }
        for (uint32_t i = 0; i < r->trk.conf.n_voters; i++) {
                uint64_t id = r->trk.conf.voters[i];
                RaftMessage m = {
                        .type = vote_msg,
                        .to = id,
                        .term = term,
                        .index = raft_log_last_index(&r->log),
                        .log_term = raft_log_last_term(&r->log),
                };

                if (id == r->id)
                        continue;
                if (t == CAMPAIGN_TRANSFER) {
                        m.context = RAFT_CAMPAIGN_TRANSFER_CTX;
                        m.context_len = strlen(RAFT_CAMPAIGN_TRANSFER_CTX);
                }
                raft_send(r, &m);
        }
}

void raft_election_handle_vote_request(Raft *r, const RaftMessage *m) {
        /* We can vote if this is a repeat of a vote we already cast, or we have not voted and do
         * not know a leader in this term, or this is a pre-vote for a future term. */
        bool can_vote = r->vote == m->from ||
                        (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
                        (m->type == RAFT_MSG_PRE_VOTE && m->term > r->term);

        if (can_vote && raft_log_is_up_to_date(&r->log, m->index, m->log_term)) {
                /* The response carries the request's term: a pre-vote grant is for the future term
                 * and must be recognizable as such by the pre-candidate. */
                raft_send(r, &(RaftMessage) { .to = m->from, .term = m->term,
                                              .type = vote_resp_type(m->type) });
                if (m->type == RAFT_MSG_VOTE) {
                        /* One vote per term. */
                        raft_assert(r->vote == RAFT_NONE || r->vote == m->from);
                        raft_assert(m->term == r->term);
                        r->election_elapsed = 0;
                        r->vote = m->from;
                }
        } else {
                raft_send(r, &(RaftMessage) { .to = m->from, .term = r->term,
                                              .type = vote_resp_type(m->type), .reject = true });
        }
}

int raft_election_step_candidate(Raft *r, const RaftMessage *m) {
        RaftMessageType my_resp = r->state == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP
                                                                 : RAFT_MSG_VOTE_RESP;

        switch (m->type) {
        case RAFT_MSG_PROP:
                return -ENOTCONN;
        case RAFT_MSG_APP:
                raft_become_follower(r, m->term, m->from);
                raft_replication_handle_append(r, m);
                return 0;
        case RAFT_MSG_HEARTBEAT:
                raft_become_follower(r, m->term, m->from);
                raft_replication_handle_heartbeat(r, m);
                return 0;
        case RAFT_MSG_SNAP:
                raft_become_follower(r, m->term, m->from);
                raft_snapshot_handle(r, m);
                return 0;
        case RAFT_MSG_READ_INDEX:
        case RAFT_MSG_TRANSFER_LEADER:
                return -ENOTCONN;
        default:
                break;
        }
        if (m->type == my_resp) {
                switch (raft_tracker_record_vote(&r->trk, m->from, !m->reject, NULL, NULL)) {
                case VOTE_WON:
                        if (r->state == RAFT_PRE_CANDIDATE) {
                                raft_election_campaign(r, CAMPAIGN_ELECTION);
                        } else {
                                raft_become_leader(r);
                                raft_replication_bcast_append(r);
                        }
                        break;
                case VOTE_LOST:
                        /* Pre-vote responses may come from a higher term; stay at ours. */
                        raft_become_follower(r, r->term, RAFT_NONE);
                        break;
                default:
                        break;
                }
        }
        /* MsgTimeoutNow is ignored: we are already campaigning. */
        return 0;
}

void raft_election_tick(Raft *r) {
        r->election_elapsed++;
        if (raft_promotable(r) && raft_past_election_timeout(r)) {
                r->election_elapsed = 0;
                (void) raft_step_internal(r, &(RaftMessage) { .from = r->id, .type = RAFT_MSG_HUP });
        }
}

void raft_election_tick_heartbeat(Raft *r) {
        r->heartbeat_elapsed++;
        r->election_elapsed++;
        if (r->election_elapsed >= r->election_timeout) {
                r->election_elapsed = 0;
                if (r->check_quorum)
                        (void) raft_step_internal(r, &(RaftMessage) { .from = r->id,
                                                                      .type = RAFT_MSG_CHECK_QUORUM });
                /* A transfer that did not finish within an election timeout is abandoned. */
                if (r->state == RAFT_LEADER && r->lead_transferee != RAFT_NONE)
                        raft_abort_leader_transfer(r);
        }
        if (r->state != RAFT_LEADER)
                return;
        if (r->heartbeat_elapsed >= r->heartbeat_timeout) {
                r->heartbeat_elapsed = 0;
                (void) raft_step_internal(r, &(RaftMessage) { .from = r->id, .type = RAFT_MSG_BEAT });
        }
}
