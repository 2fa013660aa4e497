/*
 * kv_bad_input: a key-value node of a real 3-node cluster fed bad input over raw
 * sockets. A malformed frame (a length that is not a multiple of 8, a length over
 * TS_FRAME_BYTES_MAX, bytes that do not verify as a FlatBuffer, a Response sent as a
 * request, a frame cut short by the peer) closes only the connection that sent it: the
 * node stays up and keeps serving its other clients, raw and through the client library.
 * A request naming a range id that does not hold its key is answered RangeNotFound, and
 * one with a stale epoch StaleEpoch, each with the current range descriptor, and neither
 * writes anything. Requests are built with net/proto's builder.
 */
#define _GNU_SOURCE
#include "core/util/limits.h"
#include "core/util/mem.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"
#include "tests/e2e/suite.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RAW_TIMEOUT_S 20
#define IN_BYTES 65536u

static struct e2e_cluster cluster;
static struct proto_builder b;

static void up(void)
{
    e2e_suite_up(&cluster, 3, 2, 8, NULL);
    cr_assert_eq(proto_builder_init(&b, ts_allocator_default(), 1024, TS_FRAME_BYTES_MAX), 0);
}

static void down(void)
{
    proto_builder_fini(&b);
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_bad_input, .init = up, .fini = down, .timeout = 240);

static int raw_connect(uint32_t node)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(cluster.node[node].port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = RAW_TIMEOUT_S};
    cr_assert_geq(fd, 0);
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return; /* the node may close first: the checks after see it */
        }
        p += n;
        len -= (size_t)n;
    }
}

/* The node must close fd (end of stream or reset) without answering, within the
 * receive timeout. */
static void expect_closed(int fd, const char *what)
{
    uint8_t buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    cr_assert_leq(n, 0, "%s: the node answered instead of closing", what);
    cr_assert(n == 0 || errno == ECONNRESET, "%s: the connection was not closed within %d s (%s)",
              what, RAW_TIMEOUT_S, strerror(errno));
    close(fd);
}

struct raw_req {
    uint64_t id;
    uint64_t range_id;
    struct proto_range_epoch epoch;
    bool put; /* else a serializable Get */
    const char *key;
    const char *value;
};

static uint32_t build_request(const struct raw_req *q, const uint8_t **out)
{
    proto_builder_reset(&b);
    proto_ref key = proto_create_bytes(&b, q->key, (uint32_t)strlen(q->key));
    proto_ref op;
    if (q->put) {
        proto_ref v = proto_create_bytes(&b, q->value, (uint32_t)strlen(q->value));
        proto_put_request_begin(&b);
        proto_put_request_add_key(&b, key);
        proto_put_request_add_value(&b, v);
        op = proto_put_request_end(&b);
    } else {
        proto_get_request_begin(&b);
        proto_get_request_add_key(&b, key);
        op = proto_get_request_end(&b);
    }
    proto_request_begin(&b);
    proto_request_add_id(&b, q->id);
    if (q->range_id != 0) {
        proto_request_add_range_id(&b, q->range_id);
        proto_request_add_epoch(&b, &q->epoch);
    }
    proto_request_add_consistency(&b, PROTO_CONSISTENCY_SERIALIZABLE);
    proto_request_add_op(&b, q->put ? PROTO_REQUEST_OP_PUT_REQUEST : PROTO_REQUEST_OP_GET_REQUEST,
                         op);
    proto_ref body = proto_request_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_REQUEST, body);
    proto_ref msg = proto_message_end(&b);
    uint32_t len = 0;
    cr_assert_eq(proto_message_finish(&b, msg, true, out, &len), 0);
    return len;
}

/* Sends a request and reads its whole answer into in (static storage); returns the
 * verified Response. */
static struct proto_response raw_request(int fd, const struct raw_req *q)
{
    static uint8_t in[IN_BYTES];
    const uint8_t *frame;
    uint32_t len = build_request(q, &frame);
    send_all(fd, frame, len);
    size_t got = 0;
    int64_t fs = 0;
    while ((fs = proto_frame_size(in, got, sizeof in)) == 0) {
        ssize_t n = recv(fd, in + got, sizeof in - got, 0);
        cr_assert_gt(n, 0, "no answer to raw request %llu (%s)", (unsigned long long)q->id,
                     n < 0 ? strerror(errno) : "closed");
        got += (size_t)n;
    }
    struct proto_message m;
    char why[128];
    cr_assert_gt(fs, 0);
    cr_assert_eq(proto_message_decode(in, (size_t)fs, true, &m, why, sizeof why), 0,
                 "the answer does not verify: %s", why);
    struct proto_response r = proto_message_body_as_response(m);
    cr_assert_not_null(r.tab, "the answer is not a Response");
    cr_assert_eq(proto_response_id(r), q->id);
    return r;
}

/* The witness: a serializable Get answered Ok on an untouched connection. */
static void witness_ok(int fd, uint64_t id)
{
    struct raw_req q = {.id = id, .key = "\x30w"};
    struct proto_response r = raw_request(fd, &q);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_OK, "witness: status %u",
                 proto_response_status(r));
}

static void client_put_get(const char *key)
{
    struct tessera_client *cl = e2e_client(&cluster, 0, 0);
    cr_assert_not_null(cl);
    cr_assert_eq(tessera_put(cl, key, strlen(key), "after", 5, 0, 0, 0), 0);
    char buf[8];
    size_t vl = 0;
    cr_assert_eq(
        tessera_get(cl, key, strlen(key), TESSERA_LINEARIZABLE, buf, sizeof buf, &vl, NULL, 0), 0);
    cr_assert_eq(vl, 5);
    cr_assert_eq(memcmp(buf, "after", 5), 0);
    tessera_client_free(cl);
}

Test(kv_bad_input, malformed_frames_close_only_their_connection)
{
    int witness = raw_connect(0);
    witness_ok(witness, 1);

    uint8_t bad_len[8] = {5, 0, 0, 0, 0, 0, 0, 0}; /* 4 + 5 is not a multiple of 8 */
    int fd = raw_connect(0);
    send_all(fd, bad_len, sizeof bad_len);
    expect_closed(fd, "a length that is not a multiple of 8");

    uint8_t zero_len[8] = {0};
    fd = raw_connect(0);
    send_all(fd, zero_len, 4);
    expect_closed(fd, "a zero length");

    uint32_t huge = TS_FRAME_BYTES_MAX + 4;
    fd = raw_connect(0);
    send_all(fd, &huge, sizeof huge);
    expect_closed(fd, "a length over TS_FRAME_BYTES_MAX");

    uint32_t max = 0xfffffffcu;
    fd = raw_connect(0);
    send_all(fd, &max, sizeof max);
    expect_closed(fd, "a length near 2^32");

    uint8_t garbage[20] = {16, 0, 0, 0};
    memset(garbage + 4, 0xff, 16);
    fd = raw_connect(0);
    send_all(fd, garbage, sizeof garbage);
    expect_closed(fd, "a frame that does not verify");

    /* A well-formed frame holding a Response, as if the node were the client. */
    proto_builder_reset(&b);
    proto_response_begin(&b);
    proto_response_add_id(&b, 9);
    proto_response_add_status(&b, PROTO_STATUS_OK);
    proto_ref body = proto_response_end(&b);
    proto_message_begin(&b);
    proto_message_add_body(&b, PROTO_BODY_RESPONSE, body);
    proto_ref msg = proto_message_end(&b);
    const uint8_t *frame;
    uint32_t len = 0;
    cr_assert_eq(proto_message_finish(&b, msg, true, &frame, &len), 0);
    fd = raw_connect(0);
    send_all(fd, frame, len);
    expect_closed(fd, "a Response sent as a request");

    /* A valid request preceded by a valid one, then a frame cut short and the
     * connection closed by the client: the node just drops it. */
    fd = raw_connect(0);
    witness_ok(fd, 2);
    struct raw_req q = {.id = 3, .key = "\x30w"};
    len = build_request(&q, &frame);
    send_all(fd, frame, len / 2);
    close(fd);

    /* The node is up and serves the untouched connection, new ones, and the client. */
    witness_ok(witness, 4);
    fd = raw_connect(0);
    witness_ok(fd, 5);
    close(fd);
    client_put_get("\060after-bad-input");
    cr_assert(e2e_node_alive(&cluster, 0, NULL), "the node died");
    close(witness);
}

Test(kv_bad_input, unknown_range_and_stale_epoch)
{
    int fd = raw_connect(0);
    /* "\x30k" is in range 2 of 8: [0x2000, 0x4000). */
    struct raw_req q = {.id = 10, .range_id = 999, .epoch = {1, 1}, .key = "\x30k"};
    struct proto_response r = raw_request(fd, &q);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_RANGE_NOT_FOUND, "status %u",
                 proto_response_status(r));
    struct proto_range_descriptor d = proto_response_range(r);
    cr_assert_not_null(d.tab, "RangeNotFound carries the current descriptor");
    cr_assert_eq(proto_range_descriptor_range_id(d), 2);
    struct proto_bytes sk = proto_range_descriptor_start_key(d);
    struct proto_bytes ek = proto_range_descriptor_end_key(d);
    cr_assert(sk.len == 2 && sk.data[0] == 0x20 && sk.data[1] == 0, "start key");
    cr_assert(ek.len == 2 && ek.data[0] == 0x40 && ek.data[1] == 0, "end key");
    struct proto_range_epoch ep = proto_range_descriptor_epoch(d);
    cr_assert(proto_range_descriptor_has_epoch(d));
    cr_assert_eq(proto_range_descriptor_replicas(d).len, 3);

    /* A range id that exists but does not hold the key. */
    q.id = 11;
    q.range_id = 3;
    r = raw_request(fd, &q);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_RANGE_NOT_FOUND);
    cr_assert_eq(proto_range_descriptor_range_id(proto_response_range(r)), 2);

    /* The right range with an older epoch, and with a generation the node never had. */
    struct proto_range_epoch stale[3] = {
        {0, 0}, {ep.generation, ep.conf_version - 1}, {ep.generation + 1, ep.conf_version}};
    for (int i = 0; i < 3; i++) {
        q.id = 20 + (uint64_t)i;
        q.range_id = 2;
        q.epoch = stale[i];
        r = raw_request(fd, &q);
        cr_assert_eq(proto_response_status(r), PROTO_STATUS_STALE_EPOCH, "epoch %d: status %u", i,
                     proto_response_status(r));
        d = proto_response_range(r);
        cr_assert_not_null(d.tab, "StaleEpoch carries the current descriptor");
        cr_assert_eq(proto_range_descriptor_range_id(d), 2);
        struct proto_range_epoch now = proto_range_descriptor_epoch(d);
        cr_assert(now.generation == ep.generation && now.conf_version == ep.conf_version);
    }
    /* A put with a stale epoch or a wrong range writes nothing. */
    struct raw_req p = {
        .id = 30, .range_id = 2, .epoch = {0, 0}, .put = true, .key = "\x30stale", .value = "x"};
    r = raw_request(fd, &p);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_STALE_EPOCH);
    p.id = 31;
    p.range_id = 5;
    p.epoch = ep;
    r = raw_request(fd, &p);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_RANGE_NOT_FOUND);
    /* With the current epoch the same Get is served (serializable: by this replica). */
    q.id = 40;
    q.epoch = ep;
    r = raw_request(fd, &q);
    cr_assert_eq(proto_response_status(r), PROTO_STATUS_OK, "status %u", proto_response_status(r));
    close(fd);
    struct tessera_client *cl = e2e_client(&cluster, 0, 0);
    cr_assert_not_null(cl);
    cr_assert_eq(tessera_get(cl, "\x30stale", 6, TESSERA_LINEARIZABLE, NULL, 0, NULL, NULL, 0),
                 TESSERA_ENOTFOUND, "a refused put was written");
    tessera_client_free(cl);
}
