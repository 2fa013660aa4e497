/*
 * Cross-shard rings: how shards of one node talk (DESIGN "shards share nothing; they
 * talk only through message rings"; STYLE R13).
 *
 * A mesh of N shards holds one single-producer single-consumer ring for every ordered
 * pair (from, to), N*(N-1) rings, each a fixed array of 64-byte slots allocated when the
 * mesh is created. Only shard `from`'s thread pushes into ring (from, to) and only shard
 * `to`'s thread pops from it, so the indices need no locks: the producer publishes its
 * tail with a release store, the consumer its head with a release store, each reads the
 * other's with an acquire load. Messages of one ring arrive in the order they were sent;
 * there is no order between different rings.
 *
 * A message is copied into its slot. What crosses is bytes or a handle that goes back to
 * the shard that owns it for release (R13): the receiver never frees a sender's memory.
 *
 * Wake-ups. A shard whose loop is about to block sets its inbox's `sleeping` flag, issues
 * a full fence and looks at every inbound ring once more. A producer publishes its tail,
 * issues a full fence and reads the flag; if it is set, the producer that swaps it back
 * to 0 posts one IORING_OP_MSG_RING (tag SHARD_TAG_LOOP, value SHARD_LOOP_EV_WAKE) from
 * its own ring to the consumer's. The two fences make it impossible for both to miss
 * each other (store, fence, load on each side), so a sleeping consumer is always woken,
 * and a busy one is never sent a wake at all; a sleeping one gets one wake however many
 * producers and messages arrive. The wake SQE goes out with the producer's next submit
 * (the start of its next iteration), so it costs no extra syscall.
 *
 * Full ring: xring_send returns TS_EFULL and counts it; the caller keeps the message and
 * retries in a later iteration (shard_loop_poke makes that iteration come at once).
 *
 * Threads: xring_mesh_create and _destroy on the node's thread, while no shard uses the
 * mesh; xring_attach, xring_send and xring_close_sender on the shard's own thread;
 * xring_stats on any thread (the counters are relaxed atomics).
 */
#ifndef TS_SHARD_XRING_H
#define TS_SHARD_XRING_H

#include "core/util/limits.h"
#include "core/util/mem.h"
#include "shard/loop.h"

#include <stdbool.h>
#include <stdint.h>

/* One message: fixed size, one cache line. `type` and the payload are the receiver's to
 * interpret (node.h hands every message to msg_cb); `from` is set by xring_send. */
struct xring_msg {
    uint32_t type;
    uint32_t from;
    uint64_t handle; /* a handle or pointer that returns to its owner for release */
    uint64_t u[6];
};
_Static_assert(sizeof(struct xring_msg) == 64, "a message is one cache line");

struct xring_mesh;

struct xring_mesh_config {
    uint32_t shards;                  /* 2..TS_XRING_SHARDS_MAX (1 is allowed: no rings) */
    uint32_t slots;                   /* power of two; 0: the default above */
    const struct ts_allocator *alloc; /* borrowed; NULL: ts_allocator_default() */
};

/* Allocates every ring. Returns 0, -EINVAL, or -ENOMEM. */
int xring_mesh_create(const struct xring_mesh_config *cfg, struct xring_mesh **out);

/* Frees the mesh. No shard may use it any more; messages still queued are dropped. */
void xring_mesh_destroy(struct xring_mesh *m);

uint32_t xring_mesh_shards(const struct xring_mesh *m);
uint32_t xring_mesh_slots(const struct xring_mesh *m);

/* Called on shard `self`'s thread: makes `l` drain the rings into `self` each iteration,
 * calling handler(ctx, msg) per message in ring order (msg is a view valid for the call
 * only), and publishes the ring fd that producers wake. Also makes `l` the loop whose ring
 * posts this shard's wake-ups as a producer. Returns 0 or TS_EINVAL (already attached, or
 * `l` has an inbound source). */
int xring_attach(struct xring_mesh *m, uint32_t self, struct shard_loop *l,
                 void (*handler)(void *ctx, const struct xring_msg *msg), void *ctx);

/* Withdraws `self`'s ring fd: producers stop waking it. On `self`'s thread, before its
 * loop is destroyed. */
void xring_detach(struct xring_mesh *m, uint32_t self);

/* Copies msg into ring (from, to) and wakes `to` if it may be asleep. On `from`'s thread,
 * after xring_attach. Borrows msg. Returns 0; TS_EFULL when the ring is full (counted;
 * nothing was queued); TS_ESHUTDOWN after xring_close_sender(from). */
int xring_send(struct xring_mesh *m, uint32_t from, uint32_t to, const struct xring_msg *msg);

/* After this, xring_send from `from` returns TS_ESHUTDOWN. On `from`'s thread. */
void xring_close_sender(struct xring_mesh *m, uint32_t from);

/* Handles every message waiting for `self` now (the loop does this each iteration).
 * Returns the number handled. On `self`'s thread. */
uint32_t xring_drain(struct xring_mesh *m, uint32_t self);

/* True when no ring into `self` holds a message. Any thread (a snapshot). */
bool xring_inbox_empty(const struct xring_mesh *m, uint32_t self);

struct xring_stats {
    uint64_t sent;     /* messages accepted by xring_send from this shard */
    uint64_t full;     /* TS_EFULL answers to this shard */
    uint64_t wakes;    /* msg_ring wake-ups this shard posted */
    uint64_t received; /* messages this shard's handler was given */
};

/* A snapshot of shard's counters. Any thread. */
void xring_stats(const struct xring_mesh *m, uint32_t shard, struct xring_stats *out);

#endif
