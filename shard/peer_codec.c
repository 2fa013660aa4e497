/* core/raft's messages on the wire (see peer_codec.h). */
#include "shard/peer_codec.h"

#include "core/util/assert.h"
#include "core/util/err.h"

#include <string.h>

_Static_assert((int)RAFT_MSG_VOTE == (int)PROTO_RAFT_MESSAGE_TYPE_VOTE &&
                   (int)RAFT_MSG_READ_INDEX_RESP ==
                       (int)PROTO_RAFT_MESSAGE_TYPE_READ_INDEX_RESPONSE,
               "raft's message types are the schema's");
_Static_assert((int)RAFT_ENTRY_NORMAL == (int)PROTO_ENTRY_TYPE_NORMAL &&
                   (int)RAFT_ENTRY_CONF == (int)PROTO_ENTRY_TYPE_CONF_CHANGE,
               "raft's entry types are the schema's");

/* The four role lists of ConfState, in the order of the roles' bits. */
static const uint8_t conf_roles[4] = {RAFT_VOTER, RAFT_LEARNER, RAFT_VOTER_OUTGOING,
                                      RAFT_LEARNER_NEXT};

static proto_ref encode_role(struct proto_builder *b, const struct raft_conf *c, uint8_t role)
{
    uint64_t ids[TS_RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if ((c->m[i].role & role) != 0) {
            ids[n++] = c->m[i].id;
        }
    }
    return n == 0 ? 0 : proto_create_vector(b, ids, n, sizeof ids[0], sizeof ids[0]);
}

proto_ref peer_encode_snapshot_meta(struct proto_builder *b, const struct raft_snapshot_meta *s)
{
    proto_ref lists[4];
    for (uint32_t i = 0; i < 4; i++) {
        lists[i] = encode_role(b, &s->conf, conf_roles[i]);
    }
    proto_conf_state_begin(b);
    if (lists[0] != 0) {
        proto_conf_state_add_voters(b, lists[0]);
    }
    if (lists[1] != 0) {
        proto_conf_state_add_learners(b, lists[1]);
    }
    if (lists[2] != 0) {
        proto_conf_state_add_voters_outgoing(b, lists[2]);
    }
    if (lists[3] != 0) {
        proto_conf_state_add_learners_next(b, lists[3]);
    }
    proto_ref conf = proto_conf_state_end(b);
    proto_snapshot_meta_begin(b);
    proto_snapshot_meta_add_index(b, s->index);
    proto_snapshot_meta_add_term(b, s->term);
    proto_snapshot_meta_add_conf_state(b, conf);
    return proto_snapshot_meta_end(b);
}

static proto_ref encode_entries(struct proto_builder *b, const struct raft_entry *e, uint32_t n)
{
    proto_ref refs[TS_RAFT_MSG_ENTRIES_MAX];
    TS_ASSERT(n <= TS_RAFT_MSG_ENTRIES_MAX);
    for (uint32_t i = 0; i < n; i++) {
        proto_ref data = e[i].len > 0 ? proto_create_bytes(b, e[i].data, e[i].len) : 0;
        proto_entry_begin(b);
        proto_entry_add_term(b, e[i].term);
        proto_entry_add_index(b, e[i].index);
        if (e[i].type != RAFT_ENTRY_NORMAL) {
            proto_entry_add_type(b, e[i].type);
        }
        if (data != 0) {
            proto_entry_add_data(b, data);
        }
        refs[i] = proto_entry_end(b);
    }
    return proto_create_vec_ref(b, refs, n);
}

proto_ref peer_encode_raft_message(struct proto_builder *b, const struct raft_message *m)
{
    TS_ASSERT(b != NULL && m != NULL);
    TS_ASSERT(m->type < RAFT_MSG_TYPES_);
    proto_ref entries = m->n_entries > 0 ? encode_entries(b, m->entries, m->n_entries) : 0;
    proto_ref snap = m->snapshot != NULL ? peer_encode_snapshot_meta(b, m->snapshot) : 0;
    proto_raft_message_begin(b);
    proto_raft_message_add_group_id(b, m->group_id);
    proto_raft_message_add_type(b, m->type);
    proto_raft_message_add_from(b, m->from);
    proto_raft_message_add_to(b, m->to);
    proto_raft_message_add_term(b, m->term);
    if (m->log_term != 0) {
        proto_raft_message_add_log_term(b, m->log_term);
    }
    if (m->index != 0) {
        proto_raft_message_add_index(b, m->index);
    }
    if (m->commit != 0) {
        proto_raft_message_add_commit(b, m->commit);
    }
    if (m->reject) {
        proto_raft_message_add_reject(b, true);
    }
    if (m->reject_hint != 0) {
        proto_raft_message_add_reject_hint(b, m->reject_hint);
    }
    if (entries != 0) {
        proto_raft_message_add_entries(b, entries);
    }
    if (snap != 0) {
        proto_raft_message_add_snapshot(b, snap);
    }
    if (m->quiesce) {
        proto_raft_message_add_quiesce(b, true);
    }
    if (m->force) {
        proto_raft_message_add_force(b, true);
    }
    if (m->context != 0) {
        proto_raft_message_add_round(b, m->context);
    }
    return proto_raft_message_end(b);
}

/* Adds the ids of one role list to the configuration being rebuilt. */
static int decode_role(struct proto_vec ids, uint8_t role, struct raft_conf *c)
{
    for (uint32_t i = 0; i < ids.len; i++) {
        uint64_t id = proto_vec_u64_at(ids, i);
        if (id == 0) {
            return TS_EPROTO;
        }
        uint32_t k = 0;
        while (k < c->n && c->m[k].id < id) {
            k++;
        }
        if (k < c->n && c->m[k].id == id) {
            c->m[k].role |= role;
            continue;
        }
        if (c->n == TS_RAFT_MEMBERS_MAX) {
            return TS_EPROTO;
        }
        memmove(&c->m[k + 1], &c->m[k], (c->n - k) * sizeof c->m[0]);
        c->m[k] = (struct raft_member){.id = id, .role = role};
        c->n++;
    }
    return 0;
}

int peer_decode_snapshot_meta(struct proto_snapshot_meta v, struct raft_snapshot_meta *s)
{
    memset(s, 0, sizeof *s);
    s->index = proto_snapshot_meta_index(v);
    s->term = proto_snapshot_meta_term(v);
    struct proto_conf_state cs = proto_snapshot_meta_conf_state(v);
    if (cs.tab == NULL) {
        return TS_EPROTO;
    }
    struct proto_vec lists[4] = {proto_conf_state_voters(cs), proto_conf_state_learners(cs),
                                 proto_conf_state_voters_outgoing(cs),
                                 proto_conf_state_learners_next(cs)};
    for (uint32_t i = 0; i < 4; i++) {
        int rc = decode_role(lists[i], conf_roles[i], &s->conf);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int peer_decode_raft_message(struct proto_raft_message v, struct raft_message *m,
                             struct raft_entry *entries, uint32_t cap,
                             struct raft_snapshot_meta *snap)
{
    TS_ASSERT(v.tab != NULL && m != NULL && snap != NULL);
    memset(m, 0, sizeof *m);
    uint8_t type = proto_raft_message_type(v);
    if (type >= RAFT_MSG_TYPES_) {
        return TS_EPROTO;
    }
    m->group_id = proto_raft_message_group_id(v);
    m->type = type;
    m->from = proto_raft_message_from(v);
    m->to = proto_raft_message_to(v);
    m->term = proto_raft_message_term(v);
    m->log_term = proto_raft_message_log_term(v);
    m->index = proto_raft_message_index(v);
    m->commit = proto_raft_message_commit(v);
    m->reject = proto_raft_message_reject(v);
    m->reject_hint = proto_raft_message_reject_hint(v);
    m->quiesce = proto_raft_message_quiesce(v);
    m->force = proto_raft_message_force(v);
    m->context = proto_raft_message_round(v);
    struct proto_vec ev = proto_raft_message_entries(v);
    if (ev.len > cap) {
        return TS_EPROTO;
    }
    for (uint32_t i = 0; i < ev.len; i++) {
        struct proto_entry e = proto_entry_vec_at(ev, i);
        uint8_t et = proto_entry_type(e);
        if (et != RAFT_ENTRY_NORMAL && et != RAFT_ENTRY_CONF) {
            return TS_EPROTO;
        }
        struct proto_bytes d = proto_entry_data(e);
        entries[i] = (struct raft_entry){.term = proto_entry_term(e),
                                         .index = proto_entry_index(e),
                                         .data = d.data,
                                         .len = d.len,
                                         .type = et};
    }
    m->entries = ev.len > 0 ? entries : NULL;
    m->n_entries = ev.len;
    struct proto_snapshot_meta sv = proto_raft_message_snapshot(v);
    if (type == RAFT_MSG_SNAPSHOT) {
        if (sv.tab == NULL) {
            return TS_EPROTO;
        }
        int rc = peer_decode_snapshot_meta(sv, snap);
        if (rc != 0) {
            return rc;
        }
        m->snapshot = snap;
    }
    return 0;
}

/* ---- Coalesced heartbeats -------------------------------------------------------------- */

bool peer_heartbeat_compact(const struct raft_message *m)
{
    bool hb = m->type == RAFT_MSG_HEARTBEAT;
    return (hb || m->type == RAFT_MSG_HEARTBEAT_RESP) && !m->reject && !m->force &&
           m->log_term == 0 && m->index == 0 && m->reject_hint == 0 && m->n_entries == 0 &&
           m->snapshot == NULL && (hb || (m->commit == 0 && !m->quiesce));
}

struct proto_heartbeat peer_heartbeat_encode(const struct raft_message *m)
{
    TS_ASSERT(m->type == RAFT_MSG_HEARTBEAT && peer_heartbeat_compact(m));
    return (struct proto_heartbeat){.group_id = m->group_id,
                                    .term = m->term,
                                    .commit = m->commit,
                                    .from = m->from,
                                    .to = m->to,
                                    .read_context = m->context,
                                    .quiesce = m->quiesce};
}

struct proto_heartbeat_ack peer_heartbeat_ack_encode(const struct raft_message *m)
{
    TS_ASSERT(m->type == RAFT_MSG_HEARTBEAT_RESP && peer_heartbeat_compact(m));
    return (struct proto_heartbeat_ack){.group_id = m->group_id,
                                        .term = m->term,
                                        .from = m->from,
                                        .to = m->to,
                                        .read_context = m->context};
}

void peer_heartbeat_decode(struct proto_heartbeat hb, struct raft_message *m)
{
    *m = (struct raft_message){.group_id = hb.group_id,
                               .type = RAFT_MSG_HEARTBEAT,
                               .from = hb.from,
                               .to = hb.to,
                               .term = hb.term,
                               .commit = hb.commit,
                               .context = hb.read_context,
                               .quiesce = hb.quiesce};
}

void peer_heartbeat_ack_decode(struct proto_heartbeat_ack a, struct raft_message *m)
{
    *m = (struct raft_message){.group_id = a.group_id,
                               .type = RAFT_MSG_HEARTBEAT_RESP,
                               .from = a.from,
                               .to = a.to,
                               .term = a.term,
                               .context = a.read_context};
}
