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
 * Routing (issue 7). struct tessera_route_hooks lets the caller keep a route cache:
 * lookup() picks the endpoint for a keyed request, update() receives descriptors and
 * leader hints from answers, invalidate() is called when an answer says the route was
 * wrong. Without hooks (and for unkeyed requests such as ping) any endpoint is used.
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
};

/* The server's answer: a view valid only during the callback it is passed to; copy out
 * what must outlive it. Byte fields are not NUL-terminated unless stated. */
struct tessera_response {
    uint64_t id;         /* the request id */
    int status;          /* 0, or the answer's Status mapped to a TESSERA_E* code */
    const char *message; /* NUL-terminated detail for a non-Ok status, or NULL */
    uint64_t revision;   /* the range's revision when the answer was made, 0 if none */
    enum tessera_op op;  /* which member of u is set */
    union {
        struct {
            const uint8_t *payload; /* the echoed bytes */
            size_t len;
        } ping;
    } u;
};

/* Called once per request. data is the caller's pointer, passed through; resp is NULL
 * when no answer arrived (see the top of this file). May submit new requests; must not
 * call tessera_client_free, tessera_client_run or a blocking call. */
typedef void (*tessera_response_cb)(void *data, int status, const struct tessera_response *resp);

/* ------------------------------------------------------------------ route hooks */

/* A range descriptor carried by an answer (StaleEpoch, RangeNotFound, route answers):
 * a view valid during the hook call only. */
struct tessera_range_desc {
    uint64_t range_id;
    const uint8_t *start_key; /* inclusive */
    size_t start_key_len;
    const uint8_t *end_key; /* exclusive; length 0 is the end of the keyspace */
    size_t end_key_len;
    uint64_t generation;
    uint64_t conf_version;
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
 * may wait before calling tessera_client_fds() again (-1: nothing timed pending). */
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

#ifdef __cplusplus
}
#endif

#endif
