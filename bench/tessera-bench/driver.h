/*
 * driver: what main needs from a target's driver. A driver opens its connections or
 * sessions once (open), runs phases (start: the workers' threads begin; join: they have
 * all finished and are joined) and closes (close). Between start and join, main only
 * reads the workers' stats under their locks and may set run->stop.
 *
 * Tessera (driver_tessera.c): a thread per worker, each with its own tessera_client and
 * its own poll loop (the client is single-threaded by design); only net/client/tessera.h
 * is used. ZooKeeper (driver_zk.c): a session per worker (--conns sessions), each with
 * libzookeeper-mt's I/O and completion threads; an operation's completion issues the next
 * one, and a few issuing threads of ours fill, pace (--rate) and end each phase.
 */
#ifndef TB_DRIVER_H
#define TB_DRIVER_H

#include <stddef.h>

#include "bench/tessera-bench/run.h"

struct tb_driver {
    const char *name;
    /* The number of workers the run should have (called before tb_run_init). */
    uint32_t (*workers)(const struct tb_opts *o);
    /* Connects; returns 0 or a negative code with a reason in err. */
    int (*open)(struct tb_run *run, void **state, char *err, size_t cap);
    /* Starts the current phase's worker threads. */
    int (*start)(void *state, struct tb_run *run);
    /* Waits until every worker thread has ended. */
    void (*join)(void *state, struct tb_run *run);
    void (*close)(void *state, struct tb_run *run);
    /* The connections or sessions actually opened. */
    uint32_t (*conns)(void *state);
    /* The name of an error code the driver reports (never NULL). */
    const char *(*err_name)(int code);
    /* A caveat to print with the summary (or NULL). */
    const char *(*note)(const struct tb_opts *o);
};

extern const struct tb_driver tb_driver_tessera;
extern const struct tb_driver tb_driver_zk;

#endif
