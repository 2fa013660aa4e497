/*
 * storage/wal internals, shared by wal.c (staging, writing, groups, reads) and
 * wal_recover.c (opening and replaying the log). Not for use outside storage/wal.
 *
 * Invariants:
 *  - Batches are written strictly one after another: `writing` is the only request in
 *    flight, and the next batch goes only after its fdatasync completed. So only the
 *    last batch of the log can ever be torn.
 *  - The LSN space is contiguous: segment k+1's base_lsn is segment k's base_lsn plus
 *    the bytes used in k; the cache ring holds the byte stream exactly.
 *  - In-memory group state always equals the replay of every staged record (live calls
 *    and recovery both go through wal_apply()).
 */
#ifndef TS_STORAGE_WAL_WAL_INT_H
#define TS_STORAGE_WAL_WAL_INT_H

#include "core/util/map64.h"
#include "storage/wal/wal.h"

#define WAL_BATCH_RECORD_BYTES (WAL_RECORD_HEADER_BYTES + 16u)
#define WAL_GROUP_STATE_BYTES (WAL_RECORD_HEADER_BYTES + 56u)
/* A retained entry whose record lies in a deleted segment (recovery only). */
#define WAL_LSN_PHANTOM UINT64_MAX
#define WAL_ENTRY_HEADER_BYTES (WAL_RECORD_HEADER_BYTES + 16u)

/* One retained entry: where its record is and what term it has. */
struct wal_ent {
    uint64_t term;
    uint64_t lsn; /* of the record's first byte */
    uint32_t len; /* entry data bytes */
};

struct wal_group {
    uint64_t id;
    uint64_t snap_index;
    uint64_t snap_term;
    struct wal_ent *ents; /* entry snap_index + 1 + i is ents[start + i] */
    uint32_t start;
    uint32_t count;
    uint32_t cap;
    bool has_hs;
    bool staged; /* a record of it was staged: new segments carry its state */
    struct wal_hard_state hs;
};

struct wal_segment {
    uint64_t seq;
    uint64_t base_lsn;
    uint64_t state_end_lsn; /* end of the GROUP_STATE records that open the segment */
    uint64_t bytes;         /* the file's preallocated size */
    uint32_t reads;         /* disk reads in flight: the file stays open until they end */
    uint32_t file;
};

struct wal_batch {
    uint8_t *buf;
    uint32_t len;
    uint32_t cap;
    uint32_t records;
    uint64_t lsn;    /* LSN of buf[0] */
    uint64_t offset; /* file offset of buf[0] */
    uint32_t file;
    uint32_t batch_at; /* offset in buf of the BATCH record */
    struct wal_batch *next;
};

struct wal {
    struct wal_config cfg;
    char dir[256];
    struct disk *disk;
    const struct ts_allocator *alloc;
    struct ts_map64 groups;
    struct wal_segment *segs; /* oldest first */
    uint32_t nsegs;
    uint32_t segs_cap;
    uint64_t staged_lsn;
    uint64_t durable_lsn;
    uint64_t flush_lsn;      /* everything below was asked to become durable */
    uint64_t recovered_lsn;  /* the end of what recovery found durable */
    uint64_t shrink_lsn;     /* end of the last record that dropped entries */
    uint64_t cache_lo_lsn;   /* the cache holds nothing below this */
    bool gc_pending;         /* a segment may have become deletable */
    uint64_t inflight_bytes; /* staged, sealed and being written */
    struct wal_batch *acc;   /* accumulating; NULL when nothing is staged */
    struct wal_batch *ready; /* sealed, oldest first */
    struct wal_batch *ready_tail;
    struct wal_batch *writing;
    struct wal_batch *spare; /* recycled buffers */
    struct disk_req req;
    int err;
    uint8_t *cache; /* ring of the last cache_bytes of the log */
    struct wal_stats stats;
    /* wal_inspect: read only, and every replayed record goes to inspect_fn. */
    bool readonly;
    int (*inspect_fn)(void *arg, const struct wal_record_info *r);
    void *inspect_arg;
};

/* Applies one record to the in-memory state (live or replayed). The record has been
 * validated: returns TS_ECORRUPT only for what validation cannot see (recovery). */
int wal_apply(struct wal *w, uint8_t type, uint64_t group, const uint8_t *payload, uint32_t len,
              uint64_t lsn);

/* Computes a record's CRC (see wal.h). */
uint32_t wal_record_crc(uint64_t seq, const uint8_t *rec, uint32_t len);

/* Sets up w from cfg (defaults, the cache); wal_open and wal_inspect call it. */
int wal_init(struct wal *w, const struct wal_config *cfg, struct disk *disk,
             const struct ts_allocator *alloc);

/* Recovery: fills w from the files in w->dir; wal_open calls it. */
int wal_recover(struct wal *w, char *errmsg, size_t errmsg_bytes);

/* Creates segment seq at base_lsn and makes it the tail (metadata: open, allocate,
 * sync_dir). Returns 0, TS_ENOSPACE or -errno. */
int wal_segment_create(struct wal *w, uint64_t seq, uint64_t base_lsn);

/* Stages one GROUP_STATE record per live group (a new segment's opening batch). */
int wal_stage_group_states(struct wal *w);

/* Appends a segment to the list (oldest first). Returns 0 or TS_ENOMEM. */
int wal_segs_push(struct wal *w, struct wal_segment seg);

void wal_segment_path(const struct wal *w, uint64_t seq, char *path, size_t bytes);

struct wal_group *wal_group_get(struct wal *w, uint64_t id, bool create, int *rc);

static inline uint64_t wal_group_last(const struct wal_group *g)
{
    return g->snap_index + g->count;
}

static inline uint32_t wal_align8(uint32_t n)
{
    return (n + 7u) & ~7u;
}

#endif
