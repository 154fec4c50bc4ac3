/* SPDX-License-Identifier: MIT */
/* The WAL's record encoding, segment names, the log rules shared by writer and recovery, the
 * torn-write analysis helpers and the small I/O loops. Everything here is pure or a thin syscall
 * wrapper, so the fuzz target and the tests reach all of it through kv_wal_open(). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "kv-crc32c.h"
#include "kv-wal-internal.h"
#include "shared/log.h"

uint32_t wal_seed(uint64_t wal_id, uint64_t seq) {
        uint8_t b[16];

        put_le64(b, wal_id);
        put_le64(b + 8, seq);
        return kv_crc32c(0, b, sizeof(b));
}

uint32_t wal_record_crc(uint32_t seed, uint64_t offset, uint8_t type,
                        const void *p1, size_t n1, const void *p2, size_t n2) {
        uint8_t pre[13];
        uint32_t c;

        /* Binding the checksum to the segment (seed) and the record's offset makes a record that
         * was moved, spliced in from another place or another WAL fail its check, while every
         * record stays verifiable on its own: recovery can look past a damaged record. */
        put_le64(pre, offset);
        put_le32(pre + 8, (uint32_t) (n1 + n2));
        pre[12] = type;
        c = kv_crc32c(seed, pre, sizeof(pre));
        if (n1 > 0)
                c = kv_crc32c(c, p1, n1);
        if (n2 > 0)
                c = kv_crc32c(c, p2, n2);
        return c;
}

size_t wal_encode_record(uint8_t *dst, uint32_t seed, uint64_t offset, uint8_t type,
                         const void *p1, size_t n1, const void *p2, size_t n2, uint32_t *ret_crc) {
        uint32_t c = wal_record_crc(seed, offset, type, p1, n1, p2, n2);

        assert(n1 + n2 <= KV_WAL_RECORD_MAX);
        put_le32(dst, (uint32_t) (n1 + n2));
        put_le32(dst + 4, c);
        dst[8] = type;
        if (n1 > 0)
                memcpy(dst + WAL_REC_HEADER_SIZE, p1, n1);
        if (n2 > 0)
                memcpy(dst + WAL_REC_HEADER_SIZE + n1, p2, n2);
        if (ret_crc)
                *ret_crc = c;
        return WAL_REC_HEADER_SIZE + n1 + n2;
}

void wal_encode_segment_header(uint8_t dst[WAL_SEGMENT_PAYLOAD], const WalSegmentHeader *h) {
        memset(dst, 0, WAL_SEGMENT_PAYLOAD);
        memcpy(dst, WAL_MAGIC, 8);
        put_le32(dst + 8, h->version);
        /* dst + 12: flags, none defined */
        put_le64(dst + 16, h->wal_id);
        put_le64(dst + 24, h->seq);
        put_le64(dst + 32, h->first_index);
        put_le64(dst + 40, h->prev_size);
        put_le32(dst + 48, h->prev_crc);
        /* dst + 52: reserved, zero */
}

void wal_decode_segment_header(const uint8_t src[WAL_SEGMENT_PAYLOAD], WalSegmentHeader *h) {
        *h = (WalSegmentHeader) {
                .version = get_le32(src + 8),
                .wal_id = get_le64(src + 16),
                .seq = get_le64(src + 24),
                .first_index = get_le64(src + 32),
                .prev_size = get_le64(src + 40),
                .prev_crc = get_le32(src + 48),
        };
}

void wal_segment_name(char buf[WAL_NAME_LEN + 1], uint64_t seq, uint64_t first_index) {
        (void) snprintf(buf, WAL_NAME_LEN + 1, "%016" PRIx64 "-%016" PRIx64 ".wal", seq,
                        first_index);
}

static int parse_hex16(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 16; i++) {
                char c = s[i];
                unsigned d;
                if (c >= '0' && c <= '9')
                        d = (unsigned) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (unsigned) (c - 'a' + 10);
                else
                        return -EBADMSG;
                v = v << 4 | d;
        }
        *ret = v;
        return 0;
}

int wal_parse_segment_name(const char *name, uint64_t *ret_seq, uint64_t *ret_first_index) {
        uint64_t seq, first;

        if (!endswith(name, ".wal"))
                return 0;
        if (strlen(name) != WAL_NAME_LEN || name[16] != '-' || parse_hex16(name, &seq) < 0 ||
            parse_hex16(name + 17, &first) < 0)
                return -EBADMSG;
        *ret_seq = seq;
        *ret_first_index = first;
        return 1;
}

int wal_log_check_entries(const WalLog *l, const KvWalEntry *entries, size_t n) {
        if (n == 0)
                return 0;
        /* The first entry may replace any live entry (or follow the last); never one covered by
         * the snapshot, and never leave a gap. */
        if (entries[0].index <= l->snap_index || entries[0].index > l->last_index + 1)
                return -EINVAL;
        for (size_t i = 1; i < n; i++)
                if (entries[i].index != entries[i - 1].index + 1)
                        return -EINVAL;
        /* UINT64_MAX is never an index, so last_index + 1 cannot wrap. */
        if (entries[n - 1].index == UINT64_MAX)
                return -EINVAL;
        return 0;
}

int wal_log_check_snapshot(const WalLog *l, uint64_t index) {
        return index < l->snap_index || index == UINT64_MAX ? -EINVAL : 0;
}

size_t wal_data_end(const uint8_t *buf, size_t size) {
        size_t e = size;

        /* Word at a time over the aligned middle: a 64 MiB preallocated tail takes a few ms. */
        while (e > 0 && (e & 7) != 0 && buf[e - 1] == 0)
                e--;
        if ((e & 7) == 0)
                while (e >= 8) {
                        uint64_t v;
                        memcpy(&v, buf + e - 8, 8);
                        if (v != 0)
                                break;
                        e -= 8;
                }
        while (e > 0 && buf[e - 1] == 0)
                e--;
        return e;
}

bool wal_has_zero_chunk(const uint8_t *buf, size_t start, size_t end) {
        /* The part of [start, end) in each sector is a chunk; one that reads all zero is a
         * sector the crash kept from being written. */
        for (size_t s = start; s < end;) {
                size_t e = MIN(end, (s / WAL_SECTOR_SIZE + 1) * WAL_SECTOR_SIZE);
                bool zero = true;
                for (size_t i = s; i < e; i++)
                        if (buf[i] != 0) {
                                zero = false;
                                break;
                        }
                if (zero)
                        return true;
                s = e;
        }
        return false;
}

size_t wal_find_sync_record(const uint8_t *buf, size_t size, size_t after, size_t end,
                            uint32_t seed) {
        const size_t rec = WAL_REC_HEADER_SIZE + WAL_SYNC_PAYLOAD;

        /* Linear in end - after: the cheap type/length tests reject almost every offset before a
         * 21-byte checksum is computed. */
        for (size_t y = after + 1; y < end && y + rec <= size; y++) {
                if (buf[y + 8] != WAL_REC_SYNC || get_le32(buf + y) != WAL_SYNC_PAYLOAD)
                        continue;
                if (get_le32(buf + y + 4) ==
                    wal_record_crc(seed, y, WAL_REC_SYNC, buf + y + WAL_REC_HEADER_SIZE,
                                   WAL_SYNC_PAYLOAD, NULL, 0))
                        return y;
        }
        return SIZE_MAX;
}

int wal_error(KvWalError *e, int r, const char *dir, const char *file, uint64_t offset,
              const char *fmt, ...) {
        char what[512];
        KvWalError tmp;
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (!e)
                e = &tmp;
        *e = (KvWalError) { .error = -ERRNO_VALUE(r), .offset = offset };
        (void) snprintf(e->file, sizeof(e->file), "%s", file ?: "");
        if (file && offset != UINT64_MAX)
                (void) snprintf(e->message, sizeof(e->message), "%s/%s: offset %" PRIu64 ": %s",
                                dir, file, offset, what);
        else if (file)
                (void) snprintf(e->message, sizeof(e->message), "%s/%s: %s", dir, file, what);
        else
                (void) snprintf(e->message, sizeof(e->message), "%s: %s", dir, what);
        log_debug("WAL: %s", e->message);
        return -ERRNO_VALUE(r);
}

int wal_pwrite_all(int fd, const void *p, size_t n, uint64_t offset) {
        const uint8_t *b = p;

        while (n > 0) {
                ssize_t k = pwrite(fd, b, n, (off_t) offset);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                b += k;
                n -= (size_t) k;
                offset += (uint64_t) k;
        }
        return 0;
}

int wal_read_all(int fd, uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO; /* the file shrank under us */
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int wal_preallocate(int fd, uint64_t size) {
        /* Extends the file with zeros, so writes inside it do not change the size and
         * fdatasync() does not have to commit one. Filesystems without fallocate() simply grow
         * the file as records arrive; recovery copes with either. */
        if (fallocate(fd, 0, 0, (off_t) size) < 0) {
                if (errno == EOPNOTSUPP || errno == ENOSYS)
                        return 0;
                return -errno;
        }
        return 0;
}

int wal_fsync_parent(const char *dir) {
        _cleanup_free_ char *copy = strdup(dir);
        _cleanup_close_ int fd = -EBADF;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}
