/* shard/meta: the meta range's records and commands (see meta.h). */
#include "shard/meta.h"

#include "core/util/assert.h"
#include "core/util/encoding.h"
#include "core/util/err.h"

#include <string.h>

#define META_FORMAT 1u
_Static_assert(META_SPEC_BYTES == TS_HOST_SPEC_BYTES, "the meta range holds any spec a node takes");
#define META_KEY_BYTES 18u
#define META_DESC_BYTES_MAX                                                                        \
    (1u + 8u + 8u + 8u + 2u + TS_KV_KEY_BYTES_MAX + 2u + TS_KV_KEY_BYTES_MAX + 1u +                \
     TS_RAFT_MEMBERS_MAX * 20u)
#define META_MEMBER_BYTES_MAX (1u + 8u + 1u + 4u + 2u + TS_HOST_ADDR_BYTES)
#define META_CLUSTER_BYTES_MAX (1u + 8u + 4u + 4u + 8u + 2u + META_SPEC_BYTES)

const char *meta_status_name(uint8_t st)
{
    switch (st) {
    case META_OK:
        return "ok";
    case META_NOT_BOOTSTRAPPED:
        return "the meta range is not bootstrapped yet";
    case META_ADDR_IN_USE:
        return "a started member already serves at this address";
    case META_SHARDS_MISMATCH:
        return "a node must run the cluster's shard count";
    case META_FULL:
        return "the cluster has its maximum number of members";
    case META_UNKNOWN_NODE:
        return "no member has this node id";
    case META_BAD_SPEC:
        return "the initial cluster spec does not parse";
    default:
        return "unknown meta status";
    }
}

/* ------------------------------------------------------------------ keys */

static uint32_t mkey(uint8_t *buf, uint8_t field, uint64_t id, bool with_id)
{
    buf[0] = KV_PREFIX_META;
    for (int i = 0; i < 8; i++) {
        buf[1 + i] = (uint8_t)((uint64_t)META_RANGE >> (56 - 8 * i));
    }
    buf[9] = field;
    if (!with_id) {
        return 10;
    }
    for (int i = 0; i < 8; i++) {
        buf[10 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
    return META_KEY_BYTES;
}

/* ------------------------------------------------------------------ a bounded reader */

struct rd {
    const uint8_t *p;
    const uint8_t *end;
    bool bad;
};

static bool rd_has(struct rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint8_t rd_u8(struct rd *r)
{
    return rd_has(r, 1) ? *r->p++ : 0;
}

static uint32_t rd_u32(struct rd *r)
{
    if (!rd_has(r, 4)) {
        return 0;
    }
    uint32_t v = ts_load_le32(r->p);
    r->p += 4;
    return v;
}

static uint64_t rd_u64(struct rd *r)
{
    if (!rd_has(r, 8)) {
        return 0;
    }
    uint64_t v = ts_load_le64(r->p);
    r->p += 8;
    return v;
}

/* A str of at most max bytes: a view. */
static const uint8_t *rd_str(struct rd *r, uint32_t max, uint32_t *len)
{
    *len = 0;
    if (!rd_has(r, 2)) {
        return NULL;
    }
    uint32_t n = ts_load_le16(r->p);
    r->p += 2;
    if (n > max || !rd_has(r, n)) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *s = r->p;
    r->p += n;
    *len = n;
    return s;
}

static bool rd_done(const struct rd *r)
{
    return !r->bad && r->p == r->end;
}

static uint8_t *put_str(uint8_t *p, const void *s, uint32_t n)
{
    ts_store_le16(p, (uint16_t)n);
    if (n > 0) {
        memcpy(p + 2, s, n);
    }
    return p + 2 + n;
}

/* ------------------------------------------------------------------ records */

static int cluster_save(const struct kv_store *s, const struct meta_cluster *c)
{
    uint8_t k[META_KEY_BYTES], v[META_CLUSTER_BYTES_MAX];
    uint32_t kl = mkey(k, 'c', 0, false);
    uint32_t sl = (uint32_t)strlen(c->spec);
    v[0] = META_FORMAT;
    ts_store_le64(v + 1, c->cluster_id);
    ts_store_le32(v + 9, c->ranges);
    ts_store_le32(v + 13, c->shards);
    ts_store_le64(v + 17, c->next_node_id);
    uint8_t *end = put_str(v + 25, c->spec, sl);
    return s->put(s->ctx, k, kl, v, (uint32_t)(end - v));
}

int meta_cluster_load(const struct kv_store *s, struct meta_cluster *out)
{
    uint8_t k[META_KEY_BYTES], v[META_CLUSTER_BYTES_MAX];
    uint32_t kl = mkey(k, 'c', 0, false), vl = 0;
    int rc = s->get(s->ctx, k, kl, v, sizeof v, &vl);
    if (rc == TS_ETOOBIG) {
        return TS_ECORRUPT;
    }
    if (rc != 0) {
        return rc;
    }
    struct rd r = {.p = v, .end = v + vl};
    uint8_t format = rd_u8(&r);
    out->cluster_id = rd_u64(&r);
    out->ranges = rd_u32(&r);
    out->shards = rd_u32(&r);
    out->next_node_id = rd_u64(&r);
    uint32_t sl;
    const uint8_t *sp = rd_str(&r, META_SPEC_BYTES - 1u, &sl);
    if (format != META_FORMAT || !rd_done(&r)) {
        return TS_ECORRUPT;
    }
    memcpy(out->spec, sp, sl);
    out->spec[sl] = 0;
    return 0;
}

static int member_save(const struct kv_store *s, const struct meta_member *m)
{
    uint8_t k[META_KEY_BYTES], v[META_MEMBER_BYTES_MAX];
    uint32_t kl = mkey(k, 'n', m->node_id, true);
    v[0] = META_FORMAT;
    ts_store_le64(v + 1, m->node_id);
    v[9] = m->state;
    ts_store_le32(v + 10, m->shards);
    uint8_t *end = put_str(v + 14, m->addr, (uint32_t)strlen(m->addr));
    return s->put(s->ctx, k, kl, v, (uint32_t)(end - v));
}

static int member_decode(const uint8_t *v, uint32_t vl, struct meta_member *out)
{
    struct rd r = {.p = v, .end = v + vl};
    uint8_t format = rd_u8(&r);
    out->node_id = rd_u64(&r);
    out->state = rd_u8(&r);
    out->shards = rd_u32(&r);
    uint32_t al;
    const uint8_t *ap = rd_str(&r, TS_HOST_ADDR_BYTES - 1u, &al);
    if (format != META_FORMAT || !rd_done(&r) || out->node_id == 0 ||
        (out->state != META_STATE_JOINING && out->state != META_STATE_STARTED)) {
        return TS_ECORRUPT;
    }
    memcpy(out->addr, ap, al);
    out->addr[al] = 0;
    return 0;
}

int meta_member_load(const struct kv_store *s, uint64_t node_id, struct meta_member *out)
{
    uint8_t k[META_KEY_BYTES], v[META_MEMBER_BYTES_MAX];
    uint32_t kl = mkey(k, 'n', node_id, true), vl = 0;
    int rc = s->get(s->ctx, k, kl, v, sizeof v, &vl);
    if (rc == TS_ETOOBIG) {
        return TS_ECORRUPT;
    }
    if (rc == 0) {
        rc = member_decode(v, vl, out);
    }
    return rc == 0 && out->node_id != node_id ? TS_ECORRUPT : rc;
}

int meta_members(const struct kv_store *s, struct meta_member *out, uint32_t max, uint32_t *n)
{
    *n = 0;
    uint8_t lo[META_KEY_BYTES];
    uint32_t ll = mkey(lo, 'n', 0, false);
    int rc = s->seek(s->ctx, lo, ll);
    while (rc == 0) {
        const uint8_t *k;
        uint32_t kl;
        s->key(s->ctx, &k, &kl);
        if (kl < ll || memcmp(k, lo, ll) != 0) {
            return 0; /* past the members */
        }
        if (kl != META_KEY_BYTES || *n == max) {
            return TS_ECORRUPT;
        }
        uint64_t key_id = 0; /* read before the value: k is valid until the next call */
        for (uint32_t i = 0; i < 8; i++) {
            key_id = key_id << 8 | k[10 + i];
        }
        uint8_t v[META_MEMBER_BYTES_MAX];
        uint32_t vl = 0;
        rc = s->value(s->ctx, v, sizeof v, &vl);
        if (rc == 0) {
            rc = member_decode(v, vl, &out[*n]);
        }
        if (rc == 0 && out[*n].node_id != key_id) {
            rc = TS_ECORRUPT; /* a record under another node's key */
        }
        if (rc != 0) {
            return rc == TS_ETOOBIG ? TS_ECORRUPT : rc;
        }
        (*n)++;
        rc = s->next(s->ctx);
    }
    return rc == TS_ENOTFOUND ? 0 : rc;
}

static int desc_save(const struct kv_store *s, const struct meta_desc *d)
{
    uint8_t k[META_KEY_BYTES], v[META_DESC_BYTES_MAX];
    uint32_t kl = mkey(k, 'r', d->range, true);
    v[0] = META_FORMAT;
    ts_store_le64(v + 1, d->range);
    ts_store_le64(v + 9, d->generation);
    ts_store_le64(v + 17, d->conf_version);
    uint8_t *p = put_str(v + 25, d->lo, d->lo_len);
    p = put_str(p, d->hi, d->hi_len);
    *p++ = (uint8_t)d->n;
    for (uint32_t i = 0; i < d->n; i++) {
        ts_store_le64(p, d->rep[i].node_id);
        ts_store_le64(p + 8, d->rep[i].replica_id);
        ts_store_le32(p + 16, d->rep[i].shard);
        p += 20;
    }
    return s->put(s->ctx, k, kl, v, (uint32_t)(p - v));
}

int meta_desc_load(const struct kv_store *s, uint64_t range, struct meta_desc *out)
{
    uint8_t k[META_KEY_BYTES], v[META_DESC_BYTES_MAX];
    uint32_t kl = mkey(k, 'r', range, true), vl = 0;
    int rc = s->get(s->ctx, k, kl, v, sizeof v, &vl);
    if (rc == TS_ETOOBIG) {
        return TS_ECORRUPT;
    }
    if (rc != 0) {
        return rc;
    }
    struct rd r = {.p = v, .end = v + vl};
    uint8_t format = rd_u8(&r);
    out->range = rd_u64(&r);
    out->generation = rd_u64(&r);
    out->conf_version = rd_u64(&r);
    const uint8_t *lo = rd_str(&r, TS_KV_KEY_BYTES_MAX, &out->lo_len);
    const uint8_t *hi = rd_str(&r, TS_KV_KEY_BYTES_MAX, &out->hi_len);
    out->n = rd_u8(&r);
    if (out->n > TS_RAFT_MEMBERS_MAX) {
        return TS_ECORRUPT;
    }
    for (uint32_t i = 0; i < out->n; i++) {
        out->rep[i].node_id = rd_u64(&r);
        out->rep[i].replica_id = rd_u64(&r);
        out->rep[i].shard = rd_u32(&r);
    }
    if (format != META_FORMAT || !rd_done(&r) || out->range != range) {
        return TS_ECORRUPT;
    }
    memcpy(out->lo, lo, out->lo_len);
    memcpy(out->hi, hi, out->hi_len);
    return 0;
}

void meta_desc_of_layout(const struct host_cluster *c, uint32_t shards, uint64_t range,
                         struct meta_desc *out)
{
    TS_ASSERT(range >= 1 && range <= c->ranges && shards > 0);
    memset(out, 0, sizeof *out);
    out->range = range;
    out->generation = 1;
    out->conf_version = 1;
    out->lo_len = host_range_start(c, range, out->lo);
    out->hi_len = range < c->ranges ? host_range_start(c, range + 1, out->hi) : 0;
    out->n = c->replicas;
    for (uint32_t k = 0; k < c->replicas; k++) {
        uint64_t node = c->m[host_replica_member(c, range, k)].node_id;
        out->rep[k] = (struct meta_replica){
            .node_id = node, .replica_id = node, .shard = (uint32_t)((range - 1) % shards)};
    }
}

/* ------------------------------------------------------------------ commands */

uint32_t meta_cmd_bootstrap(uint8_t *buf, uint64_t cluster_id, uint32_t ranges, uint32_t shards,
                            const char *spec)
{
    size_t sl = strlen(spec);
    if (sl >= META_SPEC_BYTES) {
        return 0;
    }
    buf[0] = META_CMD_MAGIC;
    buf[1] = META_CMD_BOOTSTRAP;
    ts_store_le64(buf + 2, cluster_id);
    ts_store_le32(buf + 10, ranges);
    ts_store_le32(buf + 14, shards);
    return (uint32_t)(put_str(buf + 18, spec, (uint32_t)sl) - buf);
}

uint32_t meta_cmd_join(uint8_t *buf, uint32_t shards, const char *addr)
{
    size_t al = strlen(addr);
    if (al >= TS_HOST_ADDR_BYTES) {
        return 0;
    }
    buf[0] = META_CMD_MAGIC;
    buf[1] = META_CMD_JOIN;
    ts_store_le32(buf + 2, shards);
    return (uint32_t)(put_str(buf + 6, addr, (uint32_t)al) - buf);
}

uint32_t meta_cmd_publish(uint8_t *buf, uint64_t node_id, const char *addr)
{
    size_t al = strlen(addr);
    if (al >= TS_HOST_ADDR_BYTES) {
        return 0;
    }
    buf[0] = META_CMD_MAGIC;
    buf[1] = META_CMD_PUBLISH;
    ts_store_le64(buf + 2, node_id);
    return (uint32_t)(put_str(buf + 10, addr, (uint32_t)al) - buf);
}

int meta_cmd_decode(const uint8_t *buf, uint32_t len, struct meta_cmd *out)
{
    memset(out, 0, sizeof *out);
    struct rd r = {.p = buf, .end = buf + len};
    if (rd_u8(&r) != META_CMD_MAGIC) {
        return TS_EPROTO;
    }
    out->kind = rd_u8(&r);
    switch (out->kind) {
    case META_CMD_BOOTSTRAP:
        out->cluster_id = rd_u64(&r);
        out->ranges = rd_u32(&r);
        out->shards = rd_u32(&r);
        out->str = rd_str(&r, META_SPEC_BYTES - 1u, &out->str_len);
        break;
    case META_CMD_JOIN:
        out->shards = rd_u32(&r);
        out->str = rd_str(&r, TS_HOST_ADDR_BYTES - 1u, &out->str_len);
        break;
    case META_CMD_PUBLISH:
        out->node_id = rd_u64(&r);
        out->str = rd_str(&r, TS_HOST_ADDR_BYTES - 1u, &out->str_len);
        break;
    default:
        return TS_EPROTO;
    }
    /* Strings are text: a NUL would be cut off where they are stored and compared. An
     * address is never empty. */
    if (!rd_done(&r) || (out->str_len > 0 && memchr(out->str, 0, out->str_len) != NULL) ||
        (out->kind != META_CMD_BOOTSTRAP && out->str_len == 0)) {
        return TS_EPROTO;
    }
    return 0;
}

static int apply_bootstrap(const struct kv_store *s, const struct meta_cmd *c,
                           struct meta_result *out)
{
    struct meta_cluster mc;
    int rc = meta_cluster_load(s, &mc);
    if (rc != TS_ENOTFOUND) {
        return rc; /* 0: bootstrapped already, nothing to do */
    }
    memset(&mc, 0, sizeof mc);
    memcpy(mc.spec, c->str, c->str_len);
    mc.spec[c->str_len] = 0;
    struct host_cluster hc;
    const char *why;
    if (c->shards == 0 || c->shards > HOST_SHARDS_MAX ||
        host_cluster_parse(mc.spec, 0, c->ranges, &hc, &why) != 0) {
        out->status = META_BAD_SPEC;
        return 0;
    }
    for (uint32_t i = 0; i < hc.n; i++) {
        if (hc.m[i].node_id == UINT64_MAX) {
            out->status = META_BAD_SPEC; /* no id would be left for a new node */
            return 0;
        }
    }
    mc.cluster_id = c->cluster_id;
    mc.ranges = c->ranges;
    mc.shards = c->shards;
    mc.next_node_id = 1;
    for (uint32_t i = 0; i < hc.n; i++) {
        struct meta_member m = {
            .node_id = hc.m[i].node_id, .state = META_STATE_JOINING, .shards = c->shards};
        memcpy(m.addr, hc.m[i].addr, sizeof m.addr);
        rc = member_save(s, &m);
        if (rc != 0) {
            return rc;
        }
        if (m.node_id >= mc.next_node_id) {
            mc.next_node_id = m.node_id + 1;
        }
    }
    for (uint64_t range = 1; range <= hc.ranges; range++) {
        struct meta_desc d;
        meta_desc_of_layout(&hc, c->shards, range, &d);
        rc = desc_save(s, &d);
        if (rc != 0) {
            return rc;
        }
    }
    rc = cluster_save(s, &mc);
    out->changed = rc == 0;
    return rc;
}

static int apply_join(const struct kv_store *s, const struct meta_cmd *c, struct meta_result *out)
{
    struct meta_cluster mc;
    int rc = meta_cluster_load(s, &mc);
    if (rc == TS_ENOTFOUND) {
        out->status = META_NOT_BOOTSTRAPPED;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    if (c->shards != 0 && c->shards != mc.shards) {
        out->status = META_SHARDS_MISMATCH;
        return 0;
    }
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    rc = meta_members(s, ms, TS_RAFT_MEMBERS_MAX, &n);
    if (rc != 0) {
        return rc;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (strlen(ms[i].addr) == c->str_len && memcmp(ms[i].addr, c->str, c->str_len) == 0) {
            out->node_id = ms[i].node_id;
            out->status = ms[i].state == META_STATE_JOINING ? META_OK : META_ADDR_IN_USE;
            return 0;
        }
    }
    if (n == TS_RAFT_MEMBERS_MAX || mc.next_node_id == 0 /* every id given */) {
        out->status = META_FULL;
        return 0;
    }
    struct meta_member m = {
        .node_id = mc.next_node_id, .state = META_STATE_JOINING, .shards = mc.shards};
    memcpy(m.addr, c->str, c->str_len);
    rc = member_save(s, &m);
    if (rc == 0) {
        mc.next_node_id++;
        rc = cluster_save(s, &mc);
    }
    out->node_id = m.node_id;
    out->changed = rc == 0;
    return rc;
}

static int apply_publish(const struct kv_store *s, const struct meta_cmd *c,
                         struct meta_result *out)
{
    struct meta_member m;
    out->node_id = c->node_id;
    int rc = meta_member_load(s, c->node_id, &m);
    if (rc == TS_ENOTFOUND) {
        struct meta_cluster mc;
        rc = meta_cluster_load(s, &mc);
        out->status = rc == TS_ENOTFOUND ? META_NOT_BOOTSTRAPPED : META_UNKNOWN_NODE;
        return rc == TS_ENOTFOUND ? 0 : rc;
    }
    if (rc != 0) {
        return rc;
    }
    if (m.state == META_STATE_STARTED && strlen(m.addr) == c->str_len &&
        memcmp(m.addr, c->str, c->str_len) == 0) {
        return 0;
    }
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    rc = meta_members(s, ms, TS_RAFT_MEMBERS_MAX, &n);
    if (rc != 0) {
        return rc;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (ms[i].node_id != c->node_id && ms[i].state == META_STATE_STARTED &&
            strlen(ms[i].addr) == c->str_len && memcmp(ms[i].addr, c->str, c->str_len) == 0) {
            out->status = META_ADDR_IN_USE;
            return 0;
        }
    }
    m.state = META_STATE_STARTED;
    memset(m.addr, 0, sizeof m.addr);
    memcpy(m.addr, c->str, c->str_len);
    rc = member_save(s, &m);
    out->changed = rc == 0;
    return rc;
}

int meta_apply(const struct kv_store *s, const uint8_t *cmd, uint32_t len, struct meta_result *out)
{
    memset(out, 0, sizeof *out);
    struct meta_cmd c;
    int rc = meta_cmd_decode(cmd, len, &c);
    if (rc != 0) {
        return rc;
    }
    switch (c.kind) {
    case META_CMD_BOOTSTRAP:
        return apply_bootstrap(s, &c, out);
    case META_CMD_JOIN:
        return apply_join(s, &c, out);
    default:
        return apply_publish(s, &c, out);
    }
}
