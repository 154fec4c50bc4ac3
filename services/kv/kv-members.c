/* SPDX-License-Identifier: MIT */
/* Membership table, its encoding and etcd's renderings of it. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kv-members.h"

void kv_member_done(KvMember *m) {
        free(m->name);
        strv_free(m->peer_urls);
        strv_free(m->client_urls);
        *m = (KvMember) {};
}

void kv_members_done(KvMembers *ms) {
        for (size_t i = 0; i < ms->n; i++)
                kv_member_done(&ms->members[i]);
        free(ms->members);
        *ms = (KvMembers) {};
}

const KvMember *kv_members_find(const KvMembers *ms, uint64_t id) {
        for (size_t i = 0; i < ms->n; i++)
                if (ms->members[i].id == id)
                        return &ms->members[i];
        return NULL;
}

const KvMember *kv_members_find_name(const KvMembers *ms, const char *name) {
        for (size_t i = 0; i < ms->n; i++)
                if (streq_ptr(ms->members[i].name, name))
                        return &ms->members[i];
        return NULL;
}

static int member_copy(const KvMember *from, KvMember *to) {
        *to = (KvMember) { .id = from->id, .name = from->name ? strdup(from->name) : NULL,
                           .peer_urls = strv_copy(from->peer_urls ?: (char *[]) { NULL }),
                           .client_urls = strv_copy(from->client_urls ?: (char *[]) { NULL }) };
        if ((from->name && !to->name) || !to->peer_urls || !to->client_urls) {
                kv_member_done(to);
                return -ENOMEM;
        }
        return 0;
}

int kv_members_put(KvMembers *ms, const KvMember *m) {
        KvMember copy;
        size_t i;

        if (member_copy(m, &copy) < 0)
                return -ENOMEM;
        for (i = 0; i < ms->n && ms->members[i].id < m->id; i++)
                ;
        if (i < ms->n && ms->members[i].id == m->id) {
                kv_member_done(&ms->members[i]);
                ms->members[i] = copy;
                return 0;
        }
        if (ms->n >= KV_MEMBERS_MAX) {
                kv_member_done(&copy);
                return -E2BIG;
        }
        KvMember *t = realloc(ms->members, sizeof(KvMember) * (ms->n + 1));
        if (!t) {
                kv_member_done(&copy);
                return -ENOMEM;
        }
        ms->members = t;
        memmove(ms->members + i + 1, ms->members + i, sizeof(KvMember) * (ms->n - i));
        ms->members[i] = copy;
        ms->n++;
        return 0;
}

int kv_members_remove(KvMembers *ms, uint64_t id) {
        for (size_t i = 0; i < ms->n; i++)
                if (ms->members[i].id == id) {
                        kv_member_done(&ms->members[i]);
                        memmove(ms->members + i, ms->members + i + 1, sizeof(KvMember) * (ms->n - i - 1));
                        ms->n--;
                        return 0;
                }
        return -ENOENT;
}

int kv_members_copy(const KvMembers *from, KvMembers *to) {
        *to = (KvMembers) {};
        for (size_t i = 0; i < from->n; i++)
                if (kv_members_put(to, &from->members[i]) < 0) {
                        kv_members_done(to);
                        return -ENOMEM;
                }
        return 0;
}

/* ---------------------------------------------------------------- encoding */

static int put_u32(Buf *b, uint32_t v) {
        uint8_t p[4] = { (uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16), (uint8_t) (v >> 24) };
        return buf_append(b, p, 4);
}

static int put_u64(Buf *b, uint64_t v) {
        int r = put_u32(b, (uint32_t) v);
        return r < 0 ? r : put_u32(b, (uint32_t) (v >> 32));
}

static int put_str(Buf *b, const char *s) {
        size_t l = s ? strlen(s) : 0;
        int r = put_u32(b, (uint32_t) l);
        return r < 0 ? r : buf_append(b, s ?: "", l);
}

static int put_strv(Buf *b, char *const *l) {
        int r = put_u32(b, (uint32_t) strv_length(l));
        STRV_FOREACH(s, l)
                if (r >= 0)
                        r = put_str(b, *s);
        return r;
}

int kv_member_encode(const KvMember *m, Buf *out) {
        int r = put_u64(out, m->id);
        if (r >= 0)
                r = put_str(out, m->name);
        if (r >= 0)
                r = put_strv(out, m->peer_urls);
        if (r >= 0)
                r = put_strv(out, m->client_urls);
        return r;
}

typedef struct Reader {
        const uint8_t *p;
        size_t left;
} Reader;

static int get_u32(Reader *rd, uint32_t *ret) {
        if (rd->left < 4)
                return -EBADMSG;
        *ret = (uint32_t) rd->p[0] | (uint32_t) rd->p[1] << 8 | (uint32_t) rd->p[2] << 16 | (uint32_t) rd->p[3] << 24;
        rd->p += 4;
        rd->left -= 4;
        return 0;
}

static int get_u64(Reader *rd, uint64_t *ret) {
        uint32_t lo, hi;
        if (get_u32(rd, &lo) < 0 || get_u32(rd, &hi) < 0)
                return -EBADMSG;
        *ret = (uint64_t) hi << 32 | lo;
        return 0;
}

static int get_str(Reader *rd, char **ret) {
        uint32_t l;
        if (get_u32(rd, &l) < 0 || l > KV_MEMBER_STR_MAX || l > rd->left)
                return -EBADMSG;
        if (memchr(rd->p, 0, l))
                return -EBADMSG;
        *ret = strndup((const char *) rd->p, l);
        if (!*ret)
                return -ENOMEM;
        rd->p += l;
        rd->left -= l;
        return 0;
}

static int get_strv(Reader *rd, char ***ret) {
        uint32_t n;
        char **l = new0(char *, 1);

        if (!l)
                return -ENOMEM;
        if (get_u32(rd, &n) < 0 || n > KV_MEMBER_URLS_MAX) {
                strv_free(l);
                return -EBADMSG;
        }
        for (uint32_t i = 0; i < n; i++) {
                char *s = NULL;
                int r = get_str(rd, &s);
                if (r < 0 || strv_push(&l, s) < 0) {
                        strv_free(l);
                        return r < 0 ? r : -ENOMEM;
                }
        }
        *ret = l;
        return 0;
}

static int read_member(Reader *rd, KvMember *ret) {
        KvMember m = {};
        int r = get_u64(rd, &m.id);
        if (r >= 0)
                r = get_str(rd, &m.name);
        if (r >= 0)
                r = get_strv(rd, &m.peer_urls);
        if (r >= 0)
                r = get_strv(rd, &m.client_urls);
        if (r >= 0 && m.id == 0)
                r = -EBADMSG;
        if (r < 0) {
                kv_member_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}

int kv_member_decode(const void *data, size_t len, KvMember *ret) {
        Reader rd = { data, len };
        int r = read_member(&rd, ret);
        if (r >= 0 && rd.left != 0) {
                kv_member_done(ret);
                return -EBADMSG;
        }
        return r;
}

int kv_members_encode(const KvMembers *ms, Buf *out) {
        int r = put_u32(out, (uint32_t) ms->n);
        for (size_t i = 0; i < ms->n && r >= 0; i++)
                r = kv_member_encode(&ms->members[i], out);
        return r;
}

int kv_members_decode(const void *data, size_t len, KvMembers *ret) {
        Reader rd = { data, len };
        KvMembers ms = {};
        uint32_t n;
        int r;

        if (get_u32(&rd, &n) < 0 || n > KV_MEMBERS_MAX)
                return -EBADMSG;
        for (uint32_t i = 0; i < n; i++) {
                KvMember m = {}; /* read_member() leaves it untouched on failure */
                r = read_member(&rd, &m);
                if (r >= 0 && kv_members_find(&ms, m.id))
                        r = -EBADMSG; /* duplicate */
                if (r >= 0)
                        r = kv_members_put(&ms, &m);
                kv_member_done(&m);
                if (r < 0) {
                        kv_members_done(&ms);
                        return r == -ENOMEM ? r : -EBADMSG;
                }
        }
        if (rd.left != 0) {
                kv_members_done(&ms);
                return -EBADMSG;
        }
        *ret = ms;
        return 0;
}

/* ---------------------------------------------------------------- rendering */

/* JSON string with Go's escaping (members' names and URLs are operator input). */
static int put_json_str(Buf *b, const char *s) {
        int r = buf_append_str(b, "\"");
        for (const unsigned char *c = (const unsigned char *) (s ?: ""); *c && r >= 0; c++) {
                if (*c == '"' || *c == '\\')
                        r = buf_printf(b, "\\%c", *c);
                else if (*c < 0x20 || *c == '<' || *c == '>' || *c == '&')
                        r = buf_printf(b, "\\u%04x", *c);
                else
                        r = buf_append(b, c, 1);
        }
        return r < 0 ? r : buf_append_str(b, "\"");
}

static int put_json_strv(Buf *b, char *const *l) {
        int r = buf_append_str(b, "[");
        bool first = true;
        STRV_FOREACH(s, l) {
                if (r >= 0 && !first)
                        r = buf_append_str(b, ",");
                if (r >= 0)
                        r = put_json_str(b, *s);
                first = false;
        }
        return r < 0 ? r : buf_append_str(b, "]");
}

int kv_members_render(const KvMembers *ms, Buf *out) {
        int r = buf_append_str(out, "{\"members\":[");
        for (size_t i = 0; i < ms->n && r >= 0; i++) {
                const KvMember *m = &ms->members[i];
                r = buf_printf(out, "%s{\"id\":\"%" PRIx64 "\",\"name\":", i ? "," : "", m->id);
                if (r >= 0)
                        r = put_json_str(out, m->name ?: "");
                if (r >= 0)
                        r = buf_append_str(out, ",\"peerURLs\":");
                if (r >= 0)
                        r = put_json_strv(out, m->peer_urls);
                if (r >= 0)
                        r = buf_append_str(out, ",\"clientURLs\":");
                if (r >= 0)
                        r = put_json_strv(out, m->client_urls);
                if (r >= 0)
                        r = buf_append_str(out, "}");
        }
        return r < 0 ? r : buf_append_str(out, "]}\n");
}

int kv_members_render_machines(const KvMembers *ms, Buf *out) {
        bool first = true;
        int r = 0;
        for (size_t i = 0; i < ms->n && r >= 0; i++)
                STRV_FOREACH(u, ms->members[i].client_urls) {
                        r = buf_printf(out, "%s%s", first ? "" : ", ", *u);
                        first = false;
                }
        return r;
}
