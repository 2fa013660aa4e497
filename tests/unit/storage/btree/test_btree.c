/* storage/btree: the tree against a reference model on the simulated disk: random
 * puts, gets and deletes with checkpoints, clean reopens, crashes between checkpoints
 * and at every step of a checkpoint. */
#include "btree_testenv.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/rand.h"
#include "storage/btree/btree.h"
#include "storage/btree/page.h"
#include "storage/disk/disk_sim.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_MAX 600
#define VALUE_MAX (200 * 1024)

struct ref_kv {
    uint8_t key[1024];
    uint32_t key_len;
    uint8_t *value;
    uint32_t value_len;
    bool live;
};

struct model {
    struct ref_kv kv[KEYS_MAX];
};

static void model_copy(struct model *dst, const struct model *src)
{
    for (int i = 0; i < KEYS_MAX; i++) {
        free(dst->kv[i].value);
        dst->kv[i] = src->kv[i];
        dst->kv[i].value = NULL;
        if (src->kv[i].live && src->kv[i].value_len > 0) {
            dst->kv[i].value = malloc(src->kv[i].value_len);
            memcpy(dst->kv[i].value, src->kv[i].value, src->kv[i].value_len);
        }
    }
}

static void model_free(struct model *m)
{
    for (int i = 0; i < KEYS_MAX; i++) {
        free(m->kv[i].value);
        m->kv[i].value = NULL;
    }
}

/* Key i: a few short keys share prefixes; some are long (up to 1024 bytes). */
static void make_key(struct ref_kv *kv, int i, struct ts_rand *r, uint32_t key_max)
{
    uint32_t len = ts_rand_chance(r, 1, 20) ? 100 + (uint32_t)ts_rand_below(r, 925) : 8;
    len = len > key_max ? key_max : len;
    char head[16];
    snprintf(head, sizeof(head), "%07d", i * 7919 % 1000003);
    memset(kv->key, 'k', len);
    memcpy(kv->key, head, 7);
    kv->key[7] = (uint8_t)i;
    kv->key_len = len;
}

static uint32_t value_len_for(struct ts_rand *r)
{
    if (ts_rand_chance(r, 1, 30)) {
        return 1 + (uint32_t)ts_rand_below(r, VALUE_MAX); /* overflow pages */
    }
    return (uint32_t)ts_rand_below(r, 300);
}

static void check_model(struct bte_env *e, const struct model *m, const char *when)
{
    static uint8_t buf[VALUE_MAX];
    for (int i = 0; i < KEYS_MAX; i++) {
        const struct ref_kv *kv = &m->kv[i];
        if (kv->key_len == 0) {
            continue;
        }
        uint32_t len = 0;
        int rc = btree_get(e->t, kv->key, kv->key_len, buf, sizeof(buf), &len);
        if (!kv->live) {
            cr_assert_eq(rc, TS_ENOTFOUND, "seed %lu %s: key %d should be absent: %s",
                         (unsigned long)e->seed, when, i, ts_errname(rc));
            continue;
        }
        cr_assert_eq(rc, 0, "seed %lu %s: key %d: %s", (unsigned long)e->seed, when, i,
                     ts_errname(rc));
        cr_assert_eq(len, kv->value_len, "seed %lu %s: key %d length", (unsigned long)e->seed, when,
                     i);
        cr_assert(len == 0 || memcmp(buf, kv->value, len) == 0, "seed %lu %s: key %d bytes",
                  (unsigned long)e->seed, when, i);
    }
}

static void random_op(struct bte_env *e, struct model *m, struct ts_rand *r, uint8_t *vbuf)
{
    int i = (int)ts_rand_below(r, KEYS_MAX);
    struct ref_kv *kv = &m->kv[i];
    if (kv->key_len == 0) {
        make_key(kv, i, r, btp_key_bytes_max(e->page_bytes));
    }
    if (ts_rand_chance(r, 1, 4)) {
        int rc = btree_delete(e->t, kv->key, kv->key_len);
        cr_assert_eq(rc, kv->live ? 0 : TS_ENOTFOUND, "seed %lu: delete %d: %s",
                     (unsigned long)e->seed, i, ts_errname(rc));
        kv->live = false;
        return;
    }
    uint32_t len = value_len_for(r);
    for (uint32_t b = 0; b < len; b++) {
        vbuf[b] = (uint8_t)(ts_rand_u64(r) >> 3);
    }
    int rc = btree_put(e->t, kv->key, kv->key_len, vbuf, len);
    cr_assert_eq(rc, 0, "seed %lu: put %d (%u bytes): %s", (unsigned long)e->seed, i, len,
                 ts_errname(rc));
    free(kv->value);
    kv->value = len > 0 ? malloc(len) : NULL;
    if (len > 0) {
        memcpy(kv->value, vbuf, len);
    }
    kv->value_len = len;
    kv->live = true;
}

Test(btree, random_operations_checkpoints_and_reopens)
{
    static uint8_t vbuf[VALUE_MAX];
    const uint32_t sizes[] = {512, 4096, 16384};
    for (uint64_t seed = 1; seed <= 6; seed++) {
        struct bte_env e;
        bte_env_init(&e, seed, sizes[seed % 3], 0);
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        static struct model m, durable;
        memset(&m, 0, sizeof(m));
        memset(&durable, 0, sizeof(durable));
        for (int op = 1; op <= 3000; op++) {
            random_op(&e, &m, &r, vbuf);
            if (op % 250 == 0) {
                uint64_t stamp = (uint64_t)op;
                cr_assert_eq(btree_checkpoint(e.t, &stamp, sizeof(stamp)), 0);
                model_copy(&durable, &m);
            }
            if (op % 1000 == 500) { /* crash with changes since the checkpoint: lost */
                disk_sim_crash(e.sim, DISK_SIM_CRASH_RANDOM, 0);
                btree_close(e.t);
                bte_env_open(&e);
                model_copy(&m, &durable);
                check_model(&e, &m, "after a crash");
                const uint8_t *user;
                uint32_t user_len;
                btree_user(e.t, &user, &user_len);
                cr_assert_eq(user_len, 8);
            }
            if (op % 1000 == 0) {
                btree_close(e.t);
                bte_env_open(&e);
                check_model(&e, &m, "after a clean reopen");
            }
        }
        check_model(&e, &m, "at the end");
        struct btree_stats st;
        btree_get_stats(e.t, &st);
        cr_assert_geq(st.height, 2, "seed %lu: splits happened", (unsigned long)seed);
        btree_close(e.t);
        model_free(&m);
        model_free(&durable);
        disk_destroy(e.disk);
    }
}

Test(btree, a_crash_at_any_step_of_a_checkpoint_keeps_the_old_or_the_new)
{
    static uint8_t vbuf[VALUE_MAX];
    uint32_t kept_old = 0, kept_new = 0;
    for (uint32_t step = 0; step < 40; step++) {
        struct bte_env e;
        bte_env_init(&e, 100 + step, 512, 0);
        struct ts_rand r;
        ts_rand_seed(&r, 100 + step);
        static struct model before, after;
        memset(&before, 0, sizeof(before));
        memset(&after, 0, sizeof(after));
        for (int op = 0; op < 150; op++) {
            random_op(&e, &after, &r, vbuf);
        }
        cr_assert_eq(btree_checkpoint(e.t, NULL, 0), 0);
        model_copy(&before, &after);
        for (int op = 0; op < 150; op++) {
            random_op(&e, &after, &r, vbuf);
        }
        /* Let the checkpoint run `after` disk operations (spread over all of them: one
         * write per dirty page, a sync, the meta page's write and sync), then lose
         * power: the disk fails every later operation, so the checkpoint stops there. */
        struct btree_stats pre;
        btree_get_stats(e.t, &pre);
        uint32_t fail_after = (uint32_t)(step * (pre.dirty_pages + 4) / 39);
        disk_sim_fail(e.sim, DISK_SIM_FAULT_ALL, EIO, fail_after, true);
        int rc = btree_checkpoint(e.t, NULL, 0);
        disk_sim_fail_clear(e.sim);
        disk_sim_crash(e.sim, DISK_SIM_CRASH_RANDOM, 0);
        btree_close(e.t);
        bte_env_open(&e);
        struct btree_stats st;
        btree_get_stats(e.t, &st);
        check_model(&e, st.checkpoint_id == 2 ? &after : &before,
                    rc == 0 ? "checkpoint completed" : "checkpoint cut short");
        cr_assert(rc != 0 || st.checkpoint_id == 2, "seed %u: a completed checkpoint is kept",
                  100 + step);
        kept_old += st.checkpoint_id == 1;
        kept_new += st.checkpoint_id == 2;
        btree_close(e.t);
        model_free(&before);
        model_free(&after);
        disk_destroy(e.disk);
    }
    cr_assert(kept_old > 0 && kept_new > 0, "both outcomes happen: old %u, new %u", kept_old,
              kept_new);
}

Test(btree, steady_overwrite_stops_growing_the_file)
{
    struct bte_env e;
    bte_env_init(&e, 7, 4096, 0);
    uint8_t value[200];
    uint64_t pages_after[8];
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < 2000; i++) {
            char key[16];
            snprintf(key, sizeof(key), "key%06d", i);
            memset(value, round, sizeof(value));
            cr_assert_eq(btree_put(e.t, key, (uint32_t)strlen(key), value, sizeof(value)), 0);
        }
        cr_assert_eq(btree_checkpoint(e.t, NULL, 0), 0);
        struct btree_stats st;
        btree_get_stats(e.t, &st);
        pages_after[round] = st.page_count;
    }
    /* Each checkpoint frees the previous tree's pages for the one after: the file holds
     * at most about two trees and stops growing after the first rounds. */
    cr_assert_eq(pages_after[7], pages_after[3], "pages: %lu after round 4, %lu after 8",
                 (unsigned long)pages_after[3], (unsigned long)pages_after[7]);
    btree_close(e.t);
    disk_destroy(e.disk);
}

Test(btree, bad_arguments_and_a_corrupt_page)
{
    struct bte_env e;
    bte_env_init(&e, 9, 4096, 0);
    uint8_t big[1025] = {0};
    cr_assert_eq(btree_put(e.t, big, 1025, "v", 1), TS_ETOOBIG);
    cr_assert_eq(btree_put(e.t, big, 0, "v", 1), TS_ETOOBIG);
    cr_assert_eq(btree_put(e.t, "k", 1, big, TS_VALUE_BYTES_MAX + 1), TS_ETOOBIG);
    cr_assert_eq(btree_delete(e.t, "k", 1), TS_ENOTFOUND);
    for (int i = 0; i < 500; i++) {
        char key[16];
        snprintf(key, sizeof(key), "key%06d", i);
        cr_assert_eq(btree_put(e.t, key, (uint32_t)strlen(key), "value", 5), 0);
    }
    cr_assert_eq(btree_checkpoint(e.t, NULL, 0), 0);
    btree_close(e.t);
    cr_assert_eq(disk_sim_flip_bit(e.sim, "tree", 2 * 4096 + 100, 3), 0);
    /* Opening reads only the meta pages and the free list: the damage shows when the
     * page is read, as TS_ECORRUPT naming the file and the page, and nothing else. */
    char err[256] = "";
    struct btree_config cfg = {.path = "tree"};
    int rc = btree_open(&cfg, e.disk, ts_allocator_default(), &e.t, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s: %s", ts_errname(rc), err);
    int corrupt = 0, fine = 0;
    for (int i = 0; i < 500; i++) {
        char key[16], value[8];
        uint32_t len;
        snprintf(key, sizeof(key), "key%06d", i);
        rc = btree_get(e.t, key, (uint32_t)strlen(key), value, sizeof(value), &len);
        if (rc == TS_ECORRUPT) {
            corrupt++;
            const char *why = btree_last_error(e.t);
            const char *page = strstr(why, "page 2:");
            cr_assert(strstr(why, "tree") != NULL && page != NULL, "%s", why);
            cr_assert_null(strstr(page + 1, "page 2:"), "the page is named once: %s", why);
        } else {
            cr_assert_eq(rc, 0, "%s", ts_errname(rc));
            cr_assert(len == 5 && memcmp(value, "value", 5) == 0);
            fine++;
        }
    }
    cr_assert(corrupt > 0 && corrupt + fine == 500, "%d corrupt reads", corrupt);
    btree_close(e.t);
    disk_destroy(e.disk);
}

/* ---- cursors and ranges against a sorted reference ---- */

#define CK_MAX 3000

static int cmp_keys(const void *a, const void *b)
{
    return memcmp(a, b, 12);
}

/* Keys are 12 bytes ("ck" + 10 digits) so memcmp order is numeric order. */
static void ck_key(uint8_t *out, uint32_t n)
{
    char tmp[16];
    snprintf(tmp, sizeof(tmp), "ck%010u", n);
    memcpy(out, tmp, 12);
}

static uint32_t ref_lower_bound(uint8_t (*keys)[12], uint32_t n, const uint8_t *key)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (memcmp(keys[mid], key, 12) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void check_cursor_walks(struct bte_env *e, uint8_t (*keys)[12], uint32_t n)
{
    struct btree_cursor c;
    uint32_t i = 0;
    for (int rc = btree_cursor_seek(&c, e->t, NULL, 0); rc == 0; rc = btree_cursor_next(&c)) {
        const uint8_t *k;
        uint32_t len;
        btree_cursor_key(&c, &k, &len);
        cr_assert_lt(i, n, "seed %lu: more keys than put", (unsigned long)e->seed);
        cr_assert(len == 12 && memcmp(k, keys[i], 12) == 0, "seed %lu: key %u forward",
                  (unsigned long)e->seed, i);
        i++;
    }
    cr_assert_eq(i, n, "seed %lu: forward walk saw %u of %u", (unsigned long)e->seed, i, n);
    for (int rc = btree_cursor_last(&c, e->t); rc == 0; rc = btree_cursor_prev(&c)) {
        const uint8_t *k;
        uint32_t len;
        btree_cursor_key(&c, &k, &len);
        cr_assert(i > 0 && memcmp(k, keys[i - 1], 12) == 0, "seed %lu: key %u backward",
                  (unsigned long)e->seed, i - 1);
        i--;
    }
    cr_assert_eq(i, 0, "seed %lu: backward walk stopped early", (unsigned long)e->seed);
}

Test(btree, cursors_counts_and_delete_range_match_a_sorted_reference)
{
    static uint8_t keys[CK_MAX][12];
    static bool present[CK_MAX];
    for (uint64_t seed = 1; seed <= 4; seed++) {
        struct bte_env e;
        bte_env_init(&e, 200 + seed, seed % 2 ? 512 : 4096, 0);
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        memset(present, 0, sizeof(present));
        for (int op = 0; op < 6000; op++) { /* puts and deletes leave empty leaves behind */
            uint32_t k = (uint32_t)ts_rand_below(&r, CK_MAX);
            uint8_t key[12];
            ck_key(key, k * 3);
            if (ts_rand_chance(&r, 1, 3)) {
                int rc = btree_delete(e.t, key, 12);
                cr_assert_eq(rc, present[k] ? 0 : TS_ENOTFOUND);
                present[k] = false;
            } else {
                cr_assert_eq(btree_put(e.t, key, 12, "v", 1), 0);
                present[k] = true;
            }
        }
        uint32_t n = 0;
        for (uint32_t k = 0; k < CK_MAX; k++) {
            if (present[k]) {
                ck_key(keys[n++], k * 3);
            }
        }
        qsort(keys, n, 12, cmp_keys);
        check_cursor_walks(&e, keys, n);
        for (int q = 0; q < 200; q++) { /* seeks between, on and past keys */
            uint8_t probe[12];
            ck_key(probe, (uint32_t)ts_rand_below(&r, CK_MAX * 3 + 10));
            uint32_t want = ref_lower_bound(keys, n, probe);
            struct btree_cursor c;
            int rc = btree_cursor_seek(&c, e.t, probe, 12);
            cr_assert_eq(rc, want < n ? 0 : TS_ENOTFOUND, "seed %lu seek", (unsigned long)seed);
            if (rc == 0) {
                const uint8_t *k;
                uint32_t len;
                btree_cursor_key(&c, &k, &len);
                cr_assert(memcmp(k, keys[want], 12) == 0, "seed %lu: seek lands on %u",
                          (unsigned long)seed, want);
            }
            uint8_t hi[12];
            ck_key(hi, (uint32_t)ts_rand_below(&r, CK_MAX * 3 + 10));
            uint32_t end = ref_lower_bound(keys, n, hi);
            uint64_t count;
            cr_assert_eq(btree_count(e.t, probe, 12, hi, 12, &count), 0);
            cr_assert_eq(count, end > want ? end - want : 0, "seed %lu: count",
                         (unsigned long)seed);
        }
        /* Delete a middle third, then the walks and a count must agree. */
        uint8_t lo[12], hi[12];
        ck_key(lo, CK_MAX);
        ck_key(hi, 2 * CK_MAX);
        uint32_t a = ref_lower_bound(keys, n, lo), b = ref_lower_bound(keys, n, hi);
        uint64_t deleted;
        cr_assert_eq(btree_delete_range(e.t, lo, 12, hi, 12, &deleted), 0);
        cr_assert_eq(deleted, b - a, "seed %lu: delete_range count", (unsigned long)seed);
        memmove(keys[a], keys[b], (size_t)(n - b) * 12);
        n -= b - a;
        check_cursor_walks(&e, keys, n);
        cr_assert_eq(btree_checkpoint(e.t, NULL, 0), 0);
        btree_close(e.t);
        bte_env_open(&e);
        check_cursor_walks(&e, keys, n);
        btree_close(e.t);
        disk_destroy(e.disk);
    }
}

/* ---- the model test: >= 10^6 operations over many seeds ---- */

/* A reference of MODEL_KEYS possible keys (12 bytes, ordered by number) with values of
 * 0..60 bytes derived from (key, version), so the reference stores only versions. */
#define MODEL_KEYS 4000

static void model_value(uint32_t k, uint32_t version, uint8_t *out, uint32_t *len)
{
    *len = (k * 31 + version * 17) % 61;
    for (uint32_t i = 0; i < *len; i++) {
        out[i] = (uint8_t)(k + version + i);
    }
}

static void model_scan(struct bte_env *e, const uint32_t *version, uint32_t from, uint32_t limit)
{
    uint8_t key[12], want[64], got[64];
    ck_key(key, from);
    struct btree_cursor c;
    int rc = btree_cursor_seek(&c, e->t, key, 12);
    for (uint32_t k = from; k < MODEL_KEYS && limit > 0; k++) {
        if (version[k] == 0) {
            continue;
        }
        cr_assert_eq(rc, 0, "seed %lu: scan ends before key %u", (unsigned long)e->seed, k);
        const uint8_t *ck;
        uint32_t len, wlen, glen;
        btree_cursor_key(&c, &ck, &len);
        ck_key(key, k);
        cr_assert(len == 12 && memcmp(ck, key, 12) == 0, "seed %lu: scan at key %u",
                  (unsigned long)e->seed, k);
        model_value(k, version[k], want, &wlen);
        cr_assert_eq(btree_cursor_value(&c, got, sizeof(got), &glen), 0);
        cr_assert(glen == wlen && memcmp(got, want, wlen) == 0, "seed %lu: value of key %u",
                  (unsigned long)e->seed, k);
        rc = btree_cursor_next(&c);
        limit--;
    }
}

static void model_op(struct bte_env *e, struct ts_rand *r, uint32_t *version)
{
    uint32_t k = (uint32_t)ts_rand_below(r, MODEL_KEYS);
    uint8_t key[12], val[64], got[64];
    uint32_t len, glen;
    ck_key(key, k);
    uint64_t dice = ts_rand_below(r, 100);
    if (dice < 45) {
        model_value(k, ++version[k], val, &len);
        cr_assert_eq(btree_put(e->t, key, 12, val, len), 0, "seed %lu", (unsigned long)e->seed);
    } else if (dice < 65) {
        int rc = btree_delete(e->t, key, 12);
        cr_assert_eq(rc, version[k] != 0 ? 0 : TS_ENOTFOUND, "seed %lu: delete %u",
                     (unsigned long)e->seed, k);
        version[k] = 0;
    } else if (dice < 98) {
        int rc = btree_get(e->t, key, 12, got, sizeof(got), &glen);
        cr_assert_eq(rc, version[k] != 0 ? 0 : TS_ENOTFOUND, "seed %lu: get %u",
                     (unsigned long)e->seed, k);
        model_value(k, version[k], val, &len);
        cr_assert(rc != 0 || (glen == len && memcmp(got, val, len) == 0), "seed %lu: get %u value",
                  (unsigned long)e->seed, k);
    } else {
        model_scan(e, version, k, 100); /* a 100-key range scan */
    }
}

Test(btree, a_million_operations_against_the_model)
{
    static uint32_t version[MODEL_KEYS];
    uint32_t seeds = 20, ops = 50000; /* 10^6 operations in all */
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        struct bte_env e;
        bte_env_init(&e, 300 + seed, seed % 3 == 0 ? 512 : 4096, 0);
        struct ts_rand r;
        ts_rand_seed(&r, 300 + seed);
        memset(version, 0, sizeof(version));
        for (uint32_t op = 1; op <= ops; op++) {
            model_op(&e, &r, version);
            if (op % 5000 == 0) {
                cr_assert_eq(btree_checkpoint(e.t, NULL, 0), 0);
            }
            if (op % 25000 == 0) { /* a clean reopen, then a full scan */
                btree_close(e.t);
                bte_env_open(&e);
                model_scan(&e, version, 0, MODEL_KEYS);
            }
        }
        model_scan(&e, version, 0, MODEL_KEYS);
        struct btree_stats st;
        btree_get_stats(e.t, &st);
        cr_assert_eq(st.checkpoint_id, ops / 5000, "seed %lu: every checkpoint ran",
                     (unsigned long)seed);
        cr_assert_geq(st.height, 2, "seed %lu: a tree of several levels", (unsigned long)seed);
        btree_close(e.t);
        disk_destroy(e.disk);
    }
}

/* ---- snapshots ---- */

static void snap_check(struct btree_snapshot *s, uint32_t n, uint32_t version)
{
    struct btree_cursor c;
    uint32_t seen = 0;
    for (int rc = btree_snapshot_seek(&c, s, NULL, 0); rc == 0; rc = btree_cursor_next(&c)) {
        const uint8_t *k;
        uint32_t len, vlen;
        uint8_t key[12], want[64], got[64];
        btree_cursor_key(&c, &k, &len);
        ck_key(key, seen);
        cr_assert(len == 12 && memcmp(k, key, 12) == 0, "snapshot key %u", seen);
        model_value(seen, version, want, &vlen);
        uint32_t glen;
        cr_assert_eq(btree_cursor_value(&c, got, sizeof(got), &glen), 0);
        cr_assert(glen == vlen && memcmp(got, want, vlen) == 0, "snapshot value %u", seen);
        seen++;
    }
    cr_assert_eq(seen, n, "the snapshot holds %u keys, saw %u", n, seen);
}

static void overwrite_all(struct bte_env *e, uint32_t n, uint32_t version)
{
    for (uint32_t k = 0; k < n; k++) {
        uint8_t key[12], val[64];
        uint32_t len;
        ck_key(key, k);
        model_value(k, version, val, &len);
        cr_assert_eq(btree_put(e->t, key, 12, val, len), 0);
    }
    cr_assert_eq(btree_checkpoint(e->t, NULL, 0), 0);
}

Test(btree, a_snapshot_sees_its_checkpoint_while_writes_go_on)
{
    struct bte_env e;
    bte_env_init(&e, 400, 512, 0);
    const uint32_t n = 3000;
    overwrite_all(&e, n, 1);
    struct btree_snapshot *s;
    cr_assert_eq(btree_snapshot_open(e.t, &s), 0);
    cr_assert_eq(btree_snapshot_checkpoint(s), 1);
    struct btree_stats st;
    btree_get_stats(e.t, &st);
    uint64_t pages_at_open = st.page_count;
    for (uint32_t v = 2; v <= 6; v++) { /* without the pin these would reuse its pages */
        overwrite_all(&e, n, v);
        snap_check(s, n, 1);
    }
    uint8_t key[12], got[64];
    uint32_t glen;
    ck_key(key, 5);
    cr_assert_eq(btree_get(e.t, key, 12, got, sizeof(got), &glen), 0);
    btree_get_stats(e.t, &st);
    cr_assert_gt(st.page_count, 2 * pages_at_open, "pinned pages are not reused");
    btree_snapshot_close(s);
    for (uint32_t v = 7; v <= 9; v++) {
        overwrite_all(&e, n, v);
    }
    btree_get_stats(e.t, &st);
    uint64_t settled = st.page_count;
    for (uint32_t v = 10; v <= 14; v++) {
        overwrite_all(&e, n, v);
    }
    btree_get_stats(e.t, &st);
    cr_assert_eq(st.page_count, settled, "after the snapshot closed, space is reused");
    btree_close(e.t);
    disk_destroy(e.disk);
}
