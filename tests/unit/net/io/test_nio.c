/*
 * net/io on loopback: an echo server (on_frame sends the frame back) under framing
 * edge cases, bad frames, many connections, a slow reader, idle timeouts, outbound
 * reconnects and destruction with connections open. Nothing asserts on wall-clock
 * figures: loops are bounded by iteration counts and conditions.
 */
#define _GNU_SOURCE
#include "nio_driver.h"

#include "core/util/encoding.h"
#include "core/util/err.h"
#include "core/util/limits.h"
#include "core/util/mem.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_TAG 1
#define PEER_TAG 2
#define REASONS_MAX 64

struct echo {
    struct drv d;
    uint16_t port;
    uint32_t listener;
    uint32_t opens;
    uint32_t closes;
    int reasons[REASONS_MAX];
    uint64_t send_full;
    bool echo_off; /* swallow frames instead of echoing */
    struct nio_conn *last_open;
    /* Outbound side (PEER_TAG). */
    uint32_t ups;
    uint32_t downs;
    uint32_t peer_frames;
    uint32_t peer_closes;
};

static struct echo E;

static void on_open(struct nio_conn *c, void *data)
{
    struct echo *e = data;
    e->opens++;
    e->last_open = c;
}

static void on_frame(struct nio_conn *c, const uint8_t *frame, uint32_t len, void *data)
{
    struct echo *e = data;
    cr_assert(len >= 24 && len % 8 == 0);
    cr_assert_eq(len, ts_load_le32(frame) + 4);
    if (e->echo_off) {
        return;
    }
    int rc = nio_send(c, frame, len);
    if (rc == TS_EFULL) {
        e->send_full++;
        return;
    }
    cr_assert_eq(rc, 0, "nio_send: %s", ts_strerror(rc));
}

static void on_close(struct nio_conn *c, int reason, void *data)
{
    struct echo *e = data;
    if (e->closes < REASONS_MAX) {
        e->reasons[e->closes] = reason;
    }
    e->closes++;
    if (e->last_open == c) {
        e->last_open = NULL;
    }
    cr_assert_eq(nio_send(c, "x", 1), TS_ESHUTDOWN);
}

static const struct nio_callbacks echo_cb = {
    .on_open = on_open, .on_frame = on_frame, .on_close = on_close, .data = &E};

static void srv_start(const struct nio_config *cfg)
{
    struct nio *n;
    int rc = nio_create(&E.d.ring, SRV_TAG, cfg, &echo_cb, ts_allocator_default(), &n);
    cr_assert_eq(rc, 0, "nio_create: %s", ts_strerror(rc));
    E.d.nios[SRV_TAG] = n;
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)E.port);
    rc = nio_listen(n, addr, &E.listener);
    cr_assert_eq(rc, 0, "nio_listen: %s", ts_strerror(rc));
    cr_assert_eq(nio_listen_port(n, E.listener, &E.port), 0);
    cr_assert_neq(E.port, 0);
}

static struct nio *srv(void)
{
    return E.d.nios[SRV_TAG];
}

static struct nio_stats srv_stats(void)
{
    struct nio_stats s;
    nio_stats(srv(), &s);
    return s;
}

static void setup(void)
{
    memset(&E, 0, sizeof(E));
    drv_init(&E.d);
    srv_start(&(struct nio_config){0});
}

static void teardown(void)
{
    drv_fini(&E.d);
}

static void setup_ring_only(void)
{
    memset(&E, 0, sizeof(E));
    drv_init(&E.d);
}

/* Sends frames and checks the echo matches byte for byte. */
static void round_trip(int fd, const uint8_t *out, size_t len)
{
    uint8_t *back = malloc(len);
    cr_assert(back != NULL);
    cli_write_all(&E.d, fd, out, len);
    cr_assert_eq(cli_read_exact(&E.d, fd, back, len), len);
    cr_assert(memcmp(out, back, len) == 0);
    free(back);
}

TestSuite(nio_echo, .init = setup, .fini = teardown, .timeout = 60);

Test(nio_echo, frame_split_byte_by_byte)
{
    int fd = cli_connect(E.port);
    uint8_t f[200];
    frame_fill(f, sizeof(f), 1);
    for (size_t i = 0; i < sizeof(f); i++) {
        cli_write_all(&E.d, fd, f + i, 1);
        drv_step(&E.d, 1);
    }
    uint8_t back[sizeof(f)];
    cr_assert_eq(cli_read_exact(&E.d, fd, back, sizeof(back)), sizeof(back));
    cr_assert(memcmp(f, back, sizeof(f)) == 0);
    cr_assert_eq(srv_stats().frames_in, 1);
    close(fd);
}

Test(nio_echo, many_frames_in_one_write)
{
    int fd = cli_connect(E.port);
    enum { FRAMES = 500 };
    size_t total = 0;
    uint8_t *buf = malloc(FRAMES * 1024);
    cr_assert(buf != NULL);
    for (uint32_t i = 0; i < FRAMES; i++) {
        uint32_t size = 24 + 8 * (i % 100);
        frame_fill(buf + total, size, i);
        total += size;
    }
    round_trip(fd, buf, total);
    struct nio_stats s = srv_stats();
    cr_assert_eq(s.frames_in, FRAMES);
    cr_assert_eq(s.bytes_in, total);
    cr_assert_eq(s.bytes_out, total);
    cr_assert_lt(s.sends, FRAMES, "output is coalesced: fewer sends than frames");
    free(buf);
    close(fd);
}

Test(nio_echo, maximal_frame)
{
    int fd = cli_connect(E.port);
    uint32_t size = TS_FRAME_BYTES_MAX;
    uint8_t *f = malloc(size);
    cr_assert(f != NULL);
    frame_fill(f, size, 7);
    round_trip(fd, f, size);
    /* And a small one after it on the same connection. */
    frame_fill(f, 64, 8);
    round_trip(fd, f, 64);
    cr_assert_eq(srv_stats().frames_in, 2);
    cr_assert_eq(E.closes, 0);
    free(f);
    close(fd);
}

Test(nio_echo, bad_frames_close_only_their_connection)
{
    int good = cli_connect(E.port);
    int bad_len = cli_connect(E.port);
    int too_big = cli_connect(E.port);
    uint8_t f[64];
    frame_fill(f, sizeof(f), 3);
    round_trip(good, f, sizeof(f));

    uint8_t hdr[8] = {0};
    ts_store_le32(hdr, 21); /* 4 + 21 is not a multiple of 8 */
    cli_write_all(&E.d, bad_len, hdr, sizeof(hdr));
    cr_assert(cli_wait_eof(&E.d, bad_len, 2000));
    ts_store_le32(hdr, TS_FRAME_BYTES_MAX); /* 4 + L above frame_bytes_max */
    cli_write_all(&E.d, too_big, hdr, 4);
    cr_assert(cli_wait_eof(&E.d, too_big, 2000));

    for (int i = 0; i < 100 && E.closes < 2; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.closes, 2);
    bool proto = E.reasons[0] == TS_EPROTO || E.reasons[1] == TS_EPROTO;
    bool big = E.reasons[0] == TS_ETOOBIG || E.reasons[1] == TS_ETOOBIG;
    cr_assert(proto && big, "reasons %d %d", E.reasons[0], E.reasons[1]);
    cr_assert_eq(srv_stats().closed_proto, 2);
    round_trip(good, f, sizeof(f)); /* the good connection keeps working */
    close(good);
    close(bad_len);
    close(too_big);
}

Test(nio_echo, peer_close_is_reported)
{
    int fd = cli_connect(E.port);
    uint8_t f[32];
    frame_fill(f, sizeof(f), 4);
    round_trip(fd, f, sizeof(f));
    close(fd);
    for (int i = 0; i < 1000 && E.closes == 0; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], 0);
    cr_assert_eq(srv_stats().conns_open, 0);
}

/* ---- Many connections ------------------------------------------------------------ */

static void setup_many(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    cr_assert_geq(rl.rlim_cur, 2100, "need 2 x 1,000 descriptors and some");
    setup_ring_only();
    srv_start(&(struct nio_config){.conns_max = 1024});
}

Test(nio_many, thousand_concurrent_connections, .init = setup_many, .fini = teardown, .timeout = 60)
{
    enum { CONNS = 1000 };
    static int fds[CONNS];
    static uint8_t got[CONNS][32];
    static size_t have[CONNS];
    uint8_t f[CONNS][32];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = cli_connect(E.port);
        frame_fill(f[i], 32, (uint32_t)i);
    }
    for (int i = 0; i < CONNS; i++) {
        cli_write_all(&E.d, fds[i], f[i], 32);
    }
    int done = 0;
    for (int spins = 0; done < CONNS; spins++) {
        cr_assert_lt(spins, 100000);
        drv_step(&E.d, 1);
        for (int i = 0; i < CONNS; i++) {
            if (have[i] == 32) {
                continue;
            }
            ssize_t n = recv(fds[i], got[i] + have[i], 32 - have[i], 0);
            if (n > 0) {
                have[i] += (size_t)n;
                done += have[i] == 32;
            }
        }
    }
    for (int i = 0; i < CONNS; i++) {
        cr_assert(memcmp(got[i], f[i], 32) == 0);
        close(fds[i]);
    }
    struct nio_stats s = srv_stats();
    cr_assert_eq(s.accepted, CONNS);
    cr_assert_eq(s.frames_in, CONNS);
    cr_assert_eq(s.accept_rejected, 0);
}

Test(nio_many, full_table_rejects, .init = setup_ring_only, .fini = teardown)
{
    srv_start(&(struct nio_config){.conns_max = 2});
    int a = cli_connect(E.port);
    int b = cli_connect(E.port);
    int c = cli_connect(E.port);
    cr_assert(cli_wait_eof(&E.d, c, 2000), "the third connection is closed");
    uint8_t f[24];
    frame_fill(f, sizeof(f), 9);
    round_trip(a, f, sizeof(f));
    round_trip(b, f, sizeof(f));
    struct nio_stats s = srv_stats();
    cr_assert_eq(s.accepted, 2);
    cr_assert_eq(s.accept_rejected, 1);
    close(a);
    close(b);
    close(c);
}

/* ---- Back-pressure --------------------------------------------------------------- */

Test(nio_pressure, slow_reader_is_bounded, .init = setup_ring_only, .fini = teardown, .timeout = 60)
{
    const uint32_t out_max = 64 * 1024, frame_max = 4096;
    srv_start(&(struct nio_config){.out_bytes_max = out_max, .frame_bytes_max = frame_max});
    int slow = cli_connect(E.port);
    uint8_t f[1024];
    frame_fill(f, sizeof(f), 5);
    /* Write requests and never read answers, until neither side moves any more: the
     * client's socket is full because the server stopped reading. */
    uint64_t written = 0;
    size_t pos = 0; /* position in the frame being written */
    int stuck = 0;
    for (int i = 0; i < 200000 && stuck < 200; i++) {
        ssize_t n = send(slow, f + pos, sizeof(f) - pos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            written += (uint64_t)n;
            pos = (pos + (size_t)n) % sizeof(f);
            stuck = 0;
        } else {
            stuck++;
        }
        drv_step(&E.d, 0);
    }
    struct nio_stats s = srv_stats();
    struct nio_conn *sc = E.last_open;
    cr_assert_geq(s.pauses, 1, "the server stopped reading");
    cr_assert_not_null(sc);
    cr_assert(nio_conn_paused(sc));
    cr_assert_leq(nio_conn_out_bytes(sc), (size_t)out_max + frame_max);
    cr_assert_leq(s.out_bytes_peak, (uint64_t)out_max + frame_max);
    cr_assert_gt(written, s.bytes_in, "requests wait in the kernel, not in the server");
    /* Another client is still served. */
    int other = cli_connect(E.port);
    uint8_t g[48];
    frame_fill(g, sizeof(g), 6);
    round_trip(other, g, sizeof(g));
    /* The slow reader reads everything: the server drains and resumes. */
    uint8_t sink[65536];
    uint64_t back = 0;
    for (int i = 0; i < 200000 && (back < written || pos != 0); i++) {
        if (pos != 0) { /* finish the last frame so that all of it is echoed */
            ssize_t w = send(slow, f + pos, sizeof(f) - pos, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                written += (uint64_t)w;
                pos = (pos + (size_t)w) % sizeof(f);
            }
        }
        ssize_t n = recv(slow, sink, sizeof(sink), MSG_DONTWAIT);
        if (n > 0) {
            back += (uint64_t)n;
        } else {
            drv_step(&E.d, 1);
        }
    }
    cr_assert_eq(back, written);
    cr_assert_geq(srv_stats().resumes, 1);
    cr_assert_not(nio_conn_paused(sc));
    cr_assert_eq(srv_stats().send_full, 0, "no answer was refused: reading stopped in time");
    cr_assert_leq(srv_stats().out_bytes_peak, (uint64_t)out_max + frame_max);
    close(slow);
    close(other);
}

/* ---- Idle timeout ---------------------------------------------------------------- */

Test(nio_idle, idle_connection_is_closed, .init = setup_ring_only, .fini = teardown)
{
    srv_start(&(struct nio_config){.idle_ns = 50ull * 1000 * 1000});
    int idle = cli_connect(E.port);
    int busy = cli_connect(E.port);
    uint8_t f[24];
    frame_fill(f, sizeof(f), 1);
    round_trip(busy, f, sizeof(f));
    cr_assert_neq(nio_next_deadline_ns(srv()), 0);
    cr_assert(cli_wait_eof(&E.d, idle, 5000), "the idle connection is closed");
    for (int i = 0; i < 1000 && E.closes < 2; i++) {
        drv_step(&E.d, 5);
    }
    cr_assert_geq(E.closes, 1);
    cr_assert_eq(E.reasons[0], TS_ETIMEOUT);
    cr_assert_geq(srv_stats().closed_idle, 1);
    close(idle);
    close(busy);
}

/* ---- Outbound reconnect ---------------------------------------------------------- */

static void peer_up(struct nio_conn *c, void *data)
{
    struct echo *e = data;
    e->ups++;
}

static void peer_down(struct nio_conn *c, int reason, void *data)
{
    struct echo *e = data;
    e->downs++;
}

static void peer_frame(struct nio_conn *c, const uint8_t *frame, uint32_t len, void *data)
{
    struct echo *e = data;
    e->peer_frames++;
}

static void peer_close(struct nio_conn *c, int reason, void *data)
{
    struct echo *e = data;
    e->peer_closes++;
    cr_assert_eq(reason, TS_ESHUTDOWN);
}

static const struct nio_callbacks peer_cb = {.on_frame = peer_frame,
                                             .on_close = peer_close,
                                             .on_peer_up = peer_up,
                                             .on_peer_down = peer_down,
                                             .data = &E};

static void peer_exchange(struct nio_conn *c, uint32_t frames_before)
{
    uint8_t f[40];
    frame_fill(f, sizeof(f), 11);
    cr_assert_eq(nio_send(c, f, sizeof(f)), 0);
    for (int i = 0; i < 5000 && E.peer_frames == frames_before; i++) {
        drv_step(&E.d, 2);
    }
    cr_assert_eq(E.peer_frames, frames_before + 1);
}

Test(nio_peer, reconnects_after_listener_restart, .init = setup, .fini = teardown, .timeout = 60)
{
    struct nio *p;
    struct nio_config pc = {.reconnect_min_ns = 5ull * 1000 * 1000,
                            .reconnect_max_ns = 40ull * 1000 * 1000,
                            .seed = 42};
    cr_assert_eq(nio_create(&E.d.ring, PEER_TAG, &pc, &peer_cb, ts_allocator_default(), &p), 0);
    E.d.nios[PEER_TAG] = p;
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)E.port);
    struct nio_conn *c;
    cr_assert_eq(nio_connect(p, addr, &c), 0);
    cr_assert_eq(nio_send(c, "12345678", 8), TS_EUNAVAIL, "not up yet");
    for (int i = 0; i < 5000 && E.ups == 0; i++) {
        drv_step(&E.d, 2);
    }
    cr_assert_eq(E.ups, 1);
    peer_exchange(c, 0);

    /* Stop the server: the link goes down and reconnects fail with back-off. */
    drv_destroy_nio(&E.d, SRV_TAG);
    for (int i = 0; i < 5000 && E.downs == 0; i++) {
        drv_step(&E.d, 2);
    }
    cr_assert_eq(E.downs, 1);
    struct nio_stats ps;
    for (int i = 0; i < 5000; i++) {
        nio_stats(p, &ps);
        if (ps.connect_failures >= 2) {
            break;
        }
        drv_step(&E.d, 2);
    }
    cr_assert_geq(ps.connect_failures, 2);
    cr_assert_neq(nio_next_deadline_ns(p), 0, "a reconnect is scheduled");

    /* Restart on the same port: the link comes back and carries frames again. */
    srv_start(&(struct nio_config){0});
    for (int i = 0; i < 5000 && E.ups < 2; i++) {
        drv_step(&E.d, 2);
    }
    cr_assert_eq(E.ups, 2);
    peer_exchange(c, 1);
    nio_close(c);
    cr_assert_eq(E.peer_closes, 1);
}

/* ---- Destruction ----------------------------------------------------------------- */

Test(nio_destroy, with_connections_open_leaks_nothing, .init = setup_ring_only, .fini = teardown)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    struct nio *n;
    cr_assert_eq(nio_create(&E.d.ring, SRV_TAG, &(struct nio_config){.out_bytes_max = 4096},
                            &echo_cb, &fa.base, &n),
                 0);
    E.d.nios[SRV_TAG] = n;
    uint32_t id;
    cr_assert_eq(nio_listen(n, "127.0.0.1:0", &id), 0);
    cr_assert_eq(nio_listen_port(n, id, &E.port), 0);
    int fds[8];
    uint8_t f[4096];
    frame_fill(f, sizeof(f), 2);
    for (int i = 0; i < 8; i++) {
        fds[i] = cli_connect(E.port);
        cli_write_all(&E.d, fds[i], f, sizeof(f)); /* answers nobody reads */
        cli_write_all(&E.d, fds[i], f, 100);       /* and half a frame */
    }
    for (int i = 0; i < 50; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.opens, 8);
    struct nio_conn *out;
    cr_assert_eq(nio_connect(n, "127.0.0.1:1", &out), 0); /* refused, backing off */
    drv_destroy_nio(&E.d, SRV_TAG);
    cr_assert_eq(E.closes, 9, "on_close for every connection");
    cr_assert_eq(fa.live_bytes, 0, "everything given back");
    for (int i = 0; i < 8; i++) {
        close(fds[i]);
    }
}

Test(nio_destroy, conn_ids_do_not_resolve_after_close)
{
    setup();
    int fd = cli_connect(E.port);
    for (int i = 0; i < 1000 && E.last_open == NULL; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_not_null(E.last_open);
    uint64_t id = nio_conn_id(E.last_open);
    cr_assert_eq(nio_conn_lookup(srv(), id), E.last_open);
    nio_close(E.last_open);
    cr_assert_null(nio_conn_lookup(srv(), id));
    cr_assert(cli_wait_eof(&E.d, fd, 2000));
    close(fd);
    teardown();
}

/* ---- Provided buffers running dry ------------------------------------------------ */

Test(nio_bufs, enobufs_rearms_and_loses_nothing, .init = setup_ring_only, .fini = teardown)
{
    /* Two 64-byte buffers for eight connections that all send at once. */
    srv_start(&(struct nio_config){.recv_bufs = 2, .recv_buf_bytes = 64});
    enum { CONNS = 8, FRAMES = 20 };
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = cli_connect(E.port);
    }
    for (int i = 0; i < 1000 && E.opens < CONNS; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.opens, CONNS);
    static uint8_t buf[CONNS][FRAMES * 96];
    for (int i = 0; i < CONNS; i++) {
        for (int k = 0; k < FRAMES; k++) {
            frame_fill(buf[i] + k * 96, 96, (uint32_t)(i * FRAMES + k));
        }
        cli_write_all(&E.d, fds[i], buf[i], sizeof(buf[i]));
    }
    for (int i = 0; i < CONNS; i++) {
        uint8_t back[sizeof(buf[0])];
        cr_assert_eq(cli_read_exact(&E.d, fds[i], back, sizeof(back)), sizeof(back));
        cr_assert(memcmp(back, buf[i], sizeof(back)) == 0);
        close(fds[i]);
    }
    struct nio_stats s = srv_stats();
    cr_assert_eq(s.frames_in, CONNS * FRAMES);
    cr_assert_geq(s.enobufs, 1, "the ring ran dry");
    cr_assert_geq(s.recv_rearms, s.enobufs, "every -ENOBUFS was followed by a re-arm");
}

/* ---- Errors ---------------------------------------------------------------------- */

Test(nio_errors, bad_addresses_and_listeners, .init = setup, .fini = teardown)
{
    uint32_t id;
    cr_assert_eq(nio_listen(srv(), "127.0.0.1", &id), TS_EINVAL);
    cr_assert_eq(nio_listen(srv(), "localhost:80", &id), TS_EINVAL);
    cr_assert_eq(nio_listen(srv(), "127.0.0.1:70000", &id), TS_EINVAL);
    cr_assert_eq(nio_listen(srv(), "[::1:5", &id), TS_EINVAL);
    struct nio_conn *c;
    cr_assert_eq(nio_connect(srv(), "nowhere:1", &c), TS_EINVAL);
    uint16_t port;
    cr_assert_eq(nio_listen_port(srv(), 7, &port), TS_EINVAL);
    /* A second listener on the same port works: SO_REUSEPORT. */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)E.port);
    cr_assert_eq(nio_listen(srv(), addr, &id), 0);
    cr_assert_eq(nio_unlisten(srv(), E.listener), 0);
    cr_assert_eq(nio_unlisten(srv(), E.listener), TS_EINVAL);
    int fd = cli_connect(E.port); /* served by the second listener */
    uint8_t f[24];
    frame_fill(f, sizeof(f), 1);
    round_trip(fd, f, sizeof(f));
    close(fd);
    struct nio_config bad = {.recv_bufs = 3};
    struct nio *n;
    cr_assert_eq(nio_create(&E.d.ring, 3, &bad, &echo_cb, ts_allocator_default(), &n), TS_EINVAL);
}

Test(nio_errors, allocation_failures_leak_nothing, .init = setup_ring_only, .fini = teardown)
{
    for (long k = 0; k < 8; k++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), k);
        struct nio *n = NULL;
        int rc =
            nio_create(&E.d.ring, 3, &(struct nio_config){.conns_max = 4}, &echo_cb, &fa.base, &n);
        if (rc == 0) {
            E.d.nios[3] = n;
            drv_destroy_nio(&E.d, 3);
        } else {
            cr_assert_eq(rc, TS_ENOMEM);
        }
        cr_assert_eq(fa.live_bytes, 0, "countdown %ld", k);
    }
}

Test(nio_errors, reassembly_allocation_failure_closes_the_connection, .init = setup_ring_only,
     .fini = teardown)
{
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    struct nio *n;
    cr_assert_eq(nio_create(&E.d.ring, SRV_TAG, &(struct nio_config){0}, &echo_cb, &fa.base, &n),
                 0);
    E.d.nios[SRV_TAG] = n;
    cr_assert_eq(nio_listen(n, "127.0.0.1:0", &E.listener), 0);
    cr_assert_eq(nio_listen_port(n, E.listener, &E.port), 0);
    int fd = cli_connect(E.port);
    for (int i = 0; i < 1000 && E.opens == 0; i++) {
        drv_step(&E.d, 1);
    }
    fa.fail_after = fa.calls; /* every allocation from now on fails */
    uint8_t f[64];
    frame_fill(f, sizeof(f), 1);
    cli_write_all(&E.d, fd, f, 10); /* a partial frame must be buffered: no memory */
    cr_assert(cli_wait_eof(&E.d, fd, 2000));
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], TS_ENOMEM);
    close(fd);
    fa.fail_after = -1;
    drv_destroy_nio(&E.d, SRV_TAG);
    cr_assert_eq(fa.live_bytes, 0);
}

/* The other way out: the owner exits the ring (which waits for every operation), then
 * frees the nio without touching the ring. */
Test(nio_destroy, free_after_ring_exit)
{
    memset(&E, 0, sizeof(E));
    drv_init(&E.d);
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    struct nio *n;
    cr_assert_eq(nio_create(&E.d.ring, SRV_TAG, &(struct nio_config){0}, &echo_cb, &fa.base, &n),
                 0);
    E.d.nios[SRV_TAG] = n;
    cr_assert_eq(nio_listen(n, "127.0.0.1:0", &E.listener), 0);
    cr_assert_eq(nio_listen_port(n, E.listener, &E.port), 0);
    int a = cli_connect(E.port);
    int b = cli_connect(E.port);
    for (int i = 0; i < 1000 && E.opens < 2; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.opens, 2);
    nio_destroy(n); /* operations still in flight: cancels submitted, not reaped */
    cr_assert_eq(E.closes, 2);
    io_uring_queue_exit(&E.d.ring);
    nio_free_after_ring_exit(n);
    cr_assert_eq(fa.live_bytes, 0);
    close(a);
    close(b);
}

Test(nio_pressure, send_over_the_hard_limit_is_refused, .init = setup_ring_only, .fini = teardown)
{
    srv_start(&(struct nio_config){.out_bytes_max = 4096, .frame_bytes_max = 1024});
    int fd = cli_connect(E.port);
    for (int i = 0; i < 1000 && E.last_open == NULL; i++) {
        drv_step(&E.d, 1);
    }
    struct nio_conn *c = E.last_open;
    cr_assert_not_null(c);
    static uint8_t big[5120];
    cr_assert_eq(nio_send(c, big, 4000), 0);
    cr_assert_not(nio_conn_paused(c));
    cr_assert_eq(nio_send(c, big, 1000), 0); /* over the soft limit: reading stops */
    cr_assert(nio_conn_paused(c));
    cr_assert_eq(nio_send(c, big, 120), 0); /* exactly the hard limit */
    cr_assert_eq(nio_send(c, big, 1), TS_EFULL);
    cr_assert_eq(nio_conn_out_bytes(c), 5120);
    cr_assert_eq(srv_stats().send_full, 1);
    uint8_t back[5120];
    cr_assert_eq(cli_read_exact(&E.d, fd, back, sizeof(back)), sizeof(back));
    for (int i = 0; i < 1000 && nio_conn_paused(c); i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_not(nio_conn_paused(c));
    cr_assert_eq(nio_conn_out_bytes(c), 0);
    close(fd);
}

Test(nio_echo_log, bad_frame_reason_is_logged, .init = setup_ring_only, .fini = teardown)
{
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    struct ts_log log;
    ts_log_init(&log, fileno(tmp), TS_LOG_LEVEL_WARN);
    srv_start(&(struct nio_config){.log = &log});
    int fd = cli_connect(E.port);
    uint8_t hdr[4];
    ts_store_le32(hdr, 13); /* 4 + 13 is not a multiple of 8 */
    cli_write_all(&E.d, fd, hdr, sizeof(hdr));
    cr_assert(cli_wait_eof(&E.d, fd, 2000));
    close(fd);
    char text[4096] = {0};
    cr_assert_eq(fseek(tmp, 0, SEEK_SET), 0);
    size_t got = fread(text, 1, sizeof(text) - 1, tmp);
    cr_assert_gt(got, 0);
    cr_assert_not_null(strstr(text, "TS_EPROTO"), "log: %s", text);
    cr_assert_not_null(strstr(text, "malformed length"), "log: %s", text);
    drv_destroy_nio(&E.d, SRV_TAG); /* before the log it borrows goes away */
    fclose(tmp);
}
