/* The replicas of one shard (see host.h). */
#define _GNU_SOURCE
#include "shard/host.h"

#include "core/kv/kv.h"
#include "core/raft/raft.h"
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/hlc.h"
#include "core/util/map64.h"
#include "core/util/rand.h"
#include "shard/disk.h"
#include "shard/meta.h"
#include "shard/kvwire.h"
#include "shard/peer_codec.h"
#include "storage/btree/btree.h"
#include "storage/wal/wal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOST_LOG(h, LEVEL, ...)                                                                    \
    do {                                                                                           \
        if ((h)->log != NULL) {                                                                    \
            TS_LOG_##LEVEL((h)->log, __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)

#define HOST_PATH_BYTES 512u
#define HOST_BUILDER_BYTES (64u * 1024u)
#define HOST_CONF_BLOB 0u        /* kv blob slot: the group's configuration as of applied */
#define HOST_READY_ROUNDS_MAX 2u /* extra passes over the readies in one iteration */

/* Cross-shard messages (xring_msg.type). */
enum host_xmsg {
    HX_REQUEST = 1, /* a client request for a range of the receiving shard */
    HX_ANSWER = 2,  /* its answer, back to the shard that holds the connection */
    HX_RAFT = 3,    /* a peer frame with groups of the receiving shard */
    HX_RELEASE = 4, /* a buffer going back to its owner */
};

/* Where an answer goes: a connection of some shard of this node. */
struct cref {
    uint32_t shard;
    bool from_peer; /* arrived from another node: answered here, never forwarded again */
    uint64_t conn;
    uint64_t req_id;
};

/* The conn of a request the node made itself (its announcement to the meta range). */
#define HOST_CONN_SELF UINT64_MAX

/* A request forwarded to the leader's node, waiting for its answer. */
struct fwd {
    struct cref c;
    uint64_t node;  /* where it went */
    uint64_t range; /* the range it is for */
    /* For a range this node does not host: the request (its own id), to pass it on once
     * more when the node it went to answers NotLeader with a hint. */
    uint8_t *frame;
    uint32_t len;
    uint32_t hops;
    uint64_t deadline_ns;
};

/* A buffer that crosses a ring; it returns to its owner (HX_RELEASE) to be freed. */
struct xbuf {
    struct xbuf *prev; /* the owner's list of buffers out (freed at host_free) */
    struct xbuf *next;
    uint32_t size; /* allocation, header included */
    uint32_t len;
    struct cref c;
    uint8_t data[];
};

struct prop {
    uint64_t index;
    uint64_t term;
    struct cref c;
};

struct pread {
    uint64_t ctx;
    uint64_t index; /* known once raft answered (has_index) */
    bool has_index;
    struct cref c;
    uint8_t *frame; /* a copy of the request */
    uint32_t len;
};

/*
 * Snapshots (a follower behind the leader's compacted log). The leader checkpoints its
 * B-tree so that the checkpoint holds exactly the applied index raft named, pins it
 * (btree_snapshot_open: writes and checkpoints go on) and streams the range's stored
 * keys (its data span and its metadata span, kv_range_spans) in chunks of
 * TS_HOST_SNAPSHOT_CHUNK_BYTES, each acknowledged before the next is sent. A chunk's
 * data is records "u32 key length, key, u32 value length, value" (little-endian). The
 * follower keeps the chunks in memory (at most TS_HOST_SNAPSHOT_BYTES_MAX); with the
 * last one it steps the Snapshot message, and when raft asks for the install it
 * replaces the range's keys, checkpoints its tree and then records the snapshot in its
 * log, so that a crash never leaves a log that has dropped entries its tree lacks.
 */
struct snap_send {
    raft_id to;
    uint64_t term;
    struct raft_snapshot_meta meta;
    struct btree_snapshot *snap;
    struct btree_cursor cur;
    uint32_t span;   /* 0 data, 1 metadata, 2 done */
    bool positioned; /* the next chunk starts at next, not at the span's start */
    uint8_t next[KV_SPAN_KEY_BYTES];
    uint32_t next_len;
    uint32_t seq;    /* of the chunk in flight */
    uint64_t offset; /* bytes sent before it */
    bool last_sent;
    uint64_t deadline_ns;
};

struct snap_recv {
    raft_id from;
    uint64_t term;
    uint32_t next_seq;
    uint8_t *buf;
    size_t len;
    size_t cap;
    struct raft_snapshot_meta meta;
    bool complete;
    bool held; /* its Snapshot message is held (the group's ready is out): keep it */
    uint64_t deadline_ns;
};

struct replica {
    uint64_t range;
    struct raft *raft;
    uint8_t lo[2];
    uint32_t lo_len;
    uint8_t hi[2];
    uint32_t hi_len;
    struct kv_range_state st;
    struct prop *props; /* a ring, oldest first: proposals waiting for their apply */
    uint32_t props_head;
    uint32_t props_n;
    uint32_t props_cap;
    struct pread *reads;
    uint32_t reads_n;
    uint32_t reads_cap;
    bool dirty;
    bool readied; /* rd is out: taken, not advanced yet (raft takes no mutating call) */
    bool conf_changed;
    struct raft_ready rd;
    uint64_t persist_lsn;      /* rd's records are durable once the log is durable here; 0: none */
    struct raft_hard_state hs; /* the last staged */
    uint8_t role;
    struct snap_send *send; /* a snapshot streaming to a follower, or NULL */
    struct snap_recv *recv; /* a snapshot arriving from the leader, or NULL */
    raft_id snap_failed;    /* a snapshot that could not start: reported after advance */
    uint8_t *held;          /* inputs held while rd is out (see "Held inputs") */
    uint32_t held_len;
    uint32_t held_cap;
    uint32_t held_ticks; /* ticks not given to raft yet (the lease counts them) */
    uint32_t lost_ticks; /* of which held without memory: given after the replay */
    uint64_t compact_to; /* a log compaction that waits for rd's advance; 0: none */
};

struct peer {
    uint64_t node;
    uint32_t member; /* index in the cluster */
    struct nio_conn *link;
    bool sent; /* a frame went out since the last tick */
};

struct xout {
    uint32_t to;
    struct xring_msg m;
};

struct host {
    struct shard *shard;
    struct shard_loop *loop;
    struct nio *nio;
    uint32_t shard_id;
    uint32_t shards;
    const struct host_cluster *cl;
    struct host_shared *shared;
    const struct ts_log *log;
    const struct ts_allocator *alloc;
    uint32_t self_member;

    struct disk *disk;
    struct wal *wal;
    struct btree *tree;
    struct btree_cursor cur;
    struct kv_store store;
    uint8_t *scratch;
    uint64_t durable_lsn;
    /* The B-tree holds the effect of entries whose log records are durable only once the
     * log is durable here (a follower applies entries it received with their commit). */
    uint64_t apply_lsn;

    struct replica *reps;
    uint32_t reps_n;
    int32_t *rep_of; /* range id -> index in reps, -1 when not hosted here */
    uint64_t *guess; /* range id -> its leader's node as last seen, for ranges not hosted */
    struct replica **dirty;
    uint32_t dirty_n;
    struct replica **readied; /* the groups whose ready is out, in the order taken */
    uint32_t readied_n;

    struct ts_rand rand;
    struct ts_hlc hlc;
    struct shard_timer tick;
    uint64_t tick_ns;
    uint32_t election_ticks;

    struct peer peers[TS_RAFT_MEMBERS_MAX];
    uint32_t peers_n;
    const struct raft_message **msgq;
    uint32_t msgq_n;
    uint32_t msgq_cap;
    proto_ref *refs; /* one frame's message tables */
    uint32_t refs_cap;
    struct proto_heartbeat *hbs; /* one frame's coalesced heartbeats */
    uint32_t hbs_cap;
    struct proto_heartbeat_ack *acks; /* and their answers */
    uint32_t acks_cap;

    struct proto_builder out_b; /* raft frames */
    struct proto_builder ans_b; /* answers */
    struct kvwire_answer ans;
    struct kvwire_txn_space *txn;
    struct raft_entry *dec;
    uint8_t *cmd;
    uint32_t cmd_cap;
    uint8_t *wbuf; /* WAL entries: a type byte, then the data */
    uint32_t wbuf_cap;
    struct wal_entry *went;
    uint32_t went_cap;

    struct xbuf *xbufs; /* buffers this shard sent and that have not come back */
    struct xout *xq;    /* messages a full ring refused, retried each iteration */
    uint32_t xq_n;
    uint32_t xq_cap;

    uint64_t read_ctx;
    uint64_t checkpoint_entries;
    uint64_t retain_entries;
    uint8_t *chunk; /* a snapshot chunk being built */
    uint64_t fwd_next;
    struct ts_map64 fwds; /* forwarded request id -> struct fwd */
    uint64_t applied_since_ckpt;
    /* The meta range: a range 1 leader checks that it is bootstrapped (and proposes
     * the bootstrap when not); shard 0 announces the node (JoinRequest with its id). */
    bool meta_ok;
    uint64_t meta_retry_ns;
    bool published;
    uint64_t publish_retry_ns;
    uint64_t self_req; /* the id of the announcement in flight */
    struct proto_builder self_b;
    bool stopping;
    bool stopped;
    bool failed;
    struct host_stats stats;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

/* ---- Layout ----------------------------------------------------------------------------- */

uint32_t host_range_start(const struct host_cluster *c, uint64_t range, uint8_t *buf)
{
    TS_ASSERT(range >= 1 && range <= c->ranges);
    if (range == 1) {
        return 0;
    }
    uint32_t v = (uint32_t)(((range - 1) * 65536u) / c->ranges);
    buf[0] = (uint8_t)(v >> 8);
    buf[1] = (uint8_t)v;
    return 2;
}

static int key_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (al < bl ? -1 : al > bl ? 1 : 0);
}

uint64_t host_range_of_key(const struct host_cluster *c, const uint8_t *key, uint32_t len)
{
    uint32_t v = (len > 0 ? (uint32_t)key[0] << 8 : 0) | (len > 1 ? key[1] : 0);
    uint64_t r = ((uint64_t)v * c->ranges) / 65536u + 1;
    uint8_t s[2];
    while (r < c->ranges) {
        uint32_t sl = host_range_start(c, r + 1, s);
        if (key_cmp(s, sl, key, len) > 0) {
            break;
        }
        r++;
    }
    while (r > 1) {
        uint32_t sl = host_range_start(c, r, s);
        if (key_cmp(s, sl, key, len) <= 0) {
            break;
        }
        r--;
    }
    return r;
}

uint32_t host_replica_member(const struct host_cluster *c, uint64_t range, uint32_t k)
{
    return (uint32_t)((range - 1 + k) % c->layout_n);
}

static uint32_t replica_member(const struct host_cluster *c, uint64_t range, uint32_t k)
{
    return host_replica_member(c, range, k);
}

static bool node_hosts(const struct host_cluster *c, uint64_t range, uint32_t member)
{
    for (uint32_t k = 0; k < c->replicas; k++) {
        if (replica_member(c, range, k) == member) {
            return true;
        }
    }
    return false;
}

static uint32_t member_of_node(const struct host_cluster *c, uint64_t node)
{
    for (uint32_t i = 0; i < c->n; i++) {
        if (c->m[i].node_id == node) {
            return i;
        }
    }
    return UINT32_MAX;
}

/* The node's "last heard" clock (host_shared), claiming a slot when asked. */
static _Atomic uint64_t *heard_clock(struct host_shared *sh, uint64_t node, bool claim)
{
    for (uint32_t i = 0; node != 0 && i < HOST_HEARD_SLOTS; i++) {
        uint64_t id = atomic_load_explicit(&sh->heard_id[i], memory_order_acquire);
        if (id == 0 && claim) {
            (void)atomic_compare_exchange_strong(&sh->heard_id[i], &id, node);
            id = atomic_load_explicit(&sh->heard_id[i], memory_order_acquire);
        }
        if (id == node) {
            return &sh->heard_ns[i];
        }
        if (id == 0) {
            return NULL;
        }
    }
    return NULL;
}

static uint64_t heard_last(struct host_shared *sh, uint64_t node)
{
    _Atomic uint64_t *clock = heard_clock(sh, node, false);
    return clock == NULL ? 0 : atomic_load_explicit(clock, memory_order_relaxed);
}

int host_cluster_parse(const char *spec, uint64_t self, uint32_t ranges, struct host_cluster *out,
                       const char **why)
{
    memset(out, 0, sizeof *out);
    out->self = self;
    out->ranges = ranges;
    if (ranges == 0 || ranges > TS_HOST_RANGES_MAX) {
        *why = "the number of ranges is out of bounds";
        return TS_EINVAL;
    }
    if (strlen(spec) >= sizeof out->spec) {
        *why = "the cluster spec is too long";
        return TS_EINVAL;
    }
    memcpy(out->spec, spec, strlen(spec) + 1);
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the spec: the cluster id */
    for (const char *p = spec; *p != 0; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    out->cluster_id = h == 0 ? 1 : h;
    const char *p = spec;
    while (*p != 0) {
        if (out->n == TS_RAFT_MEMBERS_MAX) {
            *why = "too many members";
            return TS_EINVAL;
        }
        char *end;
        errno = 0;
        unsigned long long id = *p >= '0' && *p <= '9' ? strtoull(p, &end, 10) : 0;
        if (*p < '0' || *p > '9' || errno != 0 || *end != '=' || id == 0) {
            *why = "a member is not written id=ip:port";
            return TS_EINVAL;
        }
        p = end + 1;
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= TS_HOST_ADDR_BYTES) {
            *why = "a member's address is empty or too long";
            return TS_EINVAL;
        }
        for (uint32_t i = 0; i < out->n; i++) {
            if (out->m[i].node_id == id) {
                *why = "a node id appears twice";
                return TS_EINVAL;
            }
        }
        out->m[out->n].node_id = id;
        memcpy(out->m[out->n].addr, p, len);
        out->m[out->n].addr[len] = 0;
        out->n++;
        p += len;
        if (*p == ',') {
            p++;
        }
    }
    if (out->n == 0 || (self != 0 && member_of_node(out, self) == UINT32_MAX)) {
        *why = out->n == 0 ? "no members" : "this node's id is not in the cluster";
        return TS_EINVAL;
    }
    out->layout_n = out->n;
    out->replicas = out->n < 3 ? out->n : 3;
    return 0;
}

int host_cluster_add(struct host_cluster *c, uint64_t node_id, const char *addr)
{
    size_t len = strlen(addr);
    if (node_id == 0 || member_of_node(c, node_id) != UINT32_MAX || c->n == TS_RAFT_MEMBERS_MAX ||
        len == 0 || len >= TS_HOST_ADDR_BYTES) {
        return TS_EINVAL;
    }
    c->m[c->n].node_id = node_id;
    memcpy(c->m[c->n].addr, addr, len + 1);
    c->n++;
    c->self = node_id;
    return 0;
}

/* ---- The store: core/kv over the shard's B-tree ------------------------------------------ */

/* What a failed store call says: for corruption, the B-tree's own report, which names the
 * file, the page and the reason (ts_strerror alone names none of them). */
static const char *store_why(const struct host *h, int rc)
{
    const char *why = rc == TS_ECORRUPT && h->tree != NULL ? btree_last_error(h->tree) : NULL;
    return why != NULL && why[0] != 0 ? why : ts_strerror(rc);
}

static int st_get(void *ctx, const uint8_t *key, uint32_t key_len, void *buf, uint32_t buf_bytes,
                  uint32_t *value_len)
{
    struct host *h = ctx;
    return btree_get(h->tree, key, key_len, buf, buf_bytes, value_len);
}

static int st_put(void *ctx, const uint8_t *key, uint32_t key_len, const void *value,
                  uint32_t value_len)
{
    struct host *h = ctx;
    return btree_put(h->tree, key, key_len, value, value_len);
}

static int st_del(void *ctx, const uint8_t *key, uint32_t key_len)
{
    struct host *h = ctx;
    return btree_delete(h->tree, key, key_len);
}

static int st_delete_range(void *ctx, const uint8_t *lo, uint32_t lo_len, const uint8_t *hi,
                           uint32_t hi_len, uint64_t *deleted)
{
    struct host *h = ctx;
    return btree_delete_range(h->tree, lo, lo_len, hi, hi_len, deleted);
}

static int st_count(void *ctx, const uint8_t *lo, uint32_t lo_len, const uint8_t *hi,
                    uint32_t hi_len, uint64_t *count)
{
    struct host *h = ctx;
    return btree_count(h->tree, lo, lo_len, hi, hi_len, count);
}

static int st_seek(void *ctx, const uint8_t *key, uint32_t key_len)
{
    struct host *h = ctx;
    return btree_cursor_seek(&h->cur, h->tree, key, key_len);
}

static int st_next(void *ctx)
{
    struct host *h = ctx;
    return btree_cursor_next(&h->cur);
}

static void st_key(void *ctx, const uint8_t **key, uint32_t *key_len)
{
    struct host *h = ctx;
    btree_cursor_key(&h->cur, key, key_len);
}

static int st_value(void *ctx, void *buf, uint32_t buf_bytes, uint32_t *value_len)
{
    struct host *h = ctx;
    return btree_cursor_value(&h->cur, buf, buf_bytes, value_len);
}

static struct kv_range kv_range_of(const struct replica *r)
{
    return (struct kv_range){
        .id = r->range, .lo = r->lo, .lo_len = r->lo_len, .hi = r->hi, .hi_len = r->hi_len};
}

/* ---- Growable arrays ---------------------------------------------------------------------- */

static bool grow(const struct ts_allocator *a, void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap) {
        return true;
    }
    uint32_t n = *cap == 0 ? 16 : *cap;
    while (n < need) {
        n *= 2;
    }
    void *q = ts_realloc(a, *p, (size_t)*cap * elem, (size_t)n * elem);
    if (q == NULL) {
        return false;
    }
    *p = q;
    *cap = n;
    return true;
}

/* ---- Cross-shard messages ------------------------------------------------------------------ */

static struct xbuf *xbuf_new(struct host *h, const uint8_t *data, uint32_t len, struct cref c)
{
    uint32_t size = (uint32_t)sizeof(struct xbuf) + len;
    struct xbuf *x = ts_alloc(h->alloc, size);
    if (x == NULL) {
        return NULL;
    }
    x->size = size;
    x->len = len;
    x->c = c;
    memcpy(x->data, data, len);
    x->prev = NULL;
    x->next = h->xbufs;
    if (h->xbufs != NULL) {
        h->xbufs->prev = x;
    }
    h->xbufs = x;
    return x;
}

/* On the owner's shard: a buffer came back (or the node is gone). */
static void xbuf_free(struct host *h, struct xbuf *x)
{
    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else {
        h->xbufs = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    ts_free(h->alloc, x, x->size);
}

static void xsend(struct host *h, uint32_t to, uint32_t type, void *handle)
{
    struct xring_msg m = {.type = type, .handle = (uint64_t)(uintptr_t)handle};
    if (h->xq_n == 0) {
        int rc = xring_send(shard_get_mesh(h->shard), h->shard_id, to, &m);
        if (rc == 0) {
            return;
        }
        if (rc == TS_ESHUTDOWN) {
            return; /* the node is stopping: the process frees everything at exit */
        }
    }
    if (!grow(h->alloc, (void **)&h->xq, &h->xq_cap, h->xq_n + 1, sizeof *h->xq)) {
        HOST_LOG(h, ERROR, "shard %u: out of memory queueing a cross-shard message", h->shard_id);
        return;
    }
    h->xq[h->xq_n++] = (struct xout){.to = to, .m = m};
    shard_loop_poke(h->loop);
}

static void xflush(struct host *h)
{
    if (h->xq_n == 0) {
        return;
    }
    uint32_t done = 0;
    while (done < h->xq_n) {
        struct xout *o = &h->xq[done];
        int rc = xring_send(shard_get_mesh(h->shard), h->shard_id, o->to, &o->m);
        if (rc == TS_EFULL) {
            break;
        }
        done++;
    }
    memmove(h->xq, h->xq + done, (size_t)(h->xq_n - done) * sizeof *h->xq);
    h->xq_n -= done;
    if (h->xq_n > 0) {
        shard_loop_poke(h->loop);
    }
}

/* ---- Answers -------------------------------------------------------------------------------- */

static void on_self_answer(struct host *h, uint64_t req_id, const uint8_t *frame, uint32_t len);

static void deliver(struct host *h, struct cref c, const uint8_t *frame, uint32_t len)
{
    if (c.shard == h->shard_id && c.conn == HOST_CONN_SELF) {
        on_self_answer(h, c.req_id, frame, len);
        return;
    }
    if (c.shard == h->shard_id) {
        struct nio_conn *conn = nio_conn_lookup(h->nio, c.conn);
        if (conn != NULL && nio_send(conn, frame, len) != 0) {
            nio_close(conn); /* over its output limit: it is not reading its answers */
        }
        return;
    }
    struct xbuf *x = xbuf_new(h, frame, len, c);
    if (x == NULL) {
        HOST_LOG(h, ERROR, "shard %u: out of memory forwarding an answer", h->shard_id);
        return;
    }
    xsend(h, c.shard, HX_ANSWER, x);
}

static proto_ref leader_hint(struct host *h, uint64_t node)
{
    uint32_t m = member_of_node(h->cl, node);
    if (m == UINT32_MAX) {
        return 0;
    }
    const char *addr = h->cl->m[m].addr;
    proto_ref a = proto_create_string(&h->ans_b, addr, (uint32_t)strlen(addr));
    proto_leader_hint_begin(&h->ans_b);
    proto_leader_hint_add_node_id(&h->ans_b, node);
    proto_leader_hint_add_replica_id(&h->ans_b, node);
    proto_leader_hint_add_address(&h->ans_b, a);
    return proto_leader_hint_end(&h->ans_b);
}

static proto_ref desc_proto(struct host *h, const struct meta_desc *d)
{
    struct proto_builder *b = &h->ans_b;
    struct proto_replica reps[TS_RAFT_MEMBERS_MAX];
    memset(reps, 0, sizeof reps);
    for (uint32_t k = 0; k < d->n; k++) {
        reps[k].node_id = d->rep[k].node_id;
        reps[k].replica_id = d->rep[k].replica_id;
        reps[k].shard = d->rep[k].shard;
    }
    proto_ref rv = proto_create_vector(b, reps, d->n, sizeof reps[0], 8);
    proto_ref sk = d->lo_len > 0 ? proto_create_bytes(b, d->lo, d->lo_len) : 0;
    proto_ref ek = d->hi_len > 0 ? proto_create_bytes(b, d->hi, d->hi_len) : 0;
    struct proto_range_epoch ep = {.generation = d->generation, .conf_version = d->conf_version};
    proto_range_descriptor_begin(b);
    proto_range_descriptor_add_range_id(b, d->range);
    if (sk != 0) {
        proto_range_descriptor_add_start_key(b, sk);
    }
    if (ek != 0) {
        proto_range_descriptor_add_end_key(b, ek);
    }
    proto_range_descriptor_add_epoch(b, &ep);
    proto_range_descriptor_add_replicas(b, rv);
    return proto_range_descriptor_end(b);
}

/* The descriptor an error answer carries. Every node derives it from the layout (the
 * meta range holds the same records: nothing splits, merges or moves yet). */
static proto_ref descriptor(struct host *h, uint64_t range)
{
    struct meta_desc d;
    meta_desc_of_layout(h->cl, h->shards, range, &d);
    return desc_proto(h, &d);
}

/* An answer without an op: an error, with a leader hint (node != 0) or a descriptor
 * (range != 0). */
static void answer_status(struct host *h, struct cref c, uint16_t status, const char *why,
                          uint64_t hint_node, uint64_t range)
{
    (void)kvwire_answer_begin(&h->ans);
    proto_ref hint = hint_node != 0 ? leader_hint(h, hint_node) : 0;
    proto_ref desc = range != 0 ? descriptor(h, range) : 0;
    const uint8_t *frame;
    uint32_t len;
    if (kvwire_finish(&h->ans, c.req_id, status, why, 0, hint, desc, &frame, &len) == 0) {
        deliver(h, c, frame, len);
    }
}

static void answer_not_leader(struct host *h, struct cref c, struct replica *r)
{
    h->stats.not_leader++;
    raft_id leader = raft_leader(r->raft);
    /* NotLeader either way: nothing was proposed, so the client may retry (after a
     * back-off when there is no hint); Unavailable is kept for unknown outcomes. */
    answer_status(h, c, PROTO_STATUS_NOT_LEADER,
                  leader != 0 ? "this node does not lead the range" : "the range has no leader yet",
                  leader, leader != 0 ? r->range : 0);
}

/* ---- Forwarding to the leader's node --------------------------------------------------------- */

#define HOST_ID_VOFF 4u /* Request.id and Response.id: field 0 */

static struct peer *peer_of(struct host *h, uint64_t node)
{
    for (uint32_t i = 0; i < h->peers_n; i++) {
        if (h->peers[i].node == node) {
            return &h->peers[i];
        }
    }
    return NULL;
}

/* Copies the frame into the command buffer with the table's id field (which must be
 * present) replaced. */
static const uint8_t *with_id(struct host *h, const uint8_t *frame, uint32_t len,
                              const uint8_t *tab, uint64_t id)
{
    const uint8_t *field = proto_read_field(tab, HOST_ID_VOFF);
    if (field == NULL || !grow(h->alloc, (void **)&h->cmd, &h->cmd_cap, len, 1)) {
        return NULL;
    }
    memcpy(h->cmd, frame, len);
    uint8_t le[8];
    for (uint32_t i = 0; i < 8; i++) {
        le[i] = (uint8_t)(id >> (8 * i));
    }
    memcpy(h->cmd + (field - frame), le, sizeof le);
    return h->cmd;
}

/* Sends a client's request to the node that leads its range, over this shard's link to
 * it; the answer comes back on the same link (host_on_forward_answer). Returns false
 * when it cannot (no link up, an id-less request, no memory): the caller answers. */
static void fwd_free(struct host *h, struct fwd *f)
{
    ts_free(h->alloc, f->frame, f->len);
    ts_free(h->alloc, f, sizeof *f);
}

static bool forward_hop(struct host *h, struct cref c, const uint8_t *frame, uint32_t len,
                        struct proto_request req, uint64_t node, uint64_t range, uint32_t hops);

static bool forward(struct host *h, struct cref c, const uint8_t *frame, uint32_t len,
                    struct proto_request req, uint64_t node, uint64_t range)
{
    return forward_hop(h, c, frame, len, req, node, range, 0);
}

static bool forward_hop(struct host *h, struct cref c, const uint8_t *frame, uint32_t len,
                        struct proto_request req, uint64_t node, uint64_t range, uint32_t hops)
{
    struct peer *p = peer_of(h, node);
    if (c.from_peer || p == NULL || p->link == NULL || c.req_id == 0) {
        return false;
    }
    struct fwd *f = ts_alloc(h->alloc, sizeof *f);
    if (f == NULL) {
        return false;
    }
    uint8_t *keep = NULL;
    if (h->rep_of[range] < 0 && hops < TS_HOST_FWD_HOPS_MAX) {
        keep = ts_alloc(h->alloc, len);
        if (keep == NULL) {
            ts_free(h->alloc, f, sizeof *f);
            return false;
        }
        memcpy(keep, frame, len);
    }
    uint64_t id = ++h->fwd_next;
    const uint8_t *copy = with_id(h, frame, len, req.tab, id);
    if (copy == NULL || nio_send(p->link, copy, len) != 0 || ts_map64_put(&h->fwds, id, f) != 0) {
        ts_free(h->alloc, keep, len);
        ts_free(h->alloc, f, sizeof *f);
        return false;
    }
    *f = (struct fwd){.c = c,
                      .node = node,
                      .range = range,
                      .frame = keep,
                      .len = keep != NULL ? len : 0,
                      .hops = hops,
                      .deadline_ns = mono_ns() + TS_HOST_FWD_TIMEOUT_NS};
    h->stats.forwarded++;
    return true;
}

void host_on_forward_answer(struct host *h, const uint8_t *frame, uint32_t len,
                            struct proto_response resp)
{
    struct fwd *f = ts_map64_del(&h->fwds, proto_response_id(resp));
    if (f == NULL) {
        return; /* expired, or not ours */
    }
    if (h->rep_of[f->range] < 0) {
        /* Learn where the range's leader is, for the next request this node passes on,
         * and pass this one on once more when the answer names a leader elsewhere. */
        uint16_t st = proto_response_status(resp);
        uint64_t hint = st == PROTO_STATUS_NOT_LEADER
                            ? proto_leader_hint_node_id(proto_response_leader(resp))
                            : 0;
        h->guess[f->range] = st == PROTO_STATUS_OK ? f->node : hint;
        struct proto_message m;
        char why[128];
        if (hint != 0 && hint != f->node && f->frame != NULL &&
            proto_message_decode(f->frame, f->len, true, &m, why, sizeof why) == 0 &&
            forward_hop(h, f->c, f->frame, f->len, proto_message_body_as_request(m), hint, f->range,
                        f->hops + 1)) {
            fwd_free(h, f);
            return;
        }
    }
    const uint8_t *copy = with_id(h, frame, len, resp.tab, f->c.req_id);
    if (copy != NULL) {
        deliver(h, f->c, copy, len);
    }
    fwd_free(h, f);
}

/* Forwarded requests whose answer will not come: past their deadline, or (node != 0)
 * sent to a node whose link dropped. The client is told at once, with a status it
 * retries: the outcome of a forwarded write is unknown, so Unavailable. */
static void fwds_fail(struct host *h, uint64_t now, uint64_t node)
{
    uint64_t dead[64];
    uint32_t n;
    do {
        uint32_t pos = 0;
        uint64_t id;
        void *v;
        n = 0;
        while (n < 64 && ts_map64_next(&h->fwds, &pos, &id, &v)) {
            const struct fwd *f = v;
            if (node != 0 ? f->node == node : f->deadline_ns < now) {
                dead[n++] = id;
            }
        }
        for (uint32_t i = 0; i < n; i++) {
            struct fwd *f = ts_map64_del(&h->fwds, dead[i]);
            answer_status(h, f->c, PROTO_STATUS_UNAVAILABLE,
                          node != 0 ? "the link to the leader's node dropped; the request may "
                                      "or may not have been applied"
                                    : "the leader's node did not answer the forwarded request",
                          0, 0);
            fwd_free(h, f);
        }
    } while (n == 64);
}

void host_on_peer_down(struct host *h, struct nio_conn *c)
{
    for (uint32_t i = 0; i < h->peers_n; i++) {
        if (h->peers[i].link == c) {
            fwds_fail(h, 0, h->peers[i].node);
        }
    }
}

/* ---- Proposals and reads waiting --------------------------------------------------------- */

static bool prop_push(struct host *h, struct replica *r, struct prop p)
{
    if (r->props_n == r->props_cap) {
        uint32_t cap = r->props_cap == 0 ? 64 : 2 * r->props_cap;
        struct prop *q = ts_alloc(h->alloc, (size_t)cap * sizeof *q);
        if (q == NULL) {
            return false;
        }
        for (uint32_t i = 0; i < r->props_n; i++) {
            q[i] = r->props[(r->props_head + i) % r->props_cap];
        }
        ts_free(h->alloc, r->props, (size_t)r->props_cap * sizeof *r->props);
        r->props = q;
        r->props_cap = cap;
        r->props_head = 0;
    }
    r->props[(r->props_head + r->props_n) % r->props_cap] = p;
    r->props_n++;
    return true;
}

static struct prop *prop_front(struct replica *r)
{
    return r->props_n == 0 ? NULL : &r->props[r->props_head];
}

static void prop_pop(struct replica *r)
{
    TS_ASSERT(r->props_n > 0);
    r->props_head = (r->props_head + 1) % r->props_cap;
    r->props_n--;
}

/* Fails every proposal still waiting (leadership lost): the entry may yet commit under
 * the next leader, so the outcome is unknown, never reported as success. */
static void props_fail(struct host *h, struct replica *r)
{
    while (r->props_n > 0) {
        struct prop *p = prop_front(r);
        answer_status(h, p->c, PROTO_STATUS_UNAVAILABLE,
                      "leadership changed before the write was applied; it may or may not "
                      "have been applied",
                      raft_leader(r->raft), 0);
        prop_pop(r);
    }
}

static void read_drop(struct host *h, struct replica *r, uint32_t i)
{
    ts_free(h->alloc, r->reads[i].frame, r->reads[i].len);
    r->reads[i] = r->reads[--r->reads_n];
}

static void mark_dirty(struct host *h, struct replica *r)
{
    if (!r->dirty) {
        r->dirty = true;
        h->dirty[h->dirty_n++] = r;
    }
}

/* Answers a proposal raft (or the encoding before it) refused. */
static void propose_failed(struct host *h, struct replica *r, struct cref c, int rc)
{
    switch (rc) {
    case TS_ENOTLEADER:
        answer_not_leader(h, c, r);
        return;
    case TS_EFULL:
        answer_status(h, c, PROTO_STATUS_TOO_MANY_REQUESTS,
                      "the range has too many uncommitted writes; retry later", 0, 0);
        return;
    case TS_ETOOBIG:
        answer_status(h, c, PROTO_STATUS_VALUE_TOO_LARGE, "the command is larger than an entry", 0,
                      0);
        return;
    case TS_EUNAVAIL:
        answer_status(h, c, PROTO_STATUS_UNAVAILABLE, "the range's leadership is moving", 0, 0);
        return;
    default:
        answer_status(h, c, PROTO_STATUS_INTERNAL, ts_strerror(rc), 0, 0);
        return;
    }
}

/* Proposes an encoded command and tracks it until its entry applies. */
static void propose_entry(struct host *h, struct replica *r, struct cref c, const uint8_t *cmd,
                          uint32_t len)
{
    TS_DASSERT(!r->readied);
    if (h->stopping) {
        answer_status(h, c, PROTO_STATUS_UNAVAILABLE, "the node is shutting down", 0, 0);
        return;
    }
    raft_index index = 0;
    int rc = raft_propose(r->raft, cmd, len, &index);
    if (rc != 0) {
        propose_failed(h, r, c, rc);
        return;
    }
    h->stats.proposals++;
    if (!prop_push(h, r, (struct prop){.index = index, .term = raft_term_of(r->raft), .c = c})) {
        /* The entry is in: it applies, but its answer cannot be tracked. */
        answer_status(h, c, PROTO_STATUS_UNAVAILABLE,
                      "out of memory: the write may or may not be applied", 0, 0);
    }
    mark_dirty(h, r);
}

static void read_index_failed(struct host *h, struct replica *r, struct cref c, int rc)
{
    if (rc == TS_ENOTLEADER) {
        answer_not_leader(h, c, r);
    } else {
        answer_status(h, c,
                      rc == TS_EFULL ? PROTO_STATUS_TOO_MANY_REQUESTS : PROTO_STATUS_UNAVAILABLE,
                      ts_strerror(rc), 0, 0);
    }
}

/* ---- Held inputs ------------------------------------------------------------------------------
 *
 * While a group's ready is out (its records are on their way to the disk), its raft
 * instance takes no mutating call (raft.h, contract 3). What would make one is held, in
 * arrival order, in the group's `held` buffer and replayed right after raft_advance
 * (advance()). Each item is a struct held, then its payload, padded to 8 bytes:
 *   HELD_STEP         the message's entries (struct raft_entry, data pointers cleared),
 *                     its snapshot metadata if any, then the entries' data in order: a
 *                     message given to raft_step is a view into a frame (contract 4);
 *   HELD_PROPOSE      the command, encoded when the request arrived;
 *   HELD_READ         none: the read waits in the group's reads under its ctx;
 *   HELD_TICK, HELD_WAKE, HELD_SNAP_FAILED  none.
 * Read-only calls (role, leader, lease, commit index) go on meanwhile.
 */
enum held_kind {
    HELD_STEP = 1,
    HELD_PROPOSE = 2,
    HELD_READ = 3,
    HELD_TICK = 4,
    HELD_WAKE = 5,
    HELD_SNAP_FAILED = 6,
};

struct held {
    uint32_t kind;  /* enum held_kind */
    uint32_t bytes; /* the whole item, a multiple of 8 */
    bool has_snapshot;
    union {
        struct raft_message m; /* STEP: entries and snapshot are set at replay */
        struct {
            struct cref c;
            uint32_t len;
        } prop;       /* PROPOSE */
        uint64_t ctx; /* READ */
        raft_id peer; /* SNAP_FAILED */
    } u;
};

_Static_assert(sizeof(struct held) % 8 == 0, "held items stay aligned");
_Static_assert(sizeof(struct raft_entry) % 8 == 0, "held entries stay aligned");
_Static_assert(sizeof(struct raft_snapshot_meta) % 8 == 0, "held metadata stays aligned");

/* A held buffer this large is freed once replayed rather than kept for the next ready. */
#define HOST_HELD_KEEP_BYTES (256u * 1024u)

/* Room for one item with `payload` bytes after its header; NULL when the group holds
 * TS_HOST_HELD_BYTES_MAX already (`limited`) or memory runs out. */
static struct held *hold(struct host *h, struct replica *r, uint32_t kind, size_t payload,
                         bool limited)
{
    TS_DASSERT(r->readied);
    size_t bytes = (sizeof(struct held) + payload + 7u) & ~(size_t)7u;
    size_t need = (size_t)r->held_len + bytes;
    if ((limited && need > TS_HOST_HELD_BYTES_MAX) || need > UINT32_MAX ||
        !grow(h->alloc, (void **)&r->held, &r->held_cap, (uint32_t)need, 1)) {
        return NULL;
    }
    struct held *it = (struct held *)(void *)(r->held + r->held_len);
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->bytes = (uint32_t)bytes;
    r->held_len = (uint32_t)need;
    return it;
}

/* Holds a message for raft_step; false when it is dropped (raft resends). */
static bool hold_step(struct host *h, struct replica *r, const struct raft_message *m)
{
    size_t data = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        data += m->entries[i].len;
    }
    size_t snap = m->snapshot != NULL ? sizeof *m->snapshot : 0;
    struct held *it =
        hold(h, r, HELD_STEP, (size_t)m->n_entries * sizeof(struct raft_entry) + snap + data, true);
    if (it == NULL) {
        return false;
    }
    it->u.m = *m;
    it->u.m.entries = NULL;
    it->u.m.snapshot = NULL;
    it->has_snapshot = m->snapshot != NULL;
    struct raft_entry *e = (struct raft_entry *)(void *)(it + 1);
    uint8_t *p = (uint8_t *)(e + m->n_entries);
    if (snap > 0) {
        memcpy(p, m->snapshot, snap);
        p += snap;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        e[i] = m->entries[i];
        e[i].data = NULL;
        if (m->entries[i].len > 0) {
            memcpy(p, m->entries[i].data, m->entries[i].len);
            p += m->entries[i].len;
        }
    }
    return true;
}

static void hold_simple(struct host *h, struct replica *r, uint32_t kind, raft_id peer)
{
    if (kind == HELD_TICK) {
        r->held_ticks++;
    }
    struct held *it = hold(h, r, kind, 0, false);
    if (it == NULL) {
        /* Out of memory: a tick is still counted and given after the replay (raft's
         * clock must not fall behind: the lease counts on it); a lost wake is made up by
         * the next; a lost failure report by raft's snapshot timeout. */
        r->lost_ticks += kind == HELD_TICK ? 1u : 0u;
        HOST_LOG(h, ERROR, "shard %u: range %llu: out of memory holding an input (dropped)",
                 h->shard_id, (unsigned long long)r->range);
        return;
    }
    it->u.peer = peer;
}

/* The inputs held while the ready was out, in their order; right after raft_advance. */
static void held_replay(struct host *h, struct replica *r)
{
    TS_DASSERT(!r->readied);
    for (uint32_t at = 0; at < r->held_len;) {
        struct held *it = (struct held *)(void *)(r->held + at);
        at += it->bytes;
        uint8_t *p = (uint8_t *)(it + 1);
        int rc = 0;
        switch (it->kind) {
        case HELD_STEP: {
            struct raft_message m = it->u.m;
            struct raft_entry *e = (struct raft_entry *)(void *)p;
            p = (uint8_t *)(e + m.n_entries);
            m.entries = m.n_entries > 0 ? e : NULL;
            if (it->has_snapshot) {
                m.snapshot = (const struct raft_snapshot_meta *)(void *)p;
                p += sizeof *m.snapshot;
                if (r->recv != NULL) {
                    r->recv->held = false;
                }
            }
            for (uint32_t i = 0; i < m.n_entries; i++) {
                e[i].data = e[i].len > 0 ? p : NULL;
                p += e[i].len;
            }
            rc = raft_step(r->raft, &m);
            if (rc != 0 && rc != TS_EPROTO) {
                HOST_LOG(h, WARN, "shard %u: range %llu: a raft message was dropped: %s",
                         h->shard_id, (unsigned long long)r->range, ts_strerror(rc));
            }
            break;
        }
        case HELD_PROPOSE:
            propose_entry(h, r, it->u.prop.c, p, it->u.prop.len);
            break;
        case HELD_READ:
            rc = raft_read_index(r->raft, it->u.ctx);
            for (uint32_t j = 0; rc != 0 && j < r->reads_n; j++) {
                if (r->reads[j].ctx == it->u.ctx) {
                    read_index_failed(h, r, r->reads[j].c, rc);
                    read_drop(h, r, j);
                    break;
                }
            }
            break;
        case HELD_TICK:
            raft_tick(r->raft);
            break;
        case HELD_WAKE:
            raft_wake(r->raft);
            break;
        case HELD_SNAP_FAILED:
            raft_report_snapshot(r->raft, it->u.peer, true);
            break;
        default:
            TS_ASSERT(false);
        }
    }
    for (; r->lost_ticks > 0; r->lost_ticks--) {
        raft_tick(r->raft);
    }
    r->held_len = 0;
    r->held_ticks = 0;
    if (r->held_cap > HOST_HELD_KEEP_BYTES) {
        ts_free(h->alloc, r->held, r->held_cap);
        r->held = NULL;
        r->held_cap = 0;
    }
}

/* raft_tick, raft_wake and raft_report_snapshot(failed), or their held form. */
static void group_tick(struct host *h, struct replica *r)
{
    if (r->readied) {
        hold_simple(h, r, HELD_TICK, 0);
    } else {
        raft_tick(r->raft);
    }
    mark_dirty(h, r);
}

static void group_wake(struct host *h, struct replica *r)
{
    if (r->readied) {
        hold_simple(h, r, HELD_WAKE, 0);
    } else {
        raft_wake(r->raft);
    }
    mark_dirty(h, r);
}

static void group_snapshot_failed(struct host *h, struct replica *r, raft_id peer)
{
    if (r->readied) {
        hold_simple(h, r, HELD_SNAP_FAILED, peer);
    } else {
        raft_report_snapshot(r->raft, peer, true);
    }
    mark_dirty(h, r);
}

/* ---- Serving reads ------------------------------------------------------------------------ */

static void serve_meta_read(struct host *h, struct replica *r, struct cref c,
                            const struct kvwire_req *q);

static void serve_read(struct host *h, struct replica *r, struct cref c, const struct kvwire_req *q)
{
    if (q->kind == KVWIRE_MEMBERS || q->kind == KVWIRE_ROUTE) {
        serve_meta_read(h, r, c, q);
        return;
    }
    const struct kv_op *op = &q->op;
    struct kv_sink sink = kvwire_answer_begin(&h->ans);
    struct kv_range kr = kv_range_of(r);
    struct kv_result res;
    int rc = kv_read(&h->store, &kr, &r->st, op, h->scratch, TS_KV_SCRATCH_BYTES, &sink, &res);
    const uint8_t *frame;
    uint32_t len;
    if (rc < 0) {
        HOST_LOG(h, ERROR, "shard %u: range %llu: read failed: %s", h->shard_id,
                 (unsigned long long)r->range, store_why(h, rc));
        answer_status(h, c, PROTO_STATUS_INTERNAL, "the node could not read its store", 0, 0);
        return;
    }
    uint16_t st = kvwire_status((enum kv_status)res.status);
    const char *why = st == PROTO_STATUS_OK ? NULL : kv_status_name((enum kv_status)res.status);
    proto_ref desc = st == PROTO_STATUS_RANGE_NOT_FOUND ? descriptor(h, r->range) : 0;
    if (kvwire_finish(&h->ans, c.req_id, st, why, res.rev, 0, desc, &frame, &len) == 0) {
        deliver(h, c, frame, len);
    }
}

/* Serves the waiting reads whose index has been applied. */
static void reads_run(struct host *h, struct replica *r)
{
    for (uint32_t i = 0; i < r->reads_n;) {
        struct pread *p = &r->reads[i];
        if (!p->has_index || p->index > r->st.applied_index) {
            i++;
            continue;
        }
        struct proto_message m;
        char why[128];
        int rc = proto_message_decode(p->frame, p->len, true, &m, why, sizeof why);
        TS_ASSERT(rc == 0); /* verified when it arrived */
        struct kvwire_req kr;
        const char *w;
        rc = kvwire_parse(proto_message_body_as_request(m), h->txn, &kr, &w);
        TS_ASSERT(rc == 0);
        h->stats.reads_index++;
        serve_read(h, r, p->c, &kr);
        read_drop(h, r, i);
    }
}

/* ---- Apply ----------------------------------------------------------------------------------- */

static void apply_meta(struct host *h, struct replica *r, const struct raft_entry *e,
                       const struct prop *p);

static void apply_entry(struct host *h, struct replica *r, const struct raft_entry *e)
{
    struct prop *p = prop_front(r);
    while (p != NULL && (p->index < e->index || (p->index == e->index && p->term != e->term))) {
        /* Its entry was replaced by another leader's: it was never applied. */
        answer_status(h, p->c, PROTO_STATUS_UNAVAILABLE,
                      "leadership changed and the write was not applied", raft_leader(r->raft), 0);
        prop_pop(r);
        p = prop_front(r);
    }
    bool mine = p != NULL && p->index == e->index && p->term == e->term;
    if (e->type == RAFT_ENTRY_CONF) {
        r->conf_changed = true;
        return;
    }
    if (e->len == 0) {
        return; /* a new leader's no-op */
    }
    if (meta_is_cmd(e->data, e->len)) {
        apply_meta(h, r, e, mine ? p : NULL);
        if (mine) {
            prop_pop(r);
        }
        return;
    }
    struct kv_sink sink = mine ? kvwire_answer_begin(&h->ans) : (struct kv_sink){0};
    struct kv_range kr = kv_range_of(r);
    struct kv_result res;
    int rc = kv_apply(&h->store, &kr, e->data, e->len, &r->st, h->scratch, TS_KV_SCRATCH_BYTES,
                      mine ? &sink : NULL, &res);
    if (rc < 0) {
        /* The store failed: stop this node rather than diverge (the log replays it). */
        HOST_LOG(h, ERROR, "shard %u: range %llu: applying entry %llu failed: %s; stopping",
                 h->shard_id, (unsigned long long)r->range, (unsigned long long)e->index,
                 store_why(h, rc));
        h->failed = true;
        (void)shard_node_stop(shard_get_node(h->shard));
        return;
    }
    h->stats.applied++;
    h->applied_since_ckpt++;
    if (mine) {
        uint16_t st = kvwire_status((enum kv_status)res.status);
        const char *why = st == PROTO_STATUS_OK ? NULL : kv_status_name((enum kv_status)res.status);
        proto_ref desc = st == PROTO_STATUS_RANGE_NOT_FOUND ? descriptor(h, r->range) : 0;
        const uint8_t *frame;
        uint32_t len;
        if (kvwire_finish(&h->ans, p->c.req_id, st, why, res.rev, 0, desc, &frame, &len) == 0) {
            deliver(h, p->c, frame, len);
        }
        prop_pop(r);
    }
}

static int save_conf(struct host *h, struct replica *r)
{
    uint8_t buf[RAFT_CONF_ENCODED_BYTES_MAX];
    uint32_t n = raft_conf_encode(raft_conf_of(r->raft), buf);
    TS_ASSERT(n <= sizeof buf);
    return kv_range_blob_save(&h->store, r->range, HOST_CONF_BLOB, buf, n);
}

/* ---- Raft frames ------------------------------------------------------------------------------
 */

static void msgq_add(struct host *h, const struct raft_message *m, size_t n)
{
    if (!grow(h->alloc, (void **)&h->msgq, &h->msgq_cap, h->msgq_n + (uint32_t)n,
              sizeof *h->msgq)) {
        HOST_LOG(h, ERROR, "shard %u: out of memory queueing raft messages (dropped)", h->shard_id);
        return; /* raft resends */
    }
    for (size_t i = 0; i < n; i++) {
        h->msgq[h->msgq_n++] = &m[i];
    }
}

/* Sends a peer message (a Message with the given body) on this shard's link to node. */
static bool send_body(struct host *h, uint64_t node, uint8_t type, proto_ref body)
{
    struct proto_builder *b = &h->out_b;
    proto_message_begin(b);
    proto_message_add_body(b, type, body);
    proto_ref msg = proto_message_end(b);
    const uint8_t *frame;
    uint32_t len;
    struct peer *p = peer_of(h, node);
    if (proto_message_finish(b, msg, true, &frame, &len) != 0 || p == NULL || p->link == NULL) {
        return false;
    }
    if (nio_send(p->link, frame, len) != 0) {
        return false;
    }
    p->sent = true;
    h->stats.frames_out++;
    return true;
}

/* One RaftBatch to p: the queued messages for it from `first` on (any), or none (a
 * keep-alive). Nothing is sent when `any` finds no message for p. Heartbeats and their
 * answers are coalesced: one fixed-size struct per group (peer_codec.h), the other
 * messages are tables. A frame that cannot be built or queued is dropped: raft resends
 * what matters. */
static void send_frame(struct host *h, struct peer *p, uint32_t first, bool any)
{
    struct proto_builder *b = &h->out_b;
    proto_builder_reset(b);
    uint32_t n = 0, nh = 0, na = 0;
    for (uint32_t i = first; any && i < h->msgq_n; i++) {
        const struct raft_message *m = h->msgq[i];
        if (m->to != p->node || m->type == RAFT_MSG_SNAPSHOT) {
            continue;
        }
        if (peer_heartbeat_compact(m) && m->type == RAFT_MSG_HEARTBEAT) {
            if (grow(h->alloc, (void **)&h->hbs, &h->hbs_cap, nh + 1, sizeof *h->hbs)) {
                h->hbs[nh++] = peer_heartbeat_encode(m);
            }
            continue;
        }
        if (peer_heartbeat_compact(m)) {
            if (grow(h->alloc, (void **)&h->acks, &h->acks_cap, na + 1, sizeof *h->acks)) {
                h->acks[na++] = peer_heartbeat_ack_encode(m);
            }
            continue;
        }
        if (!grow(h->alloc, (void **)&h->refs, &h->refs_cap, n + 1, sizeof *h->refs)) {
            break;
        }
        h->refs[n++] = peer_encode_raft_message(b, m);
    }
    if (any && n + nh + na == 0) {
        return;
    }
    h->stats.messages_out += n;
    h->stats.heartbeats_out += nh + na;
    proto_ref vec = n > 0 ? proto_create_vec_ref(b, h->refs, n) : 0;
    proto_ref hv = nh > 0 ? proto_heartbeat_vec_create(b, h->hbs, nh) : 0;
    proto_ref av = na > 0 ? proto_heartbeat_ack_vec_create(b, h->acks, na) : 0;
    proto_raft_batch_begin(b);
    proto_raft_batch_add_from_node(b, h->cl->self);
    proto_raft_batch_add_to_node(b, p->node);
    proto_raft_batch_add_cluster_id(b, h->cl->cluster_id);
    if (vec != 0) {
        proto_raft_batch_add_messages(b, vec);
    }
    if (hv != 0) {
        proto_raft_batch_add_heartbeats(b, hv);
    }
    if (av != 0) {
        proto_raft_batch_add_heartbeat_acks(b, av);
    }
    (void)send_body(h, p->node, PROTO_BODY_RAFT_BATCH, proto_raft_batch_end(b));
}

/* Sends the queued messages from `first` on, one frame per peer node. */
static void msgq_flush(struct host *h, uint32_t first)
{
    for (uint32_t i = 0; i < h->peers_n && first < h->msgq_n; i++) {
        send_frame(h, &h->peers[i], first, true);
    }
}

/* ---- Snapshots ----------------------------------------------------------------------------------
 */

static struct replica *replica_of(struct host *h, uint64_t range);
static int log_covers_tree(struct host *h);

static void send_free(struct host *h, struct replica *r)
{
    struct snap_send *ss = r->send;
    if (ss != NULL) {
        btree_snapshot_close(ss->snap);
        ts_free(h->alloc, ss, sizeof *ss);
        r->send = NULL;
    }
}

static void recv_free(struct host *h, struct replica *r)
{
    struct snap_recv *rv = r->recv;
    if (rv != NULL) {
        ts_free(h->alloc, rv->buf, rv->cap);
        ts_free(h->alloc, rv, sizeof *rv);
        r->recv = NULL;
    }
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (uint32_t i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fills h->chunk with the next records of the snapshot; returns its length or an error. */
static int64_t snap_fill(struct host *h, struct replica *r, struct snap_send *ss)
{
    struct kv_range kr = kv_range_of(r);
    struct kv_span sp[2];
    kv_range_spans(&kr, sp);
    uint64_t n = 0;
    while (ss->span < 2) {
        const struct kv_span *span = &sp[ss->span];
        const uint8_t *from = ss->positioned ? ss->next : span->lo;
        uint32_t from_len = ss->positioned ? ss->next_len : span->lo_len;
        int rc = btree_snapshot_seek(&ss->cur, ss->snap, from, from_len);
        while (rc == 0) {
            const uint8_t *k;
            uint32_t kl;
            btree_cursor_key(&ss->cur, &k, &kl);
            if (key_cmp(k, kl, span->hi, span->hi_len) >= 0) {
                rc = TS_ENOTFOUND;
                break;
            }
            uint32_t vl = 0;
            uint8_t kcopy[KV_SPAN_KEY_BYTES];
            TS_ASSERT(kl <= sizeof kcopy);
            memcpy(kcopy, k, kl);
            rc = btree_cursor_value(&ss->cur, h->scratch, TS_KV_SCRATCH_BYTES, &vl);
            if (rc != 0) {
                return rc;
            }
            uint64_t size = 8u + kl + vl;
            if (n > 0 && n + size > TS_HOST_SNAPSHOT_CHUNK_BYTES) {
                memcpy(ss->next, kcopy, kl); /* the next chunk starts here */
                ss->next_len = kl;
                ss->positioned = true;
                return (int64_t)n;
            }
            put_u32(h->chunk + n, kl);
            memcpy(h->chunk + n + 4, kcopy, kl);
            put_u32(h->chunk + n + 4 + kl, vl);
            memcpy(h->chunk + n + 8 + kl, h->scratch, vl);
            n += size;
            rc = btree_cursor_next(&ss->cur);
        }
        if (rc != TS_ENOTFOUND) {
            return rc;
        }
        ss->span++;
        ss->positioned = false;
    }
    return (int64_t)n;
}

/* Sends the chunk after the last acknowledged one. Returns false when it cannot. */
static bool snap_send_chunk(struct host *h, struct replica *r)
{
    struct snap_send *ss = r->send;
    int64_t n = snap_fill(h, r, ss);
    if (n < 0) {
        HOST_LOG(h, ERROR, "shard %u: range %llu: reading the snapshot failed: %s", h->shard_id,
                 (unsigned long long)r->range, store_why(h, (int)n));
        return false;
    }
    struct proto_builder *b = &h->out_b;
    proto_builder_reset(b);
    proto_ref data = proto_create_bytes(b, h->chunk, (uint32_t)n);
    proto_ref meta = peer_encode_snapshot_meta(b, &ss->meta);
    ss->last_sent = ss->span >= 2;
    proto_snapshot_chunk_begin(b);
    proto_snapshot_chunk_add_group_id(b, r->range);
    proto_snapshot_chunk_add_from(b, h->cl->self);
    proto_snapshot_chunk_add_to(b, ss->to);
    proto_snapshot_chunk_add_term(b, ss->term);
    proto_snapshot_chunk_add_snapshot(b, meta);
    proto_snapshot_chunk_add_seq(b, ss->seq);
    proto_snapshot_chunk_add_offset(b, ss->offset);
    proto_snapshot_chunk_add_data(b, data);
    proto_snapshot_chunk_add_last(b, ss->last_sent);
    proto_ref chunk = proto_snapshot_chunk_end(b);
    ss->offset += (uint64_t)n;
    ss->deadline_ns = mono_ns() + TS_HOST_SNAPSHOT_ACK_TIMEOUT_NS;
    return send_body(h, ss->to, PROTO_BODY_SNAPSHOT_CHUNK, chunk);
}

/* raft asked for a snapshot to `m->to`: checkpoint, pin, stream. Inside a ready: a
 * failure is reported to raft after raft_advance (snap_failed). */
static void snap_start(struct host *h, struct replica *r, const struct raft_message *m)
{
    if (r->send != NULL || m->snapshot->index != r->st.applied_index) {
        r->snap_failed = m->to; /* one at a time; raft retries */
        return;
    }
    int rc = log_covers_tree(h);
    if (rc != 0) {
        r->snap_failed = m->to;
        return;
    }
    rc = btree_checkpoint(h->tree, "tessera", 7);
    struct snap_send *ss = rc == 0 ? ts_alloc(h->alloc, sizeof *ss) : NULL;
    if (ss == NULL) {
        HOST_LOG(h, WARN, "shard %u: range %llu: cannot start a snapshot: %s", h->shard_id,
                 (unsigned long long)r->range, ts_strerror(rc != 0 ? rc : TS_ENOMEM));
        r->snap_failed = m->to;
        return;
    }
    memset(ss, 0, sizeof *ss);
    rc = btree_snapshot_open(h->tree, &ss->snap);
    if (rc != 0) {
        ts_free(h->alloc, ss, sizeof *ss);
        r->snap_failed = m->to;
        return;
    }
    ss->to = m->to;
    ss->term = m->term;
    ss->meta = *m->snapshot;
    r->send = ss;
    h->stats.checkpoints++;
    HOST_LOG(h, INFO, "shard %u: range %llu: streaming a snapshot at index %llu to node %llu",
             h->shard_id, (unsigned long long)r->range, (unsigned long long)ss->meta.index,
             (unsigned long long)m->to);
    if (!snap_send_chunk(h, r)) {
        send_free(h, r);
        r->snap_failed = m->to;
    }
}

static void snap_ack(struct host *h, struct replica *r, uint64_t node, uint32_t seq,
                     uint16_t status)
{
    struct proto_builder *b = &h->out_b;
    proto_builder_reset(b);
    proto_snapshot_chunk_ack_begin(b);
    proto_snapshot_chunk_ack_add_group_id(b, r->range);
    proto_snapshot_chunk_ack_add_from(b, h->cl->self);
    proto_snapshot_chunk_ack_add_to(b, node);
    proto_snapshot_chunk_ack_add_seq(b, seq);
    if (status != PROTO_STATUS_OK) {
        proto_snapshot_chunk_ack_add_status(b, status);
    }
    (void)send_body(h, node, PROTO_BODY_SNAPSHOT_CHUNK_ACK, proto_snapshot_chunk_ack_end(b));
}

static void on_snapshot_ack(struct host *h, struct proto_snapshot_chunk_ack a)
{
    struct replica *r = replica_of(h, proto_snapshot_chunk_ack_group_id(a));
    struct snap_send *ss = r != NULL ? r->send : NULL;
    if (ss == NULL || proto_snapshot_chunk_ack_from(a) != ss->to ||
        proto_snapshot_chunk_ack_seq(a) != ss->seq) {
        return; /* stale */
    }
    bool ok = proto_snapshot_chunk_ack_status(a) == PROTO_STATUS_OK;
    if (ok && !ss->last_sent) {
        ss->seq++;
        if (snap_send_chunk(h, r)) {
            return;
        }
        ok = false;
    }
    raft_id to = ss->to;
    send_free(h, r);
    if (!ok) {
        group_snapshot_failed(h, r, to);
    }
}

/* Checks that a snapshot's records are well formed and lie in the range's spans. */
static bool snap_valid(const struct replica *r, const uint8_t *p, size_t len)
{
    struct kv_range kr = kv_range_of(r);
    struct kv_span sp[2];
    kv_range_spans(&kr, sp);
    size_t at = 0;
    while (at < len) {
        if (len - at < 4) {
            return false;
        }
        uint32_t kl = get_u32(p + at);
        if (kl == 0 || kl > KV_SPAN_KEY_BYTES || len - at - 4 < (size_t)kl + 4) {
            return false;
        }
        const uint8_t *k = p + at + 4;
        uint32_t vl = get_u32(p + at + 4 + kl);
        if (vl > TS_VALUE_BYTES_MAX || len - at - 8 - kl < vl) {
            return false;
        }
        bool in = false;
        for (uint32_t i = 0; i < 2; i++) {
            in = in || (key_cmp(k, kl, sp[i].lo, sp[i].lo_len) >= 0 &&
                        key_cmp(k, kl, sp[i].hi, sp[i].hi_len) < 0);
        }
        if (!in) {
            return false;
        }
        at += 8u + kl + vl;
    }
    return true;
}

static bool recv_append(struct host *h, struct snap_recv *rv, struct proto_bytes d)
{
    size_t need = rv->len + d.len;
    if (need > rv->cap) {
        size_t cap = rv->cap == 0 ? 65536 : rv->cap;
        while (cap < need) {
            cap *= 2;
        }
        uint8_t *nb = ts_realloc(h->alloc, rv->buf, rv->cap, cap);
        if (nb == NULL) {
            return false;
        }
        rv->buf = nb;
        rv->cap = cap;
    }
    memcpy(rv->buf + rv->len, d.data, d.len);
    rv->len = need;
    return true;
}

static void on_snapshot_chunk(struct host *h, struct proto_snapshot_chunk c)
{
    struct replica *r = replica_of(h, proto_snapshot_chunk_group_id(c));
    uint64_t from = proto_snapshot_chunk_from(c);
    uint32_t seq = proto_snapshot_chunk_seq(c);
    if (r == NULL || proto_snapshot_chunk_to(c) != h->cl->self) {
        return;
    }
    if (seq == 0) {
        if (r->recv != NULL && r->recv->held) {
            /* The last one waits for its step: the leader retries after this refusal. */
            snap_ack(h, r, from, seq, PROTO_STATUS_UNAVAILABLE);
            return;
        }
        recv_free(h, r);
        struct snap_recv *nrv = ts_alloc(h->alloc, sizeof *nrv);
        if (nrv == NULL) {
            snap_ack(h, r, from, seq, PROTO_STATUS_UNAVAILABLE);
            return;
        }
        memset(nrv, 0, sizeof *nrv);
        nrv->from = from;
        nrv->term = proto_snapshot_chunk_term(c);
        r->recv = nrv;
        if (peer_decode_snapshot_meta(proto_snapshot_chunk_snapshot(c), &nrv->meta) != 0) {
            recv_free(h, r);
            snap_ack(h, r, from, seq, PROTO_STATUS_MALFORMED_FRAME);
            return;
        }
    }
    struct snap_recv *rv = r->recv;
    if (rv == NULL || rv->from != from || rv->next_seq != seq || rv->complete) {
        snap_ack(h, r, from, seq, PROTO_STATUS_INVALID_ARGUMENT);
        return;
    }
    struct proto_bytes d = proto_snapshot_chunk_data(c);
    if (rv->len + d.len > TS_HOST_SNAPSHOT_BYTES_MAX || !recv_append(h, rv, d)) {
        recv_free(h, r);
        snap_ack(h, r, from, seq, PROTO_STATUS_NO_SPACE);
        return;
    }
    rv->next_seq++;
    rv->deadline_ns = mono_ns() + TS_HOST_SNAPSHOT_RECV_TIMEOUT_NS;
    if (!proto_snapshot_chunk_last(c)) {
        snap_ack(h, r, from, seq, PROTO_STATUS_OK);
        return;
    }
    if (!snap_valid(r, rv->buf, rv->len)) {
        HOST_LOG(h, WARN, "shard %u: range %llu: a malformed snapshot from node %llu refused",
                 h->shard_id, (unsigned long long)r->range, (unsigned long long)from);
        recv_free(h, r);
        snap_ack(h, r, from, seq, PROTO_STATUS_MALFORMED_FRAME);
        return;
    }
    rv->complete = true;
    snap_ack(h, r, from, seq, PROTO_STATUS_OK);
    struct raft_message m = {.group_id = r->range,
                             .type = RAFT_MSG_SNAPSHOT,
                             .from = from,
                             .to = h->cl->self,
                             .term = rv->term,
                             .snapshot = &rv->meta};
    int rc = 0;
    if (r->readied) {
        rv->held = hold_step(h, r, &m);
        rc = rv->held ? 0 : TS_EFULL; /* not taken: the leader's timeout retries */
    } else {
        rc = raft_step(r->raft, &m);
    }
    if (rc != 0) {
        HOST_LOG(h, WARN, "shard %u: range %llu: the snapshot was not taken: %s", h->shard_id,
                 (unsigned long long)r->range, ts_strerror(rc));
    }
    mark_dirty(h, r);
}

/* raft asked to install the snapshot received: replace the range's keys, make the tree
 * durable, then record the snapshot in the log (in this order: see above). */
static int snap_install(struct host *h, struct replica *r, const struct raft_snapshot_meta *meta)
{
    struct snap_recv *rv = r->recv;
    if (rv == NULL || !rv->complete || rv->meta.index != meta->index) {
        return TS_EINVAL;
    }
    struct kv_range kr = kv_range_of(r);
    int rc = kv_range_clear(&h->store, &kr, NULL);
    for (size_t at = 0; rc == 0 && at < rv->len;) {
        uint32_t kl = get_u32(rv->buf + at);
        uint32_t vl = get_u32(rv->buf + at + 4 + kl);
        rc = btree_put(h->tree, rv->buf + at + 4, kl, rv->buf + at + 8 + kl, vl);
        at += 8u + kl + vl;
    }
    if (rc == 0) {
        rc = kv_range_state_load(&h->store, r->range, &r->st);
        if (rc == TS_ENOTFOUND) {
            memset(&r->st, 0, sizeof r->st);
            rc = 0;
        }
    }
    if (rc == 0) {
        r->st.applied_index = meta->index;
        r->st.applied_term = meta->term;
        rc = kv_range_state_save(&h->store, r->range, &r->st);
    }
    uint8_t cbuf[RAFT_CONF_ENCODED_BYTES_MAX];
    if (rc == 0) {
        uint32_t n = raft_conf_encode(&meta->conf, cbuf);
        rc = kv_range_blob_save(&h->store, r->range, HOST_CONF_BLOB, cbuf, n);
    }
    if (rc == 0) {
        rc = log_covers_tree(h); /* the checkpoint holds the other groups' applies too */
    }
    if (rc == 0) {
        rc = btree_checkpoint(h->tree, "tessera", 7);
    }
    if (rc == 0) {
        rc = wal_snapshot(h->wal, r->range, meta->index, meta->term);
    }
    if (rc == 0) {
        HOST_LOG(h, INFO, "shard %u: range %llu: installed a snapshot at index %llu (%zu bytes)",
                 h->shard_id, (unsigned long long)r->range, (unsigned long long)meta->index,
                 rv->len);
        recv_free(h, r);
    }
    return rc;
}

/* Snapshots whose peer went quiet. Outside any ready. */
static void snaps_expire(struct host *h, uint64_t now)
{
    for (uint32_t i = 0; i < h->reps_n; i++) {
        struct replica *r = &h->reps[i];
        if (r->send != NULL && now > r->send->deadline_ns) {
            raft_id to = r->send->to;
            HOST_LOG(h, WARN, "shard %u: range %llu: the snapshot to node %llu timed out",
                     h->shard_id, (unsigned long long)r->range, (unsigned long long)to);
            send_free(h, r);
            group_snapshot_failed(h, r, to);
        }
        if (r->recv != NULL && !r->recv->complete && now > r->recv->deadline_ns) {
            recv_free(h, r);
        }
    }
}

/* Compacts a group's log to `to` (which the last checkpoint covers). */
static void compact_group(struct host *h, struct replica *r, uint64_t to)
{
    TS_DASSERT(!r->readied);
    if (to < raft_first_index(r->raft)) {
        return;
    }
    int rc = raft_compact(r->raft, to);
    if (rc == 0) {
        rc = wal_compact(h->wal, r->range, to);
    }
    if (rc != 0) {
        HOST_LOG(h, WARN, "shard %u: range %llu: compacting the log to %llu failed: %s",
                 h->shard_id, (unsigned long long)r->range, (unsigned long long)to,
                 ts_strerror(rc));
    }
}

/* After a checkpoint, the log is compacted behind what it holds, keeping the last
 * retain_entries entries of each group for followers that lag a little. A group whose
 * ready is out compacts at its advance (its raft has not applied what the tree has). */
static void compact_logs(struct host *h)
{
    for (uint32_t i = 0; i < h->reps_n; i++) {
        struct replica *r = &h->reps[i];
        uint64_t applied = r->st.applied_index;
        if (applied <= h->retain_entries) {
            continue;
        }
        uint64_t to = applied - h->retain_entries;
        if (r->readied) {
            r->compact_to = to > r->compact_to ? to : r->compact_to;
        } else {
            compact_group(h, r, to);
        }
    }
}

/* ---- The iteration: readies ------------------------------------------------------------------ */

static void on_durable(void *data, uint64_t lsn)
{
    struct host *h = data;
    h->durable_lsn = lsn;
    h->stats.wal_syncs++;
}

static void fatal(struct host *h, const char *what, int rc)
{
    HOST_LOG(h, ERROR, "shard %u: %s: %s; the node stops (restart recovers from disk)", h->shard_id,
             what, store_why(h, rc));
    h->failed = true;
    (void)shard_node_stop(shard_get_node(h->shard));
}

/* Waits on the ring until the log is durable up to `want` (other completions are set
 * aside meanwhile: shard/loop.h). Only for what cannot go on without it: a log over its
 * in-flight budget, a checkpoint that must not run ahead of the log, the stop. Returns 0
 * or the log's error. */
static int wait_durable(struct host *h, uint64_t want)
{
    if (h->durable_lsn >= want) {
        return 0;
    }
    int rc = wal_flush(h->wal);
    for (uint32_t i = 0; rc == 0 && h->durable_lsn < want && i < 1000000; i++) {
        rc = disk_run(h->disk, true);
        rc = rc < 0 ? rc : wal_error(h->wal);
        if (rc == 0 && h->durable_lsn < want) {
            rc = wal_flush(h->wal);
        }
    }
    return rc < 0 ? rc : (h->durable_lsn >= want ? 0 : -EIO);
}

/* Makes everything staged durable. */
static int sync_wal(struct host *h)
{
    return wait_durable(h, wal_staged_lsn(h->wal));
}

/* The B-tree may be checkpointed only once every entry it has applied is durable in the
 * log (see process_readies); waits for that when needed. Returns 0, or the log's error
 * (the node stops). */
static int log_covers_tree(struct host *h)
{
    if (h->apply_lsn <= h->durable_lsn) {
        return 0;
    }
    int rc = wait_durable(h, h->apply_lsn);
    if (rc != 0) {
        fatal(h, "writing the log failed", rc);
    }
    return rc;
}

/* wal_append; when the log's in-flight budget is spent (TS_EFULL) it waits for what is
 * in flight and goes on from the first entry not staged. TS_EFULL only for records that
 * would not fit an idle log's budget either. */
static int stage_entries(struct host *h, uint64_t group, const struct wal_entry *e, uint32_t n)
{
    for (;;) {
        uint64_t before = wal_staged_lsn(h->wal);
        int rc = wal_append(h->wal, group, e, n);
        if (rc != TS_EFULL) {
            return rc;
        }
        if (wal_staged_lsn(h->wal) != before) {
            struct wal_group_info gi;
            rc = wal_group_info(h->wal, group, &gi);
            if (rc != 0) {
                return rc;
            }
            TS_ASSERT(gi.last_index >= e[0].index && gi.last_index - e[0].index + 1 < n);
            uint32_t done = (uint32_t)(gi.last_index - e[0].index + 1);
            e += done;
            n -= done;
        }
        if (h->durable_lsn >= wal_staged_lsn(h->wal)) {
            return TS_EFULL;
        }
        rc = sync_wal(h);
        if (rc != 0) {
            return rc;
        }
    }
}

static int stage(struct host *h, struct replica *r, const struct raft_ready *rd)
{
    if (rd->snapshot != NULL) {
        int rc = snap_install(h, r, rd->snapshot);
        if (rc != 0) {
            return rc;
        }
    }
    if (rd->n_entries > 0) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < rd->n_entries; i++) {
            bytes += 1u + rd->entries[i].len;
        }
        if (bytes > UINT32_MAX ||
            !grow(h->alloc, (void **)&h->wbuf, &h->wbuf_cap, (uint32_t)bytes, 1) ||
            !grow(h->alloc, (void **)&h->went, &h->went_cap, (uint32_t)rd->n_entries,
                  sizeof *h->went)) {
            return TS_ENOMEM;
        }
        uint8_t *p = h->wbuf;
        for (size_t i = 0; i < rd->n_entries; i++) {
            const struct raft_entry *e = &rd->entries[i];
            p[0] = e->type;
            if (e->len > 0) {
                memcpy(p + 1, e->data, e->len);
            }
            h->went[i] = (struct wal_entry){
                .term = e->term, .index = e->index, .data = p, .len = e->len + 1};
            p += 1 + e->len;
        }
        int rc = stage_entries(h, r->range, h->went, (uint32_t)rd->n_entries);
        if (rc != 0) {
            return rc;
        }
    }
    if (rd->hard_state_changed) {
        struct wal_hard_state hs = {.term = rd->hard_state.term,
                                    .vote = rd->hard_state.vote,
                                    .commit = rd->hard_state.commit};
        int rc = wal_save_hard_state(h->wal, r->range, &hs);
        if (rc == TS_EFULL && h->durable_lsn < wal_staged_lsn(h->wal)) {
            rc = sync_wal(h);
            rc = rc != 0 ? rc : wal_save_hard_state(h->wal, r->range, &hs);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void checkpoint(struct host *h)
{
    if (log_covers_tree(h) != 0) {
        return;
    }
    int rc = btree_checkpoint(h->tree, "tessera", 7);
    if (rc != 0) {
        fatal(h, "the B-tree checkpoint failed", rc);
        return;
    }
    h->applied_since_ckpt = 0;
    h->stats.checkpoints++;
}

/* Applies a ready's committed entries and saves the range's applied index with them. */
static void apply_ready(struct host *h, struct replica *r)
{
    const struct raft_ready *rd = &r->rd;
    if (h->failed || rd->n_committed == 0) {
        return;
    }
    for (size_t k = 0; k < rd->n_committed && !h->failed; k++) {
        apply_entry(h, r, &rd->committed[k]);
    }
    const struct raft_entry *last = &rd->committed[rd->n_committed - 1];
    r->st.applied_index = last->index;
    r->st.applied_term = last->term;
    int rc = kv_range_state_save(&h->store, r->range, &r->st);
    if (rc != 0) {
        fatal(h, "saving a range's applied index failed", rc);
    }
}

/* After the persist: raft_advance and what follows from it, the held inputs first. */
static void advance(struct host *h, struct replica *r)
{
    const struct raft_ready *rd = &r->rd;
    for (size_t k = 0; k < rd->n_reads; k++) {
        for (uint32_t j = 0; j < r->reads_n; j++) {
            if (r->reads[j].ctx == rd->reads[k].ctx) {
                r->reads[j].index = rd->reads[k].index;
                r->reads[j].has_index = true;
            }
        }
    }
    bool was_leader = r->role == RAFT_LEADER;
    if (rd->soft_state_changed) {
        r->role = rd->role;
    }
    raft_advance(r->raft);
    r->readied = false;
    r->persist_lsn = 0;
    if (r->snap_failed != 0) {
        raft_report_snapshot(r->raft, r->snap_failed, true);
        r->snap_failed = 0;
    }
    if (r->conf_changed && !h->failed) {
        r->conf_changed = false;
        int rc = save_conf(h, r);
        if (rc != 0) {
            fatal(h, "saving a range's configuration failed", rc);
        }
    }
    if (was_leader && r->role != RAFT_LEADER) {
        props_fail(h, r);
        for (uint32_t j = 0; j < r->reads_n;) {
            answer_status(h, r->reads[j].c, PROTO_STATUS_NOT_LEADER,
                          "leadership changed before the read was served", raft_leader(r->raft), 0);
            read_drop(h, r, j);
        }
    }
    held_replay(h, r);
    if (r->compact_to != 0) {
        uint64_t to = r->compact_to;
        r->compact_to = 0;
        compact_group(h, r, to);
    }
    reads_run(h, r);
    if (raft_has_ready(r->raft)) {
        mark_dirty(h, r);
    }
}

/* The readies whose records are durable: what promises the persist (votes,
 * acknowledgements) goes out, one frame per peer node, then each is advanced. */
static void complete_readies(struct host *h)
{
    uint64_t durable = h->durable_lsn; /* one view: advance() may run the disk */
    uint32_t done = 0;
    h->msgq_n = 0;
    for (uint32_t i = 0; i < h->readied_n; i++) {
        struct replica *r = h->readied[i];
        if (r->persist_lsn <= durable) {
            done++;
            if (!h->failed) {
                msgq_add(h, r->rd.msgs_after_persist, r->rd.n_msgs_after_persist);
            }
        }
    }
    if (done == 0) {
        return;
    }
    if (!h->failed) {
        msgq_flush(h, 0);
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < h->readied_n; i++) {
        struct replica *r = h->readied[i];
        if (r->persist_lsn <= durable) {
            advance(h, r);
        } else {
            h->readied[kept++] = r;
        }
    }
    h->readied_n = kept;
}

/*
 * Takes the readies of the groups with work (none of a group whose ready is out), in the
 * order that keeps the fsync off every other path:
 *   1. stage each group's snapshot, entries and hard state in the WAL; the ready needs
 *      the log durable up to where its records end (persist_lsn). It needs nothing
 *      (0) when it staged nothing, or only a new commit index: the commit index is not
 *      Raft's persistent state (recovery takes the applied index when it is higher),
 *      and what its messages promise (entries its previous readies staged) is durable
 *      already, those readies having completed;
 *   2. apply what is committed and queue the clients' answers. A committed entry is
 *      durable on a quorum already, but not always here: a follower can receive entries
 *      together with a commit index that covers them. The B-tree that holds their
 *      effect becomes durable only at a checkpoint, and a checkpoint waits until the
 *      log is durable up to apply_lsn (log_covers_tree), so the tree never runs ahead of
 *      the log: recovery replays each range from the applied index its checkpoint holds;
 *   3. queue the leaders' appends and send them (T§10.2.1: the leader writes its log in
 *      parallel with replicating it);
 *   4. start the log write (wal_flush): one write linked to one fdatasync for every
 *      group, or, while a write is in flight, the next batch, which the WAL starts as
 *      soon as that one completes (group commit). Nothing waits for it: the readies stay
 *      out, and complete_readies() finishes them in the iteration that sees the log
 *      durable (on_durable runs inside the disk's hook, before this one). Records no
 *      ready waits for (a new commit index, a compaction point) are not flushed on
 *      their own: they go with the next write;
 *   5. finish at once the readies that wait for nothing.
 */
static void process_readies(struct host *h)
{
    uint32_t first = h->readied_n;
    bool flush = false;
    h->msgq_n = 0;
    for (uint32_t i = 0; i < h->dirty_n; i++) {
        struct replica *r = h->dirty[i];
        r->dirty = false;
        if (r->readied || !raft_has_ready(r->raft)) {
            continue;
        }
        raft_ready(r->raft, &r->rd);
        const struct raft_ready *rd = &r->rd;
        r->readied = true;
        h->readied[h->readied_n++] = r;
        uint64_t before = wal_staged_lsn(h->wal);
        int rc = h->failed ? 0 : stage(h, r, rd);
        if (rc != 0) {
            fatal(h, "staging log records failed", rc);
        }
        /* The commit index is not Raft's persistent state (P§5 Fig. 2): a ready that
         * changes nothing else promises nothing the log has not made durable already. */
        bool sync = rd->snapshot != NULL || rd->n_entries > 0 ||
                    (rd->hard_state_changed &&
                     (rd->hard_state.term != r->hs.term || rd->hard_state.vote != r->hs.vote));
        if (rd->hard_state_changed) {
            r->hs = rd->hard_state;
        }
        uint64_t after = wal_staged_lsn(h->wal);
        r->persist_lsn = sync && after != before ? after : 0;
        flush = flush || r->persist_lsn > h->durable_lsn;
        if (rd->n_committed > 0 && rd->n_entries > 0 &&
            rd->committed[rd->n_committed - 1].index >= rd->entries[0].index &&
            r->persist_lsn > h->apply_lsn) {
            h->apply_lsn = r->persist_lsn; /* applied before it is durable here */
        }
        msgq_add(h, rd->msgs, rd->n_msgs);
        for (size_t k = 0; k < rd->n_msgs; k++) {
            if (rd->msgs[k].type == RAFT_MSG_SNAPSHOT) {
                snap_start(h, r, &rd->msgs[k]); /* streamed in chunks, not as a message */
            }
        }
    }
    h->dirty_n = 0;
    if (h->readied_n == first) {
        return;
    }
    for (uint32_t i = first; i < h->readied_n; i++) {
        apply_ready(h, h->readied[i]);
    }
    msgq_flush(h, 0);
    if (!h->failed && flush) {
        int rc = wal_flush(h->wal);
        if (rc != 0) {
            fatal(h, "writing the log failed", rc);
        }
    }
    complete_readies(h);
}

/* Every checkpoint_entries applied entries, once the log covers what the tree applied;
 * past twice that it waits for the log rather than put the checkpoint off again. */
static void maybe_checkpoint(struct host *h)
{
    if (h->failed || h->applied_since_ckpt < h->checkpoint_entries) {
        return;
    }
    if (h->apply_lsn > h->durable_lsn && h->applied_since_ckpt < 2 * h->checkpoint_entries) {
        return;
    }
    checkpoint(h);
    if (!h->failed) {
        compact_logs(h);
    }
}

static bool completable(const struct host *h)
{
    for (uint32_t i = 0; i < h->readied_n; i++) {
        if (h->readied[i]->persist_lsn <= h->durable_lsn) {
            return true;
        }
    }
    return false;
}

static void on_iteration(void *ctx)
{
    struct host *h = ctx;
    if (h->stopped) {
        return;
    }
    xflush(h);
    int rc = h->failed ? 0 : wal_error(h->wal);
    if (rc != 0) {
        fatal(h, "writing the log failed", rc); /* its readies never complete */
    }
    complete_readies(h);
    process_readies(h);
    /* Readies finished at once can leave their groups with work: take it now rather
     * than in another pass of the loop. */
    for (uint32_t k = 0; k < HOST_READY_ROUNDS_MAX && h->dirty_n > 0; k++) {
        process_readies(h);
    }
    maybe_checkpoint(h);
    nio_flush(h->nio);
    if (h->dirty_n > 0 || completable(h)) {
        shard_loop_poke(h->loop);
    }
}

/* ---- The meta range (shard/meta.h) ----------------------------------------------------------- */

static void answer_meta(struct host *h, struct cref c, uint8_t type, proto_ref result)
{
    h->ans.result = result;
    h->ans.result_type = type;
    const uint8_t *frame;
    uint32_t len;
    if (kvwire_finish(&h->ans, c.req_id, PROTO_STATUS_OK, NULL, 0, 0, 0, &frame, &len) == 0) {
        deliver(h, c, frame, len);
    }
}

static void meta_store_failed(struct host *h, struct cref c, int rc)
{
    HOST_LOG(h, ERROR, "shard %u: reading the meta range failed: %s", h->shard_id, ts_strerror(rc));
    answer_status(h, c, PROTO_STATUS_INTERNAL, "the node could not read the meta range", 0, 0);
}

/* The members as the meta range records them, with the liveness this node sees: a
 * started member is Up when heard from within three election timeouts. */
static proto_ref members_vec(struct host *h, const struct meta_member *ms, uint32_t n)
{
    struct proto_builder *b = &h->ans_b;
    proto_ref refs[TS_RAFT_MEMBERS_MAX];
    uint64_t now = mono_ns();
    uint64_t down_ns = 3ull * h->election_ticks * h->tick_ns;
    for (uint32_t i = 0; i < n; i++) {
        const struct meta_member *m = &ms[i];
        uint64_t last = heard_last(h->shared, m->node_id);
        bool self = m->node_id == h->cl->self;
        uint8_t state = m->state == META_STATE_JOINING                ? PROTO_NODE_STATE_JOINING
                        : self || (last != 0 && now < last + down_ns) ? PROTO_NODE_STATE_UP
                                                                      : PROTO_NODE_STATE_DOWN;
        proto_ref addr = proto_create_string(b, m->addr, (uint32_t)strlen(m->addr));
        proto_member_begin(b);
        proto_member_add_node_id(b, m->node_id);
        proto_member_add_address(b, addr);
        proto_member_add_state(b, state);
        proto_member_add_shards(b, m->shards);
        refs[i] = proto_member_end(b);
    }
    return proto_create_vec_ref(b, refs, n);
}

/* Members and Route, on a replica of range 1 once the read is allowed (lease, ReadIndex
 * or serializable). */
static void serve_meta_read(struct host *h, struct replica *r, struct cref c,
                            const struct kvwire_req *q)
{
    (void)r;
    struct proto_builder *b = &h->ans_b;
    (void)kvwire_answer_begin(&h->ans);
    if (q->kind == KVWIRE_MEMBERS) {
        struct meta_member ms[TS_RAFT_MEMBERS_MAX];
        uint32_t n = 0;
        int rc = meta_members(&h->store, ms, TS_RAFT_MEMBERS_MAX, &n);
        if (rc != 0) {
            meta_store_failed(h, c, rc);
            return;
        }
        if (n == 0) {
            answer_status(h, c, PROTO_STATUS_UNAVAILABLE, meta_status_name(META_NOT_BOOTSTRAPPED),
                          0, 0);
            return;
        }
        proto_ref vec = members_vec(h, ms, n);
        proto_members_response_begin(b);
        proto_members_response_add_members(b, vec);
        answer_meta(h, c, PROTO_RESPONSE_OP_MEMBERS_RESPONSE, proto_members_response_end(b));
        return;
    }
    uint64_t first = q->route.range_id;
    uint32_t limit = q->route.range_id != 0                     ? 1u
                     : q->route.limit == 0                      ? TS_HOST_ROUTE_LIMIT_DEFAULT
                     : q->route.limit > TS_HOST_ROUTE_LIMIT_MAX ? TS_HOST_ROUTE_LIMIT_MAX
                                                                : q->route.limit;
    if (first == 0) {
        /* Records are by id; ids follow the key order while nothing splits or merges. */
        first = host_range_of_key(h->cl, q->route.key.p, q->route.key.len);
    }
    proto_ref *refs = ts_alloc(h->alloc, (size_t)limit * sizeof *refs);
    struct meta_desc *d = ts_alloc(h->alloc, sizeof *d);
    if (refs == NULL || d == NULL) {
        ts_free(h->alloc, refs, (size_t)limit * sizeof *refs);
        ts_free(h->alloc, d, sizeof *d);
        answer_status(h, c, PROTO_STATUS_UNAVAILABLE, "out of memory", 0, 0);
        return;
    }
    uint32_t n = 0;
    int rc = 0;
    for (uint64_t range = first; n < limit && range <= h->cl->ranges; range++) {
        rc = meta_desc_load(&h->store, range, d);
        if (rc != 0) {
            break;
        }
        refs[n++] = desc_proto(h, d);
    }
    ts_free(h->alloc, d, sizeof *d);
    if (rc == TS_ENOTFOUND || (rc == 0 && n == 0)) {
        bool unknown = q->route.range_id > h->cl->ranges;
        answer_status(h, c, unknown ? PROTO_STATUS_RANGE_NOT_FOUND : PROTO_STATUS_UNAVAILABLE,
                      unknown ? "no range has this id" : meta_status_name(META_NOT_BOOTSTRAPPED), 0,
                      0);
    } else if (rc != 0) {
        meta_store_failed(h, c, rc);
    } else {
        proto_ref vec = proto_create_vec_ref(b, refs, n);
        proto_route_response_begin(b);
        proto_route_response_add_ranges(b, vec);
        answer_meta(h, c, PROTO_RESPONSE_OP_ROUTE_RESPONSE, proto_route_response_end(b));
    }
    ts_free(h->alloc, refs, (size_t)limit * sizeof *refs);
}

static uint16_t meta_proto_status(uint8_t st)
{
    switch (st) {
    case META_OK:
        return PROTO_STATUS_OK;
    case META_NOT_BOOTSTRAPPED:
        return PROTO_STATUS_UNAVAILABLE;
    case META_FULL:
        return PROTO_STATUS_NO_SPACE;
    case META_UNKNOWN_NODE:
        return PROTO_STATUS_NOT_FOUND;
    case META_BAD_SPEC:
        return PROTO_STATUS_INTERNAL;
    default:
        return PROTO_STATUS_INVALID_ARGUMENT;
    }
}

/* A committed meta command of range 1; p: the proposal waiting for it on this node. */
static void apply_meta(struct host *h, struct replica *r, const struct raft_entry *e,
                       const struct prop *p)
{
    struct meta_result res = {0};
    int rc = r->range == META_RANGE ? meta_apply(&h->store, e->data, e->len, &res) : TS_EPROTO;
    if (rc < 0 && rc != TS_EPROTO) {
        HOST_LOG(h, ERROR, "shard %u: range %llu: applying meta entry %llu failed: %s; stopping",
                 h->shard_id, (unsigned long long)r->range, (unsigned long long)e->index,
                 ts_strerror(rc));
        h->failed = true;
        (void)shard_node_stop(shard_get_node(h->shard));
        return;
    }
    h->stats.applied++;
    h->applied_since_ckpt++;
    if (rc == 0 && res.changed) {
        struct meta_cmd mc;
        (void)meta_cmd_decode(e->data, e->len, &mc);
        HOST_LOG(h, INFO, "shard %u: meta range: %s node %llu", h->shard_id,
                 mc.kind == META_CMD_BOOTSTRAP ? "bootstrapped by"
                 : mc.kind == META_CMD_JOIN    ? "added"
                                               : "started",
                 (unsigned long long)(mc.kind == META_CMD_BOOTSTRAP ? raft_leader(r->raft)
                                                                    : res.node_id));
    }
    if (p == NULL) {
        return;
    }
    if (rc == TS_EPROTO || res.status != META_OK) {
        answer_status(
            h, p->c, rc == TS_EPROTO ? PROTO_STATUS_INTERNAL : meta_proto_status(res.status),
            rc == TS_EPROTO ? "a malformed meta command" : meta_status_name(res.status), 0, 0);
        return;
    }
    struct meta_cluster *mc = ts_alloc(h->alloc, sizeof *mc);
    struct meta_member ms[TS_RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    rc = mc == NULL ? TS_ENOMEM : meta_cluster_load(&h->store, mc);
    if (rc == 0) {
        rc = meta_members(&h->store, ms, TS_RAFT_MEMBERS_MAX, &n);
    }
    if (rc != 0) {
        ts_free(h->alloc, mc, sizeof *mc);
        meta_store_failed(h, p->c, rc);
        return;
    }
    struct proto_builder *b = &h->ans_b;
    (void)kvwire_answer_begin(&h->ans);
    proto_ref vec = members_vec(h, ms, n);
    proto_ref spec = proto_create_string(b, mc->spec, (uint32_t)strlen(mc->spec));
    proto_join_response_begin(b);
    proto_join_response_add_node_id(b, res.node_id);
    proto_join_response_add_cluster_id(b, mc->cluster_id);
    proto_join_response_add_members(b, vec);
    proto_join_response_add_ranges(b, mc->ranges);
    proto_join_response_add_shards(b, mc->shards);
    proto_join_response_add_initial_cluster(b, spec);
    ts_free(h->alloc, mc, sizeof *mc);
    answer_meta(h, p->c, PROTO_RESPONSE_OP_JOIN_RESPONSE, proto_join_response_end(b));
}

static void handle_request(struct host *h, struct cref c, const uint8_t *frame, uint32_t len,
                           struct proto_request req);

/* Once per tick on shard 0: a leader of range 1 makes sure the meta range is
 * bootstrapped; the node announces itself until the meta range has it as started. */
static void meta_tick(struct host *h, uint64_t now)
{
    struct replica *r = replica_of(h, META_RANGE);
    if (!h->meta_ok && r != NULL && !r->readied /* raft takes no proposal now */ &&
        raft_role_of(r->raft) == RAFT_LEADER && now >= h->meta_retry_ns) {
        struct meta_cluster *mc = ts_alloc(h->alloc, sizeof *mc);
        int rc = mc == NULL ? TS_ENOMEM : meta_cluster_load(&h->store, mc);
        ts_free(h->alloc, mc, sizeof *mc);
        if (rc == 0) {
            h->meta_ok = true;
        } else if (rc == TS_ENOTFOUND &&
                   grow(h->alloc, (void **)&h->cmd, &h->cmd_cap, META_CMD_BYTES_MAX, 1)) {
            /* The spec as written: a joining node derives the cluster id from it. */
            uint32_t n = meta_cmd_bootstrap(h->cmd, h->cl->cluster_id, h->cl->ranges, h->shards,
                                            h->cl->spec);
            raft_index index;
            if (n > 0 && raft_propose(r->raft, h->cmd, n, &index) == 0) {
                mark_dirty(h, r);
            }
        }
        h->meta_retry_ns = now + TS_HOST_META_RETRY_NS;
    }
    if (h->published || now < h->publish_retry_ns || h->stopping) {
        return;
    }
    h->publish_retry_ns = now + TS_HOST_META_RETRY_NS;
    struct proto_builder *b = &h->self_b;
    proto_builder_reset(b);
    const char *addr = h->cl->m[h->self_member].addr;
    proto_ref a = proto_create_string(b, addr, (uint32_t)strlen(addr));
    proto_join_request_begin(b);
    proto_join_request_add_address(b, a);
    proto_join_request_add_shards(b, h->shards);
    proto_join_request_add_node_id(b, h->cl->self);
    proto_ref jr = proto_join_request_end(b);
    h->self_req++;
    proto_request_begin(b);
    proto_request_add_id(b, h->self_req);
    proto_request_add_op(b, PROTO_REQUEST_OP_JOIN_REQUEST, jr);
    proto_ref req = proto_request_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_REQUEST, req);
    proto_ref msg = proto_message_end(b);
    const uint8_t *frame;
    uint32_t len;
    struct proto_message m;
    char why[128];
    if (proto_message_finish(b, msg, true, &frame, &len) != 0 ||
        proto_message_decode(frame, len, true, &m, why, sizeof why) != 0) {
        return;
    }
    struct cref c = {.shard = h->shard_id, .conn = HOST_CONN_SELF, .req_id = h->self_req};
    handle_request(h, c, frame, len, proto_message_body_as_request(m));
}

/* The answer to the node's announcement. */
static void on_self_answer(struct host *h, uint64_t req_id, const uint8_t *frame, uint32_t len)
{
    struct proto_message m;
    char why[128];
    if (req_id != h->self_req || proto_message_decode(frame, len, true, &m, why, sizeof why) != 0 ||
        proto_message_body_type(m) != PROTO_BODY_RESPONSE) {
        return;
    }
    struct proto_response resp = proto_message_body_as_response(m);
    uint16_t st = proto_response_status(resp);
    if (st == PROTO_STATUS_OK) {
        h->published = true;
        HOST_LOG(h, INFO, "shard %u: node %llu is recorded as started in the meta range",
                 h->shard_id, (unsigned long long)h->cl->self);
    } else if (st != PROTO_STATUS_NOT_LEADER && st != PROTO_STATUS_UNAVAILABLE) {
        struct proto_str msg = proto_response_message(resp);
        HOST_LOG(h, WARN, "shard %u: announcing node %llu to the meta range: status %u: %s",
                 h->shard_id, (unsigned long long)h->cl->self, st, msg.ptr != NULL ? msg.ptr : "");
    }
}

/* ---- Requests -------------------------------------------------------------------------------- */

static struct replica *replica_of(struct host *h, uint64_t range)
{
    if (range == 0 || range > h->cl->ranges || h->rep_of[range] < 0) {
        return NULL;
    }
    return &h->reps[h->rep_of[range]];
}

static int propose(struct host *h, struct replica *r, const struct kvwire_req *q, size_t *len)
{
    uint64_t stamp = ts_hlc_now(&h->hlc, wall_ms());
    size_t need;
    switch (q->kind) {
    case KVWIRE_JOIN: {
        if (!grow(h->alloc, (void **)&h->cmd, &h->cmd_cap, META_CMD_BYTES_MAX, 1)) {
            return TS_ENOMEM;
        }
        char addr[TS_HOST_ADDR_BYTES];
        memcpy(addr, q->join.addr.p, q->join.addr.len);
        addr[q->join.addr.len] = 0;
        *len = q->join.node_id != 0 ? meta_cmd_publish(h->cmd, q->join.node_id, addr)
                                    : meta_cmd_join(h->cmd, q->join.shards, addr);
        return *len > 0 ? 0 : TS_EINVAL;
    }
    case KV_OP_PUT:
        need = kv_cmd_put_size(&q->op.u.put);
        break;
    case KV_OP_DELETE:
        need = kv_cmd_delete_size(&q->op.u.del);
        break;
    default:
        need = kv_cmd_txn_size(q->cmps, q->cmps_n, q->succ, q->succ_n, q->fail, q->fail_n);
        break;
    }
    if (need > TS_RAFT_ENTRY_BYTES_MAX) {
        return TS_ETOOBIG;
    }
    if (!grow(h->alloc, (void **)&h->cmd, &h->cmd_cap, (uint32_t)need, 1)) {
        return TS_ENOMEM;
    }
    int rc;
    switch (q->kind) {
    case KV_OP_PUT:
        rc = kv_cmd_encode_put(r->range, stamp, &q->op.u.put, h->cmd, h->cmd_cap, len);
        break;
    case KV_OP_DELETE:
        rc = kv_cmd_encode_delete(r->range, stamp, &q->op.u.del, h->cmd, h->cmd_cap, len);
        break;
    default:
        rc = kv_cmd_encode_txn(r->range, stamp, q->cmps, q->cmps_n, q->succ, q->succ_n, q->fail,
                               q->fail_n, h->cmd, h->cmd_cap, len);
        break;
    }
    return rc;
}

static void handle_write(struct host *h, struct replica *r, struct cref c,
                         const struct kvwire_req *q)
{
    size_t len = 0;
    int rc = propose(h, r, q, &len);
    if (rc != 0) {
        propose_failed(h, r, c, rc);
        return;
    }
    if (!r->readied) {
        propose_entry(h, r, c, h->cmd, (uint32_t)len);
        return;
    }
    if (raft_role_of(r->raft) != RAFT_LEADER) {
        answer_not_leader(h, c, r);
        return;
    }
    struct held *it = hold(h, r, HELD_PROPOSE, len, true);
    if (it == NULL) {
        answer_status(h, c, PROTO_STATUS_TOO_MANY_REQUESTS,
                      "the range has too many writes waiting for its log; retry later", 0, 0);
        return;
    }
    it->u.prop.c = c;
    it->u.prop.len = (uint32_t)len;
    memcpy(it + 1, h->cmd, len);
}

static void handle_read(struct host *h, struct replica *r, struct cref c,
                        const struct kvwire_req *q, const uint8_t *frame, uint32_t len)
{
    if (!q->linearizable) {
        h->stats.reads_serializable++;
        serve_read(h, r, c, q);
        return;
    }
    if (raft_role_of(r->raft) != RAFT_LEADER) {
        answer_not_leader(h, c, r);
        return;
    }
    /* Ticks held while the ready is out have not reached raft's lease clock yet: the
     * lease must hold once they have. */
    if (raft_lease_valid_after(r->raft, r->held_ticks) &&
        r->st.applied_index >= raft_commit_index(r->raft)) {
        h->stats.reads_lease++;
        serve_read(h, r, c, q);
        return;
    }
    uint64_t ctx = ++h->read_ctx;
    if (r->readied) {
        struct held *it = hold(h, r, HELD_READ, 0, true);
        if (it == NULL) {
            answer_status(h, c, PROTO_STATUS_TOO_MANY_REQUESTS,
                          "the range has too many requests waiting for its log; retry later", 0, 0);
            return;
        }
        it->u.ctx = ctx;
    } else {
        int rc = raft_read_index(r->raft, ctx);
        if (rc != 0) {
            read_index_failed(h, r, c, rc);
            return;
        }
    }
    uint8_t *copy = ts_alloc(h->alloc, len);
    if (copy == NULL ||
        !grow(h->alloc, (void **)&r->reads, &r->reads_cap, r->reads_n + 1, sizeof *r->reads)) {
        ts_free(h->alloc, copy, len);
        answer_status(h, c, PROTO_STATUS_UNAVAILABLE, "out of memory", 0, 0);
        return;
    }
    memcpy(copy, frame, len);
    r->reads[r->reads_n++] = (struct pread){.ctx = ctx, .c = c, .frame = copy, .len = len};
    mark_dirty(h, r);
}

static void handle_request(struct host *h, struct cref c, const uint8_t *frame, uint32_t len,
                           struct proto_request req)
{
    if (h->stopping || h->failed) {
        answer_status(h, c, PROTO_STATUS_UNAVAILABLE, "the node is shutting down", 0, 0);
        return;
    }
    struct kvwire_req q;
    const char *why;
    int st = kvwire_parse(req, h->txn, &q, &why);
    if (st != 0) {
        answer_status(h, c, (uint16_t)st, why, 0, 0);
        return;
    }
    uint64_t range = host_range_of_key(h->cl, q.route_key.p, q.route_key.len);
    uint64_t asked = proto_request_range_id(req);
    if (asked != 0 && asked != range) {
        answer_status(h, c, PROTO_STATUS_RANGE_NOT_FOUND,
                      "the key is not in the range the request names", 0, range);
        return;
    }
    struct proto_range_epoch ep = proto_request_epoch(req);
    if (asked != 0 && (ep.generation != 1 || ep.conf_version != 1)) {
        answer_status(h, c, PROTO_STATUS_STALE_EPOCH, "the range's epoch has changed", 0, range);
        return;
    }
    uint32_t target = (uint32_t)((range - 1) % h->shards);
    if (target != h->shard_id) {
        struct xbuf *x = xbuf_new(h, frame, len, c);
        if (x == NULL) {
            answer_status(h, c, PROTO_STATUS_UNAVAILABLE, "out of memory", 0, 0);
            return;
        }
        h->stats.forwarded++;
        xsend(h, target, HX_REQUEST, x);
        return;
    }
    struct replica *r = replica_of(h, range);
    if (r == NULL) {
        /* This node holds no replica of the range: pass it to its leader as last seen, or
         * to a replica (which answers NotLeader with a hint when it does not lead). */
        uint64_t node = h->guess[range] != 0 ? h->guess[range]
                                             : h->cl->m[replica_member(h->cl, range, 0)].node_id;
        if (!forward(h, c, frame, len, req, node, range)) {
            h->guess[range] = 0;
            answer_status(h, c, PROTO_STATUS_NOT_LEADER, "this node holds no replica of the range",
                          node, range);
        }
        return;
    }
    bool read = q.kind == KV_OP_GET || q.kind == KV_OP_RANGE || q.kind == KVWIRE_MEMBERS ||
                q.kind == KVWIRE_ROUTE;
    bool needs_leader = read ? q.linearizable : true;
    raft_id leader = raft_leader(r->raft);
    if (needs_leader && raft_role_of(r->raft) != RAFT_LEADER && leader != 0 &&
        leader != h->cl->self && forward(h, c, frame, len, req, leader, range)) {
        return;
    }
    if (read) {
        handle_read(h, r, c, &q, frame, len);
    } else {
        handle_write(h, r, c, &q);
    }
}

/* Status: node-wide, answered by the shard that holds the connection. */
static void answer_status_request(struct host *h, struct cref c)
{
    struct proto_builder *b = &h->ans_b;
    (void)kvwire_answer_begin(&h->ans);
    uint32_t replicas = 0, leaders = 0;
    uint64_t db = 0, wal = 0;
    for (uint32_t s = 0; s < h->shards && s < HOST_SHARDS_MAX; s++) {
        const struct host_shard_gauges *g = &h->shared->shard[s];
        replicas += atomic_load_explicit(&g->replicas, memory_order_relaxed);
        leaders += atomic_load_explicit(&g->leaders, memory_order_relaxed);
        db += atomic_load_explicit(&g->db_bytes, memory_order_relaxed);
        wal += atomic_load_explicit(&g->wal_bytes, memory_order_relaxed);
    }
    proto_ref ver = proto_create_string(b, HOST_VERSION, (uint32_t)strlen(HOST_VERSION));
    proto_status_response_begin(b);
    proto_status_response_add_node_id(b, h->cl->self);
    proto_status_response_add_cluster_id(b, h->cl->cluster_id);
    proto_status_response_add_version(b, ver);
    proto_status_response_add_shards(b, h->shards);
    proto_status_response_add_replicas(b, replicas);
    proto_status_response_add_leaders(b, leaders);
    proto_status_response_add_db_size_bytes(b, db);
    proto_status_response_add_wal_size_bytes(b, wal);
    proto_status_response_add_uptime_ms(b, (mono_ns() - h->shared->start_ns) / 1000000u);
    h->ans.result = proto_status_response_end(b);
    h->ans.result_type = PROTO_RESPONSE_OP_STATUS_RESPONSE;
    const uint8_t *frame;
    uint32_t len;
    if (kvwire_finish(&h->ans, c.req_id, PROTO_STATUS_OK, NULL, 0, 0, 0, &frame, &len) == 0) {
        deliver(h, c, frame, len);
    }
}

void host_on_request(struct host *h, uint64_t conn, const uint8_t *frame, uint32_t len,
                     struct proto_request req, bool from_peer)
{
    struct cref c = {.shard = h->shard_id,
                     .from_peer = from_peer,
                     .conn = conn,
                     .req_id = proto_request_id(req)};
    switch (proto_request_op_type(req)) {
    case PROTO_REQUEST_OP_STATUS_REQUEST:
        answer_status_request(h, c);
        return;
    default:
        handle_request(h, c, frame, len, req);
    }
}

static void gauges_update(struct host *h)
{
    if (h->shard_id >= HOST_SHARDS_MAX) {
        return;
    }
    struct host_shard_gauges *g = &h->shared->shard[h->shard_id];
    uint32_t leaders = 0;
    for (uint32_t i = 0; i < h->reps_n; i++) {
        leaders += raft_role_of(h->reps[i].raft) == RAFT_LEADER ? 1 : 0;
    }
    struct btree_stats bs;
    btree_get_stats(h->tree, &bs);
    struct wal_stats ws;
    wal_get_stats(h->wal, &ws);
    atomic_store_explicit(&g->replicas, h->reps_n, memory_order_relaxed);
    atomic_store_explicit(&g->leaders, leaders, memory_order_relaxed);
    atomic_store_explicit(&g->db_bytes, bs.page_count * TS_BTREE_PAGE_BYTES_DEFAULT,
                          memory_order_relaxed);
    atomic_store_explicit(&g->wal_bytes, ws.bytes_written, memory_order_relaxed);
}

/* ---- Peer frames ------------------------------------------------------------------------------
 */

static void heard(struct host *h, uint64_t node)
{
    _Atomic uint64_t *clock = heard_clock(h->shared, node, true);
    if (clock != NULL) {
        atomic_store_explicit(clock, mono_ns(), memory_order_relaxed);
    }
}

/* Steps the messages of this shard's groups; returns the other shards that have some
 * (a bit set), when forward is asked. */
/* The replica of group g on this shard, or NULL (another shard's: its bit is set in
 * *others; unknown or not hosted: dropped). */
static struct replica *batch_target(struct host *h, uint64_t g, uint64_t *others)
{
    if (g == 0 || g > h->cl->ranges) {
        return NULL;
    }
    uint32_t target = (uint32_t)((g - 1) % h->shards);
    if (target != h->shard_id) {
        *others |= UINT64_C(1) << (target % 64);
        return NULL;
    }
    return replica_of(h, g);
}

static void step_one(struct host *h, struct replica *r, const struct raft_message *m, int rc)
{
    if (rc == 0 && r->readied) {
        /* Its ready is out: held (copied) until its advance; dropped when the group
         * holds too much already (raft resends). */
        (void)hold_step(h, r, m);
        return;
    }
    if (rc == 0) {
        rc = raft_step(r->raft, m);
    }
    if (rc != 0 && rc != TS_EPROTO) {
        HOST_LOG(h, WARN, "shard %u: range %llu: a raft message was dropped: %s", h->shard_id,
                 (unsigned long long)r->range, ts_strerror(rc));
    }
    mark_dirty(h, r);
}

static uint64_t step_batch(struct host *h, struct proto_raft_batch batch)
{
    struct proto_vec v = proto_raft_batch_messages(batch);
    uint64_t others = 0;
    struct raft_snapshot_meta snap;
    struct raft_message m;
    for (uint32_t i = 0; i < v.len; i++) {
        struct proto_raft_message pm = proto_raft_message_vec_at(v, i);
        struct replica *r = batch_target(h, proto_raft_message_group_id(pm), &others);
        if (r != NULL) {
            step_one(h, r, &m,
                     peer_decode_raft_message(pm, &m, h->dec, TS_RAFT_MSG_ENTRIES_MAX, &snap));
        }
    }
    struct proto_vec hv = proto_raft_batch_heartbeats(batch);
    for (uint32_t i = 0; i < hv.len; i++) {
        struct proto_heartbeat hb = proto_heartbeat_vec_at(hv, i);
        struct replica *r = batch_target(h, hb.group_id, &others);
        if (r != NULL) {
            peer_heartbeat_decode(hb, &m);
            step_one(h, r, &m, 0);
        }
    }
    struct proto_vec av = proto_raft_batch_heartbeat_acks(batch);
    for (uint32_t i = 0; i < av.len; i++) {
        struct proto_heartbeat_ack a = proto_heartbeat_ack_vec_at(av, i);
        struct replica *r = batch_target(h, a.group_id, &others);
        if (r != NULL) {
            peer_heartbeat_ack_decode(a, &m);
            step_one(h, r, &m, 0);
        }
    }
    return others;
}

/* A peer's message for this shard's groups (after any hop between shards). */
static void peer_message(struct host *h, struct proto_message msg)
{
    switch (proto_message_body_type(msg)) {
    case PROTO_BODY_RAFT_BATCH:
        (void)step_batch(h, proto_message_body_as_raft_batch(msg));
        break;
    case PROTO_BODY_SNAPSHOT_CHUNK:
        on_snapshot_chunk(h, proto_message_body_as_snapshot_chunk(msg));
        break;
    case PROTO_BODY_SNAPSHOT_CHUNK_ACK:
        on_snapshot_ack(h, proto_message_body_as_snapshot_chunk_ack(msg));
        break;
    default:
        break;
    }
}

/* A snapshot chunk or its acknowledgement: handled by the shard of its group. */
void host_on_snapshot_frame(struct host *h, struct proto_message msg, uint64_t group,
                            const uint8_t *frame, uint32_t len)
{
    if (h->stopped || group == 0 || group > h->cl->ranges) {
        return;
    }
    h->stats.frames_in++;
    uint32_t target = (uint32_t)((group - 1) % h->shards);
    if (target == h->shard_id) {
        peer_message(h, msg);
        return;
    }
    struct xbuf *x = xbuf_new(h, frame, len, (struct cref){0});
    if (x != NULL) {
        xsend(h, target, HX_RAFT, x);
    }
}

void host_on_raft_batch(struct host *h, struct proto_raft_batch batch, const uint8_t *frame,
                        uint32_t len)
{
    if (proto_raft_batch_cluster_id(batch) != h->cl->cluster_id || h->stopped) {
        return;
    }
    h->stats.frames_in++;
    heard(h, proto_raft_batch_from_node(batch));
    uint64_t others = step_batch(h, batch);
    for (uint32_t s = 0; others != 0 && s < h->shards; s++) {
        if ((others & (UINT64_C(1) << (s % 64))) == 0 || s == h->shard_id) {
            continue;
        }
        struct xbuf *x = xbuf_new(h, frame, len, (struct cref){0});
        if (x != NULL) {
            xsend(h, s, HX_RAFT, x);
        }
    }
}

void host_on_peer_up(struct host *h, struct nio_conn *c)
{
    struct proto_builder *b = &h->out_b;
    proto_builder_reset(b);
    const char *addr = h->cl->m[h->self_member].addr;
    proto_ref a = proto_create_string(b, addr, (uint32_t)strlen(addr));
    proto_hello_begin(b);
    proto_hello_add_kind(b, PROTO_CONNECTION_KIND_PEER);
    proto_hello_add_node_id(b, h->cl->self);
    proto_hello_add_cluster_id(b, h->cl->cluster_id);
    proto_hello_add_address(b, a);
    proto_hello_add_protocol_version(b, 1);
    proto_ref hello = proto_hello_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_HELLO, hello);
    proto_ref msg = proto_message_end(b);
    const uint8_t *frame;
    uint32_t len;
    if (proto_message_finish(b, msg, true, &frame, &len) == 0) {
        (void)nio_send(c, frame, len);
    }
}

void host_on_xmsg(struct host *h, const struct xring_msg *m)
{
    struct xbuf *x = (struct xbuf *)(uintptr_t)m->handle;
    switch (m->type) {
    case HX_RELEASE:
        xbuf_free(h, x);
        return;
    case HX_ANSWER: {
        struct nio_conn *conn = nio_conn_lookup(h->nio, x->c.conn);
        if (conn != NULL && nio_send(conn, x->data, x->len) != 0) {
            nio_close(conn);
        }
        break;
    }
    case HX_REQUEST:
    case HX_RAFT: {
        struct proto_message msg;
        char why[128];
        int rc = proto_message_decode(x->data, x->len, true, &msg, why, sizeof why);
        TS_ASSERT(rc == 0); /* verified by the shard that received it */
        if (m->type == HX_REQUEST) {
            handle_request(h, x->c, x->data, x->len, proto_message_body_as_request(msg));
        } else if (!h->stopped) {
            peer_message(h, msg);
        }
        break;
    }
    default:
        TS_ASSERT(false);
    }
    xsend(h, m->from, HX_RELEASE, x);
}

/* ---- Ticks -------------------------------------------------------------------------------------
 */

static void on_tick(struct shard_timer *t, void *data)
{
    struct host *h = data;
    uint64_t now = shard_loop_now_ns(h->loop);
    uint64_t silent_ns = (uint64_t)h->election_ticks * h->tick_ns;
    for (uint32_t i = 0; i < h->reps_n && !h->stopped; i++) {
        struct replica *r = &h->reps[i];
        if (!raft_quiesced(r->raft)) {
            group_tick(h, r);
            continue;
        }
        raft_id leader = raft_leader(r->raft);
        if (leader != h->cl->self && leader != 0) {
            uint64_t last = heard_last(h->shared, leader);
            if (now > last + silent_ns) {
                group_wake(h, r); /* its leader's node went silent */
            }
        }
    }
    if (h->shard_id == 0 && !h->stopped && !h->failed) {
        meta_tick(h, now);
    }
    for (uint32_t i = 0; i < h->peers_n && !h->stopped; i++) {
        if (!h->peers[i].sent) {
            send_frame(h, &h->peers[i], 0, false); /* keep-alive: we are here */
        }
        h->peers[i].sent = false;
    }
    gauges_update(h);
    fwds_fail(h, mono_ns(), 0);
    snaps_expire(h, mono_ns());
    (void)shard_timer_start(h->loop, t, now + h->tick_ns, on_tick, h);
}

/* ---- Replicas: bootstrap and recovery ------------------------------------------------------ */

struct chunk {
    struct chunk *next;
    uint32_t size;
    uint8_t data[];
};

static void on_read_done(struct wal_read_req *req)
{
    *(bool *)req->data = true;
}

/* Reads entries [lo, hi] of a group into e (room for hi - lo + 1), their data into chunks
 * the caller frees after raft_new copied them. */
static int read_entries(struct host *h, uint64_t group, uint64_t lo, uint64_t hi,
                        struct raft_entry *e, struct chunk **chunks)
{
    uint64_t n = hi - lo + 1;
    struct wal_entry *we = ts_alloc(h->alloc, (size_t)n * sizeof *we);
    if (we == NULL) {
        return TS_ENOMEM;
    }
    uint64_t at = lo;
    int rc = 0;
    while (rc == 0 && at <= hi) {
        uint32_t size = (uint32_t)sizeof(struct chunk) + TS_HOST_RECOVER_READ_BYTES;
        struct chunk *c = ts_alloc(h->alloc, size);
        if (c == NULL) {
            rc = TS_ENOMEM;
            break;
        }
        c->size = size;
        c->next = *chunks;
        *chunks = c;
        bool done = false;
        struct wal_read_req req = {.group = group,
                                   .lo = at,
                                   .hi = hi + 1,
                                   .buf = c->data,
                                   .buf_bytes = TS_HOST_RECOVER_READ_BYTES,
                                   .entries = we,
                                   .cb = on_read_done,
                                   .data = &done};
        rc = wal_read(h->wal, &req);
        if (rc < 0) {
            break;
        }
        for (uint32_t i = 0; rc == 0 && !done && i < 1000000; i++) {
            int r2 = disk_run(h->disk, true);
            rc = r2 < 0 ? r2 : 0;
        }
        rc = rc != 0 ? rc : req.res;
        if (rc == 0 && req.count == 0) {
            rc = TS_ECORRUPT; /* an entry larger than the read buffer, or a hole */
        }
        for (uint32_t i = 0; rc == 0 && i < req.count; i++) {
            const struct wal_entry *w = &we[i];
            if (w->len == 0 || w->index != at + i) {
                rc = TS_ECORRUPT;
                break;
            }
            const uint8_t *d = w->data;
            e[at - lo + i] = (struct raft_entry){.term = w->term,
                                                 .index = w->index,
                                                 .type = d[0],
                                                 .data = w->len > 1 ? d + 1 : NULL,
                                                 .len = w->len - 1};
        }
        at += req.count;
    }
    ts_free(h->alloc, we, (size_t)n * sizeof *we);
    return rc;
}

static void chunks_free(struct host *h, struct chunk *c)
{
    while (c != NULL) {
        struct chunk *next = c->next;
        ts_free(h->alloc, c, c->size);
        c = next;
    }
}

static int replica_open(struct host *h, struct replica *r, uint64_t range)
{
    r->range = range;
    r->lo_len = host_range_start(h->cl, range, r->lo);
    r->hi_len = range < h->cl->ranges ? host_range_start(h->cl, range + 1, r->hi) : 0;
    int rc = kv_range_state_load(&h->store, range, &r->st);
    if (rc == TS_ENOTFOUND) {
        memset(&r->st, 0, sizeof r->st);
    } else if (rc != 0) {
        return rc;
    }
    struct raft_conf conf;
    bool have_conf = false;
    uint8_t cbuf[RAFT_CONF_ENCODED_BYTES_MAX];
    uint32_t clen = 0;
    rc = kv_range_blob_load(&h->store, range, HOST_CONF_BLOB, cbuf, sizeof cbuf, &clen);
    if (rc == 0) {
        rc = raft_conf_decode(cbuf, clen, &conf);
        if (rc != 0) {
            return TS_ECORRUPT;
        }
        have_conf = true;
    } else if (rc != TS_ENOTFOUND) {
        return rc;
    }
    struct raft_config c;
    raft_config_default(&c);
    c.group_id = range;
    c.id = h->cl->self;
    c.election_ticks = h->election_ticks;
    c.rand = &h->rand;
    c.alloc = h->alloc;
    struct raft_initial init = {0};
    struct raft_conf boot = {0};
    struct wal_group_info gi;
    rc = wal_group_info(h->wal, range, &gi);
    struct raft_entry *entries = NULL;
    uint64_t n = 0;
    struct chunk *chunks = NULL;
    if (rc == TS_ENOTFOUND) {
        if (r->st.applied_index != 0) {
            HOST_LOG(h, ERROR,
                     "shard %u: range %llu: the B-tree has applied index %llu but the "
                     "log has no record of the group",
                     h->shard_id, (unsigned long long)range,
                     (unsigned long long)r->st.applied_index);
            return TS_ECORRUPT;
        }
        for (uint32_t k = 0; k < h->cl->replicas; k++) {
            uint64_t id = h->cl->m[replica_member(h->cl, range, k)].node_id;
            uint32_t at = boot.n;
            while (at > 0 && boot.m[at - 1].id > id) {
                boot.m[at] = boot.m[at - 1];
                at--;
            }
            boot.m[at] = (struct raft_member){.id = id, .role = RAFT_VOTER};
            boot.n++;
        }
        init.bootstrap = &boot;
    } else if (rc != 0) {
        return rc;
    } else {
        if (r->st.applied_index > gi.last_index) {
            /* A snapshot was installed and checkpointed, and the crash came before the log
             * recorded it: record it now (the tree holds everything up to applied). */
            rc = wal_snapshot(h->wal, range, r->st.applied_index, r->st.applied_term);
            if (rc == 0) {
                rc = wal_group_info(h->wal, range, &gi);
            }
            if (rc != 0) {
                return rc;
            }
            if (gi.hard_state.commit < r->st.applied_index) {
                gi.hard_state.commit = r->st.applied_index;
            }
            if (gi.hard_state.term < r->st.applied_term) {
                gi.hard_state.term = r->st.applied_term;
                gi.hard_state.vote = 0;
            }
        }
        init.hard_state = (struct raft_hard_state){
            .term = gi.hard_state.term, .vote = gi.hard_state.vote, .commit = gi.hard_state.commit};
        init.compact_index = gi.snap_index;
        init.compact_term = gi.snap_term;
        init.applied = r->st.applied_index;
        init.conf = have_conf ? &conf : NULL;
        if (gi.last_index > gi.snap_index) {
            n = gi.last_index - gi.snap_index;
            entries = ts_alloc(h->alloc, (size_t)n * sizeof *entries);
            if (entries == NULL) {
                return TS_ENOMEM;
            }
            rc = read_entries(h, range, gi.snap_index + 1, gi.last_index, entries, &chunks);
            if (rc != 0) {
                chunks_free(h, chunks);
                ts_free(h->alloc, entries, (size_t)n * sizeof *entries);
                return rc;
            }
            init.entries = entries;
            init.n_entries = (size_t)n;
        }
    }
    rc = raft_new(&c, &init, &r->raft);
    chunks_free(h, chunks);
    ts_free(h->alloc, entries, (size_t)n * sizeof *entries);
    if (rc != 0) {
        return rc;
    }
    r->role = raft_role_of(r->raft);
    r->hs = init.hard_state;
    return 0;
}

/* ---- Start, stop -------------------------------------------------------------------------------
 */

static void report_line(void *data, const char *line)
{
    struct host *h = data;
    HOST_LOG(h, INFO, "shard %u: %s", h->shard_id, line);
}

static int open_storage(struct host *h, const char *dir)
{
    char path[HOST_PATH_BYTES + 16];
    char err[256] = "";
    int rc = shard_disk_create(h->loop, NULL, &h->disk);
    if (rc != 0) {
        return rc;
    }
    rc = disk_mkdir(h->disk, dir);
    if (rc != 0 && rc != -EEXIST) {
        HOST_LOG(h, ERROR, "shard %u: cannot create %s: %s", h->shard_id, dir, ts_strerror(rc));
        return rc;
    }
    snprintf(path, sizeof path, "%s/wal", dir);
    struct wal_config wc = {
        .dir = path, .durable_cb = on_durable, .data = h, .report_cb = report_line};
    rc = wal_open(&wc, h->disk, h->alloc, &h->wal, err, sizeof err);
    if (rc != 0) {
        HOST_LOG(h, ERROR, "shard %u: cannot open the log in %s: %s (%s)", h->shard_id, path, err,
                 ts_strerror(rc));
        return rc;
    }
    h->durable_lsn = wal_durable_lsn(h->wal);
    snprintf(path, sizeof path, "%s/data.btree", dir);
    struct btree_config bc = {.path = path, .report_cb = report_line, .data = h};
    rc = btree_open(&bc, h->disk, h->alloc, &h->tree, err, sizeof err);
    if (rc != 0) {
        HOST_LOG(h, ERROR, "shard %u: cannot open the B-tree %s: %s (%s)", h->shard_id, path, err,
                 ts_strerror(rc));
    }
    return rc;
}

#define HOST_CHUNK_BUF_BYTES                                                                       \
    (TS_HOST_SNAPSHOT_CHUNK_BYTES + 8u + KV_SPAN_KEY_BYTES + TS_VALUE_BYTES_MAX)

static int alloc_tables(struct host *h)
{
    const struct host_cluster *cl = h->cl;
    h->rep_of = ts_alloc(h->alloc, (size_t)(cl->ranges + 1) * sizeof *h->rep_of);
    h->guess = ts_alloc(h->alloc, (size_t)(cl->ranges + 1) * sizeof *h->guess);
    h->scratch = ts_alloc(h->alloc, TS_KV_SCRATCH_BYTES);
    h->txn = ts_alloc(h->alloc, sizeof *h->txn);
    h->dec = ts_alloc(h->alloc, TS_RAFT_MSG_ENTRIES_MAX * sizeof *h->dec);
    h->chunk = ts_alloc(h->alloc, HOST_CHUNK_BUF_BYTES);
    if (h->rep_of == NULL || h->guess == NULL || h->scratch == NULL || h->txn == NULL ||
        h->dec == NULL || h->chunk == NULL) {
        return TS_ENOMEM;
    }
    memset(h->guess, 0, (size_t)(cl->ranges + 1) * sizeof *h->guess);
    uint32_t n = 0;
    for (uint64_t range = 1; range <= cl->ranges; range++) {
        bool here = (range - 1) % h->shards == h->shard_id && node_hosts(cl, range, h->self_member);
        h->rep_of[range] = here ? (int32_t)n : -1;
        n += here ? 1 : 0;
    }
    h->reps_n = n;
    size_t cap = n > 0 ? n : 1;
    h->reps = ts_alloc(h->alloc, cap * sizeof *h->reps);
    h->dirty = ts_alloc(h->alloc, cap * sizeof *h->dirty);
    h->readied = ts_alloc(h->alloc, cap * sizeof *h->readied);
    if (h->reps == NULL || h->dirty == NULL || h->readied == NULL) {
        return TS_ENOMEM;
    }
    memset(h->reps, 0, cap * sizeof *h->reps);
    int rc = proto_builder_init(&h->out_b, h->alloc, HOST_BUILDER_BYTES, TS_FRAME_BYTES_MAX);
    if (rc == 0) {
        rc = proto_builder_init(&h->ans_b, h->alloc, HOST_BUILDER_BYTES, TS_FRAME_BYTES_MAX);
    }
    if (rc == 0) {
        rc = proto_builder_init(&h->self_b, h->alloc, 4096u, TS_FRAME_BYTES_MAX);
    }
    kvwire_answer_init(&h->ans, &h->ans_b, h->alloc);
    return rc;
}

int host_start(struct shard *s, const struct host_config *cfg, struct nio *nio, struct host **out)
{
    TS_ASSERT(s != NULL && cfg != NULL && cfg->cluster != NULL && cfg->shared != NULL);
    const struct ts_allocator *a = ts_allocator_default(); /* outlives the node (host_free) */
    struct host *h = ts_alloc(a, sizeof *h);
    if (h == NULL) {
        return TS_ENOMEM;
    }
    memset(h, 0, sizeof *h);
    *out = h;
    h->alloc = a;
    h->shard = s;
    h->loop = shard_get_loop(s);
    h->nio = nio;
    h->shard_id = shard_get_id(s);
    h->shards = shard_get_count(s);
    h->cl = cfg->cluster;
    h->shared = cfg->shared;
    h->log = cfg->log;
    h->self_member = member_of_node(h->cl, h->cl->self);
    h->tick_ns = (uint64_t)(cfg->tick_ms != 0 ? cfg->tick_ms : TS_HOST_TICK_MS_DEFAULT) * 1000000u;
    h->election_ticks = cfg->election_ticks != 0 ? cfg->election_ticks : 10;
    h->checkpoint_entries =
        cfg->checkpoint_entries != 0 ? cfg->checkpoint_entries : TS_HOST_CHECKPOINT_ENTRIES;
    h->retain_entries =
        cfg->log_retain_entries != 0 ? cfg->log_retain_entries : TS_HOST_LOG_RETAIN_ENTRIES;
    h->store = (struct kv_store){.get = st_get,
                                 .put = st_put,
                                 .del = st_del,
                                 .delete_range = st_delete_range,
                                 .count = st_count,
                                 .seek = st_seek,
                                 .next = st_next,
                                 .key = st_key,
                                 .value = st_value,
                                 .ctx = h};
    shard_timer_init(&h->tick);
    ts_map64_init(&h->fwds, a);
    ts_rand_seed(&h->rand, mono_ns() ^ (h->cl->self << 32) ^ h->shard_id);
    ts_hlc_init(&h->hlc, 500, 0);
    TS_ASSERT(h->self_member != UINT32_MAX);
    char dir[HOST_PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/shard-%u", cfg->data_dir, h->shard_id);
    int rc = alloc_tables(h);
    if (rc == 0) {
        rc = open_storage(h, dir);
    }
    for (uint64_t range = 1; rc == 0 && range <= h->cl->ranges; range++) {
        if (h->rep_of[range] >= 0) {
            rc = replica_open(h, &h->reps[h->rep_of[range]], range);
            if (rc != 0) {
                HOST_LOG(h, ERROR, "shard %u: range %llu cannot start: %s", h->shard_id,
                         (unsigned long long)range, store_why(h, rc));
            }
        }
    }
    if (rc == 0) {
        rc = sync_wal(h); /* what recovery recorded (a snapshot the log had missed) */
    }
    for (uint32_t i = 0; rc == 0 && i < h->cl->n; i++) {
        if (i == h->self_member) {
            continue;
        }
        struct peer *p = &h->peers[h->peers_n++];
        p->node = h->cl->m[i].node_id;
        p->member = i;
        rc = nio_connect(h->nio, h->cl->m[i].addr, &p->link);
        if (rc != 0) {
            HOST_LOG(h, ERROR, "shard %u: cannot connect to node %llu at %s: %s", h->shard_id,
                     (unsigned long long)p->node, h->cl->m[i].addr, ts_strerror(rc));
        }
    }
    if (rc == 0) {
        rc = shard_loop_on_iteration(h->loop, on_iteration, h);
    }
    if (rc == 0) {
        rc = shard_timer_start(h->loop, &h->tick, shard_loop_now_ns(h->loop) + h->tick_ns, on_tick,
                               h);
    }
    for (uint32_t i = 0; rc == 0 && i < h->reps_n; i++) {
        mark_dirty(h, &h->reps[i]);
    }
    if (rc != 0) {
        h->stopped = true;
    }
    return rc;
}

bool host_stop(struct host *h)
{
    if (h == NULL || h->stopped) {
        return true;
    }
    h->stopping = true;
    if (!h->failed && h->wal != NULL) {
        int rc = sync_wal(h);
        if (rc != 0) {
            fatal(h, "writing the log failed", rc);
        } else {
            complete_readies(h); /* held proposals are refused: the node is stopping */
            if (h->tree != NULL && !h->failed) {
                checkpoint(h);
            }
        }
    }
    shard_timer_stop(h->loop, &h->tick);
    h->stopped = true;
    const struct host_stats *st = &h->stats;
    HOST_LOG(h, INFO,
             "shard %u: stopped: %llu proposals, %llu entries applied, %llu log syncs, reads "
             "%llu by lease / %llu by ReadIndex / %llu serializable, %llu raft frames out "
             "carrying %llu messages and %llu coalesced heartbeats and answers",
             h->shard_id, (unsigned long long)st->proposals, (unsigned long long)st->applied,
             (unsigned long long)st->wal_syncs, (unsigned long long)st->reads_lease,
             (unsigned long long)st->reads_index, (unsigned long long)st->reads_serializable,
             (unsigned long long)st->frames_out, (unsigned long long)st->messages_out,
             (unsigned long long)st->heartbeats_out);
    return true;
}

void host_free(struct host *h)
{
    if (h == NULL) {
        return;
    }
    const struct ts_allocator *a = h->alloc;
    for (uint32_t i = 0; h->reps != NULL && i < h->reps_n; i++) {
        struct replica *r = &h->reps[i];
        send_free(h, r);
        recv_free(h, r);
        raft_free(r->raft);
        ts_free(a, r->props, (size_t)r->props_cap * sizeof *r->props);
        for (uint32_t j = 0; j < r->reads_n; j++) {
            ts_free(a, r->reads[j].frame, r->reads[j].len);
        }
        ts_free(a, r->reads, (size_t)r->reads_cap * sizeof *r->reads);
        ts_free(a, r->held, r->held_cap);
    }
    if (h->wal != NULL) {
        for (uint32_t i = 0; i < 1000 && !wal_idle(h->wal); i++) {
            (void)disk_run(h->disk, true);
        }
        wal_close(h->wal);
    }
    if (h->tree != NULL) {
        btree_close(h->tree);
    }
    disk_destroy(h->disk);
    size_t cap = h->reps_n > 0 ? h->reps_n : 1;
    ts_free(a, h->reps, cap * sizeof *h->reps);
    ts_free(a, h->dirty, cap * sizeof *h->dirty);
    ts_free(a, h->readied, cap * sizeof *h->readied);
    ts_free(a, h->rep_of, (size_t)(h->cl->ranges + 1) * sizeof *h->rep_of);
    ts_free(a, h->guess, (size_t)(h->cl->ranges + 1) * sizeof *h->guess);
    ts_free(a, h->scratch, TS_KV_SCRATCH_BYTES);
    ts_free(a, h->txn, sizeof *h->txn);
    ts_free(a, h->dec, TS_RAFT_MSG_ENTRIES_MAX * sizeof *h->dec);
    ts_free(a, h->chunk, HOST_CHUNK_BUF_BYTES);
    ts_free(a, h->msgq, (size_t)h->msgq_cap * sizeof *h->msgq);
    ts_free(a, h->refs, (size_t)h->refs_cap * sizeof *h->refs);
    ts_free(a, h->hbs, (size_t)h->hbs_cap * sizeof *h->hbs);
    ts_free(a, h->acks, (size_t)h->acks_cap * sizeof *h->acks);
    ts_free(a, h->cmd, h->cmd_cap);
    ts_free(a, h->wbuf, h->wbuf_cap);
    ts_free(a, h->went, (size_t)h->went_cap * sizeof *h->went);
    /* Every shard has left its loop (fini_cb): buffers still out will not come back. */
    while (h->xbufs != NULL) {
        xbuf_free(h, h->xbufs);
    }
    ts_free(a, h->xq, (size_t)h->xq_cap * sizeof *h->xq);
    uint32_t pos = 0;
    uint64_t id;
    void *v;
    while (ts_map64_next(&h->fwds, &pos, &id, &v)) {
        fwd_free(h, v);
    }
    ts_map64_fini(&h->fwds);
    kvwire_answer_fini(&h->ans);
    proto_builder_fini(&h->out_b);
    proto_builder_fini(&h->ans_b);
    proto_builder_fini(&h->self_b);
    ts_free(a, h, sizeof *h);
}

void host_get_stats(const struct host *h, struct host_stats *out)
{
    *out = h->stats;
}

bool host_failed(const struct host *h)
{
    return h != NULL && h->failed;
}
