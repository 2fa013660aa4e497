/*
 * core/raft: log compaction and snapshots (P§7 / T§5): raft_compact, InstallSnapshot to a
 * follower whose next entry was compacted (T§5.1, T§5.3), stale snapshots, failed and
 * unanswered snapshot sends.
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

Test(raft_snapshot, compact_drops_entries_up_to_the_applied_index_only)
{
    /* P§7 / T§5.1: entries covered by the state machine's persisted image are dropped
     * from the log; the term of the last one is kept (for the consistency check); the
     * log cannot be compacted past what was applied. */
    struct tn tn;
    tn_init(&tn, 3, 501);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tn_propose(&tn, 1, "c"), 0);
    }
    tn_deliver_all(&tn);
    struct raft *r = R(&tn, 1);
    raft_index applied = raft_applied_index(r);
    cr_assert_eq(applied, raft_last_index(r));
    cr_assert_eq(raft_first_index(r), 1);
    raft_term t = raft_term_at(r, applied - 2);
    size_t bytes = raft_memory_bytes(r);
    cr_assert_eq(tn_compact(&tn, 1, applied + 1), TS_EINVAL, "beyond applied");
    cr_assert_eq(raft_first_index(r), 1);
    cr_assert_eq(tn_compact(&tn, 1, applied - 2), 0);
    cr_assert_eq(raft_first_index(r), applied - 1);
    cr_assert_eq(raft_last_index(r), applied);
    cr_assert_eq(raft_term_at(r, applied - 2), t, "the compaction point keeps its term");
    cr_assert_eq(raft_term_at(r, applied - 3), 0, "older terms are gone");
    cr_assert_leq(raft_memory_bytes(r), bytes);
    cr_assert_eq(tn_compact(&tn, 1, applied), 0);
    cr_assert_eq(raft_first_index(r), applied + 1, "everything applied can go");
    cr_assert_eq(tn_propose(&tn, 1, "after"), 0);
    tn_deliver_all(&tn);
    cr_assert_neq(tn_applied_find(&tn, 2, "after"), 0);
    tn_restart(&tn, 1);
    cr_assert_eq(raft_first_index(R(&tn, 1)), applied + 1, "a restart keeps the compaction");
    tn_fini(&tn);
}

struct snap_watch {
    uint32_t seen;
    uint32_t drop; /* drop the first `drop` snapshots */
    struct raft_snapshot_meta meta;
};

static bool watch_snapshots(struct tn *tn, struct raft_message *m, void *ctx)
{
    struct snap_watch *w = ctx;
    if (m->type != RAFT_MSG_SNAPSHOT) {
        return false;
    }
    w->meta = *m->snapshot;
    return w->seen++ < w->drop;
}

/* Node 3 is cut off (and reported unreachable, as the shard would); the leader commits
 * six entries and compacts everything it applied. Returns the compaction index. */
static raft_index behind_compaction(struct tn *tn, uint64_t seed)
{
    tn_init(tn, 3, seed);
    tn_start(tn);
    cr_assert(tn_elect(tn, 1));
    tn_isolate(tn, 3);
    raft_report_unreachable(R(tn, 1), 3);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(tn_propose(tn, 1, i % 2 ? "s-odd" : "s-even"), 0);
    }
    tn_deliver_all(tn);
    raft_index applied = raft_applied_index(R(tn, 1));
    cr_assert_gt(applied, raft_last_index(R(tn, 3)));
    cr_assert_eq(tn_compact(tn, 1, applied), 0);
    return applied;
}

Test(raft_snapshot, follower_behind_the_compaction_gets_a_snapshot_and_resumes)
{
    /* P§7 / T§5.1, T§5.3: the leader sends InstallSnapshot when a follower's next entry
     * was compacted; the metadata names the leader's applied index, its term and the
     * configuration as of that index. The follower installs it (rd.snapshot), its log
     * restarts after it, and replication continues from there. */
    struct tn tn;
    raft_index applied = behind_compaction(&tn, 502);
    struct snap_watch w = {0};
    tn_heal(&tn);
    tn_set_tap(&tn, watch_snapshots, &w);
    tn_run(&tn, 5);
    cr_assert_eq(w.seen, 1, "one snapshot");
    cr_assert_geq(w.meta.index, applied);
    cr_assert_eq(w.meta.term, raft_term_at(R(&tn, 1), w.meta.index));
    cr_assert_eq(w.meta.conf.n, 3);
    for (raft_id id = 1; id <= 3; id++) {
        cr_assert_eq(raft_conf_role(&w.meta.conf, id), RAFT_VOTER);
    }
    cr_assert_eq(tn.node[3].st.snapshots_installed, 1);
    cr_assert_eq(tn.node[3].st.compact_index, w.meta.index);
    cr_assert_eq(raft_first_index(R(&tn, 3)), w.meta.index + 1);
    cr_assert_eq(raft_applied_index(R(&tn, 3)), raft_applied_index(R(&tn, 1)));
    cr_assert_eq(tn_propose(&tn, 1, "resumed"), 0);
    tn_deliver_all(&tn);
    cr_assert_neq(tn_applied_find(&tn, 3, "resumed"), 0, "replication resumed");
    cr_assert_neq(tn_applied_find(&tn, 3, "s-even"), 0, "the state came with the snapshot");
    tn_restart(&tn, 3);
    cr_assert_eq(raft_first_index(R(&tn, 3)), w.meta.index + 1, "installed durably");
    tn_fini(&tn);
}

Test(raft_snapshot, stale_snapshot_is_ignored)
{
    /* T§5.3 (InstallSnapshot receiver): a snapshot that does not go beyond what the
     * follower has committed is ignored: nothing to install, the log is unchanged. */
    struct tn tn;
    tn_init(&tn, 3, 503);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tn_propose(&tn, 1, "x"), 0);
    }
    tn_deliver_all(&tn);
    tn_tick(&tn, 1, 1);
    tn_deliver_all(&tn);
    struct raft *r2 = R(&tn, 2);
    raft_index commit = raft_commit_index(r2), last = raft_last_index(r2);
    struct raft_snapshot_meta meta = {
        .index = commit - 1, .term = raft_term_at(r2, commit - 1), .conf = *raft_conf_of(r2)};
    struct raft_message m = tn_msg(RAFT_MSG_SNAPSHOT, 1, 2, raft_term_of(r2));
    m.snapshot = &meta;
    tn_step(&tn, 2, &m); /* tn_process fails the test if raft asks to install it */
    cr_assert_eq(tn.node[2].st.snapshots_installed, 0);
    cr_assert_eq(raft_first_index(r2), 1);
    cr_assert_eq(raft_last_index(r2), last);
    cr_assert_eq(raft_commit_index(r2), commit);
    tn_drop_queue(&tn);
    tn_fini(&tn);
}

Test(raft_snapshot, failed_snapshot_returns_the_peer_to_probe_and_is_sent_again)
{
    /* T§5.3 / raft.h (raft_report_snapshot): when the caller reports that sending the
     * snapshot failed, the leader returns the peer to probing, and a later probe leads to
     * a new snapshot. */
    struct tn tn;
    behind_compaction(&tn, 504);
    struct snap_watch w = {.drop = 1};
    tn_heal(&tn);
    tn_set_tap(&tn, watch_snapshots, &w);
    for (uint32_t i = 0; i < 5 && w.seen == 0; i++) {
        tn_run(&tn, 1);
    }
    cr_assert_eq(w.seen, 1);
    struct raft_progress_info pi;
    cr_assert(raft_progress(R(&tn, 1), 3, &pi));
    cr_assert_eq(pi.state, RAFT_SNAPSHOT);
    raft_report_snapshot(R(&tn, 1), 3, true);
    cr_assert(raft_progress(R(&tn, 1), 3, &pi));
    cr_assert_eq(pi.state, RAFT_PROBE);
    tn_run(&tn, 5);
    cr_assert_eq(w.seen, 2, "sent again");
    cr_assert_eq(tn.node[3].st.snapshots_installed, 1);
    cr_assert_eq(raft_applied_index(R(&tn, 3)), raft_applied_index(R(&tn, 1)));
    tn_fini(&tn);
}

Test(raft_snapshot, unanswered_snapshot_is_retried_after_the_timeout)
{
    /* raft.h (snapshot_timeout_ticks): a snapshot that gets no answer (lost on the way,
     * no failure reported) is sent again once snapshot_timeout_ticks have passed, not
     * before. */
    struct tn tn;
    tn_init(&tn, 3, 505);
    tn.cfg.snapshot_timeout_ticks = 20;
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    tn_isolate(&tn, 3);
    raft_report_unreachable(R(&tn, 1), 3);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tn_propose(&tn, 1, "t"), 0);
    }
    tn_deliver_all(&tn);
    cr_assert_eq(tn_compact(&tn, 1, raft_applied_index(R(&tn, 1))), 0);
    struct snap_watch w = {.drop = 1};
    tn_heal(&tn);
    tn_set_tap(&tn, watch_snapshots, &w);
    for (uint32_t i = 0; i < 5 && w.seen == 0; i++) {
        tn_run(&tn, 1);
    }
    cr_assert_eq(w.seen, 1);
    tn_run(&tn, 15);
    cr_assert_eq(w.seen, 1, "not retried before the timeout");
    for (uint32_t i = 0; i < 20 && w.seen == 1; i++) {
        tn_run(&tn, 1);
    }
    cr_assert_eq(w.seen, 2, "retried after snapshot_timeout_ticks");
    tn_run(&tn, 2);
    cr_assert_eq(tn.node[3].st.snapshots_installed, 1);
    cr_assert_eq(raft_applied_index(R(&tn, 3)), raft_applied_index(R(&tn, 1)));
    tn_fini(&tn);
}

Test(raft_snapshot, snapshot_matching_the_log_fast_forwards_the_commit)
{
    /* T§5.3 (InstallSnapshot receiver, step 6): if the follower's log already holds the
     * snapshot's last entry (same index and term), it keeps its log and only learns that
     * the entries up to there are committed: no installation (rd.snapshot) is asked. */
    struct tn tn;
    tn_init(&tn, 3, 506);
    tn_start(&tn);
    cr_assert(tn_elect(&tn, 1));
    cr_assert_eq(tn_propose(&tn, 1, "a"), 0);
    cr_assert_eq(tn_propose(&tn, 1, "b"), 0);
    tn_deliver_round(&tn); /* 2 and 3 store a and b */
    tn_drop_queue(&tn);    /* but never hear that they are committed */
    struct raft *r2 = R(&tn, 2);
    raft_index last = raft_last_index(r2);
    cr_assert_lt(raft_commit_index(r2), last);
    struct raft_snapshot_meta meta = {
        .index = last, .term = raft_term_at(r2, last), .conf = *raft_conf_of(r2)};
    struct raft_message m = tn_msg(RAFT_MSG_SNAPSHOT, 1, 2, raft_term_of(r2));
    m.snapshot = &meta;
    tn_step(&tn, 2, &m); /* tn_process fails the test if raft asks to install it */
    cr_assert_eq(tn.node[2].st.snapshots_installed, 0);
    cr_assert_eq(raft_commit_index(r2), last);
    cr_assert_eq(raft_first_index(r2), 1, "the log was kept");
    cr_assert_neq(tn_applied_find(&tn, 2, "b"), 0, "applied from its own log");
    tn_drop_queue(&tn);
    tn_fini(&tn);
}
