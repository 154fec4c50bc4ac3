/* SPDX-License-Identifier: MIT */
/* The small value parsers: numbers, booleans, durations, sizes, URL escapes, list splitting. */
#include "fuzz.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/parse-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1), *out = NULL, dur[64];
        char **l = NULL;
        uint64_t u;
        int64_t i;
        usec_t d;
        bool b;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        (void) safe_atou64(s, &u);
        (void) safe_atoi64(s, &i);
        (void) parse_bool(s, &b);
        (void) parse_size(s, &u);
        if (parse_duration(s, USEC_PER_SEC, &d) == 0) {
                /* Whatever parses must format and parse back to the same value. */
                usec_t back;
                if (parse_duration(format_duration(dur, sizeof(dur), d), 1, &back) < 0 || back != d)
                        abort();
        }
        if (url_unescape((const char *) data, size, size & 1, &out, NULL) == 0)
                free(out);
        out = url_escape(s, size & 1);
        free(out);
        if (strv_split(s, ",;", &l) == 0)
                strv_free(l);
        free(s);
        return 0;
}
