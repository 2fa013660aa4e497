/*
 * net/io internals shared by nio.c (the transport: creation, listeners, CQE dispatch,
 * time, destruction) and nio_conn.c (a connection's life: receive and reassembly,
 * sending and back-pressure, outbound connects, teardown). See nio.h for the contract.
 *
 * A connection slot moves through
 *
 *     FREE -> OPEN (accepted) or CONNECTING (outbound) -> OPEN -> DRAINING -> FREE
 *                                                   outbound:  DRAINING -> BACKOFF ->
 *                                                              CONNECTING ...
 *
 * DRAINING means the socket is shut down and its operations cancelled, but the kernel
 * still holds some (ops > 0): the fd, the output buffer in flight and the slot's
 * generation stay until the last CQE, so a CQE never meets a reused slot (its
 * generation is asserted). Only then is the fd closed and the slot freed (or, for an
 * outbound link not closed for good, put in BACKOFF until its reconnect).
 *
 * user_data value (bits 0..55): op in bits 0..3, slot in 4..23, generation in 24..55.
 */
#ifndef TS_NET_IO_NIO_INT_H
#define TS_NET_IO_NIO_INT_H

#include "net/io/nio.h"

#include "core/util/rand.h"

#include <liburing.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define NIO_NIL UINT32_MAX
#define NIO_OP_BITS 4
#define NIO_SLOT_BITS 20
#define NIO_GEN_BITS 32

_Static_assert(NIO_OP_BITS + NIO_SLOT_BITS + NIO_GEN_BITS == NIO_TAG_SHIFT,
               "op, slot and generation fill the value bits exactly");
_Static_assert(TS_NIO_CONNS_MAX <= (1u << NIO_SLOT_BITS), "a slot index fits its field");
_Static_assert(TS_NIO_LISTENERS_MAX <= (1u << NIO_SLOT_BITS), "a listener index fits");

enum nio_op {
    NIO_OP_ACCEPT = 1,
    NIO_OP_RECV = 2,
    NIO_OP_SEND = 3,
    NIO_OP_CONNECT = 4,
    NIO_OP_CANCEL = 5,
};

enum nio_state {
    NIO_CONN_FREE = 0,
    NIO_CONN_CONNECTING,
    NIO_CONN_OPEN,
    NIO_CONN_DRAINING,
    NIO_CONN_BACKOFF,
};

/* A byte buffer owned by a connection: bytes [off, len) of [0, cap). */
struct nio_buf {
    uint8_t *p;
    uint32_t cap;
    uint32_t len;
    uint32_t off;
};

struct nio_conn {
    struct nio *n;
    void *data;
    uint32_t index;
    uint32_t gen;
    uint8_t state;
    bool outbound;
    bool final;      /* closed for good: the slot is freed once drained */
    bool closed;     /* on_close has run: the handle is dead for the user */
    bool up;         /* outbound: on_peer_up ran for the current socket */
    bool recv_armed; /* a multishot recv is in the kernel */
    bool send_inflight;
    bool connect_inflight;
    bool paused;      /* back-pressure: reading stopped */
    bool want_recv;   /* arm the recv in the next flush (no SQE was free) */
    bool want_cancel; /* cancel the recv in the next flush (no SQE was free) */
    bool delivering;  /* inside on_frame: the input buffer must not be freed */
    bool on_flush_list;
    bool in_idle_list;
    int fd;
    uint32_t ops;       /* operations the kernel holds for this slot */
    uint32_t failures;  /* outbound: consecutive failed connects */
    uint32_t next_free; /* free list */
    uint32_t flush_next;
    uint32_t idle_prev;
    uint32_t idle_next;
    uint32_t peer_next; /* outbound list */
    uint32_t in_need;   /* size of the frame being reassembled (0: header pending) */
    uint32_t park_head; /* provided buffers held while paused, oldest first (after pk) */
    uint32_t park_tail;
    uint32_t park_off; /* bytes of the head buffer already consumed */
    uint64_t last_active_ns;
    uint64_t deadline_ns;         /* CONNECTING: timeout; BACKOFF: next attempt */
    struct nio_buf in;            /* reassembly of a frame split over reads */
    struct nio_buf pk;            /* received while paused: [off, len) undelivered */
    struct nio_buf fly;           /* the send in flight: [off, len) not yet sent */
    struct nio_buf q;             /* queued since that send started */
    struct sockaddr_storage addr; /* outbound: the peer's address */
    socklen_t addr_len;
};

struct nio_listener {
    int fd; /* -1: unused */
    uint32_t gen;
    uint16_t port;
    bool armed;
    bool closing;
    bool want_arm;
};

struct nio {
    struct io_uring *ring;
    const struct ts_allocator *alloc;
    struct nio_config cfg;
    struct nio_callbacks cb;
    uint8_t tag;
    bool destroyed;
    bool br_registered;
    bool listeners_want_arm;
    uint32_t in_callback;
    uint64_t out_hard_bytes; /* out_bytes_max + frame_bytes_max */
    uint64_t park_bytes_max; /* a connection's pk: frame_bytes_max + recv_buf_bytes */
    pid_t owner_tid;         /* the ring's thread: the only caller (SINGLE_ISSUER) */
    uint64_t now_ns;
    struct ts_rand rand;
    struct nio_stats stats;
    struct nio_conn *conns;
    uint32_t free_head;
    uint32_t flush_head;
    uint32_t idle_head;
    uint32_t idle_tail;
    uint32_t peer_head;
    struct nio_listener listeners[TS_NIO_LISTENERS_MAX];
    struct io_uring_buf_ring *br;
    void *br_mem; /* allocation holding br (page-aligned inside) */
    size_t br_mem_bytes;
    uint8_t *bufs;
    uint32_t *park_next; /* per provided buffer: the next parked one of its connection */
    uint32_t *park_len;  /* per provided buffer: bytes received into it */
};

#define NIO_LOG_(n, lvl, ...)                                                                      \
    do {                                                                                           \
        if ((n)->cfg.log != NULL) {                                                                \
            TS_LOG_AT_((n)->cfg.log, (lvl), __VA_ARGS__);                                          \
        }                                                                                          \
    } while (0)
#define NIO_WARN(n, ...) NIO_LOG_((n), TS_LOG_LEVEL_WARN, __VA_ARGS__)
#define NIO_INFO(n, ...) NIO_LOG_((n), TS_LOG_LEVEL_INFO, __VA_ARGS__)
#define NIO_DEBUG(n, ...) NIO_LOG_((n), TS_LOG_LEVEL_DEBUG, __VA_ARGS__)

/* nio.c */
uint64_t nio_ud_pack(const struct nio *n, enum nio_op op, uint32_t slot, uint32_t gen);
struct io_uring_sqe *nio_sqe_get(struct nio *n);
/* Submits a cancel of the operation with that user_data. False when no SQE was free. */
bool nio_cancel_submit(struct nio *n, uint64_t user_data);
void nio_buf_give_back(struct nio *n, uint16_t bid);

/* nio_conn.c */
struct nio_conn *nio_conn_alloc(struct nio *n);
void nio_conn_accepted(struct nio *n, int fd);
void nio_conn_on_cqe(struct nio *n, struct nio_conn *c, enum nio_op op,
                     const struct io_uring_cqe *cqe);
/* Closes a connection: for good (final) or, outbound only, until the next reconnect. */
void nio_conn_teardown(struct nio_conn *c, int reason, bool final);
void nio_conn_flush(struct nio_conn *c);
void nio_conn_tick_peer(struct nio_conn *c);
void nio_conn_connect(struct nio_conn *c);
void nio_conn_release(struct nio_conn *c);
void nio_idle_remove(struct nio *n, struct nio_conn *c);
void nio_flush_list_add(struct nio *n, struct nio_conn *c);
int nio_addr_parse(const char *addr_port, struct sockaddr_storage *ss, socklen_t *len);

#endif
