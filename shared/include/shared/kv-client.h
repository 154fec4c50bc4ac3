/* SPDX-License-Identifier: MIT */
/* The etcd v2 keys API client every Flotilla daemon uses, asynchronous on one sd-event loop. It
 * speaks to flotilla-kv and to real etcd (3.4 with --enable-v2) alike.
 *
 * Requests: get (recursive, sorted, quorum), set, create (prevExist=false), update
 * (prevExist=true), compare-and-swap (prevIndex/prevValue), delete, compare-and-delete, TTL and
 * refresh, directories and in-order keys (POST). Each finishes with one callback carrying a
 * KvResult; etcd errors arrive as both the etcd errorCode and a negative errno:
 *   100 -ENOENT   101 -ESTALE   102 -EISDIR   104 -ENOTDIR   105 -EEXIST   107 -EROFS
 *   108 -ENOTEMPTY   2xx -EINVAL   300 -EIO   301 -EAGAIN   401 -ERANGE
 *
 * Failover: the client sticks to one endpoint and moves to the next when it fails. A request is
 * retried on the next endpoint when it certainly did not reach the server (connection refused,
 * unreachable, 503 overload), and for reads also after timeouts, resets and 5xx. When every
 * endpoint failed in a round, it waits (exponential backoff with jitter) and starts another
 * round, until the request's deadline.
 *
 * Watches never miss a change: they resume from the last seen index, advance past indexes a
 * quiet long poll has proven empty, and on error 401 (history cleared) re-list the key and report
 * a fresh snapshot before resuming. They retry forever, reporting errors as they go.
 *
 * Elections: a TTL key created with prevExist=false; the holder refreshes it with prevValue set
 * to its own identity (so it never extends someone else's key) and steps down by itself when
 * it could not refresh before its own copy of the TTL ran out. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "shared/macro.h"
#include "shared/time-util.h"

typedef struct KvClient KvClient;
typedef struct KvOp KvOp;
typedef struct KvWatch KvWatch;
typedef struct KvElection KvElection;

typedef struct KvNode {
        char *key;                /* NULL for the root */
        char *value;              /* NULL for directories */
        bool dir;
        uint64_t created_index;
        uint64_t modified_index;
        int64_t ttl;              /* seconds left; 0 when the node has no TTL */
        char *expiration;         /* RFC 3339; NULL when the node has no TTL */
        struct KvNode **nodes;    /* children of a directory */
        size_t n_nodes;
} KvNode;

typedef struct KvResult {
        int error;                /* 0, a transport -errno, or the etcd error as -errno */
        int error_code;           /* etcd errorCode, 0 if none */
        const char *message;      /* etcd message or a description of the failure */
        const char *cause;        /* etcd cause, may be NULL */
        long http_status;         /* 0 when no response arrived */
        const char *action;       /* "get", "set", "create", ... (NULL on error) */
        const KvNode *node;
        const KvNode *prev_node;
        uint64_t etcd_index;      /* X-Etcd-Index (or the error's index) */
        uint64_t raft_index, raft_term;
} KvResult;

/* The result and everything it points to are valid only during the callback. */
typedef void (*KvCallback)(const KvResult *res, void *userdata);

typedef struct KvClientConfig {
        char *const *endpoints;       /* "http://127.0.0.1:2379", ...; at least one */
        usec_t request_timeout_usec;  /* one HTTP attempt; default 5 s */
        usec_t total_timeout_usec;    /* a request including retries; default 15 s */
        usec_t watch_poll_usec;       /* a long poll before it is re-issued; default 60 s */
        usec_t backoff_min_usec;      /* default 50 ms */
        usec_t backoff_max_usec;      /* default 2 s */
        size_t max_response_size;     /* default 64 MiB */
} KvClientConfig;

#define KV_REQUEST_TIMEOUT_DEFAULT (5 * USEC_PER_SEC)
#define KV_TOTAL_TIMEOUT_DEFAULT   (15 * USEC_PER_SEC)
#define KV_WATCH_POLL_DEFAULT      (60 * USEC_PER_SEC)
#define KV_BACKOFF_MIN_DEFAULT     (50 * USEC_PER_MSEC)
#define KV_BACKOFF_MAX_DEFAULT     (2 * USEC_PER_SEC)
#define KV_MAX_KEY_LENGTH          4096U

int kv_client_new(KvClient **ret, sd_event *e, const KvClientConfig *cfg);
/* Cancels every request, watch and election without callbacks. */
KvClient *kv_client_free(KvClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvClient *, kv_client_free)
/* The endpoint requests currently go to. */
const char *kv_client_endpoint(KvClient *c);

typedef enum KvMethod {
        KV_GET,
        KV_PUT,
        KV_POST,
        KV_DELETE,
} KvMethod;

#define KV_TTL_NONE ((int64_t) -1)

typedef struct KvRequest {
        KvMethod method;
        const char *key;          /* "/a/b"; a missing leading slash is added */
        const char *value;        /* PUT/POST value; NULL sends none */
        bool dir, recursive, sorted, quorum, refresh;
        int64_t ttl;              /* seconds; KV_TTL_NONE = not sent; 0 expires at once */
        bool ttl_clear;           /* send an empty ttl= (clears the TTL on update) */
        int prev_exist;           /* -1 = not sent, 0 = false, 1 = true */
        uint64_t prev_index;      /* 0 = not sent */
        const char *prev_value;   /* NULL = not sent */
} KvRequest;

#define KV_REQUEST_INIT(m, k) ((KvRequest) { .method = (m), .key = (k), .ttl = KV_TTL_NONE, .prev_exist = -1 })

/* Starts a request. ret_op (may be NULL) can cancel it until the callback runs. */
int kv_request(KvClient *c, const KvRequest *req, KvCallback cb, void *userdata, KvOp **ret_op);
/* Cancels without a callback. Allowed from any callback. */
void kv_op_cancel(KvOp *op);

/* Convenience forms of kv_request. ttl is in seconds, KV_TTL_NONE for none. */
enum {
        KV_RECURSIVE = 1 << 0,
        KV_SORTED    = 1 << 1,
        KV_QUORUM    = 1 << 2,
        KV_DIR       = 1 << 3,
};
int kv_get(KvClient *c, const char *key, unsigned flags, KvCallback cb, void *userdata);
int kv_set(KvClient *c, const char *key, const char *value, int64_t ttl, KvCallback cb, void *userdata);
int kv_create(KvClient *c, const char *key, const char *value, int64_t ttl, KvCallback cb, void *userdata);
int kv_update(KvClient *c, const char *key, const char *value, int64_t ttl, KvCallback cb, void *userdata);
int kv_cas(KvClient *c, const char *key, const char *value, uint64_t prev_index, const char *prev_value,
           int64_t ttl, KvCallback cb, void *userdata);
int kv_delete(KvClient *c, const char *key, unsigned flags, KvCallback cb, void *userdata);
int kv_cad(KvClient *c, const char *key, uint64_t prev_index, const char *prev_value, KvCallback cb, void *userdata);
/* Re-arms a TTL without changing the value or waking watchers (prevExist=true). */
int kv_refresh(KvClient *c, const char *key, int64_t ttl, KvCallback cb, void *userdata);
int kv_mkdir(KvClient *c, const char *key, int64_t ttl, KvCallback cb, void *userdata);
/* Creates an in-order key under dir; the result's node has the generated key. */
int kv_post(KvClient *c, const char *dir, const char *value, int64_t ttl, KvCallback cb, void *userdata);

/* --- watches --- */
typedef enum KvWatchUpdateType {
        KV_WATCH_SNAPSHOT, /* the whole current state of the key (node NULL if it does not exist);
                            * forget what you knew: changes may have been missed in between */
        KV_WATCH_CHANGE,   /* one change, in index order */
        KV_WATCH_ERROR,    /* a failure the watch is retrying; informational */
} KvWatchUpdateType;

typedef struct KvWatchUpdate {
        KvWatchUpdateType type;
        int error;                /* KV_WATCH_ERROR only */
        const char *message;      /* KV_WATCH_ERROR only */
        const char *action;       /* KV_WATCH_CHANGE: set, delete, expire, ... */
        const KvNode *node;
        const KvNode *prev_node;
        uint64_t index;           /* the etcd index this update brings the watcher up to */
} KvWatchUpdate;

typedef void (*KvWatchCallback)(KvWatch *w, const KvWatchUpdate *u, void *userdata);

/* Watches key (and everything below it with recursive). after_index == 0 starts with a
 * snapshot; otherwise changes after that index are delivered (a snapshot comes first only if
 * that history is gone). */
int kv_watch_new(KvClient *c, const char *key, bool recursive, uint64_t after_index, KvWatchCallback cb,
                 void *userdata, KvWatch **ret);
KvWatch *kv_watch_free(KvWatch *w);
uint64_t kv_watch_index(KvWatch *w);   /* the last index delivered */
unsigned kv_watch_snapshots(KvWatch *w); /* how many snapshots were delivered (resyncs + 1) */

/* --- elections / leases --- */
typedef void (*KvElectionCallback)(KvElection *e, bool leader, const char *holder, void *userdata);

/* Campaigns for key with value (this participant's identity) and a TTL in seconds (>= 1). The
 * callback runs on every change of leadership or holder; holder is NULL when nobody holds it. */
int kv_election_new(KvClient *c, const char *key, const char *value, int64_t ttl, KvElectionCallback cb,
                    void *userdata, KvElection **ret);
/* Stops campaigning and refreshing; the key expires on its own (as if this process died). */
KvElection *kv_election_free(KvElection *e);
/* Deletes the key if we hold it (compare-and-delete), then stops. */
int kv_election_resign(KvElection *e);
bool kv_election_is_leader(KvElection *e);

/* Parses an etcd v2 response body (exported for the fuzzer and tests). Returns 0 or -EBADMSG.
 * On success the action, node and prevNode (each may be NULL) are owned by the caller. */
int kv_parse_response(const char *body, size_t len, char **ret_action, KvNode **ret_node, KvNode **ret_prev);
KvNode *kv_node_free(KvNode *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvNode *, kv_node_free)
int kv_errno_from_code(int error_code);
