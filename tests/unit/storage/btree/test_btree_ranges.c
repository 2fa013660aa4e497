/* storage/btree: key ranges against a reference model (a sorted key space with one
 * version per key; values derive from (key, version)):
 *   - btree_delete_range with random bounds (open, empty, reversed, one key, the whole
 *     tree, on and between keys, prefixes of keys) and overflow values: the count it
 *     reports, what remains, btree_count, and the same after a checkpoint and a reopen;
 *     on a tree of 50 000 keys, a large range leaves few pages and its pages are reused;
 *   - btree_range_bytes is the model's sum of key and value bytes over [lo, hi);
 *   - btree_middle_key is exactly the key btree.h's contract names;
 *   - deleting most keys merges pages and lowers the tree; deleting all empties it.
 * Every loop is seeded (core/util/rand.h) and every failure names its seed. */
#include "btree_testenv.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/rand.h"
#include "storage/btree/btree.h"
#include "storage/btree/btree_check.h"
#include "storage/btree/page.h"
#include "storage/disk/disk_sim.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define KEY_LEN_MAX 40u

/* Keys of 4..9 bytes, some of 1..3 or 10..40; values of up to 120 bytes, or overflow
 * values (btree_testenv.h). */
static const struct bte_shape SHAPE = {
    .key_len_base = 4, .key_len_max = KEY_LEN_MAX, .value_small_max = 120};

/* ------------------------------------------------------------------ the model */

/* The first slot whose key is >= key. */
static uint32_t lower_bound(const struct bte_model *m, const uint8_t *key, uint32_t len)
{
    uint32_t lo = 0, hi = m->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (bte_key_cmp(m->key[mid].b, m->key[mid].len, key, len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* A range bound: len 0 means open. */
struct bound {
    uint8_t b[KEY_LEN_MAX + 2];
    uint32_t len;
};

/* Bounds of every kind: open, an existing key, just above one (key + 0x00), a key with
 * its last byte raised (between keys), a prefix of a key, or a random string. */
static void bound_make(struct ts_rand *r, const struct bte_model *m, struct bound *out)
{
    const struct bte_key *k = &m->key[ts_rand_below(r, m->n)];
    uint64_t kind = ts_rand_below(r, 12);
    memcpy(out->b, k->b, k->len);
    out->len = k->len;
    if (kind == 0) {
        out->len = 0;
    } else if (kind <= 4) {
        /* the key itself */
    } else if (kind <= 6) {
        out->b[out->len++] = 0x00;
    } else if (kind == 7 && out->b[out->len - 1] != 0xff) {
        out->b[out->len - 1]++;
    } else if (kind == 8 && out->len > 1) {
        out->len = 1 + (uint32_t)ts_rand_below(r, out->len - 1);
    } else if (kind >= 9) {
        out->len = bte_random_key(&m->shape, r, out->b);
    }
}

/* The slots of [lo, hi) are [*a, *b). */
static void model_range(const struct bte_model *m, const struct bound *lo, const struct bound *hi,
                        uint32_t *a, uint32_t *b)
{
    *a = lo->len > 0 ? lower_bound(m, lo->b, lo->len) : 0;
    *b = hi->len > 0 ? lower_bound(m, hi->b, hi->len) : m->n;
    if (*b < *a) {
        *b = *a;
    }
}

/* ------------------------------------------------------------------ the environment */

static void checkpoint(struct bte_env *e)
{
    bte_checkpoint(e, NULL, 0);
}

/* btree_check on the closed file (bte_check_file), with the overflow pages: a dropped
 * value's chain is freed, and a page delete_range forgot to free is reported as leaked. */
static void check_file(struct bte_env *e, const struct bte_model *m)
{
    bte_check_file(e, m, m->ver, BTE_CHECK_OVERFLOW_PAGES);
}

/* Pages the tree uses now (after a checkpoint: no pending pages). */
static uint64_t pages_in_use(const struct bte_env *e)
{
    struct btree_stats st = bte_stats(e);
    return st.page_count - BTP_FIRST_TREE_PAGE - st.free_pages - st.pending_pages -
           st.freelist_pages;
}

/* ------------------------------------------------------------------ checks */

static void random_change(struct bte_env *e, struct bte_model *m, struct ts_rand *r)
{
    uint32_t slot = (uint32_t)ts_rand_below(r, m->n);
    if (ts_rand_chance(r, 1, 3)) {
        bte_delete_slot(e, m, slot);
    } else {
        bte_put_slot(e, m, slot);
    }
}

/* The tree equals the model: every key and value forward, the keys backward, the count
 * and the size. */
static void verify_all(struct bte_env *e, const struct bte_model *m, const char *when)
{
    struct btree_cursor c;
    int rc = btree_cursor_seek(&c, e->t, NULL, 0);
    uint64_t live = 0;
    for (uint32_t s = 0; s < m->n; s++) {
        if (m->ver[s] == 0) {
            continue;
        }
        live++;
        cr_assert_eq(rc, 0, "seed %" PRIu64 " %s: the scan ends before slot %u: %s", e->seed, when,
                     s, ts_errname(rc));
        const uint8_t *k;
        uint32_t klen, len = 0;
        btree_cursor_key(&c, &k, &klen);
        cr_assert(bte_key_cmp(k, klen, m->key[s].b, m->key[s].len) == 0,
                  "seed %" PRIu64 " %s: the scan is not at slot %u", e->seed, when, s);
        rc = btree_cursor_value(&c, e->got, sizeof(e->got), &len);
        uint32_t want = bte_value_len(m, s, m->ver[s]);
        bte_value_fill(s, m->ver[s], e->want, want);
        cr_assert(rc == 0 && len == want && memcmp(e->got, e->want, len) == 0,
                  "seed %" PRIu64 " %s: value of slot %u", e->seed, when, s);
        rc = btree_cursor_next(&c);
    }
    cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64 " %s: keys past the model's last: %s", e->seed,
                 when, ts_errname(rc));
    uint32_t s = m->n;
    for (rc = btree_cursor_last(&c, e->t); rc == 0; rc = btree_cursor_prev(&c)) {
        while (s > 0 && m->ver[s - 1] == 0) {
            s--;
        }
        cr_assert_gt(s, 0, "seed %" PRIu64 " %s: keys before the model's first", e->seed, when);
        s--;
        const uint8_t *k;
        uint32_t klen;
        btree_cursor_key(&c, &k, &klen);
        cr_assert(bte_key_cmp(k, klen, m->key[s].b, m->key[s].len) == 0,
                  "seed %" PRIu64 " %s: the backward scan is not at slot %u", e->seed, when, s);
    }
    cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64 " %s", e->seed, when);
    cr_assert_eq(bte_range_count(m, m->ver, 0, s), 0,
                 "seed %" PRIu64 " %s: the backward scan stops early", e->seed, when);
    bte_check_totals(e, m, m->ver, live, when);
    if (live == 0) {
        cr_assert_eq(bte_stats(e).height, 0, "seed %" PRIu64 " %s: an empty tree has height 0",
                     e->seed, when);
    }
}

static void range_bytes_is(struct bte_env *e, const struct bte_model *m, const struct bound *lo,
                           const struct bound *hi, const char *when)
{
    uint32_t a, b;
    model_range(m, lo, hi, &a, &b);
    uint64_t bytes = UINT64_MAX;
    int rc = btree_range_bytes(e->t, lo->b, lo->len, hi->b, hi->len, &bytes);
    cr_assert_eq(rc, 0, "seed %" PRIu64 " %s: range_bytes: %s", e->seed, when, ts_errname(rc));
    cr_assert_eq(bytes, bte_range_bytes(m, m->ver, a, b),
                 "seed %" PRIu64 " %s: range_bytes over slots [%u, %u) (bound lengths %u, %u)",
                 e->seed, when, a, b, lo->len, hi->len);
    uint64_t count = UINT64_MAX;
    rc = btree_count(e->t, lo->b, lo->len, hi->b, hi->len, &count);
    cr_assert_eq(rc, 0, "seed %" PRIu64 " %s: count: %s", e->seed, when, ts_errname(rc));
    cr_assert_eq(count, bte_range_count(m, m->ver, a, b),
                 "seed %" PRIu64 " %s: count over [%u, %u)", e->seed, when, a, b);
}

/* Deletes [lo, hi) from the tree and the model; checks the reported count. */
static void delete_range(struct bte_env *e, struct bte_model *m, const struct bound *lo,
                         const struct bound *hi, const char *when)
{
    uint32_t a, b;
    model_range(m, lo, hi, &a, &b);
    uint64_t want = bte_range_count(m, m->ver, a, b), deleted = UINT64_MAX;
    int rc = btree_delete_range(e->t, lo->b, lo->len, hi->b, hi->len, &deleted);
    cr_assert_eq(rc, 0, "seed %" PRIu64 " %s: delete_range: %s", e->seed, when, ts_errname(rc));
    cr_assert_eq(deleted, want,
                 "seed %" PRIu64 " %s: delete_range over slots [%u, %u) deleted %" PRIu64
                 ", the model %" PRIu64 " (bound lengths %u, %u)",
                 e->seed, when, a, b, deleted, want, lo->len, hi->len);
    for (uint32_t s = a; s < b; s++) {
        m->ver[s] = 0;
    }
}

/* ------------------------------------------------------------------ delete_range */

/* Turns random bounds into the special ranges, by iteration: one key [k, k + 0x00),
 * lo == hi, lo > hi, open on one side, the whole tree. Returns 1 for the first three. */
static uint32_t special_range(uint32_t it, struct bound *lo, struct bound *hi)
{
    switch (it % 10) {
    case 3:
        lo->len = lo->len > 0 ? lo->len : 1;
        lo->len = lo->len > KEY_LEN_MAX ? KEY_LEN_MAX : lo->len;
        memcpy(hi->b, lo->b, lo->len);
        hi->b[lo->len] = 0x00;
        hi->len = lo->len + 1;
        return 1;
    case 5:
        memcpy(hi, lo, sizeof(*lo));
        if (it % 20 == 15 && lo->len > 0) { /* hi a prefix of lo: below it */
            hi->len = lo->len > 1 ? lo->len - 1 : lo->len;
            lo->b[lo->len++] = 0x01;
        }
        return 1;
    case 7:
        (it % 20 == 7 ? lo : hi)->len = 0;
        return 0;
    case 9:
        if (it % 30 == 29) {
            lo->len = hi->len = 0;
        }
        return 0;
    default:
        return 0;
    }
}

Test(btree_ranges, delete_range_matches_the_model)
{
    static struct bte_model m;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct bte_env e;
        bte_env_init(&e, seed, seed % 2 ? 512 : 4096, seed % 4 == 1 ? 16 * 512 : 0);
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        bte_model_init(&m, &r, 1500, 25, &SHAPE);
        for (uint32_t s = 0; s < m.n; s++) {
            if (ts_rand_chance(&r, 3, 4)) {
                bte_put_slot(&e, &m, s);
            }
        }
        uint32_t special = 0;
        for (uint32_t it = 0; it < 60; it++) {
            for (uint32_t op = 0; op < 60; op++) {
                random_change(&e, &m, &r);
            }
            struct bound lo, hi;
            bound_make(&r, &m, &lo);
            bound_make(&r, &m, &hi);
            special += special_range(it, &lo, &hi);
            delete_range(&e, &m, &lo, &hi, "delete_range");
            verify_all(&e, &m, "after delete_range");
            for (uint32_t q = 0; q < 5; q++) {
                bound_make(&r, &m, &lo);
                bound_make(&r, &m, &hi);
                range_bytes_is(&e, &m, &lo, &hi, "after delete_range");
            }
            if (bte_range_count(&m, m.ver, 0, m.n) < m.n / 4) {
                for (uint32_t s = 0; s < m.n; s++) {
                    if (ts_rand_chance(&r, 1, 2)) {
                        bte_put_slot(&e, &m, s);
                    }
                }
            }
            if (it % 7 == 6) {
                checkpoint(&e);
            }
            if (it % 21 == 20) {
                bte_env_reopen(&e);
                verify_all(&e, &m, "after a reopen");
            }
        }
        cr_assert_gt(special, 0);
        checkpoint(&e);
        bte_env_reopen(&e);
        verify_all(&e, &m, "at the end, reopened");
        check_file(&e, &m);
        bte_env_fini(&e);
    }
}

/* A tree of 50 000 keys: deleting [key 500, key 49 500) leaves a tree of few pages,
 * drops its pages without copying them (the file does not grow), and re-inserting half
 * of the keys reuses them. */
Test(btree_ranges, a_large_range_on_a_big_tree_frees_its_pages_for_reuse)
{
    const uint32_t n = 50000;
    struct bte_env e;
    const uint64_t seed = 500;
    bte_env_init(&e, seed, 4096, 0);
    char key[16], value[24];
    memset(value, 'v', sizeof(value));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)((i * 7919ull) % n); /* a permutation of [0, n) */
        snprintf(key, sizeof(key), "key%08u", k);
        cr_assert_eq(btree_put(e.t, key, 11, value, 16 + k % 8), 0, "seed %" PRIu64, seed);
    }
    checkpoint(&e);
    struct btree_stats full = bte_stats(&e);
    uint64_t used_full = pages_in_use(&e);
    cr_assert_geq(full.height, 3, "seed %" PRIu64, seed);
    char lo[16], hi[16];
    snprintf(lo, sizeof(lo), "key%08u", 500u);
    snprintf(hi, sizeof(hi), "key%08u", n - 500);
    uint64_t deleted = 0;
    cr_assert_eq(btree_delete_range(e.t, lo, 11, hi, 11, &deleted), 0);
    cr_assert_eq(deleted, n - 1000, "seed %" PRIu64 ": deleted %" PRIu64, seed, deleted);
    /* Only the two edge paths (and the siblings they merge with) are copied; the
     * subtrees between them are dropped without copies. */
    struct btree_stats after = bte_stats(&e);
    cr_assert_leq(after.page_count, full.page_count + 4 * full.height + 4,
                  "seed %" PRIu64 ": dropping subtrees copied pages: %" PRIu64 " -> %" PRIu64, seed,
                  full.page_count, after.page_count);
    checkpoint(&e);
    uint64_t used = pages_in_use(&e);
    /* 1 000 keys of 11 + 16..23 bytes: about 9 full leaves. Allow four times that and the
     * branches above, against about 800 pages before. */
    cr_assert_leq(used, 50,
                  "seed %" PRIu64 ": %" PRIu64 " pages in use after the range, %" PRIu64 " before",
                  seed, used, used_full);
    cr_assert_leq(bte_stats(&e).height, full.height, "seed %" PRIu64, seed);
    uint64_t count = 0;
    cr_assert_eq(btree_count(e.t, NULL, 0, NULL, 0, &count), 0);
    cr_assert_eq(count, 1000, "seed %" PRIu64, seed);
    for (uint32_t k = 0; k < n; k += 97) {
        snprintf(key, sizeof(key), "key%08u", k);
        uint32_t len;
        int rc = btree_get(e.t, key, 11, e.got, sizeof(e.got), &len);
        bool kept = k < 500 || k >= n - 500;
        cr_assert_eq(rc, kept ? 0 : TS_ENOTFOUND, "seed %" PRIu64 ": key %u: %s", seed, k,
                     ts_errname(rc));
        cr_assert(!kept || (len == 16 + k % 8 && memcmp(e.got, value, len) == 0));
    }
    bte_env_reopen(&e);
    uint64_t page_count = bte_stats(&e).page_count;
    /* Re-insert every other deleted key: the freed pages hold them. */
    for (uint32_t k = 500; k < n - 500; k += 2) {
        snprintf(key, sizeof(key), "key%08u", k);
        cr_assert_eq(btree_put(e.t, key, 11, value, 16 + k % 8), 0);
    }
    checkpoint(&e);
    cr_assert_eq(bte_stats(&e).page_count, page_count,
                 "seed %" PRIu64 ": the file grew from %" PRIu64 " to %" PRIu64
                 " pages: freed pages not reused",
                 seed, page_count, bte_stats(&e).page_count);
    cr_assert_eq(btree_count(e.t, NULL, 0, NULL, 0, &count), 0);
    cr_assert_eq(count, 1000 + (n - 1000) / 2, "seed %" PRIu64, seed);
    btree_close(e.t);
    struct btree_check_report rep;
    char err[512] = "";
    int rc = btree_check("tree", e.disk, ts_allocator_default(), &rep, err, sizeof(err));
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": btree_check: %s %s", seed, ts_errname(rc), err);
    cr_assert_eq(rep.keys, count, "seed %" PRIu64, seed);
    disk_destroy(e.disk);
}

/* Ranges dropped while a snapshot is open: the snapshot still reads every key. */
Test(btree_ranges, a_snapshot_still_reads_what_delete_range_dropped)
{
    static struct bte_model m, old;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct bte_env e;
        bte_env_init(&e, 600 + seed, 512, 16 * 512);
        struct ts_rand r;
        ts_rand_seed(&r, 600 + seed);
        bte_model_init(&m, &r, 2000, 25, &SHAPE);
        for (uint32_t s = 0; s < m.n; s++) {
            bte_put_slot(&e, &m, s);
        }
        checkpoint(&e);
        memcpy(&old, &m, sizeof(m));
        struct btree_snapshot *snap;
        cr_assert_eq(btree_snapshot_open(e.t, &snap), 0);
        for (uint32_t it = 0; it < 6; it++) {
            struct bound lo, hi;
            bound_make(&r, &m, &lo);
            bound_make(&r, &m, &hi);
            delete_range(&e, &m, &lo, &hi, "under a snapshot");
            for (uint32_t op = 0; op < 100; op++) {
                random_change(&e, &m, &r);
            }
            checkpoint(&e);
        }
        verify_all(&e, &m, "the live tree");
        struct btree_cursor c;
        int rc = btree_snapshot_seek(&c, snap, NULL, 0);
        for (uint32_t s = 0; s < old.n; s++) {
            cr_assert_eq(rc, 0, "seed %" PRIu64 ": the snapshot ends before slot %u: %s", e.seed, s,
                         ts_errname(rc));
            const uint8_t *k;
            uint32_t klen, len = 0;
            btree_cursor_key(&c, &k, &klen);
            cr_assert(bte_key_cmp(k, klen, old.key[s].b, old.key[s].len) == 0,
                      "seed %" PRIu64 ": the snapshot is not at slot %u", e.seed, s);
            rc = btree_cursor_value(&c, e.got, sizeof(e.got), &len);
            uint32_t want = bte_value_len(&old, s, old.ver[s]);
            bte_value_fill(s, old.ver[s], e.want, want);
            cr_assert(rc == 0 && len == want && memcmp(e.got, e.want, len) == 0,
                      "seed %" PRIu64 ": snapshot value of slot %u", e.seed, s);
            rc = btree_cursor_next(&c);
        }
        cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64, e.seed);
        btree_snapshot_close(snap);
        checkpoint(&e);
        check_file(&e, &m);
        bte_env_fini(&e);
    }
}

/* Random changes and delete_ranges with a 16-frame cache, and checkpoints cut short by
 * a power loss at a random step: every reopen is exactly the last or the interrupted
 * checkpoint's model, and the free list stays exact. */
Test(btree_ranges, delete_ranges_survive_crashes_with_a_tiny_cache)
{
    static struct bte_model m, durable;
    uint32_t kept_old = 0, kept_new = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        struct bte_env e;
        bte_env_init(&e, 650 + seed, 512, 16 * 512);
        struct ts_rand r;
        ts_rand_seed(&r, 650 + seed);
        bte_model_init(&m, &r, 1500, 25, &SHAPE);
        memcpy(&durable, &m, sizeof(m));
        uint64_t id = 0;
        for (uint32_t round = 0; round < 36; round++) {
            for (uint32_t op = 0; op < 100; op++) {
                random_change(&e, &m, &r);
            }
            for (uint32_t k = 0; k < 2; k++) {
                struct bound lo, hi;
                bound_make(&r, &m, &lo);
                bound_make(&r, &m, &hi);
                delete_range(&e, &m, &lo, &hi, "before a crash");
            }
            if (round % 3 != 2) {
                checkpoint(&e);
                memcpy(&durable, &m, sizeof(m));
                id++;
                continue;
            }
            uint32_t step = (uint32_t)ts_rand_below(&r, 30);
            disk_sim_fail(e.sim, DISK_SIM_FAULT_ALL, EIO, step, true);
            int rc = btree_checkpoint(e.t, NULL, 0);
            disk_sim_fail_clear(e.sim);
            disk_sim_crash(e.sim, (enum disk_sim_crash_policy)(round % 4), 1 + step * 13);
            bte_env_reopen(&e);
            uint64_t now = bte_stats(&e).checkpoint_id;
            cr_assert(now == id || now == id + 1,
                      "seed %" PRIu64 " round %u: checkpoint %" PRIu64 " after %" PRIu64, e.seed,
                      round, now, id);
            cr_assert(rc != 0 || now == id + 1,
                      "seed %" PRIu64 " round %u: a completed checkpoint is lost", e.seed, round);
            kept_old += now == id;
            kept_new += now != id;
            if (now == id) {
                memcpy(&m, &durable, sizeof(m));
            } else {
                memcpy(&durable, &m, sizeof(m));
            }
            id = now;
            verify_all(&e, &m, rc == 0 ? "after a crash" : "after a checkpoint cut short");
        }
        checkpoint(&e);
        check_file(&e, &m);
        bte_env_fini(&e);
    }
    cr_assert(kept_old > 0 && kept_new > 0, "both outcomes happen: old %u, new %u", kept_old,
              kept_new);
}

/* ------------------------------------------------------------------ range_bytes */

Test(btree_ranges, range_bytes_matches_the_model)
{
    static struct bte_model m;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        struct bte_env e;
        bte_env_init(&e, 700 + seed, seed % 2 ? 512 : 4096, seed % 3 == 0 ? 16 * 512 : 0);
        struct ts_rand r;
        ts_rand_seed(&r, 700 + seed);
        bte_model_init(&m, &r, 2500, 30, &SHAPE);
        for (uint32_t it = 0; it < 40; it++) {
            for (uint32_t op = 0; op < 80; op++) {
                random_change(&e, &m, &r);
            }
            struct bound lo, hi;
            if (it % 4 == 3) {
                bound_make(&r, &m, &lo);
                bound_make(&r, &m, &hi);
                delete_range(&e, &m, &lo, &hi, "between range_bytes");
            }
            for (uint32_t q = 0; q < 25; q++) {
                bound_make(&r, &m, &lo);
                bound_make(&r, &m, &hi);
                range_bytes_is(&e, &m, &lo, &hi, "range_bytes");
            }
            lo.len = hi.len = 0;
            range_bytes_is(&e, &m, &lo, &hi, "range_bytes of the whole tree");
            if (it % 10 == 9) {
                checkpoint(&e);
                bte_env_reopen(&e);
                for (uint32_t q = 0; q < 25; q++) {
                    bound_make(&r, &m, &lo);
                    bound_make(&r, &m, &hi);
                    range_bytes_is(&e, &m, &lo, &hi, "range_bytes after a reopen");
                }
            }
        }
        verify_all(&e, &m, "at the end");
        checkpoint(&e);
        check_file(&e, &m);
        bte_env_fini(&e);
    }
}

/* ------------------------------------------------------------------ middle_key */

struct middle_stats {
    uint32_t split;     /* the first key reaching half */
    uint32_t last;      /* the last key, holding more than half */
    uint32_t too_small; /* fewer than two keys */
};

/* btree.h: the first key k of [lo, hi) with the keys in [lo, k) holding at least half of
 * the range's bytes, never the range's first key; TS_ENOTFOUND under two keys. With the
 * bytes of [lo, k) written S(k) and the range's T: k is the first key with
 * 2 S(k) >= T, and when none is (the last key holds more than half), the last key. */
static void middle_key_is(struct bte_env *e, const struct bte_model *m, const struct bound *lo,
                          const struct bound *hi, struct middle_stats *ms)
{
    uint32_t a, b;
    model_range(m, lo, hi, &a, &b);
    uint8_t key[TS_KEY_BYTES_MAX];
    uint32_t key_len = 0;
    int rc = btree_middle_key(e->t, lo->b, lo->len, hi->b, hi->len, key, &key_len);
    uint64_t keys = bte_range_count(m, m->ver, a, b);
    if (keys < 2) {
        cr_assert_eq(rc, TS_ENOTFOUND,
                     "seed %" PRIu64 ": middle_key of %" PRIu64 " keys (slots [%u, %u)): %s",
                     e->seed, keys, a, b, ts_errname(rc));
        ms->too_small++;
        return;
    }
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": middle_key of %" PRIu64 " keys: %s", e->seed, keys,
                 ts_errname(rc));
    uint64_t total = bte_range_bytes(m, m->ver, a, b), sum = 0;
    uint32_t first = UINT32_MAX, want = UINT32_MAX, last = 0;
    for (uint32_t s = a; s < b; s++) {
        if (m->ver[s] == 0) {
            continue;
        }
        first = first == UINT32_MAX ? s : first;
        if (want == UINT32_MAX && s != first && 2 * sum >= total) {
            want = s;
        }
        sum += bte_slot_bytes(m, m->ver, s);
        last = s;
    }
    bool at_last = want == UINT32_MAX;
    want = at_last ? last : want;
    uint32_t got = lower_bound(m, key, key_len);
    cr_assert(got < m->n && bte_key_cmp(key, key_len, m->key[got].b, m->key[got].len) == 0,
              "seed %" PRIu64 ": middle_key returned a key that is not in the tree", e->seed);
    uint64_t below = bte_range_bytes(m, m->ver, a, got);
    cr_assert_eq(got, want,
                 "seed %" PRIu64 ": middle_key of slots [%u, %u) (%" PRIu64 " keys, %" PRIu64
                 " bytes) is slot %u with %" PRIu64 " bytes below it; the contract names slot %u"
                 " with %" PRIu64 " below",
                 e->seed, a, b, keys, total, got, below, want, bte_range_bytes(m, m->ver, a, want));
    /* The contract's properties, spelled out. */
    cr_assert(m->ver[got] != 0 && got > first && got < b, "seed %" PRIu64, e->seed);
    cr_assert(at_last ? 2 * bte_range_bytes(m, m->ver, a, got) < total
                      : 2 * bte_range_bytes(m, m->ver, a, got) >= total,
              "seed %" PRIu64, e->seed);
    ms->split += !at_last;
    ms->last += at_last;
}

Test(btree_ranges, middle_key_splits_a_range_by_size)
{
    static struct bte_model m;
    struct middle_stats ms = {0};
    for (uint64_t seed = 1; seed <= 6; seed++) {
        struct bte_env e;
        bte_env_init(&e, 800 + seed, seed % 2 ? 512 : 4096, 0);
        struct ts_rand r;
        ts_rand_seed(&r, 800 + seed);
        bte_model_init(&m, &r, 2000, seed % 3 == 0 ? 0 : 12, &SHAPE);
        for (uint32_t s = 0; s < m.n; s++) {
            if (ts_rand_chance(&r, 2, 3)) {
                bte_put_slot(&e, &m, s);
            }
        }
        for (uint32_t it = 0; it < 30; it++) {
            for (uint32_t op = 0; op < 50; op++) {
                random_change(&e, &m, &r);
            }
            struct bound lo, hi;
            if (it % 6 == 5) {
                bound_make(&r, &m, &lo);
                bound_make(&r, &m, &hi);
                delete_range(&e, &m, &lo, &hi, "between middle_key");
            }
            for (uint32_t q = 0; q < 30; q++) {
                bound_make(&r, &m, &lo);
                bound_make(&r, &m, &hi);
                if (q % 5 == 0 && lo.len > 0) { /* short ranges: 0, 1, 2 or 3 keys */
                    uint32_t a = lower_bound(&m, lo.b, lo.len), live = 0;
                    uint32_t want = (uint32_t)ts_rand_below(&r, 4), s = a;
                    for (; s < m.n && live < want; s++) {
                        live += m.ver[s] != 0;
                    }
                    hi.len = s < m.n ? m.key[s].len : 0;
                    memcpy(hi.b, m.key[s < m.n ? s : 0].b, hi.len);
                }
                middle_key_is(&e, &m, &lo, &hi, &ms);
            }
            lo.len = hi.len = 0;
            middle_key_is(&e, &m, &lo, &hi, &ms);
            if (it % 10 == 9) {
                checkpoint(&e);
                bte_env_reopen(&e);
            }
        }
        checkpoint(&e);
        check_file(&e, &m);
        bte_env_fini(&e);
    }
    cr_assert(ms.split > 0 && ms.last > 0 && ms.too_small > 0,
              "every case of the contract ran: split %u, last %u, too small %u", ms.split, ms.last,
              ms.too_small);
}

/* ------------------------------------------------------------------ merges */

/* The merge test's keys: "mk" + 8 digits, values of 8 + k % 16 bytes of 'm'. */
#define MERGE_KEYS 20000u

struct merge_state {
    uint32_t order[MERGE_KEYS];
    bool live[MERGE_KEYS];
};

static void merge_key(char *key, uint32_t k)
{
    snprintf(key, 16, "mk%08u", k);
}

static void shuffle(struct ts_rand *r, uint32_t *v, uint32_t n)
{
    for (uint32_t i = n; i-- > 1;) { /* Fisher-Yates */
        uint32_t j = (uint32_t)ts_rand_below(r, i + 1), tmp = v[i];
        v[i] = v[j];
        v[j] = tmp;
    }
}

/* Deletes order[from, to), checkpointing every 4 000 deletes. */
static void merge_delete(struct bte_env *e, struct merge_state *ms, uint32_t from, uint32_t to)
{
    char key[16];
    for (uint32_t i = from; i < to; i++) {
        merge_key(key, ms->order[i]);
        int rc = btree_delete(e->t, key, 10);
        cr_assert_eq(rc, 0, "seed %" PRIu64 ": delete %u: %s", e->seed, ms->order[i],
                     ts_errname(rc));
        ms->live[ms->order[i]] = false;
        if (i % 4000 == 3999) {
            checkpoint(e);
        }
    }
}

/* Every key reads back as live or absent. */
static void merge_read_back(struct bte_env *e, const struct merge_state *ms)
{
    char key[16], value[32];
    memset(value, 'm', sizeof(value));
    for (uint32_t k = 0; k < MERGE_KEYS; k++) {
        merge_key(key, k);
        uint32_t len = 0;
        int rc = btree_get(e->t, key, 10, e->got, sizeof(e->got), &len);
        cr_assert_eq(rc, ms->live[k] ? 0 : TS_ENOTFOUND, "seed %" PRIu64 ": key %u: %s", e->seed, k,
                     ts_errname(rc));
        cr_assert(!ms->live[k] || (len == 8 + k % 16 && memcmp(e->got, value, len) == 0),
                  "seed %" PRIu64 ": key %u value", e->seed, k);
    }
}

/* The leaves the live keys need when full: their cells and slots over a page's room. */
static uint64_t merge_leaves_needed(const struct bte_env *e, const struct merge_state *ms)
{
    uint64_t cells = 0, room = e->page_bytes - BTP_HDR_BYTES;
    for (uint32_t k = 0; k < MERGE_KEYS; k++) {
        cells += ms->live[k] ? BTP_SLOT_BYTES + BTP_LEAF_CELL_HDR_BYTES + 10 + 8 + k % 16 : 0;
    }
    return (cells + room - 1) / room;
}

/* btree_check on the closed file (the tree reopens): it must pass and count keys. */
static void merge_check(struct bte_env *e, uint64_t keys, struct btree_check_report *rep)
{
    btree_close(e->t);
    char err[512] = "";
    int rc = btree_check("tree", e->disk, ts_allocator_default(), rep, err, sizeof(err));
    bte_env_open(e);
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": btree_check: %s %s", e->seed, ts_errname(rc), err);
    cr_assert_eq(rep->keys, keys, "seed %" PRIu64 ": btree_check keys", e->seed);
}

/* With 5 % of the keys left: the pages in use are what btree_check reaches, the leaves
 * average well above a quarter full (underfull pages merge when they fit with a
 * sibling), and everything reads back. */
static void merge_check_few(struct bte_env *e, const struct merge_state *ms, uint32_t keep,
                            const struct btree_stats *full, uint64_t used_full)
{
    struct btree_check_report rep;
    uint64_t used = pages_in_use(e), needed = merge_leaves_needed(e, ms);
    merge_check(e, keep, &rep);
    cr_assert_eq(rep.branch_pages + rep.leaf_pages, used,
                 "seed %" PRIu64 ": btree_check reaches %" PRIu64 " pages, the stats say %" PRIu64
                 " in use",
                 e->seed, rep.branch_pages + rep.leaf_pages, used);
    cr_assert_leq(rep.leaf_pages, 4 * needed + 2,
                  "seed %" PRIu64 ": %" PRIu64 " leaves for %u keys that fit in %" PRIu64
                  " (%" PRIu64 " pages in use before the deletes)",
                  e->seed, rep.leaf_pages, keep, needed, used_full);
    cr_assert_leq(bte_stats(e).height, full->height, "seed %" PRIu64, e->seed);
    uint64_t count = 0;
    cr_assert_eq(btree_count(e->t, NULL, 0, NULL, 0, &count), 0);
    cr_assert_eq(count, keep, "seed %" PRIu64, e->seed);
    merge_read_back(e, ms);
}

/* The tree with no key: height 0, no page in use after a checkpoint and a reopen, and
 * usable again. */
static void merge_check_empty(struct bte_env *e)
{
    struct btree_stats st = bte_stats(e);
    cr_assert_eq(st.height, 0, "seed %" PRIu64 ": an empty tree of height %u", e->seed, st.height);
    cr_assert_eq(st.tree_bytes, 0, "seed %" PRIu64, e->seed);
    struct btree_cursor c;
    cr_assert_eq(btree_cursor_seek(&c, e->t, NULL, 0), TS_ENOTFOUND);
    cr_assert_eq(btree_cursor_last(&c, e->t), TS_ENOTFOUND);
    checkpoint(e);
    cr_assert_eq(pages_in_use(e), 0, "seed %" PRIu64 ": an empty tree uses %" PRIu64 " pages",
                 e->seed, pages_in_use(e));
    bte_env_reopen(e);
    cr_assert_eq(bte_stats(e).height, 0, "seed %" PRIu64, e->seed);
    cr_assert_eq(pages_in_use(e), 0, "seed %" PRIu64, e->seed);
    char key[16];
    for (uint32_t k = 0; k < 300; k++) {
        merge_key(key, k);
        cr_assert_eq(btree_put(e->t, key, 10, "mmmmmmmm", 8), 0, "seed %" PRIu64, e->seed);
    }
    checkpoint(e);
    bte_env_reopen(e);
    uint64_t count = 0;
    cr_assert_eq(btree_count(e->t, NULL, 0, NULL, 0, &count), 0);
    cr_assert_eq(count, 300, "seed %" PRIu64, e->seed);
    struct btree_check_report rep;
    merge_check(e, 300, &rep);
}

Test(btree_ranges, deleting_most_keys_merges_pages_and_lowers_the_tree)
{
    static struct merge_state ms;
    const uint32_t n = MERGE_KEYS, keep = n / 20;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct bte_env e;
        bte_env_init(&e, 900 + seed, seed == 2 ? 4096 : 512, 0);
        struct ts_rand r;
        ts_rand_seed(&r, 900 + seed);
        char key[16], value[32];
        memset(value, 'm', sizeof(value));
        for (uint32_t i = 0; i < n; i++) {
            ms.order[i] = i;
        }
        shuffle(&r, ms.order, n);
        for (uint32_t i = 0; i < n; i++) {
            merge_key(key, ms.order[i]);
            cr_assert_eq(btree_put(e.t, key, 10, value, 8 + ms.order[i] % 16), 0);
            ms.live[ms.order[i]] = true;
        }
        checkpoint(&e);
        struct btree_stats full = bte_stats(&e);
        uint64_t used_full = pages_in_use(&e);
        /* Delete 95 % of the keys in another random order, with checkpoints. */
        shuffle(&r, ms.order, n);
        merge_delete(&e, &ms, 0, n - keep);
        checkpoint(&e);
        merge_check_few(&e, &ms, keep, &full, used_full);
        /* Down to 100 keys (half a percent). Pages under a quarter full merge and never
         * borrow, so at 5 % a tree of 512-byte pages may keep its height (a root over two
         * branches a third full, which do not fit in one page); with 100 keys in a few
         * leaves it must have lost levels. */
        merge_delete(&e, &ms, n - keep, n - 100);
        struct btree_stats tiny = bte_stats(&e);
        cr_assert_lt(tiny.height, full.height,
                     "seed %" PRIu64 ": height %u with 100 keys, %u with %u", seed, tiny.height,
                     full.height, n);
        cr_assert_leq(tiny.height, 3, "seed %" PRIu64 ": height %u with 100 keys", seed,
                      tiny.height);
        merge_read_back(&e, &ms);
        /* Delete the rest: the tree is empty, holds no page, and works again. */
        merge_delete(&e, &ms, n - 100, n);
        merge_check_empty(&e);
        bte_env_fini(&e);
    }
}

/* delete_range over the whole tree empties it: height 0, no page in use, usable. */
Test(btree_ranges, delete_range_of_everything_empties_the_tree)
{
    static struct bte_model m;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct bte_env e;
        bte_env_init(&e, 950 + seed, 512, 0);
        struct ts_rand r;
        ts_rand_seed(&r, 950 + seed);
        bte_model_init(&m, &r, 3000, 20, &SHAPE);
        for (uint32_t s = 0; s < m.n; s++) {
            bte_put_slot(&e, &m, s);
        }
        if (seed != 2) {
            checkpoint(&e); /* seed 2 drops fresh pages, the others checkpointed ones */
        }
        struct bound lo = {.len = 0}, hi = {.len = 0};
        if (seed == 3) { /* bounds around every key rather than open ones */
            lo.b[0] = 0x00;
            lo.len = 1;
            memset(hi.b, 0xff, KEY_LEN_MAX + 1);
            hi.len = KEY_LEN_MAX + 1;
        }
        delete_range(&e, &m, &lo, &hi, "everything");
        verify_all(&e, &m, "after deleting everything");
        cr_assert_eq(bte_stats(&e).height, 0, "seed %" PRIu64, e.seed);
        checkpoint(&e);
        cr_assert_eq(pages_in_use(&e), 0, "seed %" PRIu64 ": %" PRIu64 " pages in use", e.seed,
                     pages_in_use(&e));
        for (uint32_t op = 0; op < 500; op++) {
            random_change(&e, &m, &r);
        }
        verify_all(&e, &m, "usable again");
        checkpoint(&e);
        bte_env_reopen(&e);
        verify_all(&e, &m, "usable again, reopened");
        check_file(&e, &m);
        bte_env_fini(&e);
    }
}
