#include "storage/btree/btree_check.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "storage/btree/page.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* page.c refuses a meta whose height exceeds 64; the walk's recursion depth and its
 * page buffers are bounded by the same number. */
#define BTC_HEIGHT_MAX 64u
#define BTC_REASON_BYTES 400u

/* A separator bounding a subtree, as a view into an ancestor's page buffer. */
struct btc_bound {
    const uint8_t *key;
    uint32_t len;
    bool set; /* false: unbounded on this side */
};

struct btc {
    const char *path;
    struct disk *disk;
    const struct ts_allocator *alloc;
    uint32_t file;
    uint32_t page_bytes;
    uint32_t height;
    uint64_t file_bytes;
    uint64_t file_pages; /* whole pages the file holds */
    uint64_t page_count; /* the meta's */
    uint64_t checkpoint_id;
    uint8_t *seen; /* one bit per page below min(page_count, file_pages) */
    size_t seen_bytes;
    uint8_t *bufs; /* height + 1 pages: level L uses page L, overflow chains page 0 */
    size_t bufs_bytes;
    struct btree_check_report *out;
    char *errmsg;
    size_t errmsg_bytes;
};

__attribute__((format(printf, 3, 4))) static int corrupt(struct btc *c, uint64_t pno,
                                                         const char *fmt, ...)
{
    TS_ASSERT(c->errmsg != NULL && c->errmsg_bytes > 0);
    TS_ASSERT(fmt != NULL);
    char reason[BTC_REASON_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(c->errmsg, c->errmsg_bytes, "btree check: %s: page %" PRIu64 ": %s", c->path, pno,
             reason);
    return TS_ECORRUPT;
}

static int io_error(struct btc *c, uint64_t pno, int rc)
{
    TS_ASSERT(rc < 0);
    TS_ASSERT(c->errmsg != NULL);
    snprintf(c->errmsg, c->errmsg_bytes, "btree check: %s: page %" PRIu64 ": read: %s", c->path,
             pno, ts_strerror(rc));
    return rc;
}

static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int d = n > 0 ? memcmp(a, b, n) : 0;
    return d != 0 ? d : (alen > blen) - (alen < blen);
}

static const char *type_name(enum btp_type type)
{
    switch (type) {
    case BTP_TYPE_BRANCH:
        return "branch";
    case BTP_TYPE_LEAF:
        return "leaf";
    case BTP_TYPE_OVERFLOW:
        return "overflow";
    default:
        return "page";
    }
}

/* Reads len bytes at off; what lies past the end of the file reads as zero. Returns
 * the bytes the file really held in *got (NULL allowed). */
static int read_at(struct btc *c, uint8_t *buf, size_t len, uint64_t off, size_t *got)
{
    TS_ASSERT(buf != NULL && len > 0);
    int64_t n = disk_pread(c->disk, c->file, buf, len, off);
    if (n < 0) {
        return (int)n;
    }
    TS_ASSERT((uint64_t)n <= len);
    if ((size_t)n < len) {
        memset(buf + n, 0, len - (size_t)n);
    }
    if (got != NULL) {
        *got = (size_t)n;
    }
    return 0;
}

/* Follows a pointer from page `from` to pno: a tree page below the page count, inside
 * the file, and never reached before. Marks it reached. */
static int reach(struct btc *c, uint64_t from, uint64_t pno)
{
    TS_ASSERT(c->seen != NULL);
    TS_DASSERT(c->seen_bytes * 8 >=
               (c->page_count < c->file_pages ? c->page_count : c->file_pages));
    if (pno < BTP_FIRST_TREE_PAGE) {
        return corrupt(c, from, "points to page %" PRIu64 ", a meta page", pno);
    }
    if (pno >= c->page_count) {
        return corrupt(c, from, "points to page %" PRIu64 ", not below the page count %" PRIu64,
                       pno, c->page_count);
    }
    if (pno >= c->file_pages) {
        return corrupt(c, pno,
                       "reached from page %" PRIu64 " but lies past the end of the file"
                       " (%" PRIu64 " bytes)",
                       from, c->file_bytes);
    }
    uint8_t bit = (uint8_t)(1u << (pno % 8));
    if ((c->seen[pno / 8] & bit) != 0) {
        return corrupt(c, pno,
                       "reached twice: page %" PRIu64 " points to it, and it was"
                       " already reached (shared by two parents, or a cycle)",
                       from);
    }
    c->seen[pno / 8] |= bit;
    return 0;
}

/* Reads page pno (already reached) into buf and verifies it as the type its position
 * demands (level: 1 leaf, above branch, 0 overflow), written by a checkpoint no newer
 * than the meta's. A sound page of the other slotted type means the height is wrong. */
static int read_page(struct btc *c, uint64_t pno, uint8_t *buf, enum btp_type type, uint32_t level)
{
    TS_ASSERT(type == BTP_TYPE_BRANCH || type == BTP_TYPE_LEAF || type == BTP_TYPE_OVERFLOW);
    TS_ASSERT(pno >= BTP_FIRST_TREE_PAGE && pno < c->page_count);
    size_t got = 0;
    int rc = read_at(c, buf, c->page_bytes, pno * c->page_bytes, &got);
    if (rc != 0) {
        return io_error(c, pno, rc);
    }
    if (got != c->page_bytes) {
        return corrupt(c, pno, "short read (%zu of %" PRIu32 " bytes)", got, c->page_bytes);
    }
    char why[BTC_REASON_BYTES / 2] = "";
    if (btp_verify(buf, c->page_bytes, type, pno, why, sizeof(why)) != 0) {
        enum btp_type found = btp_type(buf);
        bool slotted = found == BTP_TYPE_BRANCH || found == BTP_TYPE_LEAF;
        if (type != BTP_TYPE_OVERFLOW && slotted && found != type &&
            btp_verify(buf, c->page_bytes, BTP_TYPE_ANY, pno, NULL, 0) == 0) {
            return corrupt(c, pno,
                           "a sound %s page at level %" PRIu32 ", where the meta's height %" PRIu32
                           " puts a %s: the tree's height is not the meta's",
                           type_name(found), level, c->height, type_name(type));
        }
        return corrupt(c, pno, "not a valid %s page: %s", type_name(type), why);
    }
    if (btp_checkpoint_id(buf) > c->checkpoint_id) {
        return corrupt(c, pno, "written by checkpoint %" PRIu64 ", newer than the meta's %" PRIu64,
                       btp_checkpoint_id(buf), c->checkpoint_id);
    }
    return 0;
}

/* A value's overflow chain from page first: every page full but the last, exactly
 * value_len bytes in all. */
static int walk_chain(struct btc *c, uint64_t leaf, uint32_t index, uint64_t first,
                      uint32_t value_len)
{
    TS_ASSERT(first != 0);
    TS_ASSERT(value_len <= TS_VALUE_BYTES_MAX);
    uint32_t capacity = btp_overflow_capacity(c->page_bytes);
    uint64_t carried = 0;
    uint64_t from = leaf;
    uint64_t steps = 0;
    for (uint64_t pno = first; pno != 0; pno = btp_link(c->bufs)) {
        TS_ASSERT(steps++ < c->page_count); /* reach() refuses a page twice */
        int rc = reach(c, from, pno);
        if (rc == 0) {
            rc = read_page(c, pno, c->bufs, BTP_TYPE_OVERFLOW, 0);
        }
        if (rc != 0) {
            return rc;
        }
        uint32_t len = btp_count(c->bufs);
        if (len < capacity && btp_link(c->bufs) != 0) {
            return corrupt(c, pno,
                           "overflow page holds %" PRIu32 " of %" PRIu32 " bytes but is"
                           " not the last of its chain",
                           len, capacity);
        }
        carried += len;
        if (carried > value_len) {
            return corrupt(c, pno,
                           "overflow chain of leaf page %" PRIu64 " cell %" PRIu32
                           " carries more than its value length %" PRIu32,
                           leaf, index, value_len);
        }
        c->out->overflow_pages++;
        from = pno;
    }
    if (carried != value_len) {
        return corrupt(c, from,
                       "overflow chain of leaf page %" PRIu64 " cell %" PRIu32 " carries %" PRIu64
                       " bytes, the cell says %" PRIu32,
                       leaf, index, carried, value_len);
    }
    return 0;
}

static struct btc_bound cell_bound(const uint8_t *page, uint32_t page_bytes, uint32_t index,
                                   bool leaf)
{
    struct btp_cell cell =
        leaf ? btp_leaf_get(page, page_bytes, index) : btp_branch_get(page, page_bytes, index);
    return (struct btc_bound){.key = cell.key, .len = cell.key_len, .set = true};
}

/* The page's keys (sorted, as btp_verify proved) lie in [lo, hi). */
static int check_bounds(struct btc *c, uint64_t pno, const uint8_t *page, bool leaf,
                        struct btc_bound lo, struct btc_bound hi)
{
    uint32_t n = btp_count(page);
    TS_ASSERT(!lo.set || lo.key != NULL || lo.len == 0);
    TS_ASSERT(!hi.set || hi.key != NULL || hi.len == 0);
    if (n == 0) {
        return 0;
    }
    struct btc_bound first = cell_bound(page, c->page_bytes, 0, leaf);
    struct btc_bound last = cell_bound(page, c->page_bytes, n - 1, leaf);
    if (lo.set && key_cmp(first.key, first.len, lo.key, lo.len) < 0) {
        return corrupt(c, pno,
                       "keys out of order across pages: the first key sorts below the"
                       " lower bound its parent's separator gives");
    }
    if (hi.set && key_cmp(last.key, last.len, hi.key, hi.len) >= 0) {
        return corrupt(c, pno,
                       "keys out of order across pages: the last key is not below the"
                       " upper bound its parent's separator gives");
    }
    return 0;
}

static int walk_leaf(struct btc *c, uint64_t pno, const uint8_t *page)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    TS_ASSERT(btp_page_no(page) == pno);
    struct btree_check_report *out = c->out;
    out->leaf_pages++;
    out->leaf_used_bytes += btp_used_bytes(page, c->page_bytes);
    uint32_t n = btp_count(page);
    for (uint32_t i = 0; i < n; i++) {
        struct btp_cell cell = btp_leaf_get(page, c->page_bytes, i);
        out->keys++;
        out->key_bytes += cell.key_len;
        out->value_bytes += cell.value_len;
        if (cell.overflow_page != 0) {
            int rc = walk_chain(c, pno, i, cell.overflow_page, cell.value_len);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static int walk(struct btc *c, uint64_t pno, uint32_t level, struct btc_bound lo,
                struct btc_bound hi);

/* Child i of a branch covers [key i - 1, key i), the ends taken from the branch's own
 * bounds. */
static int walk_branch(struct btc *c, uint64_t pno, const uint8_t *page, uint32_t level,
                       struct btc_bound lo, struct btc_bound hi)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(level >= 2 && level <= c->height);
    c->out->branch_pages++;
    c->out->branch_used_bytes += btp_used_bytes(page, c->page_bytes);
    uint32_t n = btp_count(page);
    for (uint32_t i = 0; i <= n; i++) {
        struct btc_bound clo = i == 0 ? lo : cell_bound(page, c->page_bytes, i - 1, false);
        struct btc_bound chi = i == n ? hi : cell_bound(page, c->page_bytes, i, false);
        uint64_t child = btp_branch_child(page, c->page_bytes, i);
        int rc = reach(c, pno, child);
        if (rc == 0) {
            rc = walk(c, child, level - 1, clo, chi);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Page pno (already reached) at level (1: leaf) within bounds [lo, hi). */
static int walk(struct btc *c, uint64_t pno, uint32_t level, struct btc_bound lo,
                struct btc_bound hi)
{
    TS_ASSERT(level >= 1 && level <= c->height);
    TS_ASSERT(c->bufs_bytes >= (size_t)(level + 1) * c->page_bytes);
    uint8_t *page = c->bufs + (size_t)level * c->page_bytes;
    bool leaf = level == 1;
    int rc = read_page(c, pno, page, leaf ? BTP_TYPE_LEAF : BTP_TYPE_BRANCH, level);
    if (rc == 0) {
        rc = check_bounds(c, pno, page, leaf, lo, hi);
    }
    if (rc != 0) {
        return rc;
    }
    return leaf ? walk_leaf(c, pno, page) : walk_branch(c, pno, page, level, lo, hi);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/* The page size, from page 0's meta or else a page 1 naming its own size. 0 when none
 * is found. */
static int find_page_bytes(struct btc *c, uint32_t *page_bytes)
{
    uint8_t head[TS_BTREE_PAGE_BYTES_MIN];
    *page_bytes = 0;
    int rc = read_at(c, head, sizeof(head), 0, NULL);
    if (rc == 0 && btp_meta_peek_page_bytes(head, sizeof(head), page_bytes) == 0) {
        TS_ASSERT(btp_page_bytes_valid(*page_bytes));
        return 0;
    }
    *page_bytes = 0;
    for (uint32_t p = TS_BTREE_PAGE_BYTES_MIN; rc == 0 && p <= TS_BTREE_PAGE_BYTES_MAX; p *= 2) {
        uint32_t found = 0;
        rc = read_at(c, head, sizeof(head), p, NULL);
        if (rc == 0 && btp_meta_peek_page_bytes(head, sizeof(head), &found) == 0 && found == p) {
            *page_bytes = p;
            return 0;
        }
    }
    return rc;
}

/* Chooses the checkpoint. *never: no valid meta and page 0 all zero. */
static int load_meta(struct btc *c, bool *never)
{
    TS_ASSERT(btp_page_bytes_valid(c->page_bytes));
    TS_ASSERT(c->out != NULL);
    size_t bytes = 2 * (size_t)c->page_bytes;
    uint8_t *m = ts_alloc(c->alloc, bytes);
    if (m == NULL) {
        return TS_ENOMEM;
    }
    char why[BTC_REASON_BYTES / 2] = "";
    struct btp_meta meta = {0};
    uint64_t which = 0;
    int rc = read_at(c, m, bytes, 0, NULL);
    if (rc != 0) {
        rc = io_error(c, 0, rc);
    } else {
        rc = btp_meta_choose(m, m + c->page_bytes, c->page_bytes, &meta, &which, why, sizeof(why));
    }
    *never = rc == TS_ECORRUPT && all_zero(m, c->page_bytes);
    if (rc == TS_ECORRUPT && !*never) {
        rc = corrupt(c, 0, "no valid meta page (pages 0 and 1): %s", why);
    } else if (rc == 0) {
        TS_ASSERT(meta.page_bytes == c->page_bytes && which <= 1);
        c->out->meta_page = which;
        c->out->checkpoint_id = c->checkpoint_id = meta.checkpoint_id;
        c->out->root_page = meta.root_page;
        c->out->height = c->height = meta.height;
        c->out->page_count = c->page_count = meta.page_count;
        c->out->user_len = meta.user_len;
    }
    ts_free(c->alloc, m, bytes);
    return *never ? 0 : rc;
}

/* Walks the tree of the chosen meta and derives the free pages. */
static int walk_tree(struct btc *c)
{
    TS_ASSERT(c->page_count >= BTP_FIRST_TREE_PAGE);
    TS_ASSERT((c->out->root_page == 0) == (c->height == 0));
    if (c->height > BTC_HEIGHT_MAX) {
        return corrupt(c, c->out->meta_page, "height %" PRIu32 " exceeds %u", c->height,
                       BTC_HEIGHT_MAX);
    }
    uint64_t bits = c->page_count < c->file_pages ? c->page_count : c->file_pages;
    c->seen_bytes = (size_t)(bits / 8 + 1);
    c->bufs_bytes = (size_t)(c->height + 1) * c->page_bytes;
    c->seen = ts_alloc(c->alloc, c->seen_bytes);
    c->bufs = ts_alloc(c->alloc, c->bufs_bytes);
    if (c->seen == NULL || c->bufs == NULL) {
        return TS_ENOMEM;
    }
    memset(c->seen, 0, c->seen_bytes);
    struct btc_bound none = {0};
    int rc = 0;
    if (c->out->root_page != 0) {
        rc = reach(c, c->out->meta_page, c->out->root_page);
        if (rc == 0) {
            rc = walk(c, c->out->root_page, c->height, none, none);
        }
    }
    struct btree_check_report *out = c->out;
    out->meta_pages = BTP_FIRST_TREE_PAGE;
    uint64_t reached = out->meta_pages + out->branch_pages + out->leaf_pages + out->overflow_pages;
    TS_ASSERT(reached <= c->page_count); /* each reached page is unique and below it */
    out->free_pages = c->page_count - reached;
    return rc;
}

static int check_file(struct btc *c)
{
    TS_ASSERT(c->out != NULL);
    TS_ASSERT(c->file != UINT32_MAX);
    int rc = disk_size(c->disk, c->file, &c->file_bytes);
    if (rc != 0) {
        snprintf(c->errmsg, c->errmsg_bytes, "btree check: %s: size: %s", c->path, ts_strerror(rc));
        return rc;
    }
    c->out->file_bytes = c->file_bytes;
    uint8_t head[TS_BTREE_PAGE_BYTES_MIN];
    if (c->file_bytes == 0) {
        c->out->never_checkpointed = true;
        return 0;
    }
    rc = find_page_bytes(c, &c->page_bytes);
    if (rc == 0 && c->page_bytes == 0) {
        rc = read_at(c, head, sizeof(head), 0, NULL);
        if (rc == 0 && all_zero(head, sizeof(head))) {
            c->out->never_checkpointed = true;
            return 0;
        }
        return rc != 0 ? io_error(c, 0, rc) : corrupt(c, 0, "no meta page names a valid page size");
    }
    if (rc != 0) {
        return io_error(c, 0, rc);
    }
    c->out->page_bytes = c->page_bytes;
    c->file_pages = c->file_bytes / c->page_bytes;
    bool never = false;
    rc = load_meta(c, &never);
    if (rc != 0 || never) {
        c->out->never_checkpointed = never;
        return rc;
    }
    return walk_tree(c);
}

int btree_check(const char *path, struct disk *disk, const struct ts_allocator *alloc,
                struct btree_check_report *out, char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(path != NULL && disk != NULL);
    TS_ASSERT(alloc != NULL && out != NULL);
    char scratch[8];
    if (errmsg == NULL || errmsg_bytes == 0) {
        errmsg = scratch;
        errmsg_bytes = sizeof(scratch);
    }
    errmsg[0] = 0;
    *out = (struct btree_check_report){0};
    struct btc c = {.path = path,
                    .disk = disk,
                    .alloc = alloc,
                    .file = UINT32_MAX,
                    .out = out,
                    .errmsg = errmsg,
                    .errmsg_bytes = errmsg_bytes};
    int rc = disk_open(disk, path, DISK_OPEN_READONLY, &c.file);
    if (rc != 0) {
        snprintf(errmsg, errmsg_bytes, "btree check: %s: cannot open: %s", path, ts_strerror(rc));
        return rc;
    }
    rc = check_file(&c);
    if (rc == TS_ENOMEM && errmsg[0] == 0) {
        snprintf(errmsg, errmsg_bytes, "btree check: %s: %s", path, ts_strerror(rc));
    }
    ts_free(alloc, c.seen, c.seen_bytes);
    ts_free(alloc, c.bufs, c.bufs_bytes);
    disk_close(disk, c.file);
    TS_ASSERT(rc != 0 || errmsg[0] == 0);
    return rc;
}

double btree_check_fill(const struct btree_check_report *r)
{
    TS_ASSERT(r != NULL);
    uint64_t pages = r->branch_pages + r->leaf_pages;
    if (pages == 0 || r->page_bytes == 0) {
        return 0.0;
    }
    double fill = (double)(r->branch_used_bytes + r->leaf_used_bytes) /
                  ((double)pages * (double)r->page_bytes);
    TS_ASSERT(fill >= 0.0 && fill <= 1.0);
    return fill;
}
