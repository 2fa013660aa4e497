/*
 * storage/btree/page: building, editing and verifying pages. See page.h for the format.
 *
 * Every mutation keeps the slotted-page invariants that btp_check_structure checks:
 * slots_end = 40 + 2 * count, every cell inside [cells_start, P), no two cells overlap,
 * the cell bytes plus garbage equal P - cells_start, and keys strictly increase. Freed
 * bytes are zeroed so deleted values do not linger in the file.
 */
#include "storage/btree/page.h"

#include "core/util/assert.h"
#include "core/util/crc32c.h"
#include "core/util/encoding.h"
#include "core/util/err.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Common header offsets (page.h). */
#define OFF_CRC 0u
#define OFF_TYPE 4u
#define OFF_FLAGS 5u
#define OFF_COUNT 6u
#define OFF_PAGE_NO 8u
#define OFF_CHECKPOINT 16u
#define OFF_SLOTS_END 24u
#define OFF_CELLS_START 26u
#define OFF_GARBAGE 28u
#define OFF_LINK 32u

/* Meta body offsets (page.h). */
#define META_MAGIC 40u
#define META_VERSION 48u
#define META_PAGE_BYTES 52u
#define META_ROOT 56u
#define META_PAGE_COUNT 64u
#define META_FREELIST 72u
#define META_HEIGHT 80u
#define META_USER_LEN 84u
#define META_TREE_BYTES 88u
#define META_MAGIC_TEXT "TSBTREE1"
#define META_MAGIC_BYTES 8u
/* Each level of a tree at least doubles its pages, and page numbers are 64-bit. */
#define META_HEIGHT_MAX 64u

_Static_assert(META_TREE_BYTES + 8u == BTP_META_USER_OFFSET, "meta layout is contiguous");
_Static_assert(OFF_LINK + 8u == BTP_HDR_BYTES, "header layout is contiguous");

/* ------------------------------------------------------------------------------------ */
/* Small accessors.                                                                       */

static uint32_t cells_start_get(const uint8_t *page)
{
    uint32_t v = ts_load_le16(page + OFF_CELLS_START);
    return v == 0 ? 65536u : v;
}

static void cells_start_set(uint8_t *page, uint32_t v)
{
    ts_store_le16(page + OFF_CELLS_START, (uint16_t)v); /* 65536 wraps to 0 */
}

static uint32_t slots_end_get(const uint8_t *page)
{
    return ts_load_le16(page + OFF_SLOTS_END);
}

static uint32_t garbage_get(const uint8_t *page)
{
    return ts_load_le32(page + OFF_GARBAGE);
}

static uint64_t load_le48(const uint8_t *p)
{
    return (uint64_t)ts_load_le16(p) | (uint64_t)ts_load_le32(p + 2) << 16;
}

static void store_le48(uint8_t *p, uint64_t v)
{
    ts_store_le16(p, (uint16_t)v);
    ts_store_le32(p + 2, (uint32_t)(v >> 16));
}

static uint32_t slot_get(const uint8_t *page, uint32_t i)
{
    return ts_load_le16(page + BTP_HDR_BYTES + BTP_SLOT_BYTES * i);
}

static void slot_set(uint8_t *page, uint32_t i, uint32_t off)
{
    ts_store_le16(page + BTP_HDR_BYTES + BTP_SLOT_BYTES * i, (uint16_t)off);
}

static void count_set(uint8_t *page, uint32_t count)
{
    ts_store_le16(page + OFF_COUNT, (uint16_t)count);
    ts_store_le16(page + OFF_SLOTS_END, (uint16_t)(BTP_HDR_BYTES + BTP_SLOT_BYTES * count));
}

static bool is_slotted(enum btp_type t)
{
    return t == BTP_TYPE_BRANCH || t == BTP_TYPE_LEAF;
}

static uint32_t cell_hdr_bytes(enum btp_type t)
{
    return t == BTP_TYPE_LEAF ? BTP_LEAF_CELL_HDR_BYTES : BTP_BRANCH_CELL_HDR_BYTES;
}

/* Bytes of the cell at off, read from its header (which must lie inside the page). */
static uint32_t cell_size_at(const uint8_t *page, enum btp_type t, uint32_t off)
{
    const uint8_t *c = page + off;
    uint32_t key_len = ts_load_le16(c);
    if (t == BTP_TYPE_BRANCH) {
        return BTP_BRANCH_CELL_HDR_BYTES + key_len;
    }
    if (c[2] & BTP_LEAF_FLAG_OVERFLOW) {
        return BTP_LEAF_CELL_HDR_BYTES + key_len + BTP_OVF_PTR_BYTES;
    }
    return BTP_LEAF_CELL_HDR_BYTES + key_len + ts_load_le32(c + 4);
}

static const uint8_t *cell_key(const uint8_t *page, enum btp_type t, uint32_t off,
                               uint32_t *key_len)
{
    *key_len = ts_load_le16(page + off);
    return page + off + cell_hdr_bytes(t);
}

/* memcmp order, the shorter key first when one is a prefix of the other. */
static int key_cmp(const void *a, uint32_t a_len, const void *b, uint32_t b_len)
{
    uint32_t n = a_len < b_len ? a_len : b_len;
    int c = n == 0 ? 0 : memcmp(a, b, n);
    if (c != 0) {
        return c;
    }
    return a_len < b_len ? -1 : (a_len > b_len ? 1 : 0);
}

static int slot_key_cmp(const uint8_t *page, enum btp_type t, uint32_t i, const void *key,
                        uint32_t key_len)
{
    uint32_t len;
    const uint8_t *k = cell_key(page, t, slot_get(page, i), &len);
    return key_cmp(k, len, key, key_len);
}

static uint32_t page_crc(const uint8_t *page, uint32_t page_bytes)
{
    const uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t crc = ts_crc32c(0, zero, sizeof(zero));
    return ts_crc32c(crc, page + 4, page_bytes - 4);
}

/* ------------------------------------------------------------------------------------ */
/* Sizes and limits.                                                                      */

bool btp_page_bytes_valid(uint32_t page_bytes)
{
    return page_bytes >= TS_BTREE_PAGE_BYTES_MIN && page_bytes <= TS_BTREE_PAGE_BYTES_MAX &&
           (page_bytes & (page_bytes - 1)) == 0;
}

uint32_t btp_cell_bytes_max(uint32_t page_bytes)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    uint32_t max = (page_bytes - BTP_HDR_BYTES) / 3u - BTP_SLOT_BYTES;
    TS_ASSERT(3u * (max + BTP_SLOT_BYTES) <= page_bytes - BTP_HDR_BYTES);
    return max;
}

uint32_t btp_key_bytes_max(uint32_t page_bytes)
{
    uint32_t max = btp_cell_bytes_max(page_bytes) - BTP_BRANCH_CELL_HDR_BYTES;
    return max < TS_KEY_BYTES_MAX ? max : TS_KEY_BYTES_MAX;
}

bool btp_leaf_value_inline(uint32_t page_bytes, uint32_t key_len, uint32_t value_len)
{
    uint64_t cell = (uint64_t)BTP_LEAF_CELL_HDR_BYTES + key_len + value_len;
    return cell <= btp_cell_bytes_max(page_bytes);
}

uint32_t btp_leaf_inline_value_bytes_max(uint32_t page_bytes, uint32_t key_len)
{
    TS_ASSERT(key_len <= btp_key_bytes_max(page_bytes));
    uint32_t max = btp_cell_bytes_max(page_bytes) - BTP_LEAF_CELL_HDR_BYTES - key_len;
    TS_ASSERT(max >= BTP_OVF_PTR_BYTES);
    return max;
}

uint32_t btp_leaf_cell_bytes(uint32_t page_bytes, uint32_t key_len, uint32_t value_len)
{
    if (btp_leaf_value_inline(page_bytes, key_len, value_len)) {
        return BTP_LEAF_CELL_HDR_BYTES + key_len + value_len;
    }
    return BTP_LEAF_CELL_HDR_BYTES + key_len + BTP_OVF_PTR_BYTES;
}

uint32_t btp_overflow_capacity(uint32_t page_bytes)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    return page_bytes - BTP_HDR_BYTES;
}

uint32_t btp_freelist_capacity(uint32_t page_bytes)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    return (page_bytes - BTP_HDR_BYTES) / 8u;
}

/* ------------------------------------------------------------------------------------ */
/* Every page.                                                                            */

void btp_init(uint8_t *page, uint32_t page_bytes, enum btp_type type, uint64_t page_no,
              uint64_t checkpoint_id)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    TS_ASSERT(type >= BTP_TYPE_META && type <= BTP_TYPE_FREELIST);
    TS_ASSERT((type == BTP_TYPE_META) == (page_no < BTP_FIRST_TREE_PAGE));
    memset(page, 0, page_bytes);
    page[OFF_TYPE] = (uint8_t)type;
    ts_store_le64(page + OFF_PAGE_NO, page_no);
    ts_store_le64(page + OFF_CHECKPOINT, checkpoint_id);
    if (is_slotted(type)) {
        count_set(page, 0);
        cells_start_set(page, page_bytes);
    }
}

void btp_seal(uint8_t *page, uint32_t page_bytes)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    TS_DASSERT(btp_check_structure(page, page_bytes, BTP_TYPE_ANY, btp_page_no(page), NULL, 0) ==
               0);
    ts_store_le32(page + OFF_CRC, page_crc(page, page_bytes));
    TS_DASSERT(page_crc(page, page_bytes) == ts_load_le32(page + OFF_CRC));
}

enum btp_type btp_type(const uint8_t *page)
{
    return (enum btp_type)page[OFF_TYPE];
}

uint32_t btp_count(const uint8_t *page)
{
    return ts_load_le16(page + OFF_COUNT);
}

uint64_t btp_page_no(const uint8_t *page)
{
    return ts_load_le64(page + OFF_PAGE_NO);
}

uint64_t btp_checkpoint_id(const uint8_t *page)
{
    return ts_load_le64(page + OFF_CHECKPOINT);
}

uint64_t btp_link(const uint8_t *page)
{
    return ts_load_le64(page + OFF_LINK);
}

void btp_set_link(uint8_t *page, uint64_t link)
{
    enum btp_type t = btp_type(page);
    TS_ASSERT(t == BTP_TYPE_BRANCH || t == BTP_TYPE_OVERFLOW || t == BTP_TYPE_FREELIST);
    TS_ASSERT(link != btp_page_no(page));
    TS_ASSERT(link == 0 ? t != BTP_TYPE_BRANCH : link >= BTP_FIRST_TREE_PAGE);
    ts_store_le64(page + OFF_LINK, link);
}

void btp_relabel(uint8_t *page, uint64_t page_no, uint64_t checkpoint_id)
{
    TS_ASSERT(btp_type(page) != BTP_TYPE_META);
    TS_ASSERT(page_no >= BTP_FIRST_TREE_PAGE);
    ts_store_le64(page + OFF_PAGE_NO, page_no);
    ts_store_le64(page + OFF_CHECKPOINT, checkpoint_id);
}

/* ------------------------------------------------------------------------------------ */
/* Slotted pages: space, compaction, cell insertion and removal.                          */

uint32_t btp_free_bytes(const uint8_t *page, uint32_t page_bytes)
{
    TS_ASSERT(is_slotted(btp_type(page)));
    uint32_t cells_start = cells_start_get(page);
    uint32_t slots_end = slots_end_get(page);
    TS_ASSERT(slots_end <= cells_start && cells_start <= page_bytes);
    return cells_start - slots_end + garbage_get(page);
}

uint32_t btp_used_bytes(const uint8_t *page, uint32_t page_bytes)
{
    uint32_t free_bytes = btp_free_bytes(page, page_bytes);
    TS_ASSERT(free_bytes <= page_bytes - BTP_HDR_BYTES);
    return page_bytes - BTP_HDR_BYTES - free_bytes;
}

/* Heap order of two slots: by cell offset, or by key. */
static bool slot_less(const uint8_t *page, enum btp_type t, uint32_t i, uint32_t j, bool by_key)
{
    if (!by_key) {
        return slot_get(page, i) < slot_get(page, j);
    }
    uint32_t len;
    const uint8_t *k = cell_key(page, t, slot_get(page, j), &len);
    return slot_key_cmp(page, t, i, k, len) < 0;
}

static void slot_swap(uint8_t *page, uint32_t i, uint32_t j)
{
    uint32_t a = slot_get(page, i);
    slot_set(page, i, slot_get(page, j));
    slot_set(page, j, a);
}

static void sift_down(uint8_t *page, enum btp_type t, uint32_t n, uint32_t i, bool by_key)
{
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) {
            return;
        }
        if (c + 1 < n && slot_less(page, t, c, c + 1, by_key)) {
            c++;
        }
        if (!slot_less(page, t, i, c, by_key)) {
            return;
        }
        slot_swap(page, i, c);
        i = c;
    }
}

/* Heapsort of the slot array: in place, O(n log n), no scratch memory. */
static void sort_slots(uint8_t *page, enum btp_type t, bool by_key)
{
    uint32_t n = btp_count(page);
    for (uint32_t i = n / 2; i-- > 0;) {
        sift_down(page, t, n, i, by_key);
    }
    for (uint32_t end = n; end-- > 1;) {
        slot_swap(page, 0, end);
        sift_down(page, t, end, 0, by_key);
    }
}

void btp_compact(uint8_t *page, uint32_t page_bytes)
{
    enum btp_type t = btp_type(page);
    TS_ASSERT(is_slotted(t));
    uint32_t n = btp_count(page);
    uint32_t used_before = btp_used_bytes(page, page_bytes);
    /* Slide the cells up in descending offset order: each destination lies at or above
     * its source, and only over bytes already moved or free. */
    sort_slots(page, t, false);
    uint32_t top = page_bytes;
    for (uint32_t i = n; i-- > 0;) {
        uint32_t off = slot_get(page, i);
        uint32_t size = cell_size_at(page, t, off);
        TS_ASSERT(off + size <= top);
        top -= size;
        memmove(page + top, page + off, size);
        slot_set(page, i, top);
    }
    uint32_t slots_end = slots_end_get(page);
    TS_ASSERT(slots_end <= top);
    memset(page + slots_end, 0, top - slots_end);
    cells_start_set(page, top);
    ts_store_le32(page + OFF_GARBAGE, 0);
    sort_slots(page, t, true);
    TS_ASSERT(btp_used_bytes(page, page_bytes) <= used_before);
}

/* Makes room for a cell of size bytes and a slot at index; returns the cell's offset.
 * The caller has checked that size + a slot fit in the free bytes. */
static uint32_t cell_insert(uint8_t *page, uint32_t page_bytes, uint32_t index, uint32_t size)
{
    uint32_t n = btp_count(page);
    TS_ASSERT(index <= n);
    TS_ASSERT(btp_free_bytes(page, page_bytes) >= size + BTP_SLOT_BYTES);
    if (cells_start_get(page) - slots_end_get(page) < size + BTP_SLOT_BYTES) {
        btp_compact(page, page_bytes);
    }
    uint32_t off = cells_start_get(page) - size;
    cells_start_set(page, off);
    uint8_t *slots = page + BTP_HDR_BYTES;
    memmove(slots + BTP_SLOT_BYTES * (index + 1), slots + BTP_SLOT_BYTES * index,
            BTP_SLOT_BYTES * (n - index));
    count_set(page, n + 1);
    slot_set(page, index, off);
    TS_ASSERT(slots_end_get(page) <= cells_start_get(page));
    return off;
}

/* Removes the cell at index and its slot, zeroing its bytes. */
static void cell_remove(uint8_t *page, uint32_t page_bytes, uint32_t index)
{
    enum btp_type t = btp_type(page);
    uint32_t n = btp_count(page);
    TS_ASSERT(is_slotted(t));
    TS_ASSERT(index < n);
    uint32_t off = slot_get(page, index);
    uint32_t size = cell_size_at(page, t, off);
    TS_ASSERT(off >= cells_start_get(page) && off + size <= page_bytes);
    memset(page + off, 0, size);
    uint8_t *slots = page + BTP_HDR_BYTES;
    memmove(slots + BTP_SLOT_BYTES * index, slots + BTP_SLOT_BYTES * (index + 1),
            BTP_SLOT_BYTES * (n - index - 1));
    count_set(page, n - 1);
    ts_store_le16(slots + BTP_SLOT_BYTES * (n - 1), 0);
    if (n == 1) {
        cells_start_set(page, page_bytes); /* every hole is zeroed already */
        ts_store_le32(page + OFF_GARBAGE, 0);
    } else if (off == cells_start_get(page)) {
        cells_start_set(page, off + size);
    } else {
        ts_store_le32(page + OFF_GARBAGE, garbage_get(page) + size);
    }
}

/* Writes a leaf cell at c; value is stored inline when inline_value. */
static void leaf_cell_write(uint8_t *c, const void *key, uint32_t key_len, const void *value,
                            uint32_t value_len, uint64_t overflow_page, bool inline_value)
{
    ts_store_le16(c, (uint16_t)key_len);
    c[2] = inline_value ? 0 : BTP_LEAF_FLAG_OVERFLOW;
    c[3] = 0;
    ts_store_le32(c + 4, value_len);
    if (key_len > 0) {
        memmove(c + BTP_LEAF_CELL_HDR_BYTES, key, key_len);
    }
    if (!inline_value) {
        ts_store_le64(c + BTP_LEAF_CELL_HDR_BYTES + key_len, overflow_page);
    } else if (value_len > 0) {
        memmove(c + BTP_LEAF_CELL_HDR_BYTES + key_len, value, value_len);
    }
}

/* Checks the limits of a leaf value and the overflow_page convention. */
static int leaf_value_check(uint32_t page_bytes, uint32_t key_len, uint32_t value_len,
                            uint64_t overflow_page)
{
    if (key_len > btp_key_bytes_max(page_bytes) || value_len > TS_VALUE_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    if (btp_leaf_value_inline(page_bytes, key_len, value_len)) {
        TS_ASSERT(overflow_page == 0);
    } else {
        TS_ASSERT(overflow_page >= BTP_FIRST_TREE_PAGE);
    }
    return 0;
}

/* Debug check that key belongs at index: above key index - 1, below key index. */
static bool key_fits_at(const uint8_t *page, uint32_t index, const void *key, uint32_t key_len)
{
    enum btp_type t = btp_type(page);
    uint32_t n = btp_count(page);
    if (index > 0 && slot_key_cmp(page, t, index - 1, key, key_len) >= 0) {
        return false;
    }
    return index >= n || slot_key_cmp(page, t, index, key, key_len) > 0;
}

/* ------------------------------------------------------------------------------------ */
/* Leaf.                                                                                  */

void btp_leaf_search(const uint8_t *page, uint32_t page_bytes, const void *key, uint32_t key_len,
                     uint32_t *index, bool *found)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    uint32_t lo = 0;
    uint32_t hi = btp_count(page);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (slot_key_cmp(page, BTP_TYPE_LEAF, mid, key, key_len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *index = lo;
    *found = lo < btp_count(page) && slot_key_cmp(page, BTP_TYPE_LEAF, lo, key, key_len) == 0;
}

struct btp_cell btp_leaf_get(const uint8_t *page, uint32_t page_bytes, uint32_t index)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    TS_ASSERT(index < btp_count(page));
    uint32_t off = slot_get(page, index);
    const uint8_t *c = page + off;
    TS_ASSERT(off + cell_size_at(page, BTP_TYPE_LEAF, off) <= page_bytes);
    struct btp_cell cell = {0};
    cell.key_len = ts_load_le16(c);
    cell.key = c + BTP_LEAF_CELL_HDR_BYTES;
    cell.value_len = ts_load_le32(c + 4);
    if (c[2] & BTP_LEAF_FLAG_OVERFLOW) {
        cell.overflow_page = ts_load_le64(cell.key + cell.key_len);
    } else {
        cell.value = cell.key + cell.key_len;
    }
    return cell;
}

int btp_leaf_insert(uint8_t *page, uint32_t page_bytes, uint32_t index, const void *key,
                    uint32_t key_len, const void *value, uint32_t value_len, uint64_t overflow_page)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    TS_ASSERT(index <= btp_count(page));
    int rv = leaf_value_check(page_bytes, key_len, value_len, overflow_page);
    if (rv != 0) {
        return rv;
    }
    TS_DASSERT(key_fits_at(page, index, key, key_len));
    uint32_t size = btp_leaf_cell_bytes(page_bytes, key_len, value_len);
    if (btp_free_bytes(page, page_bytes) < size + BTP_SLOT_BYTES) {
        return TS_EFULL;
    }
    uint32_t off = cell_insert(page, page_bytes, index, size);
    leaf_cell_write(page + off, key, key_len, value, value_len, overflow_page,
                    btp_leaf_value_inline(page_bytes, key_len, value_len));
    TS_ASSERT(cell_size_at(page, BTP_TYPE_LEAF, off) == size);
    return 0;
}

int btp_leaf_set_value(uint8_t *page, uint32_t page_bytes, uint32_t index, const void *value,
                       uint32_t value_len, uint64_t overflow_page)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    TS_ASSERT(index < btp_count(page));
    uint32_t off = slot_get(page, index);
    uint32_t key_len = ts_load_le16(page + off);
    int rv = leaf_value_check(page_bytes, key_len, value_len, overflow_page);
    if (rv != 0) {
        return rv;
    }
    uint32_t old_size = cell_size_at(page, BTP_TYPE_LEAF, off);
    uint32_t size = btp_leaf_cell_bytes(page_bytes, key_len, value_len);
    bool inline_value = btp_leaf_value_inline(page_bytes, key_len, value_len);
    if (size <= old_size) {
        leaf_cell_write(page + off, page + off + BTP_LEAF_CELL_HDR_BYTES, key_len, value, value_len,
                        overflow_page, inline_value);
        memset(page + off + size, 0, old_size - size);
        ts_store_le32(page + OFF_GARBAGE, garbage_get(page) + (old_size - size));
        return 0;
    }
    if (btp_free_bytes(page, page_bytes) + old_size < size) {
        return TS_EFULL;
    }
    uint8_t key[TS_KEY_BYTES_MAX];
    memcpy(key, page + off + BTP_LEAF_CELL_HDR_BYTES, key_len);
    cell_remove(page, page_bytes, index);
    rv = btp_leaf_insert(page, page_bytes, index, key, key_len, value, value_len, overflow_page);
    TS_ASSERT(rv == 0);
    return 0;
}

void btp_leaf_delete(uint8_t *page, uint32_t page_bytes, uint32_t index)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    cell_remove(page, page_bytes, index);
}

/* ------------------------------------------------------------------------------------ */
/* Branch.                                                                                */

uint32_t btp_branch_search(const uint8_t *page, uint32_t page_bytes, const void *key,
                           uint32_t key_len)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    uint32_t lo = 0;
    uint32_t hi = btp_count(page);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (slot_key_cmp(page, BTP_TYPE_BRANCH, mid, key, key_len) <= 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

struct btp_cell btp_branch_get(const uint8_t *page, uint32_t page_bytes, uint32_t index)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(index < btp_count(page));
    uint32_t off = slot_get(page, index);
    TS_ASSERT(off + cell_size_at(page, BTP_TYPE_BRANCH, off) <= page_bytes);
    struct btp_cell cell = {0};
    cell.key = cell_key(page, BTP_TYPE_BRANCH, off, &cell.key_len);
    cell.child = ts_load_le64(page + off + 8);
    cell.bytes = load_le48(page + off + 2);
    return cell;
}

uint64_t btp_branch_child(const uint8_t *page, uint32_t page_bytes, uint32_t child_index)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(child_index <= btp_count(page));
    if (child_index == 0) {
        return btp_link(page);
    }
    return btp_branch_get(page, page_bytes, child_index - 1).child;
}

void btp_branch_set_child(uint8_t *page, uint32_t page_bytes, uint32_t child_index, uint64_t child)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(child_index <= btp_count(page));
    TS_ASSERT(child >= BTP_FIRST_TREE_PAGE && child != btp_page_no(page));
    if (child_index == 0) {
        btp_set_link(page, child);
        return;
    }
    uint32_t off = slot_get(page, child_index - 1);
    TS_ASSERT(off + BTP_BRANCH_CELL_HDR_BYTES <= page_bytes);
    ts_store_le64(page + off + 8, child);
}

int btp_branch_insert(uint8_t *page, uint32_t page_bytes, uint32_t index, const void *key,
                      uint32_t key_len, uint64_t child, uint64_t bytes)
{
    TS_ASSERT(bytes <= BTP_SUBTREE_BYTES_MAX);
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(index <= btp_count(page));
    TS_ASSERT(child >= BTP_FIRST_TREE_PAGE && child != btp_page_no(page));
    if (key_len > btp_key_bytes_max(page_bytes)) {
        return TS_ETOOBIG;
    }
    TS_DASSERT(key_fits_at(page, index, key, key_len));
    uint32_t size = BTP_BRANCH_CELL_HDR_BYTES + key_len;
    if (btp_free_bytes(page, page_bytes) < size + BTP_SLOT_BYTES) {
        return TS_EFULL;
    }
    uint32_t off = cell_insert(page, page_bytes, index, size);
    uint8_t *c = page + off;
    memset(c, 0, BTP_BRANCH_CELL_HDR_BYTES);
    ts_store_le16(c, (uint16_t)key_len);
    store_le48(c + 2, bytes);
    ts_store_le64(c + 8, child);
    if (key_len > 0) {
        memcpy(c + BTP_BRANCH_CELL_HDR_BYTES, key, key_len);
    }
    return 0;
}

void btp_branch_set_bytes(uint8_t *page, uint32_t page_bytes, uint32_t index, uint64_t bytes)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(index < btp_count(page) && bytes <= BTP_SUBTREE_BYTES_MAX);
    uint32_t off = slot_get(page, index);
    TS_ASSERT(off + BTP_BRANCH_CELL_HDR_BYTES <= page_bytes);
    store_le48(page + off + 2, bytes);
}

uint64_t btp_branch_cells_bytes(const uint8_t *page, uint32_t page_bytes)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    uint64_t sum = 0;
    uint32_t n = btp_count(page);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t off = slot_get(page, i);
        TS_ASSERT(off + BTP_BRANCH_CELL_HDR_BYTES <= page_bytes);
        sum += load_le48(page + off + 2);
    }
    return sum;
}

uint64_t btp_leaf_bytes(const uint8_t *page, uint32_t page_bytes)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    uint64_t sum = 0;
    uint32_t n = btp_count(page);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t off = slot_get(page, i);
        TS_ASSERT(off + BTP_LEAF_CELL_HDR_BYTES <= page_bytes);
        sum += (uint64_t)ts_load_le16(page + off) + ts_load_le32(page + off + 4);
    }
    return sum;
}

void btp_branch_delete(uint8_t *page, uint32_t page_bytes, uint32_t index)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    cell_remove(page, page_bytes, index);
}

/* ------------------------------------------------------------------------------------ */
/* Split.                                                                                 */

/* The split index s that best balances the bytes (cells and slots) of the two pages.
 * Leaf: left keeps [0, s), right gets [s, n). Branch: key s moves up, right gets
 * (s, n). */
static uint32_t split_point(const uint8_t *page, enum btp_type t)
{
    uint32_t n = btp_count(page);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        total += cell_size_at(page, t, slot_get(page, i)) + BTP_SLOT_BYTES;
    }
    uint32_t first = 1;
    uint32_t last = t == BTP_TYPE_LEAF ? n - 1 : n - 2;
    TS_ASSERT(first <= last);
    uint64_t left = cell_size_at(page, t, slot_get(page, 0)) + BTP_SLOT_BYTES;
    uint32_t best = first;
    uint64_t best_diff = UINT64_MAX;
    for (uint32_t s = first; s <= last; s++) {
        uint64_t mid = cell_size_at(page, t, slot_get(page, s)) + BTP_SLOT_BYTES;
        uint64_t right = total - left - (t == BTP_TYPE_BRANCH ? mid : 0);
        uint64_t diff = left > right ? left - right : right - left;
        if (diff < best_diff) {
            best_diff = diff;
            best = s;
        }
        left += mid;
    }
    TS_ASSERT(best >= first && best <= last);
    return best;
}

void btp_split(uint8_t *left, uint8_t *right, uint32_t page_bytes, uint8_t *sep, uint32_t *sep_len,
               uint64_t *sep_bytes)
{
    enum btp_type t = btp_type(left);
    uint32_t n = btp_count(left);
    TS_ASSERT(is_slotted(t) && btp_type(right) == t);
    TS_ASSERT(btp_count(right) == 0 &&
              btp_free_bytes(right, page_bytes) == page_bytes - BTP_HDR_BYTES);
    TS_ASSERT(n >= (t == BTP_TYPE_LEAF ? 2u : 3u));
    uint32_t s = split_point(left, t);
    uint32_t key_len;
    const uint8_t *key = cell_key(left, t, slot_get(left, s), &key_len);
    TS_ASSERT(key_len <= TS_KEY_BYTES_MAX);
    memcpy(sep, key, key_len);
    *sep_len = key_len;
    uint32_t first_moved = s;
    *sep_bytes = 0;
    if (t == BTP_TYPE_BRANCH) {
        btp_set_link(right, ts_load_le64(left + slot_get(left, s) + 8));
        *sep_bytes = load_le48(left + slot_get(left, s) + 2);
        first_moved = s + 1;
    }
    for (uint32_t i = first_moved; i < n; i++) {
        uint32_t off = slot_get(left, i);
        uint32_t size = cell_size_at(left, t, off);
        uint32_t dst = cell_insert(right, page_bytes, i - first_moved, size);
        memcpy(right + dst, left + off, size);
    }
    for (uint32_t i = s; i < n; i++) {
        slot_set(left, i, 0);
    }
    count_set(left, s);
    btp_compact(left, page_bytes); /* recomputes cells_start and garbage from the slots */
    TS_ASSERT(btp_count(left) + btp_count(right) + (t == BTP_TYPE_BRANCH ? 1u : 0u) == n);
}

int btp_merge(uint8_t *left, uint8_t *right, uint32_t page_bytes, const uint8_t *sep,
              uint32_t sep_len, uint64_t sep_bytes)
{
    enum btp_type t = btp_type(left);
    TS_ASSERT(is_slotted(t) && btp_type(right) == t);
    uint32_t need = btp_used_bytes(right, page_bytes);
    if (t == BTP_TYPE_BRANCH) {
        TS_ASSERT(sep_len <= btp_key_bytes_max(page_bytes));
        need += BTP_BRANCH_CELL_HDR_BYTES + sep_len + BTP_SLOT_BYTES;
    }
    if (btp_free_bytes(left, page_bytes) < need) {
        return TS_EFULL;
    }
    if (t == BTP_TYPE_BRANCH) {
        int rc = btp_branch_insert(left, page_bytes, btp_count(left), sep, sep_len, btp_link(right),
                                   sep_bytes);
        TS_ASSERT(rc == 0);
    }
    uint32_t n = btp_count(right);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t off = slot_get(right, i);
        uint32_t size = cell_size_at(right, t, off);
        uint32_t dst = cell_insert(left, page_bytes, btp_count(left), size);
        memcpy(left + dst, right + off, size);
    }
    btp_init(right, page_bytes, t, btp_page_no(right), btp_checkpoint_id(right));
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Overflow and freelist pages.                                                           */

void btp_overflow_put(uint8_t *page, uint32_t page_bytes, const void *data, uint32_t len,
                      uint64_t next_page)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_OVERFLOW);
    TS_ASSERT(len >= 1 && len <= btp_overflow_capacity(page_bytes));
    TS_ASSERT(next_page == 0 || next_page >= BTP_FIRST_TREE_PAGE);
    memcpy(page + BTP_HDR_BYTES, data, len);
    memset(page + BTP_HDR_BYTES + len, 0, page_bytes - BTP_HDR_BYTES - len);
    ts_store_le16(page + OFF_COUNT, (uint16_t)len);
    ts_store_le64(page + OFF_LINK, next_page);
}

const uint8_t *btp_overflow_get(const uint8_t *page, uint32_t page_bytes, uint32_t *len)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_OVERFLOW);
    *len = btp_count(page);
    TS_ASSERT(*len <= btp_overflow_capacity(page_bytes));
    return page + BTP_HDR_BYTES;
}

int btp_freelist_push(uint8_t *page, uint32_t page_bytes, uint64_t free_page)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_FREELIST);
    TS_ASSERT(free_page >= BTP_FIRST_TREE_PAGE && free_page != btp_page_no(page));
    uint32_t n = btp_count(page);
    if (n >= btp_freelist_capacity(page_bytes)) {
        return TS_EFULL;
    }
    ts_store_le64(page + BTP_HDR_BYTES + 8u * n, free_page);
    ts_store_le16(page + OFF_COUNT, (uint16_t)(n + 1));
    return 0;
}

uint64_t btp_freelist_get(const uint8_t *page, uint32_t page_bytes, uint32_t index)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_FREELIST);
    TS_ASSERT(index < btp_count(page) && index < btp_freelist_capacity(page_bytes));
    return ts_load_le64(page + BTP_HDR_BYTES + 8u * index);
}

/* ------------------------------------------------------------------------------------ */
/* Verification.                                                                          */

struct chk {
    const uint8_t *page;
    uint32_t page_bytes;
    uint64_t page_no;
    char *errmsg;
    size_t errmsg_bytes;
};

__attribute__((format(printf, 2, 3))) static int corrupt(const struct chk *k, const char *fmt, ...)
{
    if (k->errmsg != NULL && k->errmsg_bytes > 0) {
        int n = snprintf(k->errmsg, k->errmsg_bytes, "page %" PRIu64 ": ", k->page_no);
        if (n >= 0 && (size_t)n < k->errmsg_bytes) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(k->errmsg + n, k->errmsg_bytes - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return TS_ECORRUPT;
}

/* A page pointer stored at offset at: 0 allowed only when may_be_zero. */
static int check_pointer(const struct chk *k, uint32_t at, uint64_t ptr, bool may_be_zero)
{
    if (ptr == 0 && may_be_zero) {
        return 0;
    }
    if (ptr < BTP_FIRST_TREE_PAGE || ptr == k->page_no) {
        return corrupt(k, "page pointer %" PRIu64 " at offset %u is invalid", ptr, at);
    }
    return 0;
}

static int check_zero(const struct chk *k, uint32_t from, uint32_t to, const char *what)
{
    for (uint32_t i = from; i < to; i++) {
        if (k->page[i] != 0) {
            return corrupt(k, "nonzero byte at offset %u in %s", i, what);
        }
    }
    return 0;
}

/* Marks [from, to) in the bitmap; returns the first byte already marked, or 0 (no cell
 * ever covers byte 0). */
static uint32_t mark_bytes(uint8_t *map, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++) {
        uint8_t bit = (uint8_t)(1u << (i & 7u));
        if (map[i >> 3] & bit) {
            return i;
        }
        map[i >> 3] |= bit;
    }
    return 0;
}

static int check_leaf_cell(const struct chk *k, uint32_t off)
{
    const uint8_t *c = k->page + off;
    uint32_t key_len = ts_load_le16(c);
    uint32_t value_len = ts_load_le32(c + 4);
    if ((c[2] & ~BTP_LEAF_FLAG_OVERFLOW) != 0 || c[3] != 0) {
        return corrupt(k, "leaf cell at offset %u has reserved bits set", off);
    }
    if (value_len > TS_VALUE_BYTES_MAX) {
        return corrupt(k, "leaf cell at offset %u has value_len %u over the limit", off, value_len);
    }
    bool inline_value = btp_leaf_value_inline(k->page_bytes, key_len, value_len);
    if (inline_value == ((c[2] & BTP_LEAF_FLAG_OVERFLOW) != 0)) {
        return corrupt(k, "leaf cell at offset %u: value of %u bytes %s", off, value_len,
                       inline_value ? "belongs inline" : "belongs in overflow pages");
    }
    if (!inline_value) {
        uint32_t at = off + BTP_LEAF_CELL_HDR_BYTES + key_len;
        return check_pointer(k, at, ts_load_le64(k->page + at), false);
    }
    return 0;
}

static int check_branch_cell(const struct chk *k, uint32_t off)
{
    const uint8_t *c = k->page + off;
    return check_pointer(k, off + 8, ts_load_le64(c + 8), false);
}

/* One cell of slot i: inside the cell area, within the limits, not overlapping. */
static int check_cell(const struct chk *k, enum btp_type t, uint32_t i, uint8_t *map,
                      uint32_t *size)
{
    uint32_t cells_start = cells_start_get(k->page);
    uint32_t off = slot_get(k->page, i);
    uint32_t slot_at = BTP_HDR_BYTES + BTP_SLOT_BYTES * i;
    if (off < cells_start || off + cell_hdr_bytes(t) > k->page_bytes) {
        return corrupt(k, "slot %u at offset %u points to %u, outside the cell area [%u, %u)", i,
                       slot_at, off, cells_start, k->page_bytes);
    }
    *size = cell_size_at(k->page, t, off);
    uint32_t key_len = ts_load_le16(k->page + off);
    if (key_len > btp_key_bytes_max(k->page_bytes) || *size > btp_cell_bytes_max(k->page_bytes)) {
        return corrupt(k,
                       "cell of slot %u at offset %u (key %u bytes, cell %u bytes) is over "
                       "the limits",
                       i, off, key_len, *size);
    }
    if (off + *size > k->page_bytes) {
        return corrupt(k, "cell of slot %u at offset %u ends at %u, past the page end", i, off,
                       off + *size);
    }
    int rv = t == BTP_TYPE_LEAF ? check_leaf_cell(k, off) : check_branch_cell(k, off);
    if (rv != 0) {
        return rv;
    }
    uint32_t overlap = mark_bytes(map, off, off + *size);
    if (overlap != 0) {
        return corrupt(k, "cell of slot %u at offset %u overlaps another cell at byte %u", i, off,
                       overlap);
    }
    return 0;
}

static int check_slotted_header(const struct chk *k, enum btp_type t)
{
    uint32_t n = btp_count(k->page);
    uint32_t slots_end = slots_end_get(k->page);
    uint32_t cells_start = cells_start_get(k->page);
    if (slots_end != BTP_HDR_BYTES + BTP_SLOT_BYTES * n) {
        return corrupt(k, "slots_end %u at offset %u does not match count %u", slots_end,
                       OFF_SLOTS_END, n);
    }
    if (slots_end > cells_start || cells_start > k->page_bytes) {
        return corrupt(k, "cells_start %u at offset %u is outside [slots_end %u, %u]", cells_start,
                       OFF_CELLS_START, slots_end, k->page_bytes);
    }
    if (garbage_get(k->page) > k->page_bytes - cells_start) {
        return corrupt(k, "garbage %u at offset %u is larger than the cell area",
                       garbage_get(k->page), OFF_GARBAGE);
    }
    uint64_t link = btp_link(k->page);
    if (t == BTP_TYPE_LEAF && link != 0) {
        return corrupt(k, "leaf link at offset %u is %" PRIu64 ", not 0", OFF_LINK, link);
    }
    return t == BTP_TYPE_BRANCH ? check_pointer(k, OFF_LINK, link, false) : 0;
}

static int check_slotted(const struct chk *k, enum btp_type t)
{
    int rv = check_slotted_header(k, t);
    if (rv != 0) {
        return rv;
    }
    uint8_t map[TS_BTREE_PAGE_BYTES_MAX / 8];
    memset(map, 0, k->page_bytes / 8);
    uint32_t n = btp_count(k->page);
    uint64_t cell_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t size = 0;
        rv = check_cell(k, t, i, map, &size);
        if (rv != 0) {
            return rv;
        }
        cell_bytes += size;
        if (i > 0) {
            uint32_t len;
            const uint8_t *key = cell_key(k->page, t, slot_get(k->page, i), &len);
            if (slot_key_cmp(k->page, t, i - 1, key, len) >= 0) {
                return corrupt(k, "key of slot %u at offset %u is not above the previous key", i,
                               slot_get(k->page, i));
            }
        }
    }
    uint32_t area = k->page_bytes - cells_start_get(k->page);
    if (cell_bytes + garbage_get(k->page) != area) {
        return corrupt(k,
                       "garbage %u at offset %u plus %" PRIu64 " cell bytes is not the "
                       "cell area of %u bytes",
                       garbage_get(k->page), OFF_GARBAGE, cell_bytes, area);
    }
    return 0;
}

/* Overflow and freelist pages: no slot fields, a bounded count, a link, zero padding. */
static int check_flat(const struct chk *k, enum btp_type t)
{
    uint32_t n = btp_count(k->page);
    if (slots_end_get(k->page) != 0 || ts_load_le16(k->page + OFF_CELLS_START) != 0 ||
        garbage_get(k->page) != 0) {
        return corrupt(k, "slot fields at offset %u are not zero", OFF_SLOTS_END);
    }
    uint32_t data_end;
    if (t == BTP_TYPE_OVERFLOW) {
        if (n == 0 || n > btp_overflow_capacity(k->page_bytes)) {
            return corrupt(k, "overflow count %u at offset %u is out of range", n, OFF_COUNT);
        }
        data_end = BTP_HDR_BYTES + n;
    } else {
        if (n > btp_freelist_capacity(k->page_bytes)) {
            return corrupt(k, "freelist count %u at offset %u is out of range", n, OFF_COUNT);
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t at = BTP_HDR_BYTES + 8u * i;
            int rv = check_pointer(k, at, ts_load_le64(k->page + at), false);
            if (rv != 0) {
                return rv;
            }
        }
        data_end = BTP_HDR_BYTES + 8u * n;
    }
    int rv = check_pointer(k, OFF_LINK, btp_link(k->page), true);
    return rv != 0 ? rv : check_zero(k, data_end, k->page_bytes, "the padding");
}

static int check_meta(const struct chk *k)
{
    const uint8_t *p = k->page;
    if (btp_count(p) != 0 || slots_end_get(p) != 0 || ts_load_le16(p + OFF_CELLS_START) != 0 ||
        garbage_get(p) != 0 || btp_link(p) != 0) {
        return corrupt(k, "meta header fields at offset %u are not zero", OFF_COUNT);
    }
    if (memcmp(p + META_MAGIC, META_MAGIC_TEXT, META_MAGIC_BYTES) != 0) {
        return corrupt(k, "bad magic at offset %u", META_MAGIC);
    }
    if (ts_load_le32(p + META_VERSION) != BTP_META_VERSION) {
        return corrupt(k, "unknown format version %u at offset %u", ts_load_le32(p + META_VERSION),
                       META_VERSION);
    }
    if (ts_load_le32(p + META_PAGE_BYTES) != k->page_bytes) {
        return corrupt(k, "page size %u at offset %u is not %u", ts_load_le32(p + META_PAGE_BYTES),
                       META_PAGE_BYTES, k->page_bytes);
    }
    if (btp_checkpoint_id(p) % 2 != k->page_no) {
        return corrupt(k, "checkpoint %" PRIu64 " at offset %u belongs in the other meta page",
                       btp_checkpoint_id(p), OFF_CHECKPOINT);
    }
    uint64_t page_count = ts_load_le64(p + META_PAGE_COUNT);
    uint64_t root = ts_load_le64(p + META_ROOT);
    uint64_t freelist = ts_load_le64(p + META_FREELIST);
    uint32_t height = ts_load_le32(p + META_HEIGHT);
    if (page_count < BTP_FIRST_TREE_PAGE || root >= page_count || freelist >= page_count) {
        return corrupt(k,
                       "page count %" PRIu64 " at offset %u does not cover the root or the "
                       "freelist",
                       page_count, META_PAGE_COUNT);
    }
    if (check_pointer(k, META_ROOT, root, true) != 0 ||
        check_pointer(k, META_FREELIST, freelist, true) != 0) {
        return TS_ECORRUPT;
    }
    if ((root == 0) != (height == 0) || height > META_HEIGHT_MAX) {
        return corrupt(k, "height %u at offset %u does not match root %" PRIu64, height,
                       META_HEIGHT, root);
    }
    uint32_t user_len = ts_load_le32(p + META_USER_LEN);
    if (user_len > k->page_bytes - BTP_META_USER_OFFSET) {
        return corrupt(k, "user_len %u at offset %u does not fit the page", user_len,
                       META_USER_LEN);
    }
    return check_zero(k, BTP_META_USER_OFFSET + user_len, k->page_bytes, "the meta padding");
}

static int check_header(const struct chk *k, enum btp_type expected)
{
    enum btp_type t = btp_type(k->page);
    if (t < BTP_TYPE_META || t > BTP_TYPE_FREELIST) {
        return corrupt(k, "unknown page type %u at offset %u", (unsigned)t, OFF_TYPE);
    }
    if (expected != BTP_TYPE_ANY && t != expected) {
        return corrupt(k, "page type %u at offset %u, expected %u", (unsigned)t, OFF_TYPE,
                       (unsigned)expected);
    }
    if (k->page[OFF_FLAGS] != 0) {
        return corrupt(k, "flags 0x%02x at offset %u are reserved", k->page[OFF_FLAGS], OFF_FLAGS);
    }
    uint64_t stored = btp_page_no(k->page);
    if (stored != k->page_no) {
        return corrupt(k, "page number %" PRIu64 " at offset %u (misdirected I/O?)", stored,
                       OFF_PAGE_NO);
    }
    if ((t == BTP_TYPE_META) != (stored < BTP_FIRST_TREE_PAGE)) {
        return corrupt(k, "page type %u at offset %u is wrong for this page number", (unsigned)t,
                       OFF_TYPE);
    }
    return 0;
}

int btp_check_structure(const uint8_t *page, uint32_t page_bytes, enum btp_type type,
                        uint64_t page_no, char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    TS_ASSERT(type >= BTP_TYPE_ANY && type <= BTP_TYPE_FREELIST);
    struct chk k = {page, page_bytes, page_no, errmsg, errmsg_bytes};
    int rv = check_header(&k, type);
    if (rv != 0) {
        return rv;
    }
    switch (btp_type(page)) {
    case BTP_TYPE_META:
        return check_meta(&k);
    case BTP_TYPE_BRANCH:
    case BTP_TYPE_LEAF:
        return check_slotted(&k, btp_type(page));
    default:
        return check_flat(&k, btp_type(page));
    }
}

int btp_verify(const uint8_t *page, uint32_t page_bytes, enum btp_type type, uint64_t page_no,
               char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(btp_page_bytes_valid(page_bytes));
    TS_ASSERT(page != NULL);
    uint32_t stored = ts_load_le32(page + OFF_CRC);
    uint32_t computed = page_crc(page, page_bytes);
    if (stored != computed) {
        struct chk k = {page, page_bytes, page_no, errmsg, errmsg_bytes};
        return corrupt(&k, "crc32c 0x%08x at offset %u, computed 0x%08x (torn or damaged)", stored,
                       OFF_CRC, computed);
    }
    return btp_check_structure(page, page_bytes, type, page_no, errmsg, errmsg_bytes);
}

/* ------------------------------------------------------------------------------------ */
/* Meta pages.                                                                            */

int btp_meta_encode(uint8_t *page, uint32_t page_bytes, const struct btp_meta *meta)
{
    TS_ASSERT(meta->page_bytes == page_bytes);
    TS_ASSERT(meta->page_count >= BTP_FIRST_TREE_PAGE && meta->root_page < meta->page_count);
    TS_ASSERT(meta->freelist_head < meta->page_count);
    TS_ASSERT((meta->root_page == 0) == (meta->height == 0));
    if (meta->user_len > page_bytes - BTP_META_USER_OFFSET) {
        return TS_ETOOBIG;
    }
    btp_init(page, page_bytes, BTP_TYPE_META, meta->checkpoint_id % 2, meta->checkpoint_id);
    memcpy(page + META_MAGIC, META_MAGIC_TEXT, META_MAGIC_BYTES);
    ts_store_le32(page + META_VERSION, BTP_META_VERSION);
    ts_store_le32(page + META_PAGE_BYTES, page_bytes);
    ts_store_le64(page + META_ROOT, meta->root_page);
    ts_store_le64(page + META_PAGE_COUNT, meta->page_count);
    ts_store_le64(page + META_FREELIST, meta->freelist_head);
    ts_store_le32(page + META_HEIGHT, meta->height);
    ts_store_le32(page + META_USER_LEN, meta->user_len);
    ts_store_le64(page + META_TREE_BYTES, meta->tree_bytes);
    if (meta->user_len > 0) {
        memcpy(page + BTP_META_USER_OFFSET, meta->user, meta->user_len);
    }
    btp_seal(page, page_bytes);
    TS_DASSERT(btp_verify(page, page_bytes, BTP_TYPE_META, meta->checkpoint_id % 2, NULL, 0) == 0);
    return 0;
}

int btp_meta_decode(const uint8_t *page, uint32_t page_bytes, uint64_t page_no,
                    struct btp_meta *meta, char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(page_no < BTP_FIRST_TREE_PAGE);
    TS_ASSERT(meta != NULL);
    int rv = btp_verify(page, page_bytes, BTP_TYPE_META, page_no, errmsg, errmsg_bytes);
    if (rv != 0) {
        return rv;
    }
    meta->checkpoint_id = btp_checkpoint_id(page);
    meta->page_bytes = page_bytes;
    meta->root_page = ts_load_le64(page + META_ROOT);
    meta->page_count = ts_load_le64(page + META_PAGE_COUNT);
    meta->freelist_head = ts_load_le64(page + META_FREELIST);
    meta->height = ts_load_le32(page + META_HEIGHT);
    meta->user_len = ts_load_le32(page + META_USER_LEN);
    meta->tree_bytes = ts_load_le64(page + META_TREE_BYTES);
    meta->user = page + BTP_META_USER_OFFSET;
    TS_ASSERT(meta->checkpoint_id % 2 == page_no);
    return 0;
}

int btp_meta_choose(const uint8_t *meta0, const uint8_t *meta1, uint32_t page_bytes,
                    struct btp_meta *meta, uint64_t *which, char *errmsg, size_t errmsg_bytes)
{
    char why0[160];
    char why1[160];
    struct btp_meta m0;
    struct btp_meta m1;
    int rv0 = btp_meta_decode(meta0, page_bytes, 0, &m0, why0, sizeof(why0));
    int rv1 = btp_meta_decode(meta1, page_bytes, 1, &m1, why1, sizeof(why1));
    if (rv0 != 0 && rv1 != 0) {
        if (errmsg != NULL && errmsg_bytes > 0) {
            snprintf(errmsg, errmsg_bytes, "no valid meta page: %s; %s", why0, why1);
        }
        return TS_ECORRUPT;
    }
    bool pick1 = rv0 != 0 || (rv1 == 0 && m1.checkpoint_id > m0.checkpoint_id);
    TS_ASSERT(rv0 != 0 || rv1 != 0 || m0.checkpoint_id != m1.checkpoint_id);
    *meta = pick1 ? m1 : m0;
    *which = pick1 ? 1 : 0;
    TS_ASSERT(meta->checkpoint_id % 2 == *which);
    return 0;
}

int btp_meta_peek_page_bytes(const uint8_t *buf, size_t len, uint32_t *page_bytes)
{
    TS_ASSERT(buf != NULL);
    TS_ASSERT(page_bytes != NULL);
    if (len < BTP_META_USER_OFFSET || buf[OFF_TYPE] != BTP_TYPE_META ||
        memcmp(buf + META_MAGIC, META_MAGIC_TEXT, META_MAGIC_BYTES) != 0) {
        return TS_ECORRUPT;
    }
    uint32_t v = ts_load_le32(buf + META_PAGE_BYTES);
    if (!btp_page_bytes_valid(v)) {
        return TS_ECORRUPT;
    }
    *page_bytes = v;
    return 0;
}
