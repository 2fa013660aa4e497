/*
 * kv_ops: every key-value operation of the client library (net/client/tessera.h) against
 * a real 3-node cluster (2 shards, 8 ranges, so the keyspace is cut at every 0x20 of the
 * first byte): put with prev_kv, get (found and missing, linearizable and serializable),
 * delete of a key and of an interval, scans over several ranges with limit, keys_only,
 * count_only and paging, transactions (compares on value, version, create and mod
 * revisions, both branches, a compare-and-swap), revisions and versions, status and
 * members, and the errors (limits, an empty key, a txn over two ranges).
 *
 * Each Test starts its own cluster (cluster.h) in .init and stops it in .fini; the nodes
 * die with the test process whatever happens (PR_SET_PDEATHSIG).
 */
#include "tests/e2e/capture.h"
#include "tests/e2e/suite.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TESSERAD_PATH
#error "TESSERAD_PATH must name the tesserad binary"
#endif

#define WAIT_MS 30000u /* longer than a request's deadline: the callback always runs */

static struct e2e_cluster cluster;
static struct tessera_client *cl;

static void up(void)
{
    e2e_suite_up(&cluster, 3, 2, 8, NULL);
    cl = e2e_client(&cluster, 0, 0);
    cr_assert_not_null(cl);
}

static void down(void)
{
    tessera_client_free(cl);
    cl = NULL;
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_ops, .init = up, .fini = down, .timeout = 240);

/* ------------------------------------------------------------------ helpers */

static int put(const char *k, size_t kl, const char *v, uint32_t flags, struct e2e_capture *cap)
{
    memset(cap, 0, sizeof *cap);
    return e2e_capture_wait(
        cl, cap, tessera_put_async(cl, k, kl, v, strlen(v), 0, flags, e2e_capture_cb, cap),
        WAIT_MS);
}

static int get(const char *k, size_t kl, enum tessera_consistency cons, struct e2e_capture *cap)
{
    memset(cap, 0, sizeof *cap);
    return e2e_capture_wait(cl, cap, tessera_get_async(cl, k, kl, cons, e2e_capture_cb, cap),
                            WAIT_MS);
}

static int del(const char *k, size_t kl, const char *end, size_t el, uint32_t flags,
               struct e2e_capture *cap)
{
    memset(cap, 0, sizeof *cap);
    return e2e_capture_wait(
        cl, cap, tessera_delete_async(cl, k, kl, end, el, flags, e2e_capture_cb, cap), WAIT_MS);
}

static int range1(const struct tessera_range_opts *o, struct e2e_capture *cap)
{
    memset(cap, 0, sizeof *cap);
    return e2e_capture_wait(cl, cap, tessera_range_async(cl, o, e2e_capture_cb, cap), WAIT_MS);
}

static int txn(const struct tessera_compare *cmp, size_t ncmp, const struct tessera_txn_op *t,
               size_t nt, const struct tessera_txn_op *e, size_t ne, struct e2e_capture *cap)
{
    memset(cap, 0, sizeof *cap);
    return e2e_capture_wait(
        cl, cap, tessera_txn_async(cl, cmp, ncmp, t, nt, e, ne, e2e_capture_cb, cap), WAIT_MS);
}

#define S(lit) lit, (sizeof(lit) - 1)

/* ------------------------------------------------------------------ put, get, delete */

/* Puts with and without prev_kv, then reads of the key; returns the last revision. */
static uint64_t put_then_get(void)
{
    struct e2e_capture a, b;
    cr_assert_eq(put(S("\x10k"), "v1", TESSERA_PREV_KV, &a), 0, "put: %s %s",
                 tessera_strerror(a.status), a.message);
    cr_assert_eq(a.op, TESSERA_OP_PUT);
    cr_assert(!a.flag, "a new key has no previous value");
    cr_assert_gt(a.revision, 0);
    uint64_t r1 = a.revision;
    cr_assert_eq(put(S("\x10k"), "v2", TESSERA_PREV_KV, &b), 0);
    cr_assert(b.flag, "prev_kv of an existing key");
    cr_assert(e2e_kv_value_is(&b.kv, "v1"));
    cr_assert_eq(b.kv.version, 1);
    cr_assert_eq(b.kv.create_revision, r1);
    cr_assert_eq(b.kv.mod_revision, r1);
    cr_assert_gt(b.revision, r1, "revisions increase");
    uint64_t r2 = b.revision;
    /* Without the flag: no previous value even though one exists. */
    cr_assert_eq(put(S("\x10k"), "v3", 0, &a), 0);
    cr_assert(!a.flag);
    uint64_t r3 = a.revision;
    cr_assert_gt(r3, r2);

    cr_assert_eq(get(S("\x10k"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert_eq(a.op, TESSERA_OP_GET);
    cr_assert(a.flag);
    cr_assert(e2e_kv_value_is(&a.kv, "v3"));
    cr_assert_eq(a.kv.version, 3);
    cr_assert_eq(a.kv.create_revision, r1);
    cr_assert_eq(a.kv.mod_revision, r3);
    cr_assert_eq(a.kv.key_len, 2);
    cr_assert_eq(memcmp(a.kv.key, "\x10k", 2), 0);
    /* A serializable read may lag; it converges (bounded) and never goes backwards. */
    uint64_t deadline = e2e_now_ms() + 10000;
    do {
        cr_assert_eq(get(S("\x10k"), TESSERA_SERIALIZABLE, &a), 0);
    } while (!(a.flag && e2e_kv_value_is(&a.kv, "v3")) && e2e_now_ms() < deadline);
    cr_assert(a.flag && e2e_kv_value_is(&a.kv, "v3"), "a serializable read converges");

    return r3;
}

static void get_missing(void)
{
    struct e2e_capture a;
    /* Missing keys: found == 0 with status 0; the blocking call says ENOTFOUND. */
    cr_assert_eq(get(S("\x10missing"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert(!a.flag);
    cr_assert_eq(get(S("\x10missing"), TESSERA_SERIALIZABLE, &a), 0);
    cr_assert(!a.flag);
    char buf[16];
    size_t vl = 0;
    struct tessera_kv meta;
    cr_assert_eq(
        tessera_get(cl, S("\x10missing"), TESSERA_LINEARIZABLE, buf, sizeof buf, &vl, &meta, 0),
        TESSERA_ENOTFOUND);
    cr_assert_eq(tessera_get(cl, S("\x10k"), TESSERA_LINEARIZABLE, buf, sizeof buf, &vl, &meta, 0),
                 0);
    cr_assert_eq(vl, 2);
    cr_assert_eq(memcmp(buf, "v3", 2), 0);
    cr_assert_eq(meta.version, 3);
}

static void delete_key(uint64_t r3)
{
    struct e2e_capture a, b;
    /* Delete one key, with its previous value. */
    cr_assert_eq(del(S("\x10k"), NULL, 0, TESSERA_PREV_KV, &a), 0);
    cr_assert_eq(a.op, TESSERA_OP_DELETE);
    cr_assert_eq(a.count, 1);
    cr_assert_eq(a.rows_n, 1);
    cr_assert(e2e_kv_value_is(&a.rows[0], "v3"));
    cr_assert_gt(a.revision, r3);
    cr_assert_eq(get(S("\x10k"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert(!a.flag, "a deleted key is gone");
    cr_assert_eq(del(S("\x10k"), NULL, 0, 0, &a), 0);
    cr_assert_eq(a.count, 0, "deleting a missing key deletes nothing");
    /* Re-created: version starts again at 1 with a new create revision. */
    cr_assert_eq(put(S("\x10k"), "again", 0, &a), 0);
    cr_assert_eq(get(S("\x10k"), TESSERA_LINEARIZABLE, &b), 0);
    cr_assert_eq(b.kv.version, 1);
    cr_assert_eq(b.kv.create_revision, a.revision);
}

static void delete_interval(void)
{
    struct e2e_capture a;
    /* Delete an interval [d/, d0): five keys, their previous values, nothing else. */
    char k[8];
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof k, "\060d/%d", i);
        cr_assert_eq(put(k, strlen(k), "x", 0, &a), 0);
    }
    cr_assert_eq(put(S("\060d0"), "outside", 0, &a), 0);
    cr_assert_eq(del(S("\060d/"), S("\060d0"), TESSERA_PREV_KV, &a), 0);
    cr_assert_eq(a.count, 5);
    cr_assert_eq(a.rows_n, 5);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(a.rows[i].key_len, 4);
        cr_assert_eq(a.rows[i].key[3], '0' + i, "prev kvs in key order");
        cr_assert(e2e_kv_value_is(&a.rows[i], "x"));
    }
    uint64_t deleted = 99;
    cr_assert_eq(tessera_delete(cl, S("\060d/"), S("\060d0"), &deleted, 0), 0);
    cr_assert_eq(deleted, 0);
    cr_assert_eq(get(S("\060d0"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert(a.flag, "the key at the interval's end is not deleted");
}

Test(kv_ops, put_get_delete)
{
    uint64_t r3 = put_then_get();
    get_missing();
    delete_key(r3);
    delete_interval();
}

/* Revisions strictly increase within a range; versions count the puts of a key. */
Test(kv_ops, revisions_and_versions)
{
    struct e2e_capture a;
    uint64_t last[3] = {0, 0, 0};
    const char *pre[3] = {"\x50r", "\x90r", "\xd0r"};
    for (int i = 0; i < 30; i++) {
        char k[8];
        snprintf(k, sizeof k, "%s%d", pre[i % 3], i % 4);
        cr_assert_eq(put(k, strlen(k), "v", 0, &a), 0);
        cr_assert_gt(a.revision, last[i % 3], "put %d: revision %llu after %llu", i,
                     (unsigned long long)a.revision, (unsigned long long)last[i % 3]);
        last[i % 3] = a.revision;
    }
    for (int i = 1; i <= 7; i++) {
        cr_assert_eq(put(S("\x50ver"), "x", 0, &a), 0);
        struct e2e_capture g;
        cr_assert_eq(get(S("\x50ver"), TESSERA_LINEARIZABLE, &g), 0);
        cr_assert_eq(g.kv.version, (uint64_t)i);
        cr_assert_eq(g.kv.mod_revision, a.revision);
        cr_assert_geq(g.revision, a.revision, "a read's revision is at least the write's");
    }
}

/* ------------------------------------------------------------------ scans */

struct rows {
    size_t n;
    char keys[32][8];
    bool values;
};

static int row_cb(void *data, const struct tessera_kv *kv)
{
    struct rows *r = data;
    if (r->n < 32 && kv->key_len < 8) {
        memcpy(r->keys[r->n], kv->key, kv->key_len);
        r->keys[r->n][kv->key_len] = 0;
    }
    r->values = r->values || kv->value != NULL;
    r->n++;
    return 0;
}

/* 15 keys in three ranges (first bytes 0x10, 0x80, 0xf0), plus keys around them. */
static void scan_fill(char expect[15][8])
{
    static const char *pre[3] = {"\020a", "\200b", "\360c"};
    struct e2e_capture a;
    for (int i = 0; i < 15; i++) {
        snprintf(expect[i], 8, "%s%02d", pre[i / 5], i % 5);
        char v[8];
        snprintf(v, sizeof v, "v%02d", i);
        cr_assert_eq(put(expect[i], strlen(expect[i]), v, 0, &a), 0, "put %d: %s", i,
                     tessera_strerror(a.status));
    }
    cr_assert_eq(put(S("\010before"), "x", 0, &a), 0);
    cr_assert_eq(put(S("\370after"), "x", 0, &a), 0);
}

Test(kv_ops, range_scans)
{
    char expect[15][8];
    scan_fill(expect);
    struct tessera_range_opts o = {.key = "\x10",
                                   .key_len = 1,
                                   .range_end = "\xf1",
                                   .range_end_len = 1,
                                   .consistency = TESSERA_LINEARIZABLE};
    /* The whole interval, paged by tessera_range across the ranges. */
    struct rows r = {0};
    uint64_t count = 0;
    cr_assert_eq(tessera_range(cl, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(r.n, 15, "rows: %zu", r.n);
    cr_assert_eq(count, 15);
    for (int i = 0; i < 15; i++) {
        cr_assert_str_eq(r.keys[i], expect[i], "row %d in key order", i);
    }
    cr_assert(r.values);
    /* limit: the first 7 only (spanning two ranges). */
    o.limit = 7;
    memset(&r, 0, sizeof r);
    cr_assert_eq(tessera_range(cl, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(r.n, 7);
    cr_assert_str_eq(r.keys[6], expect[6]);
    /* keys_only: no values. */
    o.limit = 0;
    o.flags = TESSERA_KEYS_ONLY;
    memset(&r, 0, sizeof r);
    cr_assert_eq(tessera_range(cl, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(r.n, 15);
    cr_assert(!r.values, "keys_only returned values");
    /* Serializable scans see the same keys (bounded wait for a lagging replica). */
    o.flags = 0;
    o.consistency = TESSERA_SERIALIZABLE;
    uint64_t deadline = e2e_now_ms() + 10000;
    do {
        memset(&r, 0, sizeof r);
        cr_assert_eq(tessera_range(cl, &o, row_cb, &r, &count, 0), 0);
    } while (r.n != 15 && e2e_now_ms() < deadline);
    cr_assert_eq(r.n, 15);
}

Test(kv_ops, range_count_only)
{
    char expect[15][8];
    scan_fill(expect);
    struct tessera_range_opts o = {.key = "\x10",
                                   .key_len = 1,
                                   .range_end = "\xf1",
                                   .range_end_len = 1,
                                   .flags = TESSERA_COUNT_ONLY};
    /* Within one range. */
    struct e2e_capture a;
    struct tessera_range_opts one = {.key = "\x10",
                                     .key_len = 1,
                                     .range_end = "\x11",
                                     .range_end_len = 1,
                                     .flags = TESSERA_COUNT_ONLY};
    cr_assert_eq(range1(&one, &a), 0);
    cr_assert_eq(a.count, 5);
    cr_assert_eq(a.rows_n, 0, "count_only returned rows");
    /* Page by hand: each range answers the count of its part of the interval and sends
     * the scan on (more, next_key = its end); the counts add up to every key. */
    uint8_t key[E2E_CAP_BYTES];
    struct tessera_range_opts page = o;
    uint64_t sum = 0;
    for (int pages = 0; pages < 16; pages++) {
        cr_assert_eq(range1(&page, &a), 0);
        sum += a.count;
        if (!a.flag) {
            break;
        }
        cr_assert(a.has_next_key && a.next_key_len < sizeof key);
        memcpy(key, a.next_key, a.next_key_len);
        page.key = key;
        page.key_len = a.next_key_len;
    }
    cr_assert_eq(sum, 15, "the ranges' counts add up to %llu", (unsigned long long)sum);
    /* Across three ranges through tessera_range: the count of every key in the interval. */
    uint64_t count = 0;
    struct rows r = {0};
    cr_assert_eq(tessera_range(cl, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(count, 15, "count_only over three ranges counted %llu keys, not 15",
                 (unsigned long long)count);
}

/* One request at a time, following more/next_key by hand: pages of 2 rows. */
Test(kv_ops, range_paging)
{
    char expect[15][8];
    scan_fill(expect);
    struct tessera_range_opts o = {
        .key = "\x10", .key_len = 1, .range_end = "\xf1", .range_end_len = 1, .limit = 2};
    uint8_t key[E2E_CAP_BYTES];
    size_t got = 0;
    int pages = 0;
    struct e2e_capture a;
    for (; pages < 64; pages++) {
        cr_assert_eq(range1(&o, &a), 0, "page %d: %s", pages, tessera_strerror(a.status));
        cr_assert_leq(a.rows_n, 2, "a page holds at most `limit` rows");
        for (size_t i = 0; i < a.rows_n; i++, got++) {
            cr_assert_lt(got, 15);
            cr_assert_eq(a.rows[i].key_len, strlen(expect[got]));
            cr_assert_eq(memcmp(a.rows[i].key, expect[got], a.rows[i].key_len), 0, "row %zu", got);
        }
        if (!a.flag) {
            break;
        }
        /* Where to go on: next_key, or after the page's last row. */
        if (a.has_next_key) {
            cr_assert_lt(a.next_key_len, sizeof key);
            memcpy(key, a.next_key, a.next_key_len);
            o.key_len = a.next_key_len;
        } else {
            cr_assert_gt(a.rows_n, 0, "more without next_key nor rows");
            size_t kl = a.rows[a.rows_n - 1].key_len;
            memcpy(key, a.rows[a.rows_n - 1].key, kl);
            key[kl] = 0;
            o.key_len = kl + 1;
        }
        o.key = key;
    }
    cr_assert_eq(got, 15, "paging saw %zu keys", got);
    cr_assert_geq(pages, 7, "15 rows in pages of 2 take at least 8 requests");
}

/* ------------------------------------------------------------------ txn */

static struct tessera_compare cmp_num(const char *k, enum tessera_compare_target t,
                                      enum tessera_compare_result r, int64_t n)
{
    return (struct tessera_compare){
        .key = k, .key_len = strlen(k), .target = t, .result = r, .number = n};
}

static struct tessera_compare cmp_value(const char *k, enum tessera_compare_result r, const char *v)
{
    return (struct tessera_compare){.key = k,
                                    .key_len = strlen(k),
                                    .target = TESSERA_CMP_VALUE,
                                    .result = r,
                                    .value = v,
                                    .value_len = strlen(v)};
}

static struct tessera_txn_op op_put(const char *k, const char *v)
{
    return (struct tessera_txn_op){
        .op = TESSERA_OP_PUT, .key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
}

static struct tessera_txn_op op_get(const char *k)
{
    return (struct tessera_txn_op){.op = TESSERA_OP_GET, .key = k, .key_len = strlen(k)};
}

/* Runs `if cmp then put(k, "then") ; get(k) else get(k)`; returns succeeded. */
static bool txn_branch(struct tessera_compare c, const char *k, const char *expect_value)
{
    struct tessera_txn_op t[2] = {op_put(k, "then"), op_get(k)};
    struct tessera_txn_op e[1] = {op_get(k)};
    struct e2e_capture a;
    cr_assert_eq(txn(&c, 1, t, 2, e, 1, &a), 0, "txn: %s %s", tessera_strerror(a.status),
                 a.message);
    cr_assert_eq(a.op, TESSERA_OP_TXN);
    if (a.flag) {
        cr_assert_eq(a.count, 2, "then: two results");
        cr_assert_eq(a.txn_op[0], TESSERA_OP_PUT);
        cr_assert_eq(a.txn_op[1], TESSERA_OP_GET);
        cr_assert(a.txn_found[1] && e2e_kv_value_is(&a.txn_kv[1], "then"),
                  "the get after the put sees it");
    } else {
        cr_assert_eq(a.count, 1, "else: one result");
        cr_assert_eq(a.txn_op[0], TESSERA_OP_GET);
        cr_assert(a.txn_found[0] && e2e_kv_value_is(&a.txn_kv[0], expect_value));
    }
    return a.flag;
}

Test(kv_ops, txn)
{
    const char *k = "\x40t";
    struct e2e_capture a, g;
    cr_assert_eq(put(k, strlen(k), "a", 0, &a), 0);
    cr_assert_eq(get(k, strlen(k), TESSERA_LINEARIZABLE, &g), 0);
    uint64_t create = g.kv.create_revision;

    /* value: miss then hit. */
    cr_assert(!txn_branch(cmp_value(k, TESSERA_CMP_EQUAL, "zzz"), k, "a"));
    cr_assert(txn_branch(cmp_value(k, TESSERA_CMP_EQUAL, "a"), k, NULL));
    /* now "then", version 2 */
    cr_assert(txn_branch(cmp_value(k, TESSERA_CMP_NOT_EQUAL, "a"), k, NULL));
    cr_assert_eq(get(k, strlen(k), TESSERA_LINEARIZABLE, &g), 0);
    cr_assert_eq(g.kv.version, 3);
    uint64_t mod = g.kv.mod_revision;
    /* version */
    cr_assert(!txn_branch(cmp_num(k, TESSERA_CMP_VERSION, TESSERA_CMP_EQUAL, 2), k, "then"));
    cr_assert(!txn_branch(cmp_num(k, TESSERA_CMP_VERSION, TESSERA_CMP_GREATER, 5), k, "then"));
    cr_assert(txn_branch(cmp_num(k, TESSERA_CMP_VERSION, TESSERA_CMP_EQUAL, 3), k, NULL));
    cr_assert(txn_branch(cmp_num(k, TESSERA_CMP_VERSION, TESSERA_CMP_LESS, 100), k, NULL));
    /* create revision: unchanged by puts */
    cr_assert(!txn_branch(cmp_num(k, TESSERA_CMP_CREATE, TESSERA_CMP_NOT_EQUAL, (int64_t)create), k,
                          "then"));
    cr_assert(
        txn_branch(cmp_num(k, TESSERA_CMP_CREATE, TESSERA_CMP_EQUAL, (int64_t)create), k, NULL));
    /* mod revision: moved by the last put */
    cr_assert_eq(get(k, strlen(k), TESSERA_LINEARIZABLE, &g), 0);
    cr_assert_gt(g.kv.mod_revision, mod);
    mod = g.kv.mod_revision;
    cr_assert(!txn_branch(cmp_num(k, TESSERA_CMP_MOD, TESSERA_CMP_LESS, (int64_t)mod), k, "then"));
    cr_assert(txn_branch(cmp_num(k, TESSERA_CMP_MOD, TESSERA_CMP_EQUAL, (int64_t)mod), k, NULL));

    /* Compare-and-swap: create "lock" only when absent (version 0); the second loses. */
    const char *lk = "\x40lock";
    struct tessera_compare absent = cmp_num(lk, TESSERA_CMP_VERSION, TESSERA_CMP_EQUAL, 0);
    struct tessera_txn_op t1 = op_put(lk, "owner-1");
    struct tessera_txn_op t2 = op_put(lk, "owner-2");
    struct tessera_txn_op e = op_get(lk);
    int ok = -1;
    cr_assert_eq(tessera_txn(cl, &absent, 1, &t1, 1, &e, 1, &ok, 0), 0);
    cr_assert_eq(ok, 1, "the first CAS wins");
    cr_assert_eq(txn(&absent, 1, &t2, 1, &e, 1, &a), 0);
    cr_assert(!a.flag, "the second CAS loses");
    cr_assert(a.txn_found[0] && e2e_kv_value_is(&a.txn_kv[0], "owner-1"));
    cr_assert_eq(get(lk, strlen(lk), TESSERA_LINEARIZABLE, &g), 0);
    cr_assert(e2e_kv_value_is(&g.kv, "owner-1"));
    cr_assert_eq(g.kv.version, 1);
    /* A txn without compares runs its then branch. */
    struct tessera_txn_op t3 = op_get(lk);
    cr_assert_eq(txn(NULL, 0, &t3, 1, NULL, 0, &a), 0);
    cr_assert(a.flag);
}

/* A txn whose keys lie in two ranges is refused with an error (single-range txns only),
 * and none of its writes happen. */
Test(kv_ops, txn_two_ranges)
{
    struct e2e_capture a;
    cr_assert_eq(put(S("\x40x"), "1", 0, &a), 0);
    struct tessera_compare c = cmp_num("\x40x", TESSERA_CMP_VERSION, TESSERA_CMP_GREATER, 0);
    struct tessera_txn_op t[2] = {op_put("\x40y", "1"), op_put("\xc0y", "1")};
    struct tessera_client_stats st0, st1;
    tessera_client_get_stats(cl, &st0);
    int rc = txn(&c, 1, t, 2, NULL, 0, &a);
    tessera_client_get_stats(cl, &st1);
    fprintf(stderr, "kv_ops: the txn over two ranges took %llu re-sends\n",
            (unsigned long long)(st1.redirects - st0.redirects));
    cr_assert_neq(rc, 0, "a txn over two ranges succeeded");
    cr_assert_eq(a.has_resp, true, "the node answers it (%s)", tessera_strerror(rc));
    fprintf(stderr, "kv_ops: a txn over two ranges: %s (%s)\n", tessera_strerror(rc), a.message);
    cr_assert_eq(get(S("\x40y"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert(!a.flag, "a refused txn wrote its first range");
    cr_assert_eq(get(S("\xc0y"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert(!a.flag, "a refused txn wrote its second range");
    /* The compare in one range, the op in another. */
    struct tessera_compare c2 = cmp_num("\xc0z", TESSERA_CMP_VERSION, TESSERA_CMP_EQUAL, 0);
    struct tessera_txn_op t2 = op_put("\x40z", "1");
    rc = txn(&c2, 1, &t2, 1, NULL, 0, &a);
    cr_assert_neq(rc, 0, "a txn comparing in one range and writing another succeeded");
    cr_assert_eq(get(S("\x40z"), TESSERA_LINEARIZABLE, &a), 0);
    cr_assert(!a.flag);
}

/* ------------------------------------------------------------------ status, members */

static void members_cb(void *data, int status, const struct tessera_response *r)
{
    struct e2e_cluster *c = &cluster;
    int *ok = data;
    *ok = 0;
    if (status != 0 || r == NULL || r->op != TESSERA_OP_MEMBERS || r->u.members.count != c->n) {
        return;
    }
    bool up = true;
    for (size_t i = 0; i < r->u.members.count; i++) {
        struct tessera_member m;
        if (tessera_response_member_at(r, i, &m) != 0 || m.address == NULL) {
            return;
        }
        uint64_t id = m.node_id;
        if (id < 1 || id > c->n || strcmp(m.address, c->node[id - 1].addr) != 0) {
            return;
        }
        up = up && m.state == TESSERA_NODE_UP;
    }
    *ok = up ? 2 : 1;
}

Test(kv_ops, status_and_members)
{
    uint64_t cluster_id = 0;
    uint64_t deadline = e2e_now_ms() + 30000;
    uint32_t leaders = 0;
    do {
        leaders = 0;
        for (uint32_t i = 0; i < cluster.n; i++) {
            struct e2e_capture a = {0};
            cr_assert_eq(e2e_capture_wait(
                             cl, &a, tessera_status_async(cl, (int)i, e2e_capture_cb, &a), WAIT_MS),
                         0);
            cr_assert_eq(a.op, TESSERA_OP_STATUS);
            cr_assert_eq(a.node_id, i + 1, "endpoint %u is node %u", i, i + 1);
            cr_assert_neq(a.cluster_id, 0);
            cr_assert(cluster_id == 0 || a.cluster_id == cluster_id, "one cluster id");
            cluster_id = a.cluster_id;
            cr_assert_eq(a.shards, 2);
            cr_assert_eq(a.replicas, 8, "3 nodes: every node hosts all 8 ranges");
            leaders += a.leaders;
        }
        if (leaders != 8) {
            usleep(200000);
        }
    } while (leaders != 8 && e2e_now_ms() < deadline);
    cr_assert_eq(leaders, 8, "each range has one leader (%u reported)", leaders);

    int ok = 0;
    deadline = e2e_now_ms() + 30000;
    for (;;) {
        ok = -1;
        cr_assert_eq(tessera_members_async(cl, TESSERA_LINEARIZABLE, members_cb, &ok), 0);
        uint64_t d = e2e_now_ms() + WAIT_MS;
        while (ok == -1 && e2e_now_ms() < d) {
            (void)tessera_client_run(cl, 100);
        }
        if (ok == 2 || e2e_now_ms() >= deadline) {
            break;
        }
        usleep(200000);
    }
    cr_assert_eq(ok, 2, "members: the 3 nodes, their addresses, all up (%d)", ok);
}

/* ------------------------------------------------------------------ errors */

Test(kv_ops, errors)
{
    static uint8_t big[TESSERA_VALUE_BYTES_MAX + 1];
    memset(big, 'k', sizeof big);
    big[0] = 0x60; /* in range 4 */
    struct e2e_capture a = {0};
    /* Client-side limits: refused before anything is sent, the callback never runs. */
    cr_assert_eq(
        tessera_put_async(cl, big, TESSERA_KEY_BYTES_MAX + 1, "v", 1, 0, 0, e2e_capture_cb, &a),
        TESSERA_ETOOBIG);
    cr_assert_eq(tessera_put(cl, big, TESSERA_KEY_BYTES_MAX + 1, "v", 1, 0, 0, 0), TESSERA_ETOOBIG);
    cr_assert_eq(tessera_get(cl, big, TESSERA_KEY_BYTES_MAX + 1, TESSERA_LINEARIZABLE, NULL, 0,
                             NULL, NULL, 0),
                 TESSERA_ETOOBIG);
    cr_assert_eq(tessera_put(cl, S("\x60v"), big, TESSERA_VALUE_BYTES_MAX + 1, 0, 0, 0),
                 TESSERA_ETOOBIG);
    cr_assert(!a.done, "a refused request ran its callback");
    /* At the limits exactly: accepted and read back whole. */
    cr_assert_eq(tessera_put(cl, big, TESSERA_KEY_BYTES_MAX, "max-key", 7, 0, 0, 0), 0);
    char buf[16];
    size_t vl = 0;
    cr_assert_eq(tessera_get(cl, big, TESSERA_KEY_BYTES_MAX, TESSERA_LINEARIZABLE, buf, sizeof buf,
                             &vl, NULL, 0),
                 0);
    cr_assert_eq(vl, 7);
    cr_assert_eq(tessera_put(cl, S("\x60v"), big, TESSERA_VALUE_BYTES_MAX, 0, 0, 0), 0);
    static uint8_t back[TESSERA_VALUE_BYTES_MAX];
    cr_assert_eq(tessera_get(cl, S("\x60v"), TESSERA_LINEARIZABLE, back, sizeof back, &vl, NULL, 0),
                 0);
    cr_assert_eq(vl, TESSERA_VALUE_BYTES_MAX);
    cr_assert_eq(memcmp(back, big, vl), 0, "the largest value comes back intact");

    /* An empty key: an error, never a success (client EINVAL or the node's answer). */
    int rc = put("", 0, "v", 0, &a);
    cr_assert_neq(rc, 0, "a put of an empty key succeeded");
    fprintf(stderr, "kv_ops: put of an empty key: %s\n", tessera_strerror(rc));
    rc = get("", 0, TESSERA_LINEARIZABLE, &a);
    cr_assert_neq(rc, 0, "a get of an empty key succeeded");
    rc = del("", 0, NULL, 0, 0, &a);
    cr_assert_neq(rc, 0, "a delete of an empty key succeeded");
    /* The node keeps serving afterwards. */
    cr_assert_eq(put(S("\140after"), "ok", 0, &a), 0);
}

/* ------------------------------------------------------------------ large answers */

static int count_big(void *data, const struct tessera_kv *kv)
{
    uint64_t *n = data;
    if (kv->value_len != 100000u || kv->value[0] != 'B' || kv->value[99999] != 'b') {
        return -1;
    }
    (*n)++;
    return 0;
}

/* 60 values of 100 kB in one range (6 MB, more than one answer may carry): a scan with no
 * limit pages by size and still returns every row once, in order. */
Test(kv_ops, range_pages_by_size)
{
    static uint8_t v[100000];
    memset(v, 'x', sizeof v);
    v[0] = 'B';
    v[sizeof v - 1] = 'b';
    for (int i = 0; i < 60; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "\120big/%02d", i);
        cr_assert_eq(tessera_put(cl, k, (size_t)kl, v, sizeof v, 0, 0, 0), 0, "put %d", i);
    }
    struct tessera_range_opts o = {
        .key = "\120big/", .key_len = 5, .range_end = "\120big0", .range_end_len = 5};
    uint64_t rows = 0, count = 0;
    cr_assert_eq(tessera_range(cl, &o, count_big, &rows, &count, 0), 0);
    cr_assert_eq(rows, 60, "rows %llu", (unsigned long long)rows);
    cr_assert_eq(count, 60);
    /* One request: the first page is cut by size, with more set. */
    struct e2e_capture a;
    cr_assert_eq(range1(&o, &a), 0);
    cr_assert_lt(a.rows_n, 60, "one answer carried all 6 MB");
    cr_assert_gt(a.rows_n, 0);
    cr_assert(a.flag, "a page cut by size sets more");
}

/* A delete over several ranges either deletes every key of the interval or fails and
 * deletes none: never a part. */
Test(kv_ops, delete_across_ranges)
{
    char expect[15][8];
    scan_fill(expect);
    struct e2e_capture a;
    int rc = del(S("\020"), S("\361"), 0, &a);
    struct tessera_range_opts o = {
        .key = "\020", .key_len = 1, .range_end = "\361", .range_end_len = 1};
    struct rows r = {0};
    uint64_t count = 0;
    cr_assert_eq(tessera_range(cl, &o, row_cb, &r, &count, 0), 0);
    fprintf(stderr, "kv_ops: a delete over three ranges: %s, %llu deleted, %zu keys left\n",
            tessera_strerror(rc), (unsigned long long)a.count, r.n);
    if (rc == 0) {
        cr_assert_eq(a.count, 15);
        cr_assert_eq(r.n, 0, "a successful delete left %zu keys", r.n);
    } else {
        cr_assert_eq(r.n, 15, "a failed delete removed %zu of 15 keys", 15 - r.n);
    }
}
