/* The client tests' fake node (fake_server.h). */
#include "fake_server.h"

#include "core/util/limits.h"
#include "core/util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need) {
        return;
    }
    size_t n = *cap > 0 ? *cap : 4096;
    while (n < need) {
        n *= 2;
    }
    *buf = realloc(*buf, n);
    if (*buf == NULL) {
        abort();
    }
    *cap = n;
}

static void out_append(struct fake_conn *fc, const void *p, size_t n)
{
    grow(&fc->out, &fc->out_cap, fc->out_len + n);
    memcpy(fc->out + fc->out_len, p, n);
    fc->out_len += n;
}

static void conn_drop(struct fake_conn *fc)
{
    if (fc->fd >= 0) {
        close(fc->fd);
    }
    for (int i = 0; i < fc->held_count; i++) {
        free(fc->held[i]);
    }
    free(fc->in);
    free(fc->out);
    memset(fc, 0, sizeof(*fc));
    fc->fd = -1;
}

/* Builds the answer to request `id` into s->b; returns the frame. */
static void build_answer(struct fake_server *s, uint64_t id, struct proto_bytes payload,
                         const uint8_t **out, uint32_t *len)
{
    struct proto_builder *b = &s->b;
    proto_builder_reset(b);
    proto_ref op = 0;
    proto_ref hint = 0;
    if (s->mode == FAKE_NOT_LEADER) {
        proto_ref addr = proto_create_string(b, "10.0.0.7:7000", 13);
        proto_leader_hint_begin(b);
        proto_leader_hint_add_node_id(b, 7);
        proto_leader_hint_add_address(b, addr);
        hint = proto_leader_hint_end(b);
    } else {
        proto_ref pl = proto_create_bytes(b, payload.data, payload.len);
        proto_ping_response_begin(b);
        proto_ping_response_add_payload(b, pl);
        op = proto_ping_response_end(b);
    }
    proto_response_begin(b);
    proto_response_add_id(b, id);
    if (hint != 0) {
        proto_response_add_status(b, PROTO_STATUS_NOT_LEADER);
        proto_response_add_leader(b, hint);
    }
    proto_response_add_op(b, PROTO_RESPONSE_OP_PING_RESPONSE, op);
    proto_ref r = proto_response_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RESPONSE, r);
    if (proto_message_finish(b, proto_message_end(b), true, out, len) != 0) {
        abort();
    }
}

/* One request frame. Returns false when the connection is to be closed. */
static bool handle_request(struct fake_server *s, struct fake_conn *fc, const uint8_t *p,
                           uint32_t n)
{
    struct proto_message m;
    if (proto_message_decode(p, n, true, &m, NULL, 0) != 0) {
        return false;
    }
    struct proto_request r = proto_message_body_as_request(m);
    struct proto_ping_request pr = proto_request_op_as_ping_request(r);
    if (pr.tab == NULL) {
        return false;
    }
    atomic_fetch_add(&s->requests, 1);
    if (s->mode == FAKE_SILENT) {
        return true;
    }
    if (s->mode == FAKE_CLOSE && s->close_left > 0 && s->close_skip-- <= 0) {
        s->close_left--;
        return false;
    }
    if (s->mode == FAKE_GARBAGE && s->garbage_left > 0) {
        s->garbage_left--;
        uint8_t junk[24];
        memset(junk, 0xa5, sizeof(junk));
        junk[0] = 20; /* a well-formed length: 24 bytes in all */
        junk[1] = junk[2] = junk[3] = 0;
        out_append(fc, junk, sizeof(junk));
        return true;
    }
    const uint8_t *frame;
    uint32_t len;
    build_answer(s, proto_request_id(r), proto_ping_request_payload(pr), &frame, &len);
    if (s->mode == FAKE_REORDER) {
        fc->held[fc->held_count] = malloc(len);
        memcpy(fc->held[fc->held_count], frame, len);
        fc->held_len[fc->held_count++] = len;
        if (fc->held_count == s->reorder_window) {
            while (fc->held_count > 0) {
                fc->held_count--;
                out_append(fc, fc->held[fc->held_count], fc->held_len[fc->held_count]);
                free(fc->held[fc->held_count]);
            }
        }
        return true;
    }
    out_append(fc, frame, len);
    return true;
}

static bool send_all(int fd, const uint8_t *p, size_t n, bool split)
{
    while (n > 0) {
        ssize_t w = send(fd, p, split ? 1 : n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads what is there, answers every whole frame. Returns false to close. */
static bool conn_readable(struct fake_server *s, struct fake_conn *fc)
{
    grow(&fc->in, &fc->in_cap, fc->in_len + 65536);
    ssize_t n = recv(fc->fd, fc->in + fc->in_len, fc->in_cap - fc->in_len, 0);
    if (n <= 0) {
        return false;
    }
    fc->in_len += (size_t)n;
    size_t off = 0;
    bool keep = true;
    while (keep) {
        int64_t fs = proto_frame_size(fc->in + off, fc->in_len - off, TS_FRAME_BYTES_MAX);
        if (fs < 0) {
            return false;
        }
        if (fs == 0) {
            break;
        }
        keep = handle_request(s, fc, fc->in + off, (uint32_t)fs);
        off += (size_t)fs;
    }
    memmove(fc->in, fc->in + off, fc->in_len - off);
    fc->in_len -= off;
    if (s->mode == FAKE_DELAY && fc->out_len > 0) {
        usleep((useconds_t)s->delay_ms * 1000);
    }
    bool ok = send_all(fc->fd, fc->out, fc->out_len, s->mode == FAKE_SPLIT);
    fc->out_len = 0;
    return keep && ok;
}

static void accept_one(struct fake_server *s)
{
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (int i = 0; i < FAKE_CONNS_MAX; i++) {
        if (s->conns[i].fd < 0) {
            s->conns[i].fd = fd;
            atomic_fetch_add(&s->accepted, 1);
            return;
        }
    }
    close(fd);
}

static void *fake_main(void *arg)
{
    struct fake_server *s = arg;
    for (;;) {
        struct pollfd pfds[FAKE_CONNS_MAX + 2];
        int idx[FAKE_CONNS_MAX + 2];
        int n = 0;
        pfds[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        pfds[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        for (int i = 0; i < FAKE_CONNS_MAX; i++) {
            if (s->conns[i].fd >= 0) {
                idx[n] = i;
                pfds[n++] = (struct pollfd){.fd = s->conns[i].fd, .events = POLLIN};
            }
        }
        if (poll(pfds, (nfds_t)n, -1) < 0 && errno != EINTR) {
            abort();
        }
        if (pfds[0].revents != 0) {
            return NULL;
        }
        if (pfds[1].revents != 0) {
            accept_one(s);
        }
        for (int k = 2; k < n; k++) {
            if (pfds[k].revents != 0 && !conn_readable(s, &s->conns[idx[k]])) {
                conn_drop(&s->conns[idx[k]]);
            }
        }
    }
}

int fake_start(struct fake_server *s)
{
    for (int i = 0; i < FAKE_CONNS_MAX; i++) {
        memset(&s->conns[i], 0, sizeof(s->conns[i]));
        s->conns[i].fd = -1;
    }
    atomic_store(&s->requests, 0);
    atomic_store(&s->accepted, 0);
    if (proto_builder_init(&s->b, ts_allocator_default(), 4096, TS_FRAME_BYTES_MAX) != 0) {
        return -ENOMEM;
    }
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(s->listen_fd, 64) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0 || pipe(s->wake) != 0) {
        return -errno;
    }
    s->port = ntohs(a.sin_port);
    int rc = pthread_create(&s->thread, NULL, fake_main, s);
    return -rc;
}

void fake_stop(struct fake_server *s)
{
    if (write(s->wake[1], "x", 1) != 1) {
        abort();
    }
    pthread_join(s->thread, NULL);
    for (int i = 0; i < FAKE_CONNS_MAX; i++) {
        conn_drop(&s->conns[i]);
    }
    close(s->listen_fd);
    close(s->wake[0]);
    close(s->wake[1]);
    proto_builder_fini(&s->b);
}

uint16_t fake_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}
