/* storage/btree/btree_check: trees built with btree.h on the simulated disk (512-byte
 * pages, height >= 3, overflow chains) check sound with the counts that were put; then
 * damaged copies: bit flips in a leaf, a branch and an overflow page, and pages rewritten
 * with page.h and re-sealed (valid CRC) so that a page sits under two parents, keys are
 * out of order across pages, an overflow chain is short, a pointer passes the page count,
 * or the meta's height is wrong. */
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
    cr_assert_eq(e.r.free_pages, e.r.page_count - reached);
    cr_assert_eq(e.r.free_pages, e.stats.free_pages, "check %" PRIu64 " tree %" PRIu64,
                 e.r.free_pages, e.stats.free_pages);
    cr_assert_gt(e.r.free_pages, 0);
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
    cr_assert_eq(e.r.free_pages, e.r.page_count - 2);
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
