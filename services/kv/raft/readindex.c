/* SPDX-License-Identifier: MIT */
/* Linearizable reads without log writes (Raft thesis §6.4, etcd's ReadOnlySafe): the leader
 * records its commit index for a request, confirms it is still leader with a heartbeat round
 * carrying the request's ctx, and answers once a quorum acknowledged. */
#include <errno.h>
#include <string.h>

#include "raft-internal.h"

#define READINDEX_MAX_PENDING 65536

void raft_readindex_reset(Raft *r) {
        for (size_t i = 0; i < r->read_only.n; i++)
                raft_mfree(&r->alloc, r->read_only.queue[i].ctx);
        r->read_only.n = 0;
        for (size_t i = 0; i < r->n_pending_reads; i++)
                raft_mfree(&r->alloc, r->pending_reads[i].ctx);
        r->n_pending_reads = 0;
}

void raft_readindex_done(Raft *r) {
        raft_readindex_reset(r);
        raft_mfree(&r->alloc, r->read_only.queue);
        raft_mfree(&r->alloc, r->pending_reads);
        r->read_only = (ReadOnly) {};
        r->pending_reads = NULL;
        r->cap_pending_reads = 0;
}

bool raft_readindex_committed_entry_in_current_term(Raft *r) {
        return raft_log_term(&r->log, r->log.committed) == r->term;
}

static void respond(Raft *r, uint64_t from, uint64_t index, const void *ctx, size_t len) {
        if (from == RAFT_NONE || from == r->id) {
                raft_readindex_add_read_state(r, index, ctx, len);
                return;
        }
        raft_send(r, &(RaftMessage) { .type = RAFT_MSG_READ_INDEX_RESP, .to = from, .index = index,
                                      .context = ctx, .context_len = len });
}

static ReadIndexStatus *find(Raft *r, const void *ctx, size_t len, size_t *ret_pos) {
        for (size_t i = 0; i < r->read_only.n; i++) {
                ReadIndexStatus *s = &r->read_only.queue[i];

                if (s->ctx_len == len && memcmp(s->ctx, ctx, len) == 0) {
                        if (ret_pos)
                                *ret_pos = i;
                        return s;
                }
        }
        return NULL;
}

static void recv_ack(ReadIndexStatus *s, uint64_t id) {
        for (size_t i = 0; i < s->n_acks; i++)
                if (s->acks[i] == id)
                        return;
        if (s->n_acks < RAFT_MAX_VOTERS)
                s->acks[s->n_acks++] = id;
}

static bool acks_won(Raft *r, const ReadIndexStatus *s) {
        size_t n = 0;

        for (size_t i = 0; i < s->n_acks; i++)
                if (raft_tracker_is_voter(&r->trk, s->acks[i]))
                        n++;
        return n > r->trk.conf.n_voters / 2;
}

static int send_read_index_response(Raft *r, uint64_t from, const void *ctx, size_t len) {
        ReadIndexStatus *s = find(r, ctx, len, NULL);
        int k;

        if (!s) {
                if (r->read_only.n >= READINDEX_MAX_PENDING)
                        return -EBUSY;
                k = raft_grow(&r->alloc, (void **) &r->read_only.queue, &r->read_only.cap,
                              r->read_only.n + 1, sizeof(ReadIndexStatus));
                if (k < 0)
                        return k;
                s = &r->read_only.queue[r->read_only.n];
                *s = (ReadIndexStatus) { .index = r->log.committed, .from = from, .ctx_len = len };
                s->ctx = raft_memdup(&r->alloc, ctx, len);
                if (!s->ctx)
                        return -ENOMEM;
                r->read_only.n++;
                recv_ack(s, r->id);
        }
        raft_replication_bcast_heartbeat(r, ctx, len);
        return 0;
}

int raft_readindex_step_leader(Raft *r, const RaftMessage *m) {
        PendingRead *p;
        int k;

        if (m->context_len == 0)
                return -EINVAL;
        if (r->trk.conf.n_voters == 1 && raft_tracker_is_voter(&r->trk, r->id)) {
                respond(r, m->from, r->log.committed, m->context, m->context_len);
                return 0;
        }
        if (raft_readindex_committed_entry_in_current_term(r))
                return send_read_index_response(r, m->from, m->context, m->context_len);
        /* Until an entry of this term commits, the commit index may be stale (thesis §6.4 step
         * 1): hold the request. */
        if (r->n_pending_reads >= READINDEX_MAX_PENDING)
                return -EBUSY;
        k = raft_grow(&r->alloc, (void **) &r->pending_reads, &r->cap_pending_reads,
                      r->n_pending_reads + 1, sizeof(PendingRead));
        if (k < 0)
                return k;
        p = &r->pending_reads[r->n_pending_reads];
        *p = (PendingRead) { .from = m->from, .ctx_len = m->context_len };
        p->ctx = raft_memdup(&r->alloc, m->context, m->context_len);
        if (!p->ctx)
                return -ENOMEM;
        r->n_pending_reads++;
        return 0;
}

void raft_readindex_release_pending(Raft *r) {
        size_t n = r->n_pending_reads;

        if (n == 0 || !raft_readindex_committed_entry_in_current_term(r))
                return;
        r->n_pending_reads = 0;
        for (size_t i = 0; i < n; i++) {
                PendingRead *p = &r->pending_reads[i];

                (void) send_read_index_response(r, p->from, p->ctx, p->ctx_len);
                raft_mfree(&r->alloc, p->ctx);
        }
}

void raft_readindex_handle_heartbeat_resp(Raft *r, const RaftMessage *m) {
        ReadIndexStatus *s;
        size_t pos;

        if (m->context_len == 0)
                return;
        s = find(r, m->context, m->context_len, &pos);
        if (!s)
                return;
        recv_ack(s, m->from);
        if (!acks_won(r, s))
                return;
        /* A quorum confirmed leadership at a time after every request up to this one was
         * queued: all of them are answered. */
        for (size_t i = 0; i <= pos; i++) {
                ReadIndexStatus *q = &r->read_only.queue[i];

                respond(r, q->from, q->index, q->ctx, q->ctx_len);
                raft_mfree(&r->alloc, q->ctx);
        }
        memmove(r->read_only.queue, r->read_only.queue + pos + 1,
                (r->read_only.n - pos - 1) * sizeof(ReadIndexStatus));
        r->read_only.n -= pos + 1;
}
