/* SPDX-License-Identifier: MIT */
/* flotilla-kv's etcd-compatible flags, startup checks and id derivation. */
#include <stdio.h>

#include "kv-config.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "test-util.h"

static char last_error[512];
static void sink(int level, const char *line, void *u) {
        if (level <= LOG_ERR)
                (void) snprintf(last_error, sizeof(last_error), "%s", line);
}

static int setup(void **state) {
        unsetenv("ETCD_NAME");
        unsetenv("ETCD_INITIAL_CLUSTER");
        unsetenv("FLOTILLA_KV_NAME");
        last_error[0] = 0;
        log_set_sink(sink, NULL);
        return 0;
}

static int teardown(void **state) {
        log_set_sink(NULL, NULL);
        return 0;
}

#define LOAD(cfg, ...)                                                                           \
        ({                                                                                       \
                const char *_argv_[] = { "flotilla-kv", ##__VA_ARGS__, NULL };                   \
                kv_config_load((cfg), (int) ELEMENTSOF(_argv_) - 1, (char *const *) _argv_);     \
        })

static void defaults_are_etcds(void **state) {
        KvConfig c = {};

        assert_int_equal(LOAD(&c), 1);
        assert_string_equal(c.name, "default");
        assert_string_equal(c.data_dir, "default.etcd");
        assert_string_equal(c.listen_client_urls[0], "http://localhost:2379");
        assert_string_equal(c.initial_cluster, "default=http://localhost:2380");
        assert_string_equal(c.initial_cluster_token, "etcd-cluster");
        assert_int_equal(c.initial_cluster_state, KV_CLUSTER_NEW);
        assert_true(c.heartbeat_interval_usec == 100 * USEC_PER_MSEC);
        assert_true(c.election_timeout_usec == 1000 * USEC_PER_MSEC);
        assert_int_equal(c.snapshot_count, 10000);
        assert_int_equal(kv_config_validate(&c), 0);
        kv_config_free(&c);
}

/* The flags of the CoreOS-era documentation, single dashes and ETCD_* variables included. */
static void etcd_style_flags_and_environment(void **state) {
        KvConfig c = {};

        setenv("ETCD_INITIAL_CLUSTER", "infra0=http://10.0.1.10:2380,infra1=http://10.0.1.11:2380", 1);
        assert_int_equal(LOAD(&c, "-name", "infra0", "-initial-advertise-peer-urls", "http://10.0.1.10:2380",
                              "-listen-peer-urls", "http://10.0.1.10:2380", "--heartbeat-interval", "50",
                              "--election-timeout=250", "--enable-pprof", "--logger", "zap",
                              "--quota-backend-bytes", "8589934592", "--initial-cluster-state", "existing"),
                         1);
        assert_string_equal(c.name, "infra0");
        assert_string_equal(c.data_dir, "infra0.etcd");
        assert_true(c.heartbeat_interval_usec == 50 * USEC_PER_MSEC);
        assert_true(c.election_timeout_usec == 250 * USEC_PER_MSEC);
        assert_int_equal(c.initial_cluster_state, KV_CLUSTER_EXISTING);
        assert_int_equal(kv_config_validate(&c), 0);
        kv_config_free(&c);
        unsetenv("ETCD_INITIAL_CLUSTER");
}

static void startup_checks_name_the_flag(void **state) {
        KvConfig c = {};

        assert_int_equal(LOAD(&c, "--heartbeat-interval", "100", "--election-timeout", "400"), 1);
        assert_int_equal(kv_config_validate(&c), -EINVAL);
        assert_string_equal(last_error, "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]");

        assert_int_equal(LOAD(&c, "--name", "m2"), 1);
        assert_int_equal(kv_config_validate(&c), -EINVAL);
        assert_string_equal(last_error, "--initial-cluster must include m2=<each of --initial-advertise-peer-urls>");

        assert_int_equal(LOAD(&c, "--initial-cluster", "default=http://localhost:2381"), 1);
        assert_int_equal(kv_config_validate(&c), -EINVAL);

        assert_int_equal(LOAD(&c, "--listen-client-urls", "127.0.0.1:2379"), 1);
        assert_int_equal(kv_config_validate(&c), -EINVAL);
        assert_string_equal(last_error, "--listen-client-urls: '127.0.0.1:2379' is not an http:// or https:// URL");

        assert_int_equal(LOAD(&c, "--initial-cluster", "default=http://localhost:2380,broken"), 1);
        assert_int_equal(kv_config_validate(&c), -EINVAL);
        assert_string_equal(last_error, "--initial-cluster: 'broken' is not name=URL");

        assert_int_equal(LOAD(&c, "--initial-cluster", "default=http://localhost:2380,other=http://localhost:2380"), 1);
        assert_int_equal(kv_config_validate(&c), -EINVAL);
        assert_non_null(strstr(last_error, "have the same peer URLs"));

        /* Disaster recovery that does not happen must not look as if it did. */
        assert_int_equal(LOAD(&c, "--force-new-cluster"), 1);
        assert_int_equal(kv_config_validate(&c), -EOPNOTSUPP);
        assert_non_null(strstr(last_error, "--force-new-cluster is not supported"));

        assert_int_equal(LOAD(&c, "--snapshot-count", "0"), -EINVAL);
        assert_int_equal(LOAD(&c, "--initial-cluster-state", "maybe"), -EINVAL);
        kv_config_free(&c);
}

/* Ids as real etcd 3.4.23 computed them for --initial-advertise-peer-urls
 * http://127.0.0.1:23800 and the default token: member 2e1259d415f2a040, cluster 48276a8f75b6a87. */
static void ids_match_etcd(void **state) {
        char *urls[] = { (char *) "http://127.0.0.1:23800", NULL };
        uint64_t id = kv_member_id(urls, "etcd-cluster");
        KvConfig c = {};
        KvMember *m;
        size_t n;

        assert_true(id == 0x2e1259d415f2a040ULL);
        assert_true(kv_cluster_id(&id, 1) == 0x48276a8f75b6a87ULL);

        assert_int_equal(LOAD(&c, "--name", "e1", "--initial-cluster", "e1=http://127.0.0.1:23800,e2=http://127.0.0.1:23801",
                              "--initial-advertise-peer-urls", "http://127.0.0.1:23800"), 1);
        assert_int_equal(kv_config_initial_members(&c, &m, &n), 0);
        assert_int_equal(n, 2);
        assert_true(m[0].id < m[1].id);
        assert_true(m[0].id == 0x2e1259d415f2a040ULL || m[1].id == 0x2e1259d415f2a040ULL);
        kv_members_free(m, n);
        kv_config_free(&c);
}

static void member_with_several_peer_urls(void **state) {
        KvConfig c = {};
        KvMember *m;
        size_t n;

        assert_int_equal(LOAD(&c, "--initial-cluster", "default=http://b:2380,default=http://a:2380",
                              "--initial-advertise-peer-urls", "http://a:2380,http://b:2380"), 1);
        assert_int_equal(kv_config_validate(&c), 0);
        assert_int_equal(kv_config_initial_members(&c, &m, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(strv_length(m[0].peer_urls), 2);
        /* The id does not depend on the order URLs were given in. */
        char *ab[] = { (char *) "http://a:2380", (char *) "http://b:2380", NULL };
        assert_true(m[0].id == kv_member_id(ab, "etcd-cluster"));
        kv_members_free(m, n);
        kv_config_free(&c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(defaults_are_etcds),
          T(etcd_style_flags_and_environment),
          T(startup_checks_name_the_flag),
          T(ids_match_etcd),
          T(member_with_several_peer_urls))
