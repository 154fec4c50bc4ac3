/* SPDX-License-Identifier: MIT */
/* The commands that change (or read through) the etcd v2 state machine, and their compact binary
 * encoding. A command is what travels in a Raft log entry: every member decodes and applies the
 * same bytes, so a command carries every input the store needs, including absolute times chosen
 * by the member that proposed it (see docs/kv-store.md, "Determinism"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/buf.h"

/* Limits enforced by the codec and the request parser. etcd itself has no key limit and accepts
 * values up to Go's 10 MiB form limit; we bound both so that a command always fits a log entry. */
#define KV_MAX_KEY_SIZE     (32U * 1024U)        /* bytes in a key path */
#define KV_MAX_VALUE_SIZE   (10U * 1024U * 1024U) /* bytes in a value or prevValue */
#define KV_COMMAND_VERSION  1

/* Named KvCommandMethod (not KvMethod) because shared/kv-client.h already defines a KvMethod and
 * a daemon or test may include both headers. */
typedef enum KvCommandMethod {
        KV_METHOD_PUT,
        KV_METHOD_POST,
        KV_METHOD_DELETE,
        KV_METHOD_QGET,   /* a quorum GET that went through the log */
        KV_METHOD_SYNC,   /* the leader's clock: expire every key whose time has come */
        _KV_METHOD_MAX,
        _KV_METHOD_INVALID = -1,
} KvCommandMethod;

typedef enum KvPrevExist {
        KV_PREV_EXIST_UNSET,
        KV_PREV_EXIST_TRUE,
        KV_PREV_EXIST_FALSE,
        _KV_PREV_EXIST_MAX,
} KvPrevExist;

typedef struct KvCommand {
        KvCommandMethod method;
        const char *path;          /* key path as the client named it, "/a/b"; cleaned on apply */
        const char *value;         /* PUT/POST value; NULL (has_value false) means "" */
        bool has_value;
        bool dir, recursive, sorted, refresh;
        const char *prev_value;    /* compared only when has_prev_value and non-empty (as etcd) */
        bool has_prev_value;
        uint64_t prev_index;       /* 0 = no condition (etcd: prevIndex=0 counts as absent) */
        KvPrevExist prev_exist;
        /* Absolute expiration in Unix ns, computed by the proposer as now + ttl with Go's
         * wrapping int64 arithmetic. 0 = no TTL, which on update/compareAndSwap also clears an
         * existing TTL: etcd treats an empty "ttl=" and an absent ttl the same way. */
        int64_t expiration_ns;
        /* The proposer's clock, Unix ns. For SYNC, every key expiring at or before it expires. For
         * the other commands, the time the "ttl" fields of the resulting event are computed for
         * (etcd computes them once, when it applies the command, and keeps them in its history). */
        int64_t time_ns;
} KvCommand;

const char *kv_command_method_to_string(KvCommandMethod m);

/* Appends the encoding of c to out. -EINVAL for an invalid command (unknown method, missing path,
 * string over its limit or containing NUL), -ENOBUFS/-ENOMEM from the buffer. */
int kv_command_encode(const KvCommand *c, Buf *out);
/* Decodes one command. The strings in *ret point into data, which must outlive them; the encoding
 * stores a NUL after each string so they are C strings in place. -EBADMSG for anything malformed:
 * wrong version, unknown method or flags, truncation, trailing bytes, limits exceeded. */
int kv_command_decode(const void *data, size_t len, KvCommand *ret);
