/*
 * shard/meta.c: the meta range's commands and records.
 *
 * Every test runs meta over the real B-tree (storage/btree) on the simulated disk, through
 * the same one-call-to-one adapter core/kv's tests use (struct kv_store onto btree.h),
 * with a countdown that turns store calls into -EIO.
 *
 * The expectations are built independently of meta.c: the command and record byte
 * layouts and the key layout are written here from meta.h's tables, and the descriptors
 * of a bootstrap are derived from host_cluster_parse, host_range_start and
 * host_replica_member (and, for one small cluster, written out by hand). Records are
 * read back through the B-tree directly as well as through meta's loaders.
 */
#include "shard/meta.h"

#include "core/util/encoding.h"
#include "core/util/err.h"
#include "core/util/rand.h"
#include "storage/btree/btree.h"
#include "storage/disk/disk_sim.h"
#include "tests/unit/core/kv/kv_testenv.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The store ------------------------------------------------------------------------------ */

/* The store: core/kv's test environment (the real B-tree over the simulated disk, the
 * shard's adapter, a countdown to -EIO in fail_after). */
static struct kte *menv_new(uint64_t seed)
{
    struct kte *e = calloc(1, sizeof *e);
    cr_assert_not_null(e);
    kte_init(e, seed);
    return e;
}

static void menv_free(struct kte *e)
{
    kte_fini(e);
    free(e);
}

/* Every key and value with lo <= key < hi (hi_len 0: to the end), length-prefixed and
 * concatenated; *keys counts them. Free with free(). */
static uint8_t *dump_span(struct kte *e, const uint8_t *lo, uint32_t lo_len, const uint8_t *hi,
                          uint32_t hi_len, size_t *len, uint32_t *keys)
{
    size_t cap = 1u << 16, n = 0;
    uint8_t *buf = malloc(cap);
    uint8_t *val = malloc(TS_VALUE_BYTES_MAX);
    cr_assert(buf != NULL && val != NULL);
    *keys = 0;
    struct btree_cursor c;
    int rc = btree_cursor_seek(&c, e->t, lo, lo_len);
    for (; rc == 0; rc = btree_cursor_next(&c)) {
        const uint8_t *k;
        uint32_t kl, vl;
        btree_cursor_key(&c, &k, &kl);
        uint32_t m = kl < hi_len ? kl : hi_len;
        int cmp = m > 0 ? memcmp(k, hi, m) : 0;
        if (hi_len > 0 && (cmp > 0 || (cmp == 0 && kl >= hi_len))) {
            break;
        }
        cr_assert_eq(btree_cursor_value(&c, val, TS_VALUE_BYTES_MAX, &vl), 0);
        while (n + 8u + kl + vl > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        ts_store_le32(buf + n, kl);
        memcpy(buf + n + 4, k, kl);
        n += 4u + kl;
        ts_store_le32(buf + n, vl);
        memcpy(buf + n + 4, val, vl);
        n += 4u + vl;
        (*keys)++;
    }
    cr_assert(rc == 0 || rc == TS_ENOTFOUND, "scan: %s", ts_errname(rc));
    free(val);
    *len = n;
    return buf;
}

static uint8_t *dump_all(struct kte *e, size_t *len, uint32_t *keys)
{
    return dump_span(e, NULL, 0, NULL, 0, len, keys);
}

static void assert_same_dump(struct kte *e, const uint8_t *before, size_t before_len,
                             const char *what)
{
    size_t len;
    uint32_t keys;
    uint8_t *now = dump_all(e, &len, &keys);
    cr_assert(len == before_len && memcmp(now, before, len) == 0, "%s changed the store", what);
    free(now);
}

static uint32_t count_all(struct kte *e)
{
    size_t len;
    uint32_t keys;
    free(dump_all(e, &len, &keys));
    return keys;
}

/* ---- Keys and records, from meta.h's tables --------------------------------------------- */

/* 'm' 1(u64 BE) field [id(u64 BE)] */
static uint32_t rkey(uint8_t *k, uint8_t field, uint64_t id, bool with_id)
{
    k[0] = 'm';
    memset(k + 1, 0, 7);
    k[8] = 1;
    k[9] = field;
    if (!with_id) {
        return 10;
    }
    for (int i = 0; i < 8; i++) {
        k[10 + i] = (uint8_t)(id >> (8 * (7 - i)));
    }
    return 18;
}

static void raw_put(struct kte *e, uint8_t field, uint64_t id, bool with_id, const uint8_t *v,
                    uint32_t vl)
{
    uint8_t k[18];
    uint32_t kl = rkey(k, field, id, with_id);
    cr_assert_eq(btree_put(e->t, k, kl, v, vl), 0);
}

/* The stored value of a record; returns its length (0: absent). */
static uint32_t raw_get(struct kte *e, uint8_t field, uint64_t id, bool with_id, uint8_t *v,
                        uint32_t cap)
{
    uint8_t k[18];
    uint32_t kl = rkey(k, field, id, with_id), vl = 0;
    int rc = btree_get(e->t, k, kl, v, cap, &vl);
    cr_assert(rc == 0 || rc == TS_ENOTFOUND, "get: %s", ts_errname(rc));
    return rc == 0 ? vl : 0;
}

static uint8_t *put_s(uint8_t *p, const void *s, uint32_t n)
{
    ts_store_le16(p, (uint16_t)n);
    memcpy(p + 2, s, n);
    return p + 2 + n;
}

/* member: u8 format, u64 node id, u8 state, u32 shards, str address */
static uint32_t enc_member(uint8_t *v, uint64_t id, uint8_t state, uint32_t shards,
                           const char *addr)
{
    v[0] = 1;
    ts_store_le64(v + 1, id);
    v[9] = state;
    ts_store_le32(v + 10, shards);
    return (uint32_t)(put_s(v + 14, addr, (uint32_t)strlen(addr)) - v);
}

/* cluster: u8 format, u64 cluster id, u32 ranges, u32 shards, u64 next node id, str spec */
static uint32_t enc_cluster(uint8_t *v, uint64_t cid, uint32_t ranges, uint32_t shards,
                            uint64_t next, const char *spec)
{
    v[0] = 1;
    ts_store_le64(v + 1, cid);
    ts_store_le32(v + 9, ranges);
    ts_store_le32(v + 13, shards);
    ts_store_le64(v + 17, next);
    return (uint32_t)(put_s(v + 25, spec, (uint32_t)strlen(spec)) - v);
}

/* descriptor: u8 format, u64 range, u64 generation, u64 conf version, str lo, str hi,
 * u8 replicas, per replica u64 node, u64 replica id, u32 shard */
static uint32_t enc_desc(uint8_t *v, const struct meta_desc *d)
{
    v[0] = 1;
    ts_store_le64(v + 1, d->range);
    ts_store_le64(v + 9, d->generation);
    ts_store_le64(v + 17, d->conf_version);
    uint8_t *p = put_s(v + 25, d->lo, d->lo_len);
    p = put_s(p, d->hi, d->hi_len);
    *p++ = (uint8_t)d->n;
    for (uint32_t i = 0; i < d->n; i++) {
        ts_store_le64(p, d->rep[i].node_id);
        ts_store_le64(p + 8, d->rep[i].replica_id);
        ts_store_le32(p + 16, d->rep[i].shard);
        p += 20;
    }
    return (uint32_t)(p - v);
}

/* ---- Commands through meta_apply ------------------------------------------------------ */

static uint8_t cmdbuf[META_CMD_BYTES_MAX];

static int apply(struct kte *e, const uint8_t *cmd, uint32_t len, struct meta_result *out)
{
    /* Apply from an exact-size copy, so a read past the command is caught by ASan. */
    uint8_t *copy = malloc(len > 0 ? len : 1);
    cr_assert_not_null(copy);
    if (len > 0) {
        memcpy(copy, cmd, len);
    }
    memset(out, 0xa5, sizeof *out);
    int rc = meta_apply(&e->store, copy, len, out);
    free(copy);
    return rc;
}

static struct meta_result bootstrap(struct kte *e, uint64_t cid, uint32_t ranges, uint32_t shards,
                                    const char *spec)
{
    uint32_t len = meta_cmd_bootstrap(cmdbuf, cid, ranges, shards, spec);
    cr_assert_gt(len, 0);
    struct meta_result r;
    int rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, 0, "bootstrap: %s", ts_errname(rc));
    return r;
}

static struct meta_result join(struct kte *e, uint32_t shards, const char *addr)
{
    uint32_t len = meta_cmd_join(cmdbuf, shards, addr);
    cr_assert_gt(len, 0);
    struct meta_result r;
    int rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, 0, "join %s: %s", addr, ts_errname(rc));
    return r;
}

static struct meta_result publish(struct kte *e, uint64_t node, const char *addr)
{
    uint32_t len = meta_cmd_publish(cmdbuf, node, addr);
    cr_assert_gt(len, 0);
    struct meta_result r;
    int rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, 0, "publish %llu: %s", (unsigned long long)node, ts_errname(rc));
    return r;
}

static void assert_result(struct meta_result r, uint8_t status, uint64_t node, bool changed)
{
    cr_assert_eq(r.status, status, "status %s, want %s", meta_status_name(r.status),
                 meta_status_name(status));
    cr_assert_eq(r.node_id, node, "node %llu, want %llu", (unsigned long long)r.node_id,
                 (unsigned long long)node);
    cr_assert_eq(r.changed, changed, "changed %d, want %d", r.changed, changed);
}

static void assert_member(struct kte *e, uint64_t id, uint8_t state, uint32_t shards,
                          const char *addr)
{
    struct meta_member m;
    memset(&m, 0xa5, sizeof m);
    int rc = meta_member_load(&e->store, id, &m);
    cr_assert_eq(rc, 0, "member %llu: %s", (unsigned long long)id, ts_errname(rc));
    cr_assert_eq(m.node_id, id);
    cr_assert_eq(m.state, state, "member %llu: state %c, want %c", (unsigned long long)id, m.state,
                 state);
    cr_assert_eq(m.shards, shards);
    cr_assert_str_eq(m.addr, addr);
    /* And the bytes, from meta.h's table. */
    uint8_t v[256], want[256];
    uint32_t vl = raw_get(e, 'n', id, true, v, sizeof v);
    uint32_t wl = enc_member(want, id, state, shards, addr);
    cr_assert(vl == wl && memcmp(v, want, wl) == 0, "member %llu: stored bytes",
              (unsigned long long)id);
}

static void assert_cluster(struct kte *e, uint64_t cid, uint32_t ranges, uint32_t shards,
                           uint64_t next, const char *spec)
{
    struct meta_cluster c;
    memset(&c, 0xa5, sizeof c);
    int rc = meta_cluster_load(&e->store, &c);
    cr_assert_eq(rc, 0, "cluster: %s", ts_errname(rc));
    cr_assert_eq(c.cluster_id, cid);
    cr_assert_eq(c.ranges, ranges);
    cr_assert_eq(c.shards, shards);
    cr_assert_eq(c.next_node_id, next, "next node id %llu, want %llu",
                 (unsigned long long)c.next_node_id, (unsigned long long)next);
    cr_assert_str_eq(c.spec, spec);
    static uint8_t v[4096], want[4096];
    uint32_t vl = raw_get(e, 'c', 0, false, v, sizeof v);
    uint32_t wl = enc_cluster(want, cid, ranges, shards, next, spec);
    cr_assert(vl == wl && memcmp(v, want, wl) == 0, "cluster: stored bytes");
}

static void assert_desc_eq(const struct meta_desc *got, const struct meta_desc *want)
{
    uint64_t r = want->range;
    cr_assert_eq(got->range, want->range);
    cr_assert_eq(got->generation, want->generation, "range %llu", (unsigned long long)r);
    cr_assert_eq(got->conf_version, want->conf_version, "range %llu", (unsigned long long)r);
    cr_assert_eq(got->lo_len, want->lo_len, "range %llu: lo", (unsigned long long)r);
    cr_assert(memcmp(got->lo, want->lo, want->lo_len) == 0, "range %llu: lo",
              (unsigned long long)r);
    cr_assert_eq(got->hi_len, want->hi_len, "range %llu: hi", (unsigned long long)r);
    cr_assert(memcmp(got->hi, want->hi, want->hi_len) == 0, "range %llu: hi",
              (unsigned long long)r);
    cr_assert_eq(got->n, want->n, "range %llu: replicas", (unsigned long long)r);
    for (uint32_t k = 0; k < want->n; k++) {
        cr_assert_eq(got->rep[k].node_id, want->rep[k].node_id, "range %llu replica %u",
                     (unsigned long long)r, k);
        cr_assert_eq(got->rep[k].replica_id, want->rep[k].replica_id, "range %llu replica %u",
                     (unsigned long long)r, k);
        cr_assert_eq(got->rep[k].shard, want->rep[k].shard, "range %llu replica %u",
                     (unsigned long long)r, k);
    }
}

/* The bootstrap descriptor of a range, from the layout functions (not meta.c). */
static void expected_desc(const struct host_cluster *hc, uint32_t shards, uint64_t range,
                          struct meta_desc *d)
{
    memset(d, 0, sizeof *d);
    d->range = range;
    d->generation = 1;
    d->conf_version = 1;
    d->lo_len = host_range_start(hc, range, d->lo);
    d->hi_len = range == hc->ranges ? 0 : host_range_start(hc, range + 1, d->hi);
    d->n = hc->n < 3 ? hc->n : 3;
    for (uint32_t k = 0; k < d->n; k++) {
        uint64_t node = hc->m[host_replica_member(hc, range, k)].node_id;
        d->rep[k].node_id = node;
        d->rep[k].replica_id = node;
        d->rep[k].shard = (uint32_t)((range - 1) % shards);
    }
}

static void parse_spec(const char *spec, uint32_t ranges, struct host_cluster *hc)
{
    const char *why = NULL;
    int rc = host_cluster_parse(spec, 0, ranges, hc, &why);
    cr_assert_eq(rc, 0, "%s: %s", spec, why);
}

/* ---- Command encoding ------------------------------------------------------------------ */

static char *pattern(uint32_t n)
{
    char *s = malloc(n + 1u);
    cr_assert_not_null(s);
    for (uint32_t i = 0; i < n; i++) {
        s[i] = (char)('a' + i % 26);
    }
    s[n] = 0;
    return s;
}

static void decode_ok(const uint8_t *buf, uint32_t len, struct meta_cmd *c)
{
    uint8_t *copy = malloc(len);
    cr_assert_not_null(copy);
    memcpy(copy, buf, len);
    int rc = meta_cmd_decode(copy, len, c);
    cr_assert_eq(rc, 0, "decode: %s", ts_errname(rc));
    cr_assert(c->str >= copy && c->str + c->str_len <= copy + len, "str is a view into buf");
    /* Re-point the view at buf, which outlives the copy. */
    c->str = buf + (c->str - copy);
    free(copy);
}

static int decode_copy(const uint8_t *buf, uint32_t len)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    cr_assert_not_null(copy);
    if (len > 0) {
        memcpy(copy, buf, len);
    }
    struct meta_cmd c;
    int rc = meta_cmd_decode(copy, len, &c);
    free(copy);
    return rc;
}

Test(meta_cmd, bootstrap_round_trips)
{
    static const uint64_t cids[] = {0, 1, 0x0102030405060708ull, UINT64_MAX};
    static const uint32_t spec_lens[] = {0, 1, 17, META_SPEC_BYTES - 1u};
    for (uint32_t i = 0; i < 4; i++) {
        for (uint32_t j = 0; j < 4; j++) {
            char *spec = pattern(spec_lens[j]);
            uint32_t ranges = 1u + i * 1000u, shards = UINT32_MAX - i;
            uint8_t buf[META_CMD_BYTES_MAX];
            uint32_t len = meta_cmd_bootstrap(buf, cids[i], ranges, shards, spec);
            cr_assert_eq(len, 20u + spec_lens[j]);
            /* The bytes, from meta.h's table. */
            cr_assert_eq(buf[0], 'M');
            cr_assert_eq(buf[1], META_CMD_BOOTSTRAP);
            cr_assert_eq(ts_load_le64(buf + 2), cids[i]);
            cr_assert_eq(ts_load_le32(buf + 10), ranges);
            cr_assert_eq(ts_load_le32(buf + 14), shards);
            cr_assert_eq(ts_load_le16(buf + 18), spec_lens[j]);
            cr_assert(memcmp(buf + 20, spec, spec_lens[j]) == 0);
            cr_assert(meta_is_cmd(buf, len));
            struct meta_cmd c;
            decode_ok(buf, len, &c);
            cr_assert_eq(c.kind, META_CMD_BOOTSTRAP);
            cr_assert_eq(c.cluster_id, cids[i]);
            cr_assert_eq(c.ranges, ranges);
            cr_assert_eq(c.shards, shards);
            cr_assert_eq(c.node_id, 0);
            cr_assert_eq(c.str_len, spec_lens[j]);
            cr_assert_eq(c.str, buf + 20);
            free(spec);
        }
    }
}

Test(meta_cmd, join_and_publish_round_trip)
{
    static const uint32_t lens[] = {2, 1, 14, TS_HOST_ADDR_BYTES - 1u}; /* empty: refused */
    static const uint64_t nodes[] = {0, 1, 0x8877665544332211ull, UINT64_MAX};
    for (uint32_t i = 0; i < 4; i++) {
        char *addr = pattern(lens[i]);
        uint8_t buf[META_CMD_BYTES_MAX];
        uint32_t len = meta_cmd_join(buf, 7u + i, addr);
        cr_assert_eq(len, 8u + lens[i]);
        cr_assert_eq(buf[0], 'M');
        cr_assert_eq(buf[1], META_CMD_JOIN);
        cr_assert_eq(ts_load_le32(buf + 2), 7u + i);
        cr_assert_eq(ts_load_le16(buf + 6), lens[i]);
        cr_assert(memcmp(buf + 8, addr, lens[i]) == 0);
        struct meta_cmd c;
        decode_ok(buf, len, &c);
        cr_assert_eq(c.kind, META_CMD_JOIN);
        cr_assert_eq(c.shards, 7u + i);
        cr_assert_eq(c.cluster_id, 0);
        cr_assert_eq(c.node_id, 0);
        cr_assert_eq(c.str_len, lens[i]);
        cr_assert_eq(c.str, buf + 8);

        len = meta_cmd_publish(buf, nodes[i], addr);
        cr_assert_eq(len, 12u + lens[i]);
        cr_assert_eq(buf[0], 'M');
        cr_assert_eq(buf[1], META_CMD_PUBLISH);
        cr_assert_eq(ts_load_le64(buf + 2), nodes[i]);
        cr_assert_eq(ts_load_le16(buf + 10), lens[i]);
        cr_assert(memcmp(buf + 12, addr, lens[i]) == 0);
        decode_ok(buf, len, &c);
        cr_assert_eq(c.kind, META_CMD_PUBLISH);
        cr_assert_eq(c.node_id, nodes[i]);
        cr_assert_eq(c.shards, 0);
        cr_assert_eq(c.str_len, lens[i]);
        cr_assert_eq(c.str, buf + 12);
        free(addr);
    }
}

Test(meta_cmd, encoders_refuse_oversized_strings)
{
    uint8_t buf[META_CMD_BYTES_MAX + 64];
    char *spec = pattern(META_SPEC_BYTES);
    char *addr = pattern(TS_HOST_ADDR_BYTES);
    cr_assert_eq(meta_cmd_bootstrap(buf, 1, 1, 1, spec), 0);
    cr_assert_eq(meta_cmd_join(buf, 1, addr), 0);
    cr_assert_eq(meta_cmd_publish(buf, 1, addr), 0);
    /* One byte less fits, and fits META_CMD_BYTES_MAX. */
    spec[META_SPEC_BYTES - 1u] = 0;
    addr[TS_HOST_ADDR_BYTES - 1u] = 0;
    uint32_t len = meta_cmd_bootstrap(buf, 1, 1, 1, spec);
    cr_assert_eq(len, 20u + META_SPEC_BYTES - 1u);
    cr_assert_leq(len, META_CMD_BYTES_MAX);
    cr_assert_eq(meta_cmd_join(buf, 1, addr), 8u + TS_HOST_ADDR_BYTES - 1u);
    cr_assert_eq(meta_cmd_publish(buf, 1, addr), 12u + TS_HOST_ADDR_BYTES - 1u);
    free(spec);
    free(addr);
}

/* Three valid commands with non-empty strings. */
static uint32_t sample_cmds(uint8_t bufs[3][META_CMD_BYTES_MAX], uint32_t lens[3])
{
    lens[0] = meta_cmd_bootstrap(bufs[0], 42, 8, 2, "1=127.0.0.1:7001,2=127.0.0.1:7002");
    lens[1] = meta_cmd_join(bufs[1], 2, "127.0.0.1:7003");
    lens[2] = meta_cmd_publish(bufs[2], 3, "127.0.0.1:7003");
    for (int i = 0; i < 3; i++) {
        cr_assert_gt(lens[i], 0);
    }
    return 3;
}

Test(meta_cmd, decode_rejects_wrong_magic_and_unknown_kind)
{
    uint8_t bufs[3][META_CMD_BYTES_MAX];
    uint32_t lens[3];
    sample_cmds(bufs, lens);
    for (int i = 0; i < 3; i++) {
        uint8_t save = bufs[i][0];
        for (int m = 0; m < 256; m++) {
            bufs[i][0] = (uint8_t)m;
            cr_assert_eq(decode_copy(bufs[i], lens[i]), m == 'M' ? 0 : TS_EPROTO, "magic %d", m);
        }
        bufs[i][0] = save;
        save = bufs[i][1];
        for (int k = 0; k < 256; k++) {
            bufs[i][1] = (uint8_t)k;
            if (k != save) {
                /* Another known kind may or may not decode the same bytes; only unknown
                 * kinds must fail for sure. */
                if (k < META_CMD_BOOTSTRAP || k > META_CMD_PUBLISH) {
                    cr_assert_eq(decode_copy(bufs[i], lens[i]), TS_EPROTO, "kind %d", k);
                }
            }
        }
        bufs[i][1] = save;
        cr_assert_eq(decode_copy(bufs[i], lens[i]), 0);
    }
    cr_assert_eq(decode_copy(NULL, 0), TS_EPROTO);
    uint8_t two[2] = {'M', 0};
    cr_assert_eq(decode_copy(two, 2), TS_EPROTO);
}

Test(meta_cmd, decode_rejects_every_truncation_and_trailing_bytes)
{
    uint8_t bufs[3][META_CMD_BYTES_MAX];
    uint32_t lens[3];
    sample_cmds(bufs, lens);
    /* Empty strings too: the length field is the last thing then. */
    uint8_t e[3][META_CMD_BYTES_MAX];
    uint32_t el[3] = {meta_cmd_bootstrap(e[0], 1, 1, 1, ""), meta_cmd_join(e[1], 1, ""),
                      meta_cmd_publish(e[2], 1, "")};
    for (int i = 0; i < 6; i++) {
        uint8_t *b = i < 3 ? bufs[i] : e[i - 3];
        uint32_t len = i < 3 ? lens[i] : el[i - 3];
        /* An empty address decodes as nothing: join and publish name an address. */
        bool empty_addr = i == 4 || i == 5;
        cr_assert_eq(decode_copy(b, len), empty_addr ? TS_EPROTO : 0, "command %d whole", i);
        for (uint32_t n = 0; n < len; n++) {
            cr_assert_eq(decode_copy(b, n), TS_EPROTO, "command %d truncated to %u of %u", i, n,
                         len);
        }
        uint8_t big[META_CMD_BYTES_MAX + 8];
        memcpy(big, b, len);
        for (uint32_t extra = 1; extra <= 4; extra++) {
            big[len + extra - 1] = (uint8_t)extra;
            cr_assert_eq(decode_copy(big, len + extra), TS_EPROTO, "command %d + %u bytes", i,
                         extra);
        }
    }
}

/* A command with a string of n bytes (its length field says n) built by hand. */
static uint32_t hand_cmd(uint8_t *buf, uint8_t kind, uint32_t n)
{
    uint32_t off = kind == META_CMD_BOOTSTRAP ? 18u : kind == META_CMD_JOIN ? 6u : 10u;
    memset(buf, 0, off);
    buf[0] = 'M';
    buf[1] = kind;
    ts_store_le16(buf + off, (uint16_t)n);
    memset(buf + off + 2, 'x', n);
    return off + 2u + n;
}

Test(meta_cmd, decode_rejects_strings_over_their_limits)
{
    static uint8_t buf[META_CMD_BYTES_MAX + 70000];
    cr_assert_eq(decode_copy(buf, hand_cmd(buf, META_CMD_BOOTSTRAP, META_SPEC_BYTES - 1u)), 0);
    cr_assert_eq(decode_copy(buf, hand_cmd(buf, META_CMD_BOOTSTRAP, META_SPEC_BYTES)), TS_EPROTO);
    cr_assert_eq(decode_copy(buf, hand_cmd(buf, META_CMD_BOOTSTRAP, 65535)), TS_EPROTO);
    for (uint8_t k = META_CMD_JOIN; k <= META_CMD_PUBLISH; k++) {
        cr_assert_eq(decode_copy(buf, hand_cmd(buf, k, TS_HOST_ADDR_BYTES - 1u)), 0);
        cr_assert_eq(decode_copy(buf, hand_cmd(buf, k, TS_HOST_ADDR_BYTES)), TS_EPROTO, "kind %u",
                     k);
        cr_assert_eq(decode_copy(buf, hand_cmd(buf, k, 65535)), TS_EPROTO);
    }
    /* A length field larger than what follows. */
    uint32_t len = hand_cmd(buf, META_CMD_JOIN, 10);
    ts_store_le16(buf + 6, 11);
    cr_assert_eq(decode_copy(buf, len), TS_EPROTO);
    ts_store_le16(buf + 6, 9);
    cr_assert_eq(decode_copy(buf, len), TS_EPROTO);
}

Test(meta_cmd, is_cmd)
{
    uint8_t b[2] = {'M', 1};
    cr_assert(meta_is_cmd(b, 2));
    cr_assert_not(meta_is_cmd(b, 1));
    cr_assert_not(meta_is_cmd(b, 0));
    b[0] = 1; /* core/kv's commands */
    cr_assert_not(meta_is_cmd(b, 2));
}

/* A decoded command encodes back to the same bytes (strings without a NUL). */
static void check_reencode(const uint8_t *buf, uint32_t len, const struct meta_cmd *c)
{
    cr_assert(c->kind >= META_CMD_BOOTSTRAP && c->kind <= META_CMD_PUBLISH);
    if (c->str_len > 0 && memchr(c->str, 0, c->str_len) != NULL) {
        return;
    }
    char s[META_SPEC_BYTES];
    cr_assert_lt(c->str_len, sizeof s);
    memcpy(s, c->str, c->str_len);
    s[c->str_len] = 0;
    uint8_t again[META_CMD_BYTES_MAX];
    uint32_t n = c->kind == META_CMD_BOOTSTRAP
                     ? meta_cmd_bootstrap(again, c->cluster_id, c->ranges, c->shards, s)
                 : c->kind == META_CMD_JOIN ? meta_cmd_join(again, c->shards, s)
                                            : meta_cmd_publish(again, c->node_id, s);
    cr_assert(n == len && memcmp(again, buf, len) == 0, "decode then encode differs");
}

static uint32_t mutate(struct ts_rand *r, uint8_t *buf, uint32_t len, uint32_t cap)
{
    uint32_t steps = 1u + (uint32_t)ts_rand_below(r, 4);
    for (uint32_t s = 0; s < steps; s++) {
        switch (ts_rand_below(r, 6)) {
        case 0: /* flip a bit */
            if (len > 0) {
                buf[ts_rand_below(r, len)] ^= (uint8_t)(1u << ts_rand_below(r, 8));
            }
            break;
        case 1: /* a random byte */
            if (len > 0) {
                buf[ts_rand_below(r, len)] = (uint8_t)ts_rand_u64(r);
            }
            break;
        case 2: /* truncate */
            len = len > 0 ? (uint32_t)ts_rand_below(r, len) : 0;
            break;
        case 3: /* extend */
            for (uint32_t n = 1u + (uint32_t)ts_rand_below(r, 8); n > 0 && len < cap; n--) {
                buf[len++] = (uint8_t)ts_rand_u64(r);
            }
            break;
        case 4: /* a small change to a string's length field */
            if (len >= 8) {
                uint32_t off = buf[1] == META_CMD_BOOTSTRAP ? 18u
                               : buf[1] == META_CMD_JOIN    ? 6u
                                                            : 10u;
                if (off + 2u <= len) {
                    uint16_t v = ts_load_le16(buf + off);
                    ts_store_le16(buf + off, (uint16_t)(v + (int)ts_rand_below(r, 5) - 2));
                }
            }
            break;
        default: /* the kind */
            if (len >= 2) {
                buf[1] = (uint8_t)ts_rand_below(r, 5);
            }
            break;
        }
    }
    return len;
}

Test(meta_cmd, random_and_mutated_buffers_decode_or_fail_cleanly, .timeout = 60)
{
    struct ts_rand r;
    ts_rand_seed(&r, 0x6d657461);
    uint8_t bufs[3][META_CMD_BYTES_MAX];
    uint32_t lens[3];
    sample_cmds(bufs, lens);
    uint32_t decoded = 0, refused = 0;
    for (uint32_t i = 0; i < 6000; i++) {
        uint8_t buf[META_CMD_BYTES_MAX + 64];
        uint32_t len;
        if (i % 3 == 0) {
            len = (uint32_t)ts_rand_below(&r, 40);
            for (uint32_t k = 0; k < len; k++) {
                buf[k] = (uint8_t)ts_rand_u64(&r);
            }
            if (len > 0 && ts_rand_chance(&r, 3, 4)) {
                buf[0] = 'M';
            }
        } else {
            uint32_t b = (uint32_t)ts_rand_below(&r, 3);
            memcpy(buf, bufs[b], lens[b]);
            len = mutate(&r, buf, lens[b], sizeof buf);
        }
        uint8_t *copy = malloc(len > 0 ? len : 1);
        cr_assert_not_null(copy);
        if (len > 0) {
            memcpy(copy, buf, len);
        }
        struct meta_cmd c;
        int rc = meta_cmd_decode(copy, len, &c);
        cr_assert(rc == 0 || rc == TS_EPROTO, "buffer %u: %s", i, ts_errname(rc));
        if (rc == 0) {
            cr_assert(c.str >= copy && c.str + c.str_len <= copy + len);
            check_reencode(copy, len, &c);
            decoded++;
        } else {
            refused++;
        }
        free(copy);
    }
    cr_assert_gt(decoded, 100, "the mutations should keep some commands valid (%u)", decoded);
    cr_assert_gt(refused, 100);
}

/* Bytes that do not decode are TS_EPROTO from meta_apply too, and change nothing. */
Test(meta_apply, undecodable_bytes_are_eproto)
{
    struct kte *e = menv_new(29);
    uint8_t bufs[3][META_CMD_BYTES_MAX];
    uint32_t lens[3];
    sample_cmds(bufs, lens);
    for (int phase = 0; phase < 2; phase++) {
        size_t len;
        uint32_t keys;
        uint8_t *before = dump_all(e, &len, &keys);
        for (int i = 0; i < 3; i++) {
            struct meta_result r;
            for (uint32_t n = 0; n < lens[i]; n++) {
                cr_assert_eq(apply(e, bufs[i], n, &r), TS_EPROTO, "command %d cut to %u", i, n);
            }
            uint8_t big[META_CMD_BYTES_MAX + 1];
            memcpy(big, bufs[i], lens[i]);
            big[lens[i]] = 0;
            cr_assert_eq(apply(e, big, lens[i] + 1u, &r), TS_EPROTO, "command %d + 1 byte", i);
            big[0] = 1; /* a core/kv command */
            cr_assert_eq(apply(e, big, lens[i], &r), TS_EPROTO);
            big[0] = 'M';
            big[1] = 4;
            cr_assert_eq(apply(e, big, lens[i], &r), TS_EPROTO);
        }
        assert_same_dump(e, before, len, "an undecodable command");
        free(before);
        if (phase == 0) {
            cr_assert_eq(count_all(e), 0);
        }
        bootstrap(e, 1, 8, 2, "1=127.0.0.1:7001,2=127.0.0.1:7002");
    }
    menv_free(e);
}

/* Applied to records, mutated commands give 0 or TS_EPROTO and leave readable records. */
Test(meta_apply, mutated_commands_keep_records_readable, .timeout = 120)
{
    struct kte *e = menv_new(11);
    struct meta_result res =
        bootstrap(e, 9, 4, 2, "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003");
    assert_result(res, META_OK, 0, true);
    struct ts_rand r;
    ts_rand_seed(&r, 0x6170706c79);
    uint8_t bufs[3][META_CMD_BYTES_MAX];
    uint32_t lens[3];
    sample_cmds(bufs, lens);
    uint32_t ok = 0;
    for (uint32_t i = 0; i < 1500; i++) {
        uint8_t buf[META_CMD_BYTES_MAX + 64];
        uint32_t b = (uint32_t)ts_rand_below(&r, 3);
        memcpy(buf, bufs[b], lens[b]);
        uint32_t len = mutate(&r, buf, lens[b], sizeof buf);
        int rc = apply(e, buf, len, &res);
        cr_assert(rc == 0 || rc == TS_EPROTO, "command %u: %s", i, ts_errname(rc));
        if (rc == 0) {
            ok++;
            cr_assert_leq(res.status, META_BAD_SPEC);
        }
        struct meta_member ms[TS_RAFT_MEMBERS_MAX];
        uint32_t n;
        rc = meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n);
        cr_assert_eq(rc, 0, "command %u left unreadable members: %s", i, ts_errname(rc));
        for (uint32_t k = 1; k < n; k++) {
            cr_assert_lt(ms[k - 1].node_id, ms[k].node_id);
        }
    }
    cr_assert_gt(ok, 50);
    struct meta_cluster c;
    cr_assert_eq(meta_cluster_load(&e->store, &c), 0);
    cr_assert_eq(c.cluster_id, 9);
    menv_free(e);
}

/* ---- Bootstrap ------------------------------------------------------------------------------ */

#define SPEC4 "1=10.0.0.1:7001,2=10.0.0.2:7001,5=10.0.0.5:7001,3=10.0.0.3:7001"

static void check_bootstrap(struct kte *e, uint64_t cid, const char *spec, uint32_t ranges,
                            uint32_t shards)
{
    struct host_cluster hc;
    parse_spec(spec, ranges, &hc);
    uint64_t max = 0;
    for (uint32_t i = 0; i < hc.n; i++) {
        max = hc.m[i].node_id > max ? hc.m[i].node_id : max;
    }
    assert_cluster(e, cid, ranges, shards, max + 1, spec);
    /* One member per spec entry, joining, in id order. */
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    cr_assert_eq(meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n), 0);
    cr_assert_eq(n, hc.n);
    for (uint32_t i = 0; i < hc.n; i++) {
        assert_member(e, hc.m[i].node_id, META_STATE_JOINING, shards, hc.m[i].addr);
        uint32_t below = 0; /* its place in id order */
        for (uint32_t j = 0; j < hc.n; j++) {
            below += hc.m[j].node_id < hc.m[i].node_id;
        }
        cr_assert_eq(ms[below].node_id, hc.m[i].node_id);
        cr_assert_eq(ms[below].state, META_STATE_JOINING);
        cr_assert_eq(ms[below].shards, shards);
        cr_assert_str_eq(ms[below].addr, hc.m[i].addr);
    }
    /* One descriptor per range, as the layout has it. */
    for (uint64_t range = 1; range <= ranges; range++) {
        struct meta_desc got, want, lay;
        memset(&got, 0xa5, sizeof got);
        int rc = meta_desc_load(&e->store, range, &got);
        cr_assert_eq(rc, 0, "range %llu: %s", (unsigned long long)range, ts_errname(rc));
        expected_desc(&hc, shards, range, &want);
        assert_desc_eq(&got, &want);
        meta_desc_of_layout(&hc, shards, range, &lay);
        assert_desc_eq(&lay, &want);
        static uint8_t v[4096], wv[4096];
        uint32_t vl = raw_get(e, 'r', range, true, v, sizeof v);
        uint32_t wl = enc_desc(wv, &want);
        cr_assert(vl == wl && memcmp(v, wv, wl) == 0, "range %llu: stored bytes",
                  (unsigned long long)range);
    }
    struct meta_desc d;
    cr_assert_eq(meta_desc_load(&e->store, ranges + 1u, &d), TS_ENOTFOUND);
    cr_assert_eq(meta_desc_load(&e->store, 0, &d), TS_ENOTFOUND);
    /* And nothing else: the cluster, the members, the descriptors. */
    cr_assert_eq(count_all(e), 1u + hc.n + ranges);
}

Test(meta_bootstrap, writes_cluster_members_and_descriptors)
{
    static const struct {
        const char *spec;
        uint32_t ranges, shards;
    } cases[] = {
        {SPEC4, 7, 3},
        {"1=127.0.0.1:7001", 1, 1},
        {"9=h9:1,4=h4:1", 3, 4},
        {SPEC4, 64, 5},
        {"1=a:1,2=b:1,3=c:1", TS_HOST_RANGES_MAX, 2},
    };
    for (uint32_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kte *e = menv_new(100 + i);
        struct meta_result r =
            bootstrap(e, 1000 + i, cases[i].ranges, cases[i].shards, cases[i].spec);
        assert_result(r, META_OK, 0, true);
        check_bootstrap(e, 1000 + i, cases[i].spec, cases[i].ranges, cases[i].shards);
        menv_free(e);
    }
}

/* One small cluster written out by hand, independent of the layout functions. */
Test(meta_bootstrap, two_ranges_by_hand)
{
    struct kte *e = menv_new(1);
    assert_result(bootstrap(e, 77, 2, 4, "7=a:1,9=b:2"), META_OK, 0, true);
    assert_cluster(e, 77, 2, 4, 10, "7=a:1,9=b:2");
    assert_member(e, 7, 'J', 4, "a:1");
    assert_member(e, 9, 'J', 4, "b:2");
    struct meta_desc d;
    cr_assert_eq(meta_desc_load(&e->store, 1, &d), 0);
    cr_assert_eq(d.generation, 1);
    cr_assert_eq(d.conf_version, 1);
    cr_assert_eq(d.lo_len, 0);
    cr_assert_eq(d.hi_len, 2);
    cr_assert(d.hi[0] == 0x80 && d.hi[1] == 0x00);
    cr_assert_eq(d.n, 2);
    cr_assert(d.rep[0].node_id == 7 && d.rep[0].replica_id == 7 && d.rep[0].shard == 0);
    cr_assert(d.rep[1].node_id == 9 && d.rep[1].replica_id == 9 && d.rep[1].shard == 0);
    cr_assert_eq(meta_desc_load(&e->store, 2, &d), 0);
    cr_assert_eq(d.range, 2);
    cr_assert_eq(d.lo_len, 2);
    cr_assert(d.lo[0] == 0x80 && d.lo[1] == 0x00);
    cr_assert_eq(d.hi_len, 0);
    cr_assert_eq(d.n, 2);
    cr_assert(d.rep[0].node_id == 9 && d.rep[0].replica_id == 9 && d.rep[0].shard == 1);
    cr_assert(d.rep[1].node_id == 7 && d.rep[1].replica_id == 7 && d.rep[1].shard == 1);
    menv_free(e);
}

Test(meta_bootstrap, sixteen_members_and_three_replicas)
{
    char spec[1024] = "";
    for (uint32_t i = 0; i < TS_RAFT_MEMBERS_MAX; i++) {
        char one[64];
        snprintf(one, sizeof one, "%s%u=10.1.0.%u:7001", i > 0 ? "," : "", 100 - i, i);
        strcat(spec, one);
    }
    struct kte *e = menv_new(2);
    assert_result(bootstrap(e, 5, 20, 3, spec), META_OK, 0, true);
    check_bootstrap(e, 5, spec, 20, 3);
    menv_free(e);
}

Test(meta_bootstrap, second_bootstrap_changes_nothing)
{
    struct kte *e = menv_new(3);
    assert_result(bootstrap(e, 1, 7, 3, SPEC4), META_OK, 0, true);
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    assert_result(bootstrap(e, 1, 7, 3, SPEC4), META_OK, 0, false);
    assert_same_dump(e, before, len, "the same bootstrap again");
    assert_result(bootstrap(e, 2, 9, 1, "8=x:1,9=y:1"), META_OK, 0, false);
    assert_same_dump(e, before, len, "a different bootstrap");
    assert_result(bootstrap(e, 2, 9, 1, "not a spec"), META_OK, 0, false);
    assert_same_dump(e, before, len, "a bad bootstrap");
    /* Still so after the records moved on. */
    assert_result(join(e, 3, "10.0.0.9:7001"), META_OK, 6, true);
    free(before);
    before = dump_all(e, &len, &keys);
    assert_result(bootstrap(e, 1, 7, 3, SPEC4), META_OK, 0, false);
    assert_same_dump(e, before, len, "a bootstrap after a join");
    free(before);
    assert_cluster(e, 1, 7, 3, 7, SPEC4);
    menv_free(e);
}

Test(meta_bootstrap, bad_spec_writes_nothing)
{
    char many[1024] = "";
    for (uint32_t i = 1; i <= TS_RAFT_MEMBERS_MAX + 1u; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s%u=h:%u", i > 1 ? "," : "", i, i);
        strcat(many, one);
    }
    char *long_addr = pattern(TS_HOST_ADDR_BYTES);
    char long_spec[128];
    snprintf(long_spec, sizeof long_spec, "1=%s", long_addr);
    const struct {
        const char *spec;
        uint32_t ranges, shards;
    } cases[] = {
        {"", 4, 1},
        {"x", 4, 1},
        {"0=a:1", 4, 1},
        {"1=", 4, 1},
        {"1=a:1,1=b:1", 4, 1},
        {"=a:1", 4, 1},
        {many, 4, 1},
        {long_spec, 4, 1},
        {"1=a:1", 0, 1},
        {"1=a:1", TS_HOST_RANGES_MAX + 1u, 1},
        {"1=a:1", 4, 0},
    };
    struct kte *e = menv_new(4);
    for (uint32_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct meta_result r = bootstrap(e, 1, cases[i].ranges, cases[i].shards, cases[i].spec);
        assert_result(r, META_BAD_SPEC, 0, false);
        cr_assert_eq(count_all(e), 0, "case %u wrote something", i);
        struct meta_cluster c;
        cr_assert_eq(meta_cluster_load(&e->store, &c), TS_ENOTFOUND);
    }
    /* A good one still bootstraps afterwards. */
    assert_result(bootstrap(e, 3, 2, 1, "1=a:1"), META_OK, 0, true);
    check_bootstrap(e, 3, "1=a:1", 2, 1);
    free(long_addr);
    menv_free(e);
}

/* ---- Join ------------------------------------------------------------------------------------ */

Test(meta_join, before_bootstrap)
{
    struct kte *e = menv_new(5);
    assert_result(join(e, 1, "10.0.0.1:7001"), META_NOT_BOOTSTRAPPED, 0, false);
    cr_assert_eq(count_all(e), 0);
    menv_free(e);
}

Test(meta_join, shards_mismatch)
{
    struct kte *e = menv_new(6);
    bootstrap(e, 1, 7, 3, SPEC4);
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    static const uint32_t bad[] = {1, 2, 4, UINT32_MAX};
    for (uint32_t i = 0; i < 4; i++) {
        assert_result(join(e, bad[i], "10.0.0.9:7001"), META_SHARDS_MISMATCH, 0, false);
        /* Even at an existing member's address. */
        assert_result(join(e, bad[i], "10.0.0.2:7001"), META_SHARDS_MISMATCH, 0, false);
    }
    assert_same_dump(e, before, len, "a mismatched join");
    free(before);
    menv_free(e);
}

Test(meta_join, new_addresses_get_the_next_ids)
{
    struct kte *e = menv_new(7);
    bootstrap(e, 1, 7, 3, SPEC4); /* ids 1 2 5 3: next 6 */
    assert_result(join(e, 3, "10.0.0.6:7001"), META_OK, 6, true);
    assert_member(e, 6, META_STATE_JOINING, 3, "10.0.0.6:7001");
    assert_cluster(e, 1, 7, 3, 7, SPEC4);
    char *addr = pattern(TS_HOST_ADDR_BYTES - 1u);
    assert_result(join(e, 3, addr), META_OK, 7, true);
    assert_member(e, 7, META_STATE_JOINING, 3, addr);
    assert_cluster(e, 1, 7, 3, 8, SPEC4);
    free(addr);
    /* The descriptors do not move. */
    struct host_cluster hc;
    parse_spec(SPEC4, 7, &hc);
    for (uint64_t range = 1; range <= 7; range++) {
        struct meta_desc got, want;
        cr_assert_eq(meta_desc_load(&e->store, range, &got), 0);
        expected_desc(&hc, 3, range, &want);
        assert_desc_eq(&got, &want);
    }
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n;
    cr_assert_eq(meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n), 0);
    cr_assert_eq(n, 6);
    static const uint64_t order[] = {1, 2, 3, 5, 6, 7};
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(ms[i].node_id, order[i]);
    }
    menv_free(e);
}

/* Shards 0: the cluster's count, recorded as such. */
Test(meta_join, zero_shards_means_the_clusters)
{
    struct kte *e = menv_new(31);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(join(e, 0, "10.0.0.6:7001"), META_OK, 6, true);
    assert_member(e, 6, META_STATE_JOINING, 3, "10.0.0.6:7001");
    assert_cluster(e, 1, 7, 3, 7, SPEC4);
    /* A retry with either count is the same join. */
    assert_result(join(e, 0, "10.0.0.6:7001"), META_OK, 6, false);
    assert_result(join(e, 3, "10.0.0.6:7001"), META_OK, 6, false);
    assert_result(join(e, 0, "10.0.0.1:7001"), META_OK, 1, false);
    assert_result(publish(e, 6, "10.0.0.6:7001"), META_OK, 6, true);
    struct meta_result r = join(e, 0, "10.0.0.6:7001");
    cr_assert_eq(r.status, META_ADDR_IN_USE);
    cr_assert_not(r.changed);
    menv_free(e);
}

Test(meta_join, retry_while_joining_gets_the_same_id)
{
    struct kte *e = menv_new(8);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(join(e, 3, "10.0.0.6:7001"), META_OK, 6, true);
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    for (int i = 0; i < 3; i++) {
        assert_result(join(e, 3, "10.0.0.6:7001"), META_OK, 6, false);
    }
    /* An initial member never started is "joining" too. */
    assert_result(join(e, 3, "10.0.0.5:7001"), META_OK, 5, false);
    assert_result(join(e, 3, "10.0.0.1:7001"), META_OK, 1, false);
    assert_same_dump(e, before, len, "a retried join");
    /* A prefix or an extension of an address is another address. */
    assert_result(join(e, 3, "10.0.0.6:700"), META_OK, 7, true);
    assert_result(join(e, 3, "10.0.0.6:70011"), META_OK, 8, true);
    free(before);
    menv_free(e);
}

Test(meta_join, started_address_is_refused)
{
    struct kte *e = menv_new(9);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(join(e, 3, "10.0.0.6:7001"), META_OK, 6, true);
    assert_result(publish(e, 6, "10.0.0.6:7001"), META_OK, 6, true);
    assert_result(publish(e, 2, "10.0.0.2:7001"), META_OK, 2, true);
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    struct meta_result r = join(e, 3, "10.0.0.6:7001");
    cr_assert_eq(r.status, META_ADDR_IN_USE);
    cr_assert_not(r.changed);
    r = join(e, 3, "10.0.0.2:7001");
    cr_assert_eq(r.status, META_ADDR_IN_USE);
    cr_assert_not(r.changed);
    assert_same_dump(e, before, len, "a refused join");
    assert_cluster(e, 1, 7, 3, 7, SPEC4);
    free(before);
    menv_free(e);
}

Test(meta_join, ids_are_never_reused)
{
    struct kte *e = menv_new(10);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(join(e, 3, "x:1"), META_OK, 6, true);
    /* Node 6 starts elsewhere: "x:1" is free again, but 6 is not. */
    assert_result(publish(e, 6, "y:1"), META_OK, 6, true);
    assert_result(join(e, 3, "x:1"), META_OK, 7, true);
    assert_member(e, 6, META_STATE_STARTED, 3, "y:1");
    assert_member(e, 7, META_STATE_JOINING, 3, "x:1");
    /* Node 1 too. */
    assert_result(publish(e, 1, "z:1"), META_OK, 1, true);
    assert_result(join(e, 3, "10.0.0.1:7001"), META_OK, 8, true);
    assert_cluster(e, 1, 7, 3, 9, SPEC4);
    menv_free(e);
}

Test(meta_join, full_at_the_members_limit)
{
    struct kte *e = menv_new(12);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint64_t next = 6;
    for (uint32_t i = 4; i < TS_RAFT_MEMBERS_MAX; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "10.0.1.%u:7001", i);
        assert_result(join(e, 3, addr), META_OK, next, true);
        next++;
    }
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    assert_result(join(e, 3, "10.0.2.1:7001"), META_FULL, 0, false);
    assert_result(join(e, 3, "10.0.2.2:7001"), META_FULL, 0, false);
    /* A retry of a member still joining is answered, even when full. */
    assert_result(join(e, 3, "10.0.1.4:7001"), META_OK, 6, false);
    assert_same_dump(e, before, len, "a join when full");
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n;
    cr_assert_eq(meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n), 0);
    cr_assert_eq(n, TS_RAFT_MEMBERS_MAX);
    free(before);
    menv_free(e);
}

Test(meta_join, full_after_a_bootstrap_of_sixteen)
{
    char spec[1024] = "";
    for (uint32_t i = 1; i <= TS_RAFT_MEMBERS_MAX; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s%u=h:%u", i > 1 ? "," : "", i, i);
        strcat(spec, one);
    }
    struct kte *e = menv_new(13);
    bootstrap(e, 1, 3, 1, spec);
    assert_result(join(e, 1, "new:1"), META_FULL, 0, false);
    assert_result(join(e, 1, "h:16"), META_OK, 16, false);
    menv_free(e);
}

/* A node id at the top of the id space: the next id must not wrap to 0 (an id that
 * reads back as corrupt) nor come back to an id in use. */
Test(meta_join, next_id_does_not_wrap)
{
    /* The last id in the spec would leave no id for a new node: refused. */
    struct kte *e0 = menv_new(13);
    assert_result(bootstrap(e0, 1, 2, 1, "18446744073709551615=a:1"), META_BAD_SPEC, 0, false);
    menv_free(e0);
    /* The last id is given once; then joins are full, and ids never wrap to 0. */
    static const char *specs[] = {"18446744073709551614=a:1", "18446744073709551613=a:1"};
    for (uint32_t s = 0; s < 2; s++) {
        struct kte *e = menv_new(14 + s);
        assert_result(bootstrap(e, 1, 2, 1, specs[s]), META_OK, 0, true);
        for (int i = 0; i < 3; i++) {
            char addr[16];
            snprintf(addr, sizeof addr, "n%d:1", i);
            uint32_t len = meta_cmd_join(cmdbuf, 1, addr);
            struct meta_result r;
            int rc = apply(e, cmdbuf, len, &r);
            cr_assert_eq(rc, 0, "spec %s, join %d: %s", specs[s], i, ts_errname(rc));
            if (r.status == META_OK) {
                cr_assert_neq(r.node_id, 0, "spec %s, join %d: node id 0", specs[s], i);
                struct meta_member m;
                cr_assert_eq(meta_member_load(&e->store, r.node_id, &m), 0);
                cr_assert_str_eq(m.addr, addr);
            }
        }
        struct meta_member ms[TS_RAFT_MEMBERS_MAX];
        uint32_t n;
        int rc = meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n);
        cr_assert_eq(rc, 0, "spec %s: members: %s", specs[s], ts_errname(rc));
        menv_free(e);
    }
}

/* The wire lets a string hold a NUL byte. A retried join must still be a retry, and a
 * started member's address must stay refused. */
Test(meta_join, address_with_a_nul_byte)
{
    struct kte *e = menv_new(16);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(publish(e, 1, "10.0.0.1:7001"), META_OK, 1, true);
    static const uint8_t nul[] = {'a', 0, 'b'};
    uint32_t len = hand_cmd(cmdbuf, META_CMD_JOIN, sizeof nul);
    ts_store_le32(cmdbuf + 2, 3);
    memcpy(cmdbuf + 8, nul, sizeof nul);
    struct meta_result r1, r2;
    int rc1 = apply(e, cmdbuf, len, &r1);
    int rc2 = apply(e, cmdbuf, len, &r2);
    cr_assert(rc1 == 0 || rc1 == TS_EPROTO);
    cr_assert_eq(rc2, rc1);
    if (rc1 == 0) {
        cr_assert_eq(r1.status, META_OK);
        cr_assert_eq(r2.status, META_OK);
        cr_assert_eq(r2.node_id, r1.node_id, "the same join twice gave ids %llu and %llu",
                     (unsigned long long)r1.node_id, (unsigned long long)r2.node_id);
        cr_assert_not(r2.changed);
    }
    menv_free(e);
}

Test(meta_join, address_with_a_nul_byte_is_not_another_address)
{
    struct kte *e = menv_new(16);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(publish(e, 1, "10.0.0.1:7001"), META_OK, 1, true);
    struct meta_result r1;
    int rc1;
    uint32_t len;
    /* "10.0.0.1:7001\0" is node 1's address to every reader of the record. */
    static const char started[] = "10.0.0.1:7001";
    len = hand_cmd(cmdbuf, META_CMD_JOIN, sizeof started); /* with its NUL */
    ts_store_le32(cmdbuf + 2, 3);
    memcpy(cmdbuf + 8, started, sizeof started);
    rc1 = apply(e, cmdbuf, len, &r1);
    cr_assert(rc1 == 0 || rc1 == TS_EPROTO);
    if (rc1 == 0) {
        cr_assert_neq(r1.status, META_OK, "a join at started node 1's address got id %llu",
                      (unsigned long long)r1.node_id);
    }
    menv_free(e);
}

/* ---- Publish --------------------------------------------------------------------------------- */

Test(meta_publish, before_bootstrap)
{
    struct kte *e = menv_new(17);
    struct meta_result r = publish(e, 1, "10.0.0.1:7001");
    cr_assert_eq(r.status, META_NOT_BOOTSTRAPPED);
    cr_assert_not(r.changed);
    cr_assert_eq(count_all(e), 0);
    menv_free(e);
}

Test(meta_publish, unknown_node)
{
    struct kte *e = menv_new(18);
    bootstrap(e, 1, 7, 3, SPEC4);
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    static const uint64_t ids[] = {0, 4, 6, 7, 1000, UINT64_MAX};
    for (uint32_t i = 0; i < 6; i++) {
        assert_result(publish(e, ids[i], "10.0.0.4:7001"), META_UNKNOWN_NODE, ids[i], false);
    }
    assert_same_dump(e, before, len, "a publish of an unknown node");
    free(before);
    menv_free(e);
}

Test(meta_publish, starts_the_member_and_is_idempotent)
{
    struct kte *e = menv_new(19);
    bootstrap(e, 1, 7, 3, SPEC4);
    size_t len;
    uint32_t keys;
    uint8_t *before = dump_all(e, &len, &keys);
    uint8_t c0[4096];
    uint32_t c0l = raw_get(e, 'c', 0, false, c0, sizeof c0);
    assert_result(publish(e, 5, "192.168.0.5:9000"), META_OK, 5, true);
    assert_member(e, 5, META_STATE_STARTED, 3, "192.168.0.5:9000");
    /* Nothing else moved. */
    assert_member(e, 1, META_STATE_JOINING, 3, "10.0.0.1:7001");
    assert_member(e, 2, META_STATE_JOINING, 3, "10.0.0.2:7001");
    assert_member(e, 3, META_STATE_JOINING, 3, "10.0.0.3:7001");
    uint8_t c1[4096];
    uint32_t c1l = raw_get(e, 'c', 0, false, c1, sizeof c1);
    cr_assert(c0l == c1l && memcmp(c0, c1, c0l) == 0, "publish changed the cluster record");
    size_t len1;
    uint8_t *after = dump_all(e, &len1, &keys);
    cr_assert_eq(len1, len - strlen("10.0.0.5:7001") + strlen("192.168.0.5:9000"));
    for (int i = 0; i < 3; i++) {
        assert_result(publish(e, 5, "192.168.0.5:9000"), META_OK, 5, false);
    }
    assert_same_dump(e, after, len1, "the same publish again");
    /* A new address is a change; a shorter one leaves nothing of the old one. */
    assert_result(publish(e, 5, "h:1"), META_OK, 5, true);
    assert_member(e, 5, META_STATE_STARTED, 3, "h:1");
    /* Publishing a joining member at its own address still starts it. */
    assert_result(publish(e, 1, "10.0.0.1:7001"), META_OK, 1, true);
    assert_member(e, 1, META_STATE_STARTED, 3, "10.0.0.1:7001");
    free(before);
    free(after);
    menv_free(e);
}

Test(meta_publish, joined_member)
{
    struct kte *e = menv_new(20);
    bootstrap(e, 1, 2, 2, "1=a:1");
    assert_result(join(e, 2, "b:1"), META_OK, 2, true);
    assert_result(publish(e, 2, "b:1"), META_OK, 2, true);
    assert_member(e, 2, META_STATE_STARTED, 2, "b:1");
    assert_result(publish(e, 2, "b:1"), META_OK, 2, false);
    assert_result(publish(e, 3, "c:1"), META_UNKNOWN_NODE, 3, false);
    menv_free(e);
}

/* ---- Store errors ---------------------------------------------------------------------------- */

/* A failing store call's error comes back unchanged, at every point of every command. */
Test(meta_apply, store_errors_pass_through)
{
    for (int kind = 0; kind < 3; kind++) {
        bool done = false;
        for (long k = 0; k < 200 && !done; k++) {
            struct kte *e = menv_new(21);
            if (kind > 0) {
                bootstrap(e, 1, 7, 3, SPEC4);
                join(e, 3, "x:1");
            }
            uint32_t len = kind == 0   ? meta_cmd_bootstrap(cmdbuf, 1, 7, 3, SPEC4)
                           : kind == 1 ? meta_cmd_join(cmdbuf, 3, "y:1")
                                       : meta_cmd_publish(cmdbuf, 6, "x:2");
            e->fail_after = k;
            struct meta_result r;
            int rc = apply(e, cmdbuf, len, &r);
            cr_assert(rc == 0 || rc == -EIO, "kind %d, fail after %ld: %s", kind, k,
                      ts_errname(rc));
            if (rc == 0) {
                cr_assert_eq(r.status, META_OK, "kind %d, fail after %ld", kind, k);
                cr_assert(r.changed);
                done = true;
            }
            menv_free(e);
        }
        cr_assert(done, "kind %d never completed", kind);
    }
}

/* ---- Determinism ---------------------------------------------------------------------------- */

static uint32_t random_cmd(struct ts_rand *r, uint8_t *buf)
{
    static const char *specs[] = {SPEC4, "1=a:1,2=b:1", "not a spec"};
    char addr[32];
    snprintf(addr, sizeof addr, "h%u:1", (unsigned)ts_rand_below(r, 24));
    switch (ts_rand_below(r, 10)) {
    case 0:
        return meta_cmd_bootstrap(buf, ts_rand_u64(r), 1u + (uint32_t)ts_rand_below(r, 9),
                                  (uint32_t)ts_rand_below(r, 4), specs[ts_rand_below(r, 3)]);
    case 1:
    case 2:
    case 3:
    case 4:
        return meta_cmd_join(buf, 2u + (uint32_t)ts_rand_below(r, 2), addr);
    default:
        return meta_cmd_publish(buf, ts_rand_below(r, 20), addr);
    }
}

Test(meta_determinism, same_commands_same_records, .timeout = 60)
{
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct kte *a = menv_new(seed), *b = menv_new(seed * 7919u);
        struct ts_rand r;
        ts_rand_seed(&r, seed);
        for (uint32_t i = 0; i < 150; i++) {
            uint8_t buf[META_CMD_BYTES_MAX];
            uint32_t len = random_cmd(&r, buf);
            struct meta_result ra, rb;
            int rca = apply(a, buf, len, &ra), rcb = apply(b, buf, len, &rb);
            cr_assert_eq(rca, 0);
            cr_assert_eq(rcb, 0);
            cr_assert(ra.status == rb.status && ra.node_id == rb.node_id &&
                          ra.changed == rb.changed,
                      "seed %llu, command %u: results differ", (unsigned long long)seed, i);
        }
        struct kv_range r1 = {.id = META_RANGE};
        struct kv_span sp[2];
        kv_range_spans(&r1, sp);
        size_t la, lb;
        uint32_t ka, kb;
        uint8_t *da = dump_span(a, sp[1].lo, sp[1].lo_len, sp[1].hi, sp[1].hi_len, &la, &ka);
        uint8_t *db = dump_span(b, sp[1].lo, sp[1].lo_len, sp[1].hi, sp[1].hi_len, &lb, &kb);
        cr_assert_gt(ka, 0);
        cr_assert(la == lb && memcmp(da, db, la) == 0, "seed %llu: the records differ",
                  (unsigned long long)seed);
        free(da);
        free(db);
        menv_free(a);
        menv_free(b);
    }
}

/* ---- Corrupt records ------------------------------------------------------------------------ */

/* Every way to spoil a valid record v: another format byte, every truncation, trailing
 * bytes. check(e) must give TS_ECORRUPT for each. */
static void spoil_each(struct kte *e, uint8_t field, uint64_t id, bool with_id, const uint8_t *v,
                       uint32_t vl, void (*check)(struct kte *e, uint64_t id, const char *what))
{
    uint8_t buf[8192];
    char what[64];
    for (int f = 0; f < 256; f += (f < 4 ? 1 : 51)) {
        if (f == 1) {
            continue;
        }
        memcpy(buf, v, vl);
        buf[0] = (uint8_t)f;
        raw_put(e, field, id, with_id, buf, vl);
        snprintf(what, sizeof what, "format %d", f);
        check(e, id, what);
    }
    for (uint32_t n = 0; n < vl; n++) {
        raw_put(e, field, id, with_id, v, n);
        snprintf(what, sizeof what, "truncated to %u of %u", n, vl);
        check(e, id, what);
    }
    for (uint32_t extra = 1; extra <= 3; extra++) {
        memcpy(buf, v, vl);
        memset(buf + vl, 0, extra);
        raw_put(e, field, id, with_id, buf, vl + extra);
        snprintf(what, sizeof what, "%u trailing bytes", extra);
        check(e, id, what);
    }
    /* Far too long for any record. */
    memcpy(buf, v, vl);
    memset(buf + vl, 'z', sizeof buf - vl);
    raw_put(e, field, id, with_id, buf, sizeof buf);
    check(e, id, "8 KiB");
    raw_put(e, field, id, with_id, v, vl); /* the valid record back */
}

static void check_cluster_corrupt(struct kte *e, uint64_t id, const char *what)
{
    (void)id;
    struct meta_cluster c;
    int rc = meta_cluster_load(&e->store, &c);
    cr_assert_eq(rc, TS_ECORRUPT, "cluster %s: %s", what, ts_errname(rc));
    /* A command that needs the record stops applying. */
    uint32_t len = meta_cmd_join(cmdbuf, 3, "q:1");
    struct meta_result r;
    rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, TS_ECORRUPT, "join over cluster %s: %s", what, ts_errname(rc));
    len = meta_cmd_bootstrap(cmdbuf, 1, 7, 3, SPEC4);
    rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, TS_ECORRUPT, "bootstrap over cluster %s: %s", what, ts_errname(rc));
}

Test(meta_corrupt, cluster_record)
{
    struct kte *e = menv_new(22);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint8_t v[4096];
    uint32_t vl = raw_get(e, 'c', 0, false, v, sizeof v);
    cr_assert_gt(vl, 0);
    spoil_each(e, 'c', 0, false, v, vl, check_cluster_corrupt);
    /* A spec over its limit, the record otherwise whole. */
    static uint8_t big[8192];
    char *spec = pattern(META_SPEC_BYTES);
    uint32_t bl = enc_cluster(big, 1, 7, 3, 6, spec);
    raw_put(e, 'c', 0, false, big, bl);
    check_cluster_corrupt(e, 0, "spec of META_SPEC_BYTES");
    spec[META_SPEC_BYTES - 1u] = 0;
    bl = enc_cluster(big, 1, 7, 3, 6, spec);
    raw_put(e, 'c', 0, false, big, bl);
    struct meta_cluster c;
    cr_assert_eq(meta_cluster_load(&e->store, &c), 0, "the longest spec reads");
    cr_assert_eq(strlen(c.spec), META_SPEC_BYTES - 1u);
    /* A spec length past the end. */
    vl = enc_cluster(big, 1, 7, 3, 6, "1=a:1");
    ts_store_le16(big + 25, 6);
    raw_put(e, 'c', 0, false, big, vl);
    check_cluster_corrupt(e, 0, "spec length past the end");
    free(spec);
    menv_free(e);
}

static void check_member_corrupt(struct kte *e, uint64_t id, const char *what)
{
    struct meta_member m;
    int rc = meta_member_load(&e->store, id, &m);
    cr_assert_eq(rc, TS_ECORRUPT, "member %s: %s", what, ts_errname(rc));
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n;
    rc = meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n);
    cr_assert_eq(rc, TS_ECORRUPT, "members with member %s: %s", what, ts_errname(rc));
    uint32_t len = meta_cmd_join(cmdbuf, 3, "q:1");
    struct meta_result r;
    rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, TS_ECORRUPT, "join over member %s: %s", what, ts_errname(rc));
    len = meta_cmd_publish(cmdbuf, id, "q:1");
    rc = apply(e, cmdbuf, len, &r);
    cr_assert_eq(rc, TS_ECORRUPT, "publish over member %s: %s", what, ts_errname(rc));
}

Test(meta_corrupt, member_record)
{
    struct kte *e = menv_new(23);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint8_t v[256];
    uint32_t vl = raw_get(e, 'n', 2, true, v, sizeof v);
    cr_assert_gt(vl, 0);
    spoil_each(e, 'n', 2, true, v, vl, check_member_corrupt);
    /* States other than 'J' and 'U'. */
    static const uint8_t states[] = {0, 'j', 'u', 'S', 'X', 0xff};
    uint8_t b[256];
    for (uint32_t i = 0; i < sizeof states; i++) {
        uint32_t bl = enc_member(b, 2, states[i], 3, "10.0.0.2:7001");
        raw_put(e, 'n', 2, true, b, bl);
        char what[32];
        snprintf(what, sizeof what, "state %u", states[i]);
        check_member_corrupt(e, 2, what);
    }
    /* An address over its limit; a length past the end. */
    char *addr = pattern(TS_HOST_ADDR_BYTES);
    uint32_t bl = enc_member(b, 2, 'U', 3, addr);
    raw_put(e, 'n', 2, true, b, bl);
    check_member_corrupt(e, 2, "address of TS_HOST_ADDR_BYTES");
    bl = enc_member(b, 2, 'U', 3, "abc");
    ts_store_le16(b + 14, 4);
    raw_put(e, 'n', 2, true, b, bl);
    check_member_corrupt(e, 2, "address length past the end");
    /* Node id 0. */
    bl = enc_member(b, 0, 'U', 3, "abc");
    raw_put(e, 'n', 2, true, b, bl);
    check_member_corrupt(e, 2, "node id 0");
    free(addr);
    /* The valid record reads again. */
    raw_put(e, 'n', 2, true, v, vl);
    assert_member(e, 2, 'J', 3, "10.0.0.2:7001");
    menv_free(e);
}

/* A record under another node's key: meta_member_load refuses it... */
Test(meta_corrupt, member_load_of_a_record_under_another_id)
{
    struct kte *e = menv_new(24);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint8_t b[256];
    uint32_t bl = enc_member(b, 9, 'U', 3, "10.0.0.2:7001");
    raw_put(e, 'n', 2, true, b, bl);
    struct meta_member m;
    cr_assert_eq(meta_member_load(&e->store, 2, &m), TS_ECORRUPT);
    uint32_t len = meta_cmd_publish(cmdbuf, 2, "q:1");
    struct meta_result r;
    cr_assert_eq(apply(e, cmdbuf, len, &r), TS_ECORRUPT);
    menv_free(e);
}

/* ...and so must meta_members (and the join that lists the members). */
Test(meta_corrupt, members_with_a_record_under_another_id)
{
    struct kte *e = menv_new(24);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint8_t b[256];
    uint32_t bl = enc_member(b, 9, 'U', 3, "10.0.0.2:7001");
    raw_put(e, 'n', 2, true, b, bl);
    check_member_corrupt(e, 2, "with id 9 under key 2");
    menv_free(e);
}

/* A key under the members' prefix that is not a member key. */
Test(meta_corrupt, member_key_of_the_wrong_length)
{
    struct kte *e = menv_new(25);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint8_t k[32], v[256];
    uint32_t kl = rkey(k, 'n', 4, true);
    uint32_t vl = enc_member(v, 4, 'J', 3, "q:1");
    cr_assert_eq(btree_put(e->t, k, kl - 1u, v, vl), 0);
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n;
    cr_assert_eq(meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n), TS_ECORRUPT);
    cr_assert_eq(btree_delete(e->t, k, kl - 1u), 0);
    k[kl] = 0;
    cr_assert_eq(btree_put(e->t, k, kl + 1u, v, vl), 0);
    cr_assert_eq(meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n), TS_ECORRUPT);
    menv_free(e);
}

/* More members than the caller has room for. */
Test(meta_corrupt, members_over_max)
{
    struct kte *e = menv_new(26);
    bootstrap(e, 1, 7, 3, SPEC4);
    /* Exactly 3 entries: writing a fourth is caught by ASan. */
    struct meta_member *ms = malloc(3 * sizeof *ms);
    cr_assert_not_null(ms);
    uint32_t n = 99;
    int rc = meta_members(&e->store, ms, 3, &n);
    cr_assert(rc != 0 || n == 3, "4 members into room for 3: %s, n %u", ts_errname(rc), n);
    cr_assert_leq(n, 3);
    free(ms);
    struct meta_member all[4];
    cr_assert_eq(meta_members(&e->store, all, 4, &n), 0);
    cr_assert_eq(n, 4);
    menv_free(e);
}

static void check_desc_corrupt(struct kte *e, uint64_t id, const char *what)
{
    struct meta_desc d;
    int rc = meta_desc_load(&e->store, id, &d);
    cr_assert_eq(rc, TS_ECORRUPT, "descriptor %s: %s", what, ts_errname(rc));
}

Test(meta_corrupt, descriptor_record)
{
    struct kte *e = menv_new(27);
    bootstrap(e, 1, 7, 3, SPEC4);
    uint8_t v[4096];
    uint32_t vl = raw_get(e, 'r', 3, true, v, sizeof v);
    cr_assert_gt(vl, 0);
    spoil_each(e, 'r', 3, true, v, vl, check_desc_corrupt);
    struct meta_desc good;
    cr_assert_eq(meta_desc_load(&e->store, 3, &good), 0);
    static uint8_t b[8192];
    struct meta_desc d = good;
    /* Another range's record. */
    d.range = 4;
    raw_put(e, 'r', 3, true, b, enc_desc(b, &d));
    check_desc_corrupt(e, 3, "of range 4");
    /* Replica counts over the limit and past the end. */
    d = good;
    uint32_t bl = enc_desc(b, &good);
    uint32_t count_at = 25u + 2u + good.lo_len + 2u + good.hi_len;
    b[count_at] = (uint8_t)(TS_RAFT_MEMBERS_MAX + 1u);
    for (uint32_t i = good.n; i < TS_RAFT_MEMBERS_MAX + 1u; i++) { /* whole replicas */
        ts_store_le64(b + bl, i + 1u);
        ts_store_le64(b + bl + 8, i + 1u);
        ts_store_le32(b + bl + 16, 0);
        bl += 20;
    }
    raw_put(e, 'r', 3, true, b, bl);
    check_desc_corrupt(e, 3, "17 replicas");
    bl = enc_desc(b, &good);
    b[count_at] = (uint8_t)(good.n + 1u);
    raw_put(e, 'r', 3, true, b, bl);
    check_desc_corrupt(e, 3, "a replica count past the end");
    b[count_at] = (uint8_t)(good.n - 1u);
    raw_put(e, 'r', 3, true, b, bl);
    check_desc_corrupt(e, 3, "a replica count short of the bytes");
    b[count_at] = 255;
    raw_put(e, 'r', 3, true, b, bl);
    check_desc_corrupt(e, 3, "255 replicas");
    /* Keys at and over their limit. */
    d = good;
    d.lo_len = TS_KV_KEY_BYTES_MAX;
    memset(d.lo, 'k', d.lo_len);
    d.hi_len = TS_KV_KEY_BYTES_MAX;
    memset(d.hi, 'l', d.hi_len);
    d.n = TS_RAFT_MEMBERS_MAX;
    for (uint32_t i = 0; i < d.n; i++) {
        d.rep[i] = (struct meta_replica){.node_id = i + 1u, .replica_id = 100u + i, .shard = i};
    }
    bl = enc_desc(b, &d);
    raw_put(e, 'r', 3, true, b, bl);
    struct meta_desc got;
    cr_assert_eq(meta_desc_load(&e->store, 3, &got), 0, "the largest descriptor reads");
    assert_desc_eq(&got, &d);
    ts_store_le16(b + 25, TS_KV_KEY_BYTES_MAX + 1u);
    raw_put(e, 'r', 3, true, b, bl);
    check_desc_corrupt(e, 3, "a start key length over the limit");
    /* Whole keys of TS_KV_KEY_BYTES_MAX + 1 bytes, start or end. */
    for (int which = 0; which < 2; which++) {
        uint8_t *p = b;
        *p++ = 1;
        ts_store_le64(p, 3);
        ts_store_le64(p + 8, 1);
        ts_store_le64(p + 16, 1);
        p += 24;
        for (int k = 0; k < 2; k++) {
            uint32_t kl = k == which ? TS_KV_KEY_BYTES_MAX + 1u : 2u;
            ts_store_le16(p, (uint16_t)kl);
            memset(p + 2, 'k', kl);
            p += 2 + kl;
        }
        *p++ = 0; /* no replicas */
        raw_put(e, 'r', 3, true, b, (uint32_t)(p - b));
        check_desc_corrupt(e, 3, which == 0 ? "a 1024-byte start key" : "a 1024-byte end key");
    }
    menv_free(e);
}

/* ---- Where the records live ----------------------------------------------------------------- */

static bool in_span(const struct kv_span *sp, const uint8_t *k, uint32_t kl)
{
    uint32_t m = kl < sp->lo_len ? kl : sp->lo_len;
    int c = m > 0 ? memcmp(k, sp->lo, m) : 0;
    if (c < 0 || (c == 0 && kl < sp->lo_len)) {
        return false;
    }
    m = kl < sp->hi_len ? kl : sp->hi_len;
    c = m > 0 ? memcmp(k, sp->hi, m) : 0;
    return c < 0 || (c == 0 && kl < sp->hi_len);
}

Test(meta_span, records_live_in_range_1s_metadata)
{
    struct kte *e = menv_new(28);
    bootstrap(e, 1, 5, 2, "1=a:1,2=b:1,3=c:1,4=d:1");
    join(e, 2, "e:1");
    publish(e, 5, "e:2");
    publish(e, 1, "a:1");
    /* Every key written so far is meta's: all inside range 1's metadata span. */
    struct host_cluster hc;
    parse_spec("1=a:1,2=b:1,3=c:1,4=d:1", 5, &hc);
    uint8_t lo1[2], hi1[2], lo2[2], hi2[2];
    struct kv_range r1 = {.id = 1,
                          .lo = lo1,
                          .lo_len = host_range_start(&hc, 1, lo1),
                          .hi = hi1,
                          .hi_len = host_range_start(&hc, 2, hi1)};
    struct kv_range r2 = {.id = 2,
                          .lo = lo2,
                          .lo_len = host_range_start(&hc, 2, lo2),
                          .hi = hi2,
                          .hi_len = host_range_start(&hc, 3, hi2)};
    struct kv_span sp[2];
    kv_range_spans(&r1, sp);
    uint32_t meta_keys = 0;
    struct btree_cursor c;
    for (int rc = btree_cursor_seek(&c, e->t, NULL, 0); rc != TS_ENOTFOUND;
         rc = btree_cursor_next(&c)) {
        cr_assert_eq(rc, 0);
        const uint8_t *k;
        uint32_t kl;
        btree_cursor_key(&c, &k, &kl);
        cr_assert(in_span(&sp[1], k, kl), "a key of %u bytes outside range 1's metadata", kl);
        cr_assert_not(in_span(&sp[0], k, kl));
        meta_keys++;
    }
    cr_assert_eq(meta_keys, 1u + 5u + 5u);
    /* Range 1's own state and blobs sit beside the records without touching them. */
    struct kv_range_state st = {.applied_index = 11, .applied_term = 2, .last_rev = 9};
    cr_assert_eq(kv_range_state_save(&e->store, 1, &st), 0);
    cr_assert_eq(kv_range_blob_save(&e->store, 1, 0, "blob", 4), 0);
    cr_assert_eq(kv_range_blob_save(&e->store, 1, TS_KV_BLOBS_MAX - 1u, "last", 4), 0);
    assert_member(e, 5, 'U', 2, "e:2");
    assert_cluster(e, 1, 5, 2, 6, "1=a:1,2=b:1,3=c:1,4=d:1");
    struct kv_range_state st2;
    cr_assert_eq(kv_range_state_load(&e->store, 1, &st2), 0);
    cr_assert_eq(st2.applied_index, 11);
    /* Range 2's metadata and a data key of range 2 (prefix 'd', kv.h). */
    cr_assert_eq(kv_range_state_save(&e->store, 2, &st), 0);
    cr_assert_eq(kv_range_blob_save(&e->store, 2, 0, "two", 3), 0);
    uint8_t dk[3] = {'d', lo2[0], lo2[1]};
    cr_assert_eq(btree_put(e->t, dk, 3, "v", 1), 0);
    uint32_t before = count_all(e);
    /* Clearing range 1 removes every record, and nothing of range 2. */
    uint64_t deleted = 99;
    cr_assert_eq(kv_range_clear(&e->store, &r1, &deleted), 0);
    cr_assert_eq(deleted, 0, "no data keys in range 1");
    cr_assert_eq(count_all(e), before - meta_keys - 3u);
    struct meta_cluster mc;
    cr_assert_eq(meta_cluster_load(&e->store, &mc), TS_ENOTFOUND);
    struct meta_member m;
    for (uint64_t id = 1; id <= 5; id++) {
        cr_assert_eq(meta_member_load(&e->store, id, &m), TS_ENOTFOUND);
    }
    struct meta_desc d;
    for (uint64_t range = 1; range <= 5; range++) {
        cr_assert_eq(meta_desc_load(&e->store, range, &d), TS_ENOTFOUND);
    }
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n = 99;
    cr_assert_eq(meta_members(&e->store, ms, TS_RAFT_MEMBERS_MAX, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(kv_range_state_load(&e->store, 2, &st2), 0);
    uint8_t blob[8];
    uint32_t bl;
    cr_assert_eq(kv_range_blob_load(&e->store, 2, 0, blob, sizeof blob, &bl), 0);
    cr_assert(bl == 3 && memcmp(blob, "two", 3) == 0);
    uint32_t vl;
    uint8_t val[4];
    cr_assert_eq(btree_get(e->t, dk, 3, val, sizeof val, &vl), 0);
    /* Clearing range 2 leaves a bootstrapped range 1 alone. */
    bootstrap(e, 1, 5, 2, "1=a:1,2=b:1,3=c:1,4=d:1");
    cr_assert_eq(kv_range_clear(&e->store, &r2, &deleted), 0);
    cr_assert_eq(deleted, 1);
    check_bootstrap(e, 1, "1=a:1,2=b:1,3=c:1,4=d:1", 5, 2);
    menv_free(e);
}

Test(meta_status, names)
{
    for (uint8_t st = META_OK; st <= META_BAD_SPEC; st++) {
        cr_assert_str_neq(meta_status_name(st), meta_status_name(200));
    }
    cr_assert_str_eq(meta_status_name(META_OK), "ok");
}

/* A node cannot announce itself at an address another started member serves at. */
Test(meta_publish, address_of_another_started_member)
{
    struct kte *e = menv_new(41);
    bootstrap(e, 1, 7, 3, SPEC4);
    assert_result(publish(e, 1, "10.0.0.9:7001"), META_OK, 1, true);
    assert_result(publish(e, 2, "10.0.0.9:7001"), META_ADDR_IN_USE, 2, false);
    assert_member(e, 2, META_STATE_JOINING, 3, "10.0.0.2:7001");
    /* Once node 1 moved away, the address is free. */
    assert_result(publish(e, 1, "10.0.0.1:7001"), META_OK, 1, true);
    assert_result(publish(e, 2, "10.0.0.9:7001"), META_OK, 2, true);
    menv_free(e);
}
