/* SPDX-License-Identifier: MIT */
/* The WAL writer: buffers records as the driver appends them, writes each batch with one
 * pwrite() and makes it durable with one fdatasync() (group commit), cuts segments at the size
 * limit, and deletes segments a snapshot made redundant. Recovery is in kv-wal-recover.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "kv-wal-internal.h"
#include "shared/log.h"

#define WAL_ERR(w, r, off, ...) \
        wal_error(&(w)->error, (r), (w)->dir, NULL, (off), __VA_ARGS__)

/* Appends one record at the cursor without checking for a cut. */
static int put_raw(KvWal *w, uint8_t type, const void *p1, size_t n1, const void *p2, size_t n2) {
        size_t size = WAL_REC_HEADER_SIZE + n1 + n2;
        int r;

        r = buf_reserve(&w->pend, size);
        if (r < 0)
                return r;
        w->pend.len += wal_encode_record((uint8_t *) w->pend.data + w->pend.len, w->cur.seed,
                                         w->cur.offset, type, p1, n1, p2, n2, &w->cur.last_crc);
        w->cur.offset += size;
        return 0;
}

/* The records every segment starts with, so that it alone is enough to recover from. */
static int put_segment_start(KvWal *w, uint64_t first_index, uint64_t prev_size,
                             uint32_t prev_crc) {
        uint8_t h[WAL_SEGMENT_PAYLOAD], hs[WAL_HARD_STATE_PAYLOAD], snap[WAL_SNAPSHOT_PAYLOAD];
        int r;

        wal_encode_segment_header(h, &(WalSegmentHeader) {
                .version = WAL_VERSION,
                .wal_id = w->wal_id,
                .seq = w->cur.seq,
                .first_index = first_index,
                .prev_size = prev_size,
                .prev_crc = prev_crc,
        });
        put_le64(hs, w->log.hs.term);
        put_le64(hs + 8, w->log.hs.vote);
        put_le64(hs + 16, w->log.hs.commit);
        put_le64(snap, w->log.snap_index);
        put_le64(snap + 8, w->log.snap_term);
        r = put_raw(w, WAL_REC_SEGMENT, h, sizeof(h), NULL, 0);
        if (r >= 0)
                r = put_raw(w, WAL_REC_METADATA, w->metadata, w->metadata_len, NULL, 0);
        if (r >= 0)
                r = put_raw(w, WAL_REC_HARD_STATE, hs, sizeof(hs), NULL, 0);
        if (r >= 0)
                r = put_raw(w, WAL_REC_SNAPSHOT, snap, sizeof(snap), NULL, 0);
        if (r < 0)
                return r;
        w->cur.body_start = w->cur.offset;
        return 0;
}

/* Plans a new segment at the current end of the buffer; kv_wal_sync() creates it. */
static int plan_cut(KvWal *w) {
        uint64_t prev_size = w->cur.offset;
        uint32_t prev_crc = w->cur.last_crc;

        /* Never write more segments than recovery reads. */
        if (w->n_segments + w->n_cuts + 1 > KV_WAL_SEGMENTS_MAX)
                return -E2BIG;
        if (w->n_cuts == w->alloc_cuts) {
                size_t a = MAX(w->alloc_cuts * 2, (size_t) 4);
                WalCut *c = reallocarray(w->cuts, a, sizeof(*c));
                if (!c)
                        return -ENOMEM;
                w->cuts = c;
                w->alloc_cuts = a;
        }
        w->cuts[w->n_cuts++] = (WalCut) {
                .pend_off = w->pend.len,
                .seq = w->cur.seq + 1,
                .first_index = w->log.last_index + 1,
                .prev_max_index = w->cur.max_index,
        };
        w->cur = (WalCursor) { .seq = w->cur.seq + 1, .seed = wal_seed(w->wal_id, w->cur.seq + 1) };
        return put_segment_start(w, w->log.last_index + 1, prev_size, prev_crc);
}

static int put(KvWal *w, uint8_t type, const void *p1, size_t n1, const void *p2, size_t n2) {
        int r;

        /* Cut before a record that would cross the limit, unless the segment holds nothing but
         * its start records (a record larger than a segment gets one of its own). */
        if (w->cur.offset > w->cur.body_start &&
            w->cur.offset + WAL_REC_HEADER_SIZE + n1 + n2 > w->segment_size) {
                r = plan_cut(w);
                if (r < 0)
                        return r;
        }
        return put_raw(w, type, p1, n1, p2, n2);
}

/* Every batch starts with a sync record. Recovery uses it as proof: damage followed by a later
 * sync record was acknowledged data, not a torn write. */
static int begin_batch(KvWal *w) {
        uint8_t no[WAL_SYNC_PAYLOAD];

        if (w->pend.len > 0)
                return 0;
        /* Recovery refuses batch number 2^64 - 1, so never write it. Only a hostile WAL gets
         * anywhere near. */
        if (w->log.sync_no >= UINT64_MAX - 1)
                return -EOVERFLOW;
        put_le64(no, w->log.sync_no + 1);
        w->log.sync_no++;
        return put(w, WAL_REC_SYNC, no, sizeof(no), NULL, 0);
}

typedef struct Saved {
        size_t pend_len;
        size_t n_cuts;
        WalCursor cur;
        WalLog log;
} Saved;

static Saved save(const KvWal *w) {
        return (Saved) { w->pend.len, w->n_cuts, w->cur, w->log };
}

static int restore(KvWal *w, const Saved *s, int r) {
        w->pend.len = s->pend_len;
        w->n_cuts = s->n_cuts;
        w->cur = s->cur;
        w->log = s->log;
        return r;
}

int kv_wal_append(KvWal *w, const KvWalEntry *entries, size_t n, const KvWalHardState *hs) {
        Saved s;
        int r;

        assert(w);
        assert(entries || n == 0);
        if (w->broken < 0)
                return w->broken;
        for (size_t i = 0; i < n; i++)
                if (entries[i].len > KV_WAL_ENTRY_DATA_MAX || (!entries[i].data && entries[i].len > 0))
                        return WAL_ERR(w, SYNTHETIC_ERRNO(E2BIG), UINT64_MAX,
                                       "entry %" PRIu64 " has %zu bytes, more than %u",
                                       entries[i].index, entries[i].len, KV_WAL_ENTRY_DATA_MAX);
        if (wal_log_check_entries(&w->log, entries, n) < 0)
                return WAL_ERR(w, SYNTHETIC_ERRNO(EINVAL), UINT64_MAX,
                               "entries %" PRIu64 "..%" PRIu64 " cannot follow log (%" PRIu64
                               ", %" PRIu64 "] or are not consecutive", entries[0].index,
                               entries[n - 1].index, w->log.snap_index, w->log.last_index);
        /* Never write a log kv_wal_open() would refuse to recover. */
        if (n > 0 && entries[n - 1].index - w->log.snap_index > w->max_entries)
                return WAL_ERR(w, SYNTHETIC_ERRNO(E2BIG), UINT64_MAX,
                               "the log would hold more than %zu entries after the snapshot "
                               "marker; make a snapshot first", w->max_entries);
        if (n == 0 && !hs)
                return 0;

        s = save(w);
        r = begin_batch(w);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                uint8_t p[WAL_ENTRY_PREFIX];
                put_le64(p, entries[i].index);
                put_le64(p + 8, entries[i].term);
                p[16] = entries[i].type;
                r = put(w, WAL_REC_ENTRY, p, sizeof(p), entries[i].data, entries[i].len);
                /* An index at or below the last one replaces it and drops the rest. */
                w->log.last_index = entries[i].index;
                w->cur.max_index = MAX(w->cur.max_index, entries[i].index);
        }
        /* After the entries: a hard state that survives a crash never refers to entries of its
         * own batch that did not. */
        if (r >= 0 && hs) {
                uint8_t p[WAL_HARD_STATE_PAYLOAD];
                put_le64(p, hs->term);
                put_le64(p + 8, hs->vote);
                put_le64(p + 16, hs->commit);
                r = put(w, WAL_REC_HARD_STATE, p, sizeof(p), NULL, 0);
                w->log.hs = *hs;
        }
        if (r < 0)
                return restore(w, &s, WAL_ERR(w, r, UINT64_MAX, "cannot buffer records: %m"));
        return 0;
}

int kv_wal_mark_snapshot(KvWal *w, uint64_t index, uint64_t term) {
        uint8_t p[WAL_SNAPSHOT_PAYLOAD];
        Saved s;
        int r;

        assert(w);
        if (w->broken < 0)
                return w->broken;
        if (wal_log_check_snapshot(&w->log, index) < 0)
                return WAL_ERR(w, SYNTHETIC_ERRNO(EINVAL), UINT64_MAX,
                               "snapshot marker %" PRIu64 " is below the previous one (%" PRIu64 ")",
                               index, w->log.snap_index);
        s = save(w);
        put_le64(p, index);
        put_le64(p + 8, term);
        r = begin_batch(w);
        if (r >= 0)
                r = put(w, WAL_REC_SNAPSHOT, p, sizeof(p), NULL, 0);
        if (r < 0)
                return restore(w, &s, WAL_ERR(w, r, UINT64_MAX, "cannot buffer records: %m"));
        w->log.snap_index = index;
        w->log.snap_term = term;
        w->log.last_index = MAX(w->log.last_index, index);
        return 0;
}

/* Writes a new segment under a temporary name and gives it its real name only once its
 * contents are durable: a segment is never seen half-written. */
static int write_new_segment(int dir_fd, const char *name, const void *data, size_t len,
                             uint64_t prealloc, int *ret_fd) {
        char tmp[WAL_NAME_LEN + 5];
        _cleanup_close_ int fd = -EBADF;
        int r;

        (void) snprintf(tmp, sizeof(tmp), "%s.tmp", name);
        fd = openat(dir_fd, tmp, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = prealloc > 0 ? wal_preallocate(fd, prealloc) : 0;
        if (r >= 0)
                r = wal_pwrite_all(fd, data, len, 0);
        if (r >= 0 && fdatasync(fd) < 0)
                r = -errno;
        if (r >= 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        if (fsync(dir_fd) < 0)
                return -errno;
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Closes the active segment at its written size, dropping its preallocated tail: a closed
 * segment is valid up to its last byte, so recovery can be strict about it. */
static int close_active(KvWal *w) {
        if (ftruncate(w->fd, (off_t) w->offset) < 0 || fsync(w->fd) < 0)
                return -errno;
        w->fd = safe_close(w->fd);
        return 0;
}

static int open_cut(KvWal *w, const WalCut *c, const uint8_t *data, size_t len) {
        char name[WAL_NAME_LEN + 1];
        WalSegment *s;
        int r;

        s = reallocarray(w->segments, w->n_segments + 1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        w->segments = s;
        wal_segment_name(name, c->seq, c->first_index);
        r = write_new_segment(w->dir_fd, name, data, len, w->segment_size, &w->fd);
        if (r < 0)
                return WAL_ERR(w, r, UINT64_MAX, "cannot create segment %s: %m", name);
        w->segments[w->n_segments++] = (WalSegment) { .seq = c->seq, .first_index = c->first_index };
        w->offset = len;
        w->zeroed_to = len; /* beyond: fallocated, not yet zero-filled */
        return 0;
}

#define WAL_ZERO_AHEAD (1U * 1024 * 1024)

/* Writes data at the active segment's end and, when the zero-filled space ahead of it runs
 * short, another WAL_ZERO_AHEAD bytes of zeros after it in the same pwritev(). Preallocated but
 * never written (unwritten) extents have to be converted, and the conversion journaled, by every
 * fdatasync() that writes into them; space written with zeros once is plain overwrite. */
static int write_with_zeros(KvWal *w, const uint8_t *p, size_t n) {
        static uint8_t zeros[WAL_ZERO_AHEAD]; /* not const: .bss, not 1 MiB of .rodata */
        uint64_t end = w->offset + n;
        struct iovec iov[2] = { { (void *) p, n }, { zeros, 0 } };
        size_t total;
        ssize_t k;

        if (!w->fallocate_only && end + WAL_ZERO_AHEAD / 4 > w->zeroed_to && end < w->segment_size)
                iov[1].iov_len = (size_t) MIN((uint64_t) WAL_ZERO_AHEAD, w->segment_size - end);
        total = n + iov[1].iov_len;
        do
                k = pwritev(w->fd, iov, 2, (off_t) w->offset);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        if ((size_t) k < n) /* short: finish the data the simple way */
                return wal_pwrite_all(w->fd, p + k, n - (size_t) k, w->offset + (uint64_t) k);
        if ((size_t) k == total)
                w->zeroed_to = MAX(w->zeroed_to, w->offset + total);
        return 0;
}

static int write_out(KvWal *w) {
        const uint8_t *p = (const uint8_t *) w->pend.data;
        size_t start = 0, stop = w->n_cuts > 0 ? w->cuts[0].pend_off : w->pend.len;
        char name[WAL_NAME_LEN + 1];
        WalSegment *active = &w->segments[w->n_segments - 1];
        int r;

        wal_segment_name(name, active->seq, active->first_index);
        if (stop > start) {
                r = write_with_zeros(w, p, stop);
                if (r < 0)
                        return wal_error(&w->error, r, w->dir, name, w->offset, "write failed: %m");
                w->offset += stop;
        }
        for (size_t i = 0; i < w->n_cuts; i++) {
                w->segments[w->n_segments - 1].max_index = w->cuts[i].prev_max_index;
                r = close_active(w);
                if (r < 0) {
                        wal_segment_name(name, w->segments[w->n_segments - 1].seq,
                                         w->segments[w->n_segments - 1].first_index);
                        return wal_error(&w->error, r, w->dir, name, w->offset,
                                         "cannot close segment: %m");
                }
                start = stop;
                stop = i + 1 < w->n_cuts ? w->cuts[i + 1].pend_off : w->pend.len;
                r = open_cut(w, &w->cuts[i], p + start, stop - start);
                if (r < 0)
                        return r;
        }
        /* A new segment was synced before its rename; only appends to an old one need this. */
        if (w->n_cuts == 0 && fdatasync(w->fd) < 0)
                return wal_error(&w->error, -errno, w->dir, name, w->offset, "fdatasync failed: %m");
        w->segments[w->n_segments - 1].max_index = w->cur.max_index;
        return 0;
}

int kv_wal_sync(KvWal *w) {
        int r;

        assert(w);
        if (w->broken < 0)
                return w->broken;
        if (w->pend.len == 0)
                return 0;
        r = write_out(w);
        if (r < 0) {
                /* What reached the disk is unknown, and after a failed fsync the kernel may
                 * have dropped the dirty pages: never retry, let recovery decide. */
                w->broken = r;
                return r;
        }
        buf_clear(&w->pend);
        w->n_cuts = 0;
        if (w->pend.alloc > 16U * 1024 * 1024)
                buf_done(&w->pend); /* do not keep a huge buffer after a large batch */
        return 0;
}

int kv_wal_release_to(KvWal *w, uint64_t index) {
        char name[WAL_NAME_LEN + 1];
        size_t k = 0;
        int r;

        assert(w);
        if (w->broken < 0)
                return w->broken;
        if (index > w->log.snap_index + 1)
                return WAL_ERR(w, SYNTHETIC_ERRNO(EINVAL), UINT64_MAX,
                               "cannot release entries before %" PRIu64 ": the snapshot marker is "
                               "at %" PRIu64, index, w->log.snap_index);
        r = kv_wal_sync(w);
        if (r < 0)
                return r;
        /* Oldest first, so that whatever a crash leaves is a contiguous run of segments. */
        while (k + 1 < w->n_segments && w->segments[k].max_index < index) {
                wal_segment_name(name, w->segments[k].seq, w->segments[k].first_index);
                if (unlinkat(w->dir_fd, name, 0) < 0 && errno != ENOENT) {
                        r = wal_error(&w->error, -errno, w->dir, name, UINT64_MAX,
                                      "cannot delete: %m");
                        break;
                }
                k++;
        }
        if (k > 0) {
                memmove(w->segments, w->segments + k, (w->n_segments - k) * sizeof(*w->segments));
                w->n_segments -= k;
                if (fsync(w->dir_fd) < 0 && r >= 0)
                        r = WAL_ERR(w, -errno, UINT64_MAX, "cannot sync directory: %m");
        }
        return r < 0 ? r : (int) MIN(k, (size_t) INT32_MAX);
}

static int lock_dir(const char *dir, KvWalError *e, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return wal_error(e, -errno, dir, NULL, UINT64_MAX, "cannot open directory: %m");
        /* flock() on the directory: released when the process dies, however it dies. */
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK
                               ? wal_error(e, SYNTHETIC_ERRNO(EBUSY), dir, NULL, UINT64_MAX,
                                           "the WAL is in use (locked by another process or "
                                           "another open KvWal)")
                               : wal_error(e, -errno, dir, NULL, UINT64_MAX, "cannot lock: %m");
        *ret_fd = TAKE_FD(fd);
        return 0;
}

KvWal *kv_wal_free(KvWal *w) {
        if (!w)
                return NULL;
        if (w->pend.len > 0)
                log_debug("WAL: %s: discarding %zu unsynced bytes", w->dir, w->pend.len);
        (void) safe_close(w->fd);
        (void) safe_close(w->dir_fd); /* releases the lock */
        buf_done(&w->pend);
        free(w->cuts);
        free(w->segments);
        free(w->metadata);
        free(w->dir);
        free(w);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(KvWal *, kv_wal_free)

void kv_wal_state_done(KvWalState *s) {
        if (!s)
                return;
        free(s->metadata);
        free(s->entries);
        free(s->arena);
        *s = (KvWalState) {};
}

static KvWal *wal_new(const char *dir) {
        KvWal *w = new0(KvWal, 1);

        if (!w)
                return NULL;
        *w = (KvWal) { .dir_fd = -EBADF, .fd = -EBADF, .pend = BUF_INIT(0) };
        w->dir = strdup(dir);
        if (!w->dir)
                return kv_wal_free(w);
        return w;
}

int kv_wal_open(const char *dir, const KvWalOptions *opts, KvWal **ret, KvWalState *ret_state) {
        _cleanup_(kv_wal_freep) KvWal *w = NULL;
        KvWalState state = {};
        KvWalError *e = opts ? opts->error : NULL;
        struct stat st;
        int r;

        assert(dir);
        assert(ret);
        w = wal_new(dir);
        if (!w)
                return -ENOMEM;
        w->segment_size = opts && opts->segment_size ? opts->segment_size
                                                     : KV_WAL_SEGMENT_SIZE_DEFAULT;
        w->max_entries = opts && opts->max_entries ? opts->max_entries : KV_WAL_MAX_ENTRIES_DEFAULT;
        w->fallocate_only = opts && opts->fallocate_only;
        if (w->segment_size < KV_WAL_SEGMENT_SIZE_MIN || w->segment_size > KV_WAL_SEGMENT_SIZE_MAX)
                return wal_error(e, SYNTHETIC_ERRNO(EINVAL), dir, NULL, UINT64_MAX,
                                 "segment size %" PRIu64 " outside [%llu, %llu]", w->segment_size,
                                 KV_WAL_SEGMENT_SIZE_MIN, KV_WAL_SEGMENT_SIZE_MAX);
        r = lock_dir(dir, e, &w->dir_fd);
        if (r < 0)
                return r;
        r = wal_recover(w, opts, ret_state ? &state : NULL);
        if (r < 0)
                return r;
        if (fstat(w->fd, &st) < 0)
                r = -errno;
        else if ((uint64_t) st.st_size < w->segment_size)
                r = wal_preallocate(w->fd, w->segment_size);
        if (r < 0) {
                kv_wal_state_done(&state);
                return wal_error(e, r, dir, NULL, UINT64_MAX, "cannot preallocate: %m");
        }
        *ret = TAKE_PTR(w);
        if (ret_state)
                *ret_state = state;
        return 0;
}

static int dir_has_wal(int dir_fd) {
        DIR *d = fdopendir(openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        int r = 0;

        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d));)
                if (endswith(de->d_name, ".wal")) {
                        r = 1;
                        break;
                }
        (void) closedir(d);
        return r;
}

int kv_wal_create(const char *dir, const void *metadata, size_t len) {
        _cleanup_(kv_wal_freep) KvWal *w = NULL;
        char name[WAL_NAME_LEN + 1];
        bool made = false;
        int r;

        assert(dir);
        if (len > KV_WAL_METADATA_MAX || (!metadata && len > 0))
                return wal_error(NULL, SYNTHETIC_ERRNO(E2BIG), dir, NULL, UINT64_MAX,
                                 "metadata of %zu bytes exceeds %u", len, KV_WAL_METADATA_MAX);
        if (mkdir(dir, 0700) >= 0)
                made = true;
        else if (errno != EEXIST)
                return wal_error(NULL, -errno, dir, NULL, UINT64_MAX, "cannot create: %m");
        w = wal_new(dir);
        if (!w)
                return -ENOMEM;
        r = lock_dir(dir, NULL, &w->dir_fd);
        if (r < 0)
                return r;
        r = dir_has_wal(w->dir_fd);
        if (r != 0)
                return r < 0 ? r : wal_error(NULL, SYNTHETIC_ERRNO(EEXIST), dir, NULL, UINT64_MAX,
                                             "already holds a WAL");
        if (getrandom(&w->wal_id, sizeof(w->wal_id), GRND_NONBLOCK) != sizeof(w->wal_id))
                w->wal_id = (uint64_t) time(NULL) << 32 ^ (uint64_t) getpid();
        w->metadata = malloc(MAX(len, (size_t) 1));
        if (!w->metadata)
                return -ENOMEM;
        if (len > 0)
                memcpy(w->metadata, metadata, len);
        w->metadata_len = len;
        w->cur = (WalCursor) { .seq = 0, .seed = wal_seed(w->wal_id, 0) };
        r = put_segment_start(w, 1, 0, 0);
        if (r < 0)
                return r;
        wal_segment_name(name, 0, 1);
        r = write_new_segment(w->dir_fd, name, w->pend.data, w->pend.len, 0, NULL);
        if (r < 0)
                return wal_error(NULL, r, dir, name, UINT64_MAX, "cannot write: %m");
        if (made) {
                r = wal_fsync_parent(dir);
                if (r < 0)
                        return wal_error(NULL, r, dir, NULL, UINT64_MAX,
                                         "cannot sync the parent directory: %m");
        }
        return 0;
}

const KvWalError *kv_wal_last_error(const KvWal *w) {
        return &w->error;
}

uint64_t kv_wal_last_index(const KvWal *w) {
        return w->log.last_index;
}

uint64_t kv_wal_snapshot_index(const KvWal *w) {
        return w->log.snap_index;
}

size_t kv_wal_buffered(const KvWal *w) {
        return w->pend.len;
}

size_t kv_wal_segments(const KvWal *w) {
        return w->n_segments;
}
