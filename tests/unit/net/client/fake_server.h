/*
 * A fake Tessera node for the client tests: one thread, blocking sockets under poll() on
 * 127.0.0.1 (port 0, so tests never collide), answering PingRequest frames with
 * PingResponse frames that echo the payload. Switches make it misbehave: answer out of
 * order, late, never, close the connection mid-request, send a garbage frame, split its
 * answers byte by byte, or answer NotLeader with a leader hint.
 *
 * Key-value requests are answered from an in-memory sorted store with etcd's semantics
 * (revisions, versions, prev_kv, ranges with limit and paging, txn compares), so the
 * client's decoders, the CLI and the route cache can be tested end to end; switches make
 * it answer NotLeader (with a hint), StaleEpoch or RangeNotFound on command.
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

/* One key of the fake's in-memory store (sorted by key). */
struct fake_kv {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
    uint64_t create_revision;
    uint64_t mod_revision;
    uint64_t version;
    uint64_t lease;
};

struct fake_server {
    /* switches */
    enum fake_mode mode;
    int reorder_window;
    int delay_ms;
    int close_left;
    int close_skip;
    int garbage_left;
    /* Key-value requests (put, get, delete, range, txn, status, members) are answered from
     * an in-memory store whatever the mode, unless one of these says otherwise. The range
     * the fake serves is range_id [range_start, range_end) at epoch (generation,
     * conf_version); range_end "" is unbounded. */
    uint64_t range_id;
    uint64_t generation;
    uint64_t conf_version;
    char range_start[32];
    char range_end[32];
    atomic_int attach_range;    /* attach the descriptor to every key-value answer */
    atomic_int not_leader_left; /* answer the next N keyed requests NotLeader + hint */
    char hint_address[64];      /* the hint's address ("" : a hint without one) */
    atomic_int hint_with_range; /* NotLeader answers carry the descriptor too */
    atomic_int stale_left;      /* answer the next N keyed requests StaleEpoch + descriptor */
    atomic_int not_found_left;  /* answer the next N keyed requests RangeNotFound (no desc) */
    atomic_int fail_status;     /* answer every key-value request with this Status, 0: off */
    atomic_int page_max;        /* rows per range answer at most (0: 256) */
    atomic_int stuck_paging;    /* range answers say more, with next_key = the request's key */
    /* A request carrying a range id other than range_id, or an older epoch, is answered
     * StaleEpoch with the descriptor (as a real node would). */
    /* state */
    int listen_fd;
    uint16_t port;
    int wake[2];
    pthread_t thread;
    struct proto_builder b;
    struct fake_conn conns[FAKE_CONNS_MAX];
    struct fake_kv *kvs;
    size_t kv_count;
    size_t kv_cap;
    uint64_t revision;
    /* counters and what the last key-value request carried */
    atomic_long requests;
    atomic_long accepted;
    atomic_long kv_requests;
    atomic_ullong last_range_id;
    atomic_ullong last_generation;
    atomic_int last_consistency;
    atomic_int last_op; /* PROTO_REQUEST_OP_* */
};

/* Binds 127.0.0.1:0 and starts the thread. Returns 0 or -errno. */
int fake_start(struct fake_server *s);

/* Stops the thread and closes every socket. */
void fake_stop(struct fake_server *s);

/* A port on 127.0.0.1 with nothing listening (bound, then closed). */
uint16_t fake_dead_port(void);

#endif
