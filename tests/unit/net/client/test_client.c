/* net/client against a fake node: round trips, pipelining, reordering, timeouts, retries. */
#include "fake_server.h"

#include "net/client/tessera.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fake_server srv[2];
static int srv_started;

static void start_servers(int n)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq(fake_start(&srv[i]), 0);
    }
    srv_started = n;
}

static void teardown(void)
{
    for (int i = 0; i < srv_started; i++) {
        fake_stop(&srv[i]);
    }
    srv_started = 0;
}

static struct tessera_client *client_on(const char *endpoints, struct tessera_client_config *cfg)
{
    struct tessera_client_config d;
    if (cfg == NULL) {
        tessera_client_config_init(&d);
        cfg = &d;
    }
    cfg->endpoints = endpoints;
    struct tessera_client *c = NULL;
    int rc = tessera_client_new(cfg, &c);
    cr_assert_eq(rc, 0, "tessera_client_new: %s", tessera_strerror(rc));
    return c;
}

static char *endpoint_list(int n)
{
    static char buf[128];
    if (n == 1) {
        snprintf(buf, sizeof(buf), "127.0.0.1:%u", srv[0].port);
    } else {
        snprintf(buf, sizeof(buf), "127.0.0.1:%u,127.0.0.1:%u", srv[0].port, srv[1].port);
    }
    return buf;
}

TestSuite(net_client, .fini = teardown, .timeout = 60);

Test(net_client, one_ping_round_trip_blocking)
{
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    cr_assert_eq(tessera_ping(c, "hello", 5, 0), 0);
    cr_assert_eq(tessera_ping(c, NULL, 0, 0), 0, "an empty payload echoes too");
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.requests, 2);
    cr_assert_eq(st.completed, 2);
    cr_assert_eq(st.connects, 1, "one connection, reused");
    cr_assert_eq(st.retries, 0);
    cr_assert_eq(tessera_client_inflight(c), 0);
    tessera_client_free(c);
    cr_assert_eq(atomic_load(&srv[0].requests), 2);
}

/* ---------------------------------------------------------------- pipelining */

#define PIPE_N 10000

struct pipe_state {
    uint32_t done;
    uint32_t ok;
    uint32_t bad;
    uint8_t seen[PIPE_N];
};

static size_t payload_for(uint32_t i, uint8_t *buf)
{
    size_t len = 4 + i % 61;
    memcpy(buf, &i, 4);
    for (size_t k = 4; k < len; k++) {
        buf[k] = (uint8_t)(i * 31 + k);
    }
    return len;
}

static void pipe_cb(void *data, int status, const struct tessera_response *resp)
{
    struct pipe_state *ps = data;
    ps->done++;
    uint8_t want[64];
    uint32_t i;
    if (status != 0 || resp == NULL || resp->op != TESSERA_OP_PING || resp->u.ping.len < 4) {
        ps->bad++;
        return;
    }
    memcpy(&i, resp->u.ping.payload, 4);
    size_t len = i < PIPE_N ? payload_for(i, want) : 0;
    if (len == 0 || len != resp->u.ping.len || memcmp(want, resp->u.ping.payload, len) != 0 ||
        ps->seen[i]) {
        ps->bad++;
        return;
    }
    ps->seen[i] = 1;
    ps->ok++;
}

static void pipeline(struct tessera_client *c, struct pipe_state *ps, uint32_t inflight_max)
{
    uint32_t sent = 0;
    uint32_t peak = 0;
    while (ps->done < PIPE_N) {
        while (sent < PIPE_N) {
            uint8_t buf[64];
            size_t len = payload_for(sent, buf);
            int rc = tessera_ping_async(c, buf, len, pipe_cb, ps);
            if (rc == TESSERA_EFULL) {
                break;
            }
            cr_assert_eq(rc, 0, "%s", tessera_strerror(rc));
            sent++;
        }
        uint32_t in = tessera_client_inflight(c);
        peak = in > peak ? in : peak;
        cr_assert_leq(in, inflight_max);
        cr_assert_geq(tessera_client_run(c, 5000), 0);
    }
    cr_assert_eq(peak, inflight_max, "the window filled up");
}

Test(net_client, ten_thousand_pipelined_pings)
{
    start_servers(1);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.inflight_max = 256;
    cfg.connections_per_endpoint = 2;
    struct tessera_client *c = client_on(endpoint_list(1), &cfg);
    struct pipe_state *ps = calloc(1, sizeof(*ps));
    pipeline(c, ps, 256);
    cr_assert_eq(ps->bad, 0);
    cr_assert_eq(ps->ok, PIPE_N);
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.completed, PIPE_N);
    cr_assert_eq(st.connects, 2, "both connections were used");
    cr_assert_eq(st.stale_answers, 0);
    free(ps);
    tessera_client_free(c);
}

Test(net_client, answers_split_byte_by_byte)
{
    srv[0].mode = FAKE_SPLIT;
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    uint8_t big[3000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)(i * 7);
    }
    cr_assert_eq(tessera_ping(c, big, sizeof(big), 0), 0);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(tessera_ping(c, &i, sizeof(i), 0), 0);
    }
    tessera_client_free(c);
}

/* ---------------------------------------------------------------- order */

struct order_state {
    int count;
    int order[16];
};

static void order_cb(void *data, int status, const struct tessera_response *resp)
{
    struct order_state *os = data;
    cr_assert_eq(status, 0);
    cr_assert_eq(resp->u.ping.len, sizeof(int));
    int v;
    memcpy(&v, resp->u.ping.payload, sizeof(v));
    os->order[os->count++] = v;
}

Test(net_client, out_of_order_answers_match_by_id)
{
    srv[0].mode = FAKE_REORDER;
    srv[0].reorder_window = 4;
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    struct order_state os = {0};
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(tessera_ping_async(c, &i, sizeof(i), order_cb, &os), 0);
    }
    while (os.count < 8) {
        cr_assert_geq(tessera_client_run(c, 5000), 0);
    }
    int want[8] = {3, 2, 1, 0, 7, 6, 5, 4};
    cr_assert_arr_eq(os.order, want, sizeof(want), "answers arrive reversed in fours");
    tessera_client_free(c);
}

/* ---------------------------------------------------------------- failures */

struct status_state {
    int done;
    int status;
    int had_resp;
};

static void status_cb(void *data, int status, const struct tessera_response *resp)
{
    struct status_state *ss = data;
    ss->done++;
    ss->status = status;
    ss->had_resp = resp != NULL;
}

Test(net_client, silent_server_times_out)
{
    srv[0].mode = FAKE_SILENT;
    start_servers(1);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.request_timeout_ms = 100;
    struct tessera_client *c = client_on(endpoint_list(1), &cfg);
    cr_assert_eq(tessera_ping(c, "x", 1, 0), TESSERA_ETIMEOUT);

    struct status_state ss = {0};
    cr_assert_eq(tessera_ping_async(c, "y", 1, status_cb, &ss), 0);
    int t = tessera_client_next_timeout_ms(c);
    cr_assert(t >= 0 && t <= 100, "the deadline is the next timer (%d)", t);
    while (ss.done == 0) {
        tessera_client_run(c, -1);
    }
    cr_assert_eq(ss.status, TESSERA_ETIMEOUT);
    cr_assert_not(ss.had_resp);
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.timeouts, 2);
    cr_assert_eq(st.retries, 0, "a timeout is not retried");
    cr_assert_eq(tessera_client_next_timeout_ms(c), -1);
    tessera_client_free(c);
}

Test(net_client, delayed_answer_within_and_past_the_deadline)
{
    srv[0].mode = FAKE_DELAY;
    srv[0].delay_ms = 150;
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    cr_assert_eq(tessera_ping(c, "late", 4, 2000), 0);
    cr_assert_eq(tessera_ping(c, "later", 5, 20), TESSERA_ETIMEOUT);
    /* The late answer to the expired request is dropped as stale, not misdelivered. */
    cr_assert_eq(tessera_ping(c, "next", 4, 2000), 0);
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.stale_answers, 1);
    tessera_client_free(c);
}

Test(net_client, connection_closed_mid_request_retries_on_the_other_endpoint)
{
    srv[0].mode = FAKE_CLOSE;
    srv[0].close_left = 1000;
    start_servers(2);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 5;
    struct tessera_client *c = client_on(endpoint_list(2), &cfg);
    cr_assert_eq(tessera_ping(c, "abc", 3, 0), 0);
    cr_assert_eq(atomic_load(&srv[0].requests), 1, "the first attempt went to endpoint 0");
    cr_assert_eq(atomic_load(&srv[1].requests), 1, "the retry went to endpoint 1");
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.retries, 1);
    cr_assert_eq(st.disconnects, 1);
    /* Endpoint 0 is avoided for a while: the next first attempt goes to endpoint 1. */
    cr_assert_eq(tessera_ping(c, "def", 3, 0), 0);
    tessera_client_free(c);
}

Test(net_client, garbage_frame_closes_the_connection_and_retries)
{
    srv[0].mode = FAKE_GARBAGE;
    srv[0].garbage_left = 1;
    start_servers(1);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 5;
    struct tessera_client *c = client_on(endpoint_list(1), &cfg);
    cr_assert_eq(tessera_ping(c, "abc", 3, 0), 0);
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.bad_frames, 1);
    cr_assert_eq(st.retries, 1);
    cr_assert_eq(st.connects, 2, "the bad connection was replaced");
    cr_assert_eq(atomic_load(&srv[0].accepted), 2);
    tessera_client_free(c);
}

Test(net_client, all_endpoints_down_is_unavailable_after_retries)
{
    char eps[64];
    snprintf(eps, sizeof(eps), "127.0.0.1:%u,127.0.0.1:%u", fake_dead_port(), fake_dead_port());
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.retries = 3;
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 10;
    struct tessera_client *c = client_on(eps, &cfg);
    struct status_state ss = {0};
    cr_assert_eq(tessera_ping_async(c, "x", 1, status_cb, &ss), 0);
    while (ss.done == 0) {
        tessera_client_run(c, -1);
    }
    cr_assert_eq(ss.status, TESSERA_EUNAVAIL);
    cr_assert_not(ss.had_resp);
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.retries, 3);
    cr_assert_eq(st.connect_failures, 4, "one refused connect per attempt");
    cr_assert_eq(st.unavailable, 1);
    cr_assert_eq(tessera_ping(c, "y", 1, 0), TESSERA_EUNAVAIL);
    tessera_client_free(c);
}

Test(net_client, no_retries_fails_at_the_first_loss)
{
    srv[0].mode = FAKE_CLOSE;
    srv[0].close_left = 1000;
    start_servers(1);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.retries = 0;
    struct tessera_client *c = client_on(endpoint_list(1), &cfg);
    cr_assert_eq(tessera_ping(c, "x", 1, 0), TESSERA_EUNAVAIL);
    tessera_client_free(c);
}

/* ---------------------------------------------------------------- hooks and lifecycle */

struct hook_state {
    int lookups;
    int updates;
    int invalidates;
    uint64_t node_id;
    char address[32];
};

static int hook_lookup(void *data, const uint8_t *key, size_t len)
{
    ((struct hook_state *)data)->lookups++;
    return -1;
}

static void hook_update(void *data, const struct tessera_range_desc *desc,
                        const struct tessera_leader_hint *hint)
{
    struct hook_state *hs = data;
    hs->updates++;
    cr_assert_null(desc);
    cr_assert_not_null(hint);
    hs->node_id = hint->node_id;
    snprintf(hs->address, sizeof(hs->address), "%s", hint->address);
}

static void hook_invalidate(void *data, const uint8_t *key, size_t len)
{
    ((struct hook_state *)data)->invalidates++;
}

Test(net_client, leader_hint_reaches_the_route_hooks)
{
    srv[0].mode = FAKE_NOT_LEADER;
    start_servers(1);
    struct hook_state hs = {0};
    struct tessera_route_hooks hooks = {
        .lookup = hook_lookup, .update = hook_update, .invalidate = hook_invalidate, .data = &hs};
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.route = &hooks;
    struct tessera_client *c = client_on(endpoint_list(1), &cfg);
    struct status_state ss = {0};
    cr_assert_eq(tessera_ping_async(c, "x", 1, status_cb, &ss), 0);
    while (ss.done == 0) {
        tessera_client_run(c, -1);
    }
    cr_assert_eq(ss.status, TESSERA_ENOTLEADER);
    cr_assert(ss.had_resp, "an error status still comes with the answer");
    cr_assert_eq(hs.updates, 1);
    cr_assert_eq(hs.node_id, 7);
    cr_assert_str_eq(hs.address, "10.0.0.7:7000");
    cr_assert_eq(hs.lookups, 0, "ping has no key to route by");
    cr_assert_eq(hs.invalidates, 0, "nor a route to invalidate");
    tessera_client_free(c);
}

Test(net_client, free_completes_outstanding_requests_with_shutdown)
{
    srv[0].mode = FAKE_SILENT;
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    struct status_state ss = {0};
    cr_assert_eq(tessera_ping_async(c, "x", 1, status_cb, &ss), 0);
    cr_assert_eq(tessera_client_run(c, 50), 0);
    cr_assert_eq(ss.done, 0);
    tessera_client_free(c);
    cr_assert_eq(ss.done, 1);
    cr_assert_eq(ss.status, TESSERA_ESHUTDOWN);
}

Test(net_client, external_loop_with_fds_and_process)
{
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    struct status_state ss = {0};
    cr_assert_eq(tessera_ping_async(c, "ext", 3, status_cb, &ss), 0);
    struct pollfd fds[TESSERA_ENDPOINTS_MAX];
    cr_assert_eq(tessera_client_fds_max(c), TESSERA_ENDPOINTS_MAX,
                 "room for every endpoint leader hints may add, one connection each");
    cr_assert_eq(tessera_client_fds(c, fds, 0), TESSERA_ETOOBIG);
    for (int i = 0; i < 1000 && ss.done == 0; i++) {
        int n = tessera_client_fds(c, fds, TESSERA_ENDPOINTS_MAX);
        cr_assert(n >= 0 && n <= 1);
        int rc = poll(fds, (nfds_t)n, tessera_client_next_timeout_ms(c));
        cr_assert_geq(rc, 0);
        cr_assert_geq(tessera_client_process(c, fds, n), 0);
    }
    cr_assert_eq(ss.done, 1);
    cr_assert_eq(ss.status, 0);
    tessera_client_free(c);
}

Test(net_client, bad_configurations_are_refused)
{
    struct tessera_client_config cfg;
    struct tessera_client *c = (struct tessera_client *)1;
    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         ":7000",
                         "[::1:7000",
                         "127.0.0.1:1,",
                         "no.such.host.invalid:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tessera_client_config_init(&cfg);
        cfg.endpoints = bad[i];
        cr_assert_eq(tessera_client_new(&cfg, &c), TESSERA_EINVAL, "%s", bad[i]);
        cr_assert_null(c);
    }
    tessera_client_config_init(&cfg);
    cr_assert_eq(tessera_client_new(&cfg, &c), TESSERA_EINVAL, "no endpoints");
    cfg.endpoints = "127.0.0.1:1";
    cfg.inflight_max = TESSERA_INFLIGHT_MAX + 1;
    cr_assert_eq(tessera_client_new(&cfg, &c), TESSERA_EINVAL);
    tessera_client_config_init(&cfg);
    cfg.endpoints = "[::1]:7000,localhost:7001";
    cr_assert_eq(tessera_client_new(&cfg, &c), 0, "IPv6 literals are accepted");
    cr_assert_eq(tessera_client_run(c, 0), 0, "nothing outstanding: returns at once");
    cr_assert_eq(tessera_client_next_timeout_ms(c), -1);
    tessera_client_free(c);
    tessera_client_free(NULL);
}

Test(net_client, in_flight_limit_and_strerror)
{
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.inflight_max = 2;
    cfg.endpoints = "127.0.0.1:1";
    struct tessera_client *c;
    cr_assert_eq(tessera_client_new(&cfg, &c), 0);
    struct status_state ss = {0};
    cr_assert_eq(tessera_ping_async(c, "a", 1, status_cb, &ss), 0);
    cr_assert_eq(tessera_ping_async(c, "b", 1, status_cb, &ss), 0);
    cr_assert_eq(tessera_ping_async(c, "c", 1, status_cb, &ss), TESSERA_EFULL);
    cr_assert_eq(tessera_ping_async(c, "d", 1, NULL, NULL), TESSERA_EINVAL);
    cr_assert_eq(tessera_client_inflight(c), 2);
    tessera_client_free(c);
    cr_assert_eq(ss.done, 2);
    cr_assert_str_eq(tessera_strerror(TESSERA_ETIMEOUT), "timed out");
    cr_assert_str_eq(tessera_strerror(0), "success");
    cr_assert_str_neq(tessera_strerror(-ECONNREFUSED), "unknown error");
}

/* ---------------------------------------------------------------- memory (STYLE R12) */

#include "core/util/mem.h"
#include "core/util/limits.h"
#include "net/client/client_int.h"

Test(net_client, allocation_failures_in_new_leak_nothing)
{
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = "127.0.0.1:1,127.0.0.1:2";
    cfg.connections_per_endpoint = 2;
    bool succeeded = false;
    for (long n = 0; n < 64 && !succeeded; n++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), n);
        struct tessera_client *c = NULL;
        int rc = client_new_alloc(&cfg, &fa.base, &c);
        if (rc == 0) {
            succeeded = true;
            tessera_client_free(c);
        } else {
            cr_assert_eq(rc, TESSERA_ENOMEM, "countdown %ld: %s", n, tessera_strerror(rc));
            cr_assert_null(c);
        }
        cr_assert_eq(fa.live_bytes, 0, "countdown %ld leaked", n);
    }
    cr_assert(succeeded);
}

Test(net_client, steady_state_does_not_allocate)
{
    start_servers(1);
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = endpoint_list(1);
    cfg.inflight_max = 8;
    struct tessera_client *c = NULL;
    cr_assert_eq(client_new_alloc(&cfg, &fa.base, &c), 0);
    uint8_t buf[512] = {0};
    for (int round = 0; round < 2; round++) {
        long before = fa.calls;
        for (int i = 0; i < 200; i++) {
            cr_assert_eq(tessera_ping(c, buf, sizeof(buf), 0), 0);
        }
        if (round == 1) {
            cr_assert_eq(fa.calls, before, "the second round reuses every buffer");
        }
    }
    tessera_client_free(c);
    cr_assert_eq(fa.live_bytes, 0);
}

/* ---------------------------------------------------------------- keyed requests and hooks */

/* A keyed request built the way the key-value kinds are: a ping carrying a routing key,
 * submitted through the internal client_submit, to exercise the route hooks. */
static int encode_keyed_ping(struct proto_builder *b, const void *args, struct client_encoded *out)
{
    proto_ref pl = proto_create_bytes(b, args, 1);
    proto_ping_request_begin(b);
    proto_ping_request_add_payload(b, pl);
    out->op = proto_ping_request_end(b);
    out->op_type = PROTO_REQUEST_OP_PING_REQUEST;
    return b->err;
}

struct route_state {
    int lookups;
    int invalidates;
    int updates;
    int target;
    char key[8];
};

static int route_lookup(void *data, const uint8_t *key, size_t len)
{
    struct route_state *rs = data;
    rs->lookups++;
    cr_assert_eq(len, 3);
    cr_assert_arr_eq(key, "key", 3);
    return rs->target;
}

static void route_invalidate(void *data, const uint8_t *key, size_t len)
{
    struct route_state *rs = data;
    rs->invalidates++;
    cr_assert_eq(len, 3);
    cr_assert_arr_eq(key, "key", 3);
}

static void route_update(void *data, const struct tessera_range_desc *desc,
                         const struct tessera_leader_hint *hint)
{
    struct route_state *rs = data;
    rs->updates++;
    cr_assert_not_null(hint);
    cr_assert_eq(rs->invalidates, 1, "invalidate comes before update");
}

static int keyed_ping(struct tessera_client *c, struct status_state *ss)
{
    struct client_request req = {.op = TESSERA_OP_PING,
                                 .encode = encode_keyed_ping,
                                 .args = "k",
                                 .key = (const uint8_t *)"key",
                                 .key_len = 3};
    *ss = (struct status_state){0};
    int rc = client_submit(c, &req, status_cb, ss);
    while (rc == 0 && ss->done == 0) {
        tessera_client_run(c, -1);
    }
    return rc != 0 ? rc : ss->status;
}

Test(net_client, lookup_routes_keyed_requests)
{
    start_servers(2);
    struct route_state rs = {.target = 1};
    struct tessera_route_hooks hooks = {.lookup = route_lookup, .data = &rs};
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.route = &hooks;
    struct tessera_client *c = client_on(endpoint_list(2), &cfg);
    struct status_state ss;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(keyed_ping(c, &ss), 0);
    }
    cr_assert_eq(rs.lookups, 5);
    cr_assert_eq(atomic_load(&srv[0].requests), 0);
    cr_assert_eq(atomic_load(&srv[1].requests), 5, "every request went where lookup said");
    rs.target = -1; /* unknown: the client spreads them */
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(keyed_ping(c, &ss), 0);
    }
    cr_assert_eq(atomic_load(&srv[0].requests), 2);
    tessera_client_free(c);
}

Test(net_client, not_leader_invalidates_then_updates_the_route)
{
    srv[0].mode = FAKE_NOT_LEADER;
    start_servers(1);
    struct route_state rs = {.target = 0};
    struct tessera_route_hooks hooks = {.lookup = route_lookup,
                                        .invalidate = route_invalidate,
                                        .update = route_update,
                                        .data = &rs};
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.route = &hooks;
    struct tessera_client *c = client_on(endpoint_list(1), &cfg);
    struct status_state ss;
    cr_assert_eq(keyed_ping(c, &ss), TESSERA_ENOTLEADER);
    cr_assert(ss.had_resp);
    cr_assert_eq(rs.lookups, 1);
    cr_assert_eq(rs.invalidates, 1);
    cr_assert_eq(rs.updates, 1);
    tessera_client_free(c);
}

Test(net_client, large_payloads_and_the_frame_limit)
{
    start_servers(1);
    struct tessera_client *c = client_on(endpoint_list(1), NULL);
    size_t big = 1024 * 1024;
    uint8_t *p = malloc(TS_FRAME_BYTES_MAX + 1);
    for (size_t i = 0; i < big; i++) {
        p[i] = (uint8_t)(i * 13 + 1);
    }
    cr_assert_eq(tessera_ping(c, p, big, 0), 0, "a 1 MiB payload grows the buffers");
    cr_assert_eq(tessera_ping(c, p, 10, 0), 0, "and they are reused");
    cr_assert_eq(tessera_ping(c, p, TS_FRAME_BYTES_MAX + 1, 0), TESSERA_ETOOBIG);
    cr_assert_eq(tessera_ping(c, p, TS_FRAME_BYTES_MAX - 16, 0), TESSERA_ETOOBIG,
                 "the envelope counts against the limit");
    cr_assert_eq(tessera_client_inflight(c), 0, "a refused request holds no slot");
    free(p);
    tessera_client_free(c);
}

Test(net_client, connection_lost_with_many_in_flight_retries_them_all)
{
    srv[0].mode = FAKE_CLOSE;
    srv[0].close_skip = 20;
    srv[0].close_left = 1;
    start_servers(2);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 5;
    cfg.inflight_max = 128;
    struct tessera_client *c = client_on(endpoint_list(2), &cfg);
    struct status_state ss[100];
    memset(ss, 0, sizeof(ss));
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(tessera_ping_async(c, &i, sizeof(i), status_cb, &ss[i]), 0);
    }
    while (tessera_client_inflight(c) > 0) {
        cr_assert_geq(tessera_client_run(c, 5000), 0);
    }
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ss[i].done, 1);
        cr_assert_eq(ss[i].status, 0, "request %d: %s", i, tessera_strerror(ss[i].status));
    }
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.disconnects, 1);
    cr_assert_geq(st.retries, 1, "what was in flight on the lost connection was retried");
    cr_assert_eq(st.completed, 100);
    tessera_client_free(c);
}
