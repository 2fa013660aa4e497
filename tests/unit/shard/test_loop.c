/*
 * shard/loop.c: timers, sleeping when idle, tag dispatch, hooks, the full-SQ retry.
 */
#include "shard/loop.h"

#include "core/util/err.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#define MS 1000000ull

static struct shard_loop *loop_new(uint32_t sq, uint32_t timers_max)
{
    struct shard_loop_config cfg = {.shard_id = 0, .sq_entries = sq, .timers_max = timers_max};
    struct shard_loop *l = NULL;
    int rc = shard_loop_create(&cfg, &l);
    cr_assert_eq(rc, 0, "shard_loop_create: %s", ts_strerror(rc));
    cr_assert_not_null(l);
    return l;
}

/* ---- Timers ---------------------------------------------------------------------------- */

struct order {
    struct shard_loop *l;
    int fired[8];
    uint64_t at_ns[8];
    int n;
    int stop_after;
};

struct tagged_timer {
    struct shard_timer t;
    struct order *o;
    int id;
};

static void on_order_timer(struct shard_timer *t, void *data)
{
    struct tagged_timer *tt = data;
    cr_assert_eq(t, &tt->t);
    struct order *o = tt->o;
    cr_assert_lt(o->n, 8);
    o->at_ns[o->n] = shard_loop_now_ns(o->l);
    o->fired[o->n++] = tt->id;
    cr_assert_geq(shard_loop_now_ns(o->l), t->deadline_ns, "fired before its deadline");
    if (o->n == o->stop_after) {
        shard_loop_stop(o->l);
    }
}

Test(shard_loop, timers_fire_in_deadline_order_and_stop_works)
{
    struct shard_loop *l = loop_new(0, 0);
    struct order o = {.l = l, .stop_after = 4};
    static const int offsets_ms[5] = {30, 10, 50, 20, 40};
    struct tagged_timer tt[5];
    uint64_t now = shard_loop_now_ns(l);
    for (int i = 0; i < 5; i++) {
        tt[i] = (struct tagged_timer){.o = &o, .id = offsets_ms[i]};
        shard_timer_init(&tt[i].t);
        cr_assert_eq(shard_timer_start(l, &tt[i].t, now + (uint64_t)offsets_ms[i] * MS,
                                       on_order_timer, &tt[i]),
                     0);
    }
    cr_assert_eq(shard_loop_timers(l), 5);
    shard_timer_stop(l, &tt[4].t); /* the 40 ms one */
    shard_timer_stop(l, &tt[4].t); /* stopping twice does nothing */
    cr_assert(!shard_timer_armed(&tt[4].t));
    cr_assert_eq(shard_loop_timers(l), 4);
    cr_assert_eq(shard_loop_run(l), 0);
    cr_assert_eq(o.n, 4);
    int want[4] = {10, 20, 30, 50};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(o.fired[i], want[i], "fired[%d] = %d", i, o.fired[i]);
    }
    cr_assert_eq(shard_loop_timers(l), 0);
    shard_loop_destroy(l);
}

Test(shard_loop, rearming_moves_a_timer)
{
    struct shard_loop *l = loop_new(0, 0);
    struct order o = {.l = l, .stop_after = 2};
    struct tagged_timer a = {.o = &o, .id = 1};
    struct tagged_timer b = {.o = &o, .id = 2};
    shard_timer_init(&a.t);
    shard_timer_init(&b.t);
    uint64_t now = shard_loop_now_ns(l);
    cr_assert_eq(shard_timer_start(l, &a.t, now + 5 * MS, on_order_timer, &a), 0);
    cr_assert_eq(shard_timer_start(l, &b.t, now + 10 * MS, on_order_timer, &b), 0);
    cr_assert_eq(shard_timer_start(l, &a.t, now + 20 * MS, on_order_timer, &a), 0);
    cr_assert_eq(shard_loop_timers(l), 2);
    cr_assert_eq(shard_loop_run(l), 0);
    cr_assert_eq(o.fired[0], 2);
    cr_assert_eq(o.fired[1], 1);
    shard_loop_destroy(l);
}

static void on_noop_timer(struct shard_timer *t, void *data)
{
    (void)t;
    (void)data;
}

Test(shard_loop, timers_are_bounded)
{
    struct shard_loop *l = loop_new(0, 4);
    struct shard_timer t[5];
    for (int i = 0; i < 5; i++) {
        shard_timer_init(&t[i]);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(shard_timer_start(l, &t[i], 1, on_noop_timer, NULL), 0);
    }
    cr_assert_eq(shard_timer_start(l, &t[4], 1, on_noop_timer, NULL), TS_EFULL);
    cr_assert(!shard_timer_armed(&t[4]));
    /* Re-arming an armed timer needs no extra room. */
    cr_assert_eq(shard_timer_start(l, &t[0], 2, on_noop_timer, NULL), 0);
    cr_assert_eq(shard_loop_run_once(l, true), 0); /* all due: nothing blocks */
    cr_assert_eq(shard_loop_timers(l), 0);
    cr_assert_eq(shard_timer_start(l, &t[4], 1, on_noop_timer, NULL), 0);
    shard_timer_stop(l, &t[4]);
    shard_loop_destroy(l);
}

/* ---- Sleeping when idle ---------------------------------------------------------------- */

struct ticker {
    struct shard_loop *l;
    struct shard_timer t;
    int fired;
};

static void on_tick(struct shard_timer *t, void *data)
{
    struct ticker *k = data;
    k->fired++;
    if (k->fired == 4) {
        shard_loop_stop(k->l);
        return;
    }
    cr_assert_eq(shard_timer_start(k->l, t, shard_loop_now_ns(k->l) + 50 * MS, on_tick, k), 0);
}

Test(shard_loop, sleeps_when_idle)
{
    struct shard_loop *l = loop_new(0, 0);
    struct ticker k = {.l = l};
    shard_timer_init(&k.t);
    cr_assert_eq(shard_timer_start(l, &k.t, shard_loop_now_ns(l) + 50 * MS, on_tick, &k), 0);
    cr_assert_eq(shard_loop_run(l), 0);
    cr_assert_eq(k.fired, 4);
    /* Four 50 ms timers: a busy loop would run millions of iterations. */
    uint64_t it = shard_loop_iterations(l);
    cr_assert_leq(it, 16, "%llu iterations for four timers", (unsigned long long)it);
    cr_assert_geq(it, 4);
    shard_loop_destroy(l);
}

/* ---- Tags ------------------------------------------------------------------------------ */

struct tag_sink {
    uint64_t values[512];
    int n;
    int bad;
};

static void on_tag7(void *ctx, struct io_uring_cqe *cqe)
{
    struct tag_sink *sink = ctx;
    if (shard_udata_tag(cqe->user_data) != 7 || cqe->res != 0 || sink->n >= 512) {
        sink->bad++;
        return;
    }
    sink->values[sink->n++] = shard_udata_value(cqe->user_data);
}

Test(shard_loop, udata_packs_tag_and_value)
{
    uint64_t ud = shard_udata(SHARD_TAG_DISK, SHARD_UDATA_VALUE_MASK);
    cr_assert_eq(shard_udata_tag(ud), SHARD_TAG_DISK);
    cr_assert_eq(shard_udata_value(ud), SHARD_UDATA_VALUE_MASK);
    ud = shard_udata(255, 12345);
    cr_assert_eq(shard_udata_tag(ud), 255);
    cr_assert_eq(shard_udata_value(ud), 12345);
}

Test(shard_loop, registered_tag_gets_its_cqes)
{
    struct shard_loop *l = loop_new(0, 0);
    struct tag_sink sink = {0};
    cr_assert_eq(shard_loop_register(l, 7, on_tag7, &sink), 0);
    cr_assert_eq(shard_loop_register(l, 7, on_tag7, &sink), TS_EINVAL);
    cr_assert_eq(shard_loop_register(l, 0, on_tag7, &sink), TS_EINVAL);
    cr_assert_eq(shard_loop_register(l, SHARD_TAG_LOOP, on_tag7, &sink), TS_EINVAL);
    struct io_uring_sqe *sqe = shard_loop_sqe(l);
    cr_assert_not_null(sqe);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, shard_udata(7, 12345));
    for (int i = 0; i < 10 && sink.n == 0; i++) {
        cr_assert_eq(shard_loop_run_once(l, true), 0);
    }
    cr_assert_eq(sink.n, 1);
    cr_assert_eq(sink.values[0], 12345);
    cr_assert_eq(sink.bad, 0);
    shard_loop_destroy(l);
}

Test(shard_loop, full_submission_queue_is_submitted_and_reused)
{
    struct shard_loop *l = loop_new(8, 0); /* 8 SQEs, 300 NOPs */
    struct tag_sink sink = {0};
    cr_assert_eq(shard_loop_register(l, 7, on_tag7, &sink), 0);
    for (uint64_t i = 0; i < 300; i++) {
        struct io_uring_sqe *sqe = shard_loop_sqe(l);
        cr_assert_not_null(sqe, "no SQE for NOP %llu", (unsigned long long)i);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, shard_udata(7, i));
    }
    for (int i = 0; i < 100 && sink.n < 300; i++) {
        cr_assert_eq(shard_loop_run_once(l, true), 0);
    }
    cr_assert_eq(sink.n, 300);
    cr_assert_eq(sink.bad, 0);
    for (int i = 0; i < 300; i++) {
        cr_assert_eq(sink.values[i], (uint64_t)i); /* NOPs complete in submission order */
    }
    shard_loop_destroy(l);
}

/* ---- Hooks and pokes ------------------------------------------------------------------- */

struct hook_log {
    int calls[2];
    int order[8];
    int n;
};

static void hook_a(void *ctx)
{
    struct hook_log *h = ctx;
    h->calls[0]++;
    if (h->n < 8) {
        h->order[h->n++] = 0;
    }
}

static void hook_b(void *ctx)
{
    struct hook_log *h = ctx;
    h->calls[1]++;
    if (h->n < 8) {
        h->order[h->n++] = 1;
    }
}

Test(shard_loop, hooks_run_once_per_iteration_in_order)
{
    struct shard_loop *l = loop_new(0, 0);
    struct hook_log h = {0};
    cr_assert_eq(shard_loop_on_iteration(l, hook_a, &h), 0);
    cr_assert_eq(shard_loop_on_iteration(l, hook_b, &h), 0);
    for (int i = 0; i < 3; i++) {
        shard_loop_poke(l); /* without a poke an idle loop would sleep for ever */
        cr_assert_eq(shard_loop_run_once(l, true), 0);
    }
    cr_assert_eq(h.calls[0], 3);
    cr_assert_eq(h.calls[1], 3);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(h.order[i], i % 2);
    }
    cr_assert_eq(shard_loop_iterations(l), 3);
    for (uint32_t i = 2; i < TS_SHARD_LOOP_HOOKS_MAX; i++) {
        cr_assert_eq(shard_loop_on_iteration(l, hook_a, &h), 0);
    }
    cr_assert_eq(shard_loop_on_iteration(l, hook_a, &h), TS_EFULL);
    shard_loop_destroy(l);
}

Test(shard_loop, clock_advances_between_iterations)
{
    struct shard_loop *l = loop_new(0, 0);
    uint64_t t0 = shard_loop_now_ns(l);
    cr_assert_gt(t0, 0);
    cr_assert_eq(shard_loop_run_once(l, false), 0);
    uint64_t t1 = shard_loop_now_ns(l);
    cr_assert_geq(t1, t0);
    cr_assert_eq(shard_loop_now_ns(l), t1); /* read once per iteration */
    shard_loop_destroy(l);
}
