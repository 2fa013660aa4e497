/*
 * storage/disk: the narrow completion interface under the WAL and the B-tree (STYLE R17).
 *
 * The storage modules never call the operating system: they submit requests to a
 * `struct disk` and get completions back. Two backends implement it, and the modules
 * above cannot tell which one they run on:
 *
 *   disk_uring.c  io_uring: one ring, SINGLE_ISSUER | DEFER_TASKRUN, owned by the shard
 *                 thread that created it; a write linked to an fdatasync is submitted as
 *                 two linked SQEs and completes once; short writes are resubmitted.
 *   disk_sim.c    a simulated disk for tests: whole files in memory, split into what is
 *                 durable and what is only written; crash() keeps the durable part and,
 *                 for each write not yet synced, drops it, keeps it or tears it at a
 *                 random byte; bit flips; EIO or ENOSPC on any operation on a countdown;
 *                 a capacity so that a full disk can be tested. Seeded: one seed replays
 *                 a run exactly.
 *
 * Data path (asynchronous): write, read, fdatasync, and write-then-fdatasync. The caller
 * owns each `struct disk_req` and its buffer until the callback runs; callbacks run only
 * inside disk_run(), on the calling shard, never re-entrantly from disk_submit().
 *
 * Metadata path (synchronous, cheap): open, close, size, allocate, truncate, remove,
 * list, sync_dir. The WAL and the B-tree call these at startup and when a log segment
 * is created or deleted (a few per 64 MiB written), never per request.
 *
 * Errors are -errno as the OS reports them (-EIO, -ENOSPC, -ENOENT...). A failed write
 * leaves the file's content undefined in the range written: the caller must not report
 * anything in that range as durable.
 *
 * Threading: a disk belongs to one shard thread.
 */
#ifndef TS_STORAGE_DISK_DISK_H
#define TS_STORAGE_DISK_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct disk;

enum disk_op {
    DISK_OP_WRITE = 1,
    DISK_OP_READ = 2,
    DISK_OP_FDATASYNC = 3,
    DISK_OP_WRITE_FDATASYNC = 4, /* a write, then fdatasync of the same file; one completion */
};

/* Flags of disk_open. */
#define DISK_OPEN_CREATE 0x1u /* create if missing */
#define DISK_OPEN_EXCL 0x2u   /* with CREATE: fail with -EEXIST if it exists */
#define DISK_OPEN_READONLY 0x4u

struct disk_req;
typedef void (*disk_req_cb)(struct disk_req *req);

struct disk_req {
    /* Set by the caller before disk_submit. */
    uint8_t op;    /* enum disk_op */
    uint32_t file; /* from disk_open */
    void *buf;     /* borrowed until the callback */
    uint32_t len;
    uint64_t offset;
    disk_req_cb cb;
    void *data;
    /* Set by the backend. */
    int32_t res;            /* bytes transferred (all of len on success), 0 for a
                               sync, or -errno. A read past the end of the file
                               returns fewer bytes. */
    struct disk_req *next_; /* backend's queue; do not touch */
};

struct disk_vtable {
    int (*open)(struct disk *d, const char *path, uint32_t flags, uint32_t *file);
    int (*close)(struct disk *d, uint32_t file);
    int (*size)(struct disk *d, uint32_t file, uint64_t *bytes);
    /* Makes [0, bytes) of the file allocated (and the size at least bytes), so that later
     * writes in that range cannot fail with ENOSPC and need no metadata update. */
    int (*allocate)(struct disk *d, uint32_t file, uint64_t bytes);
    int (*truncate)(struct disk *d, uint32_t file, uint64_t bytes);
    int (*remove)(struct disk *d, const char *path);
    int (*mkdir)(struct disk *d, const char *path);
    /* Calls fn for every entry of dir but "." and ".." (order unspecified); stops and
     * returns fn's value when it is non-zero. */
    int (*list)(struct disk *d, const char *dir, int (*fn)(void *arg, const char *name), void *arg);
    /* Makes the creation, removal and renaming of dir's entries durable. */
    int (*sync_dir)(struct disk *d, const char *dir);
    /* Synchronous read, for recovery only. Returns bytes read or -errno. */
    int64_t (*pread)(struct disk *d, uint32_t file, void *buf, size_t len, uint64_t offset);
    void (*submit)(struct disk *d, struct disk_req *req);
    /* Runs completions. With wait, blocks until at least one request completes (returns
     * at once when none is in flight). Returns the number of callbacks run, or -errno. */
    int (*run)(struct disk *d, bool wait);
    /* Requests submitted and not yet completed. */
    uint32_t (*inflight)(struct disk *d);
    void (*destroy)(struct disk *d);
};

struct disk {
    const struct disk_vtable *vt;
};

/* A request a backend may accept: a known op, a callback, a length a completion's res
 * can report, and a buffer unless the op moves no data. Backends assert it. */
static inline bool disk_req_valid(const struct disk_req *req)
{
    if (req->op < DISK_OP_WRITE || req->op > DISK_OP_WRITE_FDATASYNC || req->cb == NULL) {
        return false;
    }
    if (req->len > INT32_MAX) {
        return false;
    }
    return req->op == DISK_OP_FDATASYNC || req->len == 0 || req->buf != NULL;
}

static inline int disk_open(struct disk *d, const char *path, uint32_t flags, uint32_t *file)
{
    return d->vt->open(d, path, flags, file);
}

static inline int disk_close(struct disk *d, uint32_t file)
{
    return d->vt->close(d, file);
}

static inline int disk_size(struct disk *d, uint32_t file, uint64_t *bytes)
{
    return d->vt->size(d, file, bytes);
}

static inline int disk_allocate(struct disk *d, uint32_t file, uint64_t bytes)
{
    return d->vt->allocate(d, file, bytes);
}

static inline int disk_truncate(struct disk *d, uint32_t file, uint64_t bytes)
{
    return d->vt->truncate(d, file, bytes);
}

static inline int disk_remove(struct disk *d, const char *path)
{
    return d->vt->remove(d, path);
}

static inline int disk_mkdir(struct disk *d, const char *path)
{
    return d->vt->mkdir(d, path);
}

static inline int disk_list(struct disk *d, const char *dir, int (*fn)(void *arg, const char *name),
                            void *arg)
{
    return d->vt->list(d, dir, fn, arg);
}

static inline int disk_sync_dir(struct disk *d, const char *dir)
{
    return d->vt->sync_dir(d, dir);
}

static inline int64_t disk_pread(struct disk *d, uint32_t file, void *buf, size_t len,
                                 uint64_t offset)
{
    return d->vt->pread(d, file, buf, len, offset);
}

static inline void disk_submit(struct disk *d, struct disk_req *req)
{
    d->vt->submit(d, req);
}

static inline int disk_run(struct disk *d, bool wait)
{
    return d->vt->run(d, wait);
}

static inline uint32_t disk_inflight(struct disk *d)
{
    return d->vt->inflight(d);
}

static inline void disk_destroy(struct disk *d)
{
    if (d != NULL) {
        d->vt->destroy(d);
    }
}

#endif
