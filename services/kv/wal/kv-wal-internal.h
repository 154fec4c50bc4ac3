/* SPDX-License-Identifier: MIT */
/* Private to services/kv/wal: the record format, the KvWal object shared by the writer
 * (kv-wal.c) and recovery (kv-wal-recover.c), and the helpers both use. */
#pragma once

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kv-wal.h"
#include "shared/buf.h"
#include "shared/macro.h"
#include "shared/unaligned.h"

/* Every record: [u32 payload length][u32 crc32c][u8 type][payload], little endian. */
#define WAL_REC_HEADER_SIZE 9U

enum {
        WAL_REC_SEGMENT = 1,    /* first record of every segment: WalSegmentHeader */
        WAL_REC_METADATA = 2,   /* the creator's blob; second record of every segment */
        WAL_REC_HARD_STATE = 3, /* term, vote, commit */
        WAL_REC_SNAPSHOT = 4,   /* snapshot marker: index, term */
        WAL_REC_ENTRY = 5,      /* index, term, type, data */
        WAL_REC_SYNC = 6,       /* first record of every kv_wal_sync() batch: u64 batch number */
};

#define WAL_MAGIC             "FLOTWAL"   /* 8 bytes with the NUL */
#define WAL_VERSION           1U
#define WAL_SEGMENT_PAYLOAD   56U
#define WAL_HARD_STATE_PAYLOAD 24U
#define WAL_SNAPSHOT_PAYLOAD  16U
#define WAL_SYNC_PAYLOAD      8U
#define WAL_ENTRY_PREFIX      17U         /* index, term, type before the data */

/* Torn writes are judged at this granularity: a device writes a 512-byte sector entirely or not
 * at all, so an unwritten part of a record reads as a whole zero-filled sector-sized chunk. */
#define WAL_SECTOR_SIZE       512U

/* The largest segment file recovery reads into memory. */
#define WAL_SEGMENT_FILE_MAX  (KV_WAL_SEGMENT_SIZE_MAX + KV_WAL_RECORD_MAX + 2 * KV_WAL_METADATA_MAX)

#define WAL_NAME_LEN          37          /* "%016" PRIx64 "-%016" PRIx64 ".wal" */

typedef struct WalSegmentHeader {
        uint32_t version;
        uint64_t wal_id;        /* random, the same in every segment of one WAL */
        uint64_t seq;
        uint64_t first_index;   /* index the next entry after the previous segment has */
        uint64_t prev_size;     /* size of the previous segment when this one was cut */
        uint32_t prev_crc;      /* crc of the previous segment's last record */
} WalSegmentHeader;

typedef struct WalSegment {
        uint64_t seq;
        uint64_t first_index;
        uint64_t max_index;     /* largest entry index written to it; 0 if none */
} WalSegment;

/* Where the next record goes: decides its checksum seed and offset. */
typedef struct WalCursor {
        uint64_t seq;
        uint64_t offset;        /* file offset of the next record */
        uint32_t seed;          /* wal_seed(wal_id, seq) */
        uint32_t last_crc;      /* crc of the last record before offset */
        uint64_t body_start;    /* end of the segment's header records */
        uint64_t max_index;
} WalCursor;

/* The log's shape, enough to validate appends: kept by the writer, rebuilt by recovery. */
typedef struct WalLog {
        uint64_t snap_index;
        uint64_t snap_term;
        uint64_t last_index;    /* last live entry, or snap_index if none after it */
        KvWalHardState hs;
        uint64_t sync_no;       /* number of the last sync batch begun */
} WalLog;

/* A segment cut planned by kv_wal_append(): created by the next kv_wal_sync(). */
typedef struct WalCut {
        size_t pend_off;        /* its bytes start here in the write buffer */
        uint64_t seq;
        uint64_t first_index;
        uint64_t prev_max_index; /* max_index of the segment it closes */
} WalCut;

struct KvWal {
        char *dir;
        int dir_fd;             /* holds the flock */
        uint64_t wal_id;
        void *metadata;
        size_t metadata_len;
        uint64_t segment_size;
        size_t max_entries;     /* recovery's limit; appends stop there too */
        bool fallocate_only;    /* no zeros ahead */

        WalSegment *segments;   /* on disk, by seq; the last one is active */
        size_t n_segments;
        int fd;                 /* active segment, O_RDWR */
        uint64_t offset;        /* bytes of the active segment written so far */
        uint64_t zeroed_to;     /* [offset, zeroed_to) of it was written with zeros and synced */

        Buf pend;               /* encoded records not yet written */
        WalCut *cuts;
        size_t n_cuts;
        size_t alloc_cuts;
        WalCursor cur;          /* where the next buffered record lands */
        WalLog log;             /* as of the end of the buffer */

        int broken;             /* < 0: a write or sync failed; every call returns it */
        KvWalError error;
};


/* Checksums: seed per segment, then per record over (offset, length, type, payload). */
uint32_t wal_seed(uint64_t wal_id, uint64_t seq);
uint32_t wal_record_crc(uint32_t seed, uint64_t offset, uint8_t type,
                        const void *p1, size_t n1, const void *p2, size_t n2);
/* Writes a whole record (header + payload parts) to dst; returns its size. */
size_t wal_encode_record(uint8_t *dst, uint32_t seed, uint64_t offset, uint8_t type,
                         const void *p1, size_t n1, const void *p2, size_t n2, uint32_t *ret_crc);
void wal_encode_segment_header(uint8_t dst[WAL_SEGMENT_PAYLOAD], const WalSegmentHeader *h);
void wal_decode_segment_header(const uint8_t src[WAL_SEGMENT_PAYLOAD], WalSegmentHeader *h);

void wal_segment_name(char buf[WAL_NAME_LEN + 1], uint64_t seq, uint64_t first_index);
/* 1 if name is a segment name (sets seq and first index), 0 if not a .wal file at all,
 * -EBADMSG if it ends in .wal but does not parse. */
int wal_parse_segment_name(const char *name, uint64_t *ret_seq, uint64_t *ret_first_index);

/* The shared validation of the overwrite and snapshot rules. Returns 0 or -EINVAL. */
int wal_log_check_entries(const WalLog *l, const KvWalEntry *entries, size_t n);
int wal_log_check_snapshot(const WalLog *l, uint64_t index);

/* Torn-write analysis of a segment image (see docs/kv-wal.md, "Recovery"). */
size_t wal_data_end(const uint8_t *buf, size_t size);
/* fsync()s the directory that contains dir, so a newly created dir's own name is durable. */
int wal_fsync_parent(const char *dir);
bool wal_has_zero_chunk(const uint8_t *buf, size_t start, size_t end);
/* Offset of a valid sync record starting in (after, end), or SIZE_MAX. */
size_t wal_find_sync_record(const uint8_t *buf, size_t size, size_t after, size_t end,
                            uint32_t seed);

/* Fills e (if not NULL) and logs at debug level; returns -ERRNO_VALUE(r). */
int wal_error(KvWalError *e, int r, const char *dir, const char *file, uint64_t offset,
              const char *fmt, ...) _printf_(6, 7);

/* I/O helpers: 0 or -errno. */
int wal_pwrite_all(int fd, const void *p, size_t n, uint64_t offset);
int wal_read_all(int fd, uint8_t *p, size_t n);
int wal_preallocate(int fd, uint64_t size);

/* Recovery, called by kv_wal_open() on a locked, half-built w: reads every segment, fills
 * ret_state (if not NULL) and sets up w's segments, log, cursor and active fd. */
int wal_recover(KvWal *w, const KvWalOptions *opts, KvWalState *ret_state);
