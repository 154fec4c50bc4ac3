/* SPDX-License-Identifier: MIT */
/* CRC-32C: slicing-by-8 tables built at start-up, plus the SSE4.2 crc32 instruction on x86-64
 * when cpuid reports it. The tables cost 8 KiB and about 20 µs to build; building them in a
 * constructor keeps kv_crc32c() free of "first call" checks and thread-safety questions. */
#include <string.h>

#include "kv-crc32c.h"

#define CRC32C_POLY_REFLECTED 0x82F63B78U

static uint32_t crc_table[8][256];
static uint32_t (*crc_impl)(uint32_t crc, const uint8_t *p, size_t len);

static uint32_t crc_update_sw(uint32_t crc, const uint8_t *p, size_t len) {
        /* Byte at a time until p is 8-aligned, then 8 bytes per step, then the rest. */
        while (len > 0 && ((uintptr_t) p & 7) != 0) {
                crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
                len--;
        }
        while (len >= 8) {
                uint64_t v;
                memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                v = __builtin_bswap64(v);
#endif
                v ^= crc;
                crc = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^
                      crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
                      crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^
                      crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
                p += 8;
                len -= 8;
        }
        while (len > 0) {
                crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
                len--;
        }
        return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_update_hw(uint32_t crc, const uint8_t *p, size_t len) {
        uint64_t c = crc;

        while (len > 0 && ((uintptr_t) p & 7) != 0) {
                c = __builtin_ia32_crc32qi((uint32_t) c, *p++);
                len--;
        }
        while (len >= 8) {
                uint64_t v;
                memcpy(&v, p, 8);
                c = __builtin_ia32_crc32di(c, v);
                p += 8;
                len -= 8;
        }
        while (len > 0) {
                c = __builtin_ia32_crc32qi((uint32_t) c, *p++);
                len--;
        }
        return (uint32_t) c;
}
#endif

bool kv_crc32c_hw_available(void) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("sse4.2");
#else
        return false;
#endif
}

__attribute__((constructor))
static void crc_init(void) {
        for (unsigned i = 0; i < 256; i++) {
                uint32_t c = i;
                for (unsigned k = 0; k < 8; k++)
                        c = (c >> 1) ^ ((c & 1) ? CRC32C_POLY_REFLECTED : 0);
                crc_table[0][i] = c;
        }
        for (unsigned i = 0; i < 256; i++)
                for (unsigned t = 1; t < 8; t++)
                        crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                                          crc_table[0][crc_table[t - 1][i] & 0xff];
        crc_impl = crc_update_sw;
#if defined(__x86_64__)
        if (kv_crc32c_hw_available())
                crc_impl = crc_update_hw;
#endif
}

uint32_t kv_crc32c(uint32_t crc, const void *data, size_t len) {
        return ~crc_impl(~crc, data, len);
}

uint32_t kv_crc32c_sw(uint32_t crc, const void *data, size_t len) {
        return ~crc_update_sw(~crc, data, len);
}

uint32_t kv_crc32c_hw(uint32_t crc, const void *data, size_t len) {
#if defined(__x86_64__)
        return ~crc_update_hw(~crc, data, len);
#else
        return kv_crc32c_sw(crc, data, len);
#endif
}
