/* SPDX-License-Identifier: MIT */
/* flotilla-kv's write-ahead log: an append-only, checksummed, segmented log of Raft entries, hard
 * states and snapshot markers, with group commit and crash recovery. It knows nothing about Raft
 * beyond the overwrite rule (an entry at an index that already exists replaces it and everything
 * after it); the driver maps Raft's types onto the neutral ones below. docs/kv-wal.md describes
 * the on-disk format and the recovery rules.
 *
 * Not thread-safe: one KvWal is used from one thread (the daemon's event loop). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_WAL_SEGMENT_SIZE_DEFAULT (64ULL * 1024 * 1024) /* rotation threshold = preallocation */
#define KV_WAL_SEGMENT_SIZE_MIN     (4ULL * 1024)
#define KV_WAL_SEGMENT_SIZE_MAX     (1ULL * 1024 * 1024 * 1024)
#define KV_WAL_RECORD_MAX           (64U * 1024 * 1024) /* payload bytes of one record */
#define KV_WAL_ENTRY_DATA_MAX       (KV_WAL_RECORD_MAX - 17U) /* index, term, type precede data */
#define KV_WAL_METADATA_MAX         (1U * 1024 * 1024)
#define KV_WAL_MAX_ENTRIES_DEFAULT  (16U * 1024 * 1024) /* entries kv_wal_open() will recover */
#define KV_WAL_SEGMENTS_MAX         65536U              /* segment files kv_wal_open() will read */

typedef struct KvWal KvWal;

/* One log entry. data is borrowed by kv_wal_append() (copied into the write buffer), and owned by
 * the KvWalState in recovered state. */
typedef struct KvWalEntry {
        uint64_t index;
        uint64_t term;
        uint8_t type;           /* opaque to the WAL */
        const void *data;
        size_t len;             /* <= KV_WAL_ENTRY_DATA_MAX */
} KvWalEntry;

typedef struct KvWalHardState {
        uint64_t term;
        uint64_t vote;
        uint64_t commit;
} KvWalHardState;

/* Describes a snapshot (kv-snap.h). conf_state is an opaque blob of the driver's. */
typedef struct KvWalSnapshotMeta {
        uint64_t index;
        uint64_t term;
        const void *conf_state;
        size_t conf_state_len;
} KvWalSnapshotMeta;

/* Why an operation failed, for the caller's one log line. The return value is authoritative;
 * this adds the file and byte offset concerned. */
typedef struct KvWalError {
        int error;              /* negative errno, same as the function returned */
        char file[64];          /* file name inside the WAL directory, "" if none */
        uint64_t offset;        /* byte offset in that file, UINT64_MAX if none */
        char message[1024];     /* one sentence naming the directory, file and offset */
} KvWalError;

typedef struct KvWalOptions {
        uint64_t segment_size;  /* bytes; a segment is cut when the next record would cross it, and
                                 * new segments are preallocated to it. 0 = 64 MiB. */
        size_t max_entries;     /* kv_wal_open() fails with -E2BIG when more entries would be
                                 * recovered, and kv_wal_append() refuses (-E2BIG) to make the
                                 * log longer than that after the snapshot marker.
                                 * 0 = KV_WAL_MAX_ENTRIES_DEFAULT. */
        bool fallocate_only;    /* do not write zeros ahead of the log (see docs/kv-wal.md): for
                                 * copy-on-write filesystems (btrfs, ZFS), where overwriting is
                                 * not cheaper than writing new blocks. Default: write them. */
        KvWalError *error;      /* optional; filled in when kv_wal_open() fails */
} KvWalOptions;

/* A torn write at the end of the last segment that recovery cut off. */
typedef struct KvWalTornTail {
        bool cut;               /* false: the log ended cleanly */
        char file[64];          /* segment that was truncated */
        uint64_t offset;        /* it was truncated to this size: the end of the last good record */
        uint64_t dropped;       /* bytes of written (non-zero) data discarded after offset */
        char reason[128];       /* what was wrong with the record at offset */
} KvWalTornTail;

/* What kv_wal_open() recovered. Owns everything it points to; release with kv_wal_state_done(). */
typedef struct KvWalState {
        void *metadata;                 /* the blob given to kv_wal_create() */
        size_t metadata_len;
        KvWalHardState hard_state;      /* the last one appended; all zero if none */
        uint64_t snapshot_index;        /* the last snapshot marker; 0/0 if none */
        uint64_t snapshot_term;
        KvWalEntry *entries;            /* entries after snapshot_index, consecutive indexes */
        size_t n_entries;
        KvWalTornTail torn;
        uint64_t first_seq;             /* segments read: first_seq .. last_seq */
        uint64_t last_seq;
        void *arena;                    /* private: holds the entries' data */
} KvWalState;

void kv_wal_state_done(KvWalState *s);

/* Creates a new WAL in dir (created with mode 0700 if missing) holding the metadata blob (e.g.
 * node and cluster id; <= KV_WAL_METADATA_MAX bytes), an empty log and a zero hard state.
 * -EEXIST if dir already holds a WAL, -EBUSY if another process has it open. Durable on return. */
int kv_wal_create(const char *dir, const void *metadata, size_t len);

/* Opens the WAL in dir and takes an exclusive lock on it (-EBUSY if another process holds it).
 * Recovers the state into *ret_state (may be NULL), cutting a torn tail off the last segment and
 * reporting it in ret_state->torn. Damage anywhere else fails with -EBADMSG (unknown format
 * version: -EPROTO) and leaves the directory untouched; opts->error then names file and offset.
 * -ENOENT if dir holds no WAL. opts may be NULL for the defaults. */
int kv_wal_open(const char *dir, const KvWalOptions *opts, KvWal **ret, KvWalState *ret_state);

/* Buffers entries (consecutive indexes), then the hard state (NULL = unchanged) after them;
 * nothing is written until kv_wal_sync(). The first entry's index must be in
 * (snapshot index, last index + 1]: an index <= the last one replaces that entry and drops all
 * after it (the leader truncated our tail); 2^64 - 1 is never an index. -EINVAL for anything
 * else; -E2BIG for an entry over KV_WAL_ENTRY_DATA_MAX, for a log longer than max_entries after
 * the snapshot marker, or for more than KV_WAL_SEGMENTS_MAX segments (what kv_wal_open() would
 * refuse); -EOVERFLOW when the sync batch numbers are used up (2^64 - 2 batches; only a WAL with
 * forged records gets there). On error nothing is buffered. */
int kv_wal_append(KvWal *w, const KvWalEntry *entries, size_t n, const KvWalHardState *hs);

/* Buffers a snapshot marker: a snapshot at index/term is durable (the driver saved it with
 * kv-snap.h first), so entries up to index are no longer needed. Entries up to index are dropped
 * from the log; if index is beyond the last entry the log continues at index + 1. index must not
 * be below the previous marker (-EINVAL). */
int kv_wal_mark_snapshot(KvWal *w, uint64_t index, uint64_t term);

/* Group commit: writes everything buffered since the last sync with as few write calls as
 * possible (one, unless a segment is cut) and makes it durable with one fdatasync(). Only after
 * this returns 0 may the driver act on what it appended (send messages, reply to clients).
 * A failed write or sync leaves the WAL unusable: every later call returns the same error, and
 * the driver must free it and reopen (recovery decides what survived). */
int kv_wal_sync(KvWal *w);

/* Deletes whole closed segments whose entries all have indexes < index, oldest first, and fsyncs
 * the directory. index must not exceed the durable snapshot marker + 1 (-EINVAL): entries a
 * snapshot does not cover are never dropped. Syncs first if anything is buffered, so a marker is
 * durable before the segments it makes redundant are gone. Every segment starts with the
 * metadata, hard state and snapshot marker current when it was cut, so no deleted segment is
 * needed for recovery. Returns the number of segments deleted. */
int kv_wal_release_to(KvWal *w, uint64_t index);

/* Closes the WAL and releases the lock. Buffered, unsynced records are discarded, as a crash
 * would discard them. Accepts NULL; returns NULL. */
KvWal *kv_wal_free(KvWal *w);

/* The error of the last failed call on w (or the one that made it unusable). */
const KvWalError *kv_wal_last_error(const KvWal *w);

/* Introspection for the driver and tests. */
uint64_t kv_wal_last_index(const KvWal *w);     /* last entry appended (or the marker) */
uint64_t kv_wal_snapshot_index(const KvWal *w); /* last marker appended */
size_t kv_wal_buffered(const KvWal *w);         /* bytes waiting for kv_wal_sync() */
size_t kv_wal_segments(const KvWal *w);         /* segment files on disk */
