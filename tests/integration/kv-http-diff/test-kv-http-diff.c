/* SPDX-License-Identifier: MIT */
/* Differential test of flotilla-kv's HTTP API against a real etcd 3.4 (--enable-v2): both run as
 * separate processes, and every request of the shared script (tests/integration/kv-store/
 * diff-script.h: errors, redirects, escaping, TTLs, hidden keys, dirs, CAS/CAD, live and history
 * watches, a seeded random sequence, 2 MiB values, 1010 history writes) plus the other v2
 * endpoints (members, machines, stats, version, health, unknown paths, every method) is sent to
 * both at once. The status, the headers a v2 client can see and the body must agree. flotilla-kv
 * is first brought to etcd's starting index with writes to a hidden key, so indices need no
 * mapping.
 *
 * What is normalized, and why (nothing else is):
 *   - "expiration" timestamps, and "ttl" values within 1 s: they depend on the clock;
 *   - the order of unsorted listings: Go map order in etcd;
 *   - each server's own member id, client and peer URL, start times and uptime;
 *   - X-Raft-Index, X-Raft-Term and X-Etcd-Cluster-Id are compared for presence only (Raft
 *     indices and ids are internal); Date and Server are ignored; Content-Length and
 *     Transfer-Encoding are compared as framing (length or chunked), not values, since a
 *     normalized body may differ in length;
 *   - /v2/stats/store counters are compared by how much they moved, as etcd counts its own
 *     startup reads.
 * The accepted differences are listed in known_diffs[] below, each with its reason.
 *
 * FLOTILLA_TEST_FLOTILLA_KV_BIN is the flotilla-kv binary; FLOTILLA_TEST_SEED the random
 * sequence's seed; FLOTILLA_TEST_VERBOSE=1 prints every request; FLOTILLA_TEST_STATS_EACH=1
 * reads /v2/stats/store after every request and names those that moved a counter differently. */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "diff-script.h"
#include "diff-util.h"
#include "http-diff.h"
#include "kv-command.h"
#include "shared/buf.h"
#include "test-kv-server.h"
#include "test-util.h"

/* The accepted differences, the only requests whose answers may differ. They run last, after
 * the final stats point, since etcd stores or counts what flotilla-kv does not. */
typedef struct KnownDiff {
        const char *method, *target, *body;
        const char *reason;
} KnownDiff;

#define NUL_BYTE "a NUL byte in a key, value or parameter: flotilla-kv refuses it with error 210 instead of storing " \
                 "it, because keys and values are C strings and truncating them would corrupt data"
#define NO_AUTH "the v2 auth API (/v2/auth/enable, users, roles) is not implemented: flotilla-kv has no auth"
#define METRICS "Prometheus metrics are each server's own (names, values, and Go's chunking of the body)"
/* Also accepted, for any HEAD request (see compare()): */
#define HEAD_FRAMING "to HEAD, Go sends neither Content-Length nor Transfer-Encoding when the GET body would be " \
                     "empty or longer than 2048 bytes; libmicrohttpd always sends one, flotilla-kv a Content-Length"

/* Not sent at all, so not compared: membership changes that would succeed (adding a member with
 * a new peer URL, updating or removing an existing one) would break the one-member clusters
 * compared here; test-kv-cluster makes them against both (grow to 5, shrink to 3). Loss of quorum
 * (/health 503, error 300 after the request timeout) needs a cluster, see test-kv-cluster.
 * etcd's non-v2 endpoints (/v3 gateway, /debug/vars, /config/local/log) are not served. */
static const KnownDiff known_diffs[] = {
        { "PUT", "/v2/keys/nul", "value=a%00b", NUL_BYTE },
        { "PUT", "/v2/keys/nul%00x", "value=1", NUL_BYTE },
        { "PUT", "/v2/keys/nul?value=%00", NULL, NUL_BYTE },
        { "GET", "/v2/keys/nul?x=%00", NULL, NUL_BYTE },
        { "GET", "/v2/auth/enable", NULL, NO_AUTH },
        { "PUT", "/v2/auth/enable", NULL, NO_AUTH },
        { "DELETE", "/v2/auth/enable", NULL, NO_AUTH },
        { "GET", "/v2/auth/users", NULL, NO_AUTH },
        { "GET", "/v2/auth/users/root", NULL, NO_AUTH },
        { "GET", "/v2/auth/roles", NULL, NO_AUTH },
        { "GET", "/v2/auth/roles/root", NULL, NO_AUTH },
        { "GET", "/metrics", NULL, METRICS },
        { "POST", "/metrics", NULL, METRICS },
};

typedef struct Side {
        const char *name;
        TestKvCluster *cluster;
        const char *base;
        char *id;                  /* member id, as /v2/stats/self shows it */
        char client_url[64], peer_url[64];
        HdXfer x, watch, aux;
        uint64_t counters[32];      /* FLOTILLA_TEST_STATS_EACH: the last /v2/stats/store */
} Side;

static Side etcd = { .name = "etcd" }, ours = { .name = "flotilla-kv" };
static CURLM *multi, *watch_multi;
static char *watch_what;
static uint64_t cur_index;
static unsigned n_compared, n_index_only, n_counters, n_failed, n_known;
static bool verbose, stats_each;
static const char *known_reason;   /* the request being sent is a known difference */

enum {
        CMP_SORTED = 1 << 0,       /* listings are sorted: keep their order */
        CMP_NUMBERS = 1 << 1,      /* every number in the body is replaced by '#' */
        CMP_INDEX_ONLY = 1 << 2,   /* only status and X-Etcd-Index must agree */
        CMP_HEAD = 1 << 3,         /* a HEAD request */
};

/* ---------------------------------------------------------------- normalization */

static void replace_all(Buf *b, const char *from, const char *to) {
        Buf o = BUF_INIT(0);
        size_t fl = strlen(from);
        const char *p = b->data ?: "", *q;

        buf_append(&o, "", 0);
        while ((q = strstr(p, from))) {
                buf_append(&o, p, (size_t) (q - p));
                buf_append_str(&o, to);
                p = q + fl;
        }
        buf_append_str(&o, p);
        buf_done(b);
        *b = o;
}

/* "name":"anything" -> "name":"*" */
static void blank_string_field(Buf *b, const char *name) {
        _cleanup_free_ char *pat = NULL;
        Buf o = BUF_INIT(0);
        const char *p = b->data ?: "", *q;

        assert_true(asprintf(&pat, "\"%s\":\"", name) > 0);
        buf_append(&o, "", 0);
        while ((q = strstr(p, pat))) {
                const char *e = strchr(q + strlen(pat), '"');
                buf_append(&o, p, (size_t) (q - p));
                buf_printf(&o, "%s*\"", pat);
                p = e ? e + 1 : q + strlen(q);
        }
        buf_append_str(&o, p);
        buf_done(b);
        *b = o;
}

static void numbers_to_hash(Buf *b) {
        Buf o = BUF_INIT(0);

        buf_append(&o, "", 0);
        for (const char *p = b->data ?: ""; *p;) {
                if (*p >= '0' && *p <= '9') {
                        buf_append(&o, "#", 1);
                        while (*p >= '0' && *p <= '9')
                                p++;
                } else
                        buf_append(&o, p++, 1);
        }
        buf_done(b);
        *b = o;
}

/* The body as compared: this server's own identity replaced, clock fields blanked. */
static char *normalize(const Side *s, const HdResp *r, unsigned flags, int64_t *ttls, size_t *n_ttls) {
        Buf b = BUF_INIT(0);
        char *n;

        buf_append_str(&b, r->body.data ?: "");
        replace_all(&b, s->client_url, "<client-url>");
        replace_all(&b, s->peer_url, "<peer-url>");
        if (s->id)
                replace_all(&b, s->id, "<member-id>");
        blank_string_field(&b, "startTime");
        blank_string_field(&b, "uptime");
        if (flags & CMP_NUMBERS)
                numbers_to_hash(&b);
        n = diff_normalize(b.data, flags & CMP_SORTED, ttls, n_ttls, 256);
        buf_done(&b);
        return n;
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return (x > y) - (x < y);
}

static bool ttls_close(int64_t *a, size_t na, int64_t *b, size_t nb) {
        if (na != nb)
                return false;
        qsort(a, na, sizeof(int64_t), cmp_i64);
        qsort(b, nb, sizeof(int64_t), cmp_i64);
        for (size_t i = 0; i < na; i++)
                if (llabs(a[i] - b[i]) > 1)
                        return false;
        return true;
}

/* ---------------------------------------------------------------- comparison */

static bool header_ignored(const char *name) {
        return strcasecmp(name, "Date") == 0 || strcasecmp(name, "Server") == 0 ||
               strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0;
}

static bool header_presence_only(const char *name) {
        return strcasecmp(name, "X-Raft-Index") == 0 || strcasecmp(name, "X-Raft-Term") == 0 ||
               strcasecmp(name, "X-Etcd-Cluster-Id") == 0;
}

static const char *framing(const HdResp *r) {
        const char *te = hd_resp_header(r, "Transfer-Encoding");
        if (te && strcasestr(te, "chunked"))
                return hd_resp_header(r, "Content-Length") ? "chunked+length" : "chunked";
        return hd_resp_header(r, "Content-Length") ? "length" : "none";
}

static size_t header_count(const HdResp *r, const char *name) {
        size_t n = 0;
        for (size_t i = 0; i < r->n_headers; i++)
                n += strcasecmp(r->names[i], name) == 0;
        return n;
}

static void headers_diff(const HdResp *a, const char *aname, const HdResp *b, Buf *why) {
        for (size_t i = 0; i < a->n_headers; i++) {
                const char *n = a->names[i], *bv;
                if (header_ignored(n))
                        continue;
                bv = hd_resp_header(b, n);
                if (!bv)
                        buf_printf(why, "    header %s only from %s\n", n, aname);
                else if (aname == etcd.name) {
                        /* Go canonicalizes names ("X-Etcd-Cluster-Id"): the same spelling. */
                        bool same = false;
                        for (size_t j = 0; j < b->n_headers && !same; j++)
                                same = streq(b->names[j], n);
                        if (!same)
                                buf_printf(why, "    header %s spelled differently by flotilla-kv\n", n);
                        if (header_count(a, n) != header_count(b, n))
                                buf_printf(why, "    header %s sent %zu times by etcd, %zu by flotilla-kv\n", n,
                                           header_count(a, n), header_count(b, n));
                }
                if (bv && aname == etcd.name && !header_presence_only(n) && !streq(a->values[i], bv))
                        buf_printf(why, "    header %s: etcd \"%s\", flotilla-kv \"%s\"\n", n, a->values[i], bv);
        }
}

/* Compares everything a client sees; appends the reasons of a mismatch to why, and sets
 * *ret_known when the only difference is a known one. */
static bool compare(const HdResp *e, const HdResp *f, unsigned flags, Buf *why, const char **ret_known) {
        size_t len0 = why->len;

        if (e->status != f->status)
                buf_printf(why, "    status: etcd %ld, flotilla-kv %ld\n", e->status, f->status);
        if (hd_resp_timed_out(e) != hd_resp_timed_out(f))
                buf_printf(why, "    %s kept waiting, the other answered\n", hd_resp_timed_out(e) ? "etcd" : "flotilla-kv");
        if (flags & CMP_INDEX_ONLY) {
                if (!streq_ptr(hd_resp_header(e, "X-Etcd-Index"), hd_resp_header(f, "X-Etcd-Index")))
                        buf_printf(why, "    X-Etcd-Index differs\n");
                return why->len == len0;
        }
        headers_diff(e, etcd.name, f, why);
        headers_diff(f, ours.name, e, why);
        if (!streq(framing(e), framing(f))) {
                if ((flags & CMP_HEAD) && streq(framing(e), "none") && streq(framing(f), "length") && why->len == len0)
                        *ret_known = HEAD_FRAMING;
                else
                        buf_printf(why, "    framing: etcd %s, flotilla-kv %s\n", framing(e), framing(f));
        }

        int64_t et[256], ot[256];
        size_t ne = 0, no = 0;
        _cleanup_free_ char *en = normalize(&etcd, e, flags, et, &ne);
        _cleanup_free_ char *on = normalize(&ours, f, flags, ot, &no);
        if (!streq(en, on))
                buf_printf(why, "    body differs\n");
        else if (!ttls_close(et, ne, ot, no))
                buf_printf(why, "    ttl values differ by more than 1 s\n");
        return why->len == len0;
}

static void dump(const char *name, const HdResp *r) {
        fprintf(stderr, "  %s: %ld%s\n", name, r->status, hd_resp_timed_out(r) ? " (timed out)" : "");
        for (size_t i = 0; i < r->n_headers; i++)
                fprintf(stderr, "    %s: %s\n", r->names[i], r->values[i]);
        if (r->body.len > 600)
                fprintf(stderr, "    body (%zu bytes): %.600s...\n", r->body.len, r->body.data);
        else
                fprintf(stderr, "    body: %s%s", r->body.data ?: "", r->body.len && r->body.data[r->body.len - 1] == '\n' ? "" : "\n");
}

static size_t numbers(const char *body, uint64_t *nums, size_t max);

/* Debugging aid: which request moved a /v2/stats/store counter differently. */
static void stats_each_check(const char *what) {
        uint64_t now[2][32];
        Side *sides[] = { &etcd, &ours };

        for (size_t i = 0; i < 2; i++) {
                HdXfer *xs[] = { &sides[i]->aux };
                assert_int_equal(hd_xfer_setup(&sides[i]->aux, sides[i]->base, "GET", "/v2/stats/store", NULL, 0, NULL, 20000), 0);
                hd_multi_run(multi, xs, 1);
                assert_int_equal(numbers(sides[i]->aux.resp.body.data, now[i], 32), 16);
        }
        for (size_t j = 0; j < 16; j++)
                if (now[0][j] - etcd.counters[j] != now[1][j] - ours.counters[j])
                        fprintf(stderr, "STATS %s: counter %zu moved by %" PRId64 " in etcd, %" PRId64 " in flotilla-kv\n", what, j,
                                (int64_t) (now[0][j] - etcd.counters[j]), (int64_t) (now[1][j] - ours.counters[j]));
        memcpy(etcd.counters, now[0], sizeof(etcd.counters));
        memcpy(ours.counters, now[1], sizeof(ours.counters));
}

static void report(const char *what, const HdResp *e, const HdResp *f, unsigned flags) {
        Buf why = BUF_INIT(0);
        const char *k = known_reason, *k2 = NULL;
        bool ok = compare(e, f, flags, &why, &k2);
        uint64_t idx;

        if (stats_each)
                stats_each_check(what);
        if (ok && k2) {
                /* Equal but for a known difference of framing. */
                ok = false;
                k = k ?: k2;
        }

        if (flags & CMP_INDEX_ONLY)
                n_index_only++;
        else
                n_compared++;
        if (hd_resp_index(e, &idx) && idx > cur_index)
                cur_index = idx;
        if (verbose)
                fprintf(stderr, "%s -> etcd %ld, flotilla-kv %ld%s%s\n", what, e->status, f->status,
                        ok ? "" : k ? " known difference: " : " MISMATCH", ok || !k ? "" : k);
        if (k && ok) {
                n_failed++;
                fprintf(stderr, "KNOWN DIFFERENCE NO LONGER DIFFERS: %s (remove it from known_diffs)\n", what);
        } else if (k)
                n_known++;
        else if (!ok) {
                n_failed++;
                fprintf(stderr, "MISMATCH %s\n%s", what, why.data);
                dump("etcd", e);
                dump("flotilla-kv", f);
        }
        buf_done(&why);
}

/* ---------------------------------------------------------------- the driver */

static void request_ex(const char *method, const char *pq, const char *body, size_t body_len, const char *ctype,
                       unsigned flags) {
        _cleanup_free_ char *what = NULL;
        bool wait = strstr(pq, "wait=true") != NULL;
        long timeout = wait ? 1500 : 20000;
        HdXfer *xs[] = { &etcd.x, &ours.x };

        if (strstr(pq, "sorted=true"))
                flags |= CMP_SORTED;
        if (streq(method, "HEAD"))
                flags |= CMP_HEAD;
        assert_true(asprintf(&what, "%s %s%s%.*s%s", method, pq, body ? " | " : "", body ? (int) MIN(body_len, (size_t) 80) : 0,
                             body ?: "", body && body_len > 80 ? "..." : "") > 0);
        /* A body larger than the server reads (10 MiB forms) is refused without changing anything,
         * but the server may close the connection while curl is still sending, before curl has
         * read the answer (seen on a loaded machine): such a request is sent again. */
        for (int attempt = 0; attempt < 3; attempt++) {
                assert_int_equal(hd_xfer_setup(&etcd.x, etcd.base, method, pq, body, body_len, ctype, timeout), 0);
                assert_int_equal(hd_xfer_setup(&ours.x, ours.base, method, pq, body, body_len, ctype, timeout), 0);
                hd_multi_run(multi, xs, 2);
                if (body_len <= (10U << 20) ||
                    (etcd.x.resp.result != CURLE_SEND_ERROR && ours.x.resp.result != CURLE_SEND_ERROR))
                        break;
        }
        for (size_t i = 0; i < 2; i++) {
                CURLcode rc = xs[i]->resp.result;
                if (rc != CURLE_OK && !(rc == CURLE_OPERATION_TIMEDOUT && wait && xs[i]->resp.status > 0)) {
                        n_failed++;
                        fprintf(stderr, "FAILED %s on %s: %s\n", what, i ? ours.name : etcd.name, curl_easy_strerror(rc));
                }
        }
        report(what, &etcd.x.resp, &ours.x.resp, flags);
}

static uint64_t expire_count(Side *s);
static uint64_t expired_base_etcd, expired_base_ours;

/* True if etcd's answer to a write shows a node that is already due to expire (ttl=0, or a
 * huge ttl that wrapped into the past). */
static bool wrote_expired_node(const HdResp *r) {
        const char *b = r->body.data ?: "", *prev = strstr(b, "\"prevNode\":"), *e = strstr(b, "\"expiration\":\"");
        struct tm tm = {};

        if ((r->status != 200 && r->status != 201) || !e || (prev && e > prev))
                return false;
        if (!strptime(e + strlen("\"expiration\":\""), "%Y-%m-%dT%H:%M:%S", &tm))
                return false;
        return (int64_t) timegm(&tm) <= (int64_t) time(NULL);
}

static void http_request(const char *method, const char *pq, const char *form) {
        bool write = streq(method, "PUT") || streq(method, "POST");
        uint64_t e0 = 0, f0 = 0;

        if (write) {
                e0 = expire_count(&etcd);
                f0 = expire_count(&ours);
        }
        request_ex(method, pq, form, form ? strlen(form) : 0, NULL, 0);
        if (write && wrote_expired_node(&etcd.x.resp)) {
                /* Such a key expires at the next expiry check of each server (every 500 ms in
                 * etcd, a SYNC within about 500 ms in flotilla-kv): wait for both, so that the
                 * next requests do not race them. */
                usec_t end = now_usec(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;
                uint64_t e, f;
                do {
                        usleep(50 * 1000);
                        e = expire_count(&etcd);
                        f = expire_count(&ours);
                } while ((e == e0 || f == f0 || e - expired_base_etcd != f - expired_base_ours) &&
                         now_usec(CLOCK_MONOTONIC) < end);
        }
}

static void http_quick_put(const char *pq, const char *form) {
        request_ex("PUT", pq, form, strlen(form), NULL, CMP_INDEX_ONLY);
}

static uint64_t http_index(void) {
        return cur_index;
}

static void http_watch_begin(const char *pq) {
        HdXfer *xs[] = { &etcd.watch, &ours.watch };
        usec_t end = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;

        free(watch_what);
        assert_true(asprintf(&watch_what, "WATCH %s", pq) > 0);
        assert_int_equal(hd_xfer_setup(&etcd.watch, etcd.base, "GET", pq, NULL, 0, NULL, 20000), 0);
        assert_int_equal(hd_xfer_setup(&ours.watch, ours.base, "GET", pq, NULL, 0, NULL, 20000), 0);
        for (size_t i = 0; i < 2; i++) {
                xs[i]->resp.done = false;
                curl_multi_add_handle(watch_multi, xs[i]->easy);
        }
        /* Both flush their headers once the watcher is registered. */
        while (now_usec(CLOCK_MONOTONIC) < end &&
               !(hd_resp_header(&etcd.watch.resp, "X-Etcd-Index") && hd_resp_header(&ours.watch.resp, "X-Etcd-Index")))
                (void) hd_multi_step(watch_multi, xs, 2, 20);
        if (!hd_resp_header(&etcd.watch.resp, "X-Etcd-Index") || !hd_resp_header(&ours.watch.resp, "X-Etcd-Index")) {
                n_failed++;
                fprintf(stderr, "MISMATCH %s: headers not flushed (etcd %s, flotilla-kv %s)\n", watch_what,
                        hd_resp_header(&etcd.watch.resp, "X-Etcd-Index") ? "yes" : "no",
                        hd_resp_header(&ours.watch.resp, "X-Etcd-Index") ? "yes" : "no");
        }
}

static unsigned lines(const HdResp *r) {
        unsigned n = 0;
        for (size_t i = 0; i < r->body.len; i++)
                n += r->body.data[i] == '\n';
        return n;
}

static void http_watch_end(unsigned n) {
        HdXfer *xs[] = { &etcd.watch, &ours.watch };
        usec_t end = now_usec(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;
        bool stream = strstr(watch_what, "stream=true");

        for (;;) {
                int running = hd_multi_step(watch_multi, xs, 2, 20);
                bool enough = lines(&etcd.watch.resp) >= n && lines(&ours.watch.resp) >= n;
                /* A long poll ends after its event; a stream stays open. */
                if (running == 0 || (enough && (stream || (etcd.watch.resp.done && ours.watch.resp.done))) ||
                    now_usec(CLOCK_MONOTONIC) >= end)
                        break;
        }
        report(watch_what, &etcd.watch.resp, &ours.watch.resp, CMP_SORTED);
        if (lines(&etcd.watch.resp) != n) {
                n_failed++;
                fprintf(stderr, "MISMATCH %s: expected %u events from etcd, got %u\n", watch_what, n, lines(&etcd.watch.resp));
        }
        for (size_t i = 0; i < 2; i++)
                curl_multi_remove_handle(watch_multi, xs[i]->easy);
}

/* /v2/stats/store without touching the counters it shows. */
static uint64_t expire_count(Side *s) {
        HdXfer *xs[] = { &s->x };
        const char *p;

        assert_int_equal(hd_xfer_setup(&s->x, s->base, "GET", "/v2/stats/store", NULL, 0, NULL, 20000), 0);
        hd_multi_run(multi, xs, 1);
        p = strstr(s->x.resp.body.data ?: "", "\"expireCount\":");
        assert_non_null(p);
        return strtoull(p + strlen("\"expireCount\":"), NULL, 10);
}

/* Waits, then until both have expired as many keys (etcd checks every 500 ms; flotilla-kv's
 * leader proposes a SYNC within about 500 ms of an expiration), then learns the index. */
static void http_sleep_sync(unsigned ms) {
        usec_t end;

        usleep(ms * 1000);
        end = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
        while (expire_count(&etcd) - expired_base_etcd != expire_count(&ours) - expired_base_ours &&
               now_usec(CLOCK_MONOTONIC) < end)
                usleep(100 * 1000);
        http_request("HEAD", "/v2/keys/", NULL);
}

static const DiffDriver http_driver = {
        .request = http_request,
        .watch_begin = http_watch_begin,
        .watch_end = http_watch_end,
        .sleep_sync = http_sleep_sync,
        .index = http_index,
        .quick_put = http_quick_put,
};

/* ---------------------------------------------------------------- /v2/stats/store */

typedef struct StatsPoint {
        uint64_t etcd[32], ours[32];
        size_t n_etcd, n_ours;
} StatsPoint;

static size_t numbers(const char *body, uint64_t *nums, size_t max) {
        size_t n = 0;
        for (const char *p = body ?: ""; *p;)
                if (*p >= '0' && *p <= '9' && n < max) {
                        char *e;
                        nums[n++] = strtoull(p, &e, 10);
                        p = e;
                } else
                        p++;
        return n;
}

/* Compared as a request (numbers blanked), and its counters kept. */
static void stats_point(StatsPoint *sp) {
        request_ex("GET", "/v2/stats/store", NULL, 0, NULL, CMP_NUMBERS);
        sp->n_etcd = numbers(etcd.x.resp.body.data, sp->etcd, ELEMENTSOF(sp->etcd));
        sp->n_ours = numbers(ours.x.resp.body.data, sp->ours, ELEMENTSOF(sp->ours));
}

static void stats_compare(const char *during, const StatsPoint *a, const StatsPoint *b) {
        static const char *const names[] = {
                "getsSuccess", "getsFail", "setsSuccess", "setsFail", "deleteSuccess", "deleteFail", "updateSuccess",
                "updateFail", "createSuccess", "createFail", "compareAndSwapSuccess", "compareAndSwapFail",
                "compareAndDeleteSuccess", "compareAndDeleteFail", "expireCount", "watchers",
        };

        assert_int_equal(a->n_etcd, b->n_etcd);
        assert_int_equal(a->n_ours, b->n_ours);
        assert_int_equal(a->n_etcd, a->n_ours);
        for (size_t i = 0; i < a->n_etcd; i++) {
                n_counters++;
                if (b->etcd[i] - a->etcd[i] != b->ours[i] - a->ours[i]) {
                        n_failed++;
                        fprintf(stderr, "MISMATCH /v2/stats/store during %s: %s moved by %" PRId64 " in etcd, %" PRId64 " in flotilla-kv\n",
                                during, i < ELEMENTSOF(names) ? names[i] : "?", (int64_t) (b->etcd[i] - a->etcd[i]),
                                (int64_t) (b->ours[i] - a->ours[i]));
                }
        }
}

/* ---------------------------------------------------------------- the other endpoints */

/* A request on each server's own member id. Only methods that change nothing: never remove or
 * change the only member. */
static void request_own_member(const char *method) {
        _cleanup_free_ char *pe = NULL, *pf = NULL, *what = NULL;
        HdXfer *xs[] = { &etcd.x, &ours.x };

        if (!streq(method, "GET") && !streq(method, "HEAD") && !streq(method, "OPTIONS") && !streq(method, "PATCH"))
                return;
        assert_true(asprintf(&pe, "/v2/members/%s", etcd.id) > 0);
        assert_true(asprintf(&pf, "/v2/members/%s", ours.id) > 0);
        assert_true(asprintf(&what, "%s /v2/members/<own id>", method) > 0);
        assert_int_equal(hd_xfer_setup(&etcd.x, etcd.base, method, pe, NULL, 0, NULL, 20000), 0);
        assert_int_equal(hd_xfer_setup(&ours.x, ours.base, method, pf, NULL, 0, NULL, 20000), 0);
        hd_multi_run(multi, xs, 2);
        report(what, &etcd.x.resp, &ours.x.resp, streq(method, "HEAD") ? CMP_HEAD : 0);
}

static void script_endpoints(void) {
        static const char *const methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO" };
        static const char *const paths[] = {
                "/v2/members", "/v2/members/", "/v2/members/leader", "/v2/members/leader/", "/v2/members/abc",
                "/v2/members/xyz", "/v2/members/<member-id>", "/v2/machines", "/v2/machines/", "/v2/machines/x",
                "/version", "/version/", "/health", "/health/", "/v2/stats/self", "/v2/stats/self/", "/v2/stats/leader",
                "/v2/stats/leader/", "/v2/stats/nope", "/v2/stats", "/v2/stats/", "/v2/stats/store/", "/", "/nope",
                "/v2", "/v2/", "/v2/keysx", "/v2/leader", "/v2/auth", "/v2/members//x", "/v2/stats/./self",
                "//version", "/v2/machines/../machines", "/v2/keys/../members",
        };

        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                for (size_t j = 0; j < ELEMENTSOF(methods); j++) {
                        if (streq(paths[i], "/v2/members/<member-id>"))
                                request_own_member(methods[j]);
                        else if (!streq(paths[i], "/v2/stats/store") || !streq(methods[j], "GET"))
                                request_ex(methods[j], paths[i], NULL, 0, NULL, 0);
                }
        /* Its counters differ in absolute value: shape and headers here, deltas at the stats points. */
        request_ex("HEAD", "/v2/stats/store", NULL, 0, NULL, CMP_NUMBERS);

        /* Membership changes: only requests that change nothing in either cluster. */
        static const struct {
                const char *method, *path, *ctype, *body;
        } member_reqs[] = {
                { "POST", "/v2/members", NULL, NULL },
                { "POST", "/v2/members", "text/plain", "{}" },
                { "POST", "/v2/members", "application/x-www-form-urlencoded", "peerURLs=http://127.0.0.1:1" },
                { "POST", "/v2/members", "Application/JSON; charset=utf-8", "" },
                { "POST", "/v2/members", "application/json", "{}" },
                { "POST", "/v2/members", "application/json", "{\"peerURLs\":[]}" },
                { "POST", "/v2/members", "application/json", "{\"peerURLs\":null}" },
                { "POST", "/v2/members", "application/json", "{\"peerURLs\":[\"ftp://127.0.0.1:1\"]}" },
                { "POST", "/v2/members", "application/json", "{\"peerURLs\":[\"http://127.0.0.1\"]}" },
                { "POST", "/v2/members", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1/path\"]}" },
                { "POST", "/v2/members/", "application/json", "{\"peerURLs\":[]}" },
                { "POST", "/v2/members/abc", "application/json", "{\"peerURLs\":[]}" },
                { "PUT", "/v2/members", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}" },
                { "PUT", "/v2/members/", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}" },
                { "PUT", "/v2/members/xyz", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}" },
                { "PUT", "/v2/members/abc", NULL, NULL },
                { "PUT", "/v2/members/abc", "application/json", "{}" },
                { "PUT", "/v2/members/abc", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}" },
                { "PUT", "/v2/members/00ABC", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}" },
                { "PUT", "/v2/members/10000000000000000", "application/json", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}" },
                { "DELETE", "/v2/members", NULL, NULL },
                { "DELETE", "/v2/members/", NULL, NULL },
                { "DELETE", "/v2/members/xyz", NULL, NULL },
                { "DELETE", "/v2/members/0x1", NULL, NULL },
                { "DELETE", "/v2/members/abc", NULL, NULL },
                { "DELETE", "/v2/members/00abc", NULL, NULL },
                { "DELETE", "/v2/members/abc/def", NULL, NULL },
                { "DELETE", "/v2/members/leader", NULL, NULL },
                { "GET", "/v2/members?x=1", NULL, NULL },
                { "GET", "/v2/members/leader?x=1", NULL, NULL },
                { "GET", "/v2/machines?x=1", NULL, NULL },
                { "GET", "/version?x=1", NULL, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(member_reqs); i++)
                request_ex(member_reqs[i].method, member_reqs[i].path, member_reqs[i].body,
                           member_reqs[i].body ? strlen(member_reqs[i].body) : 0, member_reqs[i].ctype, 0);
}

static void script_known(void) {
        for (size_t i = 0; i < ELEMENTSOF(known_diffs); i++) {
                const KnownDiff *k = &known_diffs[i];
                known_reason = k->reason;
                request_ex(k->method, k->target, k->body, k->body ? strlen(k->body) : 0, NULL, 0);
        }
        known_reason = NULL;
}

/* A request whose body names each server's own peer URL. */
static void request_own_peer(const char *method, const char *path) {
        _cleanup_free_ char *be = NULL, *bf = NULL, *what = NULL;
        HdXfer *xs[] = { &etcd.x, &ours.x };

        assert_true(asprintf(&be, "{\"peerURLs\":[\"%s\"]}", etcd.peer_url) > 0);
        assert_true(asprintf(&bf, "{\"peerURLs\":[\"%s\"]}", ours.peer_url) > 0);
        assert_true(asprintf(&what, "%s %s | {\"peerURLs\":[\"<own peer URL>\"]}", method, path) > 0);
        assert_int_equal(hd_xfer_setup(&etcd.x, etcd.base, method, path, be, strlen(be), "application/json", 20000), 0);
        assert_int_equal(hd_xfer_setup(&ours.x, ours.base, method, path, bf, strlen(bf), "application/json", 20000), 0);
        hd_multi_run(multi, xs, 2);
        report(what, &etcd.x.resp, &ours.x.resp, 0);
}

/* Go's ServeMux redirects to the clean path, escaped again, with the query as received. */
static void script_redirects(void) {
        static const char *const targets[] = {
                "/v2/keys//a%20b?x=1&y=%3C", "/v2/keys//%E2%82%AC", "/v2/keys//a%3Fb", "/v2/keys//a%2Fb",
                "/v2/keys/./a!*'()[]", "/v2/keys//a?", "/v2/keys/a/../../b", "/v2/keys/.././x?wait=true",
                "/v2//members", "/./health", "/v2/stats//store?a=\"b\"",
        };
        static const char *const methods[] = { "GET", "HEAD", "PUT", "POST", "DELETE" };

        for (size_t i = 0; i < ELEMENTSOF(targets); i++)
                for (size_t j = 0; j < ELEMENTSOF(methods); j++)
                        request_ex(methods[j], targets[i], NULL, 0, NULL, 0);
}

/* Bodies the form parser must ignore or refuse as Go's ParseForm does. */
static void script_bodies(void) {
        size_t n = KV_MAX_VALUE_SIZE, huge = n + (2U << 20);
        char *big = malloc(huge + 1);

        request_ex("PUT", "/v2/keys/fb?dir=true", NULL, 0, NULL, 0);
        request_ex("DELETE", "/v2/keys/fb", "dir=true", 8, "application/x-www-form-urlencoded", 0);
        request_ex("GET", "/v2/keys/fb", "wait=true", 9, "application/x-www-form-urlencoded", 0);
        request_ex("PATCH", "/v2/keys/fb", "value=1", 7, "application/x-www-form-urlencoded", 0);
        request_ex("PUT", "/v2/keys/fb/json", "{\"value\":\"x\"}", 13, "application/json", 0);
        request_ex("POST", "/v2/keys/fb", "value=1", 7, "text/plain", 0);
        request_ex("PUT", "/v2/keys/fb/ct", "value=1", 7, "Application/X-WWW-Form-Urlencoded; charset=utf-8", 0);
        request_ex("GET", "/v2/keys/fb?recursive=true&sorted=true", NULL, 0, NULL, 0);
        request_ex("DELETE", "/v2/keys/fb?recursive=true", NULL, 0, NULL, 0);

        /* Go reads at most 10 MiB of a form: a value that fills it is stored, one byte more is 210. */
        assert_non_null(big);
        memcpy(big, "value=", 6);
        for (size_t i = 6; i < huge; i++)
                big[i] = (char) ('a' + i % 26);
        big[huge] = 0;
        request_ex("PUT", "/v2/keys/limit", big, n, NULL, 0);
        request_ex("PUT", "/v2/keys/limit?prevExist=true", big, n + 1, NULL, 0);
        request_ex("PUT", "/v2/keys/limit?value=%zz", big, n + 1, NULL, 0);
        request_ex("PUT", "/v2/keys/limit?prevExist=true", big, huge, NULL, 0);
        request_ex("POST", "/v2/keys/limit", big, huge, "application/x-www-form-urlencoded", 0);
        request_ex("DELETE", "/v2/keys/limit", NULL, 0, NULL, 0);
        /* Go drains up to 256 KiB of a body left unread, and closes the connection past that. */
        request_ex("POST", "/v2/keys/limit3?value=1", big, 200U << 10, "text/plain", 0);
        request_ex("POST", "/v2/keys/limit3?value=2", big, 300U << 10, "text/plain", 0);
        request_ex("GET", "/version", big, 300U << 10, "text/plain", 0);
        request_ex("OPTIONS", "/v2/keys/limit3", big, 300U << 10, "text/plain", 0);
        request_ex("DELETE", "/v2/keys/limit3?recursive=true", NULL, 0, NULL, 0);
        /* Any other body is never read: a huge one changes nothing. */
        request_ex("PUT", "/v2/keys/limit2?value=q", big, huge, "application/octet-stream", 0);
        request_ex("DELETE", "/v2/keys/limit2", big, huge, "application/x-www-form-urlencoded", 0);
        free(big);

        request_own_peer("POST", "/v2/members");
}

/* ---------------------------------------------------------------- setup */

static void start(Side *s, const char *bin) {
        assert_int_equal(setenv("FLOTILLA_TEST_KV_BIN", bin, 1), 0);
        assert_int_equal(test_kv_cluster_start(&s->cluster, 1), 0);
        s->base = s->cluster->urls[0];
        (void) snprintf(s->client_url, sizeof(s->client_url), "%s", s->cluster->urls[0]);
        (void) snprintf(s->peer_url, sizeof(s->peer_url), "http://127.0.0.1:%d", s->cluster->peer_ports[0]);
}

/* The member id from /v2/stats/self, which touches no counter. */
static void learn_id(Side *s) {
        HdXfer *xs[] = { &s->x };
        const char *p, *e;

        assert_int_equal(hd_xfer_setup(&s->x, s->base, "GET", "/v2/stats/self", NULL, 0, NULL, 20000), 0);
        hd_multi_run(multi, xs, 1);
        p = strstr(s->x.resp.body.data ?: "", "\"id\":\"");
        assert_non_null(p);
        p += strlen("\"id\":\"");
        e = strchr(p, '"');
        assert_non_null(e);
        s->id = strndup(p, (size_t) (e - p));
}

static uint64_t side_do(Side *s, const char *method, const char *pq, const char *form) {
        HdXfer *xs[] = { &s->x };
        uint64_t idx = 0;

        assert_int_equal(hd_xfer_setup(&s->x, s->base, method, pq, form, form ? strlen(form) : 0, NULL, 20000), 0);
        hd_multi_run(multi, xs, 1);
        assert_true(hd_resp_index(&s->x.resp, &idx));
        return idx;
}

/* etcd starts past index 0 (membership lives in its v2 store): writes to a hidden key bring
 * flotilla-kv to the same index. Waits until etcd's index is stable first. */
static void align_indices(void) {
        uint64_t e = side_do(&etcd, "GET", "/v2/keys/", NULL), f, prev;

        do {
                prev = e;
                usleep(300 * 1000);
                e = side_do(&etcd, "GET", "/v2/keys/", NULL);
        } while (e != prev);
        f = side_do(&ours, "GET", "/v2/keys/", NULL);
        assert_true(f + 1 < e);
        while (f + 1 < e)
                f = side_do(&ours, "PUT", "/v2/keys/_pad", "value=p");
        f = side_do(&ours, "DELETE", "/v2/keys/_pad", NULL);
        assert_int_equal(f, e);
        cur_index = e;
}

static void test_http_differential(void **state) {
        const char *bin = getenv("FLOTILLA_TEST_FLOTILLA_KV_BIN");
        StatsPoint s0, s1, s2;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);

        if (!bin || access(bin, X_OK) < 0) {
                fprintf(stderr, "skipping: FLOTILLA_TEST_FLOTILLA_KV_BIN does not name the flotilla-kv binary\n");
                if (getenv("FLOTILLA_TEST_REQUIRE"))
                        fail();
                exit(TEST_EXIT_SKIP);
        }
        verbose = getenv("FLOTILLA_TEST_VERBOSE");
        stats_each = getenv("FLOTILLA_TEST_STATS_EACH");
        multi = curl_multi_init();
        watch_multi = curl_multi_init();
        start(&etcd, "etcd");
        start(&ours, bin);
        learn_id(&etcd);
        learn_id(&ours);
        align_indices();
        expired_base_etcd = expire_count(&etcd);
        expired_base_ours = expire_count(&ours);

        stats_point(&s0);
        diff_driver = &http_driver;
        diff_script_run();
        stats_point(&s1);
        stats_compare("the script", &s0, &s1);
        script_endpoints();
        script_redirects();
        script_bodies();
        stats_point(&s2);
        stats_compare("the other endpoints", &s1, &s2);
        script_known();

        fprintf(stderr,
                "http differential: %u requests compared in full and %u by index only, %u stats counter movements; "
                "%u known differences, %u mismatches (seed %u, %.1f s)\n",
                n_compared, n_index_only, n_counters, n_known, n_failed, diff_seed,
                (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC);
        for (Side *s = &etcd; s; s = s == &etcd ? &ours : NULL) {
                hd_xfer_done(&s->x);
                hd_xfer_done(&s->watch);
                hd_xfer_done(&s->aux);
                free(s->id);
                test_kv_cluster_stop(s->cluster);
        }
        curl_multi_cleanup(multi);
        curl_multi_cleanup(watch_multi);
        free(watch_what);
        assert_int_equal(n_failed, 0);
}

TEST_MAIN(cmocka_unit_test(test_http_differential));
