/*
 * The io_uring disk backend (see disk_uring.h; STYLE R17, R18).
 *
 * A request moves through three places, each a list or a table owned by the backend:
 *   backlog  submitted while every slot was taken (at most inflight_max in the kernel);
 *            issued, oldest first, as slots free up;
 *   slots    in the kernel: the slot remembers the request, the bytes transferred so far,
 *            whether the sync is done, and how many CQEs are still due; a CQE's user_data
 *            is (slot << 8) | step, never a pointer, with the host's tag in bits 56..63
 *            when the disk is attached to a shard's ring (disk_uring.h);
 *   done     complete, its res set; its callback runs in the next disk_run (never from
 *            disk_submit, even for a request that fails before reaching the kernel).
 *
 * One request may take several trips to the kernel: a short transfer is reissued for
 * its remainder (for DISK_OP_WRITE_FDATASYNC with its linked fdatasync again, since the
 * kernel cancels the link with -ECANCELED when the write comes up short), and -EAGAIN,
 * -EINTR or -ECANCELED reissues what is missing, up to TS_DISK_URING_RETRIES_MAX times without
 * progress. A read that returns 0 has reached the end of the file.
 *
 * The metadata calls are plain blocking syscalls. allocate and truncate are followed by
 * fsync, so that they are durable at once as on the simulated disk. allocate uses
 * fallocate(fd, 0, 0, bytes): enough for correctness (later writes in the range cannot
 * fail with ENOSPC), though a WAL that wants fdatasync to skip metadata updates should
 * zero-fill a segment instead, since written extents are no longer "unwritten".
 */
#define _GNU_SOURCE /* fallocate, gettid */
#include "storage/disk/disk_uring.h"

#include "core/util/limits.h"

#include "core/util/assert.h"

#include <liburing.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define URING_SLOT_NONE UINT32_MAX

_Static_assert(TS_DISK_URING_INFLIGHT_MAX <= (UINT64_MAX >> TS_DISK_URING_STEP_BITS),
               "slot fits user_data");
_Static_assert(2 * TS_DISK_URING_INFLIGHT_MAX <= TS_DISK_URING_CQ_ENTRIES_MAX,
               "two CQEs per slot fit");
_Static_assert(TS_DISK_URING_RING_ENTRIES_MAX >= 2, "a linked write + fdatasync needs two SQEs");

enum uring_step {
    URING_STEP_DATA = 1,
    URING_STEP_SYNC = 2,
};

struct uring_slot {
    struct disk_req *req; /* NULL: free */
    uint32_t next_free;
    uint32_t done_bytes;
    int32_t err;      /* first hard error, 0 if none */
    uint32_t retries; /* issues in a row without progress */
    uint8_t pending;  /* CQEs still due */
    bool progress;    /* since the last issue */
    bool eof;
    bool synced;
};

struct uring_file {
    int fd; /* -1: free */
    bool readonly;
};

struct disk_uring {
    struct disk base; /* first: a struct disk * is a struct disk_uring * */
    const struct ts_allocator *alloc;
    struct io_uring *ring; /* &own_ring, or the host's */
    struct io_uring own_ring;
    struct disk_uring_host host; /* attached mode: host.ring != NULL */
    uint64_t tag_bits;           /* the host's tag, in place; 0 on an own ring */
    pid_t owner_tid;
    struct uring_slot *slots;
    uint32_t slots_max;
    uint32_t slots_used;
    uint32_t free_head;
    struct disk_req *backlog_head;
    struct disk_req *backlog_tail;
    uint32_t backlog_count;
    struct disk_req *done_head;
    struct disk_req *done_tail;
    uint32_t done_count;
    uint32_t calling; /* detached from done, callback not yet run */
    struct uring_file *files;
    uint32_t files_max;
};

static const struct disk_vtable uring_vtable;

static struct disk_uring *uring_of(struct disk *d)
{
    TS_ASSERT(d != NULL);
    struct disk_uring *u = (struct disk_uring *)d;
    TS_ASSERT(u->base.vt == &uring_vtable);
    TS_DASSERT(u->owner_tid == gettid()); /* SINGLE_ISSUER: the creating thread only */
    return u;
}

static bool op_has_data(uint8_t op)
{
    return op == DISK_OP_WRITE || op == DISK_OP_READ || op == DISK_OP_WRITE_FDATASYNC;
}

static bool op_has_sync(uint8_t op)
{
    return op == DISK_OP_FDATASYNC || op == DISK_OP_WRITE_FDATASYNC;
}

static bool attached(const struct disk_uring *u)
{
    return u->host.ring != NULL;
}

static uint64_t user_data_pack(const struct disk_uring *u, uint32_t slot, enum uring_step step)
{
    TS_DASSERT(slot < TS_DISK_URING_INFLIGHT_MAX);
    TS_DASSERT(step == URING_STEP_DATA || step == URING_STEP_SYNC);
    return u->tag_bits | ((uint64_t)slot << TS_DISK_URING_STEP_BITS) | (uint64_t)step;
}

/* ---- Lists ----------------------------------------------------------------------- */

static void list_push(struct disk_req **head, struct disk_req **tail, struct disk_req *req)
{
    TS_DASSERT((*head == NULL) == (*tail == NULL));
    TS_DASSERT(req != NULL);
    req->next_ = NULL;
    if (*tail == NULL) {
        *head = req;
    } else {
        (*tail)->next_ = req;
    }
    *tail = req;
}

static struct disk_req *list_pop(struct disk_req **head, struct disk_req **tail)
{
    struct disk_req *req = *head;
    TS_DASSERT(req != NULL);
    TS_DASSERT(*tail != NULL);
    *head = req->next_;
    if (*head == NULL) {
        *tail = NULL;
    }
    req->next_ = NULL;
    return req;
}

static void done_push(struct disk_uring *u, struct disk_req *req, int32_t res)
{
    TS_ASSERT(req != NULL);
    TS_ASSERT(u->done_count < UINT32_MAX);
    req->res = res;
    list_push(&u->done_head, &u->done_tail, req);
    u->done_count++;
}

/* ---- Slots and issuing ----------------------------------------------------------- */

static uint32_t slot_take(struct disk_uring *u, struct disk_req *req)
{
    uint32_t slot = u->free_head;
    TS_ASSERT(slot != URING_SLOT_NONE);
    TS_ASSERT(u->slots[slot].req == NULL);
    struct uring_slot *sl = &u->slots[slot];
    u->free_head = sl->next_free;
    *sl = (struct uring_slot){.req = req, .next_free = URING_SLOT_NONE};
    u->slots_used++;
    return slot;
}

/* Completes the slot's request with res and frees the slot. */
static void slot_finish(struct disk_uring *u, uint32_t slot, int32_t res)
{
    struct uring_slot *sl = &u->slots[slot];
    TS_ASSERT(sl->req != NULL);
    TS_ASSERT(sl->pending == 0);
    TS_ASSERT(u->slots_used > 0);
    done_push(u, sl->req, res);
    sl->req = NULL;
    sl->next_free = u->free_head;
    u->free_head = slot;
    u->slots_used--;
}

/* An SQE; when the queue is full, submits what is there and tries again. */
static struct io_uring_sqe *sqe_get(struct disk_uring *u, int *err)
{
    TS_DASSERT(err != NULL);
    struct io_uring_sqe *sqe = io_uring_get_sqe(u->ring);
    if (sqe == NULL) {
        int rc = io_uring_submit(u->ring);
        sqe = io_uring_get_sqe(u->ring);
        *err = rc < 0 ? rc : -EBUSY;
    }
    TS_DASSERT(sqe != NULL || *err < 0);
    return sqe;
}

static void prep_data(struct io_uring_sqe *sqe, int fd, const struct disk_req *req, uint32_t done)
{
    TS_DASSERT(done < req->len);
    TS_DASSERT(op_has_data(req->op));
    uint8_t *buf = (uint8_t *)req->buf + done;
    if (req->op == DISK_OP_READ) {
        io_uring_prep_read(sqe, fd, buf, req->len - done, req->offset + done);
    } else {
        io_uring_prep_write(sqe, fd, buf, req->len - done, req->offset + done);
    }
}

/* Queues the SQEs for what the slot's request still needs: the rest of its transfer
 * (linked to its fdatasync for WRITE_FDATASYNC), or its fdatasync alone. Returns the
 * number of SQEs queued (0: nothing left to do) or -errno. */
static int slot_issue(struct disk_uring *u, uint32_t slot)
{
    struct uring_slot *sl = &u->slots[slot];
    const struct disk_req *req = sl->req;
    TS_ASSERT(req != NULL);
    TS_ASSERT(sl->pending == 0);
    bool data = op_has_data(req->op) && sl->done_bytes < req->len && !sl->eof;
    bool sync = op_has_sync(req->op) && !sl->synced;
    int fd = u->files[req->file].fd;
    int err = 0;
    if (data && sync && io_uring_sq_space_left(u->ring) < 2) {
        /* Both SQEs of a link must go in one submission, or the link would break. */
        err = io_uring_submit(u->ring);
        if (err < 0) {
            return err;
        }
    }
    if (data) {
        struct io_uring_sqe *sqe = sqe_get(u, &err);
        if (sqe == NULL) {
            return err;
        }
        prep_data(sqe, fd, req, sl->done_bytes);
        io_uring_sqe_set_data64(sqe, user_data_pack(u, slot, URING_STEP_DATA));
        if (sync) {
            sqe->flags |= IOSQE_IO_LINK;
        }
    }
    if (sync) {
        struct io_uring_sqe *sqe = sqe_get(u, &err);
        TS_ASSERT(sqe != NULL || !data); /* space for the link was made above */
        if (sqe == NULL) {
            return err;
        }
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, user_data_pack(u, slot, URING_STEP_SYNC));
    }
    sl->pending = (uint8_t)((data ? 1 : 0) + (sync ? 1 : 0));
    sl->progress = false;
    return sl->pending;
}

/* Issues what the slot's request still needs, or completes it. */
static void slot_advance(struct disk_uring *u, uint32_t slot)
{
    struct uring_slot *sl = &u->slots[slot];
    TS_ASSERT(sl->req != NULL);
    TS_ASSERT(sl->pending == 0);
    if (sl->err != 0) {
        slot_finish(u, slot, sl->err);
        return;
    }
    int rc = slot_issue(u, slot);
    if (rc < 0) {
        slot_finish(u, slot, rc);
        return;
    }
    if (rc == 0) {
        const struct disk_req *req = sl->req;
        slot_finish(u, slot, req->op == DISK_OP_FDATASYNC ? 0 : (int32_t)sl->done_bytes);
    }
}

/* Starts a request in a free slot, or completes it at once when it cannot start. */
static void req_start(struct disk_uring *u, struct disk_req *req)
{
    TS_ASSERT(u->free_head != URING_SLOT_NONE);
    TS_ASSERT(req->next_ == NULL);
    if (req->file >= u->files_max || u->files[req->file].fd < 0) {
        done_push(u, req, -EBADF);
        return;
    }
    if (op_has_data(req->op) && req->op != DISK_OP_READ && u->files[req->file].readonly) {
        done_push(u, req, -EBADF);
        return;
    }
    uint32_t slot = slot_take(u, req);
    slot_advance(u, slot);
}

static void backlog_drain(struct disk_uring *u)
{
    while (u->backlog_head != NULL && u->free_head != URING_SLOT_NONE) {
        struct disk_req *req = list_pop(&u->backlog_head, &u->backlog_tail);
        TS_ASSERT(u->backlog_count > 0);
        u->backlog_count--;
        req_start(u, req);
    }
    TS_DASSERT(u->backlog_head == NULL || u->slots_used == u->slots_max);
}

/* ---- Completions ----------------------------------------------------------------- */

static bool res_transient(int32_t res)
{
    return res == -EAGAIN || res == -EINTR || res == -ECANCELED;
}

static void on_data(struct uring_slot *sl, int32_t res)
{
    const struct disk_req *req = sl->req;
    TS_DASSERT(op_has_data(req->op));
    if (res_transient(res)) {
        return;
    }
    if (res < 0) {
        sl->err = sl->err != 0 ? sl->err : res;
    } else if (res == 0 && req->op == DISK_OP_READ) {
        sl->eof = true;
        sl->progress = true;
    } else if (res == 0) {
        sl->err = -EIO; /* a write that moves nothing would be retried forever */
    } else {
        TS_ASSERT((uint32_t)res <= req->len - sl->done_bytes);
        sl->done_bytes += (uint32_t)res;
        sl->progress = true;
    }
}

static void on_sync(struct uring_slot *sl, int32_t res)
{
    TS_DASSERT(op_has_sync(sl->req->op));
    TS_DASSERT(!sl->synced);
    if (res_transient(res)) {
        return; /* also the link cancelled by a short write: the sync is reissued */
    }
    if (res < 0) {
        sl->err = sl->err != 0 ? sl->err : res;
        return;
    }
    sl->synced = true;
    sl->progress = true;
}

static void on_cqe(struct disk_uring *u, uint64_t user_data, int32_t res)
{
    TS_DASSERT((user_data >> DISK_URING_TAG_SHIFT) == (u->tag_bits >> DISK_URING_TAG_SHIFT));
    user_data &= DISK_URING_VALUE_MASK;
    uint32_t slot = (uint32_t)(user_data >> TS_DISK_URING_STEP_BITS);
    uint32_t step = (uint32_t)(user_data & ((1u << TS_DISK_URING_STEP_BITS) - 1));
    TS_ASSERT(slot < u->slots_max);
    struct uring_slot *sl = &u->slots[slot];
    TS_ASSERT(sl->req != NULL);
    TS_ASSERT(sl->pending > 0);
    if (step == URING_STEP_DATA) {
        on_data(sl, res);
    } else {
        TS_ASSERT(step == URING_STEP_SYNC);
        on_sync(sl, res);
    }
    sl->pending--;
    if (sl->pending > 0) {
        return;
    }
    sl->retries = sl->progress ? 0 : sl->retries + 1;
    if (sl->err == 0 && sl->retries > TS_DISK_URING_RETRIES_MAX) {
        sl->err = res < 0 ? res : -EIO;
    }
    slot_advance(u, slot);
}

struct uring_cqe_copy {
    uint64_t user_data;
    int32_t res;
};

/* Reaps every CQE in the disk's own ring, a batch at a time. */
static void reap(struct disk_uring *u)
{
    struct uring_cqe_copy batch[TS_DISK_URING_CQE_BATCH];
    TS_DASSERT(u->slots_used <= u->slots_max);
    TS_ASSERT(!attached(u)); /* the host reaps its ring and calls disk_uring_complete */
    for (;;) {
        uint32_t n = 0;
        unsigned head;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(u->ring, head, cqe)
        {
            if (n == TS_DISK_URING_CQE_BATCH) {
                break;
            }
            batch[n].user_data = cqe->user_data;
            batch[n].res = cqe->res;
            n++;
        }
        io_uring_cq_advance(u->ring, n);
        for (uint32_t i = 0; i < n; i++) {
            on_cqe(u, batch[i].user_data, batch[i].res);
        }
        TS_DASSERT(n <= TS_DISK_URING_CQE_BATCH);
        if (n < TS_DISK_URING_CQE_BATCH) {
            return;
        }
    }
}

/* Attached: the host's loop reaps its ring and hands the disk's completions over through
 * disk_uring_complete, so not waiting means doing nothing here (the loop submits what is
 * queued when it next waits); waiting means letting the host wait for the disk's tag. */
static int pump_attached(struct disk_uring *u, bool wait)
{
    TS_DASSERT(attached(u));
    for (uint32_t pass = 0; pass < TS_DISK_URING_WAIT_PASSES_MAX; pass++) {
        if (!wait || u->done_head != NULL || u->slots_used == 0) {
            return 0;
        }
        int rc = u->host.wait(u->host.ctx);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            return rc;
        }
        backlog_drain(u);
    }
    return 0;
}

/* Submits, optionally waits for a completion, and reaps until something is done (with
 * block) or once (without). Returns 0 or -errno. */
static int pump(struct disk_uring *u, bool wait)
{
    TS_DASSERT(u->slots_used <= u->slots_max);
    if (attached(u)) {
        return pump_attached(u, wait);
    }
    for (uint32_t pass = 0; pass < TS_DISK_URING_WAIT_PASSES_MAX; pass++) {
        bool block = wait && u->done_head == NULL && u->slots_used > 0;
        int rc = io_uring_submit_and_wait(u->ring, block ? 1 : 0);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            return rc;
        }
        if (!block) {
            /* With DEFER_TASKRUN, completions are posted only when we ask. */
            rc = io_uring_get_events(u->ring);
            if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
                return rc;
            }
        }
        reap(u);
        backlog_drain(u);
        if (!block || u->done_head != NULL || u->slots_used == 0) {
            return 0;
        }
    }
    TS_DASSERT(wait);
    return 0;
}

/* Runs the callbacks of every request done so far. A callback may call disk_run again:
 * `calling` then adds up the lists detached by each level. */
static int run_callbacks(struct disk_uring *u)
{
    struct disk_req *req = u->done_head;
    TS_ASSERT(u->calling <= UINT32_MAX - u->done_count);
    u->calling += u->done_count;
    u->done_head = NULL;
    u->done_tail = NULL;
    u->done_count = 0;
    int n = 0;
    while (req != NULL) {
        struct disk_req *next = req->next_;
        req->next_ = NULL;
        u->calling--;
        n++;
        req->cb(req); /* may submit: new requests go to a slot, the backlog or done */
        req = next;
    }
    TS_DASSERT(n >= 0);
    return n;
}

/* ---- The vtable: data path ------------------------------------------------------- */

static void uring_submit(struct disk *d, struct disk_req *req)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(req != NULL);
    TS_ASSERT(disk_req_valid(req));
    req->res = 0;
    req->next_ = NULL;
    if (u->free_head == URING_SLOT_NONE || u->backlog_head != NULL) {
        TS_ASSERT(u->backlog_count < UINT32_MAX);
        list_push(&u->backlog_head, &u->backlog_tail, req);
        u->backlog_count++;
        return;
    }
    req_start(u, req);
}

static int uring_run(struct disk *d, bool wait)
{
    struct disk_uring *u = uring_of(d);
    TS_DASSERT(u->slots_used <= u->slots_max);
    backlog_drain(u);
    TS_DASSERT(u->backlog_head == NULL || u->free_head == URING_SLOT_NONE);
    int rc = pump(u, wait);
    if (rc < 0) {
        return rc;
    }
    return run_callbacks(u);
}

static uint32_t uring_inflight(struct disk *d)
{
    struct disk_uring *u = uring_of(d);
    TS_DASSERT(u->slots_used <= u->slots_max);
    TS_DASSERT(u->backlog_count == 0 || u->backlog_head != NULL);
    return u->slots_used + u->backlog_count + u->done_count + u->calling;
}

/* ---- The vtable: metadata path --------------------------------------------------- */

static int file_get(struct disk_uring *u, uint32_t file, bool for_write, int *fd)
{
    TS_DASSERT(fd != NULL);
    if (file >= u->files_max || u->files[file].fd < 0) {
        return -EBADF;
    }
    if (for_write && u->files[file].readonly) {
        return -EBADF;
    }
    *fd = u->files[file].fd;
    TS_ASSERT(*fd >= 0);
    return 0;
}

static bool file_busy(const struct disk_uring *u, uint32_t file)
{
    TS_DASSERT(file < u->files_max);
    TS_DASSERT(u->slots_used <= u->slots_max);
    for (uint32_t i = 0; i < u->slots_max; i++) {
        if (u->slots[i].req != NULL && u->slots[i].req->file == file) {
            return true;
        }
    }
    for (const struct disk_req *r = u->backlog_head; r != NULL; r = r->next_) {
        if (r->file == file) {
            return true;
        }
    }
    return false;
}

static int uring_open(struct disk *d, const char *path, uint32_t flags, uint32_t *file)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(path != NULL);
    TS_ASSERT(file != NULL);
    TS_ASSERT((flags & ~(DISK_OPEN_CREATE | DISK_OPEN_EXCL | DISK_OPEN_READONLY)) == 0);
    uint32_t h = 0;
    while (h < u->files_max && u->files[h].fd >= 0) {
        h++;
    }
    if (h == u->files_max) {
        return -EMFILE;
    }
    bool readonly = (flags & DISK_OPEN_READONLY) != 0;
    int oflags = O_CLOEXEC | (readonly ? O_RDONLY : O_RDWR);
    oflags |= (flags & DISK_OPEN_CREATE) != 0 ? O_CREAT : 0;
    oflags |= (flags & DISK_OPEN_EXCL) != 0 ? O_EXCL : 0;
    int fd = open(path, oflags, 0644);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? -errno : S_ISDIR(st.st_mode) ? -EISDIR : 0;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    u->files[h] = (struct uring_file){.fd = fd, .readonly = readonly};
    *file = h;
    return 0;
}

static int uring_close(struct disk *d, uint32_t file)
{
    struct disk_uring *u = uring_of(d);
    int fd;
    int rc = file_get(u, file, false, &fd);
    if (rc != 0) {
        return rc;
    }
    TS_DASSERT(!file_busy(u, file)); /* closing under a request is a caller bug */
    u->files[file].fd = -1;
    TS_ASSERT(fd >= 0);
    return close(fd) != 0 ? -errno : 0;
}

static int uring_size(struct disk *d, uint32_t file, uint64_t *bytes)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(bytes != NULL);
    int fd;
    int rc = file_get(u, file, false, &fd);
    if (rc != 0) {
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    TS_DASSERT(st.st_size >= 0);
    *bytes = (uint64_t)st.st_size;
    return 0;
}

static int uring_allocate(struct disk *d, uint32_t file, uint64_t bytes)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(bytes <= INT64_MAX);
    int fd;
    int rc = file_get(u, file, true, &fd);
    if (rc != 0 || bytes == 0) {
        return rc;
    }
    TS_DASSERT(!u->files[file].readonly);
    if (fallocate(fd, 0, 0, (off_t)bytes) != 0 || fsync(fd) != 0) {
        return -errno;
    }
    return 0;
}

static int uring_truncate(struct disk *d, uint32_t file, uint64_t bytes)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(bytes <= INT64_MAX);
    int fd;
    int rc = file_get(u, file, true, &fd);
    if (rc != 0) {
        return rc;
    }
    TS_DASSERT(!u->files[file].readonly);
    if (ftruncate(fd, (off_t)bytes) != 0 || fsync(fd) != 0) {
        return -errno;
    }
    return 0;
}

static int uring_remove(struct disk *d, const char *path)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(path != NULL);
    TS_DASSERT(u->files_max > 0);
    return unlinkat(AT_FDCWD, path, 0) != 0 ? -errno : 0;
}

static int uring_mkdir(struct disk *d, const char *path)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(path != NULL);
    TS_DASSERT(u->files_max > 0);
    return mkdir(path, 0755) != 0 ? -errno : 0;
}

static int uring_list(struct disk *d, const char *dir, int (*fn)(void *arg, const char *name),
                      void *arg)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(dir != NULL);
    TS_ASSERT(fn != NULL);
    TS_DASSERT(u->files_max > 0);
    DIR *dp = opendir(dir);
    if (dp == NULL) {
        return -errno;
    }
    int rc = 0;
    while (rc == 0) {
        errno = 0; /* readdir tells the end from an error only through errno */
        struct dirent *e = readdir(dp);
        if (e == NULL) {
            rc = errno != 0 ? -errno : 0;
            break;
        }
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            rc = fn(arg, e->d_name);
        }
    }
    closedir(dp);
    return rc;
}

static int uring_sync_dir(struct disk *d, const char *dir)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(dir != NULL);
    TS_DASSERT(u->files_max > 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int64_t uring_pread(struct disk *d, uint32_t file, void *buf, size_t len, uint64_t offset)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(buf != NULL || len == 0);
    TS_ASSERT(len <= INT64_MAX);
    TS_ASSERT(offset <= INT64_MAX);
    int fd;
    int rc = file_get(u, file, false, &fd);
    if (rc != 0) {
        return rc;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            break; /* end of file */
        }
        done += (size_t)n;
    }
    return (int64_t)done;
}

/* Waits for every request in the kernel so that no buffer is touched after destroy;
 * their callbacks never run. */
static void drain_kernel(struct disk_uring *u)
{
    TS_DASSERT(u->slots_used <= u->slots_max);
    for (uint32_t pass = 0; u->slots_used > 0 && pass < TS_DISK_URING_WAIT_PASSES_MAX * 64;
         pass++) {
        int rc = attached(u) ? u->host.wait(u->host.ctx) : io_uring_submit_and_wait(u->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            break;
        }
        if (!attached(u)) {
            reap(u); /* reissues may follow; their completions come in the next pass */
        }
    }
    TS_DASSERT(u->slots_used == 0);
}

static void uring_free(struct disk_uring *u)
{
    TS_ASSERT(u != NULL);
    TS_ASSERT(u->alloc != NULL);
    ts_free(u->alloc, u->slots, (size_t)u->slots_max * sizeof(*u->slots));
    ts_free(u->alloc, u->files, (size_t)u->files_max * sizeof(*u->files));
    ts_free(u->alloc, u, sizeof(*u));
}

static void uring_destroy(struct disk *d)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(u->calling == 0);
    drain_kernel(u);
    TS_DASSERT(u->slots_used == 0);
    if (!attached(u)) {
        io_uring_queue_exit(u->ring);
    }
    for (uint32_t i = 0; i < u->files_max; i++) {
        if (u->files[i].fd >= 0) {
            close(u->files[i].fd);
        }
    }
    uring_free(u);
}

static const struct disk_vtable uring_vtable = {
    .open = uring_open,
    .close = uring_close,
    .size = uring_size,
    .allocate = uring_allocate,
    .truncate = uring_truncate,
    .remove = uring_remove,
    .mkdir = uring_mkdir,
    .list = uring_list,
    .sync_dir = uring_sync_dir,
    .pread = uring_pread,
    .submit = uring_submit,
    .run = uring_run,
    .inflight = uring_inflight,
    .destroy = uring_destroy,
};

/* ---- Creation -------------------------------------------------------------------- */

/* Creates the ring: SINGLE_ISSUER | DEFER_TASKRUN, or without them on a kernel that
 * lacks them (before 6.1: -EINVAL). Room for two CQEs per request in flight. */
static int ring_init(struct disk_uring *u, uint32_t entries, uint32_t inflight)
{
    TS_ASSERT(entries >= 2);
    TS_ASSERT(entries <= TS_DISK_URING_RING_ENTRIES_MAX);
    TS_ASSERT(inflight > 0);
    uint64_t cq = 2 * (uint64_t)(entries > inflight ? entries : inflight);
    cq = cq > TS_DISK_URING_CQ_ENTRIES_MAX ? TS_DISK_URING_CQ_ENTRIES_MAX : cq;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = (uint32_t)cq;
    int rc = io_uring_queue_init_params(entries, &u->own_ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = (uint32_t)cq;
        rc = io_uring_queue_init_params(entries, &u->own_ring, &p);
    }
    return rc;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v == 0 ? def : v;
}

/* The backend without its ring. */
static int uring_new(const struct disk_uring_config *cfg, const struct ts_allocator *alloc,
                     struct disk_uring **out)
{
    TS_ASSERT(cfg != NULL);
    TS_ASSERT(alloc != NULL);
    TS_ASSERT(out != NULL);
    uint32_t entries = or_default(cfg->ring_entries, TS_DISK_URING_RING_ENTRIES_DEFAULT);
    uint32_t inflight = or_default(cfg->inflight_max, TS_DISK_URING_INFLIGHT_DEFAULT);
    uint32_t files = or_default(cfg->files_max, TS_DISK_URING_FILES_DEFAULT);
    if (entries < 2 || entries > TS_DISK_URING_RING_ENTRIES_MAX ||
        inflight > TS_DISK_URING_INFLIGHT_MAX || files > TS_DISK_URING_FILES_MAX) {
        return -EINVAL;
    }
    struct disk_uring *u = ts_alloc(alloc, sizeof(*u));
    if (u == NULL) {
        return -ENOMEM;
    }
    *u = (struct disk_uring){.base = {.vt = &uring_vtable}, .alloc = alloc};
    u->slots = ts_alloc(alloc, (size_t)inflight * sizeof(*u->slots));
    u->slots_max = u->slots != NULL ? inflight : 0;
    u->files = ts_alloc(alloc, (size_t)files * sizeof(*u->files));
    u->files_max = u->files != NULL ? files : 0;
    if (u->slots == NULL || u->files == NULL) {
        uring_free(u);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < inflight; i++) {
        uint32_t next = i + 1 < inflight ? i + 1 : URING_SLOT_NONE;
        u->slots[i] = (struct uring_slot){.next_free = next};
    }
    for (uint32_t i = 0; i < files; i++) {
        u->files[i] = (struct uring_file){.fd = -1};
    }
    u->owner_tid = gettid();
    *out = u;
    return 0;
}

int disk_uring_create(const struct disk_uring_config *cfg, const struct ts_allocator *alloc,
                      struct disk **out)
{
    struct disk_uring *u;
    int rc = uring_new(cfg, alloc, &u);
    if (rc < 0) {
        return rc;
    }
    uint32_t entries = or_default(cfg->ring_entries, TS_DISK_URING_RING_ENTRIES_DEFAULT);
    rc = ring_init(u, entries, u->slots_max);
    if (rc < 0) {
        uring_free(u);
        return rc;
    }
    u->ring = &u->own_ring;
    *out = &u->base;
    return 0;
}

int disk_uring_attach(const struct disk_uring_config *cfg, const struct disk_uring_host *host,
                      const struct ts_allocator *alloc, struct disk **out)
{
    TS_ASSERT(host != NULL);
    TS_ASSERT(host->ring != NULL);
    TS_ASSERT(host->wait != NULL);
    if (host->tag == 0) {
        return -EINVAL;
    }
    struct disk_uring *u;
    int rc = uring_new(cfg, alloc, &u);
    if (rc < 0) {
        return rc;
    }
    u->host = *host;
    u->ring = host->ring;
    u->tag_bits = (uint64_t)host->tag << DISK_URING_TAG_SHIFT;
    *out = &u->base;
    return 0;
}

void disk_uring_complete(struct disk *d, uint64_t user_data, int32_t res)
{
    struct disk_uring *u = uring_of(d);
    TS_ASSERT(attached(u));
    on_cqe(u, user_data, res);
    backlog_drain(u);
}
