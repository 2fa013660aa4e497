/*
 * driver_zk: the same workloads on ZooKeeper, through libzookeeper-mt's asynchronous C
 * API, so that the two systems are measured by one tool in one way.
 *
 * Shape: --conns sessions, opened all at once (zookeeper_init each) and all waited on,
 * together, until ZOO_CONNECTED_STATE (at most TB_ZK_CONNECT_MS in all) before any phase
 * starts. A session is a worker: its logical clients' slots plus libzookeeper-mt's own
 * I/O and completion threads. The session timeout is TB_ZK_SESSION_MS: the library pings
 * at a third of it and drops the connection when nothing is heard for two thirds, so a
 * short one turns a loaded machine's scheduling delays into connection losses and expired
 * sessions.
 *
 * Issuing. An operation's next one is issued from its completion: the callback that ends
 * an operation (on the session's completion thread) frees the slot and runs admission
 * for its worker at once, so at the open throttle a session's request stream never waits
 * for a thread of ours to be scheduled. Besides, a few issuing threads of ours
 * (TB_ZK_ISSUERS_MAX, each with a share of the workers) fill the slots at the start of a
 * phase, follow --rate's schedule (admission then says when the next operation is due),
 * end admission at --duration's deadline or on SIGINT, and watch each worker drain.
 * Admission for a worker runs on one thread at a time: whoever asks while another thread
 * is admitting only leaves a request, and that thread admits again before it lets go
 * (pump(): a counter of pending requests, so no thread blocks and a callback never
 * waits for a lock held across a ZooKeeper call). A callback takes its request before it
 * frees its slot, so a worker seen with no pending request and no slot in flight is
 * quiescent: the issuer may then end its phase.
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
#include <sys/resource.h>
#include <time.h>

/* libzookeeper-mt: THREADED exposes the synchronous calls (zoo_create for the parent). */
#define THREADED 1
#include <zookeeper/zookeeper.h>

#include "bench/tessera-bench/driver.h"
#include "core/util/assert.h"

/* All sessions together must be connected within this (1,000 session creations are 1,000
 * transactions through the leader; on a loaded 2-vCPU machine that takes seconds). */
#define TB_ZK_CONNECT_MS 60000u
/* The session timeout asked for; the servers' default bounds are 2 and 20 ticks (4-40 s at
 * tickTime 2000). */
#define TB_ZK_SESSION_MS 30000
/* Our issuing threads: they only fill, pace and watch; completions issue the rest. */
#define TB_ZK_ISSUERS_MAX 2u
/* How long an issuer sleeps at most: the --duration deadline and SIGINT are seen within
 * this. A due time under --rate, and the end of a worker's drain, wake it sooner (kick). */
#define TB_ZK_IDLE_NS 5000000ull
/* A put's set-or-create may race with another client's create; it tries this often. */
#define TB_ZK_PUT_TRIES_MAX 16u

enum zk_step { ZS_FIRST = 0, ZS_SYNCED = 1, ZS_FALLBACK = 2, ZS_CAS_SET = 3 };

struct zk_worker {
    zhandle_t *zh;
    struct tb_worker *w;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int state;           /* the last session state the watcher saw */
    atomic_bool closing; /* completions during zookeeper_close release their slots */
    /* Admission (pump()): requests pending; the thread that raised it from 0 admits. */
    atomic_uint pumps;
    atomic_bool admit_done;      /* admission said DONE for this phase */
    atomic_uint_fast64_t due_ns; /* --rate: when admission allows the next one (0: a slot) */
    uint64_t drain_until_ns;     /* the issuer's: when the drain is given up (0: not yet) */
    bool finished;               /* the issuer's: tb_worker_finished was called */
    struct zk_issuer *issuer;
};

struct zk_issuer {
    struct tb_run *run;
    struct zk_worker *zw; /* its workers: zw[0..n) */
    uint32_t n;
    pthread_t thread;
    pthread_mutex_t lock; /* guards kicked */
    pthread_cond_t wake;
    bool kicked;
};

struct zk_state {
    struct zk_worker *zw;
    uint32_t n; /* sessions initialised (zk_close closes these) */
    uint32_t nissuers;
    struct zk_issuer issuers[TB_ZK_ISSUERS_MAX];
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

/* Starts opening a session (zookeeper_init returns at once); see wait_connected. */
static int zk_init(const struct tb_opts *o, struct zk_worker *zw, char *err, size_t cap)
{
    TS_ASSERT(zw->zh == NULL);
    pthread_mutex_lock(&zw->lock);
    zw->state = 0;
    pthread_mutex_unlock(&zw->lock);
    atomic_store(&zw->closing, false);
    zw->zh = zookeeper_init(o->hosts, watcher, TB_ZK_SESSION_MS, NULL, zw, 0);
    if (zw->zh == NULL) {
        snprintf(err, cap, "zookeeper_init(%s): %s", o->hosts, strerror(errno));
        return -1;
    }
    /* By default the library resolves the host list again (getaddrinfo, a netlink
     * round trip) every time its I/O thread checks for socket readiness, that is about
     * once per request: no "routine" resolution at all (a lost connection still
     * resolves). */
    TS_ASSERT(zoo_set_servers_resolution_delay(zw->zh, -1) == ZOK);
    return 0;
}

/* Waits until the session is in ZOO_CONNECTED_STATE or until (CLOCK_MONOTONIC). */
static bool wait_connected(struct zk_worker *zw, const struct timespec *until)
{
    pthread_mutex_lock(&zw->lock);
    int rc = 0;
    while (zw->state != ZOO_CONNECTED_STATE && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&zw->changed, &zw->lock, until);
    }
    bool up = zw->state == ZOO_CONNECTED_STATE;
    pthread_mutex_unlock(&zw->lock);
    return up;
}

/* Opens one session and waits, bounded, until it is connected (zk_join's reconnect). */
static int zk_connect(const struct tb_opts *o, struct zk_worker *zw, char *err, size_t cap)
{
    int rc = zk_init(o, zw, err, cap);
    if (rc != 0) {
        return rc;
    }
    struct timespec until;
    deadline_in(&until, (uint64_t)TB_ZK_CONNECT_MS * 1000000ull);
    if (!wait_connected(zw, &until)) {
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
    for (uint32_t k = 0; s != NULL && k < s->nissuers; k++) {
        pthread_mutex_destroy(&s->issuers[k].lock);
        pthread_cond_destroy(&s->issuers[k].wake);
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

/* A session costs a socket and libzookeeper-mt's wake-up pipe: 1,000 sessions need more
 * descriptors than the usual soft limit of 1024, so the soft limit is raised to the hard. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Opens every session at once, then waits for all of them, bounded in all. */
static int open_sessions(struct tb_run *run, struct zk_state *s, char *err, size_t cap)
{
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct zk_worker *zw = &s->zw[i];
        TS_ASSERT(pthread_mutex_init(&zw->lock, NULL) == 0);
        cond_init_monotonic(&zw->changed);
        zw->w = &run->workers[i];
        s->n = i + 1;
        run->workers[i].drv = zw;
        int rc = zk_init(run->o, zw, err, cap);
        if (rc != 0) {
            return rc;
        }
    }
    struct timespec until;
    deadline_in(&until, (uint64_t)TB_ZK_CONNECT_MS * 1000000ull);
    uint32_t up = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        up += wait_connected(&s->zw[i], &until) ? 1u : 0u;
    }
    if (up < s->n) {
        snprintf(err, cap, "zookeeper %s: %u of %u sessions not connected after %u ms",
                 run->o->hosts, s->n - up, s->n, TB_ZK_CONNECT_MS);
        return -1;
    }
    return make_parent(s->zw[0].zh, err, cap);
}

static int zk_open(struct tb_run *run, void **state, char *err, size_t cap)
{
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    raise_nofile();
    struct zk_state *s = calloc(1, sizeof *s);
    if (s == NULL || (s->zw = calloc(run->nworkers, sizeof *s->zw)) == NULL) {
        free(s);
        return -ENOMEM;
    }
    s->nissuers = run->nworkers < TB_ZK_ISSUERS_MAX ? run->nworkers : TB_ZK_ISSUERS_MAX;
    for (uint32_t k = 0; k < s->nissuers; k++) {
        TS_ASSERT(pthread_mutex_init(&s->issuers[k].lock, NULL) == 0);
        cond_init_monotonic(&s->issuers[k].wake);
    }
    int rc = open_sessions(run, s, err, cap);
    if (rc != 0) {
        zk_close(s, run);
        return rc;
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

/* Wakes the issuer of zw's worker (a --rate due time moved, or its drain may be over). */
static void kick(struct zk_worker *zw)
{
    struct zk_issuer *is = zw->issuer;
    TS_ASSERT(is != NULL);
    pthread_mutex_lock(&is->lock);
    is->kicked = true;
    pthread_cond_signal(&is->wake);
    pthread_mutex_unlock(&is->lock);
}

static void admit(struct zk_worker *zw);

/* Leaves a request for admission; true when the caller is the one to admit (pump_run). */
static bool pump_take(struct zk_worker *zw)
{
    return atomic_fetch_add(&zw->pumps, 1) == 0;
}

/* Admits until no request is left, those left meanwhile by other threads included. */
static void pump_run(struct zk_worker *zw)
{
    unsigned seen = 1;
    for (;;) {
        admit(zw);
        unsigned before = atomic_fetch_sub(&zw->pumps, seen);
        TS_ASSERT(before >= seen);
        if (before == seen) {
            return;
        }
        seen = before - seen;
    }
}

static void pump(struct zk_worker *zw)
{
    if (pump_take(zw)) {
        pump_run(zw);
    }
}

/* Completes op with rc and admits the worker's next operations at once; or, when its
 * session is being closed, releases it (the phase is over: nothing is admitted). The
 * request for admission is left before the slot is freed (see the header). */
static void finish(struct tb_op *op, int rc)
{
    struct zk_worker *zw = op->w->drv;
    if (atomic_load(&zw->closing)) {
        if (rc != ZOK) {
            tb_release(op);
        } else {
            tb_complete(op, rc);
        }
        return;
    }
    bool admitter = pump_take(zw);
    tb_complete(op, rc);
    if (admitter) {
        pump_run(zw);
    }
    if (atomic_load(&zw->admit_done)) {
        kick(zw);
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

/* Admission for zw's worker, on one thread at a time (pump()): issues operations while
 * admission says GO; records DONE, or when the schedule allows the next one. At most one
 * round per slot: a submit that fails (a session lost for good) frees its slot at once and
 * leaves a request, so pump_run comes back; admission's own bounds (--total, --duration,
 * SIGINT) end that. */
static void admit(struct zk_worker *zw)
{
    struct tb_worker *w = zw->w;
    TS_ASSERT(atomic_load(&zw->pumps) > 0);
    for (uint32_t i = 0; i <= w->nops; i++) {
        struct tb_op *op = NULL;
        uint64_t wait = 0, now = tb_now_ns();
        enum tb_admit a = tb_admit(w, now, &op, &wait);
        if (a == TB_ADMIT_DONE) {
            atomic_store(&zw->admit_done, true);
            return;
        }
        if (a == TB_ADMIT_WAIT) {
            atomic_store(&zw->due_ns, wait > 0 ? now + wait : 0);
            if (wait > 0 && w->run->rate > 0.0) {
                kick(zw); /* the issuer may be asleep past this due time */
            }
            return;
        }
        TS_ASSERT(op != NULL && op->w == w);
        next(op, submit(op));
    }
    atomic_store(&zw->due_ns, tb_now_ns());
}

/* The issuer sleeps until kicked or ns have passed. */
static void issuer_sleep(struct zk_issuer *is, uint64_t ns)
{
    struct timespec until;
    deadline_in(&until, ns);
    pthread_mutex_lock(&is->lock);
    if (!is->kicked) {
        pthread_cond_timedwait(&is->wake, &is->lock, &until);
    }
    is->kicked = false;
    pthread_mutex_unlock(&is->lock);
}

/* One issuer round for one worker: admits when the schedule is due or the phase is
 * ending; once admission is done, ends the worker's phase when it is quiescent (nothing
 * in flight, no admission running) or its drain is given up. Lowers *sleep_ns to the
 * worker's next due time. Returns true when the worker's phase just ended. */
static bool tend(struct zk_worker *zw, uint64_t now, bool ending, uint64_t drain_ns,
                 uint64_t *sleep_ns)
{
    TS_ASSERT(!zw->finished);
    if (!atomic_load(&zw->admit_done)) {
        uint64_t due = atomic_load(&zw->due_ns);
        if (ending || (due != 0 && due <= now)) {
            pump(zw);
            due = atomic_load(&zw->due_ns);
        }
        if (!atomic_load(&zw->admit_done)) {
            if (due > now && due - now < *sleep_ns) {
                *sleep_ns = due - now;
            }
            return false;
        }
    }
    if (zw->drain_until_ns == 0) {
        zw->drain_until_ns = now + drain_ns;
    }
    bool quiescent = tb_inflight(zw->w) == 0 && atomic_load(&zw->pumps) == 0;
    if (!quiescent && now < zw->drain_until_ns) {
        return false; /* the last completion kicks */
    }
    zw->finished = true;
    tb_worker_finished(zw->w);
    return true;
}

static void *zk_issuer_main(void *arg)
{
    struct zk_issuer *is = arg;
    struct tb_run *run = is->run;
    /* Drain: every request ends within the session timeout (answered, or failed by the
     * library when the connection is lost). */
    uint64_t drain_ns = ((uint64_t)run->o->timeout_ms + 2u * TB_ZK_SESSION_MS) * 1000000ull;
    for (uint32_t i = 0; i < is->n; i++) {
        pump(&is->zw[i]);
    }
    uint32_t left = is->n;
    while (left > 0) {
        uint64_t now = tb_now_ns(), sleep_ns = TB_ZK_IDLE_NS;
        bool ending = atomic_load(&run->stop) || (run->deadline_ns != 0 && now >= run->deadline_ns);
        for (uint32_t i = 0; i < is->n; i++) {
            struct zk_worker *zw = &is->zw[i];
            if (!zw->finished && tend(zw, now, ending, drain_ns, &sleep_ns)) {
                left--;
            }
        }
        if (left > 0) {
            issuer_sleep(is, sleep_ns);
        }
    }
    return NULL;
}

/* Shares the workers among the issuers and resets the phase's admission state. */
static int zk_start(void *state, struct tb_run *run)
{
    struct zk_state *s = state;
    TS_ASSERT(s->n == run->nworkers && s->nissuers >= 1);
    for (uint32_t i = 0; i < s->n; i++) {
        struct zk_worker *zw = &s->zw[i];
        TS_ASSERT(atomic_load(&zw->pumps) == 0);
        atomic_store(&zw->admit_done, false);
        atomic_store(&zw->due_ns, 0);
        zw->drain_until_ns = 0;
        zw->finished = false;
    }
    uint32_t first = 0;
    for (uint32_t k = 0; k < s->nissuers; k++) {
        struct zk_issuer *is = &s->issuers[k];
        is->run = run;
        is->n = s->n / s->nissuers + (k < s->n % s->nissuers ? 1u : 0u);
        is->zw = &s->zw[first];
        is->kicked = false;
        for (uint32_t i = 0; i < is->n; i++) {
            is->zw[i].issuer = is;
        }
        first += is->n;
    }
    TS_ASSERT(first == s->n);
    for (uint32_t k = 0; k < s->nissuers; k++) {
        TS_ASSERT(pthread_create(&s->issuers[k].thread, NULL, zk_issuer_main, &s->issuers[k]) == 0);
    }
    return 0;
}

/* A worker whose requests outlived the drain gets a fresh session; closing the old one
 * completes what is left with ZCLOSING, which releases the slots (see finish()). */
static void zk_join(void *state, struct tb_run *run)
{
    struct zk_state *s = state;
    for (uint32_t k = 0; k < s->nissuers; k++) {
        TS_ASSERT(pthread_join(s->issuers[k].thread, NULL) == 0);
    }
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct tb_worker *w = &run->workers[i];
        if (tb_inflight(w) == 0) {
            continue;
        }
        struct zk_worker *zw = &s->zw[i];
        atomic_store(&zw->closing, true);
        zookeeper_close(zw->zh);
        zw->zh = NULL;
        char err[TB_HOSTS_BYTES_MAX + 128u];
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
