/*
 * wal_bench: storage/wal's append throughput and append-to-durable latency on a real
 * file system, through the io_uring disk backend, on one shard (this one thread).
 *
 * Each run opens a fresh WAL (default segment size and in-flight bound) in a fresh
 * directory under a temporary directory made in --dir (default /tmp, so the same file
 * system as bench/compare/wal_vs_fio.sh's fio jobs) and removes it afterwards. Records
 * are ENTRY records: "bytes" is the entry's data; the log adds 40 bytes of headers
 * (24-byte record header, 16-byte term and index) and pads to 8, and every batch adds a
 * 40-byte BATCH record. Two workloads:
 *
 *   batch k    closed loop: stage k records spread round-robin over G groups (one
 *              wal_append each), wal_flush, run the disk until everything staged is
 *              durable, repeat. k = 1 is one write + fdatasync per record. A batch the
 *              WAL cannot take whole (over its 64 MiB in-flight bound, or across a
 *              segment end) is split by the WAL: "rec/fsync" shows it.
 *   appenders N  group commit: N appenders, appender i writing to group i mod G, each
 *              with one record in flight; an appender re-appends as soon as the
 *              durable_cb covering its record has run (after disk_run returns, like a
 *              shard loop: completions, then new proposals, then wal_flush). Half of
 *              them start while the first half's write is in flight; as the WAL has one
 *              write in flight and stages everything else for the next one, they stay
 *              two cohorts that alternate, so the disk is never idle and "rec/fsync" is
 *              about N/2.
 *
 * Each group's log is compacted to --retain / 2 entries whenever it holds more than
 * --retain (as Raft would after applying), so old segments are deleted as they would be
 * in a shard. Latency is from just before the wal_append call to the durable_cb whose
 * durable LSN covers the record (its LSN is wal_staged_lsn() right after the call).
 *
 * Method (STYLE R24): every configuration is run --runs times, the configurations
 * interleaved run by run so that drift in machine load hits all of them alike; each
 * run is --warmup seconds unmeasured, then --seconds measured, and also stops after
 * --max-batches batches or --max-bytes of payload. Reported per configuration: the
 * median, MAD (median absolute deviation), min and max over the runs of appends/s, and
 * the medians of payload MB/s (10^6 bytes), log MB/s (everything written, headers and
 * group-state records included), fsyncs/s (= batches written), records per fsync; the
 * p50 / p99 / p99.9 append-to-durable latency over all runs' records. Nothing is dead
 * code: every record's bytes are checksummed and written by the WAL, and after each run
 * the bench checks that everything staged became durable and that the WAL reports the
 * records it was given; the XOR of the runs' final LSNs is printed in --json.
 *
 * Expected, back of the envelope. The disk is a virtio block device under a shared VM;
 * fio measured 2,800 (fresh fallocated file) to 3,700 (overwrite) write+fdatasync/s at
 * 4 KiB, so a flush costs ~270-360 us. Staging a 256 B record is a CRC of ~300 bytes,
 * two copies (batch buffer and read cache) and a few group-map lookups: ~1,000
 * instructions, ~0.3 us, so CPU is nowhere near the limit for small batches and k = 1
 * should run at fio's 4 KiB rate (~2,800-3,700/s; records of 4 KiB and over span two
 * pages per write, a little slower). Large batches should be bandwidth-bound at fio's
 * large-write rate (~300-500 MB/s here); staging costs ~3 passes over the data (~0.1 ms
 * per MiB), small against ~2-3 ms of device time per MiB. With 1,000 appenders of 256 B,
 * ~500 records (150 KB) share each fsync; if that write + fdatasync takes ~0.5-1 ms,
 * appends run at ~500,000-1,000,000/s, well above the 200,000/s goal, and latency is
 * about two flushes. Measured (bench/RESULTS.md, a quiet phase of the VM): k = 1 at
 * 3,500/s (256 B), 1024 x 64 KiB at ~380 MB/s, 1,000 appenders at ~880,000/s; callgrind
 * counts ~1,100 instructions per 256 B append. In the VM's slow phases (every flush
 * ~4 ms whatever its size) everything flush-bound is ~10x lower: 1,000 appenders in two
 * alternating cohorts are then capped at 500 records / 4 ms = 125,000/s.
 *
 * Hardware where the figures in bench/RESULTS.md were taken: a 2-vCPU VM, AMD EPYC,
 * ext4 on a virtio disk (/dev/vda, mounted with discard), kernel 6.x, shared with other
 * jobs and noisy: compare within one run of bench/compare/wal_vs_fio.sh, not across
 * days. gcc 12 -O2, jemalloc 5.3 (release build), liburing 2.3.
 *
 * Run: cmake --preset release && cmake --build build/release --target wal_bench &&
 *      ./build/release/bench/micro/wal_bench [--quick | --full] [--runs N]
 *      [--seconds S] [--dir DIR] [--json]       (--help lists every flag)
 * Side by side with fio: bench/compare/wal_vs_fio.sh.
 */
#define _GNU_SOURCE /* mkdtemp, unlinkat, syncfs */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/histogram.h"
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "core/util/rand.h"
#include "storage/disk/disk_uring.h"
#include "storage/wal/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* The bench's own limits (STYLE R19): what a flag may ask for. */
#define WB_LIST_MAX 8u      /* values in one list flag */
#define WB_CONFIGS_MAX 128u /* configurations in one invocation */
#define WB_RUNS_MAX 64u
#define WB_BATCH_MAX 65536u /* records per closed-loop batch */
#define WB_APPENDERS_MAX 100000u
#define WB_RECORD_BYTES_MAX (1024u * 1024u)
#define WB_GROUPS_MAX TS_WAL_GROUPS_MAX
#define WB_SECONDS_MAX 600.0
#define WB_DIR_BYTES_MAX 200u
/* Closed-loop batches run before measuring, and measured at least, whatever the time:
 * a batch of 1024 x 64 KiB takes a fifth of a second or more. */
#define WB_WARMUP_BATCHES 4u
/* Records populate() stages per flush, and the appender of records no appender waits for. */
#define WB_POPULATE_BATCH 1024u
#define WB_NO_APPENDER UINT32_MAX
#define WB_MIN_BATCHES 3u

_Static_assert(WB_RECORD_BYTES_MAX <= TS_WAL_ENTRY_BYTES_MAX, "a record fits one WAL entry");
_Static_assert(WB_CONFIGS_MAX >= 4 * 4 * 3 + WB_LIST_MAX,
               "room for the full matrix (4 sizes x 4 batches x 3 group counts) and appenders");

struct wb_list {
    uint32_t v[WB_LIST_MAX];
    uint32_t n;
};

struct wb_opts {
    char dir[WB_DIR_BYTES_MAX];
    double seconds;
    double warmup_seconds;
    uint32_t runs;
    uint64_t batches_max;     /* per run */
    uint64_t bytes_max;       /* payload bytes per run */
    uint32_t retain;          /* entries per group kept before compaction; 0: never */
    struct wb_list sizes;     /* batch workload: record bytes */
    struct wb_list batches;   /* batch workload: records per flush */
    struct wb_list groups;    /* batch workload: groups */
    struct wb_list appenders; /* appenders workload: appenders */
    uint32_t appender_bytes;
    uint32_t appender_groups;
    bool matrix_given; /* --sizes, --batches or --groups: their product only */
    bool full;
    bool quick;
    bool json;                       /* JSON on stdout instead of the table */
    char json_out[WB_DIR_BYTES_MAX]; /* also write the JSON to this file */
    bool no_batch;
    bool no_appenders;
    uint64_t seed;
};

struct wb_config {
    bool appenders; /* workload: appenders (else batch) */
    uint32_t record_bytes;
    uint32_t groups;
    uint32_t batch; /* batch: records per flush */
    uint32_t count; /* appenders: how many */
};

/* One measured run. */
struct wb_sample {
    double seconds;
    uint64_t appends;     /* records that became durable in the window */
    uint64_t fsyncs;      /* batches written (write + fdatasync) in the window */
    uint64_t log_bytes;   /* bytes written in the window */
    uint64_t alloc_calls; /* the WAL's alloc + realloc calls in the window */
    uint64_t alloc_bytes; /* and the bytes they asked for */
};

struct wb_result {
    struct wb_config cfg;
    struct wb_sample samples[WB_RUNS_MAX];
    uint32_t runs;
    uint64_t check;          /* XOR of the runs' final durable LSNs */
    struct ts_histogram lat; /* ns, every run's records */
};

struct wb_env {
    char tmp[WB_DIR_BYTES_MAX + 32]; /* mkdtemp'ed under opts.dir */
    struct disk *disk;
    uint8_t *payload; /* WB_RECORD_BYTES_MAX random bytes */
    char fs[16];
};

/* Forwards to libc's allocator and counts the calls, so that the bench can show whether
 * the WAL allocates in steady state (STYLE R12 says its hot path must not). */
struct wb_counting_allocator {
    struct ts_allocator base; /* base.ctx points back to this struct */
    const struct ts_allocator *inner;
    uint64_t calls; /* alloc + realloc */
    uint64_t bytes; /* allocated or reallocated to */
};

struct wb_pending {
    uint64_t lsn;  /* the record's LSN: durable once durable_lsn >= lsn */
    uint64_t t_ns; /* when it was staged */
    uint32_t appender;
};

/* The state of one run. */
struct wb_run {
    const struct wb_config *cfg;
    const struct wb_opts *opts;
    struct disk *disk;
    struct wal *wal;
    struct wb_counting_allocator *alloc;
    const uint8_t *payload;
    uint64_t *next_index;    /* per group (group g at [g - 1]): its next entry's index */
    uint64_t *compacted;     /* per group: its compaction point */
    uint64_t cursor;         /* batch: round-robin position over the groups */
    struct wb_pending *fifo; /* staged, not yet durable, in LSN order */
    uint64_t fifo_mask;
    uint64_t fifo_head;
    uint64_t fifo_tail;
    uint32_t *ready; /* appenders whose record is durable */
    uint32_t ready_count;
    struct ts_histogram *lat;
    bool measuring;
    uint64_t durable_records; /* while measuring */
    uint64_t durable_lsn;
    uint64_t staged_records; /* all, for the end-of-run check */
};

static void *count_alloc(void *ctx, size_t size)
{
    struct wb_counting_allocator *a = ctx;
    a->calls++;
    a->bytes += size;
    return ts_alloc(a->inner, size);
}

static void *count_realloc(void *ctx, void *p, size_t old_size, size_t new_size)
{
    struct wb_counting_allocator *a = ctx;
    a->calls++;
    a->bytes += new_size;
    return ts_realloc(a->inner, p, old_size, new_size);
}

static void count_free(void *ctx, void *p, size_t size)
{
    struct wb_counting_allocator *a = ctx;
    ts_free(a->inner, p, size);
}

static void counting_allocator_init(struct wb_counting_allocator *a)
{
    *a = (struct wb_counting_allocator){
        .base = {.alloc = count_alloc, .realloc = count_realloc, .free = count_free, .ctx = a},
        .inner = ts_allocator_default()};
    TS_ASSERT(a->base.ctx == a);
    TS_ASSERT(a->inner != NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ the WAL side */

static void on_durable(void *data, uint64_t durable_lsn)
{
    struct wb_run *r = data;
    TS_ASSERT(durable_lsn >= r->durable_lsn);
    r->durable_lsn = durable_lsn;
    uint64_t now = now_ns();
    while (r->fifo_head != r->fifo_tail) {
        const struct wb_pending *p = &r->fifo[r->fifo_head & r->fifo_mask];
        if (p->lsn > durable_lsn) {
            break;
        }
        TS_ASSERT(now >= p->t_ns);
        if (r->measuring) {
            ts_histogram_record(r->lat, now - p->t_ns);
            r->durable_records++;
        }
        if (r->cfg->appenders && p->appender != WB_NO_APPENDER) {
            TS_ASSERT(r->ready_count < r->cfg->count);
            r->ready[r->ready_count++] = p->appender;
        }
        r->fifo_head++;
    }
}

/* Compacts a group that holds more than --retain entries down to half of that. A full
 * WAL (TS_EFULL) only postpones it. */
static int maybe_compact(struct wb_run *r, uint64_t group)
{
    uint32_t retain = r->opts->retain;
    uint64_t last = r->next_index[group - 1] - 1;
    if (retain == 0 || last - r->compacted[group - 1] <= retain) {
        return 0;
    }
    uint64_t to = last - retain / 2;
    TS_ASSERT(to > r->compacted[group - 1]);
    int rc = wal_compact(r->wal, group, to);
    if (rc == 0) {
        r->compacted[group - 1] = to;
    }
    return rc == TS_EFULL ? 0 : rc;
}

/* Stages one record for group (1-based) on behalf of appender. */
static int append_one(struct wb_run *r, uint64_t group, uint32_t appender)
{
    TS_ASSERT(group >= 1 && group <= r->cfg->groups);
    TS_ASSERT(r->fifo_tail - r->fifo_head <= r->fifo_mask);
    uint64_t *next = &r->next_index[group - 1];
    struct wal_entry e = {
        .term = 1, .index = *next, .data = r->payload, .len = r->cfg->record_bytes};
    uint64_t t = now_ns();
    int rc = wal_append(r->wal, group, &e, 1);
    if (rc != 0) {
        return rc;
    }
    (*next)++;
    r->staged_records++;
    r->fifo[r->fifo_tail & r->fifo_mask] =
        (struct wb_pending){.lsn = wal_staged_lsn(r->wal), .t_ns = t, .appender = appender};
    r->fifo_tail++;
    return maybe_compact(r, group);
}

/* Runs the disk once, blocking until a completion. */
static int run_disk(struct wb_run *r)
{
    TS_ASSERT(disk_inflight(r->disk) > 0); /* else the WAL broke its flush contract */
    int rc = disk_run(r->disk, true);
    if (rc < 0) {
        return rc;
    }
    return wal_error(r->wal);
}

/* wal_flush, then runs the disk until everything staged is durable. */
static int flush_and_wait(struct wb_run *r)
{
    int rc = wal_flush(r->wal);
    while (rc == 0 && wal_durable_lsn(r->wal) < wal_staged_lsn(r->wal)) {
        rc = run_disk(r);
    }
    TS_ASSERT(rc != 0 || wal_durable_lsn(r->wal) == wal_staged_lsn(r->wal));
    return rc;
}

/* Stages one closed-loop batch of k records; a full WAL is flushed and waited for. */
static int stage_batch(struct wb_run *r)
{
    uint32_t k = r->cfg->batch;
    for (uint32_t i = 0; i < k;) {
        uint64_t group = r->cursor % r->cfg->groups + 1;
        int rc = append_one(r, group, 0);
        if (rc == TS_EFULL && !wal_idle(r->wal)) {
            rc = flush_and_wait(r);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        if (rc != 0) {
            return rc;
        }
        r->cursor++;
        i++;
    }
    return 0;
}

/* Gives every group its first entry before anything is measured: a shard has all its
 * groups from the start, and per-group costs (lookups, scans, state records) scale with
 * the live groups. */
static int populate(struct wb_run *r)
{
    uint32_t g = 1;
    while (g <= r->cfg->groups) {
        for (uint32_t i = 0; i < WB_POPULATE_BATCH && g <= r->cfg->groups; i++, g++) {
            int rc = append_one(r, g, WB_NO_APPENDER);
            if (rc != 0) {
                return rc;
            }
        }
        int rc = flush_and_wait(r);
        if (rc != 0) {
            return rc;
        }
    }
    TS_ASSERT(r->fifo_head == r->fifo_tail);
    return 0;
}

static void stats_delta(const struct wal_stats *a, const struct wal_stats *b, uint64_t t0,
                        uint64_t t1, struct wb_sample *s)
{
    TS_ASSERT(b->batches_written >= a->batches_written);
    TS_ASSERT(t1 > t0);
    s->fsyncs = b->batches_written - a->batches_written;
    s->log_bytes = b->bytes_written - a->bytes_written;
    s->seconds = (double)(t1 - t0) / 1e9;
}

/* What the window's start knew, to subtract at its end. */
struct wb_mark {
    struct wal_stats stats;
    uint64_t t_ns;
    uint64_t alloc_calls;
    uint64_t alloc_bytes;
};

static void mark(const struct wb_run *r, struct wb_mark *m)
{
    wal_get_stats(r->wal, &m->stats);
    m->alloc_calls = r->alloc->calls;
    m->alloc_bytes = r->alloc->bytes;
    m->t_ns = now_ns();
}

static void window(const struct wb_mark *a, const struct wb_mark *b, struct wb_sample *s)
{
    TS_ASSERT(b->alloc_calls >= a->alloc_calls);
    s->alloc_calls = b->alloc_calls - a->alloc_calls;
    s->alloc_bytes = b->alloc_bytes - a->alloc_bytes;
    stats_delta(&a->stats, &b->stats, a->t_ns, b->t_ns, s);
}

static bool run_over(const struct wb_run *r, uint64_t t0, uint64_t batches, uint64_t bytes)
{
    const struct wb_opts *o = r->opts;
    return (double)(now_ns() - t0) >= o->seconds * 1e9 || batches >= o->batches_max ||
           bytes >= o->bytes_max;
}

/* Workload "batch k". */
static int run_batches(struct wb_run *r, struct wb_sample *s)
{
    int rc = populate(r);
    uint64_t warm_end = now_ns() + (uint64_t)(r->opts->warmup_seconds * 1e9);
    /* At least WB_WARMUP_BATCHES, so that the WAL's batch buffers have reached their
     * steady size even when one batch takes longer than the warm-up. */
    for (uint32_t i = 0; rc == 0 && (i < WB_WARMUP_BATCHES || now_ns() < warm_end); i++) {
        rc = stage_batch(r);
        rc = rc != 0 ? rc : flush_and_wait(r);
    }
    struct wb_mark a, b;
    mark(r, &a);
    uint64_t batches = 0;
    r->measuring = true;
    while (rc == 0) {
        rc = stage_batch(r);
        rc = rc != 0 ? rc : flush_and_wait(r);
        batches++;
        uint64_t bytes = r->durable_records * r->cfg->record_bytes;
        if (batches >= WB_MIN_BATCHES && run_over(r, a.t_ns, batches, bytes)) {
            break;
        }
    }
    r->measuring = false;
    mark(r, &b);
    window(&a, &b, s);
    s->appends = r->durable_records;
    return rc;
}

/* Re-appends every appender whose record became durable, then flushes. Appenders the
 * WAL cannot take now (TS_EFULL) stay ready for the next round. */
static int reappend(struct wb_run *r)
{
    uint32_t done = 0;
    int rc = 0;
    while (done < r->ready_count) {
        uint32_t a = r->ready[done];
        rc = append_one(r, a % r->cfg->groups + 1, a);
        if (rc != 0) {
            break;
        }
        done++;
    }
    memmove(r->ready, r->ready + done, (size_t)(r->ready_count - done) * sizeof(*r->ready));
    r->ready_count -= done;
    if (rc == TS_EFULL) {
        rc = 0;
    }
    return rc != 0 ? rc : wal_flush(r->wal);
}

/* Starts the appenders in two halves, the second staged while the first is written. */
static int start_appenders(struct wb_run *r)
{
    uint32_t n = r->cfg->count;
    TS_ASSERT(n >= 1);
    TS_ASSERT(r->ready_count == 0);
    for (uint32_t i = 0; i < n; i++) {
        int rc = append_one(r, i % r->cfg->groups + 1, i);
        if (rc == 0 && (i + 1 == n / 2 || i + 1 == n)) {
            rc = wal_flush(r->wal);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Workload "appenders N". */
static int run_appenders(struct wb_run *r, struct wb_sample *s)
{
    int rc = populate(r);
    rc = rc != 0 ? rc : start_appenders(r);
    uint64_t warm_end = now_ns() + (uint64_t)(r->opts->warmup_seconds * 1e9);
    struct wb_mark a = {0}, b = {0};
    while (rc == 0) {
        rc = run_disk(r);
        if (rc != 0) {
            break;
        }
        if (!r->measuring && now_ns() >= warm_end) {
            mark(r, &a);
            r->measuring = true;
        } else if (r->measuring) {
            mark(r, &b);
            if (run_over(r, a.t_ns, b.stats.batches_written - a.stats.batches_written,
                         r->durable_records * r->cfg->record_bytes)) {
                break;
            }
        }
        rc = reappend(r);
    }
    r->measuring = false;
    if (rc == 0) {
        window(&a, &b, s);
        s->appends = r->durable_records;
        rc = flush_and_wait(r); /* what is still staged or in flight */
    }
    return rc;
}

/* ------------------------------------------------------------------ one run */

static int remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (unlinkat(dirfd(d), de->d_name, 0) != 0 && rc == 0) {
            rc = -errno;
        }
    }
    closedir(d);
    if (rmdir(dir) != 0 && rc == 0) {
        rc = -errno;
    }
    return rc;
}

/* Commits the file system's journal, so that the previous run's deletions (and the
 * discards they cause on a filesystem mounted with discard) are not paid by the next. */
static void settle(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n) {
        p *= 2;
    }
    return p;
}

static int run_alloc(struct wb_run *r)
{
    const struct wb_config *c = r->cfg;
    uint64_t inflight = c->appenders ? c->count : c->batch;
    r->fifo_mask = pow2_at_least(inflight > WB_POPULATE_BATCH ? inflight : WB_POPULATE_BATCH) - 1;
    r->next_index = calloc(c->groups, sizeof(*r->next_index));
    r->compacted = calloc(c->groups, sizeof(*r->compacted));
    r->fifo = calloc(r->fifo_mask + 1, sizeof(*r->fifo));
    r->ready = calloc(c->appenders ? c->count : 1, sizeof(*r->ready));
    if (r->next_index == NULL || r->compacted == NULL || r->fifo == NULL || r->ready == NULL) {
        return TS_ENOMEM;
    }
    for (uint32_t g = 0; g < c->groups; g++) {
        r->next_index[g] = 1;
    }
    return 0;
}

static void run_free(struct wb_run *r)
{
    free(r->next_index);
    free(r->compacted);
    free(r->fifo);
    free(r->ready);
}

/* After a run: nothing left in flight, every record durable and known to the WAL. */
static int run_check(struct wb_run *r)
{
    if (!wal_idle(r->wal) || r->fifo_head != r->fifo_tail ||
        wal_durable_lsn(r->wal) != wal_staged_lsn(r->wal)) {
        return TS_EIO;
    }
    uint64_t entries = 0;
    for (uint32_t g = 1; g <= r->cfg->groups; g++) {
        struct wal_group_info info;
        if (r->next_index[g - 1] == 1) {
            continue; /* never appended to */
        }
        if (wal_group_info(r->wal, g, &info) != 0 || info.last_index != r->next_index[g - 1] - 1) {
            return TS_ECORRUPT;
        }
        entries += info.last_index;
    }
    return entries == r->staged_records ? 0 : TS_ECORRUPT;
}

static int run_once(const struct wb_opts *o, struct wb_env *env, struct wb_result *res)
{
    char dir[sizeof(env->tmp) + 8];
    snprintf(dir, sizeof(dir), "%s/run", env->tmp);
    struct wb_counting_allocator alloc;
    counting_allocator_init(&alloc);
    struct wb_run r = {.cfg = &res->cfg,
                       .opts = o,
                       .disk = env->disk,
                       .alloc = &alloc,
                       .payload = env->payload,
                       .lat = &res->lat};
    int rc = run_alloc(&r);
    struct wal_config wc = {.dir = dir, .durable_cb = on_durable, .data = &r};
    char errmsg[256] = "";
    if (rc == 0) {
        rc = wal_open(&wc, env->disk, &alloc.base, &r.wal, errmsg, sizeof(errmsg));
    }
    struct wb_sample s = {0};
    if (rc == 0) {
        rc = res->cfg.appenders ? run_appenders(&r, &s) : run_batches(&r, &s);
        rc = rc != 0 ? rc : run_check(&r);
    }
    if (r.wal != NULL) {
        while (!wal_idle(r.wal) && disk_inflight(env->disk) > 0 && disk_run(env->disk, true) >= 0) {
        }
        res->check ^= wal_durable_lsn(r.wal);
        wal_close(r.wal);
    }
    run_free(&r);
    int rm = remove_tree(dir);
    settle(env->tmp);
    if (rc != 0) {
        fprintf(stderr, "wal_bench: run failed: %s %s\n", ts_strerror(rc), errmsg);
        return rc;
    }
    TS_ASSERT(res->runs < WB_RUNS_MAX);
    res->samples[res->runs++] = s;
    return rm;
}

/* ------------------------------------------------------------------ statistics */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static double median_of(double *v, uint32_t n)
{
    TS_ASSERT(n > 0);
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum wb_metric {
    WB_APPENDS_S,
    WB_PAYLOAD_MB_S,
    WB_LOG_MB_S,
    WB_FSYNCS_S,
    WB_REC_PER_FSYNC,
    WB_ALLOCS_PER_FSYNC,
    WB_ALLOC_MB_PER_FSYNC,
};

static double metric_of(const struct wb_result *res, const struct wb_sample *s, enum wb_metric m)
{
    TS_ASSERT(s->seconds > 0);
    switch (m) {
    case WB_APPENDS_S:
        return (double)s->appends / s->seconds;
    case WB_PAYLOAD_MB_S:
        return (double)s->appends * res->cfg.record_bytes / s->seconds / 1e6;
    case WB_LOG_MB_S:
        return (double)s->log_bytes / s->seconds / 1e6;
    case WB_FSYNCS_S:
        return (double)s->fsyncs / s->seconds;
    case WB_REC_PER_FSYNC:
        return s->fsyncs == 0 ? 0 : (double)s->appends / (double)s->fsyncs;
    case WB_ALLOCS_PER_FSYNC:
        return s->fsyncs == 0 ? 0 : (double)s->alloc_calls / (double)s->fsyncs;
    default:
        return s->fsyncs == 0 ? 0 : (double)s->alloc_bytes / 1e6 / (double)s->fsyncs;
    }
}

struct wb_summary {
    double median;
    double mad;
    double min;
    double max;
};

static struct wb_summary summarize(const struct wb_result *res, enum wb_metric m)
{
    double v[WB_RUNS_MAX], dev[WB_RUNS_MAX];
    uint32_t n = res->runs;
    TS_ASSERT(n > 0 && n <= WB_RUNS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        v[i] = metric_of(res, &res->samples[i], m);
    }
    double median = median_of(v, n); /* sorts v */
    struct wb_summary s = {.median = median, .min = v[0], .max = v[n - 1]};
    for (uint32_t i = 0; i < n; i++) {
        dev[i] = v[i] > s.median ? v[i] - s.median : s.median - v[i];
    }
    s.mad = median_of(dev, n);
    TS_ASSERT(s.min <= s.median && s.median <= s.max);
    return s;
}

/* ------------------------------------------------------------------ output */

static const char *workload_name(const struct wb_config *c)
{
    return c->appenders ? "appenders" : "batch";
}

static uint32_t config_n(const struct wb_config *c)
{
    return c->appenders ? c->count : c->batch;
}

static double lat_us(const struct wb_result *res, double p)
{
    return (double)ts_histogram_percentile(&res->lat, p) / 1e3;
}

static void print_table(const struct wb_result *res, uint32_t n)
{
    printf("%-9s %6s %6s %6s %4s %11s %9s %11s %11s %9s %9s %9s %9s %9s %9s %9s %11s\n", "workload",
           "bytes", "groups", "k|N", "runs", "appends/s", "MAD", "min", "max", "pay MB/s",
           "log MB/s", "fsyncs/s", "rec/fsync", "p50 us", "p99 us", "p99.9 us", "alloc/fsync");
    for (uint32_t i = 0; i < n; i++) {
        const struct wb_result *r = &res[i];
        struct wb_summary a = summarize(r, WB_APPENDS_S);
        printf("%-9s %6u %6u %6u %4u %11.0f %9.0f %11.0f %11.0f %9.2f %9.2f %9.0f %9.1f "
               "%9.0f %9.0f %9.0f %11.2f\n",
               workload_name(&r->cfg), r->cfg.record_bytes, r->cfg.groups, config_n(&r->cfg),
               r->runs, a.median, a.mad, a.min, a.max, summarize(r, WB_PAYLOAD_MB_S).median,
               summarize(r, WB_LOG_MB_S).median, summarize(r, WB_FSYNCS_S).median,
               summarize(r, WB_REC_PER_FSYNC).median, lat_us(r, 50), lat_us(r, 99), lat_us(r, 99.9),
               summarize(r, WB_ALLOCS_PER_FSYNC).median);
    }
    printf("\nappends/s: median of the runs (MAD, min, max); other columns: medians; latency: "
           "staging to durable_cb, all runs' records; alloc/fsync: the WAL's allocator calls "
           "per batch written\n");
}

static void print_json_summary(FILE *f, const char *name, struct wb_summary s)
{
    fprintf(f, "\"%s\": {\"median\": %.3f, \"mad\": %.3f, \"min\": %.3f, \"max\": %.3f}, ", name,
            s.median, s.mad, s.min, s.max);
}

static void print_json_result(FILE *f, const struct wb_result *r, bool last)
{
    fprintf(f,
            "  {\"workload\": \"%s\", \"record_bytes\": %u, \"groups\": %u, "
            "\"batch\": %u, \"appenders\": %u, \"runs\": %u, ",
            workload_name(&r->cfg), r->cfg.record_bytes, r->cfg.groups,
            r->cfg.appenders ? 0 : r->cfg.batch, r->cfg.appenders ? r->cfg.count : 0, r->runs);
    print_json_summary(f, "appends_per_s", summarize(r, WB_APPENDS_S));
    print_json_summary(f, "payload_mb_per_s", summarize(r, WB_PAYLOAD_MB_S));
    print_json_summary(f, "log_mb_per_s", summarize(r, WB_LOG_MB_S));
    print_json_summary(f, "fsyncs_per_s", summarize(r, WB_FSYNCS_S));
    print_json_summary(f, "records_per_fsync", summarize(r, WB_REC_PER_FSYNC));
    print_json_summary(f, "allocs_per_fsync", summarize(r, WB_ALLOCS_PER_FSYNC));
    print_json_summary(f, "alloc_mb_per_fsync", summarize(r, WB_ALLOC_MB_PER_FSYNC));
    fprintf(f,
            "\"latency_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
            "\"max\": %.1f}, \"samples\": %" PRIu64 ", \"check\": %" PRIu64 "}%s\n",
            lat_us(r, 50), lat_us(r, 99), lat_us(r, 99.9), lat_us(r, 100),
            ts_histogram_count(&r->lat), r->check, last ? "" : ",");
}

static void print_json(FILE *f, const struct wb_opts *o, const struct wb_env *env,
                       const struct wb_result *res, uint32_t n)
{
    struct utsname u;
    uname(&u);
    fprintf(f,
            "{\"bench\": \"wal_bench\", \"kernel\": \"%s\", \"fs\": \"%s\", "
            "\"runs\": %u, \"seconds\": %.3f, \"warmup_seconds\": %.3f, "
            "\"retain\": %u, \"results\": [\n",
            u.release, env->fs, o->runs, o->seconds, o->warmup_seconds, o->retain);
    for (uint32_t i = 0; i < n; i++) {
        print_json_result(f, &res[i], i + 1 == n);
    }
    fprintf(f, "]}\n");
}

static void print_header(const struct wb_opts *o, const struct wb_env *env, uint32_t n)
{
    struct utsname u;
    uname(&u);
    printf("wal_bench: %u configurations x %u runs of %.2f s (+%.2f s warm-up); kernel %s; "
           "WAL in %s (%s), io_uring backend, one shard; retain %u entries per group\n\n",
           n, o->runs, o->seconds, o->warmup_seconds, u.release, env->tmp, env->fs, o->retain);
}

/* ------------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fprintf(f, "usage: wal_bench [--quick | --full] [--runs N] [--seconds S] [--warmup S]\n"
               "         [--dir DIR] [--sizes B,..] [--batches K,..] [--groups G,..]\n"
               "         [--appenders N,..] [--appender-bytes B] [--appender-groups G]\n"
               "         [--no-batch] [--no-appenders] [--retain N] [--max-batches N]\n"
               "         [--max-bytes B] [--seed N] [--json] [--json-out FILE]\n"
               "  default: batch k in {1,16,256,1024} x bytes {64,256,4096,65536} on 1 group,\n"
               "           k in {1,1024} x 256 B on 100 and 10000 groups, and 100, 1000 and\n"
               "           10000 appenders of 256 B on 100 groups; 3 runs of 1 s (~2 min)\n"
               "  --quick: 2 runs of 0.5 s of a small matrix (~20 s); --full: the whole\n"
               "           product sizes x batches x groups {1,100,10000}\n"
               "  --sizes/--batches/--groups: run only their product (batch workload)\n");
}

static int parse_list(const char *s, struct wb_list *l, uint32_t lo, uint32_t hi)
{
    l->n = 0;
    while (*s != 0) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v < lo || v > hi || l->n == WB_LIST_MAX || (*end != ',' && *end != 0)) {
            return TS_EINVAL;
        }
        l->v[l->n++] = (uint32_t)v;
        s = *end == ',' ? end + 1 : end;
    }
    return l->n > 0 ? 0 : TS_EINVAL;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != 0 || errno != 0 || v < lo || v > hi) {
        return TS_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != 0 || !(v >= 0 && v <= WB_SECONDS_MAX)) {
        return TS_EINVAL;
    }
    *out = v;
    return 0;
}

static void set_list(struct wb_list *l, const uint32_t *v, uint32_t n)
{
    TS_ASSERT(n <= WB_LIST_MAX);
    memcpy(l->v, v, n * sizeof(*v));
    l->n = n;
}

/* Defaults, then what --quick or --full changes. */
static void opts_defaults(struct wb_opts *o, bool quick, bool full)
{
    static const uint32_t sizes[] = {64, 256, 4096, 65536}, batches[] = {1, 16, 256, 1024};
    static const uint32_t groups[] = {1, 100, 10000}, appenders[] = {100, 1000, 10000};
    *o = (struct wb_opts){.seconds = 1.0,
                          .warmup_seconds = 0.2,
                          .runs = 3,
                          .batches_max = 10000000,
                          .bytes_max = 8ull << 30,
                          .retain = 10000,
                          .appender_bytes = 256,
                          .appender_groups = 100,
                          .quick = quick,
                          .full = full,
                          .seed = 1};
    snprintf(o->dir, sizeof(o->dir), "/tmp");
    set_list(&o->sizes, sizes, 4);
    set_list(&o->batches, batches, 4);
    set_list(&o->groups, groups, full ? 3 : 1);
    set_list(&o->appenders, appenders, 3);
    if (quick) {
        static const uint32_t qsizes[] = {256, 65536}, qbatches[] = {1, 1024};
        static const uint32_t qappenders[] = {1000};
        o->seconds = 0.5;
        o->warmup_seconds = 0.1;
        o->runs = 2;
        set_list(&o->sizes, qsizes, 2);
        set_list(&o->batches, qbatches, 2);
        set_list(&o->appenders, qappenders, 1);
    }
}

/* One flag with a value; returns 0, or TS_EINVAL for a bad value or unknown flag. */
static int parse_valued(struct wb_opts *o, const char *flag, const char *v)
{
    uint64_t x = 0;
    int rc = TS_EINVAL;
    if (strcmp(flag, "--runs") == 0 && (rc = parse_u64(v, 1, WB_RUNS_MAX, &x)) == 0) {
        o->runs = (uint32_t)x;
    } else if (strcmp(flag, "--seconds") == 0) {
        rc = parse_seconds(v, &o->seconds);
    } else if (strcmp(flag, "--warmup") == 0) {
        rc = parse_seconds(v, &o->warmup_seconds);
    } else if (strcmp(flag, "--dir") == 0 && strlen(v) < sizeof(o->dir)) {
        snprintf(o->dir, sizeof(o->dir), "%s", v);
        rc = 0;
    } else if (strcmp(flag, "--json-out") == 0 && strlen(v) < sizeof(o->json_out)) {
        snprintf(o->json_out, sizeof(o->json_out), "%s", v);
        rc = 0;
    } else if (strcmp(flag, "--sizes") == 0) {
        rc = parse_list(v, &o->sizes, 1, WB_RECORD_BYTES_MAX);
        o->matrix_given = true;
    } else if (strcmp(flag, "--batches") == 0) {
        rc = parse_list(v, &o->batches, 1, WB_BATCH_MAX);
        o->matrix_given = true;
    } else if (strcmp(flag, "--groups") == 0) {
        rc = parse_list(v, &o->groups, 1, WB_GROUPS_MAX);
        o->matrix_given = true;
    } else if (strcmp(flag, "--appenders") == 0) {
        rc = parse_list(v, &o->appenders, 1, WB_APPENDERS_MAX);
    } else if (strcmp(flag, "--appender-bytes") == 0 &&
               (rc = parse_u64(v, 1, WB_RECORD_BYTES_MAX, &x)) == 0) {
        o->appender_bytes = (uint32_t)x;
    } else if (strcmp(flag, "--appender-groups") == 0 &&
               (rc = parse_u64(v, 1, WB_GROUPS_MAX, &x)) == 0) {
        o->appender_groups = (uint32_t)x;
    } else if (strcmp(flag, "--retain") == 0 && (rc = parse_u64(v, 0, UINT32_MAX, &x)) == 0) {
        o->retain = (uint32_t)x;
    } else if (strcmp(flag, "--max-batches") == 0) {
        rc = parse_u64(v, 1, UINT64_MAX, &o->batches_max);
    } else if (strcmp(flag, "--max-bytes") == 0) {
        rc = parse_u64(v, 1, UINT64_MAX, &o->bytes_max);
    } else if (strcmp(flag, "--seed") == 0) {
        rc = parse_u64(v, 0, UINT64_MAX, &o->seed);
    }
    return rc;
}

static bool flag_is(const char *a, const char *name)
{
    return strcmp(a, name) == 0;
}

/* Returns 0, 1 for --help, or TS_EINVAL. */
static int parse_opts(int argc, char **argv, struct wb_opts *o)
{
    bool quick = false, full = false;
    for (int i = 1; i < argc; i++) {
        quick = quick || flag_is(argv[i], "--quick");
        full = full || flag_is(argv[i], "--full");
    }
    opts_defaults(o, quick, full);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flag_is(a, "--help") || flag_is(a, "-h")) {
            return 1;
        } else if (flag_is(a, "--quick") || flag_is(a, "--full")) {
            continue;
        } else if (flag_is(a, "--json")) {
            o->json = true;
        } else if (flag_is(a, "--no-batch")) {
            o->no_batch = true;
        } else if (flag_is(a, "--no-appenders")) {
            o->no_appenders = true;
        } else if (i + 1 >= argc || parse_valued(o, a, argv[i + 1]) != 0) {
            fprintf(stderr, "wal_bench: bad or unknown flag %s\n", a);
            return TS_EINVAL;
        } else {
            i++;
        }
    }
    return quick && full ? TS_EINVAL : 0;
}

/* ------------------------------------------------------------------ the matrix */

static uint32_t add_config(struct wb_result *res, uint32_t n, struct wb_config c)
{
    TS_ASSERT(n < WB_CONFIGS_MAX);
    TS_ASSERT(c.groups >= 1 && c.record_bytes >= 1);
    res[n].cfg = c;
    return n + 1;
}

static uint32_t add_product(struct wb_result *res, uint32_t n, const struct wb_list *sizes,
                            const struct wb_list *batches, const struct wb_list *groups)
{
    for (uint32_t g = 0; g < groups->n; g++) {
        for (uint32_t k = 0; k < batches->n; k++) {
            for (uint32_t s = 0; s < sizes->n; s++) {
                if (n == WB_CONFIGS_MAX) {
                    return n;
                }
                n = add_config(res, n,
                               (struct wb_config){.record_bytes = sizes->v[s],
                                                  .groups = groups->v[g],
                                                  .batch = batches->v[k]});
            }
        }
    }
    return n;
}

/* The configurations to run, as described in usage(). */
static uint32_t build_matrix(const struct wb_opts *o, struct wb_result *res)
{
    uint32_t n = 0;
    if (!o->no_batch) {
        n = add_product(res, n, &o->sizes, &o->batches, &o->groups);
        if (!o->matrix_given && !o->full) {
            struct wb_list s256 = {.v = {256}, .n = 1};
            struct wb_list k = {.v = {1, 1024}, .n = 2};
            struct wb_list g = {.v = {100, 10000}, .n = o->quick ? 1 : 2};
            if (o->quick) {
                g.v[0] = 10000;
                k.v[0] = 1024;
                k.n = 1;
            }
            n = add_product(res, n, &s256, &k, &g);
        }
    }
    for (uint32_t i = 0; !o->no_appenders && i < o->appenders.n && n < WB_CONFIGS_MAX; i++) {
        n = add_config(res, n,
                       (struct wb_config){.appenders = true,
                                          .record_bytes = o->appender_bytes,
                                          .groups = o->appender_groups,
                                          .count = o->appenders.v[i]});
    }
    return n;
}

/* ------------------------------------------------------------------ main */

static const char *fs_name(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) != 0) {
        return "?";
    }
    switch ((unsigned long)sf.f_type) {
    case 0xEF53:
        return "ext4";
    case 0x58465342:
        return "xfs";
    case 0x9123683E:
        return "btrfs";
    case 0x01021994:
        return "tmpfs";
    case 0x794C7630:
        return "overlayfs";
    default:
        return "other";
    }
}

static int env_open(const struct wb_opts *o, struct wb_env *env)
{
    snprintf(env->tmp, sizeof(env->tmp), "%s/wal_bench.XXXXXX", o->dir);
    if (mkdtemp(env->tmp) == NULL) {
        fprintf(stderr, "wal_bench: cannot make a directory in %s: %s\n", o->dir, strerror(errno));
        return -errno;
    }
    snprintf(env->fs, sizeof(env->fs), "%s", fs_name(env->tmp));
    env->payload = malloc(WB_RECORD_BYTES_MAX);
    if (env->payload == NULL) {
        return TS_ENOMEM;
    }
    struct ts_rand rnd;
    ts_rand_seed(&rnd, o->seed);
    for (uint32_t i = 0; i < WB_RECORD_BYTES_MAX; i += 8) {
        uint64_t v = ts_rand_u64(&rnd);
        memcpy(env->payload + i, &v, 8);
    }
    struct disk_uring_config dc = {0};
    int rc = disk_uring_create(&dc, ts_allocator_default(), &env->disk);
    if (rc != 0) {
        fprintf(stderr, "wal_bench: io_uring: %s\n", ts_strerror(rc));
    }
    return rc;
}

static void env_close(struct wb_env *env)
{
    disk_destroy(env->disk);
    free(env->payload);
    if (env->tmp[0] != 0) {
        remove_tree(env->tmp);
    }
}

static int run_all(const struct wb_opts *o, struct wb_env *env, struct wb_result *res, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        ts_histogram_init(&res[i].lat);
    }
    bool tty = isatty(STDERR_FILENO) != 0; /* progress on one line, else one per run */
    for (uint32_t run = 0; run < o->runs; run++) {
        for (uint32_t i = 0; i < n; i++) {
            const struct wb_config *c = &res[i].cfg;
            fprintf(stderr, "%swal_bench: run %u/%u, config %3u/%u (%s %u B, %u groups, %u)%s",
                    tty ? "\r" : "", run + 1, o->runs, i + 1, n, workload_name(c), c->record_bytes,
                    c->groups, config_n(c), tty ? "  " : "\n");
            int rc = run_once(o, env, &res[i]);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (tty) {
        fprintf(stderr, "\n");
    }
    return 0;
}

static int write_json_file(const struct wb_opts *o, const struct wb_env *env,
                           const struct wb_result *res, uint32_t n)
{
    FILE *f = fopen(o->json_out, "w");
    if (f == NULL) {
        fprintf(stderr, "wal_bench: cannot write %s: %s\n", o->json_out, strerror(errno));
        return -errno;
    }
    print_json(f, o, env, res, n);
    return fclose(f) == 0 ? 0 : -errno;
}

int main(int argc, char **argv)
{
    struct wb_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0) {
        usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    struct wb_result *res = calloc(WB_CONFIGS_MAX, sizeof(*res));
    struct wb_env env = {0};
    uint32_t n = res == NULL ? 0 : build_matrix(&o, res);
    rc = res == NULL ? TS_ENOMEM : n == 0 ? TS_EINVAL : env_open(&o, &env);
    if (rc == 0 && !o.json) {
        print_header(&o, &env, n);
    }
    rc = rc != 0 ? rc : run_all(&o, &env, res, n);
    if (rc == 0) {
        o.json ? print_json(stdout, &o, &env, res, n) : print_table(res, n);
    }
    if (rc == 0 && o.json_out[0] != 0) {
        rc = write_json_file(&o, &env, res, n);
    }
    env_close(&env);
    free(res);
    if (rc != 0) {
        fprintf(stderr, "wal_bench: %s\n", ts_strerror(rc));
        return 1;
    }
    return 0;
}
