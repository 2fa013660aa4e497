/*
 * shard/node.c: start, every pair of shards exchanging messages, shutdown by
 * shard_node_stop, by SIGTERM (raised on shard 0, or sent to the process) and under load,
 * a failing init, a stop callback that never finishes (the stop deadline), the per-shard
 * allocator.
 */
#include "shard/node.h"

#include "core/util/err.h"
#include "core/util/limits.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SHARDS_MAX 4u
#define MS 1000000ull

struct counts {
    _Atomic int inits[SHARDS_MAX];
    _Atomic int stops[SHARDS_MAX];
    _Atomic int stop_calls[SHARDS_MAX];
    _Atomic uint64_t got[SHARDS_MAX][SHARDS_MAX]; /* [from][to] */
    _Atomic int farewells[SHARDS_MAX];
    _Atomic int finis[SHARDS_MAX];
    _Atomic uint64_t iterations[SHARDS_MAX]; /* when STOP arrived */
    _Atomic int bad;
    uint32_t shards;
    int fail_init_on; /* -1: none */
    bool raise_on_0;  /* shard 0 raises SIGTERM from a timer */
    struct shard_timer raise_timer;
};

static void counts_init(struct counts *c, uint32_t shards)
{
    memset(c, 0, sizeof(*c));
    c->shards = shards;
    c->fail_init_on = -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void raise_term(struct shard_timer *t, void *data)
{
    (void)t;
    (void)data;
    cr_assert_eq(raise(SIGTERM), 0); /* blocked: pending on shard 0's thread */
}

/* Sends one message to every other shard. */
static int hello_init(struct shard *s, void *data)
{
    struct counts *c = data;
    uint32_t id = shard_get_id(s);
    atomic_fetch_add(&c->inits[id], 1);
    if ((int)id == c->fail_init_on) {
        return TS_EIO;
    }
    void *p = ts_alloc(shard_get_allocator(s), 1000);
    cr_assert_not_null(p);
    ts_free(shard_get_allocator(s), p, 1000);
    for (uint32_t to = 0; to < shard_get_count(s); to++) {
        struct xring_msg msg = {.type = 1, .u = {id, to}};
        int rc = shard_send(s, to, &msg);
        cr_assert_eq(rc, to == id ? TS_EINVAL : 0);
    }
    if (id == 0 && c->raise_on_0) {
        struct shard_loop *l = shard_get_loop(s);
        shard_timer_init(&c->raise_timer);
        cr_assert_eq(
            shard_timer_start(l, &c->raise_timer, shard_loop_now_ns(l) + 20 * MS, raise_term, c),
            0);
    }
    return 0;
}

static bool counting_stop(struct shard *s, void *data)
{
    struct counts *c = data;
    uint32_t id = shard_get_id(s);
    cr_assert(shard_stopping(s));
    atomic_fetch_add(&c->stop_calls[id], 1);
    atomic_store(&c->iterations[id], shard_loop_iterations(shard_get_loop(s)));
    atomic_fetch_add(&c->stops[id], 1);
    if (c->raise_on_0 && id == 0) {
        shard_timer_stop(shard_get_loop(s), &c->raise_timer);
    }
    if (shard_get_count(s) > 1) {
        struct xring_msg msg = {.type = 3}; /* a farewell: sending is allowed until done */
        cr_assert_eq(shard_send(s, (id + 1) % shard_get_count(s), &msg), 0);
    }
    return true;
}

static void counting_fini(struct shard *s, void *data)
{
    struct counts *c = data;
    atomic_fetch_add(&c->finis[shard_get_id(s)], 1);
}

static void hello_msg(struct shard *s, const struct xring_msg *msg, void *data)
{
    struct counts *c = data;
    uint32_t id = shard_get_id(s);
    if (msg->type == 3) {
        atomic_fetch_add(&c->farewells[id], 1);
        return;
    }
    if (msg->type != 1 || msg->u[0] != msg->from || msg->u[1] != id) {
        atomic_fetch_add(&c->bad, 1);
        return;
    }
    atomic_fetch_add(&c->got[msg->from][id], 1);
}

/* A node of `shards` shards whose callbacks count into c (hello on init, stop, fini). */
static struct shard_node_config counting_config(struct counts *c, uint32_t shards)
{
    return (struct shard_node_config){.shards = shards,
                                      .init_cb = hello_init,
                                      .stop_cb = counting_stop,
                                      .fini_cb = counting_fini,
                                      .msg_cb = hello_msg,
                                      .data = c};
}

static void check_clean(struct counts *c, bool inits_ok)
{
    for (uint32_t i = 0; i < c->shards; i++) {
        cr_assert_eq(atomic_load(&c->inits[i]), 1, "shard %u init ran %d times", i,
                     atomic_load(&c->inits[i]));
        int want = inits_ok || (int)i != c->fail_init_on ? 1 : 0;
        cr_assert_eq(atomic_load(&c->stops[i]), want, "shard %u stop ran %d times", i,
                     atomic_load(&c->stops[i]));
        cr_assert_eq(atomic_load(&c->finis[i]), 1, "shard %u fini ran %d times", i,
                     atomic_load(&c->finis[i]));
        if (inits_ok && c->shards > 1) {
            cr_assert_eq(atomic_load(&c->farewells[i]), 1, "shard %u farewells", i);
        }
    }
    cr_assert_eq(atomic_load(&c->bad), 0);
}

static void check_pairs(struct counts *c)
{
    for (uint32_t from = 0; from < c->shards; from++) {
        for (uint32_t to = 0; to < c->shards; to++) {
            uint64_t want = from == to ? 0 : 1;
            cr_assert_eq(atomic_load(&c->got[from][to]), want, "%u -> %u", from, to);
        }
    }
}

static void run_stop_from_main(uint32_t shards)
{
    static struct counts c;
    counts_init(&c, shards);
    struct shard_node_config cfg = {.shards = shards,
                                    .init_cb = hello_init,
                                    .stop_cb = counting_stop,
                                    .fini_cb = counting_fini,
                                    .msg_cb = hello_msg,
                                    .data = &c};
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    cr_assert_eq(shard_node_shards(n), shards);
    sleep_ms(50); /* the hellos arrive */
    cr_assert_eq(shard_node_stop(n), 0);
    cr_assert_eq(shard_node_stop(n), 0); /* a second stop does nothing */
    cr_assert_eq(shard_node_wait(n), 0);
    check_clean(&c, true);
    check_pairs(&c);
    for (uint32_t i = 0; i < shards; i++) {
        /* Idle for 50 ms after the hellos: the shards slept instead of spinning. */
        uint64_t it = atomic_load(&c.iterations[i]);
        cr_assert_leq(it, 20, "shard %u ran %llu iterations while idle", i, (unsigned long long)it);
    }
}

Test(shard_node, two_shards_exchange_and_stop)
{
    run_stop_from_main(2);
}

Test(shard_node, four_shards_exchange_and_stop)
{
    run_stop_from_main(4);
}

Test(shard_node, pinned_single_shard_and_default_count)
{
    static struct counts c;
    counts_init(&c, 1);
    struct shard_node_config cfg = counting_config(&c, 1);
    cfg.pin = true;
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    cr_assert_eq(shard_node_stop(n), 0);
    cr_assert_eq(shard_node_wait(n), 0);
    cr_assert_eq(atomic_load(&c.stops[0]), 1);
    cfg = (struct shard_node_config){0};
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    cr_assert_eq(shard_node_shards(n), (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert_eq(shard_node_stop(n), 0);
    cr_assert_eq(shard_node_wait(n), 0);
}

Test(shard_node, sigterm_raised_on_shard_0_stops_cleanly)
{
    static struct counts c;
    counts_init(&c, 4);
    c.raise_on_0 = true;
    struct shard_node_config cfg = counting_config(&c, 4);
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    cr_assert_eq(shard_node_wait(n), 0); /* returns only because of the signal */
    check_clean(&c, true);
    check_pairs(&c);
}

Test(shard_node, sigterm_sent_to_the_process_stops_cleanly)
{
    static struct counts c;
    counts_init(&c, 2);
    struct shard_node_config cfg = counting_config(&c, 2);
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    sleep_ms(20);
    cr_assert_eq(kill(getpid(), SIGTERM), 0);
    cr_assert_eq(shard_node_wait(n), 0);
    check_clean(&c, true);
    sigset_t mask;
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    cr_assert(!sigismember(&mask, SIGTERM), "the caller's mask is restored");
}

Test(shard_node, failing_init_fails_start_and_stops_the_others)
{
    static struct counts c;
    counts_init(&c, 4);
    c.fail_init_on = 2;
    struct shard_node_config cfg = counting_config(&c, 4);
    struct shard_node *n = NULL;
    cr_assert_eq(shard_node_start(&cfg, &n), TS_EIO);
    cr_assert_null(n);
    check_clean(&c, false);
}

Test(shard_node, failing_setup_fails_start_before_any_init)
{
    static struct counts c;
    counts_init(&c, 4);
    struct ts_log log; /* the failure is logged */
    ts_log_init(&log, STDERR_FILENO, TS_LOG_LEVEL_INFO);
    struct shard_node_config cfg = {.shards = 4,
                                    .log = &log,
                                    .init_cb = hello_init,
                                    .stop_cb = counting_stop,
                                    .fini_cb = counting_fini,
                                    .msg_cb = hello_msg,
                                    .data = &c};
    /* Room for two more descriptors: some shard cannot create its ring (-EMFILE). */
    int lowest = dup(0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = (struct rlimit){.rlim_cur = (rlim_t)lowest + 2, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct shard_node *n = NULL;
    int rc = shard_node_start(&cfg, &n);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert_eq(rc, -EMFILE, "start: %s", ts_strerror(rc));
    cr_assert_null(n);
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert_eq(atomic_load(&c.inits[i]), 0);
        cr_assert_eq(atomic_load(&c.stops[i]), 0);
        cr_assert_eq(atomic_load(&c.finis[i]), 0);
    }
}

Test(shard_node, rejects_too_many_shards)
{
    struct shard_node_config cfg = {.shards = TS_XRING_SHARDS_MAX + 1};
    struct shard_node *n = NULL;
    cr_assert_eq(shard_node_start(&cfg, &n), TS_EINVAL);
}

/* ---- Shutdown under load --------------------------------------------------------------- */

struct load;

struct load_hook_ctx {
    struct load *ld;
    struct shard *s;
};

struct load {
    uint32_t shards;
    struct load_hook_ctx hooks[SHARDS_MAX];
    uint64_t accepted[SHARDS_MAX][SHARDS_MAX]; /* [from][to], written by `from` */
    uint64_t received[SHARDS_MAX][SHARDS_MAX]; /* [from][to], written by `to` */
    uint64_t shutdown_answers[SHARDS_MAX];
    _Atomic int bad;
    _Atomic int stops[SHARDS_MAX];
    int stop_calls[SHARDS_MAX];
    struct shard *shard[SHARDS_MAX];
};

/* Every iteration: send to every other shard until its ring is full. */
static void load_send(struct load *ld, struct shard *s)
{
    uint32_t id = shard_get_id(s);
    for (uint32_t to = 0; to < ld->shards; to++) {
        for (uint32_t i = 0; to != id && i < 256; i++) {
            struct xring_msg msg = {.type = 2, .u = {ld->accepted[id][to]}};
            int rc = shard_send(s, to, &msg);
            if (rc == TS_ESHUTDOWN) {
                ld->shutdown_answers[id]++;
                return;
            }
            if (rc == TS_EFULL) {
                break;
            }
            cr_assert_eq(rc, 0);
            ld->accepted[id][to]++;
        }
    }
    shard_loop_poke(shard_get_loop(s)); /* a busy producer: come back at once */
}

static void load_hook_run(void *ctx)
{
    struct load_hook_ctx *h = ctx;
    load_send(h->ld, h->s);
}

static int load_init(struct shard *s, void *data)
{
    struct load *ld = data;
    uint32_t id = shard_get_id(s);
    ld->shard[id] = s;
    struct load_hook_ctx *h = &ld->hooks[id];
    *h = (struct load_hook_ctx){.ld = ld, .s = s};
    return shard_loop_on_iteration(shard_get_loop(s), load_hook_run, h);
}

static void load_msg(struct shard *s, const struct xring_msg *msg, void *data)
{
    struct load *ld = data;
    uint32_t id = shard_get_id(s);
    if (msg->type != 2 || msg->u[0] != ld->received[msg->from][id]) {
        atomic_fetch_add(&ld->bad, 1);
    }
    ld->received[msg->from][id]++;
}

static bool load_stop(struct shard *s, void *data)
{
    struct load *ld = data;
    uint32_t id = shard_get_id(s);
    ld->stop_calls[id]++;
    if (ld->stop_calls[id] < 3) {
        return false; /* "finishing in-flight work": asks to be called again */
    }
    atomic_fetch_add(&ld->stops[id], 1);
    return true;
}

Test(shard_node, stop_under_load_loses_nothing_accepted, .timeout = 60)
{
    static struct load ld;
    memset(&ld, 0, sizeof(ld));
    ld.shards = 4;
    struct shard_node_config cfg = {.shards = 4,
                                    .xring_slots = 64,
                                    .init_cb = load_init,
                                    .stop_cb = load_stop,
                                    .msg_cb = load_msg,
                                    .data = &ld};
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    sleep_ms(100);
    cr_assert_eq(shard_node_stop(n), 0);
    cr_assert_eq(shard_node_wait(n), 0);
    uint64_t total = 0;
    for (uint32_t from = 0; from < 4; from++) {
        cr_assert_eq(atomic_load(&ld.stops[from]), 1);
        cr_assert_eq(ld.stop_calls[from], 3);
        for (uint32_t to = 0; to < 4; to++) {
            cr_assert_eq(ld.received[from][to], ld.accepted[from][to], "%u -> %u: %llu of %llu",
                         from, to, (unsigned long long)ld.received[from][to],
                         (unsigned long long)ld.accepted[from][to]);
            total += ld.accepted[from][to];
        }
    }
    cr_assert_eq(atomic_load(&ld.bad), 0);
    cr_assert_gt(total, 1000, "the producers were busy: %llu", (unsigned long long)total);
    cr_log_info("stop under load: %llu messages", (unsigned long long)total);
}

/* ---- A stop callback that never finishes ------------------------------------------------ */

static bool stuck_on_1_stop(struct shard *s, void *data)
{
    struct counts *c = data;
    uint32_t id = shard_get_id(s);
    atomic_fetch_add(&c->stop_calls[id], 1);
    if (id == 1) {
        return false; /* never done: only the deadline ends it */
    }
    atomic_fetch_add(&c->stops[id], 1);
    return true;
}

Test(shard_node, stuck_stop_callback_is_abandoned_at_the_deadline)
{
    static struct counts c;
    counts_init(&c, 3);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    struct ts_log log;
    ts_log_init(&log, fileno(tmp), TS_LOG_LEVEL_ERROR);
    struct shard_node_config cfg = counting_config(&c, 3);
    cfg.stop_cb = stuck_on_1_stop;
    cfg.stop_ms = 100;
    cfg.log = &log;
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    sleep_ms(20);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(shard_node_stop(n), 0);
    cr_assert_eq(shard_node_wait(n), TS_ETIMEOUT, "the caller learns the stop was forced");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert_geq(ms, 100, "shard 1 had its 100 ms: %ld", ms);
    cr_assert_lt(ms, 5000, "and not much more: %ld", ms);
    cr_assert_gt(atomic_load(&c.stop_calls[1]), 1, "shard 1 was asked again and again");
    cr_assert_eq(atomic_load(&c.stops[1]), 0);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(atomic_load(&c.finis[i]), 1, "fini ran on shard %u", i);
        if (i != 1) {
            cr_assert_eq(atomic_load(&c.stop_calls[i]), 1);
        }
    }
    check_pairs(&c);
    char text[4096] = {0};
    cr_assert_eq(fseek(tmp, 0, SEEK_SET), 0);
    cr_assert_gt(fread(text, 1, sizeof(text) - 1, tmp), 0);
    cr_assert_not_null(strstr(text, "shard 1: stop callback not done 100 ms after STOP"), "log: %s",
                       text);
    cr_assert_null(strstr(text, "shard 0: stop"), "log: %s", text);
    cr_assert_null(strstr(text, "shard 2: stop"), "log: %s", text);
    fclose(tmp);
}

Test(shard_node, rejects_a_stop_deadline_above_the_limit)
{
    struct shard_node_config cfg = {.shards = 1, .stop_ms = TS_SHARD_NODE_STOP_MS_MAX + 1};
    struct shard_node *n = NULL;
    cr_assert_eq(shard_node_start(&cfg, &n), TS_EINVAL);
    cr_assert_null(n);
}
