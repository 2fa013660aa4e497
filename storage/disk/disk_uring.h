/*
 * The io_uring disk backend (STYLE R17, R18).
 *
 * Its own ring (disk_uring_create: tools, tests, recovery before the shards run) or the
 * shard's (disk_uring_attach, below: the server). An own ring is created with
 * IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN by the thread that will use it (a
 * SINGLE_ISSUER ring must be used by its creator). Requests are tracked in a fixed slot table
 * (inflight_max); user_data packs the slot index and the step, never a raw pointer. When the
 * submission queue is full, submit and retry. Completions are reaped in batches. A write linked to
 * an fdatasync is two linked SQEs (IOSQE_IO_LINK, IORING_FSYNC_DATASYNC) with one completion to the
 * caller; a short write is resubmitted for its remainder before the sync. No busy polling: disk_run
 * with wait blocks in io_uring_submit_and_wait.
 *
 * Files are opened with O_CLOEXEC, buffered (O_DIRECT is not offered); metadata calls are the
 * plain syscalls (fallocate, ftruncate, unlinkat, fsync on the directory).
 */
#ifndef TS_STORAGE_DISK_DISK_URING_H
#define TS_STORAGE_DISK_DISK_URING_H

#include "core/util/mem.h"
#include "storage/disk/disk.h"

#include <stdint.h>

struct disk_uring_config {
    uint32_t ring_entries; /* submission queue size; 0: 256 */
    uint32_t inflight_max; /* requests in flight at once; 0: 256 */
    uint32_t files_max;    /* open files at once; 0: 1024 */
};

/* Creates the backend and its ring on the calling thread. Borrows alloc. Returns 0,
 * -ENOMEM, or the -errno of io_uring_queue_init. */
int disk_uring_create(const struct disk_uring_config *cfg, const struct ts_allocator *alloc,
                      struct disk **out);

/*
 * Attached mode: the disk shares a ring that someone else owns and reaps (the shard's
 * loop, so that one thread waits in one place for the network and the disk). Every SQE
 * the disk queues carries `tag` in user_data bits 56..63 and its own value below; the
 * host hands each CQE with that tag to disk_uring_complete(), and submits what is queued
 * when it next waits. Callbacks still run only inside disk_run().
 *
 * disk_run(d, true) must be able to wait synchronously (a B-tree page miss, a
 * checkpoint): it calls host.wait(ctx), which must block until at least one CQE tagged
 * `tag` has been passed to disk_uring_complete, keeping every other CQE it reaps
 * meanwhile for its owner (it may not run their handlers: the caller is in the middle of
 * its own work). It returns 0 or -errno.
 */
#define DISK_URING_TAG_SHIFT 56u
#define DISK_URING_VALUE_MASK ((UINT64_C(1) << DISK_URING_TAG_SHIFT) - 1)

struct io_uring;

struct disk_uring_host {
    struct io_uring *ring; /* borrowed; created by the calling thread */
    uint8_t tag;           /* 1..255 */
    int (*wait)(void *ctx);
    void *ctx;
};

/* Creates the backend on the host's ring (the calling thread must be the ring's only
 * submitter). ring_entries in cfg is ignored. Returns 0, -EINVAL for tag 0, -ENOMEM. */
int disk_uring_attach(const struct disk_uring_config *cfg, const struct disk_uring_host *host,
                      const struct ts_allocator *alloc, struct disk **out);

/* Hands the disk a CQE of its tag (attached mode only). */
void disk_uring_complete(struct disk *d, uint64_t user_data, int32_t res);

#endif
