/* SPDX-License-Identifier: MIT */
/* Small helpers for the kv-store unit tests: apply a command and render its result. */
#pragma once

#include <stdlib.h>
#include <string.h>

#include "kv-store.h"
#include "test-util.h"

#define T0 ((int64_t) 1700000000 * 1000000000) /* a fixed "now" for the tests */

/* Applies c and returns the rendered body (static buffer reused by each call); *status and
 * *index get the HTTP status and X-Etcd-Index. */
static inline const char *kv_test_apply(KvStore *s, KvCommand c, int *status, uint64_t *index) {
        static Buf out;
        KvStoreResult res = KV_STORE_RESULT_NULL;
        int st = 0;

        buf_clear(&out);
        if (!c.time_ns)
                c.time_ns = T0;
        assert_int_equal(kv_store_apply(s, &c, &res), 0);
        if (res.event || res.error_code)
                assert_int_equal(kv_store_result_render(&res, T0, &out, &st), 0);
        if (status)
                *status = st;
        if (index)
                *index = res.index;
        kv_store_result_done(&res);
        return out.data ?: "";
}

#define PUTV(s, p, v) kv_test_apply((s), (KvCommand) { .method = KV_METHOD_PUT, .path = (p), .value = (v), .has_value = true }, NULL, NULL)
