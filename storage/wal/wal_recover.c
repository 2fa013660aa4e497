/*
 * WAL recovery: list the segments, check each one, replay its batches into the
 * in-memory state, cut a torn tail. The rules are in wal.h ("Why these choices").
 */
#include "storage/wal/wal_int.h"

#include "core/util/assert.h"
#include "core/util/crc32c.h"
#include "core/util/encoding.h"
#include "core/util/err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything recovery needs about the segment being read. */
struct scan {
    struct wal *w;
    const uint8_t *buf;
    uint64_t size; /* bytes read (the file's size) */
    uint64_t seq;
    uint64_t base_lsn;
    char path[320];
    char *errmsg;
    size_t errmsg_bytes;
};

static int corrupt(struct scan *s, uint64_t offset, uint64_t group, const char *why)
{
    if (s->errmsg != NULL && s->errmsg_bytes > 0) {
        char g[48] = "";
        if (group != 0) {
            snprintf(g, sizeof(g), " (group %" PRIu64 ")", group);
        }
        snprintf(s->errmsg, s->errmsg_bytes,
                 "wal: corrupt log: %s at offset %" PRIu64 "%s: %s; refusing to start (restore "
                 "this shard's replicas from their peers, or repair the file)",
                 s->path, offset, g, why);
    }
    return TS_ECORRUPT;
}

static void report(struct wal *w, const char *line)
{
    if (w->cfg.report_cb != NULL) {
        w->cfg.report_cb(w->cfg.data, line);
    }
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/* A record header at pos that is self-consistent and fits before end. Returns its
 * total size (padded), or 0. */
static uint32_t record_ok(const struct scan *s, uint64_t pos, uint64_t end)
{
    if (pos + WAL_RECORD_HEADER_BYTES > end) {
        return 0;
    }
    const uint8_t *r = s->buf + pos;
    uint32_t len = ts_load_le32(r);
    uint64_t bytes = ((uint64_t)WAL_RECORD_HEADER_BYTES + len + 7) & ~7ull;
    if (pos + bytes > end || r[8] < WAL_BATCH || r[8] > WAL_GROUP_STATE || !all_zero(r + 9, 7)) {
        return 0;
    }
    if (ts_load_le32(r + 4) != wal_record_crc(s->seq, r, len)) {
        return 0;
    }
    return (uint32_t)bytes;
}

/* A valid BATCH record at pos: returns the batch's bytes, or 0. */
static uint32_t batch_header_ok(const struct scan *s, uint64_t pos)
{
    uint32_t bytes = record_ok(s, pos, s->size);
    const uint8_t *r = s->buf + pos;
    if (bytes == 0 || r[8] != WAL_BATCH || ts_load_le32(r) != 16 ||
        ts_load_le64(r + 32) != s->base_lsn + pos) {
        return 0;
    }
    uint32_t batch = ts_load_le32(r + 24);
    if (batch < WAL_RECORD_HEADER_BYTES + 16 || pos + batch > s->size || batch % 8 != 0) {
        return 0;
    }
    return batch;
}

/* Checks every record of the batch at pos. Returns 0 or a reason. */
static const char *batch_check(const struct scan *s, uint64_t pos, uint32_t batch, uint64_t *bad_at,
                               uint64_t *bad_group)
{
    uint64_t end = pos + batch;
    uint32_t want = ts_load_le32(s->buf + pos + 28);
    uint32_t got = 0;
    uint64_t q = pos + WAL_RECORD_HEADER_BYTES + 16;
    while (q < end) {
        uint32_t bytes = record_ok(s, q, end);
        if (bytes == 0 || s->buf[q + 8] == WAL_BATCH) {
            *bad_at = q;
            *bad_group = q + 24 <= end ? ts_load_le64(s->buf + q + 16) : 0;
            return bytes == 0 ? "bad record (checksum, type or length)" : "nested batch record";
        }
        got++;
        q += bytes;
    }
    if (got != want) {
        *bad_at = pos;
        *bad_group = 0;
        return "batch record count does not match";
    }
    return NULL;
}

static int inspect_record(struct scan *s, uint64_t q)
{
    const uint8_t *r = s->buf + q;
    const uint8_t *p = r + WAL_RECORD_HEADER_BYTES;
    struct wal_record_info info = {.seq = s->seq,
                                   .offset = q,
                                   .lsn = s->base_lsn + q,
                                   .type = r[8],
                                   .group = ts_load_le64(r + 16),
                                   .len = ts_load_le32(r)};
    switch (info.type) {
    case WAL_ENTRY:
    case WAL_COMPACT:
    case WAL_SNAPSHOT:
        info.term = info.type == WAL_ENTRY ? ts_load_le64(p) : ts_load_le64(p + 8);
        info.index = info.type == WAL_ENTRY ? ts_load_le64(p + 8) : ts_load_le64(p);
        break;
    case WAL_HARD_STATE:
        info.term = ts_load_le64(p);
        break;
    case WAL_TRUNCATE:
        info.index = ts_load_le64(p);
        break;
    case WAL_GROUP_STATE:
        info.index = ts_load_le64(p);
        info.term = ts_load_le64(p + 16);
        break;
    default:
        break;
    }
    return s->w->inspect_fn(s->w->inspect_arg, &info);
}

static int batch_apply(struct scan *s, uint64_t pos, uint32_t batch)
{
    uint64_t end = pos + batch;
    uint64_t q = pos + WAL_RECORD_HEADER_BYTES + 16;
    if (s->w->inspect_fn != NULL) {
        int rc = inspect_record(s, pos);
        if (rc != 0) {
            return rc;
        }
    }
    while (q < end) {
        const uint8_t *r = s->buf + q;
        uint32_t len = ts_load_le32(r);
        uint64_t group = ts_load_le64(r + 16);
        if (s->w->inspect_fn != NULL) {
            int rc = inspect_record(s, q);
            if (rc != 0) {
                return rc;
            }
        }
        int rc = wal_apply(s->w, r[8], group, r + WAL_RECORD_HEADER_BYTES, len, s->base_lsn + q);
        if (rc == TS_ECORRUPT) {
            return corrupt(s, q, group, "record does not follow the group's log");
        }
        if (rc != 0) {
            return rc;
        }
        q += ((uint64_t)WAL_RECORD_HEADER_BYTES + len + 7) & ~7ull;
    }
    return 0;
}

static void zero_done(struct disk_req *req)
{
    *(bool *)req->data = true;
}

/* Zeroes [from, to) of the tail segment and syncs it, so that a cut tail can never
 * look like data again. */
static int zero_range(struct wal *w, uint32_t file, uint64_t from, uint64_t to)
{
    TS_ASSERT(from < to && to - from <= UINT32_MAX);
    uint32_t n = (uint32_t)(to - from);
    uint8_t *zeros = ts_alloc(w->alloc, n);
    if (zeros == NULL) {
        return TS_ENOMEM;
    }
    memset(zeros, 0, n);
    bool done = false;
    struct disk_req req = {.op = DISK_OP_WRITE_FDATASYNC,
                           .file = file,
                           .buf = zeros,
                           .len = n,
                           .offset = from,
                           .cb = zero_done,
                           .data = &done};
    disk_submit(w->disk, &req);
    int rc = 0;
    while (!done && rc >= 0) {
        rc = disk_run(w->disk, true);
    }
    ts_free(w->alloc, zeros, n);
    if (rc < 0) {
        return rc;
    }
    return req.res == (int32_t)n ? 0 : (req.res < 0 ? req.res : -EIO);
}

/* The last segment has a bad batch at pos: a torn tail, or corruption if any valid
 * batch follows it. */
static int cut_tail(struct scan *s, uint32_t file, uint64_t pos, const char *why, uint64_t bad_at,
                    uint64_t bad_group)
{
    for (uint64_t q = pos + 8; q + WAL_RECORD_HEADER_BYTES <= s->size; q += 8) {
        if (batch_header_ok(s, q) != 0) {
            return corrupt(s, bad_at, bad_group, why);
        }
    }
    uint64_t last = s->size;
    while (last > pos && s->buf[last - 1] == 0) {
        last--;
    }
    last = (last + 7) & ~7ull;
    char line[512];
    snprintf(line, sizeof(line),
             "wal: torn tail in %s at offset %" PRIu64 " (%s): cut %" PRIu64
             " bytes that were never reported durable",
             s->path, pos, why, last - pos);
    report(s->w, line);
    if (s->w->readonly) {
        return 0;
    }
    return last > pos ? zero_range(s->w, file, pos, last) : 0;
}

/* Replays one segment's batches; *used receives the bytes of the segment in use. */
static int scan_batches(struct scan *s, uint32_t file, bool is_last, uint64_t *used)
{
    uint64_t pos = WAL_SEGMENT_HEADER_BYTES;
    while (pos + WAL_RECORD_HEADER_BYTES <= s->size) {
        if (all_zero(s->buf + pos, WAL_RECORD_HEADER_BYTES)) {
            break;
        }
        uint64_t bad_at = pos, bad_group = 0;
        uint32_t batch = batch_header_ok(s, pos);
        const char *why =
            batch == 0 ? "bad batch header" : batch_check(s, pos, batch, &bad_at, &bad_group);
        if (why != NULL) {
            *used = pos;
            if (!is_last) {
                return corrupt(s, bad_at, bad_group, why);
            }
            return cut_tail(s, file, pos, why, bad_at, bad_group);
        }
        int rc = batch_apply(s, pos, batch);
        if (rc != 0) {
            return rc;
        }
        pos += batch;
    }
    *used = pos;
    if (!is_last && !all_zero(s->buf + pos, s->size - pos)) {
        return corrupt(s, pos, 0, "data after the end of a sealed segment");
    }
    return 0;
}

static int read_all(struct wal *w, uint32_t file, uint8_t *buf, uint64_t size)
{
    for (uint64_t off = 0; off < size;) {
        size_t chunk = size - off < (4u << 20) ? (size_t)(size - off) : (4u << 20);
        int64_t n = disk_pread(w->disk, file, buf + off, chunk, off);
        if (n < 0) {
            return (int)n;
        }
        if (n == 0) {
            return TS_ECORRUPT;
        }
        off += (uint64_t)n;
    }
    return 0;
}

/* Checks the segment header; a last segment whose header was never written is empty. */
static int check_header(struct scan *s, bool is_last, uint64_t expect_base, bool *empty)
{
    const uint8_t *h = s->buf;
    *empty = false;
    if (s->size < WAL_SEGMENT_HEADER_BYTES) {
        return corrupt(s, 0, 0, "file shorter than a segment header");
    }
    if (is_last && all_zero(h, WAL_SEGMENT_HEADER_BYTES)) {
        if (expect_base == UINT64_MAX) {
            return corrupt(s, 0, 0, "the oldest segment was never written");
        }
        *empty = true;
        s->base_lsn = expect_base;
        return 0;
    }
    if (memcmp(h, WAL_MAGIC, 8) != 0 || ts_load_le32(h + 28) != ts_crc32c(0, h, 28)) {
        return corrupt(s, 0, 0, "bad segment header (magic or checksum)");
    }
    if (ts_load_le64(h + 8) != s->seq) {
        return corrupt(s, 8, 0, "segment header names another sequence number");
    }
    s->base_lsn = ts_load_le64(h + 16);
    if (expect_base != UINT64_MAX && s->base_lsn != expect_base) {
        return corrupt(s, 16, 0, "segment does not continue the previous one (missing data)");
    }
    if (ts_load_le32(h + 24) != s->size) {
        return corrupt(s, 24, 0, "segment size does not match its header");
    }
    return 0;
}

/* The last segment's header is bad. Its header goes out with its first batch, so if no
 * valid batch follows, the first write was torn: nothing in it was ever durable. The
 * segment is cleared and reused as an empty tail. */
static int torn_first_batch(struct scan *s, uint32_t file, uint64_t expect_base, bool *empty)
{
    s->base_lsn = expect_base;
    for (uint64_t q = WAL_SEGMENT_HEADER_BYTES; q + WAL_RECORD_HEADER_BYTES <= s->size; q += 8) {
        if (batch_header_ok(s, q) != 0) {
            return TS_ECORRUPT; /* the message from check_header stands */
        }
    }
    if (s->errmsg != NULL && s->errmsg_bytes > 0) {
        s->errmsg[0] = 0;
    }
    uint64_t last = s->size;
    while (last > 0 && s->buf[last - 1] == 0) {
        last--;
    }
    last = (last + 7) & ~7ull;
    char line[512];
    snprintf(line, sizeof(line),
             "wal: torn first write in %s (its header is incomplete): cut %" PRIu64
             " bytes that were never reported durable",
             s->path, last);
    report(s->w, line);
    *empty = true;
    if (s->w->readonly || last == 0) {
        return 0;
    }
    return zero_range(s->w, file, 0, last);
}

struct read_buf {
    uint8_t *p;
    uint64_t bytes;
};

static int recover_segment(struct wal *w, struct scan *s, struct read_buf *rb, bool is_last,
                           uint64_t *expect_base)
{
    wal_segment_path(w, s->seq, s->path, sizeof(s->path));
    uint32_t file;
    int rc = disk_open(w->disk, s->path, w->readonly ? DISK_OPEN_READONLY : 0, &file);
    if (rc == 0) {
        rc = disk_size(w->disk, file, &s->size);
    }
    if (rc == 0 && (s->size > UINT32_MAX || s->size % 8 != 0)) {
        rc = corrupt(s, 0, 0, "segment size is not a multiple of 8 or is too large");
    }
    if (rc == 0 && s->size > rb->bytes) {
        ts_free(w->alloc, rb->p, rb->bytes);
        rb->bytes = s->size;
        rb->p = ts_alloc(w->alloc, rb->bytes);
        rc = rb->p == NULL ? TS_ENOMEM : 0;
        rb->bytes = rb->p == NULL ? 0 : rb->bytes;
    }
    bool empty = false;
    if (rc == 0 && (rc = read_all(w, file, rb->p, s->size)) == 0) {
        s->buf = rb->p;
        rc = check_header(s, is_last, *expect_base, &empty);
        bool unreadable = memcmp(s->buf, WAL_MAGIC, 8) != 0 ||
                          ts_load_le32(s->buf + 28) != ts_crc32c(0, s->buf, 28);
        /* Only a header that never fully reached the disk can be a torn first write; a
         * complete header naming the wrong place is corruption. */
        if (rc == TS_ECORRUPT && unreadable && is_last && *expect_base != UINT64_MAX &&
            s->size >= WAL_SEGMENT_HEADER_BYTES) {
            rc = torn_first_batch(s, file, *expect_base, &empty);
        }
    }
    uint64_t used = 0;
    if (rc == 0 && !empty) {
        rc = scan_batches(s, file, is_last, &used);
    }
    if (rc == 0) {
        rc = wal_segs_push(w, (struct wal_segment){.seq = s->seq,
                                                   .base_lsn = s->base_lsn,
                                                   .state_end_lsn = s->base_lsn,
                                                   .bytes = s->size,
                                                   .file = file});
    }
    if (rc != 0) {
        disk_close(w->disk, file);
        return rc;
    }
    *expect_base = s->base_lsn + used;
    return 0;
}

struct seq_list {
    const struct ts_allocator *alloc;
    uint64_t *seqs;
    uint32_t n;
    uint32_t cap;
};

static int collect(void *arg, const char *name)
{
    struct seq_list *l = arg;
    size_t len = strlen(name);
    if (len != 20 || strcmp(name + 16, ".wal") != 0) {
        return 0; /* not a segment */
    }
    char *end;
    uint64_t seq = strtoull(name, &end, 16);
    if (end != name + 16) {
        return 0;
    }
    if (l->n == l->cap) {
        uint32_t cap = l->cap == 0 ? 16 : l->cap * 2;
        uint64_t *seqs = ts_alloc(l->alloc, (size_t)cap * sizeof(*seqs));
        if (seqs == NULL) {
            return TS_ENOMEM;
        }
        if (l->n > 0) { /* memcpy from NULL is undefined even for 0 bytes */
            memcpy(seqs, l->seqs, (size_t)l->n * sizeof(*seqs));
        }
        ts_free(l->alloc, l->seqs, (size_t)l->cap * sizeof(*seqs));
        l->seqs = seqs;
        l->cap = cap;
    }
    l->seqs[l->n++] = seq;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segments at the end of the list that were created but never written (a crash between
 * creating a segment and its first write, or staging that ran ahead of the disk) hold
 * nothing: they are removed (only reported by wal_inspect), so that the last segment
 * written is the tail and the torn-tail rule applies to it. */
static int drop_unwritten_tail(struct wal *w, struct seq_list *l)
{
    while (l->n > 0) {
        char path[320];
        wal_segment_path(w, l->seqs[l->n - 1], path, sizeof(path));
        uint32_t file;
        int rc = disk_open(w->disk, path, DISK_OPEN_READONLY, &file);
        if (rc != 0) {
            return rc;
        }
        uint64_t size = 0;
        uint8_t h[WAL_SEGMENT_HEADER_BYTES];
        int64_t n = 0;
        rc = disk_size(w->disk, file, &size);
        if (rc == 0 && size >= sizeof(h)) {
            n = disk_pread(w->disk, file, h, sizeof(h), 0);
        }
        disk_close(w->disk, file);
        if (rc != 0 || n < 0) {
            return rc != 0 ? rc : (int)n;
        }
        if (size >= sizeof(h) && (n < (int64_t)sizeof(h) || !all_zero(h, sizeof(h)))) {
            return 0;
        }
        char line[400];
        snprintf(line, sizeof(line), "wal: %s was created but never written: %s", path,
                 w->readonly ? "ignored" : "removed");
        report(w, line);
        if (!w->readonly && ((rc = disk_remove(w->disk, path)) != 0 ||
                             (rc = disk_sync_dir(w->disk, w->dir)) != 0)) {
            return rc;
        }
        l->n--;
    }
    return 0;
}

/* After replay every retained entry must have its record: a phantom left means a
 * segment holding needed entries is gone. */
static int check_no_phantoms(struct wal *w, char *errmsg, size_t errmsg_bytes)
{
    uint32_t pos = 0;
    uint64_t key;
    void *value;
    while (ts_map64_next(&w->groups, &pos, &key, &value)) {
        const struct wal_group *g = value;
        if (g->count > 0 && g->ents[g->start].lsn == WAL_LSN_PHANTOM) {
            snprintf(errmsg, errmsg_bytes,
                     "wal: corrupt log: %s: group %" PRIu64 " needs entries from index %" PRIu64
                     " whose segment is gone; refusing to start",
                     w->dir, key, g->snap_index + 1);
            return TS_ECORRUPT;
        }
    }
    return 0;
}

static int replay(struct wal *w, const struct seq_list *l, char *errmsg, size_t errmsg_bytes)
{
    for (uint32_t i = 1; i < l->n; i++) {
        if (l->seqs[i] != l->seqs[i - 1] + 1) {
            snprintf(errmsg, errmsg_bytes,
                     "wal: corrupt log: %s: segment %016" PRIx64 " is missing; refusing to start",
                     w->dir, l->seqs[i - 1] + 1);
            return TS_ECORRUPT;
        }
    }
    /* The oldest segment kept has no predecessor to continue; segment 1 starts at 0. */
    uint64_t expect = l->seqs[0] == 1 ? 0 : UINT64_MAX;
    struct read_buf rb = {0};
    int rc = 0;
    for (uint32_t i = 0; i < l->n && rc == 0; i++) {
        struct scan s = {.w = w, .seq = l->seqs[i], .errmsg = errmsg, .errmsg_bytes = errmsg_bytes};
        rc = recover_segment(w, &s, &rb, i == l->n - 1, &expect);
    }
    ts_free(w->alloc, rb.p, rb.bytes);
    if (rc != 0) {
        return rc;
    }
    w->staged_lsn = expect;
    w->recovered_lsn = expect;
    if ((rc = check_no_phantoms(w, errmsg, errmsg_bytes)) != 0) {
        return rc;
    }
    /* A tail segment other than the first whose opening batch (the groups' states) was
     * torn away must get them again before anything else is written to it. */
    struct wal_segment *tail = &w->segs[w->nsegs - 1];
    if (!w->readonly && tail->seq > 1 &&
        w->staged_lsn <= tail->base_lsn + WAL_SEGMENT_HEADER_BYTES) {
        rc = wal_stage_group_states(w);
        tail->state_end_lsn = w->staged_lsn;
    }
    return rc;
}

static int sync_parent(struct wal *w)
{
    char parent[sizeof(w->dir)];
    snprintf(parent, sizeof(parent), "%s", w->dir);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') {
        parent[--n] = 0;
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof(parent), ".");
    } else if (slash == parent) {
        parent[1] = 0;
    } else {
        *slash = 0;
    }
    return disk_sync_dir(w->disk, parent);
}

int wal_recover(struct wal *w, char *errmsg, size_t errmsg_bytes)
{
    char scratch[8];
    if (errmsg == NULL || errmsg_bytes == 0) {
        errmsg = scratch;
        errmsg_bytes = sizeof(scratch);
    }
    errmsg[0] = 0;
    int rc = w->readonly ? 0 : disk_mkdir(w->disk, w->dir);
    if (rc == 0 && !w->readonly) {
        rc = sync_parent(w); /* a new directory is durable once its parent is synced */
    }
    if (rc != 0 && rc != -EEXIST) {
        snprintf(errmsg, errmsg_bytes, "wal: cannot create %s: %s", w->dir, ts_strerror(rc));
        return rc;
    }
    struct seq_list l = {.alloc = w->alloc};
    rc = disk_list(w->disk, w->dir, collect, &l);
    if (rc == 0) {
        if (l.n > 1) {
            qsort(l.seqs, l.n, sizeof(*l.seqs), cmp_u64);
        }
        rc = drop_unwritten_tail(w, &l);
    }
    if (rc == 0 && l.n == 0 && w->readonly) {
        w->staged_lsn = 0;
    } else if (rc == 0 && l.n == 0) {
        rc = wal_segment_create(w, 1, 0);
        w->staged_lsn = 0;
    } else if (rc == 0) {
        rc = replay(w, &l, errmsg, errmsg_bytes);
    }
    ts_free(w->alloc, l.seqs, (size_t)l.cap * sizeof(*l.seqs));
    if (rc != 0 && errmsg[0] == 0) {
        snprintf(errmsg, errmsg_bytes, "wal: cannot open %s: %s", w->dir, ts_strerror(rc));
    }
    if (rc == 0) {
        char line[400];
        snprintf(line, sizeof(line), "wal: %s: %u segments, %u groups, log at %" PRIu64, w->dir,
                 w->nsegs, w->groups.count, w->staged_lsn);
        report(w, line);
    }
    return rc;
}
