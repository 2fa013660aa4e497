/*
 * shard/meta: the meta range (range 1) — the cluster's own records, replicated like any
 * data: the range descriptors, the members and the cluster's identity.
 *
 * Where they live. In range 1's metadata span of the shard's B-tree (core/kv's 'm' +
 * range id, here always 1), beside its state and blobs, so that range 1's snapshots carry
 * them and kv_range_clear removes them, and no user key can reach them:
 *
 *     'm' 1(u64 BE) 'c'                 the cluster record
 *     'm' 1(u64 BE) 'n' node id(u64 BE) a member
 *     'm' 1(u64 BE) 'r' range id(u64 BE) a range descriptor
 *
 * Records (little-endian; str is a u16 length then the bytes; format byte 1; any other
 * format or a length that does not match reads as TS_ECORRUPT):
 *
 *     cluster:    u8 format, u64 cluster id, u32 ranges, u32 shards, u64 next node id,
 *                 str initial cluster spec ("id=addr,...": the layout's members)
 *     member:     u8 format, u64 node id, u8 state ('J' joining: added, never started;
 *                 'U' started at least once), u32 shards, str address
 *     descriptor: u8 format, u64 range id, u64 generation, u64 conf version, str start
 *                 key, str end key (empty: the end of the keyspace), u8 replicas, then
 *                 per replica u64 node id, u64 replica (Raft) id, u32 shard
 *
 * Commands. A Raft entry of range 1 whose first byte is META_CMD_MAGIC is a meta
 * command (core/kv's commands begin with KV_CMD_FORMAT, 1):
 *
 *     0 u8 'M', 1 u8 kind, then
 *     BOOTSTRAP  u64 cluster id, u32 ranges, u32 shards, str spec
 *                — the first leader of range 1 proposes it; it writes the cluster record,
 *                every initial member (joining) and the descriptor of every range, from
 *                the layout (host_layout_*). Applied again it changes nothing.
 *     JOIN       u32 shards (0: the cluster's), str address — a new node asks for an id:
 *                the next id, never reused. A member already added at that address and never
 * started gets its id again (a join retried after a lost answer); one that started is refused
 * (META_ADDR_IN_USE): a node's id names its data, and a node with lost data must not take it again.
 *     PUBLISH    u64 node id, str address — a node started: its record becomes 'U' with
 *                the address it serves at (META_ADDR_IN_USE when another started member
 *                serves there). A node whose directory holds no data and whose
 *                record says 'U' lost its data: tesserad refuses to start it.
 *
 * Every command is deterministic: the same bytes on the same records give the same
 * records and result on every replica. Decoding verifies everything (TS_EPROTO),
 * including that strings hold no NUL and that an address is not empty. Ids are never
 * reused: once the last id (2^64 - 1) is given, joins are META_FULL.
 */
#ifndef TS_SHARD_META_H
#define TS_SHARD_META_H

#include "core/kv/kv.h"
#include "core/util/limits.h"
#include "shard/host.h"

#include <stdbool.h>
#include <stdint.h>

#define META_RANGE 1u
#define META_CMD_MAGIC ((uint8_t)'M')
#define META_SPEC_BYTES 2048u
#define META_STATE_JOINING ((uint8_t)'J')
#define META_STATE_STARTED ((uint8_t)'U')

enum meta_cmd_kind { META_CMD_BOOTSTRAP = 1, META_CMD_JOIN = 2, META_CMD_PUBLISH = 3 };

/* Deterministic outcomes of a command. */
enum meta_status {
    META_OK = 0,
    META_NOT_BOOTSTRAPPED = 1, /* no cluster record yet */
    META_ADDR_IN_USE = 2,      /* join: a started member serves at that address */
    META_SHARDS_MISMATCH = 3,  /* join: every node runs the cluster's shard count */
    META_FULL = 4,             /* join: TS_RAFT_MEMBERS_MAX members */
    META_UNKNOWN_NODE = 5,     /* publish: no such member */
    META_BAD_SPEC = 6,         /* bootstrap: a spec the layout cannot parse */
};
const char *meta_status_name(uint8_t st);

struct meta_cluster {
    uint64_t cluster_id;
    uint32_t ranges;
    uint32_t shards;
    uint64_t next_node_id;
    char spec[META_SPEC_BYTES]; /* NUL-terminated */
};

struct meta_member {
    uint64_t node_id;
    uint8_t state; /* META_STATE_* */
    uint32_t shards;
    char addr[TS_HOST_ADDR_BYTES]; /* NUL-terminated */
};

struct meta_replica {
    uint64_t node_id;
    uint64_t replica_id;
    uint32_t shard;
};

struct meta_desc {
    uint64_t range;
    uint64_t generation;
    uint64_t conf_version;
    uint8_t lo[TS_KV_KEY_BYTES_MAX];
    uint32_t lo_len;
    uint8_t hi[TS_KV_KEY_BYTES_MAX];
    uint32_t hi_len; /* 0: the end of the keyspace */
    uint32_t n;
    struct meta_replica rep[TS_RAFT_MEMBERS_MAX];
};

/* A decoded command: views into the entry's bytes. */
struct meta_cmd {
    uint8_t kind;
    uint64_t cluster_id; /* bootstrap */
    uint32_t ranges;     /* bootstrap */
    uint32_t shards;     /* bootstrap, join */
    uint64_t node_id;    /* publish */
    const uint8_t *str;  /* bootstrap: the spec; join, publish: the address */
    uint32_t str_len;
};

struct meta_result {
    uint8_t status;   /* enum meta_status */
    uint64_t node_id; /* join: the id; publish: the node */
    bool changed;     /* the records changed */
};

static inline bool meta_is_cmd(const uint8_t *data, uint32_t len)
{
    return len >= 2 && data[0] == META_CMD_MAGIC;
}

/* Encoders: buf needs META_CMD_BYTES_MAX; return the length, or 0 when a string is over
 * its limit (the spec META_SPEC_BYTES - 1, an address TS_HOST_ADDR_BYTES - 1). */
#define META_CMD_BYTES_MAX (2u + 8u + 4u + 4u + 2u + META_SPEC_BYTES)
uint32_t meta_cmd_bootstrap(uint8_t *buf, uint64_t cluster_id, uint32_t ranges, uint32_t shards,
                            const char *spec);
uint32_t meta_cmd_join(uint8_t *buf, uint32_t shards, const char *addr);
uint32_t meta_cmd_publish(uint8_t *buf, uint64_t node_id, const char *addr);
/* 0 or TS_EPROTO. */
int meta_cmd_decode(const uint8_t *buf, uint32_t len, struct meta_cmd *out);

/* Applies a command to the records. Returns 0 (see out->status), TS_EPROTO for bytes
 * that do not decode (every replica agrees: nothing changed), or the store's error
 * (stop applying). */
int meta_apply(const struct kv_store *s, const uint8_t *cmd, uint32_t len, struct meta_result *out);

/* Reads. load: 0, TS_ENOTFOUND, TS_ECORRUPT or the store's error. */
int meta_cluster_load(const struct kv_store *s, struct meta_cluster *out);
int meta_member_load(const struct kv_store *s, uint64_t node_id, struct meta_member *out);
int meta_desc_load(const struct kv_store *s, uint64_t range, struct meta_desc *out);
/* Every member in id order, at most max (more is TS_ECORRUPT: TS_RAFT_MEMBERS_MAX is
 * the most a join admits): *n set; 0 or an error. */
int meta_members(const struct kv_store *s, struct meta_member *out, uint32_t max, uint32_t *n);

/* The descriptor of a range in the bootstrap layout (generation and conf version 1). */
void meta_desc_of_layout(const struct host_cluster *c, uint32_t shards, uint64_t range,
                         struct meta_desc *out);

#endif
