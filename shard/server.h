/*
 * shard/server: the client-facing side of one shard. It puts a net/io transport on the
 * shard's ring (tag SHARD_TAG_NIO), listens on the node's address (every shard binds the
 * same port with SO_REUSEPORT, so the kernel spreads connections and no connection ever
 * changes thread), reads request frames, answers them and flushes once per loop
 * iteration.
 *
 * Requests today: Ping (its payload is echoed: the transport's tests and benchmarks,
 * and a liveness probe for clients). Every other request is answered with status
 * Unavailable and a message saying this build does not serve it yet (the key-value
 * requests come with the multi-Raft server, issue 7), never with a fake success. A frame
 * that does not verify, or a message that is not a Request, closes that connection only,
 * with the reason logged.
 *
 * Ownership: a struct server belongs to its shard thread; server_start runs in the
 * node's init_cb, server_stop in its stop_cb (stop accepting, answer what was read,
 * flush for at most 2 s, close), and server_free after shard_node_wait: the loop keeps
 * the server's iteration hook until the loop itself is destroyed. A server_start that
 * fails still returns its struct, which server_stop winds down like any other.
 */
#ifndef TS_SHARD_SERVER_H
#define TS_SHARD_SERVER_H

#include "core/util/log.h"
#include "net/io/nio.h"
#include "shard/node.h"

#include <stdbool.h>
#include <stdint.h>

struct server;

struct server_config {
    const char *listen;       /* "ip:port", the same on every shard */
    struct nio_config nio;    /* limits of the transport (zero fields: nio's defaults) */
    const struct ts_log *log; /* borrowed; NULL: no log lines */
};

struct server_stats {
    uint64_t requests;
    uint64_t pings;
    uint64_t unsupported; /* answered Unavailable */
    uint64_t bad_frames;  /* connections closed for a frame that did not verify */
};

/* On shard s's thread. Returns 0, TS_ENOMEM or the listener's error (-errno). */
int server_start(struct shard *s, const struct server_config *cfg, struct server **out);
/* Stops accepting and closes connections once their answers are sent. Returns true once
 * nothing is left (call again on later iterations until then). */
bool server_stop(struct server *sv);
/* When the shard's init fails after server_start succeeded (the host could not start):
 * its stop_cb will not run (shard/node.h), so this closes the listener and every
 * connection at once, as a failed server_start does, leaving server_free to finish. */
void server_abort(struct server *sv);
/* After shard_node_wait (the shard's ring is gone). */
void server_free(struct server *sv);
/* The port actually bound (when cfg->listen asked for port 0). */
uint16_t server_port(const struct server *sv);
void server_get_stats(const struct server *sv, struct server_stats *out);
struct nio *server_nio(struct server *sv);

struct host;
/* Hands key-value requests, peers' Hellos and Raft frames to h (shard/host.h); a Hello
 * from another cluster closes its connection. */
void server_set_host(struct server *sv, struct host *h, uint64_t cluster_id);

#endif
