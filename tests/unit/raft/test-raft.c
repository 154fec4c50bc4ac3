/* SPDX-License-Identifier: MIT */
/* The node API: configuration validation, elections (with and without pre-vote), replication
 * and commit, proposals without a leader, the Ready/Advance handshake, flow control, snapshots
 * for followers behind a compaction, storage failures and OOM during construction. */
#include "raft-test.h"

static RaftStorage storage_of(RaftMemoryStorage *ms) {
        RaftStorage st;

        raft_memory_storage_get(ms, &st);
        return st;
}

static void bad_config_is_rejected(void **state) {
        RaftConfState cs = conf_of(3);
        RaftMemoryStorage *ms = boot_storage(&cs);
        RaftStorage st = storage_of(ms), broken = st;
        RaftConfig c;
        Raft *r = NULL;

        c = test_config(0);
        assert_int_equal(raft_new(&r, &c, &st), -EINVAL);
        c = test_config(1);
        c.heartbeat_tick = 0;
        assert_int_equal(raft_new(&r, &c, &st), -EINVAL);
        c = test_config(1);
        c.election_tick = c.heartbeat_tick;
        assert_int_equal(raft_new(&r, &c, &st), -EINVAL);
        c = test_config(1);
        c.max_inflight_msgs = 0;
        assert_int_equal(raft_new(&r, &c, &st), -EINVAL);
        c = test_config(1);
        c.applied = 99;                 /* beyond the commit index */
        assert_int_equal(raft_new(&r, &c, &st), -EINVAL);
        c = test_config(1);
        broken.term = NULL;
        assert_int_equal(raft_new(&r, &c, &broken), -EINVAL);
        assert_int_equal(raft_new(&r, NULL, &st), -EINVAL);
        assert_null(r);
        assert_int_equal(raft_new(&r, &c, &st), 0);
        raft_free(r);
        raft_memory_storage_free(ms);
}

static void construction_survives_oom_at_every_allocation(void **state) {
        RaftConfState cs = conf_of(3);
        RaftMemoryStorage *ms = boot_storage(&cs);
        RaftStorage st = storage_of(ms);
        bool succeeded = false;

        for (unsigned at = 1; at < 50 && !succeeded; at++) {
                FailAlloc f = { .fail_at = at };
                RaftAllocator a = fail_allocator(&f);
                RaftConfig c = test_config(1);
                Raft *r = NULL;
                int k;

                c.allocator = &a;
                k = raft_new(&r, &c, &st);
                if (k == 0) {
                        /* Drive it a little with allocations failing now and then. */
                        for (int i = 0; i < 30; i++)
                                (void) raft_tick(r);
                        raft_free(r);
                        succeeded = f.calls < at;
                } else {
                        assert_int_equal(k, -ENOMEM);
                        assert_null(r);
                }
                assert_int_equal(f.live, 0);
        }
        assert_true(succeeded);
        raft_memory_storage_free(ms);
}

static void single_node_commits_its_own_proposals(void **state) {
        TestCluster c;
        RaftStatus st;

        cluster_init(&c, 1, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        assert_int_equal(raft_soft_state(c.r[1]).role, RAFT_LEADER);
        for (int i = 0; i < 10; i++)
                assert_int_equal(raft_propose(c.r[1], "x", 1), 0);
        cluster_stabilize(&c);
        assert_int_equal(c.applied_normal[1], 10);
        raft_status(c.r[1], &st);
        assert_int_equal(st.hard_state.commit, 12);    /* boot 1, empty entry 2, then 10 */
        assert_int_equal(st.applied, 12);
        cluster_done(&c);
}

static void three_nodes_elect_and_replicate(void **state) {
        TestCluster c;

        cluster_init(&c, 3, false, true);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(cluster_leader(&c), 1);
        assert_int_equal(raft_soft_state(c.r[2]).lead, 1);
        /* Followers forward proposals to the leader. */
        assert_int_equal(raft_propose(c.r[3], "from-3", 6), 0);
        assert_int_equal(raft_propose(c.r[1], "from-1", 6), 0);
        cluster_stabilize(&c);
        for (unsigned i = 1; i <= 3; i++)
                assert_int_equal(c.applied_normal[i], 2);
        cluster_done(&c);
}

static void election_timeout_elects_someone(void **state) {
        TestCluster c;

        cluster_init(&c, 3, true, true);
        for (int t = 0; t < 40 && !cluster_leader(&c); t++) {
                for (unsigned i = 1; i <= 3; i++)
                        assert_int_equal(raft_tick(c.r[i]), 0);
                cluster_stabilize(&c);
        }
        assert_true(cluster_leader(&c) != 0);
        cluster_done(&c);
}

static void proposal_without_leader_is_refused(void **state) {
        TestCluster c;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_propose(c.r[2], "x", 1), -ENOTCONN);
        assert_int_equal(raft_propose(c.r[2], NULL, 1), -EINVAL);
        assert_int_equal(raft_read_index(c.r[2], "r", 1), -ENOTCONN);
        assert_int_equal(raft_read_index(c.r[2], NULL, 0), -EINVAL);
        cluster_done(&c);
}

static void inputs_wait_for_advance(void **state) {
        TestCluster c;
        RaftReady rd, rd2;

        cluster_init(&c, 1, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        assert_true(raft_has_ready(c.r[1]));
        assert_int_equal(raft_ready(c.r[1], &rd), 0);
        assert_true(rd.must_sync);
        assert_true(rd.has_hard_state);
        assert_int_equal(rd.hard_state.vote, 1);
        assert_true(rd.has_soft_state);
        assert_int_equal(rd.soft_state.role, RAFT_LEADER);
        assert_int_equal(rd.n_entries, 1);
        assert_false(raft_has_ready(c.r[1]));
        assert_int_equal(raft_ready(c.r[1], &rd2), -EBUSY);
        assert_int_equal(raft_tick(c.r[1]), -EBUSY);
        assert_int_equal(raft_propose(c.r[1], "x", 1), -EBUSY);
        assert_int_equal(raft_memory_storage_append(c.ms[1], rd.entries, rd.n_entries), 0);
        assert_int_equal(raft_memory_storage_set_hard_state(c.ms[1], &rd.hard_state), 0);
        assert_int_equal(raft_advance(c.r[1], &rd), 0);
        assert_int_equal(raft_advance(c.r[1], &rd), -EINVAL);
        assert_int_equal(raft_propose(c.r[1], "x", 1), 0);
        cluster_stabilize(&c);
        cluster_done(&c);
}

static void commit_only_change_needs_no_sync(void **state) {
        TestCluster c;
        RaftReady rd;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_propose(c.r[1], "x", 1), 0);
        /* Run until follower 2 only learns the new commit index. */
        for (int i = 0; i < 4; i++)
                cluster_stabilize(&c);
        assert_int_equal(raft_tick(c.r[1]), 0);         /* heartbeat with the commit index */
        assert_true(raft_has_ready(c.r[1]));
        assert_int_equal(raft_ready(c.r[1], &rd), 0);
        assert_false(rd.must_sync);
        assert_int_equal(raft_advance(c.r[1], &rd), 0);
        cluster_done(&c);
}

static void many_proposals_share_one_message(void **state) {
        TestCluster c;
        RaftReady rd;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        for (int i = 0; i < 50; i++)
                assert_int_equal(raft_propose(c.r[1], "payload", 7), 0);
        assert_int_equal(raft_ready(c.r[1], &rd), 0);
        assert_int_equal(rd.n_entries, 50);             /* one fsync for all of them */
        assert_int_equal(rd.n_messages, 2);             /* one MsgApp per follower */
        assert_int_equal(rd.messages[0].n_entries, 50);
        assert_int_equal(raft_memory_storage_append(c.ms[1], rd.entries, rd.n_entries), 0);
        assert_int_equal(raft_advance(c.r[1], &rd), 0);
        cluster_done(&c);
}

static void uncommitted_size_limit_refuses_proposals(void **state) {
        RaftConfState cs = conf_of(3);
        RaftMemoryStorage *ms = boot_storage(&cs);
        RaftStorage st = storage_of(ms);
        RaftConfig cfg = test_config(1);
        RaftMessage vote = { .type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1 };
        Raft *r;

        cfg.max_uncommitted_entries_size = 10;
        assert_int_equal(raft_new(&r, &cfg, &st), 0);
        assert_int_equal(raft_campaign(r), 0);
        vote.term = raft_get_hard_state(r).term;
        assert_int_equal(raft_step(r, &vote), 0);
        assert_int_equal(raft_soft_state(r).role, RAFT_LEADER);
        assert_int_equal(raft_propose(r, "12345678", 8), 0);
        assert_int_equal(raft_propose(r, "12345678", 8), -EBUSY);
        raft_free(r);
        raft_memory_storage_free(ms);
}

static void step_rejects_local_and_unknown_messages(void **state) {
        TestCluster c;
        RaftMessage m = { .type = RAFT_MSG_HUP, .from = 2, .to = 1 };

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_step(c.r[1], &m), -EINVAL);
        m.type = RAFT_MSG_APP_RESP;
        m.from = 9;
        m.term = 1;
        assert_int_equal(raft_step(c.r[1], &m), -ENOENT);
        m.type = RAFT_MSG_SNAP;
        m.from = 2;
        assert_int_equal(raft_step(c.r[1], &m), -EINVAL);       /* no snapshot attached */
        assert_int_equal(raft_step(c.r[1], NULL), -EINVAL);
        cluster_done(&c);
}

static void follower_behind_compaction_gets_a_snapshot(void **state) {
        TestCluster c;
        RaftConfState cs = conf_of(3);
        RaftStatus st;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        c.down[3] = true;
        for (int i = 0; i < 20; i++)
                assert_int_equal(raft_propose(c.r[1], "data", 4), 0);
        cluster_stabilize(&c);
        /* The leader snapshots and compacts past what node 3 has. */
        raft_status(c.r[1], &st);
        assert_int_equal(raft_memory_storage_create_snapshot(c.ms[1], st.applied, &cs, "S", 1), 0);
        assert_int_equal(raft_memory_storage_compact(c.ms[1], st.applied), 0);
        c.down[3] = false;
        for (int t = 0; t < 5; t++) {
                assert_int_equal(raft_tick(c.r[1]), 0);
                cluster_stabilize(&c);
                /* The transport reports the snapshot delivered. */
                (void) raft_report_snapshot(c.r[1], 3, true);
                cluster_stabilize(&c);
        }
        raft_status(c.r[3], &st);
        assert_int_equal(st.hard_state.commit, 22);
        assert_int_equal(raft_memory_storage_first_index(c.ms[3]), 23);
        cluster_done(&c);
}

static int failing_entries(void *u, uint64_t lo, uint64_t hi, uint64_t max, const RaftEntry **e, size_t *n) {
        return -EIO;
}

static void storage_failure_makes_the_node_fail(void **state) {
        RaftConfState cs = conf_of(1);
        RaftMemoryStorage *ms = boot_storage(&cs);
        RaftEntry es[] = { { .term = 1, .index = 2, .data = "a", .len = 1 } };
        RaftStorage st = storage_of(ms);
        RaftHardState hs = { .term = 1, .commit = 2 };
        RaftConfig cfg = test_config(1);
        RaftReady rd;
        Raft *r;

        assert_int_equal(raft_memory_storage_append(ms, es, 1), 0);
        assert_int_equal(raft_memory_storage_set_hard_state(ms, &hs), 0);
        st.entries = failing_entries;
        assert_int_equal(raft_new(&r, &cfg, &st), 0);
        /* Applying entry 2 needs storage.entries, which fails: sticky -EIO. */
        assert_int_equal(raft_ready(r, &rd), -EIO);
        assert_int_equal(raft_tick(r), -EIO);
        assert_false(raft_has_ready(r));
        raft_free(r);
        raft_memory_storage_free(ms);
}

static void restart_keeps_term_vote_and_commit(void **state) {
        TestCluster c;
        RaftStorage st;
        RaftConfig cfg = test_config(2);
        RaftHardState hs;
        Raft *r;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_propose(c.r[1], "x", 1), 0);
        cluster_stabilize(&c);
        hs = raft_get_hard_state(c.r[2]);
        raft_free(c.r[2]);
        st = storage_of(c.ms[2]);
        assert_int_equal(raft_new(&r, &cfg, &st), 0);
        c.r[2] = r;
        assert_int_equal(raft_get_hard_state(r).term, hs.term);
        assert_int_equal(raft_get_hard_state(r).vote, 1);
        assert_true(raft_get_hard_state(r).commit >= 2);
        cluster_done(&c);
}

static void term_below_last_log_term_is_raised(void **state) {
        RaftConfState cs = conf_of(3);
        RaftMemoryStorage *ms = boot_storage(&cs);
        RaftEntry es[] = { { .term = 4, .index = 2, .data = "a", .len = 1 } };
        RaftHardState torn = { .term = 3, .vote = 2, .commit = 1 };
        RaftStorage st = storage_of(ms);
        RaftConfig cfg = test_config(1);
        RaftReady rd;
        Raft *r;

        /* A torn write: the term-4 entry is durable, the hard state written with it is not. */
        assert_int_equal(raft_memory_storage_append(ms, es, 1), 0);
        assert_int_equal(raft_memory_storage_set_hard_state(ms, &torn), 0);
        assert_int_equal(raft_new(&r, &cfg, &st), 0);
        assert_int_equal(raft_get_hard_state(r).term, 4);
        assert_int_equal(raft_get_hard_state(r).vote, 0);
        assert_int_equal(raft_ready(r, &rd), 0);
        assert_true(rd.has_hard_state);
        assert_true(rd.must_sync);
        assert_int_equal(rd.hard_state.term, 4);
        assert_int_equal(raft_advance(r, &rd), 0);
        raft_free(r);
        raft_memory_storage_free(ms);
}

static void malformed_messages_are_refused(void **state) {
        TestCluster c;
        RaftEntry gap[] = { { .term = 2, .index = 3 }, { .term = 2, .index = 5 } };
        RaftEntry future[] = { { .term = 9, .index = 3 } };
        RaftSnapshot snap = { .metadata = { .index = 5, .term = 7, .conf_state = conf_of(3) } };
        RaftMessage m = { .type = RAFT_MSG_APP, .from = 1, .to = 2, .term = 2, .index = 2, .log_term = 2,
                          .entries = gap, .n_entries = 2 };

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_step(c.r[2], &m), -EBADMSG);
        m.entries = future;
        m.n_entries = 1;
        assert_int_equal(raft_step(c.r[2], &m), -EBADMSG);
        m.term = 0;     /* only proposals and reads travel without a term */
        m.n_entries = 0;
        assert_int_equal(raft_step(c.r[2], &m), -EBADMSG);
        m = (RaftMessage) { .type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 3, .snapshot = &snap };
        assert_int_equal(raft_step(c.r[2], &m), -EBADMSG);      /* snapshot from a later term */
        cluster_done(&c);
}

/* Decodable garbage from the network must never crash a node. */
static void random_messages_never_crash(void **state) {
        TestCluster c;
        uint64_t x = 0x2545F4914F6CDD1DULL;

        cluster_init(&c, 3, true, true);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        for (int round = 0; round < 20000; round++) {
                RaftEntry es[3];
                RaftMessage m;
                unsigned to;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                to = 1 + (unsigned) (x % 3);
                m = (RaftMessage) {
                        .type = (RaftMessageType) ((x >> 8) % _RAFT_MSG_MAX),
                        .from = 1 + (x >> 16) % 4, .to = to,
                        .term = (x >> 20) % 5, .log_term = (x >> 24) % 5,
                        .index = (x >> 28) % 8, .commit = (x >> 32) % 8,
                        .reject = (x >> 36) & 1, .reject_hint = (x >> 37) % 8,
                };
                m.n_entries = (x >> 40) % 4;
                for (size_t i = 0; i < m.n_entries; i++)
                        es[i] = (RaftEntry) { .term = m.log_term + i / 2, .index = m.index + 1 + i };
                m.entries = es;
                if (m.type == RAFT_MSG_SNAP)
                        continue;
                (void) raft_step(c.r[to], &m);
                while (cluster_ready(&c, to))
                        ;
                for (size_t k = 0; k < c.nq; k++)
                        free(c.queue[k]);
                c.nq = 0;
        }
        cluster_done(&c);
}

TEST_MAIN(
        cmocka_unit_test(malformed_messages_are_refused),
        cmocka_unit_test(random_messages_never_crash),
        cmocka_unit_test(term_below_last_log_term_is_raised),
        cmocka_unit_test(bad_config_is_rejected),
        cmocka_unit_test(construction_survives_oom_at_every_allocation),
        cmocka_unit_test(single_node_commits_its_own_proposals),
        cmocka_unit_test(three_nodes_elect_and_replicate),
        cmocka_unit_test(election_timeout_elects_someone),
        cmocka_unit_test(proposal_without_leader_is_refused),
        cmocka_unit_test(inputs_wait_for_advance),
        cmocka_unit_test(commit_only_change_needs_no_sync),
        cmocka_unit_test(many_proposals_share_one_message),
        cmocka_unit_test(uncommitted_size_limit_refuses_proposals),
        cmocka_unit_test(step_rejects_local_and_unknown_messages),
        cmocka_unit_test(follower_behind_compaction_gets_a_snapshot),
        cmocka_unit_test(storage_failure_makes_the_node_fail),
        cmocka_unit_test(restart_keeps_term_vote_and_commit),
)
