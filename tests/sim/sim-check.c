/* SPDX-License-Identifier: MIT */
/* Checkers run after every simulation step: election safety, log matching, leader completeness
 * and state machine safety (Raft paper Figure 3), plus a Wing-Gong linearizability check of the
 * register history at the end of a run. They look at the nodes from outside, through the public
 * API only. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct SimEntryKey {
        uint64_t index, term;
        uint64_t hash;
        uint64_t prev_term;
        bool prev_known;
        bool used;
};

void check_fail(Sim *s, const char *fmt, ...) {
        va_list ap;

        if (s->check.failed)
                return;
        va_start(ap, fmt);
        vsnprintf(s->check.failure, sizeof(s->check.failure), fmt, ap);
        va_end(ap);
        s->check.failed = true;
        s->check.fail_ms = s->now_ms;
        sim_logf(s, "CHECK FAILED: %s", s->check.failure);
}

void check_done(SimChecker *c) {
        free(c->leader_of_term);
        free(c->entries);
        free(c->committed);
        *c = (SimChecker) {};
}

uint64_t sim_entry_hash(const RaftEntry *e) {
        uint64_t h = UINT64_C(14695981039346656037) ^ (uint64_t) e->type;
        const uint8_t *p = e->data;

        for (size_t i = 0; i < e->len; i++)
                h = (h ^ p[i]) * UINT64_C(1099511628211);
        return h ^ e->len;
}

static void *grow_zero(void *p, size_t *cap, size_t need, size_t elem) {
        size_t n = *cap;

        if (need <= n)
                return p;
        while (n < need)
                n = n ? n * 2 : 64;
        p = realloc(p, n * elem);
        if (!p)
                abort();
        memset((uint8_t *) p + *cap * elem, 0, (n - *cap) * elem);
        *cap = n;
        return p;
}

/* Leader completeness: a leader holds every entry committed before its term. */
static void check_leader_completeness(Sim *s, SimNode *n, uint64_t term) {
        SimChecker *c = &s->check;
        RaftStatus st;

        raft_status(n->raft, &st);
        for (uint64_t i = st.first_index; i <= c->max_committed && i < c->cap_committed; i++) {
                uint64_t t;
                int r;

                /* Only entries committed in earlier terms are owed to this leader: a stale
                 * leader of an older term may win (delayed votes) after newer commits. */
                if (c->committed[i].term == 0 || c->committed[i].commit_term >= term)
                        continue;
                r = raft_term_at(n->raft, i, &t);
                if (r == -ENOENT)
                        continue;       /* compacted: inside the snapshot it restored */
                if (r < 0 || t != c->committed[i].term) {
                        check_fail(s, "leader completeness: node %" PRIu64 " leads term %" PRIu64
                                   " but lacks committed entry %" PRIu64 "/%" PRIu64 " (has term %" PRIu64 ")",
                                   n->id, term, c->committed[i].term, i, r < 0 ? 0 : t);
                        return;
                }
        }
}

/* Records what a node has just committed, as soon as it commits it (before it is applied or
 * persisted): a wrong commit decision is caught even if the node crashes right after. */
static void check_commit(Sim *s, SimNode *n) {
        SimChecker *c = &s->check;
        uint64_t commit = raft_get_hard_state(n->raft).commit;

        if (commit <= n->seen_commit)
                return;
        c->committed = grow_zero(c->committed, &c->cap_committed, commit + 1, sizeof(*c->committed));
        for (uint64_t i = n->seen_commit + 1; i <= commit; i++) {
                uint64_t t;

                if (raft_term_at(n->raft, i, &t) < 0)
                        continue;       /* compacted: came with a snapshot */
                if (c->committed[i].term == 0) {
                        c->committed[i].term = t;
                        c->committed[i].commit_term = raft_get_hard_state(n->raft).term;
                        if (i > c->max_committed)
                                c->max_committed = i;
                } else if (c->committed[i].term != t) {
                        check_fail(s, "state machine safety: node %" PRIu64 " commits index %" PRIu64
                                   " with term %" PRIu64 ", but term %" PRIu64 " was committed there before",
                                   n->id, i, t, c->committed[i].term);
                        return;
                }
        }
        n->seen_commit = commit;
}

void check_leader(Sim *s, SimNode *n) {
        SimChecker *c = &s->check;
        uint64_t term;

        if (!n->alive)
                return;
        check_commit(s, n);
        if (raft_soft_state(n->raft).role != RAFT_LEADER)
                return;
        term = raft_get_hard_state(n->raft).term;
        c->leader_of_term = grow_zero(c->leader_of_term, &c->cap_terms, term + 1, sizeof(uint64_t));
        if (c->leader_of_term[term] == n->id)
                return;
        if (c->leader_of_term[term] != 0) {
                check_fail(s, "election safety: nodes %" PRIu64 " and %" PRIu64 " both lead term %" PRIu64,
                           c->leader_of_term[term], n->id, term);
                return;
        }
        c->leader_of_term[term] = n->id;
        s->stat_elections++;
        sim_logf(s, "node %" PRIu64 " is leader of term %" PRIu64, n->id, term);
        check_leader_completeness(s, n, term);
}

static SimEntryKey *entry_slot(SimChecker *c, uint64_t index, uint64_t term) {
        size_t mask, i;

        if (c->n_entries * 2 >= c->cap_entries) {
                SimEntryKey *old = c->entries;
                size_t oc = c->cap_entries;

                c->cap_entries = oc ? oc * 2 : 1024;
                c->entries = calloc(c->cap_entries, sizeof(SimEntryKey));
                if (!c->entries)
                        abort();
                c->n_entries = 0;
                for (size_t k = 0; k < oc; k++)
                        if (old[k].used) {
                                SimEntryKey *e = entry_slot(c, old[k].index, old[k].term);
                                *e = old[k];
                                c->n_entries++;
                        }
                free(old);
        }
        mask = c->cap_entries - 1;
        i = (size_t) ((index * UINT64_C(0x9e3779b97f4a7c15)) ^ (term * UINT64_C(0xc2b2ae3d27d4eb4f))) & mask;
        while (c->entries[i].used && (c->entries[i].index != index || c->entries[i].term != term))
                i = (i + 1) & mask;
        return &c->entries[i];
}

/* Log matching, checked inductively: two entries with the same index and term have the same
 * content and the same predecessor term. */
void check_persisted(Sim *s, SimNode *n, const RaftEntry *es, size_t k) {
        SimChecker *c = &s->check;

        for (size_t i = 0; i < k; i++) {
                const RaftEntry *e = &es[i];
                uint64_t h = sim_entry_hash(e), prev = 0;
                bool prev_known;
                SimEntryKey *slot;

                if (i > 0) {
                        prev = es[i - 1].term;
                        prev_known = true;
                } else {
                        prev_known = raft_term_at(n->raft, e->index - 1, &prev) == 0;
                }
                slot = entry_slot(c, e->index, e->term);
                if (!slot->used) {
                        *slot = (SimEntryKey) { .index = e->index, .term = e->term, .hash = h,
                                                .prev_term = prev, .prev_known = prev_known, .used = true };
                        c->n_entries++;
                        continue;
                }
                if (slot->hash != h) {
                        check_fail(s, "log matching: node %" PRIu64 " has entry %" PRIu64 "/%" PRIu64
                                   " with different content than another node", n->id, e->term, e->index);
                        return;
                }
                if (prev_known && slot->prev_known && slot->prev_term != prev) {
                        check_fail(s, "log matching: entry %" PRIu64 "/%" PRIu64 " follows term %" PRIu64
                                   " on node %" PRIu64 " but term %" PRIu64 " elsewhere",
                                   e->term, e->index, prev, n->id, slot->prev_term);
                        return;
                }
                if (prev_known && !slot->prev_known) {
                        slot->prev_term = prev;
                        slot->prev_known = true;
                }
        }
}

/* State machine safety: no two nodes apply different entries at the same index. */
void check_applied(Sim *s, SimNode *n, const RaftEntry *e) {
        SimChecker *c = &s->check;
        uint64_t h = sim_entry_hash(e);

        c->committed = grow_zero(c->committed, &c->cap_committed, e->index + 1, sizeof(*c->committed));
        if (c->committed[e->index].term == e->term && c->committed[e->index].hash == 0)
                c->committed[e->index].hash = h;        /* seen committed before, now its content */
        if (c->committed[e->index].term == 0) {
                c->committed[e->index].term = e->term;
                c->committed[e->index].hash = h;
                c->committed[e->index].commit_term = raft_get_hard_state(n->raft).term;
                if (e->index > c->max_committed)
                        c->max_committed = e->index;
                return;
        }
        if (c->committed[e->index].term != e->term || c->committed[e->index].hash != h)
                check_fail(s, "state machine safety: node %" PRIu64 " applies %" PRIu64 "/%" PRIu64
                           " but %" PRIu64 "/%" PRIu64 " was applied before", n->id, e->term, e->index,
                           c->committed[e->index].term, e->index);
}

/* ---- linearizability (Wing & Gong, with Lowe's memoization, as in Porcupine) ---- */

typedef struct LinEntry {
        struct LinEntry *prev, *next;
        struct LinEntry *match;         /* call -> its return; NULL for returns */
        const SimOp *op;
        unsigned bit;
        bool is_call;
        uint64_t time;
} LinEntry;

typedef struct LinCache {
        uint64_t *keys;                 /* per slot: nw bitset words, the state, a used flag */
        uint64_t *scratch;              /* nw + 1 words */
        size_t nw, n, cap;
} LinCache;

static uint64_t lin_hash(const uint64_t *k, size_t nw) {
        uint64_t h = 0x12345;

        for (size_t i = 0; i <= nw; i++)
                h = (h ^ k[i]) * UINT64_C(0x100000001b3) + (h >> 29);
        return h;
}

/* Inserts (bits, state); returns false if it was already there. */
static bool lin_cache_add(LinCache *c, const uint64_t *bits, uint64_t state) {
        size_t w = c->nw + 1, i;

        if (c->n * 2 >= c->cap) {
                LinCache n = { .nw = c->nw, .cap = c->cap ? c->cap * 2 : 1024, .scratch = c->scratch };

                n.keys = calloc(n.cap, (w + 1) * sizeof(uint64_t));
                if (!n.keys)
                        abort();
                for (size_t k = 0; k < c->cap; k++) {
                        uint64_t *e = c->keys + k * (w + 1);
                        if (e[w])
                                (void) lin_cache_add(&n, e, e[c->nw]);
                }
                free(c->keys);
                *c = n;
        }
        uint64_t *key = c->scratch;
        memcpy(key, bits, c->nw * sizeof(uint64_t));
        key[c->nw] = state;
        i = (size_t) lin_hash(key, c->nw) & (c->cap - 1);
        for (;;) {
                uint64_t *e = c->keys + i * (w + 1);

                if (!e[w]) {
                        memcpy(e, key, w * sizeof(uint64_t));
                        e[w] = 1;
                        c->n++;
                        return true;
                }
                if (memcmp(e, key, w * sizeof(uint64_t)) == 0)
                        return false;
                i = (i + 1) & (c->cap - 1);
        }
}

static int cmp_entry(const void *a, const void *b) {
        const LinEntry *x = *(LinEntry *const *) a, *y = *(LinEntry *const *) b;

        if (x->time != y->time)
                return x->time < y->time ? -1 : 1;
        /* Same millisecond: calls first, so such operations count as concurrent. */
        if (x->is_call != y->is_call)
                return x->is_call ? -1 : 1;
        return x->op->id < y->op->id ? -1 : x->op->id > y->op->id;
}

static void lift(LinEntry *e) {
        e->prev->next = e->next;
        e->next->prev = e->prev;
        e->match->prev->next = e->match->next;
        if (e->match->next)
                e->match->next->prev = e->match->prev;
}

static void unlift(LinEntry *e) {
        e->match->prev->next = e->match;
        if (e->match->next)
                e->match->next->prev = e->match;
        e->prev->next = e;
        e->next->prev = e;
}

/* Returns 1 linearizable, 0 not, -1 gave up (search budget). */
static int check_key(Sim *s, uint8_t key, const SimOp **ops, size_t n) {
        LinEntry *ents = calloc(2 * n + 1, sizeof(LinEntry)), **sorted = calloc(2 * n, sizeof(LinEntry *));
        size_t nw = (n + 63) / 64, depth = 0;
        uint64_t *bits = calloc(nw + 1, sizeof(uint64_t)), state = 0, budget = 20 * 1000 * 1000;
        struct { LinEntry *e; uint64_t state; } *stack = calloc(n + 1, sizeof(*stack));
        LinCache cache = { .nw = nw, .scratch = calloc(nw + 1, sizeof(uint64_t)) };
        LinEntry *head = &ents[2 * n], *e;
        int result = 1;

        if (!ents || !sorted || !bits || !stack || !cache.scratch)
                abort();
        for (size_t i = 0; i < n; i++) {
                LinEntry *c = &ents[2 * i], *r = &ents[2 * i + 1];

                *c = (LinEntry) { .op = ops[i], .bit = (unsigned) i, .is_call = true, .time = ops[i]->invoke_ms, .match = r };
                *r = (LinEntry) { .op = ops[i], .bit = (unsigned) i, .time = ops[i]->return_ms };
                sorted[2 * i] = c;
                sorted[2 * i + 1] = r;
        }
        qsort(sorted, 2 * n, sizeof(LinEntry *), cmp_entry);
        *head = (LinEntry) {};
        e = head;
        for (size_t i = 0; i < 2 * n; i++) {
                e->next = sorted[i];
                sorted[i]->prev = e;
                e = sorted[i];
        }
        e->next = NULL;

        e = head->next;
        while (head->next) {
                if (budget-- == 0) {
                        result = -1;
                        break;
                }
                if (e->is_call) {
                        const SimOp *op = e->op;
                        bool ok = op->is_write || op->value == state;
                        uint64_t ns = op->is_write ? op->value : state;

                        if (ok) {
                                bits[e->bit / 64] |= UINT64_C(1) << (e->bit % 64);
                                if (lin_cache_add(&cache, bits, ns)) {
                                        stack[depth].e = e;
                                        stack[depth].state = state;
                                        depth++;
                                        state = ns;
                                        lift(e);
                                        e = head->next;
                                        continue;
                                }
                                bits[e->bit / 64] &= ~(UINT64_C(1) << (e->bit % 64));
                        }
                        e = e->next;
                } else {
                        /* A return with its call not linearized yet: backtrack. */
                        if (depth == 0) {
                                result = 0;
                                break;
                        }
                        depth--;
                        e = stack[depth].e;
                        state = stack[depth].state;
                        bits[e->bit / 64] &= ~(UINT64_C(1) << (e->bit % 64));
                        unlift(e);
                        e = e->next;
                }
        }
        if (result == 0) {
                const SimOp *bad = e ? e->op : NULL;

                check_fail(s, "linearizability: history of key %u (%zu ops) has no linearization%s", key, n,
                           bad ? "" : "");
                if (bad)
                        sim_logf(s, "  stuck at op %" PRIu32 " (%s value %" PRIu64 ", %" PRIu64 "..%" PRIu64 "ms)",
                                 bad->id, bad->is_write ? "write" : "read", bad->value, bad->invoke_ms, bad->return_ms);
        }
        free(ents);
        free(sorted);
        free(bits);
        free(stack);
        free(cache.keys);
        free(cache.scratch);
        return result;
}

bool check_linearizable(Sim *s) {
        const SimOp **ops = calloc(s->n_ops + 1, sizeof(SimOp *));
        bool ok = true;

        if (!ops)
                abort();
        for (uint8_t key = 0; key < SIM_KEYS && ok; key++) {
                size_t n = 0;

                for (size_t i = 0; i < s->n_ops; i++) {
                        const SimOp *op = &s->ops[i];
                        bool observed = false;

                        if (op->key != key || op->status == SIM_OP_FAILED)
                                continue;
                        if (op->status == SIM_OP_PENDING && !op->is_write)
                                continue;       /* an unanswered read has no effect */
                        if (op->status != SIM_OP_OK) {
                                /* A write that may or may not have happened and that no read saw
                                 * can always be placed last: leave it out. */
                                for (size_t j = 0; j < s->n_ops && !observed; j++)
                                        observed = !s->ops[j].is_write && s->ops[j].status == SIM_OP_OK &&
                                                   s->ops[j].key == key && s->ops[j].value == op->value;
                                if (!observed)
                                        continue;
                        }
                        ops[n++] = op;
                }
                switch (check_key(s, key, ops, n)) {
                case 0:
                        ok = false;
                        break;
                case -1:
                        s->stat_lin_gave_up++;  /* inconclusive, reported by sim-fuzz */
                        break;
                default:
                        break;
                }
        }
        free(ops);
        return ok;
}
