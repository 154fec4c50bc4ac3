/* SPDX-License-Identifier: MIT */
/* Private to the simulator's files (sim.c, sim-client.c, sim-format.c): the event queue's types
 * and the helpers they share. The front ends use sim.h. */
#pragma once

#include "sim.h"

#define SIM_SNAPSHOT_SIZE (SIM_KEYS * 8 + SIM_MAX_OPS / 8)
#define OP_ENCODED_SIZE   14

typedef enum SimEventType {
        EV_TICK,
        EV_DELIVER,
        EV_SYNC_DONE,
        EV_CLIENT,
        EV_OP_TIMEOUT,
        EV_NEMESIS,
        EV_REPORT_SNAP,
        EV_RESTART,
} SimEventType;

typedef struct SimEvent {
        uint64_t at, seq;
        SimEventType type;
        uint64_t node, from;
        unsigned incarnation;
        uint32_t arg;
        uint8_t *buf;
        size_t len;
} SimEvent;

#define GROW(array, cap, need)                                                  \
        do {                                                                    \
                if ((need) > (cap)) {                                           \
                        size_t _c = (cap) * 2 > (need) ? (cap) * 2 : (need) + 8; \
                        (array) = sim_xrealloc((array), _c * sizeof(*(array)));     \
                        (cap) = _c;                                             \
                }                                                               \
        } while (0)

/* sim.c */
void *sim_xmalloc(size_t n);
void *sim_xrealloc(void *p, size_t n);
unsigned sim_rand_below(uint64_t *state, unsigned n);
bool sim_roll(uint64_t *state, unsigned permille);
void sim_ev_push(Sim *s, SimEvent e);
void sim_node_after_input(Sim *s, SimNode *n);

/* sim-client.c: the replicated register and its clients */
void sim_sm_snapshot(const SimNode *n, uint8_t buf[SIM_SNAPSHOT_SIZE]);
void sim_sm_restore(SimNode *n, const RaftSnapshot *snap);
void sim_sm_apply(Sim *s, SimNode *n, const RaftEntry *e);
void sim_serve_reads(Sim *s, SimNode *n);
void sim_op_finish(Sim *s, SimOp *op, SimOpStatus st);
void sim_client_next(Sim *s, unsigned client, unsigned think_ms);
void sim_client_event(Sim *s, unsigned client);

/* sim-format.c: human-readable trace lines */
void sim_fmt_data(char *buf, size_t size, const void *data, size_t len);
void sim_fmt_entry(char *buf, size_t size, const RaftEntry *e);
void sim_fmt_conf(char *buf, size_t size, const RaftConfState *cs);
void sim_fmt_msg(char *buf, size_t size, const RaftMessage *m);
