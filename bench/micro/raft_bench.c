/*
 * raft_bench: core/raft alone, three replicas of every group in one process, no disk, on
 * one thread. Two workloads:
 *
 *   throughput  G groups (1 and 1,000) with batches of B 64-byte entries (64 and 256):
 *               each iteration proposes B entries on every group's leader
 *               (raft_propose, one call per entry), then runs the group's readies until
 *               none is left, so the batch is committed and applied on the leader
 *               before the next group is served. Reported: entries applied on the
 *               leader per second of wall time, and process CPU time per entry (all
 *               three replicas' work: the leader's and both followers'). A group's
 *               three logs are compacted to the smallest applied index once the leader
 *               holds RB_COMPACT_ENTRIES entries, as a shard would after applying.
 *   idle        100,000 groups (300,000 instances), elected and quiescent (raft_quiesced
 *               true on every instance); then rounds of raft_tick on every instance.
 *               Reported: ns per instance per tick, and the share of one core a node
 *               hosting one replica of each of the 100,000 groups spends ticking them
 *               at a 100 ms tick (100,000 x ns per instance / 100 ms).
 *
 * The harness. A ready is handled in the contract's order: its entries and hard state
 * are "persisted" at once (there is no disk), its msgs and msgs_after_persist are
 * stepped into the other two instances of the group right away, before raft_advance,
 * so they are read while the ready's views are alive and need no copy (raft_step
 * borrows and copies what it keeps); the leader's committed entries are "applied" by
 * folding their first 8 bytes into a checksum; then raft_advance. A group's instances
 * are served in turn until none has a ready. Elections: every instance ticks (a fresh
 * replica refuses votes for an election timeout, T§4.2.3 with CheckQuorum) and the
 * group is pumped after each tick until one replica leads; that is outside the timings.
 * Configuration: raft_config_default() (election 10 ticks, heartbeat 1, PreVote,
 * CheckQuorum, 1 MiB per APPEND, 256 APPENDs in flight), one seeded struct ts_rand and
 * ts_allocator_default() (jemalloc in the release build).
 *
 * Method (STYLE R24): --runs runs (default 5, at least 3) of every configuration, the
 * configurations interleaved run by run, each run on a freshly built and elected
 * cluster, with warm-up iterations before the timed region until every log has been
 * compacted twice (the allocator's and the page tables' first touches are not raft's
 * steady-state cost; the minor page faults left per batch are printed). Reported:
 * median, MAD (median absolute deviation), min and max over the runs of entries/s (wall),
 * CPU ns per entry and entries per CPU-second (the per-core rate, which the load of a
 * shared machine does not distort). Nothing is dead code: the leader's applied entries
 * are counted and checksummed (the checksum is printed and checked against the
 * proposals), every message is stepped, and after the idle rounds every instance must
 * still be quiescent with nothing to do.
 *
 * Expected, back of the envelope. Per entry, the leader copies 64 bytes into a data
 * block and appends a 40-byte entry; each follower does the same when stepping the
 * APPEND; the leader then walks the entries once more to apply them. That is ~6 copies
 * of ~100 bytes plus ~10 branches of bookkeeping per instance: ~100-150 ns of CPU per
 * entry for the three replicas together, plus per batch two APPENDs, two responses,
 * ~6 readies and a commit recomputation (~2-4 us), i.e. ~10-60 ns per entry at B = 256
 * to 64. So one group should run at ~4-7 M entries/s (goal: >= 2 M/s per core). With
 * 1,000 groups every batch starts with the group's three instances cold in cache
 * (~10-20 misses of ~100 ns, ~1-2 us per batch): ~3-5 M/s at B = 256, less at B = 64.
 * Idle: raft_tick on a quiescent instance is a call, an assert and one flag test, but
 * the struct is cold: with 300,000 instances (~1 KB each, ~300 MB) every call misses
 * the caches and, unless the hardware prefetcher follows the allocation order, the TLB:
 * ~50-100 ns per instance, so ~5-10 ms per 100,000 replicas per tick, 5-10% of a core
 * at a 100 ms tick. The goal (< 1%, i.e. < 10 ns per group) needs the shard not to
 * touch quiescent groups at all. So the idle workload is measured twice: raft_tick on
 * every instance (the naive loop), and the shard's loop: an awake list holding the
 * instances that are not raft_quiesced(), to which a group returns when it is stepped
 * or proposed to, ticked alone (with 0 and with RB_WAKE_PER_TICK proposals per tick to
 * random groups, which wake and quiesce again one heartbeat later).
 *
 * Measured (2026-11-23, this VM while other jobs ran, release build, defaults, one run
 * of the whole bench; bench/RESULTS.md has the rows): one group 17-20 M entries per
 * CPU-second (median; 24-26 M in the quietest runs: ~40-58 ns of CPU per entry for three
 * replicas); 1,000 groups 7-8.6 M per CPU-second (~115-145 ns per entry: each batch's
 * copies land in memory gone cold since the group's last turn). Per batch: 6 readies
 * and 8 messages (2 APPENDs, 2 acks, then 2 APPENDs carrying the new commit index and
 * their 2 acks; under continuous load the commit rides on the next batch's APPENDs).
 * Idle: raft_tick on every quiescent instance costs ~11 ns each (one cache miss), 1.1%
 * of a core for a node with 100,000 replicas; the awake list costs nothing measurable
 * with every group quiescent (< 0.0001%), and 0.13% with 100 groups woken by a write
 * every tick. Each idle instance holds ~2.6 KB (raft_memory_bytes). Profiles: per-entry
 * copies (raft_log_append, memmove) dominate the throughput runs; raft_tick alone the
 * naive idle rounds.
 *
 * Hardware where the figures were taken: a 2-vCPU VM, AMD EPYC, kernel 6.x, shared with
 * other jobs and noisy (compare within one run). gcc 12 -O2, jemalloc 5.3 (release).
 *
 * Run: cmake --preset release && cmake --build build/release --target raft_bench &&
 *      ./build/release/bench/micro/raft_bench [--runs N] [--entries N] [--idle-groups N]
 *      [--idle-rounds N] [--only-throughput | --only-idle] [--seed N] [--groups G --batch B]
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sysconf, getrusage under -std=c11 */
#include "core/raft/raft.h"
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/mem.h"
#include "core/util/rand.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The bench's own limits (STYLE R19). */
#define RB_REPLICAS 3u
#define RB_ENTRY_BYTES 64u
#define RB_RUNS_MAX 32u
#define RB_GROUPS_MAX 1000000u
#define RB_BATCH_MAX 4096u
#define RB_ENTRIES_MAX (1ull << 34)
#define RB_ROUNDS_MAX 100000u
/* Entries a leader holds before its group's logs are compacted: small enough that 1,000
 * groups' logs (3,000 x ~100 KB) reach their steady state within the warm-up, so that
 * the timed region measures raft rather than first-touch page faults. */
#define RB_COMPACT_ENTRIES 1024u
/* Ready passes over a group's instances before the bench declares raft stuck. */
#define RB_PASSES_MAX 64u
/* Ticks an election or a quiescence may take before the bench declares raft stuck. */
#define RB_TICKS_MAX 400u
/* Groups that get a proposal per tick in the awake-list run with wake-ups: 0.1% of
 * 100,000, a trickle of configuration writes on an otherwise idle cluster. */
#define RB_WAKE_PER_TICK 100u
/* A node hosts one replica of each group; its tick period, for the idle share. */
#define RB_TICK_NS 100000000.0

_Static_assert(RB_ENTRY_BYTES >= 8, "an entry carries its 8-byte sequence number");
_Static_assert((uint64_t)RB_BATCH_MAX *RB_ENTRY_BYTES < 16u * 1024u * 1024u,
               "a batch stays far below raft's in-flight and uncommitted byte limits");

struct rb_opts {
    uint32_t runs;
    uint64_t entries; /* per throughput run (rounded up to whole iterations) */
    uint32_t idle_groups;
    uint32_t idle_rounds; /* tick rounds per idle run */
    uint64_t seed;
    uint32_t groups; /* --groups and --batch: this one configuration only (0: the matrix) */
    uint32_t batch;
    bool throughput;
    bool idle;
};

/* G groups of three instances: inst[g * 3 + (id - 1)] is replica id of group g + 1. */
struct rb_cluster {
    struct raft **inst;
    uint32_t groups;
    uint32_t *leader; /* per group: the leader's id, 0 if none */
    struct ts_rand rand;
    uint64_t applied;  /* normal entries with data applied on leaders */
    uint64_t checksum; /* of their sequence numbers */
    uint64_t readies;
    uint64_t msgs;
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    TS_ASSERT(clock_gettime(id, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ the cluster */

static struct raft *inst_of(const struct rb_cluster *c, uint32_t g, raft_id id)
{
    TS_DASSERT(g < c->groups);
    TS_DASSERT(id >= 1 && id <= RB_REPLICAS);
    return c->inst[(size_t)g * RB_REPLICAS + (id - 1)];
}

static void cluster_init(struct rb_cluster *c, uint32_t groups, uint64_t seed)
{
    TS_ASSERT(groups > 0 && groups <= RB_GROUPS_MAX);
    memset(c, 0, sizeof(*c));
    c->groups = groups;
    ts_rand_seed(&c->rand, seed);
    c->inst = calloc((size_t)groups * RB_REPLICAS, sizeof(*c->inst));
    c->leader = calloc(groups, sizeof(*c->leader));
    TS_ASSERT(c->inst != NULL && c->leader != NULL);
    struct raft_conf conf = {.n = RB_REPLICAS};
    for (uint32_t i = 0; i < RB_REPLICAS; i++) {
        conf.m[i] = (struct raft_member){.id = i + 1, .role = RAFT_VOTER};
    }
    struct raft_initial init = {.bootstrap = &conf};
    for (uint32_t g = 0; g < groups; g++) {
        for (raft_id id = 1; id <= RB_REPLICAS; id++) {
            struct raft_config cfg;
            raft_config_default(&cfg);
            cfg.group_id = g + 1;
            cfg.id = id;
            cfg.rand = &c->rand;
            cfg.alloc = ts_allocator_default();
            int rc = raft_new(&cfg, &init, &c->inst[(size_t)g * RB_REPLICAS + (id - 1)]);
            TS_ASSERT(rc == 0);
        }
    }
}

static void cluster_free(struct rb_cluster *c)
{
    for (size_t i = 0; i < (size_t)c->groups * RB_REPLICAS; i++) {
        raft_free(c->inst[i]);
    }
    free(c->inst);
    free(c->leader);
    memset(c, 0, sizeof(*c));
}

static void deliver(struct rb_cluster *c, uint32_t g, const struct raft_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        TS_ASSERT(m[i].group_id == g + 1);
        TS_ASSERT(m[i].to >= 1 && m[i].to <= RB_REPLICAS);
        int rc = raft_step(inst_of(c, g, m[i].to), &m[i]);
        TS_ASSERT(rc == 0);
    }
    c->msgs += n;
}

/* The leader's state machine: counts and checksums the entries the bench proposed. */
static void apply(struct rb_cluster *c, const struct raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != RAFT_ENTRY_NORMAL || e[i].len == 0) {
            continue; /* a conf entry or a new leader's no-op */
        }
        TS_ASSERT(e[i].len == RB_ENTRY_BYTES);
        uint64_t seq;
        memcpy(&seq, e[i].data, sizeof(seq));
        c->checksum += seq * 0x9e3779b97f4a7c15ull;
        c->applied++;
    }
}

/* Handles one ready of replica id of group g (see the header comment). */
static void handle_ready(struct rb_cluster *c, uint32_t g, raft_id id)
{
    struct raft *r = inst_of(c, g, id);
    struct raft_ready rd;
    raft_ready(r, &rd);
    TS_ASSERT(rd.snapshot == NULL); /* logs are compacted only below every applied index */
    deliver(c, g, rd.msgs, rd.n_msgs);
    deliver(c, g, rd.msgs_after_persist, rd.n_msgs_after_persist);
    if (rd.role == RAFT_LEADER) {
        apply(c, rd.committed, rd.n_committed);
    }
    if (rd.soft_state_changed && rd.role == RAFT_LEADER) {
        c->leader[g] = (uint32_t)id;
    }
    c->readies++;
    raft_advance(r);
}

/* Serves group g's instances until none has a ready; returns the passes it took. */
static uint32_t pump(struct rb_cluster *c, uint32_t g)
{
    for (uint32_t pass = 0; pass < RB_PASSES_MAX; pass++) {
        bool any = false;
        for (raft_id id = 1; id <= RB_REPLICAS; id++) {
            if (raft_has_ready(inst_of(c, g, id))) {
                handle_ready(c, g, id);
                any = true;
            }
        }
        if (!any) {
            return pass;
        }
    }
    fprintf(stderr, "raft_bench: group %" PRIu32 " still has readies after %u passes\n", g + 1,
            RB_PASSES_MAX);
    TS_ASSERT(false);
    return RB_PASSES_MAX;
}

static bool group_has_leader(const struct rb_cluster *c, uint32_t g)
{
    raft_id id = c->leader[g];
    return id != 0 && raft_role_of(inst_of(c, g, id)) == RAFT_LEADER;
}

static bool group_quiesced(const struct rb_cluster *c, uint32_t g)
{
    for (raft_id id = 1; id <= RB_REPLICAS; id++) {
        if (!raft_quiesced(inst_of(c, g, id))) {
            return false;
        }
    }
    return true;
}

/* Ticks every instance of every group until each group has a leader (and, if `quiesce`,
 * until every instance is quiescent), pumping each group after its ticks. Returns the
 * tick rounds it took. */
static uint32_t cluster_settle(struct rb_cluster *c, bool quiesce)
{
    for (uint32_t t = 0; t < RB_TICKS_MAX; t++) {
        uint32_t unsettled = 0;
        for (uint32_t g = 0; g < c->groups; g++) {
            bool led = group_has_leader(c, g);
            if (led && (!quiesce || group_quiesced(c, g))) {
                continue;
            }
            unsettled++;
            for (raft_id id = 1; id <= RB_REPLICAS; id++) {
                raft_tick(inst_of(c, g, id));
            }
            pump(c, g);
        }
        if (unsettled == 0) {
            return t;
        }
    }
    fprintf(stderr, "raft_bench: groups not %s after %u ticks\n", quiesce ? "quiescent" : "led",
            RB_TICKS_MAX);
    TS_ASSERT(false);
    return RB_TICKS_MAX;
}

/* ------------------------------------------------------------------ throughput */

struct rb_sample {
    double entries_per_s;
    double cpu_ns_per_entry;
    double readies_per_batch;
    double msgs_per_batch;
    double faults_per_batch; /* minor page faults: fresh memory the allocator touched */
};

static uint64_t minor_faults(void)
{
    struct rusage ru;
    TS_ASSERT(getrusage(RUSAGE_SELF, &ru) == 0);
    return (uint64_t)ru.ru_minflt;
}

/* Proposes a batch of `batch` entries numbered from *seq on group g's leader. */
static void propose_batch(struct rb_cluster *c, uint32_t g, uint32_t batch, uint64_t *seq)
{
    struct raft *r = inst_of(c, g, c->leader[g]);
    uint8_t data[RB_ENTRY_BYTES];
    memset(data, 0xab, sizeof(data));
    for (uint32_t i = 0; i < batch; i++) {
        uint64_t s = ++*seq;
        memcpy(data, &s, sizeof(s));
        int rc = raft_propose(r, data, RB_ENTRY_BYTES, NULL);
        if (rc != 0) {
            fprintf(stderr, "raft_bench: raft_propose: %s\n", ts_strerror(rc));
        }
        TS_ASSERT(rc == 0);
    }
}

/* Compacts group g's three logs to the smallest applied index once the leader holds
 * RB_COMPACT_ENTRIES entries. */
static void maybe_compact(struct rb_cluster *c, uint32_t g)
{
    struct raft *leader = inst_of(c, g, c->leader[g]);
    if (raft_last_index(leader) - raft_first_index(leader) < RB_COMPACT_ENTRIES) {
        return;
    }
    raft_index floor = UINT64_MAX;
    for (raft_id id = 1; id <= RB_REPLICAS; id++) {
        raft_index a = raft_applied_index(inst_of(c, g, id));
        floor = a < floor ? a : floor;
    }
    for (raft_id id = 1; id <= RB_REPLICAS; id++) {
        struct raft *r = inst_of(c, g, id);
        if (floor >= raft_first_index(r)) {
            TS_ASSERT(raft_compact(r, floor) == 0);
        }
    }
}

/* One iteration: a batch on every group, each pumped until its batch is applied. */
static void iterate(struct rb_cluster *c, uint32_t batch, uint64_t *seq)
{
    for (uint32_t g = 0; g < c->groups; g++) {
        TS_ASSERT(group_has_leader(c, g));
        uint64_t applied = c->applied;
        propose_batch(c, g, batch, seq);
        pump(c, g);
        TS_ASSERT(c->applied == applied + batch);
        maybe_compact(c, g);
    }
}

static struct rb_sample throughput_run(const struct rb_opts *o, uint32_t groups, uint32_t batch,
                                       uint64_t seed, uint64_t *check)
{
    struct rb_cluster c;
    cluster_init(&c, groups, seed);
    cluster_settle(&c, false);
    uint64_t seq = 0, per_iter = (uint64_t)groups * batch;
    uint64_t iters = (o->entries + per_iter - 1) / per_iter;
    /* Warm-up: every log goes through compaction twice before the timed region. */
    for (uint32_t i = 0; i <= 2 * RB_COMPACT_ENTRIES / batch; i++) {
        iterate(&c, batch, &seq);
    }
    uint64_t applied0 = c.applied, readies0 = c.readies, msgs0 = c.msgs, f0 = minor_faults();
    uint64_t w0 = clock_ns(CLOCK_MONOTONIC), p0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (uint64_t i = 0; i < iters; i++) {
        iterate(&c, batch, &seq);
    }
    uint64_t w1 = clock_ns(CLOCK_MONOTONIC), p1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t n = c.applied - applied0, batches = iters * groups;
    TS_ASSERT(n == iters * per_iter);
    /* The checksum of 1..seq, each sequence number applied exactly once. */
    uint64_t want = 0;
    for (uint64_t s = 1; s <= seq; s++) {
        want += s * 0x9e3779b97f4a7c15ull;
    }
    TS_ASSERT(c.checksum == want);
    *check ^= c.checksum;
    struct rb_sample s = {
        .entries_per_s = (double)n / ((double)(w1 - w0) / 1e9),
        .cpu_ns_per_entry = (double)(p1 - p0) / (double)n,
        .readies_per_batch = (double)(c.readies - readies0) / (double)batches,
        .msgs_per_batch = (double)(c.msgs - msgs0) / (double)batches,
        .faults_per_batch = (double)(minor_faults() - f0) / (double)batches,
    };
    cluster_free(&c);
    return s;
}

/* ------------------------------------------------------------------ idle */

struct rb_idle {
    double ns_per_instance[RB_RUNS_MAX];     /* wall time, one per run */
    double cpu_ns_per_instance[RB_RUNS_MAX]; /* process CPU time, one per run */
    /* The shard's way: tick only the awake list; per tick, RB_WAKE_PER_TICK groups get
     * a proposal (0 in the first set of runs). CPU ns per tick round, whole cluster. */
    double awake_cpu_ns_per_round[2][RB_RUNS_MAX];
    double awake_len_mean[2];
    double setup_s;
    uint32_t elect_ticks;
    uint32_t quiesce_ticks;
    double raft_bytes_per_instance; /* raft_memory_bytes */
    double rss_bytes_per_instance;  /* resident set growth while building the cluster */
};

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &size, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Every instance must be quiescent with nothing to do (the ticks changed nothing). */
static void check_idle(const struct rb_cluster *c)
{
    for (size_t i = 0; i < (size_t)c->groups * RB_REPLICAS; i++) {
        TS_ASSERT(raft_quiesced(c->inst[i]));
        TS_ASSERT(!raft_has_ready(c->inst[i]));
    }
}

/* The awake list a shard keeps: the instances that are not quiescent, each once. */
struct rb_awake {
    uint32_t *list;
    uint8_t *on;
    size_t n;
};

static void awake_add_group(const struct rb_cluster *c, struct rb_awake *a, uint32_t g)
{
    for (raft_id id = 1; id <= RB_REPLICAS; id++) {
        size_t i = (size_t)g * RB_REPLICAS + (id - 1);
        if (!a->on[i] && !raft_quiesced(c->inst[i])) {
            a->on[i] = 1;
            a->list[a->n++] = (uint32_t)i;
        }
    }
}

/* One tick the shard's way: wake `wake` random groups with a proposal, then tick only
 * the awake instances, pump their groups, and drop those that went quiescent. */
static size_t awake_round(struct rb_cluster *c, struct rb_awake *a, uint32_t wake, uint64_t *seq)
{
    for (uint32_t w = 0; w < wake; w++) {
        uint32_t g = (uint32_t)ts_rand_below(&c->rand, c->groups);
        if (group_has_leader(c, g)) {
            propose_batch(c, g, 1, seq);
            pump(c, g);
            awake_add_group(c, a, g);
        }
    }
    size_t n = a->n; /* the instances this tick serves */
    for (size_t k = 0; k < n; k++) {
        uint32_t i = a->list[k];
        raft_tick(c->inst[i]);
        pump(c, i / RB_REPLICAS);
        awake_add_group(c, a, i / RB_REPLICAS);
    }
    size_t kept = 0;
    for (size_t k = 0; k < a->n; k++) {
        uint32_t i = a->list[k];
        if (raft_quiesced(c->inst[i])) {
            a->on[i] = 0;
        } else {
            a->list[kept++] = i;
        }
    }
    a->n = kept;
    return n;
}

static void awake_runs(struct rb_cluster *c, const struct rb_opts *o, struct rb_idle *out)
{
    size_t total = (size_t)c->groups * RB_REPLICAS;
    struct rb_awake a = {calloc(total, sizeof(uint32_t)), calloc(total, 1), 0};
    TS_ASSERT(a.list != NULL && a.on != NULL);
    uint64_t seq = 1;
    for (int mode = 0; mode < 2; mode++) {
        uint32_t wake = mode == 0 ? 0 : RB_WAKE_PER_TICK;
        double len_sum = 0;
        for (uint32_t run = 0; run < o->runs; run++) {
            uint64_t p0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
            for (uint32_t round = 0; round < o->idle_rounds; round++) {
                len_sum += (double)awake_round(c, &a, wake, &seq);
            }
            uint64_t p1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
            out->awake_cpu_ns_per_round[mode][run] = (double)(p1 - p0) / o->idle_rounds;
        }
        out->awake_len_mean[mode] = len_sum / ((double)o->runs * o->idle_rounds);
        for (uint32_t t = 0; t < RB_TICKS_MAX && a.n > 0; t++) {
            awake_round(c, &a, 0, &seq); /* settle before the next mode and the check */
        }
        TS_ASSERT(a.n == 0);
    }
    free(a.list);
    free(a.on);
}

static void idle_bench(const struct rb_opts *o, struct rb_idle *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t rss0 = rss_bytes(), w0 = clock_ns(CLOCK_MONOTONIC);
    struct rb_cluster c;
    cluster_init(&c, o->idle_groups, o->seed);
    out->elect_ticks = cluster_settle(&c, false);
    out->quiesce_ticks = cluster_settle(&c, true);
    check_idle(&c);
    out->setup_s = (double)(clock_ns(CLOCK_MONOTONIC) - w0) / 1e9;
    size_t total = (size_t)c.groups * RB_REPLICAS;
    uint64_t raft_bytes = 0;
    for (size_t i = 0; i < total; i++) {
        raft_bytes += raft_memory_bytes(c.inst[i]);
    }
    out->raft_bytes_per_instance = (double)raft_bytes / (double)total;
    out->rss_bytes_per_instance = (double)(rss_bytes() - rss0) / (double)total;
    for (uint32_t run = 0; run < o->runs; run++) {
        uint64_t t0 = clock_ns(CLOCK_MONOTONIC), p0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        for (uint32_t round = 0; round < o->idle_rounds; round++) {
            for (size_t i = 0; i < total; i++) {
                raft_tick(c.inst[i]);
            }
        }
        uint64_t t1 = clock_ns(CLOCK_MONOTONIC), p1 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        double ticks = (double)o->idle_rounds * (double)total;
        out->ns_per_instance[run] = (double)(t1 - t0) / ticks;
        out->cpu_ns_per_instance[run] = (double)(p1 - p0) / ticks;
    }
    check_idle(&c);
    awake_runs(&c, o, out);
    check_idle(&c);
    cluster_free(&c);
}

/* ------------------------------------------------------------------ report */

struct rb_summary {
    double median, mad, min, max;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_sorted(const double *v, uint32_t n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct rb_summary summarize(const double *runs, uint32_t n)
{
    TS_ASSERT(n > 0 && n <= RB_RUNS_MAX);
    double v[RB_RUNS_MAX], d[RB_RUNS_MAX];
    memcpy(v, runs, n * sizeof(v[0]));
    qsort(v, n, sizeof(v[0]), cmp_double);
    struct rb_summary s = {.median = median_sorted(v, n), .min = v[0], .max = v[n - 1]};
    for (uint32_t i = 0; i < n; i++) {
        d[i] = v[i] > s.median ? v[i] - s.median : s.median - v[i];
    }
    qsort(d, n, sizeof(d[0]), cmp_double);
    s.mad = median_sorted(d, n);
    return s;
}

static void print_row(const char *name, const double *runs, uint32_t n, const char *fmt)
{
    struct rb_summary s = summarize(runs, n);
    printf("  %-22s", name);
    printf(fmt, s.median);
    printf(fmt, s.mad);
    printf(fmt, s.min);
    printf(fmt, s.max);
    printf("\n");
}

/* The throughput configurations: (groups, batch). */
static const uint32_t rb_configs[][2] = {{1, 64}, {1, 256}, {1000, 64}, {1000, 256}};
#define RB_CONFIGS (sizeof(rb_configs) / sizeof(rb_configs[0]))

static void throughput_bench(const struct rb_opts *o)
{
    static struct rb_sample s[RB_CONFIGS][RB_RUNS_MAX];
    uint32_t cfg[RB_CONFIGS][2], n_cfg = 0;
    for (uint32_t k = 0; k < RB_CONFIGS && o->groups == 0; k++) {
        cfg[n_cfg][0] = rb_configs[k][0];
        cfg[n_cfg++][1] = rb_configs[k][1];
    }
    if (o->groups != 0) {
        cfg[n_cfg][0] = o->groups;
        cfg[n_cfg++][1] = o->batch;
    }
    uint64_t check = 0;
    /* Configurations interleaved run by run, so drift in the machine's load hits all. */
    for (uint32_t run = 0; run < o->runs; run++) {
        for (uint32_t k = 0; k < n_cfg; k++) {
            s[k][run] =
                throughput_run(o, cfg[k][0], cfg[k][1], o->seed + run * RB_CONFIGS + k, &check);
        }
        fprintf(stderr, "  throughput run %u of %u done\n", run + 1, o->runs);
    }
    printf("\n== throughput: %u-byte entries applied on the leader, %" PRIu64
           " per run; CPU is the process's (all three replicas)\n",
           RB_ENTRY_BYTES, o->entries);
    printf("  %-22s%14s%14s%14s%14s   (over %u runs)\n", "", "median", "MAD", "min", "max",
           o->runs);
    for (uint32_t k = 0; k < n_cfg; k++) {
        double eps[RB_RUNS_MAX], cpu[RB_RUNS_MAX], per_core[RB_RUNS_MAX], rd = 0, ms = 0, pf = 0;
        for (uint32_t run = 0; run < o->runs; run++) {
            eps[run] = s[k][run].entries_per_s;
            cpu[run] = s[k][run].cpu_ns_per_entry;
            per_core[run] = 1e9 / s[k][run].cpu_ns_per_entry;
            rd += s[k][run].readies_per_batch / o->runs;
            ms += s[k][run].msgs_per_batch / o->runs;
            pf += s[k][run].faults_per_batch / o->runs;
        }
        printf("%" PRIu32 " group%s, batch %" PRIu32
               " (per batch: %.1f readies, %.1f msgs, %.2f page faults)\n",
               cfg[k][0], cfg[k][0] == 1 ? "" : "s", cfg[k][1], rd, ms, pf);
        print_row("entries/s (wall)", eps, o->runs, "%14.0f");
        print_row("CPU ns/entry", cpu, o->runs, "%14.1f");
        print_row("entries/CPU-second", per_core, o->runs, "%14.0f");
    }
    printf("  checksum of applied entries: %016" PRIx64 "\n", check);
}

static void idle_report(const struct rb_opts *o)
{
    static struct rb_idle r;
    idle_bench(o, &r);
    size_t total = (size_t)o->idle_groups * RB_REPLICAS;
    printf("\n== idle: %" PRIu32 " quiescent groups x %u replicas = %zu instances; raft_tick on "
           "every instance, %u rounds per run\n",
           o->idle_groups, RB_REPLICAS, total, o->idle_rounds);
    printf("  setup (build, elect in %u tick rounds, quiesce in %u more): %.1f s; memory per "
           "instance: raft_memory_bytes %.0f B, RSS %.0f B\n",
           r.elect_ticks, r.quiesce_ticks, r.setup_s, r.raft_bytes_per_instance,
           r.rss_bytes_per_instance);
    printf("  %-22s%14s%14s%14s%14s   (over %u runs)\n", "", "median", "MAD", "min", "max",
           o->runs);
    print_row("wall ns per tick", r.ns_per_instance, o->runs, "%14.2f");
    print_row("CPU ns per tick", r.cpu_ns_per_instance, o->runs, "%14.2f");
    double share[RB_RUNS_MAX];
    for (uint32_t run = 0; run < o->runs; run++) {
        share[run] = 100.0 * r.cpu_ns_per_instance[run] * o->idle_groups / RB_TICK_NS;
    }
    print_row("% of a core, 1 node", share, o->runs, "%14.3f");
    printf("  (CPU time; one node hosts one replica of each of the %" PRIu32
           " groups and ticks every 100 ms; goal < 1%%)\n",
           o->idle_groups);
    for (int mode = 0; mode < 2; mode++) {
        double node[RB_RUNS_MAX];
        for (uint32_t run = 0; run < o->runs; run++) {
            node[run] = 100.0 * r.awake_cpu_ns_per_round[mode][run] / RB_REPLICAS / RB_TICK_NS;
        }
        printf("  awake list (the shard's loop: tick only non-quiescent instances), %u "
               "proposals per tick, %.1f instances ticked per tick on average:\n",
               mode == 0 ? 0u : RB_WAKE_PER_TICK, r.awake_len_mean[mode]);
        print_row("% of a core, 1 node", node, o->runs, "%14.4f");
    }
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: raft_bench [--runs N] [--entries N] [--idle-groups N] [--idle-rounds N]\n"
        "                  [--only-throughput | --only-idle] [--seed N] [--groups G --batch B]\n"
        "  --runs N          runs of every measurement (default 5, 3..32)\n"
        "  --entries N       entries per throughput run (default 2000000)\n"
        "  --idle-groups N   groups in the idle measurement (default 100000)\n"
        "  --idle-rounds N   tick rounds per idle run (default 20)\n"
        "  --seed N          the seed of every run's struct ts_rand (default 1)\n"
        "  --groups G --batch B  one throughput configuration instead of the four\n"
        "                    (1 and 1000 groups x batches of 64 and 256)\n");
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    uint64_t v;
    if (!parse_u64(s, lo, hi, &v)) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static bool parse_opts(int argc, char **argv, struct rb_opts *o)
{
    *o = (struct rb_opts){.runs = 5,
                          .entries = 2000000,
                          .idle_groups = 100000,
                          .idle_rounds = 20,
                          .seed = 1,
                          .throughput = true,
                          .idle = true};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        bool ok = true;
        if (strcmp(argv[i], "--runs") == 0) {
            ok = parse_u32(v, 3, RB_RUNS_MAX, &o->runs), i++;
        } else if (strcmp(argv[i], "--entries") == 0) {
            ok = parse_u64(v, 1, RB_ENTRIES_MAX, &o->entries), i++;
        } else if (strcmp(argv[i], "--idle-groups") == 0) {
            ok = parse_u32(v, 1, RB_GROUPS_MAX, &o->idle_groups), i++;
        } else if (strcmp(argv[i], "--idle-rounds") == 0) {
            ok = parse_u32(v, 1, RB_ROUNDS_MAX, &o->idle_rounds), i++;
        } else if (strcmp(argv[i], "--seed") == 0) {
            ok = parse_u64(v, 0, UINT64_MAX, &o->seed), i++;
        } else if (strcmp(argv[i], "--groups") == 0) {
            ok = parse_u32(v, 1, RB_GROUPS_MAX, &o->groups), i++;
        } else if (strcmp(argv[i], "--batch") == 0) {
            ok = parse_u32(v, 1, RB_BATCH_MAX, &o->batch), i++;
        } else if (strcmp(argv[i], "--only-throughput") == 0) {
            o->idle = false;
        } else if (strcmp(argv[i], "--only-idle") == 0) {
            o->throughput = false;
        } else {
            ok = false;
        }
        if (!ok) {
            return false;
        }
    }
    return (o->throughput || o->idle) && (o->groups == 0) == (o->batch == 0);
}

int main(int argc, char **argv)
{
    struct rb_opts o;
    if (!parse_opts(argc, argv, &o)) {
        usage();
        return 2;
    }
    printf("raft_bench: core/raft, %u replicas per group in one process, no disk, one thread; "
           "%u runs, seed %" PRIu64 "%s\n",
           RB_REPLICAS, o.runs, o.seed,
#ifdef TS_HAVE_JEMALLOC
           ", jemalloc"
#else
           ", libc malloc"
#endif
    );
    if (o.throughput) {
        throughput_bench(&o);
    }
    if (o.idle) {
        idle_report(&o);
    }
    return 0;
}
