/*
 * kv_snapshot: a follower down while the log is compacted past what it holds comes back
 * through a snapshot streamed from the leader's B-tree, and converges.
 *
 * The cluster checkpoints every 100 applied entries and keeps 20 behind a checkpoint
 * (--checkpoint-entries, --log-retain-entries), so a few hundred writes while node 3 is
 * stopped compact every range's log past node 3's last entry. After node 3 restarts, a
 * client pinned to it reads every acknowledged key serializably (from node 3's own
 * replicas) until all match, bounded; node 3's log must say it installed a snapshot.
 */
#include "tests/e2e/suite.h"

#include "net/client/tessera.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SNAP_KEYS 400u
#define SNAP_CONVERGE_MS 90000u

static struct e2e_cluster cluster;

static void up(void)
{
    static const char *const extra[] = {
        "--checkpoint-entries", "100", "--log-retain-entries", "20", "--log-level", "info", NULL};
    e2e_suite_up(&cluster, 3, 2, 4, extra);
}

static void down(void)
{
    e2e_cluster_stop(&cluster);
}

TestSuite(kv_snapshot, .init = up, .fini = down, .timeout = 400);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool log_says(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, what) != NULL;
    }
    fclose(f);
    return found;
}

Test(kv_snapshot, a_follower_behind_the_compacted_log_catches_up_by_snapshot)
{
    cr_assert_eq(e2e_node_term(&cluster, 2, E2E_STOP_TIMEOUT_MS), 0, "node 3 stops cleanly");
    struct tessera_client *cl = e2e_client(&cluster, 0, 64);
    cr_assert_not_null(cl);
    static bool acked[SNAP_KEYS];
    uint32_t n_acked = 0;
    for (uint32_t i = 0; i < SNAP_KEYS; i++) {
        char k[32], v[32];
        int kl = snprintf(k, sizeof k, "snap-%04u", i);
        int vl = snprintf(v, sizeof v, "value-%u", i);
        acked[i] = tessera_put(cl, k, (size_t)kl, v, (size_t)vl, 0, 0, 0) == 0;
        n_acked += acked[i] ? 1 : 0;
    }
    tessera_client_free(cl);
    cr_assert_gt(n_acked, SNAP_KEYS / 2, "two of three nodes take writes (%u acknowledged)",
                 n_acked);

    cr_assert_eq(e2e_node_restart(&cluster, 2), 0, "node 3 restarts");
    struct tessera_client *pin = e2e_client_pinned(&cluster, 2, 2000);
    cr_assert_not_null(pin);
    uint64_t deadline = now_ms() + SNAP_CONVERGE_MS;
    uint32_t matched = 0;
    static bool seen[SNAP_KEYS];
    memset(seen, 0, sizeof seen);
    while (matched < n_acked && now_ms() < deadline) {
        for (uint32_t i = 0; i < SNAP_KEYS; i++) {
            if (!acked[i] || seen[i]) {
                continue;
            }
            char k[32], want[32], got[64];
            int kl = snprintf(k, sizeof k, "snap-%04u", i);
            int wl = snprintf(want, sizeof want, "value-%u", i);
            size_t gl = 0;
            int rc = tessera_get(pin, k, (size_t)kl, TESSERA_SERIALIZABLE, got, sizeof got, &gl,
                                 NULL, 2000);
            if (rc == 0 && gl == (size_t)wl && memcmp(got, want, gl) == 0) {
                seen[i] = true;
                matched++;
            }
        }
        if (matched < n_acked) {
            usleep(200 * 1000);
        }
    }
    tessera_client_free(pin);
    cr_assert_eq(matched, n_acked, "node 3 serves %u of %u acknowledged keys", matched, n_acked);
    cr_assert(log_says(cluster.node[2].log, "installed a snapshot"),
              "node 3 caught up through a snapshot (its log: %s)", cluster.node[2].log);
}
