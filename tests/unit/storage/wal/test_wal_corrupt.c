/*
 * storage/wal corruption: damage that is not a torn tail makes wal_open refuse the log
 * with TS_ECORRUPT and an errmsg naming the file, the offset and (for a record body) the
 * group. Covered: a bit flipped in any synced record of a segment that is not the last,
 * or of the last segment when a valid batch follows; a flipped bit in a segment header;
 * a missing middle segment; data after the end of a sealed segment. The one documented
 * exception is checked too: a flip in the last batch of the log is a torn tail. Reads of
 * single entries verify their record as well.
 *
 * Flips avoid the zero padding after a record's payload: it carries no data and the
 * record CRC does not cover it (wal.h).
 */
#include "tests/unit/storage/wal/wal_test.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEG (64u * 1024u)
#define RECORDS_MAX 4096u

/* A log of three groups over at least `segments` segments, all durable, WAL closed. */
static void build_log(struct wt *t, struct wm *m, uint64_t seed, uint32_t segments)
{
    wt_init(t, seed, SEG);
    wm_init(m, 3, 1);
    cr_assert_eq(wt_open(t), 0, "%s", t->errmsg);
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    uint64_t next[3] = {1, 1, 1};
    while (wt_stats(t).segments_created < segments) {
        uint32_t s = (uint32_t)ts_rand_below(&r, 3);
        uint32_t n = 1 + (uint32_t)ts_rand_below(&r, 3);
        wt_expect(t, m,
                  wm_append_op(s, next[s], n, 1, 50 + (uint32_t)ts_rand_below(&r, 900),
                               seed * 100000 + s * 10000 + next[s]),
                  0, "build");
        next[s] += n;
        if (ts_rand_chance(&r, 1, 4)) {
            wt_expect(t, m, wm_hs_op(s, next[s], s, next[s] - 1), 0, "build hs");
        }
        wt_settle(t, "build"); /* one batch per call: many batches per segment */
    }
    /* A few more batches in the last segment, so that its first batches are followed
     * by valid ones. */
    for (uint32_t i = 0; i < 6; i++) {
        wt_expect(t, m, wm_append_op(0, next[0], 1, 2, 100, seed * 100000 + 50000 + i), 0, "tail");
        next[0]++;
        wt_settle(t, "tail");
    }
    wt_close(t);
}

/* The records of a segment and the index of each one's batch. */
struct layout {
    struct wt_record rec[RECORDS_MAX];
    uint32_t batch_of[RECORDS_MAX];
    uint32_t n;
    uint32_t batches;
};

static void read_layout(struct wt *t, uint64_t seq, struct layout *l)
{
    l->n = wt_scan(t, seq, l->rec, RECORDS_MAX);
    cr_assert(l->n > 0 && l->n < RECORDS_MAX);
    cr_assert_eq(l->rec[0].type, WAL_BATCH, "a segment's first record is a BATCH");
    l->batches = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        l->batches += l->rec[i].type == WAL_BATCH;
        l->batch_of[i] = l->batches - 1;
    }
}

static void expect_corrupt(struct wt *t, const char *path, const struct wt_record *rec,
                           bool in_body, const char *ctx)
{
    int rc = wt_open(t);
    cr_assert_eq(rc, TS_ECORRUPT, "%s: wal_open returned %s (%s)", ctx, ts_errname(rc), t->errmsg);
    cr_assert_not_null(strstr(t->errmsg, path), "%s: errmsg does not name %s: %s", ctx, path,
                       t->errmsg);
    char want[64];
    snprintf(want, sizeof(want), "offset %" PRIu64, rec->offset);
    cr_assert_not_null(strstr(t->errmsg, want), "%s: errmsg does not name the %s: %s", ctx, want,
                       t->errmsg);
    if (in_body && rec->type != WAL_BATCH) {
        snprintf(want, sizeof(want), "(group %" PRIu64 ")", rec->group);
        cr_assert_not_null(strstr(t->errmsg, want), "%s: errmsg does not name the %s: %s", ctx,
                           want, t->errmsg);
    }
}

/* Flips one bit of record i (header or payload, not padding) and expects wal_open to
 * refuse the log, then flips it back. */
static void flip_record(struct wt *t, uint64_t seq, const struct layout *l, uint32_t i,
                        struct ts_rand *r, const char *what)
{
    const struct wt_record *rec = &l->rec[i];
    uint64_t at = rec->offset + ts_rand_below(r, WAL_RECORD_HEADER_BYTES + rec->len);
    uint32_t bit = (uint32_t)ts_rand_below(r, 8);
    char path[64];
    wt_segment_path(seq, path, sizeof(path));
    char ctx[256];
    snprintf(ctx, sizeof(ctx),
             "seed %" PRIu64 ": %s: bit %u of byte %" PRIu64 " of %s (record "
             "type %u at %" PRIu64 ", batch %u of %u)",
             t->seed, what, bit, at, path, rec->type, rec->offset, l->batch_of[i], l->batches);
    cr_assert_eq(disk_sim_flip_bit(t->sim, path, at, bit), 0);
    expect_corrupt(t, path, rec, at >= rec->offset + WAL_RECORD_HEADER_BYTES, ctx);
    cr_assert_eq(disk_sim_flip_bit(t->sim, path, at, bit), 0);
}

#define FLIP_SEEDS 4
#define FLIPS_PER_SEED 40

Test(wal_corrupt, a_flipped_bit_in_a_segment_before_the_last_is_refused)
{
    uint64_t seeds = wt_seeds(FLIP_SEEDS);
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        struct wt t;
        struct wm m;
        build_log(&t, &m, seed, 3);
        struct ts_rand r;
        ts_rand_seed(&r, seed ^ 0xf11b);
        static struct layout l;
        for (uint32_t k = 0; k < FLIPS_PER_SEED; k++) {
            uint64_t seq = 1 + ts_rand_below(&r, 2); /* segment 1 or 2 of 3 */
            read_layout(&t, seq, &l);
            flip_record(&t, seq, &l, (uint32_t)ts_rand_below(&r, l.n), &r, "sealed segment");
        }
        cr_assert_eq(wt_open(&t), 0, "seed %" PRIu64 ": every bit flipped back: %s", seed,
                     t.errmsg);
        wt_check(&t, &m, "flipped back");
        wt_check_all_data(&t, &m, "flipped back");
        wm_fini(&m);
        wt_fini(&t);
    }
    fprintf(stderr, "[wal_corrupt] sealed segments: seeds 1..%" PRIu64 ", %u flips each\n", seeds,
            FLIPS_PER_SEED);
}

Test(wal_corrupt, a_flipped_bit_in_the_last_segment_followed_by_a_valid_batch_is_refused)
{
    uint64_t seeds = wt_seeds(FLIP_SEEDS);
    for (uint64_t seed = 11; seed < 11 + seeds; seed++) {
        struct wt t;
        struct wm m;
        build_log(&t, &m, seed, 2);
        struct ts_rand r;
        ts_rand_seed(&r, seed ^ 0x1a57);
        uint64_t seq = 2;
        static struct layout l;
        read_layout(&t, seq, &l);
        cr_assert(l.batches >= 3);
        uint32_t first_of_last = 0;
        while (l.batch_of[first_of_last] < l.batches - 1) {
            first_of_last++;
        }
        for (uint32_t k = 0; k < FLIPS_PER_SEED; k++) {
            flip_record(&t, seq, &l, (uint32_t)ts_rand_below(&r, first_of_last), &r,
                        "last segment, a valid batch follows");
        }
        cr_assert_eq(wt_open(&t), 0, "seed %" PRIu64 ": %s", seed, t.errmsg);
        wt_check(&t, &m, "flipped back");
        wm_fini(&m);
        wt_fini(&t);
    }
    fprintf(stderr, "[wal_corrupt] last segment: seeds 11..%" PRIu64 ", %u flips each\n",
            10 + seeds, FLIPS_PER_SEED);
}

/* wal.h: a flip in the last batch of the log cannot be told from a torn write; recovery
 * cuts that batch and reports it. */
Test(wal_corrupt, a_flipped_bit_in_the_last_batch_is_a_torn_tail)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 21, SEG);
    wm_init(&m, 2, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_expect(&t, &m, wm_append_op(0, 1, 3, 1, 100, 1), 0, "first");
    wt_settle(&t, "first");
    struct wm before_last;
    wm_copy(&before_last, &m);
    wt_expect(&t, &m, wm_append_op(1, 1, 2, 1, 100, 2), 0, "last");
    wt_settle(&t, "last");
    wt_close(&t);
    static struct layout l;
    read_layout(&t, 1, &l);
    uint32_t last_entry = l.n - 1;
    cr_assert_eq(l.rec[last_entry].type, WAL_ENTRY);
    char path[64];
    wt_segment_path(1, path, sizeof(path));
    cr_assert_eq(disk_sim_flip_bit(t.sim, path, l.rec[last_entry].offset + 40, 3), 0);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    cr_assert_eq(t.torn_reports, 1, "the cut is reported: %s", t.last_report);
    wt_check(&t, &before_last, "the last batch is cut");
    wm_fini(&before_last);
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_corrupt, a_flipped_bit_in_a_segment_header_is_refused)
{
    struct wt t;
    struct wm m;
    build_log(&t, &m, 22, 3);
    struct ts_rand r;
    ts_rand_seed(&r, 22);
    for (uint64_t seq = 1; seq <= 3; seq++) {
        char path[64];
        wt_segment_path(seq, path, sizeof(path));
        for (uint64_t byte = 0; byte < WAL_SEGMENT_HEADER_BYTES; byte++) {
            uint32_t bit = (uint32_t)ts_rand_below(&r, 8);
            cr_assert_eq(disk_sim_flip_bit(t.sim, path, byte, bit), 0);
            int rc = wt_open(&t);
            cr_assert_eq(rc, TS_ECORRUPT,
                         "seed 22: bit %u of header byte %" PRIu64 " of %s: %s "
                         "(%s)",
                         bit, byte, path, ts_errname(rc), t.errmsg);
            cr_assert_not_null(strstr(t.errmsg, path), "errmsg names the file: %s", t.errmsg);
            cr_assert_eq(disk_sim_flip_bit(t.sim, path, byte, bit), 0);
        }
    }
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    wt_check(&t, &m, "flipped back");
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_corrupt, a_missing_middle_segment_is_refused)
{
    struct wt t;
    struct wm m;
    build_log(&t, &m, 23, 4);
    char path[64];
    wt_segment_path(2, path, sizeof(path));
    cr_assert_eq(disk_remove(t.disk, path), 0);
    cr_assert_eq(disk_sync_dir(t.disk, WT_DIR), 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, TS_ECORRUPT, "%s (%s)", ts_errname(rc), t.errmsg);
    cr_assert_not_null(strstr(t.errmsg, "0000000000000002"), "errmsg names segment 2: %s",
                       t.errmsg);
    cr_assert_not_null(strstr(t.errmsg, "missing"), "errmsg says it is missing: %s", t.errmsg);
    wm_fini(&m);
    wt_fini(&t);
}

Test(wal_corrupt, data_after_the_end_of_a_sealed_segment_is_refused)
{
    struct wt t;
    struct wm m;
    build_log(&t, &m, 24, 3);
    static struct layout l;
    read_layout(&t, 1, &l);
    const struct wt_record *last = &l.rec[l.n - 1];
    uint64_t end = (last->offset + WAL_RECORD_HEADER_BYTES + last->len + 7) & ~7ull;
    char path[64];
    wt_segment_path(1, path, sizeof(path));
    uint64_t at = end + 100;
    cr_assert_eq(disk_sim_flip_bit(t.sim, path, at, 0), 0);
    int rc = wt_open(&t);
    cr_assert_eq(rc, TS_ECORRUPT, "%s (%s)", ts_errname(rc), t.errmsg);
    cr_assert_not_null(strstr(t.errmsg, path), "errmsg names the file: %s", t.errmsg);
    wm_fini(&m);
    wt_fini(&t);
}

/* An entry read from disk is checked against its record CRC. */
Test(wal_corrupt, a_read_detects_a_flipped_bit)
{
    struct wt t;
    struct wm m;
    wt_init(&t, 25, SEG);
    t.cfg.cache_bytes = 4096;
    wm_init(&m, 1, 1);
    cr_assert_eq(wt_open(&t), 0, "%s", t.errmsg);
    for (uint64_t i = 1; i <= 10; i++) {
        wt_expect(&t, &m, wm_append_op(0, i, 1, 1, 1000, i), 0, "fill");
        wt_settle(&t, "fill");
    }
    static struct layout l;
    read_layout(&t, 1, &l);
    uint32_t first = 1; /* l.rec[0] is the first BATCH */
    cr_assert_eq(l.rec[first].type, WAL_ENTRY);
    cr_assert_eq(l.rec[first].index, 1);
    char path[64];
    wt_segment_path(1, path, sizeof(path));
    cr_assert_eq(disk_sim_flip_bit(t.sim, path, l.rec[first].offset + 500, 6), 0);
    uint8_t buf[1000];
    struct wal_entry e[1];
    struct wal_read_req req = {
        .group = 1, .lo = 1, .hi = 2, .buf = buf, .buf_bytes = 1000, .entries = e};
    if (wal_read(t.w, &req) == 0) {
        wt_run(&t);
    }
    cr_assert_eq(req.res, TS_ECORRUPT, "a flipped entry read from disk: %s", ts_errname(req.res));
    wm_fini(&m);
    wt_fini(&t);
}

/* Clears [from, to) of a segment file, bit by bit, in both of its images (data lost
 * after it was durable: a misdirected or lost write). */
static void zero_range_of(struct wt *t, uint64_t seq, uint64_t from, uint64_t to)
{
    char path[64];
    wt_segment_path(seq, path, sizeof(path));
    uint32_t file;
    cr_assert_eq(disk_open(t->disk, path, DISK_OPEN_READONLY, &file), 0);
    uint8_t *buf = malloc(to - from);
    cr_assert_not_null(buf);
    cr_assert_eq(disk_pread(t->disk, file, buf, to - from, from), (int64_t)(to - from));
    cr_assert_eq(disk_close(t->disk, file), 0);
    for (uint64_t i = 0; i < to - from; i++) {
        for (uint32_t bit = 0; bit < 8; bit++) {
            if (buf[i] & (1u << bit)) {
                cr_assert_eq(disk_sim_flip_bit(t->sim, path, from + i, bit), 0);
            }
        }
    }
    free(buf);
}

/*
 * The last batch of segment 1 is lost after it was durable: segment 1 now ends early,
 * and segment 2's (valid) header says it starts where segment 1 used to end. That is
 * missing data, to be refused; it is not a torn first write of segment 2 (whose batches
 * are all valid), and segment 2 must not be cleared.
 */
Test(wal_corrupt, a_segment_that_does_not_continue_the_previous_one_is_refused)
{
    struct wt t;
    struct wm m;
    build_log(&t, &m, 26, 2);
    static struct layout l;
    read_layout(&t, 1, &l);
    uint32_t last_batch = l.n - 1;
    while (l.rec[last_batch].type != WAL_BATCH) {
        last_batch--;
    }
    const struct wt_record *end = &l.rec[l.n - 1];
    uint64_t to = (end->offset + WAL_RECORD_HEADER_BYTES + end->len + 7) & ~7ull;
    zero_range_of(&t, 1, l.rec[last_batch].offset, to);
    uint32_t records = wt_scan(&t, 2, l.rec, RECORDS_MAX);
    int rc = wt_open(&t);
    cr_assert_eq(rc, TS_ECORRUPT,
                 "seed 26: segment 1 lost its last batch [%" PRIu64 ", %" PRIu64
                 "): wal_open %s (%s)",
                 l.rec[last_batch].offset, to, ts_errname(rc), rc == 0 ? t.last_report : t.errmsg);
    cr_assert_not_null(strstr(t.errmsg, "0000000000000002.wal"), "errmsg names segment 2: %s",
                       t.errmsg);
    cr_assert_eq(wt_scan(&t, 2, l.rec, RECORDS_MAX), records, "segment 2 was left as it was");
    wm_fini(&m);
    wt_fini(&t);
}
