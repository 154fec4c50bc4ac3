/* SPDX-License-Identifier: MIT */
/* Runs a real etcd-v2-compatible cluster for integration tests: etcd 3.4 (--enable-v2) or
 * flotilla-kv, chosen by $FLOTILLA_TEST_KV_BIN (default: etcd from PATH). Both take the same
 * etcd flags, so the same test proves compatibility with either. Members listen on free loopback
 * ports and keep their data under a temporary directory (tmpfs when available). A missing binary
 * makes the test skip (exit 77) unless $FLOTILLA_TEST_REQUIRE is set, as CI does. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#define TEST_KV_MAX_MEMBERS 5

typedef struct TestKvCluster {
        unsigned n;
        const char *bin;
        char *dir;
        pid_t pids[TEST_KV_MAX_MEMBERS];
        bool removed[TEST_KV_MAX_MEMBERS];    /* removed from the cluster (test_kv_member_remove) */
        int client_ports[TEST_KV_MAX_MEMBERS];
        int peer_ports[TEST_KV_MAX_MEMBERS];
        char urls[TEST_KV_MAX_MEMBERS][64];   /* client URLs */
        char *endpoints[TEST_KV_MAX_MEMBERS + 1]; /* NULL-terminated view of urls */
        const char *const *extra_args;        /* appended to every member's command line */
} TestKvCluster;

/* Starts n members and waits until every one reports healthy. Exits the process with 77 when the
 * binary is missing and not required. */
int test_kv_cluster_start(TestKvCluster **ret, unsigned n);
/* The same with extra flags for every member (NULL-terminated), e.g. { "--snapshot-count", "100" }. */
int test_kv_cluster_start_args(TestKvCluster **ret, unsigned n, const char *const *extra_args);
/* Starts n members without waiting for any of them. */
int test_kv_cluster_spawn_args(TestKvCluster **ret, unsigned n, const char *const *extra_args);
/* True when the members are flotilla-kv (the binary's name says so). */
bool test_kv_is_flotilla(const TestKvCluster *c);
/* Index of the member that reports itself leader (/v2/stats/self), or -1. */
int test_kv_leader(TestKvCluster *c);
void test_kv_cluster_stop(TestKvCluster *c);
int test_kv_member_signal(TestKvCluster *c, unsigned i, int sig); /* SIGKILL reaps it */
int test_kv_member_restart(TestKvCluster *c, unsigned i);
/* Starts a stopped member without waiting for it (when others must start too before any can be
 * healthy); test_kv_wait_healthy() then waits. */
int test_kv_member_start(TestKvCluster *c, unsigned i);
int test_kv_wait_healthy(TestKvCluster *c, unsigned i, unsigned timeout_sec);
/* Waits until member i counts 'want' active peers in /metrics (flotilla_kv_active_peers, or the
 * sum of etcd's etcd_network_active_peers): the member's own view of who is alive. */
int test_kv_wait_active_peers(TestKvCluster *c, unsigned i, unsigned want, unsigned timeout_sec);

/* Runtime membership, the etcd way: POST /v2/members through member 'via', then start the new
 * member (index c->n, which grows) with --initial-cluster-state existing and wait until it is
 * healthy. Returns the new index or -errno. */
int test_kv_member_add(TestKvCluster *c, unsigned via);
/* DELETE /v2/members/ID of member i through member 'via'; waits until i has stopped by itself
 * (etcd and flotilla-kv both exit once removed), killing it after 20 s. */
int test_kv_member_remove(TestKvCluster *c, unsigned i, unsigned via);

/* Removes stopped member i's data directory (a lost disk). */
int test_kv_member_wipe(TestKvCluster *c, unsigned i);
/* flotilla-kv only: starts a new member (index c->n, which grows) with just --join URL of member
 * 'via', without waiting; returns its index. test_kv_member_start_join() starts stopped member i
 * the same way. */
int test_kv_member_spawn_join(TestKvCluster *c, unsigned via);
int test_kv_member_start_join(TestKvCluster *c, unsigned i, unsigned via);

/* Blocking requests for the test's own setup and checks (not the code under test). */
typedef struct TestKvConn TestKvConn;
TestKvConn *test_kv_conn_new(const char *base_url);
void test_kv_conn_free(TestKvConn *k);
void test_kv_conn_set_timeout(TestKvConn *k, long ms); /* default 10 s */
/* Returns the HTTP status (or -errno) and the body in *ret_body (may be NULL). */
long test_kv_do(TestKvConn *k, const char *method, const char *path, const char *form, char **ret_body);
/* The same with a JSON body (Content-Type: application/json), e.g. for /v2/members. */
long test_kv_do_json(TestKvConn *k, const char *method, const char *path, const char *json, char **ret_body);
