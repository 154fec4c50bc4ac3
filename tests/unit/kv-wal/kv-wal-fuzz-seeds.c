/* SPDX-License-Identifier: MIT */
/* Writes the seed corpora of the kv-wal fuzz targets: real WAL directories and snapshot files
 * made by the library, serialized in the targets' input formats. Run by hand:
 *   kv-wal-fuzz-seeds tests/fuzz/corpus/kv-wal tests/fuzz/corpus/kv-wal-snap */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv-snap.h"
#include "kv-wal.h"
#include "shared/macro.h"
#include "test-util.h"

static void die(const char *what) {
        fprintf(stderr, "kv-wal-fuzz-seeds: %s\n", what);
        exit(EXIT_FAILURE);
}

static void put_le(FILE *f, uint64_t v, int n) {
        for (int i = 0; i < n; i++)
                fputc((int) (v >> (8 * i)) & 0xff, f);
}

/* [u8 mode][u8 seq (bit 7: .tmp)][u64 first][u32 len][bytes]... for every segment file in dir. */
static void serialize(const char *dir, const char *out, uint8_t mode) {
        if (strlen(dir) > 4000)
                die("path too long");
        FILE *o = fopen(out, "we");
        DIR *d = opendir(dir);

        if (!o || !d)
                die("cannot open output or WAL directory");
        fputc(mode, o);
        for (struct dirent *de; (de = readdir(d));) {
                unsigned long long seq, first;
                char path[4500];
                uint8_t buf[65536];
                size_t n;
                FILE *f;

                if (sscanf(de->d_name, "%16llx-%16llx.wal", &seq, &first) != 2)
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                f = fopen(path, "re");
                if (!f)
                        die("cannot read a segment");
                n = fread(buf, 1, sizeof(buf), f);
                fclose(f);
                fputc((int) ((seq & 0x7f) | (endswith(de->d_name, ".tmp") ? 0x80 : 0)), o);
                put_le(o, first, 8);
                put_le(o, n, 4);
                fwrite(buf, 1, n, o);
        }
        closedir(d);
        fclose(o);
}

static KvWal *reopen(const char *dir) {
        KvWalOptions o = { .segment_size = 4096 };
        KvWal *w = NULL;

        if (kv_wal_open(dir, &o, &w, NULL) < 0)
                die("cannot open WAL");
        return w;
}

static void append(KvWal *w, uint64_t first, size_t n, uint64_t term) {
        KvWalEntry e[64];
        char data[64][40];

        for (size_t i = 0; i < n; i++) {
                int k = snprintf(data[i], sizeof(data[i]), "set /k%llu v%llu", (unsigned long long) (first + i),
                                 (unsigned long long) term);
                e[i] = (KvWalEntry) { .index = first + i, .term = term, .type = 0, .data = data[i], .len = (size_t) k };
        }
        if (kv_wal_append(w, e, n, &(KvWalHardState) { .term = term, .vote = 1, .commit = first }) < 0 ||
            kv_wal_sync(w) < 0)
                die("cannot append");
}

static void seed_wal(const char *out, const char *name, int kind) {
        char *tmp = test_mkdtemp(), dir[4200], path[4200];
        KvWal *w;

        snprintf(dir, sizeof(dir), "%s/wal", tmp);
        if (kv_wal_create(dir, "node=1 cluster=abc", 18) < 0)
                die("cannot create WAL");
        if (kind >= 1) {
                w = reopen(dir);
                append(w, 1, 5, 1);
                if (kv_wal_mark_snapshot(w, 2, 1) < 0 || kv_wal_sync(w) < 0)
                        die("cannot mark");
                if (kind >= 2) {
                        for (uint64_t i = 6; i < 120; i += 12)
                                append(w, i, 12, 1);
                        append(w, 100, 8, 2); /* overwrite */
                }
                if (kind == 3) {
                        if (kv_wal_mark_snapshot(w, 90, 1) < 0 || kv_wal_release_to(w, 91) < 0)
                                die("cannot release");
                        append(w, 108, 3, 2);
                }
                kv_wal_free(w);
        }
        /* Mode 1 has the fuzz target re-sign records, mode 0 does not. */
        snprintf(path, sizeof(path), "%s/%s", out, name);
        serialize(dir, path, 1);
        snprintf(path, sizeof(path), "%s/%s-raw", out, name);
        serialize(dir, path, 0);
        test_rm_rf(tmp);
        free(tmp);
}

static void seed_snap(const char *out, const char *name, size_t len) {
        char *tmp = test_mkdtemp(), path[4200], src[4200];
        uint8_t data[300];
        KvWalSnapshotMeta m = { .index = 42, .term = 3, .conf_state = "voters=1,2,3", .conf_state_len = 12 };
        FILE *o, *f;
        uint8_t buf[4096];
        size_t n;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (i * 7);
        if (kv_snap_save(tmp, &m, data, len) < 0)
                die("cannot save snapshot");
        snprintf(src, sizeof(src), "%s/%016x-%016x.snap", tmp, 3, 42);
        snprintf(path, sizeof(path), "%s/%s", out, name);
        o = fopen(path, "we");
        f = fopen(src, "re");
        if (!o || !f)
                die("cannot copy snapshot");
        put_le(o, 3, 8);
        put_le(o, 42, 8);
        n = fread(buf, 1, sizeof(buf), f);
        fwrite(buf, 1, n, o);
        fclose(f);
        fclose(o);
        test_rm_rf(tmp);
        free(tmp);
}

int main(int argc, char **argv) {
        if (argc != 3)
                die("usage: kv-wal-fuzz-seeds WAL-CORPUS-DIR SNAP-CORPUS-DIR");
        seed_wal(argv[1], "seed-empty", 0);
        seed_wal(argv[1], "seed-small", 1);
        seed_wal(argv[1], "seed-segments", 2);
        seed_wal(argv[1], "seed-released", 3);
        seed_snap(argv[2], "seed-small", 300);
        seed_snap(argv[2], "seed-empty-data", 0);
        return 0;
}
