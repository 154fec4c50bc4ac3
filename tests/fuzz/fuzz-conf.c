/* SPDX-License-Identifier: MIT */
/* Config files from arbitrary bytes: every option type, quoting, comments, unknown keys. */
#include "fuzz.h"
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shared/buf.h"
#include "shared/conf.h"
#include "shared/log.h"

typedef struct Cfg {
        char *s;
        char **l;
        bool b;
        uint64_t u, size;
        usec_t d;
        int e;
} Cfg;

static const char *const values[] = { "a", "b", NULL };
static const ConfOption options[] = {
        { .name = "name", .type = CONF_STRING, .offset = offsetof(Cfg, s), .def = "x" },
        { .name = "list", .type = CONF_STRV, .offset = offsetof(Cfg, l) },
        { .name = "flag", .type = CONF_BOOL, .offset = offsetof(Cfg, b) },
        { .name = "count", .type = CONF_U64, .offset = offsetof(Cfg, u), .min = 1, .max = 100 },
        { .name = "size", .type = CONF_SIZE, .offset = offsetof(Cfg, size) },
        { .name = "interval", .type = CONF_DURATION, .offset = offsetof(Cfg, d), .unit = USEC_PER_MSEC },
        { .name = "mode", .type = CONF_ENUM, .offset = offsetof(Cfg, e), .enum_values = values },
};
static const ConfSpec spec = { .program = "fuzz", .env_prefix = "FLOTILLA_FUZZ_", .options = options,
                               .n_options = sizeof(options) / sizeof(options[0]) };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[64];
        Cfg c = {};
        int fd;

        log_set_max_level(LOG_CRIT);
        fd = memfd_create("conf", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) != (ssize_t) size) {
                close(fd);
                return 0;
        }
        (void) snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        char *argv[] = { (char *) "fuzz", (char *) "--config", path, NULL };
        (void) conf_load(&spec, &c, 3, argv);
        conf_free(&spec, &c);
        close(fd);
        return 0;
}
