/* Tests for bench/tessera-bench/run: admission (--total, --duration, --rate, slots, stop),
 * the kind and key of an operation, and completion bookkeeping. No driver and no server:
 * operations are admitted and completed by hand. */
#include "bench/tessera-bench/run.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tb_opts opts;
static struct tb_run run;

static void setup(const char *const *args, int n, uint32_t workers)
{
    char *argv[32];
    char err[256];
    argv[0] = "tessera-bench";
    for (int i = 0; i < n; i++) {
        argv[i + 1] = (char *)args[i];
    }
    cr_assert_eq(tb_opts_parse(n + 1, argv, &opts, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tb_run_init(&run, &opts, workers), 0);
}

static void teardown(void)
{
    tb_run_fini(&run);
}

#define SETUP(workers, ...)                                                                        \
    do {                                                                                           \
        const char *a_[] = {__VA_ARGS__};                                                          \
        setup(a_, (int)(sizeof a_ / sizeof a_[0]), workers);                                       \
    } while (0)

Test(tb_run, total_bounds_the_run_and_keys_are_sequential, .fini = teardown)
{
    SETUP(1, "put", "--total", "5", "--inflight", "8", "--keyspace", "3", "--key-size", "4",
          "--key-dist", "sequential");
    tb_run_phase(&run, false);
    struct tb_worker *w = &run.workers[0];
    cr_assert_eq(w->nops, 8);
    const char *keys[] = {"0000", "0001", "0002", "0000", "0001"};
    struct tb_op *ops[5];
    uint64_t wait;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tb_admit(w, tb_now_ns(), &ops[i], &wait), TB_ADMIT_GO);
        cr_assert_eq(ops[i]->kind, TB_OP_PUT);
        cr_assert_eq(ops[i]->key_len, 4);
        cr_assert(memcmp(ops[i]->key, keys[i], 4) == 0);
        cr_assert_null(ops[i]->path, "no znode paths for a Tessera target");
    }
    struct tb_op *op;
    cr_assert_eq(tb_admit(w, tb_now_ns(), &op, &wait), TB_ADMIT_DONE);
    cr_assert_eq(tb_admit(w, tb_now_ns(), &op, &wait), TB_ADMIT_DONE, "done stays done");
    cr_assert_eq(tb_inflight(w), 5);
    for (int i = 0; i < 5; i++) {
        tb_complete(ops[i], i == 4 ? -5 : 0);
    }
    cr_assert_eq(tb_inflight(w), 0);
    cr_assert_eq(w->total->ops, 4);
    cr_assert_eq(w->total->errors, 1);
    cr_assert_eq(w->total->err[0].code, -5);
    cr_assert_eq(ts_histogram_count(&w->total->latency), 4);
}

Test(tb_run, slots_bound_the_inflight, .fini = teardown)
{
    SETUP(1, "get", "--duration", "10", "--clients", "2", "--inflight", "3");
    tb_run_phase(&run, false);
    struct tb_worker *w = &run.workers[0];
    struct tb_op *ops[6], *op;
    uint64_t wait = 99;
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(tb_admit(w, tb_now_ns(), &ops[i], &wait), TB_ADMIT_GO);
        cr_assert_eq(ops[i]->kind, TB_OP_GET);
    }
    cr_assert_eq(tb_admit(w, tb_now_ns(), &op, &wait), TB_ADMIT_WAIT);
    cr_assert_eq(wait, 0, "waiting for a slot, not for the schedule");
    tb_release(ops[2]);
    cr_assert_eq(tb_admit(w, tb_now_ns(), &op, &wait), TB_ADMIT_GO);
    cr_assert_eq(op, ops[2], "the freed slot is reused");
}

Test(tb_run, duration_and_stop_end_admission, .fini = teardown)
{
    SETUP(1, "put", "--duration", "1", "--inflight", "4");
    tb_run_phase(&run, false);
    struct tb_worker *w = &run.workers[0];
    struct tb_op *op;
    uint64_t wait;
    cr_assert_eq(tb_admit(w, run.start_ns, &op, &wait), TB_ADMIT_GO);
    cr_assert_eq(tb_admit(w, run.start_ns + 1000000000ull, &op, &wait), TB_ADMIT_DONE);
    tb_run_phase(&run, false);
    atomic_store(&run.stop, true);
    cr_assert_eq(tb_admit(w, run.start_ns, &op, &wait), TB_ADMIT_DONE);
}

Test(tb_run, rate_schedules_and_latency_starts_at_the_due_time, .fini = teardown)
{
    SETUP(2, "put", "--total", "100", "--clients", "4", "--inflight", "4", "--rate", "1000");
    tb_run_phase(&run, false);
    struct tb_worker *w = &run.workers[0];
    cr_assert_eq(w->clients, 2);
    cr_assert_eq(w->rate.ops_per_s, 500.0, "the rate is shared in proportion to clients");
    uint64_t t0 = run.start_ns, wait;
    struct tb_op *op;
    cr_assert_eq(tb_admit(w, t0, &op, &wait), TB_ADMIT_GO);
    cr_assert_eq(op->due_ns, t0);
    cr_assert_eq(tb_admit(w, t0 + 500000, &op, &wait), TB_ADMIT_WAIT);
    cr_assert_eq(wait, 1500000, "the next is due 2 ms after the first");
    /* Sent 3 ms late: due at t0 + 2 ms, started at t0 + 5 ms. */
    cr_assert_eq(tb_admit(w, t0 + 5000000, &op, &wait), TB_ADMIT_GO);
    cr_assert_eq(op->due_ns, t0 + 2000000);
    cr_assert_eq(op->start_ns, t0 + 5000000);
    /* Latency counts from the due time: make the op due 7 ms ago and sent 1 ms ago. */
    uint64_t now = tb_now_ns();
    op->due_ns = now - 7000000;
    op->start_ns = now - 1000000;
    tb_complete(op, 0);
    cr_assert(ts_histogram_min(&w->total->latency) >= 7000000);
    cr_assert(ts_histogram_min(&w->total->latency) < tb_now_ns() - now + 7100000);
}

Test(tb_run, mixed_follows_the_read_ratio, .fini = teardown)
{
    SETUP(1, "mixed", "--total", "20000", "--inflight", "1", "--read-ratio", "0.8");
    tb_run_phase(&run, false);
    struct tb_worker *w = &run.workers[0];
    int gets = 0;
    for (int i = 0; i < 20000; i++) {
        struct tb_op *op;
        uint64_t wait;
        cr_assert_eq(tb_admit(w, tb_now_ns(), &op, &wait), TB_ADMIT_GO);
        gets += op->kind == TB_OP_GET;
        tb_release(op);
    }
    cr_assert(gets > 15700 && gets < 16300, "%d gets of 20000", gets); /* sd 57 */
}

Test(tb_run, prefill_creates_every_key_once, .fini = teardown)
{
    SETUP(2, "txn-cas", "--duration", "5", "--clients", "2", "--inflight", "2", "--keyspace", "7",
          "--key-dist", "zipfian", "--target", "zk://h:1", "--key-size", "2");
    tb_run_phase(&run, true);
    cr_assert_eq(run.total, 7);
    cr_assert_eq(run.deadline_ns, 0, "the prefill is bounded by the keyspace only");
    int seen[7] = {0};
    for (int i = 0; i < 7; i++) {
        struct tb_op *op;
        uint64_t wait;
        struct tb_worker *w = &run.workers[i % 2];
        cr_assert_eq(tb_admit(w, tb_now_ns(), &op, &wait), TB_ADMIT_GO);
        cr_assert_eq(op->kind, TB_OP_CREATE);
        char path[64];
        snprintf(path, sizeof path, "/tessera-bench/303%d", i);
        cr_assert_str_eq(op->path, path);
        seen[op->key[1] - '0']++;
        tb_release(op);
    }
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(seen[i], 1);
    }
    struct tb_op *op;
    uint64_t wait;
    cr_assert_eq(tb_admit(&run.workers[0], tb_now_ns(), &op, &wait), TB_ADMIT_DONE);
    tb_run_phase(&run, false);
    cr_assert_eq(tb_admit(&run.workers[1], tb_now_ns(), &op, &wait), TB_ADMIT_GO);
    cr_assert_eq(op->kind, TB_OP_CAS);
    tb_count_conflict(op);
    tb_count_miss(op);
    tb_complete(op, 0);
    struct tb_stats *total = malloc(sizeof *total);
    tb_stats_init(total);
    tb_run_merge_totals(&run, total);
    cr_assert_eq(total->cas_ok, 1);
    cr_assert_eq(total->cas_conflicts, 1);
    cr_assert_eq(total->misses, 1);
    tb_stats_init(total);
    tb_run_take_interval(&run, total);
    cr_assert_eq(total->ops, 1);
    tb_stats_init(total);
    tb_run_take_interval(&run, total);
    cr_assert_eq(total->ops, 0, "taking the interval resets it");
    free(total);
}
