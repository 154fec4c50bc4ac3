/* SPDX-License-Identifier: MIT */
/* Snapshot files: round trips (buffer, streaming writer, streaming reader), newest-first choice,
 * retention, and damage of every kind skipped in favour of an older valid file, never loaded. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv-snap.h"
#include "kv-wal-test.h"
#include "test-util.h"

typedef struct Fixture {
        char *tmp;
        char *dir;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));
        f->tmp = test_mkdtemp();
        assert_non_null(f->tmp);
        f->dir = test_path(f->tmp, "snap");
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

static uint8_t *make_data(uint64_t index, size_t len) {
        uint8_t *p = malloc(len ? len : 1);
        test_entry_fill(index, 77, p, len);
        return p;
}

static void save(const char *dir, uint64_t term, uint64_t index, size_t len) {
        char conf[32];
        uint8_t *d = make_data(index, len);
        int n = snprintf(conf, sizeof(conf), "voters=1,2,3 @%llu", (unsigned long long) index);
        KvWalSnapshotMeta m = { .index = index, .term = term, .conf_state = conf, .conf_state_len = (size_t) n };

        assert_int_equal(kv_snap_save(dir, &m, d, len), 0);
        free(d);
}

static void check_loaded(const KvWalSnapshotMeta *m, const void *data, size_t len, uint64_t term,
                         uint64_t index, size_t want_len) {
        char conf[32];
        uint8_t *d = make_data(index, want_len);
        int n = snprintf(conf, sizeof(conf), "voters=1,2,3 @%llu", (unsigned long long) index);

        assert_int_equal(m->index, index);
        assert_int_equal(m->term, term);
        assert_int_equal(m->conf_state_len, (size_t) n);
        assert_memory_equal(m->conf_state, conf, (size_t) n);
        assert_int_equal(len, want_len);
        if (len > 0)
                assert_memory_equal(data, d, len);
        free(d);
}

static size_t count_files(const char *dir, const char *suffix) {
        DIR *d = opendir(dir);
        size_t n = 0;

        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                if (strlen(de->d_name) > strlen(suffix) &&
                    streq(de->d_name + strlen(de->d_name) - strlen(suffix), suffix))
                        n++;
        closedir(d);
        return n;
}

static char *snap_path(const char *dir, uint64_t term, uint64_t index) {
        char name[64];
        snprintf(name, sizeof(name), "%016llx-%016llx.snap", (unsigned long long) term,
                 (unsigned long long) index);
        return test_path(dir, name);
}

static void round_trip(void **state) {
        Fixture *f = *state;
        KvWalSnapshotMeta m;
        void *data = NULL;
        size_t len = 0;

        assert_int_equal(kv_snap_load_newest(f->dir, &m, &data, &len), -ENOENT);
        save(f->dir, 3, 1000, 3 * 1024 * 1024 + 17);
        assert_int_equal(kv_snap_load_newest(f->dir, &m, &data, &len), 0);
        check_loaded(&m, data, len, 3, 1000, 3 * 1024 * 1024 + 17);
        free(data);
        assert_int_equal(kv_snap_load(f->dir, (KvSnapId) { 3, 1000 }, &m, &data, &len, NULL), 0);
        check_loaded(&m, data, len, 3, 1000, 3 * 1024 * 1024 + 17);
        free(data);
        assert_int_equal(kv_snap_load(f->dir, (KvSnapId) { 2, 1000 }, &m, &data, &len, NULL), -ENOENT);
        /* Empty data and no conf_state. */
        assert_int_equal(kv_snap_save(f->dir, &(KvWalSnapshotMeta) { .index = 1001, .term = 3 }, NULL, 0), 0);
        assert_int_equal(kv_snap_load_newest(f->dir, &m, &data, &len), 0);
        assert_int_equal(m.index, 1001);
        assert_int_equal(m.conf_state_len, 0);
        assert_int_equal(len, 0);
        free(data);
        assert_int_equal(count_files(f->dir, ".tmp"), 0);
}

static void streaming_writer_and_reader(void **state) {
        Fixture *f = *state;
        size_t len = 5 * 1024 * 1024 + 3, pos = 0;
        uint8_t *d = make_data(7, len), *back = malloc(len);
        KvWalSnapshotMeta m = { .index = 7, .term = 1, .conf_state = "c", .conf_state_len = 1 }, got;
        KvSnapWriter *w;
        KvSnapReader *r;
        uint64_t s = 1;

        assert_int_equal(kv_snap_writer_new(f->dir, &m, &w), 0);
        while (pos < len) { /* chunks of every size, as they come off a network */
                size_t n = MIN(len - pos, (size_t) (test_prng(&s) % (3 * 1024 * 1024)));
                assert_int_equal(kv_snap_writer_write(w, d + pos, n), 0);
                pos += n;
        }
        assert_int_equal(count_files(f->dir, ".snap"), 0); /* not before commit */
        assert_int_equal(kv_snap_writer_commit(w, 0), 0);
        kv_snap_writer_free(w);

        assert_int_equal(kv_snap_reader_open(f->dir, (KvSnapId) { 1, 7 }, &r, &got, NULL), 0);
        assert_int_equal(kv_snap_reader_size(r), len);
        assert_int_equal(got.conf_state_len, 1);
        assert_memory_equal(got.conf_state, "c", 1);
        for (pos = 0;;) {
                ssize_t k = kv_snap_reader_read(r, back + pos, 100000);
                assert_true(k >= 0);
                if (k == 0)
                        break;
                pos += (size_t) k;
        }
        assert_int_equal(pos, len);
        assert_memory_equal(back, d, len);
        kv_snap_reader_free(r);

        /* An abandoned writer leaves nothing behind. */
        m.index = 8;
        assert_int_equal(kv_snap_writer_new(f->dir, &m, &w), 0);
        assert_int_equal(kv_snap_writer_write(w, d, 1000), 0);
        assert_int_equal(count_files(f->dir, ".tmp"), 1);
        kv_snap_writer_free(w);
        assert_int_equal(count_files(f->dir, ".tmp"), 0);
        assert_int_equal(count_files(f->dir, ".snap"), 1);
        free(d);
        free(back);
}

static void reader_notices_a_change_after_verifying(void **state) {
        Fixture *f = *state;
        KvWalSnapshotMeta m;
        KvSnapReader *r;
        char *p = snap_path(f->dir, 1, 5);
        uint8_t buf[4096];
        ssize_t k;
        int fd;

        save(f->dir, 1, 5, 3000);
        assert_int_equal(kv_snap_reader_open(f->dir, (KvSnapId) { 1, 5 }, &r, &m, NULL), 0);
        fd = open(p, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "\xff", 1, 200), 1);
        close(fd);
        k = kv_snap_reader_read(r, buf, sizeof(buf));
        assert_int_equal(k, -EBADMSG);
        kv_snap_reader_free(r);
        free(p);
}

static void newest_is_the_highest_index(void **state) {
        Fixture *f = *state;
        KvWalSnapshotMeta m;
        KvSnapId *ids;
        void *data;
        size_t len;

        save(f->dir, 2, 100, 10);
        save(f->dir, 5, 300, 10);
        save(f->dir, 3, 200, 10);
        assert_int_equal(kv_snap_list(f->dir, &ids), 3);
        assert_int_equal(ids[0].index, 300);
        assert_int_equal(ids[1].index, 200);
        assert_int_equal(ids[2].index, 100);
        free(ids);
        assert_int_equal(kv_snap_load_newest(f->dir, &m, &data, &len), 0);
        check_loaded(&m, data, len, 5, 300, 10);
        free(data);
}

static void retention_keeps_the_newest(void **state) {
        Fixture *f = *state;
        KvSnapId *ids;
        int fd;
        char *stray;

        for (uint64_t i = 1; i <= 8; i++)
                save(f->dir, 1, i * 10, 100);
        assert_int_equal(kv_snap_list(f->dir, &ids), KV_SNAP_KEEP_DEFAULT);
        assert_int_equal(ids[0].index, 80);
        assert_int_equal(ids[KV_SNAP_KEEP_DEFAULT - 1].index, 40);
        free(ids);
        /* A temporary file from a save that crashed goes with the next purge. */
        stray = test_path(f->dir, "0000000000000001-0000000000000090.snap.AbCdEf.tmp");
        fd = open(stray, O_CREAT | O_WRONLY, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(kv_snap_purge(f->dir, 2), 3);
        assert_int_equal(kv_snap_list(f->dir, &ids), 2);
        free(ids);
        assert_int_equal(count_files(f->dir, ".tmp"), 0);
        assert_int_equal(kv_snap_purge(f->dir, 0), -EINVAL);
        free(stray);
}

typedef struct Skips {
        unsigned n;
        int last_error;
        char names[8][64];
} Skips;

static void on_skip(const char *name, int error, const char *reason, void *userdata) {
        Skips *s = userdata;
        assert_non_null(strstr(reason, name));
        if (s->n < 8)
                snprintf(s->names[s->n], 64, "%s", name);
        s->n++;
        s->last_error = error;
}

static void damage(const char *dir, uint64_t term, uint64_t index, long off, uint8_t x) {
        char *p = snap_path(dir, term, index);
        uint8_t *img;
        size_t size;

        assert_int_equal(test_read_file(p, &img, &size), 0);
        if (off < 0)
                off += (long) size;
        img[off] ^= x;
        assert_int_equal(test_write_file_bytes(p, img, size), 0);
        free(img);
        free(p);
}

static void damaged_files_are_skipped_and_reported(void **state) {
        Fixture *f = *state;
        KvWalSnapshotMeta m;
        Skips s = {};
        void *data;
        size_t len;
        char *p;

        for (uint64_t i = 1; i <= 4; i++)
                save(f->dir, 1, i, 5000);
        damage(f->dir, 1, 4, 3000, 0x10);               /* data */
        p = snap_path(f->dir, 1, 3);                     /* truncated */
        assert_int_equal(truncate(p, 4000), 0);
        free(p);
        assert_int_equal(kv_snap_load_newest_full(f->dir, on_skip, &s, &m, &data, &len), 0);
        check_loaded(&m, data, len, 1, 2, 5000);
        free(data);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.names[0], "0000000000000001-0000000000000004.snap");
        assert_string_equal(s.names[1], "0000000000000001-0000000000000003.snap");
        assert_int_equal(s.last_error, -EBADMSG);

        /* All damaged: not "none", so the caller does not start from scratch by mistake. */
        damage(f->dir, 1, 2, 10, 0x01);                  /* header */
        damage(f->dir, 1, 1, 8, 0x03);                   /* version */
        s = (Skips) {};
        assert_int_equal(kv_snap_load_newest_full(f->dir, on_skip, &s, &m, &data, &len), -EBADMSG);
        assert_int_equal(s.n, 4);
        assert_int_equal(s.last_error, -EPROTO);
}

static void renamed_file_is_refused(void **state) {
        Fixture *f = *state;
        char *a = snap_path(f->dir, 1, 10), *b = snap_path(f->dir, 1, 11);
        KvWalSnapshotMeta m;
        KvWalError e = {};
        void *data;
        size_t len;

        save(f->dir, 1, 10, 100);
        assert_int_equal(rename(a, b), 0);
        assert_int_equal(kv_snap_load(f->dir, (KvSnapId) { 1, 11 }, &m, &data, &len, &e), -EBADMSG);
        assert_non_null(strstr(e.message, "unlike the name"));
        free(a);
        free(b);
}

/* No damage to any byte gets past the loader. */
static void every_flipped_byte_is_caught(void **state) {
        Fixture *f = *state;
        char *p = snap_path(f->dir, 2, 9);
        KvWalSnapshotMeta m;
        uint8_t *img;
        size_t size;
        void *data;
        size_t len;

        save(f->dir, 2, 9, 700);
        assert_int_equal(test_read_file(p, &img, &size), 0);
        for (size_t o = 0; o < size; o++) {
                KvWalError e = {};
                int r;
                img[o] ^= (uint8_t) (1u << (o % 8));
                assert_int_equal(test_write_file_bytes(p, img, size), 0);
                img[o] ^= (uint8_t) (1u << (o % 8));
                r = kv_snap_load(f->dir, (KvSnapId) { 2, 9 }, &m, &data, &len, &e);
                if (r == 0)
                        fail_msg("flip at %zu not detected", o);
                assert_true(r == -EBADMSG || r == -EPROTO);
                assert_string_equal(e.file, "0000000000000002-0000000000000009.snap");
        }
        /* And every truncation. */
        for (size_t n = 0; n < size; n++) {
                assert_int_equal(test_write_file_bytes(p, img, n), 0);
                assert_int_equal(kv_snap_load(f->dir, (KvSnapId) { 2, 9 }, &m, &data, &len, NULL), -EBADMSG);
        }
        free(img);
        free(p);
}

static void oversized_conf_state_is_refused(void **state) {
        Fixture *f = *state;
        KvWalSnapshotMeta m = { .index = 1, .term = 1, .conf_state = "x",
                                .conf_state_len = KV_SNAP_CONF_STATE_MAX + 1 };
        KvSnapWriter *w = NULL;

        assert_int_equal(kv_snap_writer_new(f->dir, &m, &w), -E2BIG);
        assert_null(w);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
TEST_MAIN(T(round_trip),
          T(streaming_writer_and_reader),
          T(reader_notices_a_change_after_verifying),
          T(newest_is_the_highest_index),
          T(retention_keeps_the_newest),
          T(damaged_files_are_skipped_and_reported),
          T(renamed_file_is_refused),
          T(every_flipped_byte_is_caught),
          T(oversized_conf_state_is_refused))
