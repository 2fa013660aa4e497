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
void drv_fini(struct drv *d);
uint64_t drv_now_ns(void);
/* One loop iteration: tick and flush every nio, wait up to timeout_ms for a CQE (less
 * when a nio has an earlier deadline), dispatch what arrived. */
void drv_step(struct drv *d, int timeout_ms);
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
