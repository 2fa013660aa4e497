/*
 * A deterministic in-memory network of core/raft instances for the unit tests (in the
 * manner of etcd's `network` in raft_test.go and canonical/raft's fixture).
 *
 * One group, nodes with ids 1..n (at most TN_NODES_MAX). Each node owns:
 *   - a struct raft, or NULL while it is stopped (tn_stop) or not yet started;
 *   - its own seeded struct ts_rand (derived from the test's seed and the id), so a run
 *     is a function of the seed alone;
 *   - a counting allocator: tn_fini() checks that raft_free() gave every byte back;
 *   - "storage": what the node's caller has made durable (hard state, compaction point,
 *     persisted entries) following the contract in core/raft/raft.h step by step, so
 *     tests can assert what was persisted and when, and tn_restart() rebuilds the node
 *     from exactly that;
 *   - a state machine: the applied entries (a snapshot carries the sender's applied
 *     entries, so applied logs stay comparable across nodes), the configuration as of
 *     the applied index, and the read states it has been given.
 *
 * Messages from rd.msgs and rd.msgs_after_persist are deep-copied into one FIFO queue
 * (ready views die at raft_advance). Delivery drops messages on cut links, of dropped
 * types, to stopped nodes, or that the test's tap rejects; the tap may also edit a
 * message before it is stepped (truncate its entries, for example).
 *
 * Checks made on every ready (contract violations fail the running test): entries are
 * persisted contiguously; the term and commit never go back; a vote is never changed
 * within a term; committed entries come in order, after the applied index, and were
 * persisted first; a snapshot's metadata names the sender's applied index; at most one
 * leader per term. tn_check() compares applied and persisted logs across nodes.
 *
 * Every helper asserts with Criterion and names the seed. To see a failing run's
 * traffic, set TN_TRACE=1: every delivered message is printed to stderr.
 */
#ifndef TS_TESTS_UNIT_CORE_RAFT_RAFT_TESTNET_H
#define TS_TESTS_UNIT_CORE_RAFT_RAFT_TESTNET_H

#include "core/raft/raft.h"
#include "core/util/mem.h"
#include "core/util/rand.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TN_NODES_MAX 7u
/* The group id of every node and message. */
#define TN_GROUP_ID 7u
#define TN_READS_MAX 64u
/* Terms the one-leader-per-term check tracks. */
#define TN_TERMS_MAX 4096u
/* Delivery rounds of tn_deliver_all() and passes of tn_ready_all() before the network is
 * declared stuck (a livelock is a failure, not a hang). */
#define TN_ROUNDS_MAX 2000u

/* An owned copy of an entry. */
struct tn_entry {
    raft_term term;
    raft_index index;
    uint8_t type;
    uint32_t len;
    uint8_t *data; /* NULL when len is 0 */
};

/* A growable array of owned entries with ascending, contiguous indexes. */
struct tn_elog {
    struct tn_entry *e;
    size_t n;
    size_t cap;
};

struct tn_storage {
    struct raft_hard_state hs;
    raft_index compact_index;
    raft_term compact_term;
    struct tn_elog log; /* persisted entries compact_index+1 .. */
    raft_index applied;
    bool has_conf;
    struct raft_conf conf;      /* as of applied */
    struct tn_elog applied_log; /* the state machine: the entries applied, in order */
    uint64_t persist_count;     /* readies that wrote entries or the hard state */
    uint64_t snapshots_installed;
};

struct tn_node {
    struct raft *r;
    struct raft_config cfg;
    struct ts_rand rand;
    struct ts_failing_allocator alloc;
    struct tn_storage st;
    /* Data of the last RAFT_MSG_SNAPSHOT delivered to this node (the sender's applied
     * entries up to pending_snap_index), installed when rd.snapshot asks for it. */
    bool has_pending_snap;
    raft_index pending_snap_index;
    struct tn_elog pending_snap;
    struct raft_read_state reads[TN_READS_MAX];
    size_t n_reads;
    uint64_t readies;
};

struct tn_msg {
    struct raft_message m; /* entries and snapshot point into this struct */
    struct raft_entry *ents;
    uint32_t n_ents; /* owned, even if a tap shortened m.n_entries */
    struct raft_snapshot_meta snap;
    struct tn_elog snap_data;
    bool after_persist;
};

struct tn;
/* Called for every message about to be delivered. Return true to drop it. The message
 * may be edited (for example m->n_entries lowered); its entries must not be freed. */
typedef bool (*tn_tap_fn)(struct tn *tn, struct raft_message *m, void *ctx);

struct tn {
    uint64_t seed;
    uint32_t n;
    struct raft_config cfg; /* template for every node started after this is set */
    struct raft_conf boot;  /* bootstrap configuration (voters 1..n by default) */
    struct tn_node node[TN_NODES_MAX + 1];
    struct tn_msg **q;
    size_t q_head;
    size_t q_len; /* messages in q[q_head .. q_head + q_len) */
    size_t q_cap;
    bool cut[TN_NODES_MAX + 1][TN_NODES_MAX + 1]; /* cut[from][to] */
    bool drop_type[RAFT_MSG_TYPES_];
    tn_tap_fn tap;
    void *tap_ctx;
    /* Messages queued from readies, by sender, receiver and type; and by which list of
     * the ready they came from. */
    uint32_t sent[TN_NODES_MAX + 1][TN_NODES_MAX + 1][RAFT_MSG_TYPES_];
    uint32_t sent_early[RAFT_MSG_TYPES_];         /* from rd.msgs */
    uint32_t sent_after_persist[RAFT_MSG_TYPES_]; /* from rd.msgs_after_persist */
    uint32_t delivered[RAFT_MSG_TYPES_];
    uint32_t rejects[RAFT_MSG_TYPES_]; /* delivered responses with reject set */
    uint32_t dropped;
    /* Allocation failure tests: a raft_step() that returns TS_ENOMEM drops the message
     * (counted) instead of failing the test. */
    bool enomem_ok;
    uint32_t enomem;
    bool trace; /* the environment variable TN_TRACE is set: print every delivery */
    raft_id leader_of_term[TN_TERMS_MAX];
};

/* Sets up n nodes (none started), the configuration template (raft_config_default()
 * with election 10, heartbeat 1, and pre_vote, check_quorum and lease_reads OFF, as in
 * etcd's tests; tests that check those features turn them on) and the bootstrap
 * configuration: voters 1..n. */
void tn_init(struct tn *tn, uint32_t n, uint64_t seed);
/* Starts every node 1..n that the bootstrap configuration names, bootstrapped with it;
 * processes the first readies. */
void tn_start(struct tn *tn);
/* Starts node id empty (a replica that joins later: no state, no configuration). */
void tn_start_empty(struct tn *tn, raft_id id);
/* Starts node id in a given state (the paper-style tests): entry 1 (term terms[0], which
 * must be 1) is folded into the compaction point and applied, entries 2..n_terms have
 * terms[1..]; hard state (term, vote, commit); configuration tn->boot. */
void tn_start_state(struct tn *tn, raft_id id, raft_term term, raft_id vote, raft_index commit,
                    const raft_term *terms, size_t n_terms);
/* Frees every node (checking that all memory came back), the queue and the storage;
 * runs tn_check() first. */
void tn_fini(struct tn *tn);

struct raft *tn_raft(struct tn *tn, raft_id id);
/* Stops node id (its storage survives; messages to it are dropped). */
void tn_stop(struct tn *tn, raft_id id);
/* Stops node id if running, then raft_new() from its storage (crash and restart). */
void tn_restart(struct tn *tn, raft_id id);

/* Processes one node's ready if it has one (contract steps a..f); returns whether it did. */
bool tn_ready_one(struct tn *tn, raft_id id);
/* Steps a..e of the contract for a ready the test fetched itself; the test then calls
 * raft_advance(). */
void tn_process(struct tn *tn, raft_id id, const struct raft_ready *rd);
/* Processes readies until no node has one. */
void tn_ready_all(struct tn *tn);
/* Steps m into node id (asserting 0) and processes readies. */
void tn_step(struct tn *tn, raft_id id, const struct raft_message *m);
/* Delivers queued messages (and processes readies) until the queue is empty. Returns
 * the number of messages stepped. */
size_t tn_deliver_all(struct tn *tn);
/* Delivers only the messages queued now; returns the number stepped. */
size_t tn_deliver_round(struct tn *tn);
/* Drops every queued message. */
void tn_drop_queue(struct tn *tn);
/* Queued messages matching from, to and type (0 / RAFT_MSG_TYPES_ for any). */
size_t tn_queued(const struct tn *tn, raft_id from, raft_id to, unsigned type);
/* The first queued message matching (NULL if none); a view until the next delivery. */
const struct raft_message *tn_find(const struct tn *tn, raft_id from, raft_id to, unsigned type);

/* Node id's state machine forgets what it applied after index (as if it had persisted
 * only up to there); for a restart test. The node must be stopped. */
void tn_forget_applied(struct tn *tn, raft_id id, raft_index index);
/* raft_compact() on node id; on success the node's storage folds the entries up to index
 * into its compaction point (its state machine image covers them). Returns the result. */
int tn_compact(struct tn *tn, raft_id id, raft_index index);

/* Ticks node id n times, processing readies after each tick (no delivery). */
void tn_tick(struct tn *tn, raft_id id, uint32_t n);
/* `ticks` times: tick every running node once, then deliver until quiet. */
void tn_run(struct tn *tn, uint32_t ticks);

void tn_isolate(struct tn *tn, raft_id id);
void tn_cut(struct tn *tn, raft_id a, raft_id b); /* both directions */
void tn_cut_oneway(struct tn *tn, raft_id from, raft_id to);
void tn_drop_type(struct tn *tn, enum raft_msg_type type);
/* Restores every link, clears dropped types and the tap. */
void tn_heal(struct tn *tn);
void tn_set_tap(struct tn *tn, tn_tap_fn tap, void *ctx);

/* Ticks every running node but `except` `ticks` times without delivering, then drops
 * what they queued. With check_quorum a replica refuses votes for one election timeout
 * after it starts (it may have heard from a leader before a restart), so a test ages
 * the others by an election timeout before the group's first election. */
void tn_age(struct tn *tn, raft_id except, uint32_t ticks);
/* Starts every node, lets the vote refusal of fresh replicas pass (T§4.2.3 with
 * CheckQuorum, raft.h) by ageing all but node 1, and elects node 1. */
void tn_start_elected(struct tn *tn);
/* tn_init(n, seed) with CheckQuorum on, then tn_start_elected(). */
void tn_start_check_quorum(struct tn *tn, uint32_t n, uint64_t seed);
/* Ticks node id (waking it first if quiescent), delivering after every tick, until it is
 * leader; false if it is not after 20 maximal election timeouts. */
bool tn_elect(struct tn *tn, raft_id id);
/* raft_propose() of the string s (without its terminator) on node id, then processes
 * readies (no delivery). Returns raft_propose()'s result. */
int tn_propose(struct tn *tn, raft_id id, const char *s);
/* The leader with the highest term among running nodes, 0 if none. */
raft_id tn_leader(const struct tn *tn);
/* raft_wake() on every running node (what the shard does when it suspects a node). */
void tn_wake_all(struct tn *tn);
/* Wakes every node, then runs tick by tick (tn_run) until every running member of the
 * leader's configuration has the leader's term and follows it; returns that leader, or 0
 * after ticks_max ticks. */
raft_id tn_converge(struct tn *tn, uint32_t ticks_max);
/* A message of the test group with the given header, every other field zero. */
struct raft_message tn_msg(enum raft_msg_type type, raft_id from, raft_id to, raft_term term);

/* The index of the applied entry whose data is the string s on node id, 0 if none. */
raft_index tn_applied_find(const struct tn *tn, raft_id id, const char *s);
/* The applied entry at index on node id, NULL if none. */
const struct tn_entry *tn_applied_at(const struct tn *tn, raft_id id, raft_index index);
/* Applied entries on node id with non-empty data of type NORMAL. */
size_t tn_applied_data_count(const struct tn *tn, raft_id id);
/* The persisted entry at index on node id, NULL if not persisted. */
const struct tn_entry *tn_persisted(const struct tn *tn, raft_id id, raft_index index);
raft_index tn_persisted_last(const struct tn *tn, raft_id id);
/* Sum of the data bytes of a message's entries. */
uint64_t tn_msg_bytes(const struct raft_message *m);

/* State machine safety and log matching across all nodes (applied logs agree at every
 * common index; persisted entries with the same index and term carry the same data). */
void tn_check(const struct tn *tn);

#endif
