/*
 * Cross-shard rings (see xring.h).
 *
 * Ring (from, to) sits at index from * (N - 1) + (to < from ? to : to - 1). The producer's
 * and the consumer's indices live on separate cache lines, each beside the side's cached
 * copy of the other's index, so a push or a pop touches the shared line only when the
 * cache says the ring looks full (producer) or empty (consumer). Indices are free-running
 * 32-bit counters; the slot is index & mask.
 */
#include "shard/xring.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define CACHE_LINE 64

_Static_assert(TS_XRING_SLOTS_MAX <= (UINT32_C(1) << 31), "free-running u32 indices wrap safely");
_Static_assert(TS_XRING_SLOTS_DEFAULT_LARGE <= TS_XRING_SLOTS_DEFAULT, "large meshes use less");
_Static_assert(TS_XRING_HEAD_PUBLISH_EVERY >= 1, "head is published");

struct xring {
    /* Read-only after creation. */
    _Alignas(CACHE_LINE) struct xring_msg *slots;
    uint32_t mask;
    /* Producer's line. */
    _Alignas(CACHE_LINE) _Atomic uint32_t tail;
    uint32_t head_seen;
    /* Consumer's line. */
    _Alignas(CACHE_LINE) _Atomic uint32_t head;
    uint32_t tail_seen;
};

struct xring_mesh;

/* What the loop's inbound source is given: the mesh and which shard drains. */
struct inbound_ctx {
    struct xring_mesh *m;
    uint32_t self;
};

/* Per shard: its consumer side (inbox) and its producer side (outbox). */
struct xring_port {
    _Alignas(CACHE_LINE) _Atomic uint32_t sleeping;
    _Atomic int ring_fd; /* -1: not attached, producers do not wake it */
    /* Owner thread only, below. */
    _Alignas(CACHE_LINE) struct shard_loop *loop;
    void (*handler)(void *ctx, const struct xring_msg *msg);
    void *ctx;
    struct inbound_ctx in_ctx;
    bool closed;
    _Atomic uint64_t sent;
    _Atomic uint64_t full;
    _Atomic uint64_t wakes;
    _Atomic uint64_t received;
};

struct xring_mesh {
    const struct ts_allocator *alloc;
    uint32_t shards;
    uint32_t slots;
    struct xring *rings;       /* shards * (shards - 1) */
    struct xring_port *ports;  /* shards */
    struct xring_msg *storage; /* every ring's slots, in ring order */
};

static struct xring *ring_at(const struct xring_mesh *m, uint32_t from, uint32_t to)
{
    TS_DASSERT(from < m->shards && to < m->shards);
    TS_ASSERT(from != to);
    uint32_t col = to < from ? to : to - 1;
    return &m->rings[(size_t)from * (m->shards - 1) + col];
}

/* Relaxed increment of a counter only its owner thread writes. */
static void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + n, memory_order_relaxed);
}

static size_t rings_count(uint32_t shards)
{
    TS_ASSERT(shards >= 1);
    return (size_t)shards * (shards - 1);
}

/* ---- Mesh ---------------------------------------------------------------------------- */

static void mesh_free(struct xring_mesh *m)
{
    TS_ASSERT(m != NULL);
    TS_ASSERT(m->alloc != NULL);
    size_t rings = rings_count(m->shards);
    ts_free(m->alloc, m->storage, rings * m->slots * sizeof(struct xring_msg));
    ts_free(m->alloc, m->rings, rings * sizeof(struct xring) + (rings == 0 ? 1 : 0));
    ts_free(m->alloc, m->ports, m->shards * sizeof(struct xring_port));
    ts_free(m->alloc, m, sizeof(*m));
}

static void mesh_init(struct xring_mesh *m)
{
    size_t rings = rings_count(m->shards);
    TS_ASSERT(m->rings != NULL && m->ports != NULL);
    TS_ASSERT(rings == 0 || m->storage != NULL);
    for (size_t i = 0; i < rings; i++) {
        struct xring *r = &m->rings[i];
        memset(r, 0, sizeof(*r));
        r->slots = &m->storage[i * m->slots];
        r->mask = m->slots - 1;
        atomic_init(&r->tail, 0);
        atomic_init(&r->head, 0);
    }
    for (uint32_t s = 0; s < m->shards; s++) {
        struct xring_port *p = &m->ports[s];
        memset(p, 0, sizeof(*p));
        atomic_init(&p->sleeping, 0);
        atomic_init(&p->ring_fd, -1);
    }
}

int xring_mesh_create(const struct xring_mesh_config *cfg, struct xring_mesh **out)
{
    TS_ASSERT(cfg != NULL);
    TS_ASSERT(out != NULL);
    const struct ts_allocator *a = cfg->alloc != NULL ? cfg->alloc : ts_allocator_default();
    uint32_t slots = cfg->slots;
    if (slots == 0) {
        slots = cfg->shards > 16 ? TS_XRING_SLOTS_DEFAULT_LARGE : TS_XRING_SLOTS_DEFAULT;
    }
    if (cfg->shards == 0 || cfg->shards > TS_XRING_SHARDS_MAX || slots < TS_XRING_SLOTS_MIN ||
        slots > TS_XRING_SLOTS_MAX || (slots & (slots - 1)) != 0) {
        return -EINVAL;
    }
    struct xring_mesh *m = ts_alloc(a, sizeof(*m));
    if (m == NULL) {
        return -ENOMEM;
    }
    size_t rings = rings_count(cfg->shards);
    *m = (struct xring_mesh){.alloc = a, .shards = cfg->shards, .slots = slots};
    m->rings = ts_alloc(a, rings * sizeof(struct xring) + (rings == 0 ? 1 : 0));
    m->ports = ts_alloc(a, cfg->shards * sizeof(struct xring_port));
    if (rings > 0) {
        m->storage = ts_alloc(a, rings * slots * sizeof(struct xring_msg));
    }
    if (m->rings == NULL || m->ports == NULL || (rings > 0 && m->storage == NULL)) {
        mesh_free(m);
        return -ENOMEM;
    }
    mesh_init(m);
    *out = m;
    return 0;
}

void xring_mesh_destroy(struct xring_mesh *m)
{
    TS_ASSERT(m != NULL);
    for (uint32_t s = 0; s < m->shards; s++) {
        TS_ASSERT(atomic_load(&m->ports[s].ring_fd) < 0); /* every shard detached */
    }
    mesh_free(m);
}

uint32_t xring_mesh_shards(const struct xring_mesh *m)
{
    TS_ASSERT(m != NULL);
    TS_DASSERT(m->shards <= TS_XRING_SHARDS_MAX);
    return m->shards;
}

uint32_t xring_mesh_slots(const struct xring_mesh *m)
{
    TS_ASSERT(m != NULL);
    TS_DASSERT((m->slots & (m->slots - 1)) == 0);
    return m->slots;
}

/* ---- Consumer -------------------------------------------------------------------------- */

/* Pops what ring r holds now (at most one ring's capacity). */
static uint32_t ring_drain(struct xring_port *p, struct xring *r)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint32_t n = tail - head;
    TS_ASSERT(n <= r->mask + 1);
    for (uint32_t i = 0; i < n; i++) {
        p->handler(p->ctx, &r->slots[(head + i) & r->mask]);
        if ((i + 1) % TS_XRING_HEAD_PUBLISH_EVERY == 0) {
            atomic_store_explicit(&r->head, head + i + 1, memory_order_release);
        }
    }
    atomic_store_explicit(&r->head, tail, memory_order_release);
    r->tail_seen = tail;
    TS_DASSERT(atomic_load_explicit(&r->head, memory_order_relaxed) == tail);
    return n;
}

uint32_t xring_drain(struct xring_mesh *m, uint32_t self)
{
    TS_ASSERT(m != NULL && self < m->shards);
    struct xring_port *p = &m->ports[self];
    TS_ASSERT(p->handler != NULL);
    uint32_t total = 0;
    for (uint32_t from = 0; from < m->shards; from++) {
        if (from != self) {
            total += ring_drain(p, ring_at(m, from, self));
        }
    }
    counter_add(&p->received, total);
    return total;
}

bool xring_inbox_empty(const struct xring_mesh *m, uint32_t self)
{
    TS_ASSERT(m != NULL);
    TS_ASSERT(self < m->shards);
    for (uint32_t from = 0; from < m->shards; from++) {
        if (from == self) {
            continue;
        }
        struct xring *r = ring_at(m, from, self);
        if (atomic_load_explicit(&r->tail, memory_order_acquire) !=
            atomic_load_explicit(&r->head, memory_order_acquire)) {
            return false;
        }
    }
    return true;
}

static uint32_t inbound_drain(void *ctx)
{
    struct inbound_ctx *c = ctx;
    TS_DASSERT(c != NULL);
    return xring_drain(c->m, c->self);
}

/* Announces sleep, then looks once more (the consumer's half of the fence pairing). */
static bool inbound_sleep_begin(void *ctx)
{
    struct inbound_ctx *c = ctx;
    TS_ASSERT(c != NULL && c->self < c->m->shards);
    struct xring_port *p = &c->m->ports[c->self];
    TS_DASSERT(p->loop != NULL);
    atomic_store_explicit(&p->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (!xring_inbox_empty(c->m, c->self)) {
        atomic_store_explicit(&p->sleeping, 0, memory_order_relaxed);
        return false;
    }
    return true;
}

static void inbound_sleep_end(void *ctx)
{
    struct inbound_ctx *c = ctx;
    TS_DASSERT(c != NULL);
    atomic_store_explicit(&c->m->ports[c->self].sleeping, 0, memory_order_relaxed);
}

int xring_attach(struct xring_mesh *m, uint32_t self, struct shard_loop *l,
                 void (*handler)(void *ctx, const struct xring_msg *msg), void *ctx)
{
    TS_ASSERT(m != NULL && l != NULL && handler != NULL);
    TS_ASSERT(self < m->shards);
    struct xring_port *p = &m->ports[self];
    if (p->loop != NULL) {
        return TS_EINVAL;
    }
    struct inbound_ctx *ic = &p->in_ctx;
    *ic = (struct inbound_ctx){.m = m, .self = self};
    struct shard_loop_inbound in = {.drain = inbound_drain,
                                    .sleep_begin = inbound_sleep_begin,
                                    .sleep_end = inbound_sleep_end,
                                    .ctx = ic};
    int rc = shard_loop_set_inbound(l, &in);
    if (rc != 0) {
        return rc;
    }
    p->loop = l;
    p->handler = handler;
    p->ctx = ctx;
    atomic_store_explicit(&p->ring_fd, shard_loop_ring_fd(l), memory_order_release);
    return 0;
}

void xring_detach(struct xring_mesh *m, uint32_t self)
{
    TS_ASSERT(m != NULL && self < m->shards);
    struct xring_port *p = &m->ports[self];
    TS_ASSERT(p->loop != NULL);
    atomic_store_explicit(&p->ring_fd, -1, memory_order_release);
    p->closed = true;
    TS_DASSERT(atomic_load_explicit(&p->ring_fd, memory_order_relaxed) < 0);
}

/* ---- Producer -------------------------------------------------------------------------- */

/* Posts a wake-up from `from`'s ring to `to`'s. The SQE is submitted with the producer's
 * next submit; its own completion is skipped unless it fails. */
static void wake_post(struct xring_mesh *m, uint32_t from, uint32_t to)
{
    struct xring_port *src = &m->ports[from];
    TS_DASSERT(src->loop != NULL);
    int fd = atomic_load_explicit(&m->ports[to].ring_fd, memory_order_acquire);
    if (fd < 0) {
        return; /* not attached yet: it drains when its loop starts */
    }
    struct io_uring_sqe *sqe = shard_loop_sqe(src->loop);
    TS_ASSERT(sqe != NULL); /* a ring that refuses every submit is wedged */
    io_uring_prep_msg_ring(sqe, fd, 0, shard_udata(SHARD_TAG_LOOP, SHARD_LOOP_EV_WAKE), 0);
    io_uring_sqe_set_data64(sqe, shard_udata(SHARD_TAG_LOOP, SHARD_LOOP_EV_NOP));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    counter_add(&src->wakes, 1);
}

int xring_send(struct xring_mesh *m, uint32_t from, uint32_t to, const struct xring_msg *msg)
{
    TS_ASSERT(m != NULL && msg != NULL);
    TS_ASSERT(from < m->shards && to < m->shards && from != to);
    struct xring_port *src = &m->ports[from];
    TS_ASSERT(src->loop != NULL); /* the sender is attached */
    if (src->closed) {
        return TS_ESHUTDOWN;
    }
    struct xring *r = ring_at(m, from, to);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (tail - r->head_seen > r->mask) {
        r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
        if (tail - r->head_seen > r->mask) {
            counter_add(&src->full, 1);
            return TS_EFULL;
        }
    }
    struct xring_msg *slot = &r->slots[tail & r->mask];
    *slot = *msg;
    slot->from = from;
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    counter_add(&src->sent, 1);
    /* The producer's half of the fence pairing (xring.h). */
    atomic_thread_fence(memory_order_seq_cst);
    struct xring_port *dst = &m->ports[to];
    if (atomic_load_explicit(&dst->sleeping, memory_order_relaxed) != 0 &&
        atomic_exchange_explicit(&dst->sleeping, 0, memory_order_relaxed) != 0) {
        wake_post(m, from, to);
    }
    return 0;
}

void xring_close_sender(struct xring_mesh *m, uint32_t from)
{
    TS_ASSERT(m != NULL);
    TS_ASSERT(from < m->shards);
    m->ports[from].closed = true;
}

void xring_stats(const struct xring_mesh *m, uint32_t shard, struct xring_stats *out)
{
    TS_ASSERT(m != NULL && out != NULL);
    TS_ASSERT(shard < m->shards);
    const struct xring_port *p = &m->ports[shard];
    out->sent = atomic_load_explicit(&p->sent, memory_order_relaxed);
    out->full = atomic_load_explicit(&p->full, memory_order_relaxed);
    out->wakes = atomic_load_explicit(&p->wakes, memory_order_relaxed);
    out->received = atomic_load_explicit(&p->received, memory_order_relaxed);
}
