/*
 * fake_zk: a ZooKeeper server in miniature for tessera-bench's ZooKeeper driver tests. It
 * speaks the jute wire protocol that libzookeeper-mt speaks (a length-prefixed frame; a
 * ConnectRequest answered by a ConnectResponse, then RequestHeader {xid, type} + body,
 * answered in order by ReplyHeader {xid, zxid, err} + body, the body only on success),
 * for the operations the driver uses: create, setData, getData, sync, ping and close.
 * The znodes are a flat in-memory table with ZooKeeper's version semantics (setData with
 * a version other than -1 must match; create of an existing path is ZNODEEXISTS). One
 * thread polls every connection on 127.0.0.1 (an ephemeral port). Bounded: at most
 * FAKE_ZK_CONNS_MAX sessions and FAKE_ZK_NODES_MAX znodes of FAKE_ZK_PATH_BYTES_MAX.
 */
#ifndef TB_TESTS_FAKE_ZK_H
#define TB_TESTS_FAKE_ZK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define FAKE_ZK_CONNS_MAX 256u
#define FAKE_ZK_NODES_MAX 1024u
#define FAKE_ZK_PATH_BYTES_MAX 64u
#define FAKE_ZK_FRAME_BYTES_MAX 4096u

struct fake_zk_node {
    char path[FAKE_ZK_PATH_BYTES_MAX];
    int32_t version;
    int32_t data_len;
};

struct fake_zk_conn {
    int fd; /* -1: unused */
    uint32_t have;
    uint8_t in[FAKE_ZK_FRAME_BYTES_MAX];
    int connected;
};

struct fake_zk {
    uint16_t port;
    int listen_fd;
    int stop_pipe[2];
    pthread_t thread;
    /* Owned by the server's thread while it runs; read by the test after fake_zk_stop. */
    struct fake_zk_node nodes[FAKE_ZK_NODES_MAX];
    uint32_t nnodes;
    struct fake_zk_conn conns[FAKE_ZK_CONNS_MAX];
    int64_t zxid;
    int64_t next_session;
    /* Requests seen, by kind (readable at any time). */
    atomic_uint_fast64_t sessions, creates, sets, gets, syncs;
};

/* Starts the server; returns 0 or -errno. */
int fake_zk_start(struct fake_zk *z);
/* Stops it and closes every connection (the nodes stay readable). */
void fake_zk_stop(struct fake_zk *z);

#endif
