/* SPDX-License-Identifier: MIT */
/* The simulated cluster: nodes driving raft_core through the Ready loop, a disk that loses
 * unsynced writes on crash, a network that drops, duplicates, delays and partitions, clients of
 * a replicated register, all under one virtual clock and seeded generators. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim-internal.h"

typedef enum SimWriteType { W_HARD_STATE, W_ENTRIES, W_SNAPSHOT } SimWriteType;

struct SimPendingWrite {
        SimWriteType type;
        RaftHardState hs;
        RaftEntry *ents;                /* entries and data in one allocation */
        size_t n;
        RaftSnapshot snap;              /* data owned */
};

#define RAFT_MAX_U64(a, b) ((a) > (b) ? (a) : (b))

static void oom(void) {
        fprintf(stderr, "sim: out of memory\n");
        abort();
}

void *sim_xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *sim_xrealloc(void *p, size_t n) {
        p = realloc(p, n ? n : 1);
        if (!p)
                oom();
        return p;
}

uint64_t sim_rand(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

unsigned sim_rand_below(uint64_t *state, unsigned n) {
        return n == 0 ? 0 : (unsigned) (sim_rand(state) % n);
}

bool sim_roll(uint64_t *state, unsigned permille) {
        return permille > 0 && sim_rand_below(state, 1000) < permille;
}

void sim_logf(Sim *s, const char *fmt, ...) {
        va_list ap;

        if (!s->o.trace)
                return;
        if (!s->o.manual)
                fprintf(s->o.trace, "[%6" PRIu64 "ms] ", s->now_ms);
        va_start(ap, fmt);
        vfprintf(s->o.trace, fmt, ap);
        va_end(ap);
        fputc('\n', s->o.trace);
}

/* ---- formatting ---- */





/* ---- event queue ---- */

static bool ev_less(const SimEvent *a, const SimEvent *b) {
        return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

void sim_ev_push(Sim *s, SimEvent e) {
        size_t i;

        e.seq = s->seq++;
        GROW(s->events, s->cap_events, s->n_events + 1);
        i = s->n_events++;
        while (i > 0) {
                size_t p = (i - 1) / 2;
                if (!ev_less(&e, &s->events[p]))
                        break;
                s->events[i] = s->events[p];
                i = p;
        }
        s->events[i] = e;
}

static SimEvent ev_pop(Sim *s) {
        SimEvent top = s->events[0], last = s->events[--s->n_events];
        size_t i = 0;

        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                const SimEvent *best = &last;

                if (l < s->n_events && ev_less(&s->events[l], best)) {
                        m = l;
                        best = &s->events[l];
                }
                if (r < s->n_events && ev_less(&s->events[r], best))
                        m = r;
                if (m == i)
                        break;
                s->events[i] = s->events[m];
                i = m;
        }
        if (s->n_events > 0)
                s->events[i] = last;
        return top;
}

/* ---- register state machine ---- */







/* ---- disk ---- */

static void pending_free(SimPendingWrite *w) {
        free(w->ents);
        free((void *) w->snap.data);
}

static void disk_apply(RaftMemoryStorage *ms, const SimPendingWrite *w) {
        int r = 0;

        switch (w->type) {
        case W_HARD_STATE:
                r = raft_memory_storage_set_hard_state(ms, &w->hs);
                break;
        case W_ENTRIES:
                r = raft_memory_storage_append(ms, w->ents, w->n);
                break;
        case W_SNAPSHOT:
                r = raft_memory_storage_apply_snapshot(ms, &w->snap);
                if (r == -ESTALE)
                        r = 0;
                break;
        }
        if (r < 0) {
                fprintf(stderr, "sim: disk write failed: %s\n", strerror(-r));
                abort();
        }
}

static void disk_write(SimNode *n, SimPendingWrite w) {
        disk_apply(n->ms, &w);
        GROW(n->pending, n->cap_pending, n->n_pending + 1);
        n->pending[n->n_pending++] = w;
}

static void disk_sync(SimNode *n, size_t upto) {
        for (size_t i = 0; i < upto; i++) {
                disk_apply(n->durable, &n->pending[i]);
                pending_free(&n->pending[i]);
        }
        for (size_t i = upto; i < n->n_pending; i++)
                pending_free(&n->pending[i]);
        n->n_pending = 0;
}

static SimPendingWrite write_entries(const RaftEntry *es, size_t k) {
        size_t bytes = k * sizeof(RaftEntry);
        uint8_t *p;
        RaftEntry *c;

        for (size_t i = 0; i < k; i++)
                bytes += es[i].len;
        c = sim_xmalloc(bytes);
        p = (uint8_t *) (c + k);
        for (size_t i = 0; i < k; i++) {
                c[i] = es[i];
                if (es[i].len > 0) {
                        memcpy(p, es[i].data, es[i].len);
                        c[i].data = p;
                        p += es[i].len;
                }
        }
        return (SimPendingWrite) { .type = W_ENTRIES, .ents = c, .n = k };
}

static RaftMemoryStorage *storage_clone(RaftMemoryStorage *src) {
        RaftMemoryStorage *ms;
        RaftStorage st;
        const RaftSnapshot *snap;
        RaftHardState hs;
        uint64_t fi, li;

        if (raft_memory_storage_new(&ms, NULL) < 0)
                oom();
        raft_memory_storage_get(src, &st);
        (void) st.snapshot(st.userdata, &snap);
        if (snap->metadata.index > 0)
                disk_apply(ms, &(SimPendingWrite) { .type = W_SNAPSHOT, .snap = *snap });
        fi = RAFT_MAX_U64(raft_memory_storage_first_index(src), raft_memory_storage_first_index(ms));
        li = raft_memory_storage_last_index(src);
        if (li >= fi) {
                const RaftEntry *es;
                size_t k;

                if (st.entries(st.userdata, fi, li + 1, RAFT_NO_LIMIT, &es, &k) == 0)
                        disk_apply(ms, &(SimPendingWrite) { .type = W_ENTRIES, .ents = (RaftEntry *) es, .n = k });
        }
        raft_memory_storage_hard_state(src, &hs);
        (void) raft_memory_storage_set_hard_state(ms, &hs);
        return ms;
}

/* ---- nodes ---- */

static void raft_trace_cb(void *userdata, uint64_t id, const char *line) {
        Sim *s = userdata;

        sim_logf(s, "  [raft %" PRIu64 "] %s", id, line);
}

static int node_start(Sim *s, SimNode *n) {
        const RaftSnapshot *snap;
        RaftStorage st;
        RaftConfig c;
        int r;

        raft_memory_storage_get(n->ms, &st);
        (void) st.snapshot(st.userdata, &snap);
        sim_sm_restore(n, snap);
        c = (RaftConfig) {
                .id = n->id,
                .election_tick = s->o.election_tick,
                .heartbeat_tick = s->o.heartbeat_tick,
                .applied = snap->metadata.index,
                .max_size_per_msg = s->o.max_size_per_msg,
                .max_inflight_msgs = s->o.max_inflight,
                .pre_vote = s->o.pre_vote,
                .check_quorum = s->o.check_quorum,
                .seed = s->o.seed * 1000003 + n->id * 101 + n->incarnation,
                .trace = s->o.trace_raft ? raft_trace_cb : NULL,
                .trace_userdata = s,
        };
        r = raft_new(&n->raft, &c, &st);
        if (r < 0)
                return r;
        n->alive = true;
        n->busy = false;
        n->seen_commit = raft_get_hard_state(n->raft).commit;
        n->ready_commit = n->seen_commit;
        return 0;
}

int sim_add_node(Sim *s, uint64_t id) {
        SimNode *n;

        if (id == 0 || id > SIM_MAX_NODES)
                return -EINVAL;
        n = &s->nodes[id];
        if (n->exists)
                return -EEXIST;
        *n = (SimNode) { .id = id, .exists = true };
        if (raft_memory_storage_new(&n->ms, NULL) < 0 || raft_memory_storage_new(&n->durable, NULL) < 0)
                oom();
        if (id > s->max_id)
                s->max_id = (unsigned) id;
        sim_logf(s, "node %" PRIu64 " added (empty)", id);
        return node_start(s, n);
}

static void fail_waiting_ops(Sim *s, SimNode *n) {
        for (size_t i = 0; i < s->n_ops; i++) {
                SimOp *op = &s->ops[i];

                if (op->node == n->id && op->status == SIM_OP_PENDING)
                        sim_op_finish(s, op, op->is_write ? SIM_OP_UNKNOWN : SIM_OP_FAILED);
        }
        n->n_waiting_reads = 0;
}

void sim_crash(Sim *s, uint64_t id) {
        SimNode *n = &s->nodes[id];
        size_t kept;

        if (!n->exists || !n->alive)
                return;
        /* Unsynced writes: a random prefix reaches the disk, the rest is lost. */
        kept = n->n_pending ? sim_rand_below(&s->rng_misc, (unsigned) n->n_pending + 1) : 0;
        sim_logf(s, "node %" PRIu64 " crashed (%zu of %zu unsynced writes survive)", id, kept, n->n_pending);
        disk_sync(n, kept);
        n->raft = raft_free(n->raft);
        n->ms = raft_memory_storage_free(n->ms);
        n->alive = false;
        n->busy = false;
        n->incarnation++;
        fail_waiting_ops(s, n);
}

static void node_handle_ready(Sim *s, SimNode *n);

int sim_restart(Sim *s, uint64_t id) {
        SimNode *n = &s->nodes[id];
        int r;

        if (!n->exists || n->alive)
                return 0;
        n->ms = storage_clone(n->durable);
        r = node_start(s, n);
        if (r < 0) {
                fprintf(stderr, "sim: restarting node %" PRIu64 " failed: %s\n", id, strerror(-r));
                abort();
        }
        sim_logf(s, "node %" PRIu64 " restarted at applied=%" PRIu64, id, n->applied);
        return 0;
}

/* ---- network ---- */

static void report_snap_later(Sim *s, uint64_t from, uint64_t to, bool ok, uint64_t at) {
        sim_ev_push(s, (SimEvent) { .at = at, .type = EV_REPORT_SNAP, .node = from, .from = to,
                                .arg = ok, .incarnation = s->nodes[from].incarnation });
}

static void send_message(Sim *s, const RaftMessage *m) {
        size_t len = raft_message_encoded_size(m);
        uint8_t *buf;
        unsigned delay;
        int r;

        s->stat_msgs++;
        if (s->o.trace) {
                char b[1024];
                sim_fmt_msg(b, sizeof(b), m);
                sim_logf(s, "  send %s", b);
        }
        if (m->type == RAFT_MSG_SNAP)
                s->stat_snapshots_sent++;
        buf = sim_xmalloc(len);
        r = raft_message_encode(m, buf, len);
        if (r < 0 || (size_t) r != len) {
                fprintf(stderr, "sim: encode failed\n");
                abort();
        }
        if (s->o.manual) {
                GROW(s->inflight, s->cap_inflight, s->n_inflight + 1);
                s->inflight[s->n_inflight++] = (SimEvent) { .type = EV_DELIVER, .node = m->to,
                                                            .from = m->from, .buf = buf, .len = len };
                return;
        }
        if (m->to > SIM_MAX_NODES || !s->nodes[m->to].exists || sim_roll(&s->rng_net, s->net.drop_permille)) {
                s->stat_dropped++;
                free(buf);
                if (m->type == RAFT_MSG_SNAP)
                        report_snap_later(s, m->from, m->to, false, s->now_ms + s->net.delay_max_ms);
                return;
        }
        for (int copy = 0; copy < 2; copy++) {
                uint8_t *b = buf;

                delay = s->net.delay_min_ms + sim_rand_below(&s->rng_net, s->net.delay_max_ms - s->net.delay_min_ms + 1);
                if (sim_roll(&s->rng_net, s->net.long_delay_permille))
                        delay += sim_rand_below(&s->rng_net, s->net.long_delay_max_ms + 1);
                if (copy == 1) {
                        b = sim_xmalloc(len);
                        memcpy(b, buf, len);
                }
                sim_ev_push(s, (SimEvent) { .at = s->now_ms + delay, .type = EV_DELIVER, .node = m->to,
                                        .from = m->from, .buf = b, .len = len });
                if (m->type == RAFT_MSG_SNAP || !sim_roll(&s->rng_net, s->net.dup_permille))
                        break;
        }
}

void sim_node_after_input(Sim *s, SimNode *n) {
        check_leader(s, n);
        if (!s->o.manual)
                node_handle_ready(s, n);
}

static void deliver(Sim *s, SimEvent *e) {
        SimNode *n = e->node <= SIM_MAX_NODES ? &s->nodes[e->node] : NULL;
        RaftMessage m;
        int r;

        /* Like etcd's transport, members drop traffic from removed members: without pre-vote
         * and check-quorum, a removed node that missed its removal would keep disrupting the
         * cluster with elections (thesis §4.2.3). Scripts show the core's own behavior. */
        if (!n || !n->exists || !n->alive || s->net.blocked[e->from][e->node] ||
            (!s->o.manual && e->from <= SIM_MAX_NODES && (s->removed >> e->from & 1))) {
                s->stat_dropped++;
                if (e->len > 1 && e->buf[1] == RAFT_MSG_SNAP)
                        report_snap_later(s, e->from, e->node, false, s->now_ms);
                free(e->buf);
                return;
        }
        if (n->busy) {
                /* The node is inside a Ready waiting for its disk: the message waits in the
                 * socket buffer. */
                SimEvent later = *e;
                later.at = n->busy_until;
                sim_ev_push(s, later);
                return;
        }
        r = raft_message_decode(e->buf, e->len, NULL, &m);
        free(e->buf);
        if (r < 0) {
                check_fail(s, "codec: decoding our own message failed: %s", strerror(-r));
                return;
        }
        if (s->o.trace) {
                char b[1024];
                sim_fmt_msg(b, sizeof(b), &m);
                sim_logf(s, "  recv %s", b);
        }
        r = raft_step(n->raft, &m);
        if (r < 0 && r != -ENOENT && r != -EBUSY && r != -ENOTCONN && r != -EPERM)
                sim_logf(s, "  node %" PRIu64 ": step failed: %s", n->id, strerror(-r));
        if (m.type == RAFT_MSG_SNAP)
                report_snap_later(s, e->from, e->node, true, s->now_ms);
        raft_message_free_contents(&m, NULL);
        sim_node_after_input(s, n);
}

/* ---- the Ready loop ---- */

static void note_conf(Sim *s, uint64_t index, const RaftConfState *cs) {
        if (index > s->latest_conf_index) {
                s->latest_conf_index = index;
                s->latest_conf = *cs;
        }
}

bool sim_is_member(Sim *s, uint64_t id) {
        return raft_conf_state_has(&s->latest_conf, id, NULL);
}

static void apply_conf_change(Sim *s, SimNode *n, const RaftEntry *e) {
        RaftConfChange cc;
        int r;

        if (raft_conf_change_decode(e->data, e->len, &cc) < 0) {
                check_fail(s, "node %" PRIu64 ": undecodable conf change at %" PRIu64, n->id, e->index);
                return;
        }
        r = raft_apply_conf_change(n->raft, &cc, &n->conf);
        if (r < 0) {
                sim_logf(s, "  node %" PRIu64 ": conf change %s %" PRIu64 " refused: %s", n->id,
                         raft_conf_change_type_to_string(cc.type), cc.node_id, strerror(-r));
                return;
        }
        note_conf(s, e->index, &n->conf);
        if (cc.type == RAFT_CONF_REMOVE_NODE && cc.node_id <= SIM_MAX_NODES)
                s->removed |= UINT64_C(1) << cc.node_id;
        if (cc.type != RAFT_CONF_REMOVE_NODE && cc.node_id <= SIM_MAX_NODES && !s->nodes[cc.node_id].exists)
                (void) sim_add_node(s, cc.node_id);
}

static void maybe_compact(Sim *s, SimNode *n) {
        uint8_t snap[SIM_SNAPSHOT_SIZE];
        uint64_t first = raft_memory_storage_first_index(n->ms), at;

        if (s->o.compact_every == 0 || n->applied < first + s->o.compact_every)
                return;
        sim_sm_snapshot(n, snap);
        if (raft_memory_storage_create_snapshot(n->ms, n->applied, &n->conf, snap, sizeof(snap)) < 0 ||
            raft_memory_storage_create_snapshot(n->durable, n->applied, &n->conf, snap, sizeof(snap)) < 0)
                return;
        at = n->applied > s->o.compact_keep ? n->applied - s->o.compact_keep : 0;
        if (at >= first) {
                (void) raft_memory_storage_compact(n->ms, at);
                if (at > raft_memory_storage_first_index(n->durable) - 1 &&
                    at <= raft_memory_storage_last_index(n->durable))
                        (void) raft_memory_storage_compact(n->durable, at);
        }
        sim_logf(s, "  node %" PRIu64 ": snapshot at %" PRIu64 ", compacted to %" PRIu64, n->id, n->applied, at);
}

static void trace_ready(Sim *s, SimNode *n, const RaftReady *rd) {
        char b[1024];

        if (!s->o.trace)
                return;
        sim_logf(s, "> %" PRIu64 " ready%s", n->id, rd->must_sync ? " (must sync)" : "");
        if (rd->has_soft_state)
                sim_logf(s, "  soft: %s lead=%" PRIu64, raft_role_to_string(rd->soft_state.role), rd->soft_state.lead);
        if (rd->has_hard_state)
                sim_logf(s, "  hard: term=%" PRIu64 " vote=%" PRIu64 " commit=%" PRIu64,
                         rd->hard_state.term, rd->hard_state.vote, rd->hard_state.commit);
        if (rd->snapshot) {
                sim_fmt_conf(b, sizeof(b), &rd->snapshot->metadata.conf_state);
                sim_logf(s, "  snapshot: index=%" PRIu64 " term=%" PRIu64 " %s",
                         rd->snapshot->metadata.index, rd->snapshot->metadata.term, b);
        }
        for (size_t i = 0; i < rd->n_entries; i++) {
                sim_fmt_entry(b, sizeof(b), &rd->entries[i]);
                sim_logf(s, "  persist %s", b);
        }
        for (size_t i = 0; i < rd->n_committed_entries; i++) {
                sim_fmt_entry(b, sizeof(b), &rd->committed_entries[i]);
                sim_logf(s, "  apply %s", b);
        }
        for (size_t i = 0; i < rd->n_read_states; i++) {
                sim_fmt_data(b, sizeof(b), rd->read_states[i].ctx, rd->read_states[i].ctx_len);
                sim_logf(s, "  read-state index=%" PRIu64 " ctx=%s", rd->read_states[i].index, b);
        }
}

static void finish_ready(Sim *s, SimNode *n) {
        RaftReady *rd = &n->rd;
        int r;

        if (rd->must_sync)
                disk_sync(n, n->n_pending);
        n->busy = false;
        for (size_t i = 0; i < rd->n_messages; i++)
                send_message(s, &rd->messages[i]);
        if (!s->o.manual && n->crash_after_vote_permille > 0)
                for (size_t i = 0; i < rd->n_messages; i++) {
                        const RaftMessage *m = &rd->messages[i];

                        if (m->type != RAFT_MSG_VOTE_RESP || m->reject ||
                            !sim_roll(&s->rng_misc, n->crash_after_vote_permille))
                                continue;
                        sim_logf(s, "node %" PRIu64 " crashes right after voting for %" PRIu64, n->id, m->to);
                        sim_crash(s, n->id);
                        sim_schedule_restart(s, n->id, s->now_ms + 1 + sim_rand_below(&s->rng_misc, n->auto_restart_ms + 1));
                        return;
                }
        if (rd->snapshot) {
                sim_sm_restore(n, rd->snapshot);
                note_conf(s, rd->snapshot->metadata.index, &rd->snapshot->metadata.conf_state);
                /* Writes waiting on this node that the snapshot contains are done. */
                for (size_t i = 0; i < s->n_ops; i++) {
                        SimOp *op = &s->ops[i];

                        if (op->node == n->id && op->is_write && op->status == SIM_OP_PENDING &&
                            (n->applied_ops[op->id / 8] & (1u << (op->id % 8))))
                                sim_op_finish(s, op, SIM_OP_OK);
                }
        }
        for (size_t i = 0; i < rd->n_committed_entries; i++) {
                const RaftEntry *e = &rd->committed_entries[i];

                if (e->index != n->applied + 1)
                        check_fail(s, "node %" PRIu64 ": applying index %" PRIu64 " after %" PRIu64,
                                   n->id, e->index, n->applied);
                check_applied(s, n, e);
                if (e->type == RAFT_ENTRY_CONF_CHANGE)
                        apply_conf_change(s, n, e);
                else
                        sim_sm_apply(s, n, e);
                n->applied = e->index;
                s->stat_applied++;
        }
        for (size_t i = 0; i < rd->n_read_states; i++) {
                const RaftReadState *rs = &rd->read_states[i];
                uint32_t id;

                if (rs->ctx_len != 5 || ((const uint8_t *) rs->ctx)[0] != 'R')
                        continue;
                memcpy(&id, (const uint8_t *) rs->ctx + 1, 4);
                if (id >= s->n_ops || s->ops[id].node != n->id || s->ops[id].status != SIM_OP_PENDING)
                        continue;
                s->ops[id].have_read_index = true;
                s->ops[id].read_index = rs->index;
                GROW(n->waiting_reads, n->cap_waiting_reads, n->n_waiting_reads + 1);
                n->waiting_reads[n->n_waiting_reads++] = id;
        }
        r = raft_advance(n->raft, rd);
        if (r < 0) {
                check_fail(s, "node %" PRIu64 ": advance failed: %s", n->id, strerror(-r));
                return;
        }
        sim_serve_reads(s, n);
        maybe_compact(s, n);
        check_leader(s, n);
}

/* Persists the Ready; returns false when the node waits for its disk (or crashed). */
static bool start_ready(Sim *s, SimNode *n) {
        RaftReady *rd = &n->rd;
        int r;

        r = raft_ready(n->raft, rd);
        if (r < 0) {
                check_fail(s, "node %" PRIu64 ": ready failed: %s", n->id, strerror(-r));
                return false;
        }
        trace_ready(s, n, rd);
        if (rd->snapshot) {
                RaftSnapshot c = *rd->snapshot;

                c.data = rd->snapshot->len ? memcpy(sim_xmalloc(c.len), c.data, c.len) : NULL;
                disk_write(n, (SimPendingWrite) { .type = W_SNAPSHOT, .snap = c });
        }
        if (rd->n_entries > 0) {
                disk_write(n, write_entries(rd->entries, rd->n_entries));
                check_persisted(s, n, rd->entries, rd->n_entries);
        }
        if (rd->has_hard_state)
                disk_write(n, (SimPendingWrite) { .type = W_HARD_STATE, .hs = rd->hard_state });
        bool commits = rd->has_hard_state && rd->hard_state.commit > n->ready_commit;
        if (rd->has_hard_state)
                n->ready_commit = rd->hard_state.commit;
        if (!s->o.manual && ((rd->has_soft_state && rd->soft_state.role == RAFT_LEADER &&
                              sim_roll(&s->rng_misc, n->crash_new_leader_permille)) ||
                             (commits && raft_soft_state(n->raft).role == RAFT_LEADER &&
                              sim_roll(&s->rng_misc, n->crash_leader_commit_permille)) ||
                             sim_roll(&s->rng_misc, n->crash_at_ready_permille))) {
                sim_logf(s, "node %" PRIu64 " crashes in the middle of a Ready", n->id);
                sim_crash(s, n->id);
                if (n->auto_restart_ms)
                        sim_schedule_restart(s, n->id, s->now_ms + 1 + sim_rand_below(&s->rng_misc, n->auto_restart_ms));
                return false;
        }
        if (rd->must_sync && n->sync_ms > 0 && !s->o.manual) {
                n->busy = true;
                n->busy_until = s->now_ms + n->sync_ms;
                sim_ev_push(s, (SimEvent) { .at = n->busy_until, .type = EV_SYNC_DONE, .node = n->id,
                                        .incarnation = n->incarnation });
                return false;
        }
        finish_ready(s, n);
        return true;
}

static void node_handle_ready(Sim *s, SimNode *n) {
        for (unsigned rounds = 0; n->alive && !n->busy && raft_has_ready(n->raft); rounds++) {
                if (rounds > 1000) {
                        check_fail(s, "node %" PRIu64 ": Ready loop does not settle", n->id);
                        return;
                }
                if (!start_ready(s, n))
                        return;
        }
}

void sim_process_ready(Sim *s, uint64_t id) {
        SimNode *n = &s->nodes[id];

        if (n->exists && n->alive && !n->busy && raft_has_ready(n->raft))
                (void) start_ready(s, n);
}

/* ---- clients ---- */







/* ---- the event loop ---- */

static void run_event(Sim *s, SimEvent *e) {
        SimNode *n = e->node <= SIM_MAX_NODES ? &s->nodes[e->node] : NULL;

        s->now_ms = e->at;
        s->events_run++;
        switch (e->type) {
        case EV_TICK:
                for (unsigned id = 1; id <= s->max_id; id++) {
                        SimNode *t = &s->nodes[id];

                        if (t->exists && t->alive && !t->busy) {
                                (void) raft_tick(t->raft);
                                sim_node_after_input(s, t);
                        }
                }
                sim_ev_push(s, (SimEvent) { .at = s->now_ms + s->o.tick_ms, .type = EV_TICK });
                break;
        case EV_DELIVER:
                deliver(s, e);
                break;
        case EV_SYNC_DONE:
                if (n->alive && n->incarnation == e->incarnation && n->busy) {
                        finish_ready(s, n);
                        sim_node_after_input(s, n);
                }
                break;
        case EV_CLIENT:
                sim_client_event(s, e->arg);
                break;
        case EV_OP_TIMEOUT: {
                SimOp *op = &s->ops[e->arg];

                if (op->status == SIM_OP_PENDING) {
                        if (s->strict_liveness && op->invoke_ms >= s->strict_since_ms)
                                check_fail(s, "liveness: op %" PRIu32 " (%s on node %u) did not complete within %u ms",
                                           op->id, op->is_write ? "write" : "read", op->node, s->op_timeout_ms);
                        sim_op_finish(s, op, op->is_write ? SIM_OP_UNKNOWN : SIM_OP_FAILED);
                }
                break;
        }
        case EV_NEMESIS:
                if (s->nemesis)
                        s->nemesis(s, e->arg, s->nemesis_userdata);
                break;
        case EV_RESTART:
                if (n->exists && !n->alive && n->incarnation == e->incarnation)
                        (void) sim_restart(s, n->id);
                break;
        case EV_REPORT_SNAP:
                if (n->exists && n->alive && n->incarnation == e->incarnation) {
                        if (n->busy) {
                                SimEvent later = *e;
                                later.at = n->busy_until;
                                sim_ev_push(s, later);
                                break;
                        }
                        (void) raft_report_snapshot(n->raft, e->from, e->arg);
                        sim_node_after_input(s, n);
                }
                break;
        }
}

void sim_run_until(Sim *s, uint64_t until_ms) {
        while (s->n_events > 0 && s->events[0].at <= until_ms && !s->check.failed) {
                SimEvent e = ev_pop(s);
                run_event(s, &e);
        }
        if (!s->check.failed && s->now_ms < until_ms)
                s->now_ms = until_ms;
}

bool sim_run_until_cond(Sim *s, uint64_t deadline_ms, bool (*cond)(Sim *s, void *u), void *u) {
        while (!cond(s, u)) {
                if (s->check.failed || s->n_events == 0 || s->events[0].at > deadline_ms)
                        return cond(s, u);
                SimEvent e = ev_pop(s);
                run_event(s, &e);
        }
        return true;
}

void sim_start(Sim *s, unsigned n_clients) {
        sim_ev_push(s, (SimEvent) { .at = s->now_ms + s->o.tick_ms, .type = EV_TICK });
        s->n_clients = n_clients > 8 ? 8 : n_clients;
        s->clients_on = true;
        for (unsigned c = 0; c < s->n_clients; c++) {
                s->client_op[c] = -1;
                sim_client_next(s, c, sim_rand_below(&s->rng_client, 50));
        }
}

void sim_schedule_restart(Sim *s, uint64_t id, uint64_t at_ms) {
        sim_ev_push(s, (SimEvent) { .at = at_ms, .type = EV_RESTART, .node = id,
                                .incarnation = s->nodes[id].incarnation });
}

void sim_schedule_nemesis(Sim *s, uint64_t at_ms, uint32_t arg) {
        sim_ev_push(s, (SimEvent) { .at = at_ms, .type = EV_NEMESIS, .arg = arg });
}

uint64_t sim_leader(Sim *s) {
        uint64_t best = 0, best_term = 0;

        for (unsigned id = 1; id <= s->max_id; id++) {
                SimNode *n = &s->nodes[id];

                if (!n->exists || !n->alive)
                        continue;
                if (raft_soft_state(n->raft).role == RAFT_LEADER &&
                    raft_get_hard_state(n->raft).term >= best_term) {
                        best = id;
                        best_term = raft_get_hard_state(n->raft).term;
                }
        }
        return best;
}

void sim_heal(Sim *s) {
        memset(s->net.blocked, 0, sizeof(s->net.blocked));
}

void sim_block(Sim *s, uint64_t from, uint64_t to, bool blocked) {
        if (from <= SIM_MAX_NODES && to <= SIM_MAX_NODES)
                s->net.blocked[from][to] = blocked;
}

/* ---- manual mode ---- */

size_t sim_deliver(Sim *s, uint64_t to, const uint64_t *drop_from, size_t n_drop) {
        size_t k = 0, delivered = 0, n = s->n_inflight;
        SimEvent *batch = sim_xmalloc(sizeof(SimEvent) * (n ? n : 1));
        size_t nb = 0;

        /* Take this node's messages out first: replies go to the back of the queue. */
        for (size_t i = 0; i < n; i++) {
                if (s->inflight[i].node == to)
                        batch[nb++] = s->inflight[i];
                else
                        s->inflight[k++] = s->inflight[i];
        }
        s->n_inflight = k;
        for (size_t i = 0; i < nb; i++) {
                bool drop = s->net.blocked[batch[i].from][batch[i].node];

                for (size_t j = 0; j < n_drop; j++)
                        if (drop_from[j] == batch[i].from)
                                drop = true;
                if (drop) {
                        RaftMessage m;

                        if (raft_message_decode(batch[i].buf, batch[i].len, NULL, &m) == 0) {
                                char b[1024];
                                sim_fmt_msg(b, sizeof(b), &m);
                                sim_logf(s, "  dropped: %s", b);
                                raft_message_free_contents(&m, NULL);
                        }
                        free(batch[i].buf);
                        continue;
                }
                deliver(s, &batch[i]);
                delivered++;
        }
        free(batch);
        return delivered;
}

size_t sim_drop_from(Sim *s, uint64_t from) {
        size_t k = 0, dropped = 0;

        for (size_t i = 0; i < s->n_inflight; i++) {
                if (s->inflight[i].from == from) {
                        free(s->inflight[i].buf);
                        dropped++;
                } else {
                        s->inflight[k++] = s->inflight[i];
                }
        }
        s->n_inflight = k;
        sim_logf(s, "dropped %zu messages from %" PRIu64, dropped, from);
        return dropped;
}

void sim_stabilize(Sim *s) {
        for (unsigned rounds = 0; rounds < 1000; rounds++) {
                bool any = false;

                for (unsigned id = 1; id <= s->max_id; id++) {
                        SimNode *n = &s->nodes[id];

                        if (n->exists && n->alive && raft_has_ready(n->raft)) {
                                sim_process_ready(s, id);
                                any = true;
                        }
                }
                for (unsigned id = 1; id <= s->max_id; id++) {
                        bool has = false;

                        for (size_t i = 0; i < s->n_inflight; i++)
                                if (s->inflight[i].node == id)
                                        has = true;
                        if (has) {
                                sim_logf(s, "> deliver to %u", id);
                                (void) sim_deliver(s, id, NULL, 0);
                                any = true;
                        }
                }
                if (!any)
                        return;
        }
        check_fail(s, "stabilize does not settle");
}

void sim_tick(Sim *s, uint64_t id, unsigned k) {
        SimNode *n = &s->nodes[id];

        for (unsigned i = 0; i < k && n->exists && n->alive; i++) {
                (void) raft_tick(n->raft);
                check_leader(s, n);
        }
}

/* ---- construction ---- */

int sim_new(Sim **ret, const SimOptions *o) {
        Sim *s = calloc(1, sizeof(Sim));
        uint8_t snap[SIM_SNAPSHOT_SIZE] = {};
        RaftSnapshot boot = { .metadata = { .index = 1, .term = 1 }, .data = snap, .len = sizeof(snap) };
        unsigned total = o->n_voters + o->n_learners;

        if (!s)
                return -ENOMEM;
        if (o->n_voters == 0 || total > SIM_MAX_NODES || o->n_voters > RAFT_MAX_VOTERS ||
            o->n_learners > RAFT_MAX_LEARNERS) {
                free(s);
                return -EINVAL;
        }
        s->o = *o;
        if (!s->o.tick_ms)
                s->o.tick_ms = 10;
        if (!s->o.election_tick)
                s->o.election_tick = 10;
        if (!s->o.heartbeat_tick)
                s->o.heartbeat_tick = 1;
        if (!s->o.max_inflight)
                s->o.max_inflight = 64;
        if (!s->o.max_size_per_msg)
                s->o.max_size_per_msg = 4096;
        s->rng_net = o->seed ^ UINT64_C(0x1111);
        s->rng_client = o->seed ^ UINT64_C(0x2222);
        s->rng_misc = o->seed ^ UINT64_C(0x3333);
        s->ops = sim_xmalloc(sizeof(SimOp) * SIM_MAX_OPS);
        s->op_timeout_ms = 2000;
        s->net = (SimNet) { .delay_min_ms = 1, .delay_max_ms = 5 };
        s->latest_conf_index = 1;
        for (unsigned i = 1; i <= o->n_voters; i++)
                boot.metadata.conf_state.voters[boot.metadata.conf_state.n_voters++] = i;
        for (unsigned i = o->n_voters + 1; i <= total; i++)
                boot.metadata.conf_state.learners[boot.metadata.conf_state.n_learners++] = i;
        s->latest_conf = boot.metadata.conf_state;
        for (uint64_t id = 1; id <= total; id++) {
                SimNode *n = &s->nodes[id];
                int r;

                *n = (SimNode) { .id = id, .exists = true };
                if (raft_memory_storage_new(&n->ms, NULL) < 0 || raft_memory_storage_new(&n->durable, NULL) < 0)
                        oom();
                disk_apply(n->ms, &(SimPendingWrite) { .type = W_SNAPSHOT, .snap = boot });
                disk_apply(n->durable, &(SimPendingWrite) { .type = W_SNAPSHOT, .snap = boot });
                disk_apply(n->ms, &(SimPendingWrite) { .type = W_HARD_STATE, .hs = { .term = 1, .commit = 1 } });
                disk_apply(n->durable, &(SimPendingWrite) { .type = W_HARD_STATE, .hs = { .term = 1, .commit = 1 } });
                s->max_id = (unsigned) id;
                r = node_start(s, n);
                if (r < 0) {
                        sim_free(s);
                        return r;
                }
        }
        *ret = s;
        return 0;
}

Sim *sim_free(Sim *s) {
        if (!s)
                return NULL;
        for (unsigned id = 1; id <= SIM_MAX_NODES; id++) {
                SimNode *n = &s->nodes[id];

                if (!n->exists)
                        continue;
                raft_free(n->raft);
                raft_memory_storage_free(n->ms);
                raft_memory_storage_free(n->durable);
                for (size_t i = 0; i < n->n_pending; i++)
                        pending_free(&n->pending[i]);
                free(n->pending);
                free(n->waiting_reads);
        }
        for (size_t i = 0; i < s->n_events; i++)
                free(s->events[i].buf);
        for (size_t i = 0; i < s->n_inflight; i++)
                free(s->inflight[i].buf);
        free(s->events);
        free(s->inflight);
        free(s->ops);
        check_done(&s->check);
        free(s);
        return NULL;
}
