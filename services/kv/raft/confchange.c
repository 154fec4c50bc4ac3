/* SPDX-License-Identifier: MIT */
/* Membership changes one node at a time (Raft thesis §4.1): adding and removing voters, adding
 * learners and promoting them. The leader allows one unapplied change at a time and promotes only
 * learners that have caught up; every node applies a change when it applies its entry. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "raft-internal.h"

static const char *const cc_names[_RAFT_CONF_CHANGE_TYPE_MAX] = {
        [RAFT_CONF_ADD_VOTER] = "add-voter",
        [RAFT_CONF_REMOVE_NODE] = "remove",
        [RAFT_CONF_ADD_LEARNER] = "add-learner",
};

const char *raft_conf_change_type_to_string(RaftConfChangeType t) {
        return t >= 0 && t < _RAFT_CONF_CHANGE_TYPE_MAX ? cc_names[t] : "invalid";
}

bool raft_conf_state_has(const RaftConfState *cs, uint64_t id, bool *ret_is_learner) {
        for (uint32_t i = 0; i < cs->n_voters && i < RAFT_MAX_VOTERS; i++)
                if (cs->voters[i] == id) {
                        if (ret_is_learner)
                                *ret_is_learner = false;
                        return true;
                }
        for (uint32_t i = 0; i < cs->n_learners && i < RAFT_MAX_LEARNERS; i++)
                if (cs->learners[i] == id) {
                        if (ret_is_learner)
                                *ret_is_learner = true;
                        return true;
                }
        return false;
}

static void ids_remove(uint64_t *ids, uint32_t *n, uint64_t id) {
        for (uint32_t i = 0; i < *n; i++)
                if (ids[i] == id) {
                        memmove(ids + i, ids + i + 1, (*n - i - 1) * sizeof(uint64_t));
                        (*n)--;
                        return;
                }
}

static int ids_insert(uint64_t *ids, uint32_t *n, uint32_t max, uint64_t id) {
        uint32_t i = 0;

        if (*n >= max)
                return -EINVAL;
        while (i < *n && ids[i] < id)
                i++;
        memmove(ids + i + 1, ids + i, (*n - i) * sizeof(uint64_t));
        ids[i] = id;
        (*n)++;
        return 0;
}

/* Computes the configuration after cc. -EINVAL if it would have no voter or exceed the limits. */
static int conf_after(const RaftConfState *cur, const RaftConfChange *cc, RaftConfState *ret) {
        RaftConfState n = *cur;
        bool learner = false, member;
        int k = 0;

        if (cc->node_id == RAFT_NONE)
                return -EINVAL;
        member = raft_conf_state_has(cur, cc->node_id, &learner);
        switch (cc->type) {
        case RAFT_CONF_ADD_VOTER:
                if (member && !learner)
                        break;
                ids_remove(n.learners, &n.n_learners, cc->node_id);
                k = ids_insert(n.voters, &n.n_voters, RAFT_MAX_VOTERS, cc->node_id);
                break;
        case RAFT_CONF_ADD_LEARNER:
                if (member && learner)
                        break;
                ids_remove(n.voters, &n.n_voters, cc->node_id);
                k = ids_insert(n.learners, &n.n_learners, RAFT_MAX_LEARNERS, cc->node_id);
                break;
        case RAFT_CONF_REMOVE_NODE:
                ids_remove(n.voters, &n.n_voters, cc->node_id);
                ids_remove(n.learners, &n.n_learners, cc->node_id);
                break;
        default:
                return -EINVAL;
        }
        if (k < 0)
                return k;
        if (n.n_voters == 0)
                return -EINVAL;
        *ret = n;
        return 0;
}

void raft_confchange_switch_to_config(Raft *r) {
        Progress *pr = raft_tracker_get(&r->trk, r->id);

        r->is_learner = pr && pr->is_learner;
        if ((!pr || r->is_learner) && r->state == RAFT_LEADER) {
                /* Removed or demoted: step down, so that the others elect a leader that counts
                 * itself (etcd's StepDownOnRemoval). */
                raft_tracef(r, "stepping down: removed from the configuration");
                raft_become_follower(r, r->term, RAFT_NONE);
                return;
        }
        if (r->state != RAFT_LEADER || r->trk.conf.n_voters == 0)
                return;
        /* The quorum changed: maybe something commits now, and new members need entries. */
        if (raft_maybe_commit(r)) {
                raft_readindex_release_pending(r);
                raft_replication_bcast_append(r);
        } else {
                for (size_t i = 0; i < r->trk.n; i++)
                        if (r->trk.prs[i].id != r->id)
                                (void) raft_replication_maybe_send_append(r, r->trk.prs[i].id, false);
        }
        if (r->lead_transferee != RAFT_NONE && !raft_tracker_is_voter(&r->trk, r->lead_transferee))
                raft_abort_leader_transfer(r);
}

int raft_confchange_apply(Raft *r, const RaftConfChange *cc, RaftConfState *ret_cs) {
        RaftConfState n;
        int k;

        k = conf_after(&r->trk.conf, cc, &n);
        if (k < 0)
                return k;
        k = raft_tracker_set_conf(&r->trk, &r->alloc, &n, raft_log_last_index(&r->log) + 1);
        if (k < 0)
                return k;
        raft_tracef(r, "applied conf change %s %" PRIu64 ": %u voters, %u learners",
                    raft_conf_change_type_to_string(cc->type), cc->node_id, n.n_voters, n.n_learners);
        raft_confchange_switch_to_config(r);
        if (ret_cs)
                *ret_cs = r->trk.conf;
        return 0;
}

/* Decides whether the leader may append a conf change entry. A refused local proposal fails;
 * a refused forwarded one is replaced by an empty entry, like etcd, so the batch stays intact. */
int raft_confchange_check_proposal(Raft *r, RaftEntry *e, bool local) {
        RaftConfChange cc;
        RaftConfState n;
        int k;

        if (r->pending_conf_index > r->log.applied) {
                k = -EBUSY;
                raft_tracef(r, "refusing conf change: change at index %" PRIu64 " not applied yet",
                            r->pending_conf_index);
        } else if (raft_conf_change_decode(e->data, e->len, &cc) < 0 ||
                   conf_after(&r->trk.conf, &cc, &n) < 0) {
                k = -EINVAL;
        } else {
                Progress *pr = raft_tracker_get(&r->trk, cc.node_id);

                k = 0;
                /* Promote only a learner that holds everything committed so far, so that the new
                 * voter does not stall commits while it catches up. */
                if (cc.type == RAFT_CONF_ADD_VOTER && pr && pr->is_learner &&
                    pr->match < r->log.committed) {
                        raft_tracef(r, "refusing promotion of %" PRIu64 ": match %" PRIu64
                                    " < commit %" PRIu64, cc.node_id, pr->match, r->log.committed);
                        k = -EBUSY;
                }
        }
        if (k == 0 || local)
                return k;
        *e = (RaftEntry) { .type = RAFT_ENTRY_NORMAL };
        return 0;
}
