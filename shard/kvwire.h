/*
 * shard/kvwire: key-value requests between the wire (net/proto) and core/kv.
 *
 * kvwire_parse() turns a verified Request into core/kv's request structs (views into
 * the frame: valid while the frame is) and the key that routes it. kvwire_answer is a
 * core/kv sink that builds the FlatBuffers answer while kv streams rows: each row
 * becomes a KeyValue table at once, each op its response table when it ends, so the
 * answer is never held twice. kvwire_finish() wraps it in a Response and a Message.
 *
 * Both belong to one shard; the answer's builder and row stack are reused from answer to
 * answer (steady state does not allocate).
 */
#ifndef TS_SHARD_KVWIRE_H
#define TS_SHARD_KVWIRE_H

#include "core/kv/kv.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"

#include <stdbool.h>
#include <stdint.h>

/* Requests served by the meta range (range 1) rather than core/kv. */
enum kvwire_meta_kind {
    KVWIRE_MEMBERS = 16, /* a read: the member records */
    KVWIRE_ROUTE = 17,   /* a read: descriptors from a key or a range id */
    KVWIRE_JOIN = 18,    /* a write: a new node's id, or a started node's announcement */
};

struct kvwire_req {
    uint8_t kind;    /* KV_OP_PUT..KV_OP_TXN, or enum kvwire_meta_kind */
    struct kv_op op; /* PUT, GET, DELETE, RANGE */
    /* TXN: views into the caller's arrays (TS_KV_TXN_OPS_MAX each). */
    struct kv_compare *cmps;
    struct kv_op *succ;
    struct kv_op *fail;
    uint32_t cmps_n, succ_n, fail_n;
    struct kv_bytes route_key; /* the key whose range serves the request */
    bool linearizable;         /* reads */
    struct {
        struct kv_bytes key; /* from this key's range on... */
        uint64_t range_id;   /* ...or this range only (not 0) */
        uint32_t limit;      /* descriptors; 0: TS_HOST_ROUTE_LIMIT_DEFAULT */
    } route;
    struct {
        struct kv_bytes addr;
        uint32_t shards;
        uint64_t node_id; /* 0: a new node */
    } join;
};

/* Arrays a txn's parse fills; one per shard. */
struct kvwire_txn_space {
    struct kv_compare cmps[TS_KV_TXN_OPS_MAX];
    struct kv_op succ[TS_KV_TXN_OPS_MAX];
    struct kv_op fail[TS_KV_TXN_OPS_MAX];
};

/* Returns 0, or a proto Status (PROTO_STATUS_*) with *why set: InvalidArgument (no key,
 * a txn over its limits or with an empty op), KeyTooLarge, ValueTooLarge, Unsupported
 * (a sequential put, or not a key-value request). Members, Route and Join requests
 * route to range 1 (route_key empty). */
int kvwire_parse(struct proto_request req, struct kvwire_txn_space *space, struct kvwire_req *out,
                 const char **why);

/* The answer being built. */
struct kvwire_answer {
    struct proto_builder *b;
    proto_ref *rows; /* KeyValue tables of the op in progress, then TxnOpResults */
    uint32_t rows_n;
    uint32_t rows_cap;
    uint32_t op_mark; /* where the op in progress's rows begin */
    uint8_t op_kind;
    proto_ref result;    /* the finished top-level op response */
    uint8_t result_type; /* PROTO_RESPONSE_OP_* */
    bool in_txn;
    bool failed; /* out of memory: answer Internal */
    const struct ts_allocator *alloc;
};

void kvwire_answer_init(struct kvwire_answer *a, struct proto_builder *b,
                        const struct ts_allocator *alloc);
void kvwire_answer_fini(struct kvwire_answer *a);
/* Resets the builder and the answer for a new one; returns the sink to give core/kv. */
struct kv_sink kvwire_answer_begin(struct kvwire_answer *a);

/* Finishes the Message: Response{id, status (Ok when status is 0), message, revision,
 * leader (a LeaderHint the caller built in a->b, or 0), range (a RangeDescriptor, or 0),
 * and the op the sink built, when status is Ok}. Returns 0 and the frame as a view
 * valid until the builder's next reset, or the builder's error. */
int kvwire_finish(struct kvwire_answer *a, uint64_t id, uint16_t status, const char *message,
                  uint64_t revision, proto_ref leader, proto_ref range, const uint8_t **frame,
                  uint32_t *len);

/* The proto Status of a core/kv outcome. */
uint16_t kvwire_status(enum kv_status st);

#endif
