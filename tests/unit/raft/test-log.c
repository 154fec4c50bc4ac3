/* SPDX-License-Identifier: MIT */
/* The log (stable storage + unstable tail): terms across both parts, slices with size limits,
 * conflict detection and truncation, commit rules, stabilization and snapshot restore. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "raft-internal.h"
#include "raft-test.h"

typedef struct Fixture {
        RaftMemoryStorage *ms;
        RaftStorage st;
        RaftLog log;
} Fixture;

/* Stable: snapshot at 1 (term 1), entries 2..3 (term 1, 2). */
static void fixture_init(Fixture *f) {
        RaftConfState cs = conf_of(3);
        RaftEntry es[] = { { .term = 1, .index = 2, .data = "b", .len = 1 },
                           { .term = 2, .index = 3, .data = "c", .len = 1 } };

        f->ms = boot_storage(&cs);
        assert_int_equal(raft_memory_storage_append(f->ms, es, 2), 0);
        raft_memory_storage_get(f->ms, &f->st);
        assert_int_equal(raft_log_init(&f->log, &f->st, NULL, RAFT_NO_LIMIT), 0);
}

static void fixture_done(Fixture *f) {
        raft_log_done(&f->log);
        raft_memory_storage_free(f->ms);
}

static void terms_span_stable_and_unstable(void **state) {
        Fixture f;
        RaftEntry es[] = { { .term = 3, .index = 4, .data = "d", .len = 1 } };
        uint64_t t;

        fixture_init(&f);
        assert_int_equal(raft_log_first_index(&f.log), 2);
        assert_int_equal(raft_log_last_index(&f.log), 3);
        assert_int_equal(raft_log_append(&f.log, es, 1, NULL), 0);
        assert_int_equal(raft_log_last_index(&f.log), 4);
        assert_int_equal(raft_log_term(&f.log, 1), 1);       /* the dummy entry */
        assert_int_equal(raft_log_term(&f.log, 3), 2);
        assert_int_equal(raft_log_term(&f.log, 4), 3);
        assert_int_equal(raft_log_term(&f.log, 5), 0);
        assert_int_equal(raft_log_term_checked(&f.log, 5, &t), -EAGAIN);
        assert_int_equal(raft_log_term_checked(&f.log, 0, &t), -ENOENT);
        assert_true(raft_log_match_term(&f.log, 4, 3));
        assert_int_equal(raft_log_last_term(&f.log), 3);
        fixture_done(&f);
}

static void slice_joins_parts_and_limits_size(void **state) {
        Fixture f;
        RaftEntry es[] = { { .term = 3, .index = 4, .data = "d", .len = 1 },
                           { .term = 3, .index = 5, .data = "e", .len = 1 } };
        EntryVec v = {};

        fixture_init(&f);
        assert_int_equal(raft_log_append(&f.log, es, 2, NULL), 0);
        assert_int_equal(raft_log_slice(&f.log, 2, 6, RAFT_NO_LIMIT, &v), 0);
        assert_int_equal(v.n, 4);
        assert_memory_equal(v.e[0].data, "b", 1);
        assert_memory_equal(v.e[3].data, "e", 1);
        assert_int_equal(raft_log_slice(&f.log, 3, 6, 2 * (1 + RAFT_ENTRY_OVERHEAD), &v), 0);
        assert_int_equal(v.n, 2);
        assert_int_equal(raft_log_slice(&f.log, 3, 6, 1, &v), 0);
        assert_int_equal(v.n, 1);
        assert_int_equal(raft_log_slice(&f.log, 1, 3, RAFT_NO_LIMIT, &v), -ENOENT);
        raft_entry_vec_done(&v, NULL);
        fixture_done(&f);
}

static void maybe_append_detects_mismatch_and_truncates(void **state) {
        Fixture f;
        RaftEntry mine[] = { { .term = 3, .index = 4 }, { .term = 3, .index = 5 } };
        RaftEntry theirs[] = { { .term = 4, .index = 4 }, { .term = 4, .index = 5 }, { .term = 4, .index = 6 } };
        uint64_t last;

        fixture_init(&f);
        assert_int_equal(raft_log_append(&f.log, mine, 2, NULL), 0);
        /* Previous entry does not match: rejected. */
        assert_int_equal(raft_log_maybe_append(&f.log, 3, 9, 3, theirs, 3, &last), 0);
        /* Matches at 3/2: 4 and 5 conflict and are replaced; commit follows the leader. */
        assert_int_equal(raft_log_maybe_append(&f.log, 3, 2, 5, theirs, 3, &last), 1);
        assert_int_equal(last, 6);
        assert_int_equal(raft_log_term(&f.log, 4), 4);
        assert_int_equal(raft_log_last_index(&f.log), 6);
        assert_int_equal(f.log.committed, 5);
        /* A stale duplicate append changes nothing. */
        assert_int_equal(raft_log_maybe_append(&f.log, 3, 2, 5, theirs, 1, &last), 1);
        assert_int_equal(raft_log_last_index(&f.log), 6);
        fixture_done(&f);
}

static void find_conflict_by_term_skips_whole_terms(void **state) {
        Fixture f;
        RaftEntry es[] = { { .term = 5, .index = 4 }, { .term = 5, .index = 5 }, { .term = 5, .index = 6 } };
        uint64_t t;

        fixture_init(&f);
        assert_int_equal(raft_log_append(&f.log, es, 3, NULL), 0);
        /* The leader says term 3 at index 6: all our term-5 entries can be skipped. */
        assert_int_equal(raft_log_find_conflict_by_term(&f.log, 6, 3, &t), 3);
        assert_int_equal(t, 2);
        assert_int_equal(raft_log_find_conflict_by_term(&f.log, 6, 5, &t), 6);
        /* Nothing has a term <= 0: down to index 0. */
        assert_int_equal(raft_log_find_conflict_by_term(&f.log, 6, 0, &t), 0);
        /* Below the dummy entry the term is unknown: assume a match there. */
        assert_int_equal(raft_memory_storage_compact(f.ms, 3), 0);
        assert_int_equal(raft_log_find_conflict_by_term(&f.log, 6, 0, &t), 2);
        assert_int_equal(t, 0);
        fixture_done(&f);
}

static void commit_needs_current_term_entry(void **state) {
        Fixture f;

        fixture_init(&f);
        /* Entry 3 has term 2: a term-3 leader must not commit it by counting. */
        assert_false(raft_log_maybe_commit(&f.log, 3, 3));
        assert_int_equal(f.log.committed, 1);
        assert_true(raft_log_maybe_commit(&f.log, 3, 2));
        assert_int_equal(f.log.committed, 3);
        assert_false(raft_log_maybe_commit(&f.log, 2, 1));   /* never backwards */
        fixture_done(&f);
}

static void stable_to_ignores_replaced_entries(void **state) {
        Fixture f;
        RaftEntry a[] = { { .term = 3, .index = 4, .data = "x", .len = 1 } };
        RaftEntry b[] = { { .term = 4, .index = 4, .data = "y", .len = 1 } };

        fixture_init(&f);
        assert_int_equal(raft_log_append(&f.log, a, 1, NULL), 0);
        assert_int_equal(raft_log_append(&f.log, b, 1, NULL), 0);    /* replaces 4 */
        raft_log_stable_to(&f.log, 4, 3);                            /* the old one was persisted */
        assert_int_equal(f.log.unstable.n, 1);
        raft_log_stable_to(&f.log, 4, 4);
        assert_int_equal(f.log.unstable.n, 0);
        assert_int_equal(f.log.unstable.offset, 5);
        fixture_done(&f);
}

static void restore_replaces_log_with_snapshot(void **state) {
        Fixture f;
        RaftSnapshot snap = { .metadata = { .index = 10, .term = 4, .conf_state = conf_of(3) }, .data = "S", .len = 1 };
        const RaftSnapshot *got;

        fixture_init(&f);
        assert_int_equal(raft_log_restore(&f.log, &snap), 0);
        assert_true(raft_log_has_pending_snapshot(&f.log));
        assert_int_equal(raft_log_first_index(&f.log), 11);
        assert_int_equal(raft_log_last_index(&f.log), 10);
        assert_int_equal(raft_log_term(&f.log, 10), 4);
        assert_int_equal(f.log.committed, 10);
        assert_int_equal(raft_log_snapshot(&f.log, &got), 0);
        assert_memory_equal(got->data, "S", 1);
        raft_log_stable_snap_to(&f.log, 10);
        assert_false(raft_log_has_pending_snapshot(&f.log));
        fixture_done(&f);
}

static void next_ents_respect_applied_and_limit(void **state) {
        Fixture f;
        EntryVec v = {};

        fixture_init(&f);
        f.log.max_next_ents_size = 1;
        raft_log_commit_to(&f.log, 3);
        assert_true(raft_log_has_next_ents(&f.log));
        assert_int_equal(raft_log_next_ents(&f.log, &v), 0);
        assert_int_equal(v.n, 1);
        raft_log_applied_to(&f.log, 2);
        assert_int_equal(raft_log_next_ents(&f.log, &v), 0);
        assert_int_equal(v.e[0].index, 3);
        raft_log_applied_to(&f.log, 3);
        assert_false(raft_log_has_next_ents(&f.log));
        raft_entry_vec_done(&v, NULL);
        fixture_done(&f);
}

static int failing_term(void *u, uint64_t i, uint64_t *ret) {
        return -EIO;
}

static void storage_errors_are_sticky(void **state) {
        Fixture f;

        fixture_init(&f);
        f.st.term = failing_term;
        assert_int_equal(raft_log_term(&f.log, 2), 0);
        assert_int_equal(f.log.error, -EIO);
        fixture_done(&f);
}

static void append_out_of_memory_leaves_log_intact(void **state) {
        for (unsigned at = 1; at < 8; at++) {
                FailAlloc fa = { .fail_at = at };
                RaftAllocator a = fail_allocator(&fa);
                RaftEntry es[] = { { .term = 3, .index = 4, .data = "d", .len = 1 },
                                   { .term = 3, .index = 5, .data = "e", .len = 1 } };
                Fixture f;
                int r;

                fixture_init(&f);
                f.log.alloc = &a;
                r = raft_log_append(&f.log, es, 2, NULL);
                if (r < 0) {
                        assert_int_equal(r, -ENOMEM);
                        assert_int_equal(raft_log_last_index(&f.log), 3);
                } else {
                        assert_int_equal(raft_log_last_index(&f.log), 5);
                }
                fixture_done(&f);
                assert_int_equal(fa.live, 0);
        }
}

/* raft_assert() is on in every build type (RelWithDebInfo defines NDEBUG): committing past the
 * last index aborts. Checked in a forked child. */
static void broken_invariant_aborts_even_with_ndebug(void **state) {
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                Fixture f;

                (void) freopen("/dev/null", "w", stderr);
                fixture_init(&f);
                raft_log_commit_to(&f.log, 99);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGABRT);
}

TEST_MAIN(
        cmocka_unit_test(broken_invariant_aborts_even_with_ndebug),
        cmocka_unit_test(terms_span_stable_and_unstable),
        cmocka_unit_test(slice_joins_parts_and_limits_size),
        cmocka_unit_test(maybe_append_detects_mismatch_and_truncates),
        cmocka_unit_test(find_conflict_by_term_skips_whole_terms),
        cmocka_unit_test(commit_needs_current_term_entry),
        cmocka_unit_test(stable_to_ignores_replaced_entries),
        cmocka_unit_test(restore_replaces_log_with_snapshot),
        cmocka_unit_test(next_ents_respect_applied_and_limit),
        cmocka_unit_test(storage_errors_are_sticky),
        cmocka_unit_test(append_out_of_memory_leaves_log_intact),
)
