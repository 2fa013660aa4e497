/* Tests for bench/tessera-bench/rate: the open-loop schedule and where latency starts. */
#include "bench/tessera-bench/rate.h"

#include <criterion/criterion.h>

Test(tb_rate, open_throttle_is_always_due)
{
    struct tb_rate r;
    tb_rate_init(&r, 1000, 0.0);
    cr_assert_eq(tb_rate_due_ns(&r, 0), 1000);
    cr_assert_eq(tb_rate_due_ns(&r, 1000000), 1000);
    cr_assert_eq(tb_rate_wait_ns(&r, 5, 1000), 0);
    /* Latency from the actual send, whatever the due time says. */
    cr_assert_eq(tb_rate_latency_ns(&r, 1000, 5000, 7000), 2000);
}

Test(tb_rate, due_times_follow_the_rate)
{
    struct tb_rate r;
    tb_rate_init(&r, 1000000, 1000.0); /* one per ms */
    cr_assert_eq(tb_rate_due_ns(&r, 0), 1000000);
    cr_assert_eq(tb_rate_due_ns(&r, 1), 2000000);
    cr_assert_eq(tb_rate_due_ns(&r, 250), 251000000);
    cr_assert_eq(tb_rate_wait_ns(&r, 1, 1500000), 500000);
    cr_assert_eq(tb_rate_wait_ns(&r, 1, 2000000), 0);
    cr_assert_eq(tb_rate_wait_ns(&r, 1, 9000000), 0, "late is due, never negative");
}

Test(tb_rate, no_drift_over_a_long_run)
{
    struct tb_rate r;
    tb_rate_init(&r, 0, 3.0); /* 333333333.33 ns apart: accumulating would drift */
    cr_assert_eq(tb_rate_due_ns(&r, 3), 1000000000);
    cr_assert_eq(tb_rate_due_ns(&r, 3u * 86400u * 7u), 604800ull * 1000000000ull);
    tb_rate_init(&r, 5, 1e6);
    cr_assert_eq(tb_rate_due_ns(&r, 3600000000ull), 3600ull * 1000000000ull + 5);
    /* Due times never go backwards. */
    tb_rate_init(&r, 0, 7777.0);
    uint64_t prev = 0;
    for (uint64_t n = 0; n < 100000; n++) {
        uint64_t d = tb_rate_due_ns(&r, n);
        cr_assert(d >= prev);
        prev = d;
    }
}

Test(tb_rate, latency_counts_from_the_schedule)
{
    struct tb_rate r;
    tb_rate_init(&r, 0, 1000.0);
    /* Due at 10 ms, sent late at 15 ms (every slot was busy), answered at 16 ms: 6 ms. */
    cr_assert_eq(tb_rate_latency_ns(&r, 10000000, 15000000, 16000000), 6000000);
    cr_assert_eq(tb_rate_latency_ns(&r, 10000000, 10000000, 10000000), 0);
}
