/*
 * Raft configurations: encoding, validation, changes, joint consensus (T§4.3) and the
 * quorum rules over them.
 *
 * Encoded configuration (the data of a RAFT_ENTRY_CONF entry, little endian):
 *
 *   offset  size  field
 *   0       1     version (1)
 *   1       1     n, the number of members (1 .. TS_RAFT_MEMBERS_MAX)
 *   2       9*n   members sorted by id: id (u64), role (u8, RAFT_VOTER...)
 */
#include <string.h>

#include "core/raft/raft_int.h"
#include "core/util/assert.h"
#include "core/util/encoding.h"
#include "core/util/err.h"

#define CONF_VERSION 1u

static bool role_valid(uint8_t role, bool joint)
{
    switch (role) {
    case RAFT_VOTER:
    case RAFT_LEARNER:
        return true;
    case RAFT_VOTER | RAFT_VOTER_OUTGOING:
    case RAFT_VOTER_OUTGOING:
    case RAFT_VOTER_OUTGOING | RAFT_LEARNER_NEXT:
        return joint;
    default:
        return false;
    }
}

bool raft_conf_joint(const struct raft_conf *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].role & RAFT_VOTER_OUTGOING) {
            return true;
        }
    }
    return false;
}

bool raft_conf_valid(const struct raft_conf *c)
{
    if (c->n == 0 || c->n > TS_RAFT_MEMBERS_MAX) {
        return false;
    }
    bool joint = raft_conf_joint(c);
    uint32_t voters = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].id == 0 || (i > 0 && c->m[i].id <= c->m[i - 1].id)) {
            return false;
        }
        if (!role_valid(c->m[i].role, joint)) {
            return false;
        }
        voters += (c->m[i].role & RAFT_VOTER) != 0;
    }
    return voters > 0;
}

uint32_t raft_conf_encode(const struct raft_conf *c, uint8_t *buf)
{
    TS_ASSERT(raft_conf_valid(c));
    buf[0] = CONF_VERSION;
    buf[1] = (uint8_t)c->n;
    uint8_t *p = buf + 2;
    for (uint32_t i = 0; i < c->n; i++) {
        ts_store_le64(p, c->m[i].id);
        p[8] = c->m[i].role;
        p += 9;
    }
    uint32_t len = (uint32_t)(p - buf);
    TS_ASSERT(len <= RAFT_CONF_ENCODED_BYTES_MAX);
    return len;
}

int raft_conf_decode(const uint8_t *buf, uint32_t len, struct raft_conf *out)
{
    memset(out, 0, sizeof *out);
    if (len < 2 || buf[0] != CONF_VERSION || buf[1] == 0 || buf[1] > TS_RAFT_MEMBERS_MAX) {
        return TS_EPROTO;
    }
    if (len != 2u + 9u * buf[1]) {
        return TS_EPROTO;
    }
    out->n = buf[1];
    for (uint32_t i = 0; i < out->n; i++) {
        out->m[i].id = ts_load_le64(buf + 2 + 9 * i);
        out->m[i].role = buf[2 + 9 * i + 8];
    }
    if (!raft_conf_valid(out)) {
        memset(out, 0, sizeof *out);
        return TS_EPROTO;
    }
    return 0;
}

int raft_conf_index_of(const struct raft_conf *c, raft_id id)
{
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

uint8_t raft_conf_role(const struct raft_conf *c, raft_id id)
{
    int i = raft_conf_index_of(c, id);
    return i < 0 ? 0 : c->m[i].role;
}

/* Sets id's role in c (0 removes it), keeping members sorted. False if c is full. */
static bool conf_set(struct raft_conf *c, raft_id id, uint8_t role)
{
    int at = raft_conf_index_of(c, id);
    if (at >= 0) {
        if (role != 0) {
            c->m[at].role = role;
            return true;
        }
        memmove(&c->m[at], &c->m[at + 1], (c->n - (uint32_t)at - 1) * sizeof c->m[0]);
        c->n--;
        return true;
    }
    if (role == 0) {
        return true;
    }
    if (c->n == TS_RAFT_MEMBERS_MAX) {
        return false;
    }
    uint32_t i = c->n;
    while (i > 0 && c->m[i - 1].id > id) {
        c->m[i] = c->m[i - 1];
        i--;
    }
    c->m[i].id = id;
    c->m[i].role = role;
    c->n++;
    return true;
}

int raft_conf_apply_changes(const struct raft_conf *c, const struct raft_change *ch, size_t n,
                            struct raft_conf *out)
{
    TS_ASSERT(!raft_conf_joint(c));
    *out = *c;
    for (size_t i = 0; i < n; i++) {
        if (ch[i].id == 0 || ch[i].type > RAFT_REMOVE) {
            return TS_EINVAL;
        }
        uint8_t role = ch[i].type == RAFT_ADD_VOTER     ? RAFT_VOTER
                       : ch[i].type == RAFT_ADD_LEARNER ? RAFT_LEARNER
                                                        : 0;
        if (role == 0 && raft_conf_index_of(out, ch[i].id) < 0) {
            return TS_EINVAL;
        }
        if (!conf_set(out, ch[i].id, role)) {
            return TS_EINVAL;
        }
    }
    if (out->n == c->n && memcmp(out->m, c->m, c->n * sizeof c->m[0]) == 0) {
        return TS_EINVAL; /* nothing changes */
    }
    return raft_conf_valid(out) ? 0 : TS_EINVAL;
}

uint32_t raft_conf_voter_diff(const struct raft_conf *a, const struct raft_conf *b)
{
    uint32_t diff = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        bool va = (a->m[i].role & RAFT_VOTER) != 0;
        bool vb = (raft_conf_role(b, a->m[i].id) & RAFT_VOTER) != 0;
        diff += va != vb;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        if ((b->m[i].role & RAFT_VOTER) && raft_conf_index_of(a, b->m[i].id) < 0) {
            diff++;
        }
    }
    return diff;
}

void raft_conf_make_joint(const struct raft_conf *old, const struct raft_conf *new_conf,
                          struct raft_conf *out)
{
    TS_ASSERT(!raft_conf_joint(old) && !raft_conf_joint(new_conf));
    memset(out, 0, sizeof *out);
    const struct raft_conf *both[2] = {old, new_conf};
    for (int k = 0; k < 2; k++) {
        for (uint32_t i = 0; i < both[k]->n; i++) {
            raft_id id = both[k]->m[i].id;
            uint8_t ro = raft_conf_role(old, id);
            uint8_t rn = raft_conf_role(new_conf, id);
            uint8_t role = 0;
            if (rn & RAFT_VOTER) {
                role |= RAFT_VOTER;
            }
            if (ro & RAFT_VOTER) {
                role |= RAFT_VOTER_OUTGOING;
                if (rn & RAFT_LEARNER) {
                    role |= RAFT_LEARNER_NEXT;
                }
            } else if (rn & RAFT_LEARNER) {
                role |= RAFT_LEARNER;
            }
            TS_ASSERT(conf_set(out, id, role));
        }
    }
    TS_ASSERT(raft_conf_joint(out));
}

void raft_conf_leave_joint(const struct raft_conf *joint, struct raft_conf *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < joint->n; i++) {
        uint8_t r = joint->m[i].role;
        uint8_t role = (r & RAFT_VOTER)          ? RAFT_VOTER
                       : (r & RAFT_LEARNER_NEXT) ? RAFT_LEARNER
                       : (r & RAFT_LEARNER)      ? RAFT_LEARNER
                                                 : 0;
        if (role != 0) {
            out->m[out->n].id = joint->m[i].id;
            out->m[out->n].role = role;
            out->n++;
        }
    }
    TS_ASSERT(!raft_conf_joint(out));
    TS_ASSERT(raft_conf_valid(out));
}

/* The majority value of one voter set (members whose role has `bit`). */
static uint64_t quorum_of(const struct raft_conf *c, const uint64_t *values, uint8_t bit)
{
    uint64_t v[TS_RAFT_MEMBERS_MAX];
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].role & bit) {
            uint64_t x = values[i];
            uint32_t j = k++;
            while (j > 0 && v[j - 1] < x) { /* insertion sort, descending */
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    }
    return k == 0 ? UINT64_MAX : v[k / 2];
}

uint64_t raft_conf_quorum_value(const struct raft_conf *c, const uint64_t *values)
{
    uint64_t in = quorum_of(c, values, RAFT_VOTER);
    uint64_t out = quorum_of(c, values, RAFT_VOTER_OUTGOING);
    return in < out ? in : out;
}

static int vote_of(const struct raft_conf *c, const uint8_t *votes, uint8_t bit)
{
    uint32_t k = 0, granted = 0, rejected = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].role & bit) {
            k++;
            granted += votes[i] == 1;
            rejected += votes[i] == 2;
        }
    }
    uint32_t majority = k / 2 + 1;
    if (k == 0 || granted >= majority) {
        return 1;
    }
    return k - rejected < majority ? -1 : 0;
}

int raft_conf_vote_result(const struct raft_conf *c, const uint8_t *votes)
{
    int in = vote_of(c, votes, RAFT_VOTER);
    int out = vote_of(c, votes, RAFT_VOTER_OUTGOING);
    if (in == -1 || out == -1) {
        return -1;
    }
    return in == 1 && out == 1 ? 1 : 0;
}
