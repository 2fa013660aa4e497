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

/* What accounts for a page of [2, page_count). The tree is walked first, then the
 * freelist chain, so a page is claimed by the tree before the free list can claim it. */
enum btc_state {
    BTC_NONE = 0,   /* not accounted for (yet): leaked if it stays so */
    BTC_TREE = 1,   /* reachable from the root: branch, leaf or overflow */
    BTC_CHAIN = 2,  /* a page of the freelist chain */
    BTC_LISTED = 3, /* listed as free by a page of the chain */
};

/* A separator bounding a subtree, as a view into an ancestor's page buffer. */
struct btc_bound {
    const uint8_t *key;
    uint32_t len;
    bool set; /* false: unbounded on this side */
};

/* What a parent says of a subtree: its key range [lo, hi) and its logical size (key +
 * value bytes), recorded in the parent's cell, derived for the leftmost child, or the
 * meta's tree bytes for the root. from: the page that says it (a meta page for the root). */
struct btc_given {
    struct btc_bound lo;
    struct btc_bound hi;
    uint64_t bytes;
    uint64_t from;
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
    uint64_t freelist_head; /* the meta's */
    uint64_t tree_bytes;    /* the meta's */
    uint8_t *state;         /* two bits per page below page_count: an enum btc_state */
    size_t state_bytes;
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
    case BTP_TYPE_FREELIST:
        return "freelist";
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

static enum btc_state state_get(const struct btc *c, uint64_t pno)
{
    TS_ASSERT(pno < c->page_count);
    TS_DASSERT(pno / 4 < c->state_bytes);
    return (enum btc_state)((c->state[pno / 4] >> (2 * (pno % 4))) & 3u);
}

static void state_set(struct btc *c, uint64_t pno, enum btc_state s)
{
    TS_ASSERT(state_get(c, pno) == BTC_NONE);
    TS_ASSERT(s != BTC_NONE);
    c->state[pno / 4] |= (uint8_t)((unsigned)s << (2 * (pno % 4)));
}

/* How a reference of this kind from page `from` names its page, for messages. */
static void describe_ref(char *buf, size_t len, enum btc_state kind, uint64_t from)
{
    TS_ASSERT(kind != BTC_NONE);
    TS_ASSERT(len > 0);
    if (kind == BTC_TREE) {
        snprintf(buf, len, "page %" PRIu64 " points to it", from);
    } else if (kind == BTC_CHAIN && from < BTP_FIRST_TREE_PAGE) {
        snprintf(buf, len, "meta page %" PRIu64 " names it as the freelist head", from);
    } else if (kind == BTC_CHAIN) {
        snprintf(buf, len, "freelist page %" PRIu64 " links to it", from);
    } else {
        snprintf(buf, len, "freelist page %" PRIu64 " lists it as free", from);
    }
}

/* A page accounted for twice: reached again by a reference of this kind from `from`
 * while already in state `was`. */
static int reached_twice(struct btc *c, uint64_t from, uint64_t pno, enum btc_state kind,
                         enum btc_state was)
{
    TS_ASSERT(was != BTC_NONE);
    TS_ASSERT(kind == BTC_TREE ? was == BTC_TREE : true); /* the tree is walked first */
    static const char *const already[] = {
        [BTC_TREE] = "the tree already reaches it",
        [BTC_CHAIN] = "it is already a page of the freelist chain",
        [BTC_LISTED] = "a freelist page already lists it as free",
    };
    const char *hint = "";
    if (kind == BTC_TREE) {
        hint = " (shared by two parents, or a cycle)";
    } else if (kind == BTC_CHAIN && was == BTC_CHAIN) {
        hint = " (the freelist chain loops)";
    }
    char ref[96];
    describe_ref(ref, sizeof(ref), kind, from);
    return corrupt(c, pno, "reached twice: %s, and %s%s", ref, already[was], hint);
}

/* Follows a reference of this kind (the tree's pointers, the freelist chain's links, a
 * freelist entry) from page `from` to pno: a tree page below the page count, inside the
 * file unless it is only listed (a free page need not have been written), and not
 * accounted for before. Marks it with kind. */
static int reach(struct btc *c, uint64_t from, uint64_t pno, enum btc_state kind)
{
    TS_ASSERT(c->state != NULL);
    TS_ASSERT(kind != BTC_NONE);
    TS_DASSERT(c->state_bytes * 4 >= c->page_count);
    const char *verb = kind == BTC_LISTED ? "lists" : "points to";
    if (pno < BTP_FIRST_TREE_PAGE) {
        return corrupt(c, from, "%s page %" PRIu64 ", a meta page", verb, pno);
    }
    if (pno >= c->page_count) {
        return corrupt(c, from, "%s page %" PRIu64 ", not below the page count %" PRIu64, verb, pno,
                       c->page_count);
    }
    if (kind != BTC_LISTED && pno >= c->file_pages) {
        return corrupt(c, pno,
                       "reached from page %" PRIu64 " but lies past the end of the file"
                       " (%" PRIu64 " bytes)",
                       from, c->file_bytes);
    }
    enum btc_state was = state_get(c, pno);
    if (was != BTC_NONE) {
        return reached_twice(c, from, pno, kind, was);
    }
    state_set(c, pno, kind);
    return 0;
}

/* Reads page pno (already reached) into buf and verifies it as the type its position
 * demands (level: 1 leaf, above branch, 0 overflow or freelist), written by a checkpoint
 * no newer than the meta's. A sound page of the other slotted type means the height is
 * wrong. */
static int read_page(struct btc *c, uint64_t pno, uint8_t *buf, enum btp_type type, uint32_t level)
{
    TS_ASSERT(type == BTP_TYPE_BRANCH || type == BTP_TYPE_LEAF || type == BTP_TYPE_OVERFLOW ||
              type == BTP_TYPE_FREELIST);
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
        bool tree = type == BTP_TYPE_BRANCH || type == BTP_TYPE_LEAF;
        if (tree && slotted && found != type &&
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
        int rc = reach(c, from, pno, BTC_TREE);
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

/* Counts the leaf's keys and walks its overflow chains; *bytes gets its logical size. */
static int walk_leaf(struct btc *c, uint64_t pno, const uint8_t *page, uint64_t *bytes)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_LEAF);
    TS_ASSERT(btp_page_no(page) == pno);
    struct btree_check_report *out = c->out;
    out->leaf_pages++;
    out->leaf_used_bytes += btp_used_bytes(page, c->page_bytes);
    uint32_t n = btp_count(page);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct btp_cell cell = btp_leaf_get(page, c->page_bytes, i);
        out->keys++;
        out->key_bytes += cell.key_len;
        out->value_bytes += cell.value_len;
        sum += (uint64_t)cell.key_len + cell.value_len;
        if (cell.overflow_page != 0) {
            int rc = walk_chain(c, pno, i, cell.overflow_page, cell.value_len);
            if (rc != 0) {
                return rc;
            }
        }
    }
    TS_ASSERT(sum == btp_leaf_bytes(page, c->page_bytes));
    *bytes = sum;
    return 0;
}

static int walk(struct btc *c, uint64_t pno, uint32_t level, const struct btc_given *g,
                uint64_t *bytes);

/* The size a branch's parent gives it must cover the sizes its cells record, so that
 * the leftmost child's (the difference) is defined. */
static int check_given_bytes(struct btc *c, uint64_t pno, const uint8_t *page,
                             const struct btc_given *g)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(g->from != pno);
    uint64_t cells = btp_branch_cells_bytes(page, c->page_bytes);
    if (g->bytes >= cells) {
        return 0;
    }
    char who[64];
    if (g->from < BTP_FIRST_TREE_PAGE) {
        snprintf(who, sizeof(who), "meta page %" PRIu64 " records tree bytes", g->from);
    } else {
        snprintf(who, sizeof(who), "page %" PRIu64 " gives it a size of", g->from);
    }
    return corrupt(c, pno,
                   "subtree size: %s %" PRIu64 ", below the %" PRIu64
                   " bytes its own cells record for their children",
                   who, g->bytes, cells);
}

/* Child i of a branch covers [key i - 1, key i), the ends taken from the branch's own
 * bounds, and holds the size key cell i - 1 records; the leftmost child's size is the
 * branch's less its cells'. Each cell's figure is checked here against the child's
 * actual size; the leftmost's then holds exactly when the branch's own total is the
 * figure its parent gave it, which the parent checks (the meta's tree bytes: the walk's
 * caller), so a wrong figure is reported where it is stored. */
static int walk_branch(struct btc *c, uint64_t pno, const uint8_t *page, uint32_t level,
                       const struct btc_given *g, uint64_t *bytes)
{
    TS_ASSERT(btp_type(page) == BTP_TYPE_BRANCH);
    TS_ASSERT(level >= 2 && level <= c->height);
    c->out->branch_pages++;
    c->out->branch_used_bytes += btp_used_bytes(page, c->page_bytes);
    int rc = check_given_bytes(c, pno, page, g);
    if (rc != 0) {
        return rc;
    }
    uint64_t leftmost = g->bytes - btp_branch_cells_bytes(page, c->page_bytes);
    uint32_t n = btp_count(page);
    for (uint32_t i = 0; i <= n; i++) {
        struct btc_given cg = {
            .lo = i == 0 ? g->lo : cell_bound(page, c->page_bytes, i - 1, false),
            .hi = i == n ? g->hi : cell_bound(page, c->page_bytes, i, false),
            .bytes = i == 0 ? leftmost : btp_branch_get(page, c->page_bytes, i - 1).bytes,
            .from = pno,
        };
        uint64_t child = btp_branch_child(page, c->page_bytes, i);
        uint64_t got = 0;
        rc = reach(c, pno, child, BTC_TREE);
        if (rc == 0) {
            rc = walk(c, child, level - 1, &cg, &got);
        }
        if (rc == 0 && i > 0 && got != cg.bytes) {
            rc = corrupt(c, pno,
                         "subtree size: child page %" PRIu64 " (index %" PRIu32 ") holds %" PRIu64
                         " bytes of keys and values, its cell records %" PRIu64,
                         child, i, got, cg.bytes);
        }
        if (rc != 0) {
            return rc;
        }
        *bytes += got;
    }
    return 0;
}

/* Page pno (already reached) at level (1: leaf) within what its parent gives it; *bytes
 * gets the subtree's actual logical size. */
static int walk(struct btc *c, uint64_t pno, uint32_t level, const struct btc_given *g,
                uint64_t *bytes)
{
    TS_ASSERT(level >= 1 && level <= c->height);
    TS_ASSERT(c->bufs_bytes >= (size_t)(level + 1) * c->page_bytes);
    uint8_t *page = c->bufs + (size_t)level * c->page_bytes;
    bool leaf = level == 1;
    *bytes = 0;
    int rc = read_page(c, pno, page, leaf ? BTP_TYPE_LEAF : BTP_TYPE_BRANCH, level);
    if (rc == 0) {
        rc = check_bounds(c, pno, page, leaf, g->lo, g->hi);
    }
    if (rc != 0) {
        return rc;
    }
    return leaf ? walk_leaf(c, pno, page, bytes) : walk_branch(c, pno, page, level, g, bytes);
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
        c->out->tree_bytes = c->tree_bytes = meta.tree_bytes;
        c->freelist_head = meta.freelist_head;
        c->out->user_len = meta.user_len;
    }
    ts_free(c->alloc, m, bytes);
    return *never ? 0 : rc;
}

/* The state map covers [0, page_count). Every page past the end of the file must be a
 * listed free page, and the chain (inside the file) lists at most its capacity per page:
 * a page count beyond that cannot be sound, and is refused before allocating for it. */
static int alloc_walk(struct btc *c)
{
    TS_ASSERT(c->page_count >= BTP_FIRST_TREE_PAGE);
    TS_ASSERT(c->state == NULL && c->bufs == NULL);
    uint64_t beyond = c->page_count > c->file_pages ? c->page_count - c->file_pages : 0;
    if (beyond / btp_freelist_capacity(c->page_bytes) > c->file_pages) {
        return corrupt(c, c->out->meta_page,
                       "page count %" PRIu64 " lies past the file's %" PRIu64
                       " pages by more than its freelist pages could list",
                       c->page_count, c->file_pages);
    }
    c->state_bytes = (size_t)(c->page_count / 4 + 1);
    c->bufs_bytes = (size_t)(c->height + 1) * c->page_bytes;
    c->state = ts_alloc(c->alloc, c->state_bytes);
    c->bufs = ts_alloc(c->alloc, c->bufs_bytes);
    if (c->state == NULL || c->bufs == NULL) {
        return TS_ENOMEM;
    }
    memset(c->state, 0, c->state_bytes);
    return 0;
}

/* Walks the tree of the chosen meta: its logical size must be the meta's tree bytes. */
static int walk_tree(struct btc *c)
{
    TS_ASSERT(c->state != NULL);
    TS_ASSERT((c->out->root_page == 0) == (c->height == 0));
    uint64_t meta = c->out->meta_page;
    uint64_t root = c->out->root_page;
    if (root == 0) {
        return c->tree_bytes == 0 ? 0
                                  : corrupt(c, meta,
                                            "the tree is empty (root 0) but the meta records"
                                            " tree bytes %" PRIu64,
                                            c->tree_bytes);
    }
    struct btc_given g = {.bytes = c->tree_bytes, .from = meta};
    uint64_t bytes = 0;
    int rc = reach(c, meta, root, BTC_TREE);
    if (rc == 0) {
        rc = walk(c, root, c->height, &g, &bytes);
    }
    if (rc == 0 && bytes != c->tree_bytes) {
        rc = corrupt(c, meta,
                     "the tree (root page %" PRIu64 ") holds %" PRIu64
                     " bytes of keys and values, the meta records tree bytes %" PRIu64,
                     root, bytes, c->tree_bytes);
    }
    return rc;
}

/* Follows the freelist chain from the meta's head: each page a sound freelist page
 * reached once, each entry a page listed once, none of them reachable from the tree. */
static int walk_freelist(struct btc *c)
{
    TS_ASSERT(c->state != NULL);
    TS_ASSERT(c->bufs_bytes >= c->page_bytes);
    uint8_t *page = c->bufs; /* page 0: the overflow chains' buffer, free by now */
    uint64_t from = c->out->meta_page;
    uint64_t steps = 0;
    for (uint64_t pno = c->freelist_head; pno != 0; pno = btp_link(page)) {
        TS_ASSERT(steps++ < c->page_count); /* reach() refuses a page twice */
        int rc = reach(c, from, pno, BTC_CHAIN);
        if (rc == 0) {
            rc = read_page(c, pno, page, BTP_TYPE_FREELIST, 0);
        }
        uint32_t n = rc == 0 ? btp_count(page) : 0;
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            rc = reach(c, pno, btp_freelist_get(page, c->page_bytes, i), BTC_LISTED);
        }
        if (rc != 0) {
            return rc;
        }
        c->out->freelist_pages++;
        c->out->free_pages += n;
        from = pno;
    }
    return 0;
}

/* Every page of [2, page_count) is in the tree, in the chain or listed once. */
static int check_accounted(struct btc *c)
{
    struct btree_check_report *out = c->out;
    uint64_t leaked = 0;
    uint64_t first = 0;
    for (uint64_t pno = BTP_FIRST_TREE_PAGE; pno < c->page_count; pno++) {
        if (state_get(c, pno) == BTC_NONE && leaked++ == 0) {
            first = pno;
        }
    }
    uint64_t accounted = out->meta_pages + out->branch_pages + out->leaf_pages +
                         out->overflow_pages + out->freelist_pages + out->free_pages;
    TS_ASSERT(accounted + leaked == c->page_count); /* each state set once, below it */
    if (leaked > 0) {
        return corrupt(c, first,
                       "leaked: neither reachable from the root nor free (the first of %" PRIu64
                       " such pages below the page count %" PRIu64 ")",
                       leaked, c->page_count);
    }
    return 0;
}

/* The tree, then the free list, then the pages neither accounts for. */
static int walk_file(struct btc *c)
{
    TS_ASSERT(c->page_count >= BTP_FIRST_TREE_PAGE);
    TS_ASSERT(c->out->meta_page < BTP_FIRST_TREE_PAGE);
    if (c->height > BTC_HEIGHT_MAX) {
        return corrupt(c, c->out->meta_page, "height %" PRIu32 " exceeds %u", c->height,
                       BTC_HEIGHT_MAX);
    }
    c->out->meta_pages = BTP_FIRST_TREE_PAGE;
    int rc = alloc_walk(c);
    if (rc == 0) {
        rc = walk_tree(c);
    }
    if (rc == 0) {
        rc = walk_freelist(c);
    }
    return rc == 0 ? check_accounted(c) : rc;
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
    return walk_file(c);
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
    ts_free(alloc, c.state, c.state_bytes);
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
