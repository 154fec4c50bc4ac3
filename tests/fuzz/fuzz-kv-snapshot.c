/* SPDX-License-Identifier: MIT */
/* Snapshots from arbitrary bytes. The checksum would stop almost every input at once, so the
 * target also loads the input with a freshly computed checksum appended, to reach the record
 * parser. What a successful load saves must load and save back to the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kv-store.h"

static uint32_t crc32_ieee(const uint8_t *p, size_t len) {
        uint32_t c = 0xFFFFFFFFU;
        for (size_t i = 0; i < len; i++) {
                c ^= p[i];
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFFU;
}

static void try_load(const uint8_t *p, size_t len) {
        KvStore *s = NULL;
        Buf out = BUF_INIT(0);

        if (kv_store_new(&s) < 0)
                return;
        if (kv_store_load(s, p, len) == 0) {
                KvStore *t = NULL;
                Buf again = BUF_INIT(0);

                /* Records may come in any parent-first order; what we save is canonical, so saving
                 * what we loaded from our own output must give the same bytes. */
                if (kv_store_save(s, &out) != 0 || kv_store_new(&t) < 0 || kv_store_load(t, out.data, out.len) != 0 ||
                    kv_store_save(t, &again) != 0 || again.len != out.len || memcmp(again.data, out.data, out.len) != 0)
                        abort();
                kv_store_free(t);
                buf_done(&again);
                KvStoreResult res = KV_STORE_RESULT_NULL;
                if (kv_store_get(s, "/", true, true, &res) == 0)
                        kv_store_result_done(&res);
        }
        buf_done(&out);
        kv_store_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *b = malloc(size + 4);
        uint32_t c;

        try_load(data, size);
        if (!b)
                return 0;
        memcpy(b, data, size);
        c = crc32_ieee(data, size);
        for (int i = 0; i < 4; i++)
                b[size + (size_t) i] = (uint8_t) (c >> (8 * i));
        try_load(b, size + 4);
        free(b);
        return 0;
}
