/*
 * The simulated disk (see disk_sim.h for the model and its guarantees).
 *
 * State, all of it hanging off `struct disk_sim` (STYLE R14):
 *   inodes   one per file or directory ever created and still referenced. A file inode
 *            has a written image (what reads see), a durable image (what survives a
 *            crash), and the writes applied since its last sync: their spans (offset,
 *            length) and a copy of their bytes in `log`, so that a crash can replay,
 *            drop or tear each one exactly even when later writes overlap it.
 *   entries  one per path: the inode the live namespace names (`live`) and the one the
 *            durable namespace names (`durable`). sync_dir copies live to durable for the
 *            directory's entries; a crash copies durable back to live. An entry naming
 *            nothing is dead and is compacted away later (never during list(), so that
 *            a list callback may remove what it is shown).
 *   handles  small integers indexing a table of inode pointers.
 *   queue    submitted requests, oldest first; only the oldest can be half done (the
 *            write of a WRITE_FDATASYNC executed, its sync not yet).
 *
 * An inode is referenced by entries (live and durable) and by handles, and is freed when
 * the last reference goes. Invariants: a file's durable size never exceeds its written
 * size, and the durable buffer's capacity always covers the written size, so sync and
 * crash never allocate.
 */
#define _GNU_SOURCE /* memrchr */
#include "storage/disk/disk_sim.h"

#include "core/util/limits.h"

#include "core/util/assert.h"
#include "core/util/rand.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

_Static_assert(sizeof(size_t) == 8, "images are indexed with 64-bit sizes");
_Static_assert(TS_DISK_SIM_FILE_BYTES_MAX < INT64_MAX / 4, "buffer doubling cannot overflow");

struct sim_buf {
    uint8_t *p;
    uint64_t size;
    uint64_t cap;
};

struct sim_span {
    uint64_t offset;
    uint64_t len;
    uint64_t log_pos; /* where its bytes start in the inode's log */
};

struct sim_inode {
    struct sim_inode *next; /* all inodes, newest first */
    uint32_t refs;
    bool is_dir;
    struct sim_buf written;
    struct sim_buf durable;
    struct sim_buf log;
    struct sim_span *spans;
    uint32_t span_count;
    uint32_t span_cap;
};

struct sim_entry {
    char *path;
    size_t path_bytes; /* strlen(path) */
    struct sim_inode *live;
    struct sim_inode *durable;
};

struct sim_handle {
    struct sim_inode *inode; /* NULL: free */
    bool readonly;
};

struct disk_sim {
    struct disk base; /* first: a struct disk * is a struct disk_sim * */
    const struct ts_allocator *alloc;
    struct ts_rand rand;
    bool metadata_durable;
    uint32_t listing; /* list() calls in progress: no compaction meanwhile */
    struct sim_inode *inodes;
    struct sim_entry *entries;
    uint32_t entry_count;
    uint32_t entry_cap;
    struct sim_handle *handles;
    uint32_t handle_cap;
    struct disk_req *head;
    struct disk_req *tail;
    uint32_t queued;
    uint32_t head_steps; /* steps of the oldest request already executed */
    uint32_t fail_kinds;
    int fail_err;
    uint32_t fail_after;
    bool fail_sticky;
    bool fail_fired;
    uint64_t capacity;
};

static const struct disk_vtable sim_vtable;

static struct disk_sim *sim_of(struct disk *d)
{
    TS_ASSERT(d != NULL);
    struct disk_sim *s = (struct disk_sim *)d;
    TS_ASSERT(s->base.vt == &sim_vtable);
    return s;
}

/* ---- Buffers and arrays ---------------------------------------------------------- */

static int buf_reserve(const struct ts_allocator *a, struct sim_buf *b, uint64_t need)
{
    TS_DASSERT(b->size <= b->cap);
    TS_ASSERT(need <= 2 * TS_DISK_SIM_FILE_BYTES_MAX);
    if (need <= b->cap) {
        return 0;
    }
    uint64_t cap = b->cap < TS_DISK_SIM_BUF_BYTES_MIN ? TS_DISK_SIM_BUF_BYTES_MIN : b->cap;
    while (cap < need) {
        cap *= 2;
    }
    uint8_t *p = b->p == NULL ? ts_alloc(a, cap) : ts_realloc(a, b->p, b->cap, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    TS_ASSERT(b->cap >= need);
    return 0;
}

static void buf_free(const struct ts_allocator *a, struct sim_buf *b)
{
    TS_DASSERT(b->size <= b->cap);
    TS_DASSERT(b->p != NULL || b->cap == 0);
    ts_free(a, b->p, b->cap);
    *b = (struct sim_buf){0};
}

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap). */
static int array_reserve(const struct ts_allocator *a, void **p, uint32_t *cap, uint32_t need,
                         size_t elem)
{
    TS_ASSERT(elem > 0);
    TS_ASSERT(need <= UINT32_MAX / 2);
    if (need <= *cap) {
        return 0;
    }
    uint32_t n = *cap < 8 ? 8 : *cap;
    while (n < need) {
        n *= 2;
    }
    void *q = *p == NULL ? ts_alloc(a, n * elem) : ts_realloc(a, *p, *cap * elem, n * elem);
    if (q == NULL) {
        return -ENOMEM;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* ---- Faults ---------------------------------------------------------------------- */

/* Returns 0, or the injected -errno when this operation of `kind` must fail. */
static int fault_check(struct disk_sim *s, uint32_t kind)
{
    TS_DASSERT(kind != 0);
    TS_DASSERT((kind & (kind - 1)) == 0);
    if ((s->fail_kinds & kind) == 0) {
        return 0;
    }
    if (s->fail_fired) {
        TS_ASSERT(s->fail_sticky);
        return -s->fail_err;
    }
    if (s->fail_after > 0) {
        s->fail_after--;
        return 0;
    }
    s->fail_fired = true;
    if (!s->fail_sticky) {
        s->fail_kinds = 0;
        s->fail_fired = false;
    }
    return -s->fail_err;
}

void disk_sim_fail(struct disk_sim *s, uint32_t kinds, int err, uint32_t after, bool sticky)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(kinds != 0);
    TS_ASSERT((kinds & ~DISK_SIM_FAULT_ALL) == 0);
    TS_ASSERT(err == EIO || err == ENOSPC);
    s->fail_kinds = kinds;
    s->fail_err = err;
    s->fail_after = after;
    s->fail_sticky = sticky;
    s->fail_fired = false;
}

void disk_sim_fail_clear(struct disk_sim *s)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    s->fail_kinds = 0;
    s->fail_fired = false;
    s->fail_after = 0;
}

void disk_sim_set_capacity(struct disk_sim *s, uint64_t bytes)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    s->capacity = bytes;
}

/* Sum of the written sizes of every inode (the space the disk holds). */
static uint64_t used_bytes(const struct disk_sim *s)
{
    uint64_t used = 0;
    uint32_t n = 0;
    for (const struct sim_inode *i = s->inodes; i != NULL; i = i->next) {
        used += i->written.size;
        n++;
    }
    TS_DASSERT(n > 0 || used == 0);
    TS_DASSERT(used <= (uint64_t)n * TS_DISK_SIM_FILE_BYTES_MAX);
    return used;
}

/* 0 when the file may grow from its size to `end`, else -ENOSPC or -EFBIG. */
static int room_check(const struct disk_sim *s, const struct sim_inode *ino, uint64_t end)
{
    TS_DASSERT(!ino->is_dir);
    TS_DASSERT(ino->durable.size <= ino->written.size);
    if (end > TS_DISK_SIM_FILE_BYTES_MAX) {
        return -EFBIG;
    }
    if (end <= ino->written.size || s->capacity == 0) {
        return 0;
    }
    if (used_bytes(s) + (end - ino->written.size) > s->capacity) {
        return -ENOSPC;
    }
    return 0;
}

/* ---- Inodes ---------------------------------------------------------------------- */

static void inode_free(struct disk_sim *s, struct sim_inode *ino)
{
    TS_ASSERT(ino->refs == 0);
    struct sim_inode **pp = &s->inodes;
    while (*pp != ino) {
        TS_ASSERT(*pp != NULL);
        pp = &(*pp)->next;
    }
    *pp = ino->next;
    buf_free(s->alloc, &ino->written);
    buf_free(s->alloc, &ino->durable);
    buf_free(s->alloc, &ino->log);
    ts_free(s->alloc, ino->spans, (size_t)ino->span_cap * sizeof(*ino->spans));
    ts_free(s->alloc, ino, sizeof(*ino));
}

static void inode_ref(struct sim_inode *ino)
{
    if (ino != NULL) {
        TS_ASSERT(ino->refs > 0);
        TS_ASSERT(ino->refs < UINT32_MAX);
        ino->refs++;
    }
}

static void inode_unref(struct disk_sim *s, struct sim_inode *ino)
{
    if (ino == NULL) {
        return;
    }
    TS_ASSERT(ino->refs > 0);
    TS_DASSERT(s->inodes != NULL);
    ino->refs--;
    if (ino->refs == 0) {
        inode_free(s, ino);
    }
}

/* Forgets the writes since the last sync. */
static void inode_forget_unsynced(struct sim_inode *ino)
{
    TS_DASSERT(ino->log.size <= ino->log.cap);
    ino->log.size = 0;
    ino->span_count = 0;
    TS_DASSERT(ino->span_count <= ino->span_cap);
}

/* Makes the written image durable (fdatasync). Never allocates: see the invariant. */
static void inode_sync(struct sim_inode *ino)
{
    TS_ASSERT(!ino->is_dir);
    TS_ASSERT(ino->durable.cap >= ino->written.size);
    if (ino->written.size > 0) {
        memcpy(ino->durable.p, ino->written.p, ino->written.size);
    }
    ino->durable.size = ino->written.size;
    inode_forget_unsynced(ino);
}

/* Sets an image's size, zero-filling growth; capacity must already be there. */
static void image_resize(struct sim_buf *b, uint64_t size)
{
    TS_ASSERT(size <= b->cap);
    TS_DASSERT(b->size <= b->cap);
    if (size > b->size) {
        memset(b->p + b->size, 0, size - b->size);
    }
    b->size = size;
}

/* ---- Paths and entries ----------------------------------------------------------- */

/* The directories that always exist: the working directory and the root. */
static bool path_is_root(const char *path)
{
    return strcmp(path, ".") == 0 || strcmp(path, "/") == 0;
}

static int path_check(const char *path, size_t *bytes)
{
    TS_ASSERT(path != NULL);
    TS_ASSERT(bytes != NULL);
    size_t n = strnlen(path, TS_DISK_SIM_PATH_BYTES_MAX);
    if (n == TS_DISK_SIM_PATH_BYTES_MAX) {
        return -ENAMETOOLONG;
    }
    if (n == 0 || (n > 1 && path[n - 1] == '/')) {
        return -EINVAL;
    }
    *bytes = n;
    return 0;
}

/* Length of the parent's name within path; SIZE_MAX for ".", 0 for "/". */
static size_t parent_bytes(const char *path, size_t bytes)
{
    TS_DASSERT(bytes > 0);
    const char *slash = memrchr(path, '/', bytes);
    if (slash == NULL) {
        return SIZE_MAX;
    }
    TS_DASSERT(slash < path + bytes - 1);
    return (size_t)(slash - path);
}

/* True when the entry at path lies directly in dir. */
static bool entry_in_dir(const struct sim_entry *e, const char *dir)
{
    TS_DASSERT(e->path_bytes > 0);
    TS_DASSERT(dir != NULL);
    size_t p = parent_bytes(e->path, e->path_bytes);
    if (p == SIZE_MAX) {
        return strcmp(dir, ".") == 0;
    }
    if (p == 0) {
        return strcmp(dir, "/") == 0;
    }
    return strlen(dir) == p && memcmp(e->path, dir, p) == 0;
}

static const char *entry_base(const struct sim_entry *e)
{
    size_t p = parent_bytes(e->path, e->path_bytes);
    const char *base = p == SIZE_MAX ? e->path : e->path + p + 1;
    TS_DASSERT(base < e->path + e->path_bytes);
    TS_DASSERT(*base != '\0');
    return base;
}

static struct sim_entry *entry_find(struct disk_sim *s, const char *path, size_t bytes)
{
    TS_DASSERT(bytes > 0);
    TS_DASSERT(s->entry_count <= s->entry_cap);
    for (uint32_t i = 0; i < s->entry_count; i++) {
        struct sim_entry *e = &s->entries[i];
        if (e->path_bytes == bytes && memcmp(e->path, path, bytes) == 0) {
            return e;
        }
    }
    return NULL;
}

static void entry_set_live(struct disk_sim *s, struct sim_entry *e, struct sim_inode *ino)
{
    TS_DASSERT(e->path != NULL);
    TS_DASSERT(ino == NULL || ino->refs > 0);
    inode_ref(ino);
    inode_unref(s, e->live);
    e->live = ino;
}

static void entry_set_durable(struct disk_sim *s, struct sim_entry *e, struct sim_inode *ino)
{
    TS_DASSERT(e->path != NULL);
    TS_DASSERT(ino == NULL || ino->refs > 0);
    inode_ref(ino);
    inode_unref(s, e->durable);
    e->durable = ino;
}

/* Removes dead entries (naming nothing). Not while a list() is iterating. */
static void entries_compact(struct disk_sim *s)
{
    TS_ASSERT(s->listing == 0);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < s->entry_count; i++) {
        struct sim_entry *e = &s->entries[i];
        if (e->live == NULL && e->durable == NULL) {
            ts_free(s->alloc, e->path, e->path_bytes + 1);
            continue;
        }
        s->entries[kept++] = *e;
    }
    TS_ASSERT(kept <= s->entry_count);
    s->entry_count = kept;
}

/* True when dir names a directory that exists in the live namespace. */
static bool dir_exists(struct disk_sim *s, const char *dir, size_t bytes)
{
    TS_DASSERT(bytes > 0);
    TS_DASSERT(dir != NULL);
    if (bytes == 1 && (dir[0] == '.' || dir[0] == '/')) {
        return true;
    }
    struct sim_entry *e = entry_find(s, dir, bytes);
    return e != NULL && e->live != NULL && e->live->is_dir;
}

static bool parent_exists(struct disk_sim *s, const char *path, size_t bytes)
{
    TS_DASSERT(bytes > 0);
    size_t p = parent_bytes(path, bytes);
    if (p == SIZE_MAX || p == 0) {
        return true;
    }
    TS_DASSERT(p < bytes);
    return dir_exists(s, path, p);
}

/* Returns the entry for path, creating a dead one if there is none. */
static int entry_get(struct disk_sim *s, const char *path, size_t bytes, struct sim_entry **out)
{
    TS_DASSERT(bytes > 0);
    struct sim_entry *e = entry_find(s, path, bytes);
    if (e != NULL) {
        *out = e;
        return 0;
    }
    int rc = array_reserve(s->alloc, (void **)&s->entries, &s->entry_cap, s->entry_count + 1,
                           sizeof(*s->entries));
    if (rc != 0) {
        return rc;
    }
    char *copy = ts_alloc(s->alloc, bytes + 1);
    if (copy == NULL) {
        return -ENOMEM;
    }
    memcpy(copy, path, bytes + 1);
    e = &s->entries[s->entry_count++];
    *e = (struct sim_entry){.path = copy, .path_bytes = bytes};
    TS_ASSERT(e->path[bytes] == '\0');
    TS_ASSERT(s->entry_count <= s->entry_cap);
    *out = e;
    return 0;
}

/* Creates a file or directory inode named path in the live namespace (and the durable
 * one with metadata_durable). The parent was checked by the caller. */
static int node_create(struct disk_sim *s, const char *path, size_t bytes, bool is_dir,
                       struct sim_inode **out)
{
    TS_ASSERT(parent_exists(s, path, bytes));
    if (s->listing == 0) {
        entries_compact(s);
    }
    struct sim_inode *ino = ts_alloc(s->alloc, sizeof(*ino));
    if (ino == NULL) {
        return -ENOMEM;
    }
    *ino = (struct sim_inode){.next = s->inodes, .refs = 1, .is_dir = is_dir};
    s->inodes = ino;
    struct sim_entry *e = NULL;
    int rc = entry_get(s, path, bytes, &e);
    if (rc != 0) {
        inode_unref(s, ino);
        return rc;
    }
    TS_ASSERT(e->live == NULL);
    entry_set_live(s, e, ino);
    if (s->metadata_durable) {
        entry_set_durable(s, e, ino);
    }
    inode_unref(s, ino); /* the entry holds it now */
    *out = ino;
    return 0;
}

/* ---- Handles --------------------------------------------------------------------- */

/* Finds the lowest free handle (growing the table); does not claim it. */
static int handle_find_free(struct disk_sim *s, uint32_t *out)
{
    TS_DASSERT(s->handle_cap <= TS_DISK_SIM_HANDLES_MAX);
    for (uint32_t h = 0; h < s->handle_cap; h++) {
        if (s->handles[h].inode == NULL) {
            *out = h;
            return 0;
        }
    }
    if (s->handle_cap == TS_DISK_SIM_HANDLES_MAX) {
        return -EMFILE;
    }
    uint32_t old = s->handle_cap;
    int rc =
        array_reserve(s->alloc, (void **)&s->handles, &s->handle_cap, old + 1, sizeof(*s->handles));
    if (rc != 0) {
        return rc;
    }
    memset(&s->handles[old], 0, (size_t)(s->handle_cap - old) * sizeof(*s->handles));
    TS_ASSERT(s->handle_cap > old);
    *out = old;
    return 0;
}

static int handle_get(struct disk_sim *s, uint32_t file, bool for_write, struct sim_inode **out)
{
    TS_DASSERT(out != NULL);
    if (file >= s->handle_cap || s->handles[file].inode == NULL) {
        return -EBADF;
    }
    if (for_write && s->handles[file].readonly) {
        return -EBADF;
    }
    *out = s->handles[file].inode;
    TS_ASSERT(!(*out)->is_dir);
    return 0;
}

static void handles_close_all(struct disk_sim *s)
{
    TS_DASSERT(s->handle_cap <= TS_DISK_SIM_HANDLES_MAX);
    for (uint32_t h = 0; h < s->handle_cap; h++) {
        struct sim_inode *ino = s->handles[h].inode;
        s->handles[h].inode = NULL;
        inode_unref(s, ino);
    }
    TS_DASSERT(s->handle_cap == 0 || s->handles[0].inode == NULL);
}

/* ---- Data operations (one primitive step each) ----------------------------------- */

static int32_t data_write(struct disk_sim *s, uint32_t file, const void *buf, uint32_t len,
                          uint64_t offset)
{
    TS_ASSERT(buf != NULL || len == 0);
    struct sim_inode *ino;
    int rc = handle_get(s, file, true, &ino);
    if (rc == 0) {
        rc = fault_check(s, DISK_SIM_FAULT_WRITE);
    }
    if (rc != 0 || len == 0) {
        return rc;
    }
    uint64_t end = offset + len;
    rc = offset > TS_DISK_SIM_FILE_BYTES_MAX ? -EFBIG : room_check(s, ino, end);
    if (rc != 0) {
        return rc;
    }
    /* Reserve everything first so that a failure changes nothing. */
    uint64_t size = end > ino->written.size ? end : ino->written.size;
    if (buf_reserve(s->alloc, &ino->written, size) != 0 ||
        buf_reserve(s->alloc, &ino->durable, size) != 0 ||
        buf_reserve(s->alloc, &ino->log, ino->log.size + len) != 0 ||
        array_reserve(s->alloc, (void **)&ino->spans, &ino->span_cap, ino->span_count + 1,
                      sizeof(*ino->spans)) != 0) {
        return -ENOMEM;
    }
    if (offset > ino->written.size) {
        image_resize(&ino->written, offset);
    }
    memcpy(ino->written.p + offset, buf, len);
    ino->written.size = size;
    memcpy(ino->log.p + ino->log.size, buf, len);
    ino->spans[ino->span_count++] =
        (struct sim_span){.offset = offset, .len = len, .log_pos = ino->log.size};
    ino->log.size += len;
    TS_ASSERT(ino->durable.cap >= ino->written.size);
    TS_ASSERT(ino->written.size >= end);
    return (int32_t)len;
}

static int64_t data_read(struct disk_sim *s, uint32_t file, void *buf, size_t len, uint64_t offset)
{
    TS_ASSERT(buf != NULL || len == 0);
    struct sim_inode *ino;
    int rc = handle_get(s, file, false, &ino);
    if (rc == 0) {
        rc = fault_check(s, DISK_SIM_FAULT_READ);
    }
    if (rc != 0) {
        return rc;
    }
    if (offset >= ino->written.size) {
        return 0;
    }
    uint64_t n = ino->written.size - offset;
    if (n > len) {
        n = len;
    }
    memcpy(buf, ino->written.p + offset, n);
    TS_ASSERT(offset + n <= ino->written.size);
    return (int64_t)n;
}

static int32_t data_sync(struct disk_sim *s, uint32_t file)
{
    struct sim_inode *ino;
    int rc = handle_get(s, file, false, &ino);
    if (rc == 0) {
        rc = fault_check(s, DISK_SIM_FAULT_SYNC);
    }
    if (rc != 0) {
        return rc;
    }
    inode_sync(ino);
    TS_ASSERT(ino->span_count == 0);
    TS_DASSERT(ino->durable.size == ino->written.size);
    return 0;
}

/* Executes the next step of req; returns true when req is complete (res set). */
static bool req_step(struct disk_sim *s, struct disk_req *req)
{
    TS_ASSERT(req == s->head);
    TS_ASSERT(s->head_steps < 2);
    switch (req->op) {
    case DISK_OP_WRITE:
        req->res = data_write(s, req->file, req->buf, req->len, req->offset);
        return true;
    case DISK_OP_READ:
        req->res = (int32_t)data_read(s, req->file, req->buf, req->len, req->offset);
        return true;
    case DISK_OP_FDATASYNC:
        req->res = data_sync(s, req->file);
        return true;
    case DISK_OP_WRITE_FDATASYNC:
        if (s->head_steps == 0) {
            int32_t res = data_write(s, req->file, req->buf, req->len, req->offset);
            if (res < 0) {
                req->res = res;
                return true;
            }
            s->head_steps = 1;
            return false;
        }
        req->res = data_sync(s, req->file);
        if (req->res == 0) {
            req->res = (int32_t)req->len;
        }
        return true;
    default:
        TS_ASSERT(!"unknown disk op");
        return true;
    }
}

/* One step of the oldest request; *called tells whether its callback ran. */
static bool sim_step(struct disk_sim *s, bool *called)
{
    *called = false;
    struct disk_req *req = s->head;
    if (req == NULL) {
        TS_ASSERT(s->queued == 0);
        return false;
    }
    TS_ASSERT(s->queued > 0);
    if (!req_step(s, req)) {
        return true;
    }
    s->head = req->next_;
    if (s->head == NULL) {
        s->tail = NULL;
    }
    s->queued--;
    s->head_steps = 0;
    req->next_ = NULL;
    *called = true;
    req->cb(req); /* may submit, close, even crash */
    return true;
}

bool disk_sim_step(struct disk_sim *s)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    bool called;
    return sim_step(s, &called);
}

/* ---- The vtable: data path ------------------------------------------------------- */

static void sim_submit(struct disk *d, struct disk_req *req)
{
    struct disk_sim *s = sim_of(d);
    TS_ASSERT(req != NULL);
    TS_ASSERT(disk_req_valid(req));
    TS_ASSERT(s->queued < UINT32_MAX);
    req->res = 0;
    req->next_ = NULL;
    if (s->tail == NULL) {
        s->head = req;
    } else {
        s->tail->next_ = req;
    }
    s->tail = req;
    s->queued++;
}

static int sim_run(struct disk *d, bool wait)
{
    struct disk_sim *s = sim_of(d);
    (void)wait; /* every step completes at once: there is never anything to wait for */
    uint64_t budget = 2 * (uint64_t)s->queued + TS_DISK_SIM_RUN_EXTRA_STEPS_MAX;
    int callbacks = 0;
    bool called;
    while (budget > 0 && sim_step(s, &called)) {
        budget--;
        callbacks += called ? 1 : 0;
    }
    TS_ASSERT(callbacks >= 0);
    TS_ASSERT(s->head == NULL || budget == 0);
    return callbacks;
}

static uint32_t sim_inflight(struct disk *d)
{
    struct disk_sim *s = sim_of(d);
    TS_DASSERT(s->queued > 0 || s->head == NULL);
    TS_DASSERT((s->head == NULL) == (s->tail == NULL));
    return s->queued;
}

/* ---- The vtable: metadata path --------------------------------------------------- */

static bool file_busy(const struct disk_sim *s, uint32_t file)
{
    TS_DASSERT(file < s->handle_cap);
    uint32_t n = 0;
    for (const struct disk_req *r = s->head; r != NULL; r = r->next_) {
        if (r->file == file) {
            return true;
        }
        n++;
    }
    TS_ASSERT(n == s->queued);
    return false;
}

static int sim_open(struct disk *d, const char *path, uint32_t flags, uint32_t *file)
{
    struct disk_sim *s = sim_of(d);
    TS_ASSERT(file != NULL);
    TS_ASSERT((flags & ~(DISK_OPEN_CREATE | DISK_OPEN_EXCL | DISK_OPEN_READONLY)) == 0);
    size_t bytes;
    int rc = path_check(path, &bytes);
    if (rc == 0) {
        rc = fault_check(s, DISK_SIM_FAULT_OPEN);
    }
    if (rc != 0) {
        return rc;
    }
    if (path_is_root(path)) {
        return (flags & DISK_OPEN_EXCL) != 0 ? -EEXIST : -EISDIR;
    }
    struct sim_entry *e = entry_find(s, path, bytes);
    struct sim_inode *ino = e != NULL ? e->live : NULL;
    if (ino != NULL && (flags & DISK_OPEN_CREATE) != 0 && (flags & DISK_OPEN_EXCL) != 0) {
        return -EEXIST;
    }
    if (ino != NULL && ino->is_dir) {
        return -EISDIR;
    }
    if (ino == NULL && ((flags & DISK_OPEN_CREATE) == 0 || !parent_exists(s, path, bytes))) {
        return -ENOENT;
    }
    uint32_t h;
    rc = handle_find_free(s, &h);
    if (rc == 0 && ino == NULL) {
        rc = node_create(s, path, bytes, false, &ino);
    }
    if (rc != 0) {
        return rc;
    }
    inode_ref(ino);
    s->handles[h] =
        (struct sim_handle){.inode = ino, .readonly = (flags & DISK_OPEN_READONLY) != 0};
    *file = h;
    return 0;
}

static int sim_close(struct disk *d, uint32_t file)
{
    struct disk_sim *s = sim_of(d);
    struct sim_inode *ino;
    int rc = handle_get(s, file, false, &ino);
    if (rc != 0) {
        return rc;
    }
    TS_DASSERT(!file_busy(s, file)); /* closing under a request is a caller bug */
    s->handles[file].inode = NULL;
    inode_unref(s, ino);
    TS_ASSERT(s->handles[file].inode == NULL);
    return 0;
}

static int sim_size(struct disk *d, uint32_t file, uint64_t *bytes)
{
    struct disk_sim *s = sim_of(d);
    TS_ASSERT(bytes != NULL);
    struct sim_inode *ino;
    int rc = handle_get(s, file, false, &ino);
    if (rc != 0) {
        return rc;
    }
    TS_DASSERT(ino->durable.size <= ino->written.size);
    *bytes = ino->written.size;
    return 0;
}

/* Gives both images at least `bytes` (allocate) or exactly `bytes` (truncate) of size,
 * zero-filling growth: durable at once, as if followed by fsync. */
static int resize_both(struct disk_sim *s, struct sim_inode *ino, uint64_t bytes, bool exact)
{
    TS_DASSERT(ino->durable.size <= ino->written.size);
    int rc = room_check(s, ino, bytes);
    if (rc != 0) {
        return rc;
    }
    uint64_t written = exact || bytes > ino->written.size ? bytes : ino->written.size;
    if (buf_reserve(s->alloc, &ino->written, written) != 0 ||
        buf_reserve(s->alloc, &ino->durable, written) != 0) {
        return -ENOMEM;
    }
    image_resize(&ino->written, written);
    if (exact || bytes > ino->durable.size) {
        image_resize(&ino->durable, bytes);
    }
    TS_ASSERT(ino->durable.size <= ino->written.size);
    return 0;
}

static int sim_allocate(struct disk *d, uint32_t file, uint64_t bytes)
{
    struct disk_sim *s = sim_of(d);
    struct sim_inode *ino;
    int rc = handle_get(s, file, true, &ino);
    if (rc == 0) {
        rc = fault_check(s, DISK_SIM_FAULT_ALLOCATE);
    }
    if (rc != 0) {
        return rc;
    }
    rc = resize_both(s, ino, bytes, false);
    TS_ASSERT(rc != 0 || ino->written.size >= bytes);
    TS_ASSERT(rc != 0 || ino->durable.size >= bytes);
    return rc;
}

/* Clips the unsynced writes to the first `bytes` of the file (after a truncation). */
static void spans_clip(struct sim_inode *ino, uint64_t bytes)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < ino->span_count; i++) {
        struct sim_span sp = ino->spans[i];
        if (sp.offset >= bytes) {
            continue;
        }
        if (sp.offset + sp.len > bytes) {
            sp.len = bytes - sp.offset;
        }
        ino->spans[kept++] = sp;
    }
    TS_ASSERT(kept <= ino->span_count);
    ino->span_count = kept;
    TS_DASSERT(kept == 0 || ino->spans[kept - 1].offset + ino->spans[kept - 1].len <= bytes);
}

static int sim_truncate(struct disk *d, uint32_t file, uint64_t bytes)
{
    struct disk_sim *s = sim_of(d);
    struct sim_inode *ino;
    int rc = handle_get(s, file, true, &ino);
    if (rc != 0) {
        return rc;
    }
    rc = resize_both(s, ino, bytes, true);
    if (rc != 0) {
        return rc;
    }
    spans_clip(ino, bytes);
    TS_ASSERT(ino->written.size == bytes);
    TS_ASSERT(ino->durable.size == bytes);
    return 0;
}

static int sim_remove(struct disk *d, const char *path)
{
    struct disk_sim *s = sim_of(d);
    size_t bytes;
    int rc = path_check(path, &bytes);
    if (rc != 0) {
        return rc;
    }
    if (path_is_root(path)) {
        return -EISDIR;
    }
    struct sim_entry *e = entry_find(s, path, bytes);
    if (e == NULL || e->live == NULL) {
        return -ENOENT;
    }
    if (e->live->is_dir) {
        return -EISDIR;
    }
    entry_set_live(s, e, NULL);
    if (s->metadata_durable) {
        entry_set_durable(s, e, NULL);
    }
    TS_ASSERT(e->live == NULL);
    TS_DASSERT(!s->metadata_durable || e->durable == NULL);
    return 0;
}

static int sim_mkdir(struct disk *d, const char *path)
{
    struct disk_sim *s = sim_of(d);
    size_t bytes;
    int rc = path_check(path, &bytes);
    if (rc != 0) {
        return rc;
    }
    TS_DASSERT(bytes > 0);
    if (path_is_root(path)) {
        return -EEXIST;
    }
    struct sim_entry *e = entry_find(s, path, bytes);
    if (e != NULL && e->live != NULL) {
        return -EEXIST;
    }
    if (!parent_exists(s, path, bytes)) {
        return -ENOENT;
    }
    struct sim_inode *ino;
    rc = node_create(s, path, bytes, true, &ino);
    TS_ASSERT(rc != 0 || ino->is_dir);
    return rc;
}

/* 0 when dir names an existing directory, else -ENOENT or -ENOTDIR. */
static int dir_check(struct disk_sim *s, const char *dir)
{
    size_t bytes;
    int rc = path_check(dir, &bytes);
    if (rc != 0) {
        return rc;
    }
    TS_DASSERT(bytes > 0);
    TS_DASSERT(dir[bytes] == '\0');
    if (dir_exists(s, dir, bytes)) {
        return 0;
    }
    struct sim_entry *e = entry_find(s, dir, bytes);
    return e != NULL && e->live != NULL ? -ENOTDIR : -ENOENT;
}

static int sim_list(struct disk *d, const char *dir, int (*fn)(void *arg, const char *name),
                    void *arg)
{
    struct disk_sim *s = sim_of(d);
    TS_ASSERT(fn != NULL);
    int rc = dir_check(s, dir);
    if (rc != 0) {
        return rc;
    }
    s->listing++;
    /* By index: fn may create entries (which may move the array) or remove them. */
    for (uint32_t i = 0; i < s->entry_count && rc == 0; i++) {
        const struct sim_entry *e = &s->entries[i];
        if (e->live != NULL && entry_in_dir(e, dir)) {
            rc = fn(arg, entry_base(e));
        }
    }
    TS_ASSERT(s->listing > 0);
    s->listing--;
    return rc;
}

static int sim_sync_dir(struct disk *d, const char *dir)
{
    struct disk_sim *s = sim_of(d);
    int rc = dir_check(s, dir);
    if (rc == 0) {
        rc = fault_check(s, DISK_SIM_FAULT_SYNC);
    }
    if (rc != 0) {
        return rc;
    }
    for (uint32_t i = 0; i < s->entry_count; i++) {
        struct sim_entry *e = &s->entries[i];
        if (entry_in_dir(e, dir)) {
            entry_set_durable(s, e, e->live);
            TS_DASSERT(e->durable == e->live);
        }
    }
    TS_DASSERT(s->entry_count <= s->entry_cap);
    return 0;
}

static int64_t sim_pread(struct disk *d, uint32_t file, void *buf, size_t len, uint64_t offset)
{
    struct disk_sim *s = sim_of(d);
    TS_ASSERT(buf != NULL || len == 0);
    TS_ASSERT(len <= INT64_MAX);
    return data_read(s, file, buf, len, offset);
}

static void sim_destroy(struct disk *d)
{
    struct disk_sim *s = sim_of(d);
    TS_ASSERT(s->listing == 0);
    handles_close_all(s);
    for (uint32_t i = 0; i < s->entry_count; i++) {
        entry_set_live(s, &s->entries[i], NULL);
        entry_set_durable(s, &s->entries[i], NULL);
    }
    entries_compact(s);
    TS_ASSERT(s->inodes == NULL); /* every inode was referenced by an entry or a handle */
    TS_ASSERT(s->entry_count == 0);
    ts_free(s->alloc, s->entries, (size_t)s->entry_cap * sizeof(*s->entries));
    ts_free(s->alloc, s->handles, (size_t)s->handle_cap * sizeof(*s->handles));
    ts_free(s->alloc, s, sizeof(*s));
}

static const struct disk_vtable sim_vtable = {
    .open = sim_open,
    .close = sim_close,
    .size = sim_size,
    .allocate = sim_allocate,
    .truncate = sim_truncate,
    .remove = sim_remove,
    .mkdir = sim_mkdir,
    .list = sim_list,
    .sync_dir = sim_sync_dir,
    .pread = sim_pread,
    .submit = sim_submit,
    .run = sim_run,
    .inflight = sim_inflight,
    .destroy = sim_destroy,
};

/* ---- Crash ----------------------------------------------------------------------- */

/* Bytes of unsynced write i (of n) that reach the platter under the policy. */
static uint64_t crash_kept(struct disk_sim *s, enum disk_sim_crash_policy policy,
                           uint64_t tear_bytes, uint64_t len, bool last)
{
    TS_DASSERT(len > 0);
    switch (policy) {
    case DISK_SIM_CRASH_DROP:
        return 0;
    case DISK_SIM_CRASH_KEEP:
        return len;
    case DISK_SIM_CRASH_TEAR:
        return !last ? len : (tear_bytes < len ? tear_bytes : len);
    case DISK_SIM_CRASH_RANDOM: {
        uint64_t choice = ts_rand_below(&s->rand, 3);
        if (choice == 0) {
            return 0;
        }
        return choice == 1 ? len : ts_rand_below(&s->rand, len);
    }
    }
    TS_ASSERT(!"unknown crash policy");
    return 0;
}

/* Rebuilds a file as the crash leaves it: its durable image plus what the policy keeps
 * of each unsynced write, replayed in order. The result is durable. Never allocates:
 * the written buffer covers every span, the durable buffer covers the written size. */
static void inode_crash(struct disk_sim *s, struct sim_inode *ino,
                        enum disk_sim_crash_policy policy, uint64_t tear_bytes)
{
    TS_ASSERT(ino->durable.size <= ino->written.size);
    TS_ASSERT(ino->durable.cap >= ino->written.size);
    if (ino->durable.size > 0) {
        memcpy(ino->written.p, ino->durable.p, ino->durable.size);
    }
    ino->written.size = ino->durable.size;
    for (uint32_t i = 0; i < ino->span_count; i++) {
        const struct sim_span *sp = &ino->spans[i];
        uint64_t kept = crash_kept(s, policy, tear_bytes, sp->len, i + 1 == ino->span_count);
        if (kept == 0) {
            continue;
        }
        TS_ASSERT(sp->offset + kept <= ino->written.cap);
        if (sp->offset > ino->written.size) {
            image_resize(&ino->written, sp->offset);
        }
        memcpy(ino->written.p + sp->offset, ino->log.p + sp->log_pos, kept);
        if (sp->offset + kept > ino->written.size) {
            ino->written.size = sp->offset + kept;
        }
    }
    inode_sync(ino);
}

/* Reverts the live namespace to the durable one, then drops entries whose directory did
 * not survive (they can no longer be reached). */
static void namespace_revert(struct disk_sim *s)
{
    TS_ASSERT(s->listing == 0);
    TS_ASSERT(!s->metadata_durable);
    for (uint32_t i = 0; i < s->entry_count; i++) {
        entry_set_live(s, &s->entries[i], s->entries[i].durable);
    }
    bool changed = true;
    for (uint32_t pass = 0; changed; pass++) {
        TS_ASSERT(pass <= s->entry_count); /* each pass removes at least one entry */
        changed = false;
        for (uint32_t i = 0; i < s->entry_count; i++) {
            struct sim_entry *e = &s->entries[i];
            if (e->live != NULL && !parent_exists(s, e->path, e->path_bytes)) {
                entry_set_live(s, e, NULL);
                entry_set_durable(s, e, NULL);
                changed = true;
            }
        }
    }
}

void disk_sim_crash(struct disk_sim *s, enum disk_sim_crash_policy policy, uint64_t tear_bytes)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(policy >= DISK_SIM_CRASH_RANDOM);
    TS_ASSERT(policy <= DISK_SIM_CRASH_TEAR);
    TS_ASSERT(s->listing == 0);
    /* Abandon the queue: the requests belong to their callers and are never touched. */
    s->head = NULL;
    s->tail = NULL;
    s->queued = 0;
    s->head_steps = 0;
    handles_close_all(s);
    if (!s->metadata_durable) {
        namespace_revert(s);
    }
    entries_compact(s);
    for (struct sim_inode *i = s->inodes; i != NULL; i = i->next) {
        if (!i->is_dir) {
            inode_crash(s, i, policy, tear_bytes);
        }
    }
}

/* ---- The rest of the public API -------------------------------------------------- */

int disk_sim_create(uint64_t seed, const struct ts_allocator *alloc, struct disk_sim **out)
{
    TS_ASSERT(alloc != NULL);
    TS_ASSERT(out != NULL);
    struct disk_sim *s = ts_alloc(alloc, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    *s = (struct disk_sim){.base = {.vt = &sim_vtable}, .alloc = alloc};
    ts_rand_seed(&s->rand, seed);
    *out = s;
    return 0;
}

struct disk *disk_sim_disk(struct disk_sim *s)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    return &s->base;
}

void disk_sim_set_metadata_durable(struct disk_sim *s, bool durable)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    s->metadata_durable = durable;
    if (durable) {
        /* From now on everything is durable at once, including what came before. */
        for (uint32_t i = 0; i < s->entry_count; i++) {
            entry_set_durable(s, &s->entries[i], s->entries[i].live);
        }
    }
}

/* The live file at path, or NULL. */
static struct sim_inode *file_at(struct disk_sim *s, const char *path)
{
    size_t bytes;
    if (path_check(path, &bytes) != 0) {
        return NULL;
    }
    TS_DASSERT(bytes > 0);
    struct sim_entry *e = entry_find(s, path, bytes);
    if (e == NULL || e->live == NULL || e->live->is_dir) {
        return NULL;
    }
    TS_DASSERT(e->live->refs > 0);
    return e->live;
}

static void flip_in(struct sim_buf *b, uint64_t offset, uint8_t mask)
{
    TS_DASSERT(mask != 0);
    TS_DASSERT(b->size <= b->cap);
    if (offset < b->size) {
        b->p[offset] ^= mask;
    }
}

int disk_sim_flip_bit(struct disk_sim *s, const char *path, uint64_t offset, uint32_t bit)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    struct sim_inode *ino = file_at(s, path);
    if (ino == NULL) {
        return -ENOENT;
    }
    if (bit > 7 || offset >= ino->written.size) {
        return -EINVAL;
    }
    uint8_t mask = (uint8_t)(1u << bit);
    flip_in(&ino->written, offset, mask);
    flip_in(&ino->durable, offset, mask);
    /* The copies of unsynced writes too, so that a crash replaying them keeps the flip. */
    for (uint32_t i = 0; i < ino->span_count; i++) {
        const struct sim_span *sp = &ino->spans[i];
        if (offset >= sp->offset && offset < sp->offset + sp->len) {
            flip_in(&ino->log, sp->log_pos + (offset - sp->offset), mask);
        }
    }
    return 0;
}

uint64_t disk_sim_unsynced_bytes(struct disk_sim *s, const char *path)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->base.vt == &sim_vtable);
    struct sim_inode *ino = file_at(s, path);
    uint64_t total = 0;
    for (uint32_t i = 0; ino != NULL && i < ino->span_count; i++) {
        total += ino->spans[i].len;
    }
    return total;
}
