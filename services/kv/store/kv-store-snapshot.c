/* SPDX-License-Identifier: MIT */
/* Snapshots of the tree and the index:
 *
 *   "FKVS" | u8 version (1) | u64 index | u64 node count |
 *   node records, parents before children: u8 flags (1 dir, 2 has TTL) | varint createdIndex |
 *     varint modifiedIndex | [u64 expiration if TTL] | string path | [string value if file] |
 *   u32 CRC-32 (IEEE) of everything before it
 *
 * (integers little-endian, strings as varint length + bytes). Children are written newest last so
 * that loading, which prepends, restores the sibling order: save(load(x)) == x byte for byte.
 * Loading checks the checksum first and then every record (clean absolute paths, existing parent
 * directories, no duplicates, indices within the index, sizes within the limits) into a fresh
 * tree, which replaces the old one only when everything was valid. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv-store-internal.h"
#include "kv-varint.h"

#define SNAP_MAGIC "FKVS"
#define SNAP_VERSION 1
enum { SNAP_DIR = 1, SNAP_TTL = 2 };

static uint32_t crc32_ieee(const void *data, size_t len) {
        static uint32_t table[256];
        const uint8_t *p = data;
        uint32_t c = 0xFFFFFFFFU;

        if (table[1] == 0)
                for (uint32_t i = 0; i < 256; i++) {
                        uint32_t v = i;
                        for (int k = 0; k < 8; k++)
                                v = v & 1 ? 0xEDB88320U ^ (v >> 1) : v >> 1;
                        table[i] = v;
                }
        for (size_t i = 0; i < len; i++)
                c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFU;
}

static int save_node(const KvStoreNode *n, Buf *b) {
        uint8_t flags = (uint8_t) ((n->dir ? SNAP_DIR : 0) | (n->expire_ns ? SNAP_TTL : 0));
        int r;

        if ((r = buf_append(b, &flags, 1)) < 0 || (r = kv_put_varint(b, n->created_index)) < 0 ||
            (r = kv_put_varint(b, n->modified_index)) < 0 ||
            (n->expire_ns && (r = kv_put_u64(b, (uint64_t) n->expire_ns)) < 0) ||
            (r = kv_put_varint(b, n->path_len)) < 0 || (r = buf_append(b, n->path, n->path_len)) < 0)
                return r;
        if (!n->dir) {
                size_t vl = strlen(n->value);
                if ((r = kv_put_varint(b, vl)) < 0 || (r = buf_append(b, n->value, vl)) < 0)
                        return r;
        }
        return 0;
}

/* Iterative pre-order walk, children oldest first (the tail of the sibling list first). */
static int save_tree(const KvStoreNode *root, Buf *b) {
        const KvStoreNode *n = root;

        for (;;) {
                const KvStoreNode *c;
                int r;

                if (n != root && (r = save_node(n, b)) < 0)
                        return r;
                if (n->dir && n->children) {
                        for (c = n->children; c->next; c = c->next)
                                ;
                        n = c;
                        continue;
                }
                while (n != root && !n->prev)
                        n = n->parent;
                if (n == root)
                        return 0;
                n = n->prev;
        }
}

int kv_store_save(KvStore *s, Buf *out) {
        size_t start = out->len;
        uint8_t crc[4];
        uint32_t c;
        int r;

        if (!s || !out)
                return -EINVAL;
        if ((r = buf_append(out, SNAP_MAGIC, 4)) < 0 || (r = buf_append(out, &(uint8_t) { SNAP_VERSION }, 1)) < 0 ||
            (r = kv_put_u64(out, s->index)) < 0 || (r = kv_put_u64(out, s->n_nodes - 1)) < 0 ||
            (r = save_tree(s->root, out)) < 0)
                goto fail;
        c = crc32_ieee(out->data + start, out->len - start);
        put_le32(crc, c);
        if ((r = buf_append(out, crc, 4)) < 0)
                goto fail;
        return 0;
fail:
        out->len = start;
        if (out->data)
                out->data[start] = 0;
        return r;
}

static int load_node(KvStore *t, KvReader *rd, uint64_t index) {
        uint64_t created, modified, exp = 0;
        const char *path, *value = NULL;
        size_t plen, vlen = 0;
        KvStoreNode *n, *parent;
        const char *slash;
        uint8_t flags;
        int r;

        if (kv_get_u8(rd, &flags) < 0 || (flags & ~(SNAP_DIR | SNAP_TTL)) || kv_get_varint(rd, &created) < 0 ||
            kv_get_varint(rd, &modified) < 0 || ((flags & SNAP_TTL) && kv_get_u64(rd, &exp) < 0) ||
            kv_get_bytes(rd, KV_MAX_KEY_SIZE, &path, &plen) < 0 ||
            (!(flags & SNAP_DIR) && kv_get_bytes(rd, KV_MAX_VALUE_SIZE, &value, &vlen) < 0))
                return -EBADMSG;
        if (created == 0 || created > modified || modified > index || ((flags & SNAP_TTL) && exp == 0))
                return -EBADMSG;
        if (plen < 2 || kv_store_lookup(t, path, plen))
                return -EBADMSG;
        {
                _cleanup_free_ char *z = strndup(path, plen);
                if (!z)
                        return -ENOMEM;
                if (!kv_path_is_clean(z))
                        return -EBADMSG;
        }
        slash = memrchr(path, '/', plen);
        parent = slash == path ? t->root : kv_store_lookup(t, path, (size_t) (slash - path));
        if (!parent || !parent->dir)
                return -EBADMSG;
        r = kv_store_node_new(path, plen, flags & SNAP_DIR, created, (int64_t) exp, &n);
        if (r < 0)
                return r;
        n->modified_index = modified;
        if (!(flags & SNAP_DIR) && !(n->value = strndup(value, vlen))) {
                free(n);
                return -ENOMEM;
        }
        if (exp && kv_heap_reserve(t) < 0) {
                if (!n->dir)
                        free(n->value);
                free(n);
                return -ENOMEM;
        }
        (void) kv_store_node_insert(t, parent, n);
        if (exp)
                kv_heap_push(t, n);
        return 0;
}

static int load_tree(KvStore *t, const uint8_t *p, size_t len) {
        KvReader rd = { .p = p, .end = p + len };
        uint64_t index, count;
        uint8_t version;
        int r;

        if (len < 4 + 1 + 16 || memcmp(p, SNAP_MAGIC, 4) != 0)
                return -EBADMSG;
        rd.p += 4;
        if (kv_get_u8(&rd, &version) < 0 || version != SNAP_VERSION || kv_get_u64(&rd, &index) < 0 ||
            kv_get_u64(&rd, &count) < 0 || count > len)
                return -EBADMSG;
        for (uint64_t i = 0; i < count; i++)
                if ((r = load_node(t, &rd, index)) < 0)
                        return r;
        if (rd.p != rd.end)
                return -EBADMSG;
        t->index = index;
        return 0;
}

int kv_store_load(KvStore *s, const void *data, size_t len) {
        _cleanup_(kv_store_freep) KvStore *t = NULL;
        const uint8_t *p = data;
        uint32_t want;
        int r;

        if (!s || (!data && len > 0))
                return -EINVAL;
        if (s->dispatching)
                return -EBUSY;
        if (len < 4)
                return -EBADMSG;
        want = get_le32(p + len - 4);
        if (crc32_ieee(p, len - 4) != want)
                return -EBADMSG;
        /* The new tree uses s's hash key, so nothing needs rehashing after the swap. */
        t = new0(KvStore, 1);
        if (!t)
                return -ENOMEM;
        t->hash_k0 = s->hash_k0;
        t->hash_k1 = s->hash_k1;
        r = kv_store_init_tree(t);
        if (r < 0)
                return r;
        r = load_tree(t, p, len - 4);
        if (r < 0)
                return r;
        /* Swap the trees; watchers and statistics stay with s. */
        kv_store_clear(s);
        s->root = TAKE_PTR(t->root);
        s->buckets = TAKE_PTR(t->buckets);
        s->n_buckets = t->n_buckets;
        s->n_nodes = t->n_nodes;
        s->heap = TAKE_PTR(t->heap);
        s->heap_len = t->heap_len;
        s->heap_alloc = t->heap_alloc;
        t->n_buckets = t->n_nodes = t->heap_len = t->heap_alloc = 0;
        s->index = t->index;
        kv_history_clear(s, s->index + 1);
        return 0;
}
