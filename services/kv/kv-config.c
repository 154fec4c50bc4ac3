/* SPDX-License-Identifier: MIT */
/* flotilla-kv flags (etcd's), validation, and etcd's member/cluster id derivation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-config.h"
#include "kv-peer.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/sha1.h"

static const char *const cluster_states[] = { "new", "existing", NULL };
static const char *const proxy_modes[] = { "off", "on", "readonly", NULL };
static const char *const discovery_fallbacks[] = { "proxy", "exit", NULL };

#define OPT(n, t, f, d, m, h, ...) \
        { .name = n, .type = t, .offset = offsetof(KvConfig, f), .def = d, .metavar = m, .help = h, __VA_ARGS__ }
#define IGNORED(n) { .name = n, .type = CONF_IGNORED, .help = "etcd v3 option, no effect" }
#define IGNORED_BOOL(n) { .name = n, .type = CONF_IGNORED_BOOL, .help = "etcd v3 option, no effect" }

static const ConfOption options[] = {
        OPT("name", CONF_STRING, name, "default", "NAME", "human-readable name of this member"),
        OPT("data-dir", CONF_STRING, data_dir, NULL, "PATH", "where the WAL and snapshots live (default: <name>.etcd)"),
        OPT("listen-client-urls", CONF_STRV, listen_client_urls, "http://localhost:2379", "URLS",
            "addresses to serve the client API on"),
        OPT("advertise-client-urls", CONF_STRV, advertise_client_urls, "http://localhost:2379", "URLS",
            "client URLs to tell the rest of the cluster and clients"),
        OPT("listen-peer-urls", CONF_STRV, listen_peer_urls, "http://localhost:2380", "URLS",
            "addresses to accept peer traffic on"),
        OPT("initial-advertise-peer-urls", CONF_STRV, initial_advertise_peer_urls, "http://localhost:2380", "URLS",
            "this member's peer URLs, as the rest of the cluster reaches them"),
        OPT("initial-cluster", CONF_STRING, initial_cluster, "default=http://localhost:2380", "NAME=URL,...",
            "the members of a new cluster"),
        OPT("initial-cluster-state", CONF_ENUM, initial_cluster_state, "new", "new|existing",
            "new: bootstrap a cluster; existing: join a running one", .enum_values = cluster_states),
        OPT("initial-cluster-token", CONF_STRING, initial_cluster_token, "etcd-cluster", "TOKEN",
            "distinguishes clusters bootstrapped from the same member list"),
        /* etcd defaults to 100000; flotilla-kv's snapshots are cheap (100k keys save in tens of ms),
         * and a shorter log means less memory and a faster restart. */
        OPT("snapshot-count", CONF_U64, snapshot_count, "10000", "N", "applied entries between snapshots", .min = 1,
            .max = 100000000),
        OPT("snapshot-catchup-entries", CONF_U64, snapshot_catchup_entries, "5000", "N",
            "log entries kept after a snapshot so slow followers catch up without one", .min = 1, .max = 10000000),
        OPT("heartbeat-interval", CONF_DURATION, heartbeat_interval_usec, "100", "MS",
            "time between leader heartbeats (bare numbers are milliseconds)", .unit = USEC_PER_MSEC,
            .min = USEC_PER_MSEC, .max = 10 * USEC_PER_SEC),
        OPT("election-timeout", CONF_DURATION, election_timeout_usec, "1000", "MS",
            "time without a leader before an election (bare numbers are milliseconds)", .unit = USEC_PER_MSEC,
            .min = 5 * USEC_PER_MSEC, .max = 50 * USEC_PER_SEC),
        OPT("max-request-bytes", CONF_SIZE, max_request_bytes, "1572864", "BYTES", "largest request body read; v2 forms may always be 10 MiB, as with etcd",
            .min = 1024, .max = 64 << 20),
        OPT("max-snapshots", CONF_U64, max_snapshots, "5", "N", "snapshot files to keep (0 = unlimited)"),
        OPT("max-wals", CONF_U64, max_wals, "5", "N", "accepted for etcd compatibility; WAL segments are released after snapshots"),
        OPT("max-watchers", CONF_U64, max_watchers, "100000", "N", "concurrent watches before new ones get 503",
            .min = 1, .max = 10000000),
        OPT("max-connections", CONF_U64, max_connections, "10000", "N", "concurrent client connections", .min = 1,
            .max = 1000000),
        OPT("enable-v2", CONF_BOOL, enable_v2, "true", NULL, "accepted for etcd compatibility; the v2 API is always on"),
        OPT("strict-reconfig-check", CONF_BOOL, strict_reconfig_check, "true", NULL,
            "refuse membership changes that could lose quorum"),
        OPT("join", CONF_STRV, join, NULL, "URLS",
            "client URLs of running members: this member adds itself to their cluster (no --initial-cluster needed)"),
        OPT("discovery", CONF_STRING, discovery, NULL, "URL", "bootstrap through this etcd v2 discovery URL"),
        OPT("discovery-fallback", CONF_ENUM, discovery_fallback, "proxy", "proxy|exit",
            "what a member does when the discovery URL's cluster is already full", .enum_values = discovery_fallbacks),
        OPT("discovery-srv", CONF_STRING, discovery_srv, NULL, "DOMAIN",
            "bootstrap from the _etcd-server._tcp SRV records of DOMAIN"),
        OPT("discovery-srv-name", CONF_STRING, discovery_srv_name, NULL, "SUFFIX",
            "looks up _etcd-server-SUFFIX._tcp instead"),
        OPT("proxy", CONF_ENUM, proxy, "off", "off|on|readonly",
            "forward client requests to the cluster instead of being a member", .enum_values = proxy_modes),
        OPT("proxy-failure-wait", CONF_DURATION, proxy_failure_wait_usec, "5000", "MS",
            "how long a failed endpoint is left out (bare numbers are milliseconds)", .unit = USEC_PER_MSEC,
            .min = 0, .max = 3600 * USEC_PER_SEC),
        OPT("proxy-refresh-interval", CONF_DURATION, proxy_refresh_interval_usec, "30000", "MS",
            "how often the proxy fetches the member list again", .unit = USEC_PER_MSEC, .min = 100 * USEC_PER_MSEC,
            .max = 3600 * USEC_PER_SEC),
        OPT("proxy-dial-timeout", CONF_DURATION, proxy_dial_timeout_usec, "1000", "MS",
            "connect timeout towards a member", .unit = USEC_PER_MSEC, .min = USEC_PER_MSEC, .max = 600 * USEC_PER_SEC),
        OPT("proxy-write-timeout", CONF_DURATION, proxy_write_timeout_usec, "5000", "MS",
            "time a forwarded request (not a watch) may take", .unit = USEC_PER_MSEC, .min = USEC_PER_MSEC,
            .max = 3600 * USEC_PER_SEC),
        OPT("proxy-read-timeout", CONF_DURATION, proxy_read_timeout_usec, "0", "MS",
            "time a forwarded watch may take (0: no limit)", .unit = USEC_PER_MSEC, .min = 0, .max = 86400 * USEC_PER_SEC),
        /* etcd 3.4 flags for its v3 store, logging or profiling: accepted so unit files and
         * scripts written for etcd keep working. */
        IGNORED("logger"), IGNORED("log-outputs"), IGNORED_BOOL("enable-pprof"), IGNORED("quota-backend-bytes"),
        IGNORED("auto-compaction-retention"), IGNORED("auto-compaction-mode"), IGNORED("backend-batch-interval"),
        IGNORED("backend-batch-limit"), IGNORED("max-txn-ops"), IGNORED("grpc-keepalive-min-time"),
        IGNORED("grpc-keepalive-interval"), IGNORED("grpc-keepalive-timeout"), IGNORED("listen-metrics-urls"),
        IGNORED("metrics"), IGNORED_BOOL("debug"), IGNORED("cors"), IGNORED("host-whitelist"),
        IGNORED_BOOL("experimental-initial-corrupt-check"), IGNORED("experimental-corrupt-check-time"),
        /* Not ignored: an operator recovering a cluster must not think it happened. */
        OPT("force-new-cluster", CONF_BOOL, force_new_cluster, "false", NULL,
            "not supported: refused (restore a backup into a new cluster instead)"),
};

const ConfSpec kv_conf_spec = {
        .program = "flotilla-kv",
        .summary = "Raft-replicated key-value store speaking the etcd v2 API",
        .env_prefix = "FLOTILLA_KV_",
        .env_alias_prefix = "ETCD_",
        .config_default = "/etc/flotilla/kv.conf",
        .options = options,
        .n_options = ELEMENTSOF(options),
};

int kv_config_load(KvConfig *c, int argc, char *const *argv) {
        int r = conf_load(&kv_conf_spec, c, argc, argv);
        if (r <= 0)
                return r;
        if (isempty(c->data_dir) && asprintf(&c->data_dir, "%s.etcd", c->name) < 0) {
                c->data_dir = NULL;
                return log_oom();
        }
        return 1;
}

void kv_config_free(KvConfig *c) {
        conf_free(&kv_conf_spec, c);
}

static int check_urls(char *const *urls, const char *flag, bool allow_port0) {
        if (strv_length(urls) == 0)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--%s: at least one URL is needed", flag);
        STRV_FOREACH(u, urls) {
                _cleanup_free_ char *host = NULL, *port = NULL;
                if (!startswith(*u, "http://") && !startswith(*u, "https://"))
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--%s: '%s' is not an http:// or https:// URL", flag, *u);
                if (kv_peer_parse_url(*u, &host, &port) < 0 || (!allow_port0 && streq(port, "0")))
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--%s: '%s' needs host:port", flag, *u);
                if (startswith(*u, "https://"))
                        return log_error_errno(SYNTHETIC_ERRNO(EOPNOTSUPP), "--%s: '%s': TLS is not supported yet", flag, *u);
        }
        return 0;
}

int kv_config_validate(const KvConfig *c) {
        KvMember *m = NULL;
        size_t n = 0;
        bool found = false;
        int r;

        if (isempty(c->name))
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--name must not be empty");
        if ((r = check_urls(c->listen_client_urls, "listen-client-urls", true)) < 0 ||
            (r = check_urls(c->advertise_client_urls, "advertise-client-urls", false)) < 0 ||
            (r = check_urls(c->listen_peer_urls, "listen-peer-urls", true)) < 0 ||
            (r = check_urls(c->initial_advertise_peer_urls, "initial-advertise-peer-urls", false)) < 0)
                return r;
        /* etcd's rule: an election must take several heartbeats. */
        if (c->election_timeout_usec < 5 * c->heartbeat_interval_usec)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL),
                                       "--election-timeout[%llums] should be at least as 5 times as --heartbeat-interval[%llums]",
                                       (unsigned long long) (c->election_timeout_usec / USEC_PER_MSEC),
                                       (unsigned long long) (c->heartbeat_interval_usec / USEC_PER_MSEC));
        if (c->force_new_cluster)
                return log_error_errno(SYNTHETIC_ERRNO(EOPNOTSUPP),
                                       "--force-new-cluster is not supported by flotilla-kv: bootstrap a new cluster "
                                       "from a backup instead (see docs/kv.md).");
        if (!c->enable_v2)
                log_warning("--enable-v2=false has no effect: flotilla-kv serves only the v2 API.");

        if (!!c->discovery + !!c->discovery_srv + (strv_length(c->join) > 0) > 1)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--join, --discovery and --discovery-srv exclude each other");
        if (c->join && (r = check_urls(c->join, "join", false)) < 0)
                return r;
        if (c->discovery && !startswith(c->discovery, "http://") && !startswith(c->discovery, "https://"))
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--discovery: '%s' is not an http:// or https:// URL", c->discovery);
        /* A proxy is no member; a joining or discovering member learns the cluster at start. */
        if (c->proxy != KV_PROXY_OFF || c->join || c->discovery || c->discovery_srv)
                return 0;

        r = kv_config_initial_members(c, &m, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (!streq(m[i].name, c->name))
                        continue;
                found = true;
                /* Our own entry must list exactly our advertised peer URLs, or peers could not agree
                 * on our id. */
                if (strv_length(m[i].peer_urls) != strv_length(c->initial_advertise_peer_urls))
                        found = false;
                STRV_FOREACH(u, c->initial_advertise_peer_urls) {
                        bool hit = false;
                        STRV_FOREACH(v, m[i].peer_urls)
                                hit = hit || streq(*u, *v);
                        found = found && hit;
                }
        }
        kv_members_free(m, n);
        if (!found)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL),
                                       "--initial-cluster must include %s=<each of --initial-advertise-peer-urls>", c->name);
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

uint64_t kv_member_id(char *const *peer_urls, const char *token) {
        _cleanup_strv_free_ char **sorted = strv_copy(peer_urls);
        uint8_t d[SHA1_DIGEST_SIZE];
        uint64_t id = 0;
        Sha1 s;

        if (!sorted)
                return 0;
        qsort(sorted, strv_length(sorted), sizeof(char *), cmp_str);
        sha1_init(&s);
        STRV_FOREACH(u, sorted)
                sha1_update(&s, *u, strlen(*u));
        if (token)
                sha1_update(&s, token, strlen(token));
        sha1_final(&s, d);
        for (int i = 0; i < 8; i++)
                id = id << 8 | d[i];
        return id;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

uint64_t kv_cluster_id(const uint64_t *member_ids, size_t n) {
        _cleanup_free_ uint64_t *ids = new0(uint64_t, n ?: 1);
        uint8_t d[SHA1_DIGEST_SIZE];
        uint64_t id = 0;
        Sha1 s;

        if (!ids)
                return 0;
        memcpy(ids, member_ids, n * sizeof(uint64_t));
        qsort(ids, n, sizeof(uint64_t), cmp_u64);
        sha1_init(&s);
        for (size_t i = 0; i < n; i++) {
                uint8_t be[8];
                for (int k = 0; k < 8; k++)
                        be[k] = (uint8_t) (ids[i] >> (56 - 8 * k));
                sha1_update(&s, be, sizeof(be));
        }
        sha1_final(&s, d);
        for (int i = 0; i < 8; i++)
                id = id << 8 | d[i];
        return id;
}

void kv_members_free(KvMember *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].name);
                strv_free(m[i].peer_urls);
                strv_free(m[i].client_urls);
        }
        free(m);
}

static int cmp_member(const void *a, const void *b) {
        return cmp_u64(&((const KvMember *) a)->id, &((const KvMember *) b)->id);
}

int kv_config_initial_members(const KvConfig *c, KvMember **ret, size_t *ret_n) {
        _cleanup_strv_free_ char **items = NULL;
        KvMember *m = NULL;
        size_t n = 0;
        int r;

        r = strv_split(c->initial_cluster ?: "", ",", &items);
        if (r < 0)
                return log_oom();
        STRV_FOREACH(it, items) {
                const char *eq = strchr(*it, '=');
                _cleanup_free_ char *name = NULL;
                KvMember *x = NULL;

                if (!eq || eq == *it || isempty(eq + 1)) {
                        kv_members_free(m, n);
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--initial-cluster: '%s' is not name=URL", *it);
                }
                name = strndup(*it, (size_t) (eq - *it));
                if (!name)
                        goto oom;
                for (size_t i = 0; i < n; i++)
                        if (streq(m[i].name, name))
                                x = &m[i];
                if (!x) {
                        KvMember *t = realloc(m, sizeof(KvMember) * (n + 1));
                        if (!t)
                                goto oom;
                        m = t;
                        x = &m[n++];
                        *x = (KvMember) { .name = TAKE_PTR(name) };
                }
                {
                        char *url[] = { (char *) eq + 1, NULL };
                        r = check_urls(url, "initial-cluster", false);
                        if (r < 0) {
                                kv_members_free(m, n);
                                return r;
                        }
                }
                if (strv_extend(&x->peer_urls, eq + 1) < 0)
                        goto oom;
        }
        if (n == 0)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "--initial-cluster is empty");
        for (size_t i = 0; i < n; i++) {
                /* As etcd: the token only takes part for a new cluster. */
                m[i].id = kv_member_id(m[i].peer_urls, c->initial_cluster_state == KV_CLUSTER_NEW ? c->initial_cluster_token : NULL);
                for (size_t j = 0; j < i; j++)
                        if (m[j].id == m[i].id) {
                                r = log_error_errno(SYNTHETIC_ERRNO(EINVAL),
                                                    "--initial-cluster: members %s and %s have the same peer URLs",
                                                    m[j].name, m[i].name);
                                kv_members_free(m, n);
                                return r;
                        }
        }
        qsort(m, n, sizeof(KvMember), cmp_member);
        *ret = m;
        *ret_n = n;
        return 0;
oom:
        kv_members_free(m, n);
        return log_oom();
}
