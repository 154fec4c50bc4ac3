/* SPDX-License-Identifier: MIT */
/* The etcd v2 state machine: operations, errors and their causes, indices, hidden keys, TTLs and
 * expiry through SYNC, the history and watchers. Expected bodies are what etcd 3.4 sends (the
 * differential test proves them against a real etcd; these pin them without one). */
#include <stdio.h>

#include "kv-test-util.h"

static void test_set_get_and_indices(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        int st;
        uint64_t idx;

        assert_int_equal(kv_store_new(&s), 0);
        assert_int_equal(kv_store_index(s), 0);
        assert_string_equal(PUTV(s, "/a", "hello"),
                            "{\"action\":\"set\",\"node\":{\"key\":\"/a\",\"value\":\"hello\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/a", .value = "w", .has_value = true }, &st, &idx),
                            "{\"action\":\"set\",\"node\":{\"key\":\"/a\",\"value\":\"w\",\"modifiedIndex\":2,\"createdIndex\":2},"
                            "\"prevNode\":{\"key\":\"/a\",\"value\":\"hello\",\"modifiedIndex\":1,\"createdIndex\":1}}\n");
        assert_int_equal(st, 200);
        assert_int_equal(idx, 2);
        /* failures do not use an index */
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/a", .prev_exist = KV_PREV_EXIST_FALSE }, &st, NULL),
                            "{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/a\",\"index\":2}\n");
        assert_int_equal(st, 412);
        assert_int_equal(kv_store_index(s), 2);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/" }, &st, NULL),
                            "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/a\",\"value\":\"w\",\"modifiedIndex\":2,\"createdIndex\":2}]}}\n");
}

static void test_error_causes(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        int st;

        assert_int_equal(kv_store_new(&s), 0);
        PUTV(s, "/a/f", "1");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/a/b/c" }, &st, NULL),
                            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/a/b\",\"index\":1}\n");
        assert_int_equal(st, 404);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/a/f/x/y" }, &st, NULL),
                            "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/a/f\",\"index\":1}\n");
        assert_int_equal(st, 400);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_POST, .path = "/a/f" }, NULL, NULL),
                            "{\"errorCode\":104,\"message\":\"Not a directory\",\"cause\":\"/a/f\",\"index\":1}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/" }, &st, NULL),
                            "{\"errorCode\":107,\"message\":\"Root is read only\",\"cause\":\"/\",\"index\":1}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/", .prev_value = "x", .has_prev_value = true }, &st, NULL),
                            "{\"errorCode\":102,\"message\":\"Not a file\",\"index\":1}\n");
        assert_int_equal(st, 403);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/a" }, NULL, NULL),
                            "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/a\",\"index\":1}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/a", .dir = true }, NULL, NULL),
                            "{\"errorCode\":108,\"message\":\"Directory not empty\",\"cause\":\"/a\",\"index\":1}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/a/f", .value = "x", .has_value = true,
                                                           .prev_value = "no", .has_prev_value = true, .prev_index = 9 }, &st, NULL),
                            "{\"errorCode\":101,\"message\":\"Compare failed\",\"cause\":\"[no != 1] [9 != 1]\",\"index\":1}\n");
        assert_int_equal(st, 412);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/a", .dir = true }, NULL, NULL),
                            "{\"errorCode\":102,\"message\":\"Not a file\",\"cause\":\"/a\",\"index\":1}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/a", .dir = true, .prev_exist = KV_PREV_EXIST_FALSE }, NULL, NULL),
                            "{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/a\",\"index\":1}\n");
        assert_int_equal(kv_store_index(s), 1);
}

static void test_conditions_and_dirs(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        int st;

        assert_int_equal(kv_store_new(&s), 0);
        PUTV(s, "/k", "v");
        /* prevIndex=0 counts as absent: a plain set */
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/k", .value = "w", .has_value = true }, NULL, NULL), "\"action\":\"set\""));
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/k", .value = "x", .has_value = true, .prev_index = 2 }, NULL, NULL),
                               "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/k\",\"value\":\"x\",\"modifiedIndex\":3,\"createdIndex\":2}"));
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/k", .value = "y", .has_value = true, .prev_exist = KV_PREV_EXIST_TRUE }, NULL, NULL),
                               "\"action\":\"update\""));
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/k", .prev_value = "y", .has_prev_value = true }, NULL, NULL),
                               "{\"action\":\"compareAndDelete\",\"node\":{\"key\":\"/k\",\"modifiedIndex\":5,\"createdIndex\":2}"));
        /* a dir replaces a file; in-order keys; recursive delete of a file */
        PUTV(s, "/f", "1");
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/f", .dir = true }, &st, NULL),
                               "\"node\":{\"key\":\"/f\",\"dir\":true,\"modifiedIndex\":7,\"createdIndex\":7},\"prevNode\""));
        assert_int_equal(st, 200);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_POST, .path = "/f", .value = "q", .has_value = true }, &st, NULL),
                            "{\"action\":\"create\",\"node\":{\"key\":\"/f/00000000000000000008\",\"value\":\"q\",\"modifiedIndex\":8,\"createdIndex\":8}}\n");
        assert_int_equal(st, 201);
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/f/00000000000000000008", .recursive = true }, NULL, NULL),
                               "\"action\":\"delete\""));
        /* the dir TTL update quirk: the event shows the new index, the node keeps the old one */
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/f", .prev_exist = KV_PREV_EXIST_TRUE,
                                                              .expiration_ns = T0 + 5000000000 }, NULL, NULL),
                               "\"key\":\"/f\",\"dir\":true,\"expiration\":\"2023-11-14T22:13:25Z\",\"ttl\":5,\"modifiedIndex\":10,\"createdIndex\":7}"));
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/f" }, NULL, NULL), "\"modifiedIndex\":7,\"createdIndex\":7}"));
}

static void test_hidden_and_listing(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;

        assert_int_equal(kv_store_new(&s), 0);
        PUTV(s, "/d/_h", "1");
        PUTV(s, "/d/b", "2");
        PUTV(s, "/d/a/x", "3");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/d", .sorted = true }, NULL, NULL),
                            "{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":\"/d/a\",\"dir\":true,\"modifiedIndex\":3,\"createdIndex\":3},"
                            "{\"key\":\"/d/b\",\"value\":\"2\",\"modifiedIndex\":2,\"createdIndex\":2}],\"modifiedIndex\":1,\"createdIndex\":1}}\n");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/d", .sorted = true, .recursive = true }, NULL, NULL),
                            "{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":\"/d/a\",\"dir\":true,\"nodes\":[{\"key\":\"/d/a/x\",\"value\":\"3\",\"modifiedIndex\":3,\"createdIndex\":3}],"
                            "\"modifiedIndex\":3,\"createdIndex\":3},{\"key\":\"/d/b\",\"value\":\"2\",\"modifiedIndex\":2,\"createdIndex\":2}],\"modifiedIndex\":1,\"createdIndex\":1}}\n");
        assert_non_null(strstr(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/d/_h" }, NULL, NULL), "\"value\":\"1\""));
        PUTV(s, "/e/_only", "1");
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/e" }, NULL, NULL),
                            "{\"action\":\"get\",\"node\":{\"key\":\"/e\",\"dir\":true,\"modifiedIndex\":4,\"createdIndex\":4}}\n");
}

static void test_ttl_and_sync(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        int64_t next;

        assert_int_equal(kv_store_new(&s), 0);
        assert_int_equal(kv_store_next_expiration(s, &next), -ENOENT);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t/a", .value = "1", .has_value = true, .expiration_ns = T0 + 1500000000 }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t/b", .value = "1", .has_value = true, .expiration_ns = T0 + 500000000 }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t/c", .value = "1", .has_value = true, .expiration_ns = T0 + 9000000000 }, NULL, NULL);
        /* an expiration before 2000 means no TTL on create */
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t/old", .value = "1", .has_value = true, .expiration_ns = 5 }, NULL, NULL);
        assert_int_equal(kv_store_next_expiration(s, &next), 0);
        assert_true(next == T0 + 500000000);
        /* update without ttl clears it */
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t/c", .value = "2", .has_value = true, .prev_exist = KV_PREV_EXIST_TRUE }, NULL, NULL);
        assert_int_equal(kv_store_index(s), 5);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_SYNC, .time_ns = T0 + 1000000000 }, NULL, NULL);
        assert_int_equal(kv_store_index(s), 6);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_SYNC, .time_ns = T0 + 100000000000 }, NULL, NULL);
        assert_int_equal(kv_store_index(s), 7);
        assert_int_equal(kv_store_next_expiration(s, &next), -ENOENT);
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_QGET, .path = "/t", .sorted = true }, NULL, NULL),
                            "{\"action\":\"get\",\"node\":{\"key\":\"/t\",\"dir\":true,\"nodes\":[{\"key\":\"/t/c\",\"value\":\"2\",\"modifiedIndex\":5,\"createdIndex\":3},"
                            "{\"key\":\"/t/old\",\"value\":\"1\",\"modifiedIndex\":4,\"createdIndex\":4}],\"modifiedIndex\":1,\"createdIndex\":1}}\n");
        /* a dir expiring takes its children; ttl=0 keys render an expiration without ttl */
        assert_string_equal(kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/z", .value = "1", .has_value = true, .expiration_ns = T0 }, NULL, NULL),
                            "{\"action\":\"set\",\"node\":{\"key\":\"/z\",\"value\":\"1\",\"expiration\":\"2023-11-14T22:13:20Z\",\"modifiedIndex\":8,\"createdIndex\":8}}\n");
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_PUT, .path = "/t", .dir = true, .prev_exist = KV_PREV_EXIST_TRUE, .expiration_ns = T0 + 1 }, NULL, NULL);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_SYNC, .time_ns = T0 + 2 }, NULL, NULL);
        assert_int_equal(kv_store_index(s), 11);
        assert_int_equal(kv_store_count(s), 0);
}

static void test_history_401(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        KvStoreResult now = KV_STORE_RESULT_NULL;
        KvWatcher *w = NULL;
        Buf b = BUF_INIT(0);

        assert_int_equal(kv_store_new(&s), 0);
        for (unsigned i = 0; i < 1100; i++)
                PUTV(s, i % 2 ? "/_h" : "/k", "v");
        assert_int_equal(kv_store_watch(s, "/k", false, false, 50, (KvWatchFn) abort, NULL, &w, &now), 1);
        assert_int_equal(kv_store_result_render(&now, T0, &b, NULL), 0);
        assert_string_equal(b.data, "{\"errorCode\":401,\"message\":\"The event in requested index is outdated and cleared\","
                                    "\"cause\":\"the requested history has been cleared [101/50]\",\"index\":1100}\n");
        kv_store_result_done(&now);
        /* the history includes hidden keys */
        assert_int_equal(kv_store_watch(s, "/", true, false, 102, (KvWatchFn) abort, NULL, &w, &now), 1);
        assert_string_equal(now.event->node.key, "/_h");
        assert_int_equal(now.index, 1100);
        kv_store_result_done(&now);
        buf_done(&b);
}

typedef struct Seen {
        unsigned n;
        char keys[8][32];
        KvWatcher *free_in_cb;
        KvWatcher **free_other;
} Seen;

static void on_event(KvWatcher *w, const KvEvent *e, void *userdata) {
        Seen *seen = userdata;
        if (seen->n < 8)
                snprintf(seen->keys[seen->n], sizeof(seen->keys[0]), "%s %s", kv_action_to_string(e->action), e->node.key);
        seen->n++;
        if (seen->free_in_cb == w)
                kv_watcher_free(w);
        if (seen->free_other && *seen->free_other) {
                *seen->free_other = kv_watcher_free(*seen->free_other);
        }
}

static KvWatcher *watch(KvStore *s, const char *p, bool rec, bool stream, Seen *seen) {
        KvStoreResult now = KV_STORE_RESULT_NULL;
        KvWatcher *w = NULL;
        assert_int_equal(kv_store_watch(s, p, rec, stream, 0, on_event, seen, &w, &now), 0);
        return w;
}

static void test_watch_semantics(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        Seen a = {}, b = {}, c = {}, d = {};
        KvWatcher *wa, *wb, *wc, *wd;

        assert_int_equal(kv_store_new(&s), 0);
        PUTV(s, "/d/k", "1");
        wa = watch(s, "/d/k", false, false, &a);     /* fires once */
        wb = watch(s, "/d", false, false, &b);       /* ignores children */
        wc = watch(s, "/d", true, true, &c);         /* stream, recursive, skips hidden */
        wd = watch(s, "/d/k", false, true, &d);      /* stream on the key */
        assert_int_equal(kv_store_watcher_count(s), 4);
        PUTV(s, "/d/_h", "x");
        PUTV(s, "/d/k", "2");
        assert_int_equal(a.n, 1);
        assert_false(kv_watcher_active(wa));
        assert_int_equal(b.n, 0);
        assert_int_equal(c.n, 1);
        assert_string_equal(c.keys[0], "set /d/k");
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/d", .recursive = true }, NULL, NULL);
        /* the delete of /d reaches the key watcher with key /d, twice for stream watchers */
        assert_int_equal(b.n, 1);
        assert_string_equal(b.keys[0], "delete /d");
        assert_int_equal(c.n, 3);
        assert_string_equal(c.keys[1], "delete /d");
        assert_int_equal(d.n, 2);
        assert_string_equal(d.keys[1], "delete /d");
        assert_int_equal(kv_store_watcher_count(s), 2);
        kv_watcher_free(wa);
        kv_watcher_free(wb);
        kv_watcher_free(wc);
        kv_watcher_free(wd);
        assert_int_equal(kv_store_watcher_count(s), 0);
}

static void test_watch_free_in_callback(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        Seen a = {}, b = {};
        KvWatcher *wa, *wb;

        assert_int_equal(kv_store_new(&s), 0);
        wa = watch(s, "/k", false, true, &a);
        wb = watch(s, "/k", false, true, &b);
        a.free_in_cb = wa;       /* frees itself */
        a.free_other = &wb;      /* and the next watcher, which must then not fire */
        PUTV(s, "/k", "1");
        assert_int_equal(a.n, 1);
        assert_int_equal(b.n, 0);
        assert_null(wb);
        assert_int_equal(kv_store_watcher_count(s), 0);
        PUTV(s, "/k", "2");
        assert_int_equal(a.n, 1);
        /* a watcher outliving its store can still be freed */
        wa = watch(s, "/k", false, false, &a);
        kv_store_free(TAKE_PTR(s));
        kv_watcher_free(wa);
}

static void test_many_watchers(void **state) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        enum { N = 5000 };
        KvWatcher **ws = calloc(N, sizeof(KvWatcher *));
        Seen *seen = calloc(N, sizeof(Seen));
        char p[32];

        assert_int_equal(kv_store_new(&s), 0);
        for (unsigned i = 0; i < N; i++) {
                snprintf(p, sizeof(p), "/w/%u", i);
                ws[i] = watch(s, p, false, i % 2, &seen[i]);
        }
        assert_int_equal(kv_store_watcher_count(s), N);
        for (unsigned i = 0; i < N; i += 7) {
                snprintf(p, sizeof(p), "/w/%u", i);
                PUTV(s, p, "x");
        }
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(seen[i].n, i % 7 == 0);
        kv_test_apply(s, (KvCommand) { .method = KV_METHOD_DELETE, .path = "/w", .recursive = true }, NULL, NULL);
        for (unsigned i = 0; i < N; i++) {
                /* deleted keys fire their watchers; keys that never existed are not visited */
                assert_int_equal(seen[i].n, i % 7 == 0 ? 1 + (i % 2) : 0);
                kv_watcher_free(ws[i]);
        }
        free(ws);
        free(seen);
}

TEST_MAIN(cmocka_unit_test(test_set_get_and_indices), cmocka_unit_test(test_error_causes),
          cmocka_unit_test(test_conditions_and_dirs), cmocka_unit_test(test_hidden_and_listing),
          cmocka_unit_test(test_ttl_and_sync), cmocka_unit_test(test_history_401),
          cmocka_unit_test(test_watch_semantics), cmocka_unit_test(test_watch_free_in_callback),
          cmocka_unit_test(test_many_watchers));
