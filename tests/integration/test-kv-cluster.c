/* SPDX-License-Identifier: MIT */
/* A 3-member cluster of real processes under faults: kill -9 of any member (the leader too)
 * under continuous writes loses no acknowledged write; an isolated minority cannot write; a
 * member that was down catches up (from a snapshot, for flotilla-kv); growing to 5 members and
 * shrinking back to 3 under writes loses nothing. Runs against flotilla-kv
 * or etcd ($FLOTILLA_TEST_KV_BIN), so the test itself is checked against the reference. */
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>

#include "shared/kv-client.h"
#include "shared/log.h"
#include "test-kv-server.h"
#include "test-util.h"

static sd_event *event;

typedef struct WriteOp WriteOp;
typedef struct Writer {
        KvClient *kv;
        WriteOp *ops;              /* one per key, so dropping in-flight writes leaks nothing */
        unsigned next;             /* next key number to write */
        unsigned in_flight;
        unsigned max_in_flight;
        bool stop;
        uint8_t *acked;            /* acked[i] = 1 when write i was acknowledged */
        unsigned capacity;
        unsigned n_acked, n_failed;
} Writer;

struct WriteOp {
        Writer *w;
        unsigned i;
};

static void writer_pump(Writer *w);

static void on_write(const KvResult *r, void *userdata) {
        WriteOp *op = userdata;
        Writer *w = op->w;

        w->in_flight--;
        if (r->error == 0)
                w->acked[op->i] = 1, w->n_acked++;
        else
                w->n_failed++;
        writer_pump(w);
}

static void writer_pump(Writer *w) {
        while (!w->stop && w->in_flight < w->max_in_flight && w->next < w->capacity) {
                WriteOp *op = &w->ops[w->next];
                char key[64], value[32];
                op->w = w;
                op->i = w->next++;
                (void) snprintf(key, sizeof(key), "/durable/k%06u", op->i);
                (void) snprintf(value, sizeof(value), "v%u", op->i);
                assert_int_equal(kv_set(w->kv, key, value, KV_TTL_NONE, on_write, op), 0);
                w->in_flight++;
        }
}

static int group_setup(void **state) {
        return sd_event_new(&event) < 0 ? -1 : 0;
}

static int group_teardown(void **state) {
        event = sd_event_unref(event);
        return 0;
}

static KvClient *client(TestKvCluster *c, usec_t request_timeout) {
        KvClient *kv;
        KvClientConfig cfg = { .endpoints = c->endpoints, .request_timeout_usec = request_timeout,
                               .total_timeout_usec = 3 * request_timeout };
        assert_int_equal(kv_client_new(&kv, event, &cfg), 0);
        return kv;
}

/* Every acknowledged write must be readable with its value from a quorum read. */
static void verify_acked(TestKvCluster *c, const Writer *w) {
        TestKvConn *k = NULL;
        unsigned checked = 0;

        for (unsigned m = 0; m < c->n && !k; m++)
                if (c->pids[m] > 0)
                        k = test_kv_conn_new(c->urls[m]);
        assert_non_null(k);
        for (unsigned i = 0; i < w->next; i++) {
                _cleanup_free_ char *body = NULL;
                char path[96], want[64];
                if (!w->acked[i])
                        continue;
                (void) snprintf(path, sizeof(path), "/v2/keys/durable/k%06u?quorum=true", i);
                (void) snprintf(want, sizeof(want), "\"value\":\"v%u\"", i);
                long status = test_kv_do(k, "GET", path, NULL, &body);
                if (status != 200 || !body || !strstr(body, want)) {
                        fprintf(stderr, "acknowledged write %u lost: HTTP %ld %s\n", i, status, strna(body));
                        fail();
                }
                checked++;
        }
        test_kv_conn_free(k);
        assert_int_equal(checked, w->n_acked);
}

/* Starts writing (8 writes in flight) through a client of the cluster's endpoints. */
static void writer_start(Writer *w, TestKvCluster *c) {
        *w = (Writer) { .max_in_flight = 8, .capacity = 200000 };
        w->acked = calloc(w->capacity, 1);
        w->ops = calloc(w->capacity, sizeof(WriteOp));
        assert_non_null(w->acked);
        assert_non_null(w->ops);
        w->kv = client(c, 2 * USEC_PER_SEC);
        writer_pump(w);
        test_loop_for(event, 500 * USEC_PER_MSEC);
}

/* Stops writing and waits for what is in flight. */
static void writer_stop(Writer *w) {
        w->stop = true;
        assert_true(RUN_LOOP_UNTIL(event, w->in_flight == 0, 30 * USEC_PER_SEC));
}

static void writer_free(Writer *w) {
        kv_client_free(w->kv);
        free(w->acked);
        free(w->ops);
}

static void kill_nine_any_member_loses_no_acknowledged_write(void **state) {
        TestKvCluster *c = NULL;
        Writer w;
        int killed_leader = 0, killed_follower = 0;

        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        writer_start(&w, c);

        /* Six rounds: kill -9 the leader or a follower while writes flow, restart it. */
        for (int round = 0; round < 6; round++) {
                int victim = test_kv_leader(c);
                if (round % 2 == 1 || victim < 0)
                        victim = (victim + 1) % (int) c->n, killed_follower++;
                else
                        killed_leader++;
                unsigned before = w.n_acked;
                assert_int_equal(test_kv_member_signal(c, (unsigned) victim, SIGKILL), 0);
                test_loop_for(event, 700 * USEC_PER_MSEC);
                assert_int_equal(test_kv_member_restart(c, (unsigned) victim), 0);
                test_loop_for(event, 700 * USEC_PER_MSEC);
                /* Writes keep being acknowledged around each crash. */
                assert_true(w.n_acked > before);
        }
        writer_stop(&w);
        fprintf(stderr, "%u writes acknowledged, %u failed, %d leader kills, %d follower kills\n", w.n_acked, w.n_failed,
                killed_leader, killed_follower);
        assert_true(killed_leader >= 2);
        assert_true(w.n_acked > 100);
        verify_acked(c, &w);
        writer_free(&w);
        test_kv_cluster_stop(c);
}

/* All members die at once right after acknowledging: only what each persisted before answering
 * survives, so every acknowledged write must come back from the WAL. */
static void whole_cluster_kill_nine_keeps_acknowledged_writes(void **state) {
        TestKvCluster *c = NULL;
        Writer w = { .max_in_flight = 16, .capacity = 200000 };

        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        w.acked = calloc(w.capacity, 1);
        w.ops = calloc(w.capacity, sizeof(WriteOp));
        w.kv = client(c, 2 * USEC_PER_SEC);
        writer_pump(&w);
        assert_true(RUN_LOOP_UNTIL(event, w.n_acked >= 2000, 60 * USEC_PER_SEC));
        /* Kill while writes are in flight; whatever was acknowledged must survive. */
        for (unsigned m = 0; m < c->n; m++)
                assert_int_equal(kill(c->pids[m], SIGKILL), 0);
        for (unsigned m = 0; m < c->n; m++)
                assert_int_equal(test_kv_member_signal(c, m, SIGKILL), 0); /* reaps it */
        w.stop = true;
        kv_client_free(TAKE_PTR(w.kv)); /* drops the in-flight writes: not acknowledged */
        w.in_flight = 0;
        for (unsigned m = 0; m < c->n; m++)
                assert_int_equal(test_kv_member_start(c, m), 0);
        for (unsigned m = 0; m < c->n; m++)
                assert_int_equal(test_kv_wait_healthy(c, m, 30), 0);
        fprintf(stderr, "%u writes acknowledged before the whole cluster was killed\n", w.n_acked);
        verify_acked(c, &w);
        free(w.acked);
        free(w.ops);
        test_kv_cluster_stop(c);
}

/* The member left alone (the other two frozen) may not acknowledge a write, and may not answer
 * a quorum read; it still serves plain (possibly stale) reads. */
static void isolated_minority_cannot_write(void **state) {
        TestKvCluster *c = NULL;
        TestKvConn *k;
        _cleanup_free_ char *body = NULL;
        unsigned alone;

        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        alone = (unsigned) ((test_kv_leader(c) + 1) % 3);
        k = test_kv_conn_new(c->urls[alone]);
        assert_int_equal(test_kv_do(k, "PUT", "/v2/keys/before", "value=1", NULL), 201);
        for (unsigned m = 0; m < 3; m++)
                if (m != alone)
                        assert_int_equal(test_kv_member_signal(c, m, SIGSTOP), 0);
        test_kv_conn_set_timeout(k, 12000);
        long status = test_kv_do(k, "PUT", "/v2/keys/during", "value=2", &body);
        assert_true(status != 200 && status != 201);
        if (status > 0) {
                assert_int_equal(status, 500);
                assert_non_null(strstr(body, "\"errorCode\":300"));
        }
        body = mfree(body);
        status = test_kv_do(k, "GET", "/v2/keys/before?quorum=true", NULL, &body);
        assert_true(status != 200);
        body = mfree(body);
        assert_int_equal(test_kv_do(k, "GET", "/v2/keys/before", NULL, &body), 200);
        assert_non_null(strstr(body, "\"value\":\"1\""));
        body = mfree(body);
        /* Heal: writes work again. */
        for (unsigned m = 0; m < 3; m++)
                if (m != alone)
                        assert_int_equal(test_kv_member_signal(c, m, SIGCONT), 0);
        for (int i = 0; i < 100; i++) {
                status = test_kv_do(k, "PUT", "/v2/keys/after", "value=3", NULL);
                if (status == 200 || status == 201)
                        break;
                usleep(100000);
        }
        assert_true(status == 200 || status == 201);
        test_kv_conn_free(k);
        test_kv_cluster_stop(c);
}

/* SIGTERM on the leader hands leadership over instead of leaving the cluster to an election.
 * With a 5 s election timeout nobody can win an election within 2.5 s of the leader leaving,
 * so a leader among the others by then proves the handover (etcd 3.4 does the same). */
static void stopping_leader_hands_over(void **state) {
        static const char *const args[] = { "--heartbeat-interval", "100", "--election-timeout", "5000", NULL };
        TestKvCluster *c = NULL;
        int old, now = -1;

        assert_int_equal(test_kv_cluster_start_args(&c, 3, args), 0);
        for (int i = 0; i < 100 && (old = test_kv_leader(c)) < 0; i++)
                usleep(100000);
        assert_true(old >= 0);
        assert_int_equal(test_kv_member_signal(c, (unsigned) old, SIGTERM), 0);
        for (int i = 0; i < 25 && now < 0; i++) {
                usleep(100000);
                now = test_kv_leader(c);
        }
        assert_true(now >= 0 && now != old);
        test_kv_cluster_stop(c);
}

/* A member that answers /health already lists itself with its client URLs in /v2/members, as
 * etcd does (it publishes itself before serving): etcdctl v2 syncs its endpoints from that list
 * and fails with "no endpoints available" on a member without any. Polled fast from the start,
 * so the moment a member becomes healthy is caught. */
static void healthy_member_lists_its_client_urls(void **state) {
        TestKvCluster *c = NULL;
        TestKvConn *k;
        _cleanup_free_ char *body = NULL;
        char want[128];
        long status = 0;

        assert_int_equal(test_kv_cluster_spawn_args(&c, 3, NULL), 0);
        k = test_kv_conn_new(c->urls[0]);
        test_kv_conn_set_timeout(k, 2000);
        for (int i = 0; i < 6000; i++) {
                free(body);
                body = NULL;
                status = test_kv_do(k, "GET", "/health", NULL, &body);
                if (status == 200 && body && strstr(body, "\"true\""))
                        break;
                usleep(2000);
        }
        assert_int_equal(status, 200);
        free(body);
        body = NULL;
        assert_int_equal(test_kv_do(k, "GET", "/v2/members", NULL, &body), 200);
        (void) snprintf(want, sizeof(want), "\"clientURLs\":[\"%s\"]", c->urls[0]);
        if (!strstr(body, want))
                fail_msg("healthy member without its client URLs: %s", body);
        test_kv_conn_free(k);
        test_kv_cluster_stop(c);
}

static uint64_t snapshot_index(TestKvConn *k) {
        _cleanup_free_ char *metrics = NULL;
        const char *s;

        assert_int_equal(test_kv_do(k, "GET", "/metrics", NULL, &metrics), 200);
        s = strstr(metrics, "\nflotilla_kv_raft_snapshot_index ");
        assert_non_null(s);
        return strtoull(s + strlen("\nflotilla_kv_raft_snapshot_index "), NULL, 10);
}

/* flotilla-kv writes snapshots in a child process. A child that cannot write its file (here the
 * snapshot directory is replaced by a plain file, which even root cannot write into) leaves the
 * member serving and its last snapshot as it was; once the directory is back, the retry records
 * a snapshot. */
static void failed_snapshot_writer_is_retried(void **state) {
        static const char *const args[] = { "--snapshot-count", "100", NULL };
        TestKvCluster *c = NULL;
        TestKvConn *k;
        char snap[PATH_MAX], away[PATH_MAX];
        uint64_t before = 0, after = 0;

        if (!getenv("FLOTILLA_TEST_KV_BIN") || !strstr(getenv("FLOTILLA_TEST_KV_BIN"), "flotilla-kv"))
                skip(); /* etcd writes its snapshots its own way */
        assert_int_equal(test_kv_cluster_start_args(&c, 3, args), 0);
        k = test_kv_conn_new(c->urls[0]);
        before = snapshot_index(k);
        (void) snprintf(snap, sizeof(snap), "%s/m0/member/snap", c->dir);
        (void) snprintf(away, sizeof(away), "%s/m0/member/snap.away", c->dir);
        assert_int_equal(rename(snap, away), 0);
        assert_int_equal(test_write_file(snap, "not a directory"), 0);

        for (int i = 0; i < 300; i++) {
                char path[64], form[32];
                (void) snprintf(path, sizeof(path), "/v2/keys/snapfail/k%d", i);
                (void) snprintf(form, sizeof(form), "value=%d", i);
                assert_true(test_kv_do(k, "PUT", path, form, NULL) / 100 == 2);
        }
        usleep(500000); /* the child has had time to fail, and the parent to see it */
        assert_int_equal(snapshot_index(k), before);
        assert_int_equal(test_kv_do(k, "GET", "/v2/keys/snapfail/k299", NULL, NULL), 200);

        assert_int_equal(unlink(snap), 0);
        assert_int_equal(rename(away, snap), 0);
        for (int i = 0; i < 150 && (after = snapshot_index(k)) <= before; i++)
                usleep(100000); /* the retry comes 10 s after the failure */
        assert_true(after >= before + 100);
        test_kv_conn_free(k);
        test_kv_cluster_stop(c);
}

/* A member down while the others write and snapshot past it catches up when it returns. */
static void restarted_member_catches_up(void **state) {
        /* etcd 3.4 keeps 5000 entries after a snapshot and has no flag for it; flotilla-kv keeps
         * 20 here, so 500 writes take it past the lagging member's log. */
        static const char *const flotilla_args[] = { "--snapshot-count", "100", "--snapshot-catchup-entries", "20", NULL };
        static const char *const etcd_args[] = { "--snapshot-count", "100", NULL };
        const char *bin = getenv("FLOTILLA_TEST_KV_BIN");
        const char *const *args = bin && strstr(bin, "flotilla-kv") ? flotilla_args : etcd_args;
        TestKvCluster *c = NULL;
        TestKvConn *k, *back;
        unsigned down;
        long status = 0;

        assert_int_equal(test_kv_cluster_start_args(&c, 3, args), 0);
        down = (unsigned) ((test_kv_leader(c) + 1) % 3);
        assert_int_equal(test_kv_member_signal(c, down, SIGKILL), 0);
        k = test_kv_conn_new(c->urls[(down + 1) % 3]);
        for (int i = 0; i < 500; i++) {
                char path[64], form[32];
                (void) snprintf(path, sizeof(path), "/v2/keys/catch/k%d", i);
                (void) snprintf(form, sizeof(form), "value=%d", i);
                assert_true(test_kv_do(k, "PUT", path, form, NULL) / 100 == 2);
        }
        assert_int_equal(test_kv_member_restart(c, down), 0);
        back = test_kv_conn_new(c->urls[down]);
        for (int i = 0; i < 100; i++) {
                _cleanup_free_ char *body = NULL;
                status = test_kv_do(back, "GET", "/v2/keys/catch/k499", NULL, &body);
                if (status == 200 && strstr(body, "\"value\":\"499\""))
                        break;
                usleep(100000);
        }
        assert_int_equal(status, 200);
        if (test_kv_is_flotilla(c)) {
                /* It got there through a snapshot: its log was compacted past what it had. */
                _cleanup_free_ char *metrics = NULL;
                assert_int_equal(test_kv_do(back, "GET", "/metrics", NULL, &metrics), 200);
                const char *s = strstr(metrics, "\nflotilla_kv_raft_snapshot_index ");
                assert_non_null(s);
                assert_true(strtoull(s + strlen("\nflotilla_kv_raft_snapshot_index "), NULL, 10) >= 100);
        }
        test_kv_conn_free(k);
        test_kv_conn_free(back);
        test_kv_cluster_stop(c);
}

/* Runtime membership under writes: grow 3 -> 5 (POST /v2/members, then the new member starts with
 * --initial-cluster-state existing), shrink 5 -> 3 by removing two of the original members, and
 * lose no acknowledged write. The new members must have become voters: with only them and one
 * original left, killing that original still leaves a quorum. */
static void grow_to_five_and_shrink_to_three_under_writes(void **state) {
        TestKvCluster *c = NULL;
        Writer w;
        TestKvConn *k;
        _cleanup_free_ char *body = NULL;
        unsigned before;

        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        writer_start(&w, c);

        for (unsigned via = 0; via < 2; via++) {
                before = w.n_acked;
                assert_int_equal(test_kv_member_add(c, via), (int) (3 + via));
                test_loop_for(event, 1500 * USEC_PER_MSEC);
                assert_true(w.n_acked > before);
        }
        k = test_kv_conn_new(c->urls[4]);
        assert_int_equal(test_kv_do(k, "GET", "/v2/members", NULL, &body), 200);
        for (unsigned i = 0; i < 5; i++) {
                char name[16];
                (void) snprintf(name, sizeof(name), "\"name\":\"m%u\"", i);
                assert_non_null(strstr(body, name)); /* every member published its name */
        }
        test_kv_conn_free(k);

        for (unsigned i = 0; i < 2; i++) {
                before = w.n_acked;
                assert_int_equal(test_kv_member_remove(c, i, 2), 0);
                test_loop_for(event, 1000 * USEC_PER_MSEC);
                assert_true(w.n_acked > before);
        }
        writer_stop(&w);

        /* Members 2, 3 and 4 are the voters: without member 2, 3 and 4 still make a quorum. */
        assert_int_equal(test_kv_member_signal(c, 2, SIGKILL), 0);
        k = test_kv_conn_new(c->urls[3]);
        long status = 0;
        for (int i = 0; i < 50 && status / 100 != 2; i++) {
                status = test_kv_do(k, "PUT", "/v2/keys/after-shrink", "value=1", NULL);
                if (status / 100 != 2)
                        usleep(200000);
        }
        assert_int_equal(status / 100, 2);
        test_kv_conn_free(k);
        assert_int_equal(test_kv_member_restart(c, 2), 0);

        fprintf(stderr, "%u writes acknowledged, %u failed while growing to 5 and shrinking to 3\n", w.n_acked, w.n_failed);
        assert_true(w.n_acked > 100);
        verify_acked(c, &w);
        writer_free(&w);
        test_kv_cluster_stop(c);
}

/* The membership changes a cluster refuses: removing a live voter while another is down would
 * leave one reachable voter of two (412), a peer URL already in use (409), an unknown id (404),
 * and, for flotilla-kv, promoting a member that is already a voter (412). */
static void unsafe_membership_changes_are_refused(void **state) {
        TestKvCluster *c = NULL;
        TestKvConn *k;
        _cleanup_free_ char *body = NULL, *path = NULL, *json = NULL, *body2 = NULL;
        const char *p;
        long status = 0;
        int lead = -1;

        /* Requests go to the leader; member a is the one to remove, member b the one that dies. A
         * dead leader would turn every answer into a timeout, which is not what this tests. */
        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        for (int i = 0; i < 100 && (lead = test_kv_leader(c)) < 0; i++)
                usleep(100000);
        assert_true(lead >= 0);
        unsigned a = ((unsigned) lead + 1) % 3, b = ((unsigned) lead + 2) % 3;
        k = test_kv_conn_new(c->urls[lead]);
        assert_true(asprintf(&json, "{\"peerURLs\":[\"http://127.0.0.1:%d\"]}", c->peer_ports[a]) > 0);
        /* etcd answers 500 ("unhealthy cluster") for 5 s after it starts, before any other check. */
        for (int i = 0; i < 40 && (status = test_kv_do_json(k, "POST", "/v2/members", json, NULL)) == 500; i++)
                usleep(500000);
        assert_int_equal(status, 409);
        status = 0;
        assert_int_equal(test_kv_do(k, "DELETE", "/v2/members/1234", NULL, NULL), 404);

        /* Member a's id: the last "id" before its peer URL in the list. */
        char peer[64];
        (void) snprintf(peer, sizeof(peer), "\"http://127.0.0.1:%d\"", c->peer_ports[a]);
        assert_int_equal(test_kv_do(k, "GET", "/v2/members", NULL, &body), 200);
        p = strstr(body, peer);
        assert_non_null(p);
        const char *id = NULL;
        for (const char *q = body; (q = strstr(q, "\"id\":\"")) && q < p; q++)
                id = q + 6;
        assert_non_null(id);
        assert_true(asprintf(&path, "/v2/members/%.*s", (int) strcspn(id, "\""), id) > 0);
        if (test_kv_is_flotilla(c)) {
                _cleanup_free_ char *promote = NULL;
                assert_true(asprintf(&promote, "%s/promote", path) > 0);
                assert_int_equal(test_kv_do(k, "POST", promote, NULL, NULL), 412);
        }

        /* Both the others alive in the leader's eyes; then member b dies and the leader notices. */
        assert_int_equal(test_kv_wait_active_peers(c, lead, 2, 10), 0);
        if (test_kv_is_flotilla(c)) {
                /* A stopped member keeps its connections open but answers no pings. (etcd counts
                 * it alive, connected as it is, and would remove member a.) */
                assert_int_equal(test_kv_member_signal(c, b, SIGSTOP), 0);
                assert_int_equal(test_kv_wait_active_peers(c, lead, 1, 10), 0);
                assert_int_equal(test_kv_do(k, "DELETE", path, NULL, NULL), 412);
                assert_int_equal(test_kv_member_signal(c, b, SIGCONT), 0);
                assert_int_equal(test_kv_wait_active_peers(c, lead, 2, 10), 0);
        }
        assert_int_equal(test_kv_member_signal(c, b, SIGKILL), 0);
        assert_int_equal(test_kv_wait_active_peers(c, lead, 1, 10), 0);
        status = test_kv_do(k, "DELETE", path, NULL, &body2);
        if (test_kv_is_flotilla(c) && status != 412)
                fail_msg("removing member a with member b dead answered %ld, not 412", status);
        if (status / 100 != 4 && status / 100 != 5) /* etcd: refused, whatever the code */
                fail_msg("removing member a with member b dead answered %ld", status);
        fprintf(stderr, "removal refused with %ld: %s\n", status, strna(body2));
        body2 = mfree(body2);
        /* Still three members, and the two live ones still make a quorum. */
        free(body);
        body = NULL;
        assert_int_equal(test_kv_do(k, "GET", "/v2/members", NULL, &body), 200);
        assert_non_null(strstr(body, peer));
        status = test_kv_do(k, "PUT", "/v2/keys/still", "value=1", &body2);
        if (status / 100 != 2)
                fail_msg("a write with two of three members alive answered %ld: %s", status, strna(body2));
        test_kv_conn_free(k);
        test_kv_cluster_stop(c);
}

/* The id of the member whose first peer URL is on peer_port, as /v2/members (through k) lists
 * it; 0 if absent. */
static uint64_t member_id_by_peer_port(TestKvConn *k, int peer_port, size_t *ret_n_members) {
        _cleanup_free_ char *body = NULL;
        char peer[64];
        const char *p, *id = NULL;
        size_t n = 0;

        (void) snprintf(peer, sizeof(peer), "\"http://127.0.0.1:%d\"", peer_port);
        if (test_kv_do(k, "GET", "/v2/members", NULL, &body) != 200 || !body)
                return 0;
        for (const char *q = body; (q = strstr(q, "\"id\":\"")); q++)
                n++;
        if (ret_n_members)
                *ret_n_members = n;
        p = strstr(body, peer);
        if (!p)
                return 0;
        for (const char *q = body; (q = strstr(q, "\"id\":\"")) && q < p; q++)
                id = q + 6;
        return id ? strtoull(id, NULL, 16) : 0;
}

/* A member's local (not quorum) read of key until it shows value: it may still be catching up. */
static void wait_local_value(TestKvCluster *c, unsigned i, const char *key, const char *value) {
        TestKvConn *k = test_kv_conn_new(c->urls[i]);
        _cleanup_free_ char *path = NULL, *want = NULL;
        bool seen = false;

        assert_true(asprintf(&path, "/v2/keys/%s", key) > 0);
        assert_true(asprintf(&want, "\"value\":\"%s\"", value) > 0);
        for (int t = 0; t < 200 && !seen; t++) {
                _cleanup_free_ char *body = NULL;
                seen = test_kv_do(k, "GET", path, NULL, &body) == 200 && body && strstr(body, want);
                if (!seen)
                        usleep(50000);
        }
        test_kv_conn_free(k);
        if (!seen)
                fail_msg("member %u never showed %s=%s", i, key, value);
}

static void join_with_one_url_and_again_after_losing_data(void **state) {
        TestKvCluster *c = NULL;
        TestKvConn *k;
        uint64_t id, id2;
        size_t n = 0;
        int i;

        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        if (!test_kv_is_flotilla(c)) {
                test_kv_cluster_stop(c);
                skip(); /* --join is flotilla-kv's */
        }
        k = test_kv_conn_new(c->urls[0]);
        assert_int_equal(test_kv_do(k, "PUT", "/v2/keys/before", "value=1", NULL), 201);

        /* Nothing but --join: no --initial-cluster that names it, no POST beforehand. */
        i = test_kv_member_spawn_join(c, 0);
        assert_true(i == 3);
        assert_int_equal(test_kv_wait_healthy(c, 3, 40), 0);
        id = member_id_by_peer_port(k, c->peer_ports[3], &n);
        assert_true(id != 0);
        assert_int_equal(n, 4);
        wait_local_value(c, 3, "before", "1");
        TestKvConn *k3 = test_kv_conn_new(c->urls[3]);
        assert_int_equal(test_kv_do(k3, "PUT", "/v2/keys/through-new", "value=2", NULL), 201);
        test_kv_conn_free(k3);

        /* Its disk is lost; started the same way again, it takes over from its old identity. */
        assert_int_equal(test_kv_member_signal(c, 3, SIGKILL), 0);
        assert_int_equal(test_kv_member_wipe(c, 3), 0);
        assert_int_equal(test_kv_member_start_join(c, 3, 1), 0);
        assert_int_equal(test_kv_wait_healthy(c, 3, 60), 0);
        id2 = member_id_by_peer_port(k, c->peer_ports[3], &n);
        assert_true(id2 != 0 && id2 != id);
        assert_int_equal(n, 4);
        wait_local_value(c, 3, "through-new", "2");

        /* A restart with its data keeps its identity. */
        assert_int_equal(test_kv_member_signal(c, 3, SIGKILL), 0);
        assert_int_equal(test_kv_member_start_join(c, 3, 2), 0);
        assert_int_equal(test_kv_wait_healthy(c, 3, 40), 0);
        assert_true(member_id_by_peer_port(k, c->peer_ports[3], &n) == id2);
        assert_int_equal(n, 4);
        test_kv_conn_free(k);
        test_kv_cluster_stop(c);
}

/* A member whose data directory is lost, restarted with its usual flags (state "new"). etcd
 * refuses to start it ("member ... has already been bootstrapped") and leaves the operator to
 * remove, add and restart by hand; flotilla-kv replaces the old identity by itself. */
static void lost_member_restarted_with_same_flags_is_replaced(void **state) {
        TestKvCluster *c = NULL;
        TestKvConn *k;
        uint64_t id, id2;
        size_t n = 0;
        int lead = -1, r;
        long status;

        assert_int_equal(test_kv_cluster_start(&c, 3), 0);
        for (int t = 0; t < 100 && (lead = test_kv_leader(c)) < 0; t++)
                usleep(100000);
        assert_true(lead >= 0);
        unsigned victim = ((unsigned) lead + 1) % 3;
        k = test_kv_conn_new(c->urls[lead]);
        assert_int_equal(test_kv_do(k, "PUT", "/v2/keys/kept", "value=yes", NULL), 201);
        id = member_id_by_peer_port(k, c->peer_ports[victim], NULL);
        assert_true(id != 0);

        assert_int_equal(test_kv_member_signal(c, victim, SIGKILL), 0);
        assert_int_equal(test_kv_member_wipe(c, victim), 0);
        assert_int_equal(test_kv_member_start(c, victim), 0);
        r = test_kv_wait_healthy(c, victim, 60);
        if (!test_kv_is_flotilla(c)) {
                assert_int_equal(r, -ECHILD);   /* etcd exits */
                test_kv_conn_free(k);
                test_kv_cluster_stop(c);
                return;
        }
        assert_int_equal(r, 0);
        id2 = member_id_by_peer_port(k, c->peer_ports[victim], &n);
        assert_true(id2 != 0 && id2 != id);
        assert_int_equal(n, 3);
        wait_local_value(c, victim, "kept", "yes");
        /* Fully back once the leader promoted it (asking to promote a voter answers "not a
         * learner"); then the other two can lose one more and still write. */
        _cleanup_free_ char *promote = NULL;
        bool voter = false;
        assert_true(asprintf(&promote, "/v2/members/%" PRIx64 "/promote", id2) > 0);
        for (int t = 0; t < 100 && !voter; t++) {
                _cleanup_free_ char *body = NULL;
                status = test_kv_do(k, "POST", promote, NULL, &body);
                voter = status == 200 || (status == 412 && body && strstr(body, "not a learner"));
                if (!voter)
                        usleep(100000);
        }
        assert_true(voter);
        assert_int_equal(test_kv_member_signal(c, (victim + 1) % 3, SIGKILL), 0);
        test_kv_conn_free(k);
        k = test_kv_conn_new(c->urls[victim]);
        test_kv_conn_set_timeout(k, 15000);
        status = test_kv_do(k, "PUT", "/v2/keys/after", "value=1", NULL);
        if (status / 100 != 2)
                fail_msg("write after replacing a member and losing another answered %ld", status);
        test_kv_conn_free(k);
        test_kv_cluster_stop(c);
}

TEST_MAIN_GROUP(group_setup, group_teardown,
                cmocka_unit_test(unsafe_membership_changes_are_refused),
                cmocka_unit_test(join_with_one_url_and_again_after_losing_data),
                cmocka_unit_test(lost_member_restarted_with_same_flags_is_replaced),
                cmocka_unit_test(grow_to_five_and_shrink_to_three_under_writes),
                cmocka_unit_test(kill_nine_any_member_loses_no_acknowledged_write),
                cmocka_unit_test(whole_cluster_kill_nine_keeps_acknowledged_writes),
                cmocka_unit_test(isolated_minority_cannot_write),
                cmocka_unit_test(restarted_member_catches_up),
                cmocka_unit_test(stopping_leader_hands_over),
                cmocka_unit_test(healthy_member_lists_its_client_urls),
                cmocka_unit_test(failed_snapshot_writer_is_retried))
