/*
 * core/raft: quiescence (raft.h, "Many groups"; CockroachDB's technique for thousands of
 * idle groups per node): a settled group stops ticking and sending heartbeats, any
 * activity wakes it, raft_wake() lets the shard replace a dead leader, and a replica
 * that is behind never goes quiet. The thesis has no section on it; the safety it must
 * keep is that of T§3.4 (elections) and T§6.2 (leadership checks).
 */
#include "raft_testnet.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <string.h>

#define E 10u

static struct raft *R(struct tn *tn, raft_id id)
{
    return tn_raft(tn, id);
}

struct quiesce_watch {
    uint32_t quiesce_heartbeats;
    bool captured;
    struct raft_message first; /* the first quiesce heartbeat (no entries) */
};

static bool watch_quiesce(struct tn *tn, struct raft_message *m, void *ctx)
{
    struct quiesce_watch *w = ctx;
    if (m->type == RAFT_MSG_HEARTBEAT && m->quiesce) {
        w->quiesce_heartbeats++;
        if (!w->captured) {
            w->first = *m;
            w->captured = true;
        }
    }
    return false;
}

static bool all_quiesced(struct tn *tn)
{
    for (raft_id id = 1; id <= tn->n; id++) {
        if (tn->node[id].r != NULL && !raft_quiesced(tn->node[id].r)) {
            return false;
        }
    }
    return true;
}

/* Runs tick by tick (at most 2E) until every node is quiescent; returns the ticks. */
static uint32_t settle(struct tn *tn)
{
    uint32_t t = 0;
    while (!all_quiesced(tn) && t < 2 * E) {
        tn_run(tn, 1);
        t++;
    }
    cr_assert(all_quiesced(tn), "the group settled within %u ticks", 2 * E);
    return t;
}

/* 3 nodes, leader 1, "x" committed, then settled; the tap watches quiesce heartbeats. */
static void settled(struct tn *tn, struct quiesce_watch *w, uint64_t seed)
{
    tn_init(tn, 3, seed);
    tn_start(tn);
    cr_assert(tn_elect(tn, 1));
    cr_assert_eq(tn_propose(tn, 1, "x"), 0);
    tn_deliver_all(tn);
    tn_set_tap(tn, watch_quiesce, w);
    settle(tn);
}

static uint32_t total_sent(const struct tn *tn)
{
    uint32_t sum = 0;
    for (unsigned t = 0; t < RAFT_MSG_TYPES_; t++) {
        sum += tn->sent_early[t] + tn->sent_after_persist[t];
    }
    return sum;
}

Test(raft_quiesce, settled_group_quiesces)
{
    /* raft.h (Quiescence): a leader with nothing in flight, every peer caught up and told
     * the commit index, sends a last heartbeat marked quiesce and stops; followers whose
     * log matches stop too. */
    struct tn tn;
    struct quiesce_watch w = {0};
    settled(&tn, &w, 701);
    cr_assert_geq(w.quiesce_heartbeats, 2, "one to each follower");
    cr_assert_eq(w.first.from, 1);
    cr_assert_eq(w.first.commit, raft_commit_index(R(&tn, 1)));
    cr_assert_eq(raft_role_of(R(&tn, 1)), RAFT_LEADER, "still the leader");
    for (raft_id id = 2; id <= 3; id++) {
        cr_assert_eq(raft_leader(R(&tn, id)), 1);
        cr_assert_neq(tn_applied_find(&tn, id, "x"), 0);
    }
    tn_fini(&tn);
}

Test(raft_quiesce, ticks_do_nothing_while_quiescent)
{
    /* raft.h: raft_tick() on a quiescent group returns at once: no heartbeats, no
     * elections, no readies, however long. */
    struct tn tn;
    struct quiesce_watch w = {0};
    settled(&tn, &w, 702);
    uint32_t sent = total_sent(&tn);
    raft_term t = raft_term_of(R(&tn, 1));
    for (raft_id id = 1; id <= 3; id++) {
        uint64_t readies = tn.node[id].readies;
        tn_tick(&tn, id, 10 * E);
        cr_assert_eq(tn.node[id].readies, readies, "node %llu made a ready",
                     (unsigned long long)id);
        cr_assert_not(raft_has_ready(R(&tn, id)));
    }
    tn_deliver_all(&tn);
    cr_assert_eq(total_sent(&tn), sent, "nothing was sent");
    cr_assert_eq(raft_role_of(R(&tn, 1)), RAFT_LEADER);
    cr_assert_eq(raft_role_of(R(&tn, 2)), RAFT_FOLLOWER);
    cr_assert_eq(raft_term_of(R(&tn, 2)), t);
    tn_fini(&tn);
}

Test(raft_quiesce, proposal_wakes_leader_and_followers)
{
    /* raft.h: a proposal wakes the leader, its APPENDs wake the followers, the entry
     * commits everywhere, and the group settles again afterwards. */
    struct tn tn;
    struct quiesce_watch w = {0};
    settled(&tn, &w, 703);
    uint32_t before = w.quiesce_heartbeats;
    cr_assert_eq(tn_propose(&tn, 1, "wake"), 0);
    cr_assert_not(raft_quiesced(R(&tn, 1)));
    tn_deliver_all(&tn);
    cr_assert_not(raft_quiesced(R(&tn, 2)));
    cr_assert_not(raft_quiesced(R(&tn, 3)));
    tn_run(&tn, 1);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_neq(tn_applied_find(&tn, id, "wake"), 0);
    }
    settle(&tn);
    cr_assert_gt(w.quiesce_heartbeats, before, "quiesced again");
    tn_fini(&tn);
}

Test(raft_quiesce, wake_on_a_follower_whose_leader_died_leads_to_an_election)
{
    /* raft.h: a quiescent follower cannot notice a dead leader; the shard calls
     * raft_wake() and the follower times out and campaigns (T§3.4). Its vote request
     * wakes the other follower, which votes. */
    struct tn tn;
    struct quiesce_watch w = {0};
    settled(&tn, &w, 704);
    raft_term t = raft_term_of(R(&tn, 1));
    tn_stop(&tn, 1);
    tn_tick(&tn, 2, 3 * E);
    cr_assert_eq(raft_role_of(R(&tn, 2)), RAFT_FOLLOWER, "asleep: no campaign");
    raft_wake(R(&tn, 2));
    cr_assert_not(raft_quiesced(R(&tn, 2)));
    for (uint32_t i = 0; i < 4 * E && raft_role_of(R(&tn, 2)) != RAFT_LEADER; i++) {
        tn_tick(&tn, 2, 1);
        tn_deliver_all(&tn);
    }
    cr_assert_eq(raft_role_of(R(&tn, 2)), RAFT_LEADER);
    cr_assert_gt(raft_term_of(R(&tn, 2)), t);
    cr_assert_eq(raft_leader(R(&tn, 3)), 2);
    cr_assert_eq(tn_propose(&tn, 2, "new"), 0);
    tn_deliver_all(&tn);
    cr_assert_neq(tn_applied_find(&tn, 3, "new"), 0);
    tn_fini(&tn);
}

Test(raft_quiesce, wake_with_prevote_and_check_quorum_elects)
{
    /* raft.h with T§9.6 and T§6.2: the shard wakes every group whose leader's node it
     * lost; with PreVote and CheckQuorum the survivors still elect a leader within a
     * bound. */
    struct tn tn;
    tn_init(&tn, 3, 705);
    tn.cfg.pre_vote = true;
    tn.cfg.check_quorum = true;
    tn_start_elected(&tn);
    cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    tn_deliver_all(&tn);
    settle(&tn);
    tn_stop(&tn, 1);
    raft_id leader = tn_converge(&tn, 30 * E);
    cr_assert(leader == 2 || leader == 3, "leader %llu", (unsigned long long)leader);
    tn_fini(&tn);
}

Test(raft_quiesce, leader_with_a_lagging_follower_stays_awake)
{
    /* raft.h: the leader quiesces only when every peer is caught up; with follower 3 cut
     * off and behind it keeps ticking and sends no quiesce heartbeat (so 3 can still
     * notice it, and catch up once it is reachable). */
    struct tn tn;
    struct quiesce_watch w = {0};
    tn_init(&tn, 3, 706);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    tn_cut(&tn, 1, 3);
    raft_report_unreachable(R(&tn, 1), 3);
    cr_assert_eq(tn_propose(&tn, 1, "y"), 0);
    tn_deliver_all(&tn);
    tn_set_tap(&tn, watch_quiesce, &w);
    for (uint32_t t = 0; t < 5 * E; t++) {
        tn_tick(&tn, 1, 1);
        tn_tick(&tn, 2, 1);
        tn_deliver_all(&tn);
        cr_assert_not(raft_quiesced(R(&tn, 1)), "tick %u", t);
    }
    cr_assert_eq(w.quiesce_heartbeats, 0);
    cr_assert_gt(tn.sent[1][2][RAFT_MSG_HEARTBEAT], 0, "heartbeats go on");
    tn_set_tap(&tn, NULL, NULL);
    tn_heal(&tn);
    settle(&tn);
    cr_assert_neq(tn_applied_find(&tn, 3, "y"), 0, "caught up, then settled");
    tn_fini(&tn);
}

Test(raft_quiesce, follower_behind_the_quiesce_heartbeat_stays_awake)
{
    /* raft.h: a follower stops on a quiesce heartbeat only if its log matches the
     * leader's. A (delayed or reordered) quiesce heartbeat naming a commit index beyond
     * what follower 3 holds must not put it to sleep, while follower 2, which holds
     * everything, may sleep on the same heartbeat. */
    struct tn tn;
    struct quiesce_watch w = {0};
    settled(&tn, &w, 707);
    cr_assert(w.captured);
    tn_set_tap(&tn, NULL, NULL);
    tn_cut(&tn, 1, 3);
    cr_assert_eq(tn_propose(&tn, 1, "z"), 0);
    tn_deliver_all(&tn);
    raft_index commit = raft_commit_index(R(&tn, 1));
    cr_assert_eq(raft_last_index(R(&tn, 2)), commit);
    cr_assert_lt(raft_last_index(R(&tn, 3)), commit);
    raft_wake(R(&tn, 3)); /* as the shard would: 3 slept through "z", cut off */
    struct raft_message hb = w.first;
    hb.commit = commit;
    hb.to = 3;
    tn_step(&tn, 3, &hb);
    cr_assert_not(raft_quiesced(R(&tn, 3)), "3 is behind: it must keep its clock");
    hb.to = 2;
    tn_step(&tn, 2, &hb);
    cr_assert(raft_quiesced(R(&tn, 2)), "2 matches: it may sleep");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_quiesce, quiescent_leader_holds_no_lease)
{
    /* T§6.4.1: a lease is counted in ticks, and a quiescent leader's ticks stand still
     * while time goes on, so it must not serve lease reads; once woken (here by a read),
     * only a heartbeat round acknowledged after the wake restores the lease. */
    struct tn tn;
    struct quiesce_watch w = {0};
    tn_init(&tn, 3, 708);
    tn.cfg.check_quorum = true;
    tn.cfg.lease_reads = true;
    tn_start_elected(&tn);
    cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_read_index(R(&tn, 1), 1), 0);
    tn_deliver_all(&tn);
    cr_assert(raft_lease_valid(R(&tn, 1)), "awake, the leader holds a lease");
    tn_set_tap(&tn, watch_quiesce, &w);
    settle(&tn);
    cr_assert_not(raft_lease_valid(R(&tn, 1)), "no lease while quiescent");
    size_t reads = tn.node[1].n_reads;
    cr_assert_eq(raft_read_index(R(&tn, 1), 9), 0);
    cr_assert_not(raft_quiesced(R(&tn, 1)), "a read wakes the leader");
    cr_assert_not(raft_lease_valid(R(&tn, 1)), "rounds from before the wake do not count");
    tn_ready_all(&tn);
    cr_assert_eq(tn.node[1].n_reads, reads, "the read waits for a round");
    tn_deliver_all(&tn);
    cr_assert_eq(tn.node[1].n_reads, reads + 1);
    cr_assert_eq(tn.node[1].reads[reads].ctx, 9);
    cr_assert(raft_lease_valid(R(&tn, 1)), "a round acknowledged after the wake");
    tn_fini(&tn);
}
