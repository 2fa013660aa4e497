/* The shard's disk (see disk.h). */
#include "shard/disk.h"

#include "core/util/assert.h"
#include "core/util/err.h"

_Static_assert(SHARD_UDATA_TAG_SHIFT == DISK_URING_TAG_SHIFT, "one user_data convention");

static void on_disk_cqe(void *ctx, struct io_uring_cqe *cqe)
{
    struct disk *d = ctx;
    TS_DASSERT(shard_udata_tag(cqe->user_data) == SHARD_TAG_DISK);
    disk_uring_complete(d, cqe->user_data, cqe->res);
}

static int wait_disk(void *ctx)
{
    return shard_loop_wait_tag(ctx, SHARD_TAG_DISK);
}

/* Runs the callbacks of what completed this iteration. A failure here is the ring's,
 * which the loop's own wait reports too. */
static void run_disk(void *ctx)
{
    struct disk *d = ctx;
    if (disk_inflight(d) > 0) {
        (void)disk_run(d, false);
    }
}

int shard_disk_create(struct shard_loop *l, const struct disk_uring_config *cfg, struct disk **out)
{
    TS_ASSERT(l != NULL);
    TS_ASSERT(out != NULL);
    struct disk_uring_config defaults = {0};
    struct disk_uring_host host = {
        .ring = shard_loop_ring(l), .tag = SHARD_TAG_DISK, .wait = wait_disk, .ctx = l};
    struct disk *d;
    int rc = disk_uring_attach(cfg != NULL ? cfg : &defaults, &host, shard_loop_allocator(l), &d);
    if (rc < 0) {
        return rc;
    }
    rc = shard_loop_register(l, SHARD_TAG_DISK, on_disk_cqe, d);
    if (rc == 0) {
        rc = shard_loop_on_iteration(l, run_disk, d);
        if (rc != 0) {
            shard_loop_unregister(l, SHARD_TAG_DISK);
        }
    }
    if (rc != 0) {
        disk_destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}
