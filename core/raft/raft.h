/*
 * core/raft: the Raft state machine of one group (one range), pure (STYLE R15).
 *
 * A struct raft owns one replica's view of one group: its term and vote, its log (in
 * memory, from the last compaction point to the last entry), its configuration, and,
 * on the leader, one progress record per peer. It performs no I/O, reads no clock and
 * draws no entropy: time is raft_tick(), randomness is the caller's seeded
 * struct ts_rand, memory comes from the caller's struct ts_allocator. The same code runs
 * in a shard under io_uring and in tests/sim under a seeded simulator.
 *
 * Sections of the Raft paper (P) and of Ongaro's thesis (T) implemented here:
 *   P§5.2 / T§3.4  election, randomized timeouts in [election, 2*election) ticks
 *   P§5.3 / T§3.5  replication; per-peer progress (probe, replicate, snapshot),
 *                  pipelining bounded in messages and bytes, fast back-off by term
 *   P§5.4 / T§3.6  safety: vote only for an up-to-date log; commit only an entry of
 *                  the current term by counting replicas
 *   P§6   / T§4.3  membership: joint consensus (enter, then leave automatically),
 *                  single-voter changes, learners (T§4.2.1), removal, T§3.10 leader
 *                  transfer with TimeoutNow
 *   P§7   / T§5    snapshots and log compaction
 *   P§8   / T§6.4  ReadIndex reads; T§6.4.1 lease reads (only with CheckQuorum)
 *   T§9.6          PreVote; T§6.2 CheckQuorum (a leader that has not heard from a
 *                  quorum for an election timeout steps down); with CheckQuorum, a
 *                  replica that heard from a leader within the election timeout ignores
 *                  vote requests (T§4.2.3), except those of a leader transfer.
 *
 * THE CALLER'S CONTRACT (etcd's RawNode contract, with thesis T§10.2.1).
 *
 *   1. Inputs: raft_step() (a message from a peer), raft_tick() (one unit of time),
 *      raft_propose()/raft_propose_conf() (new entries, leader only),
 *      raft_read_index(), raft_transfer_leader(), raft_compact(), raft_report_*().
 *   2. When raft_has_ready() is true, call raft_ready() and do, in this order:
 *      a. If rd.snapshot is set: install that snapshot's state (data the caller
 *         received with the Snapshot message it stepped), persist its metadata and
 *         drop every persisted entry of the group: the log restarts after it.
 *      b. Persist rd.entries (rd.entries[0].index may be at or below the last
 *         persisted index: drop the persisted suffix from that index first) and, if
 *         rd.hard_state_changed, rd.hard_state, durably (fsync). A ready with no
 *         entries whose hard state changed only in its commit index need not wait for
 *         the fsync (etcd's MustSync): the commit index is not state Raft must keep,
 *         and a restart that finds it lower learns it again from the leader; its
 *         msgs_after_persist promise only entries earlier readies made durable.
 *      c. rd.msgs may be sent at any time, also before (b) completes (T§10.2.1: the
 *         leader writes its log in parallel with replicating it).
 *         rd.msgs_after_persist may be sent only once (b) is durable: they promise
 *         what (b) writes (votes, acknowledgements of appended entries).
 *      d. Apply rd.committed in order, once (b) is durable. Entries of type
 *         RAFT_ENTRY_CONF carry a full configuration (raft_conf_decode()); raft
 *         applies them itself at raft_advance().
 *      e. Answer rd.reads once the state machine has applied rd.reads[i].index.
 *      f. Call raft_advance().
 *   3. Between raft_ready() and raft_advance() no other mutating call may be made on
 *      this instance (asserted); read-only calls are fine. Every pointer in the
 *      ready (entries, messages, the entries inside messages, the snapshot metadata)
 *      is a view into the instance, valid until raft_advance(). The caller copies
 *      what it keeps longer (a simulated network that delays messages must copy).
 *   4. Messages given to raft_step() are borrowed: entries and data are copied.
 *
 * Snapshots. A leader that needs to send a snapshot (a peer's next entry is
 * compacted) puts a RAFT_MSG_SNAPSHOT message in rd.msgs whose snapshot metadata has
 * index = the applied index at raft_ready() time (before this ready's committed
 * entries), its term and the configuration as of that index. The caller sends the
 * state machine as of that index with it. The receiving caller collects the data and
 * then steps the message; raft either fast-forwards (if its log already matches) or
 * asks for installation through rd.snapshot. If sending fails, the leader's caller
 * calls raft_report_snapshot(failed); a snapshot not answered within
 * snapshot_timeout_ticks is retried.
 *
 * Restart. raft_new() takes what was persisted: the hard state, the compaction point
 * (index and term of the last entry folded into the state machine's persisted image),
 * the entries after it, the applied index of the state machine and the configuration
 * as of that applied index. Committed entries after `applied` are given again in the
 * first readies. A ready's entries must become durable no later than its hard state (a
 * torn write may keep entries without the hard state, never a commit index without its
 * entries); raft_new() then takes the term of the last entry, with no vote. A new group is
 * bootstrapped by giving every initial member the same `bootstrap` configuration: raft writes it as
 * entry 1 (term 1), already committed. A replica added later starts empty (no configuration) and
 * learns everything from the leader.
 *
 * Many groups (a shard hosts thousands). Messages carry the group id. Heartbeats are
 * separate message types with no entries (RAFT_MSG_HEARTBEAT, _RESP) so that the
 * shard coalesces all groups' heartbeats to one node into one frame per tick.
 * Quiescence: a leader with nothing in flight, every peer caught up and told the
 * commit index, no pending reads, transfer or configuration change, sends a last
 * heartbeat marked `quiesce` and stops ticking; a follower that receives it with its
 * log matching stops too. raft_tick() on a quiescent group returns at once, and
 * raft_quiesced() lets the shard skip it. Any proposal, read, message (other than a
 * quiesce heartbeat and heartbeat acknowledgements) or raft_wake() wakes it. A quiescent follower
 * cannot notice a dead leader by itself: the shard, which tracks node liveness, calls raft_wake()
 * on the groups whose leader sits on a node it has stopped hearing from.
 *
 * Leases (T§6.4.1). Every heartbeat broadcast is a numbered round; acknowledgements
 * echo the round. A leader holds a lease from the tick it sent the last round a quorum
 * acknowledged until that tick + election_ticks - lease_drift_ticks, provided it has
 * committed an entry of its term and is not transferring leadership. Replicas that
 * heard from the leader within election_ticks refuse votes (CheckQuorum), so no other
 * leader can exist while the lease holds, as long as tick rates differ by less than
 * lease_drift_ticks per election timeout. The same rounds confirm ReadIndex reads.
 * A replica that has just started refuses votes for one election timeout too, since it
 * may have heard from a leader just before it stopped. A quiescent leader holds no
 * lease (its ticks stand still while time passes): a read wakes it and goes through a
 * round acknowledged after the wake. A quiescent leader does not check its quorum
 * either; followers and the shard's node liveness wake it (see Quiescence).
 *
 * Errors: raft_propose*() and raft_read_index() return TS_ENOTLEADER (raft_leader()
 * gives the leader hint, 0 when unknown), TS_EUNAVAIL (leader transfer in progress; for
 * a configuration change also: another change is pending, the configuration is joint,
 * or the leader's no-op of its term is not applied yet), TS_ETOOBIG
 * (entry over TS_RAFT_ENTRY_BYTES_MAX), TS_EFULL (uncommitted bytes or pending reads
 * over their limits), TS_EINVAL (an impossible configuration change, or promoting a
 * learner more than promote_lag_max entries behind), TS_ENOMEM.
 *
 * Thread safety: none; an instance belongs to one shard.
 */
#ifndef TS_CORE_RAFT_RAFT_H
#define TS_CORE_RAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util/limits.h"
#include "core/util/mem.h"
#include "core/util/rand.h"

struct raft; /* one replica of one group; opaque */

/* A replica id, unique within its group and never reused there: a replica removed and
 * added again gets a new id (a stale log could still count the old id as a voter, and
 * the new, empty replica would vote as it). 0 means none. */
typedef uint64_t raft_id;
typedef uint64_t raft_term;  /* a term; 0 before any election */
typedef uint64_t raft_index; /* a log index; the first entry is 1, 0 means none */

/* Message types; the numbers match net/proto's RaftMessageType. */
enum raft_msg_type {
    RAFT_MSG_VOTE = 0,
    RAFT_MSG_VOTE_RESP = 1,
    RAFT_MSG_PREVOTE = 2,
    RAFT_MSG_PREVOTE_RESP = 3,
    RAFT_MSG_APPEND = 4,
    RAFT_MSG_APPEND_RESP = 5,
    RAFT_MSG_HEARTBEAT = 6,
    RAFT_MSG_HEARTBEAT_RESP = 7,
    RAFT_MSG_TIMEOUT_NOW = 8,
    RAFT_MSG_SNAPSHOT = 9,
    RAFT_MSG_SNAPSHOT_STATUS = 10, /* reserved for the shard's streaming; raft ignores it */
    RAFT_MSG_READ_INDEX = 11,
    RAFT_MSG_READ_INDEX_RESP = 12,
    RAFT_MSG_TYPES_ = 13,
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* caller data; empty data is a new leader's no-op */
    RAFT_ENTRY_CONF = 1,   /* a full configuration, raft_conf_encode() */
};

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRECANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

/* A log entry. In a ready or a message it is a view (see the contract). */
struct raft_entry {
    raft_term term;
    raft_index index;
    const uint8_t *data;
    uint32_t len;
    uint8_t type; /* enum raft_entry_type */
};

/* A member's role bits in a configuration. Outside joint consensus only VOTER and
 * LEARNER appear. In a joint configuration (T§4.3) VOTER is membership of the new
 * (incoming) voter set, VOTER_OUTGOING of the old one; LEARNER_NEXT marks an old
 * voter that becomes a learner when the joint configuration is left. */
enum {
    RAFT_VOTER = 1u << 0,
    RAFT_VOTER_OUTGOING = 1u << 1,
    RAFT_LEARNER = 1u << 2,
    RAFT_LEARNER_NEXT = 1u << 3,
};

/* A full configuration; members sorted by id, each with a nonzero role. */
struct raft_conf {
    uint32_t n;
    struct raft_member {
        raft_id id;
        uint8_t role;
    } m[TS_RAFT_MEMBERS_MAX];
};

struct raft_snapshot_meta {
    raft_index index;
    raft_term term;
    struct raft_conf conf;
};

struct raft_hard_state {
    raft_term term;
    raft_id vote;
    raft_index commit;
};

struct raft_message {
    uint64_t group_id;
    uint8_t type; /* enum raft_msg_type */
    bool reject;
    bool quiesce; /* HEARTBEAT: the leader stops ticking after this one */
    bool force;   /* VOTE/PREVOTE of a leader transfer: ignore the leader lease */
    raft_id from;
    raft_id to;
    raft_term term;
    raft_term log_term;     /* term of the entry at `index` (APPEND, VOTE, reject hint) */
    raft_index index;       /* APPEND: index before entries; *_RESP: last index or hint */
    raft_index commit;      /* APPEND, HEARTBEAT: leader's commit */
    raft_index reject_hint; /* APPEND_RESP reject: the follower's suggested probe index */
    uint64_t context;       /* HEARTBEAT(_RESP): round; READ_INDEX(_RESP): caller's ctx */
    const struct raft_entry *entries;
    uint32_t n_entries;
    const struct raft_snapshot_meta *snapshot; /* SNAPSHOT only */
};

struct raft_read_state {
    uint64_t ctx;     /* as given to raft_read_index() */
    raft_index index; /* serve the read once applied >= index */
};

struct raft_ready {
    bool hard_state_changed;
    struct raft_hard_state hard_state;
    const struct raft_snapshot_meta *snapshot; /* install before the entries; NULL if none */
    const struct raft_entry *entries;          /* to persist */
    size_t n_entries;
    const struct raft_message *msgs; /* may be sent before the persist completes */
    size_t n_msgs;
    const struct raft_message *msgs_after_persist;
    size_t n_msgs_after_persist;
    const struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;
    const struct raft_read_state *reads;
    size_t n_reads;
    bool soft_state_changed; /* role or leader changed since the last ready */
    uint8_t role;            /* enum raft_role */
    raft_id leader;
};

struct raft_config {
    uint64_t group_id;
    raft_id id;
    uint32_t election_ticks;  /* randomized in [election, 2*election) for campaigns */
    uint32_t heartbeat_ticks; /* < election_ticks */
    bool pre_vote;
    bool check_quorum;
    bool lease_reads;           /* requires check_quorum */
    uint32_t lease_drift_ticks; /* < election_ticks; the clock drift the lease tolerates */
    uint32_t msg_bytes_max;     /* entry bytes per APPEND (at least one entry is sent) */
    uint32_t inflight_msgs_max; /* APPENDs in flight per peer */
    uint64_t inflight_bytes_max;
    uint64_t uncommitted_bytes_max; /* proposals beyond this fail with TS_EFULL */
    uint64_t promote_lag_max;       /* a learner this far behind may not be promoted */
    uint32_t snapshot_timeout_ticks;
    struct ts_rand *rand;             /* borrowed, may be shared by a shard's groups */
    const struct ts_allocator *alloc; /* borrowed */
};

/* Sets the defaults (election 10, heartbeat 1, pre_vote, check_quorum, lease_reads,
 * drift 2, 1 MiB per message, 256 messages / 16 MiB in flight, 64 MiB uncommitted,
 * promote lag 1000 entries, snapshot timeout 100 ticks); the caller sets group_id, id,
 * rand and alloc. */
void raft_config_default(struct raft_config *c);

/* What a replica persisted, for raft_new(). All zero (and bootstrap NULL) for a
 * replica that joins an existing group empty. */
struct raft_initial {
    struct raft_hard_state hard_state;
    raft_index compact_index; /* last index folded into the persisted state image */
    raft_term compact_term;
    raft_index applied;               /* the state machine's applied index */
    const struct raft_conf *conf;     /* configuration as of `applied`; NULL if none */
    const struct raft_entry *entries; /* compact_index+1 .. last, borrowed (copied) */
    size_t n_entries;
    const struct raft_conf *bootstrap; /* a new group: every initial member passes the same */
};

/* Creates an instance. Returns 0, TS_EINVAL (inconsistent config or state) or
 * TS_ENOMEM. On success *out is owned by the caller (raft_free()). */
int raft_new(const struct raft_config *c, const struct raft_initial *init, struct raft **out);
void raft_free(struct raft *r);

/* Inputs. */
int raft_step(struct raft *r, const struct raft_message *m); /* 0, TS_ENOMEM, TS_EPROTO */
void raft_tick(struct raft *r);
int raft_propose(struct raft *r, const void *data, uint32_t len, raft_index *index_out);
enum raft_change_type {
    RAFT_ADD_VOTER = 0,   /* also promotes a learner */
    RAFT_ADD_LEARNER = 1, /* also demotes a voter */
    RAFT_REMOVE = 2,
};
struct raft_change {
    uint8_t type; /* enum raft_change_type */
    raft_id id;
};
/* One change of one voter is applied directly (T§4.1); anything else enters joint
 * consensus, which the leader leaves by itself once the joint configuration is
 * applied (T§4.3). */
int raft_propose_conf(struct raft *r, const struct raft_change *changes, size_t n,
                      raft_index *index_out);
/* Asks for the read index for ctx: it appears in a later ready's reads. A follower
 * forwards the request to the leader. */
int raft_read_index(struct raft *r, uint64_t ctx);
/* Leader only: hand leadership to `to` (T§3.10). Aborted after an election timeout. */
int raft_transfer_leader(struct raft *r, raft_id to);
/* Drops entries up to index (<= applied): the caller's persisted state image covers
 * them. Returns 0 or TS_EINVAL. */
int raft_compact(struct raft *r, raft_index index);
/* The leader's caller reports a snapshot send that failed (the peer returns to probe). */
void raft_report_snapshot(struct raft *r, raft_id peer, bool failed);
/* The caller stopped hearing from peer's node: send to it only as a probe. */
void raft_report_unreachable(struct raft *r, raft_id peer);
void raft_wake(struct raft *r);

/* Outputs. */
bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r);

/* Read-only state. */
raft_id raft_id_of(const struct raft *r);
uint64_t raft_group_id(const struct raft *r);
enum raft_role raft_role_of(const struct raft *r);
raft_id raft_leader(const struct raft *r); /* 0 when unknown */
raft_term raft_term_of(const struct raft *r);
raft_index raft_commit_index(const struct raft *r);
raft_index raft_applied_index(const struct raft *r);
raft_index raft_first_index(const struct raft *r); /* first entry held (compact + 1) */
raft_index raft_last_index(const struct raft *r);
const struct raft_conf *raft_conf_of(const struct raft *r);
bool raft_quiesced(const struct raft *r);
bool raft_lease_valid(const struct raft *r);
/* The lease as it will stand once `pending` more ticks are given to raft_tick(): for a
 * caller holding ticks back (while a ready is out, raft takes none), whose clock is
 * ahead of raft's by that much. raft_lease_valid(r) is raft_lease_valid_after(r, 0). */
bool raft_lease_valid_after(const struct raft *r, uint32_t pending);
/* Leader only: a peer's replication state. Returns false if not leader or unknown. */
enum raft_progress_state {
    RAFT_PROBE = 0,
    RAFT_REPLICATE = 1,
    RAFT_SNAPSHOT = 2,
};
struct raft_progress_info {
    raft_index match;
    raft_index next;
    uint8_t state; /* enum raft_progress_state */
    bool recent_active;
    uint32_t inflight_msgs;
};
bool raft_progress(const struct raft *r, raft_id peer, struct raft_progress_info *out);
/* Entry term for index in [first_index - 1, last_index]; 0 otherwise. */
raft_term raft_term_at(const struct raft *r, raft_index index);
/* Heap bytes this instance holds (log data and arrays). */
size_t raft_memory_bytes(const struct raft *r);

/* Configurations (pure helpers, used by callers to read RAFT_ENTRY_CONF entries). */
#define RAFT_CONF_ENCODED_BYTES_MAX (2u + TS_RAFT_MEMBERS_MAX * 9u)
/* Returns the encoded length (<= RAFT_CONF_ENCODED_BYTES_MAX). */
uint32_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf);
/* Returns 0 or TS_EPROTO (bad version, length, order or role). */
int raft_conf_decode(const uint8_t *buf, uint32_t len, struct raft_conf *out);
uint8_t raft_conf_role(const struct raft_conf *c, raft_id id); /* 0 if not a member */
bool raft_conf_joint(const struct raft_conf *c);

const char *raft_msg_type_name(enum raft_msg_type t);
const char *raft_role_name(enum raft_role role);

#endif
