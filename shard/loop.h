/*
 * The shard event loop: one io_uring, timers and per-iteration hooks (STYLE R17, R18).
 *
 * A struct shard_loop belongs to exactly one thread, the shard thread that created it;
 * every function here except shard_loop_ring_fd() must be called from that thread (the
 * ring is created with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, and a
 * SINGLE_ISSUER ring refuses any other submitter). If the kernel refuses those flags the
 * loop falls back to a plain ring and logs one line.
 *
 * user_data convention, for EVERY SQE on the ring: bits 56..63 hold a tag, bits 0..55
 * the value of the subsystem that owns the tag (a slot index, never a pointer). Each
 * subsystem registers one completion handler per tag. Reserved tags: SHARD_TAG_NIO
 * (net/io), SHARD_TAG_DISK (storage/disk), SHARD_TAG_LOOP (the loop's own wake-ups and
 * the node's control messages). A CQE whose tag has no handler is an assertion failure.
 *
 * One iteration, in this order:
 *   1. submit everything queued and wait: for a completion, or until the nearest timer
 *      deadline; not at all when there is ready work (shard_loop_poke) or something
 *      already arrived. With nothing to do the thread sleeps in the kernel; there is no
 *      busy polling. Before sleeping the inbound source (the cross-shard rings) is told,
 *      so producers know to wake the shard with IORING_OP_MSG_RING;
 *   2. read CLOCK_MONOTONIC once (shard_loop_now_ns() returns it until the next one);
 *   3. reap CQEs a batch at a time (io_uring_for_each_cqe + io_uring_cq_advance) and
 *      dispatch each to its tag's handler;
 *   4. run the timers whose deadline has passed, earliest first;
 *   5. drain the inbound source (every cross-shard ring into this shard);
 *   6. run the iteration hooks in registration order ("run ready work, flush output").
 * The loop runs until shard_loop_stop(); it is the one unbounded loop (STYLE R19).
 *
 * Memory: the loop allocates its tables once at creation from the allocator it is given
 * and frees them at destroy, on the same thread (R12, R13). Timers are owned by their
 * callers; the loop only links them into a fixed-capacity heap.
 */
#ifndef TS_SHARD_LOOP_H
#define TS_SHARD_LOOP_H

#include "core/util/log.h"
#include "core/util/limits.h"
#include "core/util/mem.h"

#include <liburing.h>

#include <stdbool.h>
#include <stdint.h>

/* ---- user_data tags ------------------------------------------------------------------ */

#define SHARD_TAG_NIO 1u
#define SHARD_TAG_DISK 2u
#define SHARD_TAG_LOOP 3u

#define SHARD_UDATA_TAG_SHIFT 56u
#define SHARD_UDATA_VALUE_MASK ((UINT64_C(1) << SHARD_UDATA_TAG_SHIFT) - 1)

/* Values under SHARD_TAG_LOOP. */
enum shard_loop_event {
    SHARD_LOOP_EV_WAKE = 1,   /* msg_ring from a producer: something arrived */
    SHARD_LOOP_EV_STOP = 2,   /* msg_ring from shard_node_stop */
    SHARD_LOOP_EV_SIGNAL = 3, /* the node's signalfd is readable (shard 0) */
    SHARD_LOOP_EV_NOP = 4,    /* a completion nobody needs (failed wake posts) */
};

static inline uint64_t shard_udata(uint8_t tag, uint64_t value)
{
    return ((uint64_t)tag << SHARD_UDATA_TAG_SHIFT) | (value & SHARD_UDATA_VALUE_MASK);
}

static inline uint8_t shard_udata_tag(uint64_t user_data)
{
    return (uint8_t)(user_data >> SHARD_UDATA_TAG_SHIFT);
}

static inline uint64_t shard_udata_value(uint64_t user_data)
{
    return user_data & SHARD_UDATA_VALUE_MASK;
}

/* ---- The loop ------------------------------------------------------------------------ */

struct shard_loop;

struct shard_loop_config {
    uint32_t shard_id;                /* for logs and assertions */
    uint32_t sq_entries;              /* 0: TS_SHARD_LOOP_SQ_ENTRIES_DEFAULT */
    uint32_t cq_entries;              /* 0: TS_SHARD_LOOP_CQ_ENTRIES_DEFAULT */
    uint32_t timers_max;              /* 0: 1024 */
    const struct ts_allocator *alloc; /* borrowed; NULL: ts_allocator_default() */
    const struct ts_log *log;         /* borrowed; NULL: no log lines */
};

/* Creates the loop and its ring on the calling thread, which becomes its only user.
 * Returns 0, -EINVAL for an out-of-range size, -ENOMEM, or -errno from io_uring_setup. */
int shard_loop_create(const struct shard_loop_config *cfg, struct shard_loop **out);

/* Closes the ring (the kernel cancels what is in flight) and frees the loop. Owner thread;
 * not from inside shard_loop_run. */
void shard_loop_destroy(struct shard_loop *l);

/* Runs iterations until shard_loop_stop; the first one never blocks, so the hooks see
 * work queued before the loop ran. Returns 0, or -errno when waiting fails for a reason
 * other than a signal or a timeout. */
int shard_loop_run(struct shard_loop *l);

/* Runs exactly one iteration; with wait false it never blocks. For tests and for callers
 * that drive the loop themselves. Returns 0 or -errno. */
int shard_loop_run_once(struct shard_loop *l, bool wait);

/* Makes shard_loop_run return after the current iteration. */
void shard_loop_stop(struct shard_loop *l);
bool shard_loop_stopped(const struct shard_loop *l);

/* Makes the next wait not block: for ready work that needs another iteration but no
 * I/O (a retry after TS_EFULL, a hook with more to do). */
void shard_loop_poke(struct shard_loop *l);

/* CLOCK_MONOTONIC in nanoseconds, read once per iteration (and at creation). */
uint64_t shard_loop_now_ns(const struct shard_loop *l);

/* Iterations completed so far (tests check that an idle loop sleeps). */
uint64_t shard_loop_iterations(const struct shard_loop *l);

uint32_t shard_loop_shard_id(const struct shard_loop *l);
const struct ts_allocator *shard_loop_allocator(const struct shard_loop *l);

/* The ring, for subsystems that submit their own SQEs (net/io). Returns a view valid
 * until shard_loop_destroy; every SQE must carry a shard_udata() with the subsystem's
 * tag. Owner thread only. */
struct io_uring *shard_loop_ring(struct shard_loop *l);

/* The ring's fd, which other shards target with IORING_OP_MSG_RING. Any thread. */
int shard_loop_ring_fd(const struct shard_loop *l);

/* An SQE; when the SQ is full, submits what is queued and tries again (R18). Returns
 * NULL only when the ring keeps refusing submissions (TS_SHARD_LOOP_SQE_RETRIES_MAX). */
struct io_uring_sqe *shard_loop_sqe(struct shard_loop *l);

/* Removes tag's handler (a subsystem that failed to set up). No SQE with that tag may
 * be in flight. */
void shard_loop_unregister(struct shard_loop *l, uint8_t tag);

/* Waits synchronously until at least one CQE tagged `tag` has been dispatched to its
 * handler: for a subsystem that cannot go on until its I/O completes (the disk under a
 * B-tree page miss or a checkpoint, storage/disk/disk_uring.h's attached mode). Submits
 * what is queued. Every other CQE reaped meanwhile is set aside, in order, and dispatched
 * by the next iteration, never from inside this call, so no handler runs re-entrantly.
 * Returns 0, TS_ENOMEM when TS_SHARD_LOOP_STASH_MAX CQEs are set aside already, -EAGAIN
 * after TS_SHARD_LOOP_WAIT_TAG_PASSES_MAX wake-ups without one, or -errno. Owner thread. */
int shard_loop_wait_tag(struct shard_loop *l, uint8_t tag);

/* Registers fn for the CQEs tagged `tag` (1..255); fn borrows the CQE for the length of
 * the call only. Returns 0, TS_EINVAL for tag 0 or a tag already taken. */
int shard_loop_register(struct shard_loop *l, uint8_t tag,
                        void (*fn)(void *ctx, struct io_uring_cqe *cqe), void *ctx);

/* Adds a hook run once per iteration after completions, timers and inbound messages.
 * Returns 0 or TS_EFULL past TS_SHARD_LOOP_HOOKS_MAX. */
int shard_loop_on_iteration(struct shard_loop *l, void (*fn)(void *ctx), void *ctx);

/*
 * The inbound source: what the loop drains in step 5 and tells before sleeping (the
 * cross-shard rings of xring.h). At most one per loop.
 *   drain        handles what arrived; returns the number of messages handled.
 *   sleep_begin  the loop is about to block: announce it, then return false if
 *                something arrived meanwhile (the loop then does not block).
 *   sleep_end    the loop woke (whether or not it blocked after sleep_begin).
 */
struct shard_loop_inbound {
    uint32_t (*drain)(void *ctx);
    bool (*sleep_begin)(void *ctx);
    void (*sleep_end)(void *ctx);
    void *ctx;
};

/* Sets the inbound source (copied). Returns 0, or TS_EINVAL when one is already set. */
int shard_loop_set_inbound(struct shard_loop *l, const struct shard_loop_inbound *in);

/* Sets the handler for SHARD_TAG_LOOP events other than WAKE and NOP (the node's STOP
 * and SIGNAL), with the event's value and the CQE's res. At most once per loop. */
void shard_loop_on_control(struct shard_loop *l, void (*fn)(void *ctx, uint64_t value, int32_t res),
                           void *ctx);

/* ---- Timers ---------------------------------------------------------------------------- */

/* A one-shot timer, owned by the caller, which must keep it alive while it is armed. The
 * fields are the loop's: initialise with shard_timer_init. */
struct shard_timer {
    uint64_t deadline_ns;
    void (*cb)(struct shard_timer *t, void *data);
    void *data;
    uint32_t heap_index; /* UINT32_MAX: not armed */
};

void shard_timer_init(struct shard_timer *t);

/* Arms t (re-arms it if already armed) to call cb(t, data) once, on the loop's thread, in
 * the first iteration whose clock reads >= deadline_ns (CLOCK_MONOTONIC). Timers due in
 * the same iteration fire in deadline order. cb may re-arm t. Returns 0, or TS_EFULL when
 * timers_max timers are armed already. */
int shard_timer_start(struct shard_loop *l, struct shard_timer *t, uint64_t deadline_ns,
                      void (*cb)(struct shard_timer *t, void *data), void *data);

/* Disarms t; does nothing if it is not armed. */
void shard_timer_stop(struct shard_loop *l, struct shard_timer *t);

static inline bool shard_timer_armed(const struct shard_timer *t)
{
    return t->heap_index != UINT32_MAX;
}

/* Timers armed now. */
uint32_t shard_loop_timers(const struct shard_loop *l);

#endif
