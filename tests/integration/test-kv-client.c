/* SPDX-License-Identifier: MIT */
/* The KV client against a real etcd v2 server (or flotilla-kv, by $FLOTILLA_TEST_KV_BIN):
 * request semantics and error mapping, watches that never miss a change (including a forced
 * 401 resync), failover across endpoints and member crashes, and elections. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "shared/buf.h"
#include "shared/kv-client.h"
#include "shared/log.h"
#include "test-kv-server.h"
#include "test-util.h"

static TestKvCluster *single;   /* shared by the tests that need one member */
static sd_event *event;
static unsigned key_seq;

/* A unique prefix per test so tests sharing the server never see each other's keys. */
static const char *prefix(void) {
        static char p[64];
        (void) snprintf(p, sizeof(p), "/t%d-%u", (int) getpid(), ++key_seq);
        return p;
}

static KvClient *client_for(char *const *endpoints, usec_t request_timeout) {
        KvClient *c = NULL;
        KvClientConfig cfg = { .endpoints = endpoints, .request_timeout_usec = request_timeout,
                               .total_timeout_usec = 10 * USEC_PER_SEC, .watch_poll_usec = 2 * USEC_PER_SEC };
        assert_int_equal(kv_client_new(&c, event, &cfg), 0);
        return c;
}

/* Captures one result. */
typedef struct Res {
        bool done;
        int error, code;
        char action[32], key[256], value[256], cause[256], prev_value[256];
        uint64_t modified, created, index;
        int64_t ttl;
        bool has_expiration, dir;
        size_t n_children;
        char children[1024];
} Res;

static void capture(const KvResult *r, void *u) {
        Res *x = u;
        *x = (Res) { .done = true, .error = r->error, .code = r->error_code, .index = r->etcd_index };
        (void) snprintf(x->action, sizeof(x->action), "%s", strna(r->action));
        (void) snprintf(x->cause, sizeof(x->cause), "%s", strna(r->cause));
        if (r->node) {
                (void) snprintf(x->key, sizeof(x->key), "%s", strna(r->node->key));
                (void) snprintf(x->value, sizeof(x->value), "%s", strna(r->node->value));
                x->modified = r->node->modified_index;
                x->created = r->node->created_index;
                x->ttl = r->node->ttl;
                x->has_expiration = r->node->expiration != NULL;
                x->dir = r->node->dir;
                x->n_children = r->node->n_nodes;
                for (size_t i = 0; i < r->node->n_nodes; i++) {
                        strncat(x->children, strna(r->node->nodes[i]->key), sizeof(x->children) - strlen(x->children) - 2);
                        strcat(x->children, " ");
                }
        }
        if (r->prev_node)
                (void) snprintf(x->prev_value, sizeof(x->prev_value), "%s", strna(r->prev_node->value));
}

#define WAIT(x) assert_true(RUN_LOOP_UNTIL(event, (x).done, 15 * USEC_PER_SEC))

static char *key(const char *p, const char *k) {
        static char buf[4][256];
        static int n;
        char *b = buf[n++ % 4];
        (void) snprintf(b, 256, "%s%s", p, k);
        return b;
}

static int group_setup(void **state) {
        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(test_kv_cluster_start(&single, 1), 0);
        return 0;
}

static int group_teardown(void **state) {
        test_kv_cluster_stop(single);
        event = sd_event_unref(event);
        return 0;
}

static void set_get_create_update_and_errors(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Res a = {}, b = {};

        assert_int_equal(kv_set(c, key(p, "/a"), "hello", KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(a.error, 0);
        assert_string_equal(a.action, "set");
        assert_string_equal(a.key, key(p, "/a"));
        assert_true(a.modified > 0 && a.modified == a.created && a.index >= a.modified);

        assert_int_equal(kv_get(c, key(p, "/a"), 0, capture, &b), 0);
        WAIT(b);
        assert_string_equal(b.action, "get");
        assert_string_equal(b.value, "hello");

        b = (Res) {};
        assert_int_equal(kv_create(c, key(p, "/a"), "again", KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, -EEXIST);
        assert_int_equal(b.code, 105);

        b = (Res) {};
        assert_int_equal(kv_update(c, key(p, "/missing"), "x", KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, -ENOENT);
        assert_int_equal(b.code, 100);

        b = (Res) {};
        assert_int_equal(kv_get(c, key(p, "/nope/deeper"), 0, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.code, 100);
        assert_string_equal(b.cause, key(p, "/nope")); /* the first missing component */

        b = (Res) {};
        assert_int_equal(kv_update(c, key(p, "/a"), "world", KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        assert_string_equal(b.action, "update");
        assert_string_equal(b.prev_value, "hello");
        assert_int_equal(b.created, a.created);
}

static void compare_and_swap_and_delete(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Res a = {}, b = {};

        assert_int_equal(kv_set(c, key(p, "/k"), "one", KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(kv_cas(c, key(p, "/k"), "two", a.modified + 1000, NULL, KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, -ESTALE);
        assert_int_equal(b.code, 101);

        b = (Res) {};
        assert_int_equal(kv_cas(c, key(p, "/k"), "two", a.modified, "one", KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, 0);
        assert_string_equal(b.action, "compareAndSwap");
        assert_string_equal(b.value, "two");

        b = (Res) {};
        assert_int_equal(kv_cad(c, key(p, "/k"), 0, "one", capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, -ESTALE);

        b = (Res) {};
        assert_int_equal(kv_cad(c, key(p, "/k"), 0, "two", capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, 0);
        assert_string_equal(b.action, "compareAndDelete");
        assert_int_equal(kv_cas(c, key(p, "/k"), "x", 0, NULL, KV_TTL_NONE, capture, &b), -EINVAL);
}

static void directories_in_order_keys_and_recursive_listing(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Res a = {}, b = {}, d = {};
        char first[256];

        assert_int_equal(kv_mkdir(c, key(p, "/q"), KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(a.error, 0);
        assert_true(a.dir);
        a = (Res) {};
        assert_int_equal(kv_post(c, key(p, "/q"), "job1", KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_string_equal(a.action, "create");
        (void) snprintf(first, sizeof(first), "%s", a.key);
        assert_int_equal(strlen(first) - strlen(key(p, "/q/")), 20); /* 20-digit in-order name */
        assert_int_equal(kv_post(c, key(p, "/q"), "job2", KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        assert_true(strcmp(first, b.key) < 0);

        assert_int_equal(kv_get(c, key(p, "/q"), KV_RECURSIVE | KV_SORTED, capture, &d), 0);
        WAIT(d);
        assert_true(d.dir);
        assert_int_equal(d.n_children, 2);
        assert_true(strstr(d.children, first) == d.children); /* sorted: first comes first */

        d = (Res) {};
        assert_int_equal(kv_delete(c, key(p, "/q"), 0, capture, &d), 0);
        WAIT(d);
        assert_int_equal(d.code, 102); /* a dir needs dir=true or recursive=true */
        assert_int_equal(d.error, -EISDIR);
        d = (Res) {};
        assert_int_equal(kv_delete(c, key(p, "/q"), KV_DIR, capture, &d), 0);
        WAIT(d);
        assert_int_equal(d.code, 108);
        assert_int_equal(d.error, -ENOTEMPTY);
        d = (Res) {};
        assert_int_equal(kv_delete(c, key(p, "/q"), KV_RECURSIVE, capture, &d), 0);
        WAIT(d);
        assert_int_equal(d.error, 0);
}

static void ttl_refresh_and_quorum_reads(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Res a = {}, b = {}, q = {};

        assert_int_equal(kv_set(c, key(p, "/t"), "v", 30, capture, &a), 0);
        WAIT(a);
        assert_true(a.ttl > 0 && a.ttl <= 30);
        assert_true(a.has_expiration);
        assert_int_equal(kv_refresh(c, key(p, "/t"), 60, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, 0);
        assert_string_equal(b.value, "v"); /* value kept */
        assert_true(b.ttl > 30);
        assert_int_equal(kv_get(c, key(p, "/t"), KV_QUORUM, capture, &q), 0);
        WAIT(q);
        assert_int_equal(q.error, 0);
        assert_string_equal(q.value, "v");
        assert_int_equal(kv_refresh(c, key(p, "/t"), KV_TTL_NONE, capture, &q), -EINVAL);
}

static void awkward_keys_and_values_round_trip(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        const char *v = "a b&c=d%e+f?g#h\nline2 \xc3\xa9";
        Res a = {}, b = {};

        assert_int_equal(kv_set(c, key(p, "/sp ace&amp=eq%pct+plus"), v, KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(a.error, 0);
        assert_string_equal(a.key, key(p, "/sp ace&amp=eq%pct+plus"));
        assert_int_equal(kv_get(c, key(p, "/sp ace&amp=eq%pct+plus"), 0, capture, &b), 0);
        WAIT(b);
        assert_string_equal(b.value, v);
}

/* ---- watches ---- */

typedef struct WatchLog {
        unsigned snapshots, changes, errors;
        char last_action[32];
        uint64_t last_index;
        bool ordered;          /* every change index > the previous one */
        Buf state;             /* "key=value;" for every live key we were told about */
        char seen[64][64];     /* keys changed, in order (first 64) */
} WatchLog;

/* Rebuilds "the state as the watcher knows it" into a tiny sorted map held in a Buf. */
static void state_set(Buf *s, const char *k, const char *v) {
        _cleanup_(buf_done) Buf out = BUF_INIT(0);
        char needle[300];
        const char *p = s->data ?: "";

        (void) snprintf(needle, sizeof(needle), "%s=", k);
        for (const char *e; *p; p = e + 1) {
                e = strchr(p, ';');
                if (!e)
                        break;
                if (strncmp(p, needle, strlen(needle)) != 0)
                        (void) buf_append(&out, p, (size_t) (e - p + 1));
        }
        if (v)
                (void) buf_printf(&out, "%s=%s;", k, v);
        buf_clear(s);
        if (out.len)
                (void) buf_append(s, out.data, out.len);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The state as sorted "key=value;" entries, for comparing two views of it. */
static char *state_canon(const Buf *s) {
        _cleanup_strv_free_ char **l = NULL;
        char *j;

        assert_int_equal(strv_split(s->data ?: "", ";", &l), 0);
        qsort(l, strv_length(l), sizeof(char *), cmp_str);
        j = strv_join(l, ";");
        assert_non_null(j);
        return j;
}

static void state_from_node(Buf *s, const KvNode *n) {
        if (!n)
                return;
        if (!n->dir && n->key)
                state_set(s, n->key, n->value);
        for (size_t i = 0; i < n->n_nodes; i++)
                state_from_node(s, n->nodes[i]);
}

static void on_watch(KvWatch *w, const KvWatchUpdate *u, void *userdata) {
        WatchLog *l = userdata;

        if (u->type == KV_WATCH_ERROR) {
                l->errors++;
                return;
        }
        if (u->type == KV_WATCH_SNAPSHOT) {
                l->snapshots++;
                buf_clear(&l->state);
                state_from_node(&l->state, u->node);
                l->last_index = u->index;
                return;
        }
        if (u->index <= l->last_index)
                l->ordered = false;
        l->last_index = u->index;
        if (l->changes < 64 && u->node)
                (void) snprintf(l->seen[l->changes], sizeof(l->seen[0]), "%s", strna(u->node->key));
        l->changes++;
        (void) snprintf(l->last_action, sizeof(l->last_action), "%s", u->action);
        if (u->node && !u->node->dir)
                state_set(&l->state, u->node->key,
                          streq(u->action, "delete") || streq(u->action, "expire") || streq(u->action, "compareAndDelete")
                                  ? NULL : u->node->value);
}

static void watch_snapshot_then_changes_in_order(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        TestKvConn *k = test_kv_conn_new(single->urls[0]);
        const char *p = prefix();
        WatchLog l = { .ordered = true };
        KvWatch *w;
        char path[256];

        (void) snprintf(path, sizeof(path), "/v2/keys%s/before", p);
        assert_int_equal(test_kv_do(k, "PUT", path, "value=0", NULL), 201);
        assert_int_equal(kv_watch_new(c, p, true, 0, on_watch, &l, &w), 0);
        assert_true(RUN_LOOP_UNTIL(event, l.snapshots == 1, 10 * USEC_PER_SEC));
        assert_string_equal(l.state.data, key(p, "/before=0;"));

        (void) snprintf(path, sizeof(path), "/v2/keys%s/x", p);
        assert_int_equal(test_kv_do(k, "PUT", path, "value=1", NULL), 201);
        assert_int_equal(test_kv_do(k, "PUT", path, "value=2", NULL), 200);
        assert_int_equal(test_kv_do(k, "DELETE", path, NULL, NULL), 200);
        assert_true(RUN_LOOP_UNTIL(event, l.changes == 3, 10 * USEC_PER_SEC));
        assert_true(l.ordered);
        assert_string_equal(l.last_action, "delete");
        assert_string_equal(l.state.data, key(p, "/before=0;"));
        assert_int_equal(kv_watch_snapshots(w), 1);
        kv_watch_free(w);
        buf_done(&l.state);
        test_kv_conn_free(k);
}

static void watch_resumes_from_a_given_index(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        WatchLog l = { .ordered = true };
        Res a = {}, b = {};
        KvWatch *w;

        assert_int_equal(kv_set(c, key(p, "/r"), "1", KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(kv_set(c, key(p, "/r"), "2", KV_TTL_NONE, capture, &b), 0);
        WAIT(b);
        /* Both changes are in the past; resuming after the first must deliver the second,
         * from history, without a snapshot. */
        assert_int_equal(kv_watch_new(c, key(p, "/r"), false, a.modified, on_watch, &l, &w), 0);
        assert_true(RUN_LOOP_UNTIL(event, l.changes == 1, 10 * USEC_PER_SEC));
        assert_int_equal(l.snapshots, 0);
        assert_int_equal(l.last_index, b.modified);
        assert_int_equal(kv_watch_index(w), b.modified);
        kv_watch_free(w);
        buf_done(&l.state);
}

/* More than 1000 events happen between two polls: the server's history no longer reaches the
 * watcher's next index (error 401). The watcher must re-list, report a snapshot that matches the
 * server exactly, and go on receiving changes. */
static void watch_resyncs_after_history_is_cleared(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        TestKvConn *k = test_kv_conn_new(single->urls[0]);
        const char *p = prefix();
        WatchLog l = { .ordered = true };
        _cleanup_free_ char *listing = NULL;
        KvWatch *w;
        char path[256], form[64];

        assert_int_equal(kv_watch_new(c, p, true, 0, on_watch, &l, &w), 0);
        assert_true(RUN_LOOP_UNTIL(event, l.snapshots == 1, 10 * USEC_PER_SEC));
        (void) snprintf(path, sizeof(path), "/v2/keys%s/first", p);
        assert_int_equal(test_kv_do(k, "PUT", path, "value=f", NULL), 201);
        assert_true(RUN_LOOP_UNTIL(event, l.changes == 1, 10 * USEC_PER_SEC));

        /* The watcher's loop is not running while 1500 writes happen: its long poll gets the
         * first of them, and its next index is long gone from the 1000-event history. */
        for (int i = 0; i < 1500; i++) {
                (void) snprintf(path, sizeof(path), "/v2/keys%s/k%d", p, i % 300);
                (void) snprintf(form, sizeof(form), "value=%d", i);
                assert_true(test_kv_do(k, "PUT", path, form, NULL) / 100 == 2);
        }
        assert_true(RUN_LOOP_UNTIL(event, l.snapshots == 2, 15 * USEC_PER_SEC));
        assert_int_equal(kv_watch_snapshots(w), 2);

        /* The snapshot is exactly the server's state. */
        {
                WatchLog truth = {};
                _cleanup_(kv_node_freep) KvNode *node = NULL;
                (void) snprintf(path, sizeof(path), "/v2/keys%s?recursive=true", p);
                assert_int_equal(test_kv_do(k, "GET", path, NULL, &listing), 200);
                assert_int_equal(kv_parse_response(listing, strlen(listing), NULL, &node, NULL), 0);
                state_from_node(&truth.state, node);
                _cleanup_free_ char *mine = state_canon(&l.state), *theirs = state_canon(&truth.state);
                assert_true(strlen(theirs) > 0);
                assert_string_equal(mine, theirs);
                buf_done(&truth.state);
        }

        /* And changes after the resync arrive as changes. */
        unsigned before = l.changes;
        (void) snprintf(path, sizeof(path), "/v2/keys%s/after", p);
        assert_int_equal(test_kv_do(k, "PUT", path, "value=a", NULL), 201);
        assert_true(RUN_LOOP_UNTIL(event, l.changes > before, 10 * USEC_PER_SEC));
        assert_non_null(strstr(l.state.data, key(p, "/after=a;")));
        assert_true(l.ordered);
        kv_watch_free(w);
        buf_done(&l.state);
        test_kv_conn_free(k);
}

/* A watch on a quiet key while 1500 unrelated writes happen and its long polls time out: it
 * must keep up without a resync, then see the next change to its key. */
static void quiet_watch_survives_busy_cluster_without_resync(void **state) {
        KvClientConfig cfg = { .endpoints = single->endpoints, .watch_poll_usec = 300 * USEC_PER_MSEC };
        _cleanup_(kv_client_freep) KvClient *c = NULL;
        TestKvConn *k = test_kv_conn_new(single->urls[0]);
        const char *p = prefix();
        WatchLog l = { .ordered = true };
        KvWatch *w;
        char path[256], form[64];

        assert_int_equal(kv_client_new(&c, event, &cfg), 0);
        assert_int_equal(kv_watch_new(c, key(p, "/quiet"), false, 0, on_watch, &l, &w), 0);
        assert_true(RUN_LOOP_UNTIL(event, l.snapshots == 1, 10 * USEC_PER_SEC));
        for (int round = 0; round < 3; round++) {
                for (int i = 0; i < 500; i++) {
                        (void) snprintf(path, sizeof(path), "/v2/keys%s/busy", p);
                        (void) snprintf(form, sizeof(form), "value=%d", i);
                        assert_true(test_kv_do(k, "PUT", path, form, NULL) / 100 == 2);
                }
                test_loop_for(event, 700 * USEC_PER_MSEC); /* at least one poll times out */
        }
        (void) snprintf(path, sizeof(path), "/v2/keys%s/quiet", p);
        assert_int_equal(test_kv_do(k, "PUT", path, "value=now", NULL), 201);
        assert_true(RUN_LOOP_UNTIL(event, l.changes == 1, 10 * USEC_PER_SEC));
        assert_int_equal(l.snapshots, 1);
        assert_string_equal(l.state.data, key(p, "/quiet=now;"));
        kv_watch_free(w);
        buf_done(&l.state);
        test_kv_conn_free(k);
}

static void watch_reports_expiry(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        WatchLog l = { .ordered = true };
        Res a = {};
        KvWatch *w;

        assert_int_equal(kv_watch_new(c, p, true, 0, on_watch, &l, &w), 0);
        assert_true(RUN_LOOP_UNTIL(event, l.snapshots == 1, 10 * USEC_PER_SEC));
        assert_int_equal(kv_set(c, key(p, "/ttl"), "x", 1, capture, &a), 0);
        WAIT(a);
        assert_true(RUN_LOOP_UNTIL(event, l.changes == 2, 10 * USEC_PER_SEC));
        assert_string_equal(l.last_action, "expire");
        assert_string_equal(l.state.data ?: "", "");
        kv_watch_free(w);
        buf_done(&l.state);
}

/* A callback may free its own watch. */
static void on_watch_free_self(KvWatch *w, const KvWatchUpdate *u, void *userdata) {
        int *calls = userdata;
        (*calls)++;
        kv_watch_free(w);
}

static void watch_can_free_itself_from_its_callback(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        int calls = 0;

        assert_int_equal(kv_watch_new(c, prefix(), true, 0, on_watch_free_self, &calls, NULL), 0);
        assert_true(RUN_LOOP_UNTIL(event, calls == 1, 10 * USEC_PER_SEC));
        test_loop_for(event, 200 * USEC_PER_MSEC);
        assert_int_equal(calls, 1);
}

/* ---- failover ---- */

static void failover_when_first_endpoint_is_down(void **state) {
        char dead[64];
        char *eps[] = { dead, single->urls[0], NULL };
        _cleanup_(kv_client_freep) KvClient *c = NULL;
        const char *p = prefix();
        Res a = {}, b = {};

        (void) snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", test_free_port());
        c = client_for(eps, 0);
        assert_string_equal(kv_client_endpoint(c), dead);
        /* A write that never reached the dead endpoint is safe to send to the next one. */
        assert_int_equal(kv_set(c, key(p, "/f"), "1", KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(a.error, 0);
        assert_string_equal(kv_client_endpoint(c), single->urls[0]);
        assert_int_equal(kv_get(c, key(p, "/f"), 0, capture, &b), 0);
        WAIT(b);
        assert_string_equal(b.value, "1");
}

static void all_endpoints_down_fails_after_deadline(void **state) {
        char d1[64], d2[64];
        char *eps[] = { d1, d2, NULL };
        KvClientConfig cfg = { .endpoints = eps, .total_timeout_usec = 600 * USEC_PER_MSEC,
                               .backoff_min_usec = 20 * USEC_PER_MSEC };
        _cleanup_(kv_client_freep) KvClient *c = NULL;
        Res a = {};

        (void) snprintf(d1, sizeof(d1), "http://127.0.0.1:%d", test_free_port());
        (void) snprintf(d2, sizeof(d2), "http://127.0.0.1:%d", test_free_port());
        assert_int_equal(kv_client_new(&c, event, &cfg), 0);
        assert_int_equal(kv_get(c, "/x", 0, capture, &a), 0);
        WAIT(a);
        assert_int_equal(a.error, -ECONNREFUSED);
}

/* A server that accepts connections but never answers: reads move on after the attempt times
 * out; writes do not (they may have been applied) and report the timeout. */
static void black_hole_endpoint_fails_over_reads_not_writes(void **state) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        _cleanup_close_ int hole = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char hole_url[64];
        char *eps[] = { hole_url, single->urls[0], NULL };
        _cleanup_(kv_client_freep) KvClient *c = NULL;
        const char *p = prefix();
        Res a = {}, b = {};

        assert_int_equal(bind(hole, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(hole, 16), 0);
        assert_int_equal(getsockname(hole, (struct sockaddr *) &sa, &sl), 0);
        (void) snprintf(hole_url, sizeof(hole_url), "http://127.0.0.1:%d", ntohs(sa.sin_port));

        c = client_for(eps, 300 * USEC_PER_MSEC);
        assert_int_equal(kv_set(c, key(p, "/w"), "1", KV_TTL_NONE, capture, &a), 0);
        WAIT(a);
        assert_int_equal(a.error, -ETIMEDOUT);
        /* The failed endpoint is no longer the preferred one; reads from a fresh client on the
         * same list fail over after the timeout. */
        kv_client_free(TAKE_PTR(c));
        c = client_for(eps, 300 * USEC_PER_MSEC);
        assert_int_equal(kv_get(c, "/", 0, capture, &b), 0);
        WAIT(b);
        assert_int_equal(b.error, 0);
        assert_string_equal(kv_client_endpoint(c), single->urls[0]);
}

/* ---- elections ---- */

typedef struct Seat {
        bool leader;
        unsigned changes;
        char holder[64];
        usec_t became_leader, stepped_down;
} Seat;

static void on_seat(KvElection *e, bool leader, const char *holder, void *userdata) {
        Seat *s = userdata;
        if (leader && !s->leader)
                s->became_leader = now_usec(CLOCK_MONOTONIC);
        if (!leader && s->leader)
                s->stepped_down = now_usec(CLOCK_MONOTONIC);
        s->leader = leader;
        s->changes++;
        (void) snprintf(s->holder, sizeof(s->holder), "%s", strna(holder));
}

static void election_hands_over_when_holder_stops_renewing(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Seat a = {}, b = {};
        KvElection *ea, *eb;

        assert_int_equal(kv_election_new(c, key(p, "/leader"), "A", 2, on_seat, &a, &ea), 0);
        assert_true(RUN_LOOP_UNTIL(event, a.leader, 10 * USEC_PER_SEC));
        assert_int_equal(kv_election_new(c, key(p, "/leader"), "B", 2, on_seat, &b, &eb), 0);
        assert_true(RUN_LOOP_UNTIL(event, streq(b.holder, "A"), 10 * USEC_PER_SEC));
        assert_false(b.leader);
        /* A keeps the seat across several TTLs while it refreshes. */
        test_loop_for(event, 5 * USEC_PER_SEC);
        assert_true(a.leader);
        assert_false(b.leader);
        assert_true(kv_election_is_leader(ea));

        /* A stops renewing (as if its process died): B takes over once the TTL runs out. */
        kv_election_free(ea);
        assert_true(RUN_LOOP_UNTIL(event, b.leader, 10 * USEC_PER_SEC));
        assert_string_equal(b.holder, "B");
        kv_election_free(eb);
}

static void election_resign_hands_over_at_once(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Seat a = {}, b = {};
        KvElection *ea, *eb;

        assert_int_equal(kv_election_new(c, key(p, "/leader"), "A", 30, on_seat, &a, &ea), 0);
        assert_true(RUN_LOOP_UNTIL(event, a.leader, 10 * USEC_PER_SEC));
        assert_int_equal(kv_election_new(c, key(p, "/leader"), "B", 30, on_seat, &b, &eb), 0);
        assert_true(RUN_LOOP_UNTIL(event, streq(b.holder, "A"), 10 * USEC_PER_SEC));
        assert_int_equal(kv_election_resign(ea), 0);
        assert_false(a.leader);
        /* With a 30 s TTL, only the delete can explain a quick handover. */
        assert_true(RUN_LOOP_UNTIL(event, b.leader, 5 * USEC_PER_SEC));
        kv_election_free(ea);
        kv_election_free(eb);
}

static void election_reclaims_own_key_after_restart(void **state) {
        _cleanup_(kv_client_freep) KvClient *c = client_for(single->endpoints, 0);
        const char *p = prefix();
        Seat a = {}, a2 = {};
        KvElection *ea;

        assert_int_equal(kv_election_new(c, key(p, "/leader"), "A", 30, on_seat, &a, &ea), 0);
        assert_true(RUN_LOOP_UNTIL(event, a.leader, 10 * USEC_PER_SEC));
        kv_election_free(ea);
        /* The same identity campaigns again while its key still exists. */
        assert_int_equal(kv_election_new(c, key(p, "/leader"), "A", 30, on_seat, &a2, &ea), 0);
        assert_true(RUN_LOOP_UNTIL(event, a2.leader, 10 * USEC_PER_SEC));
        kv_election_free(ea);
}

/* ---- a 3-member cluster with crashes ---- */

/* Kill -9 the member both clients use in the middle of a stream of writes. A write that may have
 * reached the dying member is reported as failed, not retried behind the caller's back (it may
 * have been applied); the writer retries it like an application would. Every acknowledged
 * write must reach the watcher, in order, without a resync. */
static void cluster_member_crash_loses_no_watch_event(void **state) {
        TestKvCluster *cl = NULL;
        _cleanup_(kv_client_freep) KvClient *writer = NULL, *watcher = NULL;
        WatchLog l = { .ordered = true };
        KvWatch *w;
        int failed = 0;

        assert_int_equal(test_kv_cluster_start(&cl, 3), 0);
        writer = client_for(cl->endpoints, 0);
        watcher = client_for(cl->endpoints, 0);
        assert_int_equal(kv_watch_new(watcher, "/crash", true, 0, on_watch, &l, &w), 0);
        assert_true(RUN_LOOP_UNTIL(event, l.snapshots == 1, 10 * USEC_PER_SEC));

        for (int i = 0; i < 60; i++) {
                char k[64], v[16];
                Res a = {};

                if (i == 20) {
                        unsigned victim = 0;
                        for (unsigned m = 0; m < cl->n; m++)
                                if (streq(kv_client_endpoint(writer), cl->urls[m]))
                                        victim = m;
                        assert_int_equal(test_kv_member_signal(cl, victim, SIGKILL), 0);
                }
                (void) snprintf(k, sizeof(k), "/crash/k%02d", i);
                (void) snprintf(v, sizeof(v), "%d", i);
                for (int attempt = 0; attempt < 3 && !(a.done && a.error == 0); attempt++) {
                        a = (Res) {};
                        assert_int_equal(kv_set(writer, k, v, KV_TTL_NONE, capture, &a), 0);
                        WAIT(a);
                        if (a.error < 0)
                                failed++;
                }
                assert_int_equal(a.error, 0);
        }
        assert_true(failed <= 3);
        assert_true(RUN_LOOP_UNTIL(event, strstr(l.state.data ?: "", "/crash/k59=59;") != NULL, 20 * USEC_PER_SEC));
        assert_int_equal(l.snapshots, 1);
        assert_true(l.ordered);
        assert_true(l.changes >= 60);
        for (int i = 0; i < 60; i++) {
                char k[64];
                (void) snprintf(k, sizeof(k), "/crash/k%02d=%d;", i, i);
                assert_non_null(strstr(l.state.data, k));
        }
        kv_watch_free(w);
        buf_done(&l.state);
        test_kv_cluster_stop(cl);
}

/* The holder loses its only endpoint: it must step down by itself (its lease ran out) before
 * the other participant, which still reaches the cluster, takes the seat. */
static void election_holder_cut_off_steps_down_before_handover(void **state) {
        TestKvCluster *cl = NULL;
        _cleanup_(kv_client_freep) KvClient *ca = NULL, *cb = NULL;
        char *only0[] = { NULL, NULL }, *others[] = { NULL, NULL, NULL };
        Seat a = {}, b = {};
        KvElection *ea, *eb;

        assert_int_equal(test_kv_cluster_start(&cl, 3), 0);
        only0[0] = cl->urls[0];
        others[0] = cl->urls[1];
        others[1] = cl->urls[2];
        ca = client_for(only0, 500 * USEC_PER_MSEC);
        cb = client_for(others, 500 * USEC_PER_MSEC);
        assert_int_equal(kv_election_new(ca, "/seat", "A", 2, on_seat, &a, &ea), 0);
        assert_true(RUN_LOOP_UNTIL(event, a.leader, 10 * USEC_PER_SEC));
        assert_int_equal(kv_election_new(cb, "/seat", "B", 2, on_seat, &b, &eb), 0);
        assert_true(RUN_LOOP_UNTIL(event, streq(b.holder, "A"), 10 * USEC_PER_SEC));

        /* Freeze member 0: A's refreshes hang and time out. */
        assert_int_equal(test_kv_member_signal(cl, 0, SIGSTOP), 0);
        assert_true(RUN_LOOP_UNTIL(event, b.leader, 15 * USEC_PER_SEC));
        assert_true(a.stepped_down > 0);
        assert_true(a.stepped_down <= b.became_leader);
        assert_false(a.leader);
        kv_election_free(ea);
        kv_election_free(eb);
        test_kv_cluster_stop(cl);
}

TEST_MAIN_GROUP(group_setup, group_teardown,
                cmocka_unit_test(set_get_create_update_and_errors),
                cmocka_unit_test(compare_and_swap_and_delete),
                cmocka_unit_test(directories_in_order_keys_and_recursive_listing),
                cmocka_unit_test(ttl_refresh_and_quorum_reads),
                cmocka_unit_test(awkward_keys_and_values_round_trip),
                cmocka_unit_test(watch_snapshot_then_changes_in_order),
                cmocka_unit_test(watch_resumes_from_a_given_index),
                cmocka_unit_test(watch_resyncs_after_history_is_cleared),
                cmocka_unit_test(quiet_watch_survives_busy_cluster_without_resync),
                cmocka_unit_test(watch_reports_expiry),
                cmocka_unit_test(watch_can_free_itself_from_its_callback),
                cmocka_unit_test(failover_when_first_endpoint_is_down),
                cmocka_unit_test(all_endpoints_down_fails_after_deadline),
                cmocka_unit_test(black_hole_endpoint_fails_over_reads_not_writes),
                cmocka_unit_test(election_hands_over_when_holder_stops_renewing),
                cmocka_unit_test(election_resign_hands_over_at_once),
                cmocka_unit_test(election_reclaims_own_key_after_restart),
                cmocka_unit_test(cluster_member_crash_loses_no_watch_event),
                cmocka_unit_test(election_holder_cut_off_steps_down_before_handover))
