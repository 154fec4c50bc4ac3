/* SPDX-License-Identifier: MIT */
/* Errors this machine cannot produce for real (ENOSPC, EIO, short writes, no fallocate), injected
 * with -Wl,--wrap mocks of pwrite, pwritev, fdatasync, fsync and fallocate. Also counts the
 * syscalls of one kv_wal_sync(): group commit means one write and one fdatasync per batch. */
#include <sys/uio.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv-snap.h"
#include "kv-wal.h"
#include "kv-wal-test.h"
#include "test-util.h"

#define MAXLEN 300

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev(int fd, const struct iovec *iov, int n, off_t off);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int n, off_t off);
int __real_fdatasync(int fd);
int __real_fsync(int fd);
int __real_fallocate(int fd, int mode, off_t off, off_t len);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __wrap_fdatasync(int fd);
int __wrap_fsync(int fd);
int __wrap_fallocate(int fd, int mode, off_t off, off_t len);

/* A fault fires on the call after `after` more calls succeeded (after < 0: never). */
static struct {
        int pwrite_errno, pwrite_after;
        bool short_writes;      /* every pwrite writes at most half (rounded up) */
        int fdatasync_errno, fdatasync_after;
        int fsync_errno, fsync_after;
        int fallocate_errno, fallocate_after;
        unsigned pwrites, fdatasyncs, fsyncs, fallocates;
        size_t zeros;           /* bytes of zeros the last pwritev() carried after the data */
} fault;

static bool fire(int err, int *after) {
        if (err == 0 || *after < 0)
                return false;
        return (*after)-- == 0;
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off) {
        fault.pwrites++;
        if (fire(fault.pwrite_errno, &fault.pwrite_after)) {
                errno = fault.pwrite_errno;
                return -1;
        }
        if (fault.short_writes && n > 1)
                n = (n + 1) / 2;
        return __real_pwrite(fd, buf, n, off);
}

/* The WAL's main write: data plus, now and then, zeros ahead of it. Counted and faulted as one
 * write; a short write keeps half of the data. */
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int n, off_t off) {
        fault.pwrites++;
        fault.zeros = n > 1 ? iov[1].iov_len : 0;
        if (fire(fault.pwrite_errno, &fault.pwrite_after)) {
                errno = fault.pwrite_errno;
                return -1;
        }
        if (fault.short_writes && n > 0 && iov[0].iov_len > 1)
                return __real_pwrite(fd, iov[0].iov_base, (iov[0].iov_len + 1) / 2, off);
        return __real_pwritev(fd, iov, n, off);
}

int __wrap_fdatasync(int fd) {
        fault.fdatasyncs++;
        if (fire(fault.fdatasync_errno, &fault.fdatasync_after)) {
                errno = fault.fdatasync_errno;
                return -1;
        }
        return __real_fdatasync(fd);
}

int __wrap_fsync(int fd) {
        fault.fsyncs++;
        if (fire(fault.fsync_errno, &fault.fsync_after)) {
                errno = fault.fsync_errno;
                return -1;
        }
        return __real_fsync(fd);
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len) {
        fault.fallocates++;
        if (fire(fault.fallocate_errno, &fault.fallocate_after)) {
                errno = fault.fallocate_errno;
                return -1;
        }
        return __real_fallocate(fd, mode, off, len);
}

typedef struct Fixture {
        char *tmp;
        char *dir;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));
        fault = (typeof(fault)) { .pwrite_after = -1, .fdatasync_after = -1, .fsync_after = -1,
                                  .fallocate_after = -1 };
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

static KvWal *open_ok(const char *dir, uint64_t seg, KvWalState *st) {
        KvWalError e = {};
        KvWalOptions o = { .segment_size = seg, .error = &e };
        KvWal *w = NULL;

        if (kv_wal_open(dir, &o, &w, st) < 0)
                fail_msg("kv_wal_open: %s", e.message);
        return w;
}

static int append(KvWal *w, uint64_t first, size_t n) {
        TestBatch b;
        int r;

        test_batch_make(&b, first, n, 1, MAXLEN);
        r = kv_wal_append(w, b.entries, n, &(KvWalHardState) { .term = 1, .commit = first });
        test_batch_done(&b);
        return r;
}

static void check_entries(const KvWalState *st, size_t n) {
        assert_int_equal(st->n_entries, n);
        for (size_t i = 0; i < n; i++)
                test_check_entry(&st->entries[i], i + 1, 1, MAXLEN);
}

static size_t count_suffix(const char *dir, const char *suffix) {
        DIR *d = opendir(dir);
        size_t n = 0;

        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                if (endswith(de->d_name, suffix))
                        n++;
        closedir(d);
        return n;
}

static void one_write_and_one_fdatasync_per_sync(void **state) {
        Fixture *f = *state;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        for (uint64_t i = 1; i <= 640; i += 64)
                assert_int_equal(append(w, i, 64), 0);
        fault.pwrites = fault.fdatasyncs = fault.fsyncs = 0;
        assert_int_equal(kv_wal_sync(w), 0);
        assert_int_equal(fault.pwrites, 1);
        assert_int_equal(fault.fdatasyncs, 1);
        assert_int_equal(fault.fsyncs, 0);
        kv_wal_free(w);
}

/* Every segment gets zeros written ahead of its records, a new one as soon as it is cut. */
static void zeros_are_written_ahead_in_every_segment(void **state) {
        Fixture *f = *state;
        uint64_t seg = 4 * 1024 * 1024, i = 1;
        size_t segments;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, seg, NULL);
        assert_int_equal(append(w, i, 1), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        assert_int_equal(fault.zeros, 1024 * 1024);
        i++;
        /* Fill the first segment, then sync once into the second. */
        while (kv_wal_segments(w) == 1) {
                assert_int_equal(append(w, i, 64), 0);
                assert_int_equal(kv_wal_sync(w), 0);
                i += 64;
        }
        segments = kv_wal_segments(w);
        assert_int_equal(append(w, i, 1), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        assert_int_equal(kv_wal_segments(w), segments);
        assert_int_equal(fault.zeros, 1024 * 1024);
        kv_wal_free(w);

        /* Not with fallocate_only. */
        {
                KvWalOptions o = { .segment_size = seg, .fallocate_only = true };
                assert_int_equal(kv_wal_open(f->dir, &o, &w, NULL), 0);
                assert_int_equal(append(w, i + 1, 1), 0);
                assert_int_equal(kv_wal_sync(w), 0);
                assert_int_equal(fault.zeros, 0);
                kv_wal_free(w);
        }
}

static void short_writes_are_completed(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 4096, NULL);
        fault.short_writes = true;
        assert_int_equal(append(w, 1, 100), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        fault.short_writes = false;
        kv_wal_free(w);
        w = open_ok(f->dir, 4096, &st);
        check_entries(&st, 100);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void enospc_on_write_breaks_the_wal_until_reopened(void **state) {
        Fixture *f = *state;
        KvWalState st;
        const KvWalError *e;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        assert_int_equal(append(w, 1, 10), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        /* Half of the batch reaches the file, then the disk is full. */
        fault.short_writes = true;
        fault.pwrite_errno = ENOSPC;
        fault.pwrite_after = 1;
        assert_int_equal(append(w, 11, 20), 0);
        assert_int_equal(kv_wal_sync(w), -ENOSPC);
        e = kv_wal_last_error(w);
        assert_int_equal(e->error, -ENOSPC);
        assert_string_equal(e->file, "0000000000000000-0000000000000001.wal");
        assert_true(e->offset > 0 && e->offset != UINT64_MAX);
        assert_non_null(strstr(e->message, "write failed"));
        fault = (typeof(fault)) { .pwrite_after = -1, .fdatasync_after = -1, .fsync_after = -1,
                                  .fallocate_after = -1 };
        /* Unusable from now on, even though the disk has room again. */
        assert_int_equal(append(w, 31, 1), -ENOSPC);
        assert_int_equal(kv_wal_mark_snapshot(w, 5, 1), -ENOSPC);
        assert_int_equal(kv_wal_sync(w), -ENOSPC);
        assert_int_equal(kv_wal_release_to(w, 1), -ENOSPC);
        kv_wal_free(w);
        /* Recovery keeps what was synced, and of the half-written batch the records that made
         * it whole; the broken one after them is cut. */
        w = open_ok(f->dir, 0, &st);
        assert_true(st.n_entries >= 10 && st.n_entries < 30);
        check_entries(&st, st.n_entries);
        assert_true(st.torn.cut);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void eio_on_fdatasync_breaks_the_wal(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 0, NULL);
        assert_int_equal(append(w, 1, 10), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        fault.fdatasync_errno = EIO;
        fault.fdatasync_after = 0;
        assert_int_equal(append(w, 11, 10), 0);
        assert_int_equal(kv_wal_sync(w), -EIO);
        assert_non_null(strstr(kv_wal_last_error(w)->message, "fdatasync failed"));
        /* Never retried: after a failed fsync the kernel may have dropped the pages. */
        fault.fdatasync_errno = 0;
        fault.fdatasyncs = 0;
        assert_int_equal(kv_wal_sync(w), -EIO);
        assert_int_equal(fault.fdatasyncs, 0);
        kv_wal_free(w);
        /* The unacknowledged batch may or may not be there; the acknowledged one is. */
        w = open_ok(f->dir, 0, &st);
        assert_true(st.n_entries == 10 || st.n_entries == 20);
        check_entries(&st, st.n_entries);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void enospc_when_cutting_a_segment(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 4096, NULL);
        assert_int_equal(append(w, 1, 5), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        /* The next batch needs a new segment, which cannot be preallocated. */
        fault.fallocate_errno = ENOSPC;
        fault.fallocate_after = 0;
        assert_int_equal(append(w, 6, 60), 0);
        assert_int_equal(kv_wal_sync(w), -ENOSPC);
        assert_non_null(strstr(kv_wal_last_error(w)->message, "cannot create segment"));
        fault.fallocate_errno = 0;
        kv_wal_free(w);
        assert_int_equal(count_suffix(f->dir, ".tmp"), 0);
        w = open_ok(f->dir, 4096, &st);
        /* Entries that fitted the old segment were written and synced before the cut. */
        assert_true(st.n_entries >= 5 && st.n_entries < 65);
        check_entries(&st, st.n_entries);
        assert_int_equal(kv_wal_segments(w), 1);
        kv_wal_state_done(&st);
        /* And it carries on. */
        assert_int_equal(append(w, st.n_entries + 1, 60), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        assert_true(kv_wal_segments(w) > 1);
        kv_wal_free(w);
}

static void eio_syncing_the_directory_after_a_cut(void **state) {
        Fixture *f = *state;
        KvWalState st;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        w = open_ok(f->dir, 4096, NULL);
        /* fsync #1 closes the old segment, #2 syncs the directory after the rename. */
        fault.fsync_errno = EIO;
        fault.fsync_after = 1;
        assert_int_equal(append(w, 1, 60), 0);
        assert_int_equal(kv_wal_sync(w), -EIO);
        fault.fsync_errno = 0;
        kv_wal_free(w);
        w = open_ok(f->dir, 4096, &st);
        check_entries(&st, st.n_entries);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void works_without_fallocate(void **state) {
        Fixture *f = *state;
        KvWalState st;
        struct stat sb;
        char **names;
        KvWal *w;

        assert_int_equal(kv_wal_create(f->dir, NULL, 0), 0);
        fault.fallocate_errno = EOPNOTSUPP;
        fault.fallocate_after = 0;
        w = open_ok(f->dir, 0, NULL);
        assert_int_equal(append(w, 1, 10), 0);
        assert_int_equal(kv_wal_sync(w), 0);
        kv_wal_free(w);
        assert_int_equal(test_list_segments(f->dir, &names), 1);
        {
                char *p = test_path(f->dir, names[0]);
                size_t offs[64], end, size;
                uint8_t *img;

                /* Without fallocate the file grows by writing: records, and the zeros the WAL
                 * writes ahead of them. */
                assert_int_equal(stat(p, &sb), 0);
                assert_true(sb.st_size < 2 * 1024 * 1024);
                assert_int_equal(test_read_file(p, &img, &size), 0);
                (void) test_walk_records(img, size, offs, 64, &end);
                free(img);
                /* A torn write without preallocation: a short file. Here the hard state record,
                 * the last one, lost its end. */
                assert_int_equal(truncate(p, (off_t) end - 3), 0);
                free(p);
        }
        free(names[0]);
        free(names);
        w = open_ok(f->dir, 0, &st);
        assert_true(st.torn.cut);
        check_entries(&st, 10);
        assert_int_equal(st.hard_state.commit, 0);
        kv_wal_state_done(&st);
        kv_wal_free(w);
}

static void snapshot_write_errors_leave_nothing_behind(void **state) {
        Fixture *f = *state;
        KvWalSnapshotMeta m = { .index = 5, .term = 1 };
        uint8_t data[10000] = { 1 };
        char *snaps = test_path(f->tmp, "snap");

        fault.fsync_errno = EIO;
        fault.fsync_after = 0;
        assert_int_equal(kv_snap_save(snaps, &m, data, sizeof(data)), -EIO);
        fault.fsync_errno = 0;
        assert_int_equal(count_suffix(snaps, ".tmp"), 0);
        assert_int_equal(count_suffix(snaps, ".snap"), 0);

        fault.pwrite_errno = ENOSPC;
        fault.pwrite_after = 0;
        assert_int_equal(kv_snap_save(snaps, &m, data, sizeof(data)), -ENOSPC);
        fault.pwrite_errno = 0;
        assert_int_equal(count_suffix(snaps, ".tmp"), 0);
        assert_int_equal(count_suffix(snaps, ".snap"), 0);
        assert_int_equal(kv_snap_save(snaps, &m, data, sizeof(data)), 0);
        assert_int_equal(count_suffix(snaps, ".snap"), 1);
        free(snaps);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
TEST_MAIN(T(one_write_and_one_fdatasync_per_sync),
          T(zeros_are_written_ahead_in_every_segment),
          T(short_writes_are_completed),
          T(enospc_on_write_breaks_the_wal_until_reopened),
          T(eio_on_fdatasync_breaks_the_wal),
          T(enospc_when_cutting_a_segment),
          T(eio_syncing_the_directory_after_a_cut),
          T(works_without_fallocate),
          T(snapshot_write_errors_leave_nothing_behind))
