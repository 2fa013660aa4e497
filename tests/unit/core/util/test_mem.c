/* Tests for core/util/mem: the default allocator and the failing test allocator. */
#include "core/util/mem.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <string.h>

Test(mem, default_allocator_allocates_grows_and_frees)
{
    const struct ts_allocator *a = ts_allocator_default();
    cr_assert_not_null(a);
    cr_assert_eq(a, ts_allocator_default(), "one immutable instance");
    char *p = ts_alloc(a, 16);
    cr_assert_not_null(p);
    memcpy(p, "0123456789abcdef", 16);
    char *q = ts_realloc(a, p, 16, 4096);
    cr_assert_not_null(q);
    cr_assert(memcmp(q, "0123456789abcdef", 16) == 0, "realloc keeps the contents");
    ts_free(a, q, 4096);
    ts_free(a, NULL, 0); /* no-op */
}

Test(mem, failing_allocator_fails_at_the_countdown)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), 3);
    void *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = ts_alloc(&fa.base, 8);
        cr_assert_not_null(p[i], "call %d is before the countdown", i);
    }
    cr_assert_eq(fa.calls, 3);
    cr_assert_eq(fa.failures, 0);
    cr_assert_null(ts_alloc(&fa.base, 8));
    cr_assert_null(ts_alloc(&fa.base, 8));
    cr_assert_eq(fa.calls, 3, "failed calls are not counted as calls");
    cr_assert_eq(fa.failures, 2);
    cr_assert_eq(fa.live_bytes, 24);
    for (int i = 0; i < 3; i++) {
        ts_free(&fa.base, p[i], 8);
    }
    cr_assert_eq(fa.live_bytes, 0);
}

Test(mem, failing_allocator_with_zero_countdown_fails_at_once)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), 0);
    cr_assert_null(ts_alloc(&fa.base, 1));
    cr_assert_null(ts_realloc(&fa.base, NULL, 0, 1));
    cr_assert_eq(fa.failures, 2);
    cr_assert_eq(fa.live_bytes, 0);
}

Test(mem, failing_allocator_never_fails_below_zero)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    for (int i = 0; i < 1000; i++) {
        void *p = ts_alloc(&fa.base, 32);
        cr_assert_not_null(p);
        ts_free(&fa.base, p, 32);
    }
    cr_assert_eq(fa.calls, 1000);
    cr_assert_eq(fa.failures, 0);
    cr_assert_eq(fa.live_bytes, 0);
}

Test(mem, failing_allocator_tracks_live_bytes_through_realloc)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), 3);
    char *p = ts_realloc(&fa.base, NULL, 0, 10); /* realloc of NULL allocates */
    cr_assert_not_null(p);
    cr_assert_eq(fa.live_bytes, 10);
    memset(p, 'x', 10);
    p = ts_realloc(&fa.base, p, 10, 100);
    cr_assert_not_null(p);
    cr_assert_eq(fa.live_bytes, 100);
    p = ts_realloc(&fa.base, p, 100, 40);
    cr_assert_not_null(p);
    cr_assert_eq(fa.live_bytes, 40);
    cr_assert_eq(p[9], 'x');
    /* The countdown is reached: the failed realloc leaves p valid and owned by us. */
    cr_assert_null(ts_realloc(&fa.base, p, 40, 80));
    cr_assert_eq(fa.live_bytes, 40);
    cr_assert_eq(p[0], 'x');
    ts_free(&fa.base, p, 40);
    cr_assert_eq(fa.live_bytes, 0);
}

Test(mem, freeing_more_than_is_live_aborts, .signal = SIGABRT)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    void *p = ts_alloc(&fa.base, 8);
    cr_assert_not_null(p);
    ts_free(&fa.base, p, 16); /* wrong size: live_bytes would go negative */
}

Test(mem, init_rejects_a_null_inner_allocator, .signal = SIGABRT)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, NULL, 0);
}
