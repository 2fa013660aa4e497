/* net/proto JSON dumps: exact text, escaping, unknown enum values, allocation failure. */
#include "helpers.h"

static struct proto_builder b;

static void setup(void)
{
    cr_assert_eq(proto_builder_init(&b, ts_allocator_default(), 256, TS_FRAME_BYTES_MAX), 0);
}

static void teardown(void)
{
    proto_builder_fini(&b);
}

TestSuite(proto_json, .init = setup, .fini = teardown);

static struct proto_message finish(proto_ref body, uint8_t type)
{
    proto_message_begin(&b);
    proto_message_add_body(&b, type, body);
    const uint8_t *out;
    uint32_t len;
    cr_assert_eq(proto_message_finish(&b, proto_message_end(&b), true, &out, &len), 0);
    struct proto_message m;
    cr_assert_eq(proto_message_decode(out, len, true, &m, NULL, 0), 0);
    return m;
}

static char *dump(struct proto_message m)
{
    struct proto_json j;
    proto_json_init(&j, ts_allocator_default());
    proto_message_json(&j, m);
    cr_assert_eq(j.err, 0);
    return j.buf; /* freed by the caller with free() (libc allocator) */
}

Test(proto_json, exact_text_of_a_hello)
{
    proto_ref addr = proto_create_string(&b, "127.0.0.1:7000", 14);
    proto_hello_begin(&b);
    proto_hello_add_node_id(&b, 3);
    proto_hello_add_kind(&b, PROTO_CONNECTION_KIND_PEER);
    proto_hello_add_address(&b, addr);
    char *s = dump(finish(proto_hello_end(&b), PROTO_BODY_HELLO));
    cr_assert_str_eq(s, "{\"body_type\":\"Hello\",\"body\":{\"kind\":\"Peer\",\"node_id\":3,"
                        "\"cluster_id\":0,\"address\":\"127.0.0.1:7000\",\"protocol_version\":0}}");
    free(s);
}

Test(proto_json, strings_are_escaped_and_utf8_kept)
{
    const char msg[] = "a\"b\\c\n\x01 caf\xc3\xa9 \xff";
    proto_ref m = proto_create_string(&b, msg, sizeof(msg) - 1);
    proto_hello_ack_begin(&b);
    proto_hello_ack_add_message(&b, m);
    char *s = dump(finish(proto_hello_ack_end(&b), PROTO_BODY_HELLO_ACK));
    cr_assert(strstr(s, "\"message\":\"a\\\"b\\\\c\\u000a\\u0001 caf\xc3\xa9 \\u00ff\"") != NULL,
              "%s", s);
    free(s);
}

Test(proto_json, unknown_enum_values_print_as_numbers)
{
    proto_hello_ack_begin(&b);
    proto_hello_ack_add_status(&b, 999);
    char *s = dump(finish(proto_hello_ack_end(&b), PROTO_BODY_HELLO_ACK));
    cr_assert(strstr(s, "\"status\":999") != NULL, "%s", s);
    free(s);
    cr_assert_str_eq(proto_status_name(PROTO_STATUS_STALE_EPOCH), "StaleEpoch");
    cr_assert_null(proto_status_name(999));
    cr_assert_str_eq(proto_body_name(PROTO_BODY_RAFT_BATCH), "RaftBatch");
    cr_assert_str_eq(proto_body_name(0), "NONE");
}

Test(proto_json, allocation_failure_sets_err)
{
    proto_hello_begin(&b);
    struct proto_message m = finish(proto_hello_end(&b), PROTO_BODY_HELLO);
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), 0);
    struct proto_json j;
    proto_json_init(&j, &fa.base);
    proto_message_json(&j, m);
    cr_assert_eq(j.err, TS_ENOMEM);
    proto_json_fini(&j);
    cr_assert_eq(fa.live_bytes, 0);
}
