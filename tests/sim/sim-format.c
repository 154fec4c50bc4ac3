/* SPDX-License-Identifier: MIT */
/* Human-readable rendering of entries, configurations and messages for simulator traces and the
 * scripted scenarios' golden output. Changing it changes every golden file. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim-internal.h"

void sim_fmt_data(char *buf, size_t size, const void *data, size_t len) {
        const uint8_t *p = data;
        size_t o = 0;

        if (len == OP_ENCODED_SIZE && p[0] == 'W') {
                uint32_t id;
                uint64_t v;

                memcpy(&id, p + 1, 4);
                memcpy(&v, p + 6, 8);
                snprintf(buf, size, "w(op=%" PRIu32 ",k=%u,v=%" PRIu64 ")", id, p[5], v);
                return;
        }
        o += (size_t) snprintf(buf + o, size - o, "\"");
        for (size_t i = 0; i < len && o + 5 < size; i++)
                o += (size_t) snprintf(buf + o, size - o, p[i] >= 32 && p[i] < 127 && p[i] != '"' ? "%c" : "\\x%02x", p[i]);
        if (o + 1 < size)
                snprintf(buf + o, size - o, "\"");
}

void sim_fmt_entry(char *buf, size_t size, const RaftEntry *e) {
        char d[128];

        if (e->type == RAFT_ENTRY_CONF_CHANGE) {
                RaftConfChange cc;

                if (raft_conf_change_decode(e->data, e->len, &cc) == 0)
                        snprintf(d, sizeof(d), "%s %" PRIu64, raft_conf_change_type_to_string(cc.type), cc.node_id);
                else
                        snprintf(d, sizeof(d), "bad-conf-change");
                snprintf(buf, size, "%" PRIu64 "/%" PRIu64 " conf[%s]", e->term, e->index, d);
                return;
        }
        sim_fmt_data(d, sizeof(d), e->data, e->len);
        snprintf(buf, size, "%" PRIu64 "/%" PRIu64 " %s", e->term, e->index, d);
}

void sim_fmt_conf(char *buf, size_t size, const RaftConfState *cs) {
        size_t o = 0;

        o += (size_t) snprintf(buf + o, size - o, "voters=(");
        for (uint32_t i = 0; i < cs->n_voters && o < size; i++)
                o += (size_t) snprintf(buf + o, size - o, "%s%" PRIu64, i ? " " : "", cs->voters[i]);
        if (o < size)
                o += (size_t) snprintf(buf + o, size - o, ")");
        if (cs->n_learners > 0 && o < size) {
                o += (size_t) snprintf(buf + o, size - o, " learners=(");
                for (uint32_t i = 0; i < cs->n_learners && o < size; i++)
                        o += (size_t) snprintf(buf + o, size - o, "%s%" PRIu64, i ? " " : "", cs->learners[i]);
                if (o < size)
                        snprintf(buf + o, size - o, ")");
        }
}

void sim_fmt_msg(char *buf, size_t size, const RaftMessage *m) {
        size_t o = 0;

        o += (size_t) snprintf(buf + o, size - o, "%" PRIu64 "->%" PRIu64 " %s term=%" PRIu64,
                               m->from, m->to, raft_message_type_to_string(m->type), m->term);
        if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE)
                o += (size_t) snprintf(buf + o, size - o, " log=%" PRIu64 "/%" PRIu64, m->log_term, m->index);
        else if (m->index)
                o += (size_t) snprintf(buf + o, size - o, " index=%" PRIu64, m->index);
        if (m->commit && o < size)
                o += (size_t) snprintf(buf + o, size - o, " commit=%" PRIu64, m->commit);
        if (m->reject && o < size)
                o += (size_t) snprintf(buf + o, size - o, " rejected (hint %" PRIu64 "/%" PRIu64 ")",
                                       m->reject_hint, m->log_term);
        if (m->n_entries > 0 && o < size) {
                o += (size_t) snprintf(buf + o, size - o, " entries=[");
                for (size_t i = 0; i < m->n_entries && o < size; i++) {
                        char e[160];

                        sim_fmt_entry(e, sizeof(e), &m->entries[i]);
                        o += (size_t) snprintf(buf + o, size - o, "%s%s", i ? ", " : "", e);
                }
                if (o < size)
                        o += (size_t) snprintf(buf + o, size - o, "]");
        }
        if (m->snapshot && o < size) {
                char c[128];

                sim_fmt_conf(c, sizeof(c), &m->snapshot->metadata.conf_state);
                o += (size_t) snprintf(buf + o, size - o, " snapshot[index=%" PRIu64 " term=%" PRIu64 " %s]",
                                       m->snapshot->metadata.index, m->snapshot->metadata.term, c);
        }
        if (m->context_len > 0 && o < size) {
                char d[64];

                sim_fmt_data(d, sizeof(d), m->context, m->context_len);
                snprintf(buf + o, size - o, " ctx=%s", d);
        }
}
