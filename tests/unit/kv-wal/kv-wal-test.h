/* SPDX-License-Identifier: MIT */
/* Helpers shared by the kv-wal tests: deterministic entry contents, whole-file I/O, segment
 * listing and a minimal record walker that follows the documented on-disk format. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-wal.h"

/* Entry data derived from (index, term): length in [1, max_len], bytes from a PRNG. */
size_t test_entry_len(uint64_t index, uint64_t term, size_t max_len);
void test_entry_fill(uint64_t index, uint64_t term, uint8_t *buf, size_t len);

/* n entries first.. with the given term; data in one allocation owned by the batch. */
typedef struct TestBatch {
        KvWalEntry *entries;
        size_t n;
        uint8_t *data;
} TestBatch;
void test_batch_make(TestBatch *b, uint64_t first, size_t n, uint64_t term, size_t max_len);
void test_batch_done(TestBatch *b);
/* Asserts e is (index, term) with the generated contents. */
void test_check_entry(const KvWalEntry *e, uint64_t index, uint64_t term, size_t max_len);
bool test_entry_ok(const KvWalEntry *e, uint64_t index, uint64_t term, size_t max_len);

int test_read_file(const char *path, uint8_t **ret, size_t *ret_size);
int test_write_file_bytes(const char *path, const void *p, size_t n);

/* Segment file names in dir, sorted; returns the count. */
size_t test_list_segments(const char *dir, char ***ret);
char *test_path(const char *dir, const char *name);

/* Record start offsets of a segment image until the first zero or implausible header; returns
 * the count and sets *ret_end to the end of the last record walked. */
size_t test_walk_records(const uint8_t *buf, size_t size, size_t *offs, size_t max, size_t *ret_end);
/* Type byte of the record at off. */
static inline uint8_t test_record_type(const uint8_t *buf, size_t off) {
        return buf[off + 8];
}
uint64_t test_prng(uint64_t *state);

/* Recomputes every walkable record's checksum as the writer would, so a test can edit a segment
 * image and still get past the checksums to the checks behind them. */
void test_resign(uint8_t *buf, size_t size);
