/* The test event loop for net/io (see nio_driver.h). */
#define _GNU_SOURCE
#include "nio_driver.h"

#include "core/util/encoding.h"

#include <criterion/criterion.h>

#include <dlfcn.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DRV_CQE_BATCH 256u

bool drv_submit_fails;

int io_uring_submit(struct io_uring *ring)
{
    if (drv_submit_fails) {
        return -EBUSY;
    }
    int (*real)(struct io_uring *);
    *(void **)&real = dlsym(RTLD_NEXT, "io_uring_submit");
    cr_assert_not_null(real, "liburing's io_uring_submit");
    return real(ring);
}

void drv_init_sq(struct drv *d, uint32_t sq_entries, uint32_t flags)
{
    memset(d, 0, sizeof(*d));
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.flags |= flags;
    p.cq_entries = 8192;
    int rc = io_uring_queue_init_params(sq_entries, &d->ring, &p);
    cr_assert_eq(rc, 0, "io_uring_queue_init_params: %s", strerror(-rc));
    cr_assert_eq(d->ring.sq.ring_entries, sq_entries, "the kernel kept the SQ size");
}

void drv_init(struct drv *d)
{
    drv_init_sq(d, 512, 0);
}

void drv_fini(struct drv *d)
{
    for (uint8_t t = 0; t < DRV_NIOS_MAX; t++) {
        if (d->nios[t] != NULL) {
            drv_destroy_nio(d, t);
        }
    }
    io_uring_queue_exit(&d->ring);
}

uint64_t drv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void drv_dispatch(struct drv *d)
{
    for (uint32_t i = 0; i < DRV_CQE_BATCH; i++) {
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(&d->ring, &cqe) != 0) {
            return;
        }
        uint8_t tag = (uint8_t)(cqe->user_data >> NIO_TAG_SHIFT);
        cr_assert(tag < DRV_NIOS_MAX && d->nios[tag] != NULL, "CQE for unknown tag %u", tag);
        nio_complete(d->nios[tag], cqe);
        io_uring_cqe_seen(&d->ring, cqe);
    }
}

static void step(struct drv *d, uint64_t now, int timeout_ms, bool by_deadline)
{
    uint64_t wait_ns = (uint64_t)timeout_ms * 1000000ull;
    for (uint8_t t = 0; t < DRV_NIOS_MAX; t++) {
        if (d->nios[t] == NULL) {
            continue;
        }
        nio_tick(d->nios[t], now);
        nio_flush(d->nios[t]);
        uint64_t dl = nio_next_deadline_ns(d->nios[t]);
        if (dl != 0 && by_deadline) {
            uint64_t left = dl > now ? dl - now : 0;
            wait_ns = left < wait_ns ? left : wait_ns;
        }
    }
    struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ns / 1000000000ull),
                                   .tv_nsec = (long long)(wait_ns % 1000000000ull)};
    struct io_uring_cqe *cqe = NULL;
    int rc = io_uring_submit_and_wait_timeout(&d->ring, &cqe, 1, &ts, NULL);
    cr_assert(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY,
              "submit_and_wait: %s", strerror(-rc));
    (void)io_uring_get_events(&d->ring);
    drv_dispatch(d);
}

void drv_wait(struct drv *d, int timeout_ms)
{
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    struct io_uring_cqe *cqe = NULL;
    int rc = io_uring_submit_and_wait_timeout(&d->ring, &cqe, 1, &ts, NULL);
    cr_assert(rc >= 0 || rc == -ETIME || rc == -EINTR, "submit_and_wait: %s", strerror(-rc));
    (void)io_uring_get_events(&d->ring);
    drv_dispatch(d);
}

void drv_fill_sq(struct drv *d)
{
    for (uint32_t i = 0; i < d->ring.sq.ring_entries; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
        if (sqe == NULL) {
            return;
        }
        io_uring_prep_nop(sqe);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, 0);
    }
    cr_assert_null(io_uring_get_sqe(&d->ring), "the SQ is full");
}

void drv_step(struct drv *d, int timeout_ms)
{
    step(d, drv_now_ns(), timeout_ms, true);
}

void drv_step_at(struct drv *d, uint64_t now_ns, int timeout_ms)
{
    step(d, now_ns, timeout_ms, false);
}

void drv_destroy_nio(struct drv *d, uint8_t tag)
{
    struct nio *n = d->nios[tag];
    cr_assert(n != NULL);
    nio_destroy(n);
    for (int i = 0; i < 10000 && !nio_idle(n); i++) {
        drv_step(d, 10);
    }
    cr_assert(nio_idle(n), "nio %u never became idle", tag);
    nio_free(n);
    d->nios[tag] = NULL;
}

int cli_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    cr_assert(rc == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

void cli_write_all(struct drv *d, int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (int spins = 0; len > 0; spins++) {
        cr_assert(spins < 1000000, "write never completed");
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        cr_assert(n < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN),
                  "client send: %s", strerror(errno));
        drv_step(d, 1);
    }
}

size_t cli_read_exact(struct drv *d, int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t got = 0;
    for (int spins = 0; got < len; spins++) {
        cr_assert(spins < 1000000, "read never completed");
        ssize_t n = recv(fd, p + got, len - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR && errno != ENOTCONN)) {
            return got;
        }
        drv_step(d, 1);
    }
    return got;
}

bool cli_wait_eof(struct drv *d, int fd, int steps_max)
{
    uint8_t b[4096];
    for (int i = 0; i < steps_max; i++) {
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return true;
        }
        if (n < 0) {
            drv_step(d, 5);
        }
    }
    return false;
}

void frame_fill(uint8_t *buf, uint32_t total, uint32_t seed)
{
    cr_assert(total >= 24 && total % 8 == 0);
    ts_store_le32(buf, total - 4);
    uint32_t x = seed * 2654435761u + 1;
    for (uint32_t i = 4; i < total; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}
