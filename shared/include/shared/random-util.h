/* SPDX-License-Identifier: MIT */
/* Non-cryptographic randomness for jitter and backoff, seeded once from getrandom(). */
#pragma once

#include <stdint.h>

#include "shared/time-util.h"

uint64_t random_u64(void);
/* A duration uniformly spread over [u/2, 3u/2): jittered backoff that avoids herds. */
usec_t random_jitter(usec_t u);
/* Exponential backoff: base * 2^attempt, capped at max, jittered. */
usec_t backoff_usec(usec_t base, usec_t max, unsigned attempt);
