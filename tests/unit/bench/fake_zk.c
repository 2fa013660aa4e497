/* fake_zk: a miniature ZooKeeper server for the driver tests (see fake_zk.h). */
#define _GNU_SOURCE
#include "tests/unit/bench/fake_zk.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util/assert.h"

/* The jute operation codes and error codes (zookeeper.jute, zookeeper.h). */
enum { OP_CREATE = 1, OP_GETDATA = 4, OP_SETDATA = 5, OP_SYNC = 9, OP_PING = 11, OP_CLOSE = -11 };
enum { E_OK = 0, E_NONODE = -101, E_BADVERSION = -103, E_NODEEXISTS = -110, E_UNIMPL = -6 };

/* A big-endian reader over one frame; a read past the end sets bad. */
struct rd {
    const uint8_t *p;
    uint32_t left;
    bool bad;
};

static uint32_t rd_u32(struct rd *r)
{
    if (r->left < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v =
        (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return v;
}

/* A jute string or buffer: its length (-1: null) and a view of its bytes. */
static int32_t rd_bytes(struct rd *r, const uint8_t **out)
{
    int32_t n = (int32_t)rd_u32(r);
    *out = r->p;
    if (n < 0) {
        return n;
    }
    if ((uint32_t)n > r->left) {
        r->bad = true;
        return 0;
    }
    r->p += n;
    r->left -= (uint32_t)n;
    return n;
}

struct wr {
    uint8_t b[FAKE_ZK_FRAME_BYTES_MAX];
    uint32_t n;
};

static void wr_u32(struct wr *w, uint32_t v)
{
    TS_ASSERT(w->n + 4 <= sizeof w->b);
    w->b[w->n++] = (uint8_t)(v >> 24);
    w->b[w->n++] = (uint8_t)(v >> 16);
    w->b[w->n++] = (uint8_t)(v >> 8);
    w->b[w->n++] = (uint8_t)v;
}

static void wr_u64(struct wr *w, uint64_t v)
{
    wr_u32(w, (uint32_t)(v >> 32));
    wr_u32(w, (uint32_t)v);
}

static void wr_bytes(struct wr *w, const void *p, int32_t n, uint8_t fill)
{
    wr_u32(w, (uint32_t)n);
    TS_ASSERT(n >= 0 && w->n + (uint32_t)n <= sizeof w->b);
    if (p != NULL) {
        memcpy(w->b + w->n, p, (size_t)n);
    } else {
        memset(w->b + w->n, fill, (size_t)n);
    }
    w->n += (uint32_t)n;
}

/* Stat: czxid mzxid ctime mtime version cversion aversion ephemeralOwner dataLength
 * numChildren pzxid (68 bytes). */
static void wr_stat(struct wr *w, const struct fake_zk_node *n, int64_t zxid)
{
    wr_u64(w, (uint64_t)zxid);
    wr_u64(w, (uint64_t)zxid);
    wr_u64(w, 0);
    wr_u64(w, 0);
    wr_u32(w, (uint32_t)n->version);
    wr_u32(w, 0);
    wr_u32(w, 0);
    wr_u64(w, 0);
    wr_u32(w, (uint32_t)n->data_len);
    wr_u32(w, 0);
    wr_u64(w, (uint64_t)zxid);
}

static bool send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Sends w as one frame, the length first, in one send (two small sends would meet Nagle
 * and the client's delayed ACK: 40 ms a reply). */
static bool send_frame(int fd, struct wr *w)
{
    uint8_t frame[4 + sizeof w->b];
    frame[0] = (uint8_t)(w->n >> 24);
    frame[1] = (uint8_t)(w->n >> 16);
    frame[2] = (uint8_t)(w->n >> 8);
    frame[3] = (uint8_t)w->n;
    memcpy(frame + 4, w->b, w->n);
    return send_all(fd, frame, 4 + w->n);
}

static struct fake_zk_node *find(struct fake_zk *z, const uint8_t *path, int32_t len)
{
    for (uint32_t i = 0; i < z->nnodes; i++) {
        if (strlen(z->nodes[i].path) == (size_t)len &&
            memcmp(z->nodes[i].path, path, (size_t)len) == 0) {
            return &z->nodes[i];
        }
    }
    return NULL;
}

/* ConnectRequest {protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, readOnly}
 * -> ConnectResponse {protocolVersion, timeOut, sessionId, passwd, readOnly}. */
static bool handle_connect(struct fake_zk *z, struct fake_zk_conn *c, struct rd *r)
{
    (void)rd_u32(r);
    (void)rd_u32(r);
    (void)rd_u32(r);
    int32_t timeout_ms = (int32_t)rd_u32(r);
    if (r->bad) {
        return false;
    }
    struct wr w = {.n = 0};
    wr_u32(&w, 0);
    wr_u32(&w, (uint32_t)timeout_ms);
    wr_u64(&w, (uint64_t)++z->next_session);
    wr_bytes(&w, NULL, 16, 0);
    w.b[w.n++] = 0;
    c->connected = 1;
    atomic_fetch_add(&z->sessions, 1);
    return send_frame(c->fd, &w);
}

/* One operation on the table; fills the reply's body after its header. */
static int32_t apply(struct fake_zk *z, int32_t type, struct rd *r, struct wr *w)
{
    const uint8_t *path = NULL, *data = NULL;
    int32_t plen = type == OP_PING || type == OP_CLOSE ? 0 : rd_bytes(r, &path);
    if (r->bad || plen < 0 || plen >= (int32_t)FAKE_ZK_PATH_BYTES_MAX) {
        return E_UNIMPL;
    }
    struct fake_zk_node *n = plen > 0 ? find(z, path, plen) : NULL;
    switch (type) {
    case OP_PING:
    case OP_CLOSE:
        return E_OK;
    case OP_SYNC:
        atomic_fetch_add(&z->syncs, 1);
        wr_bytes(w, path, plen, 0);
        return E_OK;
    case OP_GETDATA:
        atomic_fetch_add(&z->gets, 1);
        if (n == NULL) {
            return E_NONODE;
        }
        wr_bytes(w, NULL, n->data_len, 'x');
        wr_stat(w, n, z->zxid);
        return E_OK;
    case OP_CREATE: {
        atomic_fetch_add(&z->creates, 1);
        int32_t dlen = rd_bytes(r, &data);
        if (n != NULL) {
            return E_NODEEXISTS;
        }
        TS_ASSERT(z->nnodes < FAKE_ZK_NODES_MAX);
        n = &z->nodes[z->nnodes++];
        memcpy(n->path, path, (size_t)plen);
        n->path[plen] = '\0';
        n->version = 0;
        n->data_len = dlen < 0 ? 0 : dlen;
        z->zxid++;
        wr_bytes(w, path, plen, 0);
        return E_OK;
    }
    case OP_SETDATA: {
        atomic_fetch_add(&z->sets, 1);
        int32_t dlen = rd_bytes(r, &data);
        int32_t version = (int32_t)rd_u32(r);
        if (n == NULL) {
            return E_NONODE;
        }
        if (version != -1 && version != n->version) {
            return E_BADVERSION;
        }
        n->version++;
        n->data_len = dlen < 0 ? 0 : dlen;
        z->zxid++;
        wr_stat(w, n, z->zxid);
        return E_OK;
    }
    }
    return E_UNIMPL;
}

/* RequestHeader {xid, type} + body -> ReplyHeader {xid, zxid, err} + body (on success). */
static bool handle_request(struct fake_zk *z, struct fake_zk_conn *c, struct rd *r)
{
    int32_t xid = (int32_t)rd_u32(r);
    int32_t type = (int32_t)rd_u32(r);
    struct wr body = {.n = 0}, w = {.n = 0};
    int32_t err = r->bad ? E_UNIMPL : apply(z, type, r, &body);
    wr_u32(&w, (uint32_t)xid);
    wr_u64(&w, (uint64_t)z->zxid);
    wr_u32(&w, (uint32_t)err);
    if (err == E_OK) {
        TS_ASSERT(w.n + body.n <= sizeof w.b);
        memcpy(w.b + w.n, body.b, body.n);
        w.n += body.n;
    }
    return send_frame(c->fd, &w) && type != OP_CLOSE;
}

/* Reads what the connection has and handles every whole frame; false: close it. */
static bool serve(struct fake_zk *z, struct fake_zk_conn *c)
{
    ssize_t k = recv(c->fd, c->in + c->have, sizeof c->in - c->have, 0);
    if (k <= 0) {
        return k < 0 && errno == EINTR;
    }
    c->have += (uint32_t)k;
    uint32_t at = 0;
    while (c->have - at >= 4) {
        struct rd hdr = {.p = c->in + at, .left = 4};
        uint32_t len = rd_u32(&hdr);
        if (len > sizeof c->in - 4) {
            return false;
        }
        if (c->have - at - 4 < len) {
            break;
        }
        struct rd r = {.p = c->in + at + 4, .left = len};
        bool ok = c->connected ? handle_request(z, c, &r) : handle_connect(z, c, &r);
        if (!ok) {
            return false;
        }
        at += 4 + len;
    }
    memmove(c->in, c->in + at, c->have - at);
    c->have -= at;
    return true;
}

static void accept_one(struct fake_zk *z)
{
    int fd = accept(z->listen_fd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    for (uint32_t i = 0; i < FAKE_ZK_CONNS_MAX; i++) {
        if (z->conns[i].fd < 0) {
            z->conns[i] = (struct fake_zk_conn){.fd = fd};
            return;
        }
    }
    close(fd); /* full: the client retries */
}

static void *fake_zk_main(void *arg)
{
    struct fake_zk *z = arg;
    struct pollfd pfd[FAKE_ZK_CONNS_MAX + 2];
    uint32_t slot[FAKE_ZK_CONNS_MAX + 2];
    for (;;) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = z->stop_pipe[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = z->listen_fd, .events = POLLIN};
        for (uint32_t i = 0; i < FAKE_ZK_CONNS_MAX; i++) {
            if (z->conns[i].fd >= 0) {
                slot[n] = i;
                pfd[n++] = (struct pollfd){.fd = z->conns[i].fd, .events = POLLIN};
            }
        }
        if (poll(pfd, n, -1) < 0) {
            continue;
        }
        if (pfd[0].revents != 0) {
            return NULL;
        }
        if (pfd[1].revents & POLLIN) {
            accept_one(z);
        }
        for (nfds_t j = 2; j < n; j++) {
            struct fake_zk_conn *c = &z->conns[slot[j]];
            if (pfd[j].revents != 0 && !serve(z, c)) {
                close(c->fd);
                c->fd = -1;
            }
        }
    }
}

int fake_zk_start(struct fake_zk *z)
{
    memset(z, 0, sizeof *z);
    for (uint32_t i = 0; i < FAKE_ZK_CONNS_MAX; i++) {
        z->conns[i].fd = -1;
    }
    z->next_session = 0x1000;
    z->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (z->listen_fd < 0 || pipe2(z->stop_pipe, O_CLOEXEC) != 0) {
        return -errno;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(z->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(z->listen_fd, (int)FAKE_ZK_CONNS_MAX) != 0 ||
        getsockname(z->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        return -errno;
    }
    z->port = ntohs(a.sin_port);
    TS_ASSERT(z->port != 0);
    return -pthread_create(&z->thread, NULL, fake_zk_main, z);
}

void fake_zk_stop(struct fake_zk *z)
{
    TS_ASSERT(write(z->stop_pipe[1], "x", 1) == 1);
    TS_ASSERT(pthread_join(z->thread, NULL) == 0);
    for (uint32_t i = 0; i < FAKE_ZK_CONNS_MAX; i++) {
        if (z->conns[i].fd >= 0) {
            close(z->conns[i].fd);
            z->conns[i].fd = -1;
        }
    }
    close(z->listen_fd);
    close(z->stop_pipe[0]);
    close(z->stop_pipe[1]);
}
