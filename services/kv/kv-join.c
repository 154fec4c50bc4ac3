/* SPDX-License-Identifier: MIT */
/* Blocking client-API calls for startup: --join and the replacement of a lost member. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv-join.h"
#include "shared/http-client.h"
#include "shared/log.h"

typedef struct Call {
        bool done;
        int error;
        long status;
        char *body;
} Call;

static void on_done(HttpCall *call, int error, long status, const char *body, size_t len, void *userdata) {
        Call *c = userdata;

        (void) call;
        c->done = true;
        c->error = error;
        c->status = status;
        if (error == 0 && body) {
                c->body = strndup(body, len);
                if (!c->body)
                        c->error = -ENOMEM;
        }
}

int kv_http_do(const char *method, const char *url, const char *json, usec_t timeout_usec, long *ret_status,
               char **ret_body) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) HttpClient *client = NULL;
        Call c = {};
        int r;

        r = sd_event_new(&e);
        if (r < 0)
                return r;
        r = http_client_new(&client, e);
        if (r < 0)
                return r;
        r = http_call_start(client, &(HttpCallSpec) {
                .method = method,
                .url = url,
                .body = json,
                .body_len = json ? strlen(json) : 0,
                .content_type = json ? "application/json" : NULL,
                .timeout_usec = timeout_usec,
                .max_response_size = KV_JOIN_MAX_BODY,
                .on_done = on_done,
                .userdata = &c,
        }, NULL);
        if (r < 0)
                return r;
        while (!c.done) {
                r = sd_event_run(e, UINT64_MAX);
                if (r < 0) {
                        free(c.body);
                        return r;
                }
        }
        if (c.error < 0) {
                free(c.body);
                return c.error;
        }
        *ret_status = c.status;
        if (ret_body)
                *ret_body = c.body;
        else
                free(c.body);
        return 0;
}

static int json_strv(json_t *a, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t i;
        json_t *v;

        if (!json_is_array(a) || json_array_size(a) > KV_MEMBER_URLS_MAX)
                return -EBADMSG;
        json_array_foreach(a, i, v) {
                if (!json_is_string(v) || json_string_length(v) > KV_MEMBER_STR_MAX)
                        return -EBADMSG;
                if (strv_extend(&l, json_string_value(v)) < 0)
                        return -ENOMEM;
        }
        if (!l) {
                l = new0(char *, 1);
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int parse_member(json_t *o, KvMember *m) {
        json_t *id = json_object_get(o, "id"), *name = json_object_get(o, "name");
        const char *s;
        char *end;
        int r;

        if (!json_is_object(o) || !json_is_string(id))
                return -EBADMSG;
        s = json_string_value(id);
        errno = 0;
        m->id = strtoull(s, &end, 16);
        if (errno != 0 || end == s || *end || m->id == 0)
                return -EBADMSG;
        if (name && (!json_is_string(name) || json_string_length(name) > KV_MEMBER_STR_MAX))
                return -EBADMSG;
        m->name = strdup(name ? json_string_value(name) : "");
        if (!m->name)
                return -ENOMEM;
        r = json_strv(json_object_get(o, "peerURLs"), &m->peer_urls);
        if (r < 0)
                return r;
        /* A member that has not started has [] (etcd may leave the field out). */
        if (!json_object_get(o, "clientURLs")) {
                m->client_urls = new0(char *, 1);
                return m->client_urls ? 0 : -ENOMEM;
        }
        return json_strv(json_object_get(o, "clientURLs"), &m->client_urls);
}

int kv_members_parse_json(const char *body, size_t len, KvMembers *ret) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        KvMembers ms = {};
        json_t *a, *o;
        size_t i;
        int r = 0;

        j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        a = json_object_get(j, "members");
        if (!json_is_array(a) || json_array_size(a) > KV_MEMBERS_MAX)
                return -EBADMSG;
        json_array_foreach(a, i, o) {
                KvMember m = {};
                r = parse_member(o, &m);
                if (r >= 0)
                        r = kv_members_find(&ms, m.id) ? -EBADMSG : kv_members_put(&ms, &m);
                kv_member_done(&m);
                if (r < 0)
                        break;
        }
        if (r < 0) {
                kv_members_done(&ms);
                return r;
        }
        *ret = ms;
        return 0;
}

/* Runs one request against each URL in turn until one gives an answer that is not "try again";
 * answers 'retry' lists statuses worth another round (no leader, change in progress). */
static int request_any(const char *method, char *const *client_urls, const char *path, const char *json,
                       const long *retry, usec_t deadline, long *ret_status, char **ret_body) {
        int last = -EHOSTUNREACH;

        for (unsigned round = 0;; round++) {
                STRV_FOREACH(u, client_urls) {
                        _cleanup_free_ char *url = NULL, *body = NULL;
                        bool again = false;
                        long status = 0;
                        int r;

                        if (asprintf(&url, "%s%s", *u, path) < 0)
                                return -ENOMEM;
                        r = kv_http_do(method, url, json, KV_JOIN_HTTP_TIMEOUT_USEC, &status, &body);
                        if (r < 0) {
                                if (round == 0 || r != last)
                                        log_warning_errno(r, "%s %s: %m", method, url);
                                last = r;
                                continue;
                        }
                        for (const long *s = retry; *s; s++)
                                again = again || status == *s;
                        if (!again) {
                                *ret_status = status;
                                *ret_body = TAKE_PTR(body);
                                return 0;
                        }
                        if (round == 0 || last != -EAGAIN)
                                log_info("%s %s: %ld %s, trying again.", method, url, status, strna(body));
                        last = -EAGAIN;
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return last;
                (void) usleep(300 * USEC_PER_MSEC);
        }
}

int kv_join_fetch_members(char *const *client_urls, usec_t deadline, KvMembers *ret) {
        _cleanup_free_ char *body = NULL;
        long status;
        int r;

        r = request_any("GET", client_urls, "/v2/members", NULL, (const long[]) { 500, 503, 0 }, deadline, &status, &body);
        if (r < 0)
                return r;
        if (status != 200)
                return log_error_errno(SYNTHETIC_ERRNO(EPROTO), "GET /v2/members answered %ld: %s", status, strna(body));
        r = kv_members_parse_json(body, strlen(body), ret);
        if (r < 0)
                return log_error_errno(r, "GET /v2/members: unexpected answer: %s", body);
        return 0;
}

int kv_join_add(char *const *client_urls, char *const *peer_urls, usec_t deadline, uint64_t *ret_id) {
        _cleanup_(json_decrefp) json_t *req = NULL, *urls = json_array(), *answer = NULL;
        _cleanup_free_ char *json = NULL, *body = NULL;
        KvMember m = {};
        long status;
        int r;

        STRV_FOREACH(u, peer_urls)
                if (!urls || json_array_append_new(urls, json_string(*u)) < 0)
                        return -ENOMEM;
        req = json_pack("{s:O}", "peerURLs", urls);
        json = req ? json_dumps(req, JSON_COMPACT) : NULL;
        if (!json)
                return -ENOMEM;
        /* 409 means "busy" or "URL in use"; only the first is worth waiting for. */
        r = request_any("POST", client_urls, "/v2/members", json, (const long[]) { 500, 503, 0 }, deadline, &status, &body);
        for (; r >= 0 && status == 409 && !strstr(body, "exists") && now_usec(CLOCK_MONOTONIC) < deadline;) {
                body = mfree(body);
                (void) usleep(500 * USEC_PER_MSEC);
                r = request_any("POST", client_urls, "/v2/members", json, (const long[]) { 500, 503, 0 }, deadline, &status, &body);
        }
        if (r < 0)
                return r;
        if (status != 201)
                return log_error_errno(status == 409 ? SYNTHETIC_ERRNO(EEXIST) : SYNTHETIC_ERRNO(EPROTO),
                                       "Adding this member (peer URL %s) answered %ld: %s", peer_urls[0], status, strna(body));
        answer = json_loads(body, 0, NULL);
        r = answer ? parse_member(answer, &m) : -EBADMSG;
        if (r < 0)
                return log_error_errno(r, "Adding this member: unexpected answer: %s", body);
        *ret_id = m.id;
        kv_member_done(&m);
        return 0;
}

int kv_join_remove(char *const *client_urls, uint64_t id, usec_t deadline) {
        _cleanup_free_ char *path = NULL, *body = NULL;
        long status;
        int r;

        if (asprintf(&path, "/v2/members/%" PRIx64, id) < 0)
                return -ENOMEM;
        r = request_any("DELETE", client_urls, path, NULL, (const long[]) { 409, 500, 503, 0 }, deadline, &status, &body);
        if (r < 0)
                return r;
        switch (status) {
        case 204:
                return 0;
        case 404:
                return -ENOENT;
        case 412:
                return log_error_errno(SYNTHETIC_ERRNO(EDEADLK),
                                       "The cluster refuses to remove member %" PRIx64 ": without it, it could lose its quorum (%s).",
                                       id, strna(body));
        default:
                return log_error_errno(SYNTHETIC_ERRNO(EPROTO), "Removing member %" PRIx64 " answered %ld: %s", id, status,
                                       strna(body));
        }
}
