/* net/client's built-in route cache (route.c) and its use by client.c: descriptors learnt
 * from answers, range id and epoch on the wire, redirects on NotLeader, StaleEpoch and
 * RangeNotFound, and the cache's own invariants (sorted, no overlaps, bounded). */
#include "fake_server.h"

#include "core/util/mem.h"
#include "net/client/client_int.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct fake_server rt_srv[2];
static int rt_started;

static void rt_teardown(void)
{
    for (int i = 0; i < rt_started; i++) {
        fake_stop(&rt_srv[i]);
    }
    rt_started = 0;
}

static void rt_start(int n)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq(fake_start(&rt_srv[i]), 0);
    }
    rt_started = n;
}

/* A client on the first n fake nodes only (others are reached through hints). */
static struct tessera_client *rt_client(int n)
{
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        size_t at = strlen(list);
        snprintf(list + at, sizeof(list) - at, "%s127.0.0.1:%u", i > 0 ? "," : "", rt_srv[i].port);
    }
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    cfg.endpoints = list;
    cfg.backoff_base_ms = 1;
    cfg.backoff_max_ms = 5;
    struct tessera_client *c = NULL;
    cr_assert_eq(tessera_client_new(&cfg, &c), 0);
    return c;
}

static void serve_range(struct fake_server *s, uint64_t id, uint64_t generation)
{
    s->range_id = id;
    s->generation = generation;
    s->conf_version = 1;
    s->range_start[0] = '\0';
    s->range_end[0] = '\0';
    atomic_store(&s->attach_range, 1);
}

TestSuite(net_client_route, .fini = rt_teardown, .timeout = 60);

Test(net_client_route, a_descriptor_in_an_answer_routes_the_next_request)
{
    rt_start(1);
    serve_range(&rt_srv[0], 5, 3);
    struct tessera_client *c = rt_client(1);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    cr_assert_eq(atomic_load(&rt_srv[0].last_range_id), 0, "unknown range: routed by key");
    cr_assert_eq(c->routes.count, 1);
    cr_assert_eq(tessera_put(c, "other", 5, "v", 1, 0, 0, 0), 0);
    cr_assert_eq(atomic_load(&rt_srv[0].last_range_id), 5, "the cached range id is sent");
    cr_assert_eq(atomic_load(&rt_srv[0].last_generation), 3, "with its epoch");
    cr_assert_eq(tessera_ping(c, "p", 1, 0), 0, "unkeyed requests are not routed");
    tessera_client_free(c);
}

Test(net_client_route, not_leader_with_a_hint_goes_to_the_leader_at_once)
{
    rt_start(2);
    serve_range(&rt_srv[0], 5, 1);
    serve_range(&rt_srv[1], 5, 1);
    snprintf(rt_srv[0].hint_address, sizeof(rt_srv[0].hint_address), "127.0.0.1:%u",
             rt_srv[1].port);
    atomic_store(&rt_srv[0].hint_with_range, 1);
    atomic_store(&rt_srv[0].not_leader_left, 1);
    struct tessera_client *c = rt_client(1);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    cr_assert_eq(atomic_load(&rt_srv[0].kv_requests), 1);
    cr_assert_eq(atomic_load(&rt_srv[1].kv_requests), 1, "re-sent to the hinted leader");
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.retries, 0, "a redirect is not a back-off retry");
    cr_assert_eq(st.redirects, 1);
    cr_assert_eq(c->endpoint_count, 2, "the hint's address became an endpoint");
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    }
    cr_assert_eq(atomic_load(&rt_srv[0].kv_requests), 1, "the leader is cached");
    cr_assert_eq(atomic_load(&rt_srv[1].kv_requests), 6);
    cr_assert_eq(atomic_load(&rt_srv[1].last_range_id), 5);
    tessera_client_free(c);
}

Test(net_client_route, redirects_are_bounded_per_request)
{
    rt_start(1);
    snprintf(rt_srv[0].hint_address, sizeof(rt_srv[0].hint_address), "127.0.0.1:%u",
             rt_srv[0].port);
    atomic_store(&rt_srv[0].not_leader_left, 1000);
    struct tessera_client *c = rt_client(1);
    /* 8 immediate re-sends, then back-off retries (leadership is moving) until the
     * deadline: a node that keeps naming itself never gets a busy loop. */
    int rc = tessera_put(c, "k", 1, "v", 1, 0, 0, 1500);
    cr_assert(rc == TESSERA_ENOTLEADER || rc == TESSERA_ETIMEOUT, "%s", tessera_strerror(rc));
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.redirects, CLIENT_REDIRECTS_MAX);
    uint64_t n = atomic_load(&rt_srv[0].kv_requests);
    cr_assert_gt(n, 1 + CLIENT_REDIRECTS_MAX, "retried after the re-sends");
    /* backoff_max_ms 5 here: each retry waits at least 2.5 ms, so 1.5 s holds at most
     * ~600 of them; a busy loop would send tens of thousands. */
    cr_assert_lt(n, 1 + CLIENT_REDIRECTS_MAX + 700, "at a back-off (%llu requests)",
                 (unsigned long long)n);
    tessera_client_free(c);
}

Test(net_client_route, not_leader_without_a_hint_backs_off_and_retries_elsewhere)
{
    rt_start(2);
    atomic_store(&rt_srv[0].not_leader_left, 1);
    atomic_store(&rt_srv[1].not_leader_left, 1);
    struct tessera_client *c = rt_client(2);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    struct tessera_client_stats st;
    tessera_client_get_stats(c, &st);
    cr_assert_eq(st.retries, 2);
    cr_assert_eq(atomic_load(&rt_srv[0].kv_requests) + atomic_load(&rt_srv[1].kv_requests), 3);
    cr_assert_eq(c->endpoint_count, 2, "no address, no new endpoint");
    tessera_client_free(c);
}

Test(net_client_route, stale_epoch_replaces_the_descriptor_and_resends)
{
    rt_start(1);
    serve_range(&rt_srv[0], 5, 1);
    struct tessera_client *c = rt_client(1);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    atomic_store(&rt_srv[0].attach_range, 0);
    rt_srv[0].generation = 2; /* a split (racy only with requests in flight: none) */
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    cr_assert_eq(atomic_load(&rt_srv[0].kv_requests), 3, "stale, then re-sent");
    cr_assert_eq(atomic_load(&rt_srv[0].last_generation), 2);
    int i = route_find(c, (const uint8_t *)"k", 1);
    cr_assert_geq(i, 0);
    cr_assert_eq(c->routes.entries[i].generation, 2);
    tessera_client_free(c);
}

Test(net_client_route, range_not_found_drops_a_cached_route_and_is_final_by_key)
{
    rt_start(1);
    serve_range(&rt_srv[0], 5, 1);
    struct tessera_client *c = rt_client(1);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    atomic_store(&rt_srv[0].attach_range, 0);
    atomic_store(&rt_srv[0].not_found_left, 1);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), 0);
    cr_assert_eq(atomic_load(&rt_srv[0].last_range_id), 0, "re-sent routed by key");
    cr_assert_eq(c->routes.count, 0);
    atomic_store(&rt_srv[0].not_found_left, 1);
    cr_assert_eq(tessera_put(c, "k", 1, "v", 1, 0, 0, 0), TESSERA_ENORANGE);
    tessera_client_free(c);
}

/* ---------------------------------------------------------------- the cache itself */

static void put_desc(struct tessera_client *c, uint64_t id, const char *start, const char *end)
{
    struct tessera_range_desc d = {.range_id = id,
                                   .start_key = (const uint8_t *)start,
                                   .start_key_len = strlen(start),
                                   .end_key = (const uint8_t *)end,
                                   .end_key_len = strlen(end),
                                   .generation = 1};
    cr_assert_geq(route_put(c, &d), 0);
}

static uint64_t range_of(struct tessera_client *c, const char *key)
{
    int i = route_find(c, (const uint8_t *)key, (uint32_t)strlen(key));
    return i >= 0 ? c->routes.entries[i].range_id : 0;
}

static void check_sorted(struct tessera_client *c)
{
    for (uint32_t i = 1; i < c->routes.count; i++) {
        const struct route_entry *a = &c->routes.entries[i - 1];
        const struct route_entry *b = &c->routes.entries[i];
        size_t n = a->end.len < b->start.len ? a->end.len : b->start.len;
        int r = memcmp(a->end.data, b->start.data, n);
        cr_assert(a->end.len > 0, "only the last entry is unbounded");
        cr_assert(r < 0 || (r == 0 && a->end.len <= b->start.len), "entries do not overlap");
    }
}

Test(net_client_route, lookups_splits_and_merges)
{
    rt_start(1);
    struct tessera_client *c = rt_client(1);
    put_desc(c, 1, "", "c");
    put_desc(c, 2, "c", "f");
    put_desc(c, 3, "f", "");
    cr_assert_eq(range_of(c, "a"), 1);
    cr_assert_eq(range_of(c, ""), 1);
    cr_assert_eq(range_of(c, "c"), 2);
    cr_assert_eq(range_of(c, "ezzz"), 2);
    cr_assert_eq(range_of(c, "f"), 3);
    cr_assert_eq(range_of(c, "zzz"), 3);
    put_desc(c, 4, "b", "g"); /* overlaps all three: they go */
    cr_assert_eq(c->routes.count, 1);
    cr_assert_eq(range_of(c, "a"), 0);
    cr_assert_eq(range_of(c, "b"), 4);
    cr_assert_eq(range_of(c, "g"), 0);
    put_desc(c, 5, "a", "b");
    put_desc(c, 6, "g", "h");
    check_sorted(c);
    cr_assert_eq(c->routes.count, 3);
    route_drop(c, (const uint8_t *)"c", 1);
    cr_assert_eq(range_of(c, "c"), 0);
    cr_assert_eq(c->routes.count, 2);
    struct tessera_range_desc bad = {.start_key = (const uint8_t *)"z",
                                     .start_key_len = 1,
                                     .end_key = (const uint8_t *)"a",
                                     .end_key_len = 1};
    cr_assert_eq(route_put(c, &bad), TESSERA_EINVAL, "an empty interval is ignored");
    tessera_client_free(c);
}

Test(net_client_route, the_cache_is_bounded_and_evicts_the_least_recently_used)
{
    rt_start(1);
    struct tessera_client *c = rt_client(1);
    char s[16], e[16];
    for (uint32_t i = 0; i <= CLIENT_ROUTES_MAX; i++) {
        snprintf(s, sizeof(s), "k%06u", i);
        snprintf(e, sizeof(e), "k%06u", i + 1);
        put_desc(c, i + 1, s, e);
        if (i == 10) {
            cr_assert_eq(range_of(c, "k000000"), 1); /* keep the first one warm */
        }
    }
    cr_assert_eq(c->routes.count, CLIENT_ROUTES_MAX);
    cr_assert_eq(range_of(c, "k000000"), 1, "recently used: kept");
    cr_assert_eq(range_of(c, "k000001"), 0, "least recently used: evicted");
    check_sorted(c);
    tessera_client_free(c);
}

Test(net_client_route, hinted_endpoints_are_numeric_and_bounded)
{
    rt_start(1);
    struct tessera_client *c = rt_client(1);
    char self[32];
    snprintf(self, sizeof(self), "127.0.0.1:%u", rt_srv[0].port);
    cr_assert_eq(client_endpoint_for(c, self), 0, "a known endpoint");
    cr_assert_eq(client_endpoint_for(c, "localhost:7000"), -1, "no DNS inside the loop");
    cr_assert_eq(client_endpoint_for(c, NULL), -1);
    cr_assert_eq(client_endpoint_for(c, "[::1]:7000"), 1);
    for (uint32_t i = 2; i < TESSERA_ENDPOINTS_MAX; i++) {
        char a[32];
        snprintf(a, sizeof(a), "10.0.0.%u:7000", i);
        cr_assert_eq(client_endpoint_for(c, a), (int)i);
    }
    cr_assert_eq(client_endpoint_for(c, "10.0.1.1:7000"), -1, "full");
    cr_assert_eq(c->conn_count, TESSERA_ENDPOINTS_MAX);
    cr_assert_eq(tessera_ping(c, "p", 1, 0), 0, "the client still works");
    tessera_client_free(c);
}

/* ---------------------------------------------------------------- memory (STYLE R12) */

Test(net_client_route, steady_state_key_value_requests_do_not_allocate)
{
    rt_start(1);
    serve_range(&rt_srv[0], 5, 1);
    struct ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
    struct tessera_client_config cfg;
    tessera_client_config_init(&cfg);
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%u", rt_srv[0].port);
    cfg.endpoints = ep;
    cfg.inflight_max = 8;
    struct tessera_client *c = NULL;
    cr_assert_eq(client_new_alloc(&cfg, &fa.base, &c), 0);
    uint8_t value[300] = {0};
    char out[300];
    for (int round = 0; round < 2; round++) {
        long before = fa.calls;
        for (int i = 0; i < 100; i++) {
            char key[16];
            int n = snprintf(key, sizeof(key), "key%03d", i);
            cr_assert_eq(tessera_put(c, key, (size_t)n, value, sizeof(value), 0, 0, 0), 0);
            cr_assert_eq(tessera_get(c, key, (size_t)n, TESSERA_LINEARIZABLE, out, sizeof(out),
                                     NULL, NULL, 0),
                         0);
        }
        if (round == 1) {
            cr_assert_eq(fa.calls, before, "the second round reuses every buffer");
        }
    }
    cr_assert_eq(c->routes.count, 1);
    tessera_client_free(c);
    cr_assert_eq(fa.live_bytes, 0);
}

Test(net_client_route, allocation_failures_in_the_cache_leak_nothing)
{
    rt_start(1);
    for (long n = 0; n < 8; n++) {
        struct ts_failing_allocator fa;
        ts_failing_allocator_init(&fa, ts_allocator_default(), -1);
        struct tessera_client_config cfg;
        tessera_client_config_init(&cfg);
        cfg.endpoints = "127.0.0.1:1";
        struct tessera_client *c = NULL;
        cr_assert_eq(client_new_alloc(&cfg, &fa.base, &c), 0);
        fa.fail_after = fa.calls + n; /* fail from the n-th allocation on */
        char s[8], e[8];
        for (int i = 0; i < 4; i++) {
            snprintf(s, sizeof(s), "r%d", i);
            snprintf(e, sizeof(e), "r%d", i + 1);
            struct tessera_range_desc d = {.range_id = (uint64_t)i + 1,
                                           .start_key = (const uint8_t *)s,
                                           .start_key_len = strlen(s),
                                           .end_key = (const uint8_t *)e,
                                           .end_key_len = strlen(e)};
            int rc = route_put(c, &d);
            cr_assert(rc >= 0 || rc == TESSERA_ENOMEM);
        }
        check_sorted(c);
        tessera_client_free(c);
        cr_assert_eq(fa.live_bytes, 0, "countdown %ld leaked", n);
    }
}
