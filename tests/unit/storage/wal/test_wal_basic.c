/*
 * storage/wal basics: opening, appending for several groups, durability reports, reads
 * from the cache and from disk, the group operations (implied truncation, truncate,
 * compact, snapshot, remove), argument errors, and group commit. Each test follows one
 * promise of wal.h on the simulated disk.
 */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/err.h"
#include "core/util/limits.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SEG_BYTES (1024u * 1024u)

/* Groups 0..2 (ids 1..3): entries and hard states, flushed and made durable. */
static void fill_three_groups(struct wt *t, struct wm *m)
{
    wt_expect(t, m, wm_append_op(0, 1, 5, 1, 100, 1000), 0, "fill");
    wt_expect(t, m, wm_append_op(1, 1, 3, 2, 0, 2000), 0, "fill");
    wt_expect(t, m, wm_append_op(2, 1, 7, 1, 700, 3000), 0, "fill");
    wt_expect(t, m, wm_hs_op(0, 3, 1, 4), 0, "fill");
    wt_expect(t, m, wm_hs_op(1, 2, 2, 1), 0, "fill");
    wt_expect(t, m, wm_append_op(0, 6, 2, 3, 33, 1100), 0, "fill");
}

Test(wal_basic, open_of_an_empty_dir_creates_segment_one)
{
    struct wt t;
    wt_init(&t, 1, SEG_BYTES);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t seqs[4];
    cr_assert_eq(wt_segments(&t, seqs, 4), 1);
    cr_assert_eq(seqs[0], 1);
    char path[64];
    wt_segment_path(1, path, sizeof(path));
    uint32_t file;
    uint64_t size;
    cr_assert_eq(disk_open(t.disk, path, DISK_OPEN_READONLY, &file), 0);
    cr_assert_eq(disk_size(t.disk, file, &size), 0);
    cr_assert_eq(size, SEG_BYTES, "segments are preallocated");
    cr_assert_eq(disk_close(t.disk, file), 0);
    cr_assert_eq(wal_staged_lsn(t.w), 0);
    cr_assert_eq(wal_durable_lsn(t.w), 0);
    cr_assert(wal_idle(t.w));
    cr_assert_eq(wal_error(t.w), 0);
    struct wal_stats st = wt_stats(&t);
    cr_assert_eq(st.segments, 1);
    cr_assert_eq(st.groups, 0);
    cr_assert(t.reports >= 1, "recovery reports what it found");
    wt_close(&t);
    /* An empty segment 1 reopens as an empty log. */
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    cr_assert_eq(wal_staged_lsn(t.w), 0);
    cr_assert_eq(wt_segments(&t, seqs, 4), 1);
    wt_fini(&t);
}

Test(wal_basic, default_segment_size_and_bad_configurations)
{
    struct wt t;
    wt_init(&t, 2, 0);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    char path[64];
    wt_segment_path(1, path, sizeof(path));
    uint32_t file;
    uint64_t size;
    cr_assert_eq(disk_open(t.disk, path, DISK_OPEN_READONLY, &file), 0);
    cr_assert_eq(disk_size(t.disk, file, &size), 0);
    cr_assert_eq(size, TS_WAL_SEGMENT_BYTES_DEFAULT);
    cr_assert_eq(disk_close(t.disk, file), 0);
    wt_close(&t);
    t.cfg.segment_bytes = TS_WAL_SEGMENT_BYTES_MIN - 4096;
    cr_assert_eq(wt_open(&t), TS_EINVAL, "below the minimum");
    t.cfg.segment_bytes = TS_WAL_SEGMENT_BYTES_MIN + 8;
    cr_assert_eq(wt_open(&t), TS_EINVAL, "not a multiple of 4096");
    cr_assert_neq(t.errmsg[0], '\0', "a failed open explains itself");
    wt_fini(&t);
}

Test(wal_basic, appends_become_durable_and_survive_a_reopen)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 3, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    fill_three_groups(&t, &m);
    wt_check(&t, &m, "staged");
    uint64_t staged = wal_staged_lsn(t.w);
    cr_assert(staged > 0);
    cr_assert_not(wal_idle(t.w));
    cr_assert_eq(wal_durable_lsn(t.w), 0, "nothing is durable before the disk runs");
    cr_assert_eq(wal_flush(t.w), 0);
    cr_assert_eq(t.durable_calls, 0, "durable_cb runs only inside disk_run");
    wt_run(&t);
    cr_assert_eq(t.durable_calls, 1, "one batch, one report");
    cr_assert_eq(t.durable, staged, "durable_cb reports the new durable LSN");
    cr_assert_eq(wal_durable_lsn(t.w), staged);
    cr_assert(wal_idle(t.w));
    struct wal_stats st = wt_stats(&t);
    cr_assert_eq(st.batches_written, 1);
    cr_assert_eq(st.records_written, 7 + 3 + 7 + 2, "one record per entry and hard state");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    cr_assert_eq(wal_durable_lsn(t.w), staged, "the log reopens where it ended");
    cr_assert_eq(wal_staged_lsn(t.w), staged);
    wt_check(&t, &m, "reopened");
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, wm_id(&m, 2), &info), 0);
    cr_assert_not(info.has_hard_state, "a group without a hard state has none after recovery");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_basic, reads_come_from_the_cache)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 4, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    fill_three_groups(&t, &m);
    /* Staged entries are readable at once, before they are durable. */
    wt_check_read(&t, &m, 2, 1, 8, "staged");
    wt_settle(&t, "cache");
    struct wal_stats before = wt_stats(&t);
    uint8_t buf[4096];
    struct wal_entry e[8];
    struct wal_read_req req = {.group = wm_id(&m, 0),
                               .lo = 1,
                               .hi = 8,
                               .buf = buf,
                               .buf_bytes = sizeof(buf),
                               .entries = e};
    cr_assert_eq(wal_read(t.w, &req), 1, "everything is in the cache: completes at once");
    cr_assert_eq(req.res, 0);
    cr_assert_eq(req.count, 7);
    struct wal_stats after = wt_stats(&t);
    cr_assert_eq(after.cache_hits, before.cache_hits + 7);
    cr_assert_eq(after.cache_misses, before.cache_misses);
    wt_check_all_data(&t, &m, "cache");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_basic, reads_return_only_what_fits_the_buffer)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 5, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    fill_three_groups(&t, &m);
    uint8_t buf[2000];
    struct wal_entry e[7];
    struct wal_read_req req = {
        .group = wm_id(&m, 2), .lo = 1, .hi = 8, .buf = buf, .buf_bytes = 1500, .entries = e};
    cr_assert_eq(wal_read(t.w, &req), 1);
    cr_assert_eq(req.res, 0);
    cr_assert_eq(req.count, 2, "two 700-byte entries fit 1500 bytes");
    req.buf_bytes = 500;
    cr_assert_eq(wal_read(t.w, &req), 1);
    cr_assert_eq(req.res, TS_ETOOBIG, "an entry larger than the buffer");
    cr_assert_eq(req.count, 0);
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * After a reopen, entries must be read back from the segment files. The cache of the
 * last cache_bytes of the log is not refilled by recovery, so it must not serve them.
 */
Test(wal_basic, reads_after_a_reopen_return_the_data)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 6, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    fill_three_groups(&t, &m);
    wt_settle(&t, "before reopen");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check_read(&t, &m, 0, 1, 2, "first entry of group 1 after reopen");
    wt_check_all_data(&t, &m, "after reopen");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_basic, reads_outside_the_cache_come_from_disk)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 7, SEG_BYTES);
    t.cfg.cache_bytes = 4096;
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    for (uint64_t i = 1; i <= 20; i++) {
        wt_expect(&t, &m, wm_append_op(0, i, 1, 1, 1000, 100 * i), 0, "fill");
    }
    wt_settle(&t, "fill");
    struct wal_stats before = wt_stats(&t);
    uint8_t buf[1000];
    struct wal_entry e[1];
    /* No callback: the test runs the disk until nothing is in flight. */
    struct wal_read_req req = {
        .group = 1, .lo = 1, .hi = 2, .buf = buf, .buf_bytes = 1000, .entries = e};
    cr_assert_eq(wal_read(t.w, &req), 0, "entry 1 left the 4 KiB cache: read from disk");
    cr_assert_eq(wt_stats(&t).cache_misses, before.cache_misses + 1);
    wt_run(&t);
    cr_assert_eq(req.res, 0, "%s", ts_errname(req.res));
    cr_assert_eq(req.count, 1);
    wt_check_read(&t, &m, 0, 1, 17, "from disk");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check_read(&t, &m, 0, 1, 15, "from disk after reopen");
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * A staged entry is readable until it is compacted (wal_read has no "not yet written"
 * error). With a cache smaller than what is staged, the oldest staged entries are
 * neither in the cache nor on disk yet.
 */
Test(wal_basic, staged_entries_older_than_the_cache_are_readable)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 8, SEG_BYTES);
    t.cfg.cache_bytes = 4096;
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    for (uint64_t i = 1; i <= 3; i++) {
        wt_expect(&t, &m, wm_append_op(0, i, 1, 1, 2000, 100 * i), 0, "stage");
    }
    wt_check_read(&t, &m, 0, 1, 2, "entry 1, staged, not in the cache");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_basic, append_at_or_below_last_truncates_first)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 9, SEG_BYTES);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 5, 1, 10, 100), 0, "append");
    wt_settle(&t, "append");
    /* A Raft conflict at 3: entries 3.. are replaced by two entries of term 2. */
    wt_expect(&t, &m, wm_append_op(0, 3, 2, 2, 20, 200), 0, "conflict");
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, 1, &info), 0);
    cr_assert_eq(info.last_index, 4);
    uint64_t term;
    cr_assert_eq(wal_term(t.w, 1, 2, &term), 0);
    cr_assert_eq(term, 1);
    cr_assert_eq(wal_term(t.w, 1, 3, &term), 0);
    cr_assert_eq(term, 2);
    cr_assert_eq(wal_term(t.w, 1, 5, &term), TS_ENOTFOUND);
    wt_check_all_data(&t, &m, "after conflict");
    /* Replacing the very first entry. */
    wt_expect(&t, &m, wm_append_op(0, 1, 1, 3, 5, 300), 0, "replace first");
    wt_settle(&t, "conflicts");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_basic, truncate_compact_snapshot_and_remove)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 10, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 10, 1, 50, 100), 0, "g1");
    wt_expect(&t, &m, wm_append_op(1, 1, 10, 1, 50, 200), 0, "g2");
    wt_expect(&t, &m, wm_append_op(2, 1, 4, 1, 50, 300), 0, "g3");
    wt_expect(&t, &m, wm_hs_op(2, 7, 3, 2), 0, "g3 hs");
    /* Truncate drops entries >= index; past last it changes nothing. */
    wt_expect(&t, &m, wm_simple_op(WM_TRUNCATE, 0, 8, 0), 0, "truncate");
    wt_expect(&t, &m, wm_simple_op(WM_TRUNCATE, 0, 50, 0), 0, "truncate past last");
    /* Compact: entries <= index go, the term of index is kept as snap_term. */
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, 4, 0), 0, "compact");
    uint64_t term;
    cr_assert_eq(wal_term(t.w, 1, 4, &term), 0, "index == snap_index gives snap_term");
    cr_assert_eq(term, 1);
    cr_assert_eq(wal_term(t.w, 1, 3, &term), TS_ECOMPACTED);
    /* Compacting everything leaves an empty log at last. */
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, 7, 0), 0, "compact all");
    wt_expect(&t, &m, wm_append_op(0, 8, 2, 2, 50, 400), 0, "append after compact");
    /* A snapshot replaces the log: empty, restarting after index. */
    wt_expect(&t, &m, wm_simple_op(WM_SNAPSHOT, 1, 40, 5), 0, "snapshot");
    cr_assert_eq(wal_term(t.w, 2, 40, &term), 0);
    cr_assert_eq(term, 5);
    wt_expect(&t, &m, wm_append_op(1, 41, 2, 5, 50, 500), 0, "append after snapshot");
    /* A snapshot creates an unknown group. */
    wt_expect(&t, &m, wm_simple_op(WM_SNAPSHOT, 3, 9, 2), 0, "snapshot of a new group");
    /* Remove: the group is gone, and can come back from scratch. */
    wt_expect(&t, &m, wm_simple_op(WM_REMOVE, 2, 0, 0), 0, "remove");
    wt_expect(&t, &m, wm_simple_op(WM_REMOVE, 2, 0, 0), TS_ENOTFOUND, "remove twice");
    wt_check(&t, &m, "live");
    wt_settle(&t, "ops");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wt_expect(&t, &m, wm_append_op(2, 1, 1, 9, 50, 600), 0, "recreate");
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, 3, &info), 0);
    cr_assert_not(info.has_hard_state, "a recreated group starts without a hard state");
    wt_settle(&t, "recreate");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened twice");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_basic, argument_errors_change_nothing)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 11, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 6, 1, 10, 100), 0, "g1");
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, 2, 0), 0, "compact");
    wt_expect(&t, &m, wm_append_op(0, 8, 1, 1, 10, 0), TS_EINVAL, "gap after last");
    wt_expect(&t, &m, wm_append_op(0, 2, 1, 1, 10, 0), TS_EINVAL, "at snap_index");
    wt_expect(&t, &m, wm_append_op(0, 1, 1, 1, 10, 0), TS_EINVAL, "below snap_index");
    wt_expect(&t, &m, wm_append_op(1, 2, 1, 1, 10, 0), TS_EINVAL, "new group must start at 1");
    wt_expect(&t, &m, wm_simple_op(WM_TRUNCATE, 0, 2, 0), TS_EINVAL, "truncate at snap");
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, 2, 0), TS_EINVAL, "compact at snap");
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, 7, 0), TS_EINVAL, "compact past last");
    wt_expect(&t, &m, wm_simple_op(WM_SNAPSHOT, 0, 2, 1), TS_EINVAL, "snapshot at snap");
    wt_expect(&t, &m, wm_simple_op(WM_TRUNCATE, 1, 1, 0), TS_ENOTFOUND, "truncate unknown");
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 1, 1, 0), TS_ENOTFOUND, "compact unknown");
    wt_expect(&t, &m, wm_simple_op(WM_REMOVE, 1, 0, 0), TS_ENOTFOUND, "remove unknown");
    /* Entries that are not contiguous. */
    uint64_t staged = wal_staged_lsn(t.w);
    struct wal_entry e[2] = {{.term = 1, .index = 7, .data = "a", .len = 1},
                             {.term = 1, .index = 9, .data = "b", .len = 1}};
    cr_assert_eq(wal_append(t.w, 1, e, 2), TS_EINVAL);
    e[0].len = TS_WAL_ENTRY_BYTES_MAX + 1;
    e[1].index = 8;
    cr_assert_eq(wal_append(t.w, 1, e, 2), TS_ETOOBIG, "an entry over TS_WAL_ENTRY_BYTES_MAX");
    cr_assert_eq(wal_staged_lsn(t.w), staged, "rejected appends stage nothing");
    /* Queries. */
    uint64_t term;
    cr_assert_eq(wal_term(t.w, 2, 1, &term), TS_ENOTFOUND, "unknown group");
    cr_assert_eq(wal_term(t.w, 1, 7, &term), TS_ENOTFOUND, "past last");
    cr_assert_eq(wal_term(t.w, 1, 1, &term), TS_ECOMPACTED, "below snap_index");
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, 2, &info), TS_ENOTFOUND);
    uint8_t buf[64];
    struct wal_entry out[8];
    struct wal_read_req req = {
        .group = 1, .lo = 2, .hi = 4, .buf = buf, .buf_bytes = 64, .entries = out};
    cr_assert_eq(wal_read(t.w, &req), 1);
    cr_assert_eq(req.res, TS_ECOMPACTED, "read at snap_index");
    req.lo = 3;
    req.hi = 8;
    cr_assert_eq(wal_read(t.w, &req), 1);
    cr_assert_eq(req.res, TS_EINVAL, "read past last + 1");
    req.group = 2;
    req.hi = 4;
    cr_assert_eq(wal_read(t.w, &req), 1);
    cr_assert_eq(req.res, TS_ENOTFOUND, "read of an unknown group");
    wt_check(&t, &m, "after errors");
    wt_settle(&t, "errors");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

/* wal.h: when a write is in flight, what is staged keeps growing until it completes,
 * then goes as one batch. disk_sim_step holds the first write between its two steps. */
Test(wal_basic, records_staged_during_a_write_go_as_one_batch)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 12, SEG_BYTES);
    wm_init(&m, 4, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 1, 1, 10, 100), 0, "first");
    cr_assert_eq(wal_flush(t.w), 0);
    uint64_t first_end = wal_staged_lsn(t.w);
    cr_assert_eq(disk_inflight(t.disk), 1);
    cr_assert(disk_sim_step(t.sim), "the write");
    cr_assert_eq(disk_inflight(t.disk), 1, "written, not yet synced");
    for (uint32_t s = 0; s < 4; s++) {
        wt_expect(&t, &m, wm_append_op(s, s == 0 ? 2 : 1, 2, 1, 10, 200 + 10 * s), 0, "more");
        cr_assert_eq(wal_flush(t.w), 0);
    }
    wt_expect(&t, &m, wm_hs_op(3, 1, 1, 0), 0, "hs");
    cr_assert_eq(wal_flush(t.w), 0);
    cr_assert_eq(disk_inflight(t.disk), 1, "no second write while one is in flight");
    cr_assert(disk_sim_step(t.sim), "the sync");
    cr_assert_eq(t.durable_calls, 1);
    cr_assert_eq(t.durable, first_end, "the first batch alone is durable");
    cr_assert_eq(disk_inflight(t.disk), 1, "the staged records went out at once");
    wt_run(&t);
    cr_assert_eq(t.durable_calls, 2);
    cr_assert_eq(t.durable, wal_staged_lsn(t.w));
    struct wal_stats st = wt_stats(&t);
    cr_assert_eq(st.batches_written, 2, "group commit: everything staged meanwhile is ONE batch");
    cr_assert(wal_idle(t.w));
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

/* Records staged without wal_flush stay staged: nothing is written for them. */
Test(wal_basic, nothing_is_written_without_a_flush)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 13, SEG_BYTES);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 3, 1, 10, 100), 0, "append");
    wt_run(&t);
    cr_assert_eq(disk_inflight(t.disk), 0);
    cr_assert_eq(t.durable_calls, 0);
    cr_assert_not(wal_idle(t.w));
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, 1, &info), TS_ENOTFOUND, "closing drops what is staged");
    wm_fini(&m);
    wt_fini(&t);
}

static int stop_at_second(void *arg, const struct wal_group_info *g)
{
    uint32_t *seen = arg;
    cr_assert(g->group >= 1 && g->group <= 5);
    return ++*seen == 2 ? 42 : 0;
}

Test(wal_basic, wal_groups_visits_every_group_and_stops_early)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 14, SEG_BYTES);
    wm_init(&m, 5, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    for (uint32_t s = 0; s < 5; s++) {
        wt_expect(&t, &m, wm_hs_op(s, s + 1, 0, 0), 0, "hs");
    }
    wt_check(&t, &m, "five groups");
    uint32_t seen = 0;
    cr_assert_eq(wal_groups(t.w, stop_at_second, &seen), 42);
    cr_assert_eq(seen, 2);
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * wal_config.dir is "created if missing". A directory's creation is durable only once
 * its parent is synced (disk.h, disk_sim.h), so the WAL must sync the parent after
 * mkdir: otherwise a power loss takes the directory, and every segment in it, away.
 */
Test(wal_basic, a_created_directory_survives_a_crash)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 15, SEG_BYTES);
    t.cfg.dir = "fresh";
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 2, 1, 10, 100), 0, "append");
    wt_expect(&t, &m, wm_hs_op(0, 1, 1, 2), 0, "hs");
    wt_settle(&t, "durable");
    cr_assert_eq(t.durable, wal_staged_lsn(t.w));
    wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "seed 15: after a crash, records reported durable in a created dir");
    wm_fini(&m);
    wt_fini(&t);
}

struct inspected {
    uint32_t records;
    uint32_t entries;
    uint32_t reports;
    uint32_t torn;
    uint64_t last_lsn;
    uint64_t entry_sum; /* sum of group * 1000 + index over ENTRY records */
};

static int on_record(void *arg, const struct wal_record_info *r)
{
    struct inspected *in = arg;
    cr_assert(r->lsn > in->last_lsn || in->records == 0, "records come in log order");
    cr_assert_str_neq(wal_record_type_name(r->type), "?");
    in->last_lsn = r->lsn;
    in->records++;
    if (r->type == WAL_ENTRY) {
        in->entries++;
        in->entry_sum += r->group * 1000 + r->index;
        cr_assert_eq(r->term, r->group, "this log's entries have term == group");
    }
    return 0;
}

static void on_inspect_report(void *arg, const char *line)
{
    struct inspected *in = arg;
    in->reports++;
    in->torn += strstr(line, "torn") != NULL;
}

/* wal_inspect reads the log as recovery would and changes nothing: a torn tail is
 * reported every time, and an empty directory stays empty. */
Test(wal_basic, wal_inspect_reads_the_log_and_changes_nothing)
{
    struct wt t;
    wt_init(&t, 16, 64 * 1024);
    struct inspected in = {0};
    char errmsg[256];
    cr_assert_eq(wal_inspect(WT_DIR, t.disk, ts_allocator_default(), on_record, on_inspect_report,
                             &in, NULL, errmsg, sizeof(errmsg)),
                 0, "%s", errmsg);
    cr_assert_eq(in.records, 0);
    uint64_t seqs[4];
    cr_assert_eq(wt_segments(&t, seqs, 4), 0, "inspecting an empty directory creates nothing");
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t sum = 0;
    uint32_t entries = 0;
    for (uint64_t g = 1; g <= 3; g++) {
        for (uint64_t i = 1; i <= 40; i++) {
            struct wal_entry e = {.term = g, .index = i, .data = "0123456789", .len = 10};
            e.len = (uint32_t)(i * 37 % 2000);
            uint8_t data[2000] = {0};
            e.data = data;
            cr_assert_eq(wal_append(t.w, g, &e, 1), 0);
            sum += g * 1000 + i;
            entries++;
        }
        wt_settle(&t, "inspect");
    }
    cr_assert(wt_stats(&t).segments_created >= 2, "the log spans segments");
    /* A torn last batch. */
    struct wal_entry e = {.term = 4, .index = 1, .data = "x", .len = 1};
    cr_assert_eq(wal_append(t.w, 4, &e, 1), 0);
    cr_assert_eq(wal_flush(t.w), 0);
    cr_assert(disk_sim_step(t.sim));
    wt_crash(&t, DISK_SIM_CRASH_TEAR, 30);
    struct wal_stats st;
    for (int pass = 0; pass < 2; pass++) {
        in = (struct inspected){0};
        cr_assert_eq(wal_inspect(WT_DIR, t.disk, ts_allocator_default(), on_record,
                                 on_inspect_report, &in, &st, errmsg, sizeof(errmsg)),
                     0, "%s", errmsg);
        cr_assert_eq(in.entries, entries, "every durable entry, once");
        cr_assert_eq(in.entry_sum, sum);
        cr_assert_eq(in.torn, 1, "pass %d: the torn tail is reported, not cut", pass);
        cr_assert_eq(st.groups, 3);
    }
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_close(&t);
    in = (struct inspected){0};
    cr_assert_eq(wal_inspect(WT_DIR, t.disk, ts_allocator_default(), on_record, on_inspect_report,
                             &in, NULL, errmsg, sizeof(errmsg)),
                 0, "%s", errmsg);
    cr_assert_eq(in.torn, 0, "wal_open cut the tail; inspect no longer sees it");
    cr_assert_eq(in.entries, entries);
    wt_fini(&t);
}
