/* The shared fixtures of the core/kv unit tests: see kv_testenv.h. */
#include "kv_testenv.h"

#include "core/util/encoding.h"
#include "core/util/err.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define KTE_CMD_BYTES (2u * 1024u * 1024u)

/* ------------------------------------------------------------------ the adapter */

/* The shard's adapter: each kv_store call is the btree.h call of the same name. The
 * countdown (tests only) turns the next calls into -EIO. */
static bool failing(struct kte *e)
{
    if (e->fail_after < 0) {
        return false;
    }
    if (e->fail_after == 0) {
        return true;
    }
    e->fail_after--;
    return false;
}

static int a_get(void *ctx, const uint8_t *k, uint32_t kl, void *buf, uint32_t bytes, uint32_t *vl)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_get(e->t, k, kl, buf, bytes, vl);
}

static int a_put(void *ctx, const uint8_t *k, uint32_t kl, const void *v, uint32_t vl)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_put(e->t, k, kl, v, vl);
}

static int a_del(void *ctx, const uint8_t *k, uint32_t kl)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_delete(e->t, k, kl);
}

static int a_delete_range(void *ctx, const uint8_t *lo, uint32_t lol, const uint8_t *hi,
                          uint32_t hil, uint64_t *n)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_delete_range(e->t, lo, lol, hi, hil, n);
}

static int a_count(void *ctx, const uint8_t *lo, uint32_t lol, const uint8_t *hi, uint32_t hil,
                   uint64_t *n)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_count(e->t, lo, lol, hi, hil, n);
}

static int a_seek(void *ctx, const uint8_t *k, uint32_t kl)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_cursor_seek(&e->cur, e->t, k, kl);
}

static int a_next(void *ctx)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_cursor_next(&e->cur);
}

static void a_key(void *ctx, const uint8_t **k, uint32_t *kl)
{
    struct kte *e = ctx;
    btree_cursor_key(&e->cur, k, kl);
}

static int a_value(void *ctx, void *buf, uint32_t bytes, uint32_t *vl)
{
    struct kte *e = ctx;
    return failing(e) ? -EIO : btree_cursor_value(&e->cur, buf, bytes, vl);
}

/* ------------------------------------------------------------------ the environment */

void kte_init(struct kte *e, uint64_t seed)
{
    memset(e, 0, sizeof(*e));
    cr_assert_eq(disk_sim_create(seed, ts_allocator_default(), &e->sim), 0);
    e->disk = disk_sim_disk(e->sim);
    disk_sim_set_metadata_durable(e->sim, true);
    char err[256] = "";
    struct btree_config cfg = {.path = "tree"};
    int rc = btree_open(&cfg, e->disk, ts_allocator_default(), &e->t, err, sizeof(err));
    cr_assert_eq(rc, 0, "open: %s %s", ts_errname(rc), err);
    e->store = (struct kv_store){
        .get = a_get,
        .put = a_put,
        .del = a_del,
        .delete_range = a_delete_range,
        .count = a_count,
        .seek = a_seek,
        .next = a_next,
        .key = a_key,
        .value = a_value,
        .ctx = e,
    };
    e->scratch = malloc(TS_KV_SCRATCH_BYTES);
    e->cmd = malloc(KTE_CMD_BYTES);
    cr_assert(e->scratch != NULL && e->cmd != NULL);
    e->fail_after = -1;
    e->stamp = 1000;
    kte_set_range(e, 7, "", "");
}

void kte_fini(struct kte *e)
{
    btree_close(e->t);
    disk_destroy(e->disk);
    free(e->scratch);
    free(e->cmd);
}

void kte_set_range(struct kte *e, uint64_t id, const char *lo, const char *hi)
{
    e->range.id = id;
    e->range.lo_len = (uint32_t)strlen(lo);
    e->range.hi_len = (uint32_t)strlen(hi);
    memcpy(e->lo, lo, e->range.lo_len);
    memcpy(e->hi, hi, e->range.hi_len);
    e->range.lo = e->lo;
    e->range.hi = e->hi;
}

struct kv_bytes kte_b(const char *s)
{
    return (struct kv_bytes){(const uint8_t *)s, s != NULL ? (uint32_t)strlen(s) : 0};
}

const char KTE_ALL[] = "";

struct kv_bytes kte_all(void)
{
    return (struct kv_bytes){(const uint8_t *)"", 1};
}

/* ------------------------------------------------------------------ the recorder */

static void r_txn_begin(void *data, bool ok)
{
    struct kte_rec *r = data;
    r->txn_begun++;
    r->succeeded = ok;
}

static void r_txn_end(void *data, bool ok)
{
    struct kte_rec *r = data;
    cr_assert_eq(ok, r->succeeded);
    r->txn_ended++;
}

static void r_op_begin(void *data, uint8_t kind)
{
    struct kte_rec *r = data;
    cr_assert_lt(r->ops_n, KTE_OPS_MAX);
    cr_assert(r->ops_n == 0 || r->ops[r->ops_n - 1].ended, "op_begin inside an op");
    r->ops[r->ops_n++] = (struct kte_op){.kind = kind};
}

static void copy_row(struct kte_row *o, const struct kv_row *row)
{
    o->key_len = row->key_len;
    memcpy(o->key, row->key, row->key_len);
    o->value = NULL;
    o->value_len = row->value_len;
    if (row->value != NULL) {
        o->value = malloc(row->value_len + 1u);
        memcpy(o->value, row->value, row->value_len);
        o->value[row->value_len] = 0;
    }
    o->create_rev = row->create_rev;
    o->mod_rev = row->mod_rev;
    o->version = row->version;
    o->lease = row->lease;
}

static void r_row(void *data, const struct kv_row *row)
{
    struct kte_rec *r = data;
    cr_assert(r->ops_n > 0 && !r->ops[r->ops_n - 1].ended, "row outside an op");
    cr_assert_lt(r->rows_n, KTE_ROWS_MAX);
    struct kte_row *o = &r->rows[r->rows_n++];
    copy_row(o, row);
    o->op = r->ops_n - 1u;
    r->ops[r->ops_n - 1].rows++;
}

static void r_event(void *data, const struct kv_event *ev)
{
    struct kte_rec *r = data;
    cr_assert(r->ops_n > 0 && !r->ops[r->ops_n - 1].ended, "event outside an op");
    cr_assert_lt(r->events_n, KTE_EVENTS_MAX);
    struct kte_event *o = &r->events[r->events_n++];
    o->type = ev->type;
    copy_row(&o->kv, &ev->kv);
    o->has_prev = ev->has_prev;
    o->prev.value = NULL;
    if (ev->has_prev) {
        copy_row(&o->prev, &ev->prev);
    }
}

static void free_events(struct kte_rec *r)
{
    for (uint32_t i = 0; i < r->events_n; i++) {
        free(r->events[i].kv.value);
        free(r->events[i].prev.value);
        r->events[i].kv.value = NULL;
        r->events[i].prev.value = NULL;
    }
    r->events_n = 0;
}

static void r_op_end(void *data, const struct kv_op_end *end)
{
    struct kte_rec *r = data;
    cr_assert(r->ops_n > 0 && !r->ops[r->ops_n - 1].ended);
    struct kte_op *op = &r->ops[r->ops_n - 1];
    cr_assert_eq(op->kind, end->kind);
    op->ended = true;
    op->end = *end;
    if (end->next_key_len > 0) {
        memcpy(op->next_key, end->next_key, end->next_key_len);
    }
    op->end.next_key = op->next_key;
}

void kte_rec_init(struct kte_rec *r)
{
    memset(r, 0, sizeof(*r));
    r->rows = calloc(KTE_ROWS_MAX, sizeof(r->rows[0]));
    r->events = calloc(KTE_EVENTS_MAX, sizeof(r->events[0]));
    cr_assert(r->rows != NULL && r->events != NULL);
    r->sink = (struct kv_sink){
        .txn_begin = r_txn_begin,
        .op_begin = r_op_begin,
        .row = r_row,
        .op_end = r_op_end,
        .txn_end = r_txn_end,
        .event = r_event,
        .data = r,
    };
}

void kte_rec_reset(struct kte_rec *r)
{
    for (uint32_t i = 0; i < r->rows_n; i++) {
        free(r->rows[i].value);
        r->rows[i].value = NULL;
    }
    for (uint32_t i = 0; i < r->ops_n; i++) {
        r->ops[i] = (struct kte_op){0};
    }
    free_events(r);
    r->rows_n = 0;
    r->ops_n = 0;
    r->txn_begun = 0;
    r->txn_ended = 0;
    r->succeeded = false;
}

void kte_rec_fini(struct kte_rec *r)
{
    for (uint32_t i = 0; i < r->rows_n; i++) {
        free(r->rows[i].value);
    }
    free(r->rows);
    free_events(r);
    free(r->events);
}

/* ------------------------------------------------------------------ commands */

int kte_apply_bytes(struct kte *e, const uint8_t *cmd, size_t len, struct kte_rec *rec,
                    struct kv_result *out)
{
    struct kv_result res;
    out = out != NULL ? out : &res;
    if (rec != NULL) {
        kte_rec_reset(rec);
    }
    int rc = kv_apply(&e->store, &e->range, cmd, len, &e->state, e->scratch, TS_KV_SCRATCH_BYTES,
                      rec != NULL ? &rec->sink : NULL, out);
    if (e->fail_after < 0) {
        cr_assert_eq(rc, 0, "kv_apply: %s", ts_errname(rc));
    }
    if (rc == 0 && rec != NULL && out->status == KV_OK) {
        cr_assert_eq(rec->txn_begun, rec->txn_ended);
        cr_assert(rec->ops_n == 0 || rec->ops[rec->ops_n - 1].ended);
    }
    return rc;
}

static uint8_t status_of(int rc, const struct kv_result *out)
{
    return rc == 0 ? out->status : 0xff;
}

uint8_t kte_put_full(struct kte *e, const struct kv_put *p, struct kte_rec *rec,
                     struct kv_result *out)
{
    struct kv_result res;
    out = out != NULL ? out : &res;
    size_t len;
    cr_assert_eq(kv_cmd_encode_put(e->range.id, e->stamp++, p, e->cmd, KTE_CMD_BYTES, &len), 0);
    return status_of(kte_apply_bytes(e, e->cmd, len, rec, out), out);
}

uint8_t kte_put(struct kte *e, const char *key, const char *value)
{
    struct kv_put p = {.key = kte_b(key), .value = kte_b(value)};
    return kte_put_full(e, &p, NULL, NULL);
}

uint8_t kte_del(struct kte *e, const char *key, const char *end, struct kte_rec *rec,
                struct kv_result *out)
{
    struct kv_result res;
    out = out != NULL ? out : &res;
    struct kv_delete d = {
        .key = kte_b(key), .end = end == KTE_ALL ? kte_all() : kte_b(end), .prev_kv = rec != NULL};
    size_t len;
    cr_assert_eq(kv_cmd_encode_delete(e->range.id, e->stamp++, &d, e->cmd, KTE_CMD_BYTES, &len), 0);
    return status_of(kte_apply_bytes(e, e->cmd, len, rec, out), out);
}

uint8_t kte_txn(struct kte *e, const struct kv_compare *c, uint32_t cn, const struct kv_op *s,
                uint32_t sn, const struct kv_op *f, uint32_t fn, struct kte_rec *rec,
                struct kv_result *out)
{
    struct kv_result res;
    out = out != NULL ? out : &res;
    size_t len;
    int rc = kv_cmd_encode_txn(e->range.id, e->stamp++, c, cn, s, sn, f, fn, e->cmd, KTE_CMD_BYTES,
                               &len);
    cr_assert_eq(rc, 0, "encode txn: %s", ts_errname(rc));
    return status_of(kte_apply_bytes(e, e->cmd, len, rec, out), out);
}

uint8_t kte_read(struct kte *e, const struct kv_op *op, struct kte_rec *rec, struct kv_result *out)
{
    struct kv_result res;
    out = out != NULL ? out : &res;
    if (rec != NULL) {
        kte_rec_reset(rec);
    }
    int rc = kv_read(&e->store, &e->range, &e->state, op, e->scratch, TS_KV_SCRATCH_BYTES,
                     rec != NULL ? &rec->sink : NULL, out);
    if (e->fail_after < 0) {
        cr_assert_eq(rc, 0, "kv_read: %s", ts_errname(rc));
    }
    return status_of(rc, out);
}

bool kte_get(struct kte *e, const char *key, struct kte_row *out)
{
    struct kte_rec rec;
    kte_rec_init(&rec);
    struct kv_op op = {.kind = KV_OP_GET, .u.get = {.key = kte_b(key)}};
    cr_assert_eq(kte_read(e, &op, &rec, NULL), KV_OK);
    cr_assert_eq(rec.ops_n, 1);
    cr_assert_eq(rec.ops[0].end.count, rec.rows_n);
    bool found = rec.rows_n == 1;
    if (found && out != NULL) {
        *out = rec.rows[0];
        out->value = NULL;
    }
    kte_rec_fini(&rec);
    return found;
}

uint8_t *kte_dump(struct kte *e, size_t *len)
{
    size_t cap = 1u << 16, n = 0;
    uint8_t *buf = malloc(cap);
    uint8_t *val = malloc(TS_VALUE_BYTES_MAX);
    struct btree_cursor c;
    int rc = btree_cursor_seek(&c, e->t, NULL, 0);
    for (; rc == 0; rc = btree_cursor_next(&c)) {
        const uint8_t *k;
        uint32_t kl, vl;
        btree_cursor_key(&c, &k, &kl);
        while (n + 8u + kl + TS_VALUE_BYTES_MAX > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ts_store_le32(buf + n, kl);
        memcpy(buf + n + 4, k, kl);
        n += 4u + kl;
        cr_assert_eq(btree_cursor_value(&c, val, TS_VALUE_BYTES_MAX, &vl), 0);
        ts_store_le32(buf + n, vl);
        memcpy(buf + n + 4, val, vl);
        n += 4u + vl;
    }
    cr_assert_eq(rc, TS_ENOTFOUND);
    free(val);
    *len = n;
    return buf;
}
