/* SPDX-License-Identifier: MIT */
/* Snapshot files: a 64-byte header with its own checksum (so a damaged length is never trusted),
 * the conf_state blob, the data, and a trailer holding the data length and a CRC-32C over every
 * byte before it. Written to a unique temporary name, fsynced, renamed, directory fsynced. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv-crc32c.h"
#include "kv-snap.h"
#include "kv-wal-internal.h"
#include "shared/log.h"

#define SNAP_MAGIC         "FLOTSNAP"
#define SNAP_END_MAGIC     "FLOTSEND"
#define SNAP_VERSION       1U
#define SNAP_HEADER_SIZE   64U
#define SNAP_TRAILER_SIZE  24U
#define SNAP_NAME_LEN      38 /* "%016" PRIx64 "-%016" PRIx64 ".snap" */
#define SNAP_CHUNK         (1U * 1024 * 1024)

typedef struct SnapHeader {
        uint64_t index;
        uint64_t term;
        uint64_t conf_len;
        uint64_t data_len;      /* from the file size; the trailer must agree */
} SnapHeader;

struct KvSnapWriter {
        char *dir;
        int dir_fd;
        int fd;
        char *tmp;              /* temporary file name inside dir */
        char name[SNAP_NAME_LEN + 1];
        bool made_dir;          /* dir was created: its parent needs an fsync too */
        bool committed;
        int broken;
        uint32_t crc;           /* over every byte so far */
        uint64_t data_len;
        uint64_t written;       /* bytes in the file */
        Buf buf;
};

struct KvSnapReader {
        int fd;
        void *conf;
        uint64_t data_off;
        uint64_t data_len;
        uint64_t pos;
        uint32_t crc;           /* recomputed while reading, checked at the end */
        uint32_t expect_crc;    /* crc of header + conf + data, from the verifying pass */
};

static void snap_name(char buf[SNAP_NAME_LEN + 1], KvSnapId id) {
        (void) snprintf(buf, SNAP_NAME_LEN + 1, "%016" PRIx64 "-%016" PRIx64 ".snap", id.term, id.index);
}

static bool snap_parse_name(const char *s, KvSnapId *ret) {
        char check[SNAP_NAME_LEN + 1];
        KvSnapId id;

        if (strlen(s) != SNAP_NAME_LEN || sscanf(s, "%16" SCNx64 "-%16" SCNx64 ".snap", &id.term,
                                                 &id.index) != 2)
                return false;
        snap_name(check, id); /* the canonical spelling only: no "+1" or upper case */
        if (!streq(check, s))
                return false;
        *ret = id;
        return true;
}

static void encode_header(uint8_t h[SNAP_HEADER_SIZE], const KvWalSnapshotMeta *m) {
        memset(h, 0, SNAP_HEADER_SIZE);
        memcpy(h, SNAP_MAGIC, 8);
        put_le32(h + 8, SNAP_VERSION);
        put_le32(h + 12, SNAP_HEADER_SIZE);
        put_le64(h + 16, m->index);
        put_le64(h + 24, m->term);
        put_le64(h + 32, m->conf_state_len);
        put_le32(h + 48, kv_crc32c(0, h, 48));
}

/* ---- writing ---- */

static int writer_flush(KvSnapWriter *s) {
        int r;

        if (s->buf.len == 0)
                return 0;
        r = wal_pwrite_all(s->fd, s->buf.data, s->buf.len, s->written);
        if (r < 0)
                return r;
        s->written += s->buf.len;
        buf_clear(&s->buf);
        return 0;
}

static int writer_put(KvSnapWriter *s, const void *p, size_t n) {
        int r;

        s->crc = kv_crc32c(s->crc, p, n);
        if (s->buf.len + n > SNAP_CHUNK) {
                r = writer_flush(s);
                if (r < 0)
                        return r;
                if (n >= SNAP_CHUNK) { /* large chunks go straight to the file */
                        r = wal_pwrite_all(s->fd, p, n, s->written);
                        if (r < 0)
                                return r;
                        s->written += n;
                        return 0;
                }
        }
        return buf_append(&s->buf, p, n);
}

KvSnapWriter *kv_snap_writer_free(KvSnapWriter *s) {
        if (!s)
                return NULL;
        (void) safe_close(s->fd);
        if (s->tmp && !s->committed)
                (void) unlinkat(s->dir_fd, s->tmp, 0);
        (void) safe_close(s->dir_fd);
        buf_done(&s->buf);
        free(s->tmp);
        free(s->dir);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(KvSnapWriter *, kv_snap_writer_free)

int kv_snap_writer_new(const char *dir, const KvWalSnapshotMeta *meta, KvSnapWriter **ret) {
        _cleanup_(kv_snap_writer_freep) KvSnapWriter *s = NULL;
        _cleanup_free_ char *path = NULL;
        uint8_t h[SNAP_HEADER_SIZE];
        int fd, r;

        assert(dir && meta && ret);
        if (meta->conf_state_len > KV_SNAP_CONF_STATE_MAX || (!meta->conf_state && meta->conf_state_len))
                return wal_error(NULL, SYNTHETIC_ERRNO(E2BIG), dir, NULL, UINT64_MAX,
                                 "conf_state of %zu bytes exceeds %u", meta->conf_state_len,
                                 KV_SNAP_CONF_STATE_MAX);
        s = new0(KvSnapWriter, 1);
        if (!s)
                return -ENOMEM;
        *s = (KvSnapWriter) { .dir_fd = -EBADF, .fd = -EBADF, .buf = BUF_INIT(0) };
        s->dir = strdup(dir);
        if (!s->dir)
                return -ENOMEM;
        if (mkdir(dir, 0700) >= 0)
                s->made_dir = true;
        else if (errno != EEXIST)
                return wal_error(NULL, -errno, dir, NULL, UINT64_MAX, "cannot create: %m");
        s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dir_fd < 0)
                return wal_error(NULL, -errno, dir, NULL, UINT64_MAX, "cannot open: %m");
        snap_name(s->name, (KvSnapId) { meta->term, meta->index });
        if (asprintf(&path, "%s/%s.XXXXXX.tmp", dir, s->name) < 0)
                return -ENOMEM;
        fd = mkostemps(path, 4, O_CLOEXEC);
        if (fd < 0)
                return wal_error(NULL, -errno, dir, s->name, UINT64_MAX, "cannot create temporary file: %m");
        s->fd = fd;
        s->tmp = strdup(basename(path));
        if (!s->tmp)
                return -ENOMEM;
        encode_header(h, meta);
        r = writer_put(s, h, sizeof(h));
        if (r >= 0 && meta->conf_state_len > 0)
                r = writer_put(s, meta->conf_state, meta->conf_state_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int kv_snap_writer_write(KvSnapWriter *s, const void *data, size_t len) {
        int r;

        assert(s && !s->committed);
        assert(data || len == 0);
        if (s->broken < 0)
                return s->broken;
        if (len > KV_SNAP_DATA_MAX - s->data_len)
                return s->broken = wal_error(NULL, SYNTHETIC_ERRNO(E2BIG), s->dir, s->name,
                                             UINT64_MAX, "snapshot data exceeds %llu bytes",
                                             KV_SNAP_DATA_MAX);
        r = writer_put(s, data, len);
        if (r < 0)
                return s->broken = wal_error(NULL, r, s->dir, s->tmp, s->written, "write failed: %m");
        s->data_len += len;
        return 0;
}

int kv_snap_writer_commit(KvSnapWriter *s, unsigned keep) {
        uint8_t t[SNAP_TRAILER_SIZE] = {};
        int r;

        assert(s && !s->committed);
        if (s->broken < 0)
                return s->broken;
        put_le64(t, s->data_len);
        s->crc = kv_crc32c(s->crc, t, 8);
        put_le32(t + 8, s->crc);
        memcpy(t + 16, SNAP_END_MAGIC, 8);
        r = buf_append(&s->buf, t, sizeof(t));
        if (r >= 0)
                r = writer_flush(s);
        if (r >= 0 && fsync(s->fd) < 0)
                r = -errno;
        if (r < 0)
                return s->broken = wal_error(NULL, r, s->dir, s->tmp, UINT64_MAX, "cannot write: %m");
        s->fd = safe_close(s->fd);
        if (renameat(s->dir_fd, s->tmp, s->dir_fd, s->name) < 0)
                return s->broken = wal_error(NULL, -errno, s->dir, s->name, UINT64_MAX,
                                             "cannot rename into place: %m");
        s->committed = true;
        if (fsync(s->dir_fd) < 0)
                return s->broken = wal_error(NULL, -errno, s->dir, NULL, UINT64_MAX,
                                             "cannot sync directory: %m");
        if (s->made_dir) {
                r = wal_fsync_parent(s->dir);
                if (r < 0)
                        return s->broken = wal_error(NULL, r, s->dir, NULL, UINT64_MAX,
                                                     "cannot sync parent directory: %m");
        }
        if (keep > 0) {
                r = kv_snap_purge(s->dir, keep);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kv_snap_save(const char *dir, const KvWalSnapshotMeta *meta, const void *data, size_t len) {
        _cleanup_(kv_snap_writer_freep) KvSnapWriter *s = NULL;
        int r;

        r = kv_snap_writer_new(dir, meta, &s);
        if (r < 0)
                return r;
        r = kv_snap_writer_write(s, data, len);
        if (r < 0)
                return r;
        return kv_snap_writer_commit(s, KV_SNAP_KEEP_DEFAULT);
}

/* ---- reading ---- */

/* Opens dir/name and checks its header against the name and the file size. */
static int open_checked(const char *dir, KvSnapId id, KvWalError *e, int *ret_fd, SnapHeader *ret,
                        uint8_t h[SNAP_HEADER_SIZE]) {
        _cleanup_close_ int fd = -EBADF;
        char name[SNAP_NAME_LEN + 1];
        struct stat st;
        uint64_t size, fixed;
        uint32_t version;
        SnapHeader sh;
        int r;

        snap_name(name, id);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                int dfd = fd;
                fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                (void) safe_close(dfd);
        }
        if (fd < 0 || fstat(fd, &st) < 0)
                return wal_error(e, -errno, dir, name, UINT64_MAX, "cannot open: %m");
        if (!S_ISREG(st.st_mode))
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, UINT64_MAX, "not a regular file");
        size = (uint64_t) st.st_size;
        if (size < SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, size, "file too short");
        r = wal_read_all(fd, h, SNAP_HEADER_SIZE);
        if (r < 0)
                return wal_error(e, r, dir, name, 0, "cannot read: %m");
        if (memcmp(h, SNAP_MAGIC, 8) != 0)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, 0, "not a snapshot file");
        version = get_le32(h + 8);
        if (version != SNAP_VERSION)
                return wal_error(e, SYNTHETIC_ERRNO(EPROTO), dir, name, 8,
                                 "format version %" PRIu32 " is unknown (this build reads %u)",
                                 version, SNAP_VERSION);
        if (get_le32(h + 48) != kv_crc32c(0, h, 48) || get_le32(h + 12) != SNAP_HEADER_SIZE)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, 0, "header checksum mismatch");
        sh = (SnapHeader) { get_le64(h + 16), get_le64(h + 24), get_le64(h + 32), 0 };
        if (sh.index != id.index || sh.term != id.term)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, 16,
                                 "header says term %" PRIu64 ", index %" PRIu64 ", unlike the name",
                                 sh.term, sh.index);
        if (sh.conf_len > KV_SNAP_CONF_STATE_MAX)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, 32,
                                 "conf_state length %" PRIu64 " exceeds the limit", sh.conf_len);
        fixed = SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE + sh.conf_len;
        if (size < fixed || size - fixed > KV_SNAP_DATA_MAX || size - fixed > SIZE_MAX / 2)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, size,
                                 "file size does not fit its header");
        sh.data_len = size - fixed;
        *ret = sh;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int check_trailer(const char *dir, KvSnapId id, const SnapHeader *sh, const uint8_t *t,
                         uint32_t crc, KvWalError *e) {
        char name[SNAP_NAME_LEN + 1];
        uint64_t off = SNAP_HEADER_SIZE + sh->conf_len + sh->data_len;

        snap_name(name, id);
        if (memcmp(t + 16, SNAP_END_MAGIC, 8) != 0 || get_le64(t) != sh->data_len ||
            get_le32(t + 12) != 0)
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, off,
                                 "trailer missing or damaged (truncated file?)");
        if (get_le32(t + 8) != kv_crc32c(crc, t, 8))
                return wal_error(e, SYNTHETIC_ERRNO(EBADMSG), dir, name, off, "checksum mismatch");
        return 0;
}

int kv_snap_load(const char *dir, KvSnapId id, KvWalSnapshotMeta *ret_meta, void **ret_data,
                 size_t *ret_len, KvWalError *error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *p = NULL;
        uint8_t h[SNAP_HEADER_SIZE], t[SNAP_TRAILER_SIZE];
        char name[SNAP_NAME_LEN + 1];
        SnapHeader sh;
        uint32_t crc;
        int r;

        assert(dir && ret_meta && ret_data && ret_len);
        r = open_checked(dir, id, error, &fd, &sh, h);
        if (r < 0)
                return r;
        snap_name(name, id);
        /* One allocation: data first, conf_state after it. */
        p = malloc((size_t) (sh.data_len + sh.conf_len) + 1);
        if (!p)
                return -ENOMEM;
        r = wal_read_all(fd, p + sh.data_len, (size_t) sh.conf_len);
        if (r >= 0)
                r = wal_read_all(fd, p, (size_t) sh.data_len);
        if (r >= 0)
                r = wal_read_all(fd, t, sizeof(t));
        if (r < 0)
                return wal_error(error, r, dir, name, UINT64_MAX, "cannot read: %m");
        crc = kv_crc32c(0, h, sizeof(h));
        crc = kv_crc32c(crc, p + sh.data_len, (size_t) sh.conf_len);
        crc = kv_crc32c(crc, p, (size_t) sh.data_len);
        r = check_trailer(dir, id, &sh, t, crc, error);
        if (r < 0)
                return r;
        *ret_meta = (KvWalSnapshotMeta) {
                .index = sh.index,
                .term = sh.term,
                .conf_state = p + sh.data_len,
                .conf_state_len = (size_t) sh.conf_len,
        };
        *ret_len = (size_t) sh.data_len;
        *ret_data = TAKE_PTR(p);
        return 0;
}

KvSnapReader *kv_snap_reader_free(KvSnapReader *s) {
        if (!s)
                return NULL;
        (void) safe_close(s->fd);
        free(s->conf);
        free(s);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(KvSnapReader *, kv_snap_reader_free)

int kv_snap_reader_open(const char *dir, KvSnapId id, KvSnapReader **ret, KvWalSnapshotMeta *ret_meta,
                        KvWalError *error) {
        _cleanup_(kv_snap_reader_freep) KvSnapReader *s = NULL;
        _cleanup_free_ uint8_t *chunk = NULL;
        uint8_t h[SNAP_HEADER_SIZE], t[SNAP_TRAILER_SIZE];
        char name[SNAP_NAME_LEN + 1];
        SnapHeader sh;
        uint32_t crc;
        int r;

        assert(dir && ret && ret_meta);
        s = new0(KvSnapReader, 1);
        chunk = malloc(SNAP_CHUNK);
        if (!s || !chunk)
                return -ENOMEM;
        s->fd = -EBADF;
        r = open_checked(dir, id, error, &s->fd, &sh, h);
        if (r < 0)
                return r;
        snap_name(name, id);
        s->conf = malloc((size_t) sh.conf_len + 1);
        if (!s->conf)
                return -ENOMEM;
        r = wal_read_all(s->fd, s->conf, (size_t) sh.conf_len);
        crc = kv_crc32c(kv_crc32c(0, h, sizeof(h)), s->conf, (size_t) sh.conf_len);
        s->crc = crc;
        /* The verifying pass: nothing is handed out before the whole file checks out. */
        for (uint64_t left = sh.data_len; r >= 0 && left > 0;) {
                size_t n = (size_t) MIN(left, (uint64_t) SNAP_CHUNK);
                r = wal_read_all(s->fd, chunk, n);
                crc = kv_crc32c(crc, chunk, n);
                left -= n;
        }
        if (r >= 0)
                r = wal_read_all(s->fd, t, sizeof(t));
        if (r < 0)
                return wal_error(error, r, dir, name, UINT64_MAX, "cannot read: %m");
        r = check_trailer(dir, id, &sh, t, crc, error);
        if (r < 0)
                return r;
        s->data_off = SNAP_HEADER_SIZE + sh.conf_len;
        s->data_len = sh.data_len;
        s->expect_crc = crc;
        *ret_meta = (KvWalSnapshotMeta) {
                .index = sh.index,
                .term = sh.term,
                .conf_state = s->conf,
                .conf_state_len = (size_t) sh.conf_len,
        };
        *ret = TAKE_PTR(s);
        return 0;
}

ssize_t kv_snap_reader_read(KvSnapReader *s, void *buf, size_t size) {
        size_t n;
        ssize_t k;

        assert(s);
        n = (size_t) MIN((uint64_t) MIN(size, (size_t) SSIZE_MAX), s->data_len - s->pos);
        if (n == 0)
                return 0;
        do
                k = pread(s->fd, buf, n, (off_t) (s->data_off + s->pos));
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return -errno;
        if (k == 0)
                return -EBADMSG; /* truncated after it was verified */
        s->crc = kv_crc32c(s->crc, buf, (size_t) k);
        s->pos += (uint64_t) k;
        if (s->pos == s->data_len && s->crc != s->expect_crc)
                return -EBADMSG; /* changed after it was verified */
        return k;
}

uint64_t kv_snap_reader_size(const KvSnapReader *s) {
        return s->data_len;
}

/* ---- listing, choosing, retention ---- */

static int cmp_id_newest_first(const void *a, const void *b) {
        const KvSnapId *x = a, *y = b;

        if (x->index != y->index)
                return x->index > y->index ? -1 : 1;
        if (x->term != y->term)
                return x->term > y->term ? -1 : 1;
        return 0;
}

int kv_snap_list(const char *dir, KvSnapId **ret) {
        _cleanup_free_ KvSnapId *ids = NULL;
        size_t n = 0, alloc = 0;
        DIR *d;
        int r = 0;

        assert(dir && ret);
        d = opendir(dir);
        if (!d)
                return -errno;
        for (struct dirent *de; (errno = 0, de = readdir(d));) {
                KvSnapId id;
                if (!snap_parse_name(de->d_name, &id))
                        continue;
                if (n >= KV_SNAP_FILES_MAX) {
                        r = -E2BIG;
                        break;
                }
                if (n == alloc) {
                        KvSnapId *p = reallocarray(ids, MAX(alloc * 2, (size_t) 8), sizeof(*p));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        ids = p;
                        alloc = MAX(alloc * 2, (size_t) 8);
                }
                ids[n++] = id;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        (void) closedir(d);
        if (r < 0)
                return r;
        if (n > 0)
                qsort(ids, n, sizeof(*ids), cmp_id_newest_first);
        *ret = TAKE_PTR(ids);
        return (int) n;
}

/* What a damaged file looks like to kv_snap_load(): skip it rather than fail. */
static bool is_damage(int r) {
        return r == -EBADMSG || r == -EPROTO || r == -EIO;
}

int kv_snap_load_newest_full(const char *dir, KvSnapSkipFn on_skip, void *userdata,
                             KvWalSnapshotMeta *ret_meta, void **ret_data, size_t *ret_len) {
        _cleanup_free_ KvSnapId *ids = NULL;
        int n, r;

        n = kv_snap_list(dir, &ids);
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++) {
                KvWalError e = {};
                r = kv_snap_load(dir, ids[i], ret_meta, ret_data, ret_len, &e);
                if (r >= 0)
                        return 0;
                if (!is_damage(r))
                        return r;
                if (on_skip)
                        on_skip(e.file, r, e.message, userdata);
        }
        return n > 0 ? -EBADMSG : -ENOENT;
}

int kv_snap_load_newest(const char *dir, KvWalSnapshotMeta *ret_meta, void **ret_data,
                        size_t *ret_len) {
        return kv_snap_load_newest_full(dir, NULL, NULL, ret_meta, ret_data, ret_len);
}

int kv_snap_purge(const char *dir, unsigned keep) {
        _cleanup_free_ KvSnapId *ids = NULL;
        _cleanup_close_ int dfd = -EBADF;
        int n, r = 0, deleted = 0;
        DIR *d;

        if (keep < 1)
                return -EINVAL;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return wal_error(NULL, -errno, dir, NULL, UINT64_MAX, "cannot open: %m");
        n = kv_snap_list(dir, &ids);
        if (n < 0)
                return wal_error(NULL, n, dir, NULL, UINT64_MAX, "cannot list: %m");
        for (int i = (int) keep; i < n; i++) {
                char name[SNAP_NAME_LEN + 1];
                snap_name(name, ids[i]);
                if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
                        r = wal_error(NULL, -errno, dir, name, UINT64_MAX, "cannot delete: %m");
                        break;
                }
                deleted++;
        }
        /* Temporary files of saves that crashed. */
        d = fdopendir(openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        for (struct dirent *de; d && (de = readdir(d));)
                if (strstr(de->d_name, ".snap.") && endswith(de->d_name, ".tmp"))
                        (void) unlinkat(dfd, de->d_name, 0);
        if (d)
                (void) closedir(d);
        if (fsync(dfd) < 0 && r >= 0)
                r = wal_error(NULL, -errno, dir, NULL, UINT64_MAX, "cannot sync directory: %m");
        return r < 0 ? r : deleted;
}
