/*
 * tests/sim/sim_check.c: the checkers (see sim.h).
 *
 *  election      at most one leader per (group, term), from raft_role_of() after every
 *                batch of inputs;
 *  safety        a per-group record of committed entries (index -> term, hash, result),
 *                filled by the first replica that applies each index: any replica
 *                applying a different entry, or getting a different result, at an index
 *                breaks log matching / state machine safety; applies must be consecutive
 *                (checked in sim.c);
 *  completeness  a replica that becomes leader of term T holds, with the recorded term,
 *                every entry committed by a leader of an earlier term (P§5.4.2);
 *  linearizability  lin_check() over the clients' history (LIN_UNKNOWN is reported, not
 *                a failure);
 *  liveness      after the heal step: every group has a leader and its probe commits,
 *                and no client operation invoked after the heal is lost;
 *  memory        every raft instance freed at the end (ASan checks the rest).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/assert.h"
#include "core/util/crc32c.h"
#include "tests/sim/lincheck.h"
#include "tests/sim/sim.h"

void sim_fail(struct sim *s, const char *checker, const char *fmt, ...)
{
    if (s->failed) {
        return;
    }
    s->failed = true;
    snprintf(s->fail_checker, sizeof(s->fail_checker), "%s", checker);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->fail_msg, sizeof(s->fail_msg), fmt, ap);
    va_end(ap);
    sim_trace(s, "FAILED %s: %s", s->fail_checker, s->fail_msg);
}

int sim_check_group_init(struct sim_group *g)
{
    g->rec_cap = 256;
    g->rec = calloc(g->rec_cap, sizeof(*g->rec));
    g->terms_cap = 16;
    g->terms = calloc(g->terms_cap, sizeof(*g->terms));
    return g->rec != NULL && g->terms != NULL ? 0 : -1;
}

void sim_check_group_fini(struct sim_group *g)
{
    free(g->rec);
    free(g->terms);
    g->rec = NULL;
    g->terms = NULL;
}

uint32_t sim_hash_entry(uint8_t type, const uint8_t *data, uint32_t len)
{
    uint32_t h = ts_crc32c(0, &type, 1);
    return ts_crc32c(h, len > 0 ? data : NULL, len);
}

static void rec_reserve(struct sim_group *g, raft_index index)
{
    if (index < g->rec_cap) {
        return;
    }
    raft_index cap = g->rec_cap;
    while (cap <= index) {
        cap *= 2;
    }
    struct sim_rec *r = realloc(g->rec, cap * sizeof(*r));
    TS_ASSERT(r != NULL);
    memset(r + g->rec_cap, 0, (cap - g->rec_cap) * sizeof(*r));
    g->rec = r;
    g->rec_cap = cap;
}

/* A committed entry seen for the first time: record it, follow configurations. */
static void rec_fill(struct sim *s, struct sim_replica *p, const struct raft_entry *e,
                     uint64_t result)
{
    struct sim_group *g = p->group;
    struct sim_rec *r = &g->rec[e->index];
    r->filled = true;
    r->type = e->type;
    r->term = e->term;
    r->hash = sim_hash_entry(e->type, e->data, e->len);
    r->by = p->id;
    r->result = result;
    uint8_t kind;
    uint64_t key, a1, a2;
    if (e->type == RAFT_ENTRY_NORMAL &&
        !sim_cmd_decode(e->data, e->len, &r->client, &r->op, &kind, &key, &a1, &a2)) {
        r->client = 0;
        r->op = 0;
    }
    if (e->index > g->rec_max) {
        g->rec_max = e->index;
    }
    struct raft_conf c;
    if (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, &c) == 0 &&
        e->index > g->conf_index) {
        g->conf = c;
        g->conf_index = e->index;
        g->gc_due = true;
    }
    /* A learner whose addition was proposed at this index is now a member or never will
     * be: either way the latest committed configuration decides (gc_step). */
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        struct sim_replica *q = sim_rep(s, n, g->idx);
        if (q->joining == e->index) {
            q->joining = 0;
            g->gc_due = true;
        }
    }
}

void sim_check_applied(struct sim *s, struct sim_replica *p, const struct raft_entry *e,
                       uint64_t result)
{
    struct sim_group *g = p->group;
    if (e->index >= SIM_LOG_MAX) {
        sim_fail(s, "sim", "group %llu: index %llu over the record's limit",
                 (unsigned long long)g->id, (unsigned long long)e->index);
        return;
    }
    rec_reserve(g, e->index);
    const struct sim_rec *r = &g->rec[e->index];
    if (!r->filled) {
        rec_fill(s, p, e, result);
        return;
    }
    uint32_t h = sim_hash_entry(e->type, e->data, e->len);
    if (r->term != e->term || r->hash != h || r->type != e->type) {
        sim_fail(s, "safety",
                 "group %llu index %llu: replica %llu applied term %llu type %u hash %08x, "
                 "replica %llu applied term %llu type %u hash %08x before",
                 (unsigned long long)g->id, (unsigned long long)e->index, (unsigned long long)p->id,
                 (unsigned long long)e->term, e->type, h, (unsigned long long)r->by,
                 (unsigned long long)r->term, r->type, r->hash);
    } else if (r->result != result) {
        sim_fail(s, "safety",
                 "group %llu index %llu: replica %llu computed result %llu, replica %llu %llu "
                 "(state machines diverged)",
                 (unsigned long long)g->id, (unsigned long long)e->index, (unsigned long long)p->id,
                 (unsigned long long)result, (unsigned long long)r->by,
                 (unsigned long long)r->result);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Election safety and leader completeness.                                           */

static struct sim_term_rec *term_get(struct sim *s, struct sim_group *g, raft_term term)
{
    uint32_t lo = 0, hi = g->n_terms;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->terms[mid].term < term) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < g->n_terms && g->terms[lo].term == term) {
        return &g->terms[lo];
    }
    if (g->n_terms >= SIM_TERMS_MAX) {
        sim_fail(s, "sim", "group %llu: more than %u leader terms", (unsigned long long)g->id,
                 SIM_TERMS_MAX);
        return NULL;
    }
    if (g->n_terms == g->terms_cap) {
        struct sim_term_rec *t = realloc(g->terms, 2 * g->terms_cap * sizeof(*t));
        TS_ASSERT(t != NULL);
        g->terms = t;
        g->terms_cap *= 2;
    }
    memmove(&g->terms[lo + 1], &g->terms[lo], (g->n_terms - lo) * sizeof(*g->terms));
    g->n_terms++;
    g->terms[lo] = (struct sim_term_rec){term, 0, 0};
    return &g->terms[lo];
}

static void check_completeness(struct sim *s, struct sim_replica *p, raft_term term)
{
    const struct sim_group *g = p->group;
    raft_index cmax = 0;
    for (uint32_t i = 0; i < g->n_terms && g->terms[i].term < term; i++) {
        cmax = g->terms[i].commit_max > cmax ? g->terms[i].commit_max : cmax;
    }
    raft_index first = raft_first_index(p->r), last = raft_last_index(p->r);
    if (cmax > last) {
        sim_fail(s, "completeness",
                 "group %llu: replica %llu leads term %llu with last index %llu, but a leader "
                 "of an earlier term committed up to %llu",
                 (unsigned long long)g->id, (unsigned long long)p->id, (unsigned long long)term,
                 (unsigned long long)last, (unsigned long long)cmax);
        return;
    }
    raft_index hi = cmax < g->rec_max ? cmax : g->rec_max;
    for (raft_index i = first > 1 ? first : 1; i <= hi; i++) {
        if (!g->rec[i].filled || raft_term_at(p->r, i) == g->rec[i].term) {
            continue;
        }
        sim_fail(s, "completeness",
                 "group %llu: replica %llu leads term %llu with term %llu at index %llu, but "
                 "index %llu was committed with term %llu",
                 (unsigned long long)g->id, (unsigned long long)p->id, (unsigned long long)term,
                 (unsigned long long)raft_term_at(p->r, i), (unsigned long long)i,
                 (unsigned long long)i, (unsigned long long)g->rec[i].term);
        return;
    }
}

static void check_commit(struct sim *s, struct sim_replica *p)
{
    raft_index c = raft_commit_index(p->r);
    if (c < p->seen_commit || raft_applied_index(p->r) > c) {
        sim_fail(s, "commit", "group %llu replica %llu: commit index %llu after %llu, applied %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id, (unsigned long long)c,
                 (unsigned long long)p->seen_commit, (unsigned long long)raft_applied_index(p->r));
    }
    p->seen_commit = c;
}

void sim_check_observe(struct sim *s, struct sim_replica *p)
{
    struct raft *r = p->r;
    check_commit(s, p);
    raft_id leader = raft_leader(r);
    if (leader != p->last_leader) {
        p->last_leader = leader;
        sim_trace(s, "g%llu r%llu: leader %llu term %llu (%s)", (unsigned long long)p->group->id,
                  (unsigned long long)p->id, (unsigned long long)leader,
                  (unsigned long long)raft_term_of(r), raft_role_name(raft_role_of(r)));
    }
    if (raft_role_of(r) != RAFT_LEADER) {
        return;
    }
    raft_term term = raft_term_of(r);
    struct sim_term_rec *t = term_get(s, p->group, term);
    if (t == NULL) {
        return;
    }
    if (t->leader == 0) {
        t->leader = p->id;
        s->st.elections++;
    } else if (t->leader != p->id) {
        sim_fail(s, "election", "group %llu term %llu: replicas %llu and %llu both lead",
                 (unsigned long long)p->group->id, (unsigned long long)term,
                 (unsigned long long)t->leader, (unsigned long long)p->id);
        return;
    }
    if (p->led_term != term) {
        p->led_term = term;
        check_completeness(s, p, term);
    }
    raft_index c = raft_commit_index(r);
    if (c > t->commit_max) {
        t->commit_max = c;
    }
}

/* ---------------------------------------------------------------------------------- */
/* Liveness and linearizability.                                                       */

static const char *group_live(struct sim *s, const struct sim_group *g)
{
    const struct sim_replica *l = NULL;
    raft_term maxt = 0;
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        const struct sim_replica *p = sim_rep(s, n, g->idx);
        if (p->r == NULL || raft_conf_role(&g->conf, p->id) == 0) {
            continue;
        }
        raft_term t = raft_term_of(p->r);
        maxt = t > maxt ? t : maxt;
        if (raft_role_of(p->r) == RAFT_LEADER && (l == NULL || t > raft_term_of(l->r))) {
            l = p;
        }
    }
    if (l == NULL) {
        return "no leader";
    }
    if (raft_term_of(l->r) < maxt) {
        return "a member has a higher term than the leader";
    }
    if (s->clients[g->probe].ops_after_heal == 0) {
        return "the probe proposal has not committed";
    }
    return NULL;
}

bool sim_check_liveness(struct sim *s, bool final)
{
    for (uint32_t i = 0; i < s->p.groups; i++) {
        const struct sim_group *g = &s->groups[i];
        const char *why = group_live(s, g);
        if (why == NULL) {
            continue;
        }
        if (final) {
            sim_fail(s, "liveness", "group %llu, %llu steps after the heal at step %llu: %s",
                     (unsigned long long)g->id, (unsigned long long)(s->step - s->p.heal_step),
                     (unsigned long long)s->p.heal_step, why);
        }
        return false;
    }
    sim_trace(s, "LIVE: every group has a leader and committed its probe");
    return true;
}

void sim_check_lin(struct sim *s)
{
    for (uint32_t i = 0; i < s->n_clients; i++) {
        const struct sim_client *c = &s->clients[i];
        if (!c->probe && c->state != SIM_C_IDLE && c->state != SIM_C_DONE) {
            lin_lost(s->lin, c->lin_op);
        }
    }
    char why[512] = "";
    enum lin_result r = lin_check(s->lin, SIM_LIN_STEPS_MAX, why, sizeof(why));
    if (r == LIN_ILLEGAL) {
        sim_fail(s, "linearizability", "%s", why);
    } else if (r == LIN_UNKNOWN) {
        snprintf(s->lin_note, sizeof(s->lin_note), "%s", why);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Log matching (P§5.3): two logs with an entry of the same index and term agree on   */
/* every entry before it. Compared on terms, within SIM_MATCH_WINDOW of the top.     */

static void match_pair(struct sim *s, const struct sim_replica *a, const struct sim_replica *b)
{
    raft_index fa = raft_first_index(a->r), fb = raft_first_index(b->r);
    raft_index lo = (fa > fb ? fa : fb) - 1;
    raft_index la = raft_last_index(a->r), lb = raft_last_index(b->r);
    raft_index hi = la < lb ? la : lb;
    if (hi > SIM_MATCH_WINDOW && lo < hi - SIM_MATCH_WINDOW) {
        lo = hi - SIM_MATCH_WINDOW;
    }
    lo = lo > 0 ? lo : 1;
    raft_index i = hi;
    while (i >= lo && i > 0 && raft_term_at(a->r, i) != raft_term_at(b->r, i)) {
        i--;
    }
    for (raft_index j = i; j >= lo && j > 0; j--) {
        raft_term ta = raft_term_at(a->r, j), tb = raft_term_at(b->r, j);
        if (ta != tb) {
            sim_fail(s, "log-matching",
                     "group %llu: replicas %llu and %llu hold index %llu with term %llu, "
                     "but index %llu with terms %llu and %llu",
                     (unsigned long long)a->group->id, (unsigned long long)a->id,
                     (unsigned long long)b->id, (unsigned long long)i,
                     (unsigned long long)raft_term_at(a->r, i), (unsigned long long)j,
                     (unsigned long long)ta, (unsigned long long)tb);
            return;
        }
    }
}

void sim_check_log_matching(struct sim *s)
{
    for (uint32_t g = 0; g < s->p.groups && !s->failed; g++) {
        for (uint32_t a = 0; a < s->p.nodes; a++) {
            const struct sim_replica *pa = sim_rep(s, a, g);
            for (uint32_t b = a + 1; b < s->p.nodes && pa->r != NULL && !s->failed; b++) {
                const struct sim_replica *pb = sim_rep(s, b, g);
                if (pb->r != NULL) {
                    match_pair(s, pa, pb);
                }
            }
        }
    }
}
