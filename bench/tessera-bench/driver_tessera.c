/*
 * driver_tessera: load on a Tessera cluster through the public client library only
 * (net/client/tessera.h).
 *
 * Shape: one thread per worker, each with its own struct tessera_client and its own loop
 * (tessera_client_fds, ppoll, tessera_client_process), which is the shape the library is
 * built for (a client belongs to one thread). Workers = --threads (default: the online
 * CPUs), at most --conns and --clients. A worker's share of --conns is opened as
 * connections_per_endpoint = ceil(share / endpoints) to every endpoint, so the
 * connections opened may exceed --conns when it is not a multiple of the endpoints (the
 * summary prints the number opened). A worker's logical clients share its connections;
 * the library spreads their requests over them.
 *
 * Operations: put = tessera_put_async; get = tessera_get_async with --consistency;
 * txn-cas = get (mod_revision m, 0 when the key is missing) then
 * txn {mod_revision(key) == m} then {put key} else {get key}; a conflict is counted and
 * retried with the else branch's mod_revision, up to TB_CAS_TRIES_MAX times. The
 * operation's latency covers the get and every attempt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/tessera-bench/driver.h"
#include "core/util/assert.h"
#include "net/client/tessera.h"

/* The longest a worker sleeps in poll, so that it sees SIGINT and the deadline. */
#define TB_POLL_NS_MAX 50000000ull

struct tt_worker {
    struct tessera_client *c;
    uint32_t conns;
    int fds_cap;
    struct pollfd *fds;
};

struct tt_state {
    struct tt_worker *tw;
    uint32_t n;
};

static const char *tt_err_name(int code)
{
    const char *own = tb_own_err_name(code);
    return own != NULL ? own : tessera_strerror(code);
}

static uint32_t tt_workers(const struct tb_opts *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t n = o->threads != 0 ? o->threads : (uint32_t)(cpus > 0 ? cpus : 1);
    n = n < o->conns ? n : o->conns;
    n = n < o->clients ? n : o->clients;
    TS_ASSERT(n >= 1);
    return n;
}

static uint32_t count_endpoints(const char *hosts)
{
    uint32_t n = 1;
    for (const char *p = hosts; *p; p++) {
        n += *p == ',';
    }
    return n;
}

static int tt_open_one(struct tb_run *run, struct tb_worker *w, struct tt_worker *tw, char *err,
                       size_t cap)
{
    const struct tb_opts *o = run->o;
    uint32_t share = o->conns / run->nworkers + (w->id < o->conns % run->nworkers ? 1u : 0u);
    uint32_t eps = count_endpoints(o->hosts);
    uint32_t per = (share + eps - 1) / eps;
    per = per < TESSERA_CONNECTIONS_MAX ? per : TESSERA_CONNECTIONS_MAX;
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = o->hosts;
    cfg.connections_per_endpoint = per;
    cfg.request_timeout_ms = o->timeout_ms;
    cfg.inflight_max = w->nops;
    cfg.seed = o->seed + w->id;
    if (w->nops > TESSERA_INFLIGHT_MAX) {
        snprintf(err, cap, "a thread's clients x inflight (%u) is over the client's %u", w->nops,
                 TESSERA_INFLIGHT_MAX);
        return TESSERA_EINVAL;
    }
    int rc = tessera_client_new(&cfg, &tw->c);
    if (rc != 0) {
        snprintf(err, cap, "tessera_client_new(%s): %s", o->hosts, tessera_strerror(rc));
        return rc;
    }
    tw->conns = per * eps;
    tw->fds_cap = tessera_client_fds_max(tw->c);
    tw->fds = calloc((size_t)tw->fds_cap, sizeof *tw->fds);
    w->drv = tw;
    return tw->fds == NULL ? TESSERA_ENOMEM : 0;
}

static void tt_close(void *state, struct tb_run *run)
{
    struct tt_state *s = state;
    for (uint32_t i = 0; s != NULL && i < s->n; i++) {
        tessera_client_free(s->tw[i].c);
        free(s->tw[i].fds);
    }
    if (s != NULL) {
        free(s->tw);
    }
    free(s);
}

static int tt_open(struct tb_run *run, void **state, char *err, size_t cap)
{
    struct tt_state *s = calloc(1, sizeof *s);
    if (s == NULL || (s->tw = calloc(run->nworkers, sizeof *s->tw)) == NULL) {
        free(s);
        return TESSERA_ENOMEM;
    }
    for (uint32_t i = 0; i < run->nworkers; i++) {
        s->n = i + 1;
        int rc = tt_open_one(run, &run->workers[i], &s->tw[i], err, cap);
        if (rc != 0) {
            tt_close(s, run);
            return rc;
        }
    }
    *state = s;
    return 0;
}

static uint32_t tt_conns(void *state)
{
    struct tt_state *s = state;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        n += s->tw[i].conns;
    }
    return n;
}

static void on_answer(void *data, int status, const struct tessera_response *resp);

/* An answer that arrives as the client is freed at the end of a cut-short phase. */
static bool abandoned(struct tb_op *op, int status)
{
    if (status == TESSERA_ESHUTDOWN && op->w->done) {
        tb_release(op);
        return true;
    }
    return false;
}

static int submit_txn(struct tessera_client *c, struct tb_op *op)
{
    struct tb_worker *w = op->w;
    struct tessera_compare cmp = {
        .key = op->key,
        .key_len = op->key_len,
        .target = TESSERA_CMP_MOD,
        .result = TESSERA_CMP_EQUAL,
        .number = op->seen,
    };
    struct tessera_txn_op then_op = {
        .op = TESSERA_OP_PUT,
        .key = op->key,
        .key_len = op->key_len,
        .value = w->value,
        .value_len = w->run->o->val_size,
    };
    struct tessera_txn_op else_op = {.op = TESSERA_OP_GET, .key = op->key, .key_len = op->key_len};
    op->step = 1;
    return tessera_txn_async(c, &cmp, 1, &then_op, 1, &else_op, 1, on_answer, op);
}

static enum tessera_consistency consistency(const struct tb_opts *o)
{
    return o->consistency == TB_CONS_SERIALIZABLE ? TESSERA_SERIALIZABLE : TESSERA_LINEARIZABLE;
}

static int submit(struct tessera_client *c, struct tb_op *op)
{
    struct tb_worker *w = op->w;
    const struct tb_opts *o = w->run->o;
    switch (op->kind) {
    case TB_OP_PUT:
    case TB_OP_CREATE:
        return tessera_put_async(c, op->key, op->key_len, w->value, o->val_size, 0, 0, on_answer,
                                 op);
    case TB_OP_GET:
    case TB_OP_CAS:
        op->step = 0;
        return tessera_get_async(c, op->key, op->key_len, consistency(o), on_answer, op);
    }
    TS_ASSERT(!"unknown operation kind");
    return TESSERA_EINVAL;
}

/* The txn of a CAS lost: count it, take the revision from the else branch's get and try
 * again (or read afresh when the answer has no usable get). */
static void cas_conflict(struct tessera_client *c, struct tb_op *op,
                         const struct tessera_response *resp)
{
    tb_count_conflict(op);
    if (++op->tries >= TB_CAS_TRIES_MAX) {
        tb_complete(op, TB_ECASRETRIES);
        return;
    }
    struct tessera_response sub;
    int rc = 0;
    if (resp->u.txn.results >= 1 && tessera_response_txn_result(resp, 0, &sub) == 0 &&
        sub.op == TESSERA_OP_GET) {
        op->seen = sub.u.get.found ? (int64_t)sub.u.get.kv.mod_revision : 0;
        rc = submit_txn(c, op);
    } else {
        op->step = 0;
        rc = tessera_get_async(c, op->key, op->key_len, consistency(op->w->run->o), on_answer, op);
    }
    if (rc != 0) {
        tb_complete(op, rc);
    }
}

static void on_answer(void *data, int status, const struct tessera_response *resp)
{
    struct tb_op *op = data;
    struct tt_worker *tw = op->w->drv;
    if (abandoned(op, status)) {
        return;
    }
    if (status != 0 || op->kind == TB_OP_PUT || op->kind == TB_OP_CREATE) {
        tb_complete(op, status);
        return;
    }
    TS_ASSERT(resp != NULL);
    if (op->step == 0) { /* a get: the operation itself, or a CAS's read */
        if (!resp->u.get.found) {
            tb_count_miss(op);
        }
        if (op->kind == TB_OP_GET) {
            tb_complete(op, 0);
            return;
        }
        op->seen = resp->u.get.found ? (int64_t)resp->u.get.kv.mod_revision : 0;
        int rc = submit_txn(tw->c, op);
        if (rc != 0) {
            tb_complete(op, rc);
        }
        return;
    }
    TS_ASSERT(op->kind == TB_OP_CAS && op->step == 1);
    if (resp->u.txn.succeeded) {
        tb_complete(op, 0);
    } else {
        cas_conflict(tw->c, op, resp);
    }
}

/* Starts every operation admission allows; returns how long the loop may sleep. */
static uint64_t issue(struct tb_worker *w, struct tt_worker *tw)
{
    for (;;) {
        struct tb_op *op = NULL;
        uint64_t wait = 0;
        enum tb_admit a = tb_admit(w, tb_now_ns(), &op, &wait);
        if (a == TB_ADMIT_DONE) {
            return TB_POLL_NS_MAX;
        }
        if (a == TB_ADMIT_WAIT) {
            return wait > 0 && wait < TB_POLL_NS_MAX ? wait : TB_POLL_NS_MAX;
        }
        int rc = submit(tw->c, op);
        if (rc != 0) {
            tb_complete(op, rc);
        }
    }
}

static void *tt_worker_main(void *arg)
{
    struct tb_worker *w = arg;
    struct tt_worker *tw = w->drv;
    uint64_t drain_until = 0;
    for (;;) {
        uint64_t sleep_ns = issue(w, tw);
        if (w->done) {
            uint64_t now = tb_now_ns();
            if (drain_until == 0) {
                drain_until = now + (uint64_t)w->run->o->timeout_ms * 1000000ull + 1000000000ull;
            }
            if (tb_inflight(w) == 0 || now >= drain_until) {
                break;
            }
        }
        int n = tessera_client_fds(tw->c, tw->fds, tw->fds_cap);
        TS_ASSERT(n >= 0);
        int next_ms = tessera_client_next_timeout_ms(tw->c);
        if (next_ms >= 0 && (uint64_t)next_ms * 1000000ull < sleep_ns) {
            sleep_ns = (uint64_t)next_ms * 1000000ull;
        }
        struct timespec ts = {.tv_sec = (time_t)(sleep_ns / 1000000000ull),
                              .tv_nsec = (long)(sleep_ns % 1000000000ull)};
        int rc = ppoll(tw->fds, (nfds_t)n, &ts, NULL);
        TS_ASSERT(rc >= 0 || errno == EINTR);
        for (int i = 0; rc < 0 && i < n; i++) {
            tw->fds[i].revents = 0;
        }
        TS_ASSERT(tessera_client_process(tw->c, tw->fds, n) >= 0);
    }
    tb_worker_finished(w);
    return NULL;
}

static int tt_start(void *state, struct tb_run *run)
{
    for (uint32_t i = 0; i < run->nworkers; i++) {
        int rc = pthread_create(&run->workers[i].thread, NULL, tt_worker_main, &run->workers[i]);
        TS_ASSERT(rc == 0);
    }
    return 0;
}

/* Ends the phase: the workers have left their loops; requests still outstanding (after
 * the drain) are completed with TESSERA_ESHUTDOWN by a fresh client, so each worker's
 * client is replaced. */
static void tt_join(void *state, struct tb_run *run)
{
    struct tt_state *s = state;
    for (uint32_t i = 0; i < run->nworkers; i++) {
        TS_ASSERT(pthread_join(run->workers[i].thread, NULL) == 0);
        if (tb_inflight(&run->workers[i]) == 0) {
            continue;
        }
        char err[256];
        struct tessera_client *old = s->tw[i].c;
        free(s->tw[i].fds);
        TS_ASSERT(tt_open_one(run, &run->workers[i], &s->tw[i], err, sizeof err) == 0);
        tessera_client_free(old); /* abandons what is left: see abandoned() */
    }
}

static const char *tt_note(const struct tb_opts *o)
{
    if (o->consistency == TB_CONS_SERIALIZABLE &&
        (o->workload == TB_WL_GET || o->workload == TB_WL_MIXED)) {
        return "serializable reads are answered by any replica and may be stale";
    }
    return NULL;
}

const struct tb_driver tb_driver_tessera = {
    .name = "tessera",
    .workers = tt_workers,
    .open = tt_open,
    .start = tt_start,
    .join = tt_join,
    .close = tt_close,
    .conns = tt_conns,
    .err_name = tt_err_name,
    .note = tt_note,
};
