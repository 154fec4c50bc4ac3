/* SPDX-License-Identifier: MIT */
/* etcd's v2 keys HTTP handler without HTTP: turns a request to /v2/keys into a command to propose,
 * a local read, a watch, or the exact error etcd 3.4 answers (parseKeyRequest, Go's ServeMux path
 * cleaning, allowMethod and RequestV2.Handle, in that order). The HTTP layer supplies the decoded
 * path and Go's FormValue semantics; this module owns every decision etcd makes from them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kv-command.h"

typedef enum KvRequestKind {
        KV_REQUEST_ERROR,            /* reply with the etcd error error_code/error_cause, index 0 */
        KV_REQUEST_REDIRECT,         /* 301 to location (Go's ServeMux: the path was not clean) */
        KV_REQUEST_NOT_FOUND,        /* 404: not a /v2/keys path */
        KV_REQUEST_METHOD_NOT_ALLOWED, /* 405 "Method Not Allowed", Allow: GET, HEAD, PUT, POST, DELETE */
        KV_REQUEST_OPTIONS,          /* 200 with an empty body: etcd's CORS handler answers OPTIONS */
        KV_REQUEST_COMMAND,          /* propose command through Raft, then apply it */
        KV_REQUEST_READ,             /* a local read (GET without quorum, HEAD): kv_store_get */
        KV_REQUEST_WATCH,            /* GET wait=true: kv_store_watch */
        _KV_REQUEST_KIND_MAX,
} KvRequestKind;

typedef struct KvReadRequest {
        const char *path;            /* the key path, points into the KvRequest */
        bool recursive, sorted, quorum, stream, head;
        bool wait;
        uint64_t wait_index;         /* 0 = from the next index */
} KvReadRequest;

/* Returns the form body's value of name if the body has it, else the query string's, else NULL;
 * "" for a parameter given without a value. Only the first value of a name counts. */
typedef const char *(*KvParamFn)(void *userdata, const char *name);

typedef struct KvRequestInput {
        const char *method;          /* as received: "GET", "PUT", ... */
        const char *path;            /* the URL path, percent-decoded ("%2F" is a '/') */
        /* Go's ParseForm error, which etcd reports as 210: the first invalid escape of the body, or
         * else of the query (the three bytes from its '%', fewer at the end: "%zz", "%4"), or any
         * other parse error verbatim in form_error ("invalid semicolon separator in query"). */
        const char *bad_escape;
        const char *form_error;
        KvParamFn param;
        void *userdata;
        int64_t now_ns;              /* this member's clock: expiration = now + ttl */
} KvRequestInput;

typedef struct KvRequest {
        KvRequestKind kind;
        int error_code;              /* KV_REQUEST_ERROR */
        char *error_cause;
        char *location;              /* KV_REQUEST_REDIRECT: the clean path (append the query) */
        KvCommand command;           /* KV_REQUEST_COMMAND; its strings point into this struct */
        KvReadRequest read;          /* KV_REQUEST_READ and KV_REQUEST_WATCH */
        bool no_value_on_success;    /* render with kv_event_render_ex(..., true, ...) */
        char *key;                   /* owned storage behind command.path / read.path */
        char *value, *prev_value;    /* owned storage behind the command's strings */
} KvRequest;

/* Fills *ret (always, on success) and returns 0; -EINVAL for missing arguments, -ENOMEM.
 * kv_request_done() releases what it holds. */
int kv_request_parse(const KvRequestInput *in, KvRequest *ret);
void kv_request_done(KvRequest *r);
