/* SPDX-License-Identifier: MIT */
/* Elections: one vote per term (also across restarts), pre-vote that leaves terms alone, the
 * leader lease that makes followers ignore disruptive candidates, and up-to-date checks. */
#include "raft-test.h"

static RaftMessage vote_req(RaftMessageType t, uint64_t from, uint64_t to, uint64_t term,
                            uint64_t last_index, uint64_t last_term) {
        return (RaftMessage) { .type = t, .from = from, .to = to, .term = term,
                               .index = last_index, .log_term = last_term };
}

/* Runs node i's Ready and returns the first message of the given type it sends (type only). */
static bool sends(TestCluster *c, unsigned i, RaftMessageType t, bool *ret_reject) {
        RaftReady rd;
        bool found = false;

        if (!raft_has_ready(c->r[i]))
                return false;
        assert_int_equal(raft_ready(c->r[i], &rd), 0);
        if (rd.has_hard_state)
                assert_int_equal(raft_memory_storage_set_hard_state(c->ms[i], &rd.hard_state), 0);
        for (size_t k = 0; k < rd.n_messages && !found; k++)
                if (rd.messages[k].type == t) {
                        found = true;
                        *ret_reject = rd.messages[k].reject;
                }
        assert_int_equal(raft_advance(c->r[i], &rd), 0);
        return found;
}

static void one_vote_per_term_even_after_restart(void **state) {
        TestCluster c;
        RaftMessage m;
        RaftStorage st;
        RaftConfig cfg = test_config(3);
        bool rej = true;

        cluster_init(&c, 3, false, false);
        m = vote_req(RAFT_MSG_VOTE, 1, 3, 2, 1, 1);
        assert_int_equal(raft_step(c.r[3], &m), 0);
        assert_true(sends(&c, 3, RAFT_MSG_VOTE_RESP, &rej));
        assert_false(rej);
        /* Restart node 3 from its storage: the vote survived. */
        raft_free(c.r[3]);
        raft_memory_storage_get(c.ms[3], &st);
        assert_int_equal(raft_new(&c.r[3], &cfg, &st), 0);
        assert_int_equal(raft_get_hard_state(c.r[3]).vote, 1);
        m = vote_req(RAFT_MSG_VOTE, 2, 3, 2, 1, 1);
        assert_int_equal(raft_step(c.r[3], &m), 0);
        assert_true(sends(&c, 3, RAFT_MSG_VOTE_RESP, &rej));
        assert_true(rej);
        /* Asking again for the same candidate is fine. */
        m = vote_req(RAFT_MSG_VOTE, 1, 3, 2, 1, 1);
        assert_int_equal(raft_step(c.r[3], &m), 0);
        assert_true(sends(&c, 3, RAFT_MSG_VOTE_RESP, &rej));
        assert_false(rej);
        cluster_done(&c);
}

static void stale_log_gets_no_vote(void **state) {
        TestCluster c;
        RaftEntry e = { .term = 1, .index = 2, .data = "x", .len = 1 };
        RaftMessage m;
        RaftStorage st;
        RaftConfig cfg = test_config(3);
        bool rej = false;

        cluster_init(&c, 3, false, false);
        raft_free(c.r[3]);
        assert_int_equal(raft_memory_storage_append(c.ms[3], &e, 1), 0);
        raft_memory_storage_get(c.ms[3], &st);
        assert_int_equal(raft_new(&c.r[3], &cfg, &st), 0);
        m = vote_req(RAFT_MSG_VOTE, 1, 3, 2, 1, 1);   /* candidate's log ends at 1 */
        assert_int_equal(raft_step(c.r[3], &m), 0);
        assert_true(sends(&c, 3, RAFT_MSG_VOTE_RESP, &rej));
        assert_true(rej);
        /* The request still moved node 3 to term 2. */
        assert_int_equal(raft_get_hard_state(c.r[3]).term, 2);
        cluster_done(&c);
}

static void failed_pre_vote_keeps_the_term(void **state) {
        TestCluster c;

        cluster_init(&c, 3, true, true);
        c.down[2] = c.down[3] = true;
        for (int round = 0; round < 5; round++) {
                for (int t = 0; t < 20; t++)
                        assert_int_equal(raft_tick(c.r[1]), 0);
                cluster_stabilize(&c);
        }
        assert_int_equal(raft_soft_state(c.r[1]).role, RAFT_PRE_CANDIDATE);
        assert_int_equal(raft_get_hard_state(c.r[1]).term, 1);
        /* Back in contact, it wins normally. */
        c.down[2] = c.down[3] = false;
        for (int t = 0; t < 40 && !cluster_leader(&c); t++) {
                for (unsigned i = 1; i <= 3; i++)
                        assert_int_equal(raft_tick(c.r[i]), 0);
                cluster_stabilize(&c);
        }
        assert_true(cluster_leader(&c) != 0);
        cluster_done(&c);
}

static void lease_ignores_disruptive_candidates(void **state) {
        TestCluster c;
        RaftMessage m;
        RaftStatus st;
        bool rej;

        cluster_init(&c, 3, false, true);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        /* Node 2 just heard from leader 1: a vote request for a higher term is ignored. */
        m = vote_req(RAFT_MSG_VOTE, 3, 2, 9, 100, 9);
        assert_int_equal(raft_step(c.r[2], &m), 0);
        assert_false(sends(&c, 2, RAFT_MSG_VOTE_RESP, &rej));
        assert_int_equal(raft_get_hard_state(c.r[2]).term, 2);
        /* Unless it is a leadership transfer. */
        m.context = "CampaignTransfer";
        m.context_len = strlen("CampaignTransfer");
        assert_int_equal(raft_step(c.r[2], &m), 0);
        assert_true(sends(&c, 2, RAFT_MSG_VOTE_RESP, &rej));
        assert_false(rej);
        raft_status(c.r[2], &st);
        assert_int_equal(st.hard_state.term, 9);
        cluster_done(&c);
}

static void leader_without_quorum_steps_down(void **state) {
        TestCluster c;

        cluster_init(&c, 3, false, true);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        c.down[2] = c.down[3] = true;
        for (int t = 0; t < 25; t++) {
                assert_int_equal(raft_tick(c.r[1]), 0);
                cluster_stabilize(&c);
        }
        assert_int_equal(raft_soft_state(c.r[1]).role, RAFT_FOLLOWER);
        cluster_done(&c);
}

static void unreachable_peer_falls_back_to_probing(void **state) {
        TestCluster c;
        RaftStatus st;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        raft_status(c.r[1], &st);
        assert_int_equal(st.peers[1].state, RAFT_PROGRESS_REPLICATE);
        assert_int_equal(raft_report_unreachable(c.r[1], 2), 0);
        raft_status(c.r[1], &st);
        assert_int_equal(st.peers[1].id, 2);
        assert_int_equal(st.peers[1].state, RAFT_PROGRESS_PROBE);
        cluster_done(&c);
}

TEST_MAIN(
        cmocka_unit_test(one_vote_per_term_even_after_restart),
        cmocka_unit_test(stale_log_gets_no_vote),
        cmocka_unit_test(failed_pre_vote_keeps_the_term),
        cmocka_unit_test(lease_ignores_disruptive_candidates),
        cmocka_unit_test(leader_without_quorum_steps_down),
        cmocka_unit_test(unreachable_peer_falls_back_to_probing),
)
