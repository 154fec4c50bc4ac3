/* SPDX-License-Identifier: MIT */
/* RaftMemoryStorage, after etcd's storage_test.go: term/entries lookups with compaction and
 * unavailability errors, compaction, snapshots, appends that truncate conflicts, and OOM. */
#include "raft-test.h"

/* Storage holding a dummy entry at 3 (term 3) and entries 4 (term 4), 5 (term 5). */
static RaftMemoryStorage *make(void) {
        RaftMemoryStorage *ms;
        RaftSnapshot snap = { .metadata = { .index = 3, .term = 3, .conf_state = conf_of(3) } };
        RaftEntry es[] = { { .term = 4, .index = 4, .data = "d4", .len = 2 },
                           { .term = 5, .index = 5, .data = "d5", .len = 2 } };

        assert_int_equal(raft_memory_storage_new(&ms, NULL), 0);
        assert_int_equal(raft_memory_storage_apply_snapshot(ms, &snap), 0);
        assert_int_equal(raft_memory_storage_append(ms, es, 2), 0);
        return ms;
}

static void term_reports_compacted_and_unavailable(void **state) {
        RaftMemoryStorage *ms = make();
        RaftStorage st;
        uint64_t t;

        raft_memory_storage_get(ms, &st);
        assert_int_equal(st.term(st.userdata, 2, &t), -ENOENT);
        assert_int_equal(st.term(st.userdata, 3, &t), 0);
        assert_int_equal(t, 3);
        assert_int_equal(st.term(st.userdata, 5, &t), 0);
        assert_int_equal(t, 5);
        assert_int_equal(st.term(st.userdata, 6, &t), -EAGAIN);
        raft_memory_storage_free(ms);
}

static void entries_honor_bounds_and_size_limit(void **state) {
        RaftMemoryStorage *ms = make();
        const RaftEntry *es;
        RaftStorage st;
        size_t n;

        raft_memory_storage_get(ms, &st);
        assert_int_equal(st.entries(st.userdata, 3, 5, RAFT_NO_LIMIT, &es, &n), -ENOENT);
        assert_int_equal(st.entries(st.userdata, 4, 6, RAFT_NO_LIMIT, &es, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(es[1].data, "d5", 2);
        /* At least one entry even if it alone exceeds the limit. */
        assert_int_equal(st.entries(st.userdata, 4, 6, 1, &es, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(st.entries(st.userdata, 4, 6, 2 * (2 + RAFT_ENTRY_OVERHEAD), &es, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(st.entries(st.userdata, 4, 7, RAFT_NO_LIMIT, &es, &n), -EINVAL);
        raft_memory_storage_free(ms);
}

static void first_and_last_index_follow_compaction(void **state) {
        RaftMemoryStorage *ms = make();

        assert_int_equal(raft_memory_storage_first_index(ms), 4);
        assert_int_equal(raft_memory_storage_last_index(ms), 5);
        assert_int_equal(raft_memory_storage_compact(ms, 4), 0);
        assert_int_equal(raft_memory_storage_first_index(ms), 5);
        assert_int_equal(raft_memory_storage_last_index(ms), 5);
        assert_int_equal(raft_memory_storage_compact(ms, 4), -ESTALE);
        assert_int_equal(raft_memory_storage_compact(ms, 9), -EINVAL);
        raft_memory_storage_free(ms);
}

static void create_snapshot_and_apply_snapshot(void **state) {
        RaftMemoryStorage *ms = make(), *other;
        RaftConfState cs = conf_of(3);
        const RaftSnapshot *snap;
        RaftStorage st;

        raft_memory_storage_get(ms, &st);
        assert_int_equal(raft_memory_storage_create_snapshot(ms, 5, &cs, "S", 1), 0);
        assert_int_equal(st.snapshot(st.userdata, &snap), 0);
        assert_int_equal(snap->metadata.index, 5);
        assert_int_equal(snap->metadata.term, 5);
        assert_memory_equal(snap->data, "S", 1);
        assert_int_equal(raft_memory_storage_create_snapshot(ms, 4, &cs, NULL, 0), -ESTALE);
        assert_int_equal(raft_memory_storage_create_snapshot(ms, 9, &cs, NULL, 0), -EINVAL);

        assert_int_equal(raft_memory_storage_new(&other, NULL), 0);
        assert_int_equal(raft_memory_storage_apply_snapshot(other, snap), 0);
        assert_int_equal(raft_memory_storage_first_index(other), 6);
        assert_int_equal(raft_memory_storage_last_index(other), 5);
        /* An older snapshot is refused. */
        assert_int_equal(raft_memory_storage_apply_snapshot(other, snap), -ESTALE);
        raft_memory_storage_free(other);
        raft_memory_storage_free(ms);
}

typedef struct Loader {
        unsigned calls;
        uint64_t index, term;
        int fail;
} Loader;

static int load(void *userdata, const RaftSnapshotMeta *meta, void **ret_data, size_t *ret_len) {
        Loader *l = userdata;

        l->calls++;
        l->index = meta->index;
        l->term = meta->term;
        if (l->fail)
                return l->fail;
        *ret_data = strdup("from disk");
        *ret_len = 9;
        return *ret_data ? 0 : -ENOMEM;
}

/* With a loader the data is not kept: it is read back when Raft asks for the snapshot, stays
 * until released, and a failing loader means "not now" to Raft. */
static void snapshot_data_through_a_loader(void **state) {
        RaftMemoryStorage *ms = make();
        RaftConfState cs = conf_of(3);
        const RaftSnapshot *snap;
        Loader l = {};
        RaftStorage st;

        raft_memory_storage_set_snapshot_loader(ms, load, &l);
        raft_memory_storage_get(ms, &st);
        assert_int_equal(raft_memory_storage_create_snapshot(ms, 5, &cs, "in memory", 9), 0);
        assert_int_equal(l.calls, 0);
        assert_int_equal(st.snapshot(st.userdata, &snap), 0);
        assert_int_equal(l.calls, 1);
        assert_int_equal(l.index, 5);
        assert_int_equal(l.term, 5);
        assert_int_equal(snap->len, 9);
        assert_memory_equal(snap->data, "from disk", 9);
        /* Loaded once, until released. */
        assert_int_equal(st.snapshot(st.userdata, &snap), 0);
        assert_int_equal(l.calls, 1);
        raft_memory_storage_release_snapshot_data(ms);
        l.fail = -ENOENT;
        assert_int_equal(st.snapshot(st.userdata, &snap), -EAGAIN);
        l.fail = -ENOMEM;
        assert_int_equal(st.snapshot(st.userdata, &snap), -ENOMEM);
        l.fail = 0;
        assert_int_equal(st.snapshot(st.userdata, &snap), 0);
        assert_int_equal(l.calls, 4);
        /* A new snapshot drops what was loaded for the old one. */
        raft_memory_storage_release_snapshot_data(ms);
        assert_int_equal(raft_memory_storage_append(ms, (RaftEntry[]) { { .term = 6, .index = 6 } }, 1), 0);
        assert_int_equal(raft_memory_storage_create_snapshot(ms, 6, &cs, "x", 1), 0);
        assert_int_equal(st.snapshot(st.userdata, &snap), 0);
        assert_int_equal(l.index, 6);
        raft_memory_storage_free(ms);
}

static void append_truncates_conflicts_and_skips_compacted(void **state) {
        RaftMemoryStorage *ms = make();
        RaftEntry conflict[] = { { .term = 6, .index = 5, .data = "x", .len = 1 },
                                 { .term = 6, .index = 6 } };
        RaftEntry old[] = { { .term = 1, .index = 2 }, { .term = 3, .index = 3 }, { .term = 4, .index = 4 } };
        RaftEntry gap[] = { { .term = 6, .index = 9 } };
        RaftStorage st;
        uint64_t t;

        raft_memory_storage_get(ms, &st);
        assert_int_equal(raft_memory_storage_append(ms, conflict, 2), 0);
        assert_int_equal(raft_memory_storage_last_index(ms), 6);
        assert_int_equal(st.term(st.userdata, 5, &t), 0);
        assert_int_equal(t, 6);
        /* Entries at or below the compaction point are ignored; 4 truncates 5 and 6. */
        assert_int_equal(raft_memory_storage_append(ms, old, 3), 0);
        assert_int_equal(raft_memory_storage_last_index(ms), 4);
        assert_int_equal(raft_memory_storage_append(ms, gap, 1), -EINVAL);
        assert_int_equal(raft_memory_storage_append(ms, NULL, 0), 0);
        raft_memory_storage_free(ms);
}

static void hard_state_round_trip(void **state) {
        RaftMemoryStorage *ms = make();
        RaftHardState hs = { .term = 7, .vote = 2, .commit = 5 }, got;
        RaftConfState cs;
        RaftStorage st;

        assert_int_equal(raft_memory_storage_set_hard_state(ms, &hs), 0);
        raft_memory_storage_hard_state(ms, &got);
        assert_int_equal(got.vote, 2);
        raft_memory_storage_get(ms, &st);
        assert_int_equal(st.initial_state(st.userdata, &got, &cs), 0);
        assert_int_equal(got.term, 7);
        assert_int_equal(cs.n_voters, 3);
        raft_memory_storage_free(ms);
}

static void out_of_memory_leaves_storage_intact(void **state) {
        for (unsigned at = 1; at < 20; at++) {
                FailAlloc f = { .fail_at = at };
                RaftAllocator a = fail_allocator(&f);
                RaftEntry es[] = { { .term = 1, .index = 1, .data = "aa", .len = 2 },
                                   { .term = 1, .index = 2, .data = "bb", .len = 2 } };
                RaftMemoryStorage *ms;
                int r;

                if (raft_memory_storage_new(&ms, &a) < 0)
                        continue;
                r = raft_memory_storage_append(ms, es, 2);
                if (r < 0) {
                        assert_int_equal(r, -ENOMEM);
                        assert_int_equal(raft_memory_storage_last_index(ms), 0);
                } else {
                        assert_int_equal(raft_memory_storage_last_index(ms), 2);
                }
                raft_memory_storage_free(ms);
                assert_int_equal(f.live, 0);
        }
}

TEST_MAIN(
        cmocka_unit_test(term_reports_compacted_and_unavailable),
        cmocka_unit_test(entries_honor_bounds_and_size_limit),
        cmocka_unit_test(first_and_last_index_follow_compaction),
        cmocka_unit_test(create_snapshot_and_apply_snapshot),
        cmocka_unit_test(snapshot_data_through_a_loader),
        cmocka_unit_test(append_truncates_conflicts_and_skips_compacted),
        cmocka_unit_test(hard_state_round_trip),
        cmocka_unit_test(out_of_memory_leaves_storage_intact),
)
