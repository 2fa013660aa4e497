/* tests/sim/lincheck: Wing & Gong with Lowe's cache, per key (see lincheck.h). */
#include "tests/sim/lincheck.h"

#include "core/util/assert.h"
#include "core/util/rand.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The return time of a lost op (and of one not yet returned). */
#define LIN_T_INF UINT64_MAX
/* How many completed ops before the culprit an explanation lists. */
#define LIN_WHY_BEFORE 3
/* How many ops an explanation lists at most. */
#define LIN_WHY_OPS_MAX 16

enum { OP_PENDING = 0, OP_RETURNED = 1, OP_LOST = 2 };

struct lin_op {
    uint64_t key;
    uint64_t arg1;
    uint64_t arg2;
    uint64_t result;
    uint64_t t_inv;
    uint64_t t_ret; /* LIN_T_INF unless returned */
    uint32_t client;
    uint8_t kind;
    uint8_t status;
};

struct lin_history {
    struct lin_op *ops;
    uint32_t n;
    uint32_t cap;
};

/* One event of a key's sorted event list, as a node of a doubly linked list whose node 0
 * is the head; a next of 0 ends the list. */
struct lin_node {
    uint64_t time;
    uint32_t prev;
    uint32_t next;
    uint32_t op;    /* index into the key's op list */
    uint32_t match; /* a call's return node */
    uint8_t is_ret;
};

/* The search's register: its value and, right after a lost write took effect, the value
 * before it (`before`, valid when `pending`): the next op linearized must then be one
 * that this write serves (see search()). */
struct lin_reg {
    uint64_t value;
    uint64_t before;
    bool pending;
};

struct lin_undo {
    uint32_t node;    /* the call node lifted out of the list */
    uint32_t clobber; /* the clobber linearized just before it, or UINT32_MAX */
    struct lin_reg reg;
    bool forced; /* a read taken as the only branch worth trying (see search()) */
};

/* A cached configuration: the bitset of linearized ops stored canonically (the words
 * from the first one not all ones up to the last nonzero one; the words before are all
 * ones, those after all zeros) and the register. lo == UINT32_MAX: empty slot. */
struct lin_slot {
    uint64_t hash;
    struct lin_reg reg;
    uint64_t off; /* into the cache's word arena */
    uint32_t lo;
    uint32_t cnt;
};

struct lin_cache {
    struct lin_slot *slots;
    size_t cap; /* a power of two */
    size_t count;
    uint64_t *words;
    size_t words_n;
    size_t words_cap;
};

/* The search over one key's ops. A clobber is a lost write whose value no op reads or
 * expects (no GET returns it, no CAS expects it): its only possible use is to make a
 * failed CAS legal by overwriting the value that CAS expected. Clobbers stay out of the
 * event list; the search inserts one just before a failed CAS that needs it. */
struct lin_key {
    const struct lin_op *ops; /* the history's */
    /* This key's ops (history ids): [0, n_main) in the event list, then the clobbers
     * [n_main, n); each part by invocation time. */
    uint32_t *ids;
    uint32_t n;
    uint32_t n_main;
    struct lin_node *node; /* 2 n_main + 1 */
    uint64_t *bits;        /* linearized ops, by index into ids */
    uint32_t words;
    uint64_t *zob; /* a random 64-bit value per op: the bitset's hash is their xor */
    struct lin_undo *undo;
    uint32_t depth;
    struct lin_reg reg; /* after the ops linearized so far */
    uint64_t hash;      /* of the bitset: the xor of zob[] over its members */
    struct lin_cache cache;
    uint64_t steps_max;
    uint64_t steps;
    uint32_t stuck; /* the furthest return node the search had to backtrack from */
};

static void *xmalloc(size_t size)
{
    TS_ASSERT(size > 0);
    void *p = malloc(size);
    TS_ASSERT(p != NULL);
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    TS_ASSERT(n > 0 && size > 0);
    void *p = calloc(n, size);
    TS_ASSERT(p != NULL);
    return p;
}

/* ---- Recording ---- */

struct lin_history *lin_history_new(void)
{
    struct lin_history *h = xcalloc(1, sizeof(*h));
    h->cap = 64;
    h->ops = xmalloc(h->cap * sizeof(*h->ops));
    TS_ASSERT(h->n == 0);
    return h;
}

void lin_history_free(struct lin_history *h)
{
    if (h == NULL) {
        return;
    }
    free(h->ops);
    free(h);
}

size_t lin_history_ops(const struct lin_history *h)
{
    TS_ASSERT(h != NULL);
    return h->n;
}

uint32_t lin_invoke(struct lin_history *h, uint32_t client, uint8_t kind, uint64_t key,
                    uint64_t arg1, uint64_t arg2, uint64_t time)
{
    TS_ASSERT(kind <= LIN_CAS);
    TS_ASSERT(kind != LIN_PUT || arg1 != 0);
    TS_ASSERT(kind != LIN_CAS || arg2 != 0);
    TS_ASSERT(time != LIN_T_INF);
    if (h->n == h->cap) {
        TS_ASSERT(h->cap < UINT32_MAX / 2);
        h->cap *= 2;
        h->ops = realloc(h->ops, h->cap * sizeof(*h->ops));
        TS_ASSERT(h->ops != NULL);
    }
    struct lin_op *o = &h->ops[h->n];
    *o = (struct lin_op){.key = key,
                         .arg1 = kind == LIN_GET ? 0 : arg1,
                         .arg2 = kind == LIN_CAS ? arg2 : 0,
                         .t_inv = time,
                         .t_ret = LIN_T_INF,
                         .client = client,
                         .kind = kind,
                         .status = OP_PENDING};
    return h->n++;
}

void lin_return(struct lin_history *h, uint32_t op, uint64_t result, uint64_t time)
{
    TS_ASSERT(op < h->n);
    struct lin_op *o = &h->ops[op];
    TS_ASSERT(o->status == OP_PENDING);
    TS_ASSERT(time >= o->t_inv);
    TS_ASSERT(time != LIN_T_INF);
    TS_ASSERT(o->kind != LIN_CAS || result <= 1);
    o->result = o->kind == LIN_PUT ? 0 : result;
    o->t_ret = time;
    o->status = OP_RETURNED;
}

void lin_lost(struct lin_history *h, uint32_t op)
{
    TS_ASSERT(op < h->n);
    struct lin_op *o = &h->ops[op];
    TS_ASSERT(o->status == OP_PENDING);
    o->status = OP_LOST;
    TS_ASSERT(o->t_ret == LIN_T_INF);
}

/* ---- The register model ---- */

static bool op_returned(const struct lin_op *o)
{
    return o->status == OP_RETURNED;
}

/* Applies o to register value s; false if o's recorded result contradicts s. A CAS whose
 * outcome is unknown swaps if it can. */
static bool model_step(const struct lin_op *o, uint64_t s, uint64_t *out)
{
    switch (o->kind) {
    case LIN_PUT:
        *out = o->arg1;
        return true;
    case LIN_GET:
        *out = s;
        return s == o->result;
    default:
        TS_DASSERT(o->kind == LIN_CAS);
        if (!op_returned(o) || o->result == 1) {
            *out = s == o->arg1 ? o->arg2 : s;
            return s == o->arg1 || !op_returned(o);
        }
        *out = s;
        return s != o->arg1;
    }
}

/* The value an op may write, 0 if it writes none. */
static uint64_t op_written(const struct lin_op *o)
{
    if (o->kind == LIN_PUT) {
        return o->arg1;
    }
    if (o->kind == LIN_CAS && (!op_returned(o) || o->result == 1)) {
        return o->arg2;
    }
    return 0;
}

/* ---- Sorting and value sets ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool set_has(const uint64_t *set, size_t n, uint64_t v)
{
    return n > 0 && bsearch(&v, set, n, sizeof(*set), cmp_u64) != NULL;
}

/* An op's sort key for splitting the history by key (qsort takes no context, so the
 * fields it compares are copied out). */
struct lin_sort {
    uint64_t key;
    uint64_t t_inv;
    uint32_t id;
};

static int cmp_sort(const void *a, const void *b)
{
    const struct lin_sort *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    if (x->t_inv != y->t_inv) {
        return x->t_inv < y->t_inv ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

/* Returns the op ids sorted by key, then invocation time, then id (caller frees). */
static uint32_t *ids_by_key(const struct lin_history *h)
{
    struct lin_sort *v = xmalloc(h->n * sizeof(*v));
    for (uint32_t i = 0; i < h->n; i++) {
        v[i] = (struct lin_sort){.key = h->ops[i].key, .t_inv = h->ops[i].t_inv, .id = i};
    }
    qsort(v, h->n, sizeof(*v), cmp_sort);
    uint32_t *ids = xmalloc(h->n * sizeof(*ids));
    for (uint32_t i = 0; i < h->n; i++) {
        ids[i] = v[i].id;
    }
    free(v);
    TS_ASSERT(h->n == 0 || h->ops[ids[0]].key <= h->ops[ids[h->n - 1]].key);
    return ids;
}

/* Event order: time, then invocations before returns (equal times are concurrent),
 * then op index (determinism). */
static int cmp_node(const void *a, const void *b)
{
    const struct lin_node *x = a, *y = b;
    if (x->time != y->time) {
        return x->time < y->time ? -1 : 1;
    }
    if (x->is_ret != y->is_ret) {
        return x->is_ret < y->is_ret ? -1 : 1;
    }
    return (x->op > y->op) - (x->op < y->op);
}

/* ---- Explanations ---- */

static void why_add(char *why, size_t len, size_t *pos, const char *fmt, ...)
{
    if (*pos + 1 >= len) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(why + *pos, len - *pos, fmt, ap);
    va_end(ap);
    TS_ASSERT(w >= 0);
    *pos = *pos + (size_t)w < len ? *pos + (size_t)w : len - 1;
    TS_ASSERT(why[*pos] == '\0');
}

static void why_op(char *why, size_t len, size_t *pos, const struct lin_op *o, uint32_t id)
{
    why_add(why, len, pos, "op %" PRIu32 " (client %" PRIu32 " ", id, o->client);
    if (o->kind == LIN_PUT) {
        why_add(why, len, pos, "PUT %" PRIu64, o->arg1);
    } else if (o->kind == LIN_GET) {
        why_add(why, len, pos, "GET -> %" PRIu64, o->result);
    } else {
        why_add(why, len, pos, "CAS %" PRIu64 "->%" PRIu64 "%s", o->arg1, o->arg2,
                !op_returned(o) ? ""
                : o->result     ? " -> swapped"
                                : " -> not swapped");
    }
    if (op_returned(o)) {
        why_add(why, len, pos, ", [%" PRIu64 ", %" PRIu64 "])", o->t_inv, o->t_ret);
    } else {
        why_add(why, len, pos, ", [%" PRIu64 ", lost])", o->t_inv);
    }
}

/* Whether op j is listed around culprit c: it writes the value c reads or expects, it
 * overlaps c's interval (a lost op: was invoked within it), or it is one of the
 * LIN_WHY_BEFORE ops of the key that returned last before c was invoked. */
static bool why_near(const struct lin_key *k, uint32_t c, uint32_t j)
{
    const struct lin_op *oc = &k->ops[k->ids[c]], *oj = &k->ops[k->ids[j]];
    uint64_t seen = oc->kind == LIN_GET ? oc->result : oc->kind == LIN_CAS ? oc->arg1 : 0;
    if (seen != 0 && op_written(oj) == seen) {
        return true;
    }
    if (!op_returned(oj)) {
        return oj->t_inv >= oc->t_inv && oj->t_inv <= oc->t_ret;
    }
    if (oj->t_inv <= oc->t_ret && oj->t_ret >= oc->t_inv) {
        return true;
    }
    if (oj->t_ret >= oc->t_inv) {
        return false;
    }
    uint32_t later = 0;
    for (uint32_t i = 0; i < k->n; i++) {
        const struct lin_op *oi = &k->ops[k->ids[i]];
        later += oi->t_ret < oc->t_inv && oi->t_ret > oj->t_ret;
    }
    return later < LIN_WHY_BEFORE;
}

static void why_illegal(const struct lin_key *k, uint32_t c, const char *what, char *why,
                        size_t len)
{
    size_t pos = 0;
    if (len > 0) {
        why[0] = '\0';
    }
    const struct lin_op *oc = &k->ops[k->ids[c]];
    why_add(why, len, &pos, "key %" PRIu64 ": %s ", oc->key, what);
    why_op(why, len, &pos, oc, k->ids[c]);
    why_add(why, len, &pos, "; ops of the key around it:");
    uint32_t listed = 0;
    for (uint32_t j = 0; j < k->n && listed < LIN_WHY_OPS_MAX; j++) {
        if (j != c && why_near(k, c, j)) {
            why_add(why, len, &pos, listed == 0 ? " " : "; ");
            why_op(why, len, &pos, &k->ops[k->ids[j]], k->ids[j]);
            listed++;
        }
    }
    why_add(why, len, &pos, listed == 0 ? " none." : ".");
}

/* ---- The cache of explored configurations ---- */

static void cache_init(struct lin_cache *c, uint32_t n)
{
    c->cap = 256;
    while (c->cap < 4 * (size_t)n) {
        c->cap *= 2;
    }
    c->slots = xmalloc(c->cap * sizeof(*c->slots));
    memset(c->slots, 0xff, c->cap * sizeof(*c->slots));
    c->count = 0;
    c->words_cap = 1024;
    c->words = xmalloc(c->words_cap * sizeof(*c->words));
    c->words_n = 0;
}

static void cache_free(struct lin_cache *c)
{
    free(c->slots);
    free(c->words);
}

static void cache_grow(struct lin_cache *c)
{
    size_t cap = c->cap * 2;
    struct lin_slot *slots = xmalloc(cap * sizeof(*slots));
    memset(slots, 0xff, cap * sizeof(*slots));
    for (size_t i = 0; i < c->cap; i++) {
        if (c->slots[i].lo == UINT32_MAX) {
            continue;
        }
        size_t j = c->slots[i].hash & (cap - 1);
        while (slots[j].lo != UINT32_MAX) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = c->slots[i];
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    TS_ASSERT(c->count * 2 <= c->cap);
}

/* The canonical window of the bitset: words [lo, lo + cnt). */
static void bits_window(const struct lin_key *k, uint32_t *lo, uint32_t *cnt)
{
    uint32_t a = 0;
    while (a < k->words && k->bits[a] == UINT64_MAX) {
        a++;
    }
    uint32_t b = k->words;
    while (b > a && k->bits[b - 1] == 0) {
        b--;
    }
    *lo = a;
    *cnt = b - a;
}

static bool reg_equal(const struct lin_reg *a, const struct lin_reg *b)
{
    return a->value == b->value && a->pending == b->pending &&
           (!a->pending || a->before == b->before);
}

static uint64_t reg_hash(const struct lin_reg *r)
{
    uint64_t x = r->value, y = r->before ^ 0x70656e64696e67ull;
    return ts_rand_splitmix(&x) ^ (r->pending ? ts_rand_splitmix(&y) : 0);
}

static bool slot_matches(const struct lin_key *k, const struct lin_slot *s, uint64_t hash,
                         const struct lin_reg *reg, uint32_t lo, uint32_t cnt)
{
    return s->hash == hash && reg_equal(&s->reg, reg) && s->lo == lo && s->cnt == cnt &&
           memcmp(&k->cache.words[s->off], &k->bits[lo], cnt * sizeof(uint64_t)) == 0;
}

/* Adds the configuration (the current bitset, reg); false if it was there already. */
static bool cache_add(struct lin_key *k, const struct lin_reg *reg)
{
    struct lin_cache *c = &k->cache;
    uint32_t lo, cnt;
    bits_window(k, &lo, &cnt);
    uint64_t hash = k->hash ^ reg_hash(reg);
    size_t i = hash & (c->cap - 1);
    for (; c->slots[i].lo != UINT32_MAX; i = (i + 1) & (c->cap - 1)) {
        if (slot_matches(k, &c->slots[i], hash, reg, lo, cnt)) {
            return false;
        }
    }
    if (c->words_n + cnt > c->words_cap) {
        while (c->words_n + cnt > c->words_cap) {
            c->words_cap *= 2;
        }
        c->words = realloc(c->words, c->words_cap * sizeof(*c->words));
        TS_ASSERT(c->words != NULL);
    }
    memcpy(&c->words[c->words_n], &k->bits[lo], cnt * sizeof(uint64_t));
    c->slots[i] =
        (struct lin_slot){.hash = hash, .reg = *reg, .off = c->words_n, .lo = lo, .cnt = cnt};
    c->words_n += cnt;
    c->count++;
    if (c->count * 2 > c->cap) {
        cache_grow(c);
    }
    return true;
}

/* ---- The search ---- */

static void list_lift(struct lin_node *nd, uint32_t call)
{
    uint32_t ret = nd[call].match;
    nd[nd[call].prev].next = nd[call].next;
    nd[nd[call].next].prev = nd[call].prev;
    nd[nd[ret].prev].next = nd[ret].next;
    nd[nd[ret].next].prev = nd[ret].prev;
}

/* Undoes list_lift(call): the return first, then the call (reverse order). */
static void list_unlift(struct lin_node *nd, uint32_t call)
{
    uint32_t ret = nd[call].match;
    nd[nd[ret].prev].next = ret;
    nd[nd[ret].next].prev = ret;
    nd[nd[call].prev].next = call;
    nd[nd[call].next].prev = call;
}

/* Builds the sorted event list of the key's ops. */
static void events_build(struct lin_key *k)
{
    struct lin_node *nd = k->node;
    uint32_t n = k->n_main;
    for (uint32_t i = 0; i < n; i++) {
        const struct lin_op *o = &k->ops[k->ids[i]];
        nd[1 + 2 * i] = (struct lin_node){.time = o->t_inv, .op = i, .is_ret = 0};
        nd[2 + 2 * i] = (struct lin_node){.time = o->t_ret, .op = i, .is_ret = 1};
    }
    qsort(nd + 1, 2 * (size_t)n, sizeof(*nd), cmp_node);
    uint32_t *call_of = xmalloc(n * sizeof(*call_of));
    nd[0] = (struct lin_node){.prev = 2 * n, .next = 1};
    for (uint32_t e = 1; e <= 2 * n; e++) {
        nd[e].prev = e - 1;
        nd[e].next = e == 2 * n ? 0 : e + 1;
        if (!nd[e].is_ret) {
            call_of[nd[e].op] = e;
        } else {
            nd[call_of[nd[e].op]].match = e;
        }
    }
    free(call_of);
    TS_ASSERT(nd[nd[1].match].is_ret);
}

static bool bit_get(const struct lin_key *k, uint32_t i)
{
    return (k->bits[i / 64] >> (i % 64)) & 1;
}

static void bit_flip(struct lin_key *k, uint32_t i)
{
    k->bits[i / 64] ^= 1ull << (i % 64);
}

/* A clobber for a failed CAS at call node e that expected `state` and found it: one not
 * yet used and invoked no later than the first return still in the list (so it may take
 * effect now). A lost CAS that swaps from `state` is preferred to a lost PUT, which
 * could serve any state later; among equals the first invoked is taken, as all of them
 * stay usable from now on. Returns its index or UINT32_MAX. */
static uint32_t pick_clobber(const struct lin_key *k, uint32_t e, uint64_t state)
{
    uint32_t f = e;
    while (!k->node[f].is_ret) {
        f = k->node[f].next;
    }
    uint32_t put = UINT32_MAX;
    for (uint32_t i = k->n_main; i < k->n; i++) {
        const struct lin_op *o = &k->ops[k->ids[i]];
        if (o->t_inv > k->node[f].time) {
            break;
        }
        if (bit_get(k, i)) {
            continue;
        }
        if (o->kind == LIN_CAS && o->arg1 == state) {
            return i;
        }
        put = put == UINT32_MAX && o->kind == LIN_PUT ? i : put;
    }
    return put;
}

/* Whether op o may be linearized now, and the register after it; *clobber is set when a
 * clobber must go just before it. A lost write that would not change the value is never
 * taken (leaving it out is as good), and one that does leaves the register pending: the
 * next op must be served by it, that is, be allowed after it and either not allowed
 * before it or have another effect. Any linearization can be put in that form (move
 * the lost write just before the first op it serves; if none, drop it), so the search
 * loses nothing and never multiplies configurations by lost writes put anywhere. */
static bool step_allowed(const struct lin_key *k, uint32_t e, const struct lin_op *o,
                         struct lin_reg *next, uint32_t *clobber)
{
    const struct lin_reg *r = &k->reg;
    bool ok = model_step(o, r->value, &next->value);
    *clobber = UINT32_MAX;
    if (r->pending) {
        uint64_t alt;
        ok = ok && (!model_step(o, r->before, &alt) || alt != next->value);
    } else if (!ok && o->kind == LIN_CAS && op_returned(o) && o->result == 0) {
        *clobber = pick_clobber(k, e, r->value);
        if (*clobber == UINT32_MAX) {
            return false;
        }
        next->value = op_written(&k->ops[k->ids[*clobber]]);
        TS_ASSERT(next->value != o->arg1);
        ok = true;
    }
    next->pending = !op_returned(o);
    next->before = r->value;
    TS_ASSERT(!next->pending || o->kind != LIN_GET);
    return ok && (!next->pending || next->value != r->value);
}

static void bits_flip_pair(struct lin_key *k, uint32_t op, uint32_t clobber)
{
    bit_flip(k, op);
    k->hash ^= k->zob[op];
    if (clobber != UINT32_MAX) {
        bit_flip(k, clobber);
        k->hash ^= k->zob[clobber];
    }
}

/* Tries to linearize the op of call node e now; true if it did (and lifted it). */
static bool try_linearize(struct lin_key *k, uint32_t e, bool forced)
{
    uint32_t op = k->node[e].op, clobber;
    struct lin_reg next;
    if (!step_allowed(k, e, &k->ops[k->ids[op]], &next, &clobber)) {
        return false;
    }
    TS_ASSERT(!bit_get(k, op));
    bits_flip_pair(k, op, clobber);
    if (!cache_add(k, &next)) {
        bits_flip_pair(k, op, clobber);
        return false;
    }
    TS_ASSERT(k->depth < k->n_main);
    k->undo[k->depth++] =
        (struct lin_undo){.node = e, .clobber = clobber, .reg = k->reg, .forced = forced};
    k->reg = next;
    list_lift(k->node, e);
    return true;
}

/* Undoes the last linearization and returns the node to continue from, or 0 when the
 * search is exhausted (LIN_ILLEGAL). Undoing a forced read undoes the linearization
 * before it too: the configuration the read was forced from has failed as a whole. */
static uint32_t backtrack(struct lin_key *k)
{
    for (;;) {
        if (k->depth == 0) {
            return 0;
        }
        struct lin_undo u = k->undo[--k->depth];
        uint32_t op = k->node[u.node].op;
        TS_ASSERT(bit_get(k, op));
        TS_ASSERT(u.clobber == UINT32_MAX || bit_get(k, u.clobber));
        bits_flip_pair(k, op, u.clobber);
        k->reg = u.reg;
        list_unlift(k->node, u.node);
        if (!u.forced) {
            TS_ASSERT(k->node[u.node].next != 0);
            return k->node[u.node].next;
        }
    }
}

/* A read (a returned GET, or a returned CAS that failed) among the ops invoked before the
 * first return still in the list that the register allows now; 0 if none. */
static uint32_t find_read(const struct lin_key *k)
{
    uint64_t v = k->reg.value;
    for (uint32_t e = k->node[0].next; e != 0 && !k->node[e].is_ret; e = k->node[e].next) {
        const struct lin_op *o = &k->ops[k->ids[k->node[e].op]];
        if (!op_returned(o)) {
            continue;
        }
        if ((o->kind == LIN_GET && o->result == v) ||
            (o->kind == LIN_CAS && o->result == 0 && o->arg1 != v)) {
            return e;
        }
    }
    return 0;
}

/* The search (Lowe's just-in-time linearization). e is the node to try next, 0 meaning
 * a configuration just reached. Partial-order reduction: in a new configuration, a read
 * the register allows is linearized first and alone. If any linearization from here
 * exists, one starts with that read (it leaves the register as it is, and no op still
 * open returned before it was invoked), so trying the other ops too is wasted work. A
 * read found while a lost write is pending is served by it: it was not allowed before
 * that write, or it would have been taken then. */
static enum lin_result search(struct lin_key *k)
{
    uint32_t e = 0;
    for (;;) {
        if (k->steps_max != 0 && ++k->steps > k->steps_max) {
            return LIN_UNKNOWN;
        }
        if (e == 0 && k->node[0].next == 0) {
            TS_ASSERT(k->depth == k->n_main);
            return LIN_OK;
        }
        if (e == 0) {
            uint32_t r = find_read(k);
            if (r == 0) {
                e = k->node[0].next;
            } else if (!try_linearize(k, r, true) && (e = backtrack(k)) == 0) {
                return LIN_ILLEGAL;
            }
            continue;
        }
        if (!k->node[e].is_ret) {
            e = try_linearize(k, e, false) ? 0 : k->node[e].next;
            continue;
        }
        if (k->node[e].time == LIN_T_INF) {
            /* Only lost ops remain (every finite return sorts before this one): they
             * never take effect. */
            return LIN_OK;
        }
        k->stuck = e > k->stuck ? e : k->stuck;
        if ((e = backtrack(k)) == 0) {
            return LIN_ILLEGAL;
        }
    }
}

/* ---- Per key ---- */

/* Collects the values observed by reads (GET results, CAS expectations) into a sorted
 * array; *failed_cas tells whether a returned CAS failed. */
static uint64_t *observed_values(const struct lin_op *ops, const uint32_t *ids, uint32_t n,
                                 size_t *n_out, bool *failed_cas)
{
    uint64_t *v = xmalloc((n + 1) * sizeof(*v));
    size_t m = 0;
    *failed_cas = false;
    for (uint32_t i = 0; i < n; i++) {
        const struct lin_op *o = &ops[ids[i]];
        if (o->kind == LIN_GET && op_returned(o)) {
            v[m++] = o->result;
        } else if (o->kind == LIN_CAS) {
            v[m++] = o->arg1;
            *failed_cas |= op_returned(o) && o->result == 0;
        }
    }
    qsort(v, m, sizeof(*v), cmp_u64);
    *n_out = m;
    return v;
}

/* Sorts the key's ops in place into those the search needs: the main ops first, then the
 * clobbers (see struct lin_key); sets k->n and k->n_main. A lost GET reads nothing and is
 * dropped. Without a failed CAS on the key the clobbers are dropped too, as nothing can
 * use them (they may be taken as never having happened). */
static void partition_ops(struct lin_key *k, uint32_t n)
{
    size_t n_obs;
    bool failed_cas;
    uint64_t *obs = observed_values(k->ops, k->ids, n, &n_obs, &failed_cas);
    uint32_t *clobbers = xmalloc((n + 1) * sizeof(*clobbers));
    uint32_t n_main = 0, n_clobbers = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct lin_op *o = &k->ops[k->ids[i]];
        if (op_returned(o)) {
            k->ids[n_main++] = k->ids[i];
        } else if (o->kind == LIN_GET) {
            continue;
        } else if (set_has(obs, n_obs, op_written(o))) {
            k->ids[n_main++] = k->ids[i];
        } else if (failed_cas) {
            clobbers[n_clobbers++] = k->ids[i];
        }
    }
    memcpy(k->ids + n_main, clobbers, n_clobbers * sizeof(*clobbers));
    k->n_main = n_main;
    k->n = n_main + n_clobbers;
    free(clobbers);
    free(obs);
    TS_ASSERT(k->n <= n);
}

/* Finds a returned read of a nonzero value that no op of the key writes; returns its
 * index or UINT32_MAX. */
static uint32_t find_phantom_read(const struct lin_key *k)
{
    uint64_t *w = xmalloc((k->n + 1) * sizeof(*w));
    size_t m = 0;
    for (uint32_t i = 0; i < k->n; i++) {
        uint64_t v = op_written(&k->ops[k->ids[i]]);
        if (v != 0) {
            w[m++] = v;
        }
    }
    qsort(w, m, sizeof(*w), cmp_u64);
    uint32_t found = UINT32_MAX;
    for (uint32_t i = 0; i < k->n && found == UINT32_MAX; i++) {
        const struct lin_op *o = &k->ops[k->ids[i]];
        uint64_t seen = 0;
        if (op_returned(o) && o->kind == LIN_GET) {
            seen = o->result;
        } else if (op_returned(o) && o->kind == LIN_CAS && o->result == 1) {
            seen = o->arg1;
        }
        if (seen != 0 && !set_has(w, m, seen)) {
            found = i;
        }
    }
    free(w);
    return found;
}

static void key_alloc(struct lin_key *k)
{
    k->words = (k->n + 63) / 64;
    k->node = xmalloc((2 * (size_t)k->n_main + 1) * sizeof(*k->node));
    k->bits = xcalloc(k->words, sizeof(*k->bits));
    k->zob = xmalloc(k->n * sizeof(*k->zob));
    k->undo = xmalloc((k->n_main + 1) * sizeof(*k->undo));
    uint64_t seed = 0x6c696e636865636bull; /* any fixed seed: the hash needs no secrecy */
    for (uint32_t i = 0; i < k->n; i++) {
        k->zob[i] = ts_rand_splitmix(&seed);
    }
    cache_init(&k->cache, k->n);
}

static void key_free(struct lin_key *k)
{
    free(k->node);
    free(k->bits);
    free(k->zob);
    free(k->undo);
    cache_free(&k->cache);
}

/* Checks the ops ids[0..n) of one key (sorted by invocation; reordered in place). */
static enum lin_result check_key(const struct lin_op *ops, uint32_t *ids, uint32_t n,
                                 uint64_t steps_max, char *why, size_t why_len)
{
    struct lin_key k = {.ops = ops, .ids = ids, .steps_max = steps_max};
    partition_ops(&k, n);
    if (k.n_main == 0) {
        return LIN_OK;
    }
    uint32_t phantom = find_phantom_read(&k);
    if (phantom != UINT32_MAX) {
        why_illegal(&k, phantom, "reads a value no op writes:", why, why_len);
        return LIN_ILLEGAL;
    }
    key_alloc(&k);
    events_build(&k);
    enum lin_result r = search(&k);
    if (r == LIN_ILLEGAL) {
        TS_ASSERT(k.stuck != 0 && k.node[k.stuck].is_ret);
        why_illegal(&k, k.node[k.stuck].op, "no linearization gets past the return of", why,
                    why_len);
    } else if (r == LIN_UNKNOWN && why_len > 0) {
        snprintf(why, why_len,
                 "key %" PRIu64 ": search gave up after %" PRIu64 " steps over %" PRIu32
                 " ops (steps_max)",
                 ops[ids[0]].key, steps_max, k.n);
    }
    key_free(&k);
    return r;
}

enum lin_result lin_check(struct lin_history *h, uint64_t steps_max, char *why, size_t why_len)
{
    TS_ASSERT(h != NULL);
    TS_ASSERT(why != NULL || why_len == 0);
    if (why_len > 0) {
        why[0] = '\0';
    }
    if (h->n == 0) {
        return LIN_OK;
    }
    uint32_t *ids = ids_by_key(h);
    /* Every key is checked even after one gave up: a later key may be illegal, and an
     * illegal key's explanation wins over the first unknown one's. */
    enum lin_result result = LIN_OK;
    char *key_why = why_len > 0 ? xmalloc(why_len) : NULL;
    for (uint32_t a = 0, b; a < h->n && result != LIN_ILLEGAL; a = b) {
        for (b = a + 1; b < h->n && h->ops[ids[b]].key == h->ops[ids[a]].key; b++) {
        }
        enum lin_result r = check_key(h->ops, ids + a, b - a, steps_max, key_why, why_len);
        if (r == LIN_ILLEGAL || (r == LIN_UNKNOWN && result == LIN_OK)) {
            result = r;
            if (why_len > 0) {
                memcpy(why, key_why, why_len);
            }
        }
    }
    free(ids);
    free(key_why);
    return result;
}
