/* SPDX-License-Identifier: MIT */
/* Commands from arbitrary bytes: decoding must be strict and total, a decoded command must
 * re-encode to the same bytes, and applying a sequence of them (split at 0xFF 0xFE) must never
 * crash the store; the store's snapshot must load back identically. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kv-store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KvStore *s = NULL;
        Buf enc = BUF_INIT(0), snap = BUF_INIT(0), snap2 = BUF_INIT(0);
        size_t start = 0;

        if (kv_store_new(&s) < 0)
                return 0;
        for (size_t i = 0; i <= size; i++) {
                KvStoreResult res = KV_STORE_RESULT_NULL;
                KvCommand c;

                if (i < size && !(data[i] == 0xFF && i + 1 < size && data[i + 1] == 0xFE))
                        continue;
                if (kv_command_decode(data + start, i - start, &c) == 0) {
                        buf_clear(&enc);
                        if (kv_command_encode(&c, &enc) != 0 || enc.len != i - start || memcmp(enc.data, data + start, enc.len) != 0)
                                abort();
                        if (kv_store_apply(s, &c, &res) == 0) {
                                Buf out = BUF_INIT(0);
                                if ((res.event || res.error_code) && kv_store_result_render(&res, 0, &out, NULL) < 0)
                                        abort();
                                buf_done(&out);
                        }
                        kv_store_result_done(&res);
                }
                start = i + 2;
                i++;
        }
        if (kv_store_save(s, &snap) == 0) {
                KvStore *t = NULL;
                if (kv_store_new(&t) == 0) {
                        if (kv_store_load(t, snap.data, snap.len) != 0 || kv_store_save(t, &snap2) != 0 || snap.len != snap2.len ||
                            memcmp(snap.data, snap2.data, snap.len) != 0)
                                abort();
                        kv_store_free(t);
                }
        }
        buf_done(&enc);
        buf_done(&snap);
        buf_done(&snap2);
        kv_store_free(s);
        return 0;
}
