/*
 * core/kv: puts and deletes through kv_apply: versions and revisions, every status of a
 * single command, store errors passed through, and the range metadata (state, blobs,
 * clear).
 */
#include "kv_testenv.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct kte env;
static struct kte_rec rec;

static void setup(void)
{
    kte_init(&env, 11);
    kte_rec_init(&rec);
}

static void teardown(void)
{
    kte_rec_fini(&rec);
    kte_fini(&env);
}

TestSuite(kv_apply, .init = setup, .fini = teardown);

static void expect_kv(const char *key, const char *value, uint64_t create, uint64_t mod,
                      uint64_t version, uint64_t lease)
{
    struct kte_row row;
    struct kte_rec r;
    kte_rec_init(&r);
    struct kv_op op = {.kind = KV_OP_GET, .u.get = {.key = kte_b(key)}};
    cr_assert_eq(kte_read(&env, &op, &r, NULL), KV_OK);
    cr_assert_eq(r.rows_n, 1, "%s: present", key);
    row = r.rows[0];
    cr_assert_eq(row.value_len, strlen(value));
    cr_assert_arr_eq(row.value, value, row.value_len);
    cr_assert_eq(row.create_rev, create, "%s create %lu", key, (unsigned long)row.create_rev);
    cr_assert_eq(row.mod_rev, mod, "%s mod %lu", key, (unsigned long)row.mod_rev);
    cr_assert_eq(row.version, version);
    cr_assert_eq(row.lease, lease);
    kte_rec_fini(&r);
}

Test(kv_apply, version_create_mod_over_put_put_delete_put)
{
    /* etcd's KeyValue: version 1 at creation, +1 per put; create_rev kept; mod_rev moves;
     * a delete removes the key, and the next put starts a new incarnation. */
    env.stamp = 100;
    cr_assert_eq(kte_put(&env, "a", "1"), KV_OK);
    expect_kv("a", "1", 100, 100, 1, 0);
    cr_assert_eq(kte_put(&env, "a", "22"), KV_OK);
    expect_kv("a", "22", 100, 101, 2, 0);
    struct kv_result res;
    cr_assert_eq(kte_del(&env, "a", NULL, NULL, &res), KV_OK);
    cr_assert(res.changed);
    cr_assert_eq(res.rev, 102);
    cr_assert_not(kte_get(&env, "a", NULL));
    cr_assert_eq(env.state.last_rev, 102);
    cr_assert_eq(env.state.last_delete_rev, 102);
    cr_assert_eq(kte_put(&env, "a", "333"), KV_OK);
    expect_kv("a", "333", 103, 103, 1, 0);
}

Test(kv_apply, revisions_strictly_increase_when_stamps_go_backwards)
{
    /* rev = max(stamp, last_rev + 1): a leader whose clock went back (or a new leader
     * with a slower clock) never reuses or lowers a revision. */
    uint64_t stamps[] = {500, 400, 400, 900, 1, 901, 0};
    uint64_t want[] = {500, 501, 502, 900, 901, 902, 903};
    for (size_t i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
        env.stamp = stamps[i];
        struct kv_put p = {.key = kte_b("k"), .value = kte_b("v")};
        struct kv_result res;
        cr_assert_eq(kte_put_full(&env, &p, NULL, &res), KV_OK);
        cr_assert_eq(res.rev, want[i], "step %zu: rev %lu", i, (unsigned long)res.rev);
        cr_assert_eq(env.state.last_rev, want[i]);
    }
    expect_kv("k", "v", 500, 903, 7, 0);
}

Test(kv_apply, a_command_that_changes_nothing_keeps_the_revision)
{
    env.stamp = 50;
    cr_assert_eq(kte_put(&env, "a", "1"), KV_OK);
    struct kv_result res;
    env.stamp = 70;
    cr_assert_eq(kte_del(&env, "zz", NULL, NULL, &res), KV_OK, "a missing key: no change");
    cr_assert_not(res.changed);
    cr_assert_eq(res.rev, 50);
    cr_assert_eq(env.state.last_rev, 50);
    cr_assert_eq(env.state.last_delete_rev, 0);
}

Test(kv_apply, prev_kv_and_lease)
{
    struct kv_put p = {.key = kte_b("k"), .value = kte_b("one"), .lease = 9, .prev_kv = true};
    env.stamp = 10;
    cr_assert_eq(kte_put_full(&env, &p, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops_n, 1);
    cr_assert_eq(rec.ops[0].kind, KV_OP_PUT);
    cr_assert_eq(rec.rows_n, 0, "no previous kv");
    p.value = kte_b("two");
    p.lease = 0;
    cr_assert_eq(kte_put_full(&env, &p, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_arr_eq(rec.rows[0].value, "one", 3);
    cr_assert_eq(rec.rows[0].lease, 9);
    cr_assert_eq(rec.rows[0].version, 1);
    expect_kv("k", "two", 10, 11, 2, 0);
}

Test(kv_apply, ignore_value_and_ignore_lease)
{
    struct kv_put p = {.key = kte_b("k"), .value = kte_b("v1"), .lease = 5};
    env.stamp = 10;
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    /* Keep the value, change the lease. */
    p = (struct kv_put){.key = kte_b("k"), .lease = 6, .ignore_value = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    expect_kv("k", "v1", 10, 11, 2, 6);
    /* Keep the lease, change the value. */
    p = (struct kv_put){.key = kte_b("k"), .value = kte_b("v2"), .ignore_lease = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    expect_kv("k", "v2", 10, 12, 3, 6);
    /* Both: a touch. */
    p = (struct kv_put){.key = kte_b("k"), .ignore_value = true, .ignore_lease = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK);
    expect_kv("k", "v2", 10, 13, 4, 6);
}

Test(kv_apply, ignore_flags_statuses)
{
    size_t before_len, after_len;
    cr_assert_eq(kte_put(&env, "k", "v"), KV_OK);
    uint8_t *before = kte_dump(&env, &before_len);
    struct kv_range_state st0 = env.state;
    struct kv_put p = {.key = kte_b("missing"), .ignore_value = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_KEY_NOT_FOUND);
    p = (struct kv_put){.key = kte_b("missing"), .value = kte_b("x"), .ignore_lease = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_KEY_NOT_FOUND);
    p = (struct kv_put){.key = kte_b("k"), .value = kte_b("x"), .ignore_value = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_INVALID, "value with ignore_value");
    p = (struct kv_put){.key = kte_b("k"), .lease = 3, .ignore_lease = true};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_INVALID, "lease with ignore_lease");
    uint8_t *after = kte_dump(&env, &after_len);
    cr_assert_eq(before_len, after_len);
    cr_assert_arr_eq(before, after, before_len, "failures change nothing");
    cr_assert_eq(memcmp(&st0, &env.state, sizeof(st0)), 0);
    free(before);
    free(after);
}

Test(kv_apply, size_limits)
{
    uint8_t *big = calloc(1, TS_KV_VALUE_BYTES_MAX + 2u);
    memset(big, 'k', TS_KV_KEY_BYTES_MAX + 1u);
    struct kv_put p = {.key = {big, TS_KV_KEY_BYTES_MAX}, .value = {big, TS_KV_VALUE_BYTES_MAX}};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_OK, "the largest key and value");
    struct kv_op get = {.kind = KV_OP_GET, .u.get = {.key = {big, TS_KV_KEY_BYTES_MAX}}};
    cr_assert_eq(kte_read(&env, &get, &rec, NULL), KV_OK);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_eq(rec.rows[0].value_len, TS_KV_VALUE_BYTES_MAX);
    p.key.len++;
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_KEY_TOO_LARGE);
    p.key.len--;
    p.value.len++;
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_VALUE_TOO_LARGE);
    struct kv_op one = {.kind = KV_OP_RANGE, .u.range = {.key = {big, TS_KV_KEY_BYTES_MAX}}};
    cr_assert_eq(kte_read(&env, &one, &rec, NULL), KV_OK, "a range of the longest key alone");
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_eq(rec.ops[0].end.count, 1);
    one.u.range.end = (struct kv_bytes){big, TS_KV_KEY_BYTES_MAX};
    one.u.range.key = kte_b("a");
    cr_assert_eq(kte_read(&env, &one, &rec, NULL), KV_OK, "the longest end");
    cr_assert_eq(rec.rows_n, 0);
    get.u.get.key.len++;
    cr_assert_eq(kte_read(&env, &get, NULL, NULL), KV_KEY_TOO_LARGE);
    struct kv_delete d = {.key = {big, 1}, .end = {big, TS_KV_KEY_BYTES_MAX + 1u}};
    size_t len;
    cr_assert_eq(kv_cmd_encode_delete(7, 1, &d, env.cmd, 1u << 20, &len), 0);
    struct kv_result res;
    kte_apply_bytes(&env, env.cmd, len, NULL, &res);
    cr_assert_eq(res.status, KV_KEY_TOO_LARGE, "an end over the limit");
    p = (struct kv_put){.key = kte_b(""), .value = kte_b("v")};
    cr_assert_eq(kte_put_full(&env, &p, NULL, NULL), KV_INVALID, "empty key");
    cr_assert_eq(kte_del(&env, "", NULL, NULL, NULL), KV_INVALID);
    free(big);
}

Test(kv_apply, keys_outside_the_range)
{
    kte_set_range(&env, 7, "b", "d");
    cr_assert_eq(kte_put(&env, "b", "1"), KV_OK, "lo is inside");
    cr_assert_eq(kte_put(&env, "c\xff", "1"), KV_OK);
    cr_assert_eq(kte_put(&env, "a", "1"), KV_RANGE_MISMATCH);
    cr_assert_eq(kte_put(&env, "d", "1"), KV_RANGE_MISMATCH, "hi is outside");
    cr_assert_eq(kte_del(&env, "a", NULL, NULL, NULL), KV_RANGE_MISMATCH);
    cr_assert_eq(kte_del(&env, "b", "e", NULL, NULL), KV_RANGE_MISMATCH, "end past hi");
    cr_assert_eq(kte_del(&env, "b", KTE_ALL, NULL, NULL), KV_RANGE_MISMATCH, "to the end");
    /* A command for another range (the range id changed by a split or merge). */
    struct kv_put p = {.key = kte_b("c"), .value = kte_b("1")};
    size_t len;
    cr_assert_eq(kv_cmd_encode_put(8, 1, &p, env.cmd, 1024, &len), 0);
    struct kv_result res;
    kte_apply_bytes(&env, env.cmd, len, NULL, &res);
    cr_assert_eq(res.status, KV_RANGE_MISMATCH);
    cr_assert_eq(kte_del(&env, "b", "d", NULL, &res), KV_OK, "up to hi exactly");
    cr_assert_eq(env.state.last_rev, res.rev);
    struct kv_op all = {.kind = KV_OP_RANGE,
                        .u.range = {.key = kte_b("b"), .end = kte_b("d"), .count_only = true}};
    cr_assert_eq(kte_read(&env, &all, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, 0);
}

Test(kv_apply, delete_range_counts_and_reports_previous_kvs)
{
    const char *keys[] = {"a", "b", "b1", "b2", "c", "d"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(kte_put(&env, keys[i], keys[i]), KV_OK);
    }
    struct kv_result res;
    cr_assert_eq(kte_del(&env, "b", "c", &rec, &res), KV_OK);
    cr_assert_eq(rec.ops_n, 1);
    cr_assert_eq(rec.ops[0].end.count, 3);
    cr_assert_eq(rec.rows_n, 3);
    cr_assert_arr_eq(rec.rows[1].key, "b1", 2);
    cr_assert_arr_eq(rec.rows[2].value, "b2", 2);
    cr_assert_eq(kte_del(&env, "c", "c", &rec, &res), KV_OK, "end == key: nothing");
    cr_assert_eq(rec.ops[0].end.count, 0);
    cr_assert_not(res.changed);
    cr_assert_eq(kte_del(&env, "a", NULL, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, 1);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert_eq(kte_del(&env, "c", KTE_ALL, &rec, NULL), KV_OK, "from c to the end");
    cr_assert_eq(rec.ops[0].end.count, 2);
    cr_assert_not(kte_get(&env, "d", NULL));
    size_t len;
    uint8_t *dump = kte_dump(&env, &len);
    cr_assert_eq(len, 0, "every data key gone (no metadata written)");
    free(dump);
}

Test(kv_apply, malformed_bytes_are_a_status)
{
    uint8_t junk[] = {9, 9, 9};
    struct kv_result res;
    kte_apply_bytes(&env, junk, sizeof(junk), NULL, &res);
    cr_assert_eq(res.status, KV_MALFORMED);
    cr_assert_eq(kv_status_err(KV_MALFORMED), TS_EPROTO);
    cr_assert_eq(kv_status_err(KV_KEY_TOO_LARGE), TS_ETOOBIG);
    cr_assert_eq(kv_status_err(KV_VALUE_TOO_LARGE), TS_ETOOBIG);
    cr_assert_eq(kv_status_err(KV_RANGE_MISMATCH), TS_ENORANGE);
    cr_assert_eq(kv_status_err(KV_KEY_NOT_FOUND), TS_ENOTFOUND);
    cr_assert_eq(kv_status_err(KV_COMPACTED), TS_ECOMPACTED);
    cr_assert_eq(kv_status_err(KV_FUTURE_REV), TS_EINVAL);
    cr_assert_eq(kv_status_err(KV_INVALID), TS_EINVAL);
    cr_assert_eq(kv_status_err(KV_OK), 0);
    cr_assert_str_eq(kv_status_name(KV_COMPACTED), "KV_COMPACTED");
}

Test(kv_apply, the_revision_space_never_wraps)
{
    env.stamp = UINT64_MAX;
    cr_assert_eq(kte_put(&env, "a", "1"), KV_INVALID);
    env.stamp = UINT64_MAX - 1u;
    cr_assert_eq(kte_put(&env, "a", "1"), KV_OK);
    cr_assert_eq(env.state.last_rev, UINT64_MAX - 1u);
    env.stamp = 5;
    cr_assert_eq(kte_put(&env, "a", "1"), KV_INVALID, "no revision is left");
}

Test(kv_apply, store_errors_pass_through_unchanged)
{
    /* Fail the Nth store call for every N a command makes: the error comes back as is
     * (the replica must stop), never as a status. */
    cr_assert_eq(kte_put(&env, "a", "1"), KV_OK);
    cr_assert_eq(kte_put(&env, "b", "2"), KV_OK);
    struct kv_put p = {.key = kte_b("a"), .value = kte_b("3"), .prev_kv = true};
    struct kv_delete d = {.key = kte_b("a"), .end = kte_b("z"), .prev_kv = true};
    for (long n = 0; n < 4; n++) {
        size_t len;
        struct kv_result res;
        cr_assert_eq(kv_cmd_encode_put(7, 10, &p, env.cmd, 1024, &len), 0);
        env.fail_after = n;
        int rc = kte_apply_bytes(&env, env.cmd, len, &rec, &res);
        cr_assert(rc == -EIO || (rc == 0 && n >= 2), "put, fail at %ld: %d", n, rc);
        cr_assert_eq(kv_cmd_encode_delete(7, 10, &d, env.cmd, 1024, &len), 0);
        env.fail_after = n;
        rc = kte_apply_bytes(&env, env.cmd, len, &rec, &res);
        env.fail_after = -1;
        cr_assert_eq(rc, -EIO, "delete, fail at %ld: %d", n, rc);
    }
    struct kv_op op = {.kind = KV_OP_RANGE, .u.range = {.key = kte_b("a"), .end = kte_b("z")}};
    env.fail_after = 1;
    struct kv_result res;
    cr_assert_eq(kv_read(&env.store, &env.range, &env.state, &op, env.scratch, TS_KV_SCRATCH_BYTES,
                         NULL, &res),
                 -EIO);
    for (long n = 0; n < 2; n++) {
        env.fail_after = n;
        cr_assert_eq(kv_range_clear(&env.store, &env.range, NULL), -EIO);
    }
    env.fail_after = -1;
}

Test(kv_apply, corrupt_stored_values_are_reported)
{
    uint8_t k[] = {'d', 'x'}, v[] = {1, 2, 3};
    cr_assert_eq(btree_put(env.t, k, 2, v, 3), 0);
    struct kv_result res;
    struct kv_put p = {.key = kte_b("x"), .value = kte_b("1")};
    size_t len;
    cr_assert_eq(kv_cmd_encode_put(7, 10, &p, env.cmd, 1024, &len), 0);
    cr_assert_eq(kv_apply(&env.store, &env.range, env.cmd, len, &env.state, env.scratch,
                          TS_KV_SCRATCH_BYTES, NULL, &res),
                 TS_ECORRUPT);
}

/* ------------------------------------------------------------------ range metadata */

Test(kv_apply, range_state_save_and_load)
{
    struct kv_range_state st = {.applied_index = 42,
                                .applied_term = 3,
                                .last_rev = 99,
                                .last_delete_rev = 90},
                          got;
    cr_assert_eq(kv_range_state_load(&env.store, 5, &got), TS_ENOTFOUND);
    cr_assert_eq(kv_range_state_save(&env.store, 5, &st), 0);
    cr_assert_eq(kv_range_state_save(&env.store, 6, &(struct kv_range_state){1, 1, 1, 0}), 0);
    cr_assert_eq(kv_range_state_load(&env.store, 5, &got), 0);
    cr_assert_eq(memcmp(&got, &st, sizeof(st)), 0);
    /* Survives a checkpoint and reopen: it lives in the tree. */
    cr_assert_eq(btree_checkpoint(env.t, NULL, 0), 0);
    btree_close(env.t);
    char err[128];
    struct btree_config cfg = {.path = "tree"};
    cr_assert_eq(btree_open(&cfg, env.disk, ts_allocator_default(), &env.t, err, sizeof(err)), 0);
    cr_assert_eq(kv_range_state_load(&env.store, 5, &got), 0);
    cr_assert_eq(got.applied_index, 42);
    /* Bad bytes. */
    uint8_t k[10] = {'m', 0, 0, 0, 0, 0, 0, 0, 5, 's'};
    cr_assert_eq(btree_put(env.t, k, 10, "xx", 2), 0);
    cr_assert_eq(kv_range_state_load(&env.store, 5, &got), TS_ECORRUPT);
}

Test(kv_apply, blobs_and_range_clear)
{
    uint8_t blob[100], buf[100];
    uint32_t len;
    memset(blob, 0xab, sizeof(blob));
    cr_assert_eq(kv_range_blob_save(&env.store, 7, 0, blob, 100), 0);
    cr_assert_eq(kv_range_blob_save(&env.store, 7, 1, "conf", 4), 0);
    cr_assert_eq(kv_range_blob_save(&env.store, 8, 0, "other", 5), 0);
    cr_assert_eq(kv_range_blob_save(&env.store, 7, TS_KV_BLOBS_MAX, "x", 1), TS_ETOOBIG);
    cr_assert_eq(kv_range_blob_save(&env.store, 7, 2, blob, TS_KV_BLOB_BYTES_MAX + 1u), TS_ETOOBIG);
    cr_assert_eq(kv_range_blob_load(&env.store, 7, 0, buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 100);
    cr_assert_arr_eq(buf, blob, 100);
    cr_assert_eq(kv_range_blob_load(&env.store, 7, 0, buf, 10, &len), TS_ETOOBIG);
    cr_assert_eq(kv_range_blob_load(&env.store, 7, 3, buf, 10, &len), TS_ENOTFOUND);
    cr_assert_eq(kv_range_state_save(&env.store, 7, &(struct kv_range_state){1, 1, 1, 0}), 0);
    cr_assert_eq(kv_range_state_save(&env.store, UINT64_MAX, &(struct kv_range_state){0}), 0);
    /* Range 7 = [b, d); data of its neighbours must stay. */
    kte_set_range(&env, 7, "", "");
    const char *keys[] = {"a", "b", "c", "c\xff\xff", "d", "e"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(kte_put(&env, keys[i], "v"), KV_OK);
    }
    kte_set_range(&env, 7, "b", "d");
    uint64_t n = 0;
    cr_assert_eq(kv_range_clear(&env.store, &env.range, &n), 0);
    cr_assert_eq(n, 3);
    kte_set_range(&env, 7, "", "");
    cr_assert(kte_get(&env, "a", NULL));
    cr_assert_not(kte_get(&env, "b", NULL));
    cr_assert_not(kte_get(&env, "c\xff\xff", NULL));
    cr_assert(kte_get(&env, "d", NULL));
    struct kv_range_state st;
    cr_assert_eq(kv_range_state_load(&env.store, 7, &st), TS_ENOTFOUND);
    cr_assert_eq(kv_range_blob_load(&env.store, 7, 1, buf, sizeof(buf), &len), TS_ENOTFOUND);
    cr_assert_eq(kv_range_blob_load(&env.store, 8, 0, buf, sizeof(buf), &len), 0, "range 8 kept");
    /* The last range id: its metadata prefix has no successor of the same length. */
    kte_set_range(&env, UINT64_MAX, "e", "");
    cr_assert_eq(kv_range_clear(&env.store, &env.range, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(kv_range_state_load(&env.store, UINT64_MAX, &st), TS_ENOTFOUND);
    cr_assert_eq(kv_range_state_load(&env.store, 8, &st), TS_ENOTFOUND);
    cr_assert_eq(kv_range_blob_load(&env.store, 8, 0, buf, sizeof(buf), &len), 0);
}

Test(kv_apply, previous_kvs_of_a_delete_respect_the_budget)
{
    /* Every key is deleted, but only the rows within the sink's budget are reported
     * (the first always), and `more` says some were left out. */
    char k[8];
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        cr_assert_eq(kte_put(&env, k, "0123456789"), KV_OK);
    }
    rec.sink.bytes_max = 3u * (3u + 10u + TS_KV_ROW_OVERHEAD_BYTES);
    cr_assert_eq(kte_del(&env, "k00", "k10", &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, 10);
    cr_assert_eq(rec.rows_n, 3);
    cr_assert(rec.ops[0].end.more);
    rec.sink.bytes_max = 1;
    cr_assert_eq(kte_del(&env, "k10", "k15", &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, 5);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert(rec.ops[0].end.more);
    /* Without watch events the walk stops at the budget; the delete is still whole. */
    rec.sink.event = NULL;
    cr_assert_eq(kte_del(&env, "k15", KTE_ALL, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops[0].end.count, 5);
    cr_assert_eq(rec.rows_n, 1);
    cr_assert(rec.ops[0].end.more);
    cr_assert_eq(rec.events_n, 0);
}

Test(kv_apply, txn_without_a_sink)
{
    /* A follower applies with no sink: same state, nothing reported. */
    cr_assert_eq(kte_put(&env, "a", "1"), KV_OK);
    struct kv_op s[2] = {
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("a"), .value = kte_b("2"), .prev_kv = true}},
        {.kind = KV_OP_DELETE, .u.del = {.key = kte_b("a"), .end = kte_b("b"), .prev_kv = true}},
    };
    struct kv_result res;
    cr_assert_eq(kte_txn(&env, NULL, 0, s, 2, NULL, 0, NULL, &res), KV_OK);
    cr_assert(res.succeeded && res.changed);
    cr_assert_not(kte_get(&env, "a", NULL));
    struct kv_sink empty = {0};
    size_t len;
    cr_assert_eq(kv_cmd_encode_txn(7, 1, NULL, 0, s, 2, NULL, 0, env.cmd, 4096, &len), 0);
    cr_assert_eq(kv_apply(&env.store, &env.range, env.cmd, len, &env.state, env.scratch,
                          TS_KV_SCRATCH_BYTES, &empty, &res),
                 0);
    cr_assert_eq(res.status, KV_OK);
}

Test(kv_apply, corrupt_headers_and_states)
{
    uint8_t k[] = {'d', 'x'}, v[KV_HEADER_BYTES + 1] = {0};
    struct kv_op get = {.kind = KV_OP_GET, .u.get = {.key = kte_b("x")}};
    struct kv_result res;
    v[16] = 1; /* version 1, revisions 0: valid */
    cr_assert_eq(btree_put(env.t, k, 2, v, sizeof(v)), 0);
    cr_assert_eq(kv_read(&env.store, &env.range, &env.state, &get, env.scratch, TS_KV_SCRATCH_BYTES,
                         NULL, &res),
                 0);
    v[32] = 1; /* flags */
    cr_assert_eq(btree_put(env.t, k, 2, v, sizeof(v)), 0);
    cr_assert_eq(kv_read(&env.store, &env.range, &env.state, &get, env.scratch, TS_KV_SCRATCH_BYTES,
                         NULL, &res),
                 TS_ECORRUPT);
    v[32] = 0;
    v[16] = 0; /* version 0 */
    cr_assert_eq(btree_put(env.t, k, 2, v, sizeof(v)), 0);
    struct kv_op scan = {.kind = KV_OP_RANGE, .u.range = {.key = kte_b("a"), .end = kte_b("z")}};
    cr_assert_eq(kv_read(&env.store, &env.range, &env.state, &scan, env.scratch,
                         TS_KV_SCRATCH_BYTES, NULL, &res),
                 TS_ECORRUPT);
    /* States: too long, and last_delete_rev above last_rev. */
    uint8_t sk[10] = {'m', 0, 0, 0, 0, 0, 0, 0, 5, 's'}, sv[64] = {1};
    struct kv_range_state st;
    cr_assert_eq(btree_put(env.t, sk, 10, sv, sizeof(sv)), 0);
    cr_assert_eq(kv_range_state_load(&env.store, 5, &st), TS_ECORRUPT);
    sv[25] = 1;
    cr_assert_eq(btree_put(env.t, sk, 10, sv, KV_STATE_BYTES), 0);
    cr_assert_eq(kv_range_state_load(&env.store, 5, &st), TS_ECORRUPT);
    uint32_t len;
    cr_assert_eq(kv_range_blob_load(&env.store, 5, TS_KV_BLOBS_MAX, sv, 8, &len), TS_ETOOBIG);
    /* Clearing an empty interval touches the metadata only. */
    kte_set_range(&env, 5, "q", "q");
    uint64_t n = 9;
    cr_assert_eq(kv_range_clear(&env.store, &env.range, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(kv_range_state_load(&env.store, 5, &st), TS_ENOTFOUND);
}

Test(kv_apply, watch_events)
{
    env.stamp = 10;
    struct kv_put p = {.key = kte_b("a"), .value = kte_b("1"), .lease = 4};
    cr_assert_eq(kte_put_full(&env, &p, &rec, NULL), KV_OK);
    cr_assert_eq(rec.events_n, 1);
    struct kte_event *ev = &rec.events[0];
    cr_assert_eq(ev->type, KV_EVENT_PUT);
    cr_assert_not(ev->has_prev, "a new key");
    cr_assert_arr_eq(ev->kv.value, "1", 1);
    cr_assert(ev->kv.create_rev == 10 && ev->kv.mod_rev == 10 && ev->kv.version == 1);
    cr_assert_eq(ev->kv.lease, 4);
    /* Keep the value: the event carries it, and the previous kv too. */
    p = (struct kv_put){.key = kte_b("a"), .ignore_value = true};
    cr_assert_eq(kte_put_full(&env, &p, &rec, NULL), KV_OK);
    cr_assert_eq(rec.events_n, 1);
    ev = &rec.events[0];
    cr_assert(ev->has_prev);
    cr_assert_arr_eq(ev->kv.value, "1", 1);
    cr_assert(ev->kv.mod_rev == 11 && ev->kv.version == 2 && ev->kv.lease == 0);
    cr_assert(ev->prev.mod_rev == 10 && ev->prev.lease == 4);
    cr_assert_eq(rec.rows_n, 0, "no prev_kv asked: no row, but the event has it");
    cr_assert_eq(kte_put(&env, "b", "2"), KV_OK);
    cr_assert_eq(kte_put(&env, "c", "3"), KV_OK);
    /* A range delete: one event per key, each with its deleted kv. */
    struct kv_result res;
    cr_assert_eq(kte_del(&env, "a", KTE_ALL, &rec, &res), KV_OK);
    cr_assert_eq(rec.events_n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        ev = &rec.events[i];
        cr_assert_eq(ev->type, KV_EVENT_DELETE);
        cr_assert_eq(ev->kv.key[0], 'a' + i);
        cr_assert_eq(ev->kv.mod_rev, res.rev, "the tombstone's revision");
        cr_assert(ev->has_prev);
        cr_assert_eq(ev->prev.value[0], '1' + i);
    }
    /* A txn: events in order; a failed command: none. */
    struct kv_op s[3] = {
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("x"), .value = kte_b("1")}},
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("x"), .value = kte_b("2")}},
        {.kind = KV_OP_DELETE, .u.del = {.key = kte_b("x")}},
    };
    cr_assert_eq(kte_txn(&env, NULL, 0, s, 3, NULL, 0, &rec, &res), KV_OK);
    cr_assert_eq(rec.events_n, 3);
    cr_assert(rec.events[0].type == KV_EVENT_PUT && !rec.events[0].has_prev);
    cr_assert(rec.events[1].type == KV_EVENT_PUT && rec.events[1].kv.version == 2);
    cr_assert(rec.events[2].type == KV_EVENT_DELETE && rec.events[2].prev.version == 2);
    p = (struct kv_put){.key = kte_b("zz"), .ignore_value = true};
    cr_assert_eq(kte_put_full(&env, &p, &rec, NULL), KV_KEY_NOT_FOUND);
    cr_assert_eq(rec.events_n, 0);
    cr_assert_eq(kte_del(&env, "nope", NULL, &rec, NULL), KV_OK);
    cr_assert_eq(rec.events_n, 0, "nothing deleted, no event");
}
