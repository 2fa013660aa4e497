/* net/proto builder and accessors: what is built reads back exactly. */
#include "helpers.h"

#include "core/util/rand.h"
#include "net/proto/proto_gen_rand.h"

#include <signal.h>

static struct proto_builder b;

static void setup(void)
{
    cr_assert_eq(proto_builder_init(&b, ts_allocator_default(), 64, TS_FRAME_BYTES_MAX), 0);
}

static void teardown(void)
{
    proto_builder_fini(&b);
}

TestSuite(proto_builder, .init = setup, .fini = teardown);

Test(proto_builder, put_request_reads_back)
{
    const uint8_t *out;
    uint32_t len;
    uint8_t value[256];
    for (int i = 0; i < 256; i++) {
        value[i] = (uint8_t)i;
    }
    build_put(&b, "hello123", value, sizeof(value), &out, &len);
    cr_assert_eq(len % 8, 0, "frames are a multiple of 8 bytes");
    cr_assert_eq(ts_load_le32(out), len - 4, "the prefix is the length after it");

    struct proto_message m;
    char err[128] = "";
    cr_assert_eq(proto_message_decode(out, len, true, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(proto_message_body_type(m), PROTO_BODY_REQUEST);
    struct proto_request r = proto_message_body_as_request(m);
    cr_assert_not_null(r.tab);
    cr_assert_null(proto_message_body_as_response(m).tab, "wrong union member reads absent");
    cr_assert_eq(proto_request_id(r), 42);
    cr_assert_eq(proto_request_range_id(r), 9);
    struct proto_range_epoch ep = proto_request_epoch(r);
    cr_assert_eq(ep.generation, 3);
    cr_assert_eq(ep.conf_version, 4);
    cr_assert_eq(proto_request_consistency(r), PROTO_CONSISTENCY_LINEARIZABLE);
    cr_assert_not(proto_request_has_timeout_ms(r), "defaults are not stored");
    struct proto_put_request p = proto_request_op_as_put_request(r);
    cr_assert_not_null(p.tab);
    struct proto_bytes k = proto_put_request_key(p);
    cr_assert_eq(k.len, 8);
    cr_assert_arr_eq(k.data, "hello123", 8);
    struct proto_bytes v = proto_put_request_value(p);
    cr_assert_eq(v.len, 256);
    cr_assert_arr_eq(v.data, value, 256);
    cr_assert_eq(proto_put_request_lease(p), 77);
    cr_assert(proto_put_request_prev_kv(p));
    cr_assert_not(proto_put_request_sequential(p));
}

Test(proto_builder, absent_tables_read_defaults)
{
    proto_get_response_begin(&b);
    proto_ref gr = proto_get_response_end(&b);
    proto_response_begin(&b);
    proto_response_add_op(&b, PROTO_RESPONSE_OP_GET_RESPONSE, gr);
    proto_ref resp = proto_response_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RESPONSE, resp);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), false, &out, &len), 0);

    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, false, &m, NULL, 0), 0);
    struct proto_response r = proto_message_body_as_response(m);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_OK);
    cr_assert_null(proto_response_message(r).ptr);
    struct proto_key_value kv = proto_get_response_kv(proto_response_op_as_get_response(r));
    cr_assert_null(kv.tab, "absent table gives a NULL view");
    cr_assert_eq(proto_key_value_version(kv), 0, "a NULL view reads defaults");
    cr_assert_null(proto_key_value_key(kv).data);
    cr_assert_eq(proto_response_leader(r).tab, NULL);
}

Test(proto_builder, vtables_are_shared)
{
    proto_ref refs[8];
    for (int i = 0; i < 8; i++) {
        proto_key_value_begin(&b);
        proto_key_value_add_version(&b, (uint64_t)i + 1);
        proto_key_value_add_mod_revision(&b, 100);
        refs[i] = proto_key_value_end(&b);
    }
    uint32_t before = b.size;
    proto_key_value_begin(&b);
    proto_key_value_add_version(&b, 99);
    proto_key_value_add_mod_revision(&b, 100);
    proto_key_value_end(&b);
    /* Alignment padding before the table, two u64 and the soffset; a vtable would add 14. */
    cr_assert_leq(b.size - before, 4 + 8 + 8 + 4, "a repeated shape adds no vtable");

    proto_ref kvs = proto_create_vec_ref(&b, refs, 8);
    proto_range_response_begin(&b);
    proto_range_response_add_kvs(&b, kvs);
    proto_ref rr = proto_range_response_end(&b);
    proto_response_begin(&b);
    proto_response_add_op(&b, PROTO_RESPONSE_OP_RANGE_RESPONSE, rr);
    proto_ref resp = proto_response_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RESPONSE, resp);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, &out, &len), 0);
    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, NULL, 0), 0);
    struct proto_vec v = proto_range_response_kvs(
        proto_response_op_as_range_response(proto_message_body_as_response(m)));
    cr_assert_eq(v.len, 8);
    const uint8_t *vt0 = NULL;
    for (uint32_t i = 0; i < v.len; i++) {
        struct proto_key_value kv = proto_key_value_vec_at(v, i);
        cr_assert_eq(proto_key_value_version(kv), i + 1);
        cr_assert_eq(proto_key_value_mod_revision(kv), 100);
        const uint8_t *vt = kv.tab - (int32_t)ts_load_le32(kv.tab);
        if (i == 0) {
            vt0 = vt;
        }
        cr_assert_eq(vt, vt0, "element %u has its own vtable", i);
    }
}

Test(proto_builder, grows_from_a_small_buffer)
{
    static uint8_t value[TS_VALUE_BYTES_MAX];
    memset(value, 0xab, sizeof(value));
    const uint8_t *out;
    uint32_t len;
    build_put(&b, "big", value, sizeof(value), &out, &len);
    cr_assert_geq(b.cap, sizeof(value));
    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, NULL, 0), 0);
    struct proto_bytes v =
        proto_put_request_value(proto_request_op_as_put_request(proto_message_body_as_request(m)));
    cr_assert_eq(v.len, sizeof(value));
    cr_assert_arr_eq(v.data, value, sizeof(value));
}

Test(proto_builder, limit_is_a_sticky_error)
{
    struct proto_builder small;
    cr_assert_eq(proto_builder_init(&small, ts_allocator_default(), 64, 1024), 0);
    uint8_t value[2048] = {0};
    proto_ref v = proto_create_bytes(&small, value, sizeof(value));
    cr_assert_eq(v, 0, "over the limit returns no reference");
    cr_assert_eq(small.err, TS_ETOOBIG);
    proto_put_request_begin(&small);
    proto_put_request_add_value(&small, v);
    proto_put_request_add_lease(&small, 5);
    proto_ref p = proto_put_request_end(&small);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&small, p == 0 ? 1 : p, true, &out, &len), TS_ETOOBIG);
    proto_builder_reset(&small);
    cr_assert_eq(small.err, 0, "reset clears the error");
    proto_builder_fini(&small);
}

Test(proto_builder, allocation_failure_is_reported_and_nothing_leaks)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), 1);
    struct proto_builder fb;
    cr_assert_eq(proto_builder_init(&fb, &fa.base, 64, TS_FRAME_BYTES_MAX), 0);
    uint8_t value[512] = {0};
    proto_ref v = proto_create_bytes(&fb, value, sizeof(value));
    cr_assert_eq(v, 0);
    cr_assert_eq(fb.err, TS_ENOMEM);
    cr_assert_eq(fa.failures, 1);
    proto_builder_fini(&fb);
    cr_assert_eq(fa.live_bytes, 0);

    struct ts_failing_allocator fail_init;
    ts_failing_allocator_init(&fail_init, ts_allocator_default(), 0);
    cr_assert_eq(proto_builder_init(&fb, &fail_init.base, 64, 1024), TS_ENOMEM);
}

Test(proto_builder, reset_reuses_memory)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    struct proto_builder rb;
    cr_assert_eq(proto_builder_init(&rb, &fa.base, 4096, TS_FRAME_BYTES_MAX), 0);
    const uint8_t *out;
    uint32_t len;
    uint8_t value[256] = {1};
    build_put(&rb, "k", value, sizeof(value), &out, &len);
    long calls = fa.calls;
    for (int i = 0; i < 1000; i++) {
        proto_builder_reset(&rb);
        build_put(&rb, "k", value, sizeof(value), &out, &len);
    }
    cr_assert_eq(fa.calls, calls, "steady state does not allocate");
    proto_builder_fini(&rb);
    cr_assert_eq(fa.live_bytes, 0);
}

Test(proto_builder, struct_vectors_and_scalar_vectors)
{
    struct proto_heartbeat hb[3];
    for (int i = 0; i < 3; i++) {
        hb[i] = (struct proto_heartbeat){.group_id = (uint64_t)i + 10,
                                         .term = 7,
                                         .commit = 99,
                                         .from = 1,
                                         .to = 2,
                                         .read_context = (uint64_t)i};
    }
    proto_ref hbs = proto_heartbeat_vec_create(&b, hb, 3);
    uint64_t voters[] = {1, 2, 3, UINT64_MAX};
    proto_ref vs = proto_create_vector(&b, voters, 4, 8, 8);
    proto_conf_state_begin(&b);
    proto_conf_state_add_voters(&b, vs);
    proto_ref cs = proto_conf_state_end(&b);
    proto_snapshot_meta_begin(&b);
    proto_snapshot_meta_add_conf_state(&b, cs);
    proto_ref sm = proto_snapshot_meta_end(&b);
    proto_raft_message_begin(&b);
    proto_raft_message_add_snapshot(&b, sm);
    proto_raft_message_add_type(&b, PROTO_RAFT_MESSAGE_TYPE_SNAPSHOT);
    proto_ref rm = proto_raft_message_end(&b);
    proto_ref msgs = proto_create_vec_ref(&b, &rm, 1);
    proto_raft_batch_begin(&b);
    proto_raft_batch_add_heartbeats(&b, hbs);
    proto_raft_batch_add_messages(&b, msgs);
    proto_raft_batch_add_from_node(&b, 5);
    proto_ref rb = proto_raft_batch_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RAFT_BATCH, rb);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, &out, &len), 0);

    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, NULL, 0), 0);
    struct proto_raft_batch batch = proto_message_body_as_raft_batch(m);
    cr_assert_eq(proto_raft_batch_from_node(batch), 5);
    struct proto_vec hv = proto_raft_batch_heartbeats(batch);
    cr_assert_eq(hv.len, 3);
    for (uint32_t i = 0; i < 3; i++) {
        struct proto_heartbeat h = proto_heartbeat_vec_at(hv, i);
        cr_assert_eq(h.group_id, i + 10);
        cr_assert_eq(h.commit, 99);
        cr_assert_eq(h.read_context, i);
    }
    struct proto_raft_message r = proto_raft_message_vec_at(proto_raft_batch_messages(batch), 0);
    cr_assert_eq(proto_raft_message_type(r), PROTO_RAFT_MESSAGE_TYPE_SNAPSHOT);
    struct proto_vec vv =
        proto_conf_state_voters(proto_snapshot_meta_conf_state(proto_raft_message_snapshot(r)));
    cr_assert_eq(vv.len, 4);
    cr_assert_eq(proto_vec_u64_at(vv, 3), UINT64_MAX);
    cr_assert_eq(((uintptr_t)vv.data - (uintptr_t)out) % 8, 0, "u64 elements are aligned");
}

Test(proto_builder, every_kind_round_trips, .timeout = 60)
{
    struct ts_rand r;
    ts_rand_seed(&r, 20261122);
    for (uint32_t v = 0; v < proto_rand_variant_count(); v++) {
        for (int i = 0; i < 100; i++) {
            proto_builder_reset(&b);
            proto_ref root = proto_rand_variant(&b, &r, v);
            const uint8_t *out;
            uint32_t len;
            bool frame = i % 2 == 0;
            cr_assert_eq(proto_message_finish(&b, root, frame, &out, &len), 0);
            struct proto_message m;
            char err[128] = "";
            int rc = proto_message_decode(out, len, frame, &m, err, sizeof(err));
            cr_assert_eq(rc, 0, "%s #%d: %s", proto_rand_variant_name(v), i, err);
            cr_assert_eq(frame ? len % 8 : len % b.minalign, 0);
        }
    }
}

Test(proto_builder, ending_a_table_never_begun_aborts, .signal = SIGABRT)
{
    proto_table_end(&b);
}
