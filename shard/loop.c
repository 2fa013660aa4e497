/*
 * The shard event loop (see loop.h).
 *
 * The timer heap is an array of pointers to caller-owned timers, a binary min-heap on
 * deadline_ns; each timer remembers its index so stop and re-arm are O(log n). The
 * handler table has one entry per possible tag (256), so dispatch is one load.
 */
#define _GNU_SOURCE /* gettid */
#include "shard/loop.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOOP_TIMERS_DEFAULT 1024u

/* The log is optional: a loop without one stays silent. */
#define LOOP_LOG(l, LEVEL, ...)                                                                    \
    do {                                                                                           \
        if ((l)->log != NULL) {                                                                    \
            TS_LOG_##LEVEL((l)->log, __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)
#define LOOP_TAGS 256u

_Static_assert(TS_SHARD_LOOP_CQE_BATCH > 0, "a batch holds at least one CQE");
_Static_assert(TS_SHARD_LOOP_SQ_ENTRIES_DEFAULT <= TS_SHARD_LOOP_SQ_ENTRIES_MAX, "default fits");
_Static_assert(TS_SHARD_LOOP_CQ_ENTRIES_DEFAULT <= TS_SHARD_LOOP_CQ_ENTRIES_MAX, "default fits");
_Static_assert(TS_SHARD_LOOP_TIMERS_MAX < UINT32_MAX, "UINT32_MAX marks an unarmed timer");

struct loop_handler {
    void (*fn)(void *ctx, struct io_uring_cqe *cqe);
    void *ctx;
};

struct loop_hook {
    void (*fn)(void *ctx);
    void *ctx;
};

struct cqe_copy {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct shard_loop {
    struct io_uring ring;
    int ring_fd;
    uint32_t shard_id;
    pid_t owner_tid;
    const struct ts_allocator *alloc;
    const struct ts_log *log;
    bool stopped;
    bool poked;
    bool has_inbound;
    uint64_t now_ns;
    uint64_t iterations;
    uint32_t cq_entries;
    struct loop_handler handlers[LOOP_TAGS];
    struct loop_hook hooks[TS_SHARD_LOOP_HOOKS_MAX];
    uint32_t hooks_n;
    struct shard_loop_inbound inbound;
    void (*control_fn)(void *ctx, uint64_t value, int32_t res);
    void *control_ctx;
    struct shard_timer **heap;
    uint32_t timers_n;
    uint32_t timers_max;
    /* CQEs set aside by shard_loop_wait_tag, oldest first (a ring buffer): they are
     * older than anything still in the CQ, so loop_reap dispatches them first. */
    struct cqe_copy *stash;
    uint32_t stash_head;
    uint32_t stash_n;
    uint32_t stash_cap; /* a power of two */
};

static uint64_t clock_now_ns(void)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
    TS_ASSERT(rc == 0);
    TS_DASSERT(ts.tv_sec >= 0);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void owner_check(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    TS_DASSERT(l->owner_tid == gettid()); /* SINGLE_ISSUER: the creating thread only */
}

/* ---- Timer heap ---------------------------------------------------------------------- */

static void heap_place(struct shard_loop *l, uint32_t i, struct shard_timer *t)
{
    TS_DASSERT(i < l->timers_n);
    TS_DASSERT(t != NULL);
    l->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct shard_loop *l, uint32_t i)
{
    struct shard_timer *t = l->heap[i];
    TS_DASSERT(t->heap_index == i);
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (l->heap[parent]->deadline_ns <= t->deadline_ns) {
            break;
        }
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
    TS_DASSERT(i == 0 || l->heap[(i - 1) / 2]->deadline_ns <= t->deadline_ns);
}

static void heap_down(struct shard_loop *l, uint32_t i)
{
    struct shard_timer *t = l->heap[i];
    TS_DASSERT(t->heap_index == i);
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= l->timers_n) {
            break;
        }
        if (c + 1 < l->timers_n && l->heap[c + 1]->deadline_ns < l->heap[c]->deadline_ns) {
            c++;
        }
        if (t->deadline_ns <= l->heap[c]->deadline_ns) {
            break;
        }
        heap_place(l, i, l->heap[c]);
        i = c;
    }
    heap_place(l, i, t);
    TS_DASSERT(i < l->timers_n);
}

static void heap_remove(struct shard_loop *l, struct shard_timer *t)
{
    uint32_t i = t->heap_index;
    TS_ASSERT(i < l->timers_n);
    TS_ASSERT(l->heap[i] == t);
    l->timers_n--;
    t->heap_index = UINT32_MAX;
    if (i == l->timers_n) {
        return;
    }
    struct shard_timer *last = l->heap[l->timers_n];
    heap_place(l, i, last);
    heap_up(l, i);
    heap_down(l, last->heap_index);
}

void shard_timer_init(struct shard_timer *t)
{
    TS_ASSERT(t != NULL);
    *t = (struct shard_timer){.heap_index = UINT32_MAX};
    TS_DASSERT(!shard_timer_armed(t));
}

int shard_timer_start(struct shard_loop *l, struct shard_timer *t, uint64_t deadline_ns,
                      void (*cb)(struct shard_timer *t, void *data), void *data)
{
    owner_check(l);
    TS_ASSERT(t != NULL);
    TS_ASSERT(cb != NULL);
    if (shard_timer_armed(t)) {
        shard_timer_stop(l, t);
    }
    if (l->timers_n == l->timers_max) {
        return TS_EFULL;
    }
    t->deadline_ns = deadline_ns;
    t->cb = cb;
    t->data = data;
    l->timers_n++;
    heap_place(l, l->timers_n - 1, t);
    heap_up(l, l->timers_n - 1);
    TS_DASSERT(shard_timer_armed(t));
    return 0;
}

void shard_timer_stop(struct shard_loop *l, struct shard_timer *t)
{
    owner_check(l);
    TS_ASSERT(t != NULL);
    if (shard_timer_armed(t)) {
        heap_remove(l, t);
    }
    TS_DASSERT(!shard_timer_armed(t));
}

uint32_t shard_loop_timers(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    TS_DASSERT(l->timers_n <= l->timers_max);
    return l->timers_n;
}

/* Fires the timers due at l->now_ns, earliest first. A callback may re-arm its timer in
 * the past; the budget (the timers armed on entry) keeps this step bounded, and a poke
 * brings the rest to the next iteration. */
static void timers_run(struct shard_loop *l)
{
    uint32_t budget = l->timers_n;
    TS_DASSERT(budget <= l->timers_max);
    for (uint32_t i = 0; i < budget && l->timers_n > 0; i++) {
        struct shard_timer *t = l->heap[0];
        if (t->deadline_ns > l->now_ns) {
            return;
        }
        heap_remove(l, t);
        TS_DASSERT(!shard_timer_armed(t));
        t->cb(t, t->data);
    }
    if (l->timers_n > 0 && l->heap[0]->deadline_ns <= l->now_ns) {
        l->poked = true;
    }
}

/* ---- Registration ---------------------------------------------------------------------- */

void shard_loop_unregister(struct shard_loop *l, uint8_t tag)
{
    owner_check(l);
    TS_ASSERT(tag != 0 && tag != SHARD_TAG_LOOP);
    l->handlers[tag] = (struct loop_handler){0};
}

int shard_loop_register(struct shard_loop *l, uint8_t tag,
                        void (*fn)(void *ctx, struct io_uring_cqe *cqe), void *ctx)
{
    owner_check(l);
    TS_ASSERT(fn != NULL);
    if (tag == 0 || l->handlers[tag].fn != NULL) {
        return TS_EINVAL;
    }
    l->handlers[tag] = (struct loop_handler){.fn = fn, .ctx = ctx};
    TS_DASSERT(l->handlers[tag].fn == fn);
    return 0;
}

int shard_loop_on_iteration(struct shard_loop *l, void (*fn)(void *ctx), void *ctx)
{
    owner_check(l);
    TS_ASSERT(fn != NULL);
    if (l->hooks_n == TS_SHARD_LOOP_HOOKS_MAX) {
        return TS_EFULL;
    }
    l->hooks[l->hooks_n++] = (struct loop_hook){.fn = fn, .ctx = ctx};
    TS_DASSERT(l->hooks_n <= TS_SHARD_LOOP_HOOKS_MAX);
    return 0;
}

int shard_loop_set_inbound(struct shard_loop *l, const struct shard_loop_inbound *in)
{
    owner_check(l);
    TS_ASSERT(in != NULL);
    TS_ASSERT(in->drain != NULL && in->sleep_begin != NULL && in->sleep_end != NULL);
    if (l->has_inbound) {
        return TS_EINVAL;
    }
    l->inbound = *in;
    l->has_inbound = true;
    return 0;
}

void shard_loop_on_control(struct shard_loop *l, void (*fn)(void *ctx, uint64_t value, int32_t res),
                           void *ctx)
{
    owner_check(l);
    TS_ASSERT(fn != NULL);
    TS_ASSERT(l->control_fn == NULL);
    l->control_fn = fn;
    l->control_ctx = ctx;
}

/* The loop's own tag: wake-ups need nothing beyond having woken the thread. */
static void on_loop_cqe(void *ctx, struct io_uring_cqe *cqe)
{
    struct shard_loop *l = ctx;
    uint64_t value = shard_udata_value(cqe->user_data);
    TS_DASSERT(shard_udata_tag(cqe->user_data) == SHARD_TAG_LOOP);
    if (value == SHARD_LOOP_EV_NOP && cqe->res < 0) {
        /* A wake-up that did not go out: the target ring is gone (shutdown). */
        LOOP_LOG(l, DEBUG, "shard %u: msg_ring: %s", l->shard_id, ts_strerror(cqe->res));
        return;
    }
    if (value == SHARD_LOOP_EV_WAKE || value == SHARD_LOOP_EV_NOP) {
        return;
    }
    TS_ASSERT(l->control_fn != NULL);
    l->control_fn(l->control_ctx, value, cqe->res);
}

/* ---- SQEs ---------------------------------------------------------------------------- */

struct io_uring *shard_loop_ring(struct shard_loop *l)
{
    owner_check(l);
    TS_DASSERT(l->ring_fd >= 0);
    return &l->ring;
}

int shard_loop_ring_fd(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    TS_ASSERT(l->ring_fd >= 0);
    return l->ring_fd;
}

struct io_uring_sqe *shard_loop_sqe(struct shard_loop *l)
{
    owner_check(l);
    TS_DASSERT(l->ring_fd >= 0);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    for (uint32_t i = 0; sqe == NULL && i < TS_SHARD_LOOP_SQE_RETRIES_MAX; i++) {
        int rc = io_uring_submit(&l->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            LOOP_LOG(l, WARN, "io_uring_submit: %s", ts_strerror(rc));
        }
        if (rc == -EBUSY || rc == -EAGAIN) {
            (void)io_uring_get_events(&l->ring); /* CQ overflow: let the kernel flush */
        }
        sqe = io_uring_get_sqe(&l->ring);
    }
    TS_DASSERT(sqe == NULL || io_uring_sq_ready(&l->ring) > 0);
    return sqe;
}

/* ---- The iteration ---------------------------------------------------------------------- */

/* Submits and waits as loop.h describes. Returns 0 or -errno. */
static int loop_wait(struct shard_loop *l, bool may_block)
{
    TS_DASSERT(l->timers_n <= l->timers_max);
    bool block = may_block && !l->poked && !l->stopped && io_uring_cq_ready(&l->ring) == 0 &&
                 l->stash_n == 0;
    l->poked = false;
    bool announced = false;
    if (block && l->has_inbound) {
        announced = true;
        block = l->inbound.sleep_begin(l->inbound.ctx);
    }
    uint64_t now = l->timers_n > 0 ? clock_now_ns() : 0;
    if (block && l->timers_n > 0 && l->heap[0]->deadline_ns <= now) {
        block = false;
    }
    int rc;
    if (!block) {
        rc = io_uring_submit_and_get_events(&l->ring);
    } else if (l->timers_n == 0) {
        rc = io_uring_submit_and_wait(&l->ring, 1);
    } else {
        uint64_t wait_ns = l->heap[0]->deadline_ns - now;
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ns / 1000000000ull),
                                       .tv_nsec = (long long)(wait_ns % 1000000000ull)};
        struct io_uring_cqe *cqe = NULL;
        rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
    }
    if (announced) {
        l->inbound.sleep_end(l->inbound.ctx);
    }
    TS_DASSERT(!announced || l->has_inbound);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN && rc != -EBUSY) {
        return rc;
    }
    return 0;
}

static void dispatch(struct shard_loop *l, const struct cqe_copy *c)
{
    if (c->user_data == LIBURING_UDATA_TIMEOUT) {
        return; /* liburing's own timeout SQE on kernels without EXT_ARG */
    }
    uint8_t tag = shard_udata_tag(c->user_data);
    struct loop_handler *h = &l->handlers[tag];
    TS_ASSERT(h->fn != NULL); /* every SQE carries a registered tag */
    struct io_uring_cqe cqe = {.user_data = c->user_data, .res = c->res, .flags = c->flags};
    h->fn(h->ctx, &cqe);
    TS_DASSERT(tag != 0);
}

/* ---- The stash ---------------------------------------------------------------------- */

static int stash_grow(struct shard_loop *l)
{
    TS_ASSERT(l->stash_n == l->stash_cap);
    uint32_t cap = l->stash_cap == 0 ? 64u : 2 * l->stash_cap;
    while (cap < l->cq_entries) {
        cap *= 2; /* the first stash holds a full CQ */
    }
    if (cap > TS_SHARD_LOOP_STASH_MAX) {
        return TS_ENOMEM;
    }
    struct cqe_copy *s = ts_alloc(l->alloc, (size_t)cap * sizeof(*s));
    if (s == NULL) {
        return TS_ENOMEM;
    }
    for (uint32_t i = 0; i < l->stash_n; i++) {
        s[i] = l->stash[(l->stash_head + i) & (l->stash_cap - 1)];
    }
    ts_free(l->alloc, l->stash, (size_t)l->stash_cap * sizeof(*l->stash));
    l->stash = s;
    l->stash_cap = cap;
    l->stash_head = 0;
    return 0;
}

static int stash_push(struct shard_loop *l, const struct io_uring_cqe *cqe)
{
    if (l->stash_n == l->stash_cap) {
        int rc = stash_grow(l);
        if (rc != 0) {
            return rc;
        }
    }
    TS_DASSERT(l->stash_n < l->stash_cap);
    uint32_t i = (l->stash_head + l->stash_n) & (l->stash_cap - 1);
    l->stash[i] = (struct cqe_copy){cqe->user_data, cqe->res, cqe->flags};
    l->stash_n++;
    return 0;
}

/* Dispatches what the stash held when called (handlers may stash more: that waits). */
static uint32_t stash_drain(struct shard_loop *l)
{
    uint32_t n = l->stash_n;
    for (uint32_t k = 0; k < n; k++) {
        TS_ASSERT(l->stash_n > 0);
        struct cqe_copy c = l->stash[l->stash_head];
        l->stash_head = (l->stash_head + 1) & (l->stash_cap - 1);
        l->stash_n--;
        dispatch(l, &c);
    }
    return n;
}

/* Reaps CQEs a batch at a time, the stash first; bounded by what the CQ can hold, the
 * rest (CQEs posted while handlers ran) waits for the next iteration. Returns the CQEs
 * dispatched. */
static uint32_t loop_reap(struct shard_loop *l)
{
    struct cqe_copy batch[TS_SHARD_LOOP_CQE_BATCH];
    TS_ASSERT(l->cq_entries > 0);
    uint32_t rounds = l->cq_entries / TS_SHARD_LOOP_CQE_BATCH + 1;
    uint32_t total = 0;
    for (uint32_t r = 0; r < rounds; r++) {
        total += stash_drain(l);
        uint32_t n = 0;
        unsigned head;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            if (n == TS_SHARD_LOOP_CQE_BATCH) {
                break;
            }
            batch[n++] = (struct cqe_copy){cqe->user_data, cqe->res, cqe->flags};
        }
        io_uring_cq_advance(&l->ring, n);
        for (uint32_t i = 0; i < n; i++) {
            dispatch(l, &batch[i]);
        }
        total += n;
        if (n < TS_SHARD_LOOP_CQE_BATCH && l->stash_n == 0) {
            return total;
        }
    }
    l->poked = true;
    TS_DASSERT(total > 0);
    return total;
}

/* One pass of shard_loop_wait_tag: takes every CQE now in the CQ, dispatching those
 * tagged `tag` and stashing the others. Returns how many of tag's were dispatched, or
 * TS_ENOMEM when the stash is full (the CQEs not taken stay in the CQ). */
static int reap_tag(struct shard_loop *l, uint8_t tag)
{
    struct cqe_copy mine[TS_SHARD_LOOP_CQE_BATCH];
    int total = 0;
    for (;;) {
        uint32_t n = 0;
        uint32_t taken = 0;
        int err = 0;
        unsigned head;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            if (n == TS_SHARD_LOOP_CQE_BATCH) {
                break;
            }
            if (cqe->user_data != LIBURING_UDATA_TIMEOUT &&
                shard_udata_tag(cqe->user_data) == tag) {
                mine[n++] = (struct cqe_copy){cqe->user_data, cqe->res, cqe->flags};
            } else if ((err = stash_push(l, cqe)) != 0) {
                break;
            }
            taken++;
        }
        io_uring_cq_advance(&l->ring, taken);
        for (uint32_t i = 0; i < n; i++) {
            dispatch(l, &mine[i]);
        }
        total += (int)n;
        if (err != 0) {
            return total > 0 ? total : err;
        }
        if (n < TS_SHARD_LOOP_CQE_BATCH) {
            return total;
        }
    }
}

int shard_loop_wait_tag(struct shard_loop *l, uint8_t tag)
{
    owner_check(l);
    TS_ASSERT(tag != 0);
    TS_ASSERT(l->handlers[tag].fn != NULL);
    for (uint32_t pass = 0; pass < TS_SHARD_LOOP_WAIT_TAG_PASSES_MAX; pass++) {
        int got = reap_tag(l, tag);
        if (got != 0) {
            return got < 0 ? got : 0;
        }
        int rc = io_uring_submit_and_wait(&l->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN && rc != -EBUSY) {
            return rc;
        }
    }
    return -EAGAIN;
}

int shard_loop_run_once(struct shard_loop *l, bool wait)
{
    owner_check(l);
    TS_ASSERT(l->timers_n <= l->timers_max);
    int rc = loop_wait(l, wait);
    if (rc < 0) {
        return rc;
    }
    l->now_ns = clock_now_ns();
    (void)loop_reap(l);
    timers_run(l);
    if (l->has_inbound) {
        (void)l->inbound.drain(l->inbound.ctx);
    }
    for (uint32_t i = 0; i < l->hooks_n; i++) {
        l->hooks[i].fn(l->hooks[i].ctx);
    }
    l->iterations++;
    TS_DASSERT(l->iterations > 0);
    return 0;
}

int shard_loop_run(struct shard_loop *l)
{
    owner_check(l);
    TS_ASSERT(l->ring_fd >= 0);
    /* The first iteration does not block: hooks see work queued before the loop ran. */
    l->poked = true;
    /* The event loop is the one unbounded loop (STYLE R19). */
    while (!l->stopped) {
        int rc = shard_loop_run_once(l, true);
        if (rc < 0) {
            LOOP_LOG(l, ERROR, "shard %u: waiting on the ring: %s", l->shard_id, ts_strerror(rc));
            return rc;
        }
    }
    TS_DASSERT(l->stopped);
    return 0;
}

void shard_loop_stop(struct shard_loop *l)
{
    owner_check(l);
    l->stopped = true;
    TS_DASSERT(shard_loop_stopped(l));
}

bool shard_loop_stopped(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    return l->stopped;
}

void shard_loop_poke(struct shard_loop *l)
{
    owner_check(l);
    l->poked = true;
}

uint64_t shard_loop_now_ns(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    TS_DASSERT(l->now_ns > 0);
    return l->now_ns;
}

uint64_t shard_loop_iterations(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    return l->iterations;
}

uint32_t shard_loop_shard_id(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    return l->shard_id;
}

const struct ts_allocator *shard_loop_allocator(const struct shard_loop *l)
{
    TS_ASSERT(l != NULL);
    TS_ASSERT(l->alloc != NULL);
    return l->alloc;
}

/* ---- Creation ------------------------------------------------------------------------ */

static int ring_init(struct shard_loop *l, uint32_t sq, uint32_t cq)
{
    TS_ASSERT(sq > 0 && sq <= TS_SHARD_LOOP_SQ_ENTRIES_MAX);
    TS_ASSERT(cq >= sq && cq <= TS_SHARD_LOOP_CQ_ENTRIES_MAX);
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = cq;
    int rc = io_uring_queue_init_params(sq, &l->ring, &p);
    if (rc == -EINVAL) {
        LOOP_LOG(l, WARN,
                 "shard %u: kernel refuses SINGLE_ISSUER|DEFER_TASKRUN, using a "
                 "plain ring",
                 l->shard_id);
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = cq;
        rc = io_uring_queue_init_params(sq, &l->ring, &p);
    }
    return rc;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v == 0 ? def : v;
}

int shard_loop_create(const struct shard_loop_config *cfg, struct shard_loop **out)
{
    TS_ASSERT(cfg != NULL);
    TS_ASSERT(out != NULL);
    const struct ts_allocator *a = cfg->alloc != NULL ? cfg->alloc : ts_allocator_default();
    uint32_t sq = or_default(cfg->sq_entries, TS_SHARD_LOOP_SQ_ENTRIES_DEFAULT);
    uint32_t cq = or_default(cfg->cq_entries, TS_SHARD_LOOP_CQ_ENTRIES_DEFAULT);
    uint32_t timers = or_default(cfg->timers_max, LOOP_TIMERS_DEFAULT);
    if (sq > TS_SHARD_LOOP_SQ_ENTRIES_MAX || cq > TS_SHARD_LOOP_CQ_ENTRIES_MAX || cq < sq ||
        timers > TS_SHARD_LOOP_TIMERS_MAX) {
        return -EINVAL;
    }
    struct shard_loop *l = ts_alloc(a, sizeof(*l));
    if (l == NULL) {
        return -ENOMEM;
    }
    memset(l, 0, sizeof(*l));
    l->alloc = a;
    l->log = cfg->log;
    l->shard_id = cfg->shard_id;
    l->cq_entries = cq;
    l->timers_max = timers;
    l->heap = ts_alloc(a, (size_t)timers * sizeof(*l->heap));
    int rc = l->heap == NULL ? -ENOMEM : ring_init(l, sq, cq);
    if (rc < 0) {
        ts_free(a, l->heap, (size_t)timers * sizeof(*l->heap));
        ts_free(a, l, sizeof(*l));
        return rc;
    }
    l->ring_fd = l->ring.ring_fd;
    l->owner_tid = gettid();
    l->now_ns = clock_now_ns();
    l->handlers[SHARD_TAG_LOOP] = (struct loop_handler){.fn = on_loop_cqe, .ctx = l};
    *out = l;
    return 0;
}

void shard_loop_destroy(struct shard_loop *l)
{
    owner_check(l);
    TS_ASSERT(l->alloc != NULL);
    io_uring_queue_exit(&l->ring);
    const struct ts_allocator *a = l->alloc;
    ts_free(a, l->stash, (size_t)l->stash_cap * sizeof(*l->stash));
    ts_free(a, l->heap, (size_t)l->timers_max * sizeof(*l->heap));
    ts_free(a, l, sizeof(*l));
}
