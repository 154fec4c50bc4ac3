/* SPDX-License-Identifier: MIT */
/* WAL recovery: reads every segment in order, checks each record and the links between
 * segments, replays entries with the overwrite and snapshot rules, and decides whether damage at
 * the end of the last segment is a torn write (cut it off) or corruption (refuse). Everything
 * read is bounded; a hostile directory gets -EBADMSG, never a crash or silent data loss. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv-wal-internal.h"
#include "shared/log.h"

typedef struct RecEntry {
        uint64_t index;
        uint64_t term;
        uint8_t type;
        size_t off;             /* data offset in the arena (it may move while growing) */
        size_t len;
} RecEntry;

typedef struct Recovery {
        KvWal *w;
        KvWalError *err;
        size_t max_entries;
        RecEntry *entries;      /* live ones are [head, n), consecutive indexes */
        size_t head, n, alloc;
        Buf arena;
        bool have_meta;
        uint64_t last_sync_no;
        const char *name;       /* segment being read */
        uint64_t prev_size;     /* of the segment read before */
        uint32_t prev_crc;
        KvWalTornTail torn;
} Recovery;

#define CORRUPT(R, off, ...) \
        wal_error((R)->err, SYNTHETIC_ERRNO(EBADMSG), (R)->w->dir, (R)->name, (off), __VA_ARGS__)

static const char *type_name(uint8_t t) {
        switch (t) {
        case WAL_REC_SEGMENT: return "segment header";
        case WAL_REC_METADATA: return "metadata";
        case WAL_REC_HARD_STATE: return "hard state";
        case WAL_REC_SNAPSHOT: return "snapshot marker";
        case WAL_REC_ENTRY: return "entry";
        case WAL_REC_SYNC: return "sync";
        default: return "unknown";
        }
}

/* Checks the record at off. Returns 0 and sets *ret_len, or a static reason why it is bad. */
static const char *check_record(const uint8_t *buf, size_t size, size_t off, uint32_t seed,
                                uint32_t *ret_len) {
        uint32_t len;
        static const uint8_t zero[WAL_REC_HEADER_SIZE];

        if (size - off < WAL_REC_HEADER_SIZE)
                return "record header runs past the end of the file";
        len = get_le32(buf + off);
        if (len > KV_WAL_RECORD_MAX)
                return "record length exceeds the limit";
        if (size - off - WAL_REC_HEADER_SIZE < len)
                return "record runs past the end of the file";
        if (get_le32(buf + off + 4) != wal_record_crc(seed, off, buf[off + 8],
                                                         buf + off + WAL_REC_HEADER_SIZE, len,
                                                         NULL, 0))
                return memcmp(buf + off, zero, sizeof(zero)) == 0
                               ? "zeroes where a record header should be"
                               : "record checksum mismatch";
        *ret_len = len;
        return NULL;
}

static int push_entry(Recovery *R, uint64_t off, const uint8_t *p, size_t len) {
        uint64_t index = get_le64(p), term = get_le64(p + 8);
        WalLog *l = &R->w->log;
        int r;

        if (index <= l->snap_index)
                return CORRUPT(R, off, "entry %" PRIu64 " is at or below snapshot marker %" PRIu64,
                               index, l->snap_index);
        if (index == UINT64_MAX)
                return CORRUPT(R, off, "entry index %" PRIu64 " is out of range", index);
        if (index > l->last_index + 1)
                return CORRUPT(R, off, "entry %" PRIu64 " leaves a gap after entry %" PRIu64,
                               index, l->last_index);
        /* The overwrite rule: drop the live entries at index and after. */
        while (R->n > R->head && R->entries[R->n - 1].index >= index)
                R->n--;
        if (R->n - R->head >= R->max_entries)
                return wal_error(R->err, SYNTHETIC_ERRNO(E2BIG), R->w->dir, R->name, off,
                                 "more than %zu entries to recover", R->max_entries);
        if (R->n == R->alloc) {
                size_t a = MAX(R->alloc * 2, (size_t) 1024);
                RecEntry *e;
                /* Reclaim the dropped head before growing. */
                if (R->head > 0) {
                        memmove(R->entries, R->entries + R->head, (R->n - R->head) * sizeof(RecEntry));
                        R->n -= R->head;
                        R->head = 0;
                }
                if (R->n == R->alloc) {
                        e = reallocarray(R->entries, a, sizeof(RecEntry));
                        if (!e)
                                return -ENOMEM;
                        R->entries = e;
                        R->alloc = a;
                }
        }
        r = buf_append(&R->arena, p + WAL_ENTRY_PREFIX, len - WAL_ENTRY_PREFIX);
        if (r < 0)
                return r;
        R->entries[R->n++] = (RecEntry) {
                .index = index,
                .term = term,
                .type = p[16],
                .off = R->arena.len - (len - WAL_ENTRY_PREFIX),
                .len = len - WAL_ENTRY_PREFIX,
        };
        l->last_index = index;
        return 0;
}

static int apply_snapshot(Recovery *R, uint64_t off, const uint8_t *p) {
        uint64_t index = get_le64(p), term = get_le64(p + 8);
        WalLog *l = &R->w->log;

        if (wal_log_check_snapshot(l, index) < 0)
                return CORRUPT(R, off, "snapshot marker %" PRIu64 " goes back from %" PRIu64
                               " or is out of range", index, l->snap_index);
        l->snap_index = index;
        l->snap_term = term;
        while (R->head < R->n && R->entries[R->head].index <= index)
                R->head++;
        if (l->last_index < index)
                l->last_index = index;
        return 0;
}

static int apply_metadata(Recovery *R, uint64_t off, const uint8_t *p, uint32_t len) {
        KvWal *w = R->w;

        if (len > KV_WAL_METADATA_MAX)
                return CORRUPT(R, off, "metadata of %" PRIu32 " bytes exceeds the limit", len);
        if (!R->have_meta) {
                w->metadata = malloc(MAX(len, 1U));
                if (!w->metadata)
                        return -ENOMEM;
                memcpy(w->metadata, p, len);
                w->metadata_len = len;
                R->have_meta = true;
        } else if (len != w->metadata_len || memcmp(p, w->metadata, len) != 0)
                return CORRUPT(R, off, "metadata differs from the first segment's");
        return 0;
}

/* Applies one valid record. header says whether it is in the segment's header records, and
 * which type is expected there. */
static int apply_record(Recovery *R, WalSegment *seg, uint64_t off, uint8_t type,
                        const uint8_t *p, uint32_t len, uint8_t expect) {
        WalLog *l = &R->w->log;

        if (expect != 0 && type != expect)
                return CORRUPT(R, off, "%s record where the %s record belongs", type_name(type),
                               type_name(expect));
        switch (type) {
        case WAL_REC_METADATA:
                if (expect == 0)
                        break;
                return apply_metadata(R, off, p, len);
        case WAL_REC_HARD_STATE:
                if (len != WAL_HARD_STATE_PAYLOAD)
                        break;
                l->hs = (KvWalHardState) { get_le64(p), get_le64(p + 8), get_le64(p + 16) };
                return 0;
        case WAL_REC_SNAPSHOT:
                if (len != WAL_SNAPSHOT_PAYLOAD)
                        break;
                return apply_snapshot(R, off, p);
        case WAL_REC_ENTRY:
                if (len < WAL_ENTRY_PREFIX)
                        break;
                seg->max_index = MAX(seg->max_index, get_le64(p));
                return push_entry(R, off, p, len);
        case WAL_REC_SYNC:
                if (len != WAL_SYNC_PAYLOAD)
                        break;
                /* UINT64_MAX would make the writer's next batch number wrap. */
                if (get_le64(p) <= R->last_sync_no || get_le64(p) == UINT64_MAX)
                        return CORRUPT(R, off, "sync batch %" PRIu64 " does not follow batch %" PRIu64,
                                       get_le64(p), R->last_sync_no);
                R->last_sync_no = get_le64(p);
                l->sync_no = R->last_sync_no;
                return 0;
        case WAL_REC_SEGMENT:
                break;
        default:
                return wal_error(R->err, SYNTHETIC_ERRNO(EPROTO), R->w->dir, R->name, off,
                                 "record type %u is unknown to this version", type);
        }
        return CORRUPT(R, off, "unexpected %s record of %" PRIu32 " bytes", type_name(type), len);
}

static int check_segment_header(Recovery *R, const WalSegment *seg, const uint8_t *buf,
                                size_t size, bool first, uint32_t *ret_seed) {
        KvWal *w = R->w;
        WalSegmentHeader h;
        uint32_t seed, len = 0;

        if (size < WAL_REC_HEADER_SIZE + WAL_SEGMENT_PAYLOAD || buf[8] != WAL_REC_SEGMENT ||
            get_le32(buf) != WAL_SEGMENT_PAYLOAD ||
            memcmp(buf + WAL_REC_HEADER_SIZE, WAL_MAGIC, 8) != 0)
                return CORRUPT(R, 0, "not a WAL segment (no segment header)");
        wal_decode_segment_header(buf + WAL_REC_HEADER_SIZE, &h);
        if (h.version != WAL_VERSION)
                return wal_error(R->err, SYNTHETIC_ERRNO(EPROTO), w->dir, R->name, 0,
                                 "format version %" PRIu32 " is unknown (this build reads %u)",
                                 h.version, WAL_VERSION);
        seed = wal_seed(h.wal_id, h.seq);
        if (check_record(buf, size, 0, seed, &len))
                return CORRUPT(R, 0, "segment header checksum mismatch");
        if (h.seq != seg->seq || h.first_index != seg->first_index || h.first_index == 0 ||
            h.first_index == UINT64_MAX)
                return CORRUPT(R, 0, "header says sequence %" PRIu64 ", first index %" PRIu64
                               ", unlike the file name", h.seq, h.first_index);
        if (first)
                w->wal_id = h.wal_id;
        else if (h.wal_id != w->wal_id)
                return CORRUPT(R, 0, "belongs to another WAL (id %016" PRIx64 ", not %016" PRIx64 ")",
                               h.wal_id, w->wal_id);
        else if (h.prev_size != R->prev_size || h.prev_crc != R->prev_crc)
                return CORRUPT(R, 0, "does not continue the previous segment (which has %" PRIu64
                               " bytes, the header expects %" PRIu64 ")", R->prev_size, h.prev_size);
        else if (h.first_index != w->log.last_index + 1)
                return CORRUPT(R, 0, "starts at index %" PRIu64 " but the log so far ends at %" PRIu64,
                               h.first_index, w->log.last_index);
        *ret_seed = seed;
        return 0;
}

/* The first damaged record of the last segment is at x. Returns 0 with R->torn filled if it is a
 * torn write, 1 if everything from x on is zero (a clean end), or -EBADMSG. */
static int classify_tail(Recovery *R, const uint8_t *buf, size_t size, size_t x, uint32_t seed,
                         const char *why) {
        size_t e = wal_data_end(buf, size), y, end;
        const char *torn = NULL;

        if (x >= e)
                return 1;
        if (size - x >= WAL_REC_HEADER_SIZE && get_le32(buf + x) > KV_WAL_RECORD_MAX)
                return CORRUPT(R, x, "record length %" PRIu32 " exceeds the limit; a torn write "
                               "cannot produce that", get_le32(buf + x));
        /* A sync record after x starts a batch that was written only after the batch holding x
         * had been fdatasync()ed: x is damage to acknowledged data, not a torn write. */
        y = wal_find_sync_record(buf, size, x, e, seed);
        if (y != SIZE_MAX)
                return CORRUPT(R, x, "%s, and a later acknowledged write follows at offset %zu",
                               why, y);
        end = size - x < WAL_REC_HEADER_SIZE ? SIZE_MAX
                                             : x + WAL_REC_HEADER_SIZE + get_le32(buf + x);
        if (end > size)
                torn = "the last record is incomplete";
        else if (end > e)
                torn = "the last record ends in unwritten (zero) bytes";
        else if (wal_has_zero_chunk(buf, x, end))
                torn = "the last record has an unwritten (zero-filled) sector";
        else
                return CORRUPT(R, x, "%s, and it does not look like a torn write", why);
        R->torn = (KvWalTornTail) { .cut = true, .offset = x, .dropped = e - x };
        (void) snprintf(R->torn.file, sizeof(R->torn.file), "%s", R->name);
        (void) snprintf(R->torn.reason, sizeof(R->torn.reason), "%s: %s", why, torn);
        return 0;
}

/* Reads one segment image. Sets *ret_end to where its valid records end. */
static int read_segment(Recovery *R, WalSegment *seg, const uint8_t *buf, size_t size,
                        bool first, bool last, size_t *ret_end, uint32_t *ret_last_crc,
                        uint64_t *ret_body_start) {
        static const uint8_t header_types[] = { WAL_REC_METADATA, WAL_REC_HARD_STATE,
                                                WAL_REC_SNAPSHOT };
        uint32_t seed = 0, len = 0, crc;
        size_t off;
        int r;

        r = check_segment_header(R, seg, buf, size, first, &seed);
        if (r < 0)
                return r;
        crc = get_le32(buf + 4);
        off = WAL_REC_HEADER_SIZE + WAL_SEGMENT_PAYLOAD;
        /* Header records are written and synced before the segment gets its name: never torn. */
        for (size_t i = 0; i < ELEMENTSOF(header_types); i++) {
                const char *why = check_record(buf, size, off, seed, &len);
                if (why)
                        return CORRUPT(R, off, "%s in the segment's header records", why);
                r = apply_record(R, seg, off, buf[off + 8], buf + off + WAL_REC_HEADER_SIZE, len,
                                 header_types[i]);
                if (r < 0)
                        return r;
                crc = get_le32(buf + off + 4);
                off += WAL_REC_HEADER_SIZE + len;
        }
        if (first) /* Entries before this segment were released; it says where the log stood. */
                R->w->log.last_index = MAX(R->w->log.last_index, seg->first_index - 1);
        *ret_body_start = off;
        while (off < size) {
                const char *why = check_record(buf, size, off, seed, &len);
                if (why) {
                        if (!last)
                                return CORRUPT(R, off, "%s", why);
                        r = classify_tail(R, buf, size, off, seed, why);
                        if (r < 0)
                                return r;
                        break;
                }
                r = apply_record(R, seg, off, buf[off + 8], buf + off + WAL_REC_HEADER_SIZE, len, 0);
                if (r < 0)
                        return r;
                crc = get_le32(buf + off + 4);
                off += WAL_REC_HEADER_SIZE + len;
        }
        *ret_end = off;
        *ret_last_crc = crc;
        return 0;
}

static int cmp_segment(const void *a, const void *b) {
        const WalSegment *x = a, *y = b;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the segments and refuses a gap or a duplicate in their sequence numbers. */
static int check_sequence(Recovery *R, WalSegment *segs, size_t n) {
        qsort(segs, n, sizeof(*segs), cmp_segment);
        for (size_t i = 1; i < n; i++)
                if (segs[i].seq != segs[i - 1].seq + 1) {
                        char name[WAL_NAME_LEN + 1];
                        wal_segment_name(name, segs[i].seq, segs[i].first_index);
                        return wal_error(R->err, SYNTHETIC_ERRNO(EBADMSG), R->w->dir, name,
                                         UINT64_MAX, segs[i].seq == segs[i - 1].seq
                                                             ? "two segments have this sequence number"
                                                             : "the segment before it is missing");
                }
        return 0;
}

/* Lists the segments, sorted by sequence number, and checks that none is missing. */
static int list_segments(Recovery *R, bool *ret_have_tmp) {
        KvWal *w = R->w;
        _cleanup_free_ WalSegment *segs = NULL;
        size_t n = 0, alloc = 0;
        bool have_tmp = false;
        DIR *d;
        int fd, r = 0;

        fd = openat(w->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return wal_error(R->err, -errno, w->dir, NULL, UINT64_MAX, "cannot list: %m");
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                (void) safe_close(fd);
                return wal_error(R->err, r, w->dir, NULL, UINT64_MAX, "cannot list: %m");
        }
        for (struct dirent *de; (errno = 0, de = readdir(d));) {
                uint64_t seq, first;
                if (endswith(de->d_name, ".wal.tmp")) {
                        have_tmp = true; /* a cut that crashed before its rename; never acknowledged */
                        continue;
                }
                r = wal_parse_segment_name(de->d_name, &seq, &first);
                if (r < 0) {
                        R->name = NULL;
                        r = wal_error(R->err, r, w->dir, NULL, UINT64_MAX,
                                      "unexpected file %s among the segments", de->d_name);
                        break;
                }
                if (r == 0)
                        continue;
                if (n >= KV_WAL_SEGMENTS_MAX) {
                        r = wal_error(R->err, SYNTHETIC_ERRNO(EBADMSG), w->dir, NULL, UINT64_MAX,
                                      "more than %u segments", KV_WAL_SEGMENTS_MAX);
                        break;
                }
                if (n == alloc) {
                        WalSegment *s = reallocarray(segs, MAX(alloc * 2, (size_t) 16), sizeof(*s));
                        if (!s) {
                                r = -ENOMEM;
                                break;
                        }
                        segs = s;
                        alloc = MAX(alloc * 2, (size_t) 16);
                }
                segs[n++] = (WalSegment) { .seq = seq, .first_index = first };
                r = 0;
        }
        if (r == 0 && errno != 0)
                r = wal_error(R->err, -errno, w->dir, NULL, UINT64_MAX, "cannot list: %m");
        (void) closedir(d);
        if (r < 0)
                return r;
        if (n == 0)
                return wal_error(R->err, SYNTHETIC_ERRNO(ENOENT), w->dir, NULL, UINT64_MAX,
                                 "no WAL segments");
        r = check_sequence(R, segs, n);
        if (r < 0)
                return r;
        w->segments = TAKE_PTR(segs);
        w->n_segments = n;
        *ret_have_tmp = have_tmp;
        return 0;
}

/* Where the last data region of the file ends: beyond it are holes (or unwritten extents), which
 * read as zeros by definition, so there is no need to read the 64 MiB of a fresh preallocation.
 * Without SEEK_DATA support the whole file counts as data. */
static uint64_t data_extent_end(int fd, uint64_t size) {
        uint64_t end = 0;

        for (off_t pos = 0; (uint64_t) pos < size;) {
                off_t d = lseek(fd, pos, SEEK_DATA), h;
                if (d < 0)
                        return errno == ENXIO ? end : size;
                h = lseek(fd, d, SEEK_HOLE);
                if (h < 0)
                        return size;
                end = (uint64_t) h;
                pos = h;
        }
        return MIN(end, size);
}

/* Reads a segment into memory. A closed segment must be valid to its last byte, so it is read
 * whole; of the last one only the part up to its last data region. */
static int load_segment(Recovery *R, bool last, int *ret_fd, uint8_t **ret_buf, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t size;
        int r;

        fd = openat(R->w->dir_fd, R->name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) < 0)
                return wal_error(R->err, -errno, R->w->dir, R->name, UINT64_MAX, "cannot open: %m");
        if (!S_ISREG(st.st_mode))
                return CORRUPT(R, UINT64_MAX, "not a regular file");
        if ((uint64_t) st.st_size > WAL_SEGMENT_FILE_MAX)
                return CORRUPT(R, UINT64_MAX, "larger than any segment (%" PRIu64 " bytes)",
                               (uint64_t) st.st_size);
        size = last ? (size_t) data_extent_end(fd, (uint64_t) st.st_size) : (size_t) st.st_size;
        buf = malloc(MAX(size, (size_t) 1));
        if (!buf)
                return -ENOMEM;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return wal_error(R->err, -errno, R->w->dir, R->name, UINT64_MAX, "cannot seek: %m");
        r = wal_read_all(fd, buf, size);
        if (r < 0)
                return wal_error(R->err, r, R->w->dir, R->name, UINT64_MAX, "cannot read: %m");
        *ret_fd = TAKE_FD(fd);
        *ret_buf = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* Hands the recovered log to the caller: entries with their data in one allocation. The arena
 * itself is handed over when at most half of it is data of dropped entries; else the live data
 * is compacted into a new one. */
static int build_state(Recovery *R, KvWalState *s) {
        KvWal *w = R->w;
        size_t n = R->n - R->head, live = 0, pos = 0;
        _cleanup_free_ KvWalEntry *entries = NULL;
        _cleanup_free_ uint8_t *arena = NULL;
        _cleanup_free_ void *meta = NULL;
        bool compact;

        for (size_t i = R->head; i < R->n; i++)
                live += R->entries[i].len;
        compact = live < R->arena.len / 2;
        entries = new0(KvWalEntry, MAX(n, (size_t) 1));
        meta = malloc(MAX(w->metadata_len, (size_t) 1));
        if (!entries || !meta)
                return -ENOMEM;
        if (compact) {
                arena = malloc(MAX(live, (size_t) 1));
                if (!arena)
                        return -ENOMEM;
        } else {
                /* Give back the reservation beyond the data (a shrinking realloc; buf_steal()
                 * wants room for its terminating NUL). */
                char *p = realloc(R->arena.data, R->arena.len + 1);
                if (p) {
                        R->arena.data = p;
                        R->arena.alloc = R->arena.len + 1;
                }
                arena = (uint8_t *) buf_steal(&R->arena);
                if (!arena)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const RecEntry *e = &R->entries[R->head + i];
                size_t off = compact ? pos : e->off;
                if (compact && e->len > 0)
                        memcpy(arena + pos, R->arena.data + e->off, e->len);
                entries[i] = (KvWalEntry) {
                        .index = e->index,
                        .term = e->term,
                        .type = e->type,
                        .data = arena + off,
                        .len = e->len,
                };
                pos += e->len;
        }
        memcpy(meta, w->metadata, w->metadata_len);
        *s = (KvWalState) {
                .metadata = TAKE_PTR(meta),
                .metadata_len = w->metadata_len,
                .hard_state = w->log.hs,
                .snapshot_index = w->log.snap_index,
                .snapshot_term = w->log.snap_term,
                .entries = TAKE_PTR(entries),
                .n_entries = n,
                .torn = R->torn,
                .first_seq = w->segments[0].seq,
                .last_seq = w->segments[w->n_segments - 1].seq,
                .arena = TAKE_PTR(arena),
        };
        return 0;
}

/* Reserves room for all entry data up front (the segments' sizes bound it), so the arena is
 * not copied over and over as it grows. Only address space until written. */
static int reserve_arena(Recovery *R) {
        KvWal *w = R->w;
        uint64_t total = 0;

        for (size_t i = 0; i < w->n_segments; i++) {
                char name[WAL_NAME_LEN + 1];
                struct stat st;
                wal_segment_name(name, w->segments[i].seq, w->segments[i].first_index);
                if (fstatat(w->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return 0; /* load_segment() reports it */
                total += (uint64_t) MIN((uint64_t) st.st_size, WAL_SEGMENT_FILE_MAX);
        }
        if (total > SIZE_MAX / 2)
                return 0;
        (void) buf_reserve(&R->arena, (size_t) total); /* on failure, grow as needed */
        return 0;
}

static int recover_segments(Recovery *R, int *ret_fd, size_t *ret_end, uint32_t *ret_crc,
                            uint64_t *ret_body_start) {
        KvWal *w = R->w;
        char name[WAL_NAME_LEN + 1];
        int r;

        for (size_t i = 0; i < w->n_segments; i++) {
                bool last = i + 1 == w->n_segments;
                _cleanup_close_ int fd = -EBADF;
                _cleanup_free_ uint8_t *buf = NULL;
                size_t size = 0, end = 0;
                uint32_t crc = 0;
                uint64_t body = 0;

                wal_segment_name(name, w->segments[i].seq, w->segments[i].first_index);
                R->name = name;
                r = load_segment(R, last, &fd, &buf, &size);
                if (r < 0)
                        return r;
                r = read_segment(R, &w->segments[i], buf, size, i == 0, last, &end, &crc, &body);
                if (r < 0)
                        return r;
                R->prev_size = size;
                R->prev_crc = crc;
                if (last) {
                        *ret_fd = TAKE_FD(fd);
                        *ret_end = end;
                        *ret_crc = crc;
                        *ret_body_start = body;
                }
        }
        /* The live entries must be exactly snapshot + 1 .. last: anything else means segments
         * were lost that release_to() did not delete. */
        if (w->log.last_index != w->log.snap_index + (R->n - R->head)) {
                wal_segment_name(name, w->segments[0].seq, w->segments[0].first_index);
                return wal_error(R->err, SYNTHETIC_ERRNO(EBADMSG), w->dir, name, UINT64_MAX,
                                 "entries after snapshot marker %" PRIu64 " are missing: the log "
                                 "has %zu entries up to %" PRIu64, w->log.snap_index,
                                 R->n - R->head, w->log.last_index);
        }
        return 0;
}

int wal_recover(KvWal *w, const KvWalOptions *opts, KvWalState *ret_state) {
        Recovery R = {
                .w = w,
                .err = opts ? opts->error : NULL,
                .max_entries = opts && opts->max_entries ? opts->max_entries
                                                         : KV_WAL_MAX_ENTRIES_DEFAULT,
                .arena = BUF_INIT(0),
        };
        _cleanup_close_ int fd = -EBADF;
        uint64_t body = 0;
        uint32_t crc = 0;
        size_t end = 0;
        bool have_tmp = false;
        int r;

        r = list_segments(&R, &have_tmp);
        if (r < 0)
                goto finish;
        (void) reserve_arena(&R);
        r = recover_segments(&R, &fd, &end, &crc, &body);
        if (r < 0)
                goto finish;
        if (R.torn.cut) {
                /* Make the cut durable before anything is written after it, so the dropped bytes
                 * can never reappear behind new records. */
                if (ftruncate(fd, (off_t) end) < 0 || fsync(fd) < 0) {
                        r = wal_error(R.err, -errno, w->dir, R.torn.file, end, "cannot cut torn tail: %m");
                        goto finish;
                }
                log_debug("WAL: %s/%s: cut torn tail at offset %zu (%" PRIu64 " bytes): %s",
                          w->dir, R.torn.file, end, R.torn.dropped, R.torn.reason);
        }
        if (have_tmp) {
                /* Segment cuts that crashed before their rename: never part of the log. */
                DIR *d = fdopendir(openat(w->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
                for (struct dirent *de; d && (de = readdir(d));)
                        if (endswith(de->d_name, ".wal.tmp"))
                                (void) unlinkat(w->dir_fd, de->d_name, 0);
                if (d)
                        (void) closedir(d);
                (void) fsync(w->dir_fd);
        }
        if (ret_state) {
                r = build_state(&R, ret_state);
                if (r < 0)
                        goto finish;
        }
        w->fd = TAKE_FD(fd);
        w->offset = end;
        w->cur = (WalCursor) {
                .seq = w->segments[w->n_segments - 1].seq,
                .offset = end,
                .seed = wal_seed(w->wal_id, w->segments[w->n_segments - 1].seq),
                .last_crc = crc,
                .body_start = body,
                .max_index = w->segments[w->n_segments - 1].max_index,
        };
        r = 0;
finish:
        free(R.entries);
        buf_done(&R.arena);
        return r;
}
