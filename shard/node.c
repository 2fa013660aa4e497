/*
 * A node's shards (see node.h).
 *
 * Start-up uses three one-shot gates: `loops` (every shard has its loop and is attached
 * to the mesh, so init_cb may send anywhere), `ready` (every init_cb has returned; the
 * starting thread waits on it too) and `left` (every shard has left its loop, so no ring
 * is closed while another shard may still post to it). A gate is a mutex, a condition
 * variable and a count; when a thread cannot be created, the starter shrinks each gate by
 * the threads that will never arrive, so nobody waits for them.
 *
 * Shutdown counts shards that are done stopping in `quiesced`; a shard increments it
 * only after it closed its sending side, with release order, and a shard that reads
 * quiesced == N with acquire order then sees every message any shard ever published, so
 * its final drain leaves nothing behind. The shard that brings the count to N wakes the
 * others with a msg_ring each.
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, sched_getaffinity */
#include "shard/node.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "shard/arena.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* Signals read per readiness of the signalfd: more than two pending is already a repeat. */
#define NODE_SIGNALS_PER_READ_MAX 8u

/* While a stop callback says "not yet", it is called again at least this often (and in
 * every iteration that I/O causes anyway): soon enough for a flush to be noticed, rare
 * enough that a shard winding down does not spin. */
#define NODE_STOP_RETRY_NS 1000000ull

#define NODE_LOG(n, LEVEL, ...)                                                                    \
    do {                                                                                           \
        if ((n)->log != NULL) {                                                                    \
            TS_LOG_##LEVEL((n)->log, __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t arrived;
    uint32_t target;
};

struct shard {
    struct shard_node *node;
    uint32_t id;
    pthread_t thread;
    bool thread_started;
    struct shard_loop *loop;
    struct shard_arena arena;
    bool attached;
    bool init_ran;
    bool inited;
    bool stopping;
    bool stop_done;
    uint64_t stop_deadline_ns;     /* STOP's arrival + stop_ms: stop_cb is given up on */
    struct shard_timer stop_timer; /* armed while stop_cb says "not yet" */
    int signal_fd;                 /* shard 0 only; -1 elsewhere */
};

struct shard_node {
    const struct ts_allocator *alloc;
    const struct ts_log *log;
    uint32_t n;
    bool pin;
    uint64_t stop_ns;
    int (*init_cb)(struct shard *s, void *data);
    bool (*stop_cb)(struct shard *s, void *data);
    void (*msg_cb)(struct shard *s, const struct xring_msg *msg, void *data);
    void (*fini_cb)(struct shard *s, void *data);
    void *data;
    struct xring_mesh *mesh;
    struct shard *shards;
    struct gate g_loops;
    struct gate g_ready;
    struct gate g_left;
    _Atomic int setup_err;
    _Atomic int init_err;
    _Atomic int run_err;
    _Atomic int stop_err; /* TS_ETIMEOUT once a shard gave up on its stop_cb */
    _Atomic uint32_t stop_requested;
    _Atomic uint32_t quiesced;
    sigset_t old_mask;
};

/* ---- Gates ------------------------------------------------------------------------------- */

static void gate_init(struct gate *g, uint32_t target)
{
    TS_ASSERT(target > 0);
    TS_ASSERT(pthread_mutex_init(&g->mu, NULL) == 0);
    TS_ASSERT(pthread_cond_init(&g->cv, NULL) == 0);
    g->arrived = 0;
    g->target = target;
}

static void gate_fini(struct gate *g)
{
    TS_ASSERT(g->arrived >= g->target);
    TS_ASSERT(pthread_cond_destroy(&g->cv) == 0);
    TS_ASSERT(pthread_mutex_destroy(&g->mu) == 0);
}

/* Arrives and waits for everyone. The wait is bounded by the threads of the node. */
static void gate_wait(struct gate *g)
{
    TS_ASSERT(pthread_mutex_lock(&g->mu) == 0);
    g->arrived++;
    TS_ASSERT(g->arrived <= g->target);
    if (g->arrived == g->target) {
        TS_ASSERT(pthread_cond_broadcast(&g->cv) == 0);
    }
    while (g->arrived < g->target) {
        TS_ASSERT(pthread_cond_wait(&g->cv, &g->mu) == 0);
    }
    TS_ASSERT(pthread_mutex_unlock(&g->mu) == 0);
}

/* `missing` participants will never arrive. */
static void gate_shrink(struct gate *g, uint32_t missing)
{
    TS_ASSERT(pthread_mutex_lock(&g->mu) == 0);
    TS_ASSERT(missing <= g->target - g->arrived);
    g->target -= missing;
    if (g->arrived >= g->target) {
        TS_ASSERT(pthread_cond_broadcast(&g->cv) == 0);
    }
    TS_ASSERT(pthread_mutex_unlock(&g->mu) == 0);
}

static void err_record(_Atomic int *slot, int rc)
{
    TS_ASSERT(rc < 0);
    int expected = 0;
    (void)atomic_compare_exchange_strong(slot, &expected, rc);
    TS_DASSERT(atomic_load(slot) != 0);
}

/* ---- Accessors ------------------------------------------------------------------------- */

uint32_t shard_node_shards(const struct shard_node *n)
{
    TS_ASSERT(n != NULL);
    TS_DASSERT(n->n > 0);
    return n->n;
}

uint32_t shard_get_id(const struct shard *s)
{
    TS_ASSERT(s != NULL);
    TS_DASSERT(s->id < s->node->n);
    return s->id;
}

uint32_t shard_get_count(const struct shard *s)
{
    TS_ASSERT(s != NULL);
    return s->node->n;
}

struct shard_loop *shard_get_loop(struct shard *s)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->loop != NULL);
    return s->loop;
}

struct shard_node *shard_get_node(struct shard *s)
{
    TS_ASSERT(s != NULL);
    return s->node;
}

struct xring_mesh *shard_get_mesh(struct shard *s)
{
    TS_ASSERT(s != NULL);
    TS_ASSERT(s->node->mesh != NULL);
    return s->node->mesh;
}

const struct ts_allocator *shard_get_allocator(struct shard *s)
{
    TS_ASSERT(s != NULL);
    TS_DASSERT(ts_shard_id() == (int)s->id);
    return shard_arena_allocator(&s->arena);
}

bool shard_stopping(const struct shard *s)
{
    TS_ASSERT(s != NULL);
    return s->stopping;
}

int shard_send(struct shard *s, uint32_t to, const struct xring_msg *msg)
{
    TS_ASSERT(s != NULL && msg != NULL);
    TS_DASSERT(ts_shard_id() == (int)s->id);
    if (to >= s->node->n || to == s->id) {
        return TS_EINVAL;
    }
    return xring_send(s->node->mesh, s->id, to, msg);
}

/* ---- Stopping ------------------------------------------------------------------------ */

/* Posts a SHARD_TAG_LOOP event to every shard's ring through a private, short-lived
 * ring, so that any thread can do it. Waits until the kernel took every message. */
static int post_to_all(struct shard_node *n, uint64_t event)
{
    TS_ASSERT(n->n <= TS_XRING_SHARDS_MAX);
    struct io_uring ring;
    int rc = io_uring_queue_init(TS_XRING_SHARDS_MAX, &ring, 0);
    if (rc < 0) {
        return rc;
    }
    for (uint32_t i = 0; i < n->n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        TS_ASSERT(sqe != NULL); /* the ring has TS_XRING_SHARDS_MAX entries */
        int fd = shard_loop_ring_fd(n->shards[i].loop);
        io_uring_prep_msg_ring(sqe, fd, 0, shard_udata(SHARD_TAG_LOOP, event), 0);
        io_uring_sqe_set_data64(sqe, i);
    }
    rc = io_uring_submit_and_wait(&ring, n->n);
    for (uint32_t i = 0; i < n->n && rc >= 0; i++) {
        struct io_uring_cqe *cqe;
        rc = io_uring_wait_cqe(&ring, &cqe);
        if (rc == 0) {
            rc = cqe->res < 0 ? cqe->res : 0;
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    io_uring_queue_exit(&ring);
    return rc < 0 ? rc : 0;
}

int shard_node_stop(struct shard_node *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->shards != NULL);
    if (atomic_exchange(&n->stop_requested, 1) != 0) {
        return 0;
    }
    int rc = post_to_all(n, SHARD_LOOP_EV_STOP);
    if (rc < 0) {
        /* Let a later call try again; a shard that got STOP already ignores a second. */
        NODE_LOG(n, ERROR, "posting STOP to the shards: %s", ts_strerror(rc));
        atomic_store(&n->stop_requested, 0);
    }
    return rc;
}

/* Wakes every other shard from s's own ring: the last shard to be done stopping does
 * this so the sleeping ones notice. */
static void wake_others(struct shard *s)
{
    struct shard_node *n = s->node;
    TS_ASSERT(s->stop_done);
    for (uint32_t i = 0; i < n->n; i++) {
        if (i == s->id) {
            continue;
        }
        struct io_uring_sqe *sqe = shard_loop_sqe(s->loop);
        TS_ASSERT(sqe != NULL);
        int fd = shard_loop_ring_fd(n->shards[i].loop);
        io_uring_prep_msg_ring(sqe, fd, 0, shard_udata(SHARD_TAG_LOOP, SHARD_LOOP_EV_WAKE), 0);
        io_uring_sqe_set_data64(sqe, shard_udata(SHARD_TAG_LOOP, SHARD_LOOP_EV_NOP));
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    int rc = io_uring_submit(shard_loop_ring(s->loop));
    if (rc < 0) {
        /* Still queued: the next iteration's submit, or shard_run's last one, sends them. */
        NODE_LOG(n, WARN, "submitting wake-ups: %s", ts_strerror(rc));
    }
}

/* s is done stopping: it sends nothing more, and counts itself. */
static void quiesce(struct shard *s)
{
    TS_ASSERT(s->stopping);
    TS_ASSERT(!s->stop_done);
    s->stop_done = true;
    shard_timer_stop(s->loop, &s->stop_timer);
    xring_close_sender(s->node->mesh, s->id);
    uint32_t q = atomic_fetch_add_explicit(&s->node->quiesced, 1, memory_order_acq_rel) + 1;
    TS_ASSERT(q <= s->node->n);
    if (q == s->node->n) {
        wake_others(s);
    }
}

/* Nothing to do: firing makes an iteration, whose hook calls the stop callback. */
static void on_stop_timer(struct shard_timer *t, void *data)
{
    struct shard *s = data;
    TS_ASSERT(t == &s->stop_timer);
    TS_DASSERT(s->stopping);
}

static void stop_step(struct shard *s)
{
    struct shard_node *n = s->node;
    TS_ASSERT(s->stopping);
    TS_ASSERT(!s->stop_done);
    bool done = true;
    if (s->inited && n->stop_cb != NULL) {
        done = n->stop_cb(s, n->data);
    }
    if (!done && shard_loop_now_ns(s->loop) >= s->stop_deadline_ns) {
        NODE_LOG(n, ERROR,
                 "shard %u: stop callback not done %llu ms after STOP: shutting down without it",
                 s->id, (unsigned long long)(n->stop_ns / 1000000u));
        err_record(&n->stop_err, TS_ETIMEOUT);
        done = true;
    }
    if (done) {
        quiesce(s);
        return;
    }
    if (!shard_timer_armed(&s->stop_timer)) {
        uint64_t at = shard_loop_now_ns(s->loop) + NODE_STOP_RETRY_NS;
        if (shard_timer_start(s->loop, &s->stop_timer, at, on_stop_timer, s) != 0) {
            shard_loop_poke(s->loop); /* no timer to spare: come back at once */
        }
    }
}

static void begin_stop(struct shard *s)
{
    TS_ASSERT(s != NULL);
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    s->stop_deadline_ns = shard_loop_now_ns(s->loop) + s->node->stop_ns;
    stop_step(s);
    TS_DASSERT(s->stopping);
}

/* Once per iteration, after the inbound rings were drained. */
static void node_hook(void *ctx)
{
    struct shard *s = ctx;
    TS_DASSERT(ts_shard_id() == (int)s->id);
    if (!s->stopping) {
        return;
    }
    if (!s->stop_done) {
        stop_step(s);
    }
    uint32_t q = atomic_load_explicit(&s->node->quiesced, memory_order_acquire);
    TS_ASSERT(q <= s->node->n);
    if (s->stop_done && q == s->node->n) {
        (void)xring_drain(s->node->mesh, s->id);
        shard_loop_stop(s->loop);
    }
}

/* ---- Signals (shard 0) ----------------------------------------------------------------- */

static void signal_arm(struct shard *s)
{
    TS_ASSERT(s->signal_fd >= 0);
    struct io_uring_sqe *sqe = shard_loop_sqe(s->loop);
    TS_ASSERT(sqe != NULL);
    io_uring_prep_poll_add(sqe, s->signal_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, shard_udata(SHARD_TAG_LOOP, SHARD_LOOP_EV_SIGNAL));
}

static void on_signal(struct shard *s, int32_t res)
{
    TS_ASSERT(s->id == 0);
    TS_ASSERT(s->signal_fd >= 0);
    bool got = false;
    for (uint32_t i = 0; res >= 0 && i < NODE_SIGNALS_PER_READ_MAX; i++) {
        struct signalfd_siginfo si;
        ssize_t r = read(s->signal_fd, &si, sizeof(si));
        if (r != (ssize_t)sizeof(si)) {
            break;
        }
        NODE_LOG(s->node, INFO, "signal %u: stopping the node", si.ssi_signo);
        got = true;
    }
    if (got) {
        (void)shard_node_stop(s->node);
    }
    if (!s->stopping && res >= 0) {
        signal_arm(s);
    } else if (res < 0 && res != -ECANCELED) {
        NODE_LOG(s->node, ERROR, "polling the signalfd: %s", ts_strerror(res));
    }
}

static void on_control(void *ctx, uint64_t value, int32_t res)
{
    struct shard *s = ctx;
    TS_DASSERT(ts_shard_id() == (int)s->id);
    if (value == SHARD_LOOP_EV_STOP) {
        begin_stop(s);
    } else {
        TS_ASSERT(value == SHARD_LOOP_EV_SIGNAL);
        on_signal(s, res);
    }
}

static void on_message(void *ctx, const struct xring_msg *msg)
{
    struct shard *s = ctx;
    TS_ASSERT(s->node->msg_cb != NULL); /* someone sent without a receiver */
    TS_DASSERT(msg->from < s->node->n);
    s->node->msg_cb(s, msg, s->node->data);
}

/* ---- The shard thread ------------------------------------------------------------------ */

static void pin_self(struct shard *s)
{
    cpu_set_t allowed;
    TS_ASSERT(s->node->pin);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        return;
    }
    int count = CPU_COUNT(&allowed);
    TS_ASSERT(count > 0);
    int want = (int)(s->id % (uint32_t)count);
    for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || seen++ != want) {
            continue;
        }
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
        if (rc != 0) {
            NODE_LOG(s->node, WARN, "pinning to CPU %d: %s", cpu, ts_strerror(-rc));
        }
        return;
    }
}

static int signals_setup(struct shard *s)
{
    sigset_t set;
    TS_ASSERT(s->id == 0);
    TS_ASSERT(s->signal_fd < 0);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    s->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->signal_fd < 0) {
        return -errno;
    }
    signal_arm(s);
    return 0;
}

/* Pin, arena, loop, mesh, hooks, signals. Returns 0 or a negative code. */
static int shard_setup(struct shard *s)
{
    struct shard_node *n = s->node;
    TS_ASSERT(s->loop == NULL);
    if (n->pin) {
        pin_self(s);
    }
    int rc = shard_arena_init(&s->arena);
    if (rc < 0) {
        return rc;
    }
    struct shard_loop_config lc = {
        .shard_id = s->id, .alloc = shard_arena_allocator(&s->arena), .log = n->log};
    rc = shard_loop_create(&lc, &s->loop);
    if (rc < 0) {
        return rc;
    }
    shard_loop_on_control(s->loop, on_control, s);
    rc = shard_loop_on_iteration(s->loop, node_hook, s);
    TS_ASSERT(rc == 0); /* the first hook */
    rc = xring_attach(n->mesh, s->id, s->loop, on_message, s);
    if (rc < 0) {
        return rc;
    }
    s->attached = true;
    return s->id == 0 ? signals_setup(s) : 0;
}

static void shard_teardown(struct shard *s)
{
    TS_ASSERT(s != NULL);
    if (s->attached) {
        xring_detach(s->node->mesh, s->id);
    }
    if (s->loop != NULL) {
        shard_loop_destroy(s->loop); /* cancels the signalfd poll */
    }
    if (s->signal_fd >= 0) {
        close(s->signal_fd);
        s->signal_fd = -1;
    }
    TS_DASSERT(s->signal_fd < 0);
}

static void shard_run(struct shard *s)
{
    struct shard_node *n = s->node;
    TS_ASSERT(s->loop != NULL);
    if (atomic_load(&n->init_err) != 0) {
        begin_stop(s); /* another shard's init failed: the node never started */
    }
    int rc = shard_loop_run(s->loop);
    if (rc < 0) {
        err_record(&n->run_err, rc);
        (void)shard_node_stop(n);
        if (!s->stop_done) {
            s->stopping = true;
            quiesce(s); /* this loop cannot run any more: count it out */
        }
    }
    (void)io_uring_submit(shard_loop_ring(s->loop)); /* wake-ups still queued */
    TS_DASSERT(s->stopping || rc < 0);
}

static void *shard_main(void *arg)
{
    struct shard *s = arg;
    struct shard_node *n = s->node;
    TS_ASSERT(s->id < n->n);
    TS_ASSERT(s->loop == NULL);
    ts_shard_id_set((int)s->id);
    int rc = shard_setup(s);
    if (rc < 0) {
        NODE_LOG(n, ERROR, "setup: %s", ts_strerror(rc));
        err_record(&n->setup_err, rc);
    }
    gate_wait(&n->g_loops);
    bool setup_ok = atomic_load(&n->setup_err) == 0;
    if (setup_ok && n->init_cb != NULL) {
        s->init_ran = true;
        rc = n->init_cb(s, n->data);
        if (rc < 0) {
            NODE_LOG(n, ERROR, "init: %s", ts_strerror(rc));
            err_record(&n->init_err, rc);
        }
    }
    s->inited = setup_ok && rc >= 0;
    if (setup_ok && atomic_load(&n->init_err) != 0) {
        atomic_store(&n->stop_requested, 1); /* nobody posts STOP: each shard stops itself */
    }
    gate_wait(&n->g_ready);
    if (setup_ok) {
        shard_run(s);
    }
    gate_wait(&n->g_left);
    if (s->init_ran && n->fini_cb != NULL) {
        n->fini_cb(s, n->data);
    }
    shard_teardown(s);
    ts_shard_id_set(-1);
    return NULL;
}

/* ---- Node ------------------------------------------------------------------------------ */

static uint32_t shards_default(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    TS_DASSERT(TS_XRING_SHARDS_MAX > 0);
    if (cpus < 1) {
        return 1;
    }
    return cpus > (long)TS_XRING_SHARDS_MAX ? TS_XRING_SHARDS_MAX : (uint32_t)cpus;
}

static void node_free(struct shard_node *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->alloc != NULL);
    if (n->mesh != NULL) {
        xring_mesh_destroy(n->mesh);
    }
    ts_free(n->alloc, n->shards, n->n * sizeof(struct shard));
    ts_free(n->alloc, n, sizeof(*n));
}

static int node_alloc(const struct shard_node_config *cfg, uint32_t count, struct shard_node **out)
{
    const struct ts_allocator *a = ts_allocator_default();
    TS_ASSERT(cfg != NULL);
    TS_ASSERT(count > 0 && count <= TS_XRING_SHARDS_MAX);
    struct shard_node *n = ts_alloc(a, sizeof(*n));
    if (n == NULL) {
        return -ENOMEM;
    }
    memset(n, 0, sizeof(*n));
    *n = (struct shard_node){
        .alloc = a,
        .log = cfg->log,
        .n = count,
        .pin = cfg->pin,
        .stop_ns =
            (uint64_t)(cfg->stop_ms != 0 ? cfg->stop_ms : TS_SHARD_NODE_STOP_MS_DEFAULT) * 1000000u,
        .init_cb = cfg->init_cb,
        .stop_cb = cfg->stop_cb,
        .msg_cb = cfg->msg_cb,
        .fini_cb = cfg->fini_cb,
        .data = cfg->data};
    n->shards = ts_alloc(a, count * sizeof(struct shard));
    struct xring_mesh_config mc = {.shards = count, .slots = cfg->xring_slots, .alloc = a};
    int rc = n->shards == NULL ? -ENOMEM : xring_mesh_create(&mc, &n->mesh);
    if (rc < 0) {
        node_free(n);
        return rc;
    }
    for (uint32_t i = 0; i < count; i++) {
        n->shards[i] = (struct shard){.node = n, .id = i, .signal_fd = -1};
        shard_timer_init(&n->shards[i].stop_timer);
    }
    *out = n;
    return 0;
}

/* Creates the threads; when one cannot be created, the gates stop waiting for it and the
 * rest. Returns 0 or the -errno of pthread_create. */
static int threads_start(struct shard_node *n)
{
    TS_ASSERT(n->shards != NULL);
    for (uint32_t i = 0; i < n->n; i++) {
        struct shard *s = &n->shards[i];
        int rc = pthread_create(&s->thread, NULL, shard_main, s);
        if (rc != 0) {
            err_record(&n->setup_err, -rc);
            uint32_t missing = n->n - i;
            gate_shrink(&n->g_loops, missing);
            gate_shrink(&n->g_ready, missing);
            gate_shrink(&n->g_left, missing);
            return -rc;
        }
        s->thread_started = true;
    }
    TS_DASSERT(n->shards[n->n - 1].thread_started);
    return 0;
}

int shard_node_start(const struct shard_node_config *cfg, struct shard_node **out)
{
    TS_ASSERT(cfg != NULL);
    TS_ASSERT(out != NULL);
    uint32_t count = cfg->shards != 0 ? cfg->shards : shards_default();
    if (count > TS_XRING_SHARDS_MAX || cfg->stop_ms > TS_SHARD_NODE_STOP_MS_MAX) {
        return TS_EINVAL;
    }
    struct shard_node *n;
    int rc = node_alloc(cfg, count, &n);
    if (rc < 0) {
        return rc;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    TS_ASSERT(pthread_sigmask(SIG_BLOCK, &set, &n->old_mask) == 0);
    gate_init(&n->g_loops, count);
    gate_init(&n->g_ready, count + 1);
    gate_init(&n->g_left, count);
    (void)threads_start(n);
    gate_wait(&n->g_ready);
    rc = atomic_load(&n->setup_err);
    rc = rc != 0 ? rc : atomic_load(&n->init_err);
    if (rc != 0) {
        (void)shard_node_wait(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* Consumes SIGTERM/SIGINT still pending on this thread, so restoring the mask does not
 * deliver them (the node they asked to stop is gone). */
static void signals_restore(struct shard_node *n)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    struct timespec zero = {0, 0};
    for (uint32_t i = 0; i < NODE_SIGNALS_PER_READ_MAX; i++) {
        if (sigtimedwait(&set, NULL, &zero) < 0) {
            break;
        }
    }
    TS_ASSERT(pthread_sigmask(SIG_SETMASK, &n->old_mask, NULL) == 0);
    TS_DASSERT(n != NULL);
}

int shard_node_wait(struct shard_node *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->shards != NULL);
    for (uint32_t i = 0; i < n->n; i++) {
        if (n->shards[i].thread_started) {
            TS_ASSERT(pthread_join(n->shards[i].thread, NULL) == 0);
        }
    }
    gate_fini(&n->g_loops);
    gate_fini(&n->g_ready);
    gate_fini(&n->g_left);
    signals_restore(n);
    int rc = atomic_load(&n->run_err);
    rc = rc != 0 ? rc : atomic_load(&n->stop_err);
    node_free(n);
    return rc;
}
