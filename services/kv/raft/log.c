/* SPDX-License-Identifier: MIT */
/* The Raft log: the application's stable storage (read through RaftStorage) followed by the
 * unstable tail (entries and an incoming snapshot not yet persisted), after etcd's log.go and
 * log_unstable.go. The unstable part owns copies of its entries' data. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

/* Classifies a storage error: compaction and unavailability are normal, anything else makes the
 * node fail (sticky). */
static int storage_error(RaftLog *l, int r) {
        if (r == -ESTALE)
                r = -ENOENT;
        if (r != -ENOENT && r != -EAGAIN && l->error == 0)
                l->error = r;
        return r;
}

static void entry_free_data(RaftLog *l, RaftEntry *e) {
        raft_mfree(l->alloc, e->data);
        e->data = NULL;
}

static void raft_snapshot_free(const RaftAllocator *a, RaftSnapshot *s) {
        if (!s)
                return;
        raft_mfree(a, s->data);
        raft_mfree(a, s);
}

/* ---- unstable ---- */

static bool unstable_maybe_first_index(const Unstable *u, uint64_t *ret) {
        if (!u->snapshot)
                return false;
        *ret = u->snapshot->metadata.index + 1;
        return true;
}

static bool unstable_maybe_last_index(const Unstable *u, uint64_t *ret) {
        if (u->n > 0) {
                *ret = u->offset + u->n - 1;
                return true;
        }
        if (u->snapshot) {
                *ret = u->snapshot->metadata.index;
                return true;
        }
        return false;
}

static bool unstable_maybe_term(const Unstable *u, uint64_t i, uint64_t *ret) {
        uint64_t last;

        if (i < u->offset) {
                if (u->snapshot && u->snapshot->metadata.index == i) {
                        *ret = u->snapshot->metadata.term;
                        return true;
                }
                return false;
        }
        if (!unstable_maybe_last_index(u, &last) || i > last)
                return false;
        *ret = u->entries[i - u->offset].term;
        return true;
}

/* Drops entries [offset, to) from the front and frees their data. */
static void unstable_drop_front(RaftLog *l, uint64_t to) {
        Unstable *u = &l->unstable;
        size_t k = (size_t) (to - u->offset);

        raft_assert(k <= u->n);
        for (size_t j = 0; j < k; j++)
                entry_free_data(l, &u->entries[j]);
        memmove(u->entries, u->entries + k, (u->n - k) * sizeof(RaftEntry));
        u->n -= k;
        u->offset = to;
}

/* Truncates the tail so that the last kept index is to - 1. */
static void unstable_truncate_tail(RaftLog *l, uint64_t to) {
        Unstable *u = &l->unstable;
        size_t keep = (size_t) (to - u->offset);

        raft_assert(to >= u->offset && keep <= u->n);
        for (size_t j = keep; j < u->n; j++)
                entry_free_data(l, &u->entries[j]);
        u->n = keep;
}

/* ---- the log ---- */

int raft_log_init(RaftLog *l, const RaftStorage *s, const RaftAllocator *a, uint64_t max_next_ents_size) {
        uint64_t fi, li;
        int r;

        *l = (RaftLog) { .storage = s, .alloc = a, .max_next_ents_size = max_next_ents_size };
        r = s->first_index(s->userdata, &fi);
        if (r < 0)
                return r;
        r = s->last_index(s->userdata, &li);
        if (r < 0)
                return r;
        if (fi == 0 || li + 1 < fi)
                return -EINVAL;
        l->unstable.offset = li + 1;
        l->committed = fi - 1;
        l->applied = fi - 1;
        return 0;
}

void raft_log_done(RaftLog *l) {
        Unstable *u = &l->unstable;

        for (size_t i = 0; i < u->n; i++)
                entry_free_data(l, &u->entries[i]);
        raft_mfree(l->alloc, u->entries);
        raft_snapshot_free(l->alloc, u->snapshot);
        raft_entry_vec_done(&l->scratch, l->alloc);
        *u = (Unstable) {};
}

uint64_t raft_log_first_index(RaftLog *l) {
        uint64_t i;
        int r;

        if (unstable_maybe_first_index(&l->unstable, &i))
                return i;
        r = l->storage->first_index(l->storage->userdata, &i);
        if (r < 0) {
                (void) storage_error(l, r);
                return l->committed + 1;
        }
        return i;
}

uint64_t raft_log_last_index(RaftLog *l) {
        uint64_t i;
        int r;

        if (unstable_maybe_last_index(&l->unstable, &i))
                return i;
        r = l->storage->last_index(l->storage->userdata, &i);
        if (r < 0) {
                (void) storage_error(l, r);
                return l->committed;
        }
        return i;
}

int raft_log_term_checked(RaftLog *l, uint64_t i, uint64_t *ret) {
        uint64_t t;
        int r;

        /* The valid range is [index of the dummy entry, last index]. */
        if (i + 1 < raft_log_first_index(l))
                return -ENOENT;
        if (i > raft_log_last_index(l))
                return -EAGAIN;
        if (unstable_maybe_term(&l->unstable, i, &t)) {
                *ret = t;
                return 0;
        }
        r = l->storage->term(l->storage->userdata, i, &t);
        if (r < 0)
                return storage_error(l, r);
        *ret = t;
        return 0;
}

uint64_t raft_log_term(RaftLog *l, uint64_t i) {
        uint64_t t;

        return raft_log_term_checked(l, i, &t) < 0 ? 0 : t;
}

uint64_t raft_log_last_term(RaftLog *l) {
        return raft_log_term(l, raft_log_last_index(l));
}

bool raft_log_match_term(RaftLog *l, uint64_t i, uint64_t term) {
        uint64_t t;

        if (raft_log_term_checked(l, i, &t) < 0)
                return false;
        return t == term;
}

bool raft_log_is_up_to_date(RaftLog *l, uint64_t lasti, uint64_t term) {
        uint64_t lt = raft_log_last_term(l);

        return term > lt || (term == lt && lasti >= raft_log_last_index(l));
}

static void limit_size(EntryVec *v, uint64_t max_size) {
        uint64_t size;
        size_t k;

        if (v->n == 0 || max_size == RAFT_NO_LIMIT)
                return;
        size = raft_entry_size(&v->e[0]);
        for (k = 1; k < v->n; k++) {
                size += raft_entry_size(&v->e[k]);
                if (size > max_size)
                        break;
        }
        v->n = k;
}

int raft_log_slice(RaftLog *l, uint64_t lo, uint64_t hi, uint64_t max_size, EntryVec *out) {
        Unstable *u = &l->unstable;
        int r;

        out->n = 0;
        raft_assert(lo <= hi);
        if (lo < raft_log_first_index(l))
                return -ENOENT;
        raft_assert(hi <= raft_log_last_index(l) + 1);
        if (lo == hi)
                return 0;
        r = raft_entry_vec_reserve(out, l->alloc, (size_t) (hi - lo));
        if (r < 0)
                return r;
        if (lo < u->offset) {
                uint64_t shi = RAFT_MIN(hi, u->offset);
                const RaftEntry *es;
                size_t n;

                r = l->storage->entries(l->storage->userdata, lo, shi, max_size, &es, &n);
                if (r == -EAGAIN)
                        r = -EIO;       /* entries below the unstable offset must exist */
                if (r < 0)
                        return storage_error(l, r);
                raft_assert(n <= shi - lo);
                memcpy(out->e, es, n * sizeof(RaftEntry));
                out->n = n;
                if (n < shi - lo)
                        return 0;       /* storage already applied the size limit */
        }
        if (hi > u->offset) {
                uint64_t ulo = RAFT_MAX(lo, u->offset);

                raft_assert(hi - u->offset <= u->n);
                memcpy(out->e + out->n, u->entries + (ulo - u->offset),
                       (size_t) (hi - ulo) * sizeof(RaftEntry));
                out->n += (size_t) (hi - ulo);
        }
        limit_size(out, max_size);
        return 0;
}

static int unstable_truncate_and_append(RaftLog *l, const RaftEntry *ents, size_t n) {
        Unstable *u = &l->unstable;
        uint64_t after = ents[0].index;
        void *stack[RAFT_STACK_BATCH], **copies;
        size_t keep;
        int r;

        /* Copy all data first, so that running out of memory leaves the log untouched. Small
         * batches (the common case: one proposal) keep the pointer list on the stack. */
        copies = n <= RAFT_STACK_BATCH ? stack : raft_malloc(l->alloc, n * sizeof(void *));
        if (!copies)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                copies[i] = ents[i].len > 0 ? raft_memdup(l->alloc, ents[i].data, ents[i].len) : NULL;
                if (ents[i].len > 0 && !copies[i]) {
                        for (size_t j = 0; j < i; j++)
                                raft_mfree(l->alloc, copies[j]);
                        if (copies != stack)
                                raft_mfree(l->alloc, copies);
                        return -ENOMEM;
                }
        }
        if (after <= u->offset)
                keep = 0;
        else
                keep = (size_t) RAFT_MIN(after - u->offset, (uint64_t) u->n);
        r = raft_grow(l->alloc, (void **) &u->entries, &u->cap, keep + n, sizeof(RaftEntry));
        if (r < 0) {
                for (size_t j = 0; j < n; j++)
                        raft_mfree(l->alloc, copies[j]);
                if (copies != stack)
                        raft_mfree(l->alloc, copies);
                return r;
        }
        if (after == u->offset + u->n) {
                /* Plain append. */
        } else if (after <= u->offset) {
                /* Replace the whole unstable part. */
                unstable_truncate_tail(l, u->offset);
                u->offset = after;
        } else {
                /* Truncate to 'after', then append. */
                unstable_truncate_tail(l, after);
        }
        raft_assert(u->offset + u->n == after);
        for (size_t i = 0; i < n; i++) {
                u->entries[u->n] = ents[i];
                u->entries[u->n].data = copies[i];
                u->n++;
        }
        if (copies != stack)
                raft_mfree(l->alloc, copies);
        return 0;
}

int raft_log_append(RaftLog *l, const RaftEntry *ents, size_t n, uint64_t *ret_last) {
        int r;

        if (n > 0) {
                raft_assert(ents[0].index > l->committed);
                for (size_t i = 1; i < n; i++)
                        raft_assert(ents[i].index == ents[i - 1].index + 1 &&
                                    ents[i].term >= ents[i - 1].term);
                r = unstable_truncate_and_append(l, ents, n);
                if (r < 0)
                        return r;
        }
        if (ret_last)
                *ret_last = raft_log_last_index(l);
        return 0;
}

static uint64_t find_conflict(RaftLog *l, const RaftEntry *ents, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!raft_log_match_term(l, ents[i].index, ents[i].term))
                        return ents[i].index;
        return 0;
}

int raft_log_maybe_append(RaftLog *l, uint64_t index, uint64_t log_term_, uint64_t committed,
                     const RaftEntry *ents, size_t n, uint64_t *ret_last) {
        uint64_t lastnewi, ci;
        int r;

        if (!raft_log_match_term(l, index, log_term_))
                return 0;
        lastnewi = index + n;
        ci = find_conflict(l, ents, n);
        if (ci != 0) {
                /* Never overwrite a committed entry: that would break state machine safety. */
                raft_assert(ci > l->committed);
                raft_assert(ci - (index + 1) < n);
                r = raft_log_append(l, ents + (ci - (index + 1)), (size_t) (n - (ci - (index + 1))), NULL);
                if (r < 0)
                        return r;
        }
        raft_log_commit_to(l, RAFT_MIN(committed, lastnewi));
        *ret_last = lastnewi;
        return 1;
}

uint64_t raft_log_find_conflict_by_term(RaftLog *l, uint64_t index, uint64_t term, uint64_t *ret_term) {
        for (; index > 0; index--) {
                uint64_t t;

                /* Unknown term (compacted or unavailable): assume a possible match. */
                if (raft_log_term_checked(l, index, &t) < 0) {
                        *ret_term = 0;
                        return index;
                }
                if (t <= term) {
                        *ret_term = t;
                        return index;
                }
        }
        *ret_term = 0;
        return 0;
}

void raft_log_commit_to(RaftLog *l, uint64_t tocommit) {
        if (l->committed >= tocommit)
                return;
        /* Commit never passes the last index. */
        raft_assert(tocommit <= raft_log_last_index(l));
        l->committed = tocommit;
}

bool raft_log_maybe_commit(RaftLog *l, uint64_t max_index, uint64_t term) {
        if (max_index <= l->committed)
                return false;
#ifndef RAFT_TESTING_BUG_NO_COMMIT_TERM_CHECK
        /* Only entries of the leader's own term are committed by counting replicas (Raft paper
         * §5.4.2, Figure 8); earlier ones are committed indirectly. */
        if (raft_log_term(l, max_index) != term)
                return false;
#endif
        raft_log_commit_to(l, max_index);
        return true;
}

void raft_log_applied_to(RaftLog *l, uint64_t i) {
        if (i == 0)
                return;
        raft_assert(i <= l->committed && i >= l->applied);
        l->applied = i;
}

void raft_log_stable_to(RaftLog *l, uint64_t i, uint64_t t) {
        uint64_t gt;

        /* Only if the entry is still the one that was persisted: a newer leader may have
         * replaced it meanwhile. */
        if (!unstable_maybe_term(&l->unstable, i, &gt) || gt != t || i < l->unstable.offset)
                return;
        unstable_drop_front(l, i + 1);
}

void raft_log_stable_snap_to(RaftLog *l, uint64_t i) {
        Unstable *u = &l->unstable;

        if (u->snapshot && u->snapshot->metadata.index == i) {
                raft_snapshot_free(l->alloc, u->snapshot);
                u->snapshot = NULL;
        }
}

int raft_log_restore(RaftLog *l, const RaftSnapshot *s) {
        Unstable *u = &l->unstable;
        RaftSnapshot *c;

        c = raft_malloc(l->alloc, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = *s;
        c->data = NULL;
        if (s->len > 0) {
                c->data = raft_memdup(l->alloc, s->data, s->len);
                if (!c->data) {
                        raft_mfree(l->alloc, c);
                        return -ENOMEM;
                }
        }
        unstable_truncate_tail(l, u->offset);
        raft_snapshot_free(l->alloc, u->snapshot);
        u->snapshot = c;
        u->offset = s->metadata.index + 1;
        l->committed = s->metadata.index;
        return 0;
}

bool raft_log_has_next_ents(RaftLog *l) {
        uint64_t off = RAFT_MAX(l->applied + 1, raft_log_first_index(l));

        return l->committed + 1 > off;
}

int raft_log_next_ents(RaftLog *l, EntryVec *out) {
        uint64_t off = RAFT_MAX(l->applied + 1, raft_log_first_index(l));

        out->n = 0;
        if (l->committed + 1 <= off)
                return 0;
        return raft_log_slice(l, off, l->committed + 1, l->max_next_ents_size, out);
}

bool raft_log_has_pending_snapshot(RaftLog *l) {
        return l->unstable.snapshot != NULL;
}

int raft_log_snapshot(RaftLog *l, const RaftSnapshot **ret) {
        int r;

        if (l->unstable.snapshot) {
                *ret = l->unstable.snapshot;
                return 0;
        }
        r = l->storage->snapshot(l->storage->userdata, ret);
        if (r < 0)
                return storage_error(l, r);
        return 0;
}
