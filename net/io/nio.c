/*
 * net/io: creation, the provided-buffer ring, listeners, CQE dispatch, time and
 * destruction (see nio.h for the contract and nio_int.h for the slot life cycle).
 */
#define _GNU_SOURCE
#include "net/io/nio_int.h"

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/limits.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NIO_PAGE_BYTES 4096u

/* ---- user_data and SQEs ---------------------------------------------------------- */

uint64_t nio_ud_pack(const struct nio *n, enum nio_op op, uint32_t slot, uint32_t gen)
{
    TS_DASSERT(slot < (1u << NIO_SLOT_BITS));
    TS_DASSERT((uint32_t)op < (1u << NIO_OP_BITS));
    uint64_t v = (uint64_t)op | ((uint64_t)slot << NIO_OP_BITS) |
                 ((uint64_t)gen << (NIO_OP_BITS + NIO_SLOT_BITS));
    TS_DASSERT(v <= NIO_VALUE_MASK);
    return ((uint64_t)n->tag << NIO_TAG_SHIFT) | v;
}

struct io_uring_sqe *nio_sqe_get(struct nio *n)
{
    TS_DASSERT(n->ring != NULL);
    struct io_uring_sqe *sqe = io_uring_get_sqe(n->ring);
    if (sqe == NULL) {
        n->stats.sqe_full++;
        (void)io_uring_submit(n->ring); /* a failure shows as NULL below */
        sqe = io_uring_get_sqe(n->ring);
        n->stats.sqe_unavailable += sqe == NULL;
    }
    return sqe;
}

bool nio_cancel_submit(struct nio *n, uint64_t user_data)
{
    TS_DASSERT((user_data >> NIO_TAG_SHIFT) == n->tag);
    struct io_uring_sqe *sqe = nio_sqe_get(n);
    if (sqe == NULL) {
        return false;
    }
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, nio_ud_pack(n, NIO_OP_CANCEL, 0, 0));
    n->stats.ops_inflight++;
    return true;
}

/* ---- The provided-buffer ring ---------------------------------------------------- */

void nio_buf_give_back(struct nio *n, uint16_t bid)
{
    TS_ASSERT(bid < n->cfg.recv_bufs);
    TS_DASSERT(n->br != NULL);
    uint8_t *addr = n->bufs + (size_t)bid * n->cfg.recv_buf_bytes;
    io_uring_buf_ring_add(n->br, addr, n->cfg.recv_buf_bytes, bid,
                          io_uring_buf_ring_mask(n->cfg.recv_bufs), 0);
    io_uring_buf_ring_advance(n->br, 1);
}

/* liburing 2.3 has no io_uring_setup_buf_ring: the ring memory (page-aligned) is ours,
 * registered with io_uring_register_buf_ring, then filled with every buffer. */
static int buf_ring_setup(struct nio *n)
{
    uint32_t count = n->cfg.recv_bufs;
    TS_ASSERT(count > 0 && (count & (count - 1)) == 0);
    n->bufs = ts_alloc(n->alloc, (size_t)count * n->cfg.recv_buf_bytes);
    n->park_next = ts_alloc(n->alloc, (size_t)count * sizeof(uint32_t));
    n->park_len = ts_alloc(n->alloc, (size_t)count * sizeof(uint32_t));
    if (n->park_next == NULL || n->park_len == NULL) {
        return TS_ENOMEM;
    }
    n->br_mem_bytes = (size_t)count * sizeof(struct io_uring_buf) + NIO_PAGE_BYTES;
    n->br_mem = ts_alloc(n->alloc, n->br_mem_bytes);
    if (n->bufs == NULL || n->br_mem == NULL) {
        return TS_ENOMEM;
    }
    uintptr_t at = ((uintptr_t)n->br_mem + NIO_PAGE_BYTES - 1) & ~(uintptr_t)(NIO_PAGE_BYTES - 1);
    n->br = (struct io_uring_buf_ring *)at;
    memset(n->br, 0, (size_t)count * sizeof(struct io_uring_buf));
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)at;
    reg.ring_entries = count;
    reg.bgid = n->tag;
    int rc = io_uring_register_buf_ring(n->ring, &reg, 0);
    if (rc < 0) {
        return rc;
    }
    n->br_registered = true;
    io_uring_buf_ring_init(n->br);
    int mask = io_uring_buf_ring_mask(count);
    for (uint32_t i = 0; i < count; i++) {
        io_uring_buf_ring_add(n->br, n->bufs + (size_t)i * n->cfg.recv_buf_bytes,
                              n->cfg.recv_buf_bytes, (unsigned short)i, mask, (int)i);
    }
    io_uring_buf_ring_advance(n->br, (int)count);
    return 0;
}

/* ---- Creation -------------------------------------------------------------------- */

static int config_resolve(const struct nio_config *in, struct nio_config *cfg)
{
    TS_ASSERT(in != NULL);
    TS_ASSERT(cfg != NULL);
    *cfg = *in;
    cfg->conns_max = cfg->conns_max != 0 ? cfg->conns_max : TS_NIO_CONNS_DEFAULT;
    cfg->frame_bytes_max = cfg->frame_bytes_max != 0 ? cfg->frame_bytes_max : TS_FRAME_BYTES_MAX;
    cfg->out_bytes_max = cfg->out_bytes_max != 0 ? cfg->out_bytes_max : TS_NIO_OUT_BYTES_DEFAULT;
    cfg->recv_bufs = cfg->recv_bufs != 0 ? cfg->recv_bufs : TS_NIO_RECV_BUFS_DEFAULT;
    cfg->recv_buf_bytes =
        cfg->recv_buf_bytes != 0 ? cfg->recv_buf_bytes : TS_NIO_RECV_BUF_BYTES_DEFAULT;
    if (cfg->reconnect_min_ns == 0) {
        cfg->reconnect_min_ns = TS_NIO_RECONNECT_MIN_NS_DEFAULT;
    }
    if (cfg->reconnect_max_ns == 0) {
        cfg->reconnect_max_ns = TS_NIO_RECONNECT_MAX_NS_DEFAULT;
    }
    if (cfg->connect_timeout_ns == 0) {
        cfg->connect_timeout_ns = TS_NIO_CONNECT_TIMEOUT_NS_DEFAULT;
    }
    bool ok = cfg->conns_max <= TS_NIO_CONNS_MAX && cfg->frame_bytes_max >= 24 &&
              cfg->frame_bytes_max <= TS_FRAME_BYTES_MAX &&
              cfg->recv_bufs <= TS_NIO_RECV_BUFS_MAX &&
              (cfg->recv_bufs & (cfg->recv_bufs - 1)) == 0 && cfg->recv_buf_bytes >= 64 &&
              cfg->reconnect_min_ns <= cfg->reconnect_max_ns;
    return ok ? 0 : TS_EINVAL;
}

static void nio_release_memory(struct nio *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->alloc != NULL);
    if (n->conns != NULL) {
        for (uint32_t i = 0; i < n->cfg.conns_max; i++) {
            nio_conn_release(&n->conns[i]);
        }
    }
    ts_free(n->alloc, n->conns, (size_t)n->cfg.conns_max * sizeof(*n->conns));
    ts_free(n->alloc, n->bufs, (size_t)n->cfg.recv_bufs * n->cfg.recv_buf_bytes);
    ts_free(n->alloc, n->park_next, (size_t)n->cfg.recv_bufs * sizeof(uint32_t));
    ts_free(n->alloc, n->park_len, (size_t)n->cfg.recv_bufs * sizeof(uint32_t));
    ts_free(n->alloc, n->br_mem, n->br_mem_bytes);
    ts_free(n->alloc, n, sizeof(*n));
}

int nio_create(struct io_uring *ring, uint8_t tag, const struct nio_config *cfg,
               const struct nio_callbacks *cb, const struct ts_allocator *alloc, struct nio **out)
{
    TS_ASSERT(ring != NULL);
    TS_ASSERT(cb != NULL && cb->on_frame != NULL);
    TS_ASSERT(alloc != NULL);
    TS_ASSERT(out != NULL);
    struct nio_config c;
    int rc = config_resolve(cfg, &c);
    if (rc != 0) {
        return rc;
    }
    struct nio *n = ts_alloc(alloc, sizeof(*n));
    if (n == NULL) {
        return TS_ENOMEM;
    }
    *n = (struct nio){.ring = ring, .alloc = alloc, .cfg = c, .cb = *cb, .tag = tag};
    n->out_hard_bytes = (uint64_t)c.out_bytes_max + c.frame_bytes_max;
    n->park_bytes_max = (uint64_t)c.frame_bytes_max + c.recv_buf_bytes;
    n->owner_tid = gettid();
    n->free_head = n->flush_head = n->idle_head = n->idle_tail = n->peer_head = NIO_NIL;
    ts_rand_seed(&n->rand, c.seed);
    for (uint32_t i = 0; i < TS_NIO_LISTENERS_MAX; i++) {
        n->listeners[i] = (struct nio_listener){.fd = -1};
    }
    n->conns = ts_alloc(alloc, (size_t)c.conns_max * sizeof(*n->conns));
    if (n->conns == NULL) {
        n->cfg.conns_max = 0;
        nio_release_memory(n);
        return TS_ENOMEM;
    }
    for (uint32_t i = c.conns_max; i-- > 0;) {
        n->conns[i] = (struct nio_conn){.n = n, .index = i, .fd = -1, .next_free = n->free_head};
        n->free_head = i;
    }
    rc = buf_ring_setup(n);
    if (rc != 0) {
        if (n->br_registered) {
            (void)io_uring_unregister_buf_ring(ring, tag);
        }
        nio_release_memory(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* ---- Listeners ------------------------------------------------------------------- */

static void listener_arm(struct nio *n, uint32_t i)
{
    struct nio_listener *l = &n->listeners[i];
    TS_ASSERT(l->fd >= 0);
    TS_ASSERT(!l->armed);
    struct io_uring_sqe *sqe = nio_sqe_get(n);
    if (sqe == NULL) {
        l->want_arm = true;
        n->listeners_want_arm = true;
        return;
    }
    /* Blocking sockets: io_uring polls them (see nio.h). */
    io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, nio_ud_pack(n, NIO_OP_ACCEPT, i, l->gen));
    l->armed = true;
    l->want_arm = false;
    n->stats.ops_inflight++;
}

static void listener_finish(struct nio *n, uint32_t i)
{
    struct nio_listener *l = &n->listeners[i];
    TS_ASSERT(l->closing);
    TS_ASSERT(!l->armed);
    close(l->fd);
    *l = (struct nio_listener){.fd = -1, .gen = l->gen + 1};
}

static int listen_socket(const char *addr_port, int *fd_out, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = nio_addr_parse(addr_port, &ss, &len);
    if (rc != 0) {
        return rc;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

int nio_listen(struct nio *n, const char *addr_port, uint32_t *id)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(addr_port != NULL && id != NULL);
    if (n->destroyed) {
        return TS_ESHUTDOWN;
    }
    uint32_t i = 0;
    while (i < TS_NIO_LISTENERS_MAX && n->listeners[i].fd >= 0) {
        i++;
    }
    if (i == TS_NIO_LISTENERS_MAX) {
        return TS_EFULL;
    }
    struct nio_listener *l = &n->listeners[i];
    int rc = listen_socket(addr_port, &l->fd, &l->port);
    if (rc != 0) {
        return rc;
    }
    TS_ASSERT(l->fd >= 0);
    listener_arm(n, i);
    NIO_INFO(n, "nio: listening on %s (port %u)", addr_port, (unsigned)l->port);
    *id = i;
    return 0;
}

int nio_listen_port(const struct nio *n, uint32_t id, uint16_t *port)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(port != NULL);
    if (id >= TS_NIO_LISTENERS_MAX || n->listeners[id].fd < 0 || n->listeners[id].closing) {
        return TS_EINVAL;
    }
    *port = n->listeners[id].port;
    return 0;
}

int nio_unlisten(struct nio *n, uint32_t id)
{
    TS_ASSERT(n != NULL);
    if (id >= TS_NIO_LISTENERS_MAX || n->listeners[id].fd < 0 || n->listeners[id].closing) {
        return TS_EINVAL;
    }
    struct nio_listener *l = &n->listeners[id];
    l->closing = true;
    l->want_arm = false;
    if (!l->armed) {
        listener_finish(n, id);
        return 0;
    }
    /* The cancel ends the multishot accept; shutdown wakes it should the cancel find it
     * running. The socket is closed on the accept's last CQE. */
    (void)nio_cancel_submit(n, nio_ud_pack(n, NIO_OP_ACCEPT, id, l->gen));
    (void)shutdown(l->fd, SHUT_RDWR);
    TS_DASSERT(l->closing);
    return 0;
}

static void on_accept(struct nio *n, uint32_t i, uint32_t gen, const struct io_uring_cqe *cqe)
{
    TS_ASSERT(i < TS_NIO_LISTENERS_MAX);
    struct nio_listener *l = &n->listeners[i];
    TS_ASSERT(l->fd >= 0 && l->gen == gen && l->armed);
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (cqe->res >= 0) {
        if (l->closing || n->destroyed) {
            close(cqe->res);
        } else {
            nio_conn_accepted(n, cqe->res);
        }
    } else if (cqe->res != -ECANCELED && !l->closing) {
        NIO_WARN(n, "nio: accept on port %u failed: %s", (unsigned)l->port, ts_strerror(cqe->res));
    }
    if (more) {
        return;
    }
    l->armed = false;
    TS_ASSERT(n->stats.ops_inflight > 0);
    n->stats.ops_inflight--;
    if (l->closing) {
        listener_finish(n, i);
    } else if (cqe->res >= 0) {
        listener_arm(n, i);
    } else {
        /* An error (EMFILE...): try again next iteration rather than spin here. */
        l->want_arm = true;
        n->listeners_want_arm = true;
    }
}

/* ---- The owner's loop ------------------------------------------------------------ */

void nio_complete(struct nio *n, struct io_uring_cqe *cqe)
{
    TS_ASSERT(n != NULL && cqe != NULL);
    TS_DASSERT(n->owner_tid == gettid());
    uint64_t ud = cqe->user_data;
    TS_ASSERT((ud >> NIO_TAG_SHIFT) == n->tag);
    enum nio_op op = (enum nio_op)(ud & ((1u << NIO_OP_BITS) - 1));
    uint32_t slot = (uint32_t)((ud >> NIO_OP_BITS) & ((1u << NIO_SLOT_BITS) - 1));
    uint32_t gen = (uint32_t)((ud >> (NIO_OP_BITS + NIO_SLOT_BITS)) & UINT32_MAX);
    switch (op) {
    case NIO_OP_CANCEL:
        TS_ASSERT(n->stats.ops_inflight > 0);
        n->stats.ops_inflight--; /* 0, -ENOENT or -EALREADY: the target's CQE tells */
        return;
    case NIO_OP_ACCEPT:
        on_accept(n, slot, gen, cqe);
        return;
    case NIO_OP_RECV:
    case NIO_OP_SEND:
    case NIO_OP_CONNECT: {
        TS_ASSERT(slot < n->cfg.conns_max);
        struct nio_conn *c = &n->conns[slot];
        TS_ASSERT(c->gen == gen);
        TS_ASSERT(c->state != NIO_CONN_FREE && c->ops > 0);
        nio_conn_on_cqe(n, c, op, cqe);
        return;
    }
    }
    TS_ASSERT(!"unknown nio op in user_data");
}

void nio_flush(struct nio *n)
{
    TS_ASSERT(n != NULL);
    TS_DASSERT(n->owner_tid == gettid());
    TS_ASSERT(n->in_callback == 0);
    if (n->listeners_want_arm && !n->destroyed) {
        n->listeners_want_arm = false;
        for (uint32_t i = 0; i < TS_NIO_LISTENERS_MAX; i++) {
            struct nio_listener *l = &n->listeners[i];
            if (l->fd >= 0 && l->want_arm && !l->armed && !l->closing) {
                listener_arm(n, i);
            }
        }
    }
    /* Take the list: connections added while it is processed wait for the next flush,
     * so the loop is bounded by the table size. */
    uint32_t i = n->flush_head;
    n->flush_head = NIO_NIL;
    uint32_t steps = 0;
    while (i != NIO_NIL) {
        TS_ASSERT(steps++ < n->cfg.conns_max);
        struct nio_conn *c = &n->conns[i];
        i = c->flush_next;
        c->on_flush_list = false;
        c->flush_next = NIO_NIL;
        nio_conn_flush(c);
    }
}

/* net/io's clock reads 0 until the first tick: deadlines and activity stamped before it
 * (a connect issued right after nio_create) count from that tick, not from the epoch of
 * the owner's clock (which would time them out at once). */
static void clock_start(struct nio *n, uint64_t now_ns)
{
    TS_ASSERT(n->now_ns == 0);
    TS_ASSERT(now_ns > 0);
    uint32_t steps = 0;
    for (uint32_t i = n->peer_head; i != NIO_NIL; i = n->conns[i].peer_next) {
        TS_ASSERT(steps++ < n->cfg.conns_max);
        n->conns[i].deadline_ns += now_ns;
    }
    steps = 0;
    for (uint32_t i = n->idle_head; i != NIO_NIL; i = n->conns[i].idle_next) {
        TS_ASSERT(steps++ < n->cfg.conns_max);
        n->conns[i].last_active_ns += now_ns;
    }
}

void nio_tick(struct nio *n, uint64_t now_ns)
{
    TS_ASSERT(n != NULL);
    TS_DASSERT(n->owner_tid == gettid());
    TS_ASSERT(n->in_callback == 0);
    if (n->now_ns == 0 && now_ns > 0) {
        clock_start(n, now_ns);
    }
    n->now_ns = now_ns > n->now_ns ? now_ns : n->now_ns;
    if (n->cfg.idle_ns > 0) {
        for (uint32_t steps = 0; n->idle_head != NIO_NIL; steps++) {
            TS_ASSERT(steps < n->cfg.conns_max);
            struct nio_conn *c = &n->conns[n->idle_head];
            TS_DASSERT(c->in_idle_list);
            if (c->last_active_ns + n->cfg.idle_ns > n->now_ns) {
                break;
            }
            n->stats.closed_idle++;
            nio_conn_teardown(c, TS_ETIMEOUT, true); /* leaves the idle list */
        }
    }
    uint32_t steps = 0;
    for (uint32_t i = n->peer_head; i != NIO_NIL;) {
        TS_ASSERT(steps++ < n->cfg.conns_max);
        struct nio_conn *c = &n->conns[i];
        i = c->peer_next; /* read first: the tick may free c */
        nio_conn_tick_peer(c);
    }
}

uint64_t nio_next_deadline_ns(const struct nio *n)
{
    TS_ASSERT(n != NULL);
    uint64_t best = 0;
    if (n->cfg.idle_ns > 0 && n->idle_head != NIO_NIL) {
        best = n->conns[n->idle_head].last_active_ns + n->cfg.idle_ns;
    }
    uint32_t steps = 0;
    for (uint32_t i = n->peer_head; i != NIO_NIL; i = n->conns[i].peer_next) {
        TS_ASSERT(steps++ < n->cfg.conns_max);
        const struct nio_conn *c = &n->conns[i];
        bool timed = c->state == NIO_CONN_BACKOFF || c->state == NIO_CONN_CONNECTING;
        if (timed && (best == 0 || c->deadline_ns < best)) {
            best = c->deadline_ns;
        }
    }
    return best; /* every deadline is > 0: waits are at least 1 ns */
}

void nio_stats(const struct nio *n, struct nio_stats *out)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(out != NULL);
    *out = n->stats;
}

/* ---- Destruction ----------------------------------------------------------------- */

void nio_destroy(struct nio *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->in_callback == 0); /* never from a callback */
    if (n->destroyed) {
        return;
    }
    n->destroyed = true;
    for (uint32_t i = 0; i < TS_NIO_LISTENERS_MAX; i++) {
        if (n->listeners[i].fd >= 0 && !n->listeners[i].closing) {
            (void)nio_unlisten(n, i);
        }
    }
    for (uint32_t i = 0; i < n->cfg.conns_max; i++) {
        struct nio_conn *c = &n->conns[i];
        if (c->state != NIO_CONN_FREE && !c->closed) {
            nio_conn_teardown(c, TS_ESHUTDOWN, true);
        }
    }
    (void)io_uring_submit(n->ring); /* the cancels reach the kernel without the owner */
    TS_DASSERT(n->destroyed);
}

bool nio_idle(const struct nio *n)
{
    TS_ASSERT(n != NULL);
    TS_DASSERT(n->stats.ops_inflight < UINT32_MAX);
    return n->stats.ops_inflight == 0;
}

void nio_free(struct nio *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->destroyed);
    TS_ASSERT(nio_idle(n)); /* the kernel may still use our buffers otherwise */
    if (n->br_registered) {
        (void)io_uring_unregister_buf_ring(n->ring, n->tag);
    }
    nio_release_memory(n);
}

void nio_free_after_ring_exit(struct nio *n)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(n->destroyed);
    for (uint32_t i = 0; i < TS_NIO_LISTENERS_MAX; i++) {
        if (n->listeners[i].fd >= 0) {
            close(n->listeners[i].fd);
        }
    }
    nio_release_memory(n); /* closes the sockets still open */
}
