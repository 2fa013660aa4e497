/*
 * core/kv: reads (kv_read). Range scans paged by limit and by byte budget reassemble the
 * exact key set; keys_only, count_only; clipping at the range's hi; reads at a revision
 * (current, future, historical, compacted).
 */
#include "kv_testenv.h"

#include "core/util/err.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct kte env;
static struct kte_rec rec;

static void setup(void)
{
    kte_init(&env, 31);
    kte_rec_init(&rec);
}

static void teardown(void)
{
    kte_rec_fini(&rec);
    kte_fini(&env);
}

TestSuite(kv_read, .init = setup, .fini = teardown);

#define N_KEYS 600

static void key_of(int i, char *buf)
{
    snprintf(buf, 16, "k%04d", i);
}

/* Keys k0000..k0599 with values of 0..299 bytes. */
static void fill(void)
{
    static char value[300];
    memset(value, 'v', sizeof(value));
    for (int i = 0; i < N_KEYS; i++) {
        char k[16];
        key_of(i, k);
        struct kv_put p = {.key = kte_b(k), .value = {(const uint8_t *)value, (uint32_t)(i % 300)}};
        cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    }
}

/* Pages through [start, end) with the given limit and budget; returns the keys seen in
 * order (as indexes) and the number of pages. */
static int page_all(const char *start, const char *end, uint64_t limit, uint64_t budget, int *seen,
                    int *pages)
{
    char cur[TS_KEY_BYTES_MAX + 1];
    strcpy(cur, start);
    int n = 0;
    *pages = 0;
    rec.sink.bytes_max = budget;
    for (;;) {
        struct kv_op op = {.kind = KV_OP_RANGE,
                           .u.range = {.key = kte_b(cur), .end = kte_b(end), .limit = limit}};
        cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
        (*pages)++;
        cr_assert_eq(rec.ops_n, 1);
        cr_assert_geq(rec.rows_n, 1, "every page makes progress");
        cr_assert(limit == 0 || rec.rows_n <= limit);
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < rec.rows_n; i++) {
            char k[TS_KEY_BYTES_MAX + 1];
            memcpy(k, rec.rows[i].key, rec.rows[i].key_len);
            k[rec.rows[i].key_len] = 0;
            seen[n++] = atoi(k + 1);
            bytes += rec.rows[i].key_len + rec.rows[i].value_len + TS_KV_ROW_OVERHEAD_BYTES;
            cr_assert_eq(rec.rows[i].value_len, (uint32_t)(seen[n - 1] % 300));
        }
        cr_assert(rec.rows_n == 1 || bytes <= (budget != 0 ? budget : TS_KV_READ_BYTES_DEFAULT),
                  "the budget holds");
        const struct kv_op_end *e = &rec.ops[0].end;
        if (!e->more) {
            break;
        }
        memcpy(cur, e->next_key, e->next_key_len);
        cur[e->next_key_len] = 0;
        cr_assert_lt(*pages, 10000);
    }
    rec.sink.bytes_max = 0;
    return n;
}

Test(kv_read, paging_by_limit_and_budget_reassembles_the_key_set)
{
    fill();
    static int seen[N_KEYS];
    struct {
        uint64_t limit, budget;
    } cases[] = {{0, 0}, {1, 0},   {7, 0},    {599, 0},  {600, 0},
                 {0, 1}, {0, 500}, {0, 4096}, {10, 2000}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int pages;
        int n = page_all("k0000", "k9", cases[c].limit, cases[c].budget, seen, &pages);
        cr_assert_eq(n, N_KEYS, "case %zu: %d keys", c, n);
        for (int i = 0; i < N_KEYS; i++) {
            cr_assert_eq(seen[i], i, "case %zu: key %d", c, i);
        }
        if (cases[c].limit != 0 && cases[c].budget == 0) {
            cr_assert_eq(pages, (N_KEYS + cases[c].limit - 1) / cases[c].limit);
        }
    }
    /* A sub-interval. */
    int pages;
    int n = page_all("k0100", "k0200", 33, 0, seen, &pages);
    cr_assert_eq(n, 100);
    cr_assert_eq(seen[0], 100);
    cr_assert_eq(seen[99], 199);
    cr_assert_eq(pages, 4);
}

Test(kv_read, count_keys_only_and_count_only)
{
    fill();
    struct kv_op op = {.kind = KV_OP_RANGE,
                       .u.range = {.key = kte_b("k0010"), .end = kte_b("k0020"), .limit = 3}};
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 3);
    cr_assert_eq(rec.ops[0].end.count, 10, "count ignores the limit (etcd)");
    cr_assert(rec.ops[0].end.more);
    cr_assert_arr_eq(rec.ops[0].end.next_key, "k0013", 5);
    op.u.range.keys_only = true;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 3);
    cr_assert_null(rec.rows[1].value);
    cr_assert_eq(rec.rows[1].value_len, 0);
    cr_assert_eq(rec.rows[1].version, 1);
    op.u.range.count_only = true;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 0);
    cr_assert_eq(rec.ops[0].end.count, 10);
    cr_assert_not(rec.ops[0].end.more);
    /* A single key by range (end empty), and an empty interval. */
    op = (struct kv_op){.kind = KV_OP_RANGE, .u.range = {.key = kte_b("k0005")}};
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_eq(rec.ops[0].end.count, 1);
    op.u.range.end = kte_b("k0001");
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 0);
    cr_assert_eq(rec.ops[0].end.count, 0);
    /* Everything: "" to "\0". */
    op.u.range = (struct kv_range_req){.key = kte_b(""), .end = kte_all(), .count_only = true};
    op.u.range.end.len = 1;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, N_KEYS);
}

Test(kv_read, clipped_at_the_range_end)
{
    fill();
    kte_set_range(&env, 7, "k0100", "k0200");
    struct kv_op op = {.kind = KV_OP_RANGE, .u.range = {.key = kte_b("k0150"), .end = kte_b("z")}};
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 50);
    cr_assert_eq(rec.ops[0].end.count, 50);
    cr_assert(rec.ops[0].end.more, "more keys may live in the next range");
    cr_assert_eq(rec.ops[0].end.next_key_len, 5);
    cr_assert_arr_eq(rec.ops[0].end.next_key, "k0200", 5);
    op.u.range.end = (struct kv_bytes){(const uint8_t *)"", 1};
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 50);
    cr_assert(rec.ops[0].end.more);
    op.u.range.end = kte_b("k0200");
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_not(rec.ops[0].end.more, "ends exactly at hi");
    /* Reads must start inside the range. */
    op.u.range.key = kte_b("k0099");
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_RANGE_MISMATCH);
    op.u.range.key = kte_b("k0200");
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_RANGE_MISMATCH);
    struct kv_op get = {.kind = KV_OP_GET, .u.get = {.key = kte_b("k0050")}};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_RANGE_MISMATCH);
    get.u.get.key = kte_b("");
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_INVALID);
}

Test(kv_read, reads_at_a_revision)
{
    /* a: put at 100, b: put at 101 then 102; c: created at 103. No delete yet. */
    env.stamp = 100;
    cr_assert_eq(kte_put(&env, "a", "a1"), KV_OK);
    cr_assert_eq(kte_put(&env, "b", "b1"), KV_OK);
    cr_assert_eq(kte_put(&env, "b", "b2"), KV_OK);
    cr_assert_eq(kte_put(&env, "c", "c1"), KV_OK);
    cr_assert_eq(env.state.last_rev, 103);
    struct kv_op get = {.kind = KV_OP_GET, .u.get = {.key = kte_b("a"), .revision = 104}};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_FUTURE_REV);
    get.u.get.revision = 103;
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 1);
    get.u.get.revision = 100;
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK, "a unchanged since 100");
    cr_assert_eq(rec.rows_n, 1);
    get.u.get.revision = 99;
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK, "created later, no delete since");
    cr_assert_eq(rec.rows_n, 0);
    get.u.get = (struct kv_get){.key = kte_b("b"), .revision = 101};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_COMPACTED, "b1 is not kept");
    get.u.get = (struct kv_get){.key = kte_b("zz"), .revision = 50};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK, "absent, no delete since");
    cr_assert_eq(rec.rows_n, 0);
    /* Scans: at 102, a and b (b2 at 102) but not c (created at 103). */
    struct kv_op op = {.kind = KV_OP_RANGE,
                       .u.range = {.key = kte_b("a"), .end = kte_b("z"), .revision = 102}};
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 2);
    cr_assert_eq(rec.ops[0].end.count, 2);
    op.u.range.limit = 1;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_eq(rec.ops[0].end.count, 2, "the count at 102, past the limit");
    cr_assert(rec.ops[0].end.more);
    cr_assert_arr_eq(rec.ops[0].end.next_key, "b", 1);
    op.u.range.limit = 0;
    op.u.range.count_only = true;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, 2);
    op.u.range.count_only = false;
    op.u.range.revision = 101;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_COMPACTED, "b's value at 101 is gone");
    /* A delete at 104: absence before it can no longer be told. */
    cr_assert_eq(kte_del(&env, "c", NULL, NULL, NULL), KV_OK);
    cr_assert_eq(env.state.last_delete_rev, 104);
    get.u.get = (struct kv_get){.key = kte_b("a"), .revision = 103};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_COMPACTED);
    get.u.get.revision = 104;
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_eq(kte_put(&env, "d", "d1"), KV_OK);
    get.u.get = (struct kv_get){.key = kte_b("c"), .revision = 104};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK, "c deleted at 104");
    cr_assert_eq(rec.rows_n, 0);
    get.u.get = (struct kv_get){.key = kte_b("d"), .revision = 104};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK, "d created after");
    cr_assert_eq(rec.rows_n, 0);
    op.u.range = (struct kv_range_req){.key = kte_b("a"), .end = kte_b("z"), .revision = 103};
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_COMPACTED, "a delete since 103");
    cr_assert_eq(rec.ops_n, 0, "decided before any row");
    op.u.range.revision = 106;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_FUTURE_REV);
    op.u.range.revision = 104;
    cr_assert_eq(kte_read(&env, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 2, "a and b; c deleted, d created after");
}

Test(kv_read, no_sink_and_partial_sinks)
{
    fill();
    struct kv_op op = {.kind = KV_OP_RANGE, .u.range = {.key = kte_b("k"), .end = kte_b("l")}};
    struct kv_result res;
    cr_assert_eq(kv_read(&env.store, &env.range, &env.state, &op, env.scratch, TS_KV_SCRATCH_BYTES,
                         NULL, &res),
                 0);
    cr_assert_eq(res.status, KV_OK);
    struct kv_sink only_end = {.op_end = NULL, .bytes_max = 100};
    cr_assert_eq(kv_read(&env.store, &env.range, &env.state, &op, env.scratch, TS_KV_SCRATCH_BYTES,
                         &only_end, &res),
                 0);
}
