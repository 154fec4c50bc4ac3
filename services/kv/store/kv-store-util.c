/* SPDX-License-Identifier: MIT */
/* Small helpers of the state machine: SipHash-2-4 for the path hashes (keyed per store, so a
 * client cannot choose colliding keys), and Go's path.Clean, which decides what a key path
 * means exactly as etcd does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv-store-internal.h"

#define ROTL(x, b) (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                        \
        do {                                                            \
                v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
                v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                  \
                v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                  \
                v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
        } while (0)

uint64_t kv_siphash(const void *p, size_t len, uint64_t k0, uint64_t k1) {
        const uint8_t *in = p, *end = in + (len & ~(size_t) 7);
        uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
        uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
        uint64_t b = (uint64_t) len << 56, m;

        for (; in != end; in += 8) {
                memcpy(&m, in, 8);
                v3 ^= m;
                SIPROUND;
                SIPROUND;
                v0 ^= m;
        }
        for (size_t i = 0; i < (len & 7); i++)
                b |= (uint64_t) in[i] << (8 * i);
        v3 ^= b;
        SIPROUND;
        SIPROUND;
        v0 ^= b;
        v2 ^= 0xff;
        SIPROUND;
        SIPROUND;
        SIPROUND;
        SIPROUND;
        return v0 ^ v1 ^ v2 ^ v3;
}

/* Go's path.Clean of "/" + p: collapses slashes, drops "." and resolves ".." (never above the
 * root), no trailing slash except for the root itself. */
char *kv_path_clean(const char *p) {
        size_t n = strlen(p), o = 1;
        char *out = malloc(n + 2);

        if (!out)
                return NULL;
        out[0] = '/';
        for (size_t i = 0; i < n;) {
                if (p[i] == '/')
                        i++;
                else if (p[i] == '.' && (i + 1 == n || p[i + 1] == '/'))
                        i++;
                else if (p[i] == '.' && p[i + 1] == '.' && (i + 2 == n || p[i + 2] == '/')) {
                        i += 2;
                        while (o > 1 && out[o - 1] != '/')
                                o--;
                        if (o > 1)
                                o--;
                } else {
                        if (o > 1)
                                out[o++] = '/';
                        while (i < n && p[i] != '/')
                                out[o++] = p[i++];
                }
        }
        out[o] = 0;
        return out;
}

bool kv_path_is_clean(const char *p) {
        _cleanup_free_ char *c = kv_path_clean(p);
        return c && streq(c, p);
}
