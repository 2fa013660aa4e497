/*
 * A tiny event loop for net/io's tests, standing in for the shard runtime: it owns an
 * io_uring (SINGLE_ISSUER|DEFER_TASKRUN), dispatches CQEs by tag to nio_complete, and
 * calls nio_tick and nio_flush once per iteration. Clients are plain non-blocking
 * sockets driven from the same thread between iterations (a blocking client on the
 * loop's thread would wait for a server that cannot run).
 */
#ifndef TS_TESTS_UNIT_NET_IO_NIO_DRIVER_H
#define TS_TESTS_UNIT_NET_IO_NIO_DRIVER_H

#include "net/io/nio.h"

#include <liburing.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRV_NIOS_MAX 4u

struct drv {
    struct io_uring ring;
    struct nio *nios[DRV_NIOS_MAX]; /* index = tag */
};

void drv_init(struct drv *d);
/* As drv_init with sq_entries submission slots and extra io_uring setup flags (a small
 * SQ makes net/io meet a full queue; IORING_SETUP_R_DISABLED a ring that refuses every
 * submission until io_uring_enable_rings). */
void drv_init_sq(struct drv *d, uint32_t sq_entries, uint32_t flags);
void drv_fini(struct drv *d);
uint64_t drv_now_ns(void);
/* One loop iteration: tick and flush every nio, wait up to timeout_ms for a CQE (less
 * when a nio has an earlier deadline), dispatch what arrived. */
void drv_step(struct drv *d, int timeout_ms);
/* As drv_step, but every nio is ticked with now_ns (a test clock) instead of the real one,
 * and the wait is timeout_ms whatever the nios' deadlines. */
void drv_step_at(struct drv *d, uint64_t now_ns, int timeout_ms);
/* Waits up to timeout_ms for CQEs and dispatches them, without ticking or flushing. */
void drv_wait(struct drv *d, int timeout_ms);
/* Dispatches the CQEs already visible, without submitting, waiting, ticking or flushing. */
void drv_dispatch(struct drv *d);
/* Takes every free SQE for a NOP that posts no completion, so the SQ is full. */
void drv_fill_sq(struct drv *d);

/* While true, io_uring_submit() fails with -EBUSY without submitting anything: the test
 * binary interposes liburing's io_uring_submit (net/io calls it when the SQ is full), so
 * net/io meets a full SQ that a submit cannot empty. Waits by the driver are unaffected. */
extern bool drv_submit_fails;

/* Destroys the nio, reaps until it is idle, frees it. */
void drv_destroy_nio(struct drv *d, uint8_t tag);

/* Client helpers: a non-blocking TCP socket connected to 127.0.0.1:port. */
int cli_connect(uint16_t port);
/* Writes all of buf, stepping the loop while the socket is full. */
void cli_write_all(struct drv *d, int fd, const void *buf, size_t len);
/* Reads exactly len bytes, stepping the loop while none are there. Returns the bytes
 * read before EOF or an error (len on success). */
size_t cli_read_exact(struct drv *d, int fd, void *buf, size_t len);
/* Steps until the server closes the socket (read returns 0 or an error). */
bool cli_wait_eof(struct drv *d, int fd, int steps_max);

/* A valid frame of `total` bytes (a multiple of 8, >= 24) with a pattern from seed. */
void frame_fill(uint8_t *buf, uint32_t total, uint32_t seed);

#endif
