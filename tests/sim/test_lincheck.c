/* tests/sim/lincheck: hand-written histories per op kind, generated legal histories and
 * one-mutation illegal ones, the step bound, and a 100,000-op history. */
#include "tests/sim/lincheck.h"

#include "core/util/rand.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* As a return time in the helpers below: the op is lost. */
#define LOST UINT64_MAX
/* As a return time: the op is left pending (lin_check treats it as lost). */
#define PENDING (UINT64_MAX - 1)
#define KEY 7

static char why[1024];

static uint32_t record(struct lin_history *h, uint8_t kind, uint64_t a1, uint64_t a2,
                       uint64_t result, uint64_t t_inv, uint64_t t_ret)
{
    uint32_t client = (uint32_t)lin_history_ops(h);
    uint32_t id = lin_invoke(h, client, kind, KEY, a1, a2, t_inv);
    if (t_ret == LOST) {
        lin_lost(h, id);
    } else if (t_ret != PENDING) {
        lin_return(h, id, result, t_ret);
    }
    return id;
}

static void put(struct lin_history *h, uint64_t v, uint64_t t_inv, uint64_t t_ret)
{
    record(h, LIN_PUT, v, 0, 0, t_inv, t_ret);
}

static void get(struct lin_history *h, uint64_t v, uint64_t t_inv, uint64_t t_ret)
{
    record(h, LIN_GET, 0, 0, v, t_inv, t_ret);
}

static void cas(struct lin_history *h, uint64_t expected, uint64_t value, bool swapped,
                uint64_t t_inv, uint64_t t_ret)
{
    record(h, LIN_CAS, expected, value, swapped, t_inv, t_ret);
}

/* Checks h unbounded, frees it, and returns the result. */
static enum lin_result check(struct lin_history *h)
{
    why[0] = 'x';
    enum lin_result r = lin_check(h, 0, why, sizeof(why));
    lin_history_free(h);
    if (r == LIN_OK) {
        cr_assert_str_empty(why);
    } else {
        cr_assert(strstr(why, "key 7") != NULL, "why: %s", why);
    }
    return r;
}

Test(lincheck, empty_history_is_legal)
{
    struct lin_history *h = lin_history_new();
    cr_assert_eq(lin_history_ops(h), 0);
    cr_assert_eq(check(h), LIN_OK);
}

Test(lincheck, get_of_absent_key_before_any_put)
{
    struct lin_history *h = lin_history_new();
    get(h, 0, 0, 10);
    put(h, 1, 20, 30);
    get(h, 1, 40, 50);
    cr_assert_eq(check(h), LIN_OK);
    h = lin_history_new();
    put(h, 1, 0, 10);
    get(h, 0, 20, 30);
    cr_assert_eq(check(h), LIN_ILLEGAL, "%s", why);
}

Test(lincheck, stale_read_after_a_completed_put_is_illegal)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    put(h, 2, 20, 30);
    get(h, 1, 40, 50);
    cr_assert_eq(check(h), LIN_ILLEGAL);
    cr_assert(strstr(why, "GET -> 1") != NULL, "why: %s", why);
    cr_assert(strstr(why, "PUT 2") != NULL, "why: %s", why);
}

Test(lincheck, concurrent_put_and_get_may_read_either_value)
{
    for (uint64_t v = 1; v <= 2; v++) {
        struct lin_history *h = lin_history_new();
        put(h, 1, 0, 10);
        put(h, 2, 20, 40);
        get(h, v, 25, 35);
        get(h, 2, 50, 60);
        cr_assert_eq(check(h), LIN_OK, "read %lu: %s", (unsigned long)v, why);
    }
    /* Once the reader has seen the new value, a later read may not see the old one. */
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    put(h, 2, 20, 100);
    get(h, 2, 25, 35);
    get(h, 1, 40, 50);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, ops_touching_at_one_instant_are_concurrent)
{
    /* The GET is invoked at the instant the PUT returns: either order is allowed. */
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    get(h, 0, 10, 20);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
    h = lin_history_new();
    put(h, 1, 0, 10);
    get(h, 0, 11, 20);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, recording_order_does_not_matter)
{
    struct lin_history *h = lin_history_new();
    get(h, 2, 40, 50);
    put(h, 2, 20, 30);
    put(h, 1, 0, 10);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
}

Test(lincheck, cas_success_needs_the_expected_value)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 1, 3, true, 20, 30);
    get(h, 3, 40, 50);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
    h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 2, 3, true, 20, 30);
    cr_assert_eq(check(h), LIN_ILLEGAL);
    h = lin_history_new();
    cas(h, 0, 3, true, 0, 10); /* expected absent, on an absent key */
    get(h, 3, 20, 30);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
}

Test(lincheck, cas_failure_needs_another_value)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 2, 3, false, 20, 30);
    get(h, 1, 40, 50);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
    h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 1, 3, false, 20, 30);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, two_concurrent_cas_from_one_expected_value_cannot_both_swap)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 1, 2, true, 20, 40);
    cas(h, 1, 3, true, 25, 45);
    cr_assert_eq(check(h), LIN_ILLEGAL);
    h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 1, 2, true, 20, 40);
    cas(h, 1, 3, false, 25, 45);
    get(h, 2, 50, 60);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
}

Test(lincheck, lost_put_that_later_becomes_visible_is_legal)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    put(h, 2, 20, LOST);
    get(h, 1, 30, 40);
    get(h, 2, 100, 110);
    get(h, 2, 120, 130);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
}

Test(lincheck, lost_put_never_visible_is_legal)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    put(h, 2, 20, LOST);
    get(h, 1, 30, 40);
    get(h, 1, 100, 110);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
}

Test(lincheck, lost_put_takes_effect_once_and_not_before_its_invocation)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    get(h, 2, 20, 30);
    put(h, 2, 40, LOST);
    cr_assert_eq(check(h), LIN_ILLEGAL);
    /* Visible, then overwritten: it cannot come back. */
    h = lin_history_new();
    put(h, 2, 0, LOST);
    get(h, 2, 10, 20);
    put(h, 3, 30, 40);
    get(h, 2, 50, 60);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, pending_ops_count_as_lost)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    put(h, 2, 20, PENDING);
    get(h, 2, 30, 40);
    get(h, 0, 50, PENDING);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
}

Test(lincheck, lost_cas_swaps_only_from_its_expected_value)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 1, 5, false, 20, LOST);
    get(h, 5, 30, 40);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
    h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 2, 5, false, 20, LOST);
    get(h, 5, 30, 40);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, lost_put_may_explain_a_failed_cas)
{
    /* PUT 2 is never read, but only its taking effect lets the CAS fail. */
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 10);
    put(h, 2, 20, LOST);
    cas(h, 1, 3, false, 30, 40);
    cr_assert_eq(check(h), LIN_OK, "%s", why);
    h = lin_history_new();
    put(h, 1, 0, 10);
    cas(h, 1, 3, false, 30, 40);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, read_of_a_value_never_written_is_illegal)
{
    struct lin_history *h = lin_history_new();
    put(h, 1, 0, 100);
    put(h, 2, 0, 100);
    get(h, 9, 50, 60);
    cr_assert_eq(check(h), LIN_ILLEGAL);
    cr_assert(strstr(why, "GET -> 9") != NULL, "why: %s", why);
    h = lin_history_new();
    cas(h, 9, 3, true, 0, 10);
    cr_assert_eq(check(h), LIN_ILLEGAL);
}

Test(lincheck, keys_are_checked_independently)
{
    struct lin_history *h = lin_history_new();
    lin_return(h, lin_invoke(h, 1, LIN_PUT, 1, 10, 0, 0), 0, 10);
    lin_return(h, lin_invoke(h, 2, LIN_PUT, 2, 20, 0, 0), 0, 10);
    lin_return(h, lin_invoke(h, 3, LIN_GET, 1, 0, 0, 20), 10, 30);
    lin_return(h, lin_invoke(h, 4, LIN_GET, 2, 0, 0, 20), 20, 30);
    cr_assert_eq(lin_check(h, 0, why, sizeof(why)), LIN_OK, "%s", why);
    lin_return(h, lin_invoke(h, 5, LIN_GET, 2, 0, 0, 40), 10, 50);
    cr_assert_eq(lin_check(h, 0, why, sizeof(why)), LIN_ILLEGAL);
    cr_assert(strstr(why, "key 2") != NULL, "why: %s", why);
    /* A short or absent buffer is fine. */
    char small[8];
    cr_assert_eq(lin_check(h, 0, small, sizeof(small)), LIN_ILLEGAL);
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    cr_assert_eq(lin_check(h, 0, NULL, 0), LIN_ILLEGAL);
    lin_history_free(h);
}

Test(lincheck, put_of_zero_aborts, .signal = SIGABRT)
{
    struct lin_history *h = lin_history_new();
    lin_invoke(h, 1, LIN_PUT, 1, 0, 0, 0);
}

Test(lincheck, return_twice_aborts, .signal = SIGABRT)
{
    struct lin_history *h = lin_history_new();
    uint32_t op = lin_invoke(h, 1, LIN_GET, 1, 0, 0, 0);
    lin_return(h, op, 0, 1);
    lin_return(h, op, 0, 2);
}

/* ---- Generated histories ---- */

struct gen_op {
    uint64_t key;
    uint64_t arg1;
    uint64_t arg2;
    uint64_t result;
    uint64_t t_inv;
    uint64_t t_ret; /* LOST if lost */
    uint8_t kind;
};

/* Runs a sequential model: op i takes effect at time 100 * (i + 1) and is invoked up to
 * `window` before and returns up to `window` after (each op gets its own window below
 * the bound). Values are unique. One op in 20 is lost, and half the lost writes never
 * take effect. */
static void generate(uint64_t seed, struct gen_op *ops, uint32_t n, uint32_t keys, uint64_t window)
{
    struct ts_rand r;
    ts_rand_seed(&r, seed);
    uint64_t *state = calloc(keys, sizeof(*state));
    cr_assert_not_null(state);
    uint64_t next_value = 1;
    for (uint32_t i = 0; i < n; i++) {
        struct gen_op *o = &ops[i];
        uint64_t at = 100 * ((uint64_t)i + 1), w = 1 + ts_rand_below(&r, window);
        *o = (struct gen_op){.key = ts_rand_below(&r, keys),
                             .kind = (uint8_t)ts_rand_below(&r, 3),
                             .t_inv = at - ts_rand_below(&r, w < at ? w : at),
                             .t_ret = at + ts_rand_below(&r, w)};
        bool lost = ts_rand_chance(&r, 1, 20);
        bool effect = !lost || ts_rand_chance(&r, 1, 2);
        uint64_t *s = &state[o->key];
        if (o->kind == LIN_PUT) {
            o->arg1 = next_value++;
            *s = effect ? o->arg1 : *s;
        } else if (o->kind == LIN_GET) {
            o->result = *s;
        } else {
            bool fresh = ts_rand_chance(&r, 2, 3) || next_value == 1;
            o->arg1 = fresh ? *s : ts_rand_below(&r, next_value);
            o->arg2 = next_value++;
            o->result = effect && *s == o->arg1;
            *s = o->result ? o->arg2 : *s;
        }
        o->t_ret = lost ? LOST : o->t_ret;
    }
    free(state);
}

static struct lin_history *history_of(const struct gen_op *ops, uint32_t n)
{
    struct lin_history *h = lin_history_new();
    for (uint32_t i = 0; i < n; i++) {
        const struct gen_op *o = &ops[i];
        uint32_t id = lin_invoke(h, i % 16, o->kind, o->key, o->arg1, o->arg2, o->t_inv);
        cr_assert_eq(id, i);
        if (o->t_ret == LOST) {
            lin_lost(h, id);
        } else {
            lin_return(h, id, o->result, o->t_ret);
        }
    }
    cr_assert_eq(lin_history_ops(h), n);
    return h;
}

static bool is_write_done(const struct gen_op *o)
{
    return o->t_ret != LOST && (o->kind == LIN_PUT || (o->kind == LIN_CAS && o->result == 1));
}

/* Finds a GET and a value it cannot read: written by w, which returned before w2 (a
 * completed write of another unique value) was invoked, and w2 returned before the GET
 * was invoked. Returns the GET's index or UINT32_MAX. */
static uint32_t find_stale(const struct gen_op *ops, uint32_t n, uint64_t *stale)
{
    for (uint32_t g = n; g-- > 0;) {
        if (ops[g].kind != LIN_GET || ops[g].t_ret == LOST) {
            continue;
        }
        for (uint32_t j = 0; j < n; j++) {
            const struct gen_op *w2 = &ops[j];
            if (w2->key != ops[g].key || !is_write_done(w2) || w2->t_ret >= ops[g].t_inv) {
                continue;
            }
            for (uint32_t i = 0; i < n; i++) {
                const struct gen_op *w = &ops[i];
                if (w->key == w2->key && is_write_done(w) && w->t_ret < w2->t_inv) {
                    *stale = w->kind == LIN_PUT ? w->arg1 : w->arg2;
                    return g;
                }
            }
        }
    }
    return UINT32_MAX;
}

/* ---- A brute-force reference for small histories ---- */

/* The register semantics again, written independently of lincheck.c. */
static bool ref_step(const struct gen_op *o, uint64_t state, uint64_t *next)
{
    *next = state;
    if (o->kind == LIN_PUT) {
        *next = o->arg1;
        return true;
    }
    if (o->kind == LIN_GET) {
        return state == o->result;
    }
    if (o->t_ret == LOST) {
        *next = state == o->arg1 ? o->arg2 : state;
        return true;
    }
    if (o->result == 1) {
        *next = o->arg2;
        return state == o->arg1;
    }
    return state != o->arg1;
}

/* Tries every order of every set of ops that contains all returned ones. */
static bool ref_linearizable(const struct gen_op *ops, uint32_t n, uint32_t used, uint64_t state)
{
    bool done = true;
    for (uint32_t i = 0; i < n; i++) {
        done = done && ((used >> i & 1) || ops[i].t_ret == LOST);
    }
    if (done) {
        return true;
    }
    for (uint32_t x = 0; x < n; x++) {
        bool can = !(used >> x & 1);
        for (uint32_t y = 0; y < n && can; y++) {
            bool open = !(used >> y & 1) && y != x;
            can = !(open && ops[y].t_ret != LOST && ops[y].t_ret < ops[x].t_inv);
        }
        uint64_t next;
        if (can && ref_step(&ops[x], state, &next) &&
            ref_linearizable(ops, n, used | 1u << x, next)) {
            return true;
        }
    }
    return false;
}

/* A random small history on one key: written values in 1..v, expected and read ones in
 * 0..v-1 (so the largest value may go unobserved), random results, ties in time. */
static uint32_t random_small(struct ts_rand *r, struct gen_op *ops)
{
    uint32_t n = 1 + (uint32_t)ts_rand_below(r, 7);
    uint64_t v = 2 + ts_rand_below(r, 4);
    for (uint32_t i = 0; i < n; i++) {
        struct gen_op *o = &ops[i];
        *o = (struct gen_op){.key = KEY, .kind = (uint8_t)ts_rand_below(r, 3)};
        o->t_inv = ts_rand_below(r, 20);
        o->t_ret = ts_rand_chance(r, 1, 4) ? LOST : o->t_inv + ts_rand_below(r, 10);
        if (o->kind == LIN_PUT) {
            o->arg1 = 1 + ts_rand_below(r, v);
        } else if (o->kind == LIN_GET) {
            o->result = ts_rand_below(r, v);
        } else {
            o->arg1 = ts_rand_below(r, v);
            o->arg2 = 1 + ts_rand_below(r, v);
            o->result = ts_rand_below(r, 2);
        }
    }
    return n;
}

Test(lincheck, agrees_with_brute_force_on_small_histories)
{
    struct ts_rand r;
    ts_rand_seed(&r, 2024);
    struct gen_op ops[8];
    uint32_t legal = 0, illegal = 0;
    for (int round = 0; round < 100000; round++) {
        uint32_t n = random_small(&r, ops);
        bool want = ref_linearizable(ops, n, 0, 0);
        struct lin_history *h = history_of(ops, n);
        enum lin_result got = lin_check(h, 0, why, sizeof(why));
        lin_history_free(h);
        cr_assert_eq(got, want ? LIN_OK : LIN_ILLEGAL, "round %d: want %d got %d (%s)", round, want,
                     got, why);
        legal += want;
        illegal += !want;
    }
    cr_assert_gt(legal, 10000);
    cr_assert_gt(illegal, 10000);
}

Test(lincheck, generated_histories_are_legal_and_one_stale_read_is_not)
{
    enum { N = 1500 };
    static struct gen_op ops[N];
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct ts_rand r;
        ts_rand_seed(&r, seed * 7919);
        uint32_t keys = 1 + (uint32_t)ts_rand_below(&r, 4);
        uint64_t window = 50 + ts_rand_below(&r, 600);
        generate(seed, ops, N, keys, window);
        struct lin_history *h = history_of(ops, N);
        enum lin_result res = lin_check(h, 0, why, sizeof(why));
        cr_assert_eq(res, LIN_OK, "seed %lu: %d %s", (unsigned long)seed, res, why);
        lin_history_free(h);

        uint64_t stale;
        uint32_t g = find_stale(ops, N, &stale);
        cr_assert_neq(g, UINT32_MAX, "seed %lu: no GET to mutate", (unsigned long)seed);
        ops[g].result = stale;
        h = history_of(ops, N);
        res = lin_check(h, 0, why, sizeof(why));
        cr_assert_eq(res, LIN_ILLEGAL, "seed %lu: %d", (unsigned long)seed, res);
        lin_history_free(h);
    }
}

Test(lincheck, small_step_bound_gives_unknown_on_a_hard_history)
{
    /* n concurrent PUTs, then a GET of the absent value: illegal, but only after the
     * search has tried every order of every subset (about n * 2^(n-1) configurations). */
    for (uint32_t n = 8; n <= 24; n += 16) {
        struct lin_history *h = lin_history_new();
        for (uint64_t v = 1; v <= n; v++) {
            put(h, v, v, 1000 + v);
        }
        get(h, 0, 2000, 2010);
        uint64_t steps_max = n == 8 ? 0 : 10000;
        enum lin_result r = lin_check(h, steps_max, why, sizeof(why));
        cr_assert_eq(r, n == 8 ? LIN_ILLEGAL : LIN_UNKNOWN, "n %u: %s", n, why);
        cr_assert(strstr(why, "key 7") != NULL, "why: %s", why);
        lin_history_free(h);
    }
}

Test(lincheck, hundred_thousand_ops_over_a_thousand_keys)
{
    enum { N = 100000 };
    struct gen_op *ops = calloc(N, sizeof(*ops));
    cr_assert_not_null(ops);
    generate(42, ops, N, 1000, 5000);
    struct lin_history *h = history_of(ops, N);
    cr_assert_eq(lin_check(h, 0, why, sizeof(why)), LIN_OK, "%s", why);
    lin_history_free(h);
    free(ops);
}

Test(lincheck, thousands_of_concurrent_ops_on_one_key)
{
    enum { N = 4000 };
    struct gen_op *ops = calloc(N, sizeof(*ops));
    cr_assert_not_null(ops);
    generate(43, ops, N, 1, 800);
    struct lin_history *h = history_of(ops, N);
    cr_assert_eq(lin_check(h, 0, why, sizeof(why)), LIN_OK, "%s", why);
    lin_history_free(h);
    free(ops);
}
