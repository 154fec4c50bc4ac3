/* SPDX-License-Identifier: MIT */
/* flotilla-kv's configuration: etcd's flag names, defaults and ETCD_* environment variables, so
 * flotilla-kv drops into existing units and scripts, plus the checks etcd makes at startup and
 * the derivation of member and cluster ids exactly as etcd computes them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "shared/conf.h"
#include "shared/time-util.h"

typedef enum KvClusterState {
        KV_CLUSTER_NEW,
        KV_CLUSTER_EXISTING,
} KvClusterState;

typedef enum KvProxyMode {
        KV_PROXY_OFF,
        KV_PROXY_ON,
        KV_PROXY_READONLY,
} KvProxyMode;

typedef enum KvDiscoveryFallback {
        KV_DISCOVERY_FALLBACK_PROXY,
        KV_DISCOVERY_FALLBACK_EXIT,
} KvDiscoveryFallback;

typedef struct KvConfig {
        char *name;
        char *data_dir;                  /* default "<name>.etcd", as etcd */
        char **listen_client_urls;
        char **advertise_client_urls;
        char **listen_peer_urls;
        char **initial_advertise_peer_urls;
        char *initial_cluster;           /* "name=url,name=url"; a name may repeat for several URLs */
        int initial_cluster_state;       /* KvClusterState */
        char *initial_cluster_token;
        uint64_t snapshot_count;         /* applied entries between snapshots */
        uint64_t snapshot_catchup_entries; /* entries kept after a snapshot for slow followers */
        usec_t heartbeat_interval_usec;
        usec_t election_timeout_usec;
        uint64_t max_request_bytes;      /* HTTP body limit */
        uint64_t max_snapshots, max_wals;
        uint64_t max_watchers;
        uint64_t max_connections;
        bool enable_v2;                  /* accepted; flotilla-kv always serves v2 */
        bool strict_reconfig_check;
        bool force_new_cluster;          /* refused by kv_config_validate() */

        /* Joining without --initial-cluster: client URLs of running members (flotilla-kv). */
        char **join;
        /* Bootstrap through an etcd v2 discovery URL, or DNS SRV records of a domain. */
        char *discovery;
        int discovery_fallback;          /* KvDiscoveryFallback */
        char *discovery_srv;
        char *discovery_srv_name;

        /* Proxy mode: forward client requests to the cluster instead of being a member. */
        int proxy;                       /* KvProxyMode */
        usec_t proxy_failure_wait_usec;  /* an endpoint that failed is skipped this long */
        usec_t proxy_refresh_interval_usec; /* how often the member list is fetched again */
        usec_t proxy_dial_timeout_usec;
        usec_t proxy_write_timeout_usec; /* a whole non-watch request */
        usec_t proxy_read_timeout_usec;  /* 0: watches may wait forever */
} KvConfig;

typedef struct KvMember {
        uint64_t id;
        char *name;
        char **peer_urls;
        char **client_urls;
} KvMember;

extern const ConfSpec kv_conf_spec;

/* Loads flags, file and environment, then fills derived defaults (data dir). Returns 1 to run,
 * 0 to exit (help/version), < 0 after logging the error. */
int kv_config_load(KvConfig *c, int argc, char *const *argv);
/* The startup checks etcd makes, each failure logged once naming the flag. */
int kv_config_validate(const KvConfig *c);
void kv_config_free(KvConfig *c);

/* Parses --initial-cluster into members with etcd's ids (SHA-1 of the sorted peer URLs and, for
 * a new cluster, the token). Returns the members sorted by id. */
int kv_config_initial_members(const KvConfig *c, KvMember **ret, size_t *ret_n);
void kv_members_free(KvMember *m, size_t n);

uint64_t kv_member_id(char *const *peer_urls, const char *token);
uint64_t kv_cluster_id(const uint64_t *member_ids, size_t n); /* ids in any order */
