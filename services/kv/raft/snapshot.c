/* SPDX-License-Identifier: MIT */
/* Snapshots: the leader sends one to a follower whose next entries were compacted away; a
 * follower restores from one (log and configuration). The application makes snapshots and
 * compacts its storage; the core only reads them back. */
#include <errno.h>
#include <inttypes.h>

#include "raft-internal.h"

bool raft_snapshot_maybe_send(Raft *r, Progress *pr) {
        const RaftSnapshot *snap;
        int k;

        /* Snapshots are expensive: only for peers we heard from recently. */
        if (!pr->recent_active)
                return false;
        k = raft_log_snapshot(&r->log, &snap);
        if (k < 0)
                return false;   /* -EAGAIN: not available yet, try again later */
        raft_assert(snap->metadata.index > 0);
        raft_progress_become_snapshot(pr, snap->metadata.index);
        raft_tracef(r, "sending snapshot [index %" PRIu64 ", term %" PRIu64 "] to %" PRIu64,
                    snap->metadata.index, snap->metadata.term, pr->id);
        raft_send(r, &(RaftMessage) { .type = RAFT_MSG_SNAP, .to = pr->id, .snapshot = snap });
        return true;
}

bool raft_snapshot_restore(Raft *r, const RaftSnapshot *s) {
        const RaftConfState *cs = &s->metadata.conf_state;
        bool found;
        int k;

        if (s->metadata.index <= r->log.committed)
                return false;
        if (r->state != RAFT_FOLLOWER) {
                /* Defensive, as etcd: only a follower restores. Stepping to a new term makes
                 * sure no other node thinks we are still its leader's follower. */
                raft_become_follower(r, r->term + 1, RAFT_NONE);
                return false;
        }
        if (raft_conf_state_validate(cs) < 0)
                return false;
        found = raft_conf_state_has(cs, r->id, NULL);
        /* A member ignores a snapshot whose configuration does not include it (etcd's
         * safeguard). A node that is not in its own configuration either is being added: the
         * leader's latest snapshot may predate the entry that adds it, which follows. */
        if (!found && raft_conf_state_has(&r->trk.conf, r->id, NULL)) {
                raft_tracef(r, "ignoring snapshot at index %" PRIu64 ": not a member", s->metadata.index);
                return false;
        }
        /* We already have the entry: just fast-forward the commit index. */
        if (raft_log_match_term(&r->log, s->metadata.index, s->metadata.term)) {
                raft_log_commit_to(&r->log, s->metadata.index);
                return false;
        }
        /* Build the new tracker from scratch first, so that running out of memory in either
         * step leaves the node unchanged. */
        Tracker t = { .max_inflight = r->trk.max_inflight };
        k = raft_tracker_set_conf(&t, &r->alloc, cs, s->metadata.index + 1);
        if (k < 0)
                return false;
        k = raft_log_restore(&r->log, s);
        if (k < 0) {
                raft_tracker_done(&t, &r->alloc);
                return false;
        }
        raft_tracker_done(&r->trk, &r->alloc);
        r->trk = t;
        for (size_t i = 0; i < r->trk.n; i++) {
                Progress *pr = &r->trk.prs[i];

                pr->match = pr->id == r->id ? s->metadata.index : 0;
                pr->next = s->metadata.index + 1;
        }
        raft_confchange_switch_to_config(r);
        raft_tracef(r, "restored snapshot [index %" PRIu64 ", term %" PRIu64 "]",
                    s->metadata.index, s->metadata.term);
        return true;
}

void raft_snapshot_handle(Raft *r, const RaftMessage *m) {
        if (!m->snapshot)
                return;
        if (raft_snapshot_restore(r, m->snapshot))
                raft_send(r, &(RaftMessage) { .type = RAFT_MSG_APP_RESP, .to = m->from,
                                              .index = raft_log_last_index(&r->log) });
        else
                raft_send(r, &(RaftMessage) { .type = RAFT_MSG_APP_RESP, .to = m->from,
                                              .index = r->log.committed });
}
