/* net/client key-value requests (kv.c, ops.c) against the fake node's in-memory store:
 * encoders, decoders, accessors, the blocking calls, argument checks and status mapping. */
#include "fake_server.h"

#include "net/client/tessera.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fake_server kv_srv[2];
static int kv_started;

static void kv_teardown(void)
{
    for (int i = 0; i < kv_started; i++) {
        fake_stop(&kv_srv[i]);
        memset(&kv_srv[i], 0, sizeof(kv_srv[i]));
    }
    kv_started = 0;
}

/* Starts n fake nodes and a client on them (in that order). */
static struct tessera_client *kv_client(int n)
{
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        cr_assert_eq(fake_start(&kv_srv[i]), 0);
        size_t at = strlen(list);
        snprintf(list + at, sizeof(list) - at, "%s127.0.0.1:%u", i > 0 ? "," : "", kv_srv[i].port);
    }
    kv_started = n;
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = list;
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 5;
    struct tessera_client *c = NULL;
    cr_assert_eq(tessera_client_new(&cfg, &c), 0);
    return c;
}

TestSuite(net_client_kv, .fini = kv_teardown, .timeout = 60);

/* An async answer copied out of the callback. */
struct got {
    int done;
    int status;
    char message[64];
    struct tessera_response r;
    char value[64];
    size_t kvs;
    char keys[16][16];
    size_t results;
    int sub_ops[8];
};

static void got_cb(void *data, int status, const struct tessera_response *resp)
{
    struct got *g = data;
    g->done++;
    g->status = status;
    if (resp == NULL) {
        return;
    }
    g->r = *resp;
    snprintf(g->message, sizeof(g->message), "%s", resp->message != NULL ? resp->message : "");
    if (status == 0 && resp->op == TESSERA_OP_GET && resp->u.get.found) {
        snprintf(g->value, sizeof(g->value), "%.*s", (int)resp->u.get.kv.value_len,
                 (const char *)resp->u.get.kv.value);
    }
    if (status == 0 && resp->op == TESSERA_OP_PUT && resp->u.put.has_prev) {
        snprintf(g->value, sizeof(g->value), "%.*s", (int)resp->u.put.prev.value_len,
                 (const char *)resp->u.put.prev.value);
    }
    g->kvs = tessera_response_kvs(resp);
    for (size_t i = 0; i < g->kvs && i < 16; i++) {
        struct tessera_kv kv;
        cr_assert_eq(tessera_response_kv_at(resp, i, &kv), 0);
        snprintf(g->keys[i], sizeof(g->keys[i]), "%.*s", (int)kv.key_len, (const char *)kv.key);
    }
    struct tessera_kv kv;
    cr_assert_eq(tessera_response_kv_at(resp, g->kvs, &kv), TESSERA_EINVAL);
    if (status == 0 && resp->op == TESSERA_OP_TXN) {
        g->results = resp->u.txn.results;
        for (size_t i = 0; i < g->results && i < 8; i++) {
            struct tessera_response sub;
            cr_assert_eq(tessera_response_txn_result(resp, i, &sub), 0);
            g->sub_ops[i] = sub.op;
            if (sub.op == TESSERA_OP_GET && sub.u.get.found) {
                snprintf(g->value, sizeof(g->value), "%.*s", (int)sub.u.get.kv.value_len,
                         (const char *)sub.u.get.kv.value);
            }
        }
    }
    g->r.message = NULL;
    g->r.internal_ = NULL;
}

static void run_until(struct tessera_client *c, struct got *g)
{
    while (g->done == 0) {
        cr_assert_geq(tessera_client_run(c, -1), 0);
    }
    cr_assert_eq(g->done, 1);
}

static void put_str(struct tessera_client *c, const char *k, const char *v)
{
    int rc = tessera_put(c, k, strlen(k), v, strlen(v), 0, 0, 0);
    cr_assert_eq(rc, 0, "put %s: %s", k, tessera_strerror(rc));
}

Test(net_client_kv, put_then_get_with_metadata_and_prev_kv)
{
    struct tessera_client *c = kv_client(1);
    put_str(c, "k", "one");
    struct got g = {0};
    cr_assert_eq(tessera_put_async(c, "k", 1, "two", 3, 7, TESSERA_PREV_KV, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.status, 0);
    cr_assert_eq(g.r.op, TESSERA_OP_PUT);
    cr_assert(g.r.u.put.has_prev);
    cr_assert_str_eq(g.value, "one");
    cr_assert_eq(g.r.revision, 2);

    char buf[8];
    size_t len = 0;
    struct tessera_kv meta;
    cr_assert_eq(tessera_get(c, "k", 1, TESSERA_LINEARIZABLE, buf, sizeof(buf), &len, &meta, 0), 0);
    cr_assert_eq(len, 3);
    cr_assert_arr_eq(buf, "two", 3);
    cr_assert_eq(meta.version, 2);
    cr_assert_eq(meta.create_revision, 1);
    cr_assert_eq(meta.mod_revision, 2);
    cr_assert_eq(meta.lease, 7);
    cr_assert_null(meta.key, "no pointer outlives the callback");
    cr_assert_eq(tessera_get(c, "k", 1, TESSERA_SERIALIZABLE, buf, 1, &len, NULL, 0), 0);
    cr_assert_eq(len, 3, "the full length, whatever the buffer");
    cr_assert_eq(buf[0], 't');
    cr_assert_eq(atomic_load(&kv_srv[0].last_consistency), TESSERA_SERIALIZABLE);
    tessera_client_free(c);
}

Test(net_client_kv, a_missing_key_is_found_zero_or_enotfound)
{
    struct tessera_client *c = kv_client(1);
    struct got g = {0};
    cr_assert_eq(tessera_get_async(c, "nope", 4, TESSERA_LINEARIZABLE, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.status, 0);
    cr_assert_eq(g.r.op, TESSERA_OP_GET);
    cr_assert_eq(g.r.u.get.found, 0);
    size_t len = 99;
    cr_assert_eq(tessera_get(c, "nope", 4, TESSERA_LINEARIZABLE, NULL, 0, &len, NULL, 0),
                 TESSERA_ENOTFOUND);
    cr_assert_eq(len, 0);
    tessera_client_free(c);
}

Test(net_client_kv, delete_a_key_and_a_range_with_prev_kvs)
{
    struct tessera_client *c = kv_client(1);
    const char *keys[] = {"a", "b1", "b2", "b3", "c"};
    for (int i = 0; i < 5; i++) {
        put_str(c, keys[i], "v");
    }
    uint64_t deleted = 9;
    cr_assert_eq(tessera_delete(c, "a", 1, NULL, 0, &deleted, 0), 0);
    cr_assert_eq(deleted, 1);
    cr_assert_eq(tessera_delete(c, "a", 1, NULL, 0, &deleted, 0), 0);
    cr_assert_eq(deleted, 0, "deleting a missing key is no error");
    struct got g = {0};
    cr_assert_eq(tessera_delete_async(c, "b", 1, "c", 1, TESSERA_PREV_KV, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.status, 0);
    cr_assert_eq(g.r.op, TESSERA_OP_DELETE);
    cr_assert_eq(g.r.u.del.deleted, 3);
    cr_assert_eq(g.kvs, 3);
    cr_assert_str_eq(g.keys[0], "b1");
    cr_assert_str_eq(g.keys[2], "b3");
    cr_assert_eq(tessera_get(c, "c", 1, TESSERA_LINEARIZABLE, NULL, 0, NULL, NULL, 0), 0);
    tessera_client_free(c);
}

struct rows {
    int n;
    char keys[32][8];
    int values_null;
    int stop_at;
};

static int row_cb(void *data, const struct tessera_kv *kv)
{
    struct rows *r = data;
    snprintf(r->keys[r->n], sizeof(r->keys[0]), "%.*s", (int)kv->key_len, (const char *)kv->key);
    r->values_null += kv->value == NULL;
    r->n++;
    return r->stop_at != 0 && r->n == r->stop_at ? 42 : 0;
}

static void put_ten(struct tessera_client *c)
{
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%02d", i);
        put_str(c, k, "value");
    }
    put_str(c, "z", "after");
}

Test(net_client_kv, range_pages_limits_keys_only_and_count_only)
{
    struct tessera_client *c = kv_client(1);
    put_ten(c);
    atomic_store(&kv_srv[0].page_max, 3);
    struct tessera_range_opts o = {.key = "k", .key_len = 1, .range_end = "l", .range_end_len = 1};
    struct got g = {0};
    cr_assert_eq(tessera_range_async(c, &o, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.r.op, TESSERA_OP_RANGE);
    cr_assert_eq(g.kvs, 3);
    cr_assert_eq(g.r.u.range.count, 10);
    cr_assert(g.r.u.range.more);
    cr_assert_str_eq(g.keys[0], "k00");

    struct rows r = {0};
    uint64_t count = 0;
    cr_assert_eq(tessera_range(c, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(r.n, 10, "four pages of at most three");
    cr_assert_eq(count, 10);
    cr_assert_str_eq(r.keys[9], "k09");
    cr_assert_eq(r.values_null, 0);

    r = (struct rows){0};
    o.limit = 7;
    o.flags = TESSERA_KEYS_ONLY;
    cr_assert_eq(tessera_range(c, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(r.n, 7);
    cr_assert_eq(count, 7);
    cr_assert_eq(r.values_null, 7);

    r = (struct rows){.stop_at = 2};
    o.limit = 0;
    cr_assert_eq(tessera_range(c, &o, row_cb, &r, NULL, 0), 42, "the row callback stops it");
    cr_assert_eq(r.n, 2);

    r = (struct rows){0};
    o.flags = TESSERA_COUNT_ONLY;
    cr_assert_eq(tessera_range(c, &o, row_cb, &r, &count, 0), 0);
    cr_assert_eq(count, 10);
    cr_assert_eq(r.n, 0);
    tessera_client_free(c);
}

Test(net_client_kv, txn_takes_then_or_else_and_reports_results)
{
    struct tessera_client *c = kv_client(1);
    struct tessera_compare absent = {.key = "lock",
                                     .key_len = 4,
                                     .target = TESSERA_CMP_VERSION,
                                     .result = TESSERA_CMP_EQUAL,
                                     .number = 0};
    struct tessera_txn_op then_ops[] = {
        {.op = TESSERA_OP_PUT, .key = "lock", .key_len = 4, .value = "me", .value_len = 2},
        {.op = TESSERA_OP_RANGE, .key = "a", .key_len = 1, .range_end = "\0", .range_end_len = 1},
    };
    struct tessera_txn_op else_ops[] = {{.op = TESSERA_OP_GET, .key = "lock", .key_len = 4}};
    int ok = -1;
    cr_assert_eq(tessera_txn(c, &absent, 1, then_ops, 2, else_ops, 1, &ok, 0), 0);
    cr_assert_eq(ok, 1);
    struct got g = {0};
    cr_assert_eq(tessera_txn_async(c, &absent, 1, then_ops, 2, else_ops, 1, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.status, 0);
    cr_assert_eq(g.r.u.txn.succeeded, 0, "the lock is taken now");
    cr_assert_eq(g.results, 1);
    cr_assert_eq(g.sub_ops[0], TESSERA_OP_GET);
    cr_assert_str_eq(g.value, "me");
    struct tessera_compare by_value = {.key = "lock",
                                       .key_len = 4,
                                       .target = TESSERA_CMP_VALUE,
                                       .result = TESSERA_CMP_EQUAL,
                                       .value = "me",
                                       .value_len = 2};
    struct tessera_txn_op del = {.op = TESSERA_OP_DELETE, .key = "lock", .key_len = 4};
    cr_assert_eq(tessera_txn(c, &by_value, 1, &del, 1, NULL, 0, &ok, 0), 0);
    cr_assert_eq(ok, 1);
    cr_assert_eq(tessera_get(c, "lock", 4, TESSERA_LINEARIZABLE, NULL, 0, NULL, NULL, 0),
                 TESSERA_ENOTFOUND);
    tessera_client_free(c);
}

Test(net_client_kv, status_of_one_node_and_members)
{
    struct tessera_client *c = kv_client(2);
    for (int e = 0; e < 2; e++) {
        struct got g = {0};
        cr_assert_eq(tessera_status_async(c, e, got_cb, &g), 0);
        run_until(c, &g);
        cr_assert_eq(g.status, 0);
        cr_assert_eq(g.r.op, TESSERA_OP_STATUS);
        cr_assert_eq(g.r.u.status.node_id, kv_srv[e].port, "pinned to endpoint %d", e);
        cr_assert_eq(g.r.u.status.cluster_id, 42);
        cr_assert_eq(g.r.u.status.shards, 2);
        cr_assert_eq(g.r.u.status.uptime_ms, 1234);
    }
    struct got g = {0};
    cr_assert_eq(tessera_status_async(c, 2, got_cb, &g), TESSERA_EINVAL);
    cr_assert_eq(tessera_status_async(c, -2, got_cb, &g), TESSERA_EINVAL);
    cr_assert_eq(tessera_members_async(c, TESSERA_LINEARIZABLE, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.r.op, TESSERA_OP_MEMBERS);
    cr_assert_eq(g.r.u.members.count, 2);
    tessera_client_free(c);
}

static void members_cb(void *data, int status, const struct tessera_response *resp)
{
    int *seen = data;
    cr_assert_eq(status, 0);
    struct tessera_member m;
    cr_assert_eq(tessera_response_member_at(resp, 1, &m), 0);
    cr_assert_eq(m.node_id, 2);
    cr_assert_str_eq(m.address, "127.0.0.1:7002");
    cr_assert_eq(m.state, TESSERA_NODE_SUSPECT);
    cr_assert_eq(m.leaders, 1);
    cr_assert_eq(tessera_response_member_at(resp, 2, &m), TESSERA_EINVAL);
    cr_assert_eq(tessera_response_kvs(resp), 0);
    *seen = 1;
}

Test(net_client_kv, member_accessor)
{
    struct tessera_client *c = kv_client(1);
    int seen = 0;
    cr_assert_eq(tessera_members_async(c, TESSERA_LINEARIZABLE, members_cb, &seen), 0);
    while (!seen) {
        tessera_client_run(c, -1);
    }
    tessera_client_free(c);
}

Test(net_client_kv, arguments_are_checked_before_sending)
{
    struct tessera_client *c = kv_client(1);
    struct got g = {0};
    static uint8_t big[TESSERA_VALUE_BYTES_MAX + 1];
    cr_assert_eq(tessera_put_async(c, NULL, 1, "v", 1, 0, 0, got_cb, &g), TESSERA_EINVAL);
    cr_assert_eq(tessera_put_async(c, "", 0, "v", 1, 0, 0, got_cb, &g), TESSERA_EINVAL);
    cr_assert_eq(tessera_put_async(c, big, TESSERA_KEY_BYTES_MAX + 1, "v", 1, 0, 0, got_cb, &g),
                 TESSERA_ETOOBIG);
    cr_assert_eq(tessera_put_async(c, "k", 1, big, sizeof(big), 0, 0, got_cb, &g), TESSERA_ETOOBIG);
    cr_assert_eq(tessera_put_async(c, "k", 1, "v", 1, 0, TESSERA_KEYS_ONLY, got_cb, &g),
                 TESSERA_EINVAL);
    cr_assert_eq(tessera_put_async(c, "k", 1, "v", 1, 0, 0, NULL, NULL), TESSERA_EINVAL);
    cr_assert_eq(tessera_get_async(c, "k", 1, (enum tessera_consistency)7, got_cb, &g),
                 TESSERA_EINVAL);
    cr_assert_eq(tessera_delete_async(c, "k", 1, NULL, 0, TESSERA_IGNORE_LEASE, got_cb, &g),
                 TESSERA_EINVAL);
    struct tessera_range_opts o = {.key = "k", .key_len = 1, .flags = TESSERA_PREV_KV};
    cr_assert_eq(tessera_range_async(c, &o, got_cb, &g), TESSERA_EINVAL);
    o = (struct tessera_range_opts){
        .key = "k", .key_len = 1, .range_end = big, .range_end_len = TESSERA_KEY_BYTES_MAX + 1};
    cr_assert_eq(tessera_range_async(c, &o, got_cb, &g), TESSERA_ETOOBIG);
    struct tessera_txn_op bad = {.op = TESSERA_OP_TXN, .key = "k", .key_len = 1};
    cr_assert_eq(tessera_txn_async(c, NULL, 0, &bad, 1, NULL, 0, got_cb, &g), TESSERA_EINVAL);
    cr_assert_eq(tessera_txn_async(c, NULL, 1, NULL, 0, NULL, 0, got_cb, &g), TESSERA_EINVAL);
    cr_assert_eq(tessera_txn_async(c, NULL, 0, NULL, TESSERA_TXN_OPS_MAX + 1, NULL, 0, got_cb, &g),
                 TESSERA_EINVAL);
    cr_assert_eq(tessera_put(c, "k", 1, big, sizeof(big), 0, 0, 0), TESSERA_ETOOBIG);
    cr_assert_eq(tessera_client_inflight(c), 0);
    cr_assert_eq(atomic_load(&kv_srv[0].kv_requests), 0, "nothing was sent");
    cr_assert_eq(tessera_put(c, "k", 1, big, TESSERA_VALUE_BYTES_MAX, 0, 0, 0), 0,
                 "a value of exactly the limit is fine");
    tessera_client_free(c);
}

Test(net_client_kv, error_status_maps_to_a_code_with_the_message)
{
    struct tessera_client *c = kv_client(1);
    atomic_store(&kv_srv[0].fail_status, PROTO_STATUS_COMPACTED);
    struct got g = {0};
    cr_assert_eq(tessera_get_async(c, "k", 1, TESSERA_LINEARIZABLE, got_cb, &g), 0);
    run_until(c, &g);
    cr_assert_eq(g.status, TESSERA_ECOMPACTED);
    cr_assert_str_eq(g.message, "injected failure");
    atomic_store(&kv_srv[0].fail_status, PROTO_STATUS_VALUE_TOO_LARGE);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), TESSERA_ETOOBIG);
    atomic_store(&kv_srv[0].fail_status, PROTO_STATUS_LEASE_NOT_FOUND);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 5, 0, 0), TESSERA_ENOTFOUND);
    tessera_client_free(c);
}

Test(net_client_kv, a_range_that_does_not_move_forward_is_a_protocol_error)
{
    struct tessera_client *c = kv_client(1);
    put_ten(c);
    atomic_store(&kv_srv[0].page_max, 3);
    atomic_store(&kv_srv[0].stuck_paging, 1);
    struct tessera_range_opts o = {.key = "k", .key_len = 1, .range_end = "l", .range_end_len = 1};
    struct rows r = {0};
    cr_assert_eq(tessera_range(c, &o, row_cb, &r, NULL, 0), TESSERA_EPROTO);
    cr_assert_eq(r.n, 3, "the first page's rows were delivered");
    cr_assert_eq(atomic_load(&kv_srv[0].kv_requests), 11 + 1, "one page, not an endless loop");
    tessera_client_free(c);
}
