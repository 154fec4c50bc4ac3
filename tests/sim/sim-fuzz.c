/* SPDX-License-Identifier: MIT */
/* sim-fuzz: runs random fault schedules against simulated clusters, one seed each. A failing
 * seed is minimized (fault actions are switched off one by one while the run still fails) and
 * printed with its trace and the command that reproduces it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define MAX_ACTIONS 32

typedef enum ActionKind {
        A_CRASH,
        A_PARTITION_SPLIT,
        A_PARTITION_ISOLATE,
        A_PARTITION_ONE_WAY,
        A_NET_LOSSY,
        A_DISK_SLOW,
        A_CRASH_AT_READY,
        A_LEADER_CHURN,
        A_CRASH_AFTER_VOTE,
        A_CRASH_NEW_LEADER,
        A_CONF_CHANGE,
        _A_MAX,
} ActionKind;

static const char *const action_names[_A_MAX] = {
        [A_CRASH] = "crash",
        [A_PARTITION_SPLIT] = "partition-split",
        [A_PARTITION_ISOLATE] = "partition-isolate",
        [A_PARTITION_ONE_WAY] = "partition-one-way",
        [A_NET_LOSSY] = "lossy-network",
        [A_DISK_SLOW] = "slow-disk",
        [A_CRASH_AT_READY] = "crash-during-ready",
        [A_LEADER_CHURN] = "leader-churn",
        [A_CRASH_AFTER_VOTE] = "crash-after-vote",
        [A_CRASH_NEW_LEADER] = "crash-leader-at-win-or-commit",
        [A_CONF_CHANGE] = "conf-change",
};

typedef struct Action {
        ActionKind kind;
        uint64_t start_ms, end_ms;
        uint64_t node;
        uint64_t group;                 /* bitmask of node ids (partitions) */
        unsigned a, b, c;               /* kind-specific parameters */
        bool active;
} Action;

typedef struct Run {
        bool crash_profile;
        uint64_t seed;
        unsigned nodes, learners;
        bool membership;
        uint64_t fault_ms;
        Action actions[MAX_ACTIONS];
        size_t n_actions;
        uint64_t mask;                  /* disabled actions */
        Sim *sim;
        uint64_t next_id;
} Run;

typedef struct Args {
        uint64_t seed, count;
        unsigned nodes, learners;
        bool membership, trace, minimize, verbose;
        uint64_t fault_ms;
        uint64_t mask;
        bool have_mask;
        uint64_t max_msg_size;          /* 0: varies with the seed */
        bool crash_profile;             /* only crash and isolation faults, more of them */
        const char *expect_bug;         /* planted-bug mode: comma-separated failure prefixes */
} Args;

static void generate(Run *r) {
        uint64_t rng = r->seed * UINT64_C(0x5851f42d4c957f2d) + 7;
        unsigned total = r->nodes + r->learners;
        static const ActionKind crash_kinds[] = { A_CRASH, A_PARTITION_ISOLATE, A_LEADER_CHURN,
                                                  A_CRASH_NEW_LEADER, A_CRASH_AT_READY, A_CRASH_AFTER_VOTE };
        size_t n = r->crash_profile ? 8 + sim_rand(&rng) % 12 : 3 + sim_rand(&rng) % 8;

        r->n_actions = 0;
        if (r->membership)
                n += 3 + sim_rand(&rng) % 4;
        for (size_t i = 0; i < n && r->n_actions < MAX_ACTIONS; i++) {
                Action *a = &r->actions[r->n_actions++];
                ActionKind k = r->crash_profile ? crash_kinds[sim_rand(&rng) % 6] :
                               (ActionKind) (sim_rand(&rng) % (r->membership ? _A_MAX : A_CONF_CHANGE));

                /* Membership schedules get extra conf changes. */
                if (r->membership && i >= n - 4 && sim_rand(&rng) % 2)
                        k = A_CONF_CHANGE;
                uint64_t dur = 100 + sim_rand(&rng) % 1500;

                *a = (Action) { .kind = k, .start_ms = 50 + sim_rand(&rng) % (r->fault_ms - 100) };
                a->end_ms = a->start_ms + dur < r->fault_ms ? a->start_ms + dur : r->fault_ms;
                a->node = 1 + sim_rand(&rng) % total;
                switch (k) {
                case A_PARTITION_SPLIT:
                        for (unsigned id = 1; id <= total; id++)
                                if (sim_rand(&rng) % 2)
                                        a->group |= UINT64_C(1) << id;
                        break;
                case A_PARTITION_ONE_WAY:
                        /* Messages from 'node' to the group are lost, the other way works. */
                        for (unsigned id = 1; id <= total; id++)
                                if (id != a->node && sim_rand(&rng) % 2)
                                        a->group |= UINT64_C(1) << id;
                        break;
                case A_NET_LOSSY:
                        a->a = 50 + (unsigned) (sim_rand(&rng) % 300);  /* drop permille */
                        a->b = (unsigned) (sim_rand(&rng) % 100);       /* duplicate permille */
                        a->c = (unsigned) (sim_rand(&rng) % 200);       /* long delay permille */
                        break;
                case A_DISK_SLOW:
                        a->a = 5 + (unsigned) (sim_rand(&rng) % 60);    /* fsync ms */
                        break;
                case A_CRASH_AT_READY:
                        a->a = 10 + (unsigned) (sim_rand(&rng) % 100);  /* permille per Ready */
                        a->b = 5 + (unsigned) (sim_rand(&rng) % 200);   /* max downtime ms */
                        break;
                case A_CRASH_AFTER_VOTE:
                        a->a = 100 + (unsigned) (sim_rand(&rng) % 800); /* permille per granted vote */
                        a->b = 1 + (unsigned) (sim_rand(&rng) % 100);   /* max downtime ms */
                        break;
                case A_CRASH_NEW_LEADER:
                        a->a = 200 + (unsigned) (sim_rand(&rng) % 800); /* permille per new leader */
                        a->b = 20 + (unsigned) (sim_rand(&rng) % 300);  /* max downtime ms */
                        a->c = (unsigned) (sim_rand(&rng) % 300);       /* permille per commit */
                        break;
                case A_LEADER_CHURN:
                        a->a = 10 + (unsigned) (sim_rand(&rng) % 200);  /* ms between leader crashes */
                        a->b = 5 + (unsigned) (sim_rand(&rng) % 200);   /* max downtime ms */
                        break;
                case A_CONF_CHANGE:
                        a->a = (unsigned) (sim_rand(&rng) % 3);         /* add learner, promote, remove */
                        a->b = (unsigned) sim_rand(&rng);
                        break;
                default:
                        break;
                }
        }
}

static void describe(const Run *r, size_t i, char *buf, size_t size) {
        const Action *a = &r->actions[i];

        snprintf(buf, size, "#%zu %s node=%" PRIu64 " group=0x%" PRIx64 " params=%u/%u/%u %" PRIu64 "..%" PRIu64 "ms",
                 i, action_names[a->kind], a->node, a->group, a->a, a->b, a->c, a->start_ms, a->end_ms);
}

/* Recomputes network, disk and crash settings from the active actions. */
static void apply_active(Run *r) {
        Sim *s = r->sim;

        sim_heal(s);
        s->net.drop_permille = s->net.dup_permille = s->net.long_delay_permille = 0;
        s->net.long_delay_max_ms = 200;
        for (unsigned id = 1; id <= SIM_MAX_NODES; id++) {
                s->nodes[id].sync_ms = 0;
                s->nodes[id].crash_at_ready_permille = 0;
                s->nodes[id].auto_restart_ms = 0;
                s->nodes[id].crash_after_vote_permille = 0;
                s->nodes[id].crash_new_leader_permille = 0;
                s->nodes[id].crash_leader_commit_permille = 0;
        }
        for (size_t i = 0; i < r->n_actions; i++) {
                Action *a = &r->actions[i];

                if (!a->active)
                        continue;
                switch (a->kind) {
                case A_PARTITION_SPLIT:
                        for (unsigned x = 1; x <= s->max_id; x++)
                                for (unsigned y = 1; y <= s->max_id; y++)
                                        if (!(a->group >> x & 1) != !(a->group >> y & 1))
                                                sim_block(s, x, y, true);
                        break;
                case A_PARTITION_ISOLATE:
                        for (unsigned x = 1; x <= s->max_id; x++)
                                if (x != a->node) {
                                        sim_block(s, x, a->node, true);
                                        sim_block(s, a->node, x, true);
                                }
                        break;
                case A_PARTITION_ONE_WAY:
                        for (unsigned x = 1; x <= s->max_id; x++)
                                if (a->group >> x & 1)
                                        sim_block(s, a->node, x, true);
                        break;
                case A_NET_LOSSY:
                        s->net.drop_permille = a->a > s->net.drop_permille ? a->a : s->net.drop_permille;
                        s->net.dup_permille = a->b > s->net.dup_permille ? a->b : s->net.dup_permille;
                        s->net.long_delay_permille = a->c > s->net.long_delay_permille ? a->c : s->net.long_delay_permille;
                        break;
                case A_DISK_SLOW:
                        if (a->a > s->nodes[a->node].sync_ms)
                                s->nodes[a->node].sync_ms = a->a;
                        break;
                case A_CRASH_AT_READY:
                        if (a->a > s->nodes[a->node].crash_at_ready_permille)
                                s->nodes[a->node].crash_at_ready_permille = a->a;
                        s->nodes[a->node].auto_restart_ms = a->b;
                        break;
                case A_CRASH_NEW_LEADER:
                        for (unsigned x = 1; x <= s->max_id; x++) {
                                s->nodes[x].crash_new_leader_permille = a->a;
                                s->nodes[x].crash_leader_commit_permille = a->c;
                                s->nodes[x].auto_restart_ms = a->b;
                        }
                        break;
                case A_CRASH_AFTER_VOTE:
                        /* Every node, so that competing candidates meet voters that rebooted. */
                        for (unsigned x = 1; x <= s->max_id; x++) {
                                s->nodes[x].crash_after_vote_permille = a->a;
                                s->nodes[x].auto_restart_ms = a->b;
                        }
                        break;
                default:
                        break;
                }
        }
}

/* Proposes the action's conf change on the leader; retried every 50 ms while it has no leader
 * or the leader refuses (a change pending, a learner not caught up), until the action ends. */
static void conf_change(Run *r, size_t i) {
        Sim *s = r->sim;
        Action *a = &r->actions[i];
        uint64_t lead = sim_leader(s);
        const RaftConfState *cs = &s->latest_conf;
        RaftConfChange cc = {};
        int k;

        if (!lead || s->nodes[lead].busy) {
                if (s->now_ms + 50 < a->end_ms)
                        sim_schedule_nemesis(s, s->now_ms + 50, (uint32_t) (i * 2));
                return;
        }
        switch (a->a) {
        case 0:
                if (r->next_id > SIM_MAX_NODES)
                        return;
                cc = (RaftConfChange) { .type = RAFT_CONF_ADD_LEARNER, .node_id = r->next_id };
                break;
        case 1:
                if (cs->n_learners == 0)
                        return;
                cc = (RaftConfChange) { .type = RAFT_CONF_ADD_VOTER, .node_id = cs->learners[a->b % cs->n_learners] };
                break;
        default:
                if (cs->n_voters <= 3)
                        return;
                cc = (RaftConfChange) { .type = RAFT_CONF_REMOVE_NODE, .node_id = cs->voters[a->b % cs->n_voters] };
                break;
        }
        k = raft_propose_conf_change(s->nodes[lead].raft, &cc);
        if ((k == -EBUSY || k == -ENOTCONN) && s->now_ms + 50 < a->end_ms)
                sim_schedule_nemesis(s, s->now_ms + 50, (uint32_t) (i * 2));
        sim_logf(s, "nemesis: propose %s %" PRIu64 " on leader %" PRIu64 ": %s",
                 raft_conf_change_type_to_string(cc.type), cc.node_id, lead, k < 0 ? strerror(-k) : "ok");
        if (k >= 0 && cc.type == RAFT_CONF_ADD_LEARNER)
                r->next_id++;
        sim_process_ready(s, lead);
}

#define CHURN_TICK 0x10000u

/* Leader churn: crash whoever leads now, restart it soon, repeat while the action lasts. Leaders
 * that die right after winning leave divergent logs behind (Raft paper Figure 8). */
static void churn_tick(Run *r, size_t i) {
        Sim *s = r->sim;
        Action *a = &r->actions[i];
        uint64_t lead = sim_leader(s), rng = r->seed ^ (s->now_ms * 7919);

        if (s->now_ms >= a->end_ms)
                return;
        if (lead) {
                sim_logf(s, "nemesis: churn crashes leader %" PRIu64, lead);
                sim_crash(s, lead);
                sim_schedule_restart(s, lead, s->now_ms + 1 + sim_rand(&rng) % a->b);
        }
        sim_schedule_nemesis(s, s->now_ms + 1 + sim_rand(&rng) % a->a, CHURN_TICK | (uint32_t) i);
}

/* Nemesis callback: arg = action index * 2 + (0 start, 1 end), or CHURN_TICK | index. */
static void nemesis(Sim *s, uint32_t arg, void *userdata) {
        Run *r = userdata;
        Action *a;
        bool start = (arg & 1) == 0;
        char d[256];

        if (arg & CHURN_TICK) {
                churn_tick(r, arg & ~CHURN_TICK);
                return;
        }
        a = &r->actions[arg / 2];

        describe(r, arg / 2, d, sizeof(d));
        sim_logf(s, "nemesis: %s %s", start ? "start" : "end", d);
        switch (a->kind) {
        case A_CRASH:
                if (start)
                        sim_crash(s, a->node);
                else
                        (void) sim_restart(s, a->node);
                return;
        case A_CONF_CHANGE:
                if (start)
                        conf_change(r, arg / 2);
                return;
        case A_LEADER_CHURN:
                if (start)
                        churn_tick(r, arg / 2);
                return;
        default:
                a->active = start;
                apply_active(r);
        }
}

static bool cond_leader(Sim *s, void *u) {
        uint64_t lead = sim_leader(s);

        (void) u;
        if (!lead || !sim_is_member(s, lead))
                return false;
        for (unsigned id = 1; id <= s->max_id; id++) {
                SimNode *n = &s->nodes[id];
                bool learner;

                if (!n->exists || !n->alive || !raft_conf_state_has(&s->latest_conf, id, &learner) || learner)
                        continue;
                if (raft_soft_state(n->raft).lead != lead)
                        return false;
        }
        return true;
}

static bool cond_applied(Sim *s, void *u) {
        uint32_t op = *(uint32_t *) u;

        for (unsigned id = 1; id <= s->max_id; id++) {
                SimNode *n = &s->nodes[id];

                if (!n->exists || !n->alive || !sim_is_member(s, id))
                        continue;
                if (!(n->applied_ops[op / 8] & (1u << (op % 8))))
                        return false;
        }
        return true;
}

typedef struct LeaderOp {
        uint32_t op;
        uint64_t lead;
} LeaderOp;

static bool cond_never(Sim *s, void *u) {
        return false;
}

static bool cond_applied_or_deposed(Sim *s, void *u) {
        LeaderOp *lo = u;
        SimNode *n = &s->nodes[lo->lead];

        return cond_applied(s, &lo->op) || !n->alive ||
               raft_soft_state(n->raft).role != RAFT_LEADER;
}

/* Bounds of the liveness phase, in virtual ms after the faults heal. */
#define LIVENESS_ELECT_MS   3000
#define LIVENESS_COMMIT_MS  2000
#define STEADY_MS           1000
#define STEADY_OP_BOUND_MS  500

static int run_one(const Args *args, uint64_t seed, uint64_t mask, FILE *trace, Run *ret_run, char *failure, size_t fsize) {
        SimOptions o = {
                .seed = seed,
                .n_voters = args->nodes,
                .n_learners = args->learners,
                .pre_vote = seed % 4 != 3,      /* mostly on, sometimes off */
                .check_quorum = seed % 3 != 2,
                .election_tick = 10,
                .heartbeat_tick = 2,
                .tick_ms = 10,
                /* Sometimes one entry per MsgApp: leaders then replicate old entries one by one. */
                .max_size_per_msg = args->max_msg_size ?: seed % 3 == 0 ? 1 : 512,
                .max_inflight = 1 + seed % 4,
                .compact_every = 40,
                .compact_keep = 5,
                .trace = trace,
                .trace_raft = trace != NULL,
        };
        Run *r = ret_run;
        Sim *s;
        uint64_t heal;
        int k, sentinel;

        *r = (Run) { .seed = seed, .crash_profile = args->crash_profile, .nodes = args->nodes, .learners = args->learners,
                     .membership = args->membership, .fault_ms = args->fault_ms, .mask = mask,
                     .next_id = args->nodes + args->learners + 1 };
        k = sim_new(&s, &o);
        if (k < 0)
                return k;
        r->sim = s;
        s->nemesis = nemesis;
        s->nemesis_userdata = r;
        generate(r);
        for (size_t i = 0; i < r->n_actions; i++) {
                if (mask >> i & 1)
                        continue;
                sim_schedule_nemesis(s, r->actions[i].start_ms, (uint32_t) (i * 2));
                sim_schedule_nemesis(s, r->actions[i].end_ms, (uint32_t) (i * 2 + 1));
        }
        sim_start(s, 3);
        sim_run_until(s, r->fault_ms);

        /* Heal everything, then demand progress within fixed bounds. */
        heal = s->now_ms;
        if (!s->check.failed) {
                for (size_t i = 0; i < r->n_actions; i++)
                        r->actions[i].active = false;
                apply_active(r);
                for (unsigned id = 1; id <= s->max_id; id++)
                        if (s->nodes[id].exists && !s->nodes[id].alive)
                                (void) sim_restart(s, id);
                sim_logf(s, "nemesis: all faults healed");
                if (!sim_run_until_cond(s, heal + LIVENESS_ELECT_MS, cond_leader, NULL))
                        check_fail(s, "liveness: no leader known to all voters %d ms after the faults healed",
                                   LIVENESS_ELECT_MS);
        }
        if (!s->check.failed) {
                /* A proposal must be applied by every member within the bound. A proposal to a
                 * leader that loses its office (a conf change pending from the fault phase may
                 * remove it) can be lost, as Raft allows: the client then retries. */
                uint64_t t0 = s->now_ms;
                bool done = false;

                while (!done && !s->check.failed && s->now_ms < t0 + LIVENESS_COMMIT_MS) {
                        uint64_t lead = sim_leader(s);
                        LeaderOp lo;

                        if (!lead || s->nodes[lead].busy) {
                                (void) sim_run_until_cond(s, s->now_ms + 10, cond_never, NULL);
                                continue;
                        }
                        sentinel = sim_client_write(s, 100, lead, 0, 0);
                        if (sentinel < 0) {
                                (void) sim_run_until_cond(s, s->now_ms + 10, cond_never, NULL);
                                continue;
                        }
                        lo = (LeaderOp) { .op = (uint32_t) sentinel, .lead = lead };
                        (void) sim_run_until_cond(s, t0 + LIVENESS_COMMIT_MS, cond_applied_or_deposed, &lo);
                        done = cond_applied(s, &lo.op);
                }
                if (!done)
                        check_fail(s, "liveness: a proposal was not applied by every member within %d ms",
                                   LIVENESS_COMMIT_MS);
        }
        if (!s->check.failed) {
                /* Steady state: every operation must complete within a bound. */
                s->op_timeout_ms = STEADY_OP_BOUND_MS;
                s->strict_liveness = true;
                s->strict_since_ms = s->now_ms;
                sim_run_until(s, s->now_ms + STEADY_MS);
                s->clients_on = false;
                sim_run_until(s, s->now_ms + STEADY_OP_BOUND_MS + 10);
        }
        if (!s->check.failed)
                (void) check_linearizable(s);
        if (s->check.failed)
                snprintf(failure, fsize, "%s (at %" PRIu64 " ms)", s->check.failure, s->check.fail_ms);
        return s->check.failed ? 1 : 0;
}

static void run_free(Run *r) {
        r->sim = sim_free(r->sim);
}

static void print_tail(const char *buf, size_t len, size_t lines) {
        size_t i = len, n = 0;

        while (i > 0 && n <= lines) {
                i--;
                if (buf[i] == '\n')
                        n++;
        }
        if (i > 0) {
                printf("  ... (%zu bytes of trace before this)\n", i);
                i++;
        }
        fwrite(buf + i, 1, len - i, stdout);
}

static void report_failure(const Args *args, uint64_t seed, const char *failure) {
        uint64_t mask = args->have_mask ? args->mask : 0;
        char f[600], d[256], path[128];
        char *buf = NULL;
        size_t len = 0;
        Run r;
        FILE *t;

        printf("FAIL seed=%" PRIu64 ": %s\n", seed, failure);
        if (args->minimize) {
                /* Switch fault actions off one at a time, keeping those the failure needs. */
                Run probe;

                (void) run_one(args, seed, mask, NULL, &probe, f, sizeof(f));
                size_t n = probe.n_actions;
                run_free(&probe);
                for (size_t i = 0; i < n; i++) {
                        if (mask >> i & 1)
                                continue;
                        int k = run_one(args, seed, mask | UINT64_C(1) << i, NULL, &probe, f, sizeof(f));
                        run_free(&probe);
                        if (k > 0)
                                mask |= UINT64_C(1) << i;
                }
        }
        t = open_memstream(&buf, &len);
        if (!t)
                abort();
        (void) run_one(args, seed, mask, t, &r, f, sizeof(f));
        fclose(t);
        printf("Minimized fault schedule (%s):\n", f[0] ? f : "no longer fails?");
        for (size_t i = 0; i < r.n_actions; i++)
                if (!(mask >> i & 1)) {
                        describe(&r, i, d, sizeof(d));
                        printf("  %s\n", d);
                }
        snprintf(path, sizeof(path), "sim-fuzz-seed-%" PRIu64 ".trace", seed);
        t = fopen(path, "we");
        if (t) {
                fwrite(buf, 1, len, t);
                fclose(t);
                printf("Full trace of the minimized run: %s\n", path);
        }
        printf("Trace up to the failure (last lines):\n");
        print_tail(buf, len, 80);
        printf("Reproduce: %s --seed=%" PRIu64 " --count=1 --nodes=%u --learners=%u%s --fault-ms=%" PRIu64
               " --max-msg-size=%" PRIu64 "%s --mask=0x%" PRIx64 " --trace\n", program_invocation_short_name,
               seed, args->nodes, args->learners, args->membership ? " --membership" : "", args->fault_ms,
               args->max_msg_size, args->crash_profile ? " --crash-profile" : "", mask);
        free(buf);
        run_free(&r);
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *e;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &e, 0);
        if (errno || e == s || *e)
                return -EINVAL;
        *ret = v;
        return 0;
}

static bool failure_expected(const char *list, const char *failure) {
        const char *p = list;

        while (*p) {
                size_t n = strcspn(p, ",");

                if (n > 0 && strncmp(failure, p, n) == 0)
                        return true;
                p += n + (p[n] == ',');
        }
        return false;
}

static void help(void) {
        printf("sim-fuzz [OPTIONS]\n"
               "  --seed=N        first seed (default 1)\n"
               "  --count=N       number of seeds (default 100)\n"
               "  --nodes=N       initial voters (default 5)\n"
               "  --learners=N    initial learners (default 0)\n"
               "  --membership    include membership changes in the fault schedules\n"
               "  --fault-ms=N    length of the fault phase in virtual ms (default 2500)\n"
               "  --mask=X        disable fault actions (bitmask, as printed for a failure)\n"
               "  --trace         print the event trace of every run\n"
               "  --no-minimize   report a failure without minimizing it\n"
               "  --max-msg-size=N  bytes of entries per MsgApp (default: varies with the seed)\n"
               "  --crash-profile   only crash and isolation faults, denser\n"
               "  --expect-bug=A,B  planted-bug mode: exit 1 only for a failure starting with A or B,\n"
               "                    0 otherwise (run it under ctest WILL_FAIL)\n"
               "  --verbose       one line per seed\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "seed", required_argument, NULL, 's' },
                { "count", required_argument, NULL, 'c' },
                { "nodes", required_argument, NULL, 'n' },
                { "learners", required_argument, NULL, 'l' },
                { "membership", no_argument, NULL, 'm' },
                { "fault-ms", required_argument, NULL, 'f' },
                { "mask", required_argument, NULL, 'x' },
                { "trace", no_argument, NULL, 't' },
                { "no-minimize", no_argument, NULL, 'N' },
                { "verbose", no_argument, NULL, 'v' },
                { "max-msg-size", required_argument, NULL, 'M' },
                { "crash-profile", no_argument, NULL, 'C' },
                { "expect-bug", required_argument, NULL, 'E' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        Args a = { .seed = 1, .count = 100, .nodes = 5, .minimize = true, .fault_ms = 2500 };
        uint64_t v, passed = 0, msgs = 0, elections = 0, applied = 0, events = 0, snaps = 0, ops = 0, gave_up = 0;
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 's': if (parse_u64(optarg, &a.seed) < 0) return 2; break;
                case 'c': if (parse_u64(optarg, &a.count) < 0) return 2; break;
                case 'n': if (parse_u64(optarg, &v) < 0 || v < 1 || v > 9) return 2; a.nodes = (unsigned) v; break;
                case 'l': if (parse_u64(optarg, &v) < 0 || v > 4) return 2; a.learners = (unsigned) v; break;
                case 'm': a.membership = true; break;
                case 'f': if (parse_u64(optarg, &a.fault_ms) < 0 || a.fault_ms < 500) return 2; break;
                case 'x': if (parse_u64(optarg, &a.mask) < 0) return 2; a.have_mask = true; break;
                case 't': a.trace = true; break;
                case 'N': a.minimize = false; break;
                case 'v': a.verbose = true; break;
                case 'C': a.crash_profile = true; break;
                case 'E': a.expect_bug = optarg; break;
                case 'M': if (parse_u64(optarg, &a.max_msg_size) < 0) return 2; break;
                case 'h': help(); return 0;
                default: return 2;
                }
        }
        for (uint64_t seed = a.seed; seed < a.seed + a.count; seed++) {
                char failure[600] = "";
                Run r;
                int k = run_one(&a, seed, a.mask, a.trace ? stdout : NULL, &r, failure, sizeof(failure));

                if (k < 0) {
                        fprintf(stderr, "sim-fuzz: seed %" PRIu64 ": setup failed: %s\n", seed, strerror(-k));
                        return 1;
                }
                msgs += r.sim->stat_msgs;
                elections += r.sim->stat_elections;
                applied += r.sim->stat_applied;
                events += r.sim->events_run;
                snaps += r.sim->stat_snapshots_sent;
                ops += r.sim->n_ops;
                gave_up += r.sim->stat_lin_gave_up;
                if (a.verbose)
                        printf("seed %" PRIu64 ": %s, %" PRIu64 " events, %zu ops, %" PRIu64 " leaders\n", seed,
                               k ? "FAIL" : "ok", r.sim->events_run, r.sim->n_ops, r.sim->stat_elections);
                run_free(&r);
                if (k > 0) {
                        report_failure(&a, seed, failure);
                        printf("sim-fuzz: %" PRIu64 " passed, 1 failed (first failing seed %" PRIu64 ")\n", passed, seed);
                        if (a.expect_bug && !failure_expected(a.expect_bug, failure)) {
                                printf("sim-fuzz: the failure is not the one the planted bug should cause\n");
                                return 0;
                        }
                        return 1;
                }
                passed++;
        }
        printf("sim-fuzz: %" PRIu64 " seeds from %" PRIu64 " (%u voters%s%s): %" PRIu64 " events, %" PRIu64
               " messages, %" PRIu64 " leaders, %" PRIu64 " entries applied, %" PRIu64 " snapshots sent, %" PRIu64
               " client ops; all checkers green\n", a.count, a.seed, a.nodes, a.learners ? " + learners" : "",
               a.membership ? ", membership changes" : "", events, msgs, elections, applied, snaps, ops);
        if (gave_up > 0)
                printf("sim-fuzz: warning: the linearizability search gave up (budget) on %" PRIu64 " key histories\n",
                       gave_up);
        return 0;
}
