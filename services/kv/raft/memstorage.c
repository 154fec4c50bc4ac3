/* SPDX-License-Identifier: MIT */
/* RaftMemoryStorage: the log in memory, after etcd's MemoryStorage. ents[0] is a dummy entry
 * holding the index and term of the last compacted entry (the snapshot's), so first_index is
 * ents[0].index + 1. Every entry owns a copy of its data. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

struct RaftMemoryStorage {
        RaftAllocator alloc;
        RaftHardState hs;
        RaftSnapshot snapshot;          /* data owned; with a loader, only while loaded */
        RaftSnapshotLoadFn load;
        void *load_userdata;
        RaftEntry *ents;                /* ents[0] is the dummy entry; data owned */
        size_t n, cap;
};

int raft_memory_storage_new(RaftMemoryStorage **ret, const RaftAllocator *a) {
        RaftAllocator al = a ? *a : (RaftAllocator) {};
        RaftMemoryStorage *ms;

        ms = raft_malloc(&al, sizeof(*ms));
        if (!ms)
                return -ENOMEM;
        *ms = (RaftMemoryStorage) { .alloc = al };
        if (raft_grow(&ms->alloc, (void **) &ms->ents, &ms->cap, 1, sizeof(RaftEntry)) < 0) {
                raft_mfree(&al, ms);
                return -ENOMEM;
        }
        ms->ents[0] = (RaftEntry) {};
        ms->n = 1;
        *ret = ms;
        return 0;
}

RaftMemoryStorage *raft_memory_storage_free(RaftMemoryStorage *ms) {
        RaftAllocator al;

        if (!ms)
                return NULL;
        al = ms->alloc;
        for (size_t i = 0; i < ms->n; i++)
                raft_mfree(&al, ms->ents[i].data);
        raft_mfree(&al, ms->ents);
        raft_mfree(&al, ms->snapshot.data);
        raft_mfree(&al, ms);
        return NULL;
}

uint64_t raft_memory_storage_first_index(RaftMemoryStorage *ms) {
        return ms->ents[0].index + 1;
}

uint64_t raft_memory_storage_last_index(RaftMemoryStorage *ms) {
        return ms->ents[0].index + ms->n - 1;
}

static int ms_initial_state(void *userdata, RaftHardState *ret_hs, RaftConfState *ret_cs) {
        RaftMemoryStorage *ms = userdata;

        *ret_hs = ms->hs;
        *ret_cs = ms->snapshot.metadata.conf_state;
        return 0;
}

static int ms_entries(void *userdata, uint64_t lo, uint64_t hi, uint64_t max_size,
                      const RaftEntry **ret_entries, size_t *ret_n) {
        RaftMemoryStorage *ms = userdata;
        uint64_t offset = ms->ents[0].index, size;
        size_t n;

        if (lo <= offset)
                return -ENOENT;
        if (hi > raft_memory_storage_last_index(ms) + 1 || lo > hi)
                return -EINVAL;
        if (ms->n == 1)
                return -EAGAIN;         /* only the dummy entry */
        n = (size_t) (hi - lo);
        if (n > 0 && max_size != RAFT_NO_LIMIT) {
                const RaftEntry *e = &ms->ents[lo - offset];

                size = raft_entry_size(&e[0]);
                for (size_t k = 1; k < n; k++) {
                        size += raft_entry_size(&e[k]);
                        if (size > max_size) {
                                n = k;
                                break;
                        }
                }
        }
        *ret_entries = &ms->ents[lo - offset];
        *ret_n = n;
        return 0;
}

static int ms_term(void *userdata, uint64_t i, uint64_t *ret_term) {
        RaftMemoryStorage *ms = userdata;
        uint64_t offset = ms->ents[0].index;

        if (i < offset)
                return -ENOENT;
        if (i - offset >= ms->n)
                return -EAGAIN;
        *ret_term = ms->ents[i - offset].term;
        return 0;
}

static int ms_first_index(void *userdata, uint64_t *ret) {
        *ret = raft_memory_storage_first_index(userdata);
        return 0;
}

static int ms_last_index(void *userdata, uint64_t *ret) {
        *ret = raft_memory_storage_last_index(userdata);
        return 0;
}

static int ms_snapshot(void *userdata, const RaftSnapshot **ret) {
        RaftMemoryStorage *ms = userdata;

        if (ms->load && ms->snapshot.metadata.index > 0 && !ms->snapshot.data) {
                void *data = NULL;
                size_t len = 0;
                int r = ms->load(ms->load_userdata, &ms->snapshot.metadata, &data, &len);
                if (r < 0)
                        return r == -ENOMEM ? r : -EAGAIN; /* Raft asks again later */
                ms->snapshot.data = data;
                ms->snapshot.len = len;
        }
        *ret = &ms->snapshot;
        return 0;
}

void raft_memory_storage_set_snapshot_loader(RaftMemoryStorage *ms, RaftSnapshotLoadFn fn, void *userdata) {
        raft_memory_storage_release_snapshot_data(ms);
        ms->load = fn;
        ms->load_userdata = userdata;
}

void raft_memory_storage_release_snapshot_data(RaftMemoryStorage *ms) {
        if (!ms->load)
                return;
        raft_mfree(&ms->alloc, ms->snapshot.data);
        ms->snapshot.data = NULL;
        ms->snapshot.len = 0;
}

void raft_memory_storage_get(RaftMemoryStorage *ms, RaftStorage *ret) {
        *ret = (RaftStorage) {
                .userdata = ms,
                .initial_state = ms_initial_state,
                .entries = ms_entries,
                .term = ms_term,
                .first_index = ms_first_index,
                .last_index = ms_last_index,
                .snapshot = ms_snapshot,
        };
}

int raft_memory_storage_set_hard_state(RaftMemoryStorage *ms, const RaftHardState *hs) {
        ms->hs = *hs;
        return 0;
}

void raft_memory_storage_hard_state(RaftMemoryStorage *ms, RaftHardState *ret) {
        *ret = ms->hs;
}

static void free_from(RaftMemoryStorage *ms, size_t from) {
        for (size_t i = from; i < ms->n; i++)
                raft_mfree(&ms->alloc, ms->ents[i].data);
        ms->n = from;
}

int raft_memory_storage_append(RaftMemoryStorage *ms, const RaftEntry *entries, size_t n) {
        uint64_t first = raft_memory_storage_first_index(ms), last, offset;
        void *stack[RAFT_STACK_BATCH], **copies;
        size_t keep;
        int r;

        if (n == 0)
                return 0;
        last = entries[0].index + n - 1;
        if (last < first)
                return 0;               /* all of it is compacted already */
        if (first > entries[0].index) {
                n -= (size_t) (first - entries[0].index);
                entries += first - entries[0].index;
        }
        offset = entries[0].index - ms->ents[0].index;
        if (offset > ms->n)
                return -EINVAL;         /* a gap: missing entries */
        keep = (size_t) offset;
        /* Copy data before changing anything, so -ENOMEM leaves the storage intact. */
        copies = n <= RAFT_STACK_BATCH ? stack : raft_malloc(&ms->alloc, n * sizeof(void *));
        if (!copies)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                copies[i] = entries[i].len > 0 ? raft_memdup(&ms->alloc, entries[i].data, entries[i].len) : NULL;
                if (entries[i].len > 0 && !copies[i]) {
                        for (size_t j = 0; j < i; j++)
                                raft_mfree(&ms->alloc, copies[j]);
                        if (copies != stack)
                                raft_mfree(&ms->alloc, copies);
                        return -ENOMEM;
                }
        }
        r = raft_grow(&ms->alloc, (void **) &ms->ents, &ms->cap, keep + n, sizeof(RaftEntry));
        if (r < 0) {
                for (size_t j = 0; j < n; j++)
                        raft_mfree(&ms->alloc, copies[j]);
                if (copies != stack)
                        raft_mfree(&ms->alloc, copies);
                return r;
        }
        free_from(ms, keep);
        for (size_t i = 0; i < n; i++) {
                ms->ents[ms->n] = entries[i];
                ms->ents[ms->n].data = copies[i];
                ms->n++;
        }
        if (copies != stack)
                raft_mfree(&ms->alloc, copies);
        return 0;
}

static int set_snapshot(RaftMemoryStorage *ms, const RaftSnapshotMeta *meta, const void *data, size_t len) {
        void *c = NULL;

        if (ms->load)
                len = 0; /* the loader reads it back when it is needed */
        if (len > 0) {
                c = raft_memdup(&ms->alloc, data, len);
                if (!c)
                        return -ENOMEM;
        }
        raft_mfree(&ms->alloc, ms->snapshot.data);
        ms->snapshot = (RaftSnapshot) { .metadata = *meta, .data = c, .len = len };
        return 0;
}

int raft_memory_storage_apply_snapshot(RaftMemoryStorage *ms, const RaftSnapshot *snap) {
        int r;

        if (ms->snapshot.metadata.index >= snap->metadata.index)
                return -ESTALE;
        if (raft_conf_state_validate(&snap->metadata.conf_state) < 0)
                return -EINVAL;
        r = set_snapshot(ms, &snap->metadata, snap->data, snap->len);
        if (r < 0)
                return r;
        free_from(ms, 0);
        ms->ents[0] = (RaftEntry) { .index = snap->metadata.index, .term = snap->metadata.term };
        ms->n = 1;
        return 0;
}

int raft_memory_storage_create_snapshot(RaftMemoryStorage *ms, uint64_t index,
                                        const RaftConfState *cs, const void *data, size_t len) {
        uint64_t offset = ms->ents[0].index;
        RaftSnapshotMeta meta;

        if (index <= ms->snapshot.metadata.index)
                return -ESTALE;
        if (index > raft_memory_storage_last_index(ms) || index < offset)
                return -EINVAL;
        if (raft_conf_state_validate(cs) < 0)
                return -EINVAL;
        meta = (RaftSnapshotMeta) { .index = index, .term = ms->ents[index - offset].term,
                                    .conf_state = *cs };
        return set_snapshot(ms, &meta, data, len);
}

int raft_memory_storage_compact(RaftMemoryStorage *ms, uint64_t index) {
        uint64_t offset = ms->ents[0].index;
        size_t k;

        if (index <= offset)
                return -ESTALE;
        if (index > raft_memory_storage_last_index(ms))
                return -EINVAL;
        k = (size_t) (index - offset);
        /* ents[k] becomes the new dummy entry: keep its index and term, drop its data. */
        for (size_t i = 0; i <= k; i++)
                raft_mfree(&ms->alloc, ms->ents[i].data);
        ms->ents[k].data = NULL;
        ms->ents[k].len = 0;
        ms->ents[k].type = RAFT_ENTRY_NORMAL;
        memmove(ms->ents, ms->ents + k, (ms->n - k) * sizeof(RaftEntry));
        ms->n -= k;
        return 0;
}
