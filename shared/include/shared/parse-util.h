/* SPDX-License-Identifier: MIT */
/* Strict parsers for numbers, booleans, durations and sizes from outside input. Each returns 0
 * and writes *ret only on success, or -EINVAL (malformed) / -ERANGE (out of range). Leading or
 * trailing garbage, empty strings, signs on unsigned values and overflow are all rejected. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/time-util.h"

int safe_atou64(const char *s, uint64_t *ret);
int safe_atoi64(const char *s, int64_t *ret);
int safe_atou32(const char *s, uint32_t *ret);

/* 1/yes/y/true/t/on and 0/no/n/false/f/off, case-insensitive (fleet's and Go's truthy set). */
int parse_bool(const char *s, bool *ret);

/* "1h30m", "500ms", "2.5s", "90" (a bare number is in default_unit microseconds, e.g.
 * USEC_PER_SEC or USEC_PER_MSEC). Units: us, ms, s, m/min, h, d. */
int parse_duration(const char *s, usec_t default_unit, usec_t *ret);

/* "4096", "64K", "1M", "1MiB", "2G": binary multiples. */
int parse_size(const char *s, uint64_t *ret);

/* Writes "1h30m", "500ms", "2s" into buf (at least 32 bytes). */
char *format_duration(char *buf, size_t size, usec_t u);
