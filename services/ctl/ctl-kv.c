/* SPDX-License-Identifier: MIT */
/* `flotillactl kv`: etcdctl's v2 verbs over the shared KV client, with etcdctl's output and exit
 * codes (simple and extended output), plus --output json. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "shared/buf.h"
#include "shared/parse-util.h"

typedef enum Verb {
        VERB_GET,
        VERB_SET,
        VERB_MK,
        VERB_MKDIR,
        VERB_UPDATE,
        VERB_RM,
        VERB_RMDIR,
        VERB_LS,
        VERB_WATCH,
        _VERB_MAX,
} Verb;

static const struct {
        const char *name;
        unsigned min_args, max_args;   /* positional arguments */
        const char *usage;
} verbs[_VERB_MAX] = {
        [VERB_GET] = { "get", 1, 1, "get [--quorum] KEY" },
        [VERB_SET] = { "set", 2, 2, "set [--ttl SECONDS] [--swap-with-value V] [--swap-with-index N] KEY VALUE" },
        [VERB_MK] = { "mk", 2, 2, "mk [--ttl SECONDS] [--in-order] KEY VALUE" },
        [VERB_MKDIR] = { "mkdir", 1, 1, "mkdir [--ttl SECONDS] KEY" },
        [VERB_UPDATE] = { "update", 2, 2, "update [--ttl SECONDS] KEY VALUE" },
        [VERB_RM] = { "rm", 1, 1, "rm [--dir] [-r|--recursive] [--with-value V] [--with-index N] KEY" },
        [VERB_RMDIR] = { "rmdir", 1, 1, "rmdir KEY" },
        [VERB_LS] = { "ls", 0, 1, "ls [-r|--recursive] [-p] [--sort] [--quorum] [KEY]" },
        [VERB_WATCH] = { "watch", 1, 1, "watch [--forever] [-r|--recursive] [--after-index N] KEY" },
};

typedef struct KvCmd {
        Ctl *ctl;
        Verb verb;
        const char *key, *value;
        int64_t ttl;
        const char *prev_value;
        uint64_t prev_index, after_index;
        bool quorum, in_order, dir, recursive, slash_dirs, sort, forever;
        KvWatch *watch;
        unsigned changes;
} KvCmd;

void ctl_kv_usage(FILE *f) {
        fprintf(f, "flotillactl kv: the etcd v2 key space (etcdctl's verbs and output)\n\n");
        for (unsigned i = 0; i < _VERB_MAX; i++)
                fprintf(f, "  flotillactl kv %s\n", verbs[i].usage);
}

/* ---------------------------------------------------------------- output */

static json_t *node_json(const KvNode *n) {
        json_t *j = json_object(), *kids;

        if (!j)
                return NULL;
        if (n->key)
                json_object_set_new(j, "key", json_string(n->key));
        if (n->value)
                json_object_set_new(j, "value", json_string(n->value));
        if (n->dir)
                json_object_set_new(j, "dir", json_true());
        if (n->expiration) {
                json_object_set_new(j, "expiration", json_string(n->expiration));
                json_object_set_new(j, "ttl", json_integer(n->ttl));
        }
        if (n->n_nodes > 0) {
                kids = json_array();
                for (size_t i = 0; i < n->n_nodes; i++)
                        json_array_append_new(kids, node_json(n->nodes[i]));
                json_object_set_new(j, "nodes", kids);
        }
        if (n->modified_index)
                json_object_set_new(j, "modifiedIndex", json_integer((json_int_t) n->modified_index));
        if (n->created_index)
                json_object_set_new(j, "createdIndex", json_integer((json_int_t) n->created_index));
        return j;
}

static void print_json(const char *action, const KvNode *node, const KvNode *prev) {
        json_t *j = json_object();
        char *s;

        json_object_set_new(j, "action", json_string(action));
        if (node)
                json_object_set_new(j, "node", node_json(node));
        if (prev)
                json_object_set_new(j, "prevNode", node_json(prev));
        s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s)
                printf("%s\n", s);
        free(s);
        json_decref(j);
}

static void print_extended(const KvNode *n, uint64_t index) {
        printf("Key: %s\nCreated-Index: %" PRIu64 "\nModified-Index: %" PRIu64 "\nTTL: %" PRId64 "\nIndex: %" PRIu64 "\n\n%s\n",
               strna(n->key), n->created_index, n->modified_index, n->ttl, index, n->value ?: "");
}

/* etcdctl's "Error:  105: Key already exists (/a) [5]" or the transport failure. */
static int print_error(const KvResult *r) {
        if (r->error_code > 0) {
                fprintf(stderr, "Error:  %d: %s (%s) [%" PRIu64 "]\n", r->error_code, strna(r->message), strna(r->cause),
                        r->etcd_index);
                return CTL_EXIT_SERVER;
        }
        fprintf(stderr, "Error:  client: cluster is unavailable: %s\n", strna(r->message));
        return CTL_EXIT_SERVER;
}

static void print_node(KvCmd *k, const KvResult *r) {
        const KvNode *n = r->node;

        if (k->ctl->output == CTL_OUTPUT_JSON)
                print_json(r->action, r->node, r->prev_node);
        else if (k->ctl->output == CTL_OUTPUT_EXTENDED && n)
                print_extended(n, r->etcd_index);
        else if (n && !n->dir)
                printf("%s\n", n->value ?: "");
}

static void print_listing(KvCmd *k, const KvNode *n, bool top) {
        if (!top || !n->dir) {
                if (k->ctl->output == CTL_OUTPUT_EXTENDED)
                        print_extended(n, 0);
                else
                        printf("%s%s\n", strna(n->key), n->dir && k->slash_dirs ? "/" : "");
        }
        if (!n->dir || (!top && !k->recursive))
                return;
        for (size_t i = 0; i < n->n_nodes; i++)
                print_listing(k, n->nodes[i], false);
}

/* ---------------------------------------------------------------- verbs */

static void on_result(const KvResult *r, void *userdata) {
        KvCmd *k = userdata;
        Ctl *c = k->ctl;

        if (r->error < 0) {
                ctl_finish(c, print_error(r));
                return;
        }
        switch (k->verb) {
        case VERB_GET:
                if (r->node && r->node->dir && c->output == CTL_OUTPUT_SIMPLE) {
                        fprintf(stderr, "%s: is a directory\n", strna(r->node->key));
                        ctl_finish(c, CTL_EXIT_USAGE);
                        return;
                }
                print_node(k, r);
                break;
        case VERB_LS:
                if (c->output == CTL_OUTPUT_JSON)
                        print_json(r->action, r->node, NULL);
                else if (r->node)
                        print_listing(k, r->node, true);
                break;
        case VERB_RM:
                if (c->output == CTL_OUTPUT_JSON)
                        print_json(r->action, r->node, r->prev_node);
                else if (r->prev_node && !r->prev_node->dir && r->prev_node->value)
                        printf("PrevNode.Value: %s\n", r->prev_node->value);
                break;
        case VERB_MKDIR:
        case VERB_RMDIR:
                if (c->output == CTL_OUTPUT_JSON)
                        print_json(r->action, r->node, r->prev_node);
                break;
        default:
                print_node(k, r);
        }
        ctl_finish(c, CTL_EXIT_OK);
}

static bool is_delete(const char *action) {
        return streq_ptr(action, "delete") || streq_ptr(action, "expire") || streq_ptr(action, "compareAndDelete");
}

static void on_watch(KvWatch *w, const KvWatchUpdate *u, void *userdata) {
        KvCmd *k = userdata;
        Ctl *c = k->ctl;

        if (u->type == KV_WATCH_ERROR) {
                fprintf(stderr, "Error:  watch: %s (retrying)\n", strna(u->message));
                return;
        }
        if (u->type == KV_WATCH_SNAPSHOT)
                return; /* history was lost; the state is re-read silently and watching goes on */
        if (c->output == CTL_OUTPUT_JSON)
                print_json(u->action, u->node, u->prev_node);
        else if (u->node && u->node->dir)
                ; /* etcdctl prints nothing for directory events */
        else if (c->output == CTL_OUTPUT_EXTENDED && u->node)
                print_extended(u->node, u->index);
        else {
                if (k->recursive)
                        printf("[%s] %s\n", u->action, u->node ? strna(u->node->key) : "");
                if (is_delete(u->action)) {
                        if (u->prev_node && u->prev_node->value)
                                printf("PrevNode.Value: %s\n", u->prev_node->value);
                } else if (u->node && !u->node->dir)
                        printf("%s\n", u->node->value ?: "");
        }
        (void) fflush(stdout);
        k->changes++;
        if (!k->forever) {
                k->watch = kv_watch_free(w);
                ctl_finish(c, CTL_EXIT_OK);
        }
}

/* "from now": learn the current index with a read, then watch after it (etcdctl sends
 * waitIndex=0; an explicit index makes the resume-after-disconnect logic of the client apply). */
static void on_watch_start(const KvResult *r, void *userdata) {
        KvCmd *k = userdata;
        KvClient *kv = k->ctl->kv;
        int e;

        if (r->error < 0 && r->error_code != 100) {
                ctl_finish(k->ctl, print_error(r));
                return;
        }
        e = kv_watch_new(kv, k->key, k->recursive, r->etcd_index, on_watch, k, &k->watch);
        if (e < 0) {
                fprintf(stderr, "Error:  %s\n", strerror(-e));
                ctl_finish(k->ctl, CTL_EXIT_USAGE);
        }
}

static int run_verb(KvCmd *k) {
        KvRequest q = KV_REQUEST_INIT(KV_GET, k->key);
        KvClient *kv;
        int r;

        r = ctl_kv_client(k->ctl, &kv);
        if (r < 0) {
                fprintf(stderr, "Error:  invalid --endpoints: %s\n", strerror(-r));
                return CTL_EXIT_USAGE;
        }
        q.ttl = k->ttl;
        switch (k->verb) {
        case VERB_GET:
                q.quorum = k->quorum;
                break;
        case VERB_LS:
                q.recursive = k->recursive;
                q.sorted = k->sort;
                q.quorum = k->quorum;
                break;
        case VERB_SET:
                q.method = KV_PUT;
                q.value = k->value;
                q.prev_value = k->prev_value;
                q.prev_index = k->prev_index;
                break;
        case VERB_MK:
                q.method = k->in_order ? KV_POST : KV_PUT;
                q.value = k->value;
                if (!k->in_order)
                        q.prev_exist = 0;
                break;
        case VERB_MKDIR:
                q.method = KV_PUT;
                q.dir = true;
                q.prev_exist = 0;
                break;
        case VERB_UPDATE:
                q.method = KV_PUT;
                q.value = k->value;
                q.prev_exist = 1;
                break;
        case VERB_RM:
                q.method = KV_DELETE;
                q.dir = k->dir;
                q.recursive = k->recursive;
                q.prev_value = k->prev_value;
                q.prev_index = k->prev_index;
                break;
        case VERB_RMDIR:
                q.method = KV_DELETE;
                q.dir = true;
                break;
        case VERB_WATCH:
                if (k->after_index > 0)
                        r = kv_watch_new(kv, k->key, k->recursive, k->after_index, on_watch, k, &k->watch);
                else
                        r = kv_request(kv, &q, on_watch_start, k, NULL);
                goto started;
        default:
                return CTL_EXIT_USAGE;
        }
        r = kv_request(kv, &q, on_result, k, NULL);
started:
        if (r < 0) {
                fprintf(stderr, "Error:  %s\n", strerror(-r));
                return CTL_EXIT_USAGE;
        }
        r = ctl_run(k->ctl);
        k->watch = kv_watch_free(k->watch);
        return r;
}

/* ---------------------------------------------------------------- options */

static int usage_error(Verb v, const char *what, const char *arg) {
        fprintf(stderr, "Incorrect Usage: %s%s%s\nUsage: flotillactl kv %s\n", what, arg ? ": " : "", arg ?: "",
                verbs[v].usage);
        return CTL_EXIT_USAGE;
}

/* Returns the option's value (from "--opt=v" or the next argument), or NULL after an error. */
static const char *option_value(char **argv, int argc, int *i, const char *eq) {
        if (eq)
                return eq + 1;
        if (*i + 1 >= argc)
                return NULL;
        return argv[++*i];
}

static int parse_verb_args(KvCmd *k, int argc, char **argv) {
        const char *pos[2];
        unsigned n_pos = 0;
        bool options_done = false;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *eq, *v;
                char name[64];
                uint64_t u;

                if (options_done || a[0] != '-' || a[1] == 0) {
                        if (n_pos >= verbs[k->verb].max_args)
                                return usage_error(k->verb, "unexpected argument", a);
                        pos[n_pos++] = a;
                        continue;
                }
                if (streq(a, "--")) {
                        options_done = true;
                        continue;
                }
                eq = strchr(a, '=');
                (void) snprintf(name, sizeof(name), "%.*s", (int) (eq ? eq - a : (long) strlen(a)), a);
                if (streq(name, "-r") || streq(name, "--recursive"))
                        k->recursive = true;
                else if (streq(name, "-p") && k->verb == VERB_LS)
                        k->slash_dirs = true;
                else if (streq(name, "--sort") && k->verb == VERB_LS)
                        k->sort = true;
                else if (streq(name, "--quorum"))
                        k->quorum = true;
                else if (streq(name, "--in-order") && k->verb == VERB_MK)
                        k->in_order = true;
                else if (streq(name, "--dir") && k->verb == VERB_RM)
                        k->dir = true;
                else if (streq(name, "--forever") && k->verb == VERB_WATCH)
                        k->forever = true;
                else if (streq(name, "--ttl")) {
                        int64_t t;
                        v = option_value(argv, argc, &i, eq);
                        if (!v || safe_atoi64(v, &t) < 0 || t < 0)
                                return usage_error(k->verb, "--ttl needs a number of seconds", v);
                        k->ttl = t > 0 ? t : KV_TTL_NONE; /* etcdctl: 0 means no TTL */
                } else if (streq(name, "--swap-with-value") || streq(name, "--with-value")) {
                        if (!(v = option_value(argv, argc, &i, eq)))
                                return usage_error(k->verb, "needs a value", name);
                        k->prev_value = v;
                } else if (streq(name, "--swap-with-index") || streq(name, "--with-index") || streq(name, "--after-index")) {
                        v = option_value(argv, argc, &i, eq);
                        if (!v || safe_atou64(v, &u) < 0)
                                return usage_error(k->verb, "needs an index", name);
                        if (streq(name, "--after-index"))
                                k->after_index = u;
                        else
                                k->prev_index = u;
                } else
                        return usage_error(k->verb, "flag provided but not defined", name);
        }
        if (n_pos < verbs[k->verb].min_args)
                return usage_error(k->verb, n_pos == 0 ? "key required" : "value required", NULL);
        k->key = n_pos > 0 ? pos[0] : "/";
        k->value = n_pos > 1 ? pos[1] : NULL;
        return 0;
}

int ctl_kv_main(Ctl *c, int argc, char **argv) {
        KvCmd k = { .ctl = c, .verb = _VERB_MAX, .ttl = KV_TTL_NONE };
        int r;

        if (argc < 2 || streq(argv[1], "help") || streq(argv[1], "--help")) {
                ctl_kv_usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? CTL_EXIT_USAGE : CTL_EXIT_OK;
        }
        for (unsigned i = 0; i < _VERB_MAX; i++)
                if (streq(argv[1], verbs[i].name))
                        k.verb = i;
        if (k.verb == _VERB_MAX) {
                fprintf(stderr, "Incorrect Usage: unknown command 'kv %s'\n", argv[1]);
                ctl_kv_usage(stderr);
                return CTL_EXIT_USAGE;
        }
        r = parse_verb_args(&k, argc - 1, argv + 1);
        if (r != 0)
                return r;
        return run_verb(&k);
}
