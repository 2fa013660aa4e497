/*
 * net/client internals, shared by the module's files.
 *
 * Files: client.c the event core (slots, connections, frames, retries, timers, the use
 * of routes); route.c the built-in route cache; kv.c the key-value kinds (put, get,
 * delete, range, txn: checks, encoders, blocking calls); ops.c the Status mapping, every
 * answer's decoder and accessors, ping, status and members. Adding a request kind needs
 * an encoder that builds the op table into the client's builder, a case in
 * client_decode_op(), and a public wrapper that calls client_submit().
 *
 * Request slots. cfg.inflight_max slots are allocated at tessera_client_new. A request's
 * id is (sequence << CLIENT_SLOT_BITS) | slot, the sequence counting every submission, so
 * an answer is matched in O(1) and a late answer to a finished request (after a timeout)
 * finds its slot reused under another id and is dropped as stale. Id 0 never occurs.
 *
 * Slot states:
 *   FREE    unused;
 *   WAIT    queued for placement, at ready_ms (now for a first attempt or a redirect by
 *           the route cache, after the back-off for a retry);
 *   SENT    placed on a connection: its frame is in that connection's output buffer or on
 *           the wire, and its answer is awaited there.
 * Every non-FREE slot has a deadline; when it passes the request fails TESSERA_ETIMEOUT
 * whatever its state. A late answer is stale; bytes already queued are sent anyway.
 *
 * Connections: DOWN (no socket), CONNECTING (non-blocking connect under way; requests may
 * already be queued in its output buffer), UP. Any error (refused, reset, EOF, a frame
 * that fails verification) closes the socket, returns to DOWN and sends the connection's
 * SENT requests back to WAIT with a back-off (or fails them TESSERA_EUNAVAIL after
 * cfg.retries); the endpoint is then avoided for first attempts for one back-off period.
 *
 * Single-threaded: everything runs on the caller's thread. Callbacks never run inside a
 * submit call, and a connection is closed only outside the loop that reads its buffer,
 * so a callback may submit freely.
 */
#ifndef TS_NET_CLIENT_CLIENT_INT_H
#define TS_NET_CLIENT_CLIENT_INT_H

#include "core/util/limits.h"
#include "core/util/rand.h"
#include "net/client/tessera.h"
#include "net/proto/proto_gen.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Limits of this module (STYLE R19; kept here because they concern only the client
 * library, whose public header states them as TESSERA_*_MAX). */

/* Range descriptors the built-in route cache holds; past it the least recently used is
 * evicted. 1024 descriptors cover a keyspace of 1024 ranges (an etcd-sized cluster is far
 * smaller); each costs about 100 bytes plus its two keys. */
#define CLIENT_ROUTES_MAX 1024u

/* Immediate re-sends of one request after NotLeader, StaleEpoch or RangeNotFound (not
 * counted as back-off retries). Two or three suffice after a leader change or a split;
 * more means the cluster is moving faster than the answers, and the back-off takes over. */
#define CLIENT_REDIRECTS_MAX 8u

/* Slot index bits in a request id: enough for TESSERA_INFLIGHT_MAX. */
#define CLIENT_SLOT_BITS 16u
_Static_assert((1u << CLIENT_SLOT_BITS) >= TESSERA_INFLIGHT_MAX, "slot index fits in an id");

enum slot_state { SLOT_FREE = 0, SLOT_WAIT, SLOT_SENT };
enum conn_state { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP };

/* A growable byte buffer; data[off, len) is pending. */
struct cbuf {
    uint8_t *data;
    uint32_t off;
    uint32_t len;
    uint32_t cap;
};

struct client_slot {
    uint64_t id;
    enum slot_state state;
    enum tessera_op op;
    int conn;     /* index into client.conns when SENT, else -1 */
    int endpoint; /* the endpoint of the last attempt, -1 before the first */
    uint32_t attempts;
    int64_t deadline_ms;
    int64_t ready_ms;  /* WAIT: placement not before this */
    struct cbuf key;   /* a copy of the routing key (len 0: unkeyed), kept for retries */
    struct cbuf frame; /* the encoded frame, kept for retries */
    /* Where Request.range_id and Request.epoch sit in frame (0: not routed by the built-in
     * cache); slot_place writes the cached route there before each attempt. */
    uint32_t range_id_off;
    uint32_t epoch_off;
    uint32_t redirects;  /* immediate re-sends so far (CLIENT_REDIRECTS_MAX) */
    bool redirect;       /* WAIT for an immediate re-send: the next placement is no retry */
    int next_endpoint;   /* a leader hint's endpoint for the next attempt, or -1 */
    int pinned_endpoint; /* every attempt goes there (status of one node), or -1 */
    tessera_response_cb cb;
    void *data;
};

struct client_conn {
    int fd;
    enum conn_state state;
    int endpoint;
    uint32_t sent;               /* requests SENT on this connection */
    int64_t connect_deadline_ms; /* CONNECTING: fail the attempt at this time */
    struct cbuf out;
    struct cbuf in;
};

struct client_endpoint {
    char name[TS_CLIENT_ENDPOINT_BYTES_MAX + 1]; /* "host:port" as given or hinted */
    struct sockaddr_storage addrs[TS_CLIENT_ENDPOINT_ADDRS_MAX];
    socklen_t addr_lens[TS_CLIENT_ENDPOINT_ADDRS_MAX];
    uint32_t addr_count;    /* >= 1 */
    uint32_t addr_next;     /* the address the next connect uses */
    int64_t avoid_until_ms; /* a recent failure: first attempts go elsewhere until then */
    uint32_t failures;      /* consecutive; reset by a successful connect */
};

/* One cached range descriptor: [start, end) (end length 0: the end of the keyspace),
 * its epoch, and the endpoint of its last known leader. */
struct route_entry {
    uint64_t range_id;
    uint64_t generation;
    uint64_t conf_version;
    struct cbuf start;
    struct cbuf end;
    int leader;         /* endpoint index, or -1 */
    uint64_t used_tick; /* for eviction: the least recently used goes first */
};

/* The built-in route cache: entries[0, count) sorted by start key, never overlapping. */
struct route_cache {
    struct route_entry *entries; /* CLIENT_ROUTES_MAX */
    uint32_t count;
    uint64_t tick;
    uint64_t hits;
    uint64_t misses;
};

struct tessera_client {
    struct tessera_client_config cfg; /* endpoints cleared; defaults applied */
    const struct ts_allocator *alloc;
    struct ts_rand rand;
    struct proto_builder builder;
    /* TESSERA_ENDPOINTS_MAX allocated: those of cfg.endpoints first, then the ones leader
     * hints add (built-in cache only). */
    struct client_endpoint *endpoints;
    uint32_t endpoint_count;
    uint32_t endpoint_cfg_count; /* the first ones, from cfg.endpoints */
    struct client_conn *conns;   /* endpoint e owns [e * cpe, (e + 1) * cpe) */
    uint32_t conn_count;         /* endpoint_count * cpe, of conn_cap allocated */
    uint32_t conn_cap;           /* TESSERA_ENDPOINTS_MAX * cpe */
    struct pollfd *pfds;         /* conn_cap entries, for tessera_client_run */
    struct route_cache routes;   /* used when cfg.route is NULL */
    struct client_slot *slots;
    uint32_t slot_count;
    uint32_t free_count;
    uint32_t *free_list; /* stack of free slot indexes */
    uint32_t wait_count; /* slots in SLOT_WAIT */
    /* Lower bounds of the earliest deadline and of the earliest ready time of a WAIT slot:
     * the slot scans run only once they are reached, and recompute them. */
    int64_t next_deadline_ms;
    int64_t next_ready_ms;
    uint64_t sequence;
    uint32_t round_robin;
    bool in_callback;
    struct tessera_client_stats stats;
};

/* What an encoder gives client_submit: the op table's union type and reference. */
struct client_encoded {
    uint8_t op_type; /* PROTO_REQUEST_OP_* */
    proto_ref op;
};

/* Builds the request's op table into b. Returns 0 or a builder error. */
typedef int (*client_encode_fn)(struct proto_builder *b, const void *args,
                                struct client_encoded *out);

/* A request kind: how to encode it and what it is answered with. */
struct client_request {
    enum tessera_op op;
    client_encode_fn encode;
    const void *args;
    const uint8_t *key; /* for routing (route cache or hooks), or NULL */
    uint32_t key_len;
    uint32_t timeout_ms; /* 0: cfg.request_timeout_ms */
    uint8_t consistency; /* PROTO_CONSISTENCY_* */
    int endpoint;        /* with pinned: every attempt goes to this endpoint */
    bool pinned;
};

/* tessera_client_new with an allocator of the caller's (tests inject failures with it);
 * the client borrows alloc, which must outlive it. */
int client_new_alloc(const struct tessera_client_config *cfg, const struct ts_allocator *alloc,
                     struct tessera_client **out);

/* Encodes and queues a request. Returns 0 (cb runs exactly once later), TESSERA_EFULL,
 * TESSERA_ETOOBIG or TESSERA_ENOMEM (cb never runs). */
int client_submit(struct tessera_client *c, const struct client_request *req,
                  tessera_response_cb cb, void *data);

/* Fills out->op and out->u from a verified Response for a request of kind op. Returns 0,
 * or TESSERA_EPROTO when the answer is of another kind. resp is a view into the receive
 * buffer; out keeps pointing into it. */
int client_decode_op(enum tessera_op op, struct proto_response resp, struct tessera_response *out);

/* Maps a wire Status to 0 or a TESSERA_E* code. */
int client_status_to_error(uint16_t status);

/* Runs the loop until *done is set (by the request's callback). Not from a callback. */
void client_wait(struct tessera_client *c, const bool *done);

/* ---- the built-in route cache (route.c) ---- */

int route_cache_init(struct tessera_client *c);
void route_cache_fini(struct tessera_client *c);

/* The entry whose [start, end) holds key, or -1. Marks it used. */
int route_find(struct tessera_client *c, const uint8_t *key, uint32_t key_len);

/* Stores a descriptor (replacing every entry it overlaps, keeping the leader of an entry
 * of the same range id). Returns the entry's index or a negative error (allocation). */
int route_put(struct tessera_client *c, const struct tessera_range_desc *d);

/* Forgets the entry holding key, if any. */
void route_drop(struct tessera_client *c, const uint8_t *key, uint32_t key_len);

/* The endpoint named address ("host:port", numeric only), added when new and there is
 * room. Returns its index, or -1 (not numeric, no room). Never blocks. */
int client_endpoint_for(struct tessera_client *c, const char *address);

#endif
