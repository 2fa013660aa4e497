/*
 * storage/btree/btree_check: the offline verifier of a B-tree file (tessera-admin btree
 * check|stat, and tests that want to prove a file sound).
 *
 * It reads the file read-only, exactly as btree_open would find it, and never writes:
 *   1. the page size: btp_meta_peek_page_bytes on page 0, else each power of two P in
 *      [TS_BTREE_PAGE_BYTES_MIN, TS_BTREE_PAGE_BYTES_MAX] whose page 1 names P;
 *   2. the checkpoint: btp_meta_choose over pages 0 and 1 (the newer valid meta);
 *   3. the tree, depth first from the root, proving for every page it reaches:
 *      - the page number is a tree page (>= 2) below the meta's page_count, and lies
 *        inside the file;
 *      - it is reached exactly once (no page under two parents, no cycle, no overflow
 *        page shared by two values or by a value and the tree);
 *      - btp_verify passes with the type its position demands: branch above height 1,
 *        leaf at height 1 (so the tree's height is the meta's), overflow in a chain;
 *      - it was written by a checkpoint no newer than the meta's (copy-on-write never
 *        points an old checkpoint at a page of a newer one);
 *      - its keys lie within the bounds its ancestors' separators give: at or above the
 *        lower bound, strictly below the upper (order inside a page is btp_verify's);
 *      - an overflow chain carries exactly the value_len of its leaf cell, every page
 *        full but the last;
 *      - subtree sizes (page.h, "sizes"): the size a branch's parent gives it (the meta's
 *        tree bytes for the root; for a leftmost child, its parent's size less the sizes
 *        its parent's cells record) is at least the sum its own cells record, and each
 *        child's logical size, computed from the leaves up, is what its cell records.
 *        The tree's total must be the meta's tree bytes (0 for an empty tree). Together
 *        these make every leftmost child's derived size right too, so a wrong figure is
 *        reported where it is stored: at the branch whose cell disagrees, naming the
 *        child and both figures, or at the meta page;
 *   4. the free list: the chain of freelist pages from the meta's freelist head, each a
 *      page btp_verify passes as BTP_TYPE_FREELIST, inside [2, page_count) and the file,
 *      written by a checkpoint no newer than the meta's, and reached once (a chain that
 *      loops is corrupt); each entry inside [2, page_count) (a free page need not lie
 *      inside the file: one freed before it was ever written) and listed once; no page
 *      both reachable from the tree and a page of the chain or listed;
 *   5. the accounting: every page of [2, page_count) is exactly one of reachable, a page
 *      of the chain, or listed. A page that is none of them is leaked (the report names
 *      the first and how many).
 *
 * A file that never completed a checkpoint (empty, or no valid meta page and page 0
 * all zero: btree_open opens it as an empty tree) is not corrupt: the report says
 * never_checkpointed and the call returns 0. When no page size can be found at all,
 * "page 0" is taken as the first TS_BTREE_PAGE_BYTES_MIN bytes.
 *
 * Errors: TS_ECORRUPT on the first problem, with errmsg naming the file, the page and
 * the reason ("btree check: FILE: page N: ..."); TS_ENOMEM; -errno from the disk (the
 * file cannot be opened or read). The walk allocates two bits per page below the page
 * count (which tree, chain or list accounts for it; a page count past the end of the file
 * by more than the file's freelist pages could list is refused first) and height + 1 page
 * buffers; its recursion is bounded by the meta's height (at most 64, which page.c
 * enforces on decode).
 *
 * Ownership: borrows path, disk, alloc and the output buffers. Threading: the disk's
 * shard (it drives the disk's synchronous pread only).
 */
#ifndef TS_STORAGE_BTREE_BTREE_CHECK_H
#define TS_STORAGE_BTREE_BTREE_CHECK_H

#include "core/util/mem.h"
#include "storage/disk/disk.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct btree_check_report {
    bool never_checkpointed; /* the rest is zero but file_bytes (and page_bytes if found) */
    uint32_t page_bytes;
    uint64_t file_bytes;
    uint64_t meta_page; /* 0 or 1: the meta chosen */
    uint64_t checkpoint_id;
    uint64_t root_page; /* 0: empty tree */
    uint32_t height;
    uint64_t page_count; /* the meta's, meta pages included */
    uint64_t meta_pages; /* always 2 once checkpointed */
    uint64_t branch_pages;
    uint64_t leaf_pages;
    uint64_t overflow_pages;
    uint64_t freelist_pages; /* the freelist chain's own pages */
    uint64_t free_pages;     /* the page numbers the chain lists (reusable once opened) */
    /* Once checked: meta + branch + leaf + overflow + freelist + free = page_count. */
    uint64_t keys;
    uint64_t key_bytes;
    uint64_t value_bytes;       /* value_len summed, inline and overflow */
    uint64_t branch_used_bytes; /* slots and cells (btp_used_bytes) */
    uint64_t leaf_used_bytes;
    uint64_t tree_bytes; /* the meta's; once checked, key_bytes + value_bytes */
    uint32_t user_len;   /* the checkpoint's user blob */
};

/* Checks the B-tree file at path (see above). Fills *out (also on error, as far as the
 * walk got). Returns 0, TS_ECORRUPT, TS_ENOMEM or -errno; errmsg (NULL allowed) gets
 * the reason of any error. */
int btree_check(const char *path, struct disk *disk, const struct ts_allocator *alloc,
                struct btree_check_report *out, char *errmsg, size_t errmsg_bytes);

/* Used bytes over page bytes of the leaves and branches, in [0, 1]; 0 for no pages. */
double btree_check_fill(const struct btree_check_report *r);

#endif
