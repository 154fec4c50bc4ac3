/* SPDX-License-Identifier: MIT */
/* /v2/members answers from arbitrary bytes: what a joining member reads from whatever the --join
 * URLs point at. A parsed table must render back and parse to the same members. */
#include "fuzz.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv-join.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KvMembers ms = {}, again = {};
        Buf b = BUF_INIT(0);

        if (kv_members_parse_json((const char *) data, size, &ms) < 0)
                return 0;
        if (kv_members_render(&ms, &b) < 0 || kv_members_parse_json((const char *) b.data, b.len, &again) < 0)
                abort();
        if (again.n != ms.n)
                abort();
        for (size_t i = 0; i < ms.n; i++)
                if (again.members[i].id != ms.members[i].id || strcmp(again.members[i].name, ms.members[i].name) != 0 ||
                    strv_length(again.members[i].peer_urls) != strv_length(ms.members[i].peer_urls))
                        abort();
        buf_done(&b);
        kv_members_done(&ms);
        kv_members_done(&again);
        return 0;
}
