/* SPDX-License-Identifier: MIT */
/* flotillactl: shared state of one invocation (the loop, the KV client, output mode) and the
 * command groups. Each group parses its own verb and options. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "shared/kv-client.h"
#include "shared/time-util.h"

/* Exit codes, as etcdctl uses them. */
#define CTL_EXIT_OK      0
#define CTL_EXIT_USAGE   1  /* bad usage, or an answer that is not what the verb needs */
#define CTL_EXIT_SERVER  4  /* the cluster answered with an error, or could not be reached */

typedef enum CtlOutput {
        CTL_OUTPUT_SIMPLE,
        CTL_OUTPUT_EXTENDED,
        CTL_OUTPUT_JSON,
} CtlOutput;

typedef struct Ctl {
        sd_event *event;
        char **endpoints;
        CtlOutput output;
        usec_t timeout_usec;
        KvClient *kv;             /* created on first use */
        int exit_code;
        bool done;
} Ctl;

int ctl_kv_client(Ctl *c, KvClient **ret);
/* Runs the loop until the command finished (c->done); returns c->exit_code. */
int ctl_run(Ctl *c);
void ctl_finish(Ctl *c, int exit_code);

/* Command groups: argv[0] is the group name ("kv"). Return an exit code. */
int ctl_kv_main(Ctl *c, int argc, char **argv);
void ctl_kv_usage(FILE *f);
