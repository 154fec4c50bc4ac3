/* SPDX-License-Identifier: MIT */
/* Small helpers of the Raft core: the injectable allocator, the message arena, entry vectors and
 * the always-on assertion handler. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

_Noreturn void raft_assert_failed(const char *expr, const char *file, int line, const char *func) {
        (void) fprintf(stderr, "raft: assertion '%s' failed at %s:%d, function %s(). Aborting.\n",
                       expr, file, line, func);
        abort();
}

void *raft_malloc(const RaftAllocator *a, size_t size) {
        if (a && a->malloc)
                return a->malloc(a->userdata, size);
        return malloc(size);
}

void *raft_realloc(const RaftAllocator *a, void *p, size_t size) {
        if (a && a->realloc)
                return a->realloc(a->userdata, p, size);
        return realloc(p, size);
}

void raft_mfree(const RaftAllocator *a, const void *p) {
        if (!p)
                return;
        if (a && a->free)
                a->free(a->userdata, (void *) p);
        else
                free((void *) p);
}

void *raft_memdup(const RaftAllocator *a, const void *p, size_t size) {
        void *c = raft_malloc(a, size ? size : 1);

        if (c && size > 0)
                memcpy(c, p, size);
        return c;
}

int raft_grow(const RaftAllocator *a, void **array, size_t *cap, size_t need, size_t elem) {
        size_t n;
        void *p;

        if (need <= *cap)
                return 0;
        n = RAFT_MAX(need, RAFT_MAX(*cap * 2, (size_t) 8));
        if (n > SIZE_MAX / elem)
                return -ENOMEM;
        p = raft_realloc(a, *array, n * elem);
        if (!p)
                return -ENOMEM;
        *array = p;
        *cap = n;
        return 0;
}

int raft_entry_vec_reserve(EntryVec *v, const RaftAllocator *a, size_t need) {
        return raft_grow(a, (void **) &v->e, &v->cap, need, sizeof(RaftEntry));
}

void raft_entry_vec_done(EntryVec *v, const RaftAllocator *a) {
        raft_mfree(a, v->e);
        *v = (EntryVec) {};
}

/* Arena chunks: a header followed by the payload. Chunks are at least 64 KiB; a larger request
 * gets a chunk of its own size. After a reset, only the largest chunk is kept, so the arena
 * settles at the size one Ready needs. */
struct ArenaChunk {
        ArenaChunk *next;
        size_t size, used;
        max_align_t data[];
};

#define ARENA_CHUNK_MIN (64 * 1024)

void *raft_arena_alloc(Arena *a, const RaftAllocator *al, size_t size) {
        ArenaChunk *c = a->chunks;
        size_t need = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
        void *p;

        if (need < size)
                return NULL;
        if (!c || c->size - c->used < need) {
                size_t sz = RAFT_MAX(need, (size_t) ARENA_CHUNK_MIN);

                if (sz > SIZE_MAX - sizeof(ArenaChunk))
                        return NULL;
                c = raft_malloc(al, sizeof(ArenaChunk) + sz);
                if (!c)
                        return NULL;
                *c = (ArenaChunk) { .next = a->chunks, .size = sz };
                a->chunks = c;
        }
        p = (uint8_t *) c->data + c->used;
        c->used += need;
        return p;
}

void *raft_arena_dup(Arena *a, const RaftAllocator *al, const void *p, size_t size) {
        void *c;

        if (size == 0)
                return NULL;
        c = raft_arena_alloc(a, al, size);
        if (c)
                memcpy(c, p, size);
        return c;
}

void raft_arena_reset(Arena *a, const RaftAllocator *al) {
        ArenaChunk *keep = a->chunks;

        for (ArenaChunk *c = a->chunks; c; c = c->next)
                if (c->size > keep->size)
                        keep = c;
        while (a->chunks) {
                ArenaChunk *n = a->chunks->next;
                if (a->chunks != keep)
                        raft_mfree(al, a->chunks);
                a->chunks = n;
        }
        if (keep) {
                keep->next = NULL;
                keep->used = 0;
        }
        a->chunks = keep;
}

void raft_arena_done(Arena *a, const RaftAllocator *al) {
        while (a->chunks) {
                ArenaChunk *n = a->chunks->next;
                raft_mfree(al, a->chunks);
                a->chunks = n;
        }
}
