/* Key-value requests between the wire and core/kv (see kvwire.h). */
#include "shard/kvwire.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <string.h>

#define KVWIRE_ROWS_MIN 64u

static struct kv_bytes bytes_of(struct proto_bytes b)
{
    return (struct kv_bytes){.p = b.data, .len = b.len};
}

/* Wire limits are the user's: TS_KEY_BYTES_MAX and TS_VALUE_BYTES_MAX (the client checks
 * the same); core/kv's stored forms add their framing below those. */
static int check_key(struct kv_bytes k, bool may_be_empty, const char **why)
{
    if (k.len == 0 && !may_be_empty) {
        *why = "the key is empty";
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
    if (k.len > TS_KV_KEY_BYTES_MAX) {
        *why = "the key is longer than the limit";
        return PROTO_STATUS_KEY_TOO_LARGE;
    }
    return 0;
}

static int parse_put(struct proto_put_request p, struct kv_op *op, const char **why)
{
    if (proto_put_request_sequential(p)) {
        *why = "sequential keys are not served yet";
        return PROTO_STATUS_UNSUPPORTED;
    }
    op->kind = KV_OP_PUT;
    op->u.put = (struct kv_put){.key = bytes_of(proto_put_request_key(p)),
                                .value = bytes_of(proto_put_request_value(p)),
                                .lease = proto_put_request_lease(p),
                                .prev_kv = proto_put_request_prev_kv(p),
                                .ignore_value = proto_put_request_ignore_value(p),
                                .ignore_lease = proto_put_request_ignore_lease(p)};
    if (op->u.put.value.len > TS_KV_VALUE_BYTES_MAX) {
        *why = "the value is larger than the limit";
        return PROTO_STATUS_VALUE_TOO_LARGE;
    }
    return check_key(op->u.put.key, false, why);
}

static int parse_get(struct proto_get_request g, struct kv_op *op, const char **why)
{
    op->kind = KV_OP_GET;
    op->u.get = (struct kv_get){.key = bytes_of(proto_get_request_key(g)),
                                .revision = proto_get_request_revision(g)};
    return check_key(op->u.get.key, false, why);
}

static int parse_delete(struct proto_delete_request d, struct kv_op *op, const char **why)
{
    op->kind = KV_OP_DELETE;
    op->u.del = (struct kv_delete){.key = bytes_of(proto_delete_request_key(d)),
                                   .end = bytes_of(proto_delete_request_range_end(d)),
                                   .prev_kv = proto_delete_request_prev_kv(d)};
    int rc = check_key(op->u.del.key, false, why);
    return rc != 0 ? rc : check_key(op->u.del.end, true, why);
}

static int parse_range(struct proto_range_request r, struct kv_op *op, const char **why)
{
    op->kind = KV_OP_RANGE;
    op->u.range = (struct kv_range_req){.key = bytes_of(proto_range_request_key(r)),
                                        .end = bytes_of(proto_range_request_range_end(r)),
                                        .limit = proto_range_request_limit(r),
                                        .revision = proto_range_request_revision(r),
                                        .keys_only = proto_range_request_keys_only(r),
                                        .count_only = proto_range_request_count_only(r)};
    int rc = check_key(op->u.range.key, true, why);
    return rc != 0 ? rc : check_key(op->u.range.end, true, why);
}

static int parse_txn_op(struct proto_txn_op t, struct kv_op *op, const char **why)
{
    switch (proto_txn_op_op_type(t)) {
    case PROTO_TXN_OP_BODY_PUT_REQUEST:
        return parse_put(proto_txn_op_op_as_put_request(t), op, why);
    case PROTO_TXN_OP_BODY_GET_REQUEST:
        return parse_get(proto_txn_op_op_as_get_request(t), op, why);
    case PROTO_TXN_OP_BODY_DELETE_REQUEST:
        return parse_delete(proto_txn_op_op_as_delete_request(t), op, why);
    case PROTO_TXN_OP_BODY_RANGE_REQUEST:
        return parse_range(proto_txn_op_op_as_range_request(t), op, why);
    default:
        *why = "a txn op without a request";
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
}

static int parse_txn_ops(struct proto_vec v, struct kv_op *ops, uint32_t *n, const char **why)
{
    if (v.len > TS_KV_TXN_OPS_MAX) {
        *why = "a txn has more ops than the limit";
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
    for (uint32_t i = 0; i < v.len; i++) {
        int rc = parse_txn_op(proto_txn_op_vec_at(v, i), &ops[i], why);
        if (rc != 0) {
            return rc;
        }
    }
    *n = v.len;
    return 0;
}

static struct kv_bytes op_key(const struct kv_op *op)
{
    switch (op->kind) {
    case KV_OP_PUT:
        return op->u.put.key;
    case KV_OP_GET:
        return op->u.get.key;
    case KV_OP_DELETE:
        return op->u.del.key;
    default:
        return op->u.range.key;
    }
}

static int parse_txn(struct proto_txn_request t, struct kvwire_txn_space *space,
                     struct kvwire_req *out, const char **why)
{
    struct proto_vec cv = proto_txn_request_compares(t);
    if (cv.len > TS_KV_TXN_OPS_MAX) {
        *why = "a txn has more compares than the limit";
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
    for (uint32_t i = 0; i < cv.len; i++) {
        struct proto_compare c = proto_compare_vec_at(cv, i);
        space->cmps[i] = (struct kv_compare){.key = bytes_of(proto_compare_key(c)),
                                             .end = bytes_of(proto_compare_range_end(c)),
                                             .target = proto_compare_target(c),
                                             .result = proto_compare_result(c),
                                             .value = bytes_of(proto_compare_value(c)),
                                             .number = proto_compare_number(c)};
        if (space->cmps[i].target > KV_CMP_LEASE || space->cmps[i].result > KV_CMP_GREATER) {
            *why = "a compare with an unknown target or result";
            return PROTO_STATUS_INVALID_ARGUMENT;
        }
        int rc = check_key(space->cmps[i].key, false, why);
        if (rc == 0) {
            rc = check_key(space->cmps[i].end, true, why);
        }
        if (rc != 0) {
            return rc;
        }
    }
    out->cmps = space->cmps;
    out->succ = space->succ;
    out->fail = space->fail;
    out->cmps_n = cv.len;
    int rc = parse_txn_ops(proto_txn_request_success(t), space->succ, &out->succ_n, why);
    if (rc == 0) {
        rc = parse_txn_ops(proto_txn_request_failure(t), space->fail, &out->fail_n, why);
    }
    if (rc != 0) {
        return rc;
    }
    if (out->cmps_n > 0) {
        out->route_key = out->cmps[0].key;
    } else if (out->succ_n > 0) {
        out->route_key = op_key(&out->succ[0]);
    } else if (out->fail_n > 0) {
        out->route_key = op_key(&out->fail[0]);
    } else {
        *why = "an empty txn";
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
    return 0;
}

int kvwire_parse(struct proto_request req, struct kvwire_txn_space *space, struct kvwire_req *out,
                 const char **why)
{
    TS_ASSERT(req.tab != NULL && space != NULL && out != NULL && why != NULL);
    memset(out, 0, sizeof *out);
    *why = NULL;
    out->linearizable = proto_request_consistency(req) == PROTO_CONSISTENCY_LINEARIZABLE;
    int rc;
    switch (proto_request_op_type(req)) {
    case PROTO_REQUEST_OP_PUT_REQUEST:
        rc = parse_put(proto_request_op_as_put_request(req), &out->op, why);
        break;
    case PROTO_REQUEST_OP_GET_REQUEST:
        rc = parse_get(proto_request_op_as_get_request(req), &out->op, why);
        break;
    case PROTO_REQUEST_OP_DELETE_REQUEST:
        rc = parse_delete(proto_request_op_as_delete_request(req), &out->op, why);
        break;
    case PROTO_REQUEST_OP_RANGE_REQUEST:
        rc = parse_range(proto_request_op_as_range_request(req), &out->op, why);
        break;
    case PROTO_REQUEST_OP_TXN_REQUEST:
        out->kind = KV_OP_TXN;
        return parse_txn(proto_request_op_as_txn_request(req), space, out, why);
    case PROTO_REQUEST_OP_MEMBERS_REQUEST:
        out->kind = KVWIRE_MEMBERS;
        return 0;
    case PROTO_REQUEST_OP_ROUTE_REQUEST: {
        struct proto_route_request r = proto_request_op_as_route_request(req);
        struct proto_bytes k = proto_route_request_key(r);
        if (k.len > TS_KV_KEY_BYTES_MAX) {
            *why = "the route key is over the key size limit";
            return PROTO_STATUS_KEY_TOO_LARGE;
        }
        out->kind = KVWIRE_ROUTE;
        out->route.key = (struct kv_bytes){.p = k.data, .len = k.len};
        out->route.range_id = proto_route_request_range_id(r);
        out->route.limit = proto_route_request_limit(r);
        return 0;
    }
    case PROTO_REQUEST_OP_JOIN_REQUEST: {
        struct proto_join_request j = proto_request_op_as_join_request(req);
        struct proto_str a = proto_join_request_address(j);
        if (a.ptr == NULL || a.len == 0 || a.len >= TS_HOST_ADDR_BYTES) {
            *why = "a join needs the node's address (ip:port, under 64 bytes)";
            return PROTO_STATUS_INVALID_ARGUMENT;
        }
        out->kind = KVWIRE_JOIN;
        out->join.addr = (struct kv_bytes){.p = (const uint8_t *)a.ptr, .len = a.len};
        out->join.shards = proto_join_request_shards(j);
        out->join.node_id = proto_join_request_node_id(j);
        return 0;
    }
    default:
        *why = "not a key-value request";
        return PROTO_STATUS_UNSUPPORTED;
    }
    out->kind = out->op.kind;
    out->route_key = op_key(&out->op);
    return rc;
}

uint16_t kvwire_status(enum kv_status st)
{
    switch (st) {
    case KV_OK:
        return PROTO_STATUS_OK;
    case KV_KEY_TOO_LARGE:
        return PROTO_STATUS_KEY_TOO_LARGE;
    case KV_VALUE_TOO_LARGE:
        return PROTO_STATUS_VALUE_TOO_LARGE;
    case KV_RANGE_MISMATCH:
        return PROTO_STATUS_RANGE_NOT_FOUND;
    case KV_KEY_NOT_FOUND:
        return PROTO_STATUS_NOT_FOUND;
    case KV_COMPACTED:
        return PROTO_STATUS_COMPACTED;
    case KV_MALFORMED:
        return PROTO_STATUS_INTERNAL;
    default:
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
}

/* ---- The answer ------------------------------------------------------------------------ */

void kvwire_answer_init(struct kvwire_answer *a, struct proto_builder *b,
                        const struct ts_allocator *alloc)
{
    memset(a, 0, sizeof *a);
    a->b = b;
    a->alloc = alloc;
}

void kvwire_answer_fini(struct kvwire_answer *a)
{
    ts_free(a->alloc, a->rows, (size_t)a->rows_cap * sizeof *a->rows);
    a->rows = NULL;
    a->rows_cap = 0;
}

static void push_ref(struct kvwire_answer *a, proto_ref r)
{
    if (a->rows_n == a->rows_cap) {
        uint32_t cap = a->rows_cap == 0 ? KVWIRE_ROWS_MIN : 2 * a->rows_cap;
        proto_ref *p =
            ts_realloc(a->alloc, a->rows, (size_t)a->rows_cap * sizeof *p, (size_t)cap * sizeof *p);
        if (p == NULL) {
            a->failed = true;
            return;
        }
        a->rows = p;
        a->rows_cap = cap;
    }
    a->rows[a->rows_n++] = r;
}

static void on_txn_begin(void *data, bool succeeded)
{
    struct kvwire_answer *a = data;
    (void)succeeded;
    a->in_txn = true;
    a->rows_n = 0;
}

static void on_op_begin(void *data, uint8_t kind)
{
    struct kvwire_answer *a = data;
    a->op_kind = kind;
    a->op_mark = a->rows_n;
}

static void on_row(void *data, const struct kv_row *row)
{
    struct kvwire_answer *a = data;
    struct proto_builder *b = a->b;
    proto_ref key = proto_create_bytes(b, row->key, row->key_len);
    proto_ref value = row->value != NULL ? proto_create_bytes(b, row->value, row->value_len) : 0;
    proto_key_value_begin(b);
    proto_key_value_add_key(b, key);
    if (value != 0) {
        proto_key_value_add_value(b, value);
    }
    proto_key_value_add_create_revision(b, row->create_rev);
    proto_key_value_add_mod_revision(b, row->mod_rev);
    proto_key_value_add_version(b, row->version);
    if (row->lease != 0) {
        proto_key_value_add_lease(b, row->lease);
    }
    push_ref(a, proto_key_value_end(b));
}

/* Builds the op's response table from its rows; returns it and its union type. */
static proto_ref op_response(struct kvwire_answer *a, const struct kv_op_end *end, uint8_t *type)
{
    struct proto_builder *b = a->b;
    uint32_t n = a->rows_n - a->op_mark;
    const proto_ref *rows = a->rows + a->op_mark;
    proto_ref r = 0;
    switch (end->kind) {
    case KV_OP_PUT:
        proto_put_response_begin(b);
        if (n > 0) {
            proto_put_response_add_prev_kv(b, rows[0]);
        }
        r = proto_put_response_end(b);
        *type = PROTO_RESPONSE_OP_PUT_RESPONSE;
        break;
    case KV_OP_GET:
        proto_get_response_begin(b);
        if (n > 0) {
            proto_get_response_add_kv(b, rows[0]);
        }
        r = proto_get_response_end(b);
        *type = PROTO_RESPONSE_OP_GET_RESPONSE;
        break;
    case KV_OP_DELETE: {
        proto_ref prev = n > 0 ? proto_create_vec_ref(b, rows, n) : 0;
        proto_delete_response_begin(b);
        proto_delete_response_add_deleted(b, end->count);
        if (prev != 0) {
            proto_delete_response_add_prev_kvs(b, prev);
        }
        r = proto_delete_response_end(b);
        *type = PROTO_RESPONSE_OP_DELETE_RESPONSE;
        break;
    }
    default: {
        TS_ASSERT(end->kind == KV_OP_RANGE);
        proto_ref kvs = n > 0 ? proto_create_vec_ref(b, rows, n) : 0;
        proto_ref next = end->more ? proto_create_bytes(b, end->next_key, end->next_key_len) : 0;
        proto_range_response_begin(b);
        if (kvs != 0) {
            proto_range_response_add_kvs(b, kvs);
        }
        if (end->more) {
            proto_range_response_add_more(b, true);
            proto_range_response_add_next_key(b, next);
        }
        proto_range_response_add_count(b, end->count);
        r = proto_range_response_end(b);
        *type = PROTO_RESPONSE_OP_RANGE_RESPONSE;
        break;
    }
    }
    a->rows_n = a->op_mark; /* the rows are inside the response now */
    return r;
}

/* The union types of ResponseOp and TxnOpResultBody agree for put, get, delete, range. */
_Static_assert((int)PROTO_RESPONSE_OP_PUT_RESPONSE == (int)PROTO_TXN_OP_RESULT_BODY_PUT_RESPONSE &&
                   (int)PROTO_RESPONSE_OP_RANGE_RESPONSE ==
                       (int)PROTO_TXN_OP_RESULT_BODY_RANGE_RESPONSE,
               "one numbering for both unions");

static void on_op_end(void *data, const struct kv_op_end *end)
{
    struct kvwire_answer *a = data;
    uint8_t type = 0;
    proto_ref r = op_response(a, end, &type);
    if (!a->in_txn) {
        a->result = r;
        a->result_type = type;
        return;
    }
    proto_txn_op_result_begin(a->b);
    proto_txn_op_result_add_result(a->b, type, r);
    push_ref(a, proto_txn_op_result_end(a->b));
}

static void on_txn_end(void *data, bool succeeded)
{
    struct kvwire_answer *a = data;
    struct proto_builder *b = a->b;
    proto_ref results = a->rows_n > 0 ? proto_create_vec_ref(b, a->rows, a->rows_n) : 0;
    proto_txn_response_begin(b);
    proto_txn_response_add_succeeded(b, succeeded);
    if (results != 0) {
        proto_txn_response_add_results(b, results);
    }
    a->result = proto_txn_response_end(b);
    a->result_type = PROTO_RESPONSE_OP_TXN_RESPONSE;
    a->rows_n = 0;
    a->in_txn = false;
}

struct kv_sink kvwire_answer_begin(struct kvwire_answer *a)
{
    proto_builder_reset(a->b);
    a->rows_n = 0;
    a->op_mark = 0;
    a->result = 0;
    a->result_type = PROTO_RESPONSE_OP_NONE;
    a->in_txn = false;
    a->failed = false;
    return (struct kv_sink){.txn_begin = on_txn_begin,
                            .op_begin = on_op_begin,
                            .row = on_row,
                            .op_end = on_op_end,
                            .txn_end = on_txn_end,
                            .data = a};
}

int kvwire_finish(struct kvwire_answer *a, uint64_t id, uint16_t status, const char *message,
                  uint64_t revision, proto_ref leader, proto_ref range, const uint8_t **frame,
                  uint32_t *len)
{
    struct proto_builder *b = a->b;
    if (a->failed && status == PROTO_STATUS_OK) {
        status = PROTO_STATUS_INTERNAL;
        message = "out of memory building the answer";
    }
    proto_ref msg =
        message != NULL ? proto_create_string(b, message, (uint32_t)strlen(message)) : 0;
    proto_response_begin(b);
    proto_response_add_id(b, id);
    if (status != PROTO_STATUS_OK) {
        proto_response_add_status(b, status);
    }
    if (msg != 0) {
        proto_response_add_message(b, msg);
    }
    if (leader != 0) {
        proto_response_add_leader(b, leader);
    }
    if (range != 0) {
        proto_response_add_range(b, range);
    }
    if (revision != 0) {
        proto_response_add_revision(b, revision);
    }
    if (status == PROTO_STATUS_OK && a->result != 0) {
        proto_response_add_op(b, a->result_type, a->result);
    }
    proto_ref resp = proto_response_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RESPONSE, resp);
    proto_ref m = proto_message_end(b);
    return proto_message_finish(b, m, true, frame, len);
}
