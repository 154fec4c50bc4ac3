/* SPDX-License-Identifier: MIT */
/* Table-driven configuration: defaults < config file < environment < command line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/conf.h"
#include "shared/log.h"
#include "shared/parse-util.h"

#define CONF_FILE_MAX      (1U << 20) /* bytes; a config file is small */
#define CONF_NAME_MAX      128

_Static_assert(sizeof(usec_t) == sizeof(uint64_t), "CONF_DURATION fields are written as uint64_t");

/* A value seen on the command line, applied after file and environment. */
typedef struct PendingFlag {
        const ConfOption *option;
        const char *value;     /* points into argv or a static string */
        const char *label;     /* the argument as written, for errors */
} PendingFlag;

/* Built-in options every daemon has; they are not stored in the daemon's struct. */
enum { BUILTIN_HELP = 1, BUILTIN_VERSION, BUILTIN_CONFIG, BUILTIN_LOG_LEVEL };
static const struct {
        const char *name;
        int id;
        bool takes_value;
        const char *metavar, *help;
} builtins[] = {
        { "help", BUILTIN_HELP, false, NULL, "show this help and exit" },
        { "version", BUILTIN_VERSION, false, NULL, "show the version and exit" },
        { "config", BUILTIN_CONFIG, true, "PATH", "read options from this file (key = value lines)" },
        { "log-level", BUILTIN_LOG_LEVEL, true, "LEVEL", "error, warning, notice, info or debug (default: info)" },
};

static void *field(const ConfOption *o, void *cfg) {
        return (char *) cfg + o->offset;
}

/* "snapshot_count" and "SNAPSHOT-COUNT" both name "snapshot-count". */
static void normalize_name(const char *in, size_t len, char out[static CONF_NAME_MAX]) {
        size_t n = MIN(len, (size_t) CONF_NAME_MAX - 1);
        for (size_t i = 0; i < n; i++)
                out[i] = in[i] == '_' ? '-' : (char) tolower((unsigned char) in[i]);
        out[n] = 0;
}

static const ConfOption *find_option(const ConfSpec *spec, const char *name) {
        for (size_t i = 0; i < spec->n_options; i++)
                if (streq(spec->options[i].name, name))
                        return &spec->options[i];
        return NULL;
}

static int find_builtin(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(builtins); i++)
                if (streq(builtins[i].name, name))
                        return (int) i;
        return -1;
}

static void free_field(const ConfOption *o, void *cfg) {
        void *p = field(o, cfg);

        switch (o->type) {
        case CONF_STRING:
                free(*(char **) p);
                *(char **) p = NULL;
                break;
        case CONF_STRV:
                *(char ***) p = strv_free(*(char ***) p);
                break;
        case CONF_CUSTOM:
                if (o->free_value)
                        o->free_value(p);
                break;
        default:
                break;
        }
}

static int check_bounds(const ConfOption *o, uint64_t v, const char **ret_why) {
        if (v < o->min || (o->max > 0 && v > o->max)) {
                *ret_why = "out of range";
                return -ERANGE;
        }
        return 0;
}

static const char *const numeric_expectation[] = {
        [CONF_U64] = "expected a non-negative integer",
        [CONF_DURATION] = "expected a duration such as 500ms, 2s or 1m",
        [CONF_SIZE] = "expected a size such as 4096, 64K or 1M",
};

int conf_parse_value(const ConfOption *o, void *cfg, const char *value, const char **ret_why) {
        void *p = field(o, cfg);
        const char *why = NULL;
        uint64_t u;
        bool b;
        int r;

        if (!ret_why)
                ret_why = &why;
        switch (o->type) {
        case CONF_STRING: {
                char *s = strdup(value);
                if (!s)
                        return -ENOMEM;
                free(*(char **) p);
                *(char **) p = s;
                return 0;
        }
        case CONF_STRV: {
                char **l = NULL;
                r = strv_split(value, ",", &l);
                if (r < 0)
                        return r;
                strv_free(*(char ***) p);
                *(char ***) p = l;
                return 0;
        }
        case CONF_BOOL:
                if (parse_bool(value, &b) < 0) {
                        *ret_why = "expected true or false";
                        return -EINVAL;
                }
                *(bool *) p = b;
                return 0;
        case CONF_U64:
        case CONF_DURATION:
        case CONF_SIZE:
                r = o->type == CONF_U64 ? safe_atou64(value, &u)
                  : o->type == CONF_SIZE ? parse_size(value, &u)
                  : parse_duration(value, o->unit ?: USEC_PER_SEC, &u);
                if (r < 0) {
                        *ret_why = r == -ERANGE ? "too large" : numeric_expectation[o->type];
                        return r;
                }
                r = check_bounds(o, u, ret_why);
                if (r < 0)
                        return r;
                *(uint64_t *) p = u; /* usec_t is uint64_t (asserted below) */
                return 0;
        case CONF_ENUM:
                for (int i = 0; o->enum_values && o->enum_values[i]; i++)
                        if (streq(o->enum_values[i], value)) {
                                *(int *) p = i;
                                return 0;
                        }
                *ret_why = "not one of the allowed values";
                return -EINVAL;
        case CONF_CUSTOM:
                if (!o->parse)
                        return -EINVAL;
                return o->parse(value, p, ret_why);
        case CONF_IGNORED:
        case CONF_IGNORED_BOOL:
                log_notice("Option %s is accepted for compatibility and has no effect.", o->name);
                return 0;
        }
        return -EINVAL;
}

static void describe_range(const ConfOption *o, char *buf, size_t size) {
        char a[32], b[32];

        buf[0] = 0;
        if (o->type == CONF_ENUM && o->enum_values) {
                _cleanup_free_ char *j = strv_join((char *const *) o->enum_values, ", ");
                (void) snprintf(buf, size, " (one of: %s)", strna(j));
        } else if (o->type == CONF_DURATION && (o->min || o->max))
                (void) snprintf(buf, size, " (allowed: %s..%s)", format_duration(a, sizeof(a), o->min),
                                o->max ? format_duration(b, sizeof(b), o->max) : "infinity");
        else if ((o->type == CONF_U64 || o->type == CONF_SIZE) && (o->min || o->max)) {
                if (o->max)
                        (void) snprintf(buf, size, " (allowed: %llu..%llu)", (unsigned long long) o->min,
                                        (unsigned long long) o->max);
                else
                        (void) snprintf(buf, size, " (allowed: >= %llu)", (unsigned long long) o->min);
        }
}

/* Applies one value and logs the single error line if it is invalid. */
static int apply(const ConfOption *o, void *cfg, const char *value, const char *source) {
        const char *why = "invalid";
        char range[256];
        int r;

        r = conf_parse_value(o, cfg, value, &why);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                describe_range(o, range, sizeof(range));
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: invalid value '%s' for %s: %s%s",
                                       source, value, o->name, why, range);
        }
        return 0;
}

static void env_name(const ConfSpec *spec, const char *opt, char *buf, size_t size) {
        size_t n = (size_t) snprintf(buf, size, "%s", spec->env_prefix ?: "");
        for (const char *c = opt; *c && n + 1 < size; c++)
                buf[n++] = *c == '-' ? '_' : (char) toupper((unsigned char) *c);
        buf[MIN(n, size - 1)] = 0;
}

static int read_file_bounded(const char *path, char **ret, size_t *ret_len) {
        _cleanup_(buf_done) Buf b = BUF_INIT(CONF_FILE_MAX);
        FILE *f = fopen(path, "re");
        char chunk[4096];
        size_t n;
        int r = 0;

        if (!f)
                return -errno;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                if ((r = buf_append(&b, chunk, n)) < 0)
                        break;
        if (r == 0 && ferror(f))
                r = -EIO;
        fclose(f);
        if (r < 0)
                return r;
        *ret_len = b.len;
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

/* Removes surrounding double quotes and resolves \" \\ \n \t inside them. */
static int unquote(char *v, const char **ret_why) {
        size_t l = strlen(v), o = 0;

        if (l == 0 || v[0] != '"')
                return 0;
        if (l < 2 || v[l - 1] != '"') {
                *ret_why = "unterminated quoted value";
                return -EINVAL;
        }
        for (size_t i = 1; i < l - 1; i++) {
                if (v[i] == '\\' && i + 1 < l - 1) {
                        i++;
                        v[o++] = v[i] == 'n' ? '\n' : v[i] == 't' ? '\t' : v[i];
                } else if (v[i] == '"') {
                        *ret_why = "unescaped quote inside a quoted value";
                        return -EINVAL;
                } else
                        v[o++] = v[i];
        }
        v[o] = 0;
        return 0;
}

static char *trim(char *s) {
        char *e;
        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = 0;
        return s;
}

static int load_file(const ConfSpec *spec, void *cfg, const char *path, int *log_level) {
        _cleanup_free_ char *text = NULL;
        char *line, *save = NULL;
        unsigned lineno = 0;
        size_t len = 0;
        int r;

        r = read_file_bounded(path, &text, &len);
        if (r == -ENOBUFS)
                return log_error_errno(SYNTHETIC_ERRNO(EFBIG), "%s: larger than %u bytes", path, CONF_FILE_MAX);
        if (r < 0)
                return log_error_errno(r, "Failed to read config file %s: %m", path);
        if (memchr(text, 0, len))
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: contains a NUL byte", path);

        /* strtok_r would merge empty lines and break line numbers, so split by hand. */
        for (line = text; line; line = save) {
                char where[512], key[CONF_NAME_MAX], *eq, *k, *v;
                const char *why = NULL;
                const ConfOption *o;
                int b;

                save = strchr(line, '\n');
                if (save)
                        *save++ = 0;
                lineno++;
                (void) snprintf(where, sizeof(where), "%s:%u", path, lineno);
                k = trim(line);
                if (*k == 0 || *k == '#' || *k == ';')
                        continue;
                eq = strchr(k, '=');
                if (!eq)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: expected 'key = value', got '%s'", where, k);
                *eq = 0;
                v = trim(eq + 1);
                k = trim(k);
                normalize_name(k, strlen(k), key);
                if (unquote(v, &why) < 0)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: %s: %s", where, key, why);
                b = find_builtin(key);
                if (b >= 0 && builtins[b].id == BUILTIN_LOG_LEVEL) {
                        if (log_level_from_string(v, log_level) < 0)
                                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: invalid value '%s' for log-level", where, v);
                        continue;
                }
                o = find_option(spec, key);
                if (!o)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: unknown key '%s'", where, key);
                r = apply(o, cfg, v, where);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_env(const ConfSpec *spec, void *cfg, int *log_level) {
        char name[256];
        const char *v;
        int r;

        env_name(spec, "log-level", name, sizeof(name));
        v = getenv(name);
        if (v && log_level_from_string(v, log_level) < 0)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s (environment): invalid value '%s' for log-level", name, v);

        for (size_t i = 0; i < spec->n_options; i++) {
                const ConfOption *o = &spec->options[i];

                env_name(spec, o->name, name, sizeof(name));
                v = getenv(name);
                if (!v && spec->env_alias_prefix) {
                        ConfSpec alias = { .env_prefix = spec->env_alias_prefix };
                        env_name(&alias, o->name, name, sizeof(name));
                        v = getenv(name);
                }
                if (!v && o->env_alias) {
                        v = getenv(o->env_alias);
                        (void) snprintf(name, sizeof(name), "%s", o->env_alias);
                }
                if (!v)
                        continue;
                char source[300];
                (void) snprintf(source, sizeof(source), "%s (environment)", name);
                r = apply(o, cfg, v, source);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* First pass over argv: built-ins act at once, everything else is remembered. Returns 1 to
 * continue, 0 to exit (help/version), or -errno. */
static int scan_argv(const ConfSpec *spec, int argc, char *const *argv, PendingFlag *pending,
                     size_t *n_pending, const char **config_path, int *log_level) {
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *body, *eq, *value = NULL;
                char name[CONF_NAME_MAX];
                const ConfOption *o;
                int b;

                if (streq(a, "--"))
                        break;
                if (a[0] != '-' || a[1] == 0)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "unexpected argument '%s'; see --help", a);
                body = a[1] == '-' ? a + 2 : a + 1;
                eq = strchr(body, '=');
                normalize_name(body, eq ? (size_t) (eq - body) : strlen(body), name);
                if (eq)
                        value = eq + 1;
                if (streq(name, "h"))
                        (void) snprintf(name, sizeof(name), "help");

                b = find_builtin(name);
                o = b < 0 ? find_option(spec, name) : NULL;
                if (b < 0 && !o)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "unknown option '%s'; see --help", a);

                bool takes_value = o ? o->type != CONF_BOOL && o->type != CONF_IGNORED_BOOL : builtins[b].takes_value;
                if (takes_value && !value) {
                        if (i + 1 >= argc)
                                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: needs a value", a);
                        value = argv[++i];
                } else if (!takes_value && !value)
                        value = "true";
                else if (!o && !takes_value)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: takes no value", a);

                if (o) {
                        pending[(*n_pending)++] = (PendingFlag) { .option = o, .value = value, .label = a };
                        continue;
                }
                switch (builtins[b].id) {
                case BUILTIN_HELP:
                        conf_print_help(spec, stdout);
                        return 0;
                case BUILTIN_VERSION:
                        printf("%s %s\n", spec->program, FLOTILLA_VERSION);
                        return 0;
                case BUILTIN_CONFIG:
                        *config_path = value;
                        break;
                case BUILTIN_LOG_LEVEL:
                        if (log_level_from_string(value, log_level) < 0)
                                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "%s: invalid value '%s' for log-level", a, value);
                        break;
                }
        }
        return 1;
}

int conf_load(const ConfSpec *spec, void *cfg, int argc, char *const *argv) {
        _cleanup_free_ PendingFlag *pending = new0(PendingFlag, argc > 0 ? (size_t) argc : 1);
        const char *config_path = NULL;
        char env_config[256];
        size_t n_pending = 0;
        int log_level = -1, r;

        if (!pending)
                return log_oom();

        for (size_t i = 0; i < spec->n_options; i++) {
                const ConfOption *o = &spec->options[i];
                free_field(o, cfg);
                if (o->def && (r = apply(o, cfg, o->def, "built-in default")) < 0)
                        return r;
        }

        r = scan_argv(spec, argc, argv, pending, &n_pending, &config_path, &log_level);
        if (r <= 0)
                return r;

        if (!config_path) {
                env_name(spec, "config", env_config, sizeof(env_config));
                config_path = getenv(env_config);
        }
        if (!config_path && spec->config_default && access(spec->config_default, F_OK) == 0)
                config_path = spec->config_default;
        if (config_path && (r = load_file(spec, cfg, config_path, &log_level)) < 0)
                return r;

        r = load_env(spec, cfg, &log_level);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_pending; i++) {
                r = apply(pending[i].option, cfg, pending[i].value, pending[i].label);
                if (r < 0)
                        return r;
        }
        if (log_level >= 0)
                log_set_max_level(log_level);
        return 1;
}

void conf_free(const ConfSpec *spec, void *cfg) {
        for (size_t i = 0; i < spec->n_options; i++)
                free_field(&spec->options[i], cfg);
}

void conf_print_help(const ConfSpec *spec, FILE *f) {
        char env[256], range[256], left[96];

        fprintf(f, "%s %s: %s\n\nUsage: %s [OPTIONS]\n\n", spec->program, FLOTILLA_VERSION,
                strna(spec->summary), spec->program);
        fprintf(f, "Later sources override earlier ones: built-in default < config file < environment < flags.\n\nOptions:\n");
        for (size_t i = 0; i < spec->n_options; i++) {
                const ConfOption *o = &spec->options[i];

                env_name(spec, o->name, env, sizeof(env));
                describe_range(o, range, sizeof(range));
                bool is_bool = o->type == CONF_BOOL || o->type == CONF_IGNORED_BOOL;
                if (o->type == CONF_IGNORED || o->type == CONF_IGNORED_BOOL)
                        continue; /* listed once, below */
                (void) snprintf(left, sizeof(left), "--%s%s%s", o->name, is_bool ? "[=BOOL]" : " ",
                                is_bool ? "" : strna(o->metavar ?: "VALUE"));
                fprintf(f, "  %-34s %s%s\n", left, strna(o->help), range);
                fprintf(f, "  %-34s env %s", "", env);
                if (spec->env_alias_prefix) {
                        ConfSpec alias = { .env_prefix = spec->env_alias_prefix };
                        env_name(&alias, o->name, env, sizeof(env));
                        fprintf(f, ", %s", env);
                }
                if (o->env_alias)
                        fprintf(f, ", %s", o->env_alias);
                if (o->def)
                        fprintf(f, "; default: %s", *o->def ? o->def : "(empty)");
                fputc('\n', f);
        }
        {
                bool any = false;
                for (size_t i = 0; i < spec->n_options; i++) {
                        const ConfOption *o = &spec->options[i];
                        if (o->type != CONF_IGNORED && o->type != CONF_IGNORED_BOOL)
                                continue;
                        fprintf(f, "%s--%s", any ? ", " : "\nAccepted for compatibility, no effect: ", o->name);
                        any = true;
                }
                if (any)
                        fprintf(f, "\n\n");
        }
        for (size_t i = 0; i < ELEMENTSOF(builtins); i++) {
                (void) snprintf(left, sizeof(left), "--%s%s%s", builtins[i].name, builtins[i].takes_value ? " " : "",
                                builtins[i].takes_value ? builtins[i].metavar : "");
                env_name(spec, builtins[i].name, env, sizeof(env));
                fprintf(f, "  %-34s %s\n", left, builtins[i].help);
                if (builtins[i].takes_value)
                        fprintf(f, "  %-34s env %s\n", "", env);
        }
}
