/* SPDX-License-Identifier: MIT */
/* Internal layout of the state machine, shared by kv-store*.c and kv-event.c. Not a public
 * interface: the daemon uses kv-store.h only. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kv-store.h"
#include "shared/list.h"

typedef struct KvStoreNode KvStoreNode;
typedef struct KvWatchList KvWatchList;

/* One key or directory. The full path is stored once, inline; the name is its last component.
 * Nodes are found through the store's path hash (O(1)); children hang off their directory in a
 * doubly-linked list (O(1) removal). */
struct KvStoreNode {
        KvStoreNode *parent;           /* NULL for the root */
        KvStoreNode *hnext;            /* path hash chain */
        KvStoreNode *prev, *next;      /* siblings, newest first */
        union {
                KvStoreNode *children; /* dir: first child */
                char *value;           /* file: owned, NUL-terminated */
        };
        uint64_t created_index, modified_index;
        int64_t expire_ns;             /* absolute Unix ns; 0 = permanent */
        uint32_t hash;                 /* of the path */
        uint32_t heap_pos;             /* 1-based slot in the TTL heap; 0 = not in it */
        uint32_t path_len;
        uint32_t name_off;             /* offset of the last component in path */
        bool dir;
        char path[];                   /* "/a/b"; "/" for the root */
};

/* Watchers of one path (the hash key), in registration order. */
struct KvWatchList {
        KvWatchList *hnext;
        KvWatcher *head, *tail;
        uint32_t hash;
        char path[];
};

struct KvWatcher {
        KvStore *store;                /* NULL once the store is gone */
        KvWatchList *list;             /* NULL once unlinked */
        KvWatcher *prev, *next;        /* in list */
        KvWatcher *pending_next;       /* in store->pending (unlink after dispatch) */
        KvWatcher *all_prev, *all_next; /* every watcher not yet freed, so the store can detach them */
        KvWatchFn cb;
        void *userdata;
        uint64_t since_index, start_index;
        bool recursive, stream;
        bool removed;                  /* no longer receives events (fired or freed) */
        bool freed;                    /* kv_watcher_free() ran; memory goes at the sweep */
        bool pending;                  /* on store->pending */
};

typedef struct KvStoreStats {
        uint64_t get_success, get_fail, set_success, set_fail, delete_success, delete_fail;
        uint64_t update_success, update_fail, create_success, create_fail;
        uint64_t cas_success, cas_fail, cad_success, cad_fail, expire_count;
} KvStoreStats;

struct KvStore {
        uint64_t index;                /* etcd's CurrentIndex */
        KvStoreNode *root;
        KvStoreNode **buckets;         /* path hash, n_buckets is a power of two */
        size_t n_buckets, n_nodes;     /* n_nodes includes the root */
        uint64_t hash_k0, hash_k1;     /* random SipHash key: layout only, never output */

        KvStoreNode **heap;            /* TTL min-heap on (expire_ns, path) */
        size_t heap_len, heap_alloc;

        KvEvent *history[KV_HISTORY_SIZE]; /* ring, oldest at history_front */
        size_t history_front, history_len;
        uint64_t history_start, history_last; /* etcd's StartIndex / LastIndex */

        KvWatchList **wbuckets;        /* watch lists by path */
        size_t n_wbuckets, n_wlists, n_watchers;
        KvWatcher **queue;             /* deliveries of the event being applied */
        size_t queue_len, queue_alloc;
        KvWatcher *pending;            /* to unlink once dispatch is over */
        KvWatcher *all_watchers;
        unsigned dispatching;

        KvStoreStats stats;
};

/* kv-store-util.c */
uint64_t kv_siphash(const void *p, size_t len, uint64_t k0, uint64_t k1);
/* Go's path.Clean(path.Join("/", p)): a new string, or NULL on OOM. */
char *kv_path_clean(const char *p);
bool kv_path_is_clean(const char *p);

/* kv-store.c */
KvStoreNode *kv_store_lookup(KvStore *s, const char *path, size_t len);
int kv_store_node_insert(KvStore *s, KvStoreNode *parent, KvStoreNode *n);
int kv_store_node_new(const char *path, size_t len, bool dir, uint64_t index, int64_t expire_ns,
                      KvStoreNode **ret);
void kv_store_clear(KvStore *s);
int kv_store_init_tree(KvStore *s);
void kv_heap_push(KvStore *s, KvStoreNode *n);
int kv_heap_reserve(KvStore *s);
/* etcd's internalGet: the node, or NULL with error 100 or 104 in *ret. */
KvStoreNode *kv_store_internal_get(KvStore *s, const char *path, KvStoreResult *ret);
/* etcd's node.UpdateTTL; the caller reserved heap room. */
void kv_store_node_update_ttl(KvStore *s, KvStoreNode *n, int64_t expire_ns);
/* Removes n and its subtree; each removed path is matched against the watchers for e (if set). */
void kv_store_node_remove(KvStore *s, KvStoreNode *n, const KvEvent *e);

/* kv-event.c */
KvEvent *kv_event_new_single(KvAction action, const char *key, size_t key_len, const char *value,
                             bool dir, int64_t expire_ns, uint64_t modified, uint64_t created,
                             const KvStoreNode *prev);
KvEvent *kv_event_new_get(const KvStoreNode *n, bool recursive, bool sorted);
void kv_result_set_error(KvStoreResult *r, int code, char *cause, uint64_t index);
int kv_result_error(KvStoreResult *r, int code, const char *cause, uint64_t index);

/* kv-store-watch.c */
int kv_history_add(KvStore *s, KvEvent *e);    /* takes a reference */
void kv_history_clear(KvStore *s, uint64_t next_index);
void kv_watch_match(KvStore *s, const KvEvent *e, const char *path, bool deleted);
void kv_watch_notify(KvStore *s, KvEvent *e);  /* history + the walk of the key's prefixes */
void kv_watch_dispatch(KvStore *s, const KvEvent *e);
void kv_watch_detach_all(KvStore *s);
