/*
 * stats: what a run counts, and the two ways it is reported: the progress line (stderr,
 * once a second) and the summary (stdout, as text or as one JSON object).
 *
 * A struct tb_stats is plain data owned by whoever holds its lock (the worker, see
 * run.h); the final summary merges every worker's copy once they have stopped.
 * Latencies are recorded in nanoseconds for completed operations only; an error is
 * counted by its code (a TESSERA_E* code, a -errno, a ZooKeeper ZOO_ERRORS value or one of
 * the TB_E* codes below), the name coming from the driver's err_name function. Only the
 * first TB_ERR_KINDS_MAX distinct codes are told apart; the rest are counted as "other".
 *
 * Pure: printing goes to a FILE * the caller passes.
 */
#ifndef TB_STATS_H
#define TB_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/util/histogram.h"

#define TB_ERR_KINDS_MAX 32u

/* tessera-bench's own error codes, outside both TESSERA_E* and ZOO_ERRORS. */
#define TB_ECASRETRIES (-30001) /* a CAS conflicted TB_CAS_TRIES_MAX times in a row */

/* The names of tessera-bench's own codes (TB_E*), or NULL for other codes. */
const char *tb_own_err_name(int code);

struct tb_err_count {
    int code;
    uint64_t count;
};

struct tb_stats {
    uint64_t ops;           /* completed without error */
    uint64_t errors;        /* completed with an error */
    uint64_t misses;        /* gets (or CAS reads) that found no key: not errors */
    uint64_t cas_ok;        /* txn-cas: swaps that succeeded */
    uint64_t cas_conflicts; /* txn-cas: attempts that lost the race (retried; not errors) */
    uint32_t kinds;
    struct tb_err_count err[TB_ERR_KINDS_MAX];
    uint64_t err_other;
    struct ts_histogram latency; /* ns */
};

void tb_stats_init(struct tb_stats *s);
void tb_stats_record_ok(struct tb_stats *s, uint64_t latency_ns);
void tb_stats_record_error(struct tb_stats *s, int code);
/* Adds src into dst (borrows src). */
void tb_stats_merge(struct tb_stats *dst, const struct tb_stats *src);

/* What the summary says about the run besides the counts. */
struct tb_summary {
    const char *workload;
    const char *target; /* "tessera" or "zookeeper" */
    const char *hosts;
    const char *consistency; /* as run (e.g. "serializable") */
    const char *key_dist;
    const char *note; /* a caveat printed with the summary, or NULL */
    uint32_t threads;
    uint32_t conns; /* connections or sessions actually opened */
    uint32_t clients;
    uint32_t inflight;
    uint32_t key_size;
    uint32_t val_size;
    uint64_t keyspace;
    double rate; /* 0: open throttle */
    double read_ratio;
    bool interrupted; /* SIGINT cut the run short */
    uint64_t elapsed_ns;
    const struct tb_stats *stats;
    const char *(*err_name)(int code); /* never NULL */
};

void tb_summary_print_text(FILE *f, const struct tb_summary *s);
void tb_summary_print_json(FILE *f, const struct tb_summary *s);

/* One progress line (with its newline): the elapsed time, the rate of the last interval
 * (its ops over interval_s), its p50 and p99 in microseconds and its errors. */
void tb_progress_print(FILE *f, const char *phase, double elapsed_s, double interval_s,
                       const struct tb_stats *interval);

#endif
