/* SPDX-License-Identifier: MIT */
/* flotilla-kv's client API: the etcd v2 HTTP API (/v2/keys, /v2/members, /v2/machines,
 * /v2/stats/{self,leader,store}, /version, /health) plus /metrics, answered with etcd 3.4's
 * status codes, headers and bodies. Writes go through the node (Raft); plain reads are served
 * locally; quorum reads wait for a read index; watches are suspended requests fed by the store's
 * watchers. */
#pragma once

#include <systemd/sd-event.h>

#include "kv-config.h"
#include "kv-node.h"
#include "shared/macro.h"

typedef struct KvApi KvApi;

/* Listens on every --listen-client-urls address (or takes sockets passed by systemd, by name
 * "client" or in order). */
int kv_api_new(KvApi **ret, sd_event *e, KvNode *node, const KvConfig *cfg, int *listen_fds, size_t n_listen_fds);
KvApi *kv_api_free(KvApi *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(KvApi *, kv_api_free)
/* Number of watches being served. */
size_t kv_api_watchers(KvApi *a);
