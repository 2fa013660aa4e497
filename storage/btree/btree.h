/*
 * storage/btree: the shard's copy-on-write B+tree file.
 *
 * The tree stands on storage/btree/page.h (the page format) and storage/disk (the I/O
 * interface, so the same code runs on io_uring and on the simulated disk).
 *
 * Copy-on-write and checkpoints. A page written by the last checkpoint is never changed
 * in place: the first change after a checkpoint copies it to a free page number, and
 * its parent (copied first, on the way down) is pointed at the copy. Pages born since
 * the checkpoint ("fresh") are changed in place. btree_checkpoint(user) writes every
 * dirty page and a new free-list chain, fdatasyncs, then writes meta page id % 2 (root,
 * height, page count, free-list head, tree size, the caller's blob: the shard keeps each
 * range's applied index there) and fdatasyncs again. A crash at any point reopens
 * exactly the previous or the new checkpoint: no page the previous checkpoint can reach
 * (its tree and its free-list chain) is written before the new meta page is durable,
 * because a page freed since a checkpoint is reused only after the next one.
 *
 * Free pages. Every checkpoint lists the pages its tree does not use in a chain of
 * freelist pages (page.h), so opening a file reads the two meta pages and the chain,
 * never the tree. Freed pages are reused lowest-cost first (a LIFO stack).
 *
 * The page cache. Pages live in frames, at most cache_bytes of them between calls (an
 * operation may go over while it runs: a put with a 1 MiB value needs its 257 pages at
 * once; and btree_cursor_key may read its leaf back, one page over, until the next
 * call). Frames are recycled by CLOCK at the end (and start) of each call. A dirty page (fresh,
 * changed since it was last written) chosen for eviction is first written to its own
 * page number, which no checkpoint references yet, so eviction needs no fsync and a
 * tree larger than memory works with any budget; the next checkpoint's fdatasync covers
 * those writes. A miss reads the page through the disk interface (io_uring in
 * production) and verifies it (CRC, page number, structure) before use. The shard
 * waits for a miss: size the budget to hold the working set (metadata is small; the
 * default holds 64 MiB).
 *
 * Sizes. Branch cells record the logical size (key + value bytes) of their subtrees
 * (page.h, "sizes"), so btree_range_bytes and btree_middle_key cost one descent, for
 * split decisions.
 *
 * Deletes rebalance: a page under a quarter full merges with a sibling when both fit in
 * one page, an empty root branch collapses. btree_delete_range drops every subtree that
 * lies inside the range whole (its pages freed without copying, leaves read only to find
 * overflow chains and count keys) and edits only the two edges.
 *
 * Snapshots share the cache: a page a pinned checkpoint can reach is never rewritten
 * while the pin lasts, so its cached copy (if any) is the checkpoint's.
 *
 * Errors: TS_ETOOBIG (key over btp_key_bytes_max, value over TS_VALUE_BYTES_MAX),
 * TS_ENOTFOUND, TS_ECORRUPT with the page and the reason (in the open errmsg, and for
 * later reads in btree_last_error), -errno from the disk. A failed write (checkpoint or
 * eviction) is sticky: every later call returns it; reopen from the last checkpoint.
 *
 * Not done (see issue 4's notes): checkpoints and misses are synchronous (the calling
 * shard waits for the disk); the free-list chain is rewritten whole at each checkpoint
 * (cost in proportion to the free pages); underfull pages merge but never borrow from a
 * sibling.
 *
 * Threading: one shard.
 */
#ifndef TS_STORAGE_BTREE_BTREE_H
#define TS_STORAGE_BTREE_BTREE_H

#include "core/util/mem.h"
#include "storage/disk/disk.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct btree;

struct btree_config {
    const char *path;     /* the file; created when missing */
    uint32_t page_bytes;  /* for a new file; 0: TS_BTREE_PAGE_BYTES_DEFAULT */
    uint64_t cache_bytes; /* page cache budget between calls; 0: TS_BTREE_CACHE_BYTES_DEFAULT */
    /* Checkpoints write without fdatasync: for benchmarks that compare with LMDB's
     * MDB_NOSYNC only. A crash may then lose or corrupt the file. */
    bool no_sync;
    /* Recovery's report lines (a file that never completed a checkpoint...). */
    void (*report_cb)(void *data, const char *line);
    void *data;
};

struct btree_stats {
    uint64_t checkpoint_id;
    uint64_t page_count;     /* the file's size in pages */
    uint64_t free_pages;     /* reusable now */
    uint64_t pending_pages;  /* freed since the last checkpoint, reusable after the next */
    uint64_t dirty_pages;    /* in the cache, changed since last written */
    uint64_t fresh_pages;    /* born since the last checkpoint */
    uint64_t freelist_pages; /* the last checkpoint's free-list chain */
    uint64_t tree_bytes;     /* logical size: key + value bytes of every key */
    uint64_t cached_pages;
    uint64_t cache_budget_pages;
    uint64_t cache_hits;
    uint64_t cache_misses; /* pages read from the file */
    uint64_t evictions;
    uint64_t evicted_dirty; /* evictions that wrote the page first */
    uint32_t height;
};

/* Opens or creates the tree. Borrows disk and alloc; copies cfg and its path (at most 511
 * bytes, else TS_EINVAL). Returns 0, TS_ECORRUPT (errmsg names the page and the reason),
 * or -errno. */
int btree_open(const struct btree_config *cfg, struct disk *disk, const struct ts_allocator *alloc,
               struct btree **out, char *errmsg, size_t errmsg_bytes);
void btree_close(struct btree *t);

/* Copies the value into buf (up to buf_bytes) and sets *value_len to its full length;
 * TS_ETOOBIG when it does not fit (nothing copied), TS_ENOTFOUND when absent. */
int btree_get(struct btree *t, const void *key, uint32_t key_len, void *buf, uint32_t buf_bytes,
              uint32_t *value_len);
int btree_put(struct btree *t, const void *key, uint32_t key_len, const void *value,
              uint32_t value_len);
/* TS_ENOTFOUND when absent. */
int btree_delete(struct btree *t, const void *key, uint32_t key_len);

/*
 * Cursors over the current tree, in key order (memcmp; a shorter key first). A cursor
 * is valid until the tree is next changed. A key view (btree_cursor_key) is valid until
 * the next call on the tree.
 */
struct btree_snapshot;

struct btree_cursor {
    struct btree *tree;
    struct btree_snapshot *snap; /* NULL: the live tree */
    uint64_t branch[32];         /* the branches above the leaf, root first */
    uint32_t child[32];          /* the child index taken in each */
    uint32_t depth;
    uint64_t leaf;
    const uint8_t *leaf_buf; /* the leaf's buffer while gen matches the tree's */
    uint64_t gen;
    uint32_t pos;
    bool valid;
};

/* Positions at the first key >= key (key_len 0: the first key). TS_ENOTFOUND when there
 * is none (the cursor is then not valid). */
int btree_cursor_seek(struct btree_cursor *c, struct btree *t, const void *key, uint32_t key_len);
/* Positions at the last key. TS_ENOTFOUND for an empty tree. */
int btree_cursor_last(struct btree_cursor *c, struct btree *t);
/* Moves to the next (previous) key; TS_ENOTFOUND past the end (start). */
int btree_cursor_next(struct btree_cursor *c);
int btree_cursor_prev(struct btree_cursor *c);
/* The current key, as a view valid until the tree changes. */
void btree_cursor_key(const struct btree_cursor *c, const uint8_t **key, uint32_t *key_len);
/* Copies the current value like btree_get. */
int btree_cursor_value(const struct btree_cursor *c, void *buf, uint32_t buf_bytes,
                       uint32_t *value_len);

/*
 * Snapshots. btree_snapshot_open pins the last checkpoint: reads through it see that
 * checkpoint while writes and new checkpoints go on (this is what Raft snapshots stream
 * from). Pages freed by copy-on-write are reused only once no open snapshot pins a
 * checkpoint that can reach them. Snapshot reads go through the tree's page cache.
 * Close every snapshot before btree_close.
 */
int btree_snapshot_open(struct btree *t, struct btree_snapshot **out);
void btree_snapshot_close(struct btree_snapshot *s);
uint64_t btree_snapshot_checkpoint(const struct btree_snapshot *s);
/* A cursor over the snapshot, at the first key >= key; then btree_cursor_next/key/value
 * as for the live tree (btree_cursor_prev too). Valid until the snapshot closes. */
int btree_snapshot_seek(struct btree_cursor *c, struct btree_snapshot *s, const void *key,
                        uint32_t key_len);

/* Keys in [lo, hi); hi_len 0: to the end. */
int btree_count(struct btree *t, const void *lo, uint32_t lo_len, const void *hi, uint32_t hi_len,
                uint64_t *count);
/* Deletes every key in [lo, hi) (lo_len 0: from the start; hi_len 0: to the end);
 * *deleted receives how many. Whole subtrees inside the range are dropped. */
int btree_delete_range(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                       uint32_t hi_len, uint64_t *deleted);

/* The logical size (key + value bytes) of the keys in [lo, hi), exactly, in one
 * descent per bound. */
int btree_range_bytes(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                      uint32_t hi_len, uint64_t *bytes);

/* The key that splits [lo, hi) by size: the first key k in the range such that the keys
 * in [lo, k) hold at least half of the range's bytes, but never the range's first key
 * (so both halves are non-empty). Copied into key (room for TS_KEY_BYTES_MAX).
 * TS_ENOTFOUND when the range holds fewer than two keys. */
int btree_middle_key(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                     uint32_t hi_len, uint8_t *key, uint32_t *key_len);

/* Makes every change so far durable with user (at most page size - 96 bytes) as the
 * checkpoint's blob. Drives the disk until done. */
int btree_checkpoint(struct btree *t, const void *user, uint32_t user_len);
/* The last checkpoint's blob (a view valid until the next checkpoint). */
void btree_user(const struct btree *t, const uint8_t **user, uint32_t *user_len);
void btree_get_stats(const struct btree *t, struct btree_stats *out);
/* The reason of the last TS_ECORRUPT returned by a read ("" when none). */
const char *btree_last_error(const struct btree *t);

#endif
