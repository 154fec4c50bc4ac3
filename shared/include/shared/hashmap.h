/* SPDX-License-Identifier: MIT */
/* An open-addressing hash map from uint64_t keys to pointers (linear probing, backward-shift
 * deletion, so no tombstones). Keys are arbitrary; values must not be NULL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/macro.h"

typedef struct U64Map {
        uint64_t *keys;
        void **values;        /* NULL marks an empty slot */
        size_t cap;           /* power of two, or 0 */
        size_t n;
} U64Map;

#define U64MAP_INIT ((U64Map) {})

/* Inserts or replaces. Returns 0, or -ENOMEM (the map is unchanged). */
int u64map_put(U64Map *m, uint64_t key, void *value);
void *u64map_get(const U64Map *m, uint64_t key);
/* Removes key and returns its value, or NULL if absent. */
void *u64map_remove(U64Map *m, uint64_t key);
void u64map_done(U64Map *m);
static inline size_t u64map_size(const U64Map *m) {
        return m->n;
}
/* Iterates: for (size_t i = 0; u64map_next(m, &i, &k, &v);) ... (no changes while iterating). */
bool u64map_next(const U64Map *m, size_t *i, uint64_t *ret_key, void **ret_value);
