/* SPDX-License-Identifier: MIT */
/* One configuration scheme for every daemon: built-in defaults < config file < environment <
 * command line. A daemon describes its options once, in a table; the table drives parsing of all
 * four sources, --help, and freeing. Every invalid value is an error that names the option and
 * where it came from ("--snapshot-count", "FLOTILLA_KV_SNAPSHOT_COUNT", "kv.conf:3").
 *
 * Sources:
 *   - defaults: ConfOption.def, parsed by the same parser as any other value;
 *   - file: --config PATH (or $<PREFIX>CONFIG, or ConfSpec.config_default if that file exists):
 *     lines of "key = value", '#' comments, keys are option names (kebab or snake case), values
 *     may be double-quoted. Unknown keys are errors: a typo must not be silently ignored;
 *   - environment: <env_prefix><NAME> with '-' as '_' upper-cased (FLOTILLA_KV_DATA_DIR), then
 *     <env_alias_prefix><NAME> (ETCD_DATA_DIR), then the option's own env_alias;
 *   - command line: --name value, --name=value, and single-dash -name value as Go's flag
 *     package (and so etcd's documentation) allows. Booleans take no value or "=false".
 * Options of type CONF_IGNORED(_BOOL) are accepted and ignored with a notice, for flags of the
 * system a daemon replaces that mean nothing to it.
 * Built in for every daemon: --help, --version, --config, --log-level. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shared/time-util.h"

typedef enum ConfType {
        CONF_STRING,   /* char * (owned) */
        CONF_STRV,     /* char ** (owned), comma separated */
        CONF_BOOL,     /* bool */
        CONF_U64,      /* uint64_t, bounded by [min, max] */
        CONF_DURATION, /* usec_t, bounded by [min, max]; a bare number is in `unit` */
        CONF_SIZE,     /* uint64_t bytes with K/M/G suffixes, bounded by [min, max] */
        CONF_ENUM,     /* int: index into enum_values */
        CONF_CUSTOM,   /* parse()/free_value() supplied by the daemon */
        CONF_IGNORED,      /* accepted for another system's compatibility, takes a value, ignored */
        CONF_IGNORED_BOOL, /* the same for a boolean flag (no value needed) */
} ConfType;

typedef struct ConfOption {
        const char *name;      /* long option, kebab-case */
        ConfType type;
        size_t offset;         /* of the destination field in the daemon's config struct */
        const char *def;       /* default as text (shown in --help); NULL leaves the field zero */
        const char *metavar;   /* placeholder in --help, e.g. "URLS" */
        const char *help;
        const char *env_alias; /* extra environment name (etcd's ETCD_*), may be NULL */
        uint64_t min, max;     /* numeric bounds; max == 0 means unbounded */
        usec_t unit;           /* CONF_DURATION: unit of a bare number; 0 means seconds */
        const char *const *enum_values; /* CONF_ENUM: NULL-terminated */
        /* CONF_CUSTOM: returns 0 or -errno and may set *ret_why to a static explanation. */
        int (*parse)(const char *value, void *dest, const char **ret_why);
        void (*free_value)(void *dest);
} ConfOption;

typedef struct ConfSpec {
        const char *program;        /* "flotilla-kv" */
        const char *summary;        /* one line shown by --help */
        const char *env_prefix;     /* "FLOTILLA_KV_" */
        const char *env_alias_prefix; /* a second prefix every option also answers to ("ETCD_"),
                                       * used when the first is unset; may be NULL */
        const char *config_default; /* used only if it exists; may be NULL */
        const ConfOption *options;
        size_t n_options;
} ConfSpec;

#define CONF_OPT(field_struct, field) offsetof(field_struct, field)

/* Loads all four sources into cfg (which the caller zeroed). Returns 1 if the program should
 * run, 0 if it should exit successfully (--help, --version), or a negative errno after logging
 * one error line that names the option and its source. On error cfg may hold partial values;
 * conf_free() releases them either way. */
int conf_load(const ConfSpec *spec, void *cfg, int argc, char *const *argv);
void conf_free(const ConfSpec *spec, void *cfg);

/* Parses one value into the option's field, exactly as conf_load would. Returns 0 or -errno and
 * a static reason in *ret_why. */
int conf_parse_value(const ConfOption *o, void *cfg, const char *value, const char **ret_why);

/* Writes --help text (also used by tests). */
void conf_print_help(const ConfSpec *spec, FILE *f);
