/*
 * net/client key-value requests (client_int.h): put, get, delete, range and txn, each an
 * argument check, an encoder and a public entry point, plus the blocking conveniences.
 * Arguments are checked here, before anything is queued: a NULL key, an unknown flag or
 * op is TESSERA_EINVAL; a key over TESSERA_KEY_BYTES_MAX or a value over
 * TESSERA_VALUE_BYTES_MAX is TESSERA_ETOOBIG (the server would refuse them anyway).
 */
#include "net/client/client_int.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"

#include <stdbool.h>
#include <string.h>

_Static_assert(TESSERA_KEY_BYTES_MAX == TS_KV_KEY_BYTES_MAX, "the public limit is the server's");
_Static_assert(TESSERA_VALUE_BYTES_MAX == TS_KV_VALUE_BYTES_MAX,
               "the public limit is the server's");
_Static_assert(TESSERA_TXN_OPS_MAX * 2 * (TS_KEY_BYTES_MAX + 64) < TS_FRAME_BYTES_MAX,
               "a txn of keys alone fits a frame");
_Static_assert((int)TESSERA_LINEARIZABLE == PROTO_CONSISTENCY_LINEARIZABLE, "wire values");
_Static_assert((int)TESSERA_SERIALIZABLE == PROTO_CONSISTENCY_SERIALIZABLE, "wire values");
_Static_assert((int)TESSERA_CMP_LEASE == PROTO_COMPARE_TARGET_LEASE, "wire values");
_Static_assert((int)TESSERA_CMP_MOD == PROTO_COMPARE_TARGET_MOD_REVISION, "wire values");
_Static_assert((int)TESSERA_CMP_GREATER == PROTO_COMPARE_RESULT_GREATER, "wire values");

#define PUT_FLAGS (TESSERA_PREV_KV | TESSERA_IGNORE_VALUE | TESSERA_IGNORE_LEASE)
#define DELETE_FLAGS TESSERA_PREV_KV
#define RANGE_FLAGS (TESSERA_KEYS_ONLY | TESSERA_COUNT_ONLY)

/* ------------------------------------------------------------------ checks */

/* A key: present (may be empty only when empty_ok) and within the limit. */
static int check_key(const void *key, size_t len, bool empty_ok)
{
    if ((key == NULL && len > 0) || (len == 0 && !empty_ok)) {
        return TS_EINVAL;
    }
    return len > TS_KV_KEY_BYTES_MAX ? TS_ETOOBIG : 0;
}

static int check_bytes(const void *p, size_t len, size_t max)
{
    if (p == NULL && len > 0) {
        return TS_EINVAL;
    }
    return len > max ? TS_ETOOBIG : 0;
}

static int check_op(const struct tessera_txn_op *o)
{
    static const uint32_t allowed[] = {[TESSERA_OP_PUT] = PUT_FLAGS,
                                       [TESSERA_OP_GET] = 0,
                                       [TESSERA_OP_DELETE] = DELETE_FLAGS,
                                       [TESSERA_OP_RANGE] = RANGE_FLAGS};
    if (o->op < TESSERA_OP_PUT || o->op > TESSERA_OP_RANGE || (o->flags & ~allowed[o->op]) != 0) {
        return TS_EINVAL;
    }
    int rc = check_key(o->key, o->key_len, o->op == TESSERA_OP_RANGE);
    if (rc == 0 && o->op == TESSERA_OP_PUT) {
        rc = check_bytes(o->value, o->value_len, TS_KV_VALUE_BYTES_MAX);
    }
    if (rc == 0 && (o->op == TESSERA_OP_DELETE || o->op == TESSERA_OP_RANGE)) {
        rc = check_bytes(o->range_end, o->range_end_len, TS_KV_KEY_BYTES_MAX);
    }
    return rc;
}

static int check_cmp(const struct tessera_compare *m)
{
    if ((unsigned)m->target > TESSERA_CMP_LEASE || (unsigned)m->result > TESSERA_CMP_GREATER) {
        return TS_EINVAL;
    }
    int rc = check_key(m->key, m->key_len, false);
    if (rc == 0) {
        rc = check_bytes(m->range_end, m->range_end_len, TS_KV_KEY_BYTES_MAX);
    }
    if (rc == 0) {
        rc = check_bytes(m->value, m->value_len, TS_KV_VALUE_BYTES_MAX);
    }
    return rc;
}

/* ------------------------------------------------------------------ encoders */

/* A byte vector, or 0 (field absent) for NULL. */
static proto_ref bytes_or_none(struct proto_builder *b, const void *p, size_t len)
{
    return p != NULL ? proto_create_bytes(b, p, (uint32_t)len) : 0;
}

static proto_ref build_put(struct proto_builder *b, const struct tessera_txn_op *o)
{
    proto_ref k = proto_create_bytes(b, o->key, (uint32_t)o->key_len);
    proto_ref v = proto_create_bytes(b, o->value, (uint32_t)o->value_len);
    proto_put_request_begin(b);
    proto_put_request_add_key(b, k);
    proto_put_request_add_value(b, v);
    proto_put_request_add_lease(b, o->lease);
    proto_put_request_add_prev_kv(b, (o->flags & TESSERA_PREV_KV) != 0);
    proto_put_request_add_ignore_value(b, (o->flags & TESSERA_IGNORE_VALUE) != 0);
    proto_put_request_add_ignore_lease(b, (o->flags & TESSERA_IGNORE_LEASE) != 0);
    return proto_put_request_end(b);
}

static proto_ref build_get(struct proto_builder *b, const struct tessera_txn_op *o)
{
    proto_ref k = proto_create_bytes(b, o->key, (uint32_t)o->key_len);
    proto_get_request_begin(b);
    proto_get_request_add_key(b, k);
    return proto_get_request_end(b);
}

static proto_ref build_delete(struct proto_builder *b, const struct tessera_txn_op *o)
{
    proto_ref k = proto_create_bytes(b, o->key, (uint32_t)o->key_len);
    proto_ref e = bytes_or_none(b, o->range_end, o->range_end_len);
    proto_delete_request_begin(b);
    proto_delete_request_add_key(b, k);
    proto_delete_request_add_range_end(b, e);
    proto_delete_request_add_prev_kv(b, (o->flags & TESSERA_PREV_KV) != 0);
    return proto_delete_request_end(b);
}

static proto_ref build_range(struct proto_builder *b, const struct tessera_txn_op *o,
                             uint64_t revision)
{
    proto_ref k = proto_create_bytes(b, o->key, (uint32_t)o->key_len);
    proto_ref e = bytes_or_none(b, o->range_end, o->range_end_len);
    proto_range_request_begin(b);
    proto_range_request_add_key(b, k);
    proto_range_request_add_range_end(b, e);
    proto_range_request_add_limit(b, o->limit);
    proto_range_request_add_revision(b, revision);
    proto_range_request_add_keys_only(b, (o->flags & TESSERA_KEYS_ONLY) != 0);
    proto_range_request_add_count_only(b, (o->flags & TESSERA_COUNT_ONLY) != 0);
    return proto_range_request_end(b);
}

/* The request table of one op; *type receives its TxnOpBody (= RequestOp) member. */
static proto_ref build_op(struct proto_builder *b, const struct tessera_txn_op *o, uint8_t *type)
{
    _Static_assert((int)PROTO_TXN_OP_BODY_PUT_REQUEST == (int)PROTO_REQUEST_OP_PUT_REQUEST,
                   "same ids");
    _Static_assert((int)PROTO_TXN_OP_BODY_RANGE_REQUEST == (int)PROTO_REQUEST_OP_RANGE_REQUEST,
                   "same ids");
    switch (o->op) {
    case TESSERA_OP_PUT:
        *type = PROTO_TXN_OP_BODY_PUT_REQUEST;
        return build_put(b, o);
    case TESSERA_OP_GET:
        *type = PROTO_TXN_OP_BODY_GET_REQUEST;
        return build_get(b, o);
    case TESSERA_OP_DELETE:
        *type = PROTO_TXN_OP_BODY_DELETE_REQUEST;
        return build_delete(b, o);
    default:
        TS_ASSERT(o->op == TESSERA_OP_RANGE);
        *type = PROTO_TXN_OP_BODY_RANGE_REQUEST;
        return build_range(b, o, 0);
    }
}

/* A single op as a whole request (put, get, delete). */
static int encode_op(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    out->op = build_op(b, args, &out->op_type);
    return b->err;
}

static int encode_range(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    const struct tessera_range_opts *o = args;
    struct tessera_txn_op op = {.op = TESSERA_OP_RANGE,
                                .key = o->key,
                                .key_len = o->key_len,
                                .range_end = o->range_end,
                                .range_end_len = o->range_end_len,
                                .limit = o->limit,
                                .flags = o->flags};
    out->op = build_range(b, &op, o->revision);
    out->op_type = PROTO_REQUEST_OP_RANGE_REQUEST;
    return b->err;
}

struct txn_args {
    const struct tessera_compare *cmp;
    size_t ncmp;
    const struct tessera_txn_op *ops[2];
    size_t nops[2];
};

static proto_ref build_compare(struct proto_builder *b, const struct tessera_compare *m)
{
    proto_ref k = proto_create_bytes(b, m->key, (uint32_t)m->key_len);
    proto_ref e = bytes_or_none(b, m->range_end, m->range_end_len);
    proto_ref v = m->target == TESSERA_CMP_VALUE
                      ? proto_create_bytes(b, m->value, (uint32_t)m->value_len)
                      : 0;
    proto_compare_begin(b);
    proto_compare_add_key(b, k);
    proto_compare_add_range_end(b, e);
    proto_compare_add_target(b, (uint8_t)m->target);
    proto_compare_add_result(b, (uint8_t)m->result);
    proto_compare_add_value(b, v);
    proto_compare_add_number(b, m->number);
    return proto_compare_end(b);
}

static proto_ref build_txn_ops(struct proto_builder *b, const struct tessera_txn_op *ops, size_t n)
{
    proto_ref refs[TESSERA_TXN_OPS_MAX];
    TS_ASSERT(n <= TESSERA_TXN_OPS_MAX);
    TS_ASSERT(ops != NULL || n == 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t type = 0;
        proto_ref body = build_op(b, &ops[i], &type);
        proto_txn_op_begin(b);
        proto_txn_op_add_op(b, type, body);
        refs[i] = proto_txn_op_end(b);
    }
    return proto_create_vec_ref(b, refs, (uint32_t)n);
}

static int encode_txn(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    const struct txn_args *a = args;
    proto_ref refs[TESSERA_TXN_OPS_MAX];
    TS_ASSERT(a->ncmp <= TESSERA_TXN_OPS_MAX);
    for (size_t i = 0; i < a->ncmp; i++) {
        refs[i] = build_compare(b, &a->cmp[i]);
    }
    proto_ref cmps = proto_create_vec_ref(b, refs, (uint32_t)a->ncmp);
    proto_ref then_ops = build_txn_ops(b, a->ops[0], a->nops[0]);
    proto_ref else_ops = build_txn_ops(b, a->ops[1], a->nops[1]);
    proto_txn_request_begin(b);
    proto_txn_request_add_compares(b, cmps);
    proto_txn_request_add_success(b, then_ops);
    proto_txn_request_add_failure(b, else_ops);
    out->op = proto_txn_request_end(b);
    out->op_type = PROTO_REQUEST_OP_TXN_REQUEST;
    return b->err;
}

/* ------------------------------------------------------------------ submits */

static int op_submit(struct tessera_client *c, const struct tessera_txn_op *o, uint8_t consistency,
                     uint32_t timeout_ms, tessera_response_cb cb, void *data)
{
    if (c == NULL || cb == NULL) {
        return TS_EINVAL;
    }
    int rc = check_op(o);
    if (rc != 0) {
        return rc;
    }
    TS_ASSERT(o->key != NULL && o->key_len > 0 && o->key_len <= TS_KV_KEY_BYTES_MAX);
    TS_ASSERT(o->value_len <= TS_KV_VALUE_BYTES_MAX);
    struct client_request req = {.op = o->op,
                                 .encode = encode_op,
                                 .args = o,
                                 .key = o->key,
                                 .key_len = (uint32_t)o->key_len,
                                 .timeout_ms = timeout_ms,
                                 .consistency = consistency};
    return client_submit(c, &req, cb, data);
}

static int range_submit(struct tessera_client *c, const struct tessera_range_opts *o,
                        uint32_t timeout_ms, tessera_response_cb cb, void *data)
{
    if (c == NULL || cb == NULL || o == NULL || (o->flags & ~RANGE_FLAGS) != 0 ||
        (unsigned)o->consistency > TESSERA_SERIALIZABLE) {
        return TS_EINVAL;
    }
    int rc = check_key(o->key, o->key_len, true);
    if (rc == 0) {
        rc = check_bytes(o->range_end, o->range_end_len, TS_KV_KEY_BYTES_MAX);
    }
    if (rc != 0) {
        return rc;
    }
    struct client_request req = {.op = TESSERA_OP_RANGE,
                                 .encode = encode_range,
                                 .args = o,
                                 .key = o->key,
                                 .key_len = (uint32_t)o->key_len,
                                 .timeout_ms = timeout_ms,
                                 .consistency = (uint8_t)o->consistency};
    return client_submit(c, &req, cb, data);
}

/* The key a txn is routed by: its first compare's, else its first op's. */
static void txn_route_key(const struct txn_args *a, const uint8_t **key, uint32_t *len)
{
    *key = NULL;
    *len = 0;
    if (a->ncmp > 0) {
        *key = a->cmp[0].key;
        *len = (uint32_t)a->cmp[0].key_len;
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (a->nops[i] > 0) {
            *key = a->ops[i][0].key;
            *len = (uint32_t)a->ops[i][0].key_len;
            return;
        }
    }
}

static int txn_check(const struct txn_args *a)
{
    if ((a->cmp == NULL && a->ncmp > 0) || a->ncmp > TESSERA_TXN_OPS_MAX) {
        return TS_EINVAL;
    }
    for (size_t i = 0; i < a->ncmp; i++) {
        int rc = check_cmp(&a->cmp[i]);
        if (rc != 0) {
            return rc;
        }
    }
    for (int k = 0; k < 2; k++) {
        if ((a->ops[k] == NULL && a->nops[k] > 0) || a->nops[k] > TESSERA_TXN_OPS_MAX) {
            return TS_EINVAL;
        }
        for (size_t i = 0; i < a->nops[k]; i++) {
            int rc = check_op(&a->ops[k][i]);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static int txn_submit(struct tessera_client *c, const struct txn_args *a, uint32_t timeout_ms,
                      tessera_response_cb cb, void *data)
{
    if (c == NULL || cb == NULL) {
        return TS_EINVAL;
    }
    int rc = txn_check(a);
    if (rc != 0) {
        return rc;
    }
    struct client_request req = {
        .op = TESSERA_OP_TXN, .encode = encode_txn, .args = a, .timeout_ms = timeout_ms};
    txn_route_key(a, &req.key, &req.key_len);
    return client_submit(c, &req, cb, data);
}

/* ------------------------------------------------------------------ async API */

int tessera_put_async(struct tessera_client *c, const void *key, size_t key_len, const void *value,
                      size_t value_len, uint64_t lease, uint32_t flags, tessera_response_cb cb,
                      void *data)
{
    struct tessera_txn_op o = {.op = TESSERA_OP_PUT,
                               .key = key,
                               .key_len = key_len,
                               .value = value,
                               .value_len = value_len,
                               .lease = lease,
                               .flags = flags};
    return op_submit(c, &o, 0, 0, cb, data);
}

int tessera_get_async(struct tessera_client *c, const void *key, size_t key_len,
                      enum tessera_consistency consistency, tessera_response_cb cb, void *data)
{
    if ((unsigned)consistency > TESSERA_SERIALIZABLE) {
        return TS_EINVAL;
    }
    struct tessera_txn_op o = {.op = TESSERA_OP_GET, .key = key, .key_len = key_len};
    return op_submit(c, &o, (uint8_t)consistency, 0, cb, data);
}

int tessera_delete_async(struct tessera_client *c, const void *key, size_t key_len,
                         const void *range_end, size_t range_end_len, uint32_t flags,
                         tessera_response_cb cb, void *data)
{
    struct tessera_txn_op o = {.op = TESSERA_OP_DELETE,
                               .key = key,
                               .key_len = key_len,
                               .range_end = range_end,
                               .range_end_len = range_end_len,
                               .flags = flags};
    return op_submit(c, &o, 0, 0, cb, data);
}

int tessera_range_async(struct tessera_client *c, const struct tessera_range_opts *o,
                        tessera_response_cb cb, void *data)
{
    return range_submit(c, o, 0, cb, data);
}

int tessera_txn_async(struct tessera_client *c, const struct tessera_compare *cmp, size_t ncmp,
                      const struct tessera_txn_op *then_ops, size_t nthen,
                      const struct tessera_txn_op *else_ops, size_t nelse, tessera_response_cb cb,
                      void *data)
{
    struct txn_args a = {
        .cmp = cmp, .ncmp = ncmp, .ops = {then_ops, else_ops}, .nops = {nthen, nelse}};
    return txn_submit(c, &a, 0, cb, data);
}

/* ------------------------------------------------------------------ blocking API */

/* A blocking call's state; lives on its stack until the callback has run. */
struct kv_wait {
    bool done;
    int status;
    /* get */
    void *buf;
    size_t cap;
    size_t value_len;
    struct tessera_kv meta;
    bool found;
    /* delete */
    uint64_t deleted;
    /* txn */
    int succeeded;
    /* range */
    tessera_kv_cb row;
    void *row_data;
    int row_rc;
    uint64_t rows;
    uint64_t rows_max; /* rows still wanted, 0: no limit */
    uint64_t count;
    bool more;
    uint8_t next_key[TESSERA_KEY_BYTES_MAX + 1];
    size_t next_key_len;
    const uint8_t *page_key; /* where the page asked started (may alias next_key) */
    size_t page_key_len;
};

static int blocking_check(const struct tessera_client *c, uint32_t timeout_ms)
{
    return c == NULL || c->in_callback || timeout_ms > INT32_MAX ? TS_EINVAL : 0;
}

static void kv_wait_cb(void *data, int status, const struct tessera_response *resp)
{
    struct kv_wait *w = data;
    w->done = true;
    w->status = status;
    if (status != 0) {
        return;
    }
    TS_ASSERT(resp != NULL);
    TS_ASSERT(w->cap == 0 || w->buf != NULL);
    if (resp->op == TESSERA_OP_GET && resp->u.get.found) {
        const struct tessera_kv *kv = &resp->u.get.kv;
        w->found = true;
        w->value_len = kv->value_len;
        if (w->cap > 0 && kv->value_len > 0) {
            memcpy(w->buf, kv->value, kv->value_len < w->cap ? kv->value_len : w->cap);
        }
        w->meta = *kv;
        w->meta.key = NULL;
        w->meta.value = NULL;
    } else if (resp->op == TESSERA_OP_DELETE) {
        w->deleted = resp->u.del.deleted;
    } else if (resp->op == TESSERA_OP_TXN) {
        w->succeeded = resp->u.txn.succeeded;
    }
}

static int wait_for(struct tessera_client *c, struct kv_wait *w, int rc)
{
    if (rc == 0) {
        client_wait(c, &w->done);
        rc = w->status;
    }
    return rc;
}

int tessera_put(struct tessera_client *c, const void *key, size_t key_len, const void *value,
                size_t value_len, uint64_t lease, uint32_t flags, uint32_t timeout_ms)
{
    int rc = blocking_check(c, timeout_ms);
    if (rc != 0) {
        return rc;
    }
    struct kv_wait w = {0};
    struct tessera_txn_op o = {.op = TESSERA_OP_PUT,
                               .key = key,
                               .key_len = key_len,
                               .value = value,
                               .value_len = value_len,
                               .lease = lease,
                               .flags = flags};
    return wait_for(c, &w, op_submit(c, &o, 0, timeout_ms, kv_wait_cb, &w));
}

int tessera_get(struct tessera_client *c, const void *key, size_t key_len,
                enum tessera_consistency consistency, void *buf, size_t cap, size_t *value_len,
                struct tessera_kv *meta, uint32_t timeout_ms)
{
    int rc = blocking_check(c, timeout_ms);
    if (rc != 0 || (buf == NULL && cap > 0) || (unsigned)consistency > TESSERA_SERIALIZABLE) {
        return rc != 0 ? rc : TS_EINVAL;
    }
    struct kv_wait w = {.buf = buf, .cap = cap};
    struct tessera_txn_op o = {.op = TESSERA_OP_GET, .key = key, .key_len = key_len};
    rc = wait_for(c, &w, op_submit(c, &o, (uint8_t)consistency, timeout_ms, kv_wait_cb, &w));
    if (rc == 0 && !w.found) {
        rc = TS_ENOTFOUND;
    }
    if (value_len != NULL) {
        *value_len = rc == 0 ? w.value_len : 0;
    }
    if (meta != NULL) {
        *meta = rc == 0 ? w.meta : (struct tessera_kv){0};
    }
    return rc;
}

int tessera_delete(struct tessera_client *c, const void *key, size_t key_len, const void *range_end,
                   size_t range_end_len, uint64_t *deleted, uint32_t timeout_ms)
{
    int rc = blocking_check(c, timeout_ms);
    if (rc != 0) {
        return rc;
    }
    struct kv_wait w = {0};
    struct tessera_txn_op o = {.op = TESSERA_OP_DELETE,
                               .key = key,
                               .key_len = key_len,
                               .range_end = range_end,
                               .range_end_len = range_end_len};
    rc = wait_for(c, &w, op_submit(c, &o, 0, timeout_ms, kv_wait_cb, &w));
    if (deleted != NULL) {
        *deleted = rc == 0 ? w.deleted : 0;
    }
    return rc;
}

int tessera_txn(struct tessera_client *c, const struct tessera_compare *cmp, size_t ncmp,
                const struct tessera_txn_op *then_ops, size_t nthen,
                const struct tessera_txn_op *else_ops, size_t nelse, int *succeeded,
                uint32_t timeout_ms)
{
    int rc = blocking_check(c, timeout_ms);
    if (rc != 0) {
        return rc;
    }
    struct kv_wait w = {0};
    struct txn_args a = {
        .cmp = cmp, .ncmp = ncmp, .ops = {then_ops, else_ops}, .nops = {nthen, nelse}};
    rc = wait_for(c, &w, txn_submit(c, &a, timeout_ms, kv_wait_cb, &w));
    if (succeeded != NULL) {
        *succeeded = rc == 0 ? w.succeeded : 0;
    }
    return rc;
}

/* Whether key a sorts strictly after key b (bytewise, a prefix first). */
static bool key_after(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int r = n > 0 ? memcmp(a, b, n) : 0;
    return r > 0 || (r == 0 && an > bn);
}

/* One page of a blocking range: rows to the caller, then where the next page starts. */
static void range_page_cb(void *data, int status, const struct tessera_response *resp)
{
    struct kv_wait *w = data;
    w->done = true;
    w->status = status;
    if (status != 0) {
        return;
    }
    TS_ASSERT(resp != NULL && resp->op == TESSERA_OP_RANGE);
    TS_ASSERT(w->rows_max == 0 || w->rows <= w->rows_max);
    size_t n = tessera_response_kvs(resp);
    struct tessera_kv kv = {0};
    for (size_t i = 0; i < n && w->row_rc == 0; i++) {
        if (w->rows_max != 0 && w->rows >= w->rows_max) {
            break;
        }
        (void)tessera_response_kv_at(resp, i, &kv);
        w->rows++;
        w->row_rc = w->row != NULL ? w->row(w->row_data, &kv) : 0;
    }
    w->count += resp->u.range.count; /* one page per range: their counts add up */
    w->more = resp->u.range.more && w->row_rc == 0;
    if (w->more && resp->u.range.next_key != NULL &&
        !key_after(resp->u.range.next_key, resp->u.range.next_key_len, w->page_key,
                   w->page_key_len)) {
        w->status = TS_EPROTO; /* a next page that does not move forward would never end */
        w->more = false;
        return;
    }
    if (resp->u.range.next_key != NULL && resp->u.range.next_key_len <= TESSERA_KEY_BYTES_MAX) {
        w->next_key_len = resp->u.range.next_key_len;
        memcpy(w->next_key, resp->u.range.next_key, w->next_key_len);
    } else if (n > 0 && kv.key_len < TESSERA_KEY_BYTES_MAX) {
        /* No next_key: the page ends after the last row, so go on from its successor. */
        memcpy(w->next_key, kv.key, kv.key_len);
        w->next_key[kv.key_len] = 0;
        w->next_key_len = kv.key_len + 1;
    } else {
        w->more = false;
    }
}

int tessera_range(struct tessera_client *c, const struct tessera_range_opts *o, tessera_kv_cb row,
                  void *data, uint64_t *count, uint32_t timeout_ms)
{
    int rc = blocking_check(c, timeout_ms);
    if (rc != 0 || o == NULL) {
        return rc != 0 ? rc : TS_EINVAL;
    }
    struct kv_wait w = {.row = row, .row_data = data, .rows_max = o->limit};
    struct tessera_range_opts page = *o;
    /* Each page moves the start key forward, so this ends; the bound is a safety net. */
    for (uint64_t pages = 0; pages < UINT32_MAX; pages++) {
        w.done = false;
        w.more = false;
        w.page_key = page.key;
        w.page_key_len = page.key_len;
        rc = wait_for(c, &w, range_submit(c, &page, timeout_ms, range_page_cb, &w));
        if (rc != 0 || w.row_rc != 0 || !w.more || (o->limit != 0 && w.rows >= o->limit)) {
            break;
        }
        page.key = w.next_key;
        page.key_len = w.next_key_len;
        page.limit = o->limit != 0 ? o->limit - w.rows : 0;
    }
    if (count != NULL) {
        *count = rc != 0 ? 0 : (o->flags & TESSERA_COUNT_ONLY) != 0 ? w.count : w.rows;
    }
    return rc != 0 ? rc : w.row_rc;
}
