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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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
    uint64_t send_nomem;
    uint32_t close_after; /* nio_close the connection at its n-th frame (0: never) */
    uint32_t frames_seen;
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
    if (e->close_after != 0 && ++e->frames_seen == e->close_after) {
        nio_close(c);
        return;
    }
    if (e->echo_off) {
        return;
    }
    int rc = nio_send(c, frame, len);
    if (rc == TS_EFULL) {
        e->send_full++;
        return;
    }
    if (rc == TS_ENOMEM) {
        e->send_nomem++;
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
    nio_close(c); /* the handle is valid during the call: closing again is a no-op */
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
    nio_stats(p, &ps);
    cr_assert_eq(ps.connect_timeouts, 0, "the connect made before the first tick did not time out");
    nio_close(c);
    cr_assert_eq(E.peer_closes, 1);
}

/* The outbound side: a nio with the peer callbacks under PEER_TAG. */
static struct nio *peer_start(const struct nio_config *pc)
{
    struct nio *p;
    cr_assert_eq(nio_create(&E.d.ring, PEER_TAG, pc, &peer_cb, ts_allocator_default(), &p), 0);
    E.d.nios[PEER_TAG] = p;
    return p;
}

static struct nio_conn *peer_connect(struct nio *p, uint16_t port)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
    struct nio_conn *c;
    cr_assert_eq(nio_connect(p, addr, &c), 0);
    return c;
}

/* Checks that what was logged into tmp contains needle. */
static void log_expect(FILE *tmp, const char *needle)
{
    char text[16384] = {0};
    cr_assert_eq(fseek(tmp, 0, SEEK_SET), 0);
    cr_assert_gt(fread(text, 1, sizeof(text) - 1, tmp), 0);
    cr_assert_not_null(strstr(text, needle), "log: %s", text);
}

/* A listener whose accept queue is full: listen(fd, 0) admits one connection, which is
 * never accepted, and the kernel then drops further SYNs (net.ipv4.tcp_abort_on_overflow
 * is 0 by default), so a connect to it hangs instead of failing. */
static int blackhole_listener(uint16_t *port, int *filler)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, len), 0);
    cr_assert_eq(listen(fd, 0), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    *filler = cli_connect(*port);
    struct pollfd pfd = {.fd = *filler, .events = POLLOUT};
    cr_assert_eq(poll(&pfd, 1, 2000), 1, "the filler connection completes");
    return fd;
}

/* Steps at the test clock `at` until cond holds (bounded), the real wait 2 ms a step. */
#define STEP_AT_UNTIL(at, cond)                                                                    \
    do {                                                                                           \
        for (int i_ = 0; i_ < 500 && !(cond); i_++) {                                              \
            drv_step_at(&E.d, (at), 2);                                                            \
        }                                                                                          \
        cr_assert(cond, "never: %s", #cond);                                                       \
    } while (0)

Test(nio_peer, connect_timeout_then_jittered_backoff_retries, .init = setup_ring_only,
     .fini = teardown)
{
    const uint64_t ms = 1000ull * 1000;
    const uint64_t timeout = 50 * ms, min = 10 * ms, max = 40 * ms;
    uint16_t port;
    int filler;
    int lfd = blackhole_listener(&port, &filler);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    struct ts_log log;
    ts_log_init(&log, fileno(tmp), TS_LOG_LEVEL_DEBUG);
    struct nio_config pc = {.connect_timeout_ns = timeout,
                            .reconnect_min_ns = min,
                            .reconnect_max_ns = max,
                            .seed = 7,
                            .log = &log};
    struct nio *p = peer_start(&pc);
    struct nio_conn *c = peer_connect(p, port);

    /* Test time starts at t; the kernel's connect is real and hangs. */
    uint64_t t = drv_now_ns();
    for (int i = 0; i < 20; i++) {
        drv_step_at(&E.d, t, 2);
    }
    struct nio_stats s;
    nio_stats(p, &s);
    cr_assert_eq(s.connects + s.connect_failures, 0, "the connect hangs");
    cr_assert_eq(nio_next_deadline_ns(p), t + timeout, "timeout counted from the first tick");

    uint64_t waits[4];
    for (uint32_t k = 1; k <= 4; k++) {
        t = nio_next_deadline_ns(p); /* the connect's timeout */
        STEP_AT_UNTIL(t, (nio_stats(p, &s), s.connect_failures == k));
        cr_assert_eq(s.connect_timeouts, k);
        /* The slot drains (the cancelled connect's CQE), then backs off. */
        STEP_AT_UNTIL(t, nio_next_deadline_ns(p) != 0 && nio_next_deadline_ns(p) < t + timeout);
        uint64_t d = min << (k - 1);
        d = d > max ? max : d;
        waits[k - 1] = nio_next_deadline_ns(p) - t;
        cr_assert(waits[k - 1] >= d / 2 && waits[k - 1] <= d, "attempt %u waits %llu ns, d %llu", k,
                  (unsigned long long)waits[k - 1], (unsigned long long)d);
        cr_assert_eq(nio_send(c, "12345678", 8), TS_EUNAVAIL);
        /* At the back-off deadline it connects again, with a new timeout. */
        t = nio_next_deadline_ns(p);
        drv_step_at(&E.d, t, 2);
        cr_assert_eq(nio_next_deadline_ns(p), t + timeout, "attempt %u retried", k + 1);
    }
    cr_assert_neq(waits[2], waits[3], "same d, different draws: the back-off is jittered");
    cr_assert_eq(E.ups + E.downs, 0, "a link that never came up is not reported up or down");

    /* Room in the accept queue: the next attempt (after one more timeout) connects. */
    int srv_side = accept(lfd, NULL, NULL);
    cr_assert_geq(srv_side, 0);
    for (int i = 0; i < 2000 && E.ups == 0; i++) {
        t += ms;
        drv_step_at(&E.d, t, 1);
    }
    cr_assert_eq(E.ups, 1);
    nio_stats(p, &s);
    cr_assert_eq(s.connects, 1);
    cr_assert_geq(s.connect_timeouts, 4);

    log_expect(tmp, ts_strerror(TS_ETIMEOUT)); /* each failed attempt is logged */
    drv_destroy_nio(&E.d, PEER_TAG);
    fclose(tmp);
    close(srv_side);
    close(filler);
    close(lfd);
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

/* ---- A full submission queue ----------------------------------------------------- */

/* A two-entry SQ and many connections sending at once: nearly every SQE net/io takes
 * finds the queue full, so it submits and takes one again (nio_sqe_get). Nothing may be
 * lost or reordered. */
Test(nio_sqe, tiny_sq_loses_nothing, .fini = teardown)
{
    memset(&E, 0, sizeof(E));
    drv_init_sq(&E.d, 2, 0);
    srv_start(&(struct nio_config){.recv_bufs = 16, .recv_buf_bytes = 512});
    enum { CONNS = 32, FRAMES = 40, BYTES_MAX = FRAMES * 256 };
    static int fds[CONNS];
    static uint8_t out[CONNS][BYTES_MAX];
    static uint8_t back[CONNS][BYTES_MAX];
    static size_t len[CONNS], have[CONNS], sent[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = cli_connect(E.port);
        for (uint32_t k = 0; k < FRAMES; k++) {
            uint32_t size = 24 + 8 * ((uint32_t)(i + k) % 29);
            frame_fill(out[i] + len[i], size, (uint32_t)(i * FRAMES) + k);
            len[i] += size;
        }
    }
    /* Every client writes everything before the server runs again, then all read. */
    size_t done = 0;
    for (int spins = 0; done < CONNS; spins++) {
        cr_assert_lt(spins, 200000);
        for (int i = 0; i < CONNS; i++) {
            if (sent[i] < len[i]) {
                ssize_t w = send(fds[i], out[i] + sent[i], len[i] - sent[i], MSG_NOSIGNAL);
                sent[i] += w > 0 ? (size_t)w : 0;
            }
        }
        drv_step(&E.d, 1);
        for (int i = 0; i < CONNS; i++) {
            if (have[i] == len[i]) {
                continue;
            }
            ssize_t r = recv(fds[i], back[i] + have[i], len[i] - have[i], 0);
            if (r > 0) {
                have[i] += (size_t)r;
                done += have[i] == len[i];
            }
        }
    }
    for (int i = 0; i < CONNS; i++) {
        cr_assert(memcmp(out[i], back[i], len[i]) == 0, "connection %d in order", i);
        close(fds[i]);
    }
    struct nio_stats s = srv_stats();
    cr_assert_eq(s.frames_in, CONNS * FRAMES);
    cr_assert_gt(s.sqe_full, CONNS, "the SQ was full again and again: %llu",
                 (unsigned long long)s.sqe_full);
    cr_assert_eq(s.sqe_unavailable, 0, "a submit always made room");
}

/* A ring that refuses every submission (created disabled, its two SQ entries taken):
 * net/io finds no SQE even after submitting. The listener's accept is armed later, the
 * connect goes straight to back-off; both recover once the ring works. */
Test(nio_sqe, no_sqe_at_all_defers_accept_and_connect, .fini = teardown)
{
    memset(&E, 0, sizeof(E));
    drv_init_sq(&E.d, 2, IORING_SETUP_R_DISABLED);
    struct nio *srvn;
    cr_assert_eq(nio_create(&E.d.ring, SRV_TAG, &(struct nio_config){0}, &echo_cb,
                            ts_allocator_default(), &srvn),
                 0);
    E.d.nios[SRV_TAG] = srvn;
    struct nio *p;
    struct nio_config pc = {.reconnect_min_ns = 1000 * 1000, .reconnect_max_ns = 2000 * 1000};
    cr_assert_eq(nio_create(&E.d.ring, PEER_TAG, &pc, &peer_cb, ts_allocator_default(), &p), 0);
    E.d.nios[PEER_TAG] = p;
    for (int i = 0; i < 2; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&E.d.ring);
        cr_assert_not_null(sqe);
        io_uring_prep_nop(sqe);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    cr_assert_eq(nio_listen(srvn, "127.0.0.1:0", &E.listener), 0);
    cr_assert_eq(nio_listen_port(srvn, E.listener, &E.port), 0);
    uint32_t spare;
    cr_assert_eq(nio_listen(srvn, "127.0.0.1:0", &spare), 0);
    cr_assert_eq(nio_unlisten(srvn, spare), 0, "a listener never armed closes at once");
    cr_assert_eq(srv_stats().sqe_unavailable, 2);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)E.port);
    struct nio_conn *c;
    cr_assert_eq(nio_connect(p, addr, &c), 0);
    struct nio_stats ps;
    nio_stats(p, &ps);
    cr_assert_eq(ps.sqe_unavailable, 1);
    cr_assert_eq(ps.connect_failures, 1, "no SQE for the connect: straight to back-off");
    cr_assert_neq(nio_next_deadline_ns(p), 0);

    /* io_uring_enable_rings is newer than liburing 2.3: the system call itself. */
    cr_assert_eq(
        syscall(__NR_io_uring_register, E.d.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0),
        0);
    for (int i = 0; i < 5000 && (E.ups == 0 || E.opens == 0); i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.ups, 1);
    cr_assert_eq(E.opens, 1);
    peer_exchange(c, 0);
    nio_close(c);
}

/* ---- A paused connection and the receive buffers --------------------------------- */

#define SLOW_FRAME 512u
#define SLOW_CYCLE 64u /* frame k carries the pattern of seed k % SLOW_CYCLE */

static uint8_t slow_cycle[SLOW_CYCLE * SLOW_FRAME];

/* A slow reader writes requests in large bursts and reads no answers, until neither side
 * moves: its output fills, reading stops, and the CQEs already on their way each time it
 * stops carry bytes nobody may deliver yet. Returns the client socket and the bytes it
 * wrote (the last frame may be partial). */
static int slow_reader(uint64_t *written)
{
    for (uint32_t k = 0; k < SLOW_CYCLE; k++) {
        frame_fill(slow_cycle + k * SLOW_FRAME, SLOW_FRAME, k);
    }
    int slow = cli_connect(E.port);
    uint64_t sent = 0;
    int stuck = 0;
    for (int i = 0; i < 100000 && stuck < 200; i++) {
        size_t at = (size_t)(sent % sizeof(slow_cycle));
        ssize_t w = send(slow, slow_cycle + at, sizeof(slow_cycle) - at, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (uint64_t)w;
            stuck = 0;
        } else {
            stuck++;
        }
        drv_step(&E.d, 0);
    }
    cr_assert_not_null(E.last_open);
    cr_assert(nio_conn_paused(E.last_open), "the slow reader is paused");
    *written = sent;
    return slow;
}

/* Finishes the last frame, reads every answer back (the server resumes) and checks the
 * order. */
static void slow_reader_drains(int slow, uint64_t written)
{
    uint64_t frames = (written + SLOW_FRAME - 1) / SLOW_FRAME;
    uint8_t back[SLOW_FRAME], want[SLOW_FRAME];
    size_t got = 0;
    uint64_t k = 0;
    for (int spins = 0; k < frames; spins++) {
        cr_assert_lt(spins, 1000000, "frame %llu of %llu never came", (unsigned long long)k,
                     (unsigned long long)frames);
        if (written % SLOW_FRAME != 0) {
            size_t at = (size_t)(written % sizeof(slow_cycle));
            size_t rest = SLOW_FRAME - (size_t)(written % SLOW_FRAME);
            ssize_t w = send(slow, slow_cycle + at, rest, MSG_NOSIGNAL);
            written += w > 0 ? (uint64_t)w : 0;
        }
        ssize_t r = recv(slow, back + got, sizeof(back) - got, 0);
        if (r <= 0) {
            drv_step(&E.d, 1);
            continue;
        }
        got += (size_t)r;
        if (got == sizeof(back)) {
            frame_fill(want, SLOW_FRAME, (uint32_t)(k % SLOW_CYCLE));
            cr_assert(memcmp(back, want, sizeof(back)) == 0, "frame %llu in order",
                      (unsigned long long)k);
            k++;
            got = 0;
        }
    }
}

Test(nio_pressure, paused_reader_does_not_starve_the_others, .init = setup_ring_only,
     .fini = teardown)
{
    /* Eight 1 KiB receive buffers for every connection of the shard. */
    srv_start(&(struct nio_config){.recv_bufs = 8,
                                   .recv_buf_bytes = 1024,
                                   .out_bytes_max = 4096,
                                   .frame_bytes_max = 16 * 1024});
    uint64_t written;
    int slow = slow_reader(&written);
    struct nio_stats s = srv_stats();
    cr_assert_gt(s.parked_bytes, 0, "bytes arrived while paused");
    cr_assert_eq(s.park_bufs, 0, "none of the ring's buffers is held");
    /* Other connections of the same nio keep flowing, with all eight buffers. */
    enum { OTHERS = 4, ROUNDS = 50 };
    int fds[OTHERS];
    for (int i = 0; i < OTHERS; i++) {
        fds[i] = cli_connect(E.port);
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < OTHERS; i++) {
            uint8_t f[256];
            frame_fill(f, sizeof(f), (uint32_t)(r * OTHERS + i));
            round_trip(fds[i], f, sizeof(f));
        }
    }
    slow_reader_drains(slow, written);
    cr_assert_geq(srv_stats().resumes, 1);
    for (int i = 0; i < OTHERS; i++) {
        close(fds[i]);
    }
    close(slow);
}

/* Past the copy limit (a small frame_bytes_max) the provided buffers themselves are
 * held; nothing is lost or reordered either way. */
Test(nio_pressure, paused_reader_past_the_copy_limit_holds_buffers, .init = setup_ring_only,
     .fini = teardown)
{
    srv_start(&(struct nio_config){
        .recv_bufs = 16, .recv_buf_bytes = 1024, .out_bytes_max = 2048, .frame_bytes_max = 1024});
    uint64_t written;
    int slow = slow_reader(&written);
    struct nio_stats s = srv_stats();
    cr_assert_gt(s.parked_bytes, 0);
    cr_assert_gt(s.park_bufs, 0, "the copy limit (2 KiB) was reached");
    slow_reader_drains(slow, written);
    close(slow);
}

/* ---- Error branches -------------------------------------------------------------- */

/* The process is out of descriptors: the multishot accept ends with -EMFILE, which is
 * logged and re-armed in the next iteration (not in a loop); once descriptors are free
 * again the waiting client is served. */
Test(nio_errors, accept_without_descriptors_is_retried, .init = setup_ring_only, .fini = teardown)
{
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    struct ts_log log;
    ts_log_init(&log, fileno(tmp), TS_LOG_LEVEL_WARN);
    srv_start(&(struct nio_config){.log = &log});
    int fd = cli_connect(E.port);
    int lowest = dup(0);
    cr_assert_geq(lowest, 0);
    close(lowest);
    struct rlimit old, none;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    none = (struct rlimit){.rlim_cur = (rlim_t)lowest, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
    for (int i = 0; i < 20; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert_eq(E.opens, 0, "nothing accepted without a descriptor");
    uint8_t f[32];
    frame_fill(f, sizeof(f), 1);
    round_trip(fd, f, sizeof(f));
    cr_assert_eq(E.opens, 1);
    log_expect(tmp, "accept on port");
    close(fd);
    drv_destroy_nio(&E.d, SRV_TAG); /* before the log it borrows goes away */
    fclose(tmp);
}

/* A client that resets its connection: the recv ends with -ECONNRESET, passed on. */
Test(nio_errors, reset_by_the_peer_passes_the_errno, .init = setup, .fini = teardown)
{
    int fd = cli_connect(E.port);
    uint8_t f[24];
    frame_fill(f, sizeof(f), 2);
    round_trip(fd, f, sizeof(f));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd); /* an RST, not a FIN */
    for (int i = 0; i < 1000 && E.closes == 0; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], -ECONNRESET, "reason %d", E.reasons[0]);
}

Test(nio_errors, send_without_memory_queues_nothing, .init = setup_ring_only, .fini = teardown)
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
    fa.fail_after = fa.calls; /* the echo's output buffer cannot be allocated */
    uint8_t f[64];
    frame_fill(f, sizeof(f), 3);
    cli_write_all(&E.d, fd, f, sizeof(f)); /* whole: delivered from the provided buffer */
    for (int i = 0; i < 1000 && E.send_nomem == 0; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.send_nomem, 1);
    cr_assert_eq(nio_conn_out_bytes(E.last_open), 0);
    fa.fail_after = -1;
    round_trip(fd, f, sizeof(f)); /* and the connection still works */
    close(fd);
    drv_destroy_nio(&E.d, SRV_TAG);
    cr_assert_eq(fa.live_bytes, 0);
}

Test(nio_ipv6, listener_and_peer_link, .init = setup_ring_only, .fini = teardown)
{
    struct nio *srvn;
    cr_assert_eq(nio_create(&E.d.ring, SRV_TAG, &(struct nio_config){0}, &echo_cb,
                            ts_allocator_default(), &srvn),
                 0);
    E.d.nios[SRV_TAG] = srvn;
    int rc = nio_listen(srvn, "[::1]:0", &E.listener);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        cr_skip_test("no IPv6 loopback here");
    }
    cr_assert_eq(rc, 0, "listen: %s", ts_strerror(rc));
    cr_assert_eq(nio_listen_port(srvn, E.listener, &E.port), 0);
    struct nio *p;
    cr_assert_eq(nio_create(&E.d.ring, PEER_TAG, &(struct nio_config){0}, &peer_cb,
                            ts_allocator_default(), &p),
                 0);
    E.d.nios[PEER_TAG] = p;
    char addr[48];
    snprintf(addr, sizeof(addr), "[::1]:%u", (unsigned)E.port);
    struct nio_conn *c;
    cr_assert_eq(nio_connect(p, addr, &c), 0);
    for (int i = 0; i < 5000 && E.ups == 0; i++) {
        drv_step(&E.d, 2);
    }
    cr_assert_eq(E.ups, 1);
    peer_exchange(c, 0);
    cr_assert_eq(nio_connect(p, "[::1]", &c), TS_EINVAL);
    cr_assert_eq(nio_connect(p, "[::1:80", &c), TS_EINVAL);
}

/* Tables full, handles, and what a destroyed nio answers. */
Test(nio_errors, limits_handles_and_shutdown_answers, .init = setup_ring_only, .fini = teardown)
{
    struct nio *p;
    struct nio_config pc = {.conns_max = 2,
                            .reconnect_min_ns = 1000ull * 1000 * 1000,
                            .reconnect_max_ns = 1000ull * 1000 * 1000};
    cr_assert_eq(nio_create(&E.d.ring, PEER_TAG, &pc, &peer_cb, ts_allocator_default(), &p), 0);
    E.d.nios[PEER_TAG] = p;
    uint32_t ids[TS_NIO_LISTENERS_MAX];
    for (uint32_t i = 0; i < TS_NIO_LISTENERS_MAX; i++) {
        cr_assert_eq(nio_listen(p, "127.0.0.1:0", &ids[i]), 0);
    }
    uint32_t extra;
    cr_assert_eq(nio_listen(p, "127.0.0.1:0", &extra), TS_EFULL);
    cr_assert_eq(nio_listen(p, "10.255.255.1:0", &extra), TS_EFULL);
    cr_assert_eq(nio_unlisten(p, ids[0]), 0);
    for (int i = 0; i < 10; i++) {
        drv_step(&E.d, 1); /* the cancelled accept's last CQE frees the slot */
    }
    cr_assert_eq(nio_listen(p, "192.0.2.1:0", &extra), -EADDRNOTAVAIL, "bind fails: -errno");

    /* A refused link backs off; closing it there frees it at once. */
    struct nio_conn *a, *b, *c;
    cr_assert_eq(nio_connect(p, "127.0.0.1:1", &a), 0);
    cr_assert_eq(nio_connect(p, "127.0.0.1:1", &b), 0);
    cr_assert_eq(nio_connect(p, "127.0.0.1:1", &c), TS_EFULL);
    struct nio_stats s;
    for (int i = 0; i < 1000; i++) {
        nio_stats(p, &s);
        if (s.connect_failures >= 2) {
            break;
        }
        drv_step(&E.d, 1);
    }
    cr_assert_eq(s.connect_failures, 2, "both refused, both backing off (1 s)");
    int tagged = 5;
    nio_conn_set_data(a, &tagged);
    cr_assert_eq(nio_conn_data(a), &tagged);
    cr_assert_eq(nio_conn_nio(a), p);
    cr_assert(nio_conn_outbound(a));
    cr_assert_not(nio_conn_paused(a));
    cr_assert_eq(nio_send(a, "12345678", 8), TS_EUNAVAIL);
    uint64_t id = nio_conn_id(a);
    nio_close(a);
    cr_assert_eq(E.peer_closes, 1);
    cr_assert_null(nio_conn_lookup(p, id));
    cr_assert_null(nio_conn_lookup(p, 12345));
    nio_stats(p, &s);
    cr_assert_eq(s.conns_open, 1, "closed in back-off: the slot is free at once");

    nio_destroy(p);
    cr_assert_eq(E.peer_closes, 2);
    cr_assert_eq(nio_listen(p, "127.0.0.1:0", &extra), TS_ESHUTDOWN);
    cr_assert_eq(nio_connect(p, "127.0.0.1:1", &c), TS_ESHUTDOWN);
    drv_destroy_nio(&E.d, PEER_TAG); /* reaps and frees */
}

/* ---- Closing at awkward moments -------------------------------------------------- */

/* on_frame closes its connection: nothing more is delivered from that read, whether the
 * frame came whole from a provided buffer or was reassembled. */
Test(nio_echo, close_from_on_frame_stops_delivery)
{
    uint8_t three[3 * 64];
    for (uint32_t k = 0; k < 3; k++) {
        frame_fill(three + k * 64, 64, k);
    }
    E.close_after = 2;
    int fd = cli_connect(E.port);
    cli_write_all(&E.d, fd, three, sizeof(three)); /* one write: one provided buffer */
    cr_assert(cli_wait_eof(&E.d, fd, 2000));
    cr_assert_eq(srv_stats().frames_in, 2, "the third frame was not delivered");
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], TS_ESHUTDOWN);
    close(fd);

    E.frames_seen = 0;
    E.close_after = 1;
    fd = cli_connect(E.port);
    cli_write_all(&E.d, fd, three, 40); /* the first frame split over two reads */
    for (int i = 0; i < 20; i++) {
        drv_step(&E.d, 1);
    }
    cli_write_all(&E.d, fd, three + 40, sizeof(three) - 40);
    cr_assert(cli_wait_eof(&E.d, fd, 2000));
    cr_assert_eq(srv_stats().frames_in, 3);
    cr_assert_eq(E.closes, 2);
    close(fd);
}

static struct nio_conn *wait_open(void)
{
    for (int i = 0; i < 1000 && E.last_open == NULL; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_not_null(E.last_open);
    return E.last_open;
}

/* A client whose receive buffer is small, so that the server's output backs up soon. */
static int cli_connect_small(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    cr_assert(fd >= 0);
    int small = 4096;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    cr_assert(rc == 0 || errno == EINPROGRESS);
    return fd;
}

/* Output the client does not read keeps a send in flight; closing then cancels it, and
 * the slot is freed only after the kernel lets go of the buffer. */
Test(nio_echo, close_with_a_send_in_flight)
{
    int fd = cli_connect_small(E.port);
    struct nio_conn *c = wait_open();
    static uint8_t big[8u << 20]; /* more than the server's socket buffer can take */
    cr_assert_eq(nio_send(c, big, sizeof(big)), 0);
    for (int i = 0; i < 50; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_gt(nio_conn_out_bytes(c), 0, "the kernel's buffers are full: a send waits");
    nio_close(c);
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], TS_ESHUTDOWN);
    cr_assert_eq(srv_stats().conns_open, 1, "the slot waits for the cancelled send");
    for (int i = 0; i < 1000 && srv_stats().conns_open > 0; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(srv_stats().conns_open, 0);
    close(fd);
}

/* The client resets while a send is in flight: the connection closes with the error of
 * whichever operation saw the reset first. */
Test(nio_echo, reset_with_a_send_in_flight)
{
    int fd = cli_connect_small(E.port);
    struct nio_conn *c = wait_open();
    static uint8_t big[8u << 20]; /* more than the server's socket buffer can take */
    cr_assert_eq(nio_send(c, big, sizeof(big)), 0);
    for (int i = 0; i < 50; i++) {
        drv_step(&E.d, 1);
    }
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    for (int i = 0; i < 1000 && (E.closes == 0 || srv_stats().conns_open > 0); i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.closes, 1);
    cr_assert(E.reasons[0] == -ECONNRESET || E.reasons[0] == -EPIPE, "reason %s",
              ts_strerror(E.reasons[0]));
    cr_assert_eq(srv_stats().conns_open, 0);
}

/* A paused connection that holds provided buffers gives them back when it closes. */
Test(nio_pressure, closing_a_paused_reader_gives_its_buffers_back, .init = setup_ring_only,
     .fini = teardown)
{
    srv_start(&(struct nio_config){
        .recv_bufs = 16, .recv_buf_bytes = 1024, .out_bytes_max = 2048, .frame_bytes_max = 1024});
    uint64_t written;
    int slow = slow_reader(&written);
    struct nio_stats s = srv_stats();
    cr_log_info("paused: %u buffers held, %llu bytes copied", s.bufs_held,
                (unsigned long long)s.parked_bytes);
    nio_close(E.last_open);
    cr_assert_eq(srv_stats().bufs_held, 0);
    cr_assert(cli_wait_eof(&E.d, slow, 100000));
    close(slow);
    /* All sixteen buffers serve the next connection. */
    int fd = cli_connect(E.port);
    uint8_t f[1024];
    frame_fill(f, sizeof(f), 9);
    round_trip(fd, f, sizeof(f));
    close(fd);
}

/* ---- No SQE even after a submit (injected) --------------------------------------- */

/* The SQ is full and submitting cannot empty it (io_uring_submit fails: interposed):
 * the recv of a new connection, a send and the cancel of a paused recv are each deferred
 * to the next nio_flush, and nothing is lost. */
Test(nio_sqe, submit_failure_defers_recv_send_and_cancel, .fini = teardown)
{
    memset(&E, 0, sizeof(E));
    drv_init_sq(&E.d, 4, 0);
    srv_start(&(struct nio_config){.out_bytes_max = 4096, .frame_bytes_max = 1024});
    int fd = cli_connect(E.port);
    /* The accept's CQE arrives; dispatch it with no SQE to be had. */
    for (int i = 0; i < 1000 && E.opens == 0; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.opens, 1);
    struct nio_stats s0 = srv_stats();
    cr_assert_eq(s0.recv_arms, 1, "armed at accept: the SQ had room");

    /* A send with no SQE: it waits on the flush list. */
    struct nio_conn *c = E.last_open;
    uint8_t f[64];
    frame_fill(f, sizeof(f), 4);
    cr_assert_eq(nio_send(c, f, sizeof(f)), 0);
    drv_fill_sq(&E.d);
    drv_submit_fails = true;
    nio_flush(srv());
    drv_submit_fails = false;
    cr_assert_eq(srv_stats().sends, 0);
    cr_assert_gt(srv_stats().sqe_unavailable, s0.sqe_unavailable);
    uint8_t back[64];
    cr_assert_eq(cli_read_exact(&E.d, fd, back, sizeof(back)), sizeof(back));
    cr_assert(memcmp(back, f, sizeof(f)) == 0);

    /* Over the output limit with no SQE: the recv's cancel waits for the next flush. */
    static uint8_t big[5000];
    uint64_t unavailable = srv_stats().sqe_unavailable;
    drv_fill_sq(&E.d);
    drv_submit_fails = true;
    cr_assert_eq(nio_send(c, big, sizeof(big)), 0);
    drv_submit_fails = false;
    cr_assert(nio_conn_paused(c));
    cr_assert_gt(srv_stats().sqe_unavailable, unavailable);
    static uint8_t sink[5000];
    cr_assert_eq(cli_read_exact(&E.d, fd, sink, sizeof(sink)), sizeof(sink));
    for (int i = 0; i < 1000 && nio_conn_paused(c); i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_not(nio_conn_paused(c));
    round_trip(fd, f, sizeof(f));
    close(fd);

    /* A new connection whose recv cannot be armed at accept: armed at the next flush. */
    E.last_open = NULL;
    fd = cli_connect(E.port);
    uint64_t arms = srv_stats().recv_arms;
    for (int i = 0; i < 1000 && E.last_open == NULL; i++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        struct io_uring_cqe *cqe;
        (void)io_uring_submit_and_wait_timeout(&E.d.ring, &cqe, 1, &ts, NULL);
        (void)io_uring_get_events(&E.d.ring);
        drv_fill_sq(&E.d);
        drv_submit_fails = true;
        drv_dispatch(&E.d); /* the accept's CQE, if it came: no SQE for the recv */
        drv_submit_fails = false;
    }
    cr_assert_not_null(E.last_open);
    cr_assert_eq(srv_stats().recv_arms, arms, "the new connection's recv is not armed yet");
    round_trip(fd, f, sizeof(f));
    close(fd);
}

/* ---- More edges ------------------------------------------------------------------ */

/* A length prefix split over two reads is checked once whole. */
Test(nio_echo, bad_header_split_over_reads)
{
    int fd = cli_connect(E.port);
    uint8_t hdr[4];
    ts_store_le32(hdr, 21); /* 4 + 21 is not a multiple of 8 */
    cli_write_all(&E.d, fd, hdr, 2);
    for (int i = 0; i < 20; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert_eq(E.closes, 0, "half a header is not an error yet");
    cli_write_all(&E.d, fd, hdr + 2, 2);
    cr_assert(cli_wait_eof(&E.d, fd, 2000));
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], TS_EPROTO);
    close(fd);
}

/* A connection accepted before net/io's first tick counts its idleness from that tick,
 * not from the epoch of the owner's clock (which would close it at once). */
Test(nio_idle, accepted_before_the_first_tick, .init = setup_ring_only, .fini = teardown)
{
    const uint64_t idle = 1000ull * 1000 * 1000;
    srv_start(&(struct nio_config){.idle_ns = idle});
    int fd = cli_connect(E.port);
    for (int i = 0; i < 1000 && E.opens == 0; i++) {
        drv_wait(&E.d, 1); /* dispatch only: no tick yet */
    }
    cr_assert_eq(E.opens, 1);
    uint64_t t = drv_now_ns();
    drv_step_at(&E.d, t, 1);
    cr_assert_eq(E.closes, 0);
    cr_assert_eq(nio_next_deadline_ns(srv()), t + idle);
    drv_step_at(&E.d, t + idle, 1);
    cr_assert_eq(E.closes, 1);
    cr_assert_eq(E.reasons[0], TS_ETIMEOUT);
    close(fd);
}

Test(nio_errors, host_too_long, .init = setup, .fini = teardown)
{
    uint32_t id;
    char addr[128];
    memset(addr, '1', sizeof(addr));
    memcpy(addr + 100, ":80", 4);
    cr_assert_eq(nio_listen(srv(), addr, &id), TS_EINVAL);
}

/* on_frame closes the connection while parked input is being delivered after a resume:
 * from the connection's copy, and from a held provided buffer. */
static void close_while_unparking(uint32_t close_at)
{
    srv_start(&(struct nio_config){
        .recv_buf_bytes = 1024, .out_bytes_max = 4096, .frame_bytes_max = 1024});
    E.close_after = close_at;
    int fd = cli_connect(E.port);
    enum { FRAMES = 16, SIZE = 512 };
    static uint8_t burst[FRAMES * SIZE];
    for (uint32_t k = 0; k < FRAMES; k++) {
        frame_fill(burst + k * SIZE, SIZE, k);
    }
    /* One write: frames 1-9 are echoed and pause the reading (9 x 512 > 4096); the rest
     * arrives while paused: copied aside up to 2 KiB, then held in provided buffers. */
    cli_write_all(&E.d, fd, burst, sizeof(burst));
    struct nio_conn *c = wait_open();
    for (int i = 0; i < 1000 && srv_stats().frames_in < 9; i++) {
        drv_step(&E.d, 1);
    }
    cr_assert(nio_conn_paused(c));
    cr_assert_gt(srv_stats().parked_bytes, 0);
    cr_assert_gt(srv_stats().bufs_held, 0);
    /* The client reads the answers: reading resumes, parked frames are delivered, and
     * frame close_at closes the connection. */
    uint8_t back[9 * SIZE];
    for (size_t got = 0; E.closes == 0;) {
        ssize_t r = recv(fd, back, sizeof(back), 0);
        got += r > 0 ? (size_t)r : 0;
        cr_assert_leq(got, sizeof(back));
        drv_step(&E.d, 1);
    }
    cr_assert_eq(srv_stats().frames_in, close_at, "nothing after the closing frame");
    cr_assert_eq(srv_stats().bufs_held, 0, "held buffers went back to the ring at the close");
    cr_assert(cli_wait_eof(&E.d, fd, 5000));
    close(fd);
}

Test(nio_pressure, close_while_delivering_copied_input, .init = setup_ring_only, .fini = teardown)
{
    close_while_unparking(10);
}

Test(nio_pressure, close_while_delivering_a_held_buffer, .init = setup_ring_only, .fini = teardown)
{
    close_while_unparking(14);
}
