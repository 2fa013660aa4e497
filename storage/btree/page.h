/*
 * storage/btree/page: the page format of the shard's copy-on-write B+tree.
 *
 * This module owns the bytes of one page and nothing else: it is pure (no I/O, no
 * allocation, no state), works on a caller-owned uint8_t page[P], and may be called
 * from any shard. The tree (storage/btree/btree.c, later) decides which pages to read,
 * copy, split and write; this module makes each page well-formed and proves, on every
 * read, that a page is still well-formed (btp_verify), so the tree never walks a
 * pointer it did not check.
 *
 * One file per shard. Its page size P is fixed when the file is created: a power of two
 * in [TS_BTREE_PAGE_BYTES_MIN, TS_BTREE_PAGE_BYTES_MAX] (512..65536, 4096 by default).
 * Pages 0 and 1 are the two meta pages; every other page number refers to a page of
 * the tree, so 0 and 1 double as "none" in page pointers where a real page is needed.
 * All integers are little-endian.
 *
 *   common header (40 bytes, every page)
 *     0   4  crc32c of the whole page with this field taken as zero
 *     4   1  type: 1 meta, 2 branch, 3 leaf, 4 overflow, 5 freelist
 *     5   1  flags: reserved, zero
 *     6   2  count: cells (branch, leaf), data bytes (overflow), page numbers (freelist)
 *     8   8  page number of this page (catches misdirected reads and writes)
 *     16  8  checkpoint id that wrote this page
 *     24  2  slots_end: end of the slot array (branch, leaf: 40 + 2 * count; else 0)
 *     26  2  cells_start: start of the cell area (branch, leaf; 0 encodes 65536; else 0)
 *     28  4  garbage: bytes in [cells_start, P) that belong to no cell (branch, leaf)
 *     32  8  link: branch: leftmost child; overflow: next overflow page (0 = last);
 *              freelist: next freelist page (0 = last); leaf, meta: 0
 *
 *   slotted pages (branch, leaf)
 *     40          2*count  slot array: u16 offsets of the cells, in key order
 *     slots_end   ...      free space
 *     cells_start ...      cells, growing down from P, with holes counted in garbage
 *   Keys are compared with memcmp over the shorter length, the shorter key first when
 *   one is a prefix of the other, and are strictly increasing along the slot array.
 *
 *   leaf cell (8-byte header)
 *     0   2  key_len
 *     2   1  flags: bit 0 = the value lives in overflow pages; other bits zero
 *     3   1  zero
 *     4   4  value_len: total value bytes (<= TS_VALUE_BYTES_MAX)
 *     8   key_len   key
 *     8+key_len     value (value_len bytes), or u64 first overflow page if bit 0
 *
 *   branch cell (16-byte header)
 *     0   2  key_len
 *     2   6  bytes: the logical size of the child's subtree (u48; see "sizes" below)
 *     8   8  child: the subtree holding keys >= this key and < the next key
 *     16  key_len   key
 *   The header's link is the leftmost child (keys below the first key). A branch with
 *   count keys has count + 1 children, addressed by child index 0 (the link) to count
 *   (the child of key count - 1).
 *
 *   sizes. The logical size of a subtree is the sum of key_len + value_len over its
 *   keys (overflow values at their full length). Each branch cell records its child's;
 *   the leftmost child's is not stored: it is the branch's own size (recorded by its
 *   parent, or the meta page's tree bytes for the root) minus the sum of the cells'.
 *   This is what makes the size of a key range and the middle key by size cost one
 *   descent (split decisions), at the price of rewriting the path's cells on every
 *   write, which copy-on-write dirties anyway.
 *
 *   overflow page
 *     40  count  value bytes; the rest of the page is zero
 *   A value of value_len bytes fills a chain of ceil(value_len / (P - 40)) pages, each
 *   full but the last, linked through the header.
 *
 *   freelist page
 *     40  8*count  u64 page numbers free as of this page's checkpoint; the rest zero
 *   The meta page's freelist head starts a chain of these pages. Together they list
 *   every page of [2, page count) that is neither reachable from the root nor a page of
 *   the chain itself, so opening a file does not walk the tree.
 *
 *   meta page (pages 0 and 1; the checkpoint id is the header's, at offset 16)
 *     40  8  magic "TSBTREE1"
 *     48  4  format version (1)
 *     52  4  page size P
 *     56  8  root page (0 = empty tree)
 *     64  8  page count: the file's size in pages, meta pages included
 *     72  8  freelist head page (0 = none)
 *     80  4  tree height (0 = empty tree, 1 = the root is a leaf)
 *     84  4  user_len: bytes of user metadata (<= P - 96)
 *     88  8  tree bytes: the logical size of the whole tree (see "sizes")
 *     96  user_len  user metadata (the shard keeps each range's applied index there)
 *     ...        zero to the end of the page
 *
 * Choices made here (the issue left them open).
 *  - A cell, its slot included, takes at most (P - 40) / 3 bytes (btp_cell_bytes_max),
 *    so a page always holds three cells. Not four: with P = 4096 a leaf cell with a
 *    1024-byte key and an overflow pointer takes 1042 bytes with its slot, and four of
 *    those need 4168 > 4056. Three is also the bound that makes splits work: splitting
 *    a page balanced by bytes leaves each half at most half the page plus half a cell,
 *    so the cell that did not fit always fits in the half it belongs to. A value goes
 *    to overflow pages exactly when its inline cell would exceed that bound
 *    (btp_leaf_value_inline), and verify checks that rule, so a value's placement is a
 *    function of (P, key_len, value_len) alone.
 *  - Keys are limited per page size (btp_key_bytes_max): a key's overflow cell must
 *    obey the bound. That is TS_KEY_BYTES_MAX from 4096 up and less below.
 *  - cells_start is 16-bit, and an empty 64 KiB page has cells_start = 65536, so the
 *    value 0 encodes 65536 (a real cell area never starts at 0).
 *  - The meta page keeps its checkpoint id in the header, and checkpoint n is always
 *    written to meta page n % 2; a meta page whose id has the wrong parity is corrupt.
 *    So the two valid metas never share an id, and the newer one is unambiguous.
 *  - btp_split copies the separator into a caller buffer instead of returning a view:
 *    a branch's middle key leaves both pages, so a view would borrow freed space.
 *  - Free space in a slotted page is the gap between slots_end and cells_start plus the
 *    garbage. An insert that fits only with the garbage compacts the page in place
 *    (heapsort of the slot array by offset, slide, heapsort back by key) without any
 *    scratch page.
 *
 * Errors. Bad page contents return TS_ECORRUPT and write a reason naming the byte
 * offset into errmsg (which may be NULL). An insert that does not fit returns TS_EFULL
 * with the page unchanged; a key or value over its limit returns TS_ETOOBIG. Passing an
 * invalid P, a wrong page type or an index out of range is a programmer error and
 * asserts. Mutating functions leave the CRC stale: call btp_seal before writing a page.
 *
 * Ownership. Every function borrows its page and buffers; a key or value passed in must
 * not point into the page being changed (compaction may move it). A struct btp_cell returned by
 * a getter is a view valid until the page is next modified.
 */
#ifndef TS_STORAGE_BTREE_PAGE_H
#define TS_STORAGE_BTREE_PAGE_H

#include "core/util/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BTP_HDR_BYTES 40u
#define BTP_SLOT_BYTES 2u
#define BTP_LEAF_CELL_HDR_BYTES 8u
#define BTP_BRANCH_CELL_HDR_BYTES 16u
#define BTP_OVF_PTR_BYTES 8u
#define BTP_META_USER_OFFSET 96u
#define BTP_META_VERSION 2u
/* The largest subtree size a branch cell records (48 bits). */
#define BTP_SUBTREE_BYTES_MAX ((UINT64_C(1) << 48) - 1u)
#define BTP_LEAF_FLAG_OVERFLOW 0x01u
/* Pages 0 and 1 are metas; the first page of the tree proper. */
#define BTP_FIRST_TREE_PAGE 2u

enum btp_type {
    BTP_TYPE_ANY = 0, /* btp_verify: accept any type */
    BTP_TYPE_META = 1,
    BTP_TYPE_BRANCH = 2,
    BTP_TYPE_LEAF = 3,
    BTP_TYPE_OVERFLOW = 4,
    BTP_TYPE_FREELIST = 5,
};

_Static_assert(BTP_HDR_BYTES +
                       3u * (BTP_SLOT_BYTES + BTP_BRANCH_CELL_HDR_BYTES + TS_KEY_BYTES_MAX) <=
                   TS_BTREE_PAGE_BYTES_DEFAULT,
               "a default branch page holds three keys of TS_KEY_BYTES_MAX");
_Static_assert(BTP_LEAF_CELL_HDR_BYTES + BTP_OVF_PTR_BYTES == BTP_BRANCH_CELL_HDR_BYTES,
               "leaf overflow cells and branch cells cost the same per key");
_Static_assert(BTP_META_USER_OFFSET + 64u <= TS_BTREE_PAGE_BYTES_MIN,
               "the smallest meta page still has room for some user metadata");

/* One cell, as a view into its page. Leaf: value is the inline value, or NULL with
 * overflow_page set when the value lives in overflow pages. Branch: child is set and
 * value is NULL. */
struct btp_cell {
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
    uint64_t overflow_page;
    uint64_t child;
    uint64_t bytes; /* branch: the child's subtree size */
};

/* The decoded meta page. On decode, user is a view into the page; on encode, borrowed. */
struct btp_meta {
    uint64_t checkpoint_id;
    uint64_t root_page;
    uint64_t page_count;
    uint64_t freelist_head;
    uint64_t tree_bytes;
    uint32_t page_bytes;
    uint32_t height;
    uint32_t user_len;
    const uint8_t *user;
};

/* --- sizes and limits (pure arithmetic on P) --- */

/* True for a power of two in [TS_BTREE_PAGE_BYTES_MIN, TS_BTREE_PAGE_BYTES_MAX]. */
bool btp_page_bytes_valid(uint32_t page_bytes);

/* The most bytes one cell may take, not counting its slot: (P - 40) / 3 - 2. */
uint32_t btp_cell_bytes_max(uint32_t page_bytes);

/* The longest key for this page size: min(TS_KEY_BYTES_MAX, cell max - 16). */
uint32_t btp_key_bytes_max(uint32_t page_bytes);

/* True when a leaf stores a value of value_len inline next to a key of key_len. */
bool btp_leaf_value_inline(uint32_t page_bytes, uint32_t key_len, uint32_t value_len);

/* The longest value stored inline next to a key of key_len (key_len within limits). */
uint32_t btp_leaf_inline_value_bytes_max(uint32_t page_bytes, uint32_t key_len);

/* The bytes a leaf cell takes (slot excluded), inline or overflow by the rule above. */
uint32_t btp_leaf_cell_bytes(uint32_t page_bytes, uint32_t key_len, uint32_t value_len);

/* Value bytes one overflow page carries: P - 40. */
uint32_t btp_overflow_capacity(uint32_t page_bytes);

/* Page numbers one freelist page carries: (P - 40) / 8. */
uint32_t btp_freelist_capacity(uint32_t page_bytes);

/* --- every page --- */

/* Zeroes page[0, P) and writes an empty page of the type (not BTP_TYPE_ANY). */
void btp_init(uint8_t *page, uint32_t page_bytes, enum btp_type type, uint64_t page_no,
              uint64_t checkpoint_id);

/* Computes and stores the CRC. Call after the last change, before the page is written. */
void btp_seal(uint8_t *page, uint32_t page_bytes);

/* The full check of a page just read: CRC, type (unless BTP_TYPE_ANY), page number,
 * header fields, and the type's structure (slots and cells within bounds, no overlap,
 * exact garbage accounting, keys strictly increasing, canonical value placement, page
 * pointers not 0 or 1, zero padding). Returns 0 or TS_ECORRUPT with a reason naming the
 * byte offset in errmsg (NULL allowed). Structure only, without the CRC: see
 * btp_check_structure. */
int btp_verify(const uint8_t *page, uint32_t page_bytes, enum btp_type type, uint64_t page_no,
               char *errmsg, size_t errmsg_bytes);

/* btp_verify without the CRC check (for pages built in memory). */
int btp_check_structure(const uint8_t *page, uint32_t page_bytes, enum btp_type type,
                        uint64_t page_no, char *errmsg, size_t errmsg_bytes);

enum btp_type btp_type(const uint8_t *page);
uint32_t btp_count(const uint8_t *page);
uint64_t btp_page_no(const uint8_t *page);
uint64_t btp_checkpoint_id(const uint8_t *page);
uint64_t btp_link(const uint8_t *page);
void btp_set_link(uint8_t *page, uint64_t link);

/* Re-labels a copied page for copy-on-write: its new page number and checkpoint. */
void btp_relabel(uint8_t *page, uint64_t page_no, uint64_t checkpoint_id);

/* --- slotted pages (branch, leaf) --- */

/* Bytes an insert can use: the gap between slots and cells plus the garbage. An insert
 * needs its cell bytes plus BTP_SLOT_BYTES. */
uint32_t btp_free_bytes(const uint8_t *page, uint32_t page_bytes);

/* Bytes used by slots and cells: P - 40 - btp_free_bytes. */
uint32_t btp_used_bytes(const uint8_t *page, uint32_t page_bytes);

/* Rewrites the cells contiguously at the end of the page; garbage becomes 0. Keys,
 * values and the slot order are unchanged. */
void btp_compact(uint8_t *page, uint32_t page_bytes);

/* Moves the upper part of left (by bytes: the split that best balances the two pages)
 * into right, which must be an empty page of the same type, and copies the separator
 * into sep (room for TS_KEY_BYTES_MAX bytes), setting *sep_len. Leaf: the separator is
 * right's first key, which stays in right. Branch: the middle key moves up and leaves
 * both pages; its child becomes right's link and *sep_bytes receives that child's size
 * (0 for a leaf). left must hold at least 3 cells (2 for a
 * leaf). Afterwards left is compacted. Neither page is sealed. */
void btp_split(uint8_t *left, uint8_t *right, uint32_t page_bytes, uint8_t *sep, uint32_t *sep_len,
               uint64_t *sep_bytes);

/* --- leaf --- */

/* Binary search: *index is the first key >= key (count when none), *found whether it is
 * equal. */
void btp_leaf_search(const uint8_t *page, uint32_t page_bytes, const void *key, uint32_t key_len,
                     uint32_t *index, bool *found);

/* The cell at index < count, as a view valid until the page is next modified. */
struct btp_cell btp_leaf_get(const uint8_t *page, uint32_t page_bytes, uint32_t index);

/* Inserts key with a value of value_len at index (the position btp_leaf_search gave; the
 * key must not be present). When btp_leaf_value_inline, value (value_len bytes) is
 * stored and overflow_page must be 0; otherwise value is ignored and overflow_page
 * (>= 2, the first page of a chain the caller wrote) is stored. Compacts when the free
 * bytes fit the cell only with the garbage. TS_ETOOBIG: key or value over its limit;
 * TS_EFULL: does not fit even after compaction; on error the page is unchanged. */
int btp_leaf_insert(uint8_t *page, uint32_t page_bytes, uint32_t index, const void *key,
                    uint32_t key_len, const void *value, uint32_t value_len,
                    uint64_t overflow_page);

/* Replaces the value of the cell at index, with the same conventions and errors as
 * btp_leaf_insert. In place when the new cell is no larger. */
int btp_leaf_set_value(uint8_t *page, uint32_t page_bytes, uint32_t index, const void *value,
                       uint32_t value_len, uint64_t overflow_page);

/* The logical size of the leaf: sum of key_len + value_len over its cells. */
uint64_t btp_leaf_bytes(const uint8_t *page, uint32_t page_bytes);

/* Removes the cell at index; its bytes become garbage (or free space at the edge). */
void btp_leaf_delete(uint8_t *page, uint32_t page_bytes, uint32_t index);

/* --- branch --- */

/* The child index (0..count) of the subtree covering key: the number of keys <= key. */
uint32_t btp_branch_search(const uint8_t *page, uint32_t page_bytes, const void *key,
                           uint32_t key_len);

/* The key cell at index < count (key and child), as a view. */
struct btp_cell btp_branch_get(const uint8_t *page, uint32_t page_bytes, uint32_t index);

/* The child at child index 0..count (0 is the link). */
uint64_t btp_branch_child(const uint8_t *page, uint32_t page_bytes, uint32_t child_index);

/* Points child index 0..count at child (copy-on-write rewrites these constantly). */
void btp_branch_set_child(uint8_t *page, uint32_t page_bytes, uint32_t child_index, uint64_t child);

/* Inserts key with the child holding keys >= key, whose subtree size is bytes
 * (<= BTP_SUBTREE_BYTES_MAX), at key index (so the new child is child index index + 1).
 * Errors as btp_leaf_insert. */
int btp_branch_insert(uint8_t *page, uint32_t page_bytes, uint32_t index, const void *key,
                      uint32_t key_len, uint64_t child, uint64_t bytes);

/* Sets the subtree size recorded in key cell index. */
void btp_branch_set_bytes(uint8_t *page, uint32_t page_bytes, uint32_t index, uint64_t bytes);

/* The sum of the sizes recorded in the key cells (every child but the leftmost). */
uint64_t btp_branch_cells_bytes(const uint8_t *page, uint32_t page_bytes);

/* Removes key index and its right child (child index index + 1). */
void btp_branch_delete(uint8_t *page, uint32_t page_bytes, uint32_t index);

/* Moves every cell of right to the end of left (right's keys must all be above left's).
 * Branch: first appends sep with right's link as its child and sep_bytes as its size
 * (leaf: sep is ignored). TS_EFULL, with both pages unchanged, when they do not fit in
 * one page; otherwise right is left empty. Neither page is sealed. */
int btp_merge(uint8_t *left, uint8_t *right, uint32_t page_bytes, const uint8_t *sep,
              uint32_t sep_len, uint64_t sep_bytes);

/* --- overflow --- */

/* Stores 1 <= len <= btp_overflow_capacity bytes of a value and the next page (0 = last).
 * An overflow page is well-formed (sealable) only once it holds data. */
void btp_overflow_put(uint8_t *page, uint32_t page_bytes, const void *data, uint32_t len,
                      uint64_t next_page);

/* The value bytes of an overflow page, as a view; *len is set. */
const uint8_t *btp_overflow_get(const uint8_t *page, uint32_t page_bytes, uint32_t *len);

/* --- freelist --- */

/* Appends a free page number (>= 2). TS_EFULL when the page is full. */
int btp_freelist_push(uint8_t *page, uint32_t page_bytes, uint64_t free_page);

/* The free page number at index < count. */
uint64_t btp_freelist_get(const uint8_t *page, uint32_t page_bytes, uint32_t index);

/* --- meta --- */

/* Writes and seals meta page checkpoint_id % 2 from meta (page_bytes must equal P).
 * TS_ETOOBIG when user_len > P - 88. */
int btp_meta_encode(uint8_t *page, uint32_t page_bytes, const struct btp_meta *meta);

/* Verifies meta page page_no (0 or 1) and decodes it; meta->user is a view into page.
 * TS_ECORRUPT with a reason for a torn or inconsistent page. */
int btp_meta_decode(const uint8_t *page, uint32_t page_bytes, uint64_t page_no,
                    struct btp_meta *meta, char *errmsg, size_t errmsg_bytes);

/* Decodes both meta pages and returns the newer valid one in *meta and its page number
 * in *which. A torn or corrupt meta falls back to the other; both bad is TS_ECORRUPT
 * with both reasons in errmsg. */
int btp_meta_choose(const uint8_t *meta0, const uint8_t *meta1, uint32_t page_bytes,
                    struct btp_meta *meta, uint64_t *which, char *errmsg, size_t errmsg_bytes);

/* Reads the page size from the first len bytes of a meta page (before P is known), if
 * the magic matches and the size is valid; TS_ECORRUPT otherwise. Not a verification:
 * decode the page of that size afterwards. */
int btp_meta_peek_page_bytes(const uint8_t *buf, size_t len, uint32_t *page_bytes);

#endif
