/* SPDX-License-Identifier: MIT */
/* The etcd v2 tree: nodes in a path hash, children in sibling lists, TTL keys in a min-heap, and
 * the operations of etcd's v2store (set, create, update, compareAndSwap, delete,
 * compareAndDelete, get, expire) with etcd's error codes, causes and index rules. Each function
 * below says which etcd function it mirrors; the order of checks matters because it decides
 * which error a request gets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kv-store-internal.h"

static uint32_t path_hash(KvStore *s, const char *p, size_t len) {
        return (uint32_t) kv_siphash(p, len, s->hash_k0, s->hash_k1);
}

KvStoreNode *kv_store_lookup(KvStore *s, const char *path, size_t len) {
        uint32_t h = path_hash(s, path, len);

        for (KvStoreNode *n = s->buckets[h & (s->n_buckets - 1)]; n; n = n->hnext)
                if (n->hash == h && n->path_len == len && memcmp(n->path, path, len) == 0)
                        return n;
        return NULL;
}

int kv_store_node_new(const char *path, size_t len, bool dir, uint64_t index, int64_t expire_ns,
                      KvStoreNode **ret) {
        KvStoreNode *n = malloc(sizeof(KvStoreNode) + len + 1);
        const char *slash;

        if (!n)
                return -ENOMEM;
        *n = (KvStoreNode) {
                .created_index = index,
                .modified_index = index,
                .expire_ns = expire_ns,
                .path_len = (uint32_t) len,
                .dir = dir,
        };
        memcpy(n->path, path, len);
        n->path[len] = 0;
        slash = memrchr(path, '/', len);
        n->name_off = slash ? (uint32_t) (slash - path + 1) : 0;
        *ret = n;
        return 0;
}

static void node_free(KvStoreNode *n) {
        if (!n->dir)
                free(n->value);
        free(n);
}

static int buckets_grow(KvStore *s) {
        size_t nb = s->n_buckets * 2;
        KvStoreNode **b = calloc(nb, sizeof(KvStoreNode *));

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_buckets; i++)
                for (KvStoreNode *n = s->buckets[i], *next; n; n = next) {
                        next = n->hnext;
                        n->hnext = b[n->hash & (nb - 1)];
                        b[n->hash & (nb - 1)] = n;
                }
        free(s->buckets);
        s->buckets = b;
        s->n_buckets = nb;
        return 0;
}

/* Links n into the hash and under parent (NULL only for the root). Cannot fail once the bucket
 * array has room; growing it is best effort (a full table only gets slower). */
int kv_store_node_insert(KvStore *s, KvStoreNode *parent, KvStoreNode *n) {
        KvStoreNode **b;

        if (s->n_nodes >= s->n_buckets)
                (void) buckets_grow(s);
        n->hash = path_hash(s, n->path, n->path_len);
        b = &s->buckets[n->hash & (s->n_buckets - 1)];
        n->hnext = *b;
        *b = n;
        n->parent = parent;
        if (parent)
                LIST_PREPEND(parent->children, n);
        s->n_nodes++;
        return 0;
}

/* TTL heap, ordered by expiration and then path so that ties expire in the same order on every
 * member. */
static bool heap_less(const KvStoreNode *a, const KvStoreNode *b) {
        if (a->expire_ns != b->expire_ns)
                return a->expire_ns < b->expire_ns;
        return strcmp(a->path, b->path) < 0;
}

static void heap_set(KvStore *s, size_t i, KvStoreNode *n) {
        s->heap[i] = n;
        n->heap_pos = (uint32_t) i + 1;
}

static void heap_up(KvStore *s, size_t i) {
        KvStoreNode *n = s->heap[i];
        while (i > 0 && heap_less(n, s->heap[(i - 1) / 2])) {
                heap_set(s, i, s->heap[(i - 1) / 2]);
                i = (i - 1) / 2;
        }
        heap_set(s, i, n);
}

static void heap_down(KvStore *s, size_t i) {
        KvStoreNode *n = s->heap[i];
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= s->heap_len)
                        break;
                if (c + 1 < s->heap_len && heap_less(s->heap[c + 1], s->heap[c]))
                        c++;
                if (!heap_less(s->heap[c], n))
                        break;
                heap_set(s, i, s->heap[c]);
                i = c;
        }
        heap_set(s, i, n);
}

int kv_heap_reserve(KvStore *s) {
        KvStoreNode **h;
        size_t a;

        if (s->heap_len < s->heap_alloc)
                return 0;
        a = MAX(s->heap_alloc * 2, (size_t) 16);
        h = realloc(s->heap, a * sizeof(KvStoreNode *));
        if (!h)
                return -ENOMEM;
        s->heap = h;
        s->heap_alloc = a;
        return 0;
}

/* The caller reserved room with kv_heap_reserve(). */
void kv_heap_push(KvStore *s, KvStoreNode *n) {
        s->heap[s->heap_len++] = n;
        heap_up(s, s->heap_len - 1);
}

static void heap_remove(KvStore *s, KvStoreNode *n) {
        size_t i = n->heap_pos - 1;
        KvStoreNode *last;

        n->heap_pos = 0;
        last = s->heap[--s->heap_len];
        if (i == s->heap_len)
                return;
        heap_set(s, i, last);
        heap_up(s, i);
        heap_down(s, last->heap_pos - 1);
}

/* etcd's node.UpdateTTL: 0 makes the node permanent. The caller reserved heap room. */
static void node_update_ttl(KvStore *s, KvStoreNode *n, int64_t expire_ns) {
        n->expire_ns = expire_ns;
        if (n->heap_pos && expire_ns == 0)
                heap_remove(s, n);
        else if (n->heap_pos) {
                heap_up(s, n->heap_pos - 1);
                heap_down(s, n->heap_pos - 1);
        } else if (expire_ns != 0)
                kv_heap_push(s, n);
}

static void node_unlink(KvStore *s, KvStoreNode *n) {
        KvStoreNode **p = &s->buckets[n->hash & (s->n_buckets - 1)];

        while (*p != n)
                p = &(*p)->hnext;
        *p = n->hnext;
        if (n->parent)
                LIST_REMOVE(n->parent->children, n);
        if (n->heap_pos)
                heap_remove(s, n);
        s->n_nodes--;
}

/* etcd's node.Remove(true, true, callback): children first, then the node itself, each removed
 * path reported to the watchers when e is set. */
static void node_remove_tree(KvStore *s, KvStoreNode *n, const KvEvent *e) {
        if (n->dir)
                while (n->children)
                        node_remove_tree(s, n->children, e);
        if (e && s->n_wlists > 0)
                kv_watch_match(s, e, n->path, true);
        node_unlink(s, n);
        node_free(n);
}

static void tree_free(KvStoreNode *n) {
        if (n->dir)
                for (KvStoreNode *c = n->children, *next; c; c = next) {
                        next = c->next;
                        tree_free(c);
                }
        node_free(n);
}

void kv_store_clear(KvStore *s) {
        if (s->root)
                tree_free(s->root);
        s->root = NULL;
        free(s->buckets);
        s->buckets = NULL;
        s->n_buckets = s->n_nodes = 0;
        free(s->heap);
        s->heap = NULL;
        s->heap_len = s->heap_alloc = 0;
}

int kv_store_init_tree(KvStore *s) {
        int r;

        s->n_buckets = 64;
        s->buckets = calloc(s->n_buckets, sizeof(KvStoreNode *));
        if (!s->buckets)
                return -ENOMEM;
        r = kv_store_node_new("/", 1, true, 0, 0, &s->root);
        if (r < 0)
                return r;
        return kv_store_node_insert(s, NULL, s->root);
}

int kv_store_new(KvStore **ret) {
        _cleanup_(kv_store_freep) KvStore *s = NULL;
        uint64_t key[2] = {};
        int r;

        s = new0(KvStore, 1);
        if (!s)
                return -ENOMEM;
        /* The hash key only shapes the table layout; nothing observable depends on it. */
        if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t) sizeof(key))
                key[0] = (uint64_t) (uintptr_t) s ^ 0x9e3779b97f4a7c15ULL;
        s->hash_k0 = key[0];
        s->hash_k1 = key[1];
        r = kv_store_init_tree(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

KvStore *kv_store_free(KvStore *s) {
        if (!s)
                return NULL;
        kv_watch_detach_all(s);
        kv_history_clear(s, 0);
        kv_store_clear(s);
        free(s->queue);
        free(s);
        return NULL;
}

uint64_t kv_store_index(KvStore *s) {
        return s->index;
}

size_t kv_store_count(KvStore *s) {
        return s->n_nodes - 1;
}

int kv_store_next_expiration(KvStore *s, int64_t *ret_ns) {
        if (s->heap_len == 0)
                return -ENOENT;
        *ret_ns = s->heap[0]->expire_ns;
        return 0;
}

/* etcd's internalGet: the node at a clean path, or error 104 (a component is a file; cause: that
 * file) or 100 (cause: the first missing component). */
static KvStoreNode *internal_get(KvStore *s, const char *path, KvStoreResult *ret) {
        size_t len = strlen(path);
        KvStoreNode *n = kv_store_lookup(s, path, len), *parent = s->root;

        if (n)
                return n;
        for (size_t i = 1; i <= len; i++) {
                if (i < len && path[i] != '/')
                        continue;
                if (!parent->dir) {
                        (void) kv_result_error(ret, KV_ECODE_NOT_DIR, parent->path, s->index);
                        return NULL;
                }
                n = kv_store_lookup(s, path, i);
                if (!n) {
                        _cleanup_free_ char *cause = strndup(path, i);
                        (void) kv_result_error(ret, KV_ECODE_KEY_NOT_FOUND, cause ?: path, s->index);
                        return NULL;
                }
                parent = n;
        }
        return n;
}

KvStoreNode *kv_store_internal_get(KvStore *s, const char *path, KvStoreResult *ret) {
        return internal_get(s, path, ret);
}

void kv_store_node_update_ttl(KvStore *s, KvStoreNode *n, int64_t expire_ns) {
        node_update_ttl(s, n, expire_ns);
}

/* Removes n and everything below it; e (may be NULL) is the event the watchers of each removed
 * path are matched against. */
void kv_store_node_remove(KvStore *s, KvStoreNode *n, const KvEvent *e) {
        node_remove_tree(s, n, e);
}
