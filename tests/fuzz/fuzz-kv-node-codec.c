/* SPDX-License-Identifier: MIT */
/* flotilla-kv's own records on arbitrary bytes: a member (an attributes or conf-change entry from
 * the log), the member list and conf state (snapshot files), and whole snapshot data as a leader
 * sends it in MsgSnap (members, then the store). The first byte picks the decoder. What decodes
 * must re-encode to the same bytes (member, conf state) or to a fixed point (the member list,
 * which is kept sorted), and never crash or leak. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kv-members.h"
#include "kv-node-internal.h"
#include "kv-store.h"

static void same(const Buf *b, const void *data, size_t size) {
        if (b->len != size || memcmp(b->data, data, size) != 0)
                abort();
}

static void check_member(const uint8_t *data, size_t size) {
        Buf out = BUF_INIT(0);
        KvMember m;

        if (kv_member_decode(data, size, &m) < 0)
                return;
        if (kv_member_encode(&m, &out) < 0)
                abort();
        same(&out, data, size);
        buf_done(&out);
        kv_member_done(&m);
}

static void check_members(const uint8_t *data, size_t size) {
        Buf once = BUF_INIT(0), twice = BUF_INIT(0), json = BUF_INIT(0);
        KvMembers ms, again;

        if (kv_members_decode(data, size, &ms) < 0)
                return;
        if (kv_members_encode(&ms, &once) < 0 || kv_members_decode(once.data, once.len, &again) < 0 ||
            kv_members_encode(&again, &twice) < 0)
                abort();
        same(&twice, once.data, once.len);
        /* Decoded members are rendered for /v2/members and /v2/machines. */
        if (kv_members_render(&ms, &json) < 0 || kv_members_render_machines(&ms, &json) < 0)
                abort();
        kv_members_done(&again);
        kv_members_done(&ms);
        buf_done(&once);
        buf_done(&twice);
        buf_done(&json);
}

static void check_conf_state(const uint8_t *data, size_t size) {
        Buf out = BUF_INIT(0);
        RaftConfState cs;

        if (kv_conf_state_decode(data, size, &cs) < 0)
                return;
        if (raft_conf_state_validate(&cs) < 0 || kv_conf_state_encode(&cs, &out) < 0)
                abort();
        same(&out, data, size);
        buf_done(&out);
}

static void check_snapshot_data(const uint8_t *data, size_t size) {
        KvMembers ms;
        const void *store;
        size_t store_len;
        KvStore *s = NULL;

        if (kv_snapshot_data_parse(data, size, &ms, &store, &store_len) < 0)
                return;
        if ((const uint8_t *) store < data || (const uint8_t *) store + store_len != data + size)
                abort();
        if (kv_store_new(&s) == 0) {
                (void) kv_store_load(s, store, store_len);
                kv_store_free(s);
        }
        kv_members_done(&ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size == 0 || size > 1 << 20)
                return 0;
        switch (data[0] % 4) {
        case 0:
                check_member(data + 1, size - 1);
                break;
        case 1:
                check_members(data + 1, size - 1);
                break;
        case 2:
                check_conf_state(data + 1, size - 1);
                break;
        default:
                check_snapshot_data(data + 1, size - 1);
        }
        return 0;
}
