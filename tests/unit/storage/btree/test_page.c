/*
 * storage/btree/page: the page format. Round trips for every page type; leaf pages
 * driven by seeded random inserts, replacements and deletes against a sorted reference
 * array at page sizes 512..65536 (order, contents, free bytes, TS_EFULL exactly when the
 * reference says the cell does not fit, and btp_check_structure after every step);
 * compaction; splits of leaves and branches; branch search against a linear scan; every
 * bit flip of a sealed page; structural damage under a fixed CRC; meta pages (newer
 * chosen, torn fallback, both bad); and the key and inline value limits. Seeds appear
 * in every failure message.
 */
#include "storage/btree/page.h"

#include "core/util/crc32c.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_BYTES 256

static const uint32_t SIZES[] = {512, 1024, 4096, 16384, 65536};
#define N_SIZES (sizeof(SIZES) / sizeof(SIZES[0]))

/* A reference entry; value bytes are a function of (vseed, position). */
struct ref {
    uint8_t key[TS_KEY_BYTES_MAX];
    uint32_t klen;
    uint32_t vlen;
    uint64_t ovf;
    uint8_t vseed;
};

struct model {
    struct ref *e;
    uint32_t n;
    uint32_t cap;
    uint32_t page_bytes;
    uint64_t used; /* cells + slots */
};

static void fill_value(uint8_t *dst, uint32_t len, uint8_t vseed)
{
    for (uint32_t i = 0; i < len; i++) {
        dst[i] = (uint8_t)(vseed + i * 31u);
    }
}

static int key_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (al < bl ? -1 : (al > bl ? 1 : 0));
}

/* Reference search: first index >= key. */
static uint32_t ref_find(const struct model *m, const uint8_t *key, uint32_t klen, bool *found)
{
    uint32_t i = 0;
    while (i < m->n && key_cmp(m->e[i].key, m->e[i].klen, key, klen) < 0) {
        i++;
    }
    *found = i < m->n && key_cmp(m->e[i].key, m->e[i].klen, key, klen) == 0;
    return i;
}

static uint32_t random_key(struct ts_rand *r, uint32_t page_bytes, uint8_t *key)
{
    uint32_t max = btp_key_bytes_max(page_bytes);
    uint32_t len = ts_rand_chance(r, 1, 20) ? (uint32_t)ts_rand_below(r, max + 1)
                                            : (uint32_t)ts_rand_below(r, 12);
    for (uint32_t i = 0; i < len; i++) {
        key[i] = (uint8_t)('a' + ts_rand_below(r, 4)); /* small alphabet: shared prefixes */
    }
    return len;
}

static uint32_t random_vlen(struct ts_rand *r, uint32_t page_bytes, uint32_t klen)
{
    uint32_t inl = btp_leaf_inline_value_bytes_max(page_bytes, klen);
    switch (ts_rand_below(r, 4)) {
    case 0:
        return (uint32_t)ts_rand_below(r, 16);
    case 1:
        return (uint32_t)ts_rand_below(r, inl + 1);
    case 2:
        return inl + (uint32_t)ts_rand_below(r, 2); /* the inline/overflow boundary */
    default:
        return (uint32_t)ts_rand_below(r, TS_VALUE_BYTES_MAX + 1);
    }
}

/* The page holds exactly the model's entries, in order. */
static void check_page(const uint8_t *page, const struct model *m, uint64_t seed, int step)
{
    char err[ERR_BYTES] = "";
    uint32_t P = m->page_bytes;
    cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_LEAF, 7, err, sizeof(err)), 0,
                 "seed %" PRIu64 " P %u step %d: %s", seed, P, step, err);
    cr_assert_eq(btp_count(page), m->n, "seed %" PRIu64 " P %u step %d: count %u, model %u", seed,
                 P, step, btp_count(page), m->n);
    cr_assert_eq(btp_used_bytes(page, P), m->used, "seed %" PRIu64 " step %d", seed, step);
    uint8_t val[TS_BTREE_PAGE_BYTES_MAX];
    for (uint32_t i = 0; i < m->n; i++) {
        struct btp_cell c = btp_leaf_get(page, P, i);
        const struct ref *e = &m->e[i];
        cr_assert(c.key_len == e->klen && memcmp(c.key, e->key, e->klen) == 0,
                  "seed %" PRIu64 " step %d: key %u differs", seed, step, i);
        cr_assert_eq(c.value_len, e->vlen, "seed %" PRIu64 " step %d", seed, step);
        if (e->ovf != 0) {
            cr_assert(c.value == NULL && c.overflow_page == e->ovf, "seed %" PRIu64, seed);
        } else {
            fill_value(val, e->vlen, e->vseed);
            cr_assert(c.value != NULL && memcmp(c.value, val, e->vlen) == 0,
                      "seed %" PRIu64 " step %d: value %u differs", seed, step, i);
        }
    }
}

static void model_insert(struct model *m, uint32_t at, const struct ref *e)
{
    cr_assert(m->n < m->cap);
    memmove(&m->e[at + 1], &m->e[at], sizeof(*e) * (m->n - at));
    m->e[at] = *e;
    m->n++;
    m->used += btp_leaf_cell_bytes(m->page_bytes, e->klen, e->vlen) + BTP_SLOT_BYTES;
}

static void model_delete(struct model *m, uint32_t at)
{
    m->used -= btp_leaf_cell_bytes(m->page_bytes, m->e[at].klen, m->e[at].vlen) + BTP_SLOT_BYTES;
    memmove(&m->e[at], &m->e[at + 1], sizeof(m->e[0]) * (m->n - at - 1));
    m->n--;
}

/* Inserts e at its place through the page API; the result must match the model. */
static int leaf_put(uint8_t *page, struct model *m, const struct ref *e, uint64_t seed, int step)
{
    uint32_t P = m->page_bytes;
    uint8_t val[TS_BTREE_PAGE_BYTES_MAX];
    bool found;
    bool ref_found;
    uint32_t idx;
    btp_leaf_search(page, P, e->key, e->klen, &idx, &found);
    cr_assert_eq(idx, ref_find(m, e->key, e->klen, &ref_found), "seed %" PRIu64, seed);
    cr_assert_eq(found, ref_found, "seed %" PRIu64 " step %d", seed, step);
    uint32_t size = btp_leaf_cell_bytes(P, e->klen, e->vlen);
    bool inl = btp_leaf_value_inline(P, e->klen, e->vlen);
    if (inl) {
        fill_value(val, e->vlen, e->vseed);
    }
    int rv;
    if (found) {
        uint32_t old = btp_leaf_cell_bytes(P, m->e[idx].klen, m->e[idx].vlen);
        bool fits = m->used - old + size <= P - BTP_HDR_BYTES;
        rv = btp_leaf_set_value(page, P, idx, val, e->vlen, e->ovf);
        cr_assert_eq(rv, fits ? 0 : TS_EFULL, "seed %" PRIu64 " step %d set", seed, step);
        if (rv == 0) {
            model_delete(m, idx);
            model_insert(m, idx, e);
        }
        return rv;
    }
    bool fits = m->used + size + BTP_SLOT_BYTES <= P - BTP_HDR_BYTES;
    rv = btp_leaf_insert(page, P, idx, e->key, e->klen, val, e->vlen, e->ovf);
    cr_assert_eq(rv, fits ? 0 : TS_EFULL, "seed %" PRIu64 " step %d insert: %d", seed, step, rv);
    if (rv == 0) {
        model_insert(m, idx, e);
    }
    return rv;
}

static void random_entry(struct ts_rand *r, uint32_t P, struct ref *e)
{
    e->klen = random_key(r, P, e->key);
    e->vlen = random_vlen(r, P, e->klen);
    e->vseed = (uint8_t)ts_rand_u64(r);
    e->ovf = btp_leaf_value_inline(P, e->klen, e->vlen) ? 0 : 100 + ts_rand_below(r, 1000);
}

static void model_init(struct model *m, uint32_t P)
{
    m->page_bytes = P;
    m->cap = P / 2;
    m->n = 0;
    m->used = 0;
    m->e = calloc(m->cap, sizeof(*m->e));
    cr_assert_not_null(m->e);
}

static void run_leaf_model(uint64_t seed, uint32_t P, int steps)
{
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    uint8_t *page = malloc(P);
    struct model m;
    model_init(&m, P);
    btp_init(page, P, BTP_TYPE_LEAF, 7, 1);
    struct ref e;
    for (int step = 0; step < steps; step++) {
        uint64_t op = ts_rand_below(&r, 10);
        if (op < 6 || m.n == 0) {
            random_entry(&r, P, &e);
            leaf_put(page, &m, &e, seed, step);
        } else if (op < 8) {
            uint32_t at = (uint32_t)ts_rand_below(&r, m.n);
            e = m.e[at];
            e.vlen = random_vlen(&r, P, e.klen);
            e.vseed = (uint8_t)ts_rand_u64(&r);
            e.ovf = btp_leaf_value_inline(P, e.klen, e.vlen) ? 0 : 100 + ts_rand_below(&r, 9);
            leaf_put(page, &m, &e, seed, step);
        } else {
            uint32_t at = (uint32_t)ts_rand_below(&r, m.n);
            btp_leaf_delete(page, P, at);
            model_delete(&m, at);
        }
        if (P <= 4096 || step % 8 == 0 || step == steps - 1) {
            check_page(page, &m, seed, step);
        }
    }
    btp_seal(page, P);
    cr_assert_eq(btp_verify(page, P, BTP_TYPE_LEAF, 7, NULL, 0), 0, "seed %" PRIu64, seed);
    free(m.e);
    free(page);
}

Test(btree_page, leaf_random_ops_match_a_sorted_reference)
{
    for (uint64_t seed = 1; seed <= 12; seed++) {
        for (size_t s = 0; s < N_SIZES; s++) {
            run_leaf_model(seed * 1000 + s, SIZES[s], SIZES[s] >= 16384 ? 1500 : 1200);
        }
    }
}

/* Fills a leaf with keys k0000.. and values of vlen bytes until it is full. */
static uint32_t fill_leaf(uint8_t *page, uint32_t P, uint32_t vlen)
{
    uint8_t val[TS_BTREE_PAGE_BYTES_MAX];
    fill_value(val, vlen, 9);
    uint32_t n = 0;
    for (;;) {
        char key[16];
        int klen = snprintf(key, sizeof(key), "k%06u", n);
        if (btp_leaf_insert(page, P, n, key, (uint32_t)klen, val, vlen, 0) != 0) {
            return n;
        }
        n++;
    }
}

Test(btree_page, compaction_reclaims_garbage)
{
    uint32_t P = 4096;
    uint8_t page[4096];
    btp_init(page, P, BTP_TYPE_LEAF, 9, 1);
    uint32_t n = fill_leaf(page, P, 40);
    cr_assert(n > 10);
    for (uint32_t i = n - 2; i >= 1 && i < n; i -= 2) { /* every other cell but the edges */
        btp_leaf_delete(page, P, i);
    }
    uint32_t free_bytes = btp_free_bytes(page, P);
    cr_assert(free_bytes > 200, "deletes freed %u bytes", free_bytes);
    cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_LEAF, 9, NULL, 0), 0);
    /* A cell larger than the contiguous gap but within the free bytes. */
    uint8_t val[512];
    fill_value(val, sizeof(val), 3);
    uint32_t vlen = free_bytes - BTP_SLOT_BYTES - BTP_LEAF_CELL_HDR_BYTES - 7;
    vlen = vlen > btp_leaf_inline_value_bytes_max(P, 7) ? 100 : vlen;
    uint32_t idx;
    bool found;
    btp_leaf_search(page, P, "k000001x", 8, &idx, &found);
    cr_assert_eq(btp_leaf_insert(page, P, idx, "k000001x", 8, val, vlen, 0), 0);
    cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_LEAF, 9, NULL, 0), 0);
    btp_compact(page, P);
    cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_LEAF, 9, NULL, 0), 0);
    cr_assert_eq(btp_free_bytes(page, P), P - BTP_HDR_BYTES - btp_used_bytes(page, P));
    struct btp_cell c = btp_leaf_get(page, P, idx);
    cr_assert(c.key_len == 8 && memcmp(c.key, "k000001x", 8) == 0);
    cr_assert(c.value_len == vlen && memcmp(c.value, val, vlen) == 0);
}

/* Leaf split over random contents: a valid pair, the union is the original, the
 * separator orders them, and the cell that did not fit fits in its half. */
static void run_leaf_split(uint64_t seed, uint32_t P)
{
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    uint8_t *page = malloc(P);
    uint8_t *copy = malloc(P);
    uint8_t *right = malloc(P);
    struct model m;
    model_init(&m, P);
    btp_init(page, P, BTP_TYPE_LEAF, 5, 1);
    struct ref e;
    int step = 0;
    for (;;) { /* insert new keys until one does not fit */
        random_entry(&r, P, &e);
        bool dup;
        ref_find(&m, e.key, e.klen, &dup);
        if (!dup && leaf_put(page, &m, &e, seed, step++) != 0) {
            break;
        }
    }
    cr_assert(m.n >= 2, "seed %" PRIu64, seed);
    memcpy(copy, page, P);
    btp_init(right, P, BTP_TYPE_LEAF, 6, 1);
    uint8_t sep[TS_KEY_BYTES_MAX];
    uint32_t sep_len;
    uint64_t sep_bytes;
    btp_split(page, right, P, sep, &sep_len, &sep_bytes);
    char err[ERR_BYTES] = "";
    cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_LEAF, 5, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(btp_check_structure(right, P, BTP_TYPE_LEAF, 6, err, sizeof(err)), 0, "%s", err);
    uint32_t nl = btp_count(page);
    uint32_t nr = btp_count(right);
    cr_assert(nl >= 1 && nr >= 1 && nl + nr == m.n, "seed %" PRIu64, seed);
    for (uint32_t i = 0; i < m.n; i++) {
        struct btp_cell a = btp_leaf_get(copy, P, i);
        struct btp_cell b = i < nl ? btp_leaf_get(page, P, i) : btp_leaf_get(right, P, i - nl);
        cr_assert(a.key_len == b.key_len && memcmp(a.key, b.key, a.key_len) == 0);
        cr_assert(a.value_len == b.value_len && a.overflow_page == b.overflow_page);
        cr_assert((a.value == NULL) == (b.value == NULL));
        cr_assert(a.value == NULL || memcmp(a.value, b.value, a.value_len) == 0);
        int c = key_cmp(a.key, a.key_len, sep, sep_len);
        cr_assert(i < nl ? c < 0 : c >= 0, "seed %" PRIu64 ": separator misorders %u", seed, i);
    }
    uint8_t val[TS_BTREE_PAGE_BYTES_MAX];
    if (e.ovf == 0) {
        fill_value(val, e.vlen, e.vseed);
    }
    uint8_t *half = key_cmp(e.key, e.klen, sep, sep_len) < 0 ? page : right;
    uint32_t idx;
    bool found;
    btp_leaf_search(half, P, e.key, e.klen, &idx, &found);
    cr_assert(!found);
    cr_assert_eq(btp_leaf_insert(half, P, idx, e.key, e.klen, val, e.vlen, e.ovf), 0,
                 "seed %" PRIu64 " P %u: the pending cell fits after the split", seed, P);
    free(m.e);
    free(page);
    free(copy);
    free(right);
}

Test(btree_page, leaf_split_keeps_every_cell_and_makes_room)
{
    for (uint64_t seed = 1; seed <= 40; seed++) {
        for (size_t s = 0; s < N_SIZES; s++) {
            run_leaf_split(seed * 7919 + s, SIZES[s]);
        }
    }
}

/* A branch with n random sorted keys; children are 100 + child index. */
static uint32_t build_branch(struct ts_rand *r, uint8_t *page, uint32_t P, uint32_t want)
{
    btp_init(page, P, BTP_TYPE_BRANCH, 3, 1);
    btp_set_link(page, 100);
    uint8_t key[TS_KEY_BYTES_MAX];
    for (uint32_t tries = 0; tries < 4 * want && btp_count(page) < want; tries++) {
        uint32_t klen = random_key(r, P, key);
        uint32_t c = btp_branch_search(page, P, key, klen);
        if (c > 0) {
            struct btp_cell prev = btp_branch_get(page, P, c - 1);
            if (key_cmp(prev.key, prev.key_len, key, klen) == 0) {
                continue;
            }
        }
        int rv = btp_branch_insert(page, P, c, key, klen, 1000 + ts_rand_below(r, 1000), c);
        cr_assert(rv == 0 || rv == TS_EFULL);
        if (rv == TS_EFULL) {
            break;
        }
    }
    uint32_t n = btp_count(page);
    for (uint32_t i = 0; i <= n; i++) {
        btp_branch_set_child(page, P, i, 100 + i);
    }
    return n;
}

Test(btree_page, branch_search_returns_the_covering_child)
{
    for (uint64_t seed = 1; seed <= 30; seed++) {
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        uint32_t P = SIZES[seed % N_SIZES];
        uint8_t *page = malloc(P);
        uint32_t n = build_branch(&r, page, P, 200);
        char err[ERR_BYTES] = "";
        cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_BRANCH, 3, err, sizeof(err)), 0,
                     "seed %" PRIu64 ": %s", seed, err);
        uint8_t key[TS_KEY_BYTES_MAX];
        for (int probe = 0; probe < 300; probe++) {
            uint32_t klen = random_key(&r, P, key);
            uint32_t expect = 0; /* keys <= probe, by linear scan */
            while (expect < n) {
                struct btp_cell c = btp_branch_get(page, P, expect);
                if (key_cmp(c.key, c.key_len, key, klen) > 0) {
                    break;
                }
                expect++;
            }
            uint32_t got = btp_branch_search(page, P, key, klen);
            cr_assert_eq(got, expect, "seed %" PRIu64 " probe %d", seed, probe);
            cr_assert_eq(btp_branch_child(page, P, got), 100 + got, "seed %" PRIu64, seed);
        }
        free(page);
    }
}

Test(btree_page, branch_split_moves_the_middle_key_up)
{
    for (uint64_t seed = 1; seed <= 30; seed++) {
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        uint32_t P = SIZES[seed % N_SIZES];
        uint8_t *page = malloc(P);
        uint8_t *copy = malloc(P);
        uint8_t *right = malloc(P);
        uint32_t n = build_branch(&r, page, P, 100000);
        cr_assert(n >= 3, "seed %" PRIu64 ": %u keys", seed, n);
        memcpy(copy, page, P);
        btp_init(right, P, BTP_TYPE_BRANCH, 4, 1);
        uint8_t sep[TS_KEY_BYTES_MAX];
        uint32_t sep_len;
        uint64_t sep_bytes;
        btp_split(page, right, P, sep, &sep_len, &sep_bytes);
        char err[ERR_BYTES] = "";
        cr_assert_eq(btp_check_structure(page, P, BTP_TYPE_BRANCH, 3, err, sizeof(err)), 0, "%s",
                     err);
        cr_assert_eq(btp_check_structure(right, P, BTP_TYPE_BRANCH, 4, err, sizeof(err)), 0, "%s",
                     err);
        uint32_t nl = btp_count(page);
        uint32_t nr = btp_count(right);
        cr_assert(nl >= 1 && nr >= 1 && nl + nr + 1 == n, "seed %" PRIu64, seed);
        struct btp_cell mid = btp_branch_get(copy, P, nl);
        cr_assert(mid.key_len == sep_len && memcmp(mid.key, sep, sep_len) == 0);
        cr_assert_eq(btp_link(right), mid.child);
        for (uint32_t i = 0; i <= nl; i++) {
            cr_assert_eq(btp_branch_child(page, P, i), btp_branch_child(copy, P, i));
        }
        for (uint32_t i = 0; i <= nr; i++) {
            cr_assert_eq(btp_branch_child(right, P, i), btp_branch_child(copy, P, nl + 1 + i));
        }
        for (uint32_t i = 0; i < nr; i++) {
            struct btp_cell a = btp_branch_get(right, P, i);
            struct btp_cell b = btp_branch_get(copy, P, nl + 1 + i);
            cr_assert(a.key_len == b.key_len && memcmp(a.key, b.key, a.key_len) == 0);
            cr_assert(key_cmp(sep, sep_len, a.key, a.key_len) < 0);
        }
        for (uint32_t i = 0; i < nl; i++) {
            struct btp_cell a = btp_branch_get(page, P, i);
            cr_assert(key_cmp(a.key, a.key_len, sep, sep_len) < 0);
        }
        btp_branch_delete(right, P, 0);
        cr_assert_eq(btp_check_structure(right, P, BTP_TYPE_BRANCH, 4, NULL, 0), 0);
        cr_assert_eq(btp_count(right), nr - 1);
        free(page);
        free(copy);
        free(right);
    }
}

/* A sealed leaf with some inline and some overflow values. */
static void sealed_leaf(uint8_t *page, uint32_t P)
{
    btp_init(page, P, BTP_TYPE_LEAF, 11, 4);
    uint8_t val[64];
    fill_value(val, sizeof(val), 1);
    cr_assert_eq(btp_leaf_insert(page, P, 0, "alpha", 5, val, 10, 0), 0);
    cr_assert_eq(btp_leaf_insert(page, P, 1, "beta", 4, NULL, TS_VALUE_BYTES_MAX, 77), 0);
    cr_assert_eq(btp_leaf_insert(page, P, 2, "gamma", 5, val, 30, 0), 0);
    cr_assert_eq(btp_leaf_insert(page, P, 3, "zeta", 4, val, 0, 0), 0);
    btp_leaf_delete(page, P, 2); /* leaves garbage */
    btp_seal(page, P);
    cr_assert_eq(btp_verify(page, P, BTP_TYPE_LEAF, 11, NULL, 0), 0);
}

Test(btree_page, every_bit_flip_fails_verify)
{
    uint32_t sizes[] = {512, 4096};
    for (size_t s = 0; s < 2; s++) {
        uint32_t P = sizes[s];
        uint8_t page[4096];
        sealed_leaf(page, P);
        for (uint32_t bit = 0; bit < P * 8; bit++) {
            page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            char err[ERR_BYTES] = "";
            cr_assert_eq(btp_verify(page, P, BTP_TYPE_LEAF, 11, err, sizeof(err)), TS_ECORRUPT,
                         "P %u bit %u", P, bit);
            cr_assert(strstr(err, "offset") != NULL, "%s", err);
            page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        cr_assert_eq(btp_verify(page, P, BTP_TYPE_LEAF, 11, NULL, 0), 0);
    }
}

/* Recomputes the CRC after a deliberate change, so only the structure is wrong. */
static void reseal_raw(uint8_t *page, uint32_t P)
{
    memset(page, 0, 4);
    uint32_t crc = ts_crc32c(0, page, P);
    memcpy(page, &crc, 4);
}

static void store16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint32_t load16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

/* Damages a copy of a sealed leaf with fix(), re-CRCs it and expects a reason. */
static void expect_corrupt(void (*fix)(uint8_t *), const char *what, const char *reason)
{
    uint32_t P = 4096;
    uint8_t page[4096];
    sealed_leaf(page, P);
    fix(page);
    reseal_raw(page, P);
    char err[ERR_BYTES] = "";
    cr_assert_eq(btp_verify(page, P, BTP_TYPE_LEAF, 11, err, sizeof(err)), TS_ECORRUPT, "%s", what);
    cr_assert(strstr(err, "offset") != NULL, "%s: %s", what, err);
    cr_assert(strstr(err, reason) != NULL, "%s: %s", what, err);
}

static void slot_out_of_page(uint8_t *p)
{
    store16(p + 40, 5000);
}

static void slots_overlap(uint8_t *p)
{
    store16(p + 42, load16(p + 40) + 2);
}

static void slots_same_cell(uint8_t *p)
{
    store16(p + 42, load16(p + 40));
}

static void keys_unsorted(uint8_t *p)
{
    uint32_t a = load16(p + 40);
    store16(p + 40, load16(p + 42));
    store16(p + 42, a);
}

static void count_too_big(uint8_t *p)
{
    store16(p + 6, 100);
    store16(p + 24, 40 + 200);
}

static void count_without_slots_end(uint8_t *p)
{
    store16(p + 6, 100);
}

static void garbage_off_by_one(uint8_t *p)
{
    p[28]++;
}

static void key_len_past_end(uint8_t *p)
{
    store16(p + load16(p + 40), 900);
}

static void overflow_flag_on_small_value(uint8_t *p)
{
    p[load16(p + 40) + 2] |= 1;
}

static void cells_start_before_slots(uint8_t *p)
{
    store16(p + 26, 44);
}

Test(btree_page, structural_damage_under_a_valid_crc_fails_with_a_reason)
{
    expect_corrupt(slot_out_of_page, "slot out of page", "outside the cell area");
    expect_corrupt(slots_overlap, "overlapping cells", "");
    expect_corrupt(slots_same_cell, "two slots, one cell", "overlaps");
    expect_corrupt(keys_unsorted, "unsorted keys", "not above the previous key");
    expect_corrupt(count_too_big, "count too big", "outside the cell area");
    expect_corrupt(count_without_slots_end, "count vs slots_end", "does not match count");
    expect_corrupt(garbage_off_by_one, "garbage", "garbage");
    expect_corrupt(key_len_past_end, "key_len", "past the page end");
    expect_corrupt(overflow_flag_on_small_value, "overflow flag", "belongs inline");
    expect_corrupt(cells_start_before_slots, "cells_start", "cells_start");
    /* Misdirected pages and wrong types fail even with a correct CRC. */
    uint8_t page[4096];
    sealed_leaf(page, 4096);
    char err[ERR_BYTES] = "";
    cr_assert_eq(btp_verify(page, 4096, BTP_TYPE_LEAF, 12, err, sizeof(err)), TS_ECORRUPT);
    cr_assert(strstr(err, "misdirected") != NULL, "%s", err);
    cr_assert_eq(btp_verify(page, 4096, BTP_TYPE_BRANCH, 11, err, sizeof(err)), TS_ECORRUPT);
    cr_assert(strstr(err, "expected 2") != NULL, "%s", err);
}

static struct btp_meta meta_of(uint64_t ckpt, uint32_t P, const uint8_t *user, uint32_t len)
{
    struct btp_meta m = {0};
    m.checkpoint_id = ckpt;
    m.page_bytes = P;
    m.root_page = 7;
    m.page_count = 100 + ckpt;
    m.freelist_head = 9;
    m.height = 2;
    m.user = user;
    m.user_len = len;
    return m;
}

Test(btree_page, meta_round_trip_and_choice)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        uint32_t P = SIZES[s];
        uint8_t *m0 = malloc(P);
        uint8_t *m1 = malloc(P);
        uint8_t user[64];
        fill_value(user, sizeof(user), 5);
        struct btp_meta a = meta_of(4, P, user, sizeof(user));
        struct btp_meta b = meta_of(5, P, user, 10);
        cr_assert_eq(btp_meta_encode(m0, P, &a), 0);
        cr_assert_eq(btp_meta_encode(m1, P, &b), 0);
        uint32_t peeked;
        cr_assert_eq(btp_meta_peek_page_bytes(m1, 512, &peeked), 0);
        cr_assert_eq(peeked, P);
        struct btp_meta got;
        uint64_t which;
        char err[2 * ERR_BYTES] = "";
        cr_assert_eq(btp_meta_choose(m0, m1, P, &got, &which, err, sizeof(err)), 0, "%s", err);
        cr_assert(which == 1 && got.checkpoint_id == 5 && got.page_count == 105);
        cr_assert(got.root_page == 7 && got.freelist_head == 9 && got.height == 2);
        cr_assert(got.user_len == 10 && memcmp(got.user, user, 10) == 0);
        /* A torn newer meta falls back to the older one. */
        memset(m1 + P / 2, 0, P / 2);
        m1[P / 2] = 1;
        cr_assert_eq(btp_meta_choose(m0, m1, P, &got, &which, err, sizeof(err)), 0);
        cr_assert(which == 0 && got.checkpoint_id == 4 && got.user_len == 64);
        cr_assert(memcmp(got.user, user, 64) == 0);
        /* Both bad. */
        m0[100] ^= 1;
        cr_assert_eq(btp_meta_choose(m0, m1, P, &got, &which, err, sizeof(err)), TS_ECORRUPT);
        cr_assert(strstr(err, "no valid meta page") != NULL && strstr(err, "crc32c") != NULL, "%s",
                  err);
        /* The largest user blob fits; one byte more is TS_ETOOBIG. */
        uint8_t *big = calloc(1, P);
        struct btp_meta c = meta_of(8, P, big, P - BTP_META_USER_OFFSET);
        cr_assert_eq(btp_meta_encode(m0, P, &c), 0);
        cr_assert_eq(btp_meta_decode(m0, P, 0, &got, err, sizeof(err)), 0, "%s", err);
        c.user_len++;
        cr_assert_eq(btp_meta_encode(m0, P, &c), TS_ETOOBIG);
        free(big);
        free(m0);
        free(m1);
    }
}

Test(btree_page, meta_rejects_wrong_parity_and_inconsistent_fields)
{
    uint32_t P = 4096;
    uint8_t page[4096];
    struct btp_meta a = meta_of(6, P, NULL, 0);
    cr_assert_eq(btp_meta_encode(page, P, &a), 0);
    struct btp_meta got;
    char err[ERR_BYTES] = "";
    page[16] = 7; /* checkpoint 7 in meta page 0 */
    reseal_raw(page, P);
    cr_assert_eq(btp_meta_decode(page, P, 0, &got, err, sizeof(err)), TS_ECORRUPT);
    cr_assert(strstr(err, "other meta page") != NULL, "%s", err);
    cr_assert_eq(btp_meta_encode(page, P, &a), 0);
    page[56] = 200; /* root beyond the page count */
    reseal_raw(page, P);
    cr_assert_eq(btp_meta_decode(page, P, 0, &got, err, sizeof(err)), TS_ECORRUPT);
    cr_assert(strstr(err, "offset 64") != NULL, "%s", err);
    cr_assert_eq(btp_meta_encode(page, P, &a), 0);
    page[52] = 0; /* page size 4096 -> 4096 & ~0xff = 4096: change the high byte */
    page[53] = 0x20;
    reseal_raw(page, P);
    cr_assert_eq(btp_meta_decode(page, P, 0, &got, err, sizeof(err)), TS_ECORRUPT);
    cr_assert(strstr(err, "page size") != NULL, "%s", err);
    uint32_t peeked;
    cr_assert_eq(btp_meta_peek_page_bytes(page, 512, &peeked), 0);
    cr_assert_eq(peeked, 8192);
    page[40] = 'X';
    cr_assert_eq(btp_meta_peek_page_bytes(page, 512, &peeked), TS_ECORRUPT);
}

Test(btree_page, overflow_chain_and_freelist_round_trip)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        uint32_t P = SIZES[s];
        uint32_t cap = btp_overflow_capacity(P);
        uint32_t vlen = 3 * cap + 17;
        uint8_t *value = malloc(vlen);
        uint8_t *pages = malloc((size_t)P * 4);
        fill_value(value, vlen, 77);
        for (uint32_t i = 0; i < 4; i++) { /* pages 10..13 */
            uint8_t *pg = pages + (size_t)P * i;
            uint32_t len = i < 3 ? cap : 17;
            btp_init(pg, P, BTP_TYPE_OVERFLOW, 10 + i, 3);
            btp_overflow_put(pg, P, value + (size_t)cap * i, len, i < 3 ? 11 + i : 0);
            btp_seal(pg, P);
        }
        uint64_t next = 10;
        uint32_t got = 0;
        while (next != 0) {
            uint8_t *pg = pages + (size_t)P * (next - 10);
            char err[ERR_BYTES] = "";
            cr_assert_eq(btp_verify(pg, P, BTP_TYPE_OVERFLOW, next, err, sizeof(err)), 0, "%s",
                         err);
            uint32_t len;
            const uint8_t *data = btp_overflow_get(pg, P, &len);
            cr_assert(got + len <= vlen && memcmp(data, value + got, len) == 0);
            got += len;
            next = btp_link(pg);
        }
        cr_assert_eq(got, vlen, "P %u", P);
        uint8_t *fl = pages;
        btp_init(fl, P, BTP_TYPE_FREELIST, 20, 3);
        btp_set_link(fl, 21);
        uint32_t n = 0;
        while (btp_freelist_push(fl, P, 100 + n) == 0) {
            n++;
        }
        cr_assert_eq(n, btp_freelist_capacity(P));
        btp_seal(fl, P);
        cr_assert_eq(btp_verify(fl, P, BTP_TYPE_FREELIST, 20, NULL, 0), 0);
        for (uint32_t i = 0; i < n; i++) {
            cr_assert_eq(btp_freelist_get(fl, P, i), 100 + i);
        }
        cr_assert_eq(btp_link(fl), 21);
        free(value);
        free(pages);
    }
}

Test(btree_page, every_page_type_round_trips_at_every_size)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        uint32_t P = SIZES[s];
        uint8_t *page = malloc(P);
        sealed_leaf(page, P);
        struct btp_cell c = btp_leaf_get(page, P, 1);
        cr_assert(c.value == NULL && c.overflow_page == 77 && c.value_len == TS_VALUE_BYTES_MAX);
        cr_assert_eq(btp_checkpoint_id(page), 4);
        btp_relabel(page, 12, 5);
        btp_seal(page, P);
        cr_assert_eq(btp_verify(page, P, BTP_TYPE_LEAF, 12, NULL, 0), 0);
        cr_assert_eq(btp_checkpoint_id(page), 5);
        /* Empty pages of each slotted type (cells_start = P, 0 encodes 65536). */
        btp_init(page, P, BTP_TYPE_LEAF, 2, 1);
        btp_seal(page, P);
        cr_assert_eq(btp_verify(page, P, BTP_TYPE_ANY, 2, NULL, 0), 0);
        cr_assert_eq(btp_free_bytes(page, P), P - BTP_HDR_BYTES);
        btp_init(page, P, BTP_TYPE_BRANCH, 2, 1);
        btp_set_link(page, 3);
        cr_assert_eq(btp_branch_insert(page, P, 0, "m", 1, 4, 0), 0);
        btp_seal(page, P);
        cr_assert_eq(btp_verify(page, P, BTP_TYPE_BRANCH, 2, NULL, 0), 0);
        cr_assert_eq(btp_branch_child(page, P, btp_branch_search(page, P, "a", 1)), 3);
        cr_assert_eq(btp_branch_child(page, P, btp_branch_search(page, P, "m", 1)), 4);
        cr_assert_eq(btp_branch_child(page, P, btp_branch_search(page, P, "z", 1)), 4);
        free(page);
    }
}

Test(btree_page, key_and_inline_value_limits)
{
    uint32_t P = 4096;
    cr_assert_eq(btp_key_bytes_max(P), TS_KEY_BYTES_MAX);
    cr_assert_eq(btp_key_bytes_max(512), 139);
    uint8_t key[TS_KEY_BYTES_MAX + 1];
    memset(key, 'k', sizeof(key));
    uint8_t leaf[4096];
    uint8_t branch[4096];
    btp_init(leaf, P, BTP_TYPE_LEAF, 2, 1);
    btp_init(branch, P, BTP_TYPE_BRANCH, 3, 1);
    btp_set_link(branch, 4);
    for (uint32_t i = 0; i < 3; i++) { /* three longest keys fit either page */
        key[TS_KEY_BYTES_MAX - 1] = (uint8_t)('a' + i);
        cr_assert_eq(btp_leaf_insert(leaf, P, i, key, TS_KEY_BYTES_MAX, NULL, 5000, 9), 0);
        cr_assert_eq(btp_branch_insert(branch, P, i, key, TS_KEY_BYTES_MAX, 5 + i, i), 0);
    }
    cr_assert_eq(btp_check_structure(leaf, P, BTP_TYPE_LEAF, 2, NULL, 0), 0);
    cr_assert_eq(btp_check_structure(branch, P, BTP_TYPE_BRANCH, 3, NULL, 0), 0);
    cr_assert_eq(btp_leaf_insert(leaf, P, 0, key, TS_KEY_BYTES_MAX + 1, "", 0, 0), TS_ETOOBIG);
    cr_assert_eq(btp_branch_insert(branch, P, 0, key, TS_KEY_BYTES_MAX + 1, 9, 0), TS_ETOOBIG);
    cr_assert_eq(btp_leaf_insert(leaf, P, 0, "a", 1, NULL, TS_VALUE_BYTES_MAX + 1, 9), TS_ETOOBIG);
    /* The inline maximum stays inline; one byte more goes to overflow. */
    uint32_t max = btp_leaf_inline_value_bytes_max(P, 3);
    cr_assert_eq(max, btp_cell_bytes_max(P) - BTP_LEAF_CELL_HDR_BYTES - 3);
    cr_assert(3 * (BTP_LEAF_CELL_HDR_BYTES + 3 + max + BTP_SLOT_BYTES) <= P - BTP_HDR_BYTES);
    uint8_t val[4096];
    fill_value(val, sizeof(val), 2);
    btp_init(leaf, P, BTP_TYPE_LEAF, 2, 1);
    cr_assert_eq(btp_leaf_insert(leaf, P, 0, "aaa", 3, val, max, 0), 0);
    cr_assert_eq(btp_leaf_insert(leaf, P, 1, "bbb", 3, NULL, max + 1, 42), 0);
    cr_assert_eq(btp_leaf_insert(leaf, P, 2, "ccc", 3, val, max, 0), 0);
    struct btp_cell a = btp_leaf_get(leaf, P, 0);
    struct btp_cell b = btp_leaf_get(leaf, P, 1);
    cr_assert(a.value != NULL && a.value_len == max && memcmp(a.value, val, max) == 0);
    cr_assert(b.value == NULL && b.value_len == max + 1 && b.overflow_page == 42);
    /* Replacing switches between inline and overflow both ways. */
    cr_assert_eq(btp_leaf_set_value(leaf, P, 1, val, 100, 0), 0);
    cr_assert_eq(btp_leaf_set_value(leaf, P, 0, NULL, max + 1, 43), 0);
    cr_assert(btp_leaf_get(leaf, P, 0).overflow_page == 43);
    cr_assert(memcmp(btp_leaf_get(leaf, P, 1).value, val, 100) == 0);
    btp_seal(leaf, P);
    cr_assert_eq(btp_verify(leaf, P, BTP_TYPE_LEAF, 2, NULL, 0), 0);
}

Test(btree_page, index_out_of_range_asserts, .signal = SIGABRT)
{
    uint8_t page[512];
    btp_init(page, 512, BTP_TYPE_LEAF, 2, 1);
    btp_leaf_get(page, 512, 0);
}
