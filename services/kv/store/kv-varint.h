/* SPDX-License-Identifier: MIT */
/* Bounds-checked little-endian and LEB128 readers and writers for the command codec and the
 * snapshot format. Readers never read past end and reject overlong varints. Internal header. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/unaligned.h"

typedef struct KvReader {
        const uint8_t *p, *end;
} KvReader;

static inline int kv_put_varint(Buf *b, uint64_t v) {
        uint8_t t[10];
        size_t n = 0;

        do {
                t[n] = (uint8_t) (v & 0x7f);
                v >>= 7;
                if (v)
                        t[n] |= 0x80;
                n++;
        } while (v);
        return buf_append(b, t, n);
}

static inline int kv_put_u64(Buf *b, uint64_t v) {
        uint8_t t[8];
        put_le64(t, v);
        return buf_append(b, t, 8);
}

static inline int kv_get_varint(KvReader *r, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 70; shift += 7) {
                uint8_t c;
                if (r->p >= r->end)
                        return -EBADMSG;
                c = *r->p++;
                if (shift == 63 && c > 1)
                        return -EBADMSG;          /* past 64 bits */
                v |= (uint64_t) (c & 0x7f) << shift;
                if (!(c & 0x80)) {
                        if (c == 0 && shift > 0)
                                return -EBADMSG;  /* overlong: a zero top group */
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

static inline int kv_get_u64(KvReader *r, uint64_t *ret) {
        if (r->end - r->p < 8)
                return -EBADMSG;
        *ret = get_le64(r->p);
        r->p += 8;
        return 0;
}

static inline int kv_get_u8(KvReader *r, uint8_t *ret) {
        if (r->p >= r->end)
                return -EBADMSG;
        *ret = *r->p++;
        return 0;
}

/* A string of at most max bytes, without NUL bytes. *ret points into the input. */
static inline int kv_get_bytes(KvReader *r, size_t max, const char **ret, size_t *ret_len) {
        uint64_t n;
        int k = kv_get_varint(r, &n);

        if (k < 0)
                return k;
        if (n > max || n > (uint64_t) (r->end - r->p) || memchr(r->p, 0, (size_t) n))
                return -EBADMSG;
        *ret = (const char *) r->p;
        *ret_len = (size_t) n;
        r->p += n;
        return 0;
}

static inline uint64_t kv_zigzag(int64_t v) {
        return ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);
}

static inline int64_t kv_unzigzag(uint64_t v) {
        return (int64_t) (v >> 1) ^ -(int64_t) (v & 1);
}
