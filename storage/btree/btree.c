#include "storage/btree/btree.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/map64.h"
#include "storage/btree/page.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Deepest tree: with at least 3 keys per branch, 32 levels hold far more pages than a
 * file of 2^64 bytes. */
#define BT_HEIGHT_MAX 32u

struct bt_node {
    uint8_t *buf;
    bool dirty; /* born or copied since the last checkpoint: changed in place */
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
    struct ts_map64 pages; /* page number -> struct bt_node, read for this snapshot */
};

struct btree {
    const struct ts_allocator *alloc;
    struct disk *disk;
    uint32_t file;
    uint32_t page_bytes;
    uint64_t ckpt; /* last durable checkpoint id */
    uint64_t root; /* 0: empty tree */
    uint32_t height;
    uint64_t page_count; /* pages the file holds or will hold */
    struct ts_map64 nodes;
    struct bt_pages free;       /* reusable now */
    struct bt_pages pending;    /* referenced by the last checkpoint; reusable after the next */
    struct bt_retired *retired; /* freed pages waiting for snapshots to close */
    uint32_t retired_n;
    uint32_t retired_cap;
    uint32_t snapshots;     /* open snapshots */
    uint64_t snap_min_ckpt; /* the oldest checkpoint an open snapshot pins */
    uint64_t ckpt_root;     /* the last checkpoint's root and height */
    uint32_t ckpt_height;
    uint8_t *user;
    uint32_t user_len;
    int err;
    struct btree_config cfg;
};

/* ------------------------------------------------------------------ pages */

static int pages_push(struct btree *t, struct bt_pages *p, uint64_t pno)
{
    if (p->n == p->cap) {
        uint64_t cap = p->cap == 0 ? 64 : p->cap * 2;
        uint64_t *v = ts_alloc(t->alloc, cap * sizeof(*v));
        if (v == NULL) {
            return TS_ENOMEM;
        }
        if (p->n > 0) {
            memcpy(v, p->v, p->n * sizeof(*v));
        }
        ts_free(t->alloc, p->v, p->cap * sizeof(*v));
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = pno;
    return 0;
}

static void node_free(struct btree *t, struct bt_node *n)
{
    ts_free(t->alloc, n->buf, t->page_bytes);
    ts_free(t->alloc, n, sizeof(*n));
}

/* A new, empty, dirty page of a type at a fresh page number. */
static struct bt_node *node_new(struct btree *t, enum btp_type type, uint64_t *pno, int *rc)
{
    struct bt_node *n = ts_alloc(t->alloc, sizeof(*n));
    uint8_t *buf = ts_alloc(t->alloc, t->page_bytes);
    *rc = TS_ENOMEM;
    if (n == NULL || buf == NULL) {
        ts_free(t->alloc, n, sizeof(*n));
        ts_free(t->alloc, buf, t->page_bytes);
        return NULL;
    }
    uint64_t p = t->free.n > 0 ? t->free.v[t->free.n - 1] : t->page_count;
    *rc = ts_map64_put(&t->nodes, p, n);
    if (*rc != 0) {
        ts_free(t->alloc, n, sizeof(*n));
        ts_free(t->alloc, buf, t->page_bytes);
        return NULL;
    }
    if (t->free.n > 0) {
        t->free.n--;
    } else {
        t->page_count++;
    }
    *n = (struct bt_node){.buf = buf, .dirty = true};
    btp_init(buf, t->page_bytes, type, p, t->ckpt + 1);
    *pno = p;
    return n;
}

/* Reads page pno from the file into buf and verifies it. */
static int read_page(struct btree *t, uint64_t pno, uint8_t *buf)
{
    char why[160];
    int64_t got = disk_pread(t->disk, t->file, buf, t->page_bytes, pno * t->page_bytes);
    if (got < 0) {
        return (int)got;
    }
    if (got != t->page_bytes) {
        return TS_ECORRUPT;
    }
    return btp_verify(buf, t->page_bytes, BTP_TYPE_ANY, pno, why, sizeof(why));
}

/* The node of page pno, read and verified on first use. */
static struct bt_node *node_get(struct btree *t, uint64_t pno, int *rc)
{
    struct bt_node *n = ts_map64_get(&t->nodes, pno);
    *rc = 0;
    if (n != NULL) {
        return n;
    }
    TS_ASSERT(pno >= 2 && pno < t->page_count);
    n = ts_alloc(t->alloc, sizeof(*n));
    uint8_t *buf = ts_alloc(t->alloc, t->page_bytes);
    *rc = n == NULL || buf == NULL ? TS_ENOMEM : read_page(t, pno, buf);
    if (*rc == 0) {
        *n = (struct bt_node){.buf = buf};
        *rc = ts_map64_put(&t->nodes, pno, n);
    }
    if (*rc != 0) {
        ts_free(t->alloc, n, sizeof(*n));
        ts_free(t->alloc, buf, t->page_bytes);
        return NULL;
    }
    return n;
}

/* Gives page pno back: at once if the last checkpoint never saw it, else after the
 * next checkpoint. */
static int page_release(struct btree *t, uint64_t pno)
{
    struct bt_node *n = ts_map64_del(&t->nodes, pno);
    bool dirty = n != NULL && n->dirty;
    if (n != NULL) {
        node_free(t, n);
    }
    return pages_push(t, dirty ? &t->free : &t->pending, pno);
}

/* Copy-on-write: the page number to change for pno (pno itself when dirty). */
static int cow(struct btree *t, uint64_t pno, uint64_t *out)
{
    int rc;
    struct bt_node *n = node_get(t, pno, &rc);
    if (n == NULL) {
        return rc;
    }
    if (n->dirty) {
        *out = pno;
        return 0;
    }
    uint64_t np;
    struct bt_node *m = node_new(t, btp_type(n->buf), &np, &rc);
    if (m == NULL) {
        return rc;
    }
    n = ts_map64_get(&t->nodes, pno); /* node_new may have grown the map */
    memcpy(m->buf, n->buf, t->page_bytes);
    btp_relabel(m->buf, np, t->ckpt + 1);
    *out = np;
    return page_release(t, pno);
}

/* ------------------------------------------------------------------ keys, overflow */

static int key_cmp(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int overflow_write(struct btree *t, const uint8_t *value, uint32_t len, uint64_t *first)
{
    uint32_t cap = btp_overflow_capacity(t->page_bytes);
    uint32_t pages = (len + cap - 1) / cap;
    uint64_t next = 0;
    int rc = 0;
    /* Written back to front so each page knows its successor. */
    for (uint32_t i = pages; i-- > 0;) {
        uint64_t pno;
        struct bt_node *n = node_new(t, BTP_TYPE_OVERFLOW, &pno, &rc);
        if (n == NULL) {
            return rc;
        }
        uint32_t off = i * cap;
        uint32_t chunk = len - off < cap ? len - off : cap;
        btp_overflow_put(n->buf, t->page_bytes, value + off, chunk, next);
        next = pno;
    }
    *first = next;
    return 0;
}

static int overflow_release(struct btree *t, uint64_t pno)
{
    while (pno != 0) {
        int rc;
        struct bt_node *n = node_get(t, pno, &rc);
        if (n == NULL) {
            return rc;
        }
        if (btp_type(n->buf) != BTP_TYPE_OVERFLOW) {
            return TS_ECORRUPT;
        }
        uint64_t next = btp_link(n->buf);
        if ((rc = page_release(t, pno)) != 0) {
            return rc;
        }
        pno = next;
    }
    return 0;
}

static struct bt_node *snap_node(struct btree_snapshot *s, uint64_t pno, int *rc);

/* Reads an overflow chain of the live tree (s NULL) or of a snapshot. */
static int overflow_read(struct btree *t, struct btree_snapshot *s, uint64_t pno, uint8_t *dst,
                         uint32_t len)
{
    uint32_t done = 0;
    while (pno != 0 && done < len) {
        int rc;
        struct bt_node *n = s != NULL ? snap_node(s, pno, &rc) : node_get(t, pno, &rc);
        if (n == NULL) {
            return rc;
        }
        uint32_t chunk;
        const uint8_t *p = btp_overflow_get(n->buf, t->page_bytes, &chunk);
        if (btp_type(n->buf) != BTP_TYPE_OVERFLOW || chunk > len - done) {
            return TS_ECORRUPT;
        }
        memcpy(dst + done, p, chunk);
        done += chunk;
        pno = btp_link(n->buf);
    }
    return done == len && pno == 0 ? 0 : TS_ECORRUPT;
}

/* ------------------------------------------------------------------ descent */

struct bt_path {
    uint64_t pno[BT_HEIGHT_MAX];
    uint32_t depth; /* branches above the leaf */
    uint64_t leaf;
};

/* Walks from the root to the leaf for key, copying every page on the way when `write`
 * (and repointing parents at the copies). */
static int descend(struct btree *t, const void *key, uint32_t key_len, bool write,
                   struct bt_path *path)
{
    uint64_t pno = t->root;
    int rc = write ? cow(t, pno, &pno) : 0;
    if (rc != 0) {
        return rc;
    }
    t->root = write ? pno : t->root;
    path->depth = 0;
    for (;;) {
        struct bt_node *n = node_get(t, pno, &rc);
        if (n == NULL) {
            return rc;
        }
        if (btp_type(n->buf) == BTP_TYPE_LEAF) {
            path->leaf = pno;
            return path->depth + 1 == t->height ? 0 : TS_ECORRUPT;
        }
        if (btp_type(n->buf) != BTP_TYPE_BRANCH || path->depth + 1 >= t->height) {
            return TS_ECORRUPT;
        }
        uint32_t ci = btp_branch_search(n->buf, t->page_bytes, key, key_len);
        uint64_t child = btp_branch_child(n->buf, t->page_bytes, ci);
        uint64_t copy = child;
        if (write && (rc = cow(t, child, &copy)) != 0) {
            return rc;
        }
        if (copy != child) {
            n = ts_map64_get(&t->nodes, pno);
            btp_branch_set_child(n->buf, t->page_bytes, ci, copy);
        }
        path->pno[path->depth++] = pno;
        pno = copy;
    }
}

/* ------------------------------------------------------------------ splits */

/* Inserts (sep, right) into the branches of the path from depth down to the root,
 * splitting as needed; a split root makes a new root. */
static int insert_up(struct btree *t, const struct bt_path *path, uint8_t *sep, uint32_t sep_len,
                     uint64_t right)
{
    uint8_t sep2[TS_KEY_BYTES_MAX];
    for (uint32_t d = path->depth; d-- > 0;) {
        int rc;
        struct bt_node *p = node_get(t, path->pno[d], &rc);
        TS_ASSERT(p != NULL && p->dirty); /* copied on the way down */
        uint32_t i = btp_branch_search(p->buf, t->page_bytes, sep, sep_len);
        rc = btp_branch_insert(p->buf, t->page_bytes, i, sep, sep_len, right);
        if (rc != TS_EFULL) {
            return rc;
        }
        uint64_t rp;
        struct bt_node *r = node_new(t, BTP_TYPE_BRANCH, &rp, &rc);
        if (r == NULL) {
            return rc;
        }
        p = ts_map64_get(&t->nodes, path->pno[d]);
        uint32_t len2;
        btp_split(p->buf, r->buf, t->page_bytes, sep2, &len2);
        uint8_t *dst = key_cmp(sep, sep_len, sep2, len2) >= 0 ? r->buf : p->buf;
        i = btp_branch_search(dst, t->page_bytes, sep, sep_len);
        rc = btp_branch_insert(dst, t->page_bytes, i, sep, sep_len, right);
        TS_ASSERT(rc == 0); /* a split always makes room */
        memcpy(sep, sep2, len2);
        sep_len = len2;
        right = rp;
    }
    uint64_t np;
    int rc;
    struct bt_node *root = node_new(t, BTP_TYPE_BRANCH, &np, &rc);
    if (root == NULL) {
        return rc;
    }
    TS_ASSERT(t->height < BT_HEIGHT_MAX);
    btp_set_link(root->buf, t->root);
    rc = btp_branch_insert(root->buf, t->page_bytes, 0, sep, sep_len, right);
    TS_ASSERT(rc == 0);
    t->root = np;
    t->height++;
    return 0;
}

static int leaf_insert(struct btree *t, const struct bt_path *path, const void *key,
                       uint32_t key_len, const void *value, uint32_t value_len, uint64_t ovf)
{
    int rc;
    struct bt_node *leaf = node_get(t, path->leaf, &rc);
    TS_ASSERT(leaf != NULL && leaf->dirty);
    uint32_t i;
    bool found;
    btp_leaf_search(leaf->buf, t->page_bytes, key, key_len, &i, &found);
    TS_ASSERT(!found);
    rc = btp_leaf_insert(leaf->buf, t->page_bytes, i, key, key_len, value, value_len, ovf);
    if (rc != TS_EFULL) {
        return rc;
    }
    uint64_t rp;
    struct bt_node *r = node_new(t, BTP_TYPE_LEAF, &rp, &rc);
    if (r == NULL) {
        return rc;
    }
    leaf = ts_map64_get(&t->nodes, path->leaf);
    uint8_t sep[TS_KEY_BYTES_MAX];
    uint32_t sep_len;
    btp_split(leaf->buf, r->buf, t->page_bytes, sep, &sep_len);
    uint8_t *dst = key_cmp(key, key_len, sep, sep_len) >= 0 ? r->buf : leaf->buf;
    btp_leaf_search(dst, t->page_bytes, key, key_len, &i, &found);
    rc = btp_leaf_insert(dst, t->page_bytes, i, key, key_len, value, value_len, ovf);
    TS_ASSERT(rc == 0); /* a split always makes room */
    return insert_up(t, path, sep, sep_len, rp);
}

/* ------------------------------------------------------------------ operations */

static int check_key(const struct btree *t, uint32_t key_len)
{
    if (t->err != 0) {
        return t->err;
    }
    return key_len == 0 || key_len > btp_key_bytes_max(t->page_bytes) ? TS_ETOOBIG : 0;
}

int btree_get(struct btree *t, const void *key, uint32_t key_len, void *buf, uint32_t buf_bytes,
              uint32_t *value_len)
{
    int rc = check_key(t, key_len);
    if (rc != 0 || t->root == 0) {
        return rc != 0 ? rc : TS_ENOTFOUND;
    }
    struct bt_path path;
    if ((rc = descend(t, key, key_len, false, &path)) != 0) {
        return rc;
    }
    struct bt_node *leaf = ts_map64_get(&t->nodes, path.leaf);
    uint32_t i;
    bool found;
    btp_leaf_search(leaf->buf, t->page_bytes, key, key_len, &i, &found);
    if (!found) {
        return TS_ENOTFOUND;
    }
    struct btp_cell c = btp_leaf_get(leaf->buf, t->page_bytes, i);
    *value_len = c.value_len;
    if (c.value_len > buf_bytes) {
        return TS_ETOOBIG;
    }
    if (c.overflow_page != 0) {
        return overflow_read(t, NULL, c.overflow_page, buf, c.value_len);
    }
    if (c.value_len > 0) {
        memcpy(buf, c.value, c.value_len);
    }
    return 0;
}

/* Removes the key from the leaf of the path when present (freeing its overflow pages). */
static int leaf_remove(struct btree *t, const struct bt_path *path, const void *key,
                       uint32_t key_len, bool *found)
{
    struct bt_node *leaf = ts_map64_get(&t->nodes, path->leaf);
    uint32_t i;
    btp_leaf_search(leaf->buf, t->page_bytes, key, key_len, &i, found);
    if (!*found) {
        return 0;
    }
    uint64_t ovf = btp_leaf_get(leaf->buf, t->page_bytes, i).overflow_page;
    btp_leaf_delete(leaf->buf, t->page_bytes, i);
    return overflow_release(t, ovf);
}

int btree_put(struct btree *t, const void *key, uint32_t key_len, const void *value,
              uint32_t value_len)
{
    int rc = check_key(t, key_len);
    if (rc != 0 || value_len > TS_VALUE_BYTES_MAX) {
        return rc != 0 ? rc : TS_ETOOBIG;
    }
    if (t->root == 0) {
        uint64_t pno;
        if (node_new(t, BTP_TYPE_LEAF, &pno, &rc) == NULL) {
            return rc;
        }
        t->root = pno;
        t->height = 1;
    }
    struct bt_path path;
    bool found;
    if ((rc = descend(t, key, key_len, true, &path)) != 0 ||
        (rc = leaf_remove(t, &path, key, key_len, &found)) != 0) {
        return rc;
    }
    uint64_t ovf = 0;
    if (!btp_leaf_value_inline(t->page_bytes, key_len, value_len) &&
        (rc = overflow_write(t, value, value_len, &ovf)) != 0) {
        return rc;
    }
    return leaf_insert(t, &path, key, key_len, value, value_len, ovf);
}

int btree_delete(struct btree *t, const void *key, uint32_t key_len)
{
    int rc = check_key(t, key_len);
    if (rc != 0 || t->root == 0) {
        return rc != 0 ? rc : TS_ENOTFOUND;
    }
    struct bt_path path;
    bool found;
    if ((rc = descend(t, key, key_len, true, &path)) != 0 ||
        (rc = leaf_remove(t, &path, key, key_len, &found)) != 0) {
        return rc;
    }
    return found ? 0 : TS_ENOTFOUND;
}

/* ------------------------------------------------------------------ checkpoint */

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
        io->err = -EIO;
    }
    io->pending--;
}

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

/* Writes every dirty page (sealed), then fdatasyncs. */
static int write_dirty(struct btree *t, struct disk_req *reqs, uint32_t n)
{
    struct bt_io io = {0};
    uint32_t pos = 0, k = 0;
    uint64_t pno;
    void *value;
    while (ts_map64_next(&t->nodes, &pos, &pno, &value)) {
        struct bt_node *node = value;
        if (!node->dirty) {
            continue;
        }
        TS_ASSERT(k < n);
        btp_seal(node->buf, t->page_bytes);
        reqs[k] = (struct disk_req){.op = DISK_OP_WRITE,
                                    .file = t->file,
                                    .buf = node->buf,
                                    .len = t->page_bytes,
                                    .offset = pno * t->page_bytes,
                                    .cb = io_done,
                                    .data = &io};
        io.pending++;
        disk_submit(t->disk, &reqs[k++]);
    }
    int rc = io_wait(t, &io);
    if (rc == 0) {
        struct disk_req sync = {
            .op = DISK_OP_FDATASYNC, .file = t->file, .cb = io_done, .data = &io};
        io.pending++;
        disk_submit(t->disk, &sync);
        rc = io_wait(t, &io);
    }
    return rc;
}

static int write_meta(struct btree *t, uint64_t id, const void *user, uint32_t user_len)
{
    uint8_t *page = ts_alloc(t->alloc, t->page_bytes);
    if (page == NULL) {
        return TS_ENOMEM;
    }
    struct btp_meta meta = {.checkpoint_id = id,
                            .root_page = t->root,
                            .page_count = t->page_count,
                            .page_bytes = t->page_bytes,
                            .height = t->height,
                            .user_len = user_len,
                            .user = user};
    int rc = btp_meta_encode(page, t->page_bytes, &meta);
    if (rc == 0) {
        struct bt_io io = {.pending = 1};
        struct disk_req req = {.op = DISK_OP_WRITE_FDATASYNC,
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
    if (t->retired_n == t->retired_cap) {
        uint32_t cap = t->retired_cap == 0 ? 8 : t->retired_cap * 2;
        struct bt_retired *r = ts_alloc(t->alloc, cap * sizeof(*r));
        if (r == NULL) {
            return TS_ENOMEM;
        }
        if (t->retired_n > 0) {
            memcpy(r, t->retired, t->retired_n * sizeof(*r));
        }
        ts_free(t->alloc, t->retired, t->retired_cap * sizeof(*r));
        t->retired = r;
        t->retired_cap = cap;
    }
    t->retired[t->retired_n++] = (struct bt_retired){.tag = tag, .pages = t->pending};
    t->pending = (struct bt_pages){0};
    return 0;
}

/* Frees retired pages no open snapshot can reach: those retired under a tag older than
 * every pinned checkpoint. */
static int reclaim(struct btree *t)
{
    uint32_t kept = 0;
    int rc = 0;
    for (uint32_t i = 0; i < t->retired_n; i++) {
        struct bt_retired *r = &t->retired[i];
        if (rc == 0 && (t->snapshots == 0 || r->tag < t->snap_min_ckpt)) {
            for (uint64_t j = 0; j < r->pages.n && rc == 0; j++) {
                rc = pages_push(t, &t->free, r->pages.v[j]);
            }
            if (rc == 0) {
                ts_free(t->alloc, r->pages.v, r->pages.cap * sizeof(uint64_t));
                continue;
            }
        }
        t->retired[kept++] = *r;
    }
    t->retired_n = kept;
    return rc;
}

int btree_checkpoint(struct btree *t, const void *user, uint32_t user_len)
{
    if (t->err != 0) {
        return t->err;
    }
    if (user_len > t->page_bytes - 88) {
        return TS_ETOOBIG;
    }
    uint32_t n = t->nodes.count;
    struct disk_req *reqs = ts_alloc(t->alloc, (size_t)(n + 1) * sizeof(*reqs));
    int rc = reqs == NULL ? TS_ENOMEM : keep_user(t, user, user_len);
    if (rc == 0 && (rc = write_dirty(t, reqs, n)) == 0) {
        rc = write_meta(t, t->ckpt + 1, user, user_len);
    }
    ts_free(t->alloc, reqs, (size_t)(n + 1) * sizeof(*reqs));
    if (rc != 0) {
        t->err = rc == TS_ENOMEM ? 0 : rc; /* an I/O failure is sticky */
        return rc;
    }
    t->ckpt++;
    uint32_t pos = 0;
    uint64_t pno;
    void *value;
    while (ts_map64_next(&t->nodes, &pos, &pno, &value)) {
        ((struct bt_node *)value)->dirty = false;
    }
    t->ckpt_root = t->root;
    t->ckpt_height = t->height;
    rc = retire_pending(t, t->ckpt - 1);
    return rc == 0 ? reclaim(t) : rc;
}

void btree_user(const struct btree *t, const uint8_t **user, uint32_t *user_len)
{
    *user = t->user;
    *user_len = t->user_len;
}

void btree_get_stats(const struct btree *t, struct btree_stats *out)
{
    uint64_t dirty = 0;
    uint32_t pos = 0;
    uint64_t pno;
    void *value;
    while (ts_map64_next(&t->nodes, &pos, &pno, &value)) {
        dirty += ((const struct bt_node *)value)->dirty;
    }
    *out = (struct btree_stats){.checkpoint_id = t->ckpt,
                                .page_count = t->page_count,
                                .free_pages = t->free.n,
                                .pending_pages = t->pending.n,
                                .dirty_pages = dirty,
                                .height = t->height};
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

/* Marks every page reachable from the root; pages not reached are free. */
static int walk_push(struct btree *t, uint8_t *seen, struct bt_pages *stack, uint64_t pno)
{
    if (pno < 2 || pno >= t->page_count || (seen[pno / 8] >> (pno % 8) & 1) != 0) {
        return TS_ECORRUPT;
    }
    seen[pno / 8] |= (uint8_t)(1u << (pno % 8));
    return pages_push(t, stack, pno);
}

static int walk_node(struct btree *t, uint8_t *seen, struct bt_pages *stack, uint64_t pno)
{
    int rc;
    struct bt_node *n = node_get(t, pno, &rc);
    if (n == NULL) {
        return rc;
    }
    enum btp_type type = btp_type(n->buf);
    uint32_t count = btp_count(n->buf);
    for (uint32_t i = 0; rc == 0 && type == BTP_TYPE_BRANCH && i <= count; i++) {
        rc = walk_push(t, seen, stack, btp_branch_child(n->buf, t->page_bytes, i));
    }
    for (uint32_t i = 0; rc == 0 && type == BTP_TYPE_LEAF && i < count; i++) {
        uint64_t ovf = btp_leaf_get(n->buf, t->page_bytes, i).overflow_page;
        rc = ovf != 0 ? walk_push(t, seen, stack, ovf) : 0;
    }
    if (rc == 0 && type == BTP_TYPE_OVERFLOW && btp_link(n->buf) != 0) {
        rc = walk_push(t, seen, stack, btp_link(n->buf));
    }
    return rc;
}

static int rebuild_free(struct btree *t, char *errmsg, size_t errmsg_bytes)
{
    size_t bytes = (size_t)(t->page_count + 7) / 8;
    uint8_t *seen = ts_alloc(t->alloc, bytes);
    struct bt_pages stack = {0};
    if (seen == NULL) {
        return TS_ENOMEM;
    }
    memset(seen, 0, bytes);
    int rc = t->root != 0 ? walk_push(t, seen, &stack, t->root) : 0;
    while (rc == 0 && stack.n > 0) {
        uint64_t pno = stack.v[--stack.n];
        rc = walk_node(t, seen, &stack, pno);
        if (rc == TS_ECORRUPT) {
            snprintf(errmsg, errmsg_bytes,
                     "btree: corrupt file %s: page %" PRIu64 " or a page it points to", t->cfg.path,
                     pno);
        }
    }
    for (uint64_t p = 2; rc == 0 && p < t->page_count; p++) {
        if ((seen[p / 8] >> (p % 8) & 1) == 0) {
            rc = pages_push(t, &t->free, p);
        }
    }
    ts_free(t->alloc, stack.v, stack.cap * sizeof(*stack.v));
    ts_free(t->alloc, seen, bytes);
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
static int load_meta(struct btree *t, char *errmsg, size_t errmsg_bytes, bool *empty)
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
               (meta.height > BT_HEIGHT_MAX || (meta.root_page == 0) != (meta.height == 0))) {
        snprintf(errmsg, errmsg_bytes,
                 "btree: corrupt file %s: meta page %" PRIu64 " has root %" PRIu64 " and height %u",
                 t->cfg.path, which, meta.root_page, meta.height);
        rc = TS_ECORRUPT;
    } else if (rc == 0) {
        t->ckpt = meta.checkpoint_id;
        t->root = meta.root_page;
        t->height = meta.height;
        t->ckpt_root = meta.root_page;
        t->ckpt_height = meta.height;
        t->page_count = meta.page_count;
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
    if (rc == 0) {
        rc = load_meta(t, errmsg, errmsg_bytes, &empty);
    }
    if (rc == 0 && empty) {
        char line[400];
        snprintf(line, sizeof(line),
                 "btree: %s never completed a checkpoint: opened as an empty tree", t->cfg.path);
        report(t, line);
        return 0;
    }
    return rc == 0 ? rebuild_free(t, errmsg, errmsg_bytes) : rc;
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
    ts_map64_init(&t->nodes, alloc);
    t->page_bytes = cfg->page_bytes != 0 ? cfg->page_bytes : TS_BTREE_PAGE_BYTES_DEFAULT;
    uint64_t size = 0;
    int rc = btp_page_bytes_valid(t->page_bytes) ? 0 : TS_EINVAL;
    if (rc == 0 && (rc = disk_open(disk, cfg->path, DISK_OPEN_CREATE, &t->file)) == 0) {
        rc = disk_size(disk, t->file, &size);
        if (rc == 0 && size > 0) {
            rc = open_existing(t, errmsg, errmsg_bytes);
        }
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
    uint32_t pos = 0;
    uint64_t pno;
    void *value;
    while (ts_map64_next(&t->nodes, &pos, &pno, &value)) {
        node_free(t, value);
    }
    ts_map64_fini(&t->nodes);
    ts_free(t->alloc, t->free.v, t->free.cap * sizeof(*t->free.v));
    ts_free(t->alloc, t->pending.v, t->pending.cap * sizeof(*t->pending.v));
    TS_ASSERT(t->snapshots == 0); /* close snapshots first */
    for (uint32_t i = 0; i < t->retired_n; i++) {
        ts_free(t->alloc, t->retired[i].pages.v, t->retired[i].pages.cap * sizeof(uint64_t));
    }
    ts_free(t->alloc, t->retired, t->retired_cap * sizeof(*t->retired));
    ts_free(t->alloc, t->user, t->user_len);
    if (t->file != UINT32_MAX) {
        disk_close(t->disk, t->file);
    }
    ts_free(t->alloc, t, sizeof(*t));
}

/* ------------------------------------------------------------------ cursors */

_Static_assert(sizeof(((struct btree_cursor *)0)->branch) / sizeof(uint64_t) == BT_HEIGHT_MAX,
               "a cursor holds a path of the deepest tree");

/* A page of a snapshot: its own copy, made from the live tree's clean page (which has
 * the checkpoint's content) or read from the file. Pages a snapshot can reach are never
 * reused while it is open, so the file still holds them. */
static struct bt_node *snap_node(struct btree_snapshot *s, uint64_t pno, int *rc)
{
    struct btree *t = s->tree;
    struct bt_node *n = ts_map64_get(&s->pages, pno);
    *rc = 0;
    if (n != NULL) {
        return n;
    }
    n = ts_alloc(t->alloc, sizeof(*n));
    uint8_t *buf = ts_alloc(t->alloc, t->page_bytes);
    const struct bt_node *live = ts_map64_get(&t->nodes, pno);
    *rc = n == NULL || buf == NULL ? TS_ENOMEM : 0;
    if (*rc == 0 && live != NULL && !live->dirty) {
        memcpy(buf, live->buf, t->page_bytes);
    } else if (*rc == 0) {
        *rc = read_page(t, pno, buf);
    }
    if (*rc == 0) {
        *n = (struct bt_node){.buf = buf};
        *rc = ts_map64_put(&s->pages, pno, n);
    }
    if (*rc != 0) {
        ts_free(t->alloc, n, sizeof(*n));
        ts_free(t->alloc, buf, t->page_bytes);
        return NULL;
    }
    return n;
}

static struct bt_node *cursor_node(const struct btree_cursor *c, uint64_t pno, int *rc)
{
    return c->snap != NULL ? snap_node(c->snap, pno, rc) : node_get(c->tree, pno, rc);
}

/* Descends from page pno to a leaf, always taking the first (or last) child. */
static int cursor_descend(struct btree_cursor *c, uint64_t pno, bool last)
{
    struct btree *t = c->tree;
    for (;;) {
        int rc;
        struct bt_node *n = cursor_node(c, pno, &rc);
        if (n == NULL) {
            return rc;
        }
        if (btp_type(n->buf) == BTP_TYPE_LEAF) {
            uint32_t count = btp_count(n->buf);
            c->leaf = pno;
            c->pos = last && count > 0 ? count - 1 : 0;
            return 0;
        }
        if (btp_type(n->buf) != BTP_TYPE_BRANCH || c->depth >= BT_HEIGHT_MAX) {
            return TS_ECORRUPT;
        }
        uint32_t ci = last ? btp_count(n->buf) : 0;
        c->branch[c->depth] = pno;
        c->child[c->depth++] = ci;
        pno = btp_branch_child(n->buf, t->page_bytes, ci);
    }
}

/* Moves to the next (or previous) leaf: 1 moved, 0 at the end, or an error. */
static int cursor_step_leaf(struct btree_cursor *c, bool back)
{
    while (c->depth > 0) {
        uint32_t d = c->depth - 1;
        int rc;
        struct bt_node *b = cursor_node(c, c->branch[d], &rc);
        if (b == NULL) {
            return rc;
        }
        uint32_t count = btp_count(b->buf);
        if (back ? c->child[d] > 0 : c->child[d] < count) {
            c->child[d] += back ? -1u : 1u;
            uint64_t pno = btp_branch_child(b->buf, c->tree->page_bytes, c->child[d]);
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
        struct bt_node *leaf = cursor_node(c, c->leaf, &rc);
        if (leaf == NULL) {
            return rc;
        }
        uint32_t count = btp_count(leaf->buf);
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
    if (t->err != 0 || cursor_root(c) == 0) {
        return t->err != 0 ? t->err : TS_ENOTFOUND;
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
        struct bt_node *n = cursor_node(c, pno, &rc);
        if (n == NULL) {
            return rc;
        }
        if (btp_type(n->buf) == BTP_TYPE_LEAF) {
            bool found;
            c->leaf = pno;
            btp_leaf_search(n->buf, t->page_bytes, key, key_len, &c->pos, &found);
            return cursor_settle(c, false);
        }
        if (btp_type(n->buf) != BTP_TYPE_BRANCH || c->depth >= BT_HEIGHT_MAX) {
            return TS_ECORRUPT;
        }
        uint32_t ci = btp_branch_search(n->buf, t->page_bytes, key, key_len);
        c->branch[c->depth] = pno;
        c->child[c->depth++] = ci;
        pno = btp_branch_child(n->buf, t->page_bytes, ci);
    }
}

int btree_cursor_seek(struct btree_cursor *c, struct btree *t, const void *key, uint32_t key_len)
{
    int rc = cursor_start(c, t, NULL);
    return rc == 0 ? cursor_seek(c, key, key_len) : rc;
}

int btree_snapshot_seek(struct btree_cursor *c, struct btree_snapshot *s, const void *key,
                        uint32_t key_len)
{
    int rc = cursor_start(c, s->tree, s);
    return rc == 0 ? cursor_seek(c, key, key_len) : rc;
}

int btree_cursor_last(struct btree_cursor *c, struct btree *t)
{
    int rc = cursor_start(c, t, NULL);
    if (rc == 0) {
        rc = cursor_descend(c, t->root, true);
    }
    return rc == 0 ? cursor_settle(c, true) : rc;
}

int btree_cursor_next(struct btree_cursor *c)
{
    TS_ASSERT(c->valid);
    c->pos++;
    return cursor_settle(c, false);
}

int btree_cursor_prev(struct btree_cursor *c)
{
    TS_ASSERT(c->valid);
    if (c->pos > 0) {
        c->pos--;
        return 0;
    }
    int rc = cursor_step_leaf(c, true);
    if (rc <= 0) {
        c->valid = false;
        return rc == 0 ? TS_ENOTFOUND : rc;
    }
    return cursor_settle(c, true);
}

static struct btp_cell cursor_cell(const struct btree_cursor *c)
{
    int rc;
    struct bt_node *leaf = cursor_node(c, c->leaf, &rc);
    TS_ASSERT(c->valid && leaf != NULL); /* settle loaded it */
    return btp_leaf_get(leaf->buf, c->tree->page_bytes, c->pos);
}

void btree_cursor_key(const struct btree_cursor *c, const uint8_t **key, uint32_t *key_len)
{
    struct btp_cell cell = cursor_cell(c);
    *key = cell.key;
    *key_len = cell.key_len;
}

int btree_cursor_value(const struct btree_cursor *c, void *buf, uint32_t buf_bytes,
                       uint32_t *value_len)
{
    struct btp_cell cell = cursor_cell(c);
    *value_len = cell.value_len;
    if (cell.value_len > buf_bytes) {
        return TS_ETOOBIG;
    }
    if (cell.overflow_page != 0) {
        return overflow_read(c->tree, c->snap, cell.overflow_page, buf, cell.value_len);
    }
    if (cell.value_len > 0) {
        memcpy(buf, cell.value, cell.value_len);
    }
    return 0;
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
    ts_map64_init(&s->pages, t->alloc);
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
    uint32_t pos = 0;
    uint64_t pno;
    void *value;
    while (ts_map64_next(&s->pages, &pos, &pno, &value)) {
        node_free(t, value);
    }
    ts_map64_fini(&s->pages);
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
    return rc == TS_ENOTFOUND ? 0 : rc;
}

int btree_delete_range(struct btree *t, const void *lo, uint32_t lo_len, const void *hi,
                       uint32_t hi_len, uint64_t *deleted)
{
    uint8_t key[TS_KEY_BYTES_MAX];
    *deleted = 0;
    for (;;) {
        struct btree_cursor c;
        int rc = btree_cursor_seek(&c, t, lo, lo_len);
        if (rc != 0 || !below(&c, hi, hi_len)) {
            return rc == TS_ENOTFOUND ? 0 : rc;
        }
        const uint8_t *k;
        uint32_t k_len;
        btree_cursor_key(&c, &k, &k_len);
        memcpy(key, k, k_len); /* the view dies with the delete */
        if ((rc = btree_delete(t, key, k_len)) != 0) {
            return rc;
        }
        (*deleted)++;
    }
}
