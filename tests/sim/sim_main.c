/*
 * tessera-sim: the deterministic simulator's runner (see sim.h and README.md).
 *
 *   tessera-sim --seed S [--trace]        one run; prints its statistics
 *   tessera-sim --seeds N [--first S]     a sweep of N seeds from S (default 1)
 *   tessera-sim --long [--seconds T]      bigger clusters and runs, seeds until T seconds
 *   --nodes N, --groups G                 override what the seed picks
 *   --verbose                             one statistics line per seed in a sweep
 *
 * A failed run prints
 *   tessera-sim: seed S FAILED: <checker>: <details>
 *   replay: <argv0> --seed S [same options] --trace
 * and the process exits 1. An abort inside a run (an assertion in raft, a sanitizer
 * report) prints the same two lines from a SIGABRT handler. That handler needs the one
 * piece of file-scope mutable state in tests/sim (the prepared message): a signal handler
 * cannot be passed a context (the R14 exception, confined to this runner).
 *
 * The wall clock is read here only, for --seconds; it never reaches a simulation.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util/assert.h"
#include "tests/sim/sim.h"

struct cli {
    const char *argv0;
    uint64_t seed, first, seeds;
    bool one, sweep, verbose;
    double seconds;
    struct sim_opts opt;
};

static char abort_msg[1024];
static volatile sig_atomic_t abort_len;

static void on_abort(int sig)
{
    (void)sig;
    if (abort_len > 0) {
        ssize_t w = write(STDERR_FILENO, abort_msg, (size_t)abort_len);
        (void)w;
    }
}

static void replay_line(const struct cli *c, uint64_t seed, char *buf, size_t len)
{
    char nodes[32] = "", groups[32] = "";
    if (c->opt.nodes != 0) {
        snprintf(nodes, sizeof(nodes), " --nodes %u", c->opt.nodes);
    }
    if (c->opt.groups != 0) {
        snprintf(groups, sizeof(groups), " --groups %u", c->opt.groups);
    }
    if (c->opt.break_mode != 0) {
        snprintf(groups + strlen(groups), sizeof(groups) - strlen(groups), " --break %u",
                 c->opt.break_mode);
    }
    snprintf(buf, len, "replay: %s --seed %llu%s%s%s --trace\n", c->argv0, (unsigned long long)seed,
             nodes, groups, c->opt.long_mode ? " --long" : "");
}

static void arm_abort(const struct cli *c, uint64_t seed)
{
    char replay[512];
    replay_line(c, seed, replay, sizeof(replay));
    int n = snprintf(abort_msg, sizeof(abort_msg),
                     "tessera-sim: seed %llu FAILED: abort: an assertion or a sanitizer "
                     "stopped the run (see above)\n%s",
                     (unsigned long long)seed, replay);
    abort_len = n > 0 && (size_t)n < sizeof(abort_msg) ? n : 0;
}

static void print_stats(const struct sim *s, const char *verdict)
{
    const struct sim_params *p = &s->p;
    const struct sim_stats *st = &s->st;
    printf(
        "tessera-sim: seed %llu %s: %u nodes, %u groups, %u clients, %llu steps (heal %llu, "
        "live %llu); ops %llu ok %llu lost, reads %llu (lease %llu); elections %llu, crashes %llu; "
        "msgs %llu sent %llu dropped; snapshots %llu/%llu, compactions %llu, conf "
        "changes %llu, transfers %llu\n",
        (unsigned long long)s->opt.seed, verdict, p->nodes, p->groups, p->clients,
        (unsigned long long)s->step, (unsigned long long)p->heal_step,
        (unsigned long long)s->live_step, (unsigned long long)st->ops_ok,
        (unsigned long long)st->ops_lost, (unsigned long long)st->reads_ok,
        (unsigned long long)st->lease_reads, (unsigned long long)st->elections,
        (unsigned long long)st->crashes, (unsigned long long)st->msgs_sent,
        (unsigned long long)st->msgs_dropped, (unsigned long long)st->snapshots_sent,
        (unsigned long long)st->snapshots_installed, (unsigned long long)st->compactions,
        (unsigned long long)st->conf_changes, (unsigned long long)st->transfers);
}

/* Runs one seed; returns true if it passed. */
static bool run_one(const struct cli *c, uint64_t seed, bool stats)
{
    struct sim_opts o = c->opt;
    o.seed = seed;
    arm_abort(c, seed);
    struct sim *s = calloc(1, sizeof(*s));
    TS_ASSERT(s != NULL);
    if (sim_init(s, &o) != 0) {
        fprintf(stderr, "tessera-sim: seed %llu: invalid options (nodes 3..%u, groups 1..%u)\n",
                (unsigned long long)seed, SIM_NODES_MAX, SIM_GROUPS_MAX);
        sim_fini(s);
        free(s);
        return false;
    }
    sim_run(s);
    sim_fini(s);
    bool ok = !s->failed;
    if (!ok) {
        char replay[512];
        replay_line(c, seed, replay, sizeof(replay));
        fflush(stdout);
        fprintf(stderr, "tessera-sim: seed %llu FAILED: %s: %s\n%s", (unsigned long long)seed,
                s->fail_checker, s->fail_msg, replay);
    } else if (s->lin_note[0] != '\0') {
        fprintf(stderr, "tessera-sim: seed %llu: linearizability unknown (search budget): %s\n",
                (unsigned long long)seed, s->lin_note);
    }
    if (stats) {
        print_stats(s, ok ? "ok" : "FAILED");
    }
    free(s);
    abort_len = 0;
    return ok;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sweep(const struct cli *c)
{
    double start = now_seconds();
    uint64_t failed = 0, ran = 0;
    uint64_t n = c->seeds != 0 ? c->seeds : UINT64_MAX;
    for (uint64_t i = 0; i < n; i++) {
        if (c->seconds > 0 && now_seconds() - start >= c->seconds) {
            break;
        }
        ran++;
        if (!run_one(c, c->first + i, c->verbose)) {
            failed++;
            if (failed >= 20) {
                fprintf(stderr, "tessera-sim: stopping after 20 failures\n");
                break;
            }
        }
    }
    double secs = now_seconds() - start;
    if (failed == 0) {
        printf("tessera-sim: %llu seeds passed (%llu..%llu, %.1f s, %.1f seeds/s)\n",
               (unsigned long long)ran, (unsigned long long)c->first,
               (unsigned long long)(c->first + ran - 1), secs, secs > 0 ? (double)ran / secs : 0);
        return 0;
    }
    printf("tessera-sim: %llu of %llu seeds FAILED\n", (unsigned long long)failed,
           (unsigned long long)ran);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tessera-sim --seed S [--trace] | --seeds N [--first S] | --long "
               "[--seconds T]\n"
               "       [--nodes N] [--groups G] [--verbose]\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] == '\0' || end == NULL || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_arg(struct cli *c, const char *a, const char *v, int *i)
{
    uint64_t x = 0;
    bool takes = strcmp(a, "--seed") == 0 || strcmp(a, "--seeds") == 0 ||
                 strcmp(a, "--first") == 0 || strcmp(a, "--nodes") == 0 ||
                 strcmp(a, "--groups") == 0 || strcmp(a, "--seconds") == 0 ||
                 strcmp(a, "--break") == 0;
    if (takes) {
        if (v == NULL || !parse_u64(v, &x)) {
            return false;
        }
        (*i)++;
    }
    if (strcmp(a, "--seed") == 0) {
        c->seed = x;
        c->one = true;
    } else if (strcmp(a, "--seeds") == 0) {
        c->seeds = x;
        c->sweep = true;
    } else if (strcmp(a, "--first") == 0) {
        c->first = x;
    } else if (strcmp(a, "--nodes") == 0) {
        c->opt.nodes = (uint32_t)x;
    } else if (strcmp(a, "--groups") == 0) {
        c->opt.groups = (uint32_t)x;
    } else if (strcmp(a, "--break") == 0) {
        c->opt.break_mode = (uint32_t)x;
    } else if (strcmp(a, "--seconds") == 0) {
        c->seconds = (double)x;
    } else if (strcmp(a, "--long") == 0) {
        c->opt.long_mode = true;
    } else if (strcmp(a, "--trace") == 0) {
        c->opt.trace = true;
    } else if (strcmp(a, "--verbose") == 0) {
        c->verbose = true;
    } else if (!takes) {
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct cli c;
    memset(&c, 0, sizeof(c));
    c.argv0 = argv[0];
    c.first = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (!parse_arg(&c, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &i)) {
            fprintf(stderr, "tessera-sim: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    signal(SIGABRT, on_abort);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (c.one) {
        return run_one(&c, c.seed, true) ? 0 : 1;
    }
    if (c.opt.long_mode && !c.sweep) {
        c.seconds = c.seconds > 0 ? c.seconds : 600;
        c.first = c.first > 1 ? c.first : 1000000;
    }
    if (!c.sweep && !c.opt.long_mode) {
        usage(stderr);
        return 2;
    }
    return sweep(&c);
}
