/* SPDX-License-Identifier: MIT */
/* The request sequence of the etcd differential tests, shared by test-kv-store-diff.c (etcd vs our
 * store in-process) and test-kv-http-diff.c (etcd vs a flotilla-kv daemon, both over HTTP). Each
 * test supplies a DiffDriver that sends a request to both sides and compares the answers; "$I"
 * and "$I-k" in a path or form stand for the current store index (minus k). */
#pragma once

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/macro.h"

typedef struct DiffDriver {
        /* One request to both sides, compared. path_query is the whole target ("/v2/keys/a?x=1"),
         * form the x-www-form-urlencoded body or NULL; both are expanded already. */
        void (*request)(const char *method, const char *path_query, const char *form);
        /* A live watch (GET path_query) on both sides, left pending while the next requests
         * run; watch_end waits for n events (lines), compares and ends it. */
        void (*watch_begin)(const char *path_query);
        void (*watch_end)(unsigned n);
        /* Waits ms, then until both sides have expired what is due. */
        void (*sleep_sync)(unsigned ms);
        /* The current store index (the same on both sides). */
        uint64_t (*index)(void);
        /* A PUT whose answers need only agree on the index (rolls the history quickly). */
        void (*quick_put)(const char *path_query, const char *form);
} DiffDriver;

static const DiffDriver *diff_driver;
static unsigned diff_seed = 1;

/* "$I" and "$I-k" in a request stand for the current index (minus k). */
static char *diff_expand(const char *s) {
        Buf b = BUF_INIT(0);

        buf_append(&b, "", 0); /* terminated even when s is empty */
        while (*s) {
                if (s[0] == '$' && s[1] == 'I') {
                        uint64_t v = diff_driver->index();
                        s += 2;
                        if (*s == '-') {
                                char *e;
                                v -= strtoull(s + 1, &e, 10);
                                s = e;
                        }
                        buf_printf(&b, "%" PRIu64, v);
                } else
                        buf_append(&b, s++, 1);
        }
        return buf_steal(&b);
}

static void check(const char *method, const char *pq_raw, const char *form_raw) {
        _cleanup_free_ char *pq = diff_expand(pq_raw), *form = form_raw ? diff_expand(form_raw) : NULL;
        diff_driver->request(method, pq, form);
}

static void keys(const char *method, const char *p, const char *form) {
        _cleanup_free_ char *pq = NULL;
        if (asprintf(&pq, "/v2/keys%s", p) < 0)
                abort();
        check(method, pq, form);
}

#define PUT(p, f) keys("PUT", p, f)
#define GET(p) keys("GET", p, NULL)
#define DEL(p) keys("DELETE", p, NULL)
#define POST(p, f) keys("POST", p, f)

static void watch_begin(const char *p) {
        _cleanup_free_ char *e = diff_expand(p), *pq = NULL;
        if (asprintf(&pq, "/v2/keys%s", e) < 0)
                abort();
        diff_driver->watch_begin(pq);
}

static void watch_end(unsigned n) {
        diff_driver->watch_end(n);
}

static void sleep_sync(unsigned ms) {
        diff_driver->sleep_sync(ms);
}

static void script_basics(void) {
        GET("/");
        PUT("/probe/a", "value=hello");
        PUT("/probe/a", "value=world");
        GET("/probe/a");
        GET("/probe/nonexist");
        GET("/probe/a/b/c");
        GET("/nope/b/c");
        PUT("/probe/a?prevValue=nope&prevIndex=1", "value=x");
        PUT("/probe/a?prevValue=nope", "value=x");
        PUT("/probe/a?prevIndex=1", "value=x");
        PUT("/probe/a?prevValue=world", "value=x");
        PUT("/probe/a?prevIndex=$I", "value=x2");
        PUT("/probe/a?prevIndex=0", "value=y");
        PUT("/probe/a?prevExist=false", "value=z");
        PUT("/probe/b?prevExist=true", "value=z");
        PUT("/probe/b?prevExist=false", "value=z");
        PUT("/probe/b?prevExist=true", "value=zz");
        PUT("/probe/b?prevExist=true&prevValue=zz", "value=q");
        PUT("/probe/b?prevExist=true&prevValue=bad", "value=q");
        PUT("/probe/b?prevExist=false&prevValue=bad", "value=q");
        PUT("/probe/q?dir=true", NULL);
        PUT("/probe/q?dir=true", NULL);
        PUT("/probe/q?dir=true&prevExist=false", NULL);
        PUT("/probe/q?prevValue=x", "value=1");
        PUT("/probe/a?dir=true", NULL);
        PUT("/probe/q/x/y", "value=1");
        GET("/probe?recursive=true&sorted=true");
        GET("/probe?sorted=true");
        GET("/probe");
        GET("/probe?recursive=true");
        PUT("/", "value=1");
        PUT("?prevExist=false", "value=1");
        PUT("?prevExist=true", "value=1");
        PUT("?prevValue=a", "value=1");
        DEL("/");
        DEL("/?prevValue=x");
        DEL("/?prevIndex=1");
        DEL("/probe/q");
        DEL("/probe/q?dir=true");
        DEL("/probe/q?dir=true&prevValue=x");
        DEL("/probe/q?recursive=true");
        DEL("/probe/b?prevValue=nope");
        DEL("/probe/b?prevIndex=1&prevValue=nope");
        DEL("/probe/b?prevValue=q");
        DEL("/probe/nothere");
        DEL("/probe/nothere/deeper?prevIndex=3");
        PUT("/probe/f", "value=1");
        DEL("/probe/f?recursive=true");
        PUT("/probe/f", "value=1");
        DEL("/probe/f?dir=true");
        PUT("/probe/f", "value=1");
        DEL("/probe/f?prevIndex=$I");
        POST("/queue", "value=first");
        POST("/queue", "value=second");
        POST("/queue?dir=true", NULL);
        POST("/queue", NULL);
        GET("/queue?sorted=true");
        GET("/queue?recursive=true&sorted=true");
        POST("/", "value=atroot");
        PUT("/probe/file", "value=1");
        POST("/probe/file", "value=x");
        PUT("/probe/file/sub", "value=1");
        PUT("/probe/file/sub?prevExist=false", "value=1");
        POST("/probe/file/sub/deeper", "value=1");
        GET("/probe/file/sub/deeper");
        DEL("/probe/file/sub");
}

static void script_hidden_and_dirs(void) {
        PUT("/hid/_secret", "value=s");
        PUT("/hid/visible", "value=v");
        PUT("/hid/_hdir/x", "value=1");
        GET("/hid?sorted=true");
        GET("/hid");
        GET("/hid/_secret");
        GET("/hid?recursive=true&sorted=true");
        GET("/hid/_hdir?recursive=true");
        PUT("/onlyhidden/_a", "value=1");
        GET("/onlyhidden");
        GET("/onlyhidden?recursive=true");
        PUT("/emptydir?dir=true", NULL);
        GET("/emptydir");
        GET("/emptydir?recursive=true&sorted=true");
        PUT("/emptydir?dir=true&prevExist=true", NULL);
        PUT("/emptydir?prevExist=true", "value=x");
        PUT("/emptydir?prevExist=true", "value=");
        DEL("/emptydir?dir=true");
        PUT("/d1/d2/d3/d4/leaf", "value=deep");
        GET("/d1?recursive=true&sorted=true");
        GET("/d1?recursive=true");
        GET("/d1/d2/d3/d4/leaf/more");
        DEL("/d1/d2?dir=true");
        DEL("/d1/d2?recursive=true&dir=false");
        PUT("/enc%2Fslash", "value=1");
        GET("/enc?recursive=true");
        GET("/enc%2fslash");
        PUT("/trail/", "value=1");
        GET("/trail");
        GET("/trail/");
        check("GET", "/v2/keys", NULL);
        check("GET", "/v2/keys/a//b", NULL);
        check("GET", "/v2/keys/a/../b", NULL);
        check("PUT", "/v2/keys/./x", "value=1");
        check("GET", "/v2/keysfoo", NULL);
        check("PATCH", "/v2/keys/x", NULL);
        check("OPTIONS", "/v2/keys/x", NULL);
        check("HEAD", "/v2/keys/trail", NULL);
        check("HEAD", "/v2/keys/nothere", NULL);
        check("HEAD", "/v2/keys/trail?wait=true", NULL);
        check("HEAD", "/v2/keys/trail?quorum=true", NULL);
}

static void script_params(void) {
        GET("/x?prevIndex=abc");
        GET("/x?prevIndex=-1");
        GET("/x?prevIndex=18446744073709551616");
        GET("/x?waitIndex=abc&wait=true");
        GET("/x?waitIndex=1x");
        GET("/x?recursive=maybe");
        GET("/x?recursive=");
        GET("/x?sorted=2");
        GET("/x?wait=yes");
        PUT("/x?dir=nope", NULL);
        GET("/x?quorum=x");
        GET("/x?stream=x");
        PUT("/x?wait=true", "value=1");
        DEL("/x?wait=true");
        POST("/x?wait=false", "value=1");
        PUT("/x?prevValue=", "value=1");
        PUT("/x?prevExist=maybe", "value=1");
        PUT("/x?prevExist=", "value=1");
        PUT("/x?refresh=maybe", "value=1");
        PUT("/x?noValueOnSuccess=maybe", "value=1");
        PUT("/x?noValueOnSuccess=true", "value=1");
        PUT("/x?noValueOnSuccess=true&prevExist=false", "value=1");
        PUT("/x?noValueOnSuccess=true&prevExist=true", "value=2");
        PUT("/x?noValueOnSuccess=true&prevValue=2", "value=3");
        DEL("/x?noValueOnSuccess=true");
        PUT("/x?value=%zz", NULL);
        PUT("/x?value=%4", NULL);
        PUT("/x?value=%", NULL);
        PUT("/x?val%zzue=1", "value=2");
        PUT("/x", "value=%zz");
        PUT("/x?a=1;b=2", "value=3");
        PUT("/x?prevIndex=", "value=1");
        PUT("/x?prevIndex=01", "value=1");
        PUT("/x?ttl=", "value=1");
        PUT("/fw?value=query", "value=body");
        GET("/fw");
        PUT("/fw?value=query", NULL);
        GET("/fw");
        PUT("/fw?recursive=TRUE&sorted=F&dir=0", "value=b");
        PUT("/fw", "value=a+b%2Bc%26d");
        GET("/fw");
        DEL("/fw");
        PUT("/plus+key", "value=1");
        GET("/plus+key");
        GET("/?quorum=true&sorted=true");
        GET("/probe?quorum=true&recursive=true&sorted=true");
        GET("/probe/a?quorum=true&wait=true");
        GET("/nothere?quorum=true");
        GET("/nothere?quorum=true&wait=true");
}

static void script_escaping(void) {
        PUT("/esc", "value=%3Ca%26b%3E%22%5C%0A%09%0D%01%1F%7F%E2%80%A8%E2%80%A9%FF%C3%A9%C3%28%E2%82%F0%9F%98%80");
        GET("/esc");
        PUT("/esc2", "value=%ED%A0%80%C0%80%EF%BF%BD%F4%90%80%80");
        GET("/esc2");
        PUT("/%E2%82k", "value=1");
        PUT("/%3Ck%3E%26", "value=1");
        PUT("/%C3%A9t%C3%A9", "value=%5Cu0000");
        GET("/?sorted=true");
        PUT("/x", "value=");
        GET("/x");
}

static void script_ttl(void) {
        PUT("/ttl/a", "value=x&ttl=300");
        GET("/ttl/a");
        PUT("/ttl/a?prevExist=true", "value=y");
        PUT("/ttl/a", "value=x&ttl=300");
        PUT("/ttl/a?prevExist=true", "value=y&ttl=");
        PUT("/ttl/a", "value=x&ttl=300");
        PUT("/ttl/a?prevValue=x", "value=z");
        PUT("/ttl/b", "value=x&ttl=-5");
        PUT("/ttl/b", "value=x&ttl=1.5");
        PUT("/ttl/b", "value=x&ttl=abc");
        PUT("/ttl/b", "value=x&ttl=%2B5");
        PUT("/ttl/r?refresh=true&ttl=100", NULL);
        PUT("/ttl/r", "value=v&ttl=100");
        PUT("/ttl/r?refresh=true", "value=v&ttl=100");
        PUT("/ttl/r?refresh=true", "value=&ttl=100");
        PUT("/ttl/r?refresh=true", NULL);
        PUT("/ttl/r?refresh=true&ttl=", NULL);
        PUT("/ttl/r?refresh=false", "value=w");
        PUT("/ttl/r?refresh=true&ttl=200", NULL);
        PUT("/ttl/r?refresh=true&ttl=200&prevExist=true", NULL);
        PUT("/ttl/r?refresh=true&ttl=200&prevValue=w", NULL);
        PUT("/ttl/r?refresh=true&ttl=200&prevValue=nope", NULL);
        PUT("/ttl/r?refresh=true&ttl=200&prevExist=false", NULL);
        GET("/ttl?wait=true&recursive=true&waitIndex=$I-3");
        PUT("/ttl/rd?dir=true", NULL);
        PUT("/ttl/rd?refresh=true&ttl=100", NULL);
        PUT("/ttl/rd?refresh=true&ttl=100&dir=true", NULL);
        PUT("/ttl/d?dir=true&ttl=100", NULL);
        PUT("/ttl/d?dir=true&prevExist=true&ttl=200", NULL);
        GET("/ttl/d");
        PUT("/ttl/d?dir=true&prevExist=true&ttl=300", NULL);
        PUT("/ttl/d?prevExist=true", "value=x");
        PUT("/ttl/d/child", "value=c");
        PUT("/ttl/d?prevExist=true&refresh=true&ttl=400", NULL);
        GET("/ttl?recursive=true&sorted=true");
        PUT("/ttl/big", "value=1&ttl=9223372037");
        PUT("/ttl/big2", "value=1&ttl=18446744073709551615");
        /* big2 is already due (the ttl wrapped into the past): let both expire it now, or etcd's
         * own 500 ms check may do it between two of the next requests and shift every index. */
        sleep_sync(1000);
        PUT("/ttl/big?prevExist=true", "value=1&ttl=9223372037");
        GET("/ttl/big");
        sleep_sync(1500);
        GET("/ttl?recursive=true&sorted=true");
        PUT("/ttl/zero", "value=1&ttl=0");
        sleep_sync(1000); /* due at once too */
        PUT("/ttl/one", "value=1&ttl=1");
        PUT("/ttl/ed/k", "value=1");
        PUT("/ttl/ed/_h", "value=1");
        PUT("/ttl/ed?dir=true&prevExist=true&ttl=1", NULL);
        PUT("/ttl/edir?dir=true&ttl=1", NULL);
        sleep_sync(2600);
        GET("/ttl?recursive=true&sorted=true");
        GET("/ttl/zero?wait=true&waitIndex=$I-6");
        GET("/ttl/ed/k?wait=true&waitIndex=$I-6");
        GET("/ttl/ed/_h?wait=true&waitIndex=$I-6");
        GET("/ttl?wait=true&recursive=true&waitIndex=$I-3");
        GET("/ttl/edx?wait=true&waitIndex=$I-3");
        GET("/ttl/edirx/y?wait=true&waitIndex=$I-3");
}

static void script_watch(void) {
        PUT("/w/k", "value=0");
        watch_begin("/w/k?wait=true");
        PUT("/w/other", "value=1");
        PUT("/w/k", "value=1");
        watch_end(1);
        watch_begin("/w?wait=true");
        PUT("/w/k2", "value=1");
        PUT("/w?dir=true&prevExist=true&ttl=500", NULL);
        watch_end(1);
        watch_begin("/w?wait=true&recursive=true");
        PUT("/w/_hidden", "value=1");
        PUT("/w/_hd/x", "value=1");
        PUT("/w/vis", "value=1");
        watch_end(1);
        watch_begin("/w/_hidden?wait=true");
        PUT("/w/_hidden", "value=2");
        watch_end(1);
        watch_begin("/?wait=true&recursive=true");
        PUT("/w/_x", "value=1");
        PUT("/_top", "value=1");
        PUT("/w/y", "value=1");
        watch_end(1);
        watch_begin("/w/k?wait=true");
        PUT("/w/k?refresh=true&ttl=100", NULL);
        DEL("/w?recursive=true");
        watch_end(1);
        GET("/w/_hidden?wait=true&waitIndex=$I-8");
        GET("/w?wait=true&recursive=true&waitIndex=$I-8");
        GET("/w?wait=true&recursive=true&waitIndex=$I-3");
        GET("/wz?wait=true&waitIndex=$I");
        GET("/w/k?wait=true&waitIndex=$I-2");
        GET("/w/k/deeper?wait=true&waitIndex=$I");

        PUT("/s/k", "value=1");
        watch_begin("/s/k?wait=true&stream=true");
        PUT("/s/k", "value=2");
        DEL("/s/k");
        PUT("/s/k", "value=3");
        PUT("/s/k?refresh=true&ttl=100", NULL);
        DEL("/s?recursive=true");
        watch_end(5);
        PUT("/s2/a/b", "value=1");
        watch_begin("/s2?wait=true&stream=true&recursive=true");
        PUT("/s2/a/c", "value=1");
        DEL("/s2/a/b");
        DEL("/s2?recursive=true");
        watch_end(4);
        PUT("/s3/k", "value=1");
        watch_begin("/s3/k?wait=true&stream=true");
        PUT("/s3/k?prevExist=true&ttl=1", "value=2");
        sleep_sync(2600);
        watch_end(3);
        GET("/s3/k?wait=true&stream=true&waitIndex=$I");
}

static const char *const rnd_names[] = { "a", "b", "c", "_h" };
static const char *const rnd_values[] = { "v1", "v2", "a%26b", "%3Cx%3E", "%C3%A9", "", "sp+ace", "v1" };

static unsigned rnd(unsigned n) {
        return (unsigned) (rand() % (int) n);
}

static void rnd_path(char *p, size_t size) {
        int depth = 1 + (int) rnd(3), k = snprintf(p, size, "/r");
        for (int i = 0; i < depth; i++)
                k += snprintf(p + k, size - (size_t) k, "/%s", rnd_names[rnd(4)]);
}

static void rnd_index(char *buf, size_t size) {
        uint64_t idx = diff_driver->index() - rnd(8);
        (void) snprintf(buf, size, "%" PRIu64, idx);
}

static void script_random(unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                char p[64], q[256], f[128], idx[32];
                const char *v = rnd_values[rnd(8)];
                unsigned op = rnd(16), ttl = 300 + rnd(600);

                rnd_path(p, sizeof(p));
                rnd_index(idx, sizeof(idx));
                q[0] = f[0] = 0;
                switch (op) {
                case 0: case 1:
                        snprintf(q, sizeof(q), "%s%s", p, rnd(8) == 0 ? "?dir=true" : "");
                        snprintf(f, sizeof(f), "value=%s%s%u", v, rnd(4) == 0 ? "&ttl=" : "&x=", ttl);
                        PUT(q, f);
                        break;
                case 2:
                        snprintf(q, sizeof(q), "%s?prevExist=false%s", p, rnd(3) == 0 ? "&dir=true" : "");
                        snprintf(f, sizeof(f), "value=%s", v);
                        PUT(q, f);
                        break;
                case 3:
                        snprintf(q, sizeof(q), "%s?prevExist=true%s", p, rnd(3) == 0 ? "&dir=true" : "");
                        snprintf(f, sizeof(f), "value=%s%s", rnd(3) ? v : "", rnd(3) == 0 ? "&ttl=" : "");
                        PUT(q, f);
                        break;
                case 4:
                        snprintf(q, sizeof(q), "%s?prevValue=%s", p, rnd(2) ? "v1" : "v2");
                        snprintf(f, sizeof(f), "value=%s", v);
                        PUT(q, f);
                        break;
                case 5:
                        snprintf(q, sizeof(q), "%s?prevIndex=%s%s", p, idx, rnd(2) ? "&prevValue=v1" : "");
                        snprintf(f, sizeof(f), "value=%s", v);
                        PUT(q, f);
                        break;
                case 6:
                        snprintf(q, sizeof(q), "%s?refresh=true&ttl=%u%s", p, ttl,
                                 rnd(3) == 0 ? "&prevExist=true" : rnd(2) ? "&prevValue=v1" : "");
                        PUT(q, NULL);
                        break;
                case 7:
                        snprintf(q, sizeof(q), "%s%s", p, rnd(3) == 0 ? "?dir=true" : rnd(2) ? "?recursive=true" : "");
                        DEL(q);
                        break;
                case 8:
                        snprintf(q, sizeof(q), "%s?%s", p, rnd(2) ? "prevValue=v1" : "prevIndex=");
                        if (q[strlen(q) - 1] == '=')
                                strncat(q, idx, sizeof(q) - strlen(q) - 1);
                        DEL(q);
                        break;
                case 9:
                        snprintf(q, sizeof(q), "%s%s", p, rnd(4) == 0 ? "?dir=true" : "");
                        snprintf(f, sizeof(f), "value=%s", v);
                        POST(q, f);
                        break;
                case 10: case 11: case 12:
                        snprintf(q, sizeof(q), "%s?sorted=%s&recursive=%s%s", rnd(3) ? p : "/r", rnd(2) ? "true" : "false",
                                 rnd(2) ? "true" : "false", rnd(4) == 0 ? "&quorum=true" : "");
                        GET(q);
                        break;
                case 13:
                        snprintf(q, sizeof(q), "%s?wait=true&waitIndex=$I-%u%s", rnd(2) ? p : "/r", rnd(20),
                                 rnd(2) ? "&recursive=true" : "");
                        GET(q);
                        break;
                default:
                        snprintf(f, sizeof(f), "value=%s", v);
                        PUT(p, f);
                        break;
                }
        }
        GET("/r?recursive=true&sorted=true");
}

static void script_history(void) {
        for (unsigned i = 0; i < 1010; i++) {
                char f[32];
                snprintf(f, sizeof(f), "value=%u", i);
                if (i % 100 == 0)
                        PUT("/hist/k", f);
                else
                        diff_driver->quick_put("/v2/keys/hist/k", f);
        }
        GET("/hist/k?wait=true&waitIndex=$I-1500");
        GET("/hist/k?wait=true&waitIndex=$I-1000");
        GET("/hist/k?wait=true&waitIndex=$I-999");
        GET("/hist?wait=true&recursive=true&waitIndex=$I-998");
        GET("/hist/k?wait=true&waitIndex=1");
}

static void script_big(void) {
        size_t n = 2 * 1024 * 1024;
        char *form = malloc(n + 7);
        memcpy(form, "value=", 6);
        for (size_t i = 0; i < n; i++)
                form[6 + i] = (char) ('a' + i % 26);
        form[6 + n] = 0;
        PUT("/big", form);
        GET("/big");
        DEL("/big");
        free(form);
}

static void diff_script_run(void) {
        const char *s = getenv("FLOTILLA_TEST_SEED");

        if (s)
                diff_seed = (unsigned) strtoul(s, NULL, 10);
        srand(diff_seed);
        script_basics();
        script_hidden_and_dirs();
        script_params();
        script_escaping();
        script_ttl();
        script_watch();
        script_random(600);
        script_big();
        script_history();
}
