/*
 * core/raft: client interaction (P§8 / T§6): redirection to the leader, limits on
 * proposals, ReadIndex reads (T§6.4) and lease reads (T§6.4.1).
 */
#include "raft_testnet.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define E 10u

static struct raft *R(struct tn *tn, raft_id id)
{
    return tn_raft(tn, id);
}

static void start_and_elect(struct tn *tn)
{
    tn_start(tn);
    if (tn->cfg.check_quorum) {
        tn_age(tn, 1, E);
    }
    cr_assert(tn_elect(tn, 1));
}

/* The read state with ctx on node id, or NULL. */
static const struct raft_read_state *read_of(struct tn *tn, raft_id id, uint64_t ctx)
{
    for (size_t i = 0; i < tn->node[id].n_reads; i++) {
        if (tn->node[id].reads[i].ctx == ctx) {
            return &tn->node[id].reads[i];
        }
    }
    return NULL;
}

/* Heartbeat rounds: tick the leader and deliver, `rounds` times. */
static void rounds(struct tn *tn, raft_id leader, int n)
{
    for (int i = 0; i < n; i++) {
        tn_deliver_all(tn);
        tn_tick(tn, leader, 1);
        tn_deliver_all(tn);
    }
}

Test(raft_client, follower_refuses_proposals_and_names_the_leader)
{
    /* P§8 / T§6.2: clients talk to the leader; a follower refuses with TS_ENOTLEADER and
     * gives the leader it knows (0 before any is known). */
    struct tn tn;
    tn_init(&tn, 3, 601);
    tn_start(&tn);
    cr_assert_eq(raft_leader(R(&tn, 2)), 0);
    cr_assert_eq(tn_propose(&tn, 2, "x"), TS_ENOTLEADER);
    cr_assert_eq(raft_read_index(R(&tn, 2), 1), TS_ENOTLEADER, "no leader to forward to");
    cr_assert(tn_elect(&tn, 1));
    cr_assert_eq(tn_propose(&tn, 2, "x"), TS_ENOTLEADER);
    cr_assert_eq(raft_leader(R(&tn, 2)), 1);
    cr_assert_eq(raft_leader(R(&tn, 3)), 1);
    cr_assert_eq(raft_leader(R(&tn, 1)), 1);
    struct raft_change c = {.type = RAFT_REMOVE, .id = 3};
    cr_assert_eq(raft_propose_conf(R(&tn, 2), &c, 1, NULL), TS_ENOTLEADER);
    tn_ready_all(&tn);
    cr_assert_eq(tn_applied_find(&tn, 1, "x"), 0);
    tn_fini(&tn);
}

Test(raft_client, oversize_entry_is_refused)
{
    /* raft.h / limits.h (TS_RAFT_ENTRY_BYTES_MAX): an entry over the limit is refused with
     * TS_ETOOBIG and nothing is appended. */
    struct tn tn;
    tn_init(&tn, 3, 602);
    start_and_elect(&tn);
    uint8_t *big = calloc(1, TS_RAFT_ENTRY_BYTES_MAX + 1);
    cr_assert_not_null(big);
    raft_index last = raft_last_index(R(&tn, 1));
    cr_assert_eq(raft_propose(R(&tn, 1), big, TS_RAFT_ENTRY_BYTES_MAX + 1, NULL), TS_ETOOBIG);
    cr_assert_eq(raft_last_index(R(&tn, 1)), last);
    free(big);
    cr_assert_eq(tn_propose(&tn, 1, "small"), 0);
    tn_deliver_all(&tn);
    tn_fini(&tn);
}

Test(raft_client, uncommitted_bytes_over_the_limit_give_efull)
{
    /* raft.h (uncommitted_bytes_max): a leader that cannot commit stops accepting
     * proposals once the uncommitted bytes reach the limit (TS_EFULL), instead of
     * growing its log without bound; committing frees the room. */
    struct tn tn;
    tn_init(&tn, 3, 603);
    tn.cfg.uncommitted_bytes_max = 1000;
    start_and_elect(&tn);
    tn_isolate(&tn, 1);
    raft_report_unreachable(R(&tn, 1), 2);
    raft_report_unreachable(R(&tn, 1), 3);
    char buf[301];
    memset(buf, 'u', 300);
    buf[300] = 0;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tn_propose(&tn, 1, buf), 0, "proposal %d fits", i);
    }
    int rc = tn_propose(&tn, 1, buf);
    if (rc == 0) {
        rc = tn_propose(&tn, 1, buf);
    }
    cr_assert_eq(rc, TS_EFULL);
    tn_heal(&tn);
    tn_run(&tn, 4);
    cr_assert_eq(tn_applied_data_count(&tn, 2), 3 + (rc == 0), "the accepted ones commit");
    cr_assert_eq(tn_propose(&tn, 1, buf), 0, "room again");
    tn_deliver_all(&tn);
    tn_fini(&tn);
}

Test(raft_client, read_index_waits_for_a_quorum_round_and_uses_the_commit_at_request)
{
    /* T§6.4: the leader records its commit index as the read index, confirms it is still
     * leader with a round of heartbeats acknowledged by a majority, then answers with
     * that index (entries committed after the request do not change it). */
    struct tn tn;
    tn_init(&tn, 3, 604);
    start_and_elect(&tn);
    raft_index commit = raft_commit_index(R(&tn, 1));
    cr_assert_eq(raft_read_index(R(&tn, 1), 7), 0);
    cr_assert_eq(tn_propose(&tn, 1, "later"), 0);
    tn_ready_all(&tn);
    cr_assert_null(read_of(&tn, 1, 7), "not answered before a quorum confirmed leadership");
    rounds(&tn, 1, 2);
    const struct raft_read_state *rs = read_of(&tn, 1, 7);
    cr_assert_not_null(rs, "answered after a heartbeat round");
    cr_assert_eq(rs->index, commit, "the commit index at request time");
    cr_assert_gt(raft_commit_index(R(&tn, 1)), commit, "later was committed meanwhile");
    tn_fini(&tn);
}

Test(raft_client, isolated_leader_never_answers_a_read)
{
    /* T§6.4: a deposed or partitioned leader cannot confirm its leadership, so it never
     * answers: that is what makes ReadIndex linearizable. */
    struct tn tn;
    tn_init(&tn, 3, 605);
    start_and_elect(&tn);
    tn_isolate(&tn, 1);
    cr_assert_eq(raft_read_index(R(&tn, 1), 8), 0);
    tn_tick(&tn, 1, 5 * E);
    tn_deliver_all(&tn);
    cr_assert_null(read_of(&tn, 1, 8));
    cr_assert_eq(tn.node[1].n_reads, 0);
    tn_fini(&tn);
}

Test(raft_client, pending_reads_are_bounded)
{
    /* limits.h (TS_RAFT_READS_PENDING_MAX): a leader that cannot confirm a round queues
     * at most that many reads; more get TS_EFULL. */
    struct tn tn;
    tn_init(&tn, 3, 606);
    start_and_elect(&tn);
    tn_isolate(&tn, 1);
    for (uint32_t i = 0; i < TS_RAFT_READS_PENDING_MAX; i++) {
        cr_assert_eq(raft_read_index(R(&tn, 1), 1000 + i), 0, "read %u", i);
    }
    cr_assert_eq(raft_read_index(R(&tn, 1), 1), TS_EFULL);
    tn_ready_all(&tn);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

static bool drop_appends(struct tn *tn, struct raft_message *m, void *ctx)
{
    return m->type == RAFT_MSG_APPEND;
}

Test(raft_client, new_leader_answers_reads_only_after_committing_its_noop)
{
    /* T§6.4 step 1: a new leader does not know the commit index until it has committed
     * an entry of its term (its no-op); reads wait until then (or are refused with
     * TS_EUNAVAIL and retried), and the index given is at least the no-op's. */
    struct tn tn;
    tn_init(&tn, 3, 607);
    tn_start(&tn);
    tn_set_tap(&tn, drop_appends, NULL);
    cr_assert(tn_elect(&tn, 1));
    raft_index noop = raft_last_index(R(&tn, 1));
    cr_assert_lt(raft_commit_index(R(&tn, 1)), noop, "the no-op is not committed yet");
    int rc = raft_read_index(R(&tn, 1), 9);
    cr_assert(rc == 0 || rc == TS_EUNAVAIL, "rc %d", rc);
    rounds(&tn, 1, 2);
    cr_assert_null(read_of(&tn, 1, 9), "no answer before the no-op commits");
    tn_heal(&tn);
    rounds(&tn, 1, 1);
    cr_assert_geq(raft_commit_index(R(&tn, 1)), noop);
    if (rc != 0) {
        cr_assert_eq(raft_read_index(R(&tn, 1), 9), 0);
    }
    rounds(&tn, 1, 2);
    const struct raft_read_state *rs = read_of(&tn, 1, 9);
    cr_assert_not_null(rs);
    cr_assert_geq(rs->index, noop);
    tn_fini(&tn);
}

Test(raft_client, follower_read_is_forwarded_and_answered)
{
    /* T§6.4 (reads on followers): a follower asks the leader for the read index; the
     * leader confirms a round and answers; the read state appears on the follower. */
    struct tn tn;
    tn_init(&tn, 3, 608);
    start_and_elect(&tn);
    raft_index commit = raft_commit_index(R(&tn, 1));
    cr_assert_eq(raft_read_index(R(&tn, 2), 11), 0);
    rounds(&tn, 1, 2);
    const struct raft_read_state *rs = read_of(&tn, 2, 11);
    cr_assert_not_null(rs, "the follower got its read index");
    cr_assert_eq(rs->index, commit);
    cr_assert_null(read_of(&tn, 1, 11), "the leader's caller does not serve it");
    cr_assert_gt(tn.sent[2][1][RAFT_MSG_READ_INDEX], 0);
    tn_fini(&tn);
}

/* Leader 1 with lease reads and a round acknowledged by a quorum. Node 3 is cut off and
 * lags, so the leader stays busy: a quiescent leader holds no lease (its ticks stand
 * still; raft.h, Quiescence), and a read would wake it without one. */
static void lease_leader(struct tn *tn, uint64_t seed)
{
    tn_init(tn, 3, seed);
    tn->cfg.check_quorum = true;
    tn->cfg.lease_reads = true;
    start_and_elect(tn);
    tn_cut(tn, 1, 3);
    cr_assert_eq(tn_propose(tn, 1, "busy"), 0);
    rounds(tn, 1, 1);
    cr_assert_not(raft_quiesced(R(tn, 1)));
    cr_assert_neq(tn_applied_find(tn, 1, "busy"), 0);
}

Test(raft_client, lease_read_is_answered_at_once)
{
    /* T§6.4.1: with a valid lease the leader answers a read without a round trip: the
     * read state is in the next ready, before anything is delivered. */
    struct tn tn;
    lease_leader(&tn, 609);
    cr_assert(raft_lease_valid(R(&tn, 1)));
    raft_index commit = raft_commit_index(R(&tn, 1));
    cr_assert_eq(raft_read_index(R(&tn, 1), 5), 0);
    tn_ready_all(&tn);
    const struct raft_read_state *rs = read_of(&tn, 1, 5);
    cr_assert_not_null(rs, "answered without a round trip");
    cr_assert_eq(rs->index, commit);
    tn_fini(&tn);
}

Test(raft_client, lease_expires_without_acknowledgements)
{
    /* T§6.4.1 / raft.h (Leases): the lease runs from the tick of the last round a quorum
     * acknowledged for election_ticks - lease_drift_ticks ticks. Cut off (and kept busy
     * by a pending proposal, so it does not quiesce), the leader loses it on time. */
    struct tn tn;
    lease_leader(&tn, 610);
    uint32_t drift = tn.cfg.lease_drift_ticks;
    cr_assert(drift > 0 && drift < E);
    tn_isolate(&tn, 1);
    cr_assert_eq(tn_propose(&tn, 1, "pending"), 0);
    cr_assert(raft_lease_valid(R(&tn, 1)));
    cr_assert(raft_lease_valid_after(R(&tn, 1), E - drift - 1));
    cr_assert_not(raft_lease_valid_after(R(&tn, 1), E - drift), "ticks not given yet count");
    tn_tick(&tn, 1, E - drift - 1);
    cr_assert(raft_lease_valid(R(&tn, 1)), "still valid %u ticks after the round", E - drift - 1);
    cr_assert_not(raft_lease_valid_after(R(&tn, 1), 1));
    tn_tick(&tn, 1, 2);
    cr_assert_not(raft_lease_valid(R(&tn, 1)), "expired after E - drift ticks");
    cr_assert_eq(raft_read_index(R(&tn, 1), 6), 0);
    tn_ready_all(&tn);
    cr_assert_null(read_of(&tn, 1, 6), "without a lease a read needs a round");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_client, no_lease_during_a_transfer)
{
    /* T§6.4.1 with T§3.10: a leader handing over leadership must not serve lease reads:
     * the target may win before the lease would have run out. */
    struct tn tn;
    lease_leader(&tn, 611);
    cr_assert(raft_lease_valid(R(&tn, 1)));
    cr_assert_eq(raft_transfer_leader(R(&tn, 1), 3), 0, "3 is cut off: the transfer waits");
    cr_assert_not(raft_lease_valid(R(&tn, 1)));
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_client, allocation_failure_in_raft_new_gives_enomem_and_leaks_nothing)
{
    /* raft.h (raft_new: TS_ENOMEM) / STYLE R8, R12: every allocation raft_new makes may
     * fail; each failure is reported and gives back everything. */
    struct raft_conf boot = {.n = 3};
    for (uint32_t i = 0; i < 3; i++) {
        boot.m[i] = (struct raft_member){.id = i + 1, .role = RAFT_VOTER};
    }
    struct ts_rand rnd;
    ts_rand_seed(&rnd, 612);
    int rc = TS_ENOMEM;
    long k = 0;
    for (; k < 1000 && rc == TS_ENOMEM; k++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), k);
        struct raft_config cfg;
        raft_config_default(&cfg);
        cfg.group_id = TN_GROUP_ID;
        cfg.id = 1;
        cfg.rand = &rnd;
        cfg.alloc = &fa.base;
        struct raft_initial init = {.bootstrap = &boot};
        struct raft *r = NULL;
        rc = raft_new(&cfg, &init, &r);
        if (rc == 0) {
            raft_free(r);
        } else {
            cr_assert_eq(rc, TS_ENOMEM, "countdown %ld", k);
            cr_assert_null(r);
        }
        cr_assert_eq(fa.live_bytes, 0, "countdown %ld: %ld bytes left", k, fa.live_bytes);
    }
    cr_assert_eq(rc, 0);
    cr_assert_gt(k, 1, "raft_new allocates, so a countdown of 0 failed");
}

/* A 999-byte string (and its terminator) that differs for every i below 2^16. */
static void entry_bytes(char *buf, int i)
{
    memset(buf, 'a' + i % 26, 999);
    buf[999] = 0;
    for (int b = 0; b < 4; b++) {
        buf[b] = (char)('A' + ((i >> (4 * b)) & 15));
    }
}

Test(raft_client, allocation_failure_in_propose_gives_enomem_and_changes_nothing)
{
    /* raft.h (raft_propose: TS_ENOMEM): a proposal that cannot allocate is refused and
     * leaves no trace; the ones accepted commit everywhere. Half the proposals (chosen
     * at random) run with the next allocation failing, until three were refused (a
     * proposal that needs no allocation succeeds either way). */
    struct tn tn;
    tn_init(&tn, 3, 613);
    start_and_elect(&tn);
    struct ts_failing_allocator *fa = &tn.node[1].alloc;
    struct ts_rand rnd;
    ts_rand_seed(&rnd, 613);
    uint32_t accepted = 0, refused = 0;
    char buf[1000];
    for (int i = 0; i < 4000 && refused < 3; i++) {
        raft_index last = raft_last_index(R(&tn, 1));
        entry_bytes(buf, i);
        fa->fail_after = ts_rand_chance(&rnd, 1, 2) ? fa->calls : -1;
        int rc = raft_propose(R(&tn, 1), buf, 999, NULL);
        fa->fail_after = -1;
        if (rc == TS_ENOMEM) {
            refused++;
            cr_assert_eq(raft_last_index(R(&tn, 1)), last, "proposal %d", i);
        } else {
            cr_assert_eq(rc, 0, "proposal %d", i);
            accepted++;
        }
        if (i % 64 == 63 || refused > 0) {
            tn_deliver_all(&tn);
        }
    }
    tn_deliver_all(&tn);
    cr_assert_eq(refused, 3, "raft_propose allocates now and then (refused %u, accepted %u)",
                 refused, accepted);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_eq(tn_applied_data_count(&tn, id), accepted);
    }
    tn_fini(&tn);
}

Test(raft_client, allocation_failure_in_step_gives_enomem_and_a_retry_works)
{
    /* raft.h (raft_step: TS_ENOMEM): a follower that cannot allocate for an APPEND refuses
     * it without changing its log; the same message stepped again is accepted. */
    struct tn tn;
    tn_init(&tn, 3, 614);
    start_and_elect(&tn);
    struct ts_failing_allocator *fa = &tn.node[2].alloc;
    char buf[1000];
    int failures = 0;
    for (int i = 0; i < 4000 && failures == 0; i++) {
        entry_bytes(buf, i);
        cr_assert_eq(tn_propose(&tn, 1, buf), 0);
        const struct raft_message *app = tn_find(&tn, 1, 2, RAFT_MSG_APPEND);
        cr_assert_not_null(app);
        raft_index last = raft_last_index(R(&tn, 2));
        fa->fail_after = fa->calls;
        int rc = raft_step(R(&tn, 2), app);
        fa->fail_after = -1;
        if (rc == TS_ENOMEM) {
            failures++;
            cr_assert_eq(raft_last_index(R(&tn, 2)), last, "entry %d", i);
            cr_assert_eq(raft_step(R(&tn, 2), app), 0, "the retry");
            cr_assert_eq(raft_last_index(R(&tn, 2)), last + 1);
        } else {
            cr_assert_eq(rc, 0, "entry %d", i);
        }
        tn_deliver_all(&tn);
    }
    cr_assert_eq(failures, 1, "appending allocates now and then");
    tn_fini(&tn);
}

/* Runs the allocation-failure scenario with node `victim`'s allocator failing every call
 * after `k` more have succeeded; returns the calls it made (for k = -1: never fails). */
static long memory_scenario(raft_id victim, long k)
{
    struct tn tn;
    tn_init(&tn, 3, 640);
    tn.cfg.check_quorum = true;
    tn.cfg.pre_vote = true;
    tn_start_elected(&tn);
    tn.enomem_ok = true;
    struct ts_failing_allocator *fa = &tn.node[victim].alloc;
    long start = fa->calls;
    fa->fail_after = k < 0 ? -1 : fa->calls + k;
    char buf[300];
    for (int i = 0; i < 24; i++) {
        raft_id l = tn_leader(&tn);
        memset(buf, 'a' + i % 26, sizeof buf - 1);
        buf[sizeof buf - 1] = 0;
        if (l != 0) {
            int rc = tn_propose(&tn, l, buf);
            cr_assert(rc == 0 || rc == TS_ENOMEM || rc == TS_ENOTLEADER, "k %ld: %d", k, rc);
        }
        if (l != 0 && i % 6 == 0) {
            (void)raft_read_index(R(&tn, l), (uint64_t)i + 1);
        }
        tn_run(&tn, 1);
    }
    long used = fa->calls - start;
    fa->fail_after = -1;
    raft_id l = tn_converge(&tn, 40 * E);
    cr_assert_neq(l, 0, "k %ld: a leader once memory is back", k);
    cr_assert_eq(tn_propose(&tn, l, "after"), 0);
    tn_run(&tn, 3);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_neq(tn_applied_find(&tn, id, "after"), 0, "k %ld: node %llu", k,
                      (unsigned long long)id);
    }
    tn_check(&tn);
    tn_fini(&tn); /* every byte given back */
    return used;
}

Test(raft_client, every_allocation_failure_point_is_survived)
{
    /* STYLE R8, R12, R21 (allocator failure on a countdown): whichever allocation fails,
     * on the leader or a follower, raft refuses that one input (TS_ENOMEM), drops a
     * message, or steps down; it never crashes, corrupts or leaks, and once memory is
     * back the group elects, commits and converges. */
    for (raft_id victim = 1; victim <= 2; victim++) {
        long calls = memory_scenario(victim, -1);
        cr_assert_gt(calls, 5, "the scenario allocates (%ld)", calls);
        for (long k = 0; k <= calls; k++) {
            memory_scenario(victim, k);
        }
    }
}
