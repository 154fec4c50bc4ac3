/* SPDX-License-Identifier: MIT */
/* sd-event helpers. */
#include "shared/event-util.h"

int event_reset_time_relative(sd_event *e, sd_event_source **s, usec_t usec, sd_event_time_handler_t handler,
                              void *userdata) {
        int r;

        if (!*s)
                return sd_event_add_time_relative(e, s, CLOCK_MONOTONIC, usec, EVENT_ACCURACY_EXACT_USEC, handler, userdata);
        r = sd_event_source_set_time_relative(*s, usec);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
}
