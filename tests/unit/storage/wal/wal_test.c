/* Shared fixtures for the storage/wal unit tests (see wal_test.h). */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/encoding.h"
#include "core/util/err.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Arena allocator ------------------------------------------------------------- */

/* 32 bytes, so that the memory after it keeps malloc's 16-byte alignment. */
struct wt_block {
    struct wt_block *prev;
    struct wt_block *next;
    size_t size;
    size_t pad;
};
_Static_assert(sizeof(struct wt_block) % 16 == 0, "blocks keep 16-byte alignment");

static void block_link(struct wt_arena *a, struct wt_block *b)
{
    b->prev = NULL;
    b->next = a->head;
    if (b->next != NULL) {
        b->next->prev = b;
    }
    a->head = b;
    a->blocks++;
    a->bytes += (long)b->size;
}

static void block_unlink(struct wt_arena *a, struct wt_block *b)
{
    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        a->head = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
    a->blocks--;
    a->bytes -= (long)b->size;
    cr_assert(a->blocks >= 0 && a->bytes >= 0, "arena: more freed than allocated");
}

static void *arena_alloc(void *ctx, size_t size)
{
    struct wt_arena *a = ctx;
    cr_assert(size > 0, "arena: the WAL asked for 0 bytes");
    struct wt_block *b = malloc(sizeof(*b) + size);
    if (b == NULL) {
        return NULL;
    }
    b->size = size;
    block_link(a, b);
    return b + 1;
}

static void *arena_realloc(void *ctx, void *p, size_t old_size, size_t new_size)
{
    struct wt_arena *a = ctx;
    if (p == NULL) {
        return arena_alloc(ctx, new_size);
    }
    struct wt_block *b = (struct wt_block *)p - 1;
    cr_assert_eq(b->size, old_size, "arena: realloc of a %zu-byte block as %zu bytes", b->size,
                 old_size);
    block_unlink(a, b);
    struct wt_block *nb = realloc(b, sizeof(*nb) + new_size);
    if (nb == NULL) {
        block_link(a, b);
        return NULL;
    }
    nb->size = new_size;
    block_link(a, nb);
    return nb + 1;
}

static void arena_free(void *ctx, void *p, size_t size)
{
    struct wt_arena *a = ctx;
    struct wt_block *b = (struct wt_block *)p - 1;
    cr_assert_eq(b->size, size, "arena: free of a %zu-byte block as %zu bytes", b->size, size);
    block_unlink(a, b);
    free(b);
}

void wt_arena_init(struct wt_arena *a)
{
    *a = (struct wt_arena){
        .base = {.alloc = arena_alloc, .realloc = arena_realloc, .free = arena_free, .ctx = a},
    };
}

void wt_arena_release(struct wt_arena *a)
{
    while (a->head != NULL) {
        struct wt_block *b = a->head;
        block_unlink(a, b);
        free(b);
    }
    cr_assert_eq(a->blocks, 0);
    cr_assert_eq(a->bytes, 0);
}

/* ---- One disk, one WAL ----------------------------------------------------------- */

static void on_durable(void *data, uint64_t lsn)
{
    struct wt *t = data;
    cr_assert(lsn > t->durable_floor_,
              "seed %" PRIu64 ": durable_cb went from %" PRIu64 " to %" PRIu64, t->seed,
              t->durable_floor_, lsn);
    cr_assert_eq(lsn, wal_durable_lsn(t->w),
                 "seed %" PRIu64 ": durable_cb %" PRIu64 " but wal_durable_lsn %" PRIu64, t->seed,
                 lsn, wal_durable_lsn(t->w));
    cr_assert(lsn <= wal_staged_lsn(t->w), "seed %" PRIu64 ": durable past staged", t->seed);
    t->durable_floor_ = lsn;
    t->durable = lsn;
    t->durable_calls++;
    if (t->durable_hook != NULL) {
        t->durable_hook(t->hook_data, lsn);
    }
}

static void on_report(void *data, const char *line)
{
    struct wt *t = data;
    t->reports++;
    if (strstr(line, "torn") != NULL) {
        t->torn_reports++;
    }
    snprintf(t->last_report, sizeof(t->last_report), "%s", line);
}

void wt_init(struct wt *t, uint64_t seed, uint64_t segment_bytes)
{
    *t = (struct wt){.seed = seed};
    cr_assert_eq(disk_sim_create(seed, ts_allocator_default(), &t->sim), 0);
    t->disk = disk_sim_disk(t->sim);
    wt_arena_init(&t->arena);
    t->alloc = &t->arena.base;
    cr_assert_eq(disk_mkdir(t->disk, WT_DIR), 0);
    cr_assert_eq(disk_sync_dir(t->disk, "."), 0);
    t->cfg = (struct wal_config){
        .dir = WT_DIR,
        .segment_bytes = segment_bytes,
        .cache_bytes = WT_CACHE_BYTES,
        .durable_cb = on_durable,
        .data = t,
        .report_cb = on_report,
    };
}

void wt_fini(struct wt *t)
{
    if (t->w != NULL) {
        wt_close(t);
    }
    wt_arena_release(&t->arena);
    disk_destroy(t->disk);
    t->disk = NULL;
    t->sim = NULL;
}

int wt_open(struct wt *t)
{
    cr_assert_null(t->w, "wt_open: the WAL is already open");
    t->errmsg[0] = '\0';
    int rc = wal_open(&t->cfg, t->disk, t->alloc, &t->w, t->errmsg, sizeof(t->errmsg));
    if (rc != 0) {
        cr_assert_null(t->w);
        if (t->alloc == &t->arena.base) {
            cr_assert_eq(t->arena.blocks, 0,
                         "seed %" PRIu64 ": failed wal_open (%s) left %ld "
                         "blocks allocated",
                         t->seed, ts_errname(rc), t->arena.blocks);
        }
        return rc;
    }
    cr_assert_not_null(t->w);
    t->durable_floor_ = wal_durable_lsn(t->w);
    return 0;
}

void wt_run(struct wt *t)
{
    for (int i = 0; disk_inflight(t->disk) > 0; i++) {
        cr_assert(i < 1000000, "seed %" PRIu64 ": the disk never drains", t->seed);
        int n = disk_run(t->disk, true);
        cr_assert(n >= 0, "seed %" PRIu64 ": disk_run: %s", t->seed, ts_errname(n));
    }
}

void wt_close(struct wt *t)
{
    cr_assert_not_null(t->w);
    wt_run(t);
    wal_close(t->w);
    t->w = NULL;
    if (t->alloc == &t->arena.base) {
        cr_assert_eq(t->arena.blocks, 0,
                     "seed %" PRIu64 ": wal_close leaked %ld blocks "
                     "(%ld bytes)",
                     t->seed, t->arena.blocks, t->arena.bytes);
    }
}

void wt_settle(struct wt *t, const char *ctx)
{
    int rc = wal_flush(t->w);
    cr_assert_eq(rc, 0, "%s: wal_flush: %s", ctx, ts_errname(rc));
    wt_run(t);
    cr_assert(wal_idle(t->w), "%s: not idle after running the disk (wal_error %s)", ctx,
              ts_errname(wal_error(t->w)));
    cr_assert_eq(wal_durable_lsn(t->w), wal_staged_lsn(t->w),
                 "%s: durable %" PRIu64 " != staged %" PRIu64 " after flush and run "
                 "(wal_error %s)",
                 ctx, wal_durable_lsn(t->w), wal_staged_lsn(t->w), ts_errname(wal_error(t->w)));
}

void wt_segment_path(uint64_t seq, char *path, size_t bytes)
{
    snprintf(path, bytes, "%s/%016" PRIx64 ".wal", WT_DIR, seq);
}

uint64_t wt_unsynced(struct wt *t)
{
    uint64_t seqs[WT_SEGMENTS_MAX];
    uint32_t n = wt_segments(t, seqs, WT_SEGMENTS_MAX);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        char path[64];
        wt_segment_path(seqs[i], path, sizeof(path));
        total += disk_sim_unsynced_bytes(t->sim, path);
    }
    return total;
}

void wt_crash(struct wt *t, enum disk_sim_crash_policy policy, uint64_t tear_bytes)
{
    cr_assert(t->alloc == &t->arena.base, "a crash drops the WAL's arena");
    disk_sim_crash(t->sim, policy, tear_bytes);
    t->w = NULL;
    wt_arena_release(&t->arena);
}

struct seq_list {
    uint64_t *seqs;
    uint32_t n;
    uint32_t max;
};

static int collect_seq(void *arg, const char *name)
{
    struct seq_list *l = arg;
    if (strlen(name) != 20 || strcmp(name + 16, ".wal") != 0) {
        return 0;
    }
    char *end;
    uint64_t seq = strtoull(name, &end, 16);
    if (end == name + 16 && l->n < l->max) {
        l->seqs[l->n++] = seq;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t wt_segments(struct wt *t, uint64_t *seqs, uint32_t max)
{
    struct seq_list l = {.seqs = seqs, .max = max};
    cr_assert_eq(disk_list(t->disk, WT_DIR, collect_seq, &l), 0);
    qsort(seqs, l.n, sizeof(*seqs), cmp_u64);
    return l.n;
}

bool wt_segment_exists(struct wt *t, uint64_t seq)
{
    uint64_t seqs[WT_SEGMENTS_MAX];
    uint32_t n = wt_segments(t, seqs, WT_SEGMENTS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        if (seqs[i] == seq) {
            return true;
        }
    }
    return false;
}

struct wal_stats wt_stats(const struct wt *t)
{
    struct wal_stats s;
    wal_get_stats(t->w, &s);
    return s;
}

static bool zero_bytes(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

uint32_t wt_scan(struct wt *t, uint64_t seq, struct wt_record *out, uint32_t max)
{
    char path[64];
    wt_segment_path(seq, path, sizeof(path));
    uint32_t file;
    cr_assert_eq(disk_open(t->disk, path, DISK_OPEN_READONLY, &file), 0, "open %s", path);
    uint64_t size;
    cr_assert_eq(disk_size(t->disk, file, &size), 0);
    uint8_t *buf = malloc(size + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(disk_pread(t->disk, file, buf, size, 0), (int64_t)size);
    cr_assert_eq(disk_close(t->disk, file), 0);
    uint32_t n = 0;
    for (uint64_t pos = WAL_SEGMENT_HEADER_BYTES; pos + WAL_RECORD_HEADER_BYTES <= size;) {
        const uint8_t *r = buf + pos;
        if (zero_bytes(r, WAL_RECORD_HEADER_BYTES)) {
            break;
        }
        uint32_t len = ts_load_le32(r);
        struct wt_record rec = {
            .offset = pos, .type = r[8], .group = ts_load_le64(r + 16), .len = len};
        if (rec.type == WAL_ENTRY && len >= 16 && pos + 40 <= size) {
            rec.index = ts_load_le64(r + 32);
        }
        if (n < max) {
            out[n++] = rec;
        }
        pos += ((uint64_t)WAL_RECORD_HEADER_BYTES + len + 7) & ~7ull;
    }
    free(buf);
    return n;
}

/* ---- Reference model ------------------------------------------------------------- */

void wm_init(struct wm *m, uint32_t ngroups, uint64_t id_mul)
{
    *m = (struct wm){.ngroups = ngroups, .id_mul = id_mul};
    m->g = calloc(ngroups, sizeof(*m->g));
    cr_assert_not_null(m->g);
}

void wm_fini(struct wm *m)
{
    for (uint32_t s = 0; s < m->ngroups; s++) {
        free(m->g[s].ents);
    }
    free(m->g);
    *m = (struct wm){0};
}

void wm_copy(struct wm *dst, const struct wm *src)
{
    wm_init(dst, src->ngroups, src->id_mul);
    dst->live = src->live;
    for (uint32_t s = 0; s < src->ngroups; s++) {
        const struct wm_group *g = &src->g[s];
        dst->g[s] = *g;
        dst->g[s].ents = NULL;
        dst->g[s].cap = g->count;
        if (g->count > 0) {
            dst->g[s].ents = malloc((size_t)g->count * sizeof(*g->ents));
            cr_assert_not_null(dst->g[s].ents);
            memcpy(dst->g[s].ents, g->ents, (size_t)g->count * sizeof(*g->ents));
        }
    }
}

uint64_t wm_id(const struct wm *m, uint32_t slot)
{
    return 1 + (uint64_t)slot * m->id_mul;
}

uint64_t wm_last(const struct wm_group *g)
{
    return g->snap_index + g->count;
}

void wm_data(uint64_t tag, uint32_t len, uint8_t *out)
{
    uint64_t x = tag * 0x2545f4914f6cdd1dull + len;
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t v = ts_rand_splitmix(&x);
        uint32_t k = len - i < 8 ? len - i : 8;
        memcpy(out + i, &v, k);
    }
}

static void group_push(struct wm_group *g, const struct wm_entry *e)
{
    if (g->count == g->cap) {
        g->cap = g->cap == 0 ? 8 : g->cap * 2;
        g->ents = realloc(g->ents, (size_t)g->cap * sizeof(*g->ents));
        cr_assert_not_null(g->ents);
    }
    g->ents[g->count++] = *e;
}

static void group_create(struct wm *m, struct wm_group *g)
{
    if (!g->exists) {
        free(g->ents);
        *g = (struct wm_group){.exists = true};
        m->live++;
    }
}

static int model_append(struct wm *m, const struct wm_op *op, uint32_t prefix)
{
    struct wm_group *g = &m->g[op->slot];
    uint64_t snap = g->exists ? g->snap_index : 0;
    uint64_t last = g->exists ? wm_last(g) : 0;
    if (op->n == 0) {
        return 0;
    }
    if (op->index <= snap || op->index > last + 1) {
        return TS_EINVAL;
    }
    uint32_t n = prefix < op->n ? prefix : op->n;
    if (n == 0) {
        return 0; /* a roll may make a batch end before the first entry of a call */
    }
    group_create(m, g);
    g->count = (uint32_t)(op->index - g->snap_index - 1);
    for (uint32_t i = 0; i < n; i++) {
        group_push(g, &op->ents[i]);
    }
    return 0;
}

int wm_apply(struct wm *m, const struct wm_op *op, uint32_t prefix)
{
    cr_assert(op->slot < m->ngroups);
    struct wm_group *g = &m->g[op->slot];
    switch (op->kind) {
    case WM_APPEND:
        return model_append(m, op, prefix);
    case WM_HARD_STATE:
        group_create(m, g);
        g->hs = op->hs;
        g->has_hs = true;
        return 0;
    case WM_TRUNCATE:
        if (!g->exists) {
            return TS_ENOTFOUND;
        }
        if (op->index <= g->snap_index) {
            return TS_EINVAL;
        }
        if (op->index <= wm_last(g)) {
            g->count = (uint32_t)(op->index - g->snap_index - 1);
        }
        return 0;
    case WM_COMPACT: {
        if (!g->exists) {
            return TS_ENOTFOUND;
        }
        if (op->index <= g->snap_index || op->index > wm_last(g)) {
            return TS_EINVAL;
        }
        uint32_t drop = (uint32_t)(op->index - g->snap_index);
        g->snap_term = g->ents[drop - 1].term;
        memmove(g->ents, g->ents + drop, (size_t)(g->count - drop) * sizeof(*g->ents));
        g->count -= drop;
        g->snap_index = op->index;
        return 0;
    }
    case WM_SNAPSHOT:
        if (g->exists && op->index <= g->snap_index) {
            return TS_EINVAL;
        }
        group_create(m, g);
        g->count = 0;
        g->snap_index = op->index;
        g->snap_term = op->term;
        return 0;
    case WM_REMOVE:
        if (!g->exists) {
            return TS_ENOTFOUND;
        }
        free(g->ents);
        *g = (struct wm_group){0};
        m->live--;
        return 0;
    }
    cr_assert_fail("unknown op kind %d", op->kind);
    return 0;
}

void wm_op_free(struct wm_op *op)
{
    free(op->ents);
    op->ents = NULL;
}

void wm_op_copy(struct wm_op *dst, const struct wm_op *src)
{
    *dst = *src;
    if (src->ents != NULL) {
        dst->ents = malloc((size_t)src->n * sizeof(*src->ents));
        cr_assert_not_null(dst->ents);
        memcpy(dst->ents, src->ents, (size_t)src->n * sizeof(*src->ents));
    }
}

static int do_append(struct wt *t, uint64_t id, const struct wm_op *op)
{
    struct wal_entry e[64];
    cr_assert(op->n <= 64);
    size_t total = 0;
    for (uint32_t i = 0; i < op->n; i++) {
        total += op->ents[i].len;
    }
    uint8_t *data = malloc(total + 1);
    cr_assert_not_null(data);
    size_t at = 0;
    for (uint32_t i = 0; i < op->n; i++) {
        wm_data(op->ents[i].tag, op->ents[i].len, data + at);
        e[i] = (struct wal_entry){.term = op->ents[i].term,
                                  .index = op->index + i,
                                  .data = data + at,
                                  .len = op->ents[i].len};
        at += op->ents[i].len;
    }
    int rc = wal_append(t->w, id, e, op->n);
    free(data);
    return rc;
}

int wt_do(struct wt *t, const struct wm *m, struct wm_op *op)
{
    uint64_t id = wm_id(m, op->slot);
    op->pre_lsn = wal_staged_lsn(t->w);
    int rc = 0;
    switch (op->kind) {
    case WM_APPEND:
        rc = do_append(t, id, op);
        break;
    case WM_HARD_STATE:
        rc = wal_save_hard_state(t->w, id, &op->hs);
        break;
    case WM_TRUNCATE:
        rc = wal_truncate(t->w, id, op->index);
        break;
    case WM_COMPACT:
        rc = wal_compact(t->w, id, op->index);
        break;
    case WM_SNAPSHOT:
        rc = wal_snapshot(t->w, id, op->index, op->term);
        break;
    case WM_REMOVE:
        rc = wal_remove_group(t->w, id);
        break;
    default:
        cr_assert_fail("unknown op kind %d", op->kind);
    }
    op->post_lsn = wal_staged_lsn(t->w);
    return rc;
}

int wt_apply(struct wt *t, struct wm *m, struct wm_op *op, const char *ctx)
{
    int rc = wt_do(t, m, op);
    int want = wm_apply(m, op, UINT32_MAX);
    cr_assert_eq(rc, want,
                 "%s: op %d on group %" PRIu64 " (index %" PRIu64 ") returned %s, "
                 "the model says %s",
                 ctx, op->kind, wm_id(m, op->slot), op->index, ts_errname(rc), ts_errname(want));
    if (rc != 0) {
        cr_assert_eq(op->post_lsn, op->pre_lsn, "%s: a failed op (%s) staged %" PRIu64 " bytes",
                     ctx, ts_errname(rc), op->post_lsn - op->pre_lsn);
    }
    return rc;
}

struct wm_op wm_append_op(uint32_t slot, uint64_t index, uint32_t n, uint64_t term, uint32_t len,
                          uint64_t tag)
{
    struct wm_op op = {.kind = WM_APPEND, .slot = slot, .index = index, .n = n};
    op.ents = malloc((n + 1) * sizeof(*op.ents));
    cr_assert_not_null(op.ents);
    for (uint32_t i = 0; i < n; i++) {
        op.ents[i] = (struct wm_entry){.term = term, .tag = tag + i, .len = len};
    }
    return op;
}

struct wm_op wm_hs_op(uint32_t slot, uint64_t term, uint64_t vote, uint64_t commit)
{
    return (struct wm_op){
        .kind = WM_HARD_STATE, .slot = slot, .hs = {.term = term, .vote = vote, .commit = commit}};
}

struct wm_op wm_simple_op(uint8_t kind, uint32_t slot, uint64_t index, uint64_t term)
{
    return (struct wm_op){.kind = kind, .slot = slot, .index = index, .term = term};
}

void wt_expect(struct wt *t, struct wm *m, struct wm_op op, int rc, const char *ctx)
{
    int got = wt_apply(t, m, &op, ctx);
    cr_assert_eq(got, rc, "%s: op %d on group %" PRIu64 " (index %" PRIu64 "): %s, expected %s",
                 ctx, op.kind, wm_id(m, op.slot), op.index, ts_errname(got), ts_errname(rc));
    wm_op_free(&op);
}

/* ---- Checks ------------------------------------------------------------------------ */

static void check_terms(struct wt *t, uint64_t id, const struct wm_group *g, const char *ctx)
{
    uint64_t term;
    for (uint64_t i = g->snap_index; i <= wm_last(g); i++) {
        uint64_t want = i == g->snap_index ? g->snap_term : g->ents[i - g->snap_index - 1].term;
        int rc = wal_term(t->w, id, i, &term);
        cr_assert_eq(rc, 0, "%s: group %" PRIu64 " wal_term(%" PRIu64 "): %s", ctx, id, i,
                     ts_errname(rc));
        cr_assert_eq(term, want,
                     "%s: group %" PRIu64 " term of %" PRIu64 " is %" PRIu64 ", model %" PRIu64,
                     ctx, id, i, term, want);
    }
    int rc = wal_term(t->w, id, wm_last(g) + 1, &term);
    cr_assert_eq(rc, TS_ENOTFOUND, "%s: group %" PRIu64 " wal_term(last + 1): %s", ctx, id,
                 ts_errname(rc));
    if (g->snap_index > 0) {
        rc = wal_term(t->w, id, g->snap_index - 1, &term);
        cr_assert_eq(rc, TS_ECOMPACTED, "%s: group %" PRIu64 " wal_term(snap - 1): %s", ctx, id,
                     ts_errname(rc));
    }
}

void wt_check_group(struct wt *t, const struct wm *m, uint32_t slot, const char *ctx)
{
    uint64_t id = wm_id(m, slot);
    const struct wm_group *g = &m->g[slot];
    struct wal_group_info info;
    int rc = wal_group_info(t->w, id, &info);
    if (!g->exists) {
        cr_assert_eq(rc, TS_ENOTFOUND,
                     "%s: group %" PRIu64 " should not exist (%s, last %" PRIu64 ")", ctx, id,
                     ts_errname(rc), rc == 0 ? info.last_index : 0);
        return;
    }
    cr_assert_eq(rc, 0, "%s: group %" PRIu64 " is missing: %s", ctx, id, ts_errname(rc));
    cr_assert_eq(info.group, id, "%s: group id", ctx);
    cr_assert_eq(info.snap_index, g->snap_index,
                 "%s: group %" PRIu64 " snap_index %" PRIu64 ", model %" PRIu64, ctx, id,
                 info.snap_index, g->snap_index);
    cr_assert_eq(info.snap_term, g->snap_term,
                 "%s: group %" PRIu64 " snap_term %" PRIu64 ", model %" PRIu64, ctx, id,
                 info.snap_term, g->snap_term);
    cr_assert_eq(info.first_index, g->snap_index + 1, "%s: group %" PRIu64 " first_index", ctx, id);
    cr_assert_eq(info.last_index, wm_last(g),
                 "%s: group %" PRIu64 " last_index %" PRIu64 ", model %" PRIu64, ctx, id,
                 info.last_index, wm_last(g));
    cr_assert_eq(info.has_hard_state, g->has_hs,
                 "%s: group %" PRIu64 " has_hard_state %d, "
                 "model %d",
                 ctx, id, info.has_hard_state, g->has_hs);
    if (g->has_hs) {
        cr_assert(info.hard_state.term == g->hs.term && info.hard_state.vote == g->hs.vote &&
                      info.hard_state.commit == g->hs.commit,
                  "%s: group %" PRIu64 " hard state (%" PRIu64 ", %" PRIu64 ", %" PRIu64
                  "), model (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ")",
                  ctx, id, info.hard_state.term, info.hard_state.vote, info.hard_state.commit,
                  g->hs.term, g->hs.vote, g->hs.commit);
    }
    check_terms(t, id, g, ctx);
}

static int count_group(void *arg, const struct wal_group_info *g)
{
    (void)g;
    (*(uint32_t *)arg)++;
    return 0;
}

void wt_check(struct wt *t, const struct wm *m, const char *ctx)
{
    for (uint32_t s = 0; s < m->ngroups; s++) {
        wt_check_group(t, m, s, ctx);
    }
    uint32_t n = 0;
    cr_assert_eq(wal_groups(t->w, count_group, &n), 0);
    cr_assert_eq(n, m->live, "%s: the WAL has %u groups, the model %u", ctx, n, m->live);
    struct wal_stats st = wt_stats(t);
    cr_assert_eq(st.groups, m->live, "%s: stats.groups %u, model %u", ctx, st.groups, m->live);
}

static void read_done(struct wal_read_req *req)
{
    *(bool *)req->data = true;
}

void wt_check_read(struct wt *t, const struct wm *m, uint32_t slot, uint64_t lo, uint64_t hi,
                   const char *ctx)
{
    const struct wm_group *g = &m->g[slot];
    uint64_t id = wm_id(m, slot);
    cr_assert(g->exists && lo > g->snap_index && hi <= wm_last(g) + 1 && lo < hi);
    uint32_t n = (uint32_t)(hi - lo);
    size_t total = 0;
    for (uint64_t i = lo; i < hi; i++) {
        total += g->ents[i - g->snap_index - 1].len;
    }
    uint8_t *buf = malloc(total + 1);
    uint8_t *want = malloc(total + 1);
    struct wal_entry *entries = calloc(n, sizeof(*entries));
    cr_assert(buf != NULL && want != NULL && entries != NULL);
    bool done = false;
    struct wal_read_req req = {.group = id,
                               .lo = lo,
                               .hi = hi,
                               .buf = buf,
                               .buf_bytes = (uint32_t)total,
                               .entries = entries,
                               .cb = read_done,
                               .data = &done};
    if (wal_read(t->w, &req) == 0) {
        for (int i = 0; !done; i++) {
            cr_assert(i < 100000 && disk_inflight(t->disk) > 0,
                      "%s: wal_read of group %" PRIu64 " never completes", ctx, id);
            cr_assert(disk_run(t->disk, true) >= 0);
        }
    }
    cr_assert_eq(req.res, 0, "%s: wal_read group %" PRIu64 " [%" PRIu64 ", %" PRIu64 "): %s", ctx,
                 id, lo, hi, ts_errname(req.res));
    cr_assert_eq(req.count, n, "%s: wal_read group %" PRIu64 " returned %u of %u entries", ctx, id,
                 req.count, n);
    for (uint32_t k = 0; k < n; k++) {
        const struct wm_entry *me = &g->ents[lo + k - g->snap_index - 1];
        const struct wal_entry *e = &entries[k];
        cr_assert(e->index == lo + k && e->term == me->term && e->len == me->len,
                  "%s: group %" PRIu64 " entry %" PRIu64 ": read (index %" PRIu64 ", term %" PRIu64
                  ", len %u), model (term %" PRIu64 ", len %u)",
                  ctx, id, lo + k, e->index, e->term, e->len, me->term, me->len);
        wm_data(me->tag, me->len, want);
        cr_assert(me->len == 0 || memcmp(e->data, want, me->len) == 0,
                  "%s: group %" PRIu64 " entry %" PRIu64 ": data differs", ctx, id, lo + k);
    }
    free(entries);
    free(want);
    free(buf);
}

void wt_check_all_data(struct wt *t, const struct wm *m, const char *ctx)
{
    for (uint32_t s = 0; s < m->ngroups; s++) {
        const struct wm_group *g = &m->g[s];
        if (!g->exists) {
            continue;
        }
        for (uint64_t lo = g->snap_index + 1; lo <= wm_last(g); lo += 64) {
            uint64_t hi = lo + 64 <= wm_last(g) + 1 ? lo + 64 : wm_last(g) + 1;
            wt_check_read(t, m, s, lo, hi, ctx);
        }
    }
}

/* ---- Generators -------------------------------------------------------------------- */

static uint64_t prev_term(const struct wm_group *g, uint64_t index)
{
    if (!g->exists || index <= g->snap_index) {
        return g->exists ? g->snap_term : 0;
    }
    return g->ents[index - g->snap_index - 1].term;
}

static void gen_append(struct ts_rand *r, const struct wt_gen *gen, const struct wm_group *g,
                       uint64_t tag, struct wm_op *op)
{
    op->kind = WM_APPEND;
    op->index = g->exists ? wm_last(g) + 1 : 1;
    bool conflict = g->exists && g->count > 0 && ts_rand_chance(r, 1, 8);
    if (conflict) {
        op->index = g->snap_index + 1 + ts_rand_below(r, g->count);
    }
    op->n = 1 + (uint32_t)ts_rand_below(r, 4);
    op->ents = malloc(op->n * sizeof(*op->ents));
    cr_assert_not_null(op->ents);
    uint64_t term = prev_term(g, op->index - 1) + (conflict ? 1 : 0);
    if (term == 0) {
        term = 1;
    }
    for (uint32_t i = 0; i < op->n; i++) {
        if (ts_rand_chance(r, 1, 16)) {
            term++;
        }
        uint32_t len = gen->big_den > 0 && ts_rand_chance(r, 1, gen->big_den)
                           ? (uint32_t)ts_rand_below(r, 4097)
                           : (uint32_t)ts_rand_below(r, gen->data_max + 1);
        op->ents[i] = (struct wm_entry){.term = term, .tag = tag + i, .len = len};
    }
}

void wt_gen_op(struct ts_rand *r, const struct wt_gen *gen, const struct wm *m, uint64_t tag,
               struct wm_op *op)
{
    *op = (struct wm_op){0};
    bool hot = gen->hot > 0 && ts_rand_chance(r, 1, 2);
    op->slot = (uint32_t)ts_rand_below(r, hot ? gen->hot : m->ngroups);
    const struct wm_group *g = &m->g[op->slot];
    uint32_t roll = (uint32_t)ts_rand_below(r, 100);
    uint32_t at = gen->append_pct;
    if (roll < at) {
        gen_append(r, gen, g, tag, op);
        return;
    }
    if (roll < (at += gen->hs_pct)) {
        op->kind = WM_HARD_STATE;
        op->hs = (struct wal_hard_state){.term = 1 + ts_rand_below(r, 100),
                                         .vote = ts_rand_below(r, 6),
                                         .commit = ts_rand_below(r, 1000)};
        return;
    }
    if (g->exists && roll < (at += gen->truncate_pct)) {
        op->kind = WM_TRUNCATE;
        op->index = g->snap_index + 1 + ts_rand_below(r, (uint64_t)g->count + 2);
        return;
    }
    if (g->exists && g->count > 0 && roll < (at += gen->compact_pct)) {
        op->kind = WM_COMPACT;
        op->index = g->snap_index + 1 + ts_rand_below(r, g->count);
        return;
    }
    if (roll < (at += gen->snapshot_pct)) {
        op->kind = WM_SNAPSHOT;
        op->index = (g->exists ? wm_last(g) : 0) + 1 + ts_rand_below(r, 5);
        op->term = prev_term(g, g->exists ? wm_last(g) : 0) + 1 + ts_rand_below(r, 2);
        return;
    }
    if (g->exists && roll < (at += gen->remove_pct)) {
        op->kind = WM_REMOVE;
        return;
    }
    gen_append(r, gen, g, tag, op);
}

uint64_t wt_seeds(uint64_t dflt)
{
    const char *s = getenv("TS_WAL_SEEDS");
    if (s == NULL || *s == '\0') {
        return dflt;
    }
    uint64_t n = strtoull(s, NULL, 10);
    return n > 0 ? n : dflt;
}
