/* SPDX-License-Identifier: MIT */
/* sd-event helpers. */
#pragma once

#include <systemd/sd-event.h>

#include "shared/time-util.h"

/* Timer accuracy for timers that must fire on time. An accuracy of 0 does not mean "exact": it
 * asks sd-event for its default of 250 ms of coalescing slack. */
#define EVENT_ACCURACY_EXACT_USEC ((usec_t) 1)

/* Arms *s to fire once, usec from now on CLOCK_MONOTONIC, creating the source on first use (it
 * then belongs to the caller, who disables and unrefs it). Returns 0 or -errno. */
int event_reset_time_relative(sd_event *e, sd_event_source **s, usec_t usec, sd_event_time_handler_t handler,
                              void *userdata);
