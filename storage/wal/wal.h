/*
 * storage/wal: the shard's append-only log, shared by all its Raft groups.
 *
 * One log per shard, so that one write linked to one fdatasync per loop iteration makes
 * the new records of every group durable at once (group commit). The log is also the
 * B-tree's redo log: after a crash the B-tree opens its last checkpoint and each range
 * replays its entries from its applied index.
 *
 * Files. DIR/<seq>.wal, seq as 16 hex digits, contiguous from the oldest kept. Each
 * segment is preallocated (segment_bytes, 64 MiB by default) and starts with a 32-byte
 * header; then batches of 8-byte-aligned records, then zeros.
 *
 *   segment header (32 bytes)
 *     0   8  magic "TSWAL01\n"
 *     8   8  seq
 *     16  8  base_lsn: the log sequence number of this segment's byte 0
 *     24  4  segment_bytes
 *     28  4  CRC32C of bytes [0, 28)
 *
 *   record (24-byte header + payload, zero-padded to 8 bytes)
 *     0   4  len: payload bytes
 *     4   4  crc: CRC32C of (seq as u64, len as u32) then of bytes [8, 24 + len)
 *     8   1  type (enum wal_record_type)
 *     9   7  zero
 *     16  8  group id (0 for BATCH)
 *     24  len payload
 *
 *   payloads
 *     BATCH        u32 batch_bytes (this record included), u32 records, u64 first_lsn
 *     ENTRY        u64 term, u64 index, data
 *     HARD_STATE   u64 term, u64 vote, u64 commit
 *     TRUNCATE     u64 index: entries >= index are gone
 *     COMPACT      u64 index, u64 term: entries <= index are no longer needed
 *     SNAPSHOT     u64 index, u64 term: the log is empty and restarts after index
 *     REMOVE       (none): the group is gone
 *     GROUP_STATE  u64 snap_index, u64 snap_term, u64 term, u64 vote, u64 commit,
 *                  u64 flags (bit 0: has hard state), u64 last_index
 *
 * Why these choices.
 *  - len and crc share the record's first aligned 8 bytes, which always lie in one
 *    sector, so the length cannot be torn apart from its checksum.
 *  - One CRC per record, not a chain: a record is checked on its own (reads of single
 *    entries verify them), and seeding it with the segment's seq means a record copied
 *    or left over from another segment never validates in this one.
 *  - Every write is one batch that begins with a BATCH record giving its length. A
 *    batch is written only after the previous one's fdatasync completed, so only the
 *    last batch can be torn. Recovery accepts a bad batch as a torn tail only if it is
 *    in the last segment and no valid BATCH record follows it anywhere in the segment;
 *    it then cuts the log there and zeroes the cut part. Anything else is corruption:
 *    the WAL refuses to open and names the file, the offset and the group. (A bit flip
 *    in the last batch of the log cannot be told from a torn write; that batch may have
 *    been reported durable. Raft replication recovers such a replica from its peers.)
 *  - Each new segment starts with a GROUP_STATE record per live group, so that once no
 *    group needs an entry in a segment, the segment can be deleted without losing a
 *    hard state, a compaction point or a snapshot marker. Replay that starts at such a
 *    segment knows a group's entries up to last_index only as phantoms (their
 *    records are in deleted segments); later records must compact them all away, and a
 *    phantom still retained at the end of recovery is reported as corruption.
 *
 * Durability contract. Every record-producing call returns at once with the record
 * staged in memory, and its LSN (log sequence number: the byte position in the log just
 * after the record) is at most wal_staged_lsn(). wal_flush() asks for everything staged
 * to become durable: when no write is in flight the staged batch is written with one
 * write linked to one fdatasync; otherwise it keeps growing until the write in flight
 * completes and then goes (group commit). When a batch is durable, config.durable_cb
 * reports the new wal_durable_lsn(); a record is durable once its LSN is at most that.
 * In-memory state (terms, last index, hard state) changes at once, when staged.
 *
 * Errors. Bad arguments return TS_EINVAL (an entry index that is not last + 1 after an
 * implied truncation, an index below the compaction point). Staging more than
 * inflight_bytes_max returns TS_EFULL: flush and run the disk, then retry. ENOSPC when
 * creating a segment returns TS_ENOSPACE and changes nothing: the log stays consistent
 * and usable once space is freed. A failed write or fdatasync (EIO...) is sticky: the
 * page cache can no longer be trusted (fsyncgate), so every later call returns the
 * error and the shard must restart and recover from disk; durable_cb is not called for
 * the failed batch.
 *
 * Reads. Terms and positions of every retained entry are indexed in memory, so term
 * lookups never touch the disk. Entry payloads come from a cache of the most recent
 * cache_bytes of the log, else from disk through the disk interface.
 *
 * Threading: one shard. The disk's callbacks (inside disk_run) drive completions.
 */
#ifndef TS_STORAGE_WAL_WAL_H
#define TS_STORAGE_WAL_WAL_H

#include "core/util/mem.h"
#include "storage/disk/disk.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wal;

enum wal_record_type {
    WAL_BATCH = 1,
    WAL_ENTRY = 2,
    WAL_HARD_STATE = 3,
    WAL_TRUNCATE = 4,
    WAL_COMPACT = 5,
    WAL_SNAPSHOT = 6,
    WAL_REMOVE = 7,
    WAL_GROUP_STATE = 8,
};

#define WAL_SEGMENT_HEADER_BYTES 32u
#define WAL_RECORD_HEADER_BYTES 24u
#define WAL_MAGIC "TSWAL01\n"

struct wal_config {
    const char *dir;             /* created if missing */
    uint64_t segment_bytes;      /* 0: TS_WAL_SEGMENT_BYTES_DEFAULT */
    uint32_t inflight_bytes_max; /* staged + being written; 0: TS_WAL_INFLIGHT_BYTES_MAX */
    uint32_t cache_bytes;        /* recent log kept for reads; 0: TS_WAL_CACHE_BYTES_DEFAULT */
    /* Called inside disk_run when a batch becomes durable. */
    void (*durable_cb)(void *data, uint64_t durable_lsn);
    void *data;
    /* Called for each line of recovery's report (a torn tail cut, segments found). */
    void (*report_cb)(void *data, const char *line);
};

struct wal_entry {
    uint64_t term;
    uint64_t index;
    const void *data; /* borrowed for the call: the WAL copies it */
    uint32_t len;
};

struct wal_hard_state {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

struct wal_group_info {
    uint64_t group;
    uint64_t snap_index; /* entries <= snap_index are compacted away */
    uint64_t snap_term;
    uint64_t first_index; /* snap_index + 1 */
    uint64_t last_index;  /* snap_index when the log is empty */
    bool has_hard_state;
    struct wal_hard_state hard_state;
};

/*
 * Opens (creating if empty) the log in cfg->dir and recovers every group's state from
 * it. Borrows disk and alloc, which must outlive the WAL; copies cfg. Returns 0, or
 * TS_ECORRUPT with the file, offset and group in errmsg, or -errno / TS_ENOMEM.
 */
int wal_open(const struct wal_config *cfg, struct disk *disk, const struct ts_allocator *alloc,
             struct wal **out, char *errmsg, size_t errmsg_bytes);

/* Frees the WAL. Staged records that were not made durable are lost. The caller runs
 * the disk until no WAL request is in flight first (wal_idle). */
void wal_close(struct wal *w);

/* Appends entries of one group; e[0].index may be at most last + 1, and an index at or
 * below last truncates from there first (a Raft conflict). Indexes must be contiguous
 * and above snap_index. A group is created by its first record. */
int wal_append(struct wal *w, uint64_t group, const struct wal_entry *e, uint32_t n);
int wal_save_hard_state(struct wal *w, uint64_t group, const struct wal_hard_state *hs);
/* Drops entries >= index (index > snap_index). */
int wal_truncate(struct wal *w, uint64_t group, uint64_t index);
/* Entries <= index are no longer needed (snap_index < index <= last). */
int wal_compact(struct wal *w, uint64_t group, uint64_t index);
/* A snapshot at (index, term) replaced the group's log: it is empty and restarts at
 * index + 1. */
int wal_snapshot(struct wal *w, uint64_t group, uint64_t index, uint64_t term);
int wal_remove_group(struct wal *w, uint64_t group);

/* Asks for everything staged to become durable (see the contract above). Returns 0 or
 * the sticky I/O error. */
int wal_flush(struct wal *w);

uint64_t wal_staged_lsn(const struct wal *w);
uint64_t wal_durable_lsn(const struct wal *w);
/* True when no write is in flight and nothing is staged. */
bool wal_idle(const struct wal *w);
/* The sticky error, or 0. */
int wal_error(const struct wal *w);

/* Groups and terms: from memory, never the disk. */
int wal_group_info(const struct wal *w, uint64_t group, struct wal_group_info *out);
/* Term of an entry; index == snap_index gives snap_term. TS_ENOTFOUND for an unknown
 * group or an index past last, TS_ECOMPACTED below snap_index. */
int wal_term(const struct wal *w, uint64_t group, uint64_t index, uint64_t *term);
/* Calls fn for every live group (order unspecified); stops at fn's first non-zero. */
int wal_groups(const struct wal *w, int (*fn)(void *arg, const struct wal_group_info *g),
               void *arg);

/*
 * Reads entries [lo, hi) of a group into buf, up to buf_bytes of entry data (at least
 * one entry is always returned when it fits buf_bytes at all). Completes either at once
 * (returns 1: everything was in the cache) or later through cb inside disk_run (returns
 * 0). The entries' data point into buf. The caller owns req and buf until completion.
 */
struct wal_read_req {
    uint64_t group;
    uint64_t lo;
    uint64_t hi;
    uint8_t *buf;
    uint32_t buf_bytes;
    struct wal_entry *entries; /* room for hi - lo */
    void (*cb)(struct wal_read_req *req);
    void *data;
    /* results */
    int res;        /* 0, or an error */
    uint32_t count; /* entries read */
    /* private */
    uint32_t pending_;
    struct wal *wal_;
};
int wal_read(struct wal *w, struct wal_read_req *req);

struct wal_stats;

/* One record as tessera-admin shows it. */
struct wal_record_info {
    uint64_t seq;    /* segment */
    uint64_t offset; /* in the segment file */
    uint64_t lsn;
    uint8_t type; /* enum wal_record_type */
    uint64_t group;
    uint64_t term;  /* ENTRY, HARD_STATE, COMPACT, SNAPSHOT, GROUP_STATE (hard state's) */
    uint64_t index; /* ENTRY, TRUNCATE, COMPACT, SNAPSHOT, GROUP_STATE (snap_index) */
    uint32_t len;   /* payload bytes */
};

/*
 * Reads the log in dir exactly as recovery would, changing nothing (a torn tail is
 * reported, not cut; an empty directory stays empty). Calls fn for every record of
 * every valid batch, in log order (fn's non-zero return stops the scan and is
 * returned), and report_cb for recovery's report lines; on success fills *stats (may
 * be NULL). Returns 0, or TS_ECORRUPT with the reason in errmsg, or -errno.
 */
int wal_inspect(const char *dir, struct disk *disk, const struct ts_allocator *alloc,
                int (*fn)(void *arg, const struct wal_record_info *r),
                void (*report_cb)(void *arg, const char *line), void *arg, struct wal_stats *stats,
                char *errmsg, size_t errmsg_bytes);

/* The name of a record type ("ENTRY"...), or "?" */
const char *wal_record_type_name(uint8_t type);

/* Statistics, for benchmarks and tessera-admin. */
struct wal_stats {
    uint64_t batches_written;
    uint64_t bytes_written;
    uint64_t records_written;
    uint64_t segments_created;
    uint64_t segments_deleted;
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint32_t segments;
    uint32_t groups;
};
void wal_get_stats(const struct wal *w, struct wal_stats *out);

#endif
