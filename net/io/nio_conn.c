/*
 * net/io: one connection's life — receive and frame reassembly, sending with
 * back-pressure, outbound connects with back-off, teardown (see nio.h, nio_int.h).
 */
#define _GNU_SOURCE
#include "net/io/nio_int.h"

#include "core/util/assert.h"
#include "core/util/encoding.h"
#include "core/util/err.h"
#include "net/proto/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NIO_IN_BYTES_MIN 4096u

static void conn_maybe_finish(struct nio_conn *c);
static void recv_arm(struct nio_conn *c);
static void park_release(struct nio_conn *c);

/* ---- Addresses ------------------------------------------------------------------- */

int nio_addr_parse(const char *addr_port, struct sockaddr_storage *ss, socklen_t *len)
{
    TS_ASSERT(addr_port != NULL);
    TS_ASSERT(ss != NULL && len != NULL);
    char host[64];
    const char *colon = strrchr(addr_port, ':');
    if (colon == NULL || colon == addr_port || colon[1] == '\0') {
        return TS_EINVAL;
    }
    const char *h = addr_port;
    size_t hlen = (size_t)(colon - addr_port);
    if (h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']') {
            return TS_EINVAL;
        }
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        return TS_EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (end == NULL || *end != '\0' || port > 65535) {
        return TS_EINVAL;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    return TS_EINVAL;
}

/* ---- Slots and lists ------------------------------------------------------------- */

struct nio_conn *nio_conn_alloc(struct nio *n)
{
    TS_ASSERT(n != NULL);
    if (n->free_head == NIO_NIL) {
        return NULL;
    }
    struct nio_conn *c = &n->conns[n->free_head];
    TS_ASSERT(c->state == NIO_CONN_FREE);
    TS_ASSERT(c->ops == 0 && c->fd < 0);
    n->free_head = c->next_free;
    /* Keep what outlives an incarnation: identity, generation, the flush-list link and
     * the (empty) buffers' memory. */
    struct nio_conn keep = *c;
    *c = (struct nio_conn){.n = n,
                           .index = keep.index,
                           .gen = keep.gen,
                           .fd = -1,
                           .on_flush_list = keep.on_flush_list,
                           .flush_next = keep.flush_next,
                           .in = keep.in,
                           .pk = keep.pk,
                           .fly = keep.fly,
                           .q = keep.q,
                           .next_free = NIO_NIL,
                           .idle_prev = NIO_NIL,
                           .idle_next = NIO_NIL,
                           .peer_next = NIO_NIL,
                           .park_head = NIO_NIL,
                           .park_tail = NIO_NIL};
    c->in.len = c->in.off = c->fly.len = c->fly.off = c->q.len = c->q.off = 0;
    c->pk.len = c->pk.off = 0;
    n->stats.conns_open++;
    return c;
}

static void buf_free(struct nio *n, struct nio_buf *b)
{
    TS_DASSERT(b->len <= b->cap);
    ts_free(n->alloc, b->p, b->cap);
    *b = (struct nio_buf){0};
}

/* Makes room for `want` bytes in b (a buffer with no send in flight on it). */
static int buf_reserve(struct nio *n, struct nio_buf *b, uint64_t want, uint64_t limit)
{
    TS_DASSERT(want <= limit);
    if (want <= b->cap) {
        return 0;
    }
    uint64_t cap = b->cap > 0 ? b->cap : NIO_IN_BYTES_MIN;
    while (cap < want) {
        cap *= 2;
    }
    cap = cap > limit ? limit : cap;
    TS_ASSERT(cap <= UINT32_MAX);
    uint8_t *p = b->p == NULL ? ts_alloc(n->alloc, (size_t)cap)
                              : ts_realloc(n->alloc, b->p, b->cap, (size_t)cap);
    if (p == NULL) {
        return TS_ENOMEM;
    }
    b->p = p;
    b->cap = (uint32_t)cap;
    return 0;
}

static void buf_trim(struct nio *n, struct nio_buf *b)
{
    if (b->len == 0 && b->cap > TS_NIO_BUF_KEEP_BYTES) {
        buf_free(n, b);
    }
}

void nio_conn_release(struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(c->n != NULL);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    buf_free(c->n, &c->in);
    buf_free(c->n, &c->pk);
    buf_free(c->n, &c->fly);
    buf_free(c->n, &c->q);
}

void nio_flush_list_add(struct nio *n, struct nio_conn *c)
{
    TS_DASSERT(c->n == n);
    if (c->on_flush_list) {
        return;
    }
    c->on_flush_list = true;
    c->flush_next = n->flush_head;
    n->flush_head = c->index;
}

static void idle_push(struct nio *n, struct nio_conn *c)
{
    TS_DASSERT(!c->in_idle_list);
    TS_DASSERT(!c->outbound);
    c->in_idle_list = true;
    c->idle_next = NIO_NIL;
    c->idle_prev = n->idle_tail;
    if (n->idle_tail != NIO_NIL) {
        n->conns[n->idle_tail].idle_next = c->index;
    } else {
        n->idle_head = c->index;
    }
    n->idle_tail = c->index;
}

void nio_idle_remove(struct nio *n, struct nio_conn *c)
{
    if (!c->in_idle_list) {
        return;
    }
    if (c->idle_prev != NIO_NIL) {
        n->conns[c->idle_prev].idle_next = c->idle_next;
    } else {
        n->idle_head = c->idle_next;
    }
    if (c->idle_next != NIO_NIL) {
        n->conns[c->idle_next].idle_prev = c->idle_prev;
    } else {
        n->idle_tail = c->idle_prev;
    }
    c->in_idle_list = false;
    c->idle_prev = c->idle_next = NIO_NIL;
}

/* Marks activity: an inbound connection moves to the young end of the idle list. */
static void conn_touch(struct nio *n, struct nio_conn *c)
{
    c->last_active_ns = n->now_ns;
    if (c->in_idle_list && n->idle_tail != c->index) {
        nio_idle_remove(n, c);
        idle_push(n, c);
    }
}

static void peer_unlink(struct nio *n, struct nio_conn *c)
{
    TS_DASSERT(c->outbound);
    uint32_t *link = &n->peer_head;
    for (uint32_t steps = 0; *link != NIO_NIL; steps++) {
        TS_ASSERT(steps < n->cfg.conns_max);
        if (*link == c->index) {
            *link = c->peer_next;
            c->peer_next = NIO_NIL;
            return;
        }
        link = &n->conns[*link].peer_next;
    }
    TS_ASSERT(!"outbound connection missing from the peer list");
}

static void conn_free(struct nio_conn *c)
{
    struct nio *n = c->n;
    TS_ASSERT(c->ops == 0);
    TS_ASSERT(c->fd < 0);
    if (c->outbound) {
        peer_unlink(n, c);
    }
    buf_trim(n, &c->in);
    buf_trim(n, &c->pk);
    buf_trim(n, &c->fly);
    buf_trim(n, &c->q);
    c->state = NIO_CONN_FREE;
    c->gen++; /* stale ids stop resolving */
    c->data = NULL;
    c->next_free = n->free_head;
    n->free_head = c->index;
    TS_ASSERT(n->stats.conns_open > 0);
    n->stats.conns_open--;
}

static void op_started(struct nio_conn *c)
{
    c->ops++;
    c->n->stats.ops_inflight++;
}

static void op_done(struct nio_conn *c)
{
    TS_ASSERT(c->ops > 0);
    TS_ASSERT(c->n->stats.ops_inflight > 0);
    c->ops--;
    c->n->stats.ops_inflight--;
}

static uint64_t conn_ud(const struct nio_conn *c, enum nio_op op)
{
    return nio_ud_pack(c->n, op, c->index, c->gen);
}

/* ---- Callbacks ------------------------------------------------------------------- */

static void cb_close(struct nio_conn *c, int reason)
{
    struct nio *n = c->n;
    if (n->cb.on_close != NULL) {
        n->in_callback++;
        n->cb.on_close(c, reason, n->cb.data);
        n->in_callback--;
    }
}

static void cb_simple(struct nio_conn *c, void (*fn)(struct nio_conn *, void *))
{
    struct nio *n = c->n;
    if (fn != NULL) {
        n->in_callback++;
        fn(c, n->cb.data);
        n->in_callback--;
    }
}

/* ---- Teardown -------------------------------------------------------------------- */

static const char *reason_text(int reason)
{
    return reason == 0 ? "closed by the peer" : ts_strerror(reason);
}

/* Cancels whatever the kernel holds for the connection and shuts the socket down
 * (which also ends a recv or send the cancel finds already running). */
static void conn_cancel_all(struct nio_conn *c)
{
    struct nio *n = c->n;
    if (c->recv_armed) {
        (void)nio_cancel_submit(n, conn_ud(c, NIO_OP_RECV));
    }
    if (c->send_inflight) {
        (void)nio_cancel_submit(n, conn_ud(c, NIO_OP_SEND));
    }
    if (c->connect_inflight) {
        (void)nio_cancel_submit(n, conn_ud(c, NIO_OP_CONNECT));
    }
    if (c->fd >= 0) {
        (void)shutdown(c->fd, SHUT_RDWR);
    }
}

void nio_conn_teardown(struct nio_conn *c, int reason, bool final)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(c->state != NIO_CONN_FREE);
    TS_ASSERT(final || c->outbound); /* an inbound connection is always closed for good */
    struct nio *n = c->n;
    bool notify = final && !c->closed;
    if (final) {
        c->final = true;
        c->closed = true;
    }
    if (c->state == NIO_CONN_DRAINING || c->state == NIO_CONN_BACKOFF) {
        if (notify) {
            cb_close(c, reason);
        }
        if (c->state == NIO_CONN_BACKOFF && final) {
            conn_free(c);
        }
        return;
    }
    bool was_up = c->state == NIO_CONN_OPEN;
    nio_idle_remove(n, c);
    c->state = NIO_CONN_DRAINING;
    c->want_recv = c->want_cancel = false;
    n->stats.closed++;
    if (c->outbound && !was_up) {
        n->stats.connect_failures++;
    }
    int lvl = reason == TS_EPROTO || reason == TS_ETOOBIG ? TS_LOG_LEVEL_WARN : TS_LOG_LEVEL_DEBUG;
    NIO_LOG_(n, lvl, "nio: %s connection %u closed: %s", c->outbound ? "outbound" : "inbound",
             c->index, reason_text(reason));
    conn_cancel_all(c);
    c->q.len = 0; /* queued output is dropped; the send in flight keeps its buffer */
    if (!c->delivering) {
        park_release(c); /* undelivered input is dropped: the ring gets its buffers now */
    }
    if (notify) {
        cb_close(c, reason);
    } else if (c->outbound && was_up && c->up && n->cb.on_peer_down != NULL) {
        n->in_callback++;
        n->cb.on_peer_down(c, reason, n->cb.data);
        n->in_callback--;
    }
    c->up = false;
    conn_maybe_finish(c);
}

/* Back-off before reconnect attempt number `failures` (1-based): uniform in [d/2, d],
 * d = min(min * 2^(failures-1), max). */
static uint64_t backoff_ns(struct nio *n, uint32_t failures)
{
    TS_ASSERT(failures > 0);
    uint64_t d = n->cfg.reconnect_min_ns;
    for (uint32_t i = 1; i < failures && d < n->cfg.reconnect_max_ns; i++) {
        d *= 2;
    }
    d = d > n->cfg.reconnect_max_ns ? n->cfg.reconnect_max_ns : d;
    uint64_t half = d / 2;
    uint64_t wait = half + ts_rand_below(&n->rand, d - half + 1);
    TS_DASSERT(wait >= half && wait <= d);
    return wait > 0 ? wait : 1;
}

/* The kernel has let go of a DRAINING connection: close it, then free the slot or wait
 * for the reconnect. */
static void conn_maybe_finish(struct nio_conn *c)
{
    if (c->state != NIO_CONN_DRAINING || c->ops > 0 || c->delivering) {
        return;
    }
    struct nio *n = c->n;
    TS_ASSERT(!c->recv_armed && !c->send_inflight && !c->connect_inflight);
    park_release(c);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->in.len = c->fly.len = c->fly.off = c->q.len = 0;
    c->pk.len = c->pk.off = 0;
    c->in_need = 0;
    c->paused = false;
    if (c->final || n->destroyed) {
        conn_free(c);
        return;
    }
    c->failures++;
    c->state = NIO_CONN_BACKOFF;
    c->deadline_ns = n->now_ns + backoff_ns(n, c->failures);
    buf_trim(n, &c->in);
    buf_trim(n, &c->pk);
    buf_trim(n, &c->fly);
    buf_trim(n, &c->q);
}

/* ---- Receiving and reassembly ---------------------------------------------------- */

static void recv_arm(struct nio_conn *c)
{
    struct nio *n = c->n;
    TS_ASSERT(c->state == NIO_CONN_OPEN);
    TS_ASSERT(!c->recv_armed);
    struct io_uring_sqe *sqe = nio_sqe_get(n);
    if (sqe == NULL) {
        c->want_recv = true;
        nio_flush_list_add(n, c);
        return;
    }
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = n->tag;
    io_uring_sqe_set_data64(sqe, conn_ud(c, NIO_OP_RECV));
    c->recv_armed = true;
    c->want_recv = false;
    op_started(c);
    n->stats.recv_arms++;
}

static void recv_cancel(struct nio_conn *c)
{
    TS_DASSERT(c->paused);
    if (!c->recv_armed) {
        return;
    }
    c->want_cancel = !nio_cancel_submit(c->n, conn_ud(c, NIO_OP_RECV));
    if (c->want_cancel) {
        nio_flush_list_add(c->n, c);
    }
}

static void bad_frame(struct nio_conn *c, int64_t err)
{
    struct nio *n = c->n;
    TS_ASSERT(err < 0);
    n->stats.closed_proto++;
    NIO_WARN(n, "nio: connection %u sent a bad frame header (%s): %s", c->index,
             ts_errname((int)err),
             err == TS_ETOOBIG ? "longer than frame_bytes_max" : "malformed length");
    nio_conn_teardown(c, (int)err, !c->outbound || n->destroyed);
}

/* Runs on_frame; false when the connection closed under it. */
static bool deliver(struct nio_conn *c, const uint8_t *frame, uint32_t len, uint32_t gen)
{
    struct nio *n = c->n;
    TS_DASSERT(len >= 24 && len % PROTO_FRAME_ALIGN == 0);
    n->stats.frames_in++;
    n->in_callback++;
    n->cb.on_frame(c, frame, len, n->cb.data);
    n->in_callback--;
    TS_ASSERT(c->gen == gen); /* the slot cannot be freed while delivering */
    return c->state == NIO_CONN_OPEN;
}

/* Appends to the input buffer the bytes of a frame that did not arrive whole. Returns
 * the bytes consumed, or -1 when the connection was closed. */
static int64_t input_partial(struct nio_conn *c, const uint8_t *p, uint32_t len)
{
    struct nio *n = c->n;
    if (c->in_need == 0) {
        int rc = buf_reserve(n, &c->in, PROTO_FRAME_HEADER_BYTES, n->cfg.frame_bytes_max);
        if (rc != 0) {
            nio_conn_teardown(c, rc, !c->outbound);
            return -1;
        }
        uint32_t take = PROTO_FRAME_HEADER_BYTES - c->in.len;
        take = take < len ? take : len;
        memcpy(c->in.p + c->in.len, p, take);
        c->in.len += take;
        if (c->in.len < PROTO_FRAME_HEADER_BYTES) {
            return take;
        }
        int64_t sz = proto_frame_size(c->in.p, c->in.len, n->cfg.frame_bytes_max);
        if (sz < 0) {
            bad_frame(c, sz);
            return -1;
        }
        c->in_need = ts_load_le32(c->in.p) + PROTO_FRAME_HEADER_BYTES;
        rc = buf_reserve(n, &c->in, c->in_need, n->cfg.frame_bytes_max);
        if (rc != 0) {
            nio_conn_teardown(c, rc, !c->outbound);
            return -1;
        }
        return take;
    }
    TS_ASSERT(c->in.len < c->in_need && c->in_need <= c->in.cap);
    uint32_t take = c->in_need - c->in.len;
    take = take < len ? take : len;
    memcpy(c->in.p + c->in.len, p, take);
    c->in.len += take;
    return take;
}

/* Delivers every whole frame in [p, p + len) and keeps a partial one in the input
 * buffer. Stops early when the connection closes or back-pressure pauses it (then the
 * rest stays in the provided buffer, parked). Returns the bytes consumed. */
static uint32_t conn_input(struct nio_conn *c, const uint8_t *p, uint32_t len)
{
    struct nio *n = c->n;
    uint32_t gen = c->gen;
    uint32_t left = len;
    TS_ASSERT(!c->delivering);
    c->delivering = true;
    while (left > 0 && c->state == NIO_CONN_OPEN && !c->paused) {
        if (c->in.len == 0) {
            int64_t sz = proto_frame_size(p, left, n->cfg.frame_bytes_max);
            if (sz < 0) {
                bad_frame(c, sz);
                break;
            }
            if (sz > 0) {
                p += sz;
                left -= (uint32_t)sz;
                if (!deliver(c, p - sz, (uint32_t)sz, gen)) {
                    break;
                }
                continue;
            }
        }
        int64_t took = input_partial(c, p, left);
        if (took < 0) {
            break;
        }
        p += took;
        left -= (uint32_t)took;
        if (c->in_need != 0 && c->in.len == c->in_need) {
            uint32_t size = c->in_need;
            c->in.len = 0;
            c->in_need = 0;
            if (!deliver(c, c->in.p, size, gen)) {
                break;
            }
            buf_trim(n, &c->in);
        }
    }
    c->delivering = false;
    TS_DASSERT(left <= len);
    uint32_t used = len - left;
    conn_maybe_finish(c);
    return used;
}

/* ---- Parked input: received while reading is paused ------------------------------ */

static uint8_t *buf_addr(struct nio *n, uint32_t bid)
{
    TS_DASSERT(bid < n->cfg.recv_bufs);
    return n->bufs + (size_t)bid * n->cfg.recv_buf_bytes;
}

static bool has_parked(const struct nio_conn *c)
{
    TS_DASSERT(c->pk.off <= c->pk.len);
    return c->pk.off < c->pk.len || c->park_head != NIO_NIL;
}

/* Keeps a provided buffer (not given back to the ring) until reading resumes: only when
 * the connection's copy of parked bytes is full (see park_input). */
static void park(struct nio_conn *c, uint32_t bid, uint32_t len, uint32_t off)
{
    struct nio *n = c->n;
    TS_ASSERT(bid < n->cfg.recv_bufs);
    TS_ASSERT(off < len);
    n->park_next[bid] = NIO_NIL;
    n->park_len[bid] = len;
    if (c->park_tail == NIO_NIL) {
        c->park_head = bid;
        c->park_off = off;
    } else {
        n->park_next[c->park_tail] = bid;
    }
    c->park_tail = bid;
    n->stats.park_bufs++;
    n->stats.bufs_held++;
}

/* Sets aside bytes [off, len) of provided buffer bid, received while the connection is
 * paused (CQEs already on their way when its recv was cancelled). They are copied into
 * the connection's pk, at most park_bytes_max bytes, so that the buffer goes back to the
 * ring at once and a paused connection cannot starve the others of receive buffers.
 * Past that (or without memory) the buffer itself is held, which the ring bounds.
 * Returns true when the buffer is held. */
static bool park_input(struct nio_conn *c, uint32_t bid, uint32_t len, uint32_t off)
{
    struct nio *n = c->n;
    struct nio_buf *pk = &c->pk;
    TS_ASSERT(off < len);
    uint32_t add = len - off;
    if (c->park_head == NIO_NIL && (uint64_t)pk->len - pk->off + add <= n->park_bytes_max) {
        if (pk->off > 0) {
            memmove(pk->p, pk->p + pk->off, pk->len - pk->off);
            pk->len -= pk->off;
            pk->off = 0;
        }
        if (buf_reserve(n, pk, (uint64_t)pk->len + add, n->park_bytes_max) == 0) {
            memcpy(pk->p + pk->len, buf_addr(n, bid) + off, add);
            pk->len += add;
            n->stats.parked_bytes += add;
            TS_DASSERT(pk->len <= n->park_bytes_max);
            return false;
        }
    }
    park(c, bid, len, off);
    return true;
}

static void park_pop(struct nio_conn *c)
{
    struct nio *n = c->n;
    uint32_t bid = c->park_head;
    TS_ASSERT(bid != NIO_NIL);
    c->park_head = n->park_next[bid];
    if (c->park_head == NIO_NIL) {
        c->park_tail = NIO_NIL;
    }
    c->park_off = 0;
    TS_ASSERT(n->stats.bufs_held > 0);
    n->stats.bufs_held--;
    nio_buf_give_back(n, (uint16_t)bid);
}

static void park_release(struct nio_conn *c)
{
    for (uint32_t steps = 0; c->park_head != NIO_NIL; steps++) {
        TS_ASSERT(steps < c->n->cfg.recv_bufs);
        park_pop(c);
    }
    c->pk.len = c->pk.off = 0;
    TS_DASSERT(c->park_tail == NIO_NIL);
}

/* on_frame closed the connection while parked input was delivered (teardown leaves
 * parked input alone during a delivery): nothing reads it any more, so the ring gets its
 * buffers back now rather than when the slot drains. */
static void unpark_closed(struct nio_conn *c)
{
    TS_ASSERT(c->state != NIO_CONN_OPEN);
    TS_ASSERT(!c->delivering);
    if (c->state == NIO_CONN_DRAINING) {
        park_release(c);
    }
}

/* Delivers parked bytes (the copy first, then held buffers) until they run out, the
 * connection closes or pauses again. */
static void unpark(struct nio_conn *c)
{
    struct nio *n = c->n;
    struct nio_buf *pk = &c->pk;
    if (pk->off < pk->len && c->state == NIO_CONN_OPEN && !c->paused) {
        uint32_t used = conn_input(c, pk->p + pk->off, pk->len - pk->off);
        if (c->state != NIO_CONN_OPEN) {
            unpark_closed(c);
            return;
        }
        pk->off += used;
        if (pk->off < pk->len) {
            return; /* paused again */
        }
        pk->len = pk->off = 0;
        buf_trim(n, pk);
    }
    for (uint32_t steps = 0; c->park_head != NIO_NIL; steps++) {
        TS_ASSERT(steps < n->cfg.recv_bufs);
        if (c->state != NIO_CONN_OPEN || c->paused) {
            return;
        }
        uint32_t bid = c->park_head;
        uint32_t len = n->park_len[bid] - c->park_off;
        uint32_t used = conn_input(c, buf_addr(n, bid) + c->park_off, len);
        if (c->state != NIO_CONN_OPEN) {
            unpark_closed(c);
            return;
        }
        if (used < len) {
            c->park_off += used;
            return;
        }
        park_pop(c);
    }
}

static void on_recv(struct nio *n, struct nio_conn *c, const struct io_uring_cqe *cqe)
{
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    int res = cqe->res;
    if (!more) {
        c->recv_armed = false;
        op_done(c);
    }
    if ((cqe->flags & IORING_CQE_F_BUFFER) != 0) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        bool keep = false;
        if (res > 0 && c->state == NIO_CONN_OPEN) {
            TS_ASSERT((uint32_t)res <= n->cfg.recv_buf_bytes);
            n->stats.bytes_in += (uint64_t)res;
            conn_touch(n, c);
            uint32_t used = 0;
            if (!c->paused && !has_parked(c)) {
                used = conn_input(c, buf_addr(n, bid), (uint32_t)res);
            }
            if (c->state == NIO_CONN_OPEN && used < (uint32_t)res) {
                keep = park_input(c, bid, (uint32_t)res, used);
            }
        }
        if (!keep) {
            nio_buf_give_back(n, bid); /* consumed or copied: the kernel may refill it */
        }
    }
    if (c->state != NIO_CONN_OPEN) {
        conn_maybe_finish(c);
        return;
    }
    if (res == 0) {
        nio_conn_teardown(c, 0, !c->outbound);
        return;
    }
    if (res == -ENOBUFS) {
        n->stats.enobufs++;
    } else if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
        nio_conn_teardown(c, res, !c->outbound);
        return;
    }
    if (!more && !c->recv_armed && !c->paused) {
        n->stats.recv_rearms++;
        recv_arm(c);
    }
}

/* ---- Sending and back-pressure --------------------------------------------------- */

size_t nio_conn_out_bytes(const struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    TS_DASSERT(c->fly.off <= c->fly.len);
    return (size_t)(c->fly.len - c->fly.off) + c->q.len;
}

bool nio_conn_paused(const struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    return c->paused;
}

static void send_start(struct nio_conn *c)
{
    struct nio *n = c->n;
    TS_ASSERT(c->state == NIO_CONN_OPEN);
    TS_ASSERT(!c->send_inflight);
    if (c->fly.off == c->fly.len) {
        if (c->q.len == 0) {
            return;
        }
        /* Everything queued since the last send goes in this one (coalescing). */
        struct nio_buf t = c->fly;
        c->fly = c->q;
        c->fly.off = 0;
        c->q = t;
        c->q.len = c->q.off = 0;
    }
    struct io_uring_sqe *sqe = nio_sqe_get(n);
    if (sqe == NULL) {
        nio_flush_list_add(n, c);
        return;
    }
    io_uring_prep_send(sqe, c->fd, c->fly.p + c->fly.off, c->fly.len - c->fly.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, conn_ud(c, NIO_OP_SEND));
    c->send_inflight = true;
    op_started(c);
    n->stats.sends++;
}

static void maybe_resume(struct nio_conn *c)
{
    struct nio *n = c->n;
    if (!c->paused || nio_conn_out_bytes(c) > n->cfg.out_bytes_max / 2) {
        return;
    }
    c->paused = false;
    c->want_cancel = false;
    n->stats.resumes++;
    unpark(c); /* may pause again */
    if (c->state == NIO_CONN_OPEN && !c->paused && !c->recv_armed) {
        recv_arm(c);
    }
}

static void on_send(struct nio *n, struct nio_conn *c, int res)
{
    c->send_inflight = false;
    op_done(c);
    if (c->state != NIO_CONN_OPEN) {
        conn_maybe_finish(c);
        return;
    }
    if (res == -EAGAIN || res == -EINTR) {
        nio_flush_list_add(n, c); /* retried as is in the next flush */
        return;
    }
    if (res <= 0) {
        nio_conn_teardown(c, res < 0 ? res : -EIO, !c->outbound);
        return;
    }
    TS_ASSERT((uint32_t)res <= c->fly.len - c->fly.off);
    c->fly.off += (uint32_t)res;
    n->stats.bytes_out += (uint64_t)res;
    conn_touch(n, c); /* a client reading its answers slowly is not idle */
    if (c->fly.off == c->fly.len) {
        c->fly.off = c->fly.len = 0;
        buf_trim(n, &c->fly);
    }
    maybe_resume(c);
    if (c->fly.len > 0 || c->q.len > 0) {
        nio_flush_list_add(n, c); /* the rest of a short send, or what was queued */
    }
}

int nio_send(struct nio_conn *c, const void *buf, size_t len)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(buf != NULL || len == 0);
    struct nio *n = c->n;
    if (c->closed || c->state == NIO_CONN_DRAINING) {
        return TS_ESHUTDOWN;
    }
    if (c->state != NIO_CONN_OPEN) {
        return TS_EUNAVAIL;
    }
    size_t buffered = nio_conn_out_bytes(c);
    if (len > n->out_hard_bytes - buffered) {
        n->stats.send_full++;
        return TS_EFULL;
    }
    int rc = buf_reserve(n, &c->q, (uint64_t)c->q.len + len, n->out_hard_bytes);
    if (rc != 0) {
        return rc;
    }
    memcpy(c->q.p + c->q.len, buf, len);
    c->q.len += (uint32_t)len;
    buffered += len;
    n->stats.out_bytes_peak =
        buffered > n->stats.out_bytes_peak ? buffered : n->stats.out_bytes_peak;
    nio_flush_list_add(n, c);
    if (!c->paused && buffered > n->cfg.out_bytes_max) {
        c->paused = true;
        n->stats.pauses++;
        recv_cancel(c);
    }
    TS_DASSERT(nio_conn_out_bytes(c) <= n->out_hard_bytes);
    return 0;
}

void nio_conn_flush(struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    if (c->state != NIO_CONN_OPEN) {
        return;
    }
    if (c->want_cancel && c->paused) {
        recv_cancel(c);
    }
    if (c->want_recv && !c->recv_armed && !c->paused) {
        recv_arm(c);
    }
    if (!c->send_inflight) {
        send_start(c);
    }
}

/* ---- Inbound --------------------------------------------------------------------- */

static void socket_tune(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* frames are small */
}

void nio_conn_accepted(struct nio *n, int fd)
{
    TS_ASSERT(fd >= 0);
    TS_ASSERT(!n->destroyed);
    struct nio_conn *c = nio_conn_alloc(n);
    if (c == NULL) {
        n->stats.accept_rejected++;
        NIO_WARN(n, "nio: connection table full (%u slots): accepted socket closed",
                 n->cfg.conns_max);
        close(fd);
        return;
    }
    socket_tune(fd);
    c->fd = fd;
    c->state = NIO_CONN_OPEN;
    c->last_active_ns = n->now_ns;
    idle_push(n, c);
    n->stats.accepted++;
    recv_arm(c);
    cb_simple(c, n->cb.on_open);
}

void nio_conn_on_cqe(struct nio *n, struct nio_conn *c, enum nio_op op,
                     const struct io_uring_cqe *cqe)
{
    TS_ASSERT(c->n == n);
    TS_ASSERT(n->in_callback == 0);
    if (op == NIO_OP_RECV) {
        on_recv(n, c, cqe);
        return;
    }
    if (op == NIO_OP_SEND) {
        on_send(n, c, cqe->res);
        return;
    }
    TS_ASSERT(op == NIO_OP_CONNECT);
    TS_ASSERT(c->connect_inflight);
    c->connect_inflight = false;
    op_done(c);
    if (c->state != NIO_CONN_CONNECTING) {
        conn_maybe_finish(c);
        return;
    }
    if (cqe->res < 0) {
        nio_conn_teardown(c, cqe->res, false);
        return;
    }
    c->state = NIO_CONN_OPEN;
    c->failures = 0;
    c->up = true;
    n->stats.connects++;
    NIO_DEBUG(n, "nio: outbound connection %u up", c->index);
    recv_arm(c);
    cb_simple(c, n->cb.on_peer_up);
}

/* ---- Outbound -------------------------------------------------------------------- */

void nio_conn_connect(struct nio_conn *c)
{
    struct nio *n = c->n;
    TS_ASSERT(c->outbound);
    TS_ASSERT(c->fd < 0 && c->ops == 0);
    int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = fd < 0 ? -errno : -EBUSY;
    struct io_uring_sqe *sqe = fd >= 0 ? nio_sqe_get(n) : NULL;
    c->state = NIO_CONN_CONNECTING;
    c->deadline_ns = n->now_ns + n->cfg.connect_timeout_ns;
    if (sqe == NULL) {
        c->fd = fd;
        nio_conn_teardown(c, err, false); /* straight to back-off */
        return;
    }
    socket_tune(fd);
    c->fd = fd;
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->addr, c->addr_len);
    io_uring_sqe_set_data64(sqe, conn_ud(c, NIO_OP_CONNECT));
    c->connect_inflight = true;
    op_started(c);
}

void nio_conn_tick_peer(struct nio_conn *c)
{
    struct nio *n = c->n;
    TS_ASSERT(c->outbound);
    if (c->state == NIO_CONN_BACKOFF && c->deadline_ns <= n->now_ns && !n->destroyed) {
        nio_conn_connect(c);
    } else if (c->state == NIO_CONN_CONNECTING && c->deadline_ns <= n->now_ns) {
        n->stats.connect_timeouts++;
        nio_conn_teardown(c, TS_ETIMEOUT, false);
    }
}

int nio_connect(struct nio *n, const char *addr_port, struct nio_conn **out)
{
    TS_ASSERT(n != NULL);
    TS_ASSERT(addr_port != NULL && out != NULL);
    if (n->destroyed) {
        return TS_ESHUTDOWN;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = nio_addr_parse(addr_port, &ss, &len);
    if (rc != 0) {
        return rc;
    }
    struct nio_conn *c = nio_conn_alloc(n);
    if (c == NULL) {
        return TS_EFULL;
    }
    c->outbound = true;
    c->addr = ss;
    c->addr_len = len;
    c->peer_next = n->peer_head;
    n->peer_head = c->index;
    nio_conn_connect(c);
    *out = c;
    return 0;
}

/* ---- The user's handle ----------------------------------------------------------- */

void nio_close(struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    TS_ASSERT(c->state != NIO_CONN_FREE);
    if (c->closed) {
        return;
    }
    nio_conn_teardown(c, TS_ESHUTDOWN, true);
}

uint64_t nio_conn_id(const struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    TS_DASSERT(c->state != NIO_CONN_FREE);
    return ((uint64_t)c->gen << 32) | c->index;
}

struct nio_conn *nio_conn_lookup(struct nio *n, uint64_t id)
{
    TS_ASSERT(n != NULL);
    uint32_t index = (uint32_t)id;
    if (index >= n->cfg.conns_max) {
        return NULL;
    }
    struct nio_conn *c = &n->conns[index];
    bool live = c->state != NIO_CONN_FREE && !c->closed && c->gen == (uint32_t)(id >> 32);
    return live ? c : NULL;
}

void nio_conn_set_data(struct nio_conn *c, void *data)
{
    TS_ASSERT(c != NULL);
    c->data = data;
}

void *nio_conn_data(const struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    return c->data;
}

struct nio *nio_conn_nio(const struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    return c->n;
}

bool nio_conn_outbound(const struct nio_conn *c)
{
    TS_ASSERT(c != NULL);
    return c->outbound;
}
