/* SPDX-License-Identifier: MIT */
/* The event history (the last 1000 events, etcd's EventHistory) and the watchers (etcd's
 * watcherHub). Watchers are kept in lists per watched path, found through a hash, so an event
 * costs one lookup per prefix of its key (plus one per removed node for a directory delete),
 * never a scan of all watchers.
 *
 * Matching mirrors etcd exactly, including what looks like accidents but is what clients see: a
 * stream watcher on a deleted key (or a recursive one on a deleted directory) gets the event
 * twice, once for the removal of the path and once for the walk of the key's prefixes; hidden
 * keys are skipped by live recursive watchers but found by history scans; a history scan matches a
 * directory delete by plain string prefix.
 *
 * Matching happens while the tree changes, but callbacks only run afterwards (dispatch), so a
 * callback always sees a consistent store. Watchers freed during a dispatch are unlinked and
 * released once the dispatch is over. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-store-internal.h"

static uint32_t whash(KvStore *s, const char *p, size_t len) {
        return (uint32_t) kv_siphash(p, len, s->hash_k1, s->hash_k0);
}

static KvWatchList *wlist_find(KvStore *s, const char *path, size_t len, uint32_t h) {
        if (s->n_wbuckets == 0)
                return NULL;
        for (KvWatchList *l = s->wbuckets[h & (s->n_wbuckets - 1)]; l; l = l->hnext)
                if (l->hash == h && strncmp(l->path, path, len) == 0 && l->path[len] == 0)
                        return l;
        return NULL;
}

static int wbuckets_grow(KvStore *s) {
        size_t nb = s->n_wbuckets ? s->n_wbuckets * 2 : 64;
        KvWatchList **b = calloc(nb, sizeof(KvWatchList *));

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_wbuckets; i++)
                for (KvWatchList *l = s->wbuckets[i], *next; l; l = next) {
                        next = l->hnext;
                        l->hnext = b[l->hash & (nb - 1)];
                        b[l->hash & (nb - 1)] = l;
                }
        free(s->wbuckets);
        s->wbuckets = b;
        s->n_wbuckets = nb;
        return 0;
}

#define LIST_REMOVE_ALL(head, w)                                 \
        do {                                                     \
                if ((w)->all_prev)                               \
                        (w)->all_prev->all_next = (w)->all_next; \
                else                                             \
                        (head) = (w)->all_next;                  \
                if ((w)->all_next)                               \
                        (w)->all_next->all_prev = (w)->all_prev; \
                (w)->all_prev = (w)->all_next = NULL;            \
        } while (0)

static void wlist_drop(KvStore *s, KvWatchList *l) {
        KvWatchList **p = &s->wbuckets[l->hash & (s->n_wbuckets - 1)];

        while (*p != l)
                p = &(*p)->hnext;
        *p = l->hnext;
        s->n_wlists--;
        free(l);
}

static void watcher_unlink(KvStore *s, KvWatcher *w) {
        KvWatchList *l = w->list;

        if (!l)
                return;
        if (w->prev)
                w->prev->next = w->next;
        else
                l->head = w->next;
        if (w->next)
                w->next->prev = w->prev;
        else
                l->tail = w->prev;
        w->list = NULL;
        w->prev = w->next = NULL;
        if (!l->head)
                wlist_drop(s, l);
}

/* Takes w out of the delivery (it will never fire again); unlinking waits for the dispatch. */
static void watcher_retire(KvStore *s, KvWatcher *w) {
        if (!w->removed) {
                w->removed = true;
                s->n_watchers--;
        }
        if (s->dispatching) {
                if (!w->pending) {
                        w->pending = true;
                        w->pending_next = s->pending;
                        s->pending = w;
                }
        } else
                watcher_unlink(s, w);
}

static void sweep(KvStore *s) {
        while (s->pending) {
                KvWatcher *w = s->pending;
                s->pending = w->pending_next;
                w->pending = false;
                watcher_unlink(s, w);
                if (w->freed)
                        free(w);
        }
}

KvWatcher *kv_watcher_free(KvWatcher *w) {
        if (!w)
                return NULL;
        if (!w->store) {
                free(w);
                return NULL;
        }
        w->freed = true;
        w->cb = NULL;
        LIST_REMOVE_ALL(w->store->all_watchers, w);
        watcher_retire(w->store, w);
        if (!w->pending)
                free(w);
        return NULL;
}

uint64_t kv_watcher_start_index(const KvWatcher *w) {
        return w->start_index;
}

bool kv_watcher_active(const KvWatcher *w) {
        return w && w->store && !w->removed;
}

size_t kv_store_watcher_count(KvStore *s) {
        return s->n_watchers;
}

void kv_watch_detach_all(KvStore *s) {
        for (KvWatcher *w = s->all_watchers, *next; w; w = next) {
                next = w->all_next;
                *w = (KvWatcher) { .removed = true };
        }
        s->all_watchers = NULL;
        for (size_t i = 0; i < s->n_wbuckets; i++)
                for (KvWatchList *l = s->wbuckets[i], *next; l; l = next) {
                        next = l->hnext;
                        free(l);
                }
        free(s->wbuckets);
        s->wbuckets = NULL;
        s->n_wbuckets = s->n_wlists = s->n_watchers = 0;
}

/* etcd's isHidden: is the event's key hidden below the watched path? */
static bool is_hidden(const char *watch_path, size_t wlen, const char *key) {
        size_t klen = strlen(key);
        const char *after;

        if (wlen > klen)
                return false;
        after = key + wlen;
        /* path.Clean("/" + after) contains "/_" exactly when some component of after starts with '_'. */
        for (const char *p = after; *p; p++)
                if (*p == '_' && (p == after || p[-1] == '/'))
                        return true;
        return false;
}

static int queue_push(KvStore *s, KvWatcher *w) {
        if (s->queue_len == s->queue_alloc) {
                size_t a = MAX(s->queue_alloc * 2, (size_t) 16);
                KvWatcher **q = realloc(s->queue, a * sizeof(KvWatcher *));
                if (!q)
                        return -ENOMEM;
                s->queue = q;
                s->queue_alloc = a;
        }
        s->queue[s->queue_len++] = w;
        return 0;
}

static void match_list(KvStore *s, const KvEvent *e, const char *path, size_t len, bool deleted) {
        KvWatchList *l = wlist_find(s, path, len, whash(s, path, len));
        bool original;

        if (!l)
                return;
        original = strlen(e->node.key) == len && strncmp(e->node.key, path, len) == 0;
        if (!original && is_hidden(path, len, e->node.key))
                return;
        for (KvWatcher *w = l->head; w; w = w->next) {
                if (w->removed || !(w->recursive || original || deleted) || kv_event_index(e) < w->since_index)
                        continue;
                /* A delivery that cannot be queued ends the watcher, as etcd ends one whose channel
                 * is full, rather than leaving a silent gap in its stream. */
                if (queue_push(s, w) < 0 || !w->stream) {
                        w->removed = true;
                        s->n_watchers--;
                        s->dispatching++;
                        watcher_retire(s, w);
                        s->dispatching--;
                }
        }
}

void kv_watch_match(KvStore *s, const KvEvent *e, const char *path, bool deleted) {
        match_list(s, e, path, strlen(path), deleted);
}

void kv_watch_notify(KvStore *s, KvEvent *e) {
        const char *k = e->node.key;

        (void) kv_history_add(s, e);
        if (s->n_wlists == 0)
                return;
        match_list(s, e, "/", 1, false);
        for (size_t i = 1; k[i - 1]; i++)
                if (i > 1 && (k[i] == '/' || k[i] == 0))
                        match_list(s, e, k, i, false);
}

void kv_watch_dispatch(KvStore *s, const KvEvent *e) {
        s->dispatching++;
        for (size_t i = 0; i < s->queue_len; i++) {
                KvWatcher *w = s->queue[i];
                if (!w->freed && w->cb)
                        w->cb(w, e, w->userdata);
        }
        s->queue_len = 0;
        s->dispatching--;
        if (s->dispatching == 0)
                sweep(s);
}

int kv_history_add(KvStore *s, KvEvent *e) {
        size_t slot = (s->history_front + s->history_len) % KV_HISTORY_SIZE;

        if (s->history_len == KV_HISTORY_SIZE) {
                kv_event_unref(s->history[slot]);
                s->history_front = (s->history_front + 1) % KV_HISTORY_SIZE;
        } else
                s->history_len++;
        s->history[slot] = kv_event_ref(e);
        s->history_last = kv_event_index(e);
        s->history_start = kv_event_index(s->history[s->history_front]);
        return 0;
}

void kv_history_clear(KvStore *s, uint64_t next_index) {
        for (size_t i = 0; i < s->history_len; i++)
                kv_event_unref(s->history[(s->history_front + i) % KV_HISTORY_SIZE]);
        s->history_front = s->history_len = 0;
        s->history_start = next_index;
        s->history_last = next_index ? next_index - 1 : 0;
}

/* etcd's EventHistory.scan: the first non-refresh event at or after index that matches. */
static const KvEvent *history_scan(KvStore *s, const char *key, bool recursive, uint64_t index) {
        size_t klen = strlen(key);

        if (index > s->history_last || s->history_len == 0)
                return NULL;
        for (uint64_t off = index - s->history_start; off < s->history_len; off++) {
                const KvEvent *e = s->history[(s->history_front + off) % KV_HISTORY_SIZE];
                const char *ek = e->node.key;
                bool ok;

                if (e->refresh)
                        continue;
                ok = streq(ek, key);
                if (recursive && !ok) {
                        /* key with a trailing slash ("/" stays "/") as a string prefix */
                        ok = strncmp(ek, key, klen) == 0 && (key[klen - 1] == '/' ? true : ek[klen] == '/');
                }
                if (!ok && (e->action == KV_ACTION_DELETE || e->action == KV_ACTION_EXPIRE) && e->prev_node &&
                    e->prev_node->dir)
                        ok = strncmp(key, e->prev_node->key, strlen(e->prev_node->key)) == 0;
                if (ok)
                        return e;
        }
        return NULL;
}

static int watcher_register(KvStore *s, const char *path, KvWatcher *w) {
        size_t len = strlen(path);
        uint32_t h = whash(s, path, len);
        KvWatchList *l = wlist_find(s, path, len, h);

        if (!l) {
                if (s->n_wlists >= s->n_wbuckets && wbuckets_grow(s) < 0 && s->n_wbuckets == 0)
                        return -ENOMEM;
                l = malloc(sizeof(KvWatchList) + len + 1);
                if (!l)
                        return -ENOMEM;
                *l = (KvWatchList) { .hash = h, .hnext = s->wbuckets[h & (s->n_wbuckets - 1)] };
                memcpy(l->path, path, len + 1);
                s->wbuckets[h & (s->n_wbuckets - 1)] = l;
                s->n_wlists++;
        }
        w->list = l;
        w->prev = l->tail;
        if (l->tail)
                l->tail->next = w;
        else
                l->head = w;
        l->tail = w;
        s->n_watchers++;
        return 0;
}

int kv_store_watch(KvStore *s, const char *path, bool recursive, bool stream, uint64_t since_index,
                   KvWatchFn cb, void *userdata, KvWatcher **ret_watcher, KvStoreResult *ret_now) {
        _cleanup_free_ char *key = NULL, *cause = NULL;
        const KvEvent *e;
        KvWatcher *w;
        int r;

        if (!s || !path || !cb || !ret_watcher || !ret_now)
                return -EINVAL;
        key = kv_path_clean(path);
        if (!key)
                return -ENOMEM;
        if (since_index == 0)
                since_index = s->index + 1;
        if (since_index < s->history_start) {
                if (asprintf(&cause, "the requested history has been cleared [%" PRIu64 "/%" PRIu64 "]",
                             s->history_start, since_index) < 0)
                        return -ENOMEM;
                kv_result_set_error(ret_now, KV_ECODE_EVENT_INDEX_CLEARED, TAKE_PTR(cause), s->index);
                return 1;
        }
        e = history_scan(s, key, recursive, since_index);
        if (e) {
                *ret_now = (KvStoreResult) { .event = kv_event_ref((KvEvent *) e), .index = s->index };
                return 1;
        }
        w = new0(KvWatcher, 1);
        if (!w)
                return -ENOMEM;
        *w = (KvWatcher) {
                .store = s,
                .cb = cb,
                .userdata = userdata,
                .since_index = since_index,
                .start_index = s->index,
                .recursive = recursive,
                .stream = stream,
        };
        r = watcher_register(s, key, w);
        if (r < 0) {
                free(w);
                return r;
        }
        w->all_next = s->all_watchers;
        if (s->all_watchers)
                s->all_watchers->all_prev = w;
        s->all_watchers = w;
        *ret_watcher = w;
        return 0;
}
