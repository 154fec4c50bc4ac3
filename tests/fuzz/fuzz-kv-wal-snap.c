/* SPDX-License-Identifier: MIT */
/* Snapshot loading on hostile bytes: the input (after a 16-byte term/index prefix that names the
 * file) becomes one .snap file; whatever loads must match what the streaming reader returns. */
#include "fuzz.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv-snap.h"
#include "shared/macro.h"

static const char *tmp_root(void) {
        const char *t = getenv("TMPDIR");

        if (t)
                return t;
        return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KvSnapId id = {};
        KvWalSnapshotMeta m, m2;
        KvSnapReader *r = NULL;
        char dir[256], path[512];
        void *buf = NULL;
        size_t len = 0;
        int fd;

        if (size < 16)
                return 0;
        memcpy(&id.term, data, 8);
        memcpy(&id.index, data + 8, 8);
        (void) snprintf(dir, sizeof(dir), "%s/fuzz-kv-snap-XXXXXX", tmp_root());
        if (!mkdtemp(dir))
                abort();
        (void) snprintf(path, sizeof(path), "%s/%016llx-%016llx.snap", dir,
                        (unsigned long long) id.term, (unsigned long long) id.index);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, data + 16, size - 16) != (ssize_t) (size - 16))
                abort();
        close(fd);

        if (kv_snap_load_newest(dir, &m, &buf, &len) == 0) {
                uint8_t *back = malloc(len + 1);
                size_t pos = 0;
                ssize_t k;

                if (!back || kv_snap_reader_open(dir, id, &r, &m2, NULL) < 0 ||
                    m2.index != m.index || m2.term != m.term ||
                    m2.conf_state_len != m.conf_state_len ||
                    memcmp(m2.conf_state, m.conf_state, m.conf_state_len) != 0 ||
                    kv_snap_reader_size(r) != len)
                        abort();
                while ((k = kv_snap_reader_read(r, back + pos, 4096)) > 0)
                        pos += (size_t) k;
                if (k < 0 || pos != len || memcmp(back, buf, len) != 0)
                        abort();
                kv_snap_reader_free(r);
                free(back);
                free(buf);
        }
        (void) unlink(path);
        (void) rmdir(dir);
        return 0;
}
