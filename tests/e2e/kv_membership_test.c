/*
 * kv_membership: the meta range (range 1) holds the cluster's members and range
 * descriptors; a node enters a running cluster with --join; a node whose data is lost
 * cannot take its old id again.
 *
 *   join      a 4th node started with --join gets id 4 from the meta range; every node's
 *             members answer lists it, Up once it announced itself; it hosts no replica
 *             but serves every range's writes and reads by forwarding; it restarts from
 *             its directory as node 4; an empty directory that asks to join at the
 *             address node 4 serves at is refused.
 *   descriptors  every range's descriptor comes from the meta range: bounds, epoch and
 *             replicas as the layout made them, from any node, also while the node
 *             holding the most leaders is down.
 *   lost_data a member stopped, its directory emptied, started again with the same
 *             --initial-cluster: refused (exit 1) with a message that says why; the
 *             other two keep serving. A new cluster's first start (all directories
 *             empty) is not refused: every test's cluster start shows it.
 */
#define _GNU_SOURCE /* nftw */
#include "tests/e2e/suite.h"

#include "net/client/tessera.h"

#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RANGES 8u
#define WAIT_MS 30000u
#define KEYS_PER_RANGE 4u

static struct e2e_cluster cluster;

static void up(void)
{
    static const char *const extra[] = {"--log-level", "info", NULL};
    e2e_suite_up(&cluster, 3, 2, RANGES, extra);
}

static void down(void)
{
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_membership, .init = up, .fini = down, .timeout = 400);

/* ---- answers ---- */

struct members {
    bool done;
    int status;
    size_t n;
    uint64_t id[8];
    int state[8];
    char addr[8][32];
};

static void members_cb(void *data, int status, const struct tessera_response *r)
{
    struct members *m = data;
    m->done = true;
    m->status = status;
    m->n = 0;
    struct tessera_member mb;
    for (size_t i = 0; status == 0 && i < 8 && tessera_response_member_at(r, i, &mb) == 0; i++) {
        m->id[i] = mb.node_id;
        m->state[i] = (int)mb.state;
        snprintf(m->addr[i], sizeof m->addr[i], "%s", mb.address != NULL ? mb.address : "");
        m->n++;
    }
}

static void run_until(struct tessera_client *cl, const bool *done)
{
    uint64_t deadline = e2e_now_ms() + E2E_REQUEST_TIMEOUT_MS + 2000;
    while (!*done && e2e_now_ms() < deadline) {
        (void)tessera_client_run(cl, 50);
    }
    cr_assert(*done, "no answer in time");
}

static void members_of(struct tessera_client *cl, struct members *m)
{
    memset(m, 0, sizeof *m);
    cr_assert_eq(tessera_members_async(cl, TESSERA_LINEARIZABLE, members_cb, m), 0);
    run_until(cl, &m->done);
}

/* Asks until the answer is Ok and node id's state is want (-1: any), bounded. */
static void members_until(struct tessera_client *cl, struct members *m, uint64_t id, int want)
{
    uint64_t deadline = e2e_now_ms() + WAIT_MS;
    for (;;) {
        members_of(cl, m);
        bool ok = m->status == 0;
        for (size_t i = 0; ok && want >= 0 && i <= m->n; i++) {
            if (i == m->n) {
                ok = false;
            } else if (m->id[i] == id) {
                ok = m->state[i] == want;
                break;
            }
        }
        if (ok || e2e_now_ms() >= deadline) {
            return;
        }
        usleep(200 * 1000);
    }
}

/* The state the members answer through cl gives node id (-1: absent). */
static int state_of(const struct members *m, uint64_t id)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->id[i] == id) {
            return m->state[i];
        }
    }
    return -1;
}

struct route {
    bool done;
    int status;
    size_t n;
    struct {
        uint64_t id, gen, conf;
        uint8_t lo[2], hi[2];
        size_t lo_len, hi_len;
        size_t reps;
        uint64_t node[4];
        uint32_t shard[4];
    } d[16];
};

static void route_cb(void *data, int status, const struct tessera_response *r)
{
    struct route *rt = data;
    rt->done = true;
    rt->status = status;
    struct tessera_range_desc d;
    for (size_t i = 0; status == 0 && i < 16 && tessera_response_range_at(r, i, &d) == 0; i++) {
        rt->d[i].id = d.range_id;
        rt->d[i].gen = d.generation;
        rt->d[i].conf = d.conf_version;
        rt->d[i].lo_len = d.start_key_len;
        rt->d[i].hi_len = d.end_key_len;
        if (d.start_key_len > 0) {
            memcpy(rt->d[i].lo, d.start_key, d.start_key_len < 2 ? d.start_key_len : 2);
        }
        if (d.end_key_len > 0) {
            memcpy(rt->d[i].hi, d.end_key, d.end_key_len < 2 ? d.end_key_len : 2);
        }
        rt->d[i].reps = d.replicas;
        for (size_t k = 0; k < d.replicas && k < 4; k++) {
            rt->d[i].node[k] = d.replica_node[k];
            rt->d[i].shard[k] = d.replica_shard[k];
        }
        rt->n++;
    }
}

/* Every range's descriptor, as the layout makes it: 8 ranges cut at even points of the
 * first byte, replicas on nodes (r-1)%3+1.. in order, shard (r-1)%2, epoch {1, 1}. */
static void check_descriptors(struct tessera_client *cl)
{
    struct route rt = {0};
    cr_assert_eq(tessera_route_async(cl, "", 0, 0, 0, route_cb, &rt), 0);
    run_until(cl, &rt.done);
    cr_assert_eq(rt.status, 0, "route: %s", tessera_strerror(rt.status));
    cr_assert_eq(rt.n, RANGES, "one descriptor per range (%zu)", rt.n);
    for (uint32_t i = 0; i < RANGES; i++) {
        uint64_t r = i + 1;
        cr_assert_eq(rt.d[i].id, r);
        cr_assert_eq(rt.d[i].gen, 1);
        cr_assert_eq(rt.d[i].conf, 1);
        uint8_t lo[2], hi[2];
        size_t lo_len = r > 1 ? 2 : 0; /* range 1 starts at the empty key */
        lo[0] = (uint8_t)(i * 256u / RANGES);
        lo[1] = 0;
        hi[0] = (uint8_t)((i + 1) * 256u / RANGES);
        hi[1] = 0;
        cr_assert_eq(rt.d[i].lo_len, lo_len, "range %u starts at its cut", (unsigned)r);
        cr_assert(lo_len == 0 || memcmp(rt.d[i].lo, lo, 2) == 0);
        cr_assert_eq(rt.d[i].hi_len, r < RANGES ? 2u : 0u, "range %u ends at the next cut",
                     (unsigned)r);
        cr_assert(r == RANGES || memcmp(rt.d[i].hi, hi, 2) == 0);
        cr_assert_eq(rt.d[i].reps, 3);
        for (uint32_t k = 0; k < 3; k++) {
            cr_assert_eq(rt.d[i].node[k], (i + k) % 3 + 1, "range %u replica %u", (unsigned)r, k);
            cr_assert_eq(rt.d[i].shard[k], i % 2);
        }
    }
    /* One range by id; an unknown id is RangeNotFound. */
    memset(&rt, 0, sizeof rt);
    cr_assert_eq(tessera_route_async(cl, NULL, 0, 5, 0, route_cb, &rt), 0);
    run_until(cl, &rt.done);
    cr_assert_eq(rt.status, 0);
    cr_assert_eq(rt.n, 1);
    cr_assert_eq(rt.d[0].id, 5);
    memset(&rt, 0, sizeof rt);
    cr_assert_eq(tessera_route_async(cl, NULL, 0, RANGES + 1, 0, route_cb, &rt), 0);
    run_until(cl, &rt.done);
    cr_assert_eq(rt.status, TESSERA_ENORANGE, "%s", tessera_strerror(rt.status));
}

static bool log_says(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    bool found = false;
    while (f != NULL && !found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, what) != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

/* The sum of "N coalesced heartbeats" over a node's "stopped" lines. */
static unsigned long long coalesced_heartbeats(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    unsigned long long sum = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        const char *p = strstr(line, "messages and ");
        unsigned long long n = 0;
        if (p != NULL && sscanf(p, "messages and %llu coalesced heartbeats", &n) == 1) {
            sum += n;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return sum;
}

/* ---- tests ---- */

Test(kv_membership, join)
{
    const char *const args[] = {"--join", cluster.node[1].addr, NULL};
    cr_assert_eq(e2e_node_add(&cluster, args), 0, "node 4 did not start with --join");
    cr_assert_eq(cluster.n, 4);
    char path[E2E_PATH_BYTES + 64];
    snprintf(path, sizeof path, "%s/cluster", cluster.node[3].dir);
    cr_assert(log_says(path, "joined 4"), "node 4's directory records its id");

    /* Every node's members answer lists node 4, Up once it announced itself. */
    for (uint32_t i = 0; i < 4; i++) {
        struct tessera_client *cl = e2e_client_pinned(&cluster, i, 0);
        cr_assert_not_null(cl);
        struct members m;
        members_until(cl, &m, 4, TESSERA_NODE_UP);
        cr_assert_eq(m.status, 0, "members through node %u: %s", i + 1, tessera_strerror(m.status));
        cr_assert_eq(m.n, 4, "four members through node %u (%zu)", i + 1, m.n);
        cr_assert_eq(state_of(&m, 4), TESSERA_NODE_UP, "node 4 is up (through node %u)", i + 1);
        for (size_t k = 0; k < 4; k++) {
            cr_assert_str_eq(m.addr[k], cluster.node[m.id[k] - 1].addr);
        }
        tessera_client_free(cl);
    }

    /* Node 4 hosts nothing and serves every range by forwarding. */
    struct tessera_client *c4 = e2e_client_pinned(&cluster, 3, 0);
    cr_assert_not_null(c4);
    for (uint32_t r = 1; r <= RANGES; r++) {
        for (uint32_t k = 0; k < KEYS_PER_RANGE; k++) {
            uint8_t key[32];
            char sfx[16];
            snprintf(sfx, sizeof sfx, "j%u", k);
            size_t kl = e2e_range_key(&cluster, r, sfx, key, sizeof key);
            cr_assert_eq(tessera_put(c4, key, kl, sfx, strlen(sfx), 0, 0, 0), 0,
                         "a put in range %u through node 4", r);
        }
    }
    struct tessera_client *c1 = e2e_client(&cluster, 0, 16);
    cr_assert_not_null(c1);
    for (uint32_t r = 1; r <= RANGES; r++) {
        for (uint32_t k = 0; k < KEYS_PER_RANGE; k++) {
            uint8_t key[32];
            char sfx[16], got[16];
            snprintf(sfx, sizeof sfx, "j%u", k);
            size_t kl = e2e_range_key(&cluster, r, sfx, key, sizeof key), vl = 0;
            cr_assert_eq(
                tessera_get(c1, key, kl, TESSERA_LINEARIZABLE, got, sizeof got, &vl, NULL, 0), 0);
            cr_assert(vl == strlen(sfx) && memcmp(got, sfx, vl) == 0);
            cr_assert_eq(
                tessera_get(c4, key, kl, TESSERA_LINEARIZABLE, got, sizeof got, &vl, NULL, 0), 0,
                "a linearizable get in range %u through node 4", r);
        }
    }
    check_descriptors(c4);
    tessera_client_free(c4);

    /* It restarts as node 4, from its directory alone. */
    cr_assert_eq(e2e_node_term(&cluster, 3, E2E_STOP_TIMEOUT_MS), 0);
    cr_assert_eq(e2e_node_restart(&cluster, 3), 0);
    struct members m;
    members_of(c1, &m);
    cr_assert_eq(m.status, 0);
    cr_assert_eq(m.n, 4, "a restart adds no member (%zu)", m.n);

    /* An empty directory asking to join at node 4's address (node 4 stopped) is refused:
     * a started member serves there. */
    cr_assert_eq(e2e_node_term(&cluster, 3, E2E_STOP_TIMEOUT_MS), 0);
    char moved[E2E_PATH_BYTES + 64];
    snprintf(moved, sizeof moved, "%s.kept", cluster.node[3].dir);
    cr_assert_eq(rename(cluster.node[3].dir, moved), 0);
    int st = 0;
    cr_assert_eq(e2e_node_run(&cluster, 3, false, args, WAIT_MS, &st), 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "refused with exit 1 (status %#x)", st);
    cr_assert(log_says(cluster.node[3].log, "a started member already serves at this address"));
    members_of(c1, &m);
    cr_assert_eq(m.n, 4, "the refused join added no member");
    tessera_client_free(c1);
}

Test(kv_membership, descriptors)
{
    for (uint32_t i = 0; i < 3; i++) {
        struct tessera_client *cl = e2e_client_pinned(&cluster, i, 0);
        cr_assert_not_null(cl);
        check_descriptors(cl);
        tessera_client_free(cl);
    }
    /* The meta range is replicated: with the node holding the most leaders down (range 1's
     * leader among them, or not), the others still answer. */
    struct tessera_client *cl = e2e_client(&cluster, 0, 16);
    cr_assert_not_null(cl);
    int victim = e2e_most_leaders(&cluster, cl, NULL);
    cr_assert(victim >= 0);
    struct members m;
    members_until(cl, &m, (uint64_t)victim + 1, TESSERA_NODE_UP); /* it has announced itself */
    cr_assert_eq(state_of(&m, (uint64_t)victim + 1), TESSERA_NODE_UP);
    cr_assert_eq(e2e_node_kill(&cluster, (uint32_t)victim), 0);
    uint32_t other = ((uint32_t)victim + 1) % 3;
    struct tessera_client *co = e2e_client_pinned(&cluster, other, 0);
    cr_assert_not_null(co);
    members_until(co, &m, (uint64_t)victim + 1, TESSERA_NODE_DOWN);
    cr_assert_eq(m.status, 0, "members with node %d down: %s", victim + 1,
                 tessera_strerror(m.status));
    cr_assert_eq(m.n, 3);
    cr_assert_eq(state_of(&m, (uint64_t)victim + 1), TESSERA_NODE_DOWN,
                 "the killed node %d is reported down (state %d, asked node %u)", victim + 1,
                 state_of(&m, (uint64_t)victim + 1), other + 1);
    check_descriptors(co);
    tessera_client_free(co);
    tessera_client_free(cl);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

Test(kv_membership, lost_data)
{
    /* Once node 3 has announced itself (its first seconds are the window this guard
     * cannot cover: see tesserad's check_not_started). */
    struct tessera_client *c1 = e2e_client_pinned(&cluster, 0, 0);
    cr_assert_not_null(c1);
    struct members m;
    members_until(c1, &m, 3, TESSERA_NODE_UP);
    cr_assert_eq(state_of(&m, 3), TESSERA_NODE_UP);
    tessera_client_free(c1);
    cr_assert_eq(e2e_node_term(&cluster, 2, E2E_STOP_TIMEOUT_MS), 0);
    /* Its shards' last words: heartbeats went coalesced (fixed-size structs, one per
     * group, in the frames between two nodes). */
    cr_assert(coalesced_heartbeats(cluster.node[2].log) > 0, "no coalesced heartbeats");
    cr_assert_eq(nftw(cluster.node[2].dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    cr_assert_eq(mkdir(cluster.node[2].dir, 0755), 0);
    int st = 0;
    cr_assert_eq(e2e_node_run(&cluster, 2, true, NULL, WAIT_MS, &st), 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "refused with exit 1 (status %#x)", st);
    cr_assert(log_says(cluster.node[2].log, "node 3 has already started in this cluster"),
              "the log says why");
    char path[E2E_PATH_BYTES + 64];
    snprintf(path, sizeof path, "%s/cluster", cluster.node[2].dir);
    cr_assert_neq(access(path, F_OK), 0, "nothing was written for the refused start");

    /* The other two serve every range. */
    struct tessera_client *cl = e2e_client(&cluster, 0, 16);
    cr_assert_not_null(cl);
    for (uint32_t r = 1; r <= RANGES; r++) {
        uint8_t key[32];
        size_t kl = e2e_range_key(&cluster, r, "after", key, sizeof key);
        int rc = tessera_put(cl, key, kl, "v", 1, 0, 0, 0);
        cr_assert_eq(rc, 0, "range %u serves: %s", r, tessera_strerror(rc));
    }
    tessera_client_free(cl);
}
