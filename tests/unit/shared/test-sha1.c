/* SPDX-License-Identifier: MIT */
#include "shared/sha1.h"
#include "test-util.h"

static const char *hex_of(const void *data, size_t len) {
        static char out[41];
        uint8_t d[SHA1_DIGEST_SIZE];
        sha1(data, len, d);
        return sha1_hex(d, out);
}

/* FIPS 180 / RFC 3174 test vectors. */
static void known_vectors(void **state) {
        assert_string_equal(hex_of("", 0), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_string_equal(hex_of("abc", 3), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_string_equal(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56),
                            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

static void million_a_in_odd_chunks(void **state) {
        Sha1 s;
        uint8_t d[SHA1_DIGEST_SIZE];
        char out[41], chunk[997];

        memset(chunk, 'a', sizeof(chunk));
        sha1_init(&s);
        for (size_t left = 1000000; left > 0;) {
                size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
                sha1_update(&s, chunk, n);
                left -= n;
        }
        sha1_final(&s, d);
        assert_string_equal(sha1_hex(d, out), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST_MAIN(cmocka_unit_test(known_vectors), cmocka_unit_test(million_a_in_odd_chunks))
