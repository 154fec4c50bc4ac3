/* SPDX-License-Identifier: MIT */
/* The replicated register on top of the simulated cluster and its clients: writes with unique
 * values proposed on any member, ReadIndex reads served after the read index is applied, and the
 * recorded history the linearizability checker reads. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "sim-internal.h"

static void encode_op(uint8_t buf[OP_ENCODED_SIZE], uint32_t id, uint8_t key, uint64_t value) {
        buf[0] = 'W';
        memcpy(buf + 1, &id, 4);
        buf[5] = key;
        memcpy(buf + 6, &value, 8);
}

void sim_sm_snapshot(const SimNode *n, uint8_t buf[SIM_SNAPSHOT_SIZE]) {
        memcpy(buf, n->values, SIM_KEYS * 8);
        memcpy(buf + SIM_KEYS * 8, n->applied_ops, sizeof(n->applied_ops));
}

void sim_sm_restore(SimNode *n, const RaftSnapshot *snap) {
        memset(n->values, 0, sizeof(n->values));
        memset(n->applied_ops, 0, sizeof(n->applied_ops));
        if (snap && snap->len == SIM_SNAPSHOT_SIZE) {
                memcpy(n->values, snap->data, SIM_KEYS * 8);
                memcpy(n->applied_ops, (const uint8_t *) snap->data + SIM_KEYS * 8, sizeof(n->applied_ops));
        }
        n->applied = snap ? snap->metadata.index : 0;
        n->conf = snap ? snap->metadata.conf_state : (RaftConfState) {};
}

void sim_op_finish(Sim *s, SimOp *op, SimOpStatus st) {
        if (op->status != SIM_OP_PENDING)
                return;
        op->status = st;
        op->return_ms = st == SIM_OP_UNKNOWN ? SIM_NEVER : s->now_ms;
        if (op->client < s->n_clients && s->client_op[op->client] == (int) op->id) {
                s->client_op[op->client] = -1;
                sim_client_next(s, op->client, sim_rand_below(&s->rng_client, 20));
        }
}

void sim_sm_apply(Sim *s, SimNode *n, const RaftEntry *e) {
        const uint8_t *p = e->data;
        uint32_t id;
        uint64_t v;

        if (e->len != OP_ENCODED_SIZE || p[0] != 'W')
                return;
        memcpy(&id, p + 1, 4);
        memcpy(&v, p + 6, 8);
        if (id >= SIM_MAX_OPS || p[5] >= SIM_KEYS)
                return;
        /* Deduplicate: a proposal the network duplicated may commit twice. */
        if (!(n->applied_ops[id / 8] & (1u << (id % 8)))) {
                n->applied_ops[id / 8] |= (uint8_t) (1u << (id % 8));
                n->values[p[5]] = v;
        }
        if (id < s->n_ops && s->ops[id].node == n->id && s->ops[id].is_write &&
            s->ops[id].status == SIM_OP_PENDING)
                sim_op_finish(s, &s->ops[id], SIM_OP_OK);
}

void sim_serve_reads(Sim *s, SimNode *n) {
        size_t k = 0;

        for (size_t i = 0; i < n->n_waiting_reads; i++) {
                SimOp *op = &s->ops[n->waiting_reads[i]];

                if (op->status != SIM_OP_PENDING)
                        continue;
                if (op->read_index <= n->applied) {
                        op->value = n->values[op->key];
                        sim_op_finish(s, op, SIM_OP_OK);
                        continue;
                }
                n->waiting_reads[k++] = n->waiting_reads[i];
        }
        n->n_waiting_reads = k;
}

static SimNode *pick_node(Sim *s) {
        SimNode *c[SIM_MAX_NODES];
        size_t k = 0;

        for (unsigned id = 1; id <= s->max_id; id++)
                if (s->nodes[id].exists && s->nodes[id].alive && sim_is_member(s, id))
                        c[k++] = &s->nodes[id];
        return k ? c[sim_rand_below(&s->rng_client, (unsigned) k)] : NULL;
}

static SimOp *op_new(Sim *s, unsigned client, SimNode *n, bool is_write, uint8_t key) {
        SimOp *op;

        if (s->n_ops >= SIM_MAX_OPS)
                return NULL;
        op = &s->ops[s->n_ops];
        *op = (SimOp) { .id = (uint32_t) s->n_ops, .client = (uint8_t) client, .key = key,
                        .is_write = is_write, .invoke_ms = s->now_ms, .return_ms = SIM_NEVER,
                        .node = (unsigned) n->id,
                        .status = SIM_OP_PENDING };
        s->n_ops++;
        return op;
}

static void client_invoke(Sim *s, unsigned client, SimNode *n, SimOp *op) {
        int r;

        if (op->is_write) {
                uint8_t buf[OP_ENCODED_SIZE];

                op->value = op->id + 1;         /* unique, never the initial 0 */
                encode_op(buf, op->id, op->key, op->value);
                r = raft_propose(n->raft, buf, sizeof(buf));
        } else {
                uint8_t ctx[5] = { 'R' };

                memcpy(ctx + 1, &op->id, 4);
                r = raft_read_index(n->raft, ctx, sizeof(ctx));
        }
        sim_logf(s, "client %u: %s key %u%s on node %" PRIu64 " (op %" PRIu32 "): %s", client,
                 op->is_write ? "write" : "read", op->key, "", n->id, op->id, r < 0 ? strerror(-r) : "ok");
        if (client < s->n_clients)
                s->client_op[client] = (int) op->id;
        if (r < 0) {
                /* Refused synchronously: certainly no effect. */
                sim_op_finish(s, op, SIM_OP_FAILED);
                return;
        }
        sim_ev_push(s, (SimEvent) { .at = s->now_ms + s->op_timeout_ms, .type = EV_OP_TIMEOUT, .arg = op->id });
        sim_node_after_input(s, n);
}

void sim_client_next(Sim *s, unsigned client, unsigned think_ms) {
        if (!s->clients_on || s->o.manual)
                return;
        sim_ev_push(s, (SimEvent) { .at = s->now_ms + think_ms, .type = EV_CLIENT, .arg = client });
}

void sim_client_event(Sim *s, unsigned client) {
        SimNode *n;
        SimOp *op;

        if (!s->clients_on || s->client_op[client] >= 0)
                return;
        n = pick_node(s);
        if (!n) {
                sim_client_next(s, client, 50);
                return;
        }
        if (n->busy) {
                sim_ev_push(s, (SimEvent) { .at = n->busy_until, .type = EV_CLIENT, .arg = client });
                return;
        }
        op = op_new(s, client, n, sim_rand_below(&s->rng_client, 100) < 60,
                    (uint8_t) sim_rand_below(&s->rng_client, SIM_KEYS));
        if (!op)
                return;
        client_invoke(s, client, n, op);
}

int sim_client_write(Sim *s, unsigned client, uint64_t id, uint8_t key, uint64_t value) {
        SimNode *n = id ? &s->nodes[id] : pick_node(s);
        SimOp *op;

        (void) value;
        if (!n || !n->exists || !n->alive || n->busy)
                return -EAGAIN;
        op = op_new(s, client, n, true, key);
        if (!op)
                return -ENOSPC;
        client_invoke(s, client, n, op);
        return (int) op->id;
}
