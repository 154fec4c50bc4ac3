/* SPDX-License-Identifier: MIT */
/* WAL recovery on hostile bytes. After a mode byte, the input is cut into up to 8 files named as
 * segments ([u8 seq][u64 first index][u32 length][bytes], repeated; a seq with bit 7 set makes a
 * stale ".wal.tmp" file instead), the directory is opened, and whatever opens must keep working:
 * the recovered log is consistent, and an entry appended after it survives a reopen.
 *
 * A fuzzer cannot forge CRC-32C, so with bit 0 of the mode byte set the harness re-signs every
 * record it can walk in each file (as the writer would have) before opening: that makes records
 * with valid checksums but hostile contents (gaps, markers going back, foreign ids, odd sizes)
 * reachable, while production code keeps verifying every checksum. */
#include "fuzz.h"
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv-wal.h"
#include "kv-wal-internal.h"
#include "shared/macro.h"

/* Directories go to tmpfs when there is one: much faster, and nothing here needs a disk. */
static const char *tmp_root(void) {
        const char *t = getenv("TMPDIR");

        if (t)
                return t;
        return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

static uint64_t get_le(const uint8_t *p, size_t n) {
        uint64_t v = 0;

        for (size_t i = n; i > 0; i--)
                v = v << 8 | p[i - 1];
        return v;
}

/* Recomputes the checksum of every record that parses, with the seed the segment header names. */
static void resign(uint8_t *p, size_t size) {
        uint32_t seed;

        if (size < WAL_REC_HEADER_SIZE + WAL_SEGMENT_PAYLOAD || p[8] != WAL_REC_SEGMENT)
                return;
        seed = wal_seed(get_le64(p + WAL_REC_HEADER_SIZE + 16), get_le64(p + WAL_REC_HEADER_SIZE + 24));
        for (size_t off = 0; size - off >= WAL_REC_HEADER_SIZE;) {
                uint32_t len = get_le32(p + off);
                if (len > size - off - WAL_REC_HEADER_SIZE || (len == 0 && p[off + 8] == 0))
                        break;
                put_le32(p + off + 4, wal_record_crc(seed, off, p[off + 8],
                                                        p + off + WAL_REC_HEADER_SIZE, len, NULL, 0));
                off += WAL_REC_HEADER_SIZE + len;
        }
}

static void write_files(int dfd, const uint8_t *data, size_t size, bool fix) {
        size_t off = 0;

        for (unsigned n = 0; n < 8 && size - off >= 13; n++) {
                uint8_t seq = data[off];
                uint64_t first = get_le(data + off + 1, 8);
                size_t len = MIN((size_t) get_le(data + off + 9, 4), size - off - 13);
                char name[64];
                int fd;

                off += 13;
                (void) snprintf(name, sizeof(name), "%016" PRIx64 "-%016" PRIx64 ".wal%s",
                                (uint64_t) (seq & 0x7f), first, seq & 0x80 ? ".tmp" : "");
                fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0)
                        abort();
                if (len > 0) {
                        uint8_t *copy = malloc(len);
                        if (!copy)
                                abort();
                        memcpy(copy, data + off, len);
                        if (fix)
                                resign(copy, len);
                        if (write(fd, copy, len) != (ssize_t) len)
                                abort();
                        free(copy);
                }
                close(fd);
                off += len;
        }
}

static void remove_dir(const char *dir) {
        DIR *d = opendir(dir);

        for (struct dirent *de; d && (de = readdir(d));)
                if (de->d_name[0] != '.')
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        if (d)
                closedir(d);
        (void) rmdir(dir);
}

/* The recovered log must be consecutive after the snapshot, as the API promises. */
static void check_state(const KvWal *w, const KvWalState *st) {
        for (size_t i = 0; i < st->n_entries; i++)
                if (st->entries[i].index != st->snapshot_index + 1 + i)
                        abort();
        if (kv_wal_last_index(w) != st->snapshot_index + st->n_entries)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KvWalOptions o = { .segment_size = 4096, .max_entries = 1U << 16 };
        KvWalEntry e = { .term = 1, .type = 7, .data = "fuzz", .len = 4 };
        KvWalState st, again;
        char dir[256];
        KvWal *w = NULL;
        int dfd, r;

        if (size < 1)
                return 0;
        (void) snprintf(dir, sizeof(dir), "%s/fuzz-kv-wal-XXXXXX", tmp_root());
        if (!mkdtemp(dir))
                abort();
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                abort();
        write_files(dfd, data + 1, size - 1, data[0] & 1);
        close(dfd);

        if (kv_wal_open(dir, &o, &w, &st) == 0) {
                check_state(w, &st);
                e.index = kv_wal_last_index(w) + 1;
                if (e.index == UINT64_MAX) {
                        /* The end of the index space: refused, and nothing more to check. */
                        if (kv_wal_append(w, &e, 1, NULL) != -EINVAL)
                                abort();
                        kv_wal_state_done(&st);
                        kv_wal_free(w);
                        remove_dir(dir);
                        return 0;
                }
                r = kv_wal_append(w, &e, 1, &(KvWalHardState) { .term = 9, .commit = e.index });
                if (r == -EOVERFLOW || r == -E2BIG) { /* forged numbers at their end, or a log
                                                        * at the entry limit: refused, fine */
                        kv_wal_state_done(&st);
                        kv_wal_free(w);
                        remove_dir(dir);
                        return 0;
                }
                if (r < 0 || kv_wal_sync(w) < 0)
                        abort();
                kv_wal_free(w);
                w = NULL;
                if (kv_wal_open(dir, &o, &w, &again) < 0)
                        abort();
                check_state(w, &again);
                if (again.n_entries != st.n_entries + 1 || again.torn.cut ||
                    again.metadata_len != st.metadata_len ||
                    memcmp(again.metadata, st.metadata, st.metadata_len) != 0 ||
                    again.hard_state.commit != e.index ||
                    memcmp(again.entries[st.n_entries].data, "fuzz", 4) != 0)
                        abort();
                kv_wal_state_done(&again);
                kv_wal_state_done(&st);
                kv_wal_free(w);
        }
        remove_dir(dir);
        return 0;
}
