/* SPDX-License-Identifier: MIT */
/* flotilla-kv: configuration, then the member (Raft, storage, peers) and its client API on one
 * sd-event loop. Everything else lives in kv_core. */
#include <inttypes.h>
#include <stdlib.h>

#include "kv-api.h"
#include "kv-config.h"
#include "kv-node.h"
#include "shared/daemon.h"
#include "shared/log.h"

#define MAX_PASSED_FDS 8

static void on_fatal(int error, void *userdata) {
        (void) daemon_exit(userdata, error);
}

static KvNode *the_node;
static const char *the_name;

/* READY=1 once a leader is known: "started" means serving, as with etcd. */
static void on_serving(void *userdata) {
        Daemon *d = userdata;
        daemon_ready(d);
        daemon_status(d, "Serving the v2 API as member %s", the_name);
}

static void on_handed_over(void *userdata) {
        (void) daemon_exit(userdata, 0);
}

/* SIGTERM: a leader hands over first (a rolling restart costs no election timeout). */
static int on_stop(Daemon *d, void *userdata) {
        return kv_node_stop(the_node, on_handed_over, d);
}

static int run(int argc, char **argv) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        KvConfig cfg = {};
        KvNode *node = NULL;
        KvApi *api = NULL;
        int fds[MAX_PASSED_FDS], r;
        size_t n_fds = 0;

        log_set_ident("flotilla-kv");
        r = kv_config_load(&cfg, argc, argv);
        if (r <= 0)
                goto out;
        r = kv_config_validate(&cfg);
        if (r < 0)
                goto out;
        r = daemon_new(&d, "flotilla-kv");
        if (r < 0) {
                log_error_errno(r, "Failed to set up the daemon: %m");
                goto out;
        }
        /* Socket activation: sockets named "client" (or unnamed) serve the client API. */
        while (n_fds < MAX_PASSED_FDS && (fds[n_fds] = daemon_take_listen_fd(d, "client")) >= 0)
                n_fds++;
        if (daemon_untaken_listen_fds(d) > 0)
                log_warning("Ignoring %u passed socket(s) not named \"client\".", daemon_untaken_listen_fds(d));

        r = kv_node_new(&node, daemon_event(d), &cfg);
        if (r < 0)
                goto out;
        kv_node_on_fatal(node, on_fatal, d);
        the_node = node;
        daemon_on_stop(d, on_stop, NULL);
        r = kv_api_new(&api, daemon_event(d), node, &cfg, fds, n_fds);
        if (r < 0)
                goto out;

        the_name = cfg.name;
        kv_node_on_serving(node, on_serving, d);
        daemon_status(d, "Waiting for a leader");
        log_info("flotilla-kv %s: member %s serving clients on %s.", FLOTILLA_VERSION, cfg.name, cfg.listen_client_urls[0]);
        r = daemon_run(d);
out:
        kv_api_free(api);   /* first: ends waiting requests before the node fails them */
        kv_node_free(node);
        kv_config_free(&cfg);
        return r < 0 ? r : 0;
}

DEFINE_MAIN_FUNCTION(run)
