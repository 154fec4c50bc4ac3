/* SPDX-License-Identifier: MIT */
/* The cluster's members as flotilla-kv knows them: id, name, peer URLs (from the bootstrap list or
 * the conf change that added the member) and client URLs (published by the member itself once it
 * runs, as etcd does). Travels in snapshots and in conf change contexts, in a compact binary
 * encoding whose decoder validates every length. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kv-config.h"
#include "shared/buf.h"

#define KV_MEMBERS_MAX      64
#define KV_MEMBER_URLS_MAX  16
#define KV_MEMBER_STR_MAX   1024

typedef struct KvMembers {
        KvMember *members;       /* sorted by id */
        size_t n;
} KvMembers;

void kv_members_done(KvMembers *m);
const KvMember *kv_members_find(const KvMembers *m, uint64_t id);
const KvMember *kv_members_find_name(const KvMembers *m, const char *name);
/* Adds or replaces the member with m->id (copied). */
int kv_members_put(KvMembers *ms, const KvMember *m);
int kv_members_remove(KvMembers *ms, uint64_t id);
int kv_members_copy(const KvMembers *from, KvMembers *to);

/* One member / the whole table, binary. Decoders return -EBADMSG on anything malformed. */
int kv_member_encode(const KvMember *m, Buf *out);
int kv_member_decode(const void *data, size_t len, KvMember *ret);
void kv_member_done(KvMember *m);
int kv_members_encode(const KvMembers *ms, Buf *out);
int kv_members_decode(const void *data, size_t len, KvMembers *ret);

/* {"members":[{"id":"...","name":"...","peerURLs":[...],"clientURLs":[...]}]} as etcd renders it
 * (hex ids without padding, trailing newline). */
int kv_members_render(const KvMembers *ms, Buf *out);
/* The client URLs of all members, "a, b" as /v2/machines shows them. */
int kv_members_render_machines(const KvMembers *ms, Buf *out);
