/* SPDX-License-Identifier: MIT */
/* Startup steps that talk to a running cluster through its client API before this member has a
 * log: --join (add ourselves), and replacing a previous incarnation of this member whose data
 * directory was lost. They run before the event loop starts, so they block, each bounded by a
 * deadline. */
#pragma once

#include <stdint.h>

#include "kv-members.h"
#include "shared/time-util.h"

#define KV_JOIN_HTTP_TIMEOUT_USEC (3 * USEC_PER_SEC)   /* one request */
#define KV_JOIN_MAX_BODY          (1U << 20)

/* One blocking request on a private loop. Returns 0 with the status and body (NUL-terminated,
 * may be NULL), or -errno for a transport failure. */
int kv_http_do(const char *method, const char *url, const char *json, usec_t timeout_usec, long *ret_status,
               char **ret_body);

/* Parses etcd's {"members":[...]} (ids in hex). -EBADMSG for anything malformed. */
int kv_members_parse_json(const char *body, size_t len, KvMembers *ret);

/* GET /v2/members from the first of client_urls that answers, retrying until the deadline. */
int kv_join_fetch_members(char *const *client_urls, usec_t deadline, KvMembers *ret);

/* POST /v2/members {"peerURLs":[...]}: adds a learner; returns its id. Retries while the cluster
 * is busy with another change or has no leader, until the deadline. */
int kv_join_add(char *const *client_urls, char *const *peer_urls, usec_t deadline, uint64_t *ret_id);

/* DELETE /v2/members/ID, retrying the same way. -EDEADLK when the cluster refuses because the
 * removal could cost it its quorum (412), -ENOENT when no such member (404). */
int kv_join_remove(char *const *client_urls, uint64_t id, usec_t deadline);
