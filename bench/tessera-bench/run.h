/*
 * run: the state a run shares between main (progress, signals, summary) and the driver's
 * workers, and what every driver does the same way: admitting an operation (the --total
 * budget, the --duration deadline, the --rate schedule, SIGINT), choosing its kind and key,
 * and recording its completion.
 *
 * Threads. A worker is one thread's worth of load: for the Tessera driver a thread with
 * its own tessera_client and loop; for the ZooKeeper driver one session, whose next
 * operation is issued from the completion of the last (on ZooKeeper's completion thread)
 * or by one of the driver's two pump threads, one at a time per session. A worker owns
 * a fixed table of operation slots (its clients x --inflight) and a free list of them. The
 * worker's lock guards the free list and its stats; it is taken once per operation by the
 * worker's own threads and once a second by main, so it is never a shared hot path. The
 * only state shared by all workers is two atomics: the operation counter (--total and
 * the sequential key order) and the stop flag.
 *
 * Lifetime of a phase (prefill, then the measured run): main fills the struct tb_run,
 * the driver starts its workers, main prints progress until every worker has finished,
 * then the driver joins them; main merges the workers' stats into the summary.
 */
#ifndef TB_RUN_H
#define TB_RUN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench/tessera-bench/keys.h"
#include "bench/tessera-bench/opts.h"
#include "bench/tessera-bench/rate.h"
#include "bench/tessera-bench/stats.h"

/* A CAS that conflicts this many times in a row is given up as TB_ECASRETRIES. */
#define TB_CAS_TRIES_MAX 64u
/* The znode that holds every key of the ZooKeeper driver. */
#define TB_ZK_PARENT "/tessera-bench"
/* A znode path's bytes for a key of key_size bytes: the parent, '/', two hex digits per
 * key byte and a NUL. */
#define TB_ZK_PATH_BYTES(key_size) (sizeof TB_ZK_PARENT + 1u + 2u * (key_size) + 1u)

enum tb_op_kind { TB_OP_PUT = 0, TB_OP_GET = 1, TB_OP_CAS = 2, TB_OP_CREATE = 3 };

struct tb_worker;

/* One operation in flight. step, tries and seen belong to the driver. */
struct tb_op {
    struct tb_worker *w;
    uint32_t index;
    enum tb_op_kind kind;
    int step;
    uint32_t tries;
    int64_t seen;      /* CAS: the mod_revision (Tessera) or version (ZooKeeper) read */
    uint64_t due_ns;   /* the schedule's time (== start_ns at the open throttle) */
    uint64_t start_ns; /* when it was sent */
    uint32_t key_len;
    char *key;  /* key_size bytes, in the worker's key buffer */
    char *path; /* ZooKeeper: the znode, NUL-terminated, in the worker's path buffer */
};

struct tb_run;

struct tb_worker {
    struct tb_run *run;
    uint32_t id;
    uint32_t clients; /* logical clients of this worker */
    uint32_t nops;    /* clients * inflight */
    struct tb_op *ops;
    struct ts_rand rand;
    struct tb_rate rate;
    uint64_t issued; /* operations admitted, the rate schedule's n (by the one admitter) */
    bool done;       /* admission said no more (by the one admitter) */
    uint8_t *value;  /* val_size bytes, the value every put writes */
    char *keys;      /* nops keys of key_size bytes */
    char *paths;     /* nops znode paths (ZooKeeper only, else NULL) */

    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t freed; /* signalled when a slot returns (ZooKeeper's issuer waits) */
    uint32_t nfree;
    uint32_t *free;
    struct tb_stats *total;    /* heap: ~58 KiB each */
    struct tb_stats *interval; /* since main's last progress line */

    uint64_t end_ns; /* when the worker's thread finished the phase (set before live--) */
    void *drv;       /* the driver's per-worker state */
    pthread_t thread;
};

struct tb_run {
    const struct tb_opts *o;
    /* The phase: the prefill writes (creates) every key once, sequentially, unmeasured. */
    bool prefill;
    enum tb_workload workload;
    enum tb_key_dist key_dist;
    uint64_t total; /* 0: none */
    double rate;
    uint64_t start_ns;
    uint64_t deadline_ns; /* 0: none */
    struct tb_zipf zipf;
    uint64_t scramble_mult;

    atomic_uint_fast64_t counter; /* operations admitted by all workers */
    atomic_bool stop;             /* SIGINT, or main's deadline */
    atomic_uint live;             /* workers still running */

    uint32_t nworkers;
    struct tb_worker *workers;
};

uint64_t tb_now_ns(void);

/* Builds the run's workers: nworkers of them sharing o->clients as evenly as possible
 * (and o->rate in proportion). Returns 0 or -ENOMEM. */
int tb_run_init(struct tb_run *run, const struct tb_opts *o, uint32_t nworkers);
void tb_run_fini(struct tb_run *run);

/* Starts a phase: resets the counters and stats, sets the phase's bounds. */
void tb_run_phase(struct tb_run *run, bool prefill);

enum tb_admit { TB_ADMIT_GO = 0, TB_ADMIT_WAIT = 1, TB_ADMIT_DONE = 2 };

/* Worker's thread: may another operation start now? GO fills *op_out (a free slot, with
 * kind, key, path, due and start times); WAIT sets *wait_ns until the schedule allows one
 * (or a slot is free: *wait_ns 0 then); DONE when the phase is over for this worker. */
enum tb_admit tb_admit(struct tb_worker *w, uint64_t now_ns, struct tb_op **op_out,
                       uint64_t *wait_ns);

/* Worker's thread, last thing in a phase: records end_ns and decrements run->live. */
void tb_worker_finished(struct tb_worker *w);

/* Any thread: the operation completed; code 0 records its latency, else counts the
 * error. Either way the slot is freed. */
void tb_complete(struct tb_op *op, int code);
/* Any thread: the slot is freed without counting anything (phase cut short). */
void tb_release(struct tb_op *op);
/* Any thread, op still in flight: count a CAS conflict, or a read that found no key. */
void tb_count_conflict(struct tb_op *op);
void tb_count_miss(struct tb_op *op);

/* Slots currently in flight (takes the lock). */
uint32_t tb_inflight(struct tb_worker *w);

/* Main: adds every worker's interval stats into out and resets them. */
void tb_run_take_interval(struct tb_run *run, struct tb_stats *out);
/* Main, after the workers stopped: adds every worker's total stats into out. */
void tb_run_merge_totals(struct tb_run *run, struct tb_stats *out);

#endif
