/*
 * shard/host: the replicas of one shard — the multi-Raft key-value server's heart.
 *
 * A host owns, on its shard's thread: the shard's disk (on the shard's ring,
 * shard/disk.h), its log (storage/wal, one for all its groups), its B-tree
 * (storage/btree, one for all its ranges, applied through core/kv), and one core/raft
 * group per range replica it hosts. The transport (net/io) is the shard's server's; the
 * server hands the host every key-value request and every peer frame.
 *
 * Layout. The keyspace is cut into `ranges` ranges (ids 1..ranges) at even points of its
 * first two bytes; range i is hosted by min(3, nodes) nodes starting at node index
 * (i - 1) % nodes, by shard (i - 1) % shards on each (every node of a cluster runs the
 * same shard count: the frames a shard sends carry the groups of one shard index). A
 * replica's Raft id is its node's id. Only the initial members (--initial-cluster) host
 * replicas; a node that joined later hosts none yet. Descriptors carry epoch {1, 1}:
 * splits, merges and moves (the placement driver) bump them later; the routing already
 * checks them.
 *
 * One loop iteration (the host's iteration hook; the disk's hook runs before it and
 * reports the log's progress):
 *   1. the readies whose log records have become durable are finished: acknowledgements
 *      and votes go out (one RaftBatch frame per peer node), reads waiting for an index
 *      run, raft_advance, and the inputs the group held meanwhile are given to raft;
 *   2. for every other group with work, raft_ready: new entries and hard state are
 *      staged in the WAL; committed entries are applied to the B-tree through core/kv,
 *      with the range's applied index saved in the same batch, and clients get their
 *      answers; messages that may go before the persist (the leader's appends) are sent
 *      at once, one frame per peer node for all groups of the shard, heartbeats and
 *      their answers coalesced in it as one fixed-size struct per group (peer_codec.h);
 *   3. the WAL write of what was staged starts: one write linked to one fdatasync for
 *      all groups, or, while one is in flight, the next batch, which goes as soon as it
 *      completes. Nothing waits for it: the shard goes on reading requests and peer
 *      frames, and the readies stay out until step 1 of a later iteration.
 * While a group's ready is out, its raft instance takes no mutating call (raft.h): peer
 * messages (copied), proposals, ReadIndex requests, ticks and snapshot reports for it
 * are held and replayed right after its raft_advance; the other groups go on and make
 * the next batch. Only a checkpoint (which must not make the B-tree durable ahead of the
 * log), a log over its in-flight budget and the stop wait for the disk.
 * A write is acknowledged only once its entry is committed (durable on a quorum) and
 * applied on the leader. The B-tree is checkpointed every TS_HOST_CHECKPOINT_ENTRIES
 * applied entries and at shutdown; after a crash each range replays the log from the
 * applied index the checkpoint holds.
 *
 * Reads: serializable reads are served by the replica at hand; linearizable ones by the
 * leader, at once under its lease when it has applied everything committed (and holds no
 * tick back: raft's lease clock must be current), else after a ReadIndex round. Requests for a
 * range of another shard of this node cross a ring (shard/xring.h) and their answers come back the
 * same way. A client's request that reaches a node whose replica does not lead (or that holds no
 * replica of the range) is forwarded over the shard's link to the leader's node, under a request id
 * of the shard's own, and the answer is relayed back; a request that came from another node is
 * never forwarded again: when the leader is unknown or the link is down the answer is
 * NotLeader with the leader's address and the range's descriptor, and the client
 * library retries there.
 *
 * Ticks: every tick_ms the awake groups tick (quiescent ones do not); a quiescent
 * follower whose leader's node has been silent for an election timeout is woken. Every
 * shard sends each peer node at least one frame per tick (an empty RaftBatch when it has
 * nothing else), which is what "silent" is measured against (node-wide, in host_shared).
 *
 * Log compaction and snapshots: after each checkpoint every group's log is compacted to
 * log_retain_entries behind the applied index the checkpoint holds; a follower that
 * needs a compacted entry gets a snapshot streamed from a pinned B-tree checkpoint
 * (see "Snapshots" in host.c).
 *
 * The meta range (shard/meta.h): range 1 also holds the cluster's records — its
 * members and every range's descriptor — written through Raft: its first leader proposes
 * the bootstrap (from the layout); shard 0 of every node announces the node (a
 * JoinRequest with its id) until range 1 applied it; a node started with --join gets its
 * id there. Members and Route requests are reads of range 1 (linearizable by default).
 * A node that joined hosts no replica (the placement driver will move some to it) and
 * serves clients by forwarding: a request for a range it does not host goes to the
 * leader it last saw, or to a replica, and once more to the leader a NotLeader answer
 * names. Error answers' descriptors are still derived from the layout on each node:
 * nothing splits, merges or moves yet, so they equal range 1's records.
 */
#ifndef TS_SHARD_HOST_H
#define TS_SHARD_HOST_H

#include "core/util/limits.h"
#include "core/util/log.h"
#include "net/io/nio.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"
#include "shard/node.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct host_member {
    uint64_t node_id;              /* 1.. */
    char addr[TS_HOST_ADDR_BYTES]; /* "ip:port" peers and clients reach it at */
};

/* What every node of the cluster agrees on (from --initial-cluster). */
struct host_cluster {
    uint64_t cluster_id;           /* FNV-1a of spec */
    char spec[TS_HOST_SPEC_BYTES]; /* the initial members, as written */
    uint64_t self;                 /* this node's id */
    uint32_t n;        /* members this node knows: the layout's, then itself if it joined */
    uint32_t layout_n; /* the initial members (--initial-cluster): they host the ranges */
    struct host_member m[TS_RAFT_MEMBERS_MAX];
    uint32_t ranges;   /* 1..TS_HOST_RANGES_MAX */
    uint32_t replicas; /* per range: min(3, layout_n) */
};

/* Node-wide state the shards share: when each node was last heard from (any frame),
 * CLOCK_MONOTONIC ns, relaxed atomics. */
#define HOST_SHARDS_MAX TS_XRING_SHARDS_MAX
#define HOST_VERSION "0.1.0"

struct host_shard_gauges {
    _Atomic uint32_t replicas;
    _Atomic uint32_t leaders;
    _Atomic uint64_t db_bytes;  /* the B-tree file */
    _Atomic uint64_t wal_bytes; /* written to the log since start */
};

#define HOST_HEARD_SLOTS (2u * TS_RAFT_MEMBERS_MAX)

struct host_shared {
    /* heard_ns[i] is node heard_id[i]'s clock; a slot is claimed (CAS from 0) the first
     * time a node is heard from, and kept: members are never reused. */
    _Atomic uint64_t heard_id[HOST_HEARD_SLOTS];
    _Atomic uint64_t heard_ns[HOST_HEARD_SLOTS];
    uint64_t start_ns; /* CLOCK_MONOTONIC at start, set before the shards run */
    struct host_shard_gauges shard[HOST_SHARDS_MAX]; /* each written by its shard, per tick */
};

struct host_config {
    const char *data_dir;               /* the node's directory; shard k uses DIR/shard-k */
    const struct host_cluster *cluster; /* borrowed: outlives the node */
    struct host_shared *shared;         /* borrowed */
    uint32_t tick_ms;                   /* 0: TS_HOST_TICK_MS_DEFAULT */
    uint32_t election_ticks;            /* 0: 10 */
    uint64_t checkpoint_entries;        /* applied entries between checkpoints; 0: the default */
    uint64_t log_retain_entries; /* kept behind a checkpoint for lagging followers; 0: default */
    const struct ts_log *log;    /* borrowed; NULL: silent */
};

struct host;

struct host_stats {
    uint64_t proposals;
    uint64_t applied;
    uint64_t reads_lease;
    uint64_t reads_index;
    uint64_t reads_serializable;
    uint64_t not_leader;
    uint64_t forwarded; /* requests sent to another shard */
    uint64_t wal_syncs;
    uint64_t checkpoints;
    uint64_t frames_out;
    uint64_t messages_out;   /* raft messages sent as RaftMessage tables */
    uint64_t heartbeats_out; /* heartbeats and answers sent coalesced (fixed-size structs) */
    uint64_t frames_in;
};

/* On shard s's thread (node init_cb), after the server created its transport. Opens or
 * creates the shard's log and tree, recovers or bootstraps its replicas, connects to the
 * peers. Returns 0, TS_ECORRUPT (logged with the file and the reason), -errno, TS_ENOMEM. */
int host_start(struct shard *s, const struct host_config *cfg, struct nio *nio, struct host **out);

/* Stop: the log is made durable, the readies out are finished and the B-tree is
 * checkpointed. Returns true when done. */
bool host_stop(struct host *h);
/* On the shard's thread after the loop stopped (node fini_cb). */
void host_free(struct host *h);

/* From the server, on the shard's thread. The frame is the request's, a view valid for
 * the call; conn is the client connection's nio id. */
void host_on_request(struct host *h, uint64_t conn, const uint8_t *frame, uint32_t len,
                     struct proto_request req, bool from_peer);
/* An answer to a request this shard forwarded to another node (arrived on its link). */
void host_on_forward_answer(struct host *h, const uint8_t *frame, uint32_t len,
                            struct proto_response resp);
void host_on_raft_batch(struct host *h, struct proto_raft_batch batch, const uint8_t *frame,
                        uint32_t len);
/* A SnapshotChunk or SnapshotChunkAck (msg, verified) for `group`. */
void host_on_snapshot_frame(struct host *h, struct proto_message msg, uint64_t group,
                            const uint8_t *frame, uint32_t len);
void host_on_peer_up(struct host *h, struct nio_conn *c);
/* A link to a peer went down: requests forwarded on it are answered at once. */
void host_on_peer_down(struct host *h, struct nio_conn *c);
void host_on_xmsg(struct host *h, const struct xring_msg *m);

void host_get_stats(const struct host *h, struct host_stats *out);
/* True when the shard stopped the node after a storage failure (the log says which). */
bool host_failed(const struct host *h);

/* Layout, for the server and the tests. */
uint64_t host_range_of_key(const struct host_cluster *c, const uint8_t *key, uint32_t len);
/* The range's first key (0 or 2 bytes) into buf[2]; returns its length. */
uint32_t host_range_start(const struct host_cluster *c, uint64_t range, uint8_t *buf);
/* Member index (in c->m) of the k-th replica of a range (k < c->replicas). */
uint32_t host_replica_member(const struct host_cluster *c, uint64_t range, uint32_t k);
/* Parses "1=127.0.0.1:7001,2=..." (the initial members, in layout order). self 0: no
 * node of its own (the meta range's view); else self must be a member, or be added
 * with host_cluster_add. Returns 0 or TS_EINVAL with *why. */
int host_cluster_parse(const char *spec, uint64_t self, uint32_t ranges, struct host_cluster *out,
                       const char **why);
/* A node that joined later: a member that hosts no replica of the layout. Becomes
 * c->self. TS_EINVAL when the id is taken or there is no room. */
int host_cluster_add(struct host_cluster *c, uint64_t node_id, const char *addr);

#endif
