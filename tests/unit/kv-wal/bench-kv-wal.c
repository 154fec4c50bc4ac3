/* SPDX-License-Identifier: MIT */
/* Measures the WAL: entries/s and syncs/s for 1, 16 and 64 entries per sync with 100-byte and
 * 1 KiB entries, the same writes done by hand (one pwrite + one fdatasync into a preallocated
 * file) as the device's ceiling, and the time kv_wal_open() takes to recover 100,000 entries.
 * Not a pass/fail test; build it without sanitizers:
 *   cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release && cmake --build build/rel --target bench-kv-wal
 *   build/rel/tests/unit/kv-wal/bench-kv-wal [seconds-per-case] [dir...] */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv-wal.h"
#include "shared/time-util.h"
#include "test-util.h"

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

typedef struct Result {
        double syncs_per_sec, entries_per_sec, mib_per_sec;
        uint64_t p50_usec, p99_usec;
        unsigned syncs;
} Result;

static void summarize(Result *r, uint64_t *lat, unsigned n, usec_t elapsed, size_t batch, size_t size) {
        qsort(lat, n, sizeof(*lat), cmp_u64);
        *r = (Result) {
                .syncs = n,
                .syncs_per_sec = n / (elapsed / 1e6),
                .entries_per_sec = (double) n * batch / (elapsed / 1e6),
                .mib_per_sec = (double) n * batch * size / (elapsed / 1e6) / (1024.0 * 1024.0),
                .p50_usec = lat[n / 2],
                .p99_usec = lat[(size_t) n * 99 / 100],
        };
}

#define MAX_SYNCS 2000000U

static int bench_wal(const char *root, bool fallocate_only, size_t size, size_t batch, double seconds,
                     Result *res) {
        KvWalOptions o = { .fallocate_only = fallocate_only };
        char *tmp, dir[4096];
        uint8_t *data = malloc(size * batch);
        KvWalEntry e[64];
        uint64_t *lat = malloc(MAX_SYNCS * sizeof(uint64_t));
        uint64_t index = 1;
        usec_t start, deadline;
        unsigned n = 0;
        KvWal *w;
        int r;

        setenv("TMPDIR", root, 1);
        tmp = test_mkdtemp();
        if (!tmp || !data || !lat)
                return -ENOMEM;
        snprintf(dir, sizeof(dir), "%s/wal", tmp);
        memset(data, 0x5a, size * batch);
        r = kv_wal_create(dir, "bench", 5);
        if (r < 0)
                return r;
        r = kv_wal_open(dir, &o, &w, NULL);
        if (r < 0)
                return r;
        start = now_usec(CLOCK_MONOTONIC);
        deadline = start + (usec_t) (seconds * 1e6);
        for (usec_t t = start; (t < deadline || n < 100) && n < MAX_SYNCS;) {
                for (size_t i = 0; i < batch; i++)
                        e[i] = (KvWalEntry) { .index = index + i, .term = 1, .data = data + i * size, .len = size };
                r = kv_wal_append(w, e, batch, &(KvWalHardState) { .term = 1, .vote = 1, .commit = index });
                if (r >= 0)
                        r = kv_wal_sync(w);
                if (r < 0)
                        return r;
                index += batch;
                usec_t t2 = now_usec(CLOCK_MONOTONIC);
                lat[n++] = t2 - t;
                t = t2;
        }
        summarize(res, lat, n, now_usec(CLOCK_MONOTONIC) - start, batch, size);
        kv_wal_free(w);
        test_rm_rf(tmp);
        free(tmp);
        free(data);
        free(lat);
        return 0;
}

/* The floor: the same bytes (records add 9 + 17 bytes per entry, 9 + 8 + 9 + 24 per batch)
 * written by hand with one pwrite and one fdatasync per batch. RAW_FALLOCATE writes into fresh
 * fallocate()d space as the WAL does (a new file every 64 MiB, ext4 converts unwritten extents
 * on each sync); RAW_OVERWRITE into a file whose 64 MiB were written with zeros and synced
 * before (no extent changes, what a zero-filling preallocation would give). */
enum { RAW_FALLOCATE, RAW_OVERWRITE };

static int raw_file(const char *path, int mode) {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd < 0)
                return -errno;
        if (mode == RAW_FALLOCATE) {
                if (fallocate(fd, 0, 0, (off_t) KV_WAL_SEGMENT_SIZE_DEFAULT) < 0)
                        return -errno;
        } else {
                static uint8_t zero[1 << 20];
                for (uint64_t o = 0; o < KV_WAL_SEGMENT_SIZE_DEFAULT; o += sizeof(zero))
                        if (pwrite(fd, zero, sizeof(zero), (off_t) o) != (ssize_t) sizeof(zero))
                                return -errno;
        }
        if (fsync(fd) < 0)
                return -errno;
        return fd;
}

static int bench_raw(const char *root, int mode, size_t size, size_t batch, double seconds, Result *res) {
        size_t bytes = batch * (size + 26) + 50;
        uint8_t *data = calloc(1, bytes);
        uint64_t *lat = malloc(MAX_SYNCS * sizeof(uint64_t));
        char path[4096];
        usec_t start, deadline;
        uint64_t off = 0;
        unsigned n = 0;
        int fd;

        snprintf(path, sizeof(path), "%s/bench-raw-%d", root, getpid());
        if (!data || !lat)
                return -ENOMEM;
        fd = raw_file(path, mode);
        if (fd < 0)
                return fd;
        memset(data, 0x5a, bytes);
        start = now_usec(CLOCK_MONOTONIC);
        deadline = start + (usec_t) (seconds * 1e6);
        for (usec_t t = start; (t < deadline || n < 100) && n < MAX_SYNCS;) {
                if (off + bytes > KV_WAL_SEGMENT_SIZE_DEFAULT) {
                        off = 0;
                        if (mode == RAW_FALLOCATE) { /* fresh space, like the WAL's next segment */
                                close(fd);
                                fd = raw_file(path, mode);
                                if (fd < 0)
                                        return fd;
                        }
                }
                if (pwrite(fd, data, bytes, (off_t) off) != (ssize_t) bytes || fdatasync(fd) < 0)
                        return -errno;
                off += bytes;
                usec_t t2 = now_usec(CLOCK_MONOTONIC);
                lat[n++] = t2 - t;
                t = t2;
        }
        summarize(res, lat, n, now_usec(CLOCK_MONOTONIC) - start, batch, size);
        close(fd);
        unlink(path);
        free(data);
        free(lat);
        return 0;
}

static int bench_recovery(const char *root, size_t size, unsigned entries) {
        char *tmp, dir[4096];
        uint8_t *data = malloc(size);
        KvWalEntry e[64];
        usec_t best = USEC_INFINITY, total = 0;
        size_t segments = 0;
        KvWal *w;
        int r;

        setenv("TMPDIR", root, 1);
        tmp = test_mkdtemp();
        if (!tmp || !data)
                return -ENOMEM;
        snprintf(dir, sizeof(dir), "%s/wal", tmp);
        memset(data, 0x33, size);
        if ((r = kv_wal_create(dir, "bench", 5)) < 0 || (r = kv_wal_open(dir, NULL, &w, NULL)) < 0)
                return r;
        for (uint64_t i = 1; i <= entries; i += 64) {
                size_t n = MIN((uint64_t) 64, entries + 1 - i);
                for (size_t k = 0; k < n; k++)
                        e[k] = (KvWalEntry) { .index = i + k, .term = 1, .data = data, .len = size };
                if ((r = kv_wal_append(w, e, n, &(KvWalHardState) { .term = 1, .commit = i })) < 0 ||
                    (r = kv_wal_sync(w)) < 0)
                        return r;
        }
        segments = kv_wal_segments(w);
        kv_wal_free(w);
        for (int run = 0; run < 5; run++) {
                KvWalState st;
                usec_t t = now_usec(CLOCK_MONOTONIC);
                if ((r = kv_wal_open(dir, NULL, &w, &st)) < 0)
                        return r;
                t = now_usec(CLOCK_MONOTONIC) - t;
                if (st.n_entries != entries)
                        return -EBADMSG;
                kv_wal_state_done(&st);
                kv_wal_free(w);
                best = MIN(best, t);
                total += t;
        }
        printf("| %s | %zu B | %u | %zu | %.1f ms | %.1f ms |\n", root, size, entries, segments,
               best / 1000.0, total / 5 / 1000.0);
        test_rm_rf(tmp);
        free(tmp);
        free(data);
        return 0;
}

/* Disk timings on a shared VM swing a lot, and writeback from one case slows the next: every
 * case runs its three variants interleaved, REPS times, after a sync() and a pause, and the
 * median run (by syncs/s) is reported. */
#define REPS 3

static int cmp_result(const void *a, const void *b) {
        double x = ((const Result *) a)->syncs_per_sec, y = ((const Result *) b)->syncs_per_sec;
        return x < y ? -1 : x > y;
}

static int run_case(const char *dir, size_t size, size_t batch, double seconds, Result ret[4]) {
        Result r[4][REPS];
        int k;

        for (int rep = 0; rep < REPS; rep++) {
                sync();
                (void) usleep(500 * 1000);
                if ((k = bench_wal(dir, false, size, batch, seconds, &r[0][rep])) < 0 ||
                    (k = bench_wal(dir, true, size, batch, seconds, &r[3][rep])) < 0 ||
                    (k = bench_raw(dir, RAW_FALLOCATE, size, batch, seconds, &r[1][rep])) < 0 ||
                    (k = bench_raw(dir, RAW_OVERWRITE, size, batch, seconds, &r[2][rep])) < 0)
                        return k;
        }
        for (int v = 0; v < 4; v++) {
                qsort(r[v], REPS, sizeof(Result), cmp_result);
                ret[v] = r[v][REPS / 2];
        }
        return 0;
}

int main(int argc, char **argv) {
        double seconds = argc > 1 ? atof(argv[1]) : 2.0;
        const char *defaults[] = { "/tmp", "/dev/shm" };
        const char **dirs = argc > 2 ? (const char **) argv + 2 : defaults;
        int n_dirs = argc > 2 ? argc - 2 : 2;
        static const size_t sizes[] = { 100, 1024 }, batches[] = { 1, 16, 64 };

        printf("median of %d runs of %.1f s each\n\n", REPS, seconds);
        printf("| dir | entry | entries/sync | WAL syncs/s | WAL entries/s | WAL MiB/s | WAL p50/p99 sync "
               "| WAL fallocate_only: syncs/s, p50/p99 | raw, fallocated: syncs/s, p50/p99 "
               "| raw, overwrite: syncs/s, p50/p99 |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|\n");
        for (int d = 0; d < n_dirs; d++)
                for (size_t s = 0; s < ELEMENTSOF(sizes); s++)
                        for (size_t b = 0; b < ELEMENTSOF(batches); b++) {
                                Result res[4];
                                int r = run_case(dirs[d], sizes[s], batches[b], seconds, res);
                                if (r < 0) {
                                        fprintf(stderr, "bench failed in %s: %s\n", dirs[d], strerror(-r));
                                        return EXIT_FAILURE;
                                }
                                printf("| %s | %zu B | %zu | %.0f | %.0f | %.1f | %" PRIu64 "/%" PRIu64
                                       " µs | %.0f, %" PRIu64 "/%" PRIu64 " µs | %.0f, %" PRIu64 "/%" PRIu64
                                       " µs | %.0f, %" PRIu64 "/%" PRIu64 " µs |\n", dirs[d], sizes[s],
                                       batches[b], res[0].syncs_per_sec, res[0].entries_per_sec,
                                       res[0].mib_per_sec, res[0].p50_usec, res[0].p99_usec,
                                       res[3].syncs_per_sec, res[3].p50_usec, res[3].p99_usec,
                                       res[1].syncs_per_sec, res[1].p50_usec, res[1].p99_usec,
                                       res[2].syncs_per_sec, res[2].p50_usec, res[2].p99_usec);
                                fflush(stdout);
                        }
        printf("\n| dir | entry | entries | segments | kv_wal_open best | mean of 5 |\n|---|---|---|---|---|---|\n");
        for (int d = 0; d < n_dirs; d++)
                for (size_t s = 0; s < ELEMENTSOF(sizes); s++)
                        if (bench_recovery(dirs[d], sizes[s], 100000) < 0) {
                                fprintf(stderr, "recovery bench failed in %s\n", dirs[d]);
                                return EXIT_FAILURE;
                        }
        return 0;
}
