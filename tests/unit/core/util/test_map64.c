/* core/util/map64: random operations against a reference array, growth, failure. */
#include "core/util/err.h"
#include "core/util/map64.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>

#define KEYS 512

Test(map64, matches_a_reference_under_random_operations)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        struct ts_map64 m;
        ts_map64_init(&m, ts_allocator_default());
        static uintptr_t ref[KEYS];
        memset(ref, 0, sizeof(ref));
        uint32_t count = 0;
        for (int op = 0; op < 20000; op++) {
            /* Keys clustered (0..KEYS) and spread (multiples of 2^40) to collide probes. */
            uint64_t k = ts_rand_below(&r, KEYS);
            uint64_t key = (k & 1) ? k : k << 40;
            if (ts_rand_chance(&r, 3, 5)) {
                uintptr_t v = (uintptr_t)ts_rand_below(&r, 1000) + 1;
                cr_assert_eq(ts_map64_put(&m, key, (void *)v), 0);
                count += ref[k] == 0;
                ref[k] = v;
            } else {
                void *got = ts_map64_del(&m, key);
                cr_assert_eq((uintptr_t)got, ref[k], "seed %lu op %d", (unsigned long)seed, op);
                count -= ref[k] != 0;
                ref[k] = 0;
            }
            cr_assert_eq(m.count, count);
        }
        for (uint64_t k = 0; k < KEYS; k++) {
            uint64_t key = (k & 1) ? k : k << 40;
            cr_assert_eq((uintptr_t)ts_map64_get(&m, key), ref[k], "seed %lu key %lu",
                         (unsigned long)seed, (unsigned long)k);
        }
        uint32_t pos = 0, seen = 0;
        uint64_t key;
        void *value;
        while (ts_map64_next(&m, &pos, &key, &value)) {
            seen++;
        }
        cr_assert_eq(seen, count);
        ts_map64_fini(&m);
    }
}

Test(map64, zero_key_and_replacement)
{
    struct ts_map64 m;
    ts_map64_init(&m, ts_allocator_default());
    cr_assert_null(ts_map64_get(&m, 0));
    cr_assert_eq(ts_map64_put(&m, 0, (void *)1), 0);
    cr_assert_eq(ts_map64_put(&m, 0, (void *)2), 0);
    cr_assert_eq(m.count, 1);
    cr_assert_eq((uintptr_t)ts_map64_get(&m, 0), 2);
    cr_assert_null(ts_map64_del(&m, 5));
    ts_map64_fini(&m);
}

Test(map64, growth_failure_leaves_the_map_unchanged)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), 1);
    struct ts_map64 m;
    ts_map64_init(&m, &fa.base);
    uint64_t k = 0;
    while (ts_map64_put(&m, k, (void *)(k + 1)) == 0) {
        k++;
    }
    cr_assert_eq(k, 14, "16 slots hold 14 at 7/8");
    cr_assert_eq(ts_map64_put(&m, k, (void *)1), TS_ENOMEM);
    cr_assert_eq(m.count, 14);
    for (uint64_t i = 0; i < k; i++) {
        cr_assert_eq((uintptr_t)ts_map64_get(&m, i), i + 1);
    }
    ts_map64_fini(&m);
    cr_assert_eq(fa.live_bytes, 0);
}
