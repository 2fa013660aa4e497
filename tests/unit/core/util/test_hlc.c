/* Tests for core/util/hlc: strict monotonicity under a misbehaving clock, merging remote
 * stamps, logical overflow and the drift guard. */
#include "core/util/hlc.h"

#include "core/util/err.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdint.h>

#define DRIFT_MS 500u
#define T0_MS UINT64_C(1700000000000) /* November 2023 */

Test(hlc, packing_round_trips)
{
    uint64_t s = ts_hlc_pack(T0_MS, 12345);
    cr_assert_eq(ts_hlc_physical_ms(s), T0_MS);
    cr_assert_eq(ts_hlc_logical(s), 12345u);
    cr_assert_eq(ts_hlc_pack(1, 0), UINT64_C(1) << 16);
    cr_assert_eq(ts_hlc_pack(TS_HLC_PHYSICAL_MS_MAX, TS_HLC_LOGICAL_MAX), UINT64_MAX);
    cr_assert_lt(ts_hlc_pack(T0_MS, TS_HLC_LOGICAL_MAX), ts_hlc_pack(T0_MS + 1, 0),
                 "stamps order by physical time first");
}

Test(hlc, follows_an_advancing_clock)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    cr_assert_eq(ts_hlc_now(&c, T0_MS), ts_hlc_pack(T0_MS, 0));
    cr_assert_eq(ts_hlc_now(&c, T0_MS + 5), ts_hlc_pack(T0_MS + 5, 0));
    cr_assert_eq(ts_hlc_last(&c), ts_hlc_pack(T0_MS + 5, 0));
}

Test(hlc, strictly_increasing_when_the_clock_stands_still_goes_back_or_jumps)
{
    /* A clock script: steady, frozen, stepped back by a second, jumped ahead an hour,
     * stepped back to before the start. */
    static const int64_t steps_ms[] = {0,     1,     2,     2,       2,       2,
                                       -1000, -999,  -1000, 3600000, 3600000, 3600001,
                                       -5000, -5000, 0,     1,       7200000};
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    uint64_t prev = 0;
    uint64_t max_physical = 0;
    for (size_t i = 0; i < sizeof(steps_ms) / sizeof(steps_ms[0]); i++) {
        uint64_t phys = (uint64_t)((int64_t)T0_MS + steps_ms[i]);
        max_physical = phys > max_physical ? phys : max_physical;
        for (int k = 0; k < 3; k++) {
            uint64_t s = ts_hlc_now(&c, phys);
            cr_assert_gt(s, prev, "step %zu call %d", i, k);
            cr_assert_geq(ts_hlc_physical_ms(s), phys, "never behind the local clock");
            cr_assert_eq(ts_hlc_physical_ms(s), max_physical,
                         "stays on the largest physical time seen");
            prev = s;
        }
    }
}

Test(hlc, frozen_clock_counts_logically)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    for (uint32_t i = 0; i < 100; i++) {
        uint64_t s = ts_hlc_now(&c, T0_MS);
        cr_assert_eq(s, ts_hlc_pack(T0_MS, i));
    }
}

Test(hlc, logical_overflow_bumps_physical_by_one)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    uint64_t s = 0;
    for (uint32_t i = 0; i <= TS_HLC_LOGICAL_MAX; i++) {
        s = ts_hlc_now(&c, T0_MS);
    }
    cr_assert_eq(s, ts_hlc_pack(T0_MS, TS_HLC_LOGICAL_MAX));
    s = ts_hlc_now(&c, T0_MS);
    cr_assert_eq(s, ts_hlc_pack(T0_MS + 1, 0), "the counter carries into physical time");
    cr_assert_eq(ts_hlc_now(&c, T0_MS), ts_hlc_pack(T0_MS + 1, 1), "ahead of a frozen clock");
    cr_assert_eq(ts_hlc_now(&c, T0_MS + 1), ts_hlc_pack(T0_MS + 1, 2));
    cr_assert_eq(ts_hlc_now(&c, T0_MS + 2), ts_hlc_pack(T0_MS + 2, 0),
                 "falls back to the real clock once it catches up");
}

Test(hlc, update_with_a_remote_stamp_ahead)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    uint64_t local = ts_hlc_now(&c, T0_MS);
    uint64_t remote = ts_hlc_pack(T0_MS + 100, 7);
    uint64_t out = 0;
    cr_assert_eq(ts_hlc_update(&c, remote, T0_MS, &out), 0);
    cr_assert_eq(out, ts_hlc_pack(T0_MS + 100, 8));
    cr_assert_gt(out, local);
    cr_assert_gt(out, remote);
    /* Later local stamps stay above the remote one while the local clock lags. */
    uint64_t next = ts_hlc_now(&c, T0_MS + 1);
    cr_assert_eq(next, ts_hlc_pack(T0_MS + 100, 9));
}

Test(hlc, update_with_a_remote_stamp_behind)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    uint64_t local = ts_hlc_now(&c, T0_MS);
    uint64_t out = 0;
    cr_assert_eq(ts_hlc_update(&c, ts_hlc_pack(T0_MS - 3000, 60000), T0_MS, &out), 0);
    cr_assert_eq(out, local + 1, "an old remote stamp only ticks the counter");
    cr_assert_eq(ts_hlc_update(&c, ts_hlc_pack(T0_MS - 3000, 1), T0_MS + 10, &out), 0);
    cr_assert_eq(out, ts_hlc_pack(T0_MS + 10, 0), "and the local clock wins when it moved");
    cr_assert_eq(ts_hlc_update(&c, out, T0_MS + 10, &out), 0);
    cr_assert_eq(out, ts_hlc_pack(T0_MS + 10, 1), "receiving our own latest stamp");
}

Test(hlc, update_result_exceeds_both_inputs)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    uint64_t rng = 0x12345;
    uint64_t phys = T0_MS;
    for (int i = 0; i < 100000; i++) {
        rng = rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        uint64_t r = rng >> 33;
        phys = phys + (r % 7) - 3; /* wanders both ways */
        uint64_t before = ts_hlc_last(&c);
        if (r % 3 == 0) {
            uint64_t remote = ts_hlc_pack(phys + (r % (2 * DRIFT_MS)) - DRIFT_MS, (uint32_t)r);
            uint64_t out = 0;
            cr_assert_eq(ts_hlc_update(&c, remote, phys, &out), 0);
            cr_assert_gt(out, remote);
            cr_assert_gt(out, before);
        } else {
            cr_assert_gt(ts_hlc_now(&c, phys), before);
        }
    }
}

Test(hlc, drift_guard_rejects_stamps_too_far_ahead)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    uint64_t local = ts_hlc_now(&c, T0_MS);
    uint64_t out = 42;
    uint64_t edge = ts_hlc_pack(T0_MS + DRIFT_MS, TS_HLC_LOGICAL_MAX);
    cr_assert_eq(ts_hlc_update(&c, edge + 1, T0_MS, &out), TS_EINVAL);
    cr_assert_eq(ts_hlc_update(&c, UINT64_MAX, T0_MS, &out), TS_EINVAL);
    cr_assert_eq(out, 42u, "out is untouched on rejection");
    cr_assert_eq(ts_hlc_last(&c), local, "the clock is untouched on rejection");
    cr_assert_eq(ts_hlc_update(&c, edge, T0_MS, &out), 0, "exactly drift_ms_max ahead is fine");
    cr_assert_eq(out, edge + 1);
}

Test(hlc, zero_drift_accepts_only_the_present)
{
    struct ts_hlc c;
    ts_hlc_init(&c, 0, 0);
    uint64_t out = 0;
    cr_assert_eq(ts_hlc_update(&c, ts_hlc_pack(T0_MS, 5), T0_MS, &out), 0);
    cr_assert_eq(ts_hlc_update(&c, ts_hlc_pack(T0_MS + 1, 0), T0_MS, &out), TS_EINVAL);
}

Test(hlc, floor_survives_a_restart_with_the_clock_behind)
{
    struct ts_hlc c;
    uint64_t persisted = ts_hlc_pack(T0_MS + 60000, 3);
    ts_hlc_init(&c, DRIFT_MS, persisted);
    cr_assert_eq(ts_hlc_last(&c), persisted);
    cr_assert_eq(ts_hlc_now(&c, T0_MS), persisted + 1);
}

Test(hlc, physical_time_in_nanoseconds_is_a_programming_error, .signal = SIGABRT)
{
    struct ts_hlc c;
    ts_hlc_init(&c, DRIFT_MS, 0);
    (void)ts_hlc_now(&c, T0_MS * 1000000u);
}

Test(hlc, drift_bound_is_checked_at_init, .signal = SIGABRT)
{
    struct ts_hlc c;
    ts_hlc_init(&c, TS_HLC_DRIFT_MS_MAX + 1, 0);
}
