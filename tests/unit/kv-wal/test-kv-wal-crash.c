/* SPDX-License-Identifier: MIT */
/* A real crash test: a child process appends and syncs batches in a loop (appends, overwrites
 * of its tail, snapshot markers and segment release) and tells the parent about each batch
 * before it starts it and again only after kv_wal_sync() returned. The parent SIGKILLs it at a
 * random moment, reopens the WAL and checks that it holds exactly what was acknowledged, or what
 * a prefix of the one batch in flight made of it. Many rounds on one WAL, so every round also
 * starts from the previous crash's recovery.
 *
 * FLOTILLA_TEST_SEED and FLOTILLA_TEST_CRASH_ROUNDS override the seed (1) and rounds (200).
 * kill -9 leaves the page cache intact, so this tests the write/sync/acknowledge logic and
 * recovery from writes cut short by the kill, not power loss (see docs/kv-wal.md). */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kv-wal.h"
#include "kv-wal-test.h"
#include "test-util.h"

#define MAXLEN   400
#define SEG      (256 * 1024)

enum { MSG_ENTRIES = 1, MSG_SNAPSHOT = 2, MSG_DONE = 3 };

/* Written with one write() each: smaller than PIPE_BUF, so never torn by the kill. */
typedef struct Msg {
        uint32_t kind;
        uint32_t n;             /* entries */
        uint64_t first;         /* first index, or snapshot index */
        uint64_t term;
        uint64_t commit;
} Msg;

/* What the log looks like: terms by index for (snap, last]. */
typedef struct Model {
        uint64_t snap, snap_term, last, commit, hs_term;
        uint64_t *term;         /* by index */
        size_t alloc;
} Model;

static void model_reserve(Model *m, uint64_t index) {
        if (index < m->alloc)
                return;
        size_t a = MAX(m->alloc * 2, (size_t) index + 1024);
        m->term = realloc(m->term, a * sizeof(uint64_t));
        if (!m->term)
                abort();
        m->alloc = a;
}

static void model_copy(Model *dst, const Model *src) {
        uint64_t *t = dst->term;
        size_t a = dst->alloc;
        *dst = *src;
        dst->term = t;
        dst->alloc = a;
        model_reserve(dst, src->last);
        memcpy(dst->term, src->term, (src->last + 1) * sizeof(uint64_t));
}

/* Applies a batch as the WAL documents it: entries (overwrite rule) then hard state, or a
 * snapshot marker. */
static void model_apply(Model *m, const Msg *b, size_t n_entries, bool with_hs) {
        if (b->kind == MSG_SNAPSHOT) {
                m->snap = b->first;
                m->snap_term = b->term;
                m->last = MAX(m->last, b->first);
                return;
        }
        model_reserve(m, b->first + b->n);
        for (size_t i = 0; i < n_entries; i++)
                m->term[b->first + i] = b->term;
        if (n_entries > 0)
                m->last = b->first + n_entries - 1;
        if (with_hs) {
                m->commit = b->commit;
                m->hs_term = b->term;
        }
}

static bool model_matches(const Model *m, const KvWalState *st) {
        if (st->snapshot_index != m->snap || st->snapshot_term != m->snap_term ||
            st->n_entries != m->last - m->snap || st->hard_state.commit != m->commit ||
            st->hard_state.term != m->hs_term)
                return false;
        for (size_t i = 0; i < st->n_entries; i++) {
                uint64_t index = m->snap + 1 + i;
                if (!test_entry_ok(&st->entries[i], index, m->term[index], MAXLEN))
                        return false;
        }
        return true;
}

/* ---- the child ---- */

static void send_msg(int fd, const Msg *m) {
        if (write(fd, m, sizeof(*m)) != (ssize_t) sizeof(*m))
                _exit(3);
}

static _Noreturn void child(const char *dir, int fd, uint64_t seed) {
        KvWalOptions o = { .segment_size = SEG };
        Model m = {};
        KvWalState st;
        KvWal *w;
        uint64_t term;

        if (kv_wal_open(dir, &o, &w, &st) < 0)
                _exit(2);
        m.snap = st.snapshot_index;
        m.last = st.snapshot_index + st.n_entries;
        model_reserve(&m, m.last);
        for (size_t i = 0; i < st.n_entries; i++)
                m.term[st.entries[i].index] = st.entries[i].term;
        term = MAX(st.hard_state.term, 1);
        kv_wal_state_done(&st);

        for (;;) {
                uint64_t r = test_prng(&seed) % 100;
                Msg b = {};

                if (r < 4 && m.last > m.snap + 20) {
                        /* Snapshot somewhere in the log, then drop what it covers. */
                        b = (Msg) { .kind = MSG_SNAPSHOT };
                        b.first = m.snap + 1 + test_prng(&seed) % (m.last - m.snap - 10);
                        b.term = m.term[b.first];
                        send_msg(fd, &b);
                        if (kv_wal_mark_snapshot(w, b.first, b.term) < 0 || kv_wal_sync(w) < 0)
                                _exit(4);
                        send_msg(fd, &(Msg) { .kind = MSG_DONE });
                        model_apply(&m, &b, 0, false);
                        if (kv_wal_release_to(w, b.first + 1) < 0)
                                _exit(5);
                        continue;
                }
                static const uint32_t sizes[] = { 1, 1, 2, 4, 8, 16, 64 };
                b = (Msg) { .kind = MSG_ENTRIES, .n = sizes[test_prng(&seed) % ELEMENTSOF(sizes)] };
                if (r < 12 && m.last > m.snap + 1) {
                        /* The leader truncated our tail: replace the last few with a new term. */
                        uint64_t k = 1 + test_prng(&seed) % MIN(m.last - m.snap, (uint64_t) 5);
                        b.first = m.last - k + 1;
                        term++;
                } else
                        b.first = m.last + 1;
                b.term = term;
                b.commit = b.first - 1;
                TestBatch tb;
                test_batch_make(&tb, b.first, b.n, b.term, MAXLEN);
                send_msg(fd, &b);
                if (kv_wal_append(w, tb.entries, tb.n,
                                  &(KvWalHardState) { .term = b.term, .vote = 1, .commit = b.commit }) < 0 ||
                    kv_wal_sync(w) < 0)
                        _exit(6);
                /* Only now is the batch acknowledged. */
                send_msg(fd, &(Msg) { .kind = MSG_DONE });
                test_batch_done(&tb);
                model_apply(&m, &b, b.n, true);
        }
}

/* ---- the parent ---- */

typedef struct Stats {
        unsigned rounds, batches, in_flight, in_flight_lost, in_flight_partial, in_flight_whole,
                torn_cuts, segments_max;
} Stats;

/* The recovered state must be the acknowledged one, or a prefix of the batch in flight applied
 * to it: a write cut short by the kill loses the batch's tail (cut as a torn tail), and a batch
 * that spans a segment cut can end at the old segment's end if the new one was not yet renamed
 * into place. The overwrite happens with the batch's first entry. */
static void check_round(const char *dir, Model *done, const Msg *flight, Stats *s) {
        KvWalOptions o = { .segment_size = SEG };
        KvWalState st;
        Model tmp = {};
        KvWal *w;
        bool ok = false;

        assert_int_equal(kv_wal_open(dir, &o, &w, &st), 0);
        s->torn_cuts += st.torn.cut;
        s->segments_max = MAX(s->segments_max, (unsigned) kv_wal_segments(w));
        if (model_matches(done, &st)) {
                ok = true;
                if (flight)
                        s->in_flight_lost++;
        } else if (flight && flight->kind == MSG_SNAPSHOT) {
                model_copy(&tmp, done);
                model_apply(&tmp, flight, 0, false);
                ok = model_matches(&tmp, &st);
                s->in_flight_whole += ok;
        } else if (flight) {
                /* k entries of the batch made it, and the hard state only after all of them. */
                for (size_t k = 1; !ok && k <= flight->n; k++)
                        for (int hs = 0; !ok && hs <= (k == flight->n); hs++) {
                                model_copy(&tmp, done);
                                model_apply(&tmp, flight, k, hs);
                                if (model_matches(&tmp, &st)) {
                                        ok = true;
                                        if (hs)
                                                s->in_flight_whole++;
                                        else
                                                s->in_flight_partial++;
                                }
                        }
        }
        if (ok && flight && !model_matches(done, &st))
                model_copy(done, &tmp); /* what recovered is what the next round starts from */
        if (!ok)
                fail_msg("round %u: recovered snap %" PRIu64 ", %zu entries, commit %" PRIu64
                         "; acknowledged snap %" PRIu64 ", last %" PRIu64 ", commit %" PRIu64
                         "; in flight: %s", s->rounds, st.snapshot_index, st.n_entries,
                         st.hard_state.commit, done->snap, done->last, done->commit,
                         flight ? "yes" : "no");
        kv_wal_state_done(&st);
        kv_wal_free(w);
        free(tmp.term);
}

static void killed_at_random_moments(void **state) {
        const char *e = getenv("FLOTILLA_TEST_SEED"), *er = getenv("FLOTILLA_TEST_CRASH_ROUNDS");
        uint64_t seed = e ? strtoull(e, NULL, 0) : 1, rng = seed;
        unsigned rounds = er ? (unsigned) strtoul(er, NULL, 0) : 200;
        char *tmp = test_mkdtemp(), *dir = test_path(tmp, "wal");
        Model done = {};
        Stats s = {};

        model_reserve(&done, 0);
        assert_int_equal(kv_wal_create(dir, "crash", 5), 0);
        for (s.rounds = 0; s.rounds < rounds; s.rounds++) {
                struct timespec ts;
                Msg msgs[4096], *flight = NULL;
                size_t n = 0;
                int p[2], status;
                ssize_t k;
                pid_t pid;

                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        close(p[0]);
                        child(dir, p[1], seed * 1000003 + s.rounds);
                }
                close(p[1]);
                /* 0-25 ms: early kills land in the child's own recovery. */
                uint64_t us = test_prng(&rng) % 25000;
                ts = (struct timespec) { .tv_sec = 0, .tv_nsec = (long) (us * 1000) };
                (void) nanosleep(&ts, NULL);
                assert_int_equal(kill(pid, SIGKILL), 0);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (!WIFSIGNALED(status))
                        fail_msg("round %u: child exited with %d", s.rounds, WEXITSTATUS(status));
                /* Bounded: a round writes far fewer batches than fit here... */
                while ((k = read(p[0], msgs + n, (sizeof(msgs) - n * sizeof(Msg)))) > 0) {
                        assert_int_equal(k % (ssize_t) sizeof(Msg), 0);
                        n += (size_t) k / sizeof(Msg);
                        assert_true(n < ELEMENTSOF(msgs)); /* ...and this checks that it did */
                }
                close(p[0]);
                for (size_t i = 0; i < n; i++) {
                        if (msgs[i].kind == MSG_DONE)
                                continue;
                        if (i + 1 < n && msgs[i + 1].kind == MSG_DONE) {
                                model_apply(&done, &msgs[i], msgs[i].n, true);
                                s.batches++;
                        } else {
                                assert_int_equal(i + 1, n); /* only the last may be unfinished */
                                flight = &msgs[i];
                                s.in_flight++;
                        }
                }
                check_round(dir, &done, flight, &s);
        }
        print_message("seed %" PRIu64 ": %u rounds, %u acknowledged batches, last index %" PRIu64
                      ", %u kills with a batch in flight (%u lost whole, %u kept in part, %u kept "
                      "whole), %u torn tails cut, up to %u segments\n", seed, s.rounds, s.batches,
                      done.last, s.in_flight, s.in_flight_lost, s.in_flight_partial,
                      s.in_flight_whole, s.torn_cuts, s.segments_max);
        assert_true(s.batches > 0);
        free(done.term);
        (void) test_rm_rf(tmp);
        free(dir);
        free(tmp);
}

TEST_MAIN(cmocka_unit_test(killed_at_random_moments))
