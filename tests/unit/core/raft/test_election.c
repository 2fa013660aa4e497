/*
 * core/raft: leader election (P§5.2 / T§3.4), the election restriction (P§5.4.1 /
 * T§3.6.1), PreVote (T§9.6), CheckQuorum (T§6.2) and the leader stickiness it gives
 * (T§4.2.3), and leadership transfer (T§3.10).
 */
#include "raft_testnet.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <string.h>

#define E 10u /* election_ticks of the test network */

static enum raft_role role(struct tn *tn, raft_id id)
{
    return raft_role_of(tn_raft(tn, id));
}

static raft_term term(struct tn *tn, raft_id id)
{
    return raft_term_of(tn_raft(tn, id));
}

/* A VOTE (or PREVOTE) request from `from` whose log ends at (log_term, index). */
static struct raft_message vote_req(uint8_t type, raft_id from, raft_id to, raft_term t,
                                    raft_term log_term, raft_index index)
{
    struct raft_message m = tn_msg(type, from, to, t);
    m.log_term = log_term;
    m.index = index;
    return m;
}

/* A VOTE request from `from` as up to date as node `like`'s log. */
static struct raft_message vote_like(struct tn *tn, raft_id from, raft_id to, raft_term t,
                                     raft_id like)
{
    struct raft *r = tn_raft(tn, like);
    raft_index last = raft_last_index(r);
    return vote_req(RAFT_MSG_VOTE, from, to, t, raft_term_at(r, last), last);
}

/* Ticks node id one tick at a time until it leaves the follower role; returns the ticks. */
static uint32_t ticks_to_campaign(struct tn *tn, raft_id id, uint32_t max)
{
    uint32_t t = 0;
    while (role(tn, id) == RAFT_FOLLOWER && t < max) {
        tn_tick(tn, id, 1);
        t++;
    }
    return t;
}

Test(raft_election, follower_campaigns_after_its_election_timeout)
{
    /* P§5.2 / T§3.4: a follower that hears nothing for its randomized election timeout
     * (in [election, 2*election) ticks) becomes a candidate: it increments its term,
     * votes for itself (persisted before anything is sent that depends on it) and asks
     * every peer for a vote, naming its last entry. */
    struct tn tn;
    tn_init(&tn, 3, 101);
    tn_start(&tn);
    struct raft *r = tn_raft(&tn, 1);
    raft_term t0 = raft_term_of(r);
    cr_assert_eq(raft_role_of(r), RAFT_FOLLOWER);
    cr_assert_eq(raft_leader(r), 0);
    tn_tick(&tn, 1, E - 1);
    cr_assert_eq(raft_role_of(r), RAFT_FOLLOWER, "no campaign before election_ticks");
    cr_assert_eq(raft_term_of(r), t0);
    cr_assert_eq(tn_queued(&tn, 1, 0, RAFT_MSG_VOTE), 0);
    uint32_t t = (E - 1) + ticks_to_campaign(&tn, 1, E);
    cr_assert_eq(raft_role_of(r), RAFT_CANDIDATE, "campaigned by 2*election-1 ticks (%u)", t);
    cr_assert_eq(raft_term_of(r), t0 + 1);
    cr_assert_eq(tn.node[1].st.hs.term, t0 + 1, "the new term is persisted");
    cr_assert_eq(tn.node[1].st.hs.vote, 1, "the vote for itself is persisted");
    raft_index last = raft_last_index(r);
    for (raft_id to = 2; to <= 3; to++) {
        const struct raft_message *m = tn_find(&tn, 1, to, RAFT_MSG_VOTE);
        cr_assert_not_null(m, "a VOTE to %llu", (unsigned long long)to);
        cr_assert_eq(m->term, t0 + 1);
        cr_assert_eq(m->index, last);
        cr_assert_eq(m->log_term, raft_term_at(r, last));
    }
    tn_fini(&tn);
}

/* The VOTE_RESP node `from` queued for `to`; fails if there is none. */
static bool granted(struct tn *tn, raft_id from, raft_id to)
{
    const struct raft_message *m = tn_find(tn, from, to, RAFT_MSG_VOTE_RESP);
    cr_assert_not_null(m, "node %llu answered %llu", (unsigned long long)from,
                       (unsigned long long)to);
    return !m->reject;
}

Test(raft_election, votes_at_most_once_per_term)
{
    /* P§5.2 / T§3.4 (Figure 3.1, RequestVote): a server votes for at most one candidate
     * in a term, first come first served; a repeated request from the candidate it voted
     * for is granted again. The vote is persisted, and the response comes only in
     * msgs_after_persist (T§10.2.1). */
    struct tn tn;
    tn_init(&tn, 3, 102);
    tn_start(&tn);
    raft_term t = term(&tn, 2) + 1;
    struct raft_message from1 = vote_like(&tn, 1, 2, t, 2);
    struct raft_message from3 = vote_like(&tn, 3, 2, t, 2);
    tn_step(&tn, 2, &from1);
    cr_assert(granted(&tn, 2, 1));
    cr_assert_eq(tn.node[2].st.hs.term, t);
    cr_assert_eq(tn.node[2].st.hs.vote, 1);
    cr_assert_eq(tn.sent_early[RAFT_MSG_VOTE_RESP], 0, "a vote is never sent before persist");
    cr_assert_eq(tn.sent_after_persist[RAFT_MSG_VOTE_RESP], 1);
    tn_drop_queue(&tn);
    tn_step(&tn, 2, &from3);
    cr_assert_not(granted(&tn, 2, 3), "a second candidate in the same term is refused");
    cr_assert_eq(tn.node[2].st.hs.vote, 1);
    tn_drop_queue(&tn);
    tn_step(&tn, 2, &from1);
    cr_assert(granted(&tn, 2, 1), "the same candidate asking again is granted");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_election, candidate_wins_with_a_majority)
{
    /* P§5.2 / T§3.4: a candidate wins once it has votes from a majority of the voters
     * (3 of 5), and the others learn the leader from its first messages. */
    struct tn tn;
    tn_init(&tn, 5, 103);
    tn_start(&tn);
    raft_term t0 = term(&tn, 1);
    tn_isolate(&tn, 4);
    tn_isolate(&tn, 5);
    cr_assert(tn_elect(&tn, 1));
    cr_assert_eq(term(&tn, 1), t0 + 1, "won in the first election");
    for (raft_id id = 2; id <= 3; id++) {
        cr_assert_eq(role(&tn, id), RAFT_FOLLOWER);
        cr_assert_eq(term(&tn, id), t0 + 1);
        cr_assert_eq(raft_leader(tn_raft(&tn, id)), 1);
    }
    cr_assert_eq(term(&tn, 4), t0, "an isolated node saw nothing");
    tn_fini(&tn);
}

Test(raft_election, candidate_without_a_majority_never_wins)
{
    /* P§5.2 / T§3.4: two votes of five (its own and one more) do not make a leader; the
     * candidate keeps campaigning in new terms. */
    struct tn tn;
    tn_init(&tn, 5, 104);
    tn_start(&tn);
    raft_term t0 = term(&tn, 1);
    for (raft_id id = 3; id <= 5; id++) {
        tn_isolate(&tn, id);
    }
    for (uint32_t t = 0; t < 6 * E; t++) {
        tn_tick(&tn, 1, 1);
        tn_deliver_all(&tn);
        cr_assert_neq(role(&tn, 1), RAFT_LEADER, "leader with 2 of 5 votes");
    }
    cr_assert_eq(role(&tn, 1), RAFT_CANDIDATE);
    cr_assert_geq(term(&tn, 1), t0 + 2, "campaigned again after each timeout");
    tn_fini(&tn);
}

Test(raft_election, split_vote_times_out_and_retries)
{
    /* P§5.2 / T§3.4: when votes split so that no candidate has a majority, each times out
     * after a new randomized timeout and starts a new election in the next term. Four
     * nodes: 3 votes for 1, 4 votes for 2. */
    struct tn tn;
    tn_init(&tn, 4, 105);
    tn_start(&tn);
    raft_term t0 = term(&tn, 1);
    tn_cut(&tn, 1, 2);
    tn_cut(&tn, 1, 4);
    tn_cut(&tn, 2, 3);
    ticks_to_campaign(&tn, 1, 2 * E);
    ticks_to_campaign(&tn, 2, 2 * E);
    tn_deliver_all(&tn);
    cr_assert_eq(role(&tn, 1), RAFT_CANDIDATE);
    cr_assert_eq(role(&tn, 2), RAFT_CANDIDATE);
    cr_assert_eq(term(&tn, 1), t0 + 1);
    cr_assert_eq(term(&tn, 2), t0 + 1);
    cr_assert_eq(tn.node[3].st.hs.vote, 1);
    cr_assert_eq(tn.node[4].st.hs.vote, 2);
    tn_heal(&tn);
    uint32_t t = 0;
    while (term(&tn, 1) == t0 + 1 && t < 2 * E) {
        tn_tick(&tn, 1, 1);
        t++;
    }
    cr_assert(t >= E && t < 2 * E, "the retry came after a timeout in [E, 2E): %u", t);
    cr_assert_eq(term(&tn, 1), t0 + 2);
    tn_deliver_all(&tn);
    cr_assert_eq(role(&tn, 1), RAFT_LEADER, "the retry wins");
    cr_assert_eq(role(&tn, 2), RAFT_FOLLOWER);
    cr_assert_eq(term(&tn, 2), t0 + 2);
    tn_fini(&tn);
}

/* Ticks to the first campaign of nodes 1..5, then ten successive campaign timeouts of
 * node 1, all isolated; every value must lie in [E, 2E). */
static void timeouts(uint64_t seed, uint32_t out[15])
{
    struct tn tn;
    tn_init(&tn, 5, seed);
    tn_start(&tn);
    for (raft_id id = 1; id <= 5; id++) {
        tn_isolate(&tn, id);
        out[id - 1] = ticks_to_campaign(&tn, id, 2 * E);
    }
    for (int i = 0; i < 10; i++) {
        raft_term t0 = term(&tn, 1);
        uint32_t t = 0;
        while (term(&tn, 1) == t0 && t < 2 * E) {
            tn_tick(&tn, 1, 1);
            t++;
        }
        out[5 + i] = t;
    }
    for (int i = 0; i < 15; i++) {
        cr_assert(out[i] >= E && out[i] < 2 * E, "seed %llu: timeout %d is %u ticks",
                  (unsigned long long)seed, i, out[i]);
    }
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_election, randomized_timeouts_are_spread_and_seeded)
{
    /* P§5.2 / T§3.4: election timeouts are drawn at random from [E, 2E) so that split
     * votes are rare; the randomness is the caller's seeded generator, so the same seed
     * gives the same timeouts and another seed others. */
    uint32_t a[15], b[15], c[15];
    timeouts(106, a);
    timeouts(106, b);
    timeouts(107, c);
    cr_assert_arr_eq(a, b, sizeof(a), "same seed, same timeouts");
    cr_assert(memcmp(a, c, sizeof(a)) != 0, "another seed, other timeouts");
    uint32_t distinct = 0;
    for (int i = 0; i < 15; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++) {
            seen |= a[j] == a[i];
        }
        distinct += !seen;
    }
    cr_assert_geq(distinct, 3, "timeouts differ between nodes and campaigns");
}

Test(raft_election, higher_term_makes_a_leader_step_down)
{
    /* P§5.1 / T§3.3: a server that sees a higher term adopts it and, if it was leader,
     * reverts to follower. An isolated old leader learns of the new one and its
     * uncommitted entry is replaced (P§5.3). */
    struct tn tn;
    tn_init(&tn, 3, 108);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    raft_term t = term(&tn, 1);
    tn_isolate(&tn, 1);
    cr_assert_eq(tn_propose(&tn, 1, "lost"), 0);
    cr_assert(tn_elect(&tn, 2));
    cr_assert_eq(term(&tn, 2), t + 1);
    cr_assert_eq(role(&tn, 1), RAFT_LEADER, "the old leader has heard nothing yet");
    tn_heal(&tn);
    tn_tick(&tn, 2, 1);
    tn_deliver_all(&tn);
    cr_assert_eq(role(&tn, 1), RAFT_FOLLOWER);
    cr_assert_eq(term(&tn, 1), t + 1);
    cr_assert_eq(raft_leader(tn_raft(&tn, 1)), 2);
    cr_assert_eq(tn_propose(&tn, 2, "kept"), 0);
    tn_run(&tn, 3);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_eq(tn_applied_find(&tn, id, "lost"), 0);
        cr_assert_neq(tn_applied_find(&tn, id, "kept"), 0);
    }
    tn_fini(&tn);
}

struct vote_case {
    raft_term log_term;
    raft_index index;
    bool grant;
};

Test(raft_election, vote_refused_to_a_less_up_to_date_log)
{
    /* P§5.4.1 / T§3.6.1: a vote is granted only if the candidate's log is at least as up
     * to date: a later last term wins; with equal last terms the longer log wins. The
     * voter's log: terms 1 1 2 2 (last entry 4 of term 2). */
    static const raft_term terms[] = {1, 1, 2, 2};
    static const struct vote_case cases[] = {
        {1, 10, false}, /* longer, but an older last term */
        {2, 3, false},  /* same last term, shorter */
        {2, 4, true},   /* identical */
        {2, 5, true},   /* same last term, longer */
        {3, 2, true},   /* later last term, shorter */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tn tn;
        tn_init(&tn, 3, 109 + i);
        tn_start_state(&tn, 1, 2, 0, 1, terms, 4);
        struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 5, cases[i].log_term, cases[i].index);
        tn_step(&tn, 1, &m);
        cr_assert_eq(granted(&tn, 1, 2), cases[i].grant, "case %zu", i);
        cr_assert_eq(term(&tn, 1), 5, "case %zu: the higher term is adopted either way", i);
        cr_assert_eq(tn.node[1].st.hs.vote, cases[i].grant ? 2 : 0, "case %zu", i);
        tn_drop_queue(&tn);
        tn_fini(&tn);
    }
}

Test(raft_election, prevote_is_judged_like_a_vote_but_changes_nothing)
{
    /* T§9.6: a PreVote is answered as a vote would be (the election restriction of
     * P§5.4.1 applies), but the receiver neither adopts the proposed term nor records a
     * vote. */
    static const raft_term terms[] = {1, 1, 2, 2};
    struct tn tn;
    tn_init(&tn, 3, 115);
    tn.cfg.pre_vote = true;
    tn_start_state(&tn, 1, 2, 0, 1, terms, 4);
    struct raft_message stale = vote_req(RAFT_MSG_PREVOTE, 2, 1, 3, 1, 9);
    tn_step(&tn, 1, &stale);
    const struct raft_message *m = tn_find(&tn, 1, 2, RAFT_MSG_PREVOTE_RESP);
    cr_assert_not_null(m);
    cr_assert(m->reject, "a stale log gets no pre-vote");
    tn_drop_queue(&tn);
    struct raft_message fresh = vote_req(RAFT_MSG_PREVOTE, 3, 1, 3, 2, 4);
    tn_step(&tn, 1, &fresh);
    m = tn_find(&tn, 1, 3, RAFT_MSG_PREVOTE_RESP);
    cr_assert_not_null(m);
    cr_assert_not(m->reject, "an up-to-date log gets the pre-vote");
    cr_assert_eq(term(&tn, 1), 2, "a pre-vote does not change the term");
    cr_assert_eq(tn.node[1].st.hs.term, 2);
    cr_assert_eq(tn.node[1].st.hs.vote, 0, "a pre-vote is not a vote");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_election, prevote_partitioned_node_keeps_its_term_and_rejoins_quietly)
{
    /* T§9.6: with PreVote a partitioned server keeps asking for pre-votes but never
     * raises its term, so when the partition heals it rejoins without deposing the
     * leader (its log is behind, so the others would refuse it anyway). */
    struct tn tn;
    tn_init(&tn, 3, 116);
    tn.cfg.pre_vote = true;
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    raft_term t = term(&tn, 1);
    tn_isolate(&tn, 3);
    raft_wake(tn_raft(&tn, 3));
    cr_assert_eq(tn_propose(&tn, 1, "during"), 0);
    tn_deliver_all(&tn);
    bool was_precandidate = false;
    for (uint32_t i = 0; i < 10 * E; i++) {
        tn_tick(&tn, 3, 1);
        was_precandidate |= role(&tn, 3) == RAFT_PRECANDIDATE;
        cr_assert_neq(role(&tn, 3), RAFT_CANDIDATE, "no real campaign without pre-votes");
    }
    cr_assert(was_precandidate, "the partitioned node tried a pre-vote");
    cr_assert_eq(term(&tn, 3), t, "its term did not move");
    cr_assert_eq(tn.node[3].st.hs.term, t);
    cr_assert_gt(tn.sent[3][1][RAFT_MSG_PREVOTE], 0);
    cr_assert_eq(tn.sent[3][1][RAFT_MSG_VOTE], 0);
    tn_heal(&tn);
    tn_run(&tn, 3);
    cr_assert_eq(role(&tn, 1), RAFT_LEADER, "the leader was not disrupted");
    cr_assert_eq(term(&tn, 1), t);
    cr_assert_eq(raft_leader(tn_raft(&tn, 3)), 1);
    cr_assert_eq(term(&tn, 3), t);
    cr_assert_neq(tn_applied_find(&tn, 3, "during"), 0, "and it caught up");
    tn_fini(&tn);
}

Test(raft_election, check_quorum_isolated_leader_steps_down)
{
    /* T§6.2: with CheckQuorum a leader that has not heard from a quorum within an
     * election timeout steps down (clients can then find the real leader). It does so
     * without raising its term. (It has a proposal in flight, so it cannot quiesce: a
     * quiescent leader does not tick, raft.h.) */
    struct tn tn;
    tn_start_check_quorum(&tn, 3, 117);
    raft_term t = term(&tn, 1);
    tn_isolate(&tn, 1);
    cr_assert_eq(tn_propose(&tn, 1, "stranded"), 0);
    uint32_t ticks = 0;
    while (role(&tn, 1) == RAFT_LEADER && ticks < 3 * E) {
        tn_tick(&tn, 1, 1);
        ticks++;
    }
    cr_assert_eq(role(&tn, 1), RAFT_FOLLOWER, "stepped down");
    cr_assert(ticks >= E && ticks <= 2 * E, "after one to two election timeouts: %u", ticks);
    cr_assert_eq(term(&tn, 1), t);
    cr_assert_eq(raft_leader(tn_raft(&tn, 1)), 0);
    tn_fini(&tn);
}

Test(raft_election, check_quorum_leader_with_a_quorum_stays)
{
    /* T§6.2: a leader that hears from a quorum (here itself and node 2; node 3 is cut
     * off) keeps its leadership through many election timeouts. */
    struct tn tn;
    tn_start_check_quorum(&tn, 3, 118);
    raft_term t = term(&tn, 1);
    tn_cut(&tn, 1, 3);
    tn_run(&tn, 5 * E);
    cr_assert_eq(role(&tn, 1), RAFT_LEADER);
    cr_assert_eq(term(&tn, 1), t);
    cr_assert_eq(raft_leader(tn_raft(&tn, 2)), 1);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_election, check_quorum_follower_ignores_votes_within_the_lease)
{
    /* T§4.2.3 (with T§6.2): a server that heard from a current leader within the
     * minimum election timeout ignores a vote request: it neither adopts the term nor
     * grants. A request marked `force` (a leadership transfer, T§3.10) is honoured. */
    struct tn tn;
    tn_start_check_quorum(&tn, 3, 119);
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    raft_term t = term(&tn, 2);
    struct raft_message m = vote_like(&tn, 3, 2, t + 1, 2);
    tn_step(&tn, 2, &m);
    const struct raft_message *resp = tn_find(&tn, 2, 3, RAFT_MSG_VOTE_RESP);
    cr_assert(resp == NULL || resp->reject, "no vote within the lease");
    cr_assert_eq(term(&tn, 2), t, "the term was not adopted");
    cr_assert_eq(tn.node[2].st.hs.vote, 1);
    cr_assert_eq(raft_leader(tn_raft(&tn, 2)), 1);
    tn_drop_queue(&tn);
    m.force = true;
    tn_step(&tn, 2, &m);
    cr_assert(granted(&tn, 2, 3), "a transfer's vote ignores the lease");
    cr_assert_eq(term(&tn, 2), t + 1);
    cr_assert_eq(tn.node[2].st.hs.vote, 3);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_election, check_quorum_follower_votes_after_the_lease)
{
    /* T§4.2.3: once an election timeout passed without word from the leader, the
     * follower takes vote requests again. */
    struct tn tn;
    tn_start_check_quorum(&tn, 3, 120);
    raft_term t = term(&tn, 2);
    tn_isolate(&tn, 1);
    raft_wake(tn_raft(&tn, 2));
    tn_tick(&tn, 2, E);
    tn_drop_queue(&tn);
    struct raft_message m = vote_like(&tn, 3, 2, t + 2, 2);
    tn_step(&tn, 2, &m);
    cr_assert(granted(&tn, 2, 3));
    cr_assert_eq(term(&tn, 2), t + 2);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

/* After a scenario: every node follows one leader in one term (within 30 election
 * timeouts), that leader is not `not_leader` (whose log is stale), and a new proposal
 * commits on every node. */
static void assert_recovers(struct tn *tn, raft_id not_leader, raft_term term_min)
{
    raft_id leader = tn_converge(tn, 30 * E);
    cr_assert_neq(leader, 0, "the group has one leader again");
    cr_assert_neq(leader, not_leader, "a stale log cannot lead");
    cr_assert_geq(term(tn, leader), term_min);
    cr_assert_eq(tn_propose(tn, leader, "after"), 0);
    tn_deliver_all(tn);
    tn_run(tn, 2);
    for (raft_id id = 1; id <= tn->n; id++) {
        cr_assert_neq(tn_applied_find(tn, id, "after"), 0, "node %llu applied it",
                      (unsigned long long)id);
    }
}

/* Leader 1 commits three entries while node 3 is cut off; node 3 misses them. */
static raft_term stale_node_3(struct tn *tn)
{
    tn_start(tn);
    tn_age(tn, 1, E);
    cr_assert(tn_elect(tn, 1));
    tn_isolate(tn, 3);
    raft_wake(tn_raft(tn, 3));
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tn_propose(tn, 1, i == 0 ? "a" : i == 1 ? "b" : "c"), 0);
    }
    tn_deliver_all(tn);
    cr_assert_eq(tn_applied_find(tn, 3, "c"), 0);
    return term(tn, 1);
}

Test(raft_election, prevote_and_check_quorum_stale_node_with_higher_term_rejoins)
{
    /* T§9.6 with T§6.2 (etcd's TestPreVoteWithCheckQuorum family): node 3 comes back
     * with a higher term than the leader's but a stale log (it campaigned while cut
     * off, before PreVote was turned on). It can win no election, and the others ignore
     * its requests within their lease; the group must still end with one leader that all
     * three follow, within a bound, and commit. */
    struct tn tn;
    tn_init(&tn, 3, 121);
    tn.cfg.pre_vote = true;
    tn.cfg.check_quorum = true;
    raft_term t = stale_node_3(&tn);
    tn_stop(&tn, 3);
    tn.node[3].st.hs.term = t + 5;
    tn.node[3].st.hs.vote = 3;
    tn_restart(&tn, 3);
    cr_assert_eq(term(&tn, 3), t + 5);
    tn_heal(&tn);
    assert_recovers(&tn, 3, t + 5);
    tn_fini(&tn);
}

Test(raft_election, check_quorum_frees_a_stuck_candidate)
{
    /* T§6.2 (etcd's TestFreeStuckCandidateWithCheckQuorum): without PreVote, cut-off node
     * 3 campaigns again and again and raises its term; with CheckQuorum the others
     * ignore its votes within their lease. When it returns, the leader's heartbeats at
     * the lower term must lead to an election at a higher term (which 3 cannot win), so
     * that 3 rejoins and the group commits. */
    struct tn tn;
    tn_init(&tn, 3, 122);
    tn.cfg.check_quorum = true;
    raft_term t = stale_node_3(&tn);
    tn_tick(&tn, 3, 6 * E);
    cr_assert_eq(role(&tn, 3), RAFT_CANDIDATE);
    cr_assert_geq(term(&tn, 3), t + 2, "campaigned at least twice");
    raft_term stuck = term(&tn, 3);
    tn_drop_queue(&tn);
    tn_heal(&tn);
    assert_recovers(&tn, 3, stuck);
    tn_fini(&tn);
}

Test(raft_election, prevote_and_check_quorum_followers_replace_an_isolated_leader)
{
    /* T§9.6 with T§6.2: when the leader is cut off, the two followers (whose leases
     * expire) pre-vote, then vote, and elect one of them in the next term; the old leader
     * steps down by CheckQuorum and follows the new one after the partition heals. */
    struct tn tn;
    tn_init(&tn, 3, 123);
    tn.cfg.pre_vote = true;
    tn.cfg.check_quorum = true;
    tn_start_elected(&tn);
    raft_term t = term(&tn, 1);
    tn_isolate(&tn, 1);
    cr_assert_eq(tn_propose(&tn, 1, "stranded"), 0, "work keeps the old leader awake");
    tn_wake_all(&tn);
    raft_id leader = 0;
    for (uint32_t i = 0; i < 30 * E && leader == 0; i++) {
        tn_run(&tn, 1);
        leader = role(&tn, 2) == RAFT_LEADER ? 2 : role(&tn, 3) == RAFT_LEADER ? 3 : 0;
    }
    cr_assert_neq(leader, 0, "2 or 3 became leader");
    cr_assert_geq(term(&tn, leader), t + 1);
    tn_run(&tn, 2 * E);
    cr_assert_eq(role(&tn, 1), RAFT_FOLLOWER, "the old leader stepped down (CheckQuorum)");
    cr_assert_eq(term(&tn, 1), t, "alone, with pre-votes, it never raised its term");
    tn_heal(&tn);
    assert_recovers(&tn, 0, t + 1);
    cr_assert_eq(tn_leader(&tn), leader);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_eq(tn_applied_find(&tn, id, "stranded"), 0, "never committed");
    }
    tn_fini(&tn);
}

Test(raft_election, transfer_timeout_now_campaigns_at_once_within_the_lease)
{
    /* T§3.10: the leader sends TimeoutNow to an up-to-date target, which campaigns at
     * once (no waiting for a timeout, no pre-vote) and, its requests marked as a
     * transfer, wins even though the voters heard from the leader within their lease. */
    struct tn tn;
    tn_init(&tn, 3, 124);
    tn.cfg.pre_vote = true;
    tn.cfg.check_quorum = true;
    tn_start_elected(&tn);
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    raft_term t = term(&tn, 1);
    cr_assert_eq(raft_transfer_leader(tn_raft(&tn, 1), 2), 0);
    tn_ready_all(&tn);
    cr_assert_not_null(tn_find(&tn, 1, 2, RAFT_MSG_TIMEOUT_NOW), "sent at once: 2 is caught up");
    tn_deliver_all(&tn);
    cr_assert_eq(role(&tn, 2), RAFT_LEADER, "won without a tick");
    cr_assert_eq(term(&tn, 2), t + 1);
    cr_assert_eq(role(&tn, 1), RAFT_FOLLOWER);
    cr_assert_eq(raft_leader(tn_raft(&tn, 1)), 2);
    cr_assert_eq(raft_leader(tn_raft(&tn, 3)), 2);
    tn_fini(&tn);
}

struct transfer_watch {
    bool sent;
    bool caught_up;
};

static bool watch_timeout_now(struct tn *tn, struct raft_message *m, void *ctx)
{
    struct transfer_watch *w = ctx;
    if (m->type == RAFT_MSG_TIMEOUT_NOW) {
        w->sent = true;
        w->caught_up = raft_last_index(tn_raft(tn, m->to)) == raft_last_index(tn_raft(tn, 1));
    }
    return false;
}

Test(raft_election, transfer_to_a_lagging_follower_catches_it_up_first)
{
    /* T§3.10: before TimeoutNow the leader brings the target's log up to date, so the
     * target can win the election. */
    struct tn tn;
    tn_init(&tn, 3, 125);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    tn_cut(&tn, 1, 3);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    }
    tn_deliver_all(&tn);
    cr_assert_lt(raft_last_index(tn_raft(&tn, 3)), raft_last_index(tn_raft(&tn, 1)));
    tn_heal(&tn);
    struct transfer_watch w = {0};
    tn_set_tap(&tn, watch_timeout_now, &w);
    cr_assert_eq(raft_transfer_leader(tn_raft(&tn, 1), 3), 0);
    tn_ready_all(&tn);
    cr_assert_null(tn_find(&tn, 1, 3, RAFT_MSG_TIMEOUT_NOW), "not before 3 is caught up");
    for (uint32_t i = 0; i < 3 * E && role(&tn, 3) != RAFT_LEADER; i++) {
        tn_run(&tn, 1);
    }
    cr_assert(w.sent);
    cr_assert(w.caught_up, "TimeoutNow reached 3 only once its log matched the leader's");
    cr_assert_eq(role(&tn, 3), RAFT_LEADER);
    tn_fini(&tn);
}

Test(raft_election, transfer_blocks_proposals_and_aborts_after_an_election_timeout)
{
    /* T§3.10: while a transfer is in progress the leader refuses proposals
     * (TS_EUNAVAIL); if the target does not take over within an election timeout the
     * leader aborts the transfer and serves again. */
    struct tn tn;
    tn_init(&tn, 3, 126);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    raft_term t = term(&tn, 1);
    tn_isolate(&tn, 3);
    cr_assert_eq(raft_transfer_leader(tn_raft(&tn, 1), 3), 0);
    cr_assert_eq(tn_propose(&tn, 1, "x"), TS_EUNAVAIL);
    for (uint32_t i = 0; i < E / 2; i++) {
        tn_tick(&tn, 1, 1);
        tn_deliver_all(&tn);
    }
    cr_assert_eq(tn_propose(&tn, 1, "x"), TS_EUNAVAIL, "still transferring");
    for (uint32_t i = 0; i < 2 * E; i++) {
        tn_tick(&tn, 1, 1);
        tn_deliver_all(&tn);
    }
    cr_assert_eq(role(&tn, 1), RAFT_LEADER);
    cr_assert_eq(term(&tn, 1), t);
    cr_assert_eq(tn_propose(&tn, 1, "y"), 0, "the transfer was aborted");
    tn_deliver_all(&tn);
    cr_assert_neq(tn_applied_find(&tn, 2, "y"), 0);
    cr_assert_eq(tn_applied_find(&tn, 2, "x"), 0);
    tn_fini(&tn);
}
