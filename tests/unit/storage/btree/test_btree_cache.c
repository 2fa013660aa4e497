/* storage/btree: the page cache, the persisted free list and sticky write errors, on the
 * simulated disk against a reference model (a sorted key space with one version per
 * key; values derive from (key, version), so the model stores no bytes):
 *   - a tree many times its cache: random puts, overwrites, deletes, gets, scans both
 *     ways, checkpoints, crashes and reopens match the model, and the cache evicts
 *     dirty pages and stays within its budget between calls;
 *   - a crash at every step of a checkpoint, with a cache so small that dirty pages went
 *     to disk before it, reopens exactly the previous or the new checkpoint;
 *   - the free list a checkpoint writes is the free list a reopen finds, and steady
 *     overwrites with checkpoints and reopens stop growing the file;
 *   - a snapshot reads its checkpoint through the shared cache while the tree changes;
 *   - a failed eviction or checkpoint write makes every later call fail.
 * Every loop is seeded (core/util/rand.h) and every failure names its seed. */
#include "btree_testenv.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/rand.h"
#include "storage/btree/btree.h"
#include "storage/btree/page.h"
#include "storage/disk/disk_sim.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Keys of 5..10 bytes, some of 1..3 or 11..48; values of up to 150 bytes, or overflow
 * values (btree_testenv.h). */
static const struct bte_shape SHAPE = {
    .key_len_base = 5, .key_len_max = 48, .value_small_max = 150};

/* A checkpoint whose user blob is stamp. */
static void checkpoint(struct bte_env *e, uint64_t stamp)
{
    bte_checkpoint(e, &stamp, sizeof(stamp));
}

/* btree_check on the closed file (bte_check_file), with the file's page count. */
static void check_file(struct bte_env *e, const struct bte_model *m, const uint32_t *ver)
{
    bte_check_file(e, m, ver, BTE_CHECK_PAGE_COUNT);
}

/* ------------------------------------------------------------------ checks */

static void get_slot(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                     uint32_t slot)
{
    uint32_t len = 0;
    int rc = btree_get(e->t, m->key[slot].b, m->key[slot].len, e->got, sizeof(e->got), &len);
    if (ver[slot] == 0) {
        cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64 ": slot %u should be absent: %s", e->seed,
                     slot, ts_errname(rc));
        return;
    }
    cr_assert_eq(rc, 0, "seed %" PRIu64 ": get slot %u: %s", e->seed, slot, ts_errname(rc));
    uint32_t want = bte_value_len(m, slot, ver[slot]);
    bte_value_fill(slot, ver[slot], e->want, want);
    cr_assert_eq(len, want, "seed %" PRIu64 ": slot %u length", e->seed, slot);
    cr_assert(memcmp(e->got, e->want, len) == 0, "seed %" PRIu64 ": slot %u bytes", e->seed, slot);
}

/* The cursor is on slot: same key, and (with values) the same value. */
static void cursor_is(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                      const struct btree_cursor *c, uint32_t slot, bool values, const char *when)
{
    const uint8_t *k;
    uint32_t klen;
    btree_cursor_key(c, &k, &klen);
    cr_assert(bte_key_cmp(k, klen, m->key[slot].b, m->key[slot].len) == 0,
              "seed %" PRIu64 " %s: cursor not at slot %u", e->seed, when, slot);
    if (!values) {
        return;
    }
    uint32_t len = 0;
    int rc = btree_cursor_value(c, e->got, sizeof(e->got), &len);
    cr_assert_eq(rc, 0, "seed %" PRIu64 " %s: value of slot %u: %s", e->seed, when, slot,
                 ts_errname(rc));
    uint32_t want = bte_value_len(m, slot, ver[slot]);
    bte_value_fill(slot, ver[slot], e->want, want);
    cr_assert(len == want && memcmp(e->got, e->want, len) == 0,
              "seed %" PRIu64 " %s: value of slot %u", e->seed, when, slot);
}

/* Scans from the first key >= slot `from`'s key, forward (up to limit keys), comparing
 * with the model. With reads, a get of a random key runs between steps (a read is no
 * change: the cursor stays valid, though the get may evict its pages). */
static void scan_forward_reading(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                                 uint32_t from, uint32_t limit, struct btree_snapshot *snap,
                                 const char *when, struct ts_rand *reads)
{
    struct btree_cursor c;
    const uint8_t *key = from < m->n ? m->key[from].b : NULL;
    uint32_t key_len = from < m->n ? m->key[from].len : 0;
    int rc = snap != NULL ? btree_snapshot_seek(&c, snap, key, key_len)
                          : btree_cursor_seek(&c, e->t, key, key_len);
    uint32_t seen = 0;
    for (uint32_t s = from < m->n ? from : 0; s < m->n && seen < limit; s++) {
        if (ver[s] == 0) {
            continue;
        }
        cr_assert_eq(rc, 0, "seed %" PRIu64 " %s: forward scan ends before slot %u: %s", e->seed,
                     when, s, ts_errname(rc));
        cursor_is(e, m, ver, &c, s, true, when);
        if (reads != NULL) {
            get_slot(e, m, ver, (uint32_t)ts_rand_below(reads, m->n));
        }
        rc = btree_cursor_next(&c);
        seen++;
    }
    if (seen < limit) {
        cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64 " %s: forward scan goes past the end: %s",
                     e->seed, when, ts_errname(rc));
    }
}

static void scan_forward(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                         uint32_t from, uint32_t limit, struct btree_snapshot *snap,
                         const char *when)
{
    scan_forward_reading(e, m, ver, from, limit, snap, when, NULL);
}

/* From the first key >= slot from's key (or the last key when none), backward; on a
 * snapshot (which has no cursor_last) from must have a key >= it. */
static void scan_backward(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                          uint32_t from, uint32_t limit, struct btree_snapshot *snap)
{
    struct btree_cursor c;
    uint32_t s = from;
    while (s < m->n && ver[s] == 0) {
        s++;
    }
    int rc;
    if (s < m->n) {
        rc = snap != NULL ? btree_snapshot_seek(&c, snap, m->key[from].b, m->key[from].len)
                          : btree_cursor_seek(&c, e->t, m->key[from].b, m->key[from].len);
    } else {
        cr_assert_null(snap);
        rc = btree_cursor_last(&c, e->t);
        s = m->n;
        while (s > 0 && ver[s - 1] == 0) {
            s--;
        }
        if (s == 0) {
            cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64 ": last of an empty tree", e->seed);
            return;
        }
        s--;
    }
    for (uint32_t seen = 0; seen < limit; seen++) {
        cr_assert_eq(rc, 0, "seed %" PRIu64 ": backward scan ends before slot %u: %s", e->seed, s,
                     ts_errname(rc));
        cursor_is(e, m, ver, &c, s, seen % 4 == 0, "backward scan");
        rc = btree_cursor_prev(&c);
        while (s > 0 && ver[s - 1] == 0) {
            s--;
        }
        if (s == 0) {
            cr_assert_eq(rc, TS_ENOTFOUND, "seed %" PRIu64 ": backward scan goes past the start",
                         e->seed);
            return;
        }
        s--;
    }
}

/* The whole tree equals the model: every key and value forward, every key backward,
 * the count and the logical size. */
static void verify_all(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                       const char *when)
{
    scan_forward(e, m, ver, m->n, UINT32_MAX, NULL, when);
    uint32_t live = (uint32_t)bte_range_count(m, ver, 0, m->n);
    scan_backward(e, m, ver, m->n, live, NULL);
    bte_check_totals(e, m, ver, live, when);
}

/* One random operation (puts and overwrites, deletes, gets, scans both ways). Returns
 * true for a scan: btree.h lets btree_cursor_key read its leaf back one page past the
 * budget (the key view must outlive the call), so a scan may end one page over. */
static bool random_op(struct bte_env *e, struct bte_model *m, struct ts_rand *r)
{
    uint32_t slot = (uint32_t)ts_rand_below(r, m->n);
    uint64_t dice = ts_rand_below(r, 100);
    if (dice < 40) {
        bte_put_slot(e, m, slot);
    } else if (dice < 55) {
        bte_delete_slot(e, m, slot);
    } else if (dice < 92) {
        get_slot(e, m, m->ver, slot);
    } else if (dice < 96) {
        scan_forward_reading(e, m, m->ver, slot, 1 + (uint32_t)ts_rand_below(r, 60), NULL,
                             "forward scan", ts_rand_chance(r, 1, 2) ? r : NULL);
        return true;
    } else {
        scan_backward(e, m, m->ver, slot, 1 + (uint32_t)ts_rand_below(r, 60), NULL);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ the big model test */

#define CACHE_SMALL (64u * 1024u)

Test(btree_cache, a_tree_many_times_its_cache_matches_the_model)
{
    static struct bte_model m;
    static uint32_t durable[BTE_KEYS_MAX];
    uint64_t over_budget = 0, over_seed = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        struct bte_env e;
        struct btree_stats sum = {0}; /* the counters of the opens before the current */
        bte_env_init(&e, seed, 4096, CACHE_SMALL);
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        bte_model_init(&m, &r, 5000, 20, &SHAPE);
        memset(durable, 0, sizeof(durable));
        for (uint32_t i = 0; i < m.n; i++) { /* about 3 000 keys to start with */
            if (ts_rand_chance(&r, 3, 5)) {
                bte_put_slot(&e, &m, i);
            }
        }
        const uint32_t ops = 6000;
        for (uint32_t op = 1; op <= ops; op++) {
            bool scan = random_op(&e, &m, &r);
            struct btree_stats st = bte_stats(&e);
            uint64_t allowed = st.cache_budget_pages + (scan ? 1 : 0);
            if (st.cached_pages > allowed && over_budget == 0) {
                over_budget = st.cached_pages - allowed;
                over_seed = seed;
            }
            if (op % 1000 == 0) {
                checkpoint(&e, op);
                memcpy(durable, m.ver, sizeof(durable));
            }
            if (op % 3000 == 0 || op % 3000 == 1500) {
                st = bte_stats(&e);
                sum.evictions += st.evictions;
                sum.evicted_dirty += st.evicted_dirty;
                sum.cache_misses += st.cache_misses;
            }
            if (op % 3000 == 0) { /* a clean reopen from the checkpoint just taken */
                bte_env_reopen(&e);
                verify_all(&e, &m, m.ver, "after a reopen");
            } else if (op % 3000 == 1500) {
                /* Power loss with changes (and evicted dirty pages on disk) since the
                 * checkpoint: the reopened tree is the checkpoint's. */
                cr_assert_gt(st.evicted_dirty, 0, "seed %" PRIu64 ": no dirty evictions", seed);
                disk_sim_crash(e.sim, (enum disk_sim_crash_policy)(seed % 4), 100);
                bte_env_reopen(&e);
                memcpy(m.ver, durable, sizeof(durable));
                verify_all(&e, &m, m.ver, "after a crash");
            }
        }
        verify_all(&e, &m, m.ver, "at the end");
        checkpoint(&e, ops + 1);
        struct btree_stats st = bte_stats(&e);
        cr_assert_eq(st.cache_budget_pages, CACHE_SMALL / 4096, "seed %" PRIu64, seed);
        cr_assert_geq(st.tree_bytes, 4 * CACHE_SMALL, "seed %" PRIu64 ": the tree is too small",
                      seed);
        cr_assert_gt(sum.evictions + st.evictions, 0, "seed %" PRIu64 ": no evictions", seed);
        cr_assert_gt(sum.evicted_dirty + st.evicted_dirty, 0,
                     "seed %" PRIu64 ": no dirty evictions", seed);
        cr_assert_gt(sum.cache_misses + st.cache_misses, 0, "seed %" PRIu64 ": no misses", seed);
        check_file(&e, &m, m.ver);
        verify_all(&e, &m, m.ver, "after btree_check");
        bte_env_fini(&e);
    }
    cr_assert_eq(over_budget, 0,
                 "seed %" PRIu64 ": a call returned with %" PRIu64
                 " pages cached past the budget (btree.h: at most cache_bytes between calls)",
                 over_seed, over_budget);
}

/* The budget holds between calls even after a call that needed far more pages (a 1 MiB
 * value is 257 pages of 4 KiB; a scan over it reads them all). */
Test(btree_cache, a_call_that_needs_many_pages_leaves_the_cache_within_budget)
{
    static uint8_t big[TS_VALUE_BYTES_MAX];
    struct bte_env e;
    bte_env_init(&e, 11, 4096, CACHE_SMALL);
    for (uint32_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 7 + i / 4096);
    }
    cr_assert_eq(btree_put(e.t, "big", 3, big, sizeof(big)), 0);
    struct btree_stats st = bte_stats(&e);
    cr_assert_leq(st.cached_pages, st.cache_budget_pages,
                  "after a 1 MiB put: %" PRIu64 " pages cached, budget %" PRIu64, st.cached_pages,
                  st.cache_budget_pages);
    checkpoint(&e, 1);
    bte_env_reopen(&e);
    uint32_t len = 0;
    static uint8_t got[TS_VALUE_BYTES_MAX];
    cr_assert_eq(btree_get(e.t, "big", 3, got, sizeof(got), &len), 0);
    cr_assert(len == sizeof(big) && memcmp(got, big, len) == 0);
    st = bte_stats(&e);
    cr_assert_leq(st.cached_pages, st.cache_budget_pages,
                  "after a 1 MiB get: %" PRIu64 " pages cached, budget %" PRIu64, st.cached_pages,
                  st.cache_budget_pages);
    bte_env_fini(&e);
}

/* ------------------------------------------------------------------ crashes */

/* Builds the crash test's tree: a first checkpoint ("one"), then changes whose dirty pages
 * a 16-frame cache has partly written to disk already. */
static void crash_build(struct bte_env *e, struct bte_model *m, uint32_t *before, uint64_t seed)
{
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    bte_env_init(e, seed, 512, 16 * 512);
    bte_model_init(m, &r, 700, 25, &SHAPE);
    for (uint32_t op = 0; op < 350; op++) {
        uint32_t slot = (uint32_t)ts_rand_below(&r, m->n);
        if (ts_rand_chance(&r, 1, 5)) {
            bte_delete_slot(e, m, slot);
        } else {
            bte_put_slot(e, m, slot);
        }
    }
    cr_assert_eq(btree_checkpoint(e->t, "one", 3), 0, "seed %" PRIu64, seed);
    memcpy(before, m->ver, sizeof(m->ver));
    uint64_t evicted = bte_stats(e).evicted_dirty;
    for (uint32_t op = 0; op < 150; op++) {
        uint32_t slot = (uint32_t)ts_rand_below(&r, m->n);
        if (op == 75) { /* a range of about 60 keys: whole subtrees go */
            uint32_t a = slot < m->n - 60 ? slot : m->n - 61;
            uint64_t deleted = 0, want = 0;
            for (uint32_t s = a; s < a + 60; s++) {
                want += m->ver[s] != 0;
                m->ver[s] = 0;
            }
            int rc = btree_delete_range(e->t, m->key[a].b, m->key[a].len, m->key[a + 60].b,
                                        m->key[a + 60].len, &deleted);
            cr_assert(rc == 0 && deleted == want, "seed %" PRIu64 ": delete_range: %s", seed,
                      ts_errname(rc));
        } else if (ts_rand_chance(&r, 1, 3)) {
            bte_delete_slot(e, m, slot);
        } else {
            bte_put_slot(e, m, slot);
        }
    }
    cr_assert_gt(bte_stats(e).evicted_dirty, evicted,
                 "seed %" PRIu64 ": no dirty page went to disk before the checkpoint", seed);
}

Test(btree_cache, a_crash_at_any_step_of_a_checkpoint_with_a_tiny_cache)
{
    static struct bte_model m;
    static uint32_t before[BTE_KEYS_MAX];
    uint32_t kept_old = 0, kept_new = 0;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        /* Fail the checkpoint's (step + 1)-th disk operation and every later one, for
         * every step until the checkpoint completes; then lose power. */
        for (uint32_t step = 0;; step++) {
            cr_assert_lt(step, 400, "seed %" PRIu64 ": the checkpoint never completes", seed);
            struct bte_env e;
            crash_build(&e, &m, before, seed);
            disk_sim_fail(e.sim, DISK_SIM_FAULT_ALL, EIO, step, true);
            int rc = btree_checkpoint(e.t, "two", 3);
            disk_sim_fail_clear(e.sim);
            enum disk_sim_crash_policy policy = (enum disk_sim_crash_policy)(step % 4);
            disk_sim_crash(e.sim, policy, 1 + (step * 37) % 511);
            bte_env_reopen(&e);
            struct btree_stats st = bte_stats(&e);
            char when[96];
            snprintf(when, sizeof(when), "step %u, policy %d, checkpoint %s", step, (int)policy,
                     rc == 0 ? "completed" : "cut short");
            cr_assert(st.checkpoint_id == 1 || st.checkpoint_id == 2,
                      "seed %" PRIu64 " %s: checkpoint %" PRIu64, seed, when, st.checkpoint_id);
            cr_assert(rc != 0 || st.checkpoint_id == 2,
                      "seed %" PRIu64 " %s: a completed checkpoint is lost", seed, when);
            const uint32_t *ver = st.checkpoint_id == 2 ? m.ver : before;
            const uint8_t *user;
            uint32_t user_len;
            btree_user(e.t, &user, &user_len);
            cr_assert(user_len == 3 && memcmp(user, st.checkpoint_id == 2 ? "two" : "one", 3) == 0,
                      "seed %" PRIu64 " %s: the blob", seed, when);
            verify_all(&e, &m, ver, when);
            kept_old += st.checkpoint_id == 1;
            kept_new += st.checkpoint_id == 2;
            /* The reopened tree takes new checkpoints and checks sound. */
            checkpoint(&e, 3);
            check_file(&e, &m, ver);
            bte_env_fini(&e);
            if (rc == 0) {
                break;
            }
        }
    }
    cr_assert(kept_old > 0 && kept_new > 0, "both outcomes happen: old %u, new %u", kept_old,
              kept_new);
}

/* ------------------------------------------------------------------ the free list */

/* The exact rule, from btree.c's chain_build() and checkpoint(): with no snapshot open,
 * the free pages after a checkpoint are exactly the pages its chain lists (the old free
 * pages minus those the chain took, the pending and retired ones, and the previous
 * chain), so a reopen finds the same free_pages and freelist_pages. The chain has the
 * fewest pages that hold the list, or one more when its last page, taken from the free
 * list, made the list fit exactly: n * capacity >= listed >= (n - 1) * capacity. */
static void free_list_rule(const struct bte_env *e, const struct btree_stats *st)
{
    uint64_t cap = btp_freelist_capacity(e->page_bytes);
    cr_assert_eq(st->pending_pages, 0, "seed %" PRIu64, e->seed);
    cr_assert_geq(st->freelist_pages * cap, st->free_pages,
                  "seed %" PRIu64 ": %" PRIu64 " chain pages cannot list %" PRIu64 " pages",
                  e->seed, st->freelist_pages, st->free_pages);
    cr_assert(st->freelist_pages == 0 || (st->freelist_pages - 1) * cap <= st->free_pages,
              "seed %" PRIu64 ": %" PRIu64 " chain pages for %" PRIu64 " free pages", e->seed,
              st->freelist_pages, st->free_pages);
}

static void same_free_list(const struct bte_env *e, const struct btree_stats *a,
                           const struct btree_stats *b, const char *when)
{
    cr_assert_eq(b->free_pages, a->free_pages,
                 "seed %" PRIu64 " %s: %" PRIu64 " free pages, %" PRIu64 " before", e->seed, when,
                 b->free_pages, a->free_pages);
    cr_assert_eq(b->freelist_pages, a->freelist_pages, "seed %" PRIu64 " %s: chain pages", e->seed,
                 when);
    cr_assert_eq(b->page_count, a->page_count, "seed %" PRIu64 " %s: page count", e->seed, when);
    cr_assert_eq(b->pending_pages, 0, "seed %" PRIu64 " %s: pending pages", e->seed, when);
    cr_assert_eq(b->checkpoint_id, a->checkpoint_id, "seed %" PRIu64 " %s", e->seed, when);
}

/* The stats right after a checkpoint obey the rule; a reopen finds the same free list. */
static void reopen_finds_the_free_list(struct bte_env *e, const char *when)
{
    struct btree_stats a = bte_stats(e);
    free_list_rule(e, &a);
    bte_env_reopen(e);
    struct btree_stats b = bte_stats(e);
    same_free_list(e, &a, &b, when);
}

Test(btree_cache, the_free_list_a_checkpoint_writes_is_the_one_a_reopen_finds)
{
    static struct bte_model m;
    static uint32_t durable[BTE_KEYS_MAX];
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct bte_env e;
        bte_env_init(&e, 40 + seed, seed == 2 ? 512 : 4096, CACHE_SMALL);
        struct ts_rand r;
        ts_rand_seed(&r, 40 + seed);
        bte_model_init(&m, &r, 3000, 20, &SHAPE);
        for (uint32_t i = 0; i < m.n; i++) {
            bte_put_slot(&e, &m, i);
        }
        checkpoint(&e, 1);
        /* Delete two thirds in random order: their pages are pending, then free. */
        for (uint32_t k = 0; k < m.n; k++) {
            if (k % 3 != 0) {
                bte_delete_slot(&e, &m, (uint32_t)((k * 7919ull) % m.n));
            }
        }
        cr_assert_gt(bte_stats(&e).pending_pages, 0, "seed %" PRIu64, seed);
        checkpoint(&e, 2);
        struct btree_stats a = bte_stats(&e);
        cr_assert_gt(a.free_pages, 0, "seed %" PRIu64 ": deletes freed nothing", seed);
        cr_assert_gt(a.freelist_pages, 0, "seed %" PRIu64, seed);
        reopen_finds_the_free_list(&e, "after deletes and a reopen");
        verify_all(&e, &m, m.ver, "after deletes and a reopen");
        /* Changes after the checkpoint are lost on reopen, and so is their free-list
         * bookkeeping: the reopen finds the checkpoint's list again. */
        memcpy(durable, m.ver, sizeof(durable));
        for (uint32_t op = 0; op < 800; op++) {
            random_op(&e, &m, &r);
        }
        bte_env_reopen(&e);
        memcpy(m.ver, durable, sizeof(durable));
        struct btree_stats b = bte_stats(&e);
        same_free_list(&e, &a, &b, "after uncheckpointed changes and a reopen");
        /* A snapshot open across a checkpoint holds back the pages it reads; once it
         * closes they are free, exactly as the chain written under it lists them. */
        struct btree_snapshot *snap;
        cr_assert_eq(btree_snapshot_open(e.t, &snap), 0);
        for (uint32_t op = 0; op < 800; op++) {
            random_op(&e, &m, &r);
        }
        checkpoint(&e, 3);
        btree_snapshot_close(snap);
        reopen_finds_the_free_list(&e, "after a checkpoint under a snapshot");
        /* Rounds of random changes, each checkpointed and reopened. */
        for (uint32_t round = 0; round < 6; round++) {
            for (uint32_t op = 0; op < 400; op++) {
                random_op(&e, &m, &r);
            }
            checkpoint(&e, 10 + round);
            reopen_finds_the_free_list(&e, "after a round");
        }
        verify_all(&e, &m, m.ver, "after the rounds");
        check_file(&e, &m, m.ver);
        bte_env_fini(&e);
    }
}

Test(btree_cache, steady_overwrites_with_checkpoints_and_reopens_stop_growing_the_file)
{
    static struct bte_model m;
    struct bte_env e;
    const uint64_t seed = 51;
    bte_env_init(&e, seed, 4096, CACHE_SMALL);
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    bte_model_init(&m, &r, 1500, 15, &SHAPE);
    /* Every key keeps its value length (so the tree needs the same pages each round);
     * the bytes change with the round. */
    static uint32_t len_of[BTE_KEYS_MAX];
    for (uint32_t i = 0; i < m.n; i++) {
        len_of[i] = bte_value_len(&m, i, 1);
    }
    const uint32_t rounds = 24;
    uint64_t pages[24];
    for (uint32_t round = 0; round < rounds; round++) {
        for (uint32_t k = 0; k < m.n; k++) {
            uint32_t slot = (uint32_t)((k * 7919ull + round * 131ull) % m.n);
            bte_value_fill(slot, round + 1, e.want, len_of[slot]);
            int rc = btree_put(e.t, m.key[slot].b, m.key[slot].len, e.want, len_of[slot]);
            cr_assert_eq(rc, 0, "seed %" PRIu64 " round %u: put: %s", seed, round, ts_errname(rc));
        }
        checkpoint(&e, round);
        pages[round] = bte_stats(&e).page_count;
        if (round % 3 == 2) {
            bte_env_reopen(&e);
            cr_assert_eq(bte_stats(&e).page_count, pages[round], "seed %" PRIu64, seed);
        }
    }
    for (uint32_t round = rounds / 2; round < rounds; round++) {
        cr_assert_leq(pages[round], pages[rounds / 2 - 1],
                      "seed %" PRIu64 ": the file grew to %" PRIu64
                      " pages in round %u, from %" PRIu64 " after round %u",
                      seed, pages[round], round, pages[rounds / 2 - 1], rounds / 2 - 1);
    }
    /* Every key holds the last round's bytes. */
    for (uint32_t slot = 0; slot < m.n; slot++) {
        uint32_t len = 0;
        int rc = btree_get(e.t, m.key[slot].b, m.key[slot].len, e.got, sizeof(e.got), &len);
        bte_value_fill(slot, rounds, e.want, len_of[slot]);
        cr_assert(rc == 0 && len == len_of[slot] && memcmp(e.got, e.want, len) == 0,
                  "seed %" PRIu64 ": slot %u", seed, slot);
        m.ver[slot] = 1; /* for check_file's byte count: version 1 has the same length */
    }
    check_file(&e, &m, m.ver);
    bte_env_fini(&e);
}

/* ------------------------------------------------------------------ snapshots */

/* Moves a long-lived snapshot cursor `steps` keys on (from the start when *slot is past
 * the end), checking each key and value against the snapshot's model. */
static void walk_snapshot(struct bte_env *e, const struct bte_model *m, const uint32_t *ver,
                          struct btree_snapshot *snap, struct btree_cursor *c, uint32_t *slot,
                          uint32_t steps)
{
    for (uint32_t i = 0; i < steps; i++) {
        if (*slot >= m->n) {
            int rc = btree_snapshot_seek(c, snap, NULL, 0);
            cr_assert_eq(rc, 0, "seed %" PRIu64 ": snapshot seek: %s", e->seed, ts_errname(rc));
            *slot = 0;
            while (ver[*slot] == 0) {
                (*slot)++;
            }
        }
        cursor_is(e, m, ver, c, *slot, true, "a long-lived snapshot cursor");
        int rc = btree_cursor_next(c);
        do {
            (*slot)++;
        } while (*slot < m->n && ver[*slot] == 0);
        cr_assert_eq(rc, *slot < m->n ? 0 : TS_ENOTFOUND,
                     "seed %" PRIu64 ": a long-lived snapshot cursor's next: %s", e->seed,
                     ts_errname(rc));
    }
}

static uint32_t last_live(const struct bte_model *m, const uint32_t *ver)
{
    uint32_t s = m->n;
    while (s > 0 && ver[s - 1] == 0) {
        s--;
    }
    cr_assert_gt(s, 0, "the snapshot's model is empty");
    return s - 1;
}

/* Overwrites or deletes about half of the keys (and puts some new ones), reading the
 * snapshot (at ver) in between: short scans, and the long-lived cursor's walk. */
static void snapshot_round(struct bte_env *e, struct bte_model *m, struct ts_rand *r,
                           uint32_t round, struct btree_snapshot *snap, const uint32_t *ver,
                           struct btree_cursor *walker, uint32_t *walk_slot)
{
    for (uint32_t k = 0; k < m->n; k++) {
        uint32_t slot = (uint32_t)((k * 7919ull + round) % m->n);
        uint64_t dice = ts_rand_below(r, 6);
        if (dice < 2) {
            bte_put_slot(e, m, slot);
        } else if (dice == 2 && m->ver[slot] != 0) {
            bte_delete_slot(e, m, slot);
        }
        if (k % 500 == 0) {
            scan_forward(e, m, ver, (uint32_t)ts_rand_below(r, m->n), 50, snap,
                         "snapshot mid-round");
        }
        if (k % 40 == 0) {
            walk_snapshot(e, m, ver, snap, walker, walk_slot, 3);
        }
    }
}

Test(btree_cache, a_snapshot_reads_its_checkpoint_through_a_tiny_shared_cache)
{
    static struct bte_model m;
    static uint32_t old1[BTE_KEYS_MAX], old2[BTE_KEYS_MAX];
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct bte_env e;
        bte_env_init(&e, 60 + seed, seed == 2 ? 4096 : 512, seed == 2 ? CACHE_SMALL : 16 * 512);
        struct ts_rand r;
        ts_rand_seed(&r, 60 + seed);
        bte_model_init(&m, &r, 2500, 25, &SHAPE);
        for (uint32_t i = 0; i < m.n; i++) {
            if (ts_rand_chance(&r, 2, 3)) {
                bte_put_slot(&e, &m, i);
            }
        }
        checkpoint(&e, 1);
        memcpy(old1, m.ver, sizeof(old1));
        struct btree_snapshot *s1, *s2 = NULL;
        cr_assert_eq(btree_snapshot_open(e.t, &s1), 0);
        cr_assert_eq(btree_snapshot_checkpoint(s1), 1);
        /* A snapshot cursor stays valid until its snapshot closes: this one walks the
         * snapshot a few keys at a time while the tree changes under it. */
        struct btree_cursor walker;
        uint32_t walk_slot = m.n;
        for (uint32_t round = 0; round < 5; round++) {
            snapshot_round(&e, &m, &r, round, s1, old1, &walker, &walk_slot);
            checkpoint(&e, 2 + round);
            if (round == 1) {
                memcpy(old2, m.ver, sizeof(old2));
                cr_assert_eq(btree_snapshot_open(e.t, &s2), 0);
                cr_assert_eq(btree_snapshot_checkpoint(s2), 3);
            }
            scan_forward(&e, &m, old1, m.n, UINT32_MAX, s1, "snapshot 1");
            scan_backward(&e, &m, old1, last_live(&m, old1), UINT32_MAX, s1);
            if (s2 != NULL) {
                scan_forward(&e, &m, old2, m.n, UINT32_MAX, s2, "snapshot 2");
                scan_backward(&e, &m, old2, last_live(&m, old2), UINT32_MAX, s2);
            }
        }
        verify_all(&e, &m, m.ver, "the live tree beside snapshots");
        struct btree_stats st = bte_stats(&e);
        cr_assert_gt(st.evictions, 0, "seed %" PRIu64, seed);
        cr_assert_gt(st.evicted_dirty, 0, "seed %" PRIu64, seed);
        btree_snapshot_close(s1);
        btree_snapshot_close(s2);
        /* Once closed, their pages are reused: a few more rounds stop growing the file. */
        uint64_t settled = 0;
        for (uint32_t round = 0; round < 6; round++) {
            for (uint32_t k = 0; k < m.n; k++) {
                if (m.ver[k] != 0) {
                    bte_put_slot(&e, &m, k);
                }
            }
            checkpoint(&e, 100 + round);
            if (round == 2) {
                settled = bte_stats(&e).page_count;
            }
        }
        cr_assert_leq(bte_stats(&e).page_count, settled,
                      "seed %" PRIu64 ": the snapshots' pages are not reused", seed);
        bte_env_reopen(&e);
        verify_all(&e, &m, m.ver, "after the snapshots and a reopen");
        check_file(&e, &m, m.ver);
        bte_env_fini(&e);
    }
}

/* ------------------------------------------------------------------ sticky errors */

/* After a failed write, every call fails with err, and keeps failing once the disk is
 * fine again. */
static void expect_sticky(struct bte_env *e, const struct bte_model *m, int err, const char *when)
{
    uint8_t key[TS_KEY_BYTES_MAX];
    uint32_t len;
    uint64_t n;
    struct btree_cursor c;
    struct btree_snapshot *s;
    const uint8_t *k0 = m->key[0].b;
    uint32_t k0_len = m->key[0].len;
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(btree_get(e->t, k0, k0_len, e->got, sizeof(e->got), &len), err,
                     "seed %" PRIu64 " %s: get", e->seed, when);
        cr_assert_eq(btree_put(e->t, k0, k0_len, "v", 1), err, "seed %" PRIu64 " %s: put", e->seed,
                     when);
        cr_assert_eq(btree_delete(e->t, k0, k0_len), err, "seed %" PRIu64 " %s: delete", e->seed,
                     when);
        cr_assert_eq(btree_delete_range(e->t, NULL, 0, NULL, 0, &n), err,
                     "seed %" PRIu64 " %s: delete_range", e->seed, when);
        cr_assert_eq(btree_count(e->t, NULL, 0, NULL, 0, &n), err, "seed %" PRIu64 " %s: count",
                     e->seed, when);
        cr_assert_eq(btree_range_bytes(e->t, NULL, 0, NULL, 0, &n), err,
                     "seed %" PRIu64 " %s: range_bytes", e->seed, when);
        cr_assert_eq(btree_middle_key(e->t, NULL, 0, NULL, 0, key, &len), err,
                     "seed %" PRIu64 " %s: middle_key", e->seed, when);
        cr_assert_eq(btree_cursor_seek(&c, e->t, NULL, 0), err, "seed %" PRIu64 " %s: seek",
                     e->seed, when);
        cr_assert_eq(btree_cursor_last(&c, e->t), err, "seed %" PRIu64 " %s: last", e->seed, when);
        cr_assert_eq(btree_snapshot_open(e->t, &s), err, "seed %" PRIu64 " %s: snapshot", e->seed,
                     when);
        cr_assert_eq(btree_checkpoint(e->t, NULL, 0), err, "seed %" PRIu64 " %s: checkpoint",
                     e->seed, when);
    }
}

/* Reopens after a sticky error: the tree is the last checkpoint's, and works. */
static void recover(struct bte_env *e, struct bte_model *m, const uint32_t *durable,
                    const char *when)
{
    bte_env_reopen(e);
    memcpy(m->ver, durable, sizeof(m->ver));
    verify_all(e, m, m->ver, when);
    for (uint32_t i = 0; i < 50; i++) {
        bte_put_slot(e, m, i);
    }
    checkpoint(e, 99);
    verify_all(e, m, m->ver, when);
    check_file(e, m, m->ver);
}

/* Puts until a call fails (a write the disk refuses); returns its error. */
static int put_until_error(struct bte_env *e, struct bte_model *m, struct ts_rand *r)
{
    for (uint32_t op = 0; op < 5000; op++) {
        uint32_t slot = (uint32_t)ts_rand_below(r, m->n);
        uint32_t v = m->next_ver++;
        uint32_t len = bte_value_len(m, slot, v);
        bte_value_fill(slot, v, e->want, len);
        int rc = btree_put(e->t, m->key[slot].b, m->key[slot].len, e->want, len);
        if (rc != 0) {
            return rc;
        }
        m->ver[slot] = v;
    }
    return 0;
}

Test(btree_cache, a_failed_eviction_write_is_sticky)
{
    static struct bte_model m;
    static uint32_t durable[BTE_KEYS_MAX];
    for (uint64_t seed = 1; seed <= 2; seed++) {
        struct bte_env e;
        bte_env_init(&e, 70 + seed, 4096, CACHE_SMALL);
        struct ts_rand r;
        ts_rand_seed(&r, 70 + seed);
        bte_model_init(&m, &r, 3000, 20, &SHAPE);
        for (uint32_t i = 0; i < m.n; i += 2) {
            bte_put_slot(&e, &m, i);
        }
        checkpoint(&e, 1);
        memcpy(durable, m.ver, sizeof(durable));
        /* Only eviction writes between checkpoints: the first one fails, once. */
        uint64_t evicted = bte_stats(&e).evicted_dirty;
        int err = seed == 1 ? EIO : ENOSPC;
        disk_sim_fail(e.sim, DISK_SIM_FAULT_WRITE, err, 0, false);
        int rc = put_until_error(&e, &m, &r);
        cr_assert_eq(rc, -err, "seed %" PRIu64 ": the failed eviction returned %s", seed,
                     ts_errname(rc));
        cr_assert_gt(bte_stats(&e).evicted_dirty, evicted, "seed %" PRIu64, seed);
        expect_sticky(&e, &m, -err, "after a failed eviction");
        recover(&e, &m, durable, "after a failed eviction");
        bte_env_fini(&e);
    }
}

Test(btree_cache, a_failed_checkpoint_is_sticky)
{
    static struct bte_model m;
    static uint32_t durable[BTE_KEYS_MAX];
    /* Kinds and positions: the first page write, a later page write, the fdatasync of
     * the pages, and the meta page's write-and-sync. */
    const struct {
        uint32_t kinds;
        uint32_t after;
    } faults[] = {
        {DISK_SIM_FAULT_WRITE, 0},
        {DISK_SIM_FAULT_WRITE, 1},
        {DISK_SIM_FAULT_SYNC, 0},
        {DISK_SIM_FAULT_SYNC, 1},
    };
    for (uint64_t f = 0; f < sizeof(faults) / sizeof(faults[0]); f++) {
        struct bte_env e;
        uint64_t seed = 80 + f;
        bte_env_init(&e, seed, 4096, 0); /* the default cache: no evictions */
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        bte_model_init(&m, &r, 2000, 20, &SHAPE);
        for (uint32_t i = 0; i < m.n; i += 2) {
            bte_put_slot(&e, &m, i);
        }
        checkpoint(&e, 1);
        memcpy(durable, m.ver, sizeof(durable));
        for (uint32_t op = 0; op < 1500; op++) {
            random_op(&e, &m, &r);
        }
        cr_assert_eq(bte_stats(&e).evicted_dirty, 0, "seed %" PRIu64, seed);
        disk_sim_fail(e.sim, faults[f].kinds, EIO, faults[f].after, false);
        int rc = btree_checkpoint(e.t, NULL, 0);
        cr_assert_eq(rc, -EIO, "seed %" PRIu64 ": checkpoint returned %s", seed, ts_errname(rc));
        expect_sticky(&e, &m, -EIO, "after a failed checkpoint");
        /* A failed meta sync may leave the new meta page written: then the reopen finds
         * the new checkpoint, complete. Otherwise the previous one. */
        bte_env_reopen(&e);
        uint64_t id = bte_stats(&e).checkpoint_id;
        cr_assert(id == 1 ||
                      (id == 2 && faults[f].kinds == DISK_SIM_FAULT_SYNC && faults[f].after == 1),
                  "seed %" PRIu64 ": reopened checkpoint %" PRIu64, seed, id);
        if (id == 2) {
            memcpy(durable, m.ver, sizeof(durable));
        }
        recover(&e, &m, durable, "after a failed checkpoint");
        bte_env_fini(&e);
    }
}
