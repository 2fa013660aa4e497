/*
 * net/io: the io_uring transport — listeners, connections, framing, back-pressure,
 * idle timeouts and reconnecting peer links (DESIGN.md "Wire protocol", STYLE R17, R18).
 *
 * Ownership of the ring. A shard thread owns one io_uring (SINGLE_ISSUER|DEFER_TASKRUN)
 * and drives it; net/io never creates the ring and never waits on it. A struct nio
 * borrows the ring and a tag byte. Every SQE it submits carries
 *
 *     user_data = (uint64_t)tag << NIO_TAG_SHIFT | value        (value < 2^56)
 *
 * where value packs an op (4 bits), a slot index (20 bits) and the slot's generation
 * (32 bits), never a pointer (R18). The owner's loop, once per iteration:
 *   1. passes every CQE whose user_data >> NIO_TAG_SHIFT == tag to nio_complete();
 *   2. calls nio_tick(now) with its monotonic clock (net/io reads no clock: the time
 *      it knows is the last tick's; timeouts started before the first tick, such as a
 *      connect made right after nio_create, count from that first tick);
 *   3. calls nio_flush() to start the sends queued by callbacks;
 *   4. sleeps at most until nio_next_deadline_ns() (0: no deadline of net/io's).
 * net/io takes SQEs with io_uring_get_sqe(), and when the queue is full it calls
 * io_uring_submit() and tries again; it never calls a wait function. The owner submits
 * the rest with its own submit-and-wait. All calls come from the ring's thread.
 *
 * Frames. A frame is a u32 little-endian length L and L bytes, 4 + L a multiple of 8
 * and at least 24 (net/proto's proto_frame_size()). Bytes are reassembled per
 * connection: a frame split over any number of reads, many frames in one read, frames
 * up to cfg.frame_bytes_max (at most TS_FRAME_BYTES_MAX). Whole frames go to
 * cb.on_frame, length prefix included, as a view valid during the callback only (it
 * points into a provided receive buffer or the connection's input buffer and is not
 * necessarily 8-byte aligned in memory). A malformed length prefix (TS_EPROTO) or one
 * above frame_bytes_max (TS_ETOOBIG) closes that connection only; the reason is logged
 * and passed to cb.on_close. net/io does not look inside a frame: the caller verifies.
 *
 * Receiving. One provided-buffer ring per nio (recv_bufs buffers of recv_buf_bytes,
 * buffer group id = tag, so several nios can share one ring), registered by hand with
 * io_uring_register_buf_ring. Each open connection has one multishot recv armed
 * (IOSQE_BUFFER_SELECT). A buffer is given back to the ring as soon as its bytes have
 * been delivered or copied into the connection's input buffer. The recv is re-armed
 * whenever a CQE arrives without IORING_CQE_F_MORE, including -ENOBUFS (counted).
 *
 * Sending and back-pressure. nio_send() copies into the connection's output queue; at
 * most one send is in flight per connection (two sends on one socket may complete out
 * of order). nio_flush() sends everything queued since the last send in one send
 * (coalescing); short sends continue with the rest, -EAGAIN/-EINTR retry. When the
 * connection's buffered output (in flight + queued) exceeds cfg.out_bytes_max, net/io
 * stops reading from it (its recv is cancelled and not re-armed) until the output
 * drains below half of that: a client that does not read its answers cannot grow the
 * server's memory, and its requests stay in the kernel's socket buffers. No frame is
 * delivered while a connection is paused: bytes whose CQEs were already on their way
 * when the recv was cancelled are copied into the connection's own parking buffer (at
 * most frame_bytes_max + recv_buf_bytes; counted in parked_bytes) and their provided
 * buffers go back to the ring at once, so a paused connection cannot starve the others
 * of receive buffers. Only past that copy limit (or without memory) is a provided buffer
 * itself held until reading resumes (counted in park_bufs; bounded by the ring). nio_send()
 * returns TS_EFULL, queueing nothing, when the buffered output would exceed
 * out_bytes_max + frame_bytes_max (the hard limit: the answers to requests already read
 * when reading stopped still fit, one maximal frame on top of the soft limit).
 *
 * Listeners use SO_REUSEPORT (and SO_REUSEADDR) so that every shard binds its own
 * listener to the same address and port: the kernel spreads incoming connections over
 * the shards, so no connection is ever handed from one thread to another and accept
 * never takes a lock shared between shards. Accept is one multishot accept per
 * listener, re-armed when a CQE lacks F_MORE. Sockets are blocking (io_uring polls
 * them; an O_NONBLOCK socket would make sends return -EAGAIN).
 *
 * Connections live in a fixed table of cfg.conns_max slots (inbound and outbound
 * together), allocated at nio_create. When the table is full an accepted socket is
 * closed at once (counted in accept_rejected) and nio_connect() returns TS_EFULL.
 *
 * Idle timeouts. An inbound connection that has received nothing and whose sends have
 * made no progress for cfg.idle_ns is closed with TS_ETIMEOUT (0: no idle timeout).
 * Inbound connections sit in a list ordered by last activity, so a tick costs in
 * proportion to the connections that expire, not to all connections. Outbound links are
 * exempt: their owner (Raft) sends heartbeats more often than any server's idle
 * timeout.
 *
 * Outbound peer links. nio_connect() returns a connection that stays until nio_close()
 * or nio_destroy(). It connects at once; when a connect fails, times out
 * (cfg.connect_timeout_ns) or the link later drops, it retries after a jittered
 * exponential back-off: the n-th consecutive failure waits a uniformly random time in
 * [d/2, d] with d = min(reconnect_min_ns * 2^n, reconnect_max_ns), drawn from a
 * struct ts_rand seeded with cfg.seed (reproducible). cb.on_peer_up runs after each
 * successful connect and cb.on_peer_down when an up link goes down; an attempt that fails
 * or times out before the link is up runs no callback (it is counted in connect_failures
 * and connect_timeouts and logged at debug level). Output queued when
 * a link drops is discarded, and nio_send() on a link that is not up returns
 * TS_EUNAVAIL: the caller (Raft) resends what matters.
 *
 * Close reasons passed to on_close / on_peer_down: 0 (the peer closed), TS_EPROTO,
 * TS_ETOOBIG (bad frame), TS_ETIMEOUT (idle or connect timeout), TS_ESHUTDOWN
 * (nio_close or nio_destroy), or a -errno from a recv, send or connect.
 *
 * Destruction (the contract with the owner). nio_destroy() may be called at any time
 * outside a callback, with operations in flight: it closes every listener and
 * connection (on_close runs for each connection, with TS_ESHUTDOWN, inside
 * nio_destroy; no callback runs afterwards), submits an IORING_OP_ASYNC_CANCEL for
 * every operation in flight and shuts the sockets down. The kernel may still write into
 * the provided buffers and read the output buffers until those operations complete, so
 * nio_destroy does not free memory: the owner MUST keep passing this tag's CQEs to
 * nio_complete() until nio_idle() is true, then call nio_free(). (Exiting the ring
 * first, io_uring_queue_exit(), also waits for the kernel to drop every operation; then
 * call nio_free_after_ring_exit().)
 *
 * Limits below are net/io's defaults (they belong with the others in
 * core/util/limits.h once that file's owner moves them).
 */
#ifndef TS_NET_IO_NIO_H
#define TS_NET_IO_NIO_H

#include "core/util/log.h"
#include "core/util/limits.h"
#include "core/util/mem.h"

#include <liburing.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* user_data bits 56..63 hold the owner's tag; net/io's value uses bits 0..55. */
#define NIO_TAG_SHIFT 56
#define NIO_VALUE_MASK ((UINT64_C(1) << NIO_TAG_SHIFT) - 1)

struct nio;
struct nio_conn;

/* Fields left 0 take the defaults above. */
struct nio_config {
    uint32_t conns_max;          /* connection slots; 0: TS_NIO_CONNS_DEFAULT */
    uint32_t frame_bytes_max;    /* largest frame accepted; 0: TS_FRAME_BYTES_MAX */
    uint32_t out_bytes_max;      /* back-pressure threshold per connection */
    uint32_t recv_bufs;          /* provided buffers, a power of two */
    uint32_t recv_buf_bytes;     /* bytes per provided buffer */
    uint64_t idle_ns;            /* inbound idle timeout; 0: none */
    uint64_t reconnect_min_ns;   /* first back-off step */
    uint64_t reconnect_max_ns;   /* back-off cap */
    uint64_t connect_timeout_ns; /* outbound connect attempt */
    uint64_t seed;               /* back-off jitter */
    const struct ts_log *log;    /* borrowed; NULL: no logging */
};

/*
 * Callbacks, all run on the ring's thread from nio_complete(), nio_tick(), nio_flush(),
 * nio_close() or nio_destroy(). They may call nio_send() and nio_close() on any
 * connection, never nio_destroy() or nio_free(). `data` is nio_callbacks.data.
 */
struct nio_callbacks {
    /* An inbound connection was accepted (optional). */
    void (*on_open)(struct nio_conn *c, void *data);
    /* One whole frame, length prefix included: a view valid during the call only. */
    void (*on_frame)(struct nio_conn *c, const uint8_t *frame, uint32_t len, void *data);
    /* The connection is closed for good (exactly once per connection, also after
     * nio_close and in nio_destroy). The handle is invalid once this returns. */
    void (*on_close)(struct nio_conn *c, int reason, void *data);
    /* An outbound link connected / an up link went down (a reconnect follows). */
    void (*on_peer_up)(struct nio_conn *c, void *data);
    void (*on_peer_down)(struct nio_conn *c, int reason, void *data);
    void *data;
};

struct nio_stats {
    uint64_t accepted;         /* inbound connections taken into the table */
    uint64_t accept_rejected;  /* accepted sockets closed because the table was full */
    uint64_t connects;         /* outbound connects that succeeded */
    uint64_t connect_failures; /* attempts that failed, timed out included */
    uint64_t connect_timeouts; /* attempts abandoned after cfg.connect_timeout_ns */
    uint64_t closed;           /* connections torn down (inbound closes, outbound drops) */
    uint64_t closed_proto;     /* by a malformed or oversized frame */
    uint64_t closed_idle;      /* by the idle timeout */
    uint64_t bytes_in;         /* received */
    uint64_t bytes_out;        /* sent (as reported by completed sends) */
    uint64_t frames_in;        /* delivered to on_frame */
    uint64_t sends;            /* send operations started */
    uint64_t recv_arms;        /* multishot recvs armed, first arms included */
    uint64_t recv_rearms;      /* of which re-arms (a CQE without F_MORE) */
    uint64_t enobufs;          /* recvs ended by -ENOBUFS (the buffer ring ran dry) */
    uint64_t pauses;           /* reading stopped by back-pressure */
    uint64_t resumes;          /* reading resumed after output drained */
    uint64_t send_full;        /* nio_send refused with TS_EFULL */
    uint64_t out_bytes_peak;   /* largest buffered output of any connection */
    uint64_t sqe_full;         /* io_uring_get_sqe found the SQ full: submitted, retried */
    uint64_t sqe_unavailable;  /* still no SQE after that submit: the operation was deferred */
    uint64_t parked_bytes;     /* received while paused, copied aside (see Sending) */
    uint64_t park_bufs;        /* provided buffers held because that copy was full */
    uint32_t conns_open;       /* slots in use */
    uint32_t ops_inflight;     /* operations the kernel holds */
    uint32_t bufs_held;        /* provided buffers held by paused connections now */
};

/*
 * Creates a transport on the owner's ring. Borrows ring, cfg->log, cb and alloc (they
 * must outlive the nio); copies cfg and cb. Registers the provided-buffer ring with
 * group id = tag. Returns 0, TS_EINVAL (a config value out of range), TS_ENOMEM, or the
 * -errno of io_uring_register_buf_ring.
 */
int nio_create(struct io_uring *ring, uint8_t tag, const struct nio_config *cfg,
               const struct nio_callbacks *cb, const struct ts_allocator *alloc, struct nio **out);

/* Handles one CQE whose tag is this nio's. Borrows cqe (the owner advances the CQ). */
void nio_complete(struct nio *n, struct io_uring_cqe *cqe);

/* Starts queued sends and deferred re-arms. Once per loop iteration. */
void nio_flush(struct nio *n);

/* Advances net/io's time: idle timeouts, connect timeouts, reconnects. now_ns is the
 * owner's monotonic clock and never goes backwards. */
void nio_tick(struct nio *n, uint64_t now_ns);

/* The earliest time nio_tick has work to do, or 0 when there is none. */
uint64_t nio_next_deadline_ns(const struct nio *n);

/*
 * Listens on addr_port ("127.0.0.1:7000", "[::1]:7000", "0.0.0.0:0"; a numeric
 * address, port 0 picks a free port) with SO_REUSEPORT. Borrows addr_port. Returns 0
 * and the listener's id in *id, TS_EINVAL (unparsable address), TS_EFULL (more than
 * TS_NIO_LISTENERS_MAX) or -errno from socket/bind/listen.
 */
int nio_listen(struct nio *n, const char *addr_port, uint32_t *id);

/* The port a listener is bound to (useful after port 0). Returns 0 or TS_EINVAL. */
int nio_listen_port(const struct nio *n, uint32_t id, uint16_t *port);

/* Stops a listener (its accept is cancelled, the socket closed once the kernel has let
 * go). Open connections stay. Returns 0 or TS_EINVAL. */
int nio_unlisten(struct nio *n, uint32_t id);

/* Creates an outbound link to addr_port (numeric, as nio_listen) that reconnects until
 * nio_close. Borrows addr_port. Returns 0 and the handle in *out (valid until its
 * on_close), TS_EINVAL, TS_EFULL (table full) or TS_ESHUTDOWN (after nio_destroy). */
int nio_connect(struct nio *n, const char *addr_port, struct nio_conn **out);

/*
 * Queues len bytes (whole frames) on the connection: copies them (borrows buf).
 * Returns 0, TS_EFULL (over the hard output limit; nothing queued), TS_EUNAVAIL (an
 * outbound link that is not up), TS_ESHUTDOWN (closing), TS_ENOMEM. The send starts in
 * the next nio_flush().
 */
int nio_send(struct nio_conn *c, const void *buf, size_t len);

/* Closes the connection for good (outbound links stop reconnecting); on_close runs
 * before this returns, with TS_ESHUTDOWN. A no-op on a connection already closed. */
void nio_close(struct nio_conn *c);

/* Connection accessors. An id names a connection across its lifetime and is never
 * reused by another connection of the same nio (slot and generation). */
uint64_t nio_conn_id(const struct nio_conn *c);
/* The connection with that id, or NULL when it has closed. */
struct nio_conn *nio_conn_lookup(struct nio *n, uint64_t id);
void nio_conn_set_data(struct nio_conn *c, void *data);
void *nio_conn_data(const struct nio_conn *c);
struct nio *nio_conn_nio(const struct nio_conn *c);
bool nio_conn_outbound(const struct nio_conn *c);
/* Output buffered (in flight + queued), and whether reading is stopped by it. */
size_t nio_conn_out_bytes(const struct nio_conn *c);
bool nio_conn_paused(const struct nio_conn *c);

void nio_stats(const struct nio *n, struct nio_stats *out);

/* See "Destruction" above. */
void nio_destroy(struct nio *n);
bool nio_idle(const struct nio *n);
/* Frees the nio. Requires nio_destroy() first and nio_idle(). */
void nio_free(struct nio *n);
/* Frees the nio after the owner exited the ring (io_uring_queue_exit), which waits for
 * every operation: does not touch the ring. Requires nio_destroy() first. */
void nio_free_after_ring_exit(struct nio *n);

#endif
