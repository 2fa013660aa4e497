/*
 * The io_uring disk backend (STYLE R17, R18).
 *
 * One ring, created with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN by the
 * thread that will use it (a SINGLE_ISSUER ring must be used by its creator). Requests
 * are tracked in a fixed slot table (inflight_max); user_data packs the slot index and
 * the step, never a raw pointer. When the submission queue is full, submit and retry.
 * Completions are reaped in batches. A write linked to an fdatasync is two linked SQEs
 * (IOSQE_IO_LINK, IORING_FSYNC_DATASYNC) with one completion to the caller; a short
 * write is resubmitted for its remainder before the sync. No busy polling: disk_run
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

#endif
