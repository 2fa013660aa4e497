/* The deterministic test network for the core/raft unit tests: see raft_testnet.h. */
#include "raft_testnet.h"

#include "core/util/err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_FMT "seed %llu: "
#define SEED(tn) ((unsigned long long)(tn)->seed)
#define U(x) ((unsigned long long)(x))

/* ------------------------------------------------------------------ entry logs */

static void elog_push(struct tn_elog *l, raft_term term, raft_index index, uint8_t type,
                      const uint8_t *data, uint32_t len)
{
    if (l->n > 0) {
        cr_assert_eq(index, l->e[l->n - 1].index + 1, "entry logs stay contiguous");
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 16 : 2 * l->cap;
        struct tn_entry *e = realloc(l->e, cap * sizeof(*e));
        cr_assert_not_null(e);
        l->e = e;
        l->cap = cap;
    }
    struct tn_entry *e = &l->e[l->n++];
    *e = (struct tn_entry){.term = term, .index = index, .type = type, .len = len};
    if (len > 0) {
        e->data = malloc(len);
        cr_assert_not_null(e->data);
        memcpy(e->data, data, len);
    }
}

static void elog_truncate(struct tn_elog *l, size_t keep)
{
    cr_assert_leq(keep, l->n);
    for (size_t i = keep; i < l->n; i++) {
        free(l->e[i].data);
    }
    l->n = keep;
}

static void elog_free(struct tn_elog *l)
{
    elog_truncate(l, 0);
    free(l->e);
    *l = (struct tn_elog){0};
}

static const struct tn_entry *elog_at(const struct tn_elog *l, raft_index index)
{
    if (l->n == 0 || index < l->e[0].index || index > l->e[l->n - 1].index) {
        return NULL;
    }
    const struct tn_entry *e = &l->e[index - l->e[0].index];
    cr_assert_eq(e->index, index);
    return e;
}

/* Copies the entries of src with index <= upto into dst (emptied first). */
static void elog_copy(struct tn_elog *dst, const struct tn_elog *src, raft_index upto)
{
    elog_truncate(dst, 0);
    for (size_t i = 0; i < src->n && src->e[i].index <= upto; i++) {
        const struct tn_entry *e = &src->e[i];
        elog_push(dst, e->term, e->index, e->type, e->data, e->len);
    }
}

static bool entry_equal(const struct tn_entry *a, const struct tn_entry *b)
{
    return a->term == b->term && a->type == b->type && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* ------------------------------------------------------------------ set up */

void tn_init(struct tn *tn, uint32_t n, uint64_t seed)
{
    cr_assert(n >= 1 && n <= TN_NODES_MAX, "1..%u nodes", TN_NODES_MAX);
    memset(tn, 0, sizeof(*tn));
    tn->seed = seed;
    tn->n = n;
    tn->trace = getenv("TN_TRACE") != NULL;
    raft_config_default(&tn->cfg);
    tn->cfg.group_id = TN_GROUP_ID;
    tn->cfg.election_ticks = 10;
    tn->cfg.heartbeat_ticks = 1;
    tn->cfg.pre_vote = false;
    tn->cfg.check_quorum = false;
    tn->cfg.lease_reads = false;
    tn->boot.n = n;
    for (uint32_t i = 0; i < n; i++) {
        tn->boot.m[i] = (struct raft_member){.id = i + 1, .role = RAFT_VOTER};
    }
}

static struct tn_node *node_of(struct tn *tn, raft_id id)
{
    cr_assert(id >= 1 && id <= tn->n, SEED_FMT "no node %llu", SEED(tn), U(id));
    return &tn->node[id];
}

struct raft *tn_raft(struct tn *tn, raft_id id)
{
    struct tn_node *nd = node_of(tn, id);
    cr_assert_not_null(nd->r, SEED_FMT "node %llu is not running", SEED(tn), U(id));
    return nd->r;
}

/* The configuration of a node is taken from the template when it first starts; a test
 * may edit tn->node[id].cfg before a tn_restart(). */
static void node_setup(struct tn *tn, raft_id id)
{
    struct tn_node *nd = node_of(tn, id);
    if (nd->cfg.id == id) {
        return;
    }
    nd->cfg = tn->cfg;
    nd->cfg.id = id;
    ts_rand_seed(&nd->rand, tn->seed * 1000003u + id);
}

static void node_new(struct tn *tn, raft_id id, const struct raft_initial *init)
{
    struct tn_node *nd = node_of(tn, id);
    cr_assert_null(nd->r, SEED_FMT "node %llu already running", SEED(tn), U(id));
    node_setup(tn, id);
    ts_failing_allocator_init(&nd->alloc, ts_allocator_default(), -1);
    nd->cfg.rand = &nd->rand;
    nd->cfg.alloc = &nd->alloc.base;
    int rc = raft_new(&nd->cfg, init, &nd->r);
    cr_assert_eq(rc, 0, SEED_FMT "raft_new(node %llu) = %s", SEED(tn), U(id), ts_errname(rc));
    cr_assert_not_null(nd->r);
    cr_assert_eq(raft_id_of(nd->r), id);
}

void tn_start(struct tn *tn)
{
    for (raft_id id = 1; id <= tn->n; id++) {
        if (raft_conf_role(&tn->boot, id) == 0) {
            continue;
        }
        struct raft_initial init = {.bootstrap = &tn->boot};
        node_new(tn, id, &init);
        struct tn_storage *st = &tn->node[id].st;
        st->applied = raft_applied_index(tn->node[id].r);
        if (st->applied > 0) {
            st->has_conf = true;
            st->conf = tn->boot;
        }
    }
    tn_ready_all(tn);
}

void tn_start_empty(struct tn *tn, raft_id id)
{
    struct raft_initial init = {0};
    node_new(tn, id, &init);
    tn_ready_all(tn);
}

static void node_boot_from_storage(struct tn *tn, raft_id id)
{
    struct tn_storage *st = &node_of(tn, id)->st;
    struct raft_entry *ents = calloc(st->log.n + 1, sizeof(*ents));
    cr_assert_not_null(ents);
    for (size_t i = 0; i < st->log.n; i++) {
        const struct tn_entry *e = &st->log.e[i];
        ents[i] = (struct raft_entry){
            .term = e->term, .index = e->index, .data = e->data, .len = e->len, .type = e->type};
    }
    struct raft_initial init = {
        .hard_state = st->hs,
        .compact_index = st->compact_index,
        .compact_term = st->compact_term,
        .applied = st->applied,
        .conf = st->has_conf ? &st->conf : NULL,
        .entries = ents,
        .n_entries = st->log.n,
    };
    node_new(tn, id, &init);
    free(ents);
}

void tn_start_state(struct tn *tn, raft_id id, raft_term term, raft_id vote, raft_index commit,
                    const raft_term *terms, size_t n_terms)
{
    cr_assert(n_terms >= 1 && terms[0] == 1, "entry 1 has term 1 (the configuration)");
    cr_assert(commit >= 1 && commit <= n_terms, "commit within the log");
    struct tn_storage *st = &node_of(tn, id)->st;
    cr_assert_eq(st->log.n + st->applied_log.n, 0, "a fresh node");
    st->hs = (struct raft_hard_state){.term = term, .vote = vote, .commit = commit};
    st->compact_index = 1;
    st->compact_term = 1;
    st->applied = 1;
    st->has_conf = true;
    st->conf = tn->boot;
    uint8_t buf[RAFT_CONF_ENCODED_BYTES_MAX];
    uint32_t len = raft_conf_encode(&tn->boot, buf);
    elog_push(&st->applied_log, 1, 1, RAFT_ENTRY_CONF, buf, len);
    for (size_t i = 1; i < n_terms; i++) {
        cr_assert(terms[i] >= terms[i - 1] && terms[i] <= term, "log terms ascend to term");
        char data[48];
        int dl = snprintf(data, sizeof(data), "i%zu t%llu", i + 1, U(terms[i]));
        elog_push(&st->log, terms[i], i + 1, RAFT_ENTRY_NORMAL, (const uint8_t *)data,
                  (uint32_t)dl);
    }
    node_boot_from_storage(tn, id);
    tn_ready_all(tn);
}

static void msg_free(struct tn_msg *c)
{
    for (uint32_t i = 0; i < c->n_ents; i++) {
        free((void *)c->ents[i].data);
    }
    free(c->ents);
    elog_free(&c->snap_data);
    free(c);
}

void tn_stop(struct tn *tn, raft_id id)
{
    struct tn_node *nd = node_of(tn, id);
    if (nd->r == NULL) {
        return;
    }
    raft_free(nd->r);
    nd->r = NULL;
    cr_assert_eq(nd->alloc.live_bytes, 0, SEED_FMT "raft_free(node %llu) left %ld bytes", SEED(tn),
                 U(id), nd->alloc.live_bytes);
    nd->has_pending_snap = false;
    elog_free(&nd->pending_snap);
}

void tn_restart(struct tn *tn, raft_id id)
{
    tn_stop(tn, id);
    node_boot_from_storage(tn, id);
    tn_ready_all(tn);
}

void tn_fini(struct tn *tn)
{
    tn_check(tn);
    for (raft_id id = 1; id <= tn->n; id++) {
        tn_stop(tn, id);
        elog_free(&tn->node[id].st.log);
        elog_free(&tn->node[id].st.applied_log);
    }
    tn_drop_queue(tn);
    free(tn->q);
    tn->q = NULL;
}

/* ------------------------------------------------------------------ the queue */

static void q_push(struct tn *tn, struct tn_msg *c)
{
    if (tn->q_head + tn->q_len == tn->q_cap) {
        if (tn->q_head > 0) {
            memmove(tn->q, tn->q + tn->q_head, tn->q_len * sizeof(*tn->q));
            tn->q_head = 0;
        } else {
            size_t cap = tn->q_cap == 0 ? 256 : 2 * tn->q_cap;
            struct tn_msg **q = realloc(tn->q, cap * sizeof(*q));
            cr_assert_not_null(q);
            tn->q = q;
            tn->q_cap = cap;
        }
    }
    tn->q[tn->q_head + tn->q_len++] = c;
}

static struct tn_msg *q_pop(struct tn *tn)
{
    cr_assert_gt(tn->q_len, 0);
    struct tn_msg *c = tn->q[tn->q_head++];
    tn->q_len--;
    if (tn->q_len == 0) {
        tn->q_head = 0;
    }
    return c;
}

void tn_drop_queue(struct tn *tn)
{
    while (tn->q_len > 0) {
        msg_free(q_pop(tn));
    }
}

static bool msg_matches(const struct raft_message *m, raft_id from, raft_id to, unsigned type)
{
    return (from == 0 || m->from == from) && (to == 0 || m->to == to) &&
           (type >= RAFT_MSG_TYPES_ || m->type == type);
}

size_t tn_queued(const struct tn *tn, raft_id from, raft_id to, unsigned type)
{
    size_t count = 0;
    for (size_t i = 0; i < tn->q_len; i++) {
        count += msg_matches(&tn->q[tn->q_head + i]->m, from, to, type);
    }
    return count;
}

const struct raft_message *tn_find(const struct tn *tn, raft_id from, raft_id to, unsigned type)
{
    for (size_t i = 0; i < tn->q_len; i++) {
        const struct raft_message *m = &tn->q[tn->q_head + i]->m;
        if (msg_matches(m, from, to, type)) {
            return m;
        }
    }
    return NULL;
}

uint64_t tn_msg_bytes(const struct raft_message *m)
{
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        bytes += m->entries[i].len;
    }
    return bytes;
}

/* ------------------------------------------------------------------ readies */

/* Deep copy of a message leaving a ready. A snapshot carries the sender's state machine
 * (its applied entries up to the snapshot's index), which the contract says is the
 * applied index at raft_ready() time: this ready's committed entries are not applied yet. */
static struct tn_msg *msg_copy(struct tn *tn, raft_id from, const struct raft_message *m)
{
    struct tn_msg *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->m = *m;
    c->m.entries = NULL;
    c->m.snapshot = NULL;
    if (m->n_entries > 0) {
        cr_assert_not_null(m->entries);
        c->ents = calloc(m->n_entries, sizeof(*c->ents));
        cr_assert_not_null(c->ents);
        for (uint32_t i = 0; i < m->n_entries; i++) {
            c->ents[i] = m->entries[i];
            uint8_t *data = NULL;
            if (m->entries[i].len > 0) {
                data = malloc(m->entries[i].len);
                cr_assert_not_null(data);
                memcpy(data, m->entries[i].data, m->entries[i].len);
            }
            c->ents[i].data = data;
        }
        c->n_ents = m->n_entries;
        c->m.entries = c->ents;
    }
    if (m->snapshot != NULL) {
        const struct tn_storage *st = &tn->node[from].st;
        cr_assert_eq(m->type, RAFT_MSG_SNAPSHOT);
        cr_assert_eq(m->snapshot->index, st->applied,
                     SEED_FMT "snapshot from %llu names index %llu, its applied index is %llu",
                     SEED(tn), U(from), U(m->snapshot->index), U(st->applied));
        c->snap = *m->snapshot;
        c->m.snapshot = &c->snap;
        elog_copy(&c->snap_data, &st->applied_log, c->snap.index);
    }
    return c;
}

static void queue_msgs(struct tn *tn, raft_id from, const struct raft_message *msgs, size_t n,
                       bool after_persist)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_message *m = &msgs[i];
        cr_assert_eq(m->from, from, SEED_FMT "message from %llu sent by %llu", SEED(tn), U(m->from),
                     U(from));
        cr_assert(m->to >= 1 && m->to <= TN_NODES_MAX && m->to != from,
                  SEED_FMT "message from %llu to %llu", SEED(tn), U(from), U(m->to));
        cr_assert_lt(m->type, RAFT_MSG_TYPES_);
        cr_assert_eq(m->group_id, TN_GROUP_ID);
        cr_assert_eq(m->type == RAFT_MSG_SNAPSHOT, m->snapshot != NULL);
        struct tn_msg *c = msg_copy(tn, from, m);
        c->after_persist = after_persist;
        q_push(tn, c);
        tn->sent[from][m->to][m->type]++;
        if (after_persist) {
            tn->sent_after_persist[m->type]++;
        } else {
            tn->sent_early[m->type]++;
        }
    }
}

static void install_snapshot(struct tn *tn, raft_id id, const struct raft_snapshot_meta *meta)
{
    struct tn_node *nd = &tn->node[id];
    struct tn_storage *st = &nd->st;
    cr_assert(nd->has_pending_snap,
              SEED_FMT "node %llu asked to install a snapshot it never received", SEED(tn), U(id));
    cr_assert_eq(nd->pending_snap_index, meta->index,
                 SEED_FMT "node %llu installs snapshot %llu, received %llu", SEED(tn), U(id),
                 U(meta->index), U(nd->pending_snap_index));
    cr_assert_gt(meta->index, st->applied, SEED_FMT "a snapshot moves the state forward", SEED(tn));
    st->compact_index = meta->index;
    st->compact_term = meta->term;
    elog_truncate(&st->log, 0);
    elog_free(&st->applied_log);
    st->applied_log = nd->pending_snap;
    nd->pending_snap = (struct tn_elog){0};
    nd->has_pending_snap = false;
    st->applied = meta->index;
    st->conf = meta->conf;
    st->has_conf = true;
    st->snapshots_installed++;
}

static void persist_entries(struct tn *tn, raft_id id, const struct raft_entry *ents, size_t n)
{
    struct tn_storage *st = &tn->node[id].st;
    raft_index first = ents[0].index;
    raft_index last = st->compact_index + st->log.n;
    cr_assert(first > st->compact_index && first <= last + 1,
              SEED_FMT "node %llu persists from %llu, its log is (%llu, %llu]", SEED(tn), U(id),
              U(first), U(st->compact_index), U(last));
    for (size_t i = 0; i < n && ents[i].index <= st->hs.commit; i++) {
        const struct tn_entry *p = elog_at(&st->log, ents[i].index);
        cr_assert(p == NULL || p->term == ents[i].term,
                  SEED_FMT "node %llu rewrites committed entry %llu", SEED(tn), U(id),
                  U(ents[i].index));
    }
    elog_truncate(&st->log, first - st->compact_index - 1);
    raft_term prev = st->log.n > 0 ? st->log.e[st->log.n - 1].term : st->compact_term;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(ents[i].index, first + i, SEED_FMT "ready entries are contiguous", SEED(tn));
        cr_assert_geq(ents[i].term, prev, SEED_FMT "log terms never go down", SEED(tn));
        prev = ents[i].term;
        elog_push(&st->log, ents[i].term, ents[i].index, ents[i].type, ents[i].data, ents[i].len);
    }
}

static void persist_hard_state(struct tn *tn, raft_id id, const struct raft_hard_state *hs)
{
    struct raft_hard_state *old = &tn->node[id].st.hs;
    cr_assert_geq(hs->term, old->term, SEED_FMT "node %llu: term went back", SEED(tn), U(id));
    cr_assert_geq(hs->commit, old->commit, SEED_FMT "node %llu: commit went back", SEED(tn), U(id));
    if (hs->term == old->term && old->vote != 0) {
        cr_assert_eq(hs->vote, old->vote, SEED_FMT "node %llu voted twice in term %llu", SEED(tn),
                     U(id), U(hs->term));
    }
    *old = *hs;
}

static void apply_entries(struct tn *tn, raft_id id, const struct raft_entry *ents, size_t n)
{
    struct tn_storage *st = &tn->node[id].st;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *e = &ents[i];
        cr_assert_eq(e->index, st->applied + 1, SEED_FMT "node %llu applies %llu after %llu",
                     SEED(tn), U(id), U(e->index), U(st->applied));
        cr_assert_leq(e->index, st->hs.commit, SEED_FMT "node %llu applies %llu, commit %llu",
                      SEED(tn), U(id), U(e->index), U(st->hs.commit));
        const struct tn_entry *p = elog_at(&st->log, e->index);
        cr_assert(p != NULL && p->term == e->term,
                  SEED_FMT "node %llu applies entry %llu that was not persisted first", SEED(tn),
                  U(id), U(e->index));
        elog_push(&st->applied_log, e->term, e->index, e->type, e->data, e->len);
        st->applied = e->index;
        if (e->type == RAFT_ENTRY_CONF) {
            int rc = raft_conf_decode(e->data, e->len, &st->conf);
            cr_assert_eq(rc, 0, SEED_FMT "a committed configuration decodes", SEED(tn));
            st->has_conf = true;
        }
    }
}

void tn_process(struct tn *tn, raft_id id, const struct raft_ready *rd)
{
    struct tn_node *nd = node_of(tn, id);
    if (rd->snapshot != NULL) {
        install_snapshot(tn, id, rd->snapshot);
    }
    if (rd->n_entries > 0) {
        persist_entries(tn, id, rd->entries, rd->n_entries);
    }
    if (rd->hard_state_changed) {
        persist_hard_state(tn, id, &rd->hard_state);
    }
    if (rd->n_entries > 0 || rd->hard_state_changed || rd->snapshot != NULL) {
        nd->st.persist_count++;
    }
    queue_msgs(tn, id, rd->msgs, rd->n_msgs, false);
    queue_msgs(tn, id, rd->msgs_after_persist, rd->n_msgs_after_persist, true);
    apply_entries(tn, id, rd->committed, rd->n_committed);
    for (size_t i = 0; i < rd->n_reads; i++) {
        cr_assert_lt(nd->n_reads, TN_READS_MAX);
        nd->reads[nd->n_reads++] = rd->reads[i];
    }
    nd->readies++;
}

static void note_leader(struct tn *tn, raft_id id)
{
    struct raft *r = tn->node[id].r;
    if (raft_role_of(r) != RAFT_LEADER) {
        return;
    }
    raft_term t = raft_term_of(r);
    cr_assert_lt(t, TN_TERMS_MAX);
    cr_assert(tn->leader_of_term[t] == 0 || tn->leader_of_term[t] == id,
              SEED_FMT "two leaders in term %llu: %llu and %llu", SEED(tn), U(t),
              U(tn->leader_of_term[t]), U(id));
    tn->leader_of_term[t] = id;
}

bool tn_ready_one(struct tn *tn, raft_id id)
{
    struct tn_node *nd = node_of(tn, id);
    if (nd->r == NULL || !raft_has_ready(nd->r)) {
        return false;
    }
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    tn_process(tn, id, &rd);
    raft_advance(nd->r);
    note_leader(tn, id);
    return true;
}

void tn_ready_all(struct tn *tn)
{
    for (uint32_t pass = 0; pass < TN_ROUNDS_MAX; pass++) {
        bool any = false;
        for (raft_id id = 1; id <= tn->n; id++) {
            any |= tn_ready_one(tn, id);
        }
        if (!any) {
            return;
        }
    }
    cr_assert_fail(SEED_FMT "readies never ran out", SEED(tn));
}

/* ------------------------------------------------------------------ delivery */

void tn_step(struct tn *tn, raft_id id, const struct raft_message *m)
{
    int rc = raft_step(tn_raft(tn, id), m);
    cr_assert_eq(rc, 0, SEED_FMT "raft_step(node %llu, %s) = %s", SEED(tn), U(id),
                 raft_msg_type_name(m->type), ts_errname(rc));
    note_leader(tn, id);
    tn_ready_all(tn);
}

static bool deliver_one(struct tn *tn)
{
    struct tn_msg *c = q_pop(tn);
    raft_id from = c->m.from, to = c->m.to;
    bool drop =
        tn->cut[from][to] || tn->drop_type[c->m.type] || to > tn->n || tn->node[to].r == NULL;
    if (!drop && tn->tap != NULL) {
        drop = tn->tap(tn, &c->m, tn->tap_ctx);
        cr_assert_leq(c->m.n_entries, c->n_ents, "a tap may only shorten a message");
    }
    if (drop) {
        tn->dropped++;
        msg_free(c);
        return false;
    }
    struct tn_node *nd = &tn->node[to];
    if (c->m.snapshot != NULL) {
        elog_free(&nd->pending_snap);
        nd->pending_snap = c->snap_data;
        c->snap_data = (struct tn_elog){0};
        nd->pending_snap_index = c->snap.index;
        nd->has_pending_snap = true;
    }
    if (tn->trace) {
        fprintf(stderr,
                "tn: %llu->%llu %s term %llu index %llu log_term %llu commit %llu n %u%s%s%s\n",
                U(from), U(to), raft_msg_type_name(c->m.type), U(c->m.term), U(c->m.index),
                U(c->m.log_term), U(c->m.commit), c->m.n_entries, c->m.reject ? " reject" : "",
                c->m.quiesce ? " quiesce" : "", c->m.force ? " force" : "");
    }
    tn->delivered[c->m.type]++;
    tn->rejects[c->m.type] += c->m.reject;
    int rc = raft_step(nd->r, &c->m);
    if (rc == TS_ENOMEM && tn->enomem_ok) {
        tn->enomem++; /* refused whole, like a lost message */
        rc = 0;
    }
    cr_assert_eq(rc, 0, SEED_FMT "raft_step(node %llu, %s from %llu) = %s", SEED(tn), U(to),
                 raft_msg_type_name(c->m.type), U(from), ts_errname(rc));
    note_leader(tn, to);
    msg_free(c);
    return true;
}

size_t tn_deliver_round(struct tn *tn)
{
    size_t batch = tn->q_len, stepped = 0;
    for (size_t i = 0; i < batch; i++) {
        stepped += deliver_one(tn);
    }
    tn_ready_all(tn);
    return stepped;
}

size_t tn_deliver_all(struct tn *tn)
{
    size_t total = 0;
    for (uint32_t round = 0; round < TN_ROUNDS_MAX; round++) {
        tn_ready_all(tn);
        if (tn->q_len == 0) {
            return total;
        }
        total += tn_deliver_round(tn);
    }
    cr_assert_fail(SEED_FMT "the network did not quiet down in %u rounds", SEED(tn), TN_ROUNDS_MAX);
    return total;
}

void tn_forget_applied(struct tn *tn, raft_id id, raft_index index)
{
    struct tn_node *nd = node_of(tn, id);
    cr_assert_null(nd->r, "stop the node first");
    struct tn_storage *st = &nd->st;
    cr_assert(index >= st->compact_index && index <= st->applied);
    size_t keep = 0;
    while (keep < st->applied_log.n && st->applied_log.e[keep].index <= index) {
        keep++;
    }
    for (size_t i = keep; i < st->applied_log.n; i++) {
        cr_assert_neq(st->applied_log.e[i].type, RAFT_ENTRY_CONF,
                      "the configuration as of index must stay what it is");
    }
    elog_truncate(&st->applied_log, keep);
    st->applied = index;
}

int tn_compact(struct tn *tn, raft_id id, raft_index index)
{
    int rc = raft_compact(tn_raft(tn, id), index);
    if (rc != 0) {
        return rc;
    }
    struct tn_storage *st = &tn->node[id].st;
    cr_assert_leq(index, st->applied, SEED_FMT "compacted beyond the applied index", SEED(tn));
    if (index <= st->compact_index) {
        return 0;
    }
    const struct tn_entry *e = elog_at(&st->log, index);
    cr_assert_not_null(e, SEED_FMT "compacting an entry never persisted", SEED(tn));
    st->compact_term = e->term;
    size_t drop = (size_t)(index - st->compact_index);
    for (size_t i = 0; i < drop; i++) {
        free(st->log.e[i].data);
    }
    memmove(st->log.e, st->log.e + drop, (st->log.n - drop) * sizeof(*st->log.e));
    st->log.n -= drop;
    st->compact_index = index;
    return 0;
}

void tn_tick(struct tn *tn, raft_id id, uint32_t n)
{
    struct raft *r = tn_raft(tn, id);
    for (uint32_t i = 0; i < n; i++) {
        raft_tick(r);
        note_leader(tn, id);
        tn_ready_all(tn);
    }
}

void tn_run(struct tn *tn, uint32_t ticks)
{
    for (uint32_t t = 0; t < ticks; t++) {
        for (raft_id id = 1; id <= tn->n; id++) {
            if (tn->node[id].r != NULL) {
                raft_tick(tn->node[id].r);
            }
        }
        tn_deliver_all(tn);
    }
}

/* ------------------------------------------------------------------ faults */

void tn_isolate(struct tn *tn, raft_id id)
{
    for (raft_id j = 1; j <= TN_NODES_MAX; j++) {
        if (j != id) {
            tn->cut[id][j] = true;
            tn->cut[j][id] = true;
        }
    }
}

void tn_cut(struct tn *tn, raft_id a, raft_id b)
{
    tn_cut_oneway(tn, a, b);
    tn_cut_oneway(tn, b, a);
}

void tn_cut_oneway(struct tn *tn, raft_id from, raft_id to)
{
    cr_assert(from <= TN_NODES_MAX && to <= TN_NODES_MAX);
    tn->cut[from][to] = true;
}

void tn_drop_type(struct tn *tn, enum raft_msg_type type)
{
    cr_assert_lt((unsigned)type, RAFT_MSG_TYPES_);
    tn->drop_type[type] = true;
}

void tn_heal(struct tn *tn)
{
    memset(tn->cut, 0, sizeof(tn->cut));
    memset(tn->drop_type, 0, sizeof(tn->drop_type));
    tn->tap = NULL;
    tn->tap_ctx = NULL;
}

void tn_set_tap(struct tn *tn, tn_tap_fn tap, void *ctx)
{
    tn->tap = tap;
    tn->tap_ctx = ctx;
}

/* ------------------------------------------------------------------ helpers */

void tn_age(struct tn *tn, raft_id except, uint32_t ticks)
{
    for (raft_id id = 1; id <= tn->n; id++) {
        if (id != except && tn->node[id].r != NULL) {
            tn_tick(tn, id, ticks);
        }
    }
    tn_drop_queue(tn);
}

bool tn_elect(struct tn *tn, raft_id id)
{
    struct raft *r = tn_raft(tn, id);
    if (raft_quiesced(r)) {
        raft_wake(r);
    }
    uint32_t limit = 40 * tn->node[id].cfg.election_ticks;
    for (uint32_t t = 0; t < limit && raft_role_of(r) != RAFT_LEADER; t++) {
        raft_tick(r);
        note_leader(tn, id);
        tn_deliver_all(tn);
    }
    tn_deliver_all(tn);
    return raft_role_of(r) == RAFT_LEADER;
}

int tn_propose(struct tn *tn, raft_id id, const char *s)
{
    int rc = raft_propose(tn_raft(tn, id), s, (uint32_t)strlen(s), NULL);
    tn_ready_all(tn);
    return rc;
}

raft_id tn_leader(const struct tn *tn)
{
    raft_id best = 0;
    raft_term best_term = 0;
    for (raft_id id = 1; id <= tn->n; id++) {
        const struct raft *r = tn->node[id].r;
        if (r != NULL && raft_role_of(r) == RAFT_LEADER && raft_term_of(r) >= best_term) {
            best = id;
            best_term = raft_term_of(r);
        }
    }
    return best;
}

void tn_wake_all(struct tn *tn)
{
    for (raft_id id = 1; id <= tn->n; id++) {
        if (tn->node[id].r != NULL) {
            raft_wake(tn->node[id].r);
        }
    }
}

static bool converged(const struct tn *tn)
{
    raft_id leader = tn_leader(tn);
    if (leader == 0) {
        return false;
    }
    raft_term term = raft_term_of(tn->node[leader].r);
    const struct raft_conf *conf = raft_conf_of(tn->node[leader].r);
    for (raft_id id = 1; id <= tn->n; id++) {
        const struct raft *r = tn->node[id].r;
        if (r == NULL || raft_conf_role(conf, id) == 0) {
            continue;
        }
        if (raft_term_of(r) != term || raft_leader(r) != leader) {
            return false;
        }
    }
    return true;
}

raft_id tn_converge(struct tn *tn, uint32_t ticks_max)
{
    tn_wake_all(tn);
    tn_deliver_all(tn);
    for (uint32_t t = 0; t < ticks_max && !converged(tn); t++) {
        tn_run(tn, 1);
    }
    return converged(tn) ? tn_leader(tn) : 0;
}

struct raft_message tn_msg(enum raft_msg_type type, raft_id from, raft_id to, raft_term term)
{
    return (struct raft_message){
        .group_id = TN_GROUP_ID, .type = (uint8_t)type, .from = from, .to = to, .term = term};
}

raft_index tn_applied_find(const struct tn *tn, raft_id id, const char *s)
{
    const struct tn_elog *l = &tn->node[id].st.applied_log;
    size_t len = strlen(s);
    for (size_t i = 0; i < l->n; i++) {
        if (l->e[i].len == len && len > 0 && memcmp(l->e[i].data, s, len) == 0) {
            return l->e[i].index;
        }
    }
    return 0;
}

const struct tn_entry *tn_applied_at(const struct tn *tn, raft_id id, raft_index index)
{
    return elog_at(&tn->node[id].st.applied_log, index);
}

size_t tn_applied_data_count(const struct tn *tn, raft_id id)
{
    const struct tn_elog *l = &tn->node[id].st.applied_log;
    size_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
        count += l->e[i].type == RAFT_ENTRY_NORMAL && l->e[i].len > 0;
    }
    return count;
}

const struct tn_entry *tn_persisted(const struct tn *tn, raft_id id, raft_index index)
{
    return elog_at(&tn->node[id].st.log, index);
}

raft_index tn_persisted_last(const struct tn *tn, raft_id id)
{
    return tn->node[id].st.compact_index + tn->node[id].st.log.n;
}

/* ------------------------------------------------------------------ checks */

static void check_pair(const struct tn *tn, raft_id a, raft_id b)
{
    const struct tn_storage *sa = &tn->node[a].st, *sb = &tn->node[b].st;
    for (size_t i = 0; i < sa->applied_log.n; i++) {
        const struct tn_entry *x = &sa->applied_log.e[i];
        const struct tn_entry *y = elog_at(&sb->applied_log, x->index);
        cr_assert(y == NULL || entry_equal(x, y),
                  SEED_FMT "nodes %llu and %llu applied different entries at %llu", SEED(tn), U(a),
                  U(b), U(x->index));
    }
    for (size_t i = 0; i < sa->log.n; i++) {
        const struct tn_entry *x = &sa->log.e[i];
        const struct tn_entry *y = elog_at(&sb->log, x->index);
        cr_assert(y == NULL || y->term != x->term || entry_equal(x, y),
                  SEED_FMT "nodes %llu and %llu hold different entries %llu of term %llu", SEED(tn),
                  U(a), U(b), U(x->index), U(x->term));
    }
}

/* Committed entries are never lost: an applied entry the log still holds is unchanged. */
static void check_applied_persisted(const struct tn *tn, raft_id id)
{
    const struct tn_storage *st = &tn->node[id].st;
    for (size_t i = 0; i < st->applied_log.n; i++) {
        const struct tn_entry *x = &st->applied_log.e[i];
        const struct tn_entry *p = elog_at(&st->log, x->index);
        cr_assert(p == NULL || entry_equal(x, p),
                  SEED_FMT "node %llu lost applied entry %llu from its log", SEED(tn), U(id),
                  U(x->index));
    }
}

void tn_check(const struct tn *tn)
{
    for (raft_id a = 1; a <= tn->n; a++) {
        check_applied_persisted(tn, a);
        for (raft_id b = a + 1; b <= tn->n; b++) {
            check_pair(tn, a, b);
        }
    }
}

void tn_start_elected(struct tn *tn)
{
    tn_start(tn);
    tn_age(tn, 1, tn->cfg.election_ticks);
    cr_assert(tn_elect(tn, 1), "node 1 was elected");
    cr_assert_eq(raft_role_of(tn_raft(tn, 1)), RAFT_LEADER);
}

void tn_start_check_quorum(struct tn *tn, uint32_t n, uint64_t seed)
{
    tn_init(tn, n, seed);
    tn->cfg.check_quorum = true;
    tn_start_elected(tn);
}
