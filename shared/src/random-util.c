/* SPDX-License-Identifier: MIT */
/* xorshift64* seeded from the kernel; good enough for jitter, never for secrets. */
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "shared/macro.h"
#include "shared/random-util.h"

static uint64_t state;

uint64_t random_u64(void) {
        if (state == 0) {
                if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != sizeof(state) || state == 0)
                        state = now_usec(CLOCK_MONOTONIC) ^ ((uint64_t) getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
        }
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 2685821657736338717ULL;
}

usec_t random_jitter(usec_t u) {
        if (u < 2)
                return u;
        return u / 2 + random_u64() % u;
}

usec_t backoff_usec(usec_t base, usec_t max, unsigned attempt) {
        usec_t u = base;
        for (unsigned i = 0; i < attempt && u < max; i++)
                u *= 2;
        return random_jitter(MIN(u, max));
}
