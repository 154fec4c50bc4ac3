/* SPDX-License-Identifier: MIT */
/* Events (etcd's Event and NodeExtern), results, and the JSON etcd 3.4 writes for them. The JSON
 * is produced by hand into a Buf, byte for byte as Go's encoding/json would: field order of the
 * Go structs, omitempty rules, HTML-safe escaping of & < >, \u2028/\u2029 escaped, and each
 * invalid UTF-8 byte written as \ufffd. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv-store-internal.h"

static const char *const action_table[_KV_ACTION_MAX] = {
        [KV_ACTION_GET] = "get",
        [KV_ACTION_SET] = "set",
        [KV_ACTION_CREATE] = "create",
        [KV_ACTION_UPDATE] = "update",
        [KV_ACTION_DELETE] = "delete",
        [KV_ACTION_COMPARE_AND_SWAP] = "compareAndSwap",
        [KV_ACTION_COMPARE_AND_DELETE] = "compareAndDelete",
        [KV_ACTION_EXPIRE] = "expire",
};

const char *kv_action_to_string(KvAction a) {
        return a >= 0 && a < _KV_ACTION_MAX ? action_table[a] : NULL;
}

KvEvent *kv_event_ref(KvEvent *e) {
        if (e)
                e->n_ref++;
        return e;
}

KvEvent *kv_event_unref(KvEvent *e) {
        if (e && --e->n_ref == 0)
                free(e);
        return NULL;
}

int kv_event_http_status(const KvEvent *e) {
        if (e->action == KV_ACTION_CREATE || (e->action == KV_ACTION_SET && !e->prev_node))
                return 201;
        return 200;
}

static char *copy_str(char **cur, const char *s, size_t len) {
        char *d = *cur;
        memcpy(d, s, len);
        d[len] = 0;
        *cur += len + 1;
        return d;
}

/* A node as etcd's node.Repr(false, false) shows it. */
static void repr_flat(const KvStoreNode *n, KvEventNode *out, char **cur) {
        *out = (KvEventNode) {
                .key = copy_str(cur, n->path, n->path_len),
                .value = n->dir ? NULL : copy_str(cur, n->value, strlen(n->value)),
                .dir = n->dir,
                .root = !n->parent,
                .expiration_ns = n->expire_ns,
                .modified_index = n->modified_index,
                .created_index = n->created_index,
        };
}

/* One allocation holds the event, its prevNode and every string. */
KvEvent *kv_event_new_single(KvAction action, const char *key, size_t key_len, const char *value,
                             bool dir, int64_t expire_ns, uint64_t modified, uint64_t created,
                             const KvStoreNode *prev) {
        size_t vlen = value ? strlen(value) : 0, size = sizeof(KvEvent) + key_len + 1 + (value ? vlen + 1 : 0);
        KvEventNode *pn = NULL;
        KvEvent *e;
        char *cur;

        if (prev)
                size += sizeof(KvEventNode) + prev->path_len + 1 + (prev->dir ? 0 : strlen(prev->value) + 1);
        e = malloc(size);
        if (!e)
                return NULL;
        cur = (char *) (e + 1);
        if (prev) {
                pn = (KvEventNode *) cur;
                cur += sizeof(KvEventNode);
                repr_flat(prev, pn, &cur);
        }
        *e = (KvEvent) {
                .n_ref = 1,
                .action = action,
                .prev_node = pn,
                .node = {
                        .dir = dir,
                        .expiration_ns = expire_ns,
                        .modified_index = modified,
                        .created_index = created,
                },
        };
        e->node.key = copy_str(&cur, key, key_len);
        e->node.value = value ? copy_str(&cur, value, vlen) : NULL;
        return e;
}

static bool hidden(const KvStoreNode *n) {
        return n->path[n->name_off] == '_';
}

static void get_size(const KvStoreNode *n, bool expand, bool recursive, size_t *nodes, size_t *bytes) {
        *bytes += n->path_len + 1 + (n->dir ? 0 : strlen(n->value) + 1);
        if (!n->dir || !expand)
                return;
        for (const KvStoreNode *c = n->children; c; c = c->next)
                if (!hidden(c)) {
                        (*nodes)++;
                        get_size(c, recursive, recursive, nodes, bytes);
                }
}

static int cmp_key(const void *a, const void *b) {
        return strcmp(((const KvEventNode *) a)->key, ((const KvEventNode *) b)->key);
}

/* etcd's loadInternalNode (expand) and node.Repr(recursive, sorted). Hidden children are never
 * listed; listings follow the sibling order unless sorted. */
static void get_fill(const KvStoreNode *n, KvEventNode *out, bool expand, bool recursive, bool sorted,
                     KvEventNode **ncur, char **scur) {
        KvEventNode *arr;
        size_t k = 0;

        repr_flat(n, out, scur);
        if (!n->dir || !expand)
                return;
        for (const KvStoreNode *c = n->children; c; c = c->next)
                k += !hidden(c);
        arr = *ncur;
        *ncur += k;
        k = 0;
        for (const KvStoreNode *c = n->children; c; c = c->next)
                if (!hidden(c))
                        get_fill(c, &arr[k++], recursive, recursive, sorted, ncur, scur);
        if (sorted && k > 1)
                qsort(arr, k, sizeof(KvEventNode), cmp_key);
        out->nodes = arr;
        out->n_nodes = k;
}

KvEvent *kv_event_new_get(const KvStoreNode *n, bool recursive, bool sorted) {
        size_t nodes = 0, bytes = 0;
        KvEventNode *ncur;
        KvEvent *e;
        char *scur;

        get_size(n, true, recursive, &nodes, &bytes);
        if (nodes > (SIZE_MAX - sizeof(KvEvent) - bytes) / sizeof(KvEventNode))
                return NULL;
        e = malloc(sizeof(KvEvent) + nodes * sizeof(KvEventNode) + bytes);
        if (!e)
                return NULL;
        *e = (KvEvent) { .n_ref = 1, .action = KV_ACTION_GET };
        ncur = (KvEventNode *) (e + 1);
        scur = (char *) (ncur + nodes);
        get_fill(n, &e->node, true, recursive, sorted, &ncur, &scur);
        return e;
}

void kv_result_set_error(KvStoreResult *r, int code, char *cause, uint64_t index) {
        *r = (KvStoreResult) { .error_code = code, .error_cause = cause, .index = index };
}

int kv_result_error(KvStoreResult *r, int code, const char *cause, uint64_t index) {
        char *c = NULL;

        if (!isempty(cause) && !(c = strdup(cause)))
                return -ENOMEM;
        kv_result_set_error(r, code, c, index);
        return 0;
}

void kv_store_result_done(KvStoreResult *r) {
        if (!r)
                return;
        kv_event_unref(r->event);
        free(r->error_cause);
        *r = KV_STORE_RESULT_NULL;
}

/* Bytes that go into a JSON string as they are (Go's htmlSafeSet); the rest take the slow path. */
static const bool json_plain[256] = {
        /* 0x20 to 0x7f except " & < > and backslash */
        [0x20 ... 0x21] = true, [0x23 ... 0x25] = true, [0x27 ... 0x3b] = true, [0x3d] = true,
        [0x3f ... 0x5b] = true, [0x5d ... 0x7f] = true,
};

/* Go's encodeState.string with escapeHTML = true. */
static int json_string(Buf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) s;
        size_t n = strlen(s), start = 0;
        int r;

        r = buf_reserve(b, n + 2);
        if (r < 0)
                return r;
        b->data[b->len++] = '"';
        for (size_t i = 0; i < n;) {
                unsigned char c = p[i];
                char esc[8];
                size_t el = 0, adv = 1;
                uint32_t cp = 0;

                if (json_plain[c]) {
                        i++;
                        continue;
                }
                if (c < 0x80) {
                        esc[0] = '\\';
                        if (c == '"' || c == '\\')
                                esc[1] = (char) c, el = 2;
                        else if (c == '\n' || c == '\r' || c == '\t')
                                esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', el = 2;
                        else
                                memcpy(esc + 1, "u00", 3), esc[4] = hex[c >> 4], esc[5] = hex[c & 15], el = 6;
                } else {
                        adv = utf8_decode(p + i, n - i, &cp);
                        if (adv == 0)
                                memcpy(esc, "\\ufffd", 6), el = 6, adv = 1;
                        else if (cp == 0x2028 || cp == 0x2029)
                                memcpy(esc, cp == 0x2028 ? "\\u2028" : "\\u2029", 6), el = 6;
                        else {
                                i += adv;
                                continue;
                        }
                }
                if ((r = buf_append(b, s + start, i - start)) < 0 || (r = buf_append(b, esc, el)) < 0)
                        return r;
                i += adv;
                start = i;
        }
        if ((r = buf_append(b, s + start, n - start)) < 0)
                return r;
        return buf_append(b, "\"", 1);
}

/* time.Time.MarshalJSON of the UTC time: RFC 3339 with up to 9 fraction digits, zeros trimmed. */
static int format_time(int64_t ns, char buf[static 48]) {
        int64_t sec = ns / 1000000000, frac = ns % 1000000000;
        time_t t;
        struct tm tm;
        int k;

        if (frac < 0)
                frac += 1000000000, sec--;
        t = (time_t) sec;
        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        k = snprintf(buf, 48, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (frac) {
                char f[16];
                int fl = snprintf(f, sizeof(f), ".%09" PRId64, frac);
                while (f[fl - 1] == '0')
                        fl--;
                memcpy(buf + k, f, (size_t) fl);
                k += fl;
        }
        memcpy(buf + k, "Z", 2);
        return 0;
}

/* ceil((expiration - now) / 1s) with Go's saturating time.Sub. */
static int64_t ttl_of(int64_t expire_ns, int64_t now_ns) {
        int64_t d, ttl;

        if (__builtin_sub_overflow(expire_ns, now_ns, &d))
                d = expire_ns > now_ns ? INT64_MAX : INT64_MIN;
        ttl = d / 1000000000;
        if (d % 1000000000 > 0)
                ttl++;
        return ttl;
}

static int render_node(const KvEventNode *n, int64_t now_ns, Buf *b) {
        bool first = true;
        int r = 0;

#define SEP() (first ? (first = false, 0) : buf_append(b, ",", 1))
        if ((r = buf_append(b, "{", 1)) < 0)
                return r;
        if (!n->root && !isempty(n->key))
                if ((r = SEP()) < 0 || (r = buf_append_str(b, "\"key\":")) < 0 || (r = json_string(b, n->key)) < 0)
                        return r;
        if (n->value)
                if ((r = SEP()) < 0 || (r = buf_append_str(b, "\"value\":")) < 0 || (r = json_string(b, n->value)) < 0)
                        return r;
        if (n->dir && ((r = SEP()) < 0 || (r = buf_append_str(b, "\"dir\":true")) < 0))
                return r;
        if (n->expiration_ns != 0) {
                /* now_ns is the event's own time when it has one (see render_ex). */
                char t[48];
                int64_t ttl = ttl_of(n->expiration_ns, now_ns);

                if ((r = format_time(n->expiration_ns, t)) < 0 || (r = SEP()) < 0 ||
                    (r = buf_printf(b, "\"expiration\":\"%s\"", t)) < 0)
                        return r;
                if (ttl != 0 && (r = buf_printf(b, ",\"ttl\":%" PRId64, ttl)) < 0)
                        return r;
        }
        if (n->n_nodes > 0) {
                if ((r = SEP()) < 0 || (r = buf_append_str(b, "\"nodes\":[")) < 0)
                        return r;
                for (size_t i = 0; i < n->n_nodes; i++)
                        if ((i > 0 && (r = buf_append(b, ",", 1)) < 0) || (r = render_node(&n->nodes[i], now_ns, b)) < 0)
                                return r;
                if ((r = buf_append(b, "]", 1)) < 0)
                        return r;
        }
        if (n->modified_index && ((r = SEP()) < 0 || (r = buf_append_str(b, "\"modifiedIndex\":")) < 0 ||
                                  (r = buf_append_u64(b, n->modified_index)) < 0))
                return r;
        if (n->created_index && ((r = SEP()) < 0 || (r = buf_append_str(b, "\"createdIndex\":")) < 0 ||
                                 (r = buf_append_u64(b, n->created_index)) < 0))
                return r;
#undef SEP
        return buf_append(b, "}", 1);
}

int kv_event_render_ex(const KvEvent *e, int64_t now_ns, bool no_value_on_success, Buf *out) {
        size_t saved = out->len;
        bool hide = no_value_on_success && (e->action == KV_ACTION_SET || e->action == KV_ACTION_CREATE ||
                                            e->action == KV_ACTION_UPDATE || e->action == KV_ACTION_COMPARE_AND_SWAP);
        int r;

        if (e->time_ns)
                now_ns = e->time_ns;
        r = buf_printf(out, "{\"action\":\"%s\"", kv_action_to_string(e->action));
        if (r >= 0 && !hide) {
                if ((r = buf_append_str(out, ",\"node\":")) >= 0)
                        r = render_node(&e->node, now_ns, out);
                if (r >= 0 && e->prev_node && (r = buf_append_str(out, ",\"prevNode\":")) >= 0)
                        r = render_node(e->prev_node, now_ns, out);
        }
        if (r >= 0)
                r = buf_append(out, "}\n", 2);
        if (r < 0) {
                out->len = saved;
                if (out->data)
                        out->data[saved] = 0;
        }
        return r;
}

int kv_event_render(const KvEvent *e, int64_t now_ns, Buf *out) {
        return kv_event_render_ex(e, now_ns, false, out);
}

const char *kv_error_message(int code) {
        switch (code) {
        case 100: return "Key not found";
        case 101: return "Compare failed";
        case 102: return "Not a file";
        case 103: return "Reached the max number of peers in the cluster";
        case 104: return "Not a directory";
        case 105: return "Key already exists";
        case 106: return "The prefix of given key is a keyword in etcd";
        case 107: return "Root is read only";
        case 108: return "Directory not empty";
        case 109: return "Peer address has existed";
        case 110: return "The request requires user authentication";
        case 200: return "Value is Required in POST form";
        case 201: return "PrevValue is Required in POST form";
        case 202: return "The given TTL in POST form is not a number";
        case 203: return "The given index in POST form is not a number";
        case 204: return "Value or TTL is required in POST form";
        case 205: return "The given timeout in POST form is not a number";
        case 206: return "Name is required in POST form";
        case 207: return "Index or value is required";
        case 208: return "Index and value cannot both be specified";
        case 209: return "Invalid field";
        case 210: return "Invalid POST form";
        case 211: return "Value provided on refresh";
        case 212: return "A TTL must be provided on refresh";
        case 300: return "Raft Internal Error";
        case 301: return "During Leader Election";
        case 400: return "watcher is cleared due to etcd recovery";
        case 401: return "The event in requested index is outdated and cleared";
        case 402: return "Standby Internal Error";
        case 403: return "Invalid active size";
        case 404: return "Standby remove delay";
        case 500: return "Client Internal Error";
        default: return "";
        }
}

int kv_error_http_status(int code) {
        switch (code) {
        case KV_ECODE_KEY_NOT_FOUND:
                return 404;
        case KV_ECODE_NOT_FILE:
        case KV_ECODE_DIR_NOT_EMPTY:
                return 403;
        case KV_ECODE_UNAUTHORIZED:
                return 401;
        case KV_ECODE_TEST_FAILED:
        case KV_ECODE_NODE_EXIST:
                return 412;
        case KV_ECODE_RAFT_INTERNAL:
        case KV_ECODE_LEADER_ELECT:
                return 500;
        default:
                return 400;
        }
}

int kv_store_render_error(int code, const char *cause, uint64_t index, Buf *out) {
        size_t saved = out->len;
        int r;

        r = buf_printf(out, "{\"errorCode\":%d,\"message\":", code);
        if (r >= 0)
                r = json_string(out, kv_error_message(code));
        if (r >= 0 && !isempty(cause) && (r = buf_append_str(out, ",\"cause\":")) >= 0)
                r = json_string(out, cause);
        if (r >= 0)
                r = buf_printf(out, ",\"index\":%" PRIu64 "}\n", index);
        if (r < 0) {
                out->len = saved;
                if (out->data)
                        out->data[saved] = 0;
        }
        return r;
}

int kv_store_result_render(const KvStoreResult *r, int64_t now_ns, Buf *out, int *ret_http_status) {
        int k;

        if (r->error_code) {
                k = kv_store_render_error(r->error_code, r->error_cause, r->index, out);
                if (k >= 0 && ret_http_status)
                        *ret_http_status = kv_error_http_status(r->error_code);
                return k;
        }
        if (!r->event)
                return -EINVAL;
        k = kv_event_render(r->event, now_ns, out);
        if (k >= 0 && ret_http_status)
                *ret_http_status = kv_event_http_status(r->event);
        return k;
}

int kv_store_render_stats(KvStore *s, Buf *out) {
        const KvStoreStats *t = &s->stats;

        return buf_printf(out,
                          "{\"getsSuccess\":%" PRIu64 ",\"getsFail\":%" PRIu64 ",\"setsSuccess\":%" PRIu64
                          ",\"setsFail\":%" PRIu64 ",\"deleteSuccess\":%" PRIu64 ",\"deleteFail\":%" PRIu64
                          ",\"updateSuccess\":%" PRIu64 ",\"updateFail\":%" PRIu64 ",\"createSuccess\":%" PRIu64
                          ",\"createFail\":%" PRIu64 ",\"compareAndSwapSuccess\":%" PRIu64
                          ",\"compareAndSwapFail\":%" PRIu64 ",\"compareAndDeleteSuccess\":%" PRIu64
                          ",\"compareAndDeleteFail\":%" PRIu64 ",\"expireCount\":%" PRIu64 ",\"watchers\":%zu}",
                          t->get_success, t->get_fail, t->set_success, t->set_fail, t->delete_success,
                          t->delete_fail, t->update_success, t->update_fail, t->create_success, t->create_fail,
                          t->cas_success, t->cas_fail, t->cad_success, t->cad_fail, t->expire_count,
                          s->n_watchers);
}
