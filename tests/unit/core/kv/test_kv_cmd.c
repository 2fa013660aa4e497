/*
 * core/kv: the command encoding. Round trips of every op and compare; the encoder's
 * limits; the decoder on truncated, corrupted and random bytes (a fuzz surface: it must
 * answer TS_EPROTO, never crash or read past the buffer, which ASan checks here because
 * every input is copied into a buffer of exactly its length).
 */
#include "kv_testenv.h"

#include "core/util/err.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static bool bytes_eq(struct kv_bytes a, struct kv_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Decodes a copy of exactly len bytes (so ASan catches any read past the end). */
static int decode_exact(const uint8_t *buf, size_t len, struct kv_cmd *out)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    memcpy(copy, buf, len);
    int rc = kv_cmd_decode(copy, len, out);
    free(copy);
    return rc;
}

/* A txn with every op kind, compare target and flag. */
static size_t sample_txn(uint8_t *buf, size_t bytes)
{
    struct kv_compare c[3] = {
        {.key = kte_b("k"), .target = KV_CMP_VALUE, .result = KV_CMP_EQUAL, .value = kte_b("v")},
        {.key = kte_b("a"),
         .end = kte_b("b"),
         .target = KV_CMP_MOD,
         .result = KV_CMP_LESS,
         .number = -5},
        {.key = kte_b("x"), .target = KV_CMP_LEASE, .result = KV_CMP_GREATER, .number = 77},
    };
    struct kv_op s[4] = {
        {.kind = KV_OP_PUT,
         .u.put = {.key = kte_b("p"),
                   .value = kte_b("val"),
                   .lease = 3,
                   .prev_kv = true,
                   .ignore_lease = true}},
        {.kind = KV_OP_GET, .u.get = {.key = kte_b("g"), .revision = 12}},
        {.kind = KV_OP_DELETE, .u.del = {.key = kte_b("d"), .end = kte_b("e"), .prev_kv = true}},
        {.kind = KV_OP_RANGE,
         .u.range = {.key = kte_b("r"),
                     .end = kte_all(),
                     .limit = 10,
                     .revision = 4,
                     .keys_only = true,
                     .count_only = true}},
    };
    struct kv_op f[1] = {
        {.kind = KV_OP_PUT, .u.put = {.key = kte_b("f"), .ignore_value = true}},
    };
    size_t len;
    cr_assert_eq(kv_cmd_encode_txn(7, 123, c, 3, s, 4, f, 1, buf, bytes, &len), 0);
    cr_assert_eq(len, kv_cmd_txn_size(c, 3, s, 4, f, 1));
    return len;
}

Test(kv_cmd, put_and_delete_round_trip)
{
    uint8_t buf[256];
    size_t len;
    struct kv_put p = {.key = kte_b("key"),
                       .value = kte_b("value"),
                       .lease = 0x1122334455667788,
                       .prev_kv = true,
                       .ignore_value = false,
                       .ignore_lease = true};
    cr_assert_eq(kv_cmd_encode_put(9, 0xabcdef, &p, buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, kv_cmd_put_size(&p));
    struct kv_cmd c;
    cr_assert_eq(decode_exact(buf, len, &c), 0);
    cr_assert_eq(kv_cmd_decode(buf, len, &c), 0);
    cr_assert_eq(c.kind, KV_OP_PUT);
    cr_assert_eq(c.range_id, 9);
    cr_assert_eq(c.stamp, 0xabcdef);
    cr_assert(bytes_eq(c.put.key, p.key) && bytes_eq(c.put.value, p.value));
    cr_assert_eq(c.put.lease, p.lease);
    cr_assert(c.put.prev_kv && !c.put.ignore_value && c.put.ignore_lease);
    cr_assert_eq(kv_cmd_encode_put(9, 1, &p, buf, len - 1, &len), TS_ETOOBIG);

    struct kv_delete d = {.key = kte_b("a"), .end = kte_all(), .prev_kv = true};
    cr_assert_eq(kv_cmd_encode_delete(3, 4, &d, buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, kv_cmd_delete_size(&d));
    cr_assert_eq(kv_cmd_decode(buf, len, &c), 0);
    cr_assert_eq(c.kind, KV_OP_DELETE);
    cr_assert(bytes_eq(c.del.key, d.key) && bytes_eq(c.del.end, d.end) && c.del.prev_kv);
    cr_assert_eq(kv_cmd_encode_delete(3, 4, &d, buf, len - 1, &len), TS_ETOOBIG);
}

Test(kv_cmd, txn_round_trip)
{
    uint8_t buf[1024];
    size_t len = sample_txn(buf, sizeof(buf));
    struct kv_cmd c;
    cr_assert_eq(decode_exact(buf, len, &c), 0);
    cr_assert_eq(kv_cmd_decode(buf, len, &c), 0);
    cr_assert_eq(c.kind, KV_OP_TXN);
    cr_assert_eq(c.compares_n, 3);
    cr_assert_eq(c.success_n, 4);
    cr_assert_eq(c.failure_n, 1);
    struct kv_cmd_iter it;
    struct kv_compare cmp;
    kv_cmd_compares(&c, &it);
    kv_cmd_next_compare(&it, &cmp);
    cr_assert(cmp.target == KV_CMP_VALUE && bytes_eq(cmp.value, kte_b("v")));
    kv_cmd_next_compare(&it, &cmp);
    cr_assert(cmp.target == KV_CMP_MOD && cmp.result == KV_CMP_LESS && cmp.number == -5);
    cr_assert(bytes_eq(cmp.end, kte_b("b")));
    kv_cmd_next_compare(&it, &cmp);
    cr_assert(cmp.target == KV_CMP_LEASE && cmp.number == 77);
    struct kv_op op;
    kv_cmd_success(&c, &it);
    kv_cmd_next_op(&it, &op);
    cr_assert(op.kind == KV_OP_PUT && op.u.put.ignore_lease && op.u.put.lease == 3);
    kv_cmd_next_op(&it, &op);
    cr_assert(op.kind == KV_OP_GET && op.u.get.revision == 12);
    kv_cmd_next_op(&it, &op);
    cr_assert(op.kind == KV_OP_DELETE && op.u.del.prev_kv && bytes_eq(op.u.del.end, kte_b("e")));
    kv_cmd_next_op(&it, &op);
    cr_assert(op.kind == KV_OP_RANGE && op.u.range.limit == 10 && op.u.range.revision == 4);
    cr_assert(op.u.range.keys_only && op.u.range.count_only);
    cr_assert(bytes_eq(op.u.range.end, (struct kv_bytes){(const uint8_t *)"", 1}));
    cr_assert_eq(it.p, it.end);
    kv_cmd_failure(&c, &it);
    kv_cmd_next_op(&it, &op);
    cr_assert(op.kind == KV_OP_PUT && op.u.put.ignore_value);
    cr_assert_eq(it.p, buf + len);
}

Test(kv_cmd, encoder_limits)
{
    static struct kv_op ops[TS_KV_TXN_OPS_MAX + 1];
    for (uint32_t i = 0; i <= TS_KV_TXN_OPS_MAX; i++) {
        ops[i] = (struct kv_op){.kind = KV_OP_GET, .u.get = {.key = kte_b("k")}};
    }
    static uint8_t buf[64 * 1024];
    size_t len;
    cr_assert_eq(kv_cmd_encode_txn(1, 1, NULL, 0, ops, TS_KV_TXN_OPS_MAX, ops, TS_KV_TXN_OPS_MAX,
                                   buf, sizeof(buf), &len),
                 0);
    struct kv_cmd c;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), 0);
    cr_assert_eq(kv_cmd_encode_txn(1, 1, NULL, 0, ops, TS_KV_TXN_OPS_MAX + 1, NULL, 0, buf,
                                   sizeof(buf), &len),
                 TS_ETOOBIG);
    ops[3].kind = KV_OP_TXN;
    cr_assert_eq(kv_cmd_encode_txn(1, 1, NULL, 0, ops, 4, NULL, 0, buf, sizeof(buf), &len),
                 TS_EINVAL, "no nested txn");
    cr_assert_eq(kv_cmd_encode_txn(1, 1, NULL, 0, ops, 3, NULL, 0, buf, 10, &len), TS_ETOOBIG);
    /* A count over the limit on the wire. */
    cr_assert_eq(kv_cmd_encode_txn(1, 1, NULL, 0, NULL, 0, NULL, 0, buf, sizeof(buf), &len), 0);
    cr_assert_eq(kv_cmd_decode(buf, len, &c), 0);
    buf[18] = (uint8_t)(TS_KV_TXN_OPS_MAX + 1u);
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO);
}

Test(kv_cmd, every_truncation_and_extension_is_refused)
{
    uint8_t buf[1024];
    size_t len = sample_txn(buf, sizeof(buf));
    struct kv_cmd c;
    for (size_t n = 0; n < len; n++) {
        cr_assert_eq(decode_exact(buf, n, &c), TS_EPROTO, "prefix of %zu bytes", n);
    }
    buf[len] = 0;
    cr_assert_eq(decode_exact(buf, len + 1, &c), TS_EPROTO, "a trailing byte");
    cr_assert_eq(kv_cmd_decode(NULL, 0, &c), TS_EPROTO);
}

Test(kv_cmd, bad_fields_are_refused)
{
    uint8_t buf[1024];
    size_t len = sample_txn(buf, sizeof(buf));
    struct kv_cmd c;
    uint8_t save;
    /* format, kind */
    save = buf[0];
    buf[0] = 2;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO);
    buf[0] = save;
    save = buf[1];
    buf[1] = KV_OP_GET;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO, "a get is no command");
    buf[1] = save;
    /* the first compare's target and result (offset 24, after the three counts) */
    buf[24] = 5;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO, "target");
    buf[24] = KV_CMP_VALUE;
    buf[25] = 4;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO, "result");
    buf[25] = KV_CMP_EQUAL;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), 0);
    /* unknown flag bits of a put */
    struct kv_put p = {.key = kte_b("k")};
    cr_assert_eq(kv_cmd_encode_put(1, 1, &p, buf, sizeof(buf), &len), 0);
    buf[18] = 0x8;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO, "flags");
    buf[18] = 0;
    /* a length past the end */
    buf[27] = 0xff;
    cr_assert_eq(kv_cmd_decode(buf, len, &c), TS_EPROTO, "key length");
}

Test(kv_cmd, random_and_corrupted_bytes_never_crash)
{
    /* Fuzz: random buffers, and valid commands with random bytes changed, decode to 0 or
     * TS_EPROTO; those that decode are then applied and iterated (a status, no crash). */
    struct ts_rand r;
    ts_rand_seed(&r, 2024);
    struct kte env;
    kte_init(&env, 3);
    uint8_t good[1024], buf[1024];
    size_t good_len = sample_txn(good, sizeof(good));
    uint32_t decoded = 0, refused = 0;
    for (int iter = 0; iter < 4000; iter++) {
        size_t len;
        if (iter % 4 == 0) {
            len = ts_rand_below(&r, 64);
            for (size_t i = 0; i < len; i++) {
                buf[i] = (uint8_t)ts_rand_u64(&r);
            }
            if (len > 1 && ts_rand_chance(&r, 1, 2)) {
                buf[0] = KV_CMD_FORMAT;
                buf[1] = (uint8_t)(1 + ts_rand_below(&r, 5));
            }
        } else {
            len = good_len;
            memcpy(buf, good, len);
            for (uint64_t k = 1 + ts_rand_below(&r, 3); k > 0; k--) {
                buf[ts_rand_below(&r, len)] = (uint8_t)ts_rand_u64(&r);
            }
            if (ts_rand_chance(&r, 1, 4)) {
                len = ts_rand_below(&r, len + 1);
            }
        }
        struct kv_cmd c;
        int rc = decode_exact(buf, len, &c);
        cr_assert(rc == 0 || rc == TS_EPROTO);
        if (rc != 0) {
            refused++;
            continue;
        }
        decoded++;
        struct kv_result res;
        env.range.id = c.range_id; /* so the body is checked, not only the range id */
        kte_apply_bytes(&env, buf, len, NULL, &res);
        cr_assert_leq(res.status, KV_FUTURE_REV);
    }
    cr_assert_gt(decoded, 100, "some corruptions keep a valid command");
    cr_assert_gt(refused, 1000);
    kte_fini(&env);
}
