/* SPDX-License-Identifier: MIT */
/* ReadIndex: reads confirmed by a heartbeat round, forwarded from followers, held until a new
 * leader commits in its term, and never answered by a leader cut off from its quorum. */
#include "raft-test.h"

static void single_node_answers_at_once(void **state) {
        TestCluster c;

        cluster_init(&c, 1, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_read_index(c.r[1], "q1", 2), 0);
        cluster_stabilize(&c);
        assert_int_equal(c.n_reads[1], 1);
        assert_string_equal(c.read_ctx[1], "q1");
        assert_int_equal(c.last_read[1].index, 2);
        cluster_done(&c);
}

static void leader_confirms_with_a_heartbeat_round(void **state) {
        TestCluster c;
        RaftReady rd;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_read_index(c.r[1], "q1", 2), 0);
        /* Nothing is answered before the quorum acknowledged. */
        assert_int_equal(raft_ready(c.r[1], &rd), 0);
        assert_int_equal(rd.n_read_states, 0);
        assert_int_equal(rd.n_messages, 2);
        assert_int_equal(rd.messages[0].type, RAFT_MSG_HEARTBEAT);
        assert_int_equal(rd.messages[0].context_len, 2);
        for (size_t k = 0; k < rd.n_messages; k++) {
                size_t len = raft_message_encoded_size(&rd.messages[k]);
                c.queue[c.nq] = malloc(len);
                assert_int_equal(raft_message_encode(&rd.messages[k], c.queue[c.nq], len), (int) len);
                c.queue_len[c.nq++] = len;
        }
        assert_int_equal(raft_advance(c.r[1], &rd), 0);
        cluster_stabilize(&c);
        assert_int_equal(c.n_reads[1], 1);
        assert_string_equal(c.read_ctx[1], "q1");
        cluster_done(&c);
}

static void follower_read_is_forwarded(void **state) {
        TestCluster c;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_propose(c.r[1], "w", 1), 0);
        cluster_stabilize(&c);
        assert_int_equal(raft_read_index(c.r[2], "from-2", 6), 0);
        cluster_stabilize(&c);
        assert_int_equal(c.n_reads[2], 1);
        assert_int_equal(c.n_reads[1], 0);
        assert_string_equal(c.read_ctx[2], "from-2");
        assert_int_equal(c.last_read[2].index, 3);
        cluster_done(&c);
}

static void new_leader_waits_for_its_first_commit(void **state) {
        TestCluster c;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        assert_true(cluster_ready(&c, 1));      /* MsgVote */
        assert_int_equal(cluster_deliver(&c), 2);
        assert_true(cluster_ready(&c, 2));
        assert_true(cluster_ready(&c, 3));
        assert_int_equal(cluster_deliver(&c), 2);
        /* Leader now, but its empty entry is not committed: the read waits. */
        assert_int_equal(raft_soft_state(c.r[1]).role, RAFT_LEADER);
        assert_int_equal(raft_read_index(c.r[1], "q", 1), 0);
        assert_true(cluster_ready(&c, 1));
        assert_int_equal(c.n_reads[1], 0);
        for (size_t k = 0; k < c.nq; k++) {
                RaftMessage m;

                assert_int_equal(raft_message_decode(c.queue[k], c.queue_len[k], NULL, &m), 0);
                assert_int_equal(m.type, RAFT_MSG_APP);         /* no heartbeat round yet */
                raft_message_free_contents(&m, NULL);
        }
        cluster_stabilize(&c);
        assert_int_equal(c.n_reads[1], 1);
        assert_int_equal(c.last_read[1].index, 2);
        cluster_done(&c);
}

static void isolated_leader_never_answers(void **state) {
        TestCluster c;

        cluster_init(&c, 3, false, false);
        assert_int_equal(raft_campaign(c.r[1]), 0);
        cluster_stabilize(&c);
        c.down[2] = c.down[3] = true;
        assert_int_equal(raft_read_index(c.r[1], "q", 1), 0);
        for (int t = 0; t < 5; t++) {
                assert_int_equal(raft_tick(c.r[1]), 0);
                cluster_stabilize(&c);
        }
        assert_int_equal(c.n_reads[1], 0);
        cluster_done(&c);
}

TEST_MAIN(
        cmocka_unit_test(single_node_answers_at_once),
        cmocka_unit_test(leader_confirms_with_a_heartbeat_round),
        cmocka_unit_test(follower_read_is_forwarded),
        cmocka_unit_test(new_leader_waits_for_its_first_commit),
        cmocka_unit_test(isolated_leader_never_answers),
)
