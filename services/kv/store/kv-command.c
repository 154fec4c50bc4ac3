/* SPDX-License-Identifier: MIT */
/* Binary encoding of KvCommand, for Raft log entries and the network:
 *
 *   u8 version (1) | u8 method | u8 flags | u8 prevExist | varint prevIndex |
 *   varint zigzag(expiration_ns) | varint zigzag(time_ns) |
 *   string path | [string value if flag] | [string prevValue if flag]
 *
 * where a string is varint length, the bytes, then a NUL byte, so that a decoded command can
 * point into the buffer. Nothing may follow the last field. */
#include <errno.h>
#include <string.h>

#include "kv-command.h"
#include "kv-varint.h"

enum {
        F_DIR = 1 << 0,
        F_RECURSIVE = 1 << 1,
        F_SORTED = 1 << 2,
        F_REFRESH = 1 << 3,
        F_VALUE = 1 << 4,
        F_PREV_VALUE = 1 << 5,
        F_ALL = (1 << 6) - 1,
};

const char *kv_command_method_to_string(KvCommandMethod m) {
        static const char *const t[_KV_METHOD_MAX] = {
                [KV_METHOD_PUT] = "PUT",     [KV_METHOD_POST] = "POST", [KV_METHOD_DELETE] = "DELETE",
                [KV_METHOD_QGET] = "QGET",   [KV_METHOD_SYNC] = "SYNC",
        };
        return m >= 0 && m < _KV_METHOD_MAX ? t[m] : NULL;
}

static int put_string(Buf *b, const char *s, size_t max) {
        size_t n = strlen(s);
        int r;

        if (n > max)
                return -EINVAL;
        if ((r = kv_put_varint(b, n)) < 0 || (r = buf_append(b, s, n + 1)) < 0)
                return r;
        return 0;
}

int kv_command_encode(const KvCommand *c, Buf *out) {
        uint8_t head[4];
        size_t saved = out->len;
        int r;

        if (!c || !out || c->method < 0 || c->method >= _KV_METHOD_MAX || c->prev_exist < 0 ||
            c->prev_exist >= _KV_PREV_EXIST_MAX || (c->method != KV_METHOD_SYNC && !c->path) ||
            (c->has_value && !c->value) || (c->has_prev_value && !c->prev_value))
                return -EINVAL;
        head[0] = KV_COMMAND_VERSION;
        head[1] = (uint8_t) c->method;
        head[2] = (uint8_t) ((c->dir ? F_DIR : 0) | (c->recursive ? F_RECURSIVE : 0) | (c->sorted ? F_SORTED : 0) |
                             (c->refresh ? F_REFRESH : 0) | (c->has_value ? F_VALUE : 0) |
                             (c->has_prev_value ? F_PREV_VALUE : 0));
        head[3] = (uint8_t) c->prev_exist;
        if ((r = buf_append(out, head, 4)) < 0 || (r = kv_put_varint(out, c->prev_index)) < 0 ||
            (r = kv_put_varint(out, kv_zigzag(c->expiration_ns))) < 0 || (r = kv_put_varint(out, kv_zigzag(c->time_ns))) < 0 ||
            (r = put_string(out, c->path ?: "", KV_MAX_KEY_SIZE)) < 0 ||
            (c->has_value && (r = put_string(out, c->value, KV_MAX_VALUE_SIZE)) < 0) ||
            (c->has_prev_value && (r = put_string(out, c->prev_value, KV_MAX_VALUE_SIZE)) < 0)) {
                out->len = saved;
                if (out->data)
                        out->data[saved] = 0;
                return r;
        }
        return 0;
}

static int get_string(KvReader *rd, size_t max, const char **ret) {
        const char *s;
        size_t n;
        int r;

        r = kv_get_bytes(rd, max, &s, &n);
        if (r < 0)
                return r;
        if (rd->p >= rd->end || *rd->p != 0)
                return -EBADMSG;
        rd->p++;
        *ret = s;
        return 0;
}

int kv_command_decode(const void *data, size_t len, KvCommand *ret) {
        KvReader rd = { .p = data, .end = (const uint8_t *) data + len };
        uint8_t version, method, flags, pe;
        uint64_t exp, t;
        KvCommand c = {};

        if (!data || !ret)
                return -EINVAL;
        if (kv_get_u8(&rd, &version) < 0 || version != KV_COMMAND_VERSION || kv_get_u8(&rd, &method) < 0 ||
            method >= _KV_METHOD_MAX || kv_get_u8(&rd, &flags) < 0 || (flags & ~F_ALL) || kv_get_u8(&rd, &pe) < 0 ||
            pe >= _KV_PREV_EXIST_MAX || kv_get_varint(&rd, &c.prev_index) < 0 || kv_get_varint(&rd, &exp) < 0 ||
            kv_get_varint(&rd, &t) < 0 || get_string(&rd, KV_MAX_KEY_SIZE, &c.path) < 0)
                return -EBADMSG;
        c.method = (KvCommandMethod) method;
        c.prev_exist = (KvPrevExist) pe;
        c.expiration_ns = kv_unzigzag(exp);
        c.time_ns = kv_unzigzag(t);
        c.dir = flags & F_DIR;
        c.recursive = flags & F_RECURSIVE;
        c.sorted = flags & F_SORTED;
        c.refresh = flags & F_REFRESH;
        c.has_value = flags & F_VALUE;
        c.has_prev_value = flags & F_PREV_VALUE;
        if (c.has_value && get_string(&rd, KV_MAX_VALUE_SIZE, &c.value) < 0)
                return -EBADMSG;
        if (c.has_prev_value && get_string(&rd, KV_MAX_VALUE_SIZE, &c.prev_value) < 0)
                return -EBADMSG;
        if (rd.p != rd.end)
                return -EBADMSG;
        *ret = c;
        return 0;
}
