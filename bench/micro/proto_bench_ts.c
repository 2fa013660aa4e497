/*
 * proto_bench, Tessera's side: the benchmark messages through net/proto's C codec.
 *
 * Used the way a shard uses it: one proto_builder reused for every message
 * (proto_builder_reset), frames finished with proto_message_finish(frame = true),
 * decoded with proto_message_decode(frame = true), fields read through the generated
 * accessors. Fields are added largest first, as flatc's CreateXxx helpers add them, so
 * that both sides lay tables out with the same padding. See proto_bench.h for the
 * operations and proto_bench.cc for what is measured.
 */
#include "bench/micro/proto_bench.h"

#include "core/util/assert.h"
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "net/proto/proto_gen.h"

#include <stdbool.h>
#include <stdlib.h>

/* Large enough that steady state never grows the builder. */
#define PB_TS_BUILDER_BYTES 16384u

struct pb_ts {
    const struct pb_content *content;
    struct proto_builder b;
    const uint8_t *buf; /* the last finished frame, a view into b */
    uint32_t len;
    struct proto_message msg; /* the last verified view of buf */
};

void *pb_ts_new(const struct pb_content *content)
{
    TS_ASSERT(content != NULL);
    struct pb_ts *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->content = content;
    if (proto_builder_init(&t->b, ts_allocator_default(), PB_TS_BUILDER_BYTES,
                           TS_FRAME_BYTES_MAX) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void pb_ts_free(void *ctx)
{
    struct pb_ts *t = ctx;
    proto_builder_fini(&t->b);
    free(t);
}

const uint8_t *pb_ts_buffer(void *ctx, size_t *len)
{
    struct pb_ts *t = ctx;
    TS_ASSERT(t->buf != NULL);
    *len = t->len;
    return t->buf;
}

static uint64_t finish(struct pb_ts *t, proto_ref root)
{
    int rc = proto_message_finish(&t->b, root, true, &t->buf, &t->len);
    TS_ASSERT(rc == 0);
    return t->len;
}

static uint64_t verify(struct pb_ts *t)
{
    return proto_message_decode(t->buf, t->len, true, &t->msg, NULL, 0) == 0 ? 1 : 0;
}

/* ------------------------------------------------------------------ Put request */

uint64_t pb_ts_put_encode(void *ctx)
{
    struct pb_ts *t = ctx;
    const struct pb_put *p = &t->content->put;
    struct proto_builder *b = &t->b;
    proto_builder_reset(b);

    proto_ref key = proto_create_bytes(b, p->key, PB_PUT_KEY_BYTES);
    proto_ref value = proto_create_bytes(b, p->value, PB_PUT_VALUE_BYTES);
    proto_put_request_begin(b);
    proto_put_request_add_value(b, value);
    proto_put_request_add_key(b, key);
    proto_ref put = proto_put_request_end(b);

    struct proto_range_epoch epoch = {.generation = p->generation,
                                      .conf_version = p->conf_version};
    proto_request_begin(b);
    proto_request_add_epoch(b, &epoch);
    proto_request_add_range_id(b, p->range_id);
    proto_request_add_id(b, p->id);
    proto_request_add_op(b, PROTO_REQUEST_OP_PUT_REQUEST, put);
    proto_ref req = proto_request_end(b);

    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_REQUEST, req);
    return finish(t, proto_message_end(b));
}

uint64_t pb_ts_put_verify(void *ctx)
{
    return verify(ctx);
}

static uint64_t read_put(struct proto_message msg)
{
    uint64_t s = proto_message_body_type(msg);
    struct proto_request req = proto_message_body_as_request(msg);
    struct proto_range_epoch epoch = proto_request_epoch(req);
    s += proto_request_id(req) + proto_request_range_id(req);
    s += epoch.generation + epoch.conf_version;
    s += proto_request_consistency(req) + proto_request_timeout_ms(req);
    s += proto_request_hops(req) + proto_request_op_type(req);

    struct proto_put_request put = proto_request_op_as_put_request(req);
    struct proto_bytes key = proto_put_request_key(put);
    struct proto_bytes value = proto_put_request_value(put);
    s += pb_bytes_sum(key.data, key.len) + pb_bytes_sum(value.data, value.len);
    s += proto_put_request_lease(put);
    s += proto_put_request_prev_kv(put) + proto_put_request_ignore_value(put);
    s += proto_put_request_ignore_lease(put) + proto_put_request_sequential(put);
    return s;
}

uint64_t pb_ts_put_decode(void *ctx)
{
    struct pb_ts *t = ctx;
    return read_put(t->msg);
}

uint64_t pb_ts_put_full(void *ctx)
{
    struct pb_ts *t = ctx;
    pb_ts_put_encode(t);
    return verify(t) ? read_put(t->msg) : PB_REJECTED;
}

uint64_t pb_ts_put_sum(const uint8_t *buf, size_t len)
{
    struct proto_message msg;
    if (proto_message_decode(buf, len, true, &msg, NULL, 0) != 0) {
        return PB_REJECTED;
    }
    return read_put(msg);
}

/* ------------------------------------------------------------------ Raft append batch */

static proto_ref build_entries(struct proto_builder *b, const struct pb_batch *p)
{
    proto_ref refs[PB_BATCH_ENTRIES];
    for (uint32_t i = 0; i < PB_BATCH_ENTRIES; i++) {
        const struct pb_entry *e = &p->entries[i];
        proto_ref data = proto_create_bytes(b, e->data, PB_ENTRY_DATA_BYTES);
        proto_entry_begin(b);
        proto_entry_add_index(b, e->index);
        proto_entry_add_term(b, e->term);
        proto_entry_add_data(b, data);
        proto_entry_add_type(b, PROTO_ENTRY_TYPE_NORMAL);
        refs[i] = proto_entry_end(b);
    }
    return proto_create_vec_ref(b, refs, PB_BATCH_ENTRIES);
}

uint64_t pb_ts_batch_encode(void *ctx)
{
    struct pb_ts *t = ctx;
    const struct pb_batch *p = &t->content->batch;
    struct proto_builder *b = &t->b;
    proto_builder_reset(b);

    proto_ref entries = build_entries(b, p);
    proto_raft_message_begin(b);
    proto_raft_message_add_commit(b, p->commit);
    proto_raft_message_add_index(b, p->index);
    proto_raft_message_add_log_term(b, p->log_term);
    proto_raft_message_add_term(b, p->term);
    proto_raft_message_add_to(b, p->to);
    proto_raft_message_add_from(b, p->from);
    proto_raft_message_add_group_id(b, p->group_id);
    proto_raft_message_add_entries(b, entries);
    proto_raft_message_add_type(b, PROTO_RAFT_MESSAGE_TYPE_APPEND);
    proto_ref rm = proto_raft_message_end(b);
    proto_ref messages = proto_create_vec_ref(b, &rm, 1);

    proto_raft_batch_begin(b);
    proto_raft_batch_add_cluster_id(b, p->cluster_id);
    proto_raft_batch_add_to_node(b, p->to_node);
    proto_raft_batch_add_from_node(b, p->from_node);
    proto_raft_batch_add_messages(b, messages);
    proto_ref batch = proto_raft_batch_end(b);

    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RAFT_BATCH, batch);
    return finish(t, proto_message_end(b));
}

uint64_t pb_ts_batch_verify(void *ctx)
{
    return verify(ctx);
}

static uint64_t read_entry(struct proto_entry e)
{
    struct proto_bytes data = proto_entry_data(e);
    return proto_entry_term(e) + proto_entry_index(e) + proto_entry_type(e) +
           pb_bytes_sum(data.data, data.len);
}

static uint64_t read_raft_message(struct proto_raft_message m)
{
    uint64_t s = proto_raft_message_group_id(m) + proto_raft_message_type(m);
    s += proto_raft_message_from(m) + proto_raft_message_to(m);
    s += proto_raft_message_term(m) + proto_raft_message_log_term(m);
    s += proto_raft_message_index(m) + proto_raft_message_commit(m);
    s += proto_raft_message_reject(m) + proto_raft_message_reject_hint(m);
    struct proto_vec entries = proto_raft_message_entries(m);
    s += entries.len;
    for (uint32_t i = 0; i < entries.len; i++) {
        s += read_entry(proto_entry_vec_at(entries, i));
    }
    struct proto_bytes context = proto_raft_message_context(m);
    s += pb_bytes_sum(context.data, context.len);
    s += proto_raft_message_has_snapshot(m);
    struct proto_range_epoch epoch = proto_raft_message_epoch(m);
    s += epoch.generation + epoch.conf_version;
    return s;
}

static uint64_t read_batch(struct proto_message msg)
{
    uint64_t s = proto_message_body_type(msg);
    struct proto_raft_batch rb = proto_message_body_as_raft_batch(msg);
    s += proto_raft_batch_from_node(rb) + proto_raft_batch_to_node(rb);
    s += proto_raft_batch_cluster_id(rb);
    struct proto_vec messages = proto_raft_batch_messages(rb);
    s += messages.len;
    for (uint32_t i = 0; i < messages.len; i++) {
        s += read_raft_message(proto_raft_message_vec_at(messages, i));
    }
    struct proto_vec hbs = proto_raft_batch_heartbeats(rb);
    s += hbs.len;
    for (uint32_t i = 0; i < hbs.len; i++) {
        struct proto_heartbeat h = proto_heartbeat_vec_at(hbs, i);
        s += h.group_id + h.term + h.commit + h.from + h.to + h.read_context;
    }
    struct proto_vec acks = proto_raft_batch_heartbeat_acks(rb);
    s += acks.len;
    for (uint32_t i = 0; i < acks.len; i++) {
        struct proto_heartbeat_ack a = proto_heartbeat_ack_vec_at(acks, i);
        s += a.group_id + a.term + a.from + a.to + a.read_context;
    }
    return s;
}

uint64_t pb_ts_batch_decode(void *ctx)
{
    struct pb_ts *t = ctx;
    return read_batch(t->msg);
}

uint64_t pb_ts_batch_full(void *ctx)
{
    struct pb_ts *t = ctx;
    pb_ts_batch_encode(t);
    return verify(t) ? read_batch(t->msg) : PB_REJECTED;
}

uint64_t pb_ts_batch_sum(const uint8_t *buf, size_t len)
{
    struct proto_message msg;
    if (proto_message_decode(buf, len, true, &msg, NULL, 0) != 0) {
        return PB_REJECTED;
    }
    return read_batch(msg);
}
