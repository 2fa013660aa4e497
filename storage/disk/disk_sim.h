/*
 * The simulated disk (STYLE R17, R21): a `struct disk` whose files live in memory, for
 * deterministic crash and fault tests of the WAL and the B-tree.
 *
 * Each file has two images: what was written (what reads see) and what is durable.
 * fdatasync of a file makes its written image durable (DISK_OP_WRITE_FDATASYNC does so
 * for its file once its write is applied). Metadata (create, remove, size) is durable
 * once sync_dir is called on the directory, or at once with `metadata_durable`.
 *
 * Requests are queued by submit and executed by disk_sim_step(), one primitive step at
 * a time (a write, a read, a sync), or all at once by disk_run(); callbacks run when a
 * request has finished all its steps. disk_sim_crash() then models power loss:
 * requests in flight are abandoned (their callbacks never run), files revert to their
 * durable image, and each write applied since the file's last sync is, by the crash
 * policy, dropped, kept, or torn (a prefix of random length kept); all handles close.
 *
 * Faults: fail the Nth next operation of the given kinds with -EIO or -ENOSPC; a
 * capacity past which writes and allocations fail with -ENOSPC; a bit flip in a file's
 * written and durable images. One seed drives every random choice.
 *
 * Details the interface leaves open, as this simulator settles them:
 *   - Paths are strings compared byte for byte (no normalisation). "." and "/" always
 *     exist; any other parent directory must have been made with mkdir (else -ENOENT),
 *     and a directory's creation, like a file's, is durable only once its own parent is
 *     synced. remove() removes files only (-EISDIR for a directory).
 *   - allocate and truncate are durable at once, as if followed by fsync; the WAL and the
 *     B-tree call them at startup and on segment creation only.
 *   - TEAR applies per file: each file's last unsynced write is torn, its earlier ones
 *     kept. Unsynced writes are replayed in order from copies of their bytes, so
 *     overlapping writes crash exactly as they would have been applied.
 *   - A failed write or allocation changes nothing. Capacity counts every file the disk
 *     still holds, including a removed one whose removal is not yet durable.
 *   - Files are limited to 1 GiB (-EFBIG past it): everything is in memory.
 *   - disk_run executes everything queued when it is called and what callbacks submit
 *     meanwhile, up to 65536 steps more, so a callback that always resubmits cannot keep
 *     it from returning. Closing a file with requests queued on it is a caller bug.
 */
#ifndef TS_STORAGE_DISK_DISK_SIM_H
#define TS_STORAGE_DISK_DISK_SIM_H

#include "core/util/mem.h"
#include "storage/disk/disk.h"

#include <stdbool.h>
#include <stdint.h>

struct disk_sim;

enum disk_sim_crash_policy {
    DISK_SIM_CRASH_RANDOM = 0, /* each unsynced write: dropped, kept or torn at random */
    DISK_SIM_CRASH_DROP = 1,   /* every unsynced write is lost */
    DISK_SIM_CRASH_KEEP = 2,   /* every unsynced write reached the platter */
    DISK_SIM_CRASH_TEAR = 3,   /* the last unsynced write keeps tear_bytes, earlier ones
                                  are kept, nothing else */
};

/* Operation kinds for fault injection (a mask). */
#define DISK_SIM_FAULT_WRITE 0x01u
#define DISK_SIM_FAULT_READ 0x02u
#define DISK_SIM_FAULT_SYNC 0x04u
#define DISK_SIM_FAULT_ALLOCATE 0x08u
#define DISK_SIM_FAULT_OPEN 0x10u
#define DISK_SIM_FAULT_ALL 0xffu

/* Borrows alloc. Returns 0 or -ENOMEM. */
int disk_sim_create(uint64_t seed, const struct ts_allocator *alloc, struct disk_sim **out);

/* The disk interface of this simulator (valid until disk_destroy, which frees it all). */
struct disk *disk_sim_disk(struct disk_sim *s);

/* Metadata operations are durable at once (default false: only after sync_dir). */
void disk_sim_set_metadata_durable(struct disk_sim *s, bool durable);

/* Executes one primitive step of the oldest queued request and runs its callback if it
 * is now complete. Returns false when nothing was queued. */
bool disk_sim_step(struct disk_sim *s);

/* Power loss (see above). tear_bytes is used by DISK_SIM_CRASH_TEAR. The disk stays
 * usable: files can be reopened, as after a reboot. */
void disk_sim_crash(struct disk_sim *s, enum disk_sim_crash_policy policy, uint64_t tear_bytes);

/* The (after + 1)-th next operation whose kind is in `kinds` fails with -err (EIO or
 * ENOSPC); with `sticky` every later one does too, until disk_sim_fail_clear(). */
void disk_sim_fail(struct disk_sim *s, uint32_t kinds, int err, uint32_t after, bool sticky);
void disk_sim_fail_clear(struct disk_sim *s);

/* Total bytes the disk holds (sum of file sizes); writes and allocations past it fail
 * with -ENOSPC. 0: unlimited (default). */
void disk_sim_set_capacity(struct disk_sim *s, uint64_t bytes);

/* Flips one bit in both images of the file at path. Returns 0 or -ENOENT / -EINVAL. */
int disk_sim_flip_bit(struct disk_sim *s, const char *path, uint64_t offset, uint32_t bit);

/* Bytes written since the file's last sync (what a crash may lose); 0 if none or no
 * such file. */
uint64_t disk_sim_unsynced_bytes(struct disk_sim *s, const char *path);

#endif
