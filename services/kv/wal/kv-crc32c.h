/* SPDX-License-Identifier: MIT */
/* CRC-32C (Castagnoli), the checksum of every WAL record and snapshot file. Table-driven
 * (slicing-by-8) everywhere, and the SSE4.2 crc32 instruction when the CPU has it, chosen once at
 * start-up. Both give the same values; tests hold them to the RFC 3720 vectors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: kv_crc32c(kv_crc32c(0, a, na), b, nb) == kv_crc32c(0, a || b, na + nb).
 * Start with 0. The value is the finished CRC (pre- and post-inverted, as iSCSI and ext4 use it). */
uint32_t kv_crc32c(uint32_t crc, const void *data, size_t len);

/* The two implementations, for tests and benchmarks. kv_crc32c_hw() may only be called when
 * kv_crc32c_hw_available() is true. */
uint32_t kv_crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t kv_crc32c_hw(uint32_t crc, const void *data, size_t len);
bool kv_crc32c_hw_available(void);
