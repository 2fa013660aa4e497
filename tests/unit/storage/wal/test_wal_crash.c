/*
 * storage/wal crash tests: power loss at every primitive step of the simulated disk.
 *
 * A seeded workload stages rounds of records (entries, hard states, truncations,
 * compactions, snapshots, removals), flushes each round and lets the disk take a few
 * steps between rounds (disk_sim_step: a write, or a sync). For every k, the workload is
 * run again from scratch and the power fails after exactly k steps, under each policy:
 * DROP, KEEP, TEAR at random bytes inside the write in flight, RANDOM with two disk
 * seeds. Then:
 *   - wal_open returns 0 (a torn tail is cut and reported, never refused);
 *   - the recovered log ends at a batch boundary R: the last durable LSN reported
 *     before the crash (D), or D plus the whole write in flight (U bytes) when the
 *     policy kept all of it. Never inside a batch;
 *   - every group equals the reference model replayed up to R (info, terms, entry data
 *     read back from disk), so everything reported durable is there and nothing partial;
 *   - the log goes on: new records become durable and survive a clean reopen.
 * Because only one write is ever in flight (wal_int.h), at most one write is unsynced
 * at a crash, which is what makes {D, D + U} the exact set of allowed ends.
 */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/encoding.h"
#include "core/util/err.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct crash_cfg {
    const char *name;
    uint64_t seed;
    uint64_t segment_bytes;
    uint32_t rounds;
    uint32_t ngroups;
    struct wt_gen gen;
};

struct crash_run {
    struct wt t;
    struct wm live;    /* everything staged */
    struct wm_op *ops; /* the calls that succeeded, in order */
    uint32_t nops;
    uint32_t cap;
    struct ts_rand r;
    uint64_t steps; /* disk steps taken */
    uint64_t tag;
};

static void run_init(struct crash_run *c, const struct crash_cfg *cfg, uint64_t disk_seed)
{
    memset(c, 0, sizeof(*c));
    wt_init(&c->t, disk_seed, cfg->segment_bytes);
    wm_init(&c->live, cfg->ngroups, 1);
    ts_rand_seed(&c->r, cfg->seed);
    c->tag = cfg->seed << 32;
    cr_assert_eq(wt_open(&c->t), 0, "%s seed %" PRIu64 ": %s", cfg->name, cfg->seed, c->t.errmsg);
}

static void run_free(struct crash_run *c)
{
    for (uint32_t i = 0; i < c->nops; i++) {
        wm_op_free(&c->ops[i]);
    }
    free(c->ops);
    wm_fini(&c->live);
    wt_fini(&c->t);
}

static void push_op(struct crash_run *c, const struct wm_op *op)
{
    if (c->nops == c->cap) {
        c->cap = c->cap == 0 ? 64 : c->cap * 2;
        c->ops = realloc(c->ops, c->cap * sizeof(*c->ops));
        cr_assert_not_null(c->ops);
    }
    c->ops[c->nops++] = *op;
}

/* Stages one random call that the model accepts, and keeps it. */
static void stage_one(struct crash_run *c, const struct crash_cfg *cfg, const char *ctx)
{
    struct wm_op op;
    wt_gen_op(&c->r, &cfg->gen, &c->live, c->tag, &op);
    c->tag += 16;
    int rc = wt_apply(&c->t, &c->live, &op, ctx);
    cr_assert_eq(rc, 0, "%s: generated op failed: %s", ctx, ts_errname(rc));
    push_op(c, &op);
}

/* Takes up to n disk steps, stopping at crash_at. Returns true when crash_at is hit. */
static bool take_steps(struct crash_run *c, uint64_t n, uint64_t crash_at)
{
    for (uint64_t i = 0; i < n; i++) {
        if (c->steps == crash_at) {
            return true;
        }
        if (!disk_sim_step(c->t.sim)) {
            return false;
        }
        c->steps++;
    }
    return c->steps == crash_at;
}

/* Runs the workload until crash_at steps were taken (returns true) or it is over. */
static bool run_to(struct crash_run *c, const struct crash_cfg *cfg, uint64_t crash_at)
{
    char ctx[128];
    snprintf(ctx, sizeof(ctx), "%s seed %" PRIu64 " crash_at %" PRIu64, cfg->name, cfg->seed,
             crash_at);
    for (uint32_t round = 0; round < cfg->rounds; round++) {
        uint32_t n = 1 + (uint32_t)ts_rand_below(&c->r, 3);
        for (uint32_t i = 0; i < n; i++) {
            stage_one(c, cfg, ctx);
        }
        cr_assert_eq(wal_flush(c->t.w), 0, "%s", ctx);
        if (take_steps(c, ts_rand_below(&c->r, 4), crash_at)) {
            return true;
        }
    }
    return take_steps(c, UINT64_MAX, crash_at);
}

/* The write in flight at a crash: its bytes U (0: none), how many of its last bytes
 * are zeros (a tear that only drops trailing zeros leaves the batch whole), and whether
 * it begins a segment (then it carries the segment header). */
static uint64_t write_in_flight(struct wt *t, uint64_t durable, uint64_t *trailing_zeros,
                                bool *at_segment_start)
{
    uint64_t seqs[WT_SEGMENTS_MAX];
    uint32_t n = wt_segments(t, seqs, WT_SEGMENTS_MAX);
    *trailing_zeros = 0;
    *at_segment_start = false;
    for (uint32_t i = 0; i < n; i++) {
        char path[64];
        wt_segment_path(seqs[i], path, sizeof(path));
        uint64_t u = disk_sim_unsynced_bytes(t->sim, path);
        if (u == 0) {
            continue;
        }
        uint32_t file;
        cr_assert_eq(disk_open(t->disk, path, DISK_OPEN_READONLY, &file), 0);
        uint8_t h[WAL_SEGMENT_HEADER_BYTES];
        cr_assert_eq(disk_pread(t->disk, file, h, sizeof(h), 0), (int64_t)sizeof(h));
        uint64_t offset = durable - ts_load_le64(h + 16);
        *at_segment_start = offset == 0;
        uint8_t *buf = malloc(u);
        cr_assert_not_null(buf);
        cr_assert_eq(disk_pread(t->disk, file, buf, u, offset), (int64_t)u);
        cr_assert_eq(disk_close(t->disk, file), 0);
        while (*trailing_zeros < u && buf[u - 1 - *trailing_zeros] == 0) {
            (*trailing_zeros)++;
        }
        free(buf);
        return u;
    }
    return 0;
}

/* Non-asserting comparison of one group (for choosing how much of a call survived). */
static bool group_matches(struct wt *t, const struct wm *m, uint32_t slot)
{
    struct wal_group_info info;
    const struct wm_group *g = &m->g[slot];
    int rc = wal_group_info(t->w, wm_id(m, slot), &info);
    if (!g->exists || rc != 0) {
        return !g->exists && rc == TS_ENOTFOUND;
    }
    if (info.snap_index != g->snap_index || info.last_index != wm_last(g)) {
        return false;
    }
    for (uint64_t i = g->snap_index + 1; i <= wm_last(g); i++) {
        uint64_t term;
        if (wal_term(t->w, wm_id(m, slot), i, &term) != 0 ||
            term != g->ents[i - g->snap_index - 1].term) {
            return false;
        }
    }
    return true;
}

/* The model replayed up to the recovered end R. A call whose records straddle R (a
 * segment roll can end a batch inside a multi-entry append) counts with the prefix of
 * its entries that the recovered group shows. */
static void model_at(struct crash_run *c, uint64_t end, struct wm *out, const char *ctx)
{
    wm_init(out, c->live.ngroups, 1);
    uint32_t p = 0;
    while (p < c->nops && c->ops[p].post_lsn <= end) {
        cr_assert_eq(wm_apply(out, &c->ops[p], UINT32_MAX), 0, "%s: replay", ctx);
        p++;
    }
    if (p == c->nops || c->ops[p].pre_lsn >= end) {
        return;
    }
    const struct wm_op *op = &c->ops[p];
    uint32_t n = op->kind == WM_APPEND ? op->n : 1;
    for (uint32_t j = 0; j < n; j++) {
        struct wm candidate;
        wm_copy(&candidate, out);
        /* j == 0 for a single-record call: it is not applied at all. */
        if (op->kind == WM_APPEND) {
            cr_assert_eq(wm_apply(&candidate, op, j), 0);
        }
        if (group_matches(&c->t, &candidate, op->slot)) {
            wm_fini(out);
            *out = candidate;
            return;
        }
        wm_fini(&candidate);
    }
    cr_assert_fail("%s: the group of the call straddling the recovered end %" PRIu64
                   " matches no prefix of it",
                   ctx, end);
}

static const char *policy_name(enum disk_sim_crash_policy p)
{
    switch (p) {
    case DISK_SIM_CRASH_DROP:
        return "DROP";
    case DISK_SIM_CRASH_KEEP:
        return "KEEP";
    case DISK_SIM_CRASH_TEAR:
        return "TEAR";
    default:
        return "RANDOM";
    }
}

/* After recovery: the log goes on, and a clean reopen shows the same. */
static void continue_after(struct crash_run *c, const struct crash_cfg *cfg, struct wm *m,
                           const char *ctx)
{
    c->live = *m;
    for (uint32_t i = 0; i < 3; i++) {
        struct wm_op op;
        wt_gen_op(&c->r, &cfg->gen, &c->live, c->tag, &op);
        c->tag += 16;
        cr_assert_eq(wt_apply(&c->t, &c->live, &op, ctx), 0);
        wm_op_free(&op);
    }
    uint32_t calls = c->t.durable_calls;
    wt_settle(&c->t, ctx);
    cr_assert(c->t.durable_calls > calls, "%s: no durable_cb after recovery", ctx);
    wt_close(&c->t);
    cr_assert_eq(wt_open(&c->t), 0, "%s: reopen after recovery: %s", ctx, c->t.errmsg);
    wt_check(&c->t, &c->live, ctx);
    wt_check_all_data(&c->t, &c->live, ctx);
}

struct crash_case {
    enum disk_sim_crash_policy policy;
    uint64_t tear;
    uint64_t disk_seed;
};

/*
 * The ends a recovered log may have. The write in flight [D, D + U) survives whole, or
 * is cut at D. When it began a segment and its 32-byte header survived, the log ends
 * after that header (D + 32): a header is not a record, so the state is the same as D.
 */
static bool end_allowed(const struct crash_case *cc, uint64_t durable, uint64_t inflight,
                        uint64_t zeros, bool at_start, uint64_t end)
{
    bool header = at_start && end == durable + WAL_SEGMENT_HEADER_BYTES;
    if (cc->policy == DISK_SIM_CRASH_RANDOM) {
        return end == durable || end == durable + inflight || header;
    }
    uint64_t kept = cc->policy == DISK_SIM_CRASH_KEEP ? inflight
                    : cc->policy == DISK_SIM_CRASH_TEAR
                        ? (cc->tear < inflight ? cc->tear : inflight)
                        : 0;
    if (kept + zeros >= inflight) {
        return end == durable + inflight;
    }
    if (at_start && kept >= WAL_SEGMENT_HEADER_BYTES) {
        return header;
    }
    return end == durable;
}

/* One run: the workload to crash_at, the crash, recovery and every check. Returns the
 * bytes of the write that was in flight at the crash. */
static uint64_t crash_once(const struct crash_cfg *cfg, uint64_t crash_at,
                           const struct crash_case *cc)
{
    struct crash_run c;
    run_init(&c, cfg, cc->disk_seed);
    cr_assert(run_to(&c, cfg, crash_at));
    uint64_t durable = c.t.durable;
    uint64_t zeros;
    bool at_start;
    uint64_t inflight = write_in_flight(&c.t, durable, &zeros, &at_start);
    char ctx[256];
    snprintf(ctx, sizeof(ctx),
             "%s seed %" PRIu64 " step %" PRIu64 " %s tear %" PRIu64 " disk seed %" PRIu64
             " (durable %" PRIu64 ", in flight %" PRIu64 ")",
             cfg->name, cfg->seed, crash_at, policy_name(cc->policy), cc->tear, cc->disk_seed,
             durable, inflight);
    wt_crash(&c.t, cc->policy, cc->tear);
    int rc = wt_open(&c.t);
    cr_assert_eq(rc, 0, "%s: wal_open: %s: %s", ctx, ts_errname(rc), c.t.errmsg);
    uint64_t end = wal_durable_lsn(c.t.w);
    cr_assert(end_allowed(cc, durable, inflight, zeros, at_start, end),
              "%s: recovered log ends at %" PRIu64 ", not at a batch boundary allowed by the "
              "policy",
              ctx, end);
    struct wm m;
    model_at(&c, end, &m, ctx);
    wt_check(&c.t, &m, ctx);
    wt_check_all_data(&c.t, &m, ctx);
    wm_fini(&c.live);
    continue_after(&c, cfg, &m, ctx);
    run_free(&c);
    return inflight;
}

/* Every step, every policy. Returns the number of runs. */
static uint32_t crash_every_step(const struct crash_cfg *cfg)
{
    struct crash_run c;
    run_init(&c, cfg, cfg->seed);
    cr_assert_not(run_to(&c, cfg, UINT64_MAX));
    uint64_t total = c.steps;
    run_free(&c);
    uint32_t runs = 0;
    struct ts_rand r;
    ts_rand_seed(&r, cfg->seed ^ 0x7ea5);
    for (uint64_t k = 0; k <= total; k++) {
        struct crash_case drop = {.policy = DISK_SIM_CRASH_DROP, .disk_seed = cfg->seed};
        uint64_t inflight = crash_once(cfg, k, &drop);
        runs++;
        if (inflight == 0) {
            continue; /* no write in flight: every policy gives the same disk */
        }
        struct crash_case cases[6] = {
            {.policy = DISK_SIM_CRASH_KEEP, .disk_seed = cfg->seed},
            {.policy = DISK_SIM_CRASH_TEAR, .disk_seed = cfg->seed},
            {.policy = DISK_SIM_CRASH_TEAR, .disk_seed = cfg->seed},
            {.policy = DISK_SIM_CRASH_TEAR, .disk_seed = cfg->seed},
            {.policy = DISK_SIM_CRASH_RANDOM, .disk_seed = cfg->seed * 1000 + 1},
            {.policy = DISK_SIM_CRASH_RANDOM, .disk_seed = cfg->seed * 1000 + 2},
        };
        for (uint32_t i = 1; i <= 3; i++) {
            cases[i].tear = inflight > 1 ? 1 + ts_rand_below(&r, inflight - 1) : 0;
        }
        for (uint32_t i = 0; i < 6; i++) {
            crash_once(cfg, k, &cases[i]);
            runs++;
        }
    }
    return runs;
}

static const struct wt_gen crash_gen = {
    .data_max = 300,
    .big_den = 8,
    .append_pct = 60,
    .hs_pct = 15,
    .truncate_pct = 5,
    .compact_pct = 12,
    .snapshot_pct = 4,
    .remove_pct = 4,
};

#define CRASH_SEEDS 6
/* Seed 111 is the first to roll a segment with a group's first record and crash right
 * after the roll's states batch. */
#define ROLL_SEEDS 12

Test(wal_crash, crash_at_every_step_within_one_segment, .timeout = 120)
{
    uint64_t seeds = wt_seeds(CRASH_SEEDS);
    uint32_t runs = 0;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        struct crash_cfg cfg = {.name = "one segment",
                                .seed = seed,
                                .segment_bytes = 128 * 1024,
                                .rounds = 20,
                                .ngroups = 5,
                                .gen = crash_gen};
        runs += crash_every_step(&cfg);
    }
    fprintf(stderr, "[wal_crash] within one segment: seeds 1..%" PRIu64 ", %u crash runs\n", seeds,
            runs);
}

Test(wal_crash, crash_at_every_step_across_segment_rolls, .timeout = 120)
{
    uint64_t seeds = wt_seeds(ROLL_SEEDS);
    uint32_t runs = 0;
    struct wt_gen gen = crash_gen;
    gen.big_den = 3;
    gen.compact_pct = 20;
    gen.hs_pct = 7;
    gen.remove_pct = 8; /* groups come and go: some rolls are made by a group's first record */
    for (uint64_t seed = 101; seed < 101 + seeds; seed++) {
        struct crash_cfg cfg = {.name = "rolls",
                                .seed = seed,
                                .segment_bytes = 64 * 1024,
                                .rounds = 28,
                                .ngroups = 12,
                                .gen = gen};
        runs += crash_every_step(&cfg);
    }
    fprintf(stderr, "[wal_crash] across rolls: seeds 101..%" PRIu64 ", %u crash runs\n",
            100 + seeds, runs);
}

/*
 * The first write of a segment carries its 32-byte header. A power loss that tears that
 * write inside the header leaves a header that is neither valid nor all zeros; it is the
 * torn tail of the log like any other torn last batch, and nothing in it was reported
 * durable.
 */
Test(wal_crash, a_torn_segment_header_is_a_torn_tail)
{
    for (uint64_t tear = 1; tear < WAL_SEGMENT_HEADER_BYTES; tear += 5) {
        struct wt t;
        struct wm m;
        wt_init(&t, 31, 1024 * 1024);
        wm_init(&m, 1, 1);
        cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
        struct wm_op op = wm_append_op(0, 1, 1, 1, 100, 7);
        cr_assert_eq(wt_do(&t, &m, &op), 0);
        wm_op_free(&op);
        cr_assert_eq(wal_flush(t.w), 0);
        cr_assert(disk_sim_step(t.sim), "the write, not its sync");
        cr_assert_eq(t.durable_calls, 0);
        wt_crash(&t, DISK_SIM_CRASH_TEAR, tear);
        int rc = wt_open(&t);
        cr_assert_eq(rc, 0, "tear %" PRIu64 " bytes into the first write of segment 1: %s: %s",
                     tear, ts_errname(rc), t.errmsg);
        wt_check(&t, &m, "after a torn header");
        wt_expect(&t, &m, wm_append_op(0, 1, 1, 2, 10, 9), 0, "append after recovery");
        wt_settle(&t, "after a torn header");
        wt_close(&t);
        cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
        wt_check(&t, &m, "reopened");
        wm_fini(&m);
        wt_fini(&t);
    }
}

/* A torn batch is cut, zeroed and reported; the records before it stay. */
Test(wal_crash, a_torn_batch_is_cut_and_reported)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 32, 1024 * 1024);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 3, 1, 200, 10), 0, "durable");
    wt_settle(&t, "durable");
    uint64_t durable = t.durable;
    struct wm_op op = wm_append_op(1, 1, 4, 1, 500, 20);
    cr_assert_eq(wt_do(&t, &m, &op), 0);
    wm_op_free(&op);
    cr_assert_eq(wal_flush(t.w), 0);
    cr_assert(disk_sim_step(t.sim));
    uint64_t zeros;
    bool at_start;
    uint64_t inflight = write_in_flight(&t, durable, &zeros, &at_start);
    cr_assert(inflight > 1000 && !at_start);
    wt_crash(&t, DISK_SIM_CRASH_TEAR, inflight / 2);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    cr_assert_eq(t.torn_reports, 1, "recovery reports the cut: %s", t.last_report);
    cr_assert_eq(wal_durable_lsn(t.w), durable);
    wt_check(&t, &m, "torn batch");
    wt_check_all_data(&t, &m, "torn batch");
    wt_close(&t);
    uint32_t reports = t.torn_reports;
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    cr_assert_eq(t.torn_reports, reports, "the cut part was zeroed: nothing torn any more");
    wm_fini(&m);
    wt_fini(&t);
}
