/* SPDX-License-Identifier: MIT */
/* Implementation of kv-wal-test.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv-wal-internal.h"
#include "kv-wal-test.h"
#include "shared/macro.h"

uint64_t test_prng(uint64_t *s) {
        /* splitmix64: good enough, and the same everywhere */
        uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

size_t test_entry_len(uint64_t index, uint64_t term, size_t max_len) {
        uint64_t s = index * 1000003ULL ^ term * 7919ULL;
        return (size_t) (test_prng(&s) % max_len) + 1;
}

void test_entry_fill(uint64_t index, uint64_t term, uint8_t *buf, size_t len) {
        uint64_t s = index ^ (term << 40) ^ 0x5bd1e995ULL;
        for (size_t i = 0; i < len; i += 8) {
                uint64_t v = test_prng(&s);
                memcpy(buf + i, &v, MIN((size_t) 8, len - i));
        }
}

void test_batch_make(TestBatch *b, uint64_t first, size_t n, uint64_t term, size_t max_len) {
        size_t total = 0, pos = 0;

        for (size_t i = 0; i < n; i++)
                total += test_entry_len(first + i, term, max_len);
        b->entries = calloc(n ? n : 1, sizeof(KvWalEntry));
        b->data = malloc(total ? total : 1);
        assert_non_null(b->entries);
        assert_non_null(b->data);
        b->n = n;
        for (size_t i = 0; i < n; i++) {
                size_t len = test_entry_len(first + i, term, max_len);
                test_entry_fill(first + i, term, b->data + pos, len);
                b->entries[i] = (KvWalEntry) {
                        .index = first + i,
                        .term = term,
                        .type = (uint8_t) ((first + i) % 3),
                        .data = b->data + pos,
                        .len = len,
                };
                pos += len;
        }
}

void test_batch_done(TestBatch *b) {
        free(b->entries);
        free(b->data);
        *b = (TestBatch) {};
}

bool test_entry_ok(const KvWalEntry *e, uint64_t index, uint64_t term, size_t max_len) {
        size_t len = test_entry_len(index, term, max_len);
        uint8_t *want;
        bool ok;

        if (e->index != index || e->term != term || e->len != len || e->type != index % 3)
                return false;
        want = malloc(len);
        assert_non_null(want);
        test_entry_fill(index, term, want, len);
        ok = memcmp(want, e->data, len) == 0;
        free(want);
        return ok;
}

void test_check_entry(const KvWalEntry *e, uint64_t index, uint64_t term, size_t max_len) {
        assert_int_equal(e->index, index);
        assert_int_equal(e->term, term);
        assert_true(test_entry_ok(e, index, term, max_len));
}

int test_read_file(const char *path, uint8_t **ret, size_t *ret_size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        uint8_t *p;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        p = malloc(st.st_size ? (size_t) st.st_size : 1);
        if (!p)
                return -ENOMEM;
        for (size_t got = 0; got < (size_t) st.st_size;) {
                ssize_t k = read(fd, p + got, (size_t) st.st_size - got);
                if (k <= 0) {
                        free(p);
                        return k < 0 ? -errno : -EIO;
                }
                got += (size_t) k;
        }
        *ret = p;
        *ret_size = (size_t) st.st_size;
        return 0;
}

int test_write_file_bytes(const char *path, const void *p, size_t n) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        const uint8_t *b = p;

        if (fd < 0)
                return -errno;
        while (n > 0) {
                ssize_t k = write(fd, b, n);
                if (k < 0)
                        return -errno;
                b += k;
                n -= (size_t) k;
        }
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

size_t test_list_segments(const char *dir, char ***ret) {
        DIR *d = opendir(dir);
        char **l = NULL;
        size_t n = 0;

        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));) {
                size_t k = strlen(de->d_name);
                if (k < 4 || strcmp(de->d_name + k - 4, ".wal") != 0)
                        continue;
                l = realloc(l, (n + 2) * sizeof(char *));
                assert_non_null(l);
                l[n++] = strdup(de->d_name);
                l[n] = NULL;
        }
        closedir(d);
        if (n > 0)
                qsort(l, n, sizeof(char *), cmp_str);
        *ret = l;
        return n;
}

char *test_path(const char *dir, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

size_t test_walk_records(const uint8_t *buf, size_t size, size_t *offs, size_t max, size_t *ret_end) {
        size_t off = 0, n = 0;

        while (off + 9 <= size && n < max) {
                uint32_t len = (uint32_t) buf[off] | (uint32_t) buf[off + 1] << 8 |
                               (uint32_t) buf[off + 2] << 16 | (uint32_t) buf[off + 3] << 24;
                if (buf[off + 8] == 0 || off + 9 + len > size)
                        break;
                offs[n++] = off;
                off += 9 + len;
        }
        *ret_end = off;
        return n;
}

void test_resign(uint8_t *p, size_t size) {
        uint32_t seed;

        assert_true(size >= WAL_REC_HEADER_SIZE + WAL_SEGMENT_PAYLOAD);
        seed = wal_seed(get_le64(p + WAL_REC_HEADER_SIZE + 16), get_le64(p + WAL_REC_HEADER_SIZE + 24));
        for (size_t off = 0; size - off >= WAL_REC_HEADER_SIZE;) {
                uint32_t len = get_le32(p + off);
                if (len > size - off - WAL_REC_HEADER_SIZE || p[off + 8] == 0)
                        break;
                put_le32(p + off + 4, wal_record_crc(seed, off, p[off + 8],
                                                        p + off + WAL_REC_HEADER_SIZE, len, NULL, 0));
                off += WAL_REC_HEADER_SIZE + len;
        }
}
