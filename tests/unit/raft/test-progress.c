/* SPDX-License-Identifier: MIT */
/* Progress tracking and quorum arithmetic: the in-flight window, probe/replicate/snapshot
 * transitions, rejection handling, committed index by majority, vote tallies. */
#include "raft-internal.h"
#include "raft-test.h"

static void inflights_fill_free_and_wrap(void **state) {
        uint64_t buf[4];
        Inflights in = { .buffer = buf, .size = 4 };

        for (uint64_t i = 1; i <= 4; i++)
                raft_inflights_add(&in, i * 10);
        assert_true(raft_inflights_full(&in));
        raft_inflights_free_le(&in, 20);
        assert_int_equal(in.count, 2);
        raft_inflights_add(&in, 50);
        raft_inflights_add(&in, 60);         /* wraps around */
        assert_true(raft_inflights_full(&in));
        raft_inflights_free_first_one(&in);
        assert_int_equal(in.count, 3);
        raft_inflights_free_le(&in, 1000);
        assert_int_equal(in.count, 0);
        assert_int_equal(in.start, 0);
}

static void probe_pauses_after_one_message(void **state) {
        uint64_t buf[2];
        Progress pr = { .id = 2, .next = 5, .inflights = { .buffer = buf, .size = 2 } };

        assert_false(raft_progress_is_paused(&pr));
        pr.probe_sent = true;
        assert_true(raft_progress_is_paused(&pr));
        /* An acknowledgement resumes it and moves match and next. */
        assert_true(raft_progress_maybe_update(&pr, 6));
        assert_false(pr.probe_sent);
        assert_int_equal(pr.match, 6);
        assert_int_equal(pr.next, 7);
        assert_false(raft_progress_maybe_update(&pr, 3));    /* stale */
}

static void rejection_in_probe_uses_hint(void **state) {
        uint64_t buf[2];
        Progress pr = { .id = 2, .match = 0, .next = 10, .inflights = { .buffer = buf, .size = 2 } };

        /* A rejection for another index is stale. */
        assert_false(raft_progress_maybe_decr_to(&pr, 5, 3));
        assert_true(raft_progress_maybe_decr_to(&pr, 9, 3));
        assert_int_equal(pr.next, 4);
        /* Never below 1. */
        pr.next = 1;
        assert_true(raft_progress_maybe_decr_to(&pr, 0, 0));
        assert_int_equal(pr.next, 1);
}

static void rejection_in_replicate_falls_back_to_match(void **state) {
        uint64_t buf[2];
        Progress pr = { .id = 2, .match = 5, .next = 9, .inflights = { .buffer = buf, .size = 2 } };

        raft_progress_become_replicate(&pr);
        assert_int_equal(pr.next, 6);
        pr.next = 9;
        assert_false(raft_progress_maybe_decr_to(&pr, 4, 4));       /* <= match: stale */
        assert_true(raft_progress_maybe_decr_to(&pr, 8, 7));
        assert_int_equal(pr.next, 6);
}

static void snapshot_state_resumes_after_snapshot(void **state) {
        uint64_t buf[2];
        Progress pr = { .id = 2, .match = 1, .next = 2, .inflights = { .buffer = buf, .size = 2 } };

        raft_progress_become_snapshot(&pr, 20);
        assert_true(raft_progress_is_paused(&pr));
        raft_progress_become_probe(&pr);
        assert_int_equal(pr.next, 21);
        assert_int_equal(pr.pending_snapshot, 0);
}

static Tracker tracker_of(unsigned n) {
        Tracker t = { .max_inflight = 4 };
        RaftConfState cs = conf_of(n);

        assert_int_equal(raft_tracker_set_conf(&t, NULL, &cs, 1), 0);
        return t;
}

static void committed_is_the_majority_match(void **state) {
        Tracker t = tracker_of(5);
        uint64_t m[] = { 0, 9, 7, 7, 3, 1 };

        for (unsigned i = 1; i <= 5; i++)
                raft_tracker_get(&t, i)->match = m[i];
        assert_int_equal(raft_tracker_committed(&t), 7);
        raft_tracker_get(&t, 3)->match = 2;
        assert_int_equal(raft_tracker_committed(&t), 3);
        raft_tracker_done(&t, NULL);
}

static void learners_do_not_count_for_quorum(void **state) {
        Tracker t = { .max_inflight = 4 };
        RaftConfState cs = conf_of(3);

        cs.learners[cs.n_learners++] = 4;
        cs.learners[cs.n_learners++] = 5;
        assert_int_equal(raft_tracker_set_conf(&t, NULL, &cs, 1), 0);
        assert_true(raft_tracker_get(&t, 4)->is_learner);
        raft_tracker_get(&t, 1)->match = 10;
        raft_tracker_get(&t, 4)->match = 10;
        raft_tracker_get(&t, 5)->match = 10;
        assert_int_equal(raft_tracker_committed(&t), 0);
        /* Votes of learners are ignored. */
        assert_int_equal(raft_tracker_record_vote(&t, 4, true, NULL, NULL), VOTE_PENDING);
        assert_int_equal(raft_tracker_record_vote(&t, 1, true, NULL, NULL), VOTE_PENDING);
        assert_int_equal(raft_tracker_record_vote(&t, 2, true, NULL, NULL), VOTE_WON);
        raft_tracker_done(&t, NULL);
}

static void votes_are_counted_once(void **state) {
        Tracker t = tracker_of(3);
        size_t g, r;

        assert_int_equal(raft_tracker_record_vote(&t, 1, true, &g, &r), VOTE_PENDING);
        /* A node changing its answer does not count twice. */
        assert_int_equal(raft_tracker_record_vote(&t, 2, false, &g, &r), VOTE_PENDING);
        assert_int_equal(raft_tracker_record_vote(&t, 2, true, &g, &r), VOTE_PENDING);
        assert_int_equal(g, 1);
        assert_int_equal(r, 1);
        assert_int_equal(raft_tracker_record_vote(&t, 3, false, &g, &r), VOTE_LOST);
        raft_tracker_reset_votes(&t);
        assert_int_equal(raft_tracker_vote_result(&t), VOTE_PENDING);
        raft_tracker_done(&t, NULL);
}

static void quorum_active_counts_recent_voters(void **state) {
        Tracker t = tracker_of(3);

        for (unsigned i = 1; i <= 3; i++)
                raft_tracker_get(&t, i)->recent_active = false;
        raft_tracker_get(&t, 1)->recent_active = true;
        assert_false(raft_tracker_quorum_active(&t));
        raft_tracker_get(&t, 3)->recent_active = true;
        assert_true(raft_tracker_quorum_active(&t));
        raft_tracker_done(&t, NULL);
}

static void set_conf_keeps_progress_and_validates(void **state) {
        Tracker t = tracker_of(3);
        RaftConfState cs = conf_of(4), bad = { .n_voters = 2, .voters = { 3, 2 } };

        raft_tracker_get(&t, 2)->match = 42;
        assert_int_equal(raft_tracker_set_conf(&t, NULL, &cs, 7), 0);
        assert_int_equal(raft_tracker_get(&t, 2)->match, 42);
        assert_int_equal(raft_tracker_get(&t, 4)->next, 7);
        assert_true(raft_tracker_get(&t, 4)->recent_active);
        assert_int_equal(raft_tracker_set_conf(&t, NULL, &bad, 7), -EINVAL);
        assert_int_equal(t.conf.n_voters, 4);
        raft_tracker_done(&t, NULL);
}

static void set_conf_out_of_memory_changes_nothing(void **state) {
        for (unsigned at = 1; at < 10; at++) {
                FailAlloc f = { .fail_at = at };
                RaftAllocator a = fail_allocator(&f);
                Tracker t = { .max_inflight = 4 };
                RaftConfState c3 = conf_of(3), c5 = conf_of(5);
                int r;

                if (raft_tracker_set_conf(&t, &a, &c3, 1) < 0) {
                        assert_int_equal(t.n, 0);
                        continue;
                }
                raft_tracker_get(&t, 2)->match = 9;
                r = raft_tracker_set_conf(&t, &a, &c5, 1);
                if (r < 0) {
                        assert_int_equal(r, -ENOMEM);
                        assert_int_equal(t.n, 3);
                        assert_int_equal(raft_tracker_get(&t, 2)->match, 9);
                        assert_non_null(raft_tracker_get(&t, 2)->inflights.buffer);
                }
                raft_tracker_done(&t, &a);
                assert_int_equal(f.live, 0);
        }
}

TEST_MAIN(
        cmocka_unit_test(inflights_fill_free_and_wrap),
        cmocka_unit_test(probe_pauses_after_one_message),
        cmocka_unit_test(rejection_in_probe_uses_hint),
        cmocka_unit_test(rejection_in_replicate_falls_back_to_match),
        cmocka_unit_test(snapshot_state_resumes_after_snapshot),
        cmocka_unit_test(committed_is_the_majority_match),
        cmocka_unit_test(learners_do_not_count_for_quorum),
        cmocka_unit_test(votes_are_counted_once),
        cmocka_unit_test(quorum_active_counts_recent_voters),
        cmocka_unit_test(set_conf_keeps_progress_and_validates),
        cmocka_unit_test(set_conf_out_of_memory_changes_nothing),
)
