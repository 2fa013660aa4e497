/*
 * A fake Tessera node for the client tests: one thread, blocking sockets under poll() on
 * 127.0.0.1 (port 0, so tests never collide), answering PingRequest frames with
 * PingResponse frames that echo the payload. Switches make it misbehave: answer out of
 * order, late, never, close the connection mid-request, send a garbage frame, split its
 * answers byte by byte, or answer NotLeader with a leader hint.
 *
 * Set the switches before fake_start(); the counters may be read at any time.
 */
#ifndef TS_TESTS_UNIT_NET_CLIENT_FAKE_SERVER_H
#define TS_TESTS_UNIT_NET_CLIENT_FAKE_SERVER_H

#include "net/proto/proto_gen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define FAKE_CONNS_MAX 16
#define FAKE_REORDER_MAX 64

enum fake_mode {
    FAKE_ECHO = 0,
    FAKE_REORDER,    /* hold `reorder_window` answers, then send them in reverse order */
    FAKE_DELAY,      /* sleep delay_ms before answering what one read brought */
    FAKE_SILENT,     /* read requests, never answer */
    FAKE_CLOSE,      /* answer close_skip requests, then close the connection on the
                        next close_left requests */
    FAKE_GARBAGE,    /* answer the first garbage_left requests with a garbage frame */
    FAKE_SPLIT,      /* write answers one byte per send() */
    FAKE_NOT_LEADER, /* answer Status NotLeader with a leader hint, no op */
};

struct fake_conn {
    int fd;
    uint8_t *in;
    size_t in_len;
    size_t in_cap;
    uint8_t *out;
    size_t out_len;
    size_t out_cap;
    uint8_t *held[FAKE_REORDER_MAX];
    uint32_t held_len[FAKE_REORDER_MAX];
    int held_count;
};

struct fake_server {
    /* switches */
    enum fake_mode mode;
    int reorder_window;
    int delay_ms;
    int close_left;
    int close_skip;
    int garbage_left;
    /* state */
    int listen_fd;
    uint16_t port;
    int wake[2];
    pthread_t thread;
    struct proto_builder b;
    struct fake_conn conns[FAKE_CONNS_MAX];
    /* counters */
    atomic_long requests;
    atomic_long accepted;
};

/* Binds 127.0.0.1:0 and starts the thread. Returns 0 or -errno. */
int fake_start(struct fake_server *s);

/* Stops the thread and closes every socket. */
void fake_stop(struct fake_server *s);

/* A port on 127.0.0.1 with nothing listening (bound, then closed). */
uint16_t fake_dead_port(void);

#endif
