/* run: admission, key choice and completion shared by the drivers (see run.h). */
#include "bench/tessera-bench/run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util/assert.h"

uint64_t tb_now_ns(void)
{
    struct timespec ts;
    TS_ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int worker_init(struct tb_run *run, struct tb_worker *w, uint32_t id, uint32_t clients)
{
    const struct tb_opts *o = run->o;
    size_t path_bytes = TB_ZK_PATH_BYTES(o->key_size);
    w->run = run;
    w->id = id;
    w->clients = clients;
    w->nops = clients * o->inflight;
    ts_rand_seed(&w->rand, o->seed * 0x100000001b3ull + id);
    w->ops = calloc(w->nops, sizeof *w->ops);
    w->free = calloc(w->nops, sizeof *w->free);
    w->keys = malloc((size_t)w->nops * o->key_size);
    w->paths = o->target == TB_TARGET_ZK ? malloc((size_t)w->nops * path_bytes) : NULL;
    w->value = malloc(o->val_size + 1u);
    w->total = malloc(sizeof *w->total);
    w->interval = malloc(sizeof *w->interval);
    if (w->ops == NULL || w->free == NULL || w->keys == NULL || w->value == NULL ||
        w->total == NULL || w->interval == NULL || (o->target == TB_TARGET_ZK && !w->paths)) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < w->nops; i++) {
        w->ops[i].w = w;
        w->ops[i].index = i;
        w->ops[i].key = w->keys + (size_t)i * o->key_size;
        w->ops[i].path = w->paths != NULL ? w->paths + (size_t)i * path_bytes : NULL;
    }
    for (uint32_t i = 0; i < o->val_size; i++) {
        w->value[i] = (uint8_t)('a' + ts_rand_below(&w->rand, 26));
    }
    TS_ASSERT(pthread_mutex_init(&w->lock, NULL) == 0);
    TS_ASSERT(pthread_cond_init(&w->freed, NULL) == 0);
    return 0;
}

int tb_run_init(struct tb_run *run, const struct tb_opts *o, uint32_t nworkers)
{
    TS_ASSERT(nworkers >= 1 && nworkers <= o->clients);
    memset(run, 0, sizeof *run);
    run->o = o;
    run->nworkers = nworkers;
    run->workers = calloc(nworkers, sizeof *run->workers);
    if (run->workers == NULL) {
        return -ENOMEM;
    }
    if (o->key_dist == TB_DIST_ZIPFIAN) {
        tb_zipf_init(&run->zipf, o->keyspace, TB_ZIPF_THETA);
    }
    run->scramble_mult = tb_scramble_mult(o->keyspace);
    for (uint32_t i = 0; i < nworkers; i++) {
        uint32_t clients = o->clients / nworkers + (i < o->clients % nworkers ? 1u : 0u);
        int rc = worker_init(run, &run->workers[i], i, clients);
        if (rc != 0) {
            run->nworkers = i + 1;
            tb_run_fini(run);
            return rc;
        }
    }
    return 0;
}

void tb_run_fini(struct tb_run *run)
{
    for (uint32_t i = 0; i < run->nworkers && run->workers != NULL; i++) {
        struct tb_worker *w = &run->workers[i];
        if (w->run != NULL) {
            pthread_mutex_destroy(&w->lock);
            pthread_cond_destroy(&w->freed);
        }
        free(w->ops);
        free(w->free);
        free(w->keys);
        free(w->paths);
        free(w->value);
        free(w->total);
        free(w->interval);
    }
    free(run->workers);
    run->workers = NULL;
}

void tb_run_phase(struct tb_run *run, bool prefill)
{
    const struct tb_opts *o = run->o;
    run->prefill = prefill;
    run->workload = prefill ? TB_WL_PUT : o->workload;
    run->key_dist = prefill ? TB_DIST_SEQUENTIAL : o->key_dist;
    run->total = prefill ? o->keyspace : o->total;
    run->rate = prefill ? 0.0 : o->rate;
    run->start_ns = tb_now_ns();
    run->deadline_ns =
        !prefill && o->duration_s > 0.0 ? run->start_ns + (uint64_t)(o->duration_s * 1e9) : 0;
    atomic_store(&run->counter, 0);
    atomic_store(&run->live, run->nworkers);
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct tb_worker *w = &run->workers[i];
        tb_rate_init(&w->rate, run->start_ns, run->rate * w->clients / o->clients);
        w->issued = 0;
        w->done = false;
        w->nfree = w->nops;
        for (uint32_t j = 0; j < w->nops; j++) {
            w->free[j] = w->nops - 1 - j;
        }
        tb_stats_init(w->total);
        tb_stats_init(w->interval);
    }
}

/* The kind and key of the operation numbered n (run-wide). */
static void choose(struct tb_worker *w, struct tb_op *op, uint64_t n)
{
    struct tb_run *run = w->run;
    const struct tb_opts *o = run->o;
    uint64_t k = 0;
    switch (run->key_dist) {
    case TB_DIST_SEQUENTIAL:
        k = n % o->keyspace;
        break;
    case TB_DIST_UNIFORM:
        k = ts_rand_below(&w->rand, o->keyspace);
        break;
    case TB_DIST_ZIPFIAN:
        k = tb_scramble(tb_zipf_next(&run->zipf, &w->rand), o->keyspace, run->scramble_mult);
        break;
    }
    switch (run->workload) {
    case TB_WL_PUT:
        op->kind = run->prefill ? TB_OP_CREATE : TB_OP_PUT;
        break;
    case TB_WL_GET:
        op->kind = TB_OP_GET;
        break;
    case TB_WL_MIXED:
        op->kind = tb_rand_unit(&w->rand) < o->read_ratio ? TB_OP_GET : TB_OP_PUT;
        break;
    case TB_WL_TXN_CAS:
        op->kind = TB_OP_CAS;
        break;
    }
    op->key_len =
        (uint32_t)(o->key_format == TB_KEYS_VARINT ? tb_key_varint(op->key, o->key_size, k)
                                                   : tb_key_format(op->key, o->key_size, k));
    TS_ASSERT(op->key_len == o->key_size);
    if (op->path != NULL) {
        size_t plen =
            tb_zk_path(op->path, TB_ZK_PATH_BYTES(o->key_size), TB_ZK_PARENT, op->key, op->key_len);
        TS_ASSERT(plen > 0);
    }
    op->step = 0;
    op->tries = 0;
    op->seen = 0;
}

/* Pops a free slot, or NULL. */
static struct tb_op *pop_free(struct tb_worker *w)
{
    struct tb_op *op = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->nfree > 0) {
        op = &w->ops[w->free[--w->nfree]];
    }
    pthread_mutex_unlock(&w->lock);
    return op;
}

enum tb_admit tb_admit(struct tb_worker *w, uint64_t now_ns, struct tb_op **op_out,
                       uint64_t *wait_ns)
{
    struct tb_run *run = w->run;
    *op_out = NULL;
    *wait_ns = 0;
    if (!w->done &&
        (atomic_load(&run->stop) || (run->deadline_ns != 0 && now_ns >= run->deadline_ns))) {
        w->done = true;
    }
    if (w->done) {
        return TB_ADMIT_DONE;
    }
    *wait_ns = tb_rate_wait_ns(&w->rate, w->issued, now_ns);
    if (*wait_ns > 0) {
        return TB_ADMIT_WAIT;
    }
    struct tb_op *op = pop_free(w);
    if (op == NULL) {
        return TB_ADMIT_WAIT;
    }
    uint64_t n = atomic_fetch_add(&run->counter, 1);
    if (run->total != 0 && n >= run->total) {
        w->done = true;
        tb_release(op);
        return TB_ADMIT_DONE;
    }
    choose(w, op, n);
    op->due_ns = tb_rate_due_ns(&w->rate, w->issued);
    op->start_ns = now_ns;
    w->issued++;
    TS_ASSERT(op->due_ns <= now_ns);
    *op_out = op;
    return TB_ADMIT_GO;
}

void tb_worker_finished(struct tb_worker *w)
{
    w->end_ns = tb_now_ns();
    TS_ASSERT(atomic_fetch_sub(&w->run->live, 1) >= 1);
}

static void push_free(struct tb_worker *w, struct tb_op *op)
{
    TS_ASSERT(w->nfree < w->nops);
    w->free[w->nfree++] = op->index;
    pthread_cond_signal(&w->freed);
}

void tb_complete(struct tb_op *op, int code)
{
    struct tb_worker *w = op->w;
    uint64_t end = tb_now_ns();
    uint64_t lat = tb_rate_latency_ns(&w->rate, op->due_ns, op->start_ns, end);
    pthread_mutex_lock(&w->lock);
    if (code == 0) {
        tb_stats_record_ok(w->total, lat);
        tb_stats_record_ok(w->interval, lat);
        if (op->kind == TB_OP_CAS) {
            w->total->cas_ok++;
            w->interval->cas_ok++;
        }
    } else {
        tb_stats_record_error(w->total, code);
        tb_stats_record_error(w->interval, code);
    }
    push_free(w, op);
    pthread_mutex_unlock(&w->lock);
}

void tb_release(struct tb_op *op)
{
    struct tb_worker *w = op->w;
    pthread_mutex_lock(&w->lock);
    push_free(w, op);
    pthread_mutex_unlock(&w->lock);
}

void tb_count_conflict(struct tb_op *op)
{
    struct tb_worker *w = op->w;
    pthread_mutex_lock(&w->lock);
    w->total->cas_conflicts++;
    w->interval->cas_conflicts++;
    pthread_mutex_unlock(&w->lock);
}

void tb_count_miss(struct tb_op *op)
{
    struct tb_worker *w = op->w;
    pthread_mutex_lock(&w->lock);
    w->total->misses++;
    w->interval->misses++;
    pthread_mutex_unlock(&w->lock);
}

uint32_t tb_inflight(struct tb_worker *w)
{
    pthread_mutex_lock(&w->lock);
    uint32_t n = w->nops - w->nfree;
    pthread_mutex_unlock(&w->lock);
    return n;
}

void tb_run_take_interval(struct tb_run *run, struct tb_stats *out)
{
    for (uint32_t i = 0; i < run->nworkers; i++) {
        struct tb_worker *w = &run->workers[i];
        pthread_mutex_lock(&w->lock);
        tb_stats_merge(out, w->interval);
        tb_stats_init(w->interval);
        pthread_mutex_unlock(&w->lock);
    }
}

void tb_run_merge_totals(struct tb_run *run, struct tb_stats *out)
{
    for (uint32_t i = 0; i < run->nworkers; i++) {
        tb_stats_merge(out, run->workers[i].total);
    }
}
