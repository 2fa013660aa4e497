/* Tests for bench/tessera-bench/driver_zk: whole phases through libzookeeper-mt against a
 * miniature ZooKeeper server (fake_zk.c, the jute protocol over loopback), the way main
 * runs them: one session per client up to many sessions, set-or-create, linearizable
 * gets (a sync before each), CAS without lost updates, the rate and the duration. */
#include "bench/tessera-bench/driver.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tests/unit/bench/fake_zk.h"

static struct fake_zk fake;
/* The most threads the process had while a phase ran (bench() samples them). */
static uint32_t threads_max;

static uint32_t threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    uint32_t n = 0;
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        n += e->d_name[0] != '.' ? 1u : 0u;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* The process's CPU time (every thread: ours, libzookeeper-mt's, the fake server's). */
static double cpu_s(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void start_fake(void)
{
    cr_assert_eq(fake_zk_start(&fake), 0);
}

static void stop_fake(void)
{
    fake_zk_stop(&fake);
}

/* Runs `args` (a workload and options; --target zk://... is added) to its end, main's
 * way; returns the measured phase's merged stats (the caller frees). */
static struct tb_stats *bench(const char *args)
{
    char buf[512], target[64], err[1280];
    char *argv[40] = {"tessera-bench"};
    int argc = 1;
    snprintf(buf, sizeof buf, "%s", args);
    for (char *t = strtok(buf, " "); t != NULL && argc < 37; t = strtok(NULL, " ")) {
        argv[argc++] = t;
    }
    snprintf(target, sizeof target, "zk://127.0.0.1:%u", fake.port);
    argv[argc++] = "--target";
    argv[argc++] = target;
    static struct tb_opts o;
    cr_assert_eq(tb_opts_parse(argc, argv, &o, err, sizeof err), 0, "%s", err);
    const struct tb_driver *d = &tb_driver_zk;
    struct tb_run run;
    cr_assert_eq(tb_run_init(&run, &o, d->workers(&o)), 0);
    void *st = NULL;
    cr_assert_eq(d->open(&run, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d->conns(st), o.conns < o.clients ? o.conns : o.clients);
    for (int phase = o.prefill ? 0 : 1; phase < 2; phase++) {
        tb_run_phase(&run, phase == 0);
        cr_assert_eq(d->start(st, &run), 0);
        while (atomic_load(&run.live) > 0) {
            uint32_t t = threads_now();
            threads_max = t > threads_max ? t : threads_max;
            usleep(1000);
        }
        d->join(st, &run);
    }
    struct tb_stats *s = malloc(sizeof *s);
    cr_assert_not_null(s);
    tb_stats_init(s);
    tb_run_merge_totals(&run, s);
    d->close(st, &run);
    tb_run_fini(&run);
    return s;
}

/* Keys under the driver's parent (the parent itself is node 0). */
static uint32_t keys_made(void)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < fake.nnodes; i++) {
        n += strncmp(fake.nodes[i].path, TB_ZK_PARENT "/", sizeof TB_ZK_PARENT) == 0 ? 1u : 0u;
    }
    return n;
}

Test(tb_driver_zk, one_session_puts_set_or_create, .init = start_fake)
{
    struct tb_stats *s = bench("put --total 500 --clients 1 --inflight 1 --keyspace 50 "
                               "--key-dist sequential --key-size 8 --val-size 256");
    stop_fake();
    cr_assert_eq(s->ops, 500);
    cr_assert_eq(s->errors, 0);
    cr_assert_eq(ts_histogram_count(&s->latency), 500);
    cr_assert_eq(keys_made(), 50, "every key was created once");
    cr_assert_eq(atomic_load(&fake.sets), 500, "one set per put");
    cr_assert_eq(atomic_load(&fake.creates), 1 + 50, "the parent, then each key's first put");
    for (uint32_t i = 0; i < fake.nnodes; i++) {
        if (strcmp(fake.nodes[i].path, TB_ZK_PARENT) != 0) {
            cr_assert_eq(fake.nodes[i].data_len, 256);
            cr_assert_eq(fake.nodes[i].version, 500 / 50 - 1, "created, then set 9 times");
        }
    }
    free(s);
}

Test(tb_driver_zk, many_sessions_one_in_flight_each, .init = start_fake)
{
    /* One session per client, as the comparison runs it: every session is opened and
     * connected before the phase, and each keeps its one request going, issued from the
     * previous one's completion: no thread of ours per session (libzookeeper-mt has two
     * per session), and no thread spinning while its session waits for the server (the
     * driver once burnt milliseconds of CPU per operation that way, ~7 ms here). */
    double cpu0 = cpu_s();
    struct tb_stats *s = bench("put --total 4000 --clients 100 --conns 100 --inflight 1 "
                               "--keyspace 1000");
    double cpu = cpu_s() - cpu0;
    stop_fake();
    cr_assert_eq(atomic_load(&fake.sessions), 100);
    cr_assert(threads_max <= 2 * 100 + 2 + 8, "%u threads for 100 sessions", threads_max);
    cr_assert(cpu / 4000 < 1e-3, "%.1f us of CPU per operation", cpu / 4000 * 1e6);
    fprintf(stderr, "many sessions: %u threads, %.1f us CPU per op\n", threads_max,
            cpu / 4000 * 1e6);
    cr_assert_eq(s->ops, 4000);
    cr_assert_eq(s->errors, 0);
    free(s);
}

Test(tb_driver_zk, several_in_flight_per_session, .init = start_fake)
{
    struct tb_stats *s =
        bench("mixed --total 3000 --clients 8 --conns 2 --inflight 4 --keyspace 100 --prefill");
    stop_fake();
    cr_assert_eq(atomic_load(&fake.sessions), 2);
    cr_assert_eq(s->ops, 3000);
    cr_assert_eq(s->errors, 0);
    cr_assert_eq(s->misses, 0, "the prefill wrote every key");
    cr_assert_eq(keys_made(), 100);
    free(s);
}

Test(tb_driver_zk, linearizable_gets_sync_first, .init = start_fake)
{
    struct tb_stats *s = bench("get --consistency linearizable --total 2000 --clients 20 "
                               "--conns 20 --inflight 1 --keyspace 100 --prefill");
    stop_fake();
    cr_assert_eq(s->ops, 2000);
    cr_assert_eq(s->errors, 0);
    cr_assert_eq(s->misses, 0);
    cr_assert_eq(atomic_load(&fake.syncs), 2000, "a sync before each get");
    cr_assert_eq(atomic_load(&fake.gets), 2000);
    free(s);
}

Test(tb_driver_zk, gets_of_missing_keys_are_misses, .init = start_fake)
{
    struct tb_stats *s = bench("get --total 300 --clients 3 --inflight 2 --keyspace 1000000");
    stop_fake();
    cr_assert_eq(s->ops, 300);
    cr_assert_eq(s->misses, 300);
    cr_assert_eq(s->errors, 0);
    cr_assert_eq(atomic_load(&fake.syncs), 0, "serializable: no sync");
    free(s);
}

Test(tb_driver_zk, cas_loses_no_update, .init = start_fake)
{
    /* 16 CAS in flight on 8 keys: many conflicts. Every success bumps one key's version,
     * so the versions add up to the successes (a prefilled znode starts at version 0). */
    struct tb_stats *s =
        bench("txn-cas --total 2000 --clients 4 --inflight 4 --conns 4 --keyspace 8 --prefill");
    stop_fake();
    cr_assert_eq(s->errors, 0);
    cr_assert_eq(s->ops, 2000);
    cr_assert_eq(s->cas_ok, 2000);
    cr_assert_gt(s->cas_conflicts, 0);
    int64_t versions = 0;
    for (uint32_t i = 0; i < fake.nnodes; i++) {
        versions += fake.nodes[i].version;
    }
    cr_assert_eq(keys_made(), 8);
    cr_assert_eq(versions, 2000);
    free(s);
}

Test(tb_driver_zk, rate_is_kept, .init = start_fake, .fini = stop_fake)
{
    /* Admission follows the schedule from the issuers (completions find it not yet due). */
    uint64_t t0 = tb_now_ns();
    struct tb_stats *s = bench("put --duration 1 --rate 1000 --clients 8 --conns 4 "
                               "--inflight 2 --keyspace 100");
    double elapsed = (double)(tb_now_ns() - t0) / 1e9;
    cr_assert(s->ops <= 1000 + 4, "%lu ops at 1000/s for 1 s", (unsigned long)s->ops);
    cr_assert(s->ops >= 500, "%lu ops at 1000/s for 1 s", (unsigned long)s->ops);
    cr_assert_eq(s->errors, 0);
    cr_assert(elapsed < 15.0, "%.2f s: the duration bounds the run", elapsed);
    free(s);
}

Test(tb_driver_zk, duration_ends_an_open_run, .init = start_fake, .fini = stop_fake)
{
    uint64_t t0 = tb_now_ns();
    struct tb_stats *s =
        bench("put --duration 0.5 --clients 16 --conns 16 --inflight 1 --keyspace 100");
    double elapsed = (double)(tb_now_ns() - t0) / 1e9;
    cr_assert_gt(s->ops, 0);
    cr_assert_eq(s->errors, 0);
    cr_assert(elapsed < 15.0, "%.2f s: the duration bounds the run", elapsed);
    free(s);
}
