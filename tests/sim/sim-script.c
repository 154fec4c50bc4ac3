/* SPDX-License-Identifier: MIT */
/* sim-script: runs text-scripted scenarios (tests/sim/testdata/ *.txt) against the simulator in
 * manual mode and compares each command's output with the expected output written below it, in
 * the style of etcd's datadriven tests. --rewrite regenerates the expected output. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef struct Block {
        char *pre;              /* comments and blank lines before the command */
        char *cmd;
        char *expected;
        char *actual;
} Block;

static char *xstrndup(const char *s, size_t n) {
        char *c = strndup(s, n);
        if (!c)
                abort();
        return c;
}

/* Splits the file into blocks: [comments] command "----" output, ended by a blank line. */
static int parse(const char *text, Block **ret, size_t *ret_n) {
        Block *b = NULL;
        size_t n = 0;
        const char *p = text;

        while (*p) {
                const char *start = p, *cmd, *sep, *out, *end;
                Block blk = {};

                /* Skip comments and blank lines. */
                while (*p && (*p == '#' || *p == '\n')) {
                        const char *nl = strchr(p, '\n');
                        p = nl ? nl + 1 : p + strlen(p);
                }
                if (!*p) {
                        if (p > start) {
                                b = realloc(b, (n + 1) * sizeof(Block));
                                b[n++] = (Block) { .pre = xstrndup(start, (size_t) (p - start)) };
                        }
                        break;
                }
                cmd = p;
                sep = strstr(p, "\n----\n");
                if (!sep) {
                        fprintf(stderr, "missing '----' after command: %.40s\n", cmd);
                        return -EINVAL;
                }
                out = sep + 6;
                if (*out == '\n' || !*out)
                        end = out;              /* no expected output yet */
                else if (!(end = strstr(out, "\n\n")))
                        end = out + strlen(out);
                else
                        end++;
                blk.pre = xstrndup(start, (size_t) (cmd - start));
                blk.cmd = xstrndup(cmd, (size_t) (sep - cmd));
                blk.expected = xstrndup(out, (size_t) (end - out));
                p = *end ? end + 1 : end;
                b = realloc(b, (n + 1) * sizeof(Block));
                if (!b)
                        abort();
                b[n++] = blk;
        }
        *ret = b;
        *ret_n = n;
        return 0;
}

/* ---- command arguments ---- */

typedef struct Args {
        char *words[32];
        size_t n;
} Args;

static void split(char *line, Args *a) {
        a->n = 0;
        for (char *t = strtok(line, " \t"); t && a->n < 32; t = strtok(NULL, " \t"))
                a->words[a->n++] = t;
}

static const char *kv(const Args *a, const char *key) {
        size_t l = strlen(key);

        for (size_t i = 1; i < a->n; i++)
                if (strncmp(a->words[i], key, l) == 0 && a->words[i][l] == '=')
                        return a->words[i] + l + 1;
        return NULL;
}

static bool flag(const Args *a, const char *key) {
        for (size_t i = 1; i < a->n; i++)
                if (strcmp(a->words[i], key) == 0)
                        return true;
        return false;
}

static uint64_t num(const Args *a, size_t i) {
        return i < a->n ? strtoull(a->words[i], NULL, 10) : 0;
}

static size_t id_list(const char *s, uint64_t *ids, size_t max) {
        size_t n = 0;

        while (s && *s && n < max) {
                char *e;
                uint64_t v = strtoull(s, &e, 10);

                if (e == s)
                        break;
                ids[n++] = v;
                s = *e == ',' ? e + 1 : e;
        }
        return n;
}

/* ---- commands ---- */

typedef struct Ctx {
        Sim *sim;
        FILE *out;
} Ctx;

static void print_status(Ctx *c, uint64_t only) {
        Sim *s = c->sim;

        for (unsigned id = 1; id <= s->max_id; id++) {
                SimNode *n = &s->nodes[id];
                RaftStatus st;

                if (!n->exists || (only && id != only))
                        continue;
                if (!n->alive) {
                        fprintf(c->out, "%u: crashed\n", id);
                        continue;
                }
                raft_status(n->raft, &st);
                fprintf(c->out, "%u: %s term=%" PRIu64 " vote=%" PRIu64 " lead=%" PRIu64 " commit=%" PRIu64
                        " applied=%" PRIu64 " last=%" PRIu64 "\n", id, raft_role_to_string(st.soft_state.role),
                        st.hard_state.term, st.hard_state.vote, st.soft_state.lead, st.hard_state.commit,
                        st.applied, st.last_index);
        }
}

static void print_log(Ctx *c, uint64_t id) {
        SimNode *n = &c->sim->nodes[id];
        RaftStatus st;

        if (!n->exists || !n->alive) {
                fprintf(c->out, "%" PRIu64 ": crashed\n", id);
                return;
        }
        raft_status(n->raft, &st);
        fprintf(c->out, "%" PRIu64 ": first=%" PRIu64 " terms:", id, st.first_index);
        for (uint64_t i = st.first_index; i <= st.last_index; i++) {
                uint64_t t = 0;

                (void) raft_term_at(n->raft, i, &t);
                fprintf(c->out, " %" PRIu64 "/%" PRIu64, t, i);
        }
        fputc('\n', c->out);
}

static int run_command(Ctx *c, char *line) {
        Args a;
        const char *v;
        Sim *s = c->sim;
        int r = 0;

        split(line, &a);
        if (a.n == 0)
                return -EINVAL;
        if (strcmp(a.words[0], "cluster") == 0) {
                SimOptions o = {
                        .seed = 1,
                        .n_voters = (unsigned) strtoul(kv(&a, "voters") ?: "3", NULL, 10),
                        .n_learners = (unsigned) strtoul(kv(&a, "learners") ?: "0", NULL, 10),
                        .pre_vote = flag(&a, "pre-vote"),
                        .check_quorum = flag(&a, "check-quorum"),
                        .election_tick = 10,
                        .heartbeat_tick = 1,
                        .max_size_per_msg = strtoull(kv(&a, "max-msg-size") ?: "4096", NULL, 10),
                        .max_inflight = strtoul(kv(&a, "max-inflight") ?: "256", NULL, 10),
                        .manual = true,
                        .trace = c->out,
                        .trace_raft = !flag(&a, "quiet"),
                };
                c->sim = sim_free(c->sim);
                r = sim_new(&c->sim, &o);
                if (r >= 0)
                        print_status(c, 0);
                return r;
        }
        if (!s)
                return -ENODEV;
        s->o.trace = c->out;
        if (strcmp(a.words[0], "campaign") == 0) {
                r = raft_campaign(s->nodes[num(&a, 1)].raft);
                check_leader(s, &s->nodes[num(&a, 1)]);
        } else if (strcmp(a.words[0], "tick") == 0) {
                sim_tick(s, num(&a, 1), a.n > 2 ? (unsigned) num(&a, 2) : 1);
        } else if (strcmp(a.words[0], "tick-election") == 0) {
                sim_tick(s, num(&a, 1), 2 * s->o.election_tick);
        } else if (strcmp(a.words[0], "tick-heartbeat") == 0) {
                sim_tick(s, num(&a, 1), s->o.heartbeat_tick);
        } else if (strcmp(a.words[0], "propose") == 0) {
                const char *d = a.n > 2 ? a.words[2] : "";
                r = raft_propose(s->nodes[num(&a, 1)].raft, d, strlen(d));
        } else if (strcmp(a.words[0], "propose-conf-change") == 0) {
                RaftConfChange cc = { .node_id = num(&a, 3) };

                cc.type = a.n > 2 && strcmp(a.words[2], "add-voter") == 0 ? RAFT_CONF_ADD_VOTER :
                          a.n > 2 && strcmp(a.words[2], "add-learner") == 0 ? RAFT_CONF_ADD_LEARNER :
                          RAFT_CONF_REMOVE_NODE;
                r = raft_propose_conf_change(s->nodes[num(&a, 1)].raft, &cc);
        } else if (strcmp(a.words[0], "read-index") == 0) {
                const char *d = a.n > 2 ? a.words[2] : "ctx";
                r = raft_read_index(s->nodes[num(&a, 1)].raft, d, strlen(d));
        } else if (strcmp(a.words[0], "transfer-leader") == 0) {
                r = raft_transfer_leader(s->nodes[num(&a, 1)].raft, num(&a, 2));
        } else if (strcmp(a.words[0], "process-ready") == 0) {
                sim_process_ready(s, num(&a, 1));
        } else if (strcmp(a.words[0], "deliver") == 0) {
                uint64_t drop[SIM_MAX_NODES];
                size_t nd = id_list(kv(&a, "drop"), drop, SIM_MAX_NODES);

                (void) sim_deliver(s, num(&a, 1), drop, nd);
        } else if (strcmp(a.words[0], "drop") == 0) {
                (void) sim_drop_from(s, strtoull(kv(&a, "from") ?: "0", NULL, 10));
        } else if (strcmp(a.words[0], "stabilize") == 0) {
                sim_stabilize(s);
        } else if (strcmp(a.words[0], "partition") == 0) {
                uint64_t group[SIM_MAX_NODES + 1] = {};

                for (size_t i = 1; i < a.n; i++) {
                        uint64_t ids[SIM_MAX_NODES];
                        size_t k = id_list(a.words[i], ids, SIM_MAX_NODES);

                        for (size_t j = 0; j < k; j++)
                                if (ids[j] <= SIM_MAX_NODES)
                                        group[ids[j]] = i;
                }
                sim_heal(s);
                for (unsigned x = 1; x <= s->max_id; x++)
                        for (unsigned y = 1; y <= s->max_id; y++)
                                if (group[x] != group[y])
                                        sim_block(s, x, y, true);
        } else if (strcmp(a.words[0], "isolate") == 0) {
                for (unsigned x = 1; x <= s->max_id; x++)
                        if (x != num(&a, 1)) {
                                sim_block(s, x, num(&a, 1), true);
                                sim_block(s, num(&a, 1), x, true);
                        }
        } else if (strcmp(a.words[0], "heal") == 0) {
                sim_heal(s);
        } else if (strcmp(a.words[0], "crash") == 0) {
                sim_crash(s, num(&a, 1));
        } else if (strcmp(a.words[0], "restart") == 0) {
                r = sim_restart(s, num(&a, 1));
        } else if (strcmp(a.words[0], "compact") == 0) {
                SimNode *n = &s->nodes[num(&a, 1)];
                uint64_t at = num(&a, 2);
                uint8_t none = 0;

                /* The register's content is not needed by the scripts: an empty payload. */
                r = raft_memory_storage_create_snapshot(n->ms, at, &n->conf, &none, 0);
                if (r >= 0)
                        r = raft_memory_storage_compact(n->ms, at);
                if (r >= 0) {
                        (void) raft_memory_storage_create_snapshot(n->durable, at, &n->conf, &none, 0);
                        (void) raft_memory_storage_compact(n->durable, at);
                }
        } else if (strcmp(a.words[0], "status") == 0) {
                print_status(c, num(&a, 1));
        } else if (strcmp(a.words[0], "raft-log") == 0) {
                print_log(c, num(&a, 1));
        } else if (strcmp(a.words[0], "check") == 0) {
                fprintf(c->out, "%s\n", s->check.failed ? s->check.failure : "all checkers green");
        } else {
                return -EOPNOTSUPP;
        }
        if ((v = kv(&a, "expect-error")) && r == 0)
                fprintf(c->out, "expected an error\n");
        if (r < 0)
                fprintf(c->out, "error: %s\n", strerror(-r));
        return 0;
}

static int run_file(const char *path, bool rewrite) {
        char *text = NULL, *buf = NULL;
        size_t len = 0, n = 0, blen = 0;
        Block *blocks = NULL;
        Ctx ctx = {};
        int failures = 0, r;
        FILE *f = fopen(path, "re");

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -errno;
        }
        if (getdelim(&text, &len, '\0', f) < 0) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        r = parse(text, &blocks, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                Block *b = &blocks[i];
                FILE *out;
                char *line;

                if (!b->cmd)
                        continue;
                out = open_memstream(&buf, &blen);
                if (!out)
                        abort();
                ctx.out = out;
                line = strdup(b->cmd);
                r = run_command(&ctx, line);
                if (r < 0)
                        fprintf(out, "command failed: %s\n", strerror(-r));
                free(line);
                fclose(out);
                if (blen == 0 || buf[blen - 1] != '\n') {
                        /* Every output is non-empty and ends with a newline. */
                        char *t = NULL;
                        if (asprintf(&t, "%s%s\n", buf, blen == 0 ? "ok" : "") < 0)
                                abort();
                        free(buf);
                        buf = t;
                }
                b->actual = buf;
                buf = NULL;
                if (ctx.sim && ctx.sim->o.trace == out)
                        ctx.sim->o.trace = NULL;
                if (!rewrite && strcmp(b->actual, b->expected) != 0) {
                        fprintf(stderr, "%s: output of '%s' differs.\n--- expected\n%s--- actual\n%s---\n",
                                path, b->cmd, b->expected, b->actual);
                        failures++;
                }
        }
        if (rewrite) {
                f = fopen(path, "we");
                if (!f)
                        return -errno;
                for (size_t i = 0; i < n; i++) {
                        fputs(blocks[i].pre, f);
                        if (blocks[i].cmd)
                                fprintf(f, "%s\n----\n%s\n", blocks[i].cmd, blocks[i].actual ?: blocks[i].expected);
                }
                fclose(f);
        }
        for (size_t i = 0; i < n; i++) {
                free(blocks[i].pre);
                free(blocks[i].cmd);
                free(blocks[i].expected);
                free(blocks[i].actual);
        }
        free(blocks);
        free(text);
        sim_free(ctx.sim);
        return failures ? -EBADMSG : 0;
}

int main(int argc, char **argv) {
        bool rewrite = false;
        int passed = 0, failed = 0;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--rewrite") == 0) {
                        rewrite = true;
                        continue;
                }
                if (run_file(argv[i], rewrite) < 0) {
                        fprintf(stderr, "FAIL %s\n", argv[i]);
                        failed++;
                } else {
                        printf("ok %s%s\n", argv[i], rewrite ? " (rewritten)" : "");
                        passed++;
                }
        }
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
}
