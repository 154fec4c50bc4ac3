/* SPDX-License-Identifier: MIT */
/* flotillactl's invocation state: one loop, a lazily created KV client, completion. */
#include <errno.h>
#include <stdio.h>

#include "ctl.h"
#include "shared/log.h"

int ctl_kv_client(Ctl *c, KvClient **ret) {
        KvClientConfig cfg = {
                .endpoints = c->endpoints,
                .request_timeout_usec = c->timeout_usec,
                .total_timeout_usec = c->timeout_usec,
        };
        int r;

        if (!c->kv) {
                r = kv_client_new(&c->kv, c->event, &cfg);
                if (r < 0)
                        return r;
        }
        *ret = c->kv;
        return 0;
}

void ctl_finish(Ctl *c, int exit_code) {
        c->exit_code = exit_code;
        c->done = true;
}

int ctl_run(Ctl *c) {
        while (!c->done) {
                int r = sd_event_run(c->event, UINT64_MAX);
                if (r < 0) {
                        fprintf(stderr, "Error:  event loop: %s\n", strerror(-r));
                        return CTL_EXIT_SERVER;
                }
        }
        return c->exit_code;
}
