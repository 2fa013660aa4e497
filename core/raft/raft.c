/*
 * The Raft state machine of one group (see raft.h for the contract and the sections
 * implemented). Structure, top to bottom: small vectors and messages; role changes;
 * the leader's progress tracking; election; replication (leader and follower sides);
 * reads and leases; step/tick/propose; ready/advance; read-only accessors.
 *
 * Messages that carry log entries (APPEND) are built only inside raft_ready(): between
 * two readies the log may grow (reallocating its array), so step/tick/propose only mark
 * the peers that need sending (send_pending) and raft_ready() builds one APPEND per
 * peer per window slot from whatever accumulated. That is also what batches all
 * proposals of a loop iteration into one message per follower.
 */
#include <string.h>

#include "core/raft/raft_int.h"
#include "core/util/assert.h"
#include "core/util/err.h"

#define VOTE_GRANTED 1
#define VOTE_REJECTED 2

struct inflight {
    raft_index last;
    uint64_t bytes;
};

struct progress {
    raft_id id;
    raft_index match;
    raft_index next;
    raft_index pending_snapshot;
    raft_index sent_commit;
    uint64_t acked_round;
    uint32_t snapshot_ticks;
    uint8_t state;
    bool recent_active;
    bool probe_sent;
    bool send_empty;      /* send an APPEND even with nothing new: it exposes lost ones */
    struct inflight *inf; /* ring of APPENDs in flight (REPLICATE) */
    uint32_t inf_cap;
    uint32_t inf_start;
    uint32_t inf_count;
    uint64_t inf_bytes;
};

struct pending_read {
    uint64_t ctx;
    raft_index index;
    uint64_t round; /* 0: waiting for the leader's first commit in its term */
    raft_id from;   /* 0: local */
};

/* What only a leader needs, allocated when it wins and freed when it steps down, so a
 * follower of an idle group costs little. */
struct leader {
    struct progress *prs; /* parallel to conf.m */
    uint32_t prs_cap;
    uint64_t round_id[RAFT_ROUND_RING];
    uint64_t round_tick[RAFT_ROUND_RING];
    struct pending_read *reads;
    uint32_t reads_n;
    uint32_t reads_cap;
};

struct vec {
    void *p;
    uint32_t n;
    uint32_t cap;
};

struct raft {
    struct raft_config c;
    struct raft_log log;
    struct raft_conf conf;
    raft_term term;
    raft_id vote;
    raft_index commit;
    raft_index applied;
    raft_id lead;
    uint8_t role;
    bool quiesced;
    bool lease_guard; /* refuse votes until an election timeout passed since start */
    bool send_pending;
    bool read_round_needed;
    bool in_ready;
    bool has_install;
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    uint64_t ticks;
    uint8_t votes[TS_RAFT_MEMBERS_MAX];
    struct leader *ld;
    raft_index pending_conf_index;
    raft_index term_start_index;
    raft_id transferee;
    uint64_t uncommitted_bytes;
    uint64_t round;
    uint64_t round_floor;
    struct raft_hard_state persisted_hs;
    struct raft_hard_state ready_hs;
    uint8_t ready_role;
    raft_id ready_lead;
    raft_index ready_stable_hi;
    raft_index ready_applied_hi;
    struct vec msgs;
    struct vec msgs_after;
    struct vec reads_out;
    struct raft_snapshot_meta *snap_in;  /* to install (rd.snapshot) */
    struct raft_snapshot_meta *snap_out; /* sent to peers in this ready */
    uint64_t dropped_msgs;
};

/* ------------------------------------------------------------------ vectors, messages */

static void *vec_push(struct raft *r, struct vec *v, size_t elem, uint32_t max)
{
    if (v->n == v->cap) {
        if (v->cap >= max) {
            return NULL;
        }
        uint32_t cap = v->cap == 0 ? 4 : v->cap * 2;
        void *p = ts_realloc(r->c.alloc, v->p, (size_t)v->cap * elem, (size_t)cap * elem);
        if (p == NULL) {
            return NULL;
        }
        v->p = p;
        v->cap = cap;
    }
    void *slot = (char *)v->p + (size_t)v->n * elem;
    v->n++;
    memset(slot, 0, elem);
    return slot;
}

static void vec_free(struct raft *r, struct vec *v, size_t elem)
{
    ts_free(r->c.alloc, v->p, (size_t)v->cap * elem);
    memset(v, 0, sizeof *v);
}

/* A new message to `to`, or NULL when the queue is full or memory is short: Raft
 * tolerates a lost message, so the caller then simply does not send it. */
static struct raft_message *msg_new(struct raft *r, bool after_persist, uint8_t type, raft_id to)
{
    TS_DASSERT(to != 0 && to != r->c.id);
    struct vec *v = after_persist ? &r->msgs_after : &r->msgs;
    struct raft_message *m = vec_push(r, v, sizeof *m, TS_RAFT_MSGS_PENDING_MAX);
    if (m == NULL) {
        r->dropped_msgs++;
        return NULL;
    }
    m->group_id = r->c.group_id;
    m->type = type;
    m->from = r->c.id;
    m->to = to;
    m->term = r->term;
    return m;
}

static void read_state_push(struct raft *r, uint64_t ctx, raft_index index)
{
    struct raft_read_state *s = vec_push(r, &r->reads_out, sizeof *s, TS_RAFT_READS_PENDING_MAX);
    if (s != NULL) { /* else dropped: the caller's read times out and is retried */
        s->ctx = ctx;
        s->index = index;
    }
}

/* ------------------------------------------------------------------ small helpers */

static raft_term last_term(const struct raft *r)
{
    return raft_log_term(&r->log, raft_log_last(&r->log));
}

static bool promotable(const struct raft *r)
{
    return raft_conf_is_voter(raft_conf_role(&r->conf, r->c.id));
}

static void reset_timeout(struct raft *r)
{
    uint32_t e = r->c.election_ticks;
    r->randomized_timeout = e + (uint32_t)ts_rand_below(r->c.rand, e);
}

/* T§4.2.3 with CheckQuorum: a replica that heard from a leader within the election
 * timeout (or has just started and may have heard from one) refuses votes. */
static bool in_lease(const struct raft *r)
{
    return r->c.check_quorum && r->election_elapsed < r->c.election_ticks &&
           (r->lead != 0 || r->lease_guard);
}

static struct progress *progress_of(struct raft *r, raft_id id)
{
    if (r->ld == NULL) {
        return NULL;
    }
    int i = raft_conf_index_of(&r->conf, id);
    return i < 0 ? NULL : &r->ld->prs[i];
}

static bool single_voter(const struct raft *r)
{
    if (raft_conf_joint(&r->conf)) {
        return false;
    }
    uint32_t voters = 0;
    for (uint32_t i = 0; i < r->conf.n; i++) {
        voters += (r->conf.m[i].role & RAFT_VOTER) != 0;
    }
    return voters == 1 && raft_conf_role(&r->conf, r->c.id) == RAFT_VOTER;
}

/* Wakes a quiescent group. A follower woken by anything but its leader wakes the
 * leader too (an acknowledgement of its commit index), or the leader would stay silent
 * while the follower's election clock runs. Returns whether the group was quiescent. */
static bool wake(struct raft *r, raft_id by)
{
    if (!r->quiesced) {
        return false;
    }
    r->quiesced = false;
    r->round_floor = r->round + 1; /* ticks stood still: the lease needs a new round */
    if (r->role != RAFT_LEADER && r->lead != 0 && by != r->lead) {
        struct raft_message *m = msg_new(r, false, RAFT_MSG_APPEND_RESP, r->lead);
        if (m != NULL) {
            m->index = r->commit;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ leader state */

static void progress_reset_inflight(struct progress *pr)
{
    pr->inf_start = 0;
    pr->inf_count = 0;
    pr->inf_bytes = 0;
}

static void leader_free(struct raft *r)
{
    struct leader *ld = r->ld;
    if (ld == NULL) {
        return;
    }
    for (uint32_t i = 0; i < ld->prs_cap; i++) {
        ts_free(r->c.alloc, ld->prs[i].inf, ld->prs[i].inf_cap * sizeof(struct inflight));
    }
    ts_free(r->c.alloc, ld->prs, ld->prs_cap * sizeof *ld->prs);
    ts_free(r->c.alloc, ld->reads, ld->reads_cap * sizeof *ld->reads);
    ts_free(r->c.alloc, ld, sizeof *ld);
    r->ld = NULL;
}

/* Rebuilds the progress array for the current configuration, keeping what is known of
 * members that stay. Returns false on memory shortage (the caller steps down). */
static bool progress_rebuild(struct raft *r)
{
    struct leader *ld = r->ld;
    size_t bytes = r->conf.n * sizeof(struct progress);
    struct progress *prs = ts_alloc(r->c.alloc, bytes > 0 ? bytes : 1);
    if (prs == NULL) {
        return false;
    }
    memset(prs, 0, bytes);
    for (uint32_t i = 0; i < r->conf.n; i++) {
        struct progress *pr = &prs[i];
        raft_id id = r->conf.m[i].id;
        struct progress *old = NULL;
        for (uint32_t j = 0; j < ld->prs_cap; j++) {
            if (ld->prs[j].id == id) {
                old = &ld->prs[j];
            }
        }
        if (old != NULL) {
            *pr = *old;
            old->inf = NULL; /* moved */
            old->inf_cap = 0;
            continue;
        }
        pr->id = id;
        pr->next = raft_log_last(&r->log) + 1;
        pr->state = RAFT_PROBE;
        pr->recent_active = true;
        pr->acked_round = id == r->c.id ? r->round : 0;
        pr->match = id == r->c.id ? r->log.stable : 0;
    }
    for (uint32_t j = 0; j < ld->prs_cap; j++) {
        ts_free(r->c.alloc, ld->prs[j].inf, ld->prs[j].inf_cap * sizeof(struct inflight));
    }
    ts_free(r->c.alloc, ld->prs, ld->prs_cap * sizeof *ld->prs);
    ld->prs = prs;
    ld->prs_cap = r->conf.n;
    return true;
}

static void become_probe(struct progress *pr)
{
    if (pr->state == RAFT_SNAPSHOT) {
        raft_index p = pr->pending_snapshot;
        pr->next = (p > pr->match ? p : pr->match) + 1;
    } else {
        pr->next = pr->match + 1;
    }
    pr->state = RAFT_PROBE;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    progress_reset_inflight(pr);
}

static void become_replicate(struct progress *pr)
{
    pr->state = RAFT_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    progress_reset_inflight(pr);
}

static bool inflight_full(const struct raft *r, const struct progress *pr)
{
    return pr->inf_count >= r->c.inflight_msgs_max || pr->inf_bytes >= r->c.inflight_bytes_max;
}

static bool inflight_add(struct raft *r, struct progress *pr, raft_index last, uint64_t bytes)
{
    if (pr->inf_count == pr->inf_cap) {
        uint32_t cap = pr->inf_cap == 0 ? 4 : pr->inf_cap * 2;
        struct inflight *n = ts_alloc(r->c.alloc, cap * sizeof *n);
        if (n == NULL) {
            return false;
        }
        for (uint32_t i = 0; i < pr->inf_count; i++) {
            n[i] = pr->inf[(pr->inf_start + i) % pr->inf_cap];
        }
        ts_free(r->c.alloc, pr->inf, pr->inf_cap * sizeof *n);
        pr->inf = n;
        pr->inf_cap = cap;
        pr->inf_start = 0;
    }
    pr->inf[(pr->inf_start + pr->inf_count) % pr->inf_cap] = (struct inflight){last, bytes};
    pr->inf_count++;
    pr->inf_bytes += bytes;
    return true;
}

static void inflight_free_to(struct progress *pr, raft_index index)
{
    while (pr->inf_count > 0 && pr->inf[pr->inf_start].last <= index) {
        pr->inf_bytes -= pr->inf[pr->inf_start].bytes;
        pr->inf_start = (pr->inf_start + 1) % pr->inf_cap;
        pr->inf_count--;
    }
}

static void inflight_free_first(struct progress *pr)
{
    TS_ASSERT(pr->inf_count > 0);
    pr->inf_bytes -= pr->inf[pr->inf_start].bytes;
    pr->inf_start = (pr->inf_start + 1) % pr->inf_cap;
    pr->inf_count--;
}

static bool progress_paused(const struct raft *r, const struct progress *pr)
{
    switch (pr->state) {
    case RAFT_PROBE:
        return pr->probe_sent;
    case RAFT_REPLICATE:
        return inflight_full(r, pr);
    default:
        return true;
    }
}

/* ------------------------------------------------------------------ role changes */

static void become_follower(struct raft *r, raft_term term, raft_id lead)
{
    TS_ASSERT(term >= r->term);
    leader_free(r);
    if (term != r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->transferee = 0;
    r->read_round_needed = false;
    r->send_pending = false;
    reset_timeout(r);
}

static int append_entry(struct raft *r, uint8_t type, const void *data, uint32_t len)
{
    struct raft_entry e = {
        .term = r->term,
        .index = raft_log_last(&r->log) + 1,
        .data = data,
        .len = len,
        .type = type,
    };
    int rc = raft_log_append(&r->log, &e, 1);
    if (rc != 0) {
        return rc;
    }
    r->uncommitted_bytes += len;
    r->send_pending = true;
    return 0;
}

static void become_leader(struct raft *r)
{
    TS_ASSERT(r->role == RAFT_CANDIDATE);
    TS_ASSERT(r->ld == NULL);
    struct leader *ld = ts_alloc(r->c.alloc, sizeof *ld);
    if (ld == NULL) {
        return; /* stays candidate; the election times out and is retried */
    }
    memset(ld, 0, sizeof *ld);
    r->ld = ld;
    r->round = 0;
    r->round_floor = 1;
    r->role = RAFT_LEADER;
    r->lead = r->c.id;
    r->transferee = 0;
    r->uncommitted_bytes = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    if (!progress_rebuild(r) || append_entry(r, RAFT_ENTRY_NORMAL, NULL, 0) != 0) {
        become_follower(r, r->term, 0);
        return;
    }
    r->term_start_index = raft_log_last(&r->log);
    r->pending_conf_index = raft_log_last(&r->log); /* no change before the no-op applies */
    r->send_pending = true;
}

/* ------------------------------------------------------------------ election (§5.2) */

static void campaign(struct raft *r, bool pre, bool force);

static void poll_result(struct raft *r)
{
    int res = raft_conf_vote_result(&r->conf, r->votes);
    if (res > 0) {
        if (r->role == RAFT_PRECANDIDATE) {
            campaign(r, false, false);
        } else {
            become_leader(r);
        }
    } else if (res < 0) {
        become_follower(r, r->term, 0);
    }
}

static void campaign(struct raft *r, bool pre, bool force)
{
    if (!promotable(r)) {
        return;
    }
    leader_free(r);
    r->election_elapsed = 0;
    r->lead = 0;
    reset_timeout(r);
    memset(r->votes, 0, sizeof r->votes);
    raft_term vote_term;
    if (pre) {
        r->role = RAFT_PRECANDIDATE;
        vote_term = r->term + 1;
    } else {
        r->role = RAFT_CANDIDATE;
        r->term++;
        r->vote = r->c.id;
        vote_term = r->term;
    }
    r->votes[raft_conf_index_of(&r->conf, r->c.id)] = VOTE_GRANTED;
    for (uint32_t i = 0; i < r->conf.n; i++) {
        raft_id id = r->conf.m[i].id;
        if (id == r->c.id || !raft_conf_is_voter(r->conf.m[i].role)) {
            continue;
        }
        /* A vote request promises the candidate's own vote: after the persist. */
        struct raft_message *m = msg_new(r, !pre, pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, id);
        if (m != NULL) {
            m->term = vote_term;
            m->index = raft_log_last(&r->log);
            m->log_term = last_term(r);
            m->force = force;
        }
    }
    poll_result(r);
}

static void handle_vote_request(struct raft *r, const struct raft_message *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can = r->vote == m->from || (r->vote == 0 && r->lead == 0) || (pre && m->term > r->term);
    raft_term lt = last_term(r);
    bool up_to_date = m->log_term > lt || (m->log_term == lt && m->index >= raft_log_last(&r->log));
    bool grant = can && up_to_date;
    struct raft_message *resp =
        msg_new(r, !pre, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    if (grant && !pre) {
        r->election_elapsed = 0;
        r->vote = m->from;
    }
    if (resp != NULL) {
        resp->term = grant ? m->term : r->term;
        resp->reject = !grant;
    }
}

static void handle_vote_response(struct raft *r, const struct raft_message *m)
{
    int i = raft_conf_index_of(&r->conf, m->from);
    if (i < 0 || r->votes[i] != 0) {
        return;
    }
    r->votes[i] = m->reject ? VOTE_REJECTED : VOTE_GRANTED;
    poll_result(r);
}

/* ------------------------------------------------------------------ replication (§5.3) */

static void commit_reduce_uncommitted(struct raft *r, raft_index from, raft_index to)
{
    for (raft_index i = from; i <= to; i++) {
        if (i >= r->term_start_index && i > r->log.compact_index) {
            uint32_t len = raft_log_at(&r->log, i)->len;
            r->uncommitted_bytes -= len < r->uncommitted_bytes ? len : r->uncommitted_bytes;
        }
    }
}

static void assign_read_rounds(struct raft *r);

/* P§5.4.2: only an entry of the current term is committed by counting replicas. */
static bool maybe_commit(struct raft *r)
{
    uint64_t match[TS_RAFT_MEMBERS_MAX];
    for (uint32_t i = 0; i < r->conf.n; i++) {
        match[i] = r->ld->prs[i].match;
    }
    uint64_t q = raft_conf_quorum_value(&r->conf, match);
    if (q == UINT64_MAX || q <= r->commit || raft_log_term(&r->log, q) != r->term) {
        return false;
    }
    TS_ASSERT(q <= raft_log_last(&r->log));
    raft_index old = r->commit;
    r->commit = q;
    commit_reduce_uncommitted(r, old + 1, q);
    if (raft_log_term(&r->log, old) != r->term) {
        assign_read_rounds(r); /* the first commit of this term releases waiting reads */
    }
    r->send_pending = true;
    return true;
}

static void send_snapshot(struct raft *r, struct progress *pr)
{
    if (!pr->recent_active) {
        return;
    }
    if (r->snap_out == NULL) {
        r->snap_out = ts_alloc(r->c.alloc, sizeof *r->snap_out);
        if (r->snap_out == NULL) {
            return;
        }
    }
    struct raft_message *m = msg_new(r, false, RAFT_MSG_SNAPSHOT, pr->id);
    if (m == NULL) {
        return;
    }
    r->snap_out->index = r->applied;
    r->snap_out->term = raft_log_term(&r->log, r->applied);
    r->snap_out->conf = r->conf;
    TS_ASSERT(r->snap_out->term != 0);
    m->snapshot = r->snap_out;
    m->commit = r->commit;
    pr->state = RAFT_SNAPSHOT;
    pr->pending_snapshot = r->applied;
    pr->snapshot_ticks = 0;
    progress_reset_inflight(pr);
}

/* Builds one APPEND for pr. Returns false when nothing more should be sent now. */
static bool send_one_append(struct raft *r, struct progress *pr)
{
    if (pr->next <= r->log.compact_index) {
        send_snapshot(r, pr);
        return false;
    }
    raft_index prev = pr->next - 1;
    raft_index last = raft_log_last(&r->log);
    uint32_t n = 0;
    uint64_t bytes = 0;
    while (prev + n < last) {
        uint32_t len = raft_log_at(&r->log, prev + n + 1)->len;
        if (n == TS_RAFT_MSG_ENTRIES_MAX || (n > 0 && bytes + len > r->c.msg_bytes_max)) {
            break;
        }
        bytes += len;
        n++;
    }
    if (n == 0 && pr->sent_commit >= r->commit && !pr->send_empty) {
        return false;
    }
    if (n > 0 && pr->state == RAFT_REPLICATE && !inflight_add(r, pr, prev + n, bytes)) {
        return false;
    }
    struct raft_message *m = msg_new(r, false, RAFT_MSG_APPEND, pr->id);
    if (m == NULL) {
        return false;
    }
    m->index = prev;
    m->log_term = raft_log_term(&r->log, prev);
    m->commit = r->commit;
    m->entries = n > 0 ? raft_log_at(&r->log, prev + 1) : NULL;
    m->n_entries = n;
    pr->sent_commit = r->commit;
    pr->send_empty = false;
    if (pr->state == RAFT_PROBE) {
        pr->probe_sent = true;
        return false;
    }
    pr->next = prev + n + 1;
    return n > 0;
}

static void send_appends(struct raft *r)
{
    for (uint32_t i = 0; i < r->conf.n; i++) {
        struct progress *pr = &r->ld->prs[i];
        if (pr->id == r->c.id) {
            continue;
        }
        uint32_t sent = 0;
        while (!progress_paused(r, pr) && sent <= r->c.inflight_msgs_max) {
            if (!send_one_append(r, pr)) {
                break;
            }
            sent++;
        }
    }
}

static void send_timeout_now(struct raft *r, raft_id to)
{
    (void)msg_new(r, false, RAFT_MSG_TIMEOUT_NOW, to);
}

static bool progress_update(struct progress *pr, raft_index n)
{
    bool updated = false;
    if (pr->match < n) {
        pr->match = n;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < n + 1) {
        pr->next = n + 1;
    }
    return updated;
}

/* The follower rejected an APPEND at `rejected`; match_hint is the probe index.
 *
 * A rejection at or below match whose hint is below match says that the follower no
 * longer holds entries it acknowledged: its log lost a tail it had reported durable (a
 * damaged final batch of storage/wal is cut like a torn write, storage/wal/wal.h). Raft
 * assumes that never happens, and treating the rejection as stale would probe at
 * match + 1 forever, the follower rejecting each probe. Instead match drops to the hint
 * and the leader probes from there. Lowering match never lowers the commit index; a
 * rejection that was merely reordered costs one probe. */
static bool progress_decr(struct progress *pr, raft_index rejected, raft_index match_hint)
{
    if (pr->state != RAFT_SNAPSHOT && rejected <= pr->match && match_hint < pr->match) {
        pr->match = match_hint;
        pr->next = match_hint + 1;
        pr->probe_sent = false;
        return true;
    }
    if (pr->state == RAFT_REPLICATE) {
        if (rejected <= pr->match) {
            return false; /* stale */
        }
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next - 1 != rejected) {
        return false; /* stale */
    }
    raft_index n = rejected < match_hint + 1 ? rejected : match_hint + 1;
    pr->next = n > pr->match + 1 ? n : pr->match + 1;
    pr->probe_sent = false;
    return true;
}

static void handle_append_response(struct raft *r, struct progress *pr,
                                   const struct raft_message *m)
{
    if (m->reject) {
        raft_index probe = m->reject_hint;
        if (m->log_term > 0) {
            raft_term t;
            probe = raft_log_conflict_by_term(&r->log, m->reject_hint, m->log_term, &t);
        }
        if (progress_decr(pr, m->index, probe)) {
            if (pr->state == RAFT_REPLICATE) {
                become_probe(pr);
            }
            r->send_pending = true;
        }
        return;
    }
    bool probe_at_match = pr->state == RAFT_PROBE && pr->match == m->index;
    if (!progress_update(pr, m->index) && !probe_at_match) {
        return;
    }
    if (pr->state == RAFT_PROBE) {
        become_replicate(pr);
    } else if (pr->state == RAFT_SNAPSHOT && pr->match + 1 >= raft_log_first(&r->log)) {
        become_probe(pr);
        become_replicate(pr);
    } else if (pr->state == RAFT_REPLICATE) {
        inflight_free_to(pr, m->index);
    }
    maybe_commit(r);
    r->send_pending = true;
    if (m->from == r->transferee && pr->match == raft_log_last(&r->log)) {
        send_timeout_now(r, m->from);
    }
}

/* Follower: T§3.5 AppendEntries. Returns 0, TS_ENOMEM or TS_EPROTO. */
static int handle_append(struct raft *r, const struct raft_message *m)
{
    if (m->index < r->commit) {
        struct raft_message *resp = msg_new(r, true, RAFT_MSG_APPEND_RESP, m->from);
        if (resp != NULL) {
            resp->index = r->commit;
        }
        return 0;
    }
    raft_index last = raft_log_last(&r->log);
    if (m->index > last || raft_log_term(&r->log, m->index) != m->log_term) {
        raft_term hint_term;
        raft_index hint = raft_log_conflict_by_term(&r->log, m->index < last ? m->index : last,
                                                    m->log_term, &hint_term);
        struct raft_message *resp = msg_new(r, false, RAFT_MSG_APPEND_RESP, m->from);
        if (resp != NULL) {
            resp->reject = true;
            resp->index = m->index;
            resp->reject_hint = hint;
            resp->log_term = hint_term;
        }
        return 0;
    }
    uint32_t skip = 0;
    while (skip < m->n_entries && m->index + skip + 1 <= last &&
           raft_log_term(&r->log, m->index + skip + 1) == m->entries[skip].term) {
        skip++;
    }
    if (skip < m->n_entries) {
        raft_index at = m->index + skip + 1;
        TS_ASSERT(at > r->commit); /* m->index >= commit: committed entries all matched */
        if (at <= last) {
            raft_log_truncate(&r->log, at - 1);
        }
        int rc = raft_log_append(&r->log, m->entries + skip, m->n_entries - skip);
        if (rc != 0) {
            return rc;
        }
    }
    raft_index last_new = m->index + m->n_entries;
    raft_index c = m->commit < last_new ? m->commit : last_new;
    if (c > r->commit) {
        r->commit = c;
    }
    struct raft_message *resp = msg_new(r, true, RAFT_MSG_APPEND_RESP, m->from);
    if (resp != NULL) {
        resp->index = last_new;
    }
    return 0;
}

static void handle_heartbeat(struct raft *r, const struct raft_message *m)
{
    raft_index c = m->commit < raft_log_last(&r->log) ? m->commit : raft_log_last(&r->log);
    if (c > r->commit) {
        r->commit = c;
    }
    struct raft_message *resp = msg_new(r, false, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp != NULL) {
        resp->context = m->context;
    }
    if (m->quiesce && m->from == r->lead && r->commit == m->commit) {
        r->quiesced = true;
        raft_log_trim(&r->log);
    }
}

static void apply_conf(struct raft *r, const struct raft_conf *c);

/* Follower: P§7 InstallSnapshot. */
static void handle_snapshot(struct raft *r, const struct raft_message *m)
{
    const struct raft_snapshot_meta *s = m->snapshot;
    struct raft_message *resp = NULL;
    if (s->index <= r->commit) {
        resp = msg_new(r, true, RAFT_MSG_APPEND_RESP, m->from);
    } else if (s->index <= raft_log_last(&r->log) && raft_log_term(&r->log, s->index) == s->term) {
        r->commit = s->index; /* the log already holds it: fast-forward */
        resp = msg_new(r, true, RAFT_MSG_APPEND_RESP, m->from);
    } else if (raft_conf_role(&s->conf, r->c.id) != 0) {
        if (r->snap_in == NULL) {
            r->snap_in = ts_alloc(r->c.alloc, sizeof *r->snap_in);
            if (r->snap_in == NULL) {
                return;
            }
        }
        *r->snap_in = *s;
        raft_log_restore(&r->log, s->index, s->term);
        r->commit = s->index;
        r->has_install = true;
        apply_conf(r, &s->conf);
        resp = msg_new(r, true, RAFT_MSG_APPEND_RESP, m->from);
    }
    if (resp != NULL) {
        resp->index = r->commit;
    }
}

/* ------------------------------------------------------------------ reads (T§6.4) */

static uint64_t quorum_round(const struct raft *r)
{
    uint64_t acked[TS_RAFT_MEMBERS_MAX];
    for (uint32_t i = 0; i < r->conf.n; i++) {
        acked[i] = r->ld->prs[i].id == r->c.id ? r->round : r->ld->prs[i].acked_round;
    }
    return raft_conf_quorum_value(&r->conf, acked);
}

static void deliver_read(struct raft *r, uint64_t ctx, raft_index index, raft_id from)
{
    if (from == 0) {
        read_state_push(r, ctx, index);
        return;
    }
    struct raft_message *m = msg_new(r, false, RAFT_MSG_READ_INDEX_RESP, from);
    if (m != NULL) {
        m->index = index;
        m->context = ctx;
    }
}

static void release_reads(struct raft *r)
{
    struct leader *ld = r->ld;
    if (ld->reads_n == 0) {
        return;
    }
    uint64_t q = quorum_round(r);
    uint32_t done = 0;
    while (done < ld->reads_n && ld->reads[done].round != 0 && ld->reads[done].round <= q) {
        deliver_read(r, ld->reads[done].ctx, ld->reads[done].index, ld->reads[done].from);
        done++;
    }
    memmove(ld->reads, ld->reads + done, (ld->reads_n - done) * sizeof *ld->reads);
    ld->reads_n -= done;
}

static void assign_read_rounds(struct raft *r)
{
    struct leader *ld = r->ld;
    for (uint32_t i = 0; i < ld->reads_n; i++) {
        if (ld->reads[i].round == 0) {
            ld->reads[i].round = r->round + 1;
            ld->reads[i].index = r->commit;
            r->read_round_needed = true;
        }
    }
}

static void bcast_heartbeat(struct raft *r, bool quiesce)
{
    struct leader *ld = r->ld;
    r->round++;
    ld->round_id[r->round % RAFT_ROUND_RING] = r->round;
    ld->round_tick[r->round % RAFT_ROUND_RING] = r->ticks;
    for (uint32_t i = 0; i < r->conf.n; i++) {
        struct progress *pr = &ld->prs[i];
        if (pr->id == r->c.id) {
            continue;
        }
        struct raft_message *m = msg_new(r, false, RAFT_MSG_HEARTBEAT, pr->id);
        if (m != NULL) {
            m->commit = pr->match < r->commit ? pr->match : r->commit;
            m->context = r->round;
            m->quiesce = quiesce;
        }
    }
    r->read_round_needed = false;
}

bool raft_lease_valid(const struct raft *r)
{
    return raft_lease_valid_after(r, 0);
}

bool raft_lease_valid_after(const struct raft *r, uint32_t pending)
{
    if (r->role != RAFT_LEADER || !r->c.lease_reads || !r->c.check_quorum || r->quiesced ||
        r->transferee != 0 || raft_log_term(&r->log, r->commit) != r->term) {
        return false;
    }
    uint64_t q = quorum_round(r);
    if (q < r->round_floor || q == UINT64_MAX || r->ld->round_id[q % RAFT_ROUND_RING] != q) {
        return false;
    }
    uint64_t sent = r->ld->round_tick[q % RAFT_ROUND_RING];
    return r->ticks + pending < sent + r->c.election_ticks - r->c.lease_drift_ticks;
}

static int leader_read(struct raft *r, uint64_t ctx, raft_id from)
{
    struct leader *ld = r->ld;
    bool term_committed = raft_log_term(&r->log, r->commit) == r->term;
    if (term_committed && (single_voter(r) || raft_lease_valid(r))) {
        deliver_read(r, ctx, r->commit, from);
        return 0;
    }
    if (ld->reads_n == TS_RAFT_READS_PENDING_MAX) {
        return TS_EFULL;
    }
    if (ld->reads_n == ld->reads_cap) {
        uint32_t cap = ld->reads_cap == 0 ? 4 : ld->reads_cap * 2;
        void *p = ts_realloc(r->c.alloc, ld->reads, ld->reads_cap * sizeof *ld->reads,
                             cap * sizeof *ld->reads);
        if (p == NULL) {
            return TS_ENOMEM;
        }
        ld->reads = p;
        ld->reads_cap = cap;
    }
    struct pending_read *pr = &ld->reads[ld->reads_n++];
    pr->ctx = ctx;
    pr->from = from;
    pr->index = r->commit;
    pr->round = term_committed ? r->round + 1 : 0;
    r->read_round_needed |= term_committed;
    return 0;
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
    TS_ASSERT(!r->in_ready);
    wake(r, r->c.id);
    if (r->role == RAFT_LEADER) {
        if (r->transferee != 0) {
            return TS_EUNAVAIL;
        }
        return leader_read(r, ctx, 0);
    }
    if (r->lead == 0 || r->role != RAFT_FOLLOWER) {
        return TS_ENOTLEADER;
    }
    struct raft_message *m = msg_new(r, false, RAFT_MSG_READ_INDEX, r->lead);
    if (m == NULL) {
        return TS_EFULL;
    }
    m->term = 0; /* a request, like a proposal: valid in any term */
    m->context = ctx;
    return 0;
}

/* ------------------------------------------------------------------ configurations */

static void apply_conf(struct raft *r, const struct raft_conf *c)
{
    TS_ASSERT(raft_conf_valid(c));
    r->conf = *c;
    memset(r->votes, 0, sizeof r->votes);
    if (r->role == RAFT_PRECANDIDATE || r->role == RAFT_CANDIDATE) {
        become_follower(r, r->term, 0); /* the election was for another configuration */
        return;
    }
    if (r->role != RAFT_LEADER) {
        return;
    }
    if (!progress_rebuild(r) || !promotable(r)) {
        become_follower(r, r->term, 0); /* removed (T§4.2.2), or out of memory */
        return;
    }
    if (r->transferee != 0 && !(raft_conf_role(c, r->transferee) & RAFT_VOTER)) {
        r->transferee = 0;
    }
    maybe_commit(r);
    r->send_pending = true;
}

/* T§4.3: once the joint configuration is applied on the leader (whichever leader), it
 * proposes leaving it. */
static void maybe_leave_joint(struct raft *r)
{
    if (r->role != RAFT_LEADER || !raft_conf_joint(&r->conf) ||
        r->pending_conf_index > r->applied) {
        return;
    }
    struct raft_conf leave;
    uint8_t buf[RAFT_CONF_ENCODED_BYTES_MAX];
    raft_conf_leave_joint(&r->conf, &leave);
    uint32_t len = raft_conf_encode(&leave, buf);
    if (append_entry(r, RAFT_ENTRY_CONF, buf, len) == 0) {
        r->pending_conf_index = raft_log_last(&r->log);
    }
}

static bool conf_union_fits(const struct raft_conf *a, const struct raft_conf *b)
{
    uint32_t n = a->n;
    for (uint32_t i = 0; i < b->n; i++) {
        n += raft_conf_index_of(a, b->m[i].id) < 0;
    }
    return n <= TS_RAFT_MEMBERS_MAX;
}

int raft_propose_conf(struct raft *r, const struct raft_change *changes, size_t n,
                      raft_index *index_out)
{
    TS_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER) {
        return TS_ENOTLEADER;
    }
    if (r->transferee != 0 || r->pending_conf_index > r->applied || raft_conf_joint(&r->conf)) {
        return TS_EUNAVAIL;
    }
    struct raft_conf next, target;
    if (n == 0 || raft_conf_apply_changes(&r->conf, changes, n, &next) != 0) {
        return TS_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (changes[i].type == RAFT_ADD_VOTER &&
            raft_conf_role(&r->conf, changes[i].id) == RAFT_LEARNER) {
            const struct progress *pr = progress_of(r, changes[i].id);
            if (pr->match + r->c.promote_lag_max < raft_log_last(&r->log)) {
                return TS_EINVAL; /* not caught up: promoting it could stall commits */
            }
        }
    }
    if (raft_conf_voter_diff(&r->conf, &next) <= 1) {
        target = next;
    } else if (conf_union_fits(&r->conf, &next)) {
        raft_conf_make_joint(&r->conf, &next, &target);
    } else {
        return TS_EINVAL;
    }
    wake(r, r->c.id);
    uint8_t buf[RAFT_CONF_ENCODED_BYTES_MAX];
    uint32_t len = raft_conf_encode(&target, buf);
    int rc = append_entry(r, RAFT_ENTRY_CONF, buf, len);
    if (rc != 0) {
        return rc;
    }
    r->pending_conf_index = raft_log_last(&r->log);
    if (index_out != NULL) {
        *index_out = raft_log_last(&r->log);
    }
    return 0;
}

/* ------------------------------------------------------------------ step */

static int check_message(const struct raft *r, const struct raft_message *m)
{
    if (m->type >= RAFT_MSG_TYPES_ || m->to != r->c.id || m->from == 0 || m->from == r->c.id) {
        return TS_EPROTO;
    }
    if ((m->term == 0) != (m->type == RAFT_MSG_READ_INDEX)) {
        return TS_EPROTO; /* only a forwarded read request is valid in any term */
    }
    if (m->n_entries > 0 && (m->type != RAFT_MSG_APPEND || m->entries == NULL)) {
        return TS_EPROTO;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term > m->term || e->len > TS_RAFT_ENTRY_BYTES_MAX ||
            (e->len > 0 && e->data == NULL) || e->type > RAFT_ENTRY_CONF ||
            (i > 0 && e->term < m->entries[i - 1].term)) {
            return TS_EPROTO;
        }
        struct raft_conf c;
        if (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, &c) != 0) {
            return TS_EPROTO;
        }
    }
    if (m->type == RAFT_MSG_SNAPSHOT &&
        (m->snapshot == NULL || !raft_conf_valid(&m->snapshot->conf) || m->snapshot->term == 0)) {
        return TS_EPROTO;
    }
    return 0;
}

/* Term rules of T§3.3 with the PreVote and CheckQuorum refinements (T§9.6, T§4.2.3).
 * Returns false when the message is dropped. */
static bool step_term(struct raft *r, const struct raft_message *m)
{
    uint8_t t = m->type;
    if (m->term == 0 || m->term == r->term) {
        return true;
    }
    if (m->term > r->term) {
        if ((t == RAFT_MSG_VOTE || t == RAFT_MSG_PREVOTE) && !m->force && in_lease(r)) {
            return false;
        }
        if (t == RAFT_MSG_PREVOTE || (t == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
            return true; /* a pre-vote never changes terms */
        }
        bool from_leader =
            t == RAFT_MSG_APPEND || t == RAFT_MSG_HEARTBEAT || t == RAFT_MSG_SNAPSHOT;
        become_follower(r, m->term, from_leader ? m->from : 0);
        return true;
    }
    /* A lower term. A stale leader (or a node that missed an election while it was cut
     * off) learns the current term from the answer, so that with CheckQuorum and PreVote
     * a node with a higher term and a stale log cannot leave the group leaderless. */
    if ((r->c.check_quorum || r->c.pre_vote) && (t == RAFT_MSG_APPEND || t == RAFT_MSG_HEARTBEAT)) {
        (void)msg_new(r, false, RAFT_MSG_APPEND_RESP, m->from);
    } else if (t == RAFT_MSG_PREVOTE) {
        struct raft_message *resp = msg_new(r, false, RAFT_MSG_PREVOTE_RESP, m->from);
        if (resp != NULL) {
            resp->reject = true;
        }
    }
    return false;
}

static int step_follower(struct raft *r, const struct raft_message *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->lead = m->from;
        if (m->type == RAFT_MSG_APPEND) {
            return handle_append(r, m);
        }
        if (m->type == RAFT_MSG_HEARTBEAT) {
            handle_heartbeat(r, m);
        } else {
            handle_snapshot(r, m);
        }
        return 0;
    case RAFT_MSG_TIMEOUT_NOW:
        campaign(r, false, true); /* T§3.10: at once, without PreVote, past any lease */
        return 0;
    case RAFT_MSG_READ_INDEX_RESP:
        read_state_push(r, m->context, m->index);
        return 0;
    default:
        return 0;
    }
}

static int step_candidate(struct raft *r, const struct raft_message *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        become_follower(r, r->term, m->from); /* a leader of our term won */
        return step_follower(r, m);
    case RAFT_MSG_PREVOTE_RESP:
        if (r->role == RAFT_PRECANDIDATE) {
            handle_vote_response(r, m);
        }
        return 0;
    case RAFT_MSG_VOTE_RESP:
        if (r->role == RAFT_CANDIDATE) {
            handle_vote_response(r, m);
        }
        return 0;
    default:
        return 0;
    }
}

static int step_leader(struct raft *r, const struct raft_message *m)
{
    struct progress *pr = progress_of(r, m->from);
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        if (pr != NULL) {
            pr->recent_active = true;
            handle_append_response(r, pr, m);
        }
        return 0;
    case RAFT_MSG_HEARTBEAT_RESP:
        if (pr != NULL) {
            pr->recent_active = true;
            pr->probe_sent = false;
            if (m->context > pr->acked_round && m->context <= r->round) {
                pr->acked_round = m->context;
            }
            if (pr->match < raft_log_last(&r->log)) {
                /* APPENDs or their answers may have been lost (P§5.3: retry until the
                 * follower has everything): make room in a full window and send an
                 * APPEND after the last one sent; a follower that lacks it rejects it,
                 * which resets next (etcd does the same). */
                if (pr->state == RAFT_REPLICATE && pr->inf_count > 0 && inflight_full(r, pr)) {
                    inflight_free_first(pr);
                }
                pr->send_empty = true;
                r->send_pending = true;
            } else if (pr->sent_commit < r->commit) {
                r->send_pending = true;
            }
            release_reads(r);
        }
        return 0;
    case RAFT_MSG_READ_INDEX:
        if (r->transferee == 0) {
            (void)leader_read(r, m->context, m->from); /* EFULL: dropped, the client retries */
        }
        return 0;
    default:
        return 0;
    }
}

int raft_step(struct raft *r, const struct raft_message *m)
{
    TS_ASSERT(!r->in_ready);
    int rc = check_message(r, m);
    if (rc != 0) {
        return rc;
    }
    /* The last heartbeat and its acknowledgements do not wake a quiescent group. */
    if (!(m->type == RAFT_MSG_HEARTBEAT && m->quiesce) && m->type != RAFT_MSG_HEARTBEAT_RESP) {
        wake(r, m->from);
    }
    if (!step_term(r, m)) {
        return 0;
    }
    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
        handle_vote_request(r, m);
        return 0;
    }
    switch (r->role) {
    case RAFT_LEADER:
        return step_leader(r, m);
    case RAFT_FOLLOWER:
        return step_follower(r, m);
    default:
        return step_candidate(r, m);
    }
}

/* ------------------------------------------------------------------ tick */

static bool quorum_active(struct raft *r)
{
    uint64_t active[TS_RAFT_MEMBERS_MAX];
    for (uint32_t i = 0; i < r->conf.n; i++) {
        struct progress *pr = &r->ld->prs[i];
        active[i] = pr->id == r->c.id || pr->recent_active;
        if (pr->id != r->c.id) {
            pr->recent_active = false;
        }
    }
    return raft_conf_quorum_value(&r->conf, active) == 1;
}

static bool can_quiesce(const struct raft *r)
{
    raft_index last = raft_log_last(&r->log);
    if (r->transferee != 0 || raft_conf_joint(&r->conf) || r->pending_conf_index > r->applied ||
        r->ld->reads_n > 0 || r->read_round_needed || r->applied != last || r->commit != last ||
        r->log.stable != last) {
        return false;
    }
    for (uint32_t i = 0; i < r->conf.n; i++) {
        const struct progress *pr = &r->ld->prs[i];
        if (pr->id != r->c.id && (pr->match != last || pr->state != RAFT_REPLICATE ||
                                  !pr->recent_active || pr->inf_count > 0)) {
            return false;
        }
    }
    return true;
}

static void tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->c.election_ticks) {
        r->election_elapsed = 0;
        if (r->c.check_quorum && !quorum_active(r)) {
            become_follower(r, r->term, 0); /* T§6.2: cut off from a quorum */
            return;
        }
        r->transferee = 0; /* a transfer not done within an election timeout is aborted */
    }
    for (uint32_t i = 0; i < r->conf.n; i++) {
        struct progress *pr = &r->ld->prs[i];
        if (pr->state == RAFT_SNAPSHOT && ++pr->snapshot_ticks >= r->c.snapshot_timeout_ticks) {
            become_probe(pr);
            r->send_pending = true;
        }
    }
    if (r->heartbeat_elapsed >= r->c.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        bool quiesce = can_quiesce(r);
        bcast_heartbeat(r, quiesce);
        r->quiesced = quiesce;
        if (quiesce) {
            raft_log_trim(&r->log);
        }
    }
}

void raft_tick(struct raft *r)
{
    TS_ASSERT(!r->in_ready);
    if (r->quiesced) {
        return;
    }
    r->ticks++;
    if (r->role == RAFT_LEADER) {
        tick_leader(r);
        return;
    }
    r->election_elapsed++;
    if (r->election_elapsed >= r->c.election_ticks) {
        r->lease_guard = false;
    }
    if (promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        campaign(r, r->c.pre_vote, false);
    }
}

/* ------------------------------------------------------------------ proposals */

int raft_propose(struct raft *r, const void *data, uint32_t len, raft_index *index_out)
{
    TS_ASSERT(!r->in_ready);
    TS_ASSERT(len == 0 || data != NULL);
    if (r->role != RAFT_LEADER) {
        return TS_ENOTLEADER;
    }
    if (r->transferee != 0) {
        return TS_EUNAVAIL;
    }
    if (len > TS_RAFT_ENTRY_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    if (r->uncommitted_bytes > 0 && r->uncommitted_bytes + len > r->c.uncommitted_bytes_max) {
        return TS_EFULL;
    }
    wake(r, r->c.id);
    int rc = append_entry(r, RAFT_ENTRY_NORMAL, data, len);
    if (rc != 0) {
        return rc;
    }
    if (index_out != NULL) {
        *index_out = raft_log_last(&r->log);
    }
    return 0;
}

int raft_transfer_leader(struct raft *r, raft_id to)
{
    TS_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER) {
        return TS_ENOTLEADER;
    }
    if (to == r->c.id) {
        r->transferee = 0;
        return 0;
    }
    if (!(raft_conf_role(&r->conf, to) & RAFT_VOTER)) {
        return TS_EINVAL;
    }
    wake(r, r->c.id);
    if (r->transferee == to) {
        return 0;
    }
    r->transferee = to;
    r->election_elapsed = 0;
    if (progress_of(r, to)->match == raft_log_last(&r->log)) {
        send_timeout_now(r, to);
    } else {
        r->send_pending = true;
    }
    return 0;
}

int raft_compact(struct raft *r, raft_index index)
{
    TS_ASSERT(!r->in_ready);
    if (index > r->applied || index < r->log.compact_index) {
        return TS_EINVAL;
    }
    raft_log_compact(&r->log, index);
    TS_ASSERT(raft_log_first(&r->log) == index + 1);
    return 0;
}

void raft_report_snapshot(struct raft *r, raft_id peer, bool failed)
{
    TS_ASSERT(!r->in_ready);
    struct progress *pr = progress_of(r, peer);
    if (pr == NULL || pr->state != RAFT_SNAPSHOT) {
        return;
    }
    if (failed) {
        pr->pending_snapshot = 0;
    }
    become_probe(pr);
    pr->probe_sent = true; /* wait for a heartbeat answer before probing again */
    r->send_pending = true;
}

void raft_report_unreachable(struct raft *r, raft_id peer)
{
    TS_ASSERT(!r->in_ready);
    struct progress *pr = progress_of(r, peer);
    if (pr != NULL && pr->state == RAFT_REPLICATE) {
        become_probe(pr);
    }
}

void raft_wake(struct raft *r)
{
    TS_ASSERT(!r->in_ready);
    wake(r, 0);
}

/* ------------------------------------------------------------------ ready / advance */

bool raft_has_ready(const struct raft *r)
{
    if (r->in_ready) {
        return false;
    }
    const struct raft_hard_state *p = &r->persisted_hs;
    return r->msgs.n > 0 || r->msgs_after.n > 0 || r->reads_out.n > 0 || r->has_install ||
           r->log.stable < raft_log_last(&r->log) || r->commit > r->applied || p->term != r->term ||
           p->vote != r->vote || p->commit != r->commit || r->role != r->ready_role ||
           r->lead != r->ready_lead ||
           (r->role == RAFT_LEADER && (r->send_pending || r->read_round_needed));
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    TS_ASSERT(!r->in_ready);
    if (r->role == RAFT_LEADER) {
        if (r->read_round_needed) {
            bcast_heartbeat(r, false);
            release_reads(r); /* a single voter confirms its own round */
        }
        if (r->send_pending) {
            r->send_pending = false;
            send_appends(r);
        }
    }
    memset(rd, 0, sizeof *rd);
    rd->hard_state = (struct raft_hard_state){r->term, r->vote, r->commit};
    rd->hard_state_changed = memcmp(&rd->hard_state, &r->persisted_hs, sizeof rd->hard_state);
    rd->snapshot = r->has_install ? r->snap_in : NULL;
    raft_index last = raft_log_last(&r->log);
    if (last > r->log.stable) {
        rd->entries = raft_log_at(&r->log, r->log.stable + 1);
        rd->n_entries = (size_t)(last - r->log.stable);
    }
    r->ready_applied_hi = r->has_install ? r->snap_in->index : r->commit;
    if (!r->has_install && r->commit > r->applied) {
        TS_ASSERT(r->applied >= r->log.compact_index);
        rd->committed = raft_log_at(&r->log, r->applied + 1);
        rd->n_committed = (size_t)(r->commit - r->applied);
    }
    rd->msgs = r->msgs.p;
    rd->n_msgs = r->msgs.n;
    rd->msgs_after_persist = r->msgs_after.p;
    rd->n_msgs_after_persist = r->msgs_after.n;
    rd->reads = r->reads_out.p;
    rd->n_reads = r->reads_out.n;
    rd->soft_state_changed = r->role != r->ready_role || r->lead != r->ready_lead;
    rd->role = r->role;
    rd->leader = r->lead;
    r->ready_hs = rd->hard_state;
    r->ready_stable_hi = last;
    r->in_ready = true;
}

static void apply_committed_confs(struct raft *r, raft_index from, raft_index to)
{
    for (raft_index i = from; i <= to; i++) {
        const struct raft_entry *e = raft_log_at(&r->log, i);
        if (e->type != RAFT_ENTRY_CONF) {
            continue;
        }
        struct raft_conf c;
        TS_ASSERT(raft_conf_decode(e->data, e->len, &c) == 0);
        r->applied = i; /* apply_conf reads it to decide on leaving a joint config */
        apply_conf(r, &c);
    }
}

void raft_advance(struct raft *r)
{
    TS_ASSERT(r->in_ready);
    r->in_ready = false;
    r->persisted_hs = r->ready_hs;
    r->log.stable = r->ready_stable_hi;
    r->ready_role = r->role;
    r->ready_lead = r->lead;
    r->msgs.n = 0;
    r->msgs_after.n = 0;
    r->reads_out.n = 0;
    if (r->has_install) {
        r->has_install = false;
        r->applied = r->ready_applied_hi;
    } else if (r->ready_applied_hi > r->applied) {
        raft_index from = r->applied + 1;
        apply_committed_confs(r, from, r->ready_applied_hi);
        r->applied = r->ready_applied_hi;
    }
    if (r->role == RAFT_LEADER) {
        struct progress *self = progress_of(r, r->c.id);
        TS_ASSERT(self != NULL);
        if (self->match < r->log.stable) {
            self->match = r->log.stable;
            maybe_commit(r);
        }
        maybe_leave_joint(r);
    }
}

/* ------------------------------------------------------------------ lifecycle */

void raft_config_default(struct raft_config *c)
{
    memset(c, 0, sizeof *c);
    c->election_ticks = 10;
    c->heartbeat_ticks = 1;
    c->pre_vote = true;
    c->check_quorum = true;
    c->lease_reads = true;
    c->lease_drift_ticks = 2;
    c->msg_bytes_max = 1024u * 1024u;
    c->inflight_msgs_max = 256;
    c->inflight_bytes_max = 16u * 1024u * 1024u;
    c->uncommitted_bytes_max = 64u * 1024u * 1024u;
    c->promote_lag_max = 1000;
    c->snapshot_timeout_ticks = 100;
}

static bool config_valid(const struct raft_config *c)
{
    return c->id != 0 && c->heartbeat_ticks >= 1 && c->election_ticks > c->heartbeat_ticks &&
           (!c->lease_reads || c->check_quorum) && c->lease_drift_ticks < c->election_ticks &&
           c->msg_bytes_max > 0 && c->inflight_msgs_max > 0 && c->inflight_bytes_max > 0 &&
           c->snapshot_timeout_ticks > 0 && c->rand != NULL && c->alloc != NULL;
}

static int init_bootstrap(struct raft *r, const struct raft_initial *in)
{
    if (!raft_conf_valid(in->bootstrap) || raft_conf_joint(in->bootstrap) ||
        raft_conf_role(in->bootstrap, r->c.id) == 0 || in->n_entries > 0 ||
        in->hard_state.term != 0 || in->compact_index != 0) {
        return TS_EINVAL;
    }
    uint8_t buf[RAFT_CONF_ENCODED_BYTES_MAX];
    struct raft_entry e = {.term = 1, .index = 1, .data = buf, .type = RAFT_ENTRY_CONF};
    e.len = raft_conf_encode(in->bootstrap, buf);
    int rc = raft_log_append(&r->log, &e, 1);
    if (rc != 0) {
        return rc;
    }
    r->term = 1;
    r->commit = 1;
    r->conf = *in->bootstrap;
    return 0;
}

static int init_restart(struct raft *r, const struct raft_initial *in)
{
    r->log.compact_index = in->compact_index;
    r->log.compact_term = in->compact_term;
    r->log.stable = in->compact_index;
    if (in->compact_index != 0 && in->compact_term == 0) {
        return TS_EINVAL;
    }
    for (size_t i = 0; i < in->n_entries; i++) {
        const struct raft_entry *e = &in->entries[i];
        raft_term prev = i == 0 ? in->compact_term : in->entries[i - 1].term;
        if (e->index != in->compact_index + 1 + i || e->term < prev || e->term == 0) {
            return TS_EINVAL;
        }
    }
    int rc = raft_log_append(&r->log, in->entries, in->n_entries);
    if (rc != 0) {
        return rc;
    }
    r->log.stable = raft_log_last(&r->log);
    r->term = in->hard_state.term;
    r->vote = in->hard_state.vote;
    if (last_term(r) > r->term) {
        /* Entries of a ready became durable but its hard state did not (a torn write).
         * Nothing of that ready was acknowledged or voted on, so take the entries' term
         * with no vote: a term must never be below a term in the log. */
        r->term = last_term(r);
        r->vote = 0;
    }
    r->commit = in->hard_state.commit > in->applied ? in->hard_state.commit : in->applied;
    r->applied = in->applied;
    if (r->commit > raft_log_last(&r->log) || r->applied < in->compact_index) {
        return TS_EINVAL;
    }
    if (in->conf != NULL) {
        if (!raft_conf_valid(in->conf)) {
            return TS_EINVAL;
        }
        r->conf = *in->conf;
    }
    r->persisted_hs = in->hard_state; /* a raised term is persisted by the first ready */
    return 0;
}

int raft_new(const struct raft_config *c, const struct raft_initial *in, struct raft **out)
{
    TS_ASSERT(c != NULL && in != NULL && out != NULL);
    *out = NULL;
    if (!config_valid(c)) {
        return TS_EINVAL;
    }
    struct raft *r = ts_alloc(c->alloc, sizeof *r);
    if (r == NULL) {
        return TS_ENOMEM;
    }
    memset(r, 0, sizeof *r);
    r->c = *c;
    raft_log_init(&r->log, c->alloc);
    int rc = in->bootstrap != NULL ? init_bootstrap(r, in) : init_restart(r, in);
    if (rc != 0) {
        raft_free(r);
        return rc;
    }
    r->role = RAFT_FOLLOWER;
    r->ready_role = RAFT_FOLLOWER;
    r->lease_guard = c->check_quorum;
    reset_timeout(r);
    *out = r;
    return 0;
}

void raft_free(struct raft *r)
{
    if (r == NULL) {
        return;
    }
    leader_free(r);
    raft_log_free(&r->log);
    vec_free(r, &r->msgs, sizeof(struct raft_message));
    vec_free(r, &r->msgs_after, sizeof(struct raft_message));
    vec_free(r, &r->reads_out, sizeof(struct raft_read_state));
    ts_free(r->c.alloc, r->snap_in, sizeof *r->snap_in);
    ts_free(r->c.alloc, r->snap_out, sizeof *r->snap_out);
    ts_free(r->c.alloc, r, sizeof *r);
}

/* ------------------------------------------------------------------ accessors */

raft_id raft_id_of(const struct raft *r)
{
    return r->c.id;
}

uint64_t raft_group_id(const struct raft *r)
{
    return r->c.group_id;
}

enum raft_role raft_role_of(const struct raft *r)
{
    return (enum raft_role)r->role;
}

raft_id raft_leader(const struct raft *r)
{
    return r->lead;
}

raft_term raft_term_of(const struct raft *r)
{
    return r->term;
}

raft_index raft_commit_index(const struct raft *r)
{
    return r->commit;
}

raft_index raft_applied_index(const struct raft *r)
{
    return r->applied;
}

raft_index raft_first_index(const struct raft *r)
{
    return raft_log_first(&r->log);
}

raft_index raft_last_index(const struct raft *r)
{
    return raft_log_last(&r->log);
}

const struct raft_conf *raft_conf_of(const struct raft *r)
{
    return &r->conf;
}

bool raft_quiesced(const struct raft *r)
{
    return r->quiesced;
}

raft_term raft_term_at(const struct raft *r, raft_index index)
{
    return raft_log_term(&r->log, index);
}

bool raft_progress(const struct raft *r, raft_id peer, struct raft_progress_info *out)
{
    const struct progress *pr = progress_of((struct raft *)r, peer);
    if (pr == NULL) {
        return false;
    }
    out->match = pr->match;
    out->next = pr->next;
    out->state = pr->state;
    out->recent_active = pr->recent_active;
    out->inflight_msgs = pr->inf_count;
    return true;
}

size_t raft_memory_bytes(const struct raft *r)
{
    size_t n = sizeof *r + raft_log_memory_bytes(&r->log);
    n += (size_t)r->msgs.cap * sizeof(struct raft_message) * 2;
    n += (size_t)r->reads_out.cap * sizeof(struct raft_read_state);
    if (r->ld != NULL) {
        n += sizeof *r->ld + r->ld->prs_cap * sizeof(struct progress);
        n += r->ld->reads_cap * sizeof(struct pending_read);
    }
    n += r->snap_in != NULL ? sizeof *r->snap_in : 0;
    return n + (r->snap_out != NULL ? sizeof *r->snap_out : 0);
}

const char *raft_msg_type_name(enum raft_msg_type t)
{
    static const char *const names[RAFT_MSG_TYPES_] = {
        "Vote",           "VoteResp",  "PreVote",       "PreVoteResp", "Append",
        "AppendResp",     "Heartbeat", "HeartbeatResp", "TimeoutNow",  "Snapshot",
        "SnapshotStatus", "ReadIndex", "ReadIndexResp",
    };
    return (unsigned)t < RAFT_MSG_TYPES_ ? names[t] : "Unknown";
}

const char *raft_role_name(enum raft_role role)
{
    static const char *const names[] = {"follower", "precandidate", "candidate", "leader"};
    return (unsigned)role <= RAFT_LEADER ? names[role] : "unknown";
}
