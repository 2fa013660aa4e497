/*
 * core/raft internals, shared by raft.c (the state machine), raft_log.c (the in-memory
 * log) and raft_conf.c (configurations and quorums). Not part of the API (STYLE R2).
 *
 * The log keeps entries compact_index+1 .. last in one array (so a ready's spans are
 * contiguous views) and their data in blocks of TS_RAFT_BLOCK_BYTES, reference-counted
 * by entries: copying a 64-byte command costs a bump of a pointer, not a malloc, and a
 * block is freed when its last entry is compacted or truncated away.
 */
#ifndef TS_CORE_RAFT_RAFT_INT_H
#define TS_CORE_RAFT_RAFT_INT_H

#include "core/raft/raft.h"

/* Data blocks grow from RAFT_BLOCK_BYTES_MIN, doubling while a group keeps filling
 * them, to RAFT_BLOCK_BYTES: an idle group holding one configuration entry costs a small
 * block, a busy one serves hundreds of commands per 16 KiB allocation. Entries above a
 * quarter of the largest size get a block of their own. A block is freed as soon as no
 * entry uses it, except the current one, which a busy group reuses; it is freed (and
 * the sizes start small again) when the group goes quiescent. */
#define RAFT_BLOCK_BYTES (16u * 1024u)
#define RAFT_BLOCK_BYTES_MIN 256u
/* Heartbeat rounds remembered for leases (round -> tick it was sent). */
#define RAFT_ROUND_RING 64u

struct raft_block {
    uint32_t refs;
    uint32_t used;
    uint32_t cap;
    uint8_t data[];
};

struct raft_log {
    const struct ts_allocator *alloc;
    struct raft_entry *e;    /* e[head .. head+n) hold indices compact_index+1 .. */
    struct raft_block **blk; /* blk[i]: the block holding e[i].data, or NULL */
    size_t head;
    size_t n;
    size_t cap;
    raft_index compact_index;
    raft_term compact_term;
    raft_index stable; /* last index known persisted (updated at advance) */
    struct raft_block *cur;
    uint32_t next_block_bytes; /* size of the next shared block */
    size_t data_bytes;         /* bytes of blocks held */
};

void raft_log_init(struct raft_log *l, const struct ts_allocator *a);
void raft_log_free(struct raft_log *l);
static inline raft_index raft_log_last(const struct raft_log *l)
{
    return l->compact_index + l->n;
}
static inline raft_index raft_log_first(const struct raft_log *l)
{
    return l->compact_index + 1;
}
/* The entry at index (compact_index < index <= last). */
static inline const struct raft_entry *raft_log_at(const struct raft_log *l, raft_index index)
{
    return &l->e[l->head + (size_t)(index - l->compact_index - 1)];
}
/* Term at index; 0 when unknown (compacted or beyond the end). */
raft_term raft_log_term(const struct raft_log *l, raft_index index);
/* Appends copies of entries, which must continue the log (entries[0].index = last+1).
 * Returns 0 or TS_ENOMEM (nothing appended). */
int raft_log_append(struct raft_log *l, const struct raft_entry *entries, size_t n);
/* Drops entries after index (index >= compact_index). */
void raft_log_truncate(struct raft_log *l, raft_index index);
/* Drops entries up to index (compact_index <= index <= last). */
void raft_log_compact(struct raft_log *l, raft_index index);
/* Drops everything; the log restarts after (index, term) with nothing unstable. */
void raft_log_restore(struct raft_log *l, raft_index index, raft_term term);
/* The last index <= index whose term is <= term (T§3.5's fast back-off). */
raft_index raft_log_conflict_by_term(const struct raft_log *l, raft_index index, raft_term term,
                                     raft_term *term_out);
/* Gives back memory a quiet group does not need: an unused data block, and array
 * capacity beyond twice the entries held. */
void raft_log_trim(struct raft_log *l);
size_t raft_log_memory_bytes(const struct raft_log *l);

/* Configurations (raft_conf.c). */
bool raft_conf_valid(const struct raft_conf *c);
int raft_conf_index_of(const struct raft_conf *c, raft_id id);
static inline bool raft_conf_is_voter(uint8_t role)
{
    return (role & (RAFT_VOTER | RAFT_VOTER_OUTGOING)) != 0;
}
/* The configuration that results from changes applied to c (not joint). Returns 0,
 * or TS_EINVAL (unknown id removed, nothing changes, no voter left, too many members). */
int raft_conf_apply_changes(const struct raft_conf *c, const struct raft_change *ch, size_t n,
                            struct raft_conf *out);
/* Number of voters whose membership differs between two non-joint configurations. */
uint32_t raft_conf_voter_diff(const struct raft_conf *a, const struct raft_conf *b);
/* The joint configuration going from old to new (both non-joint). */
void raft_conf_make_joint(const struct raft_conf *old, const struct raft_conf *new_conf,
                          struct raft_conf *out);
/* The configuration after leaving a joint one. */
void raft_conf_leave_joint(const struct raft_conf *joint, struct raft_conf *out);
/* Quorum over the values (one per member of c, in c's order): the largest value that a
 * majority of the incoming voters, and of the outgoing ones in a joint configuration,
 * have reached. UINT64_MAX when there are no voters. */
uint64_t raft_conf_quorum_value(const struct raft_conf *c, const uint64_t *values);
/* Vote outcome over member votes (1 granted, 2 rejected, 0 none): 1 won, -1 lost, 0
 * pending. */
int raft_conf_vote_result(const struct raft_conf *c, const uint8_t *votes);

#endif
