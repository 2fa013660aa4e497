/*
 * tests/e2e/cluster: a real Tessera cluster of tesserad processes on loopback, for the
 * end-to-end tests (STYLE R22). The tests link no server code: they start the tesserad
 * binary, talk to it through the public client library (net/client/tessera.h) or raw
 * sockets, and signal only the PIDs this fixture started.
 *
 * What it owns. A struct e2e_cluster owns a temporary directory (ROOT: under $TMPDIR or
 * /tmp, named tessera-e2e-PID-XXXXXX after the test process) holding one data directory
 * per node (ROOT/nodeI) and its log (ROOT/nodeI.log: the node's stderr), and the PIDs of
 * the nodes it started. A test process killed outright cannot remove its ROOT: the next
 * e2e_cluster_start removes every such directory whose PID no longer runs. Ports are chosen free at
 * start (random, below the kernel's ephemeral range, checked by binding them) and kept
 * for the cluster's life, since a node finds itself by its --listen address.
 *
 * Process hygiene. Every node is started with PR_SET_PDEATHSIG = SIGKILL, so when the
 * test process dies (an assertion, a crash, Criterion's timeout, ctest's kill) its nodes
 * die with it. e2e_cluster_stop() (call it from the test's .fini, and it is safe to call
 * twice) SIGKILLs what still runs, reaps it, prints any sanitizer report found in the
 * nodes' logs to stderr (ctest's FAIL_REGULAR_EXPRESSION then fails the test), and
 * removes ROOT unless $TESSERA_E2E_KEEP is set.
 *
 * Bounds. Every wait is bounded by a timeout in milliseconds given by the caller or
 * named below; the machine may be loaded, so they are generous.
 *
 * Errors: functions return 0 or -1 and print why to stderr ("e2e: ..."); the tests
 * assert on the result.
 */
#ifndef TS_TESTS_E2E_CLUSTER_H
#define TS_TESTS_E2E_CLUSTER_H

#include "net/client/tessera.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define E2E_NODES_MAX 5u
#define E2E_EXTRA_ARGS_MAX 8u
#define E2E_PATH_BYTES 256u
#define E2E_SKIP 77                   /* what e2e_cluster_start returns without io_uring */
#define E2E_START_TIMEOUT_MS 60000u   /* a node prints its "node N" line */
#define E2E_STOP_TIMEOUT_MS 30000u    /* a node exits after SIGTERM */
#define E2E_READY_TIMEOUT_MS 90000u   /* every range accepts a write */
#define E2E_REQUEST_TIMEOUT_MS 10000u /* a client request, all attempts */

struct e2e_node {
    pid_t pid;  /* 0: not running */
    int out_fd; /* the read end of its stdout, kept open while it runs */
    uint16_t port;
    char addr[32]; /* "127.0.0.1:PORT" */
    char dir[E2E_PATH_BYTES + 32];
    char log[E2E_PATH_BYTES + 32];
    int last_status; /* the wait status of its last exit, once reaped (-1: none yet) */
    bool ns_held;    /* mntns_fd holds its private mount namespace (see tmpfs_bytes) */
    int mntns_fd;
};

struct e2e_cluster {
    const char *tesserad; /* borrowed: the binary's path */
    char root[E2E_PATH_BYTES];
    uint32_t n;
    uint32_t shards;
    uint32_t ranges;
    char spec[512];      /* --initial-cluster */
    char endpoints[512]; /* every node, in node order: the client's cfg.endpoints */
    struct e2e_node node[E2E_NODES_MAX];
    /* Options added to every start and restart (e.g. "--checkpoint-entries", "100"),
     * NULL-terminated; set before e2e_cluster_start. Borrowed. */
    const char *extra[E2E_EXTRA_ARGS_MAX + 1];
    /* Non-zero for node i: set before e2e_cluster_start, its data directory is a tmpfs of
     * that many bytes in a private mount namespace of its own (for full-disk tests; needs
     * root). The host's mounts are untouched: the fixture creates the namespace once (a
     * helper child: unshare(CLONE_NEWNS), every mount made private, the tmpfs mounted on
     * ROOT/nodeI), keeps it alive with an open /proc/PID/ns/mnt, and every start of node
     * i enters it (setns) before exec, so a restart finds the files the node left. The
     * test process sees only an empty directory there. e2e_cluster_stop closes it, which
     * frees the tmpfs. */
    uint64_t tmpfs_bytes[E2E_NODES_MAX];
};

/* Makes ROOT, picks ports and starts n nodes (ids 1..n, node i is node[i - 1]), each
 * waited for until it prints its "node N of cluster" line. Does not wait for leaders
 * (e2e_cluster_wait_ready). Returns 0, E2E_SKIP when tesserad cannot start for lack of
 * io_uring, or -1 (what started is stopped). */
int e2e_cluster_start(struct e2e_cluster *c, const char *tesserad, uint32_t n, uint32_t shards,
                      uint32_t ranges);

/* Waits until every range accepts a put through the client library (a probe key in each
 * range is written, then deleted), bounded by timeout_ms. Returns 0 or -1. */
int e2e_cluster_wait_ready(struct e2e_cluster *c, uint32_t timeout_ms);

/* SIGKILL node i (0-based) and reap it. Returns 0 or -1 (not running). */
int e2e_node_kill(struct e2e_cluster *c, uint32_t i);

/* SIGTERM node i and wait up to timeout_ms for it to exit. Returns 0 when it exited with
 * status 0, else -1 (on timeout it is SIGKILLed and reaped). */
int e2e_node_term(struct e2e_cluster *c, uint32_t i, uint32_t timeout_ms);

/* Restarts node i on its data directory with only --data and --listen; waits for its
 * "node N" line. Returns 0 or -1. */
int e2e_node_restart(struct e2e_cluster *c, uint32_t i);

/* Restarts every node at once (none may be running), then waits for each one's line.
 * Returns 0 or -1. */
int e2e_cluster_restart_all(struct e2e_cluster *c);

/* Adds a node (index c->n, the next id's directory and a free port) started with --data,
 * --listen, the extra options and args (NULL-terminated, e.g. "--join", ADDR), and waits
 * for its "node N" line. c->spec and c->endpoints stay the initial members'. Returns 0 or
 * -1. */
int e2e_node_add(struct e2e_cluster *c, const char *const *args);

/* Runs node i (not running) with --data, --listen, the --initial-cluster options when
 * initial, the extra options and args, and waits up to timeout_ms for it to exit (a
 * start that must be refused); *status receives its wait status. Returns 0, or -1 when
 * it did not start or still ran (then it is killed). */
int e2e_node_run(struct e2e_cluster *c, uint32_t i, bool initial, const char *const *args,
                 uint32_t timeout_ms, int *status);

/* True while node i's process runs (reaps it if it exited; *status gets its wait status). */
bool e2e_node_alive(struct e2e_cluster *c, uint32_t i, int *status);

/* Resizes node i's tmpfs (see tmpfs_bytes) to bytes, inside its namespace (remount; the
 * files stay). Returns 0 or -1. */
int e2e_node_tmpfs_resize(struct e2e_cluster *c, uint32_t i, uint64_t bytes);

/* Stops everything (SIGKILL), reaps, reports sanitizer findings, removes ROOT. Safe to
 * call twice and on a cluster that failed to start (zeroed). */
void e2e_cluster_stop(struct e2e_cluster *c);

/* A client of the whole cluster (cfg.endpoints = c->endpoints), request timeout
 * timeout_ms (0: E2E_REQUEST_TIMEOUT_MS), generous retries. NULL on failure. */
struct tessera_client *e2e_client(const struct e2e_cluster *c, uint32_t timeout_ms,
                                  uint32_t inflight);

/* A client of node i alone whose keyed requests all go to that node (route hooks pin
 * them: answers reach the callback as they are, no redirect). NULL on failure. */
struct tessera_client *e2e_client_pinned(const struct e2e_cluster *c, uint32_t i,
                                         uint32_t timeout_ms);

/* A key of `range` (1-based): its first byte is the range's first, then suffix. Returns
 * the length written into buf (at most cap). */
size_t e2e_range_key(const struct e2e_cluster *c, uint32_t range, const char *suffix, uint8_t *buf,
                     size_t cap);

/* Index (0-based) of the node whose status reports the most leaders, or -1; leaders[i]
 * (may be NULL) receives each node's count (0 for an unreachable node). */
int e2e_most_leaders(const struct e2e_cluster *c, struct tessera_client *cl, uint32_t *leaders);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t e2e_now_ms(void);

/* A loopback port nothing listens on (for "connection refused" checks). */
uint16_t e2e_free_port(void);

#endif
