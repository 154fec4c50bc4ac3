/* SPDX-License-Identifier: MIT */
/* Recovery: a torn write at every byte offset of the last batches (cut to the end of a file, or
 * zero-filled as in a preallocated file), random out-of-order sector tears, a flipped byte at
 * every offset before the last batch (refused, naming file and offset), and structural damage:
 * missing, foreign, misnamed or shortened segments and unknown versions. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv-wal.h"
#include "kv-wal-test.h"
#include "test-util.h"

#define MAXLEN 200
#define SEG    8192

typedef struct Fixture {
        char *tmp;
        char *dir;
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

static uint64_t le64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

static void append_sync(KvWal *w, uint64_t first, size_t n, uint64_t term, uint64_t commit) {
        KvWalHardState hs = { .term = term, .vote = 1, .commit = commit };
        TestBatch b;

        test_batch_make(&b, first, n, term, MAXLEN);
        assert_int_equal(kv_wal_append(w, b.entries, n, &hs), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        test_batch_done(&b);
}

static KvWal *open_ok(const char *dir, KvWalState *st) {
        KvWalError e = {};
        KvWalOptions o = { .segment_size = SEG, .error = &e };
        KvWal *w = NULL;

        if (kv_wal_open(dir, &o, &w, st) < 0)
                fail_msg("kv_wal_open: %s", e.message);
        return w;
}

/* The state a reader of the records in buf should recover: records are replayed in order while
 * intact[] says so. Entries of earlier records with lower indexes are handled by the overwrite
 * rule, exactly as the WAL documents it. */
typedef struct Expect {
        uint64_t term[512];     /* by index */
        uint64_t last;
        uint64_t commit;
} Expect;

static void expect_replay(Expect *x, const uint8_t *buf, const size_t *offs, size_t n) {
        *x = (Expect) {};
        for (size_t i = 0; i < n; i++) {
                const uint8_t *p = buf + offs[i] + 9;
                if (test_record_type(buf, offs[i]) == 5) { /* entry */
                        x->last = le64(p);
                        x->term[x->last] = le64(p + 8);
                } else if (test_record_type(buf, offs[i]) == 3) /* hard state */
                        x->commit = le64(p + 16);
        }
}

static void check_expect(const KvWalState *st, const Expect *x) {
        assert_int_equal(st->n_entries, x->last);
        for (size_t i = 0; i < st->n_entries; i++)
                test_check_entry(&st->entries[i], i + 1, x->term[i + 1], MAXLEN);
        assert_int_equal(st->hard_state.commit, x->commit);
}

/* A one-segment WAL whose last two batches are 31..38 (term 1) and an overwrite 35..40 (term 2).
 * Returns the image of its segment, the record offsets, and where the last two batches start. */
typedef struct Built {
        char *path;
        uint8_t *img;
        size_t size;
        size_t offs[256];
        size_t n;
        size_t end;             /* end of the last record */
        size_t batch2;          /* offset of the second-to-last sync record */
        size_t batch1;          /* offset of the last sync record */
} Built;

static void build_wal(Fixture *f, Built *b) {
        char **names;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, "meta", 4), 0);
        w = open_ok(f->dir, NULL);
        for (uint64_t i = 1; i <= 30; i += 6)
                append_sync(w, i, 6, 1, i + 5);
        append_sync(w, 31, 8, 1, 36);
        append_sync(w, 35, 6, 2, 38);
        assert_int_equal(kv_wal_segments(w), 1);
        kv_wal_free(w);
        assert_int_equal(test_list_segments(f->dir, &names), 1);
        b->path = test_path(f->dir, names[0]);
        free(names[0]);
        free(names);
        assert_int_equal(test_read_file(b->path, &b->img, &b->size), 0);
        b->n = test_walk_records(b->img, b->size, b->offs, 256, &b->end);
        b->batch1 = b->batch2 = SIZE_MAX;
        for (size_t i = 0; i < b->n; i++)
                if (test_record_type(b->img, b->offs[i]) == 6) {
                        b->batch2 = b->batch1;
                        b->batch1 = b->offs[i];
                }
        assert_true(b->batch2 < b->batch1 && b->batch1 < b->end);
}

static void built_done(Built *b) {
        free(b->path);
        free(b->img);
}

/* Records intact after the image was damaged from x on: complete before x, or everything of
 * them from x on was zero anyway. */
static size_t intact_records(const Built *b, const uint8_t *img, size_t limit) {
        size_t k = 0;
        for (; k < b->n; k++) {
                size_t s = b->offs[k], e = k + 1 < b->n ? b->offs[k + 1] : b->end;
                if (e > limit || memcmp(img + s, b->img + s, e - s) != 0)
                        break;
        }
        return k;
}

static bool has_nonzero(const uint8_t *p, size_t from, size_t to) {
        for (size_t i = from; i < to; i++)
                if (p[i] != 0)
                        return true;
        return false;
}

/* Opens the damaged WAL, checks it recovered exactly the intact records, and that a torn cut is
 * reported exactly when something of the first broken record is left. */
static KvWal *open_and_check(Fixture *f, const Built *b, const uint8_t *img, size_t size,
                             Expect *want, unsigned *cuts) {
        size_t k = intact_records(b, img, size);
        KvWalState st;
        KvWal *w;

        expect_replay(want, b->img, b->offs, k);
        w = open_ok(f->dir, &st);
        check_expect(&st, want);
        if (k < b->n && has_nonzero(img, b->offs[k], size)) {
                assert_true(st.torn.cut);
                assert_int_equal(st.torn.offset, b->offs[k]);
                (*cuts)++;
        } else
                assert_false(st.torn.cut);
        kv_wal_state_done(&st);
        return w;
}

static void torn_tail(Fixture *f, bool zero_fill) {
        unsigned cuts = 0;
        uint8_t *img;
        Built b;

        build_wal(f, &b);
        img = malloc(b.size);
        for (size_t x = b.batch2; x <= b.end; x++) {
                size_t size = zero_fill ? b.size : x;
                KvWalState st;
                Expect want;
                KvWal *w;

                memcpy(img, b.img, b.size);
                if (zero_fill)
                        memset(img + x, 0, b.size - x);
                assert_int_equal(test_write_file_bytes(b.path, img, size), 0);
                w = open_and_check(f, &b, img, size, &want, &cuts);
                /* The WAL keeps working after the cut, and the cut stays cut. */
                append_sync(w, want.last + 1, 2, 3, 0);
                kv_wal_free(w);
                w = open_ok(f->dir, &st);
                assert_int_equal(st.n_entries, want.last + 2);
                test_check_entry(&st.entries[want.last + 1], want.last + 2, 3, MAXLEN);
                assert_false(st.torn.cut);
                kv_wal_state_done(&st);
                kv_wal_free(w);
        }
        print_message("%zu offsets, %u torn cuts\n", b.end - b.batch2 + 1, cuts);
        assert_true(cuts > (b.end - b.batch2) / 2);
        free(img);
        built_done(&b);
}

static void torn_tail_truncated_at_every_offset(void **state) {
        torn_tail(*state, false);
}

static void torn_tail_zero_filled_at_every_offset(void **state) {
        torn_tail(*state, true);
}

/* A crash lets the device write any subset of the last batch's sectors. */
static void torn_sectors_in_any_order(void **state) {
        Fixture *f = *state;
        uint64_t seed = 20260101;
        unsigned cuts = 0;
        uint8_t *img;
        Built b;

        build_wal(f, &b);
        img = malloc(b.size);
        for (unsigned round = 0; round < 300; round++) {
                size_t first = b.batch1 / 512, last = (b.end - 1) / 512;
                Expect want;
                KvWal *w;

                memcpy(img, b.img, b.size);
                for (size_t s = first; s <= last; s++)
                        if (test_prng(&seed) & 1) {
                                size_t lo = MAX(s * 512, b.batch1), hi = MIN((s + 1) * 512, b.size);
                                memset(img + lo, 0, hi - lo);
                        }
                assert_int_equal(test_write_file_bytes(b.path, img, b.size), 0);
                w = open_and_check(f, &b, img, b.size, &want, &cuts);
                kv_wal_free(w);
        }
        print_message("300 rounds, %u torn cuts\n", cuts);
        free(img);
        built_done(&b);
}

/* ---- damage anywhere but the end is refused ---- */

typedef struct Multi {
        size_t n;
        char *name[64];
        char *path[64];
        uint8_t *img[64];
        size_t size[64];
} Multi;

static KvWal *open_seg(const char *dir, uint64_t seg, KvWalState *st, KvWalError *e, int *ret) {
        KvWalOptions o = { .segment_size = seg, .error = e };
        KvWal *w = NULL;

        *ret = kv_wal_open(dir, &o, &w, st);
        return w;
}

static void build_multi(const char *dir, Multi *m, uint64_t batches) {
        char **names;
        KvWal *w;
        int r;

        assert_int_equal(kv_wal_create(dir, "multi", 5), 0);
        w = open_seg(dir, 4096, NULL, NULL, &r);
        assert_int_equal(r, 0);
        for (uint64_t b = 0; b < batches; b++) {
                append_sync(w, 1 + 3 * b, 3, 1 + b / 10, 3 * b);
                if (b == batches / 2) {
                        assert_int_equal(kv_wal_mark_snapshot(w, 3 * b, 1 + b / 10), 0);
                        assert_int_equal(kv_wal_sync(w), 0);
                }
        }
        kv_wal_free(w);
        m->n = test_list_segments(dir, &names);
        assert_true(m->n >= 4 && m->n <= 64);
        for (size_t i = 0; i < m->n; i++) {
                m->name[i] = names[i];
                m->path[i] = test_path(dir, names[i]);
                assert_int_equal(test_read_file(m->path[i], &m->img[i], &m->size[i]), 0);
        }
        free(names);
}

static void multi_done(Multi *m) {
        for (size_t i = 0; i < m->n; i++) {
                free(m->name[i]);
                free(m->path[i]);
                free(m->img[i]);
        }
}

static size_t record_containing(const size_t *offs, size_t n, size_t o) {
        size_t k = 0;
        while (k + 1 < n && offs[k + 1] <= o)
                k++;
        return offs[k];
}

static void flipped_byte_anywhere_before_the_last_batch_is_refused(void **state) {
        Fixture *f = *state;
        unsigned refused = 0, last_refused = 0, last_cut = 0;
        Multi m;

        build_multi(f->dir, &m, 60);
        for (size_t i = 0; i < m.n; i++) {
                bool last = i + 1 == m.n;
                size_t offs[1024], n, end, limit, last_sync = 0;

                n = test_walk_records(m.img[i], m.size[i], offs, 1024, &end);
                for (size_t k = 0; k < n; k++)
                        if (test_record_type(m.img[i], offs[k]) == 6)
                                last_sync = offs[k];
                limit = last ? end : m.size[i];
                assert_true(!last || last_sync > 0);
                for (size_t o = 0; o < limit; o++) {
                        KvWalError e = {};
                        KvWalState st;
                        KvWal *w;
                        int r;

                        m.img[i][o] ^= (uint8_t) (1u << (o % 8));
                        assert_int_equal(test_write_file_bytes(m.path[i], m.img[i], m.size[i]), 0);
                        m.img[i][o] ^= (uint8_t) (1u << (o % 8));
                        w = open_seg(f->dir, 4096, &st, &e, &r);
                        if (last && o >= last_sync && r == 0) {
                                /* Damage in the last batch can look like a torn write: then
                                 * it is cut at that record, and what is left is correct. */
                                assert_true(st.torn.cut);
                                assert_int_equal(st.torn.offset, record_containing(offs, n, o));
                                for (size_t k = 0; k < st.n_entries; k++)
                                        assert_true(test_entry_ok(&st.entries[k], st.entries[k].index,
                                                                  st.entries[k].term, MAXLEN));
                                kv_wal_state_done(&st);
                                kv_wal_free(w);
                                last_cut++;
                        } else {
                                if (r == 0)
                                        fail_msg("%s: flip at %zu not detected", m.name[i], o);
                                assert_null(w);
                                assert_int_equal(r, o >= 17 && o < 21 ? -EPROTO : -EBADMSG);
                                assert_int_equal(e.error, r);
                                assert_string_equal(e.file, m.name[i]);
                                assert_int_equal(e.offset, record_containing(offs, n, o));
                                assert_non_null(strstr(e.message, m.name[i]));
                                if (last && o >= last_sync)
                                        last_refused++;
                                else
                                        refused++;
                        }
                        assert_int_equal(test_write_file_bytes(m.path[i], m.img[i], m.size[i]), 0);
                }
        }
        print_message("%zu segments: %u flips refused before the last batch; in the last batch "
                      "%u refused, %u cut as torn\n", m.n, refused, last_refused, last_cut);
        assert_true(last_refused > 0);
        multi_done(&m);
}

static void expect_refused(const char *dir, int err, const char *file, const char *what) {
        KvWalError e = {};
        KvWal *w;
        int r;

        w = open_seg(dir, 4096, NULL, &e, &r);
        assert_null(w);
        assert_int_equal(r, err);
        if (file)
                assert_string_equal(e.file, file);
        if (!strstr(e.message, what))
                fail_msg("message \"%s\" lacks \"%s\"", e.message, what);
}

static void missing_segments_are_refused(void **state) {
        Fixture *f = *state;
        uint8_t *keep;
        size_t size;
        Multi m;

        build_multi(f->dir, &m, 60);
        /* A gap in the middle. */
        assert_int_equal(test_read_file(m.path[2], &keep, &size), 0);
        assert_int_equal(unlink(m.path[2]), 0);
        expect_refused(f->dir, -EBADMSG, m.name[3], "segment before it is missing");
        assert_int_equal(test_write_file_bytes(m.path[2], keep, size), 0);
        free(keep);
        /* Leading segments a snapshot covers may go (that is what release_to() does), but not
         * ones holding entries after it: build_multi() marks a snapshot at index 90. */
        {
                size_t j = 0;
                while (strtoull(m.name[j] + 17, NULL, 16) <= 91)
                        j++;
                assert_true(j + 1 < m.n);
                for (size_t i = 0; i < j - 1; i++)
                        assert_int_equal(unlink(m.path[i]), 0);
                {
                        KvWal *w;
                        int r;
                        w = open_seg(f->dir, 4096, NULL, NULL, &r);
                        assert_int_equal(r, 0);
                        kv_wal_free(w);
                }
                assert_int_equal(unlink(m.path[j - 1]), 0);
                expect_refused(f->dir, -EBADMSG, m.name[j], "are missing");
        }
        multi_done(&m);
}

static void shortened_closed_segment_is_refused(void **state) {
        Fixture *f = *state;
        size_t offs[1024], n, end;
        Multi m;

        build_multi(f->dir, &m, 60);
        /* Lose the last record of a closed segment: it still ends at a record boundary. */
        n = test_walk_records(m.img[1], m.size[1], offs, 1024, &end);
        assert_int_equal(end, m.size[1]);
        assert_int_equal(test_write_file_bytes(m.path[1], m.img[1], offs[n - 1]), 0);
        expect_refused(f->dir, -EBADMSG, m.name[2], "does not continue");
        multi_done(&m);
}

static void unknown_version_is_refused(void **state) {
        Fixture *f = *state;
        Multi m;

        build_multi(f->dir, &m, 30);
        m.img[0][17] = 2; /* version field of the segment header */
        assert_int_equal(test_write_file_bytes(m.path[0], m.img[0], m.size[0]), 0);
        expect_refused(f->dir, -EPROTO, m.name[0], "format version 2 is unknown");
        multi_done(&m);
}

static void foreign_segment_is_refused(void **state) {
        Fixture *f = *state;
        char *other = test_path(f->tmp, "other");
        Multi m, o;

        build_multi(f->dir, &m, 30);
        build_multi(other, &o, 30);
        assert_int_equal(test_write_file_bytes(m.path[1], o.img[1], o.size[1]), 0);
        expect_refused(f->dir, -EBADMSG, NULL, "another WAL");
        multi_done(&m);
        multi_done(&o);
        free(other);
}

static void stray_files(void **state) {
        Fixture *f = *state;
        char *junk, *tmp, *empty;
        struct stat sb;
        KvWal *w;
        int r;
        Multi m;

        build_multi(f->dir, &m, 30);
        /* A segment cut that crashed before its rename is removed. */
        tmp = test_path(f->dir, "00000000000000ff-0000000000000001.wal.tmp");
        assert_int_equal(test_write_file_bytes(tmp, "xx", 2), 0);
        w = open_seg(f->dir, 4096, NULL, NULL, &r);
        assert_int_equal(r, 0);
        kv_wal_free(w);
        assert_int_equal(stat(tmp, &sb), -1);
        /* Something that claims to be a segment but is not named like one is refused. */
        junk = test_path(f->dir, "junk.wal");
        assert_int_equal(test_write_file_bytes(junk, "xx", 2), 0);
        expect_refused(f->dir, -EBADMSG, NULL, "junk.wal");
        assert_int_equal(unlink(junk), 0);
        /* An empty segment is not a torn write: segments get their names only once written. */
        {
                char name[64];
                snprintf(name, sizeof(name), "%016zx-%016x.wal", m.n, 999);
                empty = test_path(f->dir, name);
        }
        assert_int_equal(test_write_file_bytes(empty, "", 0), 0);
        {
                /* (As a cut would, close the segment before it at its end first.) */
                size_t offs[1024], end;
                (void) test_walk_records(m.img[m.n - 1], m.size[m.n - 1], offs, 1024, &end);
                assert_int_equal(truncate(m.path[m.n - 1], (off_t) end), 0);
        }
        expect_refused(f->dir, -EBADMSG, NULL, "not a WAL segment");
        free(junk);
        free(tmp);
        free(empty);
        multi_done(&m);
}

static void zeroed_sector_before_later_batches_is_refused(void **state) {
        Fixture *f = *state;
        KvWalError e = {};
        KvWal *w;
        Built b;
        int r;

        build_wal(f, &b);
        /* A lost write in the middle looks like a torn one, but later batches prove it was
         * acknowledged: refuse rather than drop them. */
        size_t s = (b.offs[20] / 512 + 1) * 512;
        assert_true(s + 512 < b.batch2);
        memset(b.img + s, 0, 512);
        assert_int_equal(test_write_file_bytes(b.path, b.img, b.size), 0);
        w = open_seg(f->dir, SEG, NULL, &e, &r);
        assert_null(w);
        assert_int_equal(r, -EBADMSG);
        assert_non_null(strstr(e.message, "later acknowledged write"));
        assert_true(e.offset <= s);
        built_done(&b);
}

static void garbage_in_the_preallocated_tail_is_cut(void **state) {
        Fixture *f = *state;
        KvWalState st;
        Expect want;
        KvWal *w;
        Built b;

        build_wal(f, &b);
        b.img[b.end + 700] = 0x5a;
        assert_int_equal(test_write_file_bytes(b.path, b.img, b.size), 0);
        w = open_ok(f->dir, &st);
        expect_replay(&want, b.img, b.offs, b.n);
        check_expect(&st, &want);
        assert_true(st.torn.cut);
        assert_int_equal(st.torn.offset, b.end);
        assert_int_equal(st.torn.dropped, 701);
        kv_wal_state_done(&st);
        kv_wal_free(w);
        built_done(&b);
}

/* Edits one record of segment i (a u64 of its payload at field, or with field < 0 its type),
 * re-signs the segment, and expects the open to fail naming that record. */
static void refuse_edit(Fixture *f, Multi *m, size_t i, size_t off, int field, uint64_t value,
                        int error, const char *what) {
        uint8_t *img = malloc(m->size[i]);
        KvWalError e = {};
        KvWal *w;
        int r;

        memcpy(img, m->img[i], m->size[i]);
        if (field >= 0) {
                size_t len = (size_t) img[off] | (size_t) img[off + 1] << 8; /* small records */
                for (size_t b = 0; b < 8 && (size_t) field + b < len; b++)
                        img[off + 9 + (size_t) field + b] = (uint8_t) (value >> (8 * b));
        } else
                img[off + 8] = (uint8_t) value;
        test_resign(img, m->size[i]);
        assert_int_equal(test_write_file_bytes(m->path[i], img, m->size[i]), 0);
        w = open_seg(f->dir, 4096, NULL, &e, &r);
        assert_null(w);
        if (r != error || !strstr(e.message, what) || e.offset != off || !streq(e.file, m->name[i]))
                fail_msg("got %d \"%s\", want %d \"%s\" at %s offset %zu", r, e.message, error,
                         what, m->name[i], off);
        assert_int_equal(test_write_file_bytes(m->path[i], m->img[i], m->size[i]), 0);
        free(img);
}

/* Records whose checksums are right but whose contents break the log's rules. */
static void checksum_valid_nonsense_is_refused(void **state) {
        Fixture *f = *state;
        size_t offs[1024], n, end, i, marker = 0, entry_after = 0, first_entry = 0, sync2 = 0;
        unsigned syncs = 0;
        Multi m;

        build_multi(f->dir, &m, 30); /* marks a snapshot at index 45 */
        for (i = 0; i < m.n && marker == 0; i++) {
                n = test_walk_records(m.img[i], m.size[i], offs, 1024, &end);
                for (size_t k = 4; k < n; k++) {
                        uint8_t t = test_record_type(m.img[i], offs[k]);
                        if (t == 5 && first_entry == 0)
                                first_entry = offs[k];
                        if (t == 6 && ++syncs == 2)
                                sync2 = offs[k];
                        if (t == 4)
                                marker = offs[k];
                        if (t == 5 && marker > 0 && entry_after == 0)
                                entry_after = offs[k];
                }
                if (marker == 0)
                        first_entry = sync2 = syncs = 0;
        }
        i--;
        assert_true(marker > 0 && entry_after > 0 && first_entry > 0 && sync2 > 0 && i + 1 < m.n);

        refuse_edit(f, &m, i, first_entry, 0, 1000, -EBADMSG, "leaves a gap after entry");
        refuse_edit(f, &m, i, entry_after, 0, 3, -EBADMSG, "at or below snapshot marker 45");
        refuse_edit(f, &m, i, entry_after, 0, UINT64_MAX, -EBADMSG, "out of range");
        refuse_edit(f, &m, i, sync2, 0, 1, -EBADMSG, "does not follow batch");
        refuse_edit(f, &m, i, sync2, 0, UINT64_MAX, -EBADMSG, "does not follow batch");
        refuse_edit(f, &m, i, sync2, -1, 3, -EBADMSG, "unexpected hard state record of 8 bytes");
        refuse_edit(f, &m, i, sync2, -1, 1, -EBADMSG, "unexpected segment header record");
        refuse_edit(f, &m, i, sync2, -1, 99, -EPROTO, "record type 99 is unknown");

        /* The next segment starts with the marker: it may not go back. Its metadata must match,
         * and its header records come in their order. */
        n = test_walk_records(m.img[i + 1], m.size[i + 1], offs, 1024, &end);
        refuse_edit(f, &m, i + 1, offs[3], 0, 44, -EBADMSG, "goes back from 45");
        refuse_edit(f, &m, i + 1, offs[1], 0, 0x2020202020202020ULL, -EBADMSG, "metadata differs");
        refuse_edit(f, &m, i + 1, offs[2], -1, 4, -EBADMSG,
                    "snapshot marker record where the hard state record belongs");

        /* A header that disagrees with its file name; then one that agrees but does not continue
         * the log. */
        {
                uint64_t first = strtoull(m.name[i + 1] + 17, NULL, 16);
                uint8_t *img = malloc(m.size[i + 1]);
                char other[64], *p;

                snprintf(other, sizeof(other), "%.16s-%016llx.wal", m.name[i + 1],
                         (unsigned long long) first + 1);
                p = test_path(f->dir, other);
                assert_int_equal(rename(m.path[i + 1], p), 0);
                expect_refused(f->dir, -EBADMSG, other, "unlike the file name");
                memcpy(img, m.img[i + 1], m.size[i + 1]);
                for (int b = 0; b < 8; b++)
                        img[9 + 32 + b] = (uint8_t) ((first + 1) >> (8 * b));
                test_resign(img, m.size[i + 1]);
                assert_int_equal(test_write_file_bytes(p, img, m.size[i + 1]), 0);
                expect_refused(f->dir, -EBADMSG, other, "but the log so far ends at");
                free(img);
                free(p);
        }
        multi_done(&m);
}

/* Recovery reads the last segment only up to its last data region: a byte written far out in
 * the preallocated (unwritten) space must still be seen. */
static void data_beyond_the_preallocated_space_is_seen(void **state) {
        Fixture *f = *state;
        char **names;
        KvWalState st;
        KvWal *w;
        char *p;
        int fd;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        {
                KvWalOptions o = { .segment_size = 4 * 1024 * 1024, .fallocate_only = true };
                assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), 0);
        }
        append_sync(w, 1, 10, 1, 10);
        kv_wal_free(w);
        assert_int_equal(test_list_segments(f->dir, &names), 1);
        p = test_path(f->dir, names[0]);
        fd = open(p, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "Z", 1, 4 * 1024 * 1024 - 1), 1);
        assert_int_equal(fsync(fd), 0);
        close(fd);
        w = open_ok(f->dir, &st);
        assert_int_equal(st.n_entries, 10);
        assert_true(st.torn.cut);
        assert_true(st.torn.dropped > 4 * 1024 * 1024 - 8192);
        kv_wal_state_done(&st);
        kv_wal_free(w);
        free(p);
        free(names[0]);
        free(names);
}

/* Sync batch numbers at the end of their range: the last usable one opens, and the writer
 * refuses to go past it instead of writing a number recovery would refuse. */
static void sync_numbers_do_not_wrap(void **state) {
        Fixture *f = *state;
        KvWalEntry e = { .term = 1 };
        size_t last_sync = 0;
        KvWalState st;
        KvWal *w;
        Built b;

        build_wal(f, &b);
        for (size_t k = 0; k < b.n; k++)
                if (test_record_type(b.img, b.offs[k]) == 6)
                        last_sync = b.offs[k];
        for (int i = 0; i < 8; i++)
                b.img[last_sync + 9 + (size_t) i] = (uint8_t) ((UINT64_MAX - 1) >> (8 * i));
        test_resign(b.img, b.size);
        assert_int_equal(test_write_file_bytes(b.path, b.img, b.size), 0);
        w = open_ok(f->dir, &st);
        e.index = kv_wal_last_index(w) + 1;
        assert_int_equal(kv_wal_append(w, &e, 1, NULL), -EOVERFLOW);
        assert_int_equal(kv_wal_mark_snapshot(w, 1, 1), -EOVERFLOW);
        assert_int_equal(kv_wal_buffered(w), 0);
        kv_wal_state_done(&st);
        kv_wal_free(w);
        built_done(&b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
TEST_MAIN(T(torn_tail_truncated_at_every_offset),
          T(torn_tail_zero_filled_at_every_offset),
          T(torn_sectors_in_any_order),
          T(flipped_byte_anywhere_before_the_last_batch_is_refused),
          T(missing_segments_are_refused),
          T(shortened_closed_segment_is_refused),
          T(unknown_version_is_refused),
          T(foreign_segment_is_refused),
          T(stray_files),
          T(zeroed_sector_before_later_batches_is_refused),
          T(garbage_in_the_preallocated_tail_is_cut),
          T(checksum_valid_nonsense_is_refused),
          T(sync_numbers_do_not_wrap),
          T(data_beyond_the_preallocated_space_is_seen))
