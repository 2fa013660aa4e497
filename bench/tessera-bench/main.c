/*
 * tessera-bench: the load tool. Puts, gets, a read/write mix or compare-and-swap
 * transactions against a Tessera cluster (tessera://) or a ZooKeeper ensemble (zk://),
 * with N logical clients of --inflight outstanding requests each over --conns
 * connections (or ZooKeeper sessions), bounded by --total and/or --duration, open loop at
 * --rate or at the open throttle. See opts.h for the command line, driver.h for the
 * threads, rate.h for how latency is measured, stats.h for what is reported.
 *
 * Main is thin (STYLE R1): it parses, opens the driver, runs the prefill phase (when
 * asked: every key written once, not measured) and the measured phase, prints a progress
 * line to stderr every second (elapsed, ops/s of the last second, p50, p99, errors) and
 * the summary to stdout (text, or one JSON object with --json).
 *
 * Signals: SIGINT and SIGTERM are blocked in every thread and taken by main with
 * sigtimedwait, so there is no handler and no global: the first one stops admission, the
 * workers drain (bounded by the request timeout), and the summary so far is printed.
 *
 * Expected figures, back of the envelope: the tool itself costs about one tessera_client
 * round trip of CPU per operation (a few microseconds), so on a 2-vCPU VM shared with the
 * server it saturates well above what one Raft group can commit; for ZooKeeper, the Java
 * server is the bottleneck long before libzookeeper-mt's threads are.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/tessera-bench/driver.h"
#include "core/util/assert.h"

#define TB_TICK_NS 50000000ull /* how often main checks whether the workers ended */

/* Runs one phase with progress lines; returns true when a signal cut it short. */
static bool run_phase(const struct tb_driver *d, void *st, struct tb_run *run, bool prefill,
                      const sigset_t *sigs, struct tb_stats *interval)
{
    tb_run_phase(run, prefill);
    TS_ASSERT(d->start(st, run) == 0);
    bool interrupted = false;
    uint64_t last = run->start_ns, next_line = run->start_ns + 1000000000ull;
    while (atomic_load(&run->live) > 0) {
        struct timespec tick = {.tv_sec = 0, .tv_nsec = (long)TB_TICK_NS};
        int sig = sigtimedwait(sigs, NULL, &tick);
        if (sig > 0 && !interrupted) {
            interrupted = true;
            atomic_store(&run->stop, true);
            fprintf(stderr, "tessera-bench: %s: stopping, draining requests in flight\n",
                    strsignal(sig));
        }
        uint64_t now = tb_now_ns();
        if (now >= next_line) {
            tb_stats_init(interval);
            tb_run_take_interval(run, interval);
            tb_progress_print(stderr, prefill ? "prefill " : "",
                              (double)(now - run->start_ns) / 1e9, (double)(now - last) / 1e9,
                              interval);
            last = now;
            while (next_line <= now) { /* on the second, whatever the ticks' jitter */
                next_line += 1000000000ull;
            }
        }
    }
    d->join(st, run);
    return interrupted;
}

static void summarize(const struct tb_driver *d, void *st, struct tb_run *run, bool prefill,
                      bool interrupted, struct tb_stats *total)
{
    const struct tb_opts *o = run->o;
    uint64_t end = run->start_ns;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        end = run->workers[i].end_ns > end ? run->workers[i].end_ns : end;
    }
    tb_stats_init(total);
    tb_run_merge_totals(run, total);
    struct tb_summary s = {
        .workload = prefill ? "prefill" : tb_workload_name(o->workload),
        .target = tb_target_name(o->target),
        .hosts = o->hosts,
        .consistency = tb_consistency_name(o->consistency),
        .key_dist = tb_key_dist_name(run->key_dist),
        .note = d->note(o),
        .threads = run->nworkers,
        .conns = d->conns(st),
        .clients = o->clients,
        .inflight = o->inflight,
        .key_size = o->key_size,
        .val_size = o->val_size,
        .keyspace = o->keyspace,
        .rate = run->rate,
        .read_ratio = o->read_ratio,
        .interrupted = interrupted,
        .elapsed_ns = end - run->start_ns,
        .stats = total,
        .err_name = d->err_name,
    };
    if (o->json) {
        tb_summary_print_json(stdout, &s);
    } else {
        tb_summary_print_text(stdout, &s);
    }
    fflush(stdout);
}

/* One line on stderr: the prefill is not part of the summary. */
static void prefill_report(struct tb_run *run, struct tb_stats *total)
{
    uint64_t end = run->start_ns;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        end = run->workers[i].end_ns > end ? run->workers[i].end_ns : end;
    }
    tb_stats_init(total);
    tb_run_merge_totals(run, total);
    fprintf(stderr, "prefill: %llu keys written in %.3f s, %llu errors\n",
            (unsigned long long)total->ops, (double)(end - run->start_ns) / 1e9,
            (unsigned long long)total->errors);
}

int main(int argc, char **argv)
{
    struct tb_opts o;
    char err[512];
    if (tb_opts_parse(argc, argv, &o, err, sizeof err) != 0) {
        fprintf(stderr, "tessera-bench: %s\n%s", err, tb_usage());
        return 2;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    TS_ASSERT(pthread_sigmask(SIG_BLOCK, &sigs, NULL) == 0); /* before any thread */
    const struct tb_driver *d = o.target == TB_TARGET_ZK ? &tb_driver_zk : &tb_driver_tessera;
    struct tb_run run;
    if (tb_run_init(&run, &o, d->workers(&o)) != 0) {
        fprintf(stderr, "tessera-bench: out of memory\n");
        return 1;
    }
    void *st = NULL;
    if (d->open(&run, &st, err, sizeof err) != 0) {
        fprintf(stderr, "tessera-bench: %s: %s\n", d->name, err);
        tb_run_fini(&run);
        return 1;
    }
    struct tb_stats *scratch = malloc(sizeof *scratch), *total = malloc(sizeof *total);
    TS_ASSERT(scratch != NULL && total != NULL);
    bool interrupted = false, in_prefill = false;
    if (o.prefill) {
        interrupted = in_prefill = run_phase(d, st, &run, true, &sigs, scratch);
        if (!interrupted) {
            prefill_report(&run, total);
        }
    }
    if (!interrupted) {
        interrupted = run_phase(d, st, &run, false, &sigs, scratch);
    }
    summarize(d, st, &run, in_prefill, interrupted, total);
    d->close(st, &run);
    tb_run_fini(&run);
    free(scratch);
    free(total);
    return 0;
}
