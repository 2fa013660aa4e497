/* core/kv: the command encoding (kv.h, "Commands"). One reader serves verification and
 * iteration, so what the decoder accepts is exactly what the iterators read. */
#include "core/kv/kv.h"

#include "core/util/assert.h"
#include "core/util/encoding.h"
#include "core/util/err.h"

#include <string.h>

#define HDR_BYTES 18u

#define PUT_PREV_KV 0x1u
#define PUT_IGNORE_VALUE 0x2u
#define PUT_IGNORE_LEASE 0x4u
#define DEL_PREV_KV 0x1u
#define RANGE_KEYS_ONLY 0x1u
#define RANGE_COUNT_ONLY 0x2u

/* ------------------------------------------------------------------ sizes */

static size_t bytes_size(struct kv_bytes b)
{
    return 4u + b.len;
}

static size_t put_body_size(const struct kv_put *p)
{
    return 1u + 8u + bytes_size(p->key) + bytes_size(p->value);
}

static size_t del_body_size(const struct kv_delete *d)
{
    return 1u + bytes_size(d->key) + bytes_size(d->end);
}

static size_t op_size(const struct kv_op *op)
{
    switch (op->kind) {
    case KV_OP_PUT:
        return 1u + put_body_size(&op->u.put);
    case KV_OP_GET:
        return 1u + bytes_size(op->u.get.key) + 8u;
    case KV_OP_DELETE:
        return 1u + del_body_size(&op->u.del);
    case KV_OP_RANGE:
        return 1u + 1u + bytes_size(op->u.range.key) + bytes_size(op->u.range.end) + 16u;
    default:
        return 0; /* refused by the encoder */
    }
}

static size_t compare_size(const struct kv_compare *c)
{
    size_t n = 2u + bytes_size(c->key) + bytes_size(c->end);
    return n + (c->target == KV_CMP_VALUE ? bytes_size(c->value) : 8u);
}

size_t kv_cmd_put_size(const struct kv_put *p)
{
    return HDR_BYTES + put_body_size(p);
}

size_t kv_cmd_delete_size(const struct kv_delete *d)
{
    return HDR_BYTES + del_body_size(d);
}

size_t kv_cmd_txn_size(const struct kv_compare *cmps, uint32_t cmps_n, const struct kv_op *succ,
                       uint32_t succ_n, const struct kv_op *fail, uint32_t fail_n)
{
    size_t n = HDR_BYTES + 6u;
    for (uint32_t i = 0; i < cmps_n; i++) {
        n += compare_size(&cmps[i]);
    }
    for (uint32_t i = 0; i < succ_n; i++) {
        n += op_size(&succ[i]);
    }
    for (uint32_t i = 0; i < fail_n; i++) {
        n += op_size(&fail[i]);
    }
    return n;
}

/* ------------------------------------------------------------------ writing */

/* Writes into a buffer already checked to hold the whole command. */
struct wr {
    uint8_t *p;
    uint8_t *end;
};

static void w_u8(struct wr *w, uint8_t v)
{
    TS_ASSERT(w->end - w->p >= 1);
    *w->p++ = v;
}

static void w_u16(struct wr *w, uint16_t v)
{
    TS_ASSERT(w->end - w->p >= 2);
    ts_store_le16(w->p, v);
    w->p += 2;
}

static void w_u64(struct wr *w, uint64_t v)
{
    TS_ASSERT(w->end - w->p >= 8);
    ts_store_le64(w->p, v);
    w->p += 8;
}

static void w_bytes(struct wr *w, struct kv_bytes b)
{
    TS_ASSERT((size_t)(w->end - w->p) >= 4u + (size_t)b.len);
    ts_store_le32(w->p, b.len);
    if (b.len > 0) {
        memcpy(w->p + 4, b.p, b.len);
    }
    w->p += 4u + b.len;
}

static void w_header(struct wr *w, uint8_t kind, kv_range_id id, uint64_t stamp)
{
    w_u8(w, KV_CMD_FORMAT);
    w_u8(w, kind);
    w_u64(w, id);
    w_u64(w, stamp);
}

static void w_put(struct wr *w, const struct kv_put *p)
{
    uint8_t flags =
        (uint8_t)((p->prev_kv ? PUT_PREV_KV : 0) | (p->ignore_value ? PUT_IGNORE_VALUE : 0) |
                  (p->ignore_lease ? PUT_IGNORE_LEASE : 0));
    w_u8(w, flags);
    w_u64(w, p->lease);
    w_bytes(w, p->key);
    w_bytes(w, p->value);
}

static void w_delete(struct wr *w, const struct kv_delete *d)
{
    w_u8(w, d->prev_kv ? DEL_PREV_KV : 0);
    w_bytes(w, d->key);
    w_bytes(w, d->end);
}

static void w_op(struct wr *w, const struct kv_op *op)
{
    w_u8(w, op->kind);
    switch (op->kind) {
    case KV_OP_PUT:
        w_put(w, &op->u.put);
        break;
    case KV_OP_GET:
        w_bytes(w, op->u.get.key);
        w_u64(w, op->u.get.revision);
        break;
    case KV_OP_DELETE:
        w_delete(w, &op->u.del);
        break;
    default: {
        const struct kv_range_req *r = &op->u.range;
        TS_ASSERT(op->kind == KV_OP_RANGE);
        w_u8(w, (uint8_t)((r->keys_only ? RANGE_KEYS_ONLY : 0) |
                          (r->count_only ? RANGE_COUNT_ONLY : 0)));
        w_bytes(w, r->key);
        w_bytes(w, r->end);
        w_u64(w, r->limit);
        w_u64(w, r->revision);
        break;
    }
    }
}

static void w_compare(struct wr *w, const struct kv_compare *c)
{
    w_u8(w, c->target);
    w_u8(w, c->result);
    w_bytes(w, c->key);
    w_bytes(w, c->end);
    if (c->target == KV_CMP_VALUE) {
        w_bytes(w, c->value);
    } else {
        w_u64(w, (uint64_t)c->number);
    }
}

/* After writing: the whole buffer was used, and it decodes (STYLE R10's pair). */
static int finish(const struct wr *w, uint8_t *buf, size_t size, size_t *len)
{
    TS_ASSERT(w->p == buf + size);
    struct kv_cmd check;
    TS_DASSERT(kv_cmd_decode(buf, size, &check) == 0);
    (void)check;
    *len = size;
    return 0;
}

int kv_cmd_encode_put(kv_range_id id, uint64_t stamp, const struct kv_put *p, uint8_t *buf,
                      size_t buf_bytes, size_t *len)
{
    size_t size = kv_cmd_put_size(p);
    if (size > buf_bytes) {
        return TS_ETOOBIG;
    }
    struct wr w = {buf, buf + size};
    w_header(&w, KV_OP_PUT, id, stamp);
    w_put(&w, p);
    return finish(&w, buf, size, len);
}

int kv_cmd_encode_delete(kv_range_id id, uint64_t stamp, const struct kv_delete *d, uint8_t *buf,
                         size_t buf_bytes, size_t *len)
{
    size_t size = kv_cmd_delete_size(d);
    if (size > buf_bytes) {
        return TS_ETOOBIG;
    }
    struct wr w = {buf, buf + size};
    w_header(&w, KV_OP_DELETE, id, stamp);
    w_delete(&w, d);
    return finish(&w, buf, size, len);
}

static bool ops_encodable(const struct kv_op *ops, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ops[i].kind < KV_OP_PUT || ops[i].kind > KV_OP_RANGE) {
            return false;
        }
    }
    return true;
}

int kv_cmd_encode_txn(kv_range_id id, uint64_t stamp, const struct kv_compare *cmps,
                      uint32_t cmps_n, const struct kv_op *succ, uint32_t succ_n,
                      const struct kv_op *fail, uint32_t fail_n, uint8_t *buf, size_t buf_bytes,
                      size_t *len)
{
    if (cmps_n > TS_KV_TXN_OPS_MAX || succ_n > TS_KV_TXN_OPS_MAX || fail_n > TS_KV_TXN_OPS_MAX) {
        return TS_ETOOBIG;
    }
    if (!ops_encodable(succ, succ_n) || !ops_encodable(fail, fail_n)) {
        return TS_EINVAL;
    }
    size_t size = kv_cmd_txn_size(cmps, cmps_n, succ, succ_n, fail, fail_n);
    if (size > buf_bytes) {
        return TS_ETOOBIG;
    }
    struct wr w = {buf, buf + size};
    w_header(&w, KV_OP_TXN, id, stamp);
    w_u16(&w, (uint16_t)cmps_n);
    w_u16(&w, (uint16_t)succ_n);
    w_u16(&w, (uint16_t)fail_n);
    for (uint32_t i = 0; i < cmps_n; i++) {
        w_compare(&w, &cmps[i]);
    }
    for (uint32_t i = 0; i < succ_n; i++) {
        w_op(&w, &succ[i]);
    }
    for (uint32_t i = 0; i < fail_n; i++) {
        w_op(&w, &fail[i]);
    }
    return finish(&w, buf, size, len);
}

/* ------------------------------------------------------------------ reading */

/* A bounds-checked reader: the first failure sets bad, and every later read yields
 * zeros, so a parser checks once at the end. */
struct rd {
    const uint8_t *p;
    const uint8_t *end;
    bool bad;
};

static bool r_need(struct rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t r_u8(struct rd *r)
{
    if (!r_need(r, 1)) {
        return 0;
    }
    return *r->p++;
}

static uint16_t r_u16(struct rd *r)
{
    if (!r_need(r, 2)) {
        return 0;
    }
    uint16_t v = ts_load_le16(r->p);
    r->p += 2;
    return v;
}

static uint64_t r_u64(struct rd *r)
{
    if (!r_need(r, 8)) {
        return 0;
    }
    uint64_t v = ts_load_le64(r->p);
    r->p += 8;
    return v;
}

static struct kv_bytes r_bytes(struct rd *r)
{
    struct kv_bytes b = {NULL, 0};
    if (!r_need(r, 4)) {
        return b;
    }
    uint32_t n = ts_load_le32(r->p);
    r->p += 4;
    if (!r_need(r, n)) {
        return b;
    }
    b.p = r->p;
    b.len = n;
    r->p += n;
    return b;
}

static uint8_t r_flags(struct rd *r, uint8_t allowed)
{
    uint8_t f = r_u8(r);
    if ((f & (uint8_t)~allowed) != 0) {
        r->bad = true;
    }
    return f;
}

static void r_put(struct rd *r, struct kv_put *p)
{
    uint8_t f = r_flags(r, PUT_PREV_KV | PUT_IGNORE_VALUE | PUT_IGNORE_LEASE);
    p->prev_kv = (f & PUT_PREV_KV) != 0;
    p->ignore_value = (f & PUT_IGNORE_VALUE) != 0;
    p->ignore_lease = (f & PUT_IGNORE_LEASE) != 0;
    p->lease = r_u64(r);
    p->key = r_bytes(r);
    p->value = r_bytes(r);
}

static void r_delete(struct rd *r, struct kv_delete *d)
{
    d->prev_kv = (r_flags(r, DEL_PREV_KV) & DEL_PREV_KV) != 0;
    d->key = r_bytes(r);
    d->end = r_bytes(r);
}

static void r_range(struct rd *r, struct kv_range_req *q)
{
    uint8_t f = r_flags(r, RANGE_KEYS_ONLY | RANGE_COUNT_ONLY);
    q->keys_only = (f & RANGE_KEYS_ONLY) != 0;
    q->count_only = (f & RANGE_COUNT_ONLY) != 0;
    q->key = r_bytes(r);
    q->end = r_bytes(r);
    q->limit = r_u64(r);
    q->revision = r_u64(r);
}

static void r_op(struct rd *r, struct kv_op *op)
{
    memset(op, 0, sizeof(*op));
    op->kind = r_u8(r);
    switch (op->kind) {
    case KV_OP_PUT:
        r_put(r, &op->u.put);
        break;
    case KV_OP_GET:
        op->u.get.key = r_bytes(r);
        op->u.get.revision = r_u64(r);
        break;
    case KV_OP_DELETE:
        r_delete(r, &op->u.del);
        break;
    case KV_OP_RANGE:
        r_range(r, &op->u.range);
        break;
    default:
        r->bad = true;
        break;
    }
}

static void r_compare(struct rd *r, struct kv_compare *c)
{
    memset(c, 0, sizeof(*c));
    c->target = r_u8(r);
    c->result = r_u8(r);
    if (c->target > KV_CMP_LEASE || c->result > KV_CMP_GREATER) {
        r->bad = true;
    }
    c->key = r_bytes(r);
    c->end = r_bytes(r);
    if (c->target == KV_CMP_VALUE) {
        c->value = r_bytes(r);
    } else {
        c->number = (int64_t)r_u64(r);
    }
}

static void r_txn(struct rd *r, struct kv_cmd *c)
{
    c->compares_n = r_u16(r);
    c->success_n = r_u16(r);
    c->failure_n = r_u16(r);
    if (c->compares_n > TS_KV_TXN_OPS_MAX || c->success_n > TS_KV_TXN_OPS_MAX ||
        c->failure_n > TS_KV_TXN_OPS_MAX) {
        r->bad = true;
        return;
    }
    struct kv_compare cmp;
    struct kv_op op;
    c->compares = r->p;
    for (uint32_t i = 0; i < c->compares_n && !r->bad; i++) {
        r_compare(r, &cmp);
    }
    c->success = r->p;
    for (uint32_t i = 0; i < c->success_n && !r->bad; i++) {
        r_op(r, &op);
    }
    c->failure = r->p;
    for (uint32_t i = 0; i < c->failure_n && !r->bad; i++) {
        r_op(r, &op);
    }
    c->end = r->p;
}

int kv_cmd_decode(const uint8_t *buf, size_t len, struct kv_cmd *out)
{
    TS_ASSERT(out != NULL);
    TS_ASSERT(buf != NULL || len == 0);
    memset(out, 0, sizeof(*out));
    struct rd r = {buf, buf + len, false};
    if (buf == NULL || r_u8(&r) != KV_CMD_FORMAT) {
        return TS_EPROTO;
    }
    out->kind = r_u8(&r);
    out->range_id = r_u64(&r);
    out->stamp = r_u64(&r);
    switch (out->kind) {
    case KV_OP_PUT:
        r_put(&r, &out->put);
        break;
    case KV_OP_DELETE:
        r_delete(&r, &out->del);
        break;
    case KV_OP_TXN:
        r_txn(&r, out);
        break;
    default:
        r.bad = true;
        break;
    }
    if (r.bad || r.p != r.end) {
        memset(out, 0, sizeof(*out));
        return TS_EPROTO;
    }
    return 0;
}

void kv_cmd_compares(const struct kv_cmd *c, struct kv_cmd_iter *it)
{
    TS_ASSERT(c->kind == KV_OP_TXN);
    *it = (struct kv_cmd_iter){c->compares, c->success};
}

void kv_cmd_success(const struct kv_cmd *c, struct kv_cmd_iter *it)
{
    TS_ASSERT(c->kind == KV_OP_TXN);
    *it = (struct kv_cmd_iter){c->success, c->failure};
}

void kv_cmd_failure(const struct kv_cmd *c, struct kv_cmd_iter *it)
{
    TS_ASSERT(c->kind == KV_OP_TXN);
    *it = (struct kv_cmd_iter){c->failure, c->end};
}

void kv_cmd_next_compare(struct kv_cmd_iter *it, struct kv_compare *out)
{
    struct rd r = {it->p, it->end, false};
    r_compare(&r, out);
    TS_ASSERT(!r.bad); /* verified by kv_cmd_decode; past the count otherwise */
    it->p = r.p;
}

void kv_cmd_next_op(struct kv_cmd_iter *it, struct kv_op *out)
{
    struct rd r = {it->p, it->end, false};
    r_op(&r, out);
    TS_ASSERT(!r.bad);
    it->p = r.p;
}
