/* SPDX-License-Identifier: MIT */
/* flotillactl: one CLI for Flotilla. Global options, then a command group and its verb:
 *   flotillactl [--endpoints URLS] [--output simple|extended|json] [--timeout DURATION] kv get /a */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/parse-util.h"

static void usage(FILE *f) {
        fprintf(f,
                "flotillactl %s: one CLI for Flotilla\n\n"
                "Usage: flotillactl [OPTIONS] GROUP VERB [ARGS]\n\n"
                "Options:\n"
                "  --endpoints URLS        KV endpoints, comma separated (env FLOTILLA_KV_ENDPOINTS,\n"
                "                          ETCDCTL_ENDPOINTS; default http://127.0.0.1:2379)\n"
                "  -o, --output FORMAT     simple (default), extended or json\n"
                "  --timeout DURATION      per request, including retries (default 5s)\n"
                "  --help, --version\n\n"
                "Groups:\n"
                "  kv                      the etcd v2 key space (flotillactl kv help)\n",
                FLOTILLA_VERSION);
}

static int run(int argc, char **argv) {
        _cleanup_strv_free_ char **endpoints = NULL;
        const char *ep = getenv("FLOTILLA_KV_ENDPOINTS") ?: getenv("ETCDCTL_ENDPOINTS") ?: "http://127.0.0.1:2379";
        Ctl c = { .output = CTL_OUTPUT_SIMPLE, .timeout_usec = 5 * USEC_PER_SEC };
        int i, r;

        log_set_ident("flotillactl");
        log_set_max_level(LOG_ERR);
        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                const char *a = argv[i], *eq = strchr(a, '='), *v = NULL;
                char name[64];

                (void) snprintf(name, sizeof(name), "%.*s", (int) (eq ? eq - a : (long) strlen(a)), a);
                if (streq(name, "--help") || streq(name, "-h")) {
                        usage(stdout);
                        return CTL_EXIT_OK;
                }
                if (streq(name, "--version")) {
                        printf("flotillactl %s\n", FLOTILLA_VERSION);
                        return CTL_EXIT_OK;
                }
                if (!streq(name, "--endpoints") && !streq(name, "-C") && !streq(name, "--output") && !streq(name, "-o") &&
                    !streq(name, "--timeout")) {
                        fprintf(stderr, "Incorrect Usage: flag provided but not defined: %s\n", name);
                        return CTL_EXIT_USAGE;
                }
                v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
                if (!v) {
                        fprintf(stderr, "Incorrect Usage: %s needs a value\n", name);
                        return CTL_EXIT_USAGE;
                }
                if (streq(name, "--endpoints") || streq(name, "-C"))
                        ep = v;
                else if (streq(name, "--timeout")) {
                        if (parse_duration(v, USEC_PER_SEC, &c.timeout_usec) < 0 || c.timeout_usec == 0) {
                                fprintf(stderr, "Incorrect Usage: invalid --timeout '%s'\n", v);
                                return CTL_EXIT_USAGE;
                        }
                } else if (streq(v, "simple"))
                        c.output = CTL_OUTPUT_SIMPLE;
                else if (streq(v, "extended"))
                        c.output = CTL_OUTPUT_EXTENDED;
                else if (streq(v, "json"))
                        c.output = CTL_OUTPUT_JSON;
                else {
                        fprintf(stderr, "Incorrect Usage: unknown output format '%s' (simple, extended, json)\n", v);
                        return CTL_EXIT_USAGE;
                }
        }
        if (i >= argc) {
                usage(stderr);
                return CTL_EXIT_USAGE;
        }
        r = strv_split(ep, ",", &endpoints);
        if (r < 0 || strv_length(endpoints) == 0) {
                fprintf(stderr, "Incorrect Usage: no endpoints\n");
                return CTL_EXIT_USAGE;
        }
        c.endpoints = endpoints;
        r = sd_event_new(&c.event);
        if (r < 0) {
                fprintf(stderr, "Error:  %s\n", strerror(-r));
                return CTL_EXIT_SERVER;
        }
        if (streq(argv[i], "kv"))
                r = ctl_kv_main(&c, argc - i, argv + i);
        else {
                fprintf(stderr, "Incorrect Usage: unknown command group '%s'\n", argv[i]);
                usage(stderr);
                r = CTL_EXIT_USAGE;
        }
        kv_client_free(c.kv);
        sd_event_unref(c.event);
        return r;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
