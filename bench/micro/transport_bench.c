/*
 * transport_bench: the client side of bench/compare/transport_vs_redis.sh. It drives a
 * Tessera server with pipelined Ping requests the way `redis-benchmark -t ping -P D -c C`
 * drives redis-server: C connections, each keeping D requests in flight (a new batch of
 * D is written as soon as the previous D answers have arrived, as redis-benchmark's
 * pipelining does), N requests in all, one thread with epoll. Every request is a frame
 * (u32 length + FlatBuffers Message{Request{id, PingRequest{payload}}}) built once by
 * net/proto; every answer is framed by proto_frame_size, and the first answer of every
 * connection is verified in full (a PingResponse echoing the payload).
 *
 * Reported on one line: requests/s (wall), and, with --server-pid, the server's CPU
 * time per request from /proc/PID/stat (utime + stime, all its threads), which is what
 * the script compares with redis-server's.
 *
 * Expected, back of the envelope (a 2-vCPU VM shared by client and server): loopback
 * round trips batch D requests per syscall pair, so for D = 16 the cost per request is a
 * few hundred ns on each side; redis-benchmark reports ~0.5-1.5 M PING/s there.
 *
 * Run: ./build/release/bench/micro/transport_bench --addr 127.0.0.1:PORT --conns C
 *      --depth D --requests N [--payload BYTES] [--server-pid PID]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/util/assert.h"
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"

#define TB_CONNS_MAX 4096u
#define TB_DEPTH_MAX 1024u
#define TB_PAYLOAD_MAX 4096u
#define TB_IN_BYTES (256u * 1024u)

struct tb_opts {
    struct sockaddr_in addr;
    uint32_t conns;
    uint32_t depth;
    uint64_t requests;
    uint32_t payload;
    long server_pid;
};

struct tb_conn {
    int fd;
    uint32_t outstanding; /* requests sent and not yet answered */
    bool verified;
    uint8_t *in;
    size_t in_len;
};

struct tb {
    struct tb_opts o;
    uint8_t *batch; /* depth copies of the request frame */
    uint32_t frame_len;
    uint64_t sent;
    uint64_t answered;
    struct tb_conn *c;
    uint8_t payload[TB_PAYLOAD_MAX];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    TS_ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* utime + stime of every thread of pid, in ns (0 when unreadable). */
static uint64_t proc_cpu_ns(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return 0;
    }
    return (uint64_t)(ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

/* Builds the request frame once; the server's answers echo the payload. */
static void build_batch(struct tb *t)
{
    struct proto_builder b;
    TS_ASSERT(proto_builder_init(&b, ts_allocator_default(), 4096, TS_FRAME_BYTES_MAX) == 0);
    for (uint32_t i = 0; i < t->o.payload; i++) {
        t->payload[i] = (uint8_t)(i * 7 + 1);
    }
    proto_ref pl = proto_create_bytes(&b, t->payload, t->o.payload);
    proto_ping_request_begin(&b);
    proto_ping_request_add_payload(&b, pl);
    proto_ref ping = proto_ping_request_end(&b);
    proto_request_begin(&b);
    proto_request_add_id(&b, 1);
    proto_request_add_op(&b, PROTO_REQUEST_OP_PING_REQUEST, ping);
    proto_ref req = proto_request_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_REQUEST, req);
    proto_ref msg = proto_message_end(&b);
    const uint8_t *frame;
    uint32_t len;
    TS_ASSERT(proto_message_finish(&b, msg, true, &frame, &len) == 0);
    t->frame_len = len;
    t->batch = malloc((size_t)len * t->o.depth);
    TS_ASSERT(t->batch != NULL);
    for (uint32_t i = 0; i < t->o.depth; i++) {
        memcpy(t->batch + (size_t)i * len, frame, len);
    }
    proto_builder_fini(&b);
}

/* The first answer of a connection, checked in full: a verified frame holding a
 * PingResponse that echoes the payload. */
static void verify_answer(const struct tb *t, const uint8_t *frame, size_t len)
{
    struct proto_message m;
    char why[128];
    int rc = proto_message_decode(frame, len, true, &m, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "transport_bench: bad answer frame: %s\n", why);
        exit(1);
    }
    struct proto_response resp = proto_message_body_as_response(m);
    struct proto_ping_response pr = proto_response_op_as_ping_response(resp);
    struct proto_bytes pl = proto_ping_response_payload(pr);
    if (resp.tab == NULL || pr.tab == NULL || pl.len != t->o.payload ||
        (pl.len > 0 && memcmp(pl.data, t->payload, pl.len) != 0)) {
        fprintf(stderr, "transport_bench: the answer is not a PingResponse echoing the payload\n");
        exit(1);
    }
}

/* Writes the next batch of depth requests on c (blocking until written: the socket
 * buffer holds far more than a batch). */
static void send_batch(struct tb *t, struct tb_conn *c)
{
    uint64_t left = t->o.requests - t->sent;
    uint32_t k = left < t->o.depth ? (uint32_t)left : t->o.depth;
    size_t len = (size_t)k * t->frame_len, off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, t->batch + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            continue; /* rare: the server is behind by a whole socket buffer */
        }
        if (n <= 0) {
            fprintf(stderr, "transport_bench: send: %s\n", strerror(errno));
            exit(1);
        }
        off += (size_t)n;
    }
    c->outstanding += k;
    t->sent += k;
}

/* Reads what arrived on c and counts whole answers; a new batch goes out once every
 * answer of the previous one is in. */
static void on_readable(struct tb *t, struct tb_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, TB_IN_BYTES - c->in_len, 0);
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            fprintf(stderr, "transport_bench: the server closed a connection\n");
            exit(1);
        }
        c->in_len += (size_t)n;
        size_t off = 0;
        for (;;) {
            int64_t fs = proto_frame_size(c->in + off, c->in_len - off, TS_FRAME_BYTES_MAX);
            if (fs < 0) {
                fprintf(stderr, "transport_bench: malformed frame from the server\n");
                exit(1);
            }
            if (fs == 0) {
                break;
            }
            if (!c->verified) {
                verify_answer(t, c->in + off, (size_t)fs);
                c->verified = true;
            }
            off += (size_t)fs;
            TS_ASSERT(c->outstanding > 0);
            c->outstanding--;
            t->answered++;
        }
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        if (c->outstanding == 0 && t->sent < t->o.requests) {
            send_batch(t, c);
        }
    }
}

static int connect_one(const struct tb_opts *o)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TS_ASSERT(fd >= 0);
    int one = 1;
    TS_ASSERT(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
    if (connect(fd, (const struct sockaddr *)&o->addr, sizeof o->addr) != 0) {
        fprintf(stderr, "transport_bench: connect: %s\n", strerror(errno));
        exit(1);
    }
    TS_ASSERT(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
    return fd;
}

static void run(struct tb *t)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    TS_ASSERT(ep >= 0);
    t->c = calloc(t->o.conns, sizeof *t->c);
    TS_ASSERT(t->c != NULL);
    for (uint32_t i = 0; i < t->o.conns; i++) {
        t->c[i].fd = connect_one(&t->o);
        t->c[i].in = malloc(TB_IN_BYTES);
        TS_ASSERT(t->c[i].in != NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        TS_ASSERT(epoll_ctl(ep, EPOLL_CTL_ADD, t->c[i].fd, &ev) == 0);
    }
    uint64_t cpu0 = t->o.server_pid > 0 ? proc_cpu_ns(t->o.server_pid) : 0;
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < t->o.conns && t->sent < t->o.requests; i++) {
        send_batch(t, &t->c[i]);
    }
    struct epoll_event evs[256];
    while (t->answered < t->o.requests) {
        int n = epoll_wait(ep, evs, 256, 10000);
        if (n == 0) {
            fprintf(stderr, "transport_bench: no answer for 10 s (%" PRIu64 " of %" PRIu64 ")\n",
                    t->answered, t->o.requests);
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            on_readable(t, &t->c[evs[i].data.u32]);
        }
    }
    double s = (double)(now_ns() - t0) / 1e9;
    uint64_t cpu1 = t->o.server_pid > 0 ? proc_cpu_ns(t->o.server_pid) : 0;
    printf("transport_bench: conns %u depth %u requests %" PRIu64 " payload %u: %.0f requests/s",
           t->o.conns, t->o.depth, t->answered, t->o.payload, (double)t->answered / s);
    if (t->o.server_pid > 0) {
        printf(", server CPU %.3f us/request", (double)(cpu1 - cpu0) / 1e3 / (double)t->answered);
    }
    printf("\n");
    for (uint32_t i = 0; i < t->o.conns; i++) {
        close(t->c[i].fd);
        free(t->c[i].in);
    }
    free(t->c);
    close(ep);
}

static bool parse_addr(const char *s, struct sockaddr_in *a)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host) {
        return false;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &a->sin_addr) == 1;
}

int main(int argc, char **argv)
{
    static struct tb t;
    t.o = (struct tb_opts){.conns = 1, .depth = 16, .requests = 1000000, .payload = 64};
    bool have_addr = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--addr") == 0) {
            have_addr = parse_addr(v, &t.o.addr);
        } else if (strcmp(k, "--conns") == 0) {
            t.o.conns = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(k, "--depth") == 0) {
            t.o.depth = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(k, "--requests") == 0) {
            t.o.requests = strtoull(v, NULL, 10);
        } else if (strcmp(k, "--payload") == 0) {
            t.o.payload = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(k, "--server-pid") == 0) {
            t.o.server_pid = strtol(v, NULL, 10);
        } else {
            have_addr = false;
            break;
        }
    }
    if (!have_addr || t.o.conns == 0 || t.o.conns > TB_CONNS_MAX || t.o.depth == 0 ||
        t.o.depth > TB_DEPTH_MAX || t.o.payload > TB_PAYLOAD_MAX || t.o.requests == 0) {
        fprintf(stderr,
                "usage: transport_bench --addr IP:PORT [--conns C (1..%u)] [--depth D "
                "(1..%u)] [--requests N] [--payload BYTES] [--server-pid PID]\n",
                TB_CONNS_MAX, TB_DEPTH_MAX);
        return 2;
    }
    build_batch(&t);
    run(&t);
    free(t.batch);
    return 0;
}
