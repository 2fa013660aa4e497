/* core/kv: apply and read over the shard's B-tree (see kv.h for the layout and the
 * semantics). */
#include "core/kv/kv.h"

#include "core/util/assert.h"
#include "core/util/encoding.h"
#include "core/util/err.h"

#include <string.h>

_Static_assert(TS_KV_KEY_BYTES_MAX + 1u == TS_KEY_BYTES_MAX, "one prefix byte per stored key");
_Static_assert(TS_KV_VALUE_BYTES_MAX + KV_HEADER_BYTES == TS_VALUE_BYTES_MAX,
               "one header per stored value");
_Static_assert(TS_KV_TXN_OPS_MAX <= UINT16_MAX, "txn counts are u16 on the wire");

/* A stored key buffer: prefix, user key, and a trailing 0 (a key's successor). */
#define KEY_BUF_BYTES (TS_KEY_BYTES_MAX + 8u)
_Static_assert(TS_KV_SCRATCH_BYTES >= TS_VALUE_BYTES_MAX + 4u * KEY_BUF_BYTES,
               "the scratch area holds a value and four keys");

/* ------------------------------------------------------------------ context */

/* One call's working state. The buffers are carved from the caller's scratch. */
struct ax {
    const struct kv_store *s;
    const struct kv_range *r;
    const struct kv_sink *sink;
    uint64_t last_rev, last_delete_rev; /* the state as the call began */
    uint64_t rev;                       /* apply: the revision of this command */
    bool changed, deleted;
    uint64_t budget_max, budget_used, rows;
    uint8_t *val;     /* a stored value (header + user value) */
    uint8_t *k1, *k2; /* the op's stored key and end */
    uint8_t *ck;      /* the cursor's key, copied */
    uint8_t *nk;      /* next_key */
    uint32_t hi_len;  /* the range's hi as a stored key (k: "d"+hi or "e") */
    uint8_t hi[KEY_BUF_BYTES];
};

struct hdr {
    uint64_t create_rev, mod_rev, version, lease;
};

static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static bool end_is_all(struct kv_bytes end)
{
    return end.len == 1 && end.p[0] == 0;
}

/* The stored data key of a user key. */
static uint32_t dkey(uint8_t *buf, const uint8_t *key, uint32_t len)
{
    TS_ASSERT(len <= TS_KV_KEY_BYTES_MAX + 1u);
    buf[0] = KV_PREFIX_DATA;
    if (len > 0) {
        memcpy(buf + 1, key, len);
    }
    return len + 1u;
}

/* The end of the data keyspace, and of range r, as stored keys. */
static uint32_t range_hi(const struct kv_range *r, uint8_t *buf)
{
    if (r->hi_len == 0) {
        buf[0] = KV_PREFIX_DATA + 1u;
        return 1;
    }
    return dkey(buf, r->hi, r->hi_len);
}

static void ax_init(struct ax *a, const struct kv_store *s, const struct kv_range *r,
                    const struct kv_sink *sink, uint8_t *scratch, size_t scratch_bytes)
{
    TS_ASSERT(s != NULL && r != NULL);
    TS_ASSERT(scratch != NULL && scratch_bytes >= TS_KV_SCRATCH_BYTES);
    TS_ASSERT(r->lo_len <= TS_KV_KEY_BYTES_MAX && r->hi_len <= TS_KV_KEY_BYTES_MAX);
    memset(a, 0, offsetof(struct ax, hi));
    a->s = s;
    a->r = r;
    a->sink = sink;
    a->budget_max =
        sink != NULL && sink->bytes_max != 0 ? sink->bytes_max : TS_KV_READ_BYTES_DEFAULT;
    a->val = scratch;
    a->k1 = scratch + TS_VALUE_BYTES_MAX;
    a->k2 = a->k1 + KEY_BUF_BYTES;
    a->ck = a->k2 + KEY_BUF_BYTES;
    a->nk = a->ck + KEY_BUF_BYTES;
    a->hi_len = range_hi(r, a->hi);
}

/* ------------------------------------------------------------------ stored values */

static void hdr_store(uint8_t *p, const struct hdr *h)
{
    ts_store_le64(p, h->create_rev);
    ts_store_le64(p + 8, h->mod_rev);
    ts_store_le64(p + 16, h->version);
    ts_store_le64(p + 24, h->lease);
    p[32] = 0;
}

static int hdr_load(const uint8_t *p, uint32_t len, struct hdr *h)
{
    if (len < KV_HEADER_BYTES || p[32] != 0) {
        return TS_ECORRUPT;
    }
    h->create_rev = ts_load_le64(p);
    h->mod_rev = ts_load_le64(p + 8);
    h->version = ts_load_le64(p + 16);
    h->lease = ts_load_le64(p + 24);
    if (h->version == 0 || h->create_rev > h->mod_rev) {
        return TS_ECORRUPT;
    }
    return 0;
}

/* Loads the stored key dk into a->val: *found, its header and user value length. */
static int load(struct ax *a, const uint8_t *dk, uint32_t dlen, bool *found, struct hdr *h,
                uint32_t *vlen)
{
    uint32_t len = 0;
    int rc = a->s->get(a->s->ctx, dk, dlen, a->val, TS_VALUE_BYTES_MAX, &len);
    *found = rc == 0;
    if (rc == TS_ENOTFOUND) {
        return 0;
    }
    if (rc == 0) {
        rc = hdr_load(a->val, len, h);
        *vlen = len - KV_HEADER_BYTES;
    }
    return rc;
}

/* ------------------------------------------------------------------ the sink */

static void s_op_begin(struct ax *a, uint8_t kind)
{
    if (a->sink != NULL && a->sink->op_begin != NULL) {
        a->sink->op_begin(a->sink->data, kind);
    }
}

static void s_op_end(struct ax *a, const struct kv_op_end *e)
{
    if (a->sink != NULL && a->sink->op_end != NULL) {
        a->sink->op_end(a->sink->data, e);
    }
}

static bool s_wants_rows(const struct ax *a)
{
    return a->sink != NULL && a->sink->row != NULL;
}

static bool s_wants_events(const struct ax *a)
{
    return a->sink != NULL && a->sink->event != NULL;
}

static struct kv_row row_of(const uint8_t *key, uint32_t klen, const struct hdr *h,
                            const uint8_t *value, uint32_t vlen)
{
    return (struct kv_row){.key = key,
                           .key_len = klen,
                           .value = value,
                           .value_len = vlen,
                           .create_rev = h->create_rev,
                           .mod_rev = h->mod_rev,
                           .version = h->version,
                           .lease = h->lease};
}

/* A watch event: the key's kv after the change, and before it (prev NULL: none). */
static void s_event(struct ax *a, uint8_t type, const struct kv_row *kv, const struct kv_row *prev)
{
    TS_ASSERT(type == KV_EVENT_PUT || type == KV_EVENT_DELETE);
    TS_ASSERT(kv->mod_rev == a->rev);
    struct kv_event ev = {.type = type, .kv = *kv, .has_prev = prev != NULL};
    if (prev != NULL) {
        ev.prev = *prev;
    }
    a->sink->event(a->sink->data, &ev);
}

/* Whether a row of cost bytes fits the call's budget (the first row always does). */
static bool s_fits(const struct ax *a, uint64_t cost)
{
    return a->rows == 0 || a->budget_used + cost <= a->budget_max;
}

/* Reports the user key (key, klen) whose stored value is in a->val. */
static void s_row(struct ax *a, const uint8_t *key, uint32_t klen, const struct hdr *h,
                  uint32_t vlen, bool keys_only)
{
    struct kv_row row = {
        .key = key,
        .key_len = klen,
        .value = keys_only ? NULL : a->val + KV_HEADER_BYTES,
        .value_len = keys_only ? 0 : vlen,
        .create_rev = h->create_rev,
        .mod_rev = h->mod_rev,
        .version = h->version,
        .lease = h->lease,
    };
    a->rows++;
    a->budget_used += (uint64_t)klen + row.value_len + TS_KV_ROW_OVERHEAD_BYTES;
    if (s_wants_rows(a)) {
        a->sink->row(a->sink->data, &row);
    }
}

/* ------------------------------------------------------------------ scans */

/* A walk over the stored keys in [a->k1, a->k2) (lengths in the struct), the current
 * key copied to a->ck. */
struct scan {
    uint32_t slen, elen;
    uint32_t klen; /* the current stored key */
    bool done;
};

static int scan_at(struct ax *a, struct scan *sc, int rc)
{
    if (rc == TS_ENOTFOUND) {
        sc->done = true;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    const uint8_t *k;
    uint32_t klen;
    a->s->key(a->s->ctx, &k, &klen);
    if (key_cmp(k, klen, a->k2, sc->elen) >= 0) {
        sc->done = true;
        return 0;
    }
    TS_ASSERT(klen >= 1 && klen <= TS_KEY_BYTES_MAX && k[0] == KV_PREFIX_DATA);
    memcpy(a->ck, k, klen);
    sc->klen = klen;
    return 0;
}

static int scan_first(struct ax *a, struct scan *sc)
{
    sc->done = false;
    if (key_cmp(a->k1, sc->slen, a->k2, sc->elen) >= 0) {
        sc->done = true;
        return 0;
    }
    return scan_at(a, sc, a->s->seek(a->s->ctx, a->k1, sc->slen));
}

static int scan_next(struct ax *a, struct scan *sc)
{
    TS_ASSERT(!sc->done);
    return scan_at(a, sc, a->s->next(a->s->ctx));
}

/* Loads the scan's current key's value into a->val. */
static int scan_load(struct ax *a, const struct scan *sc, struct hdr *h, uint32_t *vlen)
{
    uint32_t len = 0;
    int rc = a->s->value(a->s->ctx, a->val, TS_VALUE_BYTES_MAX, &len);
    if (rc == 0) {
        rc = hdr_load(a->val, len, h);
        *vlen = len - KV_HEADER_BYTES;
    }
    (void)sc;
    return rc;
}

/* Sets a->k1/k2 (and sc's lengths) to the stored interval of [key, end), clipped at the
 * range's hi. *clipped: the request went past hi. */
static void interval(struct ax *a, struct kv_bytes key, struct kv_bytes end, struct scan *sc,
                     bool *clipped)
{
    sc->slen = dkey(a->k1, key.p, key.len);
    if (end.len == 0) { /* the key alone: up to its successor */
        memcpy(a->k2, a->k1, sc->slen);
        a->k2[sc->slen] = 0;
        sc->elen = sc->slen + 1u;
    } else if (end_is_all(end)) {
        memcpy(a->k2, a->hi, a->hi_len);
        sc->elen = a->hi_len;
    } else {
        sc->elen = dkey(a->k2, end.p, end.len);
    }
    *clipped =
        key_cmp(a->k2, sc->elen, a->hi, a->hi_len) > 0 || (end_is_all(end) && a->r->hi_len != 0);
    if (*clipped) {
        memcpy(a->k2, a->hi, a->hi_len);
        sc->elen = a->hi_len;
    }
}

/* ------------------------------------------------------------------ checks */

static bool key_in_range(const struct kv_range *r, struct kv_bytes k)
{
    return key_cmp(k.p, k.len, r->lo, r->lo_len) >= 0 &&
           (r->hi_len == 0 || key_cmp(k.p, k.len, r->hi, r->hi_len) < 0);
}

/* [key, end) inside r (end as in kv.h). */
static bool interval_in_range(const struct kv_range *r, struct kv_bytes key, struct kv_bytes end)
{
    if (end.len == 0) {
        return key_in_range(r, key);
    }
    if (key_cmp(key.p, key.len, r->lo, r->lo_len) < 0) {
        return false;
    }
    if (end_is_all(end)) {
        return r->hi_len == 0;
    }
    return r->hi_len == 0 || key_cmp(end.p, end.len, r->hi, r->hi_len) <= 0;
}

/* Sizes and emptiness of [key, end). */
static uint8_t check_keys(struct kv_bytes key, struct kv_bytes end)
{
    if (key.len > TS_KV_KEY_BYTES_MAX || end.len > TS_KV_KEY_BYTES_MAX) {
        return KV_KEY_TOO_LARGE;
    }
    return key.len == 0 && end.len == 0 ? KV_INVALID : KV_OK;
}

static uint8_t check_put(const struct kv_range *r, const struct kv_put *p)
{
    struct kv_bytes none = {NULL, 0};
    uint8_t st = check_keys(p->key, none);
    if (st == KV_OK && p->value.len > TS_KV_VALUE_BYTES_MAX) {
        st = KV_VALUE_TOO_LARGE;
    }
    if (st == KV_OK &&
        ((p->ignore_value && p->value.len != 0) || (p->ignore_lease && p->lease != 0))) {
        st = KV_INVALID;
    }
    if (st == KV_OK && !key_in_range(r, p->key)) {
        st = KV_RANGE_MISMATCH;
    }
    return st;
}

/* An op of a command (strict: inside [lo, hi), reads at revision 0) or of kv_read (reads
 * start inside [lo, hi), any revision). */
static uint8_t check_op(const struct kv_range *r, const struct kv_op *op, bool strict)
{
    struct kv_bytes none = {NULL, 0};
    uint8_t st;
    switch (op->kind) {
    case KV_OP_PUT:
        return check_put(r, &op->u.put);
    case KV_OP_GET:
        st = check_keys(op->u.get.key, none);
        if (st == KV_OK && strict && op->u.get.revision != 0) {
            st = KV_INVALID;
        }
        return st == KV_OK && !key_in_range(r, op->u.get.key) ? KV_RANGE_MISMATCH : st;
    case KV_OP_DELETE:
        st = check_keys(op->u.del.key, op->u.del.end);
        return st == KV_OK && !interval_in_range(r, op->u.del.key, op->u.del.end)
                   ? KV_RANGE_MISMATCH
                   : st;
    default:
        TS_ASSERT(op->kind == KV_OP_RANGE);
        st = check_keys(op->u.range.key, op->u.range.end);
        if (st == KV_OK && strict && op->u.range.revision != 0) {
            st = KV_INVALID;
        }
        if (st != KV_OK) {
            return st;
        }
        if (strict ? !interval_in_range(r, op->u.range.key, op->u.range.end)
                   : (op->u.range.key.len != 0 || r->lo_len != 0) &&
                         !key_in_range(r, op->u.range.key)) {
            return KV_RANGE_MISMATCH;
        }
        return KV_OK;
    }
}

static uint8_t check_compare(const struct kv_range *r, const struct kv_compare *c)
{
    uint8_t st = check_keys(c->key, c->end);
    if (st == KV_OK && c->value.len > TS_KV_VALUE_BYTES_MAX) {
        st = KV_VALUE_TOO_LARGE;
    }
    return st == KV_OK && !interval_in_range(r, c->key, c->end) ? KV_RANGE_MISMATCH : st;
}

/* ------------------------------------------------------------------ writes */

static int do_put(struct ax *a, const struct kv_put *p)
{
    uint32_t dl = dkey(a->k1, p->key.p, p->key.len);
    struct hdr old = {0}, h;
    uint32_t olen = 0;
    bool found;
    int rc = load(a, a->k1, dl, &found, &old, &olen);
    if (rc != 0) {
        return rc;
    }
    TS_ASSERT(found || (!p->ignore_value && !p->ignore_lease)); /* checked before */
    s_op_begin(a, KV_OP_PUT);
    if (found && p->prev_kv) {
        s_row(a, p->key.p, p->key.len, &old, olen, false);
    }
    if (found) {
        h = (struct hdr){old.create_rev, a->rev, old.version + 1u, old.lease};
    } else {
        h = (struct hdr){a->rev, a->rev, 1, 0};
    }
    if (!p->ignore_lease) {
        h.lease = p->lease;
    }
    uint32_t vlen = p->ignore_value ? olen : p->value.len;
    if (s_wants_events(a)) {
        /* Before the value is copied over the previous one, so both views hold. */
        const uint8_t *v = p->ignore_value ? a->val + KV_HEADER_BYTES : p->value.p;
        struct kv_row now = row_of(p->key.p, p->key.len, &h, v, vlen);
        struct kv_row prev = row_of(p->key.p, p->key.len, &old, a->val + KV_HEADER_BYTES, olen);
        s_event(a, KV_EVENT_PUT, &now, found ? &prev : NULL);
    }
    if (!p->ignore_value && vlen > 0) {
        memcpy(a->val + KV_HEADER_BYTES, p->value.p, vlen);
    }
    hdr_store(a->val, &h);
    rc = a->s->put(a->s->ctx, a->k1, dl, a->val, KV_HEADER_BYTES + vlen);
    if (rc != 0) {
        return rc;
    }
    a->changed = true;
    struct kv_op_end e = {.kind = KV_OP_PUT};
    s_op_end(a, &e);
    return 0;
}

/* Walks the keys a delete removes, before it removes them: a delete event for each
 * (when wanted), and the previous kvs as rows within the budget (*more: some left out). */
static int delete_scan(struct ax *a, struct scan *sc, bool rows, bool *more)
{
    bool events = s_wants_events(a);
    int rc;
    for (rc = scan_first(a, sc); rc == 0 && !sc->done; rc = scan_next(a, sc)) {
        struct hdr h;
        uint32_t vlen;
        if ((rc = scan_load(a, sc, &h, &vlen)) != 0) {
            return rc;
        }
        uint32_t klen = sc->klen - 1u;
        if (events) {
            struct hdr gone = {.mod_rev = a->rev};
            struct kv_row kv = row_of(a->ck + 1, klen, &gone, NULL, 0);
            struct kv_row prev = row_of(a->ck + 1, klen, &h, a->val + KV_HEADER_BYTES, vlen);
            s_event(a, KV_EVENT_DELETE, &kv, &prev);
        }
        if (rows && !*more && !s_fits(a, (uint64_t)klen + vlen + TS_KV_ROW_OVERHEAD_BYTES)) {
            *more = true;
        }
        if (rows && !*more) {
            s_row(a, a->ck + 1, klen, &h, vlen, false);
        }
        if (*more && !events) {
            return 0;
        }
    }
    return rc;
}

static int do_delete(struct ax *a, const struct kv_delete *d)
{
    struct kv_op_end e = {.kind = KV_OP_DELETE};
    struct scan sc;
    bool clipped;
    int rc = 0;
    s_op_begin(a, KV_OP_DELETE);
    interval(a, d->key, d->end, &sc, &clipped);
    TS_ASSERT(!clipped); /* checked: inside the range */
    if (d->end.len == 0) {
        if ((d->prev_kv && s_wants_rows(a)) || s_wants_events(a)) {
            rc = delete_scan(a, &sc, d->prev_kv && s_wants_rows(a), &e.more);
        }
        if (rc == 0) {
            rc = a->s->del(a->s->ctx, a->k1, sc.slen);
            e.count = rc == 0 ? 1 : 0;
            rc = rc == TS_ENOTFOUND ? 0 : rc;
        }
    } else if (key_cmp(a->k1, sc.slen, a->k2, sc.elen) < 0) {
        if ((d->prev_kv && s_wants_rows(a)) || s_wants_events(a)) {
            rc = delete_scan(a, &sc, d->prev_kv && s_wants_rows(a), &e.more);
        }
        if (rc == 0) {
            rc = a->s->delete_range(a->s->ctx, a->k1, sc.slen, a->k2, sc.elen, &e.count);
        }
    }
    if (rc != 0) {
        return rc;
    }
    if (e.count > 0) {
        a->changed = true;
        a->deleted = true;
    }
    s_op_end(a, &e);
    return 0;
}

/* ------------------------------------------------------------------ reads */

enum { REV_CURRENT = 0, REV_HISTORICAL = 1 };

/* How a read at revision rev is answered (kv.h, "Reads at a revision R"): REV_* or a
 * status (negative of it, to keep one return). */
static int rev_mode(const struct ax *a, uint64_t rev)
{
    if (rev == 0 || rev == a->last_rev) {
        return REV_CURRENT;
    }
    if (rev > a->last_rev) {
        return -(int)KV_FUTURE_REV;
    }
    return a->last_delete_rev > rev ? -(int)KV_COMPACTED : REV_HISTORICAL;
}

/* Whether a present key is visible at rev in historical mode: 1 yes, 0 absent then,
 * -KV_COMPACTED unknowable. */
static int visible_at(const struct hdr *h, uint64_t rev)
{
    if (h->mod_rev <= rev) {
        return 1;
    }
    return h->create_rev > rev ? 0 : -(int)KV_COMPACTED;
}

static int do_get(struct ax *a, const struct kv_get *g, uint8_t *status)
{
    int mode = rev_mode(a, g->revision);
    if (mode < 0) {
        *status = (uint8_t)-mode;
        return 0;
    }
    uint32_t dl = dkey(a->k1, g->key.p, g->key.len);
    struct hdr h;
    uint32_t vlen = 0;
    bool found;
    int rc = load(a, a->k1, dl, &found, &h, &vlen);
    if (rc != 0) {
        return rc;
    }
    if (found && mode == REV_HISTORICAL) {
        int vis = visible_at(&h, g->revision);
        if (vis < 0) {
            *status = (uint8_t)-vis;
            return 0;
        }
        found = vis == 1;
    }
    struct kv_op_end e = {.kind = KV_OP_GET, .count = found ? 1 : 0};
    s_op_begin(a, KV_OP_GET);
    if (found) {
        s_row(a, g->key.p, g->key.len, &h, vlen, false);
    }
    s_op_end(a, &e);
    return 0;
}

/* The rows of a range read: walks the interval, reports rows until the limit or the
 * budget, and counts when the store cannot (historical reads). */
static int range_rows(struct ax *a, const struct kv_range_req *q, int mode, struct scan *sc,
                      struct kv_op_end *e, uint8_t *status)
{
    uint64_t returned = 0;
    int rc;
    for (rc = scan_first(a, sc); rc == 0 && !sc->done; rc = scan_next(a, sc)) {
        struct hdr h;
        uint32_t vlen;
        if ((rc = scan_load(a, sc, &h, &vlen)) != 0) {
            return rc;
        }
        int vis = mode == REV_HISTORICAL ? visible_at(&h, q->revision) : 1;
        if (vis < 0) {
            *status = (uint8_t)-vis;
            return 0;
        }
        if (vis == 0) {
            continue;
        }
        e->count += mode == REV_HISTORICAL ? 1 : 0;
        uint64_t cost = (uint64_t)sc->klen - 1u + (q->keys_only ? 0 : vlen);
        if (q->count_only || e->more) {
            continue;
        }
        if ((q->limit != 0 && returned == q->limit) ||
            !s_fits(a, cost + TS_KV_ROW_OVERHEAD_BYTES)) {
            e->more = true;
            e->next_key_len = sc->klen - 1u;
            memcpy(a->nk, a->ck + 1, e->next_key_len);
            if (mode == REV_CURRENT) {
                return 0;
            }
            continue;
        }
        s_row(a, a->ck + 1, sc->klen - 1u, &h, vlen, q->keys_only);
        returned++;
    }
    return rc;
}

static int do_range(struct ax *a, const struct kv_range_req *q, uint8_t *status)
{
    int mode = rev_mode(a, q->revision);
    if (mode < 0) {
        *status = (uint8_t)-mode;
        return 0;
    }
    struct kv_op_end e = {.kind = KV_OP_RANGE, .next_key = a->nk};
    struct scan sc;
    bool clipped;
    int rc = 0;
    interval(a, q->key, q->end, &sc, &clipped);
    s_op_begin(a, KV_OP_RANGE);
    bool empty = key_cmp(a->k1, sc.slen, a->k2, sc.elen) >= 0;
    if (!empty && mode == REV_CURRENT) {
        rc = a->s->count(a->s->ctx, a->k1, sc.slen, a->k2, sc.elen, &e.count);
    }
    if (rc == 0 && !empty && (mode == REV_HISTORICAL || !q->count_only)) {
        rc = range_rows(a, q, mode, &sc, &e, status);
    }
    if (rc != 0 || *status != KV_OK) {
        return rc;
    }
    if (!e.more && clipped) {
        e.more = true;
        e.next_key_len = a->r->hi_len;
        memcpy(a->nk, a->r->hi, a->r->hi_len);
    }
    s_op_end(a, &e);
    return 0;
}

/* ------------------------------------------------------------------ transactions */

static int cmp_u64(uint64_t field, int64_t target)
{
    if (target < 0) {
        return 1;
    }
    return field < (uint64_t)target ? -1 : field > (uint64_t)target;
}

/* etcd's compareKV: the field of one kv (h and its value in a->val; h NULL: the zero kv)
 * against the compare's target. */
static bool compare_kv(const struct ax *a, const struct kv_compare *c, const struct hdr *h,
                       uint32_t vlen)
{
    static const struct hdr zero = {0, 0, 0, 0};
    const struct hdr *k = h != NULL ? h : &zero;
    int r;
    switch (c->target) {
    case KV_CMP_VALUE:
        TS_ASSERT(h != NULL);
        r = key_cmp(a->val + KV_HEADER_BYTES, vlen, c->value.p, c->value.len);
        break;
    case KV_CMP_VERSION:
        r = cmp_u64(k->version, c->number);
        break;
    case KV_CMP_CREATE:
        r = cmp_u64(k->create_rev, c->number);
        break;
    case KV_CMP_MOD:
        r = cmp_u64(k->mod_rev, c->number);
        break;
    default:
        TS_ASSERT(c->target == KV_CMP_LEASE);
        r = cmp_u64(k->lease, c->number);
        break;
    }
    switch (c->result) {
    case KV_CMP_EQUAL:
        return r == 0;
    case KV_CMP_NOT_EQUAL:
        return r != 0;
    case KV_CMP_LESS:
        return r < 0;
    default:
        TS_ASSERT(c->result == KV_CMP_GREATER);
        return r > 0;
    }
}

static int eval_compare(struct ax *a, const struct kv_compare *c, bool *ok)
{
    struct scan sc;
    bool clipped, any = false;
    int rc;
    interval(a, c->key, c->end, &sc, &clipped);
    TS_ASSERT(!clipped);
    *ok = true;
    for (rc = scan_first(a, &sc); rc == 0 && !sc.done; rc = scan_next(a, &sc)) {
        struct hdr h;
        uint32_t vlen;
        if ((rc = scan_load(a, &sc, &h, &vlen)) != 0) {
            return rc;
        }
        any = true;
        if (!compare_kv(a, c, &h, vlen)) {
            *ok = false;
            return 0;
        }
    }
    if (rc == 0 && !any) {
        *ok = c->target != KV_CMP_VALUE && compare_kv(a, c, NULL, 0);
    }
    return rc;
}

/* Whether op (a delete) removes the user key k. */
static bool delete_covers(const struct kv_delete *d, struct kv_bytes k)
{
    if (d->end.len == 0) {
        return key_cmp(k.p, k.len, d->key.p, d->key.len) == 0;
    }
    if (key_cmp(k.p, k.len, d->key.p, d->key.len) < 0) {
        return false;
    }
    return end_is_all(d->end) || key_cmp(k.p, k.len, d->end.p, d->end.len) < 0;
}

/* Whether the key of ops[i] (a put) exists when ops[i] runs: the last earlier op that
 * writes it decides, else the store. */
static int exists_before(struct ax *a, const struct kv_op *ops, uint32_t i, bool *exists)
{
    struct kv_bytes k = ops[i].u.put.key;
    for (uint32_t j = i; j-- > 0;) {
        if (ops[j].kind == KV_OP_PUT &&
            key_cmp(ops[j].u.put.key.p, ops[j].u.put.key.len, k.p, k.len) == 0) {
            *exists = true;
            return 0;
        }
        if (ops[j].kind == KV_OP_DELETE && delete_covers(&ops[j].u.del, k)) {
            *exists = false;
            return 0;
        }
    }
    struct hdr h;
    uint32_t vlen;
    uint32_t dl = dkey(a->k1, k.p, k.len);
    return load(a, a->k1, dl, exists, &h, &vlen);
}

/* KV_KEY_NOT_FOUND when a put of ops that keeps the value or lease finds no key. */
static int check_ignores(struct ax *a, const struct kv_op *ops, uint32_t n, uint8_t *status)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ops[i].kind != KV_OP_PUT ||
            (!ops[i].u.put.ignore_value && !ops[i].u.put.ignore_lease)) {
            continue;
        }
        bool exists;
        int rc = exists_before(a, ops, i, &exists);
        if (rc != 0) {
            return rc;
        }
        if (!exists) {
            *status = KV_KEY_NOT_FOUND;
            return 0;
        }
    }
    return 0;
}

/* Every compare and op of both branches is well-formed and inside the range. */
static uint8_t check_txn(const struct kv_range *r, const struct kv_cmd *c)
{
    struct kv_cmd_iter it;
    struct kv_compare cmp;
    struct kv_op op;
    kv_cmd_compares(c, &it);
    for (uint32_t i = 0; i < c->compares_n; i++) {
        kv_cmd_next_compare(&it, &cmp);
        uint8_t st = check_compare(r, &cmp);
        if (st != KV_OK) {
            return st;
        }
    }
    kv_cmd_success(c, &it);
    for (uint32_t i = 0; i < c->success_n + c->failure_n; i++) {
        if (i == c->success_n) {
            kv_cmd_failure(c, &it);
        }
        kv_cmd_next_op(&it, &op);
        uint8_t st = check_op(r, &op, true);
        if (st != KV_OK) {
            return st;
        }
    }
    return KV_OK;
}

static int exec_op(struct ax *a, const struct kv_op *op, uint8_t *status)
{
    switch (op->kind) {
    case KV_OP_PUT:
        return do_put(a, &op->u.put);
    case KV_OP_DELETE:
        return do_delete(a, &op->u.del);
    case KV_OP_GET:
        return do_get(a, &op->u.get, status);
    default:
        TS_ASSERT(op->kind == KV_OP_RANGE);
        return do_range(a, &op->u.range, status);
    }
}

static int do_txn(struct ax *a, const struct kv_cmd *c, struct kv_result *out)
{
    struct kv_cmd_iter it;
    struct kv_compare cmp;
    struct kv_op ops[TS_KV_TXN_OPS_MAX];
    bool ok = true;
    int rc = 0;
    if ((out->status = check_txn(a->r, c)) != KV_OK) {
        return 0;
    }
    kv_cmd_compares(c, &it);
    for (uint32_t i = 0; i < c->compares_n && ok && rc == 0; i++) {
        kv_cmd_next_compare(&it, &cmp);
        rc = eval_compare(a, &cmp, &ok);
    }
    uint32_t n = ok ? c->success_n : c->failure_n;
    (ok ? kv_cmd_success : kv_cmd_failure)(c, &it);
    for (uint32_t i = 0; i < n; i++) {
        kv_cmd_next_op(&it, &ops[i]);
    }
    if (rc != 0 || (rc = check_ignores(a, ops, n, &out->status)) != 0 || out->status != KV_OK) {
        return rc;
    }
    out->succeeded = ok;
    if (a->sink != NULL && a->sink->txn_begin != NULL) {
        a->sink->txn_begin(a->sink->data, ok);
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = exec_op(a, &ops[i], &out->status)) != 0) {
            return rc;
        }
        TS_ASSERT(out->status == KV_OK); /* reads at revision 0 always answer */
    }
    if (a->sink != NULL && a->sink->txn_end != NULL) {
        a->sink->txn_end(a->sink->data, ok);
    }
    return 0;
}

/* ------------------------------------------------------------------ apply and read */

static int apply_cmd(struct ax *a, const struct kv_cmd *c, struct kv_result *out)
{
    struct kv_op op = {.kind = c->kind};
    if (c->kind == KV_OP_TXN) {
        return do_txn(a, c, out);
    }
    if (c->kind == KV_OP_PUT) {
        op.u.put = c->put;
    } else {
        op.u.del = c->del;
    }
    if ((out->status = check_op(a->r, &op, true)) != KV_OK) {
        return 0;
    }
    if (c->kind == KV_OP_DELETE) {
        return do_delete(a, &c->del);
    }
    if (c->put.ignore_value || c->put.ignore_lease) {
        int rc = check_ignores(a, &op, 1, &out->status);
        if (rc != 0 || out->status != KV_OK) {
            return rc;
        }
    }
    return do_put(a, &c->put);
}

int kv_apply(const struct kv_store *s, const struct kv_range *r, const uint8_t *cmd, size_t cmd_len,
             struct kv_range_state *state, uint8_t *scratch, size_t scratch_bytes,
             const struct kv_sink *sink, struct kv_result *out)
{
    TS_ASSERT(state != NULL && out != NULL);
    struct ax a;
    struct kv_cmd c;
    ax_init(&a, s, r, sink, scratch, scratch_bytes);
    a.last_rev = state->last_rev;
    a.last_delete_rev = state->last_delete_rev;
    *out = (struct kv_result){.status = KV_OK, .rev = state->last_rev};
    if (kv_cmd_decode(cmd, cmd_len, &c) != 0) {
        out->status = KV_MALFORMED;
        return 0;
    }
    if (c.range_id != r->id) {
        out->status = KV_RANGE_MISMATCH;
        return 0;
    }
    if (c.stamp == UINT64_MAX || state->last_rev >= UINT64_MAX - 1u) {
        out->status = KV_INVALID; /* the revision space is exhausted: refuse, never wrap */
        return 0;
    }
    a.rev = c.stamp > state->last_rev ? c.stamp : state->last_rev + 1u;
    int rc = apply_cmd(&a, &c, out);
    if (rc != 0) {
        return rc;
    }
    TS_ASSERT(out->status == KV_OK || !a.changed); /* a failure changes nothing */
    if (a.changed) {
        TS_ASSERT(a.rev > state->last_rev);
        state->last_rev = a.rev;
        state->last_delete_rev = a.deleted ? a.rev : state->last_delete_rev;
        out->rev = a.rev;
        out->changed = true;
    }
    return 0;
}

int kv_read(const struct kv_store *s, const struct kv_range *r, const struct kv_range_state *state,
            const struct kv_op *op, uint8_t *scratch, size_t scratch_bytes,
            const struct kv_sink *sink, struct kv_result *out)
{
    TS_ASSERT(state != NULL && out != NULL && op != NULL);
    TS_ASSERT(op->kind == KV_OP_GET || op->kind == KV_OP_RANGE);
    struct ax a;
    ax_init(&a, s, r, sink, scratch, scratch_bytes);
    a.last_rev = state->last_rev;
    a.last_delete_rev = state->last_delete_rev;
    *out = (struct kv_result){.status = KV_OK, .rev = state->last_rev};
    if ((out->status = check_op(r, op, false)) != KV_OK) {
        return 0;
    }
    if (op->kind == KV_OP_GET) {
        return do_get(&a, &op->u.get, &out->status);
    }
    return do_range(&a, &op->u.range, &out->status);
}

/* ------------------------------------------------------------------ statuses */

int kv_status_err(enum kv_status st)
{
    switch (st) {
    case KV_OK:
        return 0;
    case KV_KEY_TOO_LARGE:
    case KV_VALUE_TOO_LARGE:
        return TS_ETOOBIG;
    case KV_RANGE_MISMATCH:
        return TS_ENORANGE;
    case KV_KEY_NOT_FOUND:
        return TS_ENOTFOUND;
    case KV_MALFORMED:
        return TS_EPROTO;
    case KV_COMPACTED:
        return TS_ECOMPACTED;
    default:
        return TS_EINVAL;
    }
}

const char *kv_status_name(enum kv_status st)
{
    static const char *const names[] = {
        "KV_OK",
        "KV_KEY_TOO_LARGE",
        "KV_VALUE_TOO_LARGE",
        "KV_RANGE_MISMATCH",
        "KV_KEY_NOT_FOUND",
        "KV_INVALID",
        "KV_MALFORMED",
        "KV_COMPACTED",
        "KV_FUTURE_REV",
    };
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "KV_?";
}

/* ------------------------------------------------------------------ range metadata */

/* 'm' + range id (big-endian) + field [+ slot]. */
static uint32_t meta_key(uint8_t *buf, kv_range_id id, uint8_t field, int slot)
{
    buf[0] = KV_PREFIX_META;
    for (int i = 0; i < 8; i++) {
        buf[1 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    buf[9] = field;
    if (slot < 0) {
        return 10;
    }
    buf[10] = (uint8_t)slot;
    return 11;
}

int kv_range_state_save(const struct kv_store *s, kv_range_id id, const struct kv_range_state *st)
{
    TS_ASSERT(s != NULL && st != NULL);
    TS_ASSERT(st->last_delete_rev <= st->last_rev);
    uint8_t k[16], v[KV_STATE_BYTES];
    uint32_t kl = meta_key(k, id, 's', -1);
    v[0] = 1;
    ts_store_le64(v + 1, st->applied_index);
    ts_store_le64(v + 9, st->applied_term);
    ts_store_le64(v + 17, st->last_rev);
    ts_store_le64(v + 25, st->last_delete_rev);
    return s->put(s->ctx, k, kl, v, sizeof(v));
}

int kv_range_state_load(const struct kv_store *s, kv_range_id id, struct kv_range_state *st)
{
    TS_ASSERT(s != NULL && st != NULL);
    uint8_t k[16], v[KV_STATE_BYTES + 1];
    uint32_t kl = meta_key(k, id, 's', -1), len = 0;
    int rc = s->get(s->ctx, k, kl, v, sizeof(v), &len);
    if (rc == TS_ETOOBIG) {
        return TS_ECORRUPT;
    }
    if (rc != 0) {
        return rc;
    }
    if (len != KV_STATE_BYTES || v[0] != 1) {
        return TS_ECORRUPT;
    }
    st->applied_index = ts_load_le64(v + 1);
    st->applied_term = ts_load_le64(v + 9);
    st->last_rev = ts_load_le64(v + 17);
    st->last_delete_rev = ts_load_le64(v + 25);
    return st->last_delete_rev <= st->last_rev ? 0 : TS_ECORRUPT;
}

int kv_range_blob_save(const struct kv_store *s, kv_range_id id, uint8_t slot, const void *blob,
                       uint32_t len)
{
    TS_ASSERT(s != NULL && (blob != NULL || len == 0));
    if (slot >= TS_KV_BLOBS_MAX || len > TS_KV_BLOB_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    uint8_t k[16];
    uint32_t kl = meta_key(k, id, 'b', slot);
    return s->put(s->ctx, k, kl, blob, len);
}

int kv_range_blob_load(const struct kv_store *s, kv_range_id id, uint8_t slot, void *buf,
                       uint32_t buf_bytes, uint32_t *len)
{
    TS_ASSERT(s != NULL && len != NULL);
    if (slot >= TS_KV_BLOBS_MAX) {
        return TS_ETOOBIG;
    }
    uint8_t k[16];
    uint32_t kl = meta_key(k, id, 'b', slot);
    return s->get(s->ctx, k, kl, buf, buf_bytes, len);
}

void kv_range_spans(const struct kv_range *r, struct kv_span out[2])
{
    TS_ASSERT(r != NULL && out != NULL);
    TS_ASSERT(r->lo_len <= TS_KV_KEY_BYTES_MAX && r->hi_len <= TS_KV_KEY_BYTES_MAX);
    _Static_assert(KV_SPAN_KEY_BYTES >= TS_KV_KEY_BYTES_MAX + 1u, "a stored key fits");
    out[0].lo_len = dkey(out[0].lo, r->lo, r->lo_len);
    out[0].hi_len = range_hi(r, out[0].hi);
    /* The metadata: every key with the prefix 'm' + id, up to the prefix's successor. */
    struct kv_span *m = &out[1];
    m->lo_len = meta_key(m->lo, r->id, 0, -1) - 1u;
    m->hi_len = m->lo_len;
    memcpy(m->hi, m->lo, m->lo_len);
    while (m->hi_len > 0 && m->hi[m->hi_len - 1] == 0xff) {
        m->hi_len--;
    }
    TS_ASSERT(m->hi_len > 0); /* the prefix byte 'm' is never 0xff */
    m->hi[m->hi_len - 1]++;
}

int kv_range_clear(const struct kv_store *s, const struct kv_range *r, uint64_t *deleted)
{
    TS_ASSERT(s != NULL && r != NULL);
    struct kv_span sp[2];
    kv_range_spans(r, sp);
    uint64_t n = 0, meta = 0;
    int rc = 0;
    if (key_cmp(sp[0].lo, sp[0].lo_len, sp[0].hi, sp[0].hi_len) < 0) {
        rc = s->delete_range(s->ctx, sp[0].lo, sp[0].lo_len, sp[0].hi, sp[0].hi_len, &n);
    }
    if (rc != 0) {
        return rc;
    }
    rc = s->delete_range(s->ctx, sp[1].lo, sp[1].lo_len, sp[1].hi, sp[1].hi_len, &meta);
    if (rc == 0 && deleted != NULL) {
        *deleted = n;
    }
    return rc;
}
