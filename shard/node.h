/*
 * A node's shards: threads, loops, arenas, cross-shard rings, signals and shutdown
 * (DESIGN "shard"; STYLE R12-R14).
 *
 * shard_node_start starts N shard threads (N = cfg->shards, or the number of online CPUs).
 * Each thread, in order: sets its shard id for logs and asserts; pins itself to CPU i when
 * cfg->pin; creates its allocator arena (a jemalloc arena in release builds, see arena.h),
 * its loop (loop.h) and attaches to the node's xring mesh (xring.h); waits until every
 * shard has done so; runs cfg->init_cb (where listeners and other per-shard state are
 * created, so every other shard's ring is already reachable); and runs its loop.
 * shard_node_start returns once every init_cb has returned. If any setup step or init_cb
 * fails, the node shuts down as below and shard_node_start returns the first error.
 *
 * Signals: SIGTERM and SIGINT are blocked in the thread calling shard_node_start (until
 * shard_node_wait returns) and hence in every shard; shard 0 reads them from a signalfd
 * polled on its ring (tag SHARD_TAG_LOOP) and calls shard_node_stop. A process-directed
 * signal (kill) or one raised on shard 0's thread is seen; one raised on another thread
 * stays pending on that thread.
 *
 * Shutdown (shard_node_stop, from any thread, or a signal): every shard gets a STOP
 * message (IORING_OP_MSG_RING to its ring) and calls cfg->stop_cb, once per iteration,
 * until it returns true ("stop accepting, finish in-flight, flush, close"; a shard whose
 * init_cb did not succeed skips it) or cfg->stop_ms have passed since STOP reached it:
 * then the shard logs (ERROR) that it did not finish, stops calling stop_cb and goes on
 * as if it had returned true, and shard_node_wait reports TS_ETIMEOUT. fini_cb still
 * runs: it must cope with work stop_cb left unfinished. From then on the shard may not originate
 * messages (xring sends return TS_ESHUTDOWN) but its msg_cb still receives every message already
 * accepted for it. When the last shard is done, every shard drains its inbound rings one
 * final time, leaves its loop, waits for the others to leave theirs (so no wake-up ever
 * targets a closed ring), runs cfg->fini_cb, then destroys its loop. shard_node_wait
 * joins the threads and frees the node. No message that xring_send accepted is lost.
 *
 * A message's handle that must return to its owner for release (R13) cannot return once
 * the receiver is done stopping: owners release what is still out in their stop_cb (their
 * pools are freed whole at shutdown).
 */
#ifndef TS_SHARD_NODE_H
#define TS_SHARD_NODE_H

#include "core/util/log.h"
#include "core/util/mem.h"
#include "shard/loop.h"
#include "shard/xring.h"

#include <stdbool.h>
#include <stdint.h>

struct shard;      /* one shard's runtime, handed to the callbacks */
struct shard_node; /* the node: every shard, the mesh */

struct shard_node_config {
    uint32_t shards;          /* 0: online CPUs (at most TS_XRING_SHARDS_MAX) */
    bool pin;                 /* pin shard i to the i-th CPU the process may run on */
    uint32_t xring_slots;     /* slots per cross-shard ring; 0: TS_XRING_SLOTS_DEFAULT */
    uint32_t stop_ms;         /* stop_cb deadline; 0: TS_SHARD_NODE_STOP_MS_DEFAULT */
    const struct ts_log *log; /* borrowed; NULL: no log lines */
    /* On shard s's thread after its loop exists and every shard is reachable. Returns 0 or
     * a negative code, which fails shard_node_start. May be NULL. */
    int (*init_cb)(struct shard *s, void *data);
    /* On shard s's thread once per iteration after STOP, until it returns true or
     * stop_ms have passed. May be NULL (done at once). */
    bool (*stop_cb)(struct shard *s, void *data);
    /* On shard s's thread for each message that arrived for it; msg is a view valid for
     * the call only. May be NULL only if nobody sends. */
    void (*msg_cb)(struct shard *s, const struct xring_msg *msg, void *data);
    /* On shard s's thread after every shard has left its loop and before s's loop is
     * destroyed: where per-shard state is freed on the shard that allocated it (R13).
     * Runs for every shard whose init_cb ran, even if it failed. May be NULL. */
    void (*fini_cb)(struct shard *s, void *data);
    void *data;
};

/* Starts the node (see above). Borrows cfg for the call only (cfg->log and cfg->data must
 * outlive the node). Returns 0, TS_EINVAL (too many shards, stop_ms above
 * TS_SHARD_NODE_STOP_MS_MAX), -ENOMEM, -errno from thread creation, loop
 * setup, arena setup or signalfd, or the first init_cb error. */
int shard_node_start(const struct shard_node_config *cfg, struct shard_node **out);

/* Asks every shard to stop (see above). Any thread, any number of times; only the first
 * successful call sends STOP. Returns 0, or -errno when the STOP messages could not be
 * posted (io_uring_queue_init or msg_ring failed; the call may be repeated). */
int shard_node_stop(struct shard_node *n);

/* Waits for every shard thread to finish, restores the caller's signal mask and frees the
 * node. On the thread that called shard_node_start. Returns 0, the first error a shard
 * loop failed with, or else TS_ETIMEOUT when a stop_cb missed the stop_ms deadline. */
int shard_node_wait(struct shard_node *n);

uint32_t shard_node_shards(const struct shard_node *n);

/* ---- For code running on a shard ---------------------------------------------------- */

uint32_t shard_get_id(const struct shard *s);
uint32_t shard_get_count(const struct shard *s);
struct shard_loop *shard_get_loop(struct shard *s);
struct shard_node *shard_get_node(struct shard *s);
struct xring_mesh *shard_get_mesh(struct shard *s);

/* The shard's allocator (its jemalloc arena in release builds). A view valid while the
 * shard runs; on the shard's thread only (R13). */
const struct ts_allocator *shard_get_allocator(struct shard *s);

/* True once STOP reached this shard. */
bool shard_stopping(const struct shard *s);

/* xring_send from this shard (on its thread). Returns 0, TS_EFULL, TS_ESHUTDOWN, or
 * TS_EINVAL for to == self or out of range. Borrows msg. */
int shard_send(struct shard *s, uint32_t to, const struct xring_msg *msg);

#endif
