/* SPDX-License-Identifier: MIT */
/* /v2/keys requests from arbitrary bytes: "METHOD\nPATH\nname=value\n...". Parsing must never
 * crash, every error must render, and every command must survive the codec and be applied. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kv-request.h"
#include "kv-store.h"

typedef struct Params {
        char *lines[32];
        size_t n;
} Params;

static const char *param(void *userdata, const char *name) {
        Params *p = userdata;
        size_t l = strlen(name);
        for (size_t i = 0; i < p->n; i++)
                if (strncmp(p->lines[i], name, l) == 0 && p->lines[i][l] == '=')
                        return p->lines[i] + l + 1;
        return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1), *save = NULL, *method, *path;
        Params p = {};
        KvRequest r;

        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        method = strtok_r(text, "\n", &save);
        path = method ? strtok_r(NULL, "\n", &save) : NULL;
        for (char *l; path && p.n < 32 && (l = strtok_r(NULL, "\n", &save));)
                p.lines[p.n++] = l;
        if (path) {
                const char *esc = param(&p, "@escape");
                KvRequestInput in = { .method = method, .path = path, .bad_escape = esc, .param = param, .userdata = &p,
                                      .now_ns = 1700000000000000000 };
                if (kv_request_parse(&in, &r) == 0) {
                        Buf out = BUF_INIT(0);
                        if (r.kind == KV_REQUEST_ERROR && kv_store_render_error(r.error_code, r.error_cause, 0, &out) < 0)
                                abort();
                        if (r.kind == KV_REQUEST_COMMAND) {
                                KvStore *s = NULL;
                                KvStoreResult res = KV_STORE_RESULT_NULL;
                                KvCommand c;
                                if (kv_command_encode(&r.command, &out) == 0) {
                                        if (kv_command_decode(out.data, out.len, &c) != 0)
                                                abort();
                                        if (kv_store_new(&s) == 0 && kv_store_apply(s, &c, &res) == 0)
                                                kv_store_result_done(&res);
                                        kv_store_free(s);
                                }
                        }
                        buf_done(&out);
                        kv_request_done(&r);
                }
        }
        free(text);
        return 0;
}
