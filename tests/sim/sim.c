/*
 * tests/sim/sim.c: the cluster, the network, the disks and the node loop (see sim.h).
 *
 * One step of the loop: scripted faults (or the heal at step H), node restarts, message
 * delivery into the replicas' inboxes, disk syncs that complete, node ticks (node
 * heartbeats, the failure detector, compaction), clients, membership churn, removal of
 * replicas no longer in their group, and last the pump: every replica with input steps
 * its inbox, takes its owed ticks and, if raft has a ready, handles it.
 */
#include "tests/sim/sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/assert.h"
#include "core/util/err.h"
#include "tests/sim/lincheck.h"

static uint64_t below(struct sim *s, uint64_t n)
{
    TS_ASSERT(n > 0);
    return ts_rand_below(&s->rand, n);
}

static uint32_t pick(struct sim *s, uint32_t lo, uint32_t hi)
{
    TS_ASSERT(lo <= hi);
    return lo + (uint32_t)below(s, (uint64_t)hi - lo + 1);
}

static bool chance(struct sim *s, uint64_t num, uint64_t den)
{
    return ts_rand_chance(&s->rand, num, den) != 0;
}

void sim_trace(struct sim *s, const char *fmt, ...)
{
    if (!s->opt.trace) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("%7llu ", (unsigned long long)s->step);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

struct sim_replica *sim_rep(struct sim *s, uint32_t node, uint32_t gidx)
{
    TS_ASSERT(node < s->p.nodes);
    TS_ASSERT(gidx < s->p.groups);
    return &s->reps[(size_t)node * s->p.groups + gidx];
}

uint32_t sim_id_node(const struct sim *s, raft_id id)
{
    TS_ASSERT(id != 0);
    return (uint32_t)((id - 1) % s->p.nodes);
}

bool sim_rep_ready_for_input(const struct sim_replica *p)
{
    return p->r != NULL && !p->in_ready;
}

void sim_mark_dirty(struct sim *s, struct sim_replica *p)
{
    if (p->dirty) {
        return;
    }
    /* While pump_dirty() walks the list, pumped replicas may be marked again: each
     * replica is at most once before and once after the walked prefix. */
    TS_ASSERT(s->n_dirty < 2 * s->p.nodes * s->p.groups);
    p->dirty = true;
    s->dirty[s->n_dirty++] = p;
}

/* ---------------------------------------------------------------------------------- */
/* Parameters from the seed.                                                           */

static uint32_t pick_of(struct sim *s, const uint32_t *v, uint32_t n)
{
    return v[below(s, n)];
}

static void params_network(struct sim *s)
{
    static const uint32_t drops[] = {0, 0, 10000, 50000, 200000};
    static const uint32_t dups[] = {0, 10000, 50000};
    static const uint32_t spikes[] = {0, 0, 20000, 100000};
    struct sim_params *p = &s->p;
    p->drop_ppm = pick_of(s, drops, 5);
    p->dup_ppm = pick_of(s, dups, 3);
    p->spike_ppm = pick_of(s, spikes, 4);
    p->delay_max = pick(s, 1, p->tick_steps * 2);
    p->spike_max = p->tick_steps * p->election_ticks;
}

static void params_sizes(struct sim *s)
{
    struct sim_params *p = &s->p;
    bool lg = s->opt.long_mode;
    if (lg) {
        p->nodes = pick(s, 3, SIM_NODES_MAX);
        p->groups = pick(s, 4, 64);
        p->clients = pick(s, 2, 24);
    } else {
        p->nodes = chance(s, 1, 5) ? pick(s, 6, 7) : pick(s, 3, 5);
        p->groups = pick(s, 4, 16);
        p->clients = pick(s, 2, 10);
    }
    p->keys = pick(s, 2, SIM_KEYS_MAX);
    if (s->opt.nodes != 0) {
        p->nodes = s->opt.nodes;
    }
    if (s->opt.groups != 0) {
        p->groups = s->opt.groups;
    }
}

static void params_from_seed(struct sim *s)
{
    static const uint32_t msg_bytes[] = {256, 4096, 1u << 20};
    static const uint32_t inflight[] = {2, 16, 256};
    struct sim_params *p = &s->p;
    params_sizes(s);
    p->election_ticks = pick(s, 3, 12);
    p->heartbeat_ticks = chance(s, 1, 5) ? pick(s, 1, p->election_ticks - 1) : pick(s, 1, 2);
    p->drift_ticks = pick(s, 1, p->election_ticks - 1 < 3 ? p->election_ticks - 1 : 3);
    p->tick_steps = pick(s, 4, 8);
    p->et_steps = (uint64_t)p->election_ticks * p->tick_steps;
    p->heal_step = p->et_steps * (s->opt.long_mode ? pick(s, 60, 200) : pick(s, 25, 50));
    p->live_bound_steps = p->et_steps * 30;
    p->end_step = p->heal_step + p->live_bound_steps + p->et_steps;
    params_network(s);
    p->sync_now_pct = pick(s, 10, 60);
    p->sync_max = pick(s, 1, p->tick_steps * 2);
    p->fault_gap_steps = (uint32_t)p->et_steps * pick(s, 1, 5);
    p->churn_gap_steps = chance(s, 3, 5) ? (uint32_t)p->et_steps * pick(s, 1, 3) / 2 : 0;
    p->compact_ticks = chance(s, 4, 5) ? pick(s, 3, 40) : 0;
    p->compact_gap = pick(s, 0, 20);
    p->op_timeout_steps = (uint32_t)p->et_steps * 3;
    p->think_max = p->tick_steps * 2;
    p->msg_bytes_max = pick_of(s, msg_bytes, 3);
    p->inflight_msgs_max = pick_of(s, inflight, 3);
    p->promote_lag_max = pick(s, 5, 200);
    p->snapshot_timeout_ticks = pick(s, 2, 10) * p->election_ticks;
    p->torn = chance(s, 1, 2);
}

/* ---------------------------------------------------------------------------------- */
/* The durable log.                                                                    */

static raft_index log_last(const struct sim_durable *d)
{
    return d->log.n > 0 ? d->log.e[d->log.n - 1].index : d->image.applied;
}

static void log_reserve(struct sim_log *l, size_t n)
{
    if (n <= l->cap) {
        return;
    }
    size_t cap = l->cap < 16 ? 16 : l->cap;
    while (cap < n) {
        cap *= 2;
    }
    struct sim_entry *e = realloc(l->e, cap * sizeof(*e));
    TS_ASSERT(e != NULL);
    l->e = e;
    l->cap = cap;
}

static void log_free(struct sim_log *l)
{
    free(l->e);
    memset(l, 0, sizeof(*l));
}

/* Drops the durable entries at or below index (the image covers them). */
static void log_drop_prefix(struct sim_durable *d, raft_index index)
{
    struct sim_log *l = &d->log;
    size_t k = 0;
    while (k < l->n && l->e[k].index <= index) {
        k++;
    }
    memmove(l->e, l->e + k, (l->n - k) * sizeof(*l->e));
    l->n -= k;
    TS_ASSERT(l->n == 0 || l->e[0].index == index + 1);
}

static void entry_copy(struct sim_entry *dst, const struct raft_entry *src)
{
    dst->term = src->term;
    dst->index = src->index;
    dst->len = src->len;
    dst->type = src->type;
    if (src->len > 0) {
        memcpy(dst->data, src->data, src->len);
    }
}

static bool entries_check(struct sim *s, struct sim_replica *p, const struct raft_entry *ents,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ents[i].len > SIM_ENTRY_DATA_MAX || (ents[i].len > 0 && ents[i].data == NULL)) {
            sim_fail(s, "sim", "group %llu replica %llu: entry %llu has %u bytes",
                     (unsigned long long)p->group->id, (unsigned long long)p->id,
                     (unsigned long long)ents[i].index, ents[i].len);
            return false;
        }
        if (i > 0 && ents[i].index != ents[i - 1].index + 1) {
            sim_fail(s, "log", "group %llu replica %llu: entries not contiguous at %llu",
                     (unsigned long long)p->group->id, (unsigned long long)p->id,
                     (unsigned long long)ents[i].index);
            return false;
        }
    }
    return true;
}

/* Writes entries (a ready's, or a torn prefix of them): drop the durable suffix from the
 * first index, then append. */
static void log_write(struct sim *s, struct sim_replica *p, const struct raft_entry *ents, size_t n)
{
    struct sim_durable *d = &p->dur;
    TS_ASSERT(n > 0);
    if (!entries_check(s, p, ents, n)) {
        return;
    }
    raft_index first = ents[0].index;
    if (first <= d->image.applied || first > log_last(d) + 1) {
        sim_fail(s, "log",
                 "group %llu replica %llu: ready persists entries from %llu but the disk "
                 "holds image %llu and entries up to %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)first, (unsigned long long)d->image.applied,
                 (unsigned long long)log_last(d));
        return;
    }
    size_t keep = (size_t)(first - d->image.applied - 1);
    TS_ASSERT(keep <= d->log.n);
    d->log.n = keep;
    log_reserve(&d->log, keep + n);
    for (size_t i = 0; i < n; i++) {
        entry_copy(&d->log.e[keep + i], &ents[i]);
    }
    d->log.n = keep + n;
    d->exists = true;
}

/* ---------------------------------------------------------------------------------- */
/* Snapshot payloads received and not installed yet.                                   */

static void stash_put(struct sim_replica *p, raft_index index, const struct sim_sm *sm)
{
    struct sim_stash *st = &p->stash[p->stash_next % SIM_STASH_MAX];
    p->stash_next++;
    st->used = true;
    st->index = index;
    st->sm = *sm;
}

static const struct sim_stash *stash_find(const struct sim_replica *p, raft_index index)
{
    for (uint32_t i = 0; i < SIM_STASH_MAX; i++) {
        if (p->stash[i].used && p->stash[i].index == index) {
            return &p->stash[i];
        }
    }
    return NULL;
}

static bool conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (uint32_t i = 0; i < a->n; i++) {
        if (a->m[i].id != b->m[i].id || a->m[i].role != b->m[i].role) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------------------------- */
/* Persisting a ready: records in order snapshot, entries, hard state. A crash keeps a */
/* prefix of them (a torn tail); a completed sync keeps all.                           */

static size_t ready_records(const struct raft_ready *rd)
{
    return (rd->snapshot != NULL ? 1u : 0u) + rd->n_entries + (rd->hard_state_changed ? 1u : 0u);
}

static void dur_snapshot(struct sim *s, struct sim_replica *p)
{
    const struct raft_snapshot_meta *meta = p->rd.snapshot;
    const struct sim_stash *st = stash_find(p, meta->index);
    TS_ASSERT(st != NULL); /* checked when the ready was taken */
    struct sim_durable *d = &p->dur;
    d->image = st->sm;
    d->image.conf = meta->conf;
    d->image.applied_term = meta->term;
    d->log.n = 0;
    if (d->hs.commit < meta->index) {
        d->hs.commit = meta->index; /* the image is committed state */
    }
    d->exists = true;
    (void)s;
}

static void dur_hard_state(struct sim *s, struct sim_replica *p)
{
    const struct raft_hard_state *hs = &p->rd.hard_state;
    struct sim_durable *d = &p->dur;
    if (hs->term < d->hs.term ||
        (hs->term == d->hs.term && d->hs.vote != 0 && hs->vote != d->hs.vote)) {
        sim_fail(s, "hard-state",
                 "group %llu replica %llu: persisted term %llu vote %llu over term %llu vote %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)hs->term, (unsigned long long)hs->vote,
                 (unsigned long long)d->hs.term, (unsigned long long)d->hs.vote);
    }
    if (hs->commit > log_last(d)) {
        sim_fail(s, "hard-state",
                 "group %llu replica %llu: persisted commit %llu beyond the durable log (%llu)",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)hs->commit, (unsigned long long)log_last(d));
    }
    d->hs = *hs;
    d->exists = true;
}

static void dur_persist(struct sim *s, struct sim_replica *p, size_t nrec)
{
    const struct raft_ready *rd = &p->rd;
    size_t k = 0;
    if (rd->snapshot != NULL) {
        if (k >= nrec) {
            return;
        }
        dur_snapshot(s, p);
        k++;
    }
    if (rd->n_entries > 0) {
        size_t take = nrec - k < rd->n_entries ? nrec - k : rd->n_entries;
        if (take > 0) {
            log_write(s, p, rd->entries, take);
        }
        k += take;
        if (take < rd->n_entries) {
            return;
        }
    }
    if (rd->hard_state_changed && k < nrec) {
        dur_hard_state(s, p);
    }
}

/* ---------------------------------------------------------------------------------- */
/* The network.                                                                        */

static bool msg_before(const struct sim_msg *a, const struct sim_msg *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void msg_free(struct sim_msg *m)
{
    free(m);
}

static void heap_push(struct sim *s, struct sim_msg *m)
{
    struct sim_net *net = &s->net;
    if (net->n >= SIM_NET_MSGS_MAX) {
        s->st.msgs_dropped++;
        msg_free(m);
        return;
    }
    m->seq = ++net->seq;
    uint32_t i = net->n++;
    while (i > 0) {
        uint32_t up = (i - 1) / 2;
        if (!msg_before(m, net->heap[up])) {
            break;
        }
        net->heap[i] = net->heap[up];
        i = up;
    }
    net->heap[i] = m;
}

static struct sim_msg *heap_pop(struct sim *s)
{
    struct sim_net *net = &s->net;
    TS_ASSERT(net->n > 0);
    struct sim_msg *top = net->heap[0];
    struct sim_msg *last = net->heap[--net->n];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= net->n) {
            break;
        }
        if (c + 1 < net->n && msg_before(net->heap[c + 1], net->heap[c])) {
            c++;
        }
        if (!msg_before(net->heap[c], last)) {
            break;
        }
        net->heap[i] = net->heap[c];
        i = c;
    }
    if (net->n > 0) {
        net->heap[i] = last;
    }
    return top;
}

static struct sim_msg *msg_new(uint32_t n)
{
    size_t bytes =
        sizeof(struct sim_msg) + n * (sizeof(struct raft_entry) + sizeof(struct sim_entry));
    struct sim_msg *m = malloc(bytes);
    TS_ASSERT(m != NULL);
    memset(m, 0, sizeof(*m));
    m->n = n;
    m->views = (struct raft_entry *)(m + 1);
    m->ents = (struct sim_entry *)(m->views + n);
    return m;
}

static struct sim_msg *msg_copy_raft(struct sim_replica *p, const struct raft_message *src)
{
    struct sim_msg *m = msg_new(src->n_entries);
    m->kind = SIM_MSG_RAFT;
    m->m = *src;
    m->m.entries = src->n_entries > 0 ? m->views : NULL;
    for (uint32_t i = 0; i < src->n_entries; i++) {
        entry_copy(&m->ents[i], &src->entries[i]);
        m->views[i] = src->entries[i];
        m->views[i].data = m->ents[i].data;
    }
    if (src->snapshot != NULL) {
        m->meta = *src->snapshot;
        m->m.snapshot = &m->meta;
        m->snap = p->sm;
    }
    return m;
}

static struct sim_msg *msg_clone(const struct sim_msg *src)
{
    struct sim_msg *m = msg_new(src->n);
    memcpy(m, src, sizeof(*m));
    m->views = (struct raft_entry *)(m + 1);
    m->ents = (struct sim_entry *)(m->views + m->n);
    memcpy(m->ents, src->ents, m->n * sizeof(*m->ents));
    for (uint32_t i = 0; i < m->n; i++) {
        m->views[i] = src->views[i];
        m->views[i].data = m->ents[i].data;
    }
    m->m.entries = m->n > 0 ? m->views : NULL;
    if (src->m.snapshot != NULL) {
        m->m.snapshot = &m->meta;
    }
    return m;
}

static uint64_t net_delay(struct sim *s)
{
    struct sim_net *net = &s->net;
    uint64_t d = net->delay_min + below(s, (uint64_t)net->delay_max - net->delay_min + 1);
    if (net->spike_ppm > 0 && below(s, 1000000) < net->spike_ppm) {
        d += below(s, net->spike_max + 1);
    }
    return d;
}

/* Sends m (owned) from node `from` to `to` through the faults. Returns false if it was
 * dropped for a reason the sender's transport would notice (peer down or cut off). */
static bool net_send(struct sim *s, struct sim_msg *m, uint32_t from, uint32_t to)
{
    struct sim_net *net = &s->net;
    s->st.msgs_sent++;
    m->from = from;
    m->to = to;
    m->from_inc = s->nodes[from].inc;
    m->to_inc = s->nodes[to].inc;
    if (!s->nodes[to].up || net->cut[from][to]) {
        s->st.msgs_dropped++;
        msg_free(m);
        return false;
    }
    if (net->drop_ppm > 0 && below(s, 1000000) < net->drop_ppm) {
        s->st.msgs_dropped++;
        msg_free(m);
        return true;
    }
    if (net->dup_ppm > 0 && below(s, 1000000) < net->dup_ppm) {
        struct sim_msg *d = msg_clone(m);
        d->at = s->step + net_delay(s);
        heap_push(s, d);
    }
    m->at = s->step + net_delay(s);
    heap_push(s, m);
    return true;
}

static void trace_msg(struct sim *s, const char *what, const struct raft_message *m)
{
    if (!s->opt.trace) {
        return;
    }
    sim_trace(s, "%s g%llu %s %llu->%llu t%llu lt%llu i%llu c%llu n%u%s%s ctx%llu", what,
              (unsigned long long)m->group_id, raft_msg_type_name((enum raft_msg_type)m->type),
              (unsigned long long)m->from, (unsigned long long)m->to, (unsigned long long)m->term,
              (unsigned long long)m->log_term, (unsigned long long)m->index,
              (unsigned long long)m->commit, m->n_entries, m->reject ? " reject" : "",
              m->quiesce ? " quiesce" : "", (unsigned long long)m->context);
}

static void net_send_raft(struct sim *s, struct sim_replica *p, const struct raft_message *m)
{
    if (m->to == 0 || m->to == p->id || m->from != p->id || m->group_id != p->group->id) {
        sim_fail(s, "sim", "group %llu replica %llu sent a message from %llu to %llu of group %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)m->from, (unsigned long long)m->to,
                 (unsigned long long)m->group_id);
        return;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        if (m->snapshot == NULL || m->snapshot->index != p->sm.applied) {
            sim_fail(s, "snapshot",
                     "group %llu replica %llu: snapshot message index %llu, applied %llu",
                     (unsigned long long)p->group->id, (unsigned long long)p->id,
                     (unsigned long long)(m->snapshot ? m->snapshot->index : 0),
                     (unsigned long long)p->sm.applied);
            return;
        }
        s->st.snapshots_sent++;
    }
    trace_msg(s, "send", m);
    uint32_t to = sim_id_node(s, m->to);
    struct sim_msg *copy = msg_copy_raft(p, m);
    if (!net_send(s, copy, p->node->idx, to) && m->type == RAFT_MSG_SNAPSHOT) {
        p->snap_failed[to] = m->to;
    }
}

static void net_send_hb(struct sim *s, uint32_t from, uint32_t to)
{
    struct sim_msg *m = msg_new(0);
    m->kind = SIM_MSG_NODE_HB;
    (void)net_send(s, m, from, to);
}

static void deliver_raft(struct sim *s, struct sim_msg *m)
{
    uint64_t gid = m->m.group_id;
    if (gid == 0 || gid > s->p.groups) {
        msg_free(m);
        return;
    }
    struct sim_replica *p = sim_rep(s, m->to, (uint32_t)(gid - 1));
    /* A message for an earlier incarnation of this slot (another id) is dropped. */
    if (!p->hosted || p->r == NULL || p->id != m->m.to || p->n_inbox >= SIM_INBOX_MAX) {
        s->st.msgs_dropped++;
        msg_free(m);
        return;
    }
    s->st.msgs_delivered++;
    p->inbox[p->n_inbox++] = m;
    sim_mark_dirty(s, p);
}

static void deliver_one(struct sim *s, struct sim_msg *m)
{
    const struct sim_node *src = &s->nodes[m->from];
    struct sim_node *dst = &s->nodes[m->to];
    if (!dst->up || dst->inc != m->to_inc || src->inc != m->from_inc ||
        s->net.cut[m->from][m->to]) {
        s->st.msgs_dropped++;
        msg_free(m);
        return;
    }
    if (s->net.clog[m->from][m->to] > 0) {
        m->at = s->step + 1 + below(s, s->p.tick_steps * 2u);
        heap_push(s, m);
        return;
    }
    if (m->kind == SIM_MSG_NODE_HB) {
        dst->heard[m->from] = dst->ticks;
        msg_free(m);
        return;
    }
    deliver_raft(s, m);
}

static void net_deliver(struct sim *s)
{
    for (uint32_t guard = 0; guard < SIM_NET_MSGS_MAX && s->net.n > 0; guard++) {
        if (s->net.heap[0]->at > s->step) {
            return;
        }
        deliver_one(s, heap_pop(s));
    }
}

/* ---------------------------------------------------------------------------------- */
/* Replica lifecycle.                                                                  */

static void rep_config(struct sim *s, struct sim_replica *p, struct raft_config *c)
{
    raft_config_default(c);
    c->group_id = p->group->id;
    c->id = p->id;
    c->election_ticks = s->p.election_ticks;
    c->heartbeat_ticks = s->p.heartbeat_ticks;
    c->pre_vote = true;
    c->check_quorum = true;
    c->lease_reads = true;
    c->lease_drift_ticks = s->p.drift_ticks;
    c->msg_bytes_max = s->p.msg_bytes_max;
    c->inflight_msgs_max = s->p.inflight_msgs_max;
    c->promote_lag_max = s->p.promote_lag_max;
    c->snapshot_timeout_ticks = s->p.snapshot_timeout_ticks;
    c->rand = &p->node->rand;
    c->alloc = ts_allocator_default();
}

static void rep_start(struct sim *s, struct sim_replica *p)
{
    TS_ASSERT(p->r == NULL);
    TS_ASSERT(p->hosted);
    struct raft_config c;
    rep_config(s, p, &c);
    const struct sim_durable *d = &p->dur;
    struct raft_initial init;
    memset(&init, 0, sizeof(init));
    struct raft_entry *views = NULL;
    if (!d->exists) {
        init.bootstrap = p->boot ? &p->group->boot : NULL;
    } else {
        init.hard_state = d->hs;
        if (s->opt.break_mode == 3) {
            init.hard_state.vote = 0;
        }
        init.compact_index = d->image.applied;
        init.compact_term = d->image.applied_term;
        init.applied = d->image.applied;
        init.conf = d->image.applied > 0 ? &d->image.conf : NULL;
        views = calloc(d->log.n + 1, sizeof(*views));
        TS_ASSERT(views != NULL);
        for (size_t i = 0; i < d->log.n; i++) {
            const struct sim_entry *e = &d->log.e[i];
            views[i] = (struct raft_entry){e->term, e->index, e->data, e->len, e->type};
        }
        init.entries = views;
        init.n_entries = d->log.n;
    }
    int rc = raft_new(&c, &init, &p->r);
    free(views);
    if (rc != 0) {
        p->r = NULL;
        sim_fail(s, "restart",
                 "group %llu replica %llu: raft_new(%s) on hard state term %llu vote %llu "
                 "commit %llu, image %llu term %llu, %zu entries up to %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id, ts_errname(rc),
                 (unsigned long long)d->hs.term, (unsigned long long)d->hs.vote,
                 (unsigned long long)d->hs.commit, (unsigned long long)d->image.applied,
                 (unsigned long long)d->image.applied_term, d->log.n,
                 (unsigned long long)log_last(d));
        return;
    }
    s->rafts_live++;
    p->sm = d->image;
    p->led_term = 0;
    p->seen_commit = 0;
    p->compact_tick = p->node->ticks + s->p.compact_ticks;
    sim_mark_dirty(s, p);
}

/* Stops the instance (a crash, or a removal). A crash keeps a prefix of the unsynced
 * writes of the ready in progress. */
static void rep_stop(struct sim *s, struct sim_replica *p, bool crash)
{
    if (p->r == NULL) {
        return;
    }
    if (p->in_ready && crash) {
        size_t total = ready_records(&p->rd);
        size_t keep = 0;
        if (s->p.torn && total > 0 && chance(s, 1, 2)) {
            keep = below(s, total + 1);
        }
        dur_persist(s, p, keep);
        sim_trace(s, "crash g%llu r%llu: kept %zu of %zu unsynced records",
                  (unsigned long long)p->group->id, (unsigned long long)p->id, keep, total);
    }
    raft_free(p->r);
    p->r = NULL;
    TS_ASSERT(s->rafts_live > 0);
    s->rafts_live--;
    p->in_ready = false;
    for (uint32_t i = 0; i < p->n_inbox; i++) {
        msg_free(p->inbox[i]);
    }
    p->n_inbox = 0;
    p->owed_ticks = 0;
    p->owe_wake = false;
    memset(p->snap_failed, 0, sizeof(p->snap_failed));
    memset(p->stash, 0, sizeof(p->stash));
    p->n_reads = 0;
    memset(&p->sm, 0, sizeof(p->sm));
}

/* The node deletes the replica: instance, volatile and durable state. */
static void rep_destroy(struct sim *s, struct sim_replica *p)
{
    if (p->in_ready) {
        p->doomed = true;
        return;
    }
    sim_trace(s, "destroy g%llu r%llu", (unsigned long long)p->group->id,
              (unsigned long long)p->id);
    rep_stop(s, p, false);
    log_free(&p->dur.log);
    memset(&p->dur, 0, sizeof(p->dur));
    p->hosted = false;
    p->boot = false;
    p->joining = 0;
    p->doomed = false;
    /* Replica ids are never reused in a group: a stale member's log may still count
     * the old id as a voter, and an empty replica under that id could grant it a vote. */
    p->gen++;
    p->id = p->node->idx + 1 + (raft_id)s->p.nodes * p->gen;
}

/* ---------------------------------------------------------------------------------- */
/* Readies.                                                                            */

static void rep_install(struct sim *s, struct sim_replica *p)
{
    const struct raft_snapshot_meta *meta = p->rd.snapshot;
    const struct sim_stash *st = stash_find(p, meta->index);
    TS_ASSERT(st != NULL);
    if (meta->index <= p->sm.applied || st->sm.applied != meta->index ||
        st->sm.applied_term != meta->term || !conf_equal(&st->sm.conf, &meta->conf)) {
        sim_fail(s, "snapshot",
                 "group %llu replica %llu: install index %llu term %llu over applied %llu; "
                 "the leader's image had index %llu term %llu (conf %s)",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)meta->index, (unsigned long long)meta->term,
                 (unsigned long long)p->sm.applied, (unsigned long long)st->sm.applied,
                 (unsigned long long)st->sm.applied_term,
                 conf_equal(&st->sm.conf, &meta->conf) ? "equal" : "differs");
        return;
    }
    p->sm = st->sm;
    s->st.snapshots_installed++;
    sim_trace(s, "install g%llu r%llu snapshot %llu/%llu", (unsigned long long)p->group->id,
              (unsigned long long)p->id, (unsigned long long)meta->index,
              (unsigned long long)meta->term);
    for (uint32_t i = 0; i < SIM_STASH_MAX; i++) {
        if (p->stash[i].index <= meta->index) {
            p->stash[i].used = false;
        }
    }
}

static void rep_apply(struct sim *s, struct sim_replica *p)
{
    const struct raft_ready *rd = &p->rd;
    for (size_t i = 0; i < rd->n_committed && !s->failed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        if (e->index != p->sm.applied + 1) {
            sim_fail(s, "apply", "group %llu replica %llu: applies %llu after %llu",
                     (unsigned long long)p->group->id, (unsigned long long)p->id,
                     (unsigned long long)e->index, (unsigned long long)p->sm.applied);
            return;
        }
        if (!entries_check(s, p, e, 1)) {
            return;
        }
        uint64_t result = sim_sm_apply(s, p, e);
        sim_check_applied(s, p, e, result);
    }
}

static void rep_inputs(struct sim *s, struct sim_replica *p);

/* The ready's writes are durable: the rest of the contract, then raft_advance(). */
static void rep_synced(struct sim *s, struct sim_replica *p)
{
    const struct raft_ready *rd = &p->rd;
    TS_ASSERT(p->in_ready);
    dur_persist(s, p, ready_records(rd));
    if (rd->snapshot != NULL) {
        rep_install(s, p);
    }
    for (size_t i = 0; i < rd->n_msgs_after_persist && !s->failed && s->opt.break_mode != 2; i++) {
        net_send_raft(s, p, &rd->msgs_after_persist[i]);
    }
    rep_apply(s, p);
    for (size_t i = 0; i < rd->n_reads && !s->failed; i++) {
        sim_clients_on_read(s, p, rd->reads[i].ctx, rd->reads[i].index);
    }
    sim_clients_reads_applied(s, p);
    raft_advance(p->r);
    p->in_ready = false;
    if (!s->failed && raft_applied_index(p->r) != p->sm.applied) {
        sim_fail(s, "apply", "group %llu replica %llu: raft_applied_index %llu, applied %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)raft_applied_index(p->r), (unsigned long long)p->sm.applied);
    }
    if (p->doomed) {
        rep_destroy(s, p);
        return;
    }
    /* What arrived during the sync is taken at once, before any client call: a shard
     * delivers the ticks it owes before anything else reads the clock. */
    if (!s->failed) {
        rep_inputs(s, p);
        sim_check_observe(s, p);
    }
    sim_mark_dirty(s, p);
}

static uint64_t disk_delay(struct sim *s, const struct sim_node *n)
{
    if (below(s, 100) < s->p.sync_now_pct) {
        return 0;
    }
    uint64_t d = 1 + below(s, s->p.sync_max);
    if (n->slow_disk) {
        d *= 1 + below(s, 10);
    }
    return d;
}

static void rep_ready(struct sim *s, struct sim_replica *p)
{
    struct raft_ready *rd = &p->rd;
    raft_ready(p->r, rd);
    p->in_ready = true;
    s->st.readies++;
    if (rd->soft_state_changed) {
        sim_trace(s, "role g%llu r%llu %s term %llu leader %llu", (unsigned long long)p->group->id,
                  (unsigned long long)p->id, raft_role_name((enum raft_role)rd->role),
                  (unsigned long long)raft_term_of(p->r), (unsigned long long)rd->leader);
    }
    if (rd->snapshot != NULL && stash_find(p, rd->snapshot->index) == NULL) {
        sim_fail(s, "snapshot",
                 "group %llu replica %llu: ready installs snapshot %llu never received",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)rd->snapshot->index);
        return;
    }
    for (size_t i = 0; i < rd->n_msgs && !s->failed; i++) {
        net_send_raft(s, p, &rd->msgs[i]);
    }
    for (size_t i = 0; i < rd->n_msgs_after_persist && s->opt.break_mode == 2; i++) {
        net_send_raft(s, p, &rd->msgs_after_persist[i]);
    }
    bool writes = rd->snapshot != NULL || rd->n_entries > 0 || rd->hard_state_changed;
    uint64_t delay = writes ? disk_delay(s, p->node) : 0;
    if (delay == 0) {
        rep_synced(s, p);
        return;
    }
    p->sync_step = s->step + delay;
    if (!p->syncing) {
        TS_ASSERT(s->n_syncing < s->p.nodes * s->p.groups);
        p->syncing = true;
        s->syncing[s->n_syncing++] = p;
    }
}

static void syncs_due(struct sim *s)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < s->n_syncing; i++) {
        struct sim_replica *p = s->syncing[i];
        if (p->in_ready && p->sync_step > s->step) {
            s->syncing[w++] = p;
            continue;
        }
        p->syncing = false;
        if (p->in_ready && !s->failed) {
            rep_synced(s, p);
        }
    }
    s->n_syncing = w;
}

/* ---------------------------------------------------------------------------------- */
/* The pump: inputs, observation, ready.                                               */

static void rep_step_msg(struct sim *s, struct sim_replica *p, struct sim_msg *m)
{
    if (m->m.type == RAFT_MSG_SNAPSHOT) {
        stash_put(p, m->meta.index, &m->snap);
    }
    trace_msg(s, "recv", &m->m);
    int rc = raft_step(p->r, &m->m);
    TS_ASSERT(rc != TS_ENOMEM);
    if (rc != 0) {
        sim_fail(s, "step", "group %llu replica %llu: raft_step(%s from %llu) returned %s",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 raft_msg_type_name((enum raft_msg_type)m->m.type), (unsigned long long)m->m.from,
                 ts_errname(rc));
    }
}

static void rep_tick(struct sim_replica *p)
{
    if (!raft_quiesced(p->r)) {
        raft_tick(p->r);
    }
}

/* Steps the queued messages and the owed ticks in the order they arrived. */
static void rep_inputs(struct sim *s, struct sim_replica *p)
{
    uint32_t t = 0;
    for (uint32_t i = 0; i < p->n_inbox; i++) {
        for (; t < p->owed_ticks && p->tick_pos[t] <= i; t++) {
            rep_tick(p);
        }
        if (!s->failed) {
            rep_step_msg(s, p, p->inbox[i]);
        }
        msg_free(p->inbox[i]);
    }
    for (; t < p->owed_ticks; t++) {
        rep_tick(p);
    }
    p->n_inbox = 0;
    p->owed_ticks = 0;
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        if (p->snap_failed[n] != 0) {
            raft_report_snapshot(p->r, p->snap_failed[n], true);
            p->snap_failed[n] = 0;
        }
    }
    if (p->owe_wake) {
        p->owe_wake = false;
        raft_wake(p->r);
    }
}

static void rep_pump(struct sim *s, struct sim_replica *p)
{
    for (uint32_t round = 0; round < 4 && !s->failed; round++) {
        if (!sim_rep_ready_for_input(p)) {
            return;
        }
        rep_inputs(s, p);
        sim_check_observe(s, p);
        if (s->failed || !raft_has_ready(p->r)) {
            return;
        }
        rep_ready(s, p);
    }
    if (sim_rep_ready_for_input(p) && raft_has_ready(p->r)) {
        sim_mark_dirty(s, p);
    }
}

static void pump_dirty(struct sim *s)
{
    uint32_t n = s->n_dirty;
    for (uint32_t i = 0; i < n && !s->failed; i++) {
        struct sim_replica *p = s->dirty[i];
        p->dirty = false;
        rep_pump(s, p);
    }
    /* Replicas marked again while pumping stay for the next step. */
    uint32_t w = 0;
    for (uint32_t i = n; i < s->n_dirty; i++) {
        s->dirty[w++] = s->dirty[i];
    }
    for (uint32_t i = 0; i < n && s->failed; i++) {
        s->dirty[i]->dirty = false;
    }
    s->n_dirty = w;
}

/* ---------------------------------------------------------------------------------- */
/* Nodes: ticks, node heartbeats, the failure detector, compaction, crash, restart.   */

static void rep_maybe_compact(struct sim *s, struct sim_replica *p)
{
    if (s->p.compact_ticks == 0 || !sim_rep_ready_for_input(p) ||
        p->node->ticks < p->compact_tick) {
        return;
    }
    p->compact_tick = p->node->ticks + s->p.compact_ticks;
    raft_index a = p->sm.applied;
    /* Not while raft holds changes the caller has not seen (a stepped snapshot may have
     * replaced the log already): the image must match raft's log at `a`. */
    if (a <= p->dur.image.applied + s->p.compact_gap || raft_has_ready(p->r)) {
        return;
    }
    const struct raft_conf *conf = raft_conf_of(p->r);
    if (raft_term_at(p->r, a) != p->sm.applied_term || !conf_equal(conf, &p->sm.conf)) {
        sim_fail(s, "compact",
                 "group %llu replica %llu: applied %llu term %llu, raft_term_at %llu, "
                 "raft_conf_of %s the applied configuration",
                 (unsigned long long)p->group->id, (unsigned long long)p->id, (unsigned long long)a,
                 (unsigned long long)p->sm.applied_term, (unsigned long long)raft_term_at(p->r, a),
                 conf_equal(conf, &p->sm.conf) ? "equals" : "differs from");
        return;
    }
    p->dur.image = p->sm;
    p->dur.image.conf = *conf;
    p->dur.exists = true;
    log_drop_prefix(&p->dur, a);
    int rc = raft_compact(p->r, a);
    if (rc != 0) {
        sim_fail(s, "compact", "group %llu replica %llu: raft_compact(%llu) returned %s",
                 (unsigned long long)p->group->id, (unsigned long long)p->id, (unsigned long long)a,
                 ts_errname(rc));
        return;
    }
    s->st.compactions++;
    sim_mark_dirty(s, p);
}

static void node_lost_peer(struct sim *s, struct sim_node *n, uint32_t b)
{
    sim_trace(s, "node %u stops hearing node %u", n->idx, b);
    for (uint32_t g = 0; g < s->p.groups; g++) {
        struct sim_replica *p = sim_rep(s, n->idx, g);
        const struct raft_conf *c = p->r != NULL ? raft_conf_of(p->r) : NULL;
        if (!sim_rep_ready_for_input(p) || raft_role_of(p->r) != RAFT_LEADER) {
            continue;
        }
        for (uint32_t i = 0; i < c->n; i++) {
            if (sim_id_node(s, c->m[i].id) == b) {
                raft_report_unreachable(p->r, c->m[i].id);
                sim_mark_dirty(s, p);
            }
        }
    }
}

/* The node-level failure detector: wake quiescent groups whose leader's node is silent. */
static void node_detect(struct sim *s, struct sim_node *n)
{
    for (uint32_t b = 0; b < s->p.nodes; b++) {
        if (b == n->idx) {
            continue;
        }
        bool lost = n->ticks - n->heard[b] >= s->p.election_ticks;
        if (lost && !n->unreachable[b]) {
            n->unreachable[b] = true;
            node_lost_peer(s, n, b);
        } else if (!lost) {
            n->unreachable[b] = false;
            continue;
        }
        for (uint32_t g = 0; g < s->p.groups; g++) {
            struct sim_replica *p = sim_rep(s, n->idx, g);
            raft_id l = p->r != NULL ? raft_leader(p->r) : 0;
            if (l != 0 && sim_id_node(s, l) == b && raft_quiesced(p->r)) {
                p->owe_wake = true;
                sim_mark_dirty(s, p);
            }
        }
    }
}

static void node_tick(struct sim *s, struct sim_node *n)
{
    n->ticks++;
    for (uint32_t g = 0; g < s->p.groups; g++) {
        struct sim_replica *p = sim_rep(s, n->idx, g);
        if (p->r == NULL) {
            continue;
        }
        if (!p->in_ready && raft_quiesced(p->r)) {
            continue;
        }
        if (s->opt.break_mode == 4 && raft_role_of(p->r) == RAFT_LEADER && n->ticks % 4 != 0) {
            continue; /* leaders' clocks run at a quarter of the speed */
        }
        TS_ASSERT(p->owed_ticks < SIM_OWED_TICKS_MAX);
        p->tick_pos[p->owed_ticks++] = (uint16_t)p->n_inbox;
        sim_mark_dirty(s, p);
        rep_maybe_compact(s, p);
    }
    for (uint32_t b = 0; b < s->p.nodes; b++) {
        if (b != n->idx) {
            net_send_hb(s, n->idx, b);
        }
    }
    node_detect(s, n);
}

static void nodes_tick(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->up) {
            continue;
        }
        n->acc_milli += 1000;
        if (n->acc_milli >= n->period_milli) {
            n->acc_milli -= n->period_milli;
            node_tick(s, n);
        }
    }
}

static void node_crash(struct sim *s, struct sim_node *n, uint64_t down_steps)
{
    TS_ASSERT(n->up);
    TS_ASSERT(down_steps > 0);
    sim_trace(s, "CRASH node %u for %llu steps", n->idx, (unsigned long long)down_steps);
    s->st.crashes++;
    for (uint32_t g = 0; g < s->p.groups; g++) {
        struct sim_replica *p = sim_rep(s, n->idx, g);
        rep_stop(s, p, true);
        if (p->doomed) {
            rep_destroy(s, p);
        }
    }
    n->up = false;
    n->inc++;
    n->restart_step = s->step + down_steps;
}

static void node_restart(struct sim *s, struct sim_node *n)
{
    TS_ASSERT(!n->up);
    sim_trace(s, "RESTART node %u", n->idx);
    s->st.restarts++;
    n->up = true;
    for (uint32_t b = 0; b < s->p.nodes; b++) {
        n->heard[b] = n->ticks;
        n->unreachable[b] = false;
    }
    ts_rand_seed(&n->rand, ts_rand_u64(&s->rand));
    for (uint32_t g = 0; g < s->p.groups && !s->failed; g++) {
        struct sim_replica *p = sim_rep(s, n->idx, g);
        if (p->hosted) {
            rep_start(s, p);
        }
    }
}

static void nodes_restart_due(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!n->up && s->step >= n->restart_step) {
            node_restart(s, n);
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Faults before the heal step.                                                        */

static uint32_t nodes_down(const struct sim *s)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        k += s->nodes[i].up ? 0u : 1u;
    }
    return k;
}

static uint64_t down_steps(struct sim *s)
{
    if (chance(s, 3, 10)) {
        return 1 + below(s, s->p.et_steps);
    }
    return s->p.et_steps * pick(s, 1, 6);
}

/* The up node with the most replicas waiting on their disk (the most to lose). */
static struct sim_node *busiest_node(struct sim *s)
{
    struct sim_node *best = NULL;
    uint32_t best_n = 0;
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        uint32_t k = 0;
        for (uint32_t g = 0; g < s->p.groups; g++) {
            k += sim_rep(s, i, g)->in_ready ? 1u : 0u;
        }
        if (s->nodes[i].up && (best == NULL || k > best_n)) {
            best = &s->nodes[i];
            best_n = k;
        }
    }
    return best;
}

static void fault_crash(struct sim *s)
{
    uint32_t limit = chance(s, 1, 10) ? s->p.nodes : (s->p.nodes - 1) / 2;
    if (nodes_down(s) >= limit) {
        return;
    }
    struct sim_node *n = &s->nodes[below(s, s->p.nodes)];
    if (chance(s, 1, 2)) {
        n = busiest_node(s);
    }
    if (n != NULL && n->up) {
        node_crash(s, n, down_steps(s));
    }
}

/* A correlated failure: a random subset of the nodes (all of them, sometimes) loses
 * power at once; each comes back after its own delay. */
static void fault_power_loss(struct sim *s)
{
    bool all = chance(s, 1, 4);
    sim_trace(s, "POWER LOSS%s", all ? " (all nodes)" : "");
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        if (s->nodes[i].up && (all || chance(s, 1, 2))) {
            node_crash(s, &s->nodes[i], 1 + below(s, 2 * s->p.et_steps));
        }
    }
}

static void fault_partition(struct sim *s)
{
    if (s->f.partition_end != 0) {
        return;
    }
    bool side[SIM_NODES_MAX];
    uint32_t ones = 0;
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        side[i] = chance(s, 1, 2);
        ones += side[i] ? 1u : 0u;
    }
    if (ones == 0 || ones == s->p.nodes) {
        side[0] = !side[0];
    }
    for (uint32_t a = 0; a < s->p.nodes; a++) {
        for (uint32_t b = 0; b < s->p.nodes; b++) {
            s->net.cut[a][b] = side[a] != side[b];
        }
    }
    s->f.partition_end = s->step + s->p.et_steps * pick(s, 1, 8);
    sim_trace(s, "PARTITION until %llu", (unsigned long long)s->f.partition_end);
}

static void partition_heal(struct sim *s)
{
    memset(s->net.cut, 0, sizeof(s->net.cut));
    s->f.partition_end = 0;
    sim_trace(s, "partition healed");
}

static void links_shuffle(struct sim *s, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)below(s, i);
        uint8_t a = s->f.swz[i - 1][0], b = s->f.swz[i - 1][1];
        s->f.swz[i - 1][0] = s->f.swz[j][0];
        s->f.swz[i - 1][1] = s->f.swz[j][1];
        s->f.swz[j][0] = a;
        s->f.swz[j][1] = b;
    }
}

/* FoundationDB's swizzle-clogging: clog a random subset of links one by one in a random
 * order, then unclog them one by one in another random order. */
static void fault_swizzle(struct sim *s)
{
    if (s->f.swz_active) {
        return;
    }
    uint32_t n = 0;
    for (uint32_t a = 0; a < s->p.nodes; a++) {
        for (uint32_t b = 0; b < s->p.nodes; b++) {
            if (a != b) {
                s->f.swz[n][0] = (uint8_t)a;
                s->f.swz[n][1] = (uint8_t)b;
                n++;
            }
        }
    }
    links_shuffle(s, n);
    s->f.swz_n = pick(s, 1, n);
    s->f.swz_pos = 0;
    s->f.swz_unclog = false;
    s->f.swz_active = true;
    s->f.swz_next = s->step;
    sim_trace(s, "SWIZZLE %u links", s->f.swz_n);
}

static void swizzle_step(struct sim *s)
{
    struct sim_faults *f = &s->f;
    uint8_t a = f->swz[f->swz_pos][0], b = f->swz[f->swz_pos][1];
    if (!f->swz_unclog) {
        s->net.clog[a][b]++;
    } else {
        TS_ASSERT(s->net.clog[a][b] > 0);
        s->net.clog[a][b]--;
    }
    f->swz_pos++;
    f->swz_next = s->step + 1 + below(s, s->p.tick_steps * 2u);
    if (f->swz_pos < f->swz_n) {
        return;
    }
    if (f->swz_unclog) {
        f->swz_active = false;
        sim_trace(s, "swizzle done");
        return;
    }
    links_shuffle(s, f->swz_n);
    f->swz_pos = 0;
    f->swz_unclog = true;
    f->swz_next = s->step + s->p.et_steps * pick(s, 1, 3);
}

static void fault_oneway(struct sim *s)
{
    if (s->f.oneway_end != 0) {
        return;
    }
    uint32_t a = (uint32_t)below(s, s->p.nodes);
    uint32_t b = (uint32_t)below(s, s->p.nodes - 1);
    b += b >= a ? 1u : 0u;
    s->f.ow_a = a;
    s->f.ow_b = b;
    s->net.clog[a][b]++;
    s->f.oneway_end = s->step + s->p.et_steps * pick(s, 1, 6);
    sim_trace(s, "CLOG %u->%u until %llu", a, b, (unsigned long long)s->f.oneway_end);
}

static void fault_quality(struct sim *s)
{
    params_network(s);
    s->net.drop_ppm = s->p.drop_ppm;
    s->net.dup_ppm = s->p.dup_ppm;
    s->net.spike_ppm = s->p.spike_ppm;
    s->net.delay_max = s->p.delay_max;
    sim_trace(s, "NET drop %u dup %u spike %u delay 1..%u", s->net.drop_ppm, s->net.dup_ppm,
              s->net.spike_ppm, s->net.delay_max);
}

static void fault_slow_disk(struct sim *s)
{
    if (s->f.slow_end != 0) {
        return;
    }
    uint32_t i = (uint32_t)below(s, s->p.nodes);
    s->nodes[i].slow_disk = true;
    s->f.slow_end = s->step + s->p.et_steps * pick(s, 1, 4);
    sim_trace(s, "SLOW DISK node %u", i);
}

static void faults_expire(struct sim *s)
{
    struct sim_faults *f = &s->f;
    if (f->partition_end != 0 && s->step >= f->partition_end) {
        partition_heal(s);
    }
    if (f->oneway_end != 0 && s->step >= f->oneway_end) {
        TS_ASSERT(s->net.clog[f->ow_a][f->ow_b] > 0);
        s->net.clog[f->ow_a][f->ow_b]--;
        f->oneway_end = 0;
    }
    if (f->swz_active && s->step >= f->swz_next) {
        swizzle_step(s);
    }
    if (f->slow_end != 0 && s->step >= f->slow_end) {
        for (uint32_t i = 0; i < s->p.nodes; i++) {
            s->nodes[i].slow_disk = false;
        }
        f->slow_end = 0;
    }
}

static void faults_step(struct sim *s)
{
    faults_expire(s);
    if (s->step < s->f.next_step) {
        return;
    }
    s->f.next_step = s->step + 1 + below(s, 2u * s->p.fault_gap_steps);
    switch (below(s, 8)) {
    case 0:
    case 1:
        fault_crash(s);
        break;
    case 2:
        fault_power_loss(s);
        break;
    case 3:
        fault_partition(s);
        break;
    case 4:
        fault_swizzle(s);
        break;
    case 5:
        fault_oneway(s);
        break;
    case 6:
        fault_quality(s);
        break;
    default:
        fault_slow_disk(s);
        break;
    }
}

static void heal_all(struct sim *s)
{
    sim_trace(s, "HEAL: network perfect, all nodes up");
    s->healed = true;
    memset(s->net.cut, 0, sizeof(s->net.cut));
    memset(s->net.clog, 0, sizeof(s->net.clog));
    s->net.drop_ppm = 0;
    s->net.dup_ppm = 0;
    s->net.spike_ppm = 0;
    s->net.delay_max = 2;
    memset(&s->f, 0, sizeof(s->f));
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        s->nodes[i].slow_disk = false;
        if (!s->nodes[i].up) {
            node_restart(s, &s->nodes[i]);
        }
    }
    for (uint32_t i = 0; i < s->n_clients; i++) {
        struct sim_client *c = &s->clients[i];
        if (c->probe) {
            c->state = SIM_C_IDLE;
            c->next_step = s->step;
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Membership churn and removal of replicas that left their group.                    */

static struct sim_replica *group_leader(struct sim *s, uint32_t g)
{
    struct sim_replica *best = NULL;
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        struct sim_replica *p = sim_rep(s, n, g);
        if (sim_rep_ready_for_input(p) && raft_role_of(p->r) == RAFT_LEADER &&
            (best == NULL || raft_term_of(p->r) > raft_term_of(best->r))) {
            best = p;
        }
    }
    return best;
}

static uint32_t conf_pick(struct sim *s, const struct raft_conf *c, uint8_t role, raft_id *out)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].role == role && chance(s, 1, ++k)) {
            *out = c->m[i].id;
        }
    }
    return k;
}

/* A node that may receive a new learner of l's group, or NULL. */
static struct sim_replica *free_node(struct sim *s, struct sim_replica *l)
{
    struct sim_replica *best = NULL;
    uint32_t k = 0;
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        struct sim_replica *p = sim_rep(s, n, l->group->idx);
        if (!p->hosted && s->nodes[n].up && chance(s, 1, ++k)) {
            best = p;
        }
    }
    return best;
}

static void churn_add_learner(struct sim *s, struct sim_replica *l, struct sim_replica *p)
{
    struct sim_group *g = l->group;
    p->hosted = true;
    p->boot = false;
    p->joining = 0;
    rep_start(s, p);
    if (p->r == NULL) {
        return;
    }
    struct raft_change ch = {RAFT_ADD_LEARNER, p->id};
    raft_index idx = 0;
    int rc = raft_propose_conf(l->r, &ch, 1, &idx);
    TS_ASSERT(rc != TS_ENOMEM);
    sim_mark_dirty(s, l);
    sim_trace(s, "churn g%llu add learner %llu: %s at %llu", (unsigned long long)g->id,
              (unsigned long long)p->id, ts_errname(rc), (unsigned long long)idx);
    if (rc != 0) {
        rep_destroy(s, p);
        return;
    }
    p->joining = idx;
    p->joined_step = s->step;
    s->st.conf_changes++;
    g->churn_busy_until = s->step + 2 * s->p.et_steps;
}

static void churn_conf(struct sim *s, struct sim_replica *l, const struct raft_change *ch, size_t n)
{
    raft_index idx = 0;
    int rc = raft_propose_conf(l->r, ch, n, &idx);
    TS_ASSERT(rc != TS_ENOMEM);
    sim_mark_dirty(s, l);
    sim_trace(s, "churn g%llu change %u:%llu%s: %s at %llu", (unsigned long long)l->group->id,
              ch[0].type, (unsigned long long)ch[0].id, n > 1 ? " (+1, joint)" : "", ts_errname(rc),
              (unsigned long long)idx);
    if (rc == 0) {
        s->st.conf_changes++;
        l->group->churn_busy_until = s->step + 2 * s->p.et_steps;
    }
}

static void churn_transfer(struct sim *s, struct sim_replica *l, raft_id v)
{
    if (v == l->id) {
        return;
    }
    int rc = raft_transfer_leader(l->r, v);
    sim_mark_dirty(s, l);
    s->st.transfers += rc == 0 ? 1u : 0u;
    sim_trace(s, "churn g%llu transfer to %llu: %s", (unsigned long long)l->group->id,
              (unsigned long long)v, ts_errname(rc));
}

/* Picks a change that keeps at least 3 voters: promote, replace (joint consensus) or
 * drop a learner; remove or demote a voter beyond 3; add a learner on a free node; or
 * transfer leadership. */
static void churn_act(struct sim *s, struct sim_replica *l, const struct raft_conf *c,
                      uint32_t voters, uint32_t learners)
{
    raft_id v = 0, x = 0;
    conf_pick(s, c, RAFT_VOTER, &v);
    conf_pick(s, c, RAFT_LEARNER, &x);
    struct sim_replica *fresh = free_node(s, l);
    uint64_t r = below(s, 4);
    if (learners > 0 && r < 3) {
        struct raft_change ch[2] = {{RAFT_ADD_VOTER, x}, {RAFT_REMOVE, v}};
        if (r == 0) {
            churn_conf(s, l, ch, 1);
        } else if (r == 1) {
            churn_conf(s, l, ch, 2);
        } else {
            churn_conf(s, l, &(struct raft_change){RAFT_REMOVE, x}, 1);
        }
    } else if (voters > 3 && r < 2) {
        uint8_t t = r == 0 ? RAFT_REMOVE : RAFT_ADD_LEARNER;
        churn_conf(s, l, &(struct raft_change){t, v}, 1);
    } else if (fresh != NULL && r < 3) {
        churn_add_learner(s, l, fresh);
    } else {
        churn_transfer(s, l, v);
    }
}

static void churn_step(struct sim *s)
{
    if (s->p.churn_gap_steps == 0 || s->step < s->f.churn_next) {
        return;
    }
    s->f.churn_next = s->step + 1 + below(s, 2u * s->p.churn_gap_steps);
    uint32_t g = (uint32_t)below(s, s->p.groups);
    struct sim_replica *l = group_leader(s, g);
    if (l == NULL || s->step < l->group->churn_busy_until) {
        return;
    }
    const struct raft_conf *c = raft_conf_of(l->r);
    if (raft_conf_joint(c) || !conf_equal(c, &l->group->conf)) {
        return; /* a change is still in progress */
    }
    uint32_t voters = 0, learners = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        voters += c->m[i].role == RAFT_VOTER ? 1u : 0u;
        learners += c->m[i].role == RAFT_LEARNER ? 1u : 0u;
    }
    churn_act(s, l, c, voters, learners);
}

/* Deletes replicas the latest committed configuration no longer names. */
static void gc_step(struct sim *s)
{
    for (uint32_t gi = 0; gi < s->p.groups; gi++) {
        struct sim_group *g = &s->groups[gi];
        if (!g->gc_due) {
            continue;
        }
        g->gc_due = false;
        for (uint32_t n = 0; n < s->p.nodes; n++) {
            struct sim_replica *p = sim_rep(s, n, gi);
            if (p->hosted && p->joining == 0 && g->conf_index > 0 &&
                raft_conf_role(&g->conf, p->id) == 0) {
                rep_destroy(s, p);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Setup, the loop, teardown.                                                          */

static void place_group(struct sim *s, struct sim_group *g)
{
    uint32_t order[SIM_NODES_MAX];
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        order[i] = i;
    }
    for (uint32_t i = s->p.nodes; i > 1; i--) {
        uint32_t j = (uint32_t)below(s, i);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    uint32_t voters = s->p.nodes >= 5 && chance(s, 1, 3) ? 5 : 3;
    bool in[SIM_NODES_MAX] = {false};
    for (uint32_t i = 0; i < voters; i++) {
        in[order[i]] = true;
    }
    memset(&g->boot, 0, sizeof(g->boot));
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        if (in[n]) {
            g->boot.m[g->boot.n].id = n + 1;
            g->boot.m[g->boot.n].role = RAFT_VOTER;
            g->boot.n++;
            struct sim_replica *p = sim_rep(s, n, g->idx);
            p->hosted = true;
            p->boot = true;
        }
    }
}

static void init_nodes(struct sim *s)
{
    uint64_t base = (uint64_t)s->p.tick_steps * 1000;
    for (uint32_t i = 0; i < s->p.nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        n->idx = i;
        n->up = true;
        /* Periods within base * (1 + (drift - 1) / election_ticks): at most drift - 1
         * ticks apart per election timeout, below lease_drift_ticks (raft.h; one more
         * tick goes to the phase between two nodes' ticks). */
        n->period_milli = base + below(s, base * (s->p.drift_ticks - 1) / s->p.election_ticks + 1);
        n->acc_milli = below(s, n->period_milli);
        ts_rand_seed(&n->rand, ts_rand_u64(&s->rand));
    }
}

static void init_net(struct sim *s)
{
    s->net.heap = calloc(SIM_NET_MSGS_MAX, sizeof(*s->net.heap));
    TS_ASSERT(s->net.heap != NULL);
    s->net.drop_ppm = s->p.drop_ppm;
    s->net.dup_ppm = s->p.dup_ppm;
    s->net.spike_ppm = s->p.spike_ppm;
    s->net.delay_min = 1;
    s->net.delay_max = s->p.delay_max;
    s->net.spike_max = s->p.spike_max;
}

static void trace_params(struct sim *s)
{
    const struct sim_params *p = &s->p;
    sim_trace(s,
              "params: %u nodes, %u groups, %u keys/group, %u clients; election %u heartbeat "
              "%u drift %u ticks, %u steps/tick; heal at %llu, liveness bound %llu; drop %u "
              "dup %u spike %u ppm, delay 1..%u; sync now %u%% else 1..%u; faults every "
              "~%u, churn every ~%u steps; compact every %u ticks (gap %u); msg bytes %u, "
              "inflight %u, promote lag %u, snapshot timeout %u; torn %d",
              p->nodes, p->groups, p->keys, p->clients, p->election_ticks, p->heartbeat_ticks,
              p->drift_ticks, p->tick_steps, (unsigned long long)p->heal_step,
              (unsigned long long)p->live_bound_steps, p->drop_ppm, p->dup_ppm, p->spike_ppm,
              p->delay_max, p->sync_now_pct, p->sync_max, p->fault_gap_steps, p->churn_gap_steps,
              p->compact_ticks, p->compact_gap, p->msg_bytes_max, p->inflight_msgs_max,
              p->promote_lag_max, p->snapshot_timeout_ticks, p->torn);
    for (uint32_t g = 0; g < s->p.groups; g++) {
        char buf[64] = "";
        size_t len = 0;
        for (uint32_t i = 0; i < s->groups[g].boot.n && len < sizeof(buf) - 4; i++) {
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, " %llu",
                                    (unsigned long long)s->groups[g].boot.m[i].id);
        }
        sim_trace(s, "group %u: voters%s", g + 1, buf);
    }
}

int sim_init(struct sim *s, const struct sim_opts *opt)
{
    memset(s, 0, sizeof(*s));
    s->opt = *opt;
    ts_rand_seed(&s->rand, opt->seed);
    params_from_seed(s);
    if (s->p.nodes < 3 || s->p.nodes > SIM_NODES_MAX || s->p.groups < 1 ||
        s->p.groups > SIM_GROUPS_MAX) {
        return TS_EINVAL;
    }
    size_t nrep = (size_t)s->p.nodes * s->p.groups;
    s->groups = calloc(s->p.groups, sizeof(*s->groups));
    s->reps = calloc(nrep, sizeof(*s->reps));
    s->dirty = calloc(2 * nrep, sizeof(*s->dirty));
    s->syncing = calloc(nrep, sizeof(*s->syncing));
    s->lin = lin_history_new();
    TS_ASSERT(s->groups && s->reps && s->dirty && s->syncing && s->lin);
    init_nodes(s);
    init_net(s);
    for (uint32_t g = 0; g < s->p.groups; g++) {
        s->groups[g].idx = g;
        s->groups[g].id = g + 1;
        TS_ASSERT(sim_check_group_init(&s->groups[g]) == 0);
        for (uint32_t n = 0; n < s->p.nodes; n++) {
            struct sim_replica *p = sim_rep(s, n, g);
            p->node = &s->nodes[n];
            p->group = &s->groups[g];
            p->id = n + 1;
        }
        place_group(s, &s->groups[g]);
    }
    sim_clients_init(s);
    for (size_t i = 0; i < nrep && !s->failed; i++) {
        if (s->reps[i].hosted) {
            rep_start(s, &s->reps[i]);
        }
    }
    s->f.next_step = s->p.et_steps * 2;
    s->f.churn_next = s->p.et_steps * 3;
    trace_params(s);
    return 0;
}

static void sim_one_step(struct sim *s)
{
    if (!s->healed && s->step >= s->p.heal_step) {
        heal_all(s);
    } else if (!s->healed) {
        faults_step(s);
    }
    nodes_restart_due(s);
    net_deliver(s);
    syncs_due(s);
    nodes_tick(s);
    sim_clients_step(s);
    if (!s->healed) {
        churn_step(s);
    }
    gc_step(s);
    pump_dirty(s);
    if (s->step % (4 * s->p.et_steps) == 0 && !s->failed) {
        sim_check_log_matching(s);
    }
    if (s->healed && !s->live_ok && !s->failed && s->step % s->p.tick_steps == 0) {
        s->live_ok = sim_check_liveness(s, false);
        if (s->live_ok) {
            s->live_step = s->step;
        }
    }
}

void sim_run(struct sim *s)
{
    for (s->step = 1; s->step <= s->p.end_step && !s->failed; s->step++) {
        sim_one_step(s);
        if (s->live_ok && sim_clients_quiet(s)) {
            break;
        }
    }
    if (!s->failed && !s->live_ok) {
        (void)sim_check_liveness(s, true);
    }
    if (!s->failed) {
        sim_check_lin(s);
    }
}

void sim_fini(struct sim *s)
{
    size_t nrep = (size_t)s->p.nodes * s->p.groups;
    for (size_t i = 0; s->reps != NULL && i < nrep; i++) {
        struct sim_replica *p = &s->reps[i];
        p->in_ready = false;
        rep_stop(s, p, false);
        log_free(&p->dur.log);
    }
    if (s->rafts_live != 0 && !s->failed) {
        sim_fail(s, "memory", "%u raft instances not freed", s->rafts_live);
    }
    for (uint32_t i = 0; s->net.heap != NULL && i < s->net.n; i++) {
        msg_free(s->net.heap[i]);
    }
    free(s->net.heap);
    for (uint32_t g = 0; s->groups != NULL && g < s->p.groups; g++) {
        sim_check_group_fini(&s->groups[g]);
    }
    sim_clients_fini(s);
    if (s->lin != NULL) {
        lin_history_free(s->lin);
    }
    free(s->groups);
    free(s->reps);
    free(s->dirty);
    free(s->syncing);
    s->groups = NULL;
    s->reps = NULL;
}
