/* SPDX-License-Identifier: MIT */
/* The leader's view of each peer (match/next, probe/replicate/snapshot states, the in-flight
 * window used for flow control) and the quorum arithmetic over the voters, after etcd's tracker
 * package. Configurations have at most RAFT_MAX_VOTERS voters, so quorum math uses the stack. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

void raft_inflights_reset(Inflights *in) {
        in->start = in->count = 0;
}

bool raft_inflights_full(const Inflights *in) {
        return in->count == in->size;
}

void raft_inflights_add(Inflights *in, uint64_t index) {
        raft_assert(!raft_inflights_full(in));
        in->buffer[(in->start + in->count) % in->size] = index;
        in->count++;
}

/* Frees the in-flight messages whose last index is <= to. */
void raft_inflights_free_le(Inflights *in, uint64_t to) {
        while (in->count > 0 && in->buffer[in->start] <= to) {
                in->start = (in->start + 1) % in->size;
                in->count--;
        }
        if (in->count == 0)
                in->start = 0;
}

void raft_inflights_free_first_one(Inflights *in) {
        if (in->count > 0)
                raft_inflights_free_le(in, in->buffer[in->start]);
}

void raft_progress_reset_state(Progress *pr, RaftProgressState state) {
        pr->probe_sent = false;
        pr->pending_snapshot = 0;
        pr->state = state;
        raft_inflights_reset(&pr->inflights);
}

void raft_progress_become_probe(Progress *pr) {
        /* After a snapshot, resume probing right after it (or after match if that is newer). */
        if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
                uint64_t ps = pr->pending_snapshot;

                raft_progress_reset_state(pr, RAFT_PROGRESS_PROBE);
                pr->next = RAFT_MAX(pr->match + 1, ps + 1);
        } else {
                raft_progress_reset_state(pr, RAFT_PROGRESS_PROBE);
                pr->next = pr->match + 1;
        }
}

void raft_progress_become_replicate(Progress *pr) {
        raft_progress_reset_state(pr, RAFT_PROGRESS_REPLICATE);
        pr->next = pr->match + 1;
}

void raft_progress_become_snapshot(Progress *pr, uint64_t snapshot_index) {
        raft_progress_reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
        pr->pending_snapshot = snapshot_index;
}

bool raft_progress_maybe_update(Progress *pr, uint64_t n) {
        bool updated = false;

        if (pr->match < n) {
                pr->match = n;
                updated = true;
                pr->probe_sent = false;
        }
        pr->next = RAFT_MAX(pr->next, n + 1);
        return updated;
}

/* A rejection of the MsgApp with index 'rejected'; match_hint is the follower's guess of the
 * last index that may match. Returns false for stale rejections. */
bool raft_progress_maybe_decr_to(Progress *pr, uint64_t rejected, uint64_t match_hint) {
        if (pr->state == RAFT_PROGRESS_REPLICATE) {
                if (rejected <= pr->match)
                        return false;
                pr->next = pr->match + 1;
                return true;
        }
        if (pr->next - 1 != rejected)
                return false;
        pr->next = RAFT_MAX(RAFT_MIN(rejected, match_hint + 1), (uint64_t) 1);
        pr->probe_sent = false;
        return true;
}

bool raft_progress_is_paused(const Progress *pr) {
        switch (pr->state) {
        case RAFT_PROGRESS_PROBE:
                return pr->probe_sent;
        case RAFT_PROGRESS_REPLICATE:
                return raft_inflights_full(&pr->inflights);
        default:
                return true;
        }
}

/* ---- tracker ---- */

Progress *raft_tracker_get(Tracker *t, uint64_t id) {
        for (size_t i = 0; i < t->n; i++)
                if (t->prs[i].id == id)
                        return &t->prs[i];
        return NULL;
}

bool raft_tracker_is_voter(const Tracker *t, uint64_t id) {
        for (uint32_t i = 0; i < t->conf.n_voters; i++)
                if (t->conf.voters[i] == id)
                        return true;
        return false;
}

static int cmp_desc(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? 1 : x > y ? -1 : 0;
}

/* The largest index replicated on a majority of voters. */
uint64_t raft_tracker_committed(Tracker *t) {
        uint64_t m[RAFT_MAX_VOTERS];
        size_t n = 0;

        if (t->conf.n_voters == 0)
                return UINT64_MAX;      /* like etcd: an empty config commits everything */
        for (uint32_t i = 0; i < t->conf.n_voters; i++) {
                Progress *pr = raft_tracker_get(t, t->conf.voters[i]);
                m[n++] = pr ? pr->match : 0;
        }
        qsort(m, n, sizeof(uint64_t), cmp_desc);
        return m[n / 2];
}

bool raft_tracker_quorum_active(Tracker *t) {
        size_t active = 0;

        for (uint32_t i = 0; i < t->conf.n_voters; i++) {
                Progress *pr = raft_tracker_get(t, t->conf.voters[i]);
                if (pr && pr->recent_active)
                        active++;
        }
        return active > t->conf.n_voters / 2;
}

void raft_tracker_reset_votes(Tracker *t) {
        for (size_t i = 0; i < t->n; i++)
                t->prs[i].vote = 0;
}

VoteResult raft_tracker_vote_result(Tracker *t) {
        size_t granted = 0, rejected = 0, q = t->conf.n_voters / 2 + 1;

        for (uint32_t i = 0; i < t->conf.n_voters; i++) {
                Progress *pr = raft_tracker_get(t, t->conf.voters[i]);
                if (!pr || pr->vote == 0)
                        continue;
                if (pr->vote > 0)
                        granted++;
                else
                        rejected++;
        }
        if (granted >= q)
                return VOTE_WON;
        if (t->conf.n_voters - rejected < q)
                return VOTE_LOST;
        return VOTE_PENDING;
}

VoteResult raft_tracker_record_vote(Tracker *t, uint64_t id, bool granted, size_t *ret_granted,
                               size_t *ret_rejected) {
        Progress *pr = raft_tracker_get(t, id);
        size_t g = 0, rj = 0;

        /* The first vote of a node counts; later duplicates are ignored. */
        if (pr && !pr->is_learner && pr->vote == 0)
                pr->vote = granted ? 1 : -1;
        for (size_t i = 0; i < t->n; i++) {
                if (t->prs[i].vote > 0)
                        g++;
                else if (t->prs[i].vote < 0)
                        rj++;
        }
        if (ret_granted)
                *ret_granted = g;
        if (ret_rejected)
                *ret_rejected = rj;
        return raft_tracker_vote_result(t);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y ? 1 : 0;
}

int raft_conf_state_validate(const RaftConfState *cs) {
        if (cs->n_voters > RAFT_MAX_VOTERS || cs->n_learners > RAFT_MAX_LEARNERS)
                return -EINVAL;
        for (uint32_t i = 0; i < cs->n_voters; i++) {
                if (cs->voters[i] == RAFT_NONE || (i > 0 && cs->voters[i] <= cs->voters[i - 1]))
                        return -EINVAL;
        }
        for (uint32_t i = 0; i < cs->n_learners; i++) {
                if (cs->learners[i] == RAFT_NONE || (i > 0 && cs->learners[i] <= cs->learners[i - 1]))
                        return -EINVAL;
                for (uint32_t j = 0; j < cs->n_voters; j++)
                        if (cs->voters[j] == cs->learners[i])
                                return -EINVAL;
        }
        return 0;
}

/* Rebuilds the progress array for conf. Existing members keep their progress; new ones start
 * probing at 'next' and count as recently active, so that CheckQuorum does not depose the leader
 * right after it added them. */
int raft_tracker_set_conf(Tracker *t, const RaftAllocator *a, const RaftConfState *conf, uint64_t next) {
        size_t n = conf->n_voters + conf->n_learners;
        uint64_t ids[RAFT_MAX_VOTERS + RAFT_MAX_LEARNERS];
        Progress *prs;
        int r;

        r = raft_conf_state_validate(conf);
        if (r < 0)
                return r;
        memcpy(ids, conf->voters, conf->n_voters * sizeof(uint64_t));
        memcpy(ids + conf->n_voters, conf->learners, conf->n_learners * sizeof(uint64_t));
        qsort(ids, n, sizeof(uint64_t), cmp_u64);

        prs = raft_malloc(a, RAFT_MAX(n, (size_t) 1) * sizeof(Progress));
        if (!prs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Progress *old = raft_tracker_get(t, ids[i]);
                bool learner = !raft_tracker_is_voter(&(Tracker) { .conf = *conf }, ids[i]);

                if (old) {
                        prs[i] = *old;
                        old->inflights.buffer = NULL;   /* moved */
                } else {
                        prs[i] = (Progress) {
                                .id = ids[i],
                                .next = RAFT_MAX(next, (uint64_t) 1),
                                .recent_active = true,
                                .state = RAFT_PROGRESS_PROBE,
                        };
                        prs[i].inflights.size = t->max_inflight;
                        prs[i].inflights.buffer = raft_malloc(a, t->max_inflight * sizeof(uint64_t));
                        if (!prs[i].inflights.buffer) {
                                /* Undo: hand moved buffers back, free new ones. */
                                for (size_t j = 0; j < i; j++) {
                                        Progress *o = raft_tracker_get(t, prs[j].id);
                                        if (o)
                                                o->inflights.buffer = prs[j].inflights.buffer;
                                        else
                                                raft_mfree(a, prs[j].inflights.buffer);
                                }
                                raft_mfree(a, prs);
                                return -ENOMEM;
                        }
                }
                prs[i].is_learner = learner;
        }
        raft_tracker_done(t, a);
        t->prs = prs;
        t->n = n;
        t->conf = *conf;
        return 0;
}

void raft_tracker_done(Tracker *t, const RaftAllocator *a) {
        for (size_t i = 0; i < t->n; i++)
                raft_mfree(a, t->prs[i].inflights.buffer);
        raft_mfree(a, t->prs);
        t->prs = NULL;
        t->n = 0;
}
