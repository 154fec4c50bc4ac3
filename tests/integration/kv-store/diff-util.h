/* SPDX-License-Identifier: MIT */
/* Helpers of the etcd differential test: a blocking HTTP client that keeps X-Etcd-Index, Go's
 * form parsing (ParseForm/FormValue) for driving kv_request_parse the way our HTTP layer will,
 * and the normalization of bodies (clock-dependent fields, Go's random listing order). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kv-request.h"

typedef struct DiffResp {
        long status;
        char *body;
        bool has_index;
        uint64_t index;
        bool timed_out;            /* the response did not end in time (body may be partial) */
} DiffResp;

void diff_resp_done(DiffResp *r);

/* One request to etcd. form is sent as an x-www-form-urlencoded body when not NULL. */
int diff_http(const char *base, const char *method, const char *path_query, const char *form, long timeout_ms,
              DiffResp *ret);

/* Go's ParseForm over a body (used only for PUT and POST, as Go does) and a query string. */
typedef struct DiffForm {
        char **keys, **values;     /* body pairs first, then query pairs */
        size_t n;
        char *bad_escape;          /* first invalid escape, as Go reports it */
        char *form_error;
} DiffForm;
int diff_form_parse(DiffForm *f, const char *body, const char *query);
void diff_form_done(DiffForm *f);
const char *diff_form_value(void *userdata, const char *name);

/* Replaces "expiration":"..." by "expiration":"*" and each "ttl":N by "ttl":*, appending the ttl
 * values to *ttls, and sorts every "nodes" array (Go lists directories in random order) unless
 * keep_order. Returns a new string. */
char *diff_normalize(const char *body, bool keep_order, int64_t *ttls, size_t *n_ttls, size_t max_ttls);
/* Percent-decodes a URL path as Go's URL parser does; NULL if it has an invalid escape. */
char *diff_path_unescape(const char *s, size_t len);
