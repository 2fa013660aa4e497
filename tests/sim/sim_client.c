/*
 * tests/sim/sim_client.c: the replicas' state machine and the clients (see sim.h).
 *
 * The state machine of a group is a fixed array of its keys' values (key k belongs to
 * group k % groups, at slot k / groups). Commands are 33-byte entries (little-endian):
 *
 *   offset  size  field
 *        0     4  client id (SIM_PROBE_CLIENT | group for probes, 0 for fillers)
 *        4     4  the client's op id
 *        8     1  kind (enum sim_op_kind)
 *        9     8  key
 *       17     8  arg1 (PUT: value; CAS: expected)
 *       25     8  arg2 (CAS: new value)
 *
 * Clients run one operation at a time. Writes are proposed on the node the client
 * believes leads the group and are answered when the entry at the returned index is
 * first applied by any replica (the global record of sim_check.c): if it is theirs the
 * operation completes, if another entry took that index the same operation is proposed
 * again (the old entry can never commit). GETs go through raft_read_index() and are
 * answered from the asking replica's state machine once it has applied the read index.
 * An operation not answered before its deadline is recorded lost (lin_lost). Every
 * operation is recorded in the lincheck history with the step as time. One probe client
 * per group proposes a no-op after the heal step (the liveness checker waits for it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util/assert.h"
#include "core/util/encoding.h"
#include "core/util/err.h"
#include "tests/sim/lincheck.h"
#include "tests/sim/sim.h"

_Static_assert((int)SIM_OP_PUT == (int)LIN_PUT && (int)SIM_OP_GET == (int)LIN_GET &&
                   (int)SIM_OP_CAS == (int)LIN_CAS,
               "commands use lincheck's kinds");

static uint64_t cbelow(struct sim *s, uint64_t n)
{
    TS_ASSERT(n > 0);
    return ts_rand_below(&s->rand, n);
}

static const char *op_name(uint8_t kind)
{
    static const char *const names[] = {"PUT", "GET", "CAS", "NOP"};
    return kind <= SIM_OP_NOP ? names[kind] : "?";
}

uint32_t sim_cmd_encode(uint8_t *buf, uint32_t client, uint32_t op, uint8_t kind, uint64_t key,
                        uint64_t arg1, uint64_t arg2)
{
    TS_ASSERT(kind <= SIM_OP_NOP);
    ts_store_le32(buf, client);
    ts_store_le32(buf + 4, op);
    buf[8] = kind;
    ts_store_le64(buf + 9, key);
    ts_store_le64(buf + 17, arg1);
    ts_store_le64(buf + 25, arg2);
    return SIM_CMD_BYTES;
}

bool sim_cmd_decode(const uint8_t *buf, uint32_t len, uint32_t *client, uint32_t *op, uint8_t *kind,
                    uint64_t *key, uint64_t *arg1, uint64_t *arg2)
{
    if (len != SIM_CMD_BYTES || buf[8] > SIM_OP_NOP) {
        return false;
    }
    *client = ts_load_le32(buf);
    *op = ts_load_le32(buf + 4);
    *kind = buf[8];
    *key = ts_load_le64(buf + 9);
    *arg1 = ts_load_le64(buf + 17);
    *arg2 = ts_load_le64(buf + 25);
    return true;
}

uint32_t sim_key_slot(const struct sim *s, uint64_t key)
{
    return (uint32_t)(key / s->p.groups);
}

static uint64_t sm_command(struct sim *s, struct sim_replica *p, const struct raft_entry *e)
{
    uint32_t client, op;
    uint8_t kind;
    uint64_t key, arg1, arg2;
    if (!sim_cmd_decode(e->data, e->len, &client, &op, &kind, &key, &arg1, &arg2)) {
        sim_fail(s, "apply", "group %llu replica %llu: undecodable command at %llu (%u bytes)",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)e->index, e->len);
        return 0;
    }
    if (kind == SIM_OP_NOP) {
        return 0;
    }
    uint32_t slot = sim_key_slot(s, key);
    if (key % s->p.groups != p->group->idx || slot >= s->p.keys || kind == SIM_OP_GET) {
        sim_fail(s, "apply", "group %llu replica %llu: command %s key %llu at %llu",
                 (unsigned long long)p->group->id, (unsigned long long)p->id, op_name(kind),
                 (unsigned long long)key, (unsigned long long)e->index);
        return 0;
    }
    uint64_t *v = &p->sm.vals[slot];
    if (kind == SIM_OP_PUT) {
        *v = arg1;
        return 0;
    }
    if (*v != arg1) {
        return 0;
    }
    *v = arg2;
    return 1;
}

uint64_t sim_sm_apply(struct sim *s, struct sim_replica *p, const struct raft_entry *e)
{
    TS_ASSERT(e->index == p->sm.applied + 1);
    uint64_t result = 0;
    if (e->type == RAFT_ENTRY_CONF) {
        struct raft_conf c;
        if (raft_conf_decode(e->data, e->len, &c) != 0) {
            sim_fail(s, "apply", "group %llu replica %llu: undecodable conf entry at %llu",
                     (unsigned long long)p->group->id, (unsigned long long)p->id,
                     (unsigned long long)e->index);
        } else {
            p->sm.conf = c;
        }
    } else if (e->len > 0) {
        result = sm_command(s, p, e);
    }
    p->sm.applied = e->index;
    p->sm.applied_term = e->term;
    TS_ASSERT(p->sm.applied_term > 0);
    return result;
}

/* ---------------------------------------------------------------------------------- */
/* Clients.                                                                            */

void sim_clients_init(struct sim *s)
{
    s->n_clients = s->p.clients + s->p.groups;
    TS_ASSERT(s->p.clients <= SIM_CLIENTS_MAX);
    s->clients = calloc(s->n_clients, sizeof(*s->clients));
    TS_ASSERT(s->clients != NULL);
    for (uint32_t i = 0; i < s->n_clients; i++) {
        struct sim_client *c = &s->clients[i];
        if (i < s->p.clients) {
            c->id = i + 1;
            c->state = SIM_C_IDLE;
            c->next_step = cbelow(s, s->p.et_steps) + 1;
            continue;
        }
        uint32_t g = i - s->p.clients;
        c->id = SIM_PROBE_CLIENT | g;
        c->probe = true;
        c->gidx = g;
        c->state = SIM_C_DONE; /* woken at the heal step */
        s->groups[g].probe = i;
    }
}

void sim_clients_fini(struct sim *s)
{
    free(s->clients);
    s->clients = NULL;
    s->n_clients = 0;
}

static struct sim_replica *client_target(struct sim *s, struct sim_client *c)
{
    uint32_t g = c->gidx;
    uint8_t h = c->hint[g];
    if (h != 0 && h <= s->p.nodes) {
        struct sim_replica *p = sim_rep(s, h - 1u, g);
        if (p->hosted && p->r != NULL) {
            return p;
        }
    }
    struct sim_replica *best = NULL;
    uint32_t k = 0;
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        struct sim_replica *p = sim_rep(s, n, g);
        if (p->hosted && p->r != NULL && cbelow(s, ++k) == 0) {
            best = p;
        }
    }
    c->hint[g] = best != NULL ? (uint8_t)(best->node->idx + 1) : 0;
    return best;
}

static void client_retry(struct sim *s, struct sim_client *c, struct sim_replica *p, int rc,
                         const char *what)
{
    TS_ASSERT(rc != TS_ENOMEM);
    if (rc == TS_ENOTLEADER) {
        raft_id l = raft_leader(p->r);
        bool known = l != 0 && l != p->id;
        c->hint[c->gidx] = known ? (uint8_t)(sim_id_node(s, l) + 1) : 0;
        c->next_step = s->step + (known ? 1u : s->p.tick_steps);
        return;
    }
    if (rc == TS_EUNAVAIL || rc == TS_EFULL) {
        c->next_step = s->step + s->p.tick_steps;
        return;
    }
    sim_fail(s, "client", "client %u: raft_%s on group %llu replica %llu returned %s", c->id, what,
             (unsigned long long)p->group->id, (unsigned long long)p->id, ts_errname(rc));
}

static void pick_op(struct sim *s, struct sim_client *c)
{
    /* Half the operations go to the first key of each group (contention), the rest
     * anywhere. */
    uint64_t nkeys = (uint64_t)s->p.groups * s->p.keys;
    c->key = cbelow(s, 2) == 0 ? cbelow(s, s->p.groups) : cbelow(s, nkeys);
    uint64_t r = cbelow(s, 100);
    c->kind = r < 40 ? SIM_OP_GET : (r < 75 ? SIM_OP_PUT : SIM_OP_CAS);
    c->arg1 = 0;
    c->arg2 = 0;
    uint64_t unique = ((uint64_t)c->id << 32) | (c->op + 1u);
    if (c->kind == SIM_OP_PUT) {
        c->arg1 = unique;
    } else if (c->kind == SIM_OP_CAS) {
        if (c->n_recent > 0 && cbelow(s, 10) < 7) {
            uint32_t i = (uint32_t)cbelow(s, c->n_recent);
            c->key = c->recent_key[i];
            c->arg1 = c->recent_val[i];
        }
        c->arg2 = unique;
    }
    c->gidx = (uint32_t)(c->key % s->p.groups);
}

static void client_issue(struct sim *s, struct sim_client *c)
{
    if (c->probe) {
        c->kind = SIM_OP_NOP;
        c->key = 0;
        c->arg1 = 0;
        c->arg2 = 0;
    } else {
        pick_op(s, c);
    }
    c->op++;
    c->invoked = s->step;
    c->deadline =
        s->healed ? s->p.heal_step + s->p.live_bound_steps : s->step + s->p.op_timeout_steps;
    c->state = c->kind == SIM_OP_GET ? SIM_C_READ : SIM_C_PROPOSE;
    c->next_step = s->step;
    c->index = 0;
    if (!c->probe) {
        c->lin_op = lin_invoke(s->lin, c->id, c->kind, c->key, c->arg1, c->arg2, s->step);
    }
    sim_trace(s, "client %u op %u: %s key %llu %llu %llu", c->id, c->op, op_name(c->kind),
              (unsigned long long)c->key, (unsigned long long)c->arg1, (unsigned long long)c->arg2);
}

static void client_done(struct sim *s, struct sim_client *c, uint64_t result)
{
    sim_trace(s, "client %u op %u: done %s key %llu -> %llu", c->id, c->op, op_name(c->kind),
              (unsigned long long)c->key, (unsigned long long)result);
    if (!c->probe) {
        lin_return(s->lin, c->lin_op, c->kind == SIM_OP_PUT ? 0 : result, s->step);
        s->st.ops_ok++;
    }
    if (s->healed && c->invoked >= s->p.heal_step) {
        c->ops_after_heal++;
    }
    c->state = c->probe ? SIM_C_DONE : SIM_C_IDLE;
    c->next_step = s->step + cbelow(s, s->p.think_max + 1u);
}

static void client_lost(struct sim *s, struct sim_client *c)
{
    sim_trace(s, "client %u op %u: lost", c->id, c->op);
    if (!c->probe) {
        lin_lost(s->lin, c->lin_op);
        s->st.ops_lost++;
    }
    if (s->healed && c->invoked >= s->p.heal_step) {
        sim_fail(s, "liveness",
                 "client %u: %s of key %llu (group %llu) invoked at step %llu, after the heal "
                 "at %llu, not answered by step %llu",
                 c->id, op_name(c->kind), (unsigned long long)c->key,
                 (unsigned long long)c->gidx + 1, (unsigned long long)c->invoked,
                 (unsigned long long)s->p.heal_step, (unsigned long long)s->step);
    }
    c->state = c->probe ? SIM_C_DONE : SIM_C_IDLE;
    c->next_step = s->step + 1;
}

/* Proposes an entry that changes nothing, so that an index a client waits for gets
 * filled even when the group is otherwise idle. */
static void client_filler(struct sim *s, struct sim_client *c)
{
    struct sim_replica *p = client_target(s, c);
    if (p == NULL || p->in_ready) {
        return;
    }
    uint8_t buf[SIM_CMD_BYTES];
    uint32_t len = sim_cmd_encode(buf, 0, 0, SIM_OP_NOP, 0, 0, 0);
    raft_index idx = 0;
    int rc = raft_propose(p->r, buf, len, &idx);
    TS_ASSERT(rc != TS_ENOMEM);
    sim_mark_dirty(s, p);
    if (rc == TS_ENOTLEADER) {
        raft_id l = raft_leader(p->r);
        c->hint[c->gidx] = l != 0 && l != p->id ? (uint8_t)(sim_id_node(s, l) + 1) : 0;
    }
}

static void client_propose(struct sim *s, struct sim_client *c)
{
    struct sim_replica *p = client_target(s, c);
    if (p == NULL || p->in_ready) {
        c->next_step = s->step + (p == NULL ? s->p.tick_steps : 1u);
        return;
    }
    uint8_t buf[SIM_CMD_BYTES];
    uint32_t len = sim_cmd_encode(buf, c->id, c->op, c->kind, c->key, c->arg1, c->arg2);
    raft_index idx = 0;
    int rc = raft_propose(p->r, buf, len, &idx);
    sim_mark_dirty(s, p);
    if (rc != 0) {
        client_retry(s, c, p, rc, "propose");
        return;
    }
    TS_ASSERT(idx > 0);
    c->state = SIM_C_WAIT;
    c->index = idx;
    c->node = p->node->idx;
    c->proposed_step = s->step;
    c->filler_step = s->step + 2 * s->p.et_steps;
    c->next_step = s->step + 1;
    sim_trace(s, "client %u op %u: proposed on g%llu r%llu at %llu term %llu", c->id, c->op,
              (unsigned long long)p->group->id, (unsigned long long)p->id, (unsigned long long)idx,
              (unsigned long long)raft_term_of(p->r));
}

static void client_wait(struct sim *s, struct sim_client *c)
{
    const struct sim_group *g = &s->groups[c->gidx];
    if (c->index < g->rec_cap && g->rec[c->index].filled) {
        const struct sim_rec *r = &g->rec[c->index];
        if (r->client == c->id && r->op == c->op) {
            client_done(s, c, r->result);
            return;
        }
        sim_trace(s, "client %u op %u: index %llu taken by another entry, proposing again", c->id,
                  c->op, (unsigned long long)c->index);
        c->state = SIM_C_PROPOSE;
        c->next_step = s->step;
        return;
    }
    if (s->step >= c->filler_step) {
        client_filler(s, c);
        c->filler_step = s->step + 2 * s->p.et_steps;
    }
    c->next_step = s->step + 1;
}

static void client_read_answer(struct sim *s, struct sim_client *c, const struct sim_replica *p);

static void client_read(struct sim *s, struct sim_client *c)
{
    struct sim_replica *p = client_target(s, c);
    if (p == NULL || p->in_ready) {
        c->next_step = s->step + (p == NULL ? s->p.tick_steps : 1u);
        return;
    }
    if (s->opt.break_mode == 1) {
        c->state = SIM_C_READ_WAIT;
        c->node = p->node->idx;
        client_read_answer(s, c, p);
        return;
    }
    c->ctx = ((uint64_t)(c - s->clients + 1) << 32) | ++c->read_seq;
    if (raft_lease_valid(p->r)) {
        s->st.lease_reads++;
    }
    int rc = raft_read_index(p->r, c->ctx);
    sim_mark_dirty(s, p);
    if (rc != 0) {
        client_retry(s, c, p, rc, "read_index");
        return;
    }
    c->state = SIM_C_READ_WAIT;
    c->node = p->node->idx;
    c->proposed_step = s->step;
    c->next_step = s->step + 2 * s->p.et_steps;
}

static void client_remember(struct sim_client *c, uint64_t key, uint64_t value)
{
    uint32_t i = c->n_recent < SIM_RECENT_MAX ? c->n_recent++ : (uint32_t)(key % SIM_RECENT_MAX);
    c->recent_key[i] = key;
    c->recent_val[i] = value;
}

static void client_read_answer(struct sim *s, struct sim_client *c, const struct sim_replica *p)
{
    uint64_t v = p->sm.vals[sim_key_slot(s, c->key)];
    client_remember(c, c->key, v);
    s->st.reads_ok++;
    client_done(s, c, v);
}

static struct sim_client *read_client(struct sim *s, const struct sim_replica *p, uint64_t ctx)
{
    uint64_t ci = ctx >> 32;
    if (ci == 0 || ci > s->n_clients) {
        sim_fail(s, "read", "group %llu replica %llu: read state for ctx %llx never asked",
                 (unsigned long long)p->group->id, (unsigned long long)p->id,
                 (unsigned long long)ctx);
        return NULL;
    }
    struct sim_client *c = &s->clients[ci - 1];
    if (c->state != SIM_C_READ_WAIT || c->ctx != ctx || c->node != p->node->idx ||
        c->gidx != p->group->idx) {
        return NULL; /* an older attempt: the client moved on */
    }
    return c;
}

void sim_clients_on_read(struct sim *s, struct sim_replica *p, uint64_t ctx, raft_index index)
{
    struct sim_client *c = read_client(s, p, ctx);
    if (c == NULL) {
        return;
    }
    sim_trace(s, "client %u op %u: read index %llu on g%llu r%llu (applied %llu)", c->id, c->op,
              (unsigned long long)index, (unsigned long long)p->group->id,
              (unsigned long long)p->id, (unsigned long long)p->sm.applied);
    if (p->sm.applied >= index) {
        client_read_answer(s, c, p);
    } else if (p->n_reads < SIM_READS_MAX) {
        p->reads[p->n_reads++] = (struct sim_read){ctx, index};
    }
}

void sim_clients_reads_applied(struct sim *s, struct sim_replica *p)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < p->n_reads; i++) {
        struct sim_read rd = p->reads[i];
        if (rd.index > p->sm.applied) {
            p->reads[w++] = rd;
            continue;
        }
        struct sim_client *c = read_client(s, p, rd.ctx);
        if (c != NULL) {
            client_read_answer(s, c, p);
        }
    }
    p->n_reads = w;
}

static void client_act(struct sim *s, struct sim_client *c)
{
    switch (c->state) {
    case SIM_C_IDLE:
        if (s->live_ok && c->ops_after_heal >= 2) {
            c->state = SIM_C_DONE;
        } else {
            client_issue(s, c);
        }
        break;
    case SIM_C_PROPOSE:
        client_propose(s, c);
        break;
    case SIM_C_WAIT:
        client_wait(s, c);
        break;
    case SIM_C_READ:
        client_read(s, c);
        break;
    case SIM_C_READ_WAIT:
        /* No answer: the replica crashed, lost leadership or the message was lost. */
        c->state = SIM_C_READ;
        c->hint[c->gidx] = 0;
        break;
    default:
        TS_ASSERT(false);
    }
}

void sim_clients_step(struct sim *s)
{
    for (uint32_t i = 0; i < s->n_clients && !s->failed; i++) {
        struct sim_client *c = &s->clients[i];
        if (c->state == SIM_C_DONE) {
            continue;
        }
        if (c->state != SIM_C_IDLE && s->step >= c->deadline) {
            client_lost(s, c);
            continue;
        }
        if (s->step >= c->next_step) {
            client_act(s, c);
        }
    }
}

bool sim_clients_quiet(const struct sim *s)
{
    for (uint32_t i = 0; i < s->n_clients; i++) {
        if (s->clients[i].state != SIM_C_DONE) {
            return false;
        }
    }
    return true;
}

bool sim_probes_done(const struct sim *s)
{
    for (uint32_t i = s->p.clients; i < s->n_clients; i++) {
        if (s->clients[i].ops_after_heal == 0) {
            return false;
        }
    }
    return true;
}
