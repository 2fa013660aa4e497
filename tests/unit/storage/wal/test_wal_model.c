/*
 * storage/wal against a reference model: 10,000 groups, many seeds.
 *
 * Each seed runs a random interleaving of appends (random batch sizes, implied
 * truncations), hard states, truncations, compactions, snapshots, removals, invalid
 * calls (their error codes are checked), flushes, single disk steps and full disk runs,
 * with periodic clean close + reopen and crash (DROP) + reopen. Two models are kept:
 * `live` has every staged call, `dur` every call whose records durable_cb reported
 * durable (calls are queued with their staged LSNs and move to `dur` in durable_cb).
 * After a crash the WAL must equal `dur` exactly, and recover to the last reported LSN;
 * otherwise it must equal `live`. Compared: every group's info, every retained term,
 * and entry data read back (sampled).
 *
 * Default: 20 seeds of 20,000 operations over four tests (seeds 1-5, 6-10...);
 * TS_WAL_SEEDS=N runs N seeds in total (long mode).
 */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUPS 10000u
#define HOT 64u
#define OPS 20000u
/* Twice 10,000 groups' states (the WAL's limit) and room for entries: several rolls per seed. */
#define SEG (2u * 1024u * 1024u)

struct model_test {
    struct wt t;
    struct wm live;
    struct wm dur;
    struct wm_op *q; /* staged calls not yet durable, oldest first, from q[qhead] */
    uint32_t qhead;
    uint32_t qn;
    uint32_t qcap;
    struct ts_rand r;
    uint64_t seed;
    uint64_t tag;
    uint32_t op;
    uint32_t reopens;
    uint32_t crashes;
    char ctx[128];
};

static const struct wt_gen model_gen = {
    .data_max = 200,
    .big_den = 64,
    .hot = HOT,
    .append_pct = 55,
    .hs_pct = 15,
    .truncate_pct = 4,
    .compact_pct = 16,
    .snapshot_pct = 3,
    .remove_pct = 3,
};

/* durable_cb: the calls whose records are now all durable move to `dur`. */
static void on_durable(void *data, uint64_t lsn)
{
    struct model_test *mt = data;
    while (mt->qhead < mt->qn && mt->q[mt->qhead].post_lsn <= lsn) {
        struct wm_op *op = &mt->q[mt->qhead++];
        cr_assert_eq(wm_apply(&mt->dur, op, UINT32_MAX), 0, "%s: durable replay", mt->ctx);
        wm_op_free(op);
    }
    if (mt->qhead == mt->qn) {
        mt->qhead = 0;
        mt->qn = 0;
    }
}

static void queue_push(struct model_test *mt, const struct wm_op *op)
{
    if (mt->qn == mt->qcap) {
        if (mt->qhead > 0) {
            memmove(mt->q, mt->q + mt->qhead, (mt->qn - mt->qhead) * sizeof(*mt->q));
            mt->qn -= mt->qhead;
            mt->qhead = 0;
        }
        if (mt->qn == mt->qcap) {
            mt->qcap = mt->qcap == 0 ? 256 : mt->qcap * 2;
            mt->q = realloc(mt->q, mt->qcap * sizeof(*mt->q));
            cr_assert_not_null(mt->q);
        }
    }
    mt->q[mt->qn++] = *op;
}

static void queue_clear(struct model_test *mt)
{
    for (uint32_t i = mt->qhead; i < mt->qn; i++) {
        wm_op_free(&mt->q[i]);
    }
    mt->qhead = 0;
    mt->qn = 0;
}

static void mt_open(struct model_test *mt)
{
    int rc = wt_open(&mt->t);
    cr_assert_eq(rc, 0, "%s: wal_open: %s: %s", mt->ctx, ts_errname(rc), mt->t.errmsg);
}

static void mt_init(struct model_test *mt, uint64_t seed)
{
    memset(mt, 0, sizeof(*mt));
    mt->seed = seed;
    mt->tag = seed << 40;
    ts_rand_seed(&mt->r, seed);
    snprintf(mt->ctx, sizeof(mt->ctx), "model seed %" PRIu64 " op 0", seed);
    wt_init(&mt->t, seed, SEG);
    mt->t.durable_hook = on_durable;
    mt->t.hook_data = mt;
    wm_init(&mt->live, GROUPS, 7919);
    wm_init(&mt->dur, GROUPS, 7919);
    mt_open(mt);
}

static void mt_fini(struct model_test *mt)
{
    queue_clear(mt);
    free(mt->q);
    wm_fini(&mt->live);
    wm_fini(&mt->dur);
    wt_fini(&mt->t);
}

/* One valid call, applied to the WAL and `live`, queued for `dur`. */
static void valid_call(struct model_test *mt)
{
    struct wm_op op;
    wt_gen_op(&mt->r, &model_gen, &mt->live, mt->tag, &op);
    mt->tag += 16;
    int rc = wt_apply(&mt->t, &mt->live, &op, mt->ctx);
    cr_assert_eq(rc, 0, "%s: a valid call failed: %s", mt->ctx, ts_errname(rc));
    queue_push(mt, &op);
}

/* One invalid call: the WAL must return the model's error and stage nothing. */
static void invalid_call(struct model_test *mt)
{
    uint32_t slot = (uint32_t)ts_rand_below(&mt->r, HOT);
    const struct wm_group *g = &mt->live.g[slot];
    struct wm_op op;
    switch (ts_rand_below(&mt->r, 4)) {
    case 0:
        op = wm_append_op(slot, (g->exists ? wm_last(g) : 0) + 2, 1, 1, 10, 0);
        break;
    case 1:
        op = wm_simple_op(WM_COMPACT, slot, g->exists ? wm_last(g) + 1 : 1, 0);
        break;
    case 2:
        op = wm_simple_op(WM_TRUNCATE, slot, g->exists ? g->snap_index : 1, 0);
        break;
    default:
        op = g->exists && g->snap_index > 0 ? wm_append_op(slot, g->snap_index, 1, 1, 10, 0)
                                            : wm_simple_op(WM_REMOVE, slot, 0, 0);
        break;
    }
    int rc = wt_apply(&mt->t, &mt->live, &op, mt->ctx);
    if (rc == 0) {
        queue_push(mt, &op); /* REMOVE of an existing group, or TRUNCATE at 1 */
    } else {
        wm_op_free(&op);
    }
}

static void check_sample(struct model_test *mt, const struct wm *m, uint32_t reads)
{
    for (uint32_t i = 0; i < reads; i++) {
        uint32_t slot = (uint32_t)ts_rand_below(&mt->r, i % 2 == 0 ? HOT : GROUPS);
        const struct wm_group *g = &m->g[slot];
        if (!g->exists || g->count == 0) {
            continue;
        }
        uint64_t lo = g->snap_index + 1 + ts_rand_below(&mt->r, g->count);
        uint64_t span = 1 + ts_rand_below(&mt->r, 8);
        uint64_t hi = lo + span <= wm_last(g) + 1 ? lo + span : wm_last(g) + 1;
        wt_check_read(&mt->t, m, slot, lo, hi, mt->ctx);
    }
}

static void clean_reopen(struct model_test *mt)
{
    wt_settle(&mt->t, mt->ctx);
    cr_assert_eq(mt->qn - mt->qhead, 0, "%s: every call is durable after a settle", mt->ctx);
    wt_close(&mt->t);
    mt_open(mt);
    wt_check(&mt->t, &mt->live, mt->ctx);
    check_sample(mt, &mt->live, 200);
    mt->reopens++;
}

/* The head call of the queue may straddle the durable LSN (a roll ended a batch inside a
 * multi-entry append): `dur` takes the prefix of its entries that recovery shows. */
static void apply_straddler(struct model_test *mt, uint64_t durable)
{
    if (mt->qhead == mt->qn || mt->q[mt->qhead].pre_lsn >= durable) {
        return;
    }
    struct wm_op *op = &mt->q[mt->qhead];
    if (op->kind != WM_APPEND) {
        return;
    }
    struct wal_group_info info;
    uint64_t id = wm_id(&mt->dur, op->slot);
    for (uint32_t j = op->n; j-- > 0;) {
        struct wm candidate;
        wm_copy(&candidate, &mt->dur);
        cr_assert_eq(wm_apply(&candidate, op, j), 0);
        const struct wm_group *g = &candidate.g[op->slot];
        int rc = wal_group_info(mt->t.w, id, &info);
        bool same = g->exists ? rc == 0 && info.last_index == wm_last(g) : rc == TS_ENOTFOUND;
        if (same) {
            wm_fini(&mt->dur);
            mt->dur = candidate;
            return;
        }
        wm_fini(&candidate);
    }
    cr_assert_fail("%s: the append straddling durable LSN %" PRIu64 " matches no prefix", mt->ctx,
                   durable);
}

static void crash_reopen(struct model_test *mt)
{
    uint64_t durable = mt->t.durable;
    wt_crash(&mt->t, DISK_SIM_CRASH_DROP, 0);
    mt_open(mt);
    cr_assert_eq(wal_durable_lsn(mt->t.w), durable,
                 "%s: recovered to %" PRIu64 ", the last "
                 "durable report was %" PRIu64,
                 mt->ctx, wal_durable_lsn(mt->t.w), durable);
    apply_straddler(mt, durable);
    queue_clear(mt);
    wt_check(&mt->t, &mt->dur, mt->ctx);
    check_sample(mt, &mt->dur, 200);
    wm_fini(&mt->live);
    wm_copy(&mt->live, &mt->dur);
    mt->crashes++;
}

static void one_step(struct model_test *mt)
{
    uint32_t roll = (uint32_t)ts_rand_below(&mt->r, 1000);
    if (roll < 780) {
        valid_call(mt);
    } else if (roll < 810) {
        invalid_call(mt);
    } else if (roll < 890) {
        cr_assert_eq(wal_flush(mt->t.w), 0, "%s", mt->ctx);
    } else if (roll < 950) {
        for (uint64_t n = 1 + ts_rand_below(&mt->r, 6); n > 0 && disk_sim_step(mt->t.sim); n--) {
        }
    } else if (roll < 980) {
        wt_run(&mt->t);
    } else if (roll < 995) {
        check_sample(mt, &mt->live, 1);
    } else if (roll < 997) {
        for (uint32_t i = 0; i < 50; i++) {
            uint32_t slot = (uint32_t)ts_rand_below(&mt->r, GROUPS);
            wt_check_group(&mt->t, &mt->live, slot, mt->ctx);
        }
    } else if (ts_rand_chance(&mt->r, 1, 2)) {
        valid_call(mt); /* about 30 reopens per seed: recovery is the slow part */
    } else if (ts_rand_chance(&mt->r, 2, 5)) {
        clean_reopen(mt);
    } else {
        crash_reopen(mt);
    }
}

/* Every group gets a hard state first, so all 10,000 exist and every roll restates them. */
static void create_all(struct model_test *mt)
{
    for (uint32_t slot = 0; slot < GROUPS; slot++) {
        struct wm_op op = wm_hs_op(slot, 1, slot % 3, 0);
        cr_assert_eq(wt_apply(&mt->t, &mt->live, &op, mt->ctx), 0);
        queue_push(mt, &op);
    }
}

/* Every group compacts its whole log (a checkpoint applied everything): the segments
 * before the tail are no longer needed and go once the compactions are durable. */
static void compact_sweep(struct model_test *mt)
{
    for (uint32_t slot = 0; slot < GROUPS; slot++) {
        const struct wm_group *g = &mt->live.g[slot];
        if (g->exists && g->count > 0) {
            struct wm_op op = wm_simple_op(WM_COMPACT, slot, wm_last(g), 0);
            cr_assert_eq(wt_apply(&mt->t, &mt->live, &op, mt->ctx), 0);
            queue_push(mt, &op);
        }
    }
}

static void model_seed(uint64_t seed)
{
    struct model_test *mt = malloc(sizeof(*mt));
    cr_assert_not_null(mt);
    mt_init(mt, seed);
    create_all(mt);
    for (mt->op = 0; mt->op < OPS; mt->op++) {
        snprintf(mt->ctx, sizeof(mt->ctx), "model seed %" PRIu64 " op %u", seed, mt->op);
        if (mt->op % (OPS / 4) == OPS / 4 - 1) {
            compact_sweep(mt);
        }
        one_step(mt);
    }
    snprintf(mt->ctx, sizeof(mt->ctx), "model seed %" PRIu64 " end", seed);
    clean_reopen(mt);
    wt_check_all_data(&mt->t, &mt->live, mt->ctx);
    uint64_t seqs[WT_SEGMENTS_MAX];
    uint32_t n = wt_segments(&mt->t, seqs, WT_SEGMENTS_MAX);
    fprintf(stderr,
            "[wal_model] seed %" PRIu64 ": %u ops, %u groups, %u reopens, %u crashes, "
            "segments %" PRIu64 "..%" PRIu64 " live\n",
            seed, OPS, mt->live.live, mt->reopens, mt->crashes, seqs[0], seqs[n - 1]);
    mt_fini(mt);
    free(mt);
}

static void model_quarter(uint32_t quarter)
{
    uint64_t total = wt_seeds(20);
    uint64_t lo = 1 + quarter * total / 4;
    uint64_t hi = (quarter + 1) * total / 4;
    for (uint64_t seed = lo; seed <= hi; seed++) {
        model_seed(seed);
    }
    fprintf(stderr, "[wal_model] seeds %" PRIu64 "..%" PRIu64 " passed\n", lo, hi);
}

Test(wal_model, ten_thousand_groups_seeds_q1, .timeout = 600)
{
    model_quarter(0);
}

Test(wal_model, ten_thousand_groups_seeds_q2, .timeout = 600)
{
    model_quarter(1);
}

Test(wal_model, ten_thousand_groups_seeds_q3, .timeout = 600)
{
    model_quarter(2);
}

Test(wal_model, ten_thousand_groups_seeds_q4, .timeout = 600)
{
    model_quarter(3);
}
