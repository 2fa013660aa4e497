/* net/proto verifier: every malformed buffer gets a clear error, never a crash. */
#define _GNU_SOURCE
#include "helpers.h"

#include "core/util/rand.h"
#include "net/proto/proto_gen_rand.h"

static struct proto_builder b;
static uint8_t frame[4096];
static uint32_t frame_len;

static void setup(void)
{
    cr_assert_eq(proto_builder_init(&b, ts_allocator_default(), 256, TS_FRAME_BYTES_MAX), 0);
    const uint8_t *out;
    uint8_t value[16] = {7};
    build_put(&b, "key", value, sizeof(value), &out, &frame_len);
    cr_assert_leq(frame_len, sizeof(frame));
    memcpy(frame, out, frame_len);
}

static void teardown(void)
{
    proto_builder_fini(&b);
}

TestSuite(proto_verifier, .init = setup, .fini = teardown);

static int decode(const uint8_t *buf, uint32_t len, char *err, size_t n)
{
    struct proto_message m;
    err[0] = 0;
    int rc = proto_message_decode(buf, len, true, &m, err, n);
    if (rc != 0) {
        cr_assert_null(m.tab, "a rejected buffer gives no view");
    }
    return rc;
}

/* Position of the PutRequest table inside `frame`. */
static uint32_t put_table_pos(void)
{
    struct proto_message m;
    cr_assert_eq(proto_message_decode(frame, frame_len, true, &m, NULL, 0), 0);
    struct proto_put_request p = proto_request_op_as_put_request(proto_message_body_as_request(m));
    return (uint32_t)(p.tab - frame);
}

Test(proto_verifier, accepts_the_valid_frame)
{
    char err[128];
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), 0, "%s", err);
}

Test(proto_verifier, rejects_a_length_prefix_that_does_not_match)
{
    char err[128];
    ts_store_le32(frame, frame_len);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "length prefix") != NULL, "%s", err);
}

Test(proto_verifier, rejects_a_wrong_identifier)
{
    char err[128];
    frame[8] = 'X';
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "identifier") != NULL, "%s", err);
}

Test(proto_verifier, rejects_zero_and_out_of_bounds_root)
{
    char err[128];
    ts_store_le32(frame + 4, 0);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "root") != NULL, "%s", err);
    ts_store_le32(frame + 4, frame_len);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    ts_store_le32(frame + 4, 0x80000000u);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
}

Test(proto_verifier, rejects_a_misaligned_table)
{
    char err[128];
    ts_store_le32(frame + 4, ts_load_le32(frame + 4) + 2);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "Message") != NULL, "%s", err);
}

Test(proto_verifier, rejects_a_vtable_outside_the_buffer)
{
    char err[128];
    uint32_t pos = put_table_pos();
    ts_store_le32(frame + pos, (uint32_t)(int32_t)(pos + 64));
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "PutRequest: vtable") != NULL, "%s", err);
}

Test(proto_verifier, rejects_an_odd_vtable_size)
{
    char err[128];
    uint32_t pos = put_table_pos();
    uint32_t vt = (uint32_t)((int64_t)pos - (int32_t)ts_load_le32(frame + pos));
    ts_store_le16(frame + vt, 7);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "vtable size") != NULL, "%s", err);
}

Test(proto_verifier, rejects_a_field_outside_its_table)
{
    char err[128];
    uint32_t pos = put_table_pos();
    uint32_t vt = (uint32_t)((int64_t)pos - (int32_t)ts_load_le32(frame + pos));
    uint32_t tab_bytes = ts_load_le16(frame + vt + 2);
    ts_store_le16(frame + vt + 4, (uint16_t)tab_bytes); /* key starts at the table's end */
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "PutRequest.key: field outside its table") != NULL, "%s", err);
}

Test(proto_verifier, rejects_a_vector_longer_than_the_buffer)
{
    char err[128];
    uint32_t pos = put_table_pos();
    uint32_t vt = (uint32_t)((int64_t)pos - (int32_t)ts_load_le32(frame + pos));
    uint32_t key_field = pos + ts_load_le16(frame + vt + 4);
    uint32_t key_vec = key_field + ts_load_le32(frame + key_field);
    ts_store_le32(frame + key_vec, 0xfffffff0u);
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "PutRequest.key: vector longer") != NULL, "%s", err);
}

Test(proto_verifier, rejects_an_unknown_union_type)
{
    char err[128];
    struct proto_message m;
    cr_assert_eq(proto_message_decode(frame, frame_len, true, &m, NULL, 0), 0);
    uint32_t pos = (uint32_t)(proto_message_body_as_request(m).tab - frame);
    uint32_t vt = (uint32_t)((int64_t)pos - (int32_t)ts_load_le32(frame + pos));
    uint32_t type_at = pos + ts_load_le16(frame + vt + 4 + 2 * 5); /* op_type is id 5 */
    frame[type_at] = 200;
    cr_assert_eq(decode(frame, frame_len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "Request.op: unknown union type") != NULL, "%s", err);
}

Test(proto_verifier, rejects_an_unterminated_string)
{
    proto_builder_reset(&b);
    proto_ref s = proto_create_string(&b, "node-1:7000", 11);
    proto_hello_begin(&b);
    proto_hello_add_address(&b, s);
    proto_ref h = proto_hello_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_HELLO, h);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, &out, &len), 0);
    uint8_t buf[256];
    memcpy(buf, out, len);
    uint8_t *nul = memmem(buf, len, "node-1:7000", 11);
    cr_assert_not_null(nul);
    nul[11] = '!';
    char err[128];
    cr_assert_eq(decode(buf, len, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "Hello.address: string not terminated") != NULL, "%s", err);
}

Test(proto_verifier, too_many_tables_are_refused, .timeout = 60)
{
    /* One small table referenced a million and one times: cheap to send, and each
     * reference costs a verification, so the table count bounds the work. */
    proto_key_value_begin(&b);
    proto_key_value_add_version(&b, 1);
    proto_ref kv = proto_key_value_end(&b);
    uint32_t n = TS_PROTO_TABLES_MAX + 1;
    proto_ref *refs = malloc(sizeof(proto_ref) * n);
    for (uint32_t i = 0; i < n; i++) {
        refs[i] = kv;
    }
    proto_ref vec = proto_create_vec_ref(&b, refs, n);
    free(refs);
    proto_range_response_begin(&b);
    proto_range_response_add_kvs(&b, vec);
    proto_ref rr = proto_range_response_end(&b);
    proto_response_begin(&b);
    proto_response_add_op(&b, PROTO_RESPONSE_OP_RANGE_RESPONSE, rr);
    proto_ref resp = proto_response_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RESPONSE, resp);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, &out, &len), 0);
    char err[128];
    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "too many tables") != NULL, "%s", err);
}

Test(proto_verifier, oversized_buffers_are_refused)
{
    char err[128];
    struct proto_message m;
    size_t len = (size_t)TS_FRAME_BYTES_MAX + 8;
    uint8_t *big = calloc(1, len);
    memcpy(big, frame, frame_len);
    ts_store_le32(big, (uint32_t)(len - 4));
    cr_assert_eq(proto_message_decode(big, len, true, &m, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "frame limit") != NULL, "%s", err);
    free(big);
}

Test(proto_verifier, every_truncation_is_rejected_or_harmless, .timeout = 60)
{
    /* Cut every random message at every length, fixing the prefix: the verifier either
     * rejects it or the cut took only padding and the content is unchanged. */
    struct ts_rand r;
    ts_rand_seed(&r, 7);
    for (uint32_t v = 0; v < proto_rand_variant_count(); v++) {
        proto_builder_reset(&b);
        const uint8_t *out;
        uint32_t len;
        cr_assert_eq(proto_message_finish(&b, proto_rand_variant(&b, &r, v), true, &out, &len), 0);
        struct proto_message whole;
        cr_assert_eq(proto_message_decode(out, len, true, &whole, NULL, 0), 0);
        struct proto_json want;
        proto_json_init(&want, ts_allocator_default());
        proto_message_json(&want, whole);
        uint8_t *copy = malloc(len);
        for (uint32_t cut = 0; cut < len; cut++) {
            memcpy(copy, out, cut);
            if (cut >= 4) {
                ts_store_le32(copy, cut - 4);
            }
            struct proto_message m;
            if (proto_message_decode(copy, cut, true, &m, NULL, 0) != 0) {
                continue;
            }
            struct proto_json got;
            proto_json_init(&got, ts_allocator_default());
            proto_message_json(&got, m);
            cr_assert_str_eq(got.buf, want.buf, "variant %u cut at %u changed content", v, cut);
            proto_json_fini(&got);
        }
        proto_json_fini(&want);
        free(copy);
    }
}

Test(proto_verifier, errmsg_may_be_null)
{
    struct proto_message m;
    frame[8] = 'X';
    cr_assert_eq(proto_message_decode(frame, frame_len, true, &m, NULL, 0), TS_EPROTO);
    cr_assert_eq(proto_message_decode(frame, 3, false, &m, NULL, 0), TS_EPROTO);
}

static uint32_t finish_batch_frame(proto_ref batch, const uint8_t **out)
{
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RAFT_BATCH, batch);
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, out, &len), 0);
    return len;
}

Test(proto_verifier, shared_subtables_cannot_multiply_the_work)
{
    /* 999 references to one entry inside one message, and 999 references to that
     * message: an 8 KB frame that would make the verifier visit a million tables. */
    proto_entry_begin(&b);
    proto_entry_add_index(&b, 1);
    proto_ref entry = proto_entry_end(&b);
    static proto_ref refs[999];
    for (int i = 0; i < 999; i++) {
        refs[i] = entry;
    }
    proto_ref entries = proto_create_vec_ref(&b, refs, 999);
    proto_raft_message_begin(&b);
    proto_raft_message_add_entries(&b, entries);
    proto_ref msg = proto_raft_message_end(&b);
    for (int i = 0; i < 999; i++) {
        refs[i] = msg;
    }
    proto_ref msgs = proto_create_vec_ref(&b, refs, 999);
    proto_raft_batch_begin(&b);
    proto_raft_batch_add_messages(&b, msgs);
    const uint8_t *out;
    uint32_t len = finish_batch_frame(proto_raft_batch_end(&b), &out);
    cr_assert_lt(len, 16384);
    char err[128];
    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "too many tables") != NULL, "%s", err);
}

Test(proto_verifier, a_shared_value_cannot_multiply_the_bytes)
{
    static uint8_t value[4096];
    proto_ref v = proto_create_bytes(&b, value, sizeof(value));
    proto_ref kvs[64];
    for (int i = 0; i < 64; i++) {
        proto_key_value_begin(&b);
        proto_key_value_add_value(&b, v);
        kvs[i] = proto_key_value_end(&b);
    }
    proto_ref vec = proto_create_vec_ref(&b, kvs, 64);
    proto_range_response_begin(&b);
    proto_range_response_add_kvs(&b, vec);
    proto_ref rr = proto_range_response_end(&b);
    proto_response_begin(&b);
    proto_response_add_op(&b, PROTO_RESPONSE_OP_RANGE_RESPONSE, rr);
    proto_ref resp = proto_response_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RESPONSE, resp);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, &out, &len), 0);
    char err[128];
    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, err, sizeof(err)), TS_EPROTO);
    cr_assert(strstr(err, "shared data exceeds") != NULL, "%s", err);
}
