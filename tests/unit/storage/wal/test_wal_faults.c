/*
 * storage/wal faults (wal.h "Errors"):
 *   - ENOSPC when creating a segment (open, allocate, or a full disk) returns
 *     TS_ENOSPACE from the call that needed it, changes nothing, and the log goes on
 *     once space is back;
 *   - a failed write or fdatasync is sticky: wal_error and every later call return it,
 *     durable_cb is not called for the failed batch, and recovery after a crash has
 *     everything reported durable before;
 *   - staging past inflight_bytes_max returns TS_EFULL until a flush drains it;
 *   - allocation failure at every countdown point, while opening and while appending,
 *     never crashes or leaks (the failing allocator counts live bytes, ASan the rest),
 *     and a call that fails that way leaves no record behind.
 */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/encoding.h"
#include "core/util/err.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEG (64u * 1024u)

/* Durable records in segment 1 until fewer than 2300 bytes are left in it. */
static uint64_t fill_segment_one(struct wt *t, struct wm *m)
{
    wt_expect(t, m, wm_hs_op(1, 3, 1, 0), 0, "hs");
    uint64_t next = 1;
    for (; next <= 60; next++) {
        wt_expect(t, m, wm_append_op(0, next, 1, 1, 1000, next), 0, "fill");
    }
    wt_settle(t, "fill");
    cr_assert_eq(wt_stats(t).segments_created, 1);
    return next;
}

enum space_fault { FAULT_ALLOCATE, FAULT_OPEN, FAULT_CAPACITY };

static void space_fault_case(enum space_fault kind)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 60 + kind, SEG);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t next = fill_segment_one(&t, &m);
    if (kind == FAULT_ALLOCATE) {
        disk_sim_fail(t.sim, DISK_SIM_FAULT_ALLOCATE, ENOSPC, 0, true);
    } else if (kind == FAULT_OPEN) {
        disk_sim_fail(t.sim, DISK_SIM_FAULT_OPEN, ENOSPC, 0, true);
    } else {
        disk_sim_set_capacity(t.sim, SEG + SEG / 2);
    }
    uint64_t staged = wal_staged_lsn(t.w);
    for (uint32_t attempt = 0; attempt < 2; attempt++) {
        struct wm_op op = wm_append_op(0, next, 1, 1, 8000, 1000 + next);
        int rc = wt_do(&t, &m, &op);
        wm_op_free(&op);
        cr_assert_eq(rc, TS_ENOSPACE, "fault %d attempt %u: %s", kind, attempt, ts_errname(rc));
        cr_assert_eq(wal_staged_lsn(t.w), staged, "TS_ENOSPACE staged nothing");
        cr_assert_eq(wal_error(t.w), 0, "TS_ENOSPACE is not sticky");
        cr_assert_not(wt_segment_exists(&t, 2), "the failed segment was removed");
        cr_assert_eq(wt_stats(&t).segments_created, 1);
    }
    wt_check(&t, &m, "after TS_ENOSPACE");
    /* What still fits the tail goes on. */
    wt_expect(&t, &m, wm_hs_op(1, 4, 1, 0), 0, "small record after TS_ENOSPACE");
    wt_settle(&t, "small record");
    disk_sim_fail_clear(t.sim);
    disk_sim_set_capacity(t.sim, 0);
    wt_expect(&t, &m, wm_append_op(0, next, 1, 1, 8000, 2000 + next), 0, "space is back");
    cr_assert_eq(wt_stats(&t).segments_created, 2);
    wt_settle(&t, "space is back");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wt_check_all_data(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_faults, enospc_allocating_a_segment)
{
    space_fault_case(FAULT_ALLOCATE);
}

Test(wal_faults, enospc_creating_a_segment_file)
{
    space_fault_case(FAULT_OPEN);
}

Test(wal_faults, a_full_disk_when_rolling)
{
    space_fault_case(FAULT_CAPACITY);
}

/* Every record-producing call and wal_flush return the sticky error. */
static void expect_sticky(struct wt *t, struct wm *m, int err)
{
    uint64_t staged = wal_staged_lsn(t->w);
    cr_assert_eq(wal_error(t->w), err, "wal_error: %s", ts_errname(wal_error(t->w)));
    struct wm_op ops[] = {
        wm_append_op(0, wm_last(&m->g[0]) + 1, 1, 1, 10, 1),
        wm_hs_op(0, 9, 9, 9),
        wm_simple_op(WM_TRUNCATE, 0, wm_last(&m->g[0]), 0),
        wm_simple_op(WM_COMPACT, 0, m->g[0].snap_index + 1, 0),
        wm_simple_op(WM_SNAPSHOT, 1, 500, 5),
        wm_simple_op(WM_REMOVE, 0, 0, 0),
    };
    for (uint32_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        int rc = wt_do(t, m, &ops[i]);
        cr_assert_eq(rc, err, "op kind %d after the failure: %s", ops[i].kind, ts_errname(rc));
        wm_op_free(&ops[i]);
    }
    cr_assert_eq(wal_flush(t->w), err);
    cr_assert_eq(wal_staged_lsn(t->w), staged, "nothing is staged after the failure");
}

static void io_error_case(uint32_t kind, enum disk_sim_crash_policy policy)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 70 + kind + policy, SEG);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 5, 1, 300, 1), 0, "durable");
    wt_expect(&t, &m, wm_hs_op(0, 1, 1, 3), 0, "durable hs");
    wt_settle(&t, "durable");
    struct wm durable;
    wm_copy(&durable, &m);
    uint64_t reported = t.durable;
    uint32_t calls = t.durable_calls;
    wt_expect(&t, &m, wm_append_op(0, 6, 3, 2, 300, 10), 0, "fails");
    wt_expect(&t, &m, wm_hs_op(1, 2, 2, 0), 0, "fails hs");
    uint64_t failed_end = wal_staged_lsn(t.w);
    disk_sim_fail(t.sim, kind, EIO, 0, false);
    cr_assert_eq(wal_flush(t.w), 0, "the failure comes with the completion");
    wt_run(&t);
    cr_assert_eq(t.durable_calls, calls, "durable_cb is not called for the failed batch");
    cr_assert_eq(wal_durable_lsn(t.w), reported);
    expect_sticky(&t, &m, -EIO);
    wt_run(&t);
    cr_assert_eq(t.durable_calls, calls);
    /* The shard restarts: power loss, then recovery from what is on disk. */
    wt_crash(&t, policy, 0);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t end = wal_durable_lsn(t.w);
    if (end == reported) {
        wt_check(&t, &durable, "recovered: everything reported durable, not the failed batch");
    } else {
        /* A failed fdatasync after a write the crash kept: the whole batch is there. */
        cr_assert(kind == DISK_SIM_FAULT_SYNC && policy == DISK_SIM_CRASH_KEEP && end == failed_end,
                  "recovered end %" PRIu64 " (reported %" PRIu64 ", failed batch ends %" PRIu64 ")",
                  end, reported, failed_end);
        wt_check(&t, &m, "recovered with the failed batch kept whole");
    }
    wt_check_all_data(&t, end == reported ? &durable : &m, "recovered");
    wt_expect(&t, &durable, wm_hs_op(1, 7, 7, 7), 0, "the log goes on");
    wm_fini(&durable);
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_faults, eio_on_a_write_is_sticky)
{
    io_error_case(DISK_SIM_FAULT_WRITE, DISK_SIM_CRASH_DROP);
    io_error_case(DISK_SIM_FAULT_WRITE, DISK_SIM_CRASH_KEEP);
}

Test(wal_faults, eio_on_a_sync_is_sticky)
{
    io_error_case(DISK_SIM_FAULT_SYNC, DISK_SIM_CRASH_DROP);
    io_error_case(DISK_SIM_FAULT_SYNC, DISK_SIM_CRASH_KEEP);
}

Test(wal_faults, staging_past_the_inflight_limit_is_efull)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 80, 1024 * 1024);
    t.cfg.inflight_bytes_max = 8192;
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t next = 1;
    int rc = 0;
    for (uint32_t i = 0; i < 20 && rc == 0; i++) {
        struct wm_op op = wm_append_op(0, next, 1, 1, 1000, next);
        rc = wt_do(&t, &m, &op);
        if (rc == 0) {
            cr_assert_eq(wm_apply(&m, &op, UINT32_MAX), 0);
            next++;
        } else {
            cr_assert_eq(op.post_lsn, op.pre_lsn, "TS_EFULL staged nothing");
        }
        wm_op_free(&op);
    }
    cr_assert_eq(rc, TS_EFULL, "8 KiB in flight holds fewer than 20 KiB of entries");
    cr_assert(next >= 6 && next <= 9, "%" PRIu64 " entries fit 8 KiB", next - 1);
    wt_check(&t, &m, "after TS_EFULL");
    /* A multi-entry append stages the entries that fit, and says so. */
    wt_settle(&t, "drain");
    struct wm_op op = wm_append_op(0, next, 12, 1, 1000, 100 + next);
    rc = wt_do(&t, &m, &op);
    cr_assert_eq(rc, TS_EFULL);
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, 1, &info), 0);
    uint32_t staged = (uint32_t)(info.last_index - (next - 1));
    cr_assert(staged > 0 && staged < 12, "%u of 12 entries staged", staged);
    cr_assert_eq(wm_apply(&m, &op, staged), 0);
    wt_check(&t, &m, "partial append");
    /* The caller flushes, runs the disk and retries from the first entry not staged. */
    wt_settle(&t, "drain");
    struct wm_op rest = wm_append_op(0, next + staged, 12 - staged, 1, 1000, 100 + next + staged);
    for (uint32_t i = 0; i < rest.n; i++) {
        rest.ents[i] = op.ents[staged + i];
    }
    for (uint32_t i = 0; i < 4 && rest.n > 0; i++) {
        rc = wt_do(&t, &m, &rest);
        cr_assert(rc == 0 || rc == TS_EFULL, "%s", ts_errname(rc));
        cr_assert_eq(wal_group_info(t.w, 1, &info), 0);
        uint32_t done = (uint32_t)(info.last_index - (rest.index - 1));
        cr_assert_eq(wm_apply(&m, &rest, done), 0);
        memmove(rest.ents, rest.ents + done, (rest.n - done) * sizeof(*rest.ents));
        rest.index += done;
        rest.n -= done;
        wt_settle(&t, "drain");
    }
    cr_assert_eq(rest.n, 0, "the retries staged everything");
    wm_op_free(&rest);
    wm_op_free(&op);
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wt_check_all_data(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

/* ---- Allocation failure ------------------------------------------------------------- */

/* A log with three segments, states, compaction and a torn tail: recovery allocates in
 * every path it has (segment list, read buffer, groups, entries, zeroing the cut). */
static void build_recovery_log(struct wt *t, struct wm *m)
{
    wt_init(t, 90, SEG);
    wm_init(m, 6, 1);
    cr_assert_eq(wt_open(t), 0, "%s", t->errmsg);
    uint64_t next[6] = {1, 1, 1, 1, 1, 1};
    for (uint32_t i = 0; wt_stats(t).segments_created < 3; i++) {
        uint32_t s = i % 6;
        wt_expect(t, m, wm_append_op(s, next[s], 2, 1, 700, i * 10), 0, "build");
        next[s] += 2;
        if (i % 7 == 0) {
            wt_expect(t, m, wm_hs_op(s, i, 1, 0), 0, "build hs");
        }
        if (i % 11 == 0 && next[s] > 3) {
            wt_expect(t, m, wm_simple_op(WM_COMPACT, s, next[s] - 3, 0), 0, "build compact");
        }
        wt_settle(t, "build");
    }
    /* A batch torn in half at the end. */
    struct wm_op op = wm_append_op(0, next[0], 3, 1, 900, 999);
    cr_assert_eq(wt_do(t, m, &op), 0);
    wm_op_free(&op);
    cr_assert_eq(wal_flush(t->w), 0);
    cr_assert(disk_sim_step(t->sim));
    wt_crash(t, DISK_SIM_CRASH_TEAR, 1500);
}

Test(wal_faults, allocation_failure_while_opening_never_crashes_or_leaks, .timeout = 120)
{
    struct wt t;
    struct wm m;
    build_recovery_log(&t, &m);
    struct ts_failing_allocator fa;
    long k = 0;
    for (;; k++) {
        cr_assert(k < 100000, "wal_open never succeeds");
        ts_failing_allocator_init(&fa, ts_allocator_default(), k);
        t.alloc = &fa.base;
        int rc = wt_open(&t);
        if (rc != 0) {
            cr_assert_eq(rc, TS_ENOMEM, "fail_after %ld: %s (%s)", k, ts_errname(rc), t.errmsg);
            cr_assert_eq(fa.live_bytes, 0, "fail_after %ld: a failed open leaked %ld bytes", k,
                         fa.live_bytes);
            continue;
        }
        wt_check(&t, &m, "opened under a failing allocator");
        wt_close(&t);
        cr_assert_eq(fa.live_bytes, 0, "fail_after %ld: close leaked %ld bytes", k, fa.live_bytes);
        if (fa.failures == 0) {
            break;
        }
    }
    fprintf(stderr, "[wal_faults] open: allocation failure at each of %ld points\n", k);
    t.alloc = &t.arena.base;
    wm_fini(&m);
    wt_fini(&t);
}

/* A workload driven by the WAL's own answers (a failed call may leave a group short of
 * what a model would expect), tolerating TS_ENOMEM anywhere. */
static void failing_workload(struct wt *t, struct ts_rand *r)
{
    static uint8_t data[2000];
    for (uint32_t op = 0; op < 300; op++) {
        uint64_t g = 1 + ts_rand_below(r, 6);
        struct wal_group_info info;
        bool exists = wal_group_info(t->w, g, &info) == 0;
        uint64_t last = exists ? info.last_index : 0;
        uint32_t what = (uint32_t)ts_rand_below(r, 10);
        int rc;
        if (what < 6 || !exists) {
            struct wal_entry e[2] = {
                {.term = 1,
                 .index = last + 1,
                 .data = data,
                 .len = (uint32_t)ts_rand_below(r, 2000)},
                {.term = 1, .index = last + 2, .data = data, .len = 100},
            };
            rc = wal_append(t->w, g, e, 1 + (uint32_t)ts_rand_below(r, 2));
        } else if (what < 8) {
            struct wal_hard_state hs = {.term = op, .vote = 1, .commit = 0};
            rc = wal_save_hard_state(t->w, g, &hs);
        } else if (last > info.snap_index) {
            rc = wal_compact(t->w, g, info.snap_index + 1);
        } else {
            rc = wal_flush(t->w);
        }
        cr_assert(rc == 0 || rc == TS_ENOMEM, "op %u: %s", op, ts_errname(rc));
        if (op % 10 == 9 && wal_flush(t->w) == 0) {
            wt_run(t);
        }
        exists = wal_group_info(t->w, g, &info) == 0;
        last = exists ? info.last_index : 0;
        if (exists && last > info.snap_index && ts_rand_chance(r, 1, 4)) {
            uint8_t buf[4000];
            struct wal_entry out[1];
            struct wal_read_req req = {.group = g,
                                       .lo = last,
                                       .hi = last + 1,
                                       .buf = buf,
                                       .buf_bytes = sizeof(buf),
                                       .entries = out};
            if (wal_read(t->w, &req) == 0) {
                wt_run(t);
            }
            cr_assert(req.res == 0 || req.res == TS_ENOMEM, "read: %s", ts_errname(req.res));
        }
    }
}

Test(wal_faults, allocation_failure_while_appending_never_crashes_or_leaks, .timeout = 120)
{
    long k = 0;
    for (;; k++) {
        cr_assert(k < 100000, "the workload never completes");
        struct wt t;
        wt_init(&t, 91, SEG);
        t.cfg.cache_bytes = 4096; /* reads go to disk and allocate */
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
        t.alloc = &fa.base;
        cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
        fa.fail_after = fa.calls + k;
        struct ts_rand r;
        ts_rand_seed(&r, 91);
        failing_workload(&t, &r);
        fa.fail_after = -1;
        long failures = fa.failures;
        wt_run(&t);
        wt_close(&t);
        cr_assert_eq(fa.live_bytes, 0, "fail_after %ld: leaked %ld bytes", k, fa.live_bytes);
        t.alloc = &t.arena.base;
        wt_fini(&t);
        if (failures == 0) {
            break;
        }
    }
    fprintf(stderr, "[wal_faults] appends: allocation failure at each of %ld points\n", k);
}

/*
 * An append that fails with TS_ENOMEM must not leave its record staged: the group's
 * in-memory log does not have the entry, so the log on disk must not either (wal_int.h:
 * in-memory state equals the replay of every staged record). Here the 17th entry needs
 * the group's entry index to grow, and that allocation fails after the record was staged.
 */
Test(wal_faults, an_append_that_fails_for_memory_leaves_no_record)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 92, 1024 * 1024);
    wm_init(&m, 1, 1);
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    t.alloc = &fa.base;
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    for (uint64_t i = 1; i <= 16; i++) {
        wt_expect(&t, &m, wm_append_op(0, i, 1, 1, 10, i), 0, "sixteen");
    }
    wt_settle(&t, "sixteen");
    fa.fail_after = fa.calls; /* the next allocation fails */
    struct wm_op op = wm_append_op(0, 17, 1, 1, 10, 17);
    int rc = wt_do(&t, &m, &op);
    wm_op_free(&op);
    fa.fail_after = -1;
    cr_assert_eq(rc, TS_ENOMEM, "%s", ts_errname(rc));
    cr_assert_eq(op.post_lsn, op.pre_lsn, "seed 92: the failed append staged %" PRIu64 " bytes",
                 op.post_lsn - op.pre_lsn);
    wt_check(&t, &m, "after TS_ENOMEM");
    wt_settle(&t, "after TS_ENOMEM");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "seed 92: reopened after a failed append");
    wt_close(&t);
    cr_assert_eq(fa.live_bytes, 0);
    t.alloc = &t.arena.base;
    wm_fini(&m);
    wt_fini(&t);
}
