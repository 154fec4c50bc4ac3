/* SPDX-License-Identifier: MIT */
/* Starts a KV cluster through test-kv-server.c for tests written in shell: prints
 * "ENDPOINTS url,url,..." once the members are healthy, then runs until stdin closes or a line
 * arrives, and stops the cluster. Exits 77 (skip) when the server binary is missing. */
#include <stdio.h>
#include <stdlib.h>

#include "test-kv-server.h"
#include "test-util.h"

int main(int argc, char **argv) {
        TestKvCluster *c = NULL;
        unsigned n = argc > 1 ? (unsigned) atoi(argv[1]) : 1;
        char line[64];

        test_init();
        if (test_kv_cluster_start(&c, n) < 0) {
                fprintf(stderr, "kv-launcher: cluster did not start\n");
                return EXIT_FAILURE;
        }
        printf("ENDPOINTS ");
        for (unsigned i = 0; i < c->n; i++)
                printf("%s%s", i ? "," : "", c->urls[i]);
        printf("\n");
        fflush(stdout);
        (void) !fgets(line, sizeof(line), stdin);
        test_kv_cluster_stop(c);
        return EXIT_SUCCESS;
}
