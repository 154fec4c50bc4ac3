/* SPDX-License-Identifier: MIT */
/* The etcd v2 state machine: keys and directories, indices, TTLs, conditions, in-order keys,
 * hidden keys, the 1000-event history and watchers, with the exact results etcd 3.4 produces.
 * It is a pure library: no clocks, no I/O, no threads. Every member that applies the same
 * commands in the same order reaches byte-identical state (kv_store_save output).
 *
 * Paths in and out are the client's key paths ("/a/b"); etcd's internal "/1" namespace prefix is
 * an implementation detail that never shows, exactly as etcd trims it from keys and causes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-command.h"
#include "shared/buf.h"
#include "shared/macro.h"

typedef struct KvStore KvStore;
typedef struct KvWatcher KvWatcher;

/* etcd v2 error codes (etcd's error/error.go). */
enum {
        KV_ECODE_KEY_NOT_FOUND        = 100,
        KV_ECODE_TEST_FAILED          = 101,
        KV_ECODE_NOT_FILE             = 102,
        KV_ECODE_NOT_DIR              = 104,
        KV_ECODE_NODE_EXIST           = 105,
        KV_ECODE_ROOT_RONLY           = 107,
        KV_ECODE_DIR_NOT_EMPTY        = 108,
        KV_ECODE_UNAUTHORIZED         = 110,
        KV_ECODE_PREV_VALUE_REQUIRED  = 201,
        KV_ECODE_TTL_NAN              = 202,
        KV_ECODE_INDEX_NAN            = 203,
        KV_ECODE_INVALID_FIELD        = 209,
        KV_ECODE_INVALID_FORM         = 210,
        KV_ECODE_REFRESH_VALUE        = 211,
        KV_ECODE_REFRESH_TTL_REQUIRED = 212,
        KV_ECODE_RAFT_INTERNAL        = 300,
        KV_ECODE_LEADER_ELECT         = 301,
        KV_ECODE_WATCHER_CLEARED      = 400,
        KV_ECODE_EVENT_INDEX_CLEARED  = 401,
};

#define KV_HISTORY_SIZE 1000U

typedef enum KvAction {
        KV_ACTION_GET,
        KV_ACTION_SET,
        KV_ACTION_CREATE,
        KV_ACTION_UPDATE,
        KV_ACTION_DELETE,
        KV_ACTION_COMPARE_AND_SWAP,
        KV_ACTION_COMPARE_AND_DELETE,
        KV_ACTION_EXPIRE,
        _KV_ACTION_MAX,
} KvAction;

/* A node as an event shows it (etcd's NodeExtern). Read-only. */
typedef struct KvEventNode {
        const char *key;               /* "/a/b"; "/" for the root, which renders without key */
        const char *value;             /* NULL for directories (and delete/expire event nodes) */
        bool dir;
        bool root;                     /* the root directory: no key, no indices in JSON */
        int64_t expiration_ns;         /* absolute Unix ns; 0 = no TTL */
        uint64_t modified_index, created_index;
        const struct KvEventNode *nodes; /* listed children (GET of a directory) */
        size_t n_nodes;
} KvEventNode;

/* An immutable, reference-counted event: the result of a write or a get, and what watchers and
 * the history hold. The ttl is computed when rendering, from the node's expiration and time_ns
 * (the time of the command that made the event) or, for local reads, the renderer's clock. */
typedef struct KvEvent {
        unsigned n_ref;
        KvAction action;
        bool refresh;                  /* a refresh: kept in the history but never delivered */
        int64_t time_ns;               /* clock the ttl fields are computed for; 0 = the renderer's */
        KvEventNode node;
        const KvEventNode *prev_node;  /* NULL if none */
} KvEvent;

KvEvent *kv_event_ref(KvEvent *e);
KvEvent *kv_event_unref(KvEvent *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvEvent *, kv_event_unref)
/* The event's index (etcd's Event.Index(): the node's modifiedIndex). */
static inline uint64_t kv_event_index(const KvEvent *e) {
        return e->node.modified_index;
}
const char *kv_action_to_string(KvAction a);
/* 201 for create and for a set that created the key, 200 otherwise. */
int kv_event_http_status(const KvEvent *e);

/* What apply/get/watch produce: an event or an etcd error. */
typedef struct KvStoreResult {
        KvEvent *event;                /* owned reference; NULL on error (and for SYNC) */
        int error_code;                /* 0 or a KV_ECODE_* */
        char *error_cause;             /* owned; NULL when the error has no cause */
        uint64_t index;                /* X-Etcd-Index: the store index the response reports */
} KvStoreResult;

#define KV_STORE_RESULT_NULL ((KvStoreResult) {})
void kv_store_result_done(KvStoreResult *r);   /* releases and zeroes; safe on a zeroed result */
static inline bool kv_store_result_is_error(const KvStoreResult *r) {
        return r->error_code != 0;
}

int kv_store_new(KvStore **ret);
/* Watchers still registered are detached (they never fire again; kv_watcher_free still works). */
KvStore *kv_store_free(KvStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvStore *, kv_store_free)
uint64_t kv_store_index(KvStore *s);
size_t kv_store_count(KvStore *s);             /* nodes, directories included, root excluded */

/* Applies one committed command. Returns 0 with *ret set to the event or the etcd error (an etcd
 * error is a normal outcome, not a failure), or -EINVAL for a malformed command, -EBUSY when
 * called from a watch callback, or -ENOMEM. After -ENOMEM the store may have diverged from the
 * other members and must not be used further. SYNC produces neither event nor error. */
int kv_store_apply(KvStore *s, const KvCommand *c, KvStoreResult *ret);
/* A local (non-quorum) read: etcd's Store.Get. */
int kv_store_get(KvStore *s, const char *path, bool recursive, bool sorted, KvStoreResult *ret);
/* Earliest expiration among TTL keys, so the leader knows when to propose SYNC. -ENOENT if none. */
int kv_store_next_expiration(KvStore *s, int64_t *ret_ns);

/* Watches. The callback runs synchronously from kv_store_apply (after the store has fully
 * applied the command) with a borrowed event; kv_event_ref() it to keep it. A non-stream watcher
 * fires once and is then finished: it stays allocated until kv_watcher_free(). Calling
 * kv_watcher_free() on any watcher from inside a callback is safe; calling kv_store_apply() is
 * not (-EBUSY). Watchers are indexed by path, so one event costs O(depth of its key) lookups. */
typedef void (*KvWatchFn)(KvWatcher *w, const KvEvent *e, void *userdata);

/* since_index 0 means "from the next index". Returns 0 with *ret_watcher registered, or 1 with
 * *ret_now holding the answer at once: the first matching event from the history (with
 * index = the current store index, as etcd reports) or error 401 when since_index is older than
 * the history. A stream watch answered from the history gets only that event, as in etcd.
 * -EINVAL for bad arguments, -ENOMEM. */
int kv_store_watch(KvStore *s, const char *path, bool recursive, bool stream, uint64_t since_index,
                   KvWatchFn cb, void *userdata, KvWatcher **ret_watcher, KvStoreResult *ret_now);
KvWatcher *kv_watcher_free(KvWatcher *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvWatcher *, kv_watcher_free)
/* The store index when the watch started: the watch response's X-Etcd-Index. */
uint64_t kv_watcher_start_index(const KvWatcher *w);
/* False once a non-stream watcher has fired or the store is gone. */
bool kv_watcher_active(const KvWatcher *w);
size_t kv_store_watcher_count(KvStore *s);

/* Rendering: the exact bytes etcd 3.4 sends, trailing "\n" included. now_ns is the renderer's
 * clock, used for "ttl" = ceil(seconds remaining). no_value_on_success is etcd's
 * noValueOnSuccess=true: set/create/update/compareAndSwap events render as {"action":...}. */
int kv_event_render(const KvEvent *e, int64_t now_ns, Buf *out);
int kv_event_render_ex(const KvEvent *e, int64_t now_ns, bool no_value_on_success, Buf *out);
const char *kv_error_message(int code);
int kv_error_http_status(int code);
int kv_store_render_error(int code, const char *cause, uint64_t index, Buf *out);
/* Renders either side of a result and tells the HTTP status. */
int kv_store_result_render(const KvStoreResult *r, int64_t now_ns, Buf *out, int *ret_http_status);

/* /v2/stats/store, as etcd 3.4 shows it (no trailing newline). Counters count what this member
 * applied or served, as etcd's do, including etcd's miscounts (see kv-store-ops.c). */
int kv_store_render_stats(KvStore *s, Buf *out);
/* etcd 3.4 checks whether v2 auth is enabled by reading its missing /2/enabled key once for every
 * /v2/keys request that parses (and every /v2/members request), which counts as a failed get.
 * The HTTP layer calls this at those points to keep getsFail identical. */
void kv_store_count_auth_check(KvStore *s);

/* Snapshots of the whole tree and index (the history and watchers are not included; after a load
 * a watch from an index at or before the snapshot gets 401). Versioned and checksummed; load
 * validates everything and returns -EBADMSG on any malformed or corrupt input, leaving the store
 * unchanged. Registered watchers stay registered across a load. */
int kv_store_save(KvStore *s, Buf *out);
int kv_store_load(KvStore *s, const void *data, size_t len);
