/* SPDX-License-Identifier: MIT */
/* The WAL's API: round trips, the overwrite and snapshot rules, argument validation, segment
 * rotation and release, and the directory lock. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kv-wal.h"
#include "kv-wal-test.h"
#include "test-util.h"

#define MAXLEN 300

typedef struct Fixture {
        char *dir;      /* the WAL directory, inside a temporary directory */
        char *tmp;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));
        f->tmp = test_mkdtemp();
        assert_non_null(f->tmp);
        f->dir = test_path(f->tmp, "wal");
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        (void) test_rm_rf(f->tmp);
        free(f->dir);
        free(f->tmp);
        free(f);
        return 0;
}

static KvWal *open_ok(const char *dir, uint64_t segment_size, KvWalState *st) {
        KvWalError e = {};
        KvWalOptions o = { .segment_size = segment_size, .error = &e };
        KvWal *w = NULL;
        int r = kv_wal_open(dir, &o, &w, st);
        if (r < 0)
                fail_msg("kv_wal_open: %d: %s", r, e.message);
        return w;
}

static void append_sync(KvWal *w, uint64_t first, size_t n, uint64_t term, const KvWalHardState *hs) {
        TestBatch b;
        test_batch_make(&b, first, n, term, MAXLEN);
        assert_int_equal(kv_wal_append(w, b.entries, n, hs), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        test_batch_done(&b);
}

static void create_open_empty(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, "node=1 cluster=7", 16), 0);
        w = open_ok(f->dir, 0, &st);
        assert_int_equal(st.metadata_len, 16);
        assert_memory_equal(st.metadata, "node=1 cluster=7", 16);
        assert_int_equal(st.n_entries, 0);
        assert_int_equal(st.hard_state.term, 0);
        assert_int_equal(st.snapshot_index, 0);
        assert_false(st.torn.cut);
        assert_int_equal(kv_wal_last_index(w), 0);
        assert_int_equal(kv_wal_segments(w), 1);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void create_refuses_existing_and_open_needs_one(void **state) {
        Fixture *f = *state;
        KvWalError e = {};
        KvWalOptions o = { .error = &e };
        KvWal *w = NULL;

        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), -ENOENT);
        assert_null(w);
        assert_int_equal(mkdir(f->dir, 0700), 0);
        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), -ENOENT);
        assert_non_null(strstr(e.message, "no WAL segments"));
        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        assert_int_equal(kv_wal_create(f->dir, NULL, 0), -EEXIST);
        assert_int_equal(kv_wal_create(f->dir, "x", KV_WAL_METADATA_MAX + 1), -E2BIG);
}

static void round_trip_entries_and_hard_state(void **state) {
        Fixture *f = *state;
        KvWalHardState hs = { .term = 3, .vote = 2, .commit = 90 };
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, "m", 1), 0);
        w = open_ok(f->dir, 0, NULL);
        append_sync(w, 1, 50, 1, NULL);
        append_sync(w, 51, 50, 3, &hs);
        /* A hard state alone, and an entry with no data. */
        hs.commit = 100;
        assert_int_equal(kv_wal_append(w, NULL, 0, &hs), 0);
        assert_int_equal(kv_wal_append(w, &(KvWalEntry) { .index = 101, .term = 3 }, 1, NULL), 0);
        assert_true(kv_wal_buffered(w) > 0);
        assert_int_equal(kv_wal_sync(w), 0);
        assert_int_equal(kv_wal_buffered(w), 0);
        assert_int_equal(kv_wal_sync(w), 0); /* nothing to do */
        kv_wal_free(w);

        w = open_ok(f->dir, 0, &st);
        assert_int_equal(st.n_entries, 101);
        for (uint64_t i = 1; i <= 100; i++)
                test_check_entry(&st.entries[i - 1], i, i <= 50 ? 1 : 3, MAXLEN);
        assert_int_equal(st.entries[100].index, 101);
        assert_int_equal(st.entries[100].len, 0);
        assert_int_equal(st.hard_state.term, 3);
        assert_int_equal(st.hard_state.vote, 2);
        assert_int_equal(st.hard_state.commit, 100);
        assert_int_equal(kv_wal_last_index(w), 101);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void unsynced_records_are_discarded_by_free(void **state) {
        Fixture *f = *state;
        TestBatch b;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        append_sync(w, 1, 5, 1, NULL);
        test_batch_make(&b, 6, 5, 1, MAXLEN);
        assert_int_equal(kv_wal_append(w, b.entries, b.n, NULL), 0);
        test_batch_done(&b);
        kv_wal_free(w);
        w = open_ok(f->dir, 0, &st);
        assert_int_equal(st.n_entries, 5);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void overwrite_rule_truncates_the_tail(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        append_sync(w, 1, 10, 1, NULL);
        /* The leader truncated our tail at 6: 6..7 with term 2 replace 6..10. */
        append_sync(w, 6, 2, 2, NULL);
        assert_int_equal(kv_wal_last_index(w), 7);
        /* Replacing inside one unsynced batch works the same way. */
        append_sync(w, 8, 3, 2, NULL);
        {
                TestBatch a, b;
                test_batch_make(&a, 11, 3, 2, MAXLEN);
                test_batch_make(&b, 9, 2, 3, MAXLEN);
                assert_int_equal(kv_wal_append(w, a.entries, a.n, NULL), 0);
                assert_int_equal(kv_wal_append(w, b.entries, b.n, NULL), 0);
                assert_int_equal(kv_wal_sync(w), 0);
                test_batch_done(&a);
                test_batch_done(&b);
        }
        kv_wal_free(w);
        w = open_ok(f->dir, 0, &st);
        assert_int_equal(st.n_entries, 10);
        for (uint64_t i = 1; i <= 10; i++)
                test_check_entry(&st.entries[i - 1], i, i <= 5 ? 1 : i <= 8 ? 2 : 3, MAXLEN);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void appends_that_break_the_log_are_refused(void **state) {
        Fixture *f = *state;
        KvWalEntry gap[2] = { { .index = 1, .term = 1 }, { .index = 3, .term = 1 } };
        KvWalEntry e = { .index = 5, .term = 1 };
        KvWalEntry big = { .index = 1, .term = 1, .data = "", .len = KV_WAL_ENTRY_DATA_MAX + 1 };
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        assert_int_equal(kv_wal_append(w, gap, 2, NULL), -EINVAL);
        assert_int_equal(kv_wal_last_error(w)->error, -EINVAL);
        assert_int_equal(kv_wal_append(w, &e, 1, NULL), -EINVAL); /* gap after 0 */
        assert_int_equal(kv_wal_append(w, &big, 1, NULL), -E2BIG);
        assert_int_equal(kv_wal_buffered(w), 0); /* nothing buffered by a refused call */
        append_sync(w, 1, 10, 1, NULL);
        assert_int_equal(kv_wal_mark_snapshot(w, 5, 1), 0);
        e.index = 5; /* at the snapshot: covered by it */
        assert_int_equal(kv_wal_append(w, &e, 1, NULL), -EINVAL);
        assert_int_equal(kv_wal_mark_snapshot(w, 4, 1), -EINVAL);
        assert_int_equal(kv_wal_release_to(w, 7), -EINVAL); /* beyond marker + 1 */
        e.index = 6;
        assert_int_equal(kv_wal_append(w, &e, 1, NULL), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        /* UINT64_MAX is never an index, so "last + 1" cannot wrap. */
        assert_int_equal(kv_wal_mark_snapshot(w, UINT64_MAX, 1), -EINVAL);
        assert_int_equal(kv_wal_mark_snapshot(w, UINT64_MAX - 1, 1), 0);
        e.index = UINT64_MAX;
        assert_int_equal(kv_wal_append(w, &e, 1, NULL), -EINVAL);
        assert_int_equal(kv_wal_sync(w), 0);
        kv_wal_free(w);
        w = open_ok(f->dir, 0, NULL);
        assert_int_equal(kv_wal_last_index(w), UINT64_MAX - 1);
        kv_wal_free(w);
}

static void snapshot_marker_drops_covered_entries(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        append_sync(w, 1, 20, 1, NULL);
        assert_int_equal(kv_wal_mark_snapshot(w, 12, 1), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        kv_wal_free(w);
        w = open_ok(f->dir, 0, &st);
        assert_int_equal(st.snapshot_index, 12);
        assert_int_equal(st.snapshot_term, 1);
        assert_int_equal(st.n_entries, 8);
        test_check_entry(&st.entries[0], 13, 1, MAXLEN);
        kv_wal_state_done(&st);

        /* A snapshot from the leader beyond our log: the log continues after it. */
        assert_int_equal(kv_wal_mark_snapshot(w, 1000, 4), 0);
        append_sync(w, 1001, 3, 4, NULL);
        kv_wal_free(w);
        w = open_ok(f->dir, 0, &st);
        assert_int_equal(st.snapshot_index, 1000);
        assert_int_equal(st.n_entries, 3);
        test_check_entry(&st.entries[0], 1001, 4, MAXLEN);
        assert_int_equal(kv_wal_last_index(w), 1003);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void segments_rotate_and_release(void **state) {
        Fixture *f = *state;
        KvWalHardState hs = { .term = 9, .vote = 1, .commit = 0 };
        char **names = NULL;
        size_t n_before, n;
        KvWalState st;
        KvWal *w;
        struct stat sb;

        assert_int_equal(kv_wal_create(f->dir, "meta", 4), 0);
        w = open_ok(f->dir, 8192, NULL);
        for (uint64_t i = 1; i <= 400; i += 10) {
                hs.commit = i + 9;
                append_sync(w, i, 10, 9, &hs);
        }
        n_before = kv_wal_segments(w);
        assert_true(n_before >= 10);
        n = test_list_segments(f->dir, &names);
        assert_int_equal(n, n_before);
        /* Closed segments are cut to their size; the active one is preallocated. */
        for (size_t i = 0; i < n; i++) {
                char *p = test_path(f->dir, names[i]);
                assert_int_equal(stat(p, &sb), 0);
                if (i + 1 < n)
                        assert_true(sb.st_size <= 8192);
                else
                        assert_true(sb.st_size >= 8192);
                free(p);
                free(names[i]);
        }
        free(names);
        kv_wal_free(w);

        w = open_ok(f->dir, 8192, &st);
        assert_int_equal(st.n_entries, 400);
        assert_int_equal(st.hard_state.commit, 400);
        kv_wal_state_done(&st);
        /* Nothing may be released before a snapshot covers it. */
        assert_int_equal(kv_wal_release_to(w, 1), 0);
        assert_int_equal(kv_wal_mark_snapshot(w, 300, 9), 0);
        /* release_to() syncs the marker itself before deleting anything. */
        assert_true(kv_wal_release_to(w, 301) > 0);
        assert_true(kv_wal_segments(w) < n_before);
        assert_true(kv_wal_segments(w) >= 3);
        n = test_list_segments(f->dir, &names);
        assert_int_equal(n, kv_wal_segments(w));
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        append_sync(w, 401, 5, 9, NULL);
        kv_wal_free(w);

        w = open_ok(f->dir, 8192, &st);
        assert_int_equal(st.metadata_len, 4);
        assert_memory_equal(st.metadata, "meta", 4);
        assert_int_equal(st.snapshot_index, 300);
        assert_int_equal(st.hard_state.term, 9);
        assert_int_equal(st.hard_state.commit, 400);
        assert_int_equal(st.n_entries, 105);
        for (size_t i = 0; i < st.n_entries; i++)
                test_check_entry(&st.entries[i], 301 + i, 9, MAXLEN);
        assert_true(st.first_seq > 0);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void one_batch_may_span_several_segments(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 4096, NULL);
        append_sync(w, 1, 200, 1, NULL); /* ~30 KiB in one sync */
        assert_true(kv_wal_segments(w) >= 6);
        kv_wal_free(w);
        w = open_ok(f->dir, 4096, &st);
        assert_int_equal(st.n_entries, 200);
        for (size_t i = 0; i < 200; i++)
                test_check_entry(&st.entries[i], i + 1, 1, MAXLEN);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void record_larger_than_a_segment_gets_its_own(void **state) {
        Fixture *f = *state;
        size_t len = 20000;
        uint8_t *big = malloc(len);
        KvWalEntry e[2] = { { .index = 1, .term = 1, .data = big, .len = len },
                            { .index = 2, .term = 1, .data = "x", .len = 1 } };
        KvWalState st;
        KvWal *w;

        memset(big, 0xab, len);
        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 4096, NULL);
        assert_int_equal(kv_wal_append(w, e, 2, NULL), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        kv_wal_free(w);
        w = open_ok(f->dir, 4096, &st);
        assert_int_equal(st.n_entries, 2);
        assert_int_equal(st.entries[0].len, len);
        assert_memory_equal(st.entries[0].data, big, len);
        kv_wal_state_done(&st);
        kv_wal_free(w);
        free(big);
}

static void second_open_is_refused_while_locked(void **state) {
        Fixture *f = *state;
        KvWalError e = {};
        KvWalOptions o = { .error = &e };
        KvWal *w, *w2 = NULL;
        pid_t pid;
        int status;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        assert_int_equal(kv_wal_open(f->dir, &o, &w2, NULL), -EBUSY);
        assert_null(w2);
        assert_non_null(strstr(e.message, "in use"));
        assert_int_equal(kv_wal_create(f->dir, NULL, 0), -EBUSY);
        /* Another process, too. */
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                KvWal *c = NULL;
                _exit(kv_wal_open(f->dir, NULL, &c, NULL) == -EBUSY ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        kv_wal_free(w);
        /* Released by free(). */
        w = open_ok(f->dir, 0, NULL);
        kv_wal_free(w);
}

static void lock_is_released_when_the_holder_dies(void **state) {
        Fixture *f = *state;
        int p[2], status;
        char c;
        pid_t pid;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                KvWal *cw = NULL;
                if (kv_wal_open(f->dir, NULL, &cw, NULL) < 0)
                        _exit(1);
                (void) write(p[1], "x", 1);
                pause();
                _exit(0);
        }
        close(p[1]);
        assert_int_equal(read(p[0], &c, 1), 1);
        close(p[0]);
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        w = open_ok(f->dir, 0, NULL);
        kv_wal_free(w);
}

static void bad_options_are_refused(void **state) {
        Fixture *f = *state;
        KvWalOptions o = { .segment_size = 100 };
        KvWal *w = NULL;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), -EINVAL);
        o.segment_size = KV_WAL_SEGMENT_SIZE_MAX + 1;
        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), -EINVAL);
        assert_null(w);
}

static void max_entries_bounds_recovery(void **state) {
        Fixture *f = *state;
        KvWalError e = {};
        KvWalOptions o = { .max_entries = 50, .error = &e };
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        append_sync(w, 1, 51, 1, NULL);
        kv_wal_free(w);
        w = NULL;
        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), -E2BIG);
        o.max_entries = 51;
        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), 0);
        /* The writer stops at the same limit, so it never writes what it cannot reopen. */
        {
                KvWalEntry next = { .index = 52, .term = 1 };
                assert_int_equal(kv_wal_append(w, &next, 1, NULL), -E2BIG);
                assert_non_null(strstr(kv_wal_last_error(w)->message, "make a snapshot"));
                assert_int_equal(kv_wal_mark_snapshot(w, 10, 1), 0);
                assert_int_equal(kv_wal_append(w, &next, 1, NULL), 0);
                assert_int_equal(kv_wal_sync(w), 0);
        }
        kv_wal_free(w);
        w = NULL;
        assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), 0);
        kv_wal_free(w);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
TEST_MAIN(T(create_open_empty),
          T(create_refuses_existing_and_open_needs_one),
          T(round_trip_entries_and_hard_state),
          T(unsynced_records_are_discarded_by_free),
          T(overwrite_rule_truncates_the_tail),
          T(appends_that_break_the_log_are_refused),
          T(snapshot_marker_drops_covered_entries),
          T(segments_rotate_and_release),
          T(one_batch_may_span_several_segments),
          T(record_larger_than_a_segment_gets_its_own),
          T(second_open_is_refused_while_locked),
          T(lock_is_released_when_the_holder_dies),
          T(bad_options_are_refused),
          T(max_entries_bounds_recovery))
