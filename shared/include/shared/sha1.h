/* SPDX-License-Identifier: MIT */
/* SHA-1 (FIPS 180-4), for identifiers that other systems define with it: etcd's member and
 * cluster ids, fleet's unit hashes. Not for security. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA1_DIGEST_SIZE 20

typedef struct Sha1 {
        uint32_t h[5];
        uint64_t length;      /* bytes hashed so far */
        uint8_t block[64];
        size_t used;          /* bytes in block */
} Sha1;

void sha1_init(Sha1 *s);
void sha1_update(Sha1 *s, const void *data, size_t len);
void sha1_final(Sha1 *s, uint8_t out[SHA1_DIGEST_SIZE]);
void sha1(const void *data, size_t len, uint8_t out[SHA1_DIGEST_SIZE]);
/* 40 lowercase hex digits plus NUL. */
char *sha1_hex(const uint8_t digest[SHA1_DIGEST_SIZE], char out[2 * SHA1_DIGEST_SIZE + 1]);
