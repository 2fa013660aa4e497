/*
 * kv_restart_all: acknowledged writes survive a restart of every node (3 nodes, 2
 * shards, 8 ranges), clean or not.
 *
 *   1. Write BATCH keys (pipelined), recording the acknowledged ones.
 *   2. SIGTERM all three nodes: each exits 0 (B-tree checkpointed, log flushed).
 *      Restart them with only --data and --listen; read back every acknowledged key.
 *   3. Write a second batch (after the restart's checkpoint, so it lives in the log
 *      only), then SIGKILL all three: no clean shutdown. Restart; every acknowledged key
 *      of both batches must be back (the log is fsynced before a write is acknowledged,
 *      and replayed from each range's applied index).
 *   4. The cluster takes writes again, and a key overwritten before the crash holds its
 *      last acknowledged value and version.
 * A second test SIGTERMs one node while writes are in flight: it must exit 0 promptly,
 * the other two keep serving, and every acknowledged write is read back before and after
 * it restarts.
 */
#include "tests/e2e/suite.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BATCH 200u
#define KEYS (2u * BATCH)
#define INFLIGHT 32u
#define DEADLINE_MS 120000u

static struct e2e_cluster cluster;

static void up(void)
{
    e2e_suite_up(&cluster, 3, 2, 8, NULL);
}

static void down(void)
{
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_restart_all, .init = up, .fini = down, .timeout = 400);

struct slot {
    uint32_t i;
    bool done;
    int status;
    bool acked;
    bool ok; /* read back: found with the right value */
    bool missing;
};

static struct slot S[KEYS];

static size_t key_of(uint32_t i, uint8_t *buf)
{
    buf[0] = (uint8_t)(i * 53u + 7u);
    return 1 + (size_t)snprintf((char *)buf + 1, 16, "ra%05u", i);
}

static size_t value_of(uint32_t i, char *buf)
{
    return (size_t)snprintf(buf, 24, "restart-%05u", i);
}

static void put_cb(void *data, int status, const struct tessera_response *resp)
{
    (void)resp;
    struct slot *s = data;
    s->done = true;
    s->status = status;
    s->acked = status == 0;
}

static void get_cb(void *data, int status, const struct tessera_response *resp)
{
    struct slot *s = data;
    char v[24];
    size_t vl = value_of(s->i, v);
    s->done = true;
    s->status = status;
    s->ok = status == 0 && resp->u.get.found && resp->u.get.kv.value_len == vl &&
            memcmp(resp->u.get.kv.value, v, vl) == 0;
    s->missing = status == 0 && !resp->u.get.found;
}

static void drain(struct tessera_client *cl, uint32_t below)
{
    uint64_t deadline = e2e_now_ms() + DEADLINE_MS;
    while (tessera_client_inflight(cl) > below && e2e_now_ms() < deadline) {
        (void)tessera_client_run(cl, 100);
    }
    cr_assert_leq(tessera_client_inflight(cl), below, "requests did not finish in time");
}

/* Called once during a batch, after `at` keys were submitted (it may stop nodes). */
typedef void (*batch_hook)(void);

/* Writes keys [from, to), calling hook (may be NULL) once `at` keys are submitted;
 * returns how many were acknowledged. */
static uint32_t write_batch_hook(uint32_t from, uint32_t to, uint32_t at, batch_hook hook)
{
    struct tessera_client *cl = e2e_client(&cluster, 0, INFLIGHT);
    cr_assert_not_null(cl);
    for (uint32_t i = from; i < to; i++) {
        drain(cl, INFLIGHT - 1);
        if (hook != NULL && i == at) {
            hook();
        }
        uint8_t k[24];
        char v[24];
        S[i] = (struct slot){.i = i};
        cr_assert_eq(tessera_put_async(cl, k, key_of(i, k), v, value_of(i, v), 0, 0, put_cb, &S[i]),
                     0);
    }
    drain(cl, 0);
    uint32_t acked = 0;
    for (uint32_t i = from; i < to; i++) {
        acked += S[i].acked;
    }
    tessera_client_free(cl);
    fprintf(stderr, "kv_restart_all: keys %u..%u: %u acknowledged\n", from, to - 1, acked);
    return acked;
}

static uint32_t write_batch(uint32_t from, uint32_t to)
{
    return write_batch_hook(from, to, 0, NULL);
}

/* Reads back every acknowledged key of [0, to), linearizably. Transient errors are
 * retried (bounded); "not found" or another value is a lost write. */
static void read_back(uint32_t to, const char *when)
{
    struct tessera_client *cl = e2e_client(&cluster, 0, INFLIGHT);
    cr_assert_not_null(cl);
    for (uint32_t i = 0; i < to; i++) {
        S[i].ok = false;
    }
    uint32_t left = 0;
    for (int pass = 0; pass < 5; pass++) {
        for (uint32_t i = 0; i < to; i++) {
            if (!S[i].acked || S[i].ok) {
                continue;
            }
            drain(cl, INFLIGHT - 1);
            uint8_t k[24];
            S[i].done = false;
            cr_assert_eq(
                tessera_get_async(cl, k, key_of(i, k), TESSERA_LINEARIZABLE, get_cb, &S[i]), 0);
        }
        drain(cl, 0);
        left = 0;
        for (uint32_t i = 0; i < to; i++) {
            if (!S[i].acked || S[i].ok) {
                continue;
            }
            cr_assert(!S[i].missing, "%s: acknowledged key %u is missing", when, i);
            cr_assert_neq(S[i].status, 0, "%s: acknowledged key %u has another value", when, i);
            left++;
        }
        if (left == 0) {
            break;
        }
        usleep(500000);
    }
    cr_assert_eq(left, 0, "%s: %u acknowledged keys could not be read", when, left);
    fprintf(stderr, "kv_restart_all: %s: every acknowledged key of 0..%u read back\n", when,
            to - 1);
    tessera_client_free(cl);
}

static void restart_all(const char *when)
{
    uint64_t t0 = e2e_now_ms();
    cr_assert_eq(e2e_cluster_restart_all(&cluster), 0, "%s: the nodes did not restart", when);
    cr_assert_eq(e2e_cluster_wait_ready(&cluster, E2E_READY_TIMEOUT_MS), 0,
                 "%s: the cluster did not serve again", when);
    fprintf(stderr, "kv_restart_all: %s: serving again %llu ms after the restart\n", when,
            (unsigned long long)(e2e_now_ms() - t0));
}

/* Puts "\x40counter" n times, values "c0".. "c<n-1>", each acknowledged. */
static void overwrite(uint32_t n)
{
    struct tessera_client *cl = e2e_client(&cluster, 0, 0);
    cr_assert_not_null(cl);
    for (uint32_t i = 0; i < n; i++) {
        char v[16];
        int vl = snprintf(v, sizeof v, "c%u", i);
        cr_assert_eq(tessera_put(cl, "\100counter", 8, v, (size_t)vl, 0, 0, 0), 0);
    }
    tessera_client_free(cl);
}

static void check_counter(uint64_t version, const char *value)
{
    struct tessera_client *cl = e2e_client(&cluster, 0, 0);
    cr_assert_not_null(cl);
    char buf[16] = {0};
    size_t vl = 0;
    struct tessera_kv meta;
    cr_assert_eq(
        tessera_get(cl, "\100counter", 8, TESSERA_LINEARIZABLE, buf, sizeof buf - 1, &vl, &meta, 0),
        0);
    cr_assert_str_eq(buf, value);
    cr_assert_eq(meta.version, version, "version %llu", (unsigned long long)meta.version);
    tessera_client_free(cl);
}

Test(kv_restart_all, acknowledged_writes_survive_restarts_and_crashes)
{
    cr_assert_gt(write_batch(0, BATCH), 0);
    overwrite(5);
    /* Clean stop of every node, then restart. */
    for (uint32_t i = 0; i < cluster.n; i++) {
        cr_assert_eq(e2e_node_term(&cluster, i, E2E_STOP_TIMEOUT_MS), 0,
                     "node %u did not exit 0 after SIGTERM", i + 1);
    }
    restart_all("after SIGTERM");
    read_back(BATCH, "after SIGTERM");
    check_counter(5, "c4");

    /* A second batch, then a crash of every node. */
    cr_assert_gt(write_batch(BATCH, KEYS), 0);
    overwrite(3);
    for (uint32_t i = 0; i < cluster.n; i++) {
        cr_assert_eq(e2e_node_kill(&cluster, i), 0);
    }
    restart_all("after SIGKILL");
    read_back(KEYS, "after SIGKILL");
    check_counter(8, "c2");
    /* And it still takes writes, then stops cleanly. */
    overwrite(1);
    check_counter(9, "c0");
    for (uint32_t i = 0; i < cluster.n; i++) {
        cr_assert_eq(e2e_node_term(&cluster, i, E2E_STOP_TIMEOUT_MS), 0,
                     "node %u did not exit 0 after SIGTERM", i + 1);
    }
}

/* SIGTERM one node while writes are in flight: it exits 0 within E2E_STOP_TIMEOUT_MS
 * (answers already read are sent, the log flushed, the B-tree checkpointed), the other two
 * go on serving, and every acknowledged write is there, also once it is back. */
static void term_node_1(void)
{
    uint64_t t0 = e2e_now_ms();
    cr_assert_eq(e2e_node_term(&cluster, 0, E2E_STOP_TIMEOUT_MS), 0,
                 "node 1 did not exit 0 after SIGTERM under load");
    fprintf(stderr, "kv_restart_all: node 1 stopped cleanly under load in %llu ms\n",
            (unsigned long long)(e2e_now_ms() - t0));
}

Test(kv_restart_all, sigterm_under_load)
{
    uint32_t acked = write_batch_hook(0, KEYS, KEYS / 3, term_node_1);
    cr_assert_gt(acked, KEYS / 3, "the two remaining nodes took no writes");
    read_back(KEYS, "with node 1 stopped");
    cr_assert_eq(e2e_node_restart(&cluster, 0), 0);
    cr_assert_eq(e2e_cluster_wait_ready(&cluster, E2E_READY_TIMEOUT_MS), 0);
    read_back(KEYS, "after node 1 restarted");
}
