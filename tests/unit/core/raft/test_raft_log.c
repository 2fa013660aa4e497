/*
 * core/raft/raft_log.c: the in-memory log (entries array plus reference-counted data
 * blocks): append, truncate (a conflicting suffix, T§3.5), compact (P§7), restore from
 * a snapshot, the fast back-off search by term, and memory failure.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/raft/raft_int.h"
#include "core/util/err.h"
#include "core/util/mem.h"

static struct ts_failing_allocator fa;
static struct raft_log lg;

static void setup(void)
{
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    raft_log_init(&lg, &fa.base);
}

static void teardown(void)
{
    raft_log_free(&lg);
    cr_assert_eq(fa.live_bytes, 0, "leaked %ld bytes", fa.live_bytes);
}

/* Appends one entry whose data is `len` bytes of a pattern derived from its index. */
static int put(raft_term term, uint32_t len)
{
    static uint8_t buf[40000];
    raft_index index = raft_log_last(&lg) + 1;
    for (uint32_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(index * 31 + i);
    }
    struct raft_entry e = {.term = term, .index = index, .data = buf, .len = len};
    return raft_log_append(&lg, &e, 1);
}

static void check_entry(raft_index index, raft_term term, uint32_t len)
{
    const struct raft_entry *e = raft_log_at(&lg, index);
    cr_assert_eq(e->index, index);
    cr_assert_eq(e->term, term);
    cr_assert_eq(e->len, len);
    for (uint32_t i = 0; i < len; i++) {
        cr_assert_eq(e->data[i], (uint8_t)(index * 31 + i), "index %lu byte %u", index, i);
    }
}

TestSuite(raft_log, .init = setup, .fini = teardown);

Test(raft_log, appends_and_reads_back_small_and_large_entries)
{
    uint32_t sizes[] = {0, 1, 64, 4095, 4097, 20000, 64, 0, 3000};
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            cr_assert_eq(put(1 + round / 10, sizes[i]), 0);
        }
    }
    cr_assert_eq(raft_log_last(&lg), 360);
    cr_assert_eq(raft_log_first(&lg), 1);
    for (raft_index i = 1; i <= 360; i++) {
        check_entry(i, 1 + (i - 1) / 90, sizes[(i - 1) % 9]);
    }
    cr_assert_eq(raft_log_term(&lg, 0), 0);
    cr_assert_eq(raft_log_term(&lg, 361), 0, "beyond the end the term is unknown");
    cr_assert(raft_log_memory_bytes(&lg) >= 40 * 31321u, "data is accounted");
}

Test(raft_log, truncate_drops_the_suffix_frees_blocks_and_lowers_stable)
{
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(put(1, 200), 0);
    }
    lg.stable = 1000;
    size_t full = lg.data_bytes;
    raft_log_truncate(&lg, 100);
    cr_assert_eq(raft_log_last(&lg), 100);
    cr_assert_eq(lg.stable, 100, "persisted entries past the cut are no longer stable");
    cr_assert(lg.data_bytes < full / 4, "blocks of dropped entries are freed: %zu of %zu",
              lg.data_bytes, full);
    cr_assert_eq(put(2, 10), 0);
    check_entry(100, 1, 200);
    check_entry(101, 2, 10);
}

Test(raft_log, compact_moves_the_start_and_keeps_the_term_of_the_cut)
{
    for (int i = 0; i < 300; i++) {
        cr_assert_eq(put(1 + i / 100, 100), 0);
    }
    raft_log_compact(&lg, 150);
    cr_assert_eq(raft_log_first(&lg), 151);
    cr_assert_eq(raft_log_term(&lg, 150), 2, "the term at the compaction point is kept");
    cr_assert_eq(raft_log_term(&lg, 149), 0, "before it, unknown");
    check_entry(151, 2, 100);
    /* Appending after compaction reuses the front of the array (memmove, not growth). */
    size_t cap = lg.cap;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(put(4, 8), 0);
    }
    cr_assert_eq(lg.cap, cap);
    check_entry(400, 4, 8);
    raft_log_compact(&lg, 400);
    cr_assert_eq(lg.n, 0);
    cr_assert_eq(raft_log_term(&lg, 400), 4);
    cr_assert_eq(put(5, 1), 0);
    check_entry(401, 5, 1);
}

Test(raft_log, restore_starts_over_after_a_snapshot)
{
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(put(1, 30), 0);
    }
    raft_log_restore(&lg, 1000, 7);
    cr_assert_eq(raft_log_last(&lg), 1000);
    cr_assert_eq(raft_log_first(&lg), 1001);
    cr_assert_eq(lg.stable, 1000);
    cr_assert_eq(raft_log_term(&lg, 1000), 7);
    cr_assert_eq(put(8, 5), 0);
    check_entry(1001, 8, 5);
}

Test(raft_log, conflict_by_term_finds_the_last_index_of_an_older_term)
{
    raft_term terms[] = {1, 1, 1, 2, 2, 4, 4, 5};
    for (size_t i = 0; i < 8; i++) {
        cr_assert_eq(put(terms[i], 4), 0);
    }
    raft_term t;
    cr_assert_eq(raft_log_conflict_by_term(&lg, 8, 3, &t), 5);
    cr_assert_eq(t, 2);
    cr_assert_eq(raft_log_conflict_by_term(&lg, 8, 5, &t), 8);
    cr_assert_eq(t, 5);
    cr_assert_eq(raft_log_conflict_by_term(&lg, 7, 1, &t), 3);
    cr_assert_eq(raft_log_conflict_by_term(&lg, 8, 0, &t), 0, "no entry has term 0");
    cr_assert_eq(raft_log_conflict_by_term(&lg, 12, 3, &t), 12, "past the end: unchanged");
    raft_log_compact(&lg, 4);
    cr_assert_eq(raft_log_conflict_by_term(&lg, 8, 1, &t), 4, "stops at the compaction point");
}

Test(raft_log, out_of_memory_leaves_the_log_unchanged)
{
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(put(1, 100), 0);
    }
    /* A batch whose third entry needs a new block: nothing of it may stay. */
    static uint8_t big[10000];
    struct raft_entry batch[3] = {
        {.term = 2, .index = 11, .data = big, .len = 10},
        {.term = 2, .index = 12, .data = big, .len = 10},
        {.term = 2, .index = 13, .data = big, .len = sizeof big},
    };
    fa.fail_after = fa.calls;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(raft_log_append(&lg, batch, 3), TS_ENOMEM);
        cr_assert_eq(raft_log_last(&lg), 10);
    }
    fa.fail_after = -1;
    cr_assert_eq(raft_log_append(&lg, batch, 3), 0);
    cr_assert_eq(raft_log_last(&lg), 13);
    check_entry(10, 1, 100);
}

Test(raft_log, every_allocation_failure_point_is_survived)
{
    for (long k = 0; k < 60; k++) {
        raft_log_free(&lg);
        ts_failing_allocator_init(&fa, ts_allocator_default(), k);
        raft_log_init(&lg, &fa.base);
        raft_index ok = 0;
        for (int i = 0; i < 200; i++) {
            if (put(1, (uint32_t)(i % 7) * 900) == 0) {
                ok++;
            }
            cr_assert_eq(raft_log_last(&lg), ok);
        }
        fa.fail_after = -1;
        raft_log_truncate(&lg, ok / 2);
        cr_assert_eq(raft_log_last(&lg), ok / 2);
    }
}

Test(raft_log, trim_gives_back_what_a_quiet_log_does_not_use)
{
    for (int i = 0; i < 2000; i++) {
        cr_assert_eq(put(1, 64), 0);
    }
    size_t busy = raft_log_memory_bytes(&lg);
    raft_log_compact(&lg, 1998);
    cr_assert(lg.cur != NULL, "a busy group keeps its current block for reuse");
    raft_log_trim(&lg);
    cr_assert_leq(lg.cap, 16, "arrays shrink to fit the two entries left: %zu", lg.cap);
    check_entry(1999, 1, 64);
    check_entry(2000, 1, 64);
    /* The two entries left still use their (largest size) block. */
    cr_assert(raft_log_memory_bytes(&lg) <= RAFT_BLOCK_BYTES + 2048, "%zu of %zu bytes kept",
              raft_log_memory_bytes(&lg), busy);
    raft_log_compact(&lg, 2000);
    raft_log_trim(&lg);
    cr_assert_eq(lg.data_bytes, 0, "an empty quiet log holds no data block");
    cr_assert_eq(put(2, 10), 0);
    check_entry(2001, 2, 10);
    cr_assert_leq(lg.data_bytes, 512, "and starts again with a small block");
}
