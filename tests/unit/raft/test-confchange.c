/* SPDX-License-Identifier: MIT */
/* Membership changes: learners catch up before promotion, one pending change at a time, invalid
 * changes, a removed leader stepping down, and leadership transfer. */
#include "raft-test.h"

static RaftConfState conf(Raft *r) {
        RaftStatus st;

        raft_status(r, &st);
        return st.conf_state;
}

static void elect_1(TestCluster *c) {
        assert_int_equal(raft_campaign(c->r[1]), 0);
        cluster_stabilize(c);
        assert_int_equal(cluster_leader(c), 1);
}

static void one_change_at_a_time(void **state) {
        TestCluster c;
        RaftConfChange add = { .type = RAFT_CONF_ADD_LEARNER, .node_id = 4 };
        RaftConfChange add5 = { .type = RAFT_CONF_ADD_LEARNER, .node_id = 5 };

        cluster_init(&c, 3, false, false);
        elect_1(&c);
        assert_int_equal(raft_propose_conf_change(c.r[1], &add), 0);
        assert_int_equal(raft_propose_conf_change(c.r[1], &add5), -EBUSY);
        cluster_stabilize(&c);
        assert_int_equal(conf(c.r[1]).n_learners, 1);
        assert_int_equal(conf(c.r[2]).learners[0], 4);
        /* Applied: the next change is allowed. */
        assert_int_equal(raft_propose_conf_change(c.r[1], &add5), 0);
        cluster_stabilize(&c);
        assert_int_equal(conf(c.r[3]).n_learners, 2);
        cluster_done(&c);
}

static void learner_is_promoted_only_when_caught_up(void **state) {
        TestCluster c;
        RaftConfChange add = { .type = RAFT_CONF_ADD_LEARNER, .node_id = 3 };
        RaftConfChange promote = { .type = RAFT_CONF_ADD_VOTER, .node_id = 3 };
        RaftConfChange remove = { .type = RAFT_CONF_REMOVE_NODE, .node_id = 3 };

        cluster_init(&c, 3, false, false);
        elect_1(&c);
        /* Demote 3 to a learner, then keep it cut off while the log grows. */
        assert_int_equal(raft_propose_conf_change(c.r[1], &add), 0);
        cluster_stabilize(&c);
        assert_int_equal(conf(c.r[1]).n_voters, 2);
        c.down[3] = true;
        assert_int_equal(raft_propose(c.r[1], "x", 1), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_propose_conf_change(c.r[1], &promote), -EBUSY);
        c.down[3] = false;
        assert_int_equal(raft_tick(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_propose_conf_change(c.r[1], &promote), 0);
        cluster_stabilize(&c);
        assert_int_equal(conf(c.r[1]).n_voters, 3);
        assert_int_equal(conf(c.r[1]).n_learners, 0);
        /* Removing it again works too. */
        assert_int_equal(raft_propose_conf_change(c.r[1], &remove), 0);
        cluster_stabilize(&c);
        assert_int_equal(conf(c.r[2]).n_voters, 2);
        cluster_done(&c);
}

static void invalid_changes_are_refused(void **state) {
        TestCluster c;
        RaftConfChange last = { .type = RAFT_CONF_REMOVE_NODE, .node_id = 1 };
        RaftConfChange none = { .type = RAFT_CONF_ADD_VOTER, .node_id = 0 };
        RaftConfChange bad = { .type = _RAFT_CONF_CHANGE_TYPE_MAX, .node_id = 2 };
        RaftConfState cs;

        cluster_init(&c, 1, false, false);
        elect_1(&c);
        assert_int_equal(raft_propose_conf_change(c.r[1], &last), -EINVAL);
        assert_int_equal(raft_propose_conf_change(c.r[1], &none), -EINVAL);
        assert_int_equal(raft_propose_conf_change(c.r[1], &bad), -EINVAL);
        assert_int_equal(raft_apply_conf_change(c.r[1], &last, &cs), -EINVAL);
        assert_int_equal(conf(c.r[1]).n_voters, 1);
        cluster_done(&c);
}

static void removed_leader_steps_down(void **state) {
        TestCluster c;
        RaftConfChange rm = { .type = RAFT_CONF_REMOVE_NODE, .node_id = 1 };

        cluster_init(&c, 3, false, false);
        elect_1(&c);
        assert_int_equal(raft_propose_conf_change(c.r[1], &rm), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_soft_state(c.r[1]).role, RAFT_FOLLOWER);
        /* The remaining two elect a leader among themselves. */
        c.down[1] = true;
        for (int t = 0; t < 60 && !cluster_leader(&c); t++) {
                assert_int_equal(raft_tick(c.r[2]), 0);
                assert_int_equal(raft_tick(c.r[3]), 0);
                cluster_stabilize(&c);
        }
        assert_true(cluster_leader(&c) == 2 || cluster_leader(&c) == 3);
        cluster_done(&c);
}

static void leadership_transfer_hands_over(void **state) {
        TestCluster c;

        cluster_init(&c, 3, true, true);
        elect_1(&c);
        assert_int_equal(raft_transfer_leader(c.r[1], 3), 0);
        /* Proposals are refused while the transfer runs. */
        assert_int_equal(raft_propose(c.r[1], "x", 1), -EBUSY);
        cluster_stabilize(&c);
        assert_int_equal(cluster_leader(&c), 3);
        assert_int_equal(raft_soft_state(c.r[1]).lead, 3);
        /* A follower can only ask for itself. */
        assert_int_equal(raft_transfer_leader(c.r[2], 1), -EINVAL);
        assert_int_equal(raft_transfer_leader(c.r[2], 2), 0);
        cluster_stabilize(&c);
        assert_int_equal(cluster_leader(&c), 2);
        cluster_done(&c);
}

TEST_MAIN(
        cmocka_unit_test(one_change_at_a_time),
        cmocka_unit_test(learner_is_promoted_only_when_caught_up),
        cmocka_unit_test(invalid_changes_are_refused),
        cmocka_unit_test(removed_leader_steps_down),
        cmocka_unit_test(leadership_transfer_hands_over),
)
