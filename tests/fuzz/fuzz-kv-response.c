/* SPDX-License-Identifier: MIT */
/* etcd v2 response bodies from arbitrary bytes (what a hostile or broken server could send). */
#include "fuzz.h"
#include <stdint.h>
#include <stdlib.h>

#include "shared/kv-client.h"

static size_t count(const KvNode *n) {
        size_t c = 1;
        for (size_t i = 0; n && i < n->n_nodes; i++)
                c += count(n->nodes[i]);
        return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *action = NULL;
        KvNode *node = NULL, *prev = NULL;

        if (kv_parse_response((const char *) data, size, &action, &node, &prev) == 0) {
                if (!action)
                        abort(); /* success always names the action */
                (void) count(node);
                (void) count(prev);
        }
        free(action);
        kv_node_free(node);
        kv_node_free(prev);
        return 0;
}
