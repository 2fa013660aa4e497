/*
 * core/raft: safety (P§5.4 / T§3.6): commitment only by counting replicas of an entry
 * of the current term (P§5.4.2, Figure 8), leader completeness, durable term and vote
 * across restarts (T§3.8 / T§10.2.1), and committed entries surviving leader changes
 * and restarts.
 */
#include "raft_testnet.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define E 10u

static struct raft *R(struct tn *tn, raft_id id)
{
    return tn_raft(tn, id);
}

/* Figure 8 (P§5.4.2 / T§3.6.2), state (b): S1 led term 2 and put entry 2 on S2; S5 led
 * term 3 with the votes of S3, S4 and put its own entry 2 (term 3) on itself only. */
static void figure8_state(struct tn *tn, uint64_t seed)
{
    static const raft_term s12[] = {1, 2};
    static const raft_term s34[] = {1};
    static const raft_term s5[] = {1, 3};
    tn_init(tn, 5, seed);
    tn_start_state(tn, 1, 2, 1, 1, s12, 2);
    tn_start_state(tn, 2, 2, 1, 1, s12, 2);
    tn_start_state(tn, 3, 3, 5, 1, s34, 1);
    tn_start_state(tn, 4, 3, 5, 1, s34, 1);
    tn_start_state(tn, 5, 3, 5, 1, s5, 2);
}

/* Lets APPENDs from node 1 carry only entries of earlier terms than the message's: the
 * leader's own no-op never arrives anywhere (state (c) of Figure 8). */
static bool strip_current_term(struct tn *tn, struct raft_message *m, void *ctx)
{
    if (m->type == RAFT_MSG_APPEND && m->from == 1) {
        uint32_t keep = 0;
        while (keep < m->n_entries && m->entries[keep].term < m->term) {
            keep++;
        }
        m->n_entries = keep;
    }
    return false;
}

Test(raft_safety, old_term_entry_is_not_committed_by_counting_replicas)
{
    /* P§5.4.2 / T§3.6.2, Figure 8 (c)-(d): S1, leader of term 4, brings entry 2 of term 2
     * to a majority (S1, S2, S3) but must not commit it by counting replicas: S5 can
     * still be elected (its last term 3 beats term 2) and overwrite it. */
    struct tn tn;
    figure8_state(&tn, 301);
    tn_isolate(&tn, 5);
    tn_set_tap(&tn, strip_current_term, NULL);
    cr_assert(tn_elect(&tn, 1));
    cr_assert_eq(raft_term_of(R(&tn, 1)), 4);
    cr_assert_eq(raft_term_at(R(&tn, 3), 2), 2, "S3 holds entry 2 of term 2");
    struct raft_progress_info pi;
    cr_assert(raft_progress(R(&tn, 1), 3, &pi));
    cr_assert_eq(pi.match, 2);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), 1, "not committed by counting replicas");
    for (raft_id id = 1; id <= 5; id++) {
        cr_assert_null(tn_applied_at(&tn, id, 2), "node %llu applied entry 2",
                       (unsigned long long)id);
    }
    tn_stop(&tn, 1);
    tn_heal(&tn);
    cr_assert(tn_elect(&tn, 5), "S5 can still win (d)");
    cr_assert_geq(raft_term_of(R(&tn, 5)), 5);
    for (raft_id id = 2; id <= 4; id++) {
        cr_assert_eq(raft_term_at(R(&tn, id), 2), 3, "node %llu took S5's entry 2",
                     (unsigned long long)id);
        cr_assert_eq(tn_applied_at(&tn, id, 2)->term, 3);
    }
    tn_fini(&tn);
}

static bool drop_appends_to_4(struct tn *tn, struct raft_message *m, void *ctx)
{
    return m->type == RAFT_MSG_APPEND && m->to == 4;
}

Test(raft_safety, current_term_entry_commits_the_entries_before_it)
{
    /* P§5.4.2 / T§3.6.2, Figure 8 (e): once S1 replicates an entry of its own term (its
     * no-op) on a majority, that entry and entry 2 before it are committed, and S5 can no
     * longer be elected: the majority's logs are more up to date than its own. */
    struct tn tn;
    figure8_state(&tn, 302);
    tn_isolate(&tn, 5);
    tn_set_tap(&tn, drop_appends_to_4, NULL);
    cr_assert(tn_elect(&tn, 1));
    raft_index noop = raft_last_index(R(&tn, 1));
    cr_assert_eq(noop, 3);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), 3, "committed through S1, S2, S3");
    const struct tn_entry *e2 = tn_applied_at(&tn, 1, 2);
    cr_assert_not_null(e2);
    cr_assert_eq(e2->term, 2);
    tn_stop(&tn, 1);
    tn_heal(&tn);
    for (uint32_t t = 0; t < 8 * E; t++) {
        tn_tick(&tn, 5, 1);
        tn_deliver_all(&tn);
        cr_assert_neq(raft_role_of(R(&tn, 5)), RAFT_LEADER, "S5 lacks committed entries");
    }
    cr_assert(tn_elect(&tn, 2));
    tn_run(&tn, 3);
    for (raft_id id = 2; id <= 5; id++) {
        const struct tn_entry *e = tn_applied_at(&tn, id, 2);
        cr_assert_not_null(e, "node %llu applied entry 2", (unsigned long long)id);
        cr_assert_eq(e->term, 2, "the committed entry survived");
    }
    tn_fini(&tn);
}

/* The entry with data s on node `from` is in node id's log at the same index and term. */
static void assert_holds(struct tn *tn, raft_id id, raft_id from, const char *s)
{
    raft_index i = tn_applied_find(tn, from, s);
    cr_assert_neq(i, 0, "%s was committed", s);
    const struct tn_entry *e = tn_applied_at(tn, from, i);
    cr_assert_eq(raft_term_at(R(tn, id), i), e->term, "node %llu holds %s", (unsigned long long)id,
                 s);
}

Test(raft_safety, every_new_leader_holds_all_committed_entries)
{
    /* P§5.4 / T§3.6 (Leader Completeness): an entry committed in a term is present in the
     * logs of the leaders of all later terms. Leaders 1, 2, 3 in turn, each deposed by
     * isolation after committing one entry. */
    static const char *const data[] = {"a", "b", "c"};
    struct tn tn;
    tn_init(&tn, 5, 303);
    tn_start(&tn);
    for (raft_id leader = 1; leader <= 3; leader++) {
        cr_assert(tn_elect(&tn, leader), "node %llu elected", (unsigned long long)leader);
        for (raft_id k = 1; k < leader; k++) {
            assert_holds(&tn, leader, k, data[k - 1]);
        }
        cr_assert_eq(tn_propose(&tn, leader, data[leader - 1]), 0);
        tn_deliver_all(&tn);
        cr_assert_neq(tn_applied_find(&tn, leader, data[leader - 1]), 0);
        tn_isolate(&tn, leader);
    }
    tn_heal(&tn);
    tn_converge(&tn, 30 * E);
    for (raft_id id = 1; id <= 5; id++) {
        for (int k = 0; k < 3; k++) {
            cr_assert_neq(tn_applied_find(&tn, id, data[k]), 0);
        }
    }
    tn_fini(&tn);
}

Test(raft_safety, a_node_missing_committed_entries_cannot_be_elected)
{
    /* P§5.4.1 / T§3.6.1 (Election Restriction): entries committed by 1, 2, 3 while 4 and
     * 5 were away cannot be lost: 4 campaigns again and again, but only 5 votes for it. */
    struct tn tn;
    tn_init(&tn, 5, 304);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    tn_isolate(&tn, 4);
    tn_isolate(&tn, 5);
    cr_assert_eq(tn_propose(&tn, 1, "a"), 0);
    cr_assert_eq(tn_propose(&tn, 1, "b"), 0);
    tn_deliver_all(&tn);
    raft_index b = tn_applied_find(&tn, 2, "b");
    cr_assert_neq(b, 0);
    tn_heal(&tn);
    tn_isolate(&tn, 1);
    raft_wake(R(&tn, 4));
    for (uint32_t t = 0; t < 8 * E; t++) {
        tn_tick(&tn, 4, 1);
        tn_deliver_all(&tn);
        cr_assert_neq(raft_role_of(R(&tn, 4)), RAFT_LEADER, "elected without entry %llu",
                      (unsigned long long)b);
    }
    cr_assert_gt(tn.sent[4][2][RAFT_MSG_VOTE], 1, "4 did campaign");
    cr_assert(tn_elect(&tn, 2));
    tn_run(&tn, 3);
    for (raft_id id = 2; id <= 5; id++) {
        cr_assert_eq(tn_applied_find(&tn, id, "b"), b);
    }
    tn_fini(&tn);
}

Test(raft_safety, restarted_voter_keeps_its_term_and_vote)
{
    /* T§3.8 / T§10.2.1 (Figure 3.1, persistent state): currentTerm and votedFor are
     * persisted before the vote is sent, so after a crash and restart the server does
     * not vote again in the same term. */
    struct tn tn;
    tn_init(&tn, 3, 305);
    tn_start(&tn);
    struct raft *r3 = R(&tn, 3);
    raft_term t = raft_term_of(r3) + 1;
    raft_index last = raft_last_index(r3);
    struct raft_message v1 = tn_msg(RAFT_MSG_VOTE, 1, 3, t);
    v1.index = last;
    v1.log_term = raft_term_at(r3, last);
    struct raft_message v2 = v1;
    v2.from = 2;
    tn_step(&tn, 3, &v1);
    cr_assert_not(tn_find(&tn, 3, 1, RAFT_MSG_VOTE_RESP)->reject);
    tn_drop_queue(&tn);
    tn_restart(&tn, 3);
    cr_assert_eq(raft_term_of(R(&tn, 3)), t, "the term survived the restart");
    tn_step(&tn, 3, &v2);
    cr_assert(tn_find(&tn, 3, 2, RAFT_MSG_VOTE_RESP)->reject, "no second vote in term %llu",
              (unsigned long long)t);
    tn_drop_queue(&tn);
    tn_step(&tn, 3, &v1);
    cr_assert_not(tn_find(&tn, 3, 1, RAFT_MSG_VOTE_RESP)->reject, "the same vote again");
    cr_assert_eq(tn.node[3].st.hs.vote, 1);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_safety, restarted_candidate_keeps_its_own_vote)
{
    /* T§3.8: a candidate's vote for itself is persistent state too. */
    struct tn tn;
    tn_init(&tn, 3, 306);
    tn_start(&tn);
    while (raft_role_of(R(&tn, 1)) == RAFT_FOLLOWER) {
        tn_tick(&tn, 1, 1);
    }
    raft_term t = raft_term_of(R(&tn, 1));
    tn_drop_queue(&tn);
    tn_restart(&tn, 1);
    cr_assert_eq(raft_term_of(R(&tn, 1)), t);
    cr_assert_eq(raft_role_of(R(&tn, 1)), RAFT_FOLLOWER, "a restart begins as follower");
    struct raft_message v = tn_msg(RAFT_MSG_VOTE, 2, 1, t);
    v.index = raft_last_index(R(&tn, 1));
    v.log_term = raft_term_at(R(&tn, 1), v.index);
    tn_step(&tn, 1, &v);
    cr_assert(tn_find(&tn, 1, 2, RAFT_MSG_VOTE_RESP)->reject);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

#define CHAOS_ROUNDS 60

struct chaos {
    char data[CHAOS_ROUNDS][16];
    raft_index committed_at[CHAOS_ROUNDS]; /* 0 until some node applied it */
    int n;
};

/* Marks every proposal some node has applied, at the index it was applied at. */
static void chaos_observe(struct tn *tn, struct chaos *c)
{
    for (int i = 0; i < c->n; i++) {
        for (raft_id id = 1; id <= tn->n && c->committed_at[i] == 0; id++) {
            c->committed_at[i] = tn_applied_find(tn, id, c->data[i]);
        }
    }
}

static void chaos_round(struct tn *tn, struct chaos *c, struct ts_rand *rnd)
{
    raft_id leader = tn_leader(tn);
    raft_id victim = 1 + (raft_id)ts_rand_below(rnd, tn->n);
    switch (ts_rand_below(rnd, 7)) {
    case 0:
    case 1:
    case 2:
        if (leader != 0) {
            snprintf(c->data[c->n], sizeof(c->data[0]), "chaos-%d", c->n);
            if (tn_propose(tn, leader, c->data[c->n]) == 0) {
                c->n++;
            }
        }
        tn_deliver_round(tn);
        break;
    case 3:
        tn_restart(tn, victim);
        break;
    case 4:
        tn_heal(tn);
        tn_isolate(tn, leader != 0 ? leader : victim);
        tn_converge(tn, 10 * E);
        break;
    default:
        tn_heal(tn);
        tn_run(tn, 1 + (uint32_t)ts_rand_below(rnd, 3));
        break;
    }
    chaos_observe(tn, c);
}

Test(raft_safety, committed_entries_survive_leader_changes_and_restarts)
{
    /* P§5.4 / T§3.6 (State Machine Safety, Leader Completeness) under seeded chaos:
     * proposals, crashes and restarts (tn_restart rebuilds from what was persisted),
     * leaders cut off. Every entry any node ever applied is, at the end, applied by every
     * node at the same index; tn_check() compares all applied and persisted logs. */
    for (uint64_t seed = 310; seed < 316; seed++) {
        struct tn tn;
        tn_init(&tn, 5, seed);
        tn_start(&tn);
        cr_assert(tn_elect(&tn, 1));
        struct ts_rand rnd;
        ts_rand_seed(&rnd, seed);
        struct chaos c = {.n = 0};
        for (int round = 0; round < CHAOS_ROUNDS && c.n < CHAOS_ROUNDS; round++) {
            chaos_round(&tn, &c, &rnd);
            tn_check(&tn);
        }
        tn_heal(&tn);
        raft_id leader = tn_converge(&tn, 30 * E);
        cr_assert_neq(leader, 0, "seed %llu: a leader at the end", (unsigned long long)seed);
        cr_assert_eq(tn_propose(&tn, leader, "final"), 0);
        tn_deliver_all(&tn);
        tn_run(&tn, 3);
        chaos_observe(&tn, &c);
        for (int i = 0; i < c.n; i++) {
            for (raft_id id = 1; id <= 5 && c.committed_at[i] != 0; id++) {
                cr_assert_eq(tn_applied_find(&tn, id, c.data[i]), c.committed_at[i],
                             "seed %llu: node %llu lost %s", (unsigned long long)seed,
                             (unsigned long long)id, c.data[i]);
            }
        }
        cr_assert_neq(tn_applied_find(&tn, 1, "final"), 0);
        tn_fini(&tn);
    }
}

Test(raft_safety, restart_gives_committed_entries_after_applied_again)
{
    /* raft.h (Restart) / T§3.8: a state machine that persisted only part of what it had
     * applied is given the committed entries after its applied index again, in order, and
     * ends identical to the others. */
    struct tn tn;
    tn_init(&tn, 3, 317);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    cr_assert_eq(tn_propose(&tn, 1, "a"), 0);
    cr_assert_eq(tn_propose(&tn, 1, "b"), 0);
    cr_assert_eq(tn_propose(&tn, 1, "c"), 0);
    tn_deliver_all(&tn);
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    raft_index a = tn_applied_find(&tn, 2, "a"), c = tn_applied_find(&tn, 2, "c");
    cr_assert(a != 0 && c == a + 2);
    tn_stop(&tn, 2);
    tn_forget_applied(&tn, 2, a - 1);
    tn_restart(&tn, 2);
    cr_assert_eq(tn_applied_find(&tn, 2, "a"), a, "given again");
    cr_assert_eq(tn_applied_find(&tn, 2, "c"), c);
    cr_assert_eq(raft_applied_index(R(&tn, 2)), c);
    cr_assert_eq(tn.node[2].st.applied, c);
    tn_fini(&tn);
}

Test(raft_safety, restart_after_a_torn_write_takes_the_entries_term)
{
    /* raft.h (Restart), T§3.8: a ready's entries can be durable without its hard state.
     * The term must not stay below a term in the log, or this node could lead a lower
     * term and append entries of that term after higher-term ones, which breaks log
     * matching (P§5.3). */
    struct ts_rand rnd;
    ts_rand_seed(&rnd, 330);
    struct raft_config c;
    raft_config_default(&c);
    c.id = 1;
    c.group_id = TN_GROUP_ID;
    c.pre_vote = false;
    c.rand = &rnd;
    c.alloc = ts_allocator_default();
    struct raft_conf conf = {.n = 3, .m = {{1, RAFT_VOTER}, {2, RAFT_VOTER}, {3, RAFT_VOTER}}};
    struct raft_entry e[2] = {{.term = 1, .index = 1}, {.term = 3, .index = 2}};
    struct raft_initial in = {
        .hard_state = {.term = 1, .vote = 2, .commit = 1},
        .conf = &conf,
        .entries = e,
        .n_entries = 2,
    };
    struct raft *r;
    cr_assert_eq(raft_new(&c, &in, &r), 0);
    cr_assert_eq(raft_term_of(r), 3);
    struct raft_ready rd;
    cr_assert(raft_has_ready(r));
    raft_ready(r, &rd);
    cr_assert(rd.hard_state_changed, "the raised term is persisted");
    cr_assert_eq(rd.hard_state.term, 3);
    cr_assert_eq(rd.hard_state.vote, 0, "the vote of term 1 does not carry to term 3");
    raft_advance(r);
    for (uint32_t t = 0; t < 2 * c.election_ticks && raft_role_of(r) == RAFT_FOLLOWER; t++) {
        raft_tick(r);
    }
    cr_assert_eq(raft_role_of(r), RAFT_CANDIDATE);
    cr_assert_eq(raft_term_of(r), 4, "a campaign goes above the log's last term");
    raft_ready(r, &rd);
    cr_assert_eq(rd.n_msgs_after_persist, 2);
    cr_assert_eq(rd.msgs_after_persist[0].log_term, 3);
    raft_advance(r);
    raft_free(r);
}
