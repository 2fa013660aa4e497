#include "storage/wal/wal_int.h"

#include "core/util/assert.h"
#include "core/util/crc32c.h"
#include "core/util/encoding.h"
#include "core/util/err.h"
#include "core/util/limits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ groups */

struct wal_group *wal_group_get(struct wal *w, uint64_t id, bool create, int *rc)
{
    *rc = 0;
    struct wal_group *g = ts_map64_get(&w->groups, id);
    if (g != NULL || !create) {
        return g;
    }
    /* Every group's state must fit a new segment with room left for entries. */
    uint64_t states = (uint64_t)(w->groups.count + 1) * WAL_GROUP_STATE_BYTES;
    if (w->groups.count >= TS_WAL_GROUPS_MAX ||
        (!w->readonly && w->nsegs > 0 && states * 2 > w->segs[w->nsegs - 1].bytes)) {
        *rc = TS_EFULL;
        return NULL;
    }
    g = ts_alloc(w->alloc, sizeof(*g));
    if (g == NULL) {
        *rc = TS_ENOMEM;
        return NULL;
    }
    *g = (struct wal_group){.id = id};
    *rc = ts_map64_put(&w->groups, id, g);
    if (*rc != 0) {
        ts_free(w->alloc, g, sizeof(*g));
        return NULL;
    }
    return g;
}

static void group_free(struct wal *w, struct wal_group *g)
{
    ts_free(w->alloc, g->ents, (size_t)g->cap * sizeof(*g->ents));
    ts_free(w->alloc, g, sizeof(*g));
}

/* Room for one more entry at the end. */
static int group_reserve(struct wal *w, struct wal_group *g)
{
    if (g->start + g->count < g->cap) {
        return 0;
    }
    if (g->start > 0 && g->count < g->cap / 2) {
        memmove(g->ents, g->ents + g->start, (size_t)g->count * sizeof(*g->ents));
        g->start = 0;
        return 0;
    }
    uint32_t cap = g->cap == 0 ? 16 : g->cap * 2;
    struct wal_ent *ents = ts_alloc(w->alloc, (size_t)cap * sizeof(*ents));
    if (ents == NULL) {
        return TS_ENOMEM;
    }
    if (g->count > 0) {
        memcpy(ents, g->ents + g->start, (size_t)g->count * sizeof(*ents));
    }
    ts_free(w->alloc, g->ents, (size_t)g->cap * sizeof(*g->ents));
    g->ents = ents;
    g->cap = cap;
    g->start = 0;
    return 0;
}

/*
 * Makes applying one more record to the group unable to fail: the group exists (made
 * now when *created) and has room for one more entry. A record is staged only after
 * this, so the in-memory state always equals the replay of what was staged.
 */
static int prepare(struct wal *w, uint64_t group, bool *created)
{
    *created = ts_map64_get(&w->groups, group) == NULL;
    int rc;
    struct wal_group *g = wal_group_get(w, group, true, &rc);
    if (g == NULL) {
        return rc;
    }
    rc = group_reserve(w, g);
    if (rc != 0 && *created) {
        group_free(w, ts_map64_del(&w->groups, group));
    }
    return rc;
}

/* Undoes prepare when staging failed: a group made for the record goes again. */
static void unprepare(struct wal *w, uint64_t group, bool created)
{
    if (created) {
        struct wal_group *g = ts_map64_del(&w->groups, group);
        TS_ASSERT(g != NULL && g->count == 0);
        group_free(w, g);
    }
}

static struct wal_ent *group_ent(const struct wal_group *g, uint64_t index)
{
    TS_DASSERT(index > g->snap_index && index <= wal_group_last(g));
    return &g->ents[g->start + (index - g->snap_index - 1)];
}

static void group_compact(struct wal_group *g, uint64_t index, uint64_t term)
{
    TS_ASSERT(index > g->snap_index);
    uint64_t drop = index - g->snap_index;
    if (drop >= g->count) {
        g->start = 0;
        g->count = 0;
    } else {
        g->start += (uint32_t)drop;
        g->count -= (uint32_t)drop;
    }
    g->snap_index = index;
    g->snap_term = term;
}

static int apply_entry(struct wal *w, struct wal_group *g, const uint8_t *p, uint32_t len,
                       uint64_t lsn)
{
    if (len < 16) {
        return TS_ECORRUPT;
    }
    uint64_t term = ts_load_le64(p);
    uint64_t index = ts_load_le64(p + 8);
    if (index <= g->snap_index || index > wal_group_last(g) + 1) {
        return TS_ECORRUPT;
    }
    g->count = (uint32_t)(index - g->snap_index - 1); /* an overwrite truncates first */
    int rc = group_reserve(w, g);
    if (rc != 0) {
        return rc;
    }
    g->ents[g->start + g->count] = (struct wal_ent){.term = term, .lsn = lsn, .len = len - 16};
    g->count++;
    return 0;
}

/* A GROUP_STATE record. A group already known from earlier records is unchanged (the
 * record restates it); a group first seen here had its earlier records in deleted
 * segments, so its entries up to last_index become phantoms (lsn WAL_LSN_PHANTOM). */
static int apply_state(struct wal *w, struct wal_group *g, bool known, const uint8_t *p)
{
    uint64_t snap = ts_load_le64(p);
    uint64_t last = ts_load_le64(p + 48);
    if (known) {
        return snap == g->snap_index && last == wal_group_last(g) ? 0 : TS_ECORRUPT;
    }
    if (last < snap || last - snap > UINT32_MAX) {
        return TS_ECORRUPT;
    }
    g->start = 0;
    g->count = 0;
    g->snap_index = snap;
    g->snap_term = ts_load_le64(p + 8);
    g->hs =
        (struct wal_hard_state){ts_load_le64(p + 16), ts_load_le64(p + 24), ts_load_le64(p + 32)};
    g->has_hs = (ts_load_le64(p + 40) & 1) != 0;
    for (uint64_t i = snap; i < last; i++) {
        int rc = group_reserve(w, g);
        if (rc != 0) {
            return rc;
        }
        g->ents[g->count++] = (struct wal_ent){.lsn = WAL_LSN_PHANTOM};
    }
    return 0;
}

static int apply_compact(struct wal_group *g, const uint8_t *p)
{
    uint64_t index = ts_load_le64(p);
    if (index <= g->snap_index || index > wal_group_last(g)) {
        return TS_ECORRUPT;
    }
    group_compact(g, index, ts_load_le64(p + 8));
    return 0;
}

static int apply_truncate(struct wal_group *g, const uint8_t *p)
{
    uint64_t index = ts_load_le64(p);
    if (index <= g->snap_index) {
        return TS_ECORRUPT;
    }
    if (index <= wal_group_last(g)) {
        g->count = (uint32_t)(index - g->snap_index - 1);
    }
    return 0;
}

static const uint32_t payload_bytes[] = {
    [WAL_BATCH] = 16,   [WAL_ENTRY] = 16,    [WAL_HARD_STATE] = 24, [WAL_TRUNCATE] = 8,
    [WAL_COMPACT] = 16, [WAL_SNAPSHOT] = 16, [WAL_REMOVE] = 0,      [WAL_GROUP_STATE] = 56,
};

int wal_apply(struct wal *w, uint8_t type, uint64_t group, const uint8_t *p, uint32_t len,
              uint64_t lsn)
{
    TS_ASSERT(type >= WAL_ENTRY && type <= WAL_GROUP_STATE);
    if (len < payload_bytes[type] || (type != WAL_ENTRY && len != payload_bytes[type])) {
        return TS_ECORRUPT;
    }
    if (type == WAL_REMOVE) {
        struct wal_group *gone = ts_map64_del(&w->groups, group);
        if (gone != NULL) {
            group_free(w, gone);
        }
        return 0;
    }
    int rc;
    bool known = ts_map64_get(&w->groups, group) != NULL;
    struct wal_group *g = wal_group_get(w, group, true, &rc);
    if (g == NULL) {
        return rc;
    }
    g->staged = true;
    switch (type) {
    case WAL_ENTRY:
        return apply_entry(w, g, p, len, lsn);
    case WAL_HARD_STATE:
        g->hs = (struct wal_hard_state){ts_load_le64(p), ts_load_le64(p + 8), ts_load_le64(p + 16)};
        g->has_hs = true;
        return 0;
    case WAL_TRUNCATE:
        return apply_truncate(g, p);
    case WAL_COMPACT:
        return apply_compact(g, p);
    case WAL_SNAPSHOT:
        g->count = 0;
        g->start = 0;
        g->snap_index = ts_load_le64(p);
        g->snap_term = ts_load_le64(p + 8);
        return 0;
    default:
        return apply_state(w, g, known, p);
    }
}

/* ------------------------------------------------------------------ segments */

void wal_segment_path(const struct wal *w, uint64_t seq, char *path, size_t bytes)
{
    snprintf(path, bytes, "%s/%016" PRIx64 ".wal", w->dir, seq);
}

int wal_segs_push(struct wal *w, struct wal_segment seg)
{
    if (w->nsegs == w->segs_cap) {
        uint32_t cap = w->segs_cap == 0 ? 8 : w->segs_cap * 2;
        struct wal_segment *segs = ts_alloc(w->alloc, (size_t)cap * sizeof(*segs));
        if (segs == NULL) {
            return TS_ENOMEM;
        }
        if (w->nsegs > 0) { /* memcpy from NULL is undefined even for 0 bytes */
            memcpy(segs, w->segs, (size_t)w->nsegs * sizeof(*segs));
        }
        ts_free(w->alloc, w->segs, (size_t)w->segs_cap * sizeof(*segs));
        w->segs = segs;
        w->segs_cap = cap;
    }
    w->segs[w->nsegs++] = seg;
    return 0;
}

int wal_segment_create(struct wal *w, uint64_t seq, uint64_t base_lsn)
{
    char path[320];
    wal_segment_path(w, seq, path, sizeof(path));
    uint32_t file;
    int rc = disk_open(w->disk, path, DISK_OPEN_CREATE | DISK_OPEN_EXCL, &file);
    if (rc != 0) {
        return rc == -ENOSPC ? TS_ENOSPACE : rc;
    }
    rc = disk_allocate(w->disk, file, w->cfg.segment_bytes);
    if (rc == 0) {
        rc = disk_sync_dir(w->disk, w->dir);
    }
    if (rc == 0) {
        rc = wal_segs_push(w, (struct wal_segment){.seq = seq,
                                                   .base_lsn = base_lsn,
                                                   .state_end_lsn = base_lsn,
                                                   .bytes = w->cfg.segment_bytes,
                                                   .file = file});
    }
    if (rc != 0) {
        disk_close(w->disk, file);
        disk_remove(w->disk, path);
        return rc == -ENOSPC ? TS_ENOSPACE : rc;
    }
    w->stats.segments_created++;
    return 0;
}

static struct wal_segment *tail_seg(struct wal *w)
{
    TS_ASSERT(w->nsegs > 0);
    return &w->segs[w->nsegs - 1];
}

/* The segment holding lsn (binary search: segments are in LSN order). */
static struct wal_segment *seg_of(const struct wal *w, uint64_t lsn)
{
    uint32_t lo = 0, hi = w->nsegs;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (w->segs[mid].base_lsn <= lsn) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    TS_ASSERT(w->nsegs > 0 && w->segs[lo].base_lsn <= lsn);
    return &w->segs[lo];
}

/* Deletes the oldest segments that no group needs any more. A segment goes only when
 * the segment after it begins with durable GROUP_STATE records. */
static void segments_gc(struct wal *w)
{
    /* The in-memory state may include staged records that shrank a group's log
     * (compact, snapshot, truncate, remove). Deciding on it before they are durable
     * could delete entries a crash would still need. Scanning the groups costs in
     * proportion to their number, so it runs only when something may have changed
     * (gc_pending: a shrink or a roll) and keeps trying only while the obstacle is
     * durability, not need. */
    if (!w->gc_pending || w->nsegs < 2 || w->durable_lsn < w->shrink_lsn) {
        return;
    }
    uint64_t keep_lsn = w->staged_lsn;
    uint32_t pos = 0;
    uint64_t key;
    void *value;
    while (ts_map64_next(&w->groups, &pos, &key, &value)) {
        struct wal_group *g = value;
        if (g->count > 0 && g->ents[g->start].lsn < keep_lsn) {
            keep_lsn = g->ents[g->start].lsn;
        }
    }
    while (w->nsegs > 1) {
        struct wal_segment *next = &w->segs[1];
        /* The next segment must hold no needed entry's predecessor, and its header and
         * GROUP_STATE records must be durable before this one goes. */
        if (next->base_lsn > keep_lsn) {
            w->gc_pending = false; /* still needed: wait for the next shrink */
            return;
        }
        if (next->state_end_lsn > w->durable_lsn || next->base_lsn >= w->durable_lsn ||
            w->segs[0].reads > 0) {
            return; /* try again after the next write or read completes */
        }
        char path[320];
        wal_segment_path(w, w->segs[0].seq, path, sizeof(path));
        int rc = disk_remove(w->disk, path);
        if ((rc != 0 && rc != -ENOENT) || disk_sync_dir(w->disk, w->dir) != 0) {
            return; /* tried again at the next collection (ENOENT: removed, not synced) */
        }
        disk_close(w->disk, w->segs[0].file);
        memmove(w->segs, w->segs + 1, (size_t)(w->nsegs - 1) * sizeof(*w->segs));
        w->nsegs--;
        w->stats.segments_deleted++;
    }
    w->gc_pending = false;
}

/* ------------------------------------------------------------------ staging */

static struct wal_batch *batch_new(struct wal *w)
{
    struct wal_batch *b = w->spare;
    if (b != NULL) {
        w->spare = b->next;
    } else {
        b = ts_alloc(w->alloc, sizeof(*b));
        if (b == NULL) {
            return NULL;
        }
        *b = (struct wal_batch){0};
    }
    b->len = 0;
    b->records = 0;
    b->next = NULL;
    return b;
}

static int batch_room(struct wal *w, struct wal_batch *b, uint32_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    /* Allocated once at TS_WAL_BATCH_BYTES_MAX and reused (batches are sealed before
     * they outgrow it); only a record larger than that makes a larger buffer. */
    uint32_t cap = TS_WAL_BATCH_BYTES_MAX;
    while (cap < b->len + more) {
        cap *= 2;
    }
    uint8_t *buf =
        b->buf == NULL ? ts_alloc(w->alloc, cap) : ts_realloc(w->alloc, b->buf, b->cap, cap);
    if (buf == NULL) {
        return TS_ENOMEM;
    }
    b->buf = buf;
    b->cap = cap;
    return 0;
}

/* Copies bytes at lsn into the cache ring. */
static void cache_put(struct wal *w, uint64_t lsn, const uint8_t *p, uint32_t n)
{
    uint32_t size = w->cfg.cache_bytes;
    if (n >= size) {
        p += n - size;
        lsn += n - size;
        n = size;
    }
    uint32_t at = (uint32_t)(lsn % size);
    uint32_t first = n < size - at ? n : size - at;
    memcpy(w->cache + at, p, first);
    memcpy(w->cache, p + first, n - first);
}

static void put_record_header(uint8_t *r, uint8_t type, uint64_t group, uint32_t len)
{
    memset(r, 0, WAL_RECORD_HEADER_BYTES);
    ts_store_le32(r, len);
    r[8] = type;
    ts_store_le64(r + 16, group);
}

/* Appends bytes that are not a record (segment header, the BATCH record filled in at sealing) to
 * acc. */
static void acc_put_raw(struct wal *w, const uint8_t *p, uint32_t n)
{
    struct wal_batch *b = w->acc;
    memcpy(b->buf + b->len, p, n);
    cache_put(w, w->staged_lsn, p, n);
    b->len += n;
    w->staged_lsn += n;
    w->inflight_bytes += n;
}

/* Starts the accumulating batch at the tail. A batch at offset 0 of a segment begins
 * with the segment header. */
static int acc_start(struct wal *w, uint32_t first_record_bytes)
{
    struct wal_segment *seg = tail_seg(w);
    struct wal_batch *b = batch_new(w);
    if (b == NULL) {
        return TS_ENOMEM;
    }
    /* Room for everything now, so that a failure stages nothing. */
    int rc =
        batch_room(w, b, WAL_SEGMENT_HEADER_BYTES + WAL_BATCH_RECORD_BYTES + first_record_bytes);
    if (rc != 0) {
        b->next = w->spare;
        w->spare = b;
        return rc;
    }
    b->lsn = w->staged_lsn;
    b->offset = w->staged_lsn - seg->base_lsn;
    b->file = seg->file;
    w->acc = b;
    if (b->offset == 0) {
        uint8_t h[WAL_SEGMENT_HEADER_BYTES];
        memcpy(h, WAL_MAGIC, 8);
        ts_store_le64(h + 8, seg->seq);
        ts_store_le64(h + 16, seg->base_lsn);
        ts_store_le32(h + 24, (uint32_t)seg->bytes);
        ts_store_le32(h + 28, ts_crc32c(0, h, 28));
        acc_put_raw(w, h, sizeof(h));
    }
    b->batch_at = b->len;
    uint8_t zero[WAL_BATCH_RECORD_BYTES] = {0};
    acc_put_raw(w, zero, sizeof(zero)); /* filled in when the batch is sealed */
    return 0;
}

static void seal(struct wal *w)
{
    struct wal_batch *b = w->acc;
    TS_ASSERT(b != NULL && b->records > 0);
    uint8_t *r = b->buf + b->batch_at;
    put_record_header(r, WAL_BATCH, 0, 16);
    ts_store_le32(r + 24, b->len - b->batch_at);
    ts_store_le32(r + 28, b->records);
    ts_store_le64(r + 32, b->lsn + b->batch_at);
    ts_store_le32(r + 4, wal_record_crc(tail_seg(w)->seq, r, 16));
    w->acc = NULL;
    if (w->ready_tail != NULL) {
        w->ready_tail->next = b;
    } else {
        w->ready = b;
    }
    w->ready_tail = b;
}

/* Moves the tail to a new segment (the current batch is sealed first). */
static int roll(struct wal *w)
{
    if (w->acc != NULL && w->acc->records > 0) {
        seal(w);
    }
    TS_ASSERT(w->acc == NULL || w->acc->records == 0);
    struct wal_segment *old = tail_seg(w);
    int rc = wal_segment_create(w, old->seq + 1, w->staged_lsn);
    if (rc != 0) {
        return rc;
    }
    if (w->acc != NULL) { /* an empty batch at the old tail: start over */
        w->staged_lsn = w->acc->lsn;
        w->inflight_bytes -= w->acc->len;
        w->acc->next = w->spare;
        w->spare = w->acc;
        w->acc = NULL;
        tail_seg(w)->base_lsn = w->staged_lsn;
    }
    rc = wal_stage_group_states(w);
    if (rc != 0) {
        /* A segment without every group's state must never let older segments go:
         * only memory can fail here (states skip the in-flight bound), so stop. */
        w->err = rc;
        return rc;
    }
    tail_seg(w)->state_end_lsn = w->staged_lsn;
    w->gc_pending = true;
    return rc; /* the states share their batch with the records that follow */
}

/* Bytes a new segment needs before its first ordinary record: header, the groups'
 * states batch, and the next batch's BATCH record. */
static uint64_t fresh_segment_bytes(const struct wal *w)
{
    uint64_t states = w->groups.count == 0 ? 0
                                           : WAL_BATCH_RECORD_BYTES +
                                                 (uint64_t)w->groups.count * WAL_GROUP_STATE_BYTES;
    return WAL_SEGMENT_HEADER_BYTES + states + WAL_BATCH_RECORD_BYTES;
}

/*
 * Stages one record: header, then up to two payload parts. Rolls to a new segment when
 * the record does not fit the tail. Returns the record's LSN in *lsn.
 */
static int stage(struct wal *w, uint8_t type, uint64_t group, const uint8_t *p1, uint32_t n1,
                 const uint8_t *p2, uint32_t n2, uint64_t *lsn)
{
    uint32_t len = n1 + n2;
    uint32_t bytes = wal_align8(WAL_RECORD_HEADER_BYTES + len);
    if (type != WAL_GROUP_STATE &&
        w->inflight_bytes + bytes + WAL_BATCH_RECORD_BYTES > w->cfg.inflight_bytes_max) {
        return TS_EFULL;
    }
    uint64_t seg_end = tail_seg(w)->base_lsn + tail_seg(w)->bytes;
    uint64_t need = bytes + (w->acc == NULL ? WAL_BATCH_RECORD_BYTES : 0);
    if (type != WAL_GROUP_STATE && fresh_segment_bytes(w) + bytes > tail_seg(w)->bytes) {
        return TS_ETOOBIG; /* would not fit even a new segment */
    }
    if (w->acc != NULL && w->acc->records > 0 && w->acc->len + bytes > TS_WAL_BATCH_BYTES_MAX) {
        seal(w); /* a full batch goes as it is; this record starts the next one */
        need = bytes + WAL_BATCH_RECORD_BYTES;
    }
    if (w->staged_lsn + need > seg_end) {
        if (type != WAL_GROUP_STATE) {
            int rc = roll(w);
            if (rc != 0) {
                return rc;
            }
        }
        seg_end = tail_seg(w)->base_lsn + tail_seg(w)->bytes;
        need = bytes + (w->acc == NULL ? WAL_BATCH_RECORD_BYTES : 0);
        if (w->staged_lsn + need > seg_end) {
            return TS_ETOOBIG;
        }
    }
    int rc = w->acc == NULL ? acc_start(w, bytes) : batch_room(w, w->acc, bytes);
    if (rc != 0) {
        return rc;
    }
    struct wal_batch *b = w->acc;
    uint8_t *r = b->buf + b->len;
    put_record_header(r, type, group, len);
    if (n1 > 0) {
        memcpy(r + WAL_RECORD_HEADER_BYTES, p1, n1);
    }
    if (n2 > 0) {
        memcpy(r + WAL_RECORD_HEADER_BYTES + n1, p2, n2);
    }
    memset(r + WAL_RECORD_HEADER_BYTES + len, 0, bytes - WAL_RECORD_HEADER_BYTES - len);
    ts_store_le32(r + 4, wal_record_crc(tail_seg(w)->seq, r, len));
    *lsn = w->staged_lsn;
    cache_put(w, w->staged_lsn, r, bytes);
    b->len += bytes;
    b->records++;
    w->staged_lsn += bytes;
    w->inflight_bytes += bytes;
    w->stats.records_written++;
    return 0;
}

static void group_state_payload(const struct wal_group *g, uint8_t *p)
{
    ts_store_le64(p, g->snap_index);
    ts_store_le64(p + 8, g->snap_term);
    ts_store_le64(p + 16, g->hs.term);
    ts_store_le64(p + 24, g->hs.vote);
    ts_store_le64(p + 32, g->hs.commit);
    ts_store_le64(p + 40, g->has_hs ? 1 : 0);
    ts_store_le64(p + 48, wal_group_last(g));
}

int wal_stage_group_states(struct wal *w)
{
    uint32_t pos = 0;
    uint64_t key;
    void *value;
    while (ts_map64_next(&w->groups, &pos, &key, &value)) {
        uint8_t p[56];
        uint64_t lsn;
        if (!((struct wal_group *)value)->staged) {
            continue; /* made for a record that is being staged (and rolled for) now */
        }
        group_state_payload(value, p);
        int rc = stage(w, WAL_GROUP_STATE, key, p, sizeof(p), NULL, 0, &lsn);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

uint32_t wal_record_crc(uint64_t seq, const uint8_t *rec, uint32_t len)
{
    uint8_t seed[12];
    ts_store_le64(seed, seq);
    ts_store_le32(seed + 8, len);
    uint32_t crc = ts_crc32c(0, seed, sizeof(seed));
    return ts_crc32c(crc, rec + 8, WAL_RECORD_HEADER_BYTES - 8 + (size_t)len);
}

/* ------------------------------------------------------------------ writing */

static void kick(struct wal *w);

static void write_done(struct disk_req *req)
{
    struct wal *w = req->data;
    struct wal_batch *b = w->writing;
    TS_ASSERT(b != NULL);
    w->writing = NULL;
    if (req->res < 0 || (uint32_t)req->res != b->len) {
        /* The page cache may have dropped the data: nothing after durable_lsn is
         * trustworthy any more (fsyncgate). The shard must restart and recover. */
        w->err = req->res < 0 ? req->res : -EIO;
        b->next = w->spare;
        w->spare = b;
        return;
    }
    TS_ASSERT(b->lsn == w->durable_lsn);
    w->durable_lsn = b->lsn + b->len;
    w->inflight_bytes -= b->len;
    w->stats.batches_written++;
    w->stats.bytes_written += b->len;
    b->next = w->spare;
    w->spare = b;
    segments_gc(w);
    kick(w);
    if (w->cfg.durable_cb != NULL) {
        w->cfg.durable_cb(w->cfg.data, w->durable_lsn);
    }
}

/* Starts the next write when none is in flight. */
static void kick(struct wal *w)
{
    if (w->writing != NULL || w->err != 0) {
        return;
    }
    if (w->ready == NULL && w->acc != NULL && w->acc->records > 0 && w->acc->lsn < w->flush_lsn) {
        seal(w);
    }
    struct wal_batch *b = w->ready;
    if (b == NULL) {
        return;
    }
    w->ready = b->next;
    if (w->ready == NULL) {
        w->ready_tail = NULL;
    }
    w->writing = b;
    w->req = (struct disk_req){
        .op = DISK_OP_WRITE_FDATASYNC,
        .file = b->file,
        .buf = b->buf,
        .len = b->len,
        .offset = b->offset,
        .cb = write_done,
        .data = w,
    };
    disk_submit(w->disk, &w->req);
}

int wal_flush(struct wal *w)
{
    if (w->err != 0) {
        return w->err;
    }
    w->flush_lsn = w->staged_lsn;
    kick(w);
    return w->err;
}

/* ------------------------------------------------------------------ public: records */

/* Stages and applies one entry, making the group on its first record. One lookup per
 * call: *g is the group or NULL. */
static int append_one(struct wal *w, uint64_t group, struct wal_group **g,
                      const struct wal_entry *e)
{
    bool created = false;
    int rc = 0;
    if (*g == NULL) {
        *g = wal_group_get(w, group, true, &rc);
        if (*g == NULL) {
            return rc;
        }
        created = true;
    }
    rc = group_reserve(w, *g);
    uint8_t h[16];
    uint64_t lsn;
    ts_store_le64(h, e->term);
    ts_store_le64(h + 8, e->index);
    if (rc == 0) {
        rc = stage(w, WAL_ENTRY, group, h, 16, e->data, e->len, &lsn);
    }
    if (rc != 0) {
        if (created) {
            group_free(w, ts_map64_del(&w->groups, group));
            *g = NULL;
        }
        return rc;
    }
    (*g)->staged = true;
    rc = apply_entry(w, *g, h, 16 + e->len, lsn); /* reads the 16-byte head only */
    TS_ASSERT(rc == 0);                           /* reserved, and the indexes were checked */
    return 0;
}

int wal_append(struct wal *w, uint64_t group, const struct wal_entry *e, uint32_t n)
{
    if (w->err != 0 || n == 0) {
        return w->err;
    }
    struct wal_group *g = ts_map64_get(&w->groups, group);
    uint64_t snap = g != NULL ? g->snap_index : 0;
    uint64_t last = g != NULL ? wal_group_last(g) : 0;
    if (e[0].index <= snap || e[0].index > last + 1) {
        return TS_EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].len > TS_WAL_ENTRY_BYTES_MAX) {
            return TS_ETOOBIG;
        }
        if (e[i].index != e[0].index + i) {
            return TS_EINVAL;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        int rc = append_one(w, group, &g, &e[i]);
        if (rc != 0) {
            return rc; /* entries before i are staged; the caller retries from i */
        }
        if (i == 0 && e[0].index <= last) {
            w->shrink_lsn = w->staged_lsn; /* an implied truncation */
            w->gc_pending = true;
        }
    }
    return 0;
}

static int stage_and_apply(struct wal *w, uint8_t type, uint64_t group, const uint8_t *p,
                           uint32_t len)
{
    bool created = false;
    int rc = type == WAL_REMOVE ? 0 : prepare(w, group, &created);
    if (rc != 0) {
        return rc;
    }
    uint64_t lsn;
    rc = stage(w, type, group, p, len, NULL, 0, &lsn);
    if (rc != 0) {
        unprepare(w, group, created);
        return rc;
    }
    rc = wal_apply(w, type, group, p, len, lsn);
    TS_ASSERT(rc == 0); /* prepared, and the arguments were checked */
    if (type != WAL_HARD_STATE) {
        w->shrink_lsn = w->staged_lsn;
        w->gc_pending = true;
    }
    return 0;
}

int wal_save_hard_state(struct wal *w, uint64_t group, const struct wal_hard_state *hs)
{
    if (w->err != 0) {
        return w->err;
    }
    uint8_t p[24];
    ts_store_le64(p, hs->term);
    ts_store_le64(p + 8, hs->vote);
    ts_store_le64(p + 16, hs->commit);
    return stage_and_apply(w, WAL_HARD_STATE, group, p, sizeof(p));
}

/* The group for a call that needs it to exist: 0, the sticky error, or TS_ENOTFOUND. */
static int live_group(struct wal *w, uint64_t group, struct wal_group **g)
{
    *g = ts_map64_get(&w->groups, group);
    if (w->err != 0) {
        return w->err;
    }
    return *g != NULL ? 0 : TS_ENOTFOUND;
}

int wal_truncate(struct wal *w, uint64_t group, uint64_t index)
{
    struct wal_group *g;
    int rc = live_group(w, group, &g);
    if (rc != 0) {
        return rc;
    }
    if (index <= g->snap_index) {
        return TS_EINVAL;
    }
    uint8_t p[8];
    ts_store_le64(p, index);
    return stage_and_apply(w, WAL_TRUNCATE, group, p, sizeof(p));
}

int wal_compact(struct wal *w, uint64_t group, uint64_t index)
{
    struct wal_group *g;
    int rc = live_group(w, group, &g);
    if (rc != 0) {
        return rc;
    }
    if (index <= g->snap_index || index > wal_group_last(g)) {
        return TS_EINVAL;
    }
    uint8_t p[16];
    ts_store_le64(p, index);
    ts_store_le64(p + 8, group_ent(g, index)->term);
    return stage_and_apply(w, WAL_COMPACT, group, p, sizeof(p));
}

int wal_snapshot(struct wal *w, uint64_t group, uint64_t index, uint64_t term)
{
    if (w->err != 0) {
        return w->err;
    }
    int rc;
    struct wal_group *g = wal_group_get(w, group, false, &rc);
    if (g != NULL && index <= g->snap_index) {
        return TS_EINVAL;
    }
    uint8_t p[16];
    ts_store_le64(p, index);
    ts_store_le64(p + 8, term);
    return stage_and_apply(w, WAL_SNAPSHOT, group, p, sizeof(p));
}

int wal_remove_group(struct wal *w, uint64_t group)
{
    if (w->err != 0) {
        return w->err;
    }
    if (ts_map64_get(&w->groups, group) == NULL) {
        return TS_ENOTFOUND;
    }
    return stage_and_apply(w, WAL_REMOVE, group, NULL, 0);
}

/* ------------------------------------------------------------------ public: queries */

uint64_t wal_staged_lsn(const struct wal *w)
{
    return w->staged_lsn;
}

uint64_t wal_durable_lsn(const struct wal *w)
{
    return w->durable_lsn;
}

bool wal_idle(const struct wal *w)
{
    return w->writing == NULL && w->ready == NULL && (w->acc == NULL || w->acc->records == 0);
}

int wal_error(const struct wal *w)
{
    return w->err;
}

static void group_info(const struct wal_group *g, struct wal_group_info *out)
{
    *out = (struct wal_group_info){
        .group = g->id,
        .snap_index = g->snap_index,
        .snap_term = g->snap_term,
        .first_index = g->snap_index + 1,
        .last_index = wal_group_last(g),
        .has_hard_state = g->has_hs,
        .hard_state = g->hs,
    };
}

int wal_group_info(const struct wal *w, uint64_t group, struct wal_group_info *out)
{
    const struct wal_group *g = ts_map64_get(&w->groups, group);
    if (g == NULL) {
        return TS_ENOTFOUND;
    }
    group_info(g, out);
    return 0;
}

int wal_term(const struct wal *w, uint64_t group, uint64_t index, uint64_t *term)
{
    const struct wal_group *g = ts_map64_get(&w->groups, group);
    if (g == NULL || index > wal_group_last(g)) {
        return TS_ENOTFOUND;
    }
    if (index < g->snap_index) {
        return TS_ECOMPACTED;
    }
    *term = index == g->snap_index ? g->snap_term : group_ent(g, index)->term;
    return 0;
}

int wal_groups(const struct wal *w, int (*fn)(void *arg, const struct wal_group_info *g), void *arg)
{
    uint32_t pos = 0;
    uint64_t key;
    void *value;
    while (ts_map64_next(&w->groups, &pos, &key, &value)) {
        struct wal_group_info info;
        group_info(value, &info);
        int rc = fn(arg, &info);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void wal_get_stats(const struct wal *w, struct wal_stats *out)
{
    *out = w->stats;
    out->segments = w->nsegs;
    out->groups = w->groups.count;
}

/* ------------------------------------------------------------------ reads */

/* Copies len bytes at lsn from the cache ring, if they are all still there. */
static bool cache_get(const struct wal *w, uint64_t lsn, uint8_t *out, uint32_t len)
{
    uint32_t size = w->cfg.cache_bytes;
    if (lsn < w->cache_lo_lsn || lsn + len > w->staged_lsn || w->staged_lsn - lsn > size) {
        return false;
    }
    uint32_t at = (uint32_t)(lsn % size);
    uint32_t first = len < size - at ? len : size - at;
    memcpy(out, w->cache + at, first);
    memcpy(out + first, w->cache, len - first);
    return true;
}

/* Copies a staged record (not yet durable, so not on disk) out of the batch holding it. */
static bool batch_get(const struct wal *w, uint64_t lsn, uint8_t *out, uint32_t len)
{
    const struct wal_batch *lists[] = {w->writing, w->ready, w->acc};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        for (const struct wal_batch *b = lists[i]; b != NULL; b = i == 1 ? b->next : NULL) {
            if (lsn >= b->lsn && lsn + len <= b->lsn + b->len) {
                memcpy(out, b->buf + (lsn - b->lsn), len);
                return true;
            }
        }
    }
    return false;
}

/* The segment with this seq (segments are contiguous by seq), or NULL. */
static struct wal_segment *seg_by_seq(struct wal *w, uint64_t seq)
{
    if (w->nsegs == 0 || seq < w->segs[0].seq || seq - w->segs[0].seq >= w->nsegs) {
        return NULL;
    }
    struct wal_segment *seg = &w->segs[seq - w->segs[0].seq];
    TS_ASSERT(seg->seq == seq);
    return seg;
}

struct wal_disk_read {
    struct disk_req req;
    struct wal_read_req *rr;
    uint32_t slot;
    uint64_t seq;
    uint8_t *rec;
    uint32_t rec_bytes;
};

/* Checks a record read back (from disk or cache) and copies its entry data out. */
static int read_record(const uint8_t *rec, uint64_t seq, uint64_t group, uint64_t index,
                       uint32_t len, uint8_t *dst)
{
    uint32_t plen = ts_load_le32(rec);
    if (plen != 16 + len || rec[8] != WAL_ENTRY || ts_load_le64(rec + 16) != group ||
        ts_load_le64(rec + 32) != index ||
        ts_load_le32(rec + 4) != wal_record_crc(seq, rec, plen)) {
        return TS_ECORRUPT;
    }
    if (len > 0) {
        memcpy(dst, rec + WAL_ENTRY_HEADER_BYTES, len);
    }
    return 0;
}

static void read_complete(struct wal_read_req *rr)
{
    if (--rr->pending_ == 0 && rr->cb != NULL) {
        rr->cb(rr);
    }
}

static void disk_read_done(struct disk_req *req)
{
    struct wal_disk_read *dr = req->data;
    struct wal_read_req *rr = dr->rr;
    struct wal *w = rr->wal_;
    struct wal_entry *e = &rr->entries[dr->slot];
    if (req->res != (int32_t)dr->rec_bytes) {
        rr->res = req->res < 0 ? req->res : TS_ECORRUPT;
    } else if (rr->res == 0) {
        int rc = read_record(dr->rec, dr->seq, rr->group, e->index, e->len, (uint8_t *)e->data);
        if (rc != 0) {
            rr->res = rc;
        }
    }
    struct wal_segment *seg = seg_by_seq(w, dr->seq);
    TS_ASSERT(seg != NULL && seg->reads > 0); /* GC keeps a segment with reads in flight */
    seg->reads--;
    ts_free(w->alloc, dr->rec, dr->rec_bytes);
    ts_free(w->alloc, dr, sizeof(*dr));
    read_complete(rr);
}

static int read_one(struct wal *w, struct wal_read_req *rr, const struct wal_ent *ent,
                    uint32_t slot)
{
    struct wal_entry *e = &rr->entries[slot];
    uint32_t rec_bytes = WAL_ENTRY_HEADER_BYTES + ent->len;
    const struct wal_segment *seg = seg_of(w, ent->lsn);
    uint8_t small[WAL_ENTRY_HEADER_BYTES + 256];
    uint8_t *rec = rec_bytes <= sizeof(small) ? small : ts_alloc(w->alloc, rec_bytes);
    if (rec == NULL) {
        return TS_ENOMEM;
    }
    if (ent->lsn >= w->durable_lsn ? batch_get(w, ent->lsn, rec, rec_bytes)
                                   : cache_get(w, ent->lsn, rec, rec_bytes)) {
        int rc = read_record(rec, seg->seq, rr->group, e->index, e->len, (uint8_t *)e->data);
        if (rec != small) {
            ts_free(w->alloc, rec, rec_bytes);
        }
        w->stats.cache_hits++;
        return rc;
    }
    w->stats.cache_misses++;
    if (rec == small && (rec = ts_alloc(w->alloc, rec_bytes)) == NULL) {
        return TS_ENOMEM;
    }
    struct wal_disk_read *dr = ts_alloc(w->alloc, sizeof(*dr));
    if (dr == NULL) {
        ts_free(w->alloc, rec, rec_bytes);
        return TS_ENOMEM;
    }
    *dr = (struct wal_disk_read){
        .rr = rr, .slot = slot, .seq = seg->seq, .rec = rec, .rec_bytes = rec_bytes};
    dr->req = (struct disk_req){.op = DISK_OP_READ,
                                .file = seg->file,
                                .buf = rec,
                                .len = rec_bytes,
                                .offset = ent->lsn - seg->base_lsn,
                                .cb = disk_read_done,
                                .data = dr};
    rr->pending_++;
    w->segs[seg - w->segs].reads++;
    disk_submit(w->disk, &dr->req);
    return 0;
}

int wal_read(struct wal *w, struct wal_read_req *rr)
{
    rr->res = 0;
    rr->count = 0;
    rr->pending_ = 1; /* held until every read is submitted */
    rr->wal_ = w;
    const struct wal_group *g = ts_map64_get(&w->groups, rr->group);
    if (g == NULL || rr->lo <= g->snap_index || rr->hi > wal_group_last(g) + 1 ||
        rr->lo >= rr->hi) {
        rr->res = g == NULL ? TS_ENOTFOUND : (rr->lo <= g->snap_index ? TS_ECOMPACTED : TS_EINVAL);
        return 1;
    }
    uint32_t used = 0;
    for (uint64_t i = rr->lo; i < rr->hi; i++) {
        const struct wal_ent *ent = group_ent(g, i);
        if (used + ent->len > rr->buf_bytes && rr->count > 0) {
            break;
        }
        if (used + ent->len > rr->buf_bytes) {
            rr->res = TS_ETOOBIG;
            break;
        }
        rr->entries[rr->count] = (struct wal_entry){
            .term = ent->term, .index = i, .data = rr->buf + used, .len = ent->len};
        int rc = read_one(w, rr, ent, rr->count);
        if (rc != 0) {
            rr->res = rc;
            break;
        }
        used += ent->len;
        rr->count++;
    }
    if (--rr->pending_ == 0) {
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ open / close */

int wal_init(struct wal *w, const struct wal_config *cfg, struct disk *disk,
             const struct ts_allocator *alloc)
{
    *w = (struct wal){.cfg = *cfg, .disk = disk, .alloc = alloc};
    if (w->cfg.segment_bytes == 0) {
        w->cfg.segment_bytes = TS_WAL_SEGMENT_BYTES_DEFAULT;
    }
    if (w->cfg.inflight_bytes_max == 0) {
        w->cfg.inflight_bytes_max = TS_WAL_INFLIGHT_BYTES_MAX;
    }
    if (w->cfg.cache_bytes == 0) {
        w->cfg.cache_bytes = TS_WAL_CACHE_BYTES_DEFAULT;
    }
    if (w->cfg.segment_bytes < TS_WAL_SEGMENT_BYTES_MIN || w->cfg.segment_bytes > UINT32_MAX ||
        w->cfg.segment_bytes % 4096 != 0 || strlen(cfg->dir) >= sizeof(w->dir)) {
        return TS_EINVAL;
    }
    snprintf(w->dir, sizeof(w->dir), "%s", cfg->dir);
    w->cfg.dir = w->dir;
    ts_map64_init(&w->groups, alloc);
    w->cache = ts_alloc(alloc, w->cfg.cache_bytes);
    return w->cache == NULL ? TS_ENOMEM : 0;
}

int wal_open(const struct wal_config *cfg, struct disk *disk, const struct ts_allocator *alloc,
             struct wal **out, char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(cfg != NULL && cfg->dir != NULL);
    TS_ASSERT(disk != NULL && alloc != NULL);
    *out = NULL;
    struct wal *w = ts_alloc(alloc, sizeof(*w));
    if (w == NULL) {
        return TS_ENOMEM;
    }
    int rc = wal_init(w, cfg, disk, alloc);
    if (rc == 0) {
        rc = wal_recover(w, errmsg, errmsg_bytes);
    } else if (errmsg != NULL && errmsg_bytes > 0) {
        snprintf(errmsg, errmsg_bytes, "wal: bad configuration for %s", cfg->dir);
    }
    if (rc != 0) {
        wal_close(w);
        return rc;
    }
    /* Everything recovered is durable; GROUP_STATE records that recovery may have
     * staged for an empty tail segment are not yet (they go with the first flush). */
    w->durable_lsn = w->recovered_lsn;
    w->flush_lsn = w->recovered_lsn;
    w->cache_lo_lsn = w->recovered_lsn;
    w->gc_pending = true;
    *out = w;
    return 0;
}

static void batches_free(struct wal *w, struct wal_batch *b)
{
    while (b != NULL) {
        struct wal_batch *next = b->next;
        ts_free(w->alloc, b->buf, b->cap);
        ts_free(w->alloc, b, sizeof(*b));
        b = next;
    }
}

void wal_close(struct wal *w)
{
    if (w == NULL) {
        return;
    }
    TS_ASSERT(w->writing == NULL);
    uint32_t pos = 0;
    uint64_t key;
    void *value;
    while (ts_map64_next(&w->groups, &pos, &key, &value)) {
        group_free(w, value);
    }
    ts_map64_fini(&w->groups);
    for (uint32_t i = 0; i < w->nsegs; i++) {
        TS_ASSERT(w->segs[i].reads == 0); /* run the disk until reads complete first */
        disk_close(w->disk, w->segs[i].file);
    }
    ts_free(w->alloc, w->segs, (size_t)w->segs_cap * sizeof(*w->segs));
    batches_free(w, w->acc);
    batches_free(w, w->ready);
    batches_free(w, w->spare);
    ts_free(w->alloc, w->cache, w->cfg.cache_bytes);
    ts_free(w->alloc, w, sizeof(*w));
}

int wal_inspect(const char *dir, struct disk *disk, const struct ts_allocator *alloc,
                int (*fn)(void *arg, const struct wal_record_info *r),
                void (*report_cb)(void *arg, const char *line), void *arg, struct wal_stats *stats,
                char *errmsg, size_t errmsg_bytes)
{
    TS_ASSERT(dir != NULL && disk != NULL && alloc != NULL);
    TS_ASSERT(fn != NULL);
    struct wal_config cfg = {.dir = dir, .report_cb = report_cb, .data = arg, .cache_bytes = 4096};
    struct wal *w = ts_alloc(alloc, sizeof(*w));
    if (w == NULL) {
        return TS_ENOMEM;
    }
    int rc = wal_init(w, &cfg, disk, alloc);
    w->readonly = true;
    w->inspect_fn = fn;
    w->inspect_arg = arg;
    if (rc == 0) {
        rc = wal_recover(w, errmsg, errmsg_bytes);
    }
    if (rc == 0 && stats != NULL) {
        wal_get_stats(w, stats);
    }
    wal_close(w);
    return rc;
}

const char *wal_record_type_name(uint8_t type)
{
    static const char *const names[] = {
        [WAL_BATCH] = "BATCH",           [WAL_ENTRY] = "ENTRY",
        [WAL_HARD_STATE] = "HARD_STATE", [WAL_TRUNCATE] = "TRUNCATE",
        [WAL_COMPACT] = "COMPACT",       [WAL_SNAPSHOT] = "SNAPSHOT",
        [WAL_REMOVE] = "REMOVE",         [WAL_GROUP_STATE] = "GROUP_STATE",
    };
    return type >= WAL_BATCH && type <= WAL_GROUP_STATE ? names[type] : "?";
}
