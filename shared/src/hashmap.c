/* SPDX-License-Identifier: MIT */
/* uint64 -> pointer map with linear probing; the load factor stays under 3/4. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "shared/hashmap.h"

/* splitmix64's finalizer: consecutive keys (sequence numbers) spread over the table. */
static size_t slot_of(uint64_t k, size_t cap) {
        k ^= k >> 30;
        k *= 0xbf58476d1ce4e5b9ULL;
        k ^= k >> 27;
        k *= 0x94d049bb133111ebULL;
        k ^= k >> 31;
        return (size_t) k & (cap - 1);
}

static int grow(U64Map *m) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        U64Map n = { .keys = calloc(cap, sizeof(uint64_t)), .values = calloc(cap, sizeof(void *)), .cap = cap };

        if (!n.keys || !n.values) {
                free(n.keys);
                free(n.values);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
                if (m->values[i]) {
                        size_t s = slot_of(m->keys[i], cap);
                        while (n.values[s])
                                s = (s + 1) & (cap - 1);
                        n.keys[s] = m->keys[i];
                        n.values[s] = m->values[i];
                        n.n++;
                }
        free(m->keys);
        free(m->values);
        *m = n;
        return 0;
}

int u64map_put(U64Map *m, uint64_t key, void *value) {
        size_t s;

        if (!value)
                return -EINVAL;
        if ((m->n + 1) * 4 > m->cap * 3 && grow(m) < 0)
                return -ENOMEM;
        for (s = slot_of(key, m->cap); m->values[s]; s = (s + 1) & (m->cap - 1))
                if (m->keys[s] == key) {
                        m->values[s] = value;
                        return 0;
                }
        m->keys[s] = key;
        m->values[s] = value;
        m->n++;
        return 0;
}

void *u64map_get(const U64Map *m, uint64_t key) {
        if (m->cap == 0)
                return NULL;
        for (size_t s = slot_of(key, m->cap); m->values[s]; s = (s + 1) & (m->cap - 1))
                if (m->keys[s] == key)
                        return m->values[s];
        return NULL;
}

void *u64map_remove(U64Map *m, uint64_t key) {
        size_t s, j;
        void *v;

        if (m->cap == 0)
                return NULL;
        for (s = slot_of(key, m->cap); m->values[s]; s = (s + 1) & (m->cap - 1))
                if (m->keys[s] == key)
                        break;
        if (!m->values[s])
                return NULL;
        v = m->values[s];
        m->values[s] = NULL;
        m->n--;
        /* Backward shift: move later members of the probe run into the hole when their home slot
         * allows it, so lookups never stop early at the hole. */
        for (j = (s + 1) & (m->cap - 1); m->values[j]; j = (j + 1) & (m->cap - 1)) {
                size_t home = slot_of(m->keys[j], m->cap);
                bool movable = s <= j ? (home <= s || home > j) : (home <= s && home > j);
                if (movable) {
                        m->keys[s] = m->keys[j];
                        m->values[s] = m->values[j];
                        m->values[j] = NULL;
                        s = j;
                }
        }
        return v;
}

bool u64map_next(const U64Map *m, size_t *i, uint64_t *ret_key, void **ret_value) {
        for (; *i < m->cap; (*i)++)
                if (m->values[*i]) {
                        if (ret_key)
                                *ret_key = m->keys[*i];
                        if (ret_value)
                                *ret_value = m->values[*i];
                        (*i)++;
                        return true;
                }
        return false;
}

void u64map_done(U64Map *m) {
        free(m->keys);
        free(m->values);
        *m = U64MAP_INIT;
}
