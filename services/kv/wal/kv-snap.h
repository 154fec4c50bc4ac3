/* SPDX-License-Identifier: MIT */
/* Snapshot files for flotilla-kv: <dir>/<term:016x>-<index:016x>.snap, each a header (index, term,
 * the driver's conf_state blob), the state machine's bytes and a CRC-32C over everything. Files
 * are written under a temporary name, fsynced, renamed and the directory fsynced, so a snapshot
 * is either complete and durable or absent. Loading skips damaged files in favour of an older
 * valid one. Streaming writer and reader objects serve snapshots received from or sent to peers
 * in chunks from an event loop; the buffer functions are built on them.
 *
 * One writer per directory at a time (retention deletes stray temporary files). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv-wal.h"

#define KV_SNAP_KEEP_DEFAULT     5U
#define KV_SNAP_CONF_STATE_MAX   (1U * 1024 * 1024)
#define KV_SNAP_DATA_MAX         (4ULL * 1024 * 1024 * 1024)
#define KV_SNAP_FILES_MAX        65536U /* .snap files a directory listing considers */

typedef struct KvSnapWriter KvSnapWriter;
typedef struct KvSnapReader KvSnapReader;

/* Identifies one snapshot file. */
typedef struct KvSnapId {
        uint64_t term;
        uint64_t index;
} KvSnapId;

/* Called by the loaders for each file they skip: name inside dir, -errno, and why. */
typedef void (*KvSnapSkipFn)(const char *name, int error, const char *reason, void *userdata);

/* Writes data (len bytes) as the snapshot meta describes, durably, then deletes all but the
 * newest KV_SNAP_KEEP_DEFAULT snapshot files. Replaces an existing file of the same term/index.
 * An error from the deletions (the only kind possible after the rename) is returned although the
 * new snapshot is then in place. */
int kv_snap_save(const char *dir, const KvWalSnapshotMeta *meta, const void *data, size_t len);

/* Streaming save: new() creates the temporary file (and dir, mode 0700, if missing), write()
 * appends data in any chunk sizes, commit() makes it durable under its name and then keeps only
 * the newest `keep` files (0: delete nothing; errors as for kv_snap_save()). free() without
 * commit() deletes the temporary file. meta->conf_state is copied. After any error the writer
 * can only be freed. */
int kv_snap_writer_new(const char *dir, const KvWalSnapshotMeta *meta, KvSnapWriter **ret);
int kv_snap_writer_write(KvSnapWriter *s, const void *data, size_t len);
int kv_snap_writer_commit(KvSnapWriter *s, unsigned keep);
KvSnapWriter *kv_snap_writer_free(KvSnapWriter *s);

/* Opens one snapshot and verifies all of it before returning, so read() never hands out bytes of
 * a damaged file. ret_meta->conf_state points into the reader (valid until it is freed).
 * read() returns the number of bytes copied, 0 at the end, -EBADMSG if the file changed after
 * it was verified. error (optional) says what was wrong. */
int kv_snap_reader_open(const char *dir, KvSnapId id, KvSnapReader **ret, KvWalSnapshotMeta *ret_meta,
                        KvWalError *error);
ssize_t kv_snap_reader_read(KvSnapReader *s, void *buf, size_t size);
uint64_t kv_snap_reader_size(const KvSnapReader *s); /* data bytes in total */
KvSnapReader *kv_snap_reader_free(KvSnapReader *s);

/* Loads one snapshot into memory. *ret_data is one allocation to free(); ret_meta->conf_state
 * points into it (after the data), so it needs no free of its own. -ENOENT if there is no such
 * file, -EBADMSG if it is damaged (-EPROTO: unknown version), with error (optional) naming the
 * file and offset. */
int kv_snap_load(const char *dir, KvSnapId id, KvWalSnapshotMeta *ret_meta, void **ret_data,
                 size_t *ret_len, KvWalError *error);

/* Loads the newest valid snapshot (highest index, then term), skipping damaged ones and reporting
 * each to on_skip (if not NULL) and at debug level. -ENOENT if there is none. */
int kv_snap_load_newest(const char *dir, KvWalSnapshotMeta *ret_meta, void **ret_data,
                        size_t *ret_len);
int kv_snap_load_newest_full(const char *dir, KvSnapSkipFn on_skip, void *userdata,
                             KvWalSnapshotMeta *ret_meta, void **ret_data, size_t *ret_len);

/* The snapshot files in dir, newest first (free() *ret). Returns the count. */
int kv_snap_list(const char *dir, KvSnapId **ret);

/* Deletes all but the newest keep (>= 1) snapshot files and any temporary files, then fsyncs the
 * directory. Returns the number of snapshot files deleted. */
int kv_snap_purge(const char *dir, unsigned keep);
