/* SPDX-License-Identifier: MIT */
/* CRC-32C against the RFC 3720 (iSCSI) vectors, both implementations against each other on
 * every alignment and length, and the continuation property the WAL relies on. */
#include "kv-crc32c.h"
#include "test-util.h"

static uint8_t next_byte(uint64_t *s) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint8_t) (*s >> 56);
}

static void known_vectors(void **state) {
        uint8_t b[48];

        assert_int_equal(kv_crc32c(0, "123456789", 9), 0xE3069283U);
        assert_int_equal(kv_crc32c(0, "", 0), 0);
        memset(b, 0, 32);
        assert_int_equal(kv_crc32c(0, b, 32), 0x8A9136AAU);
        memset(b, 0xff, 32);
        assert_int_equal(kv_crc32c(0, b, 32), 0x62A8AB43U);
        for (int i = 0; i < 32; i++)
                b[i] = (uint8_t) i;
        assert_int_equal(kv_crc32c(0, b, 32), 0x46DD794EU);
        for (int i = 0; i < 32; i++)
                b[i] = (uint8_t) (31 - i);
        assert_int_equal(kv_crc32c(0, b, 32), 0x113FDB5CU);
        /* RFC 3720 B.4: an iSCSI read command PDU. */
        static const uint8_t pdu[48] = {
                0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        };
        assert_int_equal(kv_crc32c(0, pdu, sizeof(pdu)), 0xD9963A56U);
        assert_int_equal(kv_crc32c_sw(0, pdu, sizeof(pdu)), 0xD9963A56U);
        if (kv_crc32c_hw_available())
                assert_int_equal(kv_crc32c_hw(0, pdu, sizeof(pdu)), 0xD9963A56U);
}

static void implementations_agree_on_every_alignment_and_length(void **state) {
        uint8_t buf[1100];
        uint64_t s = 42;

        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = next_byte(&s);
        if (!kv_crc32c_hw_available())
                print_message("no SSE4.2 here: only the table implementation is checked\n");
        for (size_t start = 0; start < 16; start++)
                for (size_t len = 0; len + start <= sizeof(buf); len += (len < 64 ? 1 : 37)) {
                        uint32_t sw = kv_crc32c_sw(0, buf + start, len);
                        assert_int_equal(kv_crc32c(0, buf + start, len), sw);
                        if (kv_crc32c_hw_available())
                                assert_int_equal(kv_crc32c_hw(0, buf + start, len), sw);
                }
}

static void continuation_equals_whole(void **state) {
        uint8_t buf[777];
        uint64_t s = 7;

        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = next_byte(&s);
        for (size_t cut = 0; cut <= sizeof(buf); cut += 13)
                assert_int_equal(kv_crc32c(kv_crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut),
                                 kv_crc32c(0, buf, sizeof(buf)));
}

TEST_MAIN(cmocka_unit_test(known_vectors),
          cmocka_unit_test(implementations_agree_on_every_alignment_and_length),
          cmocka_unit_test(continuation_equals_whole))
