/*
 * storage/btree: the shard's copy-on-write B+tree file (first version).
 *
 * The tree stands on storage/btree/page.h (the page format) and storage/disk (the I/O
 * interface, so the same code runs on io_uring and on the simulated disk).
 *
 * Copy-on-write and checkpoints. A page written by the last checkpoint is never changed
 * in place: the first change after a checkpoint copies it to a free page number, and
 * its parent (copied first, on the way down) is pointed at the copy. Pages born since
 * the checkpoint are changed in place. btree_checkpoint(user) writes every dirty page,
 * fdatasyncs, then writes meta page id % 2 (root, height, page count, the caller's
 * blob: the shard keeps each range's applied index there) and fdatasyncs again. A crash
 * at any point reopens exactly the previous or the new checkpoint: the old tree's
 * pages are never overwritten before the new meta page is durable, because a page
 * freed by copy-on-write is reused only after that.
 *
 * What this first version leaves for later (issue 4 stays open): delete-range by whole
 * subtrees, merging underfull pages
 * (deleted keys leave pages partly empty; an empty leaf stays in the tree), a page cache
 * with a memory budget (every page read stays in memory), asynchronous reads and
 * checkpoints (btree_checkpoint drives the disk until it is done), and a persisted free
 * list: free pages are found at open by walking the tree from the root, which costs in
 * proportion to the file.
 *
 * Errors: TS_ETOOBIG (key over btp_key_bytes_max, value over TS_VALUE_BYTES_MAX),
 * TS_ENOTFOUND, TS_ECORRUPT with the page and the reason in the open errmsg or on
 * read, -errno from the disk. A failed checkpoint write is sticky (the tree must be
 * reopened from its last checkpoint).
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
    const char *path;    /* the file; created when missing */
    uint32_t page_bytes; /* for a new file; 0: TS_BTREE_PAGE_BYTES_DEFAULT */
    /* Recovery's report lines (a file that never completed a checkpoint...). */
    void (*report_cb)(void *data, const char *line);
    void *data;
};

struct btree_stats {
    uint64_t checkpoint_id;
    uint64_t page_count;    /* the file's size in pages */
    uint64_t free_pages;    /* reusable now */
    uint64_t pending_pages; /* freed since the last checkpoint, reusable after the next */
    uint64_t dirty_pages;
    uint32_t height;
};

/* Opens or creates the tree. Borrows disk and alloc. Returns 0, TS_ECORRUPT (errmsg
 * names the page and the reason), or -errno. */
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
 * is valid until the tree is next changed (snapshot cursors come later). Empty leaves
 * left by deletes are skipped.
 */
struct btree_snapshot;

struct btree_cursor {
    struct btree *tree;
    struct btree_snapshot *snap; /* NULL: the live tree */
    uint64_t branch[32];         /* the branches above the leaf, root first */
    uint32_t child[32];          /* the child index taken in each */
    uint32_t depth;
    uint64_t leaf;
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
 * checkpoint that can reach them. A snapshot keeps a copy of each page it reads; close
 * every snapshot before btree_close.
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
/* Deletes every key in [lo, hi) (hi_len 0: to the end); *deleted receives how many.
 * This version deletes key by key. */
int btree_delete_range(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                       uint32_t hi_len, uint64_t *deleted);

/* Makes every change so far durable with user (at most page size - 88 bytes) as the
 * checkpoint's blob. Drives the disk until done. */
int btree_checkpoint(struct btree *t, const void *user, uint32_t user_len);
/* The last checkpoint's blob (a view valid until the next checkpoint). */
void btree_user(const struct btree *t, const uint8_t **user, uint32_t *user_len);
void btree_get_stats(const struct btree *t, struct btree_stats *out);

#endif
