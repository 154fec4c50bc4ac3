/* SPDX-License-Identifier: MIT */
/* A small benchmark of the state machine: 100,000 keys set, read, updated by compare-and-swap
 * and deleted, in ops/s, and the memory the tree costs per key (from mallinfo2). Not a test: it
 * reports numbers and never fails on them. */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <time.h>

#include "kv-store.h"

#define N 100000

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static size_t heap_used(void) {
        struct mallinfo2 mi = mallinfo2();
        return mi.uordblks + mi.hblkhd;
}

static long rss_kib(void) {
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/self/status", "re");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld", &v) == 1)
                        break;
        if (f)
                fclose(f);
        return v;
}

static void run(KvStore *s, const char *what, KvCommandMethod m, bool cas, bool render) {
        Buf out = BUF_INIT(0);
        char path[64], value[32];
        double t = now_s();

        for (unsigned i = 0; i < N; i++) {
                KvStoreResult res = KV_STORE_RESULT_NULL;
                snprintf(path, sizeof(path), "/bench/dir%03u/key%06u", i % 1000, i);
                snprintf(value, sizeof(value), "value-%u", i);
                KvCommand c = { .method = m, .path = path, .value = value, .has_value = true, .time_ns = 1 };
                if (cas)
                        c.prev_value = value, c.has_prev_value = true;
                if (kv_store_apply(s, &c, &res) < 0 || res.error_code) {
                        fprintf(stderr, "%s failed at %u\n", what, i);
                        return;
                }
                if (render) {
                        buf_clear(&out);
                        (void) kv_event_render(res.event, 1, &out);
                }
                kv_store_result_done(&res);
        }
        t = now_s() - t;
        printf("%-28s %10.0f ops/s\n", what, N / t);
        buf_done(&out);
}

int main(void) {
        KvStore *s = NULL;
        size_t before, after;

        before = heap_used();
        if (kv_store_new(&s) < 0)
                return 1;
        run(s, "set (new keys) + render", KV_METHOD_PUT, false, true);
        after = heap_used();
        printf("%-28s %10zu keys, %.1f MiB heap, %.0f bytes/key (incl. 1000-event history)\n", "memory", kv_store_count(s),
               (double) (after - before) / 1048576.0, (double) (after - before) / N);
        printf("%-28s %10ld KiB (whole process)\n", "VmRSS", rss_kib());
        run(s, "quorum get + render", KV_METHOD_QGET, false, true);
        run(s, "compareAndSwap + render", KV_METHOD_PUT, true, true);
        run(s, "set (existing), no render", KV_METHOD_PUT, false, false);
        run(s, "delete + render", KV_METHOD_DELETE, false, true);
        kv_store_free(s);
        return 0;
}
