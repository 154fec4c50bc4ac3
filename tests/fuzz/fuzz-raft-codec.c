/* SPDX-License-Identifier: MIT */
/* Raft's wire codec on arbitrary bytes (what a peer sends, what the WAL holds). The first byte
 * picks the decoder: messages, conf changes or single entries. Decoding must be strict: whatever
 * decodes must encode back to exactly the bytes it came from (the encoding is canonical), with
 * raft_*_encoded_size() telling the truth. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "raft.h"

static void check_message(const uint8_t *data, size_t size) {
        RaftMessage m;
        uint8_t *out;
        size_t n;

        if (raft_message_decode(data, size, NULL, &m) < 0)
                return;
        n = raft_message_encoded_size(&m);
        out = malloc(n ?: 1);
        if (!out)
                abort();
        if (n != size || raft_message_encode(&m, out, n) != (int) n || memcmp(out, data, n) != 0)
                abort();
        /* One byte short must be refused, never written past. */
        if (n > 0 && raft_message_encode(&m, out, n - 1) >= 0)
                abort();
        free(out);
        raft_message_free_contents(&m, NULL);
}

static void check_conf_change(const uint8_t *data, size_t size) {
        RaftConfChange cc;
        uint8_t *out;
        size_t n;

        if (raft_conf_change_decode(data, size, &cc) < 0)
                return;
        n = raft_conf_change_encoded_size(&cc);
        out = malloc(n ?: 1);
        if (!out)
                abort();
        if (n != size || raft_conf_change_encode(&cc, out, n) != (int) n || memcmp(out, data, n) != 0)
                abort();
        free(out);
}

/* Entries are decoded back to back, as a WAL record holding several would be. */
static void check_entries(const uint8_t *data, size_t size) {
        size_t off = 0;

        while (off < size) {
                RaftEntry e;
                uint8_t *out;
                int used = raft_entry_decode(data + off, size - off, &e);
                size_t n;

                if (used <= 0)
                        return;
                if ((size_t) used > size - off)
                        abort();
                n = raft_entry_encoded_size(&e);
                out = malloc(n);
                if (!out)
                        abort();
                if (n != (size_t) used || raft_entry_encode(&e, out, n) != used || memcmp(out, data + off, n) != 0)
                        abort();
                free(out);
                off += (size_t) used;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size == 0)
                return 0;
        switch (data[0] % 3) {
        case 0:
                check_message(data + 1, size - 1);
                break;
        case 1:
                check_conf_change(data + 1, size - 1);
                break;
        default:
                check_entries(data + 1, size - 1);
        }
        return 0;
}
