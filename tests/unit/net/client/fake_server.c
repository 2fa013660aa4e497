/* The client tests' fake node (fake_server.h). */
#include "fake_server.h"

#include "core/util/limits.h"
#include "core/util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need) {
        return;
    }
    size_t n = *cap > 0 ? *cap : 4096;
    while (n < need) {
        n *= 2;
    }
    *buf = realloc(*buf, n);
    if (*buf == NULL) {
        abort();
    }
    *cap = n;
}

static void out_append(struct fake_conn *fc, const void *p, size_t n)
{
    grow(&fc->out, &fc->out_cap, fc->out_len + n);
    memcpy(fc->out + fc->out_len, p, n);
    fc->out_len += n;
}

static void conn_drop(struct fake_conn *fc)
{
    if (fc->fd >= 0) {
        close(fc->fd);
    }
    for (int i = 0; i < fc->held_count; i++) {
        free(fc->held[i]);
    }
    free(fc->in);
    free(fc->out);
    memset(fc, 0, sizeof(*fc));
    fc->fd = -1;
}

/* Builds the answer to request `id` into s->b; returns the frame. */
static void build_answer(struct fake_server *s, uint64_t id, struct proto_bytes payload,
                         const uint8_t **out, uint32_t *len)
{
    struct proto_builder *b = &s->b;
    proto_builder_reset(b);
    proto_ref op = 0;
    proto_ref hint = 0;
    if (s->mode == FAKE_NOT_LEADER) {
        proto_ref addr = proto_create_string(b, "10.0.0.7:7000", 13);
        proto_leader_hint_begin(b);
        proto_leader_hint_add_node_id(b, 7);
        proto_leader_hint_add_address(b, addr);
        hint = proto_leader_hint_end(b);
    } else {
        proto_ref pl = proto_create_bytes(b, payload.data, payload.len);
        proto_ping_response_begin(b);
        proto_ping_response_add_payload(b, pl);
        op = proto_ping_response_end(b);
    }
    proto_response_begin(b);
    proto_response_add_id(b, id);
    if (hint != 0) {
        proto_response_add_status(b, PROTO_STATUS_NOT_LEADER);
        proto_response_add_leader(b, hint);
    }
    proto_response_add_op(b, PROTO_RESPONSE_OP_PING_RESPONSE, op);
    proto_ref r = proto_response_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RESPONSE, r);
    if (proto_message_finish(b, proto_message_end(b), true, out, len) != 0) {
        abort();
    }
}

/* ---------------------------------------------------------------- the key-value store */

static int bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int r = n > 0 ? memcmp(a, b, n) : 0;
    return r != 0 ? r : an < bn ? -1 : an > bn ? 1 : 0;
}

/* The first index whose key is >= key. */
static size_t kv_lower(const struct fake_server *s, const uint8_t *key, size_t len)
{
    size_t lo = 0;
    size_t hi = s->kv_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (bytes_cmp(s->kvs[mid].key, s->kvs[mid].key_len, key, len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct fake_kv *kv_find(struct fake_server *s, struct proto_bytes k)
{
    size_t i = kv_lower(s, k.data, k.len);
    if (i < s->kv_count && bytes_cmp(s->kvs[i].key, s->kvs[i].key_len, k.data, k.len) == 0) {
        return &s->kvs[i];
    }
    return NULL;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n > 0 ? n : 1);
    if (q == NULL) {
        abort();
    }
    if (n > 0) {
        memcpy(q, p, n);
    }
    return q;
}

/* [lo, hi) of the keys in [key, end): end absent is the key alone, "\0" every key after. */
static void kv_span(const struct fake_server *s, struct proto_bytes key, struct proto_bytes end,
                    size_t *lo, size_t *hi)
{
    *lo = kv_lower(s, key.data, key.len);
    if (end.data == NULL) {
        *hi = *lo;
        if (*lo < s->kv_count &&
            bytes_cmp(s->kvs[*lo].key, s->kvs[*lo].key_len, key.data, key.len) == 0) {
            *hi = *lo + 1;
        }
        return;
    }
    bool unbounded = end.len == 1 && end.data[0] == 0;
    *hi = unbounded ? s->kv_count : kv_lower(s, end.data, end.len);
    if (*hi < *lo) {
        *hi = *lo;
    }
}

static proto_ref kv_ref(struct proto_builder *b, const struct fake_kv *kv, bool keys_only)
{
    proto_ref k = proto_create_bytes(b, kv->key, (uint32_t)kv->key_len);
    proto_ref v = keys_only ? 0 : proto_create_bytes(b, kv->value, (uint32_t)kv->value_len);
    proto_key_value_begin(b);
    proto_key_value_add_key(b, k);
    proto_key_value_add_value(b, v);
    proto_key_value_add_create_revision(b, kv->create_revision);
    proto_key_value_add_mod_revision(b, kv->mod_revision);
    proto_key_value_add_version(b, kv->version);
    proto_key_value_add_lease(b, kv->lease);
    return proto_key_value_end(b);
}

static proto_ref do_put(struct fake_server *s, struct proto_put_request p)
{
    struct proto_builder *b = &s->b;
    struct proto_bytes k = proto_put_request_key(p);
    struct proto_bytes v = proto_put_request_value(p);
    struct fake_kv *kv = kv_find(s, k);
    proto_ref prev = kv != NULL && proto_put_request_prev_kv(p) ? kv_ref(b, kv, false) : 0;
    s->revision++;
    if (kv == NULL) {
        size_t i = kv_lower(s, k.data, k.len);
        if (s->kv_count == s->kv_cap) {
            s->kv_cap = s->kv_cap > 0 ? s->kv_cap * 2 : 16;
            s->kvs = realloc(s->kvs, s->kv_cap * sizeof(*s->kvs));
        }
        memmove(&s->kvs[i + 1], &s->kvs[i], (s->kv_count - i) * sizeof(*s->kvs));
        s->kv_count++;
        kv = &s->kvs[i];
        *kv = (struct fake_kv){.key = dup_bytes(k.data, k.len),
                               .key_len = k.len,
                               .value = dup_bytes(NULL, 0),
                               .create_revision = s->revision};
    }
    if (!proto_put_request_ignore_value(p)) {
        free(kv->value);
        kv->value = dup_bytes(v.data, v.len);
        kv->value_len = v.len;
    }
    if (!proto_put_request_ignore_lease(p)) {
        kv->lease = proto_put_request_lease(p);
    }
    kv->mod_revision = s->revision;
    kv->version++;
    proto_put_response_begin(b);
    proto_put_response_add_prev_kv(b, prev);
    return proto_put_response_end(b);
}

static proto_ref do_get(struct fake_server *s, struct proto_get_request g)
{
    struct fake_kv *kv = kv_find(s, proto_get_request_key(g));
    proto_ref r = kv != NULL ? kv_ref(&s->b, kv, false) : 0;
    proto_get_response_begin(&s->b);
    proto_get_response_add_kv(&s->b, r);
    return proto_get_response_end(&s->b);
}

static proto_ref do_delete(struct fake_server *s, struct proto_delete_request d)
{
    struct proto_builder *b = &s->b;
    size_t lo, hi;
    kv_span(s, proto_delete_request_key(d), proto_delete_request_range_end(d), &lo, &hi);
    proto_ref refs[256];
    size_t n = 0;
    for (size_t i = lo; i < hi && proto_delete_request_prev_kv(d) && n < 256; i++) {
        refs[n++] = kv_ref(b, &s->kvs[i], false);
    }
    proto_ref prevs = n > 0 ? proto_create_vec_ref(b, refs, (uint32_t)n) : 0;
    for (size_t i = lo; i < hi; i++) {
        free(s->kvs[i].key);
        free(s->kvs[i].value);
    }
    memmove(&s->kvs[lo], &s->kvs[hi], (s->kv_count - hi) * sizeof(*s->kvs));
    s->kv_count -= hi - lo;
    s->revision += hi > lo;
    proto_delete_response_begin(b);
    proto_delete_response_add_deleted(b, hi - lo);
    proto_delete_response_add_prev_kvs(b, prevs);
    return proto_delete_response_end(b);
}

static proto_ref do_range(struct fake_server *s, struct proto_range_request q)
{
    struct proto_builder *b = &s->b;
    size_t lo, hi;
    kv_span(s, proto_range_request_key(q), proto_range_request_range_end(q), &lo, &hi);
    uint64_t limit = proto_range_request_limit(q);
    size_t take = limit != 0 && limit < hi - lo ? (size_t)limit : hi - lo;
    size_t page = atomic_load(&s->page_max) > 0 ? (size_t)atomic_load(&s->page_max) : 256;
    take = take > page ? page : take;
    bool count_only = proto_range_request_count_only(q);
    proto_ref refs[256];
    for (size_t i = 0; i < take && !count_only; i++) {
        refs[i] = kv_ref(b, &s->kvs[lo + i], proto_range_request_keys_only(q));
    }
    proto_ref kvs = count_only ? 0 : proto_create_vec_ref(b, refs, (uint32_t)take);
    bool more = !count_only && lo + take < hi;
    proto_ref next =
        more ? proto_create_bytes(b, s->kvs[lo + take].key, (uint32_t)s->kvs[lo + take].key_len)
             : 0;
    if (atomic_load(&s->stuck_paging) != 0) {
        struct proto_bytes k = proto_range_request_key(q);
        next = proto_create_bytes(b, k.data, k.len);
        more = true;
    }
    proto_range_response_begin(b);
    proto_range_response_add_kvs(b, kvs);
    proto_range_response_add_more(b, more);
    proto_range_response_add_count(b, hi - lo);
    proto_range_response_add_next_key(b, next);
    return proto_range_response_end(b);
}

static bool cmp_holds(const struct fake_kv *kv, struct proto_compare m)
{
    int c;
    if (proto_compare_target(m) == PROTO_COMPARE_TARGET_VALUE) {
        struct proto_bytes v = proto_compare_value(m);
        c = kv == NULL ? -1 : bytes_cmp(kv->value, kv->value_len, v.data, v.len);
    } else {
        uint64_t x = 0;
        switch (proto_compare_target(m)) {
        case PROTO_COMPARE_TARGET_VERSION:
            x = kv != NULL ? kv->version : 0;
            break;
        case PROTO_COMPARE_TARGET_CREATE_REVISION:
            x = kv != NULL ? kv->create_revision : 0;
            break;
        case PROTO_COMPARE_TARGET_MOD_REVISION:
            x = kv != NULL ? kv->mod_revision : 0;
            break;
        default:
            x = kv != NULL ? kv->lease : 0;
        }
        int64_t n = proto_compare_number(m);
        c = (int64_t)x < n ? -1 : (int64_t)x > n ? 1 : 0;
    }
    switch (proto_compare_result(m)) {
    case PROTO_COMPARE_RESULT_EQUAL:
        return c == 0;
    case PROTO_COMPARE_RESULT_NOT_EQUAL:
        return c != 0;
    case PROTO_COMPARE_RESULT_LESS:
        return c < 0;
    default:
        return c > 0;
    }
}

static proto_ref do_txn(struct fake_server *s, struct proto_txn_request t)
{
    struct proto_builder *b = &s->b;
    struct proto_vec cmps = proto_txn_request_compares(t);
    bool ok = true;
    for (uint32_t i = 0; i < cmps.len && ok; i++) {
        struct proto_compare m = proto_compare_vec_at(cmps, i);
        ok = cmp_holds(kv_find(s, proto_compare_key(m)), m);
    }
    struct proto_vec ops = ok ? proto_txn_request_success(t) : proto_txn_request_failure(t);
    proto_ref refs[256];
    for (uint32_t i = 0; i < ops.len && i < 256; i++) {
        struct proto_txn_op o = proto_txn_op_vec_at(ops, i);
        uint8_t type = proto_txn_op_op_type(o);
        proto_ref r =
            type == PROTO_TXN_OP_BODY_PUT_REQUEST   ? do_put(s, proto_txn_op_op_as_put_request(o))
            : type == PROTO_TXN_OP_BODY_GET_REQUEST ? do_get(s, proto_txn_op_op_as_get_request(o))
            : type == PROTO_TXN_OP_BODY_DELETE_REQUEST
                ? do_delete(s, proto_txn_op_op_as_delete_request(o))
                : do_range(s, proto_txn_op_op_as_range_request(o));
        proto_txn_op_result_begin(b);
        proto_txn_op_result_add_result(b, type, r); /* the same member numbers */
        refs[i] = proto_txn_op_result_end(b);
    }
    proto_ref results = proto_create_vec_ref(b, refs, ops.len < 256 ? ops.len : 256);
    proto_txn_response_begin(b);
    proto_txn_response_add_succeeded(b, ok);
    proto_txn_response_add_results(b, results);
    return proto_txn_response_end(b);
}

static proto_ref do_status(struct fake_server *s)
{
    proto_ref v = proto_create_string(&s->b, "fake-1.0", 8);
    proto_status_response_begin(&s->b);
    proto_status_response_add_node_id(&s->b, s->port);
    proto_status_response_add_cluster_id(&s->b, 42);
    proto_status_response_add_version(&s->b, v);
    proto_status_response_add_shards(&s->b, 2);
    proto_status_response_add_replicas(&s->b, 3);
    proto_status_response_add_leaders(&s->b, 1);
    proto_status_response_add_db_size_bytes(&s->b, 4096);
    proto_status_response_add_wal_size_bytes(&s->b, 8192);
    proto_status_response_add_uptime_ms(&s->b, 1234);
    return proto_status_response_end(&s->b);
}

static proto_ref do_members(struct fake_server *s)
{
    struct proto_builder *b = &s->b;
    proto_ref refs[2];
    for (int i = 0; i < 2; i++) {
        char addr[32];
        int n = snprintf(addr, sizeof(addr), "127.0.0.1:%d", 7001 + i);
        proto_ref a = proto_create_string(b, addr, (uint32_t)n);
        proto_member_begin(b);
        proto_member_add_node_id(b, (uint64_t)i + 1);
        proto_member_add_address(b, a);
        proto_member_add_shards(b, 2);
        proto_member_add_state(b, i == 0 ? PROTO_NODE_STATE_UP : PROTO_NODE_STATE_SUSPECT);
        proto_member_add_capacity_bytes(b, 1u << 30);
        proto_member_add_used_bytes(b, 1u << 20);
        proto_member_add_replicas(b, 5);
        proto_member_add_leaders(b, (uint32_t)i);
        refs[i] = proto_member_end(b);
    }
    proto_ref v = proto_create_vec_ref(b, refs, 2);
    proto_members_response_begin(b);
    proto_members_response_add_members(b, v);
    return proto_members_response_end(b);
}

/* ---------------------------------------------------------------- key-value answers */

struct answer {
    uint16_t status;
    uint8_t op_type;
    proto_ref op;
    bool hint;
    bool range;
    const char *message;
};

static proto_ref range_ref(struct fake_server *s)
{
    struct proto_builder *b = &s->b;
    proto_ref sk = proto_create_bytes(b, s->range_start, (uint32_t)strlen(s->range_start));
    proto_ref ek = proto_create_bytes(b, s->range_end, (uint32_t)strlen(s->range_end));
    struct proto_range_epoch ep = {.generation = s->generation, .conf_version = s->conf_version};
    proto_range_descriptor_begin(b);
    proto_range_descriptor_add_range_id(b, s->range_id);
    proto_range_descriptor_add_start_key(b, sk);
    proto_range_descriptor_add_end_key(b, ek);
    proto_range_descriptor_add_epoch(b, &ep);
    return proto_range_descriptor_end(b);
}

static void send_answer(struct fake_server *s, struct fake_conn *fc, uint64_t id,
                        const struct answer *a)
{
    struct proto_builder *b = &s->b;
    proto_ref hint = 0;
    if (a->hint) {
        proto_ref addr =
            s->hint_address[0] != '\0'
                ? proto_create_string(b, s->hint_address, (uint32_t)strlen(s->hint_address))
                : 0;
        proto_leader_hint_begin(b);
        proto_leader_hint_add_node_id(b, 9);
        proto_leader_hint_add_address(b, addr);
        hint = proto_leader_hint_end(b);
    }
    proto_ref range = a->range ? range_ref(s) : 0;
    proto_ref msg =
        a->message != NULL ? proto_create_string(b, a->message, (uint32_t)strlen(a->message)) : 0;
    proto_response_begin(b);
    proto_response_add_id(b, id);
    proto_response_add_status(b, a->status);
    proto_response_add_message(b, msg);
    proto_response_add_leader(b, hint);
    proto_response_add_range(b, range);
    proto_response_add_revision(b, s->revision);
    if (a->op != 0) {
        proto_response_add_op(b, a->op_type, a->op);
    }
    proto_ref r = proto_response_end(b);
    proto_message_begin(b);
    proto_message_add_body(b, PROTO_BODY_RESPONSE, r);
    const uint8_t *frame;
    uint32_t len;
    if (proto_message_finish(b, proto_message_end(b), true, &frame, &len) != 0) {
        abort();
    }
    out_append(fc, frame, len);
}

/* The routing switches for a keyed request; returns true when they answered it. */
static bool route_switches(struct fake_server *s, struct proto_request r, struct answer *a)
{
    uint64_t rid = proto_request_range_id(r);
    struct proto_range_epoch ep = proto_request_epoch(r);
    atomic_store(&s->last_range_id, rid);
    atomic_store(&s->last_generation, ep.generation);
    if (atomic_load(&s->not_leader_left) > 0) {
        atomic_fetch_sub(&s->not_leader_left, 1);
        *a = (struct answer){.status = PROTO_STATUS_NOT_LEADER,
                             .hint = true,
                             .range = atomic_load(&s->hint_with_range) != 0,
                             .message = "not the leader"};
        return true;
    }
    if (atomic_load(&s->stale_left) > 0 ||
        (rid != 0 && (rid != s->range_id || ep.generation < s->generation))) {
        if (atomic_load(&s->stale_left) > 0) {
            atomic_fetch_sub(&s->stale_left, 1);
        }
        *a = (struct answer){
            .status = PROTO_STATUS_STALE_EPOCH, .range = true, .message = "stale epoch"};
        return true;
    }
    if (atomic_load(&s->not_found_left) > 0) {
        atomic_fetch_sub(&s->not_found_left, 1);
        *a = (struct answer){.status = PROTO_STATUS_RANGE_NOT_FOUND, .message = "no range"};
        return true;
    }
    return false;
}

/* A key-value or cluster request; returns false when r is none of them. */
static bool handle_kv(struct fake_server *s, struct fake_conn *fc, struct proto_request r)
{
    uint8_t type = proto_request_op_type(r);
    struct answer a = {.op_type = 0};
    bool keyed = type >= PROTO_REQUEST_OP_PUT_REQUEST && type <= PROTO_REQUEST_OP_TXN_REQUEST;
    if (!keyed && type != PROTO_REQUEST_OP_STATUS_REQUEST &&
        type != PROTO_REQUEST_OP_MEMBERS_REQUEST) {
        return false;
    }
    atomic_fetch_add(&s->kv_requests, 1);
    atomic_store(&s->last_op, type);
    atomic_store(&s->last_consistency, proto_request_consistency(r));
    proto_builder_reset(&s->b);
    if (keyed && route_switches(s, r, &a)) {
        send_answer(s, fc, proto_request_id(r), &a);
        return true;
    }
    if (atomic_load(&s->fail_status) != 0) {
        a = (struct answer){.status = (uint16_t)atomic_load(&s->fail_status),
                            .message = "injected failure"};
        send_answer(s, fc, proto_request_id(r), &a);
        return true;
    }
    switch (type) {
    case PROTO_REQUEST_OP_PUT_REQUEST:
        a.op = do_put(s, proto_request_op_as_put_request(r));
        a.op_type = PROTO_RESPONSE_OP_PUT_RESPONSE;
        break;
    case PROTO_REQUEST_OP_GET_REQUEST:
        a.op = do_get(s, proto_request_op_as_get_request(r));
        a.op_type = PROTO_RESPONSE_OP_GET_RESPONSE;
        break;
    case PROTO_REQUEST_OP_DELETE_REQUEST:
        a.op = do_delete(s, proto_request_op_as_delete_request(r));
        a.op_type = PROTO_RESPONSE_OP_DELETE_RESPONSE;
        break;
    case PROTO_REQUEST_OP_RANGE_REQUEST:
        a.op = do_range(s, proto_request_op_as_range_request(r));
        a.op_type = PROTO_RESPONSE_OP_RANGE_RESPONSE;
        break;
    case PROTO_REQUEST_OP_TXN_REQUEST:
        a.op = do_txn(s, proto_request_op_as_txn_request(r));
        a.op_type = PROTO_RESPONSE_OP_TXN_RESPONSE;
        break;
    case PROTO_REQUEST_OP_STATUS_REQUEST:
        a.op = do_status(s);
        a.op_type = PROTO_RESPONSE_OP_STATUS_RESPONSE;
        break;
    default:
        a.op = do_members(s);
        a.op_type = PROTO_RESPONSE_OP_MEMBERS_RESPONSE;
    }
    a.range = keyed && atomic_load(&s->attach_range) != 0;
    send_answer(s, fc, proto_request_id(r), &a);
    return true;
}

/* One request frame. Returns false when the connection is to be closed. */
static bool handle_request(struct fake_server *s, struct fake_conn *fc, const uint8_t *p,
                           uint32_t n)
{
    struct proto_message m;
    if (proto_message_decode(p, n, true, &m, NULL, 0) != 0) {
        return false;
    }
    struct proto_request r = proto_message_body_as_request(m);
    if (r.tab != NULL && handle_kv(s, fc, r)) {
        atomic_fetch_add(&s->requests, 1);
        return true;
    }
    struct proto_ping_request pr = proto_request_op_as_ping_request(r);
    if (pr.tab == NULL) {
        return false;
    }
    atomic_fetch_add(&s->requests, 1);
    if (s->mode == FAKE_SILENT) {
        return true;
    }
    if (s->mode == FAKE_CLOSE && s->close_left > 0 && s->close_skip-- <= 0) {
        s->close_left--;
        return false;
    }
    if (s->mode == FAKE_GARBAGE && s->garbage_left > 0) {
        s->garbage_left--;
        uint8_t junk[24];
        memset(junk, 0xa5, sizeof(junk));
        junk[0] = 20; /* a well-formed length: 24 bytes in all */
        junk[1] = junk[2] = junk[3] = 0;
        out_append(fc, junk, sizeof(junk));
        return true;
    }
    const uint8_t *frame;
    uint32_t len;
    build_answer(s, proto_request_id(r), proto_ping_request_payload(pr), &frame, &len);
    if (s->mode == FAKE_REORDER) {
        fc->held[fc->held_count] = malloc(len);
        memcpy(fc->held[fc->held_count], frame, len);
        fc->held_len[fc->held_count++] = len;
        if (fc->held_count == s->reorder_window) {
            while (fc->held_count > 0) {
                fc->held_count--;
                out_append(fc, fc->held[fc->held_count], fc->held_len[fc->held_count]);
                free(fc->held[fc->held_count]);
            }
        }
        return true;
    }
    out_append(fc, frame, len);
    return true;
}

static bool send_all(int fd, const uint8_t *p, size_t n, bool split)
{
    while (n > 0) {
        ssize_t w = send(fd, p, split ? 1 : n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads what is there, answers every whole frame. Returns false to close. */
static bool conn_readable(struct fake_server *s, struct fake_conn *fc)
{
    grow(&fc->in, &fc->in_cap, fc->in_len + 65536);
    ssize_t n = recv(fc->fd, fc->in + fc->in_len, fc->in_cap - fc->in_len, 0);
    if (n <= 0) {
        return false;
    }
    fc->in_len += (size_t)n;
    size_t off = 0;
    bool keep = true;
    while (keep) {
        int64_t fs = proto_frame_size(fc->in + off, fc->in_len - off, TS_FRAME_BYTES_MAX);
        if (fs < 0) {
            return false;
        }
        if (fs == 0) {
            break;
        }
        keep = handle_request(s, fc, fc->in + off, (uint32_t)fs);
        off += (size_t)fs;
    }
    memmove(fc->in, fc->in + off, fc->in_len - off);
    fc->in_len -= off;
    if (s->mode == FAKE_DELAY && fc->out_len > 0) {
        usleep((useconds_t)s->delay_ms * 1000);
    }
    bool ok = send_all(fc->fd, fc->out, fc->out_len, s->mode == FAKE_SPLIT);
    fc->out_len = 0;
    return keep && ok;
}

static void accept_one(struct fake_server *s)
{
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (int i = 0; i < FAKE_CONNS_MAX; i++) {
        if (s->conns[i].fd < 0) {
            s->conns[i].fd = fd;
            atomic_fetch_add(&s->accepted, 1);
            return;
        }
    }
    close(fd);
}

static void *fake_main(void *arg)
{
    struct fake_server *s = arg;
    for (;;) {
        struct pollfd pfds[FAKE_CONNS_MAX + 2];
        int idx[FAKE_CONNS_MAX + 2];
        int n = 0;
        pfds[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        pfds[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        for (int i = 0; i < FAKE_CONNS_MAX; i++) {
            if (s->conns[i].fd >= 0) {
                idx[n] = i;
                pfds[n++] = (struct pollfd){.fd = s->conns[i].fd, .events = POLLIN};
            }
        }
        if (poll(pfds, (nfds_t)n, -1) < 0 && errno != EINTR) {
            abort();
        }
        if (pfds[0].revents != 0) {
            return NULL;
        }
        if (pfds[1].revents != 0) {
            accept_one(s);
        }
        for (int k = 2; k < n; k++) {
            if (pfds[k].revents != 0 && !conn_readable(s, &s->conns[idx[k]])) {
                conn_drop(&s->conns[idx[k]]);
            }
        }
    }
}

int fake_start(struct fake_server *s)
{
    for (int i = 0; i < FAKE_CONNS_MAX; i++) {
        memset(&s->conns[i], 0, sizeof(s->conns[i]));
        s->conns[i].fd = -1;
    }
    atomic_store(&s->requests, 0);
    atomic_store(&s->accepted, 0);
    atomic_store(&s->kv_requests, 0);
    s->kvs = NULL;
    s->kv_count = s->kv_cap = 0;
    s->revision = 0;
    if (proto_builder_init(&s->b, ts_allocator_default(), 4096, TS_FRAME_BYTES_MAX) != 0) {
        return -ENOMEM;
    }
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(s->listen_fd, 64) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0 || pipe(s->wake) != 0) {
        return -errno;
    }
    s->port = ntohs(a.sin_port);
    int rc = pthread_create(&s->thread, NULL, fake_main, s);
    return -rc;
}

void fake_stop(struct fake_server *s)
{
    if (write(s->wake[1], "x", 1) != 1) {
        abort();
    }
    pthread_join(s->thread, NULL);
    for (int i = 0; i < FAKE_CONNS_MAX; i++) {
        conn_drop(&s->conns[i]);
    }
    close(s->listen_fd);
    close(s->wake[0]);
    close(s->wake[1]);
    proto_builder_fini(&s->b);
    for (size_t i = 0; i < s->kv_count; i++) {
        free(s->kvs[i].key);
        free(s->kvs[i].value);
    }
    free(s->kvs);
    s->kvs = NULL;
    s->kv_count = s->kv_cap = 0;
}

uint16_t fake_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}
