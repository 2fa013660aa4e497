/*
 * core/raft: log replication (P§5.3 / T§3.5): the new leader's no-op, commitment by a
 * majority, how followers learn the commit index, the persist-before-acknowledge
 * contract (T§10.2.1), log repair with fast back-off, and flow control (pipelining
 * bounded in messages and bytes, probing, batching).
 */
#include "raft_testnet.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct raft *R(struct tn *tn, raft_id id)
{
    return tn_raft(tn, id);
}

/* A 3-node network with node 1 elected and its no-op committed everywhere. */
static void three_with_leader(struct tn *tn, uint64_t seed)
{
    tn_init(tn, 3, seed);
    tn_start(tn);
    cr_assert(tn_elect(tn, 1));
}

static void start_and_elect(struct tn *tn)
{
    tn_start(tn);
    cr_assert(tn_elect(tn, 1));
}

Test(raft_replication, bootstrap_writes_the_configuration_as_entry_1)
{
    /* raft.h, Restart: every initial member writes the bootstrap configuration as entry 1
     * of term 1, already committed, and persists it in its first ready. */
    struct tn tn;
    tn_init(&tn, 3, 201);
    tn_start(&tn);
    for (raft_id id = 1; id <= 3; id++) {
        const struct tn_entry *e = tn_persisted(&tn, id, 1);
        cr_assert_not_null(e, "entry 1 persisted on node %llu", (unsigned long long)id);
        cr_assert_eq(e->term, 1);
        cr_assert_eq(e->type, RAFT_ENTRY_CONF);
        struct raft_conf c;
        cr_assert_eq(raft_conf_decode(e->data, e->len, &c), 0);
        cr_assert_eq(c.n, 3);
        cr_assert_eq(raft_conf_role(&c, id), RAFT_VOTER);
        cr_assert_eq(raft_commit_index(R(&tn, id)), 1);
        cr_assert_geq(tn.node[id].st.hs.commit, 1, "the commit is persisted");
        cr_assert_eq(raft_last_index(R(&tn, id)), 1);
        cr_assert_eq(raft_conf_of(R(&tn, id))->n, 3);
    }
    tn_fini(&tn);
}

Test(raft_replication, leader_appends_a_noop_on_election)
{
    /* P§8 / T§6.4 (and P§5.4.2): a new leader appends a blank entry of its term at once,
     * so that it commits an entry of its own term, which settles the commit index. */
    struct tn tn;
    tn_init(&tn, 3, 202);
    tn_start(&tn);
    raft_index last = raft_last_index(R(&tn, 1));
    cr_assert(tn_elect(&tn, 1));
    raft_term t = raft_term_of(R(&tn, 1));
    cr_assert_eq(raft_last_index(R(&tn, 1)), last + 1);
    cr_assert_eq(raft_term_at(R(&tn, 1), last + 1), t);
    for (raft_id id = 1; id <= 3; id++) {
        const struct tn_entry *e = tn_applied_at(&tn, id, last + 1);
        cr_assert_not_null(e, "node %llu applied the no-op", (unsigned long long)id);
        cr_assert_eq(e->type, RAFT_ENTRY_NORMAL);
        cr_assert_eq(e->len, 0);
        cr_assert_eq(e->term, t);
        cr_assert_eq(raft_commit_index(R(&tn, id)), last + 1);
    }
    tn_fini(&tn);
}

Test(raft_replication, entries_commit_once_a_majority_has_them)
{
    /* P§5.3 / T§3.5: an entry is committed once the leader has replicated it on a
     * majority (3 of 5); with only 2 of 5 it is stored but not committed. */
    struct tn tn;
    tn_init(&tn, 5, 203);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    tn_isolate(&tn, 4);
    tn_isolate(&tn, 5);
    cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    tn_deliver_all(&tn);
    raft_index x = tn_applied_find(&tn, 1, "x");
    cr_assert_neq(x, 0, "committed with 1, 2 and 3");
    for (raft_id id = 2; id <= 3; id++) {
        cr_assert_eq(tn_applied_find(&tn, id, "x"), x);
    }
    cr_assert_eq(tn_applied_find(&tn, 4, "x"), 0);
    tn_isolate(&tn, 3);
    cr_assert_eq(tn_propose(&tn, 1, "y"), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(tn_persisted_last(&tn, 2), x + 1, "node 2 stored y");
    cr_assert_eq(raft_commit_index(R(&tn, 1)), x, "2 of 5 do not commit");
    cr_assert_eq(tn_applied_find(&tn, 1, "y"), 0);
    tn_heal(&tn);
    tn_run(&tn, 3);
    for (raft_id id = 1; id <= 5; id++) {
        cr_assert_eq(tn_applied_find(&tn, id, "x"), x);
        cr_assert_eq(tn_applied_find(&tn, id, "y"), x + 1);
    }
    tn_fini(&tn);
}

Test(raft_replication, followers_learn_the_commit_index_from_heartbeats)
{
    /* P§5.3 / T§3.5: followers learn that an entry is committed from later messages of
     * the leader; heartbeats carry the commit index too (up to what the follower has). */
    struct tn tn;
    three_with_leader(&tn, 204);
    cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    tn_deliver_round(&tn); /* APPENDs reach 2 and 3, which acknowledge */
    tn_drop_type(&tn, RAFT_MSG_APPEND);
    tn_deliver_all(&tn); /* acknowledgements reach 1; later APPENDs are lost */
    raft_index x = tn_applied_find(&tn, 1, "x");
    cr_assert_neq(x, 0, "the leader committed x");
    cr_assert_lt(raft_commit_index(R(&tn, 2)), x, "2 has not been told");
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    for (raft_id id = 2; id <= 3; id++) {
        cr_assert_eq(raft_commit_index(R(&tn, id)), x, "the heartbeat told %llu",
                     (unsigned long long)id);
        cr_assert_eq(tn_applied_find(&tn, id, "x"), x);
    }
    tn_fini(&tn);
}

Test(raft_replication, followers_learn_the_commit_index_from_appends)
{
    /* P§5.3 / T§3.5: AppendEntries carries leaderCommit; without any heartbeat, the next
     * append tells followers what was committed before it. */
    struct tn tn;
    three_with_leader(&tn, 205);
    tn_drop_type(&tn, RAFT_MSG_HEARTBEAT);
    cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    tn_deliver_all(&tn);
    raft_index x = tn_applied_find(&tn, 1, "x");
    cr_assert_neq(x, 0);
    cr_assert_eq(tn_propose(&tn, 1, "y"), 0);
    tn_deliver_round(&tn);
    for (raft_id id = 2; id <= 3; id++) {
        cr_assert_geq(raft_commit_index(R(&tn, id)), x);
        cr_assert_eq(tn_applied_find(&tn, id, "x"), x);
    }
    tn_deliver_all(&tn);
    tn_fini(&tn);
}

static size_t count_msgs(const struct raft_message *msgs, size_t n, unsigned type, raft_id to)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += msgs[i].type == type && (to == 0 || msgs[i].to == to);
    }
    return count;
}

Test(raft_replication, acknowledgements_only_after_persist)
{
    /* T§10.2.1 and the contract in raft.h (2b, 2c): the leader's APPENDs may leave before
     * its own write completes (rd.msgs); a follower's APPEND_RESP promises the entries
     * are durable, so it comes only in rd.msgs_after_persist, in the ready that carries
     * those entries. */
    struct tn tn;
    three_with_leader(&tn, 206);
    struct raft_ready rd;
    cr_assert_eq(raft_propose(R(&tn, 1), "x", 1, NULL), 0);
    raft_ready(R(&tn, 1), &rd);
    cr_assert_eq(rd.n_entries, 1);
    cr_assert_eq(rd.entries[0].len, 1);
    cr_assert_eq(count_msgs(rd.msgs, rd.n_msgs, RAFT_MSG_APPEND, 2), 1);
    cr_assert_eq(count_msgs(rd.msgs, rd.n_msgs, RAFT_MSG_APPEND, 3), 1);
    cr_assert_eq(count_msgs(rd.msgs_after_persist, rd.n_msgs_after_persist, RAFT_MSG_APPEND, 0), 0);
    raft_index x = rd.entries[0].index;
    tn_process(&tn, 1, &rd);
    raft_advance(R(&tn, 1));
    const struct raft_message *app = tn_find(&tn, 1, 2, RAFT_MSG_APPEND);
    cr_assert_not_null(app);
    cr_assert_eq(raft_step(R(&tn, 2), app), 0);
    raft_ready(R(&tn, 2), &rd);
    cr_assert_eq(rd.n_entries, 1, "the follower persists x");
    cr_assert_eq(rd.entries[0].index, x);
    cr_assert_eq(count_msgs(rd.msgs, rd.n_msgs, RAFT_MSG_APPEND_RESP, 0), 0);
    cr_assert_eq(
        count_msgs(rd.msgs_after_persist, rd.n_msgs_after_persist, RAFT_MSG_APPEND_RESP, 1), 1);
    for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
        if (rd.msgs_after_persist[i].type == RAFT_MSG_APPEND_RESP) {
            cr_assert_not(rd.msgs_after_persist[i].reject);
            cr_assert_eq(rd.msgs_after_persist[i].index, x);
        }
    }
    tn_process(&tn, 2, &rd);
    raft_advance(R(&tn, 2));
    tn_deliver_all(&tn);
    cr_assert_eq(tn_applied_find(&tn, 3, "x"), x);
    cr_assert_eq(tn.sent_early[RAFT_MSG_APPEND_RESP], 0, "no APPEND_RESP ever left early");
    cr_assert_eq(tn.sent_after_persist[RAFT_MSG_APPEND], 0, "APPENDs never wait");
    tn_fini(&tn);
}

Test(raft_replication, append_with_a_gap_is_rejected_with_a_hint)
{
    /* P§5.3 / T§3.5 (the AppendEntries consistency check): a follower refuses entries
     * whose predecessor it does not hold, and hints at its last index. */
    struct tn tn;
    three_with_leader(&tn, 207);
    struct raft *r2 = R(&tn, 2);
    raft_index last = raft_last_index(r2);
    struct raft_message m = tn_msg(RAFT_MSG_APPEND, 1, 2, raft_term_of(r2));
    m.index = last + 5;
    m.log_term = raft_term_of(r2);
    m.commit = raft_commit_index(r2);
    struct raft_entry e = {
        .term = m.term, .index = last + 6, .data = (const uint8_t *)"z", .len = 1};
    m.entries = &e;
    m.n_entries = 1;
    tn_step(&tn, 2, &m);
    const struct raft_message *resp = tn_find(&tn, 2, 1, RAFT_MSG_APPEND_RESP);
    cr_assert_not_null(resp);
    cr_assert(resp->reject);
    cr_assert_leq(resp->reject_hint, last, "the hint is within the follower's log");
    cr_assert_eq(raft_last_index(r2), last, "nothing appended");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_replication, a_follower_that_lost_acknowledged_entries_is_repaired)
{
    /* Beyond the paper, which assumes durable storage never loses an acknowledged
     * entry: storage/wal cuts a damaged final batch like a torn write although it may
     * have been reported durable, and the follower restarts without entries the
     * leader's match counts. Its rejections (hint below match) must make the leader
     * probe lower, not at match + 1 forever. */
    struct tn tn;
    three_with_leader(&tn, 2301);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tn_propose(&tn, 1, "acked"), 0);
    }
    tn_deliver_all(&tn);
    raft_index last = raft_last_index(R(&tn, 1));
    cr_assert_eq(tn_persisted_last(&tn, 3), last);
    tn_stop(&tn, 3);
    /* Node 3 loses its last three entries with the hard state that came with them. */
    struct tn_storage *st = &tn.node[3].st;
    for (size_t i = st->log.n - 3; i < st->log.n; i++) {
        free(st->log.e[i].data);
    }
    st->log.n -= 3;
    st->hs.commit = last - 3;
    tn_forget_applied(&tn, 3, last - 3);
    tn_restart(&tn, 3);
    cr_assert_eq(tn_persisted_last(&tn, 3), last - 3);
    cr_assert_eq(tn_propose(&tn, 1, "after"), 0);
    tn_deliver_all(&tn);
    tn_run(&tn, 20);
    cr_assert_eq(tn_persisted_last(&tn, 3), last + 1, "node 3 was not repaired");
    cr_assert_eq(raft_commit_index(R(&tn, 3)), last + 1);
    cr_assert_neq(tn_applied_find(&tn, 3, "after"), 0);
    tn_fini(&tn);
}

Test(raft_replication, log_inconsistencies_are_repaired)
{
    /* P§5.3 / T§3.5 (Figure 3.6): the leader forces followers' logs to duplicate its own.
     * Node 2 holds extra uncommitted entries of an old term (they are truncated and
     * replaced); node 3 misses entries (they are back-filled). */
    static const raft_term l1[] = {1, 2, 2, 3, 3};
    static const raft_term l2[] = {1, 2, 2, 2, 2, 2, 2};
    static const raft_term l3[] = {1, 2};
    struct tn tn;
    tn_init(&tn, 3, 208);
    tn_start_state(&tn, 1, 3, 0, 2, l1, 5);
    tn_start_state(&tn, 2, 3, 0, 2, l2, 7);
    tn_start_state(&tn, 3, 3, 0, 2, l3, 2);
    cr_assert(tn_elect(&tn, 1));
    raft_index last = raft_last_index(R(&tn, 1));
    cr_assert_eq(last, 6, "the log plus the no-op");
    for (raft_id id = 2; id <= 3; id++) {
        cr_assert_eq(tn_persisted_last(&tn, id), last, "node %llu", (unsigned long long)id);
        for (raft_index i = 2; i <= last; i++) {
            cr_assert_eq(tn_persisted(&tn, id, i)->term, tn_persisted(&tn, 1, i)->term,
                         "node %llu entry %llu", (unsigned long long)id, (unsigned long long)i);
        }
        cr_assert_eq(raft_commit_index(R(&tn, id)), last);
    }
    cr_assert_eq(tn_persisted(&tn, 2, 4)->term, 3, "the old term-2 entry was replaced");
    tn_fini(&tn);
}

/* Fills out with runs of (term, count) pairs after entry 1 of term 1; returns the length. */
static size_t runs(raft_term *out, const raft_term (*run)[2], size_t n_runs)
{
    size_t n = 0;
    out[n++] = 1;
    for (size_t r = 0; r < n_runs; r++) {
        for (raft_term k = 0; k < run[r][1]; k++) {
            out[n++] = run[r][0];
        }
    }
    return n;
}

struct backoff_case {
    raft_term leader[3][2];
    size_t leader_runs;
    raft_term follower[3][2];
    size_t follower_runs;
    uint32_t rejects_max;
};

Test(raft_replication, fast_backoff_repairs_in_round_trips_per_term)
{
    /* P§5.3 (the optimization at the end of the section) / T§3.5: a follower that
     * rejects names the conflicting term and where it starts, so the leader skips a whole
     * term per round trip instead of one entry. Each follower below conflicts over ~100
     * entries; a few rejections must do. */
    static const struct backoff_case cases[] = {
        {{{3, 100}}, 1, {{2, 100}}, 1, 2},
        {{{2, 10}, {6, 80}}, 2, {{2, 10}, {4, 40}, {5, 40}}, 3, 3},
        {{{2, 10}, {3, 90}}, 2, {{2, 10}}, 1, 2},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        raft_term lt[128], ft[128];
        size_t ln = runs(lt, cases[c].leader, cases[c].leader_runs);
        size_t fn = runs(ft, cases[c].follower, cases[c].follower_runs);
        raft_term t = lt[ln - 1] > ft[fn - 1] ? lt[ln - 1] : ft[fn - 1];
        struct tn tn;
        tn_init(&tn, 3, 209 + c);
        tn_start_state(&tn, 1, t, 0, 1, lt, ln);
        tn_start_state(&tn, 2, t, 0, 1, ft, fn);
        tn_start_state(&tn, 3, t, 0, 1, lt, ln);
        cr_assert(tn_elect(&tn, 1), "case %zu", c);
        cr_assert_leq(tn.rejects[RAFT_MSG_APPEND_RESP], cases[c].rejects_max,
                      "case %zu: %u rejections", c, tn.rejects[RAFT_MSG_APPEND_RESP]);
        raft_index last = raft_last_index(R(&tn, 1));
        cr_assert_eq(raft_last_index(R(&tn, 2)), last, "case %zu: repaired", c);
        for (raft_index i = 2; i <= last; i++) {
            cr_assert_eq(raft_term_at(R(&tn, 2), i), raft_term_at(R(&tn, 1), i), "case %zu", c);
        }
        tn_fini(&tn);
    }
}

/* Proposes count entries of `bytes` bytes each on node 1, one ready per proposal. */
static void propose_each(struct tn *tn, int count, uint32_t bytes)
{
    char buf[4096];
    cr_assert_lt(bytes, sizeof(buf));
    for (int i = 0; i < count; i++) {
        memset(buf, 'a' + i % 26, bytes);
        buf[bytes] = 0;
        cr_assert_eq(tn_propose(tn, 1, buf), 0);
    }
}

Test(raft_replication, pipelining_stops_at_inflight_msgs_max)
{
    /* T§3.5 / T§10.2.2 (pipelining, bounded): in replicate state the leader sends new
     * entries without waiting, but never more than inflight_msgs_max APPENDs are
     * unanswered per peer; answers open the window again. */
    struct tn tn;
    tn_init(&tn, 3, 212);
    tn.cfg.inflight_msgs_max = 4;
    start_and_elect(&tn);
    struct raft_progress_info pi;
    cr_assert(raft_progress(R(&tn, 1), 2, &pi));
    cr_assert_eq(pi.state, RAFT_REPLICATE);
    cr_assert_eq(pi.inflight_msgs, 0);
    propose_each(&tn, 10, 8);
    cr_assert_eq(tn_queued(&tn, 1, 2, RAFT_MSG_APPEND), 4);
    cr_assert_eq(tn_queued(&tn, 1, 3, RAFT_MSG_APPEND), 4);
    cr_assert(raft_progress(R(&tn, 1), 2, &pi));
    cr_assert_eq(pi.inflight_msgs, 4);
    uint32_t to2 = tn.sent[1][2][RAFT_MSG_APPEND];
    tn_cut(&tn, 1, 2); /* 2 never answers */
    tn_deliver_all(&tn);
    cr_assert_eq(raft_last_index(R(&tn, 3)), raft_last_index(R(&tn, 1)), "3 answered, got all");
    cr_assert_eq(tn.sent[1][2][RAFT_MSG_APPEND], to2, "nothing more to the silent peer");
    cr_assert_eq(tn_applied_data_count(&tn, 3), 10);
    tn_fini(&tn);
}

Test(raft_replication, pipelining_stops_at_inflight_bytes_max)
{
    /* T§10.2.2 / raft.h (inflight_bytes_max): the window is bounded in entry bytes too:
     * with 300-byte entries and a 1000-byte window, sending stops after the window
     * fills (the message that crosses it may go). */
    struct tn tn;
    tn_init(&tn, 3, 213);
    tn.cfg.inflight_bytes_max = 1000;
    start_and_elect(&tn);
    propose_each(&tn, 10, 300);
    size_t sent = tn_queued(&tn, 1, 2, RAFT_MSG_APPEND);
    cr_assert(sent >= 3 && sent <= 4, "%zu APPENDs of 300 bytes in a 1000-byte window", sent);
    tn_deliver_all(&tn);
    cr_assert_eq(tn_applied_data_count(&tn, 2), 10, "acknowledgements reopen the window");
    tn_fini(&tn);
}

struct size_watch {
    uint64_t multi_bytes_max; /* largest APPEND to 2 with more than one entry */
    uint32_t single_big;      /* APPENDs to 2 carrying just the oversize entry */
    uint32_t entries;
};

static bool watch_sizes(struct tn *tn, struct raft_message *m, void *ctx)
{
    struct size_watch *w = ctx;
    if (m->type != RAFT_MSG_APPEND || m->to != 2) {
        return false;
    }
    uint64_t bytes = tn_msg_bytes(m);
    if (m->n_entries > 1 && bytes > w->multi_bytes_max) {
        w->multi_bytes_max = bytes;
    }
    w->single_big += m->n_entries == 1 && m->entries[0].len == 5000;
    w->entries += m->n_entries;
    return false;
}

Test(raft_replication, msg_bytes_max_limits_entry_bytes_per_append)
{
    /* T§10.2.2 / raft.h (msg_bytes_max): an APPEND carries at most msg_bytes_max bytes of
     * entries, except that one entry larger than that still goes, alone. */
    struct tn tn;
    tn_init(&tn, 3, 214);
    tn.cfg.msg_bytes_max = 1000;
    start_and_elect(&tn);
    struct size_watch w = {0};
    tn_set_tap(&tn, watch_sizes, &w);
    char buf[5001];
    memset(buf, 'm', 300);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(raft_propose(R(&tn, 1), buf, 300, NULL), 0);
    }
    tn_deliver_all(&tn);
    cr_assert_gt(w.multi_bytes_max, 0, "entries were batched");
    cr_assert_leq(w.multi_bytes_max, 1000);
    cr_assert_geq(w.entries, 10);
    cr_assert_eq(tn_applied_data_count(&tn, 2), 10);
    memset(buf, 'B', 5000);
    cr_assert_eq(raft_propose(R(&tn, 1), buf, 5000, NULL), 0);
    tn_deliver_all(&tn);
    cr_assert_eq(w.single_big, 1, "the oversize entry went alone");
    cr_assert_eq(tn_applied_data_count(&tn, 2), 11);
    tn_fini(&tn);
}

Test(raft_replication, probe_state_sends_one_append_at_a_time)
{
    /* T§3.5 / raft.h (progress states): a peer the leader is probing (here reported
     * unreachable) gets at most one APPEND until it answers, however many entries are
     * proposed; a peer in replicate state gets one per ready. After it answers, it
     * catches up. */
    struct tn tn;
    three_with_leader(&tn, 215);
    raft_report_unreachable(R(&tn, 1), 2);
    struct raft_progress_info pi;
    cr_assert(raft_progress(R(&tn, 1), 2, &pi));
    cr_assert_eq(pi.state, RAFT_PROBE);
    tn_cut(&tn, 1, 2);
    uint32_t to2 = tn.sent[1][2][RAFT_MSG_APPEND];
    uint32_t to3 = tn.sent[1][3][RAFT_MSG_APPEND];
    propose_each(&tn, 5, 8);
    cr_assert_leq(tn.sent[1][2][RAFT_MSG_APPEND] - to2, 1, "one probe at a time");
    cr_assert_eq(tn.sent[1][3][RAFT_MSG_APPEND] - to3, 5, "replicate state pipelines");
    tn_heal(&tn);
    tn_run(&tn, 3);
    cr_assert_eq(raft_last_index(R(&tn, 2)), raft_last_index(R(&tn, 1)));
    cr_assert(raft_progress(R(&tn, 1), 2, &pi));
    cr_assert_eq(pi.state, RAFT_REPLICATE, "back to replicate after a match");
    tn_fini(&tn);
}

Test(raft_replication, proposals_before_one_ready_make_one_append_per_follower)
{
    /* T§10.2.1 (batching): proposals made between two readies leave in one APPEND per
     * follower, and are persisted by the leader in one write. */
    struct tn tn;
    three_with_leader(&tn, 216);
    raft_index first = 0, idx = 0;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(raft_propose(R(&tn, 1), "b", 1, &idx), 0);
        if (i == 0) {
            first = idx;
        }
        cr_assert_eq(idx, first + (raft_index)i, "consecutive indexes");
    }
    struct raft_ready rd;
    raft_ready(R(&tn, 1), &rd);
    cr_assert_eq(rd.n_entries, 100);
    for (raft_id to = 2; to <= 3; to++) {
        cr_assert_eq(count_msgs(rd.msgs, rd.n_msgs, RAFT_MSG_APPEND, to), 1);
    }
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (rd.msgs[i].type == RAFT_MSG_APPEND) {
            cr_assert_eq(rd.msgs[i].n_entries, 100);
            cr_assert_eq(rd.msgs[i].entries[0].index, first);
        }
    }
    tn_process(&tn, 1, &rd);
    raft_advance(R(&tn, 1));
    tn_deliver_all(&tn);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_eq(tn_applied_data_count(&tn, id), 100);
    }
    tn_fini(&tn);
}

Test(raft_replication, append_from_an_old_term_is_refused)
{
    /* P§5.1 / T§3.3: a request with a stale term is rejected; the reply (if any) carries
     * the current term so that the stale leader steps down. */
    struct tn tn;
    three_with_leader(&tn, 217);
    struct raft *r2 = R(&tn, 2);
    raft_term t = raft_term_of(r2);
    raft_index last = raft_last_index(r2);
    struct raft_message m = tn_msg(RAFT_MSG_APPEND, 3, 2, t - 1);
    m.index = last;
    m.log_term = raft_term_at(r2, last);
    struct raft_entry e = {
        .term = t - 1, .index = last + 1, .data = (const uint8_t *)"old", .len = 3};
    m.entries = &e;
    m.n_entries = 1;
    tn_step(&tn, 2, &m);
    cr_assert_eq(raft_last_index(r2), last, "nothing appended");
    cr_assert_eq(raft_term_of(r2), t);
    cr_assert_eq(raft_leader(r2), 1);
    const struct raft_message *resp = tn_find(&tn, 2, 3, RAFT_MSG_APPEND_RESP);
    cr_assert(resp == NULL || resp->term == t, "a reply names the current term");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_replication, malformed_messages_are_refused_with_eproto)
{
    /* raft.h (raft_step: 0, TS_ENOMEM, TS_EPROTO): a message no correct peer sends (an
     * unknown type, entries that do not follow the index they claim to follow, a
     * snapshot message without metadata) is refused and changes nothing. */
    struct tn tn;
    three_with_leader(&tn, 218);
    struct raft *r2 = R(&tn, 2);
    raft_term t = raft_term_of(r2);
    raft_index last = raft_last_index(r2), commit = raft_commit_index(r2);
    struct raft_message bad[3];
    bad[0] = tn_msg(RAFT_MSG_HEARTBEAT, 1, 2, t);
    bad[0].type = RAFT_MSG_TYPES_;
    bad[1] = tn_msg(RAFT_MSG_APPEND, 1, 2, t);
    bad[1].index = last;
    bad[1].log_term = raft_term_at(r2, last);
    bad[1].commit = commit;
    struct raft_entry gap[2] = {
        {.term = t, .index = last + 1, .data = (const uint8_t *)"g", .len = 1},
        {.term = t, .index = last + 3, .data = (const uint8_t *)"h", .len = 1},
    };
    bad[1].entries = gap;
    bad[1].n_entries = 2;
    bad[2] = tn_msg(RAFT_MSG_SNAPSHOT, 1, 2, t);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(raft_step(r2, &bad[i]), TS_EPROTO, "message %d", i);
        cr_assert_eq(raft_last_index(r2), last, "message %d", i);
        cr_assert_eq(raft_term_of(r2), t);
        cr_assert_eq(raft_commit_index(r2), commit);
    }
    tn_ready_all(&tn);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}
