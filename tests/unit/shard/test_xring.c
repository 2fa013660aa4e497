/*
 * shard/xring.c: full rings and recovery on one thread; order, exactly-once delivery and
 * coalesced wake-ups for 1e6 messages between two shard threads.
 */
#include "shard/xring.h"

#include "core/util/err.h"
#include "shard/node.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---- One thread, two loops ------------------------------------------------------------- */

struct sink {
    uint64_t next;
    uint64_t got;
    uint32_t bad;
};

static void on_msg(void *ctx, const struct xring_msg *msg)
{
    struct sink *s = ctx;
    if (msg->type != 1 || msg->from != 0 || msg->u[0] != s->next || msg->handle != ~msg->u[0]) {
        s->bad++;
    }
    s->next = msg->u[0] + 1;
    s->got++;
}

static void on_unexpected(void *ctx, const struct xring_msg *msg)
{
    (void)msg;
    ((struct sink *)ctx)->bad++;
}

static struct xring_msg msg_seq(uint64_t seq)
{
    return (struct xring_msg){.type = 1, .handle = ~seq, .u = {seq}};
}

Test(xring, full_ring_then_recovery)
{
    struct shard_loop_config lc = {0};
    struct shard_loop *l0, *l1;
    cr_assert_eq(shard_loop_create(&lc, &l0), 0);
    lc.shard_id = 1;
    cr_assert_eq(shard_loop_create(&lc, &l1), 0);
    struct xring_mesh_config mc = {.shards = 2, .slots = 8};
    struct xring_mesh *m;
    cr_assert_eq(xring_mesh_create(&mc, &m), 0);
    struct sink s0 = {0}, s1 = {0};
    cr_assert_eq(xring_attach(m, 0, l0, on_unexpected, &s0), 0);
    cr_assert_eq(xring_attach(m, 1, l1, on_msg, &s1), 0);
    cr_assert_eq(xring_attach(m, 1, l1, on_msg, &s1), TS_EINVAL);
    uint64_t seq = 0;
    for (; seq < 8; seq++) {
        struct xring_msg msg = msg_seq(seq);
        cr_assert_eq(xring_send(m, 0, 1, &msg), 0);
    }
    struct xring_msg msg = msg_seq(seq);
    cr_assert_eq(xring_send(m, 0, 1, &msg), TS_EFULL);
    cr_assert_eq(xring_send(m, 0, 1, &msg), TS_EFULL);
    cr_assert(!xring_inbox_empty(m, 1));
    cr_assert(xring_inbox_empty(m, 0));
    cr_assert_eq(xring_drain(m, 1), 8);
    cr_assert_eq(s1.got, 8);
    cr_assert(xring_inbox_empty(m, 1));
    for (; seq < 20; seq++) { /* wraps the indices past the capacity */
        msg = msg_seq(seq);
        cr_assert_eq(xring_send(m, 0, 1, &msg), 0);
        cr_assert_eq(shard_loop_run_once(l1, false), 0); /* the loop drains the inbox */
    }
    cr_assert_eq(s1.got, 20);
    cr_assert_eq(s1.bad, 0);
    cr_assert_eq(s0.bad, 0);
    struct xring_stats st;
    xring_stats(m, 0, &st);
    cr_assert_eq(st.sent, 20);
    cr_assert_eq(st.full, 2);
    cr_assert_eq(st.wakes, 0, "nobody slept, nobody was woken");
    xring_stats(m, 1, &st);
    cr_assert_eq(st.received, 20);
    xring_close_sender(m, 0);
    cr_assert_eq(xring_send(m, 0, 1, &msg), TS_ESHUTDOWN);
    xring_detach(m, 0);
    xring_detach(m, 1);
    xring_mesh_destroy(m);
    shard_loop_destroy(l0);
    shard_loop_destroy(l1);
}

Test(xring, mesh_rejects_bad_sizes)
{
    struct xring_mesh *m;
    struct xring_mesh_config mc = {.shards = 2, .slots = 12};
    cr_assert_eq(xring_mesh_create(&mc, &m), -EINVAL);
    mc = (struct xring_mesh_config){.shards = TS_XRING_SHARDS_MAX + 1};
    cr_assert_eq(xring_mesh_create(&mc, &m), -EINVAL);
    mc = (struct xring_mesh_config){.shards = 0};
    cr_assert_eq(xring_mesh_create(&mc, &m), -EINVAL);
    mc = (struct xring_mesh_config){.shards = 3};
    cr_assert_eq(xring_mesh_create(&mc, &m), 0);
    cr_assert_eq(xring_mesh_shards(m), 3);
    cr_assert_eq(xring_mesh_slots(m), TS_XRING_SLOTS_DEFAULT);
    xring_mesh_destroy(m);
}

/* ---- Two shard threads, 1e6 messages ---------------------------------------------------- */

#define MILLION 1000000ull
#define BURST 1000u
#define MS 1000000ull

struct bulk {
    /* shard 0: the producer */
    struct shard_timer timer;
    struct shard *producer;
    uint64_t next_send;
    uint64_t full;
    struct xring_stats producer_stats;
    /* shard 1: the consumer */
    uint64_t next_recv;
    uint64_t bad;
    uint64_t consumer_sleeps;
    _Atomic int stops;
};

static void produce(struct shard_timer *t, void *data)
{
    struct bulk *b = data;
    struct shard *s = b->producer;
    for (uint32_t i = 0; i < BURST && b->next_send < MILLION; i++) {
        struct xring_msg msg = {.type = 7, .u = {b->next_send, b->next_send * 3}};
        int rc = shard_send(s, 1, &msg);
        if (rc == TS_EFULL) {
            b->full++;
            break;
        }
        cr_assert_eq(rc, 0);
        b->next_send++;
    }
    if (b->next_send < MILLION) {
        struct shard_loop *l = shard_get_loop(s);
        cr_assert_eq(shard_timer_start(l, t, shard_loop_now_ns(l) + MS, produce, b), 0);
    }
}

static int bulk_init(struct shard *s, void *data)
{
    struct bulk *b = data;
    if (shard_get_id(s) != 0) {
        return 0;
    }
    b->producer = s;
    shard_timer_init(&b->timer);
    struct shard_loop *l = shard_get_loop(s);
    return shard_timer_start(l, &b->timer, shard_loop_now_ns(l), produce, b);
}

static void bulk_msg(struct shard *s, const struct xring_msg *msg, void *data)
{
    struct bulk *b = data;
    cr_assert_eq(shard_get_id(s), 1);
    if (msg->type != 7 || msg->from != 0 || msg->u[0] != b->next_recv ||
        msg->u[1] != b->next_recv * 3) {
        b->bad++;
    }
    b->next_recv++;
    if (b->next_recv == MILLION) {
        cr_assert_eq(shard_node_stop(shard_get_node(s)), 0);
    }
}

static bool bulk_stop(struct shard *s, void *data)
{
    struct bulk *b = data;
    if (shard_get_id(s) == 0) {
        shard_timer_stop(shard_get_loop(s), &b->timer);
        xring_stats(shard_get_mesh(s), 0, &b->producer_stats);
    }
    atomic_fetch_add(&b->stops, 1);
    return true;
}

Test(xring, million_messages_in_order_with_few_wakeups, .timeout = 60)
{
    static struct bulk b; /* large enough to keep off the test's stack */
    struct shard_node_config cfg = {.shards = 2,
                                    .xring_slots = 1024,
                                    .init_cb = bulk_init,
                                    .stop_cb = bulk_stop,
                                    .msg_cb = bulk_msg,
                                    .data = &b};
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    cr_assert_eq(shard_node_wait(n), 0);
    cr_assert_eq(b.next_send, MILLION);
    cr_assert_eq(b.next_recv, MILLION, "received %llu", (unsigned long long)b.next_recv);
    cr_assert_eq(b.bad, 0);
    cr_assert_eq(atomic_load(&b.stops), 2);
    cr_assert_eq(b.producer_stats.sent, MILLION);
    cr_assert_eq(b.producer_stats.full, b.full);
    /* The consumer sleeps between bursts, so wakes happen, but far fewer than messages. */
    cr_assert_geq(b.producer_stats.wakes, 1);
    cr_assert_lt(b.producer_stats.wakes, MILLION / 100, "%llu wakes",
                 (unsigned long long)b.producer_stats.wakes);
    cr_log_info("1e6 messages: %llu wakes, %llu full", (unsigned long long)b.producer_stats.wakes,
                (unsigned long long)b.full);
}

/* ---- Ping-pong: both shards sleep between every message ---------------------------------- */

#define ROUND_TRIPS 10000u

struct pingpong {
    uint64_t pings; /* received by shard 1 */
    uint64_t pongs; /* received by shard 0 */
    _Atomic int bad;
    struct xring_stats stats[2];
};

static int pp_init(struct shard *s, void *data)
{
    (void)data;
    if (shard_get_id(s) != 0) {
        return 0;
    }
    struct xring_msg msg = {.type = 1, .u = {0}};
    return shard_send(s, 1, &msg);
}

/* Each side answers at once; a lost wake-up would stall the exchange for ever. */
static void pp_msg(struct shard *s, const struct xring_msg *msg, void *data)
{
    struct pingpong *pp = data;
    uint32_t id = shard_get_id(s);
    uint64_t *count = id == 1 ? &pp->pings : &pp->pongs;
    if (msg->u[0] != *count || msg->from == id) {
        atomic_fetch_add(&pp->bad, 1);
    }
    (*count)++;
    if (id == 0 && pp->pongs == ROUND_TRIPS) {
        cr_assert_eq(shard_node_stop(shard_get_node(s)), 0);
        return;
    }
    struct xring_msg reply = {.type = 1, .u = {id == 1 ? pp->pings - 1 : pp->pongs}};
    cr_assert_eq(shard_send(s, 1 - id, &reply), 0);
}

static bool pp_stop(struct shard *s, void *data)
{
    struct pingpong *pp = data;
    xring_stats(shard_get_mesh(s), shard_get_id(s), &pp->stats[shard_get_id(s)]);
    return true;
}

Test(xring, ping_pong_never_loses_a_wakeup, .timeout = 60)
{
    static struct pingpong pp;
    struct shard_node_config cfg = {
        .shards = 2, .init_cb = pp_init, .stop_cb = pp_stop, .msg_cb = pp_msg, .data = &pp};
    struct shard_node *n;
    cr_assert_eq(shard_node_start(&cfg, &n), 0);
    cr_assert_eq(shard_node_wait(n), 0);
    cr_assert_eq(pp.pings, ROUND_TRIPS);
    cr_assert_eq(pp.pongs, ROUND_TRIPS);
    cr_assert_eq(atomic_load(&pp.bad), 0);
    cr_assert_eq(pp.stats[0].sent, ROUND_TRIPS);
    cr_assert_eq(pp.stats[1].sent, ROUND_TRIPS);
    cr_log_info("ping-pong: %u round trips, wakes %llu + %llu", ROUND_TRIPS,
                (unsigned long long)pp.stats[0].wakes, (unsigned long long)pp.stats[1].wakes);
}
