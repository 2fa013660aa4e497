/*
 * core/kv: transactions. Every compare target against every result, on present and
 * missing keys and over key ranges (etcd's applyCompare); the branch taken; atomicity
 * (a deterministic failure anywhere leaves the store byte for byte unchanged).
 */
#include "kv_testenv.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct kte env;
static struct kte_rec rec;

static void setup(void)
{
    kte_init(&env, 21);
    kte_rec_init(&rec);
}

static void teardown(void)
{
    kte_rec_fini(&rec);
    kte_fini(&env);
}

TestSuite(kv_txn, .init = setup, .fini = teardown);

/* Runs a txn with one compare and a put of "ok" to "res" on success, "ko" on failure;
 * returns whether the compare held (and checks the recorder agrees). */
static bool holds(const struct kv_compare *c)
{
    struct kv_op s = {.kind = KV_OP_GET, .u.get = {.key = kte_b("res")}};
    struct kv_result res;
    cr_assert_eq(kte_txn(&env, c, 1, &s, 1, &s, 1, &rec, &res), KV_OK);
    cr_assert_eq(rec.txn_begun, 1);
    cr_assert_eq(rec.succeeded, res.succeeded);
    cr_assert_not(res.changed, "a read-only txn changes nothing");
    return res.succeeded;
}

static struct kv_compare num(const char *key, uint8_t target, uint8_t result, int64_t n)
{
    return (struct kv_compare){.key = kte_b(key), .target = target, .result = result, .number = n};
}

static struct kv_compare val(const char *key, uint8_t result, const char *v)
{
    return (struct kv_compare){
        .key = kte_b(key), .target = KV_CMP_VALUE, .result = result, .value = kte_b(v)};
}

Test(kv_txn, every_target_and_result_on_a_present_key)
{
    /* k: create 100, mod 101, version 2, lease 8, value "m". */
    env.stamp = 100;
    struct kv_put p = {.key = kte_b("k"), .value = kte_b("a"), .lease = 8};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    p.value = kte_b("m");
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    struct {
        uint8_t target;
        int64_t field;
    } t[] = {{KV_CMP_VERSION, 2}, {KV_CMP_CREATE, 100}, {KV_CMP_MOD, 101}, {KV_CMP_LEASE, 8}};
    for (size_t i = 0; i < 4; i++) {
        int64_t f = t[i].field;
        struct kv_compare c;
        c = num("k", t[i].target, KV_CMP_EQUAL, f);
        cr_assert(holds(&c), "target %u ==", t[i].target);
        c = num("k", t[i].target, KV_CMP_EQUAL, f + 1);
        cr_assert_not(holds(&c));
        c = num("k", t[i].target, KV_CMP_NOT_EQUAL, f - 1);
        cr_assert(holds(&c));
        c = num("k", t[i].target, KV_CMP_NOT_EQUAL, f);
        cr_assert_not(holds(&c));
        c = num("k", t[i].target, KV_CMP_LESS, f + 1);
        cr_assert(holds(&c), "target %u <", t[i].target);
        c = num("k", t[i].target, KV_CMP_LESS, f);
        cr_assert_not(holds(&c));
        c = num("k", t[i].target, KV_CMP_GREATER, f - 1);
        cr_assert(holds(&c));
        c = num("k", t[i].target, KV_CMP_GREATER, f);
        cr_assert_not(holds(&c));
        c = num("k", t[i].target, KV_CMP_GREATER, -1);
        cr_assert(holds(&c), "a negative target is below every field");
    }
    struct kv_compare c = val("k", KV_CMP_EQUAL, "m");
    cr_assert(holds(&c));
    c = val("k", KV_CMP_EQUAL, "mm");
    cr_assert_not(holds(&c));
    c = val("k", KV_CMP_NOT_EQUAL, "n");
    cr_assert(holds(&c));
    c = val("k", KV_CMP_NOT_EQUAL, "m");
    cr_assert_not(holds(&c));
    c = val("k", KV_CMP_LESS, "mm");
    cr_assert(holds(&c), "a prefix is less");
    c = val("k", KV_CMP_LESS, "m");
    cr_assert_not(holds(&c));
    c = val("k", KV_CMP_GREATER, "");
    cr_assert(holds(&c));
    c = val("k", KV_CMP_GREATER, "n");
    cr_assert_not(holds(&c));
}

Test(kv_txn, compares_on_a_missing_key)
{
    /* etcd: the zero kv for numbers (version, revisions, lease 0); a Value compare on a
     * missing key is always false, even NotEqual. */
    uint8_t targets[] = {KV_CMP_VERSION, KV_CMP_CREATE, KV_CMP_MOD, KV_CMP_LEASE};
    for (size_t i = 0; i < 4; i++) {
        struct kv_compare c = num("nope", targets[i], KV_CMP_EQUAL, 0);
        cr_assert(holds(&c));
        c = num("nope", targets[i], KV_CMP_NOT_EQUAL, 0);
        cr_assert_not(holds(&c));
        c = num("nope", targets[i], KV_CMP_LESS, 1);
        cr_assert(holds(&c));
        c = num("nope", targets[i], KV_CMP_GREATER, 0);
        cr_assert_not(holds(&c));
    }
    uint8_t results[] = {KV_CMP_EQUAL, KV_CMP_NOT_EQUAL, KV_CMP_LESS, KV_CMP_GREATER};
    for (size_t i = 0; i < 4; i++) {
        struct kv_compare c = val("nope", results[i], "x");
        cr_assert_not(holds(&c), "value compare %zu on a missing key", i);
        c = val("nope", results[i], "");
        cr_assert_not(holds(&c));
    }
}

Test(kv_txn, range_compares_need_every_key)
{
    env.stamp = 10;
    cr_assert_eq(kte_put(&env, "p/a", "1"), KV_OK);
    cr_assert_eq(kte_put(&env, "p/b", "1"), KV_OK);
    cr_assert_eq(kte_put(&env, "p/b", "2"), KV_OK);
    cr_assert_eq(kte_put(&env, "q", "1"), KV_OK);
    struct kv_compare c = num("p/", KV_CMP_VERSION, KV_CMP_GREATER, 0);
    c.end = kte_b("p0");
    cr_assert(holds(&c), "every key of p/ has a version");
    c = num("p/", KV_CMP_VERSION, KV_CMP_EQUAL, 1);
    c.end = kte_b("p0");
    cr_assert_not(holds(&c), "p/b has version 2");
    c = num("p/", KV_CMP_MOD, KV_CMP_LESS, 13);
    c.end = kte_b("p0");
    cr_assert(holds(&c));
    c = val("p/", KV_CMP_EQUAL, "1");
    c.end = kte_b("p0");
    cr_assert_not(holds(&c));
    c = val("p/a", KV_CMP_EQUAL, "1");
    c.end = kte_b("p/b");
    cr_assert(holds(&c), "[p/a, p/b) holds p/a only");
    c = val("p/", KV_CMP_LESS, "3");
    c.end = kte_all();
    cr_assert(holds(&c), "to the end: p/a, p/b, q");
    /* An empty interval compares the zero kv (and fails for Value). */
    c = num("x", KV_CMP_CREATE, KV_CMP_EQUAL, 0);
    c.end = kte_b("y");
    cr_assert(holds(&c));
    c = val("x", KV_CMP_EQUAL, "");
    c.end = kte_b("y");
    cr_assert_not(holds(&c));
}

Test(kv_txn, branches_and_results)
{
    env.stamp = 500;
    cr_assert_eq(kte_put(&env, "lock", "me"), KV_OK);
    struct kv_compare c = num("lock", KV_CMP_CREATE, KV_CMP_EQUAL, 500);
    struct kv_op s[3] = {
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("x"), .value = kte_b("1"), .prev_kv = true}},
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("x"), .value = kte_b("2"), .prev_kv = true}},
        {.kind = KV_OP_RANGE, .u.range = {.key = kte_b("a"), .end = kte_all()}},
    };
    struct kv_op f[2] = {
        {.kind = KV_OP_DELETE, .u.del = {.key = kte_b("lock"), .prev_kv = true}},
        {.kind = KV_OP_GET, .u.get = {.key = kte_b("lock")}},
    };
    struct kv_result res;
    cr_assert_eq(kte_txn(&env, &c, 1, s, 3, f, 2, &rec, &res), KV_OK);
    cr_assert(res.succeeded && res.changed);
    cr_assert_eq(res.rev, 501);
    cr_assert_eq(rec.ops_n, 3);
    cr_assert_eq(rec.ops[0].rows, 0, "x was new");
    cr_assert_eq(rec.ops[1].rows, 1, "the first put's kv");
    cr_assert_eq(rec.rows[0].version, 1);
    cr_assert_eq(rec.rows[0].mod_rev, 501, "one revision for the whole txn");
    cr_assert_eq(rec.ops[2].end.count, 2, "the range sees the txn's own writes");
    cr_assert_eq(rec.rows[2].version, 2);
    cr_assert_eq(rec.rows[2].mod_rev, 501);
    /* The failure branch. */
    c.number = 1;
    cr_assert_eq(kte_txn(&env, &c, 1, s, 3, f, 2, &rec, &res), KV_OK);
    cr_assert_not(res.succeeded);
    cr_assert(res.changed);
    cr_assert_eq(rec.ops_n, 2);
    cr_assert_eq(rec.ops[0].kind, KV_OP_DELETE);
    cr_assert_eq(rec.ops[0].end.count, 1);
    cr_assert_eq(rec.ops[1].end.count, 0, "the get sees the delete");
    cr_assert_eq(env.state.last_delete_rev, res.rev);
    /* No compares: success. Empty branches: a no-op. */
    cr_assert_eq(kte_txn(&env, NULL, 0, NULL, 0, NULL, 0, &rec, &res), KV_OK);
    cr_assert(res.succeeded);
    cr_assert_not(res.changed);
}

/* Applies the txn and checks it failed with want and changed nothing at all. */
static void fails_unchanged(const struct kv_compare *c, uint32_t cn, const struct kv_op *s,
                            uint32_t sn, const struct kv_op *f, uint32_t fn, uint8_t want)
{
    size_t before_len, after_len;
    uint8_t *before = kte_dump(&env, &before_len);
    struct kv_range_state st = env.state;
    struct kv_result res;
    uint8_t got = kte_txn(&env, c, cn, s, sn, f, fn, &rec, &res);
    cr_assert_eq(got, want, "status %s, want %s", kv_status_name(got), kv_status_name(want));
    cr_assert_not(res.changed);
    cr_assert_eq(rec.txn_begun, 0, "nothing reported");
    uint8_t *after = kte_dump(&env, &after_len);
    cr_assert_eq(before_len, after_len);
    cr_assert_arr_eq(before, after, before_len, "the store is unchanged");
    cr_assert_eq(memcmp(&st, &env.state, sizeof(st)), 0);
    free(before);
    free(after);
}

Test(kv_txn, deterministic_failures_change_nothing)
{
    kte_set_range(&env, 7, "a", "m");
    cr_assert_eq(kte_put(&env, "b", "1"), KV_OK);
    cr_assert_eq(kte_put(&env, "c", "1"), KV_OK);
    struct kv_op good[2] = {
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("b"), .value = kte_b("2")}},
        {.kind = KV_OP_DELETE, .u.del = {.key = kte_b("c")}},
    };
    struct kv_op bad;
    /* ignore_value on a key missing when the op runs: deleted by an earlier op... */
    struct kv_op s[3] = {
        good[0], good[1], {.kind = KV_OP_PUT, .u.put = {.key = kte_b("c"), .ignore_value = true}}};
    fails_unchanged(NULL, 0, s, 3, NULL, 0, KV_KEY_NOT_FOUND);
    /* ...or never there; but fine once an earlier op puts it. */
    s[1] = (struct kv_op){.kind = KV_OP_PUT, .u.put = {.key = kte_b("d"), .ignore_lease = true}};
    fails_unchanged(NULL, 0, s, 2, NULL, 0, KV_KEY_NOT_FOUND);
    s[0] = (struct kv_op){.kind = KV_OP_PUT, .u.put = {.key = kte_b("d"), .value = kte_b("x")}};
    s[2] = (struct kv_op){.kind = KV_OP_DELETE, .u.del = {.key = kte_b("a"), .end = kte_b("e")}};
    struct kv_result res;
    cr_assert_eq(kte_txn(&env, NULL, 0, s, 3, NULL, 0, &rec, &res), KV_OK);
    cr_assert_eq(rec.ops[2].end.count, 3, "b, c, d");
    cr_assert_eq(kte_put(&env, "b", "1"), KV_OK);
    /* A bad op in the branch not taken fails the txn too (etcd checks both). */
    bad = (struct kv_op){.kind = KV_OP_PUT, .u.put = {.key = kte_b("z"), .value = kte_b("1")}};
    fails_unchanged(NULL, 0, good, 2, &bad, 1, KV_RANGE_MISMATCH);
    bad.u.put.key = kte_b("");
    fails_unchanged(NULL, 0, good, 2, &bad, 1, KV_INVALID);
    uint8_t *big = calloc(1, TS_KV_VALUE_BYTES_MAX + 1u);
    memset(big, 'b', TS_KV_KEY_BYTES_MAX + 1u);
    bad.u.put.key = (struct kv_bytes){big, TS_KV_KEY_BYTES_MAX + 1u};
    fails_unchanged(NULL, 0, &bad, 1, good, 2, KV_KEY_TOO_LARGE);
    bad.u.put.key = kte_b("b");
    bad.u.put.value = (struct kv_bytes){big, TS_KV_VALUE_BYTES_MAX + 1u};
    fails_unchanged(NULL, 0, good, 2, &bad, 1, KV_VALUE_TOO_LARGE);
    /* Compares: outside the range, a value too large, an end past hi. */
    struct kv_compare c = num("zz", KV_CMP_VERSION, KV_CMP_EQUAL, 0);
    fails_unchanged(&c, 1, good, 2, NULL, 0, KV_RANGE_MISMATCH);
    c = val("b", KV_CMP_EQUAL, "1");
    c.value = (struct kv_bytes){big, TS_KV_VALUE_BYTES_MAX + 1u};
    fails_unchanged(&c, 1, good, 2, NULL, 0, KV_VALUE_TOO_LARGE);
    c = num("b", KV_CMP_VERSION, KV_CMP_EQUAL, 0);
    c.end = kte_all();
    fails_unchanged(&c, 1, good, 2, NULL, 0, KV_RANGE_MISMATCH);
    /* Reads inside a txn: revision 0 only; inside the range. */
    bad = (struct kv_op){.kind = KV_OP_GET, .u.get = {.key = kte_b("b"), .revision = 3}};
    fails_unchanged(NULL, 0, good, 2, &bad, 1, KV_INVALID);
    bad = (struct kv_op){.kind = KV_OP_RANGE, .u.range = {.key = kte_b("b"), .revision = 3}};
    fails_unchanged(NULL, 0, good, 2, &bad, 1, KV_INVALID);
    bad = (struct kv_op){.kind = KV_OP_RANGE, .u.range = {.key = kte_b("b"), .end = kte_b("zz")}};
    fails_unchanged(NULL, 0, good, 2, &bad, 1, KV_RANGE_MISMATCH);
    free(big);
}

Test(kv_txn, a_store_error_midway_is_returned)
{
    /* The replica stops; the WAL replays the entry on a fresh open (no partial state is
     * checkpointed), so a partial txn in memory is acceptable. */
    cr_assert_eq(kte_put(&env, "a", "1"), KV_OK);
    struct kv_op s[2] = {
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("a"), .value = kte_b("2")}},
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("b"), .value = kte_b("2")}},
    };
    struct kv_compare c = val("a", KV_CMP_EQUAL, "1");
    size_t len;
    cr_assert_eq(kv_cmd_encode_txn(7, 5000, &c, 1, s, 2, NULL, 0, env.cmd, 4096, &len), 0);
    for (long n = 0; n < 6; n++) {
        struct kv_range_state st = env.state;
        env.fail_after = n;
        struct kv_result res;
        int rc = kte_apply_bytes(&env, env.cmd, len, &rec, &res);
        env.fail_after = -1;
        cr_assert_eq(rc, -EIO, "fail at call %ld: %d", n, rc);
        cr_assert_eq(env.state.last_rev, st.last_rev, "the state is not advanced");
    }
}
