/*
 * core/kv: a model check and a determinism check.
 *
 * Model: random puts, deletes (single, interval, to the end) and txns (compares of every
 * target and result, ops of every kind, including keys outside the range, keep-value
 * puts on missing keys, stamps that go backwards) are applied both to kv and to a plain
 * in-test model of the map and the range state; statuses, revisions and the full
 * contents (every kv with its create/mod/version/lease) must agree throughout.
 *
 * Determinism: two stores (different disk seeds, different cache budgets) apply the same
 * few thousand command bytes and end byte for byte identical, with equal range states.
 */
#include "kv_testenv.h"

#include "core/util/err.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys: "a".."z" one letter, and "m0".."m9": the range is [c, x). */
#define M_KEYS 36
#define M_VALUE_MAX 40

struct m_kv {
    bool present;
    uint8_t value[M_VALUE_MAX];
    uint32_t value_len;
    uint64_t create_rev, mod_rev, version, lease;
};

struct model {
    char keys[M_KEYS][4]; /* sorted */
    struct m_kv kv[M_KEYS];
    uint64_t last_rev, last_delete_rev;
};

static void model_init(struct model *m)
{
    memset(m, 0, sizeof(*m));
    int n = 0;
    for (char c = 'a'; c <= 'z'; c++) {
        m->keys[n][0] = c;
        n++;
        if (c == 'm') {
            for (char d = '0'; d <= '9'; d++) {
                m->keys[n][0] = 'm';
                m->keys[n][1] = d;
                n++;
            }
        }
    }
    cr_assert_eq(n, M_KEYS);
}

static const char *LO = "c", *HI = "x";

static bool in_range(const char *k)
{
    return strcmp(k, LO) >= 0 && strcmp(k, HI) < 0;
}

/* ------------------------------------------------------------------ random commands */

struct gen {
    struct ts_rand r;
    struct model *m;
    /* storage for the bytes the ops point at */
    uint8_t pool[64 * 1024];
    size_t pool_used;
};

static struct kv_bytes g_bytes(struct gen *g, const void *p, uint32_t len)
{
    cr_assert_leq(g->pool_used + len, sizeof(g->pool));
    uint8_t *dst = g->pool + g->pool_used;
    memcpy(dst, p, len);
    g->pool_used += len;
    return (struct kv_bytes){dst, len};
}

static const char *g_key(struct gen *g)
{
    /* Mostly inside the range; one in twelve outside. */
    for (;;) {
        const char *k = g->m->keys[ts_rand_below(&g->r, M_KEYS)];
        if (in_range(k) || ts_rand_chance(&g->r, 1, 12)) {
            return k;
        }
    }
}

static struct kv_bytes g_value(struct gen *g)
{
    uint8_t v[M_VALUE_MAX];
    uint32_t len = (uint32_t)ts_rand_below(&g->r, M_VALUE_MAX + 1);
    for (uint32_t i = 0; i < len; i++) {
        v[i] = (uint8_t)('a' + ts_rand_below(&g->r, 3));
    }
    return g_bytes(g, v, len);
}

/* end for a single key, an interval, or "to the end". */
static struct kv_bytes g_end(struct gen *g, const char *key)
{
    uint64_t x = ts_rand_below(&g->r, 4);
    if (x <= 1) {
        return (struct kv_bytes){NULL, 0};
    }
    if (x == 2) {
        const char *e = g_key(g);
        if (strcmp(e, key) <= 0 && ts_rand_chance(&g->r, 3, 4)) {
            e = HI;
        }
        return g_bytes(g, e, (uint32_t)strlen(e));
    }
    return g_bytes(g, "", 1);
}

static void g_put(struct gen *g, struct kv_put *p)
{
    const char *k = g_key(g);
    *p = (struct kv_put){.key = g_bytes(g, k, (uint32_t)strlen(k))};
    p->ignore_value = ts_rand_chance(&g->r, 1, 8);
    p->ignore_lease = ts_rand_chance(&g->r, 1, 8);
    if (!p->ignore_value) {
        p->value = g_value(g);
    }
    if (!p->ignore_lease && ts_rand_chance(&g->r, 1, 3)) {
        p->lease = 1 + ts_rand_below(&g->r, 3);
    }
    p->prev_kv = ts_rand_chance(&g->r, 1, 2);
}

static void g_op(struct gen *g, struct kv_op *op)
{
    uint64_t x = ts_rand_below(&g->r, 10);
    const char *k = g_key(g);
    if (x < 4) {
        op->kind = KV_OP_PUT;
        g_put(g, &op->u.put);
    } else if (x < 6) {
        op->kind = KV_OP_DELETE;
        op->u.del = (struct kv_delete){.key = g_bytes(g, k, (uint32_t)strlen(k)),
                                       .prev_kv = ts_rand_chance(&g->r, 1, 2)};
        op->u.del.end = g_end(g, k);
    } else if (x < 8) {
        op->kind = KV_OP_GET;
        op->u.get = (struct kv_get){.key = g_bytes(g, k, (uint32_t)strlen(k))};
    } else {
        op->kind = KV_OP_RANGE;
        op->u.range = (struct kv_range_req){.key = g_bytes(g, k, (uint32_t)strlen(k))};
        op->u.range.end = g_end(g, k);
    }
}

static int64_t g_number(struct gen *g, const struct m_kv *kv, uint8_t target)
{
    uint64_t f = 0;
    if (kv != NULL && kv->present) {
        f = target == KV_CMP_VERSION  ? kv->version
            : target == KV_CMP_CREATE ? kv->create_rev
            : target == KV_CMP_MOD    ? kv->mod_rev
                                      : kv->lease;
    }
    return (int64_t)f + (int64_t)ts_rand_below(&g->r, 3) - 1;
}

static int slot_of(const struct model *m, const uint8_t *k, uint32_t len)
{
    for (int i = 0; i < M_KEYS; i++) {
        if (strlen(m->keys[i]) == len && memcmp(m->keys[i], k, len) == 0) {
            return i;
        }
    }
    return -1;
}

static void g_compare(struct gen *g, struct kv_compare *c)
{
    const char *k = g_key(g);
    *c = (struct kv_compare){.key = g_bytes(g, k, (uint32_t)strlen(k))};
    c->target = (uint8_t)ts_rand_below(&g->r, 5);
    c->result = (uint8_t)ts_rand_below(&g->r, 4);
    if (ts_rand_chance(&g->r, 1, 4)) {
        c->end = g_end(g, k);
    }
    const struct m_kv *kv = &g->m->kv[slot_of(g->m, c->key.p, c->key.len)];
    if (c->target == KV_CMP_VALUE) {
        c->value = kv->present && ts_rand_chance(&g->r, 1, 2) ? g_bytes(g, kv->value, kv->value_len)
                                                              : g_value(g);
    } else {
        c->number = g_number(g, kv, c->target);
    }
}

/* ------------------------------------------------------------------ the model's apply */

static int m_cmp_bytes(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (al > bl) - (al < bl);
}

/* Whether the user key of slot i lies in [key, end) (end as in kv.h). */
static bool m_covers(const struct model *m, int i, struct kv_bytes key, struct kv_bytes end)
{
    const uint8_t *k = (const uint8_t *)m->keys[i];
    uint32_t kl = (uint32_t)strlen(m->keys[i]);
    if (end.len == 0) {
        return m_cmp_bytes(k, kl, key.p, key.len) == 0;
    }
    if (m_cmp_bytes(k, kl, key.p, key.len) < 0) {
        return false;
    }
    return (end.len == 1 && end.p[0] == 0) || m_cmp_bytes(k, kl, end.p, end.len) < 0;
}

static bool m_interval_in_range(struct kv_bytes key, struct kv_bytes end)
{
    char k[8] = {0}, e[8] = {0};
    memcpy(k, key.p, key.len);
    if (end.len == 0) {
        return in_range(k);
    }
    if (strcmp(k, LO) < 0) {
        return false;
    }
    if (end.len == 1 && end.p[0] == 0) {
        return false; /* HI is not the end of the keyspace */
    }
    memcpy(e, end.p, end.len);
    return strcmp(e, HI) <= 0;
}

static bool m_compare(const struct model *m, const struct kv_compare *c)
{
    bool any = false;
    for (int i = 0; i < M_KEYS; i++) {
        const struct m_kv *kv = &m->kv[i];
        if (!kv->present || !m_covers(m, i, c->key, c->end)) {
            continue;
        }
        any = true;
        int r;
        if (c->target == KV_CMP_VALUE) {
            r = m_cmp_bytes(kv->value, kv->value_len, c->value.p, c->value.len);
        } else {
            uint64_t f = c->target == KV_CMP_VERSION  ? kv->version
                         : c->target == KV_CMP_CREATE ? kv->create_rev
                         : c->target == KV_CMP_MOD    ? kv->mod_rev
                                                      : kv->lease;
            r = c->number < 0 ? 1 : (f > (uint64_t)c->number) - (f < (uint64_t)c->number);
        }
        bool ok = c->result == KV_CMP_EQUAL       ? r == 0
                  : c->result == KV_CMP_NOT_EQUAL ? r != 0
                  : c->result == KV_CMP_LESS      ? r < 0
                                                  : r > 0;
        if (!ok) {
            return false;
        }
    }
    if (any) {
        return true;
    }
    if (c->target == KV_CMP_VALUE) {
        return false;
    }
    int r = c->number < 0 ? 1 : (c->number > 0 ? -1 : 0);
    return c->result == KV_CMP_EQUAL       ? r == 0
           : c->result == KV_CMP_NOT_EQUAL ? r != 0
           : c->result == KV_CMP_LESS      ? r < 0
                                           : r > 0;
}

static uint8_t m_check_op(const struct kv_op *op)
{
    switch (op->kind) {
    case KV_OP_PUT:
        if ((op->u.put.ignore_value && op->u.put.value.len) ||
            (op->u.put.ignore_lease && op->u.put.lease)) {
            return KV_INVALID;
        }
        return m_interval_in_range(op->u.put.key, (struct kv_bytes){0}) ? KV_OK : KV_RANGE_MISMATCH;
    case KV_OP_GET:
        return m_interval_in_range(op->u.get.key, (struct kv_bytes){0}) ? KV_OK : KV_RANGE_MISMATCH;
    case KV_OP_DELETE:
        return m_interval_in_range(op->u.del.key, op->u.del.end) ? KV_OK : KV_RANGE_MISMATCH;
    default:
        return m_interval_in_range(op->u.range.key, op->u.range.end) ? KV_OK : KV_RANGE_MISMATCH;
    }
}

/* Runs ops on m (already checked); returns whether anything changed / was deleted. */
static void m_run(struct model *m, const struct kv_op *ops, uint32_t n, uint64_t rev, bool *changed,
                  bool *deleted)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct kv_op *op = &ops[i];
        if (op->kind == KV_OP_PUT) {
            const struct kv_put *p = &op->u.put;
            struct m_kv *kv = &m->kv[slot_of(m, p->key.p, p->key.len)];
            if (kv->present) {
                kv->version++;
            } else {
                *kv = (struct m_kv){.present = true, .create_rev = rev, .version = 1};
            }
            kv->mod_rev = rev;
            if (!p->ignore_lease) {
                kv->lease = p->lease;
            }
            if (!p->ignore_value) {
                kv->value_len = p->value.len;
                memcpy(kv->value, p->value.p, p->value.len);
            }
            *changed = true;
        } else if (op->kind == KV_OP_DELETE) {
            for (int s = 0; s < M_KEYS; s++) {
                if (m->kv[s].present && m_covers(m, s, op->u.del.key, op->u.del.end)) {
                    m->kv[s].present = false;
                    *changed = *deleted = true;
                }
            }
        }
    }
}

/* Whether every keep-value/keep-lease put finds its key when it runs. */
static bool m_ignores_ok(const struct model *m, const struct kv_op *ops, uint32_t n)
{
    struct model tmp = *m;
    bool c, d;
    for (uint32_t i = 0; i < n; i++) {
        const struct kv_put *p = &ops[i].u.put;
        if (ops[i].kind == KV_OP_PUT && (p->ignore_value || p->ignore_lease) &&
            !tmp.kv[slot_of(&tmp, p->key.p, p->key.len)].present) {
            return false;
        }
        m_run(&tmp, &ops[i], 1, 1, &c, &d);
    }
    return true;
}

/* The model's answer to one command: status, and the new state in *m. */
static uint8_t m_apply(struct model *m, uint64_t stamp, const struct kv_compare *cmps, uint32_t cn,
                       const struct kv_op *s, uint32_t sn, const struct kv_op *f, uint32_t fn,
                       bool *succeeded)
{
    for (uint32_t i = 0; i < cn; i++) {
        if (!m_interval_in_range(cmps[i].key, cmps[i].end)) {
            return KV_RANGE_MISMATCH;
        }
    }
    for (uint32_t i = 0; i < sn + fn; i++) {
        uint8_t st = m_check_op(i < sn ? &s[i] : &f[i - sn]);
        if (st != KV_OK) {
            return st;
        }
    }
    bool ok = true;
    for (uint32_t i = 0; i < cn && ok; i++) {
        ok = m_compare(m, &cmps[i]);
    }
    *succeeded = ok;
    const struct kv_op *ops = ok ? s : f;
    uint32_t n = ok ? sn : fn;
    if (!m_ignores_ok(m, ops, n)) {
        return KV_KEY_NOT_FOUND;
    }
    uint64_t rev = stamp > m->last_rev ? stamp : m->last_rev + 1;
    bool changed = false, deleted = false;
    m_run(m, ops, n, rev, &changed, &deleted);
    if (changed) {
        m->last_rev = rev;
    }
    if (deleted) {
        m->last_delete_rev = rev;
    }
    return KV_OK;
}

/* ------------------------------------------------------------------ checks */

/* Every kv of the store (through a kv_read of everything) equals the model. */
static void check_contents(struct kte *e, const struct model *m, uint64_t seed, int step)
{
    struct kte_rec rec;
    kte_rec_init(&rec);
    struct kv_range all = {.id = e->range.id};
    const struct kv_range saved = e->range;
    e->range = all;
    struct kv_op op = {.kind = KV_OP_RANGE,
                       .u.range = {.key = kte_b(""), .end = {(const uint8_t *)"", 1}}};
    cr_assert_eq(kte_read(e, &op, &rec, NULL), KV_OK);
    e->range = saved;
    uint32_t r = 0;
    for (int i = 0; i < M_KEYS; i++) {
        const struct m_kv *kv = &m->kv[i];
        if (!kv->present) {
            continue;
        }
        cr_assert_lt(r, rec.rows_n, "seed %" PRIu64 " step %d: %s missing", seed, step, m->keys[i]);
        const struct kte_row *row = &rec.rows[r++];
        cr_assert_eq(row->key_len, strlen(m->keys[i]), "seed %" PRIu64 " step %d: key %s", seed,
                     step, m->keys[i]);
        cr_assert_arr_eq(row->key, m->keys[i], row->key_len);
        cr_assert_eq(row->value_len, kv->value_len, "seed %" PRIu64 " step %d: %s value", seed,
                     step, m->keys[i]);
        cr_assert_arr_eq(row->value, kv->value, kv->value_len);
        cr_assert_eq(row->create_rev, kv->create_rev, "seed %" PRIu64 " step %d: %s create", seed,
                     step, m->keys[i]);
        cr_assert_eq(row->mod_rev, kv->mod_rev);
        cr_assert_eq(row->version, kv->version, "seed %" PRIu64 " step %d: %s version", seed, step,
                     m->keys[i]);
        cr_assert_eq(row->lease, kv->lease);
    }
    cr_assert_eq(r, rec.rows_n, "seed %" PRIu64 " step %d: extra keys", seed, step);
    cr_assert_eq(e->state.last_rev, m->last_rev);
    cr_assert_eq(e->state.last_delete_rev, m->last_delete_rev);
    kte_rec_fini(&rec);
}

/* Applies a command's watch events to mirror, a copy of the model built from events
 * alone: each event's prev must be what the mirror holds, and after every command the
 * mirror must equal the model (events are complete and exact). */
static void mirror_events(struct model *mirror, const struct kte_rec *rec, uint64_t seed, int step)
{
    for (uint32_t i = 0; i < rec->events_n; i++) {
        const struct kte_event *ev = &rec->events[i];
        int slot = slot_of(mirror, ev->kv.key, ev->kv.key_len);
        cr_assert_geq(slot, 0);
        struct m_kv *kv = &mirror->kv[slot];
        cr_assert_eq(ev->has_prev, kv->present, "seed %" PRIu64 " step %d: event %u prev", seed,
                     step, i);
        if (ev->has_prev) {
            cr_assert_eq(ev->prev.version, kv->version);
            cr_assert_eq(ev->prev.mod_rev, kv->mod_rev);
            cr_assert_eq(ev->prev.value_len, kv->value_len);
            cr_assert_arr_eq(ev->prev.value, kv->value, kv->value_len);
        }
        if (ev->type == KV_EVENT_DELETE) {
            kv->present = false;
            mirror->last_delete_rev = ev->kv.mod_rev;
        } else {
            *kv = (struct m_kv){.present = true,
                                .value_len = ev->kv.value_len,
                                .create_rev = ev->kv.create_rev,
                                .mod_rev = ev->kv.mod_rev,
                                .version = ev->kv.version,
                                .lease = ev->kv.lease};
            memcpy(kv->value, ev->kv.value, ev->kv.value_len);
        }
        mirror->last_rev = ev->kv.mod_rev;
    }
}

static void mirror_check(const struct model *mirror, const struct model *m, uint64_t seed, int step)
{
    for (int i = 0; i < M_KEYS; i++) {
        const struct m_kv *a = &mirror->kv[i], *b = &m->kv[i];
        cr_assert_eq(a->present, b->present, "seed %" PRIu64 " step %d: %s", seed, step,
                     m->keys[i]);
        if (a->present) {
            cr_assert(a->value_len == b->value_len && a->create_rev == b->create_rev &&
                          a->mod_rev == b->mod_rev && a->version == b->version &&
                          a->lease == b->lease,
                      "seed %" PRIu64 " step %d: %s", seed, step, m->keys[i]);
            cr_assert_arr_eq(a->value, b->value, a->value_len);
        }
    }
    cr_assert_eq(mirror->last_rev, m->last_rev);
    cr_assert_eq(mirror->last_delete_rev, m->last_delete_rev);
}

/* One random command: encoded into buf, applied to the model. */
static size_t random_command(struct gen *g, uint64_t *stamp, uint8_t *buf, size_t bytes,
                             uint8_t *want, bool *want_succeeded)
{
    struct kv_compare cmps[3];
    struct kv_op s[4], f[4];
    uint32_t cn = 0, sn = 0, fn = 0;
    g->pool_used = 0;
    /* Stamps mostly climb; one in six goes back. */
    *stamp = ts_rand_chance(&g->r, 1, 6) ? *stamp - ts_rand_below(&g->r, 5)
                                         : *stamp + 1 + ts_rand_below(&g->r, 3);
    uint64_t x = ts_rand_below(&g->r, 10);
    size_t len;
    if (x < 4) {
        s[0].kind = KV_OP_PUT;
        g_put(g, &s[0].u.put);
        cr_assert_eq(kv_cmd_encode_put(7, *stamp, &s[0].u.put, buf, bytes, &len), 0);
        sn = 1;
    } else if (x < 6) {
        do {
            g_op(g, &s[0]);
        } while (s[0].kind != KV_OP_DELETE);
        cr_assert_eq(kv_cmd_encode_delete(7, *stamp, &s[0].u.del, buf, bytes, &len), 0);
        sn = 1;
    } else {
        cn = (uint32_t)ts_rand_below(&g->r, 3);
        sn = (uint32_t)ts_rand_below(&g->r, 4);
        fn = (uint32_t)ts_rand_below(&g->r, 4);
        for (uint32_t i = 0; i < cn; i++) {
            g_compare(g, &cmps[i]);
        }
        for (uint32_t i = 0; i < sn; i++) {
            g_op(g, &s[i]);
        }
        for (uint32_t i = 0; i < fn; i++) {
            g_op(g, &f[i]);
        }
        cr_assert_eq(kv_cmd_encode_txn(7, *stamp, cmps, cn, s, sn, f, fn, buf, bytes, &len), 0);
    }
    *want_succeeded = false;
    *want = m_apply(g->m, *stamp, cmps, cn, s, sn, f, fn, want_succeeded);
    return len;
}

Test(kv_model, random_commands_match_the_model)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct kte e;
        kte_init(&e, seed);
        kte_set_range(&e, 7, LO, HI);
        static struct model m, mirror;
        model_init(&m);
        model_init(&mirror);
        struct kte_rec rec;
        kte_rec_init(&rec);
        static struct gen g;
        memset(&g, 0, sizeof(g));
        ts_rand_seed(&g.r, seed);
        g.m = &m;
        uint64_t stamp = 1000;
        uint32_t statuses[16] = {0}, txn_ok = 0, txn_else = 0;
        for (int step = 0; step < 1500; step++) {
            uint8_t want;
            bool want_ok;
            size_t len = random_command(&g, &stamp, e.cmd, 1u << 20, &want, &want_ok);
            struct kv_result res;
            kte_apply_bytes(&e, e.cmd, len, &rec, &res);
            mirror_events(&mirror, &rec, seed, step);
            mirror_check(&mirror, &m, seed, step);
            cr_assert_eq(res.status, want, "seed %" PRIu64 " step %d: %s, model %s", seed, step,
                         kv_status_name(res.status), kv_status_name(want));
            statuses[res.status]++;
            if (e.cmd[1] == KV_OP_TXN && want == KV_OK) {
                cr_assert_eq(res.succeeded, want_ok, "seed %" PRIu64 " step %d", seed, step);
                txn_ok += want_ok;
                txn_else += !want_ok;
            }
            cr_assert_eq(res.rev, m.last_rev);
            if (step % 50 == 49) {
                check_contents(&e, &m, seed, step);
            }
        }
        check_contents(&e, &m, seed, -1);
        cr_assert_gt(statuses[KV_OK], 500);
        cr_assert_gt(statuses[KV_RANGE_MISMATCH], 10);
        cr_assert_gt(statuses[KV_KEY_NOT_FOUND], 5);
        cr_assert_gt(txn_ok, 20);
        cr_assert_gt(txn_else, 20);
        kte_rec_fini(&rec);
        kte_fini(&e);
    }
}

Test(kv_model, two_stores_end_identical)
{
    /* The same command bytes on two stores (different disk seeds and cache budgets) give
     * the same results and byte-identical trees. */
    struct kte a, b;
    kte_init(&a, 100);
    kte_init(&b, 200);
    kte_set_range(&a, 7, LO, HI);
    kte_set_range(&b, 7, LO, HI);
    static struct model m;
    model_init(&m);
    static struct gen g;
    memset(&g, 0, sizeof(g));
    ts_rand_seed(&g.r, 77);
    g.m = &m;
    uint64_t stamp = 5000;
    struct kte_rec ra, rb;
    kte_rec_init(&ra);
    kte_rec_init(&rb);
    for (int step = 0; step < 3000; step++) {
        uint8_t want;
        bool ok;
        size_t len = random_command(&g, &stamp, a.cmd, 1u << 20, &want, &ok);
        struct kv_result x, y;
        kte_apply_bytes(&a, a.cmd, len, &ra, &x);
        kte_apply_bytes(&b, a.cmd, len, step % 2 ? &rb : NULL, &y);
        cr_assert_eq(memcmp(&x, &y, sizeof(x)), 0, "step %d: results differ", step);
        if (step % 500 == 0) {
            cr_assert_eq(btree_checkpoint(b.t, NULL, 0), 0);
        }
    }
    size_t la, lb;
    uint8_t *da = kte_dump(&a, &la), *db = kte_dump(&b, &lb);
    cr_assert_eq(la, lb);
    cr_assert_arr_eq(da, db, la, "the trees differ");
    cr_assert_eq(memcmp(&a.state, &b.state, sizeof(a.state)), 0);
    cr_assert_gt(la, 0);
    free(da);
    free(db);
    kte_rec_fini(&ra);
    kte_rec_fini(&rb);
    kte_fini(&a);
    kte_fini(&b);
}
