/*
 * shard/kvwire.c: key-value requests from the wire to core/kv's structs, and core/kv's
 * result stream back to a wire answer.
 *
 * Requests are built with the generated builder, finished as frames and verified with
 * proto_message_decode() before kvwire_parse() sees them, as the server does. Answers
 * are driven through the sink by hand in core/kv's call order
 * ([txn_begin] (op_begin row* op_end)* [txn_end]), finished with kvwire_finish() and
 * decoded again, field by field.
 */
#include "shard/kvwire.h"

#include "core/util/err.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Requests ----------------------------------------------------------------------------- */

struct req_fixture {
    struct proto_builder b;
    struct kvwire_txn_space space;
    struct kvwire_req out;
    const char *why;
    uint8_t big[TS_KV_VALUE_BYTES_MAX + 2]; /* pattern bytes for long keys and values */
};

static struct req_fixture *req_new(void)
{
    struct req_fixture *f = calloc(1, sizeof *f);
    cr_assert_not_null(f);
    cr_assert_eq(proto_builder_init(&f->b, ts_allocator_default(), 4096, TS_FRAME_BYTES_MAX), 0);
    for (uint32_t i = 0; i < sizeof f->big; i++) {
        f->big[i] = (uint8_t)('a' + i % 26);
    }
    return f;
}

static void req_free(struct req_fixture *f)
{
    proto_builder_fini(&f->b);
    free(f);
}

/* consistency < 0 leaves the field absent. */
static int parse(struct req_fixture *f, uint8_t op_type, proto_ref op, int consistency)
{
    struct proto_builder *b = &f->b;
    proto_request_begin(b);
    proto_request_add_id(b, 99);
    if (consistency >= 0) {
        proto_request_add_consistency(b, (uint8_t)consistency);
    }
    proto_request_add_op(b, op_type, op);
    proto_ref req = proto_request_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_REQUEST, req);
    proto_ref msg = proto_message_end(b);
    const uint8_t *frame;
    uint32_t len;
    int rc = proto_message_finish(b, msg, true, &frame, &len);
    cr_assert_eq(rc, 0, "finish: %s", ts_strerror(rc));
    struct proto_message m;
    char err[256] = "";
    rc = proto_message_decode(frame, len, true, &m, err, sizeof err);
    cr_assert_eq(rc, 0, "decode: %s", err);
    struct proto_request r = proto_message_body_as_request(m);
    cr_assert_not_null(r.tab);
    f->why = "not set";
    rc = kvwire_parse(r, &f->space, &f->out, &f->why);
    if (rc == 0) {
        cr_assert_null(f->why, "why is set on success: %s", f->why);
    } else {
        cr_assert_not_null(f->why, "no why for status %d", rc);
        cr_assert_str_neq(f->why, "not set");
    }
    return rc;
}

/* A byte vector, or 0 (absent) for NULL. */
static proto_ref bytes(struct proto_builder *b, const void *p, uint32_t len)
{
    return p != NULL ? proto_create_bytes(b, p, len) : 0;
}

struct put_args {
    const void *key;
    uint32_t key_len;
    const void *value;
    uint32_t value_len;
    uint64_t lease;
    bool prev_kv, ignore_value, ignore_lease, sequential;
};

static proto_ref put_req(struct proto_builder *b, const struct put_args *a)
{
    proto_ref k = bytes(b, a->key, a->key_len);
    proto_ref v = bytes(b, a->value, a->value_len);
    proto_put_request_begin(b);
    proto_put_request_add_key(b, k);
    proto_put_request_add_value(b, v);
    if (a->lease != 0) {
        proto_put_request_add_lease(b, a->lease);
    }
    proto_put_request_add_prev_kv(b, a->prev_kv);
    proto_put_request_add_ignore_value(b, a->ignore_value);
    proto_put_request_add_ignore_lease(b, a->ignore_lease);
    proto_put_request_add_sequential(b, a->sequential);
    return proto_put_request_end(b);
}

static proto_ref get_req(struct proto_builder *b, const void *key, uint32_t key_len, uint64_t rev)
{
    proto_ref k = bytes(b, key, key_len);
    proto_get_request_begin(b);
    proto_get_request_add_key(b, k);
    proto_get_request_add_revision(b, rev);
    return proto_get_request_end(b);
}

static proto_ref delete_req(struct proto_builder *b, const void *key, uint32_t key_len,
                            const void *end, uint32_t end_len, bool prev_kv)
{
    proto_ref k = bytes(b, key, key_len);
    proto_ref e = bytes(b, end, end_len);
    proto_delete_request_begin(b);
    proto_delete_request_add_key(b, k);
    proto_delete_request_add_range_end(b, e);
    proto_delete_request_add_prev_kv(b, prev_kv);
    return proto_delete_request_end(b);
}

struct range_args {
    const void *key;
    uint32_t key_len;
    const void *end;
    uint32_t end_len;
    uint64_t limit, revision;
    bool keys_only, count_only;
};

static proto_ref range_req(struct proto_builder *b, const struct range_args *a)
{
    proto_ref k = bytes(b, a->key, a->key_len);
    proto_ref e = bytes(b, a->end, a->end_len);
    proto_range_request_begin(b);
    proto_range_request_add_key(b, k);
    proto_range_request_add_range_end(b, e);
    proto_range_request_add_limit(b, a->limit);
    proto_range_request_add_revision(b, a->revision);
    proto_range_request_add_keys_only(b, a->keys_only);
    proto_range_request_add_count_only(b, a->count_only);
    return proto_range_request_end(b);
}

static void assert_bytes(struct kv_bytes got, const void *want, uint32_t len, const char *what)
{
    cr_assert_eq(got.len, len, "%s: %u bytes, want %u", what, got.len, len);
    if (len > 0) {
        cr_assert(memcmp(got.p, want, len) == 0, "%s: bytes differ", what);
    }
}

Test(kvwire_parse, put)
{
    struct req_fixture *f = req_new();
    const struct put_args a = {.key = "k1",
                               .key_len = 2,
                               .value = "hello",
                               .value_len = 5,
                               .lease = 0x123456789ull,
                               .prev_kv = true,
                               .ignore_value = false,
                               .ignore_lease = true};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &a), -1), 0);
    cr_assert_eq(f->out.kind, KV_OP_PUT);
    cr_assert_eq(f->out.op.kind, KV_OP_PUT);
    const struct kv_put *p = &f->out.op.u.put;
    assert_bytes(p->key, "k1", 2, "key");
    assert_bytes(p->value, "hello", 5, "value");
    cr_assert_eq(p->lease, 0x123456789ull);
    cr_assert(p->prev_kv);
    cr_assert(!p->ignore_value);
    cr_assert(p->ignore_lease);
    assert_bytes(f->out.route_key, "k1", 2, "route key");
    cr_assert(f->out.linearizable, "the default consistency is linearizable");
    cr_assert_eq(f->out.cmps_n + f->out.succ_n + f->out.fail_n, 0);

    /* The other flags, and an absent value (an empty one). */
    proto_builder_reset(&f->b);
    const struct put_args a2 = {.key = "k", .key_len = 1, .ignore_value = true};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &a2), -1), 0);
    p = &f->out.op.u.put;
    cr_assert_eq(p->value.len, 0);
    cr_assert_eq(p->lease, 0);
    cr_assert(!p->prev_kv);
    cr_assert(p->ignore_value);
    cr_assert(!p->ignore_lease);
    req_free(f);
}

Test(kvwire_parse, get_and_consistency)
{
    struct req_fixture *f = req_new();
    const int modes[3] = {-1, PROTO_CONSISTENCY_LINEARIZABLE, PROTO_CONSISTENCY_SERIALIZABLE};
    for (int i = 0; i < 3; i++) {
        proto_builder_reset(&f->b);
        cr_assert_eq(
            parse(f, PROTO_REQUEST_OP_GET_REQUEST, get_req(&f->b, "\0key", 4, 77), modes[i]), 0);
        cr_assert_eq(f->out.kind, KV_OP_GET);
        cr_assert_eq(f->out.op.kind, KV_OP_GET);
        assert_bytes(f->out.op.u.get.key, "\0key", 4, "key");
        cr_assert_eq(f->out.op.u.get.revision, 77);
        assert_bytes(f->out.route_key, "\0key", 4, "route key");
        cr_assert_eq(f->out.linearizable, modes[i] != PROTO_CONSISTENCY_SERIALIZABLE, "mode %d",
                     modes[i]);
    }
    req_free(f);
}

Test(kvwire_parse, delete)
{
    struct req_fixture *f = req_new();
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_DELETE_REQUEST,
                       delete_req(&f->b, "a", 1, "b\xff", 2, true), PROTO_CONSISTENCY_SERIALIZABLE),
                 0);
    cr_assert_eq(f->out.kind, KV_OP_DELETE);
    cr_assert_eq(f->out.op.kind, KV_OP_DELETE);
    assert_bytes(f->out.op.u.del.key, "a", 1, "key");
    assert_bytes(f->out.op.u.del.end, "b\xff", 2, "end");
    cr_assert(f->out.op.u.del.prev_kv);
    assert_bytes(f->out.route_key, "a", 1, "route key");
    /* A single key: no end. */
    proto_builder_reset(&f->b);
    cr_assert_eq(
        parse(f, PROTO_REQUEST_OP_DELETE_REQUEST, delete_req(&f->b, "zz", 2, NULL, 0, false), -1),
        0);
    assert_bytes(f->out.op.u.del.key, "zz", 2, "key");
    cr_assert_eq(f->out.op.u.del.end.len, 0);
    cr_assert(!f->out.op.u.del.prev_kv);
    req_free(f);
}

Test(kvwire_parse, range)
{
    struct req_fixture *f = req_new();
    const struct range_args a = {.key = "from",
                                 .key_len = 4,
                                 .end = "to",
                                 .end_len = 2,
                                 .limit = 50,
                                 .revision = 1234,
                                 .keys_only = true};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_RANGE_REQUEST, range_req(&f->b, &a), -1), 0);
    cr_assert_eq(f->out.kind, KV_OP_RANGE);
    const struct kv_range_req *r = &f->out.op.u.range;
    cr_assert_eq(f->out.op.kind, KV_OP_RANGE);
    assert_bytes(r->key, "from", 4, "key");
    assert_bytes(r->end, "to", 2, "end");
    cr_assert_eq(r->limit, 50);
    cr_assert_eq(r->revision, 1234);
    cr_assert(r->keys_only);
    cr_assert(!r->count_only);
    assert_bytes(f->out.route_key, "from", 4, "route key");
    /* A scan from the empty key (every key: end "\0"), count only. */
    proto_builder_reset(&f->b);
    const struct range_args all = {.end = "", .end_len = 1, .count_only = true};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_RANGE_REQUEST, range_req(&f->b, &all),
                       PROTO_CONSISTENCY_SERIALIZABLE),
                 0);
    r = &f->out.op.u.range;
    cr_assert_eq(r->key.len, 0);
    assert_bytes(r->end, "", 1, "end");
    cr_assert(r->count_only);
    cr_assert(!r->keys_only);
    cr_assert_eq(r->limit, 0);
    cr_assert_eq(f->out.route_key.len, 0);
    cr_assert(!f->out.linearizable);
    req_free(f);
}

/* ---- Request errors ---------------------------------------------------------------------- */

Test(kvwire_parse, empty_keys_are_invalid)
{
    struct req_fixture *f = req_new();
    /* Absent and present-but-empty keys. */
    for (int present = 0; present < 2; present++) {
        const void *k = present ? "" : NULL;
        proto_builder_reset(&f->b);
        const struct put_args p = {.key = k, .value = "v", .value_len = 1};
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &p), -1),
                     PROTO_STATUS_INVALID_ARGUMENT);
        proto_builder_reset(&f->b);
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_GET_REQUEST, get_req(&f->b, k, 0, 0), -1),
                     PROTO_STATUS_INVALID_ARGUMENT);
        proto_builder_reset(&f->b);
        cr_assert_eq(
            parse(f, PROTO_REQUEST_OP_DELETE_REQUEST, delete_req(&f->b, k, 0, "z", 1, false), -1),
            PROTO_STATUS_INVALID_ARGUMENT);
    }
    req_free(f);
}

Test(kvwire_parse, key_limits)
{
    struct req_fixture *f = req_new();
    const uint8_t *big = f->big;
    for (uint32_t extra = 0; extra < 2; extra++) {
        uint32_t n = TS_KV_KEY_BYTES_MAX + extra;
        int want = extra == 0 ? 0 : PROTO_STATUS_KEY_TOO_LARGE;
        proto_builder_reset(&f->b);
        const struct put_args p = {.key = big, .key_len = n, .value = "v", .value_len = 1};
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &p), -1), want,
                     "put key %u", n);
        proto_builder_reset(&f->b);
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_GET_REQUEST, get_req(&f->b, big, n, 0), -1), want,
                     "get key %u", n);
        proto_builder_reset(&f->b);
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_DELETE_REQUEST,
                           delete_req(&f->b, big, n, NULL, 0, false), -1),
                     want, "delete key %u", n);
        proto_builder_reset(&f->b);
        cr_assert_eq(
            parse(f, PROTO_REQUEST_OP_DELETE_REQUEST, delete_req(&f->b, "a", 1, big, n, false), -1),
            want, "delete range_end %u", n);
        proto_builder_reset(&f->b);
        const struct range_args rk = {.key = big, .key_len = n, .end = "\xff", .end_len = 1};
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_RANGE_REQUEST, range_req(&f->b, &rk), -1), want,
                     "range key %u", n);
        proto_builder_reset(&f->b);
        const struct range_args re = {.key = "a", .key_len = 1, .end = big, .end_len = n};
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_RANGE_REQUEST, range_req(&f->b, &re), -1), want,
                     "range range_end %u", n);
    }
    req_free(f);
}

Test(kvwire_parse, value_limit)
{
    struct req_fixture *f = req_new();
    const struct put_args ok = {
        .key = "k", .key_len = 1, .value = f->big, .value_len = TS_KV_VALUE_BYTES_MAX};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &ok), -1), 0);
    cr_assert_eq(f->out.op.u.put.value.len, TS_KV_VALUE_BYTES_MAX);
    proto_builder_reset(&f->b);
    const struct put_args big = {
        .key = "k", .key_len = 1, .value = f->big, .value_len = TS_KV_VALUE_BYTES_MAX + 1};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &big), -1),
                 PROTO_STATUS_VALUE_TOO_LARGE);
    req_free(f);
}

Test(kvwire_parse, sequential_put_is_unsupported)
{
    struct req_fixture *f = req_new();
    const struct put_args p = {
        .key = "q/", .key_len = 2, .value = "v", .value_len = 1, .sequential = true};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_PUT_REQUEST, put_req(&f->b, &p), -1),
                 PROTO_STATUS_UNSUPPORTED);
    req_free(f);
}

Test(kvwire_parse, not_key_value_requests_are_unsupported)
{
    struct req_fixture *f = req_new();
    proto_status_request_begin(&f->b);
    proto_ref st = proto_status_request_end(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_STATUS_REQUEST, st, -1), PROTO_STATUS_UNSUPPORTED);
    proto_builder_reset(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_NONE, 0, -1), PROTO_STATUS_UNSUPPORTED);
    req_free(f);
}

/* ---- Meta range requests -------------------------------------------------------------------- */

Test(kvwire_parse, members_route_and_join_go_to_range_1)
{
    struct req_fixture *f = req_new();
    proto_members_request_begin(&f->b);
    proto_ref mr = proto_members_request_end(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_MEMBERS_REQUEST, mr, PROTO_CONSISTENCY_SERIALIZABLE), 0);
    cr_assert_eq(f->out.kind, KVWIRE_MEMBERS);
    cr_assert_eq(f->out.route_key.len, 0, "range 1 holds the empty key");
    cr_assert(!f->out.linearizable);
    proto_builder_reset(&f->b);

    proto_ref k = bytes(&f->b, "key", 3);
    proto_route_request_begin(&f->b);
    proto_route_request_add_key(&f->b, k);
    proto_route_request_add_range_id(&f->b, 7);
    proto_route_request_add_limit(&f->b, 9);
    proto_ref rr = proto_route_request_end(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_ROUTE_REQUEST, rr, -1), 0);
    cr_assert_eq(f->out.kind, KVWIRE_ROUTE);
    cr_assert(f->out.linearizable, "linearizable unless asked otherwise");
    assert_bytes(f->out.route.key, "key", 3, "route key");
    cr_assert_eq(f->out.route.range_id, 7);
    cr_assert_eq(f->out.route.limit, 9);
    cr_assert_eq(f->out.route_key.len, 0);
    proto_builder_reset(&f->b);

    proto_ref big = bytes(&f->b, f->big, TS_KV_KEY_BYTES_MAX + 1);
    proto_route_request_begin(&f->b);
    proto_route_request_add_key(&f->b, big);
    rr = proto_route_request_end(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_ROUTE_REQUEST, rr, -1), PROTO_STATUS_KEY_TOO_LARGE);
    proto_builder_reset(&f->b);

    proto_ref a = proto_create_string(&f->b, "10.0.0.4:7001", 13);
    proto_join_request_begin(&f->b);
    proto_join_request_add_address(&f->b, a);
    proto_join_request_add_shards(&f->b, 2);
    proto_join_request_add_node_id(&f->b, 4);
    proto_ref jr = proto_join_request_end(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_JOIN_REQUEST, jr, -1), 0);
    cr_assert_eq(f->out.kind, KVWIRE_JOIN);
    assert_bytes(f->out.join.addr, "10.0.0.4:7001", 13, "join address");
    cr_assert_eq(f->out.join.shards, 2);
    cr_assert_eq(f->out.join.node_id, 4);
    req_free(f);
}

Test(kvwire_parse, join_needs_an_address)
{
    struct req_fixture *f = req_new();
    static const uint32_t lens[] = {0, TS_HOST_ADDR_BYTES, TS_HOST_ADDR_BYTES + 100};
    for (uint32_t i = 0; i < 3; i++) {
        proto_builder_reset(&f->b);
        proto_ref a = proto_create_string(&f->b, (const char *)f->big, lens[i]);
        proto_join_request_begin(&f->b);
        proto_join_request_add_address(&f->b, a);
        proto_ref jr = proto_join_request_end(&f->b);
        cr_assert_eq(parse(f, PROTO_REQUEST_OP_JOIN_REQUEST, jr, -1), PROTO_STATUS_INVALID_ARGUMENT,
                     "address of %u bytes", lens[i]);
        cr_assert_not_null(f->why);
    }
    proto_builder_reset(&f->b);
    proto_join_request_begin(&f->b);
    proto_ref none = proto_join_request_end(&f->b);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_JOIN_REQUEST, none, -1), PROTO_STATUS_INVALID_ARGUMENT,
                 "no address at all");
    req_free(f);
}

/* ---- Transactions -------------------------------------------------------------------------- */

struct cmp_args {
    const void *key;
    uint32_t key_len;
    const void *end;
    uint32_t end_len;
    uint8_t target, result;
    const void *value;
    uint32_t value_len;
    int64_t number;
};

static proto_ref compare(struct proto_builder *b, const struct cmp_args *a)
{
    proto_ref k = bytes(b, a->key, a->key_len);
    proto_ref e = bytes(b, a->end, a->end_len);
    proto_ref v = bytes(b, a->value, a->value_len);
    proto_compare_begin(b);
    proto_compare_add_key(b, k);
    proto_compare_add_range_end(b, e);
    proto_compare_add_target(b, a->target);
    proto_compare_add_result(b, a->result);
    proto_compare_add_value(b, v);
    proto_compare_add_number(b, a->number);
    return proto_compare_end(b);
}

static proto_ref txn_op(struct proto_builder *b, uint8_t type, proto_ref body)
{
    proto_txn_op_begin(b);
    proto_txn_op_add_op(b, type, body);
    return proto_txn_op_end(b);
}

static proto_ref txn(struct proto_builder *b, const proto_ref *cmps, uint32_t cn,
                     const proto_ref *succ, uint32_t sn, const proto_ref *fail, uint32_t fn)
{
    proto_ref c = cn > 0 ? proto_create_vec_ref(b, cmps, cn) : 0;
    proto_ref s = sn > 0 ? proto_create_vec_ref(b, succ, sn) : 0;
    proto_ref f = fn > 0 ? proto_create_vec_ref(b, fail, fn) : 0;
    proto_txn_request_begin(b);
    proto_txn_request_add_compares(b, c);
    proto_txn_request_add_success(b, s);
    proto_txn_request_add_failure(b, f);
    return proto_txn_request_end(b);
}

Test(kvwire_parse, txn_every_op_and_compare)
{
    struct req_fixture *f = req_new();
    struct proto_builder *b = &f->b;
    const struct cmp_args c0 = {.key = "c0",
                                .key_len = 2,
                                .end = "c9",
                                .end_len = 2,
                                .target = KV_CMP_VALUE,
                                .result = KV_CMP_NOT_EQUAL,
                                .value = "val",
                                .value_len = 3};
    const struct cmp_args c1 = {
        .key = "c1", .key_len = 2, .target = KV_CMP_LEASE, .result = KV_CMP_GREATER, .number = -5};
    proto_ref cmps[2] = {compare(b, &c0), compare(b, &c1)};
    const struct put_args p = {
        .key = "p", .key_len = 1, .value = "pv", .value_len = 2, .lease = 3, .prev_kv = true};
    const struct range_args r = {
        .key = "r", .key_len = 1, .end = "s", .end_len = 1, .limit = 9, .count_only = true};
    proto_ref succ[4] = {
        txn_op(b, PROTO_TXN_OP_BODY_PUT_REQUEST, put_req(b, &p)),
        txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, "g", 1, 0)),
        txn_op(b, PROTO_TXN_OP_BODY_DELETE_REQUEST, delete_req(b, "d", 1, "e", 1, true)),
        txn_op(b, PROTO_TXN_OP_BODY_RANGE_REQUEST, range_req(b, &r))};
    proto_ref fail[1] = {txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, "fg", 2, 0))};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, cmps, 2, succ, 4, fail, 1), -1), 0);
    const struct kvwire_req *q = &f->out;
    cr_assert_eq(q->kind, KV_OP_TXN);
    cr_assert_eq(q->cmps_n, 2);
    cr_assert_eq(q->succ_n, 4);
    cr_assert_eq(q->fail_n, 1);
    cr_assert_eq(q->cmps, f->space.cmps);
    cr_assert_eq(q->succ, f->space.succ);
    cr_assert_eq(q->fail, f->space.fail);
    assert_bytes(q->cmps[0].key, "c0", 2, "cmp 0 key");
    assert_bytes(q->cmps[0].end, "c9", 2, "cmp 0 end");
    cr_assert_eq(q->cmps[0].target, KV_CMP_VALUE);
    cr_assert_eq(q->cmps[0].result, KV_CMP_NOT_EQUAL);
    assert_bytes(q->cmps[0].value, "val", 3, "cmp 0 value");
    assert_bytes(q->cmps[1].key, "c1", 2, "cmp 1 key");
    cr_assert_eq(q->cmps[1].end.len, 0);
    cr_assert_eq(q->cmps[1].target, KV_CMP_LEASE);
    cr_assert_eq(q->cmps[1].result, KV_CMP_GREATER);
    cr_assert_eq(q->cmps[1].number, -5);
    cr_assert_eq(q->succ[0].kind, KV_OP_PUT);
    assert_bytes(q->succ[0].u.put.key, "p", 1, "put key");
    assert_bytes(q->succ[0].u.put.value, "pv", 2, "put value");
    cr_assert_eq(q->succ[0].u.put.lease, 3);
    cr_assert(q->succ[0].u.put.prev_kv);
    cr_assert_eq(q->succ[1].kind, KV_OP_GET);
    assert_bytes(q->succ[1].u.get.key, "g", 1, "get key");
    cr_assert_eq(q->succ[2].kind, KV_OP_DELETE);
    assert_bytes(q->succ[2].u.del.key, "d", 1, "delete key");
    assert_bytes(q->succ[2].u.del.end, "e", 1, "delete end");
    cr_assert(q->succ[2].u.del.prev_kv);
    cr_assert_eq(q->succ[3].kind, KV_OP_RANGE);
    assert_bytes(q->succ[3].u.range.key, "r", 1, "range key");
    assert_bytes(q->succ[3].u.range.end, "s", 1, "range end");
    cr_assert_eq(q->succ[3].u.range.limit, 9);
    cr_assert(q->succ[3].u.range.count_only);
    cr_assert_eq(q->fail[0].kind, KV_OP_GET);
    assert_bytes(q->fail[0].u.get.key, "fg", 2, "failure get key");
    assert_bytes(q->route_key, "c0", 2, "route key: the first compare's");
    req_free(f);
}

Test(kvwire_parse, txn_route_key_without_compares)
{
    struct req_fixture *f = req_new();
    struct proto_builder *b = &f->b;
    /* No compares: the first success op's key. */
    proto_ref succ[2] = {
        txn_op(b, PROTO_TXN_OP_BODY_DELETE_REQUEST, delete_req(b, "s1", 2, NULL, 0, false)),
        txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, "s2", 2, 0))};
    proto_ref fail[1] = {txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, "f1", 2, 0))};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, succ, 2, fail, 1), -1), 0);
    assert_bytes(f->out.route_key, "s1", 2, "route key");
    cr_assert_eq(f->out.cmps_n, 0);
    /* Only failure ops: the first failure op's key. */
    proto_builder_reset(b);
    const struct range_args r = {.key = "f2", .key_len = 2, .end = "f3", .end_len = 2};
    proto_ref fail2[1] = {txn_op(b, PROTO_TXN_OP_BODY_RANGE_REQUEST, range_req(b, &r))};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, NULL, 0, fail2, 1), -1), 0);
    assert_bytes(f->out.route_key, "f2", 2, "route key");
    cr_assert_eq(f->out.succ_n, 0);
    cr_assert_eq(f->out.fail_n, 1);
    /* A put first among the success ops. */
    proto_builder_reset(b);
    const struct put_args p = {.key = "pk", .key_len = 2};
    proto_ref succ3[1] = {txn_op(b, PROTO_TXN_OP_BODY_PUT_REQUEST, put_req(b, &p))};
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, succ3, 1, NULL, 0), -1), 0);
    assert_bytes(f->out.route_key, "pk", 2, "route key");
    req_free(f);
}

Test(kvwire_parse, empty_txn_is_invalid)
{
    struct req_fixture *f = req_new();
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(&f->b, NULL, 0, NULL, 0, NULL, 0), -1),
                 PROTO_STATUS_INVALID_ARGUMENT);
    req_free(f);
}

/* A txn with n compares, or n success ops, or n failure ops (which = 0, 1, 2). */
static int txn_of_n(struct req_fixture *f, uint32_t which, uint32_t n)
{
    struct proto_builder *b = &f->b;
    proto_builder_reset(b);
    proto_ref *refs = calloc(n, sizeof *refs);
    cr_assert_not_null(refs);
    for (uint32_t i = 0; i < n; i++) {
        char key[16];
        int len = snprintf(key, sizeof key, "k%u", i);
        if (which == 0) {
            const struct cmp_args c = {
                .key = key, .key_len = (uint32_t)len, .target = KV_CMP_VERSION, .number = i};
            refs[i] = compare(b, &c);
        } else {
            refs[i] = txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, key, (uint32_t)len, 0));
        }
    }
    proto_ref t =
        txn(b, refs, which == 0 ? n : 0, refs, which == 1 ? n : 0, refs, which == 2 ? n : 0);
    free(refs);
    return parse(f, PROTO_REQUEST_OP_TXN_REQUEST, t, -1);
}

Test(kvwire_parse, txn_limits)
{
    struct req_fixture *f = req_new();
    for (uint32_t which = 0; which < 3; which++) {
        cr_assert_eq(txn_of_n(f, which, TS_KV_TXN_OPS_MAX), 0, "list %u at the limit", which);
        uint32_t got = which == 0 ? f->out.cmps_n : which == 1 ? f->out.succ_n : f->out.fail_n;
        cr_assert_eq(got, TS_KV_TXN_OPS_MAX);
        if (which == 0) {
            cr_assert_eq(f->space.cmps[TS_KV_TXN_OPS_MAX - 1].number, TS_KV_TXN_OPS_MAX - 1);
        }
        cr_assert_eq(txn_of_n(f, which, TS_KV_TXN_OPS_MAX + 1), PROTO_STATUS_INVALID_ARGUMENT,
                     "list %u over the limit", which);
    }
    req_free(f);
}

/* Two ops, the one at `bad_at` without a body (UINT32_MAX: none). */
static proto_ref two_ops(struct proto_builder *b, uint32_t bad_at)
{
    proto_ref ops[2];
    for (uint32_t i = 0; i < 2; i++) {
        ops[i] = i == bad_at ? txn_op(b, PROTO_TXN_OP_BODY_NONE, 0)
                             : txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, "g", 1, 0));
    }
    return proto_create_vec_ref(b, ops, 2);
}

static int txn_lists(struct req_fixture *f, proto_ref succ, proto_ref fail)
{
    struct proto_builder *b = &f->b;
    proto_txn_request_begin(b);
    proto_txn_request_add_success(b, succ);
    proto_txn_request_add_failure(b, fail);
    return parse(f, PROTO_REQUEST_OP_TXN_REQUEST, proto_txn_request_end(b), -1);
}

Test(kvwire_parse, txn_op_without_a_body_is_invalid)
{
    struct req_fixture *f = req_new();
    struct proto_builder *b = &f->b;
    for (uint32_t at = 0; at < 2; at++) {
        proto_builder_reset(b);
        proto_ref s = two_ops(b, at);
        proto_ref g = two_ops(b, UINT32_MAX);
        cr_assert_eq(txn_lists(f, s, g), PROTO_STATUS_INVALID_ARGUMENT, "success op %u", at);
        proto_builder_reset(b);
        g = two_ops(b, UINT32_MAX);
        proto_ref fl = two_ops(b, at);
        cr_assert_eq(txn_lists(f, g, fl), PROTO_STATUS_INVALID_ARGUMENT, "failure op %u", at);
    }
    proto_builder_reset(b);
    proto_ref s = two_ops(b, UINT32_MAX);
    proto_ref fl = two_ops(b, UINT32_MAX);
    cr_assert_eq(txn_lists(f, s, fl), 0);
    cr_assert_eq(f->out.succ_n, 2);
    cr_assert_eq(f->out.fail_n, 2);
    req_free(f);
}

Test(kvwire_parse, txn_bad_compares)
{
    struct req_fixture *f = req_new();
    struct proto_builder *b = &f->b;
    struct cmp_args c = {.key = "k", .key_len = 1, .target = KV_CMP_LEASE + 1};
    proto_ref r = compare(b, &c);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1),
                 PROTO_STATUS_INVALID_ARGUMENT, "unknown target");
    proto_builder_reset(b);
    c.target = 255;
    r = compare(b, &c);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1),
                 PROTO_STATUS_INVALID_ARGUMENT, "target 255");
    proto_builder_reset(b);
    c.target = KV_CMP_MOD;
    c.result = KV_CMP_GREATER + 1;
    r = compare(b, &c);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1),
                 PROTO_STATUS_INVALID_ARGUMENT, "unknown result");
    /* The last known target and result pass. */
    proto_builder_reset(b);
    c.target = KV_CMP_LEASE;
    c.result = KV_CMP_GREATER;
    r = compare(b, &c);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1), 0);
    /* Compare keys follow the single-key rules. */
    proto_builder_reset(b);
    const struct cmp_args empty = {.target = KV_CMP_VERSION};
    r = compare(b, &empty);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1),
                 PROTO_STATUS_INVALID_ARGUMENT, "empty compare key");
    proto_builder_reset(b);
    const struct cmp_args long_key = {
        .key = f->big, .key_len = TS_KV_KEY_BYTES_MAX + 1, .target = KV_CMP_VERSION};
    r = compare(b, &long_key);
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1),
                 PROTO_STATUS_KEY_TOO_LARGE, "long compare key");
    req_free(f);
}

/* Every other request kind refuses a range_end over the key limit at the edge; so must a
 * compare (core/kv would refuse it only after a Raft round). */
Test(kvwire_parse, txn_compare_range_end_over_the_limit)
{
    struct req_fixture *f = req_new();
    struct proto_builder *b = &f->b;
    const struct cmp_args c = {.key = "k",
                               .key_len = 1,
                               .end = f->big,
                               .end_len = TS_KV_KEY_BYTES_MAX + 1,
                               .target = KV_CMP_VERSION};
    proto_ref r = compare(b, &c);
    int rc = parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1);
    /* At the limit it passes. */
    proto_builder_reset(b);
    const struct cmp_args at = {
        .key = "k", .key_len = 1, .end = f->big, .end_len = TS_KV_KEY_BYTES_MAX};
    r = compare(b, &at);
    int rc_at = parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, &r, 1, NULL, 0, NULL, 0), -1);
    req_free(f);
    cr_assert_eq(rc, PROTO_STATUS_KEY_TOO_LARGE, "a compare's range_end over the limit: %d", rc);
    cr_assert_eq(rc_at, 0);
}

Test(kvwire_parse, txn_op_errors_surface)
{
    struct req_fixture *f = req_new();
    struct proto_builder *b = &f->b;
    const struct put_args seq = {.key = "s", .key_len = 1, .sequential = true};
    proto_ref op = txn_op(b, PROTO_TXN_OP_BODY_PUT_REQUEST, put_req(b, &seq));
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, &op, 1, NULL, 0), -1),
                 PROTO_STATUS_UNSUPPORTED);
    proto_builder_reset(b);
    const struct put_args big = {
        .key = "v", .key_len = 1, .value = f->big, .value_len = TS_KV_VALUE_BYTES_MAX + 1};
    op = txn_op(b, PROTO_TXN_OP_BODY_PUT_REQUEST, put_req(b, &big));
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, NULL, 0, &op, 1), -1),
                 PROTO_STATUS_VALUE_TOO_LARGE);
    proto_builder_reset(b);
    op = txn_op(b, PROTO_TXN_OP_BODY_DELETE_REQUEST, delete_req(b, NULL, 0, "z", 1, false));
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, &op, 1, NULL, 0), -1),
                 PROTO_STATUS_INVALID_ARGUMENT);
    proto_builder_reset(b);
    op = txn_op(b, PROTO_TXN_OP_BODY_GET_REQUEST, get_req(b, f->big, TS_KV_KEY_BYTES_MAX + 1, 0));
    cr_assert_eq(parse(f, PROTO_REQUEST_OP_TXN_REQUEST, txn(b, NULL, 0, &op, 1, NULL, 0), -1),
                 PROTO_STATUS_KEY_TOO_LARGE);
    req_free(f);
}

Test(kvwire_status, every_kv_status)
{
    cr_assert_eq(kvwire_status(KV_OK), PROTO_STATUS_OK);
    cr_assert_eq(kvwire_status(KV_KEY_TOO_LARGE), PROTO_STATUS_KEY_TOO_LARGE);
    cr_assert_eq(kvwire_status(KV_VALUE_TOO_LARGE), PROTO_STATUS_VALUE_TOO_LARGE);
    cr_assert_eq(kvwire_status(KV_RANGE_MISMATCH), PROTO_STATUS_RANGE_NOT_FOUND);
    cr_assert_eq(kvwire_status(KV_KEY_NOT_FOUND), PROTO_STATUS_NOT_FOUND);
    cr_assert_eq(kvwire_status(KV_INVALID), PROTO_STATUS_INVALID_ARGUMENT);
    cr_assert_eq(kvwire_status(KV_MALFORMED), PROTO_STATUS_INTERNAL);
    cr_assert_eq(kvwire_status(KV_COMPACTED), PROTO_STATUS_COMPACTED);
    cr_assert_eq(kvwire_status(KV_FUTURE_REV), PROTO_STATUS_INVALID_ARGUMENT);
}

/* ---- Answers ------------------------------------------------------------------------------- */

struct ans_fixture {
    struct proto_builder b;
    struct ts_failing_allocator fa; /* counts the answer's live bytes */
    struct kvwire_answer a;
    struct kv_sink sink;
    struct proto_response resp;
    proto_ref leader, range; /* for the next finish */
};

static struct ans_fixture *ans_new(long fail_after)
{
    struct ans_fixture *f = calloc(1, sizeof *f);
    cr_assert_not_null(f);
    cr_assert_eq(proto_builder_init(&f->b, ts_allocator_default(), 256, TS_FRAME_BYTES_MAX), 0);
    ts_failing_allocator_init(&f->fa, ts_allocator_default(), fail_after);
    kvwire_answer_init(&f->a, &f->b, &f->fa.base);
    return f;
}

static void ans_free(struct ans_fixture *f)
{
    kvwire_answer_fini(&f->a);
    cr_assert_eq(f->fa.live_bytes, 0, "the answer leaked %ld bytes", f->fa.live_bytes);
    proto_builder_fini(&f->b);
    free(f);
}

static void begin(struct ans_fixture *f)
{
    f->sink = kvwire_answer_begin(&f->a);
    cr_assert_eq(f->sink.data, &f->a);
}

/* Finishes the answer with (status, message), decodes it into f->resp and checks that it
 * says (want_status, want_message). */
static void finish_as(struct ans_fixture *f, uint64_t id, uint16_t status, const char *message,
                      uint64_t revision, uint16_t want_status, const char *want_message)
{
    const uint8_t *frame;
    uint32_t len;
    int rc = kvwire_finish(&f->a, id, status, message, revision, f->leader, f->range, &frame, &len);
    cr_assert_eq(rc, 0, "finish: %s", ts_strerror(rc));
    struct proto_message m;
    char err[256] = "";
    rc = proto_message_decode(frame, len, true, &m, err, sizeof err);
    cr_assert_eq(rc, 0, "decode: %s", err);
    cr_assert_eq(proto_message_body_type(m), PROTO_BODY_RESPONSE);
    f->resp = proto_message_body_as_response(m);
    cr_assert_not_null(f->resp.tab);
    cr_assert_eq(proto_response_id(f->resp), id);
    cr_assert_eq(proto_response_status(f->resp), want_status);
    cr_assert_eq(proto_response_revision(f->resp), revision);
    struct proto_str msg = proto_response_message(f->resp);
    if (want_message == NULL) {
        cr_assert_null(msg.ptr);
    } else {
        cr_assert_not_null(msg.ptr);
        cr_assert_str_eq(msg.ptr, want_message);
        cr_assert_eq(msg.len, strlen(want_message));
    }
    f->leader = 0;
    f->range = 0;
}

static void finish(struct ans_fixture *f, uint64_t id, uint16_t status, const char *message,
                   uint64_t revision)
{
    finish_as(f, id, status, message, revision, status, message);
}

/* A row whose fields derive from i; value NULL when keys_only. */
struct row_buf {
    char key[32];
    char value[32];
    struct kv_row row;
};

static const struct kv_row *make_row(struct row_buf *r, uint32_t i, bool keys_only)
{
    int kl = snprintf(r->key, sizeof r->key, "key-%05u", i);
    int vl = snprintf(r->value, sizeof r->value, "value %u", i * 7u);
    r->row = (struct kv_row){.key = (const uint8_t *)r->key,
                             .key_len = (uint32_t)kl,
                             .value = keys_only ? NULL : (const uint8_t *)r->value,
                             .value_len = keys_only ? 0 : (uint32_t)vl,
                             .create_rev = 100 + i,
                             .mod_rev = 200 + i,
                             .version = 1 + i % 4,
                             .lease = i % 3 == 0 ? 0 : 5000 + i};
    return &r->row;
}

static void emit_row(struct ans_fixture *f, uint32_t i, bool keys_only)
{
    struct row_buf rb;
    f->sink.row(f->sink.data, make_row(&rb, i, keys_only));
    memset(&rb, 0xee, sizeof rb); /* the sink must have copied the row */
}

static void assert_kv(struct proto_key_value kv, uint32_t i, bool keys_only)
{
    struct row_buf rb;
    const struct kv_row *w = make_row(&rb, i, keys_only);
    cr_assert_not_null(kv.tab, "row %u missing", i);
    struct proto_bytes k = proto_key_value_key(kv);
    cr_assert_eq(k.len, w->key_len, "row %u key length", i);
    cr_assert(memcmp(k.data, w->key, w->key_len) == 0, "row %u key", i);
    if (keys_only) {
        cr_assert(!proto_key_value_has_value(kv), "row %u: a keys-only row has a value", i);
    } else {
        struct proto_bytes v = proto_key_value_value(kv);
        cr_assert_eq(v.len, w->value_len, "row %u value length", i);
        cr_assert(memcmp(v.data, w->value, w->value_len) == 0, "row %u value", i);
    }
    cr_assert_eq(proto_key_value_create_revision(kv), w->create_rev, "row %u create_rev", i);
    cr_assert_eq(proto_key_value_mod_revision(kv), w->mod_rev, "row %u mod_rev", i);
    cr_assert_eq(proto_key_value_version(kv), w->version, "row %u version", i);
    cr_assert_eq(proto_key_value_lease(kv), w->lease, "row %u lease", i);
}

static void op_end(struct ans_fixture *f, uint8_t kind, uint64_t count, bool more,
                   const char *next_key)
{
    const struct kv_op_end e = {.kind = kind,
                                .count = count,
                                .more = more,
                                .next_key = (const uint8_t *)next_key,
                                .next_key_len = next_key != NULL ? (uint32_t)strlen(next_key) : 0};
    f->sink.op_end(f->sink.data, &e);
}

Test(kvwire_answer, put_with_and_without_prev)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_PUT);
    op_end(f, KV_OP_PUT, 0, false, NULL);
    finish(f, 7, PROTO_STATUS_OK, NULL, 42);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_PUT_RESPONSE);
    struct proto_put_response pr = proto_response_op_as_put_response(f->resp);
    cr_assert_not_null(pr.tab);
    cr_assert_null(proto_put_response_prev_kv(pr).tab);

    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_PUT);
    emit_row(f, 3, false);
    op_end(f, KV_OP_PUT, 0, false, NULL);
    finish(f, 8, PROTO_STATUS_OK, NULL, 43);
    pr = proto_response_op_as_put_response(f->resp);
    cr_assert_not_null(pr.tab);
    assert_kv(proto_put_response_prev_kv(pr), 3, false);
    ans_free(f);
}

Test(kvwire_answer, get_found_and_missing)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_GET);
    emit_row(f, 1, false);
    op_end(f, KV_OP_GET, 1, false, NULL);
    finish(f, 1, PROTO_STATUS_OK, NULL, 10);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_GET_RESPONSE);
    assert_kv(proto_get_response_kv(proto_response_op_as_get_response(f->resp)), 1, false);

    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_GET);
    op_end(f, KV_OP_GET, 0, false, NULL);
    finish(f, 2, PROTO_STATUS_OK, NULL, 10);
    struct proto_get_response gr = proto_response_op_as_get_response(f->resp);
    cr_assert_not_null(gr.tab, "a missing key still answers a GetResponse");
    cr_assert_null(proto_get_response_kv(gr).tab);
    ans_free(f);
}

Test(kvwire_answer, delete_count_and_prev_kvs)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_DELETE);
    op_end(f, KV_OP_DELETE, 3, false, NULL);
    finish(f, 1, PROTO_STATUS_OK, NULL, 11);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_DELETE_RESPONSE);
    struct proto_delete_response dr = proto_response_op_as_delete_response(f->resp);
    cr_assert_eq(proto_delete_response_deleted(dr), 3);
    cr_assert_eq(proto_delete_response_prev_kvs(dr).len, 0);

    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_DELETE);
    for (uint32_t i = 0; i < 5; i++) {
        emit_row(f, 10 + i, false);
    }
    op_end(f, KV_OP_DELETE, 5, false, NULL);
    finish(f, 2, PROTO_STATUS_OK, NULL, 12);
    dr = proto_response_op_as_delete_response(f->resp);
    cr_assert_eq(proto_delete_response_deleted(dr), 5);
    struct proto_vec prev = proto_delete_response_prev_kvs(dr);
    cr_assert_eq(prev.len, 5);
    for (uint32_t i = 0; i < 5; i++) {
        assert_kv(proto_key_value_vec_at(prev, i), 10 + i, false);
    }
    ans_free(f);
}

Test(kvwire_answer, range_rows_more_and_next_key)
{
    struct ans_fixture *f = ans_new(-1);
    const uint32_t n = 300; /* past the row stack's first capacity, several times */
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_RANGE);
    for (uint32_t i = 0; i < n; i++) {
        emit_row(f, i, false);
    }
    op_end(f, KV_OP_RANGE, 1000, true, "key-00300");
    finish(f, 5, PROTO_STATUS_OK, NULL, 99);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_RANGE_RESPONSE);
    struct proto_range_response rr = proto_response_op_as_range_response(f->resp);
    struct proto_vec kvs = proto_range_response_kvs(rr);
    cr_assert_eq(kvs.len, n);
    for (uint32_t i = 0; i < n; i++) {
        assert_kv(proto_key_value_vec_at(kvs, i), i, false);
    }
    cr_assert(proto_range_response_more(rr));
    struct proto_bytes nk = proto_range_response_next_key(rr);
    cr_assert_eq(nk.len, 9);
    cr_assert(memcmp(nk.data, "key-00300", 9) == 0);
    cr_assert_eq(proto_range_response_count(rr), 1000);
    ans_free(f);
}

Test(kvwire_answer, range_keys_only_count_only_and_empty)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_RANGE);
    for (uint32_t i = 0; i < 4; i++) {
        emit_row(f, i, true);
    }
    op_end(f, KV_OP_RANGE, 4, false, NULL);
    finish(f, 1, PROTO_STATUS_OK, NULL, 3);
    struct proto_range_response rr = proto_response_op_as_range_response(f->resp);
    struct proto_vec kvs = proto_range_response_kvs(rr);
    cr_assert_eq(kvs.len, 4);
    for (uint32_t i = 0; i < 4; i++) {
        assert_kv(proto_key_value_vec_at(kvs, i), i, true);
    }
    cr_assert(!proto_range_response_more(rr));
    cr_assert_null(proto_range_response_next_key(rr).data);
    cr_assert_eq(proto_range_response_count(rr), 4);

    /* count_only: no rows, a count. */
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_RANGE);
    op_end(f, KV_OP_RANGE, 17, false, NULL);
    finish(f, 2, PROTO_STATUS_OK, NULL, 3);
    rr = proto_response_op_as_range_response(f->resp);
    cr_assert_not_null(rr.tab);
    cr_assert_eq(proto_range_response_kvs(rr).len, 0);
    cr_assert_eq(proto_range_response_count(rr), 17);
    cr_assert(!proto_range_response_more(rr));
    ans_free(f);
}

Test(kvwire_answer, txn_results_in_order)
{
    for (int succeeded = 0; succeeded < 2; succeeded++) {
        struct ans_fixture *f = ans_new(-1);
        begin(f);
        f->sink.txn_begin(f->sink.data, succeeded);
        /* put with its previous kv */
        f->sink.op_begin(f->sink.data, KV_OP_PUT);
        emit_row(f, 1, false);
        op_end(f, KV_OP_PUT, 0, false, NULL);
        /* a range with more rows than the row stack's first capacity */
        f->sink.op_begin(f->sink.data, KV_OP_RANGE);
        for (uint32_t i = 0; i < 70; i++) {
            emit_row(f, 100 + i, false);
        }
        op_end(f, KV_OP_RANGE, 80, true, "next");
        /* a get of a missing key */
        f->sink.op_begin(f->sink.data, KV_OP_GET);
        op_end(f, KV_OP_GET, 0, false, NULL);
        /* a delete with a previous kv */
        f->sink.op_begin(f->sink.data, KV_OP_DELETE);
        emit_row(f, 2, false);
        op_end(f, KV_OP_DELETE, 1, false, NULL);
        /* a get that finds its key */
        f->sink.op_begin(f->sink.data, KV_OP_GET);
        emit_row(f, 3, true);
        op_end(f, KV_OP_GET, 1, false, NULL);
        f->sink.txn_end(f->sink.data, succeeded);
        finish(f, 77, PROTO_STATUS_OK, NULL, 500);

        cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_TXN_RESPONSE);
        struct proto_txn_response tr = proto_response_op_as_txn_response(f->resp);
        cr_assert_not_null(tr.tab);
        cr_assert_eq(proto_txn_response_succeeded(tr), succeeded != 0);
        struct proto_vec res = proto_txn_response_results(tr);
        cr_assert_eq(res.len, 5);
        const uint8_t types[5] = {
            PROTO_TXN_OP_RESULT_BODY_PUT_RESPONSE, PROTO_TXN_OP_RESULT_BODY_RANGE_RESPONSE,
            PROTO_TXN_OP_RESULT_BODY_GET_RESPONSE, PROTO_TXN_OP_RESULT_BODY_DELETE_RESPONSE,
            PROTO_TXN_OP_RESULT_BODY_GET_RESPONSE};
        for (uint32_t i = 0; i < 5; i++) {
            cr_assert_eq(proto_txn_op_result_result_type(proto_txn_op_result_vec_at(res, i)),
                         types[i], "result %u", i);
        }
        struct proto_put_response pr =
            proto_txn_op_result_result_as_put_response(proto_txn_op_result_vec_at(res, 0));
        assert_kv(proto_put_response_prev_kv(pr), 1, false);
        struct proto_range_response rr =
            proto_txn_op_result_result_as_range_response(proto_txn_op_result_vec_at(res, 1));
        struct proto_vec kvs = proto_range_response_kvs(rr);
        cr_assert_eq(kvs.len, 70);
        for (uint32_t i = 0; i < 70; i++) {
            assert_kv(proto_key_value_vec_at(kvs, i), 100 + i, false);
        }
        cr_assert(proto_range_response_more(rr));
        cr_assert_eq(proto_range_response_count(rr), 80);
        cr_assert_eq(proto_range_response_next_key(rr).len, 4);
        cr_assert(memcmp(proto_range_response_next_key(rr).data, "next", 4) == 0);
        struct proto_get_response g0 =
            proto_txn_op_result_result_as_get_response(proto_txn_op_result_vec_at(res, 2));
        cr_assert_not_null(g0.tab);
        cr_assert_null(proto_get_response_kv(g0).tab);
        struct proto_delete_response dr =
            proto_txn_op_result_result_as_delete_response(proto_txn_op_result_vec_at(res, 3));
        cr_assert_eq(proto_delete_response_deleted(dr), 1);
        cr_assert_eq(proto_delete_response_prev_kvs(dr).len, 1);
        assert_kv(proto_key_value_vec_at(proto_delete_response_prev_kvs(dr), 0), 2, false);
        struct proto_get_response g1 =
            proto_txn_op_result_result_as_get_response(proto_txn_op_result_vec_at(res, 4));
        assert_kv(proto_get_response_kv(g1), 3, true);
        ans_free(f);
    }
}

Test(kvwire_answer, empty_txn_answer)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.txn_begin(f->sink.data, false);
    f->sink.txn_end(f->sink.data, false);
    finish(f, 3, PROTO_STATUS_OK, NULL, 8);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_TXN_RESPONSE);
    struct proto_txn_response tr = proto_response_op_as_txn_response(f->resp);
    cr_assert_not_null(tr.tab);
    cr_assert(!proto_txn_response_succeeded(tr));
    cr_assert_eq(proto_txn_response_results(tr).len, 0);
    ans_free(f);
}

Test(kvwire_answer, error_status_drops_the_op)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_RANGE);
    emit_row(f, 1, false);
    op_end(f, KV_OP_RANGE, 1, false, NULL);
    finish(f, 9, PROTO_STATUS_COMPACTED, "revision 4 is compacted", 12);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_NONE);
    cr_assert_null(proto_response_op_as_range_response(f->resp).tab);

    /* No op at all, no message, no revision. */
    begin(f);
    finish(f, 10, PROTO_STATUS_NOT_LEADER, NULL, 0);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_NONE);
    cr_assert(!proto_response_has_revision(f->resp));
    cr_assert(!proto_response_has_message(f->resp));

    /* An Ok answer may carry a message too. */
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_GET);
    op_end(f, KV_OP_GET, 0, false, NULL);
    finish(f, 11, PROTO_STATUS_OK, "fine", 1);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_GET_RESPONSE);
    ans_free(f);
}

Test(kvwire_answer, leader_and_range_refs)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    struct proto_builder *b = &f->b;
    proto_ref addr = proto_create_string(b, "10.0.0.2:7001", 13);
    proto_leader_hint_begin(b);
    proto_leader_hint_add_node_id(b, 2);
    proto_leader_hint_add_replica_id(b, 2);
    proto_leader_hint_add_address(b, addr);
    proto_ref leader = proto_leader_hint_end(b);
    proto_ref lo = proto_create_bytes(b, "a", 1);
    proto_ref hi = proto_create_bytes(b, "m", 1);
    proto_range_descriptor_begin(b);
    proto_range_descriptor_add_range_id(b, 6);
    proto_range_descriptor_add_start_key(b, lo);
    proto_range_descriptor_add_end_key(b, hi);
    proto_ref range = proto_range_descriptor_end(b);
    f->leader = leader;
    f->range = range;
    finish(f, 4, PROTO_STATUS_NOT_LEADER, "not the leader", 0);
    struct proto_leader_hint lh = proto_response_leader(f->resp);
    cr_assert_not_null(lh.tab);
    cr_assert_eq(proto_leader_hint_node_id(lh), 2);
    cr_assert_str_eq(proto_leader_hint_address(lh).ptr, "10.0.0.2:7001");
    struct proto_range_descriptor rd = proto_response_range(f->resp);
    cr_assert_not_null(rd.tab);
    cr_assert_eq(proto_range_descriptor_range_id(rd), 6);
    cr_assert_eq(proto_range_descriptor_start_key(rd).len, 1);
    cr_assert_eq(proto_range_descriptor_end_key(rd).data[0], 'm');
    ans_free(f);
}

Test(kvwire_answer, reuse_forgets_the_previous_answer)
{
    struct ans_fixture *f = ans_new(-1);
    begin(f);
    f->sink.txn_begin(f->sink.data, true);
    f->sink.op_begin(f->sink.data, KV_OP_RANGE);
    for (uint32_t i = 0; i < 100; i++) {
        emit_row(f, i, false);
    }
    op_end(f, KV_OP_RANGE, 100, false, NULL);
    f->sink.txn_end(f->sink.data, true);
    finish(f, 1, PROTO_STATUS_OK, NULL, 1);
    /* A new answer: a plain delete with one previous kv, then nothing of the txn. */
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_DELETE);
    emit_row(f, 7, false);
    op_end(f, KV_OP_DELETE, 1, false, NULL);
    finish(f, 2, PROTO_STATUS_OK, NULL, 2);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_DELETE_RESPONSE);
    struct proto_vec prev =
        proto_delete_response_prev_kvs(proto_response_op_as_delete_response(f->resp));
    cr_assert_eq(prev.len, 1);
    assert_kv(proto_key_value_vec_at(prev, 0), 7, false);
    /* And an answer with no op at all after one that had one. */
    begin(f);
    finish(f, 3, PROTO_STATUS_OK, NULL, 2);
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_NONE);
    ans_free(f);
}

Test(kvwire_answer, out_of_memory_answers_internal)
{
    struct ans_fixture *f = ans_new(0); /* the row stack cannot grow at all */
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_RANGE);
    emit_row(f, 1, false);
    op_end(f, KV_OP_RANGE, 1, false, NULL);
    finish_as(f, 6, PROTO_STATUS_OK, NULL, 5, PROTO_STATUS_INTERNAL,
              "out of memory building the answer");
    cr_assert_eq(proto_response_op_type(f->resp), PROTO_RESPONSE_OP_NONE);
    cr_assert_gt(f->fa.failures, 0);
    /* An error status the caller chose wins over the allocation failure. */
    begin(f);
    f->sink.op_begin(f->sink.data, KV_OP_GET);
    emit_row(f, 1, false);
    op_end(f, KV_OP_GET, 1, false, NULL);
    finish(f, 7, PROTO_STATUS_COMPACTED, "compacted", 5);
    ans_free(f);
}
