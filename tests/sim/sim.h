/*
 * tests/sim: a deterministic simulator of Tessera's Raft layer (STYLE R21).
 *
 * One process, no threads, no clocks: one seed (struct ts_rand) decides the cluster
 * (3 to 7 nodes, groups of 3 or 5 voters placed on them), the network's faults, the
 * disks' sync delays and torn tails, the crashes, the clients' operations and the
 * membership churn. Time is a step counter; every node ticks its replicas every few
 * steps, at slightly different rates (at most lease_drift_ticks - 1 ticks apart per
 * election timeout, as core/raft/raft.h requires of leases).
 *
 * Every (node, group) replica is one struct raft driven exactly as raft.h's caller's
 * contract says: inputs (messages, ticks, proposals) are batched per step, then one
 * ready is taken; its writes go to an unsynced disk buffer; rd.msgs are sent at once;
 * the sync completes after a random delay, and only then are msgs_after_persist sent,
 * rd.committed applied, rd.reads answered and raft_advance() called. While a replica
 * waits for its sync nothing mutating is called on it: inbound messages queue (bounded,
 * dropped on overflow), ticks are owed (bounded).
 *
 * Faults before the heal step H: message drop, duplication, delay (and so reordering),
 * partitions, one-way clogs, FoundationDB-style swizzle clogging, node crashes (unsynced
 * writes lost, or a torn prefix of them kept) and restarts, slow disks, membership
 * churn, leader transfers. At H everything heals and the liveness checker starts.
 *
 * Checkers (sim_check.c): one leader per (group, term); log matching and state machine
 * safety (a global per-group record of committed entries); consecutive applies; leader
 * completeness; linearizability of the clients' history (lincheck.h); liveness after H;
 * every instance freed at the end (and ASan's leak check).
 *
 * Ownership: struct sim owns everything reachable from it; sim_fini() frees it all.
 * Messages in flight are deep copies (struct sim_msg), freed when delivered or dropped.
 * Loops are bounded by the constants below or by the run's step budget (R19).
 */
#ifndef TS_TESTS_SIM_SIM_H
#define TS_TESTS_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/raft/raft.h"
#include "core/util/rand.h"

struct lin_history;

/* Limits of the simulator itself. */
#define SIM_NODES_MAX 9u        /* long mode uses up to 9 nodes */
#define SIM_GROUPS_MAX 256u     /* groups per run */
#define SIM_KEYS_MAX 8u         /* keys per group: the state machine is a fixed array */
#define SIM_CLIENTS_MAX 64u     /* linearizability clients (plus one probe per group) */
#define SIM_ENTRY_DATA_MAX 160u /* a command (33 bytes) or an encoded configuration */
#define SIM_INBOX_MAX 256u      /* messages queued for a replica waiting on its disk */
#define SIM_STASH_MAX 4u        /* snapshot payloads received and not yet installed */
#define SIM_READS_MAX 64u       /* read states waiting for the apply index, per replica */
#define SIM_NET_MSGS_MAX 65536u /* messages in flight; more are dropped */
#define SIM_LOG_MAX (1u << 20)  /* committed entries recorded per group */
#define SIM_TERMS_MAX 65536u    /* distinct leader terms recorded per group */
#define SIM_OWED_TICKS_MAX                                                                         \
    256u                             /* ticks owed to a replica waiting on its disk (never         \
                                      * dropped: a lost tick would stretch a lease) */
#define SIM_RECENT_MAX 4u            /* values a client remembers for its CAS operations */
#define SIM_CMD_BYTES 33u            /* u32 client, u32 op, u8 kind, u64 key, arg1, arg2 */
#define SIM_PROBE_CLIENT 0x80000000u /* client ids of the liveness probes (| group) */
#define SIM_LIN_STEPS_MAX 2000000u   /* lincheck's search budget per run */
#define SIM_MATCH_WINDOW 128u        /* entries compared per pair by the log matching check */

_Static_assert(RAFT_CONF_ENCODED_BYTES_MAX <= SIM_ENTRY_DATA_MAX, "a conf entry fits");
_Static_assert(SIM_CMD_BYTES <= SIM_ENTRY_DATA_MAX, "a command fits");
_Static_assert(SIM_NODES_MAX <= TS_RAFT_MEMBERS_MAX, "every node may join a group");
_Static_assert(SIM_INBOX_MAX <= UINT16_MAX, "tick positions are 16-bit");
_Static_assert(SIM_NODES_MAX < 255u, "a client's leader hint (node + 1) is a byte");

/* Operation kinds in commands; PUT, GET and CAS equal lincheck's enum lin_op_kind. */
enum sim_op_kind {
    SIM_OP_PUT = 0,
    SIM_OP_GET = 1,
    SIM_OP_CAS = 2,
    SIM_OP_NOP = 3, /* a probe or a filler: commits, changes nothing */
};

/* A replica's state machine: values of the group's keys (0 = absent), the applied
 * index and the configuration as of it. Copied whole into snapshots and images. */
struct sim_sm {
    uint64_t vals[SIM_KEYS_MAX];
    raft_index applied;
    raft_term applied_term; /* term of the entry at `applied` (0 if none) */
    struct raft_conf conf;
};

/* An owned copy of a log entry. */
struct sim_entry {
    raft_term term;
    raft_index index;
    uint32_t len;
    uint8_t type;
    uint8_t data[SIM_ENTRY_DATA_MAX];
};

struct sim_log {
    struct sim_entry *e; /* contiguous indices e[0].index .. e[n-1].index */
    size_t n;
    size_t cap;
};

/* What a replica's disk holds durably: survives crashes. */
struct sim_durable {
    bool exists; /* anything was ever persisted */
    struct raft_hard_state hs;
    struct sim_sm image; /* the compaction image; image.applied = compaction index */
    struct sim_log log;  /* entries after image.applied */
};

/* A message in flight, deep-copied from a ready. */
enum { SIM_MSG_RAFT = 0, SIM_MSG_NODE_HB = 1 };
struct sim_msg {
    uint64_t at;  /* delivery step */
    uint64_t seq; /* tie-break, keeps the heap order deterministic */
    uint32_t from, to;
    uint32_t from_inc, to_inc; /* the nodes' incarnations at send time */
    uint8_t kind;
    struct raft_message m;
    struct raft_snapshot_meta meta;
    struct sim_sm snap; /* SNAPSHOT: the leader's state machine as of meta.index */
    uint32_t n;
    struct raft_entry *views;
    struct sim_entry *ents;
};

struct sim_stash {
    bool used;
    raft_index index;
    struct sim_sm sm;
};

struct sim_read {
    uint64_t ctx;
    raft_index index;
};

struct sim_node;
struct sim_group;

struct sim_replica {
    struct sim_node *node;
    struct sim_group *group;
    raft_id id;     /* node index + 1 + nodes * gen: never reused within the group */
    uint32_t gen;   /* incarnations of this (node, group) slot deleted so far */
    struct raft *r; /* NULL when not running */
    bool hosted;    /* the node holds this group (durable state may exist) */
    bool boot;      /* an initial member: restarts with the bootstrap conf while empty */
    bool dirty;     /* in sim.dirty: has input to pump */
    bool in_ready;  /* between raft_ready() and raft_advance() */
    bool syncing;   /* in sim.syncing */
    bool doomed;    /* destroy once the current ready is done */
    bool owe_wake;
    raft_id snap_failed[SIM_NODES_MAX]; /* peers to report a failed snapshot send for */
    raft_index joining;                 /* index of the conf entry adding it; 0 once a member */
    uint64_t joined_step;
    struct sim_durable dur;
    struct sim_sm sm;
    struct raft_ready rd;
    uint64_t sync_step;
    /* Inputs that arrived while the replica could not take them, replayed in arrival
     * order: tick k comes just before inbox[tick_pos[k]]. */
    uint32_t owed_ticks;
    uint16_t tick_pos[SIM_OWED_TICKS_MAX];
    uint32_t n_inbox;
    struct sim_msg *inbox[SIM_INBOX_MAX];
    uint32_t stash_next;
    struct sim_stash stash[SIM_STASH_MAX];
    uint32_t n_reads;
    struct sim_read reads[SIM_READS_MAX];
    raft_term led_term;     /* the last term in which it was seen leading */
    raft_index seen_commit; /* the highest commit index seen since the last start */
    raft_id last_leader;
    uint64_t compact_tick;
};

struct sim_node {
    uint32_t idx;
    bool up;
    uint32_t inc; /* incarnation: bumped by each crash */
    uint64_t restart_step;
    uint64_t period_milli; /* steps per tick, times 1000 */
    uint64_t acc_milli;
    uint64_t ticks;
    uint64_t heard[SIM_NODES_MAX]; /* own tick count when each node was last heard */
    bool unreachable[SIM_NODES_MAX];
    bool slow_disk;
    struct ts_rand rand; /* the node's replicas' randomness (as a shard's) */
};

/* Checker state of one (group, term). */
struct sim_term_rec {
    raft_term term;
    raft_id leader;
    raft_index commit_max; /* the highest commit index seen on that leader */
};

/* One committed entry, as first applied by any replica. */
struct sim_rec {
    bool filled;
    uint8_t type;
    raft_term term;
    uint32_t hash;
    uint32_t client, op; /* a command's origin (0 for no-ops and conf entries) */
    raft_id by;          /* the replica that applied it first */
    uint64_t result;
};

struct sim_group {
    uint64_t id; /* index + 1 */
    uint32_t idx;
    struct raft_conf boot;
    struct sim_rec *rec; /* rec[i] for index i, i < rec_cap */
    raft_index rec_cap;
    raft_index rec_max;         /* highest filled index */
    struct sim_term_rec *terms; /* sorted by term */
    uint32_t n_terms;
    uint32_t terms_cap;
    struct raft_conf conf; /* latest committed configuration */
    raft_index conf_index;
    bool gc_due;
    uint64_t churn_busy_until;
    uint32_t probe; /* index of its probe client in sim.clients */
};

enum sim_client_state {
    SIM_C_IDLE = 0,
    SIM_C_PROPOSE = 1,
    SIM_C_WAIT = 2,
    SIM_C_READ = 3,
    SIM_C_READ_WAIT = 4,
    SIM_C_DONE = 5,
};

struct sim_client {
    uint32_t id; /* lincheck client id; SIM_PROBE_CLIENT | group for probes */
    bool probe;
    uint8_t state;
    uint8_t kind;
    uint32_t op; /* this client's op counter, in the command data */
    uint32_t lin_op;
    uint64_t key, arg1, arg2;
    uint32_t gidx;
    uint32_t node; /* the node it sends the current attempt to */
    raft_index index;
    uint64_t proposed_step;
    uint64_t ctx;
    uint32_t read_seq;
    uint64_t invoked, deadline, next_step, filler_step;
    uint32_t ops_after_heal;
    uint32_t n_recent;
    uint64_t recent_key[SIM_RECENT_MAX], recent_val[SIM_RECENT_MAX];
    uint8_t hint[SIM_GROUPS_MAX]; /* believed leader node + 1 per group, 0 unknown */
};

struct sim_net {
    struct sim_msg **heap; /* min-heap on (at, seq) */
    uint32_t n;
    uint64_t seq;
    uint32_t drop_ppm, dup_ppm, spike_ppm;
    uint32_t delay_min, delay_max, spike_max;
    bool cut[SIM_NODES_MAX][SIM_NODES_MAX];     /* partition: dropped */
    uint8_t clog[SIM_NODES_MAX][SIM_NODES_MAX]; /* clogged (a count of causes): held back */
};

struct sim_faults {
    uint64_t next_step;
    uint64_t partition_end;
    uint64_t oneway_end;
    uint32_t ow_a, ow_b;
    bool swz_active, swz_unclog;
    uint32_t swz_n, swz_pos;
    uint64_t swz_next;
    uint8_t swz[SIM_NODES_MAX * SIM_NODES_MAX][2];
    uint64_t slow_end;
    uint64_t churn_next;
};

/* Options from the command line. 0 means "from the seed". */
struct sim_opts {
    uint64_t seed;
    uint32_t nodes;
    uint32_t groups;
    bool trace;
    bool long_mode;
    /* Checker self-test: break the caller's contract on purpose, so a sweep shows the
     * checkers catch it (1: GET answered from the local state machine without
     * raft_read_index; 2: msgs_after_persist sent before the sync; 3: votes forgotten
     * at restart; 4: leaders' clocks at a quarter of the speed, beyond what leases
     * tolerate). 0 in every real run. */
    uint32_t break_mode;
};

/* Everything the seed decides before the run starts. */
struct sim_params {
    uint32_t nodes, groups, keys, clients;
    uint32_t election_ticks, heartbeat_ticks, drift_ticks;
    uint32_t tick_steps;
    uint64_t et_steps; /* one election timeout in steps */
    uint64_t heal_step;
    uint64_t live_bound_steps;
    uint64_t end_step;
    uint32_t drop_ppm, dup_ppm, spike_ppm, delay_max, spike_max;
    uint32_t sync_now_pct, sync_max;
    uint32_t fault_gap_steps;
    uint32_t churn_gap_steps; /* 0: no membership churn */
    uint32_t compact_ticks;   /* 0: never compact */
    uint32_t compact_gap;
    uint32_t op_timeout_steps;
    uint32_t think_max;
    uint32_t msg_bytes_max, inflight_msgs_max, promote_lag_max, snapshot_timeout_ticks;
    bool torn;
};

struct sim_stats {
    uint64_t msgs_sent, msgs_dropped, msgs_delivered;
    uint64_t readies, crashes, restarts, snapshots_sent, snapshots_installed, compactions;
    uint64_t elections, ops_ok, ops_lost, reads_ok, lease_reads, conf_changes, transfers;
};

struct sim {
    struct sim_opts opt;
    struct sim_params p;
    struct ts_rand rand;
    uint64_t step;
    struct sim_node nodes[SIM_NODES_MAX];
    struct sim_group *groups;
    struct sim_replica *reps; /* [node * groups + group] */
    struct sim_replica **dirty;
    uint32_t n_dirty;
    struct sim_replica **syncing;
    uint32_t n_syncing;
    struct sim_net net;
    struct sim_faults f;
    struct sim_client *clients; /* p.clients linearizability clients, then probes */
    uint32_t n_clients;
    struct lin_history *lin;
    bool healed;
    bool live_ok;
    uint64_t live_step;
    uint32_t rafts_live;
    bool failed;
    char fail_checker[32];
    char fail_msg[768];
    char lin_note[512];
    struct sim_stats st;
};

/* sim.c */
int sim_init(struct sim *s, const struct sim_opts *opt);
void sim_run(struct sim *s);
void sim_fini(struct sim *s);
struct sim_replica *sim_rep(struct sim *s, uint32_t node, uint32_t gidx);
/* The node a replica id lives on (ids are node + 1 + nodes * generation). */
uint32_t sim_id_node(const struct sim *s, raft_id id);
void sim_mark_dirty(struct sim *s, struct sim_replica *p);
bool sim_rep_ready_for_input(const struct sim_replica *p);
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sim_client.c */
uint32_t sim_cmd_encode(uint8_t *buf, uint32_t client, uint32_t op, uint8_t kind, uint64_t key,
                        uint64_t arg1, uint64_t arg2);
bool sim_cmd_decode(const uint8_t *buf, uint32_t len, uint32_t *client, uint32_t *op, uint8_t *kind,
                    uint64_t *key, uint64_t *arg1, uint64_t *arg2);
uint32_t sim_key_slot(const struct sim *s, uint64_t key);
/* Applies one committed entry to p's state machine; returns the command's result. */
uint64_t sim_sm_apply(struct sim *s, struct sim_replica *p, const struct raft_entry *e);
void sim_clients_init(struct sim *s);
void sim_clients_fini(struct sim *s);
void sim_clients_step(struct sim *s);
/* A read state came out of p's ready (after its committed entries were applied). */
void sim_clients_on_read(struct sim *s, struct sim_replica *p, uint64_t ctx, raft_index index);
/* p's applied index moved: answer reads waiting for it. */
void sim_clients_reads_applied(struct sim *s, struct sim_replica *p);
bool sim_clients_quiet(const struct sim *s);
bool sim_probes_done(const struct sim *s);

/* sim_check.c */
void sim_fail(struct sim *s, const char *checker, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sim_check_group_init(struct sim_group *g);
void sim_check_group_fini(struct sim_group *g);
/* Records the entry p applies (after checking it against the record). */
void sim_check_applied(struct sim *s, struct sim_replica *p, const struct raft_entry *e,
                       uint64_t result);
/* Role, term and commit observation after inputs (election safety, completeness). */
void sim_check_observe(struct sim *s, struct sim_replica *p);
/* After H: returns true once every group has a leader and its probe committed. */
bool sim_check_liveness(struct sim *s, bool final);
/* Log matching over the running replicas' logs (terms), near their tops. */
void sim_check_log_matching(struct sim *s);
void sim_check_lin(struct sim *s);
uint32_t sim_hash_entry(uint8_t type, const uint8_t *data, uint32_t len);

#endif
