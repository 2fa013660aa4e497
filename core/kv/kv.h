/*
 * core/kv: the state machine of a range (STYLE R16). Pure logic: commands in, B-tree
 * changes and result rows out. No I/O, no clock, no allocation: the B-tree is reached
 * through a vtable (struct kv_store, which shard/ maps onto storage/btree one call to
 * one), results go to caller callbacks (struct kv_sink), and every buffer is carved from
 * a caller-supplied scratch area of TS_KV_SCRATCH_BYTES (one per shard, reused).
 *
 * Determinism. Every replica applying the same command bytes to the same state ends in
 * the same state and the same result: nothing here depends on anything but the store's
 * content, the range state and the bytes. kv_apply returns
 *   - 0 with out->status == KV_OK or a deterministic failure status (the command changed
 *     nothing: every replica agrees, the entry is still applied and acknowledged);
 *   - a negative error from the store (-EIO, TS_ECORRUPT, TS_ENOMEM...), passed through
 *     unchanged: the replica must stop applying (the store may hold part of the command;
 *     the WAL replays it from the last checkpoint).
 *
 * ---- Physical layout in the shard's B-tree (shared by all its ranges) ----------------
 *
 * Data (user keys; ranges are disjoint intervals [lo, hi) of the user keyspace):
 *
 *     key:    0   1   'd' (KV_PREFIX_DATA)
 *             1   n   the user key (1 .. TS_KV_KEY_BYTES_MAX bytes)
 *     value:  0   8   create_rev  u64 LE  revision of the put that created this incarnation
 *             8   8   mod_rev     u64 LE  revision of the last put
 *            16   8   version     u64 LE  1 at creation, +1 per put
 *            24   8   lease       u64 LE  0: none
 *            32   1   flags       0 (format 1; any other value reads as TS_ECORRUPT)
 *            33   m   the user value (0 .. TS_KV_VALUE_BYTES_MAX bytes)
 *
 * Per-range metadata (not visible to reads):
 *
 *     key:    0   1   'm' (KV_PREFIX_META)
 *             1   8   range id    u64 BIG-endian (so a range's fields are adjacent)
 *             9   1   field: 's' the range state, 'b' followed by a slot byte: a blob
 *     state:  0   1   format 1
 *             1   8   applied_index    u64 LE
 *             9   8   applied_term     u64 LE
 *            17   8   last_rev         u64 LE
 *            25   8   last_delete_rev  u64 LE
 *     blob:   the shard's bytes (range descriptor, Raft conf state), opaque here.
 *
 * The 1-byte prefix and the 33-byte header are why TS_KV_KEY_BYTES_MAX and
 * TS_KV_VALUE_BYTES_MAX (core/util/limits.h) are below TS_KEY_BYTES_MAX and
 * TS_VALUE_BYTES_MAX: the B-tree refuses stored keys and values over those.
 *
 * ---- Revisions --------------------------------------------------------------------------
 *
 * A command carries the leader's HLC stamp (core/util/hlc.h). It is applied at revision
 * rev = max(stamp, state->last_rev + 1), so revisions strictly increase per range whatever
 * the leader's clock did. All writes of one command (a txn's puts and deletes) share rev
 * (etcd gives them one main revision too). A command that changes nothing (a failed
 * status, a delete of a missing key, a read-only txn) leaves last_rev alone.
 * last_delete_rev is the revision of the last command that removed a key.
 *
 * Reads at a revision R. Only the latest version of each key is kept, so:
 *   - R == 0, or R == last_rev: the current state (nothing changed after last_rev).
 *   - R > last_rev: KV_FUTURE_REV. A write still in flight may yet be applied at a
 *     revision <= R; only the shard knows it is not (it may then pass R = 0).
 *   - R < last_rev: a key present with mod_rev <= R had its current value at R. When
 *     last_delete_rev <= R, no key was removed after R, so a key absent now, or present
 *     but created after R, was absent at R. Anything else is unknowable: KV_COMPACTED
 *     (every key present with create_rev <= R < mod_rev; every read when
 *     last_delete_rev > R). A scan may discover it after rows went to the sink: the
 *     sink must drop the rows of a call whose status is not KV_OK.
 *   - Reads inside a txn must use revision 0 (else KV_INVALID): the txn's own writes
 *     would make the answer depend on the order of its ops.
 *
 * ---- Keys and ranges (etcd's conventions) ------------------------------------------------
 *
 * A request names [key, end): end empty is the key alone; end == "\0" (one zero byte) is
 * every key >= key; else the keys in [key, end) (none if end <= key). A single key must
 * not be empty (KV_INVALID); a scan may start at "" when end is not empty.
 * Writes and compares must lie inside the range's [lo, hi) (else KV_RANGE_MISMATCH: the
 * range split or merged between propose and apply); so must every op of a txn. A read
 * (kv_read) must start inside [lo, hi) and is clipped at hi: `more` is then set with
 * next_key = hi, where the caller continues in the next range.
 *
 * ---- Watch events, replay --------------------------------------------------------------
 *
 * kv_apply reports every key a command changes as a watch event (kv_sink.event), in
 * order; keeping a bounded history for watches that resume from a revision is the
 * shard's. Applying an entry twice is not idempotent (a put adds to the version): on
 * recovery the shard skips entries up to the applied_index it saved with the data.
 *
 * ---- Not here -------------------------------------------------------------------------
 *
 * Lease existence (LeaseNotFound) and lease expiry are decided by the lease range; a put
 * records the id it is given. ZooKeeper-style sequential keys are made by the shard
 * before proposing. Duplicate keys in one txn are allowed (etcd refuses them): ops run
 * in order, each put adds one to the version. A historical scan (revision < last_rev)
 * walks its whole interval to count, so it costs time in proportion to the range's keys.
 *
 * Threading: pure functions over the caller's objects; one shard at a time per store.
 */
#ifndef TS_CORE_KV_KV_H
#define TS_CORE_KV_KV_H

#include "core/util/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t kv_range_id;

#define KV_PREFIX_DATA ((uint8_t)'d')
#define KV_PREFIX_META ((uint8_t)'m')
#define KV_HEADER_BYTES 33u
#define KV_STATE_BYTES 33u
#define KV_CMD_FORMAT 1u

/* ---- The store ------------------------------------------------------------------------ */

/*
 * The B-tree as kv sees it: each call is btree.h's of the same name on the shard's tree
 * (keys ordered by memcmp, a prefix first). Errors pass through unchanged. One cursor
 * per store: seek positions it (TS_ENOTFOUND past the last key), next moves it
 * (TS_ENOTFOUND past the end), key gives a view valid until the next call on the store,
 * value copies like get. kv never changes the store while it iterates.
 */
struct kv_store {
    /* Copies into buf; TS_ETOOBIG if it does not fit (nothing copied), TS_ENOTFOUND. */
    int (*get)(void *ctx, const uint8_t *key, uint32_t key_len, void *buf, uint32_t buf_bytes,
               uint32_t *value_len);
    int (*put)(void *ctx, const uint8_t *key, uint32_t key_len, const void *value,
               uint32_t value_len);
    /* TS_ENOTFOUND when absent. */
    int (*del)(void *ctx, const uint8_t *key, uint32_t key_len);
    /* [lo, hi), both non-empty here. */
    int (*delete_range)(void *ctx, const uint8_t *lo, uint32_t lo_len, const uint8_t *hi,
                        uint32_t hi_len, uint64_t *deleted);
    int (*count)(void *ctx, const uint8_t *lo, uint32_t lo_len, const uint8_t *hi, uint32_t hi_len,
                 uint64_t *count);
    int (*seek)(void *ctx, const uint8_t *key, uint32_t key_len);
    int (*next)(void *ctx);
    void (*key)(void *ctx, const uint8_t **key, uint32_t *key_len);
    int (*value)(void *ctx, void *buf, uint32_t buf_bytes, uint32_t *value_len);
    void *ctx;
};

/* ---- Range identity and state ---------------------------------------------------------- */

/* The range a call works on. Borrowed for the call. hi_len 0: the end of the keyspace. */
struct kv_range {
    kv_range_id id;
    const uint8_t *lo;
    uint32_t lo_len;
    const uint8_t *hi;
    uint32_t hi_len;
};

struct kv_range_state {
    uint64_t applied_index; /* set by the shard; kv only stores it */
    uint64_t applied_term;
    uint64_t last_rev;        /* greatest revision applied (0: none) */
    uint64_t last_delete_rev; /* revision of the last command that removed a key */
};

/* The shard saves the state in the same batch as the entries it covers, so a checkpoint
 * always holds matching data and state. load: TS_ENOTFOUND for a range never saved,
 * TS_ECORRUPT for bad bytes, or the store's error. */
int kv_range_state_save(const struct kv_store *s, kv_range_id id, const struct kv_range_state *st);
int kv_range_state_load(const struct kv_store *s, kv_range_id id, struct kv_range_state *st);

/* Opaque per-range slots for the shard (slot < TS_KV_BLOBS_MAX, len <= TS_KV_BLOB_BYTES_MAX,
 * else TS_ETOOBIG). load copies into buf like get (TS_ETOOBIG, TS_ENOTFOUND). */
int kv_range_blob_save(const struct kv_store *s, kv_range_id id, uint8_t slot, const void *blob,
                       uint32_t len);
int kv_range_blob_load(const struct kv_store *s, kv_range_id id, uint8_t slot, void *buf,
                       uint32_t buf_bytes, uint32_t *len);

/* The stored-key intervals [lo, hi) that hold a range: span 0 its data keys, span 1 its
 * metadata (state and blobs). What a snapshot of the range copies, and what
 * kv_range_clear deletes. */
#define KV_SPAN_KEY_BYTES (TS_KV_KEY_BYTES_MAX + 2u)
struct kv_span {
    uint8_t lo[KV_SPAN_KEY_BYTES];
    uint32_t lo_len;
    uint8_t hi[KV_SPAN_KEY_BYTES];
    uint32_t hi_len;
};
void kv_range_spans(const struct kv_range *r, struct kv_span out[2]);

/* Deletes the range's data keys in [lo, hi) and all its metadata (state and blobs):
 * a replica removed, or a snapshot about to be installed. *deleted (may be NULL) counts
 * the data keys. */
int kv_range_clear(const struct kv_store *s, const struct kv_range *r, uint64_t *deleted);

/* ---- Requests -------------------------------------------------------------------------- */

/* A byte string view; borrowed. */
struct kv_bytes {
    const uint8_t *p;
    uint32_t len;
};

enum kv_op_kind {
    KV_OP_PUT = 1,
    KV_OP_GET = 2,
    KV_OP_DELETE = 3,
    KV_OP_RANGE = 4,
    KV_OP_TXN = 5, /* commands only, never inside a txn */
};

struct kv_put {
    struct kv_bytes key;
    struct kv_bytes value;
    uint64_t lease;
    bool prev_kv;      /* report the previous kv as a row */
    bool ignore_value; /* keep the current value (value must be empty; the key must exist) */
    bool ignore_lease; /* keep the current lease (lease must be 0; the key must exist) */
};

struct kv_get {
    struct kv_bytes key;
    uint64_t revision; /* 0: latest */
};

struct kv_delete {
    struct kv_bytes key;
    struct kv_bytes end; /* see "Keys and ranges" */
    bool prev_kv;
};

struct kv_range_req {
    struct kv_bytes key;
    struct kv_bytes end;
    uint64_t limit; /* rows; 0: no limit but the sink's byte budget */
    uint64_t revision;
    bool keys_only;  /* rows carry no value */
    bool count_only; /* no rows, the count only */
};

struct kv_op {
    uint8_t kind; /* enum kv_op_kind, PUT..RANGE */
    union {
        struct kv_put put;
        struct kv_get get;
        struct kv_delete del;
        struct kv_range_req range;
    } u;
};

/* The FlatBuffers enums' values (net/proto/tessera.fbs). */
enum kv_cmp_target {
    KV_CMP_VALUE = 0,
    KV_CMP_VERSION = 1,
    KV_CMP_CREATE = 2,
    KV_CMP_MOD = 3,
    KV_CMP_LEASE = 4,
};
enum kv_cmp_result { KV_CMP_EQUAL = 0, KV_CMP_NOT_EQUAL = 1, KV_CMP_LESS = 2, KV_CMP_GREATER = 3 };

/*
 * etcd's Compare: true when every key of [key, end) satisfies (field <result> target).
 * When no key exists there, the Value target is false (as in etcd: a missing value is
 * not an empty one) and the others compare the zero kv (version, revisions and lease
 * 0). Numbers are signed (the wire's long): a negative target is below every field.
 */
struct kv_compare {
    struct kv_bytes key;
    struct kv_bytes end;
    uint8_t target; /* enum kv_cmp_target */
    uint8_t result; /* enum kv_cmp_result */
    struct kv_bytes value;
    int64_t number;
};

/* ---- Commands: the bytes a Raft entry carries -------------------------------------------- */

/*
 * Format 1, little-endian; `bytes` is a u32 length then the bytes.
 *
 *     0   1   format (KV_CMD_FORMAT)
 *     1   1   kind: KV_OP_PUT, KV_OP_DELETE or KV_OP_TXN
 *     2   8   range id
 *    10   8   revision stamp (the leader's HLC)
 *    18   .   body
 *
 *   put:     u8 flags (1 prev_kv, 2 ignore_value, 4 ignore_lease), u64 lease,
 *            bytes key, bytes value
 *   delete:  u8 flags (1 prev_kv), bytes key, bytes end
 *   get:     bytes key, u64 revision                              (txn ops only)
 *   range:   u8 flags (1 keys_only, 2 count_only), bytes key, bytes end, u64 limit,
 *            u64 revision                                         (txn ops only)
 *   txn:     u16 compares, u16 success ops, u16 failure ops (each <= TS_KV_TXN_OPS_MAX),
 *            the compares, then the ops
 *   compare: u8 target, u8 result, bytes key, bytes end, then bytes value (target Value)
 *            or i64 number (the others)
 *   op:      u8 kind (KV_OP_PUT..KV_OP_RANGE), then its body
 *
 * The decoder accepts exactly this: unknown formats, kinds, enum values or flag bits,
 * lengths past the end, counts over the limit and trailing bytes are TS_EPROTO. Keys and
 * values of any length encode; their limits are apply's statuses.
 */
struct kv_cmd {
    uint8_t kind; /* KV_OP_PUT, KV_OP_DELETE, KV_OP_TXN */
    kv_range_id range_id;
    uint64_t stamp;
    struct kv_put put;
    struct kv_delete del;
    uint32_t compares_n, success_n, failure_n;
    /* Where each txn section begins (views into the decoded buffer). */
    const uint8_t *compares, *success, *failure, *end;
};

/* A position in a txn section, read with kv_cmd_next_*. */
struct kv_cmd_iter {
    const uint8_t *p;
    const uint8_t *end;
};

size_t kv_cmd_put_size(const struct kv_put *p);
size_t kv_cmd_delete_size(const struct kv_delete *d);
size_t kv_cmd_txn_size(const struct kv_compare *cmps, uint32_t cmps_n, const struct kv_op *succ,
                       uint32_t succ_n, const struct kv_op *fail, uint32_t fail_n);

/* Encoders write into buf (borrowed) and set *len. TS_ETOOBIG when buf_bytes is below
 * the size or a txn list is over TS_KV_TXN_OPS_MAX; TS_EINVAL for an op kind a txn
 * cannot hold. Borrows everything. */
int kv_cmd_encode_put(kv_range_id id, uint64_t stamp, const struct kv_put *p, uint8_t *buf,
                      size_t buf_bytes, size_t *len);
int kv_cmd_encode_delete(kv_range_id id, uint64_t stamp, const struct kv_delete *d, uint8_t *buf,
                         size_t buf_bytes, size_t *len);
int kv_cmd_encode_txn(kv_range_id id, uint64_t stamp, const struct kv_compare *cmps,
                      uint32_t cmps_n, const struct kv_op *succ, uint32_t succ_n,
                      const struct kv_op *fail, uint32_t fail_n, uint8_t *buf, size_t buf_bytes,
                      size_t *len);

/* Verifies buf entirely and fills out with views into it (valid while buf is).
 * 0 or TS_EPROTO; never reads outside buf. */
int kv_cmd_decode(const uint8_t *buf, size_t len, struct kv_cmd *out);

/* Iterators over a decoded txn's sections (already verified: reading cannot fail; reading
 * past the count is a caller bug, asserted). */
void kv_cmd_compares(const struct kv_cmd *c, struct kv_cmd_iter *it);
void kv_cmd_success(const struct kv_cmd *c, struct kv_cmd_iter *it);
void kv_cmd_failure(const struct kv_cmd *c, struct kv_cmd_iter *it);
void kv_cmd_next_compare(struct kv_cmd_iter *it, struct kv_compare *out);
void kv_cmd_next_op(struct kv_cmd_iter *it, struct kv_op *out);

/* ---- Results ------------------------------------------------------------------------- */

/* Deterministic outcomes (all replicas agree). The shard maps them to proto Status. */
enum kv_status {
    KV_OK = 0,
    KV_KEY_TOO_LARGE = 1,   /* a key or end over TS_KV_KEY_BYTES_MAX */
    KV_VALUE_TOO_LARGE = 2, /* a value over TS_KV_VALUE_BYTES_MAX */
    KV_RANGE_MISMATCH = 3,  /* outside [lo, hi), or the command names another range */
    KV_KEY_NOT_FOUND = 4,   /* ignore_value / ignore_lease on a missing key */
    KV_INVALID = 5,         /* empty key, value with ignore_value, lease with ignore_lease,
                               a revision on a read inside a txn */
    KV_MALFORMED = 6,       /* command bytes that do not decode */
    KV_COMPACTED = 7,       /* reads: the answer at that revision is not kept */
    KV_FUTURE_REV = 8,      /* reads: revision above last_rev */
};

/* The matching Tessera error code (TS_ETOOBIG, TS_ENORANGE, TS_ENOTFOUND, TS_EINVAL,
 * TS_EPROTO, TS_ECOMPACTED), 0 for KV_OK. */
int kv_status_err(enum kv_status st);
const char *kv_status_name(enum kv_status st);

/* One key-value, as views valid during the callback only. */
struct kv_row {
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *value; /* NULL/0 for keys_only */
    uint32_t value_len;
    uint64_t create_rev, mod_rev, version, lease;
};

/* A watch event (proto Event): every key a command changes, as it changes. A put: the
 * new kv, and the previous one when the key existed. A delete: the key with mod_rev set
 * to the delete's revision (etcd's tombstone), and the deleted kv as prev. */
enum kv_event_type { KV_EVENT_PUT = 0, KV_EVENT_DELETE = 1 }; /* proto EventType */

struct kv_event {
    uint8_t type; /* enum kv_event_type */
    struct kv_row kv;
    bool has_prev;
    struct kv_row prev;
};

struct kv_op_end {
    uint8_t kind;
    uint64_t count;          /* range: keys in the (clipped) interval; delete: deleted */
    bool more;               /* range: keys remain; continue at next_key */
    const uint8_t *next_key; /* a view valid during the callback */
    uint32_t next_key_len;
};

/*
 * Result callbacks, in order: [txn_begin] (op_begin row* op_end)* [txn_end]. Rows of a
 * put or delete are previous kvs (prev_kv). Any callback may be NULL, and so may the
 * sink itself (a follower applies without answering; prev_kv scans are then skipped).
 * Borrowed for the call. bytes_max bounds the rows of one call (key + value +
 * TS_KV_ROW_OVERHEAD_BYTES each; 0: TS_KV_READ_BYTES_DEFAULT), except that the call's
 * first row is always reported, so every page makes progress: a range stops with
 * more/next_key, a delete still deletes every key but reports more (prev kvs left out).
 * When the call returns a negative error or a status other than KV_OK, the sink must
 * drop whatever this call reported (a historical scan may find KV_COMPACTED midway).
 */
struct kv_sink {
    void (*txn_begin)(void *data, bool succeeded);
    void (*op_begin)(void *data, uint8_t kind);
    void (*row)(void *data, const struct kv_row *row);
    void (*op_end)(void *data, const struct kv_op_end *end);
    void (*txn_end)(void *data, bool succeeded);
    /* Watch events, in the order of the changes, interleaved with the above; views valid
     * during the callback. Unbounded by bytes_max (one per changed key; a range delete
     * then walks its keys first). Only kv_apply emits them. */
    void (*event)(void *data, const struct kv_event *ev);
    uint64_t bytes_max;
    void *data;
};

struct kv_result {
    uint8_t status; /* enum kv_status */
    uint64_t rev;   /* the revision applied, else the range's last_rev */
    bool changed;   /* the command changed the store */
    bool succeeded; /* txn: the compares held */
};

/* ---- Apply and read -------------------------------------------------------------------- */

/*
 * Applies one committed command to range r (id, bounds as of this point of the log).
 * Updates state->last_rev and last_delete_rev in memory; the caller sets applied_index
 * and term and saves the state (kv_range_state_save) in the same batch. scratch:
 * TS_KV_SCRATCH_BYTES, borrowed. Returns 0 (see out->status) or a store error (stop
 * applying). A txn evaluates its compares, checks the chosen ops can all succeed, then
 * runs them: a deterministic failure changes nothing.
 */
int kv_apply(const struct kv_store *s, const struct kv_range *r, const uint8_t *cmd, size_t cmd_len,
             struct kv_range_state *state, uint8_t *scratch, size_t scratch_bytes,
             const struct kv_sink *sink, struct kv_result *out);

/*
 * A read outside Raft (after the shard's lease or ReadIndex check, or a serializable
 * read): op is KV_OP_GET or KV_OP_RANGE. Changes nothing. Returns 0 (see out->status)
 * or a store error.
 */
int kv_read(const struct kv_store *s, const struct kv_range *r, const struct kv_range_state *state,
            const struct kv_op *op, uint8_t *scratch, size_t scratch_bytes,
            const struct kv_sink *sink, struct kv_result *out);

#endif
