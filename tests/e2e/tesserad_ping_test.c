/*
 * tesserad_ping: the transport of a real tesserad process, end to end (STYLE R22).
 *
 *   tesserad_ping_test PATH_TO_TESSERAD
 *
 * Starts `tesserad --listen 127.0.0.1:0 --shards 2` (the PID it started is the only one
 * it signals), reads the port from its first line, then checks through the client
 * library (net/client) and raw sockets:
 *   - blocking pings, and 20,000 pipelined asynchronous pings with 256 in flight on two
 *     connections, every payload echoed;
 *   - a request the server does not serve yet is answered with status Unavailable;
 *   - bad input closes only the connection that sent it: a length that is not a
 *     multiple of 8, a length over TS_FRAME_BYTES_MAX, a frame that does not verify, a
 *     message that is not a Request; pings on other connections keep working;
 *   - 500 connections at once, each with a round trip;
 *   - SIGTERM while pings are in flight: tesserad exits with status 0 (bounded wait).
 * Exits 0 on success, 1 on failure, 77 when tesserad cannot start for lack of io_uring.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util/limits.h"
#include "core/util/mem.h"
#include "net/client/tessera.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"

#define CONNS_MANY 500
#define ASYNC_PINGS 20000

static pid_t server_pid;
static uint16_t server_port;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tesserad_ping: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    exit(1);
}

/* Starts tesserad and reads "tesserad: listening on IP:PORT with N shards". */
static void start_server(const char *path)
{
    int out[2];
    if (pipe(out) != 0) {
        fail("pipe: %s", strerror(errno));
    }
    server_pid = fork();
    if (server_pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        execl(path, path, "--listen", "127.0.0.1:0", "--shards", "2", "--log-level", "error",
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[256] = {0};
    size_t len = 0;
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    while (len < sizeof line - 1 && strchr(line, '\n') == NULL) {
        if (poll(&p, 1, 10000) != 1) {
            fail("tesserad printed no listening line within 10 s");
        }
        ssize_t n = read(out[0], line + len, sizeof line - 1 - len);
        if (n <= 0) {
            int st = 0;
            waitpid(server_pid, &st, 0);
            server_pid = 0;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 1) {
                fprintf(stderr, "tesserad_ping: tesserad could not start (io_uring?): skipped\n");
                exit(77);
            }
            fail("tesserad exited before listening");
        }
        len += (size_t)n;
    }
    const char *colon = strrchr(line, ':');
    if (strstr(line, "listening on") == NULL || colon == NULL) {
        fail("unexpected first line: %s", line);
    }
    server_port = (uint16_t)atoi(colon + 1);
    close(out[0]);
}

static struct tessera_client *client_new(uint32_t conns)
{
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%u", (unsigned)server_port);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = ep;
    cfg.connections_per_endpoint = conns;
    cfg.inflight_max = 256;
    cfg.request_timeout_ms = 10000;
    struct tessera_client *c;
    int rc = tessera_client_new(&cfg, &c);
    if (rc != 0) {
        fail("tessera_client_new: %s", tessera_strerror(rc));
    }
    return c;
}

struct async_state {
    uint64_t done;
    uint64_t bad;
};

static void on_ping(void *data, int status, const struct tessera_response *resp)
{
    struct async_state *s = data;
    s->done++;
    if (status != 0 || resp == NULL || resp->op != TESSERA_OP_PING || resp->u.ping.len != 64 ||
        resp->u.ping.payload[0] != 'p' || resp->u.ping.payload[63] != 'q') {
        s->bad++;
    }
}

static void check_pings(void)
{
    struct tessera_client *c = client_new(2);
    for (int i = 0; i < 100; i++) {
        int rc = tessera_ping(c, "hello", 5, 10000);
        if (rc != 0) {
            fail("blocking ping %d: %s", i, tessera_strerror(rc));
        }
    }
    uint8_t payload[64];
    memset(payload, 'p', sizeof payload);
    payload[63] = 'q';
    struct async_state s = {0};
    uint64_t sent = 0;
    for (int guard = 0; s.done < ASYNC_PINGS && guard < 1000000; guard++) {
        while (sent < ASYNC_PINGS && tessera_client_inflight(c) < 256) {
            int rc = tessera_ping_async(c, payload, sizeof payload, on_ping, &s);
            if (rc != 0) {
                fail("tessera_ping_async: %s", tessera_strerror(rc));
            }
            sent++;
        }
        if (tessera_client_run(c, 1000) < 0) {
            fail("tessera_client_run failed");
        }
    }
    if (s.done != ASYNC_PINGS || s.bad != 0) {
        fail("async pings: %llu done, %llu bad", (unsigned long long)s.done,
             (unsigned long long)s.bad);
    }
    tessera_client_free(c);
    printf("tesserad_ping: 100 blocking and %d pipelined pings answered\n", ASYNC_PINGS);
}

/* ------------------------------------------------------------------ raw sockets */

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(server_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fail("connect: %s", strerror(errno));
    }
    return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return; /* the server may close first: the checks below see it */
        }
        p += n;
        len -= (size_t)n;
    }
}

/* The server must close fd (end of stream or reset) without answering. */
static void expect_closed(int fd, const char *what)
{
    uint8_t buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
        fail("%s: the server answered instead of closing", what);
    }
    if (n < 0 && errno != ECONNRESET) {
        fail("%s: the connection was not closed within 10 s (%s)", what, strerror(errno));
    }
    close(fd);
}

/* Builds a framed Message{Request{id, op}} with op a Ping or a Get, or a Hello. */
static uint32_t build(struct proto_builder *b, int kind, const uint8_t **out)
{
    proto_builder_reset(b);
    proto_ref body;
    uint8_t body_type = PROTO_BODY_REQUEST;
    if (kind == 2) {
        proto_hello_begin(b);
        body = proto_hello_end(b);
        body_type = PROTO_BODY_HELLO;
    } else {
        proto_ref op;
        if (kind == 0) {
            proto_ref pl = proto_create_bytes(b, "raw", 3);
            proto_ping_request_begin(b);
            proto_ping_request_add_payload(b, pl);
            op = proto_ping_request_end(b);
        } else {
            proto_ref key = proto_create_bytes(b, "k", 1);
            proto_get_request_begin(b);
            proto_get_request_add_key(b, key);
            op = proto_get_request_end(b);
        }
        proto_request_begin(b);
        proto_request_add_id(b, 77);
        proto_request_add_op(
            b, kind == 0 ? PROTO_REQUEST_OP_PING_REQUEST : PROTO_REQUEST_OP_GET_REQUEST, op);
        body = proto_request_end(b);
    }
    proto_message_begin(b);
    proto_message_add_body(b, body_type, body);
    proto_ref msg = proto_message_end(b);
    uint32_t len;
    if (proto_message_finish(b, msg, true, out, &len) != 0) {
        fail("building a frame");
    }
    return len;
}

/* Sends a request of `kind` and returns the answer's status (reads one whole frame). */
static int raw_request(int fd, struct proto_builder *b, int kind)
{
    const uint8_t *frame;
    uint32_t len = build(b, kind, &frame);
    send_all(fd, frame, len);
    static uint8_t in[65536];
    size_t got = 0;
    int64_t fs = 0;
    while ((fs = proto_frame_size(in, got, sizeof in)) == 0) {
        ssize_t n = recv(fd, in + got, sizeof in - got, 0);
        if (n <= 0) {
            fail("no answer to a raw request of kind %d", kind);
        }
        got += (size_t)n;
    }
    struct proto_message m;
    char why[128];
    if (fs < 0 || proto_message_decode(in, (size_t)fs, true, &m, why, sizeof why) != 0) {
        fail("the answer does not verify");
    }
    struct proto_response r = proto_message_body_as_response(m);
    if (r.tab == NULL || proto_response_id(r) != 77) {
        fail("the answer is not the Response to request 77");
    }
    return proto_response_status(r);
}

static void check_bad_input(void)
{
    struct proto_builder b;
    if (proto_builder_init(&b, ts_allocator_default(), 1024, TS_FRAME_BYTES_MAX) != 0) {
        fail("builder");
    }
    int witness = raw_connect(); /* must keep working throughout */
    if (raw_request(witness, &b, 0) != PROTO_STATUS_OK) {
        fail("a raw ping was not answered Ok");
    }
    if (raw_request(witness, &b, 1) != PROTO_STATUS_UNAVAILABLE) {
        fail("a Get was not answered Unavailable by a build that serves Ping only");
    }
    uint8_t bad_len[8] = {5, 0, 0, 0, 0, 0, 0, 0}; /* 4 + 5 is not a multiple of 8 */
    int fd = raw_connect();
    send_all(fd, bad_len, sizeof bad_len);
    expect_closed(fd, "a length that is not a multiple of 8");
    uint32_t huge = TS_FRAME_BYTES_MAX + 4;
    fd = raw_connect();
    send_all(fd, &huge, sizeof huge);
    expect_closed(fd, "a length over TS_FRAME_BYTES_MAX");
    uint8_t garbage[20] = {16, 0, 0, 0};
    memset(garbage + 4, 0xff, 16);
    fd = raw_connect();
    send_all(fd, garbage, sizeof garbage);
    expect_closed(fd, "a frame that does not verify");
    const uint8_t *hello;
    uint32_t hello_len = build(&b, 2, &hello);
    fd = raw_connect();
    send_all(fd, hello, hello_len);
    expect_closed(fd, "a message that is not a Request");
    if (raw_request(witness, &b, 0) != PROTO_STATUS_OK) {
        fail("the witness connection stopped working after bad input on others");
    }
    close(witness);
    proto_builder_fini(&b);
    printf("tesserad_ping: bad input closed only its own connections\n");
}

static void check_many_connections(void)
{
    static int fds[CONNS_MANY];
    struct proto_builder b;
    if (proto_builder_init(&b, ts_allocator_default(), 1024, TS_FRAME_BYTES_MAX) != 0) {
        fail("builder");
    }
    for (int i = 0; i < CONNS_MANY; i++) {
        fds[i] = raw_connect();
    }
    for (int i = 0; i < CONNS_MANY; i++) {
        if (raw_request(fds[i], &b, 0) != PROTO_STATUS_OK) {
            fail("connection %d: ping not answered Ok", i);
        }
    }
    for (int i = 0; i < CONNS_MANY; i++) {
        close(fds[i]);
    }
    proto_builder_fini(&b);
    printf("tesserad_ping: %d connections at once, one round trip each\n", CONNS_MANY);
}

/* SIGTERM with pings in flight: a clean exit, status 0, within 10 s. */
static void check_sigterm_under_load(void)
{
    struct tessera_client *c = client_new(4);
    uint8_t payload[64];
    memset(payload, 'p', sizeof payload);
    payload[63] = 'q';
    struct async_state s = {0};
    for (int i = 0; i < 200; i++) {
        (void)tessera_ping_async(c, payload, sizeof payload, on_ping, &s);
    }
    (void)tessera_client_run(c, 10);
    if (kill(server_pid, SIGTERM) != 0) {
        fail("kill: %s", strerror(errno));
    }
    int st = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (t1 = t0; t1.tv_sec - t0.tv_sec < 10; clock_gettime(CLOCK_MONOTONIC, &t1)) {
        if (tessera_client_run(c, 10) == 0) { /* keep reading while it drains */
            usleep(10000);
        }
        pid_t w = waitpid(server_pid, &st, WNOHANG);
        if (w == server_pid) {
            server_pid = 0;
            break;
        }
    }
    if (server_pid != 0) {
        fail("tesserad did not exit within 10 s of SIGTERM");
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fail("tesserad exited with status %d after SIGTERM", st);
    }
    tessera_client_free(c);
    printf("tesserad_ping: SIGTERM under load: clean exit (%llu of 200 pings answered)\n",
           (unsigned long long)s.done);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tesserad_ping_test PATH_TO_TESSERAD\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    start_server(argv[1]);
    check_pings();
    check_bad_input();
    check_many_connections();
    check_sigterm_under_load();
    printf("tesserad_ping: passed\n");
    return 0;
}
