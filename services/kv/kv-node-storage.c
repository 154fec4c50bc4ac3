/* SPDX-License-Identifier: MIT */
/* A member's durable state: bootstrapping a new cluster, recovering from the WAL and snapshot
 * files on start, persisting snapshots received from the leader and taking our own.
 *
 * Layout, as etcd's: <data-dir>/member/wal (kv-wal.h) and <data-dir>/member/snap (kv-snap.h).
 * A new cluster is bootstrapped by writing a snapshot at index 1, term 1 that lists the initial
 * members, then a WAL whose marker points at it; from there, starting is always recovery. */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kv-join.h"
#include "kv-node-internal.h"
#include "shared/log.h"
#include "shared/unaligned.h"

#define KV_JOIN_TIMEOUT_USEC       (30 * USEC_PER_SEC)  /* asking the others who is in the cluster */
#define KV_JOIN_QUERY_TIMEOUT_USEC (2 * USEC_PER_SEC)   /* one of them */
#define KV_PROBE_TIMEOUT_USEC      (1 * USEC_PER_SEC)   /* is there a cluster that knows us already? */

int kv_conf_state_encode(const RaftConfState *cs, Buf *out) {
        uint8_t b[8];
        int r;

        put_le32(b, cs->n_voters);
        r = buf_append(out, b, 4);
        for (uint32_t i = 0; i < cs->n_voters && r >= 0; i++) {
                put_le64(b, cs->voters[i]);
                r = buf_append(out, b, 8);
        }
        put_le32(b, cs->n_learners);
        if (r >= 0)
                r = buf_append(out, b, 4);
        for (uint32_t i = 0; i < cs->n_learners && r >= 0; i++) {
                put_le64(b, cs->learners[i]);
                r = buf_append(out, b, 8);
        }
        return r;
}

int kv_conf_state_decode(const void *data, size_t len, RaftConfState *ret) {
        const uint8_t *p = data;
        RaftConfState cs = {};
        size_t off = 0;

        if (len < 4)
                return -EBADMSG;
        cs.n_voters = get_le32(p);
        off = 4;
        if (cs.n_voters > RAFT_MAX_VOTERS || len < off + 8 * (size_t) cs.n_voters + 4)
                return -EBADMSG;
        for (uint32_t i = 0; i < cs.n_voters; i++, off += 8)
                cs.voters[i] = get_le64(p + off);
        cs.n_learners = get_le32(p + off);
        off += 4;
        if (cs.n_learners > RAFT_MAX_LEARNERS || len != off + 8 * (size_t) cs.n_learners)
                return -EBADMSG;
        for (uint32_t i = 0; i < cs.n_learners; i++, off += 8)
                cs.learners[i] = get_le64(p + off);
        if (raft_conf_state_validate(&cs) < 0)
                return -EBADMSG;
        *ret = cs;
        return 0;
}

/* Snapshot data: what a member needs besides Raft's metadata to become this state machine. */
static int snapshot_data_build(const KvMembers *members, KvStore *store, Buf *out) {
        uint8_t head[12];
        size_t mark;
        int r;

        memcpy(head, KV_SNAP_MAGIC, 4);
        put_le32(head + 4, KV_SNAP_VERSION);
        r = buf_append(out, head, 12);
        mark = out->len;
        if (r >= 0)
                r = kv_members_encode(members, out);
        if (r >= 0)
                put_le32((uint8_t *) out->data + mark - 4, (uint32_t) (out->len - mark));
        if (r >= 0)
                r = kv_store_save(store, out);
        return r;
}

int kv_snapshot_data_parse(const void *data, size_t len, KvMembers *ret_members, const void **ret_store,
                           size_t *ret_store_len) {
        const uint8_t *p = data;
        uint32_t mlen;

        if (len < 12 || memcmp(p, KV_SNAP_MAGIC, 4) != 0)
                return -EBADMSG;
        if (get_le32(p + 4) != KV_SNAP_VERSION)
                return -EPROTO;
        mlen = get_le32(p + 8);
        if (mlen > len - 12)
                return -EBADMSG;
        if (kv_members_decode(p + 12, mlen, ret_members) < 0)
                return -EBADMSG;
        *ret_store = p + 12 + mlen;
        *ret_store_len = len - 12 - mlen;
        return 0;
}

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        if (mkdir(p, 0700) < 0 && errno != EEXIST)
                                return -errno;
                        *s = '/';
                }
        return mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

static int save_snapshot_file(KvNode *n, uint64_t index, uint64_t term, const RaftConfState *cs, const void *data,
                              size_t len) {
        _cleanup_(buf_done) Buf conf = BUF_INIT(0);
        KvWalSnapshotMeta meta = { .index = index, .term = term };
        KvSnapWriter *w = NULL;
        int r;

        r = kv_conf_state_encode(cs, &conf);
        if (r < 0)
                return r;
        meta.conf_state = conf.data;
        meta.conf_state_len = conf.len;
        r = kv_snap_writer_new(n->snap_dir, &meta, &w);
        if (r >= 0)
                r = kv_snap_writer_write(w, data, len);
        if (r >= 0)
                r = kv_snap_writer_commit(w, (unsigned) n->cfg->max_snapshots);
        kv_snap_writer_free(w);
        return r;
}

/* Client URLs of the members other than the one with id 'except'. */
static char **client_urls_of(const KvMembers *ms, uint64_t except) {
        char **l = NULL;

        for (size_t i = 0; i < ms->n; i++)
                if (ms->members[i].id != except)
                        STRV_FOREACH(u, ms->members[i].client_urls)
                                if (strv_extend(&l, *u) < 0)
                                        return strv_free(l);
        return l;
}

static bool is_own_peer_url(KvNode *n, const char *url) {
        STRV_FOREACH(u, n->cfg->initial_advertise_peer_urls)
                if (streq(*u, url))
                        return true;
        return false;
}

/* This member lost its data directory but the cluster remembers it: it had published its client
 * URLs, which only a running member does. Coming back under the old identity with an empty log
 * would let it vote twice in a term, so it leaves as the old member and joins as a new one. */
static int replace_lost_self(KvNode *n, const KvMembers *members, const KvMember *old) {
        _cleanup_strv_free_ char **urls = client_urls_of(members, old->id);
        usec_t deadline = usec_add(now_usec(CLOCK_MONOTONIC), KV_JOIN_TIMEOUT_USEC);
        uint64_t id;
        int r;

        if (strv_length(urls) == 0)
                return log_error_errno(SYNTHETIC_ERRNO(EHOSTUNREACH),
                                       "Member %" PRIx64 " (%s) lost its data, and no other member has a client URL to "
                                       "replace it through.", old->id, strna(old->name));
        log_warning("The cluster knows this member as %" PRIx64 " (%s), but %s is empty: the data was lost. Replacing "
                    "the old member by a new one.", old->id, strna(old->name), n->cfg->data_dir);
        r = kv_join_remove(urls, old->id, deadline);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Cannot remove the old member %" PRIx64 ": %m", old->id);
        r = kv_join_add(urls, n->cfg->initial_advertise_peer_urls, deadline, &id);
        if (r < 0)
                return log_error_errno(r, "Cannot add this member again: %m");
        log_info("Removed member %" PRIx64 " and added this member as %" PRIx64 ".", old->id, id);
        return 0;
}

/* Asks the members at 'ask' (peer URLs) who is in the cluster, and finds this member in the
 * answer by its advertised peer URL: it must have been added (POST /v2/members) first. Fills
 * n->members; sets n->id and n->cluster_id, or checks them against the ones recovered from the
 * WAL. Members are asked in turn until one answers or time is up. */
static int query_membership(KvNode *n, char *const *ask, bool just_added) {
        usec_t deadline = usec_add(now_usec(CLOCK_MONOTONIC), KV_JOIN_TIMEOUT_USEC);
        bool replaced = false;
        int r, last = -EHOSTUNREACH;

        for (unsigned attempt = 0; now_usec(CLOCK_MONOTONIC) < deadline; attempt++) {
                STRV_FOREACH(url, ask) {
                        _cleanup_free_ void *data = NULL;
                        KvMembers members = {};
                        const KvMember *self = NULL;
                        uint64_t cluster_id, peer_id;
                        size_t len;

                        if (is_own_peer_url(n, *url))
                                continue;
                        r = kv_peer_query_members(*url, KV_JOIN_QUERY_TIMEOUT_USEC, &cluster_id, &peer_id, &data, &len);
                        if (r >= 0)
                                r = kv_members_decode(data, len, &members);
                        if (r < 0) {
                                if (attempt == 0 || r != last)
                                        log_warning_errno(r, "Cannot learn the cluster's members from %s: %m", *url);
                                last = r;
                                continue;
                        }
                        for (size_t j = 0; j < members.n && !self; j++)
                                if (strv_length(members.members[j].peer_urls) > 0 &&
                                    is_own_peer_url(n, members.members[j].peer_urls[0]))
                                        self = &members.members[j];
                        if (!self && (replaced || just_added)) {
                                /* Added a moment ago: this member has not applied it yet. */
                                kv_members_done(&members);
                                last = -ENOENT;
                                continue;
                        }
                        if (!self) {
                                kv_members_done(&members);
                                return log_error_errno(SYNTHETIC_ERRNO(ENOENT),
                                                       "Cluster %" PRIx64 " has no member with peer URL %s: add this member "
                                                       "first (flotillactl kv member add %s %s), start it with --join, or "
                                                       "start it with --initial-cluster-state new.", cluster_id,
                                                       n->cfg->initial_advertise_peer_urls[0], n->cfg->name,
                                                       n->cfg->initial_advertise_peer_urls[0]);
                        }
                        if (n->cluster_id == 0 && strv_length(self->client_urls) > 0 && !replaced) {
                                r = replace_lost_self(n, &members, self);
                                kv_members_done(&members);
                                if (r < 0)
                                        return r;
                                replaced = true;
                                goto again;
                        }
                        if (n->cluster_id != 0 && (n->cluster_id != cluster_id || n->id != self->id)) {
                                kv_members_done(&members);
                                return log_error_errno(SYNTHETIC_ERRNO(EPROTO),
                                                       "%s belongs to member %" PRIx64 " of cluster %" PRIx64 ", but the cluster "
                                                       "now knows this peer URL as member %" PRIx64 " of cluster %" PRIx64 ".",
                                                       n->cfg->data_dir, n->id, n->cluster_id, self->id, cluster_id);
                        }
                        n->id = self->id;
                        n->cluster_id = cluster_id;
                        kv_members_done(&n->members);
                        n->members = members;
                        log_info("Joining cluster %" PRIx64 " as member %" PRIx64 " (%zu members, learned from %" PRIx64 " at %s).",
                                 cluster_id, n->id, members.n, peer_id, *url);
                        return 0;
                }
                (void) usleep(200 * USEC_PER_MSEC);
        again:;
        }
        return log_error_errno(last, "No member told this member about the cluster: %m");
}

/* The peer URLs of --initial-cluster. */
static int initial_peer_urls(KvNode *n, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        KvMember *m = NULL;
        size_t nm = 0;
        int r;

        r = kv_config_initial_members(n->cfg, &m, &nm);
        if (r < 0)
                return r;
        for (size_t i = 0; i < nm && r >= 0; i++)
                STRV_FOREACH(u, m[i].peer_urls)
                        if (r >= 0)
                                r = strv_extend(&l, *u);
        kv_members_free(m, nm);
        if (r < 0)
                return log_oom();
        *ret = TAKE_PTR(l);
        return 0;
}

/* Whom to ask about the cluster: the members the --join URLs list (their peer URLs), or the
 * members of --initial-cluster. */
static int peers_to_ask(KvNode *n, KvMembers *ret_members, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        KvMembers ms = {};
        int r;

        if (strv_length(n->cfg->join) == 0)
                return initial_peer_urls(n, ret);
        r = kv_join_fetch_members(n->cfg->join, usec_add(now_usec(CLOCK_MONOTONIC), KV_JOIN_TIMEOUT_USEC), &ms);
        if (r < 0)
                return log_error_errno(r, "None of the --join URLs told this member about the cluster: %m");
        for (size_t i = 0; i < ms.n && r >= 0; i++)
                STRV_FOREACH(u, ms.members[i].peer_urls)
                        if (r >= 0)
                                r = strv_extend(&l, *u);
        if (r < 0 || !ret_members)
                kv_members_done(&ms);
        else
                *ret_members = ms;
        if (r < 0)
                return log_oom();
        *ret = TAKE_PTR(l);
        return 0;
}

/* --join on an empty data directory: add this member through the client API, unless it is
 * already there (added by hand, or a previous start got this far). A published member of the
 * same name at another peer URL is this host's previous incarnation if it no longer answers. */
static int join_add_self(KvNode *n, const KvMembers *ms) {
        usec_t deadline = usec_add(now_usec(CLOCK_MONOTONIC), KV_JOIN_TIMEOUT_USEC);
        const KvMember *same_url = NULL, *same_name = NULL;
        uint64_t id;
        int r;

        for (size_t i = 0; i < ms->n; i++) {
                const KvMember *m = &ms->members[i];
                if (strv_length(m->peer_urls) > 0 && is_own_peer_url(n, m->peer_urls[0]))
                        same_url = m;
                else if (streq_ptr(m->name, n->cfg->name))
                        same_name = m;
        }
        if (same_url)
                return 0;       /* query_membership() replaces it if it was a lost incarnation */
        if (same_name && strv_length(same_name->client_urls) > 0) {
                _cleanup_free_ void *data = NULL;
                uint64_t cid, pid;
                size_t len;

                if (kv_peer_query_members(same_name->peer_urls[0], KV_JOIN_QUERY_TIMEOUT_USEC, &cid, &pid, &data, &len) >= 0)
                        return log_error_errno(SYNTHETIC_ERRNO(EEXIST),
                                               "Member %" PRIx64 " is called %s too, and it is running at %s: choose "
                                               "another --name.", same_name->id, n->cfg->name, same_name->peer_urls[0]);
                r = replace_lost_self(n, ms, same_name);
                return r < 0 ? r : 1;
        }
        r = kv_join_add(n->cfg->join, n->cfg->initial_advertise_peer_urls, deadline, &id);
        if (r < 0)
                return r;
        log_info("Added this member to the cluster as %" PRIx64 " through %s.", id, n->cfg->join[0]);
        return 1;
}

/* --initial-cluster-state existing and no data: this member was added to a running cluster and
 * joins it with an empty log; the leader sends it a snapshot, then entries. */
static int wal_create(KvNode *n) {
        uint8_t meta[KV_META_SIZE];
        int r;

        memcpy(meta, KV_META_MAGIC, 4);
        put_le32(meta + 4, KV_META_VERSION);
        put_le64(meta + 8, n->id);
        put_le64(meta + 16, n->cluster_id);
        r = kv_wal_create(n->wal_dir, meta, sizeof(meta));
        if (r < 0)
                return log_error_errno(r, "Failed to create the WAL in %s: %m", n->wal_dir);
        return 0;
}

static int join(KvNode *n) {
        _cleanup_strv_free_ char **ask = NULL;
        KvMembers ms = {};
        int r;

        r = peers_to_ask(n, &ms, &ask);
        if (r >= 0 && strv_length(n->cfg->join) > 0)
                r = join_add_self(n, &ms);
        kv_members_done(&ms);
        if (r >= 0)
                r = query_membership(n, ask, r > 0);
        return r < 0 ? r : wal_create(n);
}

/* --initial-cluster-state new on an empty data directory, but the other members already run
 * a cluster that knows this member as one that ran (it published its client URLs): its data
 * was lost. Returns 1 when it should join as a replacement, 0 to bootstrap. One quick round:
 * when nobody answers, this is an ordinary first start. */
static int lost_data_probe(KvNode *n) {
        _cleanup_strv_free_ char **ask = NULL;
        int r, lost = 0;

        r = initial_peer_urls(n, &ask);
        if (r < 0)
                return r;
        STRV_FOREACH(url, ask) {
                _cleanup_free_ void *data = NULL;
                KvMembers ms = {};
                uint64_t cid, pid;
                size_t len;

                if (is_own_peer_url(n, *url) ||
                    kv_peer_query_members(*url, KV_PROBE_TIMEOUT_USEC, &cid, &pid, &data, &len) < 0 ||
                    kv_members_decode(data, len, &ms) < 0)
                        continue;
                for (size_t i = 0; i < ms.n; i++)
                        if (strv_length(ms.members[i].peer_urls) > 0 && is_own_peer_url(n, ms.members[i].peer_urls[0]) &&
                            strv_length(ms.members[i].client_urls) > 0)
                                lost = 1;
                kv_members_done(&ms);
                if (lost)
                        break;
        }
        return lost;
}

/* A new cluster: a snapshot at index 1 naming the initial members, and a WAL pointing at it. */
static int bootstrap(KvNode *n) {
        _cleanup_(kv_store_freep) KvStore *store = NULL;
        _cleanup_(buf_done) Buf data = BUF_INIT(0);
        KvWalHardState hs = { .term = 1, .commit = 1 };
        KvMembers members = {};
        KvMember *m = NULL;
        uint64_t ids[KV_MEMBERS_MAX];
        RaftConfState cs = {};
        KvWal *wal = NULL;
        size_t nm = 0;
        int r;

        if (n->cfg->initial_cluster_state == KV_CLUSTER_EXISTING || strv_length(n->cfg->join) > 0)
                return join(n);
        r = lost_data_probe(n);
        if (r < 0)
                return r;
        if (r > 0)
                return join(n);
        r = kv_config_initial_members(n->cfg, &m, &nm);
        if (r < 0)
                return r;
        if (nm > RAFT_MAX_VOTERS) {
                kv_members_free(m, nm);
                return log_error_errno(SYNTHETIC_ERRNO(E2BIG), "--initial-cluster: at most %d members", RAFT_MAX_VOTERS);
        }
        for (size_t i = 0; i < nm; i++) {
                ids[i] = m[i].id;
                cs.voters[cs.n_voters++] = m[i].id; /* sorted by id already */
                if (streq(m[i].name, n->cfg->name))
                        n->id = m[i].id;
                r = kv_members_put(&members, &m[i]);
                if (r < 0)
                        break;
        }
        n->cluster_id = kv_cluster_id(ids, nm);
        kv_members_free(m, nm);
        if (r >= 0)
                r = kv_store_new(&store);
        if (r >= 0)
                r = snapshot_data_build(&members, store, &data);
        kv_members_done(&members);
        if (r < 0)
                return log_error_errno(r, "Failed to build the bootstrap snapshot: %m");

        r = save_snapshot_file(n, 1, 1, &cs, data.data, data.len);
        if (r < 0)
                return log_error_errno(r, "Failed to write the bootstrap snapshot in %s: %m", n->snap_dir);
        r = wal_create(n);
        if (r < 0)
                return r;
        r = kv_wal_open(n->wal_dir, NULL, &wal, NULL);
        if (r >= 0)
                r = kv_wal_mark_snapshot(wal, 1, 1);
        if (r >= 0)
                r = kv_wal_append(wal, NULL, 0, &hs);
        if (r >= 0)
                r = kv_wal_sync(wal);
        kv_wal_free(wal);
        if (r < 0)
                return log_error_errno(r, "Failed to write the bootstrap WAL records in %s: %m", n->wal_dir);
        log_info("Bootstrapped member %" PRIx64 " of new cluster %" PRIx64 " in %s.", n->id, n->cluster_id,
                 n->cfg->data_dir);
        return 0;
}

static void sync_transport(KvNode *n) {
        for (size_t i = 0; i < n->members.n; i++) {
                const KvMember *m = &n->members.members[i];
                if (m->id != n->id && strv_length(m->peer_urls) > 0)
                        (void) kv_peer_add(n->peers, m->id, m->peer_urls[0]);
        }
}

static int restore_state(KvNode *n, const void *data, size_t len) {
        KvMembers members = {};
        const void *store;
        size_t store_len;
        int r;

        r = kv_snapshot_data_parse(data, len, &members, &store, &store_len);
        if (r < 0)
                return r;
        r = kv_store_load(n->store, store, store_len);
        if (r < 0) {
                kv_members_done(&members);
                return r;
        }
        kv_members_done(&n->members);
        n->members = members;
        if (n->peers)
                sync_transport(n);
        return 0;
}

int kv_node_storage_open(KvNode *n) {
        KvWalError werr = {};
        KvWalOptions opts = { .error = &werr };
        KvWalState st = {};
        KvWalSnapshotMeta meta;
        void *data = NULL;
        size_t len = 0;
        int r;

        r = mkdir_parents(n->snap_dir);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %m", n->snap_dir);
        r = kv_wal_open(n->wal_dir, &opts, &n->wal, &st);
        if (r == -ENOENT) {
                r = bootstrap(n);
                if (r < 0)
                        return r;
                r = kv_wal_open(n->wal_dir, &opts, &n->wal, &st);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to open the WAL: %s", werr.message[0] ? werr.message : strerror(-r));
        if (st.torn.cut)
                log_warning("Recovered the WAL after a crash: cut %s at byte %" PRIu64 " (%" PRIu64 " bytes of a torn write: %s).",
                            st.torn.file, st.torn.offset, st.torn.dropped, st.torn.reason);
        if (st.metadata_len != KV_META_SIZE || memcmp(st.metadata, KV_META_MAGIC, 4) != 0 ||
            get_le32((uint8_t *) st.metadata + 4) != KV_META_VERSION) {
                kv_wal_state_done(&st);
                return log_error_errno(SYNTHETIC_ERRNO(EPROTO), "%s: not a flotilla-kv WAL (or an unknown version).", n->wal_dir);
        }
        n->id = get_le64((uint8_t *) st.metadata + 8);
        n->cluster_id = get_le64((uint8_t *) st.metadata + 16);

        if (st.snapshot_index > 0) {
                RaftSnapshot snap = {};
                r = kv_snap_load(n->snap_dir, (KvSnapId) { st.snapshot_term, st.snapshot_index }, &meta, &data, &len, &werr);
                if (r < 0) {
                        kv_wal_state_done(&st);
                        return log_error_errno(r, "The WAL needs snapshot %016" PRIx64 "-%016" PRIx64 ".snap: %s",
                                               st.snapshot_term, st.snapshot_index, werr.message[0] ? werr.message : strerror(-r));
                }
                snap.metadata.index = meta.index;
                snap.metadata.term = meta.term;
                r = kv_conf_state_decode(meta.conf_state, meta.conf_state_len, &snap.metadata.conf_state);
                snap.data = data;
                snap.len = len;
                if (r >= 0)
                        r = restore_state(n, data, len);
                if (r >= 0)
                        r = raft_memory_storage_apply_snapshot(n->ms, &snap);
                if (r < 0) {
                        free(data);
                        kv_wal_state_done(&st);
                        return log_error_errno(r, "Snapshot at index %" PRIu64 " is unusable: %m", st.snapshot_index);
                }
                n->conf_state = snap.metadata.conf_state;
                n->applied_index = n->snapshot_index = meta.index;
                n->applied_term = meta.term;
                free(data);
        }
        if (st.n_entries > 0) {
                RaftEntry *e = new0(RaftEntry, st.n_entries);
                if (!e) {
                        kv_wal_state_done(&st);
                        return log_oom();
                }
                for (size_t i = 0; i < st.n_entries; i++)
                        e[i] = (RaftEntry) { .index = st.entries[i].index, .term = st.entries[i].term,
                                             .type = (RaftEntryType) st.entries[i].type, .data = st.entries[i].data,
                                             .len = st.entries[i].len };
                r = raft_memory_storage_append(n->ms, e, st.n_entries);
                free(e);
        }
        if (r >= 0)
                r = raft_memory_storage_set_hard_state(n->ms, &(RaftHardState) { st.hard_state.term, st.hard_state.vote,
                                                                                  st.hard_state.commit });
        if (r >= 0 && st.snapshot_index == 0 && n->members.n == 0) {
                /* Joined, but stopped before the leader's snapshot arrived: ask again who the
                 * others are, or nobody would be dialled. */
                _cleanup_strv_free_ char **ask = NULL;
                r = peers_to_ask(n, NULL, &ask);
                if (r >= 0)
                        r = query_membership(n, ask, false);
                if (r < 0) {
                        kv_wal_state_done(&st);
                        return r;
                }
        }
        log_info("Recovered member %" PRIx64 " of cluster %" PRIx64 ": snapshot at %" PRIu64 ", %zu log entries, term %" PRIu64
                 ", commit %" PRIu64 ".", n->id, n->cluster_id, st.snapshot_index, st.n_entries, st.hard_state.term,
                 st.hard_state.commit);
        kv_wal_state_done(&st);
        if (r < 0)
                return log_error_errno(r, "Failed to load the recovered log: %m");
        return 0;
}

/* Raft's storage keeps only snapshot metadata; the data is read back from the snapshot file when
 * a follower needs it. Keeping it in memory would double the memory of a large store. */
int kv_node_load_snapshot(void *userdata, const RaftSnapshotMeta *meta, void **ret_data, size_t *ret_len) {
        KvNode *n = userdata;
        KvWalSnapshotMeta m;
        KvWalError werr = {};
        int r;

        r = kv_snap_load(n->snap_dir, (KvSnapId) { meta->term, meta->index }, &m, ret_data, ret_len, &werr);
        if (r < 0)
                return log_error_errno(r, "Cannot send snapshot %016" PRIx64 "-%016" PRIx64 ".snap to a follower: %s",
                                       meta->term, meta->index, werr.message[0] ? werr.message : strerror(-r));
        return 0;
}

/* A snapshot from the leader: make it durable before anything that follows it. */
int kv_node_persist_snapshot(KvNode *n, const RaftSnapshot *snap) {
        int r = save_snapshot_file(n, snap->metadata.index, snap->metadata.term, &snap->metadata.conf_state, snap->data,
                                   snap->len);
        if (r < 0)
                return log_error_errno(r, "Failed to save the snapshot received from the leader: %m");
        r = kv_wal_mark_snapshot(n->wal, snap->metadata.index, snap->metadata.term);
        if (r >= 0)
                r = raft_memory_storage_apply_snapshot(n->ms, snap);
        return r;
}

int kv_node_restore_snapshot(KvNode *n, const RaftSnapshot *snap) {
        int r = restore_state(n, snap->data, snap->len);
        if (r < 0)
                return log_error_errno(r, "Failed to restore the snapshot at index %" PRIu64 ": %m", snap->metadata.index);
        n->conf_state = snap->metadata.conf_state;
        n->applied_index = n->snapshot_index = snap->metadata.index;
        n->applied_term = snap->metadata.term;
        log_info("Restored the state machine from a snapshot at index %" PRIu64 ".", snap->metadata.index);
        return 0;
}

/* Writes the snapshot file for the state machine as it is now (applied_index). */
static int snapshot_write(KvNode *n, uint64_t index, uint64_t term, const RaftConfState *cs) {
        _cleanup_(buf_done) Buf data = BUF_INIT(0);
        int r = snapshot_data_build(&n->members, n->store, &data);

        if (r >= 0)
                r = save_snapshot_file(n, index, term, cs, data.data, data.len);
        if (r < 0)
                return log_error_errno(r, "Failed to write the snapshot at index %" PRIu64 ": %m", index);
        return 0;
}

/* The snapshot file is durable: record it (Raft's metadata, the WAL marker), then drop the log
 * and the WAL segments it covers. */
static int snapshot_commit(KvNode *n, uint64_t index, uint64_t term, const RaftConfState *cs, usec_t start) {
        uint64_t keep_from;
        int r;

        if (index <= n->snapshot_index)
                return 0; /* a snapshot from the leader overtook this one while it was written */
        r = raft_memory_storage_create_snapshot(n->ms, index, cs, NULL, 0);
        if (r >= 0)
                r = kv_wal_mark_snapshot(n->wal, index, term);
        if (r < 0)
                return log_error_errno(r, "Failed to record the snapshot at index %" PRIu64 ": %m", index);
        /* Keep some entries in memory so followers a little behind get entries, not a snapshot. */
        keep_from = index > n->cfg->snapshot_catchup_entries ? index - n->cfg->snapshot_catchup_entries : 0;
        if (keep_from > raft_memory_storage_first_index(n->ms))
                (void) raft_memory_storage_compact(n->ms, keep_from);
        r = kv_wal_release_to(n->wal, index);
        if (r < 0)
                return log_error_errno(r, "Failed to release WAL segments before %" PRIu64 ": %m", index);
        n->snapshot_index = index;
        /* The compacted log freed many small blocks; give the memory back to the system. */
        (void) malloc_trim(0);
        log_info("Snapshot at index %" PRIu64 " in %" PRIu64 " ms; released %d WAL segment(s).", index,
                 (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_MSEC, r);
        return 0;
}

/* Snapshots are written by a forked child, as Redis writes its RDB files: the child sees the
 * store as it was at the fork (copy-on-write), serializes it and makes the file durable while
 * this process goes on replicating, applying and answering. Written in the event loop, a store
 * of 100,000 keys held everything up for about 180 ms. The member records the snapshot only
 * when the child has exited successfully (kv_node_snapshot_poll()). */
int kv_node_maybe_snapshot(KvNode *n) {
        uint64_t index = n->applied_index, term = n->applied_term;
        pid_t parent, pid;
        usec_t now;

        if (n->snap_pid > 0 || index < n->snapshot_index + n->cfg->snapshot_count)
                return 0;
        now = now_usec(CLOCK_MONOTONIC);
        if (now < n->snap_retry_usec)
                return 0;
        parent = getpid();
        pid = fork();
        if (pid == 0) {
                /* The child: no event loop, no inherited descriptors but stdio (not the WAL's
                 * lock, which a restarted member needs, nor client or peer sockets), only the
                 * file; it dies with its parent. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(EXIT_FAILURE);
                (void) close_range(3, ~0U, 0);
                _exit(snapshot_write(n, index, term, &n->conf_state) < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
        }
        if (pid < 0) {
                /* No child (process limit, seccomp): write it here, which blocks, rather than never. */
                int r = -errno;
                log_warning_errno(r, "Cannot fork a snapshot writer, writing the snapshot in the event loop: %m");
                r = snapshot_write(n, index, term, &n->conf_state);
                return r < 0 ? r : snapshot_commit(n, index, term, &n->conf_state, now);
        }
        n->snap_pid = pid;
        n->snap_job_index = index;
        n->snap_job_term = term;
        n->snap_job_conf = n->conf_state;
        n->snap_job_start = now;
        log_debug("Writing the snapshot at index %" PRIu64 " in process %d.", index, (int) pid);
        return 0;
}

int kv_node_snapshot_poll(KvNode *n) {
        int status = 0, error;
        pid_t p;

        if (n->snap_pid <= 0)
                return 0;
        p = waitpid(n->snap_pid, &status, WNOHANG);
        error = p < 0 ? errno : 0;
        if (p == 0 || error == EINTR)
                return 0;
        n->snap_pid = 0;
        if (p < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                /* The WAL still holds everything: try again later, without a fork storm. */
                n->snap_retry_usec = now_usec(CLOCK_MONOTONIC) + KV_SNAPSHOT_RETRY_USEC;
                log_error("The snapshot writer for index %" PRIu64 " failed (%s %d); retrying in %u s.", n->snap_job_index,
                          p < 0 ? "waitpid errno" : WIFSIGNALED(status) ? "signal" : "exit status",
                          p < 0 ? error : WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                          (unsigned) (KV_SNAPSHOT_RETRY_USEC / USEC_PER_SEC));
                return 0;
        }
        return snapshot_commit(n, n->snap_job_index, n->snap_job_term, &n->snap_job_conf, n->snap_job_start);
}

void kv_node_snapshot_abandon(KvNode *n) {
        if (n->snap_pid <= 0)
                return;
        (void) kill(n->snap_pid, SIGKILL);
        (void) waitpid(n->snap_pid, NULL, 0);
        n->snap_pid = 0;
}
