/* Shared fixtures for the net/proto unit tests. */
#ifndef TS_TESTS_UNIT_NET_PROTO_HELPERS_H
#define TS_TESTS_UNIT_NET_PROTO_HELPERS_H

#include "core/util/err.h"
#include "net/proto/proto_gen.h"

#include <criterion/criterion.h>

/* Builds Message{Request{id, range_id, epoch, PutRequest{key, value, lease, prev_kv}}}
 * as a frame. The returned view is valid until the builder's next reset. */
static inline void build_put(struct proto_builder *b, const char *key, const void *value,
                             uint32_t value_len, const uint8_t **out, uint32_t *len)
{
    proto_ref k = proto_create_bytes(b, key, (uint32_t)strlen(key));
    proto_ref v = proto_create_bytes(b, value, value_len);
    proto_put_request_begin(b);
    proto_put_request_add_lease(b, 77);
    proto_put_request_add_key(b, k);
    proto_put_request_add_value(b, v);
    proto_put_request_add_prev_kv(b, true);
    proto_ref put = proto_put_request_end(b);
    proto_request_begin(b);
    proto_request_add_id(b, 42);
    proto_request_add_range_id(b, 9);
    struct proto_range_epoch ep = {.generation = 3, .conf_version = 4};
    proto_request_add_epoch(b, &ep);
    proto_request_add_op(b, PROTO_REQUEST_OP_PUT_REQUEST, put);
    proto_ref req = proto_request_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_REQUEST, req);
    proto_ref msg = proto_message_end(b);
    int rc = proto_message_finish(b, msg, true, out, len);
    cr_assert_eq(rc, 0, "finish: %s", ts_strerror(rc));
}

#endif
