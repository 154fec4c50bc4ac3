/* SPDX-License-Identifier: MIT */
/* The Raft driver of a flotilla-kv member: ticks, the Ready loop (persist, send, apply, advance),
 * proposals and quorum reads waiting for their outcome, leader duties (expiring TTL keys), and
 * the member publishing its client URLs. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv-node-internal.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/unaligned.h"
#include "shared/random-util.h"

#define KV_SYNC_INTERVAL   (500 * USEC_PER_MSEC)   /* etcd's: expire TTL keys twice a second */
#define KV_PUBLISH_RETRY   (2 * USEC_PER_SEC)
#define KV_PING_INTERVAL   (500 * USEC_PER_MSEC)
/* A peer counts as active (for the safety checks of membership changes) while its connection is
 * up and it answered a ping this recently: a stopped process keeps its sockets open. */
#define KV_PEER_ACTIVE_WINDOW (4 * KV_PING_INTERVAL)
#define KV_PROMOTE_INTERVAL (USEC_PER_SEC)
#define KV_CHANGE_UPDATE   100                     /* n->change.type of a peer URL update */
#define KV_MAX_MSG_SIZE    (1ULL << 20)            /* etcd's maxSizePerMsg */
#define KV_MAX_INFLIGHT    512
#define KV_MAX_UNCOMMITTED (64ULL << 20)

int64_t kv_node_now_ns(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void kv_node_fail(KvNode *n, int error, const char *what) {
        if (n->failed)
                return;
        n->failed = true;
        if (error == -EIDRM)
                log_error("This member was removed from the cluster and stops. Its data directory is of no further "
                          "use: to bring it back, add it again and start it with an empty one.");
        else
                log_error_errno(error, "Fatal: %s: %m. This member stops; restart it to recover from its WAL.", what);
        if (n->on_fatal)
                n->on_fatal(error, n->fatal_userdata);
}

/* ---------------------------------------------------------------- proposals */

static void kick(KvNode *n);
static void change_finish(KvNode *n, int error);

static void proposal_free(KvProposal *p) {
        KvNode *n = p->node;

        (void) u64map_remove(&n->pending, p->seq);
        if (p->prev)
                p->prev->next = p->next;
        else
                n->fifo = p->next;
        if (p->next)
                p->next->prev = p->prev;
        else
                n->fifo_tail = p->prev;
        free(p->data);
        free(p);
}

static void proposal_finish(KvProposal *p, const KvStoreResult *res, int error) {
        KvApplyFn acb = p->apply_cb;
        KvReadFn rcb = p->read_cb;
        void *u = p->userdata;
        bool is_read = p->is_read;

        proposal_free(p); /* before the callback: it may propose again */
        if (is_read && rcb)
                rcb(error, u);
        else if (!is_read && acb)
                acb(res, error, u);
}

void kv_proposal_cancel(KvProposal *p) {
        if (p)
                proposal_free(p);
}

static KvProposal *proposal_new(KvNode *n, bool is_read, void *userdata) {
        KvProposal *p = new0(KvProposal, 1);

        if (!p)
                return NULL;
        *p = (KvProposal) { .node = n, .seq = ++n->seq, .is_read = is_read, .userdata = userdata,
                            .deadline = now_usec(CLOCK_MONOTONIC) + n->request_timeout_usec };
        if (u64map_put(&n->pending, p->seq, p) < 0) {
                free(p);
                return NULL;
        }
        /* Same timeout for everyone: appending keeps the list in deadline order. */
        p->prev = n->fifo_tail;
        if (n->fifo_tail)
                n->fifo_tail->next = p;
        else
                n->fifo = p;
        n->fifo_tail = p;
        return p;
}

/* Hands a waiting proposal to Raft. Without a leader (or under flow control) it keeps waiting. */
static void proposal_submit(KvProposal *p) {
        KvNode *n = p->node;
        uint8_t ctx[8];
        int r;

        if (p->is_read) {
                put_le64(ctx, p->seq);
                r = raft_read_index(n->raft, ctx, sizeof(ctx));
        } else
                r = raft_propose(n->raft, p->data, p->len);
        if (r == -ENOTCONN || r == -EBUSY) {
                p->state = PROPOSAL_WAITING;
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "Raft refused a %s: %m", p->is_read ? "read" : "proposal");
                proposal_finish(p, NULL, r);
                return;
        }
        p->state = PROPOSAL_PROPOSED;
        if (!p->is_read) {
                p->data = mfree(p->data);
                p->len = 0;
        }
        (void) sd_event_source_set_enabled(n->ready, SD_EVENT_ON);
}

int kv_node_propose(KvNode *n, const KvCommand *c, KvApplyFn cb, void *userdata, KvProposal **ret) {
        _cleanup_(buf_done) Buf b = BUF_INIT(KV_WAL_ENTRY_DATA_MAX);
        uint8_t env[KV_ENTRY_ENVELOPE];
        KvProposal *p;
        int r;

        if (n->failed)
                return -EIO;
        p = proposal_new(n, false, userdata);
        if (!p)
                return -ENOMEM;
        env[0] = KV_ENTRY_COMMAND;
        put_le64(env + 1, n->id);
        put_le64(env + 9, p->seq);
        r = buf_append(&b, env, sizeof(env));
        if (r >= 0)
                r = kv_command_encode(c, &b);
        if (r < 0) {
                proposal_free(p);
                return r == -ENOBUFS ? -E2BIG : r;
        }
        p->apply_cb = cb;
        p->len = b.len;
        p->data = (uint8_t *) buf_steal(&b);
        proposal_submit(p);
        if (ret)
                *ret = p;
        return 0;
}

int kv_node_read_index(KvNode *n, KvReadFn cb, void *userdata, KvProposal **ret) {
        KvProposal *p;

        if (n->failed)
                return -EIO;
        p = proposal_new(n, true, userdata);
        if (!p)
                return -ENOMEM;
        p->read_cb = cb;
        proposal_submit(p);
        if (ret)
                *ret = p;
        return 0;
}

/* Retries waiting proposals once a leader is known, completes reads whose index is applied and
 * fails whatever has passed its deadline. Walks the whole list: pending requests are few (one
 * per client connection) and this runs once per loop iteration that changed something. */
static void proposals_check(KvNode *n) {
        usec_t now = now_usec(CLOCK_MONOTONIC);

        if (n->change.cb && n->change.deadline <= now)
                change_finish(n, -ETIMEDOUT);
        for (KvProposal *p = n->fifo, *next; p; p = next) {
                next = p->next;
                if (p->deadline <= now) {
                        proposal_finish(p, NULL, -ETIMEDOUT);
                        continue;
                }
                if (p->state == PROPOSAL_WAITING && n->soft.lead != RAFT_NONE)
                        proposal_submit(p);
                else if (p->state == PROPOSAL_READ_READY && n->applied_index >= p->read_index)
                        proposal_finish(p, NULL, 0);
        }
}

/* ---------------------------------------------------------------- membership changes */

static void change_finish(KvNode *n, int error) {
        KvMemberChangeFn cb = n->change.cb;
        void *u = n->change.userdata;

        n->change.cb = NULL;
        if (cb)
                cb(error, u);
}

static void change_applied(KvNode *n, int type, uint64_t node_id) {
        if (n->change.cb && n->change.type == type && n->change.node_id == node_id)
                change_finish(n, 0);
}

void kv_node_member_change_cancel(KvNode *n) {
        n->change.cb = NULL;
}

bool kv_node_is_learner(KvNode *n, uint64_t id) {
        bool learner = false;
        return raft_conf_state_has(&n->conf_state, id, &learner) && learner;
}

static int change_start(KvNode *n, int type, uint64_t node_id, KvMemberChangeFn cb, void *userdata) {
        if (n->change.cb)
                return -EBUSY;
        n->change.cb = cb;
        n->change.userdata = userdata;
        n->change.type = type;
        n->change.node_id = node_id;
        n->change.deadline = usec_add(now_usec(CLOCK_MONOTONIC), n->request_timeout_usec);
        return 0;
}

static int propose_conf_change(KvNode *n, RaftConfChangeType type, const KvMember *m) {
        _cleanup_(buf_done) Buf ctx = BUF_INIT(RAFT_CODEC_MAX_CONTEXT);
        RaftConfChange cc = { .type = type, .node_id = m->id };
        int r;

        r = kv_member_encode(m, &ctx);
        if (r < 0)
                return r;
        cc.context = ctx.data;
        cc.context_len = ctx.len;
        r = raft_propose_conf_change(n->raft, &cc);
        /* No leader yet: the client gets etcd's timeout rather than an error it cannot act on. */
        return r == -ENOTCONN ? 0 : r;
}

/* Registers cb as the waiter and proposes the change; the waiter is dropped if Raft refuses. */
static int change_propose(KvNode *n, RaftConfChangeType type, const KvMember *m, KvMemberChangeFn cb, void *userdata) {
        int r = change_start(n, (int) type, m->id, cb, userdata);

        if (r < 0)
                return r;
        r = propose_conf_change(n, type, m);
        if (r < 0) {
                n->change.cb = NULL;
                return r;
        }
        kick(n);
        return 0;
}

static bool urls_taken(KvNode *n, char *const *urls, uint64_t except) {
        for (size_t i = 0; i < n->members.n; i++) {
                if (n->members.members[i].id == except)
                        continue;
                STRV_FOREACH(u, n->members.members[i].peer_urls)
                        STRV_FOREACH(v, (char **) urls)
                                if (streq(*u, *v))
                                        return true;
        }
        return false;
}

int kv_node_add_member(KvNode *n, char *const *peer_urls, uint64_t *ret_id, KvMemberChangeFn cb, void *userdata) {
        char salt[32];
        KvMember m = { .peer_urls = (char **) peer_urls };
        int r;

        if (n->failed)
                return -EIO;
        if (strv_length((char **) peer_urls) == 0)
                return -EINVAL;
        if (urls_taken(n, peer_urls, 0))
                return -EEXIST;
        /* As etcd's member add: the peer URLs and the time, so that a member added again after
         * its removal gets a new identity and nothing meant for the old one reaches it. */
        (void) snprintf(salt, sizeof(salt), "%" PRId64, kv_node_now_ns());
        m.id = kv_member_id((char *const *) peer_urls, salt);
        if (m.id == RAFT_NONE || kv_members_find(&n->members, m.id))
                return -EAGAIN;
        r = change_propose(n, RAFT_CONF_ADD_LEARNER, &m, cb, userdata);
        if (r >= 0)
                *ret_id = m.id;
        return r;
}

static bool peer_active(KvNode *n, uint64_t id, usec_t now) {
        KvPeerStats st;

        return kv_peer_stats(n->peers, id, &st) >= 0 && st.reachable && st.last_pong_usec > 0 &&
               now - MIN(now, st.last_pong_usec) <= KV_PEER_ACTIVE_WINDOW;
}

unsigned kv_node_active_peers(KvNode *n) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        unsigned k = 0;

        for (size_t i = 0; i < n->members.n; i++)
                if (n->members.members[i].id != n->id && peer_active(n, n->members.members[i].id, now))
                        k++;
        return k;
}

/* Voters this member can reach (itself included) after removing id, against the quorum of the
 * voters that remain. */
static bool removal_keeps_quorum(KvNode *n, uint64_t id) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        unsigned voters = 0, reachable = 0;

        for (uint32_t i = 0; i < n->conf_state.n_voters; i++) {
                uint64_t v = n->conf_state.voters[i];
                if (v == id)
                        continue;
                voters++;
                if (v == n->id || peer_active(n, v, now))
                        reachable++;
        }
        return voters > 0 && reachable >= voters / 2 + 1;
}

int kv_node_remove_member(KvNode *n, uint64_t id, KvMemberChangeFn cb, void *userdata) {
        const KvMember *m = kv_members_find(&n->members, id);
        bool learner = false;

        if (n->failed)
                return -EIO;
        if (!m || !raft_conf_state_has(&n->conf_state, id, &learner))
                return -ENOENT;
        if (!learner && !removal_keeps_quorum(n, id))
                return -EDEADLK;
        return change_propose(n, RAFT_CONF_REMOVE_NODE, &(KvMember) { .id = id }, cb, userdata);
}

int kv_node_promote_member(KvNode *n, uint64_t id, KvMemberChangeFn cb, void *userdata) {
        const KvMember *m = kv_members_find(&n->members, id);
        bool learner = false;
        int r;

        if (n->failed)
                return -EIO;
        if (!m || !raft_conf_state_has(&n->conf_state, id, &learner))
                return -ENOENT;
        if (!learner)
                return -EINVAL;
        if (n->change.cb)
                return -EBUSY;
        r = change_propose(n, RAFT_CONF_ADD_VOTER, m, cb, userdata);
        return r == -EBUSY ? -EAGAIN : r; /* Raft's -EBUSY: not caught up */
}

int kv_node_update_member(KvNode *n, uint64_t id, char *const *peer_urls, KvMemberChangeFn cb, void *userdata) {
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        uint8_t env[KV_ENTRY_ENVELOPE] = { KV_ENTRY_PEER_URLS };
        KvMember m = { .id = id, .peer_urls = (char **) peer_urls };
        int r;

        if (n->failed)
                return -EIO;
        if (!kv_members_find(&n->members, id))
                return -ENOENT;
        if (strv_length((char **) peer_urls) == 0)
                return -EINVAL;
        if (urls_taken(n, peer_urls, id))
                return -EEXIST;
        put_le64(env + 1, n->id);
        r = buf_append(&b, env, sizeof(env));
        if (r >= 0)
                r = kv_member_encode(&m, &b);
        if (r < 0)
                return r;
        r = change_start(n, KV_CHANGE_UPDATE, id, cb, userdata);
        if (r < 0)
                return r;
        r = raft_propose(n->raft, b.data, b.len);
        if (r < 0 && r != -ENOTCONN) {
                n->change.cb = NULL;
                return r;
        }
        kick(n);
        return 0;
}

/* The leader promotes caught-up learners (Raft refuses the others, -EBUSY), one per second. */
static void promote_learners(KvNode *n, usec_t now) {
        if (n->conf_state.n_learners == 0 || now < n->next_promote_usec)
                return;
        n->next_promote_usec = now + KV_PROMOTE_INTERVAL;
        for (uint32_t i = 0; i < n->conf_state.n_learners; i++) {
                const KvMember *m = kv_members_find(&n->members, n->conf_state.learners[i]);
                if (m && propose_conf_change(n, RAFT_CONF_ADD_VOTER, m) == 0) {
                        log_info("Promoting learner %" PRIx64 ", which has caught up.", m->id);
                        return;
                }
        }
}

/* ---------------------------------------------------------------- applying */

static void apply_conf_change(KvNode *n, const RaftEntry *e) {
        RaftConfChange cc;
        RaftConfState cs;
        KvMember m = {};
        int r;

        r = raft_conf_change_decode(e->data, e->len, &cc);
        if (r < 0) {
                kv_node_fail(n, r, "undecodable conf change in the log");
                return;
        }
        r = raft_apply_conf_change(n->raft, &cc, &cs);
        if (r < 0) {
                kv_node_fail(n, r, "applying a conf change");
                return;
        }
        n->conf_state = cs;
        if (cc.type == RAFT_CONF_REMOVE_NODE) {
                (void) kv_members_remove(&n->members, cc.node_id);
                if (cc.node_id != n->id)
                        (void) kv_peer_remove(n->peers, cc.node_id);
                if (n->n_removed == KV_REMOVED_MAX)
                        memmove(n->removed, n->removed + 1, --n->n_removed * sizeof(uint64_t));
                n->removed[n->n_removed++] = cc.node_id;
                log_info("Member %" PRIx64 " removed.", cc.node_id);
                change_applied(n, (int) cc.type, cc.node_id);
                if (cc.node_id == n->id)
                        /* As etcd: a removed member stops for good; its data is of no further use. */
                        kv_node_fail(n, -EIDRM, "this member was removed from the cluster");
                return;
        }
        if (cc.context_len > 0 && kv_member_decode(cc.context, cc.context_len, &m) >= 0) {
                const KvMember *old = kv_members_find(&n->members, m.id);
                /* A member re-added (promoted) keeps the client URLs it published. */
                if (old && strv_length(m.client_urls) == 0) {
                        strv_free(m.client_urls);
                        m.client_urls = strv_copy(old->client_urls);
                }
                (void) kv_members_put(&n->members, &m);
                if (m.id != n->id && m.peer_urls[0])
                        (void) kv_peer_add(n->peers, m.id, m.peer_urls[0]);
                kv_member_done(&m);
        }
        log_info("Member %" PRIx64 " added as %s.", cc.node_id, cc.type == RAFT_CONF_ADD_LEARNER ? "learner" : "voter");
        change_applied(n, (int) cc.type, cc.node_id);
}

/* A member's new peer URLs (PUT /v2/members/ID): the table and the transport follow. */
static void apply_peer_urls(KvNode *n, const void *data, size_t len) {
        KvMember m = {};
        const KvMember *old;

        if (kv_member_decode(data, len, &m) < 0)
                return;
        old = kv_members_find(&n->members, m.id);
        if (old && strv_length(m.peer_urls) > 0) {
                /* kv_members_put() copies before it replaces, so old's strings may be passed. */
                KvMember upd = { .id = m.id, .name = old->name, .client_urls = old->client_urls, .peer_urls = m.peer_urls };
                if (kv_members_put(&n->members, &upd) >= 0 && m.id != n->id)
                        (void) kv_peer_add(n->peers, m.id, m.peer_urls[0]);
                log_info("Member %" PRIx64 " now has peer URL %s.", m.id, m.peer_urls[0]);
                change_applied(n, KV_CHANGE_UPDATE, m.id);
        }
        kv_member_done(&m);
}

static void serving_check(KvNode *n);

static void apply_attributes(KvNode *n, const void *data, size_t len) {
        KvMember m = {};
        const KvMember *old;

        if (kv_member_decode(data, len, &m) < 0)
                return; /* an entry we cannot read must not stop the cluster: ignore it */
        old = kv_members_find(&n->members, m.id);
        if (old) {
                /* Peer URLs change only through conf changes; attributes bring name and client URLs. */
                strv_free(m.peer_urls);
                m.peer_urls = strv_copy(old->peer_urls);
                if (m.peer_urls)
                        (void) kv_members_put(&n->members, &m);
        }
        if (m.id == n->id)
                n->published = true;
        kv_member_done(&m);
        serving_check(n);
}

static void apply_command(KvNode *n, uint64_t origin, uint64_t seq, const void *data, size_t len) {
        KvStoreResult res = KV_STORE_RESULT_NULL;
        KvProposal *p = origin == n->id ? u64map_get(&n->pending, seq) : NULL;
        KvCommand c;
        int r;

        r = kv_command_decode(data, len, &c);
        if (r < 0) {
                /* Every member decodes the same bytes the same way, so skipping keeps them equal. */
                log_warning("Skipping an undecodable command in the log.");
                if (p)
                        proposal_finish(p, NULL, -EBADMSG);
                return;
        }
        r = kv_store_apply(n->store, &c, &res);
        if (r < 0) {
                kv_node_fail(n, r, "applying a command");
                return;
        }
        if (p)
                proposal_finish(p, &res, 0);
        kv_store_result_done(&res);
}

static void apply_entry(KvNode *n, const RaftEntry *e) {
        const uint8_t *d = e->data;

        if (e->type == RAFT_ENTRY_CONF_CHANGE)
                apply_conf_change(n, e);
        else if (e->len >= KV_ENTRY_ENVELOPE && d[0] == KV_ENTRY_COMMAND)
                apply_command(n, get_le64(d + 1), get_le64(d + 9), d + KV_ENTRY_ENVELOPE, e->len - KV_ENTRY_ENVELOPE);
        else if (e->len >= KV_ENTRY_ENVELOPE && d[0] == KV_ENTRY_ATTRIBUTES)
                apply_attributes(n, d + KV_ENTRY_ENVELOPE, e->len - KV_ENTRY_ENVELOPE);
        else if (e->len >= KV_ENTRY_ENVELOPE && d[0] == KV_ENTRY_PEER_URLS)
                apply_peer_urls(n, d + KV_ENTRY_ENVELOPE, e->len - KV_ENTRY_ENVELOPE);
        /* len 0: a new leader's no-op */
        n->applied_index = e->index;
        n->applied_term = e->term;
}

/* ---------------------------------------------------------------- the Ready loop */

static void send_messages(KvNode *n, const RaftReady *rd) {
        n->n_snap_sent = 0;
        for (size_t i = 0; i < rd->n_messages; i++) {
                const RaftMessage *m = &rd->messages[i];
                size_t size = raft_message_encoded_size(m);
                int r;

                buf_clear(&n->scratch);
                r = buf_reserve(&n->scratch, size);
                if (r >= 0)
                        r = raft_message_encode(m, (uint8_t *) n->scratch.data, size);
                if (r >= 0)
                        r = kv_peer_send(n->peers, m->to, n->scratch.data, size);
                if (m->type == RAFT_MSG_APP)
                        n->send_append++;
                if (m->type == RAFT_MSG_SNAP) {
                        uint64_t *t = realloc(n->snap_sent, sizeof(uint64_t) * (n->n_snap_sent + 1));
                        if (t) {
                                n->snap_sent = t;
                                /* The sign bit carries the outcome to report after advance. */
                                n->snap_sent[n->n_snap_sent++] = r >= 0 ? m->to : m->to | (1ULL << 63);
                        }
                }
        }
}

static int persist(KvNode *n, const RaftReady *rd) {
        KvWalEntry stack[64], *e = rd->n_entries <= ELEMENTSOF(stack) ? stack : new0(KvWalEntry, rd->n_entries);
        KvWalHardState hs = { rd->hard_state.term, rd->hard_state.vote, rd->hard_state.commit };
        int r = 0;

        if (!e)
                return -ENOMEM;
        if (rd->snapshot)
                r = kv_node_persist_snapshot(n, rd->snapshot);
        for (size_t i = 0; i < rd->n_entries; i++)
                e[i] = (KvWalEntry) { .index = rd->entries[i].index, .term = rd->entries[i].term,
                                      .type = (uint8_t) rd->entries[i].type, .data = rd->entries[i].data,
                                      .len = rd->entries[i].len };
        if (r >= 0 && (rd->n_entries > 0 || rd->has_hard_state))
                r = kv_wal_append(n->wal, rd->n_entries ? e : NULL, rd->n_entries, rd->has_hard_state ? &hs : NULL);
        if (e != stack)
                free(e);
        /* Group commit: one fdatasync for everything this Ready carries. */
        if (r >= 0 && (rd->must_sync || rd->snapshot))
                r = kv_wal_sync(n->wal);
        if (r >= 0 && rd->n_entries > 0)
                r = raft_memory_storage_append(n->ms, rd->entries, rd->n_entries);
        if (r >= 0 && rd->has_hard_state)
                r = raft_memory_storage_set_hard_state(n->ms, &rd->hard_state);
        return r;
}

static void stop_check(KvNode *n);

/* As etcd's ReadyNotify: a member serves clients once a leader is known and its own client URLs
 * are committed to the member list, so /v2/members never shows it without them (etcdctl v2 syncs
 * its endpoints from that list and gives up on a member with none). */
static void serving_check(KvNode *n) {
        if (n->soft.lead != RAFT_NONE && n->published && n->on_serving) {
                void (*cb)(void *) = n->on_serving;
                n->on_serving = NULL;
                cb(n->serving_userdata);
        }
}

static void on_soft_state(KvNode *n, const RaftSoftState *ss) {
        if (ss->lead != n->soft.lead) {
                if (ss->lead == RAFT_NONE)
                        log_info("Lost the leader (term %" PRIu64 ").", raft_get_hard_state(n->raft).term);
                else
                        log_info("Leader is %" PRIx64 "%s.", ss->lead, ss->lead == n->id ? " (this member)" : "");
                n->leader_since_ns = ss->lead != RAFT_NONE ? kv_node_now_ns() : 0;
        }
        if (ss->lead != RAFT_NONE)
                n->leader_heard_usec = now_usec(CLOCK_MONOTONIC);
        n->soft = *ss;
        serving_check(n);
        stop_check(n);
}

static int process_ready(KvNode *n) {
        while (!n->failed && raft_has_ready(n->raft)) {
                RaftReady rd;
                int r = raft_ready(n->raft, &rd);
                if (r < 0) {
                        kv_node_fail(n, r, "Raft");
                        return r;
                }
                if (rd.has_soft_state)
                        on_soft_state(n, &rd.soft_state);
                r = persist(n, &rd);
                if (r < 0) {
                        kv_node_fail(n, r, "persisting the log");
                        return r;
                }
                send_messages(n, &rd);
                /* A snapshot sent above was copied into the peer queue. */
                raft_memory_storage_release_snapshot_data(n->ms);
                if (rd.snapshot && kv_node_restore_snapshot(n, rd.snapshot) < 0) {
                        kv_node_fail(n, -EBADMSG, "restoring a snapshot");
                        return -EBADMSG;
                }
                for (size_t i = 0; i < rd.n_committed_entries && !n->failed; i++)
                        apply_entry(n, &rd.committed_entries[i]);
                for (size_t i = 0; i < rd.n_read_states; i++) {
                        KvProposal *p;
                        if (rd.read_states[i].ctx_len != 8)
                                continue;
                        p = u64map_get(&n->pending, get_le64(rd.read_states[i].ctx));
                        if (p && p->is_read) {
                                p->read_index = rd.read_states[i].index;
                                p->state = PROPOSAL_READ_READY;
                        }
                }
                r = raft_advance(n->raft, &rd);
                if (r < 0) {
                        kv_node_fail(n, r, "Raft advance");
                        return r;
                }
                for (size_t i = 0; i < n->n_snap_sent; i++)
                        (void) raft_report_snapshot(n->raft, n->snap_sent[i] & ~(1ULL << 63), !(n->snap_sent[i] >> 63));
                n->n_snap_sent = 0;
        }
        if (!n->failed && kv_node_maybe_snapshot(n) < 0)
                kv_node_fail(n, -EIO, "taking a snapshot");
        proposals_check(n);
        return 0;
}

static int on_ready(sd_event_source *s, void *userdata) {
        KvNode *n = userdata;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        (void) process_ready(n);
        return 0;
}

static void kick(KvNode *n) {
        (void) sd_event_source_set_enabled(n->ready, SD_EVENT_ON);
}

/* ---------------------------------------------------------------- periodic duties */

static void publish_attributes(KvNode *n) {
        _cleanup_(buf_done) Buf b = BUF_INIT(0);
        const KvMember *self = kv_members_find(&n->members, n->id);
        KvMember m = { .id = n->id, .name = (char *) n->cfg->name, .client_urls = n->cfg->advertise_client_urls };
        uint8_t env[KV_ENTRY_ENVELOPE] = { KV_ENTRY_ATTRIBUTES };

        if (self && streq_ptr(self->name, n->cfg->name) && strv_length(self->client_urls) == strv_length(m.client_urls)) {
                bool same = true;
                for (size_t i = 0; self->client_urls[i]; i++)
                        same = same && streq(self->client_urls[i], m.client_urls[i]);
                if (same) {
                        n->published = true;
                        serving_check(n);
                        return;
                }
        }
        m.peer_urls = self ? self->peer_urls : NULL;
        put_le64(env + 1, n->id);
        if (buf_append(&b, env, sizeof(env)) >= 0 && kv_member_encode(&m, &b) >= 0)
                (void) raft_propose(n->raft, b.data, b.len);
}

static void leader_duties(KvNode *n, usec_t now) {
        int64_t next;

        /* Expiry is decided by the leader's clock and replicated, as in etcd. */
        if (now >= n->next_sync_usec && kv_store_next_expiration(n->store, &next) >= 0 && next <= kv_node_now_ns()) {
                _cleanup_(buf_done) Buf b = BUF_INIT(0);
                uint8_t env[KV_ENTRY_ENVELOPE] = { KV_ENTRY_COMMAND };
                KvCommand sync = { .method = KV_METHOD_SYNC, .path = "/", .time_ns = kv_node_now_ns() };

                put_le64(env + 1, n->id);
                if (buf_append(&b, env, sizeof(env)) >= 0 && kv_command_encode(&sync, &b) >= 0)
                        (void) raft_propose(n->raft, b.data, b.len);
                n->next_sync_usec = now + KV_SYNC_INTERVAL;
        }
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        KvNode *n = userdata;
        usec_t now = now_usec(CLOCK_MONOTONIC);

        if (n->failed)
                return 0;
        (void) raft_tick(n->raft);
        if (kv_node_snapshot_poll(n) < 0)
                kv_node_fail(n, -EIO, "recording a snapshot");
        RaftSoftState ss = raft_soft_state(n->raft);
        on_soft_state(n, &ss);
        /* Every member pings every peer: round-trip statistics, and proof of life for the checks
         * of membership changes, which any member may be asked to make. */
        if (now >= n->next_ping_usec) {
                kv_peer_ping_all(n->peers);
                n->next_ping_usec = now + KV_PING_INTERVAL;
        }
        if (n->soft.role == RAFT_LEADER) {
                leader_duties(n, now);
                promote_learners(n, now);
        }
        if (!n->published && n->soft.lead != RAFT_NONE && now >= n->next_publish_usec) {
                publish_attributes(n);
                n->next_publish_usec = now + KV_PUBLISH_RETRY;
        }
        stop_check(n);
        kick(n);
        return sd_event_source_set_time_relative(s, n->cfg->heartbeat_interval_usec);
}

/* ---------------------------------------------------------------- transport */

static void on_peer_message(uint64_t from, const void *data, size_t len, void *userdata) {
        KvNode *n = userdata;
        RaftMessage m;
        int r;

        if (n->failed)
                return;
        r = raft_message_decode(data, len, NULL, &m);
        if (r < 0) {
                log_debug("Dropping an undecodable message from %" PRIx64 ".", from);
                return;
        }
        if (m.from != from)
                log_debug("Dropping a message claiming to be from %" PRIx64 " on %" PRIx64 "'s connection.", m.from, from);
        else if (n->stopping && m.type == RAFT_MSG_TIMEOUT_NOW)
                /* A leader handing over to a member that is itself stopping (the whole cluster
                 * stops at once): refuse, so the leadership does not bounce back and forth. */
                log_debug("Stopping: not taking leadership from %" PRIx64 ".", from);
        else {
                if (m.type == RAFT_MSG_APP)
                        n->recv_append++;
                r = raft_step(n->raft, &m);
                if (r < 0 && r != -ENOENT)
                        log_debug_errno(r, "Raft refused a %s from %" PRIx64 ": %m", raft_message_type_to_string(m.type), from);
        }
        raft_message_free_contents(&m, NULL);
        kick(n);
}

static void on_peer_status(uint64_t peer, bool reachable, void *userdata) {
        KvNode *n = userdata;

        if (!reachable && !n->failed) {
                (void) raft_report_unreachable(n->raft, peer);
                /* The member taking over went away: stop without waiting for the deadline. */
                if (n->stop_cb && peer == n->stop_transferee)
                        n->stop_deadline_usec = 0;
                kick(n);
        }
}

/* ---------------------------------------------------------------- stopping */

static void stop_done(KvNode *n) {
        void (*cb)(void *) = n->stop_cb;
        void *u = n->stop_userdata;

        n->stop_cb = NULL;
        n->stop_deadline_usec = 0;
        if (cb)
                cb(u);
}

/* Called on every tick and leader change while stopping: done once another member leads, or the
 * one taking over went away, or time is up. */
static void stop_check(KvNode *n) {
        if (!n->stop_cb)
                return;
        if (n->soft.lead != n->id || now_usec(CLOCK_MONOTONIC) >= n->stop_deadline_usec)
                stop_done(n);
}

int kv_node_stop(KvNode *n, void (*done)(void *userdata), void *userdata) {
        RaftStatus *st;
        uint64_t best = RAFT_NONE, best_match = 0;

        n->stopping = true;
        n->stop_cb = done;
        n->stop_userdata = userdata;
        n->stop_deadline_usec = now_usec(CLOCK_MONOTONIC) + 2 * n->cfg->election_timeout_usec;
        if (n->failed || n->soft.role != RAFT_LEADER) {
                stop_done(n);
                return 0;
        }
        st = new0(RaftStatus, 1);
        if (!st) {
                stop_done(n);
                return -ENOMEM;
        }
        raft_status(n->raft, st);
        for (size_t i = 0; i < st->n_peers; i++) {
                KvPeerStats ps;
                /* Only a member we are connected to can take over now. */
                if (st->peers[i].id == n->id || st->peers[i].is_learner ||
                    kv_peer_stats(n->peers, st->peers[i].id, &ps) < 0 || !ps.reachable)
                        continue;
                if (st->peers[i].match >= best_match) {
                        best = st->peers[i].id;
                        best_match = st->peers[i].match;
                }
        }
        free(st);
        if (best == RAFT_NONE) {
                stop_done(n);
                return 0;
        }
        n->stop_transferee = best;
        log_info("Handing leadership to %" PRIx64 " before stopping.", best);
        (void) raft_transfer_leader(n->raft, best);
        kick(n);
        return 1;
}

/* ---------------------------------------------------------------- life cycle */

/* A removed member that did not hear of its removal (the leader stopped sending to it before it
 * committed) learns it when it dials us. */
static bool on_is_removed(uint64_t id, void *userdata) {
        KvNode *n = userdata;
        for (size_t i = 0; i < n->n_removed; i++)
                if (n->removed[i] == id)
                        return true;
        return false;
}

static void on_removed(uint64_t by, void *userdata) {
        KvNode *n = userdata;
        log_error("Member %" PRIx64 " says this member was removed from the cluster.", by);
        kv_node_fail(n, -EIDRM, "this member was removed from the cluster");
}

/* A member joining with --initial-cluster-state existing asks who is in the cluster. */
static int on_members_query(Buf *out, void *userdata) {
        KvNode *n = userdata;
        return kv_members_encode(&n->members, out);
}

static uint64_t raft_random(void *userdata) {
        return random_u64();
}

int kv_node_new(KvNode **ret, sd_event *e, const KvConfig *cfg) {
        _cleanup_(kv_node_freep) KvNode *n = NULL;
        RaftStorage storage;
        RaftConfig rc;
        KvPeerConfig pc;
        int r;

        n = new0(KvNode, 1);
        if (!n)
                return log_oom();
        n->event = sd_event_ref(e);
        n->cfg = cfg;
        n->scratch = BUF_INIT(0);
        n->start_time_ns = kv_node_now_ns();
        /* etcd: request timeout = 5 s + 2 election timeouts. */
        n->request_timeout_usec = 5 * USEC_PER_SEC + 2 * cfg->election_timeout_usec;
        if (asprintf(&n->wal_dir, "%s/member/wal", cfg->data_dir) < 0 ||
            asprintf(&n->snap_dir, "%s/member/snap", cfg->data_dir) < 0)
                return log_oom();
        r = kv_store_new(&n->store);
        if (r >= 0)
                r = raft_memory_storage_new(&n->ms, NULL);
        if (r < 0)
                return log_oom();
        raft_memory_storage_set_snapshot_loader(n->ms, kv_node_load_snapshot, n);
        r = kv_node_storage_open(n);
        if (r < 0)
                return r;

        pc = (KvPeerConfig) { .cluster_id = n->cluster_id, .self_id = n->id, .on_receive = on_peer_message,
                              .on_status = on_peer_status, .get_members = on_members_query, .is_removed = on_is_removed,
                              .on_removed = on_removed, .userdata = n };
        r = kv_peer_new(&n->peers, e, &pc);
        if (r < 0)
                return log_oom();
        STRV_FOREACH(u, cfg->listen_peer_urls) {
                r = kv_peer_listen(n->peers, *u);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen for peers on %s: %m", *u);
        }
        for (size_t i = 0; i < n->members.n; i++) {
                const KvMember *m = &n->members.members[i];
                if (m->id != n->id && strv_length(m->peer_urls) > 0)
                        (void) kv_peer_add(n->peers, m->id, m->peer_urls[0]);
        }

        raft_memory_storage_get(n->ms, &storage);
        rc = (RaftConfig) {
                .id = n->id,
                .election_tick = (unsigned) MAX((usec_t) 2, cfg->election_timeout_usec / cfg->heartbeat_interval_usec),
                .heartbeat_tick = 1,
                .applied = n->applied_index,
                .max_size_per_msg = KV_MAX_MSG_SIZE,
                .max_inflight_msgs = KV_MAX_INFLIGHT,
                .max_uncommitted_entries_size = KV_MAX_UNCOMMITTED,
                .pre_vote = true,
                .check_quorum = true,
                .random = raft_random,
        };
        r = raft_new(&n->raft, &rc, &storage);
        if (r < 0)
                return log_error_errno(r, "Failed to start Raft: %m");
        n->soft = raft_soft_state(n->raft);

        r = sd_event_add_defer(e, &n->ready, on_ready, n);
        /* The Ready loop and ticks run before client I/O, like peer traffic (kv-peer.h). */
        if (r >= 0)
                r = sd_event_source_set_priority(n->ready, KV_PEER_PRIORITY);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &n->tick, CLOCK_MONOTONIC, cfg->heartbeat_interval_usec,
                                               cfg->heartbeat_interval_usec / 10, on_tick, n);
        if (r >= 0)
                r = sd_event_source_set_priority(n->tick, KV_PEER_PRIORITY);
        if (r >= 0)
                r = sd_event_source_set_enabled(n->tick, SD_EVENT_ON);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        /* A single-member cluster elects itself at once. Otherwise fast-forward the election
         * clock (etcd's --initial-election-tick-advance): a cluster started or restarted as a
         * whole elects a leader after a couple of ticks instead of a full election timeout. A
         * member restarting into a running cluster hears from its leader first, and pre-vote
         * keeps it from disturbing that leader either way. */
        if (n->conf_state.n_voters == 1 && n->conf_state.voters[0] == n->id)
                (void) raft_campaign(n->raft);
        else
                for (unsigned i = 2; i < rc.election_tick; i++)
                        (void) raft_tick(n->raft);
        *ret = TAKE_PTR(n);
        return 0;
}

KvNode *kv_node_free(KvNode *n) {
        if (!n)
                return NULL;
        while (n->fifo)
                proposal_finish(n->fifo, NULL, -ECANCELED);
        change_finish(n, -ECANCELED);
        u64map_done(&n->pending);
        sd_event_source_disable_unref(n->tick);
        sd_event_source_disable_unref(n->ready);
        kv_peer_free(n->peers);
        kv_node_snapshot_abandon(n);
        raft_free(n->raft);
        raft_memory_storage_free(n->ms);
        kv_wal_free(n->wal);
        kv_store_free(n->store);
        kv_members_done(&n->members);
        buf_done(&n->scratch);
        free(n->snap_sent);
        free(n->wal_dir);
        free(n->snap_dir);
        sd_event_unref(n->event);
        free(n);
        return NULL;
}

/* ---------------------------------------------------------------- accessors and stats */

KvStore *kv_node_store(KvNode *n) {
        return n->store;
}

const KvMembers *kv_node_members(KvNode *n) {
        return &n->members;
}

void kv_node_on_serving(KvNode *n, void (*cb)(void *userdata), void *userdata) {
        n->on_serving = cb;
        n->serving_userdata = userdata;
}

void kv_node_on_fatal(KvNode *n, void (*cb)(int error, void *userdata), void *userdata) {
        n->on_fatal = cb;
        n->fatal_userdata = userdata;
}

void kv_node_status(KvNode *n, KvNodeStatus *ret) {
        RaftHardState hs = raft_get_hard_state(n->raft);

        *ret = (KvNodeStatus) {
                .id = n->id,
                .cluster_id = n->cluster_id,
                .leader = n->soft.lead,
                .role = n->soft.role,
                .term = hs.term,
                .applied_index = n->applied_index,
                .commit_index = hs.commit,
                .snapshot_index = n->snapshot_index,
                .pending = u64map_size(&n->pending),
                .start_time_ns = n->start_time_ns,
                .leader_since_ns = n->leader_since_ns,
        };
}

bool kv_node_published(KvNode *n) {
        return n->published;
}

bool kv_node_has_leader(KvNode *n) {
        return !n->failed && n->soft.lead != RAFT_NONE &&
               now_usec(CLOCK_MONOTONIC) - n->leader_heard_usec <= n->cfg->election_timeout_usec;
}

static int render_time(Buf *out, int64_t ns) {
        time_t s = (time_t) (ns / 1000000000);
        struct tm tm;
        char b[32];

        if (!gmtime_r(&s, &tm))
                return -EINVAL;
        (void) strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
        return buf_printf(out, "\"%s.%09lldZ\"", b, (long long) (ns % 1000000000));
}

static int render_duration(Buf *out, int64_t ns) {
        int64_t s = ns / 1000000000, frac = ns % 1000000000;
        if (s >= 3600)
                return buf_printf(out, "\"%lldh%lldm%lld.%09llds\"", (long long) (s / 3600), (long long) (s / 60 % 60),
                                  (long long) (s % 60), (long long) frac);
        if (s >= 60)
                return buf_printf(out, "\"%lldm%lld.%09llds\"", (long long) (s / 60), (long long) (s % 60), (long long) frac);
        return buf_printf(out, "\"%lld.%09llds\"", (long long) s, (long long) frac);
}

int kv_node_render_self_stats(KvNode *n, Buf *out) {
        static const char *const states[] = { [RAFT_FOLLOWER] = "StateFollower", [RAFT_CANDIDATE] = "StateCandidate",
                                              [RAFT_LEADER] = "StateLeader", [RAFT_PRE_CANDIDATE] = "StateCandidate" };
        int r = buf_printf(out, "{\"name\":\"%s\",\"id\":\"%" PRIx64 "\",\"state\":\"%s\",\"startTime\":", n->cfg->name, n->id,
                           states[n->soft.role]);
        if (r >= 0)
                r = render_time(out, n->start_time_ns);
        if (r >= 0)
                r = buf_printf(out, ",\"leaderInfo\":{\"leader\":\"%" PRIx64 "\",\"uptime\":", n->soft.lead);
        if (r >= 0)
                r = render_duration(out, n->leader_since_ns ? kv_node_now_ns() - n->leader_since_ns : 0);
        if (r >= 0)
                r = buf_append_str(out, ",\"startTime\":");
        if (r >= 0)
                r = render_time(out, n->leader_since_ns ?: n->start_time_ns);
        if (r >= 0)
                r = buf_printf(out, "},\"recvAppendRequestCnt\":%" PRIu64 ",\"sendAppendRequestCnt\":%" PRIu64 "}",
                               n->recv_append, n->send_append);
        return r;
}

int kv_node_render_leader_stats(KvNode *n, Buf *out) {
        bool first = true;
        int r;

        if (n->soft.role != RAFT_LEADER)
                return -EPERM;
        r = buf_printf(out, "{\"leader\":\"%" PRIx64 "\",\"followers\":{", n->id);
        for (size_t i = 0; i < n->members.n && r >= 0; i++) {
                const KvMember *m = &n->members.members[i];
                KvPeerStats st;
                if (m->id == n->id || kv_peer_stats(n->peers, m->id, &st) < 0)
                        continue;
                r = buf_printf(out, "%s\"%" PRIx64 "\":{\"latency\":{\"current\":%.6f,\"average\":%.6f,"
                               "\"standardDeviation\":%.6f,\"minimum\":%.6f,\"maximum\":%.6f},"
                               "\"counts\":{\"fail\":%" PRIu64 ",\"success\":%" PRIu64 "}}",
                               first ? "" : ",", m->id, st.rtt_last_ms, st.rtt_avg_ms, st.rtt_stddev_ms, st.rtt_min_ms,
                               st.rtt_max_ms, st.messages_dropped, st.messages_sent);
                first = false;
        }
        return r < 0 ? r : buf_append_str(out, "}}");
}
