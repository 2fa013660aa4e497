/* storage/btree/btree_check: trees built with btree.h on the simulated disk (512-byte
 * pages, height >= 3, overflow chains, deletes and checkpoints after them so that the
 * freelist chain is not empty) check sound with the counts that were put; then damaged
 * copies: bit flips in a leaf, a branch and an overflow page, and pages rewritten with
 * page.h and re-sealed (valid CRC) so that a page sits under two parents, keys are out
 * of order across pages, an overflow chain is short, a pointer passes the page count,
 * the meta's height or tree bytes are wrong, a branch cell records a wrong subtree size,
 * the free list names a live page or a page twice, loses a page (leaked) or loops. */
#include "core/util/err.h"
#include "storage/btree/btree.h"
#include "storage/btree/btree_check.h"
#include "storage/btree/page.h"
#include "storage/disk/disk_sim.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P 512u
#define BIG_VALUE_BYTES 3000u

struct env {
    struct disk_sim *sim;
    struct disk *disk;
    uint64_t keys;
    uint64_t key_bytes;
    uint64_t value_bytes;
    uint64_t overflow_pages;
    struct btree_stats stats; /* after a clean reopen */
    struct btree_check_report r;
    char err[512];
};

static struct env e;

static void env_init(void)
{
    memset(&e, 0, sizeof(e));
    cr_assert_eq(disk_sim_create(7, ts_allocator_default(), &e.sim), 0);
    e.disk = disk_sim_disk(e.sim);
    disk_sim_set_metadata_durable(e.sim, true);
}

static void env_fini(void)
{
    disk_destroy(e.disk);
}

static struct btree *tree_open(void)
{
    struct btree_config cfg = {.path = "tree", .page_bytes = P};
    struct btree *t = NULL;
    char err[256] = "";
    int rc = btree_open(&cfg, e.disk, ts_allocator_default(), &t, err, sizeof(err));
    cr_assert_eq(rc, 0, "open: %s %s", ts_errname(rc), err);
    return t;
}

static uint32_t value_len_of(int i)
{
    return i % 37 == 0 ? BIG_VALUE_BYTES + (uint32_t)i : 10u + (uint32_t)(i % 40);
}

static void make_key(char *key, int i)
{
    snprintf(key, 16, "key%07d", (i * 7919) % 1000003);
}

/* Puts n keys (every 37th with a value in overflow pages) over two checkpoints, then
 * deletes and rewrites some in a third, so free pages exist. */
static void build(int n)
{
    static uint8_t value[BIG_VALUE_BYTES + 4096];
    struct btree *t = tree_open();
    char key[16];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n; i++) {
            make_key(key, i);
            memset(value, 'a' + (i + round) % 26, value_len_of(i));
            if (round == 2 && i % 5 == 0) {
                cr_assert_eq(btree_delete(t, key, 10), 0);
            } else if (round < 2 || i % 3 == 0) {
                cr_assert_eq(btree_put(t, key, 10, value, value_len_of(i)), 0);
            }
        }
        cr_assert_eq(btree_checkpoint(t, "blob", 4), 0);
    }
    btree_close(t);
    for (int i = 0; i < n; i++) {
        if (i % 5 != 0) {
            e.keys++;
            e.key_bytes += 10;
            e.value_bytes += value_len_of(i);
            if (value_len_of(i) >= BIG_VALUE_BYTES) {
                e.overflow_pages += (value_len_of(i) + P - 41) / (P - 40);
            }
        }
    }
    t = tree_open();
    btree_get_stats(t, &e.stats);
    btree_close(t);
}

static int check(void)
{
    return btree_check("tree", e.disk, ts_allocator_default(), &e.r, e.err, sizeof(e.err));
}

static void expect_sound(void)
{
    int rc = check();
    cr_assert_eq(rc, 0, "check: %s %s", ts_errname(rc), e.err);
    cr_assert_eq(e.err[0], 0);
}

/* The check fails with TS_ECORRUPT naming the file, page pno and the reason. */
static void expect_corrupt(uint64_t pno, const char *reason)
{
    int rc = check();
    cr_assert_eq(rc, TS_ECORRUPT, "check: %s %s", ts_errname(rc), e.err);
    char want[64];
    snprintf(want, sizeof(want), "tree: page %" PRIu64 ":", pno);
    cr_assert(strstr(e.err, want) != NULL, "'%s' not in '%s'", want, e.err);
    cr_assert(strstr(e.err, reason) != NULL, "'%s' not in '%s'", reason, e.err);
}

static void page_read(uint64_t pno, uint8_t *buf)
{
    uint32_t file;
    cr_assert_eq(disk_open(e.disk, "tree", 0, &file), 0);
    cr_assert_eq(disk_pread(e.disk, file, buf, P, pno * P), (int64_t)P);
    disk_close(e.disk, file);
}

static void write_done(struct disk_req *req)
{
    cr_assert_eq(req->res, (int32_t)P);
}

/* Seals buf and writes it as page pno. */
static void page_write(uint64_t pno, uint8_t *buf, bool seal)
{
    uint32_t file;
    if (seal) {
        btp_seal(buf, P);
    }
    cr_assert_eq(disk_open(e.disk, "tree", 0, &file), 0);
    struct disk_req req = {.op = DISK_OP_WRITE,
                           .file = file,
                           .buf = buf,
                           .len = P,
                           .offset = pno * P,
                           .cb = write_done};
    disk_submit(e.disk, &req);
    cr_assert_geq(disk_run(e.disk, true), 1);
    disk_close(e.disk, file);
}

/* The leaf holding key i (from the report of a sound check); *parent its branch. */
static uint64_t leaf_of(int i, uint64_t *parent)
{
    char key[16];
    uint8_t page[P];
    make_key(key, i);
    uint64_t pno = e.r.root_page;
    for (uint32_t level = e.r.height; level > 1; level--) {
        page_read(pno, page);
        cr_assert_eq(btp_type(page), BTP_TYPE_BRANCH);
        *parent = pno;
        pno = btp_branch_child(page, P, btp_branch_search(page, P, key, 10));
    }
    return pno;
}

/* The overflow chain of key i: its first page, and its last in *last. */
static uint64_t chain_of(int i, uint64_t *last)
{
    char key[16];
    uint8_t page[P];
    uint64_t parent = 0;
    make_key(key, i);
    page_read(leaf_of(i, &parent), page);
    uint32_t index;
    bool found;
    btp_leaf_search(page, P, key, 10, &index, &found);
    cr_assert(found);
    uint64_t first = btp_leaf_get(page, P, index).overflow_page;
    cr_assert_neq(first, 0);
    *last = first;
    for (page_read(first, page); btp_link(page) != 0; page_read(*last, page)) {
        *last = btp_link(page);
    }
    return first;
}

/* The newer valid meta (the one btree_open and the check choose); *which its page. */
static struct btp_meta meta_read(uint64_t *which)
{
    static uint8_t metas[2 * P]; /* the meta's user view points here */
    page_read(0, metas);
    page_read(1, metas + P);
    struct btp_meta meta;
    uint64_t w = 0;
    cr_assert_eq(btp_meta_choose(metas, metas + P, P, &meta, &w, NULL, 0), 0);
    if (which != NULL) {
        *which = w;
    }
    return meta;
}

/* Re-encodes (and so re-seals) meta over its page. */
static void meta_write(const struct btp_meta *meta)
{
    uint8_t page[P];
    cr_assert_eq(btp_meta_encode(page, P, meta), 0);
    page_write(meta->checkpoint_id % 2, page, false);
}

/* The pages of the last checkpoint's freelist chain, head first; returns how many. */
static uint32_t freelist_chain(uint64_t *pages, uint32_t max)
{
    uint8_t page[P];
    uint32_t n = 0;
    for (uint64_t pno = meta_read(NULL).freelist_head; pno != 0; pno = btp_link(page)) {
        cr_assert_lt(n, max);
        pages[n++] = pno;
        page_read(pno, page);
        cr_assert_eq(btp_type(page), BTP_TYPE_FREELIST);
    }
    return n;
}

/* Rewrites freelist page pno (same header, re-sealed) with entry index replaced by
 * entry, or removed when entry is 0; returns the entry it held. */
static uint64_t freelist_edit(uint64_t pno, uint32_t index, uint64_t entry)
{
    uint8_t old[P];
    uint8_t page[P];
    page_read(pno, old);
    uint32_t n = btp_count(old);
    cr_assert_lt(index, n);
    btp_init(page, P, BTP_TYPE_FREELIST, pno, btp_checkpoint_id(old));
    btp_set_link(page, btp_link(old));
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = i == index ? entry : btp_freelist_get(old, P, i);
        if (v != 0) {
            cr_assert_eq(btp_freelist_push(page, P, v), 0);
        }
    }
    page_write(pno, page, true);
    return btp_freelist_get(old, P, index);
}

TestSuite(btree_check, .init = env_init, .fini = env_fini);

Test(btree_check, sound_tree_counts)
{
    build(1200);
    expect_sound();
    cr_assert_not(e.r.never_checkpointed);
    cr_assert_eq(e.r.page_bytes, P);
    cr_assert_geq(e.r.height, 3);
    cr_assert_eq(e.r.height, e.stats.height);
    cr_assert_eq(e.r.checkpoint_id, 3);
    cr_assert_eq(e.r.meta_page, 1);
    cr_assert_eq(e.r.page_count, e.stats.page_count);
    cr_assert_eq(e.r.keys, e.keys);
    cr_assert_eq(e.r.key_bytes, e.key_bytes);
    cr_assert_eq(e.r.value_bytes, e.value_bytes);
    cr_assert_eq(e.r.user_len, 4);
    uint64_t reached = e.r.meta_pages + e.r.branch_pages + e.r.leaf_pages + e.r.overflow_pages;
    cr_assert_eq(e.r.freelist_pages + e.r.free_pages, e.r.page_count - reached);
    cr_assert_eq(e.r.free_pages, e.stats.free_pages, "check %" PRIu64 " tree %" PRIu64,
                 e.r.free_pages, e.stats.free_pages);
    cr_assert_eq(e.r.freelist_pages, e.stats.freelist_pages, "check %" PRIu64 " tree %" PRIu64,
                 e.r.freelist_pages, e.stats.freelist_pages);
    cr_assert_gt(e.r.free_pages, 0);
    cr_assert_geq(e.r.freelist_pages, 2); /* the loop test needs two */
    cr_assert_eq(e.r.tree_bytes, e.key_bytes + e.value_bytes);
    cr_assert_eq(e.r.tree_bytes, e.stats.tree_bytes);
    cr_assert_eq(e.r.overflow_pages, e.overflow_pages);
    cr_assert_gt(e.r.overflow_pages, 0);
    double fill = btree_check_fill(&e.r);
    cr_assert(fill > 0.3 && fill <= 1.0, "fill %f", fill);
}

Test(btree_check, never_checkpointed_and_empty)
{
    btree_close(tree_open()); /* created, size 0 */
    expect_sound();
    cr_assert(e.r.never_checkpointed);
    uint32_t file;
    cr_assert_eq(disk_open(e.disk, "tree", 0, &file), 0);
    cr_assert_eq(disk_allocate(e.disk, file, 8192), 0); /* zeroes, no meta */
    disk_close(e.disk, file);
    expect_sound();
    cr_assert(e.r.never_checkpointed);
    cr_assert_eq(e.r.file_bytes, 8192);

    struct btree *t = tree_open();
    cr_assert_eq(btree_checkpoint(t, NULL, 0), 0);
    btree_close(t);
    expect_sound();
    cr_assert_not(e.r.never_checkpointed);
    cr_assert_eq(e.r.height, 0);
    cr_assert_eq(e.r.keys, 0);
    cr_assert_eq(e.r.tree_bytes, 0);
    cr_assert_eq(e.r.freelist_pages + e.r.free_pages, e.r.page_count - 2);

    /* An empty tree holds no bytes. */
    struct btp_meta meta = meta_read(NULL);
    meta.tree_bytes = 1;
    meta_write(&meta);
    expect_corrupt(meta.checkpoint_id % 2, "the tree is empty (root 0) but the meta records tree"
                                           " bytes 1");
}

Test(btree_check, missing_file)
{
    int rc = check();
    cr_assert_eq(rc, -ENOENT, "%s", ts_errname(rc));
    cr_assert(strstr(e.err, "tree") != NULL);
}

Test(btree_check, garbage_page0_is_corrupt)
{
    static uint8_t junk[P];
    memset(junk, 0x5a, sizeof(junk));
    btree_close(tree_open());
    page_write(0, junk, false);
    expect_corrupt(0, "page size");
}

Test(btree_check, flip_leaf)
{
    build(1200);
    expect_sound();
    uint64_t parent = 0;
    uint64_t leaf = leaf_of(500, &parent);
    cr_assert_eq(disk_sim_flip_bit(e.sim, "tree", leaf * P + 300, 2), 0);
    expect_corrupt(leaf, "not a valid leaf page");
}

Test(btree_check, flip_branch)
{
    build(1200);
    expect_sound();
    uint64_t parent = 0;
    leaf_of(700, &parent);
    cr_assert_eq(disk_sim_flip_bit(e.sim, "tree", parent * P + 45, 0), 0);
    expect_corrupt(parent, "not a valid branch page");
}

Test(btree_check, flip_overflow)
{
    build(1200);
    expect_sound();
    uint64_t last = 0;
    uint64_t first = chain_of(37 * 3, &last);
    cr_assert_neq(first, last);
    cr_assert_eq(disk_sim_flip_bit(e.sim, "tree", last * P + 100, 7), 0);
    expect_corrupt(last, "not a valid overflow page");
}

Test(btree_check, page_under_two_parents)
{
    build(1200);
    expect_sound();
    uint8_t root[P];
    page_read(e.r.root_page, root);
    uint64_t child0 = btp_branch_child(root, P, 0);
    btp_branch_set_child(root, P, 1, child0);
    page_write(e.r.root_page, root, true);
    expect_corrupt(child0, "reached twice");
}

Test(btree_check, keys_out_of_order_across_pages)
{
    build(1200);
    expect_sound();
    uint8_t root[P];
    page_read(e.r.root_page, root);
    uint64_t child0 = btp_branch_child(root, P, 0);
    uint64_t child1 = btp_branch_child(root, P, 1);
    btp_branch_set_child(root, P, 0, child1);
    btp_branch_set_child(root, P, 1, child0);
    page_write(e.r.root_page, root, true);
    expect_corrupt(child1, "out of order");
}

Test(btree_check, overflow_chain_too_short)
{
    build(1200);
    expect_sound();
    uint64_t last = 0;
    chain_of(37 * 7, &last);
    uint8_t page[P];
    page_read(last, page);
    uint32_t len = 0;
    const uint8_t *data = btp_overflow_get(page, P, &len);
    cr_assert_gt(len, 1);
    uint8_t copy[P];
    memcpy(copy, data, len);
    uint64_t ckpt = btp_checkpoint_id(page);
    btp_init(page, P, BTP_TYPE_OVERFLOW, last, ckpt);
    btp_overflow_put(page, P, copy, len - 1, 0);
    page_write(last, page, true);
    expect_corrupt(last, "the cell says");
}

Test(btree_check, pointer_past_page_count)
{
    build(1200);
    expect_sound();
    uint8_t root[P];
    page_read(e.r.root_page, root);
    btp_branch_set_child(root, P, 2, e.r.page_count + 3);
    page_write(e.r.root_page, root, true);
    expect_corrupt(e.r.root_page, "not below the page count");
}

Test(btree_check, meta_height_wrong)
{
    build(1200);
    expect_sound();
    uint8_t metas[2 * P];
    page_read(0, metas);
    page_read(1, metas + P);
    struct btp_meta meta;
    uint64_t which;
    cr_assert_eq(btp_meta_choose(metas, metas + P, P, &meta, &which, NULL, 0), 0);
    meta.height++;
    uint8_t page[P];
    cr_assert_eq(btp_meta_encode(page, P, &meta), 0);
    page_write(which, page, false);
    /* Levels down to the old level 2 are still branches; the leftmost leaf is the first
     * page found where the new height puts a branch. */
    uint64_t pno = e.r.root_page;
    for (uint32_t level = e.r.height; level > 1; level--) {
        page_read(pno, page);
        pno = btp_branch_child(page, P, 0);
    }
    expect_corrupt(pno, "height is not the meta's");
}

Test(btree_check, allocation_failure_frees_everything)
{
    build(300);
    expect_sound();
    for (long n = 0; n < 4; n++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), n);
        int rc = btree_check("tree", e.disk, &fa.base, &e.r, e.err, sizeof(e.err));
        cr_assert(rc == 0 || rc == TS_ENOMEM, "fail after %ld: %s", n, ts_errname(rc));
        cr_assert(rc == 0 || strstr(e.err, "tree") != NULL, "%s", e.err);
        cr_assert_eq(fa.live_bytes, 0, "fail after %ld: %ld bytes leaked", n, fa.live_bytes);
    }
}

/* A branch cell whose recorded subtree size is off by one (re-sealed, so only the sizes
 * tell): reported at that branch, naming the child and both figures. The branch's
 * leftmost child, whose size is derived from the cells, is not blamed. */
Test(btree_check, branch_cell_size_wrong)
{
    build(1200);
    expect_sound();
    uint64_t parent = 0;
    leaf_of(700, &parent);
    cr_assert_neq(parent, e.r.root_page); /* a branch below the root: height >= 3 */
    uint8_t page[P];
    page_read(parent, page);
    cr_assert_geq(btp_count(page), 1);
    struct btp_cell cell = btp_branch_get(page, P, 0);
    uint64_t child = cell.child;
    uint64_t recorded = cell.bytes;
    cr_assert_gt(recorded, 0);
    btp_branch_set_bytes(page, P, 0, recorded - 1);
    page_write(parent, page, true);
    char reason[200];
    snprintf(reason, sizeof(reason),
             "subtree size: child page %" PRIu64 " (index 1) holds %" PRIu64
             " bytes of keys and values, its cell records %" PRIu64,
             child, recorded, recorded - 1);
    expect_corrupt(parent, reason);
}

/* The root's cells record more than the meta's tree bytes: the root's leftmost child
 * would have a negative size. */
Test(btree_check, root_cells_exceed_tree_bytes)
{
    build(1200);
    expect_sound();
    uint64_t tree_bytes = e.r.tree_bytes;
    uint8_t root[P];
    page_read(e.r.root_page, root);
    uint64_t cells = btp_branch_cells_bytes(root, P);
    uint64_t first = btp_branch_get(root, P, 0).bytes;
    uint64_t more = tree_bytes - cells + 1; /* cells + more = tree_bytes + 1 */
    btp_branch_set_bytes(root, P, 0, first + more);
    page_write(e.r.root_page, root, true);
    char reason[200];
    snprintf(reason, sizeof(reason),
             "records tree bytes %" PRIu64 ", below the %" PRIu64
             " bytes its own cells record for their children",
             tree_bytes, tree_bytes + 1);
    expect_corrupt(e.r.root_page, reason);
}

/* A root cell records 0 for a branch child: that branch's own cells record more than
 * its parent gives it. Reported at the child, naming the parent. */
Test(btree_check, branch_given_less_than_its_cells)
{
    build(1200);
    expect_sound();
    uint8_t root[P];
    page_read(e.r.root_page, root);
    uint64_t child = btp_branch_child(root, P, 1);
    btp_branch_set_bytes(root, P, 0, 0);
    page_write(e.r.root_page, root, true);
    char reason[120];
    snprintf(reason, sizeof(reason), "page %" PRIu64 " gives it a size of 0, below the",
             e.r.root_page);
    expect_corrupt(child, reason);
}

/* The meta's tree bytes one above and one below the tree's real size. */
Test(btree_check, meta_tree_bytes_off_by_one)
{
    build(1200);
    expect_sound();
    uint64_t total = e.r.key_bytes + e.r.value_bytes;
    uint64_t which = 0;
    struct btp_meta meta = meta_read(&which);
    cr_assert_eq(meta.tree_bytes, total);
    for (int d = -1; d <= 1; d += 2) {
        meta.tree_bytes = total + (uint64_t)(int64_t)d;
        meta_write(&meta);
        char reason[200];
        snprintf(reason, sizeof(reason),
                 "holds %" PRIu64 " bytes of keys and values, the meta records tree bytes %" PRIu64,
                 total, meta.tree_bytes);
        expect_corrupt(which, reason);
    }
    meta.tree_bytes = total;
    meta_write(&meta);
    expect_sound();
}

/* A freelist entry, then the chain's link, naming a leaf the tree reaches. */
Test(btree_check, freelist_names_a_live_page)
{
    build(1200);
    expect_sound();
    uint64_t chain[64];
    uint32_t n = freelist_chain(chain, 64);
    cr_assert_eq(n, e.r.freelist_pages);
    uint64_t parent = 0;
    uint64_t leaf = leaf_of(500, &parent);
    uint64_t was = freelist_edit(chain[0], 0, leaf);
    char reason[200];
    snprintf(reason, sizeof(reason),
             "reached twice: freelist page %" PRIu64
             " lists it as free, and the tree already reaches it",
             chain[0]);
    expect_corrupt(leaf, reason);

    freelist_edit(chain[0], 0, was);
    expect_sound();
    uint8_t page[P];
    page_read(chain[0], page);
    btp_set_link(page, leaf);
    page_write(chain[0], page, true);
    snprintf(reason, sizeof(reason),
             "reached twice: freelist page %" PRIu64
             " links to it, and the tree already reaches it",
             chain[0]);
    expect_corrupt(leaf, reason);
}

/* A free page listed twice, and an entry past the page count. */
Test(btree_check, freelist_entry_twice_or_out_of_range)
{
    build(1200);
    expect_sound();
    uint64_t chain[64];
    freelist_chain(chain, 64);
    uint8_t page[P];
    page_read(chain[0], page);
    cr_assert_geq(btp_count(page), 2);
    uint64_t first = btp_freelist_get(page, P, 0);
    uint64_t second = freelist_edit(chain[0], 1, first);
    expect_corrupt(first, "a freelist page already lists it as free");

    freelist_edit(chain[0], 1, second);
    expect_sound();
    freelist_edit(chain[0], 0, e.r.page_count);
    char reason[120];
    snprintf(reason, sizeof(reason), "lists page %" PRIu64 ", not below the page count",
             e.r.page_count);
    expect_corrupt(chain[0], reason);
}

/* A free page dropped from the free list: neither reachable nor free. */
Test(btree_check, leaked_page)
{
    build(1200);
    expect_sound();
    uint64_t chain[64];
    uint32_t n = freelist_chain(chain, 64);
    uint64_t gone = freelist_edit(chain[n - 1], 0, 0);
    expect_corrupt(gone, "leaked: neither reachable from the root nor free (the first of 1 such");
    uint64_t reached = e.r.meta_pages + e.r.branch_pages + e.r.leaf_pages + e.r.overflow_pages;
    cr_assert_eq(reached + e.r.freelist_pages + e.r.free_pages + 1, e.r.page_count);
}

/* The chain's last page linked back to its head. */
Test(btree_check, freelist_chain_loops)
{
    build(1200);
    expect_sound();
    uint64_t chain[64];
    uint32_t n = freelist_chain(chain, 64);
    cr_assert_geq(n, 2);
    uint8_t page[P];
    page_read(chain[n - 1], page);
    cr_assert_eq(btp_link(page), 0);
    btp_set_link(page, chain[0]);
    page_write(chain[n - 1], page, true);
    char reason[200];
    snprintf(reason, sizeof(reason),
             "reached twice: freelist page %" PRIu64
             " links to it, and it is already a page of the freelist chain (the freelist chain"
             " loops)",
             chain[n - 1]);
    expect_corrupt(chain[0], reason);
}

/* A page count the file cannot account for is refused before the walk allocates. */
Test(btree_check, page_count_past_the_file)
{
    build(300);
    expect_sound();
    struct btp_meta meta = meta_read(NULL);
    meta.page_count = (e.r.file_bytes / P) * (btp_freelist_capacity(P) + 2);
    meta_write(&meta);
    expect_corrupt(meta.checkpoint_id % 2, "by more than its freelist pages could list");
}
