/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "shared/buf.h"
#include "shared/conf.h"
#include "shared/log.h"
#include "test-util.h"

typedef struct DemoConfig {
        char *name;
        char **endpoints;
        bool verbose;
        uint64_t count;
        usec_t interval_usec;
        uint64_t max_body;
        int mode;
} DemoConfig;

static const char *const modes[] = { "fast", "safe", NULL };

static const ConfOption demo_options[] = {
        { .name = "name", .type = CONF_STRING, .offset = offsetof(DemoConfig, name), .def = "default",
          .help = "member name", .env_alias = "ETCD_NAME" },
        { .name = "endpoints", .type = CONF_STRV, .offset = offsetof(DemoConfig, endpoints),
          .def = "http://127.0.0.1:2379", .metavar = "URLS", .help = "KV endpoints" },
        { .name = "verbose", .type = CONF_BOOL, .offset = offsetof(DemoConfig, verbose), .def = "false" },
        { .name = "snapshot-count", .type = CONF_U64, .offset = offsetof(DemoConfig, count), .def = "10000",
          .min = 1, .max = 1000000 },
        { .name = "heartbeat-interval", .type = CONF_DURATION, .offset = offsetof(DemoConfig, interval_usec),
          .def = "100", .unit = USEC_PER_MSEC, .min = USEC_PER_MSEC, .max = 10 * USEC_PER_SEC },
        { .name = "max-body", .type = CONF_SIZE, .offset = offsetof(DemoConfig, max_body), .def = "1M", .max = 64 << 20 },
        { .name = "mode", .type = CONF_ENUM, .offset = offsetof(DemoConfig, mode), .def = "safe", .enum_values = modes },
        { .name = "quota-backend-bytes", .type = CONF_IGNORED },
        { .name = "enable-pprof", .type = CONF_IGNORED_BOOL },
};

static const ConfSpec spec = {
        .program = "flotilla-demo",
        .summary = "a demo",
        .env_prefix = "FLOTILLA_DEMO_",
        .env_alias_prefix = "DEMO_",
        .options = demo_options,
        .n_options = ELEMENTSOF(demo_options),
};

static char last_error[1024];
static void sink(int level, const char *line, void *u) {
        if (level <= LOG_ERR)
                (void) snprintf(last_error, sizeof(last_error), "%s", line);
}

static char *tmpdir;

static int setup(void **state) {
        static const char *vars[] = { "FLOTILLA_DEMO_NAME", "ETCD_NAME", "FLOTILLA_DEMO_SNAPSHOT_COUNT", "DEMO_SNAPSHOT_COUNT",
                                      "FLOTILLA_DEMO_CONFIG", "FLOTILLA_DEMO_VERBOSE", "FLOTILLA_DEMO_LOG_LEVEL" };
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                unsetenv(vars[i]);
        last_error[0] = 0;
        log_set_sink(sink, NULL);
        tmpdir = test_mkdtemp();
        return tmpdir ? 0 : -1;
}

static int teardown(void **state) {
        log_set_sink(NULL, NULL);
        log_set_max_level(LOG_WARNING);
        test_rm_rf(tmpdir);
        free(tmpdir);
        return 0;
}

static char *write_conf(const char *content) {
        static char path[512];
        (void) snprintf(path, sizeof(path), "%s/demo.conf", tmpdir);
        assert_int_equal(test_write_file(path, content), 0);
        return path;
}

#define LOAD(cfg, ...)                                                                   \
        ({                                                                               \
                const char *_argv_[] = { "flotilla-demo", ##__VA_ARGS__, NULL };         \
                conf_load(&spec, (cfg), (int) ELEMENTSOF(_argv_) - 1, (char *const *) _argv_); \
        })

static void defaults_apply_without_any_source(void **state) {
        DemoConfig c = {};

        assert_int_equal(LOAD(&c) , 1);
        assert_string_equal(c.name, "default");
        assert_int_equal(strv_length(c.endpoints), 1);
        assert_false(c.verbose);
        assert_int_equal(c.count, 10000);
        assert_true(c.interval_usec == 100 * USEC_PER_MSEC);
        assert_int_equal(c.max_body, 1 << 20);
        assert_int_equal(c.mode, 1);
        conf_free(&spec, &c);
        assert_null(c.name);
        assert_null(c.endpoints);
}

static void file_then_env_then_flags_override_in_order(void **state) {
        DemoConfig c = {};
        char *path = write_conf("# comment\n\nname = from-file\nsnapshot_count = 5\nheartbeat-interval = 250ms\nverbose = yes\n");

        setenv("FLOTILLA_DEMO_SNAPSHOT_COUNT", "6", 1);
        assert_int_equal(LOAD(&c, "--config", path, "--heartbeat-interval=1s"), 1);
        assert_string_equal(c.name, "from-file");   /* file beats default */
        assert_int_equal(c.count, 6);               /* env beats file */
        assert_true(c.interval_usec == USEC_PER_SEC); /* flag beats file */
        assert_true(c.verbose);
        conf_free(&spec, &c);

        setenv("FLOTILLA_DEMO_CONFIG", path, 1);
        assert_int_equal(LOAD(&c, "--snapshot-count", "7", "--name", "from-flag"), 1);
        assert_int_equal(c.count, 7);               /* flag beats env */
        assert_string_equal(c.name, "from-flag");
        conf_free(&spec, &c);
}

static void env_alias_used_when_primary_unset(void **state) {
        DemoConfig c = {};

        setenv("DEMO_SNAPSHOT_COUNT", "77", 1);
        assert_int_equal(LOAD(&c), 1);
        assert_int_equal(c.count, 77);
        setenv("FLOTILLA_DEMO_SNAPSHOT_COUNT", "78", 1);
        assert_int_equal(LOAD(&c), 1);
        assert_int_equal(c.count, 78);   /* our own name wins */
        unsetenv("DEMO_SNAPSHOT_COUNT");

        setenv("ETCD_NAME", "etcd-style", 1);
        assert_int_equal(LOAD(&c), 1);
        assert_string_equal(c.name, "etcd-style");
        setenv("FLOTILLA_DEMO_NAME", "ours", 1);
        assert_int_equal(LOAD(&c), 1);
        assert_string_equal(c.name, "ours");
        conf_free(&spec, &c);
}

static void single_dash_and_bool_forms(void **state) {
        DemoConfig c = {};

        assert_int_equal(LOAD(&c, "-name", "x", "-verbose", "-endpoints=http://a:1,http://b:2"), 1);
        assert_string_equal(c.name, "x");
        assert_true(c.verbose);
        assert_int_equal(strv_length(c.endpoints), 2);
        assert_string_equal(c.endpoints[1], "http://b:2");
        assert_int_equal(LOAD(&c, "--verbose=false", "--mode", "fast"), 1);
        assert_false(c.verbose);
        assert_int_equal(c.mode, 0);
        conf_free(&spec, &c);
}

static void compatibility_flags_accepted_and_ignored(void **state) {
        DemoConfig c = {};

        assert_int_equal(LOAD(&c, "--quota-backend-bytes", "8589934592", "--enable-pprof", "--name", "n"), 1);
        assert_string_equal(c.name, "n"); /* the bool did not swallow --name */
        assert_int_equal(LOAD(&c, "--enable-pprof=false"), 1);
        conf_free(&spec, &c);
}

static void invalid_flag_value_names_option_and_reason(void **state) {
        DemoConfig c = {};

        assert_int_equal(LOAD(&c, "--snapshot-count", "abc"), -EINVAL);
        assert_string_equal(last_error, "--snapshot-count: invalid value 'abc' for snapshot-count: expected a non-negative integer (allowed: 1..1000000)");
        assert_int_equal(LOAD(&c, "--snapshot-count=0"), -EINVAL);
        assert_non_null(strstr(last_error, "out of range"));
        assert_int_equal(LOAD(&c, "--heartbeat-interval", "1h"), -EINVAL);
        assert_non_null(strstr(last_error, "allowed: 1ms..10s"));
        assert_int_equal(LOAD(&c, "--mode", "reckless"), -EINVAL);
        assert_non_null(strstr(last_error, "one of: fast, safe"));
        assert_int_equal(LOAD(&c, "--verbose=sometimes"), -EINVAL);
        assert_non_null(strstr(last_error, "expected true or false"));
        conf_free(&spec, &c);
}

static void invalid_env_value_names_variable(void **state) {
        DemoConfig c = {};

        setenv("FLOTILLA_DEMO_VERBOSE", "perhaps", 1);
        assert_int_equal(LOAD(&c), -EINVAL);
        assert_non_null(strstr(last_error, "FLOTILLA_DEMO_VERBOSE (environment): invalid value 'perhaps' for verbose"));
        conf_free(&spec, &c);
}

static void file_errors_name_file_line_and_key(void **state) {
        DemoConfig c = {};
        char *path = write_conf("name = a\n\nmax-body = 1Q\n");
        char expect[1024];

        assert_int_equal(LOAD(&c, "--config", path), -EINVAL);
        (void) snprintf(expect, sizeof(expect), "%s:3: invalid value '1Q' for max-body", path);
        assert_non_null(strstr(last_error, expect));

        path = write_conf("nmae = typo\n");
        assert_int_equal(LOAD(&c, "--config", path), -EINVAL);
        (void) snprintf(expect, sizeof(expect), "%s:1: unknown key 'nmae'", path);
        assert_string_equal(last_error, expect);

        path = write_conf("just words\n");
        assert_int_equal(LOAD(&c, "--config", path), -EINVAL);
        assert_non_null(strstr(last_error, ":1: expected 'key = value'"));

        path = write_conf("name = \"unterminated\n");
        assert_int_equal(LOAD(&c, "--config", path), -EINVAL);
        assert_non_null(strstr(last_error, "unterminated quoted value"));
        conf_free(&spec, &c);
}

static void file_quoted_values_and_missing_file(void **state) {
        DemoConfig c = {};
        char *path = write_conf("name = \"a # not a comment \\\"q\\\"\"\n");

        assert_int_equal(LOAD(&c, "--config", path), 1);
        assert_string_equal(c.name, "a # not a comment \"q\"");
        assert_int_equal(LOAD(&c, "--config", "/nonexistent/demo.conf"), -ENOENT);
        assert_non_null(strstr(last_error, "/nonexistent/demo.conf"));
        conf_free(&spec, &c);
}

static void file_with_nul_or_too_large_refused(void **state) {
        DemoConfig c = {};
        char path[512];
        FILE *f;

        (void) snprintf(path, sizeof(path), "%s/nul.conf", tmpdir);
        f = fopen(path, "w");
        assert_non_null(f);
        fwrite("name = a\0b\n", 1, 11, f);
        fclose(f);
        assert_int_equal(LOAD(&c, "--config", path), -EINVAL);
        assert_non_null(strstr(last_error, "NUL byte"));

        f = fopen(path, "w");
        for (int i = 0; i < 120000; i++)
                fputs("# padding\n", f);
        fclose(f);
        assert_int_equal(LOAD(&c, "--config", path), -EFBIG);
        conf_free(&spec, &c);
}

static void unknown_flags_and_missing_values_are_errors(void **state) {
        DemoConfig c = {};

        assert_int_equal(LOAD(&c, "--nope"), -EINVAL);
        assert_string_equal(last_error, "unknown option '--nope'; see --help");
        assert_int_equal(LOAD(&c, "--name"), -EINVAL);
        assert_string_equal(last_error, "--name: needs a value");
        assert_int_equal(LOAD(&c, "stray"), -EINVAL);
        assert_int_equal(LOAD(&c, "--help=yes"), -EINVAL);
        conf_free(&spec, &c);
}

static void log_level_builtin_from_flag_and_env(void **state) {
        DemoConfig c = {};

        assert_int_equal(LOAD(&c, "--log-level", "debug"), 1);
        assert_int_equal(log_get_max_level(), LOG_DEBUG);
        setenv("FLOTILLA_DEMO_LOG_LEVEL", "error", 1);
        assert_int_equal(LOAD(&c), 1);
        assert_int_equal(log_get_max_level(), LOG_ERR);
        assert_int_equal(LOAD(&c, "--log-level=shouty"), -EINVAL);
        conf_free(&spec, &c);
}

static void help_lists_options_env_and_defaults(void **state) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        DemoConfig c = {};

        conf_print_help(&spec, f);
        fclose(f);
        assert_non_null(strstr(text, "--snapshot-count VALUE"));
        assert_non_null(strstr(text, "--verbose[=BOOL]"));
        assert_non_null(strstr(text, "--log-level LEVEL"));
        assert_non_null(strstr(text, "no effect: --quota-backend-bytes, --enable-pprof"));
        assert_non_null(strstr(text, "env FLOTILLA_DEMO_NAME, DEMO_NAME, ETCD_NAME"));
        free(text);

        /* --help and --version ask the caller to exit successfully. */
        FILE *saved = stdout;
        stdout = fopen("/dev/null", "w");
        assert_int_equal(LOAD(&c, "--help"), 0);
        assert_int_equal(LOAD(&c, "-h"), 0);
        assert_int_equal(LOAD(&c, "--version"), 0);
        fclose(stdout);
        stdout = saved;
        conf_free(&spec, &c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(defaults_apply_without_any_source),
          T(file_then_env_then_flags_override_in_order),
          T(env_alias_used_when_primary_unset),
          T(single_dash_and_bool_forms),
          T(compatibility_flags_accepted_and_ignored),
          T(invalid_flag_value_names_option_and_reason),
          T(invalid_env_value_names_variable),
          T(file_errors_name_file_line_and_key),
          T(file_quoted_values_and_missing_file),
          T(file_with_nul_or_too_large_refused),
          T(unknown_flags_and_missing_values_are_errors),
          T(log_level_builtin_from_flag_and_env),
          T(help_lists_options_env_and_defaults))
