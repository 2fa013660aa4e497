/*
 * tessera.h: the public C API of Tessera's client library (libtessera).
 *
 * What it owns. A struct tessera_client owns its sockets, its buffers and a fixed table
 * of request slots (cfg.inflight_max, allocated once in tessera_client_new). Nothing is
 * allocated per request in steady state: a slot's encode buffer and a connection's
 * buffers grow to the largest frame seen and are then reused.
 *
 * Event core. Non-blocking sockets and poll(): no threads, no io_uring, so it runs in
 * any application. Callbacks run on the caller's thread, inside tessera_client_run() or
 * tessera_client_process(), never inside a submit call. A client belongs to one thread;
 * it has no locks. Two ways to drive it:
 *   - tessera_client_run(c, timeout_ms): poll and process until at least one request
 *     completes or the timeout passes;
 *   - an application loop: tessera_client_fds() before each poll (it also starts
 *     connections and places queued requests), poll with at most
 *     tessera_client_next_timeout_ms(), then tessera_client_process() with the results.
 *
 * Requests are pipelined: each gets an id (the wire Request.id), any number up to
 * cfg.inflight_max are outstanding, spread over the connections, and answers are
 * matched by id in any order. Every request ends in exactly one callback:
 *   status 0                  the server answered Ok; resp holds the answer;
 *   status < 0, resp != NULL  the server answered with an error Status (mapped below);
 *   status < 0, resp == NULL  no answer: TESSERA_ETIMEOUT (the request's deadline, which
 *                             covers every attempt), TESSERA_EUNAVAIL (connections lost
 *                             or refused on more than cfg.retries attempts),
 *                             TESSERA_ESHUTDOWN (tessera_client_free), TESSERA_EPROTO (an
 *                             answer of the wrong kind).
 * On connection loss (refused, reset, closed, or a frame that fails verification) the
 * requests on that connection are retried on another endpoint after a jittered
 * exponential back-off, up to cfg.retries times. A retry resends the same request id.
 *
 * Errors are negative ints: -errno from the OS, or a TESSERA_E* code below. The
 * TESSERA_E* values equal Tessera's internal codes (core/util/err.h), checked at compile
 * time in client.c, so tessera_strerror() covers both.
 *
 * Routing. Any node accepts any request and forwards it to the range's leader, so
 * routing is an optimisation, never a requirement. Without route hooks (cfg.route NULL)
 * the client keeps its own route cache: range descriptors (range id, [start, end), epoch,
 * last known leader), sorted by start key, at most 1024 (least recently used evicted).
 *   - A keyed request (put, get, delete, range: its key; txn: its first compare's or op's
 *     key) whose key a cached range holds carries that range's id and epoch
 *     (Request.range_id, Request.epoch) and goes to the range's leader when known; else
 *     it carries range id 0 (route by key) and goes to the next of cfg.endpoints.
 *   - Any answer carrying a descriptor (Response.range) updates the cache; a node may
 *     attach one to any answer, and must to StaleEpoch.
 *   - NotLeader with a leader hint whose address is numeric ("10.0.0.7:7000",
 *     "[::1]:7000"; names are not resolved, so the loop never blocks): the address
 *     becomes an endpoint if new (up to TESSERA_ENDPOINTS_MAX; such endpoints serve only
 *     the routes naming them), the range's leader, and the request is re-sent there at
 *     once. NotLeader without a usable hint, or after 8 re-sends: retried elsewhere
 *     after a back-off until the request's deadline (leadership is moving).
 *   - StaleEpoch or RangeNotFound to a request that carried a cached route: the
 *     descriptor is replaced (or dropped) and the request re-sent at once, routed anew.
 *     RangeNotFound to a request routed by key is final.
 *   Immediate re-sends are not back-off retries, but are bounded (8 per request); past
 *   that the answer's status reaches the callback.
 * struct tessera_route_hooks replaces the built-in cache with the caller's: lookup()
 * picks the endpoint for a keyed request, update() receives descriptors and leader hints
 * from answers, invalidate() is called when an answer says the route was wrong; the
 * answer then reaches the callback as it is (no re-send, no range id on the wire).
 * Unkeyed requests (ping, status, members, route, join) go to any of cfg.endpoints.
 *
 * Wire: a frame is a u32 little-endian length L followed by L bytes of a FlatBuffers
 * Message (net/proto/tessera.fbs); every received frame is verified before any field is
 * read, and a server whose frame fails verification loses that connection.
 *
 * Exported symbols: only tessera_* (libtessera.so is built with -fvisibility=hidden).
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TESSERA_API __attribute__((visibility("default")))
#else
#define TESSERA_API
#endif

/* ------------------------------------------------------------------ errors */

/* Tessera's codes (equal to core/util/err.h's TS_E*); anything else negative is -errno. */
enum tessera_error {
    TESSERA_OK = 0,
    TESSERA_EPROTO = -10063,      /* malformed frame or message, or an unexpected answer */
    TESSERA_ETOOBIG = -10062,     /* a key, value or frame over its limit */
    TESSERA_ECORRUPT = -10061,    /* corrupt data */
    TESSERA_ENOTLEADER = -10060,  /* the node does not lead the range (see leader hint) */
    TESSERA_ESTALEEPOCH = -10059, /* the request's range epoch is stale */
    TESSERA_ENORANGE = -10058,    /* no range holds the key */
    TESSERA_ENOTFOUND = -10057,   /* key, lease or other object not found */
    TESSERA_EFULL = -10056,       /* a limit was reached (in-flight slots, back-pressure) */
    TESSERA_EUNAVAIL = -10055,    /* no endpoint could be reached after the retries */
    TESSERA_ETIMEOUT = -10054,    /* the request's deadline passed */
    TESSERA_ECOMPACTED = -10053,  /* the revision asked for has been compacted */
    TESSERA_ESHUTDOWN = -10052,   /* the client (or the node) is shutting down */
    TESSERA_EINVAL = -10051,      /* invalid argument or unsupported request */
    TESSERA_ENOMEM = -10050,      /* out of memory */
    TESSERA_EIO = -10049,         /* the node reported an internal error */
    TESSERA_ENOSPACE = -10048,    /* the node is out of disk space */
};

/* A message for 0, any TESSERA_E* code or any -errno. Never NULL; static storage. */
TESSERA_API const char *tessera_strerror(int code);

/* ------------------------------------------------------------------ configuration */

/* Defaults (tessera_client_config_init) and upper bounds (tessera_client_new refuses more
 * with TESSERA_EINVAL). */
#define TESSERA_CONNECTIONS_DEFAULT 1u
#define TESSERA_REQUEST_TIMEOUT_MS_DEFAULT 5000u
#define TESSERA_RETRIES_DEFAULT 3u
#define TESSERA_BACKOFF_BASE_MS_DEFAULT 10u
#define TESSERA_BACKOFF_MAX_MS_DEFAULT 1000u
#define TESSERA_INFLIGHT_DEFAULT 1024u
#define TESSERA_ENDPOINTS_MAX 64u
#define TESSERA_CONNECTIONS_MAX 64u
#define TESSERA_INFLIGHT_MAX 65536u
#define TESSERA_RETRIES_MAX 100u

struct tessera_route_hooks;

struct tessera_client_config {
    /* "host:port,host:port,...": names or numeric addresses, IPv6 as "[::1]:7000".
     * Borrowed during tessera_client_new only. Names are resolved there (blocking). */
    const char *endpoints;
    /* Connections opened (lazily) to each endpoint; requests are spread over them. */
    uint32_t connections_per_endpoint;
    /* Deadline of a request, counted from its submission and covering all attempts. */
    uint32_t request_timeout_ms;
    /* Further attempts after a connection loss; 0 means fail at the first loss. */
    uint32_t retries;
    /* Back-off before attempt n+1 (n >= 1): a uniform draw in [d/2, d] with
     * d = min(backoff_max_ms, backoff_base_ms * 2^(n-1)). */
    uint32_t backoff_base_ms;
    uint32_t backoff_max_ms;
    /* Requests outstanding at once; one more is refused with TESSERA_EFULL. */
    uint32_t inflight_max;
    /* Seed of the back-off jitter generator (runs are reproducible from it). */
    uint64_t seed;
    /* Route cache hooks, or NULL. Borrowed: must outlive the client. */
    const struct tessera_route_hooks *route;
};

/* Fills cfg with the defaults above (endpoints NULL, route NULL, seed 1). */
TESSERA_API void tessera_client_config_init(struct tessera_client_config *cfg);

/* ------------------------------------------------------------------ answers */

enum tessera_op {
    TESSERA_OP_NONE = 0,
    TESSERA_OP_PING = 1,
    TESSERA_OP_PUT = 2,
    TESSERA_OP_GET = 3,
    TESSERA_OP_DELETE = 4,
    TESSERA_OP_RANGE = 5,
    TESSERA_OP_TXN = 6,
    TESSERA_OP_STATUS = 7,
    TESSERA_OP_MEMBERS = 8,
    TESSERA_OP_JOIN = 9,
    TESSERA_OP_ROUTE = 10
};

#define TESSERA_REPLICAS_MAX 16 /* replicas a route answer reports per descriptor */

/* A key-value as the server holds it: a view (valid only in the callback it came to). */
struct tessera_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value; /* NULL with TESSERA_KEYS_ONLY */
    size_t value_len;
    uint64_t create_revision;
    uint64_t mod_revision;
    uint64_t version; /* puts since creation, 1 for a new key */
    uint64_t lease;   /* 0: none */
};

/* A node's state in a members answer. */
enum tessera_node_state {
    TESSERA_NODE_UP = 0,
    TESSERA_NODE_SUSPECT = 1,
    TESSERA_NODE_DOWN = 2,
    TESSERA_NODE_JOINING = 3,
    TESSERA_NODE_DECOMMISSIONING = 4
};

/* One member of the cluster (tessera_response_member_at); address is a view. */
struct tessera_member {
    uint64_t node_id;
    const char *address; /* "host:port", NUL-terminated, or NULL */
    uint32_t shards;
    enum tessera_node_state state;
    uint64_t capacity_bytes;
    uint64_t used_bytes;
    uint32_t replicas;
    uint32_t leaders;
};

/* The server's answer: a view valid only during the callback it is passed to; copy out
 * what must outlive it. Byte fields are not NUL-terminated unless stated. */
struct tessera_response {
    uint64_t id;         /* the request id */
    int status;          /* 0, or the answer's Status mapped to a TESSERA_E* code */
    const char *message; /* NUL-terminated detail for a non-Ok status, or NULL */
    uint64_t revision;   /* the range's revision when the answer was made, 0 if none */
    enum tessera_op op;  /* which member of u is set (NONE for an error status) */
    union {
        struct {
            const uint8_t *payload; /* the echoed bytes */
            size_t len;
        } ping;
        struct {
            int has_prev; /* TESSERA_PREV_KV was asked and the key existed */
            struct tessera_kv prev;
        } put;
        struct {
            int found; /* 0: the key does not exist (status is still 0) */
            struct tessera_kv kv;
        } get;
        struct {
            uint64_t deleted; /* keys deleted; their values with TESSERA_PREV_KV */
        } del;
        struct {
            uint64_t count; /* keys in the range (all of them, not only this page's) */
            int more;       /* further keys after this page: ask again from next_key */
            const uint8_t *next_key;
            size_t next_key_len;
        } range;
        struct {
            int succeeded;  /* the compares held: the then ops ran (else the else ops) */
            size_t results; /* one per op that ran: tessera_response_txn_result() */
        } txn;
        struct {
            uint64_t node_id;
            uint64_t cluster_id;
            const char *version; /* NUL-terminated, or NULL */
            uint32_t shards;
            uint32_t replicas;
            uint32_t leaders;
            uint64_t db_size_bytes;
            uint64_t wal_size_bytes;
            uint64_t uptime_ms;
        } status;
        struct {
            size_t count; /* tessera_response_member_at() */
        } members;
        struct {
            uint64_t node_id; /* the id the meta range gave the node (or its own) */
            uint64_t cluster_id;
            uint32_t ranges;
            uint32_t shards;
            const char *initial_cluster; /* "id=addr,...", NUL-terminated, or NULL */
            size_t members;              /* tessera_response_member_at() */
        } join;
        struct {
            size_t count; /* tessera_response_range_at() */
        } route;
    } u;
    const void *internal_; /* the answer's op table, for the accessors below; do not use */
};

/* Called once per request. data is the caller's pointer, passed through; resp is NULL
 * when no answer arrived (see the top of this file). May submit new requests; must not
 * call tessera_client_free, tessera_client_run or a blocking call. */
typedef void (*tessera_response_cb)(void *data, int status, const struct tessera_response *resp);

/* ------------------------------------------------------------------ route hooks */

/* A range descriptor carried by an answer (StaleEpoch, RangeNotFound, route answers):
 * a view valid during the hook call (or the callback) only. */
struct tessera_range_desc {
    uint64_t range_id;
    const uint8_t *start_key; /* inclusive */
    size_t start_key_len;
    const uint8_t *end_key; /* exclusive; length 0 is the end of the keyspace */
    size_t end_key_len;
    uint64_t generation;   /* bumped by splits and merges */
    uint64_t conf_version; /* bumped by replica changes */
    size_t replicas;       /* route answers (tessera_response_range_at) only */
    uint64_t replica_node[TESSERA_REPLICAS_MAX];
    uint32_t replica_shard[TESSERA_REPLICAS_MAX];
};

/* A leader hint carried by a NotLeader answer (view valid during the hook call only). */
struct tessera_leader_hint {
    uint64_t node_id;
    uint64_t replica_id;
    const char *address; /* "host:port", NUL-terminated, or NULL when unknown */
};

/*
 * The route cache's hook points. All optional (NULL: not called). They run on the
 * client's thread, inside submit calls (lookup) or processing (update, invalidate), and
 * must not call back into the client.
 *
 * lookup(data, key, len): called when a keyed request is placed (first attempt and each
 *   retry). Returns an index into cfg.endpoints (0-based, in the order given), or -1 to
 *   let the client choose. Borrows key.
 * update(data, desc, hint): called for every answer that carries a range descriptor or a
 *   leader hint; desc or hint may be NULL, not both.
 * invalidate(data, key, len): called when an answer says the route used for key was
 *   wrong (NotLeader, StaleEpoch, RangeNotFound), before update() for the same answer.
 */
struct tessera_route_hooks {
    int (*lookup)(void *data, const uint8_t *key, size_t key_len);
    void (*update)(void *data, const struct tessera_range_desc *desc,
                   const struct tessera_leader_hint *hint);
    void (*invalidate)(void *data, const uint8_t *key, size_t key_len);
    void *data;
};

/* ------------------------------------------------------------------ the client */

struct tessera_client;

/* Creates a client; no connection is opened until a request needs one. Borrows cfg
 * (and cfg->route, which must outlive the client). Returns 0 and *out, or TESSERA_EINVAL
 * (malformed endpoints, a name that does not resolve, a field over its maximum) or
 * TESSERA_ENOMEM, with *out NULL. */
TESSERA_API int tessera_client_new(const struct tessera_client_config *cfg,
                                   struct tessera_client **out);

/* Closes every connection, completes outstanding requests with TESSERA_ESHUTDOWN (their
 * callbacks run here) and frees the client. NULL does nothing. Not from a callback. */
TESSERA_API void tessera_client_free(struct tessera_client *c);

/* Polls and processes until at least one request has completed (its callback run) or
 * timeout_ms passed (-1: no limit). Returns the number of callbacks run, 0 at once when
 * nothing is outstanding, or a negative error from poll(). Not from a callback. */
TESSERA_API int tessera_client_run(struct tessera_client *c, int timeout_ms);

/* For an application's own loop. tessera_client_fds() starts due work (connections,
 * placing queued and backed-off requests, expiring deadlines, which may run callbacks)
 * and fills fds with up to cap descriptors and their events; returns the count, or
 * TESSERA_ETOOBIG when cap < tessera_client_fds_max(). After poll(), pass the same array
 * (with revents) to tessera_client_process(), which runs callbacks and returns how many
 * ran, or a negative error. tessera_client_next_timeout_ms() is the longest the caller
 * may wait before calling tessera_client_fds() again (-1: nothing timed pending).
 * tessera_client_fds_max() is constant for the client's life: TESSERA_ENDPOINTS_MAX *
 * connections_per_endpoint, room for the endpoints leader hints may add. */
TESSERA_API int tessera_client_fds_max(const struct tessera_client *c);
TESSERA_API int tessera_client_fds(struct tessera_client *c, struct pollfd *fds, int cap);
TESSERA_API int tessera_client_process(struct tessera_client *c, const struct pollfd *fds, int n);
TESSERA_API int tessera_client_next_timeout_ms(struct tessera_client *c);

/* Requests outstanding (submitted, callback not yet run). */
TESSERA_API uint32_t tessera_client_inflight(const struct tessera_client *c);

/* Counters since tessera_client_new, for monitoring and tests. */
struct tessera_client_stats {
    uint64_t requests;    /* submitted */
    uint64_t completed;   /* callbacks run, whatever the status */
    uint64_t timeouts;    /* completed with TESSERA_ETIMEOUT */
    uint64_t retries;     /* attempts after the first */
    uint64_t unavailable; /* completed with TESSERA_EUNAVAIL */
    uint64_t connects;    /* connections established */
    uint64_t connect_failures;
    uint64_t disconnects;   /* established connections lost or closed by the client */
    uint64_t bad_frames;    /* frames from a server that failed verification */
    uint64_t stale_answers; /* answers whose id matched no outstanding request */
    uint64_t redirects;     /* immediate re-sends after NotLeader, StaleEpoch, RangeNotFound */
};

TESSERA_API void tessera_client_get_stats(const struct tessera_client *c,
                                          struct tessera_client_stats *out);

/* ------------------------------------------------------------------ requests */

/* Sends PingRequest{payload}; the server echoes it in PingResponse (resp->u.ping).
 * Borrows payload (copied before returning). Returns 0 (cb will run exactly once),
 * TESSERA_EFULL (inflight_max outstanding), TESSERA_ETOOBIG (over the frame limit) or
 * TESSERA_EINVAL; on error cb is not called. */
TESSERA_API int tessera_ping_async(struct tessera_client *c, const void *payload, size_t len,
                                   tessera_response_cb cb, void *data);

/* Blocking ping: runs the client's loop until the answer (callbacks of other requests
 * run meanwhile). timeout_ms 0 uses cfg.request_timeout_ms. Returns 0 when the payload
 * came back intact, TESSERA_EPROTO when it did not, or the request's error. Not from a
 * callback. */
TESSERA_API int tessera_ping(struct tessera_client *c, const void *payload, size_t len,
                             uint32_t timeout_ms);

/* ------------------------------------------------------------------ key-value */

/* Limits checked before anything is sent (TESSERA_ETOOBIG); equal to the server's. */
#define TESSERA_KEY_BYTES_MAX 1023u
#define TESSERA_VALUE_BYTES_MAX (1024u * 1024u - 33u)

enum tessera_consistency {
    TESSERA_LINEARIZABLE = 0, /* the leader's view: reads see every write acknowledged */
    TESSERA_SERIALIZABLE = 1  /* any replica's applied state: faster, possibly stale */
};

/* Request flags. */
#define TESSERA_PREV_KV 0x1u      /* put, delete: return the previous key-value(s) */
#define TESSERA_IGNORE_VALUE 0x2u /* put: keep the current value (update the lease only) */
#define TESSERA_IGNORE_LEASE 0x4u /* put: keep the current lease */
#define TESSERA_KEYS_ONLY 0x8u    /* range: keys and metadata, no values */
#define TESSERA_COUNT_ONLY 0x10u  /* range: only the count */

enum tessera_compare_target {
    TESSERA_CMP_VALUE = 0,
    TESSERA_CMP_VERSION = 1,
    TESSERA_CMP_CREATE = 2,
    TESSERA_CMP_MOD = 3,
    TESSERA_CMP_LEASE = 4
};

enum tessera_compare_result {
    TESSERA_CMP_EQUAL = 0,
    TESSERA_CMP_NOT_EQUAL = 1,
    TESSERA_CMP_LESS = 2,
    TESSERA_CMP_GREATER = 3
};

/* A transaction's condition: `target of key` `result` `value or number`, e.g. the
 * version of "k" EQUAL 0 (the key does not exist). With range_end, every key of
 * [key, range_end) must satisfy it. value is used with TESSERA_CMP_VALUE, number with the
 * other targets. */
struct tessera_compare {
    const void *key;
    size_t key_len;
    const void *range_end; /* NULL: the key alone */
    size_t range_end_len;
    enum tessera_compare_target target;
    enum tessera_compare_result result;
    const void *value;
    size_t value_len;
    int64_t number;
};

/* One operation of a transaction's then or else branch. PUT uses key, value, lease and
 * flags; GET uses key; DELETE uses key, range_end and flags; RANGE uses key, range_end,
 * limit and flags. */
struct tessera_txn_op {
    enum tessera_op op; /* TESSERA_OP_PUT, _GET, _DELETE or _RANGE */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const void *range_end;
    size_t range_end_len;
    uint64_t lease;
    uint64_t limit;
    uint32_t flags;
};

/* A scan of [key, range_end); range_end NULL is the key alone, and the one byte "\0" is
 * every key from key on (etcd's convention). */
struct tessera_range_opts {
    const void *key;
    size_t key_len;
    const void *range_end;
    size_t range_end_len;
    uint64_t limit;    /* rows in this answer; 0: as many as fit in one frame */
    uint64_t revision; /* 0: the latest */
    uint32_t flags;    /* TESSERA_KEYS_ONLY, TESSERA_COUNT_ONLY */
    enum tessera_consistency consistency;
};

/*
 * The asynchronous calls. Each borrows its arguments (they are encoded before it
 * returns) and returns 0 (cb will run exactly once, with resp->op the request's kind),
 * TESSERA_EINVAL (c or cb NULL, a NULL key, an unknown op or flag), TESSERA_ETOOBIG (a
 * key over TESSERA_KEY_BYTES_MAX, a value over TESSERA_VALUE_BYTES_MAX, or a request over
 * the frame limit) or TESSERA_EFULL (inflight_max outstanding); on error cb is not run.
 * Keyed requests go through the route cache (see "Routing" at the top of this file).
 * A get of a missing key completes with status 0 and resp->u.get.found == 0.
 */
TESSERA_API int tessera_put_async(struct tessera_client *c, const void *key, size_t key_len,
                                  const void *value, size_t value_len, uint64_t lease,
                                  uint32_t flags, tessera_response_cb cb, void *data);
TESSERA_API int tessera_get_async(struct tessera_client *c, const void *key, size_t key_len,
                                  enum tessera_consistency consistency, tessera_response_cb cb,
                                  void *data);
/* range_end NULL deletes the key alone; else [key, range_end). */
TESSERA_API int tessera_delete_async(struct tessera_client *c, const void *key, size_t key_len,
                                     const void *range_end, size_t range_end_len, uint32_t flags,
                                     tessera_response_cb cb, void *data);
TESSERA_API int tessera_range_async(struct tessera_client *c, const struct tessera_range_opts *o,
                                    tessera_response_cb cb, void *data);
/* The compares, then ops and else ops (each array may be NULL when its count is 0; at
 * most TESSERA_TXN_OPS_MAX of each). */
#define TESSERA_TXN_OPS_MAX 128u
TESSERA_API int tessera_txn_async(struct tessera_client *c, const struct tessera_compare *cmp,
                                  size_t ncmp, const struct tessera_txn_op *then_ops, size_t nthen,
                                  const struct tessera_txn_op *else_ops, size_t nelse,
                                  tessera_response_cb cb, void *data);
/* The status of one node: endpoint is an index into cfg.endpoints (pinned: retries go
 * to the same node), or -1 for any. */
TESSERA_API int tessera_status_async(struct tessera_client *c, int endpoint, tessera_response_cb cb,
                                     void *data);
/* The members, as the meta range records them (a read of range 1: linearizable, or a
 * serializable read of whichever replica answers), with the liveness the answering node
 * sees. */
TESSERA_API int tessera_members_async(struct tessera_client *c,
                                      enum tessera_consistency consistency, tessera_response_cb cb,
                                      void *data);
/* The range descriptors the meta range holds: range_id's alone, or (range_id 0) those from
 * the range holding key on, up to limit (0: the server's default, 64). */
TESSERA_API int tessera_route_async(struct tessera_client *c, const void *key, size_t key_len,
                                    uint64_t range_id, uint32_t limit, tessera_response_cb cb,
                                    void *data);
/* Asks the meta range for a node id for a new node serving at address (node_id 0), or
 * records node node_id as started at address. What tesserad --join does. */
TESSERA_API int tessera_join_async(struct tessera_client *c, const char *address, uint32_t shards,
                                   uint64_t node_id, tessera_response_cb cb, void *data);

/* The repeated parts of an answer; views valid only in the callback. */

/* Range answers: the rows; delete answers: the previous key-values (TESSERA_PREV_KV);
 * 0 for other answers. kv_at returns 0, or TESSERA_EINVAL when i is out of bounds. */
TESSERA_API size_t tessera_response_kvs(const struct tessera_response *r);
TESSERA_API int tessera_response_kv_at(const struct tessera_response *r, size_t i,
                                       struct tessera_kv *out);
/* Txn answers: the result of the i-th op that ran, as a nested answer (op PUT, GET,
 * DELETE or RANGE, status 0, the txn's revision), itself usable with the accessors.
 * Returns 0, TESSERA_EINVAL (not a txn answer, i out of bounds) or TESSERA_EPROTO. */
TESSERA_API int tessera_response_txn_result(const struct tessera_response *r, size_t i,
                                            struct tessera_response *out);
/* Members and join answers: member i. Returns 0 or TESSERA_EINVAL. */
TESSERA_API int tessera_response_member_at(const struct tessera_response *r, size_t i,
                                           struct tessera_member *out);
/* Route answers: descriptor i. Returns 0 or TESSERA_EINVAL. */
TESSERA_API int tessera_response_range_at(const struct tessera_response *r, size_t i,
                                          struct tessera_range_desc *out);

/*
 * Blocking conveniences: each runs the client's loop until its answer (callbacks of other
 * requests run meanwhile) and returns 0 or the request's error (as the async call's, or
 * the status of the answer). timeout_ms 0 uses cfg.request_timeout_ms. Not from a
 * callback.
 */
TESSERA_API int tessera_put(struct tessera_client *c, const void *key, size_t key_len,
                            const void *value, size_t value_len, uint64_t lease, uint32_t flags,
                            uint32_t timeout_ms);
/* Copies up to cap bytes of the value into buf (may be NULL when cap is 0) and stores its
 * full length in *value_len (may be NULL); meta (may be NULL) receives the revisions,
 * version and lease, with its key and value pointers NULL. Returns TESSERA_ENOTFOUND when
 * the key does not exist. */
TESSERA_API int tessera_get(struct tessera_client *c, const void *key, size_t key_len,
                            enum tessera_consistency consistency, void *buf, size_t cap,
                            size_t *value_len, struct tessera_kv *meta, uint32_t timeout_ms);
/* *deleted (may be NULL) receives the number of keys deleted. */
TESSERA_API int tessera_delete(struct tessera_client *c, const void *key, size_t key_len,
                               const void *range_end, size_t range_end_len, uint64_t *deleted,
                               uint32_t timeout_ms);
/* Called for each row of a blocking range, a view valid during the call. Non-zero stops
 * the scan, and tessera_range returns that value. */
typedef int (*tessera_kv_cb)(void *data, const struct tessera_kv *kv);
/* Pages through [o->key, o->range_end) (following `more` and next_key, one request of
 * timeout_ms each) until the end or o->limit rows (0: no limit), calling row for each.
 * *count (may be NULL) receives the rows seen, or with TESSERA_COUNT_ONLY the server's
 * count. Later pages read the latest revision unless o->revision is set. */
TESSERA_API int tessera_range(struct tessera_client *c, const struct tessera_range_opts *o,
                              tessera_kv_cb row, void *data, uint64_t *count, uint32_t timeout_ms);
/* *succeeded (may be NULL) receives 1 when the compares held. */
TESSERA_API int tessera_txn(struct tessera_client *c, const struct tessera_compare *cmp,
                            size_t ncmp, const struct tessera_txn_op *then_ops, size_t nthen,
                            const struct tessera_txn_op *else_ops, size_t nelse, int *succeeded,
                            uint32_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
