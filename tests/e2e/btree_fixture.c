/*
 * btree_fixture: writes a known B-tree file for tessera_admin_test.sh.
 *
 *   btree_fixture FILE
 *
 * The tree is written through storage/btree on the io_uring backend with 512-byte pages
 * (the minimum, so that 1000 keys make a tree of height 3 or more): keys "key0000000"
 * to "key0000999", every 50th value 3000 bytes (an overflow chain), the others 20 bytes;
 * a checkpoint; then every 7th key deleted and a second checkpoint with a 4-byte blob, so
 * that the file has free pages and a freelist chain. Reopens the file and prints
 * "keys N", "height H", "page_bytes P", "tree_bytes B", "freelist_pages F" and
 * "free_pages L" (btree_stats after the reopen) for the script to compare with
 * tessera-admin's report. Exits 0, 1 on failure, 2 on usage errors, 77 when io_uring is
 * not available.
 */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/mem.h"
#include "storage/btree/btree.h"
#include "storage/disk/disk_uring.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define FIX_KEYS 1000
#define FIX_DELETE_EVERY 7
/* Keys left: those not a multiple of FIX_DELETE_EVERY. */
#define FIX_KEYS_LEFT (FIX_KEYS - (FIX_KEYS + FIX_DELETE_EVERY - 1) / FIX_DELETE_EVERY)
#define FIX_PAGE_BYTES 512u

static int fill(struct btree *t)
{
    static uint8_t value[3000];
    char key[16];
    int rc = 0;
    for (int i = 0; rc == 0 && i < FIX_KEYS; i++) {
        snprintf(key, sizeof(key), "key%07d", i);
        uint32_t len = i % 50 == 0 ? sizeof(value) : 20u;
        memset(value, 'a' + i % 26, len);
        rc = btree_put(t, key, 10, value, len);
    }
    if (rc == 0) {
        rc = btree_checkpoint(t, "blob", 4);
    }
    for (int i = 0; rc == 0 && i < FIX_KEYS; i += FIX_DELETE_EVERY) {
        snprintf(key, sizeof(key), "key%07d", i);
        rc = btree_delete(t, key, 10);
    }
    TS_ASSERT(rc != 0 || FIX_KEYS_LEFT > 0);
    return rc == 0 ? btree_checkpoint(t, "blob", 4) : rc;
}

/* Closes t, reopens the file and prints what the script compares. */
static int reopen_and_print(struct btree *t, const struct btree_config *cfg, struct disk *disk,
                            char *err, size_t err_bytes)
{
    TS_ASSERT(t != NULL);
    TS_ASSERT(cfg->path != NULL);
    btree_close(t);
    t = NULL;
    int rc = btree_open(cfg, disk, ts_allocator_default(), &t, err, err_bytes);
    if (rc != 0) {
        return rc;
    }
    struct btree_stats st;
    btree_get_stats(t, &st);
    printf("keys %d\nheight %" PRIu32 "\npage_bytes %u\ntree_bytes %" PRIu64
           "\nfreelist_pages %" PRIu64 "\nfree_pages %" PRIu64 "\n",
           FIX_KEYS_LEFT, st.height, FIX_PAGE_BYTES, st.tree_bytes, st.freelist_pages,
           st.free_pages);
    btree_close(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: btree_fixture FILE\n");
        return 2;
    }
    struct disk_uring_config dcfg = {0};
    struct disk *disk = NULL;
    int rc = disk_uring_create(&dcfg, ts_allocator_default(), &disk);
    if (rc == -ENOSYS || rc == -EPERM) {
        return 77;
    }
    TS_ASSERT(rc != 0 || disk != NULL);
    char err[512] = "";
    struct btree *t = NULL;
    struct btree_config cfg = {.path = argv[1], .page_bytes = FIX_PAGE_BYTES};
    if (rc == 0) {
        rc = btree_open(&cfg, disk, ts_allocator_default(), &t, err, sizeof(err));
    }
    if (rc == 0) {
        rc = fill(t);
        if (rc == 0) {
            rc = reopen_and_print(t, &cfg, disk, err, sizeof(err));
        } else {
            btree_close(t);
        }
    }
    disk_destroy(disk);
    if (rc != 0) {
        fprintf(stderr, "btree_fixture: %s: %s %s\n", argv[1], ts_strerror(rc), err);
        return 1;
    }
    return 0;
}
