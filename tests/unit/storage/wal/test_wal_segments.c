/*
 * storage/wal segments: rolling to new segments, deleting segments no group needs once
 * every group compacted past them, GROUP_STATE records that keep hard states and
 * snapshot points when the segment that held them is deleted, and crashes right after a
 * roll (an empty new segment, a torn first batch, a torn last batch before it).
 *
 * Segments are the minimum size (64 KiB) so that a few hundred entries roll several.
 */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/encoding.h"
#include "core/util/err.h"
#include "core/util/limits.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEG (64u * 1024u)

/* Bytes left in the tail segment (its header must be on disk). */
static uint64_t tail_room(struct wt *t)
{
    uint64_t seqs[WT_SEGMENTS_MAX];
    uint32_t n = wt_segments(t, seqs, WT_SEGMENTS_MAX);
    cr_assert(n > 0);
    char path[64];
    wt_segment_path(seqs[n - 1], path, sizeof(path));
    uint32_t file;
    cr_assert_eq(disk_open(t->disk, path, DISK_OPEN_READONLY, &file), 0);
    uint8_t h[WAL_SEGMENT_HEADER_BYTES];
    cr_assert_eq(disk_pread(t->disk, file, h, sizeof(h), 0), (int64_t)sizeof(h));
    cr_assert_eq(disk_close(t->disk, file), 0);
    uint64_t base = ts_load_le64(h + 16);
    if (memcmp(h, WAL_MAGIC, 8) != 0) {
        cr_assert(seqs[n - 1] == 1 && wal_staged_lsn(t->w) == 0, "the tail's header is written");
        base = 0; /* a fresh log: segment 1 starts at 0 */
    }
    return base + t->cfg.segment_bytes - wal_staged_lsn(t->w);
}

/* Bytes an entry of len data bytes takes in a fresh batch (its BATCH record included). */
static uint64_t entry_cost(uint32_t len)
{
    return ((WAL_RECORD_HEADER_BYTES + 16 + len + 7) & ~7u) + WAL_RECORD_HEADER_BYTES + 16;
}

/* Appends durable 1000-byte entries to a group until the tail has between 1100 and
 * 2300 bytes left. Returns the index of the next entry. */
static uint64_t fill_tail(struct wt *t, struct wm *m, uint32_t slot, uint64_t next, uint64_t tag)
{
    wt_settle(t, "before fill");
    while (tail_room(t) >= 2300) {
        wt_expect(t, m, wm_append_op(slot, next, 1, 1, 1000, tag + next), 0, "fill");
        next++;
        wt_settle(t, "fill");
    }
    cr_assert(tail_room(t) >= 1100, "room %" PRIu64, tail_room(t));
    return next;
}

/* Hard states only: these groups never append, so only GROUP_STATE records carry their
 * state into later segments. */
static void quiet_groups(struct wt *t, struct wm *m)
{
    wt_expect(t, m, wm_hs_op(0, 5, 2, 0), 0, "quiet");
    wt_expect(t, m, wm_hs_op(1, 9, 1, 0), 0, "quiet");
    wt_expect(t, m, wm_simple_op(WM_SNAPSHOT, 1, 70, 8), 0, "quiet snapshot");
}

Test(wal_segments, compaction_lets_old_segments_go)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 41, SEG);
    wm_init(&m, 5, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    quiet_groups(&t, &m);
    uint64_t next[2] = {1, 1};
    for (uint32_t round = 0; round < 200; round++) {
        for (uint32_t g = 0; g < 2; g++) {
            wt_expect(
                &t, &m,
                wm_append_op(2 + g, next[g], 2, 1 + round / 50, 1500, (g + 1) * 100000 + next[g]),
                0, "append");
            next[g] += 2;
            /* Keep the last three entries, as a Raft group that applied the rest. */
            if (next[g] > 4) {
                wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 2 + g, next[g] - 4, 0), 0, "compact");
            }
        }
        if (round % 3 == 0) {
            wt_settle(&t, "rounds");
        }
    }
    wt_expect(&t, &m, wm_simple_op(WM_REMOVE, 4, 0, 0), TS_ENOTFOUND, "unknown");
    wt_settle(&t, "end");
    struct wal_stats st = wt_stats(&t);
    cr_assert(st.segments_created >= 8, "created %" PRIu64, st.segments_created);
    cr_assert(st.segments_deleted > 0, "compaction let no segment go");
    cr_assert(st.segments_deleted + st.segments == st.segments_created, "stats add up");
    uint64_t seqs[WT_SEGMENTS_MAX];
    uint32_t n = wt_segments(&t, seqs, WT_SEGMENTS_MAX);
    cr_assert_eq(n, st.segments, "the directory holds exactly the live segments");
    cr_assert_not(wt_segment_exists(&t, 1), "segment 1 was deleted");
    cr_assert_eq(seqs[n - 1], st.segments_created, "the newest segment is the tail");
    wt_check(&t, &m, "live");
    wt_check_all_data(&t, &m, "live");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened after deletions (hard states from GROUP_STATE records)");
    wt_check_all_data(&t, &m, "reopened");
    /* And on: the reopened log keeps rolling and deleting. */
    for (uint32_t round = 0; round < 60; round++) {
        wt_expect(&t, &m, wm_append_op(2, next[0], 1, 9, 1500, 900000 + next[0]), 0, "more");
        next[0]++;
        wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 2, next[0] - 2, 0), 0, "more compact");
        wt_settle(&t, "more");
    }
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened twice");
    wm_fini(&m);
    wt_fini(&t);
}

/* A group whose entries all lie in an older segment keeps them when a later segment
 * restates the group in its GROUP_STATE record. */
Test(wal_segments, group_states_keep_the_entries_of_earlier_segments)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 42, SEG);
    wm_init(&m, 3, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 3, 1, 100, 10), 0, "in segment 1 only");
    wt_expect(&t, &m, wm_hs_op(0, 1, 1, 3), 0, "hs");
    uint64_t next = fill_tail(&t, &m, 1, 1, 1000);
    wt_expect(&t, &m, wm_append_op(2, 1, 1, 1, 10000, 50), 0, "rolls");
    wt_expect(&t, &m, wm_append_op(1, next, 2, 2, 100, 60), 0, "group 2 goes on");
    wt_settle(&t, "rolled");
    cr_assert_eq(wt_stats(&t).segments_created, 2);
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wt_check_all_data(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

/* Power loss right after a roll, before the new segment's first batch (the groups'
 * states) reached the disk: the new segment exists and is all zeros. */
Test(wal_segments, crash_after_a_roll_with_an_empty_new_segment)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 43, SEG);
    wm_init(&m, 3, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    quiet_groups(&t, &m);
    uint64_t next = fill_tail(&t, &m, 2, 1, 1000);
    struct wm durable;
    wm_copy(&durable, &m);
    wt_expect(&t, &m, wm_append_op(2, next, 1, 1, 3000, 77), 0, "rolls");
    cr_assert_eq(wt_stats(&t).segments_created, 2);
    cr_assert(wt_segment_exists(&t, 2));
    wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, 0, "%s: %s", ts_errname(rc), t.errmsg);
    wt_check(&t, &durable, "after the crash");
    wt_check_all_data(&t, &durable, "after the crash");
    /* The log goes on from the recovered state. */
    wt_expect(&t, &durable, wm_append_op(2, next, 1, 2, 3000, 78), 0, "append after recovery");
    wt_settle(&t, "append after recovery");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &durable, "reopened");
    wt_check_all_data(&t, &durable, "reopened");
    wm_fini(&durable);
    wm_fini(&m);
    wt_fini(&t);
}

/* Power loss while the new segment's first batch (header, then the groups' states) is
 * being written: torn at several bytes, inside and after the header. */
Test(wal_segments, crash_while_writing_the_first_batch_of_a_new_segment)
{
    const uint64_t tears[] = {1, 8, 31, 32, 33, 72, 100, 150};
    for (uint32_t i = 0; i < sizeof(tears) / sizeof(tears[0]); i++) {
        struct wt t;
        struct wm m;
        wt_init(&t, 44, SEG);
        wm_init(&m, 3, 1);
        cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
        quiet_groups(&t, &m);
        uint64_t next = fill_tail(&t, &m, 2, 1, 1000);
        struct wm durable;
        wm_copy(&durable, &m);
        wt_expect(&t, &m, wm_append_op(2, next, 1, 1, 3000, 77), 0, "rolls");
        cr_assert_eq(wal_flush(t.w), 0);
        cr_assert(disk_sim_step(t.sim), "the states batch is written, not synced");
        char path[64];
        wt_segment_path(2, path, sizeof(path));
        uint64_t states = disk_sim_unsynced_bytes(t.sim, path);
        cr_assert(states > tears[i], "the first batch of segment 2 is %" PRIu64 " bytes", states);
        wt_crash(&t, DISK_SIM_CRASH_TEAR, tears[i]);
        int rc = wt_open(&t);
        cr_assert_eq(rc, 0, "tear at %" PRIu64 " of segment 2's first batch: %s: %s", tears[i],
                     ts_errname(rc), t.errmsg);
        wt_check(&t, &durable, "after the crash");
        wt_expect(&t, &durable, wm_append_op(2, next, 1, 2, 3000, 78), 0, "append");
        wt_settle(&t, "append after recovery");
        wt_close(&t);
        cr_assert_eq(wt_open(&t), 0, "tear %" PRIu64 ": reopen: %s", tears[i], t.errmsg);
        wt_check(&t, &durable, "reopened");
        wt_check_all_data(&t, &durable, "reopened");
        wm_fini(&durable);
        wm_fini(&m);
        wt_fini(&t);
    }
}

/*
 * roll() creates the next segment (durably: allocate, sync_dir) as soon as a record
 * does not fit, while the previous segment's last batch is still to be written. A power
 * loss that tears that batch leaves it torn in what is no longer the last file: the
 * segment after it exists but was never written. It is still the torn tail of the log.
 */
Test(wal_segments, a_torn_last_batch_before_an_unwritten_segment_is_a_torn_tail)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 45, SEG);
    wm_init(&m, 3, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    quiet_groups(&t, &m);
    uint64_t next = fill_tail(&t, &m, 2, 1, 1000);
    struct wm durable;
    wm_copy(&durable, &m);
    uint64_t room = tail_room(&t);
    uint32_t fits = (uint32_t)(room - entry_cost(0) - 64);
    wt_expect(&t, &m, wm_append_op(2, next, 1, 1, fits, 80), 0, "fits segment 1");
    wt_expect(&t, &m, wm_append_op(2, next + 1, 1, 1, 500, 81), 0, "rolls");
    cr_assert_eq(wt_stats(&t).segments_created, 2);
    cr_assert_eq(wal_flush(t.w), 0);
    cr_assert(disk_sim_step(t.sim), "segment 1's last batch is written, not synced");
    char path[64];
    wt_segment_path(1, path, sizeof(path));
    uint64_t last = disk_sim_unsynced_bytes(t.sim, path);
    cr_assert(last > 100);
    wt_crash(&t, DISK_SIM_CRASH_TEAR, last / 2);
    int rc = wt_open(&t);
    cr_assert_eq(rc, 0, "seed 45: torn last batch of segment 1, segment 2 empty: %s: %s",
                 ts_errname(rc), t.errmsg);
    wt_check(&t, &durable, "after the crash");
    wt_expect(&t, &durable, wm_append_op(2, next, 1, 2, 700, 82), 0, "append");
    wt_settle(&t, "append after recovery");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &durable, "reopened");
    wm_fini(&durable);
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * More than a segment staged before the first write: segment 1 is created by wal_open
 * and segment 2 by the roll, both durably, and neither was ever written when the power
 * fails. Nothing was reported durable, so the log must open, empty.
 */
Test(wal_segments, segments_created_but_never_written_are_an_empty_log)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 46, SEG);
    wm_init(&m, 1, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    for (uint64_t i = 1; i <= 20; i++) {
        struct wm_op op = wm_append_op(0, i, 1, 1, 4000, i);
        cr_assert_eq(wt_do(&t, &m, &op), 0);
        wm_op_free(&op);
    }
    cr_assert(wt_stats(&t).segments_created >= 2, "the staged entries rolled a segment");
    cr_assert_eq(t.durable_calls, 0);
    wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, 0, "seed 46: nothing was written: %s: %s", ts_errname(rc), t.errmsg);
    wt_check(&t, &m, "empty");
    wt_expect(&t, &m, wm_append_op(0, 1, 1, 1, 10, 99), 0, "append");
    wt_settle(&t, "append");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

/* Sets up: a quiet group's hard state in segment 1 only, then a roll whose new segment
 * (with the groups' states) is lost in a crash, then recovery, which stages the states
 * again at the start of segment 2. */
static void reopen_on_a_restaged_tail(struct wt *t, struct wm *m)
{
    wt_init(t, 47, SEG);
    wm_init(m, 3, 1);
    cr_assert_eq(wt_open(t), 0, "%s", t->errmsg);
    quiet_groups(t, m);
    uint64_t next = fill_tail(t, m, 2, 1, 1000);
    struct wm_op op = wm_append_op(2, next, 1, 1, 3000, 77);
    cr_assert_eq(wt_do(t, m, &op), 0); /* rolls; lost in the crash (not in the model) */
    wm_op_free(&op);
    cr_assert_eq(wt_stats(t).segments_created, 2);
    wt_crash(t, DISK_SIM_CRASH_DROP, 0);
    cr_assert_eq(wt_open(t), 0, "%s", t->errmsg);
    wt_check(t, m, "recovered");
}

/*
 * After such a recovery the re-staged states are not durable: wal_durable_lsn() must not
 * claim them, so that segment 1 (holding group 1's hard state) is not deleted before
 * segment 2's states are on disk.
 */
Test(wal_segments, restaged_states_are_not_durable_before_they_are_written)
{
    struct wt t;
    struct wm m;
    reopen_on_a_restaged_tail(&t, &m);
    cr_assert(wal_durable_lsn(t.w) < wal_staged_lsn(t.w) || wal_idle(t.w),
              "durable %" PRIu64 " == staged %" PRIu64 " while the re-staged states are not "
              "written (idle %d)",
              wal_durable_lsn(t.w), wal_staged_lsn(t.w), wal_idle(t.w));
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, wm_id(&m, 2), &info), 0);
    /* Compacting everything lets segment 1 go, but only once segment 2's states are. */
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 2, info.last_index, 0), 0, "compact all");
    cr_assert(wt_segment_exists(&t, 1), "segment 1 deleted before segment 2's states are durable");
    wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, 0, "seed 47: %s: %s", ts_errname(rc), t.errmsg);
    wt_check_group(&t, &m, 0, "group 1's hard state, reported durable long ago");
    wm_fini(&m);
    wt_fini(&t);
}

/* ... and appending on that tail must work: its first write starts at segment 2's
 * beginning, with the re-staged states. */
Test(wal_segments, appends_go_on_after_a_restaged_tail)
{
    struct wt t;
    struct wm m;
    reopen_on_a_restaged_tail(&t, &m);
    struct wal_group_info info;
    cr_assert_eq(wal_group_info(t.w, wm_id(&m, 2), &info), 0);
    wt_expect(&t, &m, wm_append_op(2, info.last_index + 1, 1, 2, 100, 5), 0, "append");
    wt_settle(&t, "first write after a restaged tail");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * wal_compact() deletes the segments no group needs at once, but the COMPACT record that
 * made them unneeded is only staged. A power loss before it is durable brings back a
 * log in which the group still needs entries of the deleted segment.
 */
Test(wal_segments, a_segment_goes_only_once_the_compaction_that_freed_it_is_durable)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 48, SEG);
    wm_init(&m, 1, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t next = fill_tail(&t, &m, 0, 1, 1000);
    uint64_t last_in_1 = next - 1;
    for (uint32_t i = 0; i < 3; i++) {
        /* The first one is larger than the room left: all three go to segment 2. */
        wt_expect(&t, &m, wm_append_op(0, next, 1, 1, i == 0 ? 3000 : 1000, 1000 + next), 0,
                  "segment 2");
        next++;
    }
    wt_settle(&t, "two segments");
    cr_assert_eq(wt_stats(&t).segments_created, 2);
    struct wm durable;
    wm_copy(&durable, &m);
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, last_in_1, 0), 0, "compact segment 1 away");
    wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, 0, "seed 48: crash before the COMPACT record was durable: %s: %s",
                 ts_errname(rc), t.errmsg);
    wt_check(&t, &durable, "the compaction was not durable");
    wm_fini(&durable);
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * wal_group_get refuses a new group (TS_EFULL) when every group's state would no longer
 * fit a segment twice over; with 64 KiB segments that is the 410th group. A refused call
 * must leave no record behind: otherwise the group comes back after a restart, or
 * recovery refuses the log.
 */
Test(wal_segments, a_group_over_the_limit_is_refused_and_leaves_no_record)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 49, SEG);
    wm_init(&m, 420, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint32_t s = 0;
    int rc = 0;
    for (; s < 420; s++) {
        struct wm_op op = wm_hs_op(s, 1, 1, 0);
        rc = wt_do(&t, &m, &op);
        if (rc != 0) {
            cr_assert_eq(op.post_lsn, op.pre_lsn, "the refused group %u staged %" PRIu64 " bytes",
                         s + 1, op.post_lsn - op.pre_lsn);
            break;
        }
        cr_assert_eq(wm_apply(&m, &op, UINT32_MAX), 0);
    }
    cr_assert_eq(rc, TS_EFULL, "a limit below 420 groups for 64 KiB segments");
    cr_assert(s >= 400, "the limit is %u groups", s);
    wt_settle(&t, "limit");
    wt_close(&t);
    rc = wt_open(&t);
    cr_assert_eq(rc, 0, "%s: %s", ts_errname(rc), t.errmsg);
    wt_check(&t, &m, "reopened: the refused group does not exist");
    wm_fini(&m);
    wt_fini(&t);
}

/* A segment holds every group's state and the largest entry it accepts; a larger one is
 * refused with TS_ETOOBIG and changes nothing. */
Test(wal_segments, an_entry_larger_than_a_segment_is_too_big)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 50, SEG);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_hs_op(1, 1, 1, 1), 0, "hs");
    uint64_t staged = wal_staged_lsn(t.w);
    struct wm_op op = wm_append_op(0, 1, 1, 1, SEG, 1);
    cr_assert_eq(wt_do(&t, &m, &op), TS_ETOOBIG);
    wm_op_free(&op);
    cr_assert_eq(wal_staged_lsn(t.w), staged);
    cr_assert_eq(wt_stats(&t).segments_created, 1, "no segment was rolled for it");
    wt_expect(&t, &m, wm_append_op(0, 1, 1, 1, SEG - 1024, 2), 0, "the largest that fits");
    wt_settle(&t, "big");
    wt_close(&t);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "reopened");
    wt_check_all_data(&t, &m, "reopened");
    wm_fini(&m);
    wt_fini(&t);
}

static void read_done(struct wal_read_req *req)
{
    *(bool *)req->data = true;
}

/*
 * A wal_read waiting on the disk for an entry of segment 1 must complete normally (with
 * the data, or TS_ECOMPACTED) when a compaction meanwhile lets segment 1 go: the WAL may
 * not close a file a request of its own is still queued on (disk_sim.h: a caller bug).
 */
Test(wal_segments, a_read_in_flight_survives_the_deletion_of_its_segment)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 51, SEG);
    t.cfg.cache_bytes = 4096;
    wm_init(&m, 1, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t next = fill_tail(&t, &m, 0, 1, 1000);
    wt_expect(&t, &m, wm_append_op(0, next, 1, 1, 3000, 5000), 0, "rolls");
    wt_settle(&t, "two segments");
    uint8_t buf[1000];
    struct wal_entry e[1];
    bool done = false;
    struct wal_read_req req = {.group = 1,
                               .lo = 1,
                               .hi = 2,
                               .buf = buf,
                               .buf_bytes = 1000,
                               .entries = e,
                               .cb = read_done,
                               .data = &done};
    cr_assert_eq(wal_read(t.w, &req), 0, "entry 1 is read from segment 1 on disk");
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, next, 0), 0, "compact everything");
    cr_assert_eq(wal_flush(t.w), 0);
    wt_run(&t);
    cr_assert(done, "the read completed");
    cr_assert(req.res == 0 || req.res == TS_ECOMPACTED,
              "seed 51: read racing the deletion of "
              "its segment: %s",
              ts_errname(req.res));
    if (req.res == 0) {
        uint8_t want[1000];
        wm_data(1000 + 1, 1000, want); /* fill_tail's tag for entry i is 1000 + i */
        cr_assert_eq(req.count, 1);
        cr_assert_eq(e[0].len, 1000);
        cr_assert(memcmp(e[0].data, want, 1000) == 0, "the data read is entry 1's");
    }
    wt_settle(&t, "after");
    cr_assert_not(wt_segment_exists(&t, 1));
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * When the directory sync that makes a segment's deletion durable fails, the deletion
 * is retried later (segments_gc: "tried again at the next collection"). Meanwhile the
 * WAL must not act on the handle it already closed: the disk hands that number to the
 * next file opened, which is the next segment.
 */
static void failed_directory_sync_case(uint32_t syncs_before)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 52, SEG);
    wm_init(&m, 1, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    uint64_t next = fill_tail(&t, &m, 0, 1, 1000);
    wt_expect(&t, &m, wm_append_op(0, next, 1, 1, 3000, 5000), 0, "rolls");
    next++;
    wt_settle(&t, "two segments");
    struct wm durable;
    wm_copy(&durable, &m);
    /* The deletion's directory sync comes right after the compaction (syncs_before 0)
     * or after the fdatasync of the batch holding it (1), depending on when the WAL
     * collects segments: the fault hits it either way. */
    disk_sim_fail(t.sim, DISK_SIM_FAULT_SYNC, EIO, syncs_before, false);
    wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, next - 1, 0), 0, "compact: segment 1 may go");
    if (wal_flush(t.w) == 0) {
        wt_run(&t);
    }
    int err = wal_error(t.w);
    cr_assert(err == 0 || err == -EIO, "%s", ts_errname(err));
    if (err != 0) {
        /* The WAL chose to stop (fsyncgate): recovery has what was reported durable. */
        wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
        cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
        wt_check(&t, &durable, "after a failed sync");
    } else {
        /* Otherwise the log goes on, rolls new segments, and deletes segment 1 later. */
        char ctx[128];
        snprintf(ctx, sizeof(ctx),
                 "seed 52, fault after %u syncs: after a failed directory "
                 "sync in segment deletion",
                 syncs_before);
        for (uint32_t i = 0; i < 100; i++) {
            wt_expect(&t, &m, wm_append_op(0, next, 2, 2, 2000, 6000 + next), 0, ctx);
            next += 2;
            wt_expect(&t, &m, wm_simple_op(WM_COMPACT, 0, next - 2, 0), 0, ctx);
            wt_settle(&t, ctx);
        }
        cr_assert(wt_stats(&t).segments_created >= 4);
        cr_assert_not(wt_segment_exists(&t, 1), "%s: segment 1 is still there", ctx);
        wt_close(&t);
        cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
        wt_check(&t, &m, "reopened");
        wt_check_all_data(&t, &m, "reopened");
    }
    wm_fini(&durable);
    wm_fini(&m);
    wt_fini(&t);
}

/*
 * When the directory sync that makes a segment's deletion durable fails, the deletion
 * is retried later (segments_gc: "tried again at the next collection"). Meanwhile the
 * WAL must not act on the handle it already closed: the disk hands that number to the
 * next file opened, which is the next segment.
 */
Test(wal_segments, a_failed_directory_sync_while_deleting_a_segment_is_retried)
{
    failed_directory_sync_case(0);
    failed_directory_sync_case(1);
}

/*
 * A new group's first record rolls a segment. After a crash at the first durable
 * report, the group exists exactly if its record is durable: the states written for
 * the roll must never bring back a group whose creating record was lost.
 */
Test(wal_segments, a_crash_after_a_roll_does_not_bring_back_a_group_that_was_never_durable)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 53, SEG);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    fill_tail(&t, &m, 0, 1, 1000);
    struct wm durable;
    wm_copy(&durable, &m);
    struct wm_op op = wm_append_op(1, 1, 1, 1, 3000, 77); /* group 2's first record rolls */
    cr_assert_eq(wt_apply(&t, &m, &op, "new group"), 0);
    wm_op_free(&op);
    cr_assert_eq(wt_stats(&t).segments_created, 2);
    cr_assert_eq(wal_flush(t.w), 0);
    uint32_t calls = t.durable_calls;
    while (t.durable_calls == calls) {
        cr_assert(disk_sim_step(t.sim), "segment 2's first batch is written and synced");
    }
    /* The roll's states share their batch with the record that caused the roll, so both
     * are durable together; should they ever be written apart, the group must not
     * come back from the states alone. */
    bool together = t.durable >= op.post_lsn;
    wt_crash(&t, DISK_SIM_CRASH_DROP, 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, 0, "%s: %s", ts_errname(rc), t.errmsg);
    cr_assert_eq(wal_durable_lsn(t.w), t.durable);
    wt_check(&t, together ? &m : &durable,
             together ? "seed 53: group 2's record was durable with the states"
                      : "seed 53: group 2's creation was never durable");
    wm_fini(&durable);
    wm_fini(&m);
    wt_fini(&t);
}
