/* SPDX-License-Identifier: MIT */
/* Wire format of messages, entries and conf changes: fixed-width little-endian fields after a
 * version byte. Decoding treats input as hostile: every count and length is checked against the
 * remaining bytes and the RAFT_CODEC_MAX_* limits before anything is allocated or copied. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

#define MSG_FLAG_REJECT   0x01
#define MSG_FLAG_SNAPSHOT 0x02
#define MSG_HEADER_SIZE   (3 + 7 * 8 + 4 + 4)
#define ENTRY_HEADER_SIZE (8 + 8 + 1 + 4)
#define CC_HEADER_SIZE    (1 + 1 + 8 + 4)

typedef struct Writer {
        uint8_t *p, *end;
} Writer;

static void put_u8(Writer *w, uint8_t v) {
        *w->p++ = v;
}

static void put_u32(Writer *w, uint32_t v) {
        for (int i = 0; i < 4; i++)
                *w->p++ = (uint8_t) (v >> (8 * i));
}

static void put_u64(Writer *w, uint64_t v) {
        for (int i = 0; i < 8; i++)
                *w->p++ = (uint8_t) (v >> (8 * i));
}

static void put_bytes(Writer *w, const void *p, size_t n) {
        if (n > 0)
                memcpy(w->p, p, n);
        w->p += n;
}

typedef struct Reader {
        const uint8_t *p, *end;
        bool bad;
} Reader;

static bool need(Reader *r, size_t n) {
        if (r->bad || (size_t) (r->end - r->p) < n) {
                r->bad = true;
                return false;
        }
        return true;
}

static uint8_t get_u8(Reader *r) {
        return need(r, 1) ? *r->p++ : 0;
}

static uint32_t get_u32(Reader *r) {
        uint32_t v = 0;

        if (!need(r, 4))
                return 0;
        for (int i = 0; i < 4; i++)
                v |= (uint32_t) *r->p++ << (8 * i);
        return v;
}

static uint64_t get_u64(Reader *r) {
        uint64_t v = 0;

        if (!need(r, 8))
                return 0;
        for (int i = 0; i < 8; i++)
                v |= (uint64_t) *r->p++ << (8 * i);
        return v;
}

static const uint8_t *get_bytes(Reader *r, uint64_t n) {
        const uint8_t *p = r->p;

        if (n > (uint64_t) (r->end - r->p)) {
                r->bad = true;
                return NULL;
        }
        if (!need(r, (size_t) n))
                return NULL;
        r->p += n;
        return p;
}

static size_t conf_state_size(const RaftConfState *cs) {
        return 1 + 8 * (size_t) cs->n_voters + 1 + 8 * (size_t) cs->n_learners;
}

size_t raft_message_encoded_size(const RaftMessage *m) {
        size_t n = MSG_HEADER_SIZE + m->context_len;

        for (size_t i = 0; i < m->n_entries; i++)
                n += ENTRY_HEADER_SIZE + m->entries[i].len;
        if (m->snapshot)
                n += 8 + 8 + conf_state_size(&m->snapshot->metadata.conf_state) + 8 + m->snapshot->len;
        return n;
}

static void put_conf_state(Writer *w, const RaftConfState *cs) {
        put_u8(w, (uint8_t) cs->n_voters);
        for (uint32_t i = 0; i < cs->n_voters; i++)
                put_u64(w, cs->voters[i]);
        put_u8(w, (uint8_t) cs->n_learners);
        for (uint32_t i = 0; i < cs->n_learners; i++)
                put_u64(w, cs->learners[i]);
}

static void put_entry(Writer *w, const RaftEntry *e) {
        put_u64(w, e->term);
        put_u64(w, e->index);
        put_u8(w, (uint8_t) e->type);
        put_u32(w, (uint32_t) e->len);
        put_bytes(w, e->data, e->len);
}

int raft_message_encode(const RaftMessage *m, uint8_t *buf, size_t size) {
        Writer w = { .p = buf, .end = buf + size };

        if (m->type < 0 || m->type >= _RAFT_MSG_MAX || m->context_len > RAFT_CODEC_MAX_CONTEXT ||
            m->n_entries > RAFT_CODEC_MAX_ENTRIES)
                return -EINVAL;
        for (size_t i = 0; i < m->n_entries; i++)
                if (m->entries[i].len > UINT32_MAX)
                        return -EINVAL;
        if (m->snapshot && raft_conf_state_validate(&m->snapshot->metadata.conf_state) < 0)
                return -EINVAL;
        if (raft_message_encoded_size(m) > INT32_MAX)
                return -E2BIG;
        if (size < raft_message_encoded_size(m))
                return -ENOBUFS;
        put_u8(&w, RAFT_CODEC_VERSION);
        put_u8(&w, (uint8_t) m->type);
        put_u8(&w, (m->reject ? MSG_FLAG_REJECT : 0) | (m->snapshot ? MSG_FLAG_SNAPSHOT : 0));
        put_u64(&w, m->to);
        put_u64(&w, m->from);
        put_u64(&w, m->term);
        put_u64(&w, m->log_term);
        put_u64(&w, m->index);
        put_u64(&w, m->commit);
        put_u64(&w, m->reject_hint);
        put_u32(&w, (uint32_t) m->context_len);
        put_bytes(&w, m->context, m->context_len);
        put_u32(&w, (uint32_t) m->n_entries);
        for (size_t i = 0; i < m->n_entries; i++)
                put_entry(&w, &m->entries[i]);
        if (m->snapshot) {
                const RaftSnapshot *s = m->snapshot;

                put_u64(&w, s->metadata.index);
                put_u64(&w, s->metadata.term);
                put_conf_state(&w, &s->metadata.conf_state);
                put_u64(&w, s->len);
                put_bytes(&w, s->data, s->len);
        }
        raft_assert(w.p <= w.end);
        return (int) (w.p - buf);
}

static bool get_conf_state(Reader *r, RaftConfState *cs) {
        *cs = (RaftConfState) {};
        cs->n_voters = get_u8(r);
        if (cs->n_voters > RAFT_MAX_VOTERS)
                return false;
        for (uint32_t i = 0; i < cs->n_voters; i++)
                cs->voters[i] = get_u64(r);
        cs->n_learners = get_u8(r);
        if (cs->n_learners > RAFT_MAX_LEARNERS)
                return false;
        for (uint32_t i = 0; i < cs->n_learners; i++)
                cs->learners[i] = get_u64(r);
        return !r->bad && raft_conf_state_validate(cs) == 0;
}

/* Reads one entry header and returns its payload (pointing into the input). */
static bool get_entry(Reader *r, RaftEntry *e) {
        uint8_t type;
        uint32_t len;

        e->term = get_u64(r);
        e->index = get_u64(r);
        type = get_u8(r);
        len = get_u32(r);
        if (r->bad || type >= _RAFT_ENTRY_TYPE_MAX)
                return false;
        e->type = (RaftEntryType) type;
        e->len = len;
        e->data = len > 0 ? get_bytes(r, len) : NULL;
        return !r->bad;
}

int raft_message_decode(const uint8_t *buf, size_t size, const RaftAllocator *a, RaftMessage *ret) {
        Reader rd;
        RaftMessage m = {};
        const uint8_t *ctx, *entries_start, *snap_data = NULL;
        RaftSnapshotMeta meta = {};
        uint64_t snap_len = 0, data_total = 0;
        uint8_t version, type, flags;
        uint32_t n;
        size_t total;
        uint8_t *block, *bp;

        if (!buf && size > 0)
                return -EINVAL;
        rd = (Reader) { .p = buf, .end = buf ? buf + size : buf };
        /* Pass 1: validate and measure. */
        version = get_u8(&rd);
        type = get_u8(&rd);
        flags = get_u8(&rd);
        if (rd.bad || version != RAFT_CODEC_VERSION || type >= _RAFT_MSG_MAX ||
            (flags & ~(MSG_FLAG_REJECT | MSG_FLAG_SNAPSHOT)))
                return -EBADMSG;
        m.type = (RaftMessageType) type;
        m.reject = flags & MSG_FLAG_REJECT;
        m.to = get_u64(&rd);
        m.from = get_u64(&rd);
        m.term = get_u64(&rd);
        m.log_term = get_u64(&rd);
        m.index = get_u64(&rd);
        m.commit = get_u64(&rd);
        m.reject_hint = get_u64(&rd);
        m.context_len = get_u32(&rd);
        if (rd.bad || m.context_len > RAFT_CODEC_MAX_CONTEXT)
                return -EBADMSG;
        ctx = get_bytes(&rd, m.context_len);
        n = get_u32(&rd);
        if (rd.bad || n > RAFT_CODEC_MAX_ENTRIES || n > (size_t) (rd.end - rd.p) / ENTRY_HEADER_SIZE)
                return -EBADMSG;
        m.n_entries = n;
        entries_start = rd.p;
        for (uint32_t i = 0; i < n; i++) {
                RaftEntry e;

                if (!get_entry(&rd, &e))
                        return -EBADMSG;
                data_total += e.len;
        }
        if (flags & MSG_FLAG_SNAPSHOT) {
                meta.index = get_u64(&rd);
                meta.term = get_u64(&rd);
                if (!get_conf_state(&rd, &meta.conf_state))
                        return -EBADMSG;
                snap_len = get_u64(&rd);
                snap_data = get_bytes(&rd, snap_len);
                if (rd.bad)
                        return -EBADMSG;
        }
        if (rd.bad || rd.p != rd.end)
                return -EBADMSG;

        /* Pass 2: one allocation, laid out as entries, snapshot, context, entry data, snapshot
         * data. raft_message_free_contents() relies on this order. */
        total = n * sizeof(RaftEntry) + ((flags & MSG_FLAG_SNAPSHOT) ? sizeof(RaftSnapshot) : 0) +
                m.context_len + (size_t) data_total + (size_t) snap_len;
        if (total == 0) {
                *ret = m;
                return 0;
        }
        block = raft_malloc(a, total);
        if (!block)
                return -ENOMEM;
        bp = block;
        if (n > 0) {
                RaftEntry *es = (RaftEntry *) bp;
                Reader er = { .p = entries_start, .end = buf + size };

                bp += n * sizeof(RaftEntry);
                for (uint32_t i = 0; i < n; i++)
                        (void) get_entry(&er, &es[i]);
                m.entries = es;
        }
        if (flags & MSG_FLAG_SNAPSHOT) {
                RaftSnapshot *s = (RaftSnapshot *) bp;

                bp += sizeof(RaftSnapshot);
                *s = (RaftSnapshot) { .metadata = meta, .len = (size_t) snap_len };
                m.snapshot = s;
        }
        if (m.context_len > 0) {
                memcpy(bp, ctx, m.context_len);
                m.context = bp;
                bp += m.context_len;
        }
        for (uint32_t i = 0; i < n; i++) {
                RaftEntry *e = (RaftEntry *) &m.entries[i];

                if (e->len > 0) {
                        memcpy(bp, e->data, e->len);
                        e->data = bp;
                        bp += e->len;
                }
        }
        if (m.snapshot && snap_len > 0) {
                memcpy(bp, snap_data, (size_t) snap_len);
                ((RaftSnapshot *) m.snapshot)->data = bp;
                bp += snap_len;
        }
        raft_assert(bp == block + total);
        *ret = m;
        return 0;
}

void raft_message_free_contents(RaftMessage *m, const RaftAllocator *a) {
        const void *block = NULL;

        if (!m)
                return;
        if (m->n_entries > 0)
                block = m->entries;
        else if (m->snapshot)
                block = m->snapshot;
        else if (m->context_len > 0)
                block = m->context;
        raft_mfree(a, block);
        m->entries = NULL;
        m->n_entries = 0;
        m->snapshot = NULL;
        m->context = NULL;
        m->context_len = 0;
}

size_t raft_conf_change_encoded_size(const RaftConfChange *cc) {
        return CC_HEADER_SIZE + cc->context_len;
}

int raft_conf_change_encode(const RaftConfChange *cc, uint8_t *buf, size_t size) {
        Writer w = { .p = buf, .end = buf + size };

        if (cc->type < 0 || cc->type >= _RAFT_CONF_CHANGE_TYPE_MAX || cc->node_id == RAFT_NONE ||
            cc->context_len > RAFT_CODEC_MAX_CONTEXT || (cc->context_len > 0 && !cc->context))
                return -EINVAL;
        if (size < raft_conf_change_encoded_size(cc))
                return -ENOBUFS;
        put_u8(&w, RAFT_CODEC_VERSION);
        put_u8(&w, (uint8_t) cc->type);
        put_u64(&w, cc->node_id);
        put_u32(&w, (uint32_t) cc->context_len);
        put_bytes(&w, cc->context, cc->context_len);
        return (int) (w.p - buf);
}

int raft_conf_change_decode(const uint8_t *buf, size_t size, RaftConfChange *ret) {
        RaftConfChange cc = {};
        uint8_t version, type;
        Reader rd;

        if (!buf)
                return -EBADMSG;
        rd = (Reader) { .p = buf, .end = buf + size };
        version = get_u8(&rd);
        type = get_u8(&rd);
        cc.node_id = get_u64(&rd);
        cc.context_len = get_u32(&rd);
        if (rd.bad || version != RAFT_CODEC_VERSION || type >= _RAFT_CONF_CHANGE_TYPE_MAX ||
            cc.node_id == RAFT_NONE || cc.context_len > RAFT_CODEC_MAX_CONTEXT)
                return -EBADMSG;
        cc.type = (RaftConfChangeType) type;
        cc.context = cc.context_len > 0 ? get_bytes(&rd, cc.context_len) : NULL;
        if (rd.bad || rd.p != rd.end)
                return -EBADMSG;
        *ret = cc;
        return 0;
}

size_t raft_entry_encoded_size(const RaftEntry *e) {
        return 1 + ENTRY_HEADER_SIZE + e->len;
}

int raft_entry_encode(const RaftEntry *e, uint8_t *buf, size_t size) {
        Writer w = { .p = buf, .end = buf + size };

        if (e->type < 0 || e->type >= _RAFT_ENTRY_TYPE_MAX || e->len > UINT32_MAX ||
            (e->len > 0 && !e->data))
                return -EINVAL;
        if (raft_entry_encoded_size(e) > INT32_MAX)
                return -E2BIG;
        if (size < raft_entry_encoded_size(e))
                return -ENOBUFS;
        put_u8(&w, RAFT_CODEC_VERSION);
        put_entry(&w, e);
        return (int) (w.p - buf);
}

int raft_entry_decode(const uint8_t *buf, size_t size, RaftEntry *ret) {
        RaftEntry e;
        Reader rd;

        if (!buf)
                return -EBADMSG;
        rd = (Reader) { .p = buf, .end = buf + size };
        if (get_u8(&rd) != RAFT_CODEC_VERSION || rd.bad)
                return -EBADMSG;
        if (!get_entry(&rd, &e) || rd.p - buf > INT32_MAX)
                return -EBADMSG;
        *ret = e;
        return (int) (rd.p - buf);
}
