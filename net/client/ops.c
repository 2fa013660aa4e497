/*
 * net/client answers and the unkeyed request kinds: the Status mapping, the decoder of
 * every answer kind and the accessors of their repeated parts (tessera_response_kvs...),
 * then ping, status and members. The key-value kinds' encoders are in kv.c.
 */
#include "net/client/client_int.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"

#include <stdbool.h>
#include <string.h>

/* The public codes are Tessera's own (R7): passing a code through needs no table. */
_Static_assert((int)TESSERA_EPROTO == (int)TS_EPROTO, "mirrors err.h");
_Static_assert((int)TESSERA_ETOOBIG == (int)TS_ETOOBIG, "mirrors err.h");
_Static_assert((int)TESSERA_ECORRUPT == (int)TS_ECORRUPT, "mirrors err.h");
_Static_assert((int)TESSERA_ENOTLEADER == (int)TS_ENOTLEADER, "mirrors err.h");
_Static_assert((int)TESSERA_ESTALEEPOCH == (int)TS_ESTALEEPOCH, "mirrors err.h");
_Static_assert((int)TESSERA_ENORANGE == (int)TS_ENORANGE, "mirrors err.h");
_Static_assert((int)TESSERA_ENOTFOUND == (int)TS_ENOTFOUND, "mirrors err.h");
_Static_assert((int)TESSERA_EFULL == (int)TS_EFULL, "mirrors err.h");
_Static_assert((int)TESSERA_EUNAVAIL == (int)TS_EUNAVAIL, "mirrors err.h");
_Static_assert((int)TESSERA_ETIMEOUT == (int)TS_ETIMEOUT, "mirrors err.h");
_Static_assert((int)TESSERA_ECOMPACTED == (int)TS_ECOMPACTED, "mirrors err.h");
_Static_assert((int)TESSERA_ESHUTDOWN == (int)TS_ESHUTDOWN, "mirrors err.h");
_Static_assert((int)TESSERA_EINVAL == (int)TS_EINVAL, "mirrors err.h");
_Static_assert((int)TESSERA_ENOMEM == (int)TS_ENOMEM, "mirrors err.h");
_Static_assert((int)TESSERA_EIO == (int)TS_EIO, "mirrors err.h");
_Static_assert((int)TESSERA_ENOSPACE == (int)TS_ENOSPACE, "mirrors err.h");
_Static_assert(TS_ERR_END_ == TS_ENOSPACE + 1, "a new core code needs a TESSERA_ twin");

const char *tessera_strerror(int code)
{
    return ts_strerror(code);
}

int client_status_to_error(uint16_t status)
{
    switch (status) {
    case PROTO_STATUS_OK:
        return 0;
    case PROTO_STATUS_NOT_LEADER:
        return TS_ENOTLEADER;
    case PROTO_STATUS_STALE_EPOCH:
        return TS_ESTALEEPOCH;
    case PROTO_STATUS_RANGE_NOT_FOUND:
        return TS_ENORANGE;
    case PROTO_STATUS_KEY_TOO_LARGE:
    case PROTO_STATUS_VALUE_TOO_LARGE:
    case PROTO_STATUS_FRAME_TOO_LARGE:
        return TS_ETOOBIG;
    case PROTO_STATUS_TIMEOUT:
        return TS_ETIMEOUT;
    case PROTO_STATUS_UNAVAILABLE:
        return TS_EUNAVAIL;
    case PROTO_STATUS_COMPACTED:
        return TS_ECOMPACTED;
    case PROTO_STATUS_LEASE_NOT_FOUND:
    case PROTO_STATUS_NOT_FOUND:
        return TS_ENOTFOUND;
    case PROTO_STATUS_TOO_MANY_REQUESTS:
        return TS_EFULL;
    case PROTO_STATUS_NO_SPACE:
        return TS_ENOSPACE;
    case PROTO_STATUS_INTERNAL:
        return TS_EIO;
    case PROTO_STATUS_INVALID_ARGUMENT:
    case PROTO_STATUS_UNSUPPORTED:
    case PROTO_STATUS_CLUSTER_MISMATCH:
        return TS_EINVAL;
    default: /* MalformedFrame, or a status newer than this library */
        return TS_EPROTO;
    }
}

/* ------------------------------------------------------------------ answers */

static struct tessera_kv kv_view(struct proto_key_value kv)
{
    struct proto_bytes k = proto_key_value_key(kv);
    struct proto_bytes v = proto_key_value_value(kv);
    return (struct tessera_kv){.key = k.data,
                               .key_len = k.len,
                               .value = v.data,
                               .value_len = v.len,
                               .create_revision = proto_key_value_create_revision(kv),
                               .mod_revision = proto_key_value_mod_revision(kv),
                               .version = proto_key_value_version(kv),
                               .lease = proto_key_value_lease(kv)};
}

/* Fills out->u from the op table tab of kind op (any of the key-value answers, which a
 * txn result nests too). tab must be non-NULL and verified. */
static void decode_kv_body(enum tessera_op op, const uint8_t *tab, struct tessera_response *out)
{
    TS_ASSERT(tab != NULL);
    out->op = op;
    out->internal_ = tab;
    switch (op) {
    case TESSERA_OP_PUT: {
        struct proto_key_value prev = proto_put_response_prev_kv((struct proto_put_response){tab});
        out->u.put.has_prev = prev.tab != NULL;
        out->u.put.prev = prev.tab != NULL ? kv_view(prev) : (struct tessera_kv){0};
        return;
    }
    case TESSERA_OP_GET: {
        struct proto_key_value kv = proto_get_response_kv((struct proto_get_response){tab});
        out->u.get.found = kv.tab != NULL;
        out->u.get.kv = kv.tab != NULL ? kv_view(kv) : (struct tessera_kv){0};
        return;
    }
    case TESSERA_OP_DELETE:
        out->u.del.deleted = proto_delete_response_deleted((struct proto_delete_response){tab});
        return;
    case TESSERA_OP_RANGE: {
        struct proto_range_response rr = {tab};
        struct proto_bytes nk = proto_range_response_next_key(rr);
        out->u.range.count = proto_range_response_count(rr);
        out->u.range.more = proto_range_response_more(rr);
        out->u.range.next_key = nk.data;
        out->u.range.next_key_len = nk.len;
        return;
    }
    default:
        TS_ASSERT(!"not a key-value answer");
    }
}

static void decode_status(struct proto_status_response st, struct tessera_response *out)
{
    out->u.status.node_id = proto_status_response_node_id(st);
    out->u.status.cluster_id = proto_status_response_cluster_id(st);
    out->u.status.version = proto_status_response_version(st).ptr;
    out->u.status.shards = proto_status_response_shards(st);
    out->u.status.replicas = proto_status_response_replicas(st);
    out->u.status.leaders = proto_status_response_leaders(st);
    out->u.status.db_size_bytes = proto_status_response_db_size_bytes(st);
    out->u.status.wal_size_bytes = proto_status_response_wal_size_bytes(st);
    out->u.status.uptime_ms = proto_status_response_uptime_ms(st);
}

/* The op table of resp when it answers a request of kind op, else NULL. */
static const uint8_t *op_table(struct proto_response resp, enum tessera_op op)
{
    switch (op) {
    case TESSERA_OP_PING:
        return proto_response_op_as_ping_response(resp).tab;
    case TESSERA_OP_PUT:
        return proto_response_op_as_put_response(resp).tab;
    case TESSERA_OP_GET:
        return proto_response_op_as_get_response(resp).tab;
    case TESSERA_OP_DELETE:
        return proto_response_op_as_delete_response(resp).tab;
    case TESSERA_OP_RANGE:
        return proto_response_op_as_range_response(resp).tab;
    case TESSERA_OP_TXN:
        return proto_response_op_as_txn_response(resp).tab;
    case TESSERA_OP_STATUS:
        return proto_response_op_as_status_response(resp).tab;
    case TESSERA_OP_MEMBERS:
        return proto_response_op_as_members_response(resp).tab;
    case TESSERA_OP_JOIN:
        return proto_response_op_as_join_response(resp).tab;
    case TESSERA_OP_ROUTE:
        return proto_response_op_as_route_response(resp).tab;
    case TESSERA_OP_NONE:
        break;
    }
    TS_ASSERT(!"unknown request kind");
    return NULL;
}

int client_decode_op(enum tessera_op op, struct proto_response resp, struct tessera_response *out)
{
    TS_ASSERT(resp.tab != NULL);
    TS_ASSERT(out != NULL);
    const uint8_t *tab = op_table(resp, op);
    if (tab == NULL) {
        return TS_EPROTO;
    }
    out->op = op;
    out->internal_ = tab;
    switch (op) {
    case TESSERA_OP_PING: {
        struct proto_bytes b = proto_ping_response_payload((struct proto_ping_response){tab});
        out->u.ping.payload = b.data;
        out->u.ping.len = b.len;
        return 0;
    }
    case TESSERA_OP_TXN: {
        struct proto_txn_response t = {tab};
        out->u.txn.succeeded = proto_txn_response_succeeded(t);
        out->u.txn.results = proto_txn_response_results(t).len;
        return 0;
    }
    case TESSERA_OP_STATUS:
        decode_status((struct proto_status_response){tab}, out);
        return 0;
    case TESSERA_OP_MEMBERS:
        out->u.members.count =
            proto_members_response_members((struct proto_members_response){tab}).len;
        return 0;
    case TESSERA_OP_JOIN: {
        struct proto_join_response j = {tab};
        out->u.join.node_id = proto_join_response_node_id(j);
        out->u.join.cluster_id = proto_join_response_cluster_id(j);
        out->u.join.ranges = proto_join_response_ranges(j);
        out->u.join.shards = proto_join_response_shards(j);
        out->u.join.initial_cluster = proto_join_response_initial_cluster(j).ptr;
        out->u.join.members = proto_join_response_members(j).len;
        return 0;
    }
    case TESSERA_OP_ROUTE:
        out->u.route.count = proto_route_response_ranges((struct proto_route_response){tab}).len;
        return 0;
    default:
        decode_kv_body(op, tab, out);
        return 0;
    }
}

size_t tessera_response_kvs(const struct tessera_response *r)
{
    if (r == NULL || r->internal_ == NULL) {
        return 0;
    }
    const uint8_t *tab = r->internal_;
    if (r->op == TESSERA_OP_RANGE) {
        return proto_range_response_kvs((struct proto_range_response){tab}).len;
    }
    if (r->op == TESSERA_OP_DELETE) {
        return proto_delete_response_prev_kvs((struct proto_delete_response){tab}).len;
    }
    return 0;
}

int tessera_response_kv_at(const struct tessera_response *r, size_t i, struct tessera_kv *out)
{
    if (out == NULL || i >= tessera_response_kvs(r)) {
        return TS_EINVAL;
    }
    const uint8_t *tab = r->internal_;
    struct proto_vec v = r->op == TESSERA_OP_RANGE
                             ? proto_range_response_kvs((struct proto_range_response){tab})
                             : proto_delete_response_prev_kvs((struct proto_delete_response){tab});
    TS_ASSERT(i < v.len);
    *out = kv_view(proto_key_value_vec_at(v, (uint32_t)i));
    return 0;
}

int tessera_response_txn_result(const struct tessera_response *r, size_t i,
                                struct tessera_response *out)
{
    if (r == NULL || out == NULL || r->op != TESSERA_OP_TXN || r->internal_ == NULL) {
        return TS_EINVAL;
    }
    struct proto_vec v = proto_txn_response_results((struct proto_txn_response){r->internal_});
    if (i >= v.len) {
        return TS_EINVAL;
    }
    struct proto_txn_op_result res = proto_txn_op_result_vec_at(v, (uint32_t)i);
    static const enum tessera_op ops[] = {
        [PROTO_TXN_OP_RESULT_BODY_PUT_RESPONSE] = TESSERA_OP_PUT,
        [PROTO_TXN_OP_RESULT_BODY_GET_RESPONSE] = TESSERA_OP_GET,
        [PROTO_TXN_OP_RESULT_BODY_DELETE_RESPONSE] = TESSERA_OP_DELETE,
        [PROTO_TXN_OP_RESULT_BODY_RANGE_RESPONSE] = TESSERA_OP_RANGE,
    };
    uint8_t type = proto_txn_op_result_result_type(res);
    if (type == 0 || type >= sizeof(ops) / sizeof(ops[0])) {
        return TS_EPROTO;
    }
    /* Every member of the union is a table: any typed accessor reads the reference. */
    const uint8_t *tab = type == PROTO_TXN_OP_RESULT_BODY_PUT_RESPONSE
                             ? proto_txn_op_result_result_as_put_response(res).tab
                         : type == PROTO_TXN_OP_RESULT_BODY_GET_RESPONSE
                             ? proto_txn_op_result_result_as_get_response(res).tab
                         : type == PROTO_TXN_OP_RESULT_BODY_DELETE_RESPONSE
                             ? proto_txn_op_result_result_as_delete_response(res).tab
                             : proto_txn_op_result_result_as_range_response(res).tab;
    if (tab == NULL) {
        return TS_EPROTO;
    }
    *out = (struct tessera_response){
        .id = r->id, .status = 0, .message = NULL, .revision = r->revision};
    decode_kv_body(ops[type], tab, out);
    return 0;
}

int tessera_response_member_at(const struct tessera_response *r, size_t i,
                               struct tessera_member *out)
{
    if (r == NULL || out == NULL || (r->op != TESSERA_OP_MEMBERS && r->op != TESSERA_OP_JOIN) ||
        r->internal_ == NULL) {
        return TS_EINVAL;
    }
    struct proto_vec v =
        r->op == TESSERA_OP_JOIN
            ? proto_join_response_members((struct proto_join_response){r->internal_})
            : proto_members_response_members((struct proto_members_response){r->internal_});
    if (i >= v.len) {
        return TS_EINVAL;
    }
    struct proto_member m = proto_member_vec_at(v, (uint32_t)i);
    *out = (struct tessera_member){.node_id = proto_member_node_id(m),
                                   .address = proto_member_address(m).ptr,
                                   .shards = proto_member_shards(m),
                                   .state = (enum tessera_node_state)proto_member_state(m),
                                   .capacity_bytes = proto_member_capacity_bytes(m),
                                   .used_bytes = proto_member_used_bytes(m),
                                   .replicas = proto_member_replicas(m),
                                   .leaders = proto_member_leaders(m)};
    return 0;
}

int tessera_response_range_at(const struct tessera_response *r, size_t i,
                              struct tessera_range_desc *out)
{
    if (r == NULL || out == NULL || r->op != TESSERA_OP_ROUTE || r->internal_ == NULL) {
        return TS_EINVAL;
    }
    struct proto_vec v = proto_route_response_ranges((struct proto_route_response){r->internal_});
    if (i >= v.len) {
        return TS_EINVAL;
    }
    struct proto_range_descriptor d = proto_range_descriptor_vec_at(v, (uint32_t)i);
    struct proto_bytes sk = proto_range_descriptor_start_key(d);
    struct proto_bytes ek = proto_range_descriptor_end_key(d);
    struct proto_range_epoch ep = proto_range_descriptor_epoch(d);
    struct proto_vec reps = proto_range_descriptor_replicas(d);
    *out = (struct tessera_range_desc){.range_id = proto_range_descriptor_range_id(d),
                                       .start_key = sk.data,
                                       .start_key_len = sk.len,
                                       .end_key = ek.data,
                                       .end_key_len = ek.len,
                                       .generation = ep.generation,
                                       .conf_version = ep.conf_version};
    for (uint32_t k = 0; k < reps.len && k < TESSERA_REPLICAS_MAX; k++) {
        struct proto_replica rp = proto_replica_vec_at(reps, k);
        out->replica_node[k] = rp.node_id;
        out->replica_shard[k] = rp.shard;
        out->replicas++;
    }
    return 0;
}

/* ------------------------------------------------------------------ ping */

struct ping_args {
    const void *payload;
    uint32_t len;
};

static int encode_ping(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    const struct ping_args *a = args;
    proto_ref payload = proto_create_bytes(b, a->payload, a->len);
    proto_ping_request_begin(b);
    proto_ping_request_add_payload(b, payload);
    out->op = proto_ping_request_end(b);
    out->op_type = PROTO_REQUEST_OP_PING_REQUEST;
    return b->err;
}

static int ping_submit(struct tessera_client *c, const void *payload, size_t len,
                       uint32_t timeout_ms, tessera_response_cb cb, void *data)
{
    if (c == NULL || (payload == NULL && len > 0)) {
        return TS_EINVAL;
    }
    if (len > TS_FRAME_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    struct ping_args a = {.payload = payload, .len = (uint32_t)len};
    struct client_request req = {
        .op = TESSERA_OP_PING, .encode = encode_ping, .args = &a, .timeout_ms = timeout_ms};
    return client_submit(c, &req, cb, data);
}

int tessera_ping_async(struct tessera_client *c, const void *payload, size_t len,
                       tessera_response_cb cb, void *data)
{
    return ping_submit(c, payload, len, 0, cb, data);
}

/* The blocking call's state; lives on its stack until the callback has run. */
struct ping_wait {
    const void *payload;
    size_t len;
    bool done;
    int status;
};

static void ping_wait_cb(void *data, int status, const struct tessera_response *resp)
{
    struct ping_wait *w = data;
    w->done = true;
    w->status = status;
    if (status == 0) {
        TS_ASSERT(resp != NULL && resp->op == TESSERA_OP_PING);
        bool same = resp->u.ping.len == w->len &&
                    (w->len == 0 || memcmp(resp->u.ping.payload, w->payload, w->len) == 0);
        w->status = same ? 0 : TS_EPROTO;
    }
}

int tessera_ping(struct tessera_client *c, const void *payload, size_t len, uint32_t timeout_ms)
{
    if (c == NULL || c->in_callback || timeout_ms > INT32_MAX) {
        return TS_EINVAL;
    }
    struct ping_wait w = {.payload = payload, .len = len};
    int rc = ping_submit(c, payload, len, timeout_ms, ping_wait_cb, &w);
    if (rc != 0) {
        return rc;
    }
    client_wait(c, &w.done);
    return w.status;
}

/* ------------------------------------------------------------------ cluster */

static int encode_status(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    (void)args;
    proto_status_request_begin(b);
    out->op = proto_status_request_end(b);
    out->op_type = PROTO_REQUEST_OP_STATUS_REQUEST;
    return b->err;
}

static int encode_members(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    (void)args;
    proto_members_request_begin(b);
    out->op = proto_members_request_end(b);
    out->op_type = PROTO_REQUEST_OP_MEMBERS_REQUEST;
    return b->err;
}

int tessera_status_async(struct tessera_client *c, int endpoint, tessera_response_cb cb, void *data)
{
    if (c == NULL || endpoint < -1) {
        return TS_EINVAL;
    }
    struct client_request req = {.op = TESSERA_OP_STATUS,
                                 .encode = encode_status,
                                 .endpoint = endpoint,
                                 .pinned = endpoint >= 0};
    return client_submit(c, &req, cb, data);
}

int tessera_members_async(struct tessera_client *c, enum tessera_consistency consistency,
                          tessera_response_cb cb, void *data)
{
    if (c == NULL || (unsigned)consistency > TESSERA_SERIALIZABLE) {
        return TS_EINVAL;
    }
    struct client_request req = {
        .op = TESSERA_OP_MEMBERS, .encode = encode_members, .consistency = (uint8_t)consistency};
    return client_submit(c, &req, cb, data);
}

struct route_args {
    const void *key;
    uint32_t key_len;
    uint64_t range_id;
    uint32_t limit;
};

static int encode_route(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    const struct route_args *a = args;
    proto_ref key = a->key_len > 0 ? proto_create_bytes(b, a->key, a->key_len) : 0;
    proto_route_request_begin(b);
    if (key != 0) {
        proto_route_request_add_key(b, key);
    }
    proto_route_request_add_range_id(b, a->range_id);
    proto_route_request_add_limit(b, a->limit);
    out->op = proto_route_request_end(b);
    out->op_type = PROTO_REQUEST_OP_ROUTE_REQUEST;
    return b->err;
}

int tessera_route_async(struct tessera_client *c, const void *key, size_t key_len,
                        uint64_t range_id, uint32_t limit, tessera_response_cb cb, void *data)
{
    if (c == NULL || (key == NULL && key_len > 0)) {
        return TS_EINVAL;
    }
    if (key_len > TESSERA_KEY_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    struct route_args a = {
        .key = key, .key_len = (uint32_t)key_len, .range_id = range_id, .limit = limit};
    struct client_request req = {.op = TESSERA_OP_ROUTE, .encode = encode_route, .args = &a};
    return client_submit(c, &req, cb, data);
}

struct join_args {
    const char *address;
    uint32_t shards;
    uint64_t node_id;
};

static int encode_join(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    const struct join_args *a = args;
    proto_ref addr = proto_create_string(b, a->address, (uint32_t)strlen(a->address));
    proto_join_request_begin(b);
    proto_join_request_add_address(b, addr);
    proto_join_request_add_shards(b, a->shards);
    proto_join_request_add_node_id(b, a->node_id);
    out->op = proto_join_request_end(b);
    out->op_type = PROTO_REQUEST_OP_JOIN_REQUEST;
    return b->err;
}

int tessera_join_async(struct tessera_client *c, const char *address, uint32_t shards,
                       uint64_t node_id, tessera_response_cb cb, void *data)
{
    if (c == NULL || address == NULL || address[0] == 0 || strlen(address) > 255) {
        return TS_EINVAL;
    }
    struct join_args a = {.address = address, .shards = shards, .node_id = node_id};
    struct client_request req = {.op = TESSERA_OP_JOIN, .encode = encode_join, .args = &a};
    return client_submit(c, &req, cb, data);
}
