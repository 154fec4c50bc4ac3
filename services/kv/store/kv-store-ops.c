/* SPDX-License-Identifier: MIT */
/* The write and read operations of etcd's v2store and the dispatch of a committed command to them
 * (etcd's applierV2store). Every operation builds its event before it changes the tree, so that
 * running out of memory mostly fails before anything changed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-store-internal.h"

#define KV_MIN_EXPIRE_NS (946684800LL * 1000000000LL) /* 2000-01-01T00:00:00Z */

static const char *node_value(const KvStoreNode *n) {
        return n->dir ? "" : n->value;
}

/* The cause etcd reports for a node's own path: its "/1" prefix is trimmed, so the root is "". */
static const char *cause_path(const char *path) {
        return streq(path, "/") ? "" : path;
}

static int result_event(KvStore *s, KvStoreResult *ret, KvEvent *e) {
        *ret = (KvStoreResult) { .event = e, .index = s->index };
        return 0;
}

/* After a successful write: history and watchers, or only the history for a refresh. */
static void publish(KvStore *s, KvEvent *e) {
        if (e->refresh)
                (void) kv_history_add(s, e);
        else
                kv_watch_notify(s, e);
}

/* Creates the missing directories on the way to parent_len (etcd's walk with checkDir). The caller
 * checked that no component is a file. */
static int make_parents(KvStore *s, const char *path, size_t parent_len, uint64_t index, KvStoreNode **ret) {
        KvStoreNode *d = s->root;

        for (size_t i = 1; i <= parent_len; i++) {
                KvStoreNode *n;
                int r;

                if (i < parent_len && path[i] != '/')
                        continue;
                n = kv_store_lookup(s, path, i);
                if (!n) {
                        r = kv_store_node_new(path, i, true, index, 0, &n);
                        if (r < 0)
                                return r;
                        (void) kv_store_node_insert(s, d, n);
                }
                d = n;
        }
        *ret = d;
        return 0;
}

/* The first file among the existing ancestors of path[0..parent_len), if any. */
static KvStoreNode *find_file_ancestor(KvStore *s, const char *path, size_t parent_len) {
        for (size_t i = 1; i <= parent_len; i++) {
                KvStoreNode *n;
                if (i < parent_len && path[i] != '/')
                        continue;
                n = kv_store_lookup(s, path, i);
                if (!n)
                        return NULL;
                if (!n->dir)
                        return n;
        }
        return NULL;
}

/* etcd's internalCreate. path is clean. */
static int internal_create(KvStore *s, const char *path, bool dir, const char *value, bool replace,
                           int64_t expire_ns, KvAction action, bool refresh, int64_t time_ns, KvStoreResult *ret) {
        size_t len = strlen(path), parent_len;
        uint64_t next = s->index + 1;
        KvStoreNode *d, *n, *prev = NULL, *file;
        _cleanup_(kv_event_unrefp) KvEvent *e = NULL;
        int r;

        if (streq(path, "/"))
                return kv_result_error(ret, KV_ECODE_ROOT_RONLY, "/", s->index);
        if (expire_ns < KV_MIN_EXPIRE_NS)
                expire_ns = 0;
        parent_len = (size_t) ((const char *) memrchr(path, '/', len) - path);
        d = parent_len == 0 ? s->root : kv_store_lookup(s, path, parent_len);
        file = d ? (d->dir ? NULL : d) : find_file_ancestor(s, path, parent_len);
        if (file) {
                s->stats.set_fail++; /* etcd counts a failed walk as a failed set, whatever the action */
                return kv_result_error(ret, KV_ECODE_NOT_DIR, file->path, s->index);
        }
        n = d ? kv_store_lookup(s, path, len) : NULL;
        if (n && !replace)
                return kv_result_error(ret, KV_ECODE_NODE_EXIST, path, s->index);
        if (n && n->dir)
                return kv_result_error(ret, KV_ECODE_NOT_FILE, path, s->index);
        prev = n;

        r = kv_store_node_new(path, len, dir, next, expire_ns, &n);
        if (r < 0)
                return r;
        if (!dir && !(n->value = strdup(value))) {
                free(n);
                return -ENOMEM;
        }
        e = kv_event_new_single(action, path, len, dir ? NULL : value, dir, expire_ns, next, next, prev);
        if (!e || (expire_ns && kv_heap_reserve(s) < 0)) {
                if (!dir)
                        free(n->value);
                free(n);
                return -ENOMEM;
        }
        e->refresh = refresh;
        e->time_ns = time_ns;
        if (!d) {
                r = make_parents(s, path, parent_len, next, &d);
                if (r < 0)
                        return r;
        }
        if (prev)
                kv_store_node_remove(s, prev, NULL);
        (void) kv_store_node_insert(s, d, n);
        if (expire_ns)
                kv_heap_push(s, n);
        s->index = next;
        publish(s, e);
        return result_event(s, ret, TAKE_PTR(e));
}

/* etcd's Store.Set. A refresh keeps the value and must find the key. */
static int store_set(KvStore *s, const KvCommand *c, const char *path, KvStoreResult *ret) {
        const char *value = c->value ?: "";
        KvStoreResult err = KV_STORE_RESULT_NULL;
        _cleanup_free_ char *old = NULL;
        KvStoreNode *n;

        n = kv_store_internal_get(s, path, &err);
        if (!n && (err.error_code != KV_ECODE_KEY_NOT_FOUND || c->refresh)) {
                *ret = err;
                return 0;
        }
        kv_store_result_done(&err);
        if (c->refresh) {
                old = strdup(node_value(n));
                if (!old)
                        return -ENOMEM;
                value = old;
        }
        return internal_create(s, path, c->dir, value, true, c->expiration_ns, KV_ACTION_SET, c->refresh, c->time_ns,
                               ret);
}

static int compare_failed(KvStore *s, const KvStoreNode *n, const char *prev_value, uint64_t prev_index,
                          KvStoreResult *ret) {
        bool index_ok = prev_index == 0 || n->modified_index == prev_index;
        bool value_ok = isempty(prev_value) || streq(node_value(n), prev_value);
        _cleanup_free_ char *cause = NULL;
        int k;

        if (index_ok && value_ok)
                return 0;
        if (index_ok)
                k = asprintf(&cause, "[%s != %s]", prev_value, node_value(n));
        else if (value_ok)
                k = asprintf(&cause, "[%" PRIu64 " != %" PRIu64 "]", prev_index, n->modified_index);
        else
                k = asprintf(&cause, "[%s != %s] [%" PRIu64 " != %" PRIu64 "]", prev_value, node_value(n),
                             prev_index, n->modified_index);
        if (k < 0)
                return -ENOMEM;
        kv_result_set_error(ret, KV_ECODE_TEST_FAILED, TAKE_PTR(cause), s->index);
        return 1;
}

/* etcd's Store.Update and Store.CompareAndSwap, which differ in their checks and in how a
 * directory's event looks. The stored directory keeps its modifiedIndex (etcd only writes the
 * value of files), while the event shows the new index: the "dir TTL update" quirk. */
static int store_update(KvStore *s, const KvCommand *c, const char *path, bool cas, KvStoreResult *ret) {
        const char *value = c->value ?: "";
        uint64_t next = s->index + 1;
        _cleanup_(kv_event_unrefp) KvEvent *e = NULL;
        _cleanup_free_ char *copy = NULL;
        KvStoreNode *n;
        int r;

        if (streq(path, "/"))
                return kv_result_error(ret, KV_ECODE_ROOT_RONLY, "/", s->index);
        n = kv_store_internal_get(s, path, ret);
        if (!n)
                return 0;
        if (cas && n->dir)
                return kv_result_error(ret, KV_ECODE_NOT_FILE, path, s->index);
        if (cas && (r = compare_failed(s, n, c->has_prev_value ? c->prev_value : NULL, c->prev_index, ret)) != 0)
                return r < 0 ? r : 0;
        if (!cas && n->dir && !isempty(value))
                return kv_result_error(ret, KV_ECODE_NOT_FILE, path, s->index);
        if (c->refresh)
                value = node_value(n);
        copy = strdup(value);
        e = kv_event_new_single(cas ? KV_ACTION_COMPARE_AND_SWAP : KV_ACTION_UPDATE, path, strlen(path),
                                n->dir ? NULL : value, n->dir, c->expiration_ns, next, n->created_index, n);
        if (!copy || !e || (c->expiration_ns && !n->heap_pos && kv_heap_reserve(s) < 0))
                return -ENOMEM;
        e->refresh = c->refresh;
        e->time_ns = c->time_ns;
        if (!n->dir) {
                free(n->value);
                n->value = TAKE_PTR(copy);
                n->modified_index = next;
        }
        kv_store_node_update_ttl(s, n, c->expiration_ns);
        s->index = next;
        publish(s, e);
        return result_event(s, ret, TAKE_PTR(e));
}

/* etcd's Store.Delete and Store.CompareAndDelete. */
static int store_delete(KvStore *s, const KvCommand *c, const char *path, bool cad, KvStoreResult *ret) {
        bool dir = c->dir || c->recursive;
        uint64_t next = s->index + 1;
        _cleanup_(kv_event_unrefp) KvEvent *e = NULL;
        KvStoreNode *n;
        int r;

        if (!cad && streq(path, "/"))
                return kv_result_error(ret, KV_ECODE_ROOT_RONLY, "/", s->index);
        n = kv_store_internal_get(s, path, ret);
        if (!n)
                return 0;
        if (cad && n->dir)
                return kv_result_error(ret, KV_ECODE_NOT_FILE, cause_path(path), s->index);
        if (cad && (r = compare_failed(s, n, c->has_prev_value ? c->prev_value : NULL, c->prev_index, ret)) != 0)
                return r < 0 ? r : 0;
        if (n->dir && !dir)
                return kv_result_error(ret, KV_ECODE_NOT_FILE, path, s->index);
        if (n->dir && n->children && !c->recursive)
                return kv_result_error(ret, KV_ECODE_DIR_NOT_EMPTY, path, s->index);
        e = kv_event_new_single(cad ? KV_ACTION_COMPARE_AND_DELETE : KV_ACTION_DELETE, path, strlen(path), NULL,
                                n->dir, 0, next, n->created_index, n);
        if (!e)
                return -ENOMEM;
        e->time_ns = c->time_ns;
        kv_store_node_remove(s, n, e);
        s->index = next;
        kv_watch_notify(s, e);
        return result_event(s, ret, TAKE_PTR(e));
}

/* etcd's DeleteExpiredKeys: one expire event (and index) per expired node, earliest first. */
static int store_sync(KvStore *s, int64_t time_ns, KvStoreResult *ret) {
        while (s->heap_len > 0 && s->heap[0]->expire_ns <= time_ns) {
                KvStoreNode *n = s->heap[0];
                _cleanup_(kv_event_unrefp) KvEvent *e = NULL;

                e = kv_event_new_single(KV_ACTION_EXPIRE, n->path, n->path_len, NULL, n->dir, 0, s->index + 1,
                                        n->created_index, n);
                if (!e)
                        return -ENOMEM;
                e->time_ns = time_ns;
                s->index++;
                kv_store_node_remove(s, n, e);
                s->stats.expire_count++;
                kv_watch_notify(s, e);
                kv_watch_dispatch(s, e);
        }
        *ret = (KvStoreResult) { .index = s->index };
        return 0;
}

static int store_get(KvStore *s, const char *path, bool recursive, bool sorted, int64_t time_ns, KvStoreResult *ret) {
        KvStoreNode *n = kv_store_internal_get(s, path, ret);
        KvEvent *e;

        if (!n) {
                s->stats.get_fail++;
                return 0;
        }
        e = kv_event_new_get(n, recursive, sorted);
        if (!e)
                return -ENOMEM;
        e->time_ns = time_ns;
        s->stats.get_success++;
        return result_event(s, ret, e);
}

void kv_store_count_auth_check(KvStore *s) {
        s->stats.get_fail++;
}

int kv_store_get(KvStore *s, const char *path, bool recursive, bool sorted, KvStoreResult *ret) {
        _cleanup_free_ char *p = NULL;
        KvStoreResult res = KV_STORE_RESULT_NULL;
        int r;

        if (!s || !path || !ret)
                return -EINVAL;
        p = kv_path_clean(path);
        if (!p)
                return -ENOMEM;
        r = store_get(s, p, recursive, sorted, 0, &res);
        if (r < 0) {
                kv_store_result_done(&res);
                return r;
        }
        *ret = res;
        return 0;
}

/* etcd counts a failure as a success when its store function returns an error without assigning
 * it to the variable its deferred counter looks at: root writes (107) for update,
 * compareAndSwap and delete, "Not a file" (102) for update and compareAndDelete, and "Compare
 * failed" (101) for compareAndDelete. /v2/stats/store shows exactly that, so we count the same. */
static void count_as(uint64_t *ok, uint64_t *fail, const KvStoreResult *res, int quirk1, int quirk2) {
        int c = res->error_code;
        if (c == 0 || c == quirk1 || c == quirk2)
                (*ok)++;
        else
                (*fail)++;
}

static void count(uint64_t *ok, uint64_t *fail, const KvStoreResult *res) {
        count_as(ok, fail, res, 0, 0);
}

/* etcd's applierV2store.Put. */
static int apply_put(KvStore *s, const KvCommand *c, const char *path, KvStoreResult *res) {
        KvStoreStats *st = &s->stats;
        bool cond = c->prev_index > 0 || (c->has_prev_value && !isempty(c->prev_value));
        int r;

        if (c->prev_exist == KV_PREV_EXIST_TRUE && !cond) {
                r = store_update(s, c, path, false, res);
                count_as(&st->update_success, &st->update_fail, res, KV_ECODE_ROOT_RONLY, KV_ECODE_NOT_FILE);
        } else if (c->prev_exist == KV_PREV_EXIST_TRUE || (c->prev_exist == KV_PREV_EXIST_UNSET && cond)) {
                r = store_update(s, c, path, true, res);
                count_as(&st->cas_success, &st->cas_fail, res, KV_ECODE_ROOT_RONLY, 0);
        } else if (c->prev_exist == KV_PREV_EXIST_FALSE) {
                r = internal_create(s, path, c->dir, c->value ?: "", false, c->expiration_ns, KV_ACTION_CREATE,
                                    false, c->time_ns, res);
                count(&st->create_success, &st->create_fail, res);
        } else {
                r = store_set(s, c, path, res);
                count(&st->set_success, &st->set_fail, res);
        }
        return r;
}

static int apply_one(KvStore *s, const KvCommand *c, const char *path, KvStoreResult *res) {
        KvStoreStats *st = &s->stats;
        _cleanup_free_ char *unique = NULL, *upath = NULL;
        int r;

        switch (c->method) {
        case KV_METHOD_PUT:
                return apply_put(s, c, path, res);
        case KV_METHOD_POST:
                /* The in-order key is named after the index it will be created at. */
                if (asprintf(&unique, "%s/%020" PRIu64, path, s->index + 1) < 0 || !(upath = kv_path_clean(unique)))
                        return -ENOMEM;
                r = internal_create(s, upath, c->dir, c->value ?: "", false, c->expiration_ns, KV_ACTION_CREATE,
                                    false, c->time_ns, res);
                count(&st->create_success, &st->create_fail, res);
                return r;
        case KV_METHOD_DELETE:
                if (c->prev_index > 0 || (c->has_prev_value && !isempty(c->prev_value))) {
                        r = store_delete(s, c, path, true, res);
                        count_as(&st->cad_success, &st->cad_fail, res, KV_ECODE_NOT_FILE, KV_ECODE_TEST_FAILED);
                } else {
                        r = store_delete(s, c, path, false, res);
                        count_as(&st->delete_success, &st->delete_fail, res, KV_ECODE_ROOT_RONLY, 0);
                }
                return r;
        case KV_METHOD_QGET:
                return store_get(s, path, c->recursive, c->sorted, c->time_ns, res);
        case KV_METHOD_SYNC:
                return store_sync(s, c->time_ns, res);
        default:
                return -EINVAL;
        }
}

int kv_store_apply(KvStore *s, const KvCommand *c, KvStoreResult *ret) {
        KvStoreResult res = KV_STORE_RESULT_NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (!s || !c || !ret || c->method < 0 || c->method >= _KV_METHOD_MAX)
                return -EINVAL;
        if (s->dispatching)
                return -EBUSY;
        if (c->method != KV_METHOD_SYNC) {
                if (!c->path)
                        return -EINVAL;
                path = kv_path_clean(c->path);
                if (!path)
                        return -ENOMEM;
        }
        r = apply_one(s, c, path, &res);
        if (r < 0) {
                kv_store_result_done(&res);
                return r;
        }
        if (res.event && !res.event->refresh && res.event->action != KV_ACTION_GET)
                kv_watch_dispatch(s, res.event);
        *ret = res;
        return 0;
}
