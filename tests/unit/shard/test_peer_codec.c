/*
 * shard/peer_codec.c: core/raft's messages through net/proto and back.
 *
 * Every message travels the way the host sends it: a RaftMessage inside a RaftBatch
 * inside a Message, finished as a frame, verified by proto_message_decode(), then
 * peer_decode_raft_message(). The decoded message must equal the original field by
 * field (entries and snapshot configuration included). Malformed messages are built
 * with the generated builder directly, since the encoder refuses to write them.
 */
#include "shard/peer_codec.h"

#include "core/util/err.h"
#include "core/util/rand.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ---- Fixture ---------------------------------------------------------------------------- */

struct codec {
    struct proto_builder b;
    struct raft_entry *dec; /* TS_RAFT_MSG_ENTRIES_MAX + 1 */
    struct raft_snapshot_meta snap;
    struct raft_message out;
    uint8_t *data; /* payload bytes entries point into */
    uint32_t data_bytes;
};

static struct codec *codec_new(void)
{
    struct codec *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    cr_assert_eq(proto_builder_init(&c->b, ts_allocator_default(), 4096, TS_FRAME_BYTES_MAX), 0);
    c->dec = calloc(TS_RAFT_MSG_ENTRIES_MAX + 1, sizeof *c->dec);
    cr_assert_not_null(c->dec);
    c->data_bytes = 1u << 16;
    c->data = malloc(c->data_bytes);
    cr_assert_not_null(c->data);
    for (uint32_t i = 0; i < c->data_bytes; i++) {
        c->data[i] = (uint8_t)(i * 131u + 7u);
    }
    return c;
}

static void codec_free(struct codec *c)
{
    proto_builder_fini(&c->b);
    free(c->dec);
    free(c->data);
    free(c);
}

/* Wraps the RaftMessage `rm` (already in c->b) as Message{RaftBatch{messages: [rm]}},
 * finishes the frame, verifies it and returns the RaftMessage view (valid until the
 * builder's next reset). */
static struct proto_raft_message frame_and_view(struct codec *c, proto_ref rm)
{
    struct proto_builder *b = &c->b;
    cr_assert_neq(rm, 0);
    proto_ref vec = proto_create_vec_ref(b, &rm, 1);
    proto_raft_batch_begin(b);
    proto_raft_batch_add_from_node(b, 1);
    proto_raft_batch_add_to_node(b, 2);
    proto_raft_batch_add_cluster_id(b, 77);
    proto_raft_batch_add_messages(b, vec);
    proto_ref batch = proto_raft_batch_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RAFT_BATCH, batch);
    proto_ref msg = proto_message_end(b);
    const uint8_t *frame;
    uint32_t len;
    int rc = proto_message_finish(b, msg, true, &frame, &len);
    cr_assert_eq(rc, 0, "finish: %s", ts_strerror(rc));
    struct proto_message pm;
    char err[256] = "";
    rc = proto_message_decode(frame, len, true, &pm, err, sizeof err);
    cr_assert_eq(rc, 0, "decode: %s", err);
    cr_assert_eq(proto_message_body_type(pm), PROTO_BODY_RAFT_BATCH);
    struct proto_vec msgs = proto_raft_batch_messages(proto_message_body_as_raft_batch(pm));
    cr_assert_eq(msgs.len, 1);
    return proto_raft_message_vec_at(msgs, 0);
}

/* Encodes m with peer_encode_raft_message and decodes it into c->out with `cap`
 * entries of room. Returns peer_decode_raft_message's result. */
static int round_trip(struct codec *c, const struct raft_message *m, uint32_t cap)
{
    proto_builder_reset(&c->b);
    proto_ref rm = peer_encode_raft_message(&c->b, m);
    struct proto_raft_message v = frame_and_view(c, rm);
    memset(&c->snap, 0xa5, sizeof c->snap);
    return peer_decode_raft_message(v, &c->out, c->dec, cap, &c->snap);
}

/* Decodes the hand-built RaftMessage rm (in c->b) with the full entry cap. */
static int decode_raw(struct codec *c, proto_ref rm)
{
    struct proto_raft_message v = frame_and_view(c, rm);
    return peer_decode_raft_message(v, &c->out, c->dec, TS_RAFT_MSG_ENTRIES_MAX, &c->snap);
}

/* want's configuration must already be sorted by id (raft_conf's contract). */
static void assert_same_conf(const struct raft_conf *want, const struct raft_conf *got,
                             uint64_t seed)
{
    cr_assert_eq(got->n, want->n, "seed %llu: conf n %u, want %u", (unsigned long long)seed, got->n,
                 want->n);
    for (uint32_t i = 0; i < want->n; i++) {
        cr_assert_eq(got->m[i].id, want->m[i].id, "seed %llu: member %u id %llu, want %llu",
                     (unsigned long long)seed, i, (unsigned long long)got->m[i].id,
                     (unsigned long long)want->m[i].id);
        cr_assert_eq(got->m[i].role, want->m[i].role, "seed %llu: member %u role %u, want %u",
                     (unsigned long long)seed, i, got->m[i].role, want->m[i].role);
    }
}

static void assert_same_entries(const struct raft_message *want, const struct raft_message *got,
                                uint64_t seed)
{
    cr_assert_eq(got->n_entries, want->n_entries, "seed %llu: %u entries, want %u",
                 (unsigned long long)seed, got->n_entries, want->n_entries);
    cr_assert_eq(got->entries == NULL, want->n_entries == 0, "seed %llu: entries pointer",
                 (unsigned long long)seed);
    for (uint32_t i = 0; i < want->n_entries; i++) {
        const struct raft_entry *w = &want->entries[i];
        const struct raft_entry *g = &got->entries[i];
        cr_assert_eq(g->term, w->term, "seed %llu: entry %u term", (unsigned long long)seed, i);
        cr_assert_eq(g->index, w->index, "seed %llu: entry %u index", (unsigned long long)seed, i);
        cr_assert_eq(g->type, w->type, "seed %llu: entry %u type", (unsigned long long)seed, i);
        cr_assert_eq(g->len, w->len, "seed %llu: entry %u len %u, want %u",
                     (unsigned long long)seed, i, g->len, w->len);
        if (w->len > 0) {
            cr_assert(memcmp(g->data, w->data, w->len) == 0, "seed %llu: entry %u data",
                      (unsigned long long)seed, i);
        }
    }
}

static void assert_same_message(const struct raft_message *want, const struct raft_message *got,
                                uint64_t seed)
{
    cr_assert_eq(got->group_id, want->group_id, "seed %llu: group_id", (unsigned long long)seed);
    cr_assert_eq(got->type, want->type, "seed %llu: type %u, want %u", (unsigned long long)seed,
                 got->type, want->type);
    cr_assert_eq(got->reject, want->reject, "seed %llu: reject", (unsigned long long)seed);
    cr_assert_eq(got->quiesce, want->quiesce, "seed %llu: quiesce", (unsigned long long)seed);
    cr_assert_eq(got->force, want->force, "seed %llu: force", (unsigned long long)seed);
    cr_assert_eq(got->from, want->from, "seed %llu: from", (unsigned long long)seed);
    cr_assert_eq(got->to, want->to, "seed %llu: to", (unsigned long long)seed);
    cr_assert_eq(got->term, want->term, "seed %llu: term", (unsigned long long)seed);
    cr_assert_eq(got->log_term, want->log_term, "seed %llu: log_term", (unsigned long long)seed);
    cr_assert_eq(got->index, want->index, "seed %llu: index", (unsigned long long)seed);
    cr_assert_eq(got->commit, want->commit, "seed %llu: commit", (unsigned long long)seed);
    cr_assert_eq(got->reject_hint, want->reject_hint, "seed %llu: reject_hint",
                 (unsigned long long)seed);
    cr_assert_eq(got->context, want->context, "seed %llu: context", (unsigned long long)seed);
    assert_same_entries(want, got, seed);
    if (want->type != RAFT_MSG_SNAPSHOT) {
        cr_assert_null(got->snapshot, "seed %llu: snapshot on a type %u message",
                       (unsigned long long)seed, want->type);
        return;
    }
    cr_assert_not_null(got->snapshot, "seed %llu: SNAPSHOT without metadata",
                       (unsigned long long)seed);
    cr_assert_eq(got->snapshot->index, want->snapshot->index, "seed %llu: snapshot index",
                 (unsigned long long)seed);
    cr_assert_eq(got->snapshot->term, want->snapshot->term, "seed %llu: snapshot term",
                 (unsigned long long)seed);
    assert_same_conf(&want->snapshot->conf, &got->snapshot->conf, seed);
}

/* Fills e[0..n) with entries whose data are slices of c->data: every third is empty,
 * every fifth is a configuration entry. */
static void fill_entries(const struct codec *c, struct raft_entry *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = i % 3 == 0 ? 0 : 1 + (i * 37u) % 200u;
        e[i] = (struct raft_entry){.term = 3 + i / 100,
                                   .index = 1000 + i,
                                   .data = len > 0 ? c->data + (i * 53u) % 4096u : NULL,
                                   .len = len,
                                   .type = i % 5 == 4 ? RAFT_ENTRY_CONF : RAFT_ENTRY_NORMAL};
    }
}

static struct raft_message base_message(uint8_t type)
{
    return (struct raft_message){.group_id = 0x0102030405060708ull,
                                 .type = type,
                                 .from = 3,
                                 .to = 0xfffffffffffffff1ull,
                                 .term = 9};
}

/* ---- Round trips ------------------------------------------------------------------------- */

static const struct raft_snapshot_meta plain_snapshot = {
    .index = 500,
    .term = 7,
    .conf = {.n = 3, .m = {{1, RAFT_VOTER}, {2, RAFT_VOTER}, {3, RAFT_VOTER}}},
};

Test(peer_codec, every_type_without_entries)
{
    struct codec *c = codec_new();
    for (uint8_t t = 0; t < RAFT_MSG_TYPES_; t++) {
        struct raft_message m = base_message(t);
        m.snapshot = t == RAFT_MSG_SNAPSHOT ? &plain_snapshot : NULL;
        cr_assert_eq(round_trip(c, &m, TS_RAFT_MSG_ENTRIES_MAX), 0, "type %u", t);
        assert_same_message(&m, &c->out, t);
    }
    codec_free(c);
}

Test(peer_codec, every_type_with_entries_and_every_field)
{
    struct codec *c = codec_new();
    struct raft_entry e[7];
    fill_entries(c, e, 7);
    for (uint8_t t = 0; t < RAFT_MSG_TYPES_; t++) {
        for (int flags = 0; flags < 2; flags++) {
            struct raft_message m = base_message(t);
            m.reject = flags == 1;
            m.quiesce = flags == 1;
            m.force = flags == 0;
            m.log_term = 8;
            m.index = 0xfedcba9876543210ull;
            m.commit = 41;
            m.reject_hint = flags == 1 ? 17 : 0;
            m.context = flags == 1 ? UINT64_MAX : 5;
            m.entries = e;
            m.n_entries = 7;
            m.snapshot = t == RAFT_MSG_SNAPSHOT ? &plain_snapshot : NULL;
            cr_assert_eq(round_trip(c, &m, TS_RAFT_MSG_ENTRIES_MAX), 0, "type %u", t);
            assert_same_message(&m, &c->out, t * 2u + (unsigned)flags);
        }
    }
    codec_free(c);
}

Test(peer_codec, entry_counts_data_and_types)
{
    struct codec *c = codec_new();
    struct raft_entry *e = calloc(TS_RAFT_MSG_ENTRIES_MAX, sizeof *e);
    cr_assert_not_null(e);
    fill_entries(c, e, TS_RAFT_MSG_ENTRIES_MAX);
    const uint32_t counts[] = {0, 1, 2, 3, 64, 1000, TS_RAFT_MSG_ENTRIES_MAX};
    for (uint32_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        struct raft_message m = base_message(RAFT_MSG_APPEND);
        m.index = 999;
        m.log_term = 3;
        m.commit = 999;
        m.entries = e;
        m.n_entries = counts[k];
        /* The cap may equal the count exactly. */
        cr_assert_eq(round_trip(c, &m, counts[k]), 0, "%u entries", counts[k]);
        assert_same_message(&m, &c->out, counts[k]);
    }
    /* One entry of each kind alone: empty Normal (a leader's no-op), data Normal, empty
     * and data Conf. */
    const struct raft_entry singles[4] = {
        {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL},
        {.term = 1, .index = 2, .data = c->data, .len = 1, .type = RAFT_ENTRY_NORMAL},
        {.term = 2, .index = 3, .type = RAFT_ENTRY_CONF},
        {.term = 2, .index = 4, .data = c->data + 9, .len = 300, .type = RAFT_ENTRY_CONF},
    };
    for (uint32_t k = 0; k < 4; k++) {
        struct raft_message m = base_message(RAFT_MSG_APPEND);
        m.entries = &singles[k];
        m.n_entries = 1;
        cr_assert_eq(round_trip(c, &m, 1), 0, "single %u", k);
        assert_same_message(&m, &c->out, k);
        cr_assert_eq(c->out.entries[0].type, singles[k].type);
    }
    free(e);
    codec_free(c);
}

/* Configurations using every role bit; members sorted by id as raft_conf requires, so the
 * decoder (which rebuilds the order from four per-role lists) must sort them again. */
static const struct raft_conf role_confs[] = {
    {.n = 1, .m = {{42, RAFT_VOTER}}},
    {.n = 4, .m = {{2, RAFT_LEARNER}, {5, RAFT_VOTER}, {7, RAFT_LEARNER}, {9, RAFT_VOTER}}},
    /* Joint: 1 stays, 3 leaves, 4 joins, 6 demoted to learner on leaving, 8 learner. */
    {.n = 5,
     .m = {{1, RAFT_VOTER | RAFT_VOTER_OUTGOING},
           {3, RAFT_VOTER_OUTGOING},
           {4, RAFT_VOTER},
           {6, RAFT_VOTER_OUTGOING | RAFT_LEARNER_NEXT},
           {8, RAFT_LEARNER}}},
    {.n = 2, .m = {{10, RAFT_VOTER_OUTGOING}, {0xffffffffffffffffull, RAFT_LEARNER_NEXT}}},
    {.n = 3,
     .m = {{11, RAFT_VOTER | RAFT_VOTER_OUTGOING | RAFT_LEARNER | RAFT_LEARNER_NEXT},
           {12, RAFT_LEARNER | RAFT_LEARNER_NEXT},
           {13, RAFT_VOTER | RAFT_LEARNER}}},
    {.n = 0},
};

Test(peer_codec, snapshot_configurations_every_role)
{
    struct codec *c = codec_new();
    for (uint32_t k = 0; k < sizeof role_confs / sizeof role_confs[0]; k++) {
        struct raft_snapshot_meta s = {.index = 1234 + k, .term = 5 + k, .conf = role_confs[k]};
        struct raft_message m = base_message(RAFT_MSG_SNAPSHOT);
        m.snapshot = &s;
        cr_assert_eq(round_trip(c, &m, 0), 0, "conf %u", k);
        assert_same_message(&m, &c->out, k);
        cr_assert_eq(c->out.snapshot, &c->snap, "the metadata goes to the caller's *snap");
    }
    codec_free(c);
}

Test(peer_codec, snapshot_with_a_full_configuration)
{
    struct codec *c = codec_new();
    struct raft_snapshot_meta s = {.index = 9, .term = 2};
    /* TS_RAFT_MEMBERS_MAX members, each in two role lists (a joint configuration where
     * every voter stays): the lists hold 2 * MAX ids but only MAX distinct members. */
    for (uint32_t i = 0; i < TS_RAFT_MEMBERS_MAX; i++) {
        s.conf.m[i] =
            (struct raft_member){.id = 100 + 7 * i, .role = RAFT_VOTER | RAFT_VOTER_OUTGOING};
    }
    s.conf.n = TS_RAFT_MEMBERS_MAX;
    struct raft_message m = base_message(RAFT_MSG_SNAPSHOT);
    m.snapshot = &s;
    cr_assert_eq(round_trip(c, &m, 0), 0);
    assert_same_message(&m, &c->out, 0);
    codec_free(c);
}

/* ---- Randomized round trips --------------------------------------------------------------- */

#define RANDOM_SEEDS 3000u

/* v, or one of the edge values 0, 1 and 2^64 - 1 (omitted, smallest, largest on the wire). */
static uint64_t maybe_zero(struct ts_rand *r, uint64_t v)
{
    switch (ts_rand_below(r, 8)) {
    case 0:
    case 1:
        return 0;
    case 2:
        return 1;
    case 3:
        return UINT64_MAX;
    default:
        return v;
    }
}

static void random_conf(struct ts_rand *r, struct raft_conf *conf)
{
    memset(conf, 0, sizeof *conf);
    uint32_t n = (uint32_t)ts_rand_below(r, TS_RAFT_MEMBERS_MAX + 1);
    uint64_t id = 0;
    for (uint32_t i = 0; i < n; i++) {
        id += 1 + ts_rand_below(r, ts_rand_chance(r, 1, 8) ? UINT64_C(1) << 40 : 5);
        uint8_t role = (uint8_t)(1 + ts_rand_below(r, 15)); /* any nonzero combination */
        conf->m[i] = (struct raft_member){.id = id, .role = role};
    }
    conf->n = n;
}

static void random_message(struct codec *c, struct ts_rand *r, struct raft_message *m,
                           struct raft_entry *e, struct raft_snapshot_meta *s)
{
    *m = (struct raft_message){
        .group_id = ts_rand_u64(r),
        .type = (uint8_t)ts_rand_below(r, RAFT_MSG_TYPES_),
        .reject = ts_rand_chance(r, 1, 2),
        .quiesce = ts_rand_chance(r, 1, 2),
        .force = ts_rand_chance(r, 1, 2),
        .from = maybe_zero(r, ts_rand_u64(r)),
        .to = maybe_zero(r, 1 + ts_rand_below(r, 16)),
        .term = maybe_zero(r, ts_rand_u64(r)),
        .log_term = maybe_zero(r, ts_rand_below(r, 1000)),
        .index = maybe_zero(r, ts_rand_u64(r)),
        .commit = maybe_zero(r, ts_rand_below(r, 1u << 20)),
        .reject_hint = maybe_zero(r, ts_rand_u64(r)),
        .context = maybe_zero(r, ts_rand_u64(r)),
    };
    uint32_t n = (uint32_t)ts_rand_below(r, ts_rand_chance(r, 1, 50) ? 600 : 9);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = ts_rand_chance(r, 1, 4) ? 0 : (uint32_t)ts_rand_below(r, 300);
        uint32_t at = (uint32_t)ts_rand_below(r, c->data_bytes - 300);
        e[i] = (struct raft_entry){.term = ts_rand_u64(r),
                                   .index = ts_rand_u64(r),
                                   .data = len > 0 ? c->data + at : NULL,
                                   .len = len,
                                   .type = (uint8_t)ts_rand_below(r, 2)};
    }
    m->entries = n > 0 ? e : NULL;
    m->n_entries = n;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        s->index = ts_rand_u64(r);
        s->term = ts_rand_u64(r);
        random_conf(r, &s->conf);
        m->snapshot = s;
    }
}

Test(peer_codec, randomized_round_trips, .timeout = 60)
{
    struct codec *c = codec_new();
    struct raft_entry *e = calloc(600, sizeof *e);
    cr_assert_not_null(e);
    for (uint64_t seed = 1; seed <= RANDOM_SEEDS; seed++) {
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        for (uint32_t i = 0; i < c->data_bytes; i += 8) {
            uint64_t x = ts_rand_u64(&r);
            memcpy(c->data + i, &x, 8);
        }
        struct raft_message m;
        struct raft_snapshot_meta s;
        random_message(c, &r, &m, e, &s);
        int rc = round_trip(c, &m, TS_RAFT_MSG_ENTRIES_MAX);
        cr_assert_eq(rc, 0, "seed %llu: decode: %s", (unsigned long long)seed, ts_strerror(rc));
        assert_same_message(&m, &c->out, seed);
    }
    free(e);
    codec_free(c);
}

/* ---- Rejections ---------------------------------------------------------------------------- */

/* A RaftMessage of `type` with the given entries vector and snapshot (either may be 0). */
static proto_ref raw_message(struct proto_builder *b, uint8_t type, proto_ref entries,
                             proto_ref snap)
{
    proto_raft_message_begin(b);
    proto_raft_message_add_group_id(b, 4);
    proto_raft_message_add_type(b, type);
    proto_raft_message_add_from(b, 1);
    proto_raft_message_add_to(b, 2);
    proto_raft_message_add_term(b, 3);
    proto_raft_message_add_entries(b, entries);
    proto_raft_message_add_snapshot(b, snap);
    return proto_raft_message_end(b);
}

static proto_ref raw_entry(struct proto_builder *b, uint64_t index, uint8_t type)
{
    proto_ref data = proto_create_bytes(b, "xy", 2);
    proto_entry_begin(b);
    proto_entry_add_term(b, 1);
    proto_entry_add_index(b, index);
    proto_entry_add_type(b, type);
    proto_entry_add_data(b, data);
    return proto_entry_end(b);
}

static proto_ref raw_entries(struct proto_builder *b, uint32_t n, uint32_t bad_at, uint8_t bad)
{
    proto_ref *refs = calloc(n > 0 ? n : 1, sizeof *refs);
    cr_assert_not_null(refs);
    for (uint32_t i = 0; i < n; i++) {
        refs[i] = raw_entry(b, 1 + i, i == bad_at ? bad : RAFT_ENTRY_NORMAL);
    }
    proto_ref v = proto_create_vec_ref(b, refs, n);
    free(refs);
    return v;
}

/* A SnapshotMeta whose ConfState holds the four given id lists (n 0: the list absent). */
static proto_ref raw_snapshot(struct proto_builder *b, const uint64_t *const lists[4],
                              const uint32_t ns[4], bool with_conf)
{
    proto_ref refs[4] = {0};
    for (uint32_t i = 0; i < 4; i++) {
        if (ns[i] > 0) {
            refs[i] = proto_create_vector(b, lists[i], ns[i], 8, 8);
        }
    }
    proto_ref conf = 0;
    if (with_conf) {
        proto_conf_state_begin(b);
        proto_conf_state_add_voters(b, refs[0]);
        proto_conf_state_add_learners(b, refs[1]);
        proto_conf_state_add_voters_outgoing(b, refs[2]);
        proto_conf_state_add_learners_next(b, refs[3]);
        conf = proto_conf_state_end(b);
    }
    proto_snapshot_meta_begin(b);
    proto_snapshot_meta_add_index(b, 10);
    proto_snapshot_meta_add_term(b, 2);
    proto_snapshot_meta_add_conf_state(b, conf);
    return proto_snapshot_meta_end(b);
}

Test(peer_codec, rejects_unknown_message_types)
{
    struct codec *c = codec_new();
    const uint8_t types[] = {RAFT_MSG_TYPES_, RAFT_MSG_TYPES_ + 1, 100, 255};
    for (uint32_t k = 0; k < sizeof types; k++) {
        proto_builder_reset(&c->b);
        cr_assert_eq(decode_raw(c, raw_message(&c->b, types[k], 0, 0)), TS_EPROTO, "type %u",
                     types[k]);
    }
    /* The last known type passes (the boundary, the other way). */
    proto_builder_reset(&c->b);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_TYPES_ - 1, 0, 0)), 0);
    cr_assert_eq(c->out.type, RAFT_MSG_TYPES_ - 1);
    codec_free(c);
}

Test(peer_codec, rejects_more_entries_than_the_cap)
{
    struct codec *c = codec_new();
    struct raft_entry e[5];
    fill_entries(c, e, 5);
    struct raft_message m = base_message(RAFT_MSG_APPEND);
    m.entries = e;
    m.n_entries = 5;
    cr_assert_eq(round_trip(c, &m, 4), TS_EPROTO);
    cr_assert_eq(round_trip(c, &m, 0), TS_EPROTO);
    cr_assert_eq(round_trip(c, &m, 5), 0);
    /* The encoder refuses more than TS_RAFT_MSG_ENTRIES_MAX; a peer may still send it. */
    proto_builder_reset(&c->b);
    proto_ref v = raw_entries(&c->b, TS_RAFT_MSG_ENTRIES_MAX + 1, UINT32_MAX, 0);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_APPEND, v, 0)), TS_EPROTO);
    proto_builder_reset(&c->b);
    v = raw_entries(&c->b, TS_RAFT_MSG_ENTRIES_MAX, UINT32_MAX, 0);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_APPEND, v, 0)), 0);
    cr_assert_eq(c->out.n_entries, TS_RAFT_MSG_ENTRIES_MAX);
    cr_assert_eq(c->out.entries[TS_RAFT_MSG_ENTRIES_MAX - 1].index, TS_RAFT_MSG_ENTRIES_MAX);
    codec_free(c);
}

Test(peer_codec, rejects_unknown_entry_types)
{
    struct codec *c = codec_new();
    const uint8_t bad[] = {2, 3, 127, 255};
    for (uint32_t k = 0; k < sizeof bad; k++) {
        for (uint32_t at = 0; at < 3; at++) {
            proto_builder_reset(&c->b);
            proto_ref v = raw_entries(&c->b, 3, at, bad[k]);
            cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_APPEND, v, 0)), TS_EPROTO,
                         "entry type %u at %u", bad[k], at);
        }
    }
    proto_builder_reset(&c->b);
    proto_ref v = raw_entries(&c->b, 3, 1, RAFT_ENTRY_CONF);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_APPEND, v, 0)), 0);
    cr_assert_eq(c->out.entries[1].type, RAFT_ENTRY_CONF);
    cr_assert_eq(c->out.entries[1].len, 2);
    cr_assert(memcmp(c->out.entries[1].data, "xy", 2) == 0);
    codec_free(c);
}

Test(peer_codec, rejects_a_snapshot_without_metadata)
{
    struct codec *c = codec_new();
    proto_builder_reset(&c->b);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, 0)), TS_EPROTO);
    /* Metadata without a ConfState is no configuration either. */
    const uint64_t one[] = {1};
    const uint64_t *const lists[4] = {one, one, one, one};
    const uint32_t ns[4] = {1, 0, 0, 0};
    proto_builder_reset(&c->b);
    proto_ref s = raw_snapshot(&c->b, lists, ns, false);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), TS_EPROTO);
    proto_builder_reset(&c->b);
    s = raw_snapshot(&c->b, lists, ns, true);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), 0);
    cr_assert_eq(c->out.snapshot, &c->snap);
    cr_assert_eq(c->snap.index, 10);
    cr_assert_eq(c->snap.term, 2);
    cr_assert_eq(c->snap.conf.n, 1);
    cr_assert_eq(c->snap.conf.m[0].id, 1);
    cr_assert_eq(c->snap.conf.m[0].role, RAFT_VOTER);
    codec_free(c);
}

Test(peer_codec, ignores_snapshot_metadata_on_other_types)
{
    struct codec *c = codec_new();
    const uint64_t one[] = {1};
    const uint64_t *const lists[4] = {one, one, one, one};
    const uint32_t ns[4] = {1, 0, 0, 0};
    proto_builder_reset(&c->b);
    proto_ref s = raw_snapshot(&c->b, lists, ns, true);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_APPEND, 0, s)), 0);
    cr_assert_null(c->out.snapshot);
    codec_free(c);
}

Test(peer_codec, rejects_member_id_zero_in_every_role)
{
    struct codec *c = codec_new();
    const uint64_t ok[] = {3, 4};
    const uint64_t zeros[2][2] = {{5, 0}, {0, 5}};
    for (uint32_t role = 0; role < 4; role++) {
        for (uint32_t at = 0; at < 2; at++) {
            const uint64_t *lists[4] = {ok, ok, ok, ok};
            const uint32_t ns[4] = {2, 2, 2, 2};
            lists[role] = zeros[at];
            proto_builder_reset(&c->b);
            proto_ref s = raw_snapshot(&c->b, lists, ns, true);
            cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), TS_EPROTO,
                         "id 0 in list %u at %u", role, 1 - at);
        }
    }
    codec_free(c);
}

Test(peer_codec, rejects_more_than_the_members_max)
{
    struct codec *c = codec_new();
    uint64_t voters[TS_RAFT_MEMBERS_MAX + 1];
    for (uint32_t i = 0; i <= TS_RAFT_MEMBERS_MAX; i++) {
        voters[i] = 1 + i;
    }
    const uint64_t extra[] = {1000};
    /* MAX + 1 distinct ids in one list. */
    {
        const uint64_t *const lists[4] = {voters, NULL, NULL, NULL};
        const uint32_t ns[4] = {TS_RAFT_MEMBERS_MAX + 1, 0, 0, 0};
        proto_builder_reset(&c->b);
        proto_ref s = raw_snapshot(&c->b, lists, ns, true);
        cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), TS_EPROTO);
    }
    /* MAX in one list, one more member in each other list. */
    for (uint32_t role = 1; role < 4; role++) {
        const uint64_t *lists[4] = {voters, NULL, NULL, NULL};
        uint32_t ns[4] = {TS_RAFT_MEMBERS_MAX, 0, 0, 0};
        lists[role] = extra;
        ns[role] = 1;
        proto_builder_reset(&c->b);
        proto_ref s = raw_snapshot(&c->b, lists, ns, true);
        cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), TS_EPROTO,
                     "extra member in list %u", role);
    }
    /* MAX in every list, the same ids: MAX members, each with all four roles. */
    {
        const uint64_t *const lists[4] = {voters, voters, voters, voters};
        const uint32_t ns[4] = {TS_RAFT_MEMBERS_MAX, TS_RAFT_MEMBERS_MAX, TS_RAFT_MEMBERS_MAX,
                                TS_RAFT_MEMBERS_MAX};
        proto_builder_reset(&c->b);
        proto_ref s = raw_snapshot(&c->b, lists, ns, true);
        cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), 0);
        cr_assert_eq(c->snap.conf.n, TS_RAFT_MEMBERS_MAX);
        for (uint32_t i = 0; i < TS_RAFT_MEMBERS_MAX; i++) {
            cr_assert_eq(c->snap.conf.m[i].id, 1 + i);
            cr_assert_eq(c->snap.conf.m[i].role,
                         RAFT_VOTER | RAFT_LEARNER | RAFT_VOTER_OUTGOING | RAFT_LEARNER_NEXT);
        }
    }
    codec_free(c);
}

Test(peer_codec, rebuilds_member_order_from_unsorted_lists)
{
    struct codec *c = codec_new();
    const uint64_t voters[] = {9, 2, 5};
    const uint64_t learners[] = {7, 1};
    const uint64_t outgoing[] = {5, 3};
    const uint64_t next[] = {3};
    const uint64_t *const lists[4] = {voters, learners, outgoing, next};
    const uint32_t ns[4] = {3, 2, 2, 1};
    proto_builder_reset(&c->b);
    proto_ref s = raw_snapshot(&c->b, lists, ns, true);
    cr_assert_eq(decode_raw(c, raw_message(&c->b, RAFT_MSG_SNAPSHOT, 0, s)), 0);
    const struct raft_conf want = {.n = 6,
                                   .m = {{1, RAFT_LEARNER},
                                         {2, RAFT_VOTER},
                                         {3, RAFT_VOTER_OUTGOING | RAFT_LEARNER_NEXT},
                                         {5, RAFT_VOTER | RAFT_VOTER_OUTGOING},
                                         {7, RAFT_LEARNER},
                                         {9, RAFT_VOTER}}};
    assert_same_conf(&want, &c->snap.conf, 0);
    codec_free(c);
}

Test(peer_codec, encoder_asserts_a_known_type, .signal = SIGABRT)
{
    struct codec *c = codec_new();
    struct raft_message m = base_message(RAFT_MSG_TYPES_);
    (void)peer_encode_raft_message(&c->b, &m);
}

/* ---- Coalesced heartbeats ----------------------------------------------------------------- */

/* Puts hbs and acks into a RaftBatch's fixed-size vectors, frames, verifies, and decodes
 * them back into out (hbs first). */
static void heartbeat_batch(struct codec *c, const struct raft_message *hbs, uint32_t nh,
                            const struct raft_message *acks, uint32_t na, struct raft_message *out)
{
    struct proto_builder *b = &c->b;
    proto_builder_reset(b);
    struct proto_heartbeat h[8];
    struct proto_heartbeat_ack a[8];
    cr_assert(nh <= 8 && na <= 8);
    for (uint32_t i = 0; i < nh; i++) {
        cr_assert(peer_heartbeat_compact(&hbs[i]));
        h[i] = peer_heartbeat_encode(&hbs[i]);
    }
    for (uint32_t i = 0; i < na; i++) {
        cr_assert(peer_heartbeat_compact(&acks[i]));
        a[i] = peer_heartbeat_ack_encode(&acks[i]);
    }
    proto_ref hv = proto_heartbeat_vec_create(b, h, nh);
    proto_ref av = proto_heartbeat_ack_vec_create(b, a, na);
    proto_raft_batch_begin(b);
    proto_raft_batch_add_from_node(b, 1);
    proto_raft_batch_add_to_node(b, 2);
    proto_raft_batch_add_heartbeats(b, hv);
    proto_raft_batch_add_heartbeat_acks(b, av);
    proto_ref batch = proto_raft_batch_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RAFT_BATCH, batch);
    proto_ref msg = proto_message_end(b);
    const uint8_t *frame;
    uint32_t len;
    cr_assert_eq(proto_message_finish(b, msg, true, &frame, &len), 0);
    struct proto_message pm;
    char err[256] = "";
    cr_assert_eq(proto_message_decode(frame, len, true, &pm, err, sizeof err), 0, "%s", err);
    struct proto_raft_batch rb = proto_message_body_as_raft_batch(pm);
    struct proto_vec gh = proto_raft_batch_heartbeats(rb);
    struct proto_vec ga = proto_raft_batch_heartbeat_acks(rb);
    cr_assert_eq(gh.len, nh);
    cr_assert_eq(ga.len, na);
    for (uint32_t i = 0; i < nh; i++) {
        peer_heartbeat_decode(proto_heartbeat_vec_at(gh, i), &out[i]);
    }
    for (uint32_t i = 0; i < na; i++) {
        peer_heartbeat_ack_decode(proto_heartbeat_ack_vec_at(ga, i), &out[nh + i]);
    }
}

Test(peer_codec, heartbeats_coalesced_round_trip)
{
    struct codec *c = codec_new();
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        struct raft_message in[16], out[16];
        uint32_t nh = (uint32_t)ts_rand_below(&r, 9), na = (uint32_t)ts_rand_below(&r, 9);
        for (uint32_t i = 0; i < nh + na; i++) {
            in[i] = base_message(i < nh ? RAFT_MSG_HEARTBEAT : RAFT_MSG_HEARTBEAT_RESP);
            in[i].group_id = 1 + ts_rand_below(&r, 4096);
            in[i].from = maybe_zero(&r, ts_rand_u64(&r));
            in[i].to = ts_rand_u64(&r);
            in[i].term = ts_rand_u64(&r);
            in[i].context = maybe_zero(&r, ts_rand_u64(&r));
            if (i < nh) {
                in[i].commit = maybe_zero(&r, ts_rand_u64(&r));
                in[i].quiesce = ts_rand_below(&r, 2) == 1;
            }
        }
        heartbeat_batch(c, in, nh, in + nh, na, out);
        for (uint32_t i = 0; i < nh + na; i++) {
            assert_same_message(&in[i], &out[i], seed);
        }
    }
    codec_free(c);
}

/* Only the fields a heartbeat carries fit the struct: anything else goes as a table. */
Test(peer_codec, heartbeat_compact_only_when_nothing_else_is_set)
{
    struct raft_entry e = {.term = 1, .index = 2};
    for (uint8_t type = 0; type < RAFT_MSG_TYPES_; type++) {
        struct raft_message m = base_message(type);
        bool hb = type == RAFT_MSG_HEARTBEAT || type == RAFT_MSG_HEARTBEAT_RESP;
        cr_assert_eq(peer_heartbeat_compact(&m), hb, "type %u", type);
    }
    for (int field = 0; field < 9; field++) {
        for (int t = 0; t < 2; t++) {
            struct raft_message m =
                base_message(t == 0 ? RAFT_MSG_HEARTBEAT : RAFT_MSG_HEARTBEAT_RESP);
            m.context = 5;
            cr_assert(peer_heartbeat_compact(&m));
            switch (field) {
            case 0:
                m.reject = true;
                break;
            case 1:
                m.force = true;
                break;
            case 2:
                m.log_term = 1;
                break;
            case 3:
                m.index = 1;
                break;
            case 4:
                m.reject_hint = 1;
                break;
            case 5:
                m.entries = &e;
                m.n_entries = 1;
                break;
            case 6:
                m.snapshot = &plain_snapshot;
                break;
            case 7:
                m.commit = 1;
                break;
            default:
                m.quiesce = true;
                break;
            }
            /* commit and quiesce belong to a heartbeat, not to its answer. */
            bool fits = t == 0 && (field == 7 || field == 8);
            cr_assert_eq(peer_heartbeat_compact(&m), fits, "field %d type %d", field, t);
        }
    }
}
