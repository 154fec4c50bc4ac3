/* SPDX-License-Identifier: MIT */
/* Helpers for the Raft core's unit tests: an allocator that fails on request (OOM injection), a
 * small in-process cluster of nodes over memory storage, and entry shorthands. Header only. */
#pragma once

#include <stdio.h>
#include <string.h>

#include "raft.h"
#include "test-util.h"

/* Counts allocations; the fail_at-th one (1-based) and, if sticky, all later ones fail. */
typedef struct FailAlloc {
        unsigned calls;
        unsigned fail_at;               /* 0: never fail */
        bool sticky;
        unsigned live;
} FailAlloc;

static inline bool fail_alloc_now(FailAlloc *f) {
        f->calls++;
        return f->fail_at && (f->calls == f->fail_at || (f->sticky && f->calls > f->fail_at));
}

static inline void *fa_malloc(void *u, size_t n) {
        void *p;

        if (fail_alloc_now(u))
                return NULL;
        p = malloc(n);
        if (p)
                ((FailAlloc *) u)->live++;
        return p;
}

static inline void *fa_realloc(void *u, void *p, size_t n) {
        void *q;

        if (fail_alloc_now(u))
                return NULL;
        q = realloc(p, n);
        if (q && !p)
                ((FailAlloc *) u)->live++;
        return q;
}

static inline void fa_free(void *u, void *p) {
        if (p)
                ((FailAlloc *) u)->live--;
        free(p);
}

static inline RaftAllocator fail_allocator(FailAlloc *f) {
        return (RaftAllocator) { .malloc = fa_malloc, .realloc = fa_realloc, .free = fa_free, .userdata = f };
}

static inline RaftConfig test_config(uint64_t id) {
        return (RaftConfig) {
                .id = id,
                .election_tick = 10,
                .heartbeat_tick = 1,
                .max_size_per_msg = 1024 * 1024,
                .max_inflight_msgs = 256,
                .seed = 42,
        };
}

static inline RaftConfState conf_of(unsigned n_voters) {
        RaftConfState cs = {};

        for (unsigned i = 1; i <= n_voters; i++)
                cs.voters[cs.n_voters++] = i;
        return cs;
}

/* Storage bootstrapped like the simulator: a snapshot at index 1, term 1 with the given conf,
 * and hard state term 1 (a node's term is never below its log's). */
static inline RaftMemoryStorage *boot_storage(const RaftConfState *cs) {
        RaftMemoryStorage *ms = NULL;
        RaftSnapshot snap = { .metadata = { .index = 1, .term = 1, .conf_state = *cs } };

        assert_int_equal(raft_memory_storage_new(&ms, NULL), 0);
        assert_int_equal(raft_memory_storage_apply_snapshot(ms, &snap), 0);
        assert_int_equal(raft_memory_storage_set_hard_state(ms, &(RaftHardState) { .term = 1, .commit = 1 }), 0);
        return ms;
}

/* ---- a tiny cluster: nodes 1..n, messages delivered in order by cluster_stabilize() ---- */

#define TC_MAX 5

typedef struct TestCluster {
        unsigned n;
        Raft *r[TC_MAX + 1];
        RaftMemoryStorage *ms[TC_MAX + 1];
        uint8_t *queue[256];            /* encoded messages */
        size_t queue_len[256];
        size_t nq;
        bool down[TC_MAX + 1];          /* drop everything to and from this node */
        uint64_t applied_normal[TC_MAX + 1];   /* count of non-empty normal entries applied */
        RaftReadState last_read[TC_MAX + 1];
        char read_ctx[TC_MAX + 1][32];
        size_t n_reads[TC_MAX + 1];
} TestCluster;

static inline void cluster_init(TestCluster *c, unsigned n, bool pre_vote, bool check_quorum) {
        RaftConfState cs = conf_of(n);

        *c = (TestCluster) { .n = n };
        for (unsigned i = 1; i <= n; i++) {
                RaftConfig cfg = test_config(i);
                RaftStorage st;

                cfg.pre_vote = pre_vote;
                cfg.check_quorum = check_quorum;
                cfg.seed = i;
                c->ms[i] = boot_storage(&cs);
                raft_memory_storage_get(c->ms[i], &st);
                assert_int_equal(raft_new(&c->r[i], &cfg, &st), 0);
        }
}

static inline void cluster_done(TestCluster *c) {
        for (unsigned i = 1; i <= c->n; i++) {
                raft_free(c->r[i]);
                raft_memory_storage_free(c->ms[i]);
        }
        for (size_t i = 0; i < c->nq; i++)
                free(c->queue[i]);
}

/* Runs one Ready of node i like a driver: persist, queue messages, apply, advance. */
static inline bool cluster_ready(TestCluster *c, unsigned i) {
        RaftReady rd;

        if (!raft_has_ready(c->r[i]))
                return false;
        assert_int_equal(raft_ready(c->r[i], &rd), 0);
        if (rd.snapshot)
                assert_int_equal(raft_memory_storage_apply_snapshot(c->ms[i], rd.snapshot), 0);
        assert_int_equal(raft_memory_storage_append(c->ms[i], rd.entries, rd.n_entries), 0);
        if (rd.has_hard_state)
                assert_int_equal(raft_memory_storage_set_hard_state(c->ms[i], &rd.hard_state), 0);
        for (size_t k = 0; k < rd.n_messages; k++) {
                size_t len = raft_message_encoded_size(&rd.messages[k]);
                uint8_t *buf = malloc(len);

                assert_non_null(buf);
                assert_int_equal(raft_message_encode(&rd.messages[k], buf, len), (int) len);
                assert_true(c->nq < 256);
                c->queue[c->nq] = buf;
                c->queue_len[c->nq++] = len;
        }
        for (size_t k = 0; k < rd.n_committed_entries; k++) {
                const RaftEntry *e = &rd.committed_entries[k];

                if (e->type == RAFT_ENTRY_CONF_CHANGE) {
                        RaftConfChange cc;
                        RaftConfState cs;

                        assert_int_equal(raft_conf_change_decode(e->data, e->len, &cc), 0);
                        (void) raft_apply_conf_change(c->r[i], &cc, &cs);
                } else if (e->len > 0) {
                        c->applied_normal[i]++;
                }
        }
        for (size_t k = 0; k < rd.n_read_states; k++) {
                c->last_read[i] = rd.read_states[k];
                snprintf(c->read_ctx[i], sizeof(c->read_ctx[i]), "%.*s", (int) rd.read_states[k].ctx_len,
                         (const char *) rd.read_states[k].ctx);
                c->n_reads[i]++;
        }
        assert_int_equal(raft_advance(c->r[i], &rd), 0);
        return true;
}

/* Delivers the messages queued so far (not those they cause); returns how many. */
static inline size_t cluster_deliver(TestCluster *c) {
        size_t nq = c->nq;
        uint8_t *q[256];
        size_t ql[256];

        memcpy(q, c->queue, nq * sizeof(q[0]));
        memcpy(ql, c->queue_len, nq * sizeof(ql[0]));
        c->nq = 0;
        for (size_t k = 0; k < nq; k++) {
                RaftMessage m;

                assert_int_equal(raft_message_decode(q[k], ql[k], NULL, &m), 0);
                if (m.to >= 1 && m.to <= c->n && !c->down[m.to] && !c->down[m.from])
                        (void) raft_step(c->r[m.to], &m);
                raft_message_free_contents(&m, NULL);
                free(q[k]);
        }
        return nq;
}

static inline void cluster_stabilize(TestCluster *c) {
        for (int rounds = 0; rounds < 1000; rounds++) {
                bool any = false;

                for (unsigned i = 1; i <= c->n; i++)
                        while (cluster_ready(c, i))
                                any = true;
                if (cluster_deliver(c) > 0)
                        any = true;
                if (!any)
                        return;
        }
        fail_msg("cluster does not stabilize");
}

static inline unsigned cluster_leader(TestCluster *c) {
        for (unsigned i = 1; i <= c->n; i++)
                if (!c->down[i] && raft_soft_state(c->r[i]).role == RAFT_LEADER)
                        return i;
        return 0;
}
