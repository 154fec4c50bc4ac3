/* SPDX-License-Identifier: MIT */
/* Wire codec: round trips of every field, and hostile input (truncation at every length, bad
 * versions and types, absurd counts and lengths, trailing bytes, invalid configurations). */
#include "raft-test.h"

static RaftMessage sample(RaftEntry *es, RaftSnapshot *snap) {
        es[0] = (RaftEntry) { .term = 3, .index = 7, .type = RAFT_ENTRY_NORMAL, .data = "hello", .len = 5 };
        es[1] = (RaftEntry) { .term = 3, .index = 8, .type = RAFT_ENTRY_CONF_CHANGE, .data = NULL, .len = 0 };
        *snap = (RaftSnapshot) { .metadata = { .index = 6, .term = 2, .conf_state = conf_of(3) },
                                 .data = "state", .len = 5 };
        snap->metadata.conf_state.learners[snap->metadata.conf_state.n_learners++] = 9;
        return (RaftMessage) {
                .type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 3, .log_term = 2, .index = 6,
                .commit = 5, .reject = true, .reject_hint = 4, .entries = es, .n_entries = 2,
                .snapshot = snap, .context = "ctx", .context_len = 3,
        };
}

static void message_round_trip_keeps_every_field(void **state) {
        RaftEntry es[2];
        RaftSnapshot snap;
        RaftMessage m = sample(es, &snap), d;
        size_t n = raft_message_encoded_size(&m);
        uint8_t *buf = malloc(n);

        assert_int_equal(raft_message_encode(&m, buf, n), (int) n);
        assert_int_equal(raft_message_decode(buf, n, NULL, &d), 0);
        assert_int_equal(d.type, m.type);
        assert_int_equal(d.to, 2);
        assert_int_equal(d.from, 1);
        assert_int_equal(d.term, 3);
        assert_int_equal(d.log_term, 2);
        assert_int_equal(d.index, 6);
        assert_int_equal(d.commit, 5);
        assert_true(d.reject);
        assert_int_equal(d.reject_hint, 4);
        assert_int_equal(d.n_entries, 2);
        assert_int_equal(d.entries[0].len, 5);
        assert_memory_equal(d.entries[0].data, "hello", 5);
        assert_int_equal(d.entries[1].type, RAFT_ENTRY_CONF_CHANGE);
        assert_int_equal(d.entries[1].len, 0);
        assert_non_null(d.snapshot);
        assert_int_equal(d.snapshot->metadata.index, 6);
        assert_int_equal(d.snapshot->metadata.conf_state.n_voters, 3);
        assert_int_equal(d.snapshot->metadata.conf_state.learners[0], 9);
        assert_memory_equal(d.snapshot->data, "state", 5);
        assert_memory_equal(d.context, "ctx", 3);
        /* The decoded message is independent of the buffer. */
        memset(buf, 0, n);
        assert_memory_equal(d.entries[0].data, "hello", 5);
        raft_message_free_contents(&d, NULL);
        assert_null(d.entries);
        free(buf);
}

static void empty_message_needs_no_allocation(void **state) {
        RaftMessage m = { .type = RAFT_MSG_HEARTBEAT, .to = 1, .from = 2, .term = 9 }, d;
        uint8_t buf[128];
        FailAlloc f = { .fail_at = 1, .sticky = true };
        RaftAllocator a = fail_allocator(&f);
        int n = raft_message_encode(&m, buf, sizeof(buf));

        assert_true(n > 0);
        assert_int_equal(raft_message_decode(buf, (size_t) n, &a, &d), 0);
        assert_int_equal(f.calls, 0);
        assert_int_equal(d.term, 9);
        raft_message_free_contents(&d, &a);
}

static void truncated_input_is_rejected_at_every_length(void **state) {
        RaftEntry es[2];
        RaftSnapshot snap;
        RaftMessage m = sample(es, &snap), d;
        size_t n = raft_message_encoded_size(&m);
        uint8_t *buf = malloc(n);

        assert_int_equal(raft_message_encode(&m, buf, n), (int) n);
        for (size_t k = 0; k < n; k++) {
                /* A fresh allocation of exactly k bytes, so ASan sees any overread. */
                uint8_t *t = malloc(k ? k : 1);

                memcpy(t, buf, k);
                assert_int_equal(raft_message_decode(t, k, NULL, &d), -EBADMSG);
                free(t);
        }
        free(buf);
}

static void trailing_bytes_are_rejected(void **state) {
        RaftMessage m = { .type = RAFT_MSG_BEAT, .to = 1 }, d;
        uint8_t buf[128];
        int n = raft_message_encode(&m, buf, sizeof(buf));

        assert_true(n > 0);
        assert_int_equal(raft_message_decode(buf, (size_t) n + 1, NULL, &d), -EBADMSG);
}

static void bad_header_fields_are_rejected(void **state) {
        RaftMessage m = { .type = RAFT_MSG_APP, .to = 1 }, d;
        uint8_t buf[128];
        int n = raft_message_encode(&m, buf, sizeof(buf));

        buf[0] = RAFT_CODEC_VERSION + 1;
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        buf[0] = RAFT_CODEC_VERSION;
        buf[1] = _RAFT_MSG_MAX;
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        buf[1] = RAFT_MSG_APP;
        buf[2] = 0x80;  /* unknown flag */
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        buf[2] = 0;
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), 0);
        assert_int_equal(raft_message_decode(NULL, 5, NULL, &d), -EINVAL);
}

static void absurd_counts_and_lengths_are_rejected(void **state) {
        RaftMessage m = { .type = RAFT_MSG_APP, .to = 1 }, d;
        uint8_t buf[256];
        int n = raft_message_encode(&m, buf, sizeof(buf));
        size_t ctx_at = 3 + 7 * 8, count_at = ctx_at + 4;

        assert_true(n > 0);
        /* Context longer than the limit. */
        buf[ctx_at + 2] = 0x10;
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        buf[ctx_at + 2] = 0;
        /* A huge entry count with no bytes behind it must fail before allocating. */
        buf[count_at + 3] = 0x7f;
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        buf[count_at + 3] = 0;
        /* One entry claiming 4 GiB of data. */
        {
                RaftEntry e = { .term = 1, .index = 1, .data = "x", .len = 1 };
                m.entries = &e;
                m.n_entries = 1;
                n = raft_message_encode(&m, buf, sizeof(buf));
                assert_true(n > 0);
                memset(buf + count_at + 4 + 17, 0xff, 4);
                assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
                /* And a bad entry type. */
                n = raft_message_encode(&m, buf, sizeof(buf));
                buf[count_at + 4 + 16] = 7;
                assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        }
}

static void invalid_snapshot_configuration_is_rejected(void **state) {
        RaftEntry es[2];
        RaftSnapshot snap;
        RaftMessage m = sample(es, &snap), d;
        uint8_t buf[512];
        int n;

        m.n_entries = 0;
        m.context_len = 0;
        n = raft_message_encode(&m, buf, sizeof(buf));
        assert_true(n > 0);
        /* Layout: header, 0 entries, snapshot index/term, n_voters, voters... Make the voters
         * unsorted: swap the first two ids. */
        size_t v = 3 + 7 * 8 + 4 + 4 + 16 + 1;
        uint8_t tmp[8];
        memcpy(tmp, buf + v, 8);
        memcpy(buf + v, buf + v + 8, 8);
        memcpy(buf + v + 8, tmp, 8);
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        /* Too many voters. */
        buf[v - 1] = RAFT_MAX_VOTERS + 1;
        assert_int_equal(raft_message_decode(buf, (size_t) n, NULL, &d), -EBADMSG);
        /* Encoding refuses an invalid configuration too. */
        snap.metadata.conf_state.voters[0] = 0;
        assert_int_equal(raft_message_encode(&m, buf, sizeof(buf)), -EINVAL);
}

static void encode_checks_buffer_size(void **state) {
        RaftEntry es[2];
        RaftSnapshot snap;
        RaftMessage m = sample(es, &snap);
        uint8_t buf[16];

        assert_int_equal(raft_message_encode(&m, buf, sizeof(buf)), -ENOBUFS);
        m.type = _RAFT_MSG_MAX;
        assert_int_equal(raft_message_encode(&m, buf, sizeof(buf)), -EINVAL);
}

static void decode_out_of_memory_returns_enomem(void **state) {
        RaftEntry es[2];
        RaftSnapshot snap;
        RaftMessage m = sample(es, &snap), d;
        uint8_t buf[512];
        FailAlloc f = { .fail_at = 1 };
        RaftAllocator a = fail_allocator(&f);
        int n = raft_message_encode(&m, buf, sizeof(buf));

        assert_int_equal(raft_message_decode(buf, (size_t) n, &a, &d), -ENOMEM);
        assert_int_equal(raft_message_decode(buf, (size_t) n, &a, &d), 0);
        raft_message_free_contents(&d, &a);
        assert_int_equal(f.live, 0);
}

static void conf_change_round_trip_and_errors(void **state) {
        RaftConfChange cc = { .type = RAFT_CONF_ADD_LEARNER, .node_id = 7, .context = "http://x", .context_len = 8 }, d;
        uint8_t buf[64];
        int n = raft_conf_change_encode(&cc, buf, sizeof(buf));

        assert_int_equal(n, (int) raft_conf_change_encoded_size(&cc));
        assert_int_equal(raft_conf_change_decode(buf, (size_t) n, &d), 0);
        assert_int_equal(d.type, RAFT_CONF_ADD_LEARNER);
        assert_int_equal(d.node_id, 7);
        assert_memory_equal(d.context, "http://x", 8);
        for (int k = 0; k < n; k++)
                assert_int_equal(raft_conf_change_decode(buf, (size_t) k, &d), -EBADMSG);
        buf[1] = 9;
        assert_int_equal(raft_conf_change_decode(buf, (size_t) n, &d), -EBADMSG);
        cc.node_id = 0;
        assert_int_equal(raft_conf_change_encode(&cc, buf, sizeof(buf)), -EINVAL);
        cc.node_id = 1;
        assert_int_equal(raft_conf_change_encode(&cc, buf, 4), -ENOBUFS);
}

static void entry_round_trip_and_errors(void **state) {
        RaftEntry e = { .term = 5, .index = 77, .type = RAFT_ENTRY_NORMAL, .data = "abc", .len = 3 }, d;
        uint8_t buf[64];
        int n = raft_entry_encode(&e, buf, sizeof(buf));

        assert_int_equal(n, (int) raft_entry_encoded_size(&e));
        assert_int_equal(raft_entry_decode(buf, sizeof(buf), &d), n);   /* stops after one entry */
        assert_int_equal(d.term, 5);
        assert_int_equal(d.index, 77);
        assert_memory_equal(d.data, "abc", 3);
        for (int k = 0; k < n; k++)
                assert_int_equal(raft_entry_decode(buf, (size_t) k, &d), -EBADMSG);
        assert_int_equal(raft_entry_decode(NULL, 0, &d), -EBADMSG);
}

static void random_garbage_never_crashes(void **state) {
        uint64_t x = 88172645463325252ULL;
        uint8_t buf[300];
        RaftMessage d;

        for (int round = 0; round < 20000; round++) {
                size_t n = (size_t) (x % sizeof(buf));

                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        buf[i] = (uint8_t) x;
                }
                buf[0] = RAFT_CODEC_VERSION;    /* get past the first check most of the time */
                if (n > 1)
                        buf[1] %= _RAFT_MSG_MAX;
                if (n > 2)
                        buf[2] &= 3;
                if (raft_message_decode(buf, n, NULL, &d) == 0)
                        raft_message_free_contents(&d, NULL);
        }
}

TEST_MAIN(
        cmocka_unit_test(message_round_trip_keeps_every_field),
        cmocka_unit_test(empty_message_needs_no_allocation),
        cmocka_unit_test(truncated_input_is_rejected_at_every_length),
        cmocka_unit_test(trailing_bytes_are_rejected),
        cmocka_unit_test(bad_header_fields_are_rejected),
        cmocka_unit_test(absurd_counts_and_lengths_are_rejected),
        cmocka_unit_test(invalid_snapshot_configuration_is_rejected),
        cmocka_unit_test(encode_checks_buffer_size),
        cmocka_unit_test(decode_out_of_memory_returns_enomem),
        cmocka_unit_test(conf_change_round_trip_and_errors),
        cmocka_unit_test(entry_round_trip_and_errors),
        cmocka_unit_test(random_garbage_never_crashes),
)
