/* SPDX-License-Identifier: MIT */
/* Deterministic simulation of a Raft cluster: N raft_core nodes in one process over a simulated
 * network and disk under a virtual clock, with a replicated register on top. One seed reproduces
 * a whole run. Used by the seed sweep (sim-fuzz.c) and the scripted scenarios (sim-script.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft.h"

#define SIM_MAX_NODES 16
#define SIM_KEYS      3
#define SIM_MAX_OPS   8192
#define SIM_NEVER     UINT64_MAX

typedef struct Sim Sim;

typedef struct SimOptions {
        uint64_t seed;
        unsigned n_voters;              /* initial voters get ids 1..n_voters */
        unsigned n_learners;            /* initial learners follow them */
        bool pre_vote;
        bool check_quorum;
        unsigned election_tick;
        unsigned heartbeat_tick;
        unsigned tick_ms;               /* virtual milliseconds per tick */
        uint64_t max_size_per_msg;
        size_t max_inflight;
        unsigned compact_every;         /* snapshot+compact when this many entries are applied
                                         * past the first index (0: never) */
        unsigned compact_keep;          /* entries kept behind the snapshot */
        bool manual;                    /* scripted: no clock, messages wait for deliver commands */
        FILE *trace;                    /* event trace, or NULL */
        bool trace_raft;                /* include the core's own trace lines */
} SimOptions;

typedef enum SimOpStatus {
        SIM_OP_PENDING,                 /* invoked, no answer yet */
        SIM_OP_OK,                      /* answered */
        SIM_OP_FAILED,                  /* refused: certainly had no effect */
        SIM_OP_UNKNOWN,                 /* timed out or node crashed: a write may still apply */
} SimOpStatus;

typedef struct SimOp {
        uint32_t id;
        uint8_t client;
        uint8_t key;
        bool is_write;
        uint64_t value;                 /* written value, or the value a read returned */
        uint64_t invoke_ms;
        uint64_t return_ms;             /* SIM_NEVER when unknown */
        SimOpStatus status;
        unsigned node;                  /* index of the node that serves it */
        bool have_read_index;
        uint64_t read_index;
} SimOp;

typedef struct SimPendingWrite SimPendingWrite;

typedef struct SimNode {
        uint64_t id;
        bool exists;
        bool alive;
        unsigned incarnation;
        Raft *raft;
        RaftMemoryStorage *ms;          /* what the node wrote, synced or not */
        RaftMemoryStorage *durable;     /* what survives a crash */
        SimPendingWrite *pending;       /* writes since the last fsync, in order */
        size_t n_pending, cap_pending;

        /* The replicated register. */
        uint64_t values[SIM_KEYS];
        uint8_t applied_ops[SIM_MAX_OPS / 8];
        uint64_t applied;
        RaftConfState conf;

        bool busy;                      /* a Ready is waiting for a slow fsync */
        uint64_t busy_until;
        RaftReady rd;
        unsigned sync_ms;               /* fsync latency (slow disk), 0: instant */
        unsigned crash_at_ready_permille;
        unsigned auto_restart_ms;       /* restart this long after a crash during a Ready */
        unsigned crash_after_vote_permille;     /* crash right after granting a vote */
        unsigned crash_new_leader_permille;     /* crash in the first Ready as leader */
        unsigned crash_leader_commit_permille;  /* crash a leader in a Ready that commits */
        uint64_t ready_commit;          /* commit index of the last Ready */
        uint64_t seen_commit;           /* checker: commit index last seen */

        uint32_t *waiting_reads;        /* op ids with a read index, waiting for apply */
        size_t n_waiting_reads, cap_waiting_reads;
} SimNode;

typedef struct SimNet {
        unsigned delay_min_ms, delay_max_ms;
        unsigned drop_permille, dup_permille;
        unsigned long_delay_permille, long_delay_max_ms;   /* reordering */
        bool blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];  /* [from][to] by node id */
} SimNet;

typedef struct SimEntryKey SimEntryKey;

typedef struct SimChecker {
        uint64_t *leader_of_term;       /* [term] = leader id */
        size_t cap_terms;
        SimEntryKey *entries;           /* open-addressing map (index, term) -> content */
        size_t n_entries, cap_entries;
        /* [index]: the entry's term (0: unknown), content hash (0: unknown yet) and the term in
         * which it was first seen committed (the committing leader's). */
        struct { uint64_t term, hash, commit_term; } *committed;
        size_t cap_committed;
        uint64_t max_committed;
        bool failed;
        char failure[512];
        uint64_t fail_ms;
} SimChecker;

typedef void (*SimNemesisFunc)(Sim *s, uint32_t arg, void *userdata);

struct Sim {
        SimOptions o;
        uint64_t now_ms;
        uint64_t rng_net, rng_client, rng_misc;
        SimNode nodes[SIM_MAX_NODES + 1];       /* by id; [0] unused */
        unsigned max_id;
        SimNet net;

        /* Event queue (binary heap), random mode. */
        struct SimEvent *events;
        size_t n_events, cap_events;
        uint64_t seq;
        uint64_t events_run;

        /* Manual mode: messages in flight, in send order. */
        struct SimEvent *inflight;
        size_t n_inflight, cap_inflight;

        /* Clients and history. */
        SimOp *ops;
        size_t n_ops;
        unsigned n_clients;
        int client_op[8];               /* current op per client, -1: idle */
        bool clients_on;
        unsigned op_timeout_ms;
        bool strict_liveness;           /* an op invoked since strict_since_ms timing out is a
                                         * liveness failure */
        uint64_t strict_since_ms;

        SimNemesisFunc nemesis;
        void *nemesis_userdata;

        uint64_t removed;               /* bitmask of ids removed by an applied conf change */
        uint64_t latest_conf_index;     /* newest configuration applied anywhere */
        RaftConfState latest_conf;

        SimChecker check;
        uint64_t stat_msgs, stat_dropped, stat_applied, stat_snapshots_sent, stat_elections;
        uint64_t stat_lin_gave_up;      /* keys whose linearizability search hit its budget */
};

int sim_new(Sim **ret, const SimOptions *o);
Sim *sim_free(Sim *s);
void sim_logf(Sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t sim_rand(uint64_t *state);

/* Node control (ids). */
int sim_add_node(Sim *s, uint64_t id);          /* an empty new member, alive */
void sim_crash(Sim *s, uint64_t id);
int sim_restart(Sim *s, uint64_t id);
void sim_process_ready(Sim *s, uint64_t id);
void sim_schedule_restart(Sim *s, uint64_t id, uint64_t at_ms);
uint64_t sim_leader(Sim *s);                    /* a live leader with the highest term, or 0 */
bool sim_is_member(Sim *s, uint64_t id);        /* per the latest applied configuration seen */

/* Network. */
void sim_heal(Sim *s);
void sim_block(Sim *s, uint64_t from, uint64_t to, bool blocked);

/* Random mode: schedules ticks, clients, nemesis callbacks, and runs events until 'until'. */
void sim_start(Sim *s, unsigned n_clients);
void sim_schedule_nemesis(Sim *s, uint64_t at_ms, uint32_t arg);
void sim_run_until(Sim *s, uint64_t until_ms);
/* Runs until cond(s) holds or the deadline passes; returns cond(s). */
bool sim_run_until_cond(Sim *s, uint64_t deadline_ms, bool (*cond)(Sim *s, void *u), void *u);
/* Client helper: invokes a write of value on node id (0: any live member). Returns op index. */
int sim_client_write(Sim *s, unsigned client, uint64_t id, uint8_t key, uint64_t value);

/* Manual mode. */
size_t sim_deliver(Sim *s, uint64_t to, const uint64_t *drop_from, size_t n_drop);
void sim_stabilize(Sim *s);
size_t sim_drop_from(Sim *s, uint64_t from);    /* drops in-flight messages sent by 'from' */
void sim_tick(Sim *s, uint64_t id, unsigned n);

/* Checkers (sim-check.c). All record the first failure in s->check. */
void check_fail(Sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void check_leader(Sim *s, SimNode *n);
void check_persisted(Sim *s, SimNode *n, const RaftEntry *es, size_t k);
void check_applied(Sim *s, SimNode *n, const RaftEntry *e);
void check_done(SimChecker *c);
uint64_t sim_entry_hash(const RaftEntry *e);
/* Wing-Gong linearizability check of the register history, per key. Returns true if
 * linearizable; otherwise records a failure. */
bool check_linearizable(Sim *s);
