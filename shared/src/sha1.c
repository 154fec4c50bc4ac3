/* SPDX-License-Identifier: MIT */
/* A straightforward SHA-1 after FIPS 180-4, section 6.1. */
#include <string.h>

#include "shared/sha1.h"

static uint32_t rol(uint32_t x, unsigned n) {
        return x << n | x >> (32 - n);
}

static void sha1_block(Sha1 *s, const uint8_t *p) {
        uint32_t w[80], a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];

        for (int t = 0; t < 16; t++)
                w[t] = (uint32_t) p[4 * t] << 24 | (uint32_t) p[4 * t + 1] << 16 | (uint32_t) p[4 * t + 2] << 8 | p[4 * t + 3];
        for (int t = 16; t < 80; t++)
                w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        for (int t = 0; t < 80; t++) {
                uint32_t f, k, tmp;
                if (t < 20) {
                        f = (b & c) | (~b & d);
                        k = 0x5A827999;
                } else if (t < 40) {
                        f = b ^ c ^ d;
                        k = 0x6ED9EBA1;
                } else if (t < 60) {
                        f = (b & c) | (b & d) | (c & d);
                        k = 0x8F1BBCDC;
                } else {
                        f = b ^ c ^ d;
                        k = 0xCA62C1D6;
                }
                tmp = rol(a, 5) + f + e + k + w[t];
                e = d;
                d = c;
                c = rol(b, 30);
                b = a;
                a = tmp;
        }
        s->h[0] += a;
        s->h[1] += b;
        s->h[2] += c;
        s->h[3] += d;
        s->h[4] += e;
}

void sha1_init(Sha1 *s) {
        *s = (Sha1) { .h = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 } };
}

void sha1_update(Sha1 *s, const void *data, size_t len) {
        const uint8_t *p = data;

        s->length += len;
        while (len > 0) {
                size_t n = sizeof(s->block) - s->used;
                if (n > len)
                        n = len;
                memcpy(s->block + s->used, p, n);
                s->used += n;
                p += n;
                len -= n;
                if (s->used == sizeof(s->block)) {
                        sha1_block(s, s->block);
                        s->used = 0;
                }
        }
}

void sha1_final(Sha1 *s, uint8_t out[SHA1_DIGEST_SIZE]) {
        uint64_t bits = s->length * 8;
        uint8_t pad = 0x80, zero = 0, len[8];

        sha1_update(s, &pad, 1);
        while (s->used != 56)
                sha1_update(s, &zero, 1);
        for (int i = 0; i < 8; i++)
                len[i] = (uint8_t) (bits >> (56 - 8 * i));
        sha1_update(s, len, 8);
        for (int i = 0; i < 5; i++)
                for (int j = 0; j < 4; j++)
                        out[4 * i + j] = (uint8_t) (s->h[i] >> (24 - 8 * j));
}

void sha1(const void *data, size_t len, uint8_t out[SHA1_DIGEST_SIZE]) {
        Sha1 s;
        sha1_init(&s);
        sha1_update(&s, data, len);
        sha1_final(&s, out);
}

char *sha1_hex(const uint8_t d[SHA1_DIGEST_SIZE], char out[2 * SHA1_DIGEST_SIZE + 1]) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < SHA1_DIGEST_SIZE; i++) {
                out[2 * i] = hex[d[i] >> 4];
                out[2 * i + 1] = hex[d[i] & 15];
        }
        out[2 * SHA1_DIGEST_SIZE] = 0;
        return out;
}
