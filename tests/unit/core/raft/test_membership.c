/*
 * core/raft: membership changes (P§6 / T§4): learners (T§4.2.1), promotion, removal,
 * removing the leader (T§4.2.2), one change at a time (T§4.1), joint consensus entered
 * and left by the leader (T§4.3), and the configuration encoding.
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

static uint8_t role_on(struct tn *tn, raft_id on, raft_id member)
{
    return raft_conf_role(raft_conf_of(R(tn, on)), member);
}

static int change(struct tn *tn, raft_id leader, uint8_t type, raft_id id)
{
    struct raft_change c = {.type = type, .id = id};
    int rc = raft_propose_conf(R(tn, leader), &c, 1, NULL);
    tn_ready_all(tn);
    return rc;
}

/* n nodes; voters 1..voters bootstrapped, the rest started empty; node 1 elected. */
static void setup(struct tn *tn, uint32_t n, uint32_t voters, uint64_t seed)
{
    tn_init(tn, n, seed);
    tn->boot.n = voters;
    tn_start(tn);
    for (raft_id id = voters + 1; id <= n; id++) {
        tn_start_empty(tn, id);
    }
    cr_assert(tn_elect(tn, 1));
}

/* Adds node id as a learner and lets it catch up. */
static void add_learner(struct tn *tn, raft_id id)
{
    cr_assert_eq(change(tn, 1, RAFT_ADD_LEARNER, id), 0);
    tn_deliver_all(tn);
    tn_run(tn, 3);
    cr_assert_eq(role_on(tn, 1, id), RAFT_LEARNER);
    cr_assert_eq(raft_last_index(R(tn, id)), raft_last_index(R(tn, 1)), "learner caught up");
}

Test(raft_membership, learner_receives_entries_but_never_campaigns)
{
    /* T§4.2.1: a learner (non-voting member) receives the log, so it can catch up, but it
     * never starts elections. */
    struct tn tn;
    setup(&tn, 4, 3, 401);
    add_learner(&tn, 4);
    cr_assert_eq(role_on(&tn, 4, 4), RAFT_LEARNER, "the learner knows it is one");
    cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    tn_deliver_all(&tn);
    tn_run(&tn, 2);
    cr_assert_neq(tn_applied_find(&tn, 4, "x"), 0);
    raft_term t = raft_term_of(R(&tn, 4));
    tn_isolate(&tn, 4);
    raft_wake(R(&tn, 4));
    tn_tick(&tn, 4, 6 * E);
    cr_assert_eq(raft_role_of(R(&tn, 4)), RAFT_FOLLOWER);
    cr_assert_eq(raft_term_of(R(&tn, 4)), t);
    for (raft_id to = 1; to <= 3; to++) {
        cr_assert_eq(tn.sent[4][to][RAFT_MSG_VOTE] + tn.sent[4][to][RAFT_MSG_PREVOTE], 0);
    }
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_membership, learner_does_not_count_for_commit_or_election)
{
    /* T§4.2.1: a learner's acknowledgement does not count towards a majority, nor does its
     * vote. Leader 1 reaching only learner 4 commits nothing; candidate 2 reaching only
     * learner 4 never wins. */
    struct tn tn;
    setup(&tn, 4, 3, 402);
    add_learner(&tn, 4);
    raft_index commit = raft_commit_index(R(&tn, 1));
    tn_cut(&tn, 1, 2);
    tn_cut(&tn, 1, 3);
    cr_assert_eq(tn_propose(&tn, 1, "y"), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_last_index(R(&tn, 4)), commit + 1, "the learner stored y");
    cr_assert_eq(raft_commit_index(R(&tn, 1)), commit, "but y is not committed");
    tn_heal(&tn);
    tn_isolate(&tn, 1);
    tn_cut(&tn, 2, 3);
    raft_wake(R(&tn, 2));
    for (uint32_t t = 0; t < 6 * E; t++) {
        tn_tick(&tn, 2, 1);
        tn_deliver_all(&tn);
        cr_assert_neq(raft_role_of(R(&tn, 2)), RAFT_LEADER, "won with a learner's vote");
    }
    tn_heal(&tn);
    raft_id leader = tn_converge(&tn, 30 * E);
    cr_assert_neq(leader, 0);
    cr_assert_neq(leader, 4, "a learner never leads");
    tn_fini(&tn);
}

Test(raft_membership, caught_up_learner_is_promoted)
{
    /* T§4.2.1 / T§4.1: once a learner has caught up it is made a voter with one
     * single-server change (no joint configuration); from then on commitment needs 3 of
     * the 4 voters. */
    struct tn tn;
    setup(&tn, 4, 3, 403);
    add_learner(&tn, 4);
    cr_assert_eq(change(&tn, 1, RAFT_ADD_VOTER, 4), 0);
    tn_deliver_all(&tn);
    tn_run(&tn, 2);
    for (raft_id id = 1; id <= 4; id++) {
        cr_assert_eq(role_on(&tn, id, 4), RAFT_VOTER, "on node %llu", (unsigned long long)id);
        cr_assert_not(raft_conf_joint(raft_conf_of(R(&tn, id))));
    }
    raft_index commit = raft_commit_index(R(&tn, 1));
    tn_cut(&tn, 1, 3);
    tn_cut(&tn, 1, 4);
    cr_assert_eq(tn_propose(&tn, 1, "z"), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), commit, "2 of 4 voters do not commit");
    tn_heal(&tn);
    tn_run(&tn, 3);
    cr_assert_neq(tn_applied_find(&tn, 4, "z"), 0);
    tn_fini(&tn);
}

Test(raft_membership, lagging_learner_cannot_be_promoted)
{
    /* T§4.2.1: promoting a learner that is far behind (more than promote_lag_max entries)
     * would leave the group unavailable while it catches up: refused with TS_EINVAL. */
    struct tn tn;
    tn_init(&tn, 4, 404);
    tn.cfg.promote_lag_max = 5;
    tn.boot.n = 3;
    tn_start(&tn);
    tn_start_empty(&tn, 4);
    cr_assert(tn_elect(&tn, 1));
    add_learner(&tn, 4);
    tn_isolate(&tn, 4);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(tn_propose(&tn, 1, "lag"), 0);
    }
    tn_deliver_all(&tn);
    cr_assert_eq(change(&tn, 1, RAFT_ADD_VOTER, 4), TS_EINVAL);
    tn_deliver_all(&tn);
    cr_assert_eq(role_on(&tn, 1, 4), RAFT_LEARNER);
    tn_fini(&tn);
}

Test(raft_membership, removed_voter_is_dropped_from_the_majority)
{
    /* P§6 / T§4.1: after removing voter 3 the configuration is {1, 2}: both are needed
     * to commit, and the leader sends nothing more to 3. */
    struct tn tn;
    setup(&tn, 3, 3, 405);
    cr_assert_eq(change(&tn, 1, RAFT_REMOVE, 3), 0);
    tn_deliver_all(&tn);
    tn_run(&tn, 2);
    cr_assert_eq(role_on(&tn, 1, 3), 0);
    cr_assert_eq(role_on(&tn, 2, 3), 0);
    tn_stop(&tn, 3);
    uint32_t to3 = tn.sent[1][3][RAFT_MSG_APPEND] + tn.sent[1][3][RAFT_MSG_HEARTBEAT];
    raft_index commit = raft_commit_index(R(&tn, 1));
    tn_cut(&tn, 1, 2);
    cr_assert_eq(tn_propose(&tn, 1, "w"), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), commit, "1 of 2 voters does not commit");
    tn_heal(&tn);
    tn_run(&tn, 3);
    cr_assert_neq(tn_applied_find(&tn, 2, "w"), 0);
    cr_assert_eq(tn.sent[1][3][RAFT_MSG_APPEND] + tn.sent[1][3][RAFT_MSG_HEARTBEAT], to3,
                 "nothing is sent to a removed member");
    tn_fini(&tn);
}

Test(raft_membership, removed_leader_steps_down_and_the_rest_elect)
{
    /* T§4.2.2: a leader removed from the configuration steps down once the change is
     * committed; the remaining voters elect a leader and go on committing. */
    struct tn tn;
    setup(&tn, 3, 3, 406);
    raft_index idx = 0;
    struct raft_change c = {.type = RAFT_REMOVE, .id = 1};
    cr_assert_eq(raft_propose_conf(R(&tn, 1), &c, 1, &idx), 0);
    tn_deliver_all(&tn);
    tn_run(&tn, 2);
    cr_assert_geq(raft_commit_index(R(&tn, 2)), idx);
    cr_assert_neq(raft_role_of(R(&tn, 1)), RAFT_LEADER, "the removed leader stepped down");
    cr_assert_eq(role_on(&tn, 2, 1), 0);
    tn_stop(&tn, 1);
    raft_id leader = tn_converge(&tn, 30 * E);
    cr_assert(leader == 2 || leader == 3, "leader %llu", (unsigned long long)leader);
    cr_assert_eq(tn_propose(&tn, leader, "v"), 0);
    tn_deliver_all(&tn);
    cr_assert_neq(tn_applied_find(&tn, 2, "v"), 0);
    cr_assert_neq(tn_applied_find(&tn, 3, "v"), 0);
    tn_fini(&tn);
}

Test(raft_membership, second_change_while_one_is_pending_fails)
{
    /* T§4.1: configuration changes go one at a time: while one is not yet applied a
     * second is refused, and only the first takes effect. */
    struct tn tn;
    setup(&tn, 4, 3, 407);
    cr_assert_eq(change(&tn, 1, RAFT_ADD_LEARNER, 4), 0);
    int rc = change(&tn, 1, RAFT_REMOVE, 3);
    cr_assert_lt(rc, 0, "a second pending change is refused");
    tn_deliver_all(&tn);
    tn_run(&tn, 2);
    cr_assert_eq(role_on(&tn, 1, 4), RAFT_LEARNER);
    cr_assert_eq(role_on(&tn, 1, 3), RAFT_VOTER);
    cr_assert_eq(change(&tn, 1, RAFT_REMOVE, 3), 0, "accepted once the first is applied");
    tn_deliver_all(&tn);
    cr_assert_eq(role_on(&tn, 1, 3), 0);
    tn_fini(&tn);
}

static bool drop_appends(struct tn *tn, struct raft_message *m, void *ctx)
{
    return m->type == RAFT_MSG_APPEND;
}

Test(raft_membership, change_before_the_first_commit_of_the_term_is_unavailable)
{
    /* T§4.1 (the bug fix of the single-server algorithm) / raft.h errors: a new leader may
     * not propose a configuration change until it has committed an entry of its term;
     * TS_EUNAVAIL until its no-op commits. */
    struct tn tn;
    tn_init(&tn, 4, 408);
    tn.boot.n = 3;
    tn_start(&tn);
    tn_start_empty(&tn, 4);
    tn_set_tap(&tn, drop_appends, NULL);
    cr_assert(tn_elect(&tn, 1));
    cr_assert_eq(change(&tn, 1, RAFT_ADD_LEARNER, 4), TS_EUNAVAIL);
    tn_heal(&tn);
    tn_run(&tn, 2);
    cr_assert_eq(change(&tn, 1, RAFT_ADD_LEARNER, 4), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(role_on(&tn, 1, 4), RAFT_LEARNER);
    tn_fini(&tn);
}

/* Voters 1, 2, 3 and caught-up learners 4, 5; then one proposal replacing voters 2 and 3
 * by 4 and 5 (four changes: joint consensus). Returns the joint entry's index. */
static raft_index propose_joint(struct tn *tn, uint64_t seed)
{
    setup(tn, 5, 3, seed);
    add_learner(tn, 4);
    add_learner(tn, 5);
    struct raft_change c[4] = {
        {.type = RAFT_ADD_VOTER, .id = 4},
        {.type = RAFT_ADD_VOTER, .id = 5},
        {.type = RAFT_REMOVE, .id = 2},
        {.type = RAFT_REMOVE, .id = 3},
    };
    raft_index j = 0;
    cr_assert_eq(raft_propose_conf(R(tn, 1), c, 4, &j), 0);
    cr_assert_gt(j, 0);
    return j;
}

static void assert_joint_roles(struct tn *tn)
{
    const struct raft_conf *conf = raft_conf_of(R(tn, 1));
    cr_assert(raft_conf_joint(conf), "the leader is in the joint configuration");
    cr_assert_eq(raft_conf_role(conf, 1), RAFT_VOTER | RAFT_VOTER_OUTGOING);
    cr_assert_eq(raft_conf_role(conf, 2), RAFT_VOTER_OUTGOING);
    cr_assert_eq(raft_conf_role(conf, 3), RAFT_VOTER_OUTGOING);
    cr_assert_eq(raft_conf_role(conf, 4), RAFT_VOTER);
    cr_assert_eq(raft_conf_role(conf, 5), RAFT_VOTER);
}

/* After healing the joint configuration is left: voters {1, 4, 5}, 2 and 3 gone. */
static void assert_left_joint(struct tn *tn, const char *committed)
{
    tn_heal(tn);
    tn_run(tn, 4);
    const struct raft_conf *conf = raft_conf_of(R(tn, 1));
    cr_assert_not(raft_conf_joint(conf), "the leader left the joint configuration by itself");
    cr_assert_eq(raft_conf_role(conf, 1), RAFT_VOTER);
    cr_assert_eq(raft_conf_role(conf, 4), RAFT_VOTER);
    cr_assert_eq(raft_conf_role(conf, 5), RAFT_VOTER);
    cr_assert_eq(raft_conf_role(conf, 2), 0);
    cr_assert_eq(raft_conf_role(conf, 3), 0);
    cr_assert_eq(raft_role_of(R(tn, 1)), RAFT_LEADER);
    for (raft_id id = 4; id <= 5; id++) {
        cr_assert_neq(tn_applied_find(tn, id, committed), 0);
        cr_assert_not(raft_conf_joint(raft_conf_of(R(tn, id))));
    }
}

Test(raft_membership, joint_config_needs_the_new_majority_too)
{
    /* T§4.3 (P§6): in the joint configuration an entry commits only with a majority of
     * the old voters AND a majority of the new. The joint entry itself commits with the
     * old voters; after that only 1, 2, 3 (the old majority) answer, so nothing later
     * commits (neither the leader's entry leaving the joint configuration nor a
     * proposal). Once 4 and 5 answer, both commit and the leader is out of joint. */
    struct tn tn;
    raft_index j = propose_joint(&tn, 409);
    tn_cut(&tn, 1, 4);
    tn_cut(&tn, 1, 5);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), j, "the joint entry committed (old voters)");
    assert_joint_roles(&tn);
    cr_assert_gt(raft_last_index(R(&tn, 1)), j, "the leader proposed leaving the joint config");
    cr_assert_eq(tn_propose(&tn, 1, "p"), 0);
    tn_deliver_all(&tn);
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), j, "old majority alone commits nothing");
    cr_assert_eq(tn_applied_find(&tn, 1, "p"), 0);
    assert_left_joint(&tn, "p");
    tn_fini(&tn);
}

struct after_joint {
    raft_index j;
};

/* Drops APPENDs to 2 and 3 that carry entries after the joint entry. */
static bool old_voters_miss_later_entries(struct tn *tn, struct raft_message *m, void *ctx)
{
    const struct after_joint *a = ctx;
    return m->type == RAFT_MSG_APPEND && (m->to == 2 || m->to == 3) &&
           m->index + m->n_entries > a->j;
}

Test(raft_membership, joint_config_needs_the_old_majority_too)
{
    /* T§4.3: the converse: once joint, only 1, 4, 5 (the new majority) receive later
     * entries, and still nothing after the joint entry commits. */
    struct tn tn;
    struct after_joint a = {.j = propose_joint(&tn, 410)};
    tn_set_tap(&tn, old_voters_miss_later_entries, &a);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_commit_index(R(&tn, 1)), a.j);
    assert_joint_roles(&tn);
    cr_assert_eq(tn_propose(&tn, 1, "q"), 0);
    tn_deliver_all(&tn);
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    cr_assert_eq(raft_last_index(R(&tn, 4)), raft_last_index(R(&tn, 1)), "4 has everything");
    cr_assert_eq(raft_commit_index(R(&tn, 1)), a.j, "new majority alone commits nothing");
    assert_left_joint(&tn, "q");
    tn_fini(&tn);
}

static struct raft_conf conf_of_ids(raft_id first, uint32_t n, uint8_t role)
{
    struct raft_conf c = {.n = n};
    for (uint32_t i = 0; i < n; i++) {
        c.m[i] = (struct raft_member){.id = first + i, .role = role};
    }
    return c;
}

Test(raft_membership, conf_encoding_round_trips)
{
    /* raft.h (RAFT_ENTRY_CONF): a configuration survives encode and decode exactly: plain,
     * with learners, joint (T§4.3 roles), and the largest (TS_RAFT_MEMBERS_MAX members
     * with ids above 2^32). */
    struct raft_conf confs[4];
    confs[0] = conf_of_ids(1, 1, RAFT_VOTER);
    confs[1] = conf_of_ids(1, 5, RAFT_VOTER);
    confs[1].m[3].role = RAFT_LEARNER;
    confs[1].m[4].role = RAFT_LEARNER;
    confs[2] = conf_of_ids(1, 5, RAFT_VOTER);
    confs[2].m[0].role = RAFT_VOTER | RAFT_VOTER_OUTGOING;
    confs[2].m[1].role = RAFT_VOTER_OUTGOING | RAFT_LEARNER_NEXT;
    confs[2].m[2].role = RAFT_VOTER_OUTGOING;
    confs[2].m[4].role = RAFT_LEARNER;
    confs[3] = conf_of_ids((1ull << 40) + 7, TS_RAFT_MEMBERS_MAX, RAFT_VOTER);
    for (int k = 0; k < 4; k++) {
        uint8_t buf[RAFT_CONF_ENCODED_BYTES_MAX];
        uint32_t len = raft_conf_encode(&confs[k], buf);
        cr_assert(len > 0 && len <= RAFT_CONF_ENCODED_BYTES_MAX, "conf %d: %u bytes", k, len);
        struct raft_conf out;
        memset(&out, 0xa5, sizeof(out));
        cr_assert_eq(raft_conf_decode(buf, len, &out), 0, "conf %d", k);
        cr_assert_eq(out.n, confs[k].n);
        for (uint32_t i = 0; i < out.n; i++) {
            cr_assert_eq(out.m[i].id, confs[k].m[i].id, "conf %d member %u", k, i);
            cr_assert_eq(out.m[i].role, confs[k].m[i].role, "conf %d member %u", k, i);
        }
        cr_assert_eq(raft_conf_joint(&out), k == 2, "conf %d", k);
    }
    cr_assert_eq(raft_conf_role(&confs[2], 2), RAFT_VOTER_OUTGOING | RAFT_LEARNER_NEXT);
    cr_assert_eq(raft_conf_role(&confs[2], 9), 0);
}

/* The index of the only byte that differs between a and b (both len bytes). */
static uint32_t only_difference(const uint8_t *a, const uint8_t *b, uint32_t len)
{
    uint32_t at = len, count = 0;
    for (uint32_t i = 0; i < len; i++) {
        if (a[i] != b[i]) {
            at = i;
            count++;
        }
    }
    cr_assert_eq(count, 1, "expected exactly one differing byte");
    return at;
}

static void assert_eproto(const uint8_t *buf, uint32_t len, const char *what)
{
    struct raft_conf out;
    cr_assert_eq(raft_conf_decode(buf, len, &out), TS_EPROTO, "%s", what);
}

Test(raft_membership, conf_decode_rejects_malformed_input)
{
    /* raft.h (raft_conf_decode): every truncation, a trailing byte, a bad version, a bad
     * role, unsorted or duplicate ids and too many members give TS_EPROTO. The layout is
     * found from the encoder: a 2-byte header and 9 bytes per member. */
    struct raft_conf one = conf_of_ids(1, 1, RAFT_VOTER);
    struct raft_conf two = conf_of_ids(1, 2, RAFT_VOTER);
    struct raft_conf learner = two; /* 1 voter, 1 learner: differs in one role byte */
    learner.m[1].role = RAFT_LEARNER;
    struct raft_conf lo = conf_of_ids(1, TS_RAFT_MEMBERS_MAX, RAFT_VOTER);
    struct raft_conf hi = conf_of_ids(2, TS_RAFT_MEMBERS_MAX, RAFT_VOTER);
    uint8_t b1[RAFT_CONF_ENCODED_BYTES_MAX + 1], bl[RAFT_CONF_ENCODED_BYTES_MAX];
    uint8_t b2[RAFT_CONF_ENCODED_BYTES_MAX + 1], blo[RAFT_CONF_ENCODED_BYTES_MAX];
    uint8_t bhi[RAFT_CONF_ENCODED_BYTES_MAX];
    uint32_t l1 = raft_conf_encode(&one, b1);
    uint32_t l2 = raft_conf_encode(&two, b2);
    cr_assert_eq(raft_conf_encode(&learner, bl), l2);
    cr_assert_eq(l1, 2 + 9);
    cr_assert_eq(l2, 2 + 18);
    for (uint32_t k = 0; k < l2; k++) {
        assert_eproto(b2, k, "truncated");
    }
    b2[l2] = 0;
    assert_eproto(b2, l2 + 1, "trailing byte");
    uint32_t role_at = only_difference(b2, bl, l2);
    uint32_t count_at = only_difference(b1, b2, 2);
    uint32_t version_at = 1 - count_at;
    uint8_t bad[RAFT_CONF_ENCODED_BYTES_MAX + 9 + 1];
    static const uint8_t bad_roles[] = {0, 0x80, RAFT_VOTER | RAFT_LEARNER};
    for (size_t i = 0; i < sizeof(bad_roles); i++) {
        memcpy(bad, b2, l2);
        bad[role_at] = bad_roles[i];
        assert_eproto(bad, l2, "bad role");
    }
    memcpy(bad, b1, l1);
    bad[version_at] ^= 0xff;
    assert_eproto(bad, l1, "bad version");
    memcpy(bad, b2, 2);
    memcpy(bad + 2, b2 + 11, 9);
    memcpy(bad + 11, b2 + 2, 9);
    assert_eproto(bad, l2, "unsorted ids");
    memcpy(bad, b2, 11);
    memcpy(bad + 11, b2 + 2, 9);
    assert_eproto(bad, l2, "duplicate ids");
    uint32_t llo = raft_conf_encode(&lo, blo);
    cr_assert_eq(raft_conf_encode(&hi, bhi), llo);
    memcpy(bad, blo, llo);
    memcpy(bad + llo, bhi + llo - 9, 9);
    bad[count_at] = (uint8_t)(TS_RAFT_MEMBERS_MAX + 1);
    assert_eproto(bad, llo + 9, "too many members");
}
