/*
 * driver_zk: the same workloads on ZooKeeper, through libzookeeper-mt's asynchronous C
 * API, so that the two systems are measured by one tool in one way.
 *
 * Shape: --conns sessions (zookeeper_init each, waited on until ZOO_CONNECTED_STATE, at
 * most TB_ZK_CONNECT_MS). A session is a worker: its logical clients' slots, an issuing
 * thread of ours (admission, the rate schedule) and libzookeeper-mt's own I/O and
 * completion threads. Completions touch only their operation and their worker's locked
 * stats and free list.
 *
 * Keys: key k is the znode TB_ZK_PARENT "/" hex(k) (keys.h), all under one parent made at
 * open. Operations:
 *   put      zoo_aset(version -1); ZNONODE -> zoo_acreate (set-or-create), and
 *            ZNODEEXISTS there (another client created it meanwhile) -> zoo_aset again;
 *   prefill  zoo_acreate; ZNODEEXISTS -> zoo_aset (so the value has --val-size bytes);
 *   get      zoo_aget; with --consistency linearizable, zoo_async (sync) of the parent
 *            first. ZooKeeper answers getData from the connected server's local state:
 *            a plain get may miss writes acknowledged to other sessions (it is
 *            sequentially consistent per session, not linearizable). sync makes the
 *            server catch up with the leader first; that is ZooKeeper's documented way to
 *            read up to date, and costs a round trip through the leader;
 *   txn-cas  zoo_aget (the version v), then zoo_aset(version v); ZBADVERSION (or ZNONODE)
 *            is a conflict: counted, and the CAS starts again from the get, up to
 *            TB_CAS_TRIES_MAX times (setData's failure carries no version to reuse). A
 *            missing znode is created (ZNODEEXISTS is then the conflict).
 * A get that finds no znode is a miss, counted apart, not an error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* libzookeeper-mt: THREADED exposes the synchronous calls (zoo_create for the parent). */
#define THREADED 1
#include <zookeeper/zookeeper.h>

#include "bench/tessera-bench/driver.h"
#include "core/util/assert.h"

#define TB_ZK_CONNECT_MS 10000u
#define TB_ZK_SESSION_MS 10000
#define TB_ZK_SLEEP_NS_MAX 50000000ull
/* A put's set-or-create may race with another client's create; it tries this often. */
#define TB_ZK_PUT_TRIES_MAX 16u

enum zk_step { ZS_FIRST = 0, ZS_SYNCED = 1, ZS_FALLBACK = 2, ZS_CAS_SET = 3 };

struct zk_worker {
    zhandle_t *zh;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int state;           /* the last session state the watcher saw */
    atomic_bool closing; /* completions during zookeeper_close release their slots */
};

struct zk_state {
    struct zk_worker *zw;
    uint32_t n;
};

static const char *zk_err_name(int code)
{
    const char *own = tb_own_err_name(code);
    return own != NULL ? own : zerror(code);
}

static uint32_t zk_workers(const struct tb_opts *o)
{
    return o->conns < o->clients ? o->conns : o->clients;
}

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    struct zk_worker *zw = ctx;
    if (type != ZOO_SESSION_EVENT) {
        return;
    }
    pthread_mutex_lock(&zw->lock);
    zw->state = state;
    pthread_cond_broadcast(&zw->changed);
    pthread_mutex_unlock(&zw->lock);
}

static void deadline_in(struct timespec *ts, uint64_t ns)
{
    TS_ASSERT(clock_gettime(CLOCK_MONOTONIC, ts) == 0);
    uint64_t t = (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec + ns;
    ts->tv_sec = (time_t)(t / 1000000000ull);
    ts->tv_nsec = (long)(t % 1000000000ull);
}

static void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t a;
    TS_ASSERT(pthread_condattr_init(&a) == 0);
    TS_ASSERT(pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0);
    TS_ASSERT(pthread_cond_init(c, &a) == 0);
    pthread_condattr_destroy(&a);
}

/* Opens a session and waits, bounded, for ZOO_CONNECTED_STATE. */
static int zk_connect(const struct tb_opts *o, struct zk_worker *zw, char *err, size_t cap)
{
    zw->state = 0;
    atomic_store(&zw->closing, false);
    zw->zh = zookeeper_init(o->hosts, watcher, TB_ZK_SESSION_MS, NULL, zw, 0);
    if (zw->zh == NULL) {
        snprintf(err, cap, "zookeeper_init(%s): %s", o->hosts, strerror(errno));
        return -1;
    }
    struct timespec until;
    deadline_in(&until, (uint64_t)TB_ZK_CONNECT_MS * 1000000ull);
    pthread_mutex_lock(&zw->lock);
    int rc = 0;
    while (zw->state != ZOO_CONNECTED_STATE && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&zw->changed, &zw->lock, &until);
    }
    bool up = zw->state == ZOO_CONNECTED_STATE;
    pthread_mutex_unlock(&zw->lock);
    if (!up) {
        snprintf(err, cap, "zookeeper %s: not connected after %u ms", o->hosts, TB_ZK_CONNECT_MS);
        return -1;
    }
    return 0;
}

static void zk_close(void *state, struct tb_run *run)
{
    struct zk_state *s = state;
    for (uint32_t i = 0; s != NULL && i < s->n; i++) {
        struct zk_worker *zw = &s->zw[i];
        atomic_store(&zw->closing, true);
        if (zw->zh != NULL) {
            zookeeper_close(zw->zh);
        }
        pthread_mutex_destroy(&zw->lock);
        pthread_cond_destroy(&zw->changed);
    }
    if (s != NULL) {
        free(s->zw);
    }
    free(s);
}

static int make_parent(zhandle_t *zh, char *err, size_t cap)
{
    int rc = zoo_create(zh, TB_ZK_PARENT, "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, NULL, 0);
    if (rc != ZOK && rc != ZNODEEXISTS) {
        snprintf(err, cap, "zoo_create(%s): %s", TB_ZK_PARENT, zerror(rc));
        return rc;
    }
    return 0;
}

static int zk_open(struct tb_run *run, void **state, char *err, size_t cap)
{
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    struct zk_state *s = calloc(1, sizeof *s);
    if (s == NULL || (s->zw = calloc(run->nworkers, sizeof *s->zw)) == NULL) {
        free(s);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct zk_worker *zw = &s->zw[i];
        TS_ASSERT(pthread_mutex_init(&zw->lock, NULL) == 0);
        cond_init_monotonic(&zw->changed);
        s->n = i + 1;
        run->workers[i].drv = zw;
        int rc = zk_connect(run->o, zw, err, cap);
        if (rc == 0 && i == 0) {
            rc = make_parent(zw->zh, err, cap);
        }
        if (rc != 0) {
            zk_close(s, run);
            return rc;
        }
    }
    *state = s;
    return 0;
}

static uint32_t zk_conns(void *state)
{
    return ((struct zk_state *)state)->n;
}

static struct tb_op *op_of(const void *data)
{
    return (struct tb_op *)(uintptr_t)data;
}

static zhandle_t *zh_of(struct tb_op *op)
{
    return ((struct zk_worker *)op->w->drv)->zh;
}

/* Completes op with rc, or releases it when its session is being closed. */
static void finish(struct tb_op *op, int rc)
{
    struct zk_worker *zw = op->w->drv;
    if (rc != ZOK && atomic_load(&zw->closing)) {
        tb_release(op);
    } else {
        tb_complete(op, rc);
    }
}

static void on_stat(int rc, const struct Stat *stat, const void *data);
static void on_data(int rc, const char *value, int value_len, const struct Stat *stat,
                    const void *data);
static void on_string(int rc, const char *value, const void *data);

static int zset(struct tb_op *op, int version)
{
    const struct tb_worker *w = op->w;
    return zoo_aset(zh_of(op), op->path, (const char *)w->value, (int)w->run->o->val_size, version,
                    on_stat, op);
}

static int zcreate(struct tb_op *op)
{
    const struct tb_worker *w = op->w;
    return zoo_acreate(zh_of(op), op->path, (const char *)w->value, (int)w->run->o->val_size,
                       &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, on_string, op);
}

static int zget(struct tb_op *op)
{
    return zoo_aget(zh_of(op), op->path, 0, on_data, op);
}

/* Starts (or restarts, step ZS_FIRST) an operation; returns ZOK or the submit error. */
static int submit(struct tb_op *op)
{
    op->step = ZS_FIRST;
    switch (op->kind) {
    case TB_OP_PUT:
        return zset(op, -1);
    case TB_OP_CREATE:
        return zcreate(op);
    case TB_OP_GET:
        if (op->w->run->o->consistency == TB_CONS_LINEARIZABLE) {
            return zoo_async(zh_of(op), TB_ZK_PARENT, on_string, op);
        }
        return zget(op);
    case TB_OP_CAS:
        return zget(op);
    }
    TS_ASSERT(!"unknown operation kind");
    return ZBADARGUMENTS;
}

/* A CAS lost the race: count it and start again from the read. */
static void cas_retry(struct tb_op *op)
{
    tb_count_conflict(op);
    int rc = ++op->tries >= TB_CAS_TRIES_MAX ? TB_ECASRETRIES : submit(op);
    if (rc != ZOK) {
        finish(op, rc);
    }
}

/* A step that failed to submit ends the operation with that error. */
static void next(struct tb_op *op, int rc)
{
    if (rc != ZOK) {
        finish(op, rc);
    }
}

/* zoo_aset answered: a put, a prefill's fallback, or a CAS's conditional set. */
static void on_stat(int rc, const struct Stat *stat, const void *data)
{
    struct tb_op *op = op_of(data);
    if (op->kind == TB_OP_CAS && (rc == ZBADVERSION || rc == ZNONODE)) {
        cas_retry(op);
    } else if (op->kind == TB_OP_PUT && rc == ZNONODE && op->step == ZS_FIRST &&
               !atomic_load(&((struct zk_worker *)op->w->drv)->closing)) {
        op->step = ZS_FALLBACK;
        next(op, zcreate(op));
    } else {
        finish(op, rc);
    }
}

/* zoo_acreate answered (a prefill, a put's fallback, a CAS of a missing key), or zoo_async
 * (the sync before a linearizable get). */
static void on_string(int rc, const char *value, const void *data)
{
    struct tb_op *op = op_of(data);
    bool closing = atomic_load(&((struct zk_worker *)op->w->drv)->closing);
    if (op->kind == TB_OP_GET) {
        op->step = ZS_SYNCED;
        next(op, rc == ZOK ? zget(op) : rc);
    } else if (op->kind == TB_OP_CAS && rc == ZNODEEXISTS) {
        cas_retry(op);
    } else if (op->kind == TB_OP_CREATE && rc == ZNODEEXISTS && !closing) {
        op->step = ZS_FALLBACK;
        next(op, zset(op, -1));
    } else if (op->kind == TB_OP_PUT && rc == ZNODEEXISTS && !closing &&
               ++op->tries < TB_ZK_PUT_TRIES_MAX) {
        op->step = ZS_FIRST; /* another client created it since our set: set again */
        next(op, zset(op, -1));
    } else {
        finish(op, rc);
    }
}

/* zoo_aget answered: a get, or a CAS's read. */
static void on_data(int rc, const char *value, int value_len, const struct Stat *stat,
                    const void *data)
{
    struct tb_op *op = op_of(data);
    bool closing = atomic_load(&((struct zk_worker *)op->w->drv)->closing);
    if (rc == ZNONODE && !closing) {
        tb_count_miss(op);
        if (op->kind == TB_OP_GET) {
            finish(op, ZOK);
        } else {
            op->step = ZS_CAS_SET;
            next(op, zcreate(op));
        }
        return;
    }
    if (rc != ZOK || op->kind == TB_OP_GET) {
        finish(op, rc);
        return;
    }
    TS_ASSERT(op->kind == TB_OP_CAS && stat != NULL);
    op->seen = stat->version;
    op->step = ZS_CAS_SET;
    next(op, zset(op, stat->version));
}

/* Waits until a slot is freed, at most wait_ns (0: TB_ZK_SLEEP_NS_MAX). Unless always,
 * returns at once when a slot is already free and wait_ns is 0. */
static void wait_slot(struct tb_worker *w, uint64_t wait_ns, bool always)
{
    struct timespec until;
    deadline_in(&until, wait_ns > 0 && wait_ns < TB_ZK_SLEEP_NS_MAX ? wait_ns : TB_ZK_SLEEP_NS_MAX);
    pthread_mutex_lock(&w->lock);
    if (always || wait_ns > 0 || w->nfree == 0) {
        pthread_cond_timedwait(&w->freed, &w->lock, &until);
    }
    pthread_mutex_unlock(&w->lock);
}

static void *zk_worker_main(void *arg)
{
    struct tb_worker *w = arg;
    for (;;) {
        struct tb_op *op = NULL;
        uint64_t wait = 0;
        enum tb_admit a = tb_admit(w, tb_now_ns(), &op, &wait);
        if (a == TB_ADMIT_DONE) {
            break;
        }
        if (a == TB_ADMIT_WAIT) {
            wait_slot(w, wait, false);
            continue;
        }
        next(op, submit(op));
    }
    /* Drain: every request ends within the session timeout (answered, or failed by the
     * library when the connection is lost). */
    uint64_t until =
        tb_now_ns() + ((uint64_t)w->run->o->timeout_ms + 2u * TB_ZK_SESSION_MS) * 1000000ull;
    while (tb_inflight(w) > 0 && tb_now_ns() < until) {
        wait_slot(w, 0, true);
    }
    tb_worker_finished(w);
    return NULL;
}

static int zk_start(void *state, struct tb_run *run)
{
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct tb_worker *w = &run->workers[i];
        TS_ASSERT(pthread_create(&w->thread, NULL, zk_worker_main, w) == 0);
    }
    return 0;
}

/* A worker whose requests outlived the drain gets a fresh session; closing the old one
 * completes what is left with ZCLOSING, which releases the slots (see finish()). */
static void zk_join(void *state, struct tb_run *run)
{
    struct zk_state *s = state;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct tb_worker *w = &run->workers[i];
        TS_ASSERT(pthread_join(w->thread, NULL) == 0);
        if (tb_inflight(w) == 0) {
            continue;
        }
        struct zk_worker *zw = &s->zw[i];
        atomic_store(&zw->closing, true);
        zookeeper_close(zw->zh);
        zw->zh = NULL;
        char err[256];
        if (zk_connect(run->o, zw, err, sizeof err) != 0) {
            fprintf(stderr, "tessera-bench: %s\n", err);
        }
    }
}

static const char *zk_note(const struct tb_opts *o)
{
    if (o->workload == TB_WL_PUT || o->workload == TB_WL_TXN_CAS) {
        return NULL; /* a CAS's read only fetches the version; the conditional set decides */
    }
    if (o->consistency == TB_CONS_LINEARIZABLE) {
        return "ZooKeeper gets are preceded by a sync (zoo_async) so that they read up to "
               "date: one more round trip through the leader per get";
    }
    return "ZooKeeper gets are answered from the connected server's local state and are "
           "not linearizable (they may miss acknowledged writes); use --consistency "
           "linearizable to sync before each get";
}

const struct tb_driver tb_driver_zk = {
    .name = "zookeeper",
    .workers = zk_workers,
    .open = zk_open,
    .start = zk_start,
    .join = zk_join,
    .close = zk_close,
    .conns = zk_conns,
    .err_name = zk_err_name,
    .note = zk_note,
};
