#include "storage/btree/btree.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "storage/btree/page.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest tree: with at least 3 keys per branch, 32 levels hold far more pages than a
 * file of 2^64 bytes. */
#define BT_HEIGHT_MAX 32u
/* The file's path, copied at open: error messages name it long after the caller's
 * buffer (often on its stack) is gone. */
#define BT_PATH_BYTES 512u
/* A frame that holds no page. */
#define BT_NONE UINT64_MAX
/* Dirty pages written per round of eviction. */
#define BT_EVICT_BATCH 64u
/* Idle frames that keep their buffer past the budget (saves an allocation per miss). */
#define BT_IDLE_BUFS 64u
/* The largest write a checkpoint issues (a run of consecutive pages). */
#define BT_WRITE_RUN_BYTES (1u << 20)

struct bt_frame {
    uint8_t *buf; /* NULL for an idle frame whose buffer went back */
    uint64_t pno; /* BT_NONE: idle */
    bool dirty;   /* changed since last written */
    bool ref;     /* CLOCK's second chance */
    bool victim;  /* chosen by the eviction round running */
};

struct bt_pages {
    uint64_t *v;
    uint64_t n;
    uint64_t cap;
};

/* Pages freed while checkpoint `tag` was the newest durable one: a snapshot of a
 * checkpoint <= tag may still read them. */
struct bt_retired {
    uint64_t tag;
    struct bt_pages pages;
};

struct btree_snapshot {
    struct btree *tree;
    uint64_t ckpt;
    uint64_t root;
    uint32_t height;
};

/* A page a checkpoint writes. */
struct bt_out {
    uint64_t pno;
    uint8_t *buf;
};

struct btree {
    char path[BT_PATH_BYTES]; /* cfg.path points here */
    const struct ts_allocator *alloc;
    struct disk *disk;
    uint32_t file;
    uint32_t page_bytes;
    uint64_t ckpt; /* last durable checkpoint id */
    uint64_t root; /* 0: empty tree */
    uint32_t height;
    uint64_t tree_bytes;
    uint64_t page_count; /* pages the file holds or will hold */

    /* The page cache. */
    struct bt_frame *frames;
    uint32_t nframes;
    uint32_t frames_cap;
    uint32_t *idle; /* frames holding no page (capacity frames_cap) */
    uint32_t idle_n;
    uint32_t nbufs; /* frames that own a buffer */
    uint32_t hand;
    uint64_t budget;            /* frames in use allowed between calls */
    uint32_t *pmap;             /* page number -> frame index + 1, 0 when not cached */
    uint8_t *fresh;             /* bit per page: born since the last checkpoint */
    uint64_t pages_cap;         /* pages pmap and fresh cover */
    struct bt_pages fresh_list; /* page numbers born since the checkpoint (repeats allowed) */

    /* Free space. */
    struct bt_pages free; /* reusable now (a stack, sorted at checkpoints) */
    bool free_unsorted;
    struct bt_pages pending;    /* referenced by the last checkpoint; reusable after the next */
    struct bt_pages chain;      /* the last checkpoint's free-list pages */
    struct bt_retired *retired; /* freed pages waiting for snapshots to close */
    uint64_t retired_n;
    uint64_t retired_cap;

    uint32_t snapshots;     /* open snapshots */
    uint64_t snap_min_ckpt; /* the oldest checkpoint an open snapshot pins */
    uint64_t ckpt_root;     /* the last checkpoint's root and height */
    uint32_t ckpt_height;
    uint8_t *user;
    uint32_t user_len;
    int err;
    uint64_t hits, misses, evictions, evicted_dirty;
    uint64_t gen; /* bumped whenever a frame forgets its page */
    /* Checkpoint scratch, kept between checkpoints (scratch_reserve). */
    struct bt_out *out;
    struct disk_req *reqs;
    uint8_t *stage;
    uint64_t scratch_cap;
    char why[256];
    struct btree_config cfg;
};

/* ------------------------------------------------------------------ small things */

/* Doubles an array of *cap elements of elem bytes (first: its first capacity) with the
 * allocator's realloc; the array is unchanged on failure. */
static int grow(struct btree *t, void **v, uint64_t *cap, size_t elem, uint64_t first)
{
    uint64_t n = *cap == 0 ? first : *cap * 2;
    void *p =
        *cap == 0 ? ts_alloc(t->alloc, n * elem) : ts_realloc(t->alloc, *v, *cap * elem, n * elem);
    if (p == NULL) {
        return TS_ENOMEM;
    }
    *v = p;
    *cap = n;
    return 0;
}

static int pages_push(struct btree *t, struct bt_pages *p, uint64_t pno)
{
    if (p->n == p->cap && grow(t, (void **)&p->v, &p->cap, sizeof(*p->v), 64) != 0) {
        return TS_ENOMEM;
    }
    p->v[p->n++] = pno;
    return 0;
}

static void pages_fini(struct btree *t, struct bt_pages *p)
{
    ts_free(t->alloc, p->v, p->cap * sizeof(*p->v));
    *p = (struct bt_pages){0};
}

static int key_cmp(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int corrupt(struct btree *t, const char *fmt, uint64_t pno)
{
    snprintf(t->why, sizeof(t->why), "btree: corrupt file %s: page %" PRIu64 ": %s", t->cfg.path,
             pno, fmt);
    return TS_ECORRUPT;
}

static bool is_fresh(const struct btree *t, uint64_t pno)
{
    return pno < t->pages_cap && (t->fresh[pno / 8] >> (pno % 8) & 1) != 0;
}

static void set_fresh(struct btree *t, uint64_t pno, bool on)
{
    uint8_t bit = (uint8_t)(1u << (pno % 8));
    t->fresh[pno / 8] =
        on ? (uint8_t)(t->fresh[pno / 8] | bit) : (uint8_t)(t->fresh[pno / 8] & ~bit);
}

/* Makes pmap and fresh cover page numbers below n. */
static int ensure_pages(struct btree *t, uint64_t n)
{
    if (n <= t->pages_cap) {
        return 0;
    }
    uint64_t cap = t->pages_cap == 0 ? 1024 : t->pages_cap;
    while (cap < n) {
        cap *= 2;
    }
    uint32_t *pmap = ts_alloc(t->alloc, cap * sizeof(*pmap));
    uint8_t *fresh = ts_alloc(t->alloc, cap / 8);
    if (pmap == NULL || fresh == NULL) {
        ts_free(t->alloc, pmap, cap * sizeof(*pmap));
        ts_free(t->alloc, fresh, cap / 8);
        return TS_ENOMEM;
    }
    memset(pmap, 0, cap * sizeof(*pmap));
    memset(fresh, 0, cap / 8);
    if (t->pages_cap > 0) {
        memcpy(pmap, t->pmap, t->pages_cap * sizeof(*pmap));
        memcpy(fresh, t->fresh, t->pages_cap / 8);
    }
    ts_free(t->alloc, t->pmap, t->pages_cap * sizeof(*pmap));
    ts_free(t->alloc, t->fresh, t->pages_cap / 8);
    t->pmap = pmap;
    t->fresh = fresh;
    t->pages_cap = cap;
    return 0;
}

/* ------------------------------------------------------------------ disk */

struct bt_io {
    uint32_t pending;
    int err;
};

static void io_done(struct disk_req *req)
{
    struct bt_io *io = req->data;
    if (req->res < 0 && io->err == 0) {
        io->err = req->res;
    } else if (req->op != DISK_OP_FDATASYNC && (uint32_t)req->res != req->len && io->err == 0) {
        io->err = req->op == DISK_OP_READ ? TS_ECORRUPT : -EIO; /* a short read: past the end */
    }
    io->pending--;
}

/* Drives the disk until every request of io completed. Other users' completions (the
 * shard's WAL shares the disk) run too, as disk_run always does. */
static int io_wait(struct btree *t, struct bt_io *io)
{
    while (io->pending > 0) {
        int rc = disk_run(t->disk, true);
        if (rc < 0) {
            return rc;
        }
    }
    return io->err;
}

/* Writes pages pages from buf at page pno. */
static void io_write(struct btree *t, struct bt_io *io, struct disk_req *req, uint64_t pno,
                     uint8_t *buf, uint32_t pages)
{
    *req = (struct disk_req){.op = DISK_OP_WRITE,
                             .file = t->file,
                             .buf = buf,
                             .len = pages * t->page_bytes,
                             .offset = pno * t->page_bytes,
                             .cb = io_done,
                             .data = io};
    io->pending++;
    disk_submit(t->disk, req);
}

/* Reads page pno through the disk interface and verifies it. */
static int read_page(struct btree *t, uint64_t pno, uint8_t *buf)
{
    if (pno < BTP_FIRST_TREE_PAGE || pno >= t->page_count) {
        return corrupt(t, "a page pointer leads outside the file", pno);
    }
    struct bt_io io = {.pending = 1};
    struct disk_req req = {.op = DISK_OP_READ,
                           .file = t->file,
                           .buf = buf,
                           .len = t->page_bytes,
                           .offset = pno * t->page_bytes,
                           .cb = io_done,
                           .data = &io};
    disk_submit(t->disk, &req);
    int rc = io_wait(t, &io);
    if (rc == TS_ECORRUPT) {
        return corrupt(t, "the file ends inside the page", pno);
    }
    if (rc != 0) {
        return rc;
    }
    char why[160];
    rc = btp_verify(buf, t->page_bytes, BTP_TYPE_ANY, pno, why, sizeof(why));
    if (rc != 0) {
        /* btp_verify's reason names the page already ("page N: ..."). */
        snprintf(t->why, sizeof(t->why), "btree: corrupt file %s: %s", t->cfg.path, why);
        return TS_ECORRUPT;
    }
    t->misses++;
    return 0;
}

/* ------------------------------------------------------------------ frames */

static uint32_t frame_of(const struct btree *t, uint64_t pno)
{
    return pno < t->pages_cap ? t->pmap[pno] : 0;
}

/* An idle frame with a buffer. */
static int frame_alloc(struct btree *t, uint32_t *out)
{
    uint32_t fi;
    if (t->idle_n > 0) {
        fi = t->idle[t->idle_n - 1];
    } else {
        if (t->nframes == t->frames_cap) {
            uint32_t cap = t->frames_cap == 0 ? 64 : t->frames_cap * 2;
            struct bt_frame *f = ts_alloc(t->alloc, cap * sizeof(*f));
            uint32_t *idle = ts_alloc(t->alloc, cap * sizeof(*idle));
            if (f == NULL || idle == NULL) {
                ts_free(t->alloc, f, cap * sizeof(*f));
                ts_free(t->alloc, idle, cap * sizeof(*idle));
                return TS_ENOMEM;
            }
            if (t->nframes > 0) {
                memcpy(f, t->frames, t->nframes * sizeof(*f));
                memcpy(idle, t->idle, t->idle_n * sizeof(*idle));
            }
            ts_free(t->alloc, t->frames, t->frames_cap * sizeof(*f));
            ts_free(t->alloc, t->idle, t->frames_cap * sizeof(*idle));
            t->frames = f;
            t->idle = idle;
            t->frames_cap = cap;
        }
        fi = t->nframes;
        t->frames[fi] = (struct bt_frame){.pno = BT_NONE};
        t->idle[t->idle_n++] = fi;
        t->nframes++;
    }
    struct bt_frame *f = &t->frames[fi];
    if (f->buf == NULL) {
        f->buf = ts_alloc(t->alloc, t->page_bytes);
        if (f->buf == NULL) {
            return TS_ENOMEM;
        }
        t->nbufs++;
    }
    t->idle_n--;
    *out = fi;
    return 0;
}

static void frame_bind(struct btree *t, uint32_t fi, uint64_t pno, bool dirty)
{
    t->frames[fi].pno = pno;
    t->frames[fi].dirty = dirty;
    t->frames[fi].ref = true;
    t->frames[fi].victim = false;
    t->pmap[pno] = fi + 1;
}

/* Forgets a frame's page; its buffer stays for reuse. */
static void frame_drop(struct btree *t, uint32_t fi)
{
    struct bt_frame *f = &t->frames[fi];
    TS_ASSERT(f->pno != BT_NONE);
    t->pmap[f->pno] = 0;
    t->gen++; /* cursors holding this buffer must look their leaf up again */
    f->pno = BT_NONE;
    f->dirty = false;
    f->victim = false;
    t->idle[t->idle_n++] = fi;
}

/* The page pno, from the cache or read from the file (and cached). The buffer stays
 * valid until the call on the tree returns. */
static uint8_t *page_get(struct btree *t, uint64_t pno, int *rc)
{
    uint32_t fi = frame_of(t, pno);
    *rc = 0;
    if (fi != 0) {
        struct bt_frame *f = &t->frames[fi - 1];
        f->ref = true;
        t->hits++;
        return f->buf;
    }
    uint32_t nf;
    if ((*rc = frame_alloc(t, &nf)) != 0) {
        return NULL;
    }
    if ((*rc = read_page(t, pno, t->frames[nf].buf)) != 0) {
        t->idle[t->idle_n++] = nf;
        return NULL;
    }
    frame_bind(t, nf, pno, false);
    return t->frames[nf].buf;
}

/* The buffer of a page known to be cached (copied or read earlier in the same call). */
static uint8_t *page_mem(struct btree *t, uint64_t pno)
{
    uint32_t fi = frame_of(t, pno);
    TS_ASSERT(fi != 0);
    return t->frames[fi - 1].buf;
}

/* A page number to write a new page at: a free one, else the end of the file. A stale
 * cached copy of a reused number (read by a snapshot) is dropped. */
static int page_take(struct btree *t, uint64_t *out)
{
    uint64_t p = t->free.n > 0 ? t->free.v[t->free.n - 1] : t->page_count;
    int rc = ensure_pages(t, p + 1);
    if (rc != 0) {
        return rc;
    }
    if (t->free.n > 0) {
        t->free.n--;
    } else {
        t->page_count++;
    }
    uint32_t fi = frame_of(t, p);
    if (fi != 0) {
        frame_drop(t, fi - 1);
    }
    *out = p;
    return 0;
}

/* A new dirty page of the type at a fresh page number, initialised unless raw. */
static uint8_t *page_new(struct btree *t, enum btp_type type, bool raw, uint64_t *pno, int *rc)
{
    uint32_t fi;
    uint64_t p = 0;
    if ((*rc = frame_alloc(t, &fi)) != 0 || (*rc = page_take(t, &p)) != 0 ||
        (*rc = pages_push(t, &t->fresh_list, p)) != 0) {
        return NULL; /* the caller makes the failure sticky */
    }
    frame_bind(t, fi, p, true);
    set_fresh(t, p, true);
    uint8_t *buf = t->frames[fi].buf;
    if (!raw) {
        btp_init(buf, t->page_bytes, type, p, t->ckpt + 1);
    }
    *pno = p;
    return buf;
}

/* Gives page pno back: at once if no checkpoint has seen it, else after the next. */
static int page_release(struct btree *t, uint64_t pno)
{
    uint32_t fi = frame_of(t, pno);
    if (fi != 0) {
        frame_drop(t, fi - 1);
    }
    bool fresh = is_fresh(t, pno);
    if (fresh) {
        set_fresh(t, pno, false);
        t->free_unsorted = true;
    }
    return pages_push(t, fresh ? &t->free : &t->pending, pno);
}

/* Copy-on-write: the buffer of the page to change for pno, at *out (pno itself when
 * fresh). Marks it dirty. */
static uint8_t *cow(struct btree *t, uint64_t pno, uint64_t *out, int *rc)
{
    uint8_t *src = page_get(t, pno, rc);
    if (src == NULL) {
        return NULL;
    }
    if (is_fresh(t, pno)) {
        t->frames[frame_of(t, pno) - 1].dirty = true;
        *out = pno;
        return src;
    }
    uint64_t np;
    uint8_t *dst = page_new(t, BTP_TYPE_ANY, true, &np, rc);
    if (dst == NULL) {
        return NULL;
    }
    memcpy(dst, src, t->page_bytes);
    btp_relabel(dst, np, t->ckpt + 1);
    *out = np;
    *rc = page_release(t, pno);
    return *rc == 0 ? dst : NULL;
}

/* Brings the cache back within its budget: CLOCK picks victims; dirty ones are written
 * to their own (not yet checkpointed) page numbers first. */
static int cache_trim(struct btree *t)
{
    uint8_t *bufs[BT_EVICT_BATCH];
    struct disk_req reqs[BT_EVICT_BATCH];
    uint32_t victims[BT_EVICT_BATCH];
    if (t->err != 0) {
        return t->err;
    }
    while (t->nframes - t->idle_n > t->budget) {
        uint64_t need = t->nframes - t->idle_n - t->budget;
        uint32_t k = 0;
        struct bt_io io = {0};
        while (k < BT_EVICT_BATCH && k < need) {
            uint32_t fi = t->hand;
            struct bt_frame *f = &t->frames[fi];
            t->hand = t->hand + 1 < t->nframes ? t->hand + 1 : 0;
            if (f->pno == BT_NONE || f->victim) {
                continue;
            }
            if (f->ref) {
                f->ref = false;
                continue;
            }
            f->victim = true;
            victims[k] = fi;
            if (f->dirty) {
                bufs[k] = f->buf;
                btp_seal(f->buf, t->page_bytes);
                io_write(t, &io, &reqs[k], f->pno, f->buf, 1);
                t->evicted_dirty++;
            }
            k++;
        }
        (void)bufs;
        int rc = io_wait(t, &io);
        if (rc != 0) {
            t->err = rc; /* the pages are lost from memory and not on disk */
            return rc;
        }
        for (uint32_t i = 0; i < k; i++) {
            struct bt_frame *f = &t->frames[victims[i]];
            frame_drop(t, victims[i]);
            if (t->nbufs > t->budget + BT_IDLE_BUFS) {
                ts_free(t->alloc, f->buf, t->page_bytes);
                f->buf = NULL;
                t->nbufs--;
            }
        }
        t->evictions += k;
    }
    return 0;
}

/* Every public call ends here: the cache goes back within its budget (an error of the
 * trim, a failed eviction write, wins over success). */
static int leave(struct btree *t, int rc)
{
    if (t->err == 0 && t->nframes - t->idle_n > t->budget) {
        int trc = cache_trim(t);
        rc = trc != 0 && (rc == 0 || rc == TS_ENOTFOUND) ? trc : rc;
    }
    return rc;
}

/* Every public call starts here. */
static inline int enter(struct btree *t)
{
    if (t->err != 0) {
        return t->err;
    }
    t->why[0] = 0;
    return t->nframes - t->idle_n > t->budget ? cache_trim(t) : 0;
}

/* ------------------------------------------------------------------ overflow values */

static int overflow_release(struct btree *t, uint64_t pno)
{
    for (uint64_t hops = 0; pno != 0; hops++) {
        int rc;
        uint8_t *buf = page_get(t, pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        if (btp_type(buf) != BTP_TYPE_OVERFLOW || hops >= t->page_count) {
            return corrupt(t, "an overflow chain holds a page of another type or loops", pno);
        }
        uint64_t next = btp_link(buf);
        if ((rc = page_release(t, pno)) != 0) {
            return rc;
        }
        pno = next;
    }
    return 0;
}

static int overflow_write(struct btree *t, const uint8_t *value, uint32_t len, uint64_t *first)
{
    uint32_t cap = btp_overflow_capacity(t->page_bytes);
    uint32_t pages = (len + cap - 1) / cap;
    uint64_t next = 0;
    /* Written back to front so each page knows its successor. */
    for (uint32_t i = pages; i-- > 0;) {
        uint64_t pno;
        int rc;
        uint8_t *buf = page_new(t, BTP_TYPE_OVERFLOW, false, &pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        uint32_t off = i * cap;
        uint32_t chunk = len - off < cap ? len - off : cap;
        btp_overflow_put(buf, t->page_bytes, value + off, chunk, next);
        next = pno;
    }
    *first = next;
    return 0;
}

/* Reads an overflow chain (of the live tree or of a snapshot: both through the cache). */
static int overflow_read(struct btree *t, uint64_t pno, uint8_t *dst, uint32_t len)
{
    uint32_t done = 0;
    while (pno != 0 && done < len) {
        int rc;
        uint8_t *buf = page_get(t, pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        uint32_t chunk;
        const uint8_t *p = btp_overflow_get(buf, t->page_bytes, &chunk);
        if (btp_type(buf) != BTP_TYPE_OVERFLOW || chunk > len - done) {
            return corrupt(t, "an overflow chain does not match its value's length", pno);
        }
        memcpy(dst + done, p, chunk);
        done += chunk;
        pno = btp_link(buf);
    }
    return done == len && pno == 0 ? 0 : corrupt(t, "an overflow chain is too long", pno);
}

static int value_copy(struct btree *t, struct btp_cell c, void *buf, uint32_t buf_bytes,
                      uint32_t *value_len)
{
    *value_len = c.value_len;
    if (c.value_len > buf_bytes) {
        return TS_ETOOBIG;
    }
    if (c.overflow_page != 0) {
        return overflow_read(t, c.overflow_page, buf, c.value_len);
    }
    if (c.value_len > 0) {
        memcpy(buf, c.value, c.value_len);
    }
    return 0;
}

/* ------------------------------------------------------------------ sizes */

static uint64_t cell_bytes(struct btp_cell c)
{
    return (uint64_t)c.key_len + c.value_len;
}

/* The size of child ci of a branch whose own size is total. */
static int child_bytes(struct btree *t, const uint8_t *buf, uint64_t pno, uint64_t total,
                       uint32_t ci, uint64_t *out)
{
    if (ci > 0) {
        *out = btp_branch_get(buf, t->page_bytes, ci - 1).bytes;
        return 0;
    }
    uint64_t cells = btp_branch_cells_bytes(buf, t->page_bytes);
    if (cells > total) {
        return corrupt(t, "a branch records more bytes than its parent gives it", pno);
    }
    *out = total - cells;
    return 0;
}

/* ------------------------------------------------------------------ descent */

struct bt_path {
    uint64_t pno[BT_HEIGHT_MAX];   /* branches above the leaf, root first */
    uint32_t ci[BT_HEIGHT_MAX];    /* the child index taken in each */
    uint64_t total[BT_HEIGHT_MAX]; /* each branch's size (write descents) */
    uint32_t depth;
    uint64_t leaf;
    uint64_t leaf_total;
    bool rightmost; /* the path took the last child at every level */
};

/* Walks from the root to the leaf for key. With write, copies every page on the way
 * (repointing parents at the copies) and records each page's size. */
static int descend(struct btree *t, const void *key, uint32_t key_len, bool write,
                   struct bt_path *path)
{
    uint64_t pno = t->root;
    uint64_t total = t->tree_bytes;
    int rc = 0;
    uint8_t *buf = write ? cow(t, pno, &pno, &rc) : page_get(t, pno, &rc);
    if (buf == NULL) {
        return rc;
    }
    t->root = pno;
    path->depth = 0;
    path->rightmost = true;
    for (;;) {
        if (btp_type(buf) == BTP_TYPE_LEAF) {
            path->leaf = pno;
            path->leaf_total = total;
            return path->depth + 1 == t->height ? 0
                                                : corrupt(t, "a leaf above the last level", pno);
        }
        if (btp_type(buf) != BTP_TYPE_BRANCH || path->depth + 1 >= t->height) {
            return corrupt(t, "a page of the wrong type in the tree", pno);
        }
        uint32_t ci = btp_branch_search(buf, t->page_bytes, key, key_len);
        uint64_t child = btp_branch_child(buf, t->page_bytes, ci);
        path->rightmost = path->rightmost && ci == btp_count(buf);
        path->pno[path->depth] = pno;
        path->ci[path->depth] = ci;
        path->total[path->depth++] = total;
        uint8_t *next;
        if (write) {
            if ((rc = child_bytes(t, buf, pno, total, ci, &total)) != 0) {
                return rc;
            }
            uint64_t copy;
            if ((next = cow(t, child, &copy, &rc)) != NULL && copy != child) {
                btp_branch_set_child(buf, t->page_bytes, ci, copy);
            }
            child = copy;
        } else {
            next = page_get(t, child, &rc);
        }
        if (next == NULL) {
            return rc;
        }
        pno = child;
        buf = next;
    }
}

/* Adds delta to the size of every page on a write path and to the tree's. */
static void path_add(struct btree *t, struct bt_path *path, int64_t delta)
{
    for (uint32_t d = 0; d < path->depth; d++) {
        uint32_t ci = path->ci[d];
        if (ci > 0) {
            uint8_t *buf = page_mem(t, path->pno[d]);
            uint64_t b = btp_branch_get(buf, t->page_bytes, ci - 1).bytes;
            btp_branch_set_bytes(buf, t->page_bytes, ci - 1, b + (uint64_t)delta);
        }
        path->total[d] += (uint64_t)delta;
    }
    path->leaf_total += (uint64_t)delta;
    t->tree_bytes += (uint64_t)delta;
}

/* ------------------------------------------------------------------ splits */

/* After the page under path level `depth` split into left (left_bytes) and right
 * (right_bytes, first key sep), inserts right into the branches from that level up to
 * the root, splitting as needed; a split root makes a new root. */
static int insert_up(struct btree *t, const struct bt_path *path, uint8_t *sep, uint32_t sep_len,
                     uint64_t right, uint64_t left_bytes, uint64_t right_bytes)
{
    uint8_t sep2[TS_KEY_BYTES_MAX];
    for (uint32_t d = path->depth; d-- > 0;) {
        int rc;
        uint8_t *p = page_mem(t, path->pno[d]);
        uint32_t ci = path->ci[d];
        if (ci > 0) {
            btp_branch_set_bytes(p, t->page_bytes, ci - 1, left_bytes);
        }
        rc = btp_branch_insert(p, t->page_bytes, ci, sep, sep_len, right, right_bytes);
        if (rc != TS_EFULL) {
            return rc;
        }
        uint64_t rp;
        uint8_t *r = page_new(t, BTP_TYPE_BRANCH, false, &rp, &rc);
        if (r == NULL) {
            return rc;
        }
        if (path->rightmost && ci == btp_count(p)) {
            /* Appending on the right edge: the new branch starts with the new child
             * alone and this one stays full; sep moves up unchanged. */
            btp_set_link(r, right);
            left_bytes = path->total[d] - right_bytes;
            right = rp;
            continue;
        }
        uint32_t len2;
        uint64_t sep_bytes;
        btp_split(p, r, t->page_bytes, sep2, &len2, &sep_bytes);
        uint8_t *dst = key_cmp(sep, sep_len, sep2, len2) >= 0 ? r : p;
        uint32_t i = btp_branch_search(dst, t->page_bytes, sep, sep_len);
        rc = btp_branch_insert(dst, t->page_bytes, i, sep, sep_len, right, right_bytes);
        TS_ASSERT(rc == 0); /* a split always makes room */
        right_bytes = sep_bytes + btp_branch_cells_bytes(r, t->page_bytes);
        if (right_bytes > path->total[d]) {
            return corrupt(t, "a branch's sizes do not add up", path->pno[d]);
        }
        left_bytes = path->total[d] - right_bytes;
        memcpy(sep, sep2, len2);
        sep_len = len2;
        right = rp;
    }
    uint64_t np;
    int rc;
    uint8_t *root = page_new(t, BTP_TYPE_BRANCH, false, &np, &rc);
    if (root == NULL) {
        return rc;
    }
    TS_ASSERT(t->height < BT_HEIGHT_MAX);
    btp_set_link(root, t->root);
    rc = btp_branch_insert(root, t->page_bytes, 0, sep, sep_len, right, right_bytes);
    TS_ASSERT(rc == 0);
    t->root = np;
    t->height++;
    return 0;
}

static int leaf_insert(struct btree *t, const struct bt_path *path, const void *key,
                       uint32_t key_len, const void *value, uint32_t value_len, uint64_t ovf)
{
    int rc;
    uint8_t *leaf = page_mem(t, path->leaf);
    uint32_t i;
    bool found;
    btp_leaf_search(leaf, t->page_bytes, key, key_len, &i, &found);
    TS_ASSERT(!found);
    rc = btp_leaf_insert(leaf, t->page_bytes, i, key, key_len, value, value_len, ovf);
    if (rc != TS_EFULL) {
        return rc;
    }
    uint64_t rp;
    uint8_t *r = page_new(t, BTP_TYPE_LEAF, false, &rp, &rc);
    if (r == NULL) {
        return rc;
    }
    uint8_t sep[TS_KEY_BYTES_MAX];
    uint32_t sep_len;
    if (path->rightmost && i == btp_count(leaf)) {
        /* Appending past the last key of the tree (sequential keys): the new leaf holds
         * the new key alone and this one stays full, as SQLite's balance_quick does,
         * so ascending inserts fill pages instead of leaving them half empty. */
        rc = btp_leaf_insert(r, t->page_bytes, 0, key, key_len, value, value_len, ovf);
        TS_ASSERT(rc == 0);
        memcpy(sep, key, key_len);
        uint64_t kv = key_len + (uint64_t)value_len;
        return insert_up(t, path, sep, key_len, rp, path->leaf_total - kv, kv);
    }
    uint64_t unused;
    btp_split(leaf, r, t->page_bytes, sep, &sep_len, &unused);
    uint8_t *dst = key_cmp(key, key_len, sep, sep_len) >= 0 ? r : leaf;
    btp_leaf_search(dst, t->page_bytes, key, key_len, &i, &found);
    rc = btp_leaf_insert(dst, t->page_bytes, i, key, key_len, value, value_len, ovf);
    TS_ASSERT(rc == 0); /* a split always makes room */
    uint64_t right_bytes = btp_leaf_bytes(r, t->page_bytes);
    if (right_bytes > path->leaf_total) {
        return corrupt(t, "a leaf's sizes do not add up", path->leaf);
    }
    return insert_up(t, path, sep, sep_len, rp, path->leaf_total - right_bytes, right_bytes);
}

/* ------------------------------------------------------------------ merges */

static bool underfull(const struct btree *t, const uint8_t *buf)
{
    return btp_used_bytes(buf, t->page_bytes) < (t->page_bytes - BTP_HDR_BYTES) / 4;
}

/* Merges child c of branch ppno (already copied) with a sibling when both fit in one
 * page: the right one's cells move into the left one, which keeps its page. */
static int merge_child(struct btree *t, uint64_t ppno, uint32_t c, bool *merged)
{
    uint8_t *p = page_mem(t, ppno);
    uint32_t n = btp_count(p);
    *merged = false;
    if (n == 0) {
        return 0;
    }
    uint32_t l = c < n ? c : c - 1;
    uint64_t lp, rp;
    int rc;
    uint8_t *lbuf = cow(t, btp_branch_child(p, t->page_bytes, l), &lp, &rc);
    if (lbuf == NULL) {
        return rc;
    }
    btp_branch_set_child(p, t->page_bytes, l, lp);
    uint8_t *rbuf = cow(t, btp_branch_child(p, t->page_bytes, l + 1), &rp, &rc);
    if (rbuf == NULL) {
        return rc;
    }
    btp_branch_set_child(p, t->page_bytes, l + 1, rp);
    if (btp_type(lbuf) != btp_type(rbuf)) {
        return corrupt(t, "siblings of different types", rp);
    }
    struct btp_cell sep = btp_branch_get(p, t->page_bytes, l);
    uint8_t key[TS_KEY_BYTES_MAX];
    memcpy(key, sep.key, sep.key_len);
    uint64_t sep_bytes = 0;
    if (btp_type(rbuf) == BTP_TYPE_BRANCH &&
        (rc = child_bytes(t, rbuf, rp, sep.bytes, 0, &sep_bytes)) != 0) {
        return rc;
    }
    rc = btp_merge(lbuf, rbuf, t->page_bytes, key, sep.key_len, sep_bytes);
    if (rc == TS_EFULL) {
        return 0;
    }
    btp_branch_delete(p, t->page_bytes, l);
    if (l > 0) {
        uint64_t b = btp_branch_get(p, t->page_bytes, l - 1).bytes;
        btp_branch_set_bytes(p, t->page_bytes, l - 1, b + sep.bytes);
    }
    *merged = true;
    return page_release(t, rp);
}

/* An empty root leaf empties the tree; a root branch with one child gives way to it. */
static int collapse_root(struct btree *t)
{
    while (t->root != 0) {
        int rc;
        uint8_t *buf = page_get(t, t->root, &rc);
        if (buf == NULL) {
            return rc;
        }
        if (btp_count(buf) > 0) {
            return 0;
        }
        uint64_t old = t->root;
        t->root = btp_type(buf) == BTP_TYPE_BRANCH ? btp_link(buf) : 0;
        t->height--;
        if ((rc = page_release(t, old)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* After a delete, merges underfull pages up the path while merges succeed. */
static int rebalance(struct btree *t, const struct bt_path *path)
{
    uint64_t child = path->leaf;
    for (uint32_t d = path->depth; d-- > 0;) {
        bool merged;
        int rc;
        if (!underfull(t, page_mem(t, child)) ||
            (rc = merge_child(t, path->pno[d], path->ci[d], &merged)) != 0 || !merged) {
            break;
        }
        child = path->pno[d];
    }
    return collapse_root(t);
}

/* ------------------------------------------------------------------ operations */

static int check_key(const struct btree *t, uint32_t key_len)
{
    return key_len == 0 || key_len > btp_key_bytes_max(t->page_bytes) ? TS_ETOOBIG : 0;
}

/* A write that failed half way leaves the in-memory tree undefined: the error sticks and
 * the tree must be reopened from its last checkpoint (the WAL replays the rest). */
static int sticky(struct btree *t, int rc)
{
    if (rc != 0 && rc != TS_ENOTFOUND) {
        t->err = rc;
    }
    return rc;
}

int btree_get(struct btree *t, const void *key, uint32_t key_len, void *buf, uint32_t buf_bytes,
              uint32_t *value_len)
{
    int rc = enter(t);
    if (rc != 0 || (rc = check_key(t, key_len)) != 0 || t->root == 0) {
        return rc != 0 ? rc : TS_ENOTFOUND;
    }
    struct bt_path path;
    if ((rc = descend(t, key, key_len, false, &path)) != 0) {
        return leave(t, rc);
    }
    uint8_t *leaf = page_mem(t, path.leaf);
    uint32_t i;
    bool found;
    btp_leaf_search(leaf, t->page_bytes, key, key_len, &i, &found);
    if (!found) {
        return leave(t, TS_ENOTFOUND);
    }
    return leave(t, value_copy(t, btp_leaf_get(leaf, t->page_bytes, i), buf, buf_bytes, value_len));
}

static int put(struct btree *t, const void *key, uint32_t key_len, const void *value,
               uint32_t value_len)
{
    int rc;
    if (t->root == 0) {
        uint64_t pno;
        if (page_new(t, BTP_TYPE_LEAF, false, &pno, &rc) == NULL) {
            return rc;
        }
        t->root = pno;
        t->height = 1;
    }
    struct bt_path path;
    if ((rc = descend(t, key, key_len, true, &path)) != 0) {
        return rc;
    }
    uint8_t *leaf = page_mem(t, path.leaf);
    uint32_t i;
    bool found;
    btp_leaf_search(leaf, t->page_bytes, key, key_len, &i, &found);
    uint64_t old_bytes = 0, old_ovf = 0;
    bool inline_value = btp_leaf_value_inline(t->page_bytes, key_len, value_len);
    if (found) {
        struct btp_cell c = btp_leaf_get(leaf, t->page_bytes, i);
        old_bytes = cell_bytes(c);
        old_ovf = c.overflow_page;
        if (inline_value && btp_leaf_set_value(leaf, t->page_bytes, i, value, value_len, 0) == 0) {
            path_add(t, &path, (int64_t)(key_len + (uint64_t)value_len) - (int64_t)old_bytes);
            return overflow_release(t, old_ovf);
        }
        btp_leaf_delete(leaf, t->page_bytes, i);
    }
    uint64_t ovf = 0;
    if ((rc = overflow_release(t, old_ovf)) != 0 ||
        (!inline_value && (rc = overflow_write(t, value, value_len, &ovf)) != 0)) {
        return rc;
    }
    path_add(t, &path, (int64_t)(key_len + (uint64_t)value_len) - (int64_t)old_bytes);
    return leaf_insert(t, &path, key, key_len, value, value_len, ovf);
}

int btree_put(struct btree *t, const void *key, uint32_t key_len, const void *value,
              uint32_t value_len)
{
    int rc = enter(t);
    if (rc != 0 || (rc = check_key(t, key_len)) != 0 || value_len > TS_VALUE_BYTES_MAX) {
        return rc != 0 ? rc : TS_ETOOBIG;
    }
    return leave(t, sticky(t, put(t, key, key_len, value, value_len)));
}

static int delete_key(struct btree *t, const void *key, uint32_t key_len)
{
    struct bt_path path;
    int rc = descend(t, key, key_len, true, &path);
    if (rc != 0) {
        return rc;
    }
    uint8_t *leaf = page_mem(t, path.leaf);
    uint32_t i;
    bool found;
    btp_leaf_search(leaf, t->page_bytes, key, key_len, &i, &found);
    if (!found) {
        return TS_ENOTFOUND;
    }
    struct btp_cell c = btp_leaf_get(leaf, t->page_bytes, i);
    uint64_t ovf = c.overflow_page;
    path_add(t, &path, -(int64_t)cell_bytes(c));
    btp_leaf_delete(leaf, t->page_bytes, i);
    if ((rc = overflow_release(t, ovf)) != 0) {
        return rc;
    }
    return rebalance(t, &path);
}

int btree_delete(struct btree *t, const void *key, uint32_t key_len)
{
    int rc = enter(t);
    if (rc != 0 || (rc = check_key(t, key_len)) != 0 || t->root == 0) {
        return rc != 0 ? rc : TS_ENOTFOUND;
    }
    return leave(t, sticky(t, delete_key(t, key, key_len)));
}

/* ------------------------------------------------------------------ delete-range */

struct bt_range {
    const void *lo;
    uint32_t lo_len; /* 0: from the start */
    const void *hi;
    uint32_t hi_len; /* 0: to the end */
    uint64_t deleted;
    uint64_t removed; /* bytes */
};

/* A page to read once and release: the cached copy, or read into scratch. */
static const uint8_t *page_peek(struct btree *t, uint64_t pno, uint8_t *scratch, int *rc)
{
    uint32_t fi = frame_of(t, pno);
    if (fi != 0) {
        *rc = 0;
        return t->frames[fi - 1].buf;
    }
    *rc = read_page(t, pno, scratch);
    return *rc == 0 ? scratch : NULL;
}

/* Frees every page of the subtree at pno (level 0: a leaf), counting its keys. The
 * pages are read once, not cached, and not copied. */
static int drop_subtree(struct btree *t, uint64_t pno, uint32_t level, struct bt_range *r)
{
    uint8_t *scratch = ts_alloc(t->alloc, t->page_bytes);
    if (scratch == NULL) {
        return TS_ENOMEM;
    }
    int rc;
    const uint8_t *buf = page_peek(t, pno, scratch, &rc);
    if (buf != NULL && btp_type(buf) != (level == 0 ? BTP_TYPE_LEAF : BTP_TYPE_BRANCH)) {
        rc = corrupt(t, "a page of the wrong type for its level", pno);
    }
    uint32_t n = buf != NULL ? btp_count(buf) : 0;
    for (uint32_t i = 0; rc == 0 && level == 0 && i < n; i++) {
        struct btp_cell c = btp_leaf_get(buf, t->page_bytes, i);
        r->deleted++;
        r->removed += cell_bytes(c);
        rc = overflow_release(t, c.overflow_page);
    }
    for (uint32_t i = 0; rc == 0 && level > 0 && i <= n; i++) {
        rc = drop_subtree(t, btp_branch_child(buf, t->page_bytes, i), level - 1, r);
    }
    if (rc == 0) {
        rc = page_release(t, pno); /* after the last use of buf: it may be its frame's */
    }
    ts_free(t->alloc, scratch, t->page_bytes);
    return rc;
}

static bool key_eq(struct btp_cell c, const void *key, uint32_t key_len)
{
    return key_len > 0 && key_cmp(c.key, c.key_len, key, key_len) == 0;
}

/* Removes child c of a branch holding more than one child. */
static void remove_child(struct btree *t, uint8_t *buf, uint32_t c)
{
    if (c == 0) {
        btp_set_link(buf, btp_branch_child(buf, t->page_bytes, 1));
    }
    btp_branch_delete(buf, t->page_bytes, c > 0 ? c - 1 : 0);
}

/* Deletes the keys of [lo, hi) under page pno (already copied; level 0: a leaf; its
 * size total). Children wholly inside the range are dropped, the (at most two) edge
 * children recursed into. Sets *empty when nothing is left under pno: every page below
 * it is then freed and the caller frees pno. */
static int range_drop(struct btree *t, uint64_t pno, uint32_t level, uint64_t total,
                      struct bt_range *r, bool *empty)
{
    uint8_t *buf = page_mem(t, pno);
    uint32_t n = btp_count(buf);
    *empty = false;
    if (btp_type(buf) != (level == 0 ? BTP_TYPE_LEAF : BTP_TYPE_BRANCH)) {
        return corrupt(t, "a page of the wrong type for its level", pno);
    }
    int rc = 0;
    if (level == 0) {
        uint32_t i = 0, j = n;
        bool found;
        if (r->lo_len > 0) {
            btp_leaf_search(buf, t->page_bytes, r->lo, r->lo_len, &i, &found);
        }
        if (r->hi_len > 0) {
            btp_leaf_search(buf, t->page_bytes, r->hi, r->hi_len, &j, &found);
        }
        for (uint32_t k = j; rc == 0 && k-- > i;) {
            struct btp_cell c = btp_leaf_get(buf, t->page_bytes, k);
            uint64_t ovf = c.overflow_page;
            r->deleted++;
            r->removed += cell_bytes(c);
            btp_leaf_delete(buf, t->page_bytes, k);
            rc = overflow_release(t, ovf);
        }
        *empty = btp_count(buf) == 0;
        return rc;
    }
    /* Children [first, last] meet the range: first holds lo, last the greatest key
     * below hi. */
    uint32_t first = r->lo_len > 0 ? btp_branch_search(buf, t->page_bytes, r->lo, r->lo_len) : 0;
    uint32_t last = n;
    if (r->hi_len > 0) {
        last = btp_branch_search(buf, t->page_bytes, r->hi, r->hi_len);
        if (last > 0 && key_eq(btp_branch_get(buf, t->page_bytes, last - 1), r->hi, r->hi_len)) {
            last--;
        }
    }
    uint64_t before = r->removed;
    for (uint32_t c = last + 1; rc == 0 && c-- > first;) {
        bool left_in =
            c > first || r->lo_len == 0 ||
            (c > 0 && key_eq(btp_branch_get(buf, t->page_bytes, c - 1), r->lo, r->lo_len));
        bool right_in =
            c < last || (c == n ? r->hi_len == 0
                                : key_eq(btp_branch_get(buf, t->page_bytes, c), r->hi, r->hi_len));
        uint64_t child = btp_branch_child(buf, t->page_bytes, c);
        uint64_t cb;
        if ((rc = child_bytes(t, buf, pno, total - (r->removed - before), c, &cb)) != 0) {
            break;
        }
        bool gone = left_in && right_in;
        if (gone) {
            rc = drop_subtree(t, child, level - 1, r);
        } else {
            uint64_t copy, was = r->removed;
            if (cow(t, child, &copy, &rc) == NULL) {
                break;
            }
            btp_branch_set_child(buf, t->page_bytes, c, copy);
            rc = range_drop(t, copy, level - 1, cb, r, &gone);
            if (rc == 0 && gone) {
                rc = page_release(t, copy);
            } else if (rc == 0 && c > 0) {
                btp_branch_set_bytes(buf, t->page_bytes, c - 1, cb - (r->removed - was));
            }
        }
        if (rc == 0 && gone) {
            if (btp_count(buf) == 0) {
                *empty = true; /* its only child is gone: so is the branch */
                return 0;
            }
            remove_child(t, buf, c);
        }
    }
    /* The edge children may now be underfull: merge them with their neighbours. */
    for (uint32_t k = 0; rc == 0 && k < 2; k++) {
        uint32_t c = first + 1 - k;
        bool merged;
        int grc = 0;
        if (c > btp_count(buf)) {
            continue;
        }
        const uint8_t *cbuf = page_get(t, btp_branch_child(buf, t->page_bytes, c), &grc);
        if (cbuf == NULL) {
            rc = grc;
        } else if (underfull(t, cbuf)) {
            rc = merge_child(t, pno, c, &merged);
        }
    }
    return rc;
}

static int delete_range(struct btree *t, struct bt_range *r)
{
    uint64_t root;
    int rc;
    if (cow(t, t->root, &root, &rc) == NULL) {
        return rc;
    }
    t->root = root;
    bool empty;
    rc = range_drop(t, root, t->height - 1, t->tree_bytes, r, &empty);
    if (rc != 0) {
        return rc;
    }
    if (r->removed > t->tree_bytes) {
        return corrupt(t, "the tree's size is smaller than what was deleted", root);
    }
    t->tree_bytes -= r->removed;
    if (empty) {
        t->root = 0;
        t->height = 0;
        return page_release(t, root);
    }
    return collapse_root(t);
}

int btree_delete_range(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                       uint32_t hi_len, uint64_t *deleted)
{
    *deleted = 0;
    int rc = enter(t);
    if (rc != 0 || (lo_len > 0 && (rc = check_key(t, lo_len)) != 0) ||
        (hi_len > 0 && (rc = check_key(t, hi_len)) != 0)) {
        return rc;
    }
    if (t->root == 0 || (lo_len > 0 && hi_len > 0 && key_cmp(lo, lo_len, hi, hi_len) >= 0)) {
        return 0;
    }
    struct bt_range r = {.lo = lo, .lo_len = lo_len, .hi = hi, .hi_len = hi_len};
    rc = sticky(t, delete_range(t, &r));
    *deleted = r.deleted;
    return leave(t, rc);
}

/* ------------------------------------------------------------------ sizes of ranges */

/* The size of the keys below key (key_len 0: none). */
static int bytes_below(struct btree *t, const void *key, uint32_t key_len, uint64_t *out)
{
    uint64_t sum = 0, total = t->tree_bytes, pno = t->root;
    *out = 0;
    if (key_len == 0 || pno == 0) {
        return 0;
    }
    for (uint32_t level = t->height; level-- > 0;) {
        int rc;
        const uint8_t *buf = page_get(t, pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        if (btp_type(buf) != (level == 0 ? BTP_TYPE_LEAF : BTP_TYPE_BRANCH)) {
            return corrupt(t, "a page of the wrong type for its level", pno);
        }
        if (level == 0) {
            uint32_t i;
            bool found;
            btp_leaf_search(buf, t->page_bytes, key, key_len, &i, &found);
            for (uint32_t k = 0; k < i; k++) {
                sum += cell_bytes(btp_leaf_get(buf, t->page_bytes, k));
            }
            break;
        }
        uint32_t ci = btp_branch_search(buf, t->page_bytes, key, key_len);
        uint64_t cb = 0;
        for (uint32_t c = 0; c <= ci; c++) {
            if ((rc = child_bytes(t, buf, pno, total, c, &cb)) != 0) {
                return rc;
            }
            sum += c < ci ? cb : 0;
        }
        total = cb;
        pno = btp_branch_child(buf, t->page_bytes, ci);
    }
    *out = sum;
    return 0;
}

static int range_bounds(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                        uint32_t hi_len, uint64_t *a, uint64_t *b)
{
    int rc = bytes_below(t, lo, lo_len, a);
    if (rc == 0) {
        rc = hi_len > 0 ? bytes_below(t, hi, hi_len, b) : 0;
        *b = hi_len > 0 ? *b : t->tree_bytes;
    }
    if (rc == 0 && *b < *a) {
        *b = *a; /* hi below lo: an empty range */
    }
    return rc;
}

int btree_range_bytes(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                      uint32_t hi_len, uint64_t *bytes)
{
    *bytes = 0;
    uint64_t a, b;
    int rc = enter(t);
    if (rc == 0 && (rc = range_bounds(t, lo, lo_len, hi, hi_len, &a, &b)) == 0) {
        *bytes = b - a;
    }
    return leave(t, rc);
}

/* ------------------------------------------------------------------ checkpoint */

/* Builds the free-list chain of the next checkpoint in bufs (pages listed in chain):
 * every page its tree will not use, so that opening it needs no walk. */
static int chain_build(struct btree *t, struct bt_pages *chain, uint8_t **bufs)
{
    uint64_t total = t->free.n + t->pending.n + t->chain.n;
    for (uint64_t i = 0; i < t->retired_n; i++) {
        total += t->retired[i].pages.n;
    }
    uint32_t cap = btp_freelist_capacity(t->page_bytes);
    while (chain->n * cap < total) {
        uint64_t p;
        bool from_free = t->free.n > 0;
        int rc = page_take(t, &p);
        if (rc != 0 || (rc = pages_push(t, chain, p)) != 0) {
            return rc;
        }
        total -= from_free ? 1 : 0;
    }
    if (chain->n == 0) {
        return 0;
    }
    *bufs = ts_alloc(t->alloc, chain->n * t->page_bytes);
    if (*bufs == NULL) {
        return TS_ENOMEM;
    }
    for (uint64_t i = 0; i < chain->n; i++) {
        uint8_t *page = *bufs + i * t->page_bytes;
        btp_init(page, t->page_bytes, BTP_TYPE_FREELIST, chain->v[i], t->ckpt + 1);
        if (i + 1 < chain->n) {
            btp_set_link(page, chain->v[i + 1]);
        }
    }
    uint64_t at = 0;
    const struct bt_pages *lists[3] = {&t->free, &t->pending, &t->chain};
    for (uint64_t l = 0; l < 3 + t->retired_n; l++) {
        const struct bt_pages *src = l < 3 ? lists[l] : &t->retired[l - 3].pages;
        for (uint64_t j = 0; j < src->n; j++, at++) {
            int rc =
                btp_freelist_push(*bufs + (at / cap) * t->page_bytes, t->page_bytes, src->v[j]);
            TS_ASSERT(rc == 0);
        }
    }
    TS_ASSERT(at == total);
    for (uint64_t i = 0; i < chain->n; i++) {
        btp_seal(*bufs + i * t->page_bytes, t->page_bytes);
    }
    return 0;
}

static int write_meta(struct btree *t, uint64_t id, uint64_t freelist, const void *user,
                      uint32_t user_len)
{
    uint8_t *page = ts_alloc(t->alloc, t->page_bytes);
    if (page == NULL) {
        return TS_ENOMEM;
    }
    struct btp_meta meta = {.checkpoint_id = id,
                            .root_page = t->root,
                            .page_count = t->page_count,
                            .freelist_head = freelist,
                            .tree_bytes = t->tree_bytes,
                            .page_bytes = t->page_bytes,
                            .height = t->height,
                            .user_len = user_len,
                            .user = user};
    int rc = btp_meta_encode(page, t->page_bytes, &meta);
    if (rc == 0) {
        struct bt_io io = {.pending = 1};
        struct disk_req req = {.op = t->cfg.no_sync ? DISK_OP_WRITE : DISK_OP_WRITE_FDATASYNC,
                               .file = t->file,
                               .buf = page,
                               .len = t->page_bytes,
                               .offset = (id % 2) * t->page_bytes,
                               .cb = io_done,
                               .data = &io};
        disk_submit(t->disk, &req);
        rc = io_wait(t, &io);
    }
    ts_free(t->alloc, page, t->page_bytes);
    return rc;
}

static int keep_user(struct btree *t, const void *user, uint32_t user_len)
{
    uint8_t *copy = user_len > 0 ? ts_alloc(t->alloc, user_len) : NULL;
    if (user_len > 0 && copy == NULL) {
        return TS_ENOMEM;
    }
    if (user_len > 0) {
        memcpy(copy, user, user_len);
    }
    ts_free(t->alloc, t->user, t->user_len);
    t->user = copy;
    t->user_len = user_len;
    return 0;
}

/* Moves the pages freed since the last checkpoint to the retired list under tag. */
static int retire_pending(struct btree *t, uint64_t tag)
{
    if (t->pending.n == 0) {
        return 0;
    }
    if (t->retired_n == t->retired_cap &&
        grow(t, (void **)&t->retired, &t->retired_cap, sizeof(*t->retired), 8) != 0) {
        return TS_ENOMEM;
    }
    t->retired[t->retired_n++] = (struct bt_retired){.tag = tag, .pages = t->pending};
    t->pending = (struct bt_pages){0};
    return 0;
}

/* Frees retired pages no open snapshot can reach: those retired under a tag older than
 * every pinned checkpoint. */
static int reclaim(struct btree *t)
{
    uint64_t kept = 0;
    int rc = 0;
    for (uint64_t i = 0; i < t->retired_n; i++) {
        struct bt_retired *r = &t->retired[i];
        if (rc == 0 && (t->snapshots == 0 || r->tag < t->snap_min_ckpt)) {
            for (uint64_t j = 0; j < r->pages.n && rc == 0; j++) {
                rc = pages_push(t, &t->free, r->pages.v[j]);
            }
            t->free_unsorted = true;
            if (rc == 0) {
                pages_fini(t, &r->pages);
                continue;
            }
        }
        t->retired[kept++] = *r;
    }
    t->retired_n = kept;
    return rc;
}

static void scratch_free(struct btree *t)
{
    ts_free(t->alloc, t->out, t->scratch_cap * sizeof(*t->out));
    ts_free(t->alloc, t->reqs, t->scratch_cap * sizeof(*t->reqs));
    ts_free(t->alloc, t->stage, t->scratch_cap * t->page_bytes);
    t->out = NULL;
    t->reqs = NULL;
    t->stage = NULL;
    t->scratch_cap = 0;
}

static int out_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct bt_out *)a)->pno, y = ((const struct bt_out *)b)->pno;
    return (x > y) - (x < y);
}

/* Makes the checkpoint's buffers hold n pages. They are kept from one checkpoint to the
 * next (fresh memory costs a page fault per page, and checkpoints come every few
 * milliseconds), so the tree holds its largest checkpoint's size in scratch. */
static int scratch_reserve(struct btree *t, uint64_t n)
{
    if (n <= t->scratch_cap) {
        return 0;
    }
    uint64_t cap = n < 2 * t->scratch_cap ? 2 * t->scratch_cap : n;
    struct bt_out *out = ts_alloc(t->alloc, cap * sizeof(*out));
    struct disk_req *reqs = ts_alloc(t->alloc, cap * sizeof(*reqs));
    uint8_t *stage = ts_alloc(t->alloc, cap * t->page_bytes);
    if (out == NULL || reqs == NULL || stage == NULL) {
        ts_free(t->alloc, out, cap * sizeof(*out));
        ts_free(t->alloc, reqs, cap * sizeof(*reqs));
        ts_free(t->alloc, stage, cap * t->page_bytes);
        return TS_ENOMEM;
    }
    scratch_free(t);
    t->out = out;
    t->reqs = reqs;
    t->stage = stage;
    t->scratch_cap = cap;
    return 0;
}

/* Writes the dirty pages of the fresh list and the chain, then fdatasyncs. Pages are
 * written in page-number order, each run of consecutive numbers (up to
 * BT_WRITE_RUN_BYTES) as one write from a staging copy: buffered writes through
 * io_uring cost a kernel round trip each, and new pages mostly get consecutive
 * numbers (the free stack is kept sorted, the file grows at its end). */
static int write_pages(struct btree *t, const struct bt_pages *chain, uint8_t *chain_bufs)
{
    uint64_t n = chain->n; /* an upper bound on the pages */
    for (uint64_t i = 0; i < t->fresh_list.n; i++) {
        uint32_t fi = frame_of(t, t->fresh_list.v[i]);
        n += fi != 0 && t->frames[fi - 1].dirty;
    }
    int rc = scratch_reserve(t, n + 1);
    struct bt_out *out = t->out;
    struct disk_req *reqs = t->reqs;
    uint8_t *stage = t->stage;
    uint64_t k = 0;
    for (uint64_t i = 0; rc == 0 && i < t->fresh_list.n; i++) {
        uint64_t pno = t->fresh_list.v[i];
        uint32_t fi = frame_of(t, pno);
        struct bt_frame *f = fi != 0 ? &t->frames[fi - 1] : NULL;
        if (f == NULL || !f->dirty) {
            continue; /* freed again, written by eviction, or listed twice */
        }
        TS_ASSERT(is_fresh(t, pno));
        btp_seal(f->buf, t->page_bytes);
        f->dirty = false;
        out[k++] = (struct bt_out){.pno = pno, .buf = f->buf};
    }
    for (uint64_t i = 0; rc == 0 && i < chain->n; i++) {
        out[k++] = (struct bt_out){.pno = chain->v[i], .buf = chain_bufs + i * t->page_bytes};
    }
    TS_ASSERT(k <= n); /* n counted a page listed twice twice */
    if (rc == 0 && k > 1) {
        qsort(out, k, sizeof(*out), out_cmp);
    }
    struct bt_io io = {0};
    uint64_t nreq = 0;
    for (uint64_t i = 0; rc == 0 && i < k;) {
        uint64_t j = i + 1;
        uint64_t run_max = BT_WRITE_RUN_BYTES / t->page_bytes;
        while (j < k && out[j].pno == out[j - 1].pno + 1 && j - i < run_max) {
            j++;
        }
        uint8_t *src = out[i].buf;
        if (j - i > 1) {
            src = stage + i * t->page_bytes;
            for (uint64_t x = i; x < j; x++) {
                memcpy(stage + x * t->page_bytes, out[x].buf, t->page_bytes);
            }
        }
        io_write(t, &io, &reqs[nreq++], out[i].pno, src, (uint32_t)(j - i));
        i = j;
    }
    if (io.pending > 0) {
        int wrc = io_wait(t, &io);
        rc = rc != 0 ? rc : wrc;
    }
    if (rc == 0 && !t->cfg.no_sync) {
        reqs[nreq] =
            (struct disk_req){.op = DISK_OP_FDATASYNC, .file = t->file, .cb = io_done, .data = &io};
        io.pending++;
        disk_submit(t->disk, &reqs[nreq]);
        rc = io_wait(t, &io);
    }
    return rc;
}

static int pno_cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* Sorts the free stack so that pops come in ascending page order: pages born together
 * then tend to be neighbours in the file, and a checkpoint writes them in few runs. */
static void free_sort(struct btree *t)
{
    if (t->free.n > 1) {
        qsort(t->free.v, t->free.n, sizeof(*t->free.v), pno_cmp_desc);
    }
    t->free_unsorted = false;
}

static int checkpoint(struct btree *t, const void *user, uint32_t user_len)
{
    struct bt_pages chain = {0};
    uint8_t *chain_bufs = NULL;
    int rc = keep_user(t, user, user_len);
    if (rc == 0) {
        rc = chain_build(t, &chain, &chain_bufs);
    }
    if (rc == 0) {
        rc = write_pages(t, &chain, chain_bufs);
    }
    if (rc == 0) {
        rc = write_meta(t, t->ckpt + 1, chain.n > 0 ? chain.v[0] : 0, user, user_len);
    }
    ts_free(t->alloc, chain_bufs, chain.n * t->page_bytes);
    if (rc != 0) {
        pages_fini(t, &chain);
        return rc;
    }
    t->ckpt++;
    for (uint64_t i = 0; i < t->fresh_list.n; i++) {
        set_fresh(t, t->fresh_list.v[i], false);
    }
    t->fresh_list.n = 0;
    t->ckpt_root = t->root;
    t->ckpt_height = t->height;
    /* The previous chain is free once this checkpoint is durable: no snapshot reads it. */
    for (uint64_t i = 0; i < t->chain.n && rc == 0; i++) {
        rc = pages_push(t, &t->free, t->chain.v[i]);
        t->free_unsorted = true;
    }
    pages_fini(t, &t->chain);
    t->chain = chain;
    if (rc == 0) {
        rc = retire_pending(t, t->ckpt - 1);
    }
    if (rc == 0) {
        rc = reclaim(t);
    }
    if (t->free_unsorted) {
        free_sort(t);
    }
    return rc;
}

int btree_checkpoint(struct btree *t, const void *user, uint32_t user_len)
{
    int rc = enter(t);
    if (rc != 0) {
        return rc;
    }
    if (user_len > t->page_bytes - BTP_META_USER_OFFSET) {
        return TS_ETOOBIG;
    }
    return leave(t, sticky(t, checkpoint(t, user, user_len)));
}

void btree_user(const struct btree *t, const uint8_t **user, uint32_t *user_len)
{
    *user = t->user;
    *user_len = t->user_len;
}

void btree_get_stats(const struct btree *t, struct btree_stats *out)
{
    uint64_t dirty = 0, fresh = 0;
    for (uint32_t i = 0; i < t->nframes; i++) {
        dirty += t->frames[i].pno != BT_NONE && t->frames[i].dirty;
    }
    for (uint64_t i = 0; i < t->fresh_list.n; i++) {
        fresh += is_fresh(t, t->fresh_list.v[i]);
    }
    *out = (struct btree_stats){.checkpoint_id = t->ckpt,
                                .page_count = t->page_count,
                                .free_pages = t->free.n,
                                .pending_pages = t->pending.n,
                                .dirty_pages = dirty,
                                .fresh_pages = fresh,
                                .freelist_pages = t->chain.n,
                                .tree_bytes = t->tree_bytes,
                                .cached_pages = t->nframes - t->idle_n,
                                .cache_budget_pages = t->budget,
                                .cache_hits = t->hits,
                                .cache_misses = t->misses,
                                .evictions = t->evictions,
                                .evicted_dirty = t->evicted_dirty,
                                .height = t->height};
}

const char *btree_last_error(const struct btree *t)
{
    return t->why;
}

/* ------------------------------------------------------------------ open / close */

static void report(const struct btree *t, const char *line)
{
    if (t->cfg.report_cb != NULL) {
        t->cfg.report_cb(t->cfg.data, line);
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

static int read_at(struct btree *t, uint8_t *buf, size_t len, uint64_t off)
{
    int64_t got = disk_pread(t->disk, t->file, buf, len, off);
    if (got < 0) {
        return (int)got;
    }
    if ((size_t)got < len) {
        memset(buf + got, 0, len - (size_t)got); /* past the end reads as never written */
    }
    return 0;
}

/* Marks pno as seen (a page of the chain or a listed free page); TS_ECORRUPT when it is
 * out of the file or seen twice. */
static int mark_once(struct btree *t, uint8_t *seen, uint64_t pno)
{
    if (pno < BTP_FIRST_TREE_PAGE || pno >= t->page_count || (seen[pno / 8] >> (pno % 8) & 1)) {
        return TS_ECORRUPT;
    }
    seen[pno / 8] |= (uint8_t)(1u << (pno % 8));
    return 0;
}

/* Reads the checkpoint's free-list chain: the free pages, without walking the tree. */
static int load_freelist(struct btree *t, uint64_t head, char *errmsg, size_t errmsg_bytes)
{
    size_t bytes = (size_t)(t->page_count + 7) / 8;
    uint8_t *seen = ts_alloc(t->alloc, bytes);
    uint8_t *page = ts_alloc(t->alloc, t->page_bytes);
    int rc = seen == NULL || page == NULL ? TS_ENOMEM : 0;
    if (rc == 0) {
        memset(seen, 0, bytes);
    }
    uint64_t pno = head;
    while (rc == 0 && pno != 0) {
        if (mark_once(t, seen, pno) != 0) {
            rc = corrupt(t, "the free-list chain leaves the file or loops", pno);
            break;
        }
        if ((rc = read_page(t, pno, page)) == 0 && btp_type(page) != BTP_TYPE_FREELIST) {
            rc = corrupt(t, "a page of the free-list chain is not a freelist page", pno);
        }
        uint32_t n = rc == 0 ? btp_count(page) : 0;
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            uint64_t p = btp_freelist_get(page, t->page_bytes, i);
            if (mark_once(t, seen, p) != 0) {
                rc = corrupt(t, "the free list names a page out of the file or twice", pno);
            } else {
                rc = pages_push(t, &t->free, p);
            }
        }
        if (rc == 0) {
            rc = pages_push(t, &t->chain, pno);
            pno = btp_link(page);
        }
    }
    t->misses = 0;
    if (rc == TS_ECORRUPT) {
        snprintf(errmsg, errmsg_bytes, "%s", t->why);
    }
    ts_free(t->alloc, seen, bytes);
    ts_free(t->alloc, page, t->page_bytes);
    return rc;
}

/* The page size of an existing file, from whichever meta page is readable. */
static int find_page_bytes(struct btree *t)
{
    uint8_t head[512];
    int rc = read_at(t, head, sizeof(head), 0);
    if (rc == 0 && btp_meta_peek_page_bytes(head, sizeof(head), &t->page_bytes) == 0) {
        return 0;
    }
    for (uint32_t p = TS_BTREE_PAGE_BYTES_MIN; rc == 0 && p <= TS_BTREE_PAGE_BYTES_MAX; p *= 2) {
        uint32_t found;
        rc = read_at(t, head, sizeof(head), p);
        if (rc == 0 && btp_meta_peek_page_bytes(head, sizeof(head), &found) == 0 && found == p) {
            t->page_bytes = p;
            return 0;
        }
    }
    return rc != 0 ? rc : TS_ENOTFOUND;
}

/* Reads the newest valid checkpoint. A file with no valid meta page whose page 0 was
 * never written never completed its first checkpoint: nothing in it was durable. */
static int load_meta(struct btree *t, char *errmsg, size_t errmsg_bytes, bool *empty,
                     uint64_t *freelist)
{
    *empty = false;
    uint8_t *m = ts_alloc(t->alloc, 2 * (size_t)t->page_bytes);
    if (m == NULL) {
        return TS_ENOMEM;
    }
    int rc = read_at(t, m, 2 * (size_t)t->page_bytes, 0);
    struct btp_meta meta;
    uint64_t which;
    if (rc == 0) {
        rc = btp_meta_choose(m, m + t->page_bytes, t->page_bytes, &meta, &which, errmsg,
                             errmsg_bytes);
    }
    if (rc == TS_ECORRUPT && all_zero(m, t->page_bytes)) {
        *empty = true;
        rc = 0;
    } else if (rc == 0 &&
               (meta.height > BT_HEIGHT_MAX || (meta.root_page == 0) != (meta.height == 0) ||
                (meta.root_page == 0) != (meta.tree_bytes == 0))) {
        snprintf(errmsg, errmsg_bytes,
                 "btree: corrupt file %s: meta page %" PRIu64 " has root %" PRIu64
                 ", height %u and size %" PRIu64,
                 t->cfg.path, which, meta.root_page, meta.height, meta.tree_bytes);
        rc = TS_ECORRUPT;
    } else if (rc == 0) {
        t->ckpt = meta.checkpoint_id;
        t->root = meta.root_page;
        t->height = meta.height;
        t->tree_bytes = meta.tree_bytes;
        t->ckpt_root = meta.root_page;
        t->ckpt_height = meta.height;
        t->page_count = meta.page_count;
        *freelist = meta.freelist_head;
        rc = keep_user(t, meta.user, meta.user_len);
    }
    ts_free(t->alloc, m, 2 * (size_t)t->page_bytes);
    return rc;
}

static int open_existing(struct btree *t, char *errmsg, size_t errmsg_bytes)
{
    int rc = find_page_bytes(t);
    if (rc == TS_ENOTFOUND) {
        t->page_bytes = t->cfg.page_bytes != 0 ? t->cfg.page_bytes : TS_BTREE_PAGE_BYTES_DEFAULT;
        rc = 0;
    }
    bool empty = false;
    uint64_t freelist = 0;
    if (rc == 0) {
        rc = load_meta(t, errmsg, errmsg_bytes, &empty, &freelist);
    }
    if (rc == 0 && empty) {
        char line[400];
        snprintf(line, sizeof(line),
                 "btree: %s never completed a checkpoint: opened as an empty tree", t->cfg.path);
        report(t, line);
        return 0;
    }
    if (rc == 0) {
        rc = ensure_pages(t, t->page_count);
    }
    if (rc == 0 && (rc = load_freelist(t, freelist, errmsg, errmsg_bytes)) == 0) {
        free_sort(t);
    }
    return rc;
}

int btree_open(const struct btree_config *cfg, struct disk *disk, const struct ts_allocator *alloc,
               struct btree **out, char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(cfg != NULL && cfg->path != NULL);
    TS_ASSERT(disk != NULL && alloc != NULL);
    char scratch[8];
    if (errmsg == NULL || errmsg_bytes == 0) {
        errmsg = scratch;
        errmsg_bytes = sizeof(scratch);
    }
    errmsg[0] = 0;
    *out = NULL;
    struct btree *t = ts_alloc(alloc, sizeof(*t));
    if (t == NULL) {
        return TS_ENOMEM;
    }
    *t = (struct btree){.alloc = alloc, .disk = disk, .page_count = 2, .cfg = *cfg};
    t->page_bytes = cfg->page_bytes != 0 ? cfg->page_bytes : TS_BTREE_PAGE_BYTES_DEFAULT;
    uint64_t size = 0;
    int rc =
        btp_page_bytes_valid(t->page_bytes) && strlen(cfg->path) < sizeof(t->path) ? 0 : TS_EINVAL;
    if (rc == 0) {
        memcpy(t->path, cfg->path, strlen(cfg->path) + 1);
        t->cfg.path = t->path;
    }
    if (rc == 0 && (rc = disk_open(disk, cfg->path, DISK_OPEN_CREATE, &t->file)) == 0) {
        rc = disk_size(disk, t->file, &size);
        if (rc == 0 && size > 0) {
            rc = open_existing(t, errmsg, errmsg_bytes);
        }
        if (rc != 0) {
            disk_close(disk, t->file);
        }
    }
    if (rc == 0) {
        uint64_t cache = cfg->cache_bytes != 0 ? cfg->cache_bytes : TS_BTREE_CACHE_BYTES_DEFAULT;
        t->budget = cache / t->page_bytes;
        t->budget = t->budget < TS_BTREE_CACHE_PAGES_MIN ? TS_BTREE_CACHE_PAGES_MIN : t->budget;
        rc = ensure_pages(t, t->page_count);
        if (rc != 0) {
            disk_close(disk, t->file);
        }
    }
    if (rc != 0) {
        if (errmsg[0] == 0) {
            snprintf(errmsg, errmsg_bytes, "btree: cannot open %s: %s", cfg->path, ts_strerror(rc));
        }
        t->file = UINT32_MAX;
        btree_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

void btree_close(struct btree *t)
{
    if (t == NULL) {
        return;
    }
    TS_ASSERT(t->snapshots == 0); /* close snapshots first */
    for (uint32_t i = 0; i < t->nframes; i++) {
        ts_free(t->alloc, t->frames[i].buf, t->page_bytes);
    }
    ts_free(t->alloc, t->frames, t->frames_cap * sizeof(*t->frames));
    ts_free(t->alloc, t->idle, t->frames_cap * sizeof(*t->idle));
    ts_free(t->alloc, t->pmap, t->pages_cap * sizeof(*t->pmap));
    ts_free(t->alloc, t->fresh, t->pages_cap / 8);
    pages_fini(t, &t->fresh_list);
    pages_fini(t, &t->free);
    pages_fini(t, &t->pending);
    pages_fini(t, &t->chain);
    for (uint64_t i = 0; i < t->retired_n; i++) {
        pages_fini(t, &t->retired[i].pages);
    }
    ts_free(t->alloc, t->retired, t->retired_cap * sizeof(*t->retired));
    ts_free(t->alloc, t->user, t->user_len);
    scratch_free(t);
    if (t->file != UINT32_MAX) {
        disk_close(t->disk, t->file);
    }
    ts_free(t->alloc, t, sizeof(*t));
}

/* ------------------------------------------------------------------ cursors */

_Static_assert(sizeof(((struct btree_cursor *)0)->branch) / sizeof(uint64_t) == BT_HEIGHT_MAX,
               "a cursor holds a path of the deepest tree");

/* A page on the cursor's tree. A snapshot's pages are pinned, so never fresh. */
static uint8_t *cursor_node(const struct btree_cursor *c, uint64_t pno, int *rc)
{
    TS_DASSERT(c->snap == NULL || !is_fresh(c->tree, pno));
    return page_get(c->tree, pno, rc);
}

/* The cursor's leaf: the buffer it remembered while no frame was dropped since, else
 * looked up again (and remembered). */
static const uint8_t *cursor_leaf(struct btree_cursor *c, int *rc)
{
    if (c->leaf_buf != NULL && c->gen == c->tree->gen) {
        *rc = 0;
        return c->leaf_buf;
    }
    c->leaf_buf = cursor_node(c, c->leaf, rc);
    c->gen = c->tree->gen;
    return c->leaf_buf;
}

static void cursor_set_leaf(struct btree_cursor *c, uint64_t pno, const uint8_t *buf)
{
    c->leaf = pno;
    c->leaf_buf = buf;
    c->gen = c->tree->gen;
}

/* Descends from page pno to a leaf, always taking the first (or last) child. */
static int cursor_descend(struct btree_cursor *c, uint64_t pno, bool last)
{
    struct btree *t = c->tree;
    for (;;) {
        int rc;
        uint8_t *buf = cursor_node(c, pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        if (btp_type(buf) == BTP_TYPE_LEAF) {
            uint32_t count = btp_count(buf);
            cursor_set_leaf(c, pno, buf);
            c->pos = last && count > 0 ? count - 1 : 0;
            return 0;
        }
        if (btp_type(buf) != BTP_TYPE_BRANCH || c->depth >= BT_HEIGHT_MAX) {
            return corrupt(t, "a page of the wrong type in the tree", pno);
        }
        uint32_t ci = last ? btp_count(buf) : 0;
        c->branch[c->depth] = pno;
        c->child[c->depth++] = ci;
        pno = btp_branch_child(buf, t->page_bytes, ci);
    }
}

/* Moves to the next (or previous) leaf: 1 moved, 0 at the end, or an error. */
static int cursor_step_leaf(struct btree_cursor *c, bool back)
{
    while (c->depth > 0) {
        uint32_t d = c->depth - 1;
        int rc;
        uint8_t *b = cursor_node(c, c->branch[d], &rc);
        if (b == NULL) {
            return rc;
        }
        uint32_t count = btp_count(b);
        if (back ? c->child[d] > 0 : c->child[d] < count) {
            c->child[d] += back ? -1u : 1u;
            uint64_t pno = btp_branch_child(b, c->tree->page_bytes, c->child[d]);
            rc = cursor_descend(c, pno, back);
            return rc == 0 ? 1 : rc;
        }
        c->depth--;
    }
    return 0;
}

/* From a position that may lie past the end of its leaf (or in an empty leaf), moves to
 * the nearest key in the direction given. */
static int cursor_settle(struct btree_cursor *c, bool back)
{
    c->valid = false;
    for (;;) {
        int rc;
        const uint8_t *leaf = cursor_leaf(c, &rc);
        if (leaf == NULL) {
            return rc;
        }
        uint32_t count = btp_count(leaf);
        if (count > 0 && c->pos < count) {
            c->valid = true;
            return 0;
        }
        rc = cursor_step_leaf(c, back);
        if (rc <= 0) {
            return rc == 0 ? TS_ENOTFOUND : rc;
        }
    }
}

static uint64_t cursor_root(const struct btree_cursor *c)
{
    return c->snap != NULL ? c->snap->root : c->tree->root;
}

static int cursor_start(struct btree_cursor *c, struct btree *t, struct btree_snapshot *s)
{
    *c = (struct btree_cursor){.tree = t, .snap = s};
    int rc = enter(t);
    if (rc != 0 || cursor_root(c) == 0) {
        return rc != 0 ? rc : TS_ENOTFOUND;
    }
    return 0;
}

static int cursor_seek(struct btree_cursor *c, const void *key, uint32_t key_len)
{
    struct btree *t = c->tree;
    uint64_t pno = cursor_root(c);
    if (key_len == 0) {
        int rc = cursor_descend(c, pno, false);
        return rc == 0 ? cursor_settle(c, false) : rc;
    }
    for (;;) {
        int rc;
        uint8_t *buf = cursor_node(c, pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        if (btp_type(buf) == BTP_TYPE_LEAF) {
            bool found;
            cursor_set_leaf(c, pno, buf);
            btp_leaf_search(buf, t->page_bytes, key, key_len, &c->pos, &found);
            return cursor_settle(c, false);
        }
        if (btp_type(buf) != BTP_TYPE_BRANCH || c->depth >= BT_HEIGHT_MAX) {
            return corrupt(t, "a page of the wrong type in the tree", pno);
        }
        uint32_t ci = btp_branch_search(buf, t->page_bytes, key, key_len);
        c->branch[c->depth] = pno;
        c->child[c->depth++] = ci;
        pno = btp_branch_child(buf, t->page_bytes, ci);
    }
}

int btree_cursor_seek(struct btree_cursor *c, struct btree *t, const void *key, uint32_t key_len)
{
    int rc = cursor_start(c, t, NULL);
    return leave(t, rc == 0 ? cursor_seek(c, key, key_len) : rc);
}

int btree_snapshot_seek(struct btree_cursor *c, struct btree_snapshot *s, const void *key,
                        uint32_t key_len)
{
    int rc = cursor_start(c, s->tree, s);
    return leave(s->tree, rc == 0 ? cursor_seek(c, key, key_len) : rc);
}

int btree_cursor_last(struct btree_cursor *c, struct btree *t)
{
    int rc = cursor_start(c, t, NULL);
    if (rc == 0) {
        rc = cursor_descend(c, t->root, true);
    }
    return leave(t, rc == 0 ? cursor_settle(c, true) : rc);
}

int btree_cursor_next(struct btree_cursor *c)
{
    TS_ASSERT(c->valid);
    int rc = enter(c->tree);
    if (rc != 0) {
        return rc;
    }
    c->pos++;
    return leave(c->tree, cursor_settle(c, false));
}

int btree_cursor_prev(struct btree_cursor *c)
{
    TS_ASSERT(c->valid);
    int rc = enter(c->tree);
    if (rc != 0) {
        return rc;
    }
    if (c->pos > 0) {
        c->pos--;
        return 0;
    }
    rc = cursor_step_leaf(c, true);
    if (rc <= 0) {
        c->valid = false;
        return leave(c->tree, rc == 0 ? TS_ENOTFOUND : rc);
    }
    return leave(c->tree, cursor_settle(c, true));
}

/* The current cell. The leaf may have been evicted since the cursor moved (a read
 * between two calls): it is read again; a failure there leaves an empty key. */
static int cursor_cell(const struct btree_cursor *c, struct btp_cell *cell)
{
    int rc = 0;
    TS_ASSERT(c->valid);
    const uint8_t *leaf =
        c->leaf_buf != NULL && c->gen == c->tree->gen ? c->leaf_buf : cursor_node(c, c->leaf, &rc);
    if (leaf == NULL) {
        *cell = (struct btp_cell){0};
        return rc;
    }
    *cell = btp_leaf_get(leaf, c->tree->page_bytes, c->pos);
    return 0;
}

void btree_cursor_key(const struct btree_cursor *c, const uint8_t **key, uint32_t *key_len)
{
    struct btp_cell cell;
    (void)cursor_cell(c, &cell);
    *key = cell.key;
    *key_len = cell.key_len;
}

int btree_cursor_value(const struct btree_cursor *c, void *buf, uint32_t buf_bytes,
                       uint32_t *value_len)
{
    struct btp_cell cell;
    int rc = cursor_cell(c, &cell);
    *value_len = 0;
    return leave(c->tree, rc == 0 ? value_copy(c->tree, cell, buf, buf_bytes, value_len) : rc);
}

/* ------------------------------------------------------------------ snapshots */

int btree_snapshot_open(struct btree *t, struct btree_snapshot **out)
{
    if (t->err != 0) {
        return t->err;
    }
    struct btree_snapshot *s = ts_alloc(t->alloc, sizeof(*s));
    if (s == NULL) {
        return TS_ENOMEM;
    }
    *s = (struct btree_snapshot){
        .tree = t, .ckpt = t->ckpt, .root = t->ckpt_root, .height = t->ckpt_height};
    if (t->snapshots == 0 || s->ckpt < t->snap_min_ckpt) {
        t->snap_min_ckpt = s->ckpt;
    }
    t->snapshots++;
    *out = s;
    return 0;
}

uint64_t btree_snapshot_checkpoint(const struct btree_snapshot *s)
{
    return s->ckpt;
}

void btree_snapshot_close(struct btree_snapshot *s)
{
    struct btree *t = s->tree;
    TS_ASSERT(t->snapshots > 0);
    ts_free(t->alloc, s, sizeof(*s));
    /* Snapshots pin the checkpoint current when they opened, which never goes back, so
     * the oldest pin stays valid until the last snapshot closes. */
    if (--t->snapshots == 0) {
        (void)reclaim(t); /* on failure the pages wait for the next reclaim */
    }
}

/* ------------------------------------------------------------------ ranges */

static bool below(const struct btree_cursor *c, const void *hi, uint32_t hi_len)
{
    const uint8_t *key;
    uint32_t key_len;
    btree_cursor_key(c, &key, &key_len);
    return hi_len == 0 || key_cmp(key, key_len, hi, hi_len) < 0;
}

int btree_count(struct btree *t, const void *lo, uint32_t lo_len, const void *hi, uint32_t hi_len,
                uint64_t *count)
{
    struct btree_cursor c;
    *count = 0;
    int rc = btree_cursor_seek(&c, t, lo, lo_len);
    while (rc == 0 && below(&c, hi, hi_len)) {
        (*count)++;
        rc = btree_cursor_next(&c);
    }
    return leave(t, rc == TS_ENOTFOUND ? 0 : rc);
}

/* Positions c at the first key k with at least target bytes below it (past the end of
 * a leaf when that key starts the next one; cursor_settle finishes). */
static int seek_bytes(struct btree_cursor *c, uint64_t target)
{
    struct btree *t = c->tree;
    uint64_t sum = 0, total = t->tree_bytes, pno = t->root;
    for (uint32_t level = t->height; level-- > 0;) {
        int rc;
        const uint8_t *buf = page_get(t, pno, &rc);
        if (buf == NULL) {
            return rc;
        }
        if (btp_type(buf) != (level == 0 ? BTP_TYPE_LEAF : BTP_TYPE_BRANCH)) {
            return corrupt(t, "a page of the wrong type for its level", pno);
        }
        uint32_t n = btp_count(buf);
        if (level == 0) {
            uint32_t i = 0;
            for (; i < n && sum < target; i++) {
                sum += cell_bytes(btp_leaf_get(buf, t->page_bytes, i));
            }
            cursor_set_leaf(c, pno, buf);
            c->pos = i;
            return cursor_settle(c, false);
        }
        uint32_t ci = 0;
        uint64_t cb = 0;
        for (; ci <= n; ci++) {
            if ((rc = child_bytes(t, buf, pno, total, ci, &cb)) != 0) {
                return rc;
            }
            if (sum + cb >= target || ci == n) {
                break;
            }
            sum += cb;
        }
        c->branch[c->depth] = pno;
        c->child[c->depth++] = ci;
        total = cb;
        pno = btp_branch_child(buf, t->page_bytes, ci);
    }
    return corrupt(t, "the tree is deeper than its height", pno);
}

static int middle_key(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                      uint32_t hi_len, uint8_t *key, uint32_t *key_len)
{
    uint64_t a, b;
    int rc = range_bounds(t, lo, lo_len, hi, hi_len, &a, &b);
    if (rc != 0 || b == a) {
        return rc != 0 ? rc : TS_ENOTFOUND;
    }
    struct btree_cursor c = {.tree = t};
    rc = seek_bytes(&c, a + (b - a + 1) / 2);
    if (rc != 0 && rc != TS_ENOTFOUND) {
        return rc;
    }
    if (rc == TS_ENOTFOUND || !below(&c, hi, hi_len)) {
        /* The last key holds more than half the range: split just before it. */
        rc = hi_len > 0 ? btree_cursor_seek(&c, t, hi, hi_len) : TS_ENOTFOUND;
        rc = rc == 0 ? btree_cursor_prev(&c) : btree_cursor_last(&c, t);
    }
    if (rc != 0) {
        return rc;
    }
    const uint8_t *k;
    uint32_t k_len;
    btree_cursor_key(&c, &k, &k_len);
    memcpy(key, k, k_len);
    *key_len = k_len;
    /* Never the range's first key: the left half would be empty. */
    struct btree_cursor f;
    if ((rc = btree_cursor_seek(&f, t, lo, lo_len)) != 0) {
        return rc;
    }
    const uint8_t *fk;
    uint32_t fk_len;
    btree_cursor_key(&f, &fk, &fk_len);
    return key_cmp(key, *key_len, fk, fk_len) > 0 ? 0 : TS_ENOTFOUND;
}

int btree_middle_key(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                     uint32_t hi_len, uint8_t *key, uint32_t *key_len)
{
    *key_len = 0;
    int rc = enter(t);
    return leave(t, rc == 0 ? middle_key(t, lo, lo_len, hi, hi_len, key, key_len) : rc);
}
