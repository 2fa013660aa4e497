/*
 * The shard's disk: storage/disk's io_uring backend on the shard's own ring (STYLE R18:
 * one ring per shard), so that one thread waits in one place for the network, the disk,
 * the timers and the other shards.
 *
 * shard_disk_create() attaches a disk to the loop under SHARD_TAG_DISK, routes that tag's
 * completions to it, lets a synchronous disk_run(d, true) (a B-tree miss, a checkpoint)
 * wait through shard_loop_wait_tag() (other subsystems' completions are set aside and
 * handled by the next iteration, never from inside the wait), and runs the disk's
 * callbacks once per iteration (an iteration hook calling disk_run(d, false)).
 *
 * Lifetime: one disk per loop; it must outlive the loop's last iteration (the hook cannot
 * be removed), so destroy it after shard_loop_run returns and before shard_loop_destroy.
 * Owner thread only.
 */
#ifndef TS_SHARD_DISK_H
#define TS_SHARD_DISK_H

#include "shard/loop.h"
#include "storage/disk/disk_uring.h"

/* Returns 0, TS_EINVAL when the loop already has a disk (the tag is taken), TS_EFULL when
 * the loop has no room for the hook, -ENOMEM. cfg may be NULL (defaults). */
int shard_disk_create(struct shard_loop *l, const struct disk_uring_config *cfg, struct disk **out);

#endif
