/* The shared fixtures of the storage/btree unit tests: see btree_testenv.h. */
#include "btree_testenv.h"

#include "core/util/err.h"
#include "storage/btree/btree_check.h"
#include "storage/btree/page.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the model */

int bte_key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int key_cmp_sort(const void *a, const void *b)
{
    const struct bte_key *x = a, *y = b;
    return bte_key_cmp(x->b, x->len, y->b, y->len);
}

uint32_t bte_random_key(const struct bte_shape *shape, struct ts_rand *r, uint8_t *out)
{
    static const uint8_t alphabet[] = {0x00, 'a', 'b', 'c', 0xff};
    uint32_t base = shape->key_len_base;
    uint32_t len = base + (uint32_t)ts_rand_below(r, 6);
    if (ts_rand_chance(r, 1, 20)) {
        len = 1 + (uint32_t)ts_rand_below(r, 3);
    } else if (ts_rand_chance(r, 1, 10)) {
        len = base + 6 + (uint32_t)ts_rand_below(r, shape->key_len_max - base - 5);
    }
    for (uint32_t b = 0; b < len; b++) {
        out[b] = alphabet[ts_rand_below(r, sizeof(alphabet))];
    }
    return len;
}

void bte_model_init(struct bte_model *m, struct ts_rand *r, uint32_t want, uint32_t big_one_in,
                    const struct bte_shape *shape)
{
    memset(m, 0, sizeof(*m));
    cr_assert_leq(want, BTE_KEYS_MAX);
    cr_assert_leq(shape->key_len_max, BTE_KEY_BYTES_MAX);
    cr_assert_leq(shape->key_len_base + 6, shape->key_len_max);
    m->shape = *shape;
    for (uint32_t i = 0; i < want; i++) {
        m->key[i].len = (uint8_t)bte_random_key(shape, r, m->key[i].b);
    }
    qsort(m->key, want, sizeof(m->key[0]), key_cmp_sort);
    uint32_t n = 0;
    for (uint32_t i = 0; i < want; i++) {
        if (n == 0 || key_cmp_sort(&m->key[n - 1], &m->key[i]) != 0) {
            m->key[n++] = m->key[i];
        }
    }
    m->n = n;
    m->next_ver = 1;
    m->big_one_in = big_one_in;
}

static uint64_t mix(uint64_t x)
{
    return ts_rand_splitmix(&x);
}

uint32_t bte_value_len(const struct bte_model *m, uint32_t slot, uint32_t ver)
{
    uint64_t h = mix((uint64_t)slot << 32 | ver);
    if (m->big_one_in != 0 && h % m->big_one_in == 0) {
        return BTE_BIG_MIN + (uint32_t)((h >> 20) % (BTE_BIG_MAX - BTE_BIG_MIN + 1));
    }
    return (uint32_t)((h >> 20) % (m->shape.value_small_max + 1));
}

void bte_value_fill(uint32_t slot, uint32_t ver, uint8_t *buf, uint32_t len)
{
    uint64_t h = mix(((uint64_t)slot << 32 | ver) ^ 0x5eedull);
    for (uint32_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((h >> (8 * (i % 8))) + i / 8);
    }
}

uint64_t bte_slot_bytes(const struct bte_model *m, const uint32_t *ver, uint32_t slot)
{
    return ver[slot] != 0 ? m->key[slot].len + (uint64_t)bte_value_len(m, slot, ver[slot]) : 0;
}

uint64_t bte_range_count(const struct bte_model *m, const uint32_t *ver, uint32_t a, uint32_t b)
{
    cr_assert_leq(b, m->n);
    uint64_t n = 0;
    for (uint32_t s = a; s < b; s++) {
        n += ver[s] != 0;
    }
    return n;
}

uint64_t bte_range_bytes(const struct bte_model *m, const uint32_t *ver, uint32_t a, uint32_t b)
{
    cr_assert_leq(b, m->n);
    uint64_t sum = 0;
    for (uint32_t s = a; s < b; s++) {
        sum += bte_slot_bytes(m, ver, s);
    }
    return sum;
}

/* ------------------------------------------------------------------ the environment */

void bte_env_open(struct bte_env *e)
{
    char err[256] = "";
    struct btree_config cfg = {
        .path = "tree", .page_bytes = e->page_bytes, .cache_bytes = e->cache_bytes};
    int rc = btree_open(&cfg, e->disk, ts_allocator_default(), &e->t, err, sizeof(err));
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": open: %s %s", e->seed, ts_errname(rc), err);
}

void bte_env_init(struct bte_env *e, uint64_t seed, uint32_t page_bytes, uint64_t cache_bytes)
{
    *e = (struct bte_env){.seed = seed, .page_bytes = page_bytes, .cache_bytes = cache_bytes};
    cr_assert_eq(disk_sim_create(seed, ts_allocator_default(), &e->sim), 0);
    e->disk = disk_sim_disk(e->sim);
    disk_sim_set_metadata_durable(e->sim, true);
    bte_env_open(e);
}

void bte_env_reopen(struct bte_env *e)
{
    btree_close(e->t);
    bte_env_open(e);
}

void bte_env_fini(struct bte_env *e)
{
    btree_close(e->t);
    disk_destroy(e->disk);
}

struct btree_stats bte_stats(const struct bte_env *e)
{
    struct btree_stats st;
    btree_get_stats(e->t, &st);
    return st;
}

void bte_checkpoint(struct bte_env *e, const void *user, uint32_t user_len)
{
    int rc = btree_checkpoint(e->t, user, user_len);
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": checkpoint: %s", e->seed, ts_errname(rc));
}

uint64_t bte_overflow_pages(const struct bte_env *e, const struct bte_model *m, const uint32_t *ver)
{
    uint64_t pages = 0, cap = btp_overflow_capacity(e->page_bytes);
    for (uint32_t s = 0; s < m->n; s++) {
        uint32_t len = ver[s] != 0 ? bte_value_len(m, s, ver[s]) : 0;
        if (ver[s] != 0 && !btp_leaf_value_inline(e->page_bytes, m->key[s].len, len)) {
            pages += (len + cap - 1) / cap;
        }
    }
    return pages;
}

void bte_check_file(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                    uint32_t checks)
{
    struct btree_stats st = bte_stats(e);
    btree_close(e->t);
    struct btree_check_report rep;
    char err[512] = "";
    int rc = btree_check("tree", e->disk, ts_allocator_default(), &rep, err, sizeof(err));
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": btree_check: %s %s", e->seed, ts_errname(rc), err);
    cr_assert_eq(rep.keys, bte_range_count(m, ver, 0, m->n), "seed %" PRIu64 ": btree_check keys",
                 e->seed);
    cr_assert_eq(rep.key_bytes + rep.value_bytes, bte_range_bytes(m, ver, 0, m->n),
                 "seed %" PRIu64 ": btree_check bytes", e->seed);
    if (checks & BTE_CHECK_PAGE_COUNT) {
        cr_assert_eq(rep.page_count, st.page_count, "seed %" PRIu64 ": page count", e->seed);
    }
    if (checks & BTE_CHECK_OVERFLOW_PAGES) {
        cr_assert_eq(rep.overflow_pages, bte_overflow_pages(e, m, ver),
                     "seed %" PRIu64 ": overflow pages", e->seed);
    }
    cr_assert_eq(rep.free_pages, st.free_pages,
                 "seed %" PRIu64 ": the chain lists %" PRIu64 " pages, %" PRIu64 " free in memory",
                 e->seed, rep.free_pages, st.free_pages);
    cr_assert_eq(rep.freelist_pages, st.freelist_pages, "seed %" PRIu64 ": chain pages", e->seed);
    bte_env_open(e);
}

/* ------------------------------------------------------------------ changes and checks */

void bte_put_slot(struct bte_env *e, struct bte_model *m, uint32_t slot)
{
    uint32_t v = m->next_ver++;
    uint32_t len = bte_value_len(m, slot, v);
    bte_value_fill(slot, v, e->want, len);
    int rc = btree_put(e->t, m->key[slot].b, m->key[slot].len, e->want, len);
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": put slot %u (%u bytes): %s", e->seed, slot, len,
                 ts_errname(rc));
    m->ver[slot] = v;
}

void bte_delete_slot(struct bte_env *e, struct bte_model *m, uint32_t slot)
{
    int rc = btree_delete(e->t, m->key[slot].b, m->key[slot].len);
    cr_assert_eq(rc, m->ver[slot] != 0 ? 0 : TS_ENOTFOUND, "seed %" PRIu64 ": delete slot %u: %s",
                 e->seed, slot, ts_errname(rc));
    m->ver[slot] = 0;
}

void bte_check_totals(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                      uint64_t live, const char *when)
{
    uint64_t count = 0, bytes = 0;
    cr_assert_eq(btree_count(e->t, NULL, 0, NULL, 0, &count), 0);
    cr_assert_eq(count, live, "seed %" PRIu64 " %s: count", e->seed, when);
    cr_assert_eq(btree_range_bytes(e->t, NULL, 0, NULL, 0, &bytes), 0);
    cr_assert_eq(bytes, bte_range_bytes(m, ver, 0, m->n), "seed %" PRIu64 " %s: bytes", e->seed,
                 when);
    cr_assert_eq(bte_stats(e).tree_bytes, bytes, "seed %" PRIu64 " %s: tree_bytes", e->seed, when);
}
