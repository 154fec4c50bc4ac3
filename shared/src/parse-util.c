/* SPDX-License-Identifier: MIT */
/* Strict parsers for values read from flags, environment, config files and HTTP requests. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "shared/macro.h"
#include "shared/parse-util.h"

int safe_atou64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (isempty(s) || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int safe_atoi64(const char *s, int64_t *ret) {
        long long v;
        char *end;

        if (isempty(s) || !(isdigit((unsigned char) s[0]) || (s[0] == '-' && isdigit((unsigned char) s[1]))))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int safe_atou32(const char *s, uint32_t *ret) {
        uint64_t v;
        int r = safe_atou64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

static const struct {
        const char *suffix;
        usec_t usec;
} duration_units[] = {
        /* Longer suffixes first so "ms" is not read as "m" followed by garbage. */
        { "min", USEC_PER_MINUTE }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        { "h", USEC_PER_HOUR },     { "d", USEC_PER_DAY },   { "m", USEC_PER_MINUTE },
        { "s", USEC_PER_SEC },
};

int parse_duration(const char *s, usec_t default_unit, usec_t *ret) {
        usec_t total = 0;
        const char *p = s;

        if (isempty(s))
                return -EINVAL;
        while (*p) {
                uint64_t whole = 0, frac = 0, frac_div = 1;
                usec_t unit = 0, part;
                bool digits = false;

                for (; isdigit((unsigned char) *p); p++, digits = true) {
                        if (whole > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        whole = whole * 10 + (uint64_t) (*p - '0');
                }
                if (*p == '.') {
                        p++;
                        for (; isdigit((unsigned char) *p); p++, digits = true)
                                if (frac_div < 1000000000ULL) {
                                        frac = frac * 10 + (uint64_t) (*p - '0');
                                        frac_div *= 10;
                                }
                }
                if (!digits)
                        return -EINVAL;
                for (size_t i = 0; i < ELEMENTSOF(duration_units); i++) {
                        const char *rest = startswith(p, duration_units[i].suffix);
                        if (rest) {
                                unit = duration_units[i].usec;
                                p = rest;
                                break;
                        }
                }
                if (unit == 0) {
                        /* A bare number is only allowed as the whole string. */
                        if (*p || p != s + strspn(s, "0123456789."))
                                return -EINVAL;
                        unit = default_unit;
                }
                if (whole > USEC_INFINITY / unit)
                        return -ERANGE;
                part = whole * unit + (usec_t) ((unsigned __int128) frac * unit / frac_div);
                if (part > USEC_INFINITY - 1 - total)
                        return -ERANGE;
                total += part;
        }
        *ret = total;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = {
                { "", 1 },
                { "K", 1ULL << 10 }, { "KiB", 1ULL << 10 }, { "KB", 1ULL << 10 },
                { "M", 1ULL << 20 }, { "MiB", 1ULL << 20 }, { "MB", 1ULL << 20 },
                { "G", 1ULL << 30 }, { "GiB", 1ULL << 30 }, { "GB", 1ULL << 30 },
                { "T", 1ULL << 40 }, { "TiB", 1ULL << 40 }, { "TB", 1ULL << 40 },
        };
        unsigned long long v;
        char *end;

        if (isempty(s) || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(end, units[i].suffix)) {
                        if (v > UINT64_MAX / units[i].factor)
                                return -ERANGE;
                        *ret = v * units[i].factor;
                        return 0;
                }
        return -EINVAL;
}

char *format_duration(char *buf, size_t size, usec_t u) {
        static const struct {
                const char *suffix;
                usec_t usec;
        } parts[] = {
                { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "m", USEC_PER_MINUTE },
                { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        };
        size_t n = 0;

        if (u == USEC_INFINITY) {
                (void) snprintf(buf, size, "infinity");
                return buf;
        }
        if (u == 0) {
                (void) snprintf(buf, size, "0");
                return buf;
        }
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(parts) && u > 0 && n < size; i++) {
                if (u < parts[i].usec)
                        continue;
                int k = snprintf(buf + n, size - n, "%llu%s",
                                 (unsigned long long) (u / parts[i].usec), parts[i].suffix);
                if (k < 0)
                        break;
                n += (size_t) k;
                u %= parts[i].usec;
        }
        return buf;
}
