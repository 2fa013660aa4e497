/*
 * shard/server: requests in, answers out, on one shard (see server.h).
 */
#include "shard/server.h"

#include <stdio.h>
#include <string.h>

#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/map64.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"
#include "shard/host.h"

/* How long a stopping shard waits for its answers to drain before it closes the
 * connections anyway (a client that never reads cannot hold a shutdown). */
#define SERVER_DRAIN_NS (2ull * 1000 * 1000 * 1000)
/* Builder memory for one answer: grows to the largest answer, then is reused. */
#define SERVER_BUILDER_BYTES (16u * 1024u)

enum server_phase {
    SERVER_RUNNING = 0,
    SERVER_DRAINING = 1,
    SERVER_CLOSING = 2,
    SERVER_DONE = 3,
};

struct server {
    struct shard *shard;
    struct shard_loop *loop;
    struct nio *nio;
    const struct ts_log *log;
    struct proto_builder b;
    struct shard_timer timer;
    uint32_t listener;
    uint16_t port;
    uint8_t phase;
    uint64_t drain_deadline_ns;
    struct host *host; /* the replicas, once the node serves key-value requests */
    uint64_t cluster_id;
    struct ts_map64 peers; /* ids of connections that said Hello as a peer */
    uint64_t *conns;       /* ids of open connections */
    uint32_t n_conns;
    uint32_t cap_conns;
    struct server_stats stats;
};

static void on_cqe(void *ctx, struct io_uring_cqe *cqe)
{
    struct server *sv = ctx;
    nio_complete(sv->nio, cqe);
}

static void on_timer(struct shard_timer *t, void *data)
{
    (void)t;
    (void)data; /* the iteration hook that follows does the work */
}

/* Once per loop iteration: start the sends queued by this iteration's answers, expire
 * idle connections, and sleep no longer than the transport's next deadline. */
static void on_iteration(void *ctx)
{
    struct server *sv = ctx;
    nio_flush(sv->nio);
    uint64_t now = shard_loop_now_ns(sv->loop);
    nio_tick(sv->nio, now);
    uint64_t next = nio_next_deadline_ns(sv->nio);
    if (next != 0 && (!shard_timer_armed(&sv->timer) || sv->timer.deadline_ns != next)) {
        shard_timer_stop(sv->loop, &sv->timer);
        (void)shard_timer_start(sv->loop, &sv->timer, next, on_timer, sv);
    }
}

static void on_open(struct nio_conn *c, void *data)
{
    struct server *sv = data;
    if (sv->n_conns == sv->cap_conns) {
        uint32_t cap = sv->cap_conns == 0 ? 64 : sv->cap_conns * 2;
        const struct ts_allocator *a = ts_allocator_default();
        uint64_t *p = ts_realloc(a, sv->conns, sv->cap_conns * sizeof *p, cap * sizeof *p);
        if (p == NULL) {
            nio_close(c); /* cannot track it, so cannot drain it at shutdown */
            return;
        }
        sv->conns = p;
        sv->cap_conns = cap;
    }
    nio_conn_set_data(c, (void *)(uintptr_t)sv->n_conns);
    sv->conns[sv->n_conns++] = nio_conn_id(c);
}

static void on_close(struct nio_conn *c, int reason, void *data)
{
    struct server *sv = data;
    uint64_t id = nio_conn_id(c);
    (void)ts_map64_del(&sv->peers, id);
    uint32_t i = (uint32_t)(uintptr_t)nio_conn_data(c);
    if (i >= sv->n_conns || sv->conns[i] != id) {
        return; /* never tracked (on_open could not grow the table) */
    }
    sv->conns[i] = sv->conns[--sv->n_conns];
    if (i < sv->n_conns) {
        struct nio_conn *moved = nio_conn_lookup(sv->nio, sv->conns[i]);
        TS_ASSERT(moved != NULL);
        nio_conn_set_data(moved, (void *)(uintptr_t)i);
    }
    if (reason != 0 && reason != TS_ESHUTDOWN && sv->log != NULL) {
        TS_LOG_DEBUG(sv->log, "server: connection %llu closed: %s", (unsigned long long)id,
                     ts_strerror(reason));
    }
}

/* Sends the finished answer, or closes the connection if even that cannot be queued. */
static void send_answer(struct server *sv, struct nio_conn *c, proto_ref resp)
{
    proto_message_begin(&sv->b);
    proto_message_add_body(&sv->b, PROTO_BODY_RESPONSE, resp);
    proto_ref msg = proto_message_end(&sv->b);
    const uint8_t *out;
    uint32_t len;
    int rc = proto_message_finish(&sv->b, msg, true, &out, &len);
    if (rc == 0) {
        rc = nio_send(c, out, len);
    }
    if (rc != 0) {
        if (sv->log != NULL) {
            TS_LOG_WARN(sv->log, "server: closing connection %llu: answer not queued: %s",
                        (unsigned long long)nio_conn_id(c), ts_strerror(rc));
        }
        nio_close(c);
    }
}

static void answer_ping(struct server *sv, struct nio_conn *c, uint64_t id,
                        struct proto_ping_request ping)
{
    struct proto_bytes pl = proto_ping_request_payload(ping);
    proto_ref payload = proto_create_bytes(&sv->b, pl.data, pl.len);
    proto_ping_response_begin(&sv->b);
    proto_ping_response_add_payload(&sv->b, payload);
    proto_ref pr = proto_ping_response_end(&sv->b);
    proto_response_begin(&sv->b);
    proto_response_add_id(&sv->b, id);
    proto_response_add_op(&sv->b, PROTO_RESPONSE_OP_PING_RESPONSE, pr);
    send_answer(sv, c, proto_response_end(&sv->b));
    sv->stats.pings++;
}

static void answer_unsupported(struct server *sv, struct nio_conn *c, uint64_t id)
{
    static const char why[] = "this build of tesserad serves Ping only; key-value requests "
                              "come with the multi-Raft server";
    proto_ref msg = proto_create_string(&sv->b, why, (uint32_t)(sizeof why - 1));
    proto_response_begin(&sv->b);
    proto_response_add_id(&sv->b, id);
    proto_response_add_status(&sv->b, PROTO_STATUS_UNAVAILABLE);
    proto_response_add_message(&sv->b, msg);
    send_answer(sv, c, proto_response_end(&sv->b));
    sv->stats.unsupported++;
}

static void close_bad(struct server *sv, struct nio_conn *c, const char *why)
{
    sv->stats.bad_frames++;
    if (sv->log != NULL) {
        TS_LOG_WARN(sv->log, "server: closing connection %llu: %s",
                    (unsigned long long)nio_conn_id(c), why);
    }
    nio_close(c);
}

/* A peer's first frame: it must belong to this cluster. */
static void on_hello(struct server *sv, struct nio_conn *c, struct proto_hello hello)
{
    if (sv->host == NULL || proto_hello_cluster_id(hello) != sv->cluster_id) {
        char why[160];
        snprintf(why, sizeof why,
                 "a peer (node %llu) of another cluster, or this node serves no "
                 "cluster",
                 (unsigned long long)proto_hello_node_id(hello));
        close_bad(sv, c, why);
        return;
    }
    if (ts_map64_put(&sv->peers, nio_conn_id(c), sv) != 0) {
        close_bad(sv, c, "out of memory tracking a peer");
    }
}

static void on_frame(struct nio_conn *c, const uint8_t *frame, uint32_t len, void *data)
{
    struct server *sv = data;
    struct proto_message m;
    char why[160];
    int rc = proto_message_decode(frame, len, true, &m, why, sizeof why);
    if (rc != 0) {
        close_bad(sv, c, why);
        return;
    }
    switch (proto_message_body_type(m)) {
    case PROTO_BODY_REQUEST: {
        struct proto_request req = proto_message_body_as_request(m);
        sv->stats.requests++;
        struct proto_ping_request ping = proto_request_op_as_ping_request(req);
        if (ping.tab != NULL) {
            proto_builder_reset(&sv->b);
            answer_ping(sv, c, proto_request_id(req), ping);
        } else if (sv->host != NULL) {
            bool peer = ts_map64_get(&sv->peers, nio_conn_id(c)) != NULL;
            host_on_request(sv->host, nio_conn_id(c), frame, len, req, peer);
        } else {
            proto_builder_reset(&sv->b);
            answer_unsupported(sv, c, proto_request_id(req));
        }
        return;
    }
    case PROTO_BODY_RAFT_BATCH:
        if (sv->host == NULL) {
            close_bad(sv, c, "a Raft frame, and this node serves no cluster");
            return;
        }
        host_on_raft_batch(sv->host, proto_message_body_as_raft_batch(m), frame, len);
        return;
    case PROTO_BODY_RESPONSE:
        if (sv->host == NULL || !nio_conn_outbound(c)) {
            close_bad(sv, c, "a Response from a client");
            return;
        }
        host_on_forward_answer(sv->host, frame, len, proto_message_body_as_response(m));
        return;
    case PROTO_BODY_SNAPSHOT_CHUNK:
    case PROTO_BODY_SNAPSHOT_CHUNK_ACK: {
        if (sv->host == NULL) {
            close_bad(sv, c, "a snapshot frame, and this node serves no cluster");
            return;
        }
        uint64_t group =
            proto_message_body_type(m) == PROTO_BODY_SNAPSHOT_CHUNK
                ? proto_snapshot_chunk_group_id(proto_message_body_as_snapshot_chunk(m))
                : proto_snapshot_chunk_ack_group_id(proto_message_body_as_snapshot_chunk_ack(m));
        host_on_snapshot_frame(sv->host, m, group, frame, len);
        return;
    }
    case PROTO_BODY_HELLO:
        on_hello(sv, c, proto_message_body_as_hello(m));
        return;
    default:
        close_bad(sv, c, "a message that is neither a Request, a Hello nor a Raft frame");
        return;
    }
}

static void on_peer_up(struct nio_conn *c, void *data)
{
    struct server *sv = data;
    if (sv->host != NULL) {
        host_on_peer_up(sv->host, c);
    }
}

static void on_peer_down(struct nio_conn *c, int reason, void *data)
{
    struct server *sv = data;
    (void)reason;
    if (sv->host != NULL) {
        host_on_peer_down(sv->host, c);
    }
}

void server_set_host(struct server *sv, struct host *h, uint64_t cluster_id)
{
    sv->host = h;
    sv->cluster_id = cluster_id;
}

static int server_listen(struct server *sv, const struct server_config *cfg)
{
    int rc = nio_listen(sv->nio, cfg->listen, &sv->listener);
    if (rc == 0) {
        rc = nio_listen_port(sv->nio, sv->listener, &sv->port);
    }
    if (rc != 0 && sv->log != NULL) {
        TS_LOG_ERROR(sv->log, "server: cannot listen on %s: %s", cfg->listen, ts_strerror(rc));
    }
    return rc;
}

int server_start(struct shard *s, const struct server_config *cfg, struct server **out)
{
    TS_ASSERT(s != NULL && cfg != NULL && cfg->listen != NULL);
    /* The default allocator: on a shard thread of a release build it allocates from the
     * shard's own jemalloc arena (the thread is bound to it), and, unlike the shard's
     * allocator handle, it outlives the node, which server_free needs. */
    const struct ts_allocator *a = ts_allocator_default();
    struct server *sv = ts_alloc(a, sizeof *sv);
    if (sv == NULL) {
        return TS_ENOMEM;
    }
    memset(sv, 0, sizeof *sv);
    sv->shard = s;
    sv->loop = shard_get_loop(s);
    sv->log = cfg->log;
    shard_timer_init(&sv->timer);
    ts_map64_init(&sv->peers, a);
    int rc = proto_builder_init(&sv->b, a, SERVER_BUILDER_BYTES, TS_FRAME_BYTES_MAX);
    if (rc != 0) {
        ts_free(a, sv, sizeof *sv);
        return rc;
    }
    struct nio_callbacks cb = {.on_open = on_open,
                               .on_frame = on_frame,
                               .on_close = on_close,
                               .on_peer_up = on_peer_up,
                               .on_peer_down = on_peer_down,
                               .data = sv};
    rc = nio_create(shard_loop_ring(sv->loop), SHARD_TAG_NIO, &cfg->nio, &cb, a, &sv->nio);
    if (rc == 0) {
        rc = shard_loop_register(sv->loop, SHARD_TAG_NIO, on_cqe, sv);
    }
    if (rc == 0) {
        rc = shard_loop_on_iteration(sv->loop, on_iteration, sv);
    }
    if (rc == 0) {
        rc = server_listen(sv, cfg);
    }
    if (rc != 0) {
        /* The loop is still running: let server_stop drain what nio started. */
        sv->phase = sv->nio != NULL ? SERVER_CLOSING : SERVER_DONE;
        if (sv->nio != NULL) {
            nio_destroy(sv->nio);
        }
    }
    *out = sv;
    return rc;
}

/* True once every connection has sent all it had queued. */
static bool drained(const struct server *sv)
{
    for (uint32_t i = 0; i < sv->n_conns; i++) {
        struct nio_conn *c = nio_conn_lookup(sv->nio, sv->conns[i]);
        if (c != NULL && nio_conn_out_bytes(c) > 0) {
            return false;
        }
    }
    return true;
}

/* The node calls server_stop once per loop iteration; a timer makes sure there is a
 * next iteration even when no connection does anything. */
#define SERVER_STOP_POLL_NS (10ull * 1000 * 1000)

static bool stop_step(struct server *sv, uint64_t now);

bool server_stop(struct server *sv)
{
    uint64_t now = shard_loop_now_ns(sv->loop);
    bool done = stop_step(sv, now);
    if (!done) {
        shard_timer_stop(sv->loop, &sv->timer);
        (void)shard_timer_start(sv->loop, &sv->timer, now + SERVER_STOP_POLL_NS, on_timer, sv);
    }
    return done;
}

static bool stop_step(struct server *sv, uint64_t now)
{
    switch (sv->phase) {
    case SERVER_RUNNING:
        (void)nio_unlisten(sv->nio, sv->listener);
        sv->phase = SERVER_DRAINING;
        sv->drain_deadline_ns = now + SERVER_DRAIN_NS;
        return false;
    case SERVER_DRAINING:
        nio_flush(sv->nio);
        if (!drained(sv) && now < sv->drain_deadline_ns) {
            return false;
        }
        nio_destroy(sv->nio);
        sv->phase = SERVER_CLOSING;
        return false;
    case SERVER_CLOSING:
        if (!nio_idle(sv->nio)) {
            return false;
        }
        sv->phase = SERVER_DONE;
        return true;
    default:
        return true;
    }
}

void server_abort(struct server *sv)
{
    if (sv == NULL || sv->phase >= SERVER_CLOSING) {
        return;
    }
    TS_ASSERT(sv->nio != NULL); /* a server that started has its transport */
    nio_destroy(sv->nio);
    sv->phase = SERVER_CLOSING;
}

void server_free(struct server *sv)
{
    if (sv == NULL) {
        return;
    }
    /* Stopped, or never started (an init that failed destroyed its nio at once). */
    TS_ASSERT(sv->phase >= SERVER_CLOSING);
    const struct ts_allocator *a = ts_allocator_default();
    if (sv->nio != NULL) {
        nio_free_after_ring_exit(sv->nio);
    }
    proto_builder_fini(&sv->b);
    ts_map64_fini(&sv->peers);
    ts_free(a, sv->conns, sv->cap_conns * sizeof *sv->conns);
    ts_free(a, sv, sizeof *sv);
}

uint16_t server_port(const struct server *sv)
{
    return sv->port;
}

void server_get_stats(const struct server *sv, struct server_stats *out)
{
    *out = sv->stats;
}

struct nio *server_nio(struct server *sv)
{
    return sv->nio;
}
